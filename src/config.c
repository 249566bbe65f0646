/*
 * config.c — resolves the URI, the default database and every setting from
 * their sources (layer 3).
 */
#include "mh_private.h"

#include <iniparser/iniparser.h>

#define MH_DEFAULT_CONFIG_PATH "conf/mongo_helper.ini"
#define MH_DEFAULT_URI "mongodb://localhost:27017/"

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

static pthread_once_t mh_config_once = PTHREAD_ONCE_INIT;

static void
mh_config_init (void)
{
   mh_process_init ();
   iniparser_set_error_callback (mh_ini_error);
}

/* Every setting, in one table: where it is read (its INI key in [db],
 * which is also its name; its environment variable; its URI option), what
 * it holds, its default and range, and where the resolved value goes.
 * Precedence: the URI, then the environment, then the INI key, then
 * connection_options, then the default; a library setting (no URI option)
 * reads only the environment, the INI key and the default. */
typedef enum { MH_INT, MH_BOOL, MH_TEXT } mh_type_t;

typedef enum {
   MH_DRIVER, /* the default is libmongoc's own: nothing is set */
   MH_OURS    /* the library sets its default */
} mh_default_t;

typedef enum {
   MH_TO_URI,  /* the URI option, for libmongoc */
   MH_TO_RETRY /* an int32_t of mongo_helper_retry_policy_t */
} mh_dest_t;

typedef struct {
   const char *key;
   const char *env;
   const char *option; /* NULL: a library setting */
   mh_type_t type;
   int32_t min, max; /* MH_INT */
   int32_t def;      /* MH_INT, MH_BOOL (0/1); none for MH_TEXT */
   mh_default_t def_by;
   mh_dest_t dest;
   size_t field;    /* MH_TO_RETRY: offsetof in mongo_helper_retry_policy_t */
   const char *why; /* said when a value is out of range */
} mh_setting_t;

/* clang-format off */
#define MH_URI_INT(key, env, opt, min, def, by) \
   {key, env, opt, MH_INT, min, INT32_MAX, def, by, MH_TO_URI, 0, NULL}
#define MH_URI_BOOL(key, env, opt, def) \
   {key, env, opt, MH_BOOL, 0, 1, def, MH_DRIVER, MH_TO_URI, 0, NULL}
#define MH_RETRY(key, env, min, max, def, f) \
   {key, env, NULL, MH_INT, min, max, def, MH_OURS, MH_TO_RETRY, \
    offsetof (mongo_helper_retry_policy_t, f), NULL}

static const mh_setting_t mh_settings[] = {
   /* libmongoc 1.23's defaults are shown for information only */
   MH_URI_INT ("max_pool_size", "MONGO_MAX_POOL_SIZE", MONGOC_URI_MAXPOOLSIZE, 0, 100, MH_DRIVER),
   MH_URI_INT ("min_pool_size", "MONGO_MIN_POOL_SIZE", MONGOC_URI_MINPOOLSIZE, 0, 0, MH_DRIVER),
   MH_URI_INT ("max_idle_time_ms", "MONGO_MAX_IDLE_TIME_MS", MONGOC_URI_MAXIDLETIMEMS, 0, 0, MH_DRIVER),
   MH_URI_INT ("connect_timeout_ms", "MONGO_CONNECT_TIMEOUT_MS", MONGOC_URI_CONNECTTIMEOUTMS,
               0, MONGOC_DEFAULT_CONNECTTIMEOUTMS, MH_DRIVER),
   MH_URI_INT ("server_selection_timeout_ms", "MONGO_SERVER_SELECTION_TIMEOUT_MS",
               MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0, 30000, MH_DRIVER),
   MH_URI_INT ("socket_timeout_ms", "MONGO_SOCKET_TIMEOUT_MS", MONGOC_URI_SOCKETTIMEOUTMS,
               0, MONGOC_DEFAULT_SOCKETTIMEOUTMS, MH_DRIVER),
   {"wait_queue_timeout_ms", "MONGO_WAIT_QUEUE_TIMEOUT_MS", MONGOC_URI_WAITQUEUETIMEOUTMS, MH_INT,
    1, INT32_MAX, MONGO_HELPER_DEFAULT_POOL_WAIT_MS, MH_OURS, MH_TO_URI, 0,
    "0 would let callers wait forever for a pooled connection"},
   MH_URI_BOOL ("retry_writes", "MONGO_RETRY_WRITES", MONGOC_URI_RETRYWRITES, 1),
   MH_URI_BOOL ("retry_reads", "MONGO_RETRY_READS", MONGOC_URI_RETRYREADS, 1),
   {"app_name", "MONGO_APP_NAME", MONGOC_URI_APPNAME, MH_TEXT, 0, 0, 0, MH_DRIVER, MH_TO_URI, 0, NULL},
   MH_RETRY ("retry_attempts", "MONGO_RETRY_ATTEMPTS", 1, 10,
             MONGO_HELPER_DEFAULT_RETRY_ATTEMPTS, attempts),
   MH_RETRY ("retry_base_ms", "MONGO_RETRY_BASE_MS", 0, 60000,
             MONGO_HELPER_DEFAULT_RETRY_BASE_MS, base_ms),
   MH_RETRY ("retry_max_ms", "MONGO_RETRY_MAX_MS", 0, 600000,
             MONGO_HELPER_DEFAULT_RETRY_MAX_MS, max_ms),
   MH_RETRY ("circuit_failure_threshold", "MONGO_CIRCUIT_FAILURE_THRESHOLD", 0, 1000000,
             MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD, circuit_threshold),
   MH_RETRY ("circuit_cooldown_ms", "MONGO_CIRCUIT_COOLDOWN_MS", 1, 3600000,
             MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS, circuit_cooldown_ms),
};
/* clang-format on */

