/*
 * crud.c — insert, find, update, replace, delete, count and distinct; the documents layer's shared
 * file (layer 7).
 */
#include "mh_private.h"

bson_t *
mongo_helper_json_to_bson (const char *json, mongo_helper_error_t *error)
{
   bson_error_t berr;
   bson_t *b;

   mh_error_clear (error);
   if (!json) {
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "JSON text is NULL");
      return NULL;
   }
   b = bson_new_from_json ((const uint8_t *) json, -1, &berr);
   if (!b) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               (int32_t) berr.code,
               "invalid JSON: %s",
               berr.message);
   }
   return b;
}

char *
mongo_helper_array_to_json (const bson_t *array, mongo_helper_error_t *error)
{
   bson_string_t *out;
   bson_iter_t it;
   bool first = true;

   mh_error_clear (error);
   if (!array || !bson_iter_init (&it, array)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "mongo_helper_array_to_json: the array is NULL or corrupt");
      return NULL;
   }
   out = bson_string_new ("[");
   while (bson_iter_next (&it)) {
      const uint8_t *data;
      uint32_t len;
      bson_t doc;
      char *json;

      if (!BSON_ITER_HOLDS_DOCUMENT (&it)) {
         bson_string_free (out, true);
         mh_fail (error,
                  MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                  0,
                  "mongo_helper_array_to_json: element %s is not a document",
                  bson_iter_key (&it));
         return NULL;
      }
      bson_iter_document (&it, &len, &data);
      bson_init_static (&doc, data, len);
      json = bson_as_relaxed_extended_json (&doc, NULL);
      if (!first) {
         bson_string_append (out, ", ");
      }
      bson_string_append (out, json);
      bson_free (json);
      first = false;
   }
   bson_string_append (out, "]");
   return bson_string_free (out, false);
}

/* Parses optional JSON text: NULL stays NULL (meaning "none"). */
static bool
mh_json_opt (const char *json, bson_t **out, mongo_helper_error_t *error)
{
   *out = NULL;
   if (!json) {
      return true;
   }
   *out = mongo_helper_json_to_bson (json, error);
   return *out != NULL;
}

/* ---- insert ---- */

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *doc;
} mh_insert_ctx_t;

static bool
mh_insert_one_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_insert_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bool ok = mongoc_collection_insert_one (coll, c->doc, NULL, NULL, berr);

   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_insert_one (const char *database,
                         const char *collection,
                         const bson_t *doc,
                         bson_value_t *id,
                         mongo_helper_error_t *error)
{
   mh_insert_ctx_t ctx = {database, collection, NULL};
   bson_t *with_id = NULL;
   bson_iter_t it;
   char what[256], ns[200];
   bool ok;

   if (id) {
      memset (id, 0, sizeof *id);
      id->value_type = BSON_TYPE_EOD;
   }
   if (!mh_target_check ("insert_one", database, collection, error) ||
       !mh_doc_check ("insert_one", "document", doc, error)) {
      return false;
   }
   /* The driver would add an _id too, but would not tell us which: making
    * it here is what lets the caller learn it. */
   if (!bson_iter_init_find (&it, doc, "_id")) {
      bson_oid_t oid;

      bson_oid_init (&oid, NULL);
      with_id = bson_sized_new (doc->len + 20);
      BSON_APPEND_OID (with_id, "_id", &oid);
      bson_concat (with_id, doc);
      bson_iter_init_find (&it, with_id, "_id");
      if (!mh_doc_check ("insert_one", "document", with_id, error)) {
         bson_destroy (with_id);
         return false;
      }
   }
   ctx.doc = with_id ? with_id : doc;
   bson_snprintf (what, sizeof what, "insert into %s", mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_WRITE, mh_insert_one_op, &ctx, error);
   if (ok && id) {
      bson_value_copy (bson_iter_value (&it), id);
   }
   bson_destroy (with_id);
   return ok;
}

