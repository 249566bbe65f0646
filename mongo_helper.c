/*
 * mongo_helper.c — implementation.  Sections follow mongo_helper.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "mongo_helper.h"

#include <iniparser/iniparser.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MH_DEFAULT_CONFIG_PATH "conf/mongo_helper.ini"
#define MH_DEFAULT_URI "mongodb://localhost:27017/"
#define MH_HEALTH_DEFAULT_MS 2000

/* ---- Process-wide set-up (internal) --------------------------------- */

static pthread_once_t mh_once = PTHREAD_ONCE_INIT;
static void mh_global_init (void);

/* ---- Version -------------------------------------------------------- */

const char *
mongo_helper_version (void)
{
   return MONGO_HELPER_VERSION_STRING;
}

/* ---- Errors --------------------------------------------------------- */

const char *
mongo_helper_category_name (mongo_helper_category_t category)
{
   switch (category) {
   case MONGO_HELPER_ERROR_NONE:
      return "none";
   case MONGO_HELPER_ERROR_CONFIG:
      return "config";
   case MONGO_HELPER_ERROR_CONNECTION:
      return "connection";
   case MONGO_HELPER_ERROR_TIMEOUT:
      return "timeout";
   case MONGO_HELPER_ERROR_SERVER:
      return "server";
   case MONGO_HELPER_ERROR_DUPLICATE_KEY:
      return "duplicate_key";
   case MONGO_HELPER_ERROR_NOT_FOUND:
      return "not_found";
   case MONGO_HELPER_ERROR_INVALID_ARGUMENT:
      return "invalid_argument";
   case MONGO_HELPER_ERROR_AUTH:
      return "auth";
   case MONGO_HELPER_ERROR_CIRCUIT_OPEN:
      return "circuit_open";
   case MONGO_HELPER_ERROR_INTERNAL:
      return "internal";
   }
   return "unknown";
}

static void
mh_error_clear (mongo_helper_error_t *error)
{
   if (error) {
      error->category = MONGO_HELPER_ERROR_NONE;
      error->code = 0;
      error->message[0] = '\0';
   }
}

/* Fills `error` and returns false, so failure paths read
 * `return mh_fail (...)`.  Every message passes through the redactor: a
 * URI that slipped into a driver message never reaches the caller. */
static bool
mh_fail (mongo_helper_error_t *error,
         mongo_helper_category_t category,
         int32_t code,
         const char *fmt,
         ...) BSON_GNUC_PRINTF (4, 5);

static bool
mh_fail (mongo_helper_error_t *error,
         mongo_helper_category_t category,
         int32_t code,
         const char *fmt,
         ...)
{
   char raw[MONGO_HELPER_ERROR_MESSAGE_SIZE * 2];
   va_list ap;

   if (!error) {
      return false;
   }
   va_start (ap, fmt);
   vsnprintf (raw, sizeof raw, fmt, ap);
   va_end (ap);
   error->category = category;
   error->code = code;
   mongo_helper_redact (raw, error->message, sizeof error->message);
   return false;
}

/* Decides the category of a libmongoc / server error (error API 2). */
static mongo_helper_category_t
mh_category_of (const bson_error_t *e)
{
   switch (e->domain) {
   case MONGOC_ERROR_SERVER_SELECTION:
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_STREAM:
      if (strstr (e->message, "timed out")) {
         return MONGO_HELPER_ERROR_TIMEOUT;
      }
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_PROTOCOL:
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_CLIENT:
      if (e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) {
         return MONGO_HELPER_ERROR_AUTH;
      }
      if (e->code == MONGOC_ERROR_CLIENT_TOO_BIG) {
         return MONGO_HELPER_ERROR_INVALID_ARGUMENT;
      }
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_BSON:
   case MONGOC_ERROR_COMMAND:
   case MONGOC_ERROR_COLLECTION:
   case MONGOC_ERROR_CURSOR:
      if (e->code == MONGOC_ERROR_DUPLICATE_KEY) {
         return MONGO_HELPER_ERROR_DUPLICATE_KEY;
      }
      return MONGO_HELPER_ERROR_INVALID_ARGUMENT;
   default:
      break;
   }
   /* Server-side codes (MONGOC_ERROR_SERVER, _QUERY, _WRITE_CONCERN). */
   switch (e->code) {
   case 11000:
   case 11001:
   case 12582:
      return MONGO_HELPER_ERROR_DUPLICATE_KEY;
   case 50: /* MaxTimeMSExpired */
   case 262: /* ExceededTimeLimit */
      return MONGO_HELPER_ERROR_TIMEOUT;
   case 13: /* Unauthorized */
   case 18: /* AuthenticationFailed */
      return MONGO_HELPER_ERROR_AUTH;
   default:
      return MONGO_HELPER_ERROR_SERVER;
   }
}

/* Turns a driver error into the library's error, with advice. */
static bool
mh_fail_bson (mongo_helper_error_t *error,
              const char *what,
              const bson_error_t *e)
{
   mongo_helper_category_t cat = mh_category_of (e);
   const char *advice = "";

   switch (cat) {
   case MONGO_HELPER_ERROR_CONNECTION:
      advice = "; check that MongoDB is running and reachable at the "
               "configured hosts";
      break;
   case MONGO_HELPER_ERROR_TIMEOUT:
      advice = "; the server did not answer in time: raise the timeout or "
               "check the server's load";
      break;
   case MONGO_HELPER_ERROR_AUTH:
      advice = "; check the user name, password and authSource";
      break;
   default:
      break;
   }
   return mh_fail (error,
                   cat,
                   (int32_t) e->code,
                   "%s failed: %s%s",
                   what,
                   e->message,
                   advice);
}

/* ---- Logging -------------------------------------------------------- */

static pthread_mutex_t mh_log_lock = PTHREAD_MUTEX_INITIALIZER;
static mongo_helper_log_fn mh_log_fn;
static void *mh_log_data;
static atomic_int mh_log_max = MONGO_HELPER_LOG_ERROR;

static void
mh_log_emit (mongo_helper_log_level_t level, const char *domain, const char *msg)
{
   char clean[1024];

   if ((int) level > atomic_load (&mh_log_max)) {
      return;
   }
   mongo_helper_redact (msg, clean, sizeof clean);
   pthread_mutex_lock (&mh_log_lock);
   if (mh_log_fn) {
      mh_log_fn (level, domain, clean, mh_log_data);
   }
   pthread_mutex_unlock (&mh_log_lock);
}

static void mh_log (mongo_helper_log_level_t level, const char *fmt, ...)
   BSON_GNUC_PRINTF (2, 3);

static void
mh_log (mongo_helper_log_level_t level, const char *fmt, ...)
{
   char buf[1024];
   va_list ap;

   if ((int) level > atomic_load (&mh_log_max) || !mh_log_fn) {
      return;
   }
   va_start (ap, fmt);
   vsnprintf (buf, sizeof buf, fmt, ap);
   va_end (ap);
   mh_log_emit (level, "mongo_helper", buf);
}

/* libmongoc would print to stderr by default; route it to our sink. */
static void
mh_mongoc_log (mongoc_log_level_t level,
               const char *domain,
               const char *message,
               void *user_data)
{
   mongo_helper_log_level_t l;

   (void) user_data;
   switch (level) {
   case MONGOC_LOG_LEVEL_ERROR:
   case MONGOC_LOG_LEVEL_CRITICAL:
      l = MONGO_HELPER_LOG_ERROR;
      break;
   case MONGOC_LOG_LEVEL_WARNING:
      l = MONGO_HELPER_LOG_WARNING;
      break;
   case MONGOC_LOG_LEVEL_MESSAGE:
   case MONGOC_LOG_LEVEL_INFO:
      l = MONGO_HELPER_LOG_INFO;
      break;
   default:
      l = MONGO_HELPER_LOG_DEBUG;
      break;
   }
   mh_log_emit (l, domain, message);
}

void
mongo_helper_set_log_handler (mongo_helper_log_fn fn,
                              mongo_helper_log_level_t max_level,
                              void *user_data)
{
   pthread_once (&mh_once, mh_global_init);
   pthread_mutex_lock (&mh_log_lock);
   mh_log_fn = fn;
   mh_log_data = user_data;
   atomic_store (&mh_log_max, (int) max_level);
   pthread_mutex_unlock (&mh_log_lock);
}

static bool
mh_starts_with_ci (const char *s, const char *prefix)
{
   for (; *prefix; s++, prefix++) {
      if (tolower ((unsigned char) *s) != tolower ((unsigned char) *prefix)) {
         return false;
      }
   }
   return true;
}

size_t
mongo_helper_redact (const char *text, char *out, size_t out_size)
{
   size_t n = 0;
   const char *p = text ? text : "";

   if (!out || out_size == 0) {
      return 0;
   }
#define MH_PUT(ch)               \
   do {                          \
      if (n + 1 < out_size) {    \
         out[n++] = (ch);        \
      }                          \
   } while (0)
#define MH_PUTS(s)                               \
   do {                                          \
      for (const char *q_ = (s); *q_; q_++) {    \
         MH_PUT (*q_);                           \
      }                                          \
   } while (0)

   while (*p) {
      if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
         /* scheme://[user[:password]@]hosts...: the authority ends at the
          * first '/', '?', '#', quote or blank; the userinfo at its last
          * '@' (an unescaped '@' in a password is still covered). */
         const char *auth = p + 3, *end = auth, *at = NULL, *colon = NULL;

         while (*end && !strchr ("/?#\"' \t\r\n", *end)) {
            if (*end == '@') {
               at = end;
            }
            end++;
         }
         MH_PUTS ("://");
         if (at) {
            for (const char *q = auth; q < at; q++) {
               if (*q == ':') {
                  colon = q;
                  break;
               }
            }
            for (const char *q = auth; q < (colon ? colon : at); q++) {
               MH_PUT (*q);
            }
            if (colon) {
               MH_PUTS (":****");
            }
            p = at; /* copy from '@' on */
         } else {
            p = auth;
         }
         continue;
      }
      if (mh_starts_with_ci (p, "password=")) {
         MH_PUTS ("password=****");
         p += strlen ("password=");
         while (*p && !strchr ("&;,\"' \t\r\n", *p)) {
            p++;
         }
         continue;
      }
      MH_PUT (*p);
      p++;
   }
   out[n] = '\0';
#undef MH_PUT
#undef MH_PUTS
   return n;
}

/* ---- Configuration -------------------------------------------------- */

struct mongo_helper_config_t {
   char *uri;          /* as resolved from its source */
   char *uri_redacted;
   char *database;
   char *source;
   mongoc_uri_t *muri; /* with every setting applied */
   mongo_helper_retry_policy_t retry; /* see "Which operations retry" */
};

void
mongo_helper_config_destroy (mongo_helper_config_t *config)
{
   if (!config) {
      return;
   }
   bson_free (config->uri);
   bson_free (config->uri_redacted);
   bson_free (config->database);
   bson_free (config->source);
   mongoc_uri_destroy (config->muri);
   bson_free (config);
}

const char *
mongo_helper_config_uri (const mongo_helper_config_t *config)
{
   return config ? config->uri : NULL;
}

const char *
mongo_helper_config_uri_redacted (const mongo_helper_config_t *config)
{
   return config ? config->uri_redacted : NULL;
}

const mongoc_uri_t *
mongo_helper_config_mongoc_uri (const mongo_helper_config_t *config)
{
   return config ? config->muri : NULL;
}

const char *
mongo_helper_config_database (const mongo_helper_config_t *config)
{
   return config ? config->database : NULL;
}

const char *
mongo_helper_config_source (const mongo_helper_config_t *config)
{
   return config ? config->source : NULL;
}

/* iniparser reports syntax errors through a printf-like callback with no
 * user data; keep the last message per thread instead of on stderr. */
static _Thread_local char mh_ini_message[512];

static int
mh_ini_error (const char *fmt, ...)
{
   va_list ap;
   int r;

   va_start (ap, fmt);
   r = vsnprintf (mh_ini_message, sizeof mh_ini_message, fmt, ap);
   va_end (ap);
   return r;
}

