/* Event log: set-up by server version, synchronous log read back with
 * types, queries, and the buffered writer: queue policies, shutdown flush,
 * and a real outage (our own test server SIGKILLed and restarted on the
 * same port and data directory). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

Suite *eventlog_suite (void);

/* Event times an hour ago: inside the log's retention, so the test
 * server's TTL monitor (every second) never removes them mid-test, even
 * when valgrind makes the test slow. */
static int64_t
recent_base_ms (void)
{
   return ((int64_t) time (NULL) - 3600) * 1000;
}

static mongo_helper_error_t err;

static void
setup (void)
{
   memset (&err, 0, sizeof err);
   mh_test_live_setup ();
}

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

static int64_t
raw_count (const char *coll, const bson_t *filter)
{
   mongoc_database_t *db = mongo_helper_database (&err);
   mongoc_collection_t *c;
   bson_t empty = BSON_INITIALIZER;
   bson_error_t e;
   int64_t n;

   MH_ASSERT_OK (db != NULL, err);
   c = mongoc_database_get_collection (db, coll);
   n = mongoc_collection_count_documents (c, filter ? filter : &empty, NULL, NULL, NULL, &e);
   ck_assert_msg (n >= 0, "%s", e.message);
   mongoc_collection_destroy (c);
   return n;
}

static mongo_helper_eventlog_t *
log_on (const char *coll)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_eventlog_t *l;

   mongo_helper_eventlog_options_init (&o);
   o.collection = coll;
   l = mongo_helper_eventlog_new (&o, &err);
   MH_ASSERT_OK (l != NULL, err);
   return l;
}

static int64_t
index_ttl (const char *coll, const char *name)
{
   mongoc_database_t *db = mongo_helper_database (&err);
   mongoc_collection_t *c = mongoc_database_get_collection (db, coll);
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
   l = log_on (coll);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   ck_assert (!ts);
   ck_assert_int_eq (index_ttl (coll, "timestamp_ttl"), 90LL * 24 * 3600);
   ck_assert_int_eq (index_ttl (coll, "user_id_1_timestamp_-1"), -1);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   mongo_helper_eventlog_destroy (l);
}
END_TEST

START_TEST (ensure_on_5_0_creates_a_time_series_collection)
{
   char coll[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_server_info_t info;
   mongoc_database_t *db;
   bson_t *opts;
   mongoc_cursor_t *cur;
   const bson_t *d;
   bson_iter_t it;
   bool ts = false, found = false;

   MH_ASSERT_OK (mongo_helper_server_info (0, &info, &err), err);
   if (atoi (info.version) < 5) {
      MH_SKIP ("server is older than 5.0 (the test server says 4.4.0): "
               "time-series collections need a real mongod 5.0+");
   }
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = log_on (coll);
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, &ts, &err), err);
   ck_assert (ts);
   db = mongo_helper_database (&err);
   opts = BCON_NEW ("filter", "{", "name", BCON_UTF8 (coll), "}");
   cur = mongoc_database_find_collections_with_opts (db, opts);
   while (mongoc_cursor_next (cur, &d)) {
      found = bson_iter_init_find (&it, d, "type") &&
              strcmp (bson_iter_utf8 (&it, NULL), "timeseries") == 0;
   }
   ck_assert (found);
   mongoc_cursor_destroy (cur);
   bson_destroy (opts);
   MH_ASSERT_OK (mongo_helper_eventlog_log (l, "u1", "login", NULL, 0, &err), err);
   mongo_helper_eventlog_destroy (l);
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
   int64_t t0 = recent_base_ms ();
   const char *types[] = {"login", "view", "view", "logout", "view"};

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = log_on (coll);
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

static mongo_helper_event_writer_t *
writer_on (mongo_helper_eventlog_t *l,
           size_t queue,
           size_t batch,
           int32_t interval,
           mongo_helper_queue_policy_t policy)
{
   mongo_helper_event_writer_options_t o;
   mongo_helper_event_writer_t *w;

   mongo_helper_event_writer_options_init (&o);
   o.queue_size = queue;
   o.batch_size = batch;
   o.flush_interval_ms = interval;
   o.policy = policy;
   o.block_timeout_ms = 50;
   o.backoff_min_ms = 50;
   o.backoff_max_ms = 200;
   w = mongo_helper_event_writer_new (l, &o, &err);
   MH_ASSERT_OK (w != NULL, err);
   return w;
}

