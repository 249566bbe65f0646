/* Sessions encrypted at rest (src/sessions.c, src/web.c over src/keyring.c):
 * stored documents read back raw (no plaintext, the envelope's key id),
 * every call's round trip, payloads swapped, altered, cut and sealed with
 * other keys, rotation and rekey, clear sessions from before encryption,
 * concurrent sets, keys from the configuration, and key text in no output
 * at all (errors, log, metrics, settings, the tool). */
#define _POSIX_C_SOURCE 200809L
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

/* ---- keys ------------------------------------------------------------- */

/* The first occurrence of the 4 characters at `gram` in `text`, or NULL
 * (memmem is not POSIX). */
static const char *
find_gram (const char *text, const char *gram)
{
   for (const char *p = text; p[0] && p[1] && p[2] && p[3]; p++) {
      if (memcmp (p, gram, 4) == 0) {
         return p;
      }
   }
   return NULL;
}

/* The base64 of test key `seed`: SHA-256 of a seed text, so every key
 * text looks random (its 4-character runs are not words of any output). */
static const char *
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
static const char *
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

static void
sha256_hex (const char *s, char out[65])
{
   unsigned char md[EVP_MAX_MD_SIZE];
   unsigned int n = 0;

   ck_assert (EVP_Digest (s, strlen (s), md, &n, EVP_sha256 (), NULL));
   for (unsigned i = 0; i < n; i++) {
      snprintf (out + 2 * i, 3, "%02x", md[i]);
   }
}

/* A store on `coll` with the key ring `keys` (NULL: the configuration's). */
static mongo_helper_sessions_t *
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
static bson_t *
raw_session (const char *coll, const char *id)
{
   char hex[65];
   bson_t *f, *doc;

   sha256_hex (id, hex);
   f = BCON_NEW ("_id", BCON_UTF8 (hex));
   doc = mh_test_raw_find_one (coll, f);
   bson_destroy (f);
   ck_assert_msg (doc != NULL, "expected a stored session with _id SHA-256(id)");
   return doc;
}

/* Raw update of session `id`'s stored document. */
static void
raw_update (const char *coll, const char *id, const bson_t *update)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   char hex[65];
   bson_t *f;
   bson_error_t e;

   sha256_hex (id, hex);
   f = BCON_NEW ("_id", BCON_UTF8 (hex));
   ck_assert_msg (mongoc_collection_update_one (c, f, update, NULL, NULL, &e),
                  "raw update failed: %s",
                  e.message);
   bson_destroy (f);
   mongoc_collection_destroy (c);
}

/* The key id of the stored envelope; fails when the session is not sealed
 * or also holds clear data. */
static const char *
sealed_key_of (const bson_t *doc)
{
   ck_assert_msg (!mh_test_has_field (doc, "data"),
                  "expected no clear 'data' beside the sealed payload");
   ck_assert_int_eq (mh_test_int_at (doc, "sealed.v"), 1);
   return mh_test_utf8_at (doc, "sealed.k");
}

static void
assert_sealed_with (const char *coll, const char *id, const char *key_id)
{
   bson_t *doc = raw_session (coll, id);

   ck_assert_str_eq (sealed_key_of (doc), key_id);
   bson_destroy (doc);
}

/* The binary field `path` of `doc` (borrowed). */
static const uint8_t *
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
static const char *
json_of (const bson_t *doc)
{
   static char buf[1024];
   char *j = bson_as_relaxed_extended_json (doc, NULL);

   snprintf (buf, sizeof buf, "%s", j ? j : "(not BSON)");
   bson_free (j);
   return buf;
}

static void
assert_same_doc (const bson_t *got, const bson_t *want)
{
   char g[1024];

   snprintf (g, sizeof g, "%s", json_of (got));
   ck_assert_msg (bson_equal (got, want), "expected %s, got %s", json_of (want), g);
}

/* The integrity failures counted for `op` and `reason` (0 when none). */
static int64_t
integrity_count (const char *op, const char *reason)
{
   char *json = mongo_helper_metrics_json_dup (&err);
   bson_error_t e;
   bson_t *m;
   bson_iter_t it;
   char path[128];
   int64_t n = 0;

   MH_ASSERT_OK (json != NULL, err);
   m = bson_new_from_json ((const uint8_t *) json, -1, &e);
   ck_assert_msg (m != NULL, "metrics JSON does not parse: %s", e.message);
   snprintf (path, sizeof path, "integrity_failures.%s.%s", op, reason);
   if (bson_iter_init (&it, m) && bson_iter_find_descendant (&it, path, &it)) {
      n = bson_iter_as_int64 (&it);
   }
   bson_destroy (m);
   bson_free (json);
   return n;
}

/* Loading `id` fails with INTEGRITY `code`, returns nothing, and is
 * counted under sessions_load and `reason`. */
static void
assert_load_fails (mongo_helper_sessions_t *s, const char *id, int code, const char *reason)
{
   int64_t before = integrity_count ("sessions_load", reason);
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
   ck_assert_int_eq (integrity_count ("sessions_load", reason), before + 1);
}

static bson_t *
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

static void
setup (void)
{
   mh_test_live_setup ();
   mongo_helper_metrics_reset ();
   memset (&err, 0, sizeof err);
}

/* ---- round trips ------------------------------------------------------- */

