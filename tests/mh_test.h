/* The shared test fixture (tests/mh_test.c): the suites, set-up and
 * teardown, read-back helpers and private test servers. */
#ifndef MH_TEST_H
#define MH_TEST_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mongo_helper.h"

/* ---- suites, one per file of the library (tests/test_<area>.c) -------
 * tests/check_main.c runs them in this order: the library's layer order,
 * as in the map at the top of mongo_helper.c. */

Suite *redact_suite (void);
Suite *redact_random_suite (void);
Suite *crypto_suite (void);
Suite *keyring_suite (void);
Suite *error_suite (void);
Suite *log_suite (void);
Suite *config_suite (void);
Suite *config_settings_suite (void);
Suite *resilience_suite (void);
Suite *resilience_outages_suite (void);
Suite *security_suite (void);
Suite *depth_suite (void);
Suite *depth_levels_suite (void);
Suite *limits_suite (void);
Suite *limits_caps_suite (void);
Suite *metrics_suite (void);
Suite *singleton_suite (void); /* mongo_helper.c: singleton, pool, commands */
Suite *crud_suite (void);
Suite *stored_suite (void);
Suite *stream_suite (void);
Suite *health_suite (void);
Suite *aggregate_suite (void);
Suite *bulk_suite (void);
Suite *index_suite (void);
Suite *search_suite (void);
Suite *gridfs_suite (void);
Suite *watch_suite (void);
Suite *stats_suite (void);
Suite *sessions_suite (void);
Suite *sessions_sealed_suite (void);
Suite *sessions_rekey_suite (void);
Suite *sessions_keys_suite (void);
Suite *session_races_suite (void);
Suite *session_round_trips_suite (void);
Suite *cache_suite (void);
Suite *cache_sealed_suite (void);
Suite *cache_lease_suite (void);
Suite *eventlog_suite (void);
Suite *web_limits_suite (void);
Suite *concurrent_suite (void);
Suite *event_writer_suite (void);
Suite *event_writer_fork_suite (void);
Suite *fork_suite (void);
Suite *fork_inherit_suite (void);
Suite *fork_log_sink_suite (void);

/* ---- fixtures ---------------------------------------------------------
 * Check runs each test in its own forked process, so a file's static
 * `mongo_helper_error_t err` starts zeroed in every test and the
 * environment a set-up changes is the test's own.  Every TCase ends with
 * mh_test_teardown and starts with one of these set-ups ("core" TCases
 * need no server, "live" ones the test server), a file's own built on
 * them, or none when each test configures its own server. */

/* Unsets every variable the library reads, so a test sees only what it
 * sets itself.  tests/env_check.sh (run by tests/run_checks.sh) fails when
 * the library reads a variable this list lacks. */
void mh_test_clean_env (void);

/* Nothing configured: no variable the library reads, and the working
 * directory is /tmp, which has no conf/mongo_helper.ini.  For tests of the
 * configuration itself. */
void mh_test_bare_setup (void);

/* The singleton points at a closed port of 127.0.0.1 and no INI file is
 * read: bad input must be refused before anything is sent, and anything
 * sent fails with CONNECTION instead of INVALID_ARGUMENT. */
void mh_test_offline_setup (void);

/* Points the singleton at the live server with short timeouts; fails the
 * test when no server is configured. */
void mh_test_live_setup (void);

/* Shuts the singleton down and stops every private test server the test
 * started, removing their directories.  Check runs a teardown only when
 * the test returns: a failed assertion ends the test's process at once,
 * and its servers die with it (mh_test_server_start), directories left. */
void mh_test_teardown (void);

/* "capture" TCases: a private test server that logs every command, with
 * the singleton pointed at it (database mh_cap); mh_test_teardown stops
 * it.  Without MH_MOCK_SERVER_SCRIPT no server starts and
 * mh_test_capturing() is false: the tests skip themselves. */
void mh_test_capture_setup (void);
bool mh_test_capturing (void);

/* The last command named `name` (its first key) that the capture server
 * received, as canonical extended JSON without $db (checked to be mh_cap)
 * and $readPreference; fails the test when there is none.  The caller
 * frees it with bson_free(). */
