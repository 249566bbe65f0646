/* src/stream.c: find and aggregate results delivered in chunks.  "core"
 * needs no server (bad sizes are refused first; the singleton points at
 * a closed port); "live" streams from the test server; "capture" reads
 * the exact commands at a private test server. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static bool
count_chunk (const bson_t *const *docs, size_t n, void *data)
{
   (void) docs;
   *(size_t *) data += n;
   return true;
}

START_TEST (batch_and_chunk_size_zero_are_invalid_argument)
{
   bson_t *doc = BCON_NEW ("a", BCON_INT32 (1));
   const bson_t *docs[1] = {doc};
   bson_t *pipeline = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   mongo_helper_bulk_result_t *r = (void *) 1;
   size_t seen = 0;

   MH_ASSERT_FAILS_WITH (mongo_helper_bulk_insert (NULL, "c", docs, 1, 0, true, &r, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "batch_size"));
   ck_assert_ptr_null (r);
   MH_ASSERT_FAILS_WITH (mongo_helper_bulk_insert (NULL, "c", NULL, 0, 10, true, &r, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_find_stream (NULL, "c", NULL, NULL, 0, count_chunk, &seen, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_aggregate_stream (NULL, "c", pipeline, NULL, 0, count_chunk, &seen, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_find_stream (NULL, "c", NULL, NULL, 5, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_uint_eq (seen, 0);
   bson_destroy (doc);
   bson_destroy (pipeline);
}
END_TEST

/* ---- live ------------------------------------------------------------- */

typedef struct {
   size_t chunks;
   size_t docs;
   size_t max_chunk;
   size_t stop_after; /* chunks; 0: never */
   int32_t last_n;
   bool ordered;
} chunk_log_t;

static bool
log_chunk (const bson_t *const *docs, size_t n, void *data)
{
   chunk_log_t *l = data;

   l->chunks++;
   l->docs += n;
   if (n > l->max_chunk) {
      l->max_chunk = n;
   }
   for (size_t i = 0; i < n; i++) {
      int32_t v = (int32_t) mh_test_int_at (docs[i], "n");
      if (l->docs - n + i > 0 && v <= l->last_n) {
         l->ordered = false;
      }
      l->last_n = v;
   }
   return l->stop_after == 0 || l->chunks < l->stop_after;
}

START_TEST (find_stream_delivers_sorted_chunks_and_stops_early)
{
   const char *coll = mh_test_collection ("stream");
   bson_t *filter = BCON_NEW ("n", "{", "$gte", BCON_INT32 (5), "}");
   bson_t *sort = BCON_NEW ("n", BCON_INT32 (1));
   mongo_helper_find_opts_t o = {0};
   chunk_log_t l = {0, 0, 0, 0, -1, true};

   mh_test_seed (coll, 300);
   o.sort = sort;
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, coll, filter, &o, 40, log_chunk, &l, &err), err);
   ck_assert_uint_eq (l.docs, 295);
   ck_assert_uint_eq (l.chunks, 8); /* 7 x 40 + 15 */
   ck_assert_uint_eq (l.max_chunk, 40);
   ck_assert (l.ordered);
   ck_assert_int_eq (l.last_n, 299);

   memset (&l, 0, sizeof l);
   l.ordered = true;
   l.stop_after = 2;
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, coll, filter, &o, 40, log_chunk, &l, &err), err);
   ck_assert_uint_eq (l.chunks, 2);
   ck_assert_uint_eq (l.docs, 80);
   ck_assert_int_eq (l.last_n, 84);
   bson_destroy (filter);
   bson_destroy (sort);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (aggregate_stream_delivers_chunks_and_stops_early)
{
   const char *coll = mh_test_collection ("stream");
   bson_t *pipeline = BCON_NEW ("0",
                                "{",
                                "$match",
                                "{",
                                "even",
                                BCON_BOOL (true),
                                "}",
                                "}",
                                "1",
                                "{",
                                "$sort",
                                "{",
                                "n",
                                BCON_INT32 (1),
                                "}",
                                "}");
   mongo_helper_aggregate_opts_t o = {true, 0};
   chunk_log_t l = {0, 0, 0, 0, -1, true};

   mh_test_seed (coll, 200);
   MH_ASSERT_OK (mongo_helper_aggregate_stream (NULL, coll, pipeline, &o, 30, log_chunk, &l, &err),
                 err);
   ck_assert_uint_eq (l.docs, 100);
   ck_assert_uint_eq (l.chunks, 4);
   ck_assert_uint_eq (l.max_chunk, 30);
   ck_assert (l.ordered);
   ck_assert_int_eq (l.last_n, 198);
   memset (&l, 0, sizeof l);
   l.stop_after = 1;
   MH_ASSERT_OK (
      mongo_helper_aggregate_stream (NULL, coll, pipeline, NULL, 30, log_chunk, &l, &err), err);
   ck_assert_uint_eq (l.docs, 30);
   bson_destroy (pipeline);
   mh_test_drop (NULL, coll);
}
END_TEST

/* ---- capture: the exact commands -------------------------------------- */

START_TEST (stream_and_aggregate_options_are_sent_as_batch_size_and_allow_disk_use)
{
   bson_t *pipeline, *sort;
   mongo_helper_aggregate_opts_t o = {true, 0};
   chunk_log_t l = {0, 0, 0, 0, -1, true};
   mongo_helper_find_opts_t fo = {0};
   char *json;

   if (!mh_test_capturing ()) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   pipeline = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   sort = BCON_NEW ("n", BCON_INT32 (1));
   MH_ASSERT_OK (mongo_helper_aggregate_stream (NULL, "c", pipeline, &o, 25, log_chunk, &l, &err),
                 err);
   json = mh_test_captured ("aggregate");
   ck_assert_str_eq (
      json,
      "{ \"aggregate\" : \"c\", \"pipeline\" : [ { \"$match\" : {  } } ], \"cursor\" : "
      "{ \"batchSize\" : { \"$numberInt\" : \"25\" } }, \"allowDiskUse\" : true }");
   bson_free (json);
   fo.sort = sort;
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, "c", NULL, &fo, 25, log_chunk, &l, &err), err);
   json = mh_test_captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"c\", \"filter\" : {  }, \"sort\" : { \"n\" : { \"$numberInt\" : \"1\" } }, "
      "\"batchSize\" : { \"$numberInt\" : \"25\" } }");
   bson_free (json);
   bson_destroy (pipeline);
   bson_destroy (sort);
}
END_TEST

Suite *
stream_suite (void)
{
   Suite *s = suite_create ("stream");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");
   TCase *cap = tcase_create ("capture");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_set_timeout (core, 30);
   tcase_add_test (core, batch_and_chunk_size_zero_are_invalid_argument);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, find_stream_delivers_sorted_chunks_and_stops_early);
   tcase_add_test (live, aggregate_stream_delivers_chunks_and_stops_early);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (cap, mh_test_capture_setup, mh_test_teardown);
   tcase_set_timeout (cap, 60);
   tcase_add_test (cap, stream_and_aggregate_options_are_sent_as_batch_size_and_allow_disk_use);
   suite_add_tcase (s, cap);
   return s;
}