/* One setting that can come from the INI file or the environment. */
typedef struct {
   const char *ini_key; /* in section [db] */
   const char *env;
   const char *option; /* libmongoc URI option name */
} mh_setting_t;

static const mh_setting_t mh_settings[] = {
   {"max_pool_size", "MONGO_MAX_POOL_SIZE", MONGOC_URI_MAXPOOLSIZE},
   {"min_pool_size", "MONGO_MIN_POOL_SIZE", MONGOC_URI_MINPOOLSIZE},
   {"max_idle_time_ms", "MONGO_MAX_IDLE_TIME_MS", MONGOC_URI_MAXIDLETIMEMS},
   {"connect_timeout_ms", "MONGO_CONNECT_TIMEOUT_MS", MONGOC_URI_CONNECTTIMEOUTMS},
   {"server_selection_timeout_ms",
    "MONGO_SERVER_SELECTION_TIMEOUT_MS",
    MONGOC_URI_SERVERSELECTIONTIMEOUTMS},
   {"socket_timeout_ms", "MONGO_SOCKET_TIMEOUT_MS", MONGOC_URI_SOCKETTIMEOUTMS},
   {"wait_queue_timeout_ms",
    "MONGO_WAIT_QUEUE_TIMEOUT_MS",
    MONGOC_URI_WAITQUEUETIMEOUTMS},
   {"retry_writes", "MONGO_RETRY_WRITES", MONGOC_URI_RETRYWRITES},
   {"retry_reads", "MONGO_RETRY_READS", MONGOC_URI_RETRYREADS},
   {"app_name", "MONGO_APP_NAME", MONGOC_URI_APPNAME},
};

/* A variable that is set counts as set even when empty: an empty value is
 * reported instead of silently falling through to the next source. */
static const char *
mh_env (const char *name)
{
   return getenv (name);
}

static bool
mh_parse_int32 (const char *s, int32_t *out)
{
   char *end;
   long v;

   if (!s || !*s) {
      return false;
   }
   errno = 0;
   v = strtol (s, &end, 10);
   if (errno || *end != '\0' || v < INT32_MIN || v > INT32_MAX) {
      return false;
   }
   *out = (int32_t) v;
   return true;
}

static bool
mh_parse_bool (const char *s, bool *out)
{
   static const char *yes[] = {"true", "1", "yes", "on"};
   static const char *no[] = {"false", "0", "no", "off"};

   for (size_t i = 0; s && i < 4; i++) {
      if (strcasecmp (s, yes[i]) == 0) {
         *out = true;
         return true;
      }
      if (strcasecmp (s, no[i]) == 0) {
         *out = false;
         return true;
      }
   }
   return false;
}

/* Applies one option unless the URI already names it (the URI wins). */
static bool
mh_uri_apply (mongoc_uri_t *muri,
              const char *option,
              const char *value,
              const char *source,
              mongo_helper_error_t *error)
{
   bool ok;

   if (mongoc_uri_has_option (muri, option)) {
      return true;
   }
   if (!*value) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s is empty: give it a value for %s or remove it",
                      source,
                      option);
   }
   if (mongoc_uri_option_is_int32 (option)) {
      int32_t v;
      if (!mh_parse_int32 (value, &v) || v < 0) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s='%s' is not a non-negative whole number (%s)",
                         source,
                         value,
                         option);
      }
      if (strcasecmp (option, MONGOC_URI_WAITQUEUETIMEOUTMS) == 0 && v == 0) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s=0 would let callers wait forever for a pooled "
                         "connection: use a positive number of milliseconds",
                         source);
      }
      ok = mongoc_uri_set_option_as_int32 (muri, option, v);
   } else if (mongoc_uri_option_is_bool (option)) {
      bool v;
      if (!mh_parse_bool (value, &v)) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s='%s' is not a boolean: use true or false",
                         source,
                         value);
      }
      ok = mongoc_uri_set_option_as_bool (muri, option, v);
   } else if (strcasecmp (option, MONGOC_URI_APPNAME) == 0) {
      ok = mongoc_uri_set_appname (muri, value);
   } else if (mongoc_uri_option_is_utf8 (option)) {
      ok = mongoc_uri_set_option_as_utf8 (muri, option, value);
   } else {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s names '%s', which is not a MongoDB URI option this "
                      "driver knows",
                      source,
                      option);
   }
   if (!ok) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s: the driver refused %s='%s'",
                      source,
                      option,
                      value);
   }
   return true;
}

/* Appends `s` percent-encoded (RFC 3986: everything but unreserved), so a
 * password with '@', ':', '/' or '%' survives URI parsing. */
static void
mh_pct_encode (bson_string_t *out, const char *s)
{
   static const char hex[] = "0123456789ABCDEF";

   for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
      if (isalnum (*p) || strchr ("-._~", *p)) {
         bson_string_append_c (out, (char) *p);
      } else {
         bson_string_append_c (out, '%');
         bson_string_append_c (out, hex[*p >> 4]);
         bson_string_append_c (out, hex[*p & 15]);
      }
   }
}

static const char *const mh_part_vars[] = {"MONGO_HOST",
                                           "MONGO_PORT",
                                           "MONGO_USERNAME",
                                           "MONGO_PASSWORD",
                                           "MONGO_AUTH_SOURCE",
                                           "MONGO_REPLICA_SET",
                                           "MONGO_USE_SSL",
                                           "MONGO_SSL_CA_CERTS"};

/* Builds a URI from MONGO_HOST and friends.  Returns NULL (no error) when
 * none of them is set, so the caller falls through to the default. */
static char *
mh_uri_from_parts (mongo_helper_error_t *error, bool *failed)
{
   const char *host = mh_env ("MONGO_HOST"), *port = mh_env ("MONGO_PORT");
   const char *user = mh_env ("MONGO_USERNAME");
   const char *pass = mh_env ("MONGO_PASSWORD");
   const char *db = mh_env ("MONGO_DB");
   const char *auth_source = mh_env ("MONGO_AUTH_SOURCE");
   const char *rs = mh_env ("MONGO_REPLICA_SET");
   const char *ssl = mh_env ("MONGO_USE_SSL");
   const char *ca = mh_env ("MONGO_SSL_CA_CERTS");
   bool any = false, tls = false;
   int32_t port_num = 0;
   bson_string_t *s;
   char sep = '?';

   *failed = false;
   for (size_t i = 0; i < sizeof mh_part_vars / sizeof *mh_part_vars; i++) {
      any = any || getenv (mh_part_vars[i]) != NULL;
   }
   if (!any) {
      return NULL;
   }
   *failed = true;
   if (host && !*host) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "MONGO_HOST is set but empty: give a host name or unset it");
      return NULL;
   }
   if (port && (!mh_parse_int32 (port, &port_num) || port_num < 1 ||
                port_num > 65535)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "MONGO_PORT='%s' is not a port number (1-65535)",
               port);
      return NULL;
   }
   if (pass && !(user && *user)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "MONGO_PASSWORD is set but MONGO_USERNAME is not: set both or "
               "neither");
      return NULL;
   }
   if (ssl && !mh_parse_bool (ssl, &tls)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "MONGO_USE_SSL='%s' is not a boolean: use true or false",
               ssl);
      return NULL;
   }

   s = bson_string_new ("mongodb://");
   if (user && *user) {
      mh_pct_encode (s, user);
      if (pass) {
         bson_string_append_c (s, ':');
         mh_pct_encode (s, pass);
      }
      bson_string_append_c (s, '@');
   }
   /* MONGO_PORT applies to every host that does not name its own port. */
   {
      const char *h = host ? host : "localhost";
      while (*h) {
         const char *comma = strchr (h, ',');
         size_t len = comma ? (size_t) (comma - h) : strlen (h);
         const char *bracket = memchr (h, ']', len);
         const char *colon = memchr (bracket ? bracket : h, ':',
                                     len - (size_t) ((bracket ? bracket : h) - h));
         char *one = bson_strndup (h, len);

         bson_string_append (s, one);
         if (!colon && port_num) {
            bson_string_append_printf (s, ":%d", (int) port_num);
         }
         bson_free (one);
         h += len;
         if (*h == ',') {
            bson_string_append_c (s, ',');
            h++;
         }
      }
   }
   bson_string_append_c (s, '/');
   if (db && *db) {
      mh_pct_encode (s, db);
   }
   if (auth_source && *auth_source) {
      bson_string_append_printf (s, "%cauthSource=", sep);
      mh_pct_encode (s, auth_source);
      sep = '&';
   }
   if (rs && *rs) {
      bson_string_append_printf (s, "%creplicaSet=", sep);
      mh_pct_encode (s, rs);
      sep = '&';
   }
   if (ssl) {
      bson_string_append_printf (s, "%ctls=%s", sep, tls ? "true" : "false");
      sep = '&';
   }
   if (ca && *ca) {
      bson_string_append_printf (s, "%ctlsCAFile=", sep);
      mh_pct_encode (s, ca);
   }
   *failed = false;
   return bson_string_free (s, false);
}

/* MongoDB's rules for database names, so a typo fails here and not on the
 * first write. */
static bool
mh_valid_db_name (const char *name)
{
   size_t len = strlen (name);

   return len > 0 && len < 64 && !strpbrk (name, "/\\. \"$*<>:|?");
}

/* Reads the INI file.  *dict stays NULL when the default file is absent. */
static bool
mh_load_ini (const char *config_path,
             dictionary **dict,
             char **path_used,
             mongo_helper_error_t *error)
{
   const char *path = config_path;
   const char *named_by = "the config_path argument";

   *dict = NULL;
   *path_used = NULL;
   if (!path) {
      path = mh_env ("MONGO_HELPER_CONFIG");
      named_by = "MONGO_HELPER_CONFIG";
      if (path && !*path) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "MONGO_HELPER_CONFIG is set but empty: name an INI "
                         "file or unset it");
      }
   }
   if (!path) {
      if (access (MH_DEFAULT_CONFIG_PATH, F_OK) != 0) {
         return true; /* no default file: not an error */
      }
      path = MH_DEFAULT_CONFIG_PATH;
      named_by = NULL;
   }
   if (!*path) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "the config_path argument is empty: pass NULL or a file");
   }
   if (access (path, R_OK) != 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s: cannot read the configuration file named by %s "
                      "(%s): fix the path or create the file",
                      path,
                      named_by ? named_by : "default",
                      strerror (errno));
   }
   mh_ini_message[0] = '\0';
   *dict = iniparser_load (path);
   if (!*dict) {
      /* iniparser's message ends with the offending line: drop newlines. */
      for (char *c = mh_ini_message; *c; c++) {
         if (*c == '\n') {
            *c = ' ';
         }
      }
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s: cannot parse the INI file (%s): fix the syntax; "
                      "quote values that contain ';' or '#'",
                      path,
                      mh_ini_message[0] ? mh_ini_message : "unknown error");
   }
   *path_used = bson_strdup (path);
   return true;
}

/* One of the library's own integer settings (not a URI option): the
 * environment wins over the INI key, then the default. */
static bool
mh_config_int (dictionary *ini,
               const char *ini_path,
               const char *ini_key,
               const char *env,
               int32_t def,
               int32_t min,
               int32_t max,
               int32_t *out,
               mongo_helper_error_t *error)
{
   const char *v = mh_env (env);
   char key[64], label[300];

   if (v) {
      bson_snprintf (label, sizeof label, "environment %s", env);
   } else if (ini) {
      bson_snprintf (key, sizeof key, "db:%s", ini_key);
      v = iniparser_getstring (ini, key, NULL);
      bson_snprintf (label, sizeof label, "%s [db] %s", ini_path, ini_key);
   }
   if (!v) {
      *out = def;
      return true;
   }
   if (!mh_parse_int32 (v, out) || *out < min || *out > max) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s='%s' is not a whole number from %d to %d",
                      label,
                      v,
                      (int) min,
                      (int) max);
   }
   return true;
}

