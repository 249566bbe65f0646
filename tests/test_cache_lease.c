/* Whose bound applies to a get-or-compute waiter: two handles with
 * different settings, the holder computing on one thread (held until the
 * test lets it finish), a waiter on another; the waiter returns within its
 * own wait_ms (plus a margin for round trips), never after the holder's
 * lease_ms. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mh_test.h"

/* Round trips and scheduling on top of a wait; far below every lease. */
#define MARGIN_MS 1000

static mongo_helper_error_t err;

static void
setup (void)
{
   memset (&err, 0, sizeof err);
   mh_test_live_setup ();
}

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

static int64_t
mono_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_MONOTONIC, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The holder: computes until the test releases it. */
typedef struct {
   mongo_helper_cache_t *cache;
   const char *key;
   pthread_mutex_t lock;
   pthread_cond_t cond;
   bool computing, release;
   bool ok, computed;
   mongo_helper_error_t e;
} holder_t;

static bool
held_compute (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   holder_t *h = ud;

   (void) key;
   (void) e;
   pthread_mutex_lock (&h->lock);
   h->computing = true;
   pthread_cond_broadcast (&h->cond);
   while (!h->release) {
      pthread_cond_wait (&h->cond, &h->lock);
   }
   pthread_mutex_unlock (&h->lock);
   return BSON_APPEND_UTF8 (out, "by", "holder");
}

static void *
holder_run (void *arg)
{
   holder_t *h = arg;
   bson_t v;

   h->ok = mongo_helper_cache_get_or_compute (
      h->cache, h->key, 60000, held_compute, h, &v, &h->computed, &h->e);
   bson_destroy (&v);
   mongo_helper_thread_release ();
   return NULL;
}

static bool
waiter_compute (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   (void) key;
   (void) e;
   *(bool *) ud = true;
   return BSON_APPEND_UTF8 (out, "by", "waiter");
}

static mongo_helper_cache_t *
handle (const char *coll, int64_t lease_ms, int64_t wait_ms, int64_t poll_ms)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;

   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   o.lease_ms = lease_ms;
   o.wait_ms = wait_ms;
   o.poll_ms = poll_ms;
   c = mongo_helper_cache_new (&o, &err);
   MH_ASSERT_OK (c != NULL, err);
   MH_ASSERT_OK (mongo_helper_cache_ensure (c, &err), err);
   return c;
}

/* Starts the holder (default lease_ms, 10 s) on `key` and returns once it
 * is computing, i.e. holds the lease. */
static void
start_holder (holder_t *h, pthread_t *t, mongo_helper_cache_t *cache, const char *key)
{
   memset (h, 0, sizeof *h);
   h->cache = cache;
   h->key = key;
   pthread_mutex_init (&h->lock, NULL);
   pthread_cond_init (&h->cond, NULL);
   ck_assert_int_eq (pthread_create (t, NULL, holder_run, h), 0);
   pthread_mutex_lock (&h->lock);
   while (!h->computing) {
      pthread_cond_wait (&h->cond, &h->lock);
   }
   pthread_mutex_unlock (&h->lock);
}

static void
finish_holder (holder_t *h, pthread_t t)
{
   pthread_mutex_lock (&h->lock);
   h->release = true;
   pthread_cond_broadcast (&h->cond);
   pthread_mutex_unlock (&h->lock);
   pthread_join (t, NULL);
   ck_assert_msg (h->ok && h->computed, "holder: %s", h->e.message);
   pthread_cond_destroy (&h->cond);
   pthread_mutex_destroy (&h->lock);
}

