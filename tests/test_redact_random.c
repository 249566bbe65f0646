/* Redaction properties: random passwords drawn from every byte libmongoc
 * accepts, through every configuration source and every output that needs
 * no server (or only a refused port), and random text around a URI given to
 * the redactor alone.  The named regressions are in test_redact.c; the
 * shared fixture in redact_fixture.h. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

#include "redact_fixture.h"

/* ---- properties: random passwords from what libmongoc accepts --------- */

typedef struct {
   uint64_t s;
} rng_t;

static uint64_t
rnd (rng_t *r)
{
   /* xorshift64*: fast, and the same sequence on every machine. */
   r->s ^= r->s >> 12;
   r->s ^= r->s << 25;
   r->s ^= r->s >> 27;
   return r->s * 0x2545F4914F6CDD1DULL;
}

static uint32_t
below (rng_t *r, uint32_t n)
{
   return (uint32_t) (rnd (r) % n);
}

static uint64_t
seed (void)
{
   const char *s = getenv ("MH_REDACT_SEED");
   return s && *s ? strtoull (s, NULL, 0) : 0x5EC2E7C0FFEEULL;
}

/* The number of cases, scaled down under valgrind. */
static int
cases (int n)
{
   const char *v = getenv ("MH_VALGRIND");
   return v && strcmp (v, "1") == 0 ? (n + 19) / 20 : n;
}

/* What libmongoc 1.23 takes in a password, byte by byte: raw (ok and read
 * back unchanged) and percent-encoded. */
static bool raw_ok[256], pct_ok[256];

static void
probe_alphabet (void)
{
   bson_error_t e;

   mongoc_init ();
   for (int b = 1; b < 256; b++) {
      char uri[64];
      char want[8] = {'a', 'b', (char) b, 'c', 'd', '\0'};
      mongoc_uri_t *u;

      snprintf (uri, sizeof uri, "mongodb://u:ab%ccd@h/db", b);
      if ((u = mongoc_uri_new_with_error (uri, &e))) {
         raw_ok[b] = mongoc_uri_get_password (u) && !strcmp (mongoc_uri_get_password (u), want);
         mongoc_uri_destroy (u);
      }
      snprintf (uri, sizeof uri, "mongodb://u:ab%%%02Xcd@h/db", b);
      if ((u = mongoc_uri_new_with_error (uri, &e))) {
         pct_ok[b] = mongoc_uri_get_password (u) && !strcmp (mongoc_uri_get_password (u), want);
         mongoc_uri_destroy (u);
      }
   }
}

START_TEST (password_alphabet_is_what_libmongoc_accepts)
{
   int raw = 0, pct = 0;

   probe_alphabet ();
   for (int b = 1; b < 256; b++) {
      raw += raw_ok[b];
      pct += pct_ok[b];
   }
   /* The bytes behind the leaks are accepted raw ... */
   for (const char *c = "?#\"' !$&'()*+,;=\t\n"; *c; c++) {
      ck_assert_msg (raw_ok[(unsigned char) *c], "libmongoc refuses raw 0x%02x", *c);
   }
   /* ... these only percent-encoded (a raw '@' ends the password) ... */
   for (const char *c = "/:%@"; *c; c++) {
      ck_assert_msg (!raw_ok[(unsigned char) *c] && pct_ok[(unsigned char) *c],
                     "libmongoc's handling of 0x%02x changed",
                     *c);
   }
   /* ... every ASCII byte one way or the other; bytes >= 0x80 only as
    * parts of valid UTF-8, which the generator builds. */
   for (int b = 1; b < 128; b++) {
      ck_assert_msg (raw_ok[b] || pct_ok[b], "libmongoc refuses 0x%02x in every form", b);
   }
   ck_assert_int_eq (raw, 127 - 4);
   ck_assert_int_eq (pct, 127);
}
END_TEST

/* One random password: `raw` as libmongoc reads it, `field` as written in
 * the URI (some characters percent-encoded, required or by chance). */
typedef struct {
   char raw[128];
   char field[384];
   bool rejected; /* holds a character libmongoc refuses */
} password_t;

static void
append_pct (char *field, size_t *w, unsigned char b)
{
   *w += (size_t) sprintf (field + *w, "%%%02X", b);
}

