/* Security: TLS against a test server with throwaway certificates,
 * credentials kept out of every output, query-injection checks and
 * ObjectId parsing. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- helpers ---------------------------------------------------------- */

/* The test's own server: TLS needs its own certificates and options
 * (stopped by mh_test_teardown). */
static mh_test_server_t server;

/* Throwaway PKI, made once per test case by the openssl command line. */
static char pki[64];

static void
pki_make (void)
{
   char cmd[4096];
   const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

   bson_strncpy (pki, "/tmp/mh_pki_XXXXXX", sizeof pki);
   ck_assert_ptr_nonnull (mkdtemp (pki));
   /* Each step's files are checked instead of its exit status: under
    * `make memcheck` valgrind traces openssl too and may change its exit
    * status for leaks of its own.  No `cd`: valgrind finds its
    * suppressions file relative to the working directory.  "@D" stands
    * for the directory, "@E" for the key options. */
   static const char *script =
      "{ openssl req -x509 @E -keyout @D/ca.key -out @D/ca.pem -days 2 -subj /CN=mh-test-ca;"
      " openssl req @E -keyout @D/server.key -out @D/server.csr -subj /CN=localhost;"
      " printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > @D/san.ext;"
      " openssl x509 -req -in @D/server.csr -CA @D/ca.pem -CAkey @D/ca.key"
      "   -CAserial @D/ca.srl -CAcreateserial -out @D/server.pem -days 2 -extfile @D/san.ext;"
      " openssl req @E -keyout @D/client.key -out @D/client.csr -subj /CN=mh-client;"
      " openssl x509 -req -in @D/client.csr -CA @D/ca.pem -CAkey @D/ca.key"
      "   -CAserial @D/ca.srl -CAcreateserial -out @D/client.crt -days 2;"
      " cat @D/client.crt @D/client.key > @D/client.pem;"
      " openssl req -x509 @E -keyout @D/other.key -out @D/other-ca.pem -days 2 -subj /CN=other-ca;"
      " } >/dev/null 2>&1";
   size_t n = 0;

   for (const char *p = script; *p && n + 80 < sizeof cmd; p++) {
      if (p[0] == '@' && (p[1] == 'D' || p[1] == 'E')) {
         n += (size_t) snprintf (cmd + n, sizeof cmd - n, "%s", p[1] == 'D' ? pki : ec);
         p++;
      } else {
         cmd[n++] = *p;
      }
   }
   cmd[n] = '\0';
   if (system (cmd) != 0) {
      /* judged by the files below */
   }
   {
      static const char *files[] = {
         "ca.pem", "server.pem", "server.key", "client.pem", "other-ca.pem"};
      for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
         char path[128];
         struct stat st;
         snprintf (path, sizeof path, "%s/%s", pki, files[i]);
         ck_assert_msg (stat (path, &st) == 0 && st.st_size > 100,
                        "openssl could not make the test certificate %s",
                        path);
      }
   }
}

static void
pki_remove (void)
{
   char cmd[128];

   if (pki[0]) {
      snprintf (cmd, sizeof cmd, "rm -rf '%s'", pki);
      if (system (cmd) != 0) {
         /* best effort */
      }
      pki[0] = '\0';
   }
}

static bool
ping (void)
{
   bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));
   bool ok = mongo_helper_command (cmd, NULL, &err);
   bson_destroy (cmd);
   return ok;
}

/* Nothing configured but what a test sets (not even a URI: tests build
 * theirs from parts), one attempt per call and no circuit breaker, so a
 * failure is the failure under test. */
static void
setup (void)
{
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   setenv ("MONGO_RETRY_ATTEMPTS", "1", 1);
   setenv ("MONGO_CIRCUIT_FAILURE_THRESHOLD", "0", 1);
}

