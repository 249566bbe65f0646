/* src/keyring.c: key rings from configuration text and files: ids and
 * the current key, both base64 alphabets, parse errors that name their
 * source and entry and never show key text, and key files (comments, mode,
 * errors naming path and line).  Internal API, no server needed.  Sealed
 * records are in test_crypto.c; the shared helpers in crypto_fixture.h. */
#define _POSIX_C_SOURCE 200809L
#include "src/mh_private.h"

#include <sys/stat.h>

#include "mh_test.h"

#include "crypto_fixture.h"

/* ---- key rings ------------------------------------------------------ */

START_TEST (keyring_parse_reads_ids_current_first_and_tolerates_whitespace)
{
   char spec[256];
   uint8_t k2[32];
   char url[64];
   mh_keyring_t *ring;

   key_bytes (2, k2, sizeof k2);
   snprintf (spec,
             sizeof spec,
             "  k1 : %s ,\tk2:%s \n, old_key-3:%s",
             key_text (1),
             b64 (k2, sizeof k2, true, false, url),
             key_text (3));
   ring = ring_of (spec);
   ck_assert_uint_eq (mh_keyring_count (ring), 3);
   ck_assert_str_eq (mh_keyring_id (ring, 0), "k1");
   ck_assert_str_eq (mh_keyring_id (ring, 1), "k2");
   ck_assert_str_eq (mh_keyring_id (ring, 2), "old_key-3");
   ck_assert_ptr_null (mh_keyring_id (ring, 3));
   ck_assert_ptr_null (mh_keyring_id (NULL, 0));
   ck_assert_uint_eq (mh_keyring_count (NULL), 0);
   mh_keyring_destroy (ring);
   mh_keyring_destroy (NULL);
}
END_TEST

/* The same key bytes in any accepted spelling open the same records; other
 * bytes do not: the decoder really decodes. */
START_TEST (keyring_standard_and_url_safe_base64_give_the_same_key)
{
   uint8_t k[32];
   char text[64], spec[128];
   mh_keyring_t *std_ring, *url_ring, *other;
   mh_opened_t out;
   bson_t *doc;

   key_bytes (7, k, sizeof k);
   k[0] = 0xfb; /* "+" / "-" in the first character pair */
   k[1] = 0xff;
   snprintf (spec, sizeof spec, "k:%s", b64 (k, sizeof k, false, true, text));
   std_ring = ring_of (spec);
   snprintf (spec, sizeof spec, "k:%s", b64 (k, sizeof k, true, false, text));
   ck_assert_msg (strchr (text, '-') || strchr (text, '_'), "expected URL-safe characters");
   url_ring = ring_of (spec);
   snprintf (spec, sizeof spec, "k:%s", key_text (8));
   other = ring_of (spec);

   doc = seal_doc (std_ring, "r", "payload", 7);
   MH_ASSERT_OK (open_doc (url_ring, "r", doc, &out), err);
   ck_assert_mem_eq (out.data, "payload", 7);
   mh_opened_clear (&out);
   ASSERT_FAILS_WITH (
      open_doc (other, "r", doc, &out), MONGO_HELPER_ERROR_INTEGRITY, MH_INTEGRITY_FORGED);
   bson_destroy (doc);
   mh_keyring_destroy (std_ring);
   mh_keyring_destroy (url_ring);
   mh_keyring_destroy (other);
}
END_TEST

typedef struct {
   const char *what;
   char spec[4096];
   const char *expect[3];
} parse_case_t;