/* `ini`: no raw line breaks (one INI line); `no_dquote`: no raw '"'. */
static void
gen_password (rng_t *r, password_t *pw, bool may_reject, bool ini, bool no_dquote)
{
   int chars = 4 + (int) below (r, 17);
   size_t rw = 0, fw = 0;

   pw->rejected = false;
   for (int i = 0; i < chars; i++) {
      unsigned char bytes[4];
      int nb = 1;
      bool encode = below (r, 10) < 3;

      if (below (r, 5) == 0) { /* UTF-8: 2, 3 or 4 bytes */
         uint32_t cp;
         switch (below (r, 3)) {
         case 0:
            cp = 0x80 + below (r, 0x800 - 0x80);
            bytes[0] = (unsigned char) (0xC0 | cp >> 6);
            bytes[1] = (unsigned char) (0x80 | (cp & 0x3F));
            nb = 2;
            break;
         case 1:
            do {
               cp = 0x800 + below (r, 0x10000 - 0x800);
            } while (cp >= 0xD800 && cp <= 0xDFFF);
            bytes[0] = (unsigned char) (0xE0 | cp >> 12);
            bytes[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
            bytes[2] = (unsigned char) (0x80 | (cp & 0x3F));
            nb = 3;
            break;
         default:
            cp = 0x10000 + below (r, 0x110000 - 0x10000);
            bytes[0] = (unsigned char) (0xF0 | cp >> 18);
            bytes[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
            bytes[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
            bytes[3] = (unsigned char) (0x80 | (cp & 0x3F));
            nb = 4;
            break;
         }
      } else if (below (r, 30) == 0) {
         /* libmongoc reads a backslash as escaping the next character,
          * which lets '@', ':' and '/' into a password unencoded. */
         bytes[0] = '\\';
         bytes[1] = (unsigned char) "@:/"[below (r, 3)];
         nb = 2;
         encode = false;
      } else if (may_reject && below (r, 40) == 0) {
         /* A byte libmongoc refuses raw: the error paths must hide it too. */
         static const char refused[] = "/:%";
         bytes[0] = (unsigned char) refused[below (r, 3)];
         pw->rejected = true;
         encode = false;
      } else {
         do {
            bytes[0] = (unsigned char) (1 + below (r, 127));
         } while (!raw_ok[bytes[0]] && !pct_ok[bytes[0]]);
         /* A lone backslash would escape what follows it (the '@'). */
         encode = encode || !raw_ok[bytes[0]] || bytes[0] == '\\' ||
                  (ini && (bytes[0] == '\n' || bytes[0] == '\r')) || (no_dquote && bytes[0] == '"');
      }
      for (int k = 0; k < nb; k++) {
         pw->raw[rw++] = (char) bytes[k];
         if (encode) {
            append_pct (pw->field, &fw, bytes[k]);
         } else {
            pw->field[fw++] = (char) bytes[k];
         }
      }
   }
   pw->raw[rw] = '\0';
   pw->field[fw] = '\0';
}

/* How the configuration code percent-encodes MONGO_PASSWORD. */
static void
pct_encode_all (const char *s, char *out)
{
   size_t w = 0;

   for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
      if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          strchr ("-._~", *p)) {
         out[w++] = (char) *p;
      } else {
         append_pct (out, &w, *p);
      }
   }
   out[w] = '\0';
}

/* Fails when `output` holds `secret`, or a 4-byte piece of it that the
 * public text (what the same case shows with another password) lacks. */
static void
assert_no_leak (const char *what,
                const char *output,
                const char *secret,
                const char *public_text,
                const char *case_text)
{
   size_t n = strlen (secret);
   char a[1024], b[256], c[512];

   if (n >= 4 && strstr (output, secret) && !strstr (public_text, secret)) {
      ck_abort_msg ("%s shows the password '%s' (case %s): %s",
                    what,
                    shown (secret, b, sizeof b),
                    shown (case_text, c, sizeof c),
                    shown (output, a, sizeof a));
   }
   for (size_t i = 0; i + 4 <= n; i++) {
      if (memmem (output, strlen (output), secret + i, 4) &&
          !memmem (public_text, strlen (public_text), secret + i, 4)) {
         char piece[5];
         memcpy (piece, secret + i, 4);
         piece[4] = '\0';
         ck_abort_msg ("%s shows '%s' of the password '%s' (case %s): %s",
                       what,
                       shown (piece, c, 64),
                       shown (secret, b, sizeof b),
                       shown (case_text, c + 64, sizeof c - 64),
                       shown (output, a, sizeof a));
      }
   }
}

/* ---- one case: a source, a scheme, a password ------------------------- */

typedef enum {
   ROUTE_EXPLICIT,
   ROUTE_CACHE_ENV,
   ROUTE_INI_QUOTED,
   ROUTE_INI_UNQUOTED,
   ROUTE_MONGO_URI,
   ROUTE_PARTS,
   ROUTE_COUNT
} route_t;

static const char *const route_names[] =
   {"explicit", "MONGO_CACHE_URI", "INI quoted", "INI unquoted", "MONGO_URI", "MONGO_PASSWORD"};

static const char *const schemes[] =
   {"mongodb://", "mongodb+srv://", "mongodb:/", "mongodb//", "", "MONGODB://"};
#define N_SCHEMES (sizeof schemes / sizeof *schemes)

static const char *const users[] = {"alice", "app_user", "svc.reader", "u1"};

typedef struct {
   route_t route;
   int scheme;
   const char *user;
   int port;
   bool connect; /* fewer options, short timeouts: for init and ping */
   char uri[1024];
   char without_password[1024]; /* the URI's other parts, public */
   password_t pw;
   char pw_encoded[512]; /* MONGO_PASSWORD as the configuration encodes it */
} case_t;

static void
case_uri (case_t *c, const char *field)
{
   const char *host = c->scheme == 1 ? "cluster0.example.net" : "127.0.0.1";
   char port[16] = "";
   const char *opts = c->connect ? "?serverSelectionTimeoutMS=150&connectTimeoutMS=150"
                                 : "?authSource=admin&appName=redact";

   if (c->scheme != 1) {
      snprintf (port, sizeof port, ":%d", c->port);
   }
   snprintf (c->uri,
             sizeof c->uri,
             "%s%s:%s@%s%s/mh_redact%s",
             schemes[c->scheme],
             c->user,
             field,
             host,
             port,
             opts);
   snprintf (c->without_password,
             sizeof c->without_password,
             "%s%s: @%s%s/mh_redact%s",
             schemes[c->scheme],
             c->user,
             host,
             port,
             opts);
}

/* Points the configuration sources at the case's URI (or parts). */
static const char *
case_apply (case_t *c, const char *raw)
{
   const char *path = NULL;
   char port[16];

   unsetenv ("MONGO_CACHE_URI");
   unsetenv ("MONGO_URI");
   unsetenv ("MONGO_HOST");
   unsetenv ("MONGO_PORT");
   unsetenv ("MONGO_USERNAME");
   unsetenv ("MONGO_PASSWORD");
   unsetenv ("MONGO_DB");
   switch (c->route) {
   case ROUTE_CACHE_ENV:
      setenv ("MONGO_CACHE_URI", c->uri, 1);
      break;
   case ROUTE_INI_QUOTED:
      path = write_ini_uri (c->uri, '"');
      break;
   case ROUTE_INI_UNQUOTED:
      path = write_ini_uri (c->uri, 0);
      break;
   case ROUTE_MONGO_URI:
      setenv ("MONGO_URI", c->uri, 1);
      break;
   case ROUTE_PARTS:
      snprintf (port, sizeof port, "%d", c->port);
      setenv ("MONGO_HOST", "127.0.0.1", 1);
      setenv ("MONGO_PORT", port, 1);
      setenv ("MONGO_USERNAME", c->user, 1);
      setenv ("MONGO_PASSWORD", raw, 1);
      setenv ("MONGO_DB", "mh_redact", 1);
      if (c->connect) {
         setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "150", 1);
         setenv ("MONGO_CONNECT_TIMEOUT_MS", "150", 1);
      }
      break;
   case ROUTE_EXPLICIT:
   default:
      break;
   }
   return path;
}

