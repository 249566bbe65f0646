/* Limits of the web helpers' inputs: cache keys at every length edge
 * (read back from the stored _id), durations at and beyond their bounds,
 * session field names and the NULL session id, against the test server. */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static void
setup (void)
{
   memset (&err, 0, sizeof err);
   mh_test_live_setup ();
}

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

/* A heap key of exactly `len` bytes plus its NUL, so that ASan reports any
 * read past it. */
static char *
heap_key (size_t len, const char *unit)
{
   size_t u = strlen (unit);
   char *k = malloc (len + 1);

   ck_assert_ptr_nonnull (k);
   for (size_t i = 0; i < len; i++) {
      k[i] = unit[i % u];
   }
   k[len] = '\0';
   return k;
}

/* Every stored document of `coll` as one array (caller destroys). */
static bson_t *
raw_all (const char *coll)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_t empty = BSON_INITIALIZER;
   mongoc_cursor_t *cur = mongoc_collection_find_with_opts (c, &empty, NULL, NULL);
   bson_t *all = bson_new ();
   const bson_t *d;
   bson_error_t e;
   uint32_t i = 0;

   while (mongoc_cursor_next (cur, &d)) {
      char k[16];
      const char *kk;
      bson_uint32_to_string (i++, &kk, k, sizeof k);
      BSON_APPEND_DOCUMENT (all, kk, d);
   }
   ck_assert_msg (!mongoc_cursor_error (cur, &e), "%s", e.message);
   mongoc_cursor_destroy (cur);
   mongoc_collection_destroy (c);
   return all;
}

static int64_t
raw_count (const char *coll)
{
   bson_t *all = raw_all (coll);
   int64_t n = bson_count_keys (all);

   bson_destroy (all);
   return n;
}

static mongo_helper_cache_t *
cache_with_limit (const char *coll, size_t max_key_length)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;

   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   o.max_key_length = max_key_length;
   c = mongo_helper_cache_new (&o, &err);
   MH_ASSERT_OK (c != NULL, err);
   return c;
}

/* Checks the one stored document of `coll`: its _id is `key` itself when
 * it fits the limit, else { p: the first bytes of the key (64 at most, cut
 * on a character boundary), h: SHA-256 of the whole key }. */
static void
assert_stored_id (const char *coll, const char *key, size_t limit, size_t want_prefix)
{
   bson_t *all = raw_all (coll);
   bson_iter_t it, id, f;
   size_t len = strlen (key);
   char hex[65];
   uint32_t n;
   const char *p;

   ck_assert_msg (bson_count_keys (all) == 1,
                  "key of %zu bytes: expected 1 stored document, found %u",
                  len,
                  bson_count_keys (all));
   ck_assert (bson_iter_init (&it, all) && bson_iter_next (&it) && bson_iter_recurse (&it, &id));
   ck_assert (bson_iter_find (&id, "_id"));
   if (len <= limit) {
      ck_assert_msg (BSON_ITER_HOLDS_UTF8 (&id), "key of %zu bytes: _id is not the key", len);
      p = bson_iter_utf8 (&id, &n);
      ck_assert_msg (
         n == len && memcmp (p, key, len) == 0, "key of %zu bytes stored as a %u-byte _id", len, n);
   } else {
      ck_assert_msg (BSON_ITER_HOLDS_DOCUMENT (&id), "key of %zu bytes: _id is not hashed", len);
      ck_assert (bson_iter_recurse (&id, &f) && bson_iter_find (&f, "p"));
      p = bson_iter_utf8 (&f, &n);
      ck_assert_msg (n == want_prefix && memcmp (p, key, n) == 0,
                     "key of %zu bytes: expected a prefix of %zu bytes of the key, "
                     "found %u bytes%s",
                     len,
                     want_prefix,
                     n,
                     memcmp (p, key, n < len ? n : len) == 0 ? "" : " that differ");
      ck_assert (bson_iter_recurse (&id, &f) && bson_iter_find (&f, "h"));
      mh_test_sha256_hex (key, len, hex);
      ck_assert_str_eq (bson_iter_utf8 (&f, NULL), hex);
   }
   bson_destroy (all);
}

