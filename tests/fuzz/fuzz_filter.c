/* libFuzzer target: the filter checker on arbitrary BSON bytes (the first
 * byte chooses the flags), plus ObjectId parsing on the same bytes as
 * text.  Properties: no crash, no leak, only INVALID_ARGUMENT errors, and
 * an accepted strict filter holds no key starting with '$' other than
 * $and/$or/$nor. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "mongo_helper.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static bool
strict_ok (bson_iter_t *it, bool filter_level)
{
   while (bson_iter_next (it)) {
      const char *k = bson_iter_key (it);
      bson_iter_t child;
      bool logical = strcmp (k, "$and") == 0 || strcmp (k, "$or") == 0 || strcmp (k, "$nor") == 0;
      if (k[0] == '$' && !(filter_level && logical)) {
         return false;
      }
      if ((BSON_ITER_HOLDS_DOCUMENT (it) || BSON_ITER_HOLDS_ARRAY (it)) &&
          bson_iter_recurse (it, &child) && !strict_ok (&child, logical)) {
         return false;
      }
   }
   return true;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
   mongo_helper_error_t err;
   bson_oid_t oid;
   char *text;

   if (size >= 1) {
      unsigned flags = data[0] & 7u;
      bson_t b;
      if (bson_init_static (&b, data + 1, size - 1)) {
         if (mongo_helper_filter_check (&b, flags, &err)) {
            bson_iter_t it;
            if (flags == 0 && bson_iter_init (&it, &b) && !strict_ok (&it, true)) {
               abort ();
            }
         } else if (err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT) {
            abort ();
         }
      }
   }
   text = malloc (size + 1);
   memcpy (text, data, size);
   text[size] = '\0';
   if (mongo_helper_oid_from_string (text, &oid, &err) !=
       (strlen (text) == 24 && strspn (text, "0123456789abcdefABCDEF") == 24)) {
      abort ();
   }
   free (text);
   return 0;
}
