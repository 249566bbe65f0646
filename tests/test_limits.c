/* Limits: every size, count and duration a caller passes to a connector
 * operation, at the edges of its documented range (0, 1, the maximum, the
 * maximum + 1, SIZE_MAX or its type's extremes).  The byte cap on results
 * and the settings are in test_limits_caps.c; the helpers both use in
 * limits_fixture.h.  Run under ASan and UBSan by `make sanitize`. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

#include "limits_fixture.h"

/* The library let the value through: the call succeeded, or what stopped
 * it came from the server (e.g. the test server has no $text). */
#define ASSERT_NOT_REFUSED(call)                                                    \
   do {                                                                             \
      memset (&err, 0, sizeof err);                                                 \
      ck_assert_msg ((call) || err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT, \
                     "%s: refused: %s",                                             \
                     #call,                                                         \
                     err.message);                                                  \
   } while (0)

static bool
on_mock (void)
{
   const char *m = getenv ("MH_MOCK_SERVER");
   return m && *m;
}

static bool
aggregate_stream (size_t chunk_size, chunks_t *c)
{
   bson_t *p = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   bool ok;

   memset (c, 0, sizeof *c);
   ok = mongo_helper_aggregate_stream (NULL, coll, p, NULL, chunk_size, record_chunk, c, &err);
   bson_destroy (p);
   return ok;
}

START_TEST (stream_chunk_size_is_1_to_100000)
{
   bool (*streams[2]) (size_t, chunks_t *) = {find_stream, aggregate_stream};
   chunks_t c;

   ck_assert_int_eq (MONGO_HELPER_MAX_CHUNK_SIZE, 100000);
   insert_numbered (3);
   for (int s = 0; s < 2; s++) {
      ASSERT_REFUSED (streams[s](0, &c), "chunk_size is 0");
      ASSERT_REFUSED (streams[s](MONGO_HELPER_MAX_CHUNK_SIZE + 1, &c), "1 to 100000");
      ASSERT_REFUSED (streams[s](SIZE_MAX, &c), "1 to 100000");
      ck_assert_uint_eq (c.chunks, 0);

      MH_ASSERT_OK (streams[s](1, &c), err);
      ck_assert_uint_eq (c.chunks, 3);
      ck_assert_uint_eq (c.docs, 3);
      MH_ASSERT_OK (streams[s](MONGO_HELPER_MAX_CHUNK_SIZE, &c), err);
      ck_assert_uint_eq (c.chunks, 1);
      ck_assert_uint_eq (c.sizes[0], 3);
   }
}
END_TEST

/* ---- find and aggregate options ---- */

static size_t
find_with (int64_t skip, int64_t limit, int32_t batch_size)
{
   mongo_helper_find_opts_t o = {0};
   bson_t res;
   size_t n;

   o.skip = skip;
   o.limit = limit;
   o.batch_size = batch_size;
   o.sort = BCON_NEW ("_id", BCON_INT32 (1));
   memset (&err, 0, sizeof err);
   if (!mongo_helper_find (NULL, coll, NULL, &o, &res, &err)) {
      n = SIZE_MAX;
   } else {
      n = bson_count_keys (&res);
   }
   bson_destroy (&res);
   bson_destroy ((bson_t *) o.sort);
   return n;
}

START_TEST (find_options_take_their_whole_type_range_but_no_negatives)
{
   insert_numbered (3);
   ASSERT_REFUSED (find_with (-1, 0, 0) != SIZE_MAX, "must not be negative");
   ASSERT_REFUSED (find_with (INT64_MIN, 0, 0) != SIZE_MAX, "must not be negative");
   ASSERT_REFUSED (find_with (0, -1, 0) != SIZE_MAX, "must not be negative");
   ASSERT_REFUSED (find_with (0, INT64_MIN, 0) != SIZE_MAX, "must not be negative");
   ASSERT_REFUSED (find_with (0, 0, -1) != SIZE_MAX, "must not be negative");
   ASSERT_REFUSED (find_with (0, 0, INT32_MIN) != SIZE_MAX, "must not be negative");

   ck_assert_uint_eq (find_with (0, 0, 0), 3);
   ck_assert_uint_eq (find_with (1, 0, 0), 2);
   ck_assert_uint_eq (find_with (INT64_MAX, 0, 0), 0);
   ck_assert_uint_eq (find_with (0, 1, 0), 1);
   ck_assert_uint_eq (find_with (0, INT64_MAX, 0), 3);
   ck_assert_uint_eq (find_with (0, 0, 1), 3);
   ck_assert_uint_eq (find_with (0, 0, INT32_MAX), 3);
}
END_TEST

