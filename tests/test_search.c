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
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT (tests/mock_server.py)");
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
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT (tests/mock_server.py)");
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

/* ---- live: the behaviour ------------------------------------------------ */

/* The "name" of each document of a result array, joined by spaces, for
 * one readable comparison of an order. */
static const char *
names_of (const bson_t *results)
{
   static char buf[256];
   size_t len = 0;
   bson_t d;

   buf[0] = '\0';
   for (uint32_t i = 0; i < mh_test_arr_len (results); i++) {
      mh_test_arr_doc (results, i, &d);
      len += (size_t) snprintf (
         buf + len, sizeof buf - len, "%s%s", i ? " " : "", mh_test_utf8_at (&d, "name"));
      ck_assert_uint_lt (len, sizeof buf);
   }
   return buf;
}

/* The number at `key` of the i-th document of a result array. */
static double
number_at (const bson_t *results, uint32_t i, const char *key)
{
   bson_t d;
   bson_iter_t it;

   mh_test_arr_doc (results, i, &d);
   ck_assert_msg (bson_iter_init_find (&it, &d, key) && BSON_ITER_HOLDS_NUMBER (&it),
                  "result %u has no number %s",
                  i,
                  key);
   return bson_iter_as_double (&it);
}

static void
insert_json (const char *coll, const char *json)
{
   MH_ASSERT_OK (mongo_helper_insert_one_json (NULL, coll, json, NULL, &err), err);
}

/* MongoDB's text score fixes two orders, whatever the exact numbers: a
 * field weighing 10 beats a field weighing 1, and among fields of the same
 * length and weight, each more query term matched scores higher. */
START_TEST (text_search_ranks_heavier_fields_and_more_matched_terms_first)
{
   const char *coll = mh_test_collection ("text");
   bson_t *keys = BCON_NEW ("title", BCON_UTF8 ("text"), "body", BCON_UTF8 ("text"));
   bson_t *opts = BCON_NEW ("weights", "{", "title", BCON_INT32 (10), "}");
   bson_t *published = BCON_NEW ("published", BCON_BOOL (true));
   bson_t results;

   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, opts, NULL, &err), err);
   /* Stored in an order that is none of the expected ones. */
   insert_json (coll, "{\"name\": \"body_coffee\", \"title\": \"other\", \"body\": \"coffee\"}");
   insert_json (coll, "{\"name\": \"title_coffee\", \"title\": \"coffee\", \"body\": \"tea\"}");
   insert_json (coll, "{\"name\": \"tea_only\", \"title\": \"tea\", \"body\": \"tea\"}");

   MH_ASSERT_OK (
      mongo_helper_text_search (NULL, coll, "coffee", "english", NULL, 5, &results, &err), err);
   ck_assert_str_eq (names_of (&results), "title_coffee body_coffee"); /* title weighs 10 */
   ck_assert_msg (number_at (&results, 0, "score") > number_at (&results, 1, "score"),
                  "expected a higher score first, got %g then %g",
                  number_at (&results, 0, "score"),
                  number_at (&results, 1, "score"));
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_text_search (NULL, coll, "coffee", NULL, NULL, 1, &results, &err),
                 err);
   ck_assert_str_eq (names_of (&results), "title_coffee"); /* the limit keeps the best */
   bson_destroy (&results);
   mh_test_drop (NULL, coll);

   /* Four-word bodies, one text field: only the number of matched terms
    * differs.  The extra filter drops a document that matches them all. */
   coll = mh_test_collection ("text");
   bson_destroy (keys);
   keys = BCON_NEW ("body", BCON_UTF8 ("text"));
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, NULL, NULL, &err), err);
   insert_json (coll,
                "{\"name\": \"one\", \"published\": true, \"body\": \"coffee water bread milk\"}");
   insert_json (coll,
                "{\"name\": \"three\", \"published\": true, \"body\": \"cake coffee milk tea\"}");
   insert_json (coll,
                "{\"name\": \"none\", \"published\": true, \"body\": \"water bread milk juice\"}");
   insert_json (coll,
                "{\"name\": \"draft\", \"published\": false, \"body\": \"coffee tea cake milk\"}");
   insert_json (coll,
                "{\"name\": \"two\", \"published\": true, \"body\": \"tea bread coffee milk\"}");
   MH_ASSERT_OK (mongo_helper_text_search (
                    NULL, coll, "coffee tea cake", "english", published, 0, &results, &err),
                 err);
   ck_assert_str_eq (names_of (&results), "three two one");
   ck_assert (number_at (&results, 0, "score") > number_at (&results, 1, "score"));
   ck_assert (number_at (&results, 1, "score") > number_at (&results, 2, "score"));
   bson_destroy (&results);
   /* No document holds the term: an empty result, not an error. */
   MH_ASSERT_OK (mongo_helper_text_search (NULL, coll, "espresso", NULL, NULL, 0, &results, &err),
                 err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 0);
   bson_destroy (&results);

   bson_destroy (keys);
   bson_destroy (opts);
   bson_destroy (published);
   mh_test_drop (NULL, coll);
}
END_TEST

