/*
 * cli_events.c — mongo-helper events tail: the user event log as JSON
 * lines, optionally following new events (a change stream where the
 * server has one, else polling).
 */
#include <string.h>

#include "mh_cli.h"

/* Events are written with the writer's clock and may be queued a while
 * (the buffered writer), so each poll looks back this far and skips what
 * it already printed. */
#define MH_TAIL_LOOKBACK_MS 10000

typedef struct {
   const mh_cli_t *cli;
   const char *collection;
   const char *user, *type;
   int64_t high_ms; /* newest timestamp printed */
   char **seen;     /* JSON lines printed within the lookback */
   int64_t *seen_ms;
   size_t n_seen, cap_seen;
   int64_t printed;
} mh_tail_t;

static int64_t
event_ms (const bson_t *doc)
{
   bson_iter_t it;

   return bson_iter_init_find (&it, doc, "timestamp") && BSON_ITER_HOLDS_DATE_TIME (&it)
             ? bson_iter_date_time (&it)
             : 0;
}

/* Prints one event unless it was printed already. */
static void
emit (mh_tail_t *t, const bson_t *doc)
{
   char *json = bson_as_relaxed_extended_json (doc, NULL);
   int64_t ms = event_ms (doc);

   for (size_t i = 0; i < t->n_seen; i++) {
      if (strcmp (t->seen[i], json) == 0) {
         bson_free (json);
         return;
      }
   }
   if (!t->cli->quiet) {
      printf ("%s\n", json);
      fflush (stdout);
   }
   t->printed++;
   t->high_ms = ms > t->high_ms ? ms : t->high_ms;
   if (t->n_seen == t->cap_seen) {
      t->cap_seen = t->cap_seen ? 2 * t->cap_seen : 64;
      t->seen = bson_realloc (t->seen, t->cap_seen * sizeof *t->seen);
      t->seen_ms = bson_realloc (t->seen_ms, t->cap_seen * sizeof *t->seen_ms);
   }
   t->seen[t->n_seen] = json;
   t->seen_ms[t->n_seen++] = ms;
}

/* Forgets what is older than the lookback window. */
static void
prune (mh_tail_t *t)
{
   size_t k = 0;

   for (size_t i = 0; i < t->n_seen; i++) {
      if (t->seen_ms[i] >= t->high_ms - MH_TAIL_LOOKBACK_MS) {
         t->seen[k] = t->seen[i];
         t->seen_ms[k++] = t->seen_ms[i];
      } else {
         bson_free (t->seen[i]);
      }
   }
   t->n_seen = k;
}

static void
filter_init (const mh_tail_t *t, bson_t *filter, int64_t since_ms)
{
   bson_t range;

   bson_init (filter);
   if (t->user) {
      BSON_APPEND_UTF8 (filter, "user_id", t->user);
   }
   if (t->type) {
      BSON_APPEND_UTF8 (filter, "event_type", t->type);
   }
   if (since_ms > 0) {
      BSON_APPEND_DOCUMENT_BEGIN (filter, "timestamp", &range);
      BSON_APPEND_DATE_TIME (&range, "$gte", since_ms);
      bson_append_document_end (filter, &range);
   }
}

/* Prints the events since `since_ms` (0: the newest `limit`), oldest
 * first; `limit` 0: all. */
