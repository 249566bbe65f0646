/*
 * eventlog.c — the user event log (layer 9).
 */
#include "mh_private.h"

/* ---- Event log ---- */

void
mongo_helper_eventlog_options_init (mongo_helper_eventlog_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->collection = "user_events";
   options->retention_s = INT64_C (90) * 24 * 3600;
   options->granularity = "seconds";
   options->lazy_ensure = true;
}

mongo_helper_eventlog_t *
mongo_helper_eventlog_new (const mongo_helper_eventlog_options_t *options,
                           mongo_helper_error_t *error)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_eventlog_t *l;

   mh_error_clear (error);
   mongo_helper_eventlog_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!mh_web_coll_name_ok (o.collection, error)) {
      return NULL;
   }
   if (o.retention_s < 0 || o.retention_s > MONGO_HELPER_EVENTLOG_MAX_RETENTION_S) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "event log option retention_s is %" PRId64 " s: it must be within 0..%" PRId64
               " (MONGO_HELPER_EVENTLOG_MAX_RETENTION_S, the server's limit for "
               "expireAfterSeconds)",
               o.retention_s,
               (int64_t) MONGO_HELPER_EVENTLOG_MAX_RETENTION_S);
      return NULL;
   }
   if (!o.granularity ||
       (strcmp (o.granularity, "seconds") != 0 && strcmp (o.granularity, "minutes") != 0 &&
        strcmp (o.granularity, "hours") != 0)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "event log option granularity must be \"seconds\", \"minutes\" or "
               "\"hours\"");
      return NULL;
   }
   l = bson_malloc0 (sizeof *l);
   l->coll = bson_strdup (o.collection);
   l->granularity = bson_strdup (o.granularity);
   l->retention_s = o.retention_s;
   mh_web_setup_init (&l->setup, o.lazy_ensure);
   return l;
}

void
mongo_helper_eventlog_destroy (mongo_helper_eventlog_t *log)
{
   if (!log) {
      return;
   }
   mh_web_setup_destroy (&log->setup);
   bson_free (log->coll);
   bson_free (log->granularity);
   bson_free (log);
}

typedef struct {
   mongo_helper_eventlog_t *log;
   bool time_series;
} mh_eventlog_ensure_t;

/* Reads the server's major version from buildInfo (0 when unknown). */
static int
mh_server_major (mongoc_client_t *client, bson_error_t *berr, bool *ok)
{
   bson_t *cmd = BCON_NEW ("buildInfo", BCON_INT32 (1));
   bson_t reply;
   bson_iter_t it;
   int major = 0;

   *ok = mongoc_client_command_simple (client, "admin", cmd, NULL, &reply, berr);
   if (*ok && bson_iter_init_find (&it, &reply, "version") && BSON_ITER_HOLDS_UTF8 (&it)) {
      major = atoi (bson_iter_utf8 (&it, NULL));
   }
   bson_destroy (&reply);
   bson_destroy (cmd);
   return major;
}

