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

/* crypto.c: memory wiping the compiler cannot drop (OPENSSL_cleanse). */
void mh_cleanse (void *buf, size_t len);

/* crypto.c: AES-256-GCM, 12-byte nonce, 16-byte tag.  Seal writes
 * len + MH_AEAD_TAG_LEN bytes to `out` (ciphertext, then tag).  Open takes
 * that form (len >= MH_AEAD_TAG_LEN) and writes len - MH_AEAD_TAG_LEN
 * bytes to `out`; false when the tag does not verify (the key, nonce,
 * associated data or bytes differ from the seal's), `out` then wiped.
 * `out` is never NULL; lengths are at most INT_MAX. */
#define MH_AEAD_KEY_LEN 32
#define MH_AEAD_NONCE_LEN 12
#define MH_AEAD_TAG_LEN 16
bool mh_aead_seal (const uint8_t key[MH_AEAD_KEY_LEN],
                   const uint8_t nonce[MH_AEAD_NONCE_LEN],
                   const uint8_t *aad,
                   size_t aad_len,
                   const uint8_t *plain,
                   size_t len,
                   uint8_t *out);
bool mh_aead_open (const uint8_t key[MH_AEAD_KEY_LEN],
                   const uint8_t nonce[MH_AEAD_NONCE_LEN],
                   const uint8_t *aad,
                   size_t aad_len,
                   const uint8_t *sealed,
                   size_t len,
                   uint8_t *out);

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

/* Hands libmongoc's queued messages to the sink (see log.c); costs one
 * atomic load when there are none.  Call it holding no library lock. */
void mh_log_drain (void);

/* The log's fork handling, run by util.c's handlers: prepare after every
 * other module's, parent and child before every other module's. */
void mh_log_fork_prepare (void);
void mh_log_fork_parent (void);
void mh_log_fork_child (void);

/* ==== Layer 2: util.c (shared by everything above) =================== */

/* The server's document limit (BSON maximum), the one constant for it. */
#define MH_MAX_BSON MONGO_HELPER_MAX_DOCUMENT_SIZE

/* Once per process: mongoc_init and the libmongoc log route.  (The fork
 * handlers are installed when the library is loaded.) */
void mh_process_init (void);

/* A module's fork handling.  prepare takes the module's locks, parent
 * releases them, child releases or re-initialises them and forgets what
 * belongs to the parent's other threads.  Hooks run in descending `rank`
 * (the layer) for prepare, as the library takes a higher layer's lock
 * before a lower one's, never the other way round, and ascending for
 * parent and child.  The log (layer 1) is handled by util.c itself, after
 * every hook's prepare and before every hook's release. */
typedef struct mh_fork_hook {
   int rank;
   void (*prepare) (void);
   void (*parent) (void);
   void (*child) (void);
   struct mh_fork_hook *next, *prev;
   bool added;
} mh_fork_hook_t;

/* Adds `hook` (static storage; adding it twice is harmless).  Call it
 * only through MH_FORK_HOOK, when the library is loaded: a hook added
 * later could miss a fork that a thread holding its lock races with, and
 * one added while holding another library lock deadlocks with fork(). */
void mh_fork_hook_add (mh_fork_hook_t *hook);

#define MH_FORK_HOOK(hook)                                          \
   __attribute__ ((constructor)) static void hook##_register (void) \
   {                                                                \
      mh_fork_hook_add (&hook);                                     \
   }

/* The mutex (and, may be NULL, condition variable) of a handle the
 * application creates: taken in prepare before every module's locks,
 * released in parent and child; in the child the condition variable is
 * initialised again (its waiters were the parent's threads), with default
 * attributes.  Untrack it before destroying the handle.  Never call these
 * while holding a library lock. */
void mh_fork_track (pthread_mutex_t *mutex, pthread_cond_t *cond);
void mh_fork_untrack (pthread_mutex_t *mutex);

/* How many fork()s lie between the process that started and this one
 * (0 in the original process): state marked with it belongs to a thread
 * of this process only if the numbers match. */
unsigned mh_fork_count (void);

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

/* MongoDB's nesting limit for documents (100 levels, the top-level
 * document being the first).  Every walk of a caller's document, libbson's
 * own validation and JSON rendering included, recurses or keeps a stack
 * this deep, so mh_doc_check() bounds the depth first, without recursing. */
#define MH_MAX_DEPTH MONGO_HELPER_MAX_DEPTH

/* A frame of a non-recursive document walk (libbson over-aligns
 * bson_iter_t, so a bare array of them is not allowed). */
typedef struct {
   bson_iter_t it;
} mh_iter_frame_t;

/* A caller's document: not NULL, within MH_MAX_BSON, well-formed and
 * nested at most MH_MAX_DEPTH levels (embedded documents, arrays and the
 * scopes of code-with-scope values each add one). */
bool
mh_doc_check (const char *what, const char *label, const bson_t *doc, mongo_helper_error_t *error);

/* mh_doc_check() and what the server keeps: no empty field name, valid
 * UTF-8 (strict, RFC 3629) in every field name and string.  The insert and
 * replace paths check this once and tell libmongoc not to validate again
 * ({"validate": false}): libbson 1.23 would walk every string byte by byte
 * twice and still let invalid UTF-8 through. */
bool mh_doc_check_stored (const char *what,
                          const char *label,
                          const bson_t *doc,
                          mongo_helper_error_t *error);

/* mh_doc_check_stored() for a value the caller embeds one level down in a
 * document it builds (a cache value, session data, event metadata): at
 * most MH_MAX_DEPTH - 1 levels, so the stored document keeps MongoDB's
 * limit. */
