/* Session regeneration against everything that can race it: two threads
 * start together behind a barrier, many trials, every outcome counted and
 * read back from the server; no bad outcome is allowed.  Also: the old id
 * of a regenerated session never outlives its grace, whatever touches it. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mh_test.h"

#define TRIALS 60

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

static mongo_helper_sessions_t *
store (const char *coll, int64_t grace_ms, int64_t touch_ms)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;
   bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));

   mongo_helper_sessions_options_init (&o);
   o.collection = coll;
   o.regenerate_grace_ms = grace_ms;
   o.touch_interval_ms = touch_ms;
   s = mongo_helper_sessions_new (&o, &err);
   MH_ASSERT_OK (s != NULL, err);
   MH_ASSERT_OK (mongo_helper_command (ping, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_ensure (s, &err), err);
   bson_destroy (ping);
   return s;
}

static int64_t
now_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Stored sessions of `user` whose expiresAt is in the future, claimed
 * (regenerated, in their grace) or not: what a client could still use. */
static int64_t
raw_live_of_user (const char *coll, const char *user)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_t *f = BCON_NEW (
      "userId", BCON_UTF8 (user), "expiresAt", "{", "$gt", BCON_DATE_TIME (now_ms ()), "}");
   bson_error_t e;
   int64_t n = mongoc_collection_count_documents (c, f, NULL, NULL, NULL, &e);

   ck_assert_msg (n >= 0, "%s", e.message);
   bson_destroy (f);
   mongoc_collection_destroy (c);
   return n;
}

static bool
loads (mongo_helper_sessions_t *s, const char *id)
{
   mongo_helper_error_t e;
   bson_t out;
   bool ok = mongo_helper_sessions_load (s, id, &out, &e);

   bson_destroy (&out);
   ck_assert_msg (ok || e.category == MONGO_HELPER_ERROR_NOT_FOUND, "load failed: %s", e.message);
   return ok;
}

/* ---- two threads, one barrier ---- */

typedef enum { OP_REGENERATE, OP_DELETE_USER, OP_DELETE, OP_TOUCH } op_kind_t;

typedef struct {
   op_kind_t kind;
   mongo_helper_sessions_t *s;
   const char *id;
   const char *user;
   pthread_barrier_t *go;
   bool ok;
   char new_id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_error_t e;
} racer_t;

static void *
racer (void *arg)
{
   racer_t *r = arg;
   int64_t n;

   pthread_barrier_wait (r->go);
   switch (r->kind) {
   case OP_REGENERATE:
      r->ok = mongo_helper_sessions_regenerate (r->s, r->id, r->new_id, &r->e);
      break;
   case OP_DELETE_USER:
      r->ok = mongo_helper_sessions_delete_user (r->s, r->user, &n, &r->e);
      break;
   case OP_DELETE:
      r->ok = mongo_helper_sessions_delete (r->s, r->id, &r->e);
      break;
   case OP_TOUCH:
      /* Several touches, so some land after the regenerate's claim. */
      r->ok = true;
      for (int i = 0; i < 5; i++) {
         bool wrote;
         if (!mongo_helper_sessions_touch (r->s, r->id, &wrote, &r->e) &&
             r->e.category != MONGO_HELPER_ERROR_NOT_FOUND) {
            r->ok = false;
         }
      }
      break;
   }
   mongo_helper_thread_release ();
   return NULL;
}

/* Creates a session of `user` and runs `a` and `b` on it at once. */
static void
race (mongo_helper_sessions_t *s,
      const char *user,
      char id[MONGO_HELPER_SESSION_ID_SIZE],
      racer_t *a,
      op_kind_t ka,
      racer_t *b,
      op_kind_t kb)
{
   pthread_barrier_t go;
   pthread_t ta, tb;
   bson_t *data = BCON_NEW ("cart", BCON_INT32 (3));

   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, user, id, &err), err);
   bson_destroy (data);
   memset (a, 0, sizeof *a);
   memset (b, 0, sizeof *b);
   ck_assert_int_eq (pthread_barrier_init (&go, NULL, 2), 0);
   a->kind = ka;
   b->kind = kb;
   a->s = b->s = s;
   a->id = b->id = id;
   a->user = b->user = user;
   a->go = b->go = &go;
   ck_assert_int_eq (pthread_create (&ta, NULL, racer, a), 0);
   ck_assert_int_eq (pthread_create (&tb, NULL, racer, b), 0);
   pthread_join (ta, NULL);
   pthread_join (tb, NULL);
   pthread_barrier_destroy (&go);
}

