/* src/index.c: index creation, listing and dropping.  "live" runs against
 * the test server; "capture" reads the exact commands of the text and
 * 2dsphere indexes at a private test server, and what the server built. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* The index description named `name` in a listIndexes array, or false. */
static bool
find_index (const bson_t *indexes, const char *name, bson_t *out)
{
   for (uint32_t i = 0; i < mh_test_arr_len (indexes); i++) {
      mh_test_arr_doc (indexes, i, out);
      if (strcmp (mh_test_utf8_at (out, "name"), name) == 0) {
         return true;
      }
   }
   return false;
}

START_TEST (single_compound_unique_and_ttl_indexes_are_created_listed_and_dropped)
{
   const char *coll = mh_test_collection ("idx");
   bson_t *k1 = BCON_NEW ("email", BCON_INT32 (1));
   bson_t *k2 = BCON_NEW ("user", BCON_INT32 (1), "ts", BCON_INT32 (-1));
   bson_t *k3 = BCON_NEW ("created", BCON_INT32 (1));
   bson_t *unique = BCON_NEW ("unique", BCON_BOOL (true));
   bson_t *ttl =
      BCON_NEW ("expireAfterSeconds", BCON_INT32 (3600), "name", BCON_UTF8 ("ttl_created"));
   bson_t *a = BCON_NEW ("email", BCON_UTF8 ("a@example.com"));
   bson_t indexes, d;
   char *name = NULL;

   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k1, unique, &name, &err), err);
   ck_assert_str_eq (name, "email_1");
   bson_free (name);
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k2, NULL, &name, &err), err);
   ck_assert_str_eq (name, "user_1_ts_-1");
   bson_free (name);
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k3, ttl, NULL, &err), err);
   /* Same specification again: no error. */
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k1, unique, NULL, &err), err);

   MH_ASSERT_OK (mongo_helper_list_indexes (NULL, coll, &indexes, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&indexes), 4); /* with _id_ */
   ck_assert (find_index (&indexes, "email_1", &d));
   ck_assert_int_eq (mh_test_int_at (&d, "key.email"), 1);
   {
      bson_iter_t it;
      ck_assert (bson_iter_init_find (&it, &d, "unique") && bson_iter_as_bool (&it));
   }
   ck_assert (find_index (&indexes, "user_1_ts_-1", &d));
   ck_assert_int_eq (mh_test_int_at (&d, "key.ts"), -1);
   ck_assert (find_index (&indexes, "ttl_created", &d));
   ck_assert_int_eq (mh_test_int_at (&d, "expireAfterSeconds"), 3600);
   bson_destroy (&indexes);

   /* The unique index is enforced. */
   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, a, NULL, &err), err);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, coll, a, NULL, &err),
                         MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_ptr_nonnull (strstr (err.message, "a@example.com"));

   MH_ASSERT_OK (mongo_helper_drop_index (NULL, coll, "user_1_ts_-1", &err), err);
   MH_ASSERT_OK (mongo_helper_list_indexes (NULL, coll, &indexes, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&indexes), 3);
   ck_assert (!find_index (&indexes, "user_1_ts_-1", &d));
   bson_destroy (&indexes);
   MH_ASSERT_FAILS_WITH (mongo_helper_drop_index (NULL, coll, "user_1_ts_-1", &err),
                         MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 27);

   bson_destroy (k1);
   bson_destroy (k2);
   bson_destroy (k3);
   bson_destroy (unique);
   bson_destroy (ttl);
   bson_destroy (a);
   mh_test_drop (NULL, coll);
}
END_TEST

/* ---- capture: the exact commands -------------------------------------- */

START_TEST (text_and_2dsphere_index_commands_are_exact)
{
   bson_t *text, *topts, *geo;
   bson_t indexes, d;
   char *json, *name = NULL;

   if (!mh_test_capturing ()) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT (tests/mock_server.py)");
   }
   text = BCON_NEW ("title", BCON_UTF8 ("text"), "body", BCON_UTF8 ("text"));
   topts = BCON_NEW ("weights",
                     "{",
                     "title",
                     BCON_INT32 (10),
                     "body",
                     BCON_INT32 (2),
                     "}",
                     "default_language",
                     BCON_UTF8 ("english"));
   geo = BCON_NEW ("loc", BCON_UTF8 ("2dsphere"));
   MH_ASSERT_OK (mongo_helper_create_index (NULL, "articles", text, topts, &name, &err), err);
   ck_assert_str_eq (name, "title_text_body_text");
   bson_free (name);
   json = mh_test_captured ("createIndexes");
   ck_assert_str_eq (
      json,
      "{ \"createIndexes\" : \"articles\", \"indexes\" : [ { \"key\" : { \"title\" : \"text\", "
      "\"body\" : \"text\" }, \"name\" : \"title_text_body_text\", \"weights\" : { \"title\" : "
      "{ \"$numberInt\" : \"10\" }, \"body\" : { \"$numberInt\" : \"2\" } }, "
      "\"default_language\" : \"english\" } ] }");
   bson_free (json);
   /* What the server built from it: a text index keeps its options. */
   MH_ASSERT_OK (mongo_helper_list_indexes (NULL, "articles", &indexes, &err), err);
   ck_assert_msg (find_index (&indexes, "title_text_body_text", &d),
                  "no index title_text_body_text in listIndexes");
   ck_assert_int_eq (mh_test_int_at (&d, "weights.title"), 10);
   ck_assert_int_eq (mh_test_int_at (&d, "weights.body"), 2);
   ck_assert_str_eq (mh_test_utf8_at (&d, "default_language"), "english");
   bson_destroy (&indexes);

   MH_ASSERT_OK (mongo_helper_create_index (NULL, "places", geo, NULL, &name, &err), err);
   ck_assert_str_eq (name, "loc_2dsphere");
   bson_free (name);
   json = mh_test_captured ("createIndexes");
   ck_assert_str_eq (
      json,
      "{ \"createIndexes\" : \"places\", \"indexes\" : [ { \"key\" : { \"loc\" : \"2dsphere\" }, "
      "\"name\" : \"loc_2dsphere\" } ] }");
   bson_free (json);
   MH_ASSERT_OK (mongo_helper_list_indexes (NULL, "places", &indexes, &err), err);
   ck_assert_msg (find_index (&indexes, "loc_2dsphere", &d),
                  "no index loc_2dsphere in listIndexes");
   ck_assert_str_eq (mh_test_utf8_at (&d, "key.loc"), "2dsphere");
   bson_destroy (&indexes);
   bson_destroy (text);
   bson_destroy (topts);
   bson_destroy (geo);
}
END_TEST

Suite *
index_suite (void)
{
   Suite *s = suite_create ("index");
   TCase *live = tcase_create ("live");
   TCase *cap = tcase_create ("capture");

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, single_compound_unique_and_ttl_indexes_are_created_listed_and_dropped);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (cap, mh_test_capture_setup, mh_test_teardown);
   tcase_set_timeout (cap, 60);
   tcase_add_test (cap, text_and_2dsphere_index_commands_are_exact);
   suite_add_tcase (s, cap);
   return s;
}
