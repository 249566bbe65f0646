/* src/config.c: URI precedence, INI errors, settings, the redacted URI.
 * No server needed: mongo_helper_config_new() never connects.  Each test
 * starts with no MONGO_* variable and in a directory without a
 * conf/mongo_helper.ini (mh_test_bare_setup), so only what it sets is
 * seen. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

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
   ck_assert_msg (c == NULL, "expected a configuration error");
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_msg (
      strstr (err.message, needle), "expected '%s' in the message, got: %s", needle, err.message);
}

/* ---- precedence, without an INI file -------------------------------- */

START_TEST (default_uri_without_database_is_a_config_error_saying_how)
{
   load_fails (NULL, NULL, "no default database");
   ck_assert_ptr_nonnull (strstr (err.message, "MONGO_DB"));
}
END_TEST

START_TEST (default_uri_is_localhost_with_mongo_db_as_database)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_DB", "appdb", 1);
   c = load_ok (NULL, NULL);
   ck_assert_str_eq (mongo_helper_config_uri (c), "mongodb://localhost:27017/");
   ck_assert_str_eq (mongo_helper_config_database (c), "appdb");
   ck_assert_ptr_nonnull (strstr (mongo_helper_config_source (c), "default"));
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (mongo_cache_uri_wins_over_mongo_uri_and_parts)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_CACHE_URI", "mongodb://cache:1/cachedb", 1);
   setenv ("MONGO_URI", "mongodb://plain:2/plaindb", 1);
   setenv ("MONGO_HOST", "parts", 1);
   c = load_ok (NULL, NULL);
   ck_assert_str_eq (mongo_helper_config_uri (c), "mongodb://cache:1/cachedb");
   ck_assert_str_eq (mongo_helper_config_database (c), "cachedb");
   ck_assert_str_eq (mongo_helper_config_source (c), "environment MONGO_CACHE_URI");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (mongo_uri_wins_over_parts)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_URI", "mongodb://plain:2/plaindb", 1);
   setenv ("MONGO_HOST", "parts", 1);
   c = load_ok (NULL, NULL);
   ck_assert_str_eq (mongo_helper_config_source (c), "environment MONGO_URI");
   ck_assert_str_eq (mongo_helper_config_database (c), "plaindb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (parts_build_a_uri_with_every_option)
{
   mongo_helper_config_t *c;
   const mongoc_uri_t *u;

   setenv ("MONGO_HOST", "db1,db2:27018", 1);
   setenv ("MONGO_PORT", "27999", 1);
   setenv ("MONGO_DB", "partsdb", 1);
   setenv ("MONGO_USERNAME", "app", 1);
   setenv ("MONGO_PASSWORD", "pw", 1);
   setenv ("MONGO_AUTH_SOURCE", "admin", 1);
   setenv ("MONGO_REPLICA_SET", "rs0", 1);
   setenv ("MONGO_USE_SSL", "true", 1);
   setenv ("MONGO_SSL_CA_CERTS", "/etc/ssl/ca.pem", 1);
   c = load_ok (NULL, NULL);
   u = mongo_helper_config_mongoc_uri (c);
   ck_assert_str_eq (mongo_helper_config_uri (c),
                     "mongodb://app:pw@db1:27999,db2:27018/partsdb?authSource="
                     "admin&replicaSet=rs0&tls=true&tlsCAFile=%2Fetc%2Fssl%2Fca.pem");
   ck_assert_str_eq (mongoc_uri_get_replica_set (u), "rs0");
   ck_assert_str_eq (mongoc_uri_get_auth_source (u), "admin");
   ck_assert (mongoc_uri_get_tls (u));
   ck_assert_str_eq (mongo_helper_config_database (c), "partsdb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (parts_percent_encode_credentials_with_reserved_characters)
{
   mongo_helper_config_t *c;
   const mongoc_uri_t *u;

   setenv ("MONGO_HOST", "localhost", 1);
   setenv ("MONGO_DB", "db", 1);
   setenv ("MONGO_USERNAME", "us@r:x", 1);
   setenv ("MONGO_PASSWORD", "p@ss:w/rd%41?", 1);
   c = load_ok (NULL, NULL);
   u = mongo_helper_config_mongoc_uri (c);
   ck_assert_str_eq (mongoc_uri_get_username (u), "us@r:x");
   ck_assert_str_eq (mongoc_uri_get_password (u), "p@ss:w/rd%41?");
   ck_assert_ptr_null (strstr (mongo_helper_config_uri_redacted (c), "p%40ss"));
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (bad_port_names_the_variable)
{
   setenv ("MONGO_HOST", "h", 1);
   setenv ("MONGO_PORT", "70000", 1);
   load_fails (NULL, NULL, "MONGO_PORT");
}
END_TEST

START_TEST (password_without_username_is_an_error)
{
   setenv ("MONGO_PASSWORD", "secret-pw", 1);
   load_fails (NULL, NULL, "MONGO_USERNAME");
   ck_assert_ptr_null (strstr (err.message, "secret-pw"));
}
END_TEST

START_TEST (empty_mongo_cache_uri_is_reported_not_skipped)
{
   setenv ("MONGO_CACHE_URI", "", 1);
   setenv ("MONGO_URI", "mongodb://x/y", 1);
   load_fails (NULL, NULL, "MONGO_CACHE_URI is empty");
}
END_TEST

START_TEST (explicit_uri_argument_wins_over_environment)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_CACHE_URI", "mongodb://cache/cachedb", 1);
   c = load_ok (NULL, "mongodb://explicit/expdb");
   ck_assert_str_eq (mongo_helper_config_database (c), "expdb");
   ck_assert_str_eq (mongo_helper_config_source (c), "explicit URI argument");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (invalid_uri_names_its_source_and_hides_the_password)
{
   setenv ("MONGO_URI", "mongodb://u:topsecret@/db?", 1);
   load_fails (NULL, NULL, "environment MONGO_URI");
   ck_assert_ptr_null (strstr (err.message, "topsecret"));
}
END_TEST

/* ---- precedence with an INI file ------------------------------------ */

START_TEST (unquoted_ini_value_holding_semicolon_or_hash_is_refused_with_advice_to_quote)
{
   /* iniparser would keep "mongodb://app:pa" and "mongodb://app:pa" and a
    * cut password may still parse: refused instead, with the remedy. */
   const char *cut[] = {"[db]\nmongo_uri = mongodb://app:pa;ss@h/db\n",
                        "[db]\nmongo_uri = mongodb://app:pa#ss@h/db\n",
                        "[db]\nmongo_uri = \"mongodb://h/db\"\nconnection_options = appName=a;b\n"};

   for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
      load_fails (mh_test_write_ini (cut[i]), NULL, "put the value in double quotes");
      ck_assert_msg (!strstr (err.message, "ss@"), "%s", err.message);
   }
   {
      mongo_helper_config_t *c = mongo_helper_config_new (
         mh_test_write_ini ("[db]\nmongo_uri = \"mongodb://app:pa;ss#x@h/db\"\n"), NULL, &err);
      MH_ASSERT_OK (c != NULL, err);
      ck_assert_str_eq (mongo_helper_config_uri (c), "mongodb://app:pa;ss#x@h/db");
      mongo_helper_config_destroy (c);
   }
}
END_TEST

START_TEST (ini_uri_wins_over_mongo_uri_but_not_mongo_cache_uri)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri = mongodb://ini:3/inidb\n");
   mongo_helper_config_t *c;

   setenv ("MONGO_URI", "mongodb://plain/plaindb", 1);
   c = load_ok (ini, NULL);
   ck_assert_str_eq (mongo_helper_config_database (c), "inidb");
   ck_assert_ptr_nonnull (strstr (mongo_helper_config_source (c), "[db] mongo_uri"));
   mongo_helper_config_destroy (c);

   setenv ("MONGO_CACHE_URI", "mongodb://cache/cachedb", 1);
   c = load_ok (ini, NULL);
   ck_assert_str_eq (mongo_helper_config_database (c), "cachedb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (ini_file_is_found_through_mongo_helper_config)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri = mongodb://ini/envfiledb\n");
   mongo_helper_config_t *c;

   setenv ("MONGO_HELPER_CONFIG", ini, 1);
   c = load_ok (NULL, NULL);
   ck_assert_str_eq (mongo_helper_config_database (c), "envfiledb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (default_ini_file_is_read_from_conf_directory)
{
   char dir[] = "/tmp/mh_conf_XXXXXX";
   FILE *f;
   mongo_helper_config_t *c;

   ck_assert_ptr_nonnull (mkdtemp (dir));
   ck_assert_int_eq (chdir (dir), 0);
   ck_assert_int_eq (mkdir ("conf", 0755), 0);
   f = fopen ("conf/mongo_helper.ini", "w");
   fputs ("[db]\nmongo_uri = mongodb://h/defaultfiledb\n", f);
   fclose (f);
   c = load_ok (NULL, NULL);
   ck_assert_str_eq (mongo_helper_config_database (c), "defaultfiledb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (missing_default_ini_file_is_not_an_error)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_URI", "mongodb://h/nofiledb", 1);
   c = load_ok (NULL, NULL);
   ck_assert_str_eq (mongo_helper_config_database (c), "nofiledb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (missing_named_ini_file_is_an_error_naming_the_file)
{
   load_fails ("/nonexistent/mh.ini", NULL, "/nonexistent/mh.ini");
   setenv ("MONGO_HELPER_CONFIG", "/nonexistent/env.ini", 1);
   load_fails (NULL, NULL, "MONGO_HELPER_CONFIG");
}
END_TEST

START_TEST (ini_syntax_error_names_the_file_and_line)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri = mongodb://h/db\nthis line is wrong\n");
   load_fails (ini, NULL, "cannot parse");
   ck_assert_ptr_nonnull (strstr (err.message, ini));
   ck_assert_ptr_nonnull (strstr (err.message, "(3)"));
}
END_TEST

START_TEST (ini_empty_mongo_uri_is_an_error)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri =\n");
   load_fails (ini, NULL, "[db] mongo_uri is empty");
}
END_TEST

START_TEST (ini_database_is_used_when_uri_has_none)
{
   const char *ini = mh_test_write_ini ("[db]\nmongo_uri = mongodb://h/\ndatabase = fromini\n");
   mongo_helper_config_t *c = load_ok (ini, NULL);
   ck_assert_str_eq (mongo_helper_config_database (c), "fromini");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (uri_path_database_wins_over_mongo_db)
{
   mongo_helper_config_t *c;

   setenv ("MONGO_DB", "envdb", 1);
   c = load_ok (NULL, "mongodb://h/pathdb");
   ck_assert_str_eq (mongo_helper_config_database (c), "pathdb");
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (invalid_database_name_is_rejected)
{
   setenv ("MONGO_DB", "bad.name", 1);
   load_fails (NULL, "mongodb://h/", "MONGO_DB");
}
END_TEST

/* ---- settings ------------------------------------------------------- */

START_TEST (settings_precedence_uri_then_env_then_ini_then_options)
{
   const char *ini = mh_test_write_ini (
      "[db]\nmongo_uri = mongodb://h/db?maxPoolSize=7\n"
      "max_pool_size = 50\nconnect_timeout_ms = 1111\n"
      "server_selection_timeout_ms = 2222\nretry_writes = false\n"
      "connection_options = socketTimeoutMS=3333&connectTimeoutMS=9&appName=fromopts\n");
   mongo_helper_config_t *c;
   const mongoc_uri_t *u;

   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "4444", 1);
   c = load_ok (ini, NULL);
   u = mongo_helper_config_mongoc_uri (c);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "maxPoolSize", 0), 7);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "serverSelectionTimeoutMS", 0), 4444);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "connectTimeoutMS", 0), 1111);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "socketTimeoutMS", 0), 3333);
   ck_assert (!mongoc_uri_get_option_as_bool (u, "retryWrites", true));
   ck_assert_str_eq (mongoc_uri_get_appname (u), "fromopts");
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "waitQueueTimeoutMS", 0),
                     MONGO_HELPER_DEFAULT_POOL_WAIT_MS);
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (env_pool_settings_apply)
{
   mongo_helper_config_t *c;
   const mongoc_uri_t *u;

   setenv ("MONGO_MAX_POOL_SIZE", "12", 1);
   setenv ("MONGO_MIN_POOL_SIZE", "2", 1);
   setenv ("MONGO_MAX_IDLE_TIME_MS", "30000", 1);
   setenv ("MONGO_CONNECT_TIMEOUT_MS", "2000", 1);
   setenv ("MONGO_WAIT_QUEUE_TIMEOUT_MS", "250", 1);
   c = load_ok (NULL, "mongodb://h/db");
   u = mongo_helper_config_mongoc_uri (c);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "maxPoolSize", 0), 12);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "minPoolSize", 0), 2);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "maxIdleTimeMS", 0), 30000);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "connectTimeoutMS", 0), 2000);
   ck_assert_int_eq (mongoc_uri_get_option_as_int32 (u, "waitQueueTimeoutMS", 0), 250);
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (non_numeric_setting_names_variable)
{
   setenv ("MONGO_MAX_POOL_SIZE", "lots", 1);
   load_fails (NULL, "mongodb://h/db", "MONGO_MAX_POOL_SIZE");
}
END_TEST

