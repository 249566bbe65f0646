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

/* Database and collection names a caller passes: checked here, once, so
 * every area refuses the same names with the same words.  A NULL database
 * means the default one. */
static bool
mh_check_db_name (const char *what, const char *name, mongo_helper_error_t *error)
{
   if (name && !mh_valid_db_name (name)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: database name '%.64s' is not valid (1-63 bytes, "
                      "none of /\\. \"$*<>:|?): pass NULL for the default "
                      "database",
                      what,
                      name);
   }
   return true;
}

static bool
mh_check_coll_name (const char *what,
                    const char *name,
                    mongo_helper_error_t *error)
{
   if (!name || !*name) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the collection name is NULL or empty: pass a name",
                      what);
   }
   if (strchr (name, '$') || strlen (name) > 255 ||
       !bson_utf8_validate (name, strlen (name), false)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: collection name '%.64s' is not valid (UTF-8, no "
                      "'$', at most 255 bytes)",
                      what,
                      name);
   }
   return true;
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
   /* Slots of threads that do not exist in the child stay reachable; the
    * forking thread's own slot is re-registered on its next use. */
   for (mh_slot_t *s = mh_g.slots, *next; s; s = next) {
      next = s->next;
      s->prev = s->next = NULL;
      s->registered = false;
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
      attempt++;
      memset (&berr, 0, sizeof berr);
      t_attempt = bson_get_monotonic_time ();
      if (fn (s->client, s->db, ctx, &berr)) {
         mh_breaker_record (NULL, probe);
         mh_metrics_op (what, t0, attempt - 1, MONGO_HELPER_ERROR_NONE);
         return true;
      }
      /* libmongoc says "socket error or timeout" for both; the clock tells
       * them apart, so the caller learns it was a timeout.  socketTimeoutMS
       * is looked up only here: a URI option lookup on every call was
       * measurable in bench/ (~2% of a find_one's client CPU). */
      socket_ms = berr.domain == MONGOC_ERROR_STREAM
                     ? mongoc_uri_get_option_as_int32 (
                          s->owner->config->muri, MONGOC_URI_SOCKETTIMEOUTMS, 0)
                     : 0;
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

/* Shared by every document operation: where it runs and what it checks. */

#define MH_EARTH_RADIUS_M 6378100.0

static bool
mh_target_check (const char *what,
                 const char *database,
                 const char *collection,
                 mongo_helper_error_t *error)
{
   mh_error_clear (error);
   return mh_check_db_name (what, database, error) &&
          mh_check_coll_name (what, collection, error);
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
   /* The label is formatted only for a failing document: a vsnprintf per
    * document was measurable in bench/ (insert_many_small). */
   for (size_t i = 0; i < n; i++) {
      if (!docs[i] || docs[i]->len > MONGO_HELPER_MAX_DOCUMENT_SIZE) {
         bson_snprintf (label, sizeof label, "document at index %zu", i);
         return mh_doc_check ("insert_many", label, docs[i], error);
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
   bool first_only; /* find_one: stop at the first document */
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
   mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (
      coll, c->filter ? c->filter : &empty, c->opts, NULL);
   const bson_t *doc;
   bool ok;

   if (c->first_only) {
      /* limit 1: the server closed the cursor with the first batch, so a
       * second mongoc_cursor_next() would only confirm the end. */
      bson_reinit (c->results);
      if (mongoc_cursor_next (cursor, &doc)) {
         mh_array_append (c->results, 0, doc);
      }
      ok = !mongoc_cursor_error (cursor, berr);
      mongoc_cursor_destroy (cursor);
   } else {
      ok = mh_cursor_drain (cursor, c->results, berr);
   }

   mongoc_collection_destroy (coll);
   return ok;
}

/* Runs a find with ready-made options: the path of every read below. */
static bool
mh_find_exec_ex (const char *op,
                 const char *database,
                 const char *collection,
                 const bson_t *filter,
                 const bson_t *opts,
                 bool first_only,
                 bson_t *results,
                 mongo_helper_error_t *error)
{
   mh_find_ctx_t ctx = {database, collection, filter, opts, results, first_only};
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

static bool
mh_find_exec (const char *op,
              const char *database,
              const char *collection,
              const bson_t *filter,
              const bson_t *opts,
              bson_t *results,
              mongo_helper_error_t *error)
{
   return mh_find_exec_ex (op, database, collection, filter, opts, false, results, error);
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

   /* opts always hold limit 1 (mongo_helper_find_one) */
   if (mh_find_exec_ex (op, database, collection, filter, opts, true, &results, error)) {
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
      /* One document, no cursor left open on the server: limit 1 already
       * makes the server close the cursor with its first batch (and
       * mongoc_cursor_destroy() would kill one left open).  An extra
       * singleBatch option cost ~7% of a find_one's client CPU in bench/. */
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

/* Hands the `n` documents stored back to back in buf[0..used) (the i-th at
 * offs[i]) to the callback as static bson_t's; returns its verdict. */
static bool
mh_stream_deliver (mh_stream_ctx_t *c,
                   bson_t *chunk,
                   const bson_t **ptrs,
                   const size_t *offs,
                   size_t n,
                   const uint8_t *buf,
                   size_t used)
{
   for (size_t i = 0; i < n; i++) {
      size_t end = i + 1 < n ? offs[i + 1] : used;

      bson_init_static (&chunk[i], buf + offs[i], end - offs[i]);
      ptrs[i] = &chunk[i];
   }
   return c->fn ((const bson_t *const *) ptrs, n, c->user_data);
}

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
   /* A chunk's documents are copied back to back into one buffer (reused
    * for every chunk) and handed out as static bson_t's over it: one
    * allocation per growth instead of a bson_copy() (two mallocs and two
    * frees) per document, which bench/ measured at over half of the
    * stream's client CPU. */
   bson_t *chunk = bson_malloc (c->chunk_size * sizeof *chunk);
   const bson_t **ptrs = bson_malloc (c->chunk_size * sizeof *ptrs);
   size_t *offs = bson_malloc (c->chunk_size * sizeof *offs);
   uint8_t *buf = NULL;
   size_t used = 0, cap = 0;
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
      if (cap - used < doc->len) {
         while (cap - used < doc->len) {
            /* first guess: a chunk of documents like this one, at
             * least 64 KiB and at most 16 MiB; doubled when short */
            cap = cap ? cap * 2
                      : (size_t) doc->len * c->chunk_size < 65536 ? 65536
                      : (size_t) doc->len * c->chunk_size > (16u << 20)
                         ? (16u << 20)
                         : (size_t) doc->len * c->chunk_size;
         }
         buf = bson_realloc (buf, cap);
      }
      memcpy (buf + used, bson_get_data (doc), doc->len);
      offs[n++] = used;
      used += doc->len;
      if (n == c->chunk_size) {
         more = mh_stream_deliver (c, chunk, ptrs, offs, n, buf, used);
         n = 0;
         used = 0;
      }
   }
   ok = !mongoc_cursor_error (cursor, berr);
   if (ok && more && n > 0) {
      mh_stream_deliver (c, chunk, ptrs, offs, n, buf, used);
   }
   bson_free (buf);
   bson_free (offs);
   bson_free (ptrs);
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
      /* label formatted only on failure: see insert_many */
      if (!docs[i] || docs[i]->len > MONGO_HELPER_MAX_DOCUMENT_SIZE) {
         bson_snprintf (label, sizeof label, "document at index %zu", i);
         return mh_doc_check ("bulk_insert", label, docs[i], error);
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

/* Helpers shared by this section.  Every public function below checks its
 * arguments first (INVALID_ARGUMENT, before any network traffic), then runs
 * one mh_op_fn through mh_run(). */

/* Operations whose effects reach the caller while they run (bytes handed
 * to a write callback, change events): mh_run must never repeat them, and
 * a write without MH_OP_IDEMPOTENT is the flag set it never repeats. */
#define MH_OPS_ONCE MH_OP_WRITE

static bool
mh_ops_bad (mongo_helper_error_t *error, const char *fn, const char *what)
{
   return mh_fail (
      error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: %s", fn, what);
}

/* The database an operation works on: the thread's default one (borrowed)
 * or a named one (owned, *owned set). */
static mongoc_database_t *
mh_ops_database (mongoc_client_t *client,
                 mongoc_database_t *db,
                 const char *name,
                 bool *owned)
{
   *owned = name != NULL;
   return name ? mongoc_client_get_database (client, name) : db;
}

static void
mh_ops_database_done (mongoc_database_t *db, bool owned)
{
   if (owned) {
      mongoc_database_destroy (db);
   }
}

/* Any numeric field as int64 (servers answer int32, int64 or double for
 * the same statistic depending on size and version); 0 when absent. */
static int64_t
mh_ops_int64 (const bson_t *doc, const char *dotted)
{
   bson_iter_t it, f;

   if (doc && bson_iter_init (&it, doc) &&
       bson_iter_find_descendant (&it, dotted, &f) &&
       (BSON_ITER_HOLDS_NUMBER (&f) || BSON_ITER_HOLDS_BOOL (&f))) {
      return bson_iter_as_int64 (&f);
   }
   return 0;
}

/* Changes the category mh_run chose, for the few driver errors this
 * section knows better (a missing GridFS file is NOT_FOUND, not SERVER). */
static void
mh_ops_recategorize (mongo_helper_error_t *error, mongo_helper_category_t cat)
{
   if (error) {
      error->category = cat;
   }
}

/* ---- GridFS ---- */

typedef enum {
   MH_GFS_PUT_READER, /* open_upload_stream + the read callback */
   MH_GFS_PUT_STREAM, /* libmongoc's upload_from_stream */
   MH_GFS_GET,        /* open_download_stream + the write callback */
   MH_GFS_FIND,
   MH_GFS_DELETE
} mh_gfs_kind_t;

typedef struct {
   mh_gfs_kind_t kind;
   const mongo_helper_gridfs_opts_t *opts;
   const char *filename;
   const bson_t *upload_opts;      /* {metadata: ...} */
   mongoc_stream_t *stream;        /* PUT_STREAM source */
   mongo_helper_read_fn read;      /* PUT_READER */
   mongo_helper_write_fn write;    /* GET */
   void *user_data;
   void (*restart) (void *user_data); /* rewinds a library-owned callback */
   const bson_value_t *file_id_in; /* GET, DELETE */
   bson_value_t file_id;           /* PUT: the new id */
   bool have_id;
   bson_t *files;                  /* FIND */
   size_t count;
   bool not_found;
   bool aborted; /* a caller callback asked to stop */
} mh_gfs_ctx_t;

static bool
mh_gfs_check_opts (mongo_helper_error_t *error,
                   const char *fn,
                   const mongo_helper_gridfs_opts_t *opts)
{
   if (!opts) {
      return true;
   }
   if (!mh_check_db_name (fn, opts->database, error)) {
      return false;
   }
   if (opts->bucket && (!*opts->bucket || strchr (opts->bucket, '$') ||
                        strlen (opts->bucket) > 200)) {
      return mh_ops_bad (error,
                         fn,
                         "the bucket name is empty or invalid: pass NULL "
                         "for \"fs\" or a plain name");
   }
   if (opts->chunk_size < 0 || opts->chunk_size > 15 * 1024 * 1024) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: chunk_size %d is out of range (0 for the default, "
                      "else 1 byte to 15 MiB so a chunk fits a document)",
                      fn,
                      (int) opts->chunk_size);
   }
   return true;
}

static void
mh_gfs_note_error (mh_gfs_ctx_t *c, const bson_error_t *berr)
{
   if (berr->domain == MONGOC_ERROR_GRIDFS &&
       berr->code == MONGOC_ERROR_GRIDFS_BUCKET_FILE_NOT_FOUND) {
      c->not_found = true;
   }
}

/* Size of the pieces moved through the callbacks: one default chunk. */
#define MH_GFS_IO_SIZE (255 * 1024)

static bool
mh_gfs_op (mongoc_client_t *client,
           mongoc_database_t *db,
           void *ctx,
           bson_error_t *berr)
{
   mh_gfs_ctx_t *c = ctx;
   const mongo_helper_gridfs_opts_t *o = c->opts;
   mongoc_gridfs_bucket_t *bucket;
   mongoc_database_t *dbh;
   mongoc_stream_t *st = NULL;
   mongoc_cursor_t *cur;
   bson_t bopts = BSON_INITIALIZER;
   uint8_t *buf = NULL;
   bool owned, ok = false;

   /* The path may run us again: start from a clean slate. */
   if (c->have_id) {
      bson_value_destroy (&c->file_id);
      c->have_id = false;
   }
   c->not_found = c->aborted = false;
   if (c->restart) {
      c->restart (c->user_data);
   }
   if (o && o->bucket) {
      BSON_APPEND_UTF8 (&bopts, "bucketName", o->bucket);
   }
   if (o && o->chunk_size > 0) {
      BSON_APPEND_INT32 (&bopts, "chunkSizeBytes", o->chunk_size);
   }
   dbh = mh_ops_database (client, db, o ? o->database : NULL, &owned);
   bucket = mongoc_gridfs_bucket_new (dbh, &bopts, NULL, berr);
   bson_destroy (&bopts);
   if (!bucket) {
      mh_ops_database_done (dbh, owned);
      return false;
   }

   switch (c->kind) {
   case MH_GFS_PUT_STREAM:
      ok = mongoc_gridfs_bucket_upload_from_stream (
         bucket, c->filename, c->stream, c->upload_opts, &c->file_id, berr);
      c->have_id = ok;
      break;

   case MH_GFS_PUT_READER:
      st = mongoc_gridfs_bucket_open_upload_stream (
         bucket, c->filename, c->upload_opts, &c->file_id, berr);
      if (!st) {
         break;
      }
      c->have_id = true;
      buf = bson_malloc (MH_GFS_IO_SIZE);
      ok = true;
      for (;;) {
         int64_t n = c->read (buf, MH_GFS_IO_SIZE, c->user_data);

         if (n == 0) {
            break;
         }
         if (n < 0 || n > MH_GFS_IO_SIZE) {
            c->aborted = true;
            bson_set_error (berr,
                            MONGOC_ERROR_GRIDFS,
                            MONGOC_ERROR_GRIDFS_BUCKET_STREAM,
                            "the read callback returned %" PRId64
                            " (expected 0..%d); upload aborted",
                            n,
                            MH_GFS_IO_SIZE);
            ok = false;
            break;
         }
         if (mongoc_stream_write (st, buf, (size_t) n, 0) != (ssize_t) n) {
            mongoc_gridfs_bucket_stream_error (st, berr);
            ok = false;
            break;
         }
      }
      /* Close writes the last chunk and the files document; an upload
       * that failed is aborted instead, which deletes its chunks. */
      if (ok && mongoc_stream_close (st) != 0) {
         mongoc_gridfs_bucket_stream_error (st, berr);
         ok = false;
      }
      if (!ok) {
         mongoc_gridfs_bucket_abort_upload (st);
      }
      mongoc_stream_destroy (st);
      if (!ok) {
         bson_value_destroy (&c->file_id);
         c->have_id = false;
      }
      break;

   case MH_GFS_GET:
      st = mongoc_gridfs_bucket_open_download_stream (bucket, c->file_id_in, berr);
      if (!st) {
         mh_gfs_note_error (c, berr);
         break;
      }
      buf = bson_malloc (MH_GFS_IO_SIZE);
      ok = true;
      for (;;) {
         ssize_t n = mongoc_stream_read (st, buf, MH_GFS_IO_SIZE, 1, 0);

         if (n == 0) {
            break;
         }
         if (n < 0) {
            if (!mongoc_gridfs_bucket_stream_error (st, berr)) {
               bson_set_error (berr,
                               MONGOC_ERROR_GRIDFS,
                               MONGOC_ERROR_GRIDFS_BUCKET_STREAM,
                               "reading the file failed");
            }
            ok = false;
            break;
         }
         if (!c->write (buf, (size_t) n, c->user_data)) {
            c->aborted = true;
            bson_set_error (berr,
                            MONGOC_ERROR_GRIDFS,
                            MONGOC_ERROR_GRIDFS_BUCKET_STREAM,
                            "download aborted by the write callback");
            ok = false;
            break;
         }
      }
      mongoc_stream_destroy (st);
      break;

   case MH_GFS_FIND: {
      bson_t filter = BSON_INITIALIZER;
      bson_t *fopts = BCON_NEW ("sort", "{", "uploadDate", BCON_INT32 (1), "}");
      const bson_t *doc;
      char key[16];
      const char *k;

      if (c->filename) {
         BSON_APPEND_UTF8 (&filter, "filename", c->filename);
      }
      cur = mongoc_gridfs_bucket_find (bucket, &filter, fopts);
      while (mongoc_cursor_next (cur, &doc)) {
         bson_uint32_to_string ((uint32_t) c->count, &k, key, sizeof key);
         BSON_APPEND_DOCUMENT (c->files, k, doc);
         c->count++;
      }
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      bson_destroy (fopts);
      bson_destroy (&filter);
      break;
   }

   case MH_GFS_DELETE:
      ok = mongoc_gridfs_bucket_delete_by_id (bucket, c->file_id_in, berr);
      if (!ok) {
         mh_gfs_note_error (c, berr);
      }
      break;
   }

   bson_free (buf);
   mongoc_gridfs_bucket_destroy (bucket);
   mh_ops_database_done (dbh, owned);
   return ok;
}

/* Runs a GridFS operation and refines the category of its error. */
static bool
mh_gfs_run (const char *what,
            unsigned flags,
            mh_gfs_ctx_t *c,
            mongo_helper_error_t *error)
{
   if (mh_run (what, flags, mh_gfs_op, c, error)) {
      return true;
   }
   if (c->not_found) {
      mh_ops_recategorize (error, MONGO_HELPER_ERROR_NOT_FOUND);
   } else if (c->aborted) {
      mh_ops_recategorize (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   }
   return false;
}

/* {metadata: caller's metadata with contentType set}, or empty. */
static void
mh_gfs_upload_opts (bson_t *out, const char *content_type, const bson_t *metadata)
{
   bson_t meta;

   bson_init (out);
   if (!content_type && !metadata) {
      return;
   }
   BSON_APPEND_DOCUMENT_BEGIN (out, "metadata", &meta);
   if (metadata) {
      if (content_type) {
         bson_copy_to_excluding_noinit (metadata, &meta, "contentType", NULL);
      } else {
         bson_concat (&meta, metadata);
      }
   }
   if (content_type) {
      BSON_APPEND_UTF8 (&meta, "contentType", content_type);
   }
   bson_append_document_end (out, &meta);
}

static bool
mh_gfs_check_put (mongo_helper_error_t *error,
                  const char *fn,
                  const mongo_helper_gridfs_opts_t *opts,
                  const char *filename,
                  const bson_t *metadata)
{
   if (!mh_gfs_check_opts (error, fn, opts)) {
      return false;
   }
   if (!filename || !*filename) {
      return mh_ops_bad (error, fn, "the filename is NULL or empty: pass a name");
   }
   if (metadata && metadata->len > BSON_MAX_SIZE / 2) {
      return mh_ops_bad (error, fn, "the metadata document is too large");
   }
   return true;
}

static bool
mh_gfs_put_common (const char *fn,
                   mh_gfs_ctx_t *c,
                   const char *content_type,
                   const bson_t *metadata,
                   bson_value_t *file_id,
                   mongo_helper_error_t *error)
{
   bson_t uopts;
   char what[300];
   bool ok;

   mh_gfs_upload_opts (&uopts, content_type, metadata);
   c->upload_opts = &uopts;
   bson_snprintf (what, sizeof what, "%s '%.200s'", fn, c->filename);
   ok = mh_gfs_run (what, MH_OP_WRITE, c, error);
   bson_destroy (&uopts);
   if (ok && file_id) {
      *file_id = c->file_id; /* ownership moves to the caller */
   } else if (c->have_id) {
      bson_value_destroy (&c->file_id);
   }
   return ok;
}

typedef struct {
   const uint8_t *data;
   size_t len, pos;
} mh_gfs_mem_t;

static int64_t
mh_gfs_mem_read (void *buf, size_t len, void *user_data)
{
   mh_gfs_mem_t *m = user_data;
   size_t n = m->len - m->pos < len ? m->len - m->pos : len;

   if (n) {
      memcpy (buf, m->data + m->pos, n);
   }
   m->pos += n;
   return (int64_t) n;
}

static void
mh_gfs_mem_restart (void *user_data)
{
   ((mh_gfs_mem_t *) user_data)->pos = 0;
}

bool
mongo_helper_gridfs_put (const mongo_helper_gridfs_opts_t *opts,
                         const char *filename,
                         const void *data,
                         size_t len,
                         const char *content_type,
                         const bson_t *metadata,
                         bson_value_t *file_id,
                         mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put";
   mh_gfs_ctx_t c = {0};
   mh_gfs_mem_t m = {data, len, 0};

   mh_error_clear (error);
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   if (!data && len > 0) {
      return mh_ops_bad (error, fn, "data is NULL but len is not 0");
   }
   c.kind = MH_GFS_PUT_READER;
   c.opts = opts;
   c.filename = filename;
   c.read = mh_gfs_mem_read;
   c.restart = mh_gfs_mem_restart;
   c.user_data = &m;
   return mh_gfs_put_common (fn, &c, content_type, metadata, file_id, error);
}

bool
mongo_helper_gridfs_put_reader (const mongo_helper_gridfs_opts_t *opts,
                                const char *filename,
                                mongo_helper_read_fn read,
                                void *user_data,
                                const char *content_type,
                                const bson_t *metadata,
                                bson_value_t *file_id,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put_reader";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   if (!read) {
      return mh_ops_bad (error, fn, "the read callback is NULL");
   }
   c.kind = MH_GFS_PUT_READER;
   c.opts = opts;
   c.filename = filename;
   c.read = read;
   c.user_data = user_data;
   return mh_gfs_put_common (fn, &c, content_type, metadata, file_id, error);
}

bool
mongo_helper_gridfs_put_stream (const mongo_helper_gridfs_opts_t *opts,
                                const char *filename,
                                mongoc_stream_t *source,
                                const char *content_type,
                                const bson_t *metadata,
                                bson_value_t *file_id,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put_stream";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   if (!source) {
      return mh_ops_bad (error, fn, "the source stream is NULL");
   }
   c.kind = MH_GFS_PUT_STREAM;
   c.opts = opts;
   c.filename = filename;
   c.stream = source;
   return mh_gfs_put_common (fn, &c, content_type, metadata, file_id, error);
}

bool
mongo_helper_gridfs_put_file (const mongo_helper_gridfs_opts_t *opts,
                              const char *filename,
                              const char *path,
                              const char *content_type,
                              const bson_t *metadata,
                              bson_value_t *file_id,
                              mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put_file";
   mongoc_stream_t *src;
   const char *base;
   bool ok;

   mh_error_clear (error);
   if (!path || !*path) {
      return mh_ops_bad (error, fn, "the path is NULL or empty");
   }
   base = strrchr (path, '/');
   base = base ? base + 1 : path;
   if (!filename) {
      filename = base;
   }
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   src = mongoc_stream_file_new_for_path (path, O_RDONLY, 0);
   if (!src) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      errno,
                      "%s: cannot open '%.300s' for reading (%s)",
                      fn,
                      path,
                      strerror (errno));
   }
   ok = mongo_helper_gridfs_put_stream (
      opts, filename, src, content_type, metadata, file_id, error);
   mongoc_stream_destroy (src);
   return ok;
}

static bool
mh_gfs_check_id (mongo_helper_error_t *error,
                 const char *fn,
                 const mongo_helper_gridfs_opts_t *opts,
                 const bson_value_t *file_id)
{
   if (!mh_gfs_check_opts (error, fn, opts)) {
      return false;
   }
   if (!file_id || file_id->value_type == BSON_TYPE_EOD) {
      return mh_ops_bad (error, fn, "file_id is NULL or empty");
   }
   return true;
}

static bool
mh_gfs_get_common (const char *fn,
                   const mongo_helper_gridfs_opts_t *opts,
                   const bson_value_t *file_id,
                   unsigned flags,
                   mongo_helper_write_fn write,
                   void (*restart) (void *),
                   void *user_data,
                   mongo_helper_error_t *error)
{
   mh_gfs_ctx_t c = {0};

   c.kind = MH_GFS_GET;
   c.opts = opts;
   c.file_id_in = file_id;
   c.write = write;
   c.restart = restart;
   c.user_data = user_data;
   return mh_gfs_run (fn, flags, &c, error);
}

bool
mongo_helper_gridfs_get_writer (const mongo_helper_gridfs_opts_t *opts,
                                const bson_value_t *file_id,
                                mongo_helper_write_fn write,
                                void *user_data,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get_writer";

   mh_error_clear (error);
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   if (!write) {
      return mh_ops_bad (error, fn, "the write callback is NULL");
   }
   return mh_gfs_get_common (
      fn, opts, file_id, MH_OPS_ONCE, write, NULL, user_data, error);
}

typedef struct {
   uint8_t *data;
   size_t len, cap;
} mh_gfs_buf_t;

static bool
mh_gfs_buf_write (const void *buf, size_t len, void *user_data)
{
   mh_gfs_buf_t *b = user_data;

   if (b->len + len + 1 > b->cap) {
      size_t cap = b->cap ? b->cap : 1024 * 1024;

      while (cap < b->len + len + 1) {
         cap *= 2;
      }
      b->data = bson_realloc (b->data, cap);
      b->cap = cap;
   }
   memcpy (b->data + b->len, buf, len);
   b->len += len;
   return true;
}

static void
mh_gfs_buf_restart (void *user_data)
{
   ((mh_gfs_buf_t *) user_data)->len = 0;
}

bool
mongo_helper_gridfs_get (const mongo_helper_gridfs_opts_t *opts,
                         const bson_value_t *file_id,
                         uint8_t **data,
                         size_t *len,
                         mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get";
   mh_gfs_buf_t b = {0};

   mh_error_clear (error);
   if (data) {
      *data = NULL;
   }
   if (len) {
      *len = 0;
   }
   if (!data || !len) {
      return mh_ops_bad (error, fn, "data and len must not be NULL");
   }
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   /* The buffer restarts if the path repeats the read: safe as MH_OP_READ. */
   if (!mh_gfs_get_common (fn,
                           opts,
                           file_id,
                           MH_OP_READ,
                           mh_gfs_buf_write,
                           mh_gfs_buf_restart,
                           &b,
                           error)) {
      bson_free (b.data);
      return false;
   }
   if (!b.data) {
      b.data = bson_malloc (1); /* an empty file is an empty string */
   }
   b.data[b.len] = '\0';
   *data = b.data;
   *len = b.len;
   return true;
}

static bool
mh_gfs_file_write (const void *buf, size_t len, void *user_data)
{
   return fwrite (buf, 1, len, (FILE *) user_data) == len;
}

static void
mh_gfs_file_restart (void *user_data)
{
   FILE *f = user_data;

   rewind (f);
   if (ftruncate (fileno (f), 0) != 0) {
      /* a later write error reports it */
   }
}

bool
mongo_helper_gridfs_get_file (const mongo_helper_gridfs_opts_t *opts,
                              const bson_value_t *file_id,
                              const char *path,
                              mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get_file";
   FILE *f;
   bool ok;

   mh_error_clear (error);
   if (!path || !*path) {
      return mh_ops_bad (error, fn, "the path is NULL or empty");
   }
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   f = fopen (path, "wb");
   if (!f) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      errno,
                      "%s: cannot open '%.300s' for writing (%s)",
                      fn,
                      path,
                      strerror (errno));
   }
   ok = mh_gfs_get_common (fn,
                           opts,
                           file_id,
                           MH_OP_READ,
                           mh_gfs_file_write,
                           mh_gfs_file_restart,
                           f,
                           error);
   if (fclose (f) != 0 && ok) {
      ok = mh_fail (error,
                    MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                    errno,
                    "%s: writing '%.300s' failed (%s)",
                    fn,
                    path,
                    strerror (errno));
   }
   if (!ok) {
      unlink (path); /* never leave a truncated copy behind */
   }
   return ok;
}

static bool
mh_gfs_stream_write (const void *buf, size_t len, void *user_data)
{
   return mongoc_stream_write ((mongoc_stream_t *) user_data, (void *) buf, len, -1) ==
          (ssize_t) len;
}

bool
mongo_helper_gridfs_get_stream (const mongo_helper_gridfs_opts_t *opts,
                                const bson_value_t *file_id,
                                mongoc_stream_t *destination,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get_stream";

   mh_error_clear (error);
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   if (!destination) {
      return mh_ops_bad (error, fn, "the destination stream is NULL");
   }
   return mh_gfs_get_common (fn,
                             opts,
                             file_id,
                             MH_OPS_ONCE,
                             mh_gfs_stream_write,
                             NULL,
                             destination,
                             error);
}

static void
mh_gfs_find_restart (void *user_data)
{
   mh_gfs_ctx_t *c = user_data;

   bson_reinit (c->files);
   c->count = 0;
}

bool
mongo_helper_gridfs_find (const mongo_helper_gridfs_opts_t *opts,
                          const char *filename,
                          bson_t *files,
                          size_t *count,
                          mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_find";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (count) {
      *count = 0;
   }
   if (!files) {
      return mh_ops_bad (error, fn, "files is NULL");
   }
   bson_init (files);
   if (!mh_gfs_check_opts (error, fn, opts)) {
      return false;
   }
   if (filename && !*filename) {
      return mh_ops_bad (
         error, fn, "the filename is empty: pass NULL to list every file");
   }
   c.kind = MH_GFS_FIND;
   c.opts = opts;
   c.filename = filename;
   c.files = files;
   c.restart = mh_gfs_find_restart;
   c.user_data = &c;
   if (!mh_gfs_run (fn, MH_OP_READ, &c, error)) {
      bson_reinit (files);
      return false;
   }
   if (count) {
      *count = c.count;
   }
   return true;
}

