/*
 * index.c — index creation, listing and removal (layer 8).
 */
#include "mh_private.h"

/* ---- indexes ---- */

typedef struct {
   const bson_t *command;
   const char *name;
   bson_t *results;
} mh_index_ctx_t;

static bool
mh_create_index_op (mh_attempt_t *a, void *ctx)
{
   mh_index_ctx_t *c = ctx;
   bson_t reply;
   bool ok =
      mongoc_collection_write_command_with_opts (a->coll, c->command, NULL, &reply, &a->error);

   if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
   return ok;
}

bool
mongo_helper_create_index (const char *database,
                           const char *collection,
                           const bson_t *keys,
                           const bson_t *options,
                           char **name_out,
                           mongo_helper_error_t *error)
{
   mh_call_t call = {
      MH_OPID_CREATE_INDEX, MH_OP_WRITE | MH_OP_IDEMPOTENT, database, collection, NULL};
   mh_index_ctx_t ctx = {NULL, NULL, NULL};
   bson_t cmd = BSON_INITIALIZER, indexes, index;
   bson_iter_t it;
   char *name = NULL;
   bool ok;

   if (name_out) {
      *name_out = NULL;
   }
   if (!mh_target_check ("create_index", database, collection, error) ||
       !mh_doc_check ("create_index", "key pattern", keys, error) ||
       (options && !mh_doc_check ("create_index", "options", options, error))) {
      return false;
   }
   if (bson_empty (keys)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "create_index: the key pattern is empty: name at least "
                      "one field, e.g. {\"email\": 1}");
   }
   if (options && bson_iter_init_find (&it, options, "name")) {
      if (!BSON_ITER_HOLDS_UTF8 (&it) || !*bson_iter_utf8 (&it, NULL)) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "create_index: option \"name\" must be a non-empty "
                         "string");
      }
      name = bson_strdup (bson_iter_utf8 (&it, NULL));
   } else {
      name = mongoc_collection_keys_to_index_string (keys);
   }
   if (!name) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "create_index: the key pattern's values must be numbers "
                      "or strings such as \"text\" and \"2dsphere\"");
   }
   BSON_APPEND_UTF8 (&cmd, "createIndexes", collection);
   BSON_APPEND_ARRAY_BEGIN (&cmd, "indexes", &indexes);
   BSON_APPEND_DOCUMENT_BEGIN (&indexes, "0", &index);
   BSON_APPEND_DOCUMENT (&index, "key", keys);
   BSON_APPEND_UTF8 (&index, "name", name);
   if (options && bson_iter_init (&it, options)) {
      while (bson_iter_next (&it)) {
         if (strcmp (bson_iter_key (&it), "name") != 0 &&
             strcmp (bson_iter_key (&it), "key") != 0) {
            bson_append_iter (&index, NULL, 0, &it);
         }
      }
   }
   bson_append_document_end (&indexes, &index);
   bson_append_array_end (&cmd, &indexes);
   ctx.command = &cmd;
   call.detail = name;
   /* createIndexes with the same specification is a no-op on the server. */
   ok = mh_run (&call, mh_create_index_op, &ctx, error);
   bson_destroy (&cmd);
   if (ok && name_out) {
      *name_out = name;
   } else {
      bson_free (name);
   }
   return ok;
}

static bool
mh_list_indexes_op (mh_attempt_t *a, void *ctx)
{
   mh_index_ctx_t *c = ctx;
   mongoc_collection_t *coll = a->coll;
   bool ok = mh_cursor_drain (mongoc_collection_find_indexes_with_opts (coll, NULL),
                              c->results,
                              mh_limit_result_bytes (a->config),
                              &a->error);

   return ok;
}

bool
mongo_helper_list_indexes (const char *database,
                           const char *collection,
                           bson_t *indexes,
                           mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_LIST_INDEXES, MH_OP_READ, database, collection, NULL};
   mh_index_ctx_t ctx = {NULL, NULL, indexes};

   if (!indexes) {
      mh_error_clear (error);
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "list_indexes: indexes is NULL");
   }
   bson_init (indexes);
   if (!mh_target_check ("list_indexes", database, collection, error)) {
      return false;
   }
   return mh_run (&call, mh_list_indexes_op, &ctx, error);
}

static bool
mh_drop_index_op (mh_attempt_t *a, void *ctx)
{
   mh_index_ctx_t *c = ctx;
   mongoc_collection_t *coll = a->coll;
   bool ok = mongoc_collection_drop_index_with_opts (coll, c->name, NULL, &a->error);

   return ok;
}

bool
mongo_helper_drop_index (const char *database,
                         const char *collection,
                         const char *name,
                         mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_DROP_INDEX, MH_OP_WRITE, database, collection, name};
   mh_index_ctx_t ctx = {NULL, name, NULL};

   if (!mh_target_check ("drop_index", database, collection, error)) {
      return false;
   }
   if (!name || !*name || strcmp (name, "*") == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "drop_index: give the name of one index (not NULL, "
                      "empty or \"*\")");
   }
   return mh_run (&call, mh_drop_index_op, &ctx, error);
}
