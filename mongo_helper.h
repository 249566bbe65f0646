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
 * and the child: the child builds a fresh pool of its own on first use and
 * never touches the parent's sockets.
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
#define MONGO_HELPER_VERSION_MINOR 1
#define MONGO_HELPER_VERSION_PATCH 0
#define MONGO_HELPER_VERSION_STRING "0.1.0"

/* Returns MONGO_HELPER_VERSION_STRING of the library actually linked. */
const char *mongo_helper_version (void);

/* ---- Errors --------------------------------------------------------- */

/* What kind of failure happened; decides what the caller does next. */
typedef enum {
   MONGO_HELPER_ERROR_NONE = 0,        /* no error */
   MONGO_HELPER_ERROR_CONFIG,          /* bad or missing configuration */
   MONGO_HELPER_ERROR_CONNECTION,      /* server unreachable, socket error */
   MONGO_HELPER_ERROR_TIMEOUT,         /* a time limit passed (pool wait,
                                          socket, maxTimeMS) */
   MONGO_HELPER_ERROR_SERVER,          /* the server refused the command */
   MONGO_HELPER_ERROR_DUPLICATE_KEY,   /* unique index violation (11000) */
   MONGO_HELPER_ERROR_NOT_FOUND,       /* no such document / session / key */
   MONGO_HELPER_ERROR_INVALID_ARGUMENT,/* the caller passed bad input */
   MONGO_HELPER_ERROR_AUTH,            /* authentication failed */
   MONGO_HELPER_ERROR_CIRCUIT_OPEN,    /* failing fast after repeated
                                          connection failures */
   MONGO_HELPER_ERROR_INTERNAL         /* out of memory, library bug */
} mongo_helper_category_t;

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
 * `message` has credentials redacted and is valid only during the call. */
typedef void (*mongo_helper_log_fn) (mongo_helper_log_level_t level,
                                     const char *domain,
                                     const char *message,
                                     void *user_data);

/* Sets the process-wide log sink (NULL: discard everything, the default).
 * The library also routes libmongoc's own log messages here, which means it
 * replaces any handler installed with mongoc_log_set_handler().  Messages
 * at a level above `max_level` are dropped before formatting. */
void mongo_helper_set_log_handler (mongo_helper_log_fn fn,
                                   mongo_helper_log_level_t max_level,
                                   void *user_data);

/* Copies `text` into `out` (always NUL-terminated, truncated to
 * `out_size`) with the password of every "scheme://user:password@" and
 * every "password=" value replaced by "****".  Use it before logging any
 * string that might hold a URI.  Returns the length written. */
size_t mongo_helper_redact (const char *text, char *out, size_t out_size);

/* ---- Configuration -------------------------------------------------- */

/*
 * A resolved configuration: the URI, its source, the default database and
 * the pool settings, after every rule below has been applied.  The
 * singleton builds one internally; tests and tools build one to see what
 * would be used without connecting.
 *
 * URI: the first source that is set wins.
 *   1. `uri` argument of mongo_helper_config_new() / mongo_helper_init_uri()
 *   2. environment MONGO_CACHE_URI
 *   3. `mongo_uri` in section [db] of the INI file
 *   4. environment MONGO_URI
 *   5. environment parts MONGO_HOST (comma-separated hosts allowed),
 *      MONGO_PORT, MONGO_USERNAME, MONGO_PASSWORD, MONGO_AUTH_SOURCE,
 *      MONGO_REPLICA_SET, MONGO_USE_SSL, MONGO_SSL_CA_CERTS, MONGO_DB; used
 *      when any of them but MONGO_DB is set; user name and password are
 *      percent-encoded so any character works
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
 * appName, plus [db] connection_options = "k=v&k=v" with any URI option.
 * Precedence for one option: the URI itself, then the environment, then the
 * INI key, then connection_options, then the library default.  The pool
 * wait (waitQueueTimeoutMS) defaults to MONGO_HELPER_DEFAULT_POOL_WAIT_MS
 * and must be positive, so no caller ever waits forever for a connection.
 *
 * Default database: the URI's path (like pymongo's get_default_database()),
 * else MONGO_DB, else [db] database; with none, a CONFIG error.
 */
typedef struct mongo_helper_config_t mongo_helper_config_t;

#ifndef MONGO_HELPER_DEFAULT_POOL_WAIT_MS
#define MONGO_HELPER_DEFAULT_POOL_WAIT_MS 10000
#endif

/* Resolves a configuration as described above.  `config_path` and `uri`
 * may be NULL.  Returns a new configuration, or NULL with a CONFIG error
 * naming the source at fault (variable, or file and key). */
mongo_helper_config_t *mongo_helper_config_new (const char *config_path,
                                                const char *uri,
                                                mongo_helper_error_t *error);

/* Frees a configuration.  NULL is allowed. */
void mongo_helper_config_destroy (mongo_helper_config_t *config);

/* The final URI with every setting applied.  It CONTAINS CREDENTIALS: pass
 * it to libmongoc, never to a log.  Valid until the configuration is
 * destroyed. */
const char *mongo_helper_config_uri (const mongo_helper_config_t *config);

/* The same URI with the password replaced by "****": safe to log. */
const char *
mongo_helper_config_uri_redacted (const mongo_helper_config_t *config);

/* The parsed URI, for reading options with mongoc_uri_get_option_as_*(). */
const mongoc_uri_t *
mongo_helper_config_mongoc_uri (const mongo_helper_config_t *config);

/* The default database name.  Valid until the configuration is destroyed. */
const char *mongo_helper_config_database (const mongo_helper_config_t *config);

/* Where the URI came from, e.g. "environment MONGO_CACHE_URI" or
 * "conf/mongo_helper.ini [db] mongo_uri".  Valid as the configuration. */
