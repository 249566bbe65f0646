/* src/search.c: text and geospatial search.  "core" needs no server (bad
 * input is refused first; the singleton points at a closed port);
 * "capture" reads the exact commands at a private test server; "live"
 * checks the behaviour (ranking, distance order and bounds, shapes) on the
 * test server or a real mongod (MONGO_TEST_URI). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (bad_find_options_and_geo_input_are_invalid_argument)
{
   mongo_helper_find_opts_t o = {0};
   double two[2][2] = {{0, 0}, {1, 1}};
   bson_t *near = BCON_NEW ("loc", "{", "$near", "[", BCON_DOUBLE (0), BCON_DOUBLE (0), "]", "}");
   bson_t results;
   int64_t n;

   o.limit = -1;
   MH_ASSERT_FAILS_WITH (mongo_helper_find (NULL, "c", NULL, &o, &results, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (mongo_helper_geo_near (NULL, "c", "loc", 181, 0, 10, 0, &results, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_geo_within_circle (NULL, "c", "loc", 0, -91, 10, &results, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_geo_within_polygon (NULL, "c", "loc", &two[0][0], 2, &results, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (mongo_helper_text_search (NULL, "c", "", NULL, NULL, 0, &results, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   MH_ASSERT_FAILS_WITH (mongo_helper_count_documents (NULL, "c", near, &n, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "$geoWithin"));
   bson_destroy (near);
}
END_TEST

/* ---- capture: the exact commands -------------------------------------- */

START_TEST (text_search_command_is_exact)
{
   bson_t *extra;
   bson_t results;
   char *json;

   if (!mh_test_capturing ()) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   extra = BCON_NEW ("published", BCON_BOOL (true));
   MH_ASSERT_FAILS_WITH (
      mongo_helper_text_search (
         NULL, "articles", "mongo c driver", "english", extra, 5, &results, &err),
      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 27);
   bson_destroy (&results);
   json = mh_test_captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"articles\", \"filter\" : { \"$text\" : { \"$search\" : \"mongo c driver\", "
      "\"$language\" : \"english\" }, \"published\" : true }, \"projection\" : { \"score\" : "
      "{ \"$meta\" : \"textScore\" } }, \"sort\" : { \"score\" : { \"$meta\" : \"textScore\" } }, "
      "\"limit\" : { \"$numberLong\" : \"5\" } }");
   bson_free (json);
   bson_destroy (extra);
}
END_TEST

START_TEST (geo_query_commands_are_exact)
{
   double tri[3][2] = {{2.0, 48.0}, {3.0, 48.0}, {2.5, 49.0}};
   bson_t results;
   char *json;

   if (!mh_test_capturing ()) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   MH_ASSERT_FAILS_WITH (
      mongo_helper_geo_near (NULL, "places", "loc", 2.35, 48.85, 1500, 10, &results, &err),
      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 291);
   bson_destroy (&results);
   json = mh_test_captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"places\", \"filter\" : { \"loc\" : { \"$nearSphere\" : { \"$geometry\" : "
      "{ \"type\" : \"Point\", \"coordinates\" : [ { \"$numberDouble\" : \"2.3500000000000000888\" "
      "}, "
      "{ \"$numberDouble\" : \"48.850000000000001421\" } ] }, \"$maxDistance\" : "
      "{ \"$numberDouble\" : \"1500.0\" } } } }, \"limit\" : { \"$numberLong\" : \"10\" } }");
   bson_free (json);

   /* $geoWithin needs no index: the empty collection gives no match. */
   MH_ASSERT_OK (
      mongo_helper_geo_within_polygon (NULL, "places", "loc", &tri[0][0], 3, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 0);
   bson_destroy (&results);
   json = mh_test_captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"places\", \"filter\" : { \"loc\" : { \"$geoWithin\" : { \"$geometry\" : "
      "{ \"type\" : \"Polygon\", \"coordinates\" : [ [ [ { \"$numberDouble\" : \"2.0\" }, "
      "{ \"$numberDouble\" : \"48.0\" } ], [ { \"$numberDouble\" : \"3.0\" }, { \"$numberDouble\" "
      ": "
      "\"48.0\" } ], [ { \"$numberDouble\" : \"2.5\" }, { \"$numberDouble\" : \"49.0\" } ], "
      "[ { \"$numberDouble\" : \"2.0\" }, { \"$numberDouble\" : \"48.0\" } ] ] ] } } } } }");
   bson_free (json);

   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, "places", "loc", 0.0, 0.0, 6378100.0, &results, &err),
      err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 0);
   bson_destroy (&results);
   json = mh_test_captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"places\", \"filter\" : { \"loc\" : { \"$geoWithin\" : { \"$centerSphere\" : "
      "[ [ { \"$numberDouble\" : \"0.0\" }, { \"$numberDouble\" : \"0.0\" } ], "
      "{ \"$numberDouble\" : \"1.0\" } ] } } } }");
   bson_free (json);
}
END_TEST

