/* Redaction: every leak found so far as a named regression test, and the
 * redactor's plain results.  The properties over random passwords are in
 * test_redact_random.c; the fixture both share (a log sink at DEBUG, a
 * clean environment) is in redact_fixture.h. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

#include "redact_fixture.h"

static void
assert_hidden (const char *where, const char *text, const char *secret)
{
   char a[2048], b[256];

   ck_assert_msg (!strstr (text, secret),
                  "expected %s without '%s', found it in: %s",
                  where,
                  shown (secret, b, sizeof b),
                  shown (text, a, sizeof a));
}

/* The configuration error for `uri` reached through `source`. */
typedef enum { SRC_EXPLICIT, SRC_CACHE_ENV, SRC_INI, SRC_MONGO_URI, SRC_COUNT } source_t;

static const char *const source_names[] = {"explicit URI",
                                           "MONGO_CACHE_URI",
                                           "INI mongo_uri",
                                           "MONGO_URI"};

static mongo_helper_config_t *
config_from (source_t source, const char *uri, char ini_quote)
{
   unsetenv ("MONGO_CACHE_URI");
   unsetenv ("MONGO_URI");
   switch (source) {
   case SRC_EXPLICIT:
      return mongo_helper_config_new (NULL, uri, &err);
   case SRC_CACHE_ENV:
      setenv ("MONGO_CACHE_URI", uri, 1);
      return mongo_helper_config_new (NULL, NULL, &err);
   case SRC_INI:
      return mongo_helper_config_new (write_ini_uri (uri, ini_quote), NULL, &err);
   case SRC_MONGO_URI:
   default:
      setenv ("MONGO_URI", uri, 1);
      return mongo_helper_config_new (NULL, NULL, &err);
   }
}

/* ---- regressions: each of these leaked through the old redactor ------- */

/* Characters libmongoc accepts unescaped in a password; the old redactor
 * ended the URI at the first ? # " ' or blank and printed the rest. */
static const char *const delimiters[] =
   {"?", "#", "\"", "'", " ", "\t", "!", "$", "&", "(", ")", "*", "+", ",", ";", "="};
#define N_DELIMITERS (sizeof delimiters / sizeof *delimiters)

static void
delimiter_uri (char *uri, size_t size, const char *delimiter, const char *tail, int port)
{
   snprintf (uri,
             size,
             "mongodb://alice:Ab%s%s@127.0.0.1:%d/mh_redact?serverSelectionTimeoutMS=200"
             "&connectTimeoutMS=200",
             delimiter,
             tail,
             port);
}

START_TEST (password_with_delimiters_is_hidden_in_config_uri_redacted)
{
   for (size_t i = 0; i < N_DELIMITERS; i++) {
      char uri[256];
      mongo_helper_config_t *c;

      delimiter_uri (uri, sizeof uri, delimiters[i], "SecretTail9", 27017);
      c = mongo_helper_config_new (NULL, uri, &err);
      MH_ASSERT_OK (c != NULL, err);
      assert_hidden (
         "mongo_helper_config_uri_redacted()", mongo_helper_config_uri_redacted (c), "SecretTail9");
      assert_shown ("mongo_helper_config_uri_redacted()",
                    mongo_helper_config_uri_redacted (c),
                    "mongodb://alice:****@127.0.0.1:27017/mh_redact");
      mongo_helper_config_destroy (c);
   }
}
END_TEST

START_TEST (password_with_delimiters_is_hidden_in_the_pool_created_log_line)
{
   for (size_t i = 0; i < N_DELIMITERS; i++) {
      char uri[256], *logged;

      delimiter_uri (uri, sizeof uri, delimiters[i], "SecretTail9", mh_test_free_port ());
      log_reset ();
      MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
      logged = log_copy ();
      assert_shown ("the log", logged, "pool created for mongodb://alice:****@");
      assert_hidden ("the log", logged, "SecretTail9");
      bson_free (logged);
      mongo_helper_shutdown ();
   }
}
END_TEST

START_TEST (password_with_delimiters_is_hidden_in_status_uri)
{
   for (size_t i = 0; i < N_DELIMITERS; i++) {
      char uri[256];
      mongo_helper_status_t st;

      delimiter_uri (uri, sizeof uri, delimiters[i], "SecretTail9", mh_test_free_port ());
      MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
      mongo_helper_status (&st);
      ck_assert (st.initialized);
      assert_hidden ("mongo_helper_status().uri", st.uri, "SecretTail9");
      assert_shown ("mongo_helper_status().uri", st.uri, "alice:****@127.0.0.1");
      mongo_helper_shutdown ();
   }
}
END_TEST

