/* Limits: every size, count and duration a caller passes to a connector
 * operation, at the edges of its documented range (0, 1, the maximum, the
 * maximum + 1, SIZE_MAX or its type's extremes); the byte cap on results
 * held in memory; the default maxTimeMS as the test server receives it.
 * Run under ASan and UBSan by `make sanitize`. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;
static const char *coll;

#define ASSERT_REFUSED(call, needle)                                      \
   do {                                                                   \
      memset (&err, 0, sizeof err);                                       \
      ck_assert_msg (!(call), "expected a refusal: %s", #call);           \
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT, \
                     "%s: expected invalid_argument, got %s (%s)",        \
                     #call,                                               \
                     mongo_helper_category_name (err.category),           \
                     err.message);                                        \
      ck_assert_msg (strstr (err.message, (needle)),                      \
                     "%s: expected the message to say \"%s\", got: %s",   \
                     #call,                                               \
                     (needle),                                            \
                     err.message);                                        \
   } while (0)

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

static void
setup (void)
{
   memset (&err, 0, sizeof err);
   mh_test_live_setup ();
   coll = mh_test_collection ("limits");
}

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

static bool
on_mock (void)
{
   const char *m = getenv ("MH_MOCK_SERVER");
   return m && *m;
}

/* Inserts {_id: i, n: i} for i in 0..n-1. */
static void
insert_numbered (int n)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_error_t e;

   for (int i = 0; i < n; i++) {
      bson_t *d = BCON_NEW ("_id", BCON_INT32 (i), "n", BCON_INT32 (i));
      ck_assert_msg (mongoc_collection_insert_one (c, d, NULL, NULL, &e), "%s", e.message);
      bson_destroy (d);
   }
   mongoc_collection_destroy (c);
}

static int64_t
raw_count (void)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_t empty = BSON_INITIALIZER;
   bson_error_t e;
   int64_t n = mongoc_collection_count_documents (c, &empty, NULL, NULL, NULL, &e);

   ck_assert_msg (n >= 0, "%s", e.message);
   mongoc_collection_destroy (c);
   return n;
}

/* ---- streams ---- */

typedef struct {
   size_t chunks;
   size_t sizes[16];
   size_t docs;
} chunks_t;

static bool
record_chunk (const bson_t *const *docs, size_t n, void *user_data)
{
   chunks_t *c = user_data;

   (void) docs;
   if (c->chunks < 16) {
      c->sizes[c->chunks] = n;
   }
   c->chunks++;
   c->docs += n;
   return true;
}