bool
mongo_helper_insert_one_json (const char *database,
                              const char *collection,
                              const char *json,
                              bson_value_t *id,
                              mongo_helper_error_t *error)
{
   bson_t *doc;
   bool ok;

   if (id) {
      memset (id, 0, sizeof *id);
      id->value_type = BSON_TYPE_EOD;
   }
   if (!mh_target_check ("insert_one", database, collection, error)) {
      return false;
   }
   doc = mongo_helper_json_to_bson (json, error);
   if (!doc) {
      return false;
   }
   ok = mongo_helper_insert_one (database, collection, doc, id, error);
   bson_destroy (doc);
   return ok;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t **docs;
   size_t n;
   bool ordered;
   int64_t inserted;
} mh_insert_many_ctx_t;

static bool
mh_insert_many_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_insert_many_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (c->ordered));
   bson_t reply;
   bool ok = mongoc_collection_insert_many (coll, c->docs, c->n, opts, &reply, berr);

   c->inserted = mh_bson_int64 (&reply, "insertedCount");
   bson_destroy (&reply);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_insert_many (const char *database,
                          const char *collection,
                          const bson_t *const *docs,
                          size_t n,
                          bool ordered,
                          int64_t *inserted,
                          mongo_helper_error_t *error)
{
   mh_insert_many_ctx_t ctx = {database, collection, NULL, n, ordered, 0};
   char what[256], ns[200], label[48];
   bool ok;

   if (inserted) {
      *inserted = 0;
   }
   if (!mh_target_check ("insert_many", database, collection, error)) {
      return false;
   }
   if (!docs || n == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "insert_many: no documents given (docs NULL or n 0)");
   }
   /* The label is formatted only for a failing document: a vsnprintf per
    * document was measurable in bench/ (insert_many_small). */
   for (size_t i = 0; i < n; i++) {
      if (!docs[i] || docs[i]->len > MH_MAX_BSON) {
         bson_snprintf (label, sizeof label, "document at index %zu", i);
         return mh_doc_check ("insert_many", label, docs[i], error);
      }
   }
   /* libmongoc's prototype lacks the inner const. */
   ctx.docs = (const bson_t **) docs;
   bson_snprintf (
      what, sizeof what, "insert_many into %s", mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_WRITE, mh_insert_many_op, &ctx, error);
   if (inserted) {
      *inserted = ctx.inserted;
   }
   return ok;
}

/* ---- find ---- */

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

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;
   const bson_t *opts;
   bson_t *results;
   bool first_only; /* find_one: stop at the first document */
} mh_find_ctx_t;

static bool
mh_find_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_find_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bson_t empty = BSON_INITIALIZER;
   mongoc_cursor_t *cursor =
      mongoc_collection_find_with_opts (coll, c->filter ? c->filter : &empty, c->opts, NULL);
   const bson_t *doc;
   bool ok;

   if (c->first_only) {
      /* limit 1: the server closed the cursor with the first batch, so a
       * second mongoc_cursor_next() would only confirm the end. */
      bson_reinit (c->results);
      if (mongoc_cursor_next (cursor, &doc)) {
         mh_array_append (c->results, 0, doc);
      }
      ok = !mongoc_cursor_error (cursor, berr);
      mongoc_cursor_destroy (cursor);
   } else {
      ok = mh_cursor_drain (cursor, c->results, berr);
   }

   mongoc_collection_destroy (coll);
   return ok;
}

/* Runs a find with ready-made options: the path of every read below. */
static bool
mh_find_exec_ex (const char *op,
                 const char *database,
                 const char *collection,
                 const bson_t *filter,
                 const bson_t *opts,
                 bool first_only,
                 bson_t *results,
                 mongo_helper_error_t *error)
{
   mh_find_ctx_t ctx = {database, collection, filter, opts, results, first_only};
   char what[256], ns[200];

   if (filter && !mh_doc_check (op, "filter", filter, error)) {
      return false;
   }
   bson_snprintf (what, sizeof what, "%s on %s", op, mh_ns (ns, sizeof ns, database, collection));
   return mh_run (what, MH_OP_READ, mh_find_op, &ctx, error);
}

bool
mh_find_exec (const char *op,
              const char *database,
              const char *collection,
              const bson_t *filter,
              const bson_t *opts,
              bson_t *results,
              mongo_helper_error_t *error)
{
   return mh_find_exec_ex (op, database, collection, filter, opts, false, results, error);
}

