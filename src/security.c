/*
 * security.c — the filter check against query injection and ObjectId parsing (layer 4).
 */
#include "mh_private.h"

/* -- query injection -- */

typedef struct {
   unsigned flags;
   char path[512];
   mongo_helper_error_t *error;
} mh_filter_walk_t;

static bool
mh_filter_doc (mh_filter_walk_t *w, const bson_iter_t *doc, bool filter_context, int depth);

/* Appends ".key" (or "key" at the start) and returns the old length. */
static size_t
mh_filter_push (mh_filter_walk_t *w, const char *key)
{
   size_t len = strlen (w->path);

   bson_snprintf (w->path + len, sizeof w->path - len, "%s%s", len ? "." : "", key);
   return len;
}

static bool
mh_filter_reject (mh_filter_walk_t *w, const char *why)
{
   return mh_fail (
      w->error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "filter key '%s' %s", w->path, why);
}

/* Checks one value where a plain value (or, with ALLOW_OPERATORS, an
 * operator expression) is expected. */
static bool
mh_filter_value (mh_filter_walk_t *w, const bson_iter_t *it, int depth)
{
   switch (bson_iter_type (it)) {
   case BSON_TYPE_CODE:
   case BSON_TYPE_CODEWSCOPE:
      if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT)) {
         return mh_filter_reject (w, "holds JavaScript code, which the filter may not run");
      }
      return true;
   case BSON_TYPE_REGEX:
      if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_OPERATORS)) {
         return mh_filter_reject (w,
                                  "holds a regular expression where a plain "
                                  "value is expected");
      }
      return true;
   case BSON_TYPE_DOCUMENT:
   case BSON_TYPE_ARRAY:
      return mh_filter_doc (w, it, false, depth + 1);
   default:
      return true;
   }
}

static bool
mh_filter_doc (mh_filter_walk_t *w, const bson_iter_t *doc, bool filter_context, int depth)
{
   bson_iter_t child;

   /* mh_doc_check() bounded the depth before this walk began; this keeps
    * the recursion bounded on its own. */
   if (depth >= MH_MAX_DEPTH) {
      return mh_filter_reject (w, "is nested too deeply (more than 100 levels)");
   }
   {
      /* bson_validate() lets some corrupt nested documents through, and
       * the iterator would stop at them without a word (found by
       * fuzzing): check each one's framing here. */
      const uint8_t *raw = NULL;
      uint32_t raw_len = 0;
      bson_t sub;

      if (BSON_ITER_HOLDS_ARRAY (doc)) {
         bson_iter_array (doc, &raw_len, &raw);
      } else {
         bson_iter_document (doc, &raw_len, &raw);
      }
      if (!raw || !bson_init_static (&sub, raw, raw_len) || !bson_iter_recurse (doc, &child)) {
         return mh_filter_reject (w, "is not valid BSON");
      }
   }
   while (bson_iter_next (&child)) {
      const char *key = bson_iter_key (&child);
      size_t mark = mh_filter_push (w, key);
      bool ok = true;

      /* Array keys are checked too: hand-made BSON may give an array
       * element a key like "$where" (found by fuzzing). */
      if (key[0] == '$') {
         if (strcmp (key, "$where") == 0 || strcmp (key, "$function") == 0 ||
             strcmp (key, "$accumulator") == 0) {
            if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT)) {
               return mh_filter_reject (w,
                                        "runs server-side JavaScript, which request data may "
                                        "not do");
            }
            ok = mh_filter_value (w, &child, depth);
         } else if (strcmp (key, "$expr") == 0) {
            if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_EXPR)) {
               return mh_filter_reject (w,
                                        "is an aggregation expression ($expr), which is not "
                                        "allowed here (MONGO_HELPER_FILTER_ALLOW_EXPR)");
            }
            ok = mh_filter_value (w, &child, depth);
         } else if (filter_context && (strcmp (key, "$and") == 0 || strcmp (key, "$or") == 0 ||
                                       strcmp (key, "$nor") == 0)) {
            bson_iter_t el;

            if (!BSON_ITER_HOLDS_ARRAY (&child) || !bson_iter_recurse (&child, &el)) {
               return mh_filter_reject (w, "must be an array of filters");
            }
            while (ok && bson_iter_next (&el)) {
               size_t m2 = mh_filter_push (w, bson_iter_key (&el));
               if (bson_iter_key (&el)[0] == '$') {
                  return mh_filter_reject (w, "is a query operator where a filter is expected");
               }
               if (!BSON_ITER_HOLDS_DOCUMENT (&el)) {
                  return mh_filter_reject (w, "must be a filter document");
               }
               ok = mh_filter_doc (w, &el, true, depth + 1);
               w->path[m2] = '\0';
            }
            if (ok && el.err_off) {
               return mh_filter_reject (w, "is not valid BSON");
            }
         } else if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_OPERATORS)) {
            return mh_filter_reject (w, "is a query operator where a plain value is expected");
         } else {
            ok = mh_filter_value (w, &child, depth);
         }
      } else {
         ok = mh_filter_value (w, &child, depth);
      }
      if (!ok) {
         return false;
      }
      w->path[mark] = '\0';
   }
   if (child.err_off) {
      return mh_filter_reject (w, "is not valid BSON");
   }
   return true;
}

