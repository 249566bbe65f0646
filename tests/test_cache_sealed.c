/* Cache values encrypted at rest (src/cache.c, src/web.c): documents and
 * bytes sealed and bound to their stored _id (short and hashed long keys),
 * read back raw; every read path; payloads swapped, altered and sealed
 * with other keys; counters that stay clear; rotation, rekey and clear
 * values from before encryption; keys from the configuration. */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* "id:base64" of test key `seed` (SHA-256 of a seed text). */
static const char *
ring_of (const char *id, int seed)
{
   static char spec[4][128];
   static int next;
   char *s = spec[next++ % 4];
   unsigned char md[EVP_MAX_MD_SIZE], b64[64];
   unsigned int n = 0;
   char in[64];

   snprintf (in, sizeof in, "mh sealed cache test key %d", seed);
   ck_assert (EVP_Digest (in, strlen (in), md, &n, EVP_sha256 (), NULL) && n == 32);
   EVP_EncodeBlock (b64, md, 32);
   snprintf (s, 128, "%s:%s", id, (const char *) b64);
   return s;
}

static mongo_helper_cache_t *
cache_on (const char *coll, const char *keys)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;

   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   o.keys = keys;
   o.max_key_length = 40;
   c = mongo_helper_cache_new (&o, &err);
   MH_ASSERT_OK (c != NULL, err);
   return c;
}

/* A key longer than max_key_length (40): stored as _id {p, h}. */
static const char *const long_key =
   "a-cache-key-long-enough-to-be-stored-as-a-prefix-and-its-sha-256";

/* The stored record of `key` (caller destroys): found by _id, or for the
 * one long key of a test by the hash its _id has. */
static bson_t *
raw_entry (const char *coll, const char *key)
{
   bson_t *f = strlen (key) > 40 ? BCON_NEW ("_id.h", "{", "$exists", BCON_BOOL (true), "}")
                                 : BCON_NEW ("_id", BCON_UTF8 (key));
   bson_t *doc;

   doc = mh_test_raw_find_one (coll, f);
   bson_destroy (f);
   ck_assert_msg (doc != NULL, "expected a stored record for '%s'", key);
   return doc;
}

static void
assert_sealed (const char *coll, const char *key, const char *key_id)
{
   bson_t *doc = raw_entry (coll, key);

   ck_assert_msg (!mh_test_has_field (doc, "value"), "expected no clear value for '%s'", key);
   ck_assert_str_eq (mh_test_utf8_at (doc, "sealed.k"), key_id);
   bson_destroy (doc);
}

static void
raw_update (const char *coll, const bson_t *filter, const bson_t *update)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_error_t e;

   ck_assert_msg (mongoc_collection_update_one (c, filter, update, NULL, NULL, &e),
                  "raw update failed: %s",
                  e.message);
   mongoc_collection_destroy (c);
}

#define ASSERT_INTEGRITY(call, want_code)                                                     \
   do {                                                                                       \
      memset (&err, 0, sizeof err);                                                           \
      ck_assert_msg (!(call), "expected failure: %s", #call);                                 \
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_INTEGRITY && err.code == (want_code), \
                     "%s: expected integrity %d, got %s %d: %s",                              \
                     #call,                                                                   \
                     (int) (want_code),                                                       \
                     mongo_helper_category_name (err.category),                               \
                     (int) err.code,                                                          \
                     err.message);                                                            \
   } while (0)

/* A compute function the tests expect never to run. */
static bool
never_compute (const char *key, bson_t *value_out, void *user_data, mongo_helper_error_t *error)
{
   (void) value_out;
   (void) user_data;
   (void) error;
   ck_abort_msg ("compute ran for '%s': the cached value should have been found", key);
   return false;
}

static void
setup (void)
{
   mh_test_live_setup ();
   mongo_helper_metrics_reset ();
   memset (&err, 0, sizeof err);
}

static const uint8_t secret_bytes[] = "BYTES-PLAINTEXT-MARKER-7f3a9c1e-must-not-be-stored";

