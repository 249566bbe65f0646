/* src/sessions.c: stored documents read back with raw libmongoc (types, hashed
 * ids), expiry through the read filter, lazy touch, regenerate, user-wide
 * delete and index set-up, against the test server. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* The one stored document with _id `hex` (caller destroys), or NULL. */
static bson_t *
raw_doc (const char *coll, const char *hex)
{
   bson_t *f = BCON_NEW ("_id", BCON_UTF8 (hex));
   bson_t *out = mh_test_raw_find_one (coll, f);

   bson_destroy (f);
   return out;
}

static int64_t
date_of (const bson_t *doc, const char *field)
{
   bson_iter_t it;

   ck_assert_msg (bson_iter_init_find (&it, doc, field), "no field %s", field);
   ck_assert_msg (BSON_ITER_HOLDS_DATE_TIME (&it), "%s is not a BSON date", field);
   return bson_iter_date_time (&it);
}

/* Connects before a timed test starts, so slow first connections (e.g.
 * under valgrind) do not eat into short lifetimes. */
static void
warm_up (void)
{
   bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));
   MH_ASSERT_OK (mongo_helper_command (ping, NULL, &err), err);
   bson_destroy (ping);
}

static mongo_helper_sessions_t *
store (const char *coll, int64_t idle_ms, int64_t touch_ms, bool lazy)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;

   mongo_helper_sessions_options_init (&o);
   o.collection = coll;
   if (idle_ms) {
      o.idle_lifetime_ms = idle_ms;
   }
   o.touch_interval_ms = touch_ms;
   o.lazy_ensure = lazy;
   s = mongo_helper_sessions_new (&o, &err);
   MH_ASSERT_OK (s != NULL, err);
   warm_up ();
   return s;
}

START_TEST (options_init_gives_documented_defaults)
{
   mongo_helper_sessions_options_t o;

   mongo_helper_sessions_options_init (&o);
   ck_assert_str_eq (o.collection, "sessions");
   ck_assert_int_eq (o.idle_lifetime_ms, 14LL * 24 * 3600 * 1000);
   ck_assert_int_eq (o.absolute_lifetime_ms, 0);
   ck_assert_int_eq (o.touch_interval_ms, 60000);
   ck_assert (o.lazy_ensure);
   o.collection = "bad$name";
   ck_assert_ptr_null (mongo_helper_sessions_new (&o, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST (create_stores_hashed_id_dates_and_queryable_data_never_the_id)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE], id2[MONGO_HELPER_SESSION_ID_SIZE];
   char hex[65];
   mongo_helper_sessions_t *s;
   bson_t *data =
      BCON_NEW ("cart", "[", BCON_INT32 (1), BCON_INT32 (2), "]", "theme", BCON_UTF8 ("dark"));
   bson_t *doc;
   bson_iter_t it;
   char *json;
   int64_t created;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   s = store (coll, 0, 60000, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, "user-1", id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id2, &err), err);
   ck_assert_uint_eq (strlen (id), 43);
   ck_assert_uint_eq (
      strspn (id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
   ck_assert_str_ne (id, id2);

   mh_test_sha256_hex (id, strlen (id), hex);
   doc = raw_doc (coll, hex);
   ck_assert_msg (doc != NULL, "no document with _id = SHA-256(id)");
   json = bson_as_relaxed_extended_json (doc, NULL);
   ck_assert_msg (strstr (json, id) == NULL, "raw id stored: %s", json);
   created = date_of (doc, "createdAt");
   ck_assert_int_eq (date_of (doc, "lastSeen"), created);
   ck_assert_int_eq (date_of (doc, "expiresAt"), created + 14LL * 24 * 3600 * 1000);
   ck_assert (bson_iter_init_find (&it, doc, "userId") && BSON_ITER_HOLDS_UTF8 (&it));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "user-1");
   ck_assert (bson_iter_init_find (&it, doc, "data") && BSON_ITER_HOLDS_DOCUMENT (&it));
   {
      bson_iter_t d;
      ck_assert (bson_iter_init (&d, doc) && bson_iter_find_descendant (&d, "data.theme", &it));
      ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "dark");
   }
   bson_free (json);
   bson_destroy (doc);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 2);
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
}
END_TEST

