/* Configuration settings: every URI option libmongoc reads works the same
 * from the URI, from [db] connection_options and from a setting's own
 * environment variable or INI key; the settings table as seen through
 * mongo_helper_config_setting().  No server needed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static void
setup (void)
{
   mh_test_clean_env ();
   ck_assert_int_eq (chdir ("/tmp"), 0);
   memset (&err, 0, sizeof err);
}

static mongo_helper_config_t *
load_ok (const char *path, const char *uri)
{
   mongo_helper_config_t *c = mongo_helper_config_new (path, uri, &err);
   MH_ASSERT_OK (c != NULL, err);
   return c;
}

static void
load_fails (const char *path, const char *uri, const char *needle)
{
   mongo_helper_config_t *c = mongo_helper_config_new (path, uri, &err);
   ck_assert_msg (c == NULL, "expected a configuration error mentioning '%s'", needle);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_msg (
      strstr (err.message, needle), "expected '%s' in the message, got: %s", needle, err.message);
}

/* An INI file with mongo_uri and connection_options. */
static const char *
ini_with_options (const char *uri, const char *options)
{
   char text[1024];

   snprintf (
      text, sizeof text, "[db]\nmongo_uri = %s\nconnection_options = \"%s\"\n", uri, options);
   return mh_test_write_ini (text);
}

/* ---- what each option does to the parsed URI -------------------------- */

/* Each check returns NULL when the parsed URI shows the option's effect,
 * else what it found instead (static storage). */
typedef const char *(*mh_effect_fn) (const mongoc_uri_t *u);

static char found[256];

static const char *
w_majority (const mongoc_uri_t *u)
{
   const mongoc_write_concern_t *wc = mongoc_uri_get_write_concern (u);
   if (mongoc_write_concern_get_wmajority (wc)) {
      return NULL;
   }
   snprintf (found, sizeof found, "w=%d", (int) mongoc_write_concern_get_w (wc));
   return found;
}

static const char *
w_two (const mongoc_uri_t *u)
{
   int w = mongoc_write_concern_get_w (mongoc_uri_get_write_concern (u));
   snprintf (found, sizeof found, "w=%d", w);
   return w == 2 ? NULL : found;
}

static const char *
journal_on (const mongoc_uri_t *u)
{
   const mongoc_write_concern_t *wc = mongoc_uri_get_write_concern (u);
   snprintf (found,
             sizeof found,
             "journal set=%d value=%d",
             (int) mongoc_write_concern_journal_is_set (wc),
             (int) mongoc_write_concern_get_journal (wc));
   return mongoc_write_concern_journal_is_set (wc) && mongoc_write_concern_get_journal (wc) ? NULL
                                                                                            : found;
}

static const char *
wtimeout_500 (const mongoc_uri_t *u)
{
   int64_t t = mongoc_write_concern_get_wtimeout_int64 (mongoc_uri_get_write_concern (u));
   snprintf (found, sizeof found, "wtimeout=%lld", (long long) t);
   return t == 500 ? NULL : found;
}

static const char *
primary_preferred (const mongoc_uri_t *u)
{
   mongoc_read_mode_t m = mongoc_read_prefs_get_mode (mongoc_uri_get_read_prefs_t (u));
   snprintf (found, sizeof found, "read mode %d", (int) m);
   return m == MONGOC_READ_PRIMARY_PREFERRED ? NULL : found;
}

static const char *
secondary_with_two_tag_sets (const mongoc_uri_t *u)
{
   const mongoc_read_prefs_t *rp = mongoc_uri_get_read_prefs_t (u);
   char *tags = bson_as_relaxed_extended_json (mongoc_read_prefs_get_tags (rp), NULL);
   bool ok = mongoc_read_prefs_get_mode (rp) == MONGOC_READ_SECONDARY &&
             strcmp (tags, "{ \"0\" : { \"dc\" : \"ny\", \"rack\" : \"1\" }, \"1\" : {  } }") == 0;

   snprintf (found, sizeof found, "mode %d tags %s", (int) mongoc_read_prefs_get_mode (rp), tags);
   bson_free (tags);
   return ok ? NULL : found;
}

