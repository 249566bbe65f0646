/* src/health.c: ping and server info.  "core" needs no server (a closed
 * port); "live" asks the test server. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (ping_against_a_down_server_fails_with_connection_error)
{
   char uri[128];

   snprintf (uri, sizeof uri, "mongodb://app:pingpw99@127.0.0.1:%d/down", mh_test_free_port ());
   mh_test_clean_env ();
   ck_assert (mongo_helper_init_uri (uri, &err));
   ck_assert (!mongo_helper_ping (1000, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
   ck_assert_msg (!strstr (err.message, "pingpw99"), "password in error: %s", err.message);
   ck_assert_ptr_nonnull (strstr (err.message, "ping"));
}
END_TEST

START_TEST (ping_and_server_info_describe_the_server)
{
   mongo_helper_server_info_t info;

   MH_ASSERT_OK (mongo_helper_ping (2000, &err), err);
   MH_ASSERT_OK (mongo_helper_server_info (2000, &info, &err), err);
   ck_assert_msg (
      info.version[0] >= '4' || strlen (info.version) > 3, "unexpected version '%s'", info.version);
   ck_assert_msg (strcmp (info.topology, "Single") == 0 ||
                     strcmp (info.topology, "ReplicaSet") == 0 ||
                     strcmp (info.topology, "Sharded") == 0,
                  "unexpected topology '%s'",
                  info.topology);
   ck_assert_int_ge (info.max_wire_version, 9);
   ck_assert_int_gt (info.round_trip_us, 0);
   ck_assert (!mongo_helper_server_info (2000, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

Suite *
health_suite (void)
{
   Suite *s = suite_create ("health");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_set_timeout (core, 60);
   tcase_add_test (core, ping_against_a_down_server_fails_with_connection_error);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, ping_and_server_info_describe_the_server);
   suite_add_tcase (s, live);
   return s;
}
