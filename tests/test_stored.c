/* What the library lets the server store (src/util.c mh_doc_check_stored,
 * used by every insert path): no empty field name and strict UTF-8 in
 * every name and string, checked once by the library instead of
 * libmongoc, whose libbson 1.23 lets invalid UTF-8 through.  Every refusal
 * happens before anything is sent: the collection stays empty. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* Documents the server must never get, each with what the message names. */
typedef struct {
   const char *what;
   bson_t *doc;
   const char *needle;
} bad_t;

static bson_t *
with_string (const char *bytes, size_t len)
{
   bson_t *d = BCON_NEW ("_id", BCON_INT32 (1));

   bson_append_utf8 (d, "s", 1, bytes, (int) len);
   return d;
}

static size_t
bad_documents (bad_t *out)
{
   size_t n = 0;
   bson_t *d, sub;

   out[n++] = (bad_t){"invalid byte", with_string ("ok\xff", 3), "UTF-8"};
   out[n++] = (bad_t){"lone continuation", with_string ("\x80", 1), "UTF-8"};
   out[n++] = (bad_t){"surrogate", with_string ("\xed\xa0\x80", 3), "UTF-8"};
   out[n++] = (bad_t){"overlong NUL", with_string ("\xc0\x80", 2), "UTF-8"};
   out[n++] = (bad_t){"overlong slash", with_string ("\xe0\x80\xaf", 3), "UTF-8"};
   out[n++] = (bad_t){"past U+10FFFF", with_string ("\xf4\x90\x80\x80", 4), "UTF-8"};
   out[n++] = (bad_t){"truncated", with_string ("abcdefgh\xe2\x82", 10), "UTF-8"};
   /* the 8-byte fast path must not skip a bad byte at the end of a block */
   out[n++] = (bad_t){"bad 9th byte", with_string ("abcdefgh\xff", 9), "UTF-8"};
   d = BCON_NEW ("_id", BCON_INT32 (1));
   bson_append_int32 (d, "k\xff", 2, 1);
   out[n++] = (bad_t){"bad field name", d, "UTF-8"};
   d = BCON_NEW ("_id", BCON_INT32 (1));
   BSON_APPEND_DOCUMENT_BEGIN (d, "nested", &sub);
   bson_append_int32 (&sub, "", 0, 1);
   bson_append_document_end (d, &sub);
   out[n++] = (bad_t){"nested empty name", d, "empty field name"};
   d = BCON_NEW ("_id", BCON_INT32 (1));
   BSON_APPEND_SYMBOL (d, "sym", "\xfe");
   out[n++] = (bad_t){"symbol", d, "UTF-8"};
   d = BCON_NEW ("_id", BCON_INT32 (1));
   BSON_APPEND_REGEX (d, "re", "a\xff", "i");
   out[n++] = (bad_t){"regex", d, "UTF-8"};
   return n;
}

START_TEST (every_insert_path_refuses_invalid_utf8_and_empty_names_before_sending)
{
   const char *coll = mh_test_collection ("stored");
   bad_t bad[16];
   size_t n = bad_documents (bad);

   for (size_t i = 0; i < n; i++) {
      const bson_t *one[1] = {bad[i].doc};
      mongo_helper_bulk_result_t *r = NULL;

      ck_assert_msg (!mongo_helper_insert_one (NULL, coll, bad[i].doc, NULL, &err),
                     "insert_one took %s",
                     bad[i].what);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_msg (strstr (err.message, bad[i].needle), "%s: %s", bad[i].what, err.message);
      ck_assert (!mongo_helper_insert_many (NULL, coll, one, 1, true, NULL, &err));
      ck_assert_msg (strstr (err.message, "index 0"), "%s: %s", bad[i].what, err.message);
      ck_assert (!mongo_helper_bulk_insert (NULL, coll, one, 1, 10, true, &r, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      mongo_helper_bulk_result_destroy (r);
   }
   /* Nothing reached the server. */
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 0);
   for (size_t i = 0; i < n; i++) {
      bson_destroy (bad[i].doc);
   }
}
END_TEST

START_TEST (valid_utf8_of_every_length_and_nul_bytes_are_stored_and_read_back)
{
   const char *coll = mh_test_collection ("stored_ok");
   /* 1- to 4-byte characters at every offset around the 8-byte blocks,
    * the largest code point, and a NUL inside the string. */
   static const char text[] = "aé€𝄞bcdefg\xf4\x8f\xbf\xbf_h\0i";
   const size_t len = sizeof text - 1;

   for (size_t start = 0; start < 9; start++) {
      bson_t *d = BCON_NEW ("_id", BCON_INT64 ((int64_t) start));
      bson_t *f = BCON_NEW ("_id", BCON_INT64 ((int64_t) start));
      bson_t *got;
      bson_iter_t it;
      uint32_t got_len;
      char pad[16];

      memset (pad, 'x', start);
      pad[start] = '\0';
      {
         char buf[64];
         memcpy (buf, pad, start);
         memcpy (buf + start, text, len);
         bson_append_utf8 (d, "s", 1, buf, (int) (start + len));
         bson_append_utf8 (d, "nämé", -1, "ok", 2);
         MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, d, NULL, &err), err);
         got = mongo_helper_find_one (NULL, coll, f, NULL, &err);
         MH_ASSERT_OK (got != NULL, err);
         ck_assert (bson_iter_init_find (&it, got, "s"));
         ck_assert_int_eq (memcmp (bson_iter_utf8 (&it, &got_len), buf, start + len), 0);
         ck_assert_uint_eq (got_len, start + len);
         ck_assert_str_eq (mh_test_utf8_at (got, "nämé"), "ok");
      }
      bson_destroy (got);
      bson_destroy (d);
      bson_destroy (f);
   }
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 9);
   mh_test_drop (NULL, coll);
}
END_TEST