static const char *
max_staleness_120 (const mongoc_uri_t *u)
{
   int64_t s = mongoc_read_prefs_get_max_staleness_seconds (mongoc_uri_get_read_prefs_t (u));
   snprintf (found, sizeof found, "maxStalenessSeconds %lld", (long long) s);
   return s == 120 ? NULL : found;
}

static const char *
read_concern_majority (const mongoc_uri_t *u)
{
   const char *level = mongoc_read_concern_get_level (mongoc_uri_get_read_concern (u));
   snprintf (found, sizeof found, "read concern level %s", level ? level : "(none)");
   return level && strcmp (level, "majority") == 0 ? NULL : found;
}

static const char *
compressors_zlib_zstd (const mongoc_uri_t *u)
{
   const bson_t *c = mongoc_uri_get_compressors (u);
   char *json = bson_as_relaxed_extended_json (c, NULL);
   bool ok = bson_has_field (c, "zlib") && bson_has_field (c, "zstd") && bson_count_keys (c) == 2;

   snprintf (found, sizeof found, "compressors %s", json);
   bson_free (json);
   return ok ? NULL : found;
}

static const char *
app_name_with_space (const mongoc_uri_t *u)
{
   const char *a = mongoc_uri_get_appname (u);
   snprintf (found, sizeof found, "appName %s", a ? a : "(none)");
   return a && strcmp (a, "my app") == 0 ? NULL : found;
}

static const char *
tls_with_ca_file (const mongoc_uri_t *u)
{
   const char *ca = mongoc_uri_get_option_as_utf8 (u, MONGOC_URI_TLSCAFILE, NULL);
   bool hosts = mongoc_uri_get_option_as_bool (u, MONGOC_URI_TLSALLOWINVALIDHOSTNAMES, false);

   snprintf (found,
             sizeof found,
             "tls %d tlsCAFile %s tlsAllowInvalidHostnames %d",
             (int) mongoc_uri_get_tls (u),
             ca ? ca : "(none)",
             (int) hosts);
   return mongoc_uri_get_tls (u) && ca && strcmp (ca, "/etc/ssl/ca.pem") == 0 && hosts ? NULL
                                                                                       : found;
}

static const char *
tls_from_deprecated_ssl (const mongoc_uri_t *u)
{
   snprintf (found, sizeof found, "tls %d", (int) mongoc_uri_get_tls (u));
   return mongoc_uri_get_tls (u) ? NULL : found;
}

static const char *
auth_scram_256_on_admin (const mongoc_uri_t *u)
{
   const char *m = mongoc_uri_get_auth_mechanism (u);
   const char *s = mongoc_uri_get_auth_source (u);

   snprintf (found, sizeof found, "authMechanism %s authSource %s", m ? m : "-", s ? s : "-");
   return m && s && strcmp (m, "SCRAM-SHA-256") == 0 && strcmp (s, "admin") == 0 ? NULL : found;
}

static const char *
monitoring_options (const mongoc_uri_t *u)
{
   int32_t level = mongoc_uri_get_option_as_int32 (u, MONGOC_URI_ZLIBCOMPRESSIONLEVEL, -1);
   int32_t hb = mongoc_uri_get_option_as_int32 (u, MONGOC_URI_HEARTBEATFREQUENCYMS, -1);
   bool direct = mongoc_uri_get_option_as_bool (u, MONGOC_URI_DIRECTCONNECTION, false);

   snprintf (found,
             sizeof found,
             "zlibCompressionLevel %d heartbeatFrequencyMS %d directConnection %d",
             (int) level,
             (int) hb,
             (int) direct);
   return level == 5 && hb == 1000 && direct ? NULL : found;
}

static const char *
retry_writes_off (const mongoc_uri_t *u)
{
   bool rw = mongoc_uri_get_option_as_bool (u, MONGOC_URI_RETRYWRITES, true);
   snprintf (found, sizeof found, "retryWrites %d", (int) rw);
   return rw ? found : NULL;
}

/* Options as written in a URI's query, with the effect they must have.
 * The user of the URI is there for the auth options. */
