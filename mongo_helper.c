/*
 * mongo_helper.c — implementation.  Sections follow mongo_helper.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "mongo_helper.h"

#include <iniparser/iniparser.h>

#include <ctype.h>
#include <errno.h>
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
      if (e->code == MONGOC_ERROR_STREAM_SOCKET &&
          strstr (e->message, "timed out")) {
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
   mongoc_client_t *c = mongoc_client_pool_pop (p->pool);

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

static bool
mh_run (const char *what,
        unsigned flags,
        mh_op_fn fn,
        void *ctx,
        mongo_helper_error_t *error)
{
   mh_slot_t *s = mh_thread_slot (error);
   bson_error_t berr;

   (void) flags;
   if (!s) {
      return false;
   }
   memset (&berr, 0, sizeof berr);
   if (fn (s->client, s->db, ctx, &berr)) {
      return true;
   }
   return mh_fail_bson (error, what, &berr);
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


/* ---- Connector operations: documents ------------------------------- */

/* Shared by every document operation: where it runs and what it checks. */

#define MH_EARTH_RADIUS_M 6378100.0

static bool
mh_target_check (const char *what,
                 const char *database,
                 const char *collection,
                 mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (database && (!*database || strpbrk (database, "/\\. \"$"))) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: database name '%s' is empty or contains one of "
                      "/\\. \"$: pass NULL for the default database",
                      what,
                      database);
   }
   if (!collection || !*collection) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the collection name is NULL or empty",
                      what);
   }
   if (strchr (collection, '$')) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: collection name '%s' contains '$'",
                      what,
                      collection);
   }
   return true;
}

/* The server would refuse an oversized document only after the whole of it
 * crossed the network; refusing here is cheaper and names the culprit. */
static bool
mh_doc_check (const char *what,
              const char *label,
              const bson_t *doc,
              mongo_helper_error_t *error)
{
   if (!doc) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the %s is NULL",
                      what,
                      label);
   }
   if (doc->len > MONGO_HELPER_MAX_DOCUMENT_SIZE) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the %s is %u bytes, over MongoDB's limit of %d "
                      "bytes: split it or store large content with GridFS",
                      what,
                      label,
                      (unsigned) doc->len,
                      MONGO_HELPER_MAX_DOCUMENT_SIZE);
   }
   return true;
}

/* The collection, on the default database unless `database` names one. */
static mongoc_collection_t *
mh_collection (mongoc_client_t *client,
               mongoc_database_t *db,
               const char *database,
               const char *collection)
{
   if (database) {
      return mongoc_client_get_collection (client, database, collection);
   }
   return mongoc_database_get_collection (db, collection);
}

static void
mh_array_append (bson_t *array, uint32_t i, const bson_t *doc)
{
   char buf[16];
   const char *key;
   size_t len = bson_uint32_to_string (i, &key, buf, sizeof buf);

   bson_append_document (array, key, (int) len, doc);
}

/* Appends the current value of `it` under the next array index. */
static void
mh_array_append_iter (bson_t *array, uint32_t i, const bson_iter_t *it)
{
   char buf[16];
   const char *key;
   size_t len = bson_uint32_to_string (i, &key, buf, sizeof buf);

   bson_append_iter (array, key, (int) len, it);
}

/* Drains a cursor into `results` (reinitialised first, so a repeated
 * operation never appends twice).  Takes ownership of `cursor`. */
static bool
mh_cursor_drain (mongoc_cursor_t *cursor, bson_t *results, bson_error_t *berr)
{
   const bson_t *doc;
   uint32_t i = 0;
   bool ok;

   bson_reinit (results);
   while (mongoc_cursor_next (cursor, &doc)) {
      mh_array_append (results, i++, doc);
   }
   ok = !mongoc_cursor_error (cursor, berr);
   mongoc_cursor_destroy (cursor);
   return ok;
}

static const char *
mh_ns (char *buf, size_t size, const char *database, const char *collection)
{
   bson_snprintf (buf,
                  size,
                  "%s.%s",
                  database ? database : "(default)",
                  collection ? collection : "");
   return buf;
}

bson_t *
mongo_helper_json_to_bson (const char *json, mongo_helper_error_t *error)
{
   bson_error_t berr;
   bson_t *b;

   mh_error_clear (error);
   if (!json) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "JSON text is NULL");
      return NULL;
   }
   b = bson_new_from_json ((const uint8_t *) json, -1, &berr);
   if (!b) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               (int32_t) berr.code,
               "invalid JSON: %s",
               berr.message);
   }
   return b;
}

char *
mongo_helper_array_to_json (const bson_t *array, mongo_helper_error_t *error)
{
   bson_string_t *out;
   bson_iter_t it;
   bool first = true;

   mh_error_clear (error);
   if (!array || !bson_iter_init (&it, array)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "mongo_helper_array_to_json: the array is NULL or corrupt");
      return NULL;
   }
   out = bson_string_new ("[");
   while (bson_iter_next (&it)) {
      const uint8_t *data;
      uint32_t len;
      bson_t doc;
      char *json;

      if (!BSON_ITER_HOLDS_DOCUMENT (&it)) {
         bson_string_free (out, true);
         mh_fail (error,
                  MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                  0,
                  "mongo_helper_array_to_json: element %s is not a document",
                  bson_iter_key (&it));
         return NULL;
      }
      bson_iter_document (&it, &len, &data);
      bson_init_static (&doc, data, len);
      json = bson_as_relaxed_extended_json (&doc, NULL);
      if (!first) {
         bson_string_append (out, ", ");
      }
      bson_string_append (out, json);
      bson_free (json);
      first = false;
   }
   bson_string_append (out, "]");
   return bson_string_free (out, false);
}

/* Parses optional JSON text: NULL stays NULL (meaning "none"). */
static bool
mh_json_opt (const char *json, bson_t **out, mongo_helper_error_t *error)
{
   *out = NULL;
   if (!json) {
      return true;
   }
   *out = mongo_helper_json_to_bson (json, error);
   return *out != NULL;
}

/* ---- insert ---- */

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *doc;
} mh_insert_ctx_t;

