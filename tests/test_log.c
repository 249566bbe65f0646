/* src/log.c: the log handler gets the library's and libmongoc's messages,
 * with passwords redacted.  No server needed. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static char logged[8192];
static int log_calls;
static bool saw_mongoc_domain;

static void
capture_log (mongo_helper_log_level_t level, const char *domain, const char *msg, void *ud)
{
   (void) level;
   (void) ud;
   log_calls++;
   if (strcmp (domain, "mongo_helper") != 0) {
      saw_mongoc_domain = true;
   }
   strncat (logged, msg, sizeof logged - strlen (logged) - 2);
   strcat (logged, "\n");
}

START_TEST (log_handler_gets_library_and_driver_messages_without_passwords)
{
   mongo_helper_set_log_handler (capture_log, MONGO_HELPER_LOG_DEBUG, NULL);
   /* an unknown URI option makes libmongoc warn through its log */
   ck_assert (mongo_helper_init_uri ("mongodb://app:sekr1t@127.0.0.1:1/logdb?bogusOption=1", &err));
   ck_assert_int_gt (log_calls, 0);
   ck_assert_msg (strstr (logged, "pool created"), "log: %s", logged);
   ck_assert_msg (saw_mongoc_domain, "libmongoc's warning was not routed: %s", logged);
   ck_assert_msg (!strstr (logged, "sekr1t"), "password leaked into log: %s", logged);
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
}
END_TEST

Suite *
log_suite (void)
{
   Suite *s = suite_create ("log");
   TCase *core = tcase_create ("core");

   tcase_add_checked_fixture (core, mh_test_bare_setup, mh_test_teardown);
   tcase_set_timeout (core, 60);
   tcase_add_test (core, log_handler_gets_library_and_driver_messages_without_passwords);
   suite_add_tcase (s, core);
   return s;
}
