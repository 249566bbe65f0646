/* Shared helpers for the Check suites. */
#ifndef MH_TEST_H
#define MH_TEST_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mongo_helper.h"

Suite *config_suite (void);
Suite *singleton_suite (void);
Suite *live_suite (void);
Suite *fork_suite (void);
Suite *event_writer_fork_suite (void);

/* Unsets every variable the library reads, so a test sees only what it
 * sets itself (Check runs each test in its own process). */
void mh_test_clean_env (void);

/* Writes `content` to a new file in a fresh temporary directory and
 * returns its path (static storage, valid until the next call). */
const char *mh_test_write_ini (const char *content);

/* The live server's URI (MONGO_TEST_URI), or NULL when none is set. */
const char *mh_test_uri (void);

/* Points the singleton at the live server with short timeouts; fails the
 * test when no server is configured. */
void mh_test_live_setup (void);

/* A collection of the default database through the singleton, for
 * reading back what the library stored; the caller destroys it. */
mongoc_collection_t *mh_test_raw_collection (const char *name);

/* A collection name unique to this process and call. */
const char *mh_test_collection (const char *prefix);

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

/* A local port nobody listens on: binds an ephemeral port, then closes it. */
int mh_test_free_port (void);

/* True when something accepts TCP connections on 127.0.0.1:`port`. */
bool mh_test_port_accepts (int port);

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

/* Asserts that `ok` is true and prints the library error otherwise. */
#define MH_ASSERT_OK(ok, err)                                  \
   ck_assert_msg ((ok),                                        \
                  "expected success, got %s error %d: %s",     \
                  mongo_helper_category_name ((err).category), \
                  (int) (err).code,                            \
                  (err).message)

#endif
