/*
 * mongo_helper.h — one place for a C web backend's MongoDB access.
 *
 * A process-wide singleton resolves the MongoDB URI, owns one
 * mongoc_client_pool_t and hands the URI's default database to any thread.
 * This header is the manual: every function says what it does, who owns
 * what, and how it fails.
 *
 * Memory management, in one paragraph
 * -----------------------------------
 * Pointers returned by a function named *_new, *_load, *_acquire or *_dup
 * belong to the caller, who frees them with the matching *_destroy,
 * *_release or *_free (all of which accept NULL).  Everything else that
 * returns a pointer lends it: the text says how long it stays valid.
 * Arguments are borrowed for the duration of the call and never kept.
 *
 * Errors, in one paragraph
 * ------------------------
 * Every call that can fail returns bool (or a pointer, NULL on failure) and
 * takes a mongo_helper_error_t * as its last argument.  The argument may be
 * NULL when the caller does not care why.  On failure it holds a category,
 * the server's or driver's numeric code where there is one, and a message
 * that says what to do.  Messages never contain a password.  On success the
 * error is cleared (category MONGO_HELPER_ERROR_NONE).  The library never
 * writes to stdout or stderr: see mongo_helper_set_log_handler().
 *
 * Threads and fork, in one paragraph
 * ----------------------------------
 * Every function is thread-safe unless its text says otherwise.  A process
 * that forks after using the library may keep using it in both the parent
 * and the child, from any thread and while other threads are inside
 * library calls: fork handlers (installed when the library is loaded)
 * hold every lock of the library across fork(), and none of those locks
 * is ever held across a network round trip or a call to the application's
 * log sink, so fork() waits for neither.  The child keeps the parent's
 * configuration (explicit URI or file included), builds a fresh pool of
 * its own on first use, and neither uses nor closes the parent's sockets
 * (closing them would send endSessions on the parent's connections); its
 * event writers start empty (see mongo_helper_event_writer_t).  One limit
 * is libmongoc's (1.23 and its later releases alike): it guards its
 * topology descriptions with a process-wide lock no fork handler can
 * reach, so a fork() at the instant another thread holds it (a few
 * instructions at a time inside any operation, or a pool's monitor)
 * leaves the child's first pool creation waiting for ever.  Fork while no
 * other thread is inside a call that reaches the server (the usual
 * pre-forking pattern) to rule that out.  Another is AddressSanitizer's:
 * its allocator (GCC 12's, clang 14's) has no fork handlers, so in an ASan
 * build a child forked while another thread is inside malloc waits for
 * ever in its first malloc, whatever library it uses.
 */
#ifndef MONGO_HELPER_H
#define MONGO_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libmongoc's headers name struct addrinfo, which strict C11 (without
 * _POSIX_C_SOURCE) does not declare: declaring the tag keeps -std=c11
 * -Werror users of this header warning-free. */
struct addrinfo;

#include <bson/bson.h>
#include <mongoc/mongoc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version -------------------------------------------------------- */

/* The one source of truth for the version; the Makefile reads it. */
#define MONGO_HELPER_VERSION_MAJOR 0
#define MONGO_HELPER_VERSION_MINOR 2
#define MONGO_HELPER_VERSION_PATCH 0
#define MONGO_HELPER_VERSION_STRING "0.2.0"

/* Returns MONGO_HELPER_VERSION_STRING of the library actually linked. */
const char *mongo_helper_version (void);

/* ---- Errors --------------------------------------------------------- */

/* What kind of failure happened; decides what the caller does next. */
typedef enum {
   MONGO_HELPER_ERROR_NONE = 0,         /* no error */
   MONGO_HELPER_ERROR_CONFIG,           /* bad or missing configuration */
   MONGO_HELPER_ERROR_CONNECTION,       /* server unreachable, socket error */
   MONGO_HELPER_ERROR_TIMEOUT,          /* a time limit passed (pool wait,
                                           socket, maxTimeMS) */
   MONGO_HELPER_ERROR_SERVER,           /* the server refused the command */
   MONGO_HELPER_ERROR_DUPLICATE_KEY,    /* unique index violation (11000) */
   MONGO_HELPER_ERROR_NOT_FOUND,        /* no such document / session / key */
   MONGO_HELPER_ERROR_INVALID_ARGUMENT, /* the caller passed bad input */
   MONGO_HELPER_ERROR_AUTH,             /* authentication failed */
   MONGO_HELPER_ERROR_CIRCUIT_OPEN,     /* failing fast after repeated
                                           connection failures */
   MONGO_HELPER_ERROR_INTERNAL,         /* out of memory, library bug */
   MONGO_HELPER_ERROR_INTEGRITY         /* an encrypted record did not open:
                                           altered, truncated, moved from
                                           another record, or its key is
                                           not in the key ring; the record
                                           is not returned */
} mongo_helper_category_t;

/* The code (mongo_helper_error_t.code) of an INTEGRITY error: why the
 * encrypted record did not open.  Each is also counted in the metrics
 * (mongo_helper_integrity_failures_total, see "Metrics"). */
#define MONGO_HELPER_INTEGRITY_MALFORMED \
   1 /* not an envelope the library      \
        reads: truncated, altered or     \
        of another version */
#define MONGO_HELPER_INTEGRITY_UNKNOWN_KEY \
   2 /* sealed with a key id not in        \
        the handle's key ring (or          \
        the handle has none) */
#define MONGO_HELPER_INTEGRITY_FORGED \
   3 /* authentication failed:        \
        altered bytes, a payload      \
        moved from another record,    \
        or other key bytes under      \
        the same id */

/* Size of mongo_helper_error_t.message, including the terminating NUL. */
#ifndef MONGO_HELPER_ERROR_MESSAGE_SIZE
#define MONGO_HELPER_ERROR_MESSAGE_SIZE 504
#endif

/* The error out-parameter.  Plain data: put it on the stack, no cleanup. */
typedef struct {
   mongo_helper_category_t category;
   int32_t code; /* server error code (e.g. 11000), driver code, or 0 */
   char message[MONGO_HELPER_ERROR_MESSAGE_SIZE];
} mongo_helper_error_t;

/* Returns a static lowercase name for a category ("timeout", ...), or
 * "unknown" for a value outside the enum.  Never NULL. */
const char *mongo_helper_category_name (mongo_helper_category_t category);

/* ---- Logging -------------------------------------------------------- */

typedef enum {
   MONGO_HELPER_LOG_ERROR = 0,
   MONGO_HELPER_LOG_WARNING,
   MONGO_HELPER_LOG_INFO,
   MONGO_HELPER_LOG_DEBUG
} mongo_helper_log_level_t;

/* A log sink.  `domain` is "mongo_helper" or libmongoc's log domain;
 * `message` has credentials redacted and is valid only during the call.
 * The library calls it holding none of its locks, from whichever thread
 * logs, possibly from several threads at once: make it thread-safe.  A
 * slow sink slows only the thread that logs. */
typedef void (*mongo_helper_log_fn) (mongo_helper_log_level_t level,
                                     const char *domain,
                                     const char *message,
                                     void *user_data);

/* Sets the process-wide log sink (NULL: discard everything, the default).
 * The library also routes libmongoc's own log messages here, which means it
 * replaces any handler installed with mongoc_log_set_handler().  libmongoc
 * calls its handler under its own global lock, where no application code
 * should run (a fork() meanwhile would leave that lock held in the child),
 * so its messages are queued (up to 32; beyond that one warning says how
 * many were dropped) and handed to the sink by the library's next call on
 * any thread.  Messages at a level above `max_level` are dropped before
 * formatting.  When this returns, calls of the previous sink on other
 * threads have finished (so its user_data may be freed); a sink may call
 * this itself. */
void mongo_helper_set_log_handler (mongo_helper_log_fn fn,
                                   mongo_helper_log_level_t max_level,
                                   void *user_data);

/* Copies `text` into `out` (always NUL-terminated, truncated to
 * `out_size`) with every credential replaced by "****" (one per hidden
 * run, whatever its length).  Every error message, log line and redacted
 * URI of the library passes through it; use it before logging any string
 * that might hold a URI.  Returns the length written (NULL text: "").
 *
 * A password may hold anything libmongoc accepts (blanks, quotes, ? # & ;
 * = and the other delimiters, UTF-8, and '@' ':' '/' escaped by '\'), and
 * a URI may be mistyped or cut short, so the end of a password is never
 * guessed from its characters: a doubt hides more, never less.  Below,
 * '@' ':' '/' '=' also stand for %40 %3A %2F %3D.  Hidden:
 *
 *  1. User information, from the password's ':' to the LAST '@' of the
 *     whole text (so an '@' later in a message hides the text between).
 *     The password's ':' is the first ':' after "mongodb://",
 *     "mongodb+srv://" or the mistyped "mongodb:/" (any case).  Without a
 *     second ':', "mongodb://user@host" hides nothing, but a mistyped or
 *     percent-encoded scheme hides from its own ':'; so does any other
 *     "word:/" (the word may be a user name and the rest a password that
 *     starts with '/').  Without such a scheme ("alice:S3cret@host",
 *     "mongodb//alice:S3cret@host"), any ':' with an '@' after it, except
 *     a ':' followed by a blank in running prose ("failed: a@b.c"): that
 *     one counts only when no blank comes before it in the text, or when a
 *     "//" or ":/" does.  The user name before the ':' stays visible.
 *  2. A URI cut before its '@' (an INI value cut at ';' or '#' leaves
 *     "mongodb://alice:S3c"): after "word:/" or "word//", and in a text
 *     that starts with "word:" (no blank before or after the ':'), the
 *     hosts must read host[:port][,host[:port]...] with ports of 1 to 5
 *     digits; from the first ':' that breaks this, the rest of the text is
 *     hidden.  A URI that starts the text ends only at '/', '?' or the
 *     end; inside a sentence, also at a blank, quote or bracket.
 *  3. Secret values: after a key ending in password, passwd, pwd, token,
 *     secret, secret_access_key, secretaccesskey, api_key or apikey (any
 *     case: password=, tlsCertificateKeyFilePassword=, AWS_SESSION_TOKEN:
 *     in authMechanismProperties, AWS_SESSION_TOKEN=, "password": "...")
 *     and '=' or ':' (blanks and the key's closing quote allowed), or
 *     blanks and a quote (libmongoc's Password "..."): the value up to the
 *     next '&' or the end of the text; a quoted value up to the last such
 *     quote of the text.
 *
 * Left visible, because nothing tells them from ordinary text: a
 * password that starts with a blank, in a URI without scheme, when a blank
 * comes earlier in the text ("connect alice: pw@host"); what is left of a
 * cut password when it reads as a port ("mongodb://alice:1234", or
 * "x mongodb://alice:1234 y" inside a sentence). */
size_t mongo_helper_redact (const char *text, char *out, size_t out_size);

/* ---- Configuration -------------------------------------------------- */

/*
 * A resolved configuration: the URI, its source, the default database and
 * the pool settings, after every rule below has been applied.  The
 * singleton builds one internally; tests and tools build one to see what
 * would be used without connecting.
 *
 * URI: the first source that is set wins.  A variable that is set but
 * empty is a CONFIG error, not a skip.
 *   1. `uri` argument of mongo_helper_config_new() / mongo_helper_init_uri()
 *   2. environment MONGO_CACHE_URI
 *   3. `mongo_uri` in section [db] of the INI file
 *   4. environment MONGO_URI
 *   5. environment parts MONGO_HOST (comma-separated hosts allowed),
 *      MONGO_PORT (for the hosts without a port), MONGO_USERNAME,
 *      MONGO_PASSWORD, MONGO_AUTH_SOURCE, MONGO_REPLICA_SET, MONGO_USE_SSL,
 *      MONGO_SSL_CA_CERTS, MONGO_DB; used when any of them but MONGO_DB is
 *      set; user name and password are percent-encoded so any character
 *      works
 *   6. mongodb://localhost:27017/
 *
 * INI file: the `config_path` argument, else $MONGO_HELPER_CONFIG, else
 * conf/mongo_helper.ini relative to the working directory.  A missing
 * default file is skipped; a missing file named by argument or variable is
 * a MONGO_HELPER_ERROR_CONFIG error.
 *
 * Pool and timeout settings (INI [db] key / environment variable / URI
 * option): max_pool_size / MONGO_MAX_POOL_SIZE / maxPoolSize,
 * min_pool_size / MONGO_MIN_POOL_SIZE / minPoolSize,
 * max_idle_time_ms / MONGO_MAX_IDLE_TIME_MS / maxIdleTimeMS,
 * connect_timeout_ms / MONGO_CONNECT_TIMEOUT_MS / connectTimeoutMS,
 * server_selection_timeout_ms / MONGO_SERVER_SELECTION_TIMEOUT_MS /
 * serverSelectionTimeoutMS, socket_timeout_ms / MONGO_SOCKET_TIMEOUT_MS /
 * socketTimeoutMS, wait_queue_timeout_ms / MONGO_WAIT_QUEUE_TIMEOUT_MS /
 * waitQueueTimeoutMS, retry_writes / MONGO_RETRY_WRITES / retryWrites,
 * retry_reads / MONGO_RETRY_READS / retryReads, app_name / MONGO_APP_NAME /
 * appName.  Precedence for one option: the URI itself, then the
 * environment, then the INI key, then connection_options, then the
 * default; the URI wins because it is the one string an operator reads
 * to know what the process connects to.
 * The pool wait (waitQueueTimeoutMS) defaults to
 * MONGO_HELPER_DEFAULT_POOL_WAIT_MS and must be positive, so no caller ever
 * waits forever for a connection; the numbers above must be >= 0.  A value
 * out of range is a CONFIG error wherever it is written, the URI included.
 * Environment and INI values are plain text (app_name = my app).
 *
 * [db] connection_options = "k=v&k=v" takes ANY option libmongoc reads in
 * a URI, written as in a URI's query (percent-encode '%', '&' and '='):
 * w, journal, wTimeoutMS, readPreference, readPreferenceTags (may repeat),
 * maxStalenessSeconds, readConcernLevel, compressors, tls and its options,
 * authMechanism, authSource, ... .  Every option the URI does not name is
 * appended to the URI text and libmongoc parses the whole, so an option
 * behaves exactly as if the URI held it (write concern, read preference,
 * read concern and compressors included).  A CONFIG error naming the file
 * and the option: an option libmongoc does not know, one given twice, a
 * compressor libmongoc was built without, a bad %-escape, or a value the
 * driver refuses (e.g. w=0 with journal=true).
 *
 * Default database: the URI's path (like pymongo's get_default_database()),
 * else MONGO_DB, else [db] database; with none, a CONFIG error.
 *
 * Encryption keys (INI [db] key / environment variable; the environment
 * wins; no URI option): session_keys / MONGO_SESSION_KEYS or
 * session_key_file / MONGO_SESSION_KEY_FILE for the sessions helper,
 * cache_keys / MONGO_CACHE_KEYS or cache_key_file / MONGO_CACHE_KEY_FILE
 * for cache values; nothing set: no encryption.  A ring is
 * "id:base64key,id:base64key" with the CURRENT key first (ids of 1 to 32
 * characters among A-Z a-z 0-9 _ -, keys of exactly 32 bytes in standard
 * or URL-safe base64: `openssl rand -base64 32`); a key file holds one
 * id:base64key per line ('#' comments and blank lines skipped) and must
 * be a regular file no other user may access (mode 0600 or 0640).  Keys
 * written in the INI file itself need the same: an INI file other users
 * may read cannot hold them.  Text and key file of one ring together, bad
 * base64, a wrong size, a duplicate id or a key file others may read are
 * CONFIG errors naming the source (variable, or file and key, and entry
 * or line), never showing key text; mongo_helper_config_setting() shows
 * a key ring as "****".  The helpers read these when a handle without
 * keys of its own (options keys / key_file) is first used.
 *
 * Every CONFIG error names its source (the variable, or the file and
 * key) and never shows a password or key text.  INI values: see
 * conf/mongo_helper.ini, which lists every key with its default, range
 * and variable, and says how to quote a value holding ';' or '#'.
 *
 * What is in force, and from where: mongo_helper_config_setting() lists
 * every setting with its value and source (see below).
 */
