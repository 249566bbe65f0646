/* libFuzzer target: the redactor on a password inside arbitrary text.
 *
 * Input: byte 0 chooses the shape, the rest is "template \0 password".
 * The template is "prefix \1 user \1 suffix" (missing parts are empty).
 * The text is prefix + scheme + user + ':' + password + '@' + suffix (a
 * URI's user information), or with bit 7 of byte 0, prefix + key +
 * password + '&' + suffix (a secret value: password=, AWS_SESSION_TOKEN:).
 * Property: the redacted text never holds the password (4 bytes or more,
 * not found in the text's other parts), except where mongo_helper.h says a
 * password stays visible.  Also: no crash, no read out of bounds, output
 * always terminated.  Seeds: tests/fuzz/corpus/fuzz_redact/. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "mongo_helper.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char *const schemes[] = {"mongodb://",
                                      "mongodb+srv://",
                                      "mongodb:/",
                                      "mongodb//",
                                      "",
                                      "MONGODB://",
                                      "x://",
                                      "mongodb%3A%2F%2F"};

static const char *const keys[] = {"password=",
                                   "pwd=",
                                   "AWS_SESSION_TOKEN:",
                                   "AWS_SESSION_TOKEN=",
                                   "authMechanismProperties=AWS_SESSION_TOKEN%3A",
                                   "tlsCertificateKeyFilePassword=",
                                   "\"password\": ",
                                   "PASSWORD%3D"};

static const char *const users[] = {"alice", "", NULL /* from the template */, "app_user"};

static bool
blank (char c)
{
   return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* `s` with %2F and %3A read as '/' and ':', as the redactor reads them. */
static bool
has_slashes (const char *s)
{
   size_t n = strlen (s), w = 0;
   char *t = malloc (n + 1);
   bool found;

   for (size_t i = 0; i < n; i++) {
      if (s[i] == '%' && i + 2 < n && s[i + 1] == '2' && (s[i + 2] == 'F' || s[i + 2] == 'f')) {
         t[w++] = '/';
         i += 2;
      } else if (s[i] == '%' && i + 2 < n && s[i + 1] == '3' &&
                 (s[i + 2] == 'A' || s[i + 2] == 'a')) {
         t[w++] = ':';
         i += 2;
      } else {
         t[w++] = s[i];
      }
   }
   t[w] = '\0';
   found = strstr (t, "//") || strstr (t, ":/");
   free (t);
   return found;
}

/* mongo_helper.h, "Left visible": a password that starts with a blank, in
 * a URI without scheme, when a blank comes earlier in the text. */
static bool
documented_uri_exception (const char *before, const char *pw)
{
   if (!blank (pw[0]) || has_slashes (before)) {
      return false;
   }
   for (const char *p = before; *p; p++) {
      if (blank (*p)) {
         return true;
      }
   }
   return false;
}

/* A value after leading blanks that starts with a quote is hidden only up
 * to the last such quote: what follows that quote is not the value. */
static bool
documented_key_exception (const char *pw)
{
   while (blank (*pw)) {
      pw++;
   }
   return *pw == '"' || *pw == '\'';
}

/* Copies data[from, to) into a new C string, dropping NUL bytes. */
static char *
piece (const uint8_t *data, size_t from, size_t to)
{
   char *s = malloc (to - from + 1);
   size_t w = 0;

   for (size_t i = from; i < to; i++) {
      if (data[i]) {
         s[w++] = (char) data[i];
      }
   }
   s[w] = '\0';
   return s;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
   uint8_t shape;
   const uint8_t *nul, *sep1 = NULL, *sep2 = NULL;
   size_t tlen;
   char *prefix, *user, *suffix, *pw, *before, *after, *text, *out;
   const char *scheme, *key, *fixed_user, *at;
   bool key_mode, check;
   size_t out_size;

   if (size < 1) {
      return 0;
   }
   shape = data[0];
   data++;
   size--;
   nul = memchr (data, 0, size);
   tlen = nul ? (size_t) (nul - data) : size;
   sep1 = memchr (data, 1, tlen);
   if (sep1) {
      sep2 = memchr (sep1 + 1, 1, tlen - (size_t) (sep1 + 1 - data));
   }
   prefix = piece (data, 0, sep1 ? (size_t) (sep1 - data) : tlen);
   user = sep1 ? piece (data, (size_t) (sep1 + 1 - data), sep2 ? (size_t) (sep2 - data) : tlen)
               : piece (data, 0, 0);
   suffix = sep2 ? piece (data, (size_t) (sep2 + 1 - data), tlen) : piece (data, 0, 0);
   pw = nul ? piece (data, tlen + 1, size) : piece (data, 0, 0);

   key_mode = shape & 0x80;
   scheme = schemes[shape & 7];
   key = keys[shape & 7];
   at = shape & 8 ? "%40" : "@";
   fixed_user = users[(shape >> 5) & 3];
   if (fixed_user) {
      free (user);
      user = strdup (fixed_user);
   }
   /* "****" in the output must not pass for the password: '*' means
    * nothing to the redactor, '+' tests the same.  In a value, '&' ends
    * it by definition. */
   for (char *p = pw; *p; p++) {
      *p = *p == '*' ? '+' : (key_mode && *p == '&') ? 'A' : *p;
   }

   before = malloc (strlen (prefix) + strlen (scheme) + strlen (user) + strlen (key) + 8);
   after = malloc (strlen (suffix) + 8);
   if (key_mode) {
      strcpy (before, prefix);
      strcat (before, key);
      strcpy (after, "&");
   } else {
      strcpy (before, prefix);
      strcat (before, scheme);
      strcat (before, user);
      strcat (before, shape & 16 ? "%3A" : ":");
      strcpy (after, at);
   }
   strcat (after, suffix);
   text = malloc (strlen (before) + strlen (pw) + strlen (after) + 1);
   strcpy (text, before);
   strcat (text, pw);
   strcat (text, after);

   out_size = 2 * strlen (text) + 16;
   out = malloc (out_size);
   mongo_helper_redact (text, out, out_size);
   if (strlen (out) >= out_size) {
      abort ();
   }

   check = strlen (pw) >= 4 && !strstr (before, pw) && !strstr (after, pw);
   if (key_mode) {
      check = check && !documented_key_exception (pw);
   } else {
      char *b = malloc (strlen (prefix) + strlen (scheme) + strlen (user) + 1);
      strcpy (b, prefix);
      strcat (b, scheme);
      strcat (b, user);
      check = check && !(scheme[0] == '\0' && documented_uri_exception (b, pw));
      free (b);
   }
   if (check && strstr (out, pw)) {
      abort (); /* the password leaked */
   }
   free (prefix);
   free (user);
   free (suffix);
   free (pw);
   free (before);
   free (after);
   free (text);
   free (out);
   return 0;
}
