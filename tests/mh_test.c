/* The shared test fixture declared in tests/mh_test.h. */
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

#include <openssl/evp.h>

#include "mh_test.h"

/* ---- fixtures ------------------------------------------------------------ */

void
mh_test_clean_env (void)
{
   /* Kept complete by tests/env_check.sh: the URI sources, the parts
    * (src/config.c mh_part_vars), the INI path, the settings table
    * (mh_settings) and the retry and circuit-breaker settings. */
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
                                "MONGO_APP_NAME",
                                "MONGO_RETRY_ATTEMPTS",
                                "MONGO_RETRY_BASE_MS",
                                "MONGO_RETRY_MAX_MS",
                                "MONGO_CIRCUIT_FAILURE_THRESHOLD",
                                "MONGO_CIRCUIT_COOLDOWN_MS",
                                "MONGO_MAX_RESULT_BYTES",
                                "MONGO_DEFAULT_MAX_TIME_MS",
                                "MONGO_COMMAND_METRICS",
                                "MONGO_SESSION_KEYS",
                                "MONGO_SESSION_KEY_FILE",
                                "MONGO_CACHE_KEYS",
                                "MONGO_CACHE_KEY_FILE"};
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

void
mh_test_bare_setup (void)
{
   mh_test_clean_env ();
   ck_assert_int_eq (chdir ("/tmp"), 0);
}

void
mh_test_offline_setup (void)
{
   mh_test_clean_env ();
   setenv ("MONGO_CACHE_URI", "mongodb://127.0.0.1:1/core?serverSelectionTimeoutMS=200", 1);
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
}

void
mh_test_teardown (void)
{
   mongo_helper_shutdown ();
   mh_test_server_stop_all ();
}

bool
mh_test_on_mock (void)
{
   const char *m = getenv ("MH_MOCK_SERVER");
   return m && *m;
}

/* ---- reading back what the library stored -------------------------------- */

mongoc_collection_t *
mh_test_raw_collection (const char *name)
{
   mongo_helper_error_t e;
   mongoc_database_t *db = mongo_helper_database (&e);

   MH_ASSERT_OK (db != NULL, e);
   return mongoc_database_get_collection (db, name);
}

int64_t
mh_test_count_in (mongoc_collection_t *coll, const bson_t *filter)
{
   bson_t empty = BSON_INITIALIZER;
   bson_error_t e;
   int64_t n =
      mongoc_collection_count_documents (coll, filter ? filter : &empty, NULL, NULL, NULL, &e);

   ck_assert_msg (n >= 0, "count failed: %s", e.message);
   return n;
}

int64_t
mh_test_raw_count (const char *coll, const bson_t *filter)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   int64_t n = mh_test_count_in (c, filter);

   mongoc_collection_destroy (c);
   return n;
}

bson_t *
mh_test_raw_find_one (const char *coll, const bson_t *filter)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   mongoc_cursor_t *cur = mongoc_collection_find_with_opts (c, filter, NULL, NULL);
   const bson_t *d;
   bson_t *out = NULL;
   bson_error_t e;

   if (mongoc_cursor_next (cur, &d)) {
      out = bson_copy (d);
   }
   ck_assert_msg (!mongoc_cursor_error (cur, &e), "reading back failed: %s", e.message);
   mongoc_cursor_destroy (cur);
   mongoc_collection_destroy (c);
   return out;
}

int64_t
mh_test_index_ttl (const char *coll, const char *name)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts (c, NULL);
   const bson_t *d;
   bson_iter_t it;
   int64_t r = -2;

   while (mongoc_cursor_next (cur, &d)) {
      if (bson_iter_init_find (&it, d, "name") && strcmp (bson_iter_utf8 (&it, NULL), name) == 0) {
         r = bson_iter_init_find (&it, d, "expireAfterSeconds") ? bson_iter_as_int64 (&it) : -1;
      }
   }
   mongoc_cursor_destroy (cur);
   mongoc_collection_destroy (c);
   return r;
}

/* ---- documents ----------------------------------------------------------- */

