/* What the sealed-session suites share (test_sessions_sealed.c,
 * test_sessions_rekey.c, test_sessions_keys.c): test keys and rings, stores,
 * raw reads and writes of stored documents, and their assertions.  Each
 * including file defines its feature-test macro first; each gets its own
 * copy of the static state (err). */
#ifndef SESSIONS_SEALED_FIXTURE_H
#define SESSIONS_SEALED_FIXTURE_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* The base64 of test key `seed`: SHA-256 of a seed text, so every key
 * text looks random (its 4-character runs are not words of any output). */
static inline const char *
key_b64 (int seed)
{
   static char texts[8][64];
   static int next;
   char *t = texts[next++ % 8];
   unsigned char md[EVP_MAX_MD_SIZE];
   unsigned int n = 0;
   char in[64];

   snprintf (in, sizeof in, "mh sealed sessions test key %d", seed);
   ck_assert (EVP_Digest (in, strlen (in), md, &n, EVP_sha256 (), NULL) && n == 32);
   ck_assert_int_eq (EVP_EncodeBlock ((unsigned char *) t, md, 32), 44);
   return t;
}

/* "id:key" entries, e.g. ring ("k2", 2, "k1", 1, NULL). */
static inline const char *
ring (const char *id, int seed, ...)
{
   static char spec[4][512];
   static int next;
   char *s = spec[next++ % 4];
   va_list ap;

   snprintf (s, 512, "%s:%s", id, key_b64 (seed));
   va_start (ap, seed);
   for (const char *more; (more = va_arg (ap, const char *));) {
      size_t len = strlen (s);
      snprintf (s + len, 512 - len, ",%s:%s", more, key_b64 (va_arg (ap, int)));
   }
   va_end (ap);
   return s;
}

/* ---- handles and stored documents ----------------------------------------- */

/* A store on `coll` with the key ring `keys` (NULL: the configuration's). */
static inline mongo_helper_sessions_t *
store (const char *coll, const char *keys)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;

   mongo_helper_sessions_options_init (&o);
   o.collection = coll;
   o.keys = keys;
   o.touch_interval_ms = 0;
   s = mongo_helper_sessions_new (&o, &err);
   MH_ASSERT_OK (s != NULL, err);
   return s;
}

/* The stored document of session `id` (caller destroys); fails when none. */
static inline bson_t *
raw_session (const char *coll, const char *id)
{
   char hex[65];
   bson_t *f, *doc;

   mh_test_sha256_hex (id, strlen (id), hex);
   f = BCON_NEW ("_id", BCON_UTF8 (hex));
   doc = mh_test_raw_find_one (coll, f);
   bson_destroy (f);
   ck_assert_msg (doc != NULL, "expected a stored session with _id SHA-256(id)");
   return doc;
}

/* Raw update of session `id`'s stored document. */
static inline void
raw_update (const char *coll, const char *id, const bson_t *update)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   char hex[65];
   bson_t *f;
   bson_error_t e;

   mh_test_sha256_hex (id, strlen (id), hex);
   f = BCON_NEW ("_id", BCON_UTF8 (hex));
   ck_assert_msg (mongoc_collection_update_one (c, f, update, NULL, NULL, &e),
                  "raw update failed: %s",
                  e.message);
   bson_destroy (f);
   mongoc_collection_destroy (c);
}

/* The key id of the stored envelope; fails when the session is not sealed
 * or also holds clear data. */
static inline const char *
sealed_key_of (const bson_t *doc)
{
   ck_assert_msg (!mh_test_has_field (doc, "data"),
                  "expected no clear 'data' beside the sealed payload");
   ck_assert_int_eq (mh_test_int_at (doc, "sealed.v"), 1);
   return mh_test_utf8_at (doc, "sealed.k");
}

static inline void
assert_sealed_with (const char *coll, const char *id, const char *key_id)
{
   bson_t *doc = raw_session (coll, id);

   ck_assert_str_eq (sealed_key_of (doc), key_id);
   bson_destroy (doc);
}

/* The binary field `path` of `doc` (borrowed). */
static inline const uint8_t *
binary_at (const bson_t *doc, const char *path, uint32_t *len)
{
   bson_iter_t it;
   bson_subtype_t sub;
   const uint8_t *data;

   ck_assert_msg (bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, path, &it) &&
                     BSON_ITER_HOLDS_BINARY (&it),
                  "expected binary data at %s",
                  path);
   bson_iter_binary (&it, &sub, len, &data);
   return data;
}

