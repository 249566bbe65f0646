/*
 * ops.c — the document operations every area above runs through mh_run:
 * find, insert, update, delete, count, find-and-modify and distinct (layer
 * 7, shared).  The documents they send are checked here, once, whoever
 * called (depth, size, well-formedness; names and UTF-8 for what is
 * stored): the callers check only what is theirs (NULL, names, ranges).
 */
#include "mh_private.h"

/* ---- limits every read shares ---- */

const bson_t *
mh_opts_max_time (const mh_attempt_t *a, const bson_t *opts, bson_t *scratch)
{
   int32_t ms = mh_limit_max_time_ms (a->config);

   bson_init (scratch);
   if (ms <= 0 || (opts && bson_has_field (opts, "maxTimeMS"))) {
      return opts;
   }
   if (opts) {
      bson_concat (scratch, opts);
   }
   BSON_APPEND_INT32 (scratch, "maxTimeMS", ms);
   return scratch;
}

/* Renders one document; NULL with INVALID_ARGUMENT when it is nested too
 * deeply to render safely or is not valid BSON. */
static char *
mh_json_one (const char *what, const char *label, const bson_t *doc, mongo_helper_error_t *error)
{
   char *json;

   if (!mh_doc_check (what, label, doc, error)) {
      return NULL;
   }
   json = bson_as_relaxed_extended_json (doc, NULL);
   if (!json) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "%s: the %s cannot be rendered as JSON (invalid UTF-8 or a corrupt value)",
               what,
               label);
   }
   return json;
}

static char *
mh_json_too_big (const char *what, size_t max_bytes, const char *hint, mongo_helper_error_t *error)
{
   mh_fail (error,
            MONGO_HELPER_ERROR_INVALID_ARGUMENT,
            MONGOC_ERROR_CLIENT_TOO_BIG,
            "%s: the results pass max_result_bytes (%zu bytes) as JSON text: %s",
            what,
            max_bytes,
            hint);
   return NULL;
}

char *
mh_json_doc (const char *what,
             const bson_t *doc,
             size_t max_bytes,
             const char *hint,
             mongo_helper_error_t *error)
{
   char *json = mh_json_one (what, "document", doc, error);

   if (json && max_bytes && strlen (json) > max_bytes) {
      bson_free (json);
      return mh_json_too_big (what, max_bytes, hint, error);
   }
   return json;
}

