/* Nesting depth: every public call that takes a caller's document bounds
 * its depth before anything (libbson's validation and JSON rendering,
 * libmongoc, the filter check's own walk) recurses over it.  For each entry
 * point: exactly MongoDB's limit (100 levels; 98 for JSON text, where
 * libbson's parser stops) is accepted and does what it should, 101 levels
 * are refused with INVALID_ARGUMENT naming the limit, and a 10,000-level
 * document is refused without a crash on a thread with a 256 KiB stack —
 * the regression test of the stack overflow (libbson's bson_validate()
 * overflowed such a stack at 300 levels, an 8 MB one at 10,000).  What
 * counts as a level is in test_depth_levels.c; the nesting builders and the
 * small-stack runner both use are in depth_fixture.h. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

#include "depth_fixture.h"

#define VERIFY(cond, ...)                     \
   do {                                       \
      if (verifying) {                        \
         ck_assert_msg ((cond), __VA_ARGS__); \
      }                                       \
   } while (0)

/* {key: child}, consuming child: one level more. */
static bson_t *
wrap (const char *key, bson_t *child)
{
   bson_t *b = bson_new ();

   BSON_APPEND_DOCUMENT (b, key, child);
   bson_destroy (child);
   return b;
}

/* {key: <levels - 1 nested levels>}: `levels` in all. */
static bson_t *
field (const char *key, int levels)
{
   return wrap (key, nest (levels - 1, NEST_DOC));
}

/* A pipeline of `levels` levels: [{$match: {a: ...}}]. */
static bson_t *
pipeline (int levels)
{
   bson_t *stage = wrap ("$match", field ("a", levels - 2));
   bson_t *p = bson_new ();

   BSON_APPEND_DOCUMENT (p, "0", stage);
   bson_destroy (stage);
   return p;
}

/* JSON text of `levels` levels: {"a": {"a": ... {"v": 1}}}, wrapped in
 * `before` / `after` (which add their own levels). */
static char *
json_nest (const char *before, int levels, const char *after)
{
   bson_string_t *s = bson_string_new (before);

   for (int i = 0; i < levels - 1; i++) {
      bson_string_append (s, "{\"a\": ");
   }
   bson_string_append (s, "{\"v\": 1}");
   for (int i = 0; i < levels - 1; i++) {
      bson_string_append (s, "}");
   }
   bson_string_append (s, after);
   return bson_string_free (s, false);
}

static int64_t
raw_count (const bson_t *filter)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_error_t e;
   int64_t n = mongoc_collection_count_documents (c, filter, NULL, NULL, NULL, &e);

   ck_assert_msg (n >= 0, "count failed: %s", e.message);
   mongoc_collection_destroy (c);
   return n;
}

static int32_t
first_id (const bson_t *array)
{
   bson_iter_t it;

   ck_assert (bson_iter_init (&it, array));
   ck_assert (bson_iter_find_descendant (&it, "0._id", &it));
   return bson_iter_int32 (&it);
}

static size_t
array_len (const bson_t *array)
{
   return bson_count_keys (array);
}

/* ---- one function per entry point: the argument under test has `L`
 * levels; returns what the call returned ---- */

static bool
c_filter_check (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bool ok = mongo_helper_filter_check (f, MONGO_HELPER_FILTER_STRICT, e);

   bson_destroy (f);
   return ok;
}

static bool
c_insert_one (int L, mongo_helper_error_t *e)
{
   bson_t *d = field ("b", L);
   bson_value_t id;
   bool ok = mongo_helper_insert_one (NULL, coll, d, &id, e);

   bson_value_destroy (&id);
   if (ok) {
      bson_t *f = field ("b", L);
      VERIFY (raw_count (f) == 1, "insert_one: the 100-level document was not stored");
      bson_destroy (f);
   }
   bson_destroy (d);
   return ok;
}

