/*
 * bench/data.c — deterministic data generators (splitmix64 rng, flat, nested, large,
 * event metadata and GridFS payload documents) and the data fingerprint,
 * mirrored exactly in bench_pymongo.py.
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- Deterministic data (mirrored exactly in bench_pymongo.py) ------- */

/* splitmix64, seeded per (kind, index) so any document can be generated
 * on its own, in C and in Python, byte for byte the same. */
typedef struct {
   uint64_t s;
} rng_t;

static void
rng_init (rng_t *r, uint64_t kind, uint64_t i)
{
   r->s = BENCH_SEED ^ (kind * 0x9E3779B97F4A7C15ULL) ^ (i * 0xD1B54A32D192ED03ULL);
}

static uint64_t
rng_next (rng_t *r)
{
   uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);

   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
   z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
   return z ^ (z >> 31);
}

/* n lowercase letters, 8 per random word (low byte first); leftover bytes
 * of the last word are discarded. */
static void
rng_letters (rng_t *r, char *out, size_t n)
{
   size_t k = 0;

   while (k < n) {
      uint64_t v = rng_next (r);
      for (int b = 0; b < 8 && k < n; b++) {
         out[k++] = (char) ('a' + ((v >> (8 * b)) & 0xff) % 26);
      }
   }
   out[n] = '\0';
}

static void
append_letters (bson_t *d, const char *key, rng_t *r, size_t n)
{
   char buf[1024];

   rng_letters (r, buf, n);
   BSON_APPEND_UTF8 (d, key, buf);
}

/* Flat: ~20 scalar fields, ~300 bytes (like the spec's small_doc). */
bson_t *
gen_flat (long i, bool with_id)
{
   bson_t *d = bson_new ();
   rng_t r;
   char key[16];

   rng_init (&r, 1, (uint64_t) i);
   if (with_id) {
      BSON_APPEND_INT32 (d, "_id", (int32_t) i);
   }
   BSON_APPEND_INT32 (d, "category", (int32_t) (rng_next (&r) % 20));
   BSON_APPEND_INT32 (d, "value", (int32_t) (rng_next (&r) % 1000));
   for (int k = 0; k < 18; k++) {
      snprintf (key, sizeof key, "f%02d", k);
      if (k % 3 == 0) {
         size_t n = 8 + rng_next (&r) % 17;
         append_letters (d, key, &r, n);
      } else if (k % 3 == 1) {
         BSON_APPEND_INT32 (d, key, (int32_t) (rng_next (&r) % 2147483647u));
      } else {
         BSON_APPEND_DOUBLE (d, key, (double) (rng_next (&r) % 1000000000u) / 1000.0);
      }
   }
   return d;
}

/* Nested: a tweet-like document with sub-documents and arrays. */
bson_t *
gen_nested (long i, bool with_id)
{
   bson_t *d = bson_new ();
   bson_t user, loc, geo, tags, ent, urls, url, idx;
   rng_t r;
   char key[16];
   size_t n;
   int ntags;

   rng_init (&r, 2, (uint64_t) i);
   if (with_id) {
      BSON_APPEND_INT32 (d, "_id", (int32_t) i);
   }
   BSON_APPEND_DOCUMENT_BEGIN (d, "user", &user);
   BSON_APPEND_INT32 (&user, "id", (int32_t) (rng_next (&r) % 1000000));
   n = 6 + rng_next (&r) % 10;
   append_letters (&user, "name", &r, n);
   BSON_APPEND_INT32 (&user, "followers", (int32_t) (rng_next (&r) % 100000));
   BSON_APPEND_DOCUMENT_BEGIN (&user, "location", &loc);
   n = 5 + rng_next (&r) % 10;
   append_letters (&loc, "city", &r, n);
   BSON_APPEND_ARRAY_BEGIN (&loc, "geo", &geo);
   BSON_APPEND_DOUBLE (&geo, "0", (double) (rng_next (&r) % 360000) / 1000.0);
   BSON_APPEND_DOUBLE (&geo, "1", (double) (rng_next (&r) % 180000) / 1000.0);
   bson_append_array_end (&loc, &geo);
   bson_append_document_end (&user, &loc);
   bson_append_document_end (d, &user);
   n = 60 + rng_next (&r) % 80;
   append_letters (d, "text", &r, n);
   ntags = 2 + (int) (rng_next (&r) % 4);
   BSON_APPEND_ARRAY_BEGIN (d, "tags", &tags);
   for (int k = 0; k < ntags; k++) {
      snprintf (key, sizeof key, "%d", k);
      n = 3 + rng_next (&r) % 8;
      append_letters (&tags, key, &r, n);
   }
   bson_append_array_end (d, &tags);
   BSON_APPEND_DOCUMENT_BEGIN (d, "entities", &ent);
   BSON_APPEND_ARRAY_BEGIN (&ent, "urls", &urls);
   for (int k = 0; k < 2; k++) {
      snprintf (key, sizeof key, "%d", k);
      BSON_APPEND_DOCUMENT_BEGIN (&urls, key, &url);
      append_letters (&url, "url", &r, 20);
      BSON_APPEND_ARRAY_BEGIN (&url, "idx", &idx);
      BSON_APPEND_INT32 (&idx, "0", (int32_t) (rng_next (&r) % 100));
      BSON_APPEND_INT32 (&idx, "1", (int32_t) (rng_next (&r) % 100));
      bson_append_array_end (&url, &idx);
      bson_append_document_end (&urls, &url);
   }
   bson_append_array_end (&ent, &urls);
   bson_append_document_end (d, &ent);
   BSON_APPEND_INT32 (d, "retweets", (int32_t) (rng_next (&r) % 5000));
   append_letters (d, "lang", &r, 2);
   return d;
}

