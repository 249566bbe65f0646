/*
 * crud.c — the public document operations: insert, find, update, replace,
 * delete, count and distinct, and the JSON conversions (layer 8).
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
               "invalid JSON: %s%s",
               berr.message,
               mh_json_levels_hint (berr.message));
      return NULL;
   }
   /* The parser's own nesting limit is below MongoDB's today; the check
    * keeps that true whatever libbson does, and refuses what the server
    * would refuse (over 16 MiB). */
   if (!mh_doc_check ("mongo_helper_json_to_bson", "parsed document", b, error)) {
      bson_destroy (b);
      return NULL;
   }
   return b;
}

char *
mongo_helper_array_to_json (const bson_t *array, mongo_helper_error_t *error)
{
   mh_error_clear (error);
   /* No configuration at hand: the library's default cap. */
   return mh_json_array ("mongo_helper_array_to_json",
                         array,
                         MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES,
                         "render fewer documents at once",
                         error);
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

bool
mongo_helper_insert_one (const char *database,
                         const char *collection,
                         const bson_t *doc,
                         bson_value_t *id,
                         mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_INSERT_ONE, MH_OP_WRITE, database, collection, NULL};
   bson_t with_id;
   bson_iter_t it;
   bool ok, made;

   if (id) {
      memset (id, 0, sizeof *id);
      id->value_type = BSON_TYPE_EOD;
   }
   if (!mh_target_check ("insert_one", database, collection, error)) {
      return false;
   }
   /* NULL and oversized are refused before the copy the _id needs; the
    * one walk of the document (depth, names, UTF-8) is mh_crud_insert_one's. */
   if (!doc || doc->len > MH_MAX_BSON) {
      return mh_doc_check ("insert_one", "document", doc, error);
   }
   made = mh_doc_with_id (doc, &with_id, &it);
   ok = mh_crud_insert_one (&call, made ? &with_id : doc, error);
   if (ok && id) {
      bson_value_copy (bson_iter_value (&it), id);
   }
   if (made) {
      bson_destroy (&with_id);
   }
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

bool
mongo_helper_insert_many (const char *database,
                          const char *collection,
                          const bson_t *const *docs,
                          size_t n,
                          bool ordered,
                          int64_t *inserted,
                          mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_INSERT_MANY, MH_OP_WRITE, database, collection, NULL};

   if (inserted) {
      *inserted = 0;
   }
   if (!mh_target_check ("insert_many", database, collection, error)) {
      return false;
   }
   if (n > MONGO_HELPER_MAX_WRITE_BATCH) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "insert_many: n is %zu, over MONGO_HELPER_MAX_WRITE_BATCH (%d): use "
                      "mongo_helper_bulk_insert() for more documents",
                      n,
                      MONGO_HELPER_MAX_WRITE_BATCH);
   }
   return mh_crud_insert_many (&call, docs, n, ordered, inserted, error);
}

/* ---- find ---- */

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
   ok = mh_find_exec (MH_OPID_FIND, database, collection, filter, &o, results, NULL, error);
   bson_destroy (&o);
   return ok;
}

/* find_one, telling the max_result_bytes in force (for JSON output). */
static bson_t *
mh_find_one (const char *database,
             const char *collection,
             const bson_t *filter,
             const mongo_helper_find_opts_t *opts,
             size_t *max_bytes,
             mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_FIND_ONE, MH_OP_READ, database, collection, NULL};
   mongo_helper_find_opts_t one;
   bson_t o;
   bson_t *doc = NULL;
   bool found = false;
   char ns[200];

   if (!mh_target_check ("find_one", database, collection, error)) {
      return NULL;
   }
   memset (&one, 0, sizeof one);
   if (opts) {
      one = *opts;
      one.limit = 1;
   }
   /* Without options, {limit: 1} is written with maxTimeMS by the attempt
    * (mh_crud_find_one_ex()'s limit_one). */
   bson_init (&o);
   if (!opts || mh_find_opts ("find_one", &one, &o, error)) {
      /* One document, no cursor left open on the server: limit 1 already
       * makes the server close the cursor with its first batch (and
       * mongoc_cursor_destroy() would kill one left open).  An extra
       * singleBatch option cost ~7% of a find_one's client CPU in bench/. */
      doc = bson_new ();
      if (mh_crud_find_one_ex (
             &call, filter, opts ? &o : NULL, !opts, doc, &found, max_bytes, error) &&
          !found) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_NOT_FOUND,
                  0,
                  "find_one: no document in %s matches the filter",
                  mh_ns (ns, sizeof ns, database, collection));
      }
      if (!found) {
         bson_destroy (doc);
         doc = NULL;
      }
   }
   bson_destroy (&o);
   return doc;
}