static bool
mh_insert_one_op (mongoc_client_t *client,
                  mongoc_database_t *db,
                  void *ctx,
                  bson_error_t *berr)
{
   mh_insert_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bool ok = mongoc_collection_insert_one (coll, c->doc, NULL, NULL, berr);

   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_insert_one (const char *database,
                         const char *collection,
                         const bson_t *doc,
                         bson_value_t *id,
                         mongo_helper_error_t *error)
{
   mh_insert_ctx_t ctx = {database, collection, NULL};
   bson_t *with_id = NULL;
   bson_iter_t it;
   char what[256], ns[200];
   bool ok;

   if (id) {
      memset (id, 0, sizeof *id);
      id->value_type = BSON_TYPE_EOD;
   }
   if (!mh_target_check ("insert_one", database, collection, error) ||
       !mh_doc_check ("insert_one", "document", doc, error)) {
      return false;
   }
   /* The driver would add an _id too, but would not tell us which: making
    * it here is what lets the caller learn it. */
   if (!bson_iter_init_find (&it, doc, "_id")) {
      bson_oid_t oid;

      bson_oid_init (&oid, NULL);
      with_id = bson_sized_new (doc->len + 20);
      BSON_APPEND_OID (with_id, "_id", &oid);
      bson_concat (with_id, doc);
      bson_iter_init_find (&it, with_id, "_id");
      if (!mh_doc_check ("insert_one", "document", with_id, error)) {
         bson_destroy (with_id);
         return false;
      }
   }
   ctx.doc = with_id ? with_id : doc;
   bson_snprintf (what,
                  sizeof what,
                  "insert into %s",
                  mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_WRITE, mh_insert_one_op, &ctx, error);
   if (ok && id) {
      bson_value_copy (bson_iter_value (&it), id);
   }
   bson_destroy (with_id);
   return ok;
}

bool
mongo_helper_insert_one_json (const char *database,
                              const char *collection,
                              const char *json,
                              bson_value_t *id,
                              mongo_helper_error_t *error)
{
   bson_t *doc;
   bool ok;

   if (id) {
      memset (id, 0, sizeof *id);
      id->value_type = BSON_TYPE_EOD;
   }
   if (!mh_target_check ("insert_one", database, collection, error)) {
      return false;
   }
   doc = mongo_helper_json_to_bson (json, error);
   if (!doc) {
      return false;
   }
   ok = mongo_helper_insert_one (database, collection, doc, id, error);
   bson_destroy (doc);
   return ok;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t **docs;
   size_t n;
   bool ordered;
   int64_t inserted;
} mh_insert_many_ctx_t;

static int64_t
mh_reply_int (const bson_t *reply, const char *key)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, reply, key) && BSON_ITER_HOLDS_NUMBER (&it)) {
      return bson_iter_as_int64 (&it);
   }
   return 0;
}

static bool
mh_insert_many_op (mongoc_client_t *client,
                   mongoc_database_t *db,
                   void *ctx,
                   bson_error_t *berr)
{
   mh_insert_many_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (c->ordered));
   bson_t reply;
   bool ok = mongoc_collection_insert_many (
      coll, c->docs, c->n, opts, &reply, berr);

   c->inserted = mh_reply_int (&reply, "insertedCount");
   bson_destroy (&reply);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_insert_many (const char *database,
                          const char *collection,
                          const bson_t *const *docs,
                          size_t n,
                          bool ordered,
                          int64_t *inserted,
                          mongo_helper_error_t *error)
{
   mh_insert_many_ctx_t ctx = {database, collection, NULL, n, ordered, 0};
   char what[256], ns[200], label[48];
   bool ok;

   if (inserted) {
      *inserted = 0;
   }
   if (!mh_target_check ("insert_many", database, collection, error)) {
      return false;
   }
   if (!docs || n == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "insert_many: no documents given (docs NULL or n 0)");
   }
   for (size_t i = 0; i < n; i++) {
      bson_snprintf (label, sizeof label, "document at index %zu", i);
      if (!mh_doc_check ("insert_many", label, docs[i], error)) {
         return false;
      }
   }
   /* libmongoc's prototype lacks the inner const. */
   ctx.docs = (const bson_t **) docs;
   bson_snprintf (what,
                  sizeof what,
                  "insert_many into %s",
                  mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_WRITE, mh_insert_many_op, &ctx, error);
   if (inserted) {
      *inserted = ctx.inserted;
   }
   return ok;
}

/* ---- find ---- */

/* Turns the options struct into the find command's options. */
static bool
mh_find_opts (const char *what,
              const mongo_helper_find_opts_t *o,
              bson_t *out,
              mongo_helper_error_t *error)
{
   bson_init (out);
   if (!o) {
      return true;
   }
   if (o->skip < 0 || o->limit < 0 || o->batch_size < 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: skip, limit and batch_size must not be negative",
                      what);
   }
   if (o->projection) {
      BSON_APPEND_DOCUMENT (out, "projection", o->projection);
   }
   if (o->sort) {
      BSON_APPEND_DOCUMENT (out, "sort", o->sort);
   }
   if (o->skip) {
      BSON_APPEND_INT64 (out, "skip", o->skip);
   }
   if (o->limit) {
      BSON_APPEND_INT64 (out, "limit", o->limit);
   }
   if (o->batch_size) {
      BSON_APPEND_INT32 (out, "batchSize", o->batch_size);
   }
   return true;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;
   const bson_t *opts;
   bson_t *results;
} mh_find_ctx_t;

static bool
mh_find_op (mongoc_client_t *client,
            mongoc_database_t *db,
            void *ctx,
            bson_error_t *berr)
{
   mh_find_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t empty = BSON_INITIALIZER;
   bool ok = mh_cursor_drain (
      mongoc_collection_find_with_opts (
         coll, c->filter ? c->filter : &empty, c->opts, NULL),
      c->results,
      berr);

   mongoc_collection_destroy (coll);
   return ok;
}

/* Runs a find with ready-made options: the path of every read below. */
static bool
mh_find_exec (const char *op,
              const char *database,
              const char *collection,
              const bson_t *filter,
              const bson_t *opts,
              bson_t *results,
              mongo_helper_error_t *error)
{
   mh_find_ctx_t ctx = {database, collection, filter, opts, results};
   char what[256], ns[200];

   if (filter && !mh_doc_check (op, "filter", filter, error)) {
      return false;
   }
   bson_snprintf (what,
                  sizeof what,
                  "%s on %s",
                  op,
                  mh_ns (ns, sizeof ns, database, collection));
   return mh_run (what, MH_OP_READ, mh_find_op, &ctx, error);
}

bool
mongo_helper_find (const char *database,
                   const char *collection,
                   const bson_t *filter,
                   const mongo_helper_find_opts_t *opts,
                   bson_t *results,
                   mongo_helper_error_t *error)
{
   bson_t o;
   bool ok;

   if (!results) {
      mh_error_clear (error);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "find: results is NULL");
   }
   bson_init (results);
   if (!mh_target_check ("find", database, collection, error)) {
      return false;
   }
   if (!mh_find_opts ("find", opts, &o, error)) {
      bson_destroy (&o);
      return false;
   }
   ok = mh_find_exec ("find", database, collection, filter, &o, results, error);
   bson_destroy (&o);
   return ok;
}

/* The first document of an array document, copied, or NULL. */
static bson_t *
mh_array_first (const bson_t *array)
{
   bson_iter_t it;
   const uint8_t *data;
   uint32_t len;

   if (bson_iter_init (&it, array) && bson_iter_next (&it) &&
       BSON_ITER_HOLDS_DOCUMENT (&it)) {
      bson_iter_document (&it, &len, &data);
      return bson_new_from_data (data, len);
   }
   return NULL;
}

static bson_t *
mh_find_one_opts (const char *op,
                  const char *database,
                  const char *collection,
                  const bson_t *filter,
                  const bson_t *opts,
                  mongo_helper_error_t *error)
{
   bson_t results = BSON_INITIALIZER;
   bson_t *doc = NULL;
   char ns[200];

   if (mh_find_exec (op, database, collection, filter, opts, &results, error)) {
      doc = mh_array_first (&results);
      if (!doc) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_NOT_FOUND,
                  0,
                  "%s: no document in %s matches the filter",
                  op,
                  mh_ns (ns, sizeof ns, database, collection));
      }
   }
   bson_destroy (&results);
   return doc;
}

