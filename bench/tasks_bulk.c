/*
 * bench/tasks_bulk.c — many-document tasks: find many, ordered insert-many, batched
 * unordered bulk insert, aggregation, streaming, GridFS.
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- Task: find many and empty the cursor --------------------------- */

bool
setup_nested (char *err, size_t err_size)
{
   static long seeded = -1;

   if (seeded == B.nested_coll_n) {
      return true;
   }
   if (!admin_seed ("bench_nested", B.nested_coll_n, gen_nested_id, err, err_size)) {
      return false;
   }
   seeded = B.nested_coll_n;
   return true;
}

/* Counts the documents of a stream's chunks: every one must be a
 * non-empty document and each chunk's first one must carry the _id of
 * the document that position holds (the collections hold _id 0..n-1 in
 * insertion order), so an empty, corrupt or skipped chunk cannot pass.
 * Per document this is O(1), like raw's count: the check must not be what
 * is measured. */
typedef struct {
   long n, bad;
} chunk_count_t;

static bool
count_chunk (const bson_t *const *docs, size_t n, void *user_data)
{
   chunk_count_t *c = user_data;
   bson_iter_t it;

   if (n == 0 || !bson_iter_init_find (&it, docs[0], "_id") || !BSON_ITER_HOLDS_INT32 (&it) ||
       bson_iter_int32 (&it) != (int32_t) c->n) {
      c->bad++;
   }
   for (size_t k = 0; k < n; k++) {
      if (!docs[k] || docs[k]->len <= 5) {
         c->bad++;
      }
   }
   c->n += (long) n;
   return true;
}

/* Iterates every document of `coll` matching nothing in particular;
 * `opts` may set batchSize/limit.  Counts documents. */
static bool
op_find_all (mongoc_collection_t *coll, const bson_t *opts, long *n, bson_error_t *e)
{
   bson_t filter = BSON_INITIALIZER;
   mongoc_cursor_t *cur = mongoc_collection_find_with_opts (coll, &filter, opts, NULL);
   const bson_t *doc;
   bson_t *chunk[STREAM_CHUNK];
   size_t k = 0;
   chunk_count_t c = {0, 0};
   bool ok;

   /* The same result as the helper's stream: chunks of documents that stay
    * valid together, so each is copied (a cursor's document lives until
    * the next mongoc_cursor_next()), handed over, then freed. */
   while (mongoc_cursor_next (cur, &doc)) {
      chunk[k++] = bson_copy (doc);
      if (k == STREAM_CHUNK) {
         count_chunk ((const bson_t *const *) chunk, k, &c);
         while (k > 0) {
            bson_destroy (chunk[--k]);
         }
      }
   }
   if (k > 0) {
      count_chunk ((const bson_t *const *) chunk, k, &c);
      while (k > 0) {
         bson_destroy (chunk[--k]);
      }
   }
   ok = !mongoc_cursor_error (cur, e);
   if (ok && c.bad) {
      bson_set_error (e, 0, 0, "%ld empty documents or chunks out of order", c.bad);
      ok = false;
   }
   *n = c.n;
   mongoc_cursor_destroy (cur);
   bson_destroy (&filter);
   return ok;
}

/* mongo_helper_find() would return every document in one bson_t; the
 * like-for-like call is the stream, which hands out chunks of documents
 * as raw's loop does (op_find_all). */
status_t
helper_find_many (run_t *r)
{
   mongo_helper_error_t me;
   chunk_count_t c = {0, 0};

   if (!mongo_helper_find_stream (
          NULL, "bench_nested", NULL, NULL, STREAM_CHUNK, count_chunk, &c, &me)) {
      return fail_mh (r, "mongo_helper_find_stream", &me);
   }
   if (c.bad) {
      return fail (r, "find many: %ld empty documents or chunks out of order", c.bad);
   }
   return c.n == r->ops ? ST_OK : fail (r, "find many: %ld documents, expected %ld", c.n, r->ops);
}

