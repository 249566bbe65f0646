/*
 * config.c — resolves the URI, the default database and every setting from
 * their sources (layer 3).
 */
#include "mh_private.h"

#include <iniparser/iniparser.h>
#include <sys/stat.h>

#define MH_DEFAULT_CONFIG_PATH "conf/mongo_helper.ini"
#define MH_DEFAULT_URI "mongodb://localhost:27017/"

/* One resolved setting, as mongo_helper_config_setting() lends it. */
typedef struct {
   char *name, *env, *option, *value, *source_text;
   mongo_helper_source_t source;
} mh_record_t;

/* The configuration with what only this file reads: the shared struct
 * (mh_private.h, read by the core) comes first, so a pointer to one is a
 * pointer to the other. */
typedef struct {
   struct mongo_helper_config_t base;
   mh_record_t *records;
   size_t n_records, cap;
   char *effective_redacted;
} mh_config_full_t;

#define MH_FULL(config) ((mh_config_full_t *) (void *) (config))

void
mongo_helper_config_destroy (mongo_helper_config_t *config)
{
   mh_config_full_t *f = MH_FULL (config);

   if (!config) {
      return;
   }
   for (size_t i = 0; i < f->n_records; i++) {
      bson_free (f->records[i].name);
      bson_free (f->records[i].env);
      bson_free (f->records[i].option);
      bson_free (f->records[i].value);
      bson_free (f->records[i].source_text);
   }
   bson_free (f->records);
   bson_free (f->effective_redacted);
   for (int k = 0; k < MH_RING__COUNT; k++) {
      mh_keyring_destroy (config->rings[k]);
   }
   bson_free (config->uri);
   bson_free (config->uri_redacted);
   bson_free (config->database);
   bson_free (config->source);
   mongoc_uri_destroy (config->muri);
   bson_free (f);
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

const char *
mongo_helper_config_effective_uri_redacted (const mongo_helper_config_t *config)
{
   return config ? MH_FULL (config)->effective_redacted : NULL;
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

const char *
mongo_helper_source_name (mongo_helper_source_t source)
{
   switch (source) {
   case MONGO_HELPER_SOURCE_DEFAULT:
      return "default";
   case MONGO_HELPER_SOURCE_URI:
      return "uri";
   case MONGO_HELPER_SOURCE_ENVIRONMENT:
      return "environment";
   case MONGO_HELPER_SOURCE_INI:
      return "ini";
   case MONGO_HELPER_SOURCE_CONNECTION_OPTIONS:
      return "connection_options";
   default:
      return "unknown";
   }
}

size_t
mongo_helper_config_setting_count (const mongo_helper_config_t *config)
{
   return config ? MH_FULL (config)->n_records : 0;
}

static void
mh_setting_lend (const mh_record_t *r, mongo_helper_setting_t *out)
{
   out->name = r->name;
   out->env = r->env;
   out->uri_option = r->option;
   out->value = r->value;
   out->source = r->source;
   out->source_text = r->source_text;
   out->is_default = r->source == MONGO_HELPER_SOURCE_DEFAULT;
}

bool
mongo_helper_config_setting (const mongo_helper_config_t *config,
                             size_t index,
                             mongo_helper_setting_t *out,
                             mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!config || !out) {
      return mh_bad_arg (error, "mongo_helper_config_setting", "config and out must not be NULL");
   }
   if (index >= MH_FULL (config)->n_records) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_config_setting: index %zu is past the last "
                      "setting (there are %zu)",
                      index,
                      MH_FULL (config)->n_records);
   }
   mh_setting_lend (&MH_FULL (config)->records[index], out);
   return true;
}

