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


/* ---- Connector operations: files, streams, concurrency, stats ------ */


/* ---- Web-backend helpers ------------------------------------------- */


/* Sessions, caches and user event logs.  libcrypto supplies the CSPRNG and
 * SHA-256 (libmongoc already links it); the includes sit here so the
 * section stays self-contained. */
#include <openssl/evp.h>
#include <openssl/rand.h>

/* The server's document limit; values near it cannot be stored with their
 * envelope, so the check keeps a small margin for _id and dates. */
#define MH_WEB_MAX_BSON (16 * 1024 * 1024)
#define MH_WEB_ENVELOPE 4096

static int64_t
mh_web_now_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
mh_web_sleep_ms (int64_t ms)
{
   struct timespec ts;

   if (ms <= 0) {
      return;
   }
   ts.tv_sec = (time_t) (ms / 1000);
   ts.tv_nsec = (long) (ms % 1000) * 1000000L;
   while (nanosleep (&ts, &ts) != 0 && errno == EINTR) {
   }
}

/* SHA-256 as 64 lowercase hex characters.  EVP_Digest rather than SHA256()
 * because the latter's low-level family is deprecated in OpenSSL 3. */
static bool
mh_web_sha256_hex (const void *data, size_t len, char out[65])
{
   static const char hex[] = "0123456789abcdef";
   unsigned char md[EVP_MAX_MD_SIZE];
   unsigned int mdlen = 0;

   if (!EVP_Digest (data, len, md, &mdlen, EVP_sha256 (), NULL) || mdlen != 32) {
      return false;
   }
   for (unsigned i = 0; i < 32; i++) {
      out[2 * i] = hex[md[i] >> 4];
      out[2 * i + 1] = hex[md[i] & 15];
   }
   out[64] = '\0';
   return true;
}

/* A collection name the server accepts and that cannot address another
 * namespace ('$' and system. are reserved). */
static bool
mh_web_coll_name_ok (const char *name, mongo_helper_error_t *error)
{
   if (!name || !*name || strlen (name) > 120 || strchr (name, '$') ||
       strncmp (name, "system.", 7) == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "collection name '%s' is empty, longer than 120 bytes, "
                      "contains '$' or starts with 'system.': choose another",
                      name ? name : "(null)");
   }
   return true;
}

static bool
mh_web_str_ok (const char *s, const char *what, mongo_helper_error_t *error)
{
   if (!s || !*s || !bson_utf8_validate (s, strlen (s), false)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s must be a non-empty UTF-8 string",
                      what);
   }
   return true;
}

static bool
mh_web_size_ok (size_t len, const char *what, mongo_helper_error_t *error)
{
   if (len > MH_WEB_MAX_BSON - MH_WEB_ENVELOPE) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s is %zu bytes: more than fits in one 16 MB MongoDB "
                      "document; store it in GridFS or split it",
                      what,
                      len);
   }
   return true;
}

/* Reports a condition the library itself detected inside an operation, so
 * mh_run() maps it like a server error (category SERVER, the given code). */
static bool
mh_web_berr (bson_error_t *berr, uint32_t code, const char *fmt, ...)
   BSON_GNUC_PRINTF (3, 4);

static bool
mh_web_berr (bson_error_t *berr, uint32_t code, const char *fmt, ...)
{
   va_list ap;

   berr->domain = MONGOC_ERROR_SERVER;
   berr->code = code;
   va_start (ap, fmt);
   vsnprintf (berr->message, sizeof berr->message, fmt, ap);
   va_end (ap);
   return false;
}

/* -- Generic single-collection operations.  One op function covers the
 * handful of shapes the helpers need; the context carries the request and
 * receives the results, which are reset on entry so a repeated attempt
 * never sees a previous one's state. */
typedef enum {
   MH_W_FIND_ONE,
   MH_W_FIND_ALL,
   MH_W_INSERT,
   MH_W_UPDATE,
   MH_W_REPLACE,
   MH_W_DELETE,
   MH_W_COUNT,
   MH_W_FAM
} mh_w_kind_t;

typedef struct {
   mh_w_kind_t kind;
   const char *coll;
   const bson_t *filter; /* the document for INSERT */
   const bson_t *update; /* UPDATE/REPLACE/FAM */
   const bson_t *opts;   /* find options (projection, sort, limit) */
   bool upsert;
   bool many;
   /* results */
   bson_t *found; /* FIND_ONE, FAM: initialised by the caller */
   bson_t *array; /* FIND_ALL: initialised by the caller */
   bool hit;
   int64_t n; /* matched, deleted, counted or found */
} mh_w_op_t;

static int64_t
mh_w_reply_int (const bson_t *reply, const char *field)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, reply, field) && BSON_ITER_HOLDS_NUMBER (&it)) {
      return bson_iter_as_int64 (&it);
   }
   return 0;
}

