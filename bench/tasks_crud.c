/*
 * bench/tasks_crud.c — single-document tasks: run command, find one by _id, insert
 * one (small, large, invalid UTF-8).
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- Task: run command --------------------------------------------- */

status_t
helper_run_command (run_t *r)
{
   bson_t cmd = BSON_INITIALIZER, reply;
   mongo_helper_error_t e;
   status_t st = ST_OK;

   BSON_APPEND_INT32 (&cmd, "ping", 1);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!mongo_helper_command (&cmd, &reply, &e)) {
         st = fail_mh (r, "mongo_helper_command ping", &e);
      }
      bson_destroy (&reply);
   }
   bson_destroy (&cmd);
   return st;
}

status_t
raw_run_command (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   bson_t cmd = BSON_INITIALIZER, reply;
   bson_error_t e;
   status_t st = ST_OK;

   BSON_APPEND_INT32 (&cmd, "ping", 1);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!mongoc_client_command_simple (c, B.db, &cmd, NULL, &reply, &e)) {
         st = fail_bson (r, "ping", &e);
      }
      bson_destroy (&reply);
   }
   bson_destroy (&cmd);
   raw_push (c);
   return st;
}

/* ---- Task: find one by _id ----------------------------------------- */

bool
setup_flat (char *err, size_t err_size)
{
   static long seeded = -1;

   if (seeded == B.flat_coll_n) {
      return true;
   }
   if (!admin_seed ("bench_flat", B.flat_coll_n, gen_flat_id, err, err_size)) {
      return false;
   }
   seeded = B.flat_coll_n;
   return true;
}

/* The shared operation: find {_id: id} with limit 1, check what came back. */
bool
op_find_one (mongoc_collection_t *coll, int32_t id, bson_error_t *e)
{
   bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
   const bson_t *doc;
   bson_iter_t it;
   mongoc_cursor_t *cur;
   bool ok;

   BSON_APPEND_INT32 (&filter, "_id", id);
   BSON_APPEND_INT32 (&opts, "limit", 1);
   cur = mongoc_collection_find_with_opts (coll, &filter, &opts, NULL);
   ok = mongoc_cursor_next (cur, &doc);
   if (ok) {
      ok = bson_iter_init_find (&it, doc, "_id") && bson_iter_int32 (&it) == id;
      if (!ok) {
         bson_set_error (e, 0, 0, "find one: wrong document for _id %d", id);
      }
   } else if (!mongoc_cursor_error (cur, e)) {
      bson_set_error (e, 0, 0, "find one: no document with _id %d", id);
   }
   mongoc_cursor_destroy (cur);
   bson_destroy (&filter);
   bson_destroy (&opts);
   return ok;
}

/* The helper's find one: the same filter, the same check of the _id. */
bool
h_find_one (int32_t id, char *err, size_t err_size)
{
   bson_t filter = BSON_INITIALIZER;
   mongo_helper_error_t me;
   bson_iter_t it;
   bson_t *doc;
   bool ok;

   BSON_APPEND_INT32 (&filter, "_id", id);
   doc = mongo_helper_find_one (NULL, "bench_flat", &filter, NULL, &me);
   ok = doc && bson_iter_init_find (&it, doc, "_id") && BSON_ITER_HOLDS_INT32 (&it) &&
        bson_iter_int32 (&it) == id;
   if (!doc) {
      snprintf (err,
                err_size,
                "mongo_helper_find_one: %s: %.300s",
                mongo_helper_category_name (me.category),
                me.message);
   } else if (!ok) {
      snprintf (err, err_size, "mongo_helper_find_one: wrong document for _id %d", (int) id);
   }
   bson_destroy (doc);
   bson_destroy (&filter);
   return ok;
}

status_t
helper_find_one (run_t *r)
{
   for (long j = 0; j < r->ops; j++) {
      if (!h_find_one ((int32_t) (j % B.flat_coll_n), r->err, sizeof r->err)) {
         return ST_FAIL;
      }
   }
   return ST_OK;
}

status_t
raw_find_one (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_flat");
   bson_error_t e;
   status_t st = ST_OK;

   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!op_find_one (coll, (int32_t) (j % B.flat_coll_n), &e)) {
         st = fail_bson (r, "find one", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Tasks: insert one (small, large) ------------------------------- */

bool
prep_insert_small (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "insert_small", side);
   return admin_drop (name, err, err_size);
}

bool
prep_insert_large (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "insert_large", side);
   return admin_drop (name, err, err_size);
}

static status_t
helper_insert_one_common (run_t *r, const char *what, bool large)
{
   char name[64];
   mongo_helper_error_t me;

   coll_name (name, sizeof name, what, SIDE_HELPER);
   for (long j = 0; j < r->ops; j++) {
      if (!mongo_helper_insert_one (
             NULL, name, large ? B.large : B.flat[j % B.flat_n], NULL, &me)) {
         return fail_mh (r, "mongo_helper_insert_one", &me);
      }
   }
   /* every insert landed: counted after the clock stops */
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = r->ops;
   return ST_OK;
}