/* The web helpers check their callers' values with the same rules (the
 * document operations then trust what the helpers built around them). */
START_TEST (web_helper_values_with_invalid_utf8_or_empty_names_are_refused_before_sending)
{
   const char *cc = mh_test_collection ("stored_cache");
   const char *sc = mh_test_collection ("stored_sess");
   const char *ec = mh_test_collection ("stored_events");
   mongo_helper_cache_options_t co;
   mongo_helper_sessions_options_t so;
   mongo_helper_eventlog_options_t eo;
   mongo_helper_cache_t *cache;
   mongo_helper_sessions_t *sess;
   mongo_helper_eventlog_t *log;
   mongo_helper_event_writer_t *writer;
   bad_t bad[16];
   size_t n = bad_documents (bad);
   char id[MONGO_HELPER_SESSION_ID_SIZE];

   mongo_helper_cache_options_init (&co);
   co.collection = cc;
   mongo_helper_sessions_options_init (&so);
   so.collection = sc;
   mongo_helper_eventlog_options_init (&eo);
   eo.collection = ec;
   cache = mongo_helper_cache_new (&co, &err);
   MH_ASSERT_OK (cache != NULL, err);
   sess = mongo_helper_sessions_new (&so, &err);
   MH_ASSERT_OK (sess != NULL, err);
   log = mongo_helper_eventlog_new (&eo, &err);
   MH_ASSERT_OK (log != NULL, err);
   writer = mongo_helper_event_writer_new (log, NULL, &err);
   MH_ASSERT_OK (writer != NULL, err);
   for (size_t i = 0; i < n; i++) {
      ck_assert_msg (!mongo_helper_cache_set (cache, "k", bad[i].doc, 0, &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "cache_set took %s",
                     bad[i].what);
      ck_assert_msg (strstr (err.message, bad[i].needle), "%s: %s", bad[i].what, err.message);
      ck_assert_msg (!mongo_helper_cache_add (cache, "k", bad[i].doc, 0, &err),
                     "cache_add took %s",
                     bad[i].what);
      ck_assert_msg (!mongo_helper_sessions_create (sess, bad[i].doc, NULL, id, &err),
                     "sessions_create took %s",
                     bad[i].what);
      ck_assert_msg (!mongo_helper_eventlog_log (log, "u", "t", bad[i].doc, 0, &err),
                     "eventlog_log took %s",
                     bad[i].what);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      /* The writer's bulk inserts skip the driver's validation: its
       * request-path check is all there is. */
      ck_assert_msg (!mongo_helper_event_writer_log (writer, "u", "t", bad[i].doc, 0, &err),
                     "event_writer_log took %s",
                     bad[i].what);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   }
   /* Bad user ids and event types too (invalid UTF-8, empty). */
   ck_assert (!mongo_helper_event_writer_log (writer, "u\xff", "t", NULL, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_event_writer_log (writer, "u", "\xc3", NULL, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_event_writer_log (writer, "", "t", NULL, 0, &err));
   MH_ASSERT_OK (mongo_helper_event_writer_flush (writer, 10000, &err), err);
   ck_assert_int_eq (mh_test_count_documents (cc, NULL), 0);
   ck_assert_int_eq (mh_test_count_documents (sc, NULL), 0);
   ck_assert_int_eq (mh_test_count_documents (ec, NULL), 0);
   for (size_t i = 0; i < n; i++) {
      bson_destroy (bad[i].doc);
   }
   mongo_helper_event_writer_destroy (writer, 10000, NULL);
   mongo_helper_eventlog_destroy (log);
   mongo_helper_sessions_destroy (sess);
   mongo_helper_cache_destroy (cache);
}
END_TEST

Suite *
stored_suite (void)
{
   Suite *s = suite_create ("stored");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_add_test (live, every_insert_path_refuses_invalid_utf8_and_empty_names_before_sending);
   tcase_add_test (live, valid_utf8_of_every_length_and_nul_bytes_are_stored_and_read_back);
   tcase_add_test (live,
                   web_helper_values_with_invalid_utf8_or_empty_names_are_refused_before_sending);
   suite_add_tcase (s, live);
   return s;
}
