/*
 * crypto.c — the one file that talks to OpenSSL's libcrypto (layer 0):
 * the CSPRNG, SHA-256, AES-256-GCM and memory wiping.  libmongoc already
 * links libcrypto.  Key rings and the sealed-record format built on these
 * primitives live in keyring.c.
 */
#include "mh_private.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* SHA-256 as 64 lowercase hex characters.  EVP_Digest rather than SHA256()
 * because the latter's low-level family is deprecated in OpenSSL 3. */
bool
mh_sha256_hex (const void *data, size_t len, char out[65])
{
   static const char hex[] = "0123456789abcdef";
   unsigned char md[EVP_MAX_MD_SIZE];
   unsigned int mdlen = 0;

   if (!EVP_Digest (data, len, md, &mdlen, EVP_sha256 (), NULL) || mdlen != 32) {
      return false;
   }
   for (unsigned i = 0; i < 32; i++) {
      out[2 * i] = hex[md[i] >> 4];
      out[2 * i + 1] = hex[md[i] & 15];
   }
   out[64] = '\0';
   return true;
}

bool
mh_random_bytes (void *buf, size_t len)
{
   return len <= INT_MAX && RAND_bytes (buf, (int) len) == 1;
}

void
mh_cleanse (void *buf, size_t len)
{
   if (buf && len > 0) {
      OPENSSL_cleanse (buf, len);
   }
}

/* ---- AES-256-GCM ----------------------------------------------------- */

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/* OpenSSL 3 looks the algorithm up in its providers on every init made
 * with EVP_aes_256_gcm(); fetching it once takes that off each seal. */
static EVP_CIPHER *mh_gcm_fetched;
static pthread_once_t mh_gcm_once = PTHREAD_ONCE_INIT;

static void
mh_gcm_fetch (void)
{
   mh_gcm_fetched = EVP_CIPHER_fetch (NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *
mh_gcm (void)
{
   pthread_once (&mh_gcm_once, mh_gcm_fetch);
   return mh_gcm_fetched ? mh_gcm_fetched : EVP_aes_256_gcm ();
}
#else
static const EVP_CIPHER *
mh_gcm (void)
{
   return EVP_aes_256_gcm ();
}
#endif

/* Both directions: sizes are checked by the caller against MH_MAX_BSON,
 * far below INT_MAX, but OpenSSL takes int lengths, so check again. */
static bool
mh_gcm_run (bool enc,
            const uint8_t key[MH_AEAD_KEY_LEN],
            const uint8_t nonce[MH_AEAD_NONCE_LEN],
            const uint8_t *aad,
            size_t aad_len,
            const uint8_t *in,
            size_t len,
            uint8_t *out,
            uint8_t tag[MH_AEAD_TAG_LEN])
{
   EVP_CIPHER_CTX *ctx;
   int n = 0;
   bool ok;

   if (len > INT_MAX || aad_len > INT_MAX || !(ctx = EVP_CIPHER_CTX_new ())) {
      return false;
   }
   /* The default GCM IV length is 12 bytes, MH_AEAD_NONCE_LEN. */
   ok = EVP_CipherInit_ex (ctx, mh_gcm (), NULL, key, nonce, enc ? 1 : 0) == 1;
   if (ok && aad_len > 0) {
      ok = EVP_CipherUpdate (ctx, NULL, &n, aad, (int) aad_len) == 1;
   }
   if (ok && len > 0) {
      ok = EVP_CipherUpdate (ctx, out, &n, in, (int) len) == 1 && (size_t) n == len;
   }
   if (ok && !enc) {
      ok = EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, MH_AEAD_TAG_LEN, tag) == 1;
   }
   /* Decrypting, this is where the tag is checked. */
   ok = ok && EVP_CipherFinal_ex (ctx, out + len, &n) == 1 && n == 0;
   if (ok && enc) {
      ok = EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_GET_TAG, MH_AEAD_TAG_LEN, tag) == 1;
   }
   EVP_CIPHER_CTX_free (ctx); /* wipes the key schedule */
   return ok;
}

bool
mh_aead_seal (const uint8_t key[MH_AEAD_KEY_LEN],
              const uint8_t nonce[MH_AEAD_NONCE_LEN],
              const uint8_t *aad,
              size_t aad_len,
              const uint8_t *plain,
              size_t len,
              uint8_t *out)
{
   return mh_gcm_run (true, key, nonce, aad, aad_len, plain, len, out, out + len);
}

bool
mh_aead_open (const uint8_t key[MH_AEAD_KEY_LEN],
              const uint8_t nonce[MH_AEAD_NONCE_LEN],
              const uint8_t *aad,
              size_t aad_len,
              const uint8_t *sealed,
              size_t len,
              uint8_t *out)
{
   uint8_t tag[MH_AEAD_TAG_LEN];

   if (len < MH_AEAD_TAG_LEN) {
      return false;
   }
   len -= MH_AEAD_TAG_LEN;
   memcpy (tag, sealed + len, sizeof tag);
   if (!mh_gcm_run (false, key, nonce, aad, aad_len, sealed, len, out, tag)) {
      /* Nothing of an unauthenticated plaintext may reach the caller. */
      mh_cleanse (out, len);
      return false;
   }
   return true;
}