bool
mongo_helper_find (const char *database,
                   const char *collection,
                   const bson_t *filter,
                   const mongo_helper_find_opts_t *opts,
                   bson_t *results,
                   mongo_helper_error_t *error)
{
   bson_t o;
   bool ok;

   if (!results) {
      mh_error_clear (error);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "find: results is NULL");
   }
   bson_init (results);
   if (!mh_target_check ("find", database, collection, error)) {
      return false;
   }
   if (!mh_find_opts ("find", opts, &o, error)) {
      bson_destroy (&o);
      return false;
   }
   ok = mh_find_exec ("find", database, collection, filter, &o, results, error);
   bson_destroy (&o);
   return ok;
}

/* The first document of an array document, copied, or NULL. */
static bson_t *
mh_array_first (const bson_t *array)
{
   bson_iter_t it;
   const uint8_t *data;
   uint32_t len;

   if (bson_iter_init (&it, array) && bson_iter_next (&it) && BSON_ITER_HOLDS_DOCUMENT (&it)) {
      bson_iter_document (&it, &len, &data);
      return bson_new_from_data (data, len);
   }
   return NULL;
}

static bson_t *
mh_find_one_opts (const char *op,
                  const char *database,
                  const char *collection,
                  const bson_t *filter,
                  const bson_t *opts,
                  mongo_helper_error_t *error)
{
   bson_t results = BSON_INITIALIZER;
   bson_t *doc = NULL;
   char ns[200];

   /* opts always hold limit 1 (mongo_helper_find_one) */
   if (mh_find_exec_ex (op, database, collection, filter, opts, true, &results, error)) {
      doc = mh_array_first (&results);
      if (!doc) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_NOT_FOUND,
                  0,
                  "%s: no document in %s matches the filter",
                  op,
                  mh_ns (ns, sizeof ns, database, collection));
      }
   }
   bson_destroy (&results);
   return doc;
}

bson_t *
mongo_helper_find_one (const char *database,
                       const char *collection,
                       const bson_t *filter,
                       const mongo_helper_find_opts_t *opts,
                       mongo_helper_error_t *error)
{
   mongo_helper_find_opts_t one;
   bson_t o;
   bson_t *doc = NULL;

   if (!mh_target_check ("find_one", database, collection, error)) {
      return NULL;
   }
   memset (&one, 0, sizeof one);
   if (opts) {
      one = *opts;
   }
   one.limit = 1;
   if (mh_find_opts ("find_one", &one, &o, error)) {
      /* One document, no cursor left open on the server: limit 1 already
       * makes the server close the cursor with its first batch (and
       * mongoc_cursor_destroy() would kill one left open).  An extra
       * singleBatch option cost ~7% of a find_one's client CPU in bench/. */
      doc = mh_find_one_opts ("find_one", database, collection, filter, &o, error);
   }
   bson_destroy (&o);
   return doc;
}

static char *
mh_doc_to_json_free (bson_t *doc)
{
   char *json = NULL;

   if (doc) {
      json = bson_as_relaxed_extended_json (doc, NULL);
      bson_destroy (doc);
   }
   return json;
}

char *
mongo_helper_find_one_json (const char *database,
                            const char *collection,
                            const char *filter_json,
                            const char *projection_json,
                            mongo_helper_error_t *error)
{
   mongo_helper_find_opts_t opts;
   bson_t *filter = NULL, *projection = NULL;
   char *json = NULL;

   if (!mh_target_check ("find_one", database, collection, error)) {
      return NULL;
   }
   if (mh_json_opt (filter_json, &filter, error) &&
       mh_json_opt (projection_json, &projection, error)) {
      memset (&opts, 0, sizeof opts);
      opts.projection = projection;
      json =
         mh_doc_to_json_free (mongo_helper_find_one (database, collection, filter, &opts, error));
   }
   bson_destroy (filter);
   bson_destroy (projection);
   return json;
}

