/* The singleton: lazy init under a race, shutdown and re-init, the pool
 * wait.  No server needed: a pool does not connect until used. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static void
setup (void)
{
   mh_test_clean_env ();
   ck_assert_int_eq (chdir ("/tmp"), 0);
   memset (&err, 0, sizeof err);
}

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

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

Suite *
singleton_suite (void)
{
   Suite *s = suite_create ("singleton");
   TCase *tc = tcase_create ("core");

   tcase_add_checked_fixture (tc, setup, teardown);
   tcase_set_timeout (tc, 60);
   tcase_add_test (tc, thirty_two_threads_racing_on_first_use_create_one_pool);
   tcase_add_test (tc, database_is_the_same_handle_for_repeated_calls_in_a_thread);
   tcase_add_test (tc, shutdown_is_idempotent_and_init_works_again);
   tcase_add_test (tc, lazy_init_with_bad_configuration_returns_config_error);
   tcase_add_test (tc, init_uri_rejects_null_and_empty);
   tcase_add_test (tc, init_from_config_file_uses_its_uri);
   tcase_add_test (tc, exhausted_pool_gives_timeout_instead_of_hanging);
   tcase_add_test (tc, thread_release_returns_the_client_to_the_pool);
   tcase_add_test (tc, connection_held_across_shutdown_stays_usable_until_released);
   suite_add_tcase (s, tc);
   return s;
}