bool mh_doc_check_embedded (const char *what,
                            const char *label,
                            const bson_t *doc,
                            mongo_helper_error_t *error);

/* Strict UTF-8 of `len` bytes (NUL bytes allowed). */
bool mh_utf8_ok (const char *s, size_t len);

/* mh_doc_check_stored() on each of `n` documents to insert (the message
 * names the index);
 * also refuses a NULL or empty array. */
bool
mh_docs_check (const char *what, const bson_t *const *docs, size_t n, mongo_helper_error_t *error);

/* INVALID_ARGUMENT "<fn>: <what>"; returns false. */
bool mh_bad_arg (mongo_helper_error_t *error, const char *fn, const char *what);

/* The default database (borrowed, *owned false) or a named one (owned). */
mongoc_database_t *
mh_database (mongoc_client_t *client, mongoc_database_t *db, const char *name, bool *owned);
void mh_database_done (mongoc_database_t *db, bool owned);

/* bson helpers. */
void mh_array_append (bson_t *array, uint32_t i, const bson_t *doc);
void mh_array_append_iter (bson_t *array, uint32_t i, const bson_iter_t *it);
/* Drains a cursor into `results` (reinitialised first); owns `cursor`.
 * With `max_bytes` > 0 it stops with mh_result_too_big() once the array
 * would pass that many bytes. */
bool
mh_cursor_drain (mongoc_cursor_t *cursor, bson_t *results, size_t max_bytes, bson_error_t *berr);
/* Any numeric field (dotted path allowed) as int64; 0 when absent. */
int64_t mh_bson_int64 (const bson_t *doc, const char *dotted);

/* Overrides the category mh_run chose, where an area knows better. */
void mh_recategorize (mongo_helper_error_t *error, mongo_helper_category_t cat);

/* Reports a condition found inside an operation so mh_run() maps it like
 * a server error (domain SERVER, the given code); returns false. */
bool mh_berr (bson_error_t *berr, uint32_t code, const char *fmt, ...) BSON_GNUC_PRINTF (3, 4);

/* The operations' limits (see "Limits" in the header): the one place of
 * their defaults, called by config.c on a new configuration before its
 * settings are read.  A configuration whose fields are 0 (built without
 * it) reads as the defaults through the accessors below. */
void mh_limits_defaults (mongo_helper_config_t *config);
/* max_result_bytes in force (NULL: the default). */
size_t mh_limit_result_bytes (const mongo_helper_config_t *config);
/* default_max_time_ms in force, 0 for none (NULL: none). */
int32_t mh_limit_max_time_ms (const mongo_helper_config_t *config);

/* What to add to libbson's JSON parse error `message`: words naming the
 * nesting limit when the parser stopped at its own, else "". */
const char *mh_json_levels_hint (const char *message);

/* The error of a result past max_result_bytes (domain CLIENT, code
 * TOO_BIG: INVALID_ARGUMENT, never retried); `hint` says what to use
 * instead.  Returns false. */
bool mh_result_too_big (bson_error_t *berr, size_t max_bytes, const char *hint);

/* ==== Layer 2: keyring.c (key rings and sealed records) ============== */

/*
 * A key ring: the AES-256 keys that may open encrypted records, each under
 * a short id; the first is the current key, the one every seal uses.  A
 * ring never changes once made: threads share it without a lock.  Key
 * bytes are wiped when it is destroyed.
 *
 * Text form (configuration): entries "id:base64key", the current key
 * first.  mh_keyring_parse() takes them separated by ',' (an environment
 * variable, an INI value, the API); mh_keyring_load_file() one per line,
 * blank lines and lines starting with '#' skipped.  Whitespace around an
 * entry, id or key is ignored.  An id is 1 to MH_KEY_ID_MAX characters
 * among A-Z a-z 0-9 _ -, unique in the ring.  A key is standard (+/) or
 * URL-safe (-_) base64, '=' padding optional, exactly 32 bytes decoded
 * (`openssl rand -base64 32`).  Two ids may hold the same key (renaming a
 * key).  At most MH_KEYRING_MAX keys.  A key file must be a regular file
 * no other user may access (mode 0600 or 0640; symbolic links are
 * followed) of at most MH_KEY_FILE_MAX bytes.
 *
 * Errors are CONFIG, "<source>, entry 2 ('k1'): the key is 31 bytes after
 * base64 decoding, AES-256 needs 32" (a file: "<source>, key file <path>,
 * line 3 ..."), and never hold key text: ids are echoed only once valid,
 * bad characters are given by position.  `source` names where the text
 * came from ("environment MONGO_SESSION_KEYS"); NULL: "key ring".
 */
typedef struct mh_keyring mh_keyring_t;

#define MH_KEY_ID_MAX 32
#define MH_KEYRING_MAX 64
#define MH_KEY_FILE_MAX (64 * 1024)

mh_keyring_t *mh_keyring_parse (const char *spec, const char *source, mongo_helper_error_t *error);
mh_keyring_t *
mh_keyring_load_file (const char *path, const char *source, mongo_helper_error_t *error);
void mh_keyring_destroy (mh_keyring_t *ring);

/* A copy of `ring` (NULL for NULL), for a handle that outlives the
 * configuration it came from. */
mh_keyring_t *mh_keyring_dup (const mh_keyring_t *ring);

/* How many keys; the id of key `i` (0: the current key), NULL past the
 * end.  Ids live as long as the ring. */
