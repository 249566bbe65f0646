/* fork() while the library is busy: a torture test (forks while threads
 * hammer every entry point that takes a lock; each child must finish its
 * first calls), fork() during a health check that never gets an answer,
 * and fork() during the first initialisation.  The configuration a child
 * inherits is in test_fork_inherit.c, the log sink (which runs outside
 * every lock) in test_fork_log_sink.c. */
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

/* ---- The torture test ------------------------------------------------ */

/* Steps of a child; the parent names the one a hung child was in. */
enum {
   STEP_STATUS = 1,
   STEP_CIRCUIT,
   STEP_METRICS_JSON,
   STEP_METRICS_PROM,
   STEP_LOG_HANDLER,
   STEP_READ_COMMAND,
   STEP_PING,
   STEP_SERVER_INFO,
   STEP_WRITER_LOG,
   STEP_WRITER_FLUSH,
   STEP_SESSIONS,
   STEP_CACHE,
   STEP_ACQUIRE,
   STEP_NEW_CACHE,
   STEP__COUNT,
   STEP_WRITER_DESTROY = STEP__COUNT,
   STEP_SHUTDOWN,
   STEP_DONE
};

static const char *const step_names[] = {"(none)",
                                         "mongo_helper_status",
                                         "mongo_helper_circuit_status",
                                         "mongo_helper_metrics_json_dup",
                                         "mongo_helper_metrics_prometheus",
                                         "mongo_helper_set_log_handler",
                                         "mongo_helper_read_command",
                                         "mongo_helper_ping",
                                         "mongo_helper_server_info",
                                         "mongo_helper_event_writer_log",
                                         "mongo_helper_event_writer_flush",
                                         "mongo_helper_sessions_create (lazy ensure)",
                                         "mongo_helper_cache_set/get (lazy ensure)",
                                         "mongo_helper_acquire/release",
                                         "mongo_helper_cache_new + set (lazy ensure)",
                                         "mongo_helper_event_writer_destroy",
                                         "mongo_helper_shutdown",
                                         "(done)"};

static struct {
   atomic_bool stop;
   atomic_long ops;
   atomic_long sink_calls;
   mongo_helper_sessions_t *sessions;
   mongo_helper_cache_t *cache;
   mongo_helper_eventlog_t *log;
   mongo_helper_event_writer_t *writer;
   bson_t *ping;
   pthread_mutex_t gate; /* see server_call_begin () */
   pthread_cond_t gate_cond;
   int in_server_calls;
   bool forking;
} T;

/* A sink at DEBUG that is sometimes slow, so forks land while a thread is
 * inside it. */
static void
slow_sink (mongo_helper_log_level_t level, const char *domain, const char *msg, void *ud)
{
   (void) level;
   (void) domain;
   (void) msg;
   (void) ud;
   if (atomic_fetch_add (&T.sink_calls, 1) % 8 == 0) {
      mh_test_sleep_ms (1);
   }
}

static void
quiet_sink (mongo_helper_log_level_t level, const char *domain, const char *msg, void *ud)
{
   (void) level;
   (void) domain;
   (void) msg;
   (void) ud;
   atomic_fetch_add (&T.sink_calls, 1);
}

static mongo_helper_cache_t *
lazy_cache (const char *coll)
{
   mongo_helper_cache_options_t o;

   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   return mongo_helper_cache_new (&o, NULL);
}

/* One call of every kind that takes a library lock; `step` selects it.
 * Returns false when a call that must succeed failed. */