/* Starts a TLS server and points the singleton at it with `opts`. */
static void
tls_init (const char *const *server_extra, const char *opts)
{
   char cert[128], key[128], uri[768];
   const char *args[8];
   int n = 0, port;

   snprintf (cert, sizeof cert, "%s/server.pem", pki);
   snprintf (key, sizeof key, "%s/server.key", pki);
   args[n++] = "--tls-cert";
   args[n++] = cert;
   args[n++] = "--tls-key";
   args[n++] = key;
   for (; server_extra && *server_extra && n < 7; server_extra++) {
      args[n++] = *server_extra;
   }
   args[n] = NULL;
   mh_test_server_start (&server, 0, args);
   port = server.port;
   snprintf (
      uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_sec?serverSelectionTimeoutMS=5000%s", port, opts);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
}

/* ---- TLS -------------------------------------------------------------- */

START_TEST (tls_with_the_right_ca_file_connects)
{
   char opts[256];

   snprintf (opts, sizeof opts, "&tls=true&tlsCAFile=%s/ca.pem", pki);
   tls_init (NULL, opts);
   MH_ASSERT_OK (ping (), err);
}
END_TEST

START_TEST (tls_verifies_certificates_by_default)
{
   /* No CA named: the system's store does not know the throwaway CA. */
   tls_init (NULL, "&tls=true");
   ck_assert (!ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
}
END_TEST

START_TEST (tls_with_the_wrong_ca_fails)
{
   char opts[256];

   snprintf (opts, sizeof opts, "&tls=true&tlsCAFile=%s/other-ca.pem", pki);
   tls_init (NULL, opts);
   ck_assert (!ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
}
END_TEST

START_TEST (tls_from_environment_parts_uses_the_ca_file)
{
   char cert[128], key[128], ca[128], port_s[16];
   const char *args[5];
   int port;

   snprintf (cert, sizeof cert, "%s/server.pem", pki);
   snprintf (key, sizeof key, "%s/server.key", pki);
   snprintf (ca, sizeof ca, "%s/ca.pem", pki);
   args[0] = "--tls-cert";
   args[1] = cert;
   args[2] = "--tls-key";
   args[3] = key;
   args[4] = NULL;
   mh_test_server_start (&server, 0, args);
   port = server.port;
   snprintf (port_s, sizeof port_s, "%d", port);
   setenv ("MONGO_HOST", "127.0.0.1", 1);
   setenv ("MONGO_PORT", port_s, 1);
   setenv ("MONGO_DB", "mh_sec", 1);
   setenv ("MONGO_USE_SSL", "true", 1);
   setenv ("MONGO_SSL_CA_CERTS", ca, 1);
   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "5000", 1);
   MH_ASSERT_OK (ping (), err);
}
END_TEST

START_TEST (client_certificate_is_sent_when_the_server_requires_one)
{
   char ca_arg[128], opts[512];
   const char *extra[3];

   snprintf (ca_arg, sizeof ca_arg, "%s/ca.pem", pki);
   extra[0] = "--tls-ca";
   extra[1] = ca_arg;
   extra[2] = NULL;
   snprintf (opts,
             sizeof opts,
             "&tls=true&tlsCAFile=%s/ca.pem&tlsCertificateKeyFile=%s/client.pem",
             pki,
             pki);
   tls_init (extra, opts);
   MH_ASSERT_OK (ping (), err);
}
END_TEST

START_TEST (server_requiring_a_client_certificate_refuses_a_client_without_one)
{
   char ca_arg[128], opts[256];
   const char *extra[3];

   snprintf (ca_arg, sizeof ca_arg, "%s/ca.pem", pki);
   extra[0] = "--tls-ca";
   extra[1] = ca_arg;
   extra[2] = NULL;
   snprintf (opts, sizeof opts, "&tls=true&tlsCAFile=%s/ca.pem", pki);
   tls_init (extra, opts);
   ck_assert (!ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
}
END_TEST

/* ---- credentials -------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[65536];

static void
capture_log (mongo_helper_log_level_t level, const char *domain, const char *message, void *data)
{
   (void) level;
   (void) data;
   pthread_mutex_lock (&log_lock);
   bson_strncpy (log_text + strlen (log_text), domain, sizeof log_text - strlen (log_text));
   bson_strncpy (log_text + strlen (log_text), ": ", sizeof log_text - strlen (log_text));
   bson_strncpy (log_text + strlen (log_text), message, sizeof log_text - strlen (log_text));
   bson_strncpy (log_text + strlen (log_text), "\n", sizeof log_text - strlen (log_text));
   pthread_mutex_unlock (&log_lock);
}

static void
assert_no_secret (const char *where, const char *text, const char *secret)
{
   ck_assert_msg (!strstr (text, secret), "the password appears in %s: %s", where, text);
}

START_TEST (credentials_never_appear_in_errors_logs_status_or_metrics)
{
   const char *secret = "S3cr3t-Pw_9";
   char uri[256], *json, *prom;
   size_t needed = 0;
   mongo_helper_status_t st;
   bson_t *cmd = BCON_NEW ("find", BCON_UTF8 ("x"));

   log_text[0] = '\0';
   mongo_helper_set_log_handler (capture_log, MONGO_HELPER_LOG_DEBUG, NULL);
   snprintf (uri,
             sizeof uri,
             "mongodb://appuser:%s@127.0.0.1:%d/mh_sec?authSource=admin"
             "&serverSelectionTimeoutMS=300",
             secret,
             mh_test_free_port ());
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
   ck_assert (!ping ());
   assert_no_secret ("the error", err.message, secret);
   ck_assert (!mongo_helper_read_command (cmd, 100, NULL, &err));
   assert_no_secret ("the error", err.message, secret);
   ck_assert (!mongo_helper_ping (300, &err));
   assert_no_secret ("the ping error", err.message, secret);
   mongo_helper_status (&st);
   assert_no_secret ("the status", st.uri, secret);
   ck_assert_ptr_nonnull (strstr (st.uri, "appuser"));
   json = mongo_helper_metrics_json_dup (&err);
   assert_no_secret ("the JSON metrics", json, secret);
   ck_assert (!strstr (json, "appuser"));
   bson_free (json);
   mongo_helper_metrics_prometheus (NULL, 0, &needed, &err);
   prom = malloc (needed + 1024);
   MH_ASSERT_OK (mongo_helper_metrics_prometheus (prom, needed + 1024, NULL, &err), err);
   assert_no_secret ("the Prometheus metrics", prom, secret);
   ck_assert (!strstr (prom, "appuser"));
   free (prom);
   mongo_helper_shutdown ();
   pthread_mutex_lock (&log_lock);
   ck_assert_msg (strlen (log_text) > 0, "nothing was logged");
   assert_no_secret ("the log", log_text, secret);
   pthread_mutex_unlock (&log_lock);
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
   bson_destroy (cmd);
}
END_TEST

START_TEST (password_from_environment_parts_stays_out_of_errors)
{
   const char *secret = "p@ss:w/rd%41";
   char port_s[16];

   snprintf (port_s, sizeof port_s, "%d", mh_test_free_port ());
   setenv ("MONGO_HOST", "127.0.0.1", 1);
   setenv ("MONGO_PORT", port_s, 1);
   setenv ("MONGO_USERNAME", "envuser", 1);
   setenv ("MONGO_PASSWORD", secret, 1);
   setenv ("MONGO_DB", "mh_sec", 1);
   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "300", 1);
   ck_assert (!ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
   assert_no_secret ("the error", err.message, secret);
   assert_no_secret ("the error", err.message, "p%40ss%3Aw%2Frd%2541");
}
END_TEST

START_TEST (auth_source_and_mechanism_pass_through_to_the_driver)
{
   mongo_helper_config_t *cfg = mongo_helper_config_new (
      "/dev/null",
      "mongodb://u:pw@h1,h2/app?authSource=admin&authMechanism=SCRAM-SHA-256"
      "&replicaSet=rs0&tls=true",
      &err);
   const mongoc_uri_t *u;

   MH_ASSERT_OK (cfg != NULL, err);
   u = mongo_helper_config_mongoc_uri (cfg);
   ck_assert_str_eq (mongoc_uri_get_auth_source (u), "admin");
   ck_assert_str_eq (mongoc_uri_get_auth_mechanism (u), "SCRAM-SHA-256");
   ck_assert_str_eq (mongoc_uri_get_username (u), "u");
   ck_assert_str_eq (mongoc_uri_get_replica_set (u), "rs0");
   ck_assert (mongoc_uri_get_tls (u));
   ck_assert (!strstr (mongo_helper_config_uri_redacted (cfg), "pw@"));
   mongo_helper_config_destroy (cfg);
}
END_TEST

/* ---- query injection ---------------------------------------------------- */

static bool
check_json (const char *json, unsigned flags)
{
   bson_t out;
   bool ok = mongo_helper_filter_check_json (json, flags, &out, &err);
   bson_destroy (&out);
   return ok;
}

static void
assert_rejected (const char *json, unsigned flags, const char *path)
{
   char quoted[256];

   ck_assert_msg (!check_json (json, flags), "accepted %s", json);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   snprintf (quoted, sizeof quoted, "'%s'", path);
   ck_assert_msg (strstr (err.message, quoted), "expected %s in: %s", quoted, err.message);
}

START_TEST (plain_values_pass_the_strict_filter_check)
{
   ck_assert (check_json ("{\"user\": \"alice\", \"age\": 30, \"tags\": [\"a\", \"b\"],"
                          " \"address\": {\"city\": \"Oslo\"}}",
                          MONGO_HELPER_FILTER_STRICT));
   ck_assert (check_json ("{\"_id\": {\"$oid\": \"5f1d7c2b9d3e4a0012345678\"}}", 0));
   ck_assert (check_json ("{\"$or\": [{\"a\": 1}, {\"b\": \"x\"}]}", 0));
   ck_assert (check_json ("{}", 0));
}
END_TEST

START_TEST (operator_where_a_value_is_expected_is_rejected_with_its_path)
{
   assert_rejected ("{\"user\": {\"$ne\": null}}", 0, "user.$ne");
   assert_rejected ("{\"password\": {\"$gt\": \"\"}}", 0, "password.$gt");
   assert_rejected ("{\"tags\": [\"a\", {\"$ne\": 1}]}", 0, "tags.1.$ne");
   assert_rejected ("{\"$or\": [{\"a\": 1}, {\"b\": {\"$gt\": 5}}]}", 0, "$or.1.b.$gt");
   assert_rejected ("{\"a\": {\"b\": {\"c\": {\"$in\": [1]}}}}", 0, "a.b.c.$in");
   assert_rejected ("{\"$text\": {\"$search\": \"x\"}}", 0, "$text");
   assert_rejected ("{\"name\": {\"$regex\": \"^a\", \"$options\": \"i\"}}", 0, "name");
   /* The same query operators are fine when the caller allows them. */
   ck_assert (
      check_json ("{\"age\": {\"$gt\": 5, \"$lt\": 9}, \"$or\": [{\"b\": {\"$in\": [1, 2]}}]}",
                  MONGO_HELPER_FILTER_ALLOW_OPERATORS));
}
END_TEST

START_TEST (server_side_javascript_is_rejected_at_any_depth)
{
   const unsigned all_but_js = MONGO_HELPER_FILTER_ALLOW_OPERATORS | MONGO_HELPER_FILTER_ALLOW_EXPR;

   assert_rejected ("{\"$where\": \"this.a > 1\"}", all_but_js, "$where");
   assert_rejected ("{\"a\": {\"b\": [{\"c\": 1}, {\"$function\": {\"body\": \"x\"}}]}}",
                    all_but_js,
                    "a.b.1.$function");
   assert_rejected ("{\"$expr\": {\"$gt\": [{\"$accumulator\": {}}, 1]}}",
                    all_but_js,
                    "$expr.$gt.0.$accumulator");
   assert_rejected (
      "{\"$and\": [{\"$or\": [{\"$where\": \"1\"}]}]}", all_but_js, "$and.0.$or.0.$where");
   assert_rejected ("{\"f\": {\"$code\": \"function(){}\"}}", all_but_js, "f");
   ck_assert (check_json ("{\"$where\": \"this.a > 1\"}", MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT));
}
END_TEST

START_TEST (expr_needs_its_own_flag)
{
   assert_rejected (
      "{\"$expr\": {\"$eq\": [\"$a\", \"$b\"]}}", MONGO_HELPER_FILTER_ALLOW_OPERATORS, "$expr");
   ck_assert (check_json ("{\"$expr\": {\"$eq\": [\"$a\", \"$b\"]}}",
                          MONGO_HELPER_FILTER_ALLOW_EXPR | MONGO_HELPER_FILTER_ALLOW_OPERATORS));
}
END_TEST

START_TEST (bad_filter_input_is_an_invalid_argument_not_a_crash)
{
   bson_string_t *deep = bson_string_new (NULL);
   bson_t out;

   ck_assert (!mongo_helper_filter_check (NULL, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_filter_check_json (NULL, 0, NULL, &err));
   ck_assert (!mongo_helper_filter_check_json ("{\"a\": ", 0, &out, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "malformed JSON"));
   ck_assert (bson_empty (&out));
   bson_destroy (&out);
   /* 150 levels of {a: {a: ...}}, built as BSON (the JSON parser has
    * its own, lower limit). */
   {
      bson_t *levels = bson_malloc0 (151 * sizeof (bson_t));
      bson_init (&levels[0]);
      for (int i = 0; i < 150; i++) {
         bson_append_document_begin (&levels[i], "a", 1, &levels[i + 1]);
      }
      BSON_APPEND_INT32 (&levels[150], "v", 1);
      for (int i = 150; i > 0; i--) {
         bson_append_document_end (&levels[i - 1], &levels[i]);
      }
      ck_assert (!mongo_helper_filter_check (&levels[0], 0, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_ptr_nonnull (strstr (err.message, "nested too deeply"));
      bson_destroy (&levels[0]);
      bson_free (levels);
   }
   bson_string_append (deep, "{\"a\": [[[[{\"b\": 1}]]]]}");
   ck_assert (mongo_helper_filter_check_json (deep->str, 0, NULL, &err));
   bson_string_free (deep, true);
}
END_TEST

START_TEST (checked_json_filter_is_handed_back_parsed)
{
   bson_t out;
   bson_iter_t it;

   MH_ASSERT_OK (mongo_helper_filter_check_json ("{\"user\": \"bob\", \"n\": 3}", 0, &out, &err),
                 err);
   ck_assert (bson_iter_init_find (&it, &out, "user"));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "bob");
   ck_assert (bson_iter_init_find (&it, &out, "n"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 3);
   bson_destroy (&out);
}
END_TEST

/* Found by tests/fuzz/fuzz_filter: an array whose element key is
 * "$where" (hand-made BSON; JSON cannot express it) was accepted. */
START_TEST (array_element_with_an_operator_key_is_rejected)
{
   bson_t filter = BSON_INITIALIZER, arr;

   bson_append_array_begin (&filter, "t", 1, &arr);
   BSON_APPEND_UTF8 (&arr, "0", "x");
   bson_append_minkey (&arr, "$where", -1);
   bson_append_array_end (&filter, &arr);
   ck_assert (!mongo_helper_filter_check (&filter, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "'t.$where'"));
   bson_destroy (&filter);
}
END_TEST

/* Found by tests/fuzz/fuzz_filter: a corrupt nested document (which
 * bson_validate() lets through) and an $or element keyed "$..." were
 * accepted. */
START_TEST (corrupt_nested_document_and_operator_keyed_or_element_are_rejected)
{
   static const uint8_t crash[] = {
      0x55, 0x00, 0x00, 0x00, 0x03, 0x75, 0x73, 0x65, 0x72, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0a,
      0x24, 0x6c, 0x65, 0x68, 0xff, 0x04, 0x24, 0x6f, 0x72, 0x00, 0x14, 0x00, 0x00, 0x00, 0x03,
      0x24, 0x18, 0x6f, 0x72, 0x3c, 0x61, 0x00, 0x01, 0x00, 0x00, 0x00, 0x26, 0x00, 0x00, 0x56,
      0x04, 0x65, 0x72, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0a, 0x24, 0x6e, 0x65, 0x68, 0xff, 0x04,
      0x24, 0x6f, 0x72, 0x00, 0x14, 0x00, 0x00, 0x00, 0x03, 0x30, 0x00, 0x68, 0x65, 0x72, 0x65,
      0x00, 0x02, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x02, 0x00};
   bson_t b, filter = BSON_INITIALIZER, arr, el;

   ck_assert (bson_init_static (&b, crash, sizeof crash));
   ck_assert (!mongo_helper_filter_check (&b, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "not valid BSON"), "%s", err.message);

   bson_append_array_begin (&filter, "$or", -1, &arr);
   bson_append_document_begin (&arr, "$x", -1, &el);
   BSON_APPEND_INT32 (&el, "a", 1);
   bson_append_document_end (&arr, &el);
   bson_append_array_end (&filter, &arr);
   ck_assert (!mongo_helper_filter_check (&filter, MONGO_HELPER_FILTER_ALLOW_OPERATORS, &err));
   ck_assert_ptr_nonnull (strstr (err.message, "'$or.$x'"));
   bson_destroy (&filter);
}
END_TEST

/* ---- ObjectId ------------------------------------------------------------ */

START_TEST (object_id_text_must_be_exactly_24_hex_digits)
{
   bson_oid_t oid, before;
   char back[25];

   MH_ASSERT_OK (mongo_helper_oid_from_string ("5F1D7C2B9D3E4A0012345678", &oid, &err), err);
   bson_oid_to_string (&oid, back);
   ck_assert_str_eq (back, "5f1d7c2b9d3e4a0012345678");

   memset (&before, 0x11, sizeof before);
   oid = before;
   ck_assert (!mongo_helper_oid_from_string ("5f1d7c2b9d3e4a001234567", &oid, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "got 23 characters"));
   ck_assert (bson_oid_equal (&oid, &before));
   ck_assert (!mongo_helper_oid_from_string ("5f1d7c2b9d3e4a00123456789", &oid, &err));
   ck_assert_ptr_nonnull (strstr (err.message, "more than 24"));
   ck_assert (!mongo_helper_oid_from_string ("5f1dzc2b9d3e4a0012345678", &oid, &err));
   ck_assert_ptr_nonnull (strstr (err.message, "character 5"));
   ck_assert (!mongo_helper_oid_from_string (" 5f1d7c2b9d3e4a001234567", &oid, &err));
   ck_assert_ptr_nonnull (strstr (err.message, "character 1"));
   ck_assert (!mongo_helper_oid_from_string ("", &oid, &err));
   ck_assert (!mongo_helper_oid_from_string (NULL, &oid, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_oid_from_string ("5f1d7c2b9d3e4a0012345678", NULL, &err));
}
END_TEST

Suite *
security_suite (void)
{
   Suite *s = suite_create ("security");
   TCase *core = tcase_create ("core");
   TCase *tls = tcase_create ("tls");

   tcase_add_checked_fixture (core, setup, mh_test_teardown);
   tcase_add_test (core, credentials_never_appear_in_errors_logs_status_or_metrics);
   tcase_add_test (core, password_from_environment_parts_stays_out_of_errors);
   tcase_add_test (core, auth_source_and_mechanism_pass_through_to_the_driver);
   tcase_add_test (core, plain_values_pass_the_strict_filter_check);
   tcase_add_test (core, operator_where_a_value_is_expected_is_rejected_with_its_path);
   tcase_add_test (core, server_side_javascript_is_rejected_at_any_depth);
   tcase_add_test (core, expr_needs_its_own_flag);
   tcase_add_test (core, bad_filter_input_is_an_invalid_argument_not_a_crash);
   tcase_add_test (core, checked_json_filter_is_handed_back_parsed);
   tcase_add_test (core, array_element_with_an_operator_key_is_rejected);
   tcase_add_test (core, corrupt_nested_document_and_operator_keyed_or_element_are_rejected);
   tcase_add_test (core, object_id_text_must_be_exactly_24_hex_digits);
   tcase_set_timeout (core, 20);
   suite_add_tcase (s, core);

   tcase_add_unchecked_fixture (tls, pki_make, pki_remove);
   tcase_add_checked_fixture (tls, setup, mh_test_teardown);
   tcase_set_timeout (tls, 30);
   tcase_add_test (tls, tls_with_the_right_ca_file_connects);
   tcase_add_test (tls, tls_verifies_certificates_by_default);
   tcase_add_test (tls, tls_with_the_wrong_ca_fails);
   tcase_add_test (tls, tls_from_environment_parts_uses_the_ca_file);
   tcase_add_test (tls, client_certificate_is_sent_when_the_server_requires_one);
   tcase_add_test (tls, server_requiring_a_client_certificate_refuses_a_client_without_one);
   suite_add_tcase (s, tls);
   return s;
}
