/* Limits on what is held in memory and what the server is sent: the byte
 * cap on results, JSON text and GridFS files (64 MiB by default), the
 * setting that changes it, and the default maxTimeMS as the test server
 * receives it.  Argument ranges are in test_limits.c; the helpers both use
 * in limits_fixture.h.  Run under ASan and UBSan by `make sanitize`. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

#include "limits_fixture.h"

/* ---- results held in memory ---- */

#define BIG (14u * 1024u * 1024u)

/* {b: <14 MiB of binary>}: binary, so its JSON (base64, 4/3 larger)
 * renders fast. */
static bson_t *
big_doc (int id)
{
   uint8_t *b = calloc (1, BIG);
   bson_t *d;

   ck_assert_ptr_nonnull (b);
   d = BCON_NEW ("_id", BCON_INT32 (id), "b", BCON_BIN (BSON_SUBTYPE_BINARY, b, BIG));
   free (b);
   return d;
}

/* Five 14 MiB documents (70 MiB), made on the server from one ($out), as
 * sending 70 MiB to the test server is slow. */
static void
insert_big_five (void)
{
   mongoc_collection_t *c = mh_test_raw_collection ("limits_seed");
   bson_t *seed = big_doc (1);
   bson_t *p;
   mongoc_cursor_t *cur;
   const bson_t *doc;
   bson_error_t e;

   BCON_APPEND (seed,
                "k",
                "[",
                BCON_INT32 (0),
                BCON_INT32 (1),
                BCON_INT32 (2),
                BCON_INT32 (3),
                BCON_INT32 (4),
                "]");
   mongoc_collection_drop (c, NULL);
   ck_assert_msg (mongoc_collection_insert_one (c, seed, NULL, NULL, &e), "%s", e.message);
   p = BCON_NEW ("pipeline",
                 "[",
                 "{",
                 "$unwind",
                 BCON_UTF8 ("$k"),
                 "}",
                 "{",
                 "$project",
                 "{",
                 "_id",
                 BCON_UTF8 ("$k"),
                 "b",
                 BCON_INT32 (1),
                 "}",
                 "}",
                 "{",
                 "$out",
                 BCON_UTF8 (coll),
                 "}",
                 "]");
   cur = mongoc_collection_aggregate (c, MONGOC_QUERY_NONE, p, NULL, NULL);
   while (mongoc_cursor_next (cur, &doc)) {
   }
   ck_assert_msg (!mongoc_cursor_error (cur, &e), "$out: %s", e.message);
   mongoc_cursor_destroy (cur);
   ck_assert_int_eq (raw_count (), 5);
   bson_destroy (p);
   bson_destroy (seed);
   mongoc_collection_destroy (c);
}

START_TEST (find_results_past_64_mib_are_refused_by_default)
{
   bson_t res;

   ck_assert_int_eq (MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES, 64 * 1024 * 1024);
   insert_big_five ();
   ASSERT_REFUSED (mongo_helper_find (NULL, coll, NULL, NULL, &res, &err),
                   "the results pass max_result_bytes (67108864 bytes)");
   ck_assert_ptr_nonnull (strstr (err.message, "find_stream"));
   ck_assert (bson_empty (&res));
   bson_destroy (&res);
}
END_TEST

/* 4 documents of 14 MiB are 75 MiB of JSON text, 3 are 56 MiB. */
START_TEST (array_to_json_refuses_text_past_64_mib)
{
   bson_t array = BSON_INITIALIZER;
   char *json;

   for (int i = 0; i < 4; i++) {
      bson_t *d = big_doc (i);
      char key[16];

      snprintf (key, sizeof key, "%d", i);
      BSON_APPEND_DOCUMENT (&array, key, d);
      bson_destroy (d);
      if (i == 2) {
         json = mongo_helper_array_to_json (&array, &err);
         MH_ASSERT_OK (json != NULL, err);
         ck_assert_uint_gt (strlen (json), 3 * BIG * 4 / 3);
         bson_free (json);
      }
   }
   ck_assert_ptr_null (mongo_helper_array_to_json (&array, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "max_result_bytes (67108864 bytes) as JSON text"));
   bson_destroy (&array);
}
END_TEST

static int64_t
count_bytes (void *buf, size_t len, void *user_data)
{
   int64_t *left = user_data;
   size_t n = *left < (int64_t) len ? (size_t) *left : len;

   memset (buf, 'g', n);
   *left -= (int64_t) n;
   return (int64_t) n;
}