mongo_helper_config_t *
mongo_helper_config_new (const char *config_path,
                         const char *uri,
                         mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg = NULL;
   dictionary *ini = NULL;
   char *ini_path = NULL, *built = NULL, *conn_opts = NULL;
   const char *chosen = NULL, *v;
   char source[256], label[300];
   bson_error_t berr;
   bool failed = false;

   pthread_once (&mh_once, mh_global_init);
   mh_error_clear (error);
   if (!mh_load_ini (config_path, &ini, &ini_path, error)) {
      goto fail;
   }

   /* 1-6: the first URI source that is set wins. */
   if (uri) {
      chosen = uri;
      bson_snprintf (source, sizeof source, "explicit URI argument");
   } else if ((v = mh_env ("MONGO_CACHE_URI"))) {
      chosen = v;
      bson_snprintf (source, sizeof source, "environment MONGO_CACHE_URI");
   } else if (ini && (v = iniparser_getstring (ini, "db:mongo_uri", NULL))) {
      chosen = v;
      bson_snprintf (source, sizeof source, "%s [db] mongo_uri", ini_path);
   } else if ((v = mh_env ("MONGO_URI"))) {
      chosen = v;
      bson_snprintf (source, sizeof source, "environment MONGO_URI");
   } else if ((built = mh_uri_from_parts (error, &failed))) {
      chosen = built;
      bson_snprintf (source,
                     sizeof source,
                     "environment MONGO_HOST/MONGO_PORT/MONGO_USERNAME/...");
   } else if (failed) {
      goto fail;
   } else {
      chosen = MH_DEFAULT_URI;
      bson_snprintf (source, sizeof source, "default %s", MH_DEFAULT_URI);
   }
   if (!*chosen) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s is empty: give a mongodb:// URI or remove it",
               source);
      goto fail;
   }

   cfg = bson_malloc0 (sizeof *cfg);
   cfg->uri = bson_strdup (chosen);
   cfg->source = bson_strdup (source);
   cfg->uri_redacted = bson_malloc (strlen (chosen) + 16);
   mongo_helper_redact (chosen, cfg->uri_redacted, strlen (chosen) + 16);
   cfg->muri = mongoc_uri_new_with_error (chosen, &berr);
   if (!cfg->muri) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: invalid MongoDB URI '%s' (%s): expected "
               "mongodb://[user:password@]host[:port][/database][?options]",
               source,
               cfg->uri_redacted,
               berr.message);
      goto fail;
   }

   /* A waitQueueTimeoutMS of 0 in the URI itself means "forever" too. */
   if (mongoc_uri_has_option (cfg->muri, MONGOC_URI_WAITQUEUETIMEOUTMS) &&
       mongoc_uri_get_option_as_int32 (
          cfg->muri, MONGOC_URI_WAITQUEUETIMEOUTMS, 0) <= 0) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: waitQueueTimeoutMS must be positive, or callers could "
               "wait forever for a pooled connection",
               source);
      goto fail;
   }

   /* Settings: URI, then environment, then INI key, then
    * connection_options, then defaults. */
   for (size_t i = 0; i < sizeof mh_settings / sizeof *mh_settings; i++) {
      const mh_setting_t *s = &mh_settings[i];
      char key[64];

      if ((v = mh_env (s->env))) {
         bson_snprintf (label, sizeof label, "environment %s", s->env);
      } else if (ini) {
         bson_snprintf (key, sizeof key, "db:%s", s->ini_key);
         v = iniparser_getstring (ini, key, NULL);
         bson_snprintf (label, sizeof label, "%s [db] %s", ini_path, s->ini_key);
      }
      if (v && !mh_uri_apply (cfg->muri, s->option, v, label, error)) {
         goto fail;
      }
   }
   if (ini && (v = iniparser_getstring (ini, "db:connection_options", NULL))) {
      char *save = NULL;

      conn_opts = bson_strdup (v);
      for (char *kv = strtok_r (conn_opts, "&", &save); kv;
           kv = strtok_r (NULL, "&", &save)) {
         char *eq = strchr (kv, '=');

         bson_snprintf (
            label, sizeof label, "%s [db] connection_options", ini_path);
         if (!eq || eq == kv) {
            mh_fail (error,
                     MONGO_HELPER_ERROR_CONFIG,
                     0,
                     "%s: '%s' is not of the form option=value",
                     label,
                     kv);
            goto fail;
         }
         *eq = '\0';
         if (!mh_uri_apply (cfg->muri, kv, eq + 1, label, error)) {
            goto fail;
         }
      }
   }
   if (!mongoc_uri_has_option (cfg->muri, MONGOC_URI_WAITQUEUETIMEOUTMS)) {
      mongoc_uri_set_option_as_int32 (cfg->muri,
                                      MONGOC_URI_WAITQUEUETIMEOUTMS,
                                      MONGO_HELPER_DEFAULT_POOL_WAIT_MS);
   }

   /* Retries and the circuit breaker are the library's, not the URI's. */
   if (!mh_config_int (ini, ini_path, "retry_attempts", "MONGO_RETRY_ATTEMPTS",
                       MONGO_HELPER_DEFAULT_RETRY_ATTEMPTS, 1, 10,
                       &cfg->retry.attempts, error) ||
       !mh_config_int (ini, ini_path, "retry_base_ms", "MONGO_RETRY_BASE_MS",
                       MONGO_HELPER_DEFAULT_RETRY_BASE_MS, 0, 60000,
                       &cfg->retry.base_ms, error) ||
       !mh_config_int (ini, ini_path, "retry_max_ms", "MONGO_RETRY_MAX_MS",
                       MONGO_HELPER_DEFAULT_RETRY_MAX_MS, 0, 600000,
                       &cfg->retry.max_ms, error) ||
       !mh_config_int (ini, ini_path, "circuit_failure_threshold",
                       "MONGO_CIRCUIT_FAILURE_THRESHOLD",
                       MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD, 0, 1000000,
                       &cfg->retry.circuit_threshold, error) ||
       !mh_config_int (ini, ini_path, "circuit_cooldown_ms",
                       "MONGO_CIRCUIT_COOLDOWN_MS",
                       MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS, 1, 3600000,
                       &cfg->retry.circuit_cooldown_ms, error)) {
      goto fail;
   }

   /* The default database: URI path, MONGO_DB, [db] database. */
   if ((v = mongoc_uri_get_database (cfg->muri)) && *v) {
      bson_snprintf (label, sizeof label, "%s (path of the URI)", source);
   } else if ((v = mh_env ("MONGO_DB"))) {
      bson_snprintf (label, sizeof label, "environment MONGO_DB");
   } else if (ini && (v = iniparser_getstring (ini, "db:database", NULL))) {
      bson_snprintf (label, sizeof label, "%s [db] database", ini_path);
   } else {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "no default database: put one in the URI's path "
               "(mongodb://host:27017/mydb), or set MONGO_DB, or set "
               "'database' in section [db] of the INI file (URI from %s)",
               source);
      goto fail;
   }
   if (!mh_valid_db_name (v)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: '%s' is not a valid database name (1-63 characters, none "
               "of / \\ . space \" $ * < > : | ?)",
               label,
               v);
      goto fail;
   }
   cfg->database = bson_strdup (v);

   iniparser_freedict (ini);
   bson_free (ini_path);
   bson_free (built);
   bson_free (conn_opts);
   return cfg;

fail:
   if (ini) {
      iniparser_freedict (ini);
   }
   bson_free (ini_path);
   bson_free (built);
   bson_free (conn_opts);
   mongo_helper_config_destroy (cfg);
   return NULL;
}

/* ---- Singleton ------------------------------------------------------ */

/* Hooks into the pool and execution paths, implemented under "Resilience
 * and metrics". */
static void mh_resil_pool_created (mongoc_client_pool_t *pool,
                                   const mongo_helper_config_t *cfg);
static void mh_pool_wait_begin (void);
static void mh_pool_wait_end (bool got);
static void mh_pool_returned (void);
static void mh_pool_stats_after_fork (void);

/* One pool and its configuration.  Reference-counted: the singleton holds
 * one reference, every thread slot and acquired connection another, so a
 * shutdown never frees a pool under a connection still out. */
typedef struct {
   mongoc_client_pool_t *pool;
   mongo_helper_config_t *config;
   atomic_int refs;
   unsigned fork_epoch; /* a pool made before a fork is never touched */
} mh_pool_t;

/* A thread's cached client (see mongo_helper_database()). */
typedef struct mh_slot {
   mh_pool_t *owner; /* NULL once given back */
   mongoc_client_t *client;
   mongoc_database_t *db;
   struct mh_slot *prev, *next; /* registry, under mh_g.lock */
   bool registered;
} mh_slot_t;

struct mongo_helper_conn_t {
   mh_pool_t *owner;
   mongoc_client_t *client;
   mongoc_database_t *db;
};

/* What a forked child inherited and must neither use nor free: kept
 * reachable so leak checkers in the child do not report it. */
typedef struct mh_orphan {
   void *what;
   struct mh_orphan *next;
} mh_orphan_t;

static struct {
   pthread_mutex_t lock;
   mh_pool_t *_Atomic current;
   mh_slot_t *slots;
   pthread_key_t slot_key;
   uint32_t generation;
   mh_orphan_t *orphans;
   /* health check client, see mongo_helper_ping() */
   pthread_mutex_t health_lock;
   mongoc_client_t *health_client;
   int32_t health_timeout_ms;
} mh_g = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .health_lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_uint mh_fork_epoch;

static void
mh_orphan (void *what)
{
   mh_orphan_t *o;

   if (!what) {
      return;
   }
   o = malloc (sizeof *o);
   if (o) {
      o->what = what;
      o->next = mh_g.orphans;
      mh_g.orphans = o;
   }
}

static void
mh_pool_unref (mh_pool_t *p)
{
   if (p && atomic_fetch_sub (&p->refs, 1) == 1) {
      mongoc_client_pool_destroy (p->pool);
      mongo_helper_config_destroy (p->config);
      bson_free (p);
   }
}

/* Gives a slot's client back to its pool. */
static void
mh_slot_drop (mh_slot_t *s)
{
   if (!s->owner) {
      return;
   }
   mongoc_database_destroy (s->db);
   if (s->owner->fork_epoch == atomic_load (&mh_fork_epoch)) {
      mongoc_client_pool_push (s->owner->pool, s->client);
      mh_pool_returned ();
      mh_pool_unref (s->owner);
   } else {
      mh_orphan (s->client); /* the parent's socket: leave it alone */
   }
   s->owner = NULL;
   s->client = NULL;
   s->db = NULL;
}

static void
mh_slot_unregister (mh_slot_t *s)
{
   if (!s->registered) {
      return;
   }
   if (s->prev) {
      s->prev->next = s->next;
   } else {
      mh_g.slots = s->next;
   }
   if (s->next) {
      s->next->prev = s->prev;
   }
   s->prev = s->next = NULL;
   s->registered = false;
}

/* Thread exit: the client goes back to the pool. */
static void
mh_slot_destructor (void *arg)
{
   mh_slot_t *s = arg;

   pthread_mutex_lock (&mh_g.lock);
   mh_slot_drop (s);
   mh_slot_unregister (s);
   pthread_mutex_unlock (&mh_g.lock);
   bson_free (s);
}

/* fork(): hold the lock across it so the child sees consistent state. */
static void
mh_atfork_prepare (void)
{
   pthread_mutex_lock (&mh_g.lock);
   pthread_mutex_lock (&mh_g.health_lock);
}

static void
mh_atfork_parent (void)
{
   pthread_mutex_unlock (&mh_g.health_lock);
   pthread_mutex_unlock (&mh_g.lock);
}

/* The child inherits the parent's pool and sockets.  Using them would
 * interleave bytes with the parent; destroying them would send endSessions
 * on the parent's connections and join monitor threads that do not exist
 * here.  So the child forgets them and builds its own on first use. */
static void
mh_atfork_child (void)
{
   mh_pool_t *p = atomic_load (&mh_g.current);

   atomic_fetch_add (&mh_fork_epoch, 1);
   mh_pool_stats_after_fork ();
   if (p) {
      mh_orphan (p);
      atomic_store (&mh_g.current, NULL);
   }
   /* Slots of threads that do not exist in the child stay reachable. */
   for (mh_slot_t *s = mh_g.slots; s; s = s->next) {
      mh_orphan (s);
   }
   mh_g.slots = NULL;
   if (mh_g.health_client) {
      mh_orphan (mh_g.health_client);
      mh_g.health_client = NULL;
   }
   pthread_mutex_unlock (&mh_g.health_lock);
   pthread_mutex_unlock (&mh_g.lock);
}

