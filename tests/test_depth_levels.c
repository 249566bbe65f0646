/* Nesting depth: what counts as a level.  Arrays and code-with-scope
 * scopes count, nested scopes are refused on a 256 KiB stack, and the web
 * helpers check their callers' values before libmongoc walks them.  The
 * per-entry-point edges are in test_depth.c; the shared builders in
 * depth_fixture.h. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

#include "depth_fixture.h"

/* ---- what counts as a level ---- */

static bool
check_nest (int levels, nest_kind_t kind, mongo_helper_error_t *e)
{
   bson_t *b = nest (levels, kind);
   bool ok = mongo_helper_filter_check (b, MONGO_HELPER_FILTER_ALLOW_JAVASCRIPT, e);

   bson_destroy (b);
   return ok;
}

START_TEST (arrays_and_code_with_scope_scopes_count_as_levels)
{
   static const nest_kind_t kinds[] = {NEST_ARRAY, NEST_CODE};

   for (size_t k = 0; k < 2; k++) {
      MH_ASSERT_OK (check_nest (LIMIT, kinds[k], &err), err);
      ck_assert (!check_nest (LIMIT + 1, kinds[k], &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_msg (strstr (err.message, "more than 100 levels"), "%s", err.message);
   }
}
END_TEST

static bool
c_insert_code_nest (int L, mongo_helper_error_t *e)
{
   bson_t *d = nest (L, NEST_CODE);
   bool ok = mongo_helper_insert_one (NULL, coll, d, NULL, e);

   bson_destroy (d);
   return ok;
}

static bool
c_filter_check_code_nest (int L, mongo_helper_error_t *e)
{
   return check_nest (L, NEST_CODE, e);
}

/* libbson validates and renders a code-with-scope's scope by recursing,
 * with no depth limit of its own: 10,000 nested scopes overflowed even an
 * 8 MB stack in bson_validate(). */
START_TEST (nested_code_with_scope_scopes_are_refused_on_a_256k_stack)
{
   static const depth_case_t code_cases[] = {
      {"filter_check of nested scopes", c_filter_check_code_nest, LIMIT, false},
      {"insert_one of nested scopes", c_insert_code_nest, LIMIT, false},
   };

   for (size_t i = 0; i < 2; i++) {
      small_stack_run_t r = {&code_cases[i], HOSTILE, true, {0}};

      run_on_small_stack (&r);
      ck_assert_msg (!r.ok, "%s: expected a refusal", r.c->name);
      assert_refused_for_depth (r.c, HOSTILE, &r.error);
   }
}
END_TEST

/* The web helpers wrap their callers' values in their own documents and
 * hand those to the document operations, which depth-check whatever they
 * send to libmongoc: a 10,000-level cache value used to overflow even an
 * 8 MB stack in libmongoc's insert validation. */
START_TEST (web_helper_values_are_depth_checked_before_libmongoc_walks_them)
{
   mongo_helper_cache_options_t co;
   mongo_helper_eventlog_options_t eo;
   mongo_helper_cache_t *cache;
   mongo_helper_eventlog_t *log;
   bson_t *deep = nest (HOSTILE, NEST_DOC), *fine = nest (LIMIT - 1, NEST_DOC);
   bson_t out;

   mongo_helper_cache_options_init (&co);
   co.collection = coll;
   co.lazy_ensure = false;
   cache = mongo_helper_cache_new (&co, &err);
   MH_ASSERT_OK (cache != NULL, err);
   ck_assert (!mongo_helper_cache_set (cache, "deep", deep, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "more than 100 levels"), "%s", err.message);
   /* 99 levels stored under `value` make a 100-level document. */
   MH_ASSERT_OK (mongo_helper_cache_set (cache, "fine", fine, 0, &err), err);
   MH_ASSERT_OK (mongo_helper_cache_get (cache, "fine", &out, &err), err);
   ck_assert (bson_equal (&out, fine));
   bson_destroy (&out);
   mongo_helper_cache_destroy (cache);

   mongo_helper_eventlog_options_init (&eo);
   eo.collection = "depth_events"; /* copied: coll names the test's collection */
   log = mongo_helper_eventlog_new (&eo, &err);
   MH_ASSERT_OK (log != NULL, err);
   ck_assert (!mongo_helper_eventlog_log (log, "u", "e", deep, 0, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "more than 100 levels"), "%s", err.message);
   mongo_helper_eventlog_destroy (log);
   bson_destroy (deep);
   bson_destroy (fine);
}
END_TEST

Suite *
depth_levels_suite (void)
{
   Suite *s = suite_create ("depth_levels");
   TCase *levels = tcase_create ("levels");

   tcase_add_checked_fixture (levels, setup, teardown);
   tcase_add_test (levels, arrays_and_code_with_scope_scopes_count_as_levels);
   tcase_add_test (levels, nested_code_with_scope_scopes_are_refused_on_a_256k_stack);
   tcase_add_test (levels, web_helper_values_are_depth_checked_before_libmongoc_walks_them);
   suite_add_tcase (s, levels);
   return s;
}