char *mh_test_captured (const char *name);

/* ---- environment and files ------------------------------------------- */

/* Writes `content` to a new file in a fresh temporary directory and
 * returns its path (static storage, valid until the next call). */
const char *mh_test_write_ini (const char *content);

/* The live server's URI (MONGO_TEST_URI), or NULL when none is set. */
const char *mh_test_uri (void);

/* True when the live server is tests/mock_server.py (MH_MOCK_SERVER). */
bool mh_test_on_mock (void);

/* A collection name unique to this process and call. */
const char *mh_test_collection (const char *prefix);

/* ---- reading back what the library stored -----------------------------
 * With raw libmongoc through the singleton's database, so a test checks
 * the stored data without the code under test. */

/* A collection of the default database; the caller destroys it. */
mongoc_collection_t *mh_test_raw_collection (const char *name);

/* The number of documents of `coll` matching `filter` (NULL: all). */
int64_t mh_test_count_in (mongoc_collection_t *coll, const bson_t *filter);
int64_t mh_test_raw_count (const char *coll, const bson_t *filter);

/* A copy of the first document of `coll` matching `filter` (the caller
 * destroys it), or NULL when none does. */
bson_t *mh_test_raw_find_one (const char *coll, const bson_t *filter);

/* The expireAfterSeconds of index `name` of `coll`: -1 when it has none,
 * -2 when there is no such index. */
int64_t mh_test_index_ttl (const char *coll, const char *name);

/* ---- documents --------------------------------------------------------
 * Each fails the test, naming the path, when the value is missing or of
 * another type. */

/* The number of elements of an array document. */
uint32_t mh_test_arr_len (const bson_t *arr);

/* The i-th document of an array document, borrowed from `arr`. */
void mh_test_arr_doc (const bson_t *arr, uint32_t i, bson_t *out);

/* The number at dotted `path`, as int64. */
int64_t mh_test_int_at (const bson_t *doc, const char *path);

/* The string at dotted `path`, borrowed from `doc`. */
const char *mh_test_utf8_at (const bson_t *doc, const char *path);

/* True when `doc` has the top-level field `key`. */
bool mh_test_has_field (const bson_t *doc, const char *key);

/* ---- data through the library ------------------------------------------ */

/* mongo_helper_count_documents() on the default database. */
int64_t mh_test_count_documents (const char *coll, const bson_t *filter);

/* Inserts {n: 0..n-1, even: bool, tag: "t<n%3>"} with insert_many. */
void mh_test_seed (const char *coll, int n);

/* Drops `coll` of `database` (NULL: the default database). */
void mh_test_drop (const char *database, const char *coll);

/* An event log on `coll` with the default options. */
mongo_helper_eventlog_t *mh_test_eventlog_on (const char *coll);

/* An event time an hour ago: inside the event log's retention, so the
 * test server's TTL monitor (every second) never removes the event
 * mid-test, even when valgrind makes the test slow. */
int64_t mh_test_recent_base_ms (void);

/* ---- skips, time, ports ------------------------------------------------ */

/* Records a skipped test with its reason (counted by tests/run_checks.sh)
 * and returns from the test. */
void mh_test_skip_note (const char *test, const char *reason);
#define MH_SKIP(reason)                       \
   do {                                       \
      mh_test_skip_note (__func__, (reason)); \
      return;                                 \
   } while (0)

/* Sleeps `ms` milliseconds, resuming after signals. */
void mh_test_sleep_ms (long ms);

/* True under make memcheck (MH_VALGRIND=1): heavy tests do less. */
bool mh_test_under_valgrind (void);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t mh_test_now_ms (void);

/* Waits up to `bound_ms` for child `pid`; one still running then is
 * SIGKILLed and reaped, and false returned (it hung).  `*wstatus`
 * receives its wait status. */
bool mh_test_wait_child (pid_t pid, int64_t bound_ms, int *wstatus);

/* Defined when built with AddressSanitizer.  Its allocator (GCC 12's and
 * clang 14's) has no fork handlers: a child forked while another thread
 * is inside malloc waits for ever in its first malloc.  Tests that fork
 * while other threads run skip there (make check and make memcheck run
 * them). */
