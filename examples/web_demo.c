/* A small real HTTP backend on libmicrohttpd that keeps its state in
 * MongoDB through mongo_helper's web helpers:
 *
 *   GET /         issues a session cookie (sid), counts this session's
 *                 visits, serves a page computed once and cached for 60 s,
 *                 and logs a page_view event through the buffered writer
 *   POST /login   gives the session a new id (against session fixation)
 *                 and the owner demo-user
 *   POST /logout  deletes the session and clears the cookie
 *   GET /events   the newest events of the demo user
 *   GET /health   mongo_helper_ping()
 *
 *   MONGO_CACHE_URI=mongodb://localhost:27017/portal ./build/web_demo 8080
 *   ./build/web_demo 0 /tmp/port     (a free port, written to the file)
 *
 * What to copy: the cookie is HttpOnly and SameSite=Lax, and Secure with
 * WEB_DEMO_SECURE_COOKIE=1 (set it when clients reach the server over
 * HTTPS); state changes only by POST; a client never sees an error's text,
 * which goes to the log (the same sink as the library's log messages).
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
static bool secure_cookie; /* WEB_DEMO_SECURE_COOKIE=1: served over HTTPS */

/* One log sink for the library's messages and the demo's own. */
static void
demo_log (mongo_helper_log_level_t level, const char *domain, const char *message, void *ud)
{
   static const char *names[] = {"error", "warning", "info", "debug"};

   (void) ud;
   fprintf (
      stderr, "web_demo: %s [%s] %s\n", (unsigned) level < 4 ? names[level] : "?", domain, message);
}

/* Logs a failure in full (redacted, in case a URI slipped into it). */
static void
log_failure (const char *what, const mongo_helper_error_t *e)
{
   char line[700], safe[700];

   snprintf (line,
             sizeof line,
             "%s failed: %s error %d: %s",
             what,
             mongo_helper_category_name (e->category),
             (int) e->code,
             e->message);
   mongo_helper_redact (line, safe, sizeof safe);
   demo_log (MONGO_HELPER_LOG_ERROR, "web_demo", safe, NULL);
}

/* `set_cookie`: a session id to send, "" to clear the cookie, NULL for no
 * Set-Cookie.  HttpOnly (no script reads it), SameSite=Lax (no cross-site
 * POST carries it, so /login and /logout cannot be forged from another
 * site), Secure when configured. */
static enum MHD_Result
reply (struct MHD_Connection *conn, unsigned status, const char *body, const char *set_cookie)
{
   struct MHD_Response *r =
      MHD_create_response_from_buffer (strlen (body), (void *) body, MHD_RESPMEM_MUST_COPY);
   enum MHD_Result ret;

   MHD_add_response_header (r, "Content-Type", "text/plain; charset=utf-8");
   MHD_add_response_header (r, "Cache-Control", "no-store");
   if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
      MHD_add_response_header (
         r, "Allow", strcmp (body, "POST only\n") == 0 ? "POST" : "GET, HEAD");
   }
   if (set_cookie) {
      char cookie[160];
      snprintf (cookie,
                sizeof cookie,
                "sid=%s; Path=/; HttpOnly; SameSite=Lax%s%s",
                set_cookie,
                *set_cookie ? "" : "; Max-Age=0",
                secure_cookie ? "; Secure" : "");
      MHD_add_response_header (r, "Set-Cookie", cookie);
   }
   ret = MHD_queue_response (conn, status, r);
   MHD_destroy_response (r);
   return ret;
}

/* The client learns that something failed, never what: the details (server
 * names, collection names, driver messages) go to the log. */