START_TEST (load_returns_data_and_malformed_or_unknown_ids_are_not_found)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s = store (mh_test_collection ("sess"), 0, 60000, true);
   bson_t *data = BCON_NEW ("n", BCON_INT32 (7));
   bson_t out;
   bson_iter_t it;

   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   ck_assert (bson_iter_init_find (&it, &out, "n"));
   ck_assert_int_eq (bson_iter_int32 (&it), 7);
   bson_destroy (&out);

   ck_assert (!mongo_helper_sessions_load (s, "short", &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ck_assert (
      !mongo_helper_sessions_load (s, "{\"$ne\":1}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ck_assert (
      !mongo_helper_sessions_load (s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ck_assert (!mongo_helper_sessions_load (s, NULL, &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND); /* no cookie */
   bson_destroy (&out);
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
}
END_TEST

START_TEST (set_and_unset_change_only_the_named_fields_and_save_replaces)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s = store (mh_test_collection ("sess"), 0, 60000, true);
   bson_t *data = BCON_NEW ("a", BCON_INT32 (1), "b", BCON_INT32 (2));
   bson_t *set = BCON_NEW ("b", BCON_INT32 (20), "c", BCON_UTF8 ("x"));
   bson_t *bad = BCON_NEW ("$where", BCON_INT32 (1));
   bson_t *whole = BCON_NEW ("z", BCON_BOOL (true));
   const char *gone[] = {"a"};
   bson_t out;
   char *json;

   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_set (s, id, set, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_unset (s, id, gone, 1, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   json = bson_as_relaxed_extended_json (&out, NULL);
   ck_assert_str_eq (json, "{ \"b\" : 20, \"c\" : \"x\" }");
   bson_free (json);
   bson_destroy (&out);

   ck_assert (!mongo_helper_sessions_set (s, id, bad, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);

   MH_ASSERT_OK (mongo_helper_sessions_save (s, id, whole, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   json = bson_as_relaxed_extended_json (&out, NULL);
   ck_assert_str_eq (json, "{ \"z\" : true }");
   bson_free (json);
   bson_destroy (&out);
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
   bson_destroy (set);
   bson_destroy (bad);
   bson_destroy (whole);
}
END_TEST

START_TEST (expired_session_is_not_returned_before_the_ttl_monitor_runs)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;
   bson_t out;
   bool wrote = true;
   int64_t n = -1;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   /* No TTL index (lazy ensure off), so only the read filter can hide it. */
   s = store (coll, 1000, 0, false);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   bson_destroy (&out);
   mh_test_sleep_ms (1150);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 1);
   ck_assert (!mongo_helper_sessions_load (s, id, &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   ck_assert (!mongo_helper_sessions_touch (s, id, &wrote, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!wrote);
   MH_ASSERT_OK (mongo_helper_sessions_count (s, NULL, &n, &err), err);
   ck_assert_int_eq (n, 0);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (ttl_index_removes_expired_sessions_from_the_collection)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;
   int i;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   s = store (coll, 200, 0, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 1);
   /* The test server's TTL monitor runs every second (mongod: 60 s). */
   if (getenv ("MH_MOCK_SERVER") == NULL) {
      mongo_helper_sessions_destroy (s);
      MH_SKIP ("a real mongod's TTL monitor runs every 60 s");
   }
   for (i = 0; i < 40 && mh_test_raw_count (coll, NULL) > 0; i++) {
      mh_test_sleep_ms (100);
   }
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 0);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (touch_writes_only_when_last_seen_is_older_than_the_interval)
{
   char coll[96], hex[65], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;
   bson_t *d0, *d1, *d2;
   bool wrote = true;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   s = store (coll, 0, 1000, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   mh_test_sha256_hex (id, strlen (id), hex);
   d0 = raw_doc (coll, hex);

   /* Within the interval: many touches, no write. */
   for (int i = 0; i < 5; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
      ck_assert_msg (!wrote, "touch %d wrote inside the interval", i);
   }
   d1 = raw_doc (coll, hex);
   ck_assert_int_eq (date_of (d1, "lastSeen"), date_of (d0, "lastSeen"));
   ck_assert_int_eq (date_of (d1, "expiresAt"), date_of (d0, "expiresAt"));

   mh_test_sleep_ms (1100);
   MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
   ck_assert (wrote);
   MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
   ck_assert (!wrote);
   d2 = raw_doc (coll, hex);
   ck_assert_int_ge (date_of (d2, "lastSeen") - date_of (d0, "lastSeen"), 1000);
   ck_assert_int_eq (date_of (d2, "expiresAt") - date_of (d2, "lastSeen"), 14LL * 24 * 3600 * 1000);
   ck_assert_int_eq (date_of (d2, "createdAt"), date_of (d0, "createdAt"));
   bson_destroy (d0);
   bson_destroy (d1);
   bson_destroy (d2);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (absolute_lifetime_caps_the_sliding_expiry)
{
   char coll[96], hex[65], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;
   bson_t *d;
   bson_t out;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   mongo_helper_sessions_options_init (&o);
   o.collection = coll;
   o.absolute_lifetime_ms = 1000;
   o.touch_interval_ms = 0;
   o.lazy_ensure = false;
   s = mongo_helper_sessions_new (&o, &err);
   warm_up ();
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   mh_test_sha256_hex (id, strlen (id), hex);
   d = raw_doc (coll, hex);
   ck_assert_int_eq (date_of (d, "expiresAt"), date_of (d, "createdAt") + 1000);
   ck_assert_int_eq (date_of (d, "absoluteExpiresAt"), date_of (d, "createdAt") + 1000);
   bson_destroy (d);
   mh_test_sleep_ms (500);
   MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, NULL, &err), err);
   mh_test_sleep_ms (600);
   ck_assert (!mongo_helper_sessions_load (s, id, &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (regenerate_moves_data_to_a_new_id_and_deletes_the_old)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE], nid[MONGO_HELPER_SESSION_ID_SIZE];
   char hex[65], nhex[65];
   mongo_helper_sessions_t *s;
   bson_t *data = BCON_NEW ("k", BCON_UTF8 ("v"));
   bson_t out;
   bson_t *old_doc, *new_doc;
   bson_iter_t it;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   s = store (coll, 0, 60000, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, data, "u9", id, &err), err);
   mh_test_sha256_hex (id, strlen (id), hex);
   old_doc = raw_doc (coll, hex);
   MH_ASSERT_OK (mongo_helper_sessions_regenerate (s, id, nid, &err), err);
   ck_assert_str_ne (id, nid);
   ck_assert (!mongo_helper_sessions_load (s, id, &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, nid, &out, &err), err);
   ck_assert (bson_iter_init_find (&it, &out, "k"));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "v");
   bson_destroy (&out);
   ck_assert_int_eq (mh_test_raw_count (coll, NULL), 1);
   mh_test_sha256_hex (nid, strlen (nid), nhex);
   new_doc = raw_doc (coll, nhex);
   ck_assert_ptr_nonnull (new_doc);
   ck_assert_int_eq (date_of (new_doc, "createdAt"), date_of (old_doc, "createdAt"));
   ck_assert (bson_iter_init_find (&it, new_doc, "userId"));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "u9");
   bson_destroy (old_doc);
   bson_destroy (new_doc);
   mongo_helper_sessions_destroy (s);
   bson_destroy (data);
}
END_TEST

START_TEST (regenerate_with_grace_keeps_the_old_id_briefly)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE], nid[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;
   bson_t out;

   mongo_helper_sessions_options_init (&o);
   o.collection = mh_test_collection ("sess");
   o.regenerate_grace_ms = 1000;
   o.lazy_ensure = false;
   s = mongo_helper_sessions_new (&o, &err);
   warm_up ();
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_regenerate (s, id, nid, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, id, &out, &err), err);
   bson_destroy (&out);
   mh_test_sleep_ms (1100);
   ck_assert (!mongo_helper_sessions_load (s, id, &out, &err));
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, nid, &out, &err), err);
   bson_destroy (&out);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (delete_user_removes_every_session_of_that_user_only)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE], keep[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s = store (mh_test_collection ("sess"), 0, 60000, true);
   int64_t n = 0;
   bson_t out;

   for (int i = 0; i < 3; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, "alice", id, &err), err);
   }
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, "bob", keep, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_set_user (s, id, "alice", &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_count (s, "alice", &n, &err), err);
   ck_assert_int_eq (n, 4);
   MH_ASSERT_OK (mongo_helper_sessions_delete_user (s, "alice", &n, &err), err);
   ck_assert_int_eq (n, 4);
   MH_ASSERT_OK (mongo_helper_sessions_count (s, "alice", &n, &err), err);
   ck_assert_int_eq (n, 0);
   MH_ASSERT_OK (mongo_helper_sessions_count (s, NULL, &n, &err), err);
   ck_assert_int_eq (n, 1);
   MH_ASSERT_OK (mongo_helper_sessions_load (s, keep, &out, &err), err);
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_sessions_delete (s, keep, &err), err);
   ck_assert (!mongo_helper_sessions_load (s, keep, &out, &err));
   bson_destroy (&out);
   MH_ASSERT_OK (mongo_helper_sessions_delete (s, keep, &err), err);
   mongo_helper_sessions_destroy (s);
}
END_TEST

typedef struct {
   mongo_helper_sessions_t *s;
   const char *id;
   bool ok, wrote;
   mongo_helper_error_t e;
} toucher_t;

static void *
toucher (void *arg)
{
   toucher_t *t = arg;

   t->ok = mongo_helper_sessions_touch (t->s, t->id, &t->wrote, &t->e);
   mongo_helper_thread_release ();
   return NULL;
}

START_TEST (concurrent_touches_of_a_stale_session_write_once)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE], hex[65], coll[96];
   mongo_helper_sessions_t *s;
   toucher_t t[8];
   pthread_t th[8];
   int wrote = 0;

   /* A minute's touch interval and a session last seen an hour ago: the
    * first touch is due and every later one within the minute is not, so
    * the count does not depend on how fast the threads run (valgrind). */
   bson_strncpy (coll, mh_test_collection ("sess"), sizeof coll);
   s = store (coll, 0, 60000, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   mh_test_sha256_hex (id, strlen (id), hex);
   {
      mongoc_collection_t *c = mh_test_raw_collection (coll);
      bson_t *f = BCON_NEW ("_id", BCON_UTF8 (hex));
      bson_t *u = BCON_NEW (
         "$set", "{", "lastSeen", BCON_DATE_TIME ((int64_t) time (NULL) * 1000 - 3600000), "}");
      bson_t reply;

      ck_assert (mongoc_collection_update_one (c, f, u, NULL, &reply, NULL));
      ck_assert_int_eq (mh_test_int_at (&reply, "modifiedCount"), 1);
      bson_destroy (&reply);
      bson_destroy (f);
      bson_destroy (u);
      mongoc_collection_destroy (c);
   }
   for (int i = 0; i < 8; i++) {
      memset (&t[i], 0, sizeof t[i]);
      t[i].s = s;
      t[i].id = id;
      ck_assert_int_eq (pthread_create (&th[i], NULL, toucher, &t[i]), 0);
   }
   for (int i = 0; i < 8; i++) {
      pthread_join (th[i], NULL);
   }
   for (int i = 0; i < 8; i++) {
      ck_assert_msg (t[i].ok, "thread %d: %s", i, t[i].e.message);
      wrote += t[i].wrote;
   }
   ck_assert_int_eq (wrote, 1);
   mongo_helper_sessions_destroy (s);
}
END_TEST