static bool
find_stream (size_t chunk_size, chunks_t *c)
{
   memset (c, 0, sizeof *c);
   return mongo_helper_find_stream (NULL, coll, NULL, NULL, chunk_size, record_chunk, c, &err);
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

/* ---- results held in memory ---- */

#define BIG (14u * 1024u * 1024u)

/* {b: <14 MiB of binary>}: binary, so its JSON (base64, 4/3 larger)
 * renders fast. */
static bson_t *
big_doc (int id)
{
   uint8_t *b = calloc (1, BIG);
   bson_t *d;

   ck_assert_ptr_nonnull (b);
   d = BCON_NEW ("_id", BCON_INT32 (id), "b", BCON_BIN (BSON_SUBTYPE_BINARY, b, BIG));
   free (b);
   return d;
}

/* Five 14 MiB documents (70 MiB), made on the server from one ($out), as
 * sending 70 MiB to the test server is slow. */
static void
insert_big_five (void)
{
   mongoc_collection_t *c = mh_test_raw_collection ("limits_seed");
   bson_t *seed = big_doc (1);
   bson_t *p;
   mongoc_cursor_t *cur;
   const bson_t *doc;
   bson_error_t e;

   BCON_APPEND (seed,
                "k",
                "[",
                BCON_INT32 (0),
                BCON_INT32 (1),
                BCON_INT32 (2),
                BCON_INT32 (3),
                BCON_INT32 (4),
                "]");
   mongoc_collection_drop (c, NULL);
   ck_assert_msg (mongoc_collection_insert_one (c, seed, NULL, NULL, &e), "%s", e.message);
   p = BCON_NEW ("pipeline",
                 "[",
                 "{",
                 "$unwind",
                 BCON_UTF8 ("$k"),
                 "}",
                 "{",
                 "$project",
                 "{",
                 "_id",
                 BCON_UTF8 ("$k"),
                 "b",
                 BCON_INT32 (1),
                 "}",
                 "}",
                 "{",
                 "$out",
                 BCON_UTF8 (coll),
                 "}",
                 "]");
   cur = mongoc_collection_aggregate (c, MONGOC_QUERY_NONE, p, NULL, NULL);
   while (mongoc_cursor_next (cur, &doc)) {
   }
   ck_assert_msg (!mongoc_cursor_error (cur, &e), "$out: %s", e.message);
   mongoc_cursor_destroy (cur);
   ck_assert_int_eq (raw_count (), 5);
   bson_destroy (p);
   bson_destroy (seed);
   mongoc_collection_destroy (c);
}

START_TEST (find_results_past_64_mib_are_refused_by_default)
{
   bson_t res;

   ck_assert_int_eq (MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES, 64 * 1024 * 1024);
   insert_big_five ();
   ASSERT_REFUSED (mongo_helper_find (NULL, coll, NULL, NULL, &res, &err),
                   "the results pass max_result_bytes (67108864 bytes)");
   ck_assert_ptr_nonnull (strstr (err.message, "find_stream"));
   ck_assert (bson_empty (&res));
   bson_destroy (&res);
}
END_TEST

/* 4 documents of 14 MiB are 75 MiB of JSON text, 3 are 56 MiB. */
START_TEST (array_to_json_refuses_text_past_64_mib)
{
   bson_t array = BSON_INITIALIZER;
   char *json;

   for (int i = 0; i < 4; i++) {
      bson_t *d = big_doc (i);
      char key[16];

      snprintf (key, sizeof key, "%d", i);
      BSON_APPEND_DOCUMENT (&array, key, d);
      bson_destroy (d);
      if (i == 2) {
         json = mongo_helper_array_to_json (&array, &err);
         MH_ASSERT_OK (json != NULL, err);
         ck_assert_uint_gt (strlen (json), 3 * BIG * 4 / 3);
         bson_free (json);
      }
   }
   ck_assert_ptr_null (mongo_helper_array_to_json (&array, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "max_result_bytes (67108864 bytes) as JSON text"));
   bson_destroy (&array);
}
END_TEST

static int64_t
count_bytes (void *buf, size_t len, void *user_data)
{
   int64_t *left = user_data;
   size_t n = *left < (int64_t) len ? (size_t) *left : len;

   memset (buf, 'g', n);
   *left -= (int64_t) n;
   return (int64_t) n;
}

static bool
sum_bytes (const void *buf, size_t len, void *user_data)
{
   (void) buf;
   *(size_t *) user_data += len;
   return true;
}

START_TEST (gridfs_get_into_memory_refuses_files_past_64_mib)
{
   const int64_t size = 64 * 1024 * 1024 + 1;
   int64_t left = size;
   mongo_helper_gridfs_opts_t o = {NULL, NULL, 4 * 1024 * 1024};
   bson_value_t id;
   uint8_t *data = (uint8_t *) &left;
   size_t len = 7;

   o.bucket = coll;
   MH_ASSERT_OK (
      mongo_helper_gridfs_put_reader (&o, "big", count_bytes, &left, NULL, NULL, &id, &err), err);
   ASSERT_REFUSED (mongo_helper_gridfs_get (&o, &id, &data, &len, &err),
                   "max_result_bytes (67108864 bytes)");
   ck_assert_ptr_nonnull (strstr (err.message, "_get_writer"));
   ck_assert_ptr_null (data);
   ck_assert_uint_eq (len, 0);
   bson_value_destroy (&id);
}
END_TEST

/* ---- the settings (read by the configuration) ---- */

/* Whether the configuration reads `env`: an unparsable value must make it
 * fail.  Until it does, the tests of that setting cannot run. */
static bool
setting_is_read (const char *env)
{
   mongo_helper_config_t *cfg;
   mongo_helper_error_t e;
   bool read;

   setenv (env, "not-a-number", 1);
   cfg = mongo_helper_config_new (NULL, NULL, &e);
   read = cfg == NULL && e.category == MONGO_HELPER_ERROR_CONFIG && strstr (e.message, env);
   mongo_helper_config_destroy (cfg);
   unsetenv (env);
   return read;
}

START_TEST (max_result_bytes_setting_caps_results_files_and_chunks)
{
   mongo_helper_gridfs_opts_t o = {NULL, NULL, 0};
   bson_t res;
   char *json;
   chunks_t c;
   bson_value_t id;
   uint8_t *data;
   size_t len, seen = 0;
   char blob[5000];

   if (!setting_is_read ("MONGO_MAX_RESULT_BYTES")) {
      MH_SKIP ("the configuration does not read MONGO_MAX_RESULT_BYTES yet");
   }
   /* Its range starts at 1024 bytes. */
   setenv ("MONGO_MAX_RESULT_BYTES", "1023", 1);
   ck_assert (!mongo_helper_init (NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_ptr_nonnull (strstr (err.message, "MONGO_MAX_RESULT_BYTES"));
   setenv ("MONGO_MAX_RESULT_BYTES", "4096", 1);
   {
      mongoc_collection_t *raw = mh_test_raw_collection (coll);
      bson_error_t e;

      bson_t *d;

      memset (blob, 'b', sizeof blob - 1);
      blob[sizeof blob - 1] = '\0';
      for (int i = 0; i < 10; i++) {
         d = BCON_NEW ("_id", BCON_INT32 (i), "s", BCON_UTF8 (blob + 4000));
         ck_assert_msg (mongoc_collection_insert_one (raw, d, NULL, NULL, &e), "%s", e.message);
         bson_destroy (d);
      }
      /* 800 control characters: 820 bytes of BSON, 4800 of JSON (\u0001) */
      memset (blob, 1, 800);
      blob[800] = '\0';
      d = BCON_NEW ("_id", BCON_INT32 (100), "c", BCON_UTF8 (blob));
      ck_assert_msg (mongoc_collection_insert_one (raw, d, NULL, NULL, &e), "%s", e.message);
      bson_destroy (d);
      mongoc_collection_destroy (raw);
      memset (blob, 'b', sizeof blob);
   }
   /* ten documents of ~1 KB: past 4096 bytes */
   ASSERT_REFUSED (mongo_helper_find (NULL, coll, NULL, NULL, &res, &err),
                   "max_result_bytes (4096 bytes)");
   bson_destroy (&res);
   ASSERT_REFUSED (mongo_helper_find_json (NULL, coll, NULL, NULL, &err), "(4096 bytes)");
   ASSERT_REFUSED (mongo_helper_aggregate_json (NULL, coll, "[{\"$match\": {}}]", NULL, &err),
                   "(4096 bytes)");
   /* One document: as BSON it fits, as JSON text it does not. */
   json = mongo_helper_find_one_json (NULL, coll, "{\"_id\": 100}", NULL, &err);
   ck_assert_ptr_null (json);
   ck_assert_ptr_nonnull (strstr (err.message, "max_result_bytes (4096 bytes) as JSON text"));
   {
      bson_t *f = BCON_NEW ("_id", BCON_INT32 (100));
      bson_t *doc = mongo_helper_find_one (NULL, coll, f, NULL, &err);

      MH_ASSERT_OK (doc != NULL, err);
      bson_destroy (doc);
      bson_destroy (f);
   }
   json = mongo_helper_find_json (NULL, coll, NULL, "{\"limit\": 3}", &err);
   MH_ASSERT_OK (json != NULL, err);
   bson_free (json);
   MH_ASSERT_OK (find_stream (100, &c), err);
   ck_assert_uint_eq (c.docs, 11);
   ck_assert_uint_ge (c.chunks, 3);
   for (size_t i = 0; i < c.chunks && i < 16; i++) {
      ck_assert_uint_le (c.sizes[i], 4); /* at most 4 of ~1 KB */
   }

   o.bucket = coll;
   MH_ASSERT_OK (mongo_helper_gridfs_put (&o, "f", blob, sizeof blob, NULL, NULL, &id, &err), err);
   ASSERT_REFUSED (mongo_helper_gridfs_get (&o, &id, &data, &len, &err), "(4096 bytes)");
   /* The writer holds one piece at a time: no cap. */
   MH_ASSERT_OK (mongo_helper_gridfs_get_writer (&o, &id, sum_bytes, &seen, &err), err);
   ck_assert_uint_eq (seen, sizeof blob);
   bson_value_destroy (&id);
   /* files documents of ~100 bytes: 80 of them pass 4096 bytes */
   for (int i = 0; i < 80; i++) {
      MH_ASSERT_OK (mongo_helper_gridfs_put (&o, "many", "x", 1, NULL, NULL, NULL, &err), err);
   }
   MH_ASSERT_OK (mongo_helper_gridfs_find (&o, "f", &res, &len, &err), err);
   ck_assert_uint_eq (len, 1);
   bson_destroy (&res);
   ASSERT_REFUSED (mongo_helper_gridfs_find (&o, NULL, &res, NULL, &err), "(4096 bytes)");
   ck_assert (bson_empty (&res));
   bson_destroy (&res);
}
END_TEST

/* Lines of the command log holding both needles. */
static int
log_lines_with (const mh_test_server_t *s, const char *a, const char *b)
{
   FILE *f = fopen (s->command_log, "r");
   char *line = NULL;
   size_t cap = 0;
   int n = 0;

   ck_assert_msg (f, "no command log %s", s->command_log);
   while (getline (&line, &cap, f) > 0) {
      n += strstr (line, a) && (!b || strstr (line, b));
   }
   free (line);
   fclose (f);
   return n;
}

/* Runs each kind of query the library issues once, on `name`. */
static void
run_queries (const char *name)
{
   bson_t *f = BCON_NEW ("n", "{", "$gte", BCON_INT32 (0), "}");
   bson_t *p = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   mongo_helper_cache_options_t co;
   mongo_helper_cache_t *cache;
   bson_t res, *one;
   int64_t n;
   chunks_t c;
   char *json;

   MH_ASSERT_OK (mongo_helper_find (NULL, name, f, NULL, &res, &err), err);
   bson_destroy (&res);
   one = mongo_helper_find_one (NULL, name, f, NULL, &err);
   MH_ASSERT_OK (one != NULL, err);
   bson_destroy (one);
   MH_ASSERT_OK (mongo_helper_count_documents (NULL, name, f, &n, &err), err);
   MH_ASSERT_OK (mongo_helper_estimated_count (NULL, name, &n, &err), err);
   MH_ASSERT_OK (mongo_helper_distinct (NULL, name, "n", f, &res, &err), err);
   bson_destroy (&res);
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, name, p, NULL, &res, &err), err);
   bson_destroy (&res);
   memset (&c, 0, sizeof c);
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, name, f, NULL, 10, record_chunk, &c, &err), err);
   MH_ASSERT_OK (mongo_helper_aggregate_stream (NULL, name, p, NULL, 10, record_chunk, &c, &err),
                 err);
   /* The caller's own maxTimeMS wins. */
   json = mongo_helper_find_json (NULL, name, "{\"n\": 1}", "{\"maxTimeMS\": 777}", &err);
   MH_ASSERT_OK (json != NULL, err);
   bson_free (json);
   /* findAndModify: the cache's counter. */
   mongo_helper_cache_options_init (&co);
   co.collection = "limits_cache";
   co.lazy_ensure = false;
   cache = mongo_helper_cache_new (&co, &err);
   MH_ASSERT_OK (cache != NULL, err);
   MH_ASSERT_OK (mongo_helper_cache_incr (cache, "k", 1, 0, &n, &err), err);
   mongo_helper_cache_destroy (cache);
   bson_destroy (f);
   bson_destroy (p);
}

