/* src/event_writer.c: the buffered event writer: flushes by size, interval
 * and on destroy, full-queue policies, and a real outage (a private test
 * server SIGKILLed and restarted on the same port and data directory). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mh_test.h"
#include "src/mh_private.h"

static mongo_helper_error_t err;

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
   l = mh_test_eventlog_on (coll);
   w = writer_on (l, 1000, 10, 100, MONGO_HELPER_QUEUE_BLOCK);
   for (i = 0; i < 25; i++) {
      MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u1", "click", NULL, 0, &err), err);
   }
   /* 2 full batches go at once, the last 5 after the interval. */
   for (i = 0; i < 50 && mh_test_raw_count (coll, NULL) < 25; i++) {
      mh_test_sleep_ms (50);
   }
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 25);
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
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 25);
   mongo_helper_event_writer_destroy (w, 5000, &st);
   ck_assert_uint_eq (st.stored, 30);
   ck_assert_uint_eq (st.dropped, 0);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 55);

   w = writer_on (l, 1000, 500, 60000, MONGO_HELPER_QUEUE_BLOCK);
   MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u3", "x", NULL, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_event_writer_flush (w, 5000, &err), err);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 56);
   mongo_helper_event_writer_destroy (w, 1000, NULL);
   mongo_helper_eventlog_destroy (l);
}
END_TEST

/* An event is sent later, in a batch: one that cannot fit one document
 * must be refused when it is logged, or it would block the batch. */
START_TEST (event_too_large_for_one_document_is_refused_when_logged)
{
   const size_t budget = MH_MAX_BSON - MH_WEB_ENVELOPE; /* user_id + type + metadata */
   const size_t empty_metadata = 5;
   char coll[96];
   char *uid = malloc (budget + 2);
   mongo_helper_eventlog_t *l;
   mongo_helper_event_writer_t *w;
   bson_t *doc;

   ck_assert_ptr_nonnull (uid);
   /* At the edge: built, and within MongoDB's limit. */
   memset (uid, 'u', budget - 1 - empty_metadata);
   uid[budget - 1 - empty_metadata] = '\0';
   doc = mh_event_build (uid, "t", NULL, 0, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_uint_le (doc->len, MH_MAX_BSON);
   bson_destroy (doc);
   /* One byte more: refused, naming the limit. */
   memset (uid, 'u', budget - empty_metadata);
   uid[budget - empty_metadata] = '\0';
   MH_ASSERT_FAILS_WITH (mh_event_build (uid, "t", NULL, 0, &err) != NULL,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "16 MB"), "%s", err.message);

   /* Through the writer: refused at once; the next event is stored. */
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ev_big"));
   l = mh_test_eventlog_on (coll);
   w = writer_on (l, 100, 10, 50, MONGO_HELPER_QUEUE_BLOCK);
   MH_ASSERT_FAILS_WITH (mongo_helper_event_writer_log (w, uid, "t", NULL, 0, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_eventlog_log (l, uid, "t", NULL, 0, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_OK (mongo_helper_event_writer_log (w, "u1", "click", NULL, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_event_writer_flush (w, 5000, &err), err);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 1);
   mongo_helper_event_writer_destroy (w, 1000, NULL);
   mongo_helper_eventlog_destroy (l);
   free (uid);
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
   l = mh_test_eventlog_on (coll);
   for (int p = 0; p < 3; p++) {
      int refused = 0;
      bson_t out;
      bson_iter_t it, ev, f;

      /* batch larger than the queue and a long interval: nothing is
       * written until destroy, so the queue really fills. */
      w = writer_on (l, 5, 100, 60000, pol[p]);
      for (int i = 0; i < 8; i++) {
         bson_t *meta = BCON_NEW ("n", BCON_INT32 (i));
         if (!mongo_helper_event_writer_log (
                w, user[p], "e", meta, mh_test_recent_base_ms () + i, &err)) {
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
   l = mh_test_eventlog_on ("events");
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
   n = mh_test_raw_count ("events", NULL);
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
   l = mh_test_eventlog_on ("events");
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

Suite *
event_writer_suite (void)
{
   Suite *s = suite_create ("event_writer");
   TCase *live = tcase_create ("live");
   TCase *outage = tcase_create ("outage");

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, writer_flushes_by_size_and_interval_and_on_destroy);
   tcase_add_test (live, full_queue_policies_drop_and_count);
   tcase_add_test (live, event_too_large_for_one_document_is_refused_when_logged);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (outage, NULL, mh_test_teardown);
   tcase_set_timeout (outage, 60);
   tcase_add_test (outage, writer_survives_a_server_outage_and_accounts_for_every_event);
   tcase_add_test (outage, destroy_deadline_counts_unwritable_events_as_dropped);
   suite_add_tcase (s, outage);
   return s;
}