START_TEST (keyring_parse_errors_name_source_and_entry_and_never_key_text)
{
   static parse_case_t cases[24];
   uint8_t raw[40];
   char t[80], t2[80];
   size_t n = 0;

   key_bytes (11, raw, sizeof raw);
   /* Keys of the wrong sizes. */
   cases[n] = (parse_case_t){"16-byte key", "", {"entry 2 ('k2')", "16 bytes", "needs 32"}};
   snprintf (cases[n++].spec, 4096, "k1:%s,k2:%s", key_text (1), b64 (raw, 16, false, true, t));
   cases[n] = (parse_case_t){"31-byte key", "", {"entry 1 ('k1')", "31 bytes", "needs 32"}};
   snprintf (cases[n++].spec, 4096, "k1:%s", b64 (raw, 31, false, true, t));
   cases[n] = (parse_case_t){"33-byte key", "", {"entry 1 ('k1')", "33 bytes", "needs 32"}};
   snprintf (cases[n++].spec, 4096, "k1:%s", b64 (raw, 33, false, true, t));
   /* Bad base64. */
   b64 (raw, 32, false, true, t);
   t[4] = '*';
   cases[n] = (parse_case_t){
      "bad character", "", {"entry 1 ('k1')", "not valid base64", "character 5 of 44"}};
   snprintf (cases[n++].spec, 4096, "k1:%s", t);
   b64 (raw, 32, false, true, t);
   t[10] = '=';
   cases[n] =
      (parse_case_t){"'=' inside", "", {"('k1')", "padding '=' before the end", "character 11"}};
   snprintf (cases[n++].spec, 4096, "k1:%s", t);
   b64 (raw, 32, false, true, t);
   t[0] = '+';
   t[1] = '_';
   cases[n] = (parse_case_t){"mixed alphabets", "", {"('k1')", "alphabets mixed", "character 2"}};
   snprintf (cases[n++].spec, 4096, "k1:%s", t);
   cases[n] = (parse_case_t){"extra padding", "", {"('k1')", "'=' padding", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%s=", b64 (raw, 32, false, true, t));
   b64 (raw, 32, false, false, t);
   t[strlen (t) - 1] = t[strlen (t) - 1] == 'B' ? 'C' : 'B'; /* low bits set */
   cases[n] =
      (parse_case_t){"non-canonical end", "", {"('k1')", "bits set past the last byte", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%s", t);
   b64 (raw, 32, false, false, t);
   cases[n] = (parse_case_t){
      "one character too many", "", {"('k1')", "a character is missing or extra", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%sAA", t);
   /* Structure. */
   cases[n] =
      (parse_case_t){"duplicate id", "", {"entry 3 ('k1')", "already used by entry 1", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%s,k2:%s,k1:%s", key_text (1), key_text (2), key_text (3));
   cases[n] = (parse_case_t){"empty entry", "", {"entry 2:", "empty", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%s, ,k2:%s", key_text (1), key_text (2));
   cases[n] = (parse_case_t){"trailing comma", "", {"entry 2:", "empty", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%s,", key_text (1));
   cases[n] = (parse_case_t){"missing ':'", "", {"entry 2:", "no ':'", NULL}};
   snprintf (cases[n++].spec, 4096, "k1:%s,%s", key_text (1), key_text (2));
   cases[n] =
      (parse_case_t){"key and id reversed", "", {"entry 1:", "key id must be 1 to 32", NULL}};
   snprintf (cases[n++].spec, 4096, "%s:k1", key_text (1));
   cases[n] = (parse_case_t){"empty id", "", {"entry 1:", "key id must be 1 to 32", NULL}};
   snprintf (cases[n++].spec, 4096, ":%s", key_text (1));
   cases[n] = (parse_case_t){"id of 33 characters", "", {"entry 1:", "has 33 characters", NULL}};
   snprintf (cases[n++].spec, 4096, "abcdefghijklmnopqrstuvwxyz0123456:%s", key_text (1));
   cases[n] = (parse_case_t){"id with a space", "", {"entry 1:", "A-Z a-z 0-9 _ -", NULL}};
   snprintf (cases[n++].spec, 4096, "my key:%s", key_text (1));
   cases[n] = (parse_case_t){"empty key", "", {"entry 1 ('k1')", "the key is empty", NULL}};
   snprintf (cases[n++].spec, 4096, "k1: ");
   cases[n] = (parse_case_t){"empty spec", "", {SOURCE " is empty", NULL, NULL}};
   snprintf (cases[n++].spec, 4096, "%s", "");
   cases[n] = (parse_case_t){"blank spec", "", {SOURCE " is empty", NULL, NULL}};
   snprintf (cases[n++].spec, 4096, "%s", " \t ");
   cases[n] = (parse_case_t){"65 keys", "", {"entry 65:", "more than 64 keys", NULL}};
   cases[n].spec[0] = '\0';
   for (int i = 0; i < 65; i++) {
      size_t at = strlen (cases[n].spec);
      snprintf (cases[n].spec + at, 4096 - at, "%sk%d:%s", i ? "," : "", i, key_text (i));
   }
   n++;

   for (size_t i = 0; i < n; i++) {
      parse_case_t *c = &cases[i];
      mh_keyring_t *ring;
      const char *p;

      memset (&err, 0, sizeof err);
      ring = mh_keyring_parse (c->spec, SOURCE, &err);
      ck_assert_msg (ring == NULL, "%s: expected a CONFIG error, the spec was accepted", c->what);
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_CONFIG,
                     "%s: expected a config error, got %s: %s",
                     c->what,
                     mongo_helper_category_name (err.category),
                     err.message);
      ck_assert_msg (strncmp (err.message, SOURCE, strlen (SOURCE)) == 0,
                     "%s: expected the message to start with the source, got: %s",
                     c->what,
                     err.message);
      for (int j = 0; j < 3 && c->expect[j]; j++) {
         ck_assert_msg (strstr (err.message, c->expect[j]) != NULL,
                        "%s: expected \"%s\" in the message, got: %s",
                        c->what,
                        c->expect[j],
                        err.message);
      }
      /* Every base64 run of the spec (keys, broken keys) stays out. */
      for (p = c->spec; *p;) {
         size_t run =
            strspn (p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=*");
         if (run >= 16) {
            memcpy (t2, p, run < sizeof t2 ? run : sizeof t2 - 1);
            t2[run < sizeof t2 ? run : sizeof t2 - 1] = '\0';
            assert_no_key_text (t2);
         }
         p += run ? run : 1;
      }
   }
   memset (&err, 0, sizeof err);
   ck_assert_ptr_null (mh_keyring_parse (NULL, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ASSERT_MESSAGE_HAS ("key ring");
}
END_TEST

/* Writes `content` to a new file with `mode`; returns its path (static). */
static const char *
key_file (const char *content, mode_t mode)
{
   const char *path = mh_test_write_ini (content);

   ck_assert_int_eq (chmod (path, mode), 0);
   return path;
}

START_TEST (keyring_file_skips_comments_and_blank_lines)
{
   char content[512];
   const char *path;
   mh_keyring_t *ring;

   snprintf (content,
             sizeof content,
             "# keys for the sessions\n\n   \n  k2:%s  \n# retired after the rekey:\nk1 : %s\n",
             key_text (2),
             key_text (1));
   path = key_file (content, 0600);
   ring = mh_keyring_load_file (path, "environment MONGO_SESSION_KEY_FILE", &err);
   MH_ASSERT_OK (ring != NULL, err);
   ck_assert_uint_eq (mh_keyring_count (ring), 2);
   ck_assert_str_eq (mh_keyring_id (ring, 0), "k2");
   ck_assert_str_eq (mh_keyring_id (ring, 1), "k1");
   mh_keyring_destroy (ring);

   /* A service group may read it. */
   path = key_file (content, 0640);
   ring = mh_keyring_load_file (path, NULL, &err);
   MH_ASSERT_OK (ring != NULL, err);
   mh_keyring_destroy (ring);
}
END_TEST

START_TEST (keyring_file_others_may_access_is_refused)
{
   char content[128];
   const char *path;

   snprintf (content, sizeof content, "k1:%s\n", key_text (1));
   path = key_file (content, 0644);
   ck_assert_ptr_null (mh_keyring_load_file (path, "environment MONGO_SESSION_KEY_FILE", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ASSERT_MESSAGE_HAS ("environment MONGO_SESSION_KEY_FILE, key file ");
   ASSERT_MESSAGE_HAS (path);
   ASSERT_MESSAGE_HAS ("mode 0644");
   ASSERT_MESSAGE_HAS ("chmod o-rwx");
   assert_no_key_text (key_text (1));

   path = key_file (content, 0602); /* writable by others: refused too */
   ck_assert_ptr_null (mh_keyring_load_file (path, NULL, &err));
   ASSERT_MESSAGE_HAS ("mode 0602");
}
END_TEST

START_TEST (keyring_file_errors_name_the_path_and_line)
{
   char content[512];
   const char *path;
   char dir[] = "/tmp/mh_keys_XXXXXX";
   char *big;

   snprintf (content,
             sizeof content,
             "# current\nk2:%s\n\nk1:%s\n",
             key_text (2),
             key_text (5) + 4); /* 40 characters with one '=': 29 bytes */
   path = key_file (content, 0600);
   ck_assert_ptr_null (mh_keyring_load_file (path, "environment MONGO_SESSION_KEY_FILE", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ASSERT_MESSAGE_HAS ("environment MONGO_SESSION_KEY_FILE, key file ");
   ASSERT_MESSAGE_HAS (path);
   ASSERT_MESSAGE_HAS ("line 4 ('k1'): the key is 29 bytes");
   assert_no_key_text (key_text (5) + 4);
   assert_no_key_text (key_text (2));

   snprintf (content,
             sizeof content,
             "\nk1:%s\nk2:%s\n\n k1:%s\n",
             key_text (1),
             key_text (2),
             key_text (3));
   path = key_file (content, 0600);
   ck_assert_ptr_null (mh_keyring_load_file (path, NULL, &err));
   ASSERT_MESSAGE_HAS ("line 5 ('k1'): the key id is already used by line 2");

   path = key_file ("# nothing yet\n\n", 0600);
   ck_assert_ptr_null (mh_keyring_load_file (path, NULL, &err));
   ASSERT_MESSAGE_HAS ("holds no key");

   ck_assert_ptr_null (mh_keyring_load_file ("/nonexistent/mh/keys", NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ASSERT_MESSAGE_HAS ("key file /nonexistent/mh/keys: cannot open");

   ck_assert_ptr_nonnull (mkdtemp (dir));
   ck_assert_ptr_null (mh_keyring_load_file (dir, NULL, &err));
   ASSERT_MESSAGE_HAS ("not a regular file");
   rmdir (dir);

   big = bson_malloc0 (MH_KEY_FILE_MAX + 2);
   memset (big, '#', MH_KEY_FILE_MAX + 1);
   path = key_file (big, 0600);
   bson_free (big);
   ck_assert_ptr_null (mh_keyring_load_file (path, NULL, &err));
   ASSERT_MESSAGE_HAS ("more than a key file holds");

   ck_assert_ptr_null (mh_keyring_load_file (NULL, "environment X", &err));
   ASSERT_MESSAGE_HAS ("environment X: no key file path");
}
END_TEST

Suite *
keyring_suite (void)
{
   Suite *s = suite_create ("keyring");
   TCase *keys = tcase_create ("keyring");

   tcase_add_checked_fixture (keys, setup, NULL);
   tcase_add_test (keys, keyring_parse_reads_ids_current_first_and_tolerates_whitespace);
   tcase_add_test (keys, keyring_standard_and_url_safe_base64_give_the_same_key);
   tcase_add_test (keys, keyring_parse_errors_name_source_and_entry_and_never_key_text);
   tcase_add_test (keys, keyring_file_skips_comments_and_blank_lines);
   tcase_add_test (keys, keyring_file_others_may_access_is_refused);
   tcase_add_test (keys, keyring_file_errors_name_the_path_and_line);
   suite_add_tcase (s, keys);
   return s;
}