bson_t *
mongo_helper_find_one (const char *database,
                       const char *collection,
                       const bson_t *filter,
                       const mongo_helper_find_opts_t *opts,
                       mongo_helper_error_t *error)
{
   mongo_helper_find_opts_t one;
   bson_t o;
   bson_t *doc = NULL;

   if (!mh_target_check ("find_one", database, collection, error)) {
      return NULL;
   }
   memset (&one, 0, sizeof one);
   if (opts) {
      one = *opts;
   }
   one.limit = 1;
   if (mh_find_opts ("find_one", &one, &o, error)) {
      /* One document: no cursor left open on the server. */
      BSON_APPEND_BOOL (&o, "singleBatch", true);
      doc = mh_find_one_opts ("find_one", database, collection, filter, &o, error);
   }
   bson_destroy (&o);
   return doc;
}

static char *
mh_doc_to_json_free (bson_t *doc)
{
   char *json = NULL;

   if (doc) {
      json = bson_as_relaxed_extended_json (doc, NULL);
      bson_destroy (doc);
   }
   return json;
}

char *
mongo_helper_find_one_json (const char *database,
                            const char *collection,
                            const char *filter_json,
                            const char *projection_json,
                            mongo_helper_error_t *error)
{
   mongo_helper_find_opts_t opts;
   bson_t *filter = NULL, *projection = NULL;
   char *json = NULL;

   if (!mh_target_check ("find_one", database, collection, error)) {
      return NULL;
   }
   if (mh_json_opt (filter_json, &filter, error) &&
       mh_json_opt (projection_json, &projection, error)) {
      memset (&opts, 0, sizeof opts);
      opts.projection = projection;
      json = mh_doc_to_json_free (
         mongo_helper_find_one (database, collection, filter, &opts, error));
   }
   bson_destroy (filter);
   bson_destroy (projection);
   return json;
}

char *
mongo_helper_find_by_id_json (const char *database,
                              const char *collection,
                              const char *oid_hex,
                              mongo_helper_error_t *error)
{
   bson_oid_t oid;
   bson_t filter = BSON_INITIALIZER;
   char *json;

   if (!mh_target_check ("find_by_id", database, collection, error)) {
      return NULL;
   }
   /* bson_oid_is_valid() accepts any 24 hex digits; bson_oid_init_from_string
    * would silently read garbage from anything else. */
   if (!oid_hex || strlen (oid_hex) != 24 || !bson_oid_is_valid (oid_hex, 24)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "find_by_id: '%.40s' is not an ObjectId (24 hexadecimal digits)",
               oid_hex ? oid_hex : "(null)");
      return NULL;
   }
   bson_oid_init_from_string (&oid, oid_hex);
   BSON_APPEND_OID (&filter, "_id", &oid);
   json = mh_doc_to_json_free (
      mongo_helper_find_one (database, collection, &filter, NULL, error));
   bson_destroy (&filter);
   return json;
}

char *
mongo_helper_find_json (const char *database,
                        const char *collection,
                        const char *filter_json,
                        const char *opts_json,
                        mongo_helper_error_t *error)
{
   bson_t *filter = NULL, *opts = NULL;
   bson_t results = BSON_INITIALIZER;
   char *json = NULL;

   if (!mh_target_check ("find", database, collection, error)) {
      return NULL;
   }
   if (mh_json_opt (filter_json, &filter, error) &&
       mh_json_opt (opts_json, &opts, error) &&
       mh_find_exec ("find", database, collection, filter, opts, &results, error)) {
      json = mongo_helper_array_to_json (&results, error);
   }
   bson_destroy (&results);
   bson_destroy (filter);
   bson_destroy (opts);
   return json;
}

/* ---- streaming (find and aggregate) ---- */

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;   /* find */
   const bson_t *pipeline; /* aggregate, when not NULL */
   const bson_t *opts;
   size_t chunk_size;
   mongo_helper_chunk_fn fn;
   void *user_data;
} mh_stream_ctx_t;

static bool
mh_stream_op (mongoc_client_t *client,
              mongoc_database_t *db,
              void *ctx,
              bson_error_t *berr)
{
   mh_stream_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t empty = BSON_INITIALIZER;
   mongoc_cursor_t *cursor;
   bson_t **chunk = bson_malloc0 (c->chunk_size * sizeof *chunk);
   const bson_t *doc;
   size_t n = 0;
   bool more = true, ok;

   if (c->pipeline) {
      cursor = mongoc_collection_aggregate (
         coll, MONGOC_QUERY_NONE, c->pipeline, c->opts, NULL);
   } else {
      cursor = mongoc_collection_find_with_opts (
         coll, c->filter ? c->filter : &empty, c->opts, NULL);
   }
   /* Copies are needed because a cursor's document is only valid until the
    * next call; holding at most chunk_size of them bounds the memory. */
   while (more && mongoc_cursor_next (cursor, &doc)) {
      chunk[n++] = bson_copy (doc);
      if (n == c->chunk_size) {
         more = c->fn ((const bson_t *const *) chunk, n, c->user_data);
         for (size_t i = 0; i < n; i++) {
            bson_destroy (chunk[i]);
         }
         n = 0;
      }
   }
   ok = !mongoc_cursor_error (cursor, berr);
   if (ok && more && n > 0) {
      c->fn ((const bson_t *const *) chunk, n, c->user_data);
   }
   for (size_t i = 0; i < n; i++) {
      bson_destroy (chunk[i]);
   }
   bson_free (chunk);
   /* Destroying a cursor that was stopped early sends killCursors, so the
    * server frees its side too. */
   mongoc_cursor_destroy (cursor);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_stream_run (const char *op,
               mh_stream_ctx_t *ctx,
               mongo_helper_error_t *error)
{
   char what[256], ns[200];

   if (ctx->chunk_size == 0 || !ctx->fn) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: chunk_size must be at least 1 and the callback "
                      "must not be NULL",
                      op);
   }
   if (ctx->chunk_size > INT32_MAX) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: chunk_size %zu is too large",
                      op,
                      ctx->chunk_size);
   }
   bson_snprintf (what,
                  sizeof what,
                  "%s on %s",
                  op,
                  mh_ns (ns, sizeof ns, ctx->database, ctx->collection));
   /* Flagged as a write: chunks already handed to the callback cannot be
    * taken back, so the execution path must never repeat the stream. */
   return mh_run (what, MH_OP_WRITE, mh_stream_op, ctx, error);
}

bool
mongo_helper_find_stream (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          const mongo_helper_find_opts_t *opts,
                          size_t chunk_size,
                          mongo_helper_chunk_fn fn,
                          void *user_data,
                          mongo_helper_error_t *error)
{
   mh_stream_ctx_t ctx = {
      database, collection, filter, NULL, NULL, chunk_size, fn, user_data};
   mongo_helper_find_opts_t o;
   bson_t b;
   bool ok;

   if (!mh_target_check ("find_stream", database, collection, error) ||
       (filter && !mh_doc_check ("find_stream", "filter", filter, error))) {
      return false;
   }
   memset (&o, 0, sizeof o);
   if (opts) {
      o = *opts;
   }
   if (o.batch_size == 0 && chunk_size <= INT32_MAX) {
      o.batch_size = (int32_t) chunk_size;
   }
   if (!mh_find_opts ("find_stream", &o, &b, error)) {
      bson_destroy (&b);
      return false;
   }
   ctx.opts = &b;
   ok = mh_stream_run ("find_stream", &ctx, error);
   bson_destroy (&b);
   return ok;
}