bool
mongo_helper_gridfs_delete (const mongo_helper_gridfs_opts_t *opts,
                            const bson_value_t *file_id,
                            mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_delete";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   c.kind = MH_GFS_DELETE;
   c.opts = opts;
   c.file_id_in = file_id;
   /* Deleting twice ends in NOT_FOUND, not in damage: safe to repeat. */
   return mh_gfs_run (fn, MH_OP_WRITE | MH_OP_IDEMPOTENT, &c, error);
}

/* ---- Change streams ---- */

typedef struct {
   const char *collection;
   const mongo_helper_watch_opts_t *opts;
   mongo_helper_change_fn fn;
   void *user_data;
   bson_t *token; /* always a valid document */
} mh_watch_ctx_t;

static void
mh_watch_keep_token (mh_watch_ctx_t *c, mongoc_change_stream_t *cs)
{
   const bson_t *t = mongoc_change_stream_get_resume_token (cs);

   if (t && !bson_empty (t)) {
      bson_reinit (c->token);
      bson_concat (c->token, t);
   }
}

static bool
mh_watch_op (mongoc_client_t *client,
             mongoc_database_t *db,
             void *ctx,
             bson_error_t *berr)
{
   mh_watch_ctx_t *c = ctx;
   const mongo_helper_watch_opts_t *o = c->opts;
   mongoc_database_t *dbh;
   mongoc_collection_t *coll = NULL;
   mongoc_change_stream_t *cs;
   bson_t wopts = BSON_INITIALIZER;
   bson_t empty = BSON_INITIALIZER;
   const bson_t *ev, *edoc;
   int64_t deadline = 0;
   int32_t await_ms = 1000;
   bool owned, ok = true;

   if (o->full_document_update_lookup) {
      BSON_APPEND_UTF8 (&wopts, "fullDocument", "updateLookup");
   }
   if (o->resume_after) {
      BSON_APPEND_DOCUMENT (&wopts, "resumeAfter", o->resume_after);
   }
   if (o->start_after) {
      BSON_APPEND_DOCUMENT (&wopts, "startAfter", o->start_after);
   }
   if (o->max_await_time_ms > 0) {
      await_ms = o->max_await_time_ms;
   }
   if (o->timeout_ms > 0) {
      deadline = bson_get_monotonic_time () + o->timeout_ms * 1000;
      if (o->timeout_ms < await_ms) {
         await_ms = (int32_t) o->timeout_ms; /* never wait past the end */
      }
   }
   BSON_APPEND_INT64 (&wopts, "maxAwaitTimeMS", await_ms);
   if (o->batch_size > 0) {
      BSON_APPEND_INT32 (&wopts, "batchSize", o->batch_size);
   }

   dbh = mh_ops_database (client, db, o->database, &owned);
   if (c->collection) {
      coll = mongoc_database_get_collection (dbh, c->collection);
      cs = mongoc_collection_watch (
         coll, o->pipeline ? o->pipeline : &empty, &wopts);
   } else {
      cs = mongoc_database_watch (dbh, o->pipeline ? o->pipeline : &empty, &wopts);
   }
   for (;;) {
      if (mongoc_change_stream_next (cs, &ev)) {
         mh_watch_keep_token (c, cs);
         if (!c->fn (ev, c->user_data)) {
            break;
         }
      } else {
         /* Also the initial aggregate's error (e.g. 40573 standalone). */
         if (mongoc_change_stream_error_document (cs, berr, &edoc)) {
            ok = false;
            break;
         }
         mh_watch_keep_token (c, cs); /* postBatchResumeToken moves on */
      }
      if (deadline && bson_get_monotonic_time () >= deadline) {
         break;
      }
   }
   mongoc_change_stream_destroy (cs);
   mongoc_collection_destroy (coll);
   mh_ops_database_done (dbh, owned);
   bson_destroy (&wopts);
   bson_destroy (&empty);
   return ok;
}