static bool
mh_w_op_fn (mongoc_client_t *client,
            mongoc_database_t *db,
            void *ctx,
            bson_error_t *berr)
{
   mh_w_op_t *o = ctx;
   mongoc_collection_t *coll = mongoc_database_get_collection (db, o->coll);
   bson_t reply = BSON_INITIALIZER;
   bson_t uopts = BSON_INITIALIZER;
   const bson_t *doc;
   bool ok = false;

   (void) client;
   o->hit = false;
   o->n = 0;
   if (o->upsert) {
      BSON_APPEND_BOOL (&uopts, "upsert", true);
   }
   switch (o->kind) {
   case MH_W_FIND_ONE:
   case MH_W_FIND_ALL: {
      mongoc_cursor_t *cur;

      if (o->array) {
         bson_reinit (o->array);
      }
      cur = mongoc_collection_find_with_opts (coll, o->filter, o->opts, NULL);
      while (mongoc_cursor_next (cur, &doc)) {
         if (o->kind == MH_W_FIND_ONE) {
            if (!o->hit) {
               bson_destroy (o->found);
               bson_copy_to (doc, o->found);
               o->hit = true;
            }
         } else {
            char key[16];
            const char *k;

            bson_uint32_to_string ((uint32_t) o->n, &k, key, sizeof key);
            BSON_APPEND_DOCUMENT (o->array, k, doc);
         }
         o->n++;
      }
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      break;
   }
   case MH_W_INSERT:
      ok = mongoc_collection_insert_one (coll, o->filter, NULL, NULL, berr);
      o->n = ok ? 1 : 0;
      break;
   case MH_W_UPDATE:
      bson_destroy (&reply);
      ok = o->many ? mongoc_collection_update_many (
                        coll, o->filter, o->update, &uopts, &reply, berr)
                   : mongoc_collection_update_one (
                        coll, o->filter, o->update, &uopts, &reply, berr);
      o->n = mh_w_reply_int (&reply, "matchedCount") +
             mh_w_reply_int (&reply, "upsertedCount");
      break;
   case MH_W_REPLACE:
      bson_destroy (&reply);
      ok = mongoc_collection_replace_one (
         coll, o->filter, o->update, &uopts, &reply, berr);
      o->n = mh_w_reply_int (&reply, "matchedCount") +
             mh_w_reply_int (&reply, "upsertedCount");
      break;
   case MH_W_DELETE:
      bson_destroy (&reply);
      ok = o->many ? mongoc_collection_delete_many (
                        coll, o->filter, NULL, &reply, berr)
                   : mongoc_collection_delete_one (
                        coll, o->filter, NULL, &reply, berr);
      o->n = mh_w_reply_int (&reply, "deletedCount");
      break;
   case MH_W_COUNT:
      o->n = mongoc_collection_count_documents (
         coll, o->filter, NULL, NULL, NULL, berr);
      ok = o->n >= 0;
      break;
   case MH_W_FAM: {
      mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new ();
      bson_iter_t it;

      mongoc_find_and_modify_opts_set_update (fam, o->update);
      mongoc_find_and_modify_opts_set_flags (
         fam,
         MONGOC_FIND_AND_MODIFY_RETURN_NEW |
            (o->upsert ? MONGOC_FIND_AND_MODIFY_UPSERT : 0));
      bson_destroy (&reply);
      ok = mongoc_collection_find_and_modify_with_opts (
         coll, o->filter, fam, &reply, berr);
      if (ok && bson_iter_init_find (&it, &reply, "value") &&
          BSON_ITER_HOLDS_DOCUMENT (&it)) {
         uint32_t len;
         const uint8_t *data;
         bson_t v;

         bson_iter_document (&it, &len, &data);
         if (bson_init_static (&v, data, len)) {
            bson_destroy (o->found);
            bson_copy_to (&v, o->found);
            o->hit = true;
            o->n = 1;
         }
      }
      mongoc_find_and_modify_opts_destroy (fam);
      break;
   }
   }
   bson_destroy (&reply);
   bson_destroy (&uopts);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_w_run (const char *what, mh_w_op_t *o, mongo_helper_error_t *error)
{
   unsigned flags;

   switch (o->kind) {
   case MH_W_FIND_ONE:
   case MH_W_FIND_ALL:
   case MH_W_COUNT:
      flags = MH_OP_READ;
      break;
   case MH_W_REPLACE:
   case MH_W_DELETE:
      flags = MH_OP_WRITE | MH_OP_IDEMPOTENT;
      break;
   default:
      flags = MH_OP_WRITE;
      break;
   }
   return mh_run (what, flags, mh_w_op_fn, o, error);
}

/* -- Index set-up shared by the three helpers. */
typedef struct {
   const char *name;
   const char *f1;
   int d1;
   const char *f2; /* NULL: one-field key */
   int d2;
   int64_t ttl_s; /* < 0: not a TTL index */
} mh_web_index_t;

typedef struct {
   const char *coll;
   const mh_web_index_t *ix;
   size_t n;
} mh_web_ensure_t;

static bool
mh_web_key_is (const bson_t *key, const mh_web_index_t *w)
{
   bson_iter_t it;
   const char *f[2] = {w->f1, w->f2};
   int d[2] = {w->d1, w->d2};
   int want = w->f2 ? 2 : 1;
   int i = 0;

   if (!bson_iter_init (&it, key)) {
      return false;
   }
   while (bson_iter_next (&it)) {
      if (i >= want || strcmp (bson_iter_key (&it), f[i]) != 0 ||
          !BSON_ITER_HOLDS_NUMBER (&it) || bson_iter_as_int64 (&it) != d[i]) {
         return false;
      }
      i++;
   }
   return i == want;
}

static void
mh_web_append_key (bson_t *dst, const char *field, const mh_web_index_t *w)
{
   bson_t key;

   BSON_APPEND_DOCUMENT_BEGIN (dst, field, &key);
   BSON_APPEND_INT32 (&key, w->f1, w->d1);
   if (w->f2) {
      BSON_APPEND_INT32 (&key, w->f2, w->d2);
   }
   bson_append_document_end (dst, &key);
}

/* Reads the existing indexes first, so an index with the right key but
 * another TTL is changed with collMod (what "index already exists with
 * different options" users had to do by hand), one with the right key but
 * no TTL (or a TTL where none is wanted) is a clear error, and only the
 * missing ones are sent to createIndexes. */
static bool
mh_web_ensure_op (mongoc_client_t *client,
                  mongoc_database_t *db,
                  void *ctx,
                  bson_error_t *berr)
{
   mh_web_ensure_t *e = ctx;
   mongoc_collection_t *coll = mongoc_database_get_collection (db, e->coll);
   mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts (coll, NULL);
   bool present[8] = {false};
   bson_t cmd = BSON_INITIALIZER;
   bson_t arr;
   const bson_t *doc;
   bson_error_t cerr;
   size_t missing = 0;
   bool ok = true;

   (void) client;
   BSON_ASSERT (e->n <= 8);
   while (ok && mongoc_cursor_next (cur, &doc)) {
      bson_iter_t it;
      uint32_t len;
      const uint8_t *data;
      bson_t key;
      const char *name = "";
      bool has_ttl = false;
      int64_t ttl = 0;

      if (!bson_iter_init_find (&it, doc, "key") ||
          !BSON_ITER_HOLDS_DOCUMENT (&it)) {
         continue;
      }
      bson_iter_document (&it, &len, &data);
      if (!bson_init_static (&key, data, len)) {
         continue;
      }
      if (bson_iter_init_find (&it, doc, "name") && BSON_ITER_HOLDS_UTF8 (&it)) {
         name = bson_iter_utf8 (&it, NULL);
      }
      if (bson_iter_init_find (&it, doc, "expireAfterSeconds") &&
          BSON_ITER_HOLDS_NUMBER (&it)) {
         has_ttl = true;
         ttl = bson_iter_as_int64 (&it);
      }
      for (size_t i = 0; ok && i < e->n; i++) {
         const mh_web_index_t *w = &e->ix[i];

         if (!mh_web_key_is (&key, w)) {
            if (strcmp (name, w->name) == 0) {
               ok = mh_web_berr (berr,
                                 86,
                                 "index '%s' on %s has another key than the "
                                 "library needs: drop it "
                                 "(db.%s.dropIndex('%s')) and ensure again",
                                 name, e->coll, e->coll, name);
            }
            continue;
         }
         present[i] = true;
         if ((w->ttl_s >= 0) != has_ttl) {
            ok = mh_web_berr (berr,
                              85,
                              "index '%s' on %s.%s %s expireAfterSeconds: "
                              "drop it (db.%s.dropIndex('%s')) and ensure "
                              "again",
                              name, e->coll, w->f1,
                              has_ttl ? "has an unwanted" : "lacks the needed",
                              e->coll, name);
         } else if (has_ttl && ttl != w->ttl_s) {
            bson_t *mod = BCON_NEW ("collMod", BCON_UTF8 (e->coll),
                                    "index", "{",
                                    "name", BCON_UTF8 (name),
                                    "expireAfterSeconds", BCON_INT64 (w->ttl_s),
                                    "}");
            ok = mongoc_database_command_simple (db, mod, NULL, NULL, berr);
            bson_destroy (mod);
         }
      }
   }
   if (ok && mongoc_cursor_error (cur, &cerr)) {
      /* 26 NamespaceNotFound: no collection yet, so no indexes. */
      if (cerr.code != 26) {
         *berr = cerr;
         ok = false;
      }
   }
   mongoc_cursor_destroy (cur);
   if (ok) {
      BSON_APPEND_UTF8 (&cmd, "createIndexes", e->coll);
      BSON_APPEND_ARRAY_BEGIN (&cmd, "indexes", &arr);
      for (size_t i = 0; i < e->n; i++) {
         char k[16];
         const char *kk;
         bson_t one;

         if (present[i]) {
            continue;
         }
         bson_uint32_to_string ((uint32_t) missing++, &kk, k, sizeof k);
         BSON_APPEND_DOCUMENT_BEGIN (&arr, kk, &one);
         mh_web_append_key (&one, "key", &e->ix[i]);
         BSON_APPEND_UTF8 (&one, "name", e->ix[i].name);
         if (e->ix[i].ttl_s >= 0) {
            BSON_APPEND_INT64 (&one, "expireAfterSeconds", e->ix[i].ttl_s);
         }
         bson_append_document_end (&arr, &one);
      }
      bson_append_array_end (&cmd, &arr);
      if (missing > 0) {
         ok = mongoc_database_command_simple (db, &cmd, NULL, NULL, berr);
      }
   }
   bson_destroy (&cmd);
   mongoc_collection_destroy (coll);
   return ok;
}

/* Lazy set-up state of one handle: ensure runs once (under the lock so
 * many first requests send one createIndexes), and again after a failure. */
typedef struct {
   bool lazy;
   atomic_bool done;
   pthread_mutex_t lock;
} mh_web_setup_t;

static void
mh_web_setup_init (mh_web_setup_t *s, bool lazy)
{
   s->lazy = lazy;
   atomic_init (&s->done, false);
   pthread_mutex_init (&s->lock, NULL);
}

typedef bool (*mh_web_ensure_fn) (void *handle, mongo_helper_error_t *error);

static bool
mh_web_ready (mh_web_setup_t *s,
              mh_web_ensure_fn fn,
              void *handle,
              mongo_helper_error_t *error)
{
   bool ok = true;

   if (!s->lazy || atomic_load (&s->done)) {
      return true;
   }
   pthread_mutex_lock (&s->lock);
   if (!atomic_load (&s->done)) {
      ok = fn (handle, error);
   }
   pthread_mutex_unlock (&s->lock);
   return ok;
}

static void
mh_web_append_date (bson_t *b, const char *key, int64_t ms)
{
   bson_append_date_time (b, key, -1, ms);
}

/* { field: { $gt: now } } */
static void
mh_web_append_live (bson_t *b, const char *field, int64_t now)
{
   bson_t gt;

   BSON_APPEND_DOCUMENT_BEGIN (b, field, &gt);
   mh_web_append_date (&gt, "$gt", now);
   bson_append_document_end (b, &gt);
}

/* ---- Sessions ---- */

struct mongo_helper_sessions_t {
   char *coll;
   mongo_helper_sessions_options_t opt;
   mh_web_setup_t setup;
};

void
mongo_helper_sessions_options_init (mongo_helper_sessions_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->collection = "sessions";
   options->idle_lifetime_ms = INT64_C (14) * 24 * 3600 * 1000;
   options->absolute_lifetime_ms = 0;
   options->touch_interval_ms = 60000;
   options->regenerate_grace_ms = 0;
   options->lazy_ensure = true;
}

mongo_helper_sessions_t *
mongo_helper_sessions_new (const mongo_helper_sessions_options_t *options,
                           mongo_helper_error_t *error)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;

   mh_error_clear (error);
   mongo_helper_sessions_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!mh_web_coll_name_ok (o.collection, error)) {
      return NULL;
   }
   if (o.idle_lifetime_ms <= 0 || o.absolute_lifetime_ms < 0 ||
       o.touch_interval_ms < 0 || o.regenerate_grace_ms < 0) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "session options: idle_lifetime_ms must be > 0 and the other "
               "times >= 0");
      return NULL;
   }
   s = bson_malloc0 (sizeof *s);
   s->coll = bson_strdup (o.collection);
   s->opt = o;
   s->opt.collection = s->coll;
   mh_web_setup_init (&s->setup, o.lazy_ensure);
   return s;
}

void
mongo_helper_sessions_destroy (mongo_helper_sessions_t *sessions)
{
   if (!sessions) {
      return;
   }
   pthread_mutex_destroy (&sessions->setup.lock);
   bson_free (sessions->coll);
   bson_free (sessions);
}

bool
mongo_helper_sessions_ensure (mongo_helper_sessions_t *sessions,
                              mongo_helper_error_t *error)
{
   mh_web_index_t ix[] = {
      {"expiresAt_ttl", "expiresAt", 1, NULL, 0, 0},
      {"userId_1", "userId", 1, NULL, 0, -1},
   };
   mh_web_ensure_t e;

   mh_error_clear (error);
   if (!sessions) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_sessions_ensure: sessions is NULL");
   }
   e.coll = sessions->coll;
   e.ix = ix;
   e.n = 2;
   if (!mh_run ("ensure sessions indexes",
                MH_OP_WRITE | MH_OP_IDEMPOTENT,
                mh_web_ensure_op,
                &e,
                error)) {
      return false;
   }
   atomic_store (&sessions->setup.done, true);
   return true;
}

static bool
mh_sessions_ensure_cb (void *h, mongo_helper_error_t *error)
{
   return mongo_helper_sessions_ensure (h, error);
}

/* base64url without padding (RFC 4648 section 5). */
static void
mh_b64url (const uint8_t *in, size_t n, char *out)
{
   static const char a[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
   size_t i, o = 0;

   for (i = 0; i + 2 < n; i += 3) {
      uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
      out[o++] = a[(v >> 18) & 63];
      out[o++] = a[(v >> 12) & 63];
      out[o++] = a[(v >> 6) & 63];
      out[o++] = a[v & 63];
   }
   if (n - i == 1) {
      uint32_t v = (uint32_t) in[i] << 16;
      out[o++] = a[(v >> 18) & 63];
      out[o++] = a[(v >> 12) & 63];
   } else if (n - i == 2) {
      uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
      out[o++] = a[(v >> 18) & 63];
      out[o++] = a[(v >> 12) & 63];
      out[o++] = a[(v >> 6) & 63];
   }
   out[o] = '\0';
}

static bool
mh_session_id_new (char out[MONGO_HELPER_SESSION_ID_SIZE],
                   mongo_helper_error_t *error)
{
   uint8_t raw[32];

   if (RAND_bytes (raw, (int) sizeof raw) != 1) {
      return mh_fail (error, MONGO_HELPER_ERROR_INTERNAL, 0,
                      "the operating system's random generator failed "
                      "(OpenSSL RAND_bytes): no session id was made");
   }
   mh_b64url (raw, sizeof raw, out);
   return true;
}

/* Validates a client-supplied id (exact length and alphabet, so nothing
 * else ever reaches a filter) and hashes it to the stored _id.  A
 * malformed id is NOT_FOUND: it comes from a cookie, not from code. */
static bool
mh_session_key (const char *id, char hex[65], mongo_helper_error_t *error)
{
   size_t i;

   if (!id) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "session id is NULL");
   }
   for (i = 0; id[i] && i <= MONGO_HELPER_SESSION_ID_LEN; i++) {
      char c = id[i];
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_')) {
         break;
      }
   }
   if (i != MONGO_HELPER_SESSION_ID_LEN || id[i] != '\0') {
      return mh_fail (error, MONGO_HELPER_ERROR_NOT_FOUND, 0,
                      "no such session: the id is not a well-formed session "
                      "id (43 base64url characters)");
   }
   if (!mh_web_sha256_hex (id, MONGO_HELPER_SESSION_ID_LEN, hex)) {
      return mh_fail (error, MONGO_HELPER_ERROR_INTERNAL, 0,
                      "SHA-256 of the session id failed (OpenSSL)");
   }
   return true;
}