status_t
raw_find_many (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_nested");
   bson_error_t e;
   long n;
   bool ok = op_find_all (coll, NULL, &n, &e);

   mongoc_collection_destroy (coll);
   raw_push (c);
   if (!ok) {
      return fail_bson (r, "find many", &e);
   }
   return n == r->ops ? ST_OK : fail (r, "find many: %ld documents, expected %ld", n, r->ops);
}

/* ---- Tasks: ordered insert-many (small, large) ---------------------- */

bool
prep_many_small (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "many_small", side);
   return admin_drop (name, err, err_size);
}

bool
prep_many_large (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "many_large", side);
   return admin_drop (name, err, err_size);
}

static const bson_t **
many_docs (long n, bool large)
{
   const bson_t **docs = bson_malloc ((size_t) n * sizeof *docs);

   for (long k = 0; k < n; k++) {
      docs[k] = large ? B.large : B.flat[k % B.flat_n];
   }
   return docs;
}

static status_t
insert_many_in (mongoc_collection_t *coll, run_t *r, bool large)
{
   const bson_t **docs = many_docs (r->ops, large);
   bson_t reply;
   bson_iter_t it;
   bson_error_t e;
   bool ok = mongoc_collection_insert_many (coll, docs, (size_t) r->ops, NULL, &reply, &e);
   status_t st = ST_OK;

   if (!ok) {
      st = fail_bson (r, "insert many", &e);
   } else if (!bson_iter_init_find (&it, &reply, "insertedCount") ||
              bson_iter_as_int64 (&it) != r->ops) {
      st = fail (r, "insert many: insertedCount is not %ld", r->ops);
   }
   bson_destroy (&reply);
   bson_free (docs);
   return st;
}

static status_t
helper_many_common (run_t *r, const char *what, bool large)
{
   char name[64];
   const bson_t **docs = many_docs (r->ops, large);
   mongo_helper_error_t me;
   int64_t inserted = 0;
   status_t st = ST_OK;

   coll_name (name, sizeof name, what, SIDE_HELPER);
   if (!mongo_helper_insert_many (
          NULL, name, (const bson_t *const *) docs, (size_t) r->ops, true, &inserted, &me)) {
      st = fail_mh (r, "mongo_helper_insert_many", &me);
   } else if (inserted != r->ops) {
      st = fail (r, "insert many: %lld inserted, expected %ld", (long long) inserted, r->ops);
   } else {
      snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
      r->verify_count = r->ops;
   }
   bson_free (docs);
   return st;
}