typedef struct mongo_helper_config_t mongo_helper_config_t;

#ifndef MONGO_HELPER_DEFAULT_POOL_WAIT_MS
#define MONGO_HELPER_DEFAULT_POOL_WAIT_MS 10000
#endif

/* Resolves a configuration as described above.  `config_path` and `uri`
 * may be NULL.  Returns a new configuration, or NULL with a CONFIG error
 * naming the source at fault (variable, or file and key). */
mongo_helper_config_t *
mongo_helper_config_new (const char *config_path, const char *uri, mongo_helper_error_t *error);

/* Frees a configuration.  NULL is allowed. */
void mongo_helper_config_destroy (mongo_helper_config_t *config);

/* The URI as its source gave it (settings from other sources are in the
 * parsed URI, mongo_helper_config_mongoc_uri()).  It CONTAINS CREDENTIALS:
 * pass it to libmongoc, never to a log.  Valid until the configuration is
 * destroyed. */
const char *mongo_helper_config_uri (const mongo_helper_config_t *config);

/* The same URI with the password replaced by "****": safe to log. */
const char *mongo_helper_config_uri_redacted (const mongo_helper_config_t *config);

/* The parsed URI with every setting applied: the one the pool is built
 * from.  Read options with mongoc_uri_get_option_as_*(),
 * mongoc_uri_get_write_concern(), _get_read_prefs_t(), _get_read_concern(),
 * _get_compressors().  Valid until the configuration is destroyed. */
const mongoc_uri_t *mongo_helper_config_mongoc_uri (const mongo_helper_config_t *config);

/* The default database name.  Valid until the configuration is destroyed. */
const char *mongo_helper_config_database (const mongo_helper_config_t *config);

/* Where the URI came from, e.g. "environment MONGO_CACHE_URI" or
 * "conf/mongo_helper.ini [db] mongo_uri".  Valid as the configuration. */
const char *mongo_helper_config_source (const mongo_helper_config_t *config);

/* The URI text libmongoc actually parsed: the URI with every option from
 * the environment, the INI file, connection_options and the library's
 * defaults appended, the password and credential options
 * (tlsCertificateKeyFilePassword, authMechanismProperties) replaced by
 * "****".  Safe to log.  Valid until the configuration is destroyed. */
const char *mongo_helper_config_effective_uri_redacted (const mongo_helper_config_t *config);

/* Where a setting's value came from. */
typedef enum {
   MONGO_HELPER_SOURCE_DEFAULT = 0,       /* nothing set it: the default */
   MONGO_HELPER_SOURCE_URI,               /* the URI itself (its path, for the database) */
   MONGO_HELPER_SOURCE_ENVIRONMENT,       /* the setting's environment variable */
   MONGO_HELPER_SOURCE_INI,               /* the setting's key in [db] of the INI file */
   MONGO_HELPER_SOURCE_CONNECTION_OPTIONS /* [db] connection_options */
} mongo_helper_source_t;

/* "default", "uri", "environment", "ini", "connection_options", or
 * "unknown" for a value outside the enum.  Never NULL. */
const char *mongo_helper_source_name (mongo_helper_source_t source);

/* One resolved setting: what is in force and where it came from.  The
 * strings are lent by the configuration, valid until it is destroyed. */
typedef struct {
   const char *name;       /* its INI key ("max_pool_size", "database",
                              "retry_attempts"); for another URI option,
                              the option as written ("w") */
   const char *env;        /* its environment variable, or NULL */
   const char *uri_option; /* its URI option ("maxPoolSize"), or NULL for
                              the library's own settings and the database */
   const char *value;      /* the value in force as text ("100", "true",
                              "majority"); the default when nothing set it
                              (libmongoc's own, e.g. maxPoolSize 100, or the
                              library's); NULL when there is none (app_name
                              unset); "****" for a credential option and a
                              key ring.  A password is never a setting. */
   mongo_helper_source_t source;
   const char *source_text; /* e.g. "environment MONGO_MAX_POOL_SIZE",
                               "/etc/app.ini [db] max_pool_size",
                               "URI from environment MONGO_CACHE_URI",
                               "/etc/app.ini [db] connection_options",
                               "default (libmongoc)", "default (mongo_helper)" */
   bool is_default;         /* source == MONGO_HELPER_SOURCE_DEFAULT */
} mongo_helper_setting_t;

/* How many settings the configuration lists (0 for NULL): the default
 * database first, then every setting of the tables above (pool, timeouts,
 * retries, circuit breaker, encryption keys) whether set or not, then
 * every other URI option named by the URI, then those added by
 * connection_options. */
size_t mongo_helper_config_setting_count (const mongo_helper_config_t *config);

/* Fills `out` with setting number `index` (0 to count - 1).  Fails with
 * INVALID_ARGUMENT for a NULL argument or an index past the last. */
bool mongo_helper_config_setting (const mongo_helper_config_t *config,
                                  size_t index,
                                  mongo_helper_setting_t *out,
                                  mongo_helper_error_t *error);

/* Fills `out` with the first setting whose name or URI option (any case)
 * or environment variable is `name`.  Fails with INVALID_ARGUMENT for a
 * NULL argument, NOT_FOUND when no setting has that name (an option no
 * source set is not listed, except the table's). */
bool mongo_helper_config_setting_find (const mongo_helper_config_t *config,
                                       const char *name,
                                       mongo_helper_setting_t *out,
                                       mongo_helper_error_t *error);

/* ---- Singleton ------------------------------------------------------ */

/* Initialises the singleton from the configuration rules above, with the
 * INI file at `config_path` (NULL: $MONGO_HELPER_CONFIG, else the default
 * file).  Creates the pool but does not connect: the first operation does.
 * Returns true if the singleton is ready, including when it already was
 * (a second init is a no-op and does not re-read the configuration; call
 * mongo_helper_shutdown() first to change it).  Fails with CONFIG. */
bool mongo_helper_init (const char *config_path, mongo_helper_error_t *error);

/* Like mongo_helper_init() but with an explicit URI, which wins over every
 * other source.  The INI file's and environment's pool settings still
 * apply.  In a forked child the library is already initialised with the
 * parent's configuration (whatever its source), so init there is a no-op
 * too. */
bool mongo_helper_init_uri (const char *uri, mongo_helper_error_t *error);

/* A snapshot of the singleton, for logs and status pages.  Strings are
 * copies (redacted), so the snapshot stays valid after shutdown. */
typedef struct {
   bool initialized;
   char uri[512];      /* redacted */
   char source[256];   /* where the URI came from */
   char database[128]; /* default database */
   int32_t max_pool_size;
   int32_t pool_wait_ms; /* waitQueueTimeoutMS in force */
   uint32_t generation;  /* incremented by every init, and in a forked
                            child on first use */
} mongo_helper_status_t;

/* Fills `status`.  Never fails; when not initialised, `initialized` is
 * false and the strings are empty.  A forked child is initialised with its
 * parent's configuration, which this reports even before the child's
 * first operation. */
void mongo_helper_status (mongo_helper_status_t *status);

/* Frees the pool, every thread's cached client and the configuration (in
 * a forked child, it also forgets the parent's).
 * Idempotent; the library may be initialised again afterwards (lazily or
 * explicitly).  Other threads must not be inside a library call or using a
 * borrowed database at that moment.  Connections still held through
 * mongo_helper_acquire() stay valid until released; the old pool is freed
 * with the last of them. */
void mongo_helper_shutdown (void);

/* The calling thread's handle on the default database.  Initialises the
 * singleton on first use (many threads racing here create exactly one
 * pool), then takes one client from the pool for this thread and keeps it
 * until the thread exits (returned to the pool automatically),
 * mongo_helper_thread_release(), or mongo_helper_shutdown().  The returned
 * pointer is borrowed: never destroy it, never pass it to another thread.
 * Returns NULL with CONFIG (bad configuration) or TIMEOUT (every client of
 * the pool is in use and none came back within the pool wait).  The pool
 * must therefore be at least as large as the number of threads that hold
 * one: request-scoped code should prefer mongo_helper_acquire(). */
mongoc_database_t *mongo_helper_database (mongo_helper_error_t *error);

/* Returns the calling thread's cached client to the pool now instead of at
 * thread exit.  A later mongo_helper_database() takes one again. */
void mongo_helper_thread_release (void);

/* A client borrowed from the pool for one request or task. */
typedef struct mongo_helper_conn_t mongo_helper_conn_t;

/* Takes a client from the pool (initialising the singleton if needed).
 * Waits at most the pool wait (waitQueueTimeoutMS) when all are in use,
 * then fails with TIMEOUT.  The caller must mongo_helper_release() it, from
 * any thread, but use it from one thread at a time. */
mongo_helper_conn_t *mongo_helper_acquire (mongo_helper_error_t *error);

/* The connection's client and default database, owned by the connection
 * and valid until it is released. */
mongoc_client_t *mongo_helper_conn_client (mongo_helper_conn_t *conn);
mongoc_database_t *mongo_helper_conn_database (mongo_helper_conn_t *conn);

/* Gives the client back to the pool and frees the handle.  NULL is
 * allowed.  In a forked child, a connection acquired by the parent is
 * dropped without touching its socket. */
void mongo_helper_release (mongo_helper_conn_t *conn);

/* ---- Health --------------------------------------------------------- */

/* Sends `ping` to the deployment and returns true if it answered within
 * `timeout_ms` (<= 0: 2000 ms; more than MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS
 * is INVALID_ARGUMENT).  Uses one small dedicated client, not the
 * pool, so a /health endpoint answers quickly even when the pool is busy
 * or the server is down.  Fails with CONNECTION or TIMEOUT. */
bool mongo_helper_ping (int32_t timeout_ms, mongo_helper_error_t *error);

/* What the deployment says about itself. */
typedef struct {
   char version[32];  /* buildInfo.version, e.g. "7.0.2" */
   char topology[32]; /* "Single", "ReplicaSet" or "Sharded" */
   char set_name[64]; /* replica set name, or "" */
   int32_t max_wire_version;
   int64_t round_trip_us; /* time taken by the hello command */
} mongo_helper_server_info_t;

/* Asks the deployment (hello + buildInfo) within `timeout_ms` (as for
 * mongo_helper_ping()), with the same dedicated client. */
bool mongo_helper_server_info (int32_t timeout_ms,
                               mongo_helper_server_info_t *info,
                               mongo_helper_error_t *error);

/* ---- Commands ------------------------------------------------------- */

/* Runs `command` on the default database through the library's execution
 * path (the calling thread's pooled client, error mapping, metrics).  On
 * success `reply` (if not NULL) is initialised with the server's reply; on
 * failure it is initialised empty.  The caller always bson_destroy()s a
 * non-NULL reply.  Fails with the category of the server's or driver's
 * error, e.g. SERVER with code 59 for an unknown command. */
bool mongo_helper_command (const bson_t *command, bson_t *reply, mongo_helper_error_t *error);

/* ---- Resilience and metrics ---------------------------------------- */

/* Retries, circuit breaker, metrics and query checks (see README). */

/*
 * Which operations retry
 * ----------------------
 * Every operation runs through one execution path.  When an attempt fails
 * with a TRANSIENT error, the path waits (exponential backoff with full
 * jitter: a random time between 0 and min(retry_max_ms, retry_base_ms *
 * 2^(n-1)) before retry n) and runs the whole operation again, up to
 * retry_attempts attempts in all, but ONLY for operations that read
 * (mongo_helper_read_command(), and every library read) or writes the
 * library marks idempotent (an upsert by _id, index creation).  Plain
 * writes, including mongo_helper_command(), are never repeated by the
 * library: they rely on libmongoc's own retryable writes (retryWrites=true,
 * the default), which retries a single insert/update/delete/findAndModify
 * once, safely, with a server-side transaction number.  Likewise libmongoc
 * retries a read once by itself (retryReads=true) before the library's own
 * retries start.
 *
 * Transient means: a network error (libmongoc's stream domain), a server
 * selection failure (no reachable server / no primary within
 * serverSelectionTimeoutMS), or a server error with one of the codes that
 * MongoDB marks as retryable: 10107 NotWritablePrimary, 13435
 * NotPrimaryNoSecondaryOk, 13436 NotPrimaryOrSecondary, 11600
 * InterruptedAtShutdown, 11602 InterruptedDueToReplStateChange, 189
 * PrimarySteppedDown, 91 ShutdownInProgress, 6 HostUnreachable, 7
 * HostNotFound, 89 NetworkTimeout, 9001 SocketException, 134
 * ReadConcernMajorityNotAvailableYet, 262 ExceededTimeLimit; and any server
 * error the server labels RetryableWriteError (libmongoc has then already
 * retried a plain write once; the library does not repeat it and the
 * message names the label).  Never retried: duplicate keys,
 * validation, syntax or any other server error, bad arguments, pool wait
 * timeouts, authentication failures, garbage from the server (protocol
 * errors), maxTimeMS expiry (50).
 *
 * Settings (INI [db] key / environment variable, default):
 *   retry_attempts / MONGO_RETRY_ATTEMPTS, 3 (1 = no retries, max 10)
 *   retry_base_ms / MONGO_RETRY_BASE_MS, 100
 *   retry_max_ms / MONGO_RETRY_MAX_MS, 2000 (the cap of one wait)
 *   circuit_failure_threshold / MONGO_CIRCUIT_FAILURE_THRESHOLD, 5
 *      (0 disables the circuit breaker)
 *   circuit_cooldown_ms / MONGO_CIRCUIT_COOLDOWN_MS, 5000
 * The environment wins over the INI file; a value that is not a whole
 * number in range (the ranges: Limits) is a CONFIG error naming its source.
 */

#ifndef MONGO_HELPER_DEFAULT_RETRY_ATTEMPTS
#define MONGO_HELPER_DEFAULT_RETRY_ATTEMPTS 3
#endif
#ifndef MONGO_HELPER_DEFAULT_RETRY_BASE_MS
#define MONGO_HELPER_DEFAULT_RETRY_BASE_MS 100
#endif
#ifndef MONGO_HELPER_DEFAULT_RETRY_MAX_MS
#define MONGO_HELPER_DEFAULT_RETRY_MAX_MS 2000
#endif
#ifndef MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD
#define MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD 5
#endif
#ifndef MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS
#define MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS 5000
#endif

