/*
 * cli_server.c — mongo-helper ping, status, stats and metrics: is the
 * deployment up, what is it, how big is the data, what does the library
 * count.
 */
#include "mh_cli.h"

static void
append_error (bson_t *doc, const mongo_helper_error_t *err)
{
   bson_t e;

   BSON_APPEND_DOCUMENT_BEGIN (doc, "error", &e);
   BSON_APPEND_UTF8 (&e, "category", mongo_helper_category_name (err->category));
   BSON_APPEND_UTF8 (&e, "message", err->message);
   bson_append_document_end (doc, &e);
}

/* ---- ping --------------------------------------------------------------- */

static int
run_ping (mh_cli_t *cli)
{
   mongo_helper_error_t err;
   mongo_helper_status_t st;
   int64_t t0;
   bool ok;
   int rc;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments");
   }
   if ((rc = mh_cli_init (cli)) != MH_EXIT_OK) {
      return rc;
   }
   mongo_helper_status (&st);
   t0 = mh_cli_now_ms ();
   ok = mongo_helper_ping (cli->timeout_ms, &err);
   if (mh_cli_opt (cli, "json")) {
      bson_t doc = BSON_INITIALIZER;

      BSON_APPEND_BOOL (&doc, "ok", ok);
      BSON_APPEND_UTF8 (&doc, "uri", st.uri);
      if (ok) {
         BSON_APPEND_INT64 (&doc, "round_trip_ms", mh_cli_now_ms () - t0);
      } else {
         append_error (&doc, &err);
      }
      mh_cli_print_json (cli, &doc);
      bson_destroy (&doc);
   } else if (ok && !cli->quiet) {
      printf ("ok: %s answered in %lld ms\n", st.uri, (long long) (mh_cli_now_ms () - t0));
   }
   return ok ? MH_EXIT_OK : mh_cli_fail (cli, &err);
}

static const mh_cli_opt_t ping_opts[] = {
   {"json", 0, NULL, "one JSON object: ok, uri, round_trip_ms or error"},
   {NULL, 0, NULL, NULL}};

const mh_cli_cmd_t mh_cli_ping_cmd = {
   "ping",
   "[--timeout MS] [--json]",
   "exit 0 when the deployment answers, 1 otherwise (a health probe)",
   "Sends 'ping' on a small dedicated client, bypassing the pool and the circuit\n"
   "breaker, like an application's /health endpoint.  For systemd, Docker\n"
   "HEALTHCHECK or a Kubernetes exec probe: mongo-helper ping -q.",
   ping_opts,
   run_ping,
   NULL};

/* ---- status ------------------------------------------------------------- */