bool
mongo_helper_config_setting_find (const mongo_helper_config_t *config,
                                  const char *name,
                                  mongo_helper_setting_t *out,
                                  mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!config || !name || !out) {
      return mh_bad_arg (
         error, "mongo_helper_config_setting_find", "config, name and out must not be NULL");
   }
   for (size_t i = 0; i < MH_FULL (config)->n_records; i++) {
      const mh_record_t *r = &MH_FULL (config)->records[i];

      if (strcasecmp (r->name, name) == 0 || (r->env && strcmp (r->env, name) == 0) ||
          (r->option && strcasecmp (r->option, name) == 0)) {
         mh_setting_lend (r, out);
         return true;
      }
   }
   return mh_fail (error,
                   MONGO_HELPER_ERROR_NOT_FOUND,
                   0,
                   "no setting '%s': name one by its INI key (max_pool_size), "
                   "environment variable or URI option",
                   name);
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
typedef enum {
   MH_INT,
   MH_BOOL,
   MH_TEXT,
   MH_SECRET /* text never shown: "****" in the listed settings */
} mh_type_t;

typedef enum {
   MH_DRIVER, /* the default is libmongoc's own: nothing is set */
   MH_OURS    /* the library sets its default */
} mh_default_t;

typedef enum {
   MH_TO_URI,    /* the URI option, for libmongoc */
   MH_TO_RETRY,  /* an int32_t of mongo_helper_retry_policy_t */
   MH_TO_CONFIG, /* an int32_t of mongo_helper_config_t (the limits) */
   MH_TO_RING    /* key ring `field` / 2 (mh_ring_kind_t): its text (even
                    field) or key file (odd) */
} mh_dest_t;

