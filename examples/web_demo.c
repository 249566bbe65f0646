/* A small real HTTP backend on libmicrohttpd that keeps its state in
 * MongoDB through mongo_helper's web helpers:
 *
 *   GET /         issues a session cookie (sid), counts this session's
 *                 visits, serves a page computed once and cached for 60 s,
 *                 and logs a page_view event through the buffered writer
 *   GET /events   the newest events of the demo user
 *   GET /logout   deletes the session
 *   GET /health   mongo_helper_ping()
 *
 *   MONGO_CACHE_URI=mongodb://localhost:27017/portal ./build/web_demo 8080
 *   ./build/web_demo 0 /tmp/port     (a free port, written to the file)
 *
 * Stops on SIGINT/SIGTERM: the writer flushes with a 3 s deadline and the
 * counters are printed.  Worker threads share the three handles.
 */
#define _POSIX_C_SOURCE 200809L
#include <microhttpd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mongo_helper.h"

static mongo_helper_sessions_t *sessions;
static mongo_helper_cache_t *cache;
static mongo_helper_eventlog_t *eventlog;
static mongo_helper_event_writer_t *writer;
static atomic_int page_computations;

static enum MHD_Result
reply (struct MHD_Connection *conn, unsigned status, const char *body, const char *sid)
{
   struct MHD_Response *r =
      MHD_create_response_from_buffer (strlen (body), (void *) body, MHD_RESPMEM_MUST_COPY);
   enum MHD_Result ret;

   MHD_add_response_header (r, "Content-Type", "text/plain; charset=utf-8");
   if (sid) {
      char cookie[128];
      snprintf (cookie, sizeof cookie, "sid=%s; Path=/; HttpOnly; SameSite=Lax", sid);
      MHD_add_response_header (r, "Set-Cookie", cookie);
   }
   ret = MHD_queue_response (conn, status, r);
   MHD_destroy_response (r);
   return ret;
}

static bool
render_home (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   struct timespec ts = {0, 200 * 1000000L}; /* pretend this is expensive */
   char when[64];
   time_t now = time (NULL);

   (void) key;
   (void) ud;
   (void) e;
   nanosleep (&ts, NULL);
   atomic_fetch_add (&page_computations, 1);
   strftime (when, sizeof when, "%H:%M:%S", gmtime (&now));
   BSON_APPEND_UTF8 (out, "html", "Welcome to the mongo_helper web demo");
   BSON_APPEND_UTF8 (out, "rendered_at", when);
   return true;
}

static enum MHD_Result
fail (struct MHD_Connection *conn, const char *what, const mongo_helper_error_t *e)
{
   char body[700];
   snprintf (body,
             sizeof body,
             "%s failed: %s error: %s\n",
             what,
             mongo_helper_category_name (e->category),
             e->message);
   return reply (conn, MHD_HTTP_INTERNAL_SERVER_ERROR, body, NULL);
}