bool
mongo_helper_filter_check (const bson_t *filter, unsigned flags, mongo_helper_error_t *error)
{
   mh_filter_walk_t w;
   bson_iter_t top;
   bson_t wrapper = BSON_INITIALIZER;
   bool ok;

   mh_error_clear (error);
   if (!filter) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check: the filter is NULL");
   }
   /* The depth first, without recursing: bson_validate() and the walk
    * below recurse once per level. */
   if (!mh_doc_check ("mongo_helper_filter_check", "filter", filter, error)) {
      return false;
   }
   if (!bson_validate (filter, BSON_VALIDATE_NONE, NULL)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check: the filter is not valid "
                      "BSON");
   }
   /* The walker descends from an iterator; wrap the filter in one. */
   BSON_APPEND_DOCUMENT (&wrapper, "f", filter);
   memset (&w, 0, sizeof w);
   w.flags = flags;
   w.error = error;
   ok = bson_iter_init_find (&top, &wrapper, "f") && mh_filter_doc (&w, &top, true, 0);
   bson_destroy (&wrapper);
   return ok;
}

bool
mongo_helper_filter_check_json (const char *json,
                                unsigned flags,
                                bson_t *out,
                                mongo_helper_error_t *error)
{
   bson_t parsed;
   bson_error_t berr;
   size_t len;

   if (out) {
      bson_init (out);
   }
   mh_error_clear (error);
   if (!json) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check_json: the JSON is NULL");
   }
   len = strlen (json);
   if (len > (size_t) 16 * 1024 * 1024) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check_json: the JSON is %zu bytes, "
                      "more than the 16 MB a document may have",
                      len);
   }
   if (!bson_init_from_json (&parsed, json, (ssize_t) len, &berr)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check_json: malformed JSON (%s)%s",
                      berr.message,
                      mh_json_levels_hint (berr.message));
   }
   if (!mongo_helper_filter_check (&parsed, flags, error)) {
      bson_destroy (&parsed);
      return false;
   }
   if (out) {
      bson_destroy (out);
      bson_steal (out, &parsed);
   } else {
      bson_destroy (&parsed);
   }
   return true;
}

bool
mongo_helper_oid_from_string (const char *text, bson_oid_t *oid, mongo_helper_error_t *error)
{
   size_t len;

   mh_error_clear (error);
   if (!text || !oid) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_oid_from_string: %s is NULL",
                      text ? "oid" : "the text");
   }
   len = strnlen (text, 25);
   if (len != 24) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "invalid ObjectId: expected exactly 24 hexadecimal "
                      "digits, got %s%zu characters",
                      len > 24 ? "more than " : "",
                      len > 24 ? (size_t) 24 : len);
   }
   for (size_t i = 0; i < 24; i++) {
      if (!isxdigit ((unsigned char) text[i])) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "invalid ObjectId: character %zu is not a "
                         "hexadecimal digit (0-9, a-f)",
                         i + 1);
      }
   }
   bson_oid_init_from_string (oid, text);
   return true;
}