static bool
mh_sessions_begin (mongo_helper_sessions_t *s,
                   const char *id,
                   char hex[65],
                   mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!s) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "sessions handle is NULL");
   }
   if (hex && !mh_session_key (id, hex, error)) {
      return false;
   }
   return mh_web_ready (&s->setup, mh_sessions_ensure_cb, s, error);
}

static bool
mh_session_not_found (mongo_helper_error_t *error)
{
   return mh_fail (error, MONGO_HELPER_ERROR_NOT_FOUND, 0,
                   "no such session (unknown or expired): start a new one");
}

/* { _id: hex, expiresAt: { $gt: now } } */
static void
mh_session_filter (bson_t *f, const char *hex, int64_t now)
{
   BSON_APPEND_UTF8 (f, "_id", hex);
   mh_web_append_live (f, "expiresAt", now);
}

static int64_t
mh_session_expiry (const mongo_helper_sessions_t *s, int64_t now, int64_t abs_exp)
{
   int64_t e = now + s->opt.idle_lifetime_ms;
   return abs_exp > 0 && abs_exp < e ? abs_exp : e;
}

static bool
mh_session_insert (mongo_helper_sessions_t *s,
                   const char *what,
                   const bson_t *data,
                   const char *user_id,
                   int64_t created,
                   int64_t abs_exp,
                   char id_out[MONGO_HELPER_SESSION_ID_SIZE],
                   mongo_helper_error_t *error)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   bson_t empty = BSON_INITIALIZER;
   int64_t now = mh_web_now_ms ();
   mh_w_op_t o = {0};
   bool ok;

   if (!mh_session_id_new (id, error) || !mh_session_key (id, hex, error)) {
      bson_destroy (&doc);
      bson_destroy (&empty);
      return false;
   }
   if (created == 0) { /* a new session, not a regenerated one */
      created = now;
      abs_exp = s->opt.absolute_lifetime_ms > 0
                   ? now + s->opt.absolute_lifetime_ms
                   : 0;
   }
   BSON_APPEND_UTF8 (&doc, "_id", hex);
   BSON_APPEND_DOCUMENT (&doc, "data", data ? data : &empty);
   if (user_id) {
      BSON_APPEND_UTF8 (&doc, "userId", user_id);
   }
   mh_web_append_date (&doc, "createdAt", created);
   mh_web_append_date (&doc, "lastSeen", now);
   mh_web_append_date (&doc, "expiresAt", mh_session_expiry (s, now, abs_exp));
   if (abs_exp > 0) {
      mh_web_append_date (&doc, "absoluteExpiresAt", abs_exp);
   }
   o.kind = MH_W_INSERT;
   o.coll = s->coll;
   o.filter = &doc;
   ok = mh_w_run (what, &o, error);
   if (ok) {
      memcpy (id_out, id, sizeof id);
   }
   bson_destroy (&doc);
   bson_destroy (&empty);
   return ok;
}

bool
mongo_helper_sessions_create (mongo_helper_sessions_t *sessions,
                              const bson_t *data,
                              const char *user_id,
                              char id_out[MONGO_HELPER_SESSION_ID_SIZE],
                              mongo_helper_error_t *error)
{
   if (!mh_sessions_begin (sessions, NULL, NULL, error)) {
      return false;
   }
   if (!id_out) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_sessions_create: id_out is NULL");
   }
   if (user_id && !mh_web_str_ok (user_id, "user_id", error)) {
      return false;
   }
   if (data && !mh_web_size_ok (data->len, "session data", error)) {
      return false;
   }
   return mh_session_insert (
      sessions, "create session", data, user_id, 0, 0, id_out, error);
}

/* Reads the live session document (all fields) into `doc`. */
static bool
mh_session_read (mongo_helper_sessions_t *s,
                 const char *hex,
                 bson_t *doc,
                 mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   mh_session_filter (&f, hex, mh_web_now_ms ());
   o.kind = MH_W_FIND_ONE;
   o.coll = s->coll;
   o.filter = &f;
   o.found = doc;
   ok = mh_w_run ("load session", &o, error);
   bson_destroy (&f);
   if (ok && !o.hit) {
      return mh_session_not_found (error);
   }
   return ok;
}

static int64_t
mh_doc_date (const bson_t *doc, const char *field)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME (&it)) {
      return bson_iter_date_time (&it);
   }
   return 0;
}

bool
mongo_helper_sessions_load (mongo_helper_sessions_t *sessions,
                            const char *id,
                            bson_t *data_out,
                            mongo_helper_error_t *error)
{
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   bson_iter_t it;
   bool ok;

   if (data_out) {
      bson_init (data_out);
   }
   if (!mh_sessions_begin (sessions, id, hex, error)) {
      bson_destroy (&doc);
      return false;
   }
   if (!data_out) {
      bson_destroy (&doc);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_sessions_load: data_out is NULL");
   }
   ok = mh_session_read (sessions, hex, &doc, error);
   if (ok && bson_iter_init_find (&it, &doc, "data") &&
       BSON_ITER_HOLDS_DOCUMENT (&it)) {
      uint32_t len;
      const uint8_t *d;
      bson_t v;

      bson_iter_document (&it, &len, &d);
      if (bson_init_static (&v, d, len)) {
         bson_destroy (data_out);
         bson_copy_to (&v, data_out);
      }
   }
   bson_destroy (&doc);
   return ok;
}

/* One update on a live session; NOT_FOUND when it matched nothing. */
static bool
mh_session_update (mongo_helper_sessions_t *s,
                   const char *what,
                   const char *hex,
                   const bson_t *update,
                   mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   mh_session_filter (&f, hex, mh_web_now_ms ());
   o.kind = MH_W_UPDATE;
   o.coll = s->coll;
   o.filter = &f;
   o.update = update;
   ok = mh_w_run (what, &o, error);
   bson_destroy (&f);
   if (ok && o.n == 0) {
      return mh_session_not_found (error);
   }
   return ok;
}

bool
mongo_helper_sessions_save (mongo_helper_sessions_t *sessions,
                            const char *id,
                            const bson_t *data,
                            mongo_helper_error_t *error)
{
   char hex[65];
   bson_t *u;
   bool ok;

   if (!mh_sessions_begin (sessions, id, hex, error)) {
      return false;
   }
   if (!data) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_sessions_save: data is NULL");
   }
   if (!mh_web_size_ok (data->len, "session data", error)) {
      return false;
   }
   u = BCON_NEW ("$set", "{", "data", BCON_DOCUMENT (data), "}");
   ok = mh_session_update (sessions, "save session", hex, u, error);
   bson_destroy (u);
   return ok;
}

bool
mongo_helper_sessions_set (mongo_helper_sessions_t *sessions,
                           const char *id,
                           const bson_t *fields,
                           mongo_helper_error_t *error)
{
   char hex[65];
   bson_t u = BSON_INITIALIZER;
   bson_t set;
   bson_iter_t it;
   bool ok = true;
   int n = 0;

   if (!mh_sessions_begin (sessions, id, hex, error)) {
      bson_destroy (&u);
      return false;
   }
   if (!fields || !mh_web_size_ok (fields->len, "session fields", error) ||
       !bson_iter_init (&it, fields)) {
      bson_destroy (&u);
      return fields ? false
                    : mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                               "mongo_helper_sessions_set: fields is NULL");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &set);
   while (ok && bson_iter_next (&it)) {
      const char *k = bson_iter_key (&it);
      char *path;

      if (!*k || k[0] == '$') {
         ok = mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                       "session field name '%s' is empty or starts with '$'", k);
         break;
      }
      path = bson_strdup_printf ("data.%s", k);
      bson_append_iter (&set, path, -1, &it);
      bson_free (path);
      n++;
   }
   bson_append_document_end (&u, &set);
   if (ok && n == 0) {
      ok = mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                    "mongo_helper_sessions_set: fields is empty");
   }
   if (ok) {
      ok = mh_session_update (sessions, "set session fields", hex, &u, error);
   }
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_sessions_unset (mongo_helper_sessions_t *sessions,
                             const char *id,
                             const char *const *fields,
                             size_t n,
                             mongo_helper_error_t *error)
{
   char hex[65];
   bson_t u = BSON_INITIALIZER;
   bson_t unset;
   bool ok = true;

   if (!mh_sessions_begin (sessions, id, hex, error)) {
      bson_destroy (&u);
      return false;
   }
   if (!fields || n == 0) {
      bson_destroy (&u);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_sessions_unset: no fields given");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$unset", &unset);
   for (size_t i = 0; ok && i < n; i++) {
      char *path;

      if (!fields[i] || !*fields[i] || fields[i][0] == '$') {
         ok = mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                       "session field name %zu is NULL, empty or starts "
                       "with '$'", i);
         break;
      }
      path = bson_strdup_printf ("data.%s", fields[i]);
      BSON_APPEND_UTF8 (&unset, path, "");
      bson_free (path);
   }
   bson_append_document_end (&u, &unset);
   if (ok) {
      ok = mh_session_update (sessions, "unset session fields", hex, &u, error);
   }
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_sessions_set_user (mongo_helper_sessions_t *sessions,
                                const char *id,
                                const char *user_id,
                                mongo_helper_error_t *error)
{
   char hex[65];
   bson_t *u;
   bool ok;

   if (!mh_sessions_begin (sessions, id, hex, error)) {
      return false;
   }
   if (user_id && !mh_web_str_ok (user_id, "user_id", error)) {
      return false;
   }
   u = user_id ? BCON_NEW ("$set", "{", "userId", BCON_UTF8 (user_id), "}")
               : BCON_NEW ("$unset", "{", "userId", BCON_UTF8 (""), "}");
   ok = mh_session_update (sessions, "set session user", hex, u, error);
   bson_destroy (u);
   return ok;
}

bool
mongo_helper_sessions_touch (mongo_helper_sessions_t *sessions,
                             const char *id,
                             bool *wrote,
                             mongo_helper_error_t *error)
{
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t set, lt;
   mh_w_op_t o = {0};
   int64_t now = mh_web_now_ms ();
   int64_t threshold;
   bool ok;

   if (wrote) {
      *wrote = false;
   }
   ok = mh_sessions_begin (sessions, id, hex, error) &&
        mh_session_read (sessions, hex, &doc, error);
   if (!ok) {
      goto cleanup;
   }
   threshold = now - sessions->opt.touch_interval_ms;
   if (mh_doc_date (&doc, "lastSeen") >= threshold) {
      goto cleanup; /* fresh enough: the whole point is not writing */
   }
   /* The lastSeen condition makes concurrent touches of one session write
    * once between them. */
   mh_session_filter (&f, hex, now);
   BSON_APPEND_DOCUMENT_BEGIN (&f, "lastSeen", &lt);
   mh_web_append_date (&lt, "$lt", threshold);
   bson_append_document_end (&f, &lt);
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &set);
   mh_web_append_date (&set, "lastSeen", now);
   mh_web_append_date (&set, "expiresAt",
                       mh_session_expiry (sessions, now,
                                          mh_doc_date (&doc, "absoluteExpiresAt")));
   bson_append_document_end (&u, &set);
   o.kind = MH_W_UPDATE;
   o.coll = sessions->coll;
   o.filter = &f;
   o.update = &u;
   ok = mh_w_run ("touch session", &o, error);
   if (ok && wrote) {
      *wrote = o.n > 0;
   }
