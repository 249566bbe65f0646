/*
 * concurrent.c — operation descriptors run on the pool, several at once (layer 9).
 */
#include "mh_private.h"

/* ---- Concurrent operations ---- */

/* Each kind of operation is the public operation of the same name; the
 * dispatcher only shapes its outcome into the result document the header
 * describes.  Errors come back from the operation itself. */

static bool
mh_one_count (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   int64_t n;
   bool ok = mongo_helper_count_documents (op->database, op->collection, op->filter, &n, e);

   if (ok) {
      BSON_APPEND_INT64 (r, "count", n);
   }
   return ok;
}

static bool
mh_one_find_one (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   bson_t *doc = mongo_helper_find_one (op->database, op->collection, op->filter, NULL, e);

   if (doc) {
      BSON_APPEND_DOCUMENT (r, "document", doc);
      bson_destroy (doc);
      return true;
   }
   if (e->category == MONGO_HELPER_ERROR_NOT_FOUND) {
      mh_error_clear (e); /* none matched: {} */
      return true;
   }
   return false;
}

static bool
mh_one_distinct (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   bson_t values;
   bool ok =
      mongo_helper_distinct (op->database, op->collection, op->field, op->filter, &values, e);

   if (ok) {
      BSON_APPEND_ARRAY (r, "values", &values);
   }
   bson_destroy (&values);
   return ok;
}

static bool
mh_one_insert_one (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   bson_value_t id;
   bool ok = mongo_helper_insert_one (op->database, op->collection, op->document, &id, e);

   if (ok) {
      BSON_APPEND_VALUE (r, "insertedId", &id);
      BSON_APPEND_INT32 (r, "insertedCount", 1);
   }
   bson_value_destroy (&id);
   return ok;
}

static bool
mh_one_update (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   mongo_helper_update_result_t res;
   bool ok = (op->type == MONGO_HELPER_OP_UPDATE_ONE ? mongo_helper_update_one
                                                     : mongo_helper_update_many) (
      op->database, op->collection, op->filter, op->document, op->upsert, &res, e);

   if (ok) {
      BSON_APPEND_INT64 (r, "matchedCount", res.matched);
      BSON_APPEND_INT64 (r, "modifiedCount", res.modified);
      BSON_APPEND_INT64 (r, "upsertedCount", res.upserted);
      if (res.upserted_id.value_type != BSON_TYPE_EOD) {
         BSON_APPEND_VALUE (r, "upsertedId", &res.upserted_id);
      }
   }
   mongo_helper_update_result_cleanup (&res);
   return ok;
}

static bool
mh_one_delete (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   int64_t n;
   bool ok = (op->type == MONGO_HELPER_OP_DELETE_ONE
                 ? mongo_helper_delete_one
                 : mongo_helper_delete_many) (op->database, op->collection, op->filter, &n, e);

   if (ok) {
      BSON_APPEND_INT64 (r, "deletedCount", n);
   }
   return ok;
}

static bool
mh_one_aggregate (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   bson_t docs;
   bool ok = mongo_helper_aggregate (op->database, op->collection, op->pipeline, NULL, &docs, e);

   if (ok) {
      BSON_APPEND_ARRAY (r, "documents", &docs);
   }
   bson_destroy (&docs);
   return ok;
}

static bool
mh_one_command (const mongo_helper_op_t *op, bson_t *r, mongo_helper_error_t *e)
{
   bson_t reply;
   bool ok = mh_command_on (op->database, op->document, &reply, e);

   if (ok) {
      bson_concat (r, &reply);
   }
   bson_destroy (&reply);
   return ok;
}

