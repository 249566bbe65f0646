/* What the limit suites share (test_limits.c, test_limits_caps.c): the
 * refusal assertion, the fixture, seeding and streaming helpers. */
#ifndef LIMITS_FIXTURE_H
#define LIMITS_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;
static const char *coll;

#define ASSERT_REFUSED(call, needle)                                      \
   do {                                                                   \
      memset (&err, 0, sizeof err);                                       \
      ck_assert_msg (!(call), "expected a refusal: %s", #call);           \
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT, \
                     "%s: expected invalid_argument, got %s (%s)",        \
                     #call,                                               \
                     mongo_helper_category_name (err.category),           \
                     err.message);                                        \
      ck_assert_msg (strstr (err.message, (needle)),                      \
                     "%s: expected the message to say \"%s\", got: %s",   \
                     #call,                                               \
                     (needle),                                            \
                     err.message);                                        \
   } while (0)

static inline void
setup (void)
{
   memset (&err, 0, sizeof err);
   mh_test_live_setup ();
   coll = mh_test_collection ("limits");
}

static inline void
teardown (void)
{
   mongo_helper_shutdown ();
}

/* Inserts {_id: i, n: i} for i in 0..n-1. */
static inline void
insert_numbered (int n)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_error_t e;

   for (int i = 0; i < n; i++) {
      bson_t *d = BCON_NEW ("_id", BCON_INT32 (i), "n", BCON_INT32 (i));
      ck_assert_msg (mongoc_collection_insert_one (c, d, NULL, NULL, &e), "%s", e.message);
      bson_destroy (d);
   }
   mongoc_collection_destroy (c);
}

static inline int64_t
raw_count (void)
{
   mongoc_collection_t *c = mh_test_raw_collection (coll);
   bson_t empty = BSON_INITIALIZER;
   bson_error_t e;
   int64_t n = mongoc_collection_count_documents (c, &empty, NULL, NULL, NULL, &e);

   ck_assert_msg (n >= 0, "%s", e.message);
   mongoc_collection_destroy (c);
   return n;
}

/* ---- streams ---- */

typedef struct {
   size_t chunks;
   size_t sizes[16];
   size_t docs;
} chunks_t;

static inline bool
record_chunk (const bson_t *const *docs, size_t n, void *user_data)
{
   chunks_t *c = user_data;

   (void) docs;
   if (c->chunks < 16) {
      c->sizes[c->chunks] = n;
   }
   c->chunks++;
   c->docs += n;
   return true;
}

static inline bool
find_stream (size_t chunk_size, chunks_t *c)
{
   memset (c, 0, sizeof *c);
   return mongo_helper_find_stream (NULL, coll, NULL, NULL, chunk_size, record_chunk, c, &err);
}

#endif