START_TEST (every_session_call_round_trips_through_the_sealed_payload)
{
   const char *coll = mh_test_collection ("seal_rt");
   mongo_helper_sessions_t *s = store (coll, ring ("k1", 1, NULL));
   char id[MONGO_HELPER_SESSION_ID_SIZE], id2[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   bson_t *saved = BCON_NEW ("step", BCON_UTF8 ("saved"), "n", BCON_INT64 (7));
   bson_t *fields = BCON_NEW ("n", BCON_INT64 (8), "added", BCON_BOOL (true));
   bson_t *after_set =
      BCON_NEW ("step", BCON_UTF8 ("saved"), "n", BCON_INT64 (8), "added", BCON_BOOL (true));
   bson_t *after_unset = BCON_NEW ("n", BCON_INT64 (8), "added", BCON_BOOL (true));
   const char *gone[] = {"step"};
   bson_t out;
   bool touched;
   int64_t n;

   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, "user-1", id, &err), err);
   assert_sealed_with (coll, id, "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   assert_same_doc (&out, data);
   bson_destroy (&out);

   MH_ASSERT_OK (mongo_helper_sessions_save (s, id, saved, &err), err);
   assert_sealed_with (coll, id, "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   assert_same_doc (&out, saved);
   bson_destroy (&out);

   MH_ASSERT_OK (mongo_helper_sessions_set (s, id, fields, &err), err);
   assert_sealed_with (coll, id, "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   assert_same_doc (&out, after_set);
   bson_destroy (&out);

   MH_ASSERT_OK (mongo_helper_sessions_unset (s, id, gone, 1, &err), err);
   assert_sealed_with (coll, id, "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load_touch (s, id, &out, &touched, &err), err);
   assert_same_doc (&out, after_unset);
   bson_destroy (&out);

   /* The payload is bound to its _id: regenerate opens and seals again. */
   MH_ASSERT_OK (mongo_helper_sessions_regenerate (s, id, id2, &err), err);
   assert_sealed_with (coll, id2, "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id2, &out, &err), err);
   assert_same_doc (&out, after_unset);
   bson_destroy (&out);
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_load (s, id, &out, &err),
                         MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);

   /* The clear fields still serve the helpers' own queries. */
   MH_ASSERT_OK (mongo_helper_sessions_count (s, "user-1", &n, &err), err);
   ck_assert_int_eq (n, 1);
   MH_ASSERT_OK (mongo_helper_sessions_delete_user (s, "user-1", &n, &err), err);
   ck_assert_int_eq (n, 1);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 0);

   bson_destroy (data);
   bson_destroy (saved);
   bson_destroy (fields);
   bson_destroy (after_set);
   bson_destroy (after_unset);
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* Whether any run of 8 bytes of `needle` occurs in `hay`. */
static bool
shares_8_bytes (const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t len)
{
   for (size_t i = 0; i + 8 <= len; i++) {
      for (size_t j = 0; j + 8 <= hay_len; j++) {
         if (memcmp (hay + j, needle + i, 8) == 0) {
            return true;
         }
      }
   }
   return false;
}

START_TEST (stored_document_holds_no_8_byte_run_of_the_payload)
{
   const char *coll = mh_test_collection ("seal_plain");
   const char *clear_coll = mh_test_collection ("seal_plain_clear");
   mongo_helper_sessions_t *s = store (coll, ring ("k1", 1, NULL));
   mongo_helper_sessions_t *clear = store (clear_coll, NULL);
   char id[MONGO_HELPER_SESSION_ID_SIZE], cid[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   bson_t *doc;

   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   doc = raw_session (coll, id);
   ck_assert_msg (!shares_8_bytes (bson_get_data (doc), doc->len, bson_get_data (data), data->len),
                  "a run of 8 bytes of the payload is in the stored document: %s",
                  json_of (doc));
   bson_destroy (doc);

   /* The same check finds the payload of a clear session. */
   MH_ASSERT_OK (mongo_helper_sessions_create (clear, data, NULL, cid, &err), err);
   doc = raw_session (clear_coll, cid);
   ck_assert (shares_8_bytes (bson_get_data (doc), doc->len, bson_get_data (data), data->len));
   bson_destroy (doc);

   bson_destroy (data);
   mongo_helper_sessions_destroy (s);
   mongo_helper_sessions_destroy (clear);
}
END_TEST

/* ---- damaged records ------------------------------------------------------ */

START_TEST (payload_swapped_between_two_sessions_does_not_open)
{
   const char *coll = mh_test_collection ("seal_swap");
   mongo_helper_sessions_t *s = store (coll, ring ("k1", 1, NULL));
   char a[MONGO_HELPER_SESSION_ID_SIZE], b[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *da = BCON_NEW ("who", BCON_UTF8 ("a"));
   bson_t *db = BCON_NEW ("who", BCON_UTF8 ("b"));
   bson_t *doc, *u, out;
   bson_iter_t it;
   bool touched = true;

   MH_ASSERT_OK (mongo_helper_sessions_create (s, da, NULL, a, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, db, NULL, b, &err), err);
   /* b gets a's envelope, valid in itself, under b's _id. */
   doc = raw_session (coll, a);
   ck_assert (bson_iter_init_find (&it, doc, "sealed"));
   u = bson_new ();
   BSON_APPEND_DOCUMENT_BEGIN (u, "$set", &out);
   bson_append_iter (&out, "sealed", -1, &it);
   bson_append_document_end (u, &out);
   raw_update (coll, b, u);

   assert_load_fails (s, b, MONGO_HELPER_INTEGRITY_FORGED, "forged");
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_load_touch (s, b, &out, &touched, &err),
                         MONGO_HELPER_ERROR_INTEGRITY);
   ck_assert_msg (!touched && bson_count_keys (&out) == 0, "a forged session was touched or read");
   bson_destroy (&out);
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_regenerate (s, b, a, &err),
                         MONGO_HELPER_ERROR_INTEGRITY);
   /* a itself is intact. */
   MH_ASSERT_OK (mongo_helper_sessions_load (s, a, &out, &err), err);
   assert_same_doc (&out, da);
   bson_destroy (&out);

   bson_destroy (doc);
   bson_destroy (u);
   bson_destroy (da);
   bson_destroy (db);
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* Replaces sealed.<field> of session `id` with `len` bytes. */
static void
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

START_TEST (wrong_key_unknown_key_truncated_and_flipped_records_fail_cleanly)
{
   const char *coll = mh_test_collection ("seal_damage");
   mongo_helper_sessions_t *s = store (coll, ring ("k1", 1, NULL));
   /* k1 under the right id but other bytes; a ring without k1 at all. */
   mongo_helper_sessions_t *impostor = store (coll, ring ("k1", 9, NULL));
   mongo_helper_sessions_t *stranger = store (coll, ring ("k9", 1, NULL));
   mongo_helper_sessions_t *keyless = store (coll, NULL);
   char id[6][MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   bson_t *doc, out;
   uint8_t buf[512];
   const uint8_t *c;
   uint32_t len;

   for (int i = 0; i < 6; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_create (s, data, "u", id[i], &err), err);
   }
   assert_load_fails (impostor, id[0], MONGO_HELPER_INTEGRITY_FORGED, "forged");
   assert_load_fails (stranger, id[0], MONGO_HELPER_INTEGRITY_UNKNOWN_KEY, "unknown_key");
   assert_load_fails (keyless, id[0], MONGO_HELPER_INTEGRITY_UNKNOWN_KEY, "unknown_key");

   doc = raw_session (coll, id[1]);
   c = binary_at (doc, "sealed.c", &len);
   ck_assert_uint_le (len, sizeof buf);
   memcpy (buf, c, len);
   bson_destroy (doc);
   /* Cut inside the ciphertext, then inside the tag. */
   set_envelope_binary (coll, id[1], "c", buf, len - 20);
   assert_load_fails (s, id[1], MONGO_HELPER_INTEGRITY_FORGED, "forged");
   set_envelope_binary (coll, id[2], "c", buf, 10);
   assert_load_fails (s, id[2], MONGO_HELPER_INTEGRITY_MALFORMED, "malformed");
   /* One bit of the ciphertext, one of the nonce. */
   doc = raw_session (coll, id[3]);
   c = binary_at (doc, "sealed.c", &len);
   ck_assert_uint_le (len, sizeof buf);
   memcpy (buf, c, len);
   bson_destroy (doc);
   buf[len / 2] ^= 0x10;
   set_envelope_binary (coll, id[3], "c", buf, len);
   assert_load_fails (s, id[3], MONGO_HELPER_INTEGRITY_FORGED, "forged");
   doc = raw_session (coll, id[4]);
   c = binary_at (doc, "sealed.n", &len);
   ck_assert_uint_le (len, sizeof buf);
   memcpy (buf, c, len);
   bson_destroy (doc);
   buf[0] ^= 0x01;
   set_envelope_binary (coll, id[4], "n", buf, len);
   assert_load_fails (s, id[4], MONGO_HELPER_INTEGRITY_FORGED, "forged");
   /* The nonce cut to 11 bytes: not an envelope. */
   set_envelope_binary (coll, id[5], "n", buf, len - 1);
   assert_load_fails (s, id[5], MONGO_HELPER_INTEGRITY_MALFORMED, "malformed");

   /* A handle without keys never writes clear data beside a payload. */
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_save (keyless, id[0], data, &err),
                         MONGO_HELPER_ERROR_INTEGRITY);
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_set (keyless, id[0], data, &err),
                         MONGO_HELPER_ERROR_INTEGRITY);
   assert_sealed_with (coll, id[0], "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id[0], &out, &err), err);
   assert_same_doc (&out, data);
   bson_destroy (&out);

   bson_destroy (data);
   mongo_helper_sessions_destroy (s);
   mongo_helper_sessions_destroy (impostor);
   mongo_helper_sessions_destroy (stranger);
   mongo_helper_sessions_destroy (keyless);
}
END_TEST

/* ---- rotation and rekey ---------------------------------------------------- */

START_TEST (rotation_reads_old_key_and_the_next_write_seals_with_the_new)
{
   const char *coll = mh_test_collection ("seal_rot");
   mongo_helper_sessions_t *old = store (coll, ring ("k1", 1, NULL));
   mongo_helper_sessions_t *rotated = store (coll, ring ("k2", 2, "k1", 1, NULL));
   mongo_helper_sessions_t *k1_only = store (coll, ring ("k1", 1, NULL));
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   bson_t *more = BCON_NEW ("more", BCON_INT32 (1));
   bson_t out;

   MH_ASSERT_OK (mongo_helper_sessions_create (old, data, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (rotated, id, &out, &err), err);
   assert_same_doc (&out, data);
   bson_destroy (&out);
   assert_sealed_with (coll, id, "k1"); /* a read does not write */
   MH_ASSERT_OK (mongo_helper_sessions_set (rotated, id, more, &err), err);
   assert_sealed_with (coll, id, "k2");
   assert_load_fails (k1_only, id, MONGO_HELPER_INTEGRITY_UNKNOWN_KEY, "unknown_key");
   MH_ASSERT_OK (mongo_helper_sessions_load (rotated, id, &out, &err), err);
   ck_assert_int_eq (mh_test_int_at (&out, "more"), 1);
   ck_assert_str_eq (mh_test_utf8_at (&out, "user"), "alice-the-recognisable");
   bson_destroy (&out);

   bson_destroy (data);
   bson_destroy (more);
   mongo_helper_sessions_destroy (old);
   mongo_helper_sessions_destroy (rotated);
   mongo_helper_sessions_destroy (k1_only);
}
END_TEST

START_TEST (rekey_moves_every_old_key_and_clear_session_to_the_current_key)
{
   const char *coll = mh_test_collection ("seal_rekey");
   mongo_helper_sessions_t *old = store (coll, ring ("k1", 1, NULL));
   mongo_helper_sessions_t *clear = store (coll, NULL);
   mongo_helper_sessions_t *rotated = store (coll, ring ("k2", 2, "k1", 1, NULL));
   mongo_helper_sessions_t *k2_only = store (coll, ring ("k2", 2, NULL));
   char id[10][MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data[10];
   bson_t *f, out;
   int64_t changed = -1;

   for (int i = 0; i < 10; i++) {
      data[i] = BCON_NEW ("i", BCON_INT32 (i), "who", BCON_UTF8 (i < 7 ? "sealed" : "clear"));
      /* 7 sealed with k1, 3 stored before encryption was turned on */
      MH_ASSERT_OK (mongo_helper_sessions_create (i < 7 ? old : clear, data[i], "u", id[i], &err),
                    err);
   }
   f = BCON_NEW ("data", "{", "$exists", BCON_BOOL (true), "}");
   ck_assert_int_eq (mh_test_raw_count (coll, f), 3);

   MH_ASSERT_OK (mongo_helper_sessions_rekey (rotated, 3, &changed, &err), err);
   ck_assert_int_eq (changed, 10);
   ck_assert_int_eq (mh_test_raw_count (coll, f), 0);
   for (int i = 0; i < 10; i++) {
      assert_sealed_with (coll, id[i], "k2");
      MH_ASSERT_OK (mongo_helper_sessions_load (k2_only, id[i], &out, &err), err);
      assert_same_doc (&out, data[i]);
      bson_destroy (&out);
   }
   /* Nothing left to do: a second pass writes nothing. */
   MH_ASSERT_OK (mongo_helper_sessions_rekey (rotated, 0, &changed, &err), err);
   ck_assert_int_eq (changed, 0);

   for (int i = 0; i < 10; i++) {
      bson_destroy (data[i]);
   }
   bson_destroy (f);
   mongo_helper_sessions_destroy (old);
   mongo_helper_sessions_destroy (clear);
   mongo_helper_sessions_destroy (rotated);
   mongo_helper_sessions_destroy (k2_only);
}
END_TEST

START_TEST (rekey_leaves_a_damaged_record_counts_it_and_fails_after_the_pass)
{
   const char *coll = mh_test_collection ("seal_rekey_bad");
   mongo_helper_sessions_t *old = store (coll, ring ("k1", 1, NULL));
   mongo_helper_sessions_t *rotated = store (coll, ring ("k2", 2, "k1", 1, NULL));
   mongo_helper_sessions_t *keyless = store (coll, NULL);
   char id[4][MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   bson_t *doc;
   uint8_t buf[512];
   const uint8_t *c;
   uint32_t len;
   int64_t changed = -1;

   for (int i = 0; i < 4; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_create (old, data, NULL, id[i], &err), err);
   }
   doc = raw_session (coll, id[2]);
   c = binary_at (doc, "sealed.c", &len);
   ck_assert_uint_le (len, sizeof buf);
   memcpy (buf, c, len);
   bson_destroy (doc);
   buf[3] ^= 0x80;
   set_envelope_binary (coll, id[2], "c", buf, len);

   memset (&err, 0, sizeof err);
   ck_assert (!mongo_helper_sessions_rekey (rotated, 2, &changed, &err));
   ck_assert_msg (err.category == MONGO_HELPER_ERROR_INTEGRITY &&
                     err.code == MONGO_HELPER_INTEGRITY_FORGED,
                  "expected integrity/forged, got %s %d: %s",
                  mongo_helper_category_name (err.category),
                  (int) err.code,
                  err.message);
   ck_assert_msg (strstr (err.message, "1 did not open"), "message: %s", err.message);
   ck_assert_int_eq (changed, 3);
   ck_assert_int_eq (integrity_count ("sessions_rekey", "forged"), 1);
   assert_sealed_with (coll, id[0], "k2");
   assert_sealed_with (coll, id[2], "k1");
   assert_sealed_with (coll, id[3], "k2");

   /* Without keys there is nothing to rekey with. */
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_rekey (keyless, 0, &changed, &err),
                         MONGO_HELPER_ERROR_CONFIG);
   MH_ASSERT_FAILS_WITH (mongo_helper_sessions_rekey (rotated, 100001, &changed, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);

   bson_destroy (data);
   mongo_helper_sessions_destroy (old);
   mongo_helper_sessions_destroy (rotated);
   mongo_helper_sessions_destroy (keyless);
}
END_TEST

START_TEST (clear_session_from_before_encryption_loads_and_its_next_write_seals_it)
{
   const char *coll = mh_test_collection ("seal_migrate");
   mongo_helper_sessions_t *clear = store (coll, NULL);
   mongo_helper_sessions_t *s = store (coll, ring ("k1", 1, NULL));
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   const char *drop[] = {"cart"};
   bson_t *doc, out;

   MH_ASSERT_OK (mongo_helper_sessions_create (clear, data, NULL, id, &err), err);
   doc = raw_session (coll, id);
   ck_assert (mh_test_has_field (doc, "data") && !mh_test_has_field (doc, "sealed"));
   bson_destroy (doc);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   assert_same_doc (&out, data);
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_sessions_unset (s, id, drop, 1, &err), err);
   assert_sealed_with (coll, id, "k1");
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   ck_assert (!mh_test_has_field (&out, "cart"));
   ck_assert_str_eq (mh_test_utf8_at (&out, "user"), "alice-the-recognisable");
   bson_destroy (&out);

   bson_destroy (data);
   mongo_helper_sessions_destroy (clear);
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* ---- concurrency ---------------------------------------------------------- */

typedef struct {
   mongo_helper_sessions_t *s;
   const char *id;
   int thread;
   int failures;
   char last_error[MONGO_HELPER_ERROR_MESSAGE_SIZE];
} setter_t;

#define FIELDS_PER_THREAD 25

static void *
setter (void *arg)
{
   setter_t *t = arg;

   for (int i = 0; i < FIELDS_PER_THREAD; i++) {
      mongo_helper_error_t e;
      char name[32];
      bson_t *f;

      snprintf (name, sizeof name, "t%d_%d", t->thread, i);
      f = BCON_NEW (name, BCON_INT32 (i));
      if (!mongo_helper_sessions_set (t->s, t->id, f, &e)) {
         t->failures++;
         snprintf (t->last_error, sizeof t->last_error, "%s", e.message);
      }
      bson_destroy (f);
   }
   mongo_helper_thread_release ();
   return NULL;
}

START_TEST (concurrent_sets_on_one_encrypted_session_lose_no_field)
{
   const char *coll = mh_test_collection ("seal_race");
   mongo_helper_sessions_t *s = store (coll, ring ("k1", 1, NULL));
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   setter_t t[2];
   pthread_t th[2];
   bson_t out;

   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   for (int i = 0; i < 2; i++) {
      t[i] = (setter_t){s, id, i, 0, ""};
      ck_assert_int_eq (pthread_create (&th[i], NULL, setter, &t[i]), 0);
   }
   for (int i = 0; i < 2; i++) {
      pthread_join (th[i], NULL);
      ck_assert_msg (t[i].failures == 0,
                     "thread %d: %d sets failed, the last: %s",
                     i,
                     t[i].failures,
                     t[i].last_error);
   }
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   ck_assert_msg (bson_count_keys (&out) == 2 * FIELDS_PER_THREAD,
                  "expected %d fields, found %u: %s",
                  2 * FIELDS_PER_THREAD,
                  bson_count_keys (&out),
                  json_of (&out));
   bson_destroy (&out);
   assert_sealed_with (coll, id, "k1");
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* ---- keys from the configuration --------------------------------------------- */

/* A key file holding `content` with mode `mode` (static path). */
static const char *
key_file (const char *content, mode_t mode)
{
   const char *path = mh_test_write_ini (content);

   ck_assert_int_eq (chmod (path, mode), 0);
   return path;
}

START_TEST (handle_without_keys_of_its_own_takes_the_configured_ring)
{
   const char *coll = mh_test_collection ("seal_cfg");
   const char *coll2 = mh_test_collection ("seal_cfg_file");
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   char content[256];
   mongo_helper_sessions_t *s, *explicit_ring;
   bson_t *data = sample_data ();
   bson_t out;

   setenv ("MONGO_SESSION_KEYS", ring ("env2", 2, "k1", 1, NULL), 1);
   s = store (coll, NULL);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   assert_sealed_with (coll, id, "env2");
   /* Explicit options win over the configuration. */
   explicit_ring = store (coll, ring ("env2", 2, NULL));
   MH_ASSERT_OK (mongo_helper_sessions_load (explicit_ring, id, &out, &err), err);
   assert_same_doc (&out, data);
   bson_destroy (&out);
   mongo_helper_sessions_destroy (s);
   mongo_helper_sessions_destroy (explicit_ring);

   /* A key file instead, after a re-initialisation. */
   mongo_helper_shutdown ();
   unsetenv ("MONGO_SESSION_KEYS");
   snprintf (
      content, sizeof content, "# rotated 2024\nfile3:%s\n\nk1:%s\n", key_b64 (3), key_b64 (1));
   setenv ("MONGO_SESSION_KEY_FILE", key_file (content, 0600), 1);
   s = store (coll2, NULL);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   assert_sealed_with (coll2, id, "file3");
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
}
END_TEST

/* The configuration fails with CONFIG naming `where`, without key text. */
static void
assert_config_fails (const char *where, const char *const *secrets)
{
   mongo_helper_config_t *c = mongo_helper_config_new (NULL, NULL, &err);

   ck_assert_msg (c == NULL, "expected the configuration to be refused");
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_msg (strstr (err.message, where), "expected '%s' in: %s", where, err.message);
   for (; secrets && *secrets; secrets++) {
      for (size_t i = 0; i + 4 <= strlen (*secrets); i++) {
         ck_assert_msg (!find_gram (err.message, *secrets + i),
                        "key text '%.4s' in: %s",
                        *secrets + i,
                        err.message);
      }
   }
}

START_TEST (bad_key_configuration_names_its_source_and_never_shows_key_text)
{
   char spec[256], content[256];
   const char *good = key_b64 (1);
   const char *short_key = "c2hvcnQta2V5LW9mLTIwYnl0ZSE="; /* 20 bytes */
   const char *secrets[] = {good, short_key, NULL};
   const char *ini;

   /* Not base64 (one character changed). */
   snprintf (spec, sizeof spec, "k1:%s", good);
   spec[10] = '*';
   setenv ("MONGO_SESSION_KEYS", spec, 1);
   assert_config_fails ("environment MONGO_SESSION_KEYS, entry 1 ('k1')", secrets);
   ck_assert_msg (strstr (err.message, "not valid base64"), "%s", err.message);
   /* The wrong size. */
   snprintf (spec, sizeof spec, "k2:%s,k1:%s", good, short_key);
   setenv ("MONGO_SESSION_KEYS", spec, 1);
   assert_config_fails ("environment MONGO_SESSION_KEYS, entry 2 ('k1')", secrets);
   ck_assert_msg (strstr (err.message, "20 bytes"), "%s", err.message);
   /* Reversed "key:id": the id part is refused, never echoed. */
   snprintf (spec, sizeof spec, "%s:k1", good);
   setenv ("MONGO_SESSION_KEYS", spec, 1);
   assert_config_fails ("environment MONGO_SESSION_KEYS, entry 1", secrets);
   unsetenv ("MONGO_SESSION_KEYS");

   /* A key file other users may read. */
   snprintf (content, sizeof content, "k1:%s\n", good);
   setenv ("MONGO_CACHE_KEY_FILE", key_file (content, 0644), 1);
   assert_config_fails ("environment MONGO_CACHE_KEY_FILE, key file", secrets);
   ck_assert_msg (strstr (err.message, "other users have access"), "%s", err.message);
   /* Text and key file of one ring. */
   setenv ("MONGO_CACHE_KEY_FILE", key_file (content, 0600), 1);
   setenv ("MONGO_CACHE_KEYS", spec, 1);
   assert_config_fails ("environment MONGO_CACHE_KEYS and environment MONGO_CACHE_KEY_FILE",
                        secrets);
   unsetenv ("MONGO_CACHE_KEYS");
   unsetenv ("MONGO_CACHE_KEY_FILE");

   /* Keys in an INI file others may read; the same file closed is fine. */
   snprintf (content, sizeof content, "[db]\nsession_keys = k1:%s\n", good);
   ini = mh_test_write_ini (content);
   ck_assert_int_eq (chmod (ini, 0644), 0);
   setenv ("MONGO_HELPER_CONFIG", ini, 1);
   assert_config_fails ("[db] session_keys: the INI file holds encryption keys", secrets);
   ck_assert_int_eq (chmod (ini, 0640), 0);
   {
      mongo_helper_config_t *c = mongo_helper_config_new (NULL, NULL, &err);
      mongo_helper_setting_t st;

      MH_ASSERT_OK (c != NULL, err);
      MH_ASSERT_OK (mongo_helper_config_setting_find (c, "session_keys", &st, &err), err);
      ck_assert_str_eq (st.value, "****");
      ck_assert_int_eq (st.source, MONGO_HELPER_SOURCE_INI);
      mongo_helper_config_destroy (c);
   }

   /* The API route: the options name themselves. */
   {
      mongo_helper_sessions_options_t o;
      mongo_helper_cache_options_t co;

      mongo_helper_sessions_options_init (&o);
      snprintf (spec, sizeof spec, "k1:%s", short_key);
      o.keys = spec;
      ck_assert_ptr_null (mongo_helper_sessions_new (&o, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
      ck_assert_msg (
         strstr (err.message, "sessions option keys, entry 1 ('k1')"), "%s", err.message);
      ck_assert_msg (!strstr (err.message, short_key), "%s", err.message);
      o.key_file = "/nonexistent/keys";
      ck_assert_ptr_null (mongo_helper_sessions_new (&o, &err));
      ck_assert_msg (strstr (err.message, "keys and key_file are both set"), "%s", err.message);
      mongo_helper_cache_options_init (&co);
      co.key_file = "/nonexistent/keys";
      ck_assert_ptr_null (mongo_helper_cache_new (&co, &err));
      ck_assert_msg (strstr (err.message, "cache option key_file, key file /nonexistent/keys"),
                     "%s",
                     err.message);
   }
}
END_TEST

/* ---- key text in no output ---------------------------------------------------- */

typedef struct {
   pthread_mutex_t lock;
   char *text;
   size_t len;
} sink_t;

static sink_t sink = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static void
collect (sink_t *s, const char *what, const char *text)
{
   size_t add = strlen (what) + strlen (text) + 3;

   pthread_mutex_lock (&s->lock);
   s->text = realloc (s->text, s->len + add + 1);
   ck_assert_ptr_nonnull (s->text);
   snprintf (s->text + s->len, add + 1, "%s: %s\n", what, text);
   s->len += add - 1;
   pthread_mutex_unlock (&s->lock);
}

static void
log_sink (mongo_helper_log_level_t level, const char *domain, const char *message, void *ud)
{
   (void) level;
   (void) domain;
   collect (ud, "log", message);
}

static void
collect_error (void)
{
   collect (&sink, "error", err.message);
   memset (&err, 0, sizeof err);
}

/* The output of `mongo-helper config` next to this test binary (the
 * sanitizer build has its own), run with the test's environment; NULL when
 * there is no tool. */
static char *
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

/* No run of 4 or more characters of `key` in `text`. */
static void
assert_no_key_in (const char *what, const char *text, const char *key)
{
   for (size_t i = 0; i + 4 <= strlen (key); i++) {
      const char *hit = find_gram (text, key + i);

      ck_assert_msg (hit == NULL,
                     "%s shows '%.4s' (characters %zu-%zu of a key) in: %.200s",
                     what,
                     key + i,
                     i + 1,
                     i + 4,
                     hit ? (hit - text > 60 ? hit - 60 : text) : "");
   }
}

START_TEST (keys_appear_in_no_error_log_line_metric_setting_or_tool_output)
{
   char coll[96], cache_coll[96], tool_coll[96], args[256];
   const char *k_sess = key_b64 (11), *k_old = key_b64 (12), *k_cache = key_b64 (13);
   const char *bad = key_b64 (14);
   char spec[512], badspec[256], content[256];
   mongo_helper_sessions_t *s, *old, *keyless;
   mongo_helper_cache_t *c;
   mongo_helper_config_t *cfg;
   mongo_helper_setting_t st;
   char id[MONGO_HELPER_SESSION_ID_SIZE], id2[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t *data = sample_data ();
   bson_t out;
   char *text, *tool = tool_output ("--version");
   bool have_tool = tool != NULL;
   size_t needed = 0;
   int64_t n;
   bool touched;
   uint8_t *bytes;
   size_t blen;

   free (tool);
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("seal_quiet"));
   snprintf (cache_coll, sizeof cache_coll, "%s", mh_test_collection ("seal_quiet_cache"));
   snprintf (tool_coll, sizeof tool_coll, "%s", mh_test_collection ("seal_quiet_tool"));
   mongo_helper_set_log_handler (log_sink, MONGO_HELPER_LOG_DEBUG, &sink);
   snprintf (spec, sizeof spec, "cur:%s,old:%s", k_sess, k_old);
   setenv ("MONGO_SESSION_KEYS", spec, 1);
   snprintf (content, sizeof content, "c1:%s\n", k_cache);
   setenv ("MONGO_CACHE_KEY_FILE", key_file (content, 0600), 1);

   /* Every path, the failing ones included. */
   s = store (coll, NULL);
   snprintf (badspec, sizeof badspec, "old:%s", k_old);
   old = store (coll, badspec);
   keyless = store (coll,
                    "nokey:"
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
   MH_ASSERT_OK (mongo_helper_sessions_create (old, data, "u", id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load_touch (s, id, &out, &touched, &err), err);
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_sessions_set (s, id, data, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_regenerate (s, id, id2, &err), err);
   ck_assert (!mongo_helper_sessions_load (old, id2, &out, &err));
   bson_destroy (&out);
   collect_error ();
   ck_assert (!mongo_helper_sessions_load (keyless, id2, &out, &err));
   bson_destroy (&out);
   collect_error ();
   MH_ASSERT_OK (mongo_helper_sessions_rekey (s, 0, &n, &err), err);
   {
      mongo_helper_cache_options_t co;

      mongo_helper_cache_options_init (&co);
      co.collection = cache_coll;
      c = mongo_helper_cache_new (&co, &err);
      MH_ASSERT_OK (c != NULL, err);
   }
   MH_ASSERT_OK (
      mongo_helper_cache_set_bytes (c, "seal-quiet", (const uint8_t *) "xyz", 3, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get_bytes (c, "seal-quiet", &bytes, &blen, &err), err);
   bson_free (bytes);
   MH_ASSERT_OK (mongo_helper_cache_rekey (c, 0, &n, &err), err);
   snprintf (badspec, sizeof badspec, "k1:%s", bad);
   badspec[8] = '!';
   setenv ("MONGO_SESSION_KEYS", badspec, 1);
   ck_assert_ptr_null (mongo_helper_config_new (NULL, NULL, &err));
   collect_error ();
   {
      mongo_helper_sessions_options_t o;

      mongo_helper_sessions_options_init (&o);
      o.keys = badspec;
      ck_assert_ptr_null (mongo_helper_sessions_new (&o, &err));
      collect_error ();
   }
   setenv ("MONGO_SESSION_KEYS", spec, 1);

   /* Metrics, both forms. */
   ck_assert (!mongo_helper_metrics_prometheus (NULL, 0, &needed, NULL));
   text = malloc (needed + 4096);
   MH_ASSERT_OK (mongo_helper_metrics_prometheus (text, needed + 4096, NULL, &err), err);
   collect (&sink, "prometheus", text);
   free (text);
   text = mongo_helper_metrics_json_dup (&err);
   MH_ASSERT_OK (text != NULL, err);
   collect (&sink, "json", text);
   bson_free (text);
   /* Every setting of the configuration. */
   cfg = mongo_helper_config_new (NULL, NULL, &err);
   MH_ASSERT_OK (cfg != NULL, err);
   for (size_t i = 0; mongo_helper_config_setting (cfg, i, &st, &err); i++) {
      collect (&sink, st.name, st.value ? st.value : "(null)");
      collect (&sink, st.name, st.source_text);
   }
   MH_ASSERT_OK (mongo_helper_config_setting_find (cfg, "MONGO_SESSION_KEYS", &st, &err), err);
   ck_assert_str_eq (st.value, "****");
   mongo_helper_config_destroy (cfg);
   /* The tool: config (text and JSON), and a rekey, good and bad keys. */
   if (have_tool) {
      tool = tool_output ("config");
      ck_assert_msg (strstr (tool, "session_keys") && strstr (tool, "****"), "%s", tool);
      collect (&sink, "tool config", tool);
      free (tool);
      tool = tool_output ("config --json");
      collect (&sink, "tool config --json", tool);
      free (tool);
      snprintf (args, sizeof args, "sessions rekey --sessions-collection %s --json", tool_coll);
      tool = tool_output (args);
      ck_assert_msg (strstr (tool, "\"changed\""), "%s", tool);
      collect (&sink, "tool rekey", tool);
      free (tool);
      setenv ("MONGO_SESSION_KEYS", badspec, 1);
      tool = tool_output ("sessions rekey");
      ck_assert_msg (
         strstr (tool, "mongo-helper: config: environment MONGO_SESSION_KEYS"), "%s", tool);
      collect (&sink, "tool rekey, bad key", tool);
      free (tool);
   }

   ck_assert_msg (strstr (sink.text, "not in the key ring") &&
                     strstr (sink.text, "not valid base64"),
                  "expected the failures in the collected output: %s",
                  sink.text);
   for (const char *const *k = (const char *const[]){k_sess, k_old, k_cache, bad, NULL}; *k; k++) {
      assert_no_key_in ("the collected output", sink.text, *k);
   }
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
   mongo_helper_cache_destroy (c);
   mongo_helper_sessions_destroy (s);
   mongo_helper_sessions_destroy (old);
   mongo_helper_sessions_destroy (keyless);
   bson_destroy (data);
   free (sink.text);
   if (!have_tool) {
      MH_SKIP ("no mongo-helper next to the test binary: its output was not checked");
   }
}
END_TEST

START_TEST (tool_rekey_seals_clear_sessions_and_cache_values_with_the_configured_key)
{
   char sess_coll[96], cache_coll[96], args[256], hex[65], content[256];
   const char *id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
   mongo_helper_sessions_t *s;
   mongo_helper_cache_t *c;
   mongo_helper_cache_options_t co;
   mongoc_collection_t *raw;
   bson_t *data = sample_data ();
   bson_t *doc, *out_doc, out;
   char *tool = tool_output ("--version");

   if (!tool) {
      bson_destroy (data);
      MH_SKIP ("no mongo-helper next to the test binary");
   }
   free (tool);
   snprintf (sess_coll, sizeof sess_coll, "%s", mh_test_collection ("seal_tool_s"));
   snprintf (cache_coll, sizeof cache_coll, "%s", mh_test_collection ("seal_tool_c"));
   setenv ("MONGO_SESSION_KEYS", ring ("t2", 2, "t1", 1, NULL), 1);
   snprintf (content, sizeof content, "c1:%s\n", key_b64 (5));
   setenv ("MONGO_CACHE_KEY_FILE", key_file (content, 0600), 1);
   /* A session and a cache value stored before encryption was turned on. */
   sha256_hex (id, hex);
   doc = BCON_NEW ("_id",
                   BCON_UTF8 (hex),
                   "data",
                   BCON_DOCUMENT (data),
                   "expiresAt",
                   BCON_DATE_TIME (INT64_C (4102444800000)));
   raw = mh_test_raw_collection (sess_coll);
   ck_assert (mongoc_collection_insert_one (raw, doc, NULL, NULL, NULL));
   mongoc_collection_destroy (raw);
   bson_destroy (doc);
   doc = BCON_NEW ("_id", BCON_UTF8 ("old-value"), "value", BCON_DOCUMENT (data));
   raw = mh_test_raw_collection (cache_coll);
   ck_assert (mongoc_collection_insert_one (raw, doc, NULL, NULL, NULL));
   mongoc_collection_destroy (raw);
   bson_destroy (doc);

   snprintf (
      args, sizeof args, "sessions rekey --batch 7 --sessions-collection %s --json", sess_coll);
   tool = tool_output (args);
   ck_assert_msg (strstr (tool, "{ \"changed\" : 1 }"), "expected 1 changed, got: %s", tool);
   free (tool);
   assert_sealed_with (sess_coll, id, "t2");
   tool = tool_output (args);
   ck_assert_msg (strstr (tool, "{ \"changed\" : 0 }"), "expected 0 changed, got: %s", tool);
   free (tool);
   snprintf (args, sizeof args, "cache rekey --cache-collection %s", cache_coll);
   tool = tool_output (args);
   ck_assert_msg (strstr (tool, "1 re-encrypted with the current key"), "got: %s", tool);
   free (tool);

   s = store (sess_coll, NULL);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   ck_assert (bson_equal (&out, data));
   bson_destroy (&out);
   mongo_helper_cache_options_init (&co);
   co.collection = cache_coll;
   c = mongo_helper_cache_new (&co, &err);
   MH_ASSERT_OK (c != NULL, err);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "old-value", &out, &err), err);
   ck_assert (bson_equal (&out, data));
   bson_destroy (&out);
   doc = BCON_NEW ("_id", BCON_UTF8 ("old-value"));
   out_doc = mh_test_raw_find_one (cache_coll, doc);
   bson_destroy (doc);
   doc = out_doc;
   ck_assert (doc && !mh_test_has_field (doc, "value"));
   ck_assert_str_eq (mh_test_utf8_at (doc, "sealed.k"), "c1");
   bson_destroy (doc);

   /* Without a ring the tool says so, with the configuration's exit status. */
   unsetenv ("MONGO_SESSION_KEYS");
   snprintf (
      args, sizeof args, "sessions rekey --sessions-collection %s; echo \"exit=$?\"", sess_coll);
   tool = tool_output (args);
   ck_assert_msg (strstr (tool,
                          "mongo-helper: config: mongo_helper_sessions_rekey: this sessions "
                          "handle has no key ring") &&
                     strstr (tool, "exit=3"),
                  "got: %s",
                  tool);
   free (tool);

   mongo_helper_cache_destroy (c);
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
}
END_TEST

Suite *
sessions_sealed_suite (void)
{
   Suite *s = suite_create ("sessions_sealed");
   TCase *live = tcase_create ("live");
   TCase *config = tcase_create ("config");

   tcase_add_checked_fixture (live, setup, mh_test_teardown);
   tcase_set_timeout (live, 120);
   tcase_add_test (live, every_session_call_round_trips_through_the_sealed_payload);
   tcase_add_test (live, stored_document_holds_no_8_byte_run_of_the_payload);
   tcase_add_test (live, payload_swapped_between_two_sessions_does_not_open);
   tcase_add_test (live, wrong_key_unknown_key_truncated_and_flipped_records_fail_cleanly);
   tcase_add_test (live, rotation_reads_old_key_and_the_next_write_seals_with_the_new);
   tcase_add_test (live, rekey_moves_every_old_key_and_clear_session_to_the_current_key);
   tcase_add_test (live, rekey_leaves_a_damaged_record_counts_it_and_fails_after_the_pass);
   tcase_add_test (live, clear_session_from_before_encryption_loads_and_its_next_write_seals_it);
   tcase_add_test (live, concurrent_sets_on_one_encrypted_session_lose_no_field);
   tcase_add_test (live, handle_without_keys_of_its_own_takes_the_configured_ring);
   tcase_add_test (live, keys_appear_in_no_error_log_line_metric_setting_or_tool_output);
   tcase_add_test (live, tool_rekey_seals_clear_sessions_and_cache_values_with_the_configured_key);
   suite_add_tcase (s, live);
   tcase_add_checked_fixture (config, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (config, bad_key_configuration_names_its_source_and_never_shows_key_text);
   suite_add_tcase (s, config);
   return s;
}
