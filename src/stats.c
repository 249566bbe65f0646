/*
 * stats.c — database, collection and server statistics (layer 8).
 */
#include "mh_private.h"

/* ---- Statistics and metadata ---- */

typedef struct {
   const char *collection;
   bson_t *reply;  /* always initialised */
   char **names;   /* collection names */
   bool fell_back; /* collStats command used */
} mh_stats_ctx_t;

static bool
mh_dbstats_op (mh_attempt_t *a, void *ctx)
{
   mh_stats_ctx_t *c = ctx;
   bson_t *cmd = BCON_NEW ("dbStats", BCON_INT32 (1));
   bool ok;

   bson_destroy (c->reply);
   ok = mongoc_database_command_simple (a->db, cmd, NULL, c->reply, &a->error);
   bson_destroy (cmd);
   return ok;
}

bool
mongo_helper_db_stats (const char *database,
                       mongo_helper_db_stats_t *stats,
                       bson_t *reply,
                       mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_db_stats";
   const mh_call_t call = {MH_OPID_DB_STATS, MH_OP_READ, database, NULL, NULL};
   mh_stats_ctx_t c = {0};
   bson_t scratch;
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   if (stats) {
      memset (stats, 0, sizeof *stats);
   }
   if (!mh_check_db_name (fn, database, error)) {
      return false;
   }
   bson_init (&scratch);
   c.reply = reply ? reply : &scratch;
   ok = mh_run (&call, mh_dbstats_op, &c, error);
   if (ok && stats) {
      stats->collections = mh_bson_int64 (c.reply, "collections");
      stats->objects = mh_bson_int64 (c.reply, "objects");
      stats->data_size = mh_bson_int64 (c.reply, "dataSize");
      stats->storage_size = mh_bson_int64 (c.reply, "storageSize");
      stats->indexes = mh_bson_int64 (c.reply, "indexes");
      stats->index_size = mh_bson_int64 (c.reply, "indexSize");
   }
   if (!ok) {
      bson_reinit (c.reply);
   }
   bson_destroy (&scratch);
   return ok;
}

