/* src/eventlog.c: the user event log's set-up by server version, and the
 * synchronous log read back with its types and queries.  "core" needs no
 * server (the options of the log and of its writer); "live" runs against
 * the test server (the 5.0 time-series set-up against a private one
 * started with --version 5.0.0); "own_server" reads the commands a private
 * test server received. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (options_init_gives_documented_defaults)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_event_writer_options_t w;

   mongo_helper_eventlog_options_init (&o);
   ck_assert_str_eq (o.collection, "user_events");
   ck_assert_int_eq (o.retention_s, 90LL * 24 * 3600);
   ck_assert_str_eq (o.granularity, "seconds");
   mongo_helper_event_writer_options_init (&w);
   ck_assert_uint_eq (w.queue_size, 10000);
   ck_assert_uint_eq (w.batch_size, 500);
   ck_assert_int_eq (w.flush_interval_ms, 1000);
   ck_assert_int_eq (w.policy, MONGO_HELPER_QUEUE_BLOCK);
   o.granularity = "days";
   ck_assert_ptr_null (mongo_helper_eventlog_new (&o, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   w.batch_size = 0;
   ck_assert_ptr_null (mongo_helper_event_writer_new (NULL, &w, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

/* ---- live ------------------------------------------------------------- */

START_TEST (ensure_before_5_0_makes_ttl_and_user_time_indexes)
{
   char coll[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_server_info_t info;
   bool ts = true;

   MH_ASSERT_OK (mongo_helper_server_info (0, &info, &err), err);
   if (atoi (info.version) >= 5) {
      MH_SKIP ("server is 5.0+: see ensure_on_5_0_creates_a_time_series_collection");
   }
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = mh_test_eventlog_on (coll);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   ck_assert (!ts);
   ck_assert_int_eq (mh_test_index_ttl (coll, "timestamp_ttl"), 90LL * 24 * 3600);
   ck_assert_int_eq (mh_test_index_ttl (coll, "user_id_1_timestamp_-1"), -1);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   mongo_helper_eventlog_destroy (l);
}
END_TEST

/* On MongoDB 5.0 the log is a time-series collection: the test server
 * presents 5.0 with --version 5.0.0 (a private one), a real server must be
 * 5.0+ itself. */
START_TEST (ensure_on_5_0_creates_a_time_series_collection)
{
   static const char *const v5[] = {"--version", "5.0.0", NULL};
   mh_test_server_t srv = {0};
   char coll[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_query_t q = {0};
   mongo_helper_server_info_t info;
   mongoc_database_t *db;
   bson_t *opts, *meta = BCON_NEW ("ip", BCON_UTF8 ("10.0.0.2"));
   mongoc_cursor_t *cur;
   const bson_t *d;
   bson_t *info_doc = NULL, out, ev;
   bson_iter_t it;
   bool ts = false;
   int32_t n = -1;
   int64_t t0 = mh_test_recent_base_ms ();

   mh_test_own_live_server (&srv, v5, NULL);
   MH_ASSERT_OK (mongo_helper_server_info (0, &info, &err), err);
   if (atoi (info.version) < 5) {
      MH_SKIP ("the server at MONGO_TEST_URI is older than 5.0: no time-series collections");
   }
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = mh_test_eventlog_on (coll);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   ck_assert_msg (ts, "expected a time-series collection on %s", info.version);

   /* What the server holds: a time-series collection on timestamp, per
    * user, expiring by itself; the per-user index, no TTL index. */
   db = mongo_helper_database (&err);
   MH_ASSERT_OK (db != NULL, err);
   opts = BCON_NEW ("filter", "{", "name", BCON_UTF8 (coll), "}");
   cur = mongoc_database_find_collections_with_opts (db, opts);
   while (mongoc_cursor_next (cur, &d)) {
      ck_assert_msg (!info_doc, "two collections named %s", coll);
      info_doc = bson_copy (d);
   }
   mongoc_cursor_destroy (cur);
   bson_destroy (opts);
   ck_assert_msg (info_doc, "no collection %s after ensure", coll);
   ck_assert_str_eq (mh_test_utf8_at (info_doc, "type"), "timeseries");
   ck_assert_str_eq (mh_test_utf8_at (info_doc, "options.timeseries.timeField"), "timestamp");
   ck_assert_str_eq (mh_test_utf8_at (info_doc, "options.timeseries.metaField"), "user_id");
   ck_assert_str_eq (mh_test_utf8_at (info_doc, "options.timeseries.granularity"), "seconds");
   ck_assert_int_eq (mh_test_int_at (info_doc, "options.expireAfterSeconds"), 90LL * 24 * 3600);
   bson_destroy (info_doc);
   ck_assert_int_eq (mh_test_index_ttl (coll, "user_id_1_timestamp_-1"), -1);
   ck_assert_int_eq (mh_test_index_ttl (coll, "timestamp_ttl"), -2);

   /* A second ensure finds it and keeps it. */
   ts = false;
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   ck_assert (ts);
   if (srv.pid > 0) {
      ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"create\""), 1);
   }

   /* Events go in as measurements and come back newest first. */
   MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u1", "login", meta, t0, &err), err);
   MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u1", "view", NULL, t0 + 2000, &err), err);
   MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u2", "login", NULL, t0 + 1000, &err), err);
   q.user_id = "u1";
   MH_ASSERT_OK (mongo_helper_eventlog_query (l, &q, &out, &n, &err), err);
   ck_assert_int_eq (n, 2);
   mh_test_arr_doc (&out, 0, &ev);
   ck_assert_str_eq (mh_test_utf8_at (&ev, "event_type"), "view");
   ck_assert (bson_iter_init_find (&it, &ev, "timestamp") && BSON_ITER_HOLDS_DATE_TIME (&it));
   ck_assert_int_eq (bson_iter_date_time (&it), t0 + 2000);
   mh_test_arr_doc (&out, 1, &ev);
   ck_assert_str_eq (mh_test_utf8_at (&ev, "event_type"), "login");
   ck_assert_str_eq (mh_test_utf8_at (&ev, "metadata.ip"), "10.0.0.2");
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 3);

   mongo_helper_eventlog_destroy (l);
   bson_destroy (meta);
   if (srv.pid <= 0) {
      mh_test_drop (NULL, coll);
   }
}
END_TEST