static size_t
aggregate_with (int32_t batch_size)
{
   mongo_helper_aggregate_opts_t o = {false, batch_size};
   bson_t *p = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   bson_t res;
   size_t n = SIZE_MAX;

   memset (&err, 0, sizeof err);
   if (mongo_helper_aggregate (NULL, coll, p, &o, &res, &err)) {
      n = bson_count_keys (&res);
   }
   bson_destroy (&res);
   bson_destroy (p);
   return n;
}

START_TEST (aggregate_batch_size_is_0_to_int32_max)
{
   insert_numbered (3);
   ASSERT_REFUSED (aggregate_with (-1) != SIZE_MAX, "must not be negative");
   ASSERT_REFUSED (aggregate_with (INT32_MIN) != SIZE_MAX, "must not be negative");
   ck_assert_uint_eq (aggregate_with (0), 3);
   ck_assert_uint_eq (aggregate_with (1), 3);
   ck_assert_uint_eq (aggregate_with (INT32_MAX), 3);
}
END_TEST

/* ---- inserts ---- */

START_TEST (insert_many_takes_1_to_100000_documents)
{
   size_t max = MONGO_HELPER_MAX_WRITE_BATCH;
   bson_t *one = BCON_NEW ("x", BCON_INT32 (1));
   const bson_t **docs = calloc (max + 1, sizeof *docs);
   int64_t n = -1;

   ck_assert_int_eq (MONGO_HELPER_MAX_WRITE_BATCH, 100000);
   ck_assert_ptr_nonnull (docs);
   for (size_t i = 0; i < max + 1; i++) {
      docs[i] = one;
   }
   ASSERT_REFUSED (mongo_helper_insert_many (NULL, coll, docs, 0, true, &n, &err),
                   "no documents given");
   ASSERT_REFUSED (mongo_helper_insert_many (NULL, coll, docs, max + 1, true, &n, &err),
                   "over MONGO_HELPER_MAX_WRITE_BATCH (100000)");
   /* SIZE_MAX: refused on the count alone, the array is never read. */
   ASSERT_REFUSED (mongo_helper_insert_many (NULL, coll, docs, SIZE_MAX, true, &n, &err),
                   "over MONGO_HELPER_MAX_WRITE_BATCH (100000)");
   ck_assert_int_eq (raw_count (), 0);
   /* The maximum passes the count: every document is checked, up to a
    * bad one at the very end (so nothing is sent). */
   docs[max - 1] = NULL;
   ASSERT_REFUSED (mongo_helper_insert_many (NULL, coll, docs, max, true, &n, &err),
                   "document at index 99999 is NULL");
   MH_ASSERT_OK (mongo_helper_insert_many (NULL, coll, docs, 1, true, &n, &err), err);
   ck_assert_int_eq (n, 1);
   ck_assert_int_eq (raw_count (), 1);
   free (docs);
   bson_destroy (one);
}
END_TEST

START_TEST (bulk_insert_batch_size_is_1_to_100000)
{
   const size_t sizes_ok[] = {1, 2, MONGO_HELPER_MAX_WRITE_BATCH};
   const size_t batches[] = {3, 2, 1};
   const size_t sizes_bad[] = {0, MONGO_HELPER_MAX_WRITE_BATCH + 1, SIZE_MAX};
   bson_t *a = BCON_NEW ("x", BCON_INT32 (1));
   const bson_t *docs[3] = {a, a, a};
   mongo_helper_bulk_result_t *r = NULL;

   for (size_t i = 0; i < 3; i++) {
      ASSERT_REFUSED (mongo_helper_bulk_insert (NULL, coll, docs, 3, sizes_bad[i], true, &r, &err),
                      "1 to 100000");
      ck_assert_ptr_null (r);
   }
   ck_assert_int_eq (raw_count (), 0);
   for (size_t i = 0; i < 3; i++) {
      MH_ASSERT_OK (mongo_helper_bulk_insert (NULL, coll, docs, 3, sizes_ok[i], false, &r, &err),
                    err);
      ck_assert_int_eq (r->inserted, 3);
      ck_assert_uint_eq (r->batches, batches[i]);
      mongo_helper_bulk_result_destroy (r);
      r = NULL;
   }
   ck_assert_int_eq (raw_count (), 9);
   bson_destroy (a);
}
END_TEST