static void
mh_global_init (void)
{
   mongoc_init ();
   mongoc_log_set_handler (mh_mongoc_log, NULL);
   iniparser_set_error_callback (mh_ini_error);
   pthread_key_create (&mh_g.slot_key, mh_slot_destructor);
   pthread_atfork (mh_atfork_prepare, mh_atfork_parent, mh_atfork_child);
}

/* Creates the singleton's pool; called with mh_g.lock held. */
static bool
mh_start_locked (const char *config_path,
                 const char *uri,
                 mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg;
   mh_pool_t *p;
   bson_error_t berr;

   if (atomic_load (&mh_g.current)) {
      return true;
   }
   cfg = mongo_helper_config_new (config_path, uri, error);
   if (!cfg) {
      return false;
   }
   p = bson_malloc0 (sizeof *p);
   p->pool = mongoc_client_pool_new_with_error (cfg->muri, &berr);
   if (!p->pool) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               (int32_t) berr.code,
               "%s: the driver cannot build a pool from this URI (%s)",
               cfg->source,
               berr.message);
      mongo_helper_config_destroy (cfg);
      bson_free (p);
      return false;
   }
   /* Error API 2 puts server errors in their own domain, which is what
    * mh_category_of() relies on. */
   mongoc_client_pool_set_error_api (p->pool, MONGOC_ERROR_API_VERSION_2);
   /* APM callbacks must be on the pool before its first client is popped. */
   mh_resil_pool_created (p->pool, cfg);
   p->config = cfg;
   p->fork_epoch = atomic_load (&mh_fork_epoch);
   atomic_init (&p->refs, 1);
   mh_g.generation++;
   atomic_store (&mh_g.current, p);
   mh_log (MONGO_HELPER_LOG_INFO,
           "pool created for %s (database %s, from %s)",
           cfg->uri_redacted,
           cfg->database,
           cfg->source);
   return true;
}

static bool
mh_start (const char *config_path, const char *uri, mongo_helper_error_t *error)
{
   bool ok;

   pthread_once (&mh_once, mh_global_init);
   mh_error_clear (error);
   pthread_mutex_lock (&mh_g.lock);
   ok = mh_start_locked (config_path, uri, error);
   pthread_mutex_unlock (&mh_g.lock);
   return ok;
}

bool
mongo_helper_init (const char *config_path, mongo_helper_error_t *error)
{
   return mh_start (config_path, NULL, error);
}

bool
mongo_helper_init_uri (const char *uri, mongo_helper_error_t *error)
{
   if (!uri || !*uri) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_init_uri: the URI is NULL or empty");
   }
   return mh_start (NULL, uri, error);
}

void
mongo_helper_status (mongo_helper_status_t *status)
{
   mh_pool_t *p;

   if (!status) {
      return;
   }
   memset (status, 0, sizeof *status);
   pthread_once (&mh_once, mh_global_init);
   pthread_mutex_lock (&mh_g.lock);
   p = atomic_load (&mh_g.current);
   status->generation = mh_g.generation;
   if (p) {
      status->initialized = true;
      bson_strncpy (status->uri, p->config->uri_redacted, sizeof status->uri);
      bson_strncpy (status->source, p->config->source, sizeof status->source);
      bson_strncpy (
         status->database, p->config->database, sizeof status->database);
      status->max_pool_size = mongoc_uri_get_option_as_int32 (
         p->config->muri, MONGOC_URI_MAXPOOLSIZE, 100);
      status->pool_wait_ms = mongoc_uri_get_option_as_int32 (
         p->config->muri, MONGOC_URI_WAITQUEUETIMEOUTMS, 0);
   }
   pthread_mutex_unlock (&mh_g.lock);
}

void
mongo_helper_shutdown (void)
{
   mh_pool_t *p;
   mh_slot_t *mine;

   pthread_once (&mh_once, mh_global_init);
   pthread_mutex_lock (&mh_g.lock);
   while (mh_g.slots) {
      mh_slot_t *s = mh_g.slots;
      mh_slot_drop (s);
      mh_slot_unregister (s);
   }
   mine = pthread_getspecific (mh_g.slot_key);
   if (mine) {
      pthread_setspecific (mh_g.slot_key, NULL);
      bson_free (mine);
   }
   p = atomic_load (&mh_g.current);
   atomic_store (&mh_g.current, NULL);
   mh_pool_unref (p);
   pthread_mutex_unlock (&mh_g.lock);

   pthread_mutex_lock (&mh_g.health_lock);
   mongoc_client_destroy (mh_g.health_client);
   mh_g.health_client = NULL;
   pthread_mutex_unlock (&mh_g.health_lock);
}

/* Takes a reference on the current pool, creating it if needed. */
static mh_pool_t *
mh_pool_get (mongo_helper_error_t *error)
{
   mh_pool_t *p;

   pthread_mutex_lock (&mh_g.lock);
   if (!mh_start_locked (NULL, NULL, error)) {
      pthread_mutex_unlock (&mh_g.lock);
      return NULL;
   }
   p = atomic_load (&mh_g.current);
   atomic_fetch_add (&p->refs, 1);
   pthread_mutex_unlock (&mh_g.lock);
   return p;
}

/* Pops a client; waits at most waitQueueTimeoutMS (always set). */
static mongoc_client_t *
mh_pool_pop (mh_pool_t *p, mongo_helper_error_t *error)
{
   mongoc_client_t *c;

   mh_pool_wait_begin ();
   c = mongoc_client_pool_pop (p->pool);
   mh_pool_wait_end (c != NULL);
   if (!c) {
      mh_fail (error,
               MONGO_HELPER_ERROR_TIMEOUT,
               0,
               "no pooled connection became free within %d ms (maxPoolSize "
               "%d): release connections sooner, or raise max_pool_size or "
               "wait_queue_timeout_ms",
               (int) mongoc_uri_get_option_as_int32 (
                  p->config->muri, MONGOC_URI_WAITQUEUETIMEOUTMS, 0),
               (int) mongoc_uri_get_option_as_int32 (
                  p->config->muri, MONGOC_URI_MAXPOOLSIZE, 100));
   }
   return c;
}

/* The calling thread's slot, refreshed if the singleton changed. */
static mh_slot_t *
mh_thread_slot (mongo_helper_error_t *error)
{
   mh_slot_t *s;
   mh_pool_t *p;
   mongoc_client_t *c;

   pthread_once (&mh_once, mh_global_init);
   s = pthread_getspecific (mh_g.slot_key);
   if (s && s->owner && s->owner == atomic_load (&mh_g.current) &&
       s->owner->fork_epoch == atomic_load (&mh_fork_epoch)) {
      mh_error_clear (error);
      return s; /* the fast path: no lock, no pool traffic */
   }
   mh_error_clear (error);
   if (s && s->owner) {
      pthread_mutex_lock (&mh_g.lock);
      mh_slot_drop (s); /* stale: a re-init or a fork happened */
      pthread_mutex_unlock (&mh_g.lock);
   }
   p = mh_pool_get (error);
   if (!p) {
      return NULL;
   }
   c = mh_pool_pop (p, error);
   if (!c) {
      mh_pool_unref (p);
      return NULL;
   }
   if (!s) {
      s = bson_malloc0 (sizeof *s);
      pthread_setspecific (mh_g.slot_key, s);
   }
   s->owner = p;
   s->client = c;
   s->db = mongoc_client_get_database (c, p->config->database);
   pthread_mutex_lock (&mh_g.lock);
   if (!s->registered) {
      s->next = mh_g.slots;
      if (mh_g.slots) {
         mh_g.slots->prev = s;
      }
      mh_g.slots = s;
      s->registered = true;
   }
   pthread_mutex_unlock (&mh_g.lock);
   return s;
}

mongoc_database_t *
mongo_helper_database (mongo_helper_error_t *error)
{
   mh_slot_t *s = mh_thread_slot (error);

   return s ? s->db : NULL;
}

void
mongo_helper_thread_release (void)
{
   mh_slot_t *s;

   pthread_once (&mh_once, mh_global_init);
   s = pthread_getspecific (mh_g.slot_key);
   if (s) {
      pthread_mutex_lock (&mh_g.lock);
      mh_slot_drop (s);
      pthread_mutex_unlock (&mh_g.lock);
   }
}

mongo_helper_conn_t *
mongo_helper_acquire (mongo_helper_error_t *error)
{
   mongo_helper_conn_t *conn;
   mh_pool_t *p;
   mongoc_client_t *c;

   pthread_once (&mh_once, mh_global_init);
   mh_error_clear (error);
   p = mh_pool_get (error);
   if (!p) {
      return NULL;
   }
   c = mh_pool_pop (p, error);
   if (!c) {
      mh_pool_unref (p);
      return NULL;
   }
   conn = bson_malloc0 (sizeof *conn);
   conn->owner = p;
   conn->client = c;
   conn->db = mongoc_client_get_database (c, p->config->database);
   return conn;
}

mongoc_client_t *
mongo_helper_conn_client (mongo_helper_conn_t *conn)
{
   return conn ? conn->client : NULL;
}

mongoc_database_t *
mongo_helper_conn_database (mongo_helper_conn_t *conn)
{
   return conn ? conn->db : NULL;
}

void
mongo_helper_release (mongo_helper_conn_t *conn)
{
   if (!conn) {
      return;
   }
   mongoc_database_destroy (conn->db);
   if (conn->owner->fork_epoch == atomic_load (&mh_fork_epoch)) {
      mongoc_client_pool_push (conn->owner->pool, conn->client);
      mh_pool_returned ();
      mh_pool_unref (conn->owner);
   } else {
      pthread_mutex_lock (&mh_g.lock);
      mh_orphan (conn->client);
      pthread_mutex_unlock (&mh_g.lock);
   }
   bson_free (conn);
}

/* ---- Execution path (internal) ------------------------------------- */

/* Every operation of the library runs through mh_run(), so that error
 * mapping, retries and metrics live in one place.  An operation is a
 * function of the thread's client and default database that reports
 * failure in a bson_error_t. */
typedef bool (*mh_op_fn) (mongoc_client_t *client,
                          mongoc_database_t *db,
                          void *ctx,
                          bson_error_t *berr);

/* What an operation is, so the path knows whether repeating it is safe. */
enum {
   MH_OP_READ = 1u << 0,       /* reads only: safe to repeat */
   MH_OP_WRITE = 1u << 1,      /* writes: repeated only where the driver's
                                  retryable-writes protocol makes it safe */
   MH_OP_IDEMPOTENT = 1u << 2, /* a write that may be repeated (e.g. an
                                  upsert by _id, createIndexes) */
};

/* Implemented under "Resilience and metrics". */
static bool mh_breaker_admit (bool *probe, int64_t *wait_ms, int32_t *failures);
static void mh_breaker_record (const bson_error_t *e, bool probe);
static void mh_breaker_abstain (bool probe);
static bool mh_breaker_closed (void);
static void mh_backoff_sleep (const mongo_helper_retry_policy_t *pol,
                              int32_t attempt);
static void mh_metrics_op (const char *what,
                           int64_t t0_us,
                           int32_t retries,
                           mongo_helper_category_t cat);

/* Runs `fn`, retrying transient failures of reads and idempotent writes
 * with backoff (see "Which operations retry" in the header), behind the
 * circuit breaker, and records metrics for every call. */