static bool
c_insert_many (int L, mongo_helper_error_t *e)
{
   bson_t *x = BCON_NEW ("x", BCON_INT32 (1));
   bson_t *d = field ("b", L);
   const bson_t *docs[2] = {x, d};
   int64_t n = 0;
   bool ok = mongo_helper_insert_many (NULL, coll, docs, 2, true, &n, e);

   VERIFY (!ok || n == 2, "insert_many: expected 2 inserted, got %lld", (long long) n);
   bson_destroy (x);
   bson_destroy (d);
   return ok;
}

static bool
c_bulk_insert (int L, mongo_helper_error_t *e)
{
   bson_t *x = BCON_NEW ("x", BCON_INT32 (1));
   bson_t *d = field ("b", L);
   const bson_t *docs[2] = {x, d};
   mongo_helper_bulk_result_t *r = NULL;
   bool ok = mongo_helper_bulk_insert (NULL, coll, docs, 2, 1, true, &r, e);

   VERIFY (!ok || r->inserted == 2, "bulk_insert: expected 2 inserted");
   mongo_helper_bulk_result_destroy (r);
   bson_destroy (x);
   bson_destroy (d);
   return ok;
}

static bool
c_find_filter (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bson_t res;
   bool ok = mongo_helper_find (NULL, coll, f, NULL, &res, e);

   VERIFY (!ok || (array_len (&res) == 1 && first_id (&res) == 1),
           "find: expected the document with _id 1");
   bson_destroy (&res);
   bson_destroy (f);
   return ok;
}

static bool
c_find_projection (int L, mongo_helper_error_t *e)
{
   mongo_helper_find_opts_t o = {0};
   bson_t res;
   bool ok;

   o.projection = field ("a", L);
   ok = mongo_helper_find (NULL, coll, NULL, &o, &res, e);
   bson_destroy (&res);
   bson_destroy ((bson_t *) o.projection);
   return ok;
}

static bool
c_find_sort (int L, mongo_helper_error_t *e)
{
   mongo_helper_find_opts_t o = {0};
   bson_t res;
   bool ok;

   o.sort = field ("a", L);
   ok = mongo_helper_find (NULL, coll, NULL, &o, &res, e);
   bson_destroy (&res);
   bson_destroy ((bson_t *) o.sort);
   return ok;
}

static bool
c_find_one (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bson_t *doc = mongo_helper_find_one (NULL, coll, f, NULL, e);
   bson_iter_t it;

   VERIFY (!doc || (bson_iter_init_find (&it, doc, "_id") && bson_iter_int32 (&it) == 1),
           "find_one: expected _id 1");
   bson_destroy (f);
   bson_destroy (doc);
   return doc != NULL;
}

static bool
count_chunk (const bson_t *const *docs, size_t n, void *user_data)
{
   (void) docs;
   *(size_t *) user_data += n;
   return true;
}

static bool
c_find_stream (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   size_t seen = 0;
   bool ok = mongo_helper_find_stream (NULL, coll, f, NULL, 10, count_chunk, &seen, e);

   VERIFY (!ok || seen == 1, "find_stream: expected 1 document, got %zu", seen);
   bson_destroy (f);
   return ok;
}

static bool
c_update_one_filter (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bson_t *u = BCON_NEW ("$set", "{", "u", BCON_INT32 (1), "}");
   mongo_helper_update_result_t r;
   bool ok = mongo_helper_update_one (NULL, coll, f, u, false, &r, e);

   VERIFY (!ok || r.matched == 1, "update_one: expected 1 matched");
   mongo_helper_update_result_cleanup (&r);
   bson_destroy (f);
   bson_destroy (u);
   return ok;
}

static bool
c_update_one_update (int L, mongo_helper_error_t *e)
{
   bson_t *f = BCON_NEW ("_id", BCON_INT32 (2));
   bson_t *u = wrap ("$set", field ("c", L - 1));
   mongo_helper_update_result_t r;
   bool ok = mongo_helper_update_one (NULL, coll, f, u, false, &r, e);

   VERIFY (!ok || r.modified == 1, "update_one: expected 1 modified");
   mongo_helper_update_result_cleanup (&r);
   bson_destroy (f);
   bson_destroy (u);
   return ok;
}