static const struct {
   const char *options;
   mh_effect_fn effect;
} option_cases[] = {
   {"w=majority", w_majority},
   {"w=2", w_two},
   {"journal=true", journal_on},
   {"wTimeoutMS=500", wtimeout_500},
   {"readPreference=primaryPreferred", primary_preferred},
   {"readPreference=secondary&readPreferenceTags=dc:ny,rack:1&readPreferenceTags=",
    secondary_with_two_tag_sets},
   {"readPreference=secondaryPreferred&maxStalenessSeconds=120", max_staleness_120},
   {"readConcernLevel=majority", read_concern_majority},
   {"compressors=zlib,zstd", compressors_zlib_zstd},
   {"appName=my%20app", app_name_with_space},
   {"tls=true&tlsCAFile=%2Fetc%2Fssl%2Fca.pem&tlsAllowInvalidHostnames=true", tls_with_ca_file},
   {"ssl=true", tls_from_deprecated_ssl},
   {"authMechanism=SCRAM-SHA-256&authSource=admin", auth_scram_256_on_admin},
   {"zlibCompressionLevel=5&heartbeatFrequencyMS=1000&directConnection=true", monitoring_options},
   {"retryWrites=false", retry_writes_off},
};
#define N_OPTION_CASES ((int) (sizeof option_cases / sizeof *option_cases))

#define BASE_URI "mongodb://app@h/db"

/* The loop index picks the case: the option in the URI, then the same
 * text as connection_options, both show the effect; a URI without it
 * does not (so the check can tell). */
START_TEST (uri_option_works_the_same_in_connection_options_as_in_the_uri)
{
   const char *opts = option_cases[_i].options;
   mh_effect_fn effect = option_cases[_i].effect;
   char uri[512];
   mongo_helper_config_t *c;
   const char *miss;

   c = load_ok ("/dev/null", BASE_URI);
   ck_assert_msg (effect (mongo_helper_config_mongoc_uri (c)) != NULL,
                  "%s: the plain URI already shows the effect",
                  opts);
   mongo_helper_config_destroy (c);

   snprintf (uri, sizeof uri, BASE_URI "?%s", opts);
   c = load_ok ("/dev/null", uri);
   miss = effect (mongo_helper_config_mongoc_uri (c));
   ck_assert_msg (miss == NULL, "%s in the URI: found %s", opts, miss);
   mongo_helper_config_destroy (c);

   c = load_ok (ini_with_options (BASE_URI, opts), NULL);
   miss = effect (mongo_helper_config_mongoc_uri (c));
   ck_assert_msg (miss == NULL, "%s in connection_options: found %s", opts, miss);
   mongo_helper_config_destroy (c);
}
END_TEST

/* A URI that already has a query, or none at all, or ends with '&'. */
START_TEST (connection_options_join_any_shape_of_uri)
{
   static const char *uris[] = {"mongodb://h/db?appName=x",
                                "mongodb://h/db?appName=x&",
                                "mongodb://h/db?",
                                "mongodb://h/db",
                                "mongodb://h1:1,h2:2/db?replicaSet=rs0"};
   for (size_t i = 0; i < sizeof uris / sizeof *uris; i++) {
      mongo_helper_config_t *c = load_ok (ini_with_options (uris[i], "w=majority"), NULL);
      const char *miss = w_majority (mongo_helper_config_mongoc_uri (c));

      ck_assert_msg (miss == NULL, "w=majority after %s: found %s", uris[i], miss);
      mongo_helper_config_destroy (c);
   }
   /* Without a path the URI gets one; the database then comes from MONGO_DB. */
   setenv ("MONGO_DB", "envdb", 1);
   {
      mongo_helper_config_t *c = load_ok (ini_with_options ("mongodb://h", "w=majority"), NULL);
      ck_assert_ptr_null (w_majority (mongo_helper_config_mongoc_uri (c)));
      ck_assert_str_eq (mongo_helper_config_database (c), "envdb");
      mongo_helper_config_destroy (c);
   }
}
END_TEST