/* ---- update, replace, delete ---- */

typedef enum { MH_UPDATE_ONE, MH_UPDATE_MANY, MH_REPLACE_ONE } mh_update_kind_t;

typedef struct {
   const char *database;
   const char *collection;
   mh_update_kind_t kind;
   const bson_t *filter;
   const bson_t *update;
   bool upsert;
   mongo_helper_update_result_t *result;
} mh_update_ctx_t;

void
mongo_helper_update_result_cleanup (mongo_helper_update_result_t *result)
{
   if (result) {
      bson_value_destroy (&result->upserted_id);
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

static void
mh_update_result_reset (mongo_helper_update_result_t *result)
{
   if (result) {
      memset (result, 0, sizeof *result);
      result->upserted_id.value_type = BSON_TYPE_EOD;
   }
}

static bool
mh_update_op (mongoc_client_t *client,
              mongoc_database_t *db,
              void *ctx,
              bson_error_t *berr)
{
   mh_update_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t *opts = BCON_NEW ("upsert", BCON_BOOL (c->upsert));
   bson_t reply;
   bson_iter_t it;
   bool ok;

   switch (c->kind) {
   case MH_UPDATE_ONE:
      ok = mongoc_collection_update_one (
         coll, c->filter, c->update, opts, &reply, berr);
      break;
   case MH_UPDATE_MANY:
      ok = mongoc_collection_update_many (
         coll, c->filter, c->update, opts, &reply, berr);
      break;
   default:
      ok = mongoc_collection_replace_one (
         coll, c->filter, c->update, opts, &reply, berr);
      break;
   }
   if (ok && c->result) {
      mongo_helper_update_result_cleanup (c->result);
      c->result->matched = mh_reply_int (&reply, "matchedCount");
      c->result->modified = mh_reply_int (&reply, "modifiedCount");
      c->result->upserted = mh_reply_int (&reply, "upsertedCount");
      if (bson_iter_init_find (&it, &reply, "upsertedId")) {
         bson_value_copy (bson_iter_value (&it), &c->result->upserted_id);
         c->result->upserted = 1;
      }
   }
   bson_destroy (&reply);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_update_run (const char *op,
               mh_update_ctx_t *ctx,
               mongo_helper_error_t *error)
{
   char what[256], ns[200];

   mh_update_result_reset (ctx->result);
   if (!mh_target_check (op, ctx->database, ctx->collection, error) ||
       !mh_doc_check (op, "filter", ctx->filter, error) ||
       !mh_doc_check (op,
                      ctx->kind == MH_REPLACE_ONE ? "replacement" : "update",
                      ctx->update,
                      error)) {
      return false;
   }
   bson_snprintf (what,
                  sizeof what,
                  "%s on %s",
                  op,
                  mh_ns (ns, sizeof ns, ctx->database, ctx->collection));
   /* update_many is never safe to repeat; a single-document update is,
    * under the driver's retryable-writes protocol. */
   return mh_run (what, MH_OP_WRITE, mh_update_op, ctx, error);
}

bool
mongo_helper_update_one (const char *database,
                         const char *collection,
                         const bson_t *filter,
                         const bson_t *update,
                         bool upsert,
                         mongo_helper_update_result_t *result,
                         mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {
      database, collection, MH_UPDATE_ONE, filter, update, upsert, result};
   return mh_update_run ("update_one", &ctx, error);
}

bool
mongo_helper_update_many (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          const bson_t *update,
                          bool upsert,
                          mongo_helper_update_result_t *result,
                          mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {
      database, collection, MH_UPDATE_MANY, filter, update, upsert, result};
   return mh_update_run ("update_many", &ctx, error);
}

bool
mongo_helper_replace_one (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          const bson_t *replacement,
                          bool upsert,
                          mongo_helper_update_result_t *result,
                          mongo_helper_error_t *error)
{
   mh_update_ctx_t ctx = {
      database, collection, MH_REPLACE_ONE, filter, replacement, upsert, result};
   return mh_update_run ("replace_one", &ctx, error);
}

bool
mongo_helper_update_json (const char *database,
                          const char *collection,
                          const char *filter_json,
                          const char *update_json,
                          bool many,
                          bool upsert,
                          mongo_helper_update_result_t *result,
                          mongo_helper_error_t *error)
{
   bson_t *filter = NULL, *update = NULL;
   bool ok = false;

   mh_update_result_reset (result);
   if (!mh_target_check ("update", database, collection, error)) {
      return false;
   }
   filter = mongo_helper_json_to_bson (filter_json, error);
   if (filter) {
      update = mongo_helper_json_to_bson (update_json, error);
   }
   if (filter && update) {
      ok = many ? mongo_helper_update_many (
                     database, collection, filter, update, upsert, result, error)
                : mongo_helper_update_one (
                     database, collection, filter, update, upsert, result, error);
   }
   bson_destroy (filter);
   bson_destroy (update);
   return ok;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;
   bool many;
   int64_t deleted;
} mh_delete_ctx_t;

static bool
mh_delete_op (mongoc_client_t *client,
              mongoc_database_t *db,
              void *ctx,
              bson_error_t *berr)
{
   mh_delete_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t reply;
   bool ok = c->many ? mongoc_collection_delete_many (
                          coll, c->filter, NULL, &reply, berr)
                     : mongoc_collection_delete_one (
                          coll, c->filter, NULL, &reply, berr);

   c->deleted = mh_reply_int (&reply, "deletedCount");
   bson_destroy (&reply);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_delete (const char *op,
           const char *database,
           const char *collection,
           const bson_t *filter,
           bool many,
           int64_t *deleted,
           mongo_helper_error_t *error)
{
   mh_delete_ctx_t ctx = {database, collection, filter, many, 0};
   char what[256], ns[200];
   bool ok;

   if (deleted) {
      *deleted = 0;
   }
   if (!mh_target_check (op, database, collection, error) ||
       !mh_doc_check (op, "filter", filter, error)) {
      return false;
   }
   bson_snprintf (what,
                  sizeof what,
                  "%s on %s",
                  op,
                  mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_WRITE, mh_delete_op, &ctx, error);
   if (deleted) {
      *deleted = ctx.deleted;
   }
   return ok;
}

bool
mongo_helper_delete_one (const char *database,
                         const char *collection,
                         const bson_t *filter,
                         int64_t *deleted,
                         mongo_helper_error_t *error)
{
   return mh_delete ("delete_one", database, collection, filter, false, deleted, error);
}

bool
mongo_helper_delete_many (const char *database,
                          const char *collection,
                          const bson_t *filter,
                          int64_t *deleted,
                          mongo_helper_error_t *error)
{
   return mh_delete ("delete_many", database, collection, filter, true, deleted, error);
}

/* ---- counts and distinct ---- */

/* True if `doc` uses $near/$nearSphere anywhere (count cannot). */
static bool
mh_has_near (const bson_t *doc)
{
   bson_iter_t it;

   if (!doc || !bson_iter_init (&it, doc)) {
      return false;
   }
   while (bson_iter_next (&it)) {
      const char *k = bson_iter_key (&it);
      if (strcmp (k, "$near") == 0 || strcmp (k, "$nearSphere") == 0) {
         return true;
      }
      if (BSON_ITER_HOLDS_DOCUMENT (&it) || BSON_ITER_HOLDS_ARRAY (&it)) {
         const uint8_t *data;
         uint32_t len;
         bson_t sub;

         if (BSON_ITER_HOLDS_DOCUMENT (&it)) {
            bson_iter_document (&it, &len, &data);
         } else {
            bson_iter_array (&it, &len, &data);
         }
         if (bson_init_static (&sub, data, len) && mh_has_near (&sub)) {
            return true;
         }
      }
   }
   return false;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *filter;
   bool estimated;
   int64_t count;
} mh_count_ctx_t;

static bool
mh_count_op (mongoc_client_t *client,
             mongoc_database_t *db,
             void *ctx,
             bson_error_t *berr)
{
   mh_count_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t empty = BSON_INITIALIZER;

   if (c->estimated) {
      c->count = mongoc_collection_estimated_document_count (
         coll, NULL, NULL, NULL, berr);
   } else {
      c->count = mongoc_collection_count_documents (
         coll, c->filter ? c->filter : &empty, NULL, NULL, NULL, berr);
   }
   mongoc_collection_destroy (coll);
   return c->count >= 0;
}

static bool
mh_count (const char *op,
          const char *database,
          const char *collection,
          const bson_t *filter,
          bool estimated,
          int64_t *count,
          mongo_helper_error_t *error)
{
   mh_count_ctx_t ctx = {database, collection, filter, estimated, 0};
   char what[256], ns[200];
   bool ok;

   if (count) {
      *count = 0;
   }
   if (!mh_target_check (op, database, collection, error) ||
       (filter && !mh_doc_check (op, "filter", filter, error))) {
      return false;
   }
   if (!count) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: count is NULL",
                      op);
   }
   if (mh_has_near (filter)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the server cannot count with $near/$nearSphere; "
                      "use $geoWithin with $centerSphere instead",
                      op);
   }
   bson_snprintf (what,
                  sizeof what,
                  "%s on %s",
                  op,
                  mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_READ, mh_count_op, &ctx, error);
   *count = ok ? ctx.count : 0;
   return ok;
}

bool
mongo_helper_count_documents (const char *database,
                              const char *collection,
                              const bson_t *filter,
                              int64_t *count,
                              mongo_helper_error_t *error)
{
   return mh_count ("count_documents", database, collection, filter, false, count, error);
}

bool
mongo_helper_estimated_count (const char *database,
                              const char *collection,
                              int64_t *count,
                              mongo_helper_error_t *error)
{
   return mh_count ("estimated_count", database, collection, NULL, true, count, error);
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *command;
   bson_t *values;
} mh_distinct_ctx_t;

static bool
mh_distinct_op (mongoc_client_t *client,
                mongoc_database_t *db,
                void *ctx,
                bson_error_t *berr)
{
   mh_distinct_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t reply;
   bson_iter_t it, child;
   uint32_t i = 0;
   bool ok = mongoc_collection_read_command_with_opts (
      coll, c->command, NULL, NULL, &reply, berr);

   bson_reinit (c->values);
   if (ok && bson_iter_init_find (&it, &reply, "values") &&
       BSON_ITER_HOLDS_ARRAY (&it) && bson_iter_recurse (&it, &child)) {
      while (bson_iter_next (&child)) {
         mh_array_append_iter (c->values, i++, &child);
      }
   }
   bson_destroy (&reply);
   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_distinct (const char *database,
                       const char *collection,
                       const char *field,
                       const bson_t *filter,
                       bson_t *values,
                       mongo_helper_error_t *error)
{
   mh_distinct_ctx_t ctx = {database, collection, NULL, values};
   bson_t cmd = BSON_INITIALIZER;
   char what[256], ns[200];
   bool ok;

   if (!values) {
      mh_error_clear (error);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "distinct: values is NULL");
   }
   bson_init (values);
   if (!mh_target_check ("distinct", database, collection, error) ||
       (filter && !mh_doc_check ("distinct", "filter", filter, error))) {
      return false;
   }
   if (!field || !*field) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "distinct: the field name is NULL or empty");
   }
   BSON_APPEND_UTF8 (&cmd, "distinct", collection);
   BSON_APPEND_UTF8 (&cmd, "key", field);
   if (filter) {
      BSON_APPEND_DOCUMENT (&cmd, "query", filter);
   }
   ctx.command = &cmd;
   bson_snprintf (what,
                  sizeof what,
                  "distinct '%s' on %s",
                  field,
                  mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, MH_OP_READ, mh_distinct_op, &ctx, error);
   bson_destroy (&cmd);
   return ok;
}