static bool
mh_run (const char *what,
        unsigned flags,
        mh_op_fn fn,
        void *ctx,
        mongo_helper_error_t *error)
{
   const bool may_retry = (flags & (MH_OP_READ | MH_OP_IDEMPOTENT)) != 0;
   const int64_t t0 = bson_get_monotonic_time ();
   mongo_helper_error_t local;
   mongo_helper_retry_policy_t pol;
   mh_slot_t *s;
   bson_error_t berr;
   int32_t attempt = 0, failures, socket_ms;
   int64_t wait_ms, t_attempt;
   bool probe;

   if (!error) {
      error = &local;
   }
   if (!mh_breaker_admit (&probe, &wait_ms, &failures)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CIRCUIT_OPEN,
               0,
               "%s failed: circuit open after %d consecutive connection "
               "failures; failing fast for %" PRId64 " more ms: check that "
               "MongoDB is running and reachable",
               what,
               (int) failures,
               wait_ms);
      mh_metrics_op (what, t0, 0, MONGO_HELPER_ERROR_CIRCUIT_OPEN);
      return false;
   }
   for (;;) {
      s = mh_thread_slot (error);
      if (!s) {
         mh_breaker_abstain (probe);
         mh_metrics_op (what, t0, attempt, error->category);
         return false;
      }
      pol = s->owner->config->retry;
      socket_ms = mongoc_uri_get_option_as_int32 (
         s->owner->config->muri, MONGOC_URI_SOCKETTIMEOUTMS, 0);
      attempt++;
      memset (&berr, 0, sizeof berr);
      t_attempt = bson_get_monotonic_time ();
      if (fn (s->client, s->db, ctx, &berr)) {
         mh_breaker_record (NULL, probe);
         mh_metrics_op (what, t0, attempt - 1, MONGO_HELPER_ERROR_NONE);
         return true;
      }
      /* libmongoc says "socket error or timeout" for both; the clock tells
       * them apart, so the caller learns it was a timeout. */
      if (berr.domain == MONGOC_ERROR_STREAM && socket_ms > 0 &&
          bson_get_monotonic_time () - t_attempt >= (int64_t) socket_ms * 950) {
         size_t len = strlen (berr.message);
         bson_snprintf (berr.message + len,
                        sizeof berr.message - len,
                        " (timed out after socketTimeoutMS=%d)",
                        (int) socket_ms);
      }
      mh_breaker_record (&berr, probe);
      probe = false; /* the probe has given its verdict */
      if (!may_retry || attempt >= pol.attempts ||
          !mongo_helper_error_is_transient (&berr) || !mh_breaker_closed ()) {
         break;
      }
      mh_backoff_sleep (&pol, attempt);
   }
   mh_fail_bson (error, what, &berr);
   mh_metrics_op (what, t0, attempt - 1, error->category);
   return false;
}

/* ---- Health --------------------------------------------------------- */

/* Runs `cmd` on admin through the dedicated health client, created on
 * demand with the pool's URI but short timeouts.  A single-threaded client
 * with serverSelectionTryOnce fails at once on a refused connection; it is
 * rebuilt after any failure so a server that comes back is seen at once
 * instead of after libmongoc's 5 s cooldown. */
static bool
mh_health_command (const char *cmd_name,
                   int32_t timeout_ms,
                   bson_t *reply,
                   int64_t *elapsed_us,
                   mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg;
   mh_pool_t *p;
   bson_t cmd = BSON_INITIALIZER;
   bson_error_t berr;
   int64_t t0;
   bool ok;

   if (timeout_ms <= 0) {
      timeout_ms = MH_HEALTH_DEFAULT_MS;
   }
   p = mh_pool_get (error);
   if (!p) {
      bson_init (reply);
      return false;
   }
   cfg = p->config;
   pthread_mutex_lock (&mh_g.health_lock);
   if (mh_g.health_client && mh_g.health_timeout_ms != timeout_ms) {
      mongoc_client_destroy (mh_g.health_client);
      mh_g.health_client = NULL;
   }
   if (!mh_g.health_client) {
      mongoc_uri_t *u = mongoc_uri_copy (cfg->muri);

      mongoc_uri_set_option_as_int32 (
         u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
      mongoc_uri_set_option_as_int32 (u, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
      mongoc_uri_set_option_as_int32 (u, MONGOC_URI_SOCKETTIMEOUTMS, timeout_ms);
      mongoc_uri_set_option_as_bool (u, MONGOC_URI_SERVERSELECTIONTRYONCE, true);
      mh_g.health_client = mongoc_client_new_from_uri_with_error (u, &berr);
      mongoc_uri_destroy (u);
      if (!mh_g.health_client) {
         pthread_mutex_unlock (&mh_g.health_lock);
         mh_pool_unref (p);
         bson_init (reply);
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         (int32_t) berr.code,
                         "%s: cannot build a client (%s)",
                         cfg->source,
                         berr.message);
      }
      mongoc_client_set_error_api (mh_g.health_client,
                                   MONGOC_ERROR_API_VERSION_2);
      mh_g.health_timeout_ms = timeout_ms;
   }
   BSON_APPEND_INT32 (&cmd, cmd_name, 1);
   t0 = bson_get_monotonic_time ();
   ok = mongoc_client_command_simple (
      mh_g.health_client, "admin", &cmd, NULL, reply, &berr);
   if (elapsed_us) {
      *elapsed_us = bson_get_monotonic_time () - t0;
   }
   if (!ok) {
      mongoc_client_destroy (mh_g.health_client);
      mh_g.health_client = NULL;
   }
   pthread_mutex_unlock (&mh_g.health_lock);
   bson_destroy (&cmd);
   if (!ok) {
      char what[400];
      bson_snprintf (what,
                     sizeof what,
                     "%s to %s (limit %d ms)",
                     cmd_name,
                     cfg->uri_redacted,
                     (int) timeout_ms);
      mh_fail_bson (error, what, &berr);
   }
   mh_pool_unref (p);
   return ok;
}

bool
mongo_helper_ping (int32_t timeout_ms, mongo_helper_error_t *error)
{
   bson_t reply;
   bool ok;

   pthread_once (&mh_once, mh_global_init);
   mh_error_clear (error);
   ok = mh_health_command ("ping", timeout_ms, &reply, NULL, error);
   bson_destroy (&reply);
   return ok;
}

bool
mongo_helper_server_info (int32_t timeout_ms,
                          mongo_helper_server_info_t *info,
                          mongo_helper_error_t *error)
{
   bson_t reply;
   bson_iter_t it;
   int64_t rtt = 0;

   pthread_once (&mh_once, mh_global_init);
   mh_error_clear (error);
   if (!info) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_server_info: info is NULL");
   }
   memset (info, 0, sizeof *info);
   if (!mh_health_command ("hello", timeout_ms, &reply, &rtt, error)) {
      bson_destroy (&reply);
      return false;
   }
   info->round_trip_us = rtt;
   bson_strncpy (info->topology, "Single", sizeof info->topology);
   if (bson_iter_init_find (&it, &reply, "setName") &&
       BSON_ITER_HOLDS_UTF8 (&it)) {
      bson_strncpy (info->topology, "ReplicaSet", sizeof info->topology);
      bson_strncpy (info->set_name,
                    bson_iter_utf8 (&it, NULL),
                    sizeof info->set_name);
   }
   if (bson_iter_init_find (&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8 (&it) &&
       strcmp (bson_iter_utf8 (&it, NULL), "isdbgrid") == 0) {
      bson_strncpy (info->topology, "Sharded", sizeof info->topology);
   }
   if (bson_iter_init_find (&it, &reply, "maxWireVersion") &&
       BSON_ITER_HOLDS_INT (&it)) {
      info->max_wire_version = (int32_t) bson_iter_as_int64 (&it);
   }
   bson_destroy (&reply);
   if (!mh_health_command ("buildInfo", timeout_ms, &reply, NULL, error)) {
      bson_destroy (&reply);
      return false;
   }
   if (bson_iter_init_find (&it, &reply, "version") &&
       BSON_ITER_HOLDS_UTF8 (&it)) {
      bson_strncpy (
         info->version, bson_iter_utf8 (&it, NULL), sizeof info->version);
   }
   bson_destroy (&reply);
   return true;
}

/* ---- Commands ------------------------------------------------------- */

typedef struct {
   const bson_t *command;
   bson_t *reply; /* always initialised */
} mh_command_ctx_t;

static bool
mh_command_op (mongoc_client_t *client,
               mongoc_database_t *db,
               void *ctx,
               bson_error_t *berr)
{
   mh_command_ctx_t *c = ctx;

   (void) client;
   bson_destroy (c->reply); /* the driver initialises it again */
   return mongoc_database_command_simple (db, c->command, NULL, c->reply, berr);
}

bool
mongo_helper_command (const bson_t *command,
                      bson_t *reply,
                      mongo_helper_error_t *error)
{
   mh_command_ctx_t ctx;
   bson_t scratch;
   bson_iter_t it;
   char what[96];
   bool ok;

   if (reply) {
      bson_init (reply);
   }
   if (!command || bson_empty (command) || !bson_iter_init (&it, command) ||
       !bson_iter_next (&it)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_command: the command is NULL or empty");
   }
   bson_snprintf (what, sizeof what, "command '%s'", bson_iter_key (&it));
   bson_init (&scratch);
   ctx.command = command;
   ctx.reply = reply ? reply : &scratch;
   ok = mh_run (what, MH_OP_WRITE, mh_command_op, &ctx, error);
   bson_destroy (&scratch);
   return ok;
}

/* ---- Resilience and metrics ---------------------------------------- */

void
mongo_helper_config_retry_policy (const mongo_helper_config_t *config,
                                  mongo_helper_retry_policy_t *policy)
{
   if (!policy) {
      return;
   }
   memset (policy, 0, sizeof *policy);
   if (config) {
      *policy = config->retry;
   }
}

/* Server codes MongoDB documents as retryable (retryable reads/writes
 * specifications): the primary stepped down or is shutting down, or the
 * network between servers failed. */
static bool
mh_code_is_transient (uint32_t code)
{
   switch (code) {
   case 6:     /* HostUnreachable */
   case 7:     /* HostNotFound */
   case 89:    /* NetworkTimeout */
   case 91:    /* ShutdownInProgress */
   case 134:   /* ReadConcernMajorityNotAvailableYet */
   case 189:   /* PrimarySteppedDown */
   case 262:   /* ExceededTimeLimit */
   case 9001:  /* SocketException */
   case 10107: /* NotWritablePrimary */
   case 11600: /* InterruptedAtShutdown */
   case 11602: /* InterruptedDueToReplStateChange */
   case 13435: /* NotPrimaryNoSecondaryOk */
   case 13436: /* NotPrimaryOrSecondary */
      return true;
   default:
      return false;
   }
}

bool
mongo_helper_error_is_transient (const bson_error_t *error)
{
   if (!error) {
      return false;
   }
   switch (error->domain) {
   case MONGOC_ERROR_STREAM:
   case MONGOC_ERROR_SERVER_SELECTION:
      return true;
   /* Server-reported codes: only these domains carry the server's own
    * numbers (driver codes overlap them numerically). */
   case MONGOC_ERROR_SERVER:
   case MONGOC_ERROR_QUERY:
   case MONGOC_ERROR_WRITE_CONCERN:
      return mh_code_is_transient (error->code);
   default:
      return false;
   }
}

/* A failure to reach or talk to a server at all: what the breaker counts.
 * Garbage on the wire (protocol errors) counts too: the server is not
 * usable either way. */
static bool
mh_is_connection_failure (const bson_error_t *e)
{
   return e->domain == MONGOC_ERROR_STREAM ||
          e->domain == MONGOC_ERROR_SERVER_SELECTION ||
          e->domain == MONGOC_ERROR_PROTOCOL;
}

/* -- circuit breaker -- */

static struct {
   pthread_mutex_t lock;
   mongo_helper_circuit_state_t state;
   int32_t consecutive;
   int64_t opened_mono_us;
   int64_t opened_wall_ms;
   bool probe_in_flight;
   uint64_t rejected;
   int32_t threshold;
   int32_t cooldown_ms;
} mh_cb = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .threshold = MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD,
           .cooldown_ms = MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS};

static int64_t
mh_wall_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Decides whether a call may go out.  *probe is set for the one call that
 * tests a half-open circuit.  On refusal, *wait_ms says how long the
 * circuit stays open. */