static bool
c_update_many_filter (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bson_t *u = BCON_NEW ("$set", "{", "u", BCON_INT32 (1), "}");
   mongo_helper_update_result_t r;
   bool ok = mongo_helper_update_many (NULL, coll, f, u, false, &r, e);

   VERIFY (!ok || r.matched == 1, "update_many: expected 1 matched");
   mongo_helper_update_result_cleanup (&r);
   bson_destroy (f);
   bson_destroy (u);
   return ok;
}

static bool
c_replace_one (int L, mongo_helper_error_t *e)
{
   bson_t *f = BCON_NEW ("_id", BCON_INT32 (2));
   bson_t *d = field ("a", L);
   mongo_helper_update_result_t r;
   bool ok = mongo_helper_replace_one (NULL, coll, f, d, false, &r, e);

   VERIFY (!ok || (r.matched == 1 && raw_count (d) == 2), "replace_one: expected it stored");
   mongo_helper_update_result_cleanup (&r);
   bson_destroy (f);
   bson_destroy (d);
   return ok;
}

static bool
c_delete_one (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   int64_t n = 0;
   bool ok = mongo_helper_delete_one (NULL, coll, f, &n, e);

   VERIFY (!ok || n == 1, "delete_one: expected 1 deleted");
   bson_destroy (f);
   return ok;
}

static bool
c_delete_many (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   int64_t n = 0;
   bool ok = mongo_helper_delete_many (NULL, coll, f, &n, e);

   VERIFY (!ok || n == 1, "delete_many: expected 1 deleted");
   bson_destroy (f);
   return ok;
}

static bool
c_count (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   int64_t n = 0;
   bool ok = mongo_helper_count_documents (NULL, coll, f, &n, e);

   VERIFY (!ok || n == 1, "count_documents: expected 1, got %lld", (long long) n);
   bson_destroy (f);
   return ok;
}

static bool
c_distinct (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bson_t v;
   bool ok = mongo_helper_distinct (NULL, coll, "_id", f, &v, e);

   VERIFY (!ok || array_len (&v) == 1, "distinct: expected one value");
   bson_destroy (&v);
   bson_destroy (f);
   return ok;
}

static bool
c_aggregate (int L, mongo_helper_error_t *e)
{
   bson_t *p = pipeline (L);
   bson_t res;
   bool ok = mongo_helper_aggregate (NULL, coll, p, NULL, &res, e);

   /* [{$match: {a: <L - 3 levels>}}] matches the fixture's _id 3 at 100. */
   VERIFY (!ok || (array_len (&res) == 1 && first_id (&res) == 3),
           "aggregate: expected the document with _id 3");
   bson_destroy (&res);
   bson_destroy (p);
   return ok;
}

static bool
c_aggregate_stream (int L, mongo_helper_error_t *e)
{
   bson_t *p = pipeline (L);
   size_t seen = 0;
   bool ok = mongo_helper_aggregate_stream (NULL, coll, p, NULL, 10, count_chunk, &seen, e);

   VERIFY (!ok || seen == 1, "aggregate_stream: expected 1 document, got %zu", seen);
   bson_destroy (p);
   return ok;
}

static bool
c_create_index_keys (int L, mongo_helper_error_t *e)
{
   bson_t *k = field ("a", L);
   bool ok = mongo_helper_create_index (NULL, coll, k, NULL, NULL, e);

   bson_destroy (k);
   return ok;
}

static bool
c_create_index_options (int L, mongo_helper_error_t *e)
{
   bson_t *k = BCON_NEW ("k", BCON_INT32 (1));
   bson_t *o = wrap ("partialFilterExpression", field ("a", L - 1));
   bool ok = mongo_helper_create_index (NULL, coll, k, o, NULL, e);

   bson_destroy (k);
   bson_destroy (o);
   return ok;
}

static bool
c_text_search (int L, mongo_helper_error_t *e)
{
   bson_t *f = field ("a", L);
   bson_t res;
   bool ok = mongo_helper_text_search (NULL, coll, "word", NULL, f, 0, &res, e);

   bson_destroy (&res);
   bson_destroy (f);
   return ok;
}