START_TEST (concurrent_regenerates_of_one_session_leave_exactly_one_live_successor)
{
   char coll[96];
   int both = 0, none = 0, wrong_error = 0, live_wrong = 0, old_live = 0, winner_gone = 0;
   char first_none[1100] = "";
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("race_regen"));
   s = store (coll, 0, 60000);
   for (int t = 0; t < TRIALS; t++) {
      char user[32], id[MONGO_HELPER_SESSION_ID_SIZE];
      racer_t a, b;

      snprintf (user, sizeof user, "user-%d", t);
      race (s, user, id, &a, OP_REGENERATE, &b, OP_REGENERATE);
      if (a.ok && b.ok) {
         both++;
      } else if (!a.ok && !b.ok) {
         if (none++ == 0) {
            snprintf (
               first_none, sizeof first_none, " (first time: %s; %s)", a.e.message, b.e.message);
         }
      } else {
         racer_t *w = a.ok ? &a : &b, *l = a.ok ? &b : &a;
         wrong_error += l->e.category != MONGO_HELPER_ERROR_NOT_FOUND;
         winner_gone += !loads (s, w->new_id);
      }
      live_wrong += raw_live_of_user (coll, user) != 1;
      old_live += loads (s, id);
   }
   ck_assert_msg (both + none + wrong_error + live_wrong + old_live + winner_gone == 0,
                  "%d trials: both regenerates succeeded %d times, neither %d%s, the loser "
                  "failed with another error than not_found %d, the user had not exactly "
                  "one live session %d times, the old id still loaded %d times, the "
                  "winner's new id did not load %d times",
                  TRIALS,
                  both,
                  none,
                  first_none,
                  wrong_error,
                  live_wrong,
                  old_live,
                  winner_gone);
   mongo_helper_sessions_destroy (s);
}
END_TEST

static void
delete_user_vs_regenerate (int64_t grace_ms)
{
   char coll[96];
   int survived = 0, successor_live = 0, delete_failed = 0, regen_error = 0, regen_ok = 0;
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("race_deluser"));
   s = store (coll, grace_ms, 60000);
   for (int t = 0; t < TRIALS; t++) {
      char user[32], id[MONGO_HELPER_SESSION_ID_SIZE];
      racer_t a, b;

      snprintf (user, sizeof user, "user-%d", t);
      race (s, user, id, &a, OP_REGENERATE, &b, OP_DELETE_USER);
      delete_failed += !b.ok;
      if (a.ok) {
         regen_ok++;
         successor_live += loads (s, a.new_id);
      } else {
         regen_error += a.e.category != MONGO_HELPER_ERROR_NOT_FOUND;
      }
      survived += raw_live_of_user (coll, user) != 0;
   }
   ck_assert_msg (survived + successor_live + delete_failed + regen_error == 0,
                  "%d trials (grace %d ms, regenerate succeeded %d times): a live session of "
                  "the user survived delete_user %d times, the successor loaded %d times, "
                  "delete_user failed %d times, regenerate failed with another error than "
                  "not_found %d times",
                  TRIALS,
                  (int) grace_ms,
                  regen_ok,
                  survived,
                  successor_live,
                  delete_failed,
                  regen_error);
   mongo_helper_sessions_destroy (s);
}

START_TEST (delete_user_racing_regenerate_leaves_no_live_session_of_the_user)
{
   delete_user_vs_regenerate (0);
}
END_TEST

START_TEST (delete_user_racing_regenerate_with_grace_leaves_no_live_session_of_the_user)
{
   delete_user_vs_regenerate (5000);
}
END_TEST