static bool
sum_bytes (const void *buf, size_t len, void *user_data)
{
   (void) buf;
   *(size_t *) user_data += len;
   return true;
}

START_TEST (gridfs_get_into_memory_refuses_files_past_64_mib)
{
   const int64_t size = 64 * 1024 * 1024 + 1;
   int64_t left = size;
   mongo_helper_gridfs_opts_t o = {NULL, NULL, 4 * 1024 * 1024};
   bson_value_t id;
   uint8_t *data = (uint8_t *) &left;
   size_t len = 7;

   o.bucket = coll;
   MH_ASSERT_OK (
      mongo_helper_gridfs_put_reader (&o, "big", count_bytes, &left, NULL, NULL, &id, &err), err);
   ASSERT_REFUSED (mongo_helper_gridfs_get (&o, &id, &data, &len, &err),
                   "max_result_bytes (67108864 bytes)");
   ck_assert_ptr_nonnull (strstr (err.message, "_get_writer"));
   ck_assert_ptr_null (data);
   ck_assert_uint_eq (len, 0);
   bson_value_destroy (&id);
}
END_TEST

/* ---- the settings (read by the configuration) ---- */

/* Whether the configuration reads `env`: an unparsable value must make it
 * fail.  Until it does, the tests of that setting cannot run. */
static bool
setting_is_read (const char *env)
{
   mongo_helper_config_t *cfg;
   mongo_helper_error_t e;
   bool read;

   setenv (env, "not-a-number", 1);
   cfg = mongo_helper_config_new (NULL, NULL, &e);
   read = cfg == NULL && e.category == MONGO_HELPER_ERROR_CONFIG && strstr (e.message, env);
   mongo_helper_config_destroy (cfg);
   unsetenv (env);
   return read;
}

