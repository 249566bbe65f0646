/* The buffered event writer: its option bounds, its destroy deadline when
 * the server is down or never answers a write, and fork(): a child logging
 * through a writer its parent started. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static mongo_helper_eventlog_t *
log_on (const char *coll, bool lazy)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_eventlog_t *l;

   mongo_helper_eventlog_options_init (&o);
   o.collection = coll;
   o.lazy_ensure = lazy;
   l = mongo_helper_eventlog_new (&o, &err);
   MH_ASSERT_OK (l != NULL, err);
   return l;
}

static mongo_helper_event_writer_t *
writer_on (mongo_helper_eventlog_t *l, size_t batch, int32_t interval_ms)
{
   mongo_helper_event_writer_options_t o;
   mongo_helper_event_writer_t *w;

   mongo_helper_event_writer_options_init (&o);
   o.batch_size = batch;
   o.flush_interval_ms = interval_ms;
   o.backoff_min_ms = 50;
   o.backoff_max_ms = 200;
   w = mongo_helper_event_writer_new (l, &o, &err);
   MH_ASSERT_OK (w != NULL, err);
   return w;
}

static void
assert_invariant (const char *where, const mongo_helper_event_writer_stats_t *st)
{
   ck_assert_msg (st->accepted == st->stored + st->dropped + st->queued,
                  "%s: accepted %llu != stored %llu + dropped %llu + queued %llu",
                  where,
                  (unsigned long long) st->accepted,
                  (unsigned long long) st->stored,
                  (unsigned long long) st->dropped,
                  (unsigned long long) st->queued);
}

/* ---- option bounds (no server) -------------------------------------- */

/* Sizes either side of each bound; SIZE_MAX / 8 + 2 is the queue_size
 * whose ring (queue_size * 8 bytes) wrapped to 8 bytes. */
START_TEST (writer_sizes_outside_their_documented_ranges_are_refused)
{
   const struct {
      size_t queue, batch;
      bool ok;
      const char *names;
   } cases[] = {
      {0, 500, false, "queue_size"},
      {1, 500, true, NULL},
      {MONGO_HELPER_EVENT_WRITER_MAX_QUEUE, 500, true, NULL},
      {(size_t) MONGO_HELPER_EVENT_WRITER_MAX_QUEUE + 1, 500, false, "queue_size"},
      {SIZE_MAX / sizeof (void *) + 2, 500, false, "queue_size"},
      {SIZE_MAX, 500, false, "queue_size"},
      {10000, 0, false, "batch_size"},
      {10000, 1, true, NULL},
      {10000, MONGO_HELPER_EVENT_WRITER_MAX_BATCH, true, NULL},
      {10000, (size_t) MONGO_HELPER_EVENT_WRITER_MAX_BATCH + 1, false, "batch_size"},
      {10000, SIZE_MAX / sizeof (void *) + 2, false, "batch_size"},
      {10000, SIZE_MAX, false, "batch_size"},
   };
   mongo_helper_eventlog_t *l;

   mh_test_clean_env ();
   l = log_on ("bounds", true);
   for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      mongo_helper_event_writer_options_t o;
      mongo_helper_event_writer_stats_t st;
      mongo_helper_event_writer_t *w;

      mongo_helper_event_writer_options_init (&o);
      o.queue_size = cases[i].queue;
      o.batch_size = cases[i].batch;
      w = mongo_helper_event_writer_new (l, &o, &err);
      if (cases[i].ok) {
         ck_assert_msg (w,
                        "queue_size %zu, batch_size %zu refused: %s",
                        o.queue_size,
                        o.batch_size,
                        err.message);
         /* The whole ring is usable: fill a small one past its size (with
          * fewer events than a batch, so nothing goes to the network). */
         for (size_t n = 0; o.batch_size > 3 && n < 3 && n <= o.queue_size; n++) {
            mongo_helper_event_writer_log (w, "u", "bound", NULL, 0, NULL);
         }
         mongo_helper_event_writer_destroy (w, 0, &st);
         assert_invariant ("after destroy", &st);
      } else {
         ck_assert_msg (!w,
                        "queue_size %zu, batch_size %zu was accepted: expected INVALID_ARGUMENT",
                        o.queue_size,
                        o.batch_size);
         mongo_helper_event_writer_destroy (w, 0, NULL);
         ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
         ck_assert_msg (strstr (err.message, cases[i].names),
                        "the message does not name %s: %s",
                        cases[i].names,
                        err.message);
      }
   }
   mongo_helper_eventlog_destroy (l);
}
END_TEST

/* ---- destroy's deadline ---------------------------------------------- */

#define DEADLINE_MS 600
#define MARGIN_MS 250

/* Logs `n` events, destroys the writer with DEADLINE_MS, and checks it
 * returned in time with every event counted as dropped; then destroys the
 * log at once (the writer's thread must not need it) and shuts down. */