static enum MHD_Result
home (struct MHD_Connection *conn)
{
   const char *cookie = MHD_lookup_connection_value (conn, MHD_COOKIE_KIND, "sid");
   char sid[MONGO_HELPER_SESSION_ID_SIZE] = "";
   char body[600];
   bool new_session = false;
   bson_t data, page, *set, *meta;
   bson_iter_t it;
   int64_t visits = 0;
   bool computed = false;
   mongo_helper_error_t e;

   bson_init (&data);
   /* Known, live session?  Else (no cookie, expired, forged) a new one. */
   if (cookie && mongo_helper_sessions_load (sessions, cookie, &data, &e)) {
      snprintf (sid, sizeof sid, "%s", cookie);
      mongo_helper_sessions_touch (sessions, sid, NULL, &e); /* lazy */
   } else {
      bson_destroy (&data);
      bson_init (&data);
      if (cookie && e.category != MONGO_HELPER_ERROR_NOT_FOUND) {
         bson_destroy (&data);
         return fail (conn, "load session", &e);
      }
      if (!mongo_helper_sessions_create (sessions, NULL, "demo-user", sid, &e)) {
         bson_destroy (&data);
         return fail (conn, "create session", &e);
      }
      new_session = true;
   }
   if (bson_iter_init_find (&it, &data, "visits") && BSON_ITER_HOLDS_NUMBER (&it)) {
      visits = bson_iter_as_int64 (&it);
   }
   bson_destroy (&data);
   visits++;
   set = BCON_NEW ("visits", BCON_INT64 (visits));
   if (!mongo_helper_sessions_set (sessions, sid, set, &e)) {
      bson_destroy (set);
      return fail (conn, "update session", &e);
   }
   bson_destroy (set);

   if (!mongo_helper_cache_get_or_compute (
          cache, "page:/", 60000, render_home, NULL, &page, &computed, &e)) {
      bson_destroy (&page);
      return fail (conn, "cached page", &e);
   }
   meta = BCON_NEW ("path",
                    BCON_UTF8 ("/"),
                    "visits",
                    BCON_INT64 (visits),
                    "page_computed",
                    BCON_BOOL (computed));
   if (!mongo_helper_event_writer_log (writer, "demo-user", "page_view", meta, 0, &e)) {
      fprintf (stderr, "web_demo: event not queued: %s\n", e.message);
   }
   bson_destroy (meta);
   snprintf (body,
             sizeof body,
             "%s\nsession: %s\nvisits in this session: %lld\n"
             "page rendered at %s (%s)\n",
             bson_iter_init_find (&it, &page, "html") ? bson_iter_utf8 (&it, NULL) : "",
             new_session ? "new" : "existing",
             (long long) visits,
             bson_iter_init_find (&it, &page, "rendered_at") ? bson_iter_utf8 (&it, NULL) : "?",
             computed ? "computed now" : "from the cache");
   bson_destroy (&page);
   return reply (conn, MHD_HTTP_OK, body, new_session ? sid : NULL);
}

static enum MHD_Result
events (struct MHD_Connection *conn)
{
   mongo_helper_event_query_t q = {0};
   mongo_helper_error_t e;
   bson_t out;
   int32_t n = 0;
   char body[256];

   mongo_helper_event_writer_flush (writer, 2000, NULL);
   q.user_id = "demo-user";
   q.limit = 50;
   if (!mongo_helper_eventlog_query (eventlog, &q, &out, &n, &e)) {
      bson_destroy (&out);
      return fail (conn, "query events", &e);
   }
   bson_destroy (&out);
   snprintf (body, sizeof body, "recent events of demo-user: %d\n", (int) n);
   return reply (conn, MHD_HTTP_OK, body, NULL);
}

