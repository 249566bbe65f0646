/* Session keys from the configuration (src/sessions.c over src/keyring.c):
 * a handle without keys of its own takes the configured ring, a bad key
 * configuration names its source without key text, and key text appears in
 * no output at all (errors, log, metrics, settings, the tool).  Fixture:
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

Suite *
sessions_keys_suite (void)
{
   Suite *s = suite_create ("sessions_keys");
   TCase *live = tcase_create ("live");
   TCase *config = tcase_create ("config");

   tcase_add_checked_fixture (live, setup, mh_test_teardown);
   tcase_set_timeout (live, 120);
   tcase_add_test (live, handle_without_keys_of_its_own_takes_the_configured_ring);
   tcase_add_test (live, keys_appear_in_no_error_log_line_metric_setting_or_tool_output);
   suite_add_tcase (s, live);
   tcase_add_checked_fixture (config, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (config, bad_key_configuration_names_its_source_and_never_shows_key_text);
   suite_add_tcase (s, config);
   return s;
}