START_TEST (waiter_times_out_within_its_own_wait_ms_behind_a_holder_with_a_longer_lease)
{
   /* wait_ms, poll_ms of the waiter's handle; the holder keeps the
    * defaults (lease 10 s, wait 5 s, poll 25 ms). */
   const struct {
      int64_t wait, poll;
   } cases[] = {{1500, 25}, {300, 4000}, {0, 25}, {700, 10000}};
   char coll[96];
   mongo_helper_cache_t *holder_cache, *waiter_cache;
   mongo_helper_cache_options_t defaults;

   mongo_helper_cache_options_init (&defaults);
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("lease"));
   holder_cache = handle (coll, defaults.lease_ms, defaults.wait_ms, defaults.poll_ms);
   for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      char key[32];
      holder_t h;
      pthread_t t;
      bson_t v;
      bool called = false, computed = true, ok;
      int64_t t0, took;

      snprintf (key, sizeof key, "page-%zu", i);
      waiter_cache = handle (coll, 10000, cases[i].wait, cases[i].poll);
      start_holder (&h, &t, holder_cache, key);
      t0 = mono_ms ();
      ok = mongo_helper_cache_get_or_compute (
         waiter_cache, key, 60000, waiter_compute, &called, &v, &computed, &err);
      took = mono_ms () - t0;
      bson_destroy (&v);
      finish_holder (&h, t);
      ck_assert_msg (!ok && err.category == MONGO_HELPER_ERROR_TIMEOUT,
                     "case %zu: expected a timeout, got %s (%s)",
                     i,
                     ok ? "a value" : mongo_helper_category_name (err.category),
                     err.message);
      ck_assert_msg (!called && !computed, "case %zu: the waiter computed while held", i);
      ck_assert_msg (took >= cases[i].wait && took <= cases[i].wait + MARGIN_MS,
                     "case %zu: a waiter with wait_ms %d and poll_ms %d returned after %d ms "
                     "(expected %d..%d ms)",
                     i,
                     (int) cases[i].wait,
                     (int) cases[i].poll,
                     (int) took,
                     (int) cases[i].wait,
                     (int) (cases[i].wait + MARGIN_MS));
      mongo_helper_cache_destroy (waiter_cache);
   }
   mongo_helper_cache_destroy (holder_cache);
}
END_TEST

/* Releases the holder after `ms`. */
typedef struct {
   holder_t *h;
   long ms;
} releaser_t;

static void *
release_later (void *arg)
{
   releaser_t *r = arg;

   mh_test_sleep_ms (r->ms);
   pthread_mutex_lock (&r->h->lock);
   r->h->release = true;
   pthread_cond_broadcast (&r->h->cond);
   pthread_mutex_unlock (&r->h->lock);
   return NULL;
}

START_TEST (waiter_gets_the_holders_value_when_it_arrives_within_wait_ms)
{
   char coll[96];
   mongo_helper_cache_t *holder_cache, *waiter_cache;
   holder_t h;
   pthread_t t, r;
   releaser_t rel;
   bson_t v;
   bson_iter_t it;
   bool called = false, computed = true;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("lease"));
   holder_cache = handle (coll, 10000, 5000, 25);
   waiter_cache = handle (coll, 10000, 5000, 25);
   start_holder (&h, &t, holder_cache, "page");
   rel.h = &h;
   rel.ms = 300;
   ck_assert_int_eq (pthread_create (&r, NULL, release_later, &rel), 0);
   MH_ASSERT_OK (mongo_helper_cache_get_or_compute (
                    waiter_cache, "page", 60000, waiter_compute, &called, &v, &computed, &err),
                 err);
   pthread_join (r, NULL);
   ck_assert (bson_iter_init_find (&it, &v, "by"));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "holder");
   ck_assert (!called && !computed);
   bson_destroy (&v);
   finish_holder (&h, t);
   mongo_helper_cache_destroy (waiter_cache);
   mongo_helper_cache_destroy (holder_cache);
}
END_TEST

Suite *
cache_lease_suite (void)
{
   Suite *s = suite_create ("cache_lease");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, setup, teardown);
   tcase_set_timeout (live, 120);
   tcase_add_test (live,
                   waiter_times_out_within_its_own_wait_ms_behind_a_holder_with_a_longer_lease);
   tcase_add_test (live, waiter_gets_the_holders_value_when_it_arrives_within_wait_ms);
   suite_add_tcase (s, live);
   return s;
}
