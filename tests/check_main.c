/* Runs every suite; exits non-zero when any test failed. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

void
mh_test_clean_env (void)
{
   static const char *vars[] = {"MONGO_CACHE_URI",
                                "MONGO_URI",
                                "MONGO_HOST",
                                "MONGO_PORT",
                                "MONGO_DB",
                                "MONGO_USERNAME",
                                "MONGO_PASSWORD",
                                "MONGO_AUTH_SOURCE",
                                "MONGO_REPLICA_SET",
                                "MONGO_USE_SSL",
                                "MONGO_SSL_CA_CERTS",
                                "MONGO_HELPER_CONFIG",
                                "MONGO_MAX_POOL_SIZE",
                                "MONGO_MIN_POOL_SIZE",
                                "MONGO_MAX_IDLE_TIME_MS",
                                "MONGO_CONNECT_TIMEOUT_MS",
                                "MONGO_SERVER_SELECTION_TIMEOUT_MS",
                                "MONGO_SOCKET_TIMEOUT_MS",
                                "MONGO_WAIT_QUEUE_TIMEOUT_MS",
                                "MONGO_RETRY_WRITES",
                                "MONGO_RETRY_READS",
                                "MONGO_APP_NAME"};
   for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
      unsetenv (vars[i]);
   }
}

const char *
mh_test_write_ini (const char *content)
{
   static char path[256];
   char dir[] = "/tmp/mh_test_XXXXXX";
   FILE *f;

   ck_assert_ptr_nonnull (mkdtemp (dir));
   snprintf (path, sizeof path, "%s/test.ini", dir);
   f = fopen (path, "w");
   ck_assert_ptr_nonnull (f);
   fputs (content, f);
   fclose (f);
   return path;
}

const char *
mh_test_uri (void)
{
   const char *u = getenv ("MONGO_TEST_URI");
   return u && *u ? u : NULL;
}

void
mh_test_live_setup (void)
{
   const char *uri = mh_test_uri ();

   ck_assert_msg (uri, "MONGO_TEST_URI is not set: run the tests with make check");
   mh_test_clean_env ();
   setenv ("MONGO_CACHE_URI", uri, 1);
   setenv ("MONGO_DB", "mh_test", 1); /* used when the URI names none */
   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "5000", 1);
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
}

mongoc_collection_t *
mh_test_raw_collection (const char *name)
{
   mongo_helper_error_t e;
   mongoc_database_t *db = mongo_helper_database (&e);

   MH_ASSERT_OK (db != NULL, e);
   return mongoc_database_get_collection (db, name);
}

const char *
mh_test_collection (const char *prefix)
{
   static char name[96];
   static int n;
   snprintf (name, sizeof name, "%s_%ld_%d", prefix, (long) getpid (), n++);
   return name;
}

void
mh_test_skip_note (const char *test, const char *reason)
{
   const char *log = getenv ("MH_SKIP_LOG");
   FILE *f;

   /* Check names the function behind a test "<test>_fn": drop that. */
   size_t len = strlen (test);
   int shown = (int) (len > 3 && strcmp (test + len - 3, "_fn") == 0 ? len - 3 : len);

   printf ("SKIP %.*s: %s\n", shown, test, reason);
   if (log && (f = fopen (log, "a"))) {
      fprintf (f, "%.*s: %s\n", shown, test, reason);
      fclose (f);
   }
}

void
mh_test_sleep_ms (long ms)
{
   struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
   while (nanosleep (&ts, &ts) != 0 && errno == EINTR) {
   }
}

bool
mh_test_under_valgrind (void)
{
   const char *v = getenv ("MH_VALGRIND");
   return v && strcmp (v, "1") == 0;
}

int64_t
mh_test_now_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_MONOTONIC, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
mh_test_wait_child (pid_t pid, int64_t bound_ms, int *wstatus)
{
   int64_t end = mh_test_now_ms () + bound_ms;

   for (;;) {
      pid_t r = waitpid (pid, wstatus, WNOHANG);
      if (r == pid) {
         return true;
      }
      ck_assert_msg (r == 0, "waitpid: %s", strerror (errno));
      if (mh_test_now_ms () >= end) {
         kill (pid, SIGKILL);
         waitpid (pid, wstatus, 0);
         return false;
      }
      mh_test_sleep_ms (2);
   }
}