/* ---- bulk insert ---- */

void
mongo_helper_bulk_result_destroy (mongo_helper_bulk_result_t *result)
{
   if (!result) {
      return;
   }
   for (size_t i = 0; i < result->n_failures; i++) {
      bson_free (result->failures[i].message);
   }
   bson_free (result->failures);
   bson_free (result);
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *const *docs; /* this batch */
   size_t n;
   size_t offset; /* index of docs[0] in the caller's array */
   bool ordered;
   mongo_helper_bulk_result_t *result;
   size_t cap;
} mh_bulk_ctx_t;

static void
mh_bulk_record (mh_bulk_ctx_t *c, size_t index, int32_t code, const char *msg)
{
   mongo_helper_bulk_result_t *r = c->result;

   if (r->n_failures == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 8;
      r->failures = bson_realloc (r->failures, c->cap * sizeof *r->failures);
   }
   r->failures[r->n_failures].index = index;
   r->failures[r->n_failures].code = code;
   r->failures[r->n_failures].message = bson_strdup (msg ? msg : "");
   r->n_failures++;
}

static bool
mh_bulk_op (mongoc_client_t *client,
            mongoc_database_t *db,
            void *ctx,
            bson_error_t *berr)
{
   mh_bulk_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (c->ordered));
   mongoc_bulk_operation_t *bulk =
      mongoc_collection_create_bulk_operation_with_opts (coll, opts);
   bson_t reply;
   bson_iter_t it, errs, one;
   size_t before = c->result->n_failures;
   bool ok = true;

   for (size_t i = 0; ok && i < c->n; i++) {
      ok = mongoc_bulk_operation_insert_with_opts (bulk, c->docs[i], NULL, berr);
   }
   if (!ok) {
      /* The documents were checked before: this is a driver-side refusal
       * (e.g. invalid keys) and nothing of this batch was sent. */
      bson_init (&reply);
   } else {
      ok = mongoc_bulk_operation_execute (bulk, &reply, berr) != 0;
      c->result->inserted += mh_reply_int (&reply, "nInserted");
      c->result->batches++;
      /* Per-document failures are the result, not a failure of the call:
       * the documents around them landed and must not be sent again. */
      if (bson_iter_init_find (&it, &reply, "writeErrors") &&
          BSON_ITER_HOLDS_ARRAY (&it) && bson_iter_recurse (&it, &errs)) {
         while (bson_iter_next (&errs)) {
            int64_t index = 0;
            int32_t code = 0;
            const char *msg = NULL;

            if (!BSON_ITER_HOLDS_DOCUMENT (&errs) ||
                !bson_iter_recurse (&errs, &one)) {
               continue;
            }
            while (bson_iter_next (&one)) {
               if (strcmp (bson_iter_key (&one), "index") == 0) {
                  index = bson_iter_as_int64 (&one);
               } else if (strcmp (bson_iter_key (&one), "code") == 0) {
                  code = (int32_t) bson_iter_as_int64 (&one);
               } else if (strcmp (bson_iter_key (&one), "errmsg") == 0 &&
                          BSON_ITER_HOLDS_UTF8 (&one)) {
                  msg = bson_iter_utf8 (&one, NULL);
               }
            }
            mh_bulk_record (c, c->offset + (size_t) index, code, msg);
         }
      }
      if (!ok && c->result->n_failures > before &&
          !(bson_iter_init_find (&it, &reply, "writeConcernErrors") &&
            BSON_ITER_HOLDS_ARRAY (&it) && bson_iter_recurse (&it, &errs) &&
            bson_iter_next (&errs))) {
         ok = true;
      }
   }
   bson_destroy (&reply);
   mongoc_bulk_operation_destroy (bulk);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_bulk_insert (const char *database,
                          const char *collection,
                          const bson_t *const *docs,
                          size_t n,
                          size_t batch_size,
                          bool ordered,
                          mongo_helper_bulk_result_t **result,
                          mongo_helper_error_t *error)
{
   mh_bulk_ctx_t ctx;
   char what[256], ns[200], label[48];
   bool ok = true;

   if (result) {
      *result = NULL;
   }
   if (!mh_target_check ("bulk_insert", database, collection, error)) {
      return false;
   }
   if (batch_size == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "bulk_insert: batch_size is 0: give the number of "
                      "documents per batch (e.g. 1000)");
   }
   if (!docs || n == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "bulk_insert: no documents given (docs NULL or n 0)");
   }
   /* All or nothing for bad input: checking everything first means a bad
    * document at the end never leaves half the array inserted. */
   for (size_t i = 0; i < n; i++) {
      bson_snprintf (label, sizeof label, "document at index %zu", i);
      if (!mh_doc_check ("bulk_insert", label, docs[i], error)) {
         return false;
      }
   }
   memset (&ctx, 0, sizeof ctx);
   ctx.database = database;
   ctx.collection = collection;
   ctx.ordered = ordered;
   ctx.result = bson_malloc0 (sizeof *ctx.result);
   bson_snprintf (what,
                  sizeof what,
                  "bulk_insert into %s",
                  mh_ns (ns, sizeof ns, database, collection));
   for (size_t off = 0; off < n; off += batch_size) {
      ctx.docs = docs + off;
      ctx.offset = off;
      ctx.n = n - off < batch_size ? n - off : batch_size;
      if (!mh_run (what, MH_OP_WRITE, mh_bulk_op, &ctx, error)) {
         ok = false;
         break;
      }
      if (ordered && ctx.result->n_failures > 0) {
         break; /* the ordered contract: nothing after the first failure */
      }
   }
   if (ok && ctx.result->n_failures > 0) {
      const mongo_helper_bulk_failure_t *f = &ctx.result->failures[0];
      mh_fail (error,
               f->code == 11000 || f->code == 11001
                  ? MONGO_HELPER_ERROR_DUPLICATE_KEY
                  : MONGO_HELPER_ERROR_SERVER,
               f->code,
               "%s: %zu of %zu documents failed (%lld inserted); first, at "
               "index %zu: %s",
               what,
               ctx.result->n_failures,
               n,
               (long long) ctx.result->inserted,
               f->index,
               f->message);
      ok = false;
   }
   if (result) {
      *result = ctx.result;
   } else {
      mongo_helper_bulk_result_destroy (ctx.result);
   }
   return ok;
}

