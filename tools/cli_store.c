/*
 * cli_store.c — mongo-helper ensure-indexes, sessions and cache: the web
 * helpers' collections, operated with the library's own helpers and their
 * default options (collection names from flags).
 */
#include <string.h>

#include "mh_cli.h"

/* The helpers never run ensure behind the operator's back: a read-only
 * database user can count sessions. */

static mongo_helper_sessions_t *
sessions_open (const mh_cli_t *cli, mongo_helper_error_t *err)
{
   mongo_helper_sessions_options_t o;

   mongo_helper_sessions_options_init (&o);
   o.lazy_ensure = false;
   if (mh_cli_opt (cli, "sessions-collection")) {
      o.collection = mh_cli_opt (cli, "sessions-collection");
   }
   return mongo_helper_sessions_new (&o, err);
}

static mongo_helper_cache_t *
cache_open (const mh_cli_t *cli, mongo_helper_error_t *err)
{
   mongo_helper_cache_options_t o;

   mongo_helper_cache_options_init (&o);
   o.lazy_ensure = false;
   if (mh_cli_opt (cli, "cache-collection")) {
      o.collection = mh_cli_opt (cli, "cache-collection");
   }
   return mongo_helper_cache_new (&o, err);
}

/* Prints {"key": value, ...} as JSON (--json) or `text` (unless -q). */
static void
report (const mh_cli_t *cli, const bson_t *doc, const char *text)
{
   if (mh_cli_opt (cli, "json")) {
      mh_cli_print_json (cli, doc);
   } else if (!cli->quiet) {
      printf ("%s\n", text);
   }
}

/* ---- ensure-indexes ----------------------------------------------------- */

static int
run_ensure_indexes (mh_cli_t *cli)
{
   mongo_helper_sessions_options_t so;
   mongo_helper_cache_options_t co;
   mongo_helper_eventlog_options_t eo;
   mongo_helper_sessions_t *sessions = NULL;
   mongo_helper_cache_t *cache = NULL;
   mongo_helper_eventlog_t *events = NULL;
   mongo_helper_error_t err;
   bson_t doc = BSON_INITIALIZER;
   bool time_series = false;
   int rc = MH_EXIT_OK;
   int64_t ms;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments");
   }
   mongo_helper_sessions_options_init (&so);
   mongo_helper_cache_options_init (&co);
   mongo_helper_eventlog_options_init (&eo);
   if (mh_cli_opt (cli, "sessions-collection")) {
      so.collection = mh_cli_opt (cli, "sessions-collection");
   }
   if (mh_cli_opt (cli, "cache-collection")) {
      co.collection = mh_cli_opt (cli, "cache-collection");
   }
   if (mh_cli_opt (cli, "events-collection")) {
      eo.collection = mh_cli_opt (cli, "events-collection");
   }
   if (mh_cli_opt (cli, "events-granularity")) {
      eo.granularity = mh_cli_opt (cli, "events-granularity");
   }
   if (mh_cli_opt (cli, "events-retention")) {
      if (!mh_cli_parse_duration (mh_cli_opt (cli, "events-retention"), &ms)) {
         return mh_cli_usage (cli, "--events-retention is a duration such as 90d, 12h or 30m");
      }
      eo.retention_s = ms / 1000;
   }
   if (!(sessions = mongo_helper_sessions_new (&so, &err)) ||
       !(cache = mongo_helper_cache_new (&co, &err)) ||
       !(events = mongo_helper_eventlog_new (&eo, &err))) {
      rc = mh_cli_fail (cli, &err);
      goto done;
   }
   if ((rc = mh_cli_connect (cli)) != MH_EXIT_OK) {
      goto done;
   }
   if (!mongo_helper_sessions_ensure (sessions, &err) || !mongo_helper_cache_ensure (cache, &err) ||
       !mongo_helper_eventlog_ensure (events, &time_series, &err)) {
      rc = mh_cli_fail (cli, &err);
      goto done;
   }
   BSON_APPEND_UTF8 (&doc, "sessions", so.collection);
   BSON_APPEND_UTF8 (&doc, "cache", co.collection);
   BSON_APPEND_UTF8 (&doc, "events", eo.collection);
   BSON_APPEND_BOOL (&doc, "events_time_series", time_series);
   if (mh_cli_opt (cli, "json")) {
      mh_cli_print_json (cli, &doc);
   } else if (!cli->quiet) {
      printf ("sessions: %s ready (TTL on expiresAt, index on userId)\n", so.collection);
      printf ("cache:    %s ready (TTL on expiresAt)\n", co.collection);
      printf ("events:   %s ready (%s, index on user_id + timestamp)\n",
              eo.collection,
              time_series ? "time-series collection" : "TTL on timestamp");
   }