START_TEST (non_numeric_ini_setting_names_file_and_key)
{
   const char *ini =
      mh_test_write_ini ("[db]\nmongo_uri = mongodb://h/db\nconnect_timeout_ms = soon\n");
   load_fails (ini, NULL, "[db] connect_timeout_ms");
}
END_TEST

START_TEST (zero_pool_wait_is_refused_because_it_means_forever)
{
   setenv ("MONGO_WAIT_QUEUE_TIMEOUT_MS", "0", 1);
   load_fails (NULL, "mongodb://h/db", "forever");
   unsetenv ("MONGO_WAIT_QUEUE_TIMEOUT_MS");
   load_fails (NULL, "mongodb://h/db?waitQueueTimeoutMS=0", "forever");
}
END_TEST

START_TEST (unknown_connection_option_is_an_error)
{
   const char *ini =
      mh_test_write_ini ("[db]\nmongo_uri = mongodb://h/db\nconnection_options = noSuchOption=1\n");
   load_fails (ini, NULL, "noSuchOption");
}
END_TEST

/* ---- redaction ----------------------------------------------------- */

START_TEST (redacted_uri_of_config_has_no_password)
{
   mongo_helper_config_t *c = load_ok (NULL, "mongodb://app:hunter22@h/db");
   ck_assert_str_eq (mongo_helper_config_uri_redacted (c), "mongodb://app:****@h/db");
   mongo_helper_config_destroy (c);
}
END_TEST