static void
start_logged_server (mh_test_server_t *srv)
{
   char uri[128];

   mh_test_server_start (srv, 0, NULL);
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_limits", srv->port);
   setenv ("MONGO_CACHE_URI", uri, 1);
   coll = "q";
   insert_numbered (2);
}

START_TEST (no_max_time_ms_is_sent_by_default)
{
   mh_test_server_t srv = {0};

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   start_logged_server (&srv);
   run_queries ("q");
   /* The queries did reach the server; only find_json's own limit went
    * with them. */
   ck_assert_int_ge (log_lines_with (&srv, "{\"find\": \"q\"", NULL), 4);
   ck_assert_int_ge (log_lines_with (&srv, "{\"findAndModify\": \"limits_cache\"", NULL), 1);
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\": {\"$numberInt\": \"777\"}", NULL), 1);
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\"", NULL), 1);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

START_TEST (default_max_time_ms_setting_reaches_the_server)
{
   static const char *const commands[] = {
      "{\"find\": \"q\"",      /* find, find_one, find_stream */
      "{\"aggregate\": \"q\"", /* count_documents, aggregate, aggregate_stream */
      "{\"count\": \"q\"",     /* estimated_count */
      "{\"distinct\": \"q\"",
      "{\"findAndModify\": \"limits_cache\"",
   };
   static const int at_least[] = {3, 3, 1, 1, 1};
   const char *ms = "\"maxTimeMS\": {\"$numberInt\": \"4321\"}";
   mh_test_server_t srv = {0};

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   if (!setting_is_read ("MONGO_DEFAULT_MAX_TIME_MS")) {
      MH_SKIP ("the configuration does not read MONGO_DEFAULT_MAX_TIME_MS yet");
   }
   setenv ("MONGO_DEFAULT_MAX_TIME_MS", "4321", 1);
   start_logged_server (&srv);
   run_queries ("q");
   for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
      int all = log_lines_with (&srv, commands[i], NULL);
      int with = log_lines_with (&srv, commands[i], ms);

      ck_assert_msg (
         all >= at_least[i], "%s: %d commands, expected %d", commands[i], all, at_least[i]);
      /* find_json's own 777 is the one find without the default */
      ck_assert_msg (with == all - (i == 0),
                     "%s: %d of %d commands carry maxTimeMS 4321",
                     commands[i],
                     with,
                     all);
   }
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\": {\"$numberInt\": \"777\"}", ms), 0);
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\": {\"$numberInt\": \"777\"}", NULL), 1);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

Suite *
limits_suite (void)
{
   Suite *s = suite_create ("limits");
   TCase *edges = tcase_create ("edges");
   TCase *caps = tcase_create ("caps");
   TCase *settings = tcase_create ("settings");

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

   tcase_add_checked_fixture (caps, setup, teardown);
   tcase_set_timeout (caps, 300);
   tcase_add_test (caps, find_results_past_64_mib_are_refused_by_default);
   tcase_add_test (caps, array_to_json_refuses_text_past_64_mib);
   tcase_add_test (caps, gridfs_get_into_memory_refuses_files_past_64_mib);
   suite_add_tcase (s, caps);

   tcase_add_checked_fixture (settings, setup, teardown);
   tcase_set_timeout (settings, 120);
   tcase_add_test (settings, max_result_bytes_setting_caps_results_files_and_chunks);
   tcase_add_test (settings, no_max_time_ms_is_sent_by_default);
   tcase_add_test (settings, default_max_time_ms_setting_reaches_the_server);
   suite_add_tcase (s, settings);
   return s;
}
