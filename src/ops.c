/*
 * ops.c — the document operations every area above runs through mh_run:
 * find, insert, update, delete, count, find-and-modify and distinct, with
 * arguments already checked by their callers (layer 7, shared).
 */
#include "mh_private.h"

typedef struct {
   const bson_t *filter;
   const bson_t *opts;
   bool first_only; /* stop at the first document */
   bson_t *results; /* array */
} mh_find_ctx_t;

static bool
mh_find_op (mh_attempt_t *a, void *ctx)
{
   mh_find_ctx_t *c = ctx;
   bson_t empty = BSON_INITIALIZER;
   mongoc_cursor_t *cursor =
      mongoc_collection_find_with_opts (a->coll, c->filter ? c->filter : &empty, c->opts, NULL);
   const bson_t *doc;
   bool ok;

   if (c->first_only) {
      /* With limit 1 the server closed the cursor with the first batch, so
       * a second mongoc_cursor_next() would only confirm the end. */
      bson_reinit (c->results);
      if (mongoc_cursor_next (cursor, &doc)) {
         mh_array_append (c->results, 0, doc);
      }
      ok = !mongoc_cursor_error (cursor, &a->error);
      mongoc_cursor_destroy (cursor);
   } else {
      ok = mh_cursor_drain (cursor, c->results, &a->error);
   }
   return ok;
}

bool
mh_crud_find (const mh_call_t *call,
              const bson_t *filter,
              const bson_t *opts,
              bool first_only,
              bson_t *results,
              mongo_helper_error_t *error)
{
   mh_find_ctx_t ctx = {filter, opts, first_only, results};

   return mh_run (call, mh_find_op, &ctx, error);
}

bool
mh_crud_find_one (const mh_call_t *call,
                  const bson_t *filter,
                  const bson_t *opts,
                  bson_t *doc,
                  bool *found,
                  mongo_helper_error_t *error)
{
   bson_t results = BSON_INITIALIZER;
   bson_iter_t it;
   bool ok = mh_crud_find (call, filter, opts, true, &results, error);

   *found = false;
   bson_reinit (doc);
   if (ok && bson_iter_init (&it, &results) && bson_iter_next (&it) &&
       BSON_ITER_HOLDS_DOCUMENT (&it)) {
      const uint8_t *data;
      uint32_t len;
      bson_t one;

      bson_iter_document (&it, &len, &data);
      if (bson_init_static (&one, data, len)) {
         bson_concat (doc, &one);
         *found = true;
      }
   }
   bson_destroy (&results);
   return ok;
}

typedef struct {
   const bson_t *doc;
} mh_insert_ctx_t;

static bool
mh_insert_one_op (mh_attempt_t *a, void *ctx)
{
   mh_insert_ctx_t *c = ctx;
   bson_t reply;
   bool ok = mongoc_collection_insert_one (a->coll, c->doc, NULL, &reply, &a->error);

   if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   return ok;
}

bool
mh_crud_insert_one (const mh_call_t *call, const bson_t *doc, mongo_helper_error_t *error)
{
   mh_insert_ctx_t ctx = {doc};

   return mh_run (call, mh_insert_one_op, &ctx, error);
}

/* The driver would add an _id too, but would not tell us which: making it
 * here is what lets the caller learn it.  Returns NULL when `doc` has one
 * (use `doc` itself), else a copy with a new ObjectId first.  `id` (may be
 * NULL) is left on the _id of the document to insert. */
bson_t *
mh_doc_with_id (const bson_t *doc, bson_iter_t *id)
{
   bson_iter_t it;
   bson_t *with_id;
   bson_oid_t oid;

   if (bson_iter_init_find (&it, doc, "_id")) {
      if (id) {
         *id = it;
      }
      return NULL;
   }
   bson_oid_init (&oid, NULL);
   with_id = bson_sized_new (doc->len + 20);
   BSON_APPEND_OID (with_id, "_id", &oid);
   bson_concat (with_id, doc);
   if (id) {
      bson_iter_init_find (id, with_id, "_id");
   }
   return with_id;
}

typedef struct {
   const bson_t **docs;
   size_t n;
   bool ordered;
   int64_t inserted;
} mh_insert_many_ctx_t;

static bool
mh_insert_many_op (mh_attempt_t *a, void *ctx)
{
   mh_insert_many_ctx_t *c = ctx;
   bson_t opts = BSON_INITIALIZER;
   bson_t reply;
   bool ok;

   BSON_APPEND_BOOL (&opts, "ordered", c->ordered);
   ok = mongoc_collection_insert_many (a->coll, c->docs, c->n, &opts, &reply, &a->error);
   c->inserted = mh_bson_int64 (&reply, "insertedCount");
   if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   bson_destroy (&opts);
   return ok;
}