START_TEST (log_stores_typed_fields_and_query_filters_newest_first)
{
   char coll[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_query_t q = {0};
   bson_t *meta = BCON_NEW ("ip", BCON_UTF8 ("10.0.0.1"));
   bson_t out;
   bson_iter_t it, ev, f;
   int32_t n = -1;
   int64_t t0 = mh_test_recent_base_ms ();
   const char *types[] = {"login", "view", "view", "logout", "view"};

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = mh_test_eventlog_on (coll);
   for (int i = 0; i < 5; i++) {
      MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u1", types[i], meta, t0 + i * 1000, &err), err);
   }
   MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u2", "view", NULL, 0, &err), err);
   ck_assert (!mongo_helper_eventlog_log (l, "", "view", NULL, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);

   q.user_id = "u1";
   MH_ASSERT_OK (mongo_helper_eventlog_query (l, &q, &out, &n, &err), err);
   ck_assert_int_eq (n, 5);
   ck_assert (bson_iter_init (&it, &out) && bson_iter_next (&it));
   ck_assert (bson_iter_recurse (&it, &ev) && bson_iter_find (&ev, "timestamp"));
   ck_assert (BSON_ITER_HOLDS_DATE_TIME (&ev));
   ck_assert_int_eq (bson_iter_date_time (&ev), t0 + 4000);
   ck_assert (bson_iter_recurse (&it, &ev) && bson_iter_find (&ev, "metadata"));
   ck_assert (BSON_ITER_HOLDS_DOCUMENT (&ev));
   ck_assert (bson_iter_recurse (&ev, &f) && bson_iter_find (&f, "ip"));
   ck_assert_str_eq (bson_iter_utf8 (&f, NULL), "10.0.0.1");
   ck_assert (bson_iter_recurse (&it, &ev) && bson_iter_find (&ev, "_id"));
   ck_assert (BSON_ITER_HOLDS_OID (&ev));
   bson_destroy (&out);

   q.event_type = "view";
   q.since_ms = t0 + 1000;
   q.until_ms = t0 + 4000;
   MH_ASSERT_OK (mongo_helper_eventlog_query (l, &q, &out, &n, &err), err);
   ck_assert_int_eq (n, 2);
   bson_destroy (&out);
   q.event_type = NULL;
   q.since_ms = q.until_ms = 0;
   q.limit = 2;
   MH_ASSERT_OK (mongo_helper_eventlog_query (l, &q, &out, &n, &err), err);
   ck_assert_int_eq (n, 2);
   ck_assert (bson_iter_init_find (&it, &out, "1") && bson_iter_recurse (&it, &ev) &&
              bson_iter_find (&ev, "timestamp"));
   ck_assert_int_eq (bson_iter_date_time (&ev), t0 + 3000);
   bson_destroy (&out);
   mongo_helper_eventlog_destroy (l);
   bson_destroy (meta);
}
END_TEST

/* ---- own server: the commands sent ------------------------------------ */

START_TEST (setup_asks_build_info_and_sends_the_4_4_layout_once)
{
   mh_test_server_t srv = {.persist = true};
   char uri[256];
   mongo_helper_eventlog_t *l;
   int port;

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   mh_test_server_start (&srv, 0, NULL);
   port = srv.port;
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_cmd", port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   l = mh_test_eventlog_on ("ev");
   for (int i = 0; i < 5; i++) {
      MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u", "e", NULL, 0, &err), err);
   }
   /* Lazy set-up ran once: buildInfo, then the pre-5.0 layout (no
    * time-series create, which the 4.4 test server would refuse). */
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"buildInfo\": {\"$numberInt\": \"1\"}"), 1);
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"create\""), 0);
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"createIndexes\": \"ev\""), 1);
   ck_assert_int_eq (
      mh_test_server_log_count (&srv, "\"expireAfterSeconds\": {\"$numberLong\": \"7776000\"}"), 1);
   ck_assert_int_eq (mh_test_server_log_count (&srv,
                                               "\"key\": {\"user_id\": {\"$numberInt\": \"1\"}, "
                                               "\"timestamp\": {\"$numberInt\": \"-1\"}}"),
                     1);
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"insert\": \"ev\""), 5);
   mongo_helper_eventlog_destroy (l);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

Suite *
eventlog_suite (void)
{
   Suite *s = suite_create ("eventlog");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");
   TCase *own = tcase_create ("own_server");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, options_init_gives_documented_defaults);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, ensure_before_5_0_makes_ttl_and_user_time_indexes);
   tcase_add_test (live, ensure_on_5_0_creates_a_time_series_collection);
   tcase_add_test (live, log_stores_typed_fields_and_query_filters_newest_first);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (own, NULL, mh_test_teardown);
   tcase_set_timeout (own, 60);
   tcase_add_test (own, setup_asks_build_info_and_sends_the_4_4_layout_once);
   suite_add_tcase (s, own);
   return s;
}