done:
   bson_destroy (&doc);
   mongo_helper_eventlog_destroy (events);
   mongo_helper_cache_destroy (cache);
   mongo_helper_sessions_destroy (sessions);
   return rc;
}

static const mh_cli_opt_t ensure_opts[] = {
   {"sessions-collection", 0, "NAME", "the sessions collection (default sessions)"},
   {"cache-collection", 0, "NAME", "the cache collection (default cache)"},
   {"events-collection", 0, "NAME", "the event log collection (default user_events)"},
   {"events-retention", 0, "DURATION", "how long events are kept (default 90d)"},
   {"events-granularity", 0, "G", "time-series granularity: seconds (default), minutes, hours"},
   {"json", 0, NULL, "one JSON object: the collections, events_time_series"},
   {NULL, 0, NULL, NULL}};

const mh_cli_cmd_t mh_cli_ensure_indexes_cmd = {
   "ensure-indexes",
   "[--sessions-collection NAME] [--cache-collection NAME] [--events-collection NAME] "
   "[--events-retention DURATION] [--events-granularity G] [--json]",
   "create the sessions, cache and event-log indexes (once, at deploy time)",
   "Runs mongo_helper_sessions_ensure, _cache_ensure and _eventlog_ensure with\n"
   "the helpers' default options, or the names given, so the application can\n"
   "run with lazy_ensure = false and a user without index privileges.  On\n"
   "MongoDB 5.0 and later a new event log is a time-series collection.",
   ensure_opts,
   run_ensure_indexes,
   NULL};

/* ---- sessions ----------------------------------------------------------- */

static int
run_sessions_count (mh_cli_t *cli)
{
   const char *user = mh_cli_opt (cli, "user");
   mongo_helper_sessions_t *s;
   mongo_helper_error_t err;
   int64_t n = 0;
   int rc;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments (the user goes in --user)");
   }
   if (!(s = sessions_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) == MH_EXIT_OK) {
      if (mongo_helper_sessions_count (s, user, &n, &err)) {
         bson_t doc = BSON_INITIALIZER;
         char text[32];

         if (user) {
            BSON_APPEND_UTF8 (&doc, "user", user);
         }
         BSON_APPEND_INT64 (&doc, "live_sessions", n);
         snprintf (text, sizeof text, "%lld", (long long) n);
         report (cli, &doc, text);
         bson_destroy (&doc);
      } else {
         rc = mh_cli_fail (cli, &err);
      }
   }
   mongo_helper_sessions_destroy (s);
   return rc;
}

static int
run_sessions_destroy_user (mh_cli_t *cli)
{
   mongo_helper_sessions_t *s;
   mongo_helper_error_t err;
   int64_t n = 0;
   int rc;

   if (cli->n_args != 1) {
      return mh_cli_usage (cli, "needs exactly one USER");
   }
   if (!(s = sessions_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) == MH_EXIT_OK) {
      if (mongo_helper_sessions_delete_user (s, cli->args[0], &n, &err)) {
         bson_t doc = BSON_INITIALIZER;
         char text[320];

         BSON_APPEND_UTF8 (&doc, "user", cli->args[0]);
         BSON_APPEND_INT64 (&doc, "deleted", n);
         snprintf (text, sizeof text, "%lld sessions of %s deleted", (long long) n, cli->args[0]);
         report (cli, &doc, text);
         bson_destroy (&doc);
      } else {
         rc = mh_cli_fail (cli, &err);
      }
   }
   mongo_helper_sessions_destroy (s);
   return rc;
}

/* --batch N of a rekey, into *batch (0 when absent); false after a usage
 * error. */