bool
mh_crud_insert_many (const mh_call_t *call,
                     const bson_t *const *docs,
                     size_t n,
                     bool ordered,
                     int64_t *inserted,
                     mongo_helper_error_t *error)
{
   /* libmongoc's prototype lacks the inner const. */
   mh_insert_many_ctx_t ctx = {(const bson_t **) docs, n, ordered, 0};
   bool ok = mh_run (call, mh_insert_many_op, &ctx, error);

   if (inserted) {
      *inserted = ctx.inserted;
   }
   return ok;
}

typedef struct {
   mh_update_kind_t kind;
   const bson_t *filter;
   const bson_t *update;
   bool upsert;
   mongo_helper_update_result_t *result;
} mh_update_ctx_t;

void
mh_update_result_reset (mongo_helper_update_result_t *result)
{
   if (result) {
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

static bool
mh_update_op (mh_attempt_t *a, void *ctx)
{
   mh_update_ctx_t *c = ctx;
   bson_t opts = BSON_INITIALIZER;
   bson_t reply;
   bson_iter_t it;
   bool ok;

   if (c->upsert) {
      BSON_APPEND_BOOL (&opts, "upsert", true);
   }
   switch (c->kind) {
   case MH_UPDATE_ONE:
      ok = mongoc_collection_update_one (a->coll, c->filter, c->update, &opts, &reply, &a->error);
      break;
   case MH_UPDATE_MANY:
      ok = mongoc_collection_update_many (a->coll, c->filter, c->update, &opts, &reply, &a->error);
      break;
   default:
      ok = mongoc_collection_replace_one (a->coll, c->filter, c->update, &opts, &reply, &a->error);
      break;
   }
   if (ok && c->result) {
      mongo_helper_update_result_cleanup (c->result);
      c->result->matched = mh_bson_int64 (&reply, "matchedCount");
      c->result->modified = mh_bson_int64 (&reply, "modifiedCount");
      c->result->upserted = mh_bson_int64 (&reply, "upsertedCount");
      if (bson_iter_init_find (&it, &reply, "upsertedId")) {
         bson_value_copy (bson_iter_value (&it), &c->result->upserted_id);
         c->result->upserted = 1;
      }
   } else if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   bson_destroy (&opts);
   return ok;
}

bool
mh_crud_update (const mh_call_t *call,
                mh_update_kind_t kind,
                const bson_t *filter,
                const bson_t *update,
                bool upsert,
                mongo_helper_update_result_t *result,
                mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {kind, filter, update, upsert, result};

   mh_update_result_reset (result);
   return mh_run (call, mh_update_op, &ctx, error);
}

typedef struct {
   const bson_t *filter;
   bool many;
   int64_t deleted;
} mh_delete_ctx_t;

static bool
mh_delete_op (mh_attempt_t *a, void *ctx)
{
   mh_delete_ctx_t *c = ctx;
   bson_t reply;
   bool ok = c->many ? mongoc_collection_delete_many (a->coll, c->filter, NULL, &reply, &a->error)
                     : mongoc_collection_delete_one (a->coll, c->filter, NULL, &reply, &a->error);

   c->deleted = mh_bson_int64 (&reply, "deletedCount");
   if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   return ok;
}

bool
mh_crud_delete (const mh_call_t *call,
                const bson_t *filter,
                bool many,
                int64_t *deleted,
                mongo_helper_error_t *error)
{
   mh_delete_ctx_t ctx = {filter, many, 0};
   bool ok = mh_run (call, mh_delete_op, &ctx, error);

   if (deleted) {
      *deleted = ok ? ctx.deleted : 0;
   }
   return ok;
}

typedef struct {
   const bson_t *filter; /* NULL: estimated count */
   const bson_t *opts;
   int64_t count;
} mh_count_ctx_t;

static bool
mh_count_op (mh_attempt_t *a, void *ctx)
{
   mh_count_ctx_t *c = ctx;

   c->count =
      c->filter
         ? mongoc_collection_count_documents (a->coll, c->filter, c->opts, NULL, NULL, &a->error)
         : mongoc_collection_estimated_document_count (a->coll, c->opts, NULL, NULL, &a->error);
   return c->count >= 0;
}

bool
mh_crud_count (const mh_call_t *call,
               const bson_t *filter,
               const bson_t *opts,
               int64_t *count,
               mongo_helper_error_t *error)
{
   mh_count_ctx_t ctx = {filter, opts, 0};
   bool ok = mh_run (call, mh_count_op, &ctx, error);

   *count = ok ? ctx.count : 0;
   return ok;
}

typedef struct {
   const bson_t *filter;
   const bson_t *update; /* NULL with MH_FAM_REMOVE */
   const bson_t *sort;
   unsigned flags;
   bson_t *doc;
   bool found;
} mh_fam_ctx_t;

static bool
mh_fam_op (mh_attempt_t *a, void *ctx)
{
   mh_fam_ctx_t *c = ctx;
   mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new ();
   mongoc_find_and_modify_flags_t f = MONGOC_FIND_AND_MODIFY_NONE;
   bson_t reply;
   bson_iter_t it;
   bool ok;

   if (c->flags & MH_FAM_REMOVE) {
      f |= MONGOC_FIND_AND_MODIFY_REMOVE;
   } else {
      mongoc_find_and_modify_opts_set_update (fam, c->update);
   }
   if (c->flags & MH_FAM_UPSERT) {
      f |= MONGOC_FIND_AND_MODIFY_UPSERT;
   }
   if (c->flags & MH_FAM_RETURN_NEW) {
      f |= MONGOC_FIND_AND_MODIFY_RETURN_NEW;
   }
   mongoc_find_and_modify_opts_set_flags (fam, f);
   if (c->sort) {
      mongoc_find_and_modify_opts_set_sort (fam, c->sort);
   }
   c->found = false;
   bson_reinit (c->doc);
   ok = mongoc_collection_find_and_modify_with_opts (a->coll, c->filter, fam, &reply, &a->error);
   if (ok && bson_iter_init_find (&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT (&it)) {
      uint32_t len;
      const uint8_t *data;
      bson_t v;

      bson_iter_document (&it, &len, &data);
      if (bson_init_static (&v, data, len)) {
         bson_concat (c->doc, &v);
         c->found = true;
      }
   } else if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   mongoc_find_and_modify_opts_destroy (fam);
   return ok;
}

bool
mh_crud_find_and_modify (const mh_call_t *call,
                         const bson_t *filter,
                         const bson_t *update,
                         const bson_t *sort,
                         unsigned flags,
                         bson_t *doc,
                         bool *found,
                         mongo_helper_error_t *error)
{
   mh_fam_ctx_t ctx = {filter, update, sort, flags, doc, false};
   bool ok = mh_run (call, mh_fam_op, &ctx, error);

   *found = ok && ctx.found;
   return ok;
}

typedef struct {
   const bson_t *command;
   bson_t *values;
} mh_distinct_ctx_t;

static bool
mh_distinct_op (mh_attempt_t *a, void *ctx)
{
   mh_distinct_ctx_t *c = ctx;
   bson_t reply;
   bson_iter_t it, child;
   uint32_t i = 0;
   bool ok =
      mongoc_collection_read_command_with_opts (a->coll, c->command, NULL, NULL, &reply, &a->error);

   bson_reinit (c->values);
   if (ok && bson_iter_init_find (&it, &reply, "values") && BSON_ITER_HOLDS_ARRAY (&it) &&
       bson_iter_recurse (&it, &child)) {
      while (bson_iter_next (&child)) {
         mh_array_append_iter (c->values, i++, &child);
      }
   }
   bson_destroy (&reply);
   return ok;
}

bool
mh_crud_distinct (const mh_call_t *call,
                  const char *field,
                  const bson_t *filter,
                  bson_t *values,
                  mongo_helper_error_t *error)
{
   mh_distinct_ctx_t ctx = {NULL, values};
   bson_t cmd = BSON_INITIALIZER;
   bool ok;

   BSON_APPEND_UTF8 (&cmd, "distinct", call->collection);
   BSON_APPEND_UTF8 (&cmd, "key", field);
   if (filter) {
      BSON_APPEND_DOCUMENT (&cmd, "query", filter);
   }
   ctx.command = &cmd;
   ok = mh_run (call, mh_distinct_op, &ctx, error);
   bson_destroy (&cmd);
   return ok;
}

/* ---- find options ---- */

/* Turns the options struct into the find command's options. */
bool
mh_find_opts (const char *what,
              const mongo_helper_find_opts_t *o,
              bson_t *out,
              mongo_helper_error_t *error)
{
   bson_init (out);
   if (!o) {
      return true;
   }
   if (o->skip < 0 || o->limit < 0 || o->batch_size < 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: skip, limit and batch_size must not be negative",
                      what);
   }
   if (o->projection) {
      BSON_APPEND_DOCUMENT (out, "projection", o->projection);
   }
   if (o->sort) {
      BSON_APPEND_DOCUMENT (out, "sort", o->sort);
   }
   if (o->skip) {
      BSON_APPEND_INT64 (out, "skip", o->skip);
   }
   if (o->limit) {
      BSON_APPEND_INT64 (out, "limit", o->limit);
   }
   if (o->batch_size) {
      BSON_APPEND_INT32 (out, "batchSize", o->batch_size);
   }
   return true;
}

/* A read of the documents area with ready-made options: checks the filter,
 * then runs the find. */
bool
mh_find_exec (mh_opid_t op,
              const char *database,
              const char *collection,
              const bson_t *filter,
              const bson_t *opts,
              bson_t *results,
              mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_READ, database, collection, NULL};

   if (filter && !mh_doc_check (mh_op_name (op), "filter", filter, error)) {
      return false;
   }
   return mh_crud_find (&call, filter, opts, false, results, error);
}
