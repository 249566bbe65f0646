/* src/crypto.c: sealed (AES-256-GCM) records: round trips, nonces, record
 * binding, rotation, and every kind of damage.  Internal API, no server
 * needed.  Key rings are in test_keyring.c; the key and record helpers
 * both use in crypto_fixture.h. */
#define _POSIX_C_SOURCE 200809L
#include "src/mh_private.h"

#include <sys/stat.h>

#include "mh_test.h"

#include "crypto_fixture.h"

/* The nonce and ciphertext of the sealed record in field "e". */
static void
sealed_parts (const bson_t *doc,
              const uint8_t **n,
              uint32_t *n_len,
              const uint8_t **c,
              uint32_t *c_len)
{
   bson_iter_t it;
   bson_subtype_t sub;

   ck_assert_msg (bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, "e.n", &it) &&
                     BSON_ITER_HOLDS_BINARY (&it),
                  "expected a binary e.n");
   bson_iter_binary (&it, &sub, n_len, n);
   ck_assert_msg (bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, "e.c", &it) &&
                     BSON_ITER_HOLDS_BINARY (&it),
                  "expected a binary e.c");
   bson_iter_binary (&it, &sub, c_len, c);
}

/* {e: {v, k, n, c}} from parts, to forge damaged records. */
static bson_t *
envelope_doc (int32_t v,
              const char *k,
              const uint8_t *n,
              size_t n_len,
              const uint8_t *c,
              size_t c_len)
{
   bson_t *doc = bson_new ();
   bson_t env;

   BSON_APPEND_DOCUMENT_BEGIN (doc, "e", &env);
   BSON_APPEND_INT32 (&env, "v", v);
   BSON_APPEND_UTF8 (&env, "k", k);
   bson_append_binary (&env, "n", 1, BSON_SUBTYPE_BINARY, n, (uint32_t) n_len);
   bson_append_binary (&env, "c", 1, BSON_SUBTYPE_BINARY, c, (uint32_t) c_len);
   bson_append_document_end (doc, &env);
   return doc;
}

/* ---- sealed records -------------------------------------------------- */