static bool
call_step (int step, long salt, mongo_helper_error_t *e)
{
   char key[64], *json;
   bson_t reply, *value;
   size_t needed = 0;
   bool ok = true;

   snprintf (key, sizeof key, "k%ld", salt % 50);
   switch (step) {
   case STEP_STATUS: {
      mongo_helper_status_t st;
      mongo_helper_pool_stats_t ps;
      mongo_helper_status (&st);
      mongo_helper_pool_stats (&ps);
      return true;
   }
   case STEP_CIRCUIT: {
      mongo_helper_circuit_t c;
      mongo_helper_circuit_status (&c);
      return true;
   }
   case STEP_METRICS_JSON:
      json = mongo_helper_metrics_json_dup (e);
      ok = json != NULL;
      bson_free (json);
      return ok;
   case STEP_METRICS_PROM: {
      char *buf;
      mongo_helper_metrics_prometheus (NULL, 0, &needed, NULL);
      buf = malloc (needed + 4096);
      ok = mongo_helper_metrics_prometheus (buf, needed + 4096, NULL, e);
      free (buf);
      return ok;
   }
   case STEP_LOG_HANDLER:
      mongo_helper_set_log_handler (
         salt % 2 ? slow_sink : quiet_sink, MONGO_HELPER_LOG_DEBUG, NULL);
      return true;
   case STEP_READ_COMMAND:
      ok = mongo_helper_read_command (T.ping, 0, &reply, e);
      bson_destroy (&reply);
      return ok;
   case STEP_PING:
      return mongo_helper_ping (5000, e);
   case STEP_SERVER_INFO: {
      mongo_helper_server_info_t info;
      return mongo_helper_server_info (5000, &info, e);
   }
   case STEP_WRITER_LOG:
      return mongo_helper_event_writer_log (T.writer, "torture", "fork", NULL, 0, e);
   case STEP_WRITER_FLUSH:
      return mongo_helper_event_writer_flush (T.writer, 5000, e);
   case STEP_SESSIONS:
      /* A read (the collection does not grow), with the lazy ensure. */
      ok = !mongo_helper_sessions_load (
              T.sessions, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &reply, e) &&
           e->category == MONGO_HELPER_ERROR_NOT_FOUND;
      bson_destroy (&reply);
      return ok;
   case STEP_CACHE:
      value = BCON_NEW ("n", BCON_INT64 (salt));
      ok = mongo_helper_cache_set (T.cache, key, value, 60000, e);
      bson_destroy (value);
      if (ok) {
         ok = mongo_helper_cache_get (T.cache, key, &reply, e);
         bson_destroy (&reply);
      }
      return ok;
   case STEP_ACQUIRE: {
      mongo_helper_conn_t *c = mongo_helper_acquire (e);
      mongo_helper_release (c);
      return c != NULL;
   }
   case STEP_NEW_CACHE: {
      mongo_helper_cache_t *c = lazy_cache ("fork_cache_fresh");
      value = BCON_NEW ("n", BCON_INT64 (salt));
      ok = c && mongo_helper_cache_set (c, key, value, 60000, e);
      bson_destroy (value);
      mongo_helper_cache_destroy (c);
      return ok;
   }
   default:
      return true;
   }
}

/* Calls that take local locks only, and calls that reach the server. */
static const int local_steps[] = {STEP_STATUS,
                                  STEP_CIRCUIT,
                                  STEP_METRICS_JSON,
                                  STEP_METRICS_PROM,
                                  STEP_LOG_HANDLER,
                                  STEP_WRITER_LOG};
static const int server_steps[] = {STEP_READ_COMMAND,
                                   STEP_PING,
                                   STEP_SERVER_INFO,
                                   STEP_WRITER_FLUSH,
                                   STEP_SESSIONS,
                                   STEP_CACHE,
                                   STEP_ACQUIRE,
                                   STEP_NEW_CACHE};
#define N_LOCAL (sizeof local_steps / sizeof *local_steps)
#define N_SERVER (sizeof server_steps / sizeof *server_steps)

static bool
step_is_local (int step)
{
   for (size_t i = 0; i < N_LOCAL; i++) {
      if (local_steps[i] == step) {
         return true;
      }
   }
   return false;
}

/* libmongoc (1.23, and its releases since) guards its topology
 * descriptions with one process-wide lock no fork handler can reach: a
 * fork at the instant another thread holds it (a few instructions inside
 * any operation) leaves the child's libmongoc unable to create a pool.
 * So the hammers' calls that reach the server pause at each fork();
 * the calls that take only the library's own locks never pause.
 * Under valgrind every call pauses and the writer is flushed first: a
 * fork catches the temporaries of calls under way, which valgrind then
 * reports as leaks in the child. */
static void
server_call_begin (void)
{
   pthread_mutex_lock (&T.gate);
   while (T.forking) {
      pthread_cond_wait (&T.gate_cond, &T.gate);
   }
   T.in_server_calls++;
   pthread_mutex_unlock (&T.gate);
}

static void
server_call_end (void)
{
   pthread_mutex_lock (&T.gate);
   T.in_server_calls--;
   pthread_cond_broadcast (&T.gate_cond);
   pthread_mutex_unlock (&T.gate);
}

static pid_t
fork_between_server_calls (void)
{
   pid_t pid;

   pthread_mutex_lock (&T.gate);
   T.forking = true;
   while (T.in_server_calls > 0) {
      pthread_cond_wait (&T.gate_cond, &T.gate);
   }
   pthread_mutex_unlock (&T.gate);
   if (mh_test_under_valgrind ()) {
      mongo_helper_event_writer_flush (T.writer, 10000, NULL);
   }
   pid = fork ();
   if (pid != 0) {
      pthread_mutex_lock (&T.gate);
      T.forking = false;
      pthread_cond_broadcast (&T.gate_cond);
      pthread_mutex_unlock (&T.gate);
   }
   return pid;
}