static int
run_status (mh_cli_t *cli)
{
   mongo_helper_error_t err;
   mongo_helper_status_t st;
   mongo_helper_server_info_t info;
   mongo_helper_circuit_t circuit;
   mongo_helper_pool_stats_t pool;
   bool ok;
   int rc;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments");
   }
   if ((rc = mh_cli_init (cli)) != MH_EXIT_OK) {
      return rc;
   }
   ok = mongo_helper_server_info (cli->timeout_ms, &info, &err);
   mongo_helper_status (&st);
   mongo_helper_circuit_status (&circuit);
   mongo_helper_pool_stats (&pool);
   if (mh_cli_opt (cli, "json")) {
      bson_t doc = BSON_INITIALIZER, sub;

      BSON_APPEND_BOOL (&doc, "reachable", ok);
      BSON_APPEND_UTF8 (&doc, "uri", st.uri);
      BSON_APPEND_UTF8 (&doc, "uri_source", st.source);
      BSON_APPEND_UTF8 (&doc, "database", st.database);
      if (ok) {
         BSON_APPEND_DOCUMENT_BEGIN (&doc, "server", &sub);
         BSON_APPEND_UTF8 (&sub, "version", info.version);
         BSON_APPEND_UTF8 (&sub, "topology", info.topology);
         BSON_APPEND_UTF8 (&sub, "set_name", info.set_name);
         BSON_APPEND_INT32 (&sub, "max_wire_version", info.max_wire_version);
         BSON_APPEND_INT64 (&sub, "round_trip_us", info.round_trip_us);
         bson_append_document_end (&doc, &sub);
      } else {
         append_error (&doc, &err);
      }
      BSON_APPEND_DOCUMENT_BEGIN (&doc, "circuit", &sub);
      BSON_APPEND_UTF8 (&sub, "state", mongo_helper_circuit_state_name (circuit.state));
      BSON_APPEND_INT32 (&sub, "consecutive_failures", circuit.consecutive_failures);
      BSON_APPEND_INT64 (&sub, "opened_at_ms", circuit.opened_at_ms);
      BSON_APPEND_INT64 (&sub, "retry_in_ms", circuit.retry_in_ms);
      BSON_APPEND_INT64 (&sub, "rejected", (int64_t) circuit.rejected);
      bson_append_document_end (&doc, &sub);
      BSON_APPEND_DOCUMENT_BEGIN (&doc, "pool", &sub);
      BSON_APPEND_INT32 (&sub, "max_pool_size", st.max_pool_size);
      BSON_APPEND_INT32 (&sub, "pool_wait_ms", st.pool_wait_ms);
      BSON_APPEND_INT64 (&sub, "in_use", pool.in_use);
      bson_append_document_end (&doc, &sub);
      mh_cli_print_json (cli, &doc);
      bson_destroy (&doc);
   } else if (!cli->quiet) {
      printf ("uri:        %s\n", st.uri);
      printf ("from:       %s\n", st.source);
      printf ("database:   %s\n", st.database);
      if (ok) {
         printf ("reachable:  yes, round trip %.1f ms\n", (double) info.round_trip_us / 1000.0);
         printf ("server:     MongoDB %s, %s%s%s, wire version %d\n",
                 info.version,
                 info.topology,
                 info.set_name[0] ? " " : "",
                 info.set_name,
                 (int) info.max_wire_version);
      } else {
         printf ("reachable:  no (%s)\n", mongo_helper_category_name (err.category));
      }
      printf ("circuit:    %s, %d consecutive failures, %llu calls rejected\n",
              mongo_helper_circuit_state_name (circuit.state),
              (int) circuit.consecutive_failures,
              (unsigned long long) circuit.rejected);
      printf (
         "pool:       max %d clients, wait %d ms\n", (int) st.max_pool_size, (int) st.pool_wait_ms);
   }
   return ok ? MH_EXIT_OK : mh_cli_fail (cli, &err);
}

static const mh_cli_opt_t status_opts[] = {
   {"json", 0, NULL, "one JSON object: reachable, uri, database, server, circuit, pool, error"},
   {NULL, 0, NULL, NULL}};

const mh_cli_cmd_t mh_cli_status_cmd = {
   "status",
   "[--timeout MS] [--json]",
   "URI, reachability, server version, topology, round trip, circuit breaker",
   "Exit 0 when the deployment answers, 1 otherwise.  Asks it (hello, buildInfo)\n"
   "on the dedicated health client, like ping.  The\n"
   "circuit breaker and the pool are this process's own: they show the\n"
   "configured limits, not those of a running application.",
   status_opts,
   run_status,
   NULL};

/* ---- stats -------------------------------------------------------------- */

