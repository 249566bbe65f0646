/* src/aggregate.c: aggregation pipelines against the test server
 * (MONGO_TEST_URI), results read back. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (aggregate_groups_and_honours_options)
{
   const char *coll = mh_test_collection ("agg");
   bson_t *pipeline = BCON_NEW ("0",
                                "{",
                                "$group",
                                "{",
                                "_id",
                                BCON_UTF8 ("$tag"),
                                "total",
                                "{",
                                "$sum",
                                BCON_UTF8 ("$n"),
                                "}",
                                "}",
                                "}",
                                "1",
                                "{",
                                "$sort",
                                "{",
                                "_id",
                                BCON_INT32 (1),
                                "}",
                                "}");
   mongo_helper_aggregate_opts_t o = {true, 2};
   bson_t results, d;
   char *json;

   mh_test_seed (coll, 9); /* t0: 0+3+6, t1: 1+4+7, t2: 2+5+8 */
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, coll, pipeline, &o, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 3);
   for (uint32_t i = 0; i < 3; i++) {
      char tag[4];
      snprintf (tag, sizeof tag, "t%u", i);
      mh_test_arr_doc (&results, i, &d);
      ck_assert_str_eq (mh_test_utf8_at (&d, "_id"), tag);
      ck_assert_int_eq (mh_test_int_at (&d, "total"), 9 + 3 * (int) i);
   }
   bson_destroy (&results);
   json = mongo_helper_aggregate_json (NULL,
                                       coll,
                                       "[{\"$match\": {\"n\": {\"$lt\": 2}}}, {\"$project\": "
                                       "{\"_id\": 0, \"n\": 1}}, {\"$sort\": {\"n\": 1}}]",
                                       NULL,
                                       &err);
   MH_ASSERT_OK (json != NULL, err);
   ck_assert_str_eq (json, "[{ \"n\" : 0 }, { \"n\" : 1 }]");
   bson_free (json);
   bson_destroy (pipeline);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (lookup_facet_and_graph_lookup_pipelines_work)
{
   const char *users = mh_test_collection ("users");
   char orders[96];
   bson_t results, d;
   char *json, pipe[600];
   bson_t *p;

   snprintf (orders, sizeof orders, "%s_orders", users);
   p = mongo_helper_json_to_bson ("[{\"_id\": 1, \"name\": \"ann\", \"boss\": null},"
                                  " {\"_id\": 2, \"name\": \"ben\", \"boss\": 1},"
                                  " {\"_id\": 3, \"name\": \"cy\", \"boss\": 2}]",
                                  &err);
   {
      const bson_t *docs[3];
      bson_t u[3];
      int64_t n;
      for (uint32_t i = 0; i < 3; i++) {
         mh_test_arr_doc (p, i, &u[i]);
         docs[i] = &u[i];
      }
      MH_ASSERT_OK (mongo_helper_insert_many (NULL, users, docs, 3, true, &n, &err), err);
   }
   bson_destroy (p);
   MH_ASSERT_OK (
      mongo_helper_insert_one_json (NULL, orders, "{\"user\": 2, \"amount\": 5}", NULL, &err), err);
   MH_ASSERT_OK (
      mongo_helper_insert_one_json (NULL, orders, "{\"user\": 2, \"amount\": 7}", NULL, &err), err);

   /* $lookup: ben has two orders. */
   snprintf (
      pipe,
      sizeof pipe,
      "[{\"$match\": {\"_id\": 2}}, {\"$lookup\": {\"from\": \"%s\", \"localField\": \"_id\","
      " \"foreignField\": \"user\", \"as\": \"orders\"}}]",
      orders);
   p = mongo_helper_json_to_bson (pipe, &err);
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, users, p, NULL, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 1);
   mh_test_arr_doc (&results, 0, &d);
   ck_assert_int_eq (mh_test_int_at (&d, "orders.1.amount"), 7);
   bson_destroy (&results);
   bson_destroy (p);

   /* $facet: two views in one pass. */
   json = mongo_helper_aggregate_json (
      NULL,
      users,
      "[{\"$facet\": {\"n\": [{\"$count\": \"c\"}], \"top\": [{\"$sort\": {\"_id\": -1}}, "
      "{\"$limit\": 1}, {\"$project\": {\"name\": 1}}]}}]",
      NULL,
      &err);
   MH_ASSERT_OK (json != NULL, err);
   ck_assert_str_eq (
      json, "[{ \"n\" : [ { \"c\" : 3 } ], \"top\" : [ { \"_id\" : 3, \"name\" : \"cy\" } ] }]");
   bson_free (json);

   /* $graphLookup: cy's chain of bosses is ben then ann. */
   snprintf (
      pipe,
      sizeof pipe,
      "[{\"$match\": {\"_id\": 3}}, {\"$graphLookup\": {\"from\": \"%s\", \"startWith\": \"$boss\","
      " \"connectFromField\": \"boss\", \"connectToField\": \"_id\", \"as\": \"chain\","
      " \"depthField\": \"depth\"}}]",
      users);
   p = mongo_helper_json_to_bson (pipe, &err);
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, users, p, NULL, &results, &err), err);
   ck_assert_uint_eq (mh_test_arr_len (&results), 1);
   mh_test_arr_doc (&results, 0, &d);
   {
      bson_iter_t it, chain;
      int names = 0;
      ck_assert (bson_iter_init_find (&it, &d, "chain") && bson_iter_recurse (&it, &chain));
      while (bson_iter_next (&chain)) {
         bson_t m;
         const uint8_t *data;
         uint32_t len;
         bson_iter_document (&chain, &len, &data);
         bson_init_static (&m, data, len);
         if (strcmp (mh_test_utf8_at (&m, "name"), "ben") == 0) {
            ck_assert_int_eq (mh_test_int_at (&m, "depth"), 0);
            names |= 1;
         } else if (strcmp (mh_test_utf8_at (&m, "name"), "ann") == 0) {
            ck_assert_int_eq (mh_test_int_at (&m, "depth"), 1);
            names |= 2;
         } else {
            ck_abort_msg ("unexpected %s in chain", mh_test_utf8_at (&m, "name"));
         }
      }
      ck_assert_int_eq (names, 3);
   }
   bson_destroy (&results);
   bson_destroy (p);
   mh_test_drop (NULL, users);
   mh_test_drop (NULL, orders);
}
END_TEST

START_TEST (server_errors_in_pipelines_keep_their_code)
{
   const char *coll = mh_test_collection ("agg");
   bson_t *bad = BCON_NEW ("0", "{", "$noSuchStage", "{", "}", "}");
   bson_t results;

   mh_test_seed (coll, 1);
   MH_ASSERT_FAILS_WITH (mongo_helper_aggregate (NULL, coll, bad, NULL, &results, &err),
                         MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 40324);
   ck_assert_ptr_nonnull (strstr (err.message, "$noSuchStage"));
   ck_assert_uint_eq (mh_test_arr_len (&results), 0);
   bson_destroy (&results);
   bson_destroy (bad);
   mh_test_drop (NULL, coll);
}
END_TEST

Suite *
aggregate_suite (void)
{
   Suite *s = suite_create ("aggregate");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, aggregate_groups_and_honours_options);
   tcase_add_test (live, lookup_facet_and_graph_lookup_pipelines_work);
   tcase_add_test (live, server_errors_in_pipelines_keep_their_code);
   suite_add_tcase (s, live);
   return s;
}