static void *
hammer (void *arg)
{
   long salt = (long) (intptr_t) arg;

   while (!atomic_load (&T.stop)) {
      mongo_helper_error_t e;
      int step = 1 + (int) (salt % (STEP__COUNT - 1));

      /* Failures do not matter here (a flush may time out under load):
       * the hammers only keep every lock busy.  Calls that reach the
       * server, and events, are rarer, so the test server keeps up with
       * the children. */
      if (step >= STEP_READ_COMMAND && salt % 8 != 0) {
         step = 1 + (int) (salt % STEP_LOG_HANDLER);
      }
      if (step_is_local (step) && !mh_test_under_valgrind ()) {
         call_step (step, salt, &e);
      } else {
         server_call_begin ();
         if (step == STEP_WRITER_FLUSH) {
            mongo_helper_event_writer_flush (T.writer, 20, &e);
         } else {
            call_step (step, salt, &e);
         }
         server_call_end ();
      }
      salt += 7;
      atomic_fetch_add (&T.ops, 1);
   }
   mongo_helper_thread_release ();
   return NULL;
}

static void
child_step (int step, int n, volatile int *progress)
{
   mongo_helper_error_t e;

   *progress = step;
   if (!call_step (step, n, &e)) {
      _exit (step);
   }
}

/* The child of fork `n`: its first call is of kind n (so over the forks
 * each kind comes first), then every call that takes only local locks,
 * then one that reaches the server (another kind from fork to fork; the
 * test server is slow), then the writer's destroy, which writes the
 * child's one event.  Records its step in `progress` for the parent;
 * exits with the step that failed. */
static void
torture_child (int n, volatile int *progress)
{
   mongo_helper_event_writer_stats_t st;
   int first = 1 + n % (STEP__COUNT - 1);
   bool first_local = false;

   child_step (first, n, progress);
   for (size_t i = 0; i < N_LOCAL; i++) {
      if (local_steps[i] == first) {
         first_local = true;
      } else {
         child_step (local_steps[i], n, progress);
      }
   }
   if (first_local) {
      child_step (server_steps[(size_t) n % N_SERVER], n, progress);
   }
   *progress = STEP_WRITER_DESTROY;
   mongo_helper_event_writer_destroy (T.writer, 5000, &st);
   /* The child's writer counts the child's own event only. */
   if (st.accepted != 1 || st.stored != 1 || st.queued != 0) {
      _exit (100);
   }
   *progress = STEP_SHUTDOWN;
   mongo_helper_sessions_destroy (T.sessions);
   mongo_helper_cache_destroy (T.cache);
   mongo_helper_eventlog_destroy (T.log);
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
   mongo_helper_shutdown ();
   bson_destroy (T.ping);
   *progress = STEP_DONE;
   _exit (0);
}

#define MAX_LIVE 4