/* The operations, by mongo_helper_op_type_t. */
static const struct {
   const char *name; /* for "operation N (name)" */
   bool (*run) (const mongo_helper_op_t *op, bson_t *result, mongo_helper_error_t *error);
} mh_one_ops[] = {
   [MONGO_HELPER_OP_COUNT] = {"count_documents", mh_one_count},
   [MONGO_HELPER_OP_FIND_ONE] = {"find_one", mh_one_find_one},
   [MONGO_HELPER_OP_DISTINCT] = {"distinct", mh_one_distinct},
   [MONGO_HELPER_OP_INSERT_ONE] = {"insert_one", mh_one_insert_one},
   [MONGO_HELPER_OP_UPDATE_ONE] = {"update_one", mh_one_update},
   [MONGO_HELPER_OP_UPDATE_MANY] = {"update_many", mh_one_update},
   [MONGO_HELPER_OP_DELETE_ONE] = {"delete_one", mh_one_delete},
   [MONGO_HELPER_OP_DELETE_MANY] = {"delete_many", mh_one_delete},
   [MONGO_HELPER_OP_AGGREGATE] = {"aggregate", mh_one_aggregate},
   [MONGO_HELPER_OP_COMMAND] = {"command", mh_one_command},
};

/* Runs operation `i` into its result; its error names it. */
static void
mh_one_run (const mongo_helper_op_t *op, size_t i, mongo_helper_op_result_t *r)
{
   const char *name;
   char msg[MONGO_HELPER_ERROR_MESSAGE_SIZE];

   if ((unsigned) op->type >= sizeof mh_one_ops / sizeof *mh_one_ops) {
      mh_fail (&r->error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "operation %zu: unknown operation type %d",
               i,
               (int) op->type);
      return;
   }
   name = mh_one_ops[op->type].name;
   /* Descriptor fields the operations would otherwise read as "none". */
   if ((op->type == MONGO_HELPER_OP_INSERT_ONE || op->type == MONGO_HELPER_OP_UPDATE_ONE ||
        op->type == MONGO_HELPER_OP_UPDATE_MANY || op->type == MONGO_HELPER_OP_COMMAND) &&
       (!op->document || bson_empty (op->document))) {
      mh_fail (&r->error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "operation %zu (%s): document is NULL or empty",
               i,
               name);
      return;
   }
   if (mh_one_ops[op->type].run (op, &r->result, &r->error)) {
      return;
   }
   bson_reinit (&r->result);
   bson_strncpy (msg, r->error.message, sizeof msg);
   bson_snprintf (
      r->error.message, sizeof r->error.message, "operation %zu (%s): %s", i, name, msg);
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
      mongo_helper_op_result_t *r = &w->results[i];

      r->concurrent = atomic_fetch_add (&w->active, 1) + 1;
      mh_one_run (&w->ops[i], i, r);
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
   mongo_helper_status_t st;
   mh_conc_t w;
   pthread_t *threads;
   size_t n_threads, started = 0, failed = 0, first = 0;

   mh_error_clear (error);
   /* Before the results are touched: a wrong count must not write past the
    * caller's array. */
   if (n_ops > MONGO_HELPER_MAX_CONCURRENT_OPS) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: n_ops is %zu, over %d (MONGO_HELPER_MAX_CONCURRENT_OPS): split "
                      "the list",
                      fn,
                      n_ops,
                      MONGO_HELPER_MAX_CONCURRENT_OPS);
   }
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
   if (max_concurrent == 0 || max_concurrent > MONGO_HELPER_MAX_CONCURRENT) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: max_concurrent is %zu: allow 1 to %d operations at once "
                      "(MONGO_HELPER_MAX_CONCURRENT)",
                      fn,
                      max_concurrent,
                      MONGO_HELPER_MAX_CONCURRENT);
   }
   w.ops = ops;
   w.results = results;
   w.n = n_ops;
   atomic_init (&w.next, 0);
   atomic_init (&w.active, 0);
   n_threads = max_concurrent < n_ops ? max_concurrent : n_ops;
   /* A worker keeps its pooled client until the list is done, so workers
    * beyond the pool's size would only wait for one and fail with TIMEOUT. */
   mongo_helper_status (&st);
   if (st.initialized && st.max_pool_size > 0 && n_threads > (size_t) st.max_pool_size) {
      n_threads = (size_t) st.max_pool_size;
   }
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