char *
mh_json_array (const char *what,
               const bson_t *array,
               size_t max_bytes,
               const char *hint,
               mongo_helper_error_t *error)
{
   bson_string_t *out;
   bson_iter_t it;
   bool first = true;

   if (!array || !bson_iter_init (&it, array)) {
      mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: the array is NULL or corrupt", what);
      return NULL;
   }
   out = bson_string_new ("[");
   while (bson_iter_next (&it)) {
      const uint8_t *data;
      uint32_t len;
      bson_t doc;
      char label[48];
      char *json = NULL;

      bson_snprintf (label, sizeof label, "element %.16s", bson_iter_key (&it));
      if (!BSON_ITER_HOLDS_DOCUMENT (&it)) {
         mh_fail (
            error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: %s is not a document", what, label);
      } else {
         bson_iter_document (&it, &len, &data);
         if (bson_init_static (&doc, data, len)) {
            json = mh_json_one (what, label, &doc, error);
         } else {
            mh_fail (
               error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: %s is corrupt", what, label);
         }
      }
      if (!json) {
         bson_string_free (out, true);
         return NULL;
      }
      /* Checked per document: the text never passes the cap by more than
       * the one document just rendered. */
      if (max_bytes && (size_t) out->len + strlen (json) + 3 > max_bytes) {
         bson_free (json);
         bson_string_free (out, true);
         return mh_json_too_big (what, max_bytes, hint, error);
      }
      if (!first) {
         bson_string_append (out, ", ");
      }
      bson_string_append (out, json);
      bson_free (json);
      first = false;
   }
   if (it.err_off) {
      bson_string_free (out, true);
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: the array is corrupt", what);
      return NULL;
   }
   bson_string_append (out, "]");
   return bson_string_free (out, false);
}

/* The documents an operation hands to libmongoc, whose validation
 * recurses, are depth-checked here whoever called: the web helpers pass
 * their callers' values inside their own documents.  (Options are built
 * by the callers, a caller's projection or sort one level down: they check
 * those.)  NULL passes. */
static bool
mh_ops_check (const mh_call_t *call,
              const char *label,
              const bson_t *doc,
              mongo_helper_error_t *error)
{
   return !doc || (call->flags & MH_OP_CHECKED) ||
          mh_doc_check (mh_op_name (call->op), label, doc, error);
}

/* ---- find ---- */

typedef struct {
   const bson_t *filter;
   const bson_t *opts;
   bool first_only;  /* stop at the first document */
   bool limit_one;   /* first_only, no opts: {limit: 1} */
   bson_t *results;  /* array; with first_only the document itself */
   bool found;       /* first_only: a document was copied */
   size_t max_bytes; /* out: the cap in force */
} mh_find_ctx_t;

/* {limit: 1 (int64), maxTimeMS: the default} written into `buf`, without
 * maxTimeMS when there is none: what mh_opts_max_time() would make of
 * {limit: 1}, without building two documents per find_one. */
static const bson_t *
mh_opts_limit_one (const mh_attempt_t *a, uint8_t buf[35], bson_t *scratch)
{
   /* clang-format off */
   static const uint8_t tmpl[35] = {
      35, 0, 0, 0,
      BSON_TYPE_INT64, 'l', 'i', 'm', 'i', 't', 0, 1, 0, 0, 0, 0, 0, 0, 0,
      BSON_TYPE_INT32, 'm', 'a', 'x', 'T', 'i', 'm', 'e', 'M', 'S', 0, 0, 0, 0, 0,
      0};
   /* clang-format on */
   int32_t ms = mh_limit_max_time_ms (a->config);
   uint32_t le;

   memcpy (buf, tmpl, sizeof tmpl);
   if (ms <= 0) {
      buf[0] = 20; /* {limit: 1} */
      buf[19] = 0;
      BSON_ASSERT (bson_init_static (scratch, buf, 20));
      return scratch;
   }
   le = BSON_UINT32_TO_LE ((uint32_t) ms);
   memcpy (buf + 30, &le, sizeof le);
   BSON_ASSERT (bson_init_static (scratch, buf, sizeof tmpl));
   return scratch;
}

static bool
mh_find_op (mh_attempt_t *a, void *ctx)
{
   mh_find_ctx_t *c = ctx;
   bson_t empty = BSON_INITIALIZER, scratch;
   uint8_t buf[35];
   mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (
      a->coll,
      c->filter ? c->filter : &empty,
      c->limit_one ? mh_opts_limit_one (a, buf, &scratch) : mh_opts_max_time (a, c->opts, &scratch),
      NULL);
   const bson_t *doc;
   bool ok;

   c->max_bytes = mh_limit_result_bytes (a->config);
   if (c->first_only) {
      /* With limit 1 the server closed the cursor with the first batch, so
       * a second mongoc_cursor_next() would only confirm the end.  One
       * document is bounded by MongoDB's own 16 MiB, and copied once,
       * straight into the caller's. */
      bson_reinit (c->results);
      c->found = mongoc_cursor_next (cursor, &doc);
      if (c->found) {
         bson_concat (c->results, doc);
      }
      ok = !mongoc_cursor_error (cursor, &a->error);
      mongoc_cursor_destroy (cursor);
   } else {
      ok = mh_cursor_drain (cursor, c->results, c->max_bytes, &a->error);
   }
   bson_destroy (&scratch);
   return ok;
}

bool
mh_crud_find_ex (const mh_call_t *call,
                 const bson_t *filter,
                 const bson_t *opts,
                 bson_t *results,
                 size_t *max_bytes,
                 mongo_helper_error_t *error)
{
   mh_find_ctx_t ctx = {filter, opts, false, false, results, false, 0};
   bool ok;

   ok = mh_ops_check (call, "filter", filter, error) && mh_run (call, mh_find_op, &ctx, error);
   if (max_bytes) {
      *max_bytes = ctx.max_bytes;
   }
   return ok;
}

bool
mh_crud_find (const mh_call_t *call,
              const bson_t *filter,
              const bson_t *opts,
              bson_t *results,
              mongo_helper_error_t *error)
{
   return mh_crud_find_ex (call, filter, opts, results, NULL, error);
}

bool
mh_crud_find_one_ex (const mh_call_t *call,
                     const bson_t *filter,
                     const bson_t *opts,
                     bool limit_one,
                     bson_t *doc,
                     bool *found,
                     size_t *max_bytes,
                     mongo_helper_error_t *error)
{
   mh_find_ctx_t ctx = {filter, opts, true, limit_one && !opts, doc, false, 0};
   bool ok = mh_ops_check (call, "filter", filter, error) && mh_run (call, mh_find_op, &ctx, error);

   *found = ok && ctx.found;
   if (!*found) {
      bson_reinit (doc);
   }
   if (max_bytes) {
      *max_bytes = ctx.max_bytes;
   }
   return ok;
}

bool
mh_crud_find_one (const mh_call_t *call,
                  const bson_t *filter,
                  const bson_t *opts,
                  bson_t *doc,
                  bool *found,
                  mongo_helper_error_t *error)
{
   return mh_crud_find_one_ex (call, filter, opts, false, doc, found, NULL, error);
}

typedef struct {
   const bson_t *doc;
} mh_insert_ctx_t;

/* {"validate": false}: the documents were checked by mh_doc_check_stored(),
 * so libmongoc need not walk every string again. */
static const uint8_t mh_no_validate_bytes[] =
   {16, 0, 0, 0, BSON_TYPE_BOOL, 'v', 'a', 'l', 'i', 'd', 'a', 't', 'e', 0, 0, 0};

void
mh_opts_no_validate (bson_t *opts)
{
   BSON_ASSERT (bson_init_static (opts, mh_no_validate_bytes, sizeof mh_no_validate_bytes));
}

static bool
mh_insert_one_op (mh_attempt_t *a, void *ctx)
{
   mh_insert_ctx_t *c = ctx;
   bson_t reply, opts;
   bool ok;

   mh_opts_no_validate (&opts);
   ok = mongoc_collection_insert_one (a->coll, c->doc, &opts, &reply, &a->error);

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

   return ((call->flags & MH_OP_CHECKED) ||
           mh_doc_check_stored (mh_op_name (call->op), "document", doc, error)) &&
          mh_run (call, mh_insert_one_op, &ctx, error);
}

/* The driver would add an _id too, but would not tell us which: making it
 * here is what lets the caller learn it.  Returns false when `doc` has one
 * (use `doc` itself), else true with `with_id` a copy with a new ObjectId
 * first (the caller's bson_t, as libmongoc's own copy is: no heap bson_t).
 * `id` (may be NULL) is left on the _id of the document to insert. */
bool
mh_doc_with_id (const bson_t *doc, bson_t *with_id, bson_iter_t *id)
{
   bson_iter_t it;
   bson_oid_t oid;

   if (bson_iter_init_find (&it, doc, "_id")) {
      if (id) {
         *id = it;
      }
      return false;
   }
   bson_oid_init (&oid, NULL);
   bson_init (with_id);
   BSON_APPEND_OID (with_id, "_id", &oid);
   bson_concat (with_id, doc);
   if (id) {
      bson_iter_init_find (id, with_id, "_id");
   }
   return true;
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
   BSON_APPEND_BOOL (&opts, "validate", false); /* mh_docs_check() did */
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
   bool ok =
      ((call->flags & MH_OP_CHECKED) || mh_docs_check (mh_op_name (call->op), docs, n, error)) &&
      mh_run (call, mh_insert_many_op, &ctx, error);

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
   bool checked; /* a replacement built around values the caller checked */
} mh_update_ctx_t;

/* The update options, static: {upsert: true} and, for a replacement of
 * MH_OP_CHECKED, {validate: false}: its values passed
 * mh_doc_check_embedded() (strict UTF-8, no empty keys, depth),
 * and mh_replace_top_ok() checks the one rule of libmongoc's replace
 * validation that check leaves, no '$' key at the top, so libmongoc need
 * not walk the values again. */
/* clang-format off */
static const uint8_t mh_upsert_bytes[] = {
   14, 0, 0, 0, BSON_TYPE_BOOL, 'u', 'p', 's', 'e', 'r', 't', 0, 1, 0};
static const uint8_t mh_upsert_no_validate_bytes[] = {
   25, 0, 0, 0, BSON_TYPE_BOOL, 'u', 'p', 's', 'e', 'r', 't', 0, 1,
   BSON_TYPE_BOOL, 'v', 'a', 'l', 'i', 'd', 'a', 't', 'e', 0, 0, 0};
/* clang-format on */

static bool
mh_replace_top_ok (const bson_t *doc)
{
   bson_iter_t it;

   if (!bson_iter_init (&it, doc)) {
      return false;
   }
   while (bson_iter_next (&it)) {
      if (bson_iter_key (&it)[0] == '$') {
         return false;
      }
   }
   return true;
}

static const bson_t *
mh_update_opts (const mh_update_ctx_t *c, bson_t *opts)
{
   /* Otherwise libmongoc validates it and refuses what it must. */
   if (c->checked && c->kind == MH_REPLACE_ONE && mh_replace_top_ok (c->update)) {
      if (c->upsert) {
         BSON_ASSERT (bson_init_static (
            opts, mh_upsert_no_validate_bytes, sizeof mh_upsert_no_validate_bytes));
      } else {
         mh_opts_no_validate (opts);
      }
      return opts;
   }
   if (c->upsert) {
      BSON_ASSERT (bson_init_static (opts, mh_upsert_bytes, sizeof mh_upsert_bytes));
      return opts;
   }
   return NULL;
}

void
mh_update_result_reset (mongo_helper_update_result_t *result)
{
   if (result) {
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

/* The counts and upsertedId of an update's reply, in one pass (numbers
 * of any type, as mh_bson_int64() reads them; 0 when absent). */
static void
mh_update_result_read (const bson_t *reply, mongo_helper_update_result_t *r)
{
   bson_iter_t it;
   bool upserted_id = false;

   mongo_helper_update_result_cleanup (r);
   if (!bson_iter_init (&it, reply)) {
      return;
   }
   while (bson_iter_next (&it)) {
      const char *k = bson_iter_key (&it);
      int64_t *n = strcmp (k, "matchedCount") == 0    ? &r->matched
                   : strcmp (k, "modifiedCount") == 0 ? &r->modified
                   : strcmp (k, "upsertedCount") == 0 ? &r->upserted
                                                      : NULL;

      if (n) {
         if (BSON_ITER_HOLDS_NUMBER (&it) || BSON_ITER_HOLDS_BOOL (&it)) {
            *n = bson_iter_as_int64 (&it);
         }
      } else if (!upserted_id && strcmp (k, "upsertedId") == 0) {
         bson_value_copy (bson_iter_value (&it), &r->upserted_id);
         upserted_id = true;
      }
   }
   if (upserted_id) {
      r->upserted = 1;
   }
}

static bool
mh_update_op (mh_attempt_t *a, void *ctx)
{
   mh_update_ctx_t *c = ctx;
   bson_t scratch;
   const bson_t *opts = mh_update_opts (c, &scratch);
   bson_t reply;
   bool ok;

   switch (c->kind) {
   case MH_UPDATE_ONE:
      ok = mongoc_collection_update_one (a->coll, c->filter, c->update, opts, &reply, &a->error);
      break;
   case MH_UPDATE_MANY:
      ok = mongoc_collection_update_many (a->coll, c->filter, c->update, opts, &reply, &a->error);
      break;
   default:
      ok = mongoc_collection_replace_one (a->coll, c->filter, c->update, opts, &reply, &a->error);
      break;
   }
   if (ok && c->result) {
      mh_update_result_read (&reply, c->result);
   } else if (!ok) {
      mh_attempt_labels (a, &reply);
   }
   bson_destroy (&reply);
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
   mh_update_ctx_t ctx = {kind, filter, update, upsert, result, (call->flags & MH_OP_CHECKED) != 0};

   mh_update_result_reset (result);
   return mh_ops_check (call, "filter", filter, error) &&
          mh_ops_check (call, kind == MH_REPLACE_ONE ? "replacement" : "update", update, error) &&
          mh_run (call, mh_update_op, &ctx, error);
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
   bool ok =
      mh_ops_check (call, "filter", filter, error) && mh_run (call, mh_delete_op, &ctx, error);

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
   bson_t scratch;
   const bson_t *opts = mh_opts_max_time (a, c->opts, &scratch);

   c->count =
      c->filter
         ? mongoc_collection_count_documents (a->coll, c->filter, opts, NULL, NULL, &a->error)
         : mongoc_collection_estimated_document_count (a->coll, opts, NULL, NULL, &a->error);
   bson_destroy (&scratch);
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
   bool ok =
      mh_ops_check (call, "filter", filter, error) && mh_run (call, mh_count_op, &ctx, error);

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
   if (mh_limit_max_time_ms (a->config) > 0) {
      mongoc_find_and_modify_opts_set_max_time_ms (fam,
                                                   (uint32_t) mh_limit_max_time_ms (a->config));
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
   bool ok = mh_ops_check (call, "filter", filter, error) &&
             mh_ops_check (call, "update", update, error) &&
             mh_ops_check (call, "sort", sort, error) && mh_run (call, mh_fam_op, &ctx, error);

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
   bson_t reply, scratch;
   bson_iter_t it, child;
   uint32_t i = 0;
   bool ok = mongoc_collection_read_command_with_opts (
      a->coll, c->command, NULL, mh_opts_max_time (a, NULL, &scratch), &reply, &a->error);

   bson_destroy (&scratch);
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

   if (!mh_ops_check (call, "filter", filter, error)) {
      bson_destroy (&cmd);
      return false;
   }
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
                      "%s: skip, limit and batch_size must not be negative (skip and limit "
                      "0 .. INT64_MAX, batch_size 0 .. INT32_MAX; 0: none / the server's)",
                      what);
   }
   /* Checked as the caller's documents: inside the options they sit one
    * level deeper, as they do inside the server's command. */
   if ((o->projection && !mh_doc_check (what, "projection", o->projection, error)) ||
       (o->sort && !mh_doc_check (what, "sort", o->sort, error))) {
      return false;
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
              size_t *max_bytes,
              mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_READ, database, collection, NULL};

   return mh_crud_find_ex (&call, filter, opts, results, max_bytes, error);
}
