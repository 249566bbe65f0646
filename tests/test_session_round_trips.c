/* Round trips of the per-request session calls, counted in the command
 * log of a private test server: load_touch and touch send one find while
 * the session is fresh and one find plus one update when the touch is due,
 * and nothing else. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

#define COLL "rt_sessions"

static mongo_helper_error_t err;
static mh_test_server_t srv;

/* Commands the server received on the sessions collection, by kind. */
typedef struct {
   int find, update, other;
} sent_t;

static sent_t
sent (void)
{
   static const char *others[] = {"{\"findAndModify\": \"" COLL "\"",
                                  "{\"insert\": \"" COLL "\"",
                                  "{\"delete\": \"" COLL "\"",
                                  "{\"getMore\":",
                                  "{\"killCursors\": \"" COLL "\"",
                                  "{\"aggregate\": \"" COLL "\"",
                                  "{\"count\": \"" COLL "\""};
   sent_t s = {mh_test_server_log_count (&srv, "{\"find\": \"" COLL "\""),
               mh_test_server_log_count (&srv, "{\"update\": \"" COLL "\""),
               0};

   for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
      s.other += mh_test_server_log_count (&srv, others[i]);
   }
   return s;
}

/* Asserts what was sent since `before`. */
#define ASSERT_SENT(before, finds, updates, what)                                        \
   do {                                                                                  \
      sent_t now_ = sent ();                                                             \
      ck_assert_msg (now_.find - (before).find == (finds) &&                             \
                        now_.update - (before).update == (updates) &&                    \
                        now_.other == (before).other,                                    \
                     "%s: expected %d find and %d update, the server received %d find, " \
                     "%d update and %d other commands",                                  \
                     (what),                                                             \
                     (finds),                                                            \
                     (updates),                                                          \
                     now_.find - (before).find,                                          \
                     now_.update - (before).update,                                      \
                     now_.other - (before).other);                                       \
   } while (0)

static mongo_helper_sessions_t *
start (int64_t touch_ms)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;
   char uri[128];

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      return NULL;
   }
   memset (&srv, 0, sizeof srv);
   mh_test_server_start (&srv, 0, NULL);
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_round_trips", srv.port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   mongo_helper_sessions_options_init (&o);
   o.collection = COLL;
   o.touch_interval_ms = touch_ms;
   s = mongo_helper_sessions_new (&o, &err);
   MH_ASSERT_OK (s != NULL, err);
   MH_ASSERT_OK (mongo_helper_sessions_ensure (s, &err), err);
   return s;
}

static void
stop (mongo_helper_sessions_t *s)
{
   mongo_helper_sessions_destroy (s);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}

START_TEST (load_touch_sends_one_find_while_fresh_and_a_find_and_an_update_when_due)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = BCON_NEW ("visits", BCON_INT32 (4));
   mongo_helper_sessions_t *s = start (1000);
   sent_t before;
   bson_t out;
   bool touched;
   bson_iter_t it;

   if (!s) {
      bson_destroy (data);
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   before = sent ();
   for (int i = 0; i < 10; i++) {
      touched = true;
      MH_ASSERT_OK (mongo_helper_sessions_load_touch (s, id, &out, &touched, &err), err);
      ck_assert_msg (!touched, "load_touch %d wrote inside the touch interval", i);
      ck_assert (bson_iter_init_find (&it, &out, "visits") && bson_iter_as_int64 (&it) == 4);
      bson_destroy (&out);
   }
   ASSERT_SENT (before, 10, 0, "10 load_touch of a fresh session");

   mh_test_sleep_ms (1100);
   before = sent ();
   MH_ASSERT_OK (mongo_helper_sessions_load_touch (s, id, &out, &touched, &err), err);
   ck_assert_msg (touched, "load_touch did not write after the touch interval");
   ck_assert (bson_iter_init_find (&it, &out, "visits") && bson_iter_as_int64 (&it) == 4);
   bson_destroy (&out);
   ASSERT_SENT (before, 1, 1, "load_touch with the touch due");

   before = sent ();
   MH_ASSERT_OK (mongo_helper_sessions_load_touch (s, id, &out, &touched, &err), err);
   ck_assert (!touched);
   bson_destroy (&out);
   ASSERT_SENT (before, 1, 0, "load_touch right after a touch");

   /* NOT_FOUND costs one find, a missing cookie none. */
   MH_ASSERT_OK (mongo_helper_sessions_delete (s, id, &err), err);
   before = sent ();
   ck_assert (!mongo_helper_sessions_load_touch (s, id, &out, &touched, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ck_assert (!mongo_helper_sessions_load_touch (s, NULL, &out, &touched, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ASSERT_SENT (before, 1, 0, "load_touch of a deleted session and of no id");
   bson_destroy (data);
   stop (s);
}
END_TEST

START_TEST (touch_sends_one_find_without_the_data_and_an_update_only_when_due)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = BCON_NEW ("big", BCON_UTF8 ("payload-not-needed-by-touch"));
   mongo_helper_sessions_t *s = start (1000);
   sent_t before;
   bool wrote;

   if (!s) {
      bson_destroy (data);
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   before = sent ();
   for (int i = 0; i < 5; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
      ck_assert (!wrote);
   }
   ASSERT_SENT (before, 5, 0, "5 touches of a fresh session");
   ck_assert_int_eq (mh_test_server_log_count (&srv,
                                               "\"projection\": {\"data\": {\"$numberInt\": "
                                               "\"0\"}, \"sealed\": {\"$numberInt\": \"0\"}}"),
                     5);
   mh_test_sleep_ms (1100);
   before = sent ();
   MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
   ck_assert (wrote);
   ASSERT_SENT (before, 1, 1, "a touch that is due");
   bson_destroy (data);
   stop (s);
}
END_TEST

Suite *
session_round_trips_suite (void)
{
   Suite *s = suite_create ("session_round_trips");
   TCase *own = tcase_create ("own_server");

   tcase_set_timeout (own, 60);
   tcase_add_test (own, load_touch_sends_one_find_while_fresh_and_a_find_and_an_update_when_due);
   tcase_add_test (own, touch_sends_one_find_without_the_data_and_an_update_only_when_due);
   suite_add_tcase (s, own);
   return s;
}