static bool
print_range (mh_tail_t *t, int64_t since_ms, int64_t limit, mongo_helper_error_t *err)
{
   bson_t filter, sort = BSON_INITIALIZER, results;
   mongo_helper_find_opts_t opts = {0};
   bson_iter_t it;
   const bson_t **docs = NULL;
   size_t n = 0;
   bool ok;

   /* Newest first when only the last `limit` are wanted, then reversed. */
   filter_init (t, &filter, since_ms);
   BSON_APPEND_INT32 (&sort, "timestamp", since_ms > 0 ? 1 : -1);
   BSON_APPEND_INT32 (&sort, "_id", since_ms > 0 ? 1 : -1);
   opts.sort = &sort;
   opts.limit = limit;
   ok = mongo_helper_find (NULL, t->collection, &filter, &opts, &results, err);
   if (ok && bson_iter_init (&it, &results)) {
      docs = bson_malloc0 ((bson_count_keys (&results) + 1) * sizeof *docs);
      while (bson_iter_next (&it)) {
         uint32_t len;
         const uint8_t *d;

         if (BSON_ITER_HOLDS_DOCUMENT (&it)) {
            bson_iter_document (&it, &len, &d);
            docs[n++] = bson_new_from_data (d, len);
         }
      }
      for (size_t i = 0; i < n; i++) {
         const bson_t *doc = docs[since_ms > 0 ? i : n - 1 - i];

         if (doc) {
            emit (t, doc);
         }
      }
      for (size_t i = 0; i < n; i++) {
         bson_destroy ((bson_t *) docs[i]);
      }
      bson_free (docs);
   }
   bson_destroy (&filter);
   bson_destroy (&sort);
   bson_destroy (&results);
   return ok;
}

/* ---- --follow ----------------------------------------------------------- */

static bool
on_change (const bson_t *event, void *user_data)
{
   mh_tail_t *t = user_data;
   bson_iter_t it;
   uint32_t len;
   const uint8_t *d;
   bson_t doc;

   if (bson_iter_init_find (&it, event, "fullDocument") && BSON_ITER_HOLDS_DOCUMENT (&it)) {
      bson_iter_document (&it, &len, &d);
      if (bson_init_static (&doc, d, len)) {
         emit (t, &doc);
         prune (t);
      }
   }
   return true;
}

/* Follows with a change stream.  Returns false with `fallback` set when
 * the server has none for this collection (standalone server, time-series
 * collection, a test server without them) and nothing was printed yet. */
static bool
follow_stream (mh_tail_t *t, bool *fallback, mongo_helper_error_t *err)
{
   bson_t pipeline, stage, match;
   mongo_helper_watch_opts_t opts = {0};
   int64_t before = t->printed;
   bool ok;

   bson_init (&pipeline);
   BSON_APPEND_DOCUMENT_BEGIN (&pipeline, "0", &stage);
   BSON_APPEND_DOCUMENT_BEGIN (&stage, "$match", &match);
   BSON_APPEND_UTF8 (&match, "operationType", "insert");
   if (t->user) {
      BSON_APPEND_UTF8 (&match, "fullDocument.user_id", t->user);
   }
   if (t->type) {
      BSON_APPEND_UTF8 (&match, "fullDocument.event_type", t->type);
   }
   bson_append_document_end (&stage, &match);
   bson_append_document_end (&pipeline, &stage);
   opts.pipeline = &pipeline;
   ok = mongo_helper_watch (t->collection, &opts, on_change, t, NULL, err);
   bson_destroy (&pipeline);
   *fallback = !ok && t->printed == before && err->category == MONGO_HELPER_ERROR_SERVER;
   return ok;
}

/* Follows by polling every `interval_ms` with a moving lower bound. */
static bool
follow_poll (mh_tail_t *t, int64_t start_ms, int64_t interval_ms, mongo_helper_error_t *err)
{
   for (;;) {
      int64_t since = (t->high_ms > start_ms ? t->high_ms : start_ms) - MH_TAIL_LOOKBACK_MS;

      if (!print_range (t, since > 0 ? since : 1, 0, err)) {
         return false;
      }
      prune (t);
      mh_cli_sleep_ms (interval_ms);
   }
}