char *
mongo_helper_find_by_id_json (const char *database,
                              const char *collection,
                              const char *oid_hex,
                              mongo_helper_error_t *error)
{
   bson_oid_t oid;
   bson_t filter = BSON_INITIALIZER;
   char *json;

   if (!mh_target_check ("find_by_id", database, collection, error)) {
      return NULL;
   }
   /* bson_oid_is_valid() accepts any 24 hex digits; bson_oid_init_from_string
    * would silently read garbage from anything else. */
   if (!oid_hex || strlen (oid_hex) != 24 || !bson_oid_is_valid (oid_hex, 24)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "find_by_id: '%.40s' is not an ObjectId (24 hexadecimal digits)",
               oid_hex ? oid_hex : "(null)");
      return NULL;
   }
   bson_oid_init_from_string (&oid, oid_hex);
   BSON_APPEND_OID (&filter, "_id", &oid);
   json = mh_doc_to_json_free (mongo_helper_find_one (database, collection, &filter, NULL, error));
   bson_destroy (&filter);
   return json;
}

char *
mongo_helper_find_json (const char *database,
                        const char *collection,
                        const char *filter_json,
                        const char *opts_json,
                        mongo_helper_error_t *error)
{
   bson_t *filter = NULL, *opts = NULL;
   bson_t results = BSON_INITIALIZER;
   char *json = NULL;

   if (!mh_target_check ("find", database, collection, error)) {
      return NULL;
   }
   if (mh_json_opt (filter_json, &filter, error) && mh_json_opt (opts_json, &opts, error) &&
       mh_find_exec ("find", database, collection, filter, opts, &results, error)) {
      json = mongo_helper_array_to_json (&results, error);
   }
   bson_destroy (&results);
   bson_destroy (filter);
   bson_destroy (opts);
   return json;
}

/* ---- update, replace, delete ---- */

typedef enum { MH_UPDATE_ONE, MH_UPDATE_MANY, MH_REPLACE_ONE } mh_update_kind_t;

typedef struct {
   const char *database;
   const char *collection;
   mh_update_kind_t kind;
   const bson_t *filter;
   const bson_t *update;
   bool upsert;
   mongo_helper_update_result_t *result;
} mh_update_ctx_t;