/* The working directory when the suite was made (the source tree under
 * make check), before the fixture moves to /tmp. */
static char source_dir[512];

START_TEST (sample_ini_connection_options_example_works_once_uncommented)
{
   char path[600], text[8192], *line;
   size_t len;
   FILE *f;
   mongo_helper_config_t *c;
   const mongoc_uri_t *u;

   snprintf (path, sizeof path, "%s/conf/mongo_helper.ini", source_dir);
   f = fopen (path, "r");
   ck_assert_msg (f, "cannot open %s: run the tests from the source tree", path);
   len = fread (text, 1, sizeof text - 1, f);
   fclose (f);
   text[len] = '\0';
   line = strstr (text, "; connection_options = ");
   ck_assert_msg (line, "the sample INI has no commented connection_options example");
   line[0] = ' '; /* uncomment it */
   c = load_ok (mh_test_write_ini (text), NULL);
   u = mongo_helper_config_mongoc_uri (c);
   ck_assert_ptr_null (w_majority (u));
   ck_assert_ptr_null (primary_preferred (u));
   mongo_helper_config_destroy (c);
}
END_TEST

/* ---- precedence and errors -------------------------------------------- */

START_TEST (uri_wins_over_connection_options_for_every_kind_of_option)
{
   mongo_helper_config_t *c =
      load_ok (ini_with_options ("mongodb://app@h/db?w=1&readConcernLevel=local&compressors=zlib&"
                                 "readPreference=nearest&authSource=users",
                                 "w=majority&readConcernLevel=majority&compressors=zstd&"
                                 "readPreference=primaryPreferred&authSource=admin"),
               NULL);
   const mongoc_uri_t *u = mongo_helper_config_mongoc_uri (c);

   ck_assert_int_eq (mongoc_write_concern_get_w (mongoc_uri_get_write_concern (u)), 1);
   ck_assert_str_eq (mongoc_read_concern_get_level (mongoc_uri_get_read_concern (u)), "local");
   ck_assert (bson_has_field (mongoc_uri_get_compressors (u), "zlib"));
   ck_assert (!bson_has_field (mongoc_uri_get_compressors (u), "zstd"));
   ck_assert_int_eq (mongoc_read_prefs_get_mode (mongoc_uri_get_read_prefs_t (u)),
                     MONGOC_READ_NEAREST);
   ck_assert_str_eq (mongoc_uri_get_auth_source (u), "users");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (per_setting_keys_apply_like_the_uri_option)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri = mongodb://h/db\napp_name = from ini\n"
                                        "retry_reads = off\nmax_idle_time_ms = 1234\n");
   mongo_helper_config_t *c;
   const mongoc_uri_t *u;

   setenv ("MONGO_RETRY_WRITES", "false", 1);
   c = load_ok (ini, NULL);
   u = mongo_helper_config_mongoc_uri (c);
   ck_assert_str_eq (mongoc_uri_get_appname (u), "from ini");
   ck_assert (!mongoc_uri_get_option_as_bool (u, MONGOC_URI_RETRYREADS, true));
   ck_assert (!mongoc_uri_get_option_as_bool (u, MONGOC_URI_RETRYWRITES, true));
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, MONGOC_URI_MAXIDLETIMEMS, 0), 1234);
   mongo_helper_config_destroy (c);

   /* An environment value is plain text (not percent-encoded). */
   setenv ("MONGO_APP_NAME", "my app%20x", 1);
   c = load_ok (ini, NULL);
   ck_assert_str_eq (mongoc_uri_get_appname (mongo_helper_config_mongoc_uri (c)), "my app%20x");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (unknown_connection_option_names_the_source_and_the_option)
{
   load_fails (ini_with_options ("mongodb://h/db", "w=1&wtimeout=5"), NULL, "'wtimeout'");
   ck_assert_ptr_nonnull (strstr (err.message, "[db] connection_options"));
}
END_TEST