START_TEST (cache_keys_at_every_length_edge_are_stored_exactly_and_read_back)
{
   const size_t limit = 10;
   const size_t lens[] = {1, limit - 1, limit, limit + 1, 63, 64, 65, 1000};
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("v", BCON_INT32 (1));
   bson_t out;

   for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
      char coll[96];
      char *key = heap_key (lens[i], "abcdefghijklmnopqrstuvwxyz");
      bool deleted = false;

      snprintf (coll, sizeof coll, "%s", mh_test_collection ("keys"));
      c = cache_with_limit (coll, limit);
      MH_ASSERT_OK (mongo_helper_cache_set (c, key, v, 60000, &err), err);
      assert_stored_id (coll, key, limit, lens[i] < 64 ? lens[i] : 64);
      MH_ASSERT_OK (mongo_helper_cache_get (c, key, &out, &err), err);
      ck_assert (bson_equal (&out, v));
      bson_destroy (&out);
      {
         const char *keys[] = {key};
         bson_iter_t it;
         MH_ASSERT_OK (mongo_helper_cache_get_many (c, keys, 1, &out, &err), err);
         ck_assert_msg (bson_iter_init_find (&it, &out, key),
                        "get_many did not find the key of %zu bytes",
                        lens[i]);
         bson_destroy (&out);
      }
      MH_ASSERT_OK (mongo_helper_cache_delete (c, key, &deleted, &err), err);
      ck_assert_msg (deleted, "key of %zu bytes was not found by delete", lens[i]);
      mongo_helper_cache_destroy (c);
      free (key);
   }

   /* The empty key is refused before anything is sent. */
   c = cache_with_limit (mh_test_collection ("keys"), limit);
   ck_assert (!mongo_helper_cache_set (c, "", v, 60000, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   mongo_helper_cache_destroy (c);
   bson_destroy (v);
}
END_TEST

START_TEST (hashed_cache_key_prefix_is_cut_on_a_utf8_character_boundary)
{
   /* "€" is 3 bytes: 22 of them are 66 bytes, and byte 64 is inside the
    * 22nd, so the prefix holds 21 characters (63 bytes); 4 of them (12
    * bytes, over a limit of 10 but under 64) keep all their bytes. */
   struct {
      size_t len, prefix;
   } cases[] = {{66, 63}, {12, 12}};
   bson_t *v = BCON_NEW ("v", BCON_INT32 (2));

   for (size_t i = 0; i < 2; i++) {
      char coll[96];
      char *key = heap_key (cases[i].len, "\xe2\x82\xac");
      mongo_helper_cache_t *c;
      bson_t out;

      snprintf (coll, sizeof coll, "%s", mh_test_collection ("keys"));
      c = cache_with_limit (coll, 10);
      MH_ASSERT_OK (mongo_helper_cache_set (c, key, v, 60000, &err), err);
      assert_stored_id (coll, key, 10, cases[i].prefix);
      MH_ASSERT_OK (mongo_helper_cache_get (c, key, &out, &err), err);
      bson_destroy (&out);
      mongo_helper_cache_destroy (c);
      free (key);
   }
   bson_destroy (v);
}
END_TEST

#define MAX_MS MONGO_HELPER_MAX_DURATION_MS

START_TEST (session_durations_out_of_range_are_refused_and_the_maximum_is_accepted)
{
   struct {
      int64_t idle, absolute, touch, grace;
      bool ok;
   } cases[] = {
      {MAX_MS, MAX_MS, MAX_MS, MAX_MS, true},
      {1, 0, 0, 0, true},
      {0, 0, 0, 0, false},
      {-1, 0, 0, 0, false},
      {MAX_MS + 1, 0, 0, 0, false},
      {INT64_MAX, 0, 0, 0, false},
      {1000, -1, 0, 0, false},
      {1000, MAX_MS + 1, 0, 0, false},
      {1000, INT64_MAX, 0, 0, false},
      {1000, 0, -1, 0, false},
      {1000, 0, INT64_MAX, 0, false},
      {1000, 0, 0, -1, false},
      {1000, 0, 0, INT64_MAX, false},
      {1000, 0, 0, INT64_MIN, false},
   };

   for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      mongo_helper_sessions_options_t o;
      mongo_helper_sessions_t *s;

      mongo_helper_sessions_options_init (&o);
      o.idle_lifetime_ms = cases[i].idle;
      o.absolute_lifetime_ms = cases[i].absolute;
      o.touch_interval_ms = cases[i].touch;
      o.regenerate_grace_ms = cases[i].grace;
      s = mongo_helper_sessions_new (&o, &err);
      if (cases[i].ok) {
         ck_assert_msg (s != NULL, "case %zu: expected a store, got: %s", i, err.message);
      } else {
         ck_assert_msg (s == NULL && err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                        "case %zu: expected INVALID_ARGUMENT, got %s",
                        i,
                        mongo_helper_category_name (err.category));
         ck_assert_msg (strstr (err.message, "3155760000000"),
                        "case %zu: the message should give the range: %s",
                        i,
                        err.message);
      }
      mongo_helper_sessions_destroy (s);
   }
}
END_TEST