static bool
c_gridfs_put (int L, mongo_helper_error_t *e)
{
   bson_t *m = field ("m", L);
   bson_value_t id;
   bool ok = mongo_helper_gridfs_put (NULL, "depth.bin", "abc", 3, NULL, m, &id, e);

   if (ok) {
      bson_value_destroy (&id);
   }
   bson_destroy (m);
   return ok;
}

static int64_t
read_nothing (void *buf, size_t len, void *user_data)
{
   (void) buf;
   (void) len;
   (void) user_data;
   return 0;
}

static bool
c_gridfs_put_reader (int L, mongo_helper_error_t *e)
{
   bson_t *m = field ("m", L);
   bson_value_t id;
   bool ok =
      mongo_helper_gridfs_put_reader (NULL, "depth.bin", read_nothing, NULL, NULL, m, &id, e);

   if (ok) {
      bson_value_destroy (&id);
   }
   bson_destroy (m);
   return ok;
}

/* A file id that is a document of `levels` levels. */
static void
doc_id (int levels, bson_t **holder, bson_value_t *id)
{
   *holder = nest (levels, NEST_DOC);
   memset (id, 0, sizeof *id);
   id->value_type = BSON_TYPE_DOCUMENT;
   id->value.v_doc.data = (uint8_t *) bson_get_data (*holder);
   id->value.v_doc.data_len = (*holder)->len;
}

static bool
c_gridfs_get (int L, mongo_helper_error_t *e)
{
   bson_t *holder;
   bson_value_t id;
   uint8_t *data = NULL;
   size_t len = 0;
   bool ok;

   doc_id (L, &holder, &id);
   ok = mongo_helper_gridfs_get (NULL, &id, &data, &len, e);
   bson_free (data);
   bson_destroy (holder);
   return ok;
}

static bool
c_gridfs_delete (int L, mongo_helper_error_t *e)
{
   bson_t *holder;
   bson_value_t id;
   bool ok;

   doc_id (L, &holder, &id);
   ok = mongo_helper_gridfs_delete (NULL, &id, e);
   bson_destroy (holder);
   return ok;
}

static bool
stop_at_once (const bson_t *event, void *user_data)
{
   (void) event;
   (void) user_data;
   return false;
}

static bool
c_watch_pipeline (int L, mongo_helper_error_t *e)
{
   mongo_helper_watch_opts_t o = {0};
   bson_t token;
   bool ok;

   o.pipeline = pipeline (L);
   o.timeout_ms = 1000;
   ok = mongo_helper_watch (coll, &o, stop_at_once, NULL, &token, e);
   bson_destroy (&token);
   bson_destroy ((bson_t *) o.pipeline);
   return ok;
}

static bool
c_watch_resume_after (int L, mongo_helper_error_t *e)
{
   mongo_helper_watch_opts_t o = {0};
   bson_t token;
   bool ok;

   o.resume_after = field ("_data", L);
   o.timeout_ms = 1000;
   ok = mongo_helper_watch (coll, &o, stop_at_once, NULL, &token, e);
   bson_destroy (&token);
   bson_destroy ((bson_t *) o.resume_after);
   return ok;
}

/* One descriptor through run_concurrent; its own error becomes `e`'s. */
static bool
run_one (mongo_helper_op_t *op, mongo_helper_error_t *e, bson_t *result_out)
{
   mongo_helper_op_result_t r;
   bool ok = mongo_helper_run_concurrent (op, 1, 1, &r, e);

   if (result_out) {
      bson_copy_to (&r.result, result_out);
   }
   mongo_helper_op_results_cleanup (&r, 1);
   return ok;
}

static bool
c_concurrent_filter (int L, mongo_helper_error_t *e)
{
   mongo_helper_op_t op = {0};
   bson_t res;
   bool ok;

   op.type = MONGO_HELPER_OP_COUNT;
   op.collection = coll;
   op.filter = field ("a", L);
   ok = run_one (&op, e, &res);
   VERIFY (!ok || bson_has_field (&res, "count"), "run_concurrent: no count");
   bson_destroy (&res);
   bson_destroy ((bson_t *) op.filter);
   return ok;
}