START_TEST (delete_racing_regenerate_of_the_same_id_is_all_or_nothing)
{
   char coll[96];
   int inconsistent = 0, old_live = 0, failed = 0, regen_ok = 0;
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("race_delete"));
   s = store (coll, 0, 60000);
   for (int t = 0; t < TRIALS; t++) {
      char user[32], id[MONGO_HELPER_SESSION_ID_SIZE];
      racer_t a, b;
      int64_t live;

      snprintf (user, sizeof user, "user-%d", t);
      race (s, user, id, &a, OP_REGENERATE, &b, OP_DELETE);
      failed += !b.ok || (!a.ok && a.e.category != MONGO_HELPER_ERROR_NOT_FOUND);
      live = raw_live_of_user (coll, user);
      /* A successful regenerate leaves its successor (the delete named the
       * old id); a failed one leaves nothing. */
      if (a.ok) {
         regen_ok++;
         inconsistent += live != 1 || !loads (s, a.new_id);
      } else {
         inconsistent += live != 0;
      }
      old_live += loads (s, id);
   }
   ck_assert_msg (inconsistent + old_live + failed == 0,
                  "%d trials (regenerate succeeded %d times): live sessions did not match "
                  "the regenerate's result %d times, the deleted old id loaded %d times, "
                  "unexpected errors %d",
                  TRIALS,
                  regen_ok,
                  inconsistent,
                  old_live,
                  failed);
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* Grace of the tests below: long enough for a trial's round trips, short
 * enough to wait for. */
#define GRACE_MS 1000