size_t mh_keyring_count (const mh_keyring_t *ring);
const char *mh_keyring_id (const mh_keyring_t *ring, size_t i);

/*
 * A sealed record (envelope version 1) is the BSON subdocument
 *
 *    { v: <int32 1>,
 *      k: <string: id of the key that sealed it>,
 *      n: <binary subtype 0, 12 bytes: the AES-GCM nonce, random per seal>,
 *      c: <binary subtype 0: the ciphertext, then the 16-byte GCM tag> }
 *
 * with exactly these fields in this order (MongoDB keeps the order of a
 * subdocument's fields).  The ciphertext has the plaintext's length.  The
 * associated data GCM authenticates is
 *
 *    0x01 (the version) || one byte: length of k || k || the caller's aad
 *
 * so the version and key id cannot be changed either, and the caller's
 * aad binds the record's identity: a payload moved to another record does
 * not open.  Key id and version stay readable, so a query finds the
 * records of a key ({"<field>.k": "k1"}) without decrypting anything.  A
 * random 96-bit nonce is safe for about 2^32 seals per key (NIST SP
 * 800-38D): rotate the current key before that.
 */
#define MH_SEALED_VERSION 1

/* The record identity to pass as associated data: the BSON document
 * {c: <collection>, i: <the record's _id>} (use bson_get_data (aad),
 * aad->len).  Sessions: the collection name and the stored _id (the
 * hashed session id); cache: the collection name and the stored _id as
 * it is (string or {p, h} document).  The database is left out, so a dump
 * restored under another database name still opens; a renamed
 * collection does not.  `aad` is initialised in every case (destroy it);
 * false with INVALID_ARGUMENT for a NULL argument. */
bool mh_record_aad (bson_t *aad,
                    const char *collection,
                    const bson_value_t *id,
                    mongo_helper_error_t *error);

/* Encrypts `len` bytes (at most MH_MAX_BSON; `plain` may be NULL when 0)
 * with the ring's current key and a fresh random nonce, and appends the
 * sealed record to `parent` as `field`.  Fails with INVALID_ARGUMENT
 * (NULL argument, too large) or INTERNAL (OpenSSL failed); `parent` is
 * then unusable if the failure came after the append began. */
bool mh_seal (const mh_keyring_t *ring,
              const uint8_t *aad,
              size_t aad_len,
              const uint8_t *plain,
              size_t len,
              bson_t *parent,
              const char *field,
              mongo_helper_error_t *error);

/* What mh_open() found.  `data` holds `len` bytes and a NUL after them
 * (bson_malloc); `key_id` is the ring's id of the key that opened it
 * (borrowed from the ring); `stale` is true when that is not the current
 * key: the record should be sealed again on its next write. */
typedef struct {
   uint8_t *data;
   size_t len;
   const char *key_id;
   bool stale;
} mh_opened_t;

/* The codes of MONGO_HELPER_ERROR_INTEGRITY errors (error->code): the
 * header's MONGO_HELPER_INTEGRITY_*, which callers read. */
enum {
   MH_INTEGRITY_MALFORMED = MONGO_HELPER_INTEGRITY_MALFORMED,
   MH_INTEGRITY_UNKNOWN_KEY = MONGO_HELPER_INTEGRITY_UNKNOWN_KEY,
   MH_INTEGRITY_FORGED = MONGO_HELPER_INTEGRITY_FORGED,
};

/* Decrypts the sealed record at `sealed` (an iterator on the field) with
 * whichever key of the ring its id names, checking it against `aad`.
 * `out` is cleared first and filled only on success: release it with
 * mh_opened_clear().  Fails with INTEGRITY and an MH_INTEGRITY_* code (the
 * message names the key id, never key bytes or plaintext), or
 * INVALID_ARGUMENT for a NULL argument; nothing of the plaintext is kept
 * on failure. */
bool mh_open (const mh_keyring_t *ring,
              const uint8_t *aad,
              size_t aad_len,
              const bson_iter_t *sealed,
              mh_opened_t *out,
              mongo_helper_error_t *error);

/* Wipes and frees the plaintext; `opened` may be NULL or already clear. */
void mh_opened_clear (mh_opened_t *opened);

/* ==== Layer 2: uri.c (URI option text) =============================== */

/* The [db] connection_options "k=v&k=v", written like a URI's options
 * (values percent-decoded), split once; each table setting takes its own
 * entry, the others go to the URI as they are. */
typedef struct {
   char *key;   /* points into the split copy */
   char *value; /* decoded, owned */
   bool taken;
} mh_conn_opt_t;

typedef struct {
   char *buf;
   mh_conn_opt_t *v;
   size_t n;
   char label[300];
} mh_conn_opts_t;

/* Options the URI does not name, appended to its text so that libmongoc's
 * own parser reads them exactly as if the URI held them (write concern,
 * read preference and its tags, read concern, compressors, TLS and auth
 * options are only read while parsing). */
typedef struct {
   char *option;
   char *value; /* plain, percent-encoded when appended */
   char *label; /* its source, for messages */
} mh_extra_t;

typedef struct {
   mh_extra_t *v;
   size_t n, cap;
} mh_extras_t;

/* Appends `s` percent-encoded (RFC 3986: all but unreserved characters),
 * so a password with '@', ':', '/' or '%' survives URI parsing. */
void mh_pct_encode (bson_string_t *out, const char *s);
/* Percent-decodes a value as a URI would (new string). */
/* The option a deprecated alias stands for ("ssl" -> "tls"), else itself. */
const char *mh_canonical (const char *option);
/* Whether libmongoc 1.23 reads `option` from a URI; whether its whole
 * value is a credential (never shown). */