static bool
c_concurrent_document (int L, mongo_helper_error_t *e)
{
   mongo_helper_op_t op = {0};
   bool ok;

   op.type = MONGO_HELPER_OP_INSERT_ONE;
   op.collection = coll;
   op.document = field ("b", L);
   ok = run_one (&op, e, NULL);
   VERIFY (!ok || raw_count (op.document) == 1, "run_concurrent: the document was not stored");
   bson_destroy ((bson_t *) op.document);
   return ok;
}

static bool
c_concurrent_pipeline (int L, mongo_helper_error_t *e)
{
   mongo_helper_op_t op = {0};
   bool ok;

   op.type = MONGO_HELPER_OP_AGGREGATE;
   op.collection = coll;
   op.pipeline = pipeline (L);
   ok = run_one (&op, e, NULL);
   bson_destroy ((bson_t *) op.pipeline);
   return ok;
}

/* {find: coll, filter: {a: ...}}: `L` levels. */
static bson_t *
find_command (int L)
{
   bson_t *q = field ("a", L - 1);
   bson_t *cmd = BCON_NEW ("find", BCON_UTF8 (coll));

   BSON_APPEND_DOCUMENT (cmd, "filter", q);
   bson_destroy (q);
   return cmd;
}

/* The command found the fixture's _id 4 (whose `a` matches at 100 levels
 * of command), and only it. */
static bool
found_id_4 (const bson_t *reply)
{
   bson_iter_t it;

   return bson_iter_init (&it, reply) &&
          bson_iter_find_descendant (&it, "cursor.firstBatch.0._id", &it) &&
          bson_iter_as_int64 (&it) == 4 && !bson_has_field (reply, "cursor.firstBatch.1");
}

static bool
c_command (int L, mongo_helper_error_t *e)
{
   bson_t *cmd = find_command (L);
   bson_t reply;
   bool ok = mongo_helper_command (cmd, &reply, e);

   VERIFY (!ok || found_id_4 (&reply), "command: expected the document with _id 4");
   bson_destroy (&reply);
   bson_destroy (cmd);
   return ok;
}

static bool
c_read_command (int L, mongo_helper_error_t *e)
{
   bson_t *cmd = find_command (L);
   bson_t reply;
   bool ok = mongo_helper_read_command (cmd, 0, &reply, e);

   VERIFY (!ok || found_id_4 (&reply), "read_command: expected the document with _id 4");
   bson_destroy (&reply);
   bson_destroy (cmd);
   return ok;
}

static bool
c_array_to_json (int L, mongo_helper_error_t *e)
{
   bson_t *array = wrap ("0", nest (L, NEST_DOC));
   char *json = mongo_helper_array_to_json (array, e);
   bool ok = json != NULL;

   VERIFY (!ok || strstr (json, "\"v\" : 1"), "array_to_json: the innermost value is missing");
   bson_free (json);
   bson_destroy (array);
   return ok;
}

/* JSON text entry points. */

static bool
c_json_to_bson (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("", L, "");
   bson_t *b = mongo_helper_json_to_bson (j, e);
   bool ok = b != NULL;

   bson_destroy (b);
   bson_free (j);
   return ok;
}

static bool
c_filter_check_json (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("", L, "");
   bson_t out;
   bool ok = mongo_helper_filter_check_json (j, 0, &out, e);

   bson_destroy (&out);
   bson_free (j);
   return ok;
}

static bool
c_insert_one_json (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("", L, "");
   bson_value_t id;
   bool ok = mongo_helper_insert_one_json (NULL, coll, j, &id, e);

   bson_value_destroy (&id);
   bson_free (j);
   return ok;
}

static bool
c_find_json_filter (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("{\"a\": ", L - 1, "}");
   char *out = mongo_helper_find_json (NULL, coll, j, NULL, e);
   bool ok = out != NULL;

   /* {a: <97 levels>} matches the fixture's _id 3 at 98. */
   VERIFY (!ok || strstr (out, "\"_id\" : 3"), "find_json: expected _id 3 in %.80s", out);
   bson_free (out);
   bson_free (j);
   return ok;
}

