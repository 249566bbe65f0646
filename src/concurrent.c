/*
 * concurrent.c — operation descriptors run on the pool, several at once (layer 9).
 */
#include "mh_private.h"

/* ---- Concurrent operations ---- */

typedef struct {
   const mongo_helper_op_t *op;
   bson_t *result;
} mh_one_ctx_t;

static const char *
mh_op_type_name (mongo_helper_op_type_t t)
{
   static const char *names[] = {"count",
                                 "find one",
                                 "distinct",
                                 "insert one",
                                 "update one",
                                 "update many",
                                 "delete one",
                                 "delete many",
                                 "aggregate",
                                 "command"};

   return (unsigned) t < sizeof names / sizeof *names ? names[t] : "unknown";
}

static bool
mh_one_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr)
{
   mh_one_ctx_t *c = ctx;
   const mongo_helper_op_t *op = c->op;
   bson_t empty = BSON_INITIALIZER;
   const bson_t *filter = op->filter ? op->filter : &empty;
   mongoc_database_t *dbh;
   mongoc_collection_t *coll = NULL;
   mongoc_cursor_t *cur;
   const bson_t *doc;
   bson_t reply, opts, child;
   bool owned, ok = false;

   bson_reinit (c->result);
   dbh = mh_database (client, db, op->database, &owned);
   if (op->type != MONGO_HELPER_OP_COMMAND) {
      coll = mongoc_database_get_collection (dbh, op->collection);
   }
   switch (op->type) {
   case MONGO_HELPER_OP_COUNT: {
      int64_t n = mongoc_collection_count_documents (coll, filter, NULL, NULL, NULL, berr);

      ok = n >= 0;
      if (ok) {
         BSON_APPEND_INT64 (c->result, "count", n);
      }
      break;
   }
   case MONGO_HELPER_OP_FIND_ONE:
      bson_init (&opts);
      BSON_APPEND_INT64 (&opts, "limit", 1);
      cur = mongoc_collection_find_with_opts (coll, filter, &opts, NULL);
      if (mongoc_cursor_next (cur, &doc)) {
         BSON_APPEND_DOCUMENT (c->result, "document", doc);
      }
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      bson_destroy (&opts);
      break;
   case MONGO_HELPER_OP_DISTINCT: {
      bson_t *cmd = BCON_NEW ("distinct",
                              BCON_UTF8 (op->collection),
                              "key",
                              BCON_UTF8 (op->field),
                              "query",
                              BCON_DOCUMENT (filter));
      bson_iter_t it;

      ok = mongoc_collection_read_command_with_opts (coll, cmd, NULL, NULL, &reply, berr);
      if (ok && bson_iter_init_find (&it, &reply, "values") && BSON_ITER_HOLDS_ARRAY (&it)) {
         bson_append_iter (c->result, "values", -1, &it);
      } else if (ok) {
         BSON_APPEND_ARRAY_BEGIN (c->result, "values", &child);
         bson_append_array_end (c->result, &child);
      }
      bson_destroy (&reply);
      bson_destroy (cmd);
      break;
   }
   case MONGO_HELPER_OP_INSERT_ONE: {
      bson_t with_id;
      bson_iter_t it;

      /* Generate the _id here, so it can be reported. */
      bson_init (&with_id);
      if (!bson_iter_init_find (&it, op->document, "_id")) {
         bson_oid_t oid;

         bson_oid_init (&oid, NULL);
         BSON_APPEND_OID (&with_id, "_id", &oid);
      }
      bson_concat (&with_id, op->document);
      ok = mongoc_collection_insert_one (coll, &with_id, NULL, &reply, berr);
      if (ok && bson_iter_init_find (&it, &with_id, "_id")) {
         bson_append_iter (c->result, "insertedId", -1, &it);
         BSON_APPEND_INT32 (c->result, "insertedCount", 1);
      }
      bson_destroy (&reply);
      bson_destroy (&with_id);
      break;
   }
   case MONGO_HELPER_OP_UPDATE_ONE:
   case MONGO_HELPER_OP_UPDATE_MANY:
      bson_init (&opts);
      if (op->upsert) {
         BSON_APPEND_BOOL (&opts, "upsert", true);
      }
      ok = (op->type == MONGO_HELPER_OP_UPDATE_ONE
               ? mongoc_collection_update_one
               : mongoc_collection_update_many) (coll, filter, op->document, &opts, &reply, berr);
      if (ok) {
         bson_concat (c->result, &reply);
      }
      bson_destroy (&reply);
      bson_destroy (&opts);
      break;
   case MONGO_HELPER_OP_DELETE_ONE:
   case MONGO_HELPER_OP_DELETE_MANY:
      ok = (op->type == MONGO_HELPER_OP_DELETE_ONE
               ? mongoc_collection_delete_one
               : mongoc_collection_delete_many) (coll, filter, NULL, &reply, berr);
      if (ok) {
         bson_concat (c->result, &reply);
      }
      bson_destroy (&reply);
      break;
   case MONGO_HELPER_OP_AGGREGATE: {
      uint32_t i = 0;
      char key[16];
      const char *k;

      cur = mongoc_collection_aggregate (coll, MONGOC_QUERY_NONE, op->pipeline, NULL, NULL);
      BSON_APPEND_ARRAY_BEGIN (c->result, "documents", &child);
      while (mongoc_cursor_next (cur, &doc)) {
         bson_uint32_to_string (i++, &k, key, sizeof key);
         BSON_APPEND_DOCUMENT (&child, k, doc);
      }
      bson_append_array_end (c->result, &child);
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      break;
   }
   case MONGO_HELPER_OP_COMMAND:
      ok = mongoc_database_command_simple (dbh, op->document, NULL, &reply, berr);
      if (ok) {
         bson_concat (c->result, &reply);
      }
      bson_destroy (&reply);
      break;
   }
   if (!ok) {
      bson_reinit (c->result);
   }
   mongoc_collection_destroy (coll);
   mh_database_done (dbh, owned);
   bson_destroy (&empty);
   return ok;
}