static int
run_tail (mh_cli_t *cli)
{
   mh_tail_t t;
   mongo_helper_eventlog_options_t eo;
   mongo_helper_server_info_t info;
   mongo_helper_error_t err;
   int64_t since_ms = 0, limit = 0, interval = 1000, start;
   const char *v;
   bool ok, fallback = true;
   int rc;

   memset (&t, 0, sizeof t);
   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments (use --user and --type)");
   }
   if ((v = mh_cli_opt (cli, "since")) && !mh_cli_parse_duration (v, &since_ms)) {
      return mh_cli_usage (cli, "--since '%s' is not a duration such as 30s, 15m, 1h or 2d", v);
   }
   if ((v = mh_cli_opt (cli, "limit")) && !mh_cli_parse_int (v, 1, INT32_MAX, &limit)) {
      return mh_cli_usage (cli, "--limit '%s' is not a positive number", v);
   }
   if ((v = mh_cli_opt (cli, "poll-interval")) && !mh_cli_parse_int (v, 10, 3600000, &interval)) {
      return mh_cli_usage (
         cli, "--poll-interval '%s' is not a number of milliseconds (10 or more)", v);
   }
   mongo_helper_eventlog_options_init (&eo);
   t.cli = cli;
   t.collection =
      mh_cli_opt (cli, "events-collection") ? mh_cli_opt (cli, "events-collection") : eo.collection;
   t.user = mh_cli_opt (cli, "user");
   t.type = mh_cli_opt (cli, "type");
   if ((rc = mh_cli_connect (cli)) != MH_EXIT_OK) {
      return rc;
   }
   start = mh_cli_now_ms ();
   /* Without --since: the newest --limit (default 10), like tail(1). */
   ok = print_range (
      &t, since_ms ? start - since_ms : 0, since_ms ? limit : (limit ? limit : 10), &err);
   if (ok && mh_cli_opt (cli, "follow")) {
      /* A standalone server has no change streams: poll at once. */
      bool stream = mongo_helper_server_info (cli->timeout_ms, &info, &err) &&
                    strcmp (info.topology, "Single") != 0;

      if (stream) {
         ok = follow_stream (&t, &fallback, &err);
         if (fallback && !cli->quiet) {
            fprintf (stderr,
                     "mongo-helper events tail: no change stream (%s); polling every %lld ms\n",
                     err.message,
                     (long long) interval);
         }
      }
      if (fallback) {
         ok = follow_poll (&t, start, interval, &err);
      }
   }
   for (size_t i = 0; i < t.n_seen; i++) {
      bson_free (t.seen[i]);
   }
   bson_free (t.seen);
   bson_free (t.seen_ms);
   return ok ? MH_EXIT_OK : mh_cli_fail (cli, &err);
}

static const mh_cli_opt_t tail_opts[] = {
   {"user", 0, "USER", "only this user's events"},
   {"type", 0, "TYPE", "only events of this type"},
   {"since", 0, "DURATION", "every event of the last DURATION (30s, 15m, 1h, 2d), oldest first"},
   {"limit", 'n', "N", "at most N events (default 10 without --since)"},
   {"follow", 'f', NULL, "then print new events as they come, until interrupted"},
   {"poll-interval", 0, "MS", "with --follow and no change stream: poll period (default 1000)"},
   {"events-collection", 0, "NAME", "the event log collection (default user_events)"},
   {NULL, 0, NULL, NULL}};

static const mh_cli_cmd_t events_subs[] = {
   {"tail",
    "[--user USER] [--type TYPE] [--since DURATION] [-n N] [--follow]",
    "print events as JSON lines; --follow for new ones",
    "One event per line, relaxed extended JSON, oldest first: the newest 10\n"
    "(-n), or every event of the last DURATION.\n"
    "--follow uses a change stream on a replica set or sharded cluster, and polls\n"
    "the collection (with a moving lower bound) on a standalone server or where\n"
    "the collection has no change stream (a time-series event log).  Stop it\n"
    "with Ctrl-C or SIGTERM.",
    tail_opts,
    run_tail,
    NULL},
   {NULL, NULL, NULL, NULL, NULL, NULL, NULL}};

const mh_cli_cmd_t mh_cli_events_cmd =
   {"events", "", "read the user event log", NULL, NULL, NULL, events_subs};