static bool
mh_collstats_op (mh_attempt_t *a, void *ctx)
{
   mh_stats_ctx_t *c = ctx;
   bson_t *pipeline =
      BCON_NEW ("pipeline", "[", "{", "$collStats", "{", "storageStats", "{", "}", "}", "}", "]");
   mongoc_cursor_t *cur;
   const bson_t *doc;
   bson_iter_t it, sub;
   bool ok = false, got = false;

   bson_reinit (c->reply);
   c->fell_back = false;
   cur = mongoc_collection_aggregate (a->coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
   if (mongoc_cursor_next (cur, &doc)) {
      got = true;
      if (bson_iter_init_find (&it, doc, "ns") && BSON_ITER_HOLDS_UTF8 (&it)) {
         bson_append_iter (c->reply, "ns", -1, &it);
      }
      if (bson_iter_init_find (&it, doc, "storageStats") && BSON_ITER_HOLDS_DOCUMENT (&it) &&
          bson_iter_recurse (&it, &sub)) {
         while (bson_iter_next (&sub)) {
            if (strcmp (bson_iter_key (&sub), "ns") != 0) {
               bson_append_iter (c->reply, NULL, 0, &sub);
            }
         }
      }
   }
   ok = !mongoc_cursor_error (cur, &a->error);
   mongoc_cursor_destroy (cur);
   if (!ok && a->error.domain == MONGOC_ERROR_SERVER && a->error.code == 40324) {
      /* A server without the stage: the old command has the same fields. */
      bson_t *cmd = BCON_NEW ("collStats", BCON_UTF8 (c->collection));

      bson_destroy (c->reply);
      ok = mongoc_database_command_simple (a->db, cmd, NULL, c->reply, &a->error);
      c->fell_back = ok;
      bson_destroy (cmd);
   } else if (ok && !got) {
      /* Older servers answer nothing for a missing collection. */
      bson_set_error (
         &a->error, MONGOC_ERROR_SERVER, 26, "collection '%s' not found", c->collection);
      ok = false;
   }
   bson_destroy (pipeline);
   return ok;
}

bool
mongo_helper_collection_stats (const char *database,
                               const char *collection,
                               mongo_helper_coll_stats_t *stats,
                               bson_t *reply,
                               mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_collection_stats";
   const mh_call_t call = {MH_OPID_COLLECTION_STATS, MH_OP_READ, database, collection, NULL};
   mh_stats_ctx_t c = {0};
   bson_t scratch;
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   if (stats) {
      memset (stats, 0, sizeof *stats);
   }
   if (!mh_check_db_name (fn, database, error) || !mh_check_coll_name (fn, collection, error)) {
      return false;
   }
   bson_init (&scratch);
   c.collection = collection;
   c.reply = reply ? reply : &scratch;
   ok = mh_run (&call, mh_collstats_op, &c, error);
   if (ok && stats) {
      stats->count = mh_bson_int64 (c.reply, "count");
      stats->size = mh_bson_int64 (c.reply, "size");
      stats->avg_obj_size = mh_bson_int64 (c.reply, "avgObjSize");
      stats->storage_size = mh_bson_int64 (c.reply, "storageSize");
      stats->nindexes = mh_bson_int64 (c.reply, "nindexes");
      stats->total_index_size = mh_bson_int64 (c.reply, "totalIndexSize");
   }
   if (!ok) {
      bson_reinit (c.reply);
      if (error && error->category == MONGO_HELPER_ERROR_SERVER && error->code == 26) {
         mh_recategorize (error, MONGO_HELPER_ERROR_NOT_FOUND);
      }
   }
   bson_destroy (&scratch);
   return ok;
}

bool
mongo_helper_index_sizes (const char *database,
                          const char *collection,
                          bson_t *sizes,
                          mongo_helper_error_t *error)
{
   bson_t reply;
   bson_iter_t it, sub;

   mh_error_clear (error);
   if (!sizes) {
      return mh_bad_arg (error, "mongo_helper_index_sizes", "sizes is NULL");
   }
   bson_init (sizes);
   if (!mongo_helper_collection_stats (database, collection, NULL, &reply, error)) {
      bson_destroy (&reply);
      return false;
   }
   if (bson_iter_init_find (&it, &reply, "indexSizes") && BSON_ITER_HOLDS_DOCUMENT (&it) &&
       bson_iter_recurse (&it, &sub)) {
      while (bson_iter_next (&sub)) {
         if (BSON_ITER_HOLDS_NUMBER (&sub)) {
            BSON_APPEND_INT64 (sizes, bson_iter_key (&sub), bson_iter_as_int64 (&sub));
         }
      }
   }
   bson_destroy (&reply);
   return true;
}

static bool
mh_names_op (mh_attempt_t *a, void *ctx)
{
   mh_stats_ctx_t *c = ctx;

   bson_strfreev (c->names);
   c->names = mongoc_database_get_collection_names_with_opts (a->db, NULL, &a->error);
   return c->names != NULL;
}

char **
mongo_helper_collection_names (const char *database, mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_COLLECTION_NAMES, MH_OP_READ, database, NULL, NULL};
   mh_stats_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_check_db_name ("mongo_helper_collection_names", database, error)) {
      return NULL;
   }
   if (!mh_run (&call, mh_names_op, &c, error)) {
      bson_strfreev (c.names);
      return NULL;
   }
   return c.names;
}

static bool
mh_server_status_op (mh_attempt_t *a, void *ctx)
{
   mh_stats_ctx_t *c = ctx;
   bson_t *cmd = BCON_NEW ("serverStatus", BCON_INT32 (1));
   bool ok;

   bson_destroy (c->reply);
   ok = mongoc_client_command_simple (a->client, "admin", cmd, NULL, c->reply, &a->error);
   bson_destroy (cmd);
   return ok;
}

bool
mongo_helper_server_status (mongo_helper_server_status_t *status,
                            bson_t *reply,
                            mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_SERVER_STATUS, MH_OP_READ, NULL, NULL, NULL};
   mh_stats_ctx_t c = {0};
   bson_t scratch;
   bson_iter_t it;
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   if (status) {
      memset (status, 0, sizeof *status);
   }
   bson_init (&scratch);
   c.reply = reply ? reply : &scratch;
   ok = mh_run (&call, mh_server_status_op, &c, error);
   if (ok && status) {
      if (bson_iter_init_find (&it, c.reply, "version") && BSON_ITER_HOLDS_UTF8 (&it)) {
         bson_strncpy (status->version, bson_iter_utf8 (&it, NULL), sizeof status->version);
      }
      if (bson_iter_init_find (&it, c.reply, "host") && BSON_ITER_HOLDS_UTF8 (&it)) {
         bson_strncpy (status->host, bson_iter_utf8 (&it, NULL), sizeof status->host);
      }
      status->uptime_s = mh_bson_int64 (c.reply, "uptime");
      status->connections_current = mh_bson_int64 (c.reply, "connections.current");
      status->connections_available = mh_bson_int64 (c.reply, "connections.available");
      status->connections_total_created = mh_bson_int64 (c.reply, "connections.totalCreated");
   }
   if (!ok) {
      bson_reinit (c.reply);
   }
   bson_destroy (&scratch);
   return ok;
}