#if defined(__SANITIZE_ADDRESS__)
#define MH_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MH_TEST_ASAN 1
#endif
#endif

/* A local port nobody listens on: binds an ephemeral port, then closes it. */
int mh_test_free_port (void);

/* True when something accepts TCP connections on 127.0.0.1:`port`. */
bool mh_test_port_accepts (int port);

/* ---- private test servers ---------------------------------------------- */

/* A private test server ($MH_MOCK_SERVER_SCRIPT): for tests that kill and
 * restart a server, need TLS or a replica set, or read the commands it
 * received.  Zero-initialise it; set `persist` before the first start. */
typedef struct {
   bool persist;         /* --dbpath <dir>/db: data survives kill + restart */
   pid_t pid;            /* 0 while not running */
   int port;             /* kept after a kill, for a restart on the same port */
   char dir[64];         /* private temporary directory, made by the first start */
   char command_log[96]; /* <dir>/commands.log: one JSON line per command */
} mh_test_server_t;

/* Starts the server on `port` (0: a free one, learnt from its port file)
 * with the NULL-terminated `extra_args` (may be NULL) and waits until it
 * accepts connections; fails the test when it does not.  Restarting a
 * killed server reuses its directory (and so its data with `persist`).
 * The server gets SIGKILL when the test process ends, whatever the
 * outcome. */
void mh_test_server_start (mh_test_server_t *s, int port, const char *const *extra_args);

/* SIGKILLs the server and reaps it; keeps its directory and port. */
void mh_test_server_kill (mh_test_server_t *s);

/* Kills the server (if running) and removes its directory. */
void mh_test_server_stop (mh_test_server_t *s);

/* How many lines of the server's command log contain `needle`. */
int mh_test_server_log_count (const mh_test_server_t *s, const char *needle);

/* Kills every server this test process started and removes their
 * directories: for a teardown, when the handles lived on a test's stack. */
void mh_test_server_stop_all (void);

/* For a live test that needs what the shared test server was not started
 * with (a replica set, MongoDB 5.0): on the test server (MH_MOCK_SERVER)
 * starts private server `s` with `extra_args` and points the singleton at
 * it (shut down first; database mh_test, `uri_options` such as
 * "replicaSet=rs0" appended); on a real server (MONGO_TEST_URI) starts
 * nothing and the test runs there.  Returns the URI the singleton uses
 * now (static storage), for a test's own libmongoc clients. */
const char *mh_test_own_live_server (mh_test_server_t *s,
                                     const char *const *extra_args,
                                     const char *uri_options);

/* ---- stored-record helpers ---------------------------------------------- */

/* Lowercase hex SHA-256 of `len` bytes of `s`: how the session store names
 * a session's document (tests compute it to read the raw record). */
void mh_test_sha256_hex (const char *s, size_t len, char out[65]);

/* The integrity failures the metrics count for operation `op` and reason
 * `reason` (integrity_failures.<op>.<reason> of the JSON snapshot; 0 when
 * absent). */
int64_t mh_test_integrity_count (const char *op, const char *reason);

/* ---- assertions -------------------------------------------------------- */

/* Asserts that `ok` is true and prints the library error otherwise. */
#define MH_ASSERT_OK(ok, err)                                  \
   ck_assert_msg ((ok),                                        \
                  "expected success, got %s error %d: %s",     \
                  mongo_helper_category_name ((err).category), \
                  (int) (err).code,                            \
                  (err).message)

/* Asserts that `call` fails with category `cat` and a message, in the
 * error variable `err` of the test file (cleared first, so a stale error
 * cannot pass). */
#define MH_ASSERT_FAILS_WITH(call, cat)                                      \
   do {                                                                      \
      memset (&err, 0, sizeof err);                                          \
      ck_assert_msg (!(call), "expected failure: %s", #call);                \
      ck_assert_msg (err.category == (cat),                                  \
                     "%s: expected %s, got %s (%s)",                         \
                     #call,                                                  \
                     mongo_helper_category_name (cat),                       \
                     mongo_helper_category_name (err.category),              \
                     err.message);                                           \
      ck_assert_msg (err.message[0] != '\0', "empty message for %s", #call); \
   } while (0)

#endif
