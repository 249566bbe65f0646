/* src/concurrent.c: lists of operations run on at most k pooled clients,
 * each with its own result and error.  "core" needs no server (bad input
 * is refused first); "live" runs against the test server (MONGO_TEST_URI)
 * and reads the writes back. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (run_concurrent_rejects_zero_k_empty_list_and_null_results)
{
   mongo_helper_op_t op = {.type = MONGO_HELPER_OP_COUNT, .collection = "c"};
   mongo_helper_op_result_t res[1];

   mh_test_clean_env ();
   MH_ASSERT_FAILS_WITH (mongo_helper_run_concurrent (&op, 1, 0, res, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "max_concurrent"));
   ck_assert (bson_empty (&res[0].result));
   mongo_helper_op_results_cleanup (res, 1);
   MH_ASSERT_FAILS_WITH (mongo_helper_run_concurrent (&op, 0, 4, res, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "empty"));
   MH_ASSERT_FAILS_WITH (mongo_helper_run_concurrent (NULL, 1, 4, res, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   mongo_helper_op_results_cleanup (res, 1);
   MH_ASSERT_FAILS_WITH (mongo_helper_run_concurrent (&op, 1, 4, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   mongo_helper_op_results_cleanup (NULL, 3);
}
END_TEST

/* ---- live ------------------------------------------------------------- */

static const char *
result_utf8 (const mongo_helper_op_result_t *r, const char *path)
{
   return mh_test_utf8_at (&r->result, path);
}

static int64_t
result_int (const mongo_helper_op_result_t *r, const char *path)
{
   return mh_test_int_at (&r->result, path);
}