/* The retry and circuit-breaker settings of a configuration. */
typedef struct {
   int32_t attempts;            /* attempts in all, >= 1 */
   int32_t base_ms;             /* first backoff ceiling */
   int32_t max_ms;              /* cap of one backoff */
   int32_t circuit_threshold;   /* consecutive connection failures that
                                   open the circuit; 0 = never */
   int32_t circuit_cooldown_ms; /* how long an open circuit fails fast */
} mongo_helper_retry_policy_t;

/* Fills `policy` with the configuration's settings (all zero when either
 * argument is NULL). */
void mongo_helper_config_retry_policy (const mongo_helper_config_t *config,
                                       mongo_helper_retry_policy_t *policy);

/* Whether the execution path would retry after this driver error (see
 * "Which operations retry"), for callers that run libmongoc directly.  A
 * bson_error_t carries no error labels: check the reply for
 * RetryableWriteError (mongoc_error_has_label()) as well. */
bool mongo_helper_error_is_transient (const bson_error_t *error);

/* Appends maxTimeMS to an options document for libmongoc calls that take
 * `opts` (find, aggregate, count, *_command_with_opts): the server stops
 * the operation after `max_time_ms` and it fails with TIMEOUT (code 50).
 * libmongoc 1.23 has no client-side per-call deadline; socketTimeoutMS is
 * the client-side bound.  Fails with INVALID_ARGUMENT for a NULL `opts` or
 * a limit <= 0. */
bool
mongo_helper_opts_set_max_time (bson_t *opts, int32_t max_time_ms, mongo_helper_error_t *error);

/* Runs a read-only `command` (e.g. find, count, aggregate without $out,
 * dbStats) on the default database, with maxTimeMS `max_time_ms` when it
 * is > 0.  Unlike mongo_helper_command() it is retried on transient
 * errors.  `reply` as for mongo_helper_command(): always initialised when
 * not NULL, the caller bson_destroy()s it. */
bool mongo_helper_read_command (const bson_t *command,
                                int32_t max_time_ms,
                                bson_t *reply,
                                mongo_helper_error_t *error);

/*
 * Circuit breaker
 * ---------------
 * After circuit_failure_threshold consecutive CONNECTION failures
 * (network errors, server selection failures, socket timeouts, garbage
 * replies; counted per attempt, across all threads) the circuit OPENS: every operation
 * fails at once with MONGO_HELPER_ERROR_CIRCUIT_OPEN ("circuit open")
 * without touching the network, for circuit_cooldown_ms.  Then it is
 * HALF_OPEN: exactly one call goes through as a probe while the others
 * keep failing fast.  A probe that reaches the server (even with a server
 * error such as a duplicate key) closes the circuit; a probe that fails
 * to connect opens it for another cool-down.  Any success resets the count.
 * mongo_helper_ping() bypasses the breaker, so a health endpoint sees the
 * server itself.  A new initialisation starts with a closed circuit.
 */
typedef enum {
   MONGO_HELPER_CIRCUIT_CLOSED = 0,
   MONGO_HELPER_CIRCUIT_OPEN,
   MONGO_HELPER_CIRCUIT_HALF_OPEN
} mongo_helper_circuit_state_t;

typedef struct {
   mongo_helper_circuit_state_t state;
   int32_t consecutive_failures;
   int64_t opened_at_ms; /* wall clock (ms since 1970) of the last
                            opening, 0 if it never opened */
   int64_t retry_in_ms;  /* while OPEN: time left until the probe */
   uint64_t rejected;    /* calls failed fast since initialisation */
} mongo_helper_circuit_t;

/* Fills `circuit` with the breaker's current state.  Never fails. */
void mongo_helper_circuit_status (mongo_helper_circuit_t *circuit);

/* "closed", "open", "half_open" or "unknown".  Never NULL. */
const char *mongo_helper_circuit_state_name (mongo_helper_circuit_state_t state);

/*
 * Metrics
 * -------
 * Collected from the execution path (per operation: calls, errors by
 * category, retries, latency histogram over the whole call including
 * retries; always on, a few atomic additions per call) and from the
 * library's pool paths (clients in use, threads waiting, checkouts, wait
 * timeouts).  Per server command name (started, succeeded, failed, total
 * duration), from libmongoc's command monitoring, only with the setting
 * command_metrics = true ([db] key or MONGO_COMMAND_METRICS; default
 * false): libmongoc then builds an event per command, ~2,300 instructions
 * (bench/RESULTS.md), 2-6 % of a small operation's client CPU.  A command
 * counts as started when it finishes, since a "started" callback would
 * make libmongoc copy every command.  Without the setting the "commands"
 * family is empty.  The operation is named from
 * one fixed table (snake_case: "insert_one", "find", "sessions_load",
 * "cache_get", ...; README lists them); at most 64 command names are kept,
 * later ones count under "other".  Encrypted records that did not open
 * (see Sessions and Cache) are counted per operation and reason
 * (malformed, unknown_key, forged): decryption follows the operation,
 * whose own call then counts as ok.  Metrics survive shutdown and
 * re-initialisation; they hold names and numbers only, never a URI, user,
 * password, key or key id.
 */

/* Writes every metric in the Prometheus text exposition format (version
 * 0.0.4) into `buf`, NUL-terminated.  `*needed` (if not NULL) receives the
 * size the text needs including the NUL.  Fails with INVALID_ARGUMENT when
 * `buf` is NULL or `size` is smaller than that; call again with a buffer of
 * `*needed` bytes (it can grow between calls: add some room). */
bool mongo_helper_metrics_prometheus (char *buf,
                                      size_t size,
                                      size_t *needed,
                                      mongo_helper_error_t *error);

/* The same metrics as one JSON object (relaxed extended JSON):
 * {"operations": {KIND: {"calls", "ok", "retries", "errors": {CATEGORY:
 * n}, "latency_us_sum", "latency_buckets_ms": {LE: n}}},
 * "integrity_failures": {KIND: {REASON: n}}, "commands":
 * {NAME: {"started", "succeeded", "failed", "duration_us_sum"}}, "pool":
 * {"in_use", "waiting", "checkouts", "wait_timeouts"}, "circuit":
 * {"state", "consecutive_failures", "opened_at_ms", "rejected"}}.
 * Latency buckets count the calls that fell into each bucket (upper bound
 * LE ms, "inf" last), not cumulatively as Prometheus does.
 * Returns a new string the caller frees with bson_free(). */
char *mongo_helper_metrics_json_dup (mongo_helper_error_t *error);

/* Pool statistics only, as kept by the library's acquire/release paths. */
typedef struct {
   int64_t in_use;         /* clients taken from the pool, not given back */
   int64_t waiting;        /* threads waiting for a client right now */
   uint64_t checkouts;     /* clients taken since the process started */
   uint64_t wait_timeouts; /* waits that ended in TIMEOUT */
} mongo_helper_pool_stats_t;

/* Fills `stats`.  Never fails. */
void mongo_helper_pool_stats (mongo_helper_pool_stats_t *stats);

/* Sets every counter and histogram to zero (gauges such as in_use keep
 * their value).  For tests and for a process that reports deltas. */
void mongo_helper_metrics_reset (void);

/*
 * Query injection
 * ---------------
 * Request data (a form field, a JSON body) must never become a query
 * operator.  mongo_helper_filter_check() walks a filter at every depth,
 * through embedded documents and arrays (after checking, without
 * recursing, that it is nested at most MONGO_HELPER_MAX_DEPTH levels, see
 * Limits), and rejects:
 *   - server-side JavaScript: $where, $function, $accumulator and values of
 *     BSON type code, unless MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT;
 *   - $expr, unless MONGO_HELPER_FILTER_ALLOW_EXPR;
 *   - any other key starting with '$' where a plain value is expected, e.g.
 *     {user: {$ne: null}} or {user: {$gt: ""}}, and regular expression
 *     values (they match more than the value itself), unless
 *     MONGO_HELPER_FILTER_ALLOW_OPERATORS.  The logical operators $and,
 *     $or and $nor at the top level (and inside each other) are always
 *     allowed; their array elements are checked as filters.
 * The error is INVALID_ARGUMENT and names the offending key by its path,
 * e.g. "filter key 'profile.age.$gt' is a query operator where a plain
 * value is expected".
 */
#define MONGO_HELPER_FILTER_STRICT 0u
#define MONGO_HELPER_FILTER_ALLOW_OPERATORS (1u << 0)
#define MONGO_HELPER_FILTER_ALLOW_EXPR (1u << 1)
#define MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT (1u << 2)

/* Checks `filter` as described above.  Returns true when it is safe to
 * use, false with INVALID_ARGUMENT (NULL or corrupt filter, or a rejected
 * key).  The library's operations do not call it: check every filter
 * that holds request data before passing it on. */
bool mongo_helper_filter_check (const bson_t *filter, unsigned flags, mongo_helper_error_t *error);

/* Parses `json` (MongoDB extended JSON, at most 16 MB) and checks it like
 * mongo_helper_filter_check().  On success and when `out` is not NULL,
 * `out` is initialised with the filter and the caller bson_destroy()s it;
 * on failure `out` is initialised empty (and still destroyed by the
 * caller).  Fails with INVALID_ARGUMENT for malformed JSON too. */
bool mongo_helper_filter_check_json (const char *json,
                                     unsigned flags,
                                     bson_t *out,
                                     mongo_helper_error_t *error);

/* Parses an ObjectId that arrived as text: exactly 24 hexadecimal digits
 * (either case), nothing before or after.  Fills `oid` and returns true,
 * or fails with INVALID_ARGUMENT saying what is wrong (NULL, length,
 * which character is not hexadecimal).  `oid` is untouched on failure. */
bool mongo_helper_oid_from_string (const char *text, bson_oid_t *oid, mongo_helper_error_t *error);

/* ---- Limits --------------------------------------------------------- */

