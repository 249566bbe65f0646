/* The configuration a child of fork() inherits from an explicit
 * mongo_helper_init_uri() or _init(path): it writes to the parent's
 * database, not the environment's. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- The configuration a child inherits ----------------------------- */

/* "mongodb://<host:port of the test server>/<database>" */
static void
test_server_uri_with_db (char *out, size_t size, const char *database, const char *query)
{
   const char *uri = mh_test_uri ();
   mongoc_uri_t *u;
   const mongoc_host_list_t *h;

   ck_assert_msg (uri, "MONGO_TEST_URI is not set: run the tests with make check");
   u = mongoc_uri_new (uri);
   ck_assert_ptr_nonnull (u);
   h = mongoc_uri_get_hosts (u);
   ck_assert_ptr_nonnull (h);
   ck_assert_int_lt (
      snprintf (out, size, "mongodb://%.64s/%s%s", h->host_and_port, database, query ? query : ""),
      (int) size);
   mongoc_uri_destroy (u);
}

/* The parent chose its configuration explicitly; the environment names
 * another database.  The child's first call is a write; it must land in
 * the parent's database, and the child's status must name the parent's
 * source.  Exit codes: 2 status before the first call, 3 insert, 4 status
 * after it. */
static void
child_writes_with_inherited_config (const char *coll,
                                    const char *want_db,
                                    const mongo_helper_status_t *parent)
{
   pid_t pid;
   int wstatus;

   pid = fork ();
   ck_assert_int_ge (pid, 0);
   if (pid == 0) {
      mongo_helper_status_t st;
      mongo_helper_error_t e;
      bson_t *doc = BCON_NEW ("who", BCON_UTF8 ("child"));
      int code = 0;

      mongo_helper_status (&st);
      if (!st.initialized || strcmp (st.source, parent->source) != 0 ||
          strcmp (st.database, want_db) != 0) {
         code = 2;
      } else if (!mongo_helper_insert_one (NULL, coll, doc, NULL, &e)) {
         code = 3;
      } else {
         mongo_helper_status (&st);
         if (strcmp (st.source, parent->source) != 0 || strcmp (st.database, want_db) != 0) {
            code = 4;
         }
      }
      bson_destroy (doc);
      mongo_helper_shutdown ();
      _exit (code);
   }
   ck_assert_msg (mh_test_wait_child (pid, 30000, &wstatus), "the child hung");
   ck_assert_msg (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0,
                  "child exit status %d (2: its status did not name the parent's source "
                  "'%s' and database '%s' before its first call; 3: its insert failed; "
                  "4: its status after the insert named another source)",
                  WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1,
                  parent->source,
                  want_db);
}

static int64_t
count_in (const char *database, const char *coll)
{
   bson_t filter = BSON_INITIALIZER;
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_count_documents (database, coll, &filter, &n, &err), err);
   return n;
}

START_TEST (child_of_init_uri_writes_to_the_parents_database_not_the_environments)
{
   char explicit_uri[256], env_uri[256];
   const char *coll = mh_test_collection ("inherit_uri");
   mongo_helper_status_t st;

   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   test_server_uri_with_db (explicit_uri, sizeof explicit_uri, "mh_fork_explicit", NULL);
   test_server_uri_with_db (env_uri, sizeof env_uri, "mh_fork_env", NULL);
   setenv ("MONGO_CACHE_URI", env_uri, 1);
   MH_ASSERT_OK (mongo_helper_init_uri (explicit_uri, &err), err);
   mongo_helper_status (&st);
   ck_assert_str_eq (st.database, "mh_fork_explicit");

   child_writes_with_inherited_config (coll, "mh_fork_explicit", &st);

   ck_assert_int_eq (count_in (NULL, coll), 1);
   ck_assert_int_eq (count_in ("mh_fork_explicit", coll), 1);
   ck_assert_int_eq (count_in ("mh_fork_env", coll), 0);
   mongo_helper_shutdown ();
}
END_TEST

START_TEST (child_of_init_with_a_file_writes_to_the_files_database_not_the_environments)
{
   char uri[256], content[512], chosen[256];
   const char *coll = mh_test_collection ("inherit_ini");
   mongo_helper_status_t st;

   mh_test_clean_env ();
   /* The file the environment names points elsewhere. */
   test_server_uri_with_db (uri, sizeof uri, "mh_fork_env", NULL);
   snprintf (content, sizeof content, "[db]\nmongo_uri = %s\n", uri);
   setenv ("MONGO_HELPER_CONFIG", mh_test_write_ini (content), 1);
   /* The file the parent passes explicitly. */
   test_server_uri_with_db (uri, sizeof uri, "mh_fork_ini", NULL);
   snprintf (content, sizeof content, "[db]\nmongo_uri = %s\n", uri);
   snprintf (chosen, sizeof chosen, "%s", mh_test_write_ini (content));
   MH_ASSERT_OK (mongo_helper_init (chosen, &err), err);
   mongo_helper_status (&st);
   ck_assert_str_eq (st.database, "mh_fork_ini");
   ck_assert_msg (strstr (st.source, chosen), "source '%s' does not name %s", st.source, chosen);

   child_writes_with_inherited_config (coll, "mh_fork_ini", &st);

   ck_assert_int_eq (count_in ("mh_fork_ini", coll), 1);
   ck_assert_int_eq (count_in ("mh_fork_env", coll), 0);
   mongo_helper_shutdown ();
}
END_TEST

Suite *
fork_inherit_suite (void)
{
   Suite *s = suite_create ("fork_inherit");
   TCase *inherit = tcase_create ("inherit");
   tcase_add_checked_fixture (inherit, NULL, mongo_helper_shutdown);
   tcase_set_timeout (inherit, 60);
   tcase_add_test (inherit, child_of_init_uri_writes_to_the_parents_database_not_the_environments);
   tcase_add_test (inherit,
                   child_of_init_with_a_file_writes_to_the_files_database_not_the_environments);
   suite_add_tcase (s, inherit);
   return s;
}