bool
mongo_helper_watch (const char *collection,
                    const mongo_helper_watch_opts_t *opts,
                    mongo_helper_change_fn fn,
                    void *user_data,
                    bson_t *resume_token,
                    mongo_helper_error_t *error)
{
   static const char fn_name[] = "mongo_helper_watch";
   mongo_helper_watch_opts_t defaults = {0};
   mh_watch_ctx_t c;
   bson_t scratch;
   char what[320];
   bool ok;

   mh_error_clear (error);
   if (resume_token) {
      bson_init (resume_token);
   }
   if (!opts) {
      opts = &defaults;
   }
   if (!fn) {
      return mh_ops_bad (error, fn_name, "the event callback is NULL");
   }
   if (collection && !mh_check_coll_name (fn_name, collection, error)) {
      return false;
   }
   if (!mh_check_db_name (fn_name, opts->database, error)) {
      return false;
   }
   if (opts->resume_after && opts->start_after) {
      return mh_ops_bad (error,
                         fn_name,
                         "resume_after and start_after are exclusive: "
                         "pass one token");
   }
   if ((opts->resume_after && bson_empty (opts->resume_after)) ||
       (opts->start_after && bson_empty (opts->start_after))) {
      return mh_ops_bad (error, fn_name, "the resume token is empty");
   }
   bson_init (&scratch);
   c.collection = collection;
   c.opts = opts;
   c.fn = fn;
   c.user_data = user_data;
   c.token = resume_token ? resume_token : &scratch;
   bson_snprintf (what,
                  sizeof what,
                  "change stream on %s%.200s",
                  collection ? "collection " : "the database",
                  collection ? collection : "");
   ok = mh_run (what, MH_OPS_ONCE, mh_watch_op, &c, error);
   bson_destroy (&scratch);
   return ok;
}

