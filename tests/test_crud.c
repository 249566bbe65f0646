/* src/crud.c: insert, find, update, replace, delete, count, distinct and
 * the JSON forms.  "core" needs no server: bad input is refused before
 * anything is sent (the singleton points at a closed port); "live" runs
 * against the test server (MONGO_TEST_URI) and reads the data back. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- core: bad input never reaches the server ------------------------ */

START_TEST (malformed_json_is_invalid_argument_with_position)
{
   bson_t *b = mongo_helper_json_to_bson ("{\"a\": 1,, }", &err);
   bson_value_t id;

   ck_assert_ptr_null (b);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "position 8"), "no position in: %s", err.message);
   ck_assert_ptr_null (mongo_helper_json_to_bson (NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one_json (NULL, "c", "{\"a\": ", &id, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_int_eq (id.value_type, BSON_TYPE_EOD);
   MH_ASSERT_FAILS_WITH (mongo_helper_find_json (NULL, "c", "{", NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_find_one_json (NULL, "c", "{}", "[1,", &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_aggregate_json (NULL, "c", "[{\"$match\": }]", NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_update_json (NULL, "c", "{}", "{\"$set\"", false, false, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST (json_with_a_top_level_array_becomes_an_array_document)
{
   bson_t *b = mongo_helper_json_to_bson ("[{\"a\": 1}, {\"a\": 2}]", &err);
   bson_t d;
   char *json;

   MH_ASSERT_OK (b != NULL, err);
   ck_assert_uint_eq (mh_test_arr_len (b), 2);
   mh_test_arr_doc (b, 1, &d);
   ck_assert_int_eq (mh_test_int_at (&d, "a"), 2);
   json = mongo_helper_array_to_json (b, &err);
   ck_assert_str_eq (json, "[{ \"a\" : 1 }, { \"a\" : 2 }]");
   bson_free (json);
   bson_destroy (b);
}
END_TEST

START_TEST (null_and_empty_names_are_invalid_argument)
{
   bson_t *doc = BCON_NEW ("a", BCON_INT32 (1));
   bson_t results;
   int64_t n;

   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, NULL, doc, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "collection name"));
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "", doc, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one ("", "c", doc, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "database name"));
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one ("a.b", "c", doc, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_find (NULL, "x$y", NULL, NULL, &results, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (bson_empty (&results)); /* initialised even on failure */
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (mongo_helper_count_documents (NULL, NULL, NULL, &n, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_distinct (NULL, "c", "", NULL, &results, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (mongo_helper_drop_index (NULL, "c", NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "c", NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_delete_many (NULL, "c", NULL, &n, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (doc);
}
END_TEST

/* A document of `size` bytes in one binary field. */
static bson_t *
big_doc (size_t size)
{
   bson_t *doc = bson_new ();
   uint8_t *blob = bson_malloc0 (size);

   ck_assert (bson_append_binary (doc, "blob", -1, BSON_SUBTYPE_BINARY, blob, (uint32_t) size));
   bson_free (blob);
   return doc;
}

START_TEST (document_over_16_mb_is_refused_before_sending)
{
   bson_t *big = big_doc (MONGO_HELPER_MAX_DOCUMENT_SIZE);
   bson_t *small = BCON_NEW ("a", BCON_INT32 (1));
   const bson_t *docs[3] = {small, big, small};
   mongo_helper_bulk_result_t *r = (void *) 1;
   int64_t n = -1;

   ck_assert_uint_gt (big->len, MONGO_HELPER_MAX_DOCUMENT_SIZE);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "c", big, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "16777216"), "limit not named: %s", err.message);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_many (NULL, "c", docs, 3, true, &n, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "index 1"));
   ck_assert_int_eq (n, 0);
   MH_ASSERT_FAILS_WITH (mongo_helper_bulk_insert (NULL, "c", docs, 3, 2, false, &r, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "index 1"));
   ck_assert_ptr_null (r);
   MH_ASSERT_FAILS_WITH (mongo_helper_update_one (NULL, "c", small, big, false, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   /* The connection string points at a closed port: had anything been sent,
    * the category would be CONNECTION, not INVALID_ARGUMENT. */
   bson_destroy (big);
   bson_destroy (small);
}
END_TEST

START_TEST (invalid_object_id_text_is_invalid_argument)
{
   static const char *bad[] = {"",
                               "123",
                               "zzzzzzzzzzzzzzzzzzzzzzzz",
                               "5f1d7e2c9b1e8a3f4c2b1a0",    /* 23 */
                               "5f1d7e2c9b1e8a3f4c2b1a0d0"}; /* 25 */

   for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      MH_ASSERT_FAILS_WITH (mongo_helper_find_by_id_json (NULL, "c", bad[i], &err),
                            MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_ptr_nonnull (strstr (err.message, "ObjectId"));
   }
   MH_ASSERT_FAILS_WITH (mongo_helper_find_by_id_json (NULL, "c", NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

/* ---- live ------------------------------------------------------------- */

START_TEST (insert_one_generates_an_object_id_and_returns_it)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("name", BCON_UTF8 ("ada"), "age", BCON_INT32 (36));
   bson_t *filter, *found;
   bson_value_t id;

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, &id, &err), err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_OID);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NONE);
   filter = bson_new ();
   BSON_APPEND_VALUE (filter, "_id", &id);
   found = mongo_helper_find_one (NULL, coll, filter, NULL, &err);
   MH_ASSERT_OK (found != NULL, err);
   ck_assert_str_eq (mh_test_utf8_at (found, "name"), "ada");
   ck_assert_int_eq (mh_test_int_at (found, "age"), 36);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 1);
   bson_value_destroy (&id);
   bson_destroy (found);
   bson_destroy (filter);
   bson_destroy (doc);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (insert_one_keeps_the_callers_id_and_duplicate_is_its_own_category)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("_id", BCON_UTF8 ("user-42"), "v", BCON_INT32 (1));
   bson_value_t id;

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, &id, &err), err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_UTF8);
   ck_assert_str_eq (id.value.v_utf8.str, "user-42");
   bson_value_destroy (&id);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, coll, doc, &id, &err),
                         MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_int_eq (err.code, 11000);
   ck_assert_msg (strstr (err.message, "user-42") && strstr (err.message, "dup key"),
                  "key not in message: %s",
                  err.message);
   ck_assert_int_eq (id.value_type, BSON_TYPE_EOD);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 1);
   bson_destroy (doc);
   mh_test_drop (NULL, coll);
}
END_TEST

/* Issue 10: a failed call's message named the database "(default)". */
START_TEST (error_messages_name_the_database_the_call_ran_on)
{
   const char *coll = mh_test_collection ("crud_ns");
   bson_t *doc = BCON_NEW ("_id", BCON_INT32 (7));
   mongo_helper_status_t st;
   char want[256];

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, NULL, &err), err);
   mongo_helper_status (&st);
   ck_assert_str_ne (st.database, "");
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, coll, doc, NULL, &err),
                         MONGO_HELPER_ERROR_DUPLICATE_KEY);
   snprintf (want, sizeof want, " on %s.%s", st.database, coll);
   ck_assert_msg (strstr (err.message, want), "expected '%s' in: %s", want, err.message);
   ck_assert_msg (!strstr (err.message, "default"), "expected no placeholder: %s", err.message);

   /* An explicit database is named as given. */
   MH_ASSERT_OK (mongo_helper_insert_one ("mh_test_other", coll, doc, NULL, &err), err);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one ("mh_test_other", coll, doc, NULL, &err),
                         MONGO_HELPER_ERROR_DUPLICATE_KEY);
   snprintf (want, sizeof want, " on mh_test_other.%s", coll);
   ck_assert_msg (strstr (err.message, want), "expected '%s' in: %s", want, err.message);
   bson_destroy (doc);
   mh_test_drop ("mh_test_other", coll);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (json_insert_and_find_round_trip_as_relaxed_json)
{
   const char *coll = mh_test_collection ("crud");
   bson_value_t id;
   char *json;
   bson_t *back;

   MH_ASSERT_OK (
      mongo_helper_insert_one_json (NULL,
                                    coll,
                                    "{\"_id\": 7, \"name\": \"bob\", \"when\": {\"$date\": "
                                    "\"2024-01-02T03:04:05Z\"}, \"score\": 2.5}",
                                    &id,
                                    &err),
      err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_INT32);
   ck_assert_int_eq (id.value.v_int32, 7);
   json = mongo_helper_find_one_json (
      NULL, coll, "{\"name\": \"bob\"}", "{\"_id\": 0, \"name\": 1, \"when\": 1}", &err);
   MH_ASSERT_OK (json != NULL, err);
   ck_assert_str_eq (json,
                     "{ \"name\" : \"bob\", \"when\" : { \"$date\" : \"2024-01-02T03:04:05Z\" } }");
   bson_free (json);
   json = mongo_helper_find_json (
      NULL, coll, "{\"score\": {\"$gt\": 2}}", "{\"projection\": {\"score\": 1}}", &err);
   MH_ASSERT_OK (json != NULL, err);
   /* Field order within a document is the server's: compare values. */
   back = mongo_helper_json_to_bson (json, &err);
   MH_ASSERT_OK (back != NULL, err);
   ck_assert_uint_eq (mh_test_arr_len (back), 1);
   {
      bson_t d;
      bson_iter_t it;
      mh_test_arr_doc (back, 0, &d);
      ck_assert_uint_eq (bson_count_keys (&d), 2);
      ck_assert_int_eq (mh_test_int_at (&d, "_id"), 7);
      ck_assert (bson_iter_init_find (&it, &d, "score") && BSON_ITER_HOLDS_DOUBLE (&it));
      ck_assert (bson_iter_double (&it) == 2.5);
   }
   ck_assert_ptr_nonnull (strstr (json, "\"score\" : 2.5"));
   bson_destroy (back);
   bson_free (json);
   ck_assert_ptr_null (
      mongo_helper_find_one_json (NULL, coll, "{\"name\": \"nobody\"}", NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (find_by_id_json_reads_the_document_with_that_object_id)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("k", BCON_UTF8 ("v"));
   bson_value_t id;
   char hex[25], *json, expected[128];

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, &id, &err), err);
   bson_oid_to_string (&id.value.v_oid, hex);
   json = mongo_helper_find_by_id_json (NULL, coll, hex, &err);
   MH_ASSERT_OK (json != NULL, err);
   snprintf (expected, sizeof expected, "{ \"_id\" : { \"$oid\" : \"%s\" }, \"k\" : \"v\" }", hex);
   ck_assert_str_eq (json, expected);
   bson_free (json);
   ck_assert_ptr_null (mongo_helper_find_by_id_json (NULL, coll, "000000000000000000000000", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_value_destroy (&id);
   bson_destroy (doc);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (find_applies_filter_projection_sort_skip_and_limit)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *filter = BCON_NEW ("n", "{", "$gte", BCON_INT32 (2), "}");
   bson_t *sort = BCON_NEW ("n", BCON_INT32 (-1));
   bson_t *proj = BCON_NEW ("_id", BCON_INT32 (0), "n", BCON_INT32 (1));
   mongo_helper_find_opts_t o = {0};
   bson_t results, d;

   mh_test_seed (coll, 10);
   o.projection = proj;
   o.sort = sort;
   o.skip = 1;
   o.limit = 3;
   MH_ASSERT_OK (mongo_helper_find (NULL, coll, filter, &o, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 3);
   for (uint32_t i = 0; i < 3; i++) {
      mh_test_arr_doc (&results, i, &d);
      ck_assert_int_eq (mh_test_int_at (&d, "n"), 8 - (int) i);
      ck_assert_uint_eq (bson_count_keys (&d), 1); /* only "n" */
   }
   bson_destroy (&results);
   /* No filter, no options: everything. */
   MH_ASSERT_OK (mongo_helper_find (NULL, coll, NULL, NULL, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 10);
   mh_test_arr_doc (&results, 0, &d);
   ck_assert (mh_test_has_field (&d, "_id") && mh_test_has_field (&d, "tag") &&
              mh_test_has_field (&d, "even"));
   bson_destroy (&results);
   bson_destroy (filter);
   bson_destroy (sort);
   bson_destroy (proj);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (explicit_database_is_used_instead_of_the_default)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("where", BCON_UTF8 ("other"));
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_insert_one ("mh_test_other", coll, doc, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_count_documents ("mh_test_other", coll, NULL, &n, &err), err);
   ck_assert_int_eq (n, 1);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 0); /* not in the default database */
   bson_destroy (doc);
   mh_test_drop ("mh_test_other", coll);
}
END_TEST

START_TEST (update_one_many_and_upsert_report_matched_modified_and_id)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *even = BCON_NEW ("even", BCON_BOOL (true));
   bson_t *set = BCON_NEW ("$set", "{", "flag", BCON_UTF8 ("x"), "}");
   bson_t *nobody = BCON_NEW ("n", BCON_INT32 (100));
   bson_t *flagged = BCON_NEW ("flag", BCON_UTF8 ("x"));
   mongo_helper_update_result_t r;
   bson_t *doc;

   mh_test_seed (coll, 6);
   MH_ASSERT_OK (mongo_helper_update_one (NULL, coll, even, set, false, &r, &err), err);
   ck_assert_int_eq (r.matched, 1);
   ck_assert_int_eq (r.modified, 1);
   ck_assert_int_eq (r.upserted, 0);
   ck_assert_int_eq (r.upserted_id.value_type, BSON_TYPE_EOD);
   mongo_helper_update_result_cleanup (&r);
   ck_assert_int_eq (mh_test_count_documents (coll, flagged), 1);

   MH_ASSERT_OK (mongo_helper_update_many (NULL, coll, even, set, false, &r, &err), err);
   ck_assert_int_eq (r.matched, 3);
   ck_assert_int_eq (r.modified, 2); /* one already had it */
   mongo_helper_update_result_cleanup (&r);
   ck_assert_int_eq (mh_test_count_documents (coll, flagged), 3);

   MH_ASSERT_OK (mongo_helper_update_one (NULL, coll, nobody, set, true, &r, &err), err);
   ck_assert_int_eq (r.matched, 0);
   ck_assert_int_eq (r.upserted, 1);
   ck_assert_int_eq (r.upserted_id.value_type, BSON_TYPE_OID);
   mongo_helper_update_result_cleanup (&r);
   doc = mongo_helper_find_one (NULL, coll, nobody, NULL, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_str_eq (mh_test_utf8_at (doc, "flag"), "x"); /* upsert merged filter + update */
   bson_destroy (doc);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 7);

   /* An update without operators is refused by the driver, nothing sent. */
   MH_ASSERT_FAILS_WITH (mongo_helper_update_one (NULL, coll, even, flagged, false, &r, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_int_eq (r.matched, 0);
   mongo_helper_update_result_cleanup (&r);

   MH_ASSERT_OK (
      mongo_helper_update_json (
         NULL, coll, "{\"tag\": \"t0\"}", "{\"$inc\": {\"n\": 1000}}", true, false, &r, &err),
      err);
   ck_assert_int_eq (r.matched, 2);
   mongo_helper_update_result_cleanup (&r);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 7);
   {
      bson_t *big = BCON_NEW ("n", "{", "$gte", BCON_INT32 (1000), "}");
      ck_assert_int_eq (mh_test_count_documents (coll, big), 2);
      bson_destroy (big);
   }
   bson_destroy (even);
   bson_destroy (set);
   bson_destroy (nobody);
   bson_destroy (flagged);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (replace_one_replaces_the_whole_document_and_upserts)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *f1 = BCON_NEW ("n", BCON_INT32 (1));
   bson_t *repl = BCON_NEW ("n", BCON_INT32 (1), "only", BCON_UTF8 ("this"));
   bson_t *f9 = BCON_NEW ("_id", BCON_INT32 (9));
   bson_t *repl9 = BCON_NEW ("v", BCON_INT32 (9));
   mongo_helper_update_result_t r;
   bson_t *doc;

   mh_test_seed (coll, 3);
   MH_ASSERT_OK (mongo_helper_replace_one (NULL, coll, f1, repl, false, &r, &err), err);
   ck_assert_int_eq (r.matched, 1);
   ck_assert_int_eq (r.modified, 1);
   mongo_helper_update_result_cleanup (&r);
   doc = mongo_helper_find_one (NULL, coll, f1, NULL, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_str_eq (mh_test_utf8_at (doc, "only"), "this");
   ck_assert (!mh_test_has_field (doc, "tag")); /* replaced, not merged */
   bson_destroy (doc);

   MH_ASSERT_OK (mongo_helper_replace_one (NULL, coll, f9, repl9, true, &r, &err), err);
   ck_assert_int_eq (r.upserted, 1);
   ck_assert_int_eq (r.upserted_id.value_type, BSON_TYPE_INT32);
   ck_assert_int_eq (r.upserted_id.value.v_int32, 9);
   mongo_helper_update_result_cleanup (&r);
   doc = mongo_helper_find_one (NULL, coll, f9, NULL, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_int_eq (mh_test_int_at (doc, "v"), 9);
   bson_destroy (doc);
   /* A replacement with operators is refused. */
   {
      bson_t *ops = BCON_NEW ("$set", "{", "a", BCON_INT32 (1), "}");
      MH_ASSERT_FAILS_WITH (mongo_helper_replace_one (NULL, coll, f1, ops, false, &r, &err),
                            MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      mongo_helper_update_result_cleanup (&r);
      bson_destroy (ops);
   }
   bson_destroy (f1);
   bson_destroy (repl);
   bson_destroy (f9);
   bson_destroy (repl9);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (delete_one_and_many_report_and_remove_exactly_those)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *even = BCON_NEW ("even", BCON_BOOL (true));
   bson_t all = BSON_INITIALIZER;
   int64_t n = -1;

   mh_test_seed (coll, 10);
   MH_ASSERT_OK (mongo_helper_delete_one (NULL, coll, even, &n, &err), err);
   ck_assert_int_eq (n, 1);
   ck_assert_int_eq (mh_test_count_documents (coll, even), 4);
   MH_ASSERT_OK (mongo_helper_delete_many (NULL, coll, even, &n, &err), err);
   ck_assert_int_eq (n, 4);
   ck_assert_int_eq (mh_test_count_documents (coll, even), 0);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 5);
   MH_ASSERT_OK (mongo_helper_delete_many (NULL, coll, &all, &n, &err), err);
   ck_assert_int_eq (n, 5);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 0);
   bson_destroy (even);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (counts_and_distinct_read_the_collection)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *even = BCON_NEW ("even", BCON_BOOL (true));
   bson_t values;
   bson_iter_t it;
   int64_t n = -1;
   int seen[3] = {0, 0, 0};

   mh_test_seed (coll, 9);
   ck_assert_int_eq (mh_test_count_documents (coll, even), 5);
   MH_ASSERT_OK (mongo_helper_estimated_count (NULL, coll, &n, &err), err);
   ck_assert_int_eq (n, 9);
   MH_ASSERT_OK (mongo_helper_distinct (NULL, coll, "tag", NULL, &values, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&values), 3);
   ck_assert (bson_iter_init (&it, &values));
   while (bson_iter_next (&it)) {
      ck_assert (BSON_ITER_HOLDS_UTF8 (&it));
      seen[bson_iter_utf8 (&it, NULL)[1] - '0']++;
   }
   ck_assert (seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
   bson_destroy (&values);
   MH_ASSERT_OK (mongo_helper_distinct (NULL, coll, "n", even, &values, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&values), 5);
   bson_destroy (&values);
   /* A collection that does not exist counts zero. */
   MH_ASSERT_OK (mongo_helper_count_documents (NULL, "no_such_collection_xyz", NULL, &n, &err),
                 err);
   ck_assert_int_eq (n, 0);
   bson_destroy (even);
   mh_test_drop (NULL, coll);
}
END_TEST

Suite *
crud_suite (void)
{
   Suite *s = suite_create ("crud");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_set_timeout (core, 30);
   tcase_add_test (core, malformed_json_is_invalid_argument_with_position);
   tcase_add_test (core, json_with_a_top_level_array_becomes_an_array_document);
   tcase_add_test (core, null_and_empty_names_are_invalid_argument);
   tcase_add_test (core, document_over_16_mb_is_refused_before_sending);
   tcase_add_test (core, invalid_object_id_text_is_invalid_argument);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, insert_one_generates_an_object_id_and_returns_it);
   tcase_add_test (live, insert_one_keeps_the_callers_id_and_duplicate_is_its_own_category);
   tcase_add_test (live, error_messages_name_the_database_the_call_ran_on);
   tcase_add_test (live, json_insert_and_find_round_trip_as_relaxed_json);
   tcase_add_test (live, find_by_id_json_reads_the_document_with_that_object_id);
   tcase_add_test (live, find_applies_filter_projection_sort_skip_and_limit);
   tcase_add_test (live, explicit_database_is_used_instead_of_the_default);
   tcase_add_test (live, update_one_many_and_upsert_report_matched_modified_and_id);
   tcase_add_test (live, replace_one_replaces_the_whole_document_and_upserts);
   tcase_add_test (live, delete_one_and_many_report_and_remove_exactly_those);
   tcase_add_test (live, counts_and_distinct_read_the_collection);
   suite_add_tcase (s, live);
   return s;
}