static enum MHD_Result
fail (struct MHD_Connection *conn, const char *what, const mongo_helper_error_t *e)
{
   log_failure (what, e);
   return reply (conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n", NULL);
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

static const char *
sid_cookie (struct MHD_Connection *conn)
{
   return MHD_lookup_connection_value (conn, MHD_COOKIE_KIND, "sid");
}

/* The request's live session in `sid` and its data in `data` (the caller
 * destroys it), or a new one (`*created`).  No cookie, an expired or a
 * forged one: all NOT_FOUND, all a new session. */
static bool
session_of (struct MHD_Connection *conn,
            char sid[MONGO_HELPER_SESSION_ID_SIZE],
            bson_t *data,
            bool *created,
            mongo_helper_error_t *e)
{
   const char *cookie = sid_cookie (conn);

   *created = false;
   if (mongo_helper_sessions_load_touch (sessions, cookie, data, NULL, e)) {
      snprintf (sid, MONGO_HELPER_SESSION_ID_SIZE, "%s", cookie);
      return true;
   }
   if (e->category != MONGO_HELPER_ERROR_NOT_FOUND) {
      return false;
   }
   *created = true;
   return mongo_helper_sessions_create (sessions, NULL, NULL, sid, e);
}

static enum MHD_Result
home (struct MHD_Connection *conn)
{
   char sid[MONGO_HELPER_SESSION_ID_SIZE] = "";
   char who[64] = "guest", body[600];
   bool new_session;
   bson_t data, page, *set, *meta;
   bson_iter_t it;
   int64_t visits = 0;
   bool computed = false, ok;
   mongo_helper_error_t e;

   ok = session_of (conn, sid, &data, &new_session, &e);
   if (ok && bson_iter_init_find (&it, &data, "visits") && BSON_ITER_HOLDS_NUMBER (&it)) {
      visits = bson_iter_as_int64 (&it);
   }
   if (ok && bson_iter_init_find (&it, &data, "user") && BSON_ITER_HOLDS_UTF8 (&it)) {
      snprintf (who, sizeof who, "%s", bson_iter_utf8 (&it, NULL));
   }
   bson_destroy (&data);
   if (!ok) {
      return fail (conn, "load session", &e);
   }
   visits++;
   set = BCON_NEW ("visits", BCON_INT64 (visits));
   ok = mongo_helper_sessions_set (sessions, sid, set, &e);
   bson_destroy (set);
   if (!ok) {
      return fail (conn, "update session", &e);
   }

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
      log_failure ("queue event", &e);
   }
   bson_destroy (meta);
   snprintf (body,
             sizeof body,
             "%s\nsession: %s (%s)\nvisits in this session: %lld\n"
             "page rendered at %s (%s)\n",
             bson_iter_init_find (&it, &page, "html") ? bson_iter_utf8 (&it, NULL) : "",
             new_session ? "new" : "existing",
             who,
             (long long) visits,
             bson_iter_init_find (&it, &page, "rendered_at") ? bson_iter_utf8 (&it, NULL) : "?",
             computed ? "computed now" : "from the cache");
   bson_destroy (&page);
   return reply (conn, MHD_HTTP_OK, body, new_session ? sid : NULL);
}

/* POST /login: a privilege change, so the session gets a new id (the old
 * one, which an attacker may have planted, stops working) and an owner. */
static enum MHD_Result
login (struct MHD_Connection *conn)
{
   char sid[MONGO_HELPER_SESSION_ID_SIZE], nid[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t data, *set;
   bool created, ok;
   mongo_helper_error_t e;

   ok = session_of (conn, sid, &data, &created, &e);
   bson_destroy (&data);
   if (!ok) {
      return fail (conn, "load session", &e);
   }
   if (!mongo_helper_sessions_regenerate (sessions, sid, nid, &e)) {
      /* NOT_FOUND: a concurrent logout or login won; the client retries. */
      return e.category == MONGO_HELPER_ERROR_NOT_FOUND
                ? reply (conn, MHD_HTTP_CONFLICT, "session changed, try again\n", "")
                : fail (conn, "regenerate session", &e);
   }
   set = BCON_NEW ("user", BCON_UTF8 ("demo-user"));
   ok = mongo_helper_sessions_set_user (sessions, nid, "demo-user", &e) &&
        mongo_helper_sessions_set (sessions, nid, set, &e);
   bson_destroy (set);
   return ok ? reply (conn, MHD_HTTP_OK, "logged in as demo-user\n", nid)
             : fail (conn, "log in", &e);
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
   static int request_marker;
   mongo_helper_error_t e;
   bool post = strcmp (method, "POST") == 0;
   bool get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;

   (void) cls;
   (void) version;
   (void) upload;
   /* libmicrohttpd calls once with the headers, then once per piece of the
    * body, then once more: answer on the last call (bodies are ignored). */
   if (!*state) {
      *state = &request_marker;
      return MHD_YES;
   }
   if (*upload_size != 0) {
      *upload_size = 0;
      return MHD_YES;
   }
   /* State changes only by POST: a link or an image on another site cannot
    * log anybody out (and SameSite=Lax keeps the cookie off cross-site
    * POSTs). */
   if (strcmp (url, "/logout") == 0 || strcmp (url, "/login") == 0) {
      if (!post) {
         return reply (conn, MHD_HTTP_METHOD_NOT_ALLOWED, "POST only\n", NULL);
      }
      if (strcmp (url, "/login") == 0) {
         return login (conn);
      }
      if (!mongo_helper_sessions_delete (sessions, sid_cookie (conn), &e)) {
         return fail (conn, "logout", &e);
      }
      return reply (conn, MHD_HTTP_OK, "logged out\n", "");
   }
   if (!get) {
      return reply (conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n", NULL);
   }
   if (strcmp (url, "/health") == 0) {
      if (mongo_helper_ping (1000, &e)) {
         return reply (conn, MHD_HTTP_OK, "ok\n", NULL);
      }
      log_failure ("health check", &e);
      return reply (conn, MHD_HTTP_SERVICE_UNAVAILABLE, "mongodb unreachable\n", NULL);
   }
   if (strcmp (url, "/events") == 0) {
      return events (conn);
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
   const char *secure;

   /* Handle SIGINT/SIGTERM with sigwait in main; block them before any
    * thread starts so the workers never receive them. */
   sigemptyset (&sigs);
   sigaddset (&sigs, SIGINT);
   sigaddset (&sigs, SIGTERM);
   pthread_sigmask (SIG_BLOCK, &sigs, NULL);

   mongo_helper_set_log_handler (demo_log, MONGO_HELPER_LOG_WARNING, NULL);
   secure_cookie = (secure = getenv ("WEB_DEMO_SECURE_COOKIE")) && strcmp (secure, "1") == 0;
   if (!(sessions = mongo_helper_sessions_new (NULL, &e)) ||
       !(cache = mongo_helper_cache_new (NULL, &e)) ||
       !(eventlog = mongo_helper_eventlog_new (NULL, &e))) {
      log_failure ("start-up", &e);
      goto cleanup;
   }
   /* Set-up at start, so a missing index privilege shows now. */
   if (!mongo_helper_sessions_ensure (sessions, &e) || !mongo_helper_cache_ensure (cache, &e) ||
       !mongo_helper_eventlog_ensure (eventlog, NULL, &e)) {
      log_failure ("set-up", &e);
      goto cleanup;
   }
   mongo_helper_thread_release ();
   mongo_helper_event_writer_options_init (&wo);
   wo.flush_interval_ms = 200;
   if (!(writer = mongo_helper_event_writer_new (eventlog, &wo, &e))) {
      log_failure ("event writer", &e);
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