/*
 * Every size, count and duration a caller hands to the library has a
 * range, so request data passed on by a web backend cannot make it
 * allocate, recurse, wait or loop without bound.  An argument or option
 * outside its range fails with INVALID_ARGUMENT, naming it and the range,
 * before anything is sent; so does a document nested too deeply, before
 * anything walks it (the depth check itself does not recurse).  A setting
 * out of its range is a CONFIG error naming its source (the variable, or
 * the file and key).  Nothing is clamped silently.  Results the library
 * reads into memory have a byte cap (below).  The table lists every limit;
 * the section named in a group's title explains the values.
 *
 * What (argument)                     Range; default                    Beyond it
 * ----------------------------------- --------------------------------- ---------------------
 * Connector operations (sections "Connector operations: documents" and
 * "... files, streams, concurrency, stats"), Health and Commands:
 * nesting of every document, filter,  1 .. MONGO_HELPER_MAX_DEPTH (100) INVALID_ARGUMENT "is
 *  update, pipeline, projection, sort, levels; the top-level document is nested too deeply:
 *  index key/options, GridFS metadata  level 1, each embedded document, more than 100 levels"
 *  and document-valued file id, watch  array or code-with-scope scope
 *  pipeline/token, run_concurrent      adds one (MongoDB's own limit)
 *  descriptor, command, filter_check
 * nesting of the values the web       .. 99 levels: they are stored one  INVALID_ARGUMENT, as
 *  helpers store (cache values, session level down in the helper's own     above (checked on
 *  data, event metadata)               document                          the stored document)
 * size of one such document           .. MONGO_HELPER_MAX_DOCUMENT_SIZE INVALID_ARGUMENT
 * nesting of JSON text (*_json,       .. 98 levels: libbson's parser    INVALID_ARGUMENT
 *  json_to_bson, filter_check_json)    stops there ("LEVELS_EXCEEDED")   "invalid JSON"
 * find_stream, aggregate_stream       1 .. MONGO_HELPER_MAX_CHUNK_SIZE  INVALID_ARGUMENT
 *  chunk_size                          (100,000 documents)
 * find opts skip, limit               0 .. INT64_MAX; 0: none           INVALID_ARGUMENT (< 0)
 * find / aggregate opts batch_size    0 .. INT32_MAX; 0: the server's   INVALID_ARGUMENT (< 0)
 * insert_many n                       1 .. MONGO_HELPER_MAX_WRITE_BATCH INVALID_ARGUMENT
 *                                      (100,000; more: bulk_insert)
 * bulk_insert n                       1 .. no maximum (the caller's     INVALID_ARGUMENT (0)
 *                                      array, checked before sending)
 * bulk_insert batch_size              1 .. MONGO_HELPER_MAX_WRITE_BATCH INVALID_ARGUMENT
 * text_search, geo_near limit         0 .. INT64_MAX; 0: all            INVALID_ARGUMENT (< 0)
 * geo longitude, latitude             [-180, 180], [-90, 90]            INVALID_ARGUMENT
 * geo_near max_meters,                0 .. MONGO_HELPER_MAX_DISTANCE_M  INVALID_ARGUMENT
 *  geo_within_circle radius_meters     (half the Earth's circumference;  (NaN, infinity too)
 *                                      more covers the whole sphere)
 * geo_within_polygon n_points         3 (4 if closed) ..                INVALID_ARGUMENT
 *                                      MONGO_HELPER_MAX_POLYGON_POINTS
 * GridFS opts chunk_size              0: 255 KiB, or 1 ..               INVALID_ARGUMENT
 *                                      MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE
 * watch opts timeout_ms               <= 0: none, or 1 ..               INVALID_ARGUMENT
 *                                      MONGO_HELPER_MAX_WATCH_TIMEOUT_MS
 * watch opts max_await_time_ms        0: 1000, or 1 ..                  INVALID_ARGUMENT
 *                                      MONGO_HELPER_MAX_AWAIT_TIME_MS
 * watch opts batch_size               0 .. INT32_MAX; 0: the server's   INVALID_ARGUMENT (< 0)
 * run_concurrent n_ops                1 .. MONGO_HELPER_MAX_CONCURRENT_OPS INVALID_ARGUMENT
 * run_concurrent max_concurrent       1 .. MONGO_HELPER_MAX_CONCURRENT  INVALID_ARGUMENT
 *                                      (64); threads: also at most the
 *                                      pool's maxPoolSize
 * ping, server_info timeout_ms        <= 0: 2000, or 1 ..               INVALID_ARGUMENT
 *                                      MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS
 * opts_set_max_time max_time_ms       1 .. INT32_MAX (the server's)     INVALID_ARGUMENT
 * read_command max_time_ms            <= 0: none, or 1 .. INT32_MAX     -
 *
 * Web-backend helpers (sections "Common to the three helpers below",
 * Sessions, Cache, Event log); MAX_DURATION is MONGO_HELPER_MAX_DURATION_MS
 * (100 years):
 * sessions idle_lifetime_ms           1 .. MAX_DURATION; 14 days        INVALID_ARGUMENT
 * sessions absolute_lifetime_ms       0: none, or 1 .. MAX_DURATION; 0  INVALID_ARGUMENT
 * sessions touch_interval_ms          0 .. MAX_DURATION; 60000          INVALID_ARGUMENT
 * sessions regenerate_grace_ms        0 .. MAX_DURATION; 0              INVALID_ARGUMENT
 * session id (every call taking one)  43 base64url characters           NOT_FOUND, like an
 *                                      (MONGO_HELPER_SESSION_ID_LEN)    unknown id (it never
 *                                                                       reaches a filter)
 * sessions_set, _unset field names    non-empty, not starting with '$', INVALID_ARGUMENT
 *                                      no '.'
 * sessions_unset n                    1 ..                              INVALID_ARGUMENT (0)
 * sessions_rekey, cache_rekey         0: 500, or 1 .. 100,000           INVALID_ARGUMENT
 *  batch_size                          (MONGO_HELPER_REKEY_DEFAULT_BATCH,
 *                                      MONGO_HELPER_REKEY_MAX_BATCH)
 * cache key                           non-empty UTF-8, any length: past INVALID_ARGUMENT
 *                                      max_key_length it is hashed      (NULL, empty, not
 *                                                                       UTF-8)
 * cache max_key_length                1 .. 1000; 200                    INVALID_ARGUMENT
 * cache ttl_ms (set, set_bytes, add,  < 0: never expires; 0: the        INVALID_ARGUMENT
 *  incr, touch, get_or_compute)        handle's default_ttl_ms; or 1 ..
 *                                      MAX_DURATION
 * cache default_ttl_ms                <= 0: never expires, or 1 ..      INVALID_ARGUMENT
 *                                      MAX_DURATION; 300000
 * cache lease_ms                      1 .. MAX_DURATION; 10000          INVALID_ARGUMENT
 * cache wait_ms                       0 .. MAX_DURATION; 5000           INVALID_ARGUMENT
 * cache poll_ms                       1 .. MAX_DURATION; 25             INVALID_ARGUMENT
 * cache_get_many n                    1 .. as many keys as one 16 MiB   INVALID_ARGUMENT
 *                                      filter holds
 * eventlog retention_s                0: kept forever, or 1 ..          INVALID_ARGUMENT
 *                                      MONGO_HELPER_EVENTLOG_MAX_RETENTION_S
 *                                      (INT32_MAX s, the server's
 *                                      expireAfterSeconds); 90 days
 * eventlog granularity                "seconds", "minutes", "hours";    INVALID_ARGUMENT
 *                                      "seconds"
 * eventlog_log, event_writer_log      0: now, or 1 .. INT64_MAX (ms     INVALID_ARGUMENT (< 0)
 *  timestamp_ms                        since 1970)
 * user_id, event_type                 non-empty UTF-8 (a session's      INVALID_ARGUMENT
 *                                      user_id may also be NULL)
 * eventlog_query limit                <= 0: 100, or 1 .. INT32_MAX      - (the results stop
 *                                                                       at max_result_bytes)
 * eventlog_query since_ms, until_ms   <= 0: no bound                    -
 * event writer queue_size             1 .. 1,000,000; 10000             INVALID_ARGUMENT
 *                                      (MONGO_HELPER_EVENT_WRITER_MAX_QUEUE)
 * event writer batch_size             1 .. 100,000; 500                 INVALID_ARGUMENT
 *                                      (MONGO_HELPER_EVENT_WRITER_MAX_BATCH)
 * event writer flush_interval_ms      1 .. INT32_MAX; 1000              INVALID_ARGUMENT
 * event writer block_timeout_ms       0 .. INT32_MAX; 100               INVALID_ARGUMENT
 * event writer backoff_min_ms,        1 .. backoff_max_ms; 100,         INVALID_ARGUMENT
 *  backoff_max_ms                      backoff_min_ms .. INT32_MAX; 5000
 * event_writer_flush timeout_ms       <= 0: no wait, or 1 .. INT32_MAX  -
 * event_writer_destroy deadline_ms    <= 0: no more writes, or 1 ..     -
 *                                      INT32_MAX; returns at most 100 ms
 *                                      past it
 *
 * Configuration (sections Configuration and "Resilience and metrics";
 * INI [db] key, whose environment variable is MONGO_ and the key in
 * capitals, e.g. MONGO_RETRY_ATTEMPTS; the URI option, where there is
 * one, has the same range; conf/mongo_helper.ini lists every key):
 * max_pool_size, min_pool_size,       0 .. INT32_MAX; libmongoc's       CONFIG
 *  max_idle_time_ms,                   defaults: 100, 0, 0, 10000,
 *  connect_timeout_ms,                 30000, 300000
 *  server_selection_timeout_ms,
 *  socket_timeout_ms
 * wait_queue_timeout_ms (pool wait)   1 .. INT32_MAX; 10000             CONFIG
 * retry_attempts (attempts in all)    1 .. 10; 3                        CONFIG
 * retry_base_ms                       0 .. 60000; 100                   CONFIG
 * retry_max_ms                        0 .. 600000; 2000                 CONFIG
 * circuit_failure_threshold           0: no breaker, or 1 .. 1000000; 5 CONFIG
 * circuit_cooldown_ms                 1 .. 3600000; 5000                CONFIG
 * max_result_bytes                    1024 .. INT32_MAX; 64 MiB         CONFIG
 * default_max_time_ms                 0: none, or 1 .. INT32_MAX; 0     CONFIG
 * key ring entry (session_keys,       id: 1 .. 32 of A-Z a-z 0-9 _ -,   CONFIG (naming the
 *  cache_keys, a key file's lines,     unique; key: exactly 32 bytes in entry or line, never
 *  options keys / key_file)            base64; text or file, not both   the key)
 *
 * Results in memory.  find, find_json, find_one_json, find_by_id_json,
 * text_search, the geo searches, aggregate, aggregate_json, gridfs_get,
 * gridfs_find, and the web helpers' multi-document reads (cache_get_many,
 * eventlog_query) stop with INVALID_ARGUMENT "the results pass
 * max_result_bytes (N bytes): ..." once what they hold in memory (the BSON
 * array, the JSON text, the file's bytes) would pass max_result_bytes; the
 * message names what to use instead (a stream, a limit, a writer).  The cap
 * is checked before each copy, so memory never passes it by more than one
 * JSON-rendered document.  mongo_helper_array_to_json(), which has no
 * configuration at hand, caps its text at
 * MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES.  A single document (find_one) is
 * bounded by MongoDB's 16 MiB.  Streams hold one chunk: a chunk is handed
 * over early, with fewer documents, when the next document would take its
 * bytes past max_result_bytes.
 *
 * Default maxTimeMS.  With default_max_time_ms > 0, every find, count,
 * distinct, findAndModify and aggregation the library issues (the
 * documents operations, streams, and the web helpers' reads) carries
 * maxTimeMS = default_max_time_ms unless its options already carry one
 * (e.g. find_json's opts_json); a query that runs longer fails with
 * TIMEOUT (code 50).  Writes, change streams and commands are not
 * affected.
 *
 * The environment wins over the INI file for every setting above.
 */
#define MONGO_HELPER_MAX_DEPTH 100
#define MONGO_HELPER_MAX_CHUNK_SIZE 100000
#define MONGO_HELPER_MAX_WRITE_BATCH 100000
#define MONGO_HELPER_MAX_POLYGON_POINTS 100000
/* The sphere the geo searches measure on, and half its circumference. */
#define MONGO_HELPER_EARTH_RADIUS_M 6378100.0
#define MONGO_HELPER_MAX_DISTANCE_M (3.141592653589793 * MONGO_HELPER_EARTH_RADIUS_M)
#define MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE (15 * 1024 * 1024)
#define MONGO_HELPER_MAX_WATCH_TIMEOUT_MS (7 * 24 * 3600 * 1000)
#define MONGO_HELPER_MAX_AWAIT_TIME_MS 60000
#define MONGO_HELPER_MAX_CONCURRENT_OPS 100000
#define MONGO_HELPER_MAX_CONCURRENT 64
#define MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS 60000
#define MONGO_HELPER_MIN_MAX_RESULT_BYTES 1024

#ifndef MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES
#define MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES (64 * 1024 * 1024)
#endif
#ifndef MONGO_HELPER_DEFAULT_MAX_TIME_MS
#define MONGO_HELPER_DEFAULT_MAX_TIME_MS 0
#endif

/* ---- Connector operations: documents ------------------------------- */

/* CRUD, bulk, aggregation, streaming, indexes, text and geo search. */

/*
 * Targets, in one paragraph
 * -------------------------
 * Every operation below names its collection as (database, collection):
 * `database` NULL means the singleton's default database (see
 * Configuration), any other value a database of that name on the same
 * deployment.  `collection` must be a non-empty name.  An empty
 * `database` or one containing any of / \ . space " $, and a NULL or empty
 * `collection` or one containing '$', fail with INVALID_ARGUMENT before
 * anything is sent.  Each call runs on the calling thread's pooled client
 * (see mongo_helper_database()).
 *
 * Documents, filters and JSON, in one paragraph
 * ---------------------------------------------
 * Filters, documents, updates and pipelines are borrowed bson_t's.  NULL
 * as a filter means "every document".  A document larger than 16 MB
 * (MONGO_HELPER_MAX_DOCUMENT_SIZE) or nested deeper than 100 levels
 * (MONGO_HELPER_MAX_DEPTH; projections, sorts and options included) is
 * refused with INVALID_ARGUMENT before it is sent or walked.  Results held
 * in memory stop at max_result_bytes; see Limits for every range.  Web handlers that hold JSON text
 * use the *_json variants, or turn any JSON into a bson_t with mongo_helper_json_to_bson();
 * malformed JSON is INVALID_ARGUMENT with libbson's message (line and position). Functions that
 * return JSON return relaxed extended JSON (numbers as numbers, dates as {"$date": "..."}) in a
 * string the caller frees with bson_free().  Functions that return many documents fill a caller's
 * `bson_t *results` as a BSON array ("0", "1", ...): it is initialised on
 * success AND on failure, so the caller always bson_destroy()s it.
 * A unique index violation is DUPLICATE_KEY with the server's message,
 * which names the index and the duplicate key value.
 */

/* The server's limit on one document (and one command). */
#define MONGO_HELPER_MAX_DOCUMENT_SIZE (16 * 1024 * 1024)

/* Parses JSON text (canonical or relaxed extended JSON; a top-level array
 * becomes an array document "0", "1", ...).  Returns a new bson_t the
 * caller frees with bson_destroy(), or NULL with INVALID_ARGUMENT quoting
 * libbson's parse error (it names the line and position) when `json` is
 * NULL or malformed, nested deeper than libbson's parser allows (98
 * levels), or parses to a document over 16 MB. */
bson_t *mongo_helper_json_to_bson (const char *json, mongo_helper_error_t *error);

/* Renders the documents of an array document (as filled by
 * mongo_helper_find() and friends) as one relaxed extended JSON array,
 * "[{...}, {...}]".  Returns a string the caller frees with bson_free(),
 * or NULL with INVALID_ARGUMENT when `array` is NULL or holds something
 * other than documents, a document nested deeper than 100 levels, or the
 * text would pass MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES. */
char *mongo_helper_array_to_json (const bson_t *array, mongo_helper_error_t *error);

/* Inserts one document.  When `doc` has no _id, one ObjectId is generated
 * here (so the caller learns it) and sent.  If `id` is not NULL it
 * receives a copy of the _id on success, which the caller frees with
 * bson_value_destroy(); on failure it is left with value_type BSON_TYPE_EOD
 * (destroying it is harmless).  Fails with DUPLICATE_KEY, INVALID_ARGUMENT
 * (NULL / oversized document, bad names) or the category of the server's
 * error. */
bool mongo_helper_insert_one (const char *database,
                              const char *collection,
                              const bson_t *doc,
                              bson_value_t *id,
                              mongo_helper_error_t *error);

/* mongo_helper_insert_one() with the document as JSON text. */
bool mongo_helper_insert_one_json (const char *database,
                                   const char *collection,
                                   const char *json,
                                   bson_value_t *id,
                                   mongo_helper_error_t *error);

/* Inserts `n` documents (1 to MONGO_HELPER_MAX_WRITE_BATCH) in one
 * insertMany.  `ordered`: stop at the first
 * failure (true) or try every document (false).  `inserted` (may be NULL)
 * receives how many landed, also on failure.  For large arrays, per-document
 * failures and batching use mongo_helper_bulk_insert(). */
bool mongo_helper_insert_many (const char *database,
                               const char *collection,
                               const bson_t *const *docs,
                               size_t n,
                               bool ordered,
                               int64_t *inserted,
                               mongo_helper_error_t *error);

/* Options of the find family.  Zero-initialise it ({0} or memset) and set
 * what you need; every pointer is borrowed.  NULL options mean defaults. */
typedef struct {
   const bson_t *projection; /* e.g. {"name": 1, "_id": 0}; NULL: all */
   const bson_t *sort;       /* e.g. {"age": -1}; NULL: server order */
   int64_t skip;             /* documents to skip; < 0 is invalid */
   int64_t limit;            /* at most this many; 0: no limit; < 0 is
                                invalid */
   int32_t batch_size;       /* documents per server round trip; 0: the
                                server's default (streams: the chunk) */
} mongo_helper_find_opts_t;

/* Returns the first document matching `filter` (after `opts`' sort and
 * skip, with its projection) as a new bson_t the caller bson_destroy()s.
 * Returns NULL with NOT_FOUND when nothing matches, or with the category
 * of the failure. */
bson_t *mongo_helper_find_one (const char *database,
                               const char *collection,
                               const bson_t *filter,
                               const mongo_helper_find_opts_t *opts,
                               mongo_helper_error_t *error);

/* mongo_helper_find_one() for web handlers: filter and projection as JSON
 * text (`projection_json` may be NULL), the document as relaxed extended
 * JSON the caller frees with bson_free().  NULL with NOT_FOUND when nothing
 * matches. */
char *mongo_helper_find_one_json (const char *database,
                                  const char *collection,
                                  const char *filter_json,
                                  const char *projection_json,
                                  mongo_helper_error_t *error);

/* Finds the document whose _id is the ObjectId written as 24 hex digits in
 * `oid_hex` and returns it as relaxed extended JSON (bson_free() it).
 * Fails with INVALID_ARGUMENT when `oid_hex` is not a valid ObjectId, and
 * NOT_FOUND when no document has it. */
char *mongo_helper_find_by_id_json (const char *database,
                                    const char *collection,
                                    const char *oid_hex,
                                    mongo_helper_error_t *error);

/* Fills `results` (always initialised, see above) with every document
 * matching `filter`, shaped by `opts` (projection, sort, skip, limit).  The
 * whole result is held in memory, so it fails with INVALID_ARGUMENT once it
 * would pass max_result_bytes (see Limits): for large results use
 * mongo_helper_find_stream(). */
bool mongo_helper_find (const char *database,
                        const char *collection,
                        const bson_t *filter,
                        const mongo_helper_find_opts_t *opts,
                        bson_t *results,
                        mongo_helper_error_t *error);

/* mongo_helper_find() for web handlers.  `filter_json` may be NULL (all
 * documents); `opts_json` (may be NULL) uses the find command's own names:
 * {"projection": {...}, "sort": {...}, "skip": n, "limit": n}, and a
 * "maxTimeMS" there wins over the configured default.  Returns the
 * documents as a relaxed extended JSON array the caller bson_free()s; the
 * array and its text each stop at max_result_bytes. */