uint32_t
mh_test_arr_len (const bson_t *arr)
{
   return bson_count_keys (arr);
}

void
mh_test_arr_doc (const bson_t *arr, uint32_t i, bson_t *out)
{
   char key[16];
   bson_iter_t it;
   const uint8_t *data;
   uint32_t len;

   snprintf (key, sizeof key, "%u", i);
   ck_assert_msg (bson_iter_init_find (&it, arr, key) && BSON_ITER_HOLDS_DOCUMENT (&it),
                  "no document at index %u",
                  i);
   bson_iter_document (&it, &len, &data);
   ck_assert (bson_init_static (out, data, len));
}

int64_t
mh_test_int_at (const bson_t *doc, const char *path)
{
   bson_iter_t it, f;

   ck_assert (bson_iter_init (&it, doc));
   ck_assert_msg (bson_iter_find_descendant (&it, path, &f) && BSON_ITER_HOLDS_NUMBER (&f),
                  "field %s missing or not a number",
                  path);
   return bson_iter_as_int64 (&f);
}

const char *
mh_test_utf8_at (const bson_t *doc, const char *path)
{
   bson_iter_t it, f;

   ck_assert (bson_iter_init (&it, doc));
   ck_assert_msg (bson_iter_find_descendant (&it, path, &f) && BSON_ITER_HOLDS_UTF8 (&f),
                  "field %s missing or not a string",
                  path);
   return bson_iter_utf8 (&f, NULL);
}

bool
mh_test_has_field (const bson_t *doc, const char *key)
{
   bson_iter_t it;
   return bson_iter_init_find (&it, doc, key);
}

/* ---- data through the library -------------------------------------------- */

int64_t
mh_test_count_documents (const char *coll, const bson_t *filter)
{
   mongo_helper_error_t e;
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_count_documents (NULL, coll, filter, &n, &e), e);
   return n;
}

void
mh_test_seed (const char *coll, int n)
{
   bson_t **docs = bson_malloc (n * sizeof *docs);
   mongo_helper_error_t e;
   int64_t inserted = 0;

   for (int i = 0; i < n; i++) {
      char tag[8];
      snprintf (tag, sizeof tag, "t%d", i % 3);
      docs[i] =
         BCON_NEW ("n", BCON_INT32 (i), "even", BCON_BOOL (i % 2 == 0), "tag", BCON_UTF8 (tag));
   }
   MH_ASSERT_OK (mongo_helper_insert_many (
                    NULL, coll, (const bson_t *const *) docs, (size_t) n, true, &inserted, &e),
                 e);
   ck_assert_int_eq (inserted, n);
   for (int i = 0; i < n; i++) {
      bson_destroy (docs[i]);
   }
   bson_free (docs);
}

void
mh_test_drop (const char *database, const char *coll)
{
   mongo_helper_error_t e;
   mongo_helper_conn_t *conn = mongo_helper_acquire (&e);
   mongoc_collection_t *cc;

   if (!conn) {
      return;
   }
   cc = mongoc_client_get_collection (
      mongo_helper_conn_client (conn),
      database ? database : mongoc_database_get_name (mongo_helper_conn_database (conn)),
      coll);
   mongoc_collection_drop (cc, NULL);
   mongoc_collection_destroy (cc);
   mongo_helper_release (conn);
}

mongo_helper_eventlog_t *
mh_test_eventlog_on (const char *coll)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_eventlog_t *l;
   mongo_helper_error_t e;

   mongo_helper_eventlog_options_init (&o);
   o.collection = coll;
   l = mongo_helper_eventlog_new (&o, &e);
   MH_ASSERT_OK (l != NULL, e);
   return l;
}

int64_t
mh_test_recent_base_ms (void)
{
   return ((int64_t) time (NULL) - 3600) * 1000;
}

/* ---- names, skips, time, ports ------------------------------------------- */

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

/* ---- private test servers ------------------------------------------------ */

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