START_TEST (conflicting_connection_option_is_blamed_with_its_source)
{
   load_fails (ini_with_options ("mongodb://h/db", "w=0&journal=true"),
               NULL,
               "[db] connection_options: the driver refused w='0'");
   ck_assert_ptr_nonnull (strstr (err.message, "Journal conflicts"));
   /* A conflict with the URI itself: primary has no staleness. */
   load_fails (
      ini_with_options ("mongodb://h/db?readPreference=primary", "maxStalenessSeconds=120"),
      NULL,
      "refused maxStalenessSeconds='120'");
   /* The same option in the URI fails as the URI's error. */
   load_fails (NULL, "mongodb://h/db?w=0&journal=true", "explicit URI argument");
}
END_TEST

START_TEST (unavailable_compressor_in_connection_options_is_an_error)
{
   load_fails (ini_with_options ("mongodb://h/db", "compressors=zlib,lz4"), NULL, "'lz4'");
   ck_assert_ptr_nonnull (strstr (err.message, "[db] connection_options"));
}
END_TEST

START_TEST (connection_option_given_twice_is_an_error)
{
   load_fails (ini_with_options ("mongodb://h/db", "w=1&W=2"), NULL, "twice");
   load_fails (ini_with_options ("mongodb://h/db", "ssl=true&tls=false"), NULL, "twice");
}
END_TEST

START_TEST (bad_percent_escape_in_connection_options_is_an_error)
{
   load_fails (ini_with_options ("mongodb://h/db", "appName=50%"), NULL, "bad escape");
   load_fails (ini_with_options ("mongodb://h/db", "appName=a%00b"), NULL, "bad escape");
}
END_TEST

START_TEST (refused_option_error_never_shows_a_credential)
{
   /* GSSAPI needs a user: the error blames authMechanism and must not
    * quote the session token next to it. */
   load_fails (ini_with_options ("mongodb://h/db",
                                 "authMechanismProperties=AWS_SESSION_TOKEN:s3cr3tTok&"
                                 "authMechanism=GSSAPI"),
               NULL,
               "authMechanism");
   ck_assert_msg (!strstr (err.message, "s3cr3tTok"), "credential in: %s", err.message);
}
END_TEST

START_TEST (uri_value_outside_a_settings_range_names_the_uri_source)
{
   setenv ("MONGO_URI", "mongodb://h/db?maxPoolSize=-1", 1);
   load_fails (NULL, NULL, "environment MONGO_URI: maxPoolSize=-1");
}
END_TEST

/* ---- the settings as mongo_helper_config_setting() lists them ------------ */

/* The setting called `name`, asserted present. */
static mongo_helper_setting_t
setting (const mongo_helper_config_t *c, const char *name)
{
   mongo_helper_setting_t st;

   memset (&st, 0, sizeof st);
   ck_assert_msg (
      mongo_helper_config_setting_find (c, name, &st, &err), "setting %s: %s", name, err.message);
   return st;
}

static void
assert_setting (const mongo_helper_config_t *c,
                const char *name,
                const char *value,
                mongo_helper_source_t source,
                const char *source_text_part)
{
   mongo_helper_setting_t st = setting (c, name);

   ck_assert_msg ((value == NULL && st.value == NULL) ||
                     (value && st.value && strcmp (value, st.value) == 0),
                  "%s: expected value %s, found %s",
                  name,
                  value ? value : "(none)",
                  st.value ? st.value : "(none)");
   ck_assert_msg (st.source == source,
                  "%s: expected source %s, found %s (%s)",
                  name,
                  mongo_helper_source_name (source),
                  mongo_helper_source_name (st.source),
                  st.source_text);
   ck_assert_msg (strstr (st.source_text, source_text_part),
                  "%s: expected '%s' in the source, found '%s'",
                  name,
                  source_text_part,
                  st.source_text);
   ck_assert (st.is_default == (source == MONGO_HELPER_SOURCE_DEFAULT));
}