START_TEST (password_with_delimiters_is_hidden_in_ping_and_server_info_errors)
{
   for (size_t i = 0; i < N_DELIMITERS; i++) {
      char uri[256];
      mongo_helper_server_info_t info;

      delimiter_uri (uri, sizeof uri, delimiters[i], "SecretTail9", mh_test_free_port ());
      MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
      ck_assert (!mongo_helper_ping (200, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
      assert_shown ("the ping error", err.message, "ping to mongodb://alice:****@");
      assert_hidden ("the ping error", err.message, "SecretTail9");
      ck_assert (!mongo_helper_server_info (200, &info, &err));
      assert_hidden ("the server_info error", err.message, "SecretTail9");
      mongo_helper_shutdown ();
   }
}
END_TEST

/* libmongoc refuses '/' in a password; the old redactor ended the URI
 * there and printed the rest. */
START_TEST (password_with_slash_is_hidden_in_the_config_error)
{
   mongo_helper_config_t *c =
      mongo_helper_config_new (NULL, "mongodb://alice:pa/SecretTail9@127.0.0.1/mh_redact", &err);

   ck_assert_ptr_null (c);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   assert_hidden ("the configuration error", err.message, "SecretTail9");
   assert_shown ("the configuration error", err.message, "invalid MongoDB URI");
   assert_shown ("the configuration error", err.message, "alice");
}
END_TEST

/* libmongoc refuses ':' in a password and quotes the password in its own
 * message ("Password \"...\" must not have unescaped chars"). */
START_TEST (password_quoted_by_libmongoc_is_hidden_in_the_config_error)
{
   mongo_helper_config_t *c =
      mongo_helper_config_new (NULL, "mongodb://alice:Ab:SecretTail9@127.0.0.1/mh_redact", &err);
   char out[256];

   ck_assert_ptr_null (c);
   assert_hidden ("the configuration error", err.message, "SecretTail9");
   mongo_helper_redact (
      "Password \"Ab:SecretTail9\" must not have unescaped chars.", out, sizeof out);
   ck_assert_str_eq (out, "Password \"****\" must not have unescaped chars.");
}
END_TEST

/* iniparser reads an unquoted value only up to ';' or '#'. */
START_TEST (ini_quoted_password_with_semicolon_and_hash_resolves_to_the_whole_password)
{
   const char *uri = "mongodb://alice:Se;cr#et'9@127.0.0.1:27017/mh_redact";
   mongo_helper_config_t *c = mongo_helper_config_new (write_ini_uri (uri, '"'), NULL, &err);

   MH_ASSERT_OK (c != NULL, err);
   ck_assert_str_eq (mongo_helper_config_uri (c), uri);
   ck_assert_str_eq (mongoc_uri_get_password (mongo_helper_config_mongoc_uri (c)), "Se;cr#et'9");
   assert_hidden (
      "mongo_helper_config_uri_redacted()", mongo_helper_config_uri_redacted (c), "Se;");
   mongo_helper_config_destroy (c);

   /* Single quotes work too, for a password with a double quote. */
   uri = "mongodb://alice:Se;cr#et\"9@127.0.0.1:27017/mh_redact";
   c = mongo_helper_config_new (write_ini_uri (uri, '\''), NULL, &err);
   MH_ASSERT_OK (c != NULL, err);
   ck_assert_str_eq (mongo_helper_config_uri (c), uri);
   mongo_helper_config_destroy (c);
}
END_TEST

START_TEST (ini_unquoted_password_cut_at_semicolon_or_hash_never_shows_in_the_error)
{
   static const char *const uris[] = {
      "mongodb://alice:SecretHead9;tail@127.0.0.1:27017/mh_redact",
      "mongodb://alice:SecretHead9#tail@127.0.0.1:27017/mh_redact",
      "mongodb://alice:Secret Head9;tail@127.0.0.1:27017/mh_redact",
      "mongodb://alice:Secret'Head9#tail@127.0.0.1:27017/mh_redact"};

   for (size_t i = 0; i < sizeof uris / sizeof *uris; i++) {
      mongo_helper_config_t *c = mongo_helper_config_new (write_ini_uri (uris[i], 0), NULL, &err);
      char *logged = log_copy ();

      ck_assert_msg (c == NULL, "expected the cut URI to be refused: %s", uris[i]);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
      assert_shown ("the configuration error", err.message, "[db] mongo_uri");
      /* No part of the password: neither the head before the cut nor the
       * tail after it (4 characters or more of it). */
      assert_hidden ("the configuration error", err.message, "Secr");
      assert_hidden ("the configuration error", err.message, "Head");
      assert_hidden ("the configuration error", err.message, "tail");
      assert_hidden ("the log", logged, "Secr");
      assert_hidden ("the log", logged, "Head");
      bson_free (logged);
   }
}
END_TEST

START_TEST (aws_session_token_in_auth_mechanism_properties_is_hidden)
{
   static const char *const uris[] = {
      "mongodb://AKIDEXAMPLE:SecretKey9@127.0.0.1/mh_redact?authMechanism=MONGODB-AWS"
      "&authMechanismProperties=AWS_SESSION_TOKEN:TokenSecret9",
      "mongodb://AKIDEXAMPLE:SecretKey9@127.0.0.1/mh_redact?authMechanism=MONGODB-AWS"
      "&authMechanismProperties=AWS_SESSION_TOKEN%3ATokenSecret9&appName=x",
      "mongodb://127.0.0.1/mh_redact?authMechanismProperties=AWS_SESSION_TOKEN:Token Secret9"};

   for (size_t i = 0; i < sizeof uris / sizeof *uris; i++) {
      mongo_helper_config_t *c = mongo_helper_config_new (NULL, uris[i], &err);
      mongo_helper_status_t st;

      MH_ASSERT_OK (c != NULL, err);
      assert_hidden (
         "mongo_helper_config_uri_redacted()", mongo_helper_config_uri_redacted (c), "Secret9");
      assert_shown ("mongo_helper_config_uri_redacted()",
                    mongo_helper_config_uri_redacted (c),
                    "AWS_SESSION_TOKEN");
      mongo_helper_config_destroy (c);
      MH_ASSERT_OK (mongo_helper_init_uri (uris[i], &err), err);
      mongo_helper_status (&st);
      assert_hidden ("mongo_helper_status().uri", st.uri, "Secret9");
      mongo_helper_shutdown ();
   }
}
END_TEST

START_TEST (aws_session_token_written_with_equals_or_percent_encoded_is_hidden)
{
   static const char *const texts[] = {
      "AWS_SESSION_TOKEN=TokenSecret9",
      "env AWS_SESSION_TOKEN = TokenSecret9 set",
      "authMechanismProperties=AWS_SESSION_TOKEN%3aTokenSecret9",
      "authMechanismProperties%3DAWS_SESSION_TOKEN%3ATokenSecret9",
      "Unsupported value for \"authmechanismproperties\": \"AWS_SESSION_TOKEN:TokenSecret9\"",
      "{ \"AWS_SESSION_TOKEN\" : \"TokenSecret9\" }",
      "password=TokenSecret9&w=1",
      "pwd=TokenSecret9",
      "PASSWORD%3DTokenSecret9",
      "tlsCertificateKeyFilePassword=TokenSecret9"};

   for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
      char out[256];
      mongo_helper_redact (texts[i], out, sizeof out);
      assert_hidden ("the redacted text", out, "TokenSecret9");
      assert_shown ("the redacted text", out, "****");
   }
}
END_TEST

/* Mistyped schemes used to reach the configuration error unredacted. */
static void
mistyped_scheme_is_hidden_from_every_source (const char *uri)
{
   for (source_t s = 0; s < SRC_COUNT; s++) {
      mongo_helper_config_t *c = config_from (s, uri, 0);
      char where[96];

      snprintf (where, sizeof where, "the configuration error from %s", source_names[s]);
      ck_assert_msg (c == NULL, "expected %s to be refused from %s", uri, source_names[s]);
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
      assert_hidden (where, err.message, "S3cret");
      /* The user name stays: the operator needs it. */
      assert_shown (where, err.message, "alice");
   }
}

START_TEST (one_slash_scheme_password_is_hidden_from_every_source)
{
   mistyped_scheme_is_hidden_from_every_source ("mongodb:/alice:S3cret@host/db");
}
END_TEST

START_TEST (scheme_without_colon_password_is_hidden_from_every_source)
{
   mistyped_scheme_is_hidden_from_every_source ("mongodb//alice:S3cret@host/db");
}
END_TEST

START_TEST (schemeless_password_is_hidden_from_every_source)
{
   mistyped_scheme_is_hidden_from_every_source ("alice:S3cret@host/db");
}
END_TEST

/* Plain redaction results: the user name stays, nothing else of the
 * userinfo does, and over-redaction is preferred to a leak. */
START_TEST (redact_keeps_user_and_hosts_and_hides_to_the_last_at)
{
   static const char *const cases[][2] = {
      {"mongodb://alice:S3c?ret@h/db", "mongodb://alice:****@h/db"},
      {"mongodb://alice:a b'c\"d#e@h1,h2/db?x=1", "mongodb://alice:****@h1,h2/db?x=1"},
      {"mongodb:/alice:S3cret@host/db", "mongodb:/alice:****@host/db"},
      {"mongodb//alice:S3cret@host/db", "mongodb//alice:****@host/db"},
      {"alice:S3cret@host/db", "alice:****@host/db"},
      {"mongodb://alice:pa/ss@host/db", "mongodb://alice:****@host/db"},
      {"uri 'mongodb://alice:p@ss@h/db' ok", "uri 'mongodb://alice:****@h/db' ok"},
      {"mongodb://alice:S3c", "mongodb://alice:****"},
      {"mongodb://alice:S3c ret", "mongodb://alice:****"},
      {"mongodb%3A%2F%2Falice%3AS3cret%40host", "mongodb%3A%2F%2Falice%3A****%40host"},
      {"mongodb://onlyuser@h/db", "mongodb://onlyuser@h/db"},
      {"mongodb://h1:27017,[::1]:27018/db", "mongodb://h1:27017,[::1]:27018/db"},
      {"pool created for mongodb://localhost:27017 (database d)",
       "pool created for mongodb://localhost:27017 (database d)"},
      {"dup key: { email: \"a@example.com\" }", "dup key: { email: \"a@example.com\" }"},
      {"x:/S3cret@h", "x:****@h"},
      {"mongodb:/alice@host/db", "mongodb:****@host/db"},
   };

   for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      char out[256];
      mongo_helper_redact (cases[i][0], out, sizeof out);
      ck_assert_msg (strcmp (out, cases[i][1]) == 0,
                     "redacting '%s': expected '%s', found '%s'",
                     cases[i][0],
                     cases[i][1],
                     out);
   }
}
END_TEST