cleanup:
   bson_destroy (&doc);
   bson_destroy (&f);
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_sessions_delete (mongo_helper_sessions_t *sessions,
                              const char *id,
                              mongo_helper_error_t *error)
{
   char hex[65];
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   mongo_helper_error_t local;
   bool ok;

   if (!error) {
      error = &local;
   }
   if (!mh_sessions_begin (sessions, id, hex, error)) {
      bson_destroy (&f);
      /* A malformed id names no session, so it is already deleted. */
      if (error->category == MONGO_HELPER_ERROR_NOT_FOUND) {
         mh_error_clear (error);
         return true;
      }
      return false;
   }
   BSON_APPEND_UTF8 (&f, "_id", hex);
   o.kind = MH_W_DELETE;
   o.coll = sessions->coll;
   o.filter = &f;
   ok = mh_w_run ("delete session", &o, error);
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_sessions_regenerate (mongo_helper_sessions_t *sessions,
                                  const char *old_id,
                                  char new_id_out[MONGO_HELPER_SESSION_ID_SIZE],
                                  mongo_helper_error_t *error)
{
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   bson_t data = BSON_INITIALIZER;
   bson_t f = BSON_INITIALIZER;
   bson_iter_t it;
   const char *user = NULL;
   mh_w_op_t o = {0};
   bson_t *u = NULL;
   bool ok;

   ok = mh_sessions_begin (sessions, old_id, hex, error);
   if (ok && !new_id_out) {
      ok = mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                    "mongo_helper_sessions_regenerate: new_id_out is NULL");
   }
   ok = ok && mh_session_read (sessions, hex, &doc, error);
   if (!ok) {
      goto cleanup;
   }
   if (bson_iter_init_find (&it, &doc, "data") && BSON_ITER_HOLDS_DOCUMENT (&it)) {
      uint32_t len;
      const uint8_t *d;
      bson_t v;

      bson_iter_document (&it, &len, &d);
      if (bson_init_static (&v, d, len)) {
         bson_destroy (&data);
         bson_copy_to (&v, &data);
      }
   }
   if (bson_iter_init_find (&it, &doc, "userId") && BSON_ITER_HOLDS_UTF8 (&it)) {
      user = bson_iter_utf8 (&it, NULL);
   }
   ok = mh_session_insert (sessions, "regenerate session", &data, user,
                           mh_doc_date (&doc, "createdAt"),
                           mh_doc_date (&doc, "absoluteExpiresAt"),
                           new_id_out, error);
   if (!ok) {
      goto cleanup;
   }
   BSON_APPEND_UTF8 (&f, "_id", hex);
   o.coll = sessions->coll;
   o.filter = &f;
   if (sessions->opt.regenerate_grace_ms > 0) {
      int64_t grace = mh_web_now_ms () + sessions->opt.regenerate_grace_ms;
      int64_t cur = mh_doc_date (&doc, "expiresAt");

      u = BCON_NEW ("$set", "{", "expiresAt",
                    BCON_DATE_TIME (cur && cur < grace ? cur : grace), "}");
      o.kind = MH_W_UPDATE;
      o.update = u;
      ok = mh_w_run ("shorten the old session", &o, error);
   } else {
      o.kind = MH_W_DELETE;
      ok = mh_w_run ("delete the old session", &o, error);
   }
cleanup:
   bson_destroy (u);
   bson_destroy (&doc);
   bson_destroy (&data);
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_sessions_delete_user (mongo_helper_sessions_t *sessions,
                                   const char *user_id,
                                   int64_t *deleted,
                                   mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   if (deleted) {
      *deleted = 0;
   }
   if (!mh_sessions_begin (sessions, NULL, NULL, error) ||
       !mh_web_str_ok (user_id, "user_id", error)) {
      bson_destroy (&f);
      return false;
   }
   BSON_APPEND_UTF8 (&f, "userId", user_id);
   o.kind = MH_W_DELETE;
   o.many = true;
   o.coll = sessions->coll;
   o.filter = &f;
   ok = mh_w_run ("delete a user's sessions", &o, error);
   if (ok && deleted) {
      *deleted = o.n;
   }
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_sessions_count (mongo_helper_sessions_t *sessions,
                             const char *user_id,
                             int64_t *count,
                             mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   if (count) {
      *count = 0;
   }
   if (!mh_sessions_begin (sessions, NULL, NULL, error) ||
       (user_id && !mh_web_str_ok (user_id, "user_id", error))) {
      bson_destroy (&f);
      return false;
   }
   if (!count) {
      bson_destroy (&f);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_sessions_count: count is NULL");
   }
   if (user_id) {
      BSON_APPEND_UTF8 (&f, "userId", user_id);
   }
   mh_web_append_live (&f, "expiresAt", mh_web_now_ms ());
   o.kind = MH_W_COUNT;
   o.coll = sessions->coll;
   o.filter = &f;
   ok = mh_w_run ("count sessions", &o, error);
   if (ok) {
      *count = o.n;
   }
   bson_destroy (&f);
   return ok;
}

/* ---- Cache ---- */

struct mongo_helper_cache_t {
   char *coll;
   mongo_helper_cache_options_t opt;
   mh_web_setup_t setup;
};

void
mongo_helper_cache_options_init (mongo_helper_cache_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->collection = "cache";
   options->default_ttl_ms = 300000;
   options->max_key_length = 200;
   options->lease_ms = 10000;
   options->wait_ms = 5000;
   options->poll_ms = 25;
   options->lazy_ensure = true;
}

mongo_helper_cache_t *
mongo_helper_cache_new (const mongo_helper_cache_options_t *options,
                        mongo_helper_error_t *error)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;

   mh_error_clear (error);
   mongo_helper_cache_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!mh_web_coll_name_ok (o.collection, error)) {
      return NULL;
   }
   if (o.max_key_length < 1 || o.max_key_length > 1000 || o.lease_ms <= 0 ||
       o.wait_ms < 0 || o.poll_ms <= 0) {
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
               "cache options: max_key_length must be 1..1000, lease_ms and "
               "poll_ms > 0, wait_ms >= 0");
      return NULL;
   }
   c = bson_malloc0 (sizeof *c);
   c->coll = bson_strdup (o.collection);
   c->opt = o;
   c->opt.collection = c->coll;
   mh_web_setup_init (&c->setup, o.lazy_ensure);
   return c;
}

void
mongo_helper_cache_destroy (mongo_helper_cache_t *cache)
{
   if (!cache) {
      return;
   }
   pthread_mutex_destroy (&cache->setup.lock);
   bson_free (cache->coll);
   bson_free (cache);
}

bool
mongo_helper_cache_ensure (mongo_helper_cache_t *cache,
                           mongo_helper_error_t *error)
{
   mh_web_index_t ix[] = {{"expiresAt_ttl", "expiresAt", 1, NULL, 0, 0}};
   mh_web_ensure_t e;

   mh_error_clear (error);
   if (!cache) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_cache_ensure: cache is NULL");
   }
   e.coll = cache->coll;
   e.ix = ix;
   e.n = 1;
   if (!mh_run ("ensure cache indexes", MH_OP_WRITE | MH_OP_IDEMPOTENT,
                mh_web_ensure_op, &e, error)) {
      return false;
   }
   atomic_store (&cache->setup.done, true);
   return true;
}

static bool
mh_cache_ensure_cb (void *h, mongo_helper_error_t *error)
{
   return mongo_helper_cache_ensure (h, error);
}

/* Appends the stored _id of `key` under `field`: the key itself, or for a
 * long key { p: prefix, h: SHA-256 } (a document never equals a string,
 * so a crafted short key cannot collide with a hashed one). */
static bool
mh_cache_append_id (const mongo_helper_cache_t *c,
                    bson_t *dst,
                    const char *field,
                    const char *key,
                    mongo_helper_error_t *error)
{
   size_t len;

   if (!mh_web_str_ok (key, "cache key", error)) {
      return false;
   }
   len = strlen (key);
   if (len <= c->opt.max_key_length) {
      BSON_APPEND_UTF8 (dst, field, key);
   } else {
      char hex[65];
      bson_t sub;
      size_t p = 64;

      if (!mh_web_sha256_hex (key, len, hex)) {
         return mh_fail (error, MONGO_HELPER_ERROR_INTERNAL, 0,
                         "SHA-256 of the cache key failed (OpenSSL)");
      }
      /* Cut the readable prefix on a UTF-8 character boundary. */
      while (p > 0 && ((unsigned char) key[p] & 0xC0) == 0x80) {
         p--;
      }
      BSON_APPEND_DOCUMENT_BEGIN (dst, field, &sub);
      bson_append_utf8 (&sub, "p", 1, key, (int) p);
      BSON_APPEND_UTF8 (&sub, "h", hex);
      bson_append_document_end (dst, &sub);
   }
   return true;
}

/* Live: no expiresAt (never expires) or expiresAt in the future. */
static void
mh_cache_append_live (bson_t *f, int64_t now)
{
   bson_t or, a, b, ex;

   BSON_APPEND_ARRAY_BEGIN (f, "$or", &or);
   BSON_APPEND_DOCUMENT_BEGIN (&or, "0", &a);
   mh_web_append_live (&a, "expiresAt", now);
   bson_append_document_end (&or, &a);
   BSON_APPEND_DOCUMENT_BEGIN (&or, "1", &b);
   BSON_APPEND_DOCUMENT_BEGIN (&b, "expiresAt", &ex);
   BSON_APPEND_BOOL (&ex, "$exists", false);
   bson_append_document_end (&b, &ex);
   bson_append_document_end (&or, &b);
   bson_append_array_end (f, &or);
}

static bool
mh_cache_begin (mongo_helper_cache_t *c,
                const char *key,
                bson_t *filter,
                bool live,
                mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!c) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "cache handle is NULL");
   }
   if (filter) {
      if (!mh_cache_append_id (c, filter, "_id", key, error)) {
         return false;
      }
      if (live) {
         mh_cache_append_live (filter, mh_web_now_ms ());
      }
   }
   return mh_web_ready (&c->setup, mh_cache_ensure_cb, c, error);
}

static int64_t
mh_cache_ttl (const mongo_helper_cache_t *c, int64_t ttl_ms)
{
   return ttl_ms == 0 ? c->opt.default_ttl_ms : ttl_ms;
}

static void
mh_cache_append_expiry (const mongo_helper_cache_t *c, bson_t *b, int64_t ttl_ms)
{
   int64_t ttl = mh_cache_ttl (c, ttl_ms);

   if (ttl > 0) {
      mh_web_append_date (b, "expiresAt", mh_web_now_ms () + ttl);
   }
}

