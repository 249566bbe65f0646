/*
 * mh_private.h — the library's internal contract.
 *
 * Included first by mongo_helper.c and every file under src/; never
 * installed.
 * Sections follow the layers of the map at the top of mongo_helper.c: a
 * file may call what is declared for its own file, its layer's shared file
 * or a lower layer, never a higher one (`make layer-check` enforces it on
 * the object files).  Every name here starts with mh_ / MH_ and is hidden
 * from applications (see the Makefile's `localize` step).
 */
#ifndef MH_PRIVATE_H
#define MH_PRIVATE_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "mongo_helper.h"

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

/* ==== Layer 0: redact.c, crypto.c (no library dependencies) ============================ */

/* redact.c: case-insensitive prefix test. */
bool mh_starts_with_ci (const char *s, const char *prefix);

/* crypto.c: SHA-256 as 64 lowercase hex digits; bytes from the CSPRNG. */
bool mh_sha256_hex (const void *data, size_t len, char out[65]);
bool mh_random_bytes (void *buf, size_t len);

/* ==== Layer 1: error.c, log.c ======================================== */

/* error.c */

/* Clears `error` (NULL allowed). */
void mh_error_clear (mongo_helper_error_t *error);

/* Fills `error` (redacted) and returns false, so failure paths read
 * `return mh_fail (...)`. */
bool mh_fail (mongo_helper_error_t *error,
              mongo_helper_category_t category,
              int32_t code,
              const char *fmt,
              ...) BSON_GNUC_PRINTF (4, 5);

/* Turns a driver error into the library's error, with advice; false. */
bool mh_fail_bson (mongo_helper_error_t *error, const char *what, const bson_error_t *e);

/* log.c */

/* Formats and emits one library log line (redacted) if a sink wants it. */
void mh_log (mongo_helper_log_level_t level, const char *fmt, ...) BSON_GNUC_PRINTF (2, 3);

/* Routes libmongoc's own log messages to the sink (idempotent). */
void mh_log_install (void);

/* ==== Layer 2: util.c (shared by everything above) =================== */

/* The server's document limit (BSON maximum), the one constant for it. */
#define MH_MAX_BSON MONGO_HELPER_MAX_DOCUMENT_SIZE

/* Once per process: mongoc_init, the libmongoc log route, the fork hooks. */
void mh_process_init (void);

/* A module's fork handling.  prepare takes the module's locks, parent
 * releases them, child releases or re-initialises them and forgets what
 * belongs to the parent.  Hooks run in descending `rank` for prepare (the
 * higher layers' locks first, as they are taken while lower ones are
 * free) and ascending for parent and child.  `hook` must be static
 * storage; adding it twice is harmless. */
typedef struct mh_fork_hook {
   int rank;
   void (*prepare) (void);
   void (*parent) (void);
   void (*child) (void);
   struct mh_fork_hook *next;
   bool added;
} mh_fork_hook_t;

void mh_fork_hook_add (mh_fork_hook_t *hook);

/* The one wall clock (ms since the epoch) and the one monotonic clock
 * (µs, CLOCK_MONOTONIC like the event writer's condition variable). */
int64_t mh_wall_ms (void);
int64_t mh_mono_us (void);

/* The one sleep: `ms` milliseconds, resumed after signals; <= 0 returns. */
void mh_sleep_ms (int64_t ms);

/* Parsing of configuration values. */
bool mh_parse_int32 (const char *s, int32_t *out);
bool mh_parse_bool (const char *s, bool *out);

/* Name checks, the same words everywhere.  A NULL database means the
 * default one. */
bool mh_valid_db_name (const char *name);
bool mh_check_db_name (const char *what, const char *name, mongo_helper_error_t *error);
bool mh_check_coll_name (const char *what, const char *name, mongo_helper_error_t *error);

/* Clears `error`, then checks a database (NULL: default) and collection. */
bool mh_target_check (const char *what,
                      const char *database,
                      const char *collection,
                      mongo_helper_error_t *error);

/* A caller's document: not NULL and within MH_MAX_BSON. */
bool
mh_doc_check (const char *what, const char *label, const bson_t *doc, mongo_helper_error_t *error);

/* INVALID_ARGUMENT "<fn>: <what>"; returns false. */
bool mh_bad_arg (mongo_helper_error_t *error, const char *fn, const char *what);

/* The collection, on the default database unless `database` names one. */
mongoc_collection_t *mh_collection (mongoc_client_t *client,
                                    mongoc_database_t *db,
                                    const char *database,
                                    const char *collection);

/* The default database (borrowed, *owned false) or a named one (owned). */
mongoc_database_t *
mh_database (mongoc_client_t *client, mongoc_database_t *db, const char *name, bool *owned);
void mh_database_done (mongoc_database_t *db, bool owned);

/* bson helpers. */
void mh_array_append (bson_t *array, uint32_t i, const bson_t *doc);
void mh_array_append_iter (bson_t *array, uint32_t i, const bson_iter_t *it);
/* Drains a cursor into `results` (reinitialised first); owns `cursor`. */
bool mh_cursor_drain (mongoc_cursor_t *cursor, bson_t *results, bson_error_t *berr);
/* Any numeric field (dotted path allowed) as int64; 0 when absent. */
int64_t mh_bson_int64 (const bson_t *doc, const char *dotted);
/* "database.collection" for messages. */
const char *mh_ns (char *buf, size_t size, const char *database, const char *collection);

/* Overrides the category mh_run chose, where an area knows better. */
void mh_recategorize (mongo_helper_error_t *error, mongo_helper_category_t cat);