const char *mongo_helper_config_source (const mongo_helper_config_t *config);

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
 * apply. */
bool mongo_helper_init_uri (const char *uri, mongo_helper_error_t *error);

/* A snapshot of the singleton, for logs and status pages.  Strings are
 * copies (redacted), so the snapshot stays valid after shutdown. */
typedef struct {
   bool initialized;
   char uri[512];      /* redacted */
   char source[256];   /* where the URI came from */
   char database[128]; /* default database */
   int32_t max_pool_size;
   int32_t pool_wait_ms;  /* waitQueueTimeoutMS in force */
   uint32_t generation;   /* incremented by every init, and in a forked
                             child on first use */
} mongo_helper_status_t;

/* Fills `status`.  Never fails; when not initialised, `initialized` is
 * false and the strings are empty. */
void mongo_helper_status (mongo_helper_status_t *status);

/* Frees the pool, every thread's cached client and the configuration.
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
 * `timeout_ms` (<= 0: 2000 ms).  Uses one small dedicated client, not the
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

/* Asks the deployment (hello + buildInfo) within `timeout_ms` (<= 0:
 * 2000 ms), with the same dedicated client as mongo_helper_ping(). */
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
bool mongo_helper_command (const bson_t *command,
                           bson_t *reply,
                           mongo_helper_error_t *error);

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
 * ReadConcernMajorityNotAvailableYet, 262 ExceededTimeLimit.  The
 * RetryableWriteError label is NOT seen by the library (it travels in the
 * server's reply, which the execution path does not receive); the server
 * attaches it to exactly these codes and to network errors, and libmongoc
 * acts on the label itself for writes.  Never retried: duplicate keys,
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
 * number in range is a CONFIG error naming its source.
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
 * "Which operations retry"), for callers that run libmongoc directly. */
bool mongo_helper_error_is_transient (const bson_error_t *error);

/* Appends maxTimeMS to an options document for libmongoc calls that take
 * `opts` (find, aggregate, count, *_command_with_opts): the server stops
 * the operation after `max_time_ms` and it fails with TIMEOUT (code 50).
 * libmongoc 1.23 has no client-side per-call deadline; socketTimeoutMS is
 * the client-side bound.  Fails with INVALID_ARGUMENT for a NULL `opts` or
 * a limit <= 0. */
bool mongo_helper_opts_set_max_time (bson_t *opts,
                                     int32_t max_time_ms,
                                     mongo_helper_error_t *error);

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
 * (network errors, server selection failures, socket timeouts; counted
 * per attempt, across all threads) the circuit OPENS: every operation
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
   int64_t opened_at_ms;  /* wall clock (ms since 1970) of the last
                             opening, 0 if it never opened */
   int64_t retry_in_ms;   /* while OPEN: time left until the probe */
   uint64_t rejected;     /* calls failed fast since initialisation */
} mongo_helper_circuit_t;

/* Fills `circuit` with the breaker's current state.  Never fails. */
void mongo_helper_circuit_status (mongo_helper_circuit_t *circuit);

/* "closed", "open", "half_open" or "unknown".  Never NULL. */
const char *
mongo_helper_circuit_state_name (mongo_helper_circuit_state_t state);

/*
 * Metrics
 * -------
 * Collected from the execution path (per operation kind: calls, errors by
 * category, retries, latency histogram over the whole call including
 * retries), from libmongoc's command monitoring (per server command name:
 * started, succeeded, failed, total duration) and from the library's pool
 * paths (clients in use, threads waiting, checkouts, wait timeouts).  The
 * operation kind is the first word of the operation's description (e.g.
 * "command", "read_command"); at most 64 kinds and 64 command names are
 * kept, later ones count under "other".  Metrics survive shutdown and
 * re-initialisation; they hold names and numbers only, never a URI, user
 * or password.
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
 * n}, "latency_us_sum", "latency_buckets_ms": {LE: n}}}, "commands":
 * {NAME: {"started", "succeeded", "failed", "duration_us_sum"}}, "pool":
 * {"in_use", "waiting", "checkouts", "wait_timeouts"}, "circuit":
 * {"state", "consecutive_failures", "opened_at_ms", "rejected"}}.
 * Latency buckets count the calls that fell into each bucket (upper bound
 * LE ms, "inf" last), not cumulatively as Prometheus does.
 * Returns a new string the caller frees with bson_free(). */
char *mongo_helper_metrics_json_dup (mongo_helper_error_t *error);

/* Pool statistics only, as kept by the library's acquire/release paths. */
typedef struct {
   int64_t in_use;        /* clients taken from the pool, not given back */
   int64_t waiting;       /* threads waiting for a client right now */
   uint64_t checkouts;    /* clients taken since the process started */
   uint64_t wait_timeouts;/* waits that ended in TIMEOUT */
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
 * through embedded documents and arrays, and rejects:
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
 * use, false with INVALID_ARGUMENT (NULL filter, or a rejected key). */
bool mongo_helper_filter_check (const bson_t *filter,
                                unsigned flags,
                                mongo_helper_error_t *error);

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
bool mongo_helper_oid_from_string (const char *text,
                                   bson_oid_t *oid,
                                   mongo_helper_error_t *error);


/* ---- Connector operations: documents ------------------------------- */

/* CRUD, bulk, aggregation, streaming, indexes, text and geo search. */


/* ---- Connector operations: files, streams, concurrency, stats ------ */

/* GridFS, change streams, concurrent operations, statistics. */


/* ---- Web-backend helpers ------------------------------------------- */

/* Sessions, caches and user event logs. */


#ifdef __cplusplus
}
#endif

#endif /* MONGO_HELPER_H */