static void
case_new (rng_t *r, case_t *c, bool connect)
{
   memset (c, 0, sizeof *c);
   c->route = (route_t) below (r, ROUTE_COUNT);
   c->scheme = connect ? 0 : (int) below (r, N_SCHEMES);
   c->user = users[below (r, sizeof users / sizeof *users)];
   c->port = connect ? mh_test_free_port () : 27017;
   c->connect = connect;
   gen_password (r,
                 &c->pw,
                 !connect && c->route != ROUTE_PARTS,
                 c->route == ROUTE_INI_QUOTED || c->route == ROUTE_INI_UNQUOTED,
                 c->route == ROUTE_INI_QUOTED);
   pct_encode_all (c->pw.raw, c->pw_encoded);
   case_uri (c, c->pw.field);
}

/* Whether libmongoc must take the case's URI as it is written. */
static bool
case_should_parse (const case_t *c)
{
   return c->route == ROUTE_PARTS ||
          ((c->scheme == 0 || c->scheme == 1) && !c->pw.rejected && c->route != ROUTE_INI_UNQUOTED);
}

static void
case_describe (const case_t *c, char *buf, size_t size)
{
   snprintf (buf, size, "%s, URI %s", route_names[c->route], c->uri);
}

/* Resolves the configuration of `c` with the password `raw`/`field` and
 * appends every output to `out`: the error or the redacted URI, and the
 * log.  Checks that a URI libmongoc takes reads back whole. */