/* Reports a condition found inside an operation so mh_run() maps it like
 * a server error (domain SERVER, the given code); returns false. */
bool mh_berr (bson_error_t *berr, uint32_t code, const char *fmt, ...) BSON_GNUC_PRINTF (3, 4);

/* ==== Layer 3: config.c ============================================== */

struct mongo_helper_config_t {
   char *uri; /* as resolved from its source */
   char *uri_redacted;
   char *database;
   char *source;
   mongoc_uri_t *muri;                /* with every setting applied */
   mongo_helper_retry_policy_t retry; /* see "Which operations retry" */
};

/* ==== Layer 4: resilience.c, security.c ============================== */

/* resilience.c: the circuit breaker and backoff used by mh_run(). */
void mh_breaker_configure (int32_t threshold, int32_t cooldown_ms);
bool mh_breaker_admit (bool *probe, int64_t *wait_ms, int32_t *failures);
void mh_breaker_record (const bson_error_t *e, bool probe);
void mh_breaker_abstain (bool probe);
bool mh_breaker_closed (void);
void mh_breaker_reset_rejected (void);
void mh_backoff_sleep (const mongo_helper_retry_policy_t *pol, int32_t attempt);

/* ==== Layer 5: metrics.c ============================================= */

/* Installs command monitoring on a new pool, before its first pop. */
void mh_metrics_attach (mongoc_client_pool_t *pool);
/* One finished operation of mh_run(). */
void mh_metrics_op (const char *what, int64_t t0_us, int32_t retries, mongo_helper_category_t cat);
/* Pool gauges. */
void mh_pool_wait_begin (void);
void mh_pool_wait_end (bool got);
void mh_pool_returned (void);

/* ==== Layer 6: the core, mongo_helper.c ============================== */

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

/* Operations whose effects reach the caller while they run (bytes handed
 * to a write callback, change events): mh_run must never repeat them, and
 * a write without MH_OP_IDEMPOTENT is the flag set it never repeats. */
#define MH_OP_ONCE MH_OP_WRITE

/* Runs `fn`, retrying transient failures of reads and idempotent writes
 * with backoff, behind the circuit breaker, and records metrics. */
bool mh_run (const char *what, unsigned flags, mh_op_fn fn, void *ctx, mongo_helper_error_t *error);

/* Runs {cmd_name: 1} on admin through the dedicated client (not the
 * pool) within `timeout_ms` (<= 0: 2000 ms).  `reply` is always
 * initialised; `elapsed_us` (may be NULL) receives the round trip. */
bool mh_direct_command (const char *cmd_name,
                        int32_t timeout_ms,
                        bson_t *reply,
                        int64_t *elapsed_us,
                        mongo_helper_error_t *error);

/* ==== Layer 7: crud.c (shared), stream.c, health.c ==================== */

#define MH_EARTH_RADIUS_M 6378100.0

/* crud.c */
bool mh_find_opts (const char *what,
                   const mongo_helper_find_opts_t *o,
                   bson_t *out,
                   mongo_helper_error_t *error);
bool mh_find_exec (const char *op,
                   const char *database,
                   const char *collection,
                   const bson_t *filter,
                   const bson_t *opts,
                   bson_t *results,
                   mongo_helper_error_t *error);

/* stream.c */
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

bool mh_stream_run (const char *op, mh_stream_ctx_t *ctx, mongo_helper_error_t *error);

/* ==== Layer 9: web helpers (web.c shared), concurrent.c ============== */

/* Values near the document limit cannot be stored with their envelope
 * (_id, dates): the web helpers keep this margin. */
#define MH_WEB_ENVELOPE 4096

/* -- Generic single-collection operations of the helpers (web.c). */
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

typedef struct {
   bool lazy;
   atomic_bool done;
   pthread_mutex_t lock;
} mh_web_setup_t;

typedef bool (*mh_web_ensure_fn) (void *handle, mongo_helper_error_t *error);

/* -- Index set-up shared by the three helpers (web.c). */
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

bool mh_web_id_new (char out[MONGO_HELPER_SESSION_ID_SIZE], mongo_helper_error_t *error);
bool mh_web_coll_name_ok (const char *name, mongo_helper_error_t *error);
bool mh_web_str_ok (const char *s, const char *what, mongo_helper_error_t *error);
bool mh_web_size_ok (size_t len, const char *what, mongo_helper_error_t *error);
bool mh_w_run (const char *what, mh_w_op_t *o, mongo_helper_error_t *error);
bool
mh_web_ensure_op (mongoc_client_t *client, mongoc_database_t *db, void *ctx, bson_error_t *berr);
void mh_web_setup_init (mh_web_setup_t *s, bool lazy);
bool
mh_web_ready (mh_web_setup_t *s, mh_web_ensure_fn fn, void *handle, mongo_helper_error_t *error);
void mh_web_append_date (bson_t *b, const char *key, int64_t ms);
void mh_web_append_live (bson_t *b, const char *field, int64_t now);

/* -- Event log internals the buffered writer uses (eventlog.c). */
struct mongo_helper_eventlog_t {
   char *coll;
   char *granularity;
   int64_t retention_s;
   mh_web_setup_t setup;
};

bool mh_eventlog_ensure_cb (void *h, mongo_helper_error_t *error);
bson_t *mh_event_build (const char *user_id,
                        const char *event_type,
                        const bson_t *metadata,
                        int64_t timestamp_ms,
                        mongo_helper_error_t *error);

#endif /* MH_PRIVATE_H */