/* ---- aggregation ---- */

static bool
mh_aggregate_opts (const mongo_helper_aggregate_opts_t *o,
                   int32_t default_batch,
                   bson_t *out,
                   mongo_helper_error_t *error)
{
   int32_t batch = o ? o->batch_size : 0;

   bson_init (out);
   if (batch < 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "aggregate: batch_size must not be negative");
   }
   if (o && o->allow_disk_use) {
      BSON_APPEND_BOOL (out, "allowDiskUse", true);
   }
   if (batch == 0) {
      batch = default_batch;
   }
   if (batch > 0) {
      BSON_APPEND_INT32 (out, "batchSize", batch);
   }
   return true;
}

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *pipeline;
   const bson_t *opts;
   bson_t *results;
} mh_aggregate_ctx_t;

static bool
mh_aggregate_op (mongoc_client_t *client,
                 mongoc_database_t *db,
                 void *ctx,
                 bson_error_t *berr)
{
   mh_aggregate_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bool ok = mh_cursor_drain (
      mongoc_collection_aggregate (
         coll, MONGOC_QUERY_NONE, c->pipeline, c->opts, NULL),
      c->results,
      berr);

   mongoc_collection_destroy (coll);
   return ok;
}

/* A pipeline with a $merge or $out stage writes: it must not be repeated. */
static unsigned
mh_pipeline_flags (const bson_t *pipeline)
{
   bson_iter_t it, stage;

   if (bson_iter_init (&it, pipeline)) {
      while (bson_iter_next (&it)) {
         if (BSON_ITER_HOLDS_DOCUMENT (&it) && bson_iter_recurse (&it, &stage) &&
             bson_iter_next (&stage) &&
             (strcmp (bson_iter_key (&stage), "$out") == 0 ||
              strcmp (bson_iter_key (&stage), "$merge") == 0)) {
            return MH_OP_WRITE;
         }
      }
   }
   return MH_OP_READ;
}

bool
mongo_helper_aggregate (const char *database,
                        const char *collection,
                        const bson_t *pipeline,
                        const mongo_helper_aggregate_opts_t *opts,
                        bson_t *results,
                        mongo_helper_error_t *error)
{
   mh_aggregate_ctx_t ctx = {database, collection, pipeline, NULL, results};
   char what[256], ns[200];
   bson_t o;
   bool ok;

   if (!results) {
      mh_error_clear (error);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "aggregate: results is NULL");
   }
   bson_init (results);
   if (!mh_target_check ("aggregate", database, collection, error) ||
       !mh_doc_check ("aggregate", "pipeline", pipeline, error)) {
      return false;
   }
   if (!mh_aggregate_opts (opts, 0, &o, error)) {
      bson_destroy (&o);
      return false;
   }
   ctx.opts = &o;
   bson_snprintf (what,
                  sizeof what,
                  "aggregate on %s",
                  mh_ns (ns, sizeof ns, database, collection));
   ok = mh_run (what, mh_pipeline_flags (pipeline), mh_aggregate_op, &ctx, error);
   bson_destroy (&o);
   return ok;
}

char *
mongo_helper_aggregate_json (const char *database,
                             const char *collection,
                             const char *pipeline_json,
                             const mongo_helper_aggregate_opts_t *opts,
                             mongo_helper_error_t *error)
{
   bson_t *pipeline;
   bson_t results;
   char *json = NULL;

   if (!mh_target_check ("aggregate", database, collection, error)) {
      return NULL;
   }
   pipeline = mongo_helper_json_to_bson (pipeline_json, error);
   if (!pipeline) {
      return NULL;
   }
   if (mongo_helper_aggregate (
          database, collection, pipeline, opts, &results, error)) {
      json = mongo_helper_array_to_json (&results, error);
   }
   bson_destroy (&results);
   bson_destroy (pipeline);
   return json;
}

