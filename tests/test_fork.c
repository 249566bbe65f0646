/* fork() while the library is busy: a torture test (forks while threads
 * hammer every entry point that takes a lock; each child must finish its
 * first calls), fork() during a health check that never gets an answer,
 * fork() during the first initialisation, and the configuration a child
 * inherits from an explicit mongo_helper_init_uri() or _init(path). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- fork() during the first initialisation ------------------------- */

static atomic_bool init_done;

static void *
first_init (void *arg)
{
   mongo_helper_error_t e;
   mongo_helper_circuit_t c;
   char *json;

   mongo_helper_init_uri (arg, &e);
   mongo_helper_circuit_status (&c);
   json = mongo_helper_metrics_json_dup (&e);
   bson_free (json);
   atomic_store (&init_done, true);
   return NULL;
}

/* Each trial is a fresh process whose first initialisation (which
 * registers modules' locks for fork) races a thread that forks in a loop:
 * neither the forking process nor its children may hang. */
START_TEST (fork_during_the_first_initialisation_does_not_deadlock)
{
   const int trials = mh_test_under_valgrind () ? 2 : 30;
   char uri[128];
   int hung = 0, failed = 0;

#ifdef MH_TEST_ASAN
   MH_SKIP ("AddressSanitizer's allocator has no fork handlers (see mh_test.h): a child "
            "forked while the other threads allocate can wait for ever in malloc");
#endif
   /* Nothing in this test process touches the library: each trial's
    * process starts from the state a new program has. */
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_first", mh_test_free_port ());
   for (int i = 0; i < trials; i++) {
      int wstatus;
      pid_t pid = fork ();

      ck_assert_int_ge (pid, 0);
      if (pid == 0) {
         pthread_t t;
         int n = 0;

         atomic_store (&init_done, false);
         pthread_create (&t, NULL, first_init, uri);
         while (!atomic_load (&init_done) && n++ < 5000) {
            pid_t g = fork ();
            if (g == 0) {
               if (mh_test_under_valgrind ()) {
                  /* It may hold the initialising thread's blocks, lost
                   * here by design: no leak check (exec is not traced). */
                  execl ("/bin/true", "true", (char *) NULL);
               }
               _exit (0);
            }
            if (g < 0 || waitpid (g, NULL, 0) != g) {
               _exit (2);
            }
         }
         pthread_join (t, NULL);
         mongo_helper_shutdown ();
         _exit (0);
      }
      if (!mh_test_wait_child (pid, mh_test_under_valgrind () ? 120000 : 10000, &wstatus)) {
         hung++;
      } else if (!WIFEXITED (wstatus) || WEXITSTATUS (wstatus) != 0) {
         failed++;
      }
   }
   ck_assert_msg (hung == 0 && failed == 0,
                  "of %d processes forking during their first initialisation, %d hung "
                  "(deadlock between fork() and the initialisation) and %d failed",
                  trials,
                  hung,
                  failed);
}
END_TEST

/* ---- The configuration a child inherits ----------------------------- */

/* "mongodb://<host:port of the test server>/<database>" */
static void
test_server_uri_with_db (char *out, size_t size, const char *database, const char *query)
{
   const char *uri = mh_test_uri ();
   mongoc_uri_t *u;
   const mongoc_host_list_t *h;

   ck_assert_msg (uri, "MONGO_TEST_URI is not set: run the tests with make check");
   u = mongoc_uri_new (uri);
   ck_assert_ptr_nonnull (u);
   h = mongoc_uri_get_hosts (u);
   ck_assert_ptr_nonnull (h);
   ck_assert_int_lt (
      snprintf (out, size, "mongodb://%.64s/%s%s", h->host_and_port, database, query ? query : ""),
      (int) size);
   mongoc_uri_destroy (u);
}

/* The parent chose its configuration explicitly; the environment names
 * another database.  The child's first call is a write; it must land in
 * the parent's database, and the child's status must name the parent's
 * source.  Exit codes: 2 status before the first call, 3 insert, 4 status
 * after it. */