static enum MHD_Result
handle (void *cls,
        struct MHD_Connection *conn,
        const char *url,
        const char *method,
        const char *version,
        const char *upload,
        size_t *upload_size,
        void **state)
{
   mongo_helper_error_t e;

   (void) cls;
   (void) version;
   (void) upload;
   (void) upload_size;
   (void) state;
   if (strcmp (method, "GET") != 0) {
      return reply (conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n", NULL);
   }
   if (strcmp (url, "/health") == 0) {
      return mongo_helper_ping (1000, &e)
                ? reply (conn, MHD_HTTP_OK, "ok\n", NULL)
                : reply (conn, MHD_HTTP_SERVICE_UNAVAILABLE, "mongodb unreachable\n", NULL);
   }
   if (strcmp (url, "/events") == 0) {
      return events (conn);
   }
   if (strcmp (url, "/logout") == 0) {
      const char *sid = MHD_lookup_connection_value (conn, MHD_COOKIE_KIND, "sid");
      if (sid && !mongo_helper_sessions_delete (sessions, sid, &e)) {
         return fail (conn, "logout", &e);
      }
      return reply (conn, MHD_HTTP_OK, "logged out\n", NULL);
   }
   if (strcmp (url, "/") == 0) {
      return home (conn);
   }
   return reply (conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
}

int
main (int argc, char **argv)
{
   struct MHD_Daemon *d = NULL;
   mongo_helper_error_t e;
   mongo_helper_event_writer_options_t wo;
   mongo_helper_event_writer_stats_t st;
   sigset_t sigs;
   int sig, rc = EXIT_FAILURE;
   unsigned port = argc > 1 ? (unsigned) atoi (argv[1]) : 8080;
   const union MHD_DaemonInfo *info;

   /* Handle SIGINT/SIGTERM with sigwait in main; block them before any
    * thread starts so the workers never receive them. */
   sigemptyset (&sigs);
   sigaddset (&sigs, SIGINT);
   sigaddset (&sigs, SIGTERM);
   pthread_sigmask (SIG_BLOCK, &sigs, NULL);

   if (!(sessions = mongo_helper_sessions_new (NULL, &e)) ||
       !(cache = mongo_helper_cache_new (NULL, &e)) ||
       !(eventlog = mongo_helper_eventlog_new (NULL, &e))) {
      fprintf (stderr, "web_demo: %s\n", e.message);
      goto cleanup;
   }
   /* Set-up at start, so a missing index privilege shows now. */
   if (!mongo_helper_sessions_ensure (sessions, &e) || !mongo_helper_cache_ensure (cache, &e) ||
       !mongo_helper_eventlog_ensure (eventlog, NULL, &e)) {
      fprintf (stderr,
               "web_demo: set-up failed: %s error: %s\n",
               mongo_helper_category_name (e.category),
               e.message);
      goto cleanup;
   }
   mongo_helper_thread_release ();
   mongo_helper_event_writer_options_init (&wo);
   wo.flush_interval_ms = 200;
   if (!(writer = mongo_helper_event_writer_new (eventlog, &wo, &e))) {
      fprintf (stderr, "web_demo: %s\n", e.message);
      goto cleanup;
   }
   d = MHD_start_daemon (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                         (uint16_t) port,
                         NULL,
                         NULL,
                         handle,
                         NULL,
                         MHD_OPTION_THREAD_POOL_SIZE,
                         4u,
                         MHD_OPTION_CONNECTION_TIMEOUT,
                         10u,
                         MHD_OPTION_END);
   if (!d) {
      fprintf (stderr, "web_demo: cannot listen on port %u\n", port);
      goto cleanup;
   }
   info = MHD_get_daemon_info (d, MHD_DAEMON_INFO_BIND_PORT);
   port = info ? info->port : port;
   printf ("web_demo: listening on http://127.0.0.1:%u/\n", port);
   fflush (stdout);
   if (argc > 2) {
      FILE *f = fopen (argv[2], "w");
      if (f) {
         fprintf (f, "%u\n", port);
         fclose (f);
      }
   }
   sigwait (&sigs, &sig);
   printf ("web_demo: signal %d, stopping\n", sig);
   rc = EXIT_SUCCESS;

cleanup:
   if (d) {
      MHD_stop_daemon (d);
   }
   if (writer) {
      mongo_helper_event_writer_destroy (writer, 3000, &st);
      printf ("web_demo: events accepted %llu, stored %llu, dropped %llu, "
              "failed batches %llu; page computed %d time(s)\n",
              (unsigned long long) st.accepted,
              (unsigned long long) st.stored,
              (unsigned long long) st.dropped,
              (unsigned long long) st.failed_batches,
              atomic_load (&page_computations));
      if (st.stored + st.dropped != st.accepted || st.dropped) {
         rc = EXIT_FAILURE;
      }
   }
   mongo_helper_eventlog_destroy (eventlog);
   mongo_helper_cache_destroy (cache);
   mongo_helper_sessions_destroy (sessions);
   mongo_helper_shutdown ();
   return rc;
}
