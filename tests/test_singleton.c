/* mongo_helper.c, the core: the singleton (lazy init under a race,
 * shutdown and re-init), the pool wait, per-thread and acquired clients,
 * fork, commands.  "core" needs no server: a pool does not connect until
 * used.  "live" does real reads and writes through the singleton against
 * the test server (MONGO_TEST_URI, started by make check). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- lazy initialisation -------------------------------------------- */

#define RACERS 32
static pthread_barrier_t barrier;
static char racer_dbname[RACERS][32];
static mongo_helper_error_t racer_err[RACERS];

static void *
racer (void *arg)
{
   intptr_t i = (intptr_t) arg;

   pthread_barrier_wait (&barrier);
   mongoc_database_t *db = mongo_helper_database (&racer_err[i]);
   /* the handle is borrowed until this thread exits: copy what we check */
   if (db) {
      bson_strncpy (racer_dbname[i], mongoc_database_get_name (db), sizeof racer_dbname[i]);
   }
   return NULL;
}

START_TEST (thirty_two_threads_racing_on_first_use_create_one_pool)
{
   pthread_t t[RACERS];
   mongo_helper_status_t st;

   setenv ("MONGO_CACHE_URI", "mongodb://127.0.0.1:1/racedb?maxPoolSize=64", 1);
   mongo_helper_status (&st);
   ck_assert (!st.initialized);
   ck_assert_uint_eq (st.generation, 0);
   pthread_barrier_init (&barrier, NULL, RACERS);
   for (intptr_t i = 0; i < RACERS; i++) {
      ck_assert_int_eq (pthread_create (&t[i], NULL, racer, (void *) i), 0);
   }
   for (int i = 0; i < RACERS; i++) {
      pthread_join (t[i], NULL);
   }
   pthread_barrier_destroy (&barrier);
   for (int i = 0; i < RACERS; i++) {
      MH_ASSERT_OK (racer_err[i].category == MONGO_HELPER_ERROR_NONE, racer_err[i]);
      ck_assert_str_eq (racer_dbname[i], "racedb");
   }
   mongo_helper_status (&st);
   ck_assert (st.initialized);
   ck_assert_msg (st.generation == 1, "expected one pool, %u were created", st.generation);
   ck_assert_str_eq (st.database, "racedb");
   ck_assert_int_eq (st.max_pool_size, 64);
}
END_TEST

START_TEST (database_is_the_same_handle_for_repeated_calls_in_a_thread)
{
   mongoc_database_t *a, *b;

   ck_assert (mongo_helper_init_uri ("mongodb://127.0.0.1:1/samedb", &err));
   a = mongo_helper_database (&err);
   b = mongo_helper_database (&err);
   MH_ASSERT_OK (a != NULL, err);
   ck_assert_ptr_eq (a, b);
}
END_TEST

/* ---- init, status, shutdown ----------------------------------------- */

START_TEST (shutdown_is_idempotent_and_init_works_again)
{
   mongo_helper_status_t st;
   mongoc_database_t *db;

   mongo_helper_shutdown (); /* before any init: harmless */
   ck_assert (mongo_helper_init_uri ("mongodb://u:pw1234@127.0.0.1:1/first", &err));
   ck_assert_ptr_nonnull (mongo_helper_database (&err));
   mongo_helper_status (&st);
   ck_assert (st.initialized);
   ck_assert_str_eq (st.database, "first");
   ck_assert_str_eq (st.uri, "mongodb://u:****@127.0.0.1:1/first");

   /* a second init is a no-op */
   ck_assert (mongo_helper_init_uri ("mongodb://127.0.0.1:1/other", &err));
   mongo_helper_status (&st);
   ck_assert_str_eq (st.database, "first");

   mongo_helper_shutdown ();
   mongo_helper_shutdown ();
   mongo_helper_status (&st);
   ck_assert (!st.initialized);
   ck_assert_str_eq (st.database, "");

   ck_assert (mongo_helper_init_uri ("mongodb://127.0.0.1:1/second", &err));
   db = mongo_helper_database (&err);
   MH_ASSERT_OK (db != NULL, err);
   ck_assert_str_eq (mongoc_database_get_name (db), "second");
   mongo_helper_status (&st);
   ck_assert_uint_eq (st.generation, 2);
}
END_TEST