void
mongo_helper_update_result_cleanup (mongo_helper_update_result_t *result)
{
   if (result) {
      bson_value_destroy (&result->upserted_id);
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

static void
mh_update_result_reset (mongo_helper_update_result_t *result)
{
   if (result) {
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

static bool
mh_update_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_update_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bson_t *opts = BCON_NEW ("upsert", BCON_BOOL (c->upsert));
   bson_t reply;
   bson_iter_t it;
   bool ok;

   switch (c->kind) {
   case MH_UPDATE_ONE:
      ok = mongoc_collection_update_one (coll, c->filter, c->update, opts, &reply, berr);
      break;
   case MH_UPDATE_MANY:
      ok = mongoc_collection_update_many (coll, c->filter, c->update, opts, &reply, berr);
      break;
   default:
      ok = mongoc_collection_replace_one (coll, c->filter, c->update, opts, &reply, berr);
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
   }
   bson_destroy (&reply);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_update_run (const char *op, mh_update_ctx_t *ctx, mongo_helper_error_t *error)
{
   char what[256], ns[200];

   mh_update_result_reset (ctx->result);
   if (!mh_target_check (op, ctx->database, ctx->collection, error) ||
       !mh_doc_check (op, "filter", ctx->filter, error) ||
       !mh_doc_check (
          op, ctx->kind == MH_REPLACE_ONE ? "replacement" : "update", ctx->update, error)) {
      return false;
   }
   bson_snprintf (
      what, sizeof what, "%s on %s", op, mh_ns (ns, sizeof ns, ctx->database, ctx->collection));
   /* update_many is never safe to repeat; a single-document update is,
    * under the driver's retryable-writes protocol. */
   return mh_run (what, MH_OP_WRITE, mh_update_op, ctx, error);
}

bool
mongo_helper_update_one (const char *database,
                         const char *collection,
                         const bson_t *filter,
                         const bson_t *update,
                         bool upsert,
                         mongo_helper_update_result_t *result,
                         mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {database, collection, MH_UPDATE_ONE, filter, update, upsert, result};
   return mh_update_run ("update_one", &ctx, error);
}

bool
mongo_helper_update_many (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          const bson_t *update,
                          bool upsert,
                          mongo_helper_update_result_t *result,
                          mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {database, collection, MH_UPDATE_MANY, filter, update, upsert, result};
   return mh_update_run ("update_many", &ctx, error);
}

bool
mongo_helper_replace_one (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          const bson_t *replacement,
                          bool upsert,
                          mongo_helper_update_result_t *result,
                          mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {
      database, collection, MH_REPLACE_ONE, filter, replacement, upsert, result};
   return mh_update_run ("replace_one", &ctx, error);
}

bool
mongo_helper_update_json (const char *database,
                          const char *collection,
                          const char *filter_json,
                          const char *update_json,
                          bool many,
                          bool upsert,
                          mongo_helper_update_result_t *result,
                          mongo_helper_error_t *error)
{
   bson_t *filter = NULL, *update = NULL;
   bool ok = false;

   mh_update_result_reset (result);
   if (!mh_target_check ("update", database, collection, error)) {
      return false;
   }
   filter = mongo_helper_json_to_bson (filter_json, error);
   if (filter) {
      update = mongo_helper_json_to_bson (update_json, error);
   }
   if (filter && update) {
      ok =
         many
            ? mongo_helper_update_many (database, collection, filter, update, upsert, result, error)
            : mongo_helper_update_one (database, collection, filter, update, upsert, result, error);
   }
   bson_destroy (filter);
   bson_destroy (update);
   return ok;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;
   bool many;
   int64_t deleted;
} mh_delete_ctx_t;

static bool
mh_delete_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_delete_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bson_t reply;
   bool ok = c->many ? mongoc_collection_delete_many (coll, c->filter, NULL, &reply, berr)
                     : mongoc_collection_delete_one (coll, c->filter, NULL, &reply, berr);

   c->deleted = mh_bson_int64 (&reply, "deletedCount");
   bson_destroy (&reply);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_delete (const char *op,
           const char *database,
           const char *collection,
           const bson_t *filter,
           bool many,
           int64_t *deleted,
           mongo_helper_error_t *error)
{
   mh_delete_ctx_t ctx = {database, collection, filter, many, 0};
   char what[256], ns[200];
   bool ok;

   if (deleted) {
      *deleted = 0;
   }
   if (!mh_target_check (op, database, collection, error) ||
       !mh_doc_check (op, "filter", filter, error)) {
      return false;
   }
   bson_snprintf (what, sizeof what, "%s on %s", op, mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_WRITE, mh_delete_op, &ctx, error);
   if (deleted) {
      *deleted = ctx.deleted;
   }
   return ok;
}

bool
mongo_helper_delete_one (const char *database,
                         const char *collection,
                         const bson_t *filter,
                         int64_t *deleted,
                         mongo_helper_error_t *error)
{
   return mh_delete ("delete_one", database, collection, filter, false, deleted, error);
}

bool
mongo_helper_delete_many (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          int64_t *deleted,
                          mongo_helper_error_t *error)
{
   return mh_delete ("delete_many", database, collection, filter, true, deleted, error);
}

/* ---- counts and distinct ---- */

/* True if `doc` uses $near/$nearSphere anywhere (count cannot). */
static bool
mh_has_near (const bson_t *doc)
{
   bson_iter_t it;

   if (!doc || !bson_iter_init (&it, doc)) {
      return false;
   }
   while (bson_iter_next (&it)) {
      const char *k = bson_iter_key (&it);
      if (strcmp (k, "$near") == 0 || strcmp (k, "$nearSphere") == 0) {
         return true;
      }
      if (BSON_ITER_HOLDS_DOCUMENT (&it) || BSON_ITER_HOLDS_ARRAY (&it)) {
         const uint8_t *data;
         uint32_t len;
         bson_t sub;

         if (BSON_ITER_HOLDS_DOCUMENT (&it)) {
            bson_iter_document (&it, &len, &data);
         } else {
            bson_iter_array (&it, &len, &data);
         }
         if (bson_init_static (&sub, data, len) && mh_has_near (&sub)) {
            return true;
         }
      }
   }
   return false;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;
   bool estimated;
   int64_t count;
} mh_count_ctx_t;

static bool
mh_count_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_count_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bson_t empty = BSON_INITIALIZER;

   if (c->estimated) {
      c->count = mongoc_collection_estimated_document_count (coll, NULL, NULL, NULL, berr);
   } else {
      c->count = mongoc_collection_count_documents (
         coll, c->filter ? c->filter : &empty, NULL, NULL, NULL, berr);
   }
   mongoc_collection_destroy (coll);
   return c->count >= 0;
}

static bool
mh_count (const char *op,
          const char *database,
          const char *collection,
          const bson_t *filter,
          bool estimated,
          int64_t *count,
          mongo_helper_error_t *error)
{
   mh_count_ctx_t ctx = {database, collection, filter, estimated, 0};
   char what[256], ns[200];
   bool ok;

   if (count) {
      *count = 0;
   }
   if (!mh_target_check (op, database, collection, error) ||
       (filter && !mh_doc_check (op, "filter", filter, error))) {
      return false;
   }
   if (!count) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: count is NULL", op);
   }
   if (mh_has_near (filter)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the server cannot count with $near/$nearSphere; "
                      "use $geoWithin with $centerSphere instead",
                      op);
   }
   bson_snprintf (what, sizeof what, "%s on %s", op, mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_READ, mh_count_op, &ctx, error);
   *count = ok ? ctx.count : 0;
   return ok;
}

bool
mongo_helper_count_documents (const char *database,
                              const char *collection,
                              const bson_t *filter,
                              int64_t *count,
                              mongo_helper_error_t *error)
{
   return mh_count ("count_documents", database, collection, filter, false, count, error);
}

bool
mongo_helper_estimated_count (const char *database,
                              const char *collection,
                              int64_t *count,
                              mongo_helper_error_t *error)
{
   return mh_count ("estimated_count", database, collection, NULL, true, count, error);
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *command;
   bson_t *values;
} mh_distinct_ctx_t;

static bool
mh_distinct_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_distinct_ctx_t *c = ctx;
   mongoc_collection_t *coll = mh_collection (client, db, c->database, c->collection);
   bson_t reply;
   bson_iter_t it, child;
   uint32_t i = 0;
   bool ok = mongoc_collection_read_command_with_opts (coll, c->command, NULL, NULL, &reply, berr);

   bson_reinit (c->values);
   if (ok && bson_iter_init_find (&it, &reply, "values") && BSON_ITER_HOLDS_ARRAY (&it) &&
       bson_iter_recurse (&it, &child)) {
      while (bson_iter_next (&child)) {
         mh_array_append_iter (c->values, i++, &child);
      }
   }
   bson_destroy (&reply);
   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_distinct (const char *database,
                       const char *collection,
                       const char *field,
                       const bson_t *filter,
                       bson_t *values,
                       mongo_helper_error_t *error)
{
   mh_distinct_ctx_t ctx = {database, collection, NULL, values};
   bson_t cmd = BSON_INITIALIZER;
   char what[256], ns[200];
   bool ok;

   if (!values) {
      mh_error_clear (error);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "distinct: values is NULL");
   }
   bson_init (values);
   if (!mh_target_check ("distinct", database, collection, error) ||
       (filter && !mh_doc_check ("distinct", "filter", filter, error))) {
      return false;
   }
   if (!field || !*field) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "distinct: the field name is NULL or empty");
   }
   BSON_APPEND_UTF8 (&cmd, "distinct", collection);
   BSON_APPEND_UTF8 (&cmd, "key", field);
   if (filter) {
      BSON_APPEND_DOCUMENT (&cmd, "query", filter);
   }
   ctx.command = &cmd;
   bson_snprintf (
      what, sizeof what, "distinct '%s' on %s", field, mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_READ, mh_distinct_op, &ctx, error);
   bson_destroy (&cmd);
   return ok;
}
