/*
 * redact.c — credential redaction for every output (layer 0).
 */
#include "mh_private.h"

bool
mh_starts_with_ci (const char *s, const char *prefix)
{
   for (; *prefix; s++, prefix++) {
      if (tolower ((unsigned char) *s) != tolower ((unsigned char) *prefix)) {
         return false;
      }
   }
   return true;
}

size_t
mongo_helper_redact (const char *text, char *out, size_t out_size)
{
   size_t n = 0;
   const char *p = text ? text : "";

   if (!out || out_size == 0) {
      return 0;
   }
#define MH_PUT(ch)            \
   do {                       \
      if (n + 1 < out_size) { \
         out[n++] = (ch);     \
      }                       \
   } while (0)
#define MH_PUTS(s)                            \
   do {                                       \
      for (const char *q_ = (s); *q_; q_++) { \
         MH_PUT (*q_);                        \
      }                                       \
   } while (0)

   while (*p) {
      if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
         /* scheme://[user[:password]@]hosts...: the authority ends at the
          * first '/', '?', '#', quote or blank; the userinfo at its last
          * '@' (an unescaped '@' in a password is still covered). */
         const char *auth = p + 3, *end = auth, *at = NULL, *colon = NULL;

         while (*end && !strchr ("/?#\"' \t\r\n", *end)) {
            if (*end == '@') {
               at = end;
            }
            end++;
         }
         MH_PUTS ("://");
         if (at) {
            for (const char *q = auth; q < at; q++) {
               if (*q == ':') {
                  colon = q;
                  break;
               }
            }
            for (const char *q = auth; q < (colon ? colon : at); q++) {
               MH_PUT (*q);
            }
            if (colon) {
               MH_PUTS (":****");
            }
            p = at; /* copy from '@' on */
         } else {
            p = auth;
         }
         continue;
      }
      if (mh_starts_with_ci (p, "password=")) {
         MH_PUTS ("password=****");
         p += strlen ("password=");
         while (*p && !strchr ("&;,\"' \t\r\n", *p)) {
            p++;
         }
         continue;
      }
      MH_PUT (*p);
      p++;
   }
   out[n] = '\0';
#undef MH_PUT
#undef MH_PUTS
   return n;
}