static bool
c_find_json_opts (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("{\"projection\": {\"a\": ", L - 2, "}}");
   char *out = mongo_helper_find_json (NULL, coll, NULL, j, e);
   bool ok = out != NULL;

   bson_free (out);
   bson_free (j);
   return ok;
}

static bool
c_find_one_json (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("{\"a\": ", L - 1, "}");
   char *out = mongo_helper_find_one_json (NULL, coll, j, NULL, e);
   bool ok = out != NULL;

   VERIFY (!ok || strstr (out, "\"_id\" : 3"), "find_one_json: expected _id 3");
   bson_free (out);
   bson_free (j);
   return ok;
}

static bool
c_find_one_json_projection (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("{\"a\": ", L - 1, "}");
   char *out = mongo_helper_find_one_json (NULL, coll, "{\"_id\": 3}", j, e);
   bool ok = out != NULL;

   bson_free (out);
   bson_free (j);
   return ok;
}

static bool
c_update_json (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("{\"a\": ", L - 1, "}");
   mongo_helper_update_result_t r;
   bool ok =
      mongo_helper_update_json (NULL, coll, j, "{\"$set\": {\"u\": 1}}", false, false, &r, e);

   VERIFY (!ok || r.matched == 1, "update_json: expected 1 matched");
   mongo_helper_update_result_cleanup (&r);
   bson_free (j);
   return ok;
}

static bool
c_aggregate_json (int L, mongo_helper_error_t *e)
{
   char *j = json_nest ("[{\"$match\": {\"a\": ", L - 3, "}}]");
   char *out = mongo_helper_aggregate_json (NULL, coll, j, NULL, e);
   bool ok = out != NULL;

   bson_free (out);
   bson_free (j);
   return ok;
}

static const depth_case_t cases[] = {
   {"filter_check filter", c_filter_check, LIMIT, false},
   {"insert_one document", c_insert_one, LIMIT, false},
   {"insert_many documents", c_insert_many, LIMIT, false},
   {"bulk_insert documents", c_bulk_insert, LIMIT, false},
   {"find filter", c_find_filter, LIMIT, false},
   {"find projection", c_find_projection, LIMIT, true},
   {"find sort", c_find_sort, LIMIT, true},
   {"find_one filter", c_find_one, LIMIT, false},
   {"find_stream filter", c_find_stream, LIMIT, false},
   {"update_one filter", c_update_one_filter, LIMIT, false},
   {"update_one update", c_update_one_update, LIMIT, false},
   {"update_many filter", c_update_many_filter, LIMIT, false},
   {"replace_one replacement", c_replace_one, LIMIT, false},
   {"delete_one filter", c_delete_one, LIMIT, false},
   {"delete_many filter", c_delete_many, LIMIT, false},
   {"count_documents filter", c_count, LIMIT, false},
   {"distinct filter", c_distinct, LIMIT, false},
   {"aggregate pipeline", c_aggregate, LIMIT, false},
   {"aggregate_stream pipeline", c_aggregate_stream, LIMIT, false},
   {"create_index key pattern", c_create_index_keys, LIMIT, true},
   {"create_index options", c_create_index_options, LIMIT, true},
   {"text_search filter", c_text_search, LIMIT, true},
   {"gridfs_put metadata", c_gridfs_put, LIMIT, true},
   {"gridfs_put_reader metadata", c_gridfs_put_reader, LIMIT, true},
   {"gridfs_get file_id", c_gridfs_get, LIMIT, true},
   {"gridfs_delete file_id", c_gridfs_delete, LIMIT, true},
   {"watch pipeline", c_watch_pipeline, LIMIT, true},
   {"watch resume_after", c_watch_resume_after, LIMIT, true},
   {"run_concurrent filter", c_concurrent_filter, LIMIT, false},
   {"run_concurrent document", c_concurrent_document, LIMIT, false},
   {"run_concurrent pipeline", c_concurrent_pipeline, LIMIT, false},
   {"command", c_command, LIMIT, false},
   {"read_command", c_read_command, LIMIT, false},
   {"array_to_json element", c_array_to_json, LIMIT, false},
   {"json_to_bson", c_json_to_bson, JSON_LIMIT, false},
   {"filter_check_json", c_filter_check_json, JSON_LIMIT, false},
   {"insert_one_json", c_insert_one_json, JSON_LIMIT, false},
   {"find_json filter", c_find_json_filter, JSON_LIMIT, false},
   {"find_json options", c_find_json_opts, JSON_LIMIT, true},
   {"find_one_json filter", c_find_one_json, JSON_LIMIT, false},
   {"find_one_json projection", c_find_one_json_projection, JSON_LIMIT, true},
   {"update_json filter", c_update_json, JSON_LIMIT, false},
   {"aggregate_json pipeline", c_aggregate_json, JSON_LIMIT, false},
};