static void
child_writes_with_inherited_config (const char *coll,
                                    const char *want_db,
                                    const mongo_helper_status_t *parent)
{
   pid_t pid;
   int wstatus;

   pid = fork ();
   ck_assert_int_ge (pid, 0);
   if (pid == 0) {
      mongo_helper_status_t st;
      mongo_helper_error_t e;
      bson_t *doc = BCON_NEW ("who", BCON_UTF8 ("child"));
      int code = 0;

      mongo_helper_status (&st);
      if (!st.initialized || strcmp (st.source, parent->source) != 0 ||
          strcmp (st.database, want_db) != 0) {
         code = 2;
      } else if (!mongo_helper_insert_one (NULL, coll, doc, NULL, &e)) {
         code = 3;
      } else {
         mongo_helper_status (&st);
         if (strcmp (st.source, parent->source) != 0 || strcmp (st.database, want_db) != 0) {
            code = 4;
         }
      }
      bson_destroy (doc);
      mongo_helper_shutdown ();
      _exit (code);
   }
   ck_assert_msg (mh_test_wait_child (pid, 30000, &wstatus), "the child hung");
   ck_assert_msg (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0,
                  "child exit status %d (2: its status did not name the parent's source "
                  "'%s' and database '%s' before its first call; 3: its insert failed; "
                  "4: its status after the insert named another source)",
                  WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1,
                  parent->source,
                  want_db);
}

static int64_t
count_in (const char *database, const char *coll)
{
   bson_t filter = BSON_INITIALIZER;
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_count_documents (database, coll, &filter, &n, &err), err);
   return n;
}

START_TEST (child_of_init_uri_writes_to_the_parents_database_not_the_environments)
{
   char explicit_uri[256], env_uri[256];
   const char *coll = mh_test_collection ("inherit_uri");
   mongo_helper_status_t st;

   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   test_server_uri_with_db (explicit_uri, sizeof explicit_uri, "mh_fork_explicit", NULL);
   test_server_uri_with_db (env_uri, sizeof env_uri, "mh_fork_env", NULL);
   setenv ("MONGO_CACHE_URI", env_uri, 1);
   MH_ASSERT_OK (mongo_helper_init_uri (explicit_uri, &err), err);
   mongo_helper_status (&st);
   ck_assert_str_eq (st.database, "mh_fork_explicit");

   child_writes_with_inherited_config (coll, "mh_fork_explicit", &st);

   ck_assert_int_eq (count_in (NULL, coll), 1);
   ck_assert_int_eq (count_in ("mh_fork_explicit", coll), 1);
   ck_assert_int_eq (count_in ("mh_fork_env", coll), 0);
   mongo_helper_shutdown ();
}
END_TEST

START_TEST (child_of_init_with_a_file_writes_to_the_files_database_not_the_environments)
{
   char uri[256], content[512], chosen[256];
   const char *coll = mh_test_collection ("inherit_ini");
   mongo_helper_status_t st;

   mh_test_clean_env ();
   /* The file the environment names points elsewhere. */
   test_server_uri_with_db (uri, sizeof uri, "mh_fork_env", NULL);
   snprintf (content, sizeof content, "[db]\nmongo_uri = %s\n", uri);
   setenv ("MONGO_HELPER_CONFIG", mh_test_write_ini (content), 1);
   /* The file the parent passes explicitly. */
   test_server_uri_with_db (uri, sizeof uri, "mh_fork_ini", NULL);
   snprintf (content, sizeof content, "[db]\nmongo_uri = %s\n", uri);
   snprintf (chosen, sizeof chosen, "%s", mh_test_write_ini (content));
   MH_ASSERT_OK (mongo_helper_init (chosen, &err), err);
   mongo_helper_status (&st);
   ck_assert_str_eq (st.database, "mh_fork_ini");
   ck_assert_msg (strstr (st.source, chosen), "source '%s' does not name %s", st.source, chosen);

   child_writes_with_inherited_config (coll, "mh_fork_ini", &st);

   ck_assert_int_eq (count_in ("mh_fork_ini", coll), 1);
   ck_assert_int_eq (count_in ("mh_fork_env", coll), 0);
   mongo_helper_shutdown ();
}
END_TEST

/* ---- The log sink, which runs outside every lock -------------------- */

static struct {
   pthread_mutex_t m;
   pthread_cond_t c;
   bool hold; /* the sink blocks on the holder thread while true */
   pthread_t holder;
   int blocked; /* holder threads inside the sink */
   int calls, mongoc_calls;
   bool reenter; /* the sink makes libmongoc log, once */
} S = {.m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER};