/* ---- Concurrent operations ---- */

typedef struct {
   const mongo_helper_op_t *op;
   bson_t *result;
} mh_one_ctx_t;

static const char *
mh_op_type_name (mongo_helper_op_type_t t)
{
   static const char *names[] = {"count",
                                 "find one",
                                 "distinct",
                                 "insert one",
                                 "update one",
                                 "update many",
                                 "delete one",
                                 "delete many",
                                 "aggregate",
                                 "command"};

   return (unsigned) t < sizeof names / sizeof *names ? names[t] : "unknown";
}

static bool
mh_one_op (mongoc_client_t *client,
           mongoc_database_t *db,
           void *ctx,
           bson_error_t *berr)
{
   mh_one_ctx_t *c = ctx;
   const mongo_helper_op_t *op = c->op;
   bson_t empty = BSON_INITIALIZER;
   const bson_t *filter = op->filter ? op->filter : &empty;
   mongoc_database_t *dbh;
   mongoc_collection_t *coll = NULL;
   mongoc_cursor_t *cur;
   const bson_t *doc;
   bson_t reply, opts, child;
   bool owned, ok = false;

   bson_reinit (c->result);
   dbh = mh_ops_database (client, db, op->database, &owned);
   if (op->type != MONGO_HELPER_OP_COMMAND) {
      coll = mongoc_database_get_collection (dbh, op->collection);
   }
   switch (op->type) {
   case MONGO_HELPER_OP_COUNT: {
      int64_t n = mongoc_collection_count_documents (
         coll, filter, NULL, NULL, NULL, berr);

      ok = n >= 0;
      if (ok) {
         BSON_APPEND_INT64 (c->result, "count", n);
      }
      break;
   }
   case MONGO_HELPER_OP_FIND_ONE:
      bson_init (&opts);
      BSON_APPEND_INT64 (&opts, "limit", 1);
      cur = mongoc_collection_find_with_opts (coll, filter, &opts, NULL);
      if (mongoc_cursor_next (cur, &doc)) {
         BSON_APPEND_DOCUMENT (c->result, "document", doc);
      }
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      bson_destroy (&opts);
      break;
   case MONGO_HELPER_OP_DISTINCT: {
      bson_t *cmd = BCON_NEW ("distinct",
                              BCON_UTF8 (op->collection),
                              "key",
                              BCON_UTF8 (op->field),
                              "query",
                              BCON_DOCUMENT (filter));
      bson_iter_t it;

      ok = mongoc_collection_read_command_with_opts (
         coll, cmd, NULL, NULL, &reply, berr);
      if (ok && bson_iter_init_find (&it, &reply, "values") &&
          BSON_ITER_HOLDS_ARRAY (&it)) {
         bson_append_iter (c->result, "values", -1, &it);
      } else if (ok) {
         BSON_APPEND_ARRAY_BEGIN (c->result, "values", &child);
         bson_append_array_end (c->result, &child);
      }
      bson_destroy (&reply);
      bson_destroy (cmd);
      break;
   }
   case MONGO_HELPER_OP_INSERT_ONE: {
      bson_t with_id;
      bson_iter_t it;

      /* Generate the _id here, so it can be reported. */
      bson_init (&with_id);
      if (!bson_iter_init_find (&it, op->document, "_id")) {
         bson_oid_t oid;

         bson_oid_init (&oid, NULL);
         BSON_APPEND_OID (&with_id, "_id", &oid);
      }
      bson_concat (&with_id, op->document);
      ok = mongoc_collection_insert_one (coll, &with_id, NULL, &reply, berr);
      if (ok && bson_iter_init_find (&it, &with_id, "_id")) {
         bson_append_iter (c->result, "insertedId", -1, &it);
         BSON_APPEND_INT32 (c->result, "insertedCount", 1);
      }
      bson_destroy (&reply);
      bson_destroy (&with_id);
      break;
   }
   case MONGO_HELPER_OP_UPDATE_ONE:
   case MONGO_HELPER_OP_UPDATE_MANY:
      bson_init (&opts);
      if (op->upsert) {
         BSON_APPEND_BOOL (&opts, "upsert", true);
      }
      ok = (op->type == MONGO_HELPER_OP_UPDATE_ONE
               ? mongoc_collection_update_one
               : mongoc_collection_update_many) (
         coll, filter, op->document, &opts, &reply, berr);
      if (ok) {
         bson_concat (c->result, &reply);
      }
      bson_destroy (&reply);
      bson_destroy (&opts);
      break;
   case MONGO_HELPER_OP_DELETE_ONE:
   case MONGO_HELPER_OP_DELETE_MANY:
      ok = (op->type == MONGO_HELPER_OP_DELETE_ONE
               ? mongoc_collection_delete_one
               : mongoc_collection_delete_many) (
         coll, filter, NULL, &reply, berr);
      if (ok) {
         bson_concat (c->result, &reply);
      }
      bson_destroy (&reply);
      break;
   case MONGO_HELPER_OP_AGGREGATE: {
      uint32_t i = 0;
      char key[16];
      const char *k;

      cur = mongoc_collection_aggregate (
         coll, MONGOC_QUERY_NONE, op->pipeline, NULL, NULL);
      BSON_APPEND_ARRAY_BEGIN (c->result, "documents", &child);
      while (mongoc_cursor_next (cur, &doc)) {
         bson_uint32_to_string (i++, &k, key, sizeof key);
         BSON_APPEND_DOCUMENT (&child, k, doc);
      }
      bson_append_array_end (c->result, &child);
      ok = !mongoc_cursor_error (cur, berr);
      mongoc_cursor_destroy (cur);
      break;
   }
   case MONGO_HELPER_OP_COMMAND:
      ok = mongoc_database_command_simple (dbh, op->document, NULL, &reply, berr);
      if (ok) {
         bson_concat (c->result, &reply);
      }
      bson_destroy (&reply);
      break;
   }
   if (!ok) {
      bson_reinit (c->result);
   }
   mongoc_collection_destroy (coll);
   mh_ops_database_done (dbh, owned);
   bson_destroy (&empty);
   return ok;
}

