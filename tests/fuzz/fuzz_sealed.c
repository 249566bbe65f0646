/* libFuzzer target: key-ring text and sealed records (src/keyring.c).
 *
 * The first byte chooses: even, the rest is key-ring text for
 * mh_keyring_parse; odd, the rest is the BSON of a sealed record opened
 * with a fixed ring.  Properties: no crash, no leak; a refused ring is a
 * CONFIG error, an accepted one has 1 to MH_KEYRING_MAX keys whose ids
 * are valid and whose records round-trip; a record that does not open is
 * an INTEGRITY error and leaves no plaintext behind, one that opens was
 * sealed with the fixed ring's key (the seed corpus holds one). */
#include "src/mh_private.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_RING                                        \
   "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,k1:" \
   "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

static void
fuzz_ring (const uint8_t *data, size_t size)
{
   mongo_helper_error_t err;
   char *text = bson_malloc (size + 1);
   mh_keyring_t *ring;

   memcpy (text, data, size);
   text[size] = '\0';
   ring = mh_keyring_parse (text, "fuzz", &err);
   if (!ring) {
      if (err.category != MONGO_HELPER_ERROR_CONFIG || !err.message[0]) {
         abort ();
      }
   } else {
      size_t n = mh_keyring_count (ring);
      bson_t doc = BSON_INITIALIZER;
      bson_iter_t it;
      mh_opened_t out;

      if (n < 1 || n > MH_KEYRING_MAX || mh_keyring_id (ring, n) != NULL) {
         abort ();
      }
      for (size_t i = 0; i < n; i++) {
         const char *id = mh_keyring_id (ring, i);
         if (strlen (id) < 1 || strlen (id) > MH_KEY_ID_MAX ||
             strspn (id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") !=
                strlen (id)) {
            abort ();
         }
      }
      if (!mh_seal (ring, data, size, (const uint8_t *) text, size, &doc, "e", &err) ||
          !bson_iter_init_find (&it, &doc, "e") || !mh_open (ring, data, size, &it, &out, &err) ||
          out.len != size || memcmp (out.data, text, size) != 0 || out.stale ||
          strcmp (out.key_id, mh_keyring_id (ring, 0)) != 0) {
         abort ();
      }
      mh_opened_clear (&out);
      bson_destroy (&doc);
      mh_keyring_destroy (ring);
   }
   bson_free (text);
}

static void
fuzz_open (const uint8_t *data, size_t size)
{
   static mh_keyring_t *ring;
   mongo_helper_error_t err;
   bson_t env, doc = BSON_INITIALIZER;
   bson_iter_t it;
   mh_opened_t out;

   if (!ring && !(ring = mh_keyring_parse (FUZZ_RING, "fuzz", &err))) {
      abort ();
   }
   if (bson_init_static (&env, data, size)) {
      BSON_APPEND_DOCUMENT (&doc, "e", &env);
   } else {
      bson_append_binary (&doc, "e", 1, BSON_SUBTYPE_BINARY, data, (uint32_t) size);
   }
   if (!bson_iter_init_find (&it, &doc, "e")) {
      abort ();
   }
   if (mh_open (ring, (const uint8_t *) "fuzz", 4, &it, &out, &err)) {
      mh_opened_clear (&out);
   } else if (err.category != MONGO_HELPER_ERROR_INTEGRITY || out.data != NULL) {
      abort ();
   }
   bson_destroy (&doc);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
   if (size < 1 || size > MH_KEY_FILE_MAX) {
      return 0;
   }
   if (data[0] % 2 == 0) {
      fuzz_ring (data + 1, size - 1);
   } else {
      fuzz_open (data + 1, size - 1);
   }
   return 0;
}