START_TEST (writer_flushes_by_size_and_interval_and_on_destroy)
{
   char coll[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_writer_t *w;
   mongo_helper_event_writer_stats_t st;
   int i;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = log_on (coll);
   w = writer_on (l, 1000, 10, 100, MONGO_HELPER_QUEUE_BLOCK);
   for (i = 0; i < 25; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u1", "click", NULL, 0, &err), err);
   }
   /* 2 full batches go at once, the last 5 after the interval. */
   for (i = 0; i < 50 && raw_count (coll, NULL) < 25; i++) {
      mh_test_sleep_ms (50);
   }
   ck_assert_int_eq (raw_count (coll, NULL), 25);
   mongo_helper_event_writer_stats (w, &st);
   ck_assert_uint_eq (st.accepted, 25);
   ck_assert_uint_eq (st.stored, 25);
   ck_assert_uint_eq (st.queued, 0);
   mongo_helper_event_writer_destroy (w, 0, NULL);

   /* A long interval: only destroy's flush writes them. */
   w = writer_on (l, 1000, 500, 60000, MONGO_HELPER_QUEUE_BLOCK);
   for (i = 0; i < 30; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u2", "click", NULL, 0, &err), err);
   }
   mh_test_sleep_ms (100);
   ck_assert_int_eq (raw_count (coll, NULL), 25);
   mongo_helper_event_writer_destroy (w, 5000, &st);
   ck_assert_uint_eq (st.stored, 30);
   ck_assert_uint_eq (st.dropped, 0);
   ck_assert_int_eq (raw_count (coll, NULL), 55);

   w = writer_on (l, 1000, 500, 60000, MONGO_HELPER_QUEUE_BLOCK);
   MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u3", "x", NULL, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_event_writer_flush (w, 5000, &err), err);
   ck_assert_int_eq (raw_count (coll, NULL), 56);
   mongo_helper_event_writer_destroy (w, 1000, NULL);
   mongo_helper_eventlog_destroy (l);
}
END_TEST

START_TEST (full_queue_policies_drop_and_count)
{
   char coll[96];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_writer_t *w;
   mongo_helper_event_writer_stats_t st;
   mongo_helper_event_query_t q = {0};
   mongo_helper_queue_policy_t pol[] = {
      MONGO_HELPER_QUEUE_DROP_NEWEST, MONGO_HELPER_QUEUE_DROP_OLDEST, MONGO_HELPER_QUEUE_BLOCK};
   const char *user[] = {"newest", "oldest", "block"};

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev"));
   l = log_on (coll);
   for (int p = 0; p < 3; p++) {
      int refused = 0;
      bson_t out;
      bson_iter_t it, ev, f;

      /* batch larger than the queue and a long interval: nothing is
       * written until destroy, so the queue really fills. */
      w = writer_on (l, 5, 100, 60000, pol[p]);
      for (int i = 0; i < 8; i++) {
         bson_t *meta = BCON_NEW ("n", BCON_INT32 (i));
         if (!mongo_helper_event_writer_log (w, user[p], "e", meta, recent_base_ms () + i, &err)) {
            ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_TIMEOUT);
            refused++;
         }
         bson_destroy (meta);
      }
      ck_assert_int_eq (refused, pol[p] == MONGO_HELPER_QUEUE_DROP_OLDEST ? 0 : 3);
      mongo_helper_event_writer_destroy (w, 5000, &st);
      ck_assert_uint_eq (st.accepted, 8);
      ck_assert_uint_eq (st.dropped, 3);
      ck_assert_uint_eq (st.stored, 5);
      q.user_id = user[p];
      MH_ASSERT_OK (mongo_helper_eventlog_query (l, &q, &out, NULL, &err), err);
      ck_assert_int_eq (bson_count_keys (&out), 5);
      /* newest first: 7 survives drop-oldest, 4 is the last kept otherwise */
      ck_assert (bson_iter_init_find (&it, &out, "0") && bson_iter_recurse (&it, &ev) &&
                 bson_iter_find_descendant (&ev, "metadata.n", &f));
      ck_assert_int_eq (bson_iter_int32 (&f), pol[p] == MONGO_HELPER_QUEUE_DROP_OLDEST ? 7 : 4);
      bson_destroy (&out);
   }
   mongo_helper_eventlog_destroy (l);
}
END_TEST

/* ---- outage: our own server, killed and restarted ---- */

