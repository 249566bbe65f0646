/* libFuzzer target: JSON request data -> BSON -> filter check, and the
 * redactor on the same text.  Properties: no crash, no leak; an accepted
 * filter is valid BSON and survives a round trip to JSON. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "mongo_helper.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
   char *text = malloc (size + 1);
   char redacted[512];
   mongo_helper_error_t err;
   bson_t out;
   unsigned flags = size ? data[0] & 7u : 0;

   memcpy (text, data, size);
   text[size] = '\0';
   if (mongo_helper_filter_check_json (text, flags, &out, &err)) {
      char *back;
      if (!bson_validate (&out, BSON_VALIDATE_NONE, NULL)) {
         abort ();
      }
      back = bson_as_canonical_extended_json (&out, NULL);
      bson_free (back);
   } else if (err.category != MONGO_HELPER_ERROR_INVALID_ARGUMENT) {
      abort ();
   }
   bson_destroy (&out);
   mongo_helper_redact (text, redacted, sizeof redacted);
   if (strlen (redacted) >= sizeof redacted) {
      abort ();
   }
   free (text);
   return 0;
}