Suite *
config_suite (void)
{
   Suite *s = suite_create ("config");
   TCase *tc = tcase_create ("core");

   tcase_add_checked_fixture (tc, mh_test_bare_setup, mh_test_teardown);
   tcase_add_test (tc, default_uri_without_database_is_a_config_error_saying_how);
   tcase_add_test (tc,
                   unquoted_ini_value_holding_semicolon_or_hash_is_refused_with_advice_to_quote);
   tcase_add_test (tc, default_uri_is_localhost_with_mongo_db_as_database);
   tcase_add_test (tc, mongo_cache_uri_wins_over_mongo_uri_and_parts);
   tcase_add_test (tc, mongo_uri_wins_over_parts);
   tcase_add_test (tc, parts_build_a_uri_with_every_option);
   tcase_add_test (tc, parts_percent_encode_credentials_with_reserved_characters);
   tcase_add_test (tc, bad_port_names_the_variable);
   tcase_add_test (tc, password_without_username_is_an_error);
   tcase_add_test (tc, empty_mongo_cache_uri_is_reported_not_skipped);
   tcase_add_test (tc, explicit_uri_argument_wins_over_environment);
   tcase_add_test (tc, invalid_uri_names_its_source_and_hides_the_password);
   tcase_add_test (tc, ini_uri_wins_over_mongo_uri_but_not_mongo_cache_uri);
   tcase_add_test (tc, ini_file_is_found_through_mongo_helper_config);
   tcase_add_test (tc, default_ini_file_is_read_from_conf_directory);
   tcase_add_test (tc, missing_default_ini_file_is_not_an_error);
   tcase_add_test (tc, missing_named_ini_file_is_an_error_naming_the_file);
   tcase_add_test (tc, ini_syntax_error_names_the_file_and_line);
   tcase_add_test (tc, ini_empty_mongo_uri_is_an_error);
   tcase_add_test (tc, ini_database_is_used_when_uri_has_none);
   tcase_add_test (tc, uri_path_database_wins_over_mongo_db);
   tcase_add_test (tc, invalid_database_name_is_rejected);
   tcase_add_test (tc, settings_precedence_uri_then_env_then_ini_then_options);
   tcase_add_test (tc, env_pool_settings_apply);
   tcase_add_test (tc, non_numeric_setting_names_variable);
   tcase_add_test (tc, non_numeric_ini_setting_names_file_and_key);
   tcase_add_test (tc, zero_pool_wait_is_refused_because_it_means_forever);
   tcase_add_test (tc, unknown_connection_option_is_an_error);
   tcase_add_test (tc, redacted_uri_of_config_has_no_password);
   suite_add_tcase (s, tc);
   return s;
}