/* The JSON of a document, for messages (static, truncated). */
static inline const char *
json_of (const bson_t *doc)
{
   static char buf[1024];
   char *j = bson_as_relaxed_extended_json (doc, NULL);

   snprintf (buf, sizeof buf, "%s", j ? j : "(not BSON)");
   bson_free (j);
   return buf;
}

static inline void
assert_same_doc (const bson_t *got, const bson_t *want)
{
   char g[1024];

   snprintf (g, sizeof g, "%s", json_of (got));
   ck_assert_msg (bson_equal (got, want), "expected %s, got %s", json_of (want), g);
}

/* Loading `id` fails with INTEGRITY `code`, returns nothing, and is
 * counted under sessions_load and `reason`. */
static inline void
assert_load_fails (mongo_helper_sessions_t *s, const char *id, int code, const char *reason)
{
   int64_t before = mh_test_integrity_count ("sessions_load", reason);
   bson_t out;

   memset (&err, 0, sizeof err);
   ck_assert_msg (!mongo_helper_sessions_load (s, id, &out, &err), "expected the load to fail");
   ck_assert_msg (err.category == MONGO_HELPER_ERROR_INTEGRITY && err.code == code,
                  "expected integrity error %d, got %s %d: %s",
                  code,
                  mongo_helper_category_name (err.category),
                  (int) err.code,
                  err.message);
   ck_assert_msg (bson_count_keys (&out) == 0, "expected nothing returned, got %s", json_of (&out));
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_integrity_count ("sessions_load", reason), before + 1);
}

static inline bson_t *
sample_data (void)
{
   return BCON_NEW ("user",
                    BCON_UTF8 ("alice-the-recognisable"),
                    "cart",
                    "[",
                    BCON_INT32 (1),
                    BCON_INT32 (2),
                    "]",
                    "note",
                    BCON_UTF8 ("PLAINTEXT-MARKER-0123456789-do-not-store"));
}

static inline void
setup (void)
{
   mh_test_live_setup ();
   mongo_helper_metrics_reset ();
   memset (&err, 0, sizeof err);
}

/* Replaces sealed.<field> of session `id` with `len` bytes. */
static inline void
set_envelope_binary (const char *coll,
                     const char *id,
                     const char *field,
                     const uint8_t *b,
                     size_t len)
{
   bson_t *u = bson_new ();
   bson_t set;
   char path[32];

   snprintf (path, sizeof path, "sealed.%s", field);
   BSON_APPEND_DOCUMENT_BEGIN (u, "$set", &set);
   bson_append_binary (&set, path, -1, BSON_SUBTYPE_BINARY, b, (uint32_t) len);
   bson_append_document_end (u, &set);
   raw_update (coll, id, u);
   bson_destroy (u);
}

/* ---- keys from the configuration --------------------------------------------- */

/* A key file holding `content` with mode `mode` (static path). */
static inline const char *
key_file (const char *content, mode_t mode)
{
   const char *path = mh_test_write_ini (content);

   ck_assert_int_eq (chmod (path, mode), 0);
   return path;
}

/* The output of `mongo-helper config` next to this test binary (the
 * sanitizer build has its own), run with the test's environment; NULL when
 * there is no tool. */
static inline char *
tool_output (const char *args)
{
   char exe[4096], cmd[4500], *slash, *out = NULL;
   size_t len = 0;
   ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
   FILE *p;
   char buf[1024];

   if (n <= 0) {
      return NULL;
   }
   exe[n] = '\0';
   slash = strrchr (exe, '/');
   ck_assert_ptr_nonnull (slash);
   snprintf (slash + 1, sizeof exe - (size_t) (slash + 1 - exe), "mongo-helper");
   if (access (exe, X_OK) != 0) {
      return NULL;
   }
   snprintf (cmd, sizeof cmd, "{ '%s' %s; } 2>&1", exe, args);
   p = popen (cmd, "r");
   ck_assert_ptr_nonnull (p);
   while ((n = (ssize_t) fread (buf, 1, sizeof buf, p)) > 0) {
      out = realloc (out, len + (size_t) n + 1);
      memcpy (out + len, buf, (size_t) n);
      len += (size_t) n;
      out[len] = '\0';
   }
   pclose (p);
   return out ? out : strdup ("");
}

#endif