bool
mongo_helper_aggregate_stream (const char *database,
                               const char *collection,
                               const bson_t *pipeline,
                               const mongo_helper_aggregate_opts_t *opts,
                               size_t chunk_size,
                               mongo_helper_chunk_fn fn,
                               void *user_data,
                               mongo_helper_error_t *error)
{
   mh_stream_ctx_t ctx = {
      database, collection, NULL, pipeline, NULL, chunk_size, fn, user_data};
   bson_t o;
   bool ok;

   if (!mh_target_check ("aggregate_stream", database, collection, error) ||
       !mh_doc_check ("aggregate_stream", "pipeline", pipeline, error)) {
      return false;
   }
   if (!mh_aggregate_opts (
          opts, chunk_size <= INT32_MAX ? (int32_t) chunk_size : 0, &o, error)) {
      bson_destroy (&o);
      return false;
   }
   ctx.opts = &o;
   ok = mh_stream_run ("aggregate_stream", &ctx, error);
   bson_destroy (&o);
   return ok;
}

/* ---- indexes ---- */

typedef struct {
   const char *database;
   const char *collection;
   const bson_t *command;
   const char *name;
   bson_t *results;
} mh_index_ctx_t;

static bool
mh_create_index_op (mongoc_client_t *client,
                    mongoc_database_t *db,
                    void *ctx,
                    bson_error_t *berr)
{
   mh_index_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bson_t reply;
   bool ok = mongoc_collection_write_command_with_opts (
      coll, c->command, NULL, &reply, berr);

   bson_destroy (&reply);
   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_create_index (const char *database,
                           const char *collection,
                           const bson_t *keys,
                           const bson_t *options,
                           char **name_out,
                           mongo_helper_error_t *error)
{
   mh_index_ctx_t ctx = {database, collection, NULL, NULL, NULL};
   bson_t cmd = BSON_INITIALIZER, indexes, index;
   bson_iter_t it;
   char *name = NULL;
   char what[400], ns[200];
   bool ok;

   if (name_out) {
      *name_out = NULL;
   }
   if (!mh_target_check ("create_index", database, collection, error) ||
       !mh_doc_check ("create_index", "key pattern", keys, error)) {
      return false;
   }
   if (bson_empty (keys)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "create_index: the key pattern is empty: name at least "
                      "one field, e.g. {\"email\": 1}");
   }
   if (options && bson_iter_init_find (&it, options, "name")) {
      if (!BSON_ITER_HOLDS_UTF8 (&it) || !*bson_iter_utf8 (&it, NULL)) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "create_index: option \"name\" must be a non-empty "
                         "string");
      }
      name = bson_strdup (bson_iter_utf8 (&it, NULL));
   } else {
      name = mongoc_collection_keys_to_index_string (keys);
   }
   if (!name) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "create_index: the key pattern's values must be numbers "
                      "or strings such as \"text\" and \"2dsphere\"");
   }
   BSON_APPEND_UTF8 (&cmd, "createIndexes", collection);
   BSON_APPEND_ARRAY_BEGIN (&cmd, "indexes", &indexes);
   BSON_APPEND_DOCUMENT_BEGIN (&indexes, "0", &index);
   BSON_APPEND_DOCUMENT (&index, "key", keys);
   BSON_APPEND_UTF8 (&index, "name", name);
   if (options && bson_iter_init (&it, options)) {
      while (bson_iter_next (&it)) {
         if (strcmp (bson_iter_key (&it), "name") != 0 &&
             strcmp (bson_iter_key (&it), "key") != 0) {
            bson_append_iter (&index, NULL, 0, &it);
         }
      }
   }
   bson_append_document_end (&indexes, &index);
   bson_append_array_end (&cmd, &indexes);
   ctx.command = &cmd;
   bson_snprintf (what,
                  sizeof what,
                  "create_index '%s' on %s",
                  name,
                  mh_ns (ns, sizeof ns, database, collection));
   /* createIndexes with the same specification is a no-op on the server. */
   ok = mh_run (what,
                MH_OP_WRITE | MH_OP_IDEMPOTENT,
                mh_create_index_op,
                &ctx,
                error);
   bson_destroy (&cmd);
   if (ok && name_out) {
      *name_out = name;
   } else {
      bson_free (name);
   }
   return ok;
}

static bool
mh_list_indexes_op (mongoc_client_t *client,
                    mongoc_database_t *db,
                    void *ctx,
                    bson_error_t *berr)
{
   mh_index_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bool ok = mh_cursor_drain (
      mongoc_collection_find_indexes_with_opts (coll, NULL), c->results, berr);

   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_list_indexes (const char *database,
                           const char *collection,
                           bson_t *indexes,
                           mongo_helper_error_t *error)
{
   mh_index_ctx_t ctx = {database, collection, NULL, NULL, indexes};
   char what[256], ns[200];

   if (!indexes) {
      mh_error_clear (error);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "list_indexes: indexes is NULL");
   }
   bson_init (indexes);
   if (!mh_target_check ("list_indexes", database, collection, error)) {
      return false;
   }
   bson_snprintf (what,
                  sizeof what,
                  "list_indexes on %s",
                  mh_ns (ns, sizeof ns, database, collection));
   return mh_run (what, MH_OP_READ, mh_list_indexes_op, &ctx, error);
}

static bool
mh_drop_index_op (mongoc_client_t *client,
                  mongoc_database_t *db,
                  void *ctx,
                  bson_error_t *berr)
{
   mh_index_ctx_t *c = ctx;
   mongoc_collection_t *coll =
      mh_collection (client, db, c->database, c->collection);
   bool ok = mongoc_collection_drop_index_with_opts (coll, c->name, NULL, berr);

   mongoc_collection_destroy (coll);
   return ok;
}

bool
mongo_helper_drop_index (const char *database,
                         const char *collection,
                         const char *name,
                         mongo_helper_error_t *error)
{
   mh_index_ctx_t ctx = {database, collection, NULL, name, NULL};
   char what[400], ns[200];

   if (!mh_target_check ("drop_index", database, collection, error)) {
      return false;
   }
   if (!name || !*name || strcmp (name, "*") == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "drop_index: give the name of one index (not NULL, "
                      "empty or \"*\")");
   }
   bson_snprintf (what,
                  sizeof what,
                  "drop_index '%s' on %s",
                  name,
                  mh_ns (ns, sizeof ns, database, collection));
   return mh_run (what, MH_OP_WRITE, mh_drop_index_op, &ctx, error);
}

/* ---- text and geospatial search ---- */

static bool
mh_results_init (const char *op, bson_t *results, mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!results) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: results is NULL",
                      op);
   }
   bson_init (results);
   return true;
}