static void
destroy_within_deadline (mongo_helper_eventlog_t *l, int n)
{
   mongo_helper_event_writer_t *w = writer_on (l, 10, 20);
   mongo_helper_event_writer_stats_t st;
   mongo_helper_pool_stats_t ps;
   int64_t t0, took;

   for (int i = 0; i < n; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u", "lost", NULL, 0, &err), err);
   }
   mh_test_sleep_ms (300); /* the thread is inside its first write by now */
   t0 = mh_test_now_ms ();
   mongo_helper_event_writer_destroy (w, DEADLINE_MS, &st);
   took = mh_test_now_ms () - t0;
   ck_assert_msg (took <= DEADLINE_MS + MARGIN_MS,
                  "destroy took %d ms for a %d ms deadline",
                  (int) took,
                  DEADLINE_MS);
   assert_invariant ("final", &st);
   ck_assert_uint_eq (st.accepted, (uint64_t) n);
   ck_assert_uint_eq (st.stored, 0);
   ck_assert_uint_eq (st.dropped, (uint64_t) n);
   ck_assert_uint_eq (st.queued, 0);
   mongo_helper_eventlog_destroy (l);
   mongo_helper_shutdown ();
   /* The write destroy gave up on comes back within the driver's
    * timeouts; then the thread frees the rest and gives its client back
    * (sanitizers and valgrind watch that part). */
   for (int i = 0; i < 1000; i++) {
      mongo_helper_pool_stats (&ps);
      if (ps.in_use == 0) {
         break;
      }
      mh_test_sleep_ms (20);
   }
   ck_assert_int_eq (ps.in_use, 0);
   mh_test_sleep_ms (100);
}

START_TEST (destroy_keeps_its_deadline_when_the_server_is_down)
{
   char uri[192];

   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   /* Server selection waits 3 s for a server that refuses connections: a
    * write outlasts the deadline. */
   snprintf (uri,
             sizeof uri,
             "mongodb://127.0.0.1:%d/mh_down?serverSelectionTimeoutMS=3000&connectTimeoutMS=300",
             mh_test_free_port ());
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   destroy_within_deadline (log_on ("events", false), 25);
}
END_TEST

/* The server takes each insert but answers it only after 4 s. */
START_TEST (destroy_keeps_its_deadline_when_a_write_gets_no_answer)
{
   mh_test_server_t srv = {0};
   char uri[192];
   bson_t cmd;
   bson_error_t e;
   mongo_helper_conn_t *c;
   mongo_helper_eventlog_t *l;

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for a fail point that holds the insert");
   }
   mh_test_server_start (&srv, 0, NULL);
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (
      uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_silent_write?socketTimeoutMS=10000", srv.port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   l = log_on ("events", true);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, NULL, &err), err);
   ck_assert (bson_init_from_json (&cmd,
                                   "{\"configureFailPoint\": \"failCommand\", \"mode\": "
                                   "\"alwaysOn\", \"data\": {\"failCommands\": [\"insert\"], "
                                   "\"blockConnection\": true, \"blockTimeMS\": 4000}}",
                                   -1,
                                   &e));
   c = mongo_helper_acquire (&err);
   MH_ASSERT_OK (c != NULL, err);
   ck_assert_msg (
      mongoc_client_command_simple (mongo_helper_conn_client (c), "admin", &cmd, NULL, NULL, &e),
      "configureFailPoint: %s",
      e.message);
   mongo_helper_release (c);
   bson_destroy (&cmd);
   destroy_within_deadline (l, 25);
   mh_test_server_stop (&srv);
}
END_TEST

/* ---- fork ------------------------------------------------------------ */

static int64_t
count_user (const char *coll, const char *user)
{
   bson_t *filter = BCON_NEW ("user_id", BCON_UTF8 (user));
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_count_documents (NULL, coll, filter, &n, &err), err);
   bson_destroy (filter);
   return n;
}

/* The child of round `round`: logs `n` events as user "child-<round>"
 * through the parent's writer, destroys it within its deadline, and checks
 * its own counters.  Exit codes: 2 log failed, 3 destroy overran its
 * deadline, 4 the counters are not the child's own n events, all stored. */