char *mongo_helper_find_json (const char *database,
                              const char *collection,
                              const char *filter_json,
                              const char *opts_json,
                              mongo_helper_error_t *error);

/* Receives one chunk of a stream: `docs[0..n-1]`, valid only during the
 * call (copy what you keep).  Return true for the next chunk, false to
 * stop the stream early (which is not an error). */
typedef bool (*mongo_helper_chunk_fn) (const bson_t *const *docs, size_t n, void *user_data);

/* Streams the documents matching `filter` (with `opts`' sort, projection,
 * skip and limit) to `fn` in chunks of `chunk_size` (1 to
 * MONGO_HELPER_MAX_CHUNK_SIZE; the last chunk may be shorter, and so is a
 * chunk whose next document would take it past max_result_bytes).  Memory
 * stays bounded by one chunk plus one server batch (batch_size defaults to
 * chunk_size), whatever the collection's size.  Returns true when the
 * cursor was exhausted or `fn` stopped it; false with INVALID_ARGUMENT for
 * a chunk_size out of range or a NULL `fn`, or the category of a server
 * failure (chunks already delivered stay delivered; the call is never
 * repeated behind the caller's back). */
bool mongo_helper_find_stream (const char *database,
                               const char *collection,
                               const bson_t *filter,
                               const mongo_helper_find_opts_t *opts,
                               size_t chunk_size,
                               mongo_helper_chunk_fn fn,
                               void *user_data,
                               mongo_helper_error_t *error);

/* What an update or replace did. */
typedef struct {
   int64_t matched;          /* documents the filter matched */
   int64_t modified;         /* documents actually changed */
   int64_t upserted;         /* 1 when an upsert inserted a document, else 0 */
   bson_value_t upserted_id; /* that document's _id; value_type
                                BSON_TYPE_EOD when none */
} mongo_helper_update_result_t;

/* Frees the upserted _id held by `result` (NULL allowed).  Call it after
 * every update/replace that was given a result, success or not. */
void mongo_helper_update_result_cleanup (mongo_helper_update_result_t *result);

/* Applies `update` (operators such as {"$set": {...}}) to the first
 * document matching `filter` (not NULL: pass {} for "any"); with `upsert`,
 * inserts one when none matches.  An update without operators is
 * INVALID_ARGUMENT (that is what replace_one is for).  `result` may be NULL; if not, it is always
 * filled (zeroes on failure) and must be passed to mongo_helper_update_result_cleanup(). */
bool mongo_helper_update_one (const char *database,
                              const char *collection,
                              const bson_t *filter,
                              const bson_t *update,
                              bool upsert,
                              mongo_helper_update_result_t *result,
                              mongo_helper_error_t *error);

/* Like mongo_helper_update_one() for every matching document. */
bool mongo_helper_update_many (const char *database,
                               const char *collection,
                               const bson_t *filter,
                               const bson_t *update,
                               bool upsert,
                               mongo_helper_update_result_t *result,
                               mongo_helper_error_t *error);

/* mongo_helper_update_one() / _many() (`many`) with JSON text. */
bool mongo_helper_update_json (const char *database,
                               const char *collection,
                               const char *filter_json,
                               const char *update_json,
                               bool many,
                               bool upsert,
                               mongo_helper_update_result_t *result,
                               mongo_helper_error_t *error);

/* Replaces the first document matching `filter` (not NULL: pass {} for
 * "any") by `replacement` (no operators; its _id, if any, must match).
 * `upsert` and `result` as for mongo_helper_update_one(). */
bool mongo_helper_replace_one (const char *database,
                               const char *collection,
                               const bson_t *filter,
                               const bson_t *replacement,
                               bool upsert,
                               mongo_helper_update_result_t *result,
                               mongo_helper_error_t *error);

/* Deletes the first (delete_one) or every (delete_many) document matching
 * `filter`.  Both refuse a NULL filter with INVALID_ARGUMENT, so an unset
 * variable never empties a collection: pass an empty document to mean
 * "all".  `deleted` (may be NULL) receives the count. */
bool mongo_helper_delete_one (const char *database,
                              const char *collection,
                              const bson_t *filter,
                              int64_t *deleted,
                              mongo_helper_error_t *error);
bool mongo_helper_delete_many (const char *database,
                               const char *collection,
                               const bson_t *filter,
                               int64_t *deleted,
                               mongo_helper_error_t *error);

/* Counts the documents matching `filter` exactly (an aggregation on the
 * server).  The server cannot count with $near / $nearSphere: such a
 * filter is refused with INVALID_ARGUMENT (use $geoWithin instead). */
bool mongo_helper_count_documents (const char *database,
                                   const char *collection,
                                   const bson_t *filter,
                                   int64_t *count,
                                   mongo_helper_error_t *error);

/* The collection's document count from its metadata: fast, but may be off
 * after an unclean shutdown and ignores filters. */
bool mongo_helper_estimated_count (const char *database,
                                   const char *collection,
                                   int64_t *count,
                                   mongo_helper_error_t *error);

/* Fills `values` (always initialised, an array) with the distinct values
 * of `field` (dotted paths allowed) among documents matching `filter`. */
bool mongo_helper_distinct (const char *database,
                            const char *collection,
                            const char *field,
                            const bson_t *filter,
                            bson_t *values,
                            mongo_helper_error_t *error);

/* One document a bulk insert could not insert. */
typedef struct {
   size_t index;  /* position in the caller's array */
   int32_t code;  /* server error code, e.g. 11000 */
   char *message; /* the server's message */
} mongo_helper_bulk_failure_t;

/* What a bulk insert did.  Owned by the caller: free it with
 * mongo_helper_bulk_result_destroy(). */
typedef struct {
   int64_t inserted;                      /* documents that landed */
   size_t batches;                        /* batches sent */
   size_t n_failures;                     /* entries in `failures` */
   mongo_helper_bulk_failure_t *failures; /* in input order */
} mongo_helper_bulk_result_t;

/* Frees a bulk result and its messages.  NULL is allowed. */
void mongo_helper_bulk_result_destroy (mongo_helper_bulk_result_t *result);

/* Inserts `n` documents in batches of `batch_size` (one
 * mongoc_bulk_operation_t each).  Ordered: batches run in order and the
 * run stops at the first failing document.  Unordered: every document is
 * tried, and the failures are reported while the rest land.  Every
 * document is checked (not NULL, at most 16 MB) before anything is sent.
 * `result` (may be NULL) receives a new result once the input passed
 * those checks, also when the call then fails (it says how many landed);
 * it stays NULL after an INVALID_ARGUMENT.  Returns true only when every
 * document was inserted; false with INVALID_ARGUMENT (batch_size 0 or over
 * MONGO_HELPER_MAX_WRITE_BATCH, docs NULL or n 0, a bad document, named by
 * its index), DUPLICATE_KEY when the
 * first failing document was a duplicate (the message names its index and
 * key), SERVER for other per-document failures, or the category of a
 * connection or server error that stopped the run. */
bool mongo_helper_bulk_insert (const char *database,
                               const char *collection,
                               const bson_t *const *docs,
                               size_t n,
                               size_t batch_size,
                               bool ordered,
                               mongo_helper_bulk_result_t **result,
                               mongo_helper_error_t *error);

/* Aggregation options.  Zero-initialise; NULL options mean defaults. */
typedef struct {
   bool allow_disk_use; /* let stages spill to disk (allowDiskUse) */
   int32_t batch_size;  /* documents per round trip (cursor.batchSize);
                           0: server default (streams: the chunk) */
} mongo_helper_aggregate_opts_t;

/* Runs `pipeline` (an array document of stages, e.g. $match, $group,
 * $lookup, $facet, $graphLookup) and fills `results` (always initialised)
 * with every output document, failing with INVALID_ARGUMENT once they
 * would pass max_result_bytes.  For large outputs use
 * mongo_helper_aggregate_stream(). */
bool mongo_helper_aggregate (const char *database,
                             const char *collection,
                             const bson_t *pipeline,
                             const mongo_helper_aggregate_opts_t *opts,
                             bson_t *results,
                             mongo_helper_error_t *error);

/* mongo_helper_aggregate() with the pipeline as a JSON array of stages;
 * returns a relaxed extended JSON array the caller bson_free()s (its text
 * too stops at max_result_bytes). */
char *mongo_helper_aggregate_json (const char *database,
                                   const char *collection,
                                   const char *pipeline_json,
                                   const mongo_helper_aggregate_opts_t *opts,
                                   mongo_helper_error_t *error);

/* Streams the pipeline's output to `fn` in chunks of `chunk_size`, with
 * the same contract as mongo_helper_find_stream(). */
bool mongo_helper_aggregate_stream (const char *database,
                                    const char *collection,
                                    const bson_t *pipeline,
                                    const mongo_helper_aggregate_opts_t *opts,
                                    size_t chunk_size,
                                    mongo_helper_chunk_fn fn,
                                    void *user_data,
                                    mongo_helper_error_t *error);

/* Creates one index with the createIndexes command.  `keys` is the key
 * pattern: {"a": 1} (single), {"a": 1, "b": -1} (compound),
 * {"title": "text", "body": "text"} (text), {"loc": "2dsphere"}.
 * `options` (may be NULL) holds the index options as the server names
 * them: {"unique": true}, {"expireAfterSeconds": 3600} (TTL, on a date
 * field), {"weights": {"title": 10}, "default_language": "english"},
 * {"name": "..."}.  Without a name the server's convention is used
 * (mongoc_collection_keys_to_index_string(), e.g. "a_1_b_-1").  If
 * `name_out` is not NULL it receives the index name (bson_free() it).
 * Creating an index that exists with the same options succeeds.  Keys and
 * options are depth-checked like documents. */
bool mongo_helper_create_index (const char *database,
                                const char *collection,
                                const bson_t *keys,
                                const bson_t *options,
                                char **name_out,
                                mongo_helper_error_t *error);

/* Fills `indexes` (always initialised, an array) with the collection's
 * index descriptions as listIndexes returns them ({"v", "key", "name",
 * ...}). */
bool mongo_helper_list_indexes (const char *database,
                                const char *collection,
                                bson_t *indexes,
                                mongo_helper_error_t *error);

/* Drops the index called `name`.  Fails with SERVER code 27
 * (IndexNotFound) when there is none. */
bool mongo_helper_drop_index (const char *database,
                              const char *collection,
                              const char *name,
                              mongo_helper_error_t *error);

/* Full-text search: documents matching {"$text": {"$search": search,
 * "$language": language}} (language NULL: the index's default) and, if
 * given, `filter`'s other conditions; each with a "score" field
 * ({"$meta": "textScore"}), best score first, at most `limit` (0: all).
 * Needs a text index on the collection (SERVER code 27 otherwise). */
bool mongo_helper_text_search (const char *database,
                               const char *collection,
                               const char *search,
                               const char *language,
                               const bson_t *filter,
                               int64_t limit,
                               bson_t *results,
                               mongo_helper_error_t *error);

/* Documents whose GeoJSON point in `field` lies within `max_meters` of
 * (longitude, latitude), nearest first ($nearSphere with $geometry), at
 * most `limit` (0: all).  Needs a 2dsphere index on `field`.  Coordinates
 * outside [-180, 180] x [-90, 90], a distance outside 0 ..
 * MONGO_HELPER_MAX_DISTANCE_M (NaN and infinity included) or a negative
 * limit are INVALID_ARGUMENT. */
bool mongo_helper_geo_near (const char *database,
                            const char *collection,
                            const char *field,
                            double longitude,
                            double latitude,
                            double max_meters,
                            int64_t limit,
                            bson_t *results,
                            mongo_helper_error_t *error);

/* Documents whose `field` lies within a polygon of `n_points` corners given
 * as longitude, latitude pairs in `lng_lat[0 .. 2 * n_points - 1]` (3 to
 * MONGO_HELPER_MAX_POLYGON_POINTS corners, at least 3 distinct; the ring
 * is closed here if the caller did not repeat
 * the first corner), using $geoWithin with a GeoJSON Polygon.  No index is
 * needed.  A `double corners[N][2]` array is passed as &corners[0][0]. */
bool mongo_helper_geo_within_polygon (const char *database,
                                      const char *collection,
                                      const char *field,
                                      const double *lng_lat,
                                      size_t n_points,
                                      bson_t *results,
                                      mongo_helper_error_t *error);

/* Documents whose `field` lies within `radius_meters` of (longitude,
 * latitude) on the sphere ($geoWithin with $centerSphere, radius in
 * radians of the Earth's 6378.1 km).  Unlike mongo_helper_geo_near() the
 * result is unsorted, needs no index, and works with count_documents. */
bool mongo_helper_geo_within_circle (const char *database,
                                     const char *collection,
                                     const char *field,
                                     double longitude,
                                     double latitude,
                                     double radius_meters,
                                     bson_t *results,
                                     mongo_helper_error_t *error);

/* ---- Connector operations: files, streams, concurrency, stats ------ */

/* GridFS, change streams, concurrent operations, statistics. */

/*
 * Which database and bucket a GridFS call uses.  Pass NULL for all
 * defaults.  Content type: the GridFS specification dropped the top-level
 * `contentType` field of the files collection, so this library stores the
 * content type as `metadata.contentType` (what current drivers and tools
 * read); a `contentType` key already in the caller's metadata is replaced
 * by the `content_type` argument when that argument is not NULL.
 */
typedef struct {
   const char *database; /* NULL: the default database */
   const char *bucket;   /* NULL: "fs" (collections fs.files, fs.chunks) */
   int32_t chunk_size;   /* bytes per chunk; 0: libmongoc's 255 KiB; at
                            most MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE */
} mongo_helper_gridfs_opts_t;

/* Supplies the bytes of an upload: copy at most `len` bytes into `buf` and
 * return how many were copied, 0 at end of data, or -1 to abort the upload
 * (the chunks written so far are removed). */
typedef int64_t (*mongo_helper_read_fn) (void *buf, size_t len, void *user_data);

/* Receives the bytes of a download in order; return false to abort. */
typedef bool (*mongo_helper_write_fn) (const void *buf, size_t len, void *user_data);

/* Stores `len` bytes at `data` as a GridFS file named `filename` (any
 * size, also over 16 MB: GridFS splits it into chunks).  `content_type`
 * and `metadata` may be NULL.  On success `file_id` (if not NULL) holds the
 * new file's ObjectId: bson_value_destroy() it.  Fails with
 * INVALID_ARGUMENT (NULL/empty filename, NULL data with len > 0, bad
 * options, metadata over 16 MB or nested deeper than 100 levels) or the
 * server's error; a failed upload leaves no chunks. */
bool mongo_helper_gridfs_put (const mongo_helper_gridfs_opts_t *opts,
                              const char *filename,
                              const void *data,
                              size_t len,
                              const char *content_type,
                              const bson_t *metadata,
                              bson_value_t *file_id,
                              mongo_helper_error_t *error);

/* Like mongo_helper_gridfs_put() with the content of the file at `path`.
 * `filename` NULL: the last component of `path`.  A missing or unreadable
 * file fails with INVALID_ARGUMENT naming the path. */