bool mh_option_known (const char *option);
bool mh_option_secret (const char *option);
/* The options text of a URI after its '?', NULL when there is none; whether
 * it names `option` (or an alias); whether the URI itself gives `option`
 * (so it wins over every other source). */
const char *mh_uri_query (const char *uri);
bool mh_query_has (const char *uri, const char *option);
bool mh_uri_names (const mongoc_uri_t *muri, const char *uri, const char *option);
char *mh_pct_decode (const char *s);
/* A URI safe to show (mongo_helper_redact(), with room to grow); free it. */
char *mh_redact_uri (const char *uri);
/* A compressors list libmongoc was built with, else a CONFIG error. */
bool mh_compressors_check (const char *value, const char *label, mongo_helper_error_t *error);
/* connection_options: split once (CONFIG errors name c->label), each
 * entry taken by the setting it names, the rest appended to the URI. */
void mh_conn_opts_free (mh_conn_opts_t *c);
bool mh_conn_opts_split (mh_conn_opts_t *c, const char *text, mongo_helper_error_t *error);
const char *mh_conn_opts_take (mh_conn_opts_t *c, const char *option);
/* Options merged into the URI text: `uri` with the extras before `upto`
 * but `skip`; parsed with all of them, blaming the extra that breaks it
 * (by its source) when libmongoc refuses the result. */
void mh_extras_add (mh_extras_t *x, const char *option, const char *value, const char *label);
/* mh_extras_add() placing the option before the extras added so far. */
void mh_extras_add_first (mh_extras_t *x, const char *option, const char *value, const char *label);
void mh_extras_free (mh_extras_t *x);
char *mh_uri_merged (const char *uri, const mh_extras_t *x, size_t skip, size_t upto);
mongoc_uri_t *mh_uri_parse_merged (const char *uri,
                                   const mh_extras_t *x,
                                   const char *uri_source,
                                   char **merged,
                                   mongo_helper_error_t *error);

/* ==== Layer 3: config.c ============================================== */

/* The key rings a configuration may give the web helpers. */
typedef enum { MH_RING_SESSIONS, MH_RING_CACHE, MH_RING__COUNT } mh_ring_kind_t;