#define N_CASES ((int) (sizeof cases / sizeof *cases))

/* {_id: 1, a: <99 levels>} (100 in all), {_id: 2, b: 1}, {_id: 3, a: <97
 * levels>} (98 in all, what JSON text can express), {_id: 4, a: <98
 * levels>} (what a 100-level command's filter reaches). */
static void
insert_fixture (void)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_error_t e;
   bson_t *docs[4] = {field ("a", LIMIT),
                      BCON_NEW ("b", BCON_INT32 (1)),
                      field ("a", JSON_LIMIT),
                      field ("a", LIMIT - 1)};

   for (int i = 0; i < 4; i++) {
      bson_t *with_id = bson_new ();

      BSON_APPEND_INT32 (with_id, "_id", i + 1);
      bson_concat (with_id, docs[i]);
      ck_assert_msg (mongoc_collection_insert_one (c, with_id, NULL, NULL, &e),
                     "fixture insert: %s",
                     e.message);
      bson_destroy (with_id);
      bson_destroy (docs[i]);
   }
   mongoc_collection_destroy (c);
}

START_TEST (every_entry_point_accepts_mongodbs_nesting_limit)
{
   const depth_case_t *c = &cases[_i];
   bool ok;

   insert_fixture ();
   verifying = true;
   ok = c->run (c->max_ok, &err);
   if (c->server_decides) {
      ck_assert_msg (ok || !strstr (err.message, "nested too deeply"),
                     "%s at %d levels: refused for its depth: %s",
                     c->name,
                     c->max_ok,
                     err.message);
   } else {
      ck_assert_msg (ok,
                     "%s at %d levels: expected success, got %s: %s",
                     c->name,
                     c->max_ok,
                     mongo_helper_category_name (err.category),
                     err.message);
   }
}
END_TEST

START_TEST (every_entry_point_refuses_101_levels_naming_the_limit)
{
   const depth_case_t *c = &cases[_i];

   ck_assert_msg (!c->run (LIMIT + 1, &err), "%s at 101 levels: expected a refusal", c->name);
   assert_refused_for_depth (c, LIMIT + 1, &err);
}
END_TEST

START_TEST (every_entry_point_refuses_10000_levels_on_a_256k_stack)
{
   small_stack_run_t r = {&cases[_i], HOSTILE, true, {0}};

   run_on_small_stack (&r);
   ck_assert_msg (!r.ok, "%s at %d levels: expected a refusal", r.c->name, HOSTILE);
   assert_refused_for_depth (r.c, HOSTILE, &r.error);
}
END_TEST

Suite *
depth_suite (void)
{
   Suite *s = suite_create ("depth");
   TCase *edges = tcase_create ("edges");

   tcase_add_checked_fixture (edges, setup, teardown);
   tcase_set_timeout (edges, 60);
   tcase_add_loop_test (edges, every_entry_point_accepts_mongodbs_nesting_limit, 0, N_CASES);
   tcase_add_loop_test (edges, every_entry_point_refuses_101_levels_naming_the_limit, 0, N_CASES);
   tcase_add_loop_test (edges, every_entry_point_refuses_10000_levels_on_a_256k_stack, 0, N_CASES);
   suite_add_tcase (s, edges);
   return s;
}