/* Large: 3000 string fields of 400-599 letters, ~1.5 MB.  With bad_utf8,
 * the same document except that the last letter of the last string is the
 * byte 0xFF, never valid in UTF-8: a validator must read all of it to find
 * the error. */
bson_t *
gen_large_ex (long i, bool bad_utf8)
{
   bson_t *d = bson_new ();
   rng_t r;
   char key[16], buf[1024];

   rng_init (&r, 3, (uint64_t) i);
   for (int k = 0; k < LARGE_FIELDS; k++) {
      size_t n = 400 + rng_next (&r) % 200;
      snprintf (key, sizeof key, "k%04d", k);
      rng_letters (&r, buf, n);
      if (bad_utf8 && k == LARGE_FIELDS - 1) {
         buf[n - 1] = (char) 0xFF; /* bson_append_utf8 does not validate */
      }
      BSON_APPEND_UTF8 (d, key, buf);
   }
   return d;
}

bson_t *
gen_large (long i)
{
   return gen_large_ex (i, false);
}

/* Event metadata: what a request handler would attach to a user event. */
bson_t *
gen_meta (long i, int32_t *user_id, const char **type)
{
   static const char *types[] = {"login", "view", "click", "purchase", "logout"};
   bson_t *d = bson_new ();
   rng_t r;
   char path[16];

   rng_init (&r, 5, (uint64_t) i);
   *user_id = (int32_t) (rng_next (&r) % 10000);
   *type = types[rng_next (&r) % 5];
   path[0] = '/';
   rng_letters (&r, path + 1, 10);
   BSON_APPEND_UTF8 (d, "path", path);
   BSON_APPEND_INT32 (d, "ms", (int32_t) (rng_next (&r) % 500));
   return d;
}

/* GridFS payload: a 1 MiB random block (kind 4) repeated to `len`. */
uint8_t *
gen_blob (size_t len)
{
   uint8_t *b = bson_malloc (len ? len : 1);
   const size_t block = 1u << 20;
   rng_t r;

   rng_init (&r, 4, 0);
   for (size_t k = 0; k < block && k < len; k += 8) {
      uint64_t v = rng_next (&r);
      for (int j = 0; j < 8 && k + (size_t) j < len; j++) {
         b[k + (size_t) j] = (uint8_t) (v >> (8 * j));
      }
   }
   for (size_t k = block; k < len; k++) {
      b[k] = b[k - block];
   }
   return b;
}

/* FNV-1a 64 over the BSON of flat 0..99, nested 0..99 (with _id), large 0
 * and events 0..99 (without timestamp): compared with the Python side's,
 * so both insert the same bytes. */
static uint64_t
fnv (uint64_t h, const uint8_t *p, size_t n)
{
   for (size_t k = 0; k < n; k++) {
      h ^= p[k];
      h *= 0x100000001B3ULL;
   }
   return h;
}

void
data_fingerprint (char *out, size_t out_size)
{
   uint64_t h = 0xCBF29CE484222325ULL;
   bson_t *d;

   for (long i = 0; i < 100; i++) {
      d = gen_flat (i, true);
      h = fnv (h, bson_get_data (d), d->len);
      bson_destroy (d);
   }
   for (long i = 0; i < 100; i++) {
      d = gen_nested (i, true);
      h = fnv (h, bson_get_data (d), d->len);
      bson_destroy (d);
   }
   d = gen_large (0);
   h = fnv (h, bson_get_data (d), d->len);
   bson_destroy (d);
   for (long i = 0; i < 100; i++) {
      int32_t uid;
      const char *type;
      char uid_s[16];
      bson_t *meta = gen_meta (i, &uid, &type);
      d = bson_new ();
      snprintf (uid_s, sizeof uid_s, "u%d", (int) uid);
      BSON_APPEND_UTF8 (d, "user_id", uid_s);
      BSON_APPEND_UTF8 (d, "event_type", type);
      BSON_APPEND_DOCUMENT (d, "metadata", meta);
      h = fnv (h, bson_get_data (d), d->len);
      bson_destroy (d);
      bson_destroy (meta);
   }
   snprintf (out, out_size, "%016llx", (unsigned long long) h);
}