static bool
rekey_batch (mh_cli_t *cli, size_t *batch, int *rc)
{
   int64_t n = 0;

   if (cli->n_args) {
      *rc = mh_cli_usage (cli, "takes no arguments");
      return false;
   }
   if (mh_cli_opt (cli, "batch") &&
       !mh_cli_parse_int (mh_cli_opt (cli, "batch"), 1, MONGO_HELPER_REKEY_MAX_BATCH, &n)) {
      *rc = mh_cli_usage (
         cli, "--batch is a number of records from 1 to %d", MONGO_HELPER_REKEY_MAX_BATCH);
      return false;
   }
   *batch = (size_t) n;
   return true;
}

/* Prints what a rekey changed; on a failure after some records were
 * written, says that too (running it again resumes). */
static int
rekey_report (mh_cli_t *cli, bool ok, int64_t changed, const mongo_helper_error_t *err)
{
   bson_t doc = BSON_INITIALIZER;
   char text[64];

   if (!ok) {
      if (changed > 0 && !cli->quiet) {
         fprintf (stderr,
                  "mongo-helper: %lld records were re-encrypted before the failure\n",
                  (long long) changed);
      }
      return mh_cli_fail (cli, err);
   }
   BSON_APPEND_INT64 (&doc, "changed", changed);
   snprintf (text, sizeof text, "%lld re-encrypted with the current key", (long long) changed);
   report (cli, &doc, text);
   bson_destroy (&doc);
   return MH_EXIT_OK;
}

static int
run_sessions_rekey (mh_cli_t *cli)
{
   mongo_helper_sessions_t *s;
   mongo_helper_error_t err;
   size_t batch;
   int64_t changed = 0;
   int rc;

   if (!rekey_batch (cli, &batch, &rc)) {
      return rc;
   }
   if (!(s = sessions_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) == MH_EXIT_OK) {
      bool ok = mongo_helper_sessions_rekey (s, batch, &changed, &err);

      rc = rekey_report (cli, ok, changed, &err);
   }
   mongo_helper_sessions_destroy (s);
   return rc;
}

#define MH_SESSIONS_COLLECTION_OPT                                                   \
   {                                                                                 \
      "sessions-collection", 0, "NAME", "the sessions collection (default sessions)" \
   }

static const mh_cli_opt_t count_opts[] = {{"user", 0, "USER", "count only this user's sessions"},
                                          MH_SESSIONS_COLLECTION_OPT,
                                          {"json", 0, NULL, "one JSON object: user, live_sessions"},
                                          {NULL, 0, NULL, NULL}};

static const mh_cli_opt_t destroy_opts[] = {MH_SESSIONS_COLLECTION_OPT,
                                            {"json", 0, NULL, "one JSON object: user, deleted"},
                                            {NULL, 0, NULL, NULL}};

static const mh_cli_opt_t sessions_rekey_opts[] = {
   {"batch", 0, "N", "records per bulk write (default 500)"},
   MH_SESSIONS_COLLECTION_OPT,
   {"json", 0, NULL, "one JSON object: changed"},
   {NULL, 0, NULL, NULL}};

/* What both rekey commands do, after their first lines. */
#define MH_REKEY_DETAILS                                                              \
   "Each record is written only if nobody changed it meanwhile; running it again\n"   \
   "resumes.  Records that do not open are left as they are and counted: exit 1\n"    \
   "(integrity) after the pass.  Exit 3 when no key ring is configured.  Remove an\n" \
   "old key from the ring only after a rekey changed everything."

/* One entry per sub-command: a new one is one more line. */
static const mh_cli_cmd_t sessions_subs[] = {
   {"count",
    "[--user USER] [--sessions-collection NAME] [--json]",
    "count live sessions, of one user with --user",
    NULL,
    count_opts,
    run_sessions_count,
    NULL},
   {"destroy-user",
    "USER [--sessions-collection NAME] [--json]",
    "delete every session of USER (log out everywhere)",
    NULL,
    destroy_opts,
    run_sessions_destroy_user,
    NULL},
   {"rekey",
    "[--batch N] [--sessions-collection NAME] [--json]",
    "re-encrypt every session with the current key",
    "Seals every session again with the current (first) key of the ring\n"
    "session_keys / MONGO_SESSION_KEYS or session_key_file / MONGO_SESSION_KEY_FILE\n"
    "gives: those of an older key of the ring and those stored before encryption\n"
    "was turned on.\n" MH_REKEY_DETAILS,
    sessions_rekey_opts,
    run_sessions_rekey,
    NULL},
   {NULL, NULL, NULL, NULL, NULL, NULL, NULL}};

