/*
 * crypto.c — the one file that talks to OpenSSL's libcrypto (layer 0):
 * the CSPRNG and SHA-256.  libmongoc already links libcrypto.
 */
#include "mh_private.h"

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