static void
raw_index (const char *coll, const char *name, int64_t ttl)
{
   mongoc_database_t *db = mongo_helper_database (&err);
   bson_t *cmd = BCON_NEW ("createIndexes",
                           BCON_UTF8 (coll),
                           "indexes",
                           "[",
                           "{",
                           "key",
                           "{",
                           "expiresAt",
                           BCON_INT32 (1),
                           "}",
                           "name",
                           BCON_UTF8 (name),
                           "}",
                           "]");
   bson_error_t e;

   if (ttl >= 0) {
      /* rebuild with the option inside the index spec */
      bson_destroy (cmd);
      cmd = BCON_NEW ("createIndexes",
                      BCON_UTF8 (coll),
                      "indexes",
                      "[",
                      "{",
                      "key",
                      "{",
                      "expiresAt",
                      BCON_INT32 (1),
                      "}",
                      "name",
                      BCON_UTF8 (name),
                      "expireAfterSeconds",
                      BCON_INT64 (ttl),
                      "}",
                      "]");
   }
   ck_assert_msg (mongoc_database_command_simple (db, cmd, NULL, NULL, &e), "%s", e.message);
   bson_destroy (cmd);
}

START_TEST (ensure_creates_ttl_and_user_indexes_and_is_idempotent)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   s = store (coll, 0, 60000, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   ck_assert_int_eq (mh_test_index_ttl (coll, "expiresAt_ttl"), 0);
   ck_assert_int_eq (mh_test_index_ttl (coll, "userId_1"), -1);
   MH_ASSERT_OK (mongo_helper_sessions_ensure (s, &err), err);
   MH_ASSERT_OK (mongo_helper_sessions_ensure (s, &err), err);
   mongo_helper_sessions_destroy (s);

   /* lazy_ensure off: no index is made behind the application's back. */
   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   s = store (coll, 0, 60000, false);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   ck_assert_int_eq (mh_test_index_ttl (coll, "expiresAt_ttl"), -2);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (ensure_changes_a_different_ttl_with_collmod_instead_of_failing)
{
   char coll[96];
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   raw_index (coll, "old_ttl", 3600);
   s = store (coll, 0, 60000, false);
   MH_ASSERT_OK (mongo_helper_sessions_ensure (s, &err), err);
   ck_assert_int_eq (mh_test_index_ttl (coll, "old_ttl"), 0);
   ck_assert_int_eq (mh_test_index_ttl (coll, "expiresAt_ttl"), -2);
   ck_assert_int_eq (mh_test_index_ttl (coll, "userId_1"), -1);
   mongo_helper_sessions_destroy (s);
}
END_TEST

START_TEST (ensure_reports_a_conflicting_index_clearly_and_lazy_use_fails)
{
   char coll[96], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;

   snprintf (coll, sizeof coll, "%s", mh_test_collection ("sess"));
   raw_index (coll, "plain_expiry", -1);
   s = store (coll, 0, 60000, true);
   ck_assert (!mongo_helper_sessions_ensure (s, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 85);
   ck_assert_msg (strstr (err.message, "plain_expiry") && strstr (err.message, "dropIndex"),
                  "message: %s",
                  err.message);
   ck_assert (!mongo_helper_sessions_create (s, NULL, NULL, id, &err));
   ck_assert_int_eq (err.code, 85);
   mongo_helper_sessions_destroy (s);
}
END_TEST

/* ---- write counting through our own test server's command log ---- */

START_TEST (server_sees_one_update_per_touch_interval_and_one_index_setup)
{
   mh_test_server_t srv = {0};
   char uri[256], id[MONGO_HELPER_SESSION_ID_SIZE];
   mongo_helper_sessions_t *s;
   int port;
   bool wrote;

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   mh_test_server_start (&srv, 0, NULL);
   port = srv.port;
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_touch", port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   s = store ("web_sessions", 0, 1000, true);
   MH_ASSERT_OK (mongo_helper_sessions_create (s, NULL, NULL, id, &err), err);
   for (int i = 0; i < 20; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
   }
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"update\": \"web_sessions\""), 0);
   mh_test_sleep_ms (1100);
   for (int i = 0; i < 20; i++) {
      MH_ASSERT_OK (mongo_helper_sessions_touch (s, id, &wrote, &err), err);
   }
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"update\": \"web_sessions\""), 1);
   ck_assert_int_eq (mh_test_server_log_count (&srv, "{\"createIndexes\": \"web_sessions\""), 1);
   /* the raw id never travels to the server, only its digest */
   ck_assert_int_eq (mh_test_server_log_count (&srv, id), 0);
   mongo_helper_sessions_destroy (s);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