static void
config_outputs (case_t *c, const char *raw, const char *field, bson_string_t *out, bool check)
{
   mongo_helper_config_t *cfg;
   const char *path;
   char *logged, d[1200];

   case_uri (c, field);
   path = case_apply (c, raw);
   log_reset ();
   cfg = c->route == ROUTE_EXPLICIT ? mongo_helper_config_new (NULL, c->uri, &err)
                                    : mongo_helper_config_new (path, NULL, &err);
   if (check && case_should_parse (c)) {
      case_describe (c, d, sizeof d);
      ck_assert_msg (cfg != NULL, "expected a configuration (%s), got: %s", d, err.message);
      if (c->route != ROUTE_PARTS) {
         /* Also proves the INI quoting the documentation gives. */
         ck_assert_msg (
            !strcmp (mongo_helper_config_uri (cfg), c->uri), "the URI read back differs (%s)", d);
      }
      ck_assert_str_eq (mongoc_uri_get_password (mongo_helper_config_mongoc_uri (cfg)), raw);
   }
   if (cfg) {
      bson_string_append_printf (out, "%s\n", mongo_helper_config_uri_redacted (cfg));
      mongo_helper_config_destroy (cfg);
   } else {
      bson_string_append_printf (out, "%s\n", err.message);
   }
   logged = log_copy ();
   bson_string_append (out, logged);
   bson_free (logged);
}

/* The public text of a case: its URI without the password and everything
 * the same case shows with two other passwords (one libmongoc refuses),
 * so message templates never count as a leak. */
static bson_string_t *
case_public (case_t *c,
             bool connect_outputs,
             void (*outputs) (case_t *, const char *, const char *, bson_string_t *))
{
   bson_string_t *pub = bson_string_new (c->without_password);

   bson_string_append (pub, "\n****\n");
   if (outputs) {
      outputs (c, "Q", "Q", pub);
      if (!connect_outputs) {
         outputs (c, "Q/Q:Q", "Q/Q:Q", pub);
      }
   }
   return pub;
}

static void
config_outputs_unchecked (case_t *c, const char *raw, const char *field, bson_string_t *out)
{
   config_outputs (c, raw, field, out, false);
}

static void
check_case_outputs (case_t *c, const char *what, const char *output, const char *pub)
{
   char d[1200];

   case_describe (c, d, sizeof d);
   assert_no_leak (what, output, c->pw.raw, pub, d);
   assert_no_leak (what, output, c->pw.field, pub, d);
   if (c->route == ROUTE_PARTS) {
      assert_no_leak (what, output, c->pw_encoded, pub, d);
   }
}

START_TEST (random_passwords_never_show_in_config_errors_redacted_uris_or_logs)
{
   rng_t r = {seed ()};
   int n = cases (10000);

   probe_alphabet ();
   for (int i = 0; i < n; i++) {
      case_t c;
      bson_string_t *out = bson_string_new (""), *pub;
      char raw[128], field[384];

      case_new (&r, &c, false);
      bson_strncpy (raw, c.pw.raw, sizeof raw);
      bson_strncpy (field, c.pw.field, sizeof field);
      config_outputs (&c, raw, field, out, true);
      pub = case_public (&c, false, config_outputs_unchecked);
      case_uri (&c, field);
      check_case_outputs (&c, "the configuration's output", out->str, pub->str);
      bson_string_free (out, true);
      bson_string_free (pub, true);
   }
}
END_TEST