static bool
mh_breaker_admit (bool *probe, int64_t *wait_ms, int32_t *failures)
{
   bool ok = true;
   int64_t now = bson_get_monotonic_time ();

   *probe = false;
   *wait_ms = 0;
   pthread_mutex_lock (&mh_cb.lock);
   *failures = mh_cb.consecutive;
   if (mh_cb.state == MONGO_HELPER_CIRCUIT_OPEN) {
      int64_t left =
         mh_cb.opened_mono_us + (int64_t) mh_cb.cooldown_ms * 1000 - now;
      if (left > 0) {
         ok = false;
         *wait_ms = (left + 999) / 1000;
      } else {
         mh_cb.state = MONGO_HELPER_CIRCUIT_HALF_OPEN;
         mh_cb.probe_in_flight = false;
      }
   }
   if (ok && mh_cb.state == MONGO_HELPER_CIRCUIT_HALF_OPEN) {
      if (mh_cb.probe_in_flight) {
         ok = false; /* another call is probing: fail fast meanwhile */
      } else {
         mh_cb.probe_in_flight = true;
         *probe = true;
      }
   }
   if (!ok) {
      mh_cb.rejected++;
   }
   pthread_mutex_unlock (&mh_cb.lock);
   return ok;
}

/* Records one attempt's outcome (NULL: success). */
static void
mh_breaker_record (const bson_error_t *e, bool probe)
{
   pthread_mutex_lock (&mh_cb.lock);
   if (e && mh_is_connection_failure (e)) {
      mh_cb.consecutive++;
      if ((probe && mh_cb.state == MONGO_HELPER_CIRCUIT_HALF_OPEN) ||
          (mh_cb.state == MONGO_HELPER_CIRCUIT_CLOSED && mh_cb.threshold > 0 &&
           mh_cb.consecutive >= mh_cb.threshold)) {
         mh_cb.state = MONGO_HELPER_CIRCUIT_OPEN;
         mh_cb.opened_mono_us = bson_get_monotonic_time ();
         mh_cb.opened_wall_ms = mh_wall_ms ();
         mh_cb.probe_in_flight = false;
      }
   } else if (!probe && mh_cb.state == MONGO_HELPER_CIRCUIT_OPEN) {
      /* A call admitted before the circuit opened came back: it does not
       * decide; only the probe does. */
   } else {
      /* The server answered (even with a server error): it is reachable. */
      mh_cb.consecutive = 0;
      mh_cb.state = MONGO_HELPER_CIRCUIT_CLOSED;
      mh_cb.probe_in_flight = false;
   }
   pthread_mutex_unlock (&mh_cb.lock);
}

/* The probe never reached the network (e.g. no pooled client free): let
 * the next call probe instead. */
static void
mh_breaker_abstain (bool probe)
{
   if (probe) {
      pthread_mutex_lock (&mh_cb.lock);
      mh_cb.probe_in_flight = false;
      pthread_mutex_unlock (&mh_cb.lock);
   }
}

static bool
mh_breaker_closed (void)
{
   bool closed;

   pthread_mutex_lock (&mh_cb.lock);
   closed = mh_cb.state == MONGO_HELPER_CIRCUIT_CLOSED;
   pthread_mutex_unlock (&mh_cb.lock);
   return closed;
}

void
mongo_helper_circuit_status (mongo_helper_circuit_t *circuit)
{
   if (!circuit) {
      return;
   }
   memset (circuit, 0, sizeof *circuit);
   pthread_mutex_lock (&mh_cb.lock);
   circuit->state = mh_cb.state;
   circuit->consecutive_failures = mh_cb.consecutive;
   circuit->opened_at_ms = mh_cb.opened_wall_ms;
   circuit->rejected = mh_cb.rejected;
   if (mh_cb.state == MONGO_HELPER_CIRCUIT_OPEN) {
      int64_t left = mh_cb.opened_mono_us +
                     (int64_t) mh_cb.cooldown_ms * 1000 -
                     bson_get_monotonic_time ();
      circuit->retry_in_ms = left > 0 ? (left + 999) / 1000 : 0;
   }
   pthread_mutex_unlock (&mh_cb.lock);
}

const char *
mongo_helper_circuit_state_name (mongo_helper_circuit_state_t state)
{
   switch (state) {
   case MONGO_HELPER_CIRCUIT_CLOSED:
      return "closed";
   case MONGO_HELPER_CIRCUIT_OPEN:
      return "open";
   case MONGO_HELPER_CIRCUIT_HALF_OPEN:
      return "half_open";
   }
   return "unknown";
}

/* -- backoff -- */

/* Full jitter (a uniform wait in [0, ceiling]) spreads the retries of many
 * clients hit by the same blip instead of having them return together. */
static void
mh_backoff_sleep (const mongo_helper_retry_policy_t *pol, int32_t attempt)
{
   static _Thread_local uint64_t rng;
   int64_t ceiling = pol->base_ms;
   int64_t ms;
   struct timespec ts;

   for (int32_t i = 1; i < attempt && ceiling < pol->max_ms; i++) {
      ceiling *= 2;
   }
   if (ceiling > pol->max_ms) {
      ceiling = pol->max_ms;
   }
   if (ceiling <= 0) {
      return;
   }
   if (!rng) {
      rng = (uint64_t) bson_get_monotonic_time () ^
            ((uint64_t) (uintptr_t) &rng << 16) ^ 0x9E3779B97F4A7C15ull;
   }
   rng ^= rng >> 12; /* xorshift64* */
   rng ^= rng << 25;
   rng ^= rng >> 27;
   ms = (int64_t) ((rng * 0x2545F4914F6CDD1Dull) % (uint64_t) (ceiling + 1));
   ts.tv_sec = (time_t) (ms / 1000);
   ts.tv_nsec = (long) (ms % 1000) * 1000000L;
   while (nanosleep (&ts, &ts) != 0 && errno == EINTR) {
   }
}

/* -- metrics -- */

#define MH_METRIC_SLOTS 64
#define MH_METRIC_NAME 48
#define MH_CATEGORIES (MONGO_HELPER_ERROR_INTERNAL + 1)

static const int32_t mh_hist_le_ms[] = {
   1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};
#define MH_HIST_N (sizeof mh_hist_le_ms / sizeof *mh_hist_le_ms)

typedef struct {
   char name[MH_METRIC_NAME];
   uint64_t calls, ok, retries;
   uint64_t errors[MH_CATEGORIES];
   uint64_t buckets[MH_HIST_N + 1]; /* per bucket, +Inf last */
   uint64_t sum_us;
} mh_op_metric_t;

typedef struct {
   char name[MH_METRIC_NAME];
   uint64_t started, succeeded, failed, duration_us;
} mh_cmd_metric_t;

static struct {
   pthread_mutex_t lock;
   mh_op_metric_t ops[MH_METRIC_SLOTS];
   size_t n_ops;
   mh_cmd_metric_t cmds[MH_METRIC_SLOTS];
   size_t n_cmds;
} mh_m = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_llong mh_pool_in_use, mh_pool_waiting;
static atomic_ullong mh_pool_checkouts, mh_pool_timeouts;

/* Metric names become Prometheus label values and JSON keys: keep them to
 * [A-Za-z0-9_] so no escaping is ever needed and nothing else leaks. */
static void
mh_metric_name (const char *in, char out[MH_METRIC_NAME])
{
   size_t n = 0;

   for (; in && *in && n + 1 < MH_METRIC_NAME; in++) {
      if (isalnum ((unsigned char) *in) || *in == '_') {
         out[n++] = *in;
      } else {
         break;
      }
   }
   if (n == 0) {
      memcpy (out, "other", 6);
      return;
   }
   out[n] = '\0';
}

/* Finds or adds a slot; the last slot collects everything past the limit.
 * Called with mh_m.lock held. */
#define MH_FIND_SLOT(arr, count, key, out)                                  \
   do {                                                                     \
      (out) = NULL;                                                         \
      for (size_t i_ = 0; i_ < (count); i_++) {                             \
         if (strcmp ((arr)[i_].name, (key)) == 0) {                         \
            (out) = &(arr)[i_];                                             \
            break;                                                          \
         }                                                                  \
      }                                                                     \
      if (!(out)) {                                                         \
         if ((count) < MH_METRIC_SLOTS - 1) {                               \
            (out) = &(arr)[(count)++];                                      \
            bson_strncpy ((out)->name, (key), MH_METRIC_NAME);              \
         } else {                                                           \
            (out) = &(arr)[MH_METRIC_SLOTS - 1];                            \
            if ((count) < MH_METRIC_SLOTS) {                                \
               (count)++;                                                   \
               bson_strncpy ((out)->name, "other", MH_METRIC_NAME);         \
            }                                                               \
         }                                                                  \
      }                                                                     \
   } while (0)

static void
mh_metrics_op (const char *what,
               int64_t t0_us,
               int32_t retries,
               mongo_helper_category_t cat)
{
   char name[MH_METRIC_NAME];
   mh_op_metric_t *m;
   int64_t us = bson_get_monotonic_time () - t0_us;
   size_t b = 0;

   mh_metric_name (what, name);
   while (b < MH_HIST_N && us > (int64_t) mh_hist_le_ms[b] * 1000) {
      b++;
   }
   pthread_mutex_lock (&mh_m.lock);
   MH_FIND_SLOT (mh_m.ops, mh_m.n_ops, name, m);
   m->calls++;
   m->retries += (uint64_t) retries;
   if (cat == MONGO_HELPER_ERROR_NONE) {
      m->ok++;
   } else if ((int) cat >= 0 && (int) cat < MH_CATEGORIES) {
      m->errors[cat]++;
   }
   m->buckets[b]++;
   m->sum_us += (uint64_t) (us > 0 ? us : 0);
   pthread_mutex_unlock (&mh_m.lock);
}

static void
mh_metrics_cmd (const char *command, int kind, int64_t duration_us)
{
   char name[MH_METRIC_NAME];
   mh_cmd_metric_t *m;

   mh_metric_name (command, name);
   pthread_mutex_lock (&mh_m.lock);
   MH_FIND_SLOT (mh_m.cmds, mh_m.n_cmds, name, m);
   if (kind == 0) {
      m->started++;
   } else {
      if (kind == 1) {
         m->succeeded++;
      } else {
         m->failed++;
      }
      m->duration_us += (uint64_t) (duration_us > 0 ? duration_us : 0);
   }
   pthread_mutex_unlock (&mh_m.lock);
}

static void
mh_apm_started (const mongoc_apm_command_started_t *event)
{
   mh_metrics_cmd (
      mongoc_apm_command_started_get_command_name (event), 0, 0);
}

static void
mh_apm_succeeded (const mongoc_apm_command_succeeded_t *event)
{
   mh_metrics_cmd (mongoc_apm_command_succeeded_get_command_name (event),
                   1,
                   mongoc_apm_command_succeeded_get_duration (event));
}

static void
mh_apm_failed (const mongoc_apm_command_failed_t *event)
{
   mh_metrics_cmd (mongoc_apm_command_failed_get_command_name (event),
                   2,
                   mongoc_apm_command_failed_get_duration (event));
}

/* Called by mh_start_locked() for every new pool, before any client is
 * popped (libmongoc requires that for APM on a pool). */
static void
mh_resil_pool_created (mongoc_client_pool_t *pool,
                       const mongo_helper_config_t *cfg)
{
   mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new ();

   mongoc_apm_set_command_started_cb (cbs, mh_apm_started);
   mongoc_apm_set_command_succeeded_cb (cbs, mh_apm_succeeded);
   mongoc_apm_set_command_failed_cb (cbs, mh_apm_failed);
   mongoc_client_pool_set_apm_callbacks (pool, cbs, NULL);
   mongoc_apm_callbacks_destroy (cbs);

   pthread_mutex_lock (&mh_cb.lock);
   mh_cb.state = MONGO_HELPER_CIRCUIT_CLOSED;
   mh_cb.consecutive = 0;
   mh_cb.opened_mono_us = 0;
   mh_cb.opened_wall_ms = 0;
   mh_cb.probe_in_flight = false;
   mh_cb.rejected = 0;
   mh_cb.threshold = cfg->retry.circuit_threshold;
   mh_cb.cooldown_ms = cfg->retry.circuit_cooldown_ms;
   pthread_mutex_unlock (&mh_cb.lock);
}

static void
mh_pool_wait_begin (void)
{
   atomic_fetch_add (&mh_pool_waiting, 1);
}