static int
run_stats (mh_cli_t *cli)
{
   const char *db = mh_cli_opt (cli, "database");
   mongo_helper_error_t err;
   bson_t doc = BSON_INITIALIZER;
   int rc;

   if (cli->n_args > 1) {
      return mh_cli_usage (cli, "takes at most one COLLECTION");
   }
   if ((rc = mh_cli_connect (cli)) != MH_EXIT_OK) {
      bson_destroy (&doc);
      return rc;
   }
   if (cli->n_args == 1) {
      mongo_helper_coll_stats_t s;

      if (!mongo_helper_collection_stats (db, cli->args[0], &s, NULL, &err)) {
         bson_destroy (&doc);
         return mh_cli_fail (cli, &err);
      }
      BSON_APPEND_UTF8 (&doc, "collection", cli->args[0]);
      BSON_APPEND_INT64 (&doc, "count", s.count);
      BSON_APPEND_INT64 (&doc, "size", s.size);
      BSON_APPEND_INT64 (&doc, "avg_obj_size", s.avg_obj_size);
      BSON_APPEND_INT64 (&doc, "storage_size", s.storage_size);
      BSON_APPEND_INT64 (&doc, "nindexes", s.nindexes);
      BSON_APPEND_INT64 (&doc, "total_index_size", s.total_index_size);
   } else {
      mongo_helper_db_stats_t s;

      if (!mongo_helper_db_stats (db, &s, NULL, &err)) {
         bson_destroy (&doc);
         return mh_cli_fail (cli, &err);
      }
      BSON_APPEND_INT64 (&doc, "collections", s.collections);
      BSON_APPEND_INT64 (&doc, "objects", s.objects);
      BSON_APPEND_INT64 (&doc, "data_size", s.data_size);
      BSON_APPEND_INT64 (&doc, "storage_size", s.storage_size);
      BSON_APPEND_INT64 (&doc, "indexes", s.indexes);
      BSON_APPEND_INT64 (&doc, "index_size", s.index_size);
   }
   if (mh_cli_opt (cli, "json")) {
      mh_cli_print_json (cli, &doc);
   } else if (!cli->quiet) {
      bson_iter_t it;

      bson_iter_init (&it, &doc);
      while (bson_iter_next (&it)) {
         if (BSON_ITER_HOLDS_UTF8 (&it)) {
            printf ("%-18s %s\n", bson_iter_key (&it), bson_iter_utf8 (&it, NULL));
         } else {
            printf ("%-18s %lld\n", bson_iter_key (&it), (long long) bson_iter_int64 (&it));
         }
      }
   }
   bson_destroy (&doc);
   return MH_EXIT_OK;
}

static const mh_cli_opt_t stats_opts[] = {
   {"database", 0, "DB", "another database than the configured default"},
   {"json", 0, NULL, "one JSON object of the numbers"},
   {NULL, 0, NULL, NULL}};

const mh_cli_cmd_t mh_cli_stats_cmd = {
   "stats",
   "[COLLECTION] [--database DB] [--json]",
   "database statistics, or a collection's",
   "dbStats of the default database (or --database), or the storage statistics\n"
   "($collStats) of COLLECTION.  Sizes are in bytes.  A missing collection fails\n"
   "with not_found (exit 1).",
   stats_opts,
   run_stats,
   NULL};

/* ---- metrics ------------------------------------------------------------ */

static int
run_metrics (mh_cli_t *cli)
{
   mongo_helper_error_t err, ping_err;
   bson_t ping = BSON_INITIALIZER;
   size_t size = 16384, needed = 0;
   char *buf = NULL;
   bool reachable;
   int rc;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments");
   }
   if ((rc = mh_cli_init (cli)) != MH_EXIT_OK) {
      return rc;
   }
   /* A ping through the pool, so the snapshot has one operation in it; the
    * probe first, so an unreachable server does not hold it up. */
   BSON_APPEND_INT32 (&ping, "ping", 1);
   reachable = mongo_helper_ping (cli->timeout_ms, &ping_err) &&
               mongo_helper_command (&ping, NULL, &ping_err);
   bson_destroy (&ping);
   for (;;) {
      buf = bson_realloc (buf, size);
      if (mongo_helper_metrics_prometheus (buf, size, &needed, &err)) {
         break;
      }
      if (needed <= size) {
         bson_free (buf);
         return mh_cli_fail (cli, &err);
      }
      size = needed + 4096;
   }
   if (!cli->quiet) {
      fputs (buf, stdout);
      fflush (stdout);
   }
   bson_free (buf);
   return reachable ? MH_EXIT_OK : mh_cli_fail (cli, &ping_err);
}

const mh_cli_cmd_t mh_cli_metrics_cmd = {
   "metrics",
   "[--timeout MS]",
   "one Prometheus text snapshot of the library's metrics, after a ping",
   "Pings through the pool, then prints the snapshot; exit 1 (after it) when the\n"
   "ping failed.  The metrics are this process's: operation counts and latencies, command\n"
   "counters, pool and circuit breaker (see the README's Metrics section).  An\n"
   "application serves its own at /metrics (examples/metrics_server.c).",
   NULL,
   run_metrics,
   NULL};
