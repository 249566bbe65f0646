/* Sessions encrypted at rest (src/sessions.c, src/web.c over src/keyring.c):
 * stored documents read back raw (no plaintext, the envelope's key id),
 * every call's round trip, payloads swapped, altered, cut and sealed with
 * other keys, and concurrent sets.  Rotation and rekey are in
 * test_sessions_rekey.c, keys from the configuration and key text in no
 * output in test_sessions_keys.c; the helpers all three share are in
 * sessions_sealed_fixture.h. */
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

Suite *
sessions_sealed_suite (void)
{
   Suite *s = suite_create ("sessions_sealed");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, setup, mh_test_teardown);
   tcase_set_timeout (live, 120);
   tcase_add_test (live, every_session_call_round_trips_through_the_sealed_payload);
   tcase_add_test (live, stored_document_holds_no_8_byte_run_of_the_payload);
   tcase_add_test (live, payload_swapped_between_two_sessions_does_not_open);
   tcase_add_test (live, wrong_key_unknown_key_truncated_and_flipped_records_fail_cleanly);
   tcase_add_test (live, concurrent_sets_on_one_encrypted_session_lose_no_field);
   suite_add_tcase (s, live);
   return s;
}
