/*
 * bulk.c — batched inserts (layer 8).
 */
#include "mh_private.h"

/* ---- bulk insert ---- */

void
mongo_helper_bulk_result_destroy (mongo_helper_bulk_result_t *result)
{
   if (!result) {
      return;
   }
   for (size_t i = 0; i < result->n_failures; i++) {
      bson_free (result->failures[i].message);
   }
   bson_free (result->failures);
   bson_free (result);
}

typedef struct {
   const bson_t *const *docs; /* this batch */
   size_t n;
   size_t offset; /* index of docs[0] in the caller's array */
   bool ordered;
   mongo_helper_bulk_result_t *result;
   size_t cap;
} mh_bulk_ctx_t;

static void
mh_bulk_record (mh_bulk_ctx_t *c, size_t index, int32_t code, const char *msg)
{
   mongo_helper_bulk_result_t *r = c->result;

   if (r->n_failures == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 8;
      r->failures = bson_realloc (r->failures, c->cap * sizeof *r->failures);
   }
   r->failures[r->n_failures].index = index;
   r->failures[r->n_failures].code = code;
   r->failures[r->n_failures].message = bson_strdup (msg ? msg : "");
   r->n_failures++;
}

static bool
mh_bulk_op (mh_attempt_t *a, void *ctx)
{
   mh_bulk_ctx_t *c = ctx;
   bson_error_t *berr = &a->error;
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (c->ordered));
   mongoc_bulk_operation_t *bulk =
      mongoc_collection_create_bulk_operation_with_opts (a->coll, opts);
   bson_t no_validate; /* mh_docs_check() checked every document */
   bson_t reply;
   bson_iter_t it, errs, one;
   size_t before = c->result->n_failures;
   bool ok = true;

   mh_opts_no_validate (&no_validate);
   for (size_t i = 0; ok && i < c->n; i++) {
      ok = mongoc_bulk_operation_insert_with_opts (bulk, c->docs[i], &no_validate, berr);
   }
   if (!ok) {
      /* The documents were checked before: this is a driver-side refusal
       * (e.g. invalid keys) and nothing of this batch was sent. */
      bson_init (&reply);
   } else {
      ok = mongoc_bulk_operation_execute (bulk, &reply, berr) != 0;
      c->result->inserted += mh_bson_int64 (&reply, "nInserted");
      c->result->batches++;
      /* Per-document failures are the result, not a failure of the call:
       * the documents around them landed and must not be sent again. */
      if (bson_iter_init_find (&it, &reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY (&it) &&
          bson_iter_recurse (&it, &errs)) {
         while (bson_iter_next (&errs)) {
            int64_t index = 0;
            int32_t code = 0;
            const char *msg = NULL;

            if (!BSON_ITER_HOLDS_DOCUMENT (&errs) || !bson_iter_recurse (&errs, &one)) {
               continue;
            }
            while (bson_iter_next (&one)) {
               if (strcmp (bson_iter_key (&one), "index") == 0) {
                  index = bson_iter_as_int64 (&one);
               } else if (strcmp (bson_iter_key (&one), "code") == 0) {
                  code = (int32_t) bson_iter_as_int64 (&one);
               } else if (strcmp (bson_iter_key (&one), "errmsg") == 0 &&
                          BSON_ITER_HOLDS_UTF8 (&one)) {
                  msg = bson_iter_utf8 (&one, NULL);
               }
            }
            mh_bulk_record (c, c->offset + (size_t) index, code, msg);
         }
      }
      if (!ok && c->result->n_failures > before &&
          !(bson_iter_init_find (&it, &reply, "writeConcernErrors") &&
            BSON_ITER_HOLDS_ARRAY (&it) && bson_iter_recurse (&it, &errs) &&
            bson_iter_next (&errs))) {
         ok = true;
      }
   }
   if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   mongoc_bulk_operation_destroy (bulk);
   bson_destroy (opts);
   return ok;
}

bool
mongo_helper_bulk_insert (const char *database,
                          const char *collection,
                          const bson_t *const *docs,
                          size_t n,
                          size_t batch_size,
                          bool ordered,
                          mongo_helper_bulk_result_t **result,
                          mongo_helper_error_t *error)
{
   mh_call_t call = {MH_OPID_BULK_INSERT, MH_OP_WRITE, database, collection, NULL};
   mh_bulk_ctx_t ctx;
   char batch[64], ns[200];
   bool ok = true;

   if (result) {
      *result = NULL;
   }
   if (!mh_target_check ("bulk_insert", database, collection, error)) {
      return false;
   }
   if (batch_size == 0 || batch_size > MONGO_HELPER_MAX_WRITE_BATCH) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "bulk_insert: batch_size is %zu: give the number of documents per "
                      "batch, 1 to %d (MONGO_HELPER_MAX_WRITE_BATCH), e.g. 1000",
                      batch_size,
                      MONGO_HELPER_MAX_WRITE_BATCH);
   }
   /* All or nothing for bad input: checking everything first means a bad
    * document at the end never leaves half the array inserted. */
   if (!mh_docs_check ("bulk_insert", docs, n, error)) {
      return false;
   }
   memset (&ctx, 0, sizeof ctx);
   ctx.ordered = ordered;
   ctx.result = bson_malloc0 (sizeof *ctx.result);
   for (size_t off = 0; off < n; off += batch_size) {
      ctx.docs = docs + off;
      ctx.offset = off;
      ctx.n = n - off < batch_size ? n - off : batch_size;
      call.detail = NULL;
      if (off > 0) {
         /* Only a later batch's failure needs to say which batch it was. */
         bson_snprintf (batch, sizeof batch, "(batch at index %zu)", off);
         call.detail = batch;
      }
      if (!mh_run (&call, mh_bulk_op, &ctx, error)) {
         ok = false;
         break;
      }
      if (ordered && ctx.result->n_failures > 0) {
         break; /* the ordered contract: nothing after the first failure */
      }
   }
   if (ok && ctx.result->n_failures > 0) {
      const mongo_helper_bulk_failure_t *f = &ctx.result->failures[0];
      mh_fail (error,
               f->code == 11000 || f->code == 11001 ? MONGO_HELPER_ERROR_DUPLICATE_KEY
                                                    : MONGO_HELPER_ERROR_SERVER,
               f->code,
               "bulk_insert into %s: %zu of %zu documents failed (%lld inserted); "
               "first, at index %zu: %s",
               mh_ns (ns, sizeof ns, database, collection),
               ctx.result->n_failures,
               n,
               (long long) ctx.result->inserted,
               f->index,
               f->message);
      ok = false;
   }
   if (result) {
      *result = ctx.result;
   } else {
      mongo_helper_bulk_result_destroy (ctx.result);
   }
   return ok;
}