START_TEST (touch_racing_regenerate_never_keeps_the_old_id_past_its_grace)
{
   char coll[96];
   char (*old)[MONGO_HELPER_SESSION_ID_SIZE] = calloc (TRIALS, sizeof *old);
   int regen_failed = 0, touch_failed = 0, old_live = 0;
   int64_t last_regenerate = 0;
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("race_touch"));
   s = store (coll, GRACE_MS, 0); /* every touch is due */
   for (int t = 0; t < TRIALS; t++) {
      char user[32];
      racer_t a, b;

      snprintf (user, sizeof user, "user-%d", t);
      race (s, user, old[t], &a, OP_REGENERATE, &b, OP_TOUCH);
      regen_failed += !a.ok;
      touch_failed += !b.ok;
      last_regenerate = now_ms ();
   }
   mh_test_sleep_ms (last_regenerate + GRACE_MS + 200 - now_ms ());
   for (int t = 0; t < TRIALS; t++) {
      old_live += loads (s, old[t]);
   }
   ck_assert_msg (regen_failed + touch_failed + old_live == 0,
                  "%d trials: regenerate failed %d times, touch failed %d times, an old id "
                  "still loaded after its %d ms grace %d times",
                  TRIALS,
                  regen_failed,
                  touch_failed,
                  GRACE_MS,
                  old_live);
   free (old);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (touch_cannot_extend_the_old_id_of_a_regenerated_session_past_its_grace)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE], nid[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;
   int64_t start;
   bson_t out;
   bool touched;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("grace"));
   s = store (coll, GRACE_MS, 0);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, "u", id, &err), err);
   start = now_ms ();
   MH_ASSERT_OK (mongo_helper_sessions_regenerate (s, id, nid, &err), err);
   /* In flight during the grace: the old id still loads, every touch is
    * due, and none may write. */
   for (int i = 0; i < 5; i++) {
      bool wrote = true;
      mh_test_sleep_ms (20);
      MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
      ck_assert_msg (!wrote, "touch %d wrote to the old id of a regenerated session", i);
      MH_ASSERT_OK (mongo_helper_sessions_load_touch (s, id, &out, &touched, &err), err);
      ck_assert (!touched);
      bson_destroy (&out);
   }
   /* A second regenerate of the old id loses: it is retired. */
   ck_assert (!mongo_helper_sessions_regenerate (s, id, nid, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   mh_test_sleep_ms (start + GRACE_MS + 200 - now_ms ());
   ck_assert_msg (!loads (s, id), "the old id still loads after its %d ms grace", GRACE_MS);
   ck_assert (loads (s, nid));
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* Runs {configureFailPoint: failCommand} for the next `command`. */
static void
fail_next (const char *command)
{
   mongo_helper_conn_t *conn = mongo_helper_acquire (&err);
   bson_t *cmd = BCON_NEW ("configureFailPoint",
                           "failCommand",
                           "mode",
                           "{",
                           "times",
                           BCON_INT32 (1),
                           "}",
                           "data",
                           "{",
                           "failCommands",
                           "[",
                           BCON_UTF8 (command),
                           "]",
                           "errorCode",
                           BCON_INT32 (2),
                           "}");
   bson_error_t e;

   MH_ASSERT_OK (conn != NULL, err);
   ck_assert_msg (
      mongoc_client_command_simple (mongo_helper_conn_client (conn), "admin", cmd, NULL, NULL, &e),
      "configureFailPoint: %s",
      e.message);
   mongo_helper_release (conn);
   bson_destroy (cmd);
}

START_TEST (regenerate_failing_after_the_claim_leaves_the_old_id_retired_and_short_lived)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE], nid[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;
   mongoc_collection_t *c;
   bson_t *f, *doc = NULL;
   const bson_t *d;
   mongoc_cursor_t *cur;
   bson_iter_t it;
   int64_t claimed, n = -1;
   bool wrote = true;

   if (!getenv ("MH_MOCK_SERVER")) {
      MH_SKIP ("needs the test server's failCommand fail point");
   }
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("half"));
   s = store (coll, 0, 0);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, "u", id, &err), err);
   fail_next ("insert"); /* the successor's */
   claimed = now_ms ();
   ck_assert (!mongo_helper_sessions_regenerate (s, id, nid, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_SERVER);
   /* The old id is retired: it cannot be regenerated, touched or counted,
    * and it expires within the claim's hold. */
   ck_assert (!mongo_helper_sessions_regenerate (s, id, nid, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
   ck_assert (!wrote);
   MH_ASSERT_OK (mongo_helper_sessions_count (s, "u", &n, &err), err);
   ck_assert_int_eq (n, 0);
   ck_assert_int_eq (raw_live_of_user (coll, "u"), 1);

   c = mh_test_raw_collection (coll);
   f = BCON_NEW ("userId", BCON_UTF8 ("u"));
   cur = mongoc_collection_find_with_opts (c, f, NULL, NULL);
   if (mongoc_cursor_next (cur, &d)) {
      doc = bson_copy (d);
   }
   mongoc_cursor_destroy (cur);
   mongoc_collection_destroy (c);
   bson_destroy (f);
   ck_assert_ptr_nonnull (doc);
   ck_assert (bson_iter_init_find (&it, doc, "replacedBy") && BSON_ITER_HOLDS_UTF8 (&it));
   ck_assert_uint_eq (strlen (bson_iter_utf8 (&it, NULL)), 64);
   ck_assert (bson_iter_init_find (&it, doc, "expiresAt"));
   ck_assert_msg (bson_iter_date_time (&it) <= claimed + 10000 + 1000,
                  "the retired id lives %d ms more (expected 10 s at most)",
                  (int) (bson_iter_date_time (&it) - claimed));
   bson_destroy (doc);
   mongo_helper_sessions_destroy (s);
}
END_TEST

Suite *
session_races_suite (void)
{
   Suite *s = suite_create ("session_races");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, setup, teardown);
   tcase_set_timeout (live, 300);
   tcase_add_test (live, concurrent_regenerates_of_one_session_leave_exactly_one_live_successor);
   tcase_add_test (live, delete_user_racing_regenerate_leaves_no_live_session_of_the_user);
   tcase_add_test (live,
                   delete_user_racing_regenerate_with_grace_leaves_no_live_session_of_the_user);
   tcase_add_test (live, delete_racing_regenerate_of_the_same_id_is_all_or_nothing);
   tcase_add_test (live, touch_racing_regenerate_never_keeps_the_old_id_past_its_grace);
   tcase_add_test (live, touch_cannot_extend_the_old_id_of_a_regenerated_session_past_its_grace);
   tcase_add_test (live,
                   regenerate_failing_after_the_claim_leaves_the_old_id_retired_and_short_lived);
   suite_add_tcase (s, live);
   return s;
}