START_TEST (redact_hides_passwords_in_uris_and_key_values)
{
   char out[256];

   mongo_helper_redact ("connect mongodb://app:s3cr%40t@h1,h2/db failed", out, sizeof out);
   ck_assert_str_eq (out, "connect mongodb://app:****@h1,h2/db failed");
   mongo_helper_redact ("mongodb+srv://u:p@ss@x.net/?password=abc&w=1", out, sizeof out);
   ck_assert_str_eq (out, "mongodb+srv://u:****@x.net/?password=****&w=1");
   mongo_helper_redact ("mongodb://onlyuser@h/db", out, sizeof out);
   ck_assert_str_eq (out, "mongodb://onlyuser@h/db");
   mongo_helper_redact (NULL, out, sizeof out);
   ck_assert_str_eq (out, "");
   ck_assert_uint_eq (mongo_helper_redact ("mongodb://a:b@c", out, 8), 7);
}
END_TEST

START_TEST (redact_truncates_and_terminates)
{
   char out[8];

   ck_assert_uint_eq (mongo_helper_redact ("mongodb://a:b@c", out, sizeof out), 7);
   ck_assert_str_eq (out, "mongodb");
   ck_assert_uint_eq (mongo_helper_redact (NULL, out, sizeof out), 0);
   ck_assert_str_eq (out, "");
   ck_assert_uint_eq (mongo_helper_redact ("x", NULL, 0), 0);
}
END_TEST