#define MH_OPS_MAX_DOC (16 * 1024 * 1024)

/* What an operation needs, checked before it runs. */
static bool
mh_one_check (const mongo_helper_op_t *op, size_t i, mongo_helper_error_t *error)
{
   char fn[64];

   bson_snprintf (fn, sizeof fn, "operation %zu (%s)", i, mh_op_type_name (op->type));
   if ((unsigned) op->type > MONGO_HELPER_OP_COMMAND) {
      return mh_ops_bad (error, fn, "unknown operation type");
   }
   if (!mh_check_db_name (fn, op->database, error)) {
      return false;
   }
   if (op->type != MONGO_HELPER_OP_COMMAND &&
       !mh_check_coll_name (fn, op->collection, error)) {
      return false;
   }
   switch (op->type) {
   case MONGO_HELPER_OP_DISTINCT:
      if (!op->field || !*op->field) {
         return mh_ops_bad (error, fn, "field is NULL or empty");
      }
      break;
   case MONGO_HELPER_OP_INSERT_ONE:
   case MONGO_HELPER_OP_UPDATE_ONE:
   case MONGO_HELPER_OP_UPDATE_MANY:
      if (!op->document || bson_empty (op->document)) {
         return mh_ops_bad (error, fn, "document is NULL or empty");
      }
      /* The server's limit, checked here so the message says what to do
       * instead of the driver's generic "document too large". */
      if (op->document->len > MH_OPS_MAX_DOC) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "%s: the document is %u bytes, over MongoDB's 16 MiB "
                         "limit: store large data with GridFS",
                         fn,
                         (unsigned) op->document->len);
      }
      break;
   case MONGO_HELPER_OP_COMMAND:
      if (!op->document || bson_empty (op->document)) {
         return mh_ops_bad (error, fn, "document (the command) is NULL or empty");
      }
      break;
   case MONGO_HELPER_OP_AGGREGATE:
      if (!op->pipeline) {
         return mh_ops_bad (error, fn, "pipeline is NULL");
      }
      break;
   default:
      break;
   }
   return true;
}

