/*
 * metrics_server — /health and /metrics for a C web backend, with
 * libmicrohttpd.
 *
 *   build/metrics_server [PORT]        (default 8080, listens on 127.0.0.1)
 *
 *   GET /health   200 {"status":"ok",...} when MongoDB answers a ping within
 *                 1 s, else 503 {"status":"down",...}; always reports the
 *                 circuit breaker and pool (for a load balancer's check).
 *                 Never the error text, hosts or user names: HTTP clients
 *                 see up or down, the reason goes to the log (stderr)
 *   GET /metrics  the library's metrics in the Prometheus text format
 *   GET /ping     one read through the library's execution path (retried,
 *                 counted), so /metrics has something to show
 *
 * The MongoDB URI comes from the usual configuration (MONGO_CACHE_URI,
 * conf/mongo_helper.ini, MONGO_URI, ...).  Stops on SIGINT or SIGTERM.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "mongo_helper.h"

static enum MHD_Result
reply (struct MHD_Connection *c, unsigned status, const char *type, const char *body)
{
   struct MHD_Response *r =
      MHD_create_response_from_buffer (strlen (body), (void *) body, MHD_RESPMEM_MUST_COPY);
   enum MHD_Result ret;

   if (!r) {
      return MHD_NO;
   }
   MHD_add_response_header (r, "Content-Type", type);
   MHD_add_response_header (r, "Cache-Control", "no-store");
   ret = MHD_queue_response (c, status, r);
   MHD_destroy_response (r);
   return ret;
}

/* The log sink: the library's messages (credentials already redacted)
 * and this server's own, on stderr. */
static void
log_line (mongo_helper_log_level_t level, const char *domain, const char *message, void *data)
{
   static const char *const names[] = {"error", "warning", "info", "debug"};

   (void) data;
   fprintf (stderr,
            "metrics_server: %s %s: %s\n",
            (unsigned) level < 4 ? names[level] : "log",
            domain,
            message);
}

static enum MHD_Result
health (struct MHD_Connection *c)
{
   mongo_helper_error_t err;
   mongo_helper_circuit_t circuit;
   mongo_helper_pool_stats_t pool;
   char body[256];
   bool up = mongo_helper_ping (1000, &err);

   mongo_helper_circuit_status (&circuit);
   mongo_helper_pool_stats (&pool);
   if (!up) {
      /* The reason names hosts and users: for the operator's log only. */
      log_line (MONGO_HELPER_LOG_WARNING, "metrics_server", err.message, NULL);
   }
   snprintf (body,
             sizeof body,
             "{\"status\":\"%s\",\"circuit\":\"%s\","
             "\"consecutive_failures\":%d,\"pool_in_use\":%lld,"
             "\"pool_waiting\":%lld}\n",
             up ? "ok" : "down",
             mongo_helper_circuit_state_name (circuit.state),
             (int) circuit.consecutive_failures,
             (long long) pool.in_use,
             (long long) pool.waiting);
   return reply (c, up ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body);
}

static enum MHD_Result
metrics (struct MHD_Connection *c)
{
   mongo_helper_error_t err;
   size_t needed = 0, size = 16384;
   char *buf = NULL;
   enum MHD_Result ret;

   /* The text can grow between the two calls: retry with the size asked. */
   for (int tries = 0; tries < 4; tries++) {
      char *bigger = realloc (buf, size);
      if (!bigger) {
         break;
      }
      buf = bigger;
      if (mongo_helper_metrics_prometheus (buf, size, &needed, &err)) {
         ret = reply (c, MHD_HTTP_OK, "text/plain; version=0.0.4", buf);
         free (buf);
         return ret;
      }
      size = needed + 4096;
   }
   free (buf);
   return reply (c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "metrics unavailable\n");
}

static enum MHD_Result
ping (struct MHD_Connection *c)
{
   mongo_helper_error_t err;
   bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));
   bool ok = mongo_helper_read_command (cmd, 1000, NULL, &err);

   bson_destroy (cmd);
   if (ok) {
      return reply (c, MHD_HTTP_OK, "text/plain", "pong\n");
   }
   return reply (
      c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", mongo_helper_category_name (err.category));
}

static enum MHD_Result
handle (void *cls,
        struct MHD_Connection *c,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls)
{
   (void) cls;
   (void) version;
   (void) upload_data;
   (void) upload_data_size;
   (void) con_cls;
   if (strcmp (method, "GET") != 0) {
      return reply (c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
   }
   if (strcmp (url, "/health") == 0) {
      return health (c);
   }
   if (strcmp (url, "/metrics") == 0) {
      return metrics (c);
   }
   if (strcmp (url, "/ping") == 0) {
      return ping (c);
   }
   return reply (c, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n");
}

int
main (int argc, char **argv)
{
   int port = argc > 1 ? atoi (argv[1]) : 8080;
   struct sockaddr_in addr;
   struct MHD_Daemon *d = NULL;
   mongo_helper_error_t err;
   sigset_t set;
   int sig, status = EXIT_FAILURE;

   if (port <= 0 || port > 65535) {
      fprintf (stderr, "usage: %s [PORT]\n", argv[0]);
      return EXIT_FAILURE;
   }
   mongo_helper_set_log_handler (log_line, MONGO_HELPER_LOG_WARNING, NULL);
   if (!mongo_helper_init (NULL, &err)) {
      fprintf (stderr, "metrics_server: %s\n", err.message);
      return EXIT_FAILURE;
   }
   /* Signals are taken by sigwait() below, not by MHD's threads. */
   sigemptyset (&set);
   sigaddset (&set, SIGINT);
   sigaddset (&set, SIGTERM);
   pthread_sigmask (SIG_BLOCK, &set, NULL);

   memset (&addr, 0, sizeof addr);
   addr.sin_family = AF_INET;
   addr.sin_port = htons ((uint16_t) port);
   addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
   d = MHD_start_daemon (MHD_USE_INTERNAL_POLLING_THREAD,
                         (uint16_t) port,
                         NULL,
                         NULL,
                         handle,
                         NULL,
                         MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *) &addr,
                         MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned int) 10,
                         MHD_OPTION_END);
   if (!d) {
      fprintf (stderr, "metrics_server: cannot listen on 127.0.0.1:%d\n", port);
      goto cleanup;
   }
   printf ("metrics_server: listening on http://127.0.0.1:%d (/health, /metrics, /ping)\n", port);
   fflush (stdout);
   sigwait (&set, &sig);
   status = EXIT_SUCCESS;

cleanup:
   if (d) {
      MHD_stop_daemon (d);
   }
   mongo_helper_shutdown ();
   return status;
}
