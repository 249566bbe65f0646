/* Statistics and concurrent operations: what a status page or a dashboard
 * request does.
 *
 *   MONGO_CACHE_URI=mongodb://localhost:27017/portal ./build/concurrent_demo
 */
#include <stdio.h>
#include <stdlib.h>

#include "mongo_helper.h"

#define N_OPS 4

static void
report (const char *what, const mongo_helper_error_t *err)
{
   fprintf (stderr,
            "%s: %s error %d: %s\n",
            what,
            mongo_helper_category_name (err->category),
            (int) err->code,
            err->message);
}

int
main (void)
{
   mongo_helper_error_t err;
   mongo_helper_server_status_t ss;
   mongo_helper_db_stats_t ds;
   mongo_helper_coll_stats_t cs;
   mongo_helper_op_result_t res[N_OPS];
   bson_t *user = BCON_NEW ("email",
                            BCON_UTF8 ("admin@example.com"),
                            "status",
                            BCON_UTF8 ("active"),
                            "department",
                            BCON_UTF8 ("ops"));
   bson_t *active = BCON_NEW ("status", BCON_UTF8 ("active"));
   bson_t *admin = BCON_NEW ("email", BCON_UTF8 ("admin@example.com"));
   bson_t *pipeline = BCON_NEW ("pipeline",
                                "[",
                                "{",
                                "$group",
                                "{",
                                "_id",
                                BCON_UTF8 ("$department"),
                                "n",
                                "{",
                                "$sum",
                                BCON_INT32 (1),
                                "}",
                                "}",
                                "}",
                                "]");
   mongo_helper_op_t seed = {
      .type = MONGO_HELPER_OP_INSERT_ONE, .collection = "users", .document = user};
   const mongo_helper_op_t ops[N_OPS] = {
      {.type = MONGO_HELPER_OP_COUNT, .collection = "users", .filter = active},
      {.type = MONGO_HELPER_OP_FIND_ONE, .collection = "users", .filter = admin},
      {.type = MONGO_HELPER_OP_DISTINCT, .collection = "users", .field = "department"},
      {.type = MONGO_HELPER_OP_AGGREGATE, .collection = "users", .pipeline = pipeline},
   };
   char **names = NULL;
   int rc = EXIT_FAILURE;
   bool ran = false;

   /* One insert so there is something to count. */
   if (!mongo_helper_run_concurrent (&seed, 1, 1, res, &err)) {
      report ("insert", &err);
      mongo_helper_op_results_cleanup (res, 1);
      goto cleanup;
   }
   mongo_helper_op_results_cleanup (res, 1);

   if (!mongo_helper_server_status (&ss, NULL, &err)) {
      report ("serverStatus", &err);
      goto cleanup;
   }
   printf ("server %s, version %s, up %lld s, %lld connection(s)\n",
           ss.host,
           ss.version,
           (long long) ss.uptime_s,
           (long long) ss.connections_current);
   if (!mongo_helper_db_stats (NULL, &ds, NULL, &err)) {
      report ("dbStats", &err);
      goto cleanup;
   }
   printf ("database: %lld collection(s), %lld document(s), %lld data bytes, "
           "%lld index(es)\n",
           (long long) ds.collections,
           (long long) ds.objects,
           (long long) ds.data_size,
           (long long) ds.indexes);
   if (!mongo_helper_collection_stats (NULL, "users", &cs, NULL, &err)) {
      report ("collection stats", &err);
      goto cleanup;
   }
   printf ("users: %lld document(s), %lld bytes, %lld index(es)\n",
           (long long) cs.count,
           (long long) cs.size,
           (long long) cs.nindexes);
   names = mongo_helper_collection_names (NULL, &err);
   if (!names) {
      report ("collection names", &err);
      goto cleanup;
   }
   printf ("collections:");
   for (char **n = names; *n; n++) {
      printf (" %s", *n);
   }
   printf ("\n");

   /* Four queries at once, at most three at a time. */
   ran = true;
   if (!mongo_helper_run_concurrent (ops, N_OPS, 3, res, &err)) {
      report ("concurrent operations", &err);
   }
   for (int i = 0; i < N_OPS; i++) {
      if (res[i].error.category != MONGO_HELPER_ERROR_NONE) {
         printf ("op %d failed: %s\n", i, res[i].error.message);
      } else {
         char *json = bson_as_relaxed_extended_json (&res[i].result, NULL);
         printf ("op %d: %s\n", i, json);
         bson_free (json);
      }
   }
   if (err.category == MONGO_HELPER_ERROR_NONE) {
      rc = EXIT_SUCCESS;
   }

cleanup:
   if (ran) {
      mongo_helper_op_results_cleanup (res, N_OPS);
   }
   bson_strfreev (names);
   bson_destroy (user);
   bson_destroy (active);
   bson_destroy (admin);
   bson_destroy (pipeline);
   mongo_helper_shutdown ();
   return rc;
}