static bool
mh_cache_not_found (const char *key, mongo_helper_error_t *error)
{
   return mh_fail (error, MONGO_HELPER_ERROR_NOT_FOUND, 0,
                   "cache key '%.64s' has no live value", key);
}

/* Stores { value: <value_iter's value>, expiresAt } under key (upsert). */
static bool
mh_cache_store (mongo_helper_cache_t *c,
                const char *key,
                bson_t *entry,
                mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   ok = mh_cache_begin (c, key, &f, false, error);
   if (ok) {
      o.kind = MH_W_REPLACE;
      o.coll = c->coll;
      o.filter = &f;
      o.update = entry;
      o.upsert = true;
      ok = mh_w_run ("cache set", &o, error);
   }
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_cache_set (mongo_helper_cache_t *cache,
                        const char *key,
                        const bson_t *value,
                        int64_t ttl_ms,
                        mongo_helper_error_t *error)
{
   bson_t entry = BSON_INITIALIZER;
   bool ok;

   mh_error_clear (error);
   if (!value) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_cache_set: value is NULL");
   }
   if (!cache || !mh_web_size_ok (value->len, "cache value", error)) {
      return cache ? false
                   : mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                              "cache handle is NULL");
   }
   BSON_APPEND_DOCUMENT (&entry, "value", value);
   mh_cache_append_expiry (cache, &entry, ttl_ms);
   ok = mh_cache_store (cache, key, &entry, error);
   bson_destroy (&entry);
   return ok;
}

bool
mongo_helper_cache_set_bytes (mongo_helper_cache_t *cache,
                              const char *key,
                              const uint8_t *data,
                              size_t len,
                              int64_t ttl_ms,
                              mongo_helper_error_t *error)
{
   bson_t entry = BSON_INITIALIZER;
   static const uint8_t none = 0;
   bool ok;

   mh_error_clear (error);
   if ((!data && len > 0) || !cache) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_cache_set_bytes: cache or data is NULL");
   }
   if (!mh_web_size_ok (len, "cache value", error)) {
      return false;
   }
   bson_append_binary (&entry, "value", 5, BSON_SUBTYPE_BINARY,
                       data ? data : &none, (uint32_t) len);
   mh_cache_append_expiry (cache, &entry, ttl_ms);
   ok = mh_cache_store (cache, key, &entry, error);
   bson_destroy (&entry);
   return ok;
}

/* Removes `key`'s document if it is expired but not yet reaped by the TTL
 * monitor; returns true if it did (so an insert may be retried). */
static bool
mh_cache_reap (mongo_helper_cache_t *c, const bson_t *id_filter)
{
   bson_t f = BSON_INITIALIZER;
   bson_t lte;
   bson_iter_t it;
   mh_w_op_t o = {0};
   bool ok;

   if (bson_iter_init_find (&it, id_filter, "_id")) {
      bson_append_iter (&f, "_id", 3, &it);
   }
   BSON_APPEND_DOCUMENT_BEGIN (&f, "expiresAt", &lte);
   mh_web_append_date (&lte, "$lte", mh_web_now_ms ());
   bson_append_document_end (&f, &lte);
   o.kind = MH_W_DELETE;
   o.coll = c->coll;
   o.filter = &f;
   ok = mh_w_run ("cache reap expired", &o, NULL);
   bson_destroy (&f);
   return ok && o.n > 0;
}

/* Inserts `doc` (which carries its _id); one retry after reaping an
 * expired document that still holds the _id. */
static bool
mh_cache_insert (mongo_helper_cache_t *c,
                 const char *what,
                 const bson_t *doc,
                 mongo_helper_error_t *error)
{
   mh_w_op_t o = {0};

   o.kind = MH_W_INSERT;
   o.coll = c->coll;
   o.filter = doc;
   if (mh_w_run (what, &o, error)) {
      return true;
   }
   if (error && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY &&
       mh_cache_reap (c, doc)) {
      mh_error_clear (error);
      return mh_w_run (what, &o, error);
   }
   return false;
}

bool
mongo_helper_cache_add (mongo_helper_cache_t *cache,
                        const char *key,
                        const bson_t *value,
                        int64_t ttl_ms,
                        mongo_helper_error_t *error)
{
   bson_t doc = BSON_INITIALIZER;
   mongo_helper_error_t local;
   bool ok;

   if (!error) {
      error = &local;
   }
   ok = mh_cache_begin (cache, key, &doc, false, error);
   if (ok && !value) {
      ok = mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                    "mongo_helper_cache_add: value is NULL");
   }
   ok = ok && mh_web_size_ok (value->len, "cache value", error);
   if (ok) {
      BSON_APPEND_DOCUMENT (&doc, "value", value);
      mh_cache_append_expiry (cache, &doc, ttl_ms);
      ok = mh_cache_insert (cache, "cache add", &doc, error);
      if (!ok && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY) {
         mh_fail (error, MONGO_HELPER_ERROR_DUPLICATE_KEY, 11000,
                  "cache key '%.64s' already has a live value: nothing added",
                  key);
      }
   }
   bson_destroy (&doc);
   return ok;
}

/* Reads the live entry of `key` and positions `it` on its value. */
static bool
mh_cache_read (mongo_helper_cache_t *c,
               const char *key,
               bson_t *entry,
               bson_iter_t *it,
               mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   ok = mh_cache_begin (c, key, &f, true, error);
   if (ok) {
      o.kind = MH_W_FIND_ONE;
      o.coll = c->coll;
      o.filter = &f;
      o.found = entry;
      ok = mh_w_run ("cache get", &o, error);
      if (ok && (!o.hit || !bson_iter_init_find (it, entry, "value"))) {
         ok = mh_cache_not_found (key, error);
      }
   }
   bson_destroy (&f);
   return ok;
}

static bool
mh_cache_wrong_type (const char *key, const char *use, mongo_helper_error_t *error)
{
   return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                   "cache key '%.64s' holds another kind of value: read it "
                   "with %s",
                   key, use);
}

static const char *
mh_cache_reader_for (const bson_iter_t *it)
{
   if (BSON_ITER_HOLDS_BINARY (it)) {
      return "mongo_helper_cache_get_bytes()";
   }
   if (BSON_ITER_HOLDS_DOCUMENT (it)) {
      return "mongo_helper_cache_get()";
   }
   return "mongo_helper_cache_incr() with delta 0";
}

bool
mongo_helper_cache_get (mongo_helper_cache_t *cache,
                        const char *key,
                        bson_t *value_out,
                        mongo_helper_error_t *error)
{
   bson_t entry = BSON_INITIALIZER;
   bson_iter_t it;
   bool ok;

   if (!value_out) {
      bson_destroy (&entry);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_cache_get: value_out is NULL");
   }
   bson_init (value_out);
   ok = mh_cache_read (cache, key, &entry, &it, error);
   if (ok && !BSON_ITER_HOLDS_DOCUMENT (&it)) {
      ok = mh_cache_wrong_type (key, mh_cache_reader_for (&it), error);
   } else if (ok) {
      uint32_t len;
      const uint8_t *d;
      bson_t v;

      bson_iter_document (&it, &len, &d);
      if (bson_init_static (&v, d, len)) {
         bson_destroy (value_out);
         bson_copy_to (&v, value_out);
      }
   }
   bson_destroy (&entry);
   return ok;
}

bool
mongo_helper_cache_get_bytes (mongo_helper_cache_t *cache,
                              const char *key,
                              uint8_t **data,
                              size_t *len,
                              mongo_helper_error_t *error)
{
   bson_t entry = BSON_INITIALIZER;
   bson_iter_t it;
   bool ok;

   if (!data || !len) {
      bson_destroy (&entry);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_cache_get_bytes: data or len is NULL");
   }
   *data = NULL;
   *len = 0;
   ok = mh_cache_read (cache, key, &entry, &it, error);
   if (ok && !BSON_ITER_HOLDS_BINARY (&it)) {
      ok = mh_cache_wrong_type (key, mh_cache_reader_for (&it), error);
   } else if (ok) {
      bson_subtype_t st;
      uint32_t n;
      const uint8_t *d;

      bson_iter_binary (&it, &st, &n, &d);
      *data = bson_malloc (n ? n : 1);
      memcpy (*data, d, n);
      *len = n;
   }
   bson_destroy (&entry);
   return ok;
}

bool
mongo_helper_cache_get_many (mongo_helper_cache_t *cache,
                             const char *const *keys,
                             size_t n,
                             bson_t *found_out,
                             mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t ids = BSON_INITIALIZER; /* "i": stored id of keys[i] */
   bson_t res = BSON_INITIALIZER;
   bson_t idf;
   mh_w_op_t o = {0};
   bson_iter_t r;
   bool ok;

   if (found_out) {
      bson_init (found_out);
   }
   ok = mh_cache_begin (cache, NULL, NULL, false, error);
   if (ok && (!found_out || !keys || n == 0)) {
      ok = mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                    "mongo_helper_cache_get_many: no keys or found_out is "
                    "NULL");
   }
   for (size_t i = 0; ok && i < n; i++) {
      char k[16];
      const char *kk;

      bson_uint32_to_string ((uint32_t) i, &kk, k, sizeof k);
      ok = mh_cache_append_id (cache, &ids, kk, keys[i], error);
   }
   if (!ok) {
      goto cleanup;
   }
   BSON_APPEND_DOCUMENT_BEGIN (&f, "_id", &idf);
   bson_append_array (&idf, "$in", 3, &ids);
   bson_append_document_end (&f, &idf);
   mh_cache_append_live (&f, mh_web_now_ms ());
   o.kind = MH_W_FIND_ALL;
   o.coll = cache->coll;
   o.filter = &f;
   o.array = &res;
   ok = mh_w_run ("cache get many", &o, error);
   if (!ok || !bson_iter_init (&r, &res)) {
      goto cleanup;
   }
   /* Map each stored _id back to the caller's key. */
   while (bson_iter_next (&r)) {
      bson_iter_t d, id, v, k;
      size_t i = 0;

      if (!BSON_ITER_HOLDS_DOCUMENT (&r) || !bson_iter_recurse (&r, &d)) {
         continue;
      }
      if (!bson_iter_find (&d, "_id")) {
         continue;
      }
      id = d;
      if (!bson_iter_recurse (&r, &v) || !bson_iter_find (&v, "value") ||
          !bson_iter_init (&k, &ids)) {
         continue;
      }
      while (bson_iter_next (&k)) {
         bool same = false;

         if (bson_iter_type (&k) == bson_iter_type (&id)) {
            if (BSON_ITER_HOLDS_UTF8 (&k)) {
               same = strcmp (bson_iter_utf8 (&k, NULL), bson_iter_utf8 (&id, NULL)) == 0;
            } else {
               uint32_t l1, l2;
               const uint8_t *p1, *p2;

               bson_iter_document (&k, &l1, &p1);
               bson_iter_document (&id, &l2, &p2);
               same = l1 == l2 && memcmp (p1, p2, l1) == 0;
            }
         }
         if (same) {
            bson_append_iter (found_out, keys[i], -1, &v);
            break;
         }
         i++;
      }
   }