bool mongo_helper_gridfs_put_file (const mongo_helper_gridfs_opts_t *opts,
                                   const char *filename,
                                   const char *path,
                                   const char *content_type,
                                   const bson_t *metadata,
                                   bson_value_t *file_id,
                                   mongo_helper_error_t *error);

/* Like mongo_helper_gridfs_put() with the bytes read from `source` until
 * it reports end of stream.  The stream is borrowed: not closed or freed. */
bool mongo_helper_gridfs_put_stream (const mongo_helper_gridfs_opts_t *opts,
                                     const char *filename,
                                     mongoc_stream_t *source,
                                     const char *content_type,
                                     const bson_t *metadata,
                                     bson_value_t *file_id,
                                     mongo_helper_error_t *error);

/* Like mongo_helper_gridfs_put() with the bytes `read` supplies until it
 * returns 0.  When it returns -1 the upload fails with INVALID_ARGUMENT
 * and leaves no chunks behind. */
bool mongo_helper_gridfs_put_reader (const mongo_helper_gridfs_opts_t *opts,
                                     const char *filename,
                                     mongo_helper_read_fn read,
                                     void *user_data,
                                     const char *content_type,
                                     const bson_t *metadata,
                                     bson_value_t *file_id,
                                     mongo_helper_error_t *error);

/* Reads the whole file with id `file_id` into memory.  On success `*data`
 * is a new buffer of `*len` bytes plus a terminating NUL (so text can be
 * used as a string); the caller frees it with bson_free().  On failure
 * `*data` is NULL and `*len` 0.  A missing file fails with NOT_FOUND, a
 * file larger than max_result_bytes with INVALID_ARGUMENT (read it with
 * mongo_helper_gridfs_get_writer(), _get_file() or _get_stream(), which
 * hold one piece at a time).  A `file_id` that is a document is
 * depth-checked, in every GridFS call that takes one. */
bool mongo_helper_gridfs_get (const mongo_helper_gridfs_opts_t *opts,
                              const bson_value_t *file_id,
                              uint8_t **data,
                              size_t *len,
                              mongo_helper_error_t *error);

/* Writes the file's content to `path` (created or truncated).  On failure
 * a partly written file is removed.  NOT_FOUND for a missing file,
 * INVALID_ARGUMENT when `path` cannot be written. */
bool mongo_helper_gridfs_get_file (const mongo_helper_gridfs_opts_t *opts,
                                   const bson_value_t *file_id,
                                   const char *path,
                                   mongo_helper_error_t *error);

/* Writes the file's content to `destination` (borrowed, not closed). */
bool mongo_helper_gridfs_get_stream (const mongo_helper_gridfs_opts_t *opts,
                                     const bson_value_t *file_id,
                                     mongoc_stream_t *destination,
                                     mongo_helper_error_t *error);

/* Hands the file's content to `write` in order, in pieces of up to
 * 255 KiB.  When `write` returns false the download stops and fails with
 * INVALID_ARGUMENT ("aborted by the callback"). */
bool mongo_helper_gridfs_get_writer (const mongo_helper_gridfs_opts_t *opts,
                                     const bson_value_t *file_id,
                                     mongo_helper_write_fn write,
                                     void *user_data,
                                     mongo_helper_error_t *error);

/* Finds the files named `filename` (NULL: every file of the bucket),
 * oldest upload first.  On success `files` is initialised as a BSON array
 * ("0", "1", ...) of the files documents (_id, length, chunkSize,
 * uploadDate, filename, metadata) and `*count` (if not NULL) holds their
 * number; on failure `files` is initialised empty.  The caller always
 * bson_destroy()s `files`.  No match is success with zero files; files
 * documents past max_result_bytes in all are INVALID_ARGUMENT. */
bool mongo_helper_gridfs_find (const mongo_helper_gridfs_opts_t *opts,
                               const char *filename,
                               bson_t *files,
                               size_t *count,
                               mongo_helper_error_t *error);

/* Deletes the file with id `file_id` and all its chunks.  A missing file
 * fails with NOT_FOUND. */
bool mongo_helper_gridfs_delete (const mongo_helper_gridfs_opts_t *opts,
                                 const bson_value_t *file_id,
                                 mongo_helper_error_t *error);

/* Receives one change event (the server's document: operationType,
 * documentKey, fullDocument, ...; valid only during the call).  Return
 * true to keep watching, false to stop. */
typedef bool (*mongo_helper_change_fn) (const bson_t *event, void *user_data);

/* Options of mongo_helper_watch().  Zero-initialise, then set what you
 * need. */
typedef struct {
   const char *database; /* NULL: the default database */
   /* Stages after $changeStream ($match, $project, ...): a BSON array
    * document or {"pipeline": [...]}; NULL: none. */
   const bson_t *pipeline;
   bool full_document_update_lookup; /* fullDocument: "updateLookup" */
   const bson_t *resume_after;       /* resume token: continue after that event */
   const bson_t *start_after;        /* like resume_after, also after an
                                        invalidate event (MongoDB 4.2+) */
   int64_t timeout_ms;               /* stop after this long; <= 0: only when the
                                        callback says stop; at most
                                        MONGO_HELPER_MAX_WATCH_TIMEOUT_MS */
   int32_t max_await_time_ms;        /* server wait per getMore; 0: 1000; at
                                        most MONGO_HELPER_MAX_AWAIT_TIME_MS */
   int32_t batch_size;               /* 0: server default; not negative */
} mongo_helper_watch_opts_t;

/*
 * Watches `collection` (NULL: every collection of the database) and calls
 * `fn` for each change, in order, until `fn` returns false or
 * `opts->timeout_ms` passes; both end with success.  libmongoc resumes once
 * by itself after a resumable error (network error, primary step-down).
 * To survive anything longer, keep the resume token: on return, success or
 * not, `resume_token` (if not NULL) is initialised with the token of the
 * last event delivered (or the stream's start point), empty when none is
 * known; the caller bson_destroy()s it and passes it as resume_after (or
 * start_after) to continue where it stopped.  Change streams need a
 * replica set or sharded cluster: a standalone server answers with SERVER
 * error code 40573.  Fails with INVALID_ARGUMENT for a NULL callback, an
 * empty collection name, an option out of its range (see Limits), or a
 * pipeline or token nested deeper than 100 levels.
 */
bool mongo_helper_watch (const char *collection,
                         const mongo_helper_watch_opts_t *opts,
                         mongo_helper_change_fn fn,
                         void *user_data,
                         bson_t *resume_token,
                         mongo_helper_error_t *error);

/* The kinds of operation mongo_helper_run_concurrent() runs. */
typedef enum {
   MONGO_HELPER_OP_COUNT = 0,   /* filter          -> {"count": n} */
   MONGO_HELPER_OP_FIND_ONE,    /* filter          -> {"document": doc},
                                                      {} when none matched */
   MONGO_HELPER_OP_DISTINCT,    /* field, filter   -> {"values": [...]} */
   MONGO_HELPER_OP_INSERT_ONE,  /* document        -> {"insertedId": id,
                                                       "insertedCount": 1} */
   MONGO_HELPER_OP_UPDATE_ONE,  /* filter, document (update operators),
                                   upsert          -> {"matchedCount",
                                   "modifiedCount", "upsertedCount"[,
                                   "upsertedId"]} */
   MONGO_HELPER_OP_UPDATE_MANY, /* as UPDATE_ONE */
   MONGO_HELPER_OP_DELETE_ONE,  /* filter          -> {"deletedCount": n} */
   MONGO_HELPER_OP_DELETE_MANY, /* as DELETE_ONE */
   MONGO_HELPER_OP_AGGREGATE,   /* pipeline        -> {"documents": [...]} */
   MONGO_HELPER_OP_COMMAND      /* document = the command, on the
                                   database; collection unused -> reply */
} mongo_helper_op_type_t;

/* One operation for mongo_helper_run_concurrent().  Pointers are borrowed
 * for the duration of the call.  A NULL filter matches everything. */
typedef struct {
   mongo_helper_op_type_t type;
   const char *database;   /* NULL: the default database */
   const char *collection; /* required except for COMMAND */
   const bson_t *filter;
   const bson_t *document; /* INSERT_ONE: the document (an _id is added
                              when absent); UPDATE_*: the update; COMMAND:
                              the command */
   const bson_t *pipeline; /* AGGREGATE: array document or
                              {"pipeline": [...]} */
   const char *field;      /* DISTINCT: the field */
   bool upsert;            /* UPDATE_*: insert when nothing matches */
} mongo_helper_op_t;

/* One operation's outcome. */
typedef struct {
   bson_t result;              /* see mongo_helper_op_type_t; empty on
                                  failure */
   mongo_helper_error_t error; /* this operation's own error */
   int32_t concurrent;         /* operations running, this one included,
                                  when it started: never above K */
} mongo_helper_op_result_t;

/*
 * Runs `ops[0..n_ops)` on the pool with at most `max_concurrent` (K) at
 * once: K worker threads (fewer when there are fewer operations, and never
 * more than the pool's maxPoolSize), each with its own pooled client, take
 * the next operation in turn.  Fills `results[i]` for `ops[i]`, in input
 * order; the caller passes an array of n_ops results and frees them with
 * mongo_helper_op_results_cleanup() whatever the outcome.  Returns true
 * when every operation succeeded; false with INVALID_ARGUMENT (NULL ops or
 * results, n_ops 0 or over MONGO_HELPER_MAX_CONCURRENT_OPS, K 0 or over
 * MONGO_HELPER_MAX_CONCURRENT; the results are then still initialised when
 * n_ops is in range and results is not NULL, and left untouched when n_ops
 * is over the maximum), or with the first failed operation's category and
 * a message naming how many failed (each result holds its own error).  An
 * invalid descriptor (missing collection, field or document, a document
 * over 16 MiB or nested deeper than 100 levels) fails only its own result,
 * with INVALID_ARGUMENT.  Workers need free clients: a pool held by other
 * threads (the calling thread's cached client included) only makes workers
 * wait for a client, at most the pool wait, then that operation fails with
 * TIMEOUT.
 */
bool mongo_helper_run_concurrent (const mongo_helper_op_t *ops,
                                  size_t n_ops,
                                  size_t max_concurrent,
                                  mongo_helper_op_result_t *results,
                                  mongo_helper_error_t *error);

/* Frees what mongo_helper_run_concurrent() put in `results` (not the
 * array itself).  NULL is allowed. */
void mongo_helper_op_results_cleanup (mongo_helper_op_result_t *results, size_t n_results);

/* The numbers of dbStats, as 64-bit integers (the server mixes types). */
typedef struct {
   int64_t collections;
   int64_t objects;      /* documents in all collections */
   int64_t data_size;    /* bytes of uncompressed documents */
   int64_t storage_size; /* bytes allocated for documents */
   int64_t indexes;
   int64_t index_size; /* bytes of all indexes */
} mongo_helper_db_stats_t;

/* Runs dbStats on `database` (NULL: the default database).  `stats` and
 * `reply` may each be NULL; a non-NULL `reply` is always initialised (the
 * server's whole answer on success) and the caller bson_destroy()s it. */
bool mongo_helper_db_stats (const char *database,
                            mongo_helper_db_stats_t *stats,
                            bson_t *reply,
                            mongo_helper_error_t *error);

/* The numbers of collection statistics. */
typedef struct {
   int64_t count; /* documents */
   int64_t size;  /* bytes of uncompressed documents */
   int64_t avg_obj_size;
   int64_t storage_size;
   int64_t nindexes;
   int64_t total_index_size;
} mongo_helper_coll_stats_t;

/*
 * Statistics of `collection` in `database` (NULL: default), read with the
 * aggregation stage {$collStats: {storageStats: {}}} because the collStats
 * command is deprecated since MongoDB 6.2.  Only when the server does not
 * know the stage (code 40324, before 3.4) does it fall back to the
 * collStats command.  A non-NULL `reply` is always initialised; on success
 * it holds the storage statistics (count, size, avgObjSize, storageSize,
 * nindexes, totalIndexSize, indexSizes, ...) at top level, whichever way
 * they were read, plus "ns".  A missing collection fails with NOT_FOUND
 * (server code 26).
 */
bool mongo_helper_collection_stats (const char *database,
                                    const char *collection,
                                    mongo_helper_coll_stats_t *stats,
                                    bson_t *reply,
                                    mongo_helper_error_t *error);

/* The size in bytes of each index of `collection`, from the collection
 * statistics: on success `sizes` is initialised as {index name: bytes
 * (int64)}; on failure empty.  The caller bson_destroy()s it. */
bool mongo_helper_index_sizes (const char *database,
                               const char *collection,
                               bson_t *sizes,
                               mongo_helper_error_t *error);

/* The names of the collections of `database` (NULL: default), as a
 * NULL-terminated array in the server's order (none: an array holding only
 * NULL).  The caller frees it with bson_strfreev().  NULL on failure. */
char **mongo_helper_collection_names (const char *database, mongo_helper_error_t *error);

/* The basics of serverStatus. */
typedef struct {
   char version[32];
   char host[256];
   int64_t uptime_s;
   int64_t connections_current;
   int64_t connections_available;
   int64_t connections_total_created;
} mongo_helper_server_status_t;

/* Runs serverStatus on admin.  `status` and `reply` may each be NULL; a
 * non-NULL `reply` is always initialised (the whole answer on success, it
 * is large on a real server) and the caller bson_destroy()s it. */
bool mongo_helper_server_status (mongo_helper_server_status_t *status,
                                 bson_t *reply,
                                 mongo_helper_error_t *error);

/* ---- Web-backend helpers ------------------------------------------- */

/* Sessions, caches and user event logs. */

/*
 * Common to the three helpers below
 * ---------------------------------
 * Each helper is an opaque handle made once (at start-up) with *_new()
 * from an options struct that its *_options_init() fills with defaults;
 * the handle is thread-safe and meant to be shared by every worker thread.
 * Operations run on the calling thread's pooled client (see
 * mongo_helper_database()): no connection per request.  Each helper's
 * *_ensure() creates its collection and indexes idempotently; unless the
 * options' `lazy_ensure` is false it also runs once on first use (turn it
 * off where the application user has no index privilege).  The lazy run
 * holds a lock, so a burst of first requests sends one createIndexes; a
 * lazy ensure that fails fails the operation with its error and runs again
 * on the next call, so a missing TTL index is never silent.  Documents expire
 * through a TTL index on `expiresAt` (expireAfterSeconds 0) AND every read
 * filters on `expiresAt > now`, because the server's TTL monitor only runs
 * every 60 s.  When an existing TTL index has another expireAfterSeconds,
 * ensure changes it with collMod instead of failing; an index that cannot
 * be reconciled (same key without TTL, same name with another key) is a
 * SERVER error (code 85 or 86) that names the index to drop.
 *
 * Every document handed to a helper to store (session data and fields,
 * cache values, event metadata) must be well-formed BSON, nested at most
 * 100 levels and small enough for one 16 MB document with the helper's
 * envelope, else INVALID_ARGUMENT before anything is sent.
 *
 * Every duration, in an options struct or as an argument, is bounded:
 * at most MONGO_HELPER_MAX_DURATION_MS, and at least the minimum given
 * next to it (0 unless said otherwise; a cache ttl may also be negative,
 * meaning "never expires").  A value out of range is INVALID_ARGUMENT
 * before anything is sent; nothing is clamped silently.
 */