/* Initialises the singleton from the case and appends the pool's outputs:
 * the init error or the status URI, the log, both metrics texts, and with
 * `ping` the ping and server_info errors against the refused port. */
static bool with_ping;

static void
singleton_outputs (case_t *c, const char *raw, const char *field, bson_string_t *out)
{
   const char *path;
   mongo_helper_status_t st;
   mongo_helper_server_info_t info;
   char *logged, *json, *prom;
   size_t needed = 0;
   bool ok;

   case_uri (c, field);
   path = case_apply (c, raw);
   log_reset ();
   mongo_helper_metrics_reset ();
   ok = c->route == ROUTE_EXPLICIT ? mongo_helper_init_uri (c->uri, &err)
                                   : mongo_helper_init (path, &err);
   if (!ok) {
      bson_string_append_printf (out, "%s\n", err.message);
   } else {
      mongo_helper_status (&st);
      bson_string_append_printf (out, "%s\n", st.uri);
      if (with_ping) {
         if (!mongo_helper_ping (150, &err)) {
            bson_string_append_printf (out, "%s\n", err.message);
         }
         if (!mongo_helper_server_info (150, &info, &err)) {
            bson_string_append_printf (out, "%s\n", err.message);
         }
      }
      json = mongo_helper_metrics_json_dup (&err);
      ck_assert_ptr_nonnull (json);
      bson_string_append (out, json);
      bson_free (json);
      mongo_helper_metrics_prometheus (NULL, 0, &needed, &err);
      prom = bson_malloc (needed + 4096);
      MH_ASSERT_OK (mongo_helper_metrics_prometheus (prom, needed + 4096, NULL, &err), err);
      bson_string_append (out, prom);
      bson_free (prom);
   }
   mongo_helper_shutdown ();
   logged = log_copy ();
   bson_string_append (out, logged);
   bson_free (logged);
}

static void
singleton_property (int n, bool ping)
{
   rng_t r = {seed () + (ping ? 2 : 1)};

   with_ping = ping;
   probe_alphabet ();
   for (int i = 0; i < n; i++) {
      case_t c;
      bson_string_t *out = bson_string_new (""), *pub;
      char raw[128], field[384];

      case_new (&r, &c, true);
      bson_strncpy (raw, c.pw.raw, sizeof raw);
      bson_strncpy (field, c.pw.field, sizeof field);
      singleton_outputs (&c, raw, field, out);
      if (case_should_parse (&c)) {
         ck_assert_msg (strstr (out->str, "pool created"), "no pool was created: %s", out->str);
      }
      if (ping && case_should_parse (&c)) {
         assert_shown ("the ping error", out->str, "ping to ");
      }
      pub = case_public (&c, true, singleton_outputs);
      case_uri (&c, field);
      check_case_outputs (&c, "the singleton's output", out->str, pub->str);
      bson_string_free (out, true);
      bson_string_free (pub, true);
   }
}

START_TEST (random_passwords_never_show_in_status_pool_log_or_metrics)
{
   singleton_property (cases (1000), false);
}
END_TEST

START_TEST (random_passwords_never_show_in_ping_or_server_info_errors)
{
   singleton_property (cases (100), true);
}
END_TEST

/* The redactor alone, on text around a URI: random prefixes and suffixes
 * built from the pieces that steer it (colons, slashes, '@', quotes,
 * blanks, key names, percent-escapes) and random bytes.  The guarantee
 * tested is the one mongo_helper.h documents. */
static const char *const pieces[] = {
   ":",       "@",  "/",    "//",    "://", ":/",       " ",         "\t",      "\n",
   "'",       "\"", "(",    ")",     "[",   "]",        ",",         "?",       "&",
   "=",       "#",  "%",    "%3A",   "%40", "%2F",      "password=", "pwd:",    "token ",
   "mongodb", "x",  "host", "27017", "a b", "failed: ", "****",      "\xc3\xa9"};

