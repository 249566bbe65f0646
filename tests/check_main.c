/* Runs every suite; exits non-zero when any test failed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

void
mh_test_clean_env (void)
{
   static const char *vars[] = {
      "MONGO_CACHE_URI", "MONGO_URI", "MONGO_HOST", "MONGO_PORT", "MONGO_DB",
      "MONGO_USERNAME", "MONGO_PASSWORD", "MONGO_AUTH_SOURCE",
      "MONGO_REPLICA_SET", "MONGO_USE_SSL", "MONGO_SSL_CA_CERTS",
      "MONGO_HELPER_CONFIG", "MONGO_MAX_POOL_SIZE", "MONGO_MIN_POOL_SIZE",
      "MONGO_MAX_IDLE_TIME_MS", "MONGO_CONNECT_TIMEOUT_MS",
      "MONGO_SERVER_SELECTION_TIMEOUT_MS", "MONGO_SOCKET_TIMEOUT_MS",
      "MONGO_WAIT_QUEUE_TIMEOUT_MS", "MONGO_RETRY_WRITES",
      "MONGO_RETRY_READS", "MONGO_APP_NAME"};
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

/* Suites of later areas are weak, so each area's test file adds its suite
 * without editing this list. */
#define MH_AREA_SUITES(X) \
   X (crud_suite)         \
   X (ops_suite)          \
   X (sessions_suite)     \
   X (cache_suite)        \
   X (eventlog_suite)     \
   X (resilience_suite)   \
   X (security_suite)
#define MH_DECLARE_WEAK(name) Suite *name (void) __attribute__ ((weak));
MH_AREA_SUITES (MH_DECLARE_WEAK)

int
main (void)
{
   SRunner *sr = srunner_create (config_suite ());
   int failed;

   srunner_add_suite (sr, singleton_suite ());
   srunner_add_suite (sr, live_suite ());
#define MH_ADD_IF_LINKED(name) \
   if (name) {                 \
      srunner_add_suite (sr, name ()); \
   }
   MH_AREA_SUITES (MH_ADD_IF_LINKED)
   srunner_run_all (sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
   failed = srunner_ntests_failed (sr);
   srunner_free (sr);
   return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