/* What an operation needs, checked before it runs. */
static bool
mh_one_check (const mongo_helper_op_t *op, size_t i, mongo_helper_error_t *error)
{
   char fn[64];

   bson_snprintf (fn, sizeof fn, "operation %zu (%s)", i, mh_op_type_name (op->type));
   if ((unsigned) op->type > MONGO_HELPER_OP_COMMAND) {
      return mh_bad_arg (error, fn, "unknown operation type");
   }
   if (!mh_check_db_name (fn, op->database, error)) {
      return false;
   }
   if (op->type != MONGO_HELPER_OP_COMMAND && !mh_check_coll_name (fn, op->collection, error)) {
      return false;
   }
   switch (op->type) {
   case MONGO_HELPER_OP_DISTINCT:
      if (!op->field || !*op->field) {
         return mh_bad_arg (error, fn, "field is NULL or empty");
      }
      break;
   case MONGO_HELPER_OP_INSERT_ONE:
   case MONGO_HELPER_OP_UPDATE_ONE:
   case MONGO_HELPER_OP_UPDATE_MANY:
      if (!op->document || bson_empty (op->document)) {
         return mh_bad_arg (error, fn, "document is NULL or empty");
      }
      /* The server's limit, checked here so the message says what to do
       * instead of the driver's generic "document too large". */
      if (op->document->len > MH_MAX_BSON) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "%s: the document is %u bytes, over MongoDB's 16 MiB "
                         "limit: store large data with GridFS",
                         fn,
                         (unsigned) op->document->len);
      }
      break;
   case MONGO_HELPER_OP_COMMAND:
      if (!op->document || bson_empty (op->document)) {
         return mh_bad_arg (error, fn, "document (the command) is NULL or empty");
      }
      break;
   case MONGO_HELPER_OP_AGGREGATE:
      if (!op->pipeline) {
         return mh_bad_arg (error, fn, "pipeline is NULL");
      }
      break;
   default:
      break;
   }
   return true;
}