START_TEST (writer_survives_a_server_outage_and_accounts_for_every_event)
{
   mh_test_server_t srv = {.persist = true};
   char uri[256];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_writer_t *w;
   mongo_helper_event_writer_stats_t st, mid;
   int port, i;
   int64_t n;

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py to start and kill its own server");
   }
   mh_test_server_start (&srv, 0, NULL);
   port = srv.port;
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri,
             sizeof uri,
             "mongodb://127.0.0.1:%d/mh_outage?serverSelectionTimeoutMS=300"
             "&connectTimeoutMS=300&socketTimeoutMS=1000&heartbeatFrequencyMS=500",
             port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   l = log_on ("events");
   w = writer_on (l, 100000, 50, 50, MONGO_HELPER_QUEUE_BLOCK);
   for (i = 0; i < 100; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u", "before", NULL, 0, &err), err);
   }
   MH_ASSERT_OK (mongo_helper_event_writer_flush (w, 5000, &err), err);

   mh_test_server_kill (&srv);
   for (i = 0; i < 100; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u", "during", NULL, 0, &err), err);
      if (i % 20 == 0) {
         mh_test_sleep_ms (50);
      }
   }
   mh_test_sleep_ms (400);
   mongo_helper_event_writer_stats (w, &mid);
   ck_assert_msg (mid.failed_batches > 0, "no failed batch while the server was down");
   ck_assert_uint_eq (mid.stored, 100);
   ck_assert_uint_eq (mid.queued, 100);

   mh_test_server_start (&srv, port, NULL);
   for (i = 0; i < 100; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u", "after", NULL, 0, &err), err);
   }
   mongo_helper_event_writer_destroy (w, 10000, &st);
   ck_assert_uint_eq (st.accepted, 300);
   ck_assert_uint_eq (st.stored + st.dropped, st.accepted);
   ck_assert_uint_eq (st.queued, 0);
   ck_assert_uint_eq (st.dropped, 0); /* the deadline was long enough */
   n = raw_count ("events", NULL);
   ck_assert_int_eq (n, (int64_t) st.stored);
   mongo_helper_eventlog_destroy (l);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

START_TEST (destroy_deadline_counts_unwritable_events_as_dropped)
{
   mh_test_server_t srv = {.persist = true};
   char uri[256];
   mongo_helper_eventlog_t *l;
   mongo_helper_event_writer_t *w;
   mongo_helper_event_writer_stats_t st;
   int port;
   int64_t t0;

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py to start and kill its own server");
   }
   mh_test_server_start (&srv, 0, NULL);
   port = srv.port;
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri,
             sizeof uri,
             "mongodb://127.0.0.1:%d/mh_outage?serverSelectionTimeoutMS=200"
             "&connectTimeoutMS=200&socketTimeoutMS=500",
             port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   l = log_on ("events");
   MH_ASSERT_OK (mongo_helper_eventlog_ensure (l, NULL, &err), err);
   mh_test_server_kill (&srv);
   w = writer_on (l, 1000, 10, 20, MONGO_HELPER_QUEUE_BLOCK);
   for (int i = 0; i < 40; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u", "lost", NULL, 0, &err), err);
   }
   ck_assert (!mongo_helper_event_writer_flush (w, 100, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_TIMEOUT);
   t0 = (int64_t) time (NULL);
   mongo_helper_event_writer_destroy (w, 600, &st);
   ck_assert_int_le ((int64_t) time (NULL) - t0, 3);
   ck_assert_uint_eq (st.accepted, 40);
   ck_assert_uint_eq (st.stored, 0);
   ck_assert_uint_eq (st.dropped, 40);
   ck_assert_uint_eq (st.queued, 0);
   mongo_helper_eventlog_destroy (l);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

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
   l = log_on ("ev");
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
   TCase *outage = tcase_create ("outage");

   tcase_add_test (core, options_init_gives_documented_defaults);
   suite_add_tcase (s, core);
   tcase_add_checked_fixture (live, setup, teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, ensure_before_5_0_makes_ttl_and_user_time_indexes);
   tcase_add_test (live, ensure_on_5_0_creates_a_time_series_collection);
   tcase_add_test (live, log_stores_typed_fields_and_query_filters_newest_first);
   tcase_add_test (live, writer_flushes_by_size_and_interval_and_on_destroy);
   tcase_add_test (live, full_queue_policies_drop_and_count);
   suite_add_tcase (s, live);
   tcase_set_timeout (outage, 60);
   tcase_add_test (outage, writer_survives_a_server_outage_and_accounts_for_every_event);
   tcase_add_test (outage, destroy_deadline_counts_unwritable_events_as_dropped);
   tcase_add_test (outage, setup_asks_build_info_and_sends_the_4_4_layout_once);
   suite_add_tcase (s, outage);
   return s;
}
