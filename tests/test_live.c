/* Integration: real reads and writes through the singleton against the
 * test server (MONGO_TEST_URI, started by make check). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mh_test.h"

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

static mongoc_collection_t *
collection (const char *name)
{
   mongoc_database_t *db = mongo_helper_database (&err);
   MH_ASSERT_OK (db != NULL, err);
   return mongoc_database_get_collection (db, name);
}

static int64_t
count_docs (mongoc_collection_t *coll, const bson_t *filter)
{
   bson_error_t e;
   bson_t empty = BSON_INITIALIZER;
   int64_t n =
      mongoc_collection_count_documents (coll, filter ? filter : &empty, NULL, NULL, NULL, &e);
   ck_assert_msg (n >= 0, "count failed: %s", e.message);
   return n;
}

START_TEST (insert_through_singleton_is_read_back_with_its_fields)
{
   mongoc_collection_t *coll = collection (mh_test_collection ("events"));
   bson_t *doc = BCON_NEW ("user_id",
                           BCON_INT32 (123),
                           "event_type",
                           BCON_UTF8 ("login"),
                           "timestamp",
                           BCON_DATE_TIME (1700000000000));
   bson_t *filter = BCON_NEW ("user_id", BCON_INT32 (123));
   bson_error_t e;
   mongoc_cursor_t *cur;
   const bson_t *found;
   bson_iter_t it;

   ck_assert_msg (mongoc_collection_insert_one (coll, doc, NULL, NULL, &e), "%s", e.message);
   cur = mongoc_collection_find_with_opts (coll, filter, NULL, NULL);
   ck_assert (mongoc_cursor_next (cur, &found));
   ck_assert (bson_iter_init_find (&it, found, "event_type"));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "login");
   ck_assert (bson_iter_init_find (&it, found, "timestamp"));
   ck_assert (BSON_ITER_HOLDS_DATE_TIME (&it));
   ck_assert_int_eq (bson_iter_date_time (&it), 1700000000000);
   ck_assert (!mongoc_cursor_next (cur, &found));
   ck_assert (!mongoc_cursor_error (cur, &e));
   mongoc_cursor_destroy (cur);
   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
   bson_destroy (doc);
   bson_destroy (filter);
}
END_TEST

START_TEST (command_runs_on_default_database_and_maps_unknown_command)
{
   bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));
   bson_t *bogus = BCON_NEW ("noSuchCommandAtAll", BCON_INT32 (1));
   bson_t reply;
   bson_iter_t it;

   ck_assert (mongo_helper_command (ping, &reply, &err));
   ck_assert (bson_iter_init_find (&it, &reply, "ok"));
   ck_assert (bson_iter_as_double (&it) == 1.0);
   bson_destroy (&reply);

   ck_assert (!mongo_helper_command (bogus, &reply, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 59);
   ck_assert_ptr_nonnull (strstr (err.message, "noSuchCommandAtAll"));
   bson_destroy (&reply);

   ck_assert (!mongo_helper_command (NULL, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (ping);
   bson_destroy (bogus);
}
END_TEST

START_TEST (acquired_connection_does_real_work)
{
   const char *name = mh_test_collection ("acq");
   mongo_helper_conn_t *conn = mongo_helper_acquire (&err);
   mongoc_collection_t *coll;
   bson_t *doc = BCON_NEW ("k", BCON_UTF8 ("v"));
   bson_error_t e;

   MH_ASSERT_OK (conn != NULL, err);
   coll = mongoc_database_get_collection (mongo_helper_conn_database (conn), name);
   ck_assert_msg (mongoc_collection_insert_one (coll, doc, NULL, NULL, &e), "%s", e.message);
   ck_assert_int_eq (count_docs (coll, doc), 1);
   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
   mongo_helper_release (conn);
   bson_destroy (doc);
}
END_TEST

#define WRITERS 8
#define WRITES 25
static const char *shared_coll;

static void *
writer (void *arg)
{
   mongo_helper_error_t e;
   mongoc_database_t *db = mongo_helper_database (&e);
   mongoc_collection_t *coll;
   intptr_t ok = 0;

   (void) arg;
   if (!db) {
      return (void *) 0;
   }
   coll = mongoc_database_get_collection (db, shared_coll);
   for (int i = 0; i < WRITES; i++) {
      bson_t *doc = BCON_NEW ("i", BCON_INT32 (i));
      ok += mongoc_collection_insert_one (coll, doc, NULL, NULL, NULL);
      bson_destroy (doc);
   }
   mongoc_collection_destroy (coll);
   return (void *) ok;
}

START_TEST (threads_writing_through_their_own_clients_all_land)
{
   pthread_t t[WRITERS];
   mongoc_collection_t *coll;
   intptr_t total = 0;

   shared_coll = mh_test_collection ("threads");
   for (int i = 0; i < WRITERS; i++) {
      pthread_create (&t[i], NULL, writer, NULL);
   }
   for (int i = 0; i < WRITERS; i++) {
      void *r;
      pthread_join (t[i], &r);
      total += (intptr_t) r;
   }
   ck_assert_int_eq (total, WRITERS * WRITES);
   coll = collection (shared_coll);
   ck_assert_int_eq (count_docs (coll, NULL), WRITERS * WRITES);
   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
}
END_TEST

/* The pre-forking server pattern: initialise and use, then fork. */
START_TEST (forked_child_gets_its_own_pool_and_parent_keeps_working)
{
   const char *name = mh_test_collection ("fork");
   mongoc_collection_t *coll = collection (name);
   bson_t *parent_doc = BCON_NEW ("who", BCON_UTF8 ("parent"));
   bson_t *child_doc = BCON_NEW ("who", BCON_UTF8 ("child"));
   mongo_helper_status_t before;
   bson_error_t e;
   pid_t pid;
   int wstatus;

   ck_assert_msg (mongoc_collection_insert_one (coll, parent_doc, NULL, NULL, &e), "%s", e.message);
   mongo_helper_status (&before);

   pid = fork ();
   ck_assert_int_ge (pid, 0);
   if (pid == 0) {
      /* Child: the library must build a new pool (new generation) and do
       * real work with it.  Exit code tells the parent what went wrong. */
      mongo_helper_status_t st;
      mongoc_collection_t *cc = collection (name);
      int code = 0;

      mongo_helper_status (&st);
      if (st.generation != before.generation + 1) {
         code = 2;
      } else if (!mongoc_collection_insert_one (cc, child_doc, NULL, NULL, NULL)) {
         code = 3;
      } else if (count_docs (cc, NULL) != 2) {
         code = 4;
      }
      mongoc_collection_destroy (cc);
      mongo_helper_shutdown ();
      /* free what this child inherited from the test, for leak checkers */
      mongoc_collection_destroy (coll);
      bson_destroy (parent_doc);
      bson_destroy (child_doc);
      _exit (code);
   }
   ck_assert_int_eq (waitpid (pid, &wstatus, 0), pid);
   ck_assert_msg (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0,
                  "child failed with code %d (2: no new pool, 3: insert, 4: count)",
                  WEXITSTATUS (wstatus));

   /* The parent's own client and socket still work. */
   ck_assert_msg (mongoc_collection_insert_one (coll, parent_doc, NULL, NULL, &e), "%s", e.message);
   ck_assert_int_eq (count_docs (coll, parent_doc), 2);
   ck_assert_int_eq (count_docs (coll, child_doc), 1);
   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
   bson_destroy (parent_doc);
   bson_destroy (child_doc);
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

Suite *
live_suite (void)
{
   Suite *s = suite_create ("live");
   TCase *tc = tcase_create ("live");

   tcase_add_checked_fixture (tc, setup, teardown);
   tcase_set_timeout (tc, 60);
   tcase_add_test (tc, insert_through_singleton_is_read_back_with_its_fields);
   tcase_add_test (tc, command_runs_on_default_database_and_maps_unknown_command);
   tcase_add_test (tc, acquired_connection_does_real_work);
   tcase_add_test (tc, threads_writing_through_their_own_clients_all_land);
   tcase_add_test (tc, forked_child_gets_its_own_pool_and_parent_keeps_working);
   tcase_add_test (tc, ping_and_server_info_describe_the_server);
   tcase_add_test (tc, ping_against_a_down_server_fails_with_connection_error);
   suite_add_tcase (s, tc);
   return s;
}