static bool
mh_eventlog_ensure_op (mh_attempt_t *a, void *ctx)
{
   mh_eventlog_ensure_t *e = ctx;
   mongo_helper_eventlog_t *l = e->log;
   mh_web_index_t ix[2] = {
      {"user_id_1_timestamp_-1", "user_id", 1, "timestamp", -1, -1},
      {"timestamp_ttl", "timestamp", 1, NULL, 0, l->retention_s},
   };
   mh_web_ensure_t ens;
   bool ok;
   int major = mh_server_major (a->client, &a->error, &ok);

   e->time_series = false;
   if (!ok) {
      return false;
   }
   if (major >= 5) {
      /* Time-series collections exist from 5.0; they are created
       * explicitly, and only when the collection does not exist yet (an
       * existing regular one keeps working with the index layout). */
      bson_t *filter = BCON_NEW ("name", BCON_UTF8 (l->coll));
      bson_t opts = BSON_INITIALIZER;
      mongoc_cursor_t *cur;
      const bson_t *doc;
      bool exists = false;

      BSON_APPEND_DOCUMENT (&opts, "filter", filter);
      cur = mongoc_database_find_collections_with_opts (a->db, &opts);
      while (mongoc_cursor_next (cur, &doc)) {
         bson_iter_t it;

         exists = true;
         if (bson_iter_init_find (&it, doc, "type") && BSON_ITER_HOLDS_UTF8 (&it) &&
             strcmp (bson_iter_utf8 (&it, NULL), "timeseries") == 0) {
            e->time_series = true;
         }
      }
      ok = !mongoc_cursor_error (cur, &a->error);
      mongoc_cursor_destroy (cur);
      bson_destroy (filter);
      bson_destroy (&opts);
      if (ok && !exists) {
         bson_t *create = BCON_NEW ("create",
                                    BCON_UTF8 (l->coll),
                                    "timeseries",
                                    "{",
                                    "timeField",
                                    BCON_UTF8 ("timestamp"),
                                    "metaField",
                                    BCON_UTF8 ("user_id"),
                                    "granularity",
                                    BCON_UTF8 (l->granularity),
                                    "}");
         if (l->retention_s > 0) {
            BSON_APPEND_INT64 (create, "expireAfterSeconds", l->retention_s);
         }
         ok = mongoc_database_command_simple (a->db, create, NULL, NULL, &a->error);
         if (!ok && a->error.code == 48) { /* NamespaceExists: a racing ensure */
            ok = true;
         }
         e->time_series = ok;
         bson_destroy (create);
      }
      if (!ok) {
         return false;
      }
   }
   ens.coll = l->coll;
   ens.ix = ix;
   /* A time-series collection expires by its own expireAfterSeconds; a
    * regular one needs the TTL index (none when retention is 0). */
   ens.n = (e->time_series || l->retention_s == 0) ? 1 : 2;
   return mh_web_ensure_op (a, &ens);
}

bool
mongo_helper_eventlog_ensure (mongo_helper_eventlog_t *log,
                              bool *time_series,
                              mongo_helper_error_t *error)
{
   mh_eventlog_ensure_t e = {0};
   mh_call_t call = {
      MH_OPID_EVENTLOG_ENSURE, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, NULL, NULL};

   mh_error_clear (error);
   if (time_series) {
      *time_series = false;
   }
   if (!log) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_eventlog_ensure: log is NULL");
   }
   e.log = log;
   call.collection = log->coll;
   if (!mh_run (&call, mh_eventlog_ensure_op, &e, error)) {
      return false;
   }
   if (time_series) {
      *time_series = e.time_series;
   }
   mh_web_setup_done (&log->setup);
   return true;
}

bool
mh_eventlog_ensure_cb (void *h, mongo_helper_error_t *error)
{
   return mongo_helper_eventlog_ensure (h, NULL, error);
}

/* Builds the stored event (with its own ObjectId, so a retried insert is
 * recognised as a duplicate) after validating every input. */
bson_t *
mh_event_build (const char *user_id,
                const char *event_type,
                const bson_t *metadata,
                int64_t timestamp_ms,
                mongo_helper_error_t *error)
{
   bson_t *doc;
   bson_t empty = BSON_INITIALIZER;
   bson_oid_t oid;
   size_t payload;

   if (!mh_web_str_ok (user_id, "user_id", error) ||
       !mh_web_str_ok (event_type, "event_type", error) ||
       (metadata && !mh_web_doc_ok ("event log", "event metadata", metadata, error))) {
      return NULL;
   }
   /* The whole event within one document, checked here: the buffered
    * writer sends it later, and the server could refuse only its batch. */
   payload = strlen (user_id) + strlen (event_type) + (metadata ? metadata->len : empty.len);
   if (!mh_web_size_ok (payload, "the event (user_id, event_type and metadata)", error)) {
      return NULL;
   }
   if (timestamp_ms < 0) {
      mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "timestamp_ms is negative: pass 0 for now");
      return NULL;
   }
   bson_oid_init (&oid, NULL);
   /* Sized once: the fields' names, types and lengths take under 96 bytes
    * beside the strings and the metadata (the request path allocates once). */
   doc = bson_sized_new (96 + payload);
   BSON_APPEND_OID (doc, "_id", &oid);
   BSON_APPEND_UTF8 (doc, "user_id", user_id);
   BSON_APPEND_UTF8 (doc, "event_type", event_type);
   BSON_APPEND_DOCUMENT (doc, "metadata", metadata ? metadata : &empty);
   mh_web_append_date (doc, "timestamp", timestamp_ms ? timestamp_ms : mh_wall_ms ());
   return doc;
}

