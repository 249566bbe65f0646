/* Sealed sessions across key changes (src/sessions.c, src/web.c over
 * src/keyring.c): rotation reads records sealed with an old key and the next
 * write seals with the new one, rekey moves every old-key and clear session
 * to the current key (and counts what it cannot open), clear sessions from
 * before encryption, and the tool's rekey over sessions and cache values.
 * Fixture: sessions_sealed_fixture.h. */
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

#include "sessions_sealed_fixture.h"

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
   ck_assert_int_eq (mh_test_integrity_count ("sessions_rekey", "forged"), 1);
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
   mh_test_sha256_hex (id, strlen (id), hex);
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
sessions_rekey_suite (void)
{
   Suite *s = suite_create ("sessions_rekey");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, setup, mh_test_teardown);
   tcase_set_timeout (live, 120);
   tcase_add_test (live, rotation_reads_old_key_and_the_next_write_seals_with_the_new);
   tcase_add_test (live, rekey_moves_every_old_key_and_clear_session_to_the_current_key);
   tcase_add_test (live, rekey_leaves_a_damaged_record_counts_it_and_fails_after_the_pass);
   tcase_add_test (live, clear_session_from_before_encryption_loads_and_its_next_write_seals_it);
   tcase_add_test (live, tool_rekey_seals_clear_sessions_and_cache_values_with_the_configured_key);
   suite_add_tcase (s, live);
   return s;
}