static unsigned
mh_one_flags (mongo_helper_op_type_t t)
{
   switch (t) {
   case MONGO_HELPER_OP_COUNT:
   case MONGO_HELPER_OP_FIND_ONE:
   case MONGO_HELPER_OP_DISTINCT:
   case MONGO_HELPER_OP_AGGREGATE:
      return MH_OP_READ;
   default:
      return MH_OP_WRITE;
   }
}

typedef struct {
   const mongo_helper_op_t *ops;
   mongo_helper_op_result_t *results;
   size_t n;
   atomic_size_t next;
   atomic_int active;
} mh_conc_t;

static void *
mh_conc_worker (void *arg)
{
   mh_conc_t *w = arg;
   size_t i;

   while ((i = atomic_fetch_add (&w->next, 1)) < w->n) {
      const mongo_helper_op_t *op = &w->ops[i];
      mongo_helper_op_result_t *r = &w->results[i];
      mh_one_ctx_t c = {op, &r->result};
      char what[300];

      r->concurrent = atomic_fetch_add (&w->active, 1) + 1;
      if (mh_one_check (op, i, &r->error)) {
         bson_snprintf (what,
                        sizeof what,
                        "operation %zu (%s on %.200s)",
                        i,
                        mh_op_type_name (op->type),
                        op->collection ? op->collection : "the database");
         mh_run (what, mh_one_flags (op->type), mh_one_op, &c, &r->error);
      }
      atomic_fetch_sub (&w->active, 1);
   }
   /* The worker's pooled client goes back now, not at some later exit. */
   mongo_helper_thread_release ();
   return NULL;
}