START_TEST (children_forked_while_threads_hammer_every_lock_finish_their_first_calls)
{
   const bool vg = mh_test_under_valgrind ();
   const int forks = vg ? 6 : 150;
   const int hammers = 6;
   const int64_t bound_ms = vg ? 120000 : 10000;
   mongo_helper_event_writer_options_t wo;
   mongo_helper_sessions_options_t so;
   mongo_helper_eventlog_options_t lo;
   volatile int *progress; /* one per child, shared with it */
   struct {
      pid_t pid; /* 0: free slot */
      int n;
      int64_t deadline;
   } live[MAX_LIVE] = {{0}};
   pthread_t th[8];
   int hung = 0, failed = 0, next = 0, n_live = 0, first_bad = -1, first_status = 0, first_step = 0;
   long ops_before;

#ifdef MH_TEST_ASAN
   MH_SKIP ("AddressSanitizer's allocator has no fork handlers (see mh_test.h): a child "
            "forked while the other threads allocate can wait for ever in malloc");
#endif
   mh_test_live_setup ();
   memset (&T, 0, sizeof T);
   pthread_mutex_init (&T.gate, NULL);
   pthread_cond_init (&T.gate_cond, NULL);
   T.ping = BCON_NEW ("ping", BCON_INT32 (1));
   mongo_helper_sessions_options_init (&so);
   so.collection = "fork_sessions";
   T.sessions = mongo_helper_sessions_new (&so, &err);
   MH_ASSERT_OK (T.sessions != NULL, err);
   T.cache = lazy_cache ("fork_cache");
   ck_assert_ptr_nonnull (T.cache);
   mongo_helper_eventlog_options_init (&lo);
   lo.collection = "fork_events";
   T.log = mongo_helper_eventlog_new (&lo, &err);
   MH_ASSERT_OK (T.log != NULL, err);
   mongo_helper_event_writer_options_init (&wo);
   /* The writer's own thread cannot pause at a fork (see
    * server_call_begin): it writes rarely. */
   wo.flush_interval_ms = 200;
   wo.batch_size = 10000;
   T.writer = mongo_helper_event_writer_new (T.log, &wo, &err);
   MH_ASSERT_OK (T.writer != NULL, err);
   mongo_helper_set_log_handler (slow_sink, MONGO_HELPER_LOG_DEBUG, NULL);

   ck_assert_int_le (forks * (int) sizeof *progress, 4096);
   progress = mmap (NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
   ck_assert (progress != MAP_FAILED);
   for (int i = 0; i < hammers; i++) {
      ck_assert_int_eq (pthread_create (&th[i], NULL, hammer, (void *) (intptr_t) (i * 3)), 0);
   }
   mh_test_sleep_ms (vg ? 2000 : 200);
   ops_before = atomic_load (&T.ops);

   /* A few children run at once (the test server is slow); a few hung
    * ones prove the point, so no more are forked then. */
   while ((next < forks && hung < 3) || n_live > 0) {
      if (next < forks && hung < 3 && n_live < MAX_LIVE) {
         int slot = 0;
         pid_t pid;

         while (live[slot].pid) {
            slot++;
         }
         progress[next] = 0;
         pid = fork_between_server_calls ();
         ck_assert_int_ge (pid, 0);
         if (pid == 0) {
            torture_child (next, &progress[next]);
         }
         live[slot].pid = pid;
         live[slot].n = next++;
         live[slot].deadline = mh_test_now_ms () + bound_ms;
         n_live++;
         continue;
      }
      mh_test_sleep_ms (1);
      for (int slot = 0; slot < MAX_LIVE; slot++) {
         int wstatus = 0;
         pid_t r;

         if (!live[slot].pid) {
            continue;
         }
         r = waitpid (live[slot].pid, &wstatus, WNOHANG);
         ck_assert_int_ge (r, 0);
         if (r == 0 && mh_test_now_ms () < live[slot].deadline) {
            continue;
         }
         if (r == 0) {
            kill (live[slot].pid, SIGKILL);
            waitpid (live[slot].pid, &wstatus, 0);
            hung++;
         } else if (!WIFEXITED (wstatus) || WEXITSTATUS (wstatus) != 0) {
            failed++;
         }
         if ((r == 0 || !WIFEXITED (wstatus) || WEXITSTATUS (wstatus) != 0) && first_bad < 0) {
            first_bad = live[slot].n;
            first_status = wstatus;
            first_step = progress[live[slot].n];
         }
         live[slot].pid = 0;
         n_live--;
      }
   }

   atomic_store (&T.stop, true);
   for (int i = 0; i < hammers; i++) {
      pthread_join (th[i], NULL);
   }
   ck_assert_msg (atomic_load (&T.ops) > ops_before,
                  "the hammer threads made no calls while the parent forked");
   ck_assert_msg (hung == 0 && failed == 0,
                  "of %d children forked, %d hung (killed after %d ms) and %d failed; the first, "
                  "child %d, %s in %s (wait status 0x%x)",
                  next,
                  hung,
                  (int) bound_ms,
                  failed,
                  first_bad,
                  hung ? "stopped" : "failed",
                  step_names[first_step >= 0 && first_step <= STEP_DONE ? first_step : 0],
                  first_status);
   munmap ((void *) progress, 4096);
   mongo_helper_event_writer_destroy (T.writer, 5000, NULL);
   mongo_helper_eventlog_destroy (T.log);
   mongo_helper_cache_destroy (T.cache);
   mongo_helper_sessions_destroy (T.sessions);
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
   bson_destroy (T.ping);
}
END_TEST

/* ---- fork() during a health check that never gets an answer ---------- */

/* A server that accepts connections and never answers. */
static struct {
   int fd;
   atomic_int accepted;
   int conns[16];
   pthread_t thread;
} silent;

static void *
silent_accept (void *arg)
{
   (void) arg;
   for (;;) {
      int c = accept (silent.fd, NULL, NULL);
      int n;
      if (c < 0) {
         return NULL; /* the listening socket was shut down */
      }
      n = atomic_load (&silent.accepted);
      if (n < 16) {
         silent.conns[n] = c;
      } else {
         close (c);
      }
      atomic_fetch_add (&silent.accepted, 1);
   }
}

static int
silent_server_start (void)
{
   struct sockaddr_in a = {0};
   socklen_t len = sizeof a;

   silent.fd = socket (AF_INET, SOCK_STREAM, 0);
   a.sin_family = AF_INET;
   a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
   ck_assert_int_eq (bind (silent.fd, (struct sockaddr *) &a, sizeof a), 0);
   ck_assert_int_eq (listen (silent.fd, 16), 0);
   getsockname (silent.fd, (struct sockaddr *) &a, &len);
   atomic_store (&silent.accepted, 0);
   ck_assert_int_eq (pthread_create (&silent.thread, NULL, silent_accept, NULL), 0);
   return ntohs (a.sin_port);
}

static void
silent_server_stop (void)
{
   int n = atomic_load (&silent.accepted);

   shutdown (silent.fd, SHUT_RDWR);
   close (silent.fd);
   pthread_join (silent.thread, NULL);
   for (int i = 0; i < n && i < 16; i++) {
      close (silent.conns[i]);
   }
}

#define SILENT_PING_MS 4000

static void *
silent_ping (void *arg)
{
   mongo_helper_error_t e;

   (void) arg;
   return (void *) (intptr_t) mongo_helper_ping (SILENT_PING_MS, &e);
}

START_TEST (fork_returns_while_another_thread_waits_on_an_unanswered_ping)
{
   char uri[128];
   pthread_t t;
   pid_t pid;
   int wstatus, port;
   int64_t t0, fork_ms, ping_started;
   void *ping_ok;

   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   port = silent_server_start ();
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_silent", port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   ping_started = mh_test_now_ms ();
   ck_assert_int_eq (pthread_create (&t, NULL, silent_ping, NULL), 0);
   /* The ping's client has connected: its hello is now waiting for an
    * answer that never comes. */
   while (atomic_load (&silent.accepted) == 0 &&
          mh_test_now_ms () - ping_started < SILENT_PING_MS) {
      mh_test_sleep_ms (5);
   }
   ck_assert_msg (atomic_load (&silent.accepted) > 0, "the ping never connected");
   mh_test_sleep_ms (100);

   t0 = mh_test_now_ms ();
   pid = fork ();
   ck_assert_int_ge (pid, 0);
   if (pid == 0) {
      mongo_helper_status_t st;
      mongo_helper_circuit_t c;
      mongo_helper_status (&st);
      mongo_helper_circuit_status (&c);
      if (mh_test_under_valgrind ()) {
         /* The blocks the pinging thread holds are lost here by design;
          * leave without valgrind's leak check (exec is not traced). */
         execl ("/bin/true", "true", (char *) NULL);
      }
      _exit (0);
   }
   fork_ms = mh_test_now_ms () - t0;
   ck_assert_msg (mh_test_wait_child (pid, 10000, &wstatus), "the child hung");
   ck_assert_msg (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0, "child status 0x%x", wstatus);
   pthread_join (t, &ping_ok);
   ck_assert_msg (!ping_ok, "the ping of a server that never answers succeeded");
   /* The ping still had seconds to go when fork() was called: a fork that
    * took that long waited for the ping's round trip. */
   ck_assert_msg (fork_ms < SILENT_PING_MS / 2,
                  "fork() took %d ms: it waited for another thread's ping (limit %d ms)",
                  (int) fork_ms,
                  SILENT_PING_MS);
   mongo_helper_shutdown ();
   silent_server_stop ();
}
END_TEST

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

Suite *
fork_suite (void)
{
   Suite *s = suite_create ("fork");
   TCase *torture = tcase_create ("torture");
   TCase *health = tcase_create ("health");
   TCase *first = tcase_create ("first_init");

   tcase_add_checked_fixture (torture, NULL, mongo_helper_shutdown);
   tcase_set_timeout (torture, mh_test_under_valgrind () ? 900 : 120);
   tcase_add_test (torture,
                   children_forked_while_threads_hammer_every_lock_finish_their_first_calls);
   suite_add_tcase (s, torture);
   tcase_add_checked_fixture (health, NULL, mongo_helper_shutdown);
   tcase_set_timeout (health, 60);
   tcase_add_test (health, fork_returns_while_another_thread_waits_on_an_unanswered_ping);
   suite_add_tcase (s, health);
   tcase_set_timeout (first, mh_test_under_valgrind () ? 600 : 120);
   tcase_add_test (first, fork_during_the_first_initialisation_does_not_deadlock);
   suite_add_tcase (s, first);
   return s;
}