const char *
mh_test_own_live_server (mh_test_server_t *s,
                         const char *const *extra_args,
                         const char *uri_options)
{
   static char uri[256];
   const char *live = mh_test_uri ();

   ck_assert_msg (live, "MONGO_TEST_URI is not set: run the tests with make check");
   if (!mh_test_on_mock ()) {
      snprintf (uri, sizeof uri, "%s", live);
      return uri;
   }
   mongo_helper_shutdown ();
   mh_test_server_start (s, 0, extra_args);
   snprintf (uri,
             sizeof uri,
             "mongodb://127.0.0.1:%d/mh_test%s%s",
             s->port,
             uri_options && *uri_options ? "?" : "",
             uri_options && *uri_options ? uri_options : "");
   setenv ("MONGO_CACHE_URI", uri, 1);
   return uri;
}

/* ---- capture ------------------------------------------------------------- */

static mh_test_server_t mh_capture;

void
mh_test_capture_setup (void)
{
   const char *script = getenv ("MH_MOCK_SERVER_SCRIPT");
   mongo_helper_error_t e;
   char uri[160];

   memset (&mh_capture, 0, sizeof mh_capture);
   if (!script || !*script) {
      return; /* the tests skip themselves */
   }
   mh_test_server_start (&mh_capture, 0, NULL);
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri,
             sizeof uri,
             "mongodb://127.0.0.1:%d/mh_cap?serverSelectionTimeoutMS=10000",
             mh_capture.port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &e), e);
}

bool
mh_test_capturing (void)
{
   return mh_capture.pid > 0;
}

char *
mh_test_captured (const char *name)
{
   FILE *f = fopen (mh_capture.command_log, "r");
   char *line = NULL, *found = NULL;
   size_t size = 0;
   char prefix[64];

   ck_assert_ptr_nonnull (f);
   snprintf (prefix, sizeof prefix, "{\"%s\":", name);
   while (getline (&line, &size, f) > 0) {
      if (strncmp (line, prefix, strlen (prefix)) == 0) {
         free (found);
         found = strdup (line);
      }
   }
   free (line);
   fclose (f);
   ck_assert_msg (found, "no %s command in the log", name);
   {
      /* Re-rendered without $db (checked here) for a stable text. */
      mongo_helper_error_t e;
      bson_t *cmd = mongo_helper_json_to_bson (found, &e);
      bson_t clean = BSON_INITIALIZER;
      bson_iter_t it;
      char *json;

      MH_ASSERT_OK (cmd != NULL, e);
      ck_assert (bson_iter_init_find (&it, cmd, "$db"));
      ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "mh_cap");
      bson_copy_to_excluding_noinit (cmd, &clean, "$db", "$readPreference", NULL);
      json = bson_as_canonical_extended_json (&clean, NULL);
      bson_destroy (&clean);
      bson_destroy (cmd);
      free (found);
      return json;
   }
}

/* ---- stored-record helpers ---------------------------------------------- */

void
mh_test_sha256_hex (const char *s, size_t len, char out[65])
{
   unsigned char md[EVP_MAX_MD_SIZE];
   unsigned int n = 0;

   ck_assert (EVP_Digest (s, len, md, &n, EVP_sha256 (), NULL));
   for (unsigned i = 0; i < n; i++) {
      snprintf (out + 2 * i, 3, "%02x", md[i]);
   }
}

int64_t
mh_test_integrity_count (const char *op, const char *reason)
{
   mongo_helper_error_t me;
   char *json = mongo_helper_metrics_json_dup (&me);
   bson_error_t e;
   bson_t *m;
   bson_iter_t it;
   char path[128];
   int64_t n = 0;

   MH_ASSERT_OK (json != NULL, me);
   m = bson_new_from_json ((const uint8_t *) json, -1, &e);
   ck_assert_msg (m != NULL, "metrics JSON does not parse: %s", e.message);
   snprintf (path, sizeof path, "integrity_failures.%s.%s", op, reason);
   if (bson_iter_init (&it, m) && bson_iter_find_descendant (&it, path, &it)) {
      n = bson_iter_as_int64 (&it);
   }
   bson_destroy (m);
   bson_free (json);
   return n;
}