bool
mongo_helper_run_concurrent (const mongo_helper_op_t *ops,
                             size_t n_ops,
                             size_t max_concurrent,
                             mongo_helper_op_result_t *results,
                             mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_run_concurrent";
   mh_conc_t w;
   pthread_t *threads;
   size_t n_threads, started = 0, failed = 0, first = 0;

   mh_error_clear (error);
   if (results) {
      for (size_t i = 0; i < n_ops; i++) {
         bson_init (&results[i].result);
         mh_error_clear (&results[i].error);
         results[i].concurrent = 0;
      }
   }
   if (!ops || !results) {
      return mh_ops_bad (error, fn, "ops or results is NULL");
   }
   if (n_ops == 0) {
      return mh_ops_bad (error, fn, "the list of operations is empty");
   }
   if (max_concurrent == 0) {
      return mh_ops_bad (
         error, fn, "max_concurrent is 0: allow at least one operation at once");
   }
   w.ops = ops;
   w.results = results;
   w.n = n_ops;
   atomic_init (&w.next, 0);
   atomic_init (&w.active, 0);
   n_threads = max_concurrent < n_ops ? max_concurrent : n_ops;
   threads = bson_malloc (n_threads * sizeof *threads);
   for (size_t t = 0; t < n_threads; t++) {
      if (pthread_create (&threads[t], NULL, mh_conc_worker, &w) != 0) {
         break; /* fewer workers still finish the list */
      }
      started++;
   }
   if (started == 0) {
      mh_conc_worker (&w); /* no thread at all: run them here, one by one */
   }
   for (size_t t = 0; t < started; t++) {
      pthread_join (threads[t], NULL);
   }
   bson_free (threads);
   for (size_t i = 0; i < n_ops; i++) {
      if (results[i].error.category != MONGO_HELPER_ERROR_NONE) {
         if (failed++ == 0) {
            first = i;
         }
      }
   }
   if (failed) {
      return mh_fail (error,
                      results[first].error.category,
                      results[first].error.code,
                      "%zu of %zu operations failed (each result holds its "
                      "own error); the first: %s",
                      failed,
                      n_ops,
                      results[first].error.message);
   }
   return true;
}

void
mongo_helper_op_results_cleanup (mongo_helper_op_result_t *results,
                                 size_t n_results)
{
   if (!results) {
      return;
   }
   for (size_t i = 0; i < n_results; i++) {
      bson_destroy (&results[i].result);
      bson_init (&results[i].result); /* a second cleanup stays harmless */
   }
}

/* ---- Statistics and metadata ---- */

typedef struct {
   const char *database;
   const char *collection;
   bson_t *reply;  /* always initialised */
   char **names;   /* collection names */
   bool fell_back; /* collStats command used */
} mh_stats_ctx_t;

static bool
mh_dbstats_op (mongoc_client_t *client,
               mongoc_database_t *db,
               void *ctx,
               bson_error_t *berr)
{
   mh_stats_ctx_t *c = ctx;
   bson_t *cmd = BCON_NEW ("dbStats", BCON_INT32 (1));
   mongoc_database_t *dbh;
   bool owned, ok;

   dbh = mh_ops_database (client, db, c->database, &owned);
   bson_destroy (c->reply);
   ok = mongoc_database_command_simple (dbh, cmd, NULL, c->reply, berr);
   mh_ops_database_done (dbh, owned);
   bson_destroy (cmd);
   return ok;
}

bool
mongo_helper_db_stats (const char *database,
                       mongo_helper_db_stats_t *stats,
                       bson_t *reply,
                       mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_db_stats";
   mh_stats_ctx_t c = {0};
   bson_t scratch;
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   if (stats) {
      memset (stats, 0, sizeof *stats);
   }
   if (!mh_check_db_name (fn, database, error)) {
      return false;
   }
   bson_init (&scratch);
   c.database = database;
   c.reply = reply ? reply : &scratch;
   ok = mh_run ("dbStats", MH_OP_READ, mh_dbstats_op, &c, error);
   if (ok && stats) {
      stats->collections = mh_ops_int64 (c.reply, "collections");
      stats->objects = mh_ops_int64 (c.reply, "objects");
      stats->data_size = mh_ops_int64 (c.reply, "dataSize");
      stats->storage_size = mh_ops_int64 (c.reply, "storageSize");
      stats->indexes = mh_ops_int64 (c.reply, "indexes");
      stats->index_size = mh_ops_int64 (c.reply, "indexSize");
   }
   if (!ok) {
      bson_reinit (c.reply);
   }
   bson_destroy (&scratch);
   return ok;
}