/* ---- GridFS ---- */

static int64_t
stored_chunk_size (const mongo_helper_gridfs_opts_t *o, const char *name)
{
   bson_t files;
   size_t n = 0;
   bson_iter_t it;
   int64_t size;

   MH_ASSERT_OK (mongo_helper_gridfs_find (o, name, &files, &n, &err), err);
   ck_assert_uint_eq (n, 1);
   ck_assert (bson_iter_init (&it, &files));
   ck_assert (bson_iter_find_descendant (&it, "0.chunkSize", &it));
   size = bson_iter_as_int64 (&it);
   bson_destroy (&files);
   return size;
}

START_TEST (gridfs_chunk_size_is_0_or_1_byte_to_15_mib)
{
   const int32_t bad[] = {-1, INT32_MIN, MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE + 1, INT32_MAX};
   const int32_t good[] = {0, 1, MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE};
   const int64_t stored[] = {255 * 1024, 1, 15 * 1024 * 1024};
   mongo_helper_gridfs_opts_t o = {NULL, NULL, 0};
   bson_value_t id;
   uint8_t *data;
   size_t len;

   o.bucket = coll;
   for (size_t i = 0; i < 4; i++) {
      o.chunk_size = bad[i];
      ASSERT_REFUSED (mongo_helper_gridfs_put (&o, "f", "abc", 3, NULL, NULL, &id, &err),
                      "chunk_size");
   }
   for (size_t i = 0; i < 3; i++) {
      char name[16];

      snprintf (name, sizeof name, "f%zu", i);
      o.chunk_size = good[i];
      MH_ASSERT_OK (mongo_helper_gridfs_put (&o, name, "abc", 3, NULL, NULL, &id, &err), err);
      ck_assert_int_eq (stored_chunk_size (&o, name), stored[i]);
      MH_ASSERT_OK (mongo_helper_gridfs_get (&o, &id, &data, &len, &err), err);
      ck_assert_uint_eq (len, 3);
      ck_assert_int_eq (memcmp (data, "abc", 3), 0);
      bson_free (data);
      bson_value_destroy (&id);
   }
}
END_TEST

/* ---- change streams ---- */

static bool
stop_at_once (const bson_t *event, void *user_data)
{
   (void) event;
   (void) user_data;
   return false;
}

/* A watch with `o`: the resume token is not one the server knows, so a
 * real replica set answers at once too, with an error. */
static bool
watch_with (mongo_helper_watch_opts_t o)
{
   bson_t *token = BCON_NEW ("_data", BCON_UTF8 ("00"));
   bson_t out;
   bool ok;

   o.resume_after = token;
   memset (&err, 0, sizeof err);
   ok = mongo_helper_watch (coll, &o, stop_at_once, NULL, &out, &err);
   bson_destroy (&out);
   bson_destroy (token);
   return ok;
}

START_TEST (watch_options_have_ranges)
{
   mongo_helper_watch_opts_t o;

   memset (&o, 0, sizeof o);
   o.timeout_ms = (int64_t) MONGO_HELPER_MAX_WATCH_TIMEOUT_MS + 1;
   ASSERT_REFUSED (watch_with (o), "over 604800000 ms");
   o.timeout_ms = INT64_MAX;
   ASSERT_REFUSED (watch_with (o), "over 604800000 ms");
   o.timeout_ms = MONGO_HELPER_MAX_WATCH_TIMEOUT_MS;
   ASSERT_NOT_REFUSED (watch_with (o));
   o.timeout_ms = INT64_MIN; /* <= 0: no timeout */
   ASSERT_NOT_REFUSED (watch_with (o));
   o.timeout_ms = 0;

   o.max_await_time_ms = -1;
   ASSERT_REFUSED (watch_with (o), "max_await_time_ms -1 is out of range");
   o.max_await_time_ms = INT32_MIN;
   ASSERT_REFUSED (watch_with (o), "out of range");
   o.max_await_time_ms = MONGO_HELPER_MAX_AWAIT_TIME_MS + 1;
   ASSERT_REFUSED (watch_with (o), "1 to 60000");
   o.max_await_time_ms = INT32_MAX;
   ASSERT_REFUSED (watch_with (o), "1 to 60000");
   o.max_await_time_ms = 1;
   ASSERT_NOT_REFUSED (watch_with (o));
   o.max_await_time_ms = MONGO_HELPER_MAX_AWAIT_TIME_MS;
   ASSERT_NOT_REFUSED (watch_with (o));
   o.max_await_time_ms = 0;

   o.batch_size = -1;
   ASSERT_REFUSED (watch_with (o), "batch_size -1 is negative");
   o.batch_size = INT32_MIN;
   ASSERT_REFUSED (watch_with (o), "is negative");
   o.batch_size = INT32_MAX;
   ASSERT_NOT_REFUSED (watch_with (o));
   if (on_mock ()) {
      /* What let the values through reached the server: a standalone. */
      ck_assert_int_eq (err.code, 40573);
   }
}
END_TEST