/* The longest duration (ms) the helpers accept: 100 years of 365.25 days.
 * The bound keeps now + duration far inside a BSON date. */
#define MONGO_HELPER_MAX_DURATION_MS INT64_C (3155760000000)

/* ---- Sessions ---- */

/* Length of a session id (43 base64url characters for 256 random bits)
 * and the buffer size that holds one with its NUL. */
#define MONGO_HELPER_SESSION_ID_LEN 43
#define MONGO_HELPER_SESSION_ID_SIZE 44

/* Session store settings.  Strings are copied by mongo_helper_sessions_new. */
typedef struct {
   const char *collection;       /* default "sessions" */
   int64_t idle_lifetime_ms;     /* sliding lifetime; default 14 days;
                                    1..MONGO_HELPER_MAX_DURATION_MS */
   int64_t absolute_lifetime_ms; /* hard limit from creation; 0 (default):
                                    none */
   int64_t touch_interval_ms;    /* touch writes only when lastSeen is older
                                    than this; default 60000 */
   int64_t regenerate_grace_ms;  /* how long the old id of a regenerated
                                    session stays valid; default 0 (deleted
                                    at once) */
   bool lazy_ensure;             /* run ensure on first use; default true */
   const char *keys;             /* encryption at rest: a key ring
                                    "id:base64key,..." (current key first);
                                    default NULL: the configuration's
                                    session_keys / session_key_file, read
                                    on the handle's first use */
   const char *key_file;         /* or a key file, one id:base64key per
                                    line; at most one of keys and
                                    key_file */
} mongo_helper_sessions_options_t;

/* Fills `options` with the defaults above. */
void mongo_helper_sessions_options_init (mongo_helper_sessions_options_t *options);

/* A session store: one collection of documents
 * { _id: SHA-256 of the id (64 hex chars), data: {...}, userId?: string,
 *   createdAt, lastSeen, expiresAt, absoluteExpiresAt?: BSON dates,
 *   replacedBy?: SHA-256 of the successor's id (a regenerated session) }.
 * The id itself is never stored, so read access to the database does not
 * leak live session tokens.
 *
 * Encryption at rest: with a key ring (options keys / key_file, else the
 * configuration's session_keys / session_key_file), `data` is replaced by
 * sealed: { v: 1, k: key id, n: 12-byte nonce, c: AES-256-GCM ciphertext
 * and tag } of the data document's BSON, with the collection name and
 * _id as associated data: a payload copied to another session does not
 * open.  Every other field stays clear, so expiry, touch, count and
 * delete_user work as before.  Writes seal with the current (first) key,
 * reads accept any key of the ring.  A session stored in clear text (before
 * encryption was turned on) still loads and is encrypted by its next save,
 * set, unset or regenerate, or by mongo_helper_sessions_rekey().  A sealed
 * payload that does not open (altered, truncated, copied from another
 * session, its key not in the ring, or a handle without keys) fails the
 * call with INTEGRITY (code MONGO_HELPER_INTEGRITY_*), is counted in the
 * metrics and is never returned.
 *
 * Session ids come from cookies, not from code: every call taking an id
 * treats a NULL, missing, malformed, unknown or expired id alike, as
 * NOT_FOUND (the normal outcome of a first visit: create a session). */
typedef struct mongo_helper_sessions_t mongo_helper_sessions_t;

/* Makes a store (no server contact).  `options` NULL: defaults.  Returns
 * NULL with INVALID_ARGUMENT for a bad collection name or a duration out
 * of its range, CONFIG for options keys or key_file that do not make a
 * key ring (the message names the option, never key text).  Free with
 * mongo_helper_sessions_destroy(). */
mongo_helper_sessions_t *mongo_helper_sessions_new (const mongo_helper_sessions_options_t *options,
                                                    mongo_helper_error_t *error);

/* Frees the handle (not the stored sessions).  NULL is allowed. */
void mongo_helper_sessions_destroy (mongo_helper_sessions_t *sessions);

/* Creates the TTL index on expiresAt and the index on userId (named
 * expiresAt_ttl and userId_1; idempotent; changes a different TTL with
 * collMod).  Fails with SERVER on a conflict
 * it cannot reconcile, or the driver's category. */
bool mongo_helper_sessions_ensure (mongo_helper_sessions_t *sessions, mongo_helper_error_t *error);

/* Creates a session holding a copy of `data` (NULL: empty) and owned by
 * `user_id` (NULL: anonymous) and writes its new id (from OpenSSL's CSPRNG,
 * 256 bits, URL-safe, NUL-terminated) to `id_out`.  Fails with
 * INVALID_ARGUMENT for NULL `id_out`, or the driver's category. */
bool mongo_helper_sessions_create (mongo_helper_sessions_t *sessions,
                                   const bson_t *data,
                                   const char *user_id,
                                   char id_out[MONGO_HELPER_SESSION_ID_SIZE],
                                   mongo_helper_error_t *error);

/* Reads a live session's data document into `data_out` (always
 * initialised; the caller bson_destroy()s it).  Does not write: see
 * mongo_helper_sessions_load_touch() for the per-request call.  A NULL,
 * missing, expired or malformed id fails with NOT_FOUND. */
bool mongo_helper_sessions_load (mongo_helper_sessions_t *sessions,
                                 const char *id,
                                 bson_t *data_out,
                                 mongo_helper_error_t *error);

/* The per-request call: mongo_helper_sessions_load() and
 * mongo_helper_sessions_touch() together, in one round trip (a find) while
 * the session is fresh and two (find, then the conditional update) when
 * the touch is due, instead of two and three.  `touched` (may be NULL)
 * says whether it wrote.  NOT_FOUND like load: on a NULL id (no cookie)
 * too, so "load, and create on NOT_FOUND" needs no special case. */
bool mongo_helper_sessions_load_touch (mongo_helper_sessions_t *sessions,
                                       const char *id,
                                       bson_t *data_out,
                                       bool *touched,
                                       mongo_helper_error_t *error);

/* Replaces the whole data document of a live session.  NOT_FOUND when the
 * session is missing or expired. */
bool mongo_helper_sessions_save (mongo_helper_sessions_t *sessions,
                                 const char *id,
                                 const bson_t *data,
                                 mongo_helper_error_t *error);

/* Sets the top-level fields of `fields` inside the session's data with one
 * $set (other fields untouched, no read-modify-write).  A name that is
 * empty, starts with '$' or contains '.' is INVALID_ARGUMENT and nothing
 * is written: a '.' would turn the name into a path into a nested document
 * (MongoDB's $set cannot hold a literal dot), so to change a nested value
 * set its whole top-level field.  NOT_FOUND when the session is missing or
 * expired.  An encrypted session cannot be changed in place: the call
 * reads it, opens it, seals the new data and writes it only if nobody
 * wrote it meanwhile (a compare-and-swap on the nonce), starting again
 * otherwise, so concurrent sets and unsets lose no field; after 64 such
 * conflicts it fails with SERVER code 112 (WriteConflict). */
bool mongo_helper_sessions_set (mongo_helper_sessions_t *sessions,
                                const char *id,
                                const bson_t *fields,
                                mongo_helper_error_t *error);

/* Removes `n` top-level fields from the session's data with one $unset;
 * names are checked like mongo_helper_sessions_set()'s.  NOT_FOUND when
 * the session is missing or expired.  Encrypted: as for set. */
bool mongo_helper_sessions_unset (mongo_helper_sessions_t *sessions,
                                  const char *id,
                                  const char *const *fields,
                                  size_t n,
                                  mongo_helper_error_t *error);

/* Sets (or with NULL removes) the session's owner, e.g. at login. */
bool mongo_helper_sessions_set_user (mongo_helper_sessions_t *sessions,
                                     const char *id,
                                     const char *user_id,
                                     mongo_helper_error_t *error);

/* Slides the expiry of a live session, lazily: it reads the session's
 * dates (one round trip) and writes lastSeen and expiresAt (capped by
 * absoluteExpiresAt) only when lastSeen is older than touch_interval_ms,
 * with an update conditional on that (a second round trip), so concurrent
 * touches write once.  The old id of a regenerated session is never
 * extended.  `wrote` (may be NULL) says whether it wrote.  NOT_FOUND when
 * the session is missing or expired (a normal outcome: start a new
 * session). */
bool mongo_helper_sessions_touch (mongo_helper_sessions_t *sessions,
                                  const char *id,
                                  bool *wrote,
                                  mongo_helper_error_t *error);

/* Deletes one session.  Deleting a missing session (NULL id included)
 * succeeds. */
bool mongo_helper_sessions_delete (mongo_helper_sessions_t *sessions,
                                   const char *id,
                                   mongo_helper_error_t *error);

/* Gives a live session a new id (written to `new_id_out`) with the same
 * data, owner, creation time and absolute expiry, e.g. at login against
 * session fixation.  Three round trips: a findAndModify claims the old
 * session (marks it replacedBy and caps its expiresAt and
 * absoluteExpiresAt at 10 s from now, or the grace if longer, so the TTL
 * monitor cannot remove it meanwhile), the successor is inserted, then the
 * old one is deleted (no grace) or capped at now + regenerate_grace_ms.
 * So:
 *  - the old id stays valid for regenerate_grace_ms at most, for requests
 *    already in flight; no touch can extend it, and it cannot be
 *    regenerated again;
 *  - of concurrent regenerates of one id exactly one succeeds, the others
 *    fail with NOT_FOUND;
 *  - a deletion that reaches the old session before the regenerate ends
 *    (mongo_helper_sessions_delete(), _delete_user()) wins: the successor
 *    is deleted and the call fails with NOT_FOUND, so "log out everywhere"
 *    leaves no session of the user behind.
 * NOT_FOUND when the old session is missing, expired or already
 * regenerated.  When the call fails after the claim (e.g. the insert), the
 * old id is retired: it still loads, but expires within 10 s (or the grace)
 * and cannot be touched or regenerated: start a new session. */
bool mongo_helper_sessions_regenerate (mongo_helper_sessions_t *sessions,
                                       const char *old_id,
                                       char new_id_out[MONGO_HELPER_SESSION_ID_SIZE],
                                       mongo_helper_error_t *error);

/* Deletes every session of `user_id` ("log out everywhere") and reports
 * how many in `deleted` (may be NULL). */
bool mongo_helper_sessions_delete_user (mongo_helper_sessions_t *sessions,
                                        const char *user_id,
                                        int64_t *deleted,
                                        mongo_helper_error_t *error);

/* Counts live (unexpired) sessions, of `user_id` only unless it is NULL.
 * The old id of a regenerated session, live during its grace, is not
 * counted. */
bool mongo_helper_sessions_count (mongo_helper_sessions_t *sessions,
                                  const char *user_id,
                                  int64_t *count,
                                  mongo_helper_error_t *error);

/* The batch size of a rekey when the call gives 0, and the largest. */
#define MONGO_HELPER_REKEY_DEFAULT_BATCH 500
#define MONGO_HELPER_REKEY_MAX_BATCH 100000

/* Seals every session again with the ring's current key: those sealed
 * with another key of the ring and those stored in clear text, expired
 * ones included.  One pass of a cursor; each batch of `batch_size`
 * records (0: MONGO_HELPER_REKEY_DEFAULT_BATCH) is written back with one
 * unordered bulk write, each record only if its payload is still the one
 * read (a concurrent write, which seals with the current key anyway, is
 * never overwritten).  `changed` (may be NULL) receives how many records
 * were written, on failure too.  Running it again resumes: records already
 * on the current key are not touched.  Fails with CONFIG when the handle
 * has no key ring, INVALID_ARGUMENT for a batch size over
 * MONGO_HELPER_REKEY_MAX_BATCH, INTEGRITY after the pass when records did
 * not open (left as they are, each counted in the metrics; the message
 * says how many and why the first failed), or the driver's category. */
bool mongo_helper_sessions_rekey (mongo_helper_sessions_t *sessions,
                                  size_t batch_size,
                                  int64_t *changed,
                                  mongo_helper_error_t *error);

/* ---- Cache ---- */

/* Cache settings.  Strings are copied by mongo_helper_cache_new. */
typedef struct {
   const char *collection; /* default "cache" */
   int64_t default_ttl_ms; /* used when a call passes ttl_ms 0; default
                              300000 (5 min); 0 or negative: never expires */
   size_t max_key_length;  /* longer keys are hashed; default 200;
                              1..1000 */
   int64_t lease_ms;       /* how long a get-or-compute caller may compute
                              before others take over; default 10000; >= 1 */
   int64_t wait_ms;        /* how long a caller of this handle waits for
                              another's value; default 5000 */
   int64_t poll_ms;        /* how often they look; default 25; >= 1 */
   bool lazy_ensure;       /* run ensure on first use; default true */
   const char *keys;       /* encryption at rest, as for sessions: a key
                              ring "id:base64key,..."; default NULL: the
                              configuration's cache_keys / cache_key_file,
                              read on the handle's first use */
   const char *key_file;   /* or a key file; at most one of the two */
} mongo_helper_cache_options_t;

/* Fills `options` with the defaults above. */
void mongo_helper_cache_options_init (mongo_helper_cache_options_t *options);

/* A cache: documents { _id: key, value: document | binary | int64,
 * expiresAt?: date }.  Keys are non-empty UTF-8; a key longer than
 * max_key_length is stored as _id { p: its first 64 bytes at most (all of
 * a shorter key), cut on a character boundary, h: SHA-256 hex of the whole
 * key } so it fits any index and never collides with a short key.
 *
 * Encryption at rest: with a key ring (options keys / key_file, else the
 * configuration's cache_keys / cache_key_file), a document or binary
 * value is stored as sealed: { v, k, n, c } (see Sessions) of the BSON
 * document { v: value }, bound to the collection and the stored _id; the
 * key itself (the _id) and expiresAt stay clear.  Counters
 * (mongo_helper_cache_incr()) stay clear: $inc cannot work on ciphertext.
 * Reads accept any key of the ring and clear values stored before
 * encryption was turned on; a value that does not open fails get,
 * get_bytes, get_many and get_or_compute with INTEGRITY (counted in the
 * metrics, never returned). */
typedef struct mongo_helper_cache_t mongo_helper_cache_t;

/* Makes a cache handle (no server contact).  `options` NULL: defaults.
 * NULL with INVALID_ARGUMENT on bad options, CONFIG for keys or key_file
 * that do not make a key ring.  Free with mongo_helper_cache_destroy(). */
mongo_helper_cache_t *mongo_helper_cache_new (const mongo_helper_cache_options_t *options,
                                              mongo_helper_error_t *error);

/* Frees the handle (not the cached data).  NULL is allowed. */
void mongo_helper_cache_destroy (mongo_helper_cache_t *cache);

/* Creates the TTL index on expiresAt, named expiresAt_ttl (idempotent,
 * collMod on a different TTL).  Fails like mongo_helper_sessions_ensure(). */
bool mongo_helper_cache_ensure (mongo_helper_cache_t *cache, mongo_helper_error_t *error);