static status_t
raw_insert_one_common (run_t *r, const char *what, bool large)
{
   char name[64];
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll;
   bson_error_t e;
   status_t st = ST_OK;

   coll_name (name, sizeof name, what, SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!mongoc_collection_insert_one (
             coll, large ? B.large : B.flat[j % B.flat_n], NULL, NULL, &e)) {
         st = fail_bson (r, "insert one", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

status_t
helper_insert_small (run_t *r)
{
   return helper_insert_one_common (r, "insert_small", false);
}

status_t
raw_insert_small (run_t *r)
{
   return raw_insert_one_common (r, "insert_small", false);
}

status_t
helper_insert_large (run_t *r)
{
   return helper_insert_one_common (r, "insert_large", true);
}

status_t
raw_insert_large (run_t *r)
{
   return raw_insert_one_common (r, "insert_large", true);
}

/* ---- Task: insert one large document with invalid UTF-8 ------------- */

/* The bad path of insert_one_large: the same 1.5 MB document with one
 * invalid byte at the end of its last string.  A side that refuses it
 * before sending (its UTF-8 check has to read the whole document) is
 * measured; a side that would send it is "n/a" with the reason, never a
 * failure, and nothing of it counts.  libbson 1.23's bson_validate() drops
 * the invalid-UTF-8 result of bson_iter_visit_all() (cf. CDRIVER-4448), so
 * libmongoc 1.23's insert validates every string (twice) and still sends
 * invalid ones: raw is n/a there, and so is the helper until it checks
 * UTF-8 itself. */
bool
prep_insert_invalid (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "insert_invalid", side);
   return admin_drop (name, err, err_size);
}

static status_t
na (run_t *r, const char *fmt, ...)
{
   va_list ap;

   va_start (ap, fmt);
   vsnprintf (r->err, sizeof r->err, fmt, ap);
   va_end (ap);
   return ST_NA;
}

status_t
helper_insert_invalid (run_t *r)
{
   char name[64];

   coll_name (name, sizeof name, "insert_invalid", SIDE_HELPER);
   for (long j = 0; j < r->ops; j++) {
      mongo_helper_error_t me;
      bool utf8_error;

      if (mongo_helper_insert_one (NULL, name, B.large_bad, NULL, &me)) {
         return j == 0 ? na (r, "not rejected: mongo_helper_insert_one() stored the document")
                       : fail (r, "mongo_helper_insert_one() stored a document with invalid UTF-8");
      }
      utf8_error = me.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT &&
                   (strcasestr (me.message, "utf-8") || strcasestr (me.message, "utf8"));
      if (!utf8_error && j == 0) {
         return na (r,
                    "not rejected before sending: mongo_helper_insert_one() relies on libmongoc's "
                    "validation, which passes it on libbson %s; the server got it (%s: %.*s)",
                    bson_get_version (),
                    mongo_helper_category_name (me.category),
                    (int) (strcspn (me.message, ";") < 200 ? strcspn (me.message, ";") : 200),
                    me.message);
      }
      if (!utf8_error) {
         return fail_mh (r, "mongo_helper_insert_one: not rejected as invalid UTF-8", &me);
      }
   }
   /* nothing stored: counted after the clock stops */
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = 0;
   return ST_OK;
}

status_t
raw_insert_invalid (run_t *r)
{
   char name[64];
   mongoc_client_t *c;
   mongoc_collection_t *coll;
   status_t st = ST_OK;
   bson_error_t ve;

   /* libmongoc's default validation of an inserted document */
   if (bson_validate_with_error (B.large_bad,
                                 BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL |
                                    BSON_VALIDATE_EMPTY_KEYS | BSON_VALIDATE_DOT_KEYS |
                                    BSON_VALIDATE_DOLLAR_KEYS,
                                 &ve)) {
      return na (r,
                 "not rejected before sending: libbson %s's bson_validate() passes this document "
                 "(bson_iter_visit_all stops at the invalid string before the UTF-8 visitor sees "
                 "it, and bson_validate ignores that stop; cf. upstream CDRIVER-4448), so "
                 "mongoc_collection_insert_one() would send it to the server",
                 bson_get_version ());
   }
   coll_name (name, sizeof name, "insert_invalid", SIDE_RAW);
   c = raw_pop ();
   coll = mongoc_client_get_collection (c, B.db, name);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      bson_error_t e;

      if (mongoc_collection_insert_one (coll, B.large_bad, NULL, NULL, &e)) {
         st = fail (r, "insert one accepted a document with invalid UTF-8");
      } else if (e.domain != MONGOC_ERROR_COMMAND || e.code != MONGOC_ERROR_COMMAND_INVALID_ARG) {
         st = fail_bson (r, "insert one: not rejected as an invalid document", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   if (st == ST_OK) {
      snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
      r->verify_count = 0;
   }
   return st;
}