static void
fork_child (mongo_helper_event_writer_t *w, mongo_helper_eventlog_t *l, int round, int n)
{
   mongo_helper_event_writer_stats_t st;
   char user[32];
   int64_t t0;

   snprintf (user, sizeof user, "child-%d", round);
   mongo_helper_event_writer_stats (w, &st);
   if (st.accepted != 0 || st.queued != 0) {
      _exit (4); /* the parent's events are not the child's */
   }
   for (int i = 0; i < n; i++) {
      if (!mongo_helper_event_writer_log (w, user, "forked", NULL, 0, NULL)) {
         _exit (2);
      }
   }
   t0 = mh_test_now_ms ();
   mongo_helper_event_writer_destroy (w, 5000, &st);
   if (mh_test_now_ms () - t0 > 5000 + MARGIN_MS) {
      _exit (3);
   }
   if (st.accepted != (uint64_t) n || st.stored != (uint64_t) n || st.dropped != 0 ||
       st.queued != 0) {
      _exit (4);
   }
   mongo_helper_eventlog_destroy (l);
   mongo_helper_shutdown ();
   _exit (0);
}

START_TEST (child_logs_through_the_parents_writer_and_each_process_counts_its_own_events)
{
   const int rounds = mh_test_under_valgrind () ? 3 : 20;
   const char *coll = mh_test_collection ("ew_fork");
   char coll_name[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_writer_t *w;
   mongo_helper_event_writer_stats_t st;
   int64_t parent_logged = 0;

#ifdef MH_TEST_ASAN
   MH_SKIP ("AddressSanitizer's allocator has no fork handlers (see mh_test.h): a child "
            "forked while the other threads allocate can wait for ever in malloc");
#endif
   mh_test_live_setup ();
   snprintf (coll_name, sizeof coll_name, "%s", coll);
   l = log_on (coll_name, true);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, NULL, &err), err);
   /* A long interval and a large batch: the parent's events are still
    * queued when it forks. */
   w = writer_on (l, 1000, 60000);
   for (int round = 0; round < rounds; round++) {
      /* Odd rounds: the child logs nothing and destroys a writer that never
       * had a thread in it. */
      const int child_events = round % 2 ? 0 : 3;
      char user[32];
      int wstatus;
      pid_t pid;

      for (int i = 0; i < 5; i++) {
         MH_ASSERT_OK (mongo_helper_event_writer_log (w, "parent", "before_fork", NULL, 0, &err),
                       err);
      }
      parent_logged += 5;
      pid = fork ();
      ck_assert_int_ge (pid, 0);
      if (pid == 0) {
         fork_child (w, l, round, child_events);
      }
      ck_assert_msg (mh_test_wait_child (pid, mh_test_under_valgrind () ? 120000 : 30000, &wstatus),
                     "round %d: the child hung",
                     round);
      ck_assert_msg (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0,
                     "round %d: child status 0x%x (exit 2: log failed, 3: destroy overran its "
                     "deadline, 4: the child's counters are not its own %d events, all stored)",
                     round,
                     wstatus,
                     child_events);
      snprintf (user, sizeof user, "child-%d", round);
      ck_assert_int_eq (count_user (coll_name, user), child_events);
      /* The parent's events of this round are still queued here: had the
       * child written them, they would be on the server already. */
      mongo_helper_event_writer_stats (w, &st);
      assert_invariant ("parent", &st);
      ck_assert_uint_eq (st.accepted, (uint64_t) parent_logged);
      ck_assert_int_eq (count_user (coll_name, "parent"), (int64_t) st.stored);
      ck_assert_uint_ge (st.queued, 5);
   }
   mongo_helper_event_writer_destroy (w, 5000, &st);
   assert_invariant ("parent final", &st);
   ck_assert_uint_eq (st.accepted, (uint64_t) parent_logged);
   ck_assert_uint_eq (st.stored, (uint64_t) parent_logged);
   ck_assert_int_eq (count_user (coll_name, "parent"), parent_logged);
   mongo_helper_eventlog_destroy (l);
}
END_TEST

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

Suite *
event_writer_fork_suite (void)
{
   Suite *s = suite_create ("event_writer_fork");
   TCase *bounds = tcase_create ("bounds");
   TCase *deadline = tcase_create ("deadline");
   TCase *fork_tc = tcase_create ("fork");

   tcase_add_checked_fixture (bounds, NULL, teardown);
   tcase_set_timeout (bounds, 60);
   tcase_add_test (bounds, writer_sizes_outside_their_documented_ranges_are_refused);
   suite_add_tcase (s, bounds);
   tcase_add_checked_fixture (deadline, NULL, teardown);
   tcase_set_timeout (deadline, 90);
   tcase_add_test (deadline, destroy_keeps_its_deadline_when_the_server_is_down);
   tcase_add_test (deadline, destroy_keeps_its_deadline_when_a_write_gets_no_answer);
   suite_add_tcase (s, deadline);
   tcase_add_checked_fixture (fork_tc, NULL, teardown);
   tcase_set_timeout (fork_tc, mh_test_under_valgrind () ? 600 : 120);
   tcase_add_test (fork_tc,
                   child_logs_through_the_parents_writer_and_each_process_counts_its_own_events);
   suite_add_tcase (s, fork_tc);
   return s;
}