typedef struct {
   const char *key;
   const char *env;
   const char *option; /* as shown (libmongoc ignores case); NULL: a library setting */
   mh_type_t type;
   int32_t min, max; /* MH_INT */
   int32_t def;      /* MH_INT, MH_BOOL (0/1); none for MH_TEXT */
   mh_default_t def_by;
   mh_dest_t dest;
   size_t field;    /* MH_TO_RETRY, MH_TO_CONFIG: offsetof in the struct;
                       MH_TO_RING: see there */
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
#define MH_LIMIT(key, env, min, max, def, f) \
   {key, env, NULL, MH_INT, min, max, def, MH_OURS, MH_TO_CONFIG, \
    offsetof (mongo_helper_config_t, f), NULL}
#define MH_RING(key, env, type, kind, is_file) \
   {key, env, NULL, type, 0, 0, 0, MH_OURS, MH_TO_RING, 2 * (kind) + (is_file), NULL}

static const mh_setting_t mh_settings[] = {
   /* libmongoc 1.23's defaults are shown for information only */
   MH_URI_INT ("max_pool_size", "MONGO_MAX_POOL_SIZE", "maxPoolSize", 0, 100, MH_DRIVER),
   MH_URI_INT ("min_pool_size", "MONGO_MIN_POOL_SIZE", "minPoolSize", 0, 0, MH_DRIVER),
   MH_URI_INT ("max_idle_time_ms", "MONGO_MAX_IDLE_TIME_MS", "maxIdleTimeMS", 0, 0, MH_DRIVER),
   MH_URI_INT ("connect_timeout_ms", "MONGO_CONNECT_TIMEOUT_MS", "connectTimeoutMS",
               0, MONGOC_DEFAULT_CONNECTTIMEOUTMS, MH_DRIVER),
   MH_URI_INT ("server_selection_timeout_ms", "MONGO_SERVER_SELECTION_TIMEOUT_MS",
               "serverSelectionTimeoutMS", 0, 30000, MH_DRIVER),
   MH_URI_INT ("socket_timeout_ms", "MONGO_SOCKET_TIMEOUT_MS", "socketTimeoutMS",
               0, MONGOC_DEFAULT_SOCKETTIMEOUTMS, MH_DRIVER),
   {"wait_queue_timeout_ms", "MONGO_WAIT_QUEUE_TIMEOUT_MS", "waitQueueTimeoutMS", MH_INT,
    1, INT32_MAX, MONGO_HELPER_DEFAULT_POOL_WAIT_MS, MH_OURS, MH_TO_URI, 0,
    "0 would let callers wait forever for a pooled connection"},
   MH_URI_BOOL ("retry_writes", "MONGO_RETRY_WRITES", "retryWrites", 1),
   MH_URI_BOOL ("retry_reads", "MONGO_RETRY_READS", "retryReads", 1),
   {"app_name", "MONGO_APP_NAME", "appName", MH_TEXT, 0, 0, 0, MH_DRIVER, MH_TO_URI, 0, NULL},
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
   MH_LIMIT ("max_result_bytes", "MONGO_MAX_RESULT_BYTES", MONGO_HELPER_MIN_MAX_RESULT_BYTES,
             INT32_MAX, MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES, max_result_bytes),
   MH_LIMIT ("default_max_time_ms", "MONGO_DEFAULT_MAX_TIME_MS", 0, INT32_MAX,
             MONGO_HELPER_DEFAULT_MAX_TIME_MS, default_max_time_ms),
   /* Per-server-command metrics cost libmongoc ~2,300 instructions per
    * command (its succeeded event): off unless asked for. */
   {"command_metrics", "MONGO_COMMAND_METRICS", NULL, MH_BOOL, 0, 1, 0, MH_OURS, MH_TO_CONFIG,
    offsetof (mongo_helper_config_t, command_metrics), NULL},
   /* Encryption at rest: key rings "id:base64key,..." (current key first)
    * or a key file of one entry per line, for sessions and cache values */
   MH_RING ("session_keys", "MONGO_SESSION_KEYS", MH_SECRET, MH_RING_SESSIONS, 0),
   MH_RING ("session_key_file", "MONGO_SESSION_KEY_FILE", MH_TEXT, MH_RING_SESSIONS, 1),
   MH_RING ("cache_keys", "MONGO_CACHE_KEYS", MH_SECRET, MH_RING_CACHE, 0),
   MH_RING ("cache_key_file", "MONGO_CACHE_KEY_FILE", MH_TEXT, MH_RING_CACHE, 1),
};
/* clang-format on */

/* A variable that is set counts as set even when empty: an empty value is
 * reported instead of silently falling through to the next source. */
static const char *
mh_env (const char *name)
{
   return getenv (name);
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

/* Records one resolved setting for mongo_helper_config_setting(); a
 * credential's value is kept as "****" only. */
static void
mh_record (mh_config_full_t *f,
           const char *name,
           const char *env,
           const char *option,
           const char *value,
           mongo_helper_source_t source,
           const char *source_text)
{
   if (f->n_records == f->cap) {
      f->cap = f->cap ? 2 * f->cap : 32;
      f->records = bson_realloc (f->records, f->cap * sizeof *f->records);
   }
   char *shown = NULL;

   if (value && option && mh_option_secret (option)) {
      value = "****";
   } else if (value && option &&
              strcasecmp (mh_canonical (option), MONGOC_URI_AUTHMECHANISMPROPERTIES) == 0) {
      /* Its AWS_SESSION_TOKEN is a credential; the other properties are
       * not, and mongo_helper_redact() knows the one from the others. */
      size_t size = 2 * strlen (value) + 16;
      shown = bson_malloc (size);
      mongo_helper_redact (value, shown, size);
      value = shown;
   }
   f->records[f->n_records++] = (mh_record_t){bson_strdup (name),
                                              bson_strdup (env),
                                              bson_strdup (option),
                                              bson_strdup (value),
                                              bson_strdup (source_text),
                                              source};
   bson_free (shown);
}

/* Records the options the URI text names that are not table settings
 * (w, readPreference, replicaSet, tls, ...), as written. */
static void
mh_record_uri_options (mh_config_full_t *f, const char *uri, const char *source_text)
{
   const char *q = mh_uri_query (uri);

   while (q && *q) {
      size_t len = strcspn (q, "&"), klen = strcspn (q, "=&");
      char *key = bson_strndup (q, klen);
      char *raw = bson_strndup (q + klen + (klen < len), len - klen - (klen < len));
      char *value = mh_pct_decode (raw);
      bool in_table = false;

      for (size_t i = 0; i < sizeof mh_settings / sizeof *mh_settings; i++) {
         in_table =
            in_table || (mh_settings[i].option && strcasecmp (mh_settings[i].option, key) == 0);
      }
      if (*key && !in_table) {
         mh_record (f, key, NULL, key, value ? value : raw, MONGO_HELPER_SOURCE_URI, source_text);
      }
      bson_free (key);
      bson_free (raw);
      bson_free (value);
      q += len + (q[len] == '&');
   }
}

/* ---- Settings ----------------------------------------------------------- */

/* The URI options libmongoc reads on every operation. */
static bool
mh_option_per_op (const char *option)
{
   return strcasecmp (option, MONGOC_URI_RETRYREADS) == 0 ||
          strcasecmp (option, MONGOC_URI_RETRYWRITES) == 0;
}

/* The value of `s` as text: `v` for MH_TEXT, else `n` written to `text`
 * (a number, or true/false). */
static const char *
mh_setting_text (const mh_setting_t *s, int32_t n, const char *v, char text[16])
{
   if (s->type == MH_SECRET) {
      return v ? "****" : NULL;
   }
   if (s->type == MH_TEXT) {
      return v;
   }
   if (s->type == MH_BOOL) {
      return n ? "true" : "false";
   }
   bson_snprintf (text, 16, "%d", (int) n);
   return text;
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

/* iniparser ends an unquoted value at ';' or '#' (a comment) without a
 * word: a password holding one would be cut silently, and what is left
 * may even parse.  So the raw line of `key` in [db] is read again, and an
 * unquoted value holding either is refused. */
static bool
mh_ini_value_uncut (const char *path, const char *key, mongo_helper_error_t *error)
{
   FILE *f = fopen (path, "r");
   char line[4096];
   bool in_db = false, ok = true;
   size_t klen = strlen (key);

   while (f && ok && fgets (line, sizeof line, f)) {
      char *p = line + strspn (line, " \t");

      if (*p == '[') {
         in_db = strncasecmp (p, "[db]", 4) == 0;
         continue;
      }
      if (!in_db || strncasecmp (p, key, klen) != 0) {
         continue;
      }
      p += klen;
      p += strspn (p, " \t");
      if (*p != '=') {
         continue;
      }
      p++;
      p += strspn (p, " \t");
      if (*p != '"' && *p != '\'' && strpbrk (p, ";#")) {
         ok = mh_fail (error,
                       MONGO_HELPER_ERROR_CONFIG,
                       0,
                       "%s [db] %s: the value holds ';' or '#', where the INI reader "
                       "would cut it: put the value in double quotes",
                       path,
                       key);
      }
   }
   if (f) {
      fclose (f);
   }
   return ok;
}

/* ---- Key rings ------------------------------------------------------------ */

/* The key settings as the table resolved them: per ring, its text (slot
 * 2k) and key file (2k + 1), NULL when unset. */
typedef struct {
   const char *v[2 * MH_RING__COUNT];
   mongo_helper_source_t from[2 * MH_RING__COUNT];
   char label[2 * MH_RING__COUNT][300];
} mh_ring_settings_t;

/* Builds each ring from its text or key file; one of the two only.  Keys
 * written in the INI file need the protection a key file has: a file
 * other users may read holds no secret. */
static bool
mh_config_rings (mongo_helper_config_t *cfg,
                 const mh_ring_settings_t *r,
                 const char *ini_path,
                 mongo_helper_error_t *error)
{
   for (int k = 0; k < MH_RING__COUNT; k++) {
      const char *text = r->v[2 * k], *file = r->v[2 * k + 1];
      struct stat st;

      if (text && file) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s and %s are both set: give the keys one way (a key file is "
                         "safer: it must be readable by the service only)",
                         r->label[2 * k],
                         r->label[2 * k + 1]);
      }
      if (text && r->from[2 * k] == MONGO_HELPER_SOURCE_INI && ini_path &&
          stat (ini_path, &st) == 0 && (st.st_mode & S_IRWXO)) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s: the INI file holds encryption keys but other users have "
                         "access to it (mode %04o): restrict it with chmod o-rwx, or move "
                         "the keys to a key file of their own",
                         r->label[2 * k],
                         (unsigned) (st.st_mode & 07777));
      }
      if (text && !(cfg->rings[k] = mh_keyring_parse (text, r->label[2 * k], error))) {
         return false;
      }
      if (file && !(cfg->rings[k] = mh_keyring_load_file (file, r->label[2 * k + 1], error))) {
         return false;
      }
   }
   return true;
}