/* A variable that is set counts as set even when empty: an empty value is
 * reported instead of silently falling through to the next source. */
static const char *
mh_env (const char *name)
{
   return getenv (name);
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
   if (port && (!mh_parse_int32 (port, &port_num) || port_num < 1 || port_num > 65535)) {
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
         const char *colon =
            memchr (bracket ? bracket : h, ':', len - (size_t) ((bracket ? bracket : h) - h));
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

/* Checks one value of `s` given by `label` and converts it (MH_INT into
 * *n, MH_BOOL into *n as 0/1).  The messages name the source. */
static bool
mh_setting_check (const mh_setting_t *s,
                  const char *v,
                  const char *label,
                  int32_t *n,
                  mongo_helper_error_t *error)
{
   bool b;

   if (!*v) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s is empty: give it a value for %s or remove it",
                      label,
                      s->option ? s->option : s->key);
   }
   switch (s->type) {
   case MH_INT:
      if (!mh_parse_int32 (v, n) || *n < s->min || *n > s->max) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s='%s' is not a whole number from %d to %d%s%s",
                         label,
                         v,
                         (int) s->min,
                         (int) s->max,
                         s->why ? ": " : "",
                         s->why ? s->why : "");
      }
      return true;
   case MH_BOOL:
      if (!mh_parse_bool (v, &b)) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s='%s' is not a boolean: use true or false",
                         label,
                         v);
      }
      *n = b;
      return true;
   case MH_TEXT:
   default:
      return true;
   }
}

/* Sets a checked value of a URI setting. */
static bool
mh_uri_set (mongoc_uri_t *muri, const mh_setting_t *s, const char *v, int32_t n)
{
   switch (s->type) {
   case MH_BOOL:
      return mongoc_uri_set_option_as_bool (muri, s->option, n != 0);
   case MH_TEXT:
      return mongoc_uri_set_appname (muri, v);
   case MH_INT:
   default:
      return mongoc_uri_set_option_as_int32 (muri, s->option, n);
   }
}

/* The [db] connection_options "k=v&k=v", split once; each table setting
 * takes its own entry, the rest are applied as they are. */
typedef struct {
   char *key, *value;
   bool taken;
} mh_conn_opt_t;

static bool
mh_conn_opts_split (const char *text,
                    const char *label,
                    char **buf,
                    mh_conn_opt_t **opts,
                    size_t *n,
                    mongo_helper_error_t *error)
{
   char *save = NULL;
   size_t cap = 0;

   *buf = bson_strdup (text);
   *opts = NULL;
   *n = 0;
   for (char *kv = strtok_r (*buf, "&", &save); kv; kv = strtok_r (NULL, "&", &save)) {
      char *eq = strchr (kv, '=');

      if (!eq || eq == kv) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s: '%s' is not of the form option=value",
                         label,
                         kv);
      }
      *eq = '\0';
      if (*n == cap) {
         cap = cap ? 2 * cap : 8;
         *opts = bson_realloc (*opts, cap * sizeof **opts);
      }
      (*opts)[(*n)++] = (mh_conn_opt_t){kv, eq + 1, false};
   }
   return true;
}