static void
mh_pool_wait_end (bool got)
{
   atomic_fetch_sub (&mh_pool_waiting, 1);
   if (got) {
      atomic_fetch_add (&mh_pool_in_use, 1);
      atomic_fetch_add (&mh_pool_checkouts, 1);
   } else {
      atomic_fetch_add (&mh_pool_timeouts, 1);
   }
}

static void
mh_pool_returned (void)
{
   atomic_fetch_sub (&mh_pool_in_use, 1);
}

/* A forked child starts with none of the parent's clients in use. */
static void
mh_pool_stats_after_fork (void)
{
   atomic_store (&mh_pool_in_use, 0);
   atomic_store (&mh_pool_waiting, 0);
}

void
mongo_helper_pool_stats (mongo_helper_pool_stats_t *stats)
{
   if (!stats) {
      return;
   }
   stats->in_use = atomic_load (&mh_pool_in_use);
   stats->waiting = atomic_load (&mh_pool_waiting);
   stats->checkouts = atomic_load (&mh_pool_checkouts);
   stats->wait_timeouts = atomic_load (&mh_pool_timeouts);
}

void
mongo_helper_metrics_reset (void)
{
   pthread_mutex_lock (&mh_m.lock);
   memset (mh_m.ops, 0, sizeof mh_m.ops);
   memset (mh_m.cmds, 0, sizeof mh_m.cmds);
   mh_m.n_ops = 0;
   mh_m.n_cmds = 0;
   pthread_mutex_unlock (&mh_m.lock);
   atomic_store (&mh_pool_checkouts, 0);
   atomic_store (&mh_pool_timeouts, 0);
   pthread_mutex_lock (&mh_cb.lock);
   mh_cb.rejected = 0;
   pthread_mutex_unlock (&mh_cb.lock);
}

/* A consistent copy, so formatting happens without the lock. */
typedef struct {
   mh_op_metric_t ops[MH_METRIC_SLOTS];
   size_t n_ops;
   mh_cmd_metric_t cmds[MH_METRIC_SLOTS];
   size_t n_cmds;
   mongo_helper_pool_stats_t pool;
   mongo_helper_circuit_t circuit;
} mh_snapshot_t;

static mh_snapshot_t *
mh_snapshot_new (void)
{
   mh_snapshot_t *s = bson_malloc0 (sizeof *s);

   pthread_mutex_lock (&mh_m.lock);
   memcpy (s->ops, mh_m.ops, sizeof s->ops);
   memcpy (s->cmds, mh_m.cmds, sizeof s->cmds);
   s->n_ops = mh_m.n_ops;
   s->n_cmds = mh_m.n_cmds;
   pthread_mutex_unlock (&mh_m.lock);
   mongo_helper_pool_stats (&s->pool);
   mongo_helper_circuit_status (&s->circuit);
   return s;
}

static void
mh_prom_family (bson_string_t *out,
                const char *name,
                const char *type,
                const char *help)
{
   bson_string_append_printf (
      out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static char *
mh_prometheus_text (void)
{
   mh_snapshot_t *s = mh_snapshot_new ();
   bson_string_t *o = bson_string_new (NULL);

   mh_prom_family (o,
                   "mongo_helper_operations_total",
                   "counter",
                   "Operations run through the library's execution path.");
   for (size_t i = 0; i < s->n_ops; i++) {
      bson_string_append_printf (o,
                                 "mongo_helper_operations_total{op=\"%s\"} "
                                 "%" PRIu64 "\n",
                                 s->ops[i].name,
                                 s->ops[i].calls);
   }
   mh_prom_family (o,
                   "mongo_helper_operation_errors_total",
                   "counter",
                   "Failed operations by error category.");
   for (size_t i = 0; i < s->n_ops; i++) {
      for (int c = 1; c < MH_CATEGORIES; c++) {
         if (s->ops[i].errors[c]) {
            bson_string_append_printf (
               o,
               "mongo_helper_operation_errors_total{op=\"%s\",category=\"%s\"}"
               " %" PRIu64 "\n",
               s->ops[i].name,
               mongo_helper_category_name ((mongo_helper_category_t) c),
               s->ops[i].errors[c]);
         }
      }
   }
   mh_prom_family (o,
                   "mongo_helper_operation_retries_total",
                   "counter",
                   "Extra attempts made after transient failures.");
   for (size_t i = 0; i < s->n_ops; i++) {
      bson_string_append_printf (
         o,
         "mongo_helper_operation_retries_total{op=\"%s\"} %" PRIu64 "\n",
         s->ops[i].name,
         s->ops[i].retries);
   }
   mh_prom_family (o,
                   "mongo_helper_operation_duration_seconds",
                   "histogram",
                   "Time of a whole operation including retries.");
   for (size_t i = 0; i < s->n_ops; i++) {
      uint64_t cum = 0;
      for (size_t b = 0; b <= MH_HIST_N; b++) {
         cum += s->ops[i].buckets[b];
         if (b < MH_HIST_N) {
            bson_string_append_printf (
               o,
               "mongo_helper_operation_duration_seconds_bucket{op=\"%s\","
               "le=\"%d.%03d\"} %" PRIu64 "\n",
               s->ops[i].name,
               (int) (mh_hist_le_ms[b] / 1000),
               (int) (mh_hist_le_ms[b] % 1000),
               cum);
         } else {
            bson_string_append_printf (
               o,
               "mongo_helper_operation_duration_seconds_bucket{op=\"%s\","
               "le=\"+Inf\"} %" PRIu64 "\n",
               s->ops[i].name,
               cum);
         }
      }
      bson_string_append_printf (
         o,
         "mongo_helper_operation_duration_seconds_sum{op=\"%s\"} %" PRIu64
         ".%06" PRIu64 "\n"
         "mongo_helper_operation_duration_seconds_count{op=\"%s\"} %" PRIu64
         "\n",
         s->ops[i].name,
         s->ops[i].sum_us / 1000000u,
         s->ops[i].sum_us % 1000000u,
         s->ops[i].name,
         s->ops[i].calls);
   }
   mh_prom_family (o,
                   "mongo_helper_commands_started_total",
                   "counter",
                   "Server commands started (libmongoc command monitoring).");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (
         o,
         "mongo_helper_commands_started_total{command=\"%s\"} %" PRIu64 "\n",
         s->cmds[i].name,
         s->cmds[i].started);
   }
   mh_prom_family (o,
                   "mongo_helper_commands_succeeded_total",
                   "counter",
                   "Server commands that succeeded.");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (
         o,
         "mongo_helper_commands_succeeded_total{command=\"%s\"} %" PRIu64
         "\n",
         s->cmds[i].name,
         s->cmds[i].succeeded);
   }
   mh_prom_family (o,
                   "mongo_helper_commands_failed_total",
                   "counter",
                   "Server commands that failed (server or network error).");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (
         o,
         "mongo_helper_commands_failed_total{command=\"%s\"} %" PRIu64 "\n",
         s->cmds[i].name,
         s->cmds[i].failed);
   }
   mh_prom_family (o,
                   "mongo_helper_command_duration_seconds_total",
                   "counter",
                   "Total time of finished server commands.");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (
         o,
         "mongo_helper_command_duration_seconds_total{command=\"%s\"} %" PRIu64
         ".%06" PRIu64 "\n",
         s->cmds[i].name,
         s->cmds[i].duration_us / 1000000u,
         s->cmds[i].duration_us % 1000000u);
   }
   mh_prom_family (o,
                   "mongo_helper_pool_in_use",
                   "gauge",
                   "Pooled clients taken and not given back.");
   bson_string_append_printf (
      o, "mongo_helper_pool_in_use %" PRId64 "\n", s->pool.in_use);
   mh_prom_family (o,
                   "mongo_helper_pool_waiting",
                   "gauge",
                   "Threads waiting for a pooled client.");
   bson_string_append_printf (
      o, "mongo_helper_pool_waiting %" PRId64 "\n", s->pool.waiting);
   mh_prom_family (o,
                   "mongo_helper_pool_checkouts_total",
                   "counter",
                   "Clients taken from the pool.");
   bson_string_append_printf (
      o, "mongo_helper_pool_checkouts_total %" PRIu64 "\n", s->pool.checkouts);
   mh_prom_family (o,
                   "mongo_helper_pool_wait_timeouts_total",
                   "counter",
                   "Waits for a pooled client that timed out.");
   bson_string_append_printf (o,
                              "mongo_helper_pool_wait_timeouts_total %" PRIu64
                              "\n",
                              s->pool.wait_timeouts);
   mh_prom_family (o,
                   "mongo_helper_circuit_state",
                   "gauge",
                   "Circuit breaker: 0 closed, 1 open, 2 half-open.");
   bson_string_append_printf (
      o, "mongo_helper_circuit_state %d\n", (int) s->circuit.state);
   mh_prom_family (o,
                   "mongo_helper_circuit_consecutive_failures",
                   "gauge",
                   "Consecutive connection failures seen by the breaker.");
   bson_string_append_printf (o,
                              "mongo_helper_circuit_consecutive_failures %d\n",
                              (int) s->circuit.consecutive_failures);
   mh_prom_family (o,
                   "mongo_helper_circuit_rejected_total",
                   "counter",
                   "Calls failed fast by an open circuit.");
   bson_string_append_printf (o,
                              "mongo_helper_circuit_rejected_total %" PRIu64
                              "\n",
                              s->circuit.rejected);
   bson_free (s);
   return bson_string_free (o, false);
}

bool
mongo_helper_metrics_prometheus (char *buf,
                                 size_t size,
                                 size_t *needed,
                                 mongo_helper_error_t *error)
{
   char *text = mh_prometheus_text ();
   size_t len = strlen (text);

   mh_error_clear (error);
   if (needed) {
      *needed = len + 1;
   }
   if (!buf || size < len + 1) {
      if (buf && size > 0) {
         buf[0] = '\0';
      }
      bson_free (text);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_metrics_prometheus: the buffer holds %zu "
                      "bytes but the metrics need %zu: pass a larger buffer",
                      buf ? size : (size_t) 0,
                      len + 1);
   }
   memcpy (buf, text, len + 1);
   bson_free (text);
   return true;
}

char *
mongo_helper_metrics_json_dup (mongo_helper_error_t *error)
{
   mh_snapshot_t *s = mh_snapshot_new ();
   bson_t doc = BSON_INITIALIZER, ops, cmds, child, sub;
   char *json;

   mh_error_clear (error);
   bson_append_document_begin (&doc, "operations", -1, &ops);
   for (size_t i = 0; i < s->n_ops; i++) {
      const mh_op_metric_t *m = &s->ops[i];
      char le[16];

      bson_append_document_begin (&ops, m->name, -1, &child);
      BSON_APPEND_INT64 (&child, "calls", (int64_t) m->calls);
      BSON_APPEND_INT64 (&child, "ok", (int64_t) m->ok);
      BSON_APPEND_INT64 (&child, "retries", (int64_t) m->retries);
      bson_append_document_begin (&child, "errors", -1, &sub);
      for (int c = 1; c < MH_CATEGORIES; c++) {
         if (m->errors[c]) {
            BSON_APPEND_INT64 (
               &sub,
               mongo_helper_category_name ((mongo_helper_category_t) c),
               (int64_t) m->errors[c]);
         }
      }
      bson_append_document_end (&child, &sub);
      BSON_APPEND_INT64 (&child, "latency_us_sum", (int64_t) m->sum_us);
      bson_append_document_begin (&child, "latency_buckets_ms", -1, &sub);
      for (size_t b = 0; b <= MH_HIST_N; b++) {
         if (b < MH_HIST_N) {
            bson_snprintf (le, sizeof le, "%d", (int) mh_hist_le_ms[b]);
         } else {
            bson_strncpy (le, "inf", sizeof le);
         }
         BSON_APPEND_INT64 (&sub, le, (int64_t) m->buckets[b]);
      }
      bson_append_document_end (&child, &sub);
      bson_append_document_end (&ops, &child);
   }
   bson_append_document_end (&doc, &ops);
   bson_append_document_begin (&doc, "commands", -1, &cmds);
   for (size_t i = 0; i < s->n_cmds; i++) {
      const mh_cmd_metric_t *m = &s->cmds[i];

      bson_append_document_begin (&cmds, m->name, -1, &child);
      BSON_APPEND_INT64 (&child, "started", (int64_t) m->started);
      BSON_APPEND_INT64 (&child, "succeeded", (int64_t) m->succeeded);
      BSON_APPEND_INT64 (&child, "failed", (int64_t) m->failed);
      BSON_APPEND_INT64 (&child, "duration_us_sum", (int64_t) m->duration_us);
      bson_append_document_end (&cmds, &child);
   }
   bson_append_document_end (&doc, &cmds);
   bson_append_document_begin (&doc, "pool", -1, &child);
   BSON_APPEND_INT64 (&child, "in_use", s->pool.in_use);
   BSON_APPEND_INT64 (&child, "waiting", s->pool.waiting);
   BSON_APPEND_INT64 (&child, "checkouts", (int64_t) s->pool.checkouts);
   BSON_APPEND_INT64 (&child, "wait_timeouts", (int64_t) s->pool.wait_timeouts);
   bson_append_document_end (&doc, &child);
   bson_append_document_begin (&doc, "circuit", -1, &child);
   BSON_APPEND_UTF8 (
      &child, "state", mongo_helper_circuit_state_name (s->circuit.state));
   BSON_APPEND_INT32 (
      &child, "consecutive_failures", s->circuit.consecutive_failures);
   BSON_APPEND_INT64 (&child, "opened_at_ms", s->circuit.opened_at_ms);
   BSON_APPEND_INT64 (&child, "rejected", (int64_t) s->circuit.rejected);
   bson_append_document_end (&doc, &child);
   json = bson_as_relaxed_extended_json (&doc, NULL);
   bson_destroy (&doc);
   bson_free (s);
   if (!json) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INTERNAL,
               0,
               "mongo_helper_metrics_json_dup: cannot encode the metrics");
   }
   return json;
}

