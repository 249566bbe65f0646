/* src/stats.c: collection, database, index and server statistics.  "core"
 * needs no server (bad names are refused first); "live" compares the
 * figures with what the test inserted into the test server. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (stats_reject_null_and_empty_names)
{
   bson_t reply;

   mh_test_clean_env ();
   MH_ASSERT_FAILS_WITH (mongo_helper_collection_stats (NULL, NULL, NULL, &reply, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (bson_empty (&reply));
   bson_destroy (&reply);
   MH_ASSERT_FAILS_WITH (mongo_helper_collection_stats (NULL, "", NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_collection_stats ("", "c", NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_db_stats ("bad.name", NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_collection_names ("", &err) != NULL,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_index_sizes (NULL, NULL, &reply, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&reply);
   MH_ASSERT_FAILS_WITH (mongo_helper_index_sizes (NULL, "c", NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

/* ---- live ------------------------------------------------------------- */

START_TEST (stats_report_the_documents_and_indexes_inserted)
{
   const char *name = mh_test_collection ("stats");
   char coll_name[96], other_db[64];
   mongoc_collection_t *coll;
   mongo_helper_coll_stats_t cs;
   mongo_helper_db_stats_t ds;
   mongo_helper_server_status_t ss;
   bson_t reply, sizes;
   bson_t *create_index;
   mongo_helper_conn_t *conn;
   bson_error_t e;
   bson_iter_t it;
   char **names;
   bool seen = false;

   bson_strncpy (coll_name, name, sizeof coll_name);
   coll = mh_test_raw_collection (coll_name);
   for (int i = 0; i < 7; i++) {
      bson_t *d = BCON_NEW ("k", BCON_INT32 (i), "pad", BCON_UTF8 ("0123456789"));
      ck_assert (mongoc_collection_insert_one (coll, d, NULL, NULL, &e));
      bson_destroy (d);
   }
   create_index = BCON_NEW ("createIndexes",
                            BCON_UTF8 (coll_name),
                            "indexes",
                            "[",
                            "{",
                            "key",
                            "{",
                            "k",
                            BCON_INT32 (1),
                            "}",
                            "name",
                            BCON_UTF8 ("k_1"),
                            "}",
                            "]");
   MH_ASSERT_OK (mongo_helper_command (create_index, NULL, &err), err);
   bson_destroy (create_index);

   MH_ASSERT_OK (mongo_helper_collection_stats (NULL, coll_name, &cs, &reply, &err), err);
   ck_assert_int_eq (cs.count, 7);
   ck_assert_int_eq (cs.nindexes, 2);
   ck_assert_int_gt (cs.size, 7 * 20);
   ck_assert_int_eq (cs.avg_obj_size, cs.size / 7);
   ck_assert_int_gt (cs.total_index_size, 0);
   {
      char ns[260];
      mongo_helper_status_t st;

      mongo_helper_status (&st);
      snprintf (ns, sizeof ns, "%s.%s", st.database, coll_name);
      ck_assert_str_eq (mh_test_utf8_at (&reply, "ns"), ns);
   }
   bson_destroy (&reply);

   MH_ASSERT_OK (mongo_helper_index_sizes (NULL, coll_name, &sizes, &err), err);
   ck_assert (bson_iter_init_find (&it, &sizes, "_id_"));
   ck_assert_int_gt (bson_iter_int64 (&it), 0);
   ck_assert (bson_iter_init_find (&it, &sizes, "k_1"));
   ck_assert_int_gt (bson_iter_int64 (&it), 0);
   ck_assert_uint_eq (bson_count_keys (&sizes), 2);
   bson_destroy (&sizes);

   names = mongo_helper_collection_names (NULL, &err);
   MH_ASSERT_OK (names != NULL, err);
   for (char **n = names; *n; n++) {
      seen = seen || strcmp (*n, coll_name) == 0;
   }
   ck_assert_msg (seen, "%s not among the collection names", coll_name);
   bson_strfreev (names);

   MH_ASSERT_OK (mongo_helper_db_stats (NULL, &ds, NULL, &err), err);
   ck_assert_int_ge (ds.objects, 7);
   ck_assert_int_ge (ds.collections, 1);
   ck_assert_int_ge (ds.indexes, 2);
   ck_assert_int_gt (ds.data_size, 0);

   /* An explicit database holds exactly what was put there. */
   snprintf (other_db, sizeof other_db, "mh_ops_%ld", (long) getpid ());
   {
      mongoc_collection_t *oc;

      conn = mongo_helper_acquire (&err);
      MH_ASSERT_OK (conn != NULL, err);
      oc = mongoc_client_get_collection (mongo_helper_conn_client (conn), other_db, "only");

      for (int i = 0; i < 3; i++) {
         bson_t *d = BCON_NEW ("i", BCON_INT32 (i));
         ck_assert (mongoc_collection_insert_one (oc, d, NULL, NULL, &e));
         bson_destroy (d);
      }
      mongoc_collection_destroy (oc);
   }
   MH_ASSERT_OK (mongo_helper_db_stats (other_db, &ds, &reply, &err), err);
   ck_assert_int_eq (ds.objects, 3);
   ck_assert_int_eq (ds.collections, 1);
   ck_assert_str_eq (mh_test_utf8_at (&reply, "db"), other_db);
   bson_destroy (&reply);
   names = mongo_helper_collection_names (other_db, &err);
   MH_ASSERT_OK (names != NULL, err);
   ck_assert_str_eq (names[0], "only");
   ck_assert_ptr_null (names[1]);
   bson_strfreev (names);
   MH_ASSERT_OK (mongo_helper_collection_stats (other_db, "only", &cs, NULL, &err), err);
   ck_assert_int_eq (cs.count, 3);
   {
      mongoc_database_t *od =
         mongoc_client_get_database (mongo_helper_conn_client (conn), other_db);
      mongoc_database_drop (od, NULL);
      mongoc_database_destroy (od);
      mongo_helper_release (conn);
   }

   /* A missing collection is NOT_FOUND. */
   MH_ASSERT_FAILS_WITH (
      mongo_helper_collection_stats (NULL, "no_such_coll_at_all", &cs, NULL, &err),
      MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert_int_eq (err.code, 26);

   MH_ASSERT_OK (mongo_helper_server_status (&ss, NULL, &err), err);
   ck_assert_msg (strlen (ss.version) >= 3, "version '%s'", ss.version);
   ck_assert_int_ge (ss.uptime_s, 0);
   ck_assert_int_ge (ss.connections_current, 1);
   ck_assert_int_gt (ss.connections_available, 0);
   ck_assert_int_ge (ss.connections_total_created, ss.connections_current);
   ck_assert (ss.host[0] != '\0');

   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
}
END_TEST

Suite *
stats_suite (void)
{
   Suite *s = suite_create ("stats");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, stats_reject_null_and_empty_names);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, stats_report_the_documents_and_indexes_inserted);
   suite_add_tcase (s, live);
   return s;
}