/* ---- concurrent operations ---- */

START_TEST (run_concurrent_takes_1_to_64_workers_and_1_to_100000_operations)
{
   const size_t max = MONGO_HELPER_MAX_CONCURRENT_OPS;
   mongo_helper_op_t two[2];
   mongo_helper_op_result_t res[2];
   mongo_helper_op_t *many;
   mongo_helper_op_result_t *many_res;

   ck_assert_int_eq (MONGO_HELPER_MAX_CONCURRENT, 64);
   ck_assert_int_eq (MONGO_HELPER_MAX_CONCURRENT_OPS, 100000);
   memset (two, 0, sizeof two);
   for (int i = 0; i < 2; i++) {
      two[i].type = MONGO_HELPER_OP_COUNT;
      two[i].collection = coll;
   }
   ASSERT_REFUSED (mongo_helper_run_concurrent (two, 2, 0, res, &err), "1 to 64");
   mongo_helper_op_results_cleanup (res, 2);
   ASSERT_REFUSED (mongo_helper_run_concurrent (two, 2, 65, res, &err), "1 to 64");
   mongo_helper_op_results_cleanup (res, 2);
   ASSERT_REFUSED (mongo_helper_run_concurrent (two, 2, SIZE_MAX, res, &err), "1 to 64");
   mongo_helper_op_results_cleanup (res, 2);
   ASSERT_REFUSED (mongo_helper_run_concurrent (two, 0, 4, res, &err), "empty");
   /* Over the maximum the results are not touched: the count may be
    * wrong, and the array shorter. */
   memset (res, 0xA5, sizeof res);
   ASSERT_REFUSED (mongo_helper_run_concurrent (two, max + 1, 4, res, &err), "over 100000");
   ASSERT_REFUSED (mongo_helper_run_concurrent (two, SIZE_MAX, 4, res, &err), "over 100000");
   for (size_t i = 0; i < sizeof res; i++) {
      ck_assert_uint_eq (((const uint8_t *) res)[i], 0xA5);
   }
   for (size_t k = 1; k <= 64; k += 63) {
      MH_ASSERT_OK (mongo_helper_run_concurrent (two, 2, k, res, &err), err);
      for (int i = 0; i < 2; i++) {
         ck_assert_int_le (res[i].concurrent, (int) k);
         ck_assert (bson_has_field (&res[i].result, "count"));
      }
      mongo_helper_op_results_cleanup (res, 2);
   }

   /* The maximum is taken: every operation runs (each fails on its own,
    * with no server round trip: an unknown type). */
   many = calloc (max, sizeof *many);
   many_res = calloc (max, sizeof *many_res);
   ck_assert_ptr_nonnull (many);
   ck_assert_ptr_nonnull (many_res);
   for (size_t i = 0; i < max; i++) {
      many[i].type = (mongo_helper_op_type_t) 99;
   }
   ASSERT_REFUSED (mongo_helper_run_concurrent (many, max, 1, many_res, &err),
                   "100000 of 100000 operations failed");
   ck_assert_ptr_nonnull (strstr (many_res[max - 1].error.message, "operation 99999"));
   mongo_helper_op_results_cleanup (many_res, max);
   free (many);
   free (many_res);
}
END_TEST

/* A worker keeps its pooled client until the list is done: with more
 * workers than clients, the others waited the whole pool wait and failed
 * with TIMEOUT. */
