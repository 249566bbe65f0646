/*
 * stream.c — find and aggregate results handed over in chunks (layer 7).
 */
#include "mh_private.h"

/* ---- streaming (find and aggregate) ---- */

/* Hands the `n` documents stored back to back in buf[0..used) (the i-th at
 * offs[i]) to the callback as static bson_t's; returns its verdict. */
static bool
mh_stream_deliver (mh_stream_ctx_t *c,
                   bson_t *chunk,
                   const bson_t **ptrs,
                   const size_t *offs,
                   size_t n,
                   const uint8_t *buf,
                   size_t used)
{
   for (size_t i = 0; i < n; i++) {
      size_t end = i + 1 < n ? offs[i + 1] : used;

      bson_init_static (&chunk[i], buf + offs[i], end - offs[i]);
      ptrs[i] = &chunk[i];
   }
   return c->fn ((const bson_t *const *) ptrs, n, c->user_data);
}

static bool
mh_stream_op (mh_attempt_t *a, void *ctx)
{
   mh_stream_ctx_t *c = ctx;
   bson_t empty = BSON_INITIALIZER, scratch;
   const bson_t *opts = mh_opts_max_time (a, c->opts, &scratch);
   const size_t max_bytes = mh_limit_result_bytes (a->config);
   mongoc_cursor_t *cursor;
   /* A chunk's documents are copied back to back into one buffer (reused
    * for every chunk) and handed out as static bson_t's over it: one
    * allocation per growth instead of a bson_copy() (two mallocs and two
    * frees) per document, which bench/ measured at over half of the
    * stream's client CPU.  The per-document arrays grow with the chunk
    * actually filled, never to a caller's chunk_size up front. */
   bson_t *chunk = NULL;
   const bson_t **ptrs = NULL;
   size_t *offs = NULL;
   size_t slots = 0;
   uint8_t *buf = NULL;
   size_t used = 0, cap = 0;
   const bson_t *doc;
   size_t n = 0;
   bool more = true, ok;

   if (c->pipeline) {
      cursor = mongoc_collection_aggregate (a->coll, MONGOC_QUERY_NONE, c->pipeline, opts, NULL);
   } else {
      cursor =
         mongoc_collection_find_with_opts (a->coll, c->filter ? c->filter : &empty, opts, NULL);
   }
   /* Copies are needed because a cursor's document is only valid until the
    * next call; holding at most chunk_size of them, and at most
    * max_result_bytes of them (a chunk goes early, shorter, rather than
    * pass it), bounds the memory. */
   while (more && mongoc_cursor_next (cursor, &doc)) {
      if (n > 0 && used + doc->len > max_bytes) {
         more = mh_stream_deliver (c, chunk, ptrs, offs, n, buf, used);
         n = 0;
         used = 0;
         if (!more) {
            break;
         }
      }
      if (cap - used < doc->len) {
         while (cap - used < doc->len) {
            /* first guess: a chunk of documents like this one, at
             * least 64 KiB and at most 16 MiB; doubled when short */
            cap = cap                                         ? cap * 2
                  : (size_t) doc->len * c->chunk_size < 65536 ? 65536
                  : (size_t) doc->len * c->chunk_size > (16u << 20)
                     ? (16u << 20)
                     : (size_t) doc->len * c->chunk_size;
         }
         buf = bson_realloc (buf, cap);
      }
      if (n == slots) {
         slots = slots ? (2 * slots < c->chunk_size ? 2 * slots : c->chunk_size)
                       : (c->chunk_size < 64 ? c->chunk_size : 64);
         chunk = bson_realloc (chunk, slots * sizeof *chunk);
         ptrs = bson_realloc (ptrs, slots * sizeof *ptrs);
         offs = bson_realloc (offs, slots * sizeof *offs);
      }
      memcpy (buf + used, bson_get_data (doc), doc->len);
      offs[n++] = used;
      used += doc->len;
      if (n == c->chunk_size) {
         more = mh_stream_deliver (c, chunk, ptrs, offs, n, buf, used);
         n = 0;
         used = 0;
      }
   }
   ok = !mongoc_cursor_error (cursor, &a->error);
   if (ok && more && n > 0) {
      mh_stream_deliver (c, chunk, ptrs, offs, n, buf, used);
   }
   bson_free (buf);
   bson_free (offs);
   bson_free (ptrs);
   bson_free (chunk);
   /* Destroying a cursor that was stopped early sends killCursors, so the
    * server frees its side too. */
   mongoc_cursor_destroy (cursor);
   bson_destroy (&scratch);
   return ok;
}

bool
mh_stream_run (mh_opid_t op, mh_stream_ctx_t *ctx, mongo_helper_error_t *error)
{
   /* Flagged as a write: chunks already handed to the callback cannot be
    * taken back, so the execution path must never repeat the stream. */
   const mh_call_t call = {op, MH_OP_ONCE, ctx->database, ctx->collection, NULL};

   if (!ctx->fn) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the callback is NULL",
                      mh_op_name (op));
   }
   if (ctx->chunk_size == 0 || ctx->chunk_size > MONGO_HELPER_MAX_CHUNK_SIZE) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: chunk_size is %zu: give 1 to %d documents "
                      "(MONGO_HELPER_MAX_CHUNK_SIZE)",
                      mh_op_name (op),
                      ctx->chunk_size,
                      MONGO_HELPER_MAX_CHUNK_SIZE);
   }
   return mh_run (&call, mh_stream_op, ctx, error);
}

bool
mongo_helper_find_stream (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          const mongo_helper_find_opts_t *opts,
                          size_t chunk_size,
                          mongo_helper_chunk_fn fn,
                          void *user_data,
                          mongo_helper_error_t *error)
{
   mh_stream_ctx_t ctx = {database, collection, filter, NULL, NULL, chunk_size, fn, user_data};
   mongo_helper_find_opts_t o;
   bson_t b;
   bool ok;

   if (!mh_target_check ("find_stream", database, collection, error) ||
       (filter && !mh_doc_check ("find_stream", "filter", filter, error))) {
      return false;
   }
   memset (&o, 0, sizeof o);
   if (opts) {
      o = *opts;
   }
   /* A chunk size out of range is refused by mh_stream_run(). */
   if (o.batch_size == 0 && chunk_size <= MONGO_HELPER_MAX_CHUNK_SIZE) {
      o.batch_size = (int32_t) chunk_size;
   }
   if (!mh_find_opts ("find_stream", &o, &b, error)) {
      bson_destroy (&b);
      return false;
   }
   ctx.opts = &b;
   ok = mh_stream_run (MH_OPID_FIND_STREAM, &ctx, error);
   bson_destroy (&b);
   return ok;
}
