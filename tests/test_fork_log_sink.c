/* The log sink runs outside every lock: a sink that blocks stalls neither
 * other threads' logging nor fork(), replacing the sink waits for the old
 * sink's calls, and a sink may call code that makes libmongoc log. */
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

Suite *
fork_log_sink_suite (void)
{
   Suite *s = suite_create ("fork_log_sink");
   TCase *sink = tcase_create ("log_sink");
   tcase_add_checked_fixture (sink, NULL, mongo_helper_shutdown);
   tcase_set_timeout (sink, 60);
   tcase_add_test (sink, a_sink_that_blocks_stalls_neither_other_threads_logging_nor_fork);
   tcase_add_test (sink, replacing_the_sink_returns_after_the_old_sinks_calls_finish);
   tcase_add_test (sink, a_sink_may_call_code_that_makes_libmongoc_log);
   suite_add_tcase (s, sink);
   return s;
}