START_TEST (run_concurrent_starts_no_more_workers_than_the_pool_has_clients)
{
   enum { N = 6 };
   mongo_helper_op_t ops[N];
   mongo_helper_op_result_t res[N];
   bson_t *sleep_cmd = BCON_NEW ("sleep", BCON_INT32 (1), "millis", BCON_INT32 (300));

   setenv ("MONGO_MAX_POOL_SIZE", "2", 1);
   setenv ("MONGO_WAIT_QUEUE_TIMEOUT_MS", "500", 1);
   MH_ASSERT_OK (mongo_helper_init (NULL, &err), err);
   memset (ops, 0, sizeof ops);
   for (int i = 0; i < N; i++) {
      if (on_mock ()) {
         ops[i].type = MONGO_HELPER_OP_COMMAND; /* 300 ms each on the test server */
         ops[i].document = sleep_cmd;
      } else {
         ops[i].type = MONGO_HELPER_OP_COUNT;
         ops[i].collection = coll;
      }
   }
   MH_ASSERT_OK (mongo_helper_run_concurrent (ops, N, N, res, &err), err);
   for (int i = 0; i < N; i++) {
      MH_ASSERT_OK (res[i].error.category == MONGO_HELPER_ERROR_NONE, res[i].error);
      ck_assert_int_le (res[i].concurrent, 2);
   }
   mongo_helper_op_results_cleanup (res, N);
   bson_destroy (sleep_cmd);
}
END_TEST

/* ---- health, maxTimeMS, geo and text arguments ---- */

START_TEST (health_timeout_is_at_most_60000_ms)
{
   mongo_helper_server_info_t info;

   ASSERT_REFUSED (mongo_helper_ping (MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS + 1, &err), "over 60000");
   ASSERT_REFUSED (mongo_helper_ping (INT32_MAX, &err), "over 60000");
   ASSERT_REFUSED (mongo_helper_server_info (MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS + 1, &info, &err),
                   "over 60000");
   MH_ASSERT_OK (mongo_helper_ping (MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS, &err), err);
   MH_ASSERT_OK (mongo_helper_ping (0, &err), err);
   MH_ASSERT_OK (mongo_helper_ping (INT32_MIN, &err), err); /* <= 0: the default */
   MH_ASSERT_OK (mongo_helper_server_info (MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS, &info, &err), err);
   ck_assert (info.version[0] != '\0');
}
END_TEST

START_TEST (opts_set_max_time_takes_1_to_int32_max)
{
   const int32_t bad[] = {0, -1, INT32_MIN};
   const int32_t good[] = {1, INT32_MAX};
   bson_iter_t it;

   for (size_t i = 0; i < 3; i++) {
      bson_t o = BSON_INITIALIZER;
      ASSERT_REFUSED (mongo_helper_opts_set_max_time (&o, bad[i], &err), "positive");
      ck_assert (bson_empty (&o));
      bson_destroy (&o);
   }
   for (size_t i = 0; i < 2; i++) {
      bson_t o = BSON_INITIALIZER;
      MH_ASSERT_OK (mongo_helper_opts_set_max_time (&o, good[i], &err), err);
      ck_assert (bson_iter_init_find (&it, &o, "maxTimeMS"));
      ck_assert_int_eq (bson_iter_int32 (&it), good[i]);
      bson_destroy (&o);
   }
}
END_TEST

