/*
 * redact.c — credential redaction for every output (layer 0).
 *
 * Every error message, log line and redacted URI passes through
 * mongo_helper_redact().  The text may hold a URI whose password contains
 * anything libmongoc accepts (blanks, quotes, '?', '#', sub-delimiters,
 * UTF-8), a URI libmongoc rejected (a '/' or ':' in the password), one cut
 * short by an INI comment character, or one with a mistyped scheme.  So the
 * end of a password is never guessed from its characters: it is the LAST
 * '@' of the text, and a doubt always hides more, never less.  The rules
 * are listed in mongo_helper.h; each is one linear pass, and nothing is
 * allocated (log and error paths call this).
 */
#include "mh_private.h"

#define MH_NONE ((size_t) -1)

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

static int
mh_hex (char c)
{
   if (c >= '0' && c <= '9') {
      return c - '0';
   }
   c = (char) tolower ((unsigned char) c);
   return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The character at s[i], reading ':', '/', '@' and '=' from their
 * percent-encodings too, so an encoded URI ("mongodb%3A%2F%2Fu%3Ap%40h")
 * or option ("AWS_SESSION_TOKEN%3A...") is redacted like a plain one.
 * *len is the number of bytes it spans. */
static char
mh_lc (const char *s, size_t n, size_t i, size_t *len)
{
   *len = 1;
   if (s[i] == '%' && i + 2 < n && mh_hex (s[i + 1]) >= 0 && mh_hex (s[i + 2]) >= 0) {
      char c = (char) (mh_hex (s[i + 1]) * 16 + mh_hex (s[i + 2]));
      if (c == ':' || c == '/' || c == '@' || c == '=') {
         *len = 3;
         return c;
      }
   }
   return s[i];
}

static bool
mh_blank (char c)
{
   return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Where a URI embedded in a sentence may end. */
static bool
mh_terminator (char c)
{
   return mh_blank (c) || strchr ("'\"`()<>[]{};", c) != NULL;
}

static bool
mh_scheme_char (char c)
{
   return isalnum ((unsigned char) c) || c == '+' || c == '-' || c == '.';
}

/* s[from, to) equals `word`, ignoring case. */
static bool
mh_equals_ci (const char *s, size_t from, size_t to, const char *word)
{
   return strlen (word) == to - from && mh_starts_with_ci (s + from, word);
}

/* ---- 1. user information of URIs ----------------------------------- */

/* Up to two hidden ranges: the user information (to the last '@'), then a
 * host list that is no host list (to the end of the text). */
typedef struct {
   size_t from[2], to[2];
   int count;
} mh_ranges_t;

static void
mh_hide (mh_ranges_t *r, size_t from, size_t to)
{
   if (from < to && r->count < 2) {
      r->from[r->count] = from;
      r->to[r->count] = to;
      r->count++;
   }
}

/* A URI without '@' has no user information, unless the text was cut
 * before its '@' (an INI value cut at ';' or '#' leaves
 * "mongodb://alice:S3c").  Reads s[a...] as host[:port][,host[:port]...]
 * and returns where to start hiding (after the first ':' that is not
 * followed by a port), or MH_NONE when the hosts read well.  `strict`: the
 * URI starts the text, so it ends only at '/', '?' or the end (a host may
 * hold blanks and quotes); otherwise a blank, quote or bracket also ends
 * it, so a sentence after a plain URI is not hidden. */
static size_t
mh_bad_host_list (const char *s, size_t n, size_t a, bool strict)
{
   size_t p = a, l;

   for (;;) {
      char c;

      /* [IPv6]: a short literal; a '[' without one is a host character
       * (and the search stays short, so the pass stays linear). */
      const char *close =
         p < n && s[p] == '[' ? memchr (s + p, ']', n - p < 64 ? n - p : 64) : NULL;

      if (close) {
         p = (size_t) (close - s) + 1;
      } else {
         while (p < n && !strchr (":,/?", mh_lc (s, n, p, &l))) {
            if (!strict && mh_terminator (s[p])) {
               return MH_NONE;
            }
            p += l;
         }
      }
      if (p >= n) {
         return MH_NONE;
      }
      c = mh_lc (s, n, p, &l);
      if (c == ',') {
         p += l;
         continue;
      }
      if (c != ':') {
         return MH_NONE; /* '/' or '?': the path or options */
      }
      {
         size_t port = p + l, q = port;
         while (q < n && isdigit ((unsigned char) s[q])) {
            q++;
         }
         if (q == port || q - port > 5) {
            return port;
         }
         if (q >= n) {
            return MH_NONE;
         }
         c = mh_lc (s, n, q, &l);
         if (c == ',') {
            p = q + l;
            continue;
         }
         if (c == '/' || c == '?' || (!strict && mh_terminator (s[q]))) {
            return MH_NONE;
         }
         return port;
      }
   }
}

/* Finds the ranges of rule 1 (see mongo_helper.h).  One pass: every jump
 * goes forward, and the search for the next ':' is cached. */
static void
mh_find_userinfo (const char *s, size_t n, mh_ranges_t *r)
{
   size_t last_at = MH_NONE, last_at_len = 0, l;
   size_t i = 0, run = 0;  /* run: start of the current non-blank run */
   size_t colon = MH_NONE; /* cache: first ':' at or after colon_from */
   size_t colon_from = 0;
   bool slashes_seen = false; /* a "//" or ":/" came earlier */
   bool first_colon = true;

   memset (r, 0, sizeof *r);
   for (size_t k = 0; k < n; k++) {
      if (mh_lc (s, n, k, &l) == '@') {
         last_at = k;
         last_at_len = l;
      }
   }

   while (i < n) {
      char c = mh_lc (s, n, i, &l);

      if (mh_blank (s[i])) {
         run = i + 1;
         i++;
         continue;
      }
      if (c == '/' && i + 1 < n) {
         size_t l2;
         if (mh_lc (s, n, i + l, &l2) == '/') {
            /* "mongodb//host": a scheme missing its ':' */
            size_t w = i, a = i + l + l2;
            slashes_seen = true;
            while (w > run && mh_scheme_char (s[w - 1])) {
               w--;
            }
            if (w < i && (last_at == MH_NONE || last_at < a)) {
               size_t bad = mh_bad_host_list (s, n, a, w == 0);
               if (bad != MH_NONE) {
                  mh_hide (r, bad, n);
                  return;
               }
            }
         }
         i += l;
         continue;
      }
      if (c != ':') {
         i += l;
         continue;
      }

      {
         size_t after = i + l, l2;
         bool is_first = first_colon;

         first_colon = false;
         if (after < n && mh_lc (s, n, after, &l2) == '/') {
            /* A scheme: "scheme:/" or "scheme://". */
            size_t w = i, a = after, slashes = 0;
            bool literal = true, known;

            while (w > run && mh_scheme_char (s[w - 1])) {
               w--;
            }
            known = mh_equals_ci (s, w, i, "mongodb") || mh_equals_ci (s, w, i, "mongodb+srv");
            while (a < n && mh_lc (s, n, a, &l2) == '/') {
               literal = literal && l2 == 1;
               slashes++;
               a += l2;
            }
            slashes_seen = true;
            if (last_at != MH_NONE && last_at >= a) {
               if (colon == MH_NONE || colon < a) {
                  size_t k = colon_from > a ? colon_from : a;
                  colon = n;
                  for (; k < n; k++) {
                     if (mh_lc (s, n, k, &l2) == ':') {
                        colon = k;
                        break;
                     }
                  }
                  colon_from = k;
               }
               if (known && colon < last_at) {
                  /* mongodb://user:password@: the user stays visible */
                  mh_lc (s, n, colon, &l2);
                  mh_hide (r, colon + l2, last_at);
               } else if (known && literal && slashes == 2) {
                  i = a; /* mongodb://user@host: no password */
                  continue;
               } else {
                  /* "x:/y@" or "mongodb:/u@": the word may be the user
                   * and the rest a password that starts with '/'. */
                  mh_hide (r, after, last_at);
               }
               i = last_at + last_at_len;
               run = i;
               continue;
            }
            {
               size_t bad = mh_bad_host_list (s, n, a, w == 0);
               if (bad != MH_NONE) {
                  mh_hide (r, bad, n);
                  return;
               }
            }
            i = a;
            continue;
         }

         if (last_at != MH_NONE && last_at > i) {
            /* "user:password@host" without (or after a mistyped) scheme.
             * A ':' then a blank is prose ("failed: ... a@b.c") unless
             * its word starts the text or a scheme came earlier. */
            if (after >= n || !mh_blank (s[after]) || run == 0 || slashes_seen) {
               mh_hide (r, after, last_at);
               i = last_at + last_at_len;
               run = i;
               continue;
            }
         } else if (is_first && run == 0 && after < n && !mh_blank (s[after])) {
            /* The text starts with "user:...", no '@': cut short? */
            size_t bad = mh_bad_host_list (s, n, 0, true);
            if (bad != MH_NONE) {
               mh_hide (r, bad, n);
               return;
            }
         }
         i = after;
      }
   }
}

/* ---- 2. secret key/values ------------------------------------------- */

/* Key names whose value is secret, matched as the END of the key
 * (tlsCertificateKeyFilePassword, AWS_SESSION_TOKEN, MONGO_PASSWORD). */
static const char *const mh_secret_keys[] = {"password",
                                             "passwd",
                                             "pwd",
                                             "token",
                                             "secret",
                                             "secret_access_key",
                                             "secretaccesskey",
                                             "api_key",
                                             "apikey"};

static bool
mh_secret_key_before (const char *s, size_t end)
{
   for (size_t k = 0; k < sizeof mh_secret_keys / sizeof *mh_secret_keys; k++) {
      size_t len = strlen (mh_secret_keys[k]);
      if (end >= len && mh_starts_with_ci (s + end - len, mh_secret_keys[k])) {
         return true;
      }
   }
   return false;
}

/* The scan state of rule 2: the values are found in order, on demand. */
typedef struct {
   size_t pos;        /* where the search resumes */
   size_t amp;        /* cache: the '&' the last search found (or n) */
   size_t last_quote; /* last '"' */
   size_t last_apos;  /* last '\'' */
} mh_keys_t;

/* The next secret value [*from, *to) after k->pos; false when none.
 * Values may overlap (a password holding "pwd=" or a quote): the search
 * resumes right after each key, and they come in the order of their keys,
 * so their starts never go back. */
static bool
mh_next_secret_value (const char *s, size_t n, mh_keys_t *k, size_t *from, size_t *to)
{
   size_t p = k->pos, l;

   for (; p < n; p += l) {
      char c = mh_lc (s, n, p, &l);
      size_t key_end = p, v = p + l, q;

      if (c == '"' || c == '\'') {
         /* libmongoc's: Password "..." must not have unescaped chars */
         if (p == 0 || !mh_blank (s[p - 1])) {
            continue;
         }
         v = p;
      } else if (c != '=' && c != ':') {
         continue;
      }
      /* key=v, key: v, "key": "v", key%3Dv, key "v" */
      while (key_end > 0 && mh_blank (s[key_end - 1])) {
         key_end--;
      }
      if (v != p && key_end > 0 && (s[key_end - 1] == '"' || s[key_end - 1] == '\'')) {
         key_end--;
      }
      if (!mh_secret_key_before (s, key_end)) {
         continue;
      }
      for (q = v; q < n && mh_blank (s[q]); q++) {
      }
      if (q < n && (s[q] == '"' || s[q] == '\'')) {
         /* A quoted value may hold its quote: hide to the last one. */
         size_t close = s[q] == '"' ? k->last_quote : k->last_apos;
         *from = q + 1;
         *to = close > q ? close : n;
      } else {
         /* Blanks after the separator may be the value's own. */
         if (k->amp < v) {
            const char *amp = memchr (s + v, '&', n - v);
            k->amp = amp ? (size_t) (amp - s) : n;
         }
         *from = v;
         *to = k->amp;
      }
      if (*from < *to) {
         k->pos = p + l;
         return true;
      }
   }
   k->pos = n;
   return false;
}

/* ---- output ----------------------------------------------------------- */

size_t
mongo_helper_redact (const char *text, char *out, size_t out_size)
{
   const char *s = text ? text : "";
   size_t n = strlen (s), w = 0, i = 0;
   size_t key_from = 0, key_to = 0;
   bool key_more = true, hiding = false;
   mh_ranges_t r;
   mh_keys_t keys = {0, 0, MH_NONE, MH_NONE};
   int ri = 0;

   if (!out || out_size == 0) {
      return 0;
   }
   mh_find_userinfo (s, n, &r);
   for (size_t k = 0; k < n; k++) {
      if (s[k] == '"') {
         keys.last_quote = k;
      } else if (s[k] == '\'') {
         keys.last_apos = k;
      }
   }

#define MH_PUT(ch)            \
   do {                       \
      if (w + 1 < out_size) { \
         out[w++] = (ch);     \
      }                       \
   } while (0)

   while (i < n) {
      size_t end = i;

      while (key_more && key_to <= i) {
         key_more = mh_next_secret_value (s, n, &keys, &key_from, &key_to);
         if (!key_more) {
            key_from = key_to = n;
         }
      }
      while (ri < r.count && r.to[ri] <= i) {
         ri++;
      }
      if (key_from <= i && i < key_to) {
         end = key_to;
      }
      if (ri < r.count && r.from[ri] <= i && r.to[ri] > end) {
         end = r.to[ri];
      }
      if (end == i) {
         MH_PUT (s[i]);
         i++;
         hiding = false;
         continue;
      }
      /* One "****" for a run of hidden bytes, whichever rules hid them:
       * the length of a secret is not shown either. */
      if (!hiding) {
         for (const char *m = "****"; *m; m++) {
            MH_PUT (*m);
         }
      }
      hiding = true;
      i = end;
   }
   out[w] = '\0';
#undef MH_PUT
   return w;
}