static unsigned
mh_one_flags (mongo_helper_op_type_t t)
{
   switch (t) {
   case MONGO_HELPER_OP_COUNT:
   case MONGO_HELPER_OP_FIND_ONE:
   case MONGO_HELPER_OP_DISTINCT:
   case MONGO_HELPER_OP_AGGREGATE:
      return MH_OP_READ;
   default:
      return MH_OP_WRITE;
   }
}

typedef struct {
   const mongo_helper_op_t *ops;
   mongo_helper_op_result_t *results;
   size_t n;
   atomic_size_t next;
   atomic_int active;
} mh_conc_t;

static void *
mh_conc_worker (void *arg)
{
   mh_conc_t *w = arg;
   size_t i;

   while ((i = atomic_fetch_add (&w->next, 1)) < w->n) {
      const mongo_helper_op_t *op = &w->ops[i];
      mongo_helper_op_result_t *r = &w->results[i];
      mh_one_ctx_t c = {op, &r->result};
      char what[300];

      r->concurrent = atomic_fetch_add (&w->active, 1) + 1;
      if (mh_one_check (op, i, &r->error)) {
         bson_snprintf (what,
                        sizeof what,
                        "operation %zu (%s on %.200s)",
                        i,
                        mh_op_type_name (op->type),
                        op->collection ? op->collection : "the database");
         mh_run (what, mh_one_flags (op->type), mh_one_op, &c, &r->error);
      }
      atomic_fetch_sub (&w->active, 1);
   }
   /* The worker's pooled client goes back now, not at some later exit. */
   mongo_helper_thread_release ();
   return NULL;
}

bool
mongo_helper_run_concurrent (const mongo_helper_op_t *ops,
                             size_t n_ops,
                             size_t max_concurrent,
                             mongo_helper_op_result_t *results,
                             mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_run_concurrent";
   mh_conc_t w;
   pthread_t *threads;
   size_t n_threads, started = 0, failed = 0, first = 0;

   mh_error_clear (error);
   if (results) {
      for (size_t i = 0; i < n_ops; i++) {
         bson_init (&results[i].result);
         mh_error_clear (&results[i].error);
         results[i].concurrent = 0;
      }
   }
   if (!ops || !results) {
      return mh_bad_arg (error, fn, "ops or results is NULL");
   }
   if (n_ops == 0) {
      return mh_bad_arg (error, fn, "the list of operations is empty");
   }
   if (max_concurrent == 0) {
      return mh_bad_arg (error, fn, "max_concurrent is 0: allow at least one operation at once");
   }
   w.ops = ops;
   w.results = results;
   w.n = n_ops;
   atomic_init (&w.next, 0);
   atomic_init (&w.active, 0);
   n_threads = max_concurrent < n_ops ? max_concurrent : n_ops;
   threads = bson_malloc (n_threads * sizeof *threads);
   for (size_t t = 0; t < n_threads; t++) {
      if (pthread_create (&threads[t], NULL, mh_conc_worker, &w) != 0) {
         break; /* fewer workers still finish the list */
      }
      started++;
   }
   if (started == 0) {
      mh_conc_worker (&w); /* no thread at all: run them here, one by one */
   }
   for (size_t t = 0; t < started; t++) {
      pthread_join (threads[t], NULL);
   }
   bson_free (threads);
   for (size_t i = 0; i < n_ops; i++) {
      if (results[i].error.category != MONGO_HELPER_ERROR_NONE) {
         if (failed++ == 0) {
            first = i;
         }
      }
   }
   if (failed) {
      return mh_fail (error,
                      results[first].error.category,
                      results[first].error.code,
                      "%zu of %zu operations failed (each result holds its "
                      "own error); the first: %s",
                      failed,
                      n_ops,
                      results[first].error.message);
   }
   return true;
}

void
mongo_helper_op_results_cleanup (mongo_helper_op_result_t *results, size_t n_results)
{
   if (!results) {
      return;
   }
   for (size_t i = 0; i < n_results; i++) {
      bson_destroy (&results[i].result);
      bson_init (&results[i].result); /* a second cleanup stays harmless */
   }
}
