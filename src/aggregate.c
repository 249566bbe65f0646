/*
 * aggregate.c — aggregation pipelines (layer 8).
 */
#include "mh_private.h"

/* ---- aggregation ---- */

static bool
mh_aggregate_opts (const mongo_helper_aggregate_opts_t *o,
                   int32_t default_batch,
                   bson_t *out,
                   mongo_helper_error_t *error)
{
   int32_t batch = o ? o->batch_size : 0;

   bson_init (out);
   if (batch < 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "aggregate: batch_size must not be negative");
   }
   if (o && o->allow_disk_use) {
      BSON_APPEND_BOOL (out, "allowDiskUse", true);
   }
   if (batch == 0) {
      batch = default_batch;
   }
   if (batch > 0) {
      BSON_APPEND_INT32 (out, "batchSize", batch);
   }
   return true;
}

typedef struct {
   const bson_t *pipeline;
   const bson_t *opts;
   bson_t *results;
   size_t max_bytes; /* out: the cap in force */
} mh_aggregate_ctx_t;

static bool
mh_aggregate_op (mh_attempt_t *a, void *ctx)
{
   mh_aggregate_ctx_t *c = ctx;
   bson_t scratch;
   bool ok;

   c->max_bytes = mh_limit_result_bytes (a->config);
   ok = mh_cursor_drain (
      mongoc_collection_aggregate (
         a->coll, MONGOC_QUERY_NONE, c->pipeline, mh_opts_max_time (a, c->opts, &scratch), NULL),
      c->results,
      c->max_bytes,
      &a->error);
   bson_destroy (&scratch);
   return ok;
}

/* A pipeline with a $merge or $out stage writes: it must not be repeated. */
static unsigned
mh_pipeline_flags (const bson_t *pipeline)
{
   bson_iter_t it, stage;

   if (bson_iter_init (&it, pipeline)) {
      while (bson_iter_next (&it)) {
         if (BSON_ITER_HOLDS_DOCUMENT (&it) && bson_iter_recurse (&it, &stage) &&
             bson_iter_next (&stage) &&
             (strcmp (bson_iter_key (&stage), "$out") == 0 ||
              strcmp (bson_iter_key (&stage), "$merge") == 0)) {
            return MH_OP_WRITE;
         }
      }
   }
   return MH_OP_READ;
}

/* aggregate, telling the max_result_bytes in force (for JSON output). */
static bool
mh_aggregate (const char *database,
              const char *collection,
              const bson_t *pipeline,
              const mongo_helper_aggregate_opts_t *opts,
              bson_t *results,
              size_t *max_bytes,
              mongo_helper_error_t *error)
{
   mh_call_t call = {MH_OPID_AGGREGATE, MH_OP_READ, database, collection, NULL};
   mh_aggregate_ctx_t ctx = {pipeline, NULL, results, 0};
   bson_t o;
   bool ok;

   if (!results) {
      mh_error_clear (error);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "aggregate: results is NULL");
   }
   bson_init (results);
   if (!mh_target_check ("aggregate", database, collection, error) ||
       !mh_doc_check ("aggregate", "pipeline", pipeline, error)) {
      return false;
   }
   if (!mh_aggregate_opts (opts, 0, &o, error)) {
      bson_destroy (&o);
      return false;
   }
   ctx.opts = &o;
   call.flags = mh_pipeline_flags (pipeline);
   ok = mh_run (&call, mh_aggregate_op, &ctx, error);
   bson_destroy (&o);
   if (max_bytes) {
      *max_bytes = ctx.max_bytes;
   }
   return ok;
}

bool
mongo_helper_aggregate (const char *database,
                        const char *collection,
                        const bson_t *pipeline,
                        const mongo_helper_aggregate_opts_t *opts,
                        bson_t *results,
                        mongo_helper_error_t *error)
{
   return mh_aggregate (database, collection, pipeline, opts, results, NULL, error);
}

char *
mongo_helper_aggregate_json (const char *database,
                             const char *collection,
                             const char *pipeline_json,
                             const mongo_helper_aggregate_opts_t *opts,
                             mongo_helper_error_t *error)
{
   bson_t *pipeline;
   bson_t results;
   size_t max_bytes = 0;
   char *json = NULL;

   if (!mh_target_check ("aggregate", database, collection, error)) {
      return NULL;
   }
   pipeline = mongo_helper_json_to_bson (pipeline_json, error);
   if (!pipeline) {
      return NULL;
   }
   if (mh_aggregate (database, collection, pipeline, opts, &results, &max_bytes, error)) {
      json = mh_json_array ("aggregate",
                            &results,
                            max_bytes,
                            "read them with aggregate_stream or ask for fewer ($limit)",
                            error);
   }
   bson_destroy (&results);
   bson_destroy (pipeline);
   return json;
}

bool
mongo_helper_aggregate_stream (const char *database,
                               const char *collection,
                               const bson_t *pipeline,
                               const mongo_helper_aggregate_opts_t *opts,
                               size_t chunk_size,
                               mongo_helper_chunk_fn fn,
                               void *user_data,
                               mongo_helper_error_t *error)
{
   mh_stream_ctx_t ctx = {database, collection, NULL, pipeline, NULL, chunk_size, fn, user_data};
   bson_t o;
   bool ok;

   if (!mh_target_check ("aggregate_stream", database, collection, error) ||
       !mh_doc_check ("aggregate_stream", "pipeline", pipeline, error)) {
      return false;
   }
   /* A chunk size out of range is refused by mh_stream_run(). */
   if (!mh_aggregate_opts (
          opts, chunk_size <= MONGO_HELPER_MAX_CHUNK_SIZE ? (int32_t) chunk_size : 0, &o, error)) {
      bson_destroy (&o);
      return false;
   }
   ctx.opts = &o;
   ok = mh_stream_run (MH_OPID_AGGREGATE_STREAM, &ctx, error);
   bson_destroy (&o);
   return ok;
}