cleanup:
   bson_destroy (&f);
   bson_destroy (&ids);
   bson_destroy (&res);
   return ok;
}

bool
mongo_helper_cache_incr (mongo_helper_cache_t *cache,
                         const char *key,
                         int64_t delta,
                         int64_t ttl_ms,
                         int64_t *result,
                         mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t doc = BSON_INITIALIZER;
   bson_t inc, soi;
   mh_w_op_t o = {0};
   bson_iter_t it;
   mongo_helper_error_t local;
   bool ok;

   if (!error) {
      error = &local;
   }
   if (result) {
      *result = 0;
   }
   ok = mh_cache_begin (cache, key, &f, true, error);
   if (!ok) {
      goto cleanup;
   }
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$inc", &inc);
   BSON_APPEND_INT64 (&inc, "value", delta);
   bson_append_document_end (&u, &inc);
   if (mh_cache_ttl (cache, ttl_ms) > 0) {
      BSON_APPEND_DOCUMENT_BEGIN (&u, "$setOnInsert", &soi);
      mh_cache_append_expiry (cache, &soi, ttl_ms);
      bson_append_document_end (&u, &soi);
   }
   o.kind = MH_W_FAM;
   o.coll = cache->coll;
   o.filter = &f;
   o.update = &u;
   o.upsert = true;
   o.found = &doc;
   ok = mh_w_run ("cache incr", &o, error);
   if (!ok && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY &&
       mh_cache_reap (cache, &f)) {
      ok = mh_w_run ("cache incr", &o, error);
   }
   if (ok) {
      if (!o.hit || !bson_iter_init_find (&it, &doc, "value") ||
          !BSON_ITER_HOLDS_NUMBER (&it)) {
         ok = mh_cache_wrong_type (key, "mongo_helper_cache_get()", error);
      } else if (result) {
         *result = bson_iter_as_int64 (&it);
      }
   } else if (error->category == MONGO_HELPER_ERROR_SERVER) {
      /* 14: TypeMismatch ($inc on a non-number). */
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, error->code,
               "cache key '%.64s' does not hold a number: %s", key,
               error->message);
   }
cleanup:
   bson_destroy (&f);
   bson_destroy (&u);
   bson_destroy (&doc);
   return ok;
}

bool
mongo_helper_cache_delete (mongo_helper_cache_t *cache,
                           const char *key,
                           bool *deleted,
                           mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   if (deleted) {
      *deleted = false;
   }
   ok = mh_cache_begin (cache, key, &f, false, error);
   if (ok) {
      o.kind = MH_W_DELETE;
      o.coll = cache->coll;
      o.filter = &f;
      ok = mh_w_run ("cache delete", &o, error);
      if (ok && deleted) {
         *deleted = o.n > 0;
      }
   }
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_cache_touch (mongo_helper_cache_t *cache,
                          const char *key,
                          int64_t ttl_ms,
                          mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t sub;
   mh_w_op_t o = {0};
   bool ok;

   ok = mh_cache_begin (cache, key, &f, true, error);
   if (ok) {
      if (mh_cache_ttl (cache, ttl_ms) > 0) {
         BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &sub);
         mh_cache_append_expiry (cache, &sub, ttl_ms);
      } else {
         BSON_APPEND_DOCUMENT_BEGIN (&u, "$unset", &sub);
         BSON_APPEND_UTF8 (&sub, "expiresAt", "");
      }
      bson_append_document_end (&u, &sub);
      o.kind = MH_W_UPDATE;
      o.coll = cache->coll;
      o.filter = &f;
      o.update = &u;
      ok = mh_w_run ("cache touch", &o, error);
      if (ok && o.n == 0) {
         ok = mh_cache_not_found (key, error);
      }
   }
   bson_destroy (&f);
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_cache_clear (mongo_helper_cache_t *cache,
                          mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};
   bool ok;

   /* deleteMany rather than drop: the indexes (and their TTL) stay. */
   ok = mh_cache_begin (cache, NULL, NULL, false, error);
   if (ok) {
      o.kind = MH_W_DELETE;
      o.many = true;
      o.coll = cache->coll;
      o.filter = &f;
      ok = mh_w_run ("cache clear", &o, error);
   }
   bson_destroy (&f);
   return ok;
}

/* The lease of a key: _id { lease: <stored id> } (a document of another
 * shape than any value's _id), a random token naming its holder, and an
 * expiresAt so the TTL index removes leases of crashed holders. */
static bool
mh_cache_lease_doc (mongo_helper_cache_t *c,
                    const char *key,
                    bson_t *doc,
                    const char *token,
                    bool with_body,
                    mongo_helper_error_t *error)
{
   bson_t id;

   BSON_APPEND_DOCUMENT_BEGIN (doc, "_id", &id);
   if (!mh_cache_append_id (c, &id, "lease", key, error)) {
      bson_append_document_end (doc, &id);
      return false;
   }
   bson_append_document_end (doc, &id);
   BSON_APPEND_UTF8 (doc, "token", token);
   if (with_body) {
      mh_web_append_date (doc, "expiresAt", mh_web_now_ms () + c->opt.lease_ms);
   }
   return true;
}

static void
mh_cache_lease_release (mongo_helper_cache_t *c, const char *key, const char *token)
{
   bson_t f = BSON_INITIALIZER;
   mh_w_op_t o = {0};

   if (mh_cache_lease_doc (c, key, &f, token, false, NULL)) {
      o.kind = MH_W_DELETE;
      o.coll = c->coll;
      o.filter = &f;
      mh_w_run ("cache lease release", &o, NULL); /* else TTL cleans it */
   }
   bson_destroy (&f);
}

bool
mongo_helper_cache_get_or_compute (mongo_helper_cache_t *cache,
                                   const char *key,
                                   int64_t ttl_ms,
                                   mongo_helper_cache_compute_fn compute,
                                   void *user_data,
                                   bson_t *value_out,
                                   bool *computed,
                                   mongo_helper_error_t *error)
{
   mongo_helper_error_t local;
   char token[MONGO_HELPER_SESSION_ID_SIZE];
   int64_t deadline;

   if (!error) {
      error = &local;
   }
   if (computed) {
      *computed = false;
   }
   if (!value_out || !compute) {
      if (value_out) {
         bson_init (value_out);
      }
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_cache_get_or_compute: value_out or "
                      "compute is NULL");
   }
   bson_init (value_out);
   if (!cache) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "cache handle is NULL");
   }
   if (!mh_session_id_new (token, error)) {
      return false;
   }
   deadline = mh_web_now_ms () + cache->opt.wait_ms;
   for (;;) {
      bson_t lease = BSON_INITIALIZER;
      bool ok;

      bson_destroy (value_out);
      if (mongo_helper_cache_get (cache, key, value_out, error)) {
         return true;
      }
      if (error->category != MONGO_HELPER_ERROR_NOT_FOUND) {
         return false;
      }
      if (!mh_cache_lease_doc (cache, key, &lease, token, true, error)) {
         bson_destroy (&lease);
         return false;
      }
      ok = mh_cache_insert (cache, "cache lease", &lease, error);
      bson_destroy (&lease);
      if (ok) {
         /* Re-check: the previous holder may have stored the value
          * between our miss and our lease. */
         bson_destroy (value_out);
         if (mongo_helper_cache_get (cache, key, value_out, error)) {
            mh_cache_lease_release (cache, key, token);
            return true;
         }
         bson_reinit (value_out);
         mh_error_clear (error);
         ok = compute (key, value_out, user_data, error);
         if (ok) {
            if (computed) {
               *computed = true;
            }
            ok = mongo_helper_cache_set (cache, key, value_out, ttl_ms, error);
         } else if (error->category == MONGO_HELPER_ERROR_NONE) {
            mh_fail (error, MONGO_HELPER_ERROR_INTERNAL, 0,
                     "the compute function for cache key '%.64s' failed "
                     "without saying why", key);
         }
         mh_cache_lease_release (cache, key, token);
         return ok;
      }
      if (error->category != MONGO_HELPER_ERROR_DUPLICATE_KEY) {
         return false;
      }
      /* Someone else holds the lease (an expired one was reaped by
       * mh_cache_insert's retry already): wait for their value. */
      if (mh_web_now_ms () >= deadline) {
         return mh_fail (error, MONGO_HELPER_ERROR_TIMEOUT, 0,
                         "cache key '%.64s': another caller is computing "
                         "the value and it did not arrive within %lld ms; "
                         "raise wait_ms or retry",
                         key, (long long) cache->opt.wait_ms);
      }
      mh_web_sleep_ms (cache->opt.poll_ms);
   }
}

/* ---- Event log ---- */

struct mongo_helper_eventlog_t {
   char *coll;
   char *granularity;
   int64_t retention_s;
   mh_web_setup_t setup;
};

void
mongo_helper_eventlog_options_init (mongo_helper_eventlog_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->collection = "user_events";
   options->retention_s = INT64_C (90) * 24 * 3600;
   options->granularity = "seconds";
   options->lazy_ensure = true;
}

mongo_helper_eventlog_t *
mongo_helper_eventlog_new (const mongo_helper_eventlog_options_t *options,
                           mongo_helper_error_t *error)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_eventlog_t *l;

   mh_error_clear (error);
   mongo_helper_eventlog_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!mh_web_coll_name_ok (o.collection, error)) {
      return NULL;
   }
   if (o.retention_s < 0 || !o.granularity ||
       (strcmp (o.granularity, "seconds") != 0 &&
        strcmp (o.granularity, "minutes") != 0 &&
        strcmp (o.granularity, "hours") != 0)) {
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
               "event log options: retention_s must be >= 0 and granularity "
               "\"seconds\", \"minutes\" or \"hours\"");
      return NULL;
   }
   l = bson_malloc0 (sizeof *l);
   l->coll = bson_strdup (o.collection);
   l->granularity = bson_strdup (o.granularity);
   l->retention_s = o.retention_s;
   mh_web_setup_init (&l->setup, o.lazy_ensure);
   return l;
}

void
mongo_helper_eventlog_destroy (mongo_helper_eventlog_t *log)
{
   if (!log) {
      return;
   }
   pthread_mutex_destroy (&log->setup.lock);
   bson_free (log->coll);
   bson_free (log->granularity);
   bson_free (log);
}

typedef struct {
   mongo_helper_eventlog_t *log;
   bool time_series;
} mh_eventlog_ensure_t;

/* Reads the server's major version from buildInfo (0 when unknown). */
static int
mh_server_major (mongoc_client_t *client, bson_error_t *berr, bool *ok)
{
   bson_t *cmd = BCON_NEW ("buildInfo", BCON_INT32 (1));
   bson_t reply;
   bson_iter_t it;
   int major = 0;

   *ok = mongoc_client_command_simple (client, "admin", cmd, NULL, &reply, berr);
   if (*ok && bson_iter_init_find (&it, &reply, "version") &&
       BSON_ITER_HOLDS_UTF8 (&it)) {
      major = atoi (bson_iter_utf8 (&it, NULL));
   }
   bson_destroy (&reply);
   bson_destroy (cmd);
   return major;
}