/* The first untaken connection_options entry for `option`, taken. */
static const char *
mh_conn_opts_take (mh_conn_opt_t *opts, size_t n, const char *option)
{
   for (size_t i = 0; i < n; i++) {
      if (!opts[i].taken && strcasecmp (opts[i].key, option) == 0) {
         opts[i].taken = true;
         return opts[i].value;
      }
   }
   return NULL;
}

mongo_helper_config_t *
mongo_helper_config_new (const char *config_path, const char *uri, mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg = NULL;
   dictionary *ini = NULL;
   char *ini_path = NULL, *built = NULL, *conn_buf = NULL;
   mh_conn_opt_t *conn_opts = NULL;
   size_t n_conn = 0;
   const char *chosen = NULL, *v;
   char source[256], label[300], conn_label[300] = "";
   bson_error_t berr;
   bool failed = false;

   pthread_once (&mh_config_once, mh_config_init);
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
      bson_snprintf (source, sizeof source, "environment MONGO_HOST/MONGO_PORT/MONGO_USERNAME/...");
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
       mongoc_uri_get_option_as_int32 (cfg->muri, MONGOC_URI_WAITQUEUETIMEOUTMS, 0) <= 0) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: waitQueueTimeoutMS must be positive, or callers could "
               "wait forever for a pooled connection",
               source);
      goto fail;
   }

   if (ini && (v = iniparser_getstring (ini, "db:connection_options", NULL))) {
      bson_snprintf (conn_label, sizeof conn_label, "%s [db] connection_options", ini_path);
      if (!mh_conn_opts_split (v, conn_label, &conn_buf, &conn_opts, &n_conn, error)) {
         goto fail;
      }
   }

   /* Every setting, walking the table once. */
   for (size_t i = 0; i < sizeof mh_settings / sizeof *mh_settings; i++) {
      const mh_setting_t *s = &mh_settings[i];
      char key[64];
      int32_t n = s->def;

      if (s->option && mongoc_uri_has_option (cfg->muri, s->option)) {
         continue; /* the URI wins */
      }
      v = NULL;
      if ((v = mh_env (s->env))) {
         bson_snprintf (label, sizeof label, "environment %s", s->env);
      } else if (ini) {
         bson_snprintf (key, sizeof key, "db:%s", s->key);
         v = iniparser_getstring (ini, key, NULL);
         bson_snprintf (label, sizeof label, "%s [db] %s", ini_path, s->key);
      }
      if (!v && s->option && (v = mh_conn_opts_take (conn_opts, n_conn, s->option))) {
         bson_snprintf (label, sizeof label, "%s", conn_label);
      }
      if (!v && s->def_by == MH_DRIVER) {
         continue; /* libmongoc's own default */
      }
      if (v && !mh_setting_check (s, v, label, &n, error)) {
         goto fail;
      }
      if (s->dest == MH_TO_RETRY) {
         *(int32_t *) (void *) ((char *) &cfg->retry + s->field) = n;
      } else if (!mh_uri_set (cfg->muri, s, v, n)) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_CONFIG,
                  0,
                  "%s: the driver refused %s='%s'",
                  label,
                  s->option,
                  v);
         goto fail;
      }
   }
   /* connection_options left over: any other URI option. */
   for (size_t i = 0; i < n_conn; i++) {
      if (!conn_opts[i].taken &&
          !mh_uri_apply (cfg->muri, conn_opts[i].key, conn_opts[i].value, conn_label, error)) {
         goto fail;
      }
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
   bson_free (conn_buf);
   bson_free (conn_opts);
   return cfg;

fail:
   if (ini) {
      iniparser_freedict (ini);
   }
   bson_free (ini_path);
   bson_free (built);
   bson_free (conn_buf);
   bson_free (conn_opts);
   mongo_helper_config_destroy (cfg);
   return NULL;
}

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