static status_t
raw_many_common (run_t *r, const char *what, bool large)
{
   char name[64];
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll;
   status_t st;

   coll_name (name, sizeof name, what, SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   st = insert_many_in (coll, r, large);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

status_t
helper_many_small (run_t *r)
{
   return helper_many_common (r, "many_small", false);
}

status_t
raw_many_small (run_t *r)
{
   return raw_many_common (r, "many_small", false);
}

status_t
helper_many_large (run_t *r)
{
   return helper_many_common (r, "many_large", true);
}

status_t
raw_many_large (run_t *r)
{
   return raw_many_common (r, "many_large", true);
}

/* ---- Task: bulk insert with batching, unordered ---------------------- */

bool
prep_bulk (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "bulk", side);
   return admin_drop (name, err, err_size);
}

/* libmongoc's bulk API, one unordered bulk operation per batch. */
static status_t
bulk_in (mongoc_collection_t *coll, run_t *r)
{
   bson_t opts = BSON_INITIALIZER;
   status_t st = ST_OK;
   long inserted = 0;

   BSON_APPEND_BOOL (&opts, "ordered", false);
   for (long i = 0; i < r->ops && st == ST_OK; i += r->param) {
      long m = r->ops - i < r->param ? r->ops - i : r->param;
      mongoc_bulk_operation_t *bulk =
         mongoc_collection_create_bulk_operation_with_opts (coll, &opts);
      bson_t reply;
      bson_iter_t it;
      bson_error_t e;

      for (long k = 0; k < m; k++) {
         mongoc_bulk_operation_insert (bulk, B.flat[(i + k) % B.flat_n]);
      }
      if (!mongoc_bulk_operation_execute (bulk, &reply, &e)) {
         st = fail_bson (r, "bulk insert", &e);
      } else if (bson_iter_init_find (&it, &reply, "nInserted")) {
         inserted += bson_iter_as_int64 (&it);
      }
      bson_destroy (&reply);
      mongoc_bulk_operation_destroy (bulk);
   }
   bson_destroy (&opts);
   if (st == ST_OK && inserted != r->ops) {
      st = fail (r, "bulk insert: nInserted %ld, expected %ld", inserted, r->ops);
   }
   return st;
}

status_t
helper_bulk (run_t *r)
{
   char name[64];
   const bson_t **docs = bson_malloc ((size_t) r->ops * sizeof *docs);
   mongo_helper_bulk_result_t *res = NULL;
   mongo_helper_error_t me;
   status_t st = ST_OK;

   /* the same documents in the same order as bulk_in() (building the
    * array is part of using a bulk API that takes one) */
   for (long k = 0; k < r->ops; k++) {
      docs[k] = B.flat[k % B.flat_n];
   }
   coll_name (name, sizeof name, "bulk", SIDE_HELPER);
   if (!mongo_helper_bulk_insert (NULL,
                                  name,
                                  (const bson_t *const *) docs,
                                  (size_t) r->ops,
                                  (size_t) r->param,
                                  false,
                                  &res,
                                  &me)) {
      st = fail_mh (r, "mongo_helper_bulk_insert", &me);
   } else if (!res || res->inserted != r->ops || res->n_failures != 0) {
      st = fail (r,
                 "bulk insert: %lld inserted, expected %ld",
                 res ? (long long) res->inserted : -1LL,
                 r->ops);
   } else {
      snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
      r->verify_count = r->ops;
   }
   mongo_helper_bulk_result_destroy (res);
   bson_free (docs);
   return st;
}

status_t
raw_bulk (run_t *r)
{
   char name[64];
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll;
   status_t st;

   coll_name (name, sizeof name, "bulk", SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   st = bulk_in (coll, r);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: aggregation $match + $group ------------------------------ */

/* [{$match: {category: {$lt: 10}}},
 *  {$group: {_id: "$category", total: {$sum: "$value"}, n: {$sum: 1}}}] */
static bson_t *
agg_pipeline (void)
{
   return BCON_NEW ("pipeline",
                    "[",
                    "{",
                    "$match",
                    "{",
                    "category",
                    "{",
                    "$lt",
                    BCON_INT32 (10),
                    "}",
                    "}",
                    "}",
                    "{",
                    "$group",
                    "{",
                    "_id",
                    BCON_UTF8 ("$category"),
                    "total",
                    "{",
                    "$sum",
                    BCON_UTF8 ("$value"),
                    "}",
                    "n",
                    "{",
                    "$sum",
                    BCON_INT32 (1),
                    "}",
                    "}",
                    "}",
                    "]");
}

static bool
op_aggregate (mongoc_collection_t *coll, const bson_t *pipeline, bson_error_t *e)
{
   mongoc_cursor_t *cur =
      mongoc_collection_aggregate (coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
   const bson_t *doc;
   bson_t results = BSON_INITIALIZER;
   long groups = 0;
   bool ok;

   /* The same result as mongo_helper_aggregate(): every result document
    * in one array the caller keeps. */
   while (mongoc_cursor_next (cur, &doc)) {
      char key[16];
      const char *k;

      bson_uint32_to_string ((uint32_t) groups++, &k, key, sizeof key);
      bson_append_document (&results, k, -1, doc);
   }
   bson_destroy (&results);
   ok = !mongoc_cursor_error (cur, e);
   if (ok && groups != 10) {
      bson_set_error (e, 0, 0, "aggregate: %ld groups, expected 10", groups);
      ok = false;
   }
   mongoc_cursor_destroy (cur);
   return ok;
}

/* mongo_helper_aggregate() materialises the 10 groups into an array, as
 * raw's loop does; it takes the stages as an array document. */
status_t
helper_aggregate (run_t *r)
{
   bson_t *wrapped = agg_pipeline ();
   bson_t stages;
   bson_iter_t it;
   const uint8_t *data;
   uint32_t len;
   status_t st = ST_OK;

   if (!bson_iter_init_find (&it, wrapped, "pipeline") || !BSON_ITER_HOLDS_ARRAY (&it)) {
      bson_destroy (wrapped);
      return fail (r, "aggregate: pipeline not built");
   }
   bson_iter_array (&it, &len, &data);
   bson_init_static (&stages, data, len);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      mongo_helper_error_t me;
      bson_t out;

      if (!mongo_helper_aggregate (NULL, "bench_flat", &stages, NULL, &out, &me)) {
         st = fail_mh (r, "mongo_helper_aggregate", &me);
      } else if (bson_count_keys (&out) != 10) {
         st = fail (r, "aggregate: %u groups, expected 10", bson_count_keys (&out));
      }
      bson_destroy (&out);
   }
   bson_destroy (wrapped);
   return st;
}

status_t
raw_aggregate (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_flat");
   bson_t *pipeline = agg_pipeline ();
   bson_error_t e;
   status_t st = ST_OK;

   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!op_aggregate (coll, pipeline, &e)) {
         st = fail_bson (r, "aggregate", &e);
      }
   }
   bson_destroy (pipeline);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: streaming a large collection in chunks -------------------- */

bool
setup_stream (char *err, size_t err_size)
{
   static long seeded = -1;

   if (seeded == B.stream_docs) {
      return true;
   }
   if (!admin_seed ("bench_stream", B.stream_docs, gen_flat_id, err, err_size)) {
      return false;
   }
   seeded = B.stream_docs;
   return true;
}

/* Streams the first r->ops documents in server batches of STREAM_CHUNK and
 * records how resident memory moved: it must not grow with the count. */
static status_t
stream_in (mongoc_collection_t *coll, run_t *r)
{
   bson_t *opts = BCON_NEW ("batchSize", BCON_INT32 (STREAM_CHUNK));
   bson_error_t e;
   long before, n;
   bool ok;

   if (r->ops < B.stream_docs) {
      BSON_APPEND_INT64 (opts, "limit", r->ops); /* the warm-up reads a part */
   }
   before = rss_kb ();
   ok = op_find_all (coll, opts, &n, &e);

   r->rss_growth_kb = rss_kb () - before;
   r->peak_growth_kb = hwm_kb () - before;
   bson_destroy (opts);
   if (!ok) {
      return fail_bson (r, "stream", &e);
   }
   return n == r->ops ? ST_OK : fail (r, "stream: %ld documents, expected %ld", n, r->ops);
}

status_t
helper_stream (run_t *r)
{
   mongo_helper_find_opts_t fo;
   mongo_helper_error_t me;
   chunk_count_t c = {0, 0};
   long before;
   bool ok;

   memset (&fo, 0, sizeof fo);
   if (r->ops < B.stream_docs) {
      fo.limit = r->ops; /* the warm-up reads a part */
   }
   before = rss_kb ();
   ok = mongo_helper_find_stream (
      NULL, "bench_stream", NULL, &fo, STREAM_CHUNK, count_chunk, &c, &me);
   r->rss_growth_kb = rss_kb () - before;
   r->peak_growth_kb = hwm_kb () - before;
   if (!ok) {
      return fail_mh (r, "mongo_helper_find_stream", &me);
   }
   if (c.bad) {
      return fail (r, "stream: %ld empty documents or chunks out of order", c.bad);
   }
   return c.n == r->ops ? ST_OK : fail (r, "stream: %ld documents, expected %ld", c.n, r->ops);
}

status_t
raw_stream (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_stream");
   status_t st = stream_in (coll, r);

   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: GridFS upload + download ---------------------------------- */

bool
prep_gridfs (side_t side, char *err, size_t err_size)
{
   char name[64], coll[80];

   coll_name (name, sizeof name, "fs", side);
   snprintf (coll, sizeof coll, "%s.files", name);
   if (!admin_drop (coll, err, err_size)) {
      return false;
   }
   snprintf (coll, sizeof coll, "%s.chunks", name);
   return admin_drop (coll, err, err_size);
}

/* One operation: upload r->param bytes, download them, compare. */
static status_t
gridfs_in (mongoc_database_t *db, side_t side, run_t *r)
{
   char name[64], fname[64];
   bson_t *opts;
   mongoc_gridfs_bucket_t *bucket;
   bson_error_t e;
   status_t st = ST_OK;
   uint8_t *back = bson_malloc ((size_t) r->param + 1);

   coll_name (name, sizeof name, "fs", side);
   opts = BCON_NEW ("bucketName", BCON_UTF8 (name));
   bucket = mongoc_gridfs_bucket_new (db, opts, NULL, &e);
   if (!bucket) {
      st = fail_bson (r, "gridfs bucket", &e);
   }
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      bson_value_t id;
      mongoc_stream_t *up, *down;
      ssize_t got = 0, k;

      snprintf (fname, sizeof fname, "blob-%ld", j);
      up = mongoc_gridfs_bucket_open_upload_stream (bucket, fname, NULL, &id, &e);
      if (!up) {
         st = fail_bson (r, "gridfs open upload", &e);
         break;
      }
      if (mongoc_stream_write (up, B.blob, (size_t) r->param, 0) != (ssize_t) r->param ||
          mongoc_gridfs_bucket_stream_error (up, &e)) {
         st = fail_bson (r, "gridfs upload", &e);
      }
      mongoc_stream_close (up);
      mongoc_stream_destroy (up);
      if (st == ST_OK) {
         down = mongoc_gridfs_bucket_open_download_stream (bucket, &id, &e);
         if (!down) {
            st = fail_bson (r, "gridfs open download", &e);
         } else {
            while ((k = mongoc_stream_read (
                       down, back + got, (size_t) (r->param + 1 - got), 1, 0)) > 0) {
               got += k;
            }
            if (mongoc_gridfs_bucket_stream_error (down, &e)) {
               st = fail_bson (r, "gridfs download", &e);
            } else if (got != r->param || memcmp (back, B.blob, (size_t) r->param) != 0) {
               st = fail (r,
                          "gridfs: downloaded %ld bytes differ from the %ld uploaded",
                          (long) got,
                          r->param);
            }
            mongoc_stream_destroy (down);
         }
      }
      bson_value_destroy (&id);
   }
   mongoc_gridfs_bucket_destroy (bucket);
   bson_destroy (opts);
   bson_free (back);
   return st;
}

/* One operation: put r->param bytes, get them back, compare. */
status_t
helper_gridfs (run_t *r)
{
   char name[64], fname[64];
   mongo_helper_gridfs_opts_t go;
   status_t st = ST_OK;

   coll_name (name, sizeof name, "fs", SIDE_HELPER);
   memset (&go, 0, sizeof go);
   go.bucket = name;
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      mongo_helper_error_t me;
      bson_value_t id;
      uint8_t *data = NULL;
      size_t len = 0;

      snprintf (fname, sizeof fname, "blob-%ld", j);
      if (!mongo_helper_gridfs_put (&go, fname, B.blob, (size_t) r->param, NULL, NULL, &id, &me)) {
         return fail_mh (r, "mongo_helper_gridfs_put", &me);
      }
      if (!mongo_helper_gridfs_get (&go, &id, &data, &len, &me)) {
         st = fail_mh (r, "mongo_helper_gridfs_get", &me);
      } else if (len != (size_t) r->param || memcmp (data, B.blob, len) != 0) {
         st = fail (r, "gridfs: downloaded %zu bytes differ from the %ld uploaded", len, r->param);
      }
      bson_free (data);
      bson_value_destroy (&id);
   }
   return st;
}

status_t
raw_gridfs (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_database_t *db = mongoc_client_get_database (c, B.db);
   status_t st = gridfs_in (db, SIDE_RAW, r);

   mongoc_database_destroy (db);
   raw_push (c);
   return st;
}