static bool
mh_eventlog_ensure_op (mongoc_client_t *client,
                       mongoc_database_t *db,
                       void *ctx,
                       bson_error_t *berr)
{
   mh_eventlog_ensure_t *e = ctx;
   mongo_helper_eventlog_t *l = e->log;
   mh_web_index_t ix[2] = {
      {"user_id_1_timestamp_-1", "user_id", 1, "timestamp", -1, -1},
      {"timestamp_ttl", "timestamp", 1, NULL, 0, l->retention_s},
   };
   mh_web_ensure_t ens;
   bool ok;
   int major = mh_server_major (client, berr, &ok);

   e->time_series = false;
   if (!ok) {
      return false;
   }
   if (major >= 5) {
      /* Time-series collections exist from 5.0; they are created
       * explicitly, and only when the collection does not exist yet (an
       * existing regular one keeps working with the index layout). */
      bson_t *filter = BCON_NEW ("name", BCON_UTF8 (l->coll));
      bson_t opts = BSON_INITIALIZER;
      mongoc_cursor_t *cur;
      const bson_t *doc;
      bool exists = false;

      BSON_APPEND_DOCUMENT (&opts, "filter", filter);
      cur = mongoc_database_find_collections_with_opts (db, &opts);
      while (mongoc_cursor_next (cur, &doc)) {
         bson_iter_t it;

         exists = true;
         if (bson_iter_init_find (&it, doc, "type") && BSON_ITER_HOLDS_UTF8 (&it) &&
             strcmp (bson_iter_utf8 (&it, NULL), "timeseries") == 0) {
            e->time_series = true;
         }
      }
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      bson_destroy (filter);
      bson_destroy (&opts);
      if (ok && !exists) {
         bson_t *create = BCON_NEW ("create", BCON_UTF8 (l->coll),
                                    "timeseries", "{",
                                    "timeField", BCON_UTF8 ("timestamp"),
                                    "metaField", BCON_UTF8 ("user_id"),
                                    "granularity", BCON_UTF8 (l->granularity),
                                    "}");
         if (l->retention_s > 0) {
            BSON_APPEND_INT64 (create, "expireAfterSeconds", l->retention_s);
         }
         ok = mongoc_database_command_simple (db, create, NULL, NULL, berr);
         if (!ok && berr->code == 48) { /* NamespaceExists: a racing ensure */
            ok = true;
         }
         e->time_series = ok;
         bson_destroy (create);
      }
      if (!ok) {
         return false;
      }
   }
   ens.coll = l->coll;
   ens.ix = ix;
   /* A time-series collection expires by its own expireAfterSeconds; a
    * regular one needs the TTL index (none when retention is 0). */
   ens.n = (e->time_series || l->retention_s == 0) ? 1 : 2;
   return mh_web_ensure_op (client, db, &ens, berr);
}

bool
mongo_helper_eventlog_ensure (mongo_helper_eventlog_t *log,
                              bool *time_series,
                              mongo_helper_error_t *error)
{
   mh_eventlog_ensure_t e = {0};

   mh_error_clear (error);
   if (time_series) {
      *time_series = false;
   }
   if (!log) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_eventlog_ensure: log is NULL");
   }
   e.log = log;
   if (!mh_run ("ensure event log collection", MH_OP_WRITE | MH_OP_IDEMPOTENT,
                mh_eventlog_ensure_op, &e, error)) {
      return false;
   }
   if (time_series) {
      *time_series = e.time_series;
   }
   atomic_store (&log->setup.done, true);
   return true;
}

static bool
mh_eventlog_ensure_cb (void *h, mongo_helper_error_t *error)
{
   return mongo_helper_eventlog_ensure (h, NULL, error);
}

/* Builds the stored event (with its own ObjectId, so a retried insert is
 * recognised as a duplicate) after validating every input. */
static bson_t *
mh_event_build (const char *user_id,
                const char *event_type,
                const bson_t *metadata,
                int64_t timestamp_ms,
                mongo_helper_error_t *error)
{
   bson_t *doc;
   bson_t empty = BSON_INITIALIZER;
   bson_oid_t oid;

   if (!mh_web_str_ok (user_id, "user_id", error) ||
       !mh_web_str_ok (event_type, "event_type", error) ||
       (metadata && !mh_web_size_ok (metadata->len, "event metadata", error))) {
      return NULL;
   }
   if (timestamp_ms < 0) {
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
               "timestamp_ms is negative: pass 0 for now");
      return NULL;
   }
   bson_oid_init (&oid, NULL);
   doc = bson_new ();
   BSON_APPEND_OID (doc, "_id", &oid);
   BSON_APPEND_UTF8 (doc, "user_id", user_id);
   BSON_APPEND_UTF8 (doc, "event_type", event_type);
   BSON_APPEND_DOCUMENT (doc, "metadata", metadata ? metadata : &empty);
   mh_web_append_date (doc, "timestamp", timestamp_ms ? timestamp_ms : mh_web_now_ms ());
   return doc;
}

bool
mongo_helper_eventlog_log (mongo_helper_eventlog_t *log,
                           const char *user_id,
                           const char *event_type,
                           const bson_t *metadata,
                           int64_t timestamp_ms,
                           mongo_helper_error_t *error)
{
   bson_t *doc;
   mh_w_op_t o = {0};
   bool ok;

   mh_error_clear (error);
   if (!log) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "event log handle is NULL");
   }
   doc = mh_event_build (user_id, event_type, metadata, timestamp_ms, error);
   if (!doc) {
      return false;
   }
   ok = mh_web_ready (&log->setup, mh_eventlog_ensure_cb, log, error);
   if (ok) {
      o.kind = MH_W_INSERT;
      o.coll = log->coll;
      o.filter = doc;
      ok = mh_w_run ("log user event", &o, error);
   }
   bson_destroy (doc);
   return ok;
}

bool
mongo_helper_eventlog_query (mongo_helper_eventlog_t *log,
                             const mongo_helper_event_query_t *query,
                             bson_t *events_out,
                             int32_t *count,
                             mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t ts;
   bson_t *opts;
   mh_w_op_t o = {0};
   bool ok;

   mh_error_clear (error);
   if (count) {
      *count = 0;
   }
   if (events_out) {
      bson_init (events_out);
   }
   if (!log || !query || !events_out) {
      bson_destroy (&f);
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "mongo_helper_eventlog_query: log, query or "
                      "events_out is NULL");
   }
   if (!mh_web_str_ok (query->user_id, "query user_id", error) ||
       (query->event_type &&
        !mh_web_str_ok (query->event_type, "query event_type", error)) ||
       !mh_web_ready (&log->setup, mh_eventlog_ensure_cb, log, error)) {
      bson_destroy (&f);
      return false;
   }
   BSON_APPEND_UTF8 (&f, "user_id", query->user_id);
   if (query->event_type) {
      BSON_APPEND_UTF8 (&f, "event_type", query->event_type);
   }
   if (query->since_ms > 0 || query->until_ms > 0) {
      BSON_APPEND_DOCUMENT_BEGIN (&f, "timestamp", &ts);
      if (query->since_ms > 0) {
         mh_web_append_date (&ts, "$gte", query->since_ms);
      }
      if (query->until_ms > 0) {
         mh_web_append_date (&ts, "$lt", query->until_ms);
      }
      bson_append_document_end (&f, &ts);
   }
   opts = BCON_NEW ("sort", "{", "timestamp", BCON_INT32 (-1), "}",
                    "limit", BCON_INT64 (query->limit > 0 ? query->limit : 100));
   o.kind = MH_W_FIND_ALL;
   o.coll = log->coll;
   o.filter = &f;
   o.opts = opts;
   o.array = events_out;
   ok = mh_w_run ("query user events", &o, error);
   if (ok && count) {
      *count = (int32_t) o.n;
   }
   bson_destroy (opts);
   bson_destroy (&f);
   return ok;
}

/* -- Buffered writer. */

struct mongo_helper_event_writer_t {
   mongo_helper_eventlog_t *log;
   mongo_helper_event_writer_options_t opt;
   pthread_mutex_t lock;
   pthread_cond_t wake; /* to the flusher: work, flush request, stop */
   pthread_cond_t room; /* to producers and flush waiters: progress */
   bson_t **ring;
   size_t head, len;
   size_t inflight; /* events in the batch being written */
   bool stop;
   bool flush_now;
   int64_t stop_deadline; /* monotonic µs */
   mongo_helper_event_writer_stats_t st;
   pthread_t thread;
};

void
mongo_helper_event_writer_options_init (
   mongo_helper_event_writer_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->queue_size = 10000;
   options->batch_size = 500;
   options->flush_interval_ms = 1000;
   options->policy = MONGO_HELPER_QUEUE_BLOCK;
   options->block_timeout_ms = 100;
   options->backoff_min_ms = 100;
   options->backoff_max_ms = 5000;
}

/* Absolute time for pthread_cond_timedwait on a CLOCK_MONOTONIC cond. */
static struct timespec
mh_ew_abstime (int64_t mono_us)
{
   struct timespec ts;

   ts.tv_sec = (time_t) (mono_us / 1000000);
   ts.tv_nsec = (long) (mono_us % 1000000) * 1000L;
   return ts;
}

static int64_t
mh_ew_mono_us (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_MONOTONIC, &ts);
   return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
   mongo_helper_eventlog_t *log;
   bson_t **docs;
   size_t n;
   uint64_t stored, refused;
} mh_ew_batch_t;

/* One unordered bulk insert.  Success means the server answered for every
 * event: inserted, or already there from an attempt whose reply was lost
 * (11000 on our own ObjectId: stored), or refused for good (dropped).
 * Anything else (no answer) fails so the batch is retried as a whole. */
static bool
mh_ew_write_op (mongoc_client_t *client,
                mongoc_database_t *db,
                void *ctx,
                bson_error_t *berr)
{
   mh_ew_batch_t *b = ctx;
   mongoc_collection_t *coll = mongoc_database_get_collection (db, b->log->coll);
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (false));
   mongoc_bulk_operation_t *bulk =
      mongoc_collection_create_bulk_operation_with_opts (coll, opts);
   bson_t reply;
   bson_iter_t it, we;
   uint64_t inserted, dup = 0, other = 0;
   bool ok = true;

   (void) client;
   b->stored = b->refused = 0;
   for (size_t i = 0; ok && i < b->n; i++) {
      ok = mongoc_bulk_operation_insert_with_opts (bulk, b->docs[i], NULL, berr);
   }
   if (!ok) {
      bson_init (&reply);
   } else if (mongoc_bulk_operation_execute (bulk, &reply, berr) != 0) {
      b->stored = b->n;
   } else {
      inserted = (uint64_t) mh_w_reply_int (&reply, "nInserted");
      if (bson_iter_init_find (&it, &reply, "writeErrors") &&
          BSON_ITER_HOLDS_ARRAY (&it) && bson_iter_recurse (&it, &we)) {
         while (bson_iter_next (&we)) {
            bson_iter_t c;

            if (bson_iter_recurse (&we, &c) && bson_iter_find (&c, "code") &&
                bson_iter_as_int64 (&c) == 11000) {
               dup++;
            } else {
               other++;
            }
         }
      }
      if (inserted + dup + other == b->n) {
         b->stored = inserted + dup;
         b->refused = other;
      } else {
         ok = false;
      }
   }
   bson_destroy (&reply);
   mongoc_bulk_operation_destroy (bulk);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   return ok;
}

