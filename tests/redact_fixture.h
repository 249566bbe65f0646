/* What the redaction suites share (test_redact.c, test_redact_random.c):
 * a log sink at DEBUG, a clean environment, INI files and the hidden/shown
 * assertions. */
#ifndef REDACT_FIXTURE_H
#define REDACT_FIXTURE_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- fixture: a log sink at DEBUG, a clean environment ---------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static bson_string_t *log_text;
static char ini_dir[64];
static char ini_path[96];

/* libmongoc's threads may log too, hence the lock. */
static inline void
capture_log (mongo_helper_log_level_t level, const char *domain, const char *message, void *data)
{
   (void) data;
   pthread_mutex_lock (&log_lock);
   bson_string_append_printf (log_text, "%d %s: %s\n", (int) level, domain, message);
   pthread_mutex_unlock (&log_lock);
}

static inline void
log_reset (void)
{
   pthread_mutex_lock (&log_lock);
   bson_string_truncate (log_text, 0);
   pthread_mutex_unlock (&log_lock);
}

/* A copy of what was logged since the last reset; bson_free() it. */
static inline char *
log_copy (void)
{
   char *copy;

   pthread_mutex_lock (&log_lock);
   copy = bson_strdup (log_text->str);
   pthread_mutex_unlock (&log_lock);
   return copy;
}

static inline void
setup (void)
{
   mh_test_bare_setup ();
   /* Not the repository's conf/mongo_helper.ini: only what a test sets. */
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   log_text = bson_string_new ("");
   mongo_helper_set_log_handler (capture_log, MONGO_HELPER_LOG_DEBUG, NULL);
   /* The properties rewrite the INI file thousands of times: tmpfs when
    * there is one, as truncating on a disk can cost a millisecond. */
   bson_strncpy (ini_dir, "/dev/shm/mh_redact_XXXXXX", sizeof ini_dir);
   if (!mkdtemp (ini_dir)) {
      bson_strncpy (ini_dir, "/tmp/mh_redact_XXXXXX", sizeof ini_dir);
      ck_assert_ptr_nonnull (mkdtemp (ini_dir));
   }
   snprintf (ini_path, sizeof ini_path, "%s/redact.ini", ini_dir);
}

static inline void
teardown (void)
{
   mh_test_teardown ();
   mongo_helper_set_log_handler (NULL, MONGO_HELPER_LOG_ERROR, NULL);
   bson_string_free (log_text, true);
   log_text = NULL;
   unlink (ini_path);
   rmdir (ini_dir);
}

/* Writes a [db] section with `mongo_uri = <value>` to the test's INI file;
 * `quote` is '"' or 0 (unquoted). */
static inline const char *
write_ini_uri (const char *value, char quote)
{
   FILE *f = fopen (ini_path, "w");

   ck_assert_ptr_nonnull (f);
   if (quote) {
      fprintf (f, "[db]\nmongo_uri = %c%s%c\n", quote, value, quote);
   } else {
      fprintf (f, "[db]\nmongo_uri = %s\n", value);
   }
   fclose (f);
   return ini_path;
}

/* `text` as printable ASCII with \xNN escapes, for failure messages. */
static inline const char *
shown (const char *text, char *buf, size_t size)
{
   size_t w = 0;

   for (const unsigned char *p = (const unsigned char *) text; *p && w + 5 < size; p++) {
      if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
         buf[w++] = (char) *p;
      } else {
         w += (size_t) snprintf (buf + w, size - w, "\\x%02x", *p);
      }
   }
   buf[w] = '\0';
   return buf;
}

static inline void
assert_shown (const char *where, const char *text, const char *expected)
{
   char a[2048];

   ck_assert_msg (strstr (text, expected),
                  "expected %s to show '%s', found: %s",
                  where,
                  expected,
                  shown (text, a, sizeof a));
}

#endif