int
mh_test_free_port (void)
{
   struct sockaddr_in a = {0};
   socklen_t len = sizeof a;
   int fd = socket (AF_INET, SOCK_STREAM, 0);

   a.sin_family = AF_INET;
   a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
   ck_assert_int_eq (bind (fd, (struct sockaddr *) &a, sizeof a), 0);
   getsockname (fd, (struct sockaddr *) &a, &len);
   close (fd);
   return ntohs (a.sin_port);
}

bool
mh_test_port_accepts (int port)
{
   struct sockaddr_in a = {0};
   int fd = socket (AF_INET, SOCK_STREAM, 0);
   bool ok;

   a.sin_family = AF_INET;
   a.sin_port = htons ((uint16_t) port);
   a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
   ok = connect (fd, (struct sockaddr *) &a, sizeof a) == 0;
   close (fd);
   return ok;
}

/* What mh_test_server_stop_all must clean up, copied: a test's handles
 * may live on its stack, which is gone by teardown. */
#define MH_TEST_MAX_SERVERS 8
static struct {
   pid_t pid; /* 0: free slot, -1: killed, directory still there */
   char dir[64];
} mh_servers[MH_TEST_MAX_SERVERS];

static void
mh_server_note (const mh_test_server_t *s, pid_t pid)
{
   for (int i = 0; i < MH_TEST_MAX_SERVERS; i++) {
      if (mh_servers[i].pid != 0 && strcmp (mh_servers[i].dir, s->dir) == 0) {
         mh_servers[i].pid = pid;
         return;
      }
   }
   for (int i = 0; i < MH_TEST_MAX_SERVERS; i++) {
      if (mh_servers[i].pid == 0) {
         mh_servers[i].pid = pid;
         snprintf (mh_servers[i].dir, sizeof mh_servers[i].dir, "%s", s->dir);
         return;
      }
   }
   ck_abort_msg ("more than %d private test servers in one test", MH_TEST_MAX_SERVERS);
}

/* The port the server wrote to <dir>/port, 0 until it did. */
static int
mh_server_port_file (const mh_test_server_t *s)
{
   char path[96];
   FILE *f;
   int port = 0;

   snprintf (path, sizeof path, "%s/port", s->dir);
   if ((f = fopen (path, "r"))) {
      if (fscanf (f, "%d", &port) != 1) {
         port = 0;
      }
      fclose (f);
   }
   return port;
}

void
mh_test_server_start (mh_test_server_t *s, int port, const char *const *extra_args)
{
   const char *script = getenv ("MH_MOCK_SERVER_SCRIPT");
   char port_s[16], port_file[96], db[96], log[96];
   const char *argv[40];
   int n = 0;

   ck_assert_msg (script && *script, "MH_MOCK_SERVER_SCRIPT is not set: run under make check");
   ck_assert_msg (s->pid <= 0, "test server already running on port %d", s->port);
   if (!s->dir[0]) {
      snprintf (s->dir, sizeof s->dir, "/tmp/mh_srv_XXXXXX");
      ck_assert_ptr_nonnull (mkdtemp (s->dir));
   }
   snprintf (s->command_log, sizeof s->command_log, "%s/commands.log", s->dir);
   snprintf (port_file, sizeof port_file, "%s/port", s->dir);
   snprintf (db, sizeof db, "%s/db", s->dir);
   snprintf (log, sizeof log, "%s/server.log", s->dir);
   snprintf (port_s, sizeof port_s, "%d", port);
   unlink (port_file);
   argv[n++] = "/usr/bin/python3";
   argv[n++] = script;
   argv[n++] = "--host";
   argv[n++] = "127.0.0.1";
   argv[n++] = "--port";
   argv[n++] = port_s;
   argv[n++] = "--port-file";
   argv[n++] = port_file;
   argv[n++] = "--command-log";
   argv[n++] = s->command_log;
   if (s->persist) {
      argv[n++] = "--dbpath";
      argv[n++] = db;
   }
   for (; extra_args && *extra_args; extra_args++) {
      ck_assert_int_lt (n, (int) (sizeof argv / sizeof *argv) - 1);
      argv[n++] = *extra_args;
   }
   argv[n] = NULL;
   /* make memcheck runs valgrind with --trace-children=no, so the Python
    * server started here by exec is not traced. */
   s->pid = fork ();
   ck_assert_int_ge (s->pid, 0);
   if (s->pid == 0) {
      int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
      /* The server dies with the test process, so a failing assertion
       * (which ends the test early) never leaves it running. */
      prctl (PR_SET_PDEATHSIG, SIGKILL);
      if (fd >= 0) {
         dup2 (fd, 1);
         dup2 (fd, 2);
      }
      execv (argv[0], (char *const *) argv);
      _exit (127);
   }
   mh_server_note (s, s->pid);
   s->port = port;
   for (int i = 0; i < 300; i++) { /* 15 s */
      if (s->port == 0) {
         s->port = mh_server_port_file (s);
      }
      if (s->port > 0 && mh_test_port_accepts (s->port)) {
         return;
      }
      ck_assert_msg (waitpid (s->pid, NULL, WNOHANG) == 0,
                     "test server exited at start (see %s/server.log)",
                     s->dir);
      mh_test_sleep_ms (50);
   }
   ck_abort_msg ("test server did not start (see %s/server.log)", s->dir);
}

