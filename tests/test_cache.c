/* src/cache.c: values read back with raw libmongoc, expiry through the read
 * filter, add/incr/get-many/touch/clear, the 16 MB check before any write,
 * and get-or-compute stampede protection with 16 threads. */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static mongo_helper_cache_t *
cache_on (const char *coll, bool lazy)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;

   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   o.lazy_ensure = lazy;
   c = mongo_helper_cache_new (&o, &err);
   MH_ASSERT_OK (c != NULL, err);
   { /* connect now, so slow first connections do not eat short TTLs */
      bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));
      MH_ASSERT_OK (mongo_helper_command (ping, NULL, &err), err);
      bson_destroy (ping);
   }
   return c;
}

START_TEST (options_init_gives_documented_defaults)
{
   mongo_helper_cache_options_t o;

   mongo_helper_cache_options_init (&o);
   ck_assert_str_eq (o.collection, "cache");
   ck_assert_int_eq (o.default_ttl_ms, 300000);
   ck_assert_uint_eq (o.max_key_length, 200);
   ck_assert_int_eq (o.wait_ms, 5000);
   ck_assert (o.lazy_ensure);
   o.poll_ms = 0;
   ck_assert_ptr_null (mongo_helper_cache_new (&o, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST (set_stores_document_with_date_expiry_and_get_reads_it_back)
{
   char coll[96];
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("name", BCON_UTF8 ("Ada"), "age", BCON_INT32 (36));
   bson_t *f = BCON_NEW ("_id", BCON_UTF8 ("user:1"));
   bson_t out;
   bson_t *doc;
   bson_iter_t it;
   int64_t now = (int64_t) time (NULL) * 1000;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   c = cache_on (coll, true);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "user:1", v, 60000, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "user:1", &out, &err), err);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);
   doc = mh_test_raw_find_one (coll, f);
   ck_assert_ptr_nonnull (doc);
   ck_assert (bson_iter_init_find (&it, doc, "value") && BSON_ITER_HOLDS_DOCUMENT (&it));
   ck_assert (bson_iter_init_find (&it, doc, "expiresAt") && BSON_ITER_HOLDS_DATE_TIME (&it));
   ck_assert_int_ge (bson_iter_date_time (&it), now + 58000);
   ck_assert_int_le (bson_iter_date_time (&it), now + 62000);
   bson_destroy (doc);

   /* set replaces (upsert), never duplicates */
   MH_ASSERT_OK (mongo_helper_cache_set (c, "user:1", f, -1, &err), err);
   ck_assert_int_eq (mh_test_raw_count (coll, f), 1);
   doc = mh_test_raw_find_one (coll, f);
   ck_assert (!bson_iter_init_find (&it, doc, "expiresAt"));
   bson_destroy (doc);
   ck_assert (!mongo_helper_cache_get (c, "missing", &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   mongo_helper_cache_destroy (c);
   bson_destroy (v);
   bson_destroy (f);
}
END_TEST

START_TEST (long_keys_are_hashed_with_a_readable_prefix)
{
   char coll[96], key[501], hex[65];
   unsigned char md[EVP_MAX_MD_SIZE];
   unsigned int n = 0;
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("x", BCON_INT32 (1));
   bson_t empty = BSON_INITIALIZER;
   bson_t out;
   bson_t *doc;
   bson_iter_t it, id;

   memset (key, 'k', 500);
   key[500] = '\0';
   key[0] = 'A';
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   c = cache_on (coll, true);
   MH_ASSERT_OK (mongo_helper_cache_set (c, key, v, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get (c, key, &out, &err), err);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);
   doc = mh_test_raw_find_one (coll, &empty);
   ck_assert (bson_iter_init_find (&it, doc, "_id") && BSON_ITER_HOLDS_DOCUMENT (&it));
   ck_assert (bson_iter_recurse (&it, &id) && bson_iter_find (&id, "p"));
   ck_assert_uint_eq (strlen (bson_iter_utf8 (&id, NULL)), 64);
   ck_assert (strncmp (bson_iter_utf8 (&id, NULL), key, 64) == 0);
   ck_assert (EVP_Digest (key, 500, md, &n, EVP_sha256 (), NULL));
   for (unsigned i = 0; i < n; i++) {
      snprintf (hex + 2 * i, 3, "%02x", md[i]);
   }
   ck_assert (bson_iter_recurse (&it, &id) && bson_iter_find (&id, "h"));
   ck_assert_str_eq (bson_iter_utf8 (&id, NULL), hex);
   bson_destroy (doc);
   mongo_helper_cache_destroy (c);
   bson_destroy (v);
}
END_TEST

START_TEST (bytes_round_trip_and_wrong_kind_is_invalid_argument)
{
   mongo_helper_cache_t *c = cache_on (mh_test_collection ("cache"), true);
   const uint8_t blob[] = {0, 1, 2, 255, 0, 7};
   uint8_t *got = NULL;
   size_t len = 0;
   bson_t out;

   MH_ASSERT_OK (mongo_helper_cache_set_bytes (c, "blob", blob, sizeof blob, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get_bytes (c, "blob", &got, &len, &err), err);
   ck_assert_uint_eq (len, sizeof blob);
   ck_assert (memcmp (got, blob, len) == 0);
   bson_free (got);
   ck_assert (!mongo_helper_cache_get (c, "blob", &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "get_bytes"), "%s", err.message);
   bson_destroy (&out);
   mongo_helper_cache_destroy (c);
}
END_TEST

START_TEST (oversized_value_fails_before_any_write)
{
   char coll[96];
   mongo_helper_cache_t *c;
   size_t n = 17u * 1024 * 1024;
   uint8_t *big = calloc (1, n);

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   c = cache_on (coll, false);
   ck_assert (!mongo_helper_cache_set_bytes (c, "big", big, n, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "16 MB"), "%s", err.message);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 0);
   ck_assert (!mongo_helper_cache_set (c, NULL, NULL, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   free (big);
   mongo_helper_cache_destroy (c);
}
END_TEST

START_TEST (add_only_stores_when_absent_or_expired)
{
   char coll[96];
   mongo_helper_cache_t *c;
   bson_t *a = BCON_NEW ("v", BCON_INT32 (1));
   bson_t *b = BCON_NEW ("v", BCON_INT32 (2));
   bson_t out;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   c = cache_on (coll, false); /* no TTL index: the expired doc stays */
   MH_ASSERT_OK (mongo_helper_cache_add (c, "k", a, 800, &err), err);
   ck_assert (!mongo_helper_cache_add (c, "k", b, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "k", &out, &err), err);
   ck_assert (bson_equal (&out, a));
   bson_destroy (&out);
   mh_test_sleep_ms (1000);
   ck_assert (!mongo_helper_cache_get (c, "k", &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 1);
   MH_ASSERT_OK (mongo_helper_cache_add (c, "k", b, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "k", &out, &err), err);
   ck_assert (bson_equal (&out, b));
   bson_destroy (&out);
   mongo_helper_cache_destroy (c);
   bson_destroy (a);
   bson_destroy (b);
}
END_TEST

START_TEST (incr_counts_atomically_and_restarts_after_expiry)
{
   char coll[96];
   mongo_helper_cache_t *c;
   int64_t r = 0;
   bson_t *f = BCON_NEW ("_id", BCON_UTF8 ("hits"));
   bson_t *doc;
   bson_iter_t it;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   c = cache_on (coll, false);
   MH_ASSERT_OK (mongo_helper_cache_incr (c, "hits", 1, 800, &r, &err), err);
   ck_assert_int_eq (r, 1);
   MH_ASSERT_OK (mongo_helper_cache_incr (c, "hits", 5, 800, &r, &err), err);
   ck_assert_int_eq (r, 6);
   doc = mh_test_raw_find_one (coll, f);
   ck_assert (bson_iter_init_find (&it, doc, "value"));
   /* a number (mongod keeps int64; the Python test server narrows it) */
   ck_assert (BSON_ITER_HOLDS_INT32 (&it) || BSON_ITER_HOLDS_INT64 (&it));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 6);
   bson_destroy (doc);
   mh_test_sleep_ms (1000);
   MH_ASSERT_OK (mongo_helper_cache_incr (c, "hits", 2, 300, &r, &err), err);
   ck_assert_int_eq (r, 2);
   ck_assert_int_eq (mh_test_raw_count (coll, f), 1);
   mongo_helper_cache_destroy (c);
   bson_destroy (f);
}
END_TEST

START_TEST (get_many_returns_only_live_keys_under_their_names)
{
   mongo_helper_cache_t *c = cache_on (mh_test_collection ("cache"), true);
   bson_t *a = BCON_NEW ("n", BCON_INT32 (1));
   bson_t *b = BCON_NEW ("n", BCON_INT32 (2));
   char longkey[300];
   const char *keys[4];
   bson_t out;
   char *json;

   memset (longkey, 'z', sizeof longkey - 1);
   longkey[sizeof longkey - 1] = '\0';
   keys[0] = "a";
   keys[1] = "nope";
   keys[2] = longkey;
   keys[3] = "gone";
   MH_ASSERT_OK (mongo_helper_cache_set (c, "a", a, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set (c, longkey, b, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "gone", b, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_delete (c, "gone", NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get_many (c, keys, 4, &out, &err), err);
   ck_assert_int_eq (bson_count_keys (&out), 2);
   json = bson_as_relaxed_extended_json (&out, NULL);
   ck_assert_msg (
      strstr (json, "\"a\" : { \"n\" : 1 }") && strstr (json, "zzz\" : { \"n\" : 2 }"), "%s", json);
   bson_free (json);
   bson_destroy (&out);
   mongo_helper_cache_destroy (c);
   bson_destroy (a);
   bson_destroy (b);
}
END_TEST

START_TEST (delete_touch_and_clear_keep_the_indexes)
{
   char coll[96];
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("n", BCON_INT32 (1));
   bool deleted = false;
   bson_t out;
   mongoc_collection_t *rc;
   mongoc_cursor_t *cur;
   const bson_t *d;
   int nix = 0;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   c = cache_on (coll, true);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "t", v, 800, &err), err);
   mh_test_sleep_ms (400);
   MH_ASSERT_OK (mongo_helper_cache_touch (c, "t", 60000, &err), err);
   mh_test_sleep_ms (600);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "t", &out, &err), err);
   bson_destroy (&out);
   ck_assert (!mongo_helper_cache_touch (c, "none", 100, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   MH_ASSERT_OK (mongo_helper_cache_delete (c, "t", &deleted, &err), err);
   ck_assert (deleted);
   MH_ASSERT_OK (mongo_helper_cache_delete (c, "t", &deleted, &err), err);
   ck_assert (!deleted);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "u", v, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_clear (c, &err), err);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 0);
   rc = mh_test_raw_collection (coll);
   cur = mongoc_collection_find_indexes_with_opts (rc, NULL);
   while (mongoc_cursor_next (cur, &d)) {
      nix++;
   }
   ck_assert_int_eq (nix, 2); /* _id and expiresAt_ttl */
   mongoc_cursor_destroy (cur);
   mongoc_collection_destroy (rc);
   mongo_helper_cache_destroy (c);
   bson_destroy (v);
}
END_TEST

typedef struct {
   mongo_helper_cache_t *c;
   bool ok;
   mongo_helper_error_t e;
} incr_worker_t;

static void *
incr_worker (void *arg)
{
   incr_worker_t *w = arg;

   w->ok = true;
   for (int i = 0; i < 10 && w->ok; i++) {
      w->ok = mongo_helper_cache_incr (w->c, "shared", 1, 60000, NULL, &w->e);
   }
   mongo_helper_thread_release ();
   return NULL;
}

START_TEST (incr_from_16_threads_loses_no_update)
{
   mongo_helper_cache_t *c = cache_on (mh_test_collection ("cache"), true);
   incr_worker_t w[16];
   pthread_t t[16];
   int64_t r = 0;

   MH_ASSERT_OK (mongo_helper_cache_ensure (c, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_incr (c, "shared", 0, 60000, &r, &err), err);
   for (int i = 0; i < 16; i++) {
      memset (&w[i], 0, sizeof w[i]);
      w[i].c = c;
      ck_assert_int_eq (pthread_create (&t[i], NULL, incr_worker, &w[i]), 0);
   }
   for (int i = 0; i < 16; i++) {
      pthread_join (t[i], NULL);
   }
   for (int i = 0; i < 16; i++) {
      ck_assert_msg (w[i].ok, "thread %d: %s", i, w[i].e.message);
   }
   MH_ASSERT_OK (mongo_helper_cache_incr (c, "shared", 0, 60000, &r, &err), err);
   ck_assert_int_eq (r, 160);
   mongo_helper_cache_destroy (c);
}
END_TEST

/* ---- stampede ---- */

typedef struct {
   mongo_helper_cache_t *cache;
   const char *key;
   atomic_int *calls;
   bool ok;
   bool computed;
   int32_t got;
   mongo_helper_error_t e;
} worker_t;

static bool
slow_compute (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   atomic_int *calls = ud;

   (void) key;
   (void) e;
   atomic_fetch_add (calls, 1);
   mh_test_sleep_ms (300); /* a slow backend: everyone else arrives meanwhile */
   BSON_APPEND_INT32 (out, "answer", 42);
   return true;
}

static void *
worker (void *arg)
{
   worker_t *w = arg;
   bson_t out;
   bson_iter_t it;

   w->ok = mongo_helper_cache_get_or_compute (
      w->cache, w->key, 60000, slow_compute, w->calls, &out, &w->computed, &w->e);
   if (w->ok && bson_iter_init_find (&it, &out, "answer")) {
      w->got = bson_iter_int32 (&it);
   }
   bson_destroy (&out);
   mongo_helper_thread_release ();
   return NULL;
}

START_TEST (get_or_compute_runs_the_compute_function_once_for_16_threads)
{
   mongo_helper_cache_t *c = cache_on (mh_test_collection ("cache"), true);
   atomic_int calls = 0;
   worker_t w[16];
   pthread_t t[16];
   int computed = 0;

   MH_ASSERT_OK (mongo_helper_cache_ensure (c, &err), err);
   for (int i = 0; i < 16; i++) {
      memset (&w[i], 0, sizeof w[i]);
      w[i].cache = c;
      w[i].key = "page:/home";
      w[i].calls = &calls;
      ck_assert_int_eq (pthread_create (&t[i], NULL, worker, &w[i]), 0);
   }
   for (int i = 0; i < 16; i++) {
      pthread_join (t[i], NULL);
   }
   for (int i = 0; i < 16; i++) {
      ck_assert_msg (w[i].ok, "thread %d: %s", i, w[i].e.message);
      ck_assert_int_eq (w[i].got, 42);
      computed += w[i].computed;
   }
   ck_assert_int_eq (atomic_load (&calls), 1);
   ck_assert_int_eq (computed, 1);
   mongo_helper_cache_destroy (c);
}
END_TEST

static bool
never_called (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   (void) key;
   (void) out;
   (void) e;
   atomic_fetch_add ((atomic_int *) ud, 1);
   return true;
}

static bool
failing_compute (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   (void) key;
   (void) out;
   (void) ud;
   e->category = MONGO_HELPER_ERROR_SERVER;
   e->code = 7;
   snprintf (e->message, sizeof e->message, "backend down");
   return false;
}

START_TEST (waiters_time_out_on_a_held_lease_and_take_over_an_expired_one)
{
   char coll[96];
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;
   atomic_int calls = 0;
   mongoc_collection_t *rc;
   bson_t *lease;
   bson_t out;
   bson_error_t e;
   bool computed = true;
   int64_t now = (int64_t) time (NULL) * 1000;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("cache"));
   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   o.wait_ms = 300;
   o.lazy_ensure = false;
   c = mongo_helper_cache_new (&o, &err);
   /* Another process holds a live lease on "held". */
   rc = mh_test_raw_collection (coll);
   lease = BCON_NEW ("_id",
                     "{",
                     "lease",
                     BCON_UTF8 ("held"),
                     "}",
                     "token",
                     BCON_UTF8 ("other"),
                     "expiresAt",
                     BCON_DATE_TIME (now + 60000));
   ck_assert_msg (mongoc_collection_insert_one (rc, lease, NULL, NULL, &e), "%s", e.message);
   bson_destroy (lease);
   ck_assert (!mongo_helper_cache_get_or_compute (
      c, "held", 0, never_called, &calls, &out, &computed, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_TIMEOUT);
   ck_assert (!computed);
   ck_assert_int_eq (atomic_load (&calls), 0);
   bson_destroy (&out);

   /* A crashed holder's lease (expired) is taken over at once. */
   lease = BCON_NEW ("_id",
                     "{",
                     "lease",
                     BCON_UTF8 ("stale"),
                     "}",
                     "token",
                     BCON_UTF8 ("dead"),
                     "expiresAt",
                     BCON_DATE_TIME (now - 1000));
   ck_assert (mongoc_collection_insert_one (rc, lease, NULL, NULL, &e));
   bson_destroy (lease);
   MH_ASSERT_OK (mongo_helper_cache_get_or_compute (
                    c, "stale", 0, never_called, &calls, &out, &computed, &err),
                 err);
   ck_assert (computed);
   ck_assert_int_eq (atomic_load (&calls), 1);
   bson_destroy (&out);

   /* A failing compute returns its error and releases the lease. */
   ck_assert (!mongo_helper_cache_get_or_compute (
      c, "fails", 0, failing_compute, NULL, &out, &computed, &err));
   ck_assert_str_eq (err.message, "backend down");
   bson_destroy (&out);
   lease = BCON_NEW ("_id", "{", "lease", BCON_UTF8 ("fails"), "}");
   ck_assert_int_eq (mh_test_raw_count (coll, lease), 0);
   bson_destroy (lease);
   mongoc_collection_destroy (rc);
   mongo_helper_cache_destroy (c);
}
END_TEST

Suite *
cache_suite (void)
{
   Suite *s = suite_create ("cache");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, options_init_gives_documented_defaults);
   suite_add_tcase (s, core);
   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, set_stores_document_with_date_expiry_and_get_reads_it_back);
   tcase_add_test (live, long_keys_are_hashed_with_a_readable_prefix);
   tcase_add_test (live, bytes_round_trip_and_wrong_kind_is_invalid_argument);
   tcase_add_test (live, oversized_value_fails_before_any_write);
   tcase_add_test (live, add_only_stores_when_absent_or_expired);
   tcase_add_test (live, incr_counts_atomically_and_restarts_after_expiry);
   tcase_add_test (live, get_many_returns_only_live_keys_under_their_names);
   tcase_add_test (live, incr_from_16_threads_loses_no_update);
   tcase_add_test (live, delete_touch_and_clear_keep_the_indexes);
   tcase_add_test (live, get_or_compute_runs_the_compute_function_once_for_16_threads);
   tcase_add_test (live, waiters_time_out_on_a_held_lease_and_take_over_an_expired_one);
   suite_add_tcase (s, live);
   return s;
}