static void
holding_sink (mongo_helper_log_level_t level, const char *domain, const char *msg, void *ud)
{
   bool reenter;

   (void) level;
   (void) msg;
   (void) ud;
   pthread_mutex_lock (&S.m);
   S.calls++;
   S.mongoc_calls += strcmp (domain, "mongo_helper") != 0;
   reenter = S.reenter && strcmp (domain, "mongo_helper") != 0;
   S.reenter = S.reenter && !reenter;
   if (S.hold && pthread_equal (pthread_self (), S.holder)) {
      S.blocked++;
      pthread_cond_broadcast (&S.c);
      while (S.hold) {
         pthread_cond_wait (&S.c, &S.m);
      }
      S.blocked--;
   }
   pthread_mutex_unlock (&S.m);
   if (reenter) {
      /* libmongoc warns about the unknown option through its log. */
      mongoc_uri_destroy (mongoc_uri_new ("mongodb://127.0.0.1:1/?bogusSinkOption=1"));
   }
}

static char sink_uri[128];

/* The holder: its first pool's "pool created" line blocks in the sink. */
static void *
holder_thread (void *arg)
{
   mongo_helper_error_t e;

   (void) arg;
   pthread_mutex_lock (&S.m);
   S.holder = pthread_self ();
   pthread_mutex_unlock (&S.m);
   return (void *) (intptr_t) mongo_helper_init_uri (sink_uri, &e);
}

static void
hold_a_thread_in_the_sink (pthread_t *t)
{
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (sink_uri, sizeof sink_uri, "mongodb://127.0.0.1:%d/mh_sink", mh_test_free_port ());
   pthread_mutex_lock (&S.m);
   S.hold = true;
   S.blocked = S.calls = S.mongoc_calls = 0;
   pthread_mutex_unlock (&S.m);
   mongo_helper_set_log_handler (holding_sink, MONGO_HELPER_LOG_DEBUG, NULL);
   ck_assert_int_eq (pthread_create (t, NULL, holder_thread, NULL), 0);
   pthread_mutex_lock (&S.m);
   while (S.blocked == 0) {
      pthread_cond_wait (&S.c, &S.m);
   }
   pthread_mutex_unlock (&S.m);
}

static void
release_the_sink (pthread_t t)
{
   void *ok;

   pthread_mutex_lock (&S.m);
   S.hold = false;
   pthread_cond_broadcast (&S.c);
   pthread_mutex_unlock (&S.m);
   pthread_join (t, &ok);
   ck_assert_msg (ok, "the holder's init failed");
}

static atomic_bool other_logged;

/* Another thread's log line: a libmongoc warning, handed to the sink by
 * this thread's next library call. */
static void *
other_logger (void *arg)
{
   mongo_helper_error_t e;

   (void) arg;
   mongoc_uri_destroy (mongoc_uri_new ("mongodb://127.0.0.1:1/?bogusOtherOption=1"));
   mongo_helper_init_uri (sink_uri, &e); /* already initialised: delivers only */
   atomic_store (&other_logged, true);
   return NULL;
}

START_TEST (a_sink_that_blocks_stalls_neither_other_threads_logging_nor_fork)
{
   pthread_t holder, other;
   int64_t t0;
   int wstatus, mongoc_calls;
   pid_t pid;

   hold_a_thread_in_the_sink (&holder);

   /* Another thread logs while the holder is inside the sink. */
   atomic_store (&other_logged, false);
   ck_assert_int_eq (pthread_create (&other, NULL, other_logger, NULL), 0);
   t0 = mh_test_now_ms ();
   while (!atomic_load (&other_logged) && mh_test_now_ms () - t0 < 5000) {
      mh_test_sleep_ms (5);
   }
   pthread_mutex_lock (&S.m);
   mongoc_calls = S.mongoc_calls;
   pthread_mutex_unlock (&S.m);
   if (!atomic_load (&other_logged)) {
      release_the_sink (holder);
      pthread_join (other, NULL);
      ck_abort_msg ("another thread's log line waited for the sink call of a blocked thread");
   }
   pthread_join (other, NULL);
   ck_assert_msg (mongoc_calls > 0, "the other thread's libmongoc warning never reached the sink");

   /* fork() while the holder is inside the sink; the child logs too. */
   pid = fork ();
   ck_assert_int_ge (pid, 0);
   if (pid == 0) {
      mongo_helper_error_t e;
      mongo_helper_shutdown ();
      _exit (mongo_helper_init_uri (sink_uri, &e) ? 0 : 2); /* logs "pool created" */
   }
   if (!mh_test_wait_child (pid, 10000, &wstatus)) {
      release_the_sink (holder);
      ck_abort_msg ("the child's first log line hung: the sink's caller held a lock at fork()");
   }
   release_the_sink (holder);
   ck_assert_msg (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0, "child status 0x%x", wstatus);
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
}
END_TEST