struct mongo_helper_config_t {
   char *uri; /* as resolved from its source */
   char *uri_redacted;
   char *database;
   char *source;
   mongoc_uri_t *muri;                /* with every setting applied */
   mongo_helper_retry_policy_t retry; /* see "Which operations retry" */
   /* Limits of the operations, defaults from mh_limits_defaults(). */
   int32_t max_result_bytes;            /* [db] max_result_bytes / MONGO_MAX_RESULT_BYTES */
   int32_t default_max_time_ms;         /* [db] default_max_time_ms / MONGO_DEFAULT_MAX_TIME_MS;
                                           0: none */
   int32_t command_metrics;             /* [db] command_metrics / MONGO_COMMAND_METRICS: 1
                                           installs libmongoc's command monitoring */
   mh_keyring_t *rings[MH_RING__COUNT]; /* session_keys / cache_keys (or
                                           their key files); NULL: none */
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

/* Every operation the library runs through mh_run(), in one table: its id
 * and its name, which is both the metric label (op="...") and the first
 * word of its error messages.  Names are snake_case and never change
 * meaning (dashboards key on them). */
#define MH_OPERATIONS(X)                                  \
   X (COMMAND, "command")                                 \
   X (READ_COMMAND, "read_command")                       \
   X (INSERT_ONE, "insert_one")                           \
   X (INSERT_MANY, "insert_many")                         \
   X (FIND, "find")                                       \
   X (FIND_ONE, "find_one")                               \
   X (FIND_STREAM, "find_stream")                         \
   X (UPDATE_ONE, "update_one")                           \
   X (UPDATE_MANY, "update_many")                         \
   X (REPLACE_ONE, "replace_one")                         \
   X (DELETE_ONE, "delete_one")                           \
   X (DELETE_MANY, "delete_many")                         \
   X (COUNT_DOCUMENTS, "count_documents")                 \
   X (ESTIMATED_COUNT, "estimated_count")                 \
   X (DISTINCT, "distinct")                               \
   X (BULK_INSERT, "bulk_insert")                         \
   X (AGGREGATE, "aggregate")                             \
   X (AGGREGATE_STREAM, "aggregate_stream")               \
   X (CREATE_INDEX, "create_index")                       \
   X (LIST_INDEXES, "list_indexes")                       \
   X (DROP_INDEX, "drop_index")                           \
   X (TEXT_SEARCH, "text_search")                         \
   X (GEO_NEAR, "geo_near")                               \
   X (GEO_WITHIN_POLYGON, "geo_within_polygon")           \
   X (GEO_WITHIN_CIRCLE, "geo_within_circle")             \
   X (GRIDFS_PUT, "gridfs_put")                           \
   X (GRIDFS_GET, "gridfs_get")                           \
   X (GRIDFS_FIND, "gridfs_find")                         \
   X (GRIDFS_DELETE, "gridfs_delete")                     \
   X (WATCH, "watch")                                     \
   X (DB_STATS, "db_stats")                               \
   X (COLLECTION_STATS, "collection_stats")               \
   X (COLLECTION_NAMES, "collection_names")               \
   X (SERVER_STATUS, "server_status")                     \
   X (SESSIONS_ENSURE_INDEXES, "sessions_ensure_indexes") \
   X (SESSIONS_CREATE, "sessions_create")                 \
   X (SESSIONS_LOAD, "sessions_load")                     \
   X (SESSIONS_SAVE, "sessions_save")                     \
   X (SESSIONS_SET, "sessions_set")                       \
   X (SESSIONS_UNSET, "sessions_unset")                   \
   X (SESSIONS_SET_USER, "sessions_set_user")             \
   X (SESSIONS_TOUCH, "sessions_touch")                   \
   X (SESSIONS_DELETE, "sessions_delete")                 \
   X (SESSIONS_REGENERATE, "sessions_regenerate")         \
   X (SESSIONS_DELETE_USER, "sessions_delete_user")       \
   X (SESSIONS_COUNT, "sessions_count")                   \
   X (SESSIONS_REKEY, "sessions_rekey")                   \
   X (CACHE_ENSURE_INDEXES, "cache_ensure_indexes")       \
   X (CACHE_SET, "cache_set")                             \
   X (CACHE_ADD, "cache_add")                             \
   X (CACHE_GET, "cache_get")                             \
   X (CACHE_GET_MANY, "cache_get_many")                   \
   X (CACHE_INCR, "cache_incr")                           \
   X (CACHE_DELETE, "cache_delete")                       \
   X (CACHE_TOUCH, "cache_touch")                         \
   X (CACHE_CLEAR, "cache_clear")                         \
   X (CACHE_LEASE, "cache_lease")                         \
   X (CACHE_REAP, "cache_reap")                           \
   X (CACHE_REKEY, "cache_rekey")                         \
   X (EVENTLOG_ENSURE, "eventlog_ensure")                 \
   X (EVENTLOG_LOG, "eventlog_log")                       \
   X (EVENTLOG_QUERY, "eventlog_query")                   \
   X (EVENT_WRITER_WRITE, "event_writer_write")

typedef enum {
#define MH_OPID_ENUM(id, name) MH_OPID_##id,
   MH_OPERATIONS (MH_OPID_ENUM)
#undef MH_OPID_ENUM
      MH_OPID__COUNT
} mh_opid_t;

/* The operation's name ("insert_one"); "unknown" outside the table. */
const char *mh_op_name (mh_opid_t op);

/* Installs command monitoring on a new pool, before its first pop. */
void mh_metrics_attach (mongoc_client_pool_t *pool);
/* One finished operation of mh_run(). */
void mh_metrics_op (mh_opid_t op, int64_t t0_us, int32_t retries, mongo_helper_category_t cat);
/* An encrypted record that did not open in operation `op`: `code` is its
 * MH_INTEGRITY_* code.  Decryption happens after mh_run, so its failures
 * are counted here, not among the operation's errors. */
void mh_metrics_integrity (mh_opid_t op, int32_t code);
/* Pool gauges. */
void mh_pool_wait_begin (void);
void mh_pool_wait_end (bool got);
void mh_pool_returned (void);

/* ==== Layer 6: the core, mongo_helper.c ============================== */

/* Every operation of the library runs through mh_run(), so that error
 * mapping, retries and metrics live in one place.  A call names the
 * operation, whether repeating it is safe, and where it runs; mh_run gives
 * the operation function the thread's handles for that place. */
typedef struct {
   mongoc_client_t *client;
   mongoc_database_t *db;               /* the call's database (default or named) */
   mongoc_collection_t *coll;           /* the call's collection, or NULL; borrowed */
   bson_error_t error;                  /* set by a failing operation */
   unsigned labels;                     /* MH_LABEL_* of the server's error reply */
   const mongo_helper_config_t *config; /* the pool's configuration */
} mh_attempt_t;

typedef bool (*mh_op_fn) (mh_attempt_t *a, void *ctx);

/* What an operation is, so the path knows whether repeating it is safe. */
enum {
   MH_OP_READ = 1u << 0,       /* reads only: safe to repeat */
   MH_OP_WRITE = 1u << 1,      /* writes: repeated only where the driver's
                                  retryable-writes protocol makes it safe */
   MH_OP_IDEMPOTENT = 1u << 2, /* a write that may be repeated (e.g. an
                                  upsert by _id, createIndexes) */
   MH_OP_CHECKED = 1u << 3,    /* the caller built every document it sends
                                  around values it checked with
                                  mh_doc_check_embedded(): ops.c does not
                                  walk them again (the web helpers) */
};

/* Operations whose effects reach the caller while they run (bytes handed
 * to a write callback, change events): mh_run must never repeat them, and
 * a write without MH_OP_IDEMPOTENT is the flag set it never repeats. */
#define MH_OP_ONCE MH_OP_WRITE

typedef struct {
   mh_opid_t op;
   unsigned flags;         /* MH_OP_* */
   const char *database;   /* NULL: the default database */
   const char *collection; /* NULL: the operation has none */
   const char *detail;     /* NULL, or words for the error message */
} mh_call_t;

/* Server error labels an operation saw (mh_attempt_labels). */
enum {
   MH_LABEL_RETRYABLE_WRITE = 1u << 0,
   MH_LABEL_TRANSIENT_TRANSACTION = 1u << 1,
   MH_LABEL_RESUMABLE_CHANGE_STREAM = 1u << 2,
};

/* Records the error labels of a server reply for mh_run's decision. */
void mh_attempt_labels (mh_attempt_t *a, const bson_t *reply);

/* Runs `fn`, retrying transient failures of reads and idempotent writes
 * with backoff, behind the circuit breaker, and records metrics.  On
 * failure the message reads "<op> [detail] on <db>[.<coll>] failed: ...",
 * formatted only then. */
bool mh_run (const mh_call_t *call, mh_op_fn fn, void *ctx, mongo_helper_error_t *error);

/* For the library's own background threads (the event writer's): the
 * calling thread's pooled client is its own, like an acquired connection.
 * mongo_helper_shutdown() neither takes it back nor frees its pool under
 * it, and the thread does not start a new singleton after a shutdown: it
 * keeps that pool until it gives the client back (thread exit or
 * mongo_helper_thread_release()), or moves to the pool of a later init. */
void mh_thread_slot_own (void);

/* "database.collection" for a message, with the default database's real
 * name when `database` is NULL. */
const char *mh_ns (char *buf, size_t size, const char *database, const char *collection);

/* A copy of key ring `kind` of the current configuration (*ring NULL when
 * it has none), starting the singleton as any operation's first call
 * does. */
bool mh_current_keyring (mh_ring_kind_t kind, mh_keyring_t **ring, mongo_helper_error_t *error);

/* Runs {cmd_name: 1} on admin through the dedicated client (not the
 * pool) within `timeout_ms` (<= 0: 2000 ms).  `reply` is always
 * initialised; `elapsed_us` (may be NULL) receives the round trip. */
bool mh_direct_command (const char *cmd_name,
                        int32_t timeout_ms,
                        bson_t *reply,
                        int64_t *elapsed_us,
                        mongo_helper_error_t *error);

/* ==== Layer 7: ops.c (shared), stream.c, health.c, command.c ========= */

/* command.c */
/* mongo_helper_command() on `database` (NULL: the default one). */
bool mh_command_on (const char *database,
                    const bson_t *command,
                    bson_t *reply,
                    mongo_helper_error_t *error);

#define MH_EARTH_RADIUS_M MONGO_HELPER_EARTH_RADIUS_M

/* ops.c: the document operations every area above runs.  Each takes a
 * ready call (operation, flags, place) and arguments its caller checked;
 * the documents it hands to libmongoc (filters, documents, updates,
 * sorts) it depth-checks itself too, with mh_doc_check(). */

/* `opts` (may be NULL), or `scratch` holding a copy of it with the
 * configured default maxTimeMS, when there is one and `opts` carries none.
 * `scratch` is always initialised: the caller bson_destroy()s it. */
const bson_t *mh_opts_max_time (const mh_attempt_t *a, const bson_t *opts, bson_t *scratch);

/* Relaxed extended JSON of one document / of the documents of an array,
 * each depth-checked first; NULL with INVALID_ARGUMENT naming `hint` when
 * the text would pass `max_bytes` (0: no cap). */
char *mh_json_doc (const char *what,
                   const bson_t *doc,
                   size_t max_bytes,
                   const char *hint,
                   mongo_helper_error_t *error);
char *mh_json_array (const char *what,
                     const bson_t *array,
                     size_t max_bytes,
                     const char *hint,
                     mongo_helper_error_t *error);

/* Finds into `results` (an array, reinitialised, at most
 * max_result_bytes); one document: mh_crud_find_one(). */
bool mh_crud_find (const mh_call_t *call,
                   const bson_t *filter,
                   const bson_t *opts,
                   bson_t *results,
                   mongo_helper_error_t *error);
/* The same, telling the max_result_bytes in force (for JSON output). */
bool mh_crud_find_ex (const mh_call_t *call,
                      const bson_t *filter,
                      const bson_t *opts,
                      bson_t *results,
                      size_t *max_bytes,
                      mongo_helper_error_t *error);

/* The first match copied into `doc` (reinitialised; empty when none). */
bool mh_crud_find_one (const mh_call_t *call,
                       const bson_t *filter,
                       const bson_t *opts,
                       bson_t *doc,
                       bool *found,
                       mongo_helper_error_t *error);
/* With `limit_one` (and no `opts`) it asks for one document, {limit: 1},
 * written with maxTimeMS straight into the command's options. */
bool mh_crud_find_one_ex (const mh_call_t *call,
                          const bson_t *filter,
                          const bson_t *opts,
                          bool limit_one,
                          bson_t *doc,
                          bool *found,
                          size_t *max_bytes,
                          mongo_helper_error_t *error);

/* Checks `doc` with mh_doc_check_stored() and inserts it without
 * libmongoc's second validation. */
bool mh_crud_insert_one (const mh_call_t *call, const bson_t *doc, mongo_helper_error_t *error);

/* Initialises `opts` (static, nothing to destroy) as {"validate": false},
 * for insert paths whose documents mh_doc_check_stored() accepted. */
void mh_opts_no_validate (bson_t *opts);

bool mh_crud_insert_many (const mh_call_t *call,
                          const bson_t *const *docs,
                          size_t n,
                          bool ordered,
                          int64_t *inserted,
                          mongo_helper_error_t *error);

/* The one place an _id is made: false when `doc` has one, else true with
 * `with_id` initialised (the caller destroys it) as a copy with a new
 * ObjectId first.  `id` (may be NULL) is left on the _id to insert. */
bool mh_doc_with_id (const bson_t *doc, bson_t *with_id, bson_iter_t *id);

typedef enum { MH_UPDATE_ONE, MH_UPDATE_MANY, MH_REPLACE_ONE } mh_update_kind_t;

/* `result` (may be NULL) is reset first, then filled on success. */
bool mh_crud_update (const mh_call_t *call,
                     mh_update_kind_t kind,
                     const bson_t *filter,
                     const bson_t *update,
                     bool upsert,
                     mongo_helper_update_result_t *result,
                     mongo_helper_error_t *error);
void mh_update_result_reset (mongo_helper_update_result_t *result);

bool mh_crud_delete (const mh_call_t *call,
                     const bson_t *filter,
                     bool many,
                     int64_t *deleted,
                     mongo_helper_error_t *error);

/* count_documents with `filter`, or the estimated count when it is NULL. */
bool mh_crud_count (const mh_call_t *call,
                    const bson_t *filter,
                    const bson_t *opts,
                    int64_t *count,
                    mongo_helper_error_t *error);

enum { MH_FAM_UPSERT = 1u << 0, MH_FAM_RETURN_NEW = 1u << 1, MH_FAM_REMOVE = 1u << 2 };

/* findAndModify: the document before (or, with MH_FAM_RETURN_NEW, after)
 * the change, or removed, into `doc` (reinitialised); *found. */
bool mh_crud_find_and_modify (const mh_call_t *call,
                              const bson_t *filter,
                              const bson_t *update,
                              const bson_t *sort,
                              unsigned flags,
                              bson_t *doc,
                              bool *found,
                              mongo_helper_error_t *error);

/* The distinct values of `field` into `values` (an array). */
bool mh_crud_distinct (const mh_call_t *call,
                       const char *field,
                       const bson_t *filter,
                       bson_t *values,
                       mongo_helper_error_t *error);

/* The find options struct as the find command's options (its projection
 * and sort depth-checked). */
bool mh_find_opts (const char *what,
                   const mongo_helper_find_opts_t *o,
                   bson_t *out,
                   mongo_helper_error_t *error);

/* A read with ready-made options (mh_crud_find_ex checks the filter);
 * `max_bytes` (may be NULL) as for mh_crud_find_ex(). */
bool mh_find_exec (mh_opid_t op,
                   const char *database,
                   const char *collection,
                   const bson_t *filter,
                   const bson_t *opts,
                   bson_t *results,
                   size_t *max_bytes,
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

bool mh_stream_run (mh_opid_t op, mh_stream_ctx_t *ctx, mongo_helper_error_t *error);

/* ==== Layer 8: crud, aggregate, bulk, index, search, gridfs, watch, stats:
 * nothing shared. */

/* ==== Layer 9: web helpers (web.c shared), concurrent.c ============== */

/* Values near the document limit cannot be stored with their envelope
 * (_id, dates): the web helpers keep this margin. */
#define MH_WEB_ENVELOPE 4096

/* -- The helpers' operations (web.c): one update, reporting how many
 * documents it matched or upserted. */
bool mh_web_update (const mh_call_t *call,
                    mh_update_kind_t kind,
                    const bson_t *filter,
                    const bson_t *update,
                    bool upsert,
                    int64_t *addressed,
                    mongo_helper_error_t *error);

/* Lazy index set-up of one helper handle: the first request runs ensure
 * and the others wait for it, but no lock is held across the network. */
typedef struct {
   bool lazy;
   atomic_bool done; /* the fast path */
   pthread_mutex_t lock;
   pthread_cond_t cond;
   int state;           /* MH_SETUP_*, under lock */
   unsigned fork_count; /* of the process whose thread runs it */
} mh_web_setup_t;

enum { MH_SETUP_PENDING, MH_SETUP_RUNNING, MH_SETUP_DONE };

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
/* A caller's document to store: mh_doc_check() (well-formed, nesting) and
 * mh_web_size_ok(). */
bool
mh_web_doc_ok (const char *fn, const char *label, const bson_t *doc, mongo_helper_error_t *error);
/* A duration (ms) within [min, MONGO_HELPER_MAX_DURATION_MS], else
 * INVALID_ARGUMENT naming `what` and the range. */
bool mh_web_duration_ok (int64_t ms, int64_t min, const char *what, mongo_helper_error_t *error);
bool mh_web_ensure_op (mh_attempt_t *a, void *ctx);
void mh_web_setup_init (mh_web_setup_t *s, bool lazy);
void mh_web_setup_destroy (mh_web_setup_t *s);
/* An explicit ensure succeeded: the lazy one is no longer needed. */
void mh_web_setup_done (mh_web_setup_t *s);
bool
mh_web_ready (mh_web_setup_t *s, mh_web_ensure_fn fn, void *handle, mongo_helper_error_t *error);
void mh_web_append_date (bson_t *b, const char *key, int64_t ms);
void mh_web_append_live (bson_t *b, const char *field, int64_t now);

/* -- Encryption at rest (web.c): the payload of a session or cache record
 * sealed under MH_WEB_SEALED with its record identity (collection and
 * stored _id) as associated data; the other fields stay clear, so the
 * helpers' queries on them keep working. */
#define MH_WEB_SEALED "sealed"

/* A helper handle's key ring: made from the handle's options at once, or
 * taken from the configuration on the handle's first use (the singleton
 * may not exist yet when the handle is made).  Lock-free: `state` goes
 * once from 0 to the ring (or to "none") and never changes again. */
typedef struct {
   atomic_uintptr_t state;
   mh_ring_kind_t kind;
} mh_web_ring_t;

/* From options `keys` (a ring's text) or `key_file` (at most one; both
 * NULL: the configuration's, later).  CONFIG errors name `what` ("sessions
 * option keys"). */
bool mh_web_ring_init (mh_web_ring_t *r,
                       mh_ring_kind_t kind,
                       const char *keys,
                       const char *key_file,
                       const char *what,
                       mongo_helper_error_t *error);
void mh_web_ring_destroy (mh_web_ring_t *r);
/* The handle's ring (NULL: it encrypts nothing), resolving it first if
 * needed. */
bool mh_web_ring (mh_web_ring_t *r, const mh_keyring_t **ring, mongo_helper_error_t *error);

/* Seals `len` bytes for the record `id` of `coll` into `parent` as
 * MH_WEB_SEALED. */
bool mh_web_seal (const mh_keyring_t *ring,
                  const char *coll,
                  const bson_value_t *id,
                  const uint8_t *plain,
                  size_t len,
                  bson_t *parent,
                  mongo_helper_error_t *error);

/* Opens MH_WEB_SEALED of the stored record `doc` (its _id and `coll` the
 * associated data) into `plain` (always initialised: a copy of a
 * well-formed document).  Failures are INTEGRITY, counted under `op`; a
 * NULL ring is one (UNKNOWN_KEY: the handle has no keys). */
bool mh_web_open (const mh_keyring_t *ring,
                  mh_opid_t op,
                  const char *coll,
                  const bson_t *doc,
                  bson_t *plain,
                  mongo_helper_error_t *error);

/* Appends to `filter` "the payload is still what `doc` holds": the same
 * nonce when `doc` is sealed, else no envelope and the same clear field
 * `clear` (or none), so a write based on `doc` never overwrites a
 * concurrent one (compare-and-swap). */
void mh_web_cas (bson_t *filter, const bson_t *doc, const char *clear);

/* The update {$set: {sealed: <plain sealed>}, $unset: {<clear>: ""}}
 * into `update` (initialised). */
bool mh_web_reseal_update (const mh_keyring_t *ring,
                           const char *coll,
                           const bson_value_t *id,
                           const bson_t *plain,
                           const char *clear,
                           bson_t *update,
                           mongo_helper_error_t *error);

/* Rekey: every record of `coll` sealed with another key than the ring's
 * current one, or matching one of the `clear_clauses` (an array of
 * filters for the records still in clear text), is opened (or, clear,
 * taken from field `clear`, wrapped {v: value} when `wrap`) and sealed
 * again with the current key, `batch` records at a time (0: the default;
 * over the maximum: INVALID_ARGUMENT), each write a compare-and-swap
 * (mh_web_cas).  *changed (may be NULL) counts the records written, on
 * failure too.  Records that do not open are left as
 * they are, counted, and make the call fail with INTEGRITY at the end. */
typedef struct {
   mh_opid_t op;
   const mh_keyring_t *ring;
   const char *coll;
   const char *clear;
   bool wrap;
} mh_web_sealing_t;

bool mh_web_rekey (const mh_web_sealing_t *w,
                   const bson_t *clear_clauses,
                   size_t batch,
                   int64_t *changed,
                   mongo_helper_error_t *error);

/* -- Session internals the rotations use (sessions.c). */
struct mongo_helper_sessions_t {
   char *coll;
   mongo_helper_sessions_options_t opt;
   mh_web_setup_t setup;
   mh_web_ring_t ring;
};

/* Clears `error`, checks the handle, turns `id` into its stored digest `hex`
 * (NOT_FOUND when malformed), and runs the lazy index set-up. */
bool mh_sessions_begin (mongo_helper_sessions_t *s,
                        const char *id,
                        char hex[65],
                        mongo_helper_error_t *error);
/* Filter parts: not claimed by a regenerate; {_id: hex, live at `now`}. */
void mh_session_unclaimed (bson_t *f);
/* A new random id and its digest. */
bool mh_session_new_id (char id[MONGO_HELPER_SESSION_ID_SIZE],
                        char hex[65],
                        mongo_helper_error_t *error);
/* Inserts a session document (data sealed with `ring` when not NULL). */
bool mh_session_insert (mongo_helper_sessions_t *s,
                        const mh_keyring_t *ring,
                        mh_opid_t op,
                        const char *hex,
                        const bson_t *data,
                        const char *user_id,
                        int64_t created,
                        int64_t abs_exp,
                        mongo_helper_error_t *error);
void mh_session_filter (bson_t *f, const char *hex, int64_t now);
/* The data of a read session document, opened when sealed. */
bool mh_session_data (mongo_helper_sessions_t *s,
                      mh_opid_t op,
                      const bson_t *doc,
                      bson_t *data_out,
                      mongo_helper_error_t *error);
/* A date field of a document in ms, 0 when absent. */
int64_t mh_doc_date (const bson_t *doc, const char *field);

/* -- Cache internals the lease and the rekey use (cache.c). */
struct mongo_helper_cache_t {
   char *coll;
   mongo_helper_cache_options_t opt;
   mh_web_setup_t setup;
   mh_web_ring_t ring;
};

/* Appends the stored _id of `key` under `field` (the key, or a prefix and
 * hash for a long one). */
bool mh_cache_append_id (const mongo_helper_cache_t *c,
                         bson_t *dst,
                         const char *field,
                         const char *key,
                         mongo_helper_error_t *error);
/* Clears `error`, checks handle and key, runs the lazy set-up and fills
 * `filter` with the key's _id (and, with `live`, not expired). */
bool mh_cache_begin (mongo_helper_cache_t *c,
                     const char *key,
                     bson_t *filter,
                     bool live,
                     mongo_helper_error_t *error);
/* Inserts `doc`; one retry after reaping an expired document holding its
 * _id. */
bool mh_cache_insert (mongo_helper_cache_t *c,
                      mh_opid_t op,
                      const bson_t *doc,
                      mongo_helper_error_t *error);
/* A TTL argument within its documented range. */
bool mh_cache_ttl_ok (int64_t ttl_ms, const char *what, mongo_helper_error_t *error);

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
