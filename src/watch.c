/*
 * watch.c — change streams (layer 8).
 */
#include "mh_private.h"

/* ---- Change streams ---- */

typedef struct {
   const mongo_helper_watch_opts_t *opts;
   mongo_helper_change_fn fn;
   void *user_data;
   bson_t *token; /* always a valid document */
} mh_watch_ctx_t;

static void
mh_watch_keep_token (mh_watch_ctx_t *c, mongoc_change_stream_t *cs)
{
   const bson_t *t = mongoc_change_stream_get_resume_token (cs);

   if (t && !bson_empty (t)) {
      bson_reinit (c->token);
      bson_concat (c->token, t);
   }
}

static bool
mh_watch_op (mh_attempt_t *a, void *ctx)
{
   mh_watch_ctx_t *c = ctx;
   const mongo_helper_watch_opts_t *o = c->opts;
   mongoc_change_stream_t *cs;
   bson_t wopts = BSON_INITIALIZER;
   bson_t empty = BSON_INITIALIZER;
   const bson_t *ev, *edoc;
   int64_t deadline = 0;
   int32_t await_ms = 1000;
   bool ok = true;

   if (o->full_document_update_lookup) {
      BSON_APPEND_UTF8 (&wopts, "fullDocument", "updateLookup");
   }
   if (o->resume_after) {
      BSON_APPEND_DOCUMENT (&wopts, "resumeAfter", o->resume_after);
   }
   if (o->start_after) {
      BSON_APPEND_DOCUMENT (&wopts, "startAfter", o->start_after);
   }
   if (o->max_await_time_ms > 0) {
      await_ms = o->max_await_time_ms;
   }
   if (o->timeout_ms > 0) {
      deadline = mh_mono_us () + o->timeout_ms * 1000;
      if (o->timeout_ms < await_ms) {
         await_ms = (int32_t) o->timeout_ms; /* never wait past the end */
      }
   }
   BSON_APPEND_INT64 (&wopts, "maxAwaitTimeMS", await_ms);
   if (o->batch_size > 0) {
      BSON_APPEND_INT32 (&wopts, "batchSize", o->batch_size);
   }

   cs = a->coll ? mongoc_collection_watch (a->coll, o->pipeline ? o->pipeline : &empty, &wopts)
                : mongoc_database_watch (a->db, o->pipeline ? o->pipeline : &empty, &wopts);
   for (;;) {
      if (mongoc_change_stream_next (cs, &ev)) {
         mh_watch_keep_token (c, cs);
         if (!c->fn (ev, c->user_data)) {
            break;
         }
      } else {
         /* Also the initial aggregate's error (e.g. 40573 standalone). */
         if (mongoc_change_stream_error_document (cs, &a->error, &edoc)) {
            ok = false;
            break;
         }
         mh_watch_keep_token (c, cs); /* postBatchResumeToken moves on */
      }
      if (deadline && mh_mono_us () >= deadline) {
         break;
      }
   }
   mongoc_change_stream_destroy (cs);
   bson_destroy (&wopts);
   bson_destroy (&empty);
   return ok;
}

bool
mongo_helper_watch (const char *collection,
                    const mongo_helper_watch_opts_t *opts,
                    mongo_helper_change_fn fn,
                    void *user_data,
                    bson_t *resume_token,
                    mongo_helper_error_t *error)
{
   static const char fn_name[] = "mongo_helper_watch";
   mongo_helper_watch_opts_t defaults = {0};
   mh_call_t call = {MH_OPID_WATCH, MH_OP_ONCE, NULL, collection, "(change stream)"};
   mh_watch_ctx_t c;
   bson_t scratch;
   bool ok;

   mh_error_clear (error);
   if (resume_token) {
      bson_init (resume_token);
   }
   if (!opts) {
      opts = &defaults;
   }
   if (!fn) {
      return mh_bad_arg (error, fn_name, "the event callback is NULL");
   }
   if (collection && !mh_check_coll_name (fn_name, collection, error)) {
      return false;
   }
   if (!mh_check_db_name (fn_name, opts->database, error)) {
      return false;
   }
   if (opts->timeout_ms > MONGO_HELPER_MAX_WATCH_TIMEOUT_MS) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: timeout_ms %" PRId64 " is over %d ms (7 days, "
                      "MONGO_HELPER_MAX_WATCH_TIMEOUT_MS): pass 0 to watch until the "
                      "callback says stop",
                      fn_name,
                      opts->timeout_ms,
                      MONGO_HELPER_MAX_WATCH_TIMEOUT_MS);
   }
   if (opts->max_await_time_ms < 0 || opts->max_await_time_ms > MONGO_HELPER_MAX_AWAIT_TIME_MS) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: max_await_time_ms %d is out of range: 0 for 1000 ms, else 1 to %d "
                      "(MONGO_HELPER_MAX_AWAIT_TIME_MS)",
                      fn_name,
                      (int) opts->max_await_time_ms,
                      MONGO_HELPER_MAX_AWAIT_TIME_MS);
   }
   if (opts->batch_size < 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: batch_size %d is negative: 0 for the server's default, else the "
                      "events per batch",
                      fn_name,
                      (int) opts->batch_size);
   }
   if (opts->resume_after && opts->start_after) {
      return mh_bad_arg (error,
                         fn_name,
                         "resume_after and start_after are exclusive: "
                         "pass one token");
   }
   if ((opts->resume_after && bson_empty (opts->resume_after)) ||
       (opts->start_after && bson_empty (opts->start_after))) {
      return mh_bad_arg (error, fn_name, "the resume token is empty");
   }
   if ((opts->pipeline && !mh_doc_check (fn_name, "pipeline", opts->pipeline, error)) ||
       (opts->resume_after && !mh_doc_check (fn_name, "resume token", opts->resume_after, error)) ||
       (opts->start_after && !mh_doc_check (fn_name, "resume token", opts->start_after, error))) {
      return false;
   }
   call.database = opts->database;
   bson_init (&scratch);
   c.opts = opts;
   c.fn = fn;
   c.user_data = user_data;
   c.token = resume_token ? resume_token : &scratch;
   ok = mh_run (&call, mh_watch_op, &c, error);
   bson_destroy (&scratch);
   return ok;
}