static bool
mh_collstats_op (mongoc_client_t *client,
                 mongoc_database_t *db,
                 void *ctx,
                 bson_error_t *berr)
{
   mh_stats_ctx_t *c = ctx;
   bson_t *pipeline = BCON_NEW ("pipeline",
                                "[",
                                "{",
                                "$collStats",
                                "{",
                                "storageStats",
                                "{",
                                "}",
                                "}",
                                "}",
                                "]");
   mongoc_database_t *dbh;
   mongoc_collection_t *coll;
   mongoc_cursor_t *cur;
   const bson_t *doc;
   bson_iter_t it, sub;
   bool owned, ok = false, got = false;

   bson_reinit (c->reply);
   c->fell_back = false;
   dbh = mh_ops_database (client, db, c->database, &owned);
   coll = mongoc_database_get_collection (dbh, c->collection);
   cur = mongoc_collection_aggregate (coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
   if (mongoc_cursor_next (cur, &doc)) {
      got = true;
      if (bson_iter_init_find (&it, doc, "ns") && BSON_ITER_HOLDS_UTF8 (&it)) {
         bson_append_iter (c->reply, "ns", -1, &it);
      }
      if (bson_iter_init_find (&it, doc, "storageStats") &&
          BSON_ITER_HOLDS_DOCUMENT (&it) && bson_iter_recurse (&it, &sub)) {
         while (bson_iter_next (&sub)) {
            if (strcmp (bson_iter_key (&sub), "ns") != 0) {
               bson_append_iter (c->reply, NULL, 0, &sub);
            }
         }
      }
   }
   ok = !mongoc_cursor_error (cur, berr);
   mongoc_cursor_destroy (cur);
   if (!ok && berr->domain == MONGOC_ERROR_SERVER && berr->code == 40324) {
      /* A server without the stage: the old command has the same fields. */
      bson_t *cmd = BCON_NEW ("collStats", BCON_UTF8 (c->collection));

      bson_destroy (c->reply);
      ok = mongoc_database_command_simple (dbh, cmd, NULL, c->reply, berr);
      c->fell_back = ok;
      bson_destroy (cmd);
   } else if (ok && !got) {
      /* Older servers answer nothing for a missing collection. */
      bson_set_error (berr,
                      MONGOC_ERROR_SERVER,
                      26,
                      "collection '%s' not found",
                      c->collection);
      ok = false;
   }
   mongoc_collection_destroy (coll);
   mh_ops_database_done (dbh, owned);
   bson_destroy (pipeline);
   return ok;
}

bool
mongo_helper_collection_stats (const char *database,
                               const char *collection,
                               mongo_helper_coll_stats_t *stats,
                               bson_t *reply,
                               mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_collection_stats";
   mh_stats_ctx_t c = {0};
   bson_t scratch;
   char what[300];
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   if (stats) {
      memset (stats, 0, sizeof *stats);
   }
   if (!mh_check_db_name (fn, database, error) ||
       !mh_check_coll_name (fn, collection, error)) {
      return false;
   }
   bson_init (&scratch);
   c.database = database;
   c.collection = collection;
   c.reply = reply ? reply : &scratch;
   bson_snprintf (what, sizeof what, "collection stats of '%.200s'", collection);
   ok = mh_run (what, MH_OP_READ, mh_collstats_op, &c, error);
   if (ok && stats) {
      stats->count = mh_ops_int64 (c.reply, "count");
      stats->size = mh_ops_int64 (c.reply, "size");
      stats->avg_obj_size = mh_ops_int64 (c.reply, "avgObjSize");
      stats->storage_size = mh_ops_int64 (c.reply, "storageSize");
      stats->nindexes = mh_ops_int64 (c.reply, "nindexes");
      stats->total_index_size = mh_ops_int64 (c.reply, "totalIndexSize");
   }
   if (!ok) {
      bson_reinit (c.reply);
      if (error && error->category == MONGO_HELPER_ERROR_SERVER &&
          error->code == 26) {
         mh_ops_recategorize (error, MONGO_HELPER_ERROR_NOT_FOUND);
      }
   }
   bson_destroy (&scratch);
   return ok;
}

bool
mongo_helper_index_sizes (const char *database,
                          const char *collection,
                          bson_t *sizes,
                          mongo_helper_error_t *error)
{
   bson_t reply;
   bson_iter_t it, sub;

   mh_error_clear (error);
   if (!sizes) {
      return mh_ops_bad (error, "mongo_helper_index_sizes", "sizes is NULL");
   }
   bson_init (sizes);
   if (!mongo_helper_collection_stats (database, collection, NULL, &reply, error)) {
      bson_destroy (&reply);
      return false;
   }
   if (bson_iter_init_find (&it, &reply, "indexSizes") &&
       BSON_ITER_HOLDS_DOCUMENT (&it) && bson_iter_recurse (&it, &sub)) {
      while (bson_iter_next (&sub)) {
         if (BSON_ITER_HOLDS_NUMBER (&sub)) {
            BSON_APPEND_INT64 (sizes, bson_iter_key (&sub), bson_iter_as_int64 (&sub));
         }
      }
   }
   bson_destroy (&reply);
   return true;
}

static bool
mh_names_op (mongoc_client_t *client,
             mongoc_database_t *db,
             void *ctx,
             bson_error_t *berr)
{
   mh_stats_ctx_t *c = ctx;
   mongoc_database_t *dbh;
   bool owned;

   bson_strfreev (c->names);
   dbh = mh_ops_database (client, db, c->database, &owned);
   c->names = mongoc_database_get_collection_names_with_opts (dbh, NULL, berr);
   mh_ops_database_done (dbh, owned);
   return c->names != NULL;
}

char **
mongo_helper_collection_names (const char *database, mongo_helper_error_t *error)
{
   mh_stats_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_check_db_name ("mongo_helper_collection_names", database, error)) {
      return NULL;
   }
   c.database = database;
   if (!mh_run ("listCollections", MH_OP_READ, mh_names_op, &c, error)) {
      bson_strfreev (c.names);
      return NULL;
   }
   return c.names;
}

static bool
mh_server_status_op (mongoc_client_t *client,
                     mongoc_database_t *db,
                     void *ctx,
                     bson_error_t *berr)
{
   mh_stats_ctx_t *c = ctx;
   bson_t *cmd = BCON_NEW ("serverStatus", BCON_INT32 (1));
   bool ok;

   (void) db;
   bson_destroy (c->reply);
   ok = mongoc_client_command_simple (client, "admin", cmd, NULL, c->reply, berr);
   bson_destroy (cmd);
   return ok;
}

bool
mongo_helper_server_status (mongo_helper_server_status_t *status,
                            bson_t *reply,
                            mongo_helper_error_t *error)
{
   mh_stats_ctx_t c = {0};
   bson_t scratch;
   bson_iter_t it;
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   if (status) {
      memset (status, 0, sizeof *status);
   }
   bson_init (&scratch);
   c.reply = reply ? reply : &scratch;
   ok = mh_run ("serverStatus", MH_OP_READ, mh_server_status_op, &c, error);
   if (ok && status) {
      if (bson_iter_init_find (&it, c.reply, "version") &&
          BSON_ITER_HOLDS_UTF8 (&it)) {
         bson_strncpy (status->version, bson_iter_utf8 (&it, NULL), sizeof status->version);
      }
      if (bson_iter_init_find (&it, c.reply, "host") &&
          BSON_ITER_HOLDS_UTF8 (&it)) {
         bson_strncpy (status->host, bson_iter_utf8 (&it, NULL), sizeof status->host);
      }
      status->uptime_s = mh_ops_int64 (c.reply, "uptime");
      status->connections_current = mh_ops_int64 (c.reply, "connections.current");
      status->connections_available =
         mh_ops_int64 (c.reply, "connections.available");
      status->connections_total_created =
         mh_ops_int64 (c.reply, "connections.totalCreated");
   }
   if (!ok) {
      bson_reinit (c.reply);
   }
   bson_destroy (&scratch);
   return ok;
}


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
   if (!mh_check_coll_name ("collection option", name, error)) {
      return false;
   }
   if (strncmp (name, "system.", 7) == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "collection option: '%.64s' starts with 'system.', "
                      "which MongoDB reserves: choose another name",
                      name);
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