bool
mongo_helper_eventlog_log (mongo_helper_eventlog_t *log,
                           const char *user_id,
                           const char *event_type,
                           const bson_t *metadata,
                           int64_t timestamp_ms,
                           mongo_helper_error_t *error)
{
   bson_t *doc;
   mh_call_t call = {MH_OPID_EVENTLOG_LOG, MH_OP_WRITE | MH_OP_CHECKED, NULL, NULL, NULL};
   bool ok;

   mh_error_clear (error);
   if (!log) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "event log handle is NULL");
   }
   doc = mh_event_build (user_id, event_type, metadata, timestamp_ms, error);
   if (!doc) {
      return false;
   }
   ok = mh_web_ready (&log->setup, mh_eventlog_ensure_cb, log, error);
   if (ok) {
      call.collection = log->coll;
      ok = mh_crud_insert_one (&call, doc, error);
   }
   bson_destroy (doc);
   return ok;
}

bool
mongo_helper_eventlog_query (mongo_helper_eventlog_t *log,
                             const mongo_helper_event_query_t *query,
                             bson_t *events_out,
                             int32_t *count,
                             mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t ts;
   bson_t *opts;
   mh_call_t call = {MH_OPID_EVENTLOG_QUERY, MH_OP_READ | MH_OP_CHECKED, NULL, NULL, NULL};
   bool ok;

   mh_error_clear (error);
   if (count) {
      *count = 0;
   }
   if (events_out) {
      bson_init (events_out);
   }
   if (!log || !query || !events_out) {
      bson_destroy (&f);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_eventlog_query: log, query or "
                      "events_out is NULL");
   }
   if (!mh_web_str_ok (query->user_id, "query user_id", error) ||
       (query->event_type && !mh_web_str_ok (query->event_type, "query event_type", error)) ||
       !mh_web_ready (&log->setup, mh_eventlog_ensure_cb, log, error)) {
      bson_destroy (&f);
      return false;
   }
   BSON_APPEND_UTF8 (&f, "user_id", query->user_id);
   if (query->event_type) {
      BSON_APPEND_UTF8 (&f, "event_type", query->event_type);
   }
   if (query->since_ms > 0 || query->until_ms > 0) {
      BSON_APPEND_DOCUMENT_BEGIN (&f, "timestamp", &ts);
      if (query->since_ms > 0) {
         mh_web_append_date (&ts, "$gte", query->since_ms);
      }
      if (query->until_ms > 0) {
         mh_web_append_date (&ts, "$lt", query->until_ms);
      }
      bson_append_document_end (&f, &ts);
   }
   opts = BCON_NEW ("sort",
                    "{",
                    "timestamp",
                    BCON_INT32 (-1),
                    "}",
                    "limit",
                    BCON_INT64 (query->limit > 0 ? query->limit : 100));
   call.collection = log->coll;
   ok = mh_crud_find (&call, &f, opts, events_out, error);
   if (ok && count) {
      *count = (int32_t) bson_count_keys (events_out);
   }
   bson_destroy (opts);
   bson_destroy (&f);
   return ok;
}