/* -- per-call time limit and retried reads -- */

bool
mongo_helper_opts_set_max_time (bson_t *opts,
                                int32_t max_time_ms,
                                mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!opts || max_time_ms <= 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_opts_set_max_time: %s",
                      opts ? "the limit must be a positive number of ms"
                           : "opts is NULL");
   }
   if (bson_has_field (opts, "maxTimeMS")) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_opts_set_max_time: opts already has "
                      "maxTimeMS: set it once");
   }
   if (!BSON_APPEND_INT32 (opts, "maxTimeMS", max_time_ms)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INTERNAL,
                      0,
                      "mongo_helper_opts_set_max_time: cannot append");
   }
   return true;
}

typedef struct {
   const bson_t *command;
   const bson_t *opts;
   bson_t *reply;
} mh_read_command_ctx_t;

static bool
mh_read_command_op (mongoc_client_t *client,
                    mongoc_database_t *db,
                    void *ctx,
                    bson_error_t *berr)
{
   mh_read_command_ctx_t *c = ctx;

   (void) client;
   bson_destroy (c->reply); /* the driver initialises it again */
   return mongoc_database_read_command_with_opts (
      db, c->command, NULL, c->opts, c->reply, berr);
}

bool
mongo_helper_read_command (const bson_t *command,
                           int32_t max_time_ms,
                           bson_t *reply,
                           mongo_helper_error_t *error)
{
   mh_read_command_ctx_t ctx;
   bson_t scratch, opts = BSON_INITIALIZER;
   bson_iter_t it;
   char what[96];
   bool ok;

   if (reply) {
      bson_init (reply);
   }
   if (!command || bson_empty (command) || !bson_iter_init (&it, command) ||
       !bson_iter_next (&it)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_read_command: the command is NULL or "
                      "empty");
   }
   if (max_time_ms > 0) {
      BSON_APPEND_INT32 (&opts, "maxTimeMS", max_time_ms);
   }
   bson_snprintf (
      what, sizeof what, "read_command '%s'", bson_iter_key (&it));
   bson_init (&scratch);
   ctx.command = command;
   ctx.opts = &opts;
   ctx.reply = reply ? reply : &scratch;
   ok = mh_run (what, MH_OP_READ, mh_read_command_op, &ctx, error);
   bson_destroy (&scratch);
   bson_destroy (&opts);
   return ok;
}

/* -- query injection -- */

#define MH_FILTER_MAX_DEPTH 100

typedef struct {
   unsigned flags;
   char path[512];
   mongo_helper_error_t *error;
} mh_filter_walk_t;

static bool mh_filter_doc (mh_filter_walk_t *w,
                           const bson_iter_t *doc,
                           bool filter_context,
                           int depth);

/* Appends ".key" (or "key" at the start) and returns the old length. */
static size_t
mh_filter_push (mh_filter_walk_t *w, const char *key)
{
   size_t len = strlen (w->path);

   bson_snprintf (w->path + len,
                  sizeof w->path - len,
                  "%s%s",
                  len ? "." : "",
                  key);
   return len;
}

static bool
mh_filter_reject (mh_filter_walk_t *w, const char *why)
{
   return mh_fail (w->error,
                   MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                   0,
                   "filter key '%s' %s",
                   w->path,
                   why);
}

/* Checks one value where a plain value (or, with ALLOW_OPERATORS, an
 * operator expression) is expected. */
static bool
mh_filter_value (mh_filter_walk_t *w, const bson_iter_t *it, int depth)
{
   switch (bson_iter_type (it)) {
   case BSON_TYPE_CODE:
   case BSON_TYPE_CODEWSCOPE:
      if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT)) {
         return mh_filter_reject (
            w, "holds JavaScript code, which the filter may not run");
      }
      return true;
   case BSON_TYPE_REGEX:
      if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_OPERATORS)) {
         return mh_filter_reject (w,
                                  "holds a regular expression where a plain "
                                  "value is expected");
      }
      return true;
   case BSON_TYPE_DOCUMENT:
   case BSON_TYPE_ARRAY:
      return mh_filter_doc (w, it, false, depth + 1);
   default:
      return true;
   }
}

static bool
mh_filter_doc (mh_filter_walk_t *w,
               const bson_iter_t *doc,
               bool filter_context,
               int depth)
{
   bson_iter_t child;

   if (depth > MH_FILTER_MAX_DEPTH) {
      return mh_filter_reject (w, "is nested too deeply (more than 100 levels)");
   }
   {
      /* bson_validate() lets some corrupt nested documents through, and
       * the iterator would stop at them without a word (found by
       * fuzzing): check each one's framing here. */
      const uint8_t *raw = NULL;
      uint32_t raw_len = 0;
      bson_t sub;

      if (BSON_ITER_HOLDS_ARRAY (doc)) {
         bson_iter_array (doc, &raw_len, &raw);
      } else {
         bson_iter_document (doc, &raw_len, &raw);
      }
      if (!raw || !bson_init_static (&sub, raw, raw_len) ||
          !bson_iter_recurse (doc, &child)) {
         return mh_filter_reject (w, "is not valid BSON");
      }
   }
   while (bson_iter_next (&child)) {
      const char *key = bson_iter_key (&child);
      size_t mark = mh_filter_push (w, key);
      bool ok = true;

      /* Array keys are checked too: hand-made BSON may give an array
       * element a key like "$where" (found by fuzzing). */
      if (key[0] == '$') {
         if (strcmp (key, "$where") == 0 || strcmp (key, "$function") == 0 ||
             strcmp (key, "$accumulator") == 0) {
            if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT)) {
               return mh_filter_reject (
                  w, "runs server-side JavaScript, which request data may "
                     "not do");
            }
            ok = mh_filter_value (w, &child, depth);
         } else if (strcmp (key, "$expr") == 0) {
            if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_EXPR)) {
               return mh_filter_reject (
                  w, "is an aggregation expression ($expr), which is not "
                     "allowed here (MONGO_HELPER_FILTER_ALLOW_EXPR)");
            }
            ok = mh_filter_value (w, &child, depth);
         } else if (filter_context &&
                    (strcmp (key, "$and") == 0 || strcmp (key, "$or") == 0 ||
                     strcmp (key, "$nor") == 0)) {
            bson_iter_t el;

            if (!BSON_ITER_HOLDS_ARRAY (&child) ||
                !bson_iter_recurse (&child, &el)) {
               return mh_filter_reject (w, "must be an array of filters");
            }
            while (ok && bson_iter_next (&el)) {
               size_t m2 = mh_filter_push (w, bson_iter_key (&el));
               if (bson_iter_key (&el)[0] == '$') {
                  return mh_filter_reject (
                     w, "is a query operator where a filter is expected");
               }
               if (!BSON_ITER_HOLDS_DOCUMENT (&el)) {
                  return mh_filter_reject (w, "must be a filter document");
               }
               ok = mh_filter_doc (w, &el, true, depth + 1);
               w->path[m2] = '\0';
            }
            if (ok && el.err_off) {
               return mh_filter_reject (w, "is not valid BSON");
            }
         } else if (!(w->flags & MONGO_HELPER_FILTER_ALLOW_OPERATORS)) {
            return mh_filter_reject (
               w, "is a query operator where a plain value is expected");
         } else {
            ok = mh_filter_value (w, &child, depth);
         }
      } else {
         ok = mh_filter_value (w, &child, depth);
      }
      if (!ok) {
         return false;
      }
      w->path[mark] = '\0';
   }
   if (child.err_off) {
      return mh_filter_reject (w, "is not valid BSON");
   }
   return true;
}

bool
mongo_helper_filter_check (const bson_t *filter,
                           unsigned flags,
                           mongo_helper_error_t *error)
{
   mh_filter_walk_t w;
   bson_iter_t top;
   bson_t wrapper = BSON_INITIALIZER;
   bool ok;

   mh_error_clear (error);
   if (!filter) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check: the filter is NULL");
   }
   if (!bson_validate (filter, BSON_VALIDATE_NONE, NULL)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check: the filter is not valid "
                      "BSON");
   }
   /* The walker descends from an iterator; wrap the filter in one. */
   BSON_APPEND_DOCUMENT (&wrapper, "f", filter);
   memset (&w, 0, sizeof w);
   w.flags = flags;
   w.error = error;
   ok = bson_iter_init_find (&top, &wrapper, "f") &&
        mh_filter_doc (&w, &top, true, 0);
   bson_destroy (&wrapper);
   return ok;
}

bool
mongo_helper_filter_check_json (const char *json,
                                unsigned flags,
                                bson_t *out,
                                mongo_helper_error_t *error)
{
   bson_t parsed;
   bson_error_t berr;
   size_t len;

   if (out) {
      bson_init (out);
   }
   mh_error_clear (error);
   if (!json) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check_json: the JSON is NULL");
   }
   len = strlen (json);
   if (len > (size_t) 16 * 1024 * 1024) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check_json: the JSON is %zu bytes, "
                      "more than the 16 MB a document may have",
                      len);
   }
   if (!bson_init_from_json (&parsed, json, (ssize_t) len, &berr)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_filter_check_json: malformed JSON (%s)",
                      berr.message);
   }
   if (!mongo_helper_filter_check (&parsed, flags, error)) {
      bson_destroy (&parsed);
      return false;
   }
   if (out) {
      bson_destroy (out);
      bson_steal (out, &parsed);
   } else {
      bson_destroy (&parsed);
   }
   return true;
}

bool
mongo_helper_oid_from_string (const char *text,
                              bson_oid_t *oid,
                              mongo_helper_error_t *error)
{
   size_t len;

   mh_error_clear (error);
   if (!text || !oid) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_oid_from_string: %s is NULL",
                      text ? "oid" : "the text");
   }
   len = strnlen (text, 25);
   if (len != 24) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "invalid ObjectId: expected exactly 24 hexadecimal "
                      "digits, got %s%zu characters",
                      len > 24 ? "more than " : "",
                      len > 24 ? (size_t) 24 : len);
   }
   for (size_t i = 0; i < 24; i++) {
      if (!isxdigit ((unsigned char) text[i])) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "invalid ObjectId: character %zu is not a "
                         "hexadecimal digit (0-9, a-f)",
                         i + 1);
      }
   }
   bson_oid_init_from_string (oid, text);
   return true;
}


/* ---- Connector operations: documents ------------------------------- */


/* ---- Connector operations: files, streams, concurrency, stats ------ */


/* ---- Web-backend helpers ------------------------------------------- */