const mh_cli_cmd_t mh_cli_sessions_cmd = {
   "sessions",
   "",
   "count, end or re-encrypt the sessions of the session store",
   NULL,
   NULL,
   NULL,
   sessions_subs};

/* ---- cache -------------------------------------------------------------- */

/* The JSON of one value: a document as itself, anything else (bytes,
 * counters) as libbson writes it inside a document. */
static char *
value_json (const bson_iter_t *it)
{
   bson_t wrap = BSON_INITIALIZER;
   char *json, *out;
   size_t len;

   if (BSON_ITER_HOLDS_DOCUMENT (it)) {
      uint32_t n;
      const uint8_t *d;
      bson_t v;

      bson_iter_document (it, &n, &d);
      if (bson_init_static (&v, d, n)) {
         bson_destroy (&wrap);
         return bson_as_relaxed_extended_json (&v, NULL);
      }
   }
   bson_append_iter (&wrap, "v", 1, it);
   json = bson_as_relaxed_extended_json (&wrap, NULL);
   bson_destroy (&wrap);
   /* "{ "v" : VALUE }" */
   len = strlen (json);
   out = bson_strndup (json + 8, len > 10 ? len - 10 : 0);
   bson_free (json);
   return out;
}

static int
run_cache_get (mh_cli_t *cli)
{
   mongo_helper_cache_t *c;
   mongo_helper_error_t err;
   bson_t found;
   bson_iter_t it;
   int rc;

   if (cli->n_args != 1) {
      return mh_cli_usage (cli, "needs exactly one KEY");
   }
   if (!(c = cache_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) != MH_EXIT_OK) {
      mongo_helper_cache_destroy (c);
      return rc;
   }
   /* get_many reads a value of any kind (document, bytes, counter). */
   if (!mongo_helper_cache_get_many (c, (const char *const *) cli->args, 1, &found, &err)) {
      rc = mh_cli_fail (cli, &err);
   } else if (!bson_iter_init_find (&it, &found, cli->args[0])) {
      mongo_helper_error_t nf = {MONGO_HELPER_ERROR_NOT_FOUND, 0, ""};

      snprintf (
         nf.message, sizeof nf.message, "cache key '%s' is missing or expired", cli->args[0]);
      rc = mh_cli_fail (cli, &nf);
   } else if (mh_cli_opt (cli, "json")) {
      bson_t doc = BSON_INITIALIZER;

      BSON_APPEND_UTF8 (&doc, "key", cli->args[0]);
      bson_append_iter (&doc, "value", 5, &it);
      mh_cli_print_json (cli, &doc);
      bson_destroy (&doc);
   } else if (!cli->quiet) {
      char *json = value_json (&it);
      printf ("%s\n", json);
      bson_free (json);
   }
   bson_destroy (&found);
   mongo_helper_cache_destroy (c);
   return rc;
}

static int
run_cache_delete (mh_cli_t *cli)
{
   mongo_helper_cache_t *c;
   mongo_helper_error_t err;
   bool deleted = false;
   int rc;

   if (cli->n_args != 1) {
      return mh_cli_usage (cli, "needs exactly one KEY");
   }
   if (!(c = cache_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) == MH_EXIT_OK) {
      if (mongo_helper_cache_delete (c, cli->args[0], &deleted, &err)) {
         bson_t doc = BSON_INITIALIZER;

         BSON_APPEND_UTF8 (&doc, "key", cli->args[0]);
         BSON_APPEND_BOOL (&doc, "deleted", deleted);
         report (cli, &doc, deleted ? "deleted" : "not found (nothing deleted)");
         bson_destroy (&doc);
      } else {
         rc = mh_cli_fail (cli, &err);
      }
   }
   mongo_helper_cache_destroy (c);
   return rc;
}