Suite *
sessions_suite (void)
{
   Suite *s = suite_create ("sessions");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");
   TCase *own = tcase_create ("own_server");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, options_init_gives_documented_defaults);
   suite_add_tcase (s, core);
   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, create_stores_hashed_id_dates_and_queryable_data_never_the_id);
   tcase_add_test (live, load_returns_data_and_malformed_or_unknown_ids_are_not_found);
   tcase_add_test (live, set_and_unset_change_only_the_named_fields_and_save_replaces);
   tcase_add_test (live, expired_session_is_not_returned_before_the_ttl_monitor_runs);
   tcase_add_test (live, ttl_index_removes_expired_sessions_from_the_collection);
   tcase_add_test (live, touch_writes_only_when_last_seen_is_older_than_the_interval);
   tcase_add_test (live, absolute_lifetime_caps_the_sliding_expiry);
   tcase_add_test (live, regenerate_moves_data_to_a_new_id_and_deletes_the_old);
   tcase_add_test (live, regenerate_with_grace_keeps_the_old_id_briefly);
   tcase_add_test (live, delete_user_removes_every_session_of_that_user_only);
   tcase_add_test (live, concurrent_touches_of_a_stale_session_write_once);
   tcase_add_test (live, ensure_creates_ttl_and_user_indexes_and_is_idempotent);
   tcase_add_test (live, ensure_changes_a_different_ttl_with_collmod_instead_of_failing);
   tcase_add_test (live, ensure_reports_a_conflicting_index_clearly_and_lazy_use_fails);
   suite_add_tcase (s, live);
   tcase_add_checked_fixture (own, NULL, mh_test_teardown);
   tcase_set_timeout (own, 60);
   tcase_add_test (own, server_sees_one_update_per_touch_interval_and_one_index_setup);
   suite_add_tcase (s, own);
   return s;
}