START_TEST (max_result_bytes_setting_caps_results_files_and_chunks)
{
   mongo_helper_gridfs_opts_t o = {NULL, NULL, 0};
   bson_t res;
   char *json;
   chunks_t c;
   bson_value_t id;
   uint8_t *data;
   size_t len, seen = 0;
   char blob[5000];

   if (!setting_is_read ("MONGO_MAX_RESULT_BYTES")) {
      MH_SKIP ("the configuration does not read MONGO_MAX_RESULT_BYTES yet");
   }
   /* Its range starts at 1024 bytes. */
   setenv ("MONGO_MAX_RESULT_BYTES", "1023", 1);
   ck_assert (!mongo_helper_init (NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_ptr_nonnull (strstr (err.message, "MONGO_MAX_RESULT_BYTES"));
   setenv ("MONGO_MAX_RESULT_BYTES", "4096", 1);
   {
      mongoc_collection_t *raw = mh_test_raw_collection (coll);
      bson_error_t e;

      bson_t *d;

      memset (blob, 'b', sizeof blob - 1);
      blob[sizeof blob - 1] = '\0';
      for (int i = 0; i < 10; i++) {
         d = BCON_NEW ("_id", BCON_INT32 (i), "s", BCON_UTF8 (blob + 4000));
         ck_assert_msg (mongoc_collection_insert_one (raw, d, NULL, NULL, &e), "%s", e.message);
         bson_destroy (d);
      }
      /* 800 control characters: 820 bytes of BSON, 4800 of JSON (\u0001) */
      memset (blob, 1, 800);
      blob[800] = '\0';
      d = BCON_NEW ("_id", BCON_INT32 (100), "c", BCON_UTF8 (blob));
      ck_assert_msg (mongoc_collection_insert_one (raw, d, NULL, NULL, &e), "%s", e.message);
      bson_destroy (d);
      mongoc_collection_destroy (raw);
      memset (blob, 'b', sizeof blob);
   }
   /* ten documents of ~1 KB: past 4096 bytes */
   ASSERT_REFUSED (mongo_helper_find (NULL, coll, NULL, NULL, &res, &err),
                   "max_result_bytes (4096 bytes)");
   bson_destroy (&res);
   ASSERT_REFUSED (mongo_helper_find_json (NULL, coll, NULL, NULL, &err), "(4096 bytes)");
   ASSERT_REFUSED (mongo_helper_aggregate_json (NULL, coll, "[{\"$match\": {}}]", NULL, &err),
                   "(4096 bytes)");
   /* One document: as BSON it fits, as JSON text it does not. */
   json = mongo_helper_find_one_json (NULL, coll, "{\"_id\": 100}", NULL, &err);
   ck_assert_ptr_null (json);
   ck_assert_ptr_nonnull (strstr (err.message, "max_result_bytes (4096 bytes) as JSON text"));
   {
      bson_t *f = BCON_NEW ("_id", BCON_INT32 (100));
      bson_t *doc = mongo_helper_find_one (NULL, coll, f, NULL, &err);

      MH_ASSERT_OK (doc != NULL, err);
      bson_destroy (doc);
      bson_destroy (f);
   }
   json = mongo_helper_find_json (NULL, coll, NULL, "{\"limit\": 3}", &err);
   MH_ASSERT_OK (json != NULL, err);
   bson_free (json);
   MH_ASSERT_OK (find_stream (100, &c), err);
   ck_assert_uint_eq (c.docs, 11);
   ck_assert_uint_ge (c.chunks, 3);
   for (size_t i = 0; i < c.chunks && i < 16; i++) {
      ck_assert_uint_le (c.sizes[i], 4); /* at most 4 of ~1 KB */
   }

   o.bucket = coll;
   MH_ASSERT_OK (mongo_helper_gridfs_put (&o, "f", blob, sizeof blob, NULL, NULL, &id, &err), err);
   ASSERT_REFUSED (mongo_helper_gridfs_get (&o, &id, &data, &len, &err), "(4096 bytes)");
   /* The writer holds one piece at a time: no cap. */
   MH_ASSERT_OK (mongo_helper_gridfs_get_writer (&o, &id, sum_bytes, &seen, &err), err);
   ck_assert_uint_eq (seen, sizeof blob);
   bson_value_destroy (&id);
   /* files documents of ~100 bytes: 80 of them pass 4096 bytes */
   for (int i = 0; i < 80; i++) {
      MH_ASSERT_OK (mongo_helper_gridfs_put (&o, "many", "x", 1, NULL, NULL, NULL, &err), err);
   }
   MH_ASSERT_OK (mongo_helper_gridfs_find (&o, "f", &res, &len, &err), err);
   ck_assert_uint_eq (len, 1);
   bson_destroy (&res);
   ASSERT_REFUSED (mongo_helper_gridfs_find (&o, NULL, &res, NULL, &err), "(4096 bytes)");
   ck_assert (bson_empty (&res));
   bson_destroy (&res);
}
END_TEST

/* Lines of the command log holding both needles. */
static int
log_lines_with (const mh_test_server_t *s, const char *a, const char *b)
{
   FILE *f = fopen (s->command_log, "r");
   char *line = NULL;
   size_t cap = 0;
   int n = 0;

   ck_assert_msg (f, "no command log %s", s->command_log);
   while (getline (&line, &cap, f) > 0) {
      n += strstr (line, a) && (!b || strstr (line, b));
   }
   free (line);
   fclose (f);
   return n;
}

/* Runs each kind of query the library issues once, on `name`. */
static void
run_queries (const char *name)
{
   bson_t *f = BCON_NEW ("n", "{", "$gte", BCON_INT32 (0), "}");
   bson_t *p = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   mongo_helper_cache_options_t co;
   mongo_helper_cache_t *cache;
   bson_t res, *one;
   int64_t n;
   chunks_t c;
   char *json;

   MH_ASSERT_OK (mongo_helper_find (NULL, name, f, NULL, &res, &err), err);
   bson_destroy (&res);
   one = mongo_helper_find_one (NULL, name, f, NULL, &err);
   MH_ASSERT_OK (one != NULL, err);
   bson_destroy (one);
   MH_ASSERT_OK (mongo_helper_count_documents (NULL, name, f, &n, &err), err);
   MH_ASSERT_OK (mongo_helper_estimated_count (NULL, name, &n, &err), err);
   MH_ASSERT_OK (mongo_helper_distinct (NULL, name, "n", f, &res, &err), err);
   bson_destroy (&res);
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, name, p, NULL, &res, &err), err);
   bson_destroy (&res);
   memset (&c, 0, sizeof c);
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, name, f, NULL, 10, record_chunk, &c, &err), err);
   MH_ASSERT_OK (mongo_helper_aggregate_stream (NULL, name, p, NULL, 10, record_chunk, &c, &err),
                 err);
   /* The caller's own maxTimeMS wins. */
   json = mongo_helper_find_json (NULL, name, "{\"n\": 1}", "{\"maxTimeMS\": 777}", &err);
   MH_ASSERT_OK (json != NULL, err);
   bson_free (json);
   /* findAndModify: the cache's counter. */
   mongo_helper_cache_options_init (&co);
   co.collection = "limits_cache";
   co.lazy_ensure = false;
   cache = mongo_helper_cache_new (&co, &err);
   MH_ASSERT_OK (cache != NULL, err);
   MH_ASSERT_OK (mongo_helper_cache_incr (cache, "k", 1, 0, &n, &err), err);
   mongo_helper_cache_destroy (cache);
   bson_destroy (f);
   bson_destroy (p);
}