/* The places of the geo test, by distance from the query point (2.35 E,
 * 48.85 N): about 0.75 km, 4.2 km, 17 km, 390 km and 660 km. */
static const char *const places[][2] = {
   {"lyon", "[4.8357, 45.7640]"},
   {"eiffel", "[2.2945, 48.8584]"},
   {"marseille", "[5.3698, 43.2965]"},
   {"centre", "[2.3522, 48.8566]"},
   {"versailles", "[2.1301, 48.8049]"},
};

START_TEST (geo_near_sorts_by_distance_within_bounds_and_geo_within_finds_shapes)
{
   const char *coll = mh_test_collection ("geo");
   bson_t *keys = BCON_NEW ("loc", BCON_UTF8 ("2dsphere"));
   /* A triangle around central Paris (holds centre and eiffel, not
    * versailles). */
   double tri[3][2] = {{2.2, 48.8}, {2.5, 48.8}, {2.35, 48.95}};
   bson_t results;
   bson_t *band, *pipeline, *circle;
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, NULL, NULL, &err), err);
   for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
      char json[160];
      snprintf (json,
                sizeof json,
                "{\"name\": \"%s\", \"loc\": {\"type\": \"Point\", \"coordinates\": %s}}",
                places[i][0],
                places[i][1]);
      insert_json (coll, json);
   }

   /* $nearSphere: nearest first, nothing beyond $maxDistance. */
   MH_ASSERT_OK (mongo_helper_geo_near (NULL, coll, "loc", 2.35, 48.85, 10000, 0, &results, &err),
                 err);
   ck_assert_str_eq (names_of (&results), "centre eiffel");
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_geo_near (NULL, coll, "loc", 2.35, 48.85, 1e6, 0, &results, &err),
                 err);
   ck_assert_str_eq (names_of (&results), "centre eiffel versailles lyon marseille");
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_geo_near (NULL, coll, "loc", 2.35, 48.85, 1e6, 2, &results, &err),
                 err);
   ck_assert_str_eq (names_of (&results), "centre eiffel");
   bson_destroy (&results);

   /* A band: $minDistance 5 km and $maxDistance 500 km, through find. */
   band = BCON_NEW ("loc",
                    "{",
                    "$nearSphere",
                    "{",
                    "$geometry",
                    "{",
                    "type",
                    BCON_UTF8 ("Point"),
                    "coordinates",
                    "[",
                    BCON_DOUBLE (2.35),
                    BCON_DOUBLE (48.85),
                    "]",
                    "}",
                    "$minDistance",
                    BCON_DOUBLE (5000),
                    "$maxDistance",
                    BCON_DOUBLE (500000),
                    "}",
                    "}");
   MH_ASSERT_OK (mongo_helper_find (NULL, coll, band, NULL, &results, &err), err);
   ck_assert_str_eq (names_of (&results), "versailles lyon");
   bson_destroy (&results);

   /* $geoNear gives the distances: ascending, inside the bounds. */
   pipeline = BCON_NEW ("pipeline",
                        "[",
                        "{",
                        "$geoNear",
                        "{",
                        "near",
                        "{",
                        "type",
                        BCON_UTF8 ("Point"),
                        "coordinates",
                        "[",
                        BCON_DOUBLE (2.35),
                        BCON_DOUBLE (48.85),
                        "]",
                        "}",
                        "distanceField",
                        BCON_UTF8 ("dist"),
                        "spherical",
                        BCON_BOOL (true),
                        "minDistance",
                        BCON_DOUBLE (500),
                        "maxDistance",
                        BCON_DOUBLE (20000),
                        "}",
                        "}",
                        "]");
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, coll, pipeline, NULL, &results, &err), err);
   ck_assert_str_eq (names_of (&results), "centre eiffel versailles");
   for (uint32_t i = 0; i < 3; i++) {
      double d = number_at (&results, i, "dist");
      ck_assert_msg (d >= 500 && d <= 20000, "distance %g of result %u is out of bounds", d, i);
      ck_assert_msg (i == 0 || d > number_at (&results, i - 1, "dist"),
                     "distance %g of result %u is not above the one before",
                     d,
                     i);
   }
   /* The centre is about 750 m away, versailles about 17 km. */
   ck_assert_msg (number_at (&results, 0, "dist") > 600 && number_at (&results, 0, "dist") < 900,
                  "centre at %g m",
                  number_at (&results, 0, "dist"));
   ck_assert_msg (number_at (&results, 2, "dist") > 15000 &&
                     number_at (&results, 2, "dist") < 19000,
                  "versailles at %g m",
                  number_at (&results, 2, "dist"));
   bson_destroy (&results);

   /* $geoWithin shapes: a polygon, circles, and a count by circle. */
   MH_ASSERT_OK (mongo_helper_geo_within_polygon (NULL, coll, "loc", &tri[0][0], 3, &results, &err),
                 err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 2);
   ck_assert_ptr_nonnull (strstr (names_of (&results), "centre"));
   ck_assert_ptr_nonnull (strstr (names_of (&results), "eiffel"));
   bson_destroy (&results);
   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, coll, "loc", 2.35, 48.85, 500000, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 4);
   ck_assert_ptr_null (strstr (names_of (&results), "marseille"));
   bson_destroy (&results);
   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, coll, "loc", 2.35, 48.85, 1000, &results, &err), err);
   ck_assert_str_eq (names_of (&results), "centre");
   bson_destroy (&results);
   circle = BCON_NEW ("loc",
                      "{",
                      "$geoWithin",
                      "{",
                      "$centerSphere",
                      "[",
                      "[",
                      BCON_DOUBLE (2.35),
                      BCON_DOUBLE (48.85),
                      "]",
                      BCON_DOUBLE (20000.0 / 6378100.0),
                      "]",
                      "}",
                      "}");
   MH_ASSERT_OK (mongo_helper_count_documents (NULL, coll, circle, &n, &err), err);
   ck_assert_int_eq (n, 3);

   bson_destroy (keys);
   bson_destroy (band);
   bson_destroy (pipeline);
   bson_destroy (circle);
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
   tcase_add_test (live, text_search_ranks_heavier_fields_and_more_matched_terms_first);
   tcase_add_test (live, geo_near_sorts_by_distance_within_bounds_and_geo_within_finds_shapes);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (cap, mh_test_capture_setup, mh_test_teardown);
   tcase_set_timeout (cap, 60);
   tcase_add_test (cap, text_search_command_is_exact);
   tcase_add_test (cap, geo_query_commands_are_exact);
   suite_add_tcase (s, cap);
   return s;
}