START_TEST (cache_and_event_log_options_out_of_range_are_refused)
{
   struct {
      int64_t ttl, lease, wait, poll;
      bool ok;
   } cases[] = {
      {MAX_MS, MAX_MS, MAX_MS, MAX_MS, true},
      {-1, 1, 0, 1, true},
      {INT64_MIN, 1, 0, 1, true}, /* negative: never expires */
      {MAX_MS + 1, 1000, 0, 1, false},
      {INT64_MAX, 1000, 0, 1, false},
      {0, 0, 0, 1, false},
      {0, INT64_MAX, 0, 1, false},
      {0, 1000, -1, 1, false},
      {0, 1000, INT64_MAX, 1, false},
      {0, 1000, 0, 0, false},
      {0, 1000, 0, INT64_MAX, false},
   };
   mongo_helper_eventlog_options_t lo;
   mongo_helper_eventlog_t *l;

   for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      mongo_helper_cache_options_t o;
      mongo_helper_cache_t *c;

      mongo_helper_cache_options_init (&o);
      o.default_ttl_ms = cases[i].ttl;
      o.lease_ms = cases[i].lease;
      o.wait_ms = cases[i].wait;
      o.poll_ms = cases[i].poll;
      c = mongo_helper_cache_new (&o, &err);
      ck_assert_msg ((c != NULL) == cases[i].ok,
                     "case %zu: expected %s, got %s (%s)",
                     i,
                     cases[i].ok ? "a cache" : "INVALID_ARGUMENT",
                     c ? "a cache" : mongo_helper_category_name (err.category),
                     err.message);
      if (!c) {
         ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      }
      mongo_helper_cache_destroy (c);
   }

   mongo_helper_eventlog_options_init (&lo);
   lo.retention_s = MONGO_HELPER_EVENTLOG_MAX_RETENTION_S;
   l = mongo_helper_eventlog_new (&lo, &err);
   MH_ASSERT_OK (l != NULL, err);
   mongo_helper_eventlog_destroy (l);
   lo.retention_s = MONGO_HELPER_EVENTLOG_MAX_RETENTION_S + 1;
   ck_assert_ptr_null (mongo_helper_eventlog_new (&lo, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   lo.retention_s = INT64_MAX;
   ck_assert_ptr_null (mongo_helper_eventlog_new (&lo, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

static bool
never_called (const char *key, bson_t *out, void *ud, mongo_helper_error_t *e)
{
   (void) key;
   (void) out;
   (void) e;
   *(bool *) ud = true;
   return true;
}

static int64_t
date_of (const bson_t *doc, const char *field)
{
   bson_iter_t it;

   ck_assert_msg (bson_iter_init_find (&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME (&it),
                  "no date %s",
                  field);
   return bson_iter_date_time (&it);
}

START_TEST (cache_ttl_beyond_the_maximum_is_refused_before_any_write)
{
   char coll[96];
   const int64_t bad[] = {INT64_MAX, MAX_MS + 1};
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("v", BCON_INT32 (1));
   bson_t out;
   bool called = false, computed = false;
   int64_t r;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ttl"));
   c = cache_with_limit (coll, 200);
   MH_ASSERT_OK (mongo_helper_cache_set (c, "live", v, 60000, &err), err);
   for (size_t i = 0; i < 2; i++) {
      ck_assert (!mongo_helper_cache_set (c, "k", v, bad[i], &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert (!mongo_helper_cache_set_bytes (c, "k", (const uint8_t *) "x", 1, bad[i], &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert (!mongo_helper_cache_add (c, "k", v, bad[i], &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert (!mongo_helper_cache_incr (c, "k", 1, bad[i], &r, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert (!mongo_helper_cache_touch (c, "live", bad[i], &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert (!mongo_helper_cache_get_or_compute (
         c, "k", bad[i], never_called, &called, &out, &computed, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert (!called && !computed);
      bson_destroy (&out);
   }
   /* Only "live" was written, and the refused touch left it live. */
   ck_assert_int_eq (raw_count (coll), 1);
   MH_ASSERT_OK (mongo_helper_cache_get (c, "live", &out, &err), err);
   bson_destroy (&out);
   mongo_helper_cache_destroy (c);
   bson_destroy (v);
}
END_TEST

START_TEST (cache_ttl_of_the_maximum_stores_a_live_entry_a_century_ahead)
{
   char coll[96];
   mongo_helper_cache_t *c;
   bson_t *v = BCON_NEW ("v", BCON_INT32 (1));
   bson_t out;
   bson_t *all;
   bson_iter_t it;
   bson_t doc;
   int64_t before, after, exp;
   uint32_t len;
   const uint8_t *d;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("ttl"));
   c = cache_with_limit (coll, 200);
   before = (int64_t) time (NULL) * 1000 - 1000;
   MH_ASSERT_OK (mongo_helper_cache_set (c, "century", v, MAX_MS, &err), err);
   after = (int64_t) time (NULL) * 1000 + 1000;
   MH_ASSERT_OK (mongo_helper_cache_get (c, "century", &out, &err), err);
   bson_destroy (&out);
   all = raw_all (coll);
   ck_assert (bson_iter_init (&it, all) && bson_iter_next (&it));
   bson_iter_document (&it, &len, &d);
   ck_assert (bson_init_static (&doc, d, len));
   exp = date_of (&doc, "expiresAt");
   ck_assert_msg (exp >= before + MAX_MS && exp <= after + MAX_MS,
                  "expiresAt %" PRId64 " is not now + 100 years",
                  exp);
   bson_destroy (all);
   mongo_helper_cache_destroy (c);
   bson_destroy (v);
}
END_TEST

START_TEST (session_with_the_maximum_idle_lifetime_is_live_a_century_ahead)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;
   bson_t out;
   bson_t *all;
   bson_iter_t it;
   bson_t doc;
   uint32_t len;
   const uint8_t *d;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess_max"));
   mongo_helper_sessions_options_init (&o);
   o.collection = coll;
   o.idle_lifetime_ms = MAX_MS;
   o.absolute_lifetime_ms = MAX_MS;
   o.touch_interval_ms = 0;
   s = mongo_helper_sessions_new (&o, &err);
   MH_ASSERT_OK (s != NULL, err);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   bson_destroy (&out);
   all = raw_all (coll);
   ck_assert (bson_iter_init (&it, all) && bson_iter_next (&it));
   bson_iter_document (&it, &len, &d);
   ck_assert (bson_init_static (&doc, d, len));
   ck_assert_int_eq (date_of (&doc, "absoluteExpiresAt"), date_of (&doc, "createdAt") + MAX_MS);
   ck_assert_int_le (date_of (&doc, "expiresAt"), date_of (&doc, "absoluteExpiresAt"));
   ck_assert_int_ge (date_of (&doc, "expiresAt"), date_of (&doc, "createdAt") + MAX_MS - 60000);
   bson_destroy (all);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (null_session_id_is_not_found_like_a_missing_cookie)
{
   mongo_helper_sessions_t *s;
   bson_t *set = BCON_NEW ("a", BCON_INT32 (1));
   const char *names[] = {"a"};
   char nid[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t out;
   bool wrote = true;

   s = mongo_helper_sessions_new (NULL, &err);
   MH_ASSERT_OK (s != NULL, err);
   ck_assert (!mongo_helper_sessions_load (s, NULL, &out, &err));
   ck_assert_msg (err.category == MONGO_HELPER_ERROR_NOT_FOUND,
                  "load(NULL): expected not_found, got %s",
                  mongo_helper_category_name (err.category));
   ck_assert_uint_eq (bson_count_keys (&out), 0);
   bson_destroy (&out);
   ck_assert (!mongo_helper_sessions_load_touch (s, NULL, &out, &wrote, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!wrote);
   bson_destroy (&out);
   ck_assert (!mongo_helper_sessions_touch (s, NULL, &wrote, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!mongo_helper_sessions_save (s, NULL, set, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!mongo_helper_sessions_set (s, NULL, set, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!mongo_helper_sessions_unset (s, NULL, names, 1, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!mongo_helper_sessions_set_user (s, NULL, "u", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!mongo_helper_sessions_regenerate (s, NULL, nid, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   /* Logging out without a cookie has nothing to delete. */
   MH_ASSERT_OK (mongo_helper_sessions_delete (s, NULL, &err), err);
   mongo_helper_sessions_destroy (s);
   bson_destroy (set);
}
END_TEST

START_TEST (session_set_and_unset_refuse_dotted_dollar_and_empty_field_names)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   const char *bad_keys[] = {"a.b", ".a", "a.", "$x", ""};
   const char *plain[] = {"keep"};
   mongo_helper_sessions_t *s;
   bson_t *data = BCON_NEW ("keep", BCON_INT32 (1), "a", "{", "b", BCON_INT32 (2), "}");
   bson_t out;

   s = mongo_helper_sessions_new (NULL, &err);
   MH_ASSERT_OK (s != NULL, err);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
      bson_t f = BSON_INITIALIZER;
      const char *names[] = {bad_keys[i]};

      BSON_APPEND_INT32 (&f, bad_keys[i], 9);
      ck_assert_msg (!mongo_helper_sessions_set (s, id, &f, &err),
                     "set accepted the field name '%s'",
                     bad_keys[i]);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_msg (!mongo_helper_sessions_unset (s, id, names, 1, &err),
                     "unset accepted the field name '%s'",
                     bad_keys[i]);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      bson_destroy (&f);
   }
   /* Nothing changed, the nested a.b included. */
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   if (!bson_equal (&out, data)) {
      ck_abort_msg ("session data changed: %s", bson_as_relaxed_extended_json (&out, NULL));
   }
   bson_destroy (&out);
   /* Plain top-level names still work. */
   MH_ASSERT_OK (mongo_helper_sessions_unset (s, id, plain, 1, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   ck_assert (!bson_has_field (&out, "keep") && bson_has_field (&out, "a"));
   bson_destroy (&out);
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
}
END_TEST

/* A document whose string claims 100 bytes in a 13-byte document. */
static const uint8_t corrupt_bytes[] = {13, 0, 0, 0, 0x02, 'a', 0, 100, 0, 0, 0, 'x', 0};

/* {a: {a: ... 150 levels}} */
static bson_t *
too_deep (void)
{
   bson_t *cur = bson_new ();

   for (int i = 0; i < 150; i++) {
      bson_t *next = bson_new ();
      BSON_APPEND_DOCUMENT (next, "a", cur);
      bson_destroy (cur);
      cur = next;
   }
   return cur;
}

START_TEST (corrupt_or_too_deep_documents_are_refused_before_any_write)
{
   char sess[96], cache_coll[96], log_coll[96], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_options_t so;
   mongo_helper_eventlog_options_t lo;
   mongo_helper_sessions_t *s;
   mongo_helper_cache_t *c;
   mongo_helper_eventlog_t *l;
   bson_t corrupt, out;
   bson_t *deep = too_deep ();
   const bson_t *bad[2];

   ck_assert (bson_init_static (&corrupt, corrupt_bytes, sizeof corrupt_bytes));
   bad[0] = &corrupt;
   bad[1] = deep;
   snprintf (sess, sizeof sess, "%s", mh_test_collection ("docs"));
   snprintf (cache_coll, sizeof cache_coll, "%s", mh_test_collection ("docs"));
   snprintf (log_coll, sizeof log_coll, "%s", mh_test_collection ("docs"));
   mongo_helper_sessions_options_init (&so);
   so.collection = sess;
   s = mongo_helper_sessions_new (&so, &err);
   MH_ASSERT_OK (s != NULL, err);
   c = cache_with_limit (cache_coll, 200);
   mongo_helper_eventlog_options_init (&lo);
   lo.collection = log_coll;
   l = mongo_helper_eventlog_new (&lo, &err);
   MH_ASSERT_OK (l != NULL, err);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   for (int i = 0; i < 2; i++) {
      const char *kind = i ? "too deep" : "corrupt";
      char nid[MONGO_HELPER_SESSION_ID_SIZE];

      ck_assert_msg (!mongo_helper_sessions_create (s, bad[i], NULL, nid, &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "sessions_create took a %s document (%s)",
                     kind,
                     err.message);
      ck_assert_msg (!mongo_helper_sessions_save (s, id, bad[i], &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "sessions_save took a %s document (%s)",
                     kind,
                     err.message);
      ck_assert_msg (!mongo_helper_sessions_set (s, id, bad[i], &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "sessions_set took a %s document (%s)",
                     kind,
                     err.message);
      ck_assert_msg (!mongo_helper_cache_set (c, "k", bad[i], 0, &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "cache_set took a %s document (%s)",
                     kind,
                     err.message);
      ck_assert_msg (!mongo_helper_cache_add (c, "k", bad[i], 0, &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "cache_add took a %s document (%s)",
                     kind,
                     err.message);
      ck_assert_msg (!mongo_helper_eventlog_log (l, "u", "t", bad[i], 0, &err) &&
                        err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                     "eventlog_log took a %s document (%s)",
                     kind,
                     err.message);
   }
   /* Nothing but the first session was written. */
   ck_assert_int_eq (raw_count (sess), 1);
   ck_assert_int_eq (raw_count (cache_coll), 0);
   ck_assert_int_eq (raw_count (log_coll), 0);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   ck_assert_uint_eq (bson_count_keys (&out), 0);
   bson_destroy (&out);
   mongo_helper_eventlog_destroy (l);
   mongo_helper_cache_destroy (c);
   mongo_helper_sessions_destroy (s);
   bson_destroy (deep);
}
END_TEST

Suite *
web_limits_suite (void)
{
   Suite *s = suite_create ("web_limits");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, setup, teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, cache_keys_at_every_length_edge_are_stored_exactly_and_read_back);
   tcase_add_test (live, hashed_cache_key_prefix_is_cut_on_a_utf8_character_boundary);
   tcase_add_test (live, session_durations_out_of_range_are_refused_and_the_maximum_is_accepted);
   tcase_add_test (live, cache_and_event_log_options_out_of_range_are_refused);
   tcase_add_test (live, cache_ttl_beyond_the_maximum_is_refused_before_any_write);
   tcase_add_test (live, cache_ttl_of_the_maximum_stores_a_live_entry_a_century_ahead);
   tcase_add_test (live, session_with_the_maximum_idle_lifetime_is_live_a_century_ahead);
   tcase_add_test (live, null_session_id_is_not_found_like_a_missing_cookie);
   tcase_add_test (live, session_set_and_unset_refuse_dotted_dollar_and_empty_field_names);
   tcase_add_test (live, corrupt_or_too_deep_documents_are_refused_before_any_write);
   suite_add_tcase (s, live);
   return s;
}
