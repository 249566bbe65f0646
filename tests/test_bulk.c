/* src/bulk.c: batched inserts against the test server (MONGO_TEST_URI),
 * with failures reported by index and the documents counted back. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static bson_t **
numbered_docs (size_t n)
{
   bson_t **docs = bson_malloc (n * sizeof *docs);
   for (size_t i = 0; i < n; i++) {
      docs[i] = BCON_NEW ("_id", BCON_INT64 ((int64_t) i), "payload", BCON_UTF8 ("x"));
   }
   return docs;
}

static void
free_docs (bson_t **docs, size_t n)
{
   for (size_t i = 0; i < n; i++) {
      bson_destroy (docs[i]);
   }
   bson_free (docs);
}

START_TEST (bulk_insert_in_batches_lands_every_document)
{
   const char *coll = mh_test_collection ("bulk");
   size_t n = 2500;
   bson_t **docs = numbered_docs (n);
   mongo_helper_bulk_result_t *r = NULL;
   bson_t *last = BCON_NEW ("_id", BCON_INT64 (2499));
   bson_t *found;

   MH_ASSERT_OK (
      mongo_helper_bulk_insert (NULL, coll, (const bson_t *const *) docs, n, 1000, true, &r, &err),
      err);
   ck_assert_ptr_nonnull (r);
   ck_assert_int_eq (r->inserted, 2500);
   ck_assert_uint_eq (r->batches, 3);
   ck_assert_uint_eq (r->n_failures, 0);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 2500);
   found = mongo_helper_find_one (NULL, coll, last, NULL, &err);
   MH_ASSERT_OK (found != NULL, err);
   ck_assert_str_eq (mh_test_utf8_at (found, "payload"), "x");
   bson_destroy (found);
   bson_destroy (last);
   mongo_helper_bulk_result_destroy (r);
   free_docs (docs, n);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (unordered_bulk_insert_reports_failed_indexes_and_lands_the_rest)
{
   const char *coll = mh_test_collection ("bulk");
   size_t n = 1200;
   bson_t **docs = numbered_docs (n);
   mongo_helper_bulk_result_t *r = NULL;

   /* Two duplicates of earlier _ids, in different batches. */
   bson_destroy (docs[7]);
   docs[7] = BCON_NEW ("_id", BCON_INT64 (3), "payload", BCON_UTF8 ("dup"));
   bson_destroy (docs[1100]);
   docs[1100] = BCON_NEW ("_id", BCON_INT64 (10), "payload", BCON_UTF8 ("dup"));
   ck_assert (!mongo_helper_bulk_insert (
      NULL, coll, (const bson_t *const *) docs, n, 500, false, &r, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_msg (strstr (err.message, "index 7"), "first failure not named: %s", err.message);
   ck_assert_ptr_nonnull (r);
   ck_assert_int_eq (r->inserted, 1198);
   ck_assert_uint_eq (r->batches, 3);
   ck_assert_uint_eq (r->n_failures, 2);
   ck_assert_uint_eq (r->failures[0].index, 7);
   ck_assert_uint_eq (r->failures[1].index, 1100);
   ck_assert_int_eq (r->failures[0].code, 11000);
   ck_assert_int_eq (r->failures[1].code, 11000);
   ck_assert_msg (strstr (r->failures[1].message, "dup key"), "%s", r->failures[1].message);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 1198);
   {
      bson_t *dup = BCON_NEW ("payload", BCON_UTF8 ("dup"));
      ck_assert_int_eq (mh_test_count_documents (coll, dup), 0);
      bson_destroy (dup);
   }
   mongo_helper_bulk_result_destroy (r);
   free_docs (docs, n);
   mh_test_drop (NULL, coll);
}
END_TEST

START_TEST (ordered_bulk_insert_stops_at_the_first_failure)
{
   const char *coll = mh_test_collection ("bulk");
   size_t n = 1200;
   bson_t **docs = numbered_docs (n);
   mongo_helper_bulk_result_t *r = NULL;

   bson_destroy (docs[600]);
   docs[600] = BCON_NEW ("_id", BCON_INT64 (1), "payload", BCON_UTF8 ("dup"));
   ck_assert (
      !mongo_helper_bulk_insert (NULL, coll, (const bson_t *const *) docs, n, 500, true, &r, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_ptr_nonnull (r);
   ck_assert_int_eq (r->inserted, 600);
   ck_assert_uint_eq (r->batches, 2); /* the third batch was never sent */
   ck_assert_uint_eq (r->n_failures, 1);
   ck_assert_uint_eq (r->failures[0].index, 600);
   ck_assert_int_eq (mh_test_count_documents (coll, NULL), 600);
   mongo_helper_bulk_result_destroy (r);
   free_docs (docs, n);
   mh_test_drop (NULL, coll);
}
END_TEST

Suite *
bulk_suite (void)
{
   Suite *s = suite_create ("bulk");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, bulk_insert_in_batches_lands_every_document);
   tcase_add_test (live, unordered_bulk_insert_reports_failed_indexes_and_lands_the_rest);
   tcase_add_test (live, ordered_bulk_insert_stops_at_the_first_failure);
   suite_add_tcase (s, live);
   return s;
}
