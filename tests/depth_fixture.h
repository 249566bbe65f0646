/* What the depth suites share (test_depth.c, test_depth_levels.c): the
 * limits, nesting builders without recursion, the refusal each kind of
 * input gets, the fixture and the 256 KiB-stack runner. */
#ifndef DEPTH_FIXTURE_H
#define DEPTH_FIXTURE_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

#define LIMIT 100     /* MongoDB's, MONGO_HELPER_MAX_DEPTH */
#define JSON_LIMIT 98 /* libbson's JSON parser */
#define HOSTILE 10000 /* ~80 KB of BSON */
#define SMALL_STACK (256 * 1024)

static mongo_helper_error_t err;
static const char *coll;
static bool verifying; /* the accepting test also checks each call's effect */

/* ---- building nested documents without recursion ---- */

typedef enum { NEST_DOC, NEST_ARRAY, NEST_CODE } nest_kind_t;

static inline void
put32 (uint8_t **p, uint32_t v)
{
   memcpy (*p, &v, 4); /* BSON is little-endian, like the test machines */
   *p += 4;
}

/* A document of `levels` levels (the top-level one is level 1): {a: {a:
 * ... {v: 1}}}, {a: [[ ... {v: 1}]]}, or code-with-scope values whose
 * scopes nest ({c: code("x", {c: ... {v: 1}})}).  Written straight into
 * one buffer, so a 10,000-level document costs no stack. */
static inline bson_t *
nest (int levels, nest_kind_t kind)
{
   const uint32_t inner = 12; /* {v: 1} */
   const uint32_t step = kind == NEST_CODE ? 18 : 8;
   const uint32_t total = inner + step * (uint32_t) (levels - 1);
   uint8_t *buf = malloc (total), *p = buf;
   bson_t *b;

   ck_assert_ptr_nonnull (buf);
   for (int i = 0; i < levels - 1; i++) {
      uint32_t len = total - step * (uint32_t) i;

      put32 (&p, len);
      if (kind == NEST_CODE) {
         *p++ = 0x0F;
         *p++ = 'c';
         *p++ = 0;
         put32 (&p, 4 + 4 + 2 + (len - step));
         put32 (&p, 2);
         *p++ = 'x';
         *p++ = 0;
      } else {
         *p++ = kind == NEST_ARRAY && i < levels - 2 ? 0x04 : 0x03;
         *p++ = kind == NEST_ARRAY && i > 0 ? '0' : 'a';
         *p++ = 0;
      }
   }
   put32 (&p, inner);
   *p++ = 0x10;
   *p++ = 'v';
   *p++ = 0;
   put32 (&p, 1);
   *p++ = 0;
   for (int i = 0; i < levels - 1; i++) {
      *p++ = 0;
   }
   ck_assert_uint_eq ((size_t) (p - buf), total);
   b = bson_new_from_data (buf, total);
   ck_assert_msg (b != NULL, "nest (%d) built invalid BSON", levels);
   free (buf);
   return b;
}

/* ---- the table ---- */

typedef struct {
   const char *name;
   bool (*run) (int levels, mongo_helper_error_t *error);
   int max_ok;          /* deepest accepted: LIMIT, or JSON_LIMIT for text */
   bool server_decides; /* at max_ok the server (or the call's own rules)
                           may refuse the input for its meaning, never for
                           its depth */
} depth_case_t;

/* The refusal each kind of input gets, naming the limit. */
static inline void
assert_refused_for_depth (const depth_case_t *c, int levels, const mongo_helper_error_t *e)
{
   const char *names_limit = c->max_ok == JSON_LIMIT ? "MongoDB's limit is 100"
                                                     : "nested too deeply: more than 100 levels";

   ck_assert_msg (e->category == MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                  "%s at %d levels: expected invalid_argument, got %s (%s)",
                  c->name,
                  levels,
                  mongo_helper_category_name (e->category),
                  e->message);
   ck_assert_msg (strstr (e->message, names_limit),
                  "%s at %d levels: expected the message to name the limit (\"%s\"), got: %s",
                  c->name,
                  levels,
                  names_limit,
                  e->message);
}

static inline void
setup (void)
{
   memset (&err, 0, sizeof err);
   verifying = false;
   mh_test_live_setup ();
   coll = mh_test_collection ("depth");
}

static inline void
teardown (void)
{
   mongo_helper_shutdown ();
}

typedef struct {
   const depth_case_t *c;
   int levels;
   bool ok;
   mongo_helper_error_t error;
} small_stack_run_t;

static inline void *
small_stack_main (void *arg)
{
   small_stack_run_t *r = arg;

   r->ok = r->c->run (r->levels, &r->error);
   return NULL;
}

/* Runs a case on a thread with a 256 KiB stack, as a web server's worker
 * may have. */
static inline void
run_on_small_stack (small_stack_run_t *r)
{
   pthread_attr_t attr;
   pthread_t t;

   ck_assert_int_eq (pthread_attr_init (&attr), 0);
   ck_assert_int_eq (pthread_attr_setstacksize (&attr, SMALL_STACK), 0);
   ck_assert_int_eq (pthread_create (&t, &attr, small_stack_main, r), 0);
   ck_assert_int_eq (pthread_join (t, NULL), 0);
   pthread_attr_destroy (&attr);
}

#endif