static int
run_cache_clear (mh_cli_t *cli)
{
   mongo_helper_cache_t *c;
   mongo_helper_error_t err;
   int rc;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments");
   }
   if (mh_cli_opt (cli, "prefix")) {
      return mh_cli_usage (cli,
                           "--prefix is not supported: the library's cache API clears every "
                           "entry or one key (mongo_helper_cache_clear, _delete), not a prefix");
   }
   if (!mh_cli_opt (cli, "yes")) {
      return mh_cli_usage (cli, "deletes every cache entry: add --yes to confirm");
   }
   if (!(c = cache_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) == MH_EXIT_OK) {
      if (mongo_helper_cache_clear (c, &err)) {
         bson_t doc = BSON_INITIALIZER;

         BSON_APPEND_BOOL (&doc, "cleared", true);
         report (cli, &doc, "cleared");
         bson_destroy (&doc);
      } else {
         rc = mh_cli_fail (cli, &err);
      }
   }
   mongo_helper_cache_destroy (c);
   return rc;
}

static int
run_cache_rekey (mh_cli_t *cli)
{
   mongo_helper_cache_t *c;
   mongo_helper_error_t err;
   size_t batch;
   int64_t changed = 0;
   int rc;

   if (!rekey_batch (cli, &batch, &rc)) {
      return rc;
   }
   if (!(c = cache_open (cli, &err))) {
      return mh_cli_fail (cli, &err);
   }
   if ((rc = mh_cli_connect (cli)) == MH_EXIT_OK) {
      bool ok = mongo_helper_cache_rekey (c, batch, &changed, &err);

      rc = rekey_report (cli, ok, changed, &err);
   }
   mongo_helper_cache_destroy (c);
   return rc;
}

#define MH_CACHE_COLLECTION_OPT                                             \
   {                                                                        \
      "cache-collection", 0, "NAME", "the cache collection (default cache)" \
   }

static const mh_cli_opt_t get_opts[] = {MH_CACHE_COLLECTION_OPT,
                                        {"json", 0, NULL, "one JSON object: key, value"},
                                        {NULL, 0, NULL, NULL}};

static const mh_cli_opt_t delete_opts[] = {MH_CACHE_COLLECTION_OPT,
                                           {"json", 0, NULL, "one JSON object: key, deleted"},
                                           {NULL, 0, NULL, NULL}};

static const mh_cli_opt_t clear_opts[] = {
   {"yes", 0, NULL, "confirm: every entry is deleted"},
   {"prefix", 0, "P", "not supported (usage error): the cache API has no prefix clear"},
   MH_CACHE_COLLECTION_OPT,
   {"json", 0, NULL, "one JSON object: cleared"},
   {NULL, 0, NULL, NULL}};

static const mh_cli_opt_t cache_rekey_opts[] = {
   {"batch", 0, "N", "records per bulk write (default 500)"},
   MH_CACHE_COLLECTION_OPT,
   {"json", 0, NULL, "one JSON object: changed"},
   {NULL, 0, NULL, NULL}};

static const mh_cli_cmd_t cache_subs[] = {
   {"get",
    "KEY [--cache-collection NAME] [--json]",
    "print the live value of KEY as JSON",
    "A document, a counter or bytes, as relaxed extended JSON.  Exit 1 (not_found)\n"
    "when KEY is missing or expired.",
    get_opts,
    run_cache_get,
    NULL},
   {"delete",
    "KEY [--cache-collection NAME] [--json]",
    "delete KEY",
    "Says whether KEY existed; exit 0 either way.",
    delete_opts,
    run_cache_delete,
    NULL},
   {"clear",
    "--yes [--cache-collection NAME] [--json]",
    "delete every cache entry",
    "The collection and its indexes stay.  --yes is required.  There is no\n"
    "--prefix: the library's cache API clears everything or one key, so --prefix\n"
    "is a usage error (exit 2).",
    clear_opts,
    run_cache_clear,
    NULL},
   {"rekey",
    "[--batch N] [--cache-collection NAME] [--json]",
    "re-encrypt every cached value with the current key",
    "Seals every cached document and bytes value again with the current (first) key\n"
    "of the ring cache_keys / MONGO_CACHE_KEYS or cache_key_file /\n"
    "MONGO_CACHE_KEY_FILE gives: those of an older key of the ring and those stored\n"
    "before encryption was turned on.  Counters stay clear.\n" MH_REKEY_DETAILS,
    cache_rekey_opts,
    run_cache_rekey,
    NULL},
   {NULL, NULL, NULL, NULL, NULL, NULL, NULL}};

const mh_cli_cmd_t mh_cli_cache_cmd =
   {"cache", "", "read, delete, clear or re-encrypt cache entries", NULL, NULL, NULL, cache_subs};
