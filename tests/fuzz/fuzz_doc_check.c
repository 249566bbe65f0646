/* libFuzzer target: the depth and well-formedness check every caller's
 * document passes (mh_doc_check), and what runs after it, on arbitrary
 * bytes as BSON (the first byte picks the filter-check flags).
 * Properties: no crash, no leak; a refusal is INVALID_ARGUMENT; a document
 * the check accepts is nested at most 100 levels (measured here without
 * recursing), and libbson's recursive validation and JSON rendering and
 * the filter check's own walk then run on it without trouble; a document
 * refused for its depth is nested deeper than 100 levels.  Seeds include
 * 100-, 101- and 10,000-level documents and nested code-with-scope scopes
 * (tests/fuzz/corpus/fuzz_doc_check). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "src/mh_private.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The nesting of `doc` (top-level document = 1), counted up to `cap` + 1
 * with an explicit stack, documents, arrays and code-with-scope scopes
 * alike; -1 when the bytes are corrupt before that depth. */
static int
depth_of (const bson_t *doc, int cap)
{
   mh_iter_frame_t *stack = malloc ((size_t) (cap + 2) * sizeof *stack);
   int depth = 0, max = 1;

   if (!bson_iter_init (&stack[0].it, doc)) {
      free (stack);
      return -1;
   }
   while (depth >= 0 && max <= cap) {
      bson_iter_t *it = &stack[depth].it;

      if (!bson_iter_next (it)) {
         if (it->err_off) {
            max = -1;
            break;
         }
         depth--;
      } else if (BSON_ITER_HOLDS_DOCUMENT (it) || BSON_ITER_HOLDS_ARRAY (it)) {
         if (!bson_iter_recurse (it, &stack[depth + 1].it)) {
            max = -1;
            break;
         }
         depth++;
      } else if (BSON_ITER_HOLDS_CODEWSCOPE (it)) {
         const uint8_t *scope = NULL;
         uint32_t scope_len = 0, code_len;

         bson_iter_codewscope (it, &code_len, &scope_len, &scope);
         if (!scope || !bson_iter_init_from_data (&stack[depth + 1].it, scope, scope_len)) {
            max = -1;
            break;
         }
         depth++;
      }
      if (depth + 1 > max) {
         max = depth + 1;
      }
   }
   free (stack);
   return max;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
   mongo_helper_error_t err;
   bson_t b;
   unsigned flags;

   if (size < 1) {
      return 0;
   }
   flags = data[0] & 7u;
   if (!bson_init_static (&b, data + 1, size - 1)) {
      return 0;
   }
   if (mh_doc_check ("fuzz", "document", &b, &err)) {
      int depth = depth_of (&b, MH_MAX_DEPTH);
      char *json;

      if (depth < 1 || depth > MH_MAX_DEPTH) {
         abort (); /* accepted: well-formed and at most 100 levels */
      }
      /* What recurses once per level is safe now. */
      (void) bson_validate (&b, BSON_VALIDATE_NONE, NULL);
      json = bson_as_canonical_extended_json (&b, NULL);
      bson_free (json);
      if (!mongo_helper_filter_check (&b, flags, &err) &&
          err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT) {
         abort ();
      }
   } else {
      if (err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT) {
         abort ();
      }
      if (strstr (err.message, "nested too deeply") &&
          depth_of (&b, MH_MAX_DEPTH) <= MH_MAX_DEPTH) {
         abort (); /* refused for a depth it does not have */
      }
      /* The public check refuses it too, without crashing. */
      if (mongo_helper_filter_check (&b, flags, &err) ||
          err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT) {
         abort ();
      }
   }
   /* The same bytes as an array of results rendered as JSON. */
   {
      char *json = mongo_helper_array_to_json (&b, &err);

      if (!json && err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT) {
         abort ();
      }
      bson_free (json);
   }
   return 0;
}