START_TEST (run_concurrent_returns_each_result_in_order_with_its_own_error)
{
   const char *name = mh_test_collection ("conc");
   char coll_name[96];
   mongoc_collection_t *coll;
   bson_t *f_a, *f_i3, *f_lt10, *f_i1, *set_x, *f_i200, *set_d, *doc_new, *dup, *pipe, *f_del,
      *ping;
   mongo_helper_op_result_t res[13];
   bson_iter_t it;

   bson_strncpy (coll_name, name, sizeof coll_name);
   coll = mh_test_raw_collection (coll_name);
   for (int i = 0; i < 10; i++) {
      bson_t *d = BCON_NEW (
         "_id", BCON_INT32 (i), "i", BCON_INT32 (i), "dept", BCON_UTF8 (i < 5 ? "a" : "b"));
      ck_assert (mongoc_collection_insert_one (coll, d, NULL, NULL, NULL));
      bson_destroy (d);
   }
   {
      bson_t *d = BCON_NEW ("_id", BCON_INT32 (100), "tag", BCON_UTF8 ("del"));
      ck_assert (mongoc_collection_insert_one (coll, d, NULL, NULL, NULL));
      bson_destroy (d);
   }
   mongoc_collection_destroy (coll);

   f_a = BCON_NEW ("dept", BCON_UTF8 ("a"));
   f_i3 = BCON_NEW ("i", BCON_INT32 (3));
   f_lt10 = BCON_NEW ("i", "{", "$lt", BCON_INT32 (10), "}");
   f_i1 = BCON_NEW ("i", BCON_INT32 (1));
   set_x = BCON_NEW ("$set", "{", "x", BCON_INT32 (1), "}");
   f_i200 = BCON_NEW ("i", BCON_INT32 (200));
   set_d = BCON_NEW ("$set", "{", "dept", BCON_UTF8 ("d"), "}");
   doc_new = BCON_NEW ("i", BCON_INT32 (300), "dept", BCON_UTF8 ("e"));
   dup = BCON_NEW ("_id", BCON_INT32 (4), "i", BCON_INT32 (4));
   pipe = BCON_NEW ("pipeline",
                    "[",
                    "{",
                    "$match",
                    "{",
                    "dept",
                    BCON_UTF8 ("b"),
                    "}",
                    "}",
                    "{",
                    "$sort",
                    "{",
                    "i",
                    BCON_INT32 (1),
                    "}",
                    "}",
                    "]");
   f_del = BCON_NEW ("tag", BCON_UTF8 ("del"));
   ping = BCON_NEW ("ping", BCON_INT32 (1));
   {
      const mongo_helper_op_t ops[13] = {
         {.type = MONGO_HELPER_OP_COUNT, .collection = coll_name, .filter = f_a},
         {.type = MONGO_HELPER_OP_FIND_ONE, .collection = coll_name, .filter = f_i3},
         {.type = MONGO_HELPER_OP_DISTINCT,
          .collection = coll_name,
          .field = "dept",
          .filter = f_lt10},
         {.type = MONGO_HELPER_OP_INSERT_ONE, .collection = coll_name, .document = doc_new},
         {.type = MONGO_HELPER_OP_UPDATE_ONE,
          .collection = coll_name,
          .filter = f_i1,
          .document = set_x},
         {.type = MONGO_HELPER_OP_UPDATE_MANY,
          .collection = coll_name,
          .filter = f_i200,
          .document = set_d,
          .upsert = true},
         {.type = MONGO_HELPER_OP_AGGREGATE, .collection = coll_name, .pipeline = pipe},
         {.type = MONGO_HELPER_OP_DELETE_ONE, .collection = coll_name, .filter = f_del},
         {.type = MONGO_HELPER_OP_INSERT_ONE, .collection = coll_name, .document = dup},
         {.type = MONGO_HELPER_OP_DISTINCT,
          .collection = "no_such_collection_here",
          .field = "dept"},
         {.type = MONGO_HELPER_OP_COMMAND, .document = ping},
         {.type = MONGO_HELPER_OP_DISTINCT, .collection = coll_name}, /* no field */
         {.type = MONGO_HELPER_OP_FIND_ONE,
          .collection = coll_name,
          .filter = f_i200 /* before upsert? either */},
      };

      ck_assert (!mongo_helper_run_concurrent (ops, 13, 4, res, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
      ck_assert_ptr_nonnull (strstr (err.message, "2 of 13 operations failed"));
   }

   for (int i = 0; i < 13; i++) {
      if (i != 8 && i != 11) {
         ck_assert_msg (res[i].error.category == MONGO_HELPER_ERROR_NONE,
                        "op %d failed: %s",
                        i,
                        res[i].error.message);
      }
      ck_assert_int_ge (res[i].concurrent, 1);
      ck_assert_int_le (res[i].concurrent, 4);
   }
   ck_assert_int_eq (result_int (&res[0], "count"), 5);
   ck_assert_int_eq (result_int (&res[1], "document.i"), 3);
   {
      /* distinct does not promise an order */
      const char *v0 = result_utf8 (&res[2], "values.0");
      const char *v1 = result_utf8 (&res[2], "values.1");
      ck_assert_msg ((!strcmp (v0, "a") && !strcmp (v1, "b")) ||
                        (!strcmp (v0, "b") && !strcmp (v1, "a")),
                     "distinct gave %s, %s",
                     v0,
                     v1);
   }
   ck_assert (bson_iter_init (&it, &res[2].result) &&
              !bson_iter_find_descendant (&it, "values.2", &it));
   ck_assert (bson_iter_init_find (&it, &res[3].result, "insertedId"));
   ck_assert (BSON_ITER_HOLDS_OID (&it));
   ck_assert_int_eq (result_int (&res[3], "insertedCount"), 1);
   ck_assert_int_eq (result_int (&res[4], "matchedCount"), 1);
   ck_assert_int_eq (result_int (&res[4], "modifiedCount"), 1);
   ck_assert_int_eq (result_int (&res[5], "upsertedCount"), 1);
   ck_assert_int_eq (result_int (&res[6], "documents.0.i"), 5);
   ck_assert_int_eq (result_int (&res[6], "documents.4.i"), 9);
   ck_assert (bson_iter_init (&it, &res[6].result) &&
              !bson_iter_find_descendant (&it, "documents.5", &it));
   ck_assert_int_eq (result_int (&res[7], "deletedCount"), 1);
   ck_assert_int_eq (res[8].error.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_int_eq (res[8].error.code, 11000);
   ck_assert (bson_empty (&res[8].result));
   ck_assert (bson_iter_init_find (&it, &res[9].result, "values"));
   ck_assert (bson_iter_init (&it, &res[9].result) &&
              !bson_iter_find_descendant (&it, "values.0", &it));
   ck_assert_int_eq (result_int (&res[10], "ok"), 1);
   ck_assert_int_eq (res[11].error.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (res[11].error.message, "operation 11"));
   mongo_helper_op_results_cleanup (res, 13);

   /* Read the writes back. */
   ck_assert_int_eq (mh_test_raw_count (coll_name, NULL), 11 + 1 + 1 - 1);
   {
      bson_t *x1 = BCON_NEW ("i", BCON_INT32 (1), "x", BCON_INT32 (1));
      bson_t *d = BCON_NEW ("dept", BCON_UTF8 ("d"));
      ck_assert_int_eq (mh_test_raw_count (coll_name, x1), 1);
      ck_assert_int_eq (mh_test_raw_count (coll_name, d), 1);
      ck_assert_int_eq (mh_test_raw_count (coll_name, doc_new), 1);
      ck_assert_int_eq (mh_test_raw_count (coll_name, f_del), 0);
      bson_destroy (x1);
      bson_destroy (d);
   }
   bson_destroy (f_a);
   bson_destroy (f_i3);
   bson_destroy (f_lt10);
   bson_destroy (f_i1);
   bson_destroy (set_x);
   bson_destroy (f_i200);
   bson_destroy (set_d);
   bson_destroy (doc_new);
   bson_destroy (dup);
   bson_destroy (pipe);
   bson_destroy (f_del);
   bson_destroy (ping);
}
END_TEST

#define SLEEPERS 9
#define K 3

START_TEST (run_concurrent_never_runs_more_than_k_at_once)
{
   mongo_helper_op_t ops[SLEEPERS];
   mongo_helper_op_result_t res[SLEEPERS];
   bson_t *sleep_cmd = BCON_NEW ("sleep", BCON_INT32 (1), "millis", BCON_INT32 (300));
   const char *name = mh_test_collection ("k");
   int peak = 0;

   memset (ops, 0, sizeof ops);
   for (int i = 0; i < SLEEPERS; i++) {
      if (mh_test_on_mock ()) {
         /* The test server's `sleep` holds each operation for 300 ms. */
         ops[i].type = MONGO_HELPER_OP_COMMAND;
         ops[i].document = sleep_cmd;
      } else {
         ops[i].type = MONGO_HELPER_OP_COUNT;
         ops[i].collection = name;
      }
   }
   MH_ASSERT_OK (mongo_helper_run_concurrent (ops, SLEEPERS, K, res, &err), err);
   for (int i = 0; i < SLEEPERS; i++) {
      MH_ASSERT_OK (res[i].error.category == MONGO_HELPER_ERROR_NONE, res[i].error);
      ck_assert_int_le (res[i].concurrent, K);
      if (res[i].concurrent > peak) {
         peak = res[i].concurrent;
      }
   }
   if (mh_test_on_mock ()) {
      /* Nine 300 ms operations on three workers do overlap. */
      ck_assert_int_ge (peak, 2);
   }
   mongo_helper_op_results_cleanup (res, SLEEPERS);

   /* K larger than the list: one worker per operation. */
   /* An oversized document fails its own operation only. */
   {
      size_t big = 16u * 1024u * 1024u + 10u;
      uint8_t *blob = calloc (1, big);
      bson_t *huge = bson_new ();

      ck_assert_ptr_nonnull (blob);
      ck_assert (bson_append_binary (huge, "blob", -1, BSON_SUBTYPE_BINARY, blob, (uint32_t) big));
      ops[SLEEPERS - 1].type = MONGO_HELPER_OP_INSERT_ONE;
      ops[SLEEPERS - 1].collection = name;
      ops[SLEEPERS - 1].document = huge;
      ck_assert (!mongo_helper_run_concurrent (ops + SLEEPERS - 2, 2, 2, res, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_int_eq (res[0].error.category, MONGO_HELPER_ERROR_NONE);
      ck_assert_int_eq (res[1].error.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_ptr_nonnull (strstr (res[1].error.message, "16 MiB"));
      mongo_helper_op_results_cleanup (res, 2);
      ck_assert_int_eq (mh_test_raw_count (name, NULL), 0);
      bson_destroy (huge);
      free (blob);
   }

   MH_ASSERT_OK (mongo_helper_run_concurrent (ops, 2, 64, res, &err), err);
   ck_assert_int_le (res[0].concurrent, 2);
   ck_assert_int_le (res[1].concurrent, 2);
   mongo_helper_op_results_cleanup (res, 2);
   bson_destroy (sleep_cmd);
}
END_TEST

Suite *
concurrent_suite (void)
{
   Suite *s = suite_create ("concurrent");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, run_concurrent_rejects_zero_k_empty_list_and_null_results);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, run_concurrent_returns_each_result_in_order_with_its_own_error);
   tcase_add_test (live, run_concurrent_never_runs_more_than_k_at_once);
   suite_add_tcase (s, live);
   return s;
}