static bool
mh_ew_past_deadline (const mongo_helper_event_writer_t *w)
{
   return w->stop && mh_ew_mono_us () >= w->stop_deadline;
}

static void *
mh_ew_thread (void *arg)
{
   mongo_helper_event_writer_t *w = arg;
   bson_t **batch = bson_malloc (w->opt.batch_size * sizeof *batch);
   int64_t next = mh_ew_mono_us () + (int64_t) w->opt.flush_interval_ms * 1000;

   pthread_mutex_lock (&w->lock);
   for (;;) {
      mh_ew_batch_t b = {w->log, batch, 0, 0, 0};
      int64_t backoff = w->opt.backoff_min_ms;

      while (!w->stop && !w->flush_now && w->len < w->opt.batch_size &&
             mh_ew_mono_us () < next) {
         struct timespec at = mh_ew_abstime (next);
         pthread_cond_timedwait (&w->wake, &w->lock, &at);
      }
      next = mh_ew_mono_us () + (int64_t) w->opt.flush_interval_ms * 1000;
      if (w->len == 0) {
         w->flush_now = false;
         pthread_cond_broadcast (&w->room);
         if (w->stop) {
            break;
         }
         continue;
      }
      while (b.n < w->opt.batch_size && w->len > 0) {
         batch[b.n++] = w->ring[w->head];
         w->head = (w->head + 1) % w->opt.queue_size;
         w->len--;
      }
      w->inflight = b.n;
      pthread_cond_broadcast (&w->room);
      for (;;) {
         mongo_helper_error_t e;
         bool ok;

         pthread_mutex_unlock (&w->lock);
         ok = mh_web_ready (&w->log->setup, mh_eventlog_ensure_cb, w->log, &e) &&
              mh_run ("write buffered user events", MH_OP_WRITE,
                      mh_ew_write_op, &b, &e);
         pthread_mutex_lock (&w->lock);
         if (ok) {
            w->st.stored += b.stored;
            w->st.dropped += b.refused;
            break;
         }
         w->st.failed_batches++;
         if (mh_ew_past_deadline (w)) {
            w->st.dropped += b.n;
            break;
         }
         /* Server unreachable (or refusing): keep the batch, back off, and
          * let the queue absorb new events meanwhile. */
         {
            int64_t until = mh_ew_mono_us () + backoff * 1000;
            struct timespec at;

            if (w->stop && w->stop_deadline < until) {
               until = w->stop_deadline;
            }
            at = mh_ew_abstime (until);
            while (mh_ew_mono_us () < until) {
               if (pthread_cond_timedwait (&w->wake, &w->lock, &at) != 0) {
                  break;
               }
               if (w->stop && w->stop_deadline < until) {
                  until = w->stop_deadline;
                  at = mh_ew_abstime (until);
               }
            }
         }
         backoff = backoff * 2 > w->opt.backoff_max_ms ? w->opt.backoff_max_ms
                                                        : backoff * 2;
      }
      for (size_t i = 0; i < b.n; i++) {
         bson_destroy (batch[i]);
      }
      w->inflight = 0;
      if (mh_ew_past_deadline (w)) {
         while (w->len > 0) {
            bson_destroy (w->ring[w->head]);
            w->head = (w->head + 1) % w->opt.queue_size;
            w->len--;
            w->st.dropped++;
         }
      }
      pthread_cond_broadcast (&w->room);
   }
   pthread_mutex_unlock (&w->lock);
   bson_free (batch);
   /* Give this thread's pooled client back now rather than at exit. */
   mongo_helper_thread_release ();
   return NULL;
}

mongo_helper_event_writer_t *
mongo_helper_event_writer_new (mongo_helper_eventlog_t *log,
                               const mongo_helper_event_writer_options_t *options,
                               mongo_helper_error_t *error)
{
   mongo_helper_event_writer_options_t o;
   mongo_helper_event_writer_t *w;
   pthread_condattr_t ca;
   int rc;

   mh_error_clear (error);
   mongo_helper_event_writer_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!log || o.queue_size == 0 || o.batch_size == 0 ||
       o.batch_size > 100000 || o.flush_interval_ms <= 0 ||
       o.block_timeout_ms < 0 || o.backoff_min_ms <= 0 ||
       o.backoff_max_ms < o.backoff_min_ms ||
       (o.policy != MONGO_HELPER_QUEUE_BLOCK &&
        o.policy != MONGO_HELPER_QUEUE_DROP_NEWEST &&
        o.policy != MONGO_HELPER_QUEUE_DROP_OLDEST)) {
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
               "event writer: log is NULL or an option is out of range "
               "(queue_size and batch_size (<= 100000) > 0, "
               "flush_interval_ms > 0, 0 < backoff_min_ms <= backoff_max_ms, "
               "a known policy)");
      return NULL;
   }
   w = bson_malloc0 (sizeof *w);
   w->log = log;
   w->opt = o;
   w->ring = bson_malloc0 (o.queue_size * sizeof *w->ring);
   pthread_mutex_init (&w->lock, NULL);
   pthread_condattr_init (&ca);
   pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
   pthread_cond_init (&w->wake, &ca);
   pthread_cond_init (&w->room, &ca);
   pthread_condattr_destroy (&ca);
   rc = pthread_create (&w->thread, NULL, mh_ew_thread, w);
   if (rc != 0) {
      pthread_cond_destroy (&w->wake);
      pthread_cond_destroy (&w->room);
      pthread_mutex_destroy (&w->lock);
      bson_free (w->ring);
      bson_free (w);
      mh_fail (error, MONGO_HELPER_ERROR_INTERNAL, rc,
               "event writer: cannot start its thread (%s)", strerror (rc));
      return NULL;
   }
   return w;
}

bool
mongo_helper_event_writer_log (mongo_helper_event_writer_t *writer,
                               const char *user_id,
                               const char *event_type,
                               const bson_t *metadata,
                               int64_t timestamp_ms,
                               mongo_helper_error_t *error)
{
   bson_t *doc;
   bool queued = true;

   mh_error_clear (error);
   if (!writer) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "event writer is NULL");
   }
   doc = mh_event_build (user_id, event_type, metadata, timestamp_ms, error);
   if (!doc) {
      return false;
   }
   pthread_mutex_lock (&writer->lock);
   writer->st.accepted++;
   if (writer->len == writer->opt.queue_size) {
      switch (writer->opt.policy) {
      case MONGO_HELPER_QUEUE_BLOCK: {
         int64_t until = mh_ew_mono_us () + (int64_t) writer->opt.block_timeout_ms * 1000;
         struct timespec at = mh_ew_abstime (until);

         while (writer->len == writer->opt.queue_size && !writer->stop &&
                pthread_cond_timedwait (&writer->room, &writer->lock, &at) == 0) {
         }
         queued = writer->len < writer->opt.queue_size && !writer->stop;
         break;
      }
      case MONGO_HELPER_QUEUE_DROP_NEWEST:
         queued = false;
         break;
      case MONGO_HELPER_QUEUE_DROP_OLDEST:
         bson_destroy (writer->ring[writer->head]);
         writer->head = (writer->head + 1) % writer->opt.queue_size;
         writer->len--;
         writer->st.dropped++;
         break;
      }
   }
   if (queued) {
      writer->ring[(writer->head + writer->len) % writer->opt.queue_size] = doc;
      writer->len++;
      if (writer->len >= writer->opt.batch_size) {
         pthread_cond_signal (&writer->wake);
      }
   } else {
      writer->st.dropped++;
   }
   pthread_mutex_unlock (&writer->lock);
   if (!queued) {
      bson_destroy (doc);
      return mh_fail (error, MONGO_HELPER_ERROR_TIMEOUT, 0,
                      "event writer queue is full (%zu events; the server "
                      "may be unreachable): event dropped and counted",
                      writer->opt.queue_size);
   }
   return true;
}

bool
mongo_helper_event_writer_flush (mongo_helper_event_writer_t *writer,
                                 int32_t timeout_ms,
                                 mongo_helper_error_t *error)
{
   int64_t until = mh_ew_mono_us () + (int64_t) (timeout_ms > 0 ? timeout_ms : 0) * 1000;
   struct timespec at = mh_ew_abstime (until);
   size_t left;

   mh_error_clear (error);
   if (!writer) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0,
                      "event writer is NULL");
   }
   pthread_mutex_lock (&writer->lock);
   writer->flush_now = true;
   pthread_cond_signal (&writer->wake);
   while (writer->len + writer->inflight > 0 &&
          pthread_cond_timedwait (&writer->room, &writer->lock, &at) == 0) {
      if (writer->len > 0) {
         writer->flush_now = true;
         pthread_cond_signal (&writer->wake);
      }
   }
   left = writer->len + writer->inflight;
   pthread_mutex_unlock (&writer->lock);
   if (left > 0) {
      return mh_fail (error, MONGO_HELPER_ERROR_TIMEOUT, 0,
                      "event writer: %zu events still queued after %d ms "
                      "(is the server reachable?)",
                      left, (int) timeout_ms);
   }
   return true;
}

void
mongo_helper_event_writer_stats (mongo_helper_event_writer_t *writer,
                                 mongo_helper_event_writer_stats_t *stats)
{
   if (!stats) {
      return;
   }
   memset (stats, 0, sizeof *stats);
   if (!writer) {
      return;
   }
   pthread_mutex_lock (&writer->lock);
   *stats = writer->st;
   stats->queued = writer->len + writer->inflight;
   pthread_mutex_unlock (&writer->lock);
}

void
mongo_helper_event_writer_destroy (mongo_helper_event_writer_t *writer,
                                   int32_t deadline_ms,
                                   mongo_helper_event_writer_stats_t *final_stats)
{
   if (!writer) {
      if (final_stats) {
         memset (final_stats, 0, sizeof *final_stats);
      }
      return;
   }
   pthread_mutex_lock (&writer->lock);
   writer->stop = true;
   writer->stop_deadline =
      mh_ew_mono_us () + (int64_t) (deadline_ms > 0 ? deadline_ms : 0) * 1000;
   pthread_cond_broadcast (&writer->wake);
   pthread_cond_broadcast (&writer->room);
   pthread_mutex_unlock (&writer->lock);
   pthread_join (writer->thread, NULL);
   mongo_helper_event_writer_stats (writer, final_stats);
   pthread_cond_destroy (&writer->wake);
   pthread_cond_destroy (&writer->room);
   pthread_mutex_destroy (&writer->lock);
   bson_free (writer->ring);
   bson_free (writer);
}