START_TEST (lazy_init_with_bad_configuration_returns_config_error)
{
   setenv ("MONGO_URI", "not-a-uri", 1);
   ck_assert_ptr_null (mongo_helper_database (&err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_ptr_nonnull (strstr (err.message, "MONGO_URI"));
   ck_assert_ptr_null (mongo_helper_acquire (&err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
}
END_TEST

START_TEST (init_uri_rejects_null_and_empty)
{
   ck_assert (!mongo_helper_init_uri (NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_init_uri ("", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_init_uri ("", NULL)); /* NULL error is allowed */
}
END_TEST

START_TEST (init_from_config_file_uses_its_uri)
{
   const char *ini =
      mh_test_write_ini ("[db]\nmongo_uri = mongodb://127.0.0.1:1/fromfile\nmax_pool_size = 9\n");
   mongo_helper_status_t st;

   ck_assert (mongo_helper_init (ini, &err));
   mongo_helper_status (&st);
   ck_assert_str_eq (st.database, "fromfile");
   ck_assert_int_eq (st.max_pool_size, 9);
   ck_assert_ptr_nonnull (strstr (st.source, "[db] mongo_uri"));
}
END_TEST

/* ---- pool wait ------------------------------------------------------ */

static void *
take_database (void *arg)
{
   mongo_helper_error_t *e = arg;
   return mongo_helper_database (e);
}

START_TEST (exhausted_pool_gives_timeout_instead_of_hanging)
{
   mongo_helper_conn_t *held, *again;
   pthread_t t;
   void *db;
   mongo_helper_error_t terr;

   ck_assert (mongo_helper_init_uri (
      "mongodb://127.0.0.1:1/pooldb?maxPoolSize=1&waitQueueTimeoutMS=200", &err));
   held = mongo_helper_acquire (&err);
   MH_ASSERT_OK (held != NULL, err);
   ck_assert_str_eq (mongoc_database_get_name (mongo_helper_conn_database (held)), "pooldb");
   ck_assert_ptr_nonnull (mongo_helper_conn_client (held));

   ck_assert_ptr_null (mongo_helper_acquire (&err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_TIMEOUT);
   ck_assert_ptr_nonnull (strstr (err.message, "200 ms"));

   /* the per-thread accessor waits the same bounded time */
   pthread_create (&t, NULL, take_database, &terr);
   pthread_join (t, &db);
   ck_assert_ptr_null (db);
   ck_assert_int_eq (terr.category, MONGO_HELPER_ERROR_TIMEOUT);

   mongo_helper_release (held);
   again = mongo_helper_acquire (&err);
   MH_ASSERT_OK (again != NULL, err);
   mongo_helper_release (again);
   mongo_helper_release (NULL);
}
END_TEST

START_TEST (thread_release_returns_the_client_to_the_pool)
{
   mongo_helper_conn_t *c;

   ck_assert (mongo_helper_init_uri (
      "mongodb://127.0.0.1:1/pooldb?maxPoolSize=1&waitQueueTimeoutMS=200", &err));
   ck_assert_ptr_nonnull (mongo_helper_database (&err));
   ck_assert_ptr_null (mongo_helper_acquire (&err)); /* the thread holds it */
   mongo_helper_thread_release ();
   c = mongo_helper_acquire (&err);
   MH_ASSERT_OK (c != NULL, err);
   mongo_helper_release (c);
}
END_TEST

START_TEST (connection_held_across_shutdown_stays_usable_until_released)
{
   mongo_helper_conn_t *c;

   ck_assert (mongo_helper_init_uri ("mongodb://127.0.0.1:1/keepdb", &err));
   c = mongo_helper_acquire (&err);
   MH_ASSERT_OK (c != NULL, err);
   mongo_helper_shutdown ();
   ck_assert_str_eq (mongoc_database_get_name (mongo_helper_conn_database (c)), "keepdb");
   mongo_helper_release (c); /* frees the old pool */
}
END_TEST

/* ---- live: real reads and writes ------------------------------------ */

START_TEST (insert_through_singleton_is_read_back_with_its_fields)
{
   mongoc_collection_t *coll = mh_test_raw_collection (mh_test_collection ("events"));
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
   ck_assert_int_eq (mh_test_count_in (coll, doc), 1);
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
   coll = mh_test_raw_collection (shared_coll);
   ck_assert_int_eq (mh_test_count_in (coll, NULL), WRITERS * WRITES);
   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
}
END_TEST

/* The pre-forking server pattern: initialise and use, then fork. */
START_TEST (forked_child_gets_its_own_pool_and_parent_keeps_working)
{
   const char *name = mh_test_collection ("fork");
   mongoc_collection_t *coll = mh_test_raw_collection (name);
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
      mongoc_collection_t *cc = mh_test_raw_collection (name);
      int code = 0;

      mongo_helper_status (&st);
      if (st.generation != before.generation + 1) {
         code = 2;
      } else if (!mongoc_collection_insert_one (cc, child_doc, NULL, NULL, NULL)) {
         code = 3;
      } else if (mh_test_count_in (cc, NULL) != 2) {
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
   ck_assert_int_eq (mh_test_count_in (coll, parent_doc), 2);
   ck_assert_int_eq (mh_test_count_in (coll, child_doc), 1);
   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
   bson_destroy (parent_doc);
   bson_destroy (child_doc);
}
END_TEST

Suite *
singleton_suite (void)
{
   Suite *s = suite_create ("singleton");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_bare_setup, mh_test_teardown);
   tcase_set_timeout (core, 60);
   tcase_add_test (core, thirty_two_threads_racing_on_first_use_create_one_pool);
   tcase_add_test (core, database_is_the_same_handle_for_repeated_calls_in_a_thread);
   tcase_add_test (core, shutdown_is_idempotent_and_init_works_again);
   tcase_add_test (core, lazy_init_with_bad_configuration_returns_config_error);
   tcase_add_test (core, init_uri_rejects_null_and_empty);
   tcase_add_test (core, init_from_config_file_uses_its_uri);
   tcase_add_test (core, exhausted_pool_gives_timeout_instead_of_hanging);
   tcase_add_test (core, thread_release_returns_the_client_to_the_pool);
   tcase_add_test (core, connection_held_across_shutdown_stays_usable_until_released);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, insert_through_singleton_is_read_back_with_its_fields);
   tcase_add_test (live, command_runs_on_default_database_and_maps_unknown_command);
   tcase_add_test (live, acquired_connection_does_real_work);
   tcase_add_test (live, threads_writing_through_their_own_clients_all_land);
   tcase_add_test (live, forked_child_gets_its_own_pool_and_parent_keeps_working);
   suite_add_tcase (s, live);
   return s;
}