bool
mongo_helper_text_search (const char *database,
                          const char *collection,
                          const char *search,
                          const char *language,
                          const bson_t *filter,
                          int64_t limit,
                          bson_t *results,
                          mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER, text, opts = BSON_INITIALIZER, sub;
   bool ok;

   if (!mh_results_init ("text_search", results, error) ||
       !mh_target_check ("text_search", database, collection, error)) {
      return false;
   }
   if (!search || !*search || limit < 0 || (language && !*language)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "text_search: the search text must be non-empty, the "
                      "language NULL or non-empty, the limit not negative");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&f, "$text", &text);
   BSON_APPEND_UTF8 (&text, "$search", search);
   if (language) {
      BSON_APPEND_UTF8 (&text, "$language", language);
   }
   bson_append_document_end (&f, &text);
   if (filter) {
      bson_concat (&f, filter);
   }
   BSON_APPEND_DOCUMENT_BEGIN (&opts, "projection", &sub);
   BCON_APPEND (&sub, "score", "{", "$meta", BCON_UTF8 ("textScore"), "}");
   bson_append_document_end (&opts, &sub);
   BSON_APPEND_DOCUMENT_BEGIN (&opts, "sort", &sub);
   BCON_APPEND (&sub, "score", "{", "$meta", BCON_UTF8 ("textScore"), "}");
   bson_append_document_end (&opts, &sub);
   if (limit > 0) {
      BSON_APPEND_INT64 (&opts, "limit", limit);
   }
   ok = mh_find_exec (
      "text_search", database, collection, &f, &opts, results, error);
   bson_destroy (&f);
   bson_destroy (&opts);
   return ok;
}

static bool
mh_geo_check (const char *op,
              const char *field,
              double lng,
              double lat,
              double meters,
              mongo_helper_error_t *error)
{
   /* The negated forms also reject NaN. */
   if (!field || !*field || !(lng >= -180.0 && lng <= 180.0) ||
       !(lat >= -90.0 && lat <= 90.0) || !(meters >= 0.0)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: need a field name, longitude in [-180, 180], "
                      "latitude in [-90, 90] and a distance >= 0 (got %g, %g, "
                      "%g)",
                      op,
                      lng,
                      lat,
                      meters);
   }
   return true;
}

bool
mongo_helper_geo_near (const char *database,
                       const char *collection,
                       const char *field,
                       double longitude,
                       double latitude,
                       double max_meters,
                       int64_t limit,
                       bson_t *results,
                       mongo_helper_error_t *error)
{
   bson_t *filter, opts = BSON_INITIALIZER;
   bool ok;

   if (!mh_results_init ("geo_near", results, error) ||
       !mh_target_check ("geo_near", database, collection, error) ||
       !mh_geo_check ("geo_near", field, longitude, latitude, max_meters, error)) {
      return false;
   }
   if (limit < 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "geo_near: the limit must not be negative");
   }
   /* $nearSphere with GeoJSON measures in meters on the WGS84 sphere and
    * returns nearest first, which is what "near me" means. */
   filter = BCON_NEW (field,
                      "{",
                      "$nearSphere",
                      "{",
                      "$geometry",
                      "{",
                      "type",
                      BCON_UTF8 ("Point"),
                      "coordinates",
                      "[",
                      BCON_DOUBLE (longitude),
                      BCON_DOUBLE (latitude),
                      "]",
                      "}",
                      "$maxDistance",
                      BCON_DOUBLE (max_meters),
                      "}",
                      "}");
   if (limit > 0) {
      BSON_APPEND_INT64 (&opts, "limit", limit);
   }
   ok = mh_find_exec ("geo_near", database, collection, filter, &opts, results, error);
   bson_destroy (filter);
   bson_destroy (&opts);
   return ok;
}

bool
mongo_helper_geo_within_polygon (const char *database,
                                 const char *collection,
                                 const char *field,
                                 const double *lng_lat,
                                 size_t n_points,
                                 bson_t *results,
                                 mongo_helper_error_t *error)
{
   bson_t filter = BSON_INITIALIZER, f, w, g, coords, ring, pt;
   char buf[16];
   const char *key;
   uint32_t k = 0;
   size_t n = n_points;
   bool closed, ok;

   if (!mh_results_init ("geo_within_polygon", results, error) ||
       !mh_target_check ("geo_within_polygon", database, collection, error)) {
      return false;
   }
   if (!lng_lat || n < 3) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "geo_within_polygon: a polygon needs at least 3 points");
   }
   for (size_t i = 0; i < n; i++) {
      if (!mh_geo_check (
             "geo_within_polygon", field, lng_lat[2 * i], lng_lat[2 * i + 1], 0, error)) {
         return false;
      }
   }
   closed = lng_lat[0] == lng_lat[2 * (n - 1)] &&
            lng_lat[1] == lng_lat[2 * (n - 1) + 1];
   if (closed && n < 4) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "geo_within_polygon: a closed ring needs at least 4 "
                      "points (3 distinct)");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&filter, field, &f);
   BSON_APPEND_DOCUMENT_BEGIN (&f, "$geoWithin", &w);
   BSON_APPEND_DOCUMENT_BEGIN (&w, "$geometry", &g);
   BSON_APPEND_UTF8 (&g, "type", "Polygon");
   BSON_APPEND_ARRAY_BEGIN (&g, "coordinates", &coords);
   BSON_APPEND_ARRAY_BEGIN (&coords, "0", &ring);
   /* GeoJSON rings must end where they start. */
   for (size_t i = 0; i < n + (closed ? 0 : 1); i++) {
      size_t j = i < n ? i : 0;
      bson_uint32_to_string (k++, &key, buf, sizeof buf);
      bson_append_array_begin (&ring, key, -1, &pt);
      BSON_APPEND_DOUBLE (&pt, "0", lng_lat[2 * j]);
      BSON_APPEND_DOUBLE (&pt, "1", lng_lat[2 * j + 1]);
      bson_append_array_end (&ring, &pt);
   }
   bson_append_array_end (&coords, &ring);
   bson_append_array_end (&g, &coords);
   bson_append_document_end (&w, &g);
   bson_append_document_end (&f, &w);
   bson_append_document_end (&filter, &f);
   ok = mh_find_exec (
      "geo_within_polygon", database, collection, &filter, NULL, results, error);
   bson_destroy (&filter);
   return ok;
}

bool
mongo_helper_geo_within_circle (const char *database,
                                const char *collection,
                                const char *field,
                                double longitude,
                                double latitude,
                                double radius_meters,
                                bson_t *results,
                                mongo_helper_error_t *error)
{
   bson_t *filter;
   bool ok;

   if (!mh_results_init ("geo_within_circle", results, error) ||
       !mh_target_check ("geo_within_circle", database, collection, error) ||
       !mh_geo_check ("geo_within_circle",
                      field,
                      longitude,
                      latitude,
                      radius_meters,
                      error)) {
      return false;
   }
   filter = BCON_NEW (field,
                      "{",
                      "$geoWithin",
                      "{",
                      "$centerSphere",
                      "[",
                      "[",
                      BCON_DOUBLE (longitude),
                      BCON_DOUBLE (latitude),
                      "]",
                      BCON_DOUBLE (radius_meters / MH_EARTH_RADIUS_M),
                      "]",
                      "}",
                      "}");
   ok = mh_find_exec (
      "geo_within_circle", database, collection, filter, NULL, results, error);
   bson_destroy (filter);
   return ok;
}


/* ---- Connector operations: files, streams, concurrency, stats ------ */


/* ---- Web-backend helpers ------------------------------------------- */