static void
start_logged_server (mh_test_server_t *srv)
{
   char uri[128];

   mh_test_server_start (srv, 0, NULL);
   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_limits", srv->port);
   setenv ("MONGO_CACHE_URI", uri, 1);
   coll = "q";
   insert_numbered (2);
}

START_TEST (no_max_time_ms_is_sent_by_default)
{
   mh_test_server_t srv = {0};

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   start_logged_server (&srv);
   run_queries ("q");
   /* The queries did reach the server; only find_json's own limit went
    * with them. */
   ck_assert_int_ge (log_lines_with (&srv, "{\"find\": \"q\"", NULL), 4);
   ck_assert_int_ge (log_lines_with (&srv, "{\"findAndModify\": \"limits_cache\"", NULL), 1);
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\": {\"$numberInt\": \"777\"}", NULL), 1);
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\"", NULL), 1);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

START_TEST (default_max_time_ms_setting_reaches_the_server)
{
   static const char *const commands[] = {
      "{\"find\": \"q\"",      /* find, find_one, find_stream */
      "{\"aggregate\": \"q\"", /* count_documents, aggregate, aggregate_stream */
      "{\"count\": \"q\"",     /* estimated_count */
      "{\"distinct\": \"q\"",
      "{\"findAndModify\": \"limits_cache\"",
   };
   static const int at_least[] = {3, 3, 1, 1, 1};
   const char *ms = "\"maxTimeMS\": {\"$numberInt\": \"4321\"}";
   mh_test_server_t srv = {0};

   if (!getenv ("MH_MOCK_SERVER_SCRIPT")) {
      MH_SKIP ("needs tests/mock_server.py for its command log");
   }
   if (!setting_is_read ("MONGO_DEFAULT_MAX_TIME_MS")) {
      MH_SKIP ("the configuration does not read MONGO_DEFAULT_MAX_TIME_MS yet");
   }
   setenv ("MONGO_DEFAULT_MAX_TIME_MS", "4321", 1);
   start_logged_server (&srv);
   run_queries ("q");
   for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
      int all = log_lines_with (&srv, commands[i], NULL);
      int with = log_lines_with (&srv, commands[i], ms);

      ck_assert_msg (
         all >= at_least[i], "%s: %d commands, expected %d", commands[i], all, at_least[i]);
      /* find_json's own 777 is the one find without the default */
      ck_assert_msg (with == all - (i == 0),
                     "%s: %d of %d commands carry maxTimeMS 4321",
                     commands[i],
                     with,
                     all);
   }
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\": {\"$numberInt\": \"777\"}", ms), 0);
   ck_assert_int_eq (log_lines_with (&srv, "\"maxTimeMS\": {\"$numberInt\": \"777\"}", NULL), 1);
   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
}
END_TEST

Suite *
limits_caps_suite (void)
{
   Suite *s = suite_create ("limits_caps");
   TCase *caps = tcase_create ("caps");
   TCase *settings = tcase_create ("settings");

   tcase_add_checked_fixture (caps, setup, teardown);
   tcase_set_timeout (caps, 300);
   tcase_add_test (caps, find_results_past_64_mib_are_refused_by_default);
   tcase_add_test (caps, array_to_json_refuses_text_past_64_mib);
   tcase_add_test (caps, gridfs_get_into_memory_refuses_files_past_64_mib);
   suite_add_tcase (s, caps);

   tcase_add_checked_fixture (settings, setup, teardown);
   tcase_set_timeout (settings, 120);
   tcase_add_test (settings, max_result_bytes_setting_caps_results_files_and_chunks);
   tcase_add_test (settings, no_max_time_ms_is_sent_by_default);
   tcase_add_test (settings, default_max_time_ms_setting_reaches_the_server);
   suite_add_tcase (s, settings);
   return s;
}