bson_t *
mongo_helper_find_one (const char *database,
                       const char *collection,
                       const bson_t *filter,
                       const mongo_helper_find_opts_t *opts,
                       mongo_helper_error_t *error)
{
   return mh_find_one (database, collection, filter, opts, NULL, error);
}

/* The JSON of find_one's document, within max_result_bytes. */
static char *
mh_find_one_json (const char *database,
                  const char *collection,
                  const bson_t *filter,
                  const mongo_helper_find_opts_t *opts,
                  mongo_helper_error_t *error)
{
   size_t max_bytes = 0;
   bson_t *doc = mh_find_one (database, collection, filter, opts, &max_bytes, error);
   char *json = NULL;

   if (doc) {
      json = mh_json_doc ("find_one", doc, max_bytes, "project fewer fields", error);
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
      json = mh_find_one_json (database, collection, filter, &opts, error);
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
   json = mh_find_one_json (database, collection, &filter, NULL, error);
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
   size_t max_bytes = 0;
   char *json = NULL;

   if (!mh_target_check ("find", database, collection, error)) {
      return NULL;
   }
   /* mongo_helper_json_to_bson() depth-checks what it parses, the options
    * included. */
   if (mh_json_opt (filter_json, &filter, error) && mh_json_opt (opts_json, &opts, error) &&
       mh_find_exec (
          MH_OPID_FIND, database, collection, filter, opts, &results, &max_bytes, error)) {
      json = mh_json_array ("find",
                            &results,
                            max_bytes,
                            "read them with find_stream or ask for fewer (a limit)",
                            error);
   }
   bson_destroy (&results);
   bson_destroy (filter);
   bson_destroy (opts);
   return json;
}

/* ---- update, replace, delete ---- */

void
mongo_helper_update_result_cleanup (mongo_helper_update_result_t *result)
{
   if (result) {
      bson_value_destroy (&result->upserted_id);
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

static bool
mh_update (mh_opid_t op,
           mh_update_kind_t kind,
           const char *database,
           const char *collection,
           const bson_t *filter,
           const bson_t *update,
           bool upsert,
           mongo_helper_update_result_t *result,
           mongo_helper_error_t *error)
{
   /* update_many is never safe to repeat; a single-document update is,
    * under the driver's retryable-writes protocol. */
   const mh_call_t call = {op, MH_OP_WRITE, database, collection, NULL};
   const char *name = mh_op_name (op);

   mh_update_result_reset (result);
   /* Required here; their walk is mh_crud_update()'s. */
   if (!mh_target_check (name, database, collection, error) ||
       (!filter && !mh_doc_check (name, "filter", filter, error)) ||
       (!update &&
        !mh_doc_check (name, kind == MH_REPLACE_ONE ? "replacement" : "update", update, error))) {
      return false;
   }
   return mh_crud_update (&call, kind, filter, update, upsert, result, error);
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
   return mh_update (MH_OPID_UPDATE_ONE,
                     MH_UPDATE_ONE,
                     database,
                     collection,
                     filter,
                     update,
                     upsert,
                     result,
                     error);
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
   return mh_update (MH_OPID_UPDATE_MANY,
                     MH_UPDATE_MANY,
                     database,
                     collection,
                     filter,
                     update,
                     upsert,
                     result,
                     error);
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
   return mh_update (MH_OPID_REPLACE_ONE,
                     MH_REPLACE_ONE,
                     database,
                     collection,
                     filter,
                     replacement,
                     upsert,
                     result,
                     error);
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

static bool
mh_delete (mh_opid_t op,
           const char *database,
           const char *collection,
           const bson_t *filter,
           bool many,
           int64_t *deleted,
           mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_WRITE, database, collection, NULL};

   if (deleted) {
      *deleted = 0;
   }
   if (!mh_target_check (mh_op_name (op), database, collection, error) ||
       (!filter && !mh_doc_check (mh_op_name (op), "filter", filter, error))) {
      return false;
   }
   return mh_crud_delete (&call, filter, many, deleted, error);
}

bool
mongo_helper_delete_one (const char *database,
                         const char *collection,
                         const bson_t *filter,
                         int64_t *deleted,
                         mongo_helper_error_t *error)
{
   return mh_delete (MH_OPID_DELETE_ONE, database, collection, filter, false, deleted, error);
}

bool
mongo_helper_delete_many (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          int64_t *deleted,
                          mongo_helper_error_t *error)
{
   return mh_delete (MH_OPID_DELETE_MANY, database, collection, filter, true, deleted, error);
}

/* ---- counts and distinct ---- */

/* True if `doc` uses $near/$nearSphere anywhere (count cannot).  The walk
 * keeps its own stack: the document's depth is bounded by mh_doc_check. */
static bool
mh_has_near (const bson_t *doc)
{
   mh_iter_frame_t stack[MH_MAX_DEPTH + 1];
   int depth = 0;

   if (!doc || !bson_iter_init (&stack[0].it, doc)) {
      return false;
   }
   while (depth >= 0) {
      bson_iter_t *it = &stack[depth].it;

      if (!bson_iter_next (it)) {
         depth--;
         continue;
      }
      if (strcmp (bson_iter_key (it), "$near") == 0 ||
          strcmp (bson_iter_key (it), "$nearSphere") == 0) {
         return true;
      }
      if ((BSON_ITER_HOLDS_DOCUMENT (it) || BSON_ITER_HOLDS_ARRAY (it)) && depth < MH_MAX_DEPTH &&
          bson_iter_recurse (it, &stack[depth + 1].it)) {
         depth++;
      }
   }
   return false;
}

static bool
mh_count (mh_opid_t op,
          const char *database,
          const char *collection,
          const bson_t *filter,
          bool estimated,
          int64_t *count,
          mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_READ, database, collection, NULL};
   const char *name = mh_op_name (op);
   bson_t empty = BSON_INITIALIZER;
   bool ok;

   if (count) {
      *count = 0;
   }
   if (!mh_target_check (name, database, collection, error)) {
      return false;
   }
   if (!count) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: count is NULL", name);
   }
   if (mh_has_near (filter)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the server cannot count with $near/$nearSphere; "
                      "use $geoWithin with $centerSphere instead",
                      name);
   }
   ok = mh_crud_count (&call, estimated ? NULL : filter ? filter : &empty, NULL, count, error);
   bson_destroy (&empty);
   return ok;
}

bool
mongo_helper_count_documents (const char *database,
                              const char *collection,
                              const bson_t *filter,
                              int64_t *count,
                              mongo_helper_error_t *error)
{
   return mh_count (MH_OPID_COUNT_DOCUMENTS, database, collection, filter, false, count, error);
}

bool
mongo_helper_estimated_count (const char *database,
                              const char *collection,
                              int64_t *count,
                              mongo_helper_error_t *error)
{
   return mh_count (MH_OPID_ESTIMATED_COUNT, database, collection, NULL, true, count, error);
}

bool
mongo_helper_distinct (const char *database,
                       const char *collection,
                       const char *field,
                       const bson_t *filter,
                       bson_t *values,
                       mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_DISTINCT, MH_OP_READ, database, collection, NULL};

   if (!values) {
      mh_error_clear (error);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "distinct: values is NULL");
   }
   bson_init (values);
   if (!mh_target_check ("distinct", database, collection, error)) {
      return false;
   }
   if (!field || !*field) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "distinct: the field name is NULL or empty");
   }
   return mh_crud_distinct (&call, field, filter, values, error);
}