/* Stores a copy of `value` under `key` for `ttl_ms` (0: default_ttl_ms;
 * negative: no expiry; at most MONGO_HELPER_MAX_DURATION_MS), replacing
 * any value (upsert).  A value too big for one 16 MB document or a ttl_ms
 * out of range fails with INVALID_ARGUMENT before any write.  Every other
 * call taking a ttl_ms reads it the same way. */
bool mongo_helper_cache_set (mongo_helper_cache_t *cache,
                             const char *key,
                             const bson_t *value,
                             int64_t ttl_ms,
                             mongo_helper_error_t *error);

/* Like mongo_helper_cache_set() for `len` bytes of binary data. */
bool mongo_helper_cache_set_bytes (mongo_helper_cache_t *cache,
                                   const char *key,
                                   const uint8_t *data,
                                   size_t len,
                                   int64_t ttl_ms,
                                   mongo_helper_error_t *error);

/* Stores `value` only if `key` has no live value (the unique _id decides,
 * so two racing callers cannot both win).  Fails with DUPLICATE_KEY when
 * the key exists. */
bool mongo_helper_cache_add (mongo_helper_cache_t *cache,
                             const char *key,
                             const bson_t *value,
                             int64_t ttl_ms,
                             mongo_helper_error_t *error);

/* Copies the live document value of `key` into `value_out` (always
 * initialised; the caller bson_destroy()s it).  NOT_FOUND when missing or
 * expired; INVALID_ARGUMENT when the key holds bytes or a counter. */
bool mongo_helper_cache_get (mongo_helper_cache_t *cache,
                             const char *key,
                             bson_t *value_out,
                             mongo_helper_error_t *error);

/* Copies the live binary value of `key` into a new buffer `*data` of
 * `*len` bytes (free with bson_free()).  NOT_FOUND as above;
 * INVALID_ARGUMENT when the key holds something else. */
bool mongo_helper_cache_get_bytes (mongo_helper_cache_t *cache,
                                   const char *key,
                                   uint8_t **data,
                                   size_t *len,
                                   mongo_helper_error_t *error);

/* Looks up `n` keys with one query.  `found_out` (always initialised;
 * caller destroys) maps each key that has a live value to that value;
 * missing keys are simply absent.  An encrypted value that does not open
 * fails the whole call with INTEGRITY naming its key (`found_out` then
 * empty): store the key again to replace it. */
bool mongo_helper_cache_get_many (mongo_helper_cache_t *cache,
                                  const char *const *keys,
                                  size_t n,
                                  bson_t *found_out,
                                  mongo_helper_error_t *error);

/* Adds `delta` to the int64 counter at `key` atomically ($inc), creating
 * it with `delta` and `ttl_ms` when missing or expired; the new value goes
 * to `result` (may be NULL).  The expiry of an existing counter is kept.
 * Counters are never encrypted; a key holding an encrypted value, a
 * document or bytes is INVALID_ARGUMENT. */
bool mongo_helper_cache_incr (mongo_helper_cache_t *cache,
                              const char *key,
                              int64_t delta,
                              int64_t ttl_ms,
                              int64_t *result,
                              mongo_helper_error_t *error);

/* Deletes `key`; `deleted` (may be NULL) says whether it existed. */
bool mongo_helper_cache_delete (mongo_helper_cache_t *cache,
                                const char *key,
                                bool *deleted,
                                mongo_helper_error_t *error);

/* Gives a live key a new lifetime.  NOT_FOUND when missing or expired. */
bool mongo_helper_cache_touch (mongo_helper_cache_t *cache,
                               const char *key,
                               int64_t ttl_ms,
                               mongo_helper_error_t *error);

/* Deletes every entry; the collection and its indexes stay. */
bool mongo_helper_cache_clear (mongo_helper_cache_t *cache, mongo_helper_error_t *error);

/* mongo_helper_sessions_rekey() for the cache: seals every document or
 * binary value again with the current key (those of another key of the
 * ring, and clear ones); counters and leases are left alone.  Fails like
 * it (CONFIG without a key ring). */
bool mongo_helper_cache_rekey (mongo_helper_cache_t *cache,
                               size_t batch_size,
                               int64_t *changed,
                               mongo_helper_error_t *error);

/* Computes the value for a cold key: fill `value_out` (already
 * initialised) and return true, or return false and fill `error`. */
typedef bool (*mongo_helper_cache_compute_fn) (const char *key,
                                               bson_t *value_out,
                                               void *user_data,
                                               mongo_helper_error_t *error);

/* Returns the cached value of `key` in `value_out` (always initialised;
 * the caller destroys it), computing and storing it when missing, with
 * stampede protection: of many callers (threads or processes) that miss
 * at once, the one that inserts a short-lived lease document runs
 * `compute`; the others poll for the value every poll_ms and fail with
 * TIMEOUT when it has not arrived within their wait_ms.  A lease is taken
 * over once it is older than the lease_ms of the handle that took it (a
 * crashed or stuck holder).  Whose bound is whose: the holder's lease_ms
 * bounds how long a holder that never finishes blocks the others; each
 * waiter's own wait_ms bounds how long that caller waits (measured on the
 * monotonic clock; the last poll is shortened to end at the deadline, so
 * it returns within wait_ms plus one round trip), whatever the holder's
 * lease_ms.  A waiter that takes an expired lease over becomes the holder
 * and runs `compute` itself, which no wait_ms bounds.  `computed` (may be
 * NULL) says whether this call ran `compute`.  A failing `compute`
 * releases the lease and its error is returned. */
bool mongo_helper_cache_get_or_compute (mongo_helper_cache_t *cache,
                                        const char *key,
                                        int64_t ttl_ms,
                                        mongo_helper_cache_compute_fn compute,
                                        void *user_data,
                                        bson_t *value_out,
                                        bool *computed,
                                        mongo_helper_error_t *error);

/* ---- Event log ---- */

/* Event log settings.  Strings are copied by mongo_helper_eventlog_new. */
/* The longest retention (s) an event log accepts: the server's limit for
 * expireAfterSeconds (INT32_MAX, about 68 years). */
#define MONGO_HELPER_EVENTLOG_MAX_RETENTION_S INT64_C (2147483647)

typedef struct {
   const char *collection;  /* default "user_events" */
   int64_t retention_s;     /* events older than this are removed by the
                               server; default 90 days; 0: kept forever;
                               0..MONGO_HELPER_EVENTLOG_MAX_RETENTION_S */
   const char *granularity; /* time-series granularity: "seconds"
                               (default), "minutes" or "hours" */
   bool lazy_ensure;        /* run ensure on first use; default true */
} mongo_helper_eventlog_options_t;

/* Fills `options` with the defaults above. */
void mongo_helper_eventlog_options_init (mongo_helper_eventlog_options_t *options);

/* A user event log: documents { user_id: string, event_type: string,
 * metadata: document, timestamp: BSON date }. */
typedef struct mongo_helper_eventlog_t mongo_helper_eventlog_t;

/* Makes a handle (no server contact).  `options` NULL: defaults.  NULL
 * with INVALID_ARGUMENT on bad options.  Free with
 * mongo_helper_eventlog_destroy() after every writer made from it. */
mongo_helper_eventlog_t *mongo_helper_eventlog_new (const mongo_helper_eventlog_options_t *options,
                                                    mongo_helper_error_t *error);

/* Frees the handle (not the events).  NULL is allowed. */
void mongo_helper_eventlog_destroy (mongo_helper_eventlog_t *log);

/* Sets the collection up after asking the server its version (buildInfo):
 * on 5.0 and later a missing collection is created as a time-series
 * collection (timeField "timestamp", metaField "user_id", the configured
 * granularity, expireAfterSeconds = retention_s); before 5.0, or when the
 * collection already exists as a regular one, a TTL index on timestamp.
 * Both get the index { user_id: 1, timestamp: -1 }.  `time_series` (may be
 * NULL) says which layout was chosen. */
bool mongo_helper_eventlog_ensure (mongo_helper_eventlog_t *log,
                                   bool *time_series,
                                   mongo_helper_error_t *error);

/* Stores one event now (a synchronous insert).  `metadata` may be NULL;
 * `timestamp_ms` is milliseconds since the epoch, 0 for the current time
 * (taken here, not by the server: a buffered event keeps the time it
 * happened).  INVALID_ARGUMENT for NULL/empty user or type or an event
 * over 16 MB. */
bool mongo_helper_eventlog_log (mongo_helper_eventlog_t *log,
                                const char *user_id,
                                const char *event_type,
                                const bson_t *metadata,
                                int64_t timestamp_ms,
                                mongo_helper_error_t *error);

/* What mongo_helper_eventlog_query() looks for. */
typedef struct {
   const char *user_id;    /* required */
   const char *event_type; /* NULL: any type */
   int64_t since_ms;       /* timestamp >= since_ms; 0: no lower bound */
   int64_t until_ms;       /* timestamp < until_ms; 0: no upper bound */
   int32_t limit;          /* <= 0: 100 */
} mongo_helper_event_query_t;

/* Finds a user's events, newest first, and appends them to `events_out`
 * as a BSON array ("0", "1", ...; always initialised, caller destroys).
 * `count` (may be NULL) receives how many. */
bool mongo_helper_eventlog_query (mongo_helper_eventlog_t *log,
                                  const mongo_helper_event_query_t *query,
                                  bson_t *events_out,
                                  int32_t *count,
                                  mongo_helper_error_t *error);

/* What the buffered writer does with a new event when its queue is full. */
typedef enum {
   MONGO_HELPER_QUEUE_BLOCK = 0,   /* wait up to block_timeout_ms for room,
                                      then drop the new event */
   MONGO_HELPER_QUEUE_DROP_NEWEST, /* drop the new event at once */
   MONGO_HELPER_QUEUE_DROP_OLDEST  /* drop the oldest queued event */
} mongo_helper_queue_policy_t;

/* The largest queue_size and batch_size mongo_helper_event_writer_new()
 * accepts (a queue of a million events is 8 MB of pointers before the
 * events themselves; a batch is one bulk insert). */
#define MONGO_HELPER_EVENT_WRITER_MAX_QUEUE 1000000
#define MONGO_HELPER_EVENT_WRITER_MAX_BATCH 100000

/* Buffered writer settings. */
typedef struct {
   size_t queue_size;                  /* events held at most, 1 to
                                          MONGO_HELPER_EVENT_WRITER_MAX_QUEUE;
                                          default 10000 */
   size_t batch_size;                  /* flush at this many, 1 to
                                          MONGO_HELPER_EVENT_WRITER_MAX_BATCH
                                          (may exceed queue_size); default 500 */
   int32_t flush_interval_ms;          /* or after this long; default 1000 */
   mongo_helper_queue_policy_t policy; /* default BLOCK */
   int32_t block_timeout_ms;           /* BLOCK's wait; default 100 */
   int32_t backoff_min_ms;             /* first retry delay after a failed batch;
                                          default 100, doubling ... */
   int32_t backoff_max_ms;             /* ... up to this; default 5000 */
} mongo_helper_event_writer_options_t;

/* Fills `options` with the defaults above. */
void mongo_helper_event_writer_options_init (mongo_helper_event_writer_options_t *options);

/* Counters of a buffered writer, for the events of the calling process
 * (see fork() below).  accepted = stored + dropped + queued (queued
 * includes the batch being written); after destroy, queued is 0. */
typedef struct {
   uint64_t accepted;       /* valid events handed to the writer */
   uint64_t stored;         /* confirmed written by the server */
   uint64_t dropped;        /* dropped by the queue policy, refused by the
                               server, or not confirmed by the destroy
                               deadline */
   uint64_t failed_batches; /* batch attempts that failed and were retried */
   uint64_t queued;         /* not yet confirmed */
} mongo_helper_event_writer_stats_t;

/* A background writer for request paths: log calls only queue the event;
 * one thread writes batches with unordered bulk inserts, every
 * flush_interval_ms or batch_size events.  While the server is unreachable
 * it keeps the batch and retries with exponential backoff, and the queue
 * fills up to queue_size (then `policy` applies).  Each event gets its
 * ObjectId when queued, so a batch retried after a lost reply is not
 * stored twice (duplicates are counted as stored).  A time-series
 * collection has no unique _id: there such a retry may store some events
 * twice, while the counters still count each event once.
 *
 * fork(): a writer made before a fork works in both processes.  The
 * events queued in the parent at the fork stay the parent's: its thread
 * writes them and its counters count them.  In the child the writer
 * starts empty with counters at zero (so each process's counters add up
 * for its own events, and summing both processes counts every event once),
 * starts a thread of its own on its first log, and is destroyed in the
 * child like any other writer. */
typedef struct mongo_helper_event_writer_t mongo_helper_event_writer_t;

/* Starts a writer on `log` (which must outlive it; the writer copies the
 * log's settings).  `options` NULL: defaults.  NULL with INVALID_ARGUMENT
 * naming the first bad option (sizes out of the ranges above included),
 * or INTERNAL when the thread cannot start. */
mongo_helper_event_writer_t *
mongo_helper_event_writer_new (mongo_helper_eventlog_t *log,
                               const mongo_helper_event_writer_options_t *options,
                               mongo_helper_error_t *error);

/* Queues one event (arguments as mongo_helper_eventlog_log(), copied).
 * Returns true when queued.  Returns false with INVALID_ARGUMENT for bad
 * input (not counted), with TIMEOUT when the full queue made the policy
 * drop this event (counted as accepted and dropped), or with INTERNAL when
 * a forked child's thread cannot start (not counted). */
bool mongo_helper_event_writer_log (mongo_helper_event_writer_t *writer,
                                    const char *user_id,
                                    const char *event_type,
                                    const bson_t *metadata,
                                    int64_t timestamp_ms,
                                    mongo_helper_error_t *error);

/* Asks for an immediate write and waits up to `timeout_ms` until the queue
 * is empty.  TIMEOUT when events are still queued at the deadline. */
bool mongo_helper_event_writer_flush (mongo_helper_event_writer_t *writer,
                                      int32_t timeout_ms,
                                      mongo_helper_error_t *error);

/* Reads the counters (a consistent snapshot). */
void mongo_helper_event_writer_stats (mongo_helper_event_writer_t *writer,
                                      mongo_helper_event_writer_stats_t *stats);

/* Writes what is queued for at most `deadline_ms` (<= 0: writes nothing
 * more), counts whatever is still unwritten as dropped, stops the thread
 * and frees the writer.  It returns by the deadline (at most 100 ms past
 * it, when the thread is slow to stop) even when a write hangs in the
 * driver: that write is then left to finish in the background, where it
 * frees what is left of the writer, and its events count as dropped (not
 * confirmed: they may still reach the server).  `final_stats` (may be
 * NULL) receives the last counters.  NULL writer is allowed.  Destroy
 * every writer before mongo_helper_shutdown(); the log may be destroyed
 * as soon as this returns. */
void mongo_helper_event_writer_destroy (mongo_helper_event_writer_t *writer,
                                        int32_t deadline_ms,
                                        mongo_helper_event_writer_stats_t *final_stats);

#ifdef __cplusplus
}
#endif

#endif /* MONGO_HELPER_H */
