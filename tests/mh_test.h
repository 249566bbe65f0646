/* Shared helpers for the Check suites. */
#ifndef MH_TEST_H
#define MH_TEST_H

#include <check.h>

#include "mongo_helper.h"

Suite *config_suite (void);
Suite *singleton_suite (void);
Suite *live_suite (void);

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

/* A collection name unique to this process and call. */
const char *mh_test_collection (const char *prefix);

/* Records a skipped test with its reason (counted by tests/run_checks.sh)
 * and returns from the test. */
void mh_test_skip_note (const char *test, const char *reason);
#define MH_SKIP(reason)                         \
   do {                                         \
      mh_test_skip_note (__func__, (reason));   \
      return;                                   \
   } while (0)

/* Asserts that `ok` is true and prints the library error otherwise. */
#define MH_ASSERT_OK(ok, err)                                         \
   ck_assert_msg ((ok), "expected success, got %s error %d: %s",      \
                  mongo_helper_category_name ((err).category),        \
                  (int) (err).code, (err).message)

#endif