START_TEST (every_table_setting_is_listed_with_its_default_when_nothing_sets_it)
{
   static const char *names[] = {"database",
                                 "max_pool_size",
                                 "min_pool_size",
                                 "max_idle_time_ms",
                                 "connect_timeout_ms",
                                 "server_selection_timeout_ms",
                                 "socket_timeout_ms",
                                 "wait_queue_timeout_ms",
                                 "retry_writes",
                                 "retry_reads",
                                 "app_name",
                                 "retry_attempts",
                                 "retry_base_ms",
                                 "retry_max_ms",
                                 "circuit_failure_threshold",
                                 "circuit_cooldown_ms",
                                 "max_result_bytes",
                                 "default_max_time_ms",
                                 "command_metrics",
                                 "session_keys",
                                 "session_key_file",
                                 "cache_keys",
                                 "cache_key_file"};
   mongo_helper_config_t *c = load_ok ("/dev/null", "mongodb://h/db");
   mongo_helper_setting_t st;

   ck_assert_uint_eq (mongo_helper_config_setting_count (c), sizeof names / sizeof *names);
   for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
      MH_ASSERT_OK (mongo_helper_config_setting (c, i, &st, &err), err);
      ck_assert_str_eq (st.name, names[i]);
      ck_assert (i == 0 || st.is_default);
   }
   assert_setting (c, "database", "db", MONGO_HELPER_SOURCE_URI, "explicit URI argument");
   assert_setting (c, "max_pool_size", "100", MONGO_HELPER_SOURCE_DEFAULT, "default (libmongoc)");
   assert_setting (
      c, "wait_queue_timeout_ms", "10000", MONGO_HELPER_SOURCE_DEFAULT, "default (mongo_helper)");
   assert_setting (c, "retry_writes", "true", MONGO_HELPER_SOURCE_DEFAULT, "libmongoc");
   assert_setting (c, "app_name", NULL, MONGO_HELPER_SOURCE_DEFAULT, "libmongoc");
   assert_setting (c, "retry_attempts", "3", MONGO_HELPER_SOURCE_DEFAULT, "mongo_helper");
   assert_setting (c, "max_result_bytes", "67108864", MONGO_HELPER_SOURCE_DEFAULT, "mongo_helper");
   assert_setting (c, "command_metrics", "false", MONGO_HELPER_SOURCE_DEFAULT, "mongo_helper");
   assert_setting (c, "default_max_time_ms", "0", MONGO_HELPER_SOURCE_DEFAULT, "mongo_helper");
   st = setting (c, "max_pool_size");
   ck_assert_str_eq (st.env, "MONGO_MAX_POOL_SIZE");
   ck_assert_str_eq (st.uri_option, "maxPoolSize");
   ck_assert_ptr_null (setting (c, "retry_attempts").uri_option);
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (each_setting_reports_the_source_that_won)
{
   const char *ini = mh_test_write_ini (
      "[db]\nmongo_uri = mongodb://h/?maxPoolSize=7&w=1\nconnect_timeout_ms = 1111\n"
      "retry_base_ms = 20\ndatabase = inidb\n"
      "connection_options = socketTimeoutMS=3333&readConcernLevel=majority&maxPoolSize=9\n");
   mongo_helper_config_t *c;

   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "4444", 1);
   setenv ("MONGO_RETRY_ATTEMPTS", "2", 1);
   c = load_ok (ini, NULL);
   assert_setting (c, "database", "inidb", MONGO_HELPER_SOURCE_INI, "[db] database");
   assert_setting (c, "max_pool_size", "7", MONGO_HELPER_SOURCE_URI, "URI from ");
   assert_setting (c,
                   "server_selection_timeout_ms",
                   "4444",
                   MONGO_HELPER_SOURCE_ENVIRONMENT,
                   "environment MONGO_SERVER_SELECTION_TIMEOUT_MS");
   assert_setting (
      c, "connect_timeout_ms", "1111", MONGO_HELPER_SOURCE_INI, "[db] connect_timeout_ms");
   assert_setting (c,
                   "socket_timeout_ms",
                   "3333",
                   MONGO_HELPER_SOURCE_CONNECTION_OPTIONS,
                   "[db] connection_options");
   assert_setting (c, "min_pool_size", "0", MONGO_HELPER_SOURCE_DEFAULT, "default");
   assert_setting (c,
                   "retry_attempts",
                   "2",
                   MONGO_HELPER_SOURCE_ENVIRONMENT,
                   "environment MONGO_RETRY_ATTEMPTS");
   assert_setting (c, "retry_base_ms", "20", MONGO_HELPER_SOURCE_INI, "[db] retry_base_ms");
   assert_setting (c, "retry_max_ms", "2000", MONGO_HELPER_SOURCE_DEFAULT, "mongo_helper");
   assert_setting (c, "w", "1", MONGO_HELPER_SOURCE_URI, "[db] mongo_uri");
   assert_setting (c,
                   "readConcernLevel",
                   "majority",
                   MONGO_HELPER_SOURCE_CONNECTION_OPTIONS,
                   "[db] connection_options");
   mongo_helper_config_destroy (c);

   /* The database from the environment. */
   setenv ("MONGO_DB", "envdb", 1);
   c = load_ok (ini, NULL);
   assert_setting (c, "database", "envdb", MONGO_HELPER_SOURCE_ENVIRONMENT, "MONGO_DB");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (settings_of_the_parts_uri_name_their_variables)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_HOST", "db1", 1);
   setenv ("MONGO_DB", "partsdb", 1);
   setenv ("MONGO_REPLICA_SET", "rs0", 1);
   c = load_ok (NULL, NULL);
   assert_setting (c, "replicaSet", "rs0", MONGO_HELPER_SOURCE_URI, "MONGO_HOST");
   assert_setting (c, "database", "partsdb", MONGO_HELPER_SOURCE_URI, "its path");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (credentials_are_never_a_setting_value_nor_in_a_shown_uri)
{
   const char *ini = mh_test_write_ini (
      "[db]\nmongo_uri = mongodb://app:Pw0rdSecret@h/db?tlsCertificateKeyFilePassword=KeyPw1\n"
      "connection_options = authMechanismProperties=AWS_SESSION_TOKEN:T0ken2\n");
   static const char *secrets[] = {"Pw0rdSecret", "KeyPw1", "T0ken2"};
   mongo_helper_config_t *c = load_ok (ini, NULL);
   mongo_helper_setting_t st;

   for (size_t i = 0; i < mongo_helper_config_setting_count (c); i++) {
      MH_ASSERT_OK (mongo_helper_config_setting (c, i, &st, &err), err);
      for (size_t k = 0; k < 3; k++) {
         ck_assert_msg (
            !st.value || !strstr (st.value, secrets[k]), "setting %s shows %s", st.name, st.value);
         ck_assert (!strstr (st.source_text, secrets[k]));
      }
   }
   assert_setting (c, "tlsCertificateKeyFilePassword", "****", MONGO_HELPER_SOURCE_URI, "URI");
   /* The token is hidden, the property's name stays for the operator. */
   assert_setting (c,
                   "authMechanismProperties",
                   "AWS_SESSION_TOKEN:****",
                   MONGO_HELPER_SOURCE_CONNECTION_OPTIONS,
                   "[db]");
   for (size_t k = 0; k < 3; k++) {
      ck_assert_msg (!strstr (mongo_helper_config_uri_redacted (c), secrets[k]),
                     "%s",
                     mongo_helper_config_uri_redacted (c));
      ck_assert_msg (!strstr (mongo_helper_config_effective_uri_redacted (c), secrets[k]),
                     "%s",
                     mongo_helper_config_effective_uri_redacted (c));
   }
   /* ... while libmongoc still gets them. */
   ck_assert_str_eq (mongoc_uri_get_password (mongo_helper_config_mongoc_uri (c)), "Pw0rdSecret");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (effective_uri_shows_every_applied_option)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri = mongodb://u:pw@h/db?appName=a\n"
                                        "connection_options = w=majority\n");
   mongo_helper_config_t *c;
   const char *eff;

   setenv ("MONGO_MAX_POOL_SIZE", "12", 1);
   c = load_ok (ini, NULL);
   eff = mongo_helper_config_effective_uri_redacted (c);
   ck_assert_str_eq (eff,
                     "mongodb://u:****@h/db?appName=a&maxPoolSize=12&waitQueueTimeoutMS=10000"
                     "&w=majority");
   /* The URI of the source stays as it was given. */
   ck_assert_str_eq (mongo_helper_config_uri_redacted (c), "mongodb://u:****@h/db?appName=a");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (setting_lookup_rejects_bad_arguments)
{
   mongo_helper_config_t *c = load_ok ("/dev/null", "mongodb://h/db");
   mongo_helper_setting_t st;
   size_t n = mongo_helper_config_setting_count (c);

   ck_assert (!mongo_helper_config_setting (c, n, &st, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_config_setting (NULL, 0, &st, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_config_setting (c, 0, NULL, &err));
   ck_assert (!mongo_helper_config_setting_find (c, "no_such_setting", &st, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert (!mongo_helper_config_setting_find (c, NULL, &st, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   /* By environment variable or URI option, any case for the option. */
   ck_assert_str_eq (setting (c, "MONGO_SOCKET_TIMEOUT_MS").name, "socket_timeout_ms");
   ck_assert_str_eq (setting (c, "SOCKETTIMEOUTMS").name, "socket_timeout_ms");
   ck_assert_uint_eq (mongo_helper_config_setting_count (NULL), 0);
   ck_assert_ptr_null (mongo_helper_config_effective_uri_redacted (NULL));
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (source_names_are_stable)
{
   ck_assert_str_eq (mongo_helper_source_name (MONGO_HELPER_SOURCE_DEFAULT), "default");
   ck_assert_str_eq (mongo_helper_source_name (MONGO_HELPER_SOURCE_URI), "uri");
   ck_assert_str_eq (mongo_helper_source_name (MONGO_HELPER_SOURCE_ENVIRONMENT), "environment");
   ck_assert_str_eq (mongo_helper_source_name (MONGO_HELPER_SOURCE_INI), "ini");
   ck_assert_str_eq (mongo_helper_source_name (MONGO_HELPER_SOURCE_CONNECTION_OPTIONS),
                     "connection_options");
   ck_assert_str_eq (mongo_helper_source_name ((mongo_helper_source_t) 99), "unknown");
}
END_TEST

Suite *
config_settings_suite (void)
{
   Suite *s = suite_create ("config_settings");
   TCase *tc = tcase_create ("core");

   if (!getcwd (source_dir, sizeof source_dir)) {
      source_dir[0] = '\0';
   }

   tcase_add_checked_fixture (tc, setup, NULL);
   tcase_add_loop_test (
      tc, uri_option_works_the_same_in_connection_options_as_in_the_uri, 0, N_OPTION_CASES);
   tcase_add_test (tc, connection_options_join_any_shape_of_uri);
   tcase_add_test (tc, sample_ini_connection_options_example_works_once_uncommented);
   tcase_add_test (tc, uri_wins_over_connection_options_for_every_kind_of_option);
   tcase_add_test (tc, per_setting_keys_apply_like_the_uri_option);
   tcase_add_test (tc, unknown_connection_option_names_the_source_and_the_option);
   tcase_add_test (tc, conflicting_connection_option_is_blamed_with_its_source);
   tcase_add_test (tc, unavailable_compressor_in_connection_options_is_an_error);
   tcase_add_test (tc, connection_option_given_twice_is_an_error);
   tcase_add_test (tc, bad_percent_escape_in_connection_options_is_an_error);
   tcase_add_test (tc, refused_option_error_never_shows_a_credential);
   tcase_add_test (tc, uri_value_outside_a_settings_range_names_the_uri_source);
   tcase_add_test (tc, every_table_setting_is_listed_with_its_default_when_nothing_sets_it);
   tcase_add_test (tc, each_setting_reports_the_source_that_won);
   tcase_add_test (tc, settings_of_the_parts_uri_name_their_variables);
   tcase_add_test (tc, credentials_are_never_a_setting_value_nor_in_a_shown_uri);
   tcase_add_test (tc, effective_uri_shows_every_applied_option);
   tcase_add_test (tc, setting_lookup_rejects_bad_arguments);
   tcase_add_test (tc, source_names_are_stable);
   suite_add_tcase (s, tc);
   return s;
}