static atomic_bool replaced;
static atomic_int blocked_at_return = -1;

static void *
replacer (void *arg)
{
   (void) arg;
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
   pthread_mutex_lock (&S.m);
   atomic_store (&blocked_at_return, S.blocked);
   pthread_mutex_unlock (&S.m);
   atomic_store (&replaced, true);
   return NULL;
}

START_TEST (replacing_the_sink_returns_after_the_old_sinks_calls_finish)
{
   pthread_t holder, t;

   hold_a_thread_in_the_sink (&holder);
   atomic_store (&replaced, false);
   ck_assert_int_eq (pthread_create (&t, NULL, replacer, NULL), 0);
   mh_test_sleep_ms (300);
   ck_assert_msg (!atomic_load (&replaced),
                  "set_log_handler returned while another thread was inside the old sink");
   release_the_sink (holder);
   pthread_join (t, NULL);
   ck_assert_int_eq (atomic_load (&blocked_at_return), 0);
}
END_TEST

static atomic_bool reentered;

static void *
reenter_thread (void *arg)
{
   mongo_helper_error_t e;

   (void) arg;
   mongoc_uri_destroy (mongoc_uri_new ("mongodb://127.0.0.1:1/?bogusFirstOption=1"));
   mongo_helper_init_uri (sink_uri, &e); /* delivers; the sink makes libmongoc log */
   mongo_helper_init_uri (sink_uri, &e); /* delivers that one */
   atomic_store (&reentered, true);
   return NULL;
}

/* libmongoc calls its handler under its own non-recursive lock: a sink
 * run there that makes libmongoc log again deadlocked its thread. */
START_TEST (a_sink_may_call_code_that_makes_libmongoc_log)
{
   pthread_t t;
   int64_t t0;

   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (sink_uri, sizeof sink_uri, "mongodb://127.0.0.1:%d/mh_sink", mh_test_free_port ());
   pthread_mutex_lock (&S.m);
   S.hold = false;
   S.calls = S.mongoc_calls = 0;
   S.reenter = true;
   pthread_mutex_unlock (&S.m);
   mongo_helper_set_log_handler (holding_sink, MONGO_HELPER_LOG_DEBUG, NULL);
   atomic_store (&reentered, false);
   ck_assert_int_eq (pthread_create (&t, NULL, reenter_thread, NULL), 0);
   t0 = mh_test_now_ms ();
   while (!atomic_load (&reentered) && mh_test_now_ms () - t0 < 5000) {
      mh_test_sleep_ms (5);
   }
   ck_assert_msg (atomic_load (&reentered),
                  "a sink that made libmongoc log deadlocked (libmongoc's log lock is held "
                  "around the sink)");
   pthread_join (t, NULL);
   pthread_mutex_lock (&S.m);
   ck_assert_int_ge (S.mongoc_calls, 2);
   pthread_mutex_unlock (&S.m);
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
}
END_TEST

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

Suite *
fork_suite (void)
{
   Suite *s = suite_create ("fork");
   TCase *first = tcase_create ("first_init");
   TCase *inherit = tcase_create ("inherit");
   TCase *sink = tcase_create ("log_sink");

   tcase_set_timeout (first, mh_test_under_valgrind () ? 600 : 120);
   tcase_add_test (first, fork_during_the_first_initialisation_does_not_deadlock);
   suite_add_tcase (s, first);
   tcase_add_checked_fixture (inherit, NULL, teardown);
   tcase_set_timeout (inherit, 60);
   tcase_add_test (inherit, child_of_init_uri_writes_to_the_parents_database_not_the_environments);
   tcase_add_test (inherit,
                   child_of_init_with_a_file_writes_to_the_files_database_not_the_environments);
   suite_add_tcase (s, inherit);
   tcase_add_checked_fixture (sink, NULL, teardown);
   tcase_set_timeout (sink, 60);
   tcase_add_test (sink, a_sink_that_blocks_stalls_neither_other_threads_logging_nor_fork);
   tcase_add_test (sink, replacing_the_sink_returns_after_the_old_sinks_calls_finish);
   tcase_add_test (sink, a_sink_may_call_code_that_makes_libmongoc_log);
   suite_add_tcase (s, sink);
   return s;
}