START_TEST (seal_then_open_round_trips_0_1_1k_and_1m_bytes)
{
   static const size_t sizes[] = {0, 1, 1024, 1024 * 1024};
   char spec[128];
   mh_keyring_t *ring;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      uint8_t *plain = bson_malloc (sizes[s] + 1);
      mh_opened_t out;
      bson_t *doc;

      for (size_t i = 0; i < sizes[s]; i++) {
         plain[i] = (uint8_t) (i * 7 + s);
      }
      doc = seal_doc (ring, "sessions", plain, sizes[s]);
      MH_ASSERT_OK (open_doc (ring, "sessions", doc, &out), err);
      ck_assert_msg (out.len == sizes[s], "expected %zu bytes back, got %zu", sizes[s], out.len);
      ck_assert_msg (sizes[s] == 0 || memcmp (out.data, plain, sizes[s]) == 0,
                     "expected the plaintext of %zu bytes back, it differs",
                     sizes[s]);
      ck_assert_int_eq (out.data[out.len], 0);
      ck_assert_str_eq (out.key_id, "k1");
      ck_assert (!out.stale);
      mh_opened_clear (&out);
      ck_assert_ptr_null (out.data);
      bson_destroy (doc);
      bson_free (plain);
   }
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (sealed_record_is_v_k_n_c_with_the_ciphertext_as_long_as_the_plaintext)
{
   char spec[128];
   mh_keyring_t *ring;
   bson_t *doc;
   bson_iter_t it, env;
   bson_subtype_t sub;
   const uint8_t *data;
   uint32_t len;
   const char *keys[] = {"v", "k", "n", "c"};
   int i = 0;

   snprintf (spec, sizeof spec, "cur-1:%s,old:%s", key_text (1), key_text (2));
   ring = ring_of (spec);
   doc = seal_doc (ring, "aad", "0123456789", 10);
   ck_assert (bson_iter_init_find (&it, doc, "e") && BSON_ITER_HOLDS_DOCUMENT (&it));
   ck_assert (bson_iter_recurse (&it, &env));
   while (bson_iter_next (&env)) {
      ck_assert_msg (i < 4, "expected 4 fields, found a fifth '%s'", bson_iter_key (&env));
      ck_assert_str_eq (bson_iter_key (&env), keys[i]);
      switch (i++) {
      case 0:
         ck_assert (BSON_ITER_HOLDS_INT32 (&env));
         ck_assert_int_eq (bson_iter_int32 (&env), 1);
         break;
      case 1:
         ck_assert (BSON_ITER_HOLDS_UTF8 (&env));
         ck_assert_str_eq (bson_iter_utf8 (&env, NULL), "cur-1");
         break;
      default:
         ck_assert (BSON_ITER_HOLDS_BINARY (&env));
         bson_iter_binary (&env, &sub, &len, &data);
         ck_assert_int_eq (sub, BSON_SUBTYPE_BINARY);
         ck_assert_uint_eq (len, i == 3 ? 12 : 10 + 16);
         break;
      }
   }
   ck_assert_int_eq (i, 4);
   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (seal_uses_a_fresh_nonce_every_time)
{
   enum { N = 1000 };
   static uint8_t nonces[N][12];
   char spec[128];
   mh_keyring_t *ring;
   const uint8_t *n1, *c1, *n2, *c2;
   uint32_t n1_len, c1_len, n2_len, c2_len;
   bson_t *a, *b;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   a = seal_doc (ring, "r", "same plaintext", 14);
   b = seal_doc (ring, "r", "same plaintext", 14);
   sealed_parts (a, &n1, &n1_len, &c1, &c1_len);
   sealed_parts (b, &n2, &n2_len, &c2, &c2_len);
   ck_assert_msg (memcmp (n1, n2, 12) != 0, "expected two seals to use two nonces");
   ck_assert_msg (memcmp (c1, c2, c1_len) != 0, "expected two seals of one plaintext to differ");
   bson_destroy (a);
   bson_destroy (b);

   for (int i = 0; i < N; i++) {
      const uint8_t *n, *c;
      uint32_t nl, cl;
      bson_t *d = seal_doc (ring, "r", "x", 1);

      sealed_parts (d, &n, &nl, &c, &cl);
      memcpy (nonces[i], n, 12);
      bson_destroy (d);
      /* Plain tests in the hot loops: every Check assertion is a write
       * to the runner. */
      for (int j = 0; j < i; j++) {
         if (memcmp (nonces[i], nonces[j], 12) == 0) {
            ck_abort_msg ("expected %d distinct nonces, seals %d and %d share one", N, j, i);
         }
      }
   }
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (sealed_record_holds_no_8_byte_run_of_the_plaintext)
{
   char plain[1024 + 1];
   char spec[128];
   mh_keyring_t *ring;
   bson_t *doc;
   const uint8_t *bytes;

   /* Repetitive on purpose: any block-wise leak would show. */
   for (size_t i = 0; i < 1024; i += 32) {
      memcpy (plain + i, "user=alice@example.com;cart=42;\n", 32);
   }
   plain[1024] = '\0';
   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   doc = seal_doc (ring, "sessions", plain, 1024);
   bytes = bson_get_data (doc);
   for (size_t i = 0; i + 8 <= 1024; i++) {
      for (size_t j = 0; j + 8 <= doc->len; j++) {
         if (memcmp (plain + i, bytes + j, 8) == 0) {
            ck_abort_msg (
               "expected no plaintext in the sealed record, found \"%.8s\" at %zu", plain + i, j);
         }
      }
   }
   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (open_with_another_records_identity_fails_as_forged)
{
   char spec[128];
   mh_keyring_t *ring;
   bson_t aad_a, aad_b, aad_c, *doc = bson_new ();
   bson_value_t id_a = {.value_type = BSON_TYPE_UTF8}, id_b = id_a;
   bson_iter_t it;
   mh_opened_t out;

   id_a.value.v_utf8.str = "3f9a0e";
   id_a.value.v_utf8.len = 6;
   id_b.value.v_utf8.str = "3f9a0f";
   id_b.value.v_utf8.len = 6;
   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   MH_ASSERT_OK (mh_record_aad (&aad_a, "sessions", &id_a, &err), err);
   MH_ASSERT_OK (mh_record_aad (&aad_b, "sessions", &id_b, &err), err);
   MH_ASSERT_OK (mh_record_aad (&aad_c, "sessions_2", &id_a, &err), err);
   MH_ASSERT_OK (
      mh_seal (
         ring, bson_get_data (&aad_a), aad_a.len, (const uint8_t *) "{cart: 3}", 9, doc, "e", &err),
      err);
   ck_assert (bson_iter_init_find (&it, doc, "e"));

   MH_ASSERT_OK (mh_open (ring, bson_get_data (&aad_a), aad_a.len, &it, &out, &err), err);
   ck_assert_mem_eq (out.data, "{cart: 3}", 9);
   mh_opened_clear (&out);
   /* Another session's record, the same id in another collection. */
   ASSERT_FAILS_WITH (mh_open (ring, bson_get_data (&aad_b), aad_b.len, &it, &out, &err),
                      MONGO_HELPER_ERROR_INTEGRITY,
                      MH_INTEGRITY_FORGED);
   ck_assert_ptr_null (out.data);
   ASSERT_MESSAGE_HAS ("key 'k1'");
   assert_no_key_text (key_text (1));
   ASSERT_FAILS_WITH (mh_open (ring, bson_get_data (&aad_c), aad_c.len, &it, &out, &err),
                      MONGO_HELPER_ERROR_INTEGRITY,
                      MH_INTEGRITY_FORGED);
   ASSERT_FAILS_WITH (
      mh_open (ring, NULL, 0, &it, &out, &err), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_FORGED);
   bson_destroy (&aad_a);
   bson_destroy (&aad_b);
   bson_destroy (&aad_c);
   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (open_with_other_key_bytes_under_the_same_id_fails_as_forged)
{
   char spec[128];
   mh_keyring_t *ring, *impostor;
   mh_opened_t out;
   bson_t *doc;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   snprintf (spec, sizeof spec, "k1:%s", key_text (2));
   impostor = ring_of (spec);
   doc = seal_doc (ring, "r", "secret", 6);
   ASSERT_FAILS_WITH (
      open_doc (impostor, "r", doc, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_FORGED);
   ck_assert_ptr_null (out.data);
   assert_no_key_text (key_text (1));
   assert_no_key_text (key_text (2));
   bson_destroy (doc);
   mh_keyring_destroy (ring);
   mh_keyring_destroy (impostor);
}
END_TEST

/* The key id is authenticated: pointing a record at another id of the
 * ring fails even when that id holds the same key bytes. */
START_TEST (changing_the_key_id_of_a_record_fails_even_with_the_same_key_bytes)
{
   char spec[256];
   mh_keyring_t *ring;
   const uint8_t *n, *c;
   uint32_t n_len, c_len;
   mh_opened_t out;
   bson_t *doc, *moved;

   snprintf (spec, sizeof spec, "k1:%s,k9:%s", key_text (1), key_text (1));
   ring = ring_of (spec);
   doc = seal_doc (ring, "r", "secret", 6);
   sealed_parts (doc, &n, &n_len, &c, &c_len);
   moved = envelope_doc (1, "k9", n, n_len, c, c_len);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", moved, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_FORGED);
   bson_destroy (moved);
   moved = envelope_doc (1, "k1", n, n_len, c, c_len); /* the same parts open */
   MH_ASSERT_OK (open_doc (ring, "r", moved, &out), err);
   mh_opened_clear (&out);
   bson_destroy (moved);
   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (rotation_opens_old_records_reports_their_key_and_seals_with_the_new)
{
   char spec[256];
   mh_keyring_t *old_ring, *rotated, *new_only;
   mh_opened_t out;
   bson_t *doc, *resealed;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   old_ring = ring_of (spec);
   snprintf (spec, sizeof spec, "k2:%s,k1:%s", key_text (2), key_text (1));
   rotated = ring_of (spec);
   snprintf (spec, sizeof spec, "k2:%s", key_text (2));
   new_only = ring_of (spec);

   doc = seal_doc (old_ring, "r", "cart=3", 6);
   MH_ASSERT_OK (open_doc (rotated, "r", doc, &out), err);
   ck_assert_str_eq (out.key_id, "k1");
   ck_assert_msg (out.stale, "expected a record of the old key to be reported stale");
   ck_assert_mem_eq (out.data, "cart=3", 6);

   /* The lazy re-encryption: sealed again, it uses the current key. */
   resealed = seal_doc (rotated, "r", out.data, out.len);
   mh_opened_clear (&out);
   MH_ASSERT_OK (open_doc (rotated, "r", resealed, &out), err);
   ck_assert_str_eq (out.key_id, "k2");
   ck_assert (!out.stale);
   mh_opened_clear (&out);
   MH_ASSERT_OK (open_doc (new_only, "r", resealed, &out), err);
   mh_opened_clear (&out);

   /* Once k1 is gone, its records no longer open. */
   ASSERT_FAILS_WITH (
      open_doc (new_only, "r", doc, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_UNKNOWN_KEY);
   ASSERT_MESSAGE_HAS ("key 'k1', which is not in the key ring (current key 'k2')");
   ck_assert_ptr_null (out.data);
   bson_destroy (doc);
   bson_destroy (resealed);
   mh_keyring_destroy (old_ring);
   mh_keyring_destroy (rotated);
   mh_keyring_destroy (new_only);
}
END_TEST

START_TEST (every_truncation_of_a_sealed_record_fails_cleanly)
{
   char spec[128];
   mh_keyring_t *ring;
   const uint8_t *env, *n, *c;
   uint32_t env_len, n_len, c_len;
   mh_opened_t out;
   bson_iter_t it;
   bson_t *doc, *cut;
   int opened = 0;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   doc = seal_doc (ring, "r", "a small session payload", 23);
   ck_assert (bson_iter_init_find (&it, doc, "e"));
   bson_iter_document (&it, &env_len, &env);

   /* Every prefix of the envelope's bytes, made a well-framed document. */
   for (uint32_t p = 0; p < env_len; p++) {
      uint8_t *buf = bson_malloc (p + 1);
      bson_t inner;

      memcpy (buf, env, p);
      if (p >= 5) {
         uint32_t le = BSON_UINT32_TO_LE (p);
         memcpy (buf, &le, 4);
         buf[p - 1] = 0;
      }
      if (!bson_init_static (&inner, buf, p)) {
         ck_assert_msg (p < 5, "expected a framed prefix of %u bytes to be a document", p);
         bson_free (buf);
         continue;
      }
      cut = bson_new ();
      BSON_APPEND_DOCUMENT (cut, "e", &inner);
      memset (&err, 0, sizeof err);
      ck_assert_msg (!open_doc (ring, "r", cut, &out),
                     "expected the %u-byte prefix of the record not to open",
                     p);
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_INTEGRITY,
                     "prefix %u: expected an integrity error, got %s: %s",
                     p,
                     mongo_helper_category_name (err.category),
                     err.message);
      ck_assert_ptr_null (out.data);
      opened++;
      bson_destroy (cut);
      bson_free (buf);
   }
   ck_assert_int_eq (opened, (int) env_len - 5);

   /* Every shorter ciphertext and nonce. */
   sealed_parts (doc, &n, &n_len, &c, &c_len);
   for (uint32_t l = 0; l < c_len; l++) {
      cut = envelope_doc (1, "k1", n, n_len, c, l);
      ASSERT_FAILS_WITH (open_doc (ring, "r", cut, &out),
                         MONGO_HELPER_ERROR_INTEGRITY,
                         l < 16 ? MH_INTEGRITY_MALFORMED : MH_INTEGRITY_FORGED);
      bson_destroy (cut);
   }
   for (uint32_t l = 0; l < n_len; l++) {
      cut = envelope_doc (1, "k1", n, l, c, c_len);
      ASSERT_FAILS_WITH (
         open_doc (ring, "r", cut, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
      bson_destroy (cut);
   }
   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (every_single_bit_flip_of_a_sealed_record_fails)
{
   char spec[128];
   mh_keyring_t *ring;
   const uint8_t *bytes;
   uint8_t *buf;
   mh_opened_t out;
   bson_t *doc;
   size_t len;
   int reached = 0;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   doc = seal_doc (ring, "r", "cart=3;user=42", 14);
   bytes = bson_get_data (doc);
   len = doc->len;
   buf = bson_malloc (len);
   for (size_t bit = 0; bit < len * 8; bit++) {
      bson_t flipped;
      bson_iter_t it;

      memcpy (buf, bytes, len);
      buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
      /* A flip the outer document's framing refuses never reaches a load. */
      if (!bson_init_static (&flipped, buf, len) || !bson_iter_init_find (&it, &flipped, "e")) {
         continue;
      }
      memset (&err, 0, sizeof err);
      ck_assert_msg (!mh_open (ring, (const uint8_t *) "r", 1, &it, &out, &err),
                     "expected the record with bit %zu flipped not to open",
                     bit);
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_INTEGRITY,
                     "bit %zu: expected an integrity error, got %s: %s",
                     bit,
                     mongo_helper_category_name (err.category),
                     err.message);
      ck_assert_ptr_null (out.data);
      reached++;
   }
   /* At least every bit of v, k, n and c's values reached mh_open. */
   ck_assert_msg (reached >= (4 + 2 + 12 + 14 + 16) * 8,
                  "expected most flips to reach mh_open, only %d did",
                  reached);
   bson_free (buf);
   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (envelope_with_missing_extra_or_mistyped_fields_is_malformed)
{
   char spec[128];
   mh_keyring_t *ring;
   const uint8_t *n, *c;
   uint32_t n_len, c_len;
   mh_opened_t out;
   bson_t *doc, *bad, env;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   doc = seal_doc (ring, "r", "payload", 7);
   sealed_parts (doc, &n, &n_len, &c, &c_len);

   /* A later version is named as such. */
   bad = envelope_doc (2, "k1", n, n_len, c, c_len);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   ASSERT_MESSAGE_HAS ("envelope version 2");
   bson_destroy (bad);

   /* A key id that is no id is not echoed. */
   bad = envelope_doc (1, "k1:secret", n, n_len, c, c_len);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   ck_assert_msg (
      !strstr (err.message, "secret"), "expected the bad id not echoed: %s", err.message);
   bson_destroy (bad);

   /* Not a document. */
   bad = BCON_NEW ("e", BCON_UTF8 ("clear text"));
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   bson_destroy (bad);

   /* An extra field. */
   bad = bson_new ();
   BSON_APPEND_DOCUMENT_BEGIN (bad, "e", &env);
   BSON_APPEND_INT32 (&env, "v", 1);
   BSON_APPEND_UTF8 (&env, "k", "k1");
   bson_append_binary (&env, "n", 1, BSON_SUBTYPE_BINARY, n, n_len);
   bson_append_binary (&env, "c", 1, BSON_SUBTYPE_BINARY, c, c_len);
   BSON_APPEND_BOOL (&env, "x", true);
   bson_append_document_end (bad, &env);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   bson_destroy (bad);

   /* Bytes after the last field, before the document's end. */
   {
      bson_iter_t it;
      const uint8_t *env_bytes;
      uint32_t env_len, le;
      uint8_t longer[256];
      bson_t inner;

      ck_assert (bson_iter_init_find (&it, doc, "e"));
      bson_iter_document (&it, &env_len, &env_bytes);
      ck_assert_uint_lt (env_len + 1, sizeof longer);
      memcpy (longer, env_bytes, env_len);
      longer[env_len] = 0;
      le = BSON_UINT32_TO_LE (env_len + 1);
      memcpy (longer, &le, 4);
      ck_assert (bson_init_static (&inner, longer, env_len + 1));
      bad = bson_new ();
      BSON_APPEND_DOCUMENT (bad, "e", &inner);
      ASSERT_FAILS_WITH (
         open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
      bson_destroy (bad);
   }

   /* Missing v; n as a user-defined subtype; v as a double. */
   bad = bson_new ();
   BSON_APPEND_DOCUMENT_BEGIN (bad, "e", &env);
   BSON_APPEND_UTF8 (&env, "k", "k1");
   bson_append_binary (&env, "n", 1, BSON_SUBTYPE_BINARY, n, n_len);
   bson_append_binary (&env, "c", 1, BSON_SUBTYPE_BINARY, c, c_len);
   bson_append_document_end (bad, &env);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   bson_destroy (bad);
   bad = bson_new ();
   BSON_APPEND_DOCUMENT_BEGIN (bad, "e", &env);
   BSON_APPEND_INT32 (&env, "v", 1);
   BSON_APPEND_UTF8 (&env, "k", "k1");
   bson_append_binary (&env, "n", 1, BSON_SUBTYPE_USER, n, n_len);
   bson_append_binary (&env, "c", 1, BSON_SUBTYPE_BINARY, c, c_len);
   bson_append_document_end (bad, &env);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   bson_destroy (bad);
   bad = bson_new ();
   BSON_APPEND_DOCUMENT_BEGIN (bad, "e", &env);
   BSON_APPEND_DOUBLE (&env, "v", 1.0);
   bson_append_document_end (bad, &env);
   ASSERT_FAILS_WITH (
      open_doc (ring, "r", bad, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_MALFORMED);
   ck_assert_ptr_null (out.data);
   bson_destroy (bad);

   bson_destroy (doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (seal_and_open_refuse_null_arguments)
{
   char spec[128];
   mh_keyring_t *ring;
   mh_opened_t out;
   bson_t doc = BSON_INITIALIZER, aad;
   bson_iter_t it;

   snprintf (spec, sizeof spec, "k1:%s", key_text (1));
   ring = ring_of (spec);
   ASSERT_FAILS_WITH (mh_seal (NULL, NULL, 0, (const uint8_t *) "x", 1, &doc, "e", &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0);
   ASSERT_FAILS_WITH (
      mh_seal (ring, NULL, 0, NULL, 1, &doc, "e", &err), MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0);
   ASSERT_FAILS_WITH (mh_seal (ring, NULL, 3, (const uint8_t *) "x", 1, &doc, "e", &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0);
   ASSERT_FAILS_WITH (mh_seal (ring, NULL, 0, (const uint8_t *) "x", 1, NULL, "e", &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0);
   ASSERT_FAILS_WITH (
      mh_seal (ring, NULL, 0, (const uint8_t *) "x", (size_t) MH_MAX_BSON + 1, &doc, "e", &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
      0);
   ck_assert_uint_eq (doc.len, 5); /* nothing appended */
   MH_ASSERT_OK (mh_seal (ring, NULL, 0, NULL, 0, &doc, "e", &err), err);
   ck_assert (bson_iter_init_find (&it, &doc, "e"));
   ASSERT_FAILS_WITH (
      mh_open (NULL, NULL, 0, &it, &out, &err), MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0);
   ASSERT_FAILS_WITH (
      mh_open (ring, NULL, 0, NULL, &out, &err), MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0);
   ASSERT_FAILS_WITH (
      mh_open (ring, NULL, 0, &it, NULL, &err), MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0);
   ASSERT_FAILS_WITH (
      mh_open (ring, NULL, 2, &it, &out, &err), MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0);
   MH_ASSERT_OK (mh_open (ring, NULL, 0, &it, &out, NULL), err);
   ck_assert_uint_eq (out.len, 0);
   mh_opened_clear (&out);
   mh_opened_clear (NULL);
   ck_assert (!mh_record_aad (&aad, NULL, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&aad);
   bson_destroy (&doc);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (integrity_category_is_named_integrity)
{
   ck_assert_str_eq (mongo_helper_category_name (MONGO_HELPER_ERROR_INTEGRITY), "integrity");
   ck_assert_int_eq (MONGO_HELPER_ERROR_INTEGRITY, MONGO_HELPER_ERROR_INTERNAL + 1);
}
END_TEST

Suite *
crypto_suite (void)
{
   Suite *s = suite_create ("crypto");
   TCase *seal = tcase_create ("seal");

   tcase_add_checked_fixture (seal, setup, NULL);
   /* 1 MB round trips and every bit flip under valgrind take a while. */
   tcase_set_timeout (seal, 120);
   tcase_add_test (seal, seal_then_open_round_trips_0_1_1k_and_1m_bytes);
   tcase_add_test (seal, sealed_record_is_v_k_n_c_with_the_ciphertext_as_long_as_the_plaintext);
   tcase_add_test (seal, seal_uses_a_fresh_nonce_every_time);
   tcase_add_test (seal, sealed_record_holds_no_8_byte_run_of_the_plaintext);
   tcase_add_test (seal, open_with_another_records_identity_fails_as_forged);
   tcase_add_test (seal, open_with_other_key_bytes_under_the_same_id_fails_as_forged);
   tcase_add_test (seal, changing_the_key_id_of_a_record_fails_even_with_the_same_key_bytes);
   tcase_add_test (seal, rotation_opens_old_records_reports_their_key_and_seals_with_the_new);
   tcase_add_test (seal, every_truncation_of_a_sealed_record_fails_cleanly);
   tcase_add_test (seal, every_single_bit_flip_of_a_sealed_record_fails);
   tcase_add_test (seal, envelope_with_missing_extra_or_mistyped_fields_is_malformed);
   tcase_add_test (seal, seal_and_open_refuse_null_arguments);
   tcase_add_test (seal, integrity_category_is_named_integrity);
   suite_add_tcase (s, seal);
   return s;
}