void
mh_test_server_kill (mh_test_server_t *s)
{
   if (s->pid > 0) {
      kill (s->pid, SIGKILL);
      waitpid (s->pid, NULL, 0);
      mh_server_note (s, -1);
   }
   s->pid = 0;
}

static void
mh_remove_dir (const char *dir)
{
   char cmd[128];

   snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
   if (system (cmd) != 0) {
      /* best effort: a leftover directory in /tmp fails no test */
   }
}

void
mh_test_server_stop (mh_test_server_t *s)
{
   mh_test_server_kill (s);
   if (s->dir[0]) {
      for (int i = 0; i < MH_TEST_MAX_SERVERS; i++) {
         if (mh_servers[i].pid != 0 && strcmp (mh_servers[i].dir, s->dir) == 0) {
            mh_servers[i].pid = 0;
            mh_servers[i].dir[0] = '\0';
         }
      }
      mh_remove_dir (s->dir);
      s->dir[0] = '\0';
   }
}

int
mh_test_server_log_count (const mh_test_server_t *s, const char *needle)
{
   char line[8192];
   FILE *f = fopen (s->command_log, "r");
   int n = 0;

   ck_assert_msg (f, "no command log %s", s->command_log);
   while (fgets (line, sizeof line, f)) {
      n += strstr (line, needle) != NULL;
   }
   fclose (f);
   return n;
}

void
mh_test_server_stop_all (void)
{
   for (int i = 0; i < MH_TEST_MAX_SERVERS; i++) {
      if (mh_servers[i].pid > 0) {
         kill (mh_servers[i].pid, SIGKILL);
         waitpid (mh_servers[i].pid, NULL, 0);
      }
      if (mh_servers[i].pid != 0 && mh_servers[i].dir[0]) {
         mh_remove_dir (mh_servers[i].dir);
      }
      mh_servers[i].pid = 0;
      mh_servers[i].dir[0] = '\0';
   }
}

/* Suites of later areas are weak, so each area's test file adds its suite
 * without editing this list. */
#define MH_AREA_SUITES(X) \
   X (crud_suite)         \
   X (ops_suite)          \
   X (sessions_suite)     \
   X (cache_suite)        \
   X (eventlog_suite)     \
   X (resilience_suite)   \
   X (security_suite)     \
   X (fork_suite)         \
   X (event_writer_fork_suite)
#define MH_DECLARE_WEAK(name) Suite *name (void) __attribute__ ((weak));
MH_AREA_SUITES (MH_DECLARE_WEAK)

int
main (void)
{
   SRunner *sr = srunner_create (config_suite ());
   int failed;

   srunner_add_suite (sr, singleton_suite ());
   srunner_add_suite (sr, live_suite ());
#define MH_ADD_IF_LINKED(name)         \
   if (name) {                         \
      srunner_add_suite (sr, name ()); \
   }
   MH_AREA_SUITES (MH_ADD_IF_LINKED)
   srunner_run_all (sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
   failed = srunner_ntests_failed (sr);
   srunner_free (sr);
   return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