/* ---- real mongod only: the behaviour ----------------------------------- */

START_TEST (text_search_ranks_by_score_on_a_real_server)
{
   const char *coll = mh_test_collection ("text");
   bson_t *keys, *opts;
   bson_t results, d;

   if (mh_test_on_mock ()) {
      MH_SKIP ("the test server has no $text (code 27); set MONGO_TEST_URI to a real mongod");
   }
   keys = BCON_NEW ("title", BCON_UTF8 ("text"), "body", BCON_UTF8 ("text"));
   opts = BCON_NEW ("weights", "{", "title", BCON_INT32 (10), "}");
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, opts, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (
                    NULL, coll, "{\"title\": \"other\", \"body\": \"coffee\"}", NULL, &err),
                 err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (
                    NULL, coll, "{\"title\": \"coffee\", \"body\": \"tea\"}", NULL, &err),
                 err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (
                    NULL, coll, "{\"title\": \"tea\", \"body\": \"tea\"}", NULL, &err),
                 err);
   MH_ASSERT_OK (
      mongo_helper_text_search (NULL, coll, "coffee", "english", NULL, 5, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 2);
   mh_test_arr_doc (&results, 0, &d);
   ck_assert_str_eq (mh_test_utf8_at (&d, "title"), "coffee"); /* title weighs 10 */
   {
      bson_t d2;
      bson_iter_t a, b;
      mh_test_arr_doc (&results, 1, &d2);
      ck_assert (bson_iter_init_find (&a, &d, "score") && bson_iter_init_find (&b, &d2, "score"));
      ck_assert (bson_iter_as_double (&a) > bson_iter_as_double (&b));
   }
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_text_search (NULL, coll, "coffee", NULL, NULL, 1, &results, &err),
                 err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 1);
   bson_destroy (&results);
   bson_destroy (keys);
   bson_destroy (opts);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (geo_near_and_within_find_the_right_places_on_a_real_server)
{
   const char *coll = mh_test_collection ("geo");
   bson_t *keys;
   /* Paris centre, the Eiffel tower (~3.6 km away), Lyon (~390 km). */
   double tri[3][2] = {{2.2, 48.8}, {2.5, 48.8}, {2.35, 48.95}};
   bson_t results, d;

   if (mh_test_on_mock ()) {
      MH_SKIP ("the test server has no $nearSphere (291) or $geoWithin; set MONGO_TEST_URI to a "
               "real mongod");
   }
   keys = BCON_NEW ("loc", BCON_UTF8 ("2dsphere"));
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, NULL, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (NULL,
                                               coll,
                                               "{\"name\": \"centre\", \"loc\": {\"type\": "
                                               "\"Point\", \"coordinates\": [2.3522, 48.8566]}}",
                                               NULL,
                                               &err),
                 err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (NULL,
                                               coll,
                                               "{\"name\": \"eiffel\", \"loc\": {\"type\": "
                                               "\"Point\", \"coordinates\": [2.2945, 48.8584]}}",
                                               NULL,
                                               &err),
                 err);
   MH_ASSERT_OK (
      mongo_helper_insert_one_json (
         NULL,
         coll,
         "{\"name\": \"lyon\", \"loc\": {\"type\": \"Point\", \"coordinates\": [4.8357, 45.7640]}}",
         NULL,
         &err),
      err);
   MH_ASSERT_OK (mongo_helper_geo_near (NULL, coll, "loc", 2.35, 48.85, 10000, 0, &results, &err),
                 err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 2);
   mh_test_arr_doc (&results, 0, &d);
   ck_assert_str_eq (mh_test_utf8_at (&d, "name"), "centre");
   mh_test_arr_doc (&results, 1, &d);
   ck_assert_str_eq (mh_test_utf8_at (&d, "name"), "eiffel");
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_geo_within_polygon (NULL, coll, "loc", &tri[0][0], 3, &results, &err),
                 err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 2);
   bson_destroy (&results);
   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, coll, "loc", 2.35, 48.85, 500000, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 3);
   bson_destroy (&results);
   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, coll, "loc", 2.35, 48.85, 1000, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 1);
   bson_destroy (&results);
   bson_destroy (keys);
   mh_test_drop (NULL, coll);
}
END_TEST

Suite *
search_suite (void)
{
   Suite *s = suite_create ("search");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");
   TCase *cap = tcase_create ("capture");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_set_timeout (core, 30);
   tcase_add_test (core, bad_find_options_and_geo_input_are_invalid_argument);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, text_search_ranks_by_score_on_a_real_server);
   tcase_add_test (live, geo_near_and_within_find_the_right_places_on_a_real_server);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (cap, mh_test_capture_setup, mh_test_teardown);
   tcase_set_timeout (cap, 60);
   tcase_add_test (cap, text_search_command_is_exact);
   tcase_add_test (cap, geo_query_commands_are_exact);
   suite_add_tcase (s, cap);
   return s;
}