static void
random_text (rng_t *r, char *buf, size_t size, int pieces_max)
{
   size_t w = 0;
   int n = (int) below (r, (uint32_t) pieces_max + 1);

   for (int i = 0; i < n; i++) {
      const char *p;
      char one[2] = {0, 0};

      if (below (r, 3) == 0) {
         one[0] = (char) (1 + below (r, 255));
         p = one;
      } else {
         p = pieces[below (r, sizeof pieces / sizeof *pieces)];
      }
      if (w + strlen (p) + 1 < size) {
         memcpy (buf + w, p, strlen (p));
         w += strlen (p);
      }
   }
   buf[w] = '\0';
}

/* True when mongo_helper.h documents that this text may show the
 * password: a URI without any scheme, whose password starts with a blank,
 * after other text or a user name holding a blank (prose "word: x@y"). */
static bool
documented_exception (const char *prefix, const char *scheme, const char *user, const char *pw)
{
   char before[1024], logical[1024];
   size_t w = 0;

   if (!strchr (" \t\r\n\v\f", pw[0]) || !pw[0]) {
      return false;
   }
   snprintf (before, sizeof before, "%s%s%s", prefix, scheme, user);
   for (const char *p = before; *p; p++) { /* %2F and %3A read as '/' and ':' */
      if (p[0] == '%' && (p[1] == '2' && (p[2] == 'F' || p[2] == 'f'))) {
         logical[w++] = '/';
         p += 2;
      } else if (p[0] == '%' && (p[1] == '3' && (p[2] == 'A' || p[2] == 'a'))) {
         logical[w++] = ':';
         p += 2;
      } else {
         logical[w++] = *p;
      }
   }
   logical[w] = '\0';
   if (strstr (logical, "//") || strstr (logical, ":/")) {
      return false;
   }
   /* The word before the ':' starts the text: no blank before it. */
   return strpbrk (before, " \t\r\n\v\f") != NULL;
}

START_TEST (random_text_around_a_uri_never_shows_its_password)
{
   rng_t r = {seed () + 3};
   int n = cases (100000);

   probe_alphabet ();
   for (int i = 0; i < n; i++) {
      char prefix[256], suffix[256], user[64], text[1200], out[2600], pub[1200];
      password_t pw;
      const char *scheme = below (&r, 4) == 0 ? "" : schemes[below (&r, N_SCHEMES)];
      const char *at = below (&r, 4) == 0 ? "%40" : "@";

      random_text (&r, prefix, sizeof prefix, below (&r, 3) == 0 ? 0 : 6);
      random_text (&r, suffix, sizeof suffix, 6);
      bson_strncpy (user, users[below (&r, sizeof users / sizeof *users)], sizeof user);
      if (below (&r, 8) == 0) {
         random_text (&r, user, sizeof user, 2);
      }
      gen_password (&r, &pw, true, false, false);
      if (below (&r, 2) == 0) {
         bson_strncpy (pw.field, pw.raw, sizeof pw.field); /* unencoded, any byte */
      }
      /* "****" in the output must not pass for a piece of the password;
       * the redactor gives '*' no meaning, so '+' tests the same. */
      for (char *p = pw.field; *p; p++) {
         *p = *p == '*' ? '+' : *p;
      }
      if (documented_exception (prefix, scheme, user, pw.field)) {
         continue;
      }
      snprintf (text, sizeof text, "%s%s%s:%s%s%s", prefix, scheme, user, pw.field, at, suffix);
      snprintf (pub, sizeof pub, "%s%s%s:****%s%s", prefix, scheme, user, at, suffix);
      mongo_helper_redact (text, out, sizeof out);
      assert_no_leak ("the redacted text", out, pw.field, pub, text);
   }
}
END_TEST

Suite *
redact_random_suite (void)
{
   Suite *s = suite_create ("redact_random");
   TCase *prop = tcase_create ("properties");

   tcase_add_checked_fixture (prop, setup, teardown);
   tcase_add_test (prop, password_alphabet_is_what_libmongoc_accepts);
   tcase_add_test (prop, random_passwords_never_show_in_config_errors_redacted_uris_or_logs);
   tcase_add_test (prop, random_passwords_never_show_in_status_pool_log_or_metrics);
   tcase_add_test (prop, random_passwords_never_show_in_ping_or_server_info_errors);
   tcase_add_test (prop, random_text_around_a_uri_never_shows_its_password);
   tcase_set_timeout (prop, 120);
   suite_add_tcase (s, prop);
   return s;
}