START_TEST (geo_and_text_arguments_have_ranges)
{
   const double max = MONGO_HELPER_MAX_DISTANCE_M;
   const double bad[] = {-1.0, nextafter (max, INFINITY), INFINITY, -INFINITY, NAN};
   const double corners[4][2] = {{0, 0}, {1, 0}, {1, 1}, {0, 0}};
   const size_t pmax = MONGO_HELPER_MAX_POLYGON_POINTS;
   double *ring = malloc (2 * (pmax + 1) * sizeof *ring);
   bson_t res;

   ck_assert_ptr_nonnull (ring);
   ck_assert_double_eq_tol (max, 20037392.1, 1.0);
   for (size_t i = 0; i < 5; i++) {
      ASSERT_REFUSED (mongo_helper_geo_near (NULL, coll, "loc", 0, 0, bad[i], 0, &res, &err),
                      "distance");
      bson_destroy (&res);
      ASSERT_REFUSED (mongo_helper_geo_within_circle (NULL, coll, "loc", 0, 0, bad[i], &res, &err),
                      "distance");
      bson_destroy (&res);
   }
   ASSERT_NOT_REFUSED (mongo_helper_geo_near (NULL, coll, "loc", 0, 0, max, 0, &res, &err));
   bson_destroy (&res);
   ASSERT_NOT_REFUSED (mongo_helper_geo_within_circle (NULL, coll, "loc", 0, 0, max, &res, &err));
   bson_destroy (&res);
   ASSERT_NOT_REFUSED (mongo_helper_geo_near (NULL, coll, "loc", 0, 0, 0, 0, &res, &err));
   bson_destroy (&res);

   ASSERT_REFUSED (mongo_helper_geo_near (NULL, coll, "loc", 0, 0, 10, -1, &res, &err),
                   "must not be negative");
   bson_destroy (&res);
   ASSERT_REFUSED (mongo_helper_geo_near (NULL, coll, "loc", 0, 0, 10, INT64_MIN, &res, &err),
                   "must not be negative");
   bson_destroy (&res);
   ASSERT_NOT_REFUSED (mongo_helper_geo_near (NULL, coll, "loc", 0, 0, 10, INT64_MAX, &res, &err));
   bson_destroy (&res);

   ASSERT_REFUSED (mongo_helper_text_search (NULL, coll, "w", NULL, NULL, -1, &res, &err),
                   "the limit not negative");
   bson_destroy (&res);
   ASSERT_REFUSED (mongo_helper_text_search (NULL, coll, "w", NULL, NULL, INT64_MIN, &res, &err),
                   "the limit not negative");
   bson_destroy (&res);
   ASSERT_NOT_REFUSED (
      mongo_helper_text_search (NULL, coll, "w", NULL, NULL, INT64_MAX, &res, &err));
   bson_destroy (&res);

   /* Polygons: 3 to 100,000 corners; past that, refused before the
    * corners are read (`corners` holds 4). */
   ASSERT_REFUSED (
      mongo_helper_geo_within_polygon (NULL, coll, "loc", &corners[0][0], 2, &res, &err),
      "3 to 100000 points");
   bson_destroy (&res);
   ASSERT_REFUSED (
      mongo_helper_geo_within_polygon (NULL, coll, "loc", &corners[0][0], pmax + 1, &res, &err),
      "3 to 100000 points");
   bson_destroy (&res);
   ASSERT_REFUSED (
      mongo_helper_geo_within_polygon (NULL, coll, "loc", &corners[0][0], SIZE_MAX, &res, &err),
      "3 to 100000 points");
   bson_destroy (&res);
   ASSERT_NOT_REFUSED (
      mongo_helper_geo_within_polygon (NULL, coll, "loc", &corners[0][0], 4, &res, &err));
   bson_destroy (&res);
   for (size_t i = 0; i < pmax; i++) {
      /* distinct corners on a small circle, not closed */
      double angle = 2 * 3.141592653589793 * (double) i / (double) pmax;

      ring[2 * i] = 10.0 * cos (angle);
      ring[2 * i + 1] = 10.0 * sin (angle);
   }
   ASSERT_NOT_REFUSED (mongo_helper_geo_within_polygon (NULL, coll, "loc", ring, pmax, &res, &err));
   bson_destroy (&res);
   free (ring);
}
END_TEST

Suite *
limits_suite (void)
{
   Suite *s = suite_create ("limits");
   TCase *edges = tcase_create ("edges");

   tcase_add_checked_fixture (edges, setup, teardown);
   tcase_set_timeout (edges, 120);
   tcase_add_test (edges, stream_chunk_size_is_1_to_100000);
   tcase_add_test (edges, find_options_take_their_whole_type_range_but_no_negatives);
   tcase_add_test (edges, aggregate_batch_size_is_0_to_int32_max);
   tcase_add_test (edges, insert_many_takes_1_to_100000_documents);
   tcase_add_test (edges, bulk_insert_batch_size_is_1_to_100000);
   tcase_add_test (edges, gridfs_chunk_size_is_0_or_1_byte_to_15_mib);
   tcase_add_test (edges, watch_options_have_ranges);
   tcase_add_test (edges, run_concurrent_takes_1_to_64_workers_and_1_to_100000_operations);
   tcase_add_test (edges, run_concurrent_starts_no_more_workers_than_the_pool_has_clients);
   tcase_add_test (edges, health_timeout_is_at_most_60000_ms);
   tcase_add_test (edges, opts_set_max_time_takes_1_to_int32_max);
   tcase_add_test (edges, geo_and_text_arguments_have_ranges);
   suite_add_tcase (s, edges);
   return s;
}