START_TEST (every_cache_read_and_write_round_trips_through_the_sealed_value)
{
   const char *coll = mh_test_collection ("cseal_rt");
   mongo_helper_cache_t *c = cache_on (coll, ring_of ("c1", 1));
   bson_t *v =
      BCON_NEW ("html", BCON_UTF8 ("<p>DOCUMENT-PLAINTEXT-MARKER</p>"), "n", BCON_INT32 (5));
   bson_t *v2 = BCON_NEW ("added", BCON_BOOL (true));
   const char *keys[] = {"doc", "bytes", long_key, "added", "counter", "missing"};
   bson_t out, found;
   bson_iter_t it;
   uint8_t *data;
   size_t len;
   int64_t n;
   bool computed = true;

   MH_ASSERT_OK (mongo_helper_cache_set (c, "doc", v, 0, &err), err);
   MH_ASSERT_OK (
      mongo_helper_cache_set_bytes (c, "bytes", secret_bytes, sizeof secret_bytes, -1, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set (c, long_key, v, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_add (c, "added", v2, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_incr (c, "counter", 3, 0, &n, &err), err);
   for (size_t i = 0; i < 4; i++) {
      assert_sealed (coll, keys[i], "c1");
   }

   MH_ASSERT_OK (mongo_helper_cache_get (c, "doc", &out, &err), err);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_cache_get (c, long_key, &out, &err), err);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_cache_get_bytes (c, "bytes", &data, &len, &err), err);
   ck_assert_uint_eq (len, sizeof secret_bytes);
   ck_assert (memcmp (data, secret_bytes, len) == 0);
   bson_free (data);
   /* A document is not bytes, sealed or not. */
   MH_ASSERT_FAILS_WITH (mongo_helper_cache_get_bytes (c, "doc", &data, &len, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_cache_add (c, "added", v, 0, &err),
                         MONGO_HELPER_ERROR_DUPLICATE_KEY);

   MH_ASSERT_OK (mongo_helper_cache_get_many (c, keys, 6, &found, &err), err);
   ck_assert_uint_eq (bson_count_keys (&found), 5);
   ck_assert (bson_iter_init_find (&it, &found, "bytes") && BSON_ITER_HOLDS_BINARY (&it));
   ck_assert_int_eq (mh_test_int_at (&found, "doc.n"), 5);
   ck_assert (bson_iter_init_find (&it, &found, long_key) && BSON_ITER_HOLDS_DOCUMENT (&it));
   ck_assert_int_eq (mh_test_int_at (&found, "counter"), 3);
   bson_destroy (&found);

   /* get_or_compute finds the sealed value without computing. */
   MH_ASSERT_OK (
      mongo_helper_cache_get_or_compute (c, "doc", 0, never_compute, NULL, &out, &computed, &err),
      err);
   ck_assert (!computed);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);

   bson_destroy (v);
   bson_destroy (v2);
   mongo_helper_cache_destroy (c);
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

START_TEST (stored_record_holds_no_8_byte_run_of_the_value)
{
   const char *coll = mh_test_collection ("cseal_plain");
   mongo_helper_cache_t *c = cache_on (coll, ring_of ("c1", 1));
   mongo_helper_cache_t *clear = cache_on (coll, NULL);
   bson_t *doc;

   MH_ASSERT_OK (
      mongo_helper_cache_set_bytes (c, "sealed", secret_bytes, sizeof secret_bytes, 0, &err), err);
   MH_ASSERT_OK (
      mongo_helper_cache_set_bytes (clear, "clear", secret_bytes, sizeof secret_bytes, 0, &err),
      err);
   doc = raw_entry (coll, "sealed");
   ck_assert_msg (
      !shares_8_bytes (bson_get_data (doc), doc->len, secret_bytes, sizeof secret_bytes),
      "a run of 8 bytes of the value is in the stored record");
   bson_destroy (doc);
   /* The same check finds the clear one. */
   doc = raw_entry (coll, "clear");
   ck_assert (shares_8_bytes (bson_get_data (doc), doc->len, secret_bytes, sizeof secret_bytes));
   bson_destroy (doc);
   mongo_helper_cache_destroy (c);
   mongo_helper_cache_destroy (clear);
}
END_TEST

START_TEST (value_swapped_between_two_keys_altered_or_under_another_key_does_not_open)
{
   const char *coll = mh_test_collection ("cseal_swap");
   mongo_helper_cache_t *c = cache_on (coll, ring_of ("c1", 1));
   mongo_helper_cache_t *impostor = cache_on (coll, ring_of ("c1", 7));
   mongo_helper_cache_t *stranger = cache_on (coll, ring_of ("c9", 1));
   mongo_helper_cache_t *keyless = cache_on (coll, NULL);
   bson_t *va = BCON_NEW ("who", BCON_UTF8 ("a"));
   bson_t *vb = BCON_NEW ("who", BCON_UTF8 ("b"));
   const char *both[] = {"a", "b"};
   bson_t *doc, *f, *u, set, out, found;
   bson_iter_t it;
   bson_subtype_t sub;
   const uint8_t *bin;
   uint8_t buf[256];
   uint32_t len;
   int64_t n;

   MH_ASSERT_OK (mongo_helper_cache_set (c, "a", va, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "b", vb, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "flip", va, 0, &err), err);
   doc = raw_entry (coll, "a");
   ck_assert (bson_iter_init_find (&it, doc, "sealed"));
   u = bson_new ();
   BSON_APPEND_DOCUMENT_BEGIN (u, "$set", &set);
   bson_append_iter (&set, "sealed", -1, &it);
   bson_append_document_end (u, &set);
   f = BCON_NEW ("_id", BCON_UTF8 ("b"));
   raw_update (coll, f, u);
   bson_destroy (f);
   bson_destroy (u);
   bson_destroy (doc);

   ASSERT_INTEGRITY (mongo_helper_cache_get (c, "b", &out, &err), MONGO_HELPER_INTEGRITY_FORGED);
   ck_assert_uint_eq (bson_count_keys (&out), 0);
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_integrity_count ("cache_get", "forged"), 1);
   ASSERT_INTEGRITY (mongo_helper_cache_get_many (c, both, 2, &found, &err),
                     MONGO_HELPER_INTEGRITY_FORGED);
   ck_assert_msg (strstr (err.message, "cache key 'b': cache_get_many on "),
                  "expected the key named: %s",
                  err.message);
   ck_assert_uint_eq (bson_count_keys (&found), 0);
   bson_destroy (&found);
   ck_assert_int_eq (mh_test_integrity_count ("cache_get_many", "forged"), 1);
   /* The compute path reports it too instead of hiding it as a miss. */
   ck_assert (
      !mongo_helper_cache_get_or_compute (c, "b", 0, never_compute, NULL, &out, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INTEGRITY);
   bson_destroy (&out);
   /* Counters never land beside a sealed value. */
   MH_ASSERT_FAILS_WITH (mongo_helper_cache_incr (c, "a", 1, 0, &n, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   assert_sealed (coll, "a", "c1");

   ASSERT_INTEGRITY (mongo_helper_cache_get (impostor, "a", &out, &err),
                     MONGO_HELPER_INTEGRITY_FORGED);
   bson_destroy (&out);
   ASSERT_INTEGRITY (mongo_helper_cache_get (stranger, "a", &out, &err),
                     MONGO_HELPER_INTEGRITY_UNKNOWN_KEY);
   bson_destroy (&out);
   ASSERT_INTEGRITY (mongo_helper_cache_get (keyless, "a", &out, &err),
                     MONGO_HELPER_INTEGRITY_UNKNOWN_KEY);
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_integrity_count ("cache_get", "unknown_key"), 2);

   /* One bit of the ciphertext, then the ciphertext cut short of a tag. */
   doc = raw_entry (coll, "flip");
   ck_assert (bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, "sealed.c", &it));
   bson_iter_binary (&it, &sub, &len, &bin);
   ck_assert_uint_le (len, sizeof buf);
   memcpy (buf, bin, len);
   bson_destroy (doc);
   buf[len - 1] ^= 0x04;
   f = BCON_NEW ("_id", BCON_UTF8 ("flip"));
   u = BCON_NEW ("$set", "{", "sealed.c", BCON_BIN (BSON_SUBTYPE_BINARY, buf, len), "}");
   raw_update (coll, f, u);
   bson_destroy (u);
   ASSERT_INTEGRITY (mongo_helper_cache_get (c, "flip", &out, &err), MONGO_HELPER_INTEGRITY_FORGED);
   bson_destroy (&out);
   u = BCON_NEW ("$set", "{", "sealed.c", BCON_BIN (BSON_SUBTYPE_BINARY, buf, 15), "}");
   raw_update (coll, f, u);
   bson_destroy (u);
   bson_destroy (f);
   ASSERT_INTEGRITY (mongo_helper_cache_get (c, "flip", &out, &err),
                     MONGO_HELPER_INTEGRITY_MALFORMED);
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_integrity_count ("cache_get", "malformed"), 1);
   /* Storing the key again replaces the damaged record. */
   MH_ASSERT_OK (mongo_helper_cache_set (c, "flip", vb, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "flip", &out, &err), err);
   ck_assert (bson_equal (&out, vb));
   bson_destroy (&out);

   bson_destroy (va);
   bson_destroy (vb);
   mongo_helper_cache_destroy (c);
   mongo_helper_cache_destroy (impostor);
   mongo_helper_cache_destroy (stranger);
   mongo_helper_cache_destroy (keyless);
}
END_TEST

START_TEST (rekey_moves_old_key_and_clear_values_and_leaves_counters_and_leases)
{
   const char *coll = mh_test_collection ("cseal_rekey");
   mongo_helper_cache_t *old = cache_on (coll, ring_of ("c1", 1));
   mongo_helper_cache_t *clear = cache_on (coll, NULL);
   char spec[256];
   mongo_helper_cache_t *rotated, *c2_only;
   bson_t *v = BCON_NEW ("x", BCON_INT32 (1));
   bson_t *lease =
      BCON_NEW ("_id", "{", "lease", BCON_UTF8 ("held"), "}", "token", BCON_UTF8 ("t"));
   mongoc_collection_t *raw;
   bson_t out, *f;
   int64_t changed = -1, n;
   char key[16];

   snprintf (spec, sizeof spec, "%s,%s", ring_of ("c2", 2), ring_of ("c1", 1));
   rotated = cache_on (coll, spec);
   c2_only = cache_on (coll, ring_of ("c2", 2));
   for (int i = 0; i < 5; i++) {
      snprintf (key, sizeof key, "old%d", i);
      MH_ASSERT_OK (mongo_helper_cache_set (old, key, v, 0, &err), err);
   }
   MH_ASSERT_OK (mongo_helper_cache_set (old, long_key, v, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set (clear, "clear-doc", v, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_set_bytes (clear, "clear-bytes", secret_bytes, 8, 0, &err),
                 err);
   MH_ASSERT_OK (mongo_helper_cache_incr (clear, "counter", 41, 0, &n, &err), err);
   raw = mh_test_raw_collection (coll);
   ck_assert (mongoc_collection_insert_one (raw, lease, NULL, NULL, NULL));
   mongoc_collection_destroy (raw);

   /* Rotation: the new ring reads the old key's values. */
   MH_ASSERT_OK (mongo_helper_cache_get (rotated, "old0", &out, &err), err);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_cache_rekey (rotated, 2, &changed, &err), err);
   ck_assert_int_eq (changed, 8);
   for (int i = 0; i < 5; i++) {
      snprintf (key, sizeof key, "old%d", i);
      assert_sealed (coll, key, "c2");
      MH_ASSERT_OK (mongo_helper_cache_get (c2_only, key, &out, &err), err);
      ck_assert (bson_equal (&out, v));
      bson_destroy (&out);
   }
   assert_sealed (coll, long_key, "c2");
   assert_sealed (coll, "clear-doc", "c2");
   assert_sealed (coll, "clear-bytes", "c2");
   MH_ASSERT_OK (mongo_helper_cache_incr (c2_only, "counter", 1, 0, &n, &err), err);
   ck_assert_int_eq (n, 42);
   f = BCON_NEW ("_id", "{", "lease", BCON_UTF8 ("held"), "}", "token", BCON_UTF8 ("t"));
   ck_assert_int_eq (mh_test_raw_count (coll, f), 1);
   bson_destroy (f);
   MH_ASSERT_OK (mongo_helper_cache_rekey (rotated, 0, &changed, &err), err);
   ck_assert_int_eq (changed, 0);
   MH_ASSERT_FAILS_WITH (mongo_helper_cache_rekey (clear, 0, &changed, &err),
                         MONGO_HELPER_ERROR_CONFIG);

   bson_destroy (v);
   bson_destroy (lease);
   mongo_helper_cache_destroy (old);
   mongo_helper_cache_destroy (clear);
   mongo_helper_cache_destroy (rotated);
   mongo_helper_cache_destroy (c2_only);
}
END_TEST

START_TEST (cache_without_keys_of_its_own_takes_the_configured_ring)
{
   const char *coll = mh_test_collection ("cseal_cfg");
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("x", BCON_INT32 (1));
   bson_t out;

   setenv ("MONGO_CACHE_KEYS", ring_of ("fromenv", 3), 1);
   c = cache_on (coll, NULL);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "k", v, 0, &err), err);
   assert_sealed (coll, "k", "fromenv");
   MH_ASSERT_OK (mongo_helper_cache_get (c, "k", &out, &err), err);
   ck_assert (bson_equal (&out, v));
   bson_destroy (&out);
   bson_destroy (v);
   mongo_helper_cache_destroy (c);
}
END_TEST

Suite *
cache_sealed_suite (void)
{
   Suite *s = suite_create ("cache_sealed");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, every_cache_read_and_write_round_trips_through_the_sealed_value);
   tcase_add_test (live, stored_record_holds_no_8_byte_run_of_the_value);
   tcase_add_test (live, value_swapped_between_two_keys_altered_or_under_another_key_does_not_open);
   tcase_add_test (live, rekey_moves_old_key_and_clear_values_and_leaves_counters_and_leases);
   tcase_add_test (live, cache_without_keys_of_its_own_takes_the_configured_ring);
   suite_add_tcase (s, live);
   return s;
}
