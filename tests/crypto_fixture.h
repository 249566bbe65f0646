/* What the crypto suites share (test_crypto.c, test_keyring.c): test
 * keys, rings, seal and open of documents, and their assertions. */
#ifndef CRYPTO_FIXTURE_H
#define CRYPTO_FIXTURE_H

#include "src/mh_private.h"

#include <sys/stat.h>

#include "mh_test.h"

#define SOURCE "environment MONGO_SESSION_KEYS"

static mongo_helper_error_t err;

/* ---- helpers -------------------------------------------------------- */

/* A test key: 32 bytes no two seeds share. */
static inline void
key_bytes (int seed, uint8_t *out, size_t n)
{
   for (size_t i = 0; i < n; i++) {
      out[i] = (uint8_t) (seed * 37 + (int) i * 11 + 5);
   }
}

/* base64 of `n` bytes, standard or URL-safe alphabet, padded or not. */
static inline char *
b64 (const uint8_t *in, size_t n, bool url, bool pad, char *out)
{
   const char *a = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                       : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
   size_t o = 0, i;

   for (i = 0; i + 2 < n; i += 3) {
      uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
      out[o++] = a[v >> 18];
      out[o++] = a[(v >> 12) & 63];
      out[o++] = a[(v >> 6) & 63];
      out[o++] = a[v & 63];
   }
   if (n - i == 1) {
      out[o++] = a[in[i] >> 2];
      out[o++] = a[(in[i] & 3) << 4];
      if (pad) {
         out[o++] = '=';
         out[o++] = '=';
      }
   } else if (n - i == 2) {
      uint32_t v = (uint32_t) in[i] << 8 | in[i + 1];
      out[o++] = a[v >> 10];
      out[o++] = a[(v >> 4) & 63];
      out[o++] = a[(v << 2) & 63];
      if (pad) {
         out[o++] = '=';
      }
   }
   out[o] = '\0';
   return out;
}

/* The standard padded base64 of test key `seed` (static per call slot). */
static inline const char *
key_text (int seed)
{
   static char texts[8][64];
   static int next;
   uint8_t k[32];
   char *t = texts[next++ % 8];

   key_bytes (seed, k, sizeof k);
   return b64 (k, sizeof k, false, true, t);
}

static inline mh_keyring_t *
ring_of (const char *spec)
{
   mh_keyring_t *ring = mh_keyring_parse (spec, SOURCE, &err);

   MH_ASSERT_OK (ring != NULL, err);
   return ring;
}

/* `call` runs once and must fail with `cat` and `want_code`. */
#define ASSERT_FAILS_WITH(call, cat, want_code)                                \
   do {                                                                        \
      bool ok_ = (call);                                                       \
      ck_assert_msg (!ok_ && err.category == (cat) && err.code == (want_code), \
                     "expected failure %s/%d, got %s (%s/%d): %s",             \
                     mongo_helper_category_name (cat),                         \
                     (int) (want_code),                                        \
                     ok_ ? "success" : "failure",                              \
                     mongo_helper_category_name (err.category),                \
                     (int) err.code,                                           \
                     err.message);                                             \
   } while (0)

#define ASSERT_MESSAGE_HAS(needle)                                   \
   ck_assert_msg (strstr (err.message, (needle)) != NULL,            \
                  "expected the message to contain \"%s\", got: %s", \
                  (needle),                                          \
                  err.message)

/* No run of 4 or more characters of `secret` appears in the message. */
static inline void
assert_no_key_text (const char *secret)
{
   size_t n = strlen (secret);

   for (size_t i = 0; i + 4 <= n; i++) {
      char gram[5];

      memcpy (gram, secret + i, 4);
      gram[4] = '\0';
      ck_assert_msg (strstr (err.message, gram) == NULL,
                     "expected no key text in the message, found \"%s\" (of the key at "
                     "offset %zu) in: %s",
                     gram,
                     i,
                     err.message);
   }
}

/* Seals `len` bytes into a new document {e: <sealed record>}. */
static inline bson_t *
seal_doc (const mh_keyring_t *ring, const char *aad, const void *plain, size_t len)
{
   bson_t *doc = bson_new ();
   bool ok = mh_seal (ring,
                      (const uint8_t *) aad,
                      aad ? strlen (aad) : 0,
                      (const uint8_t *) plain,
                      len,
                      doc,
                      "e",
                      &err);

   MH_ASSERT_OK (ok, err);
   return doc;
}

/* mh_open on field "e" of `doc`. */
static inline bool
open_doc (const mh_keyring_t *ring, const char *aad, const bson_t *doc, mh_opened_t *out)
{
   bson_iter_t it;

   ck_assert_msg (bson_iter_init_find (&it, doc, "e"), "expected a field 'e' in the document");
   return mh_open (ring, (const uint8_t *) aad, aad ? strlen (aad) : 0, &it, out, &err);
}

static inline void
setup (void)
{
   memset (&err, 0, sizeof err);
}

#endif