Suite *
redact_suite (void)
{
   Suite *s = suite_create ("redact");
   TCase *reg = tcase_create ("regressions");

   tcase_add_checked_fixture (reg, setup, teardown);
   tcase_add_test (reg, password_with_delimiters_is_hidden_in_config_uri_redacted);
   tcase_add_test (reg, password_with_delimiters_is_hidden_in_the_pool_created_log_line);
   tcase_add_test (reg, password_with_delimiters_is_hidden_in_status_uri);
   tcase_add_test (reg, password_with_delimiters_is_hidden_in_ping_and_server_info_errors);
   tcase_add_test (reg, password_with_slash_is_hidden_in_the_config_error);
   tcase_add_test (reg, password_quoted_by_libmongoc_is_hidden_in_the_config_error);
   tcase_add_test (reg, ini_quoted_password_with_semicolon_and_hash_resolves_to_the_whole_password);
   tcase_add_test (reg, ini_unquoted_password_cut_at_semicolon_or_hash_never_shows_in_the_error);
   tcase_add_test (reg, aws_session_token_in_auth_mechanism_properties_is_hidden);
   tcase_add_test (reg, aws_session_token_written_with_equals_or_percent_encoded_is_hidden);
   tcase_add_test (reg, one_slash_scheme_password_is_hidden_from_every_source);
   tcase_add_test (reg, scheme_without_colon_password_is_hidden_from_every_source);
   tcase_add_test (reg, schemeless_password_is_hidden_from_every_source);
   tcase_add_test (reg, redact_keeps_user_and_hosts_and_hides_to_the_last_at);
   tcase_add_test (reg, redact_truncates_and_terminates);
   tcase_add_test (reg, redact_hides_passwords_in_uris_and_key_values);
   tcase_set_timeout (reg, 30);
   suite_add_tcase (s, reg);
   return s;
}