mongo_helper_config_t *
mongo_helper_config_new (const char *config_path, const char *uri, mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg = NULL;
   mh_config_full_t *full = NULL;
   mongoc_uri_t *given = NULL;
   dictionary *ini = NULL;
   char *ini_path = NULL, *built = NULL;
   mh_conn_opts_t conn = {0};
   mh_extras_t extras = {0};
   mh_ring_settings_t rings;
   const char *chosen = NULL, *v;
   char source[256], label[300], uri_label[300], *merged = NULL;
   mongo_helper_source_t from;
   bson_error_t berr;
   bool failed = false;

   pthread_once (&mh_config_once, mh_config_init);
   mh_error_clear (error);
   memset (&rings, 0, sizeof rings);
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
      if (!mh_ini_value_uncut (ini_path, "mongo_uri", error)) {
         goto fail;
      }
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

   full = bson_malloc0 (sizeof *full);
   cfg = &full->base;
   mh_limits_defaults (cfg);
   cfg->uri = bson_strdup (chosen);
   cfg->source = bson_strdup (source);
   cfg->uri_redacted = mh_redact_uri (chosen);
   bson_snprintf (uri_label, sizeof uri_label, "URI from %s", source);
   given = mongoc_uri_new_with_error (chosen, &berr);
   if (!given) {
      /* The hint spells out "at sign": the redactor hides up to the last
       * '@' of a message, which must be the URI's own. */
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: invalid MongoDB URI '%s' (%s): expected the form "
               "mongodb://host[:port][/database][?options], with user:password and "
               "an at sign before the host when it needs credentials",
               source,
               cfg->uri_redacted,
               berr.message);
      goto fail;
   }

   bson_snprintf (conn.label, sizeof conn.label, "%s [db] connection_options", ini_path);
   if (ini && (v = iniparser_getstring (ini, "db:connection_options", NULL)) &&
       (!mh_ini_value_uncut (ini_path, "connection_options", error) ||
        !mh_conn_opts_split (&conn, v, error))) {
      goto fail;
   }

   /* Every setting, walking the table once. */
   for (size_t i = 0; i < sizeof mh_settings / sizeof *mh_settings; i++) {
      const mh_setting_t *s = &mh_settings[i];
      char key[64], text[16];
      int32_t n = s->def;
      /* Taken whichever source wins, so it never reaches the URI later. */
      const char *in_conn = s->option ? mh_conn_opts_take (&conn, s->option) : NULL;

      if (s->option && mh_uri_names (given, chosen, s->option)) {
         /* The URI wins; its value has the same range. */
         n = s->type == MH_BOOL ? mongoc_uri_get_option_as_bool (given, s->option, s->def)
                                : mongoc_uri_get_option_as_int32 (given, s->option, 0);
         if (s->type == MH_INT && (n < s->min || n > s->max)) {
            mh_fail (error,
                     MONGO_HELPER_ERROR_CONFIG,
                     0,
                     "%s: %s=%d is not a whole number from %d to %d%s%s",
                     source,
                     s->option,
                     (int) n,
                     (int) s->min,
                     (int) s->max,
                     s->why ? ": " : "",
                     s->why ? s->why : "");
            goto fail;
         }
         v = s->type == MH_TEXT ? mongoc_uri_get_option_as_utf8 (given, s->option, NULL) : NULL;
         mh_record (full,
                    s->key,
                    s->env,
                    s->option,
                    mh_setting_text (s, n, v, text),
                    MONGO_HELPER_SOURCE_URI,
                    uri_label);
         continue;
      }
      from = MONGO_HELPER_SOURCE_DEFAULT;
      bson_snprintf (key, sizeof key, "db:%s", s->key);
      if ((v = mh_env (s->env))) {
         from = MONGO_HELPER_SOURCE_ENVIRONMENT;
         bson_snprintf (label, sizeof label, "environment %s", s->env);
      } else if (ini && (v = iniparser_getstring (ini, key, NULL))) {
         from = MONGO_HELPER_SOURCE_INI;
         bson_snprintf (label, sizeof label, "%s [db] %s", ini_path, s->key);
      } else if ((v = in_conn)) {
         from = MONGO_HELPER_SOURCE_CONNECTION_OPTIONS;
         bson_snprintf (label, sizeof label, "%s", conn.label);
      } else {
         bson_snprintf (label,
                        sizeof label,
                        "default (%s)",
                        s->def_by == MH_OURS ? "mongo_helper" : "libmongoc");
      }
      if (v && !mh_setting_check (s, v, label, &n, error)) {
         goto fail;
      }
      mh_record (full, s->key, s->env, s->option, mh_setting_text (s, n, v, text), from, label);
      if (s->dest == MH_TO_RETRY) {
         *(int32_t *) (void *) ((char *) &cfg->retry + s->field) = n;
      } else if (s->dest == MH_TO_CONFIG) {
         *(int32_t *) (void *) ((char *) cfg + s->field) = n;
      } else if (s->dest == MH_TO_RING) {
         rings.v[s->field] = v;
         rings.from[s->field] = from;
         bson_strncpy (rings.label[s->field], label, sizeof rings.label[s->field]);
      } else if (v || s->def_by == MH_OURS) {
         /* libmongoc looks retryReads and retryWrites up on every read
          * and write, walking the URI's options in order: placed first
          * among ours, they are found at once (bench/ measured ~2,800
          * instructions per find with them last). */
         (mh_option_per_op (s->option) ? mh_extras_add_first : mh_extras_add) (
            &extras, s->option, mh_setting_text (s, n, v, text), label);
      }
   }
   if (!mh_config_rings (cfg, &rings, ini_path, error)) {
      goto fail;
   }
   /* The other options of the URI, then the rest of connection_options
    * (any other URI option). */
   mh_record_uri_options (full, chosen, uri_label);
   for (size_t i = 0; i < conn.n; i++) {
      const mh_conn_opt_t *o = &conn.v[i];

      if (o->taken || mh_uri_names (given, chosen, o->key)) {
         continue;
      }
      if (strcasecmp (o->key, MONGOC_URI_COMPRESSORS) == 0 &&
          !mh_compressors_check (o->value, conn.label, error)) {
         goto fail;
      }
      mh_extras_add (&extras, o->key, o->value, conn.label);
      mh_record (
         full, o->key, NULL, o->key, o->value, MONGO_HELPER_SOURCE_CONNECTION_OPTIONS, conn.label);
   }
   if (!(cfg->muri = mh_uri_parse_merged (chosen, &extras, source, &merged, error))) {
      goto fail;
   }
   full->effective_redacted = mh_redact_uri (merged);

   /* The default database: URI path, MONGO_DB, [db] database. */
   if ((v = mongoc_uri_get_database (cfg->muri)) && *v) {
      from = MONGO_HELPER_SOURCE_URI;
      bson_snprintf (label, sizeof label, "%s (its path)", uri_label);
   } else if ((v = mh_env ("MONGO_DB"))) {
      from = MONGO_HELPER_SOURCE_ENVIRONMENT;
      bson_snprintf (label, sizeof label, "environment MONGO_DB");
   } else if (ini && (v = iniparser_getstring (ini, "db:database", NULL))) {
      from = MONGO_HELPER_SOURCE_INI;
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
   /* Shown first: it is what an operator looks for after the URI. */
   mh_record (full, "database", "MONGO_DB", NULL, v, from, label);
   {
      mh_record_t db = full->records[full->n_records - 1];

      memmove (full->records + 1, full->records, (full->n_records - 1) * sizeof *full->records);
      full->records[0] = db;
   }
   goto done;

fail:
   mongo_helper_config_destroy (cfg);
   cfg = NULL;
done:
   if (ini) {
      iniparser_freedict (ini);
   }
   mongoc_uri_destroy (given);
   mh_conn_opts_free (&conn);
   mh_extras_free (&extras);
   bson_free (ini_path);
   bson_free (built);
   bson_free (merged);
   return cfg;
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
