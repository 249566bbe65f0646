/* Connector operations on documents: CRUD, JSON, bulk insert, aggregation,
 * streaming, indexes, text and geo search.  "core" needs no server (bad
 * input is refused before anything is sent); "live" runs against
 * MONGO_TEST_URI; "capture" starts its own test server with a command log
 * to assert the exact commands of features the test server cannot serve. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

Suite *crud_suite (void);

static mongo_helper_error_t err;

#define ASSERT_FAILS_WITH(call, cat)                            \
   do {                                                         \
      ck_assert_msg (!(call), "expected failure of %s", #call); \
      ck_assert_msg (err.category == (cat),                     \
                     "expected category %s, got %s: %s",        \
                     mongo_helper_category_name (cat),          \
                     mongo_helper_category_name (err.category), \
                     err.message);                              \
   } while (0)

/* ---- helpers ---------------------------------------------------------- */

static uint32_t
arr_len (const bson_t *arr)
{
   return bson_count_keys (arr);
}

/* The i-th document of an array document, borrowed from `arr`. */
static void
arr_doc (const bson_t *arr, uint32_t i, bson_t *out)
{
   char key[16];
   bson_iter_t it;
   const uint8_t *data;
   uint32_t len;

   snprintf (key, sizeof key, "%u", i);
   ck_assert_msg (bson_iter_init_find (&it, arr, key) && BSON_ITER_HOLDS_DOCUMENT (&it),
                  "no document at index %u",
                  i);
   bson_iter_document (&it, &len, &data);
   ck_assert (bson_init_static (out, data, len));
}

static int64_t
get_int (const bson_t *doc, const char *path)
{
   bson_iter_t it, f;

   ck_assert (bson_iter_init (&it, doc));
   ck_assert_msg (bson_iter_find_descendant (&it, path, &f) && BSON_ITER_HOLDS_NUMBER (&f),
                  "field %s missing or not a number",
                  path);
   return bson_iter_as_int64 (&f);
}

static const char *
get_str (const bson_t *doc, const char *path)
{
   bson_iter_t it, f;

   ck_assert (bson_iter_init (&it, doc));
   ck_assert_msg (bson_iter_find_descendant (&it, path, &f) && BSON_ITER_HOLDS_UTF8 (&f),
                  "field %s missing or not a string",
                  path);
   return bson_iter_utf8 (&f, NULL);
}

static bool
has_field (const bson_t *doc, const char *key)
{
   bson_iter_t it;
   return bson_iter_init_find (&it, doc, key);
}

static int64_t
count (const char *coll, const bson_t *filter)
{
   int64_t n = -1;
   MH_ASSERT_OK (mongo_helper_count_documents (NULL, coll, filter, &n, &err), err);
   return n;
}

/* Inserts {n: 0..count-1, even: bool, tag: "t<n%3>"}. */
static void
seed (const char *coll, int n)
{
   bson_t **docs = bson_malloc (n * sizeof *docs);
   int64_t inserted = 0;

   for (int i = 0; i < n; i++) {
      char tag[8];
      snprintf (tag, sizeof tag, "t%d", i % 3);
      docs[i] =
         BCON_NEW ("n", BCON_INT32 (i), "even", BCON_BOOL (i % 2 == 0), "tag", BCON_UTF8 (tag));
   }
   MH_ASSERT_OK (mongo_helper_insert_many (
                    NULL, coll, (const bson_t *const *) docs, (size_t) n, true, &inserted, &err),
                 err);
   ck_assert_int_eq (inserted, n);
   for (int i = 0; i < n; i++) {
      bson_destroy (docs[i]);
   }
   bson_free (docs);
}

static void
drop (const char *database, const char *coll)
{
   mongo_helper_conn_t *conn = mongo_helper_acquire (&err);
   mongoc_collection_t *cc;

   if (!conn) {
      return;
   }
   cc = mongoc_client_get_collection (
      mongo_helper_conn_client (conn),
      database ? database : mongoc_database_get_name (mongo_helper_conn_database (conn)),
      coll);
   mongoc_collection_drop (cc, NULL);
   mongoc_collection_destroy (cc);
   mongo_helper_release (conn);
}

static void
setup_core (void)
{
   memset (&err, 0, sizeof err);
   mh_test_clean_env ();
   /* Nothing may connect: a closed port would make any attempt fail. */
   setenv ("MONGO_CACHE_URI", "mongodb://127.0.0.1:1/core?serverSelectionTimeoutMS=200", 1);
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
}

static void
setup_live (void)
{
   memset (&err, 0, sizeof err);
   mh_test_live_setup ();
}

static void
teardown (void)
{
   mongo_helper_shutdown ();
}

static bool
on_mock (void)
{
   const char *m = getenv ("MH_MOCK_SERVER");
   return m && *m;
}

/* ---- core: bad input never reaches the server ------------------------ */

START_TEST (malformed_json_is_invalid_argument_with_position)
{
   bson_t *b = mongo_helper_json_to_bson ("{\"a\": 1,, }", &err);
   bson_value_t id;

   ck_assert_ptr_null (b);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "position 8"), "no position in: %s", err.message);
   ck_assert_ptr_null (mongo_helper_json_to_bson (NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_insert_one_json (NULL, "c", "{\"a\": ", &id, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_int_eq (id.value_type, BSON_TYPE_EOD);
   ASSERT_FAILS_WITH (mongo_helper_find_json (NULL, "c", "{", NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_find_one_json (NULL, "c", "{}", "[1,", &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_aggregate_json (NULL, "c", "[{\"$match\": }]", NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (
      mongo_helper_update_json (NULL, "c", "{}", "{\"$set\"", false, false, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST (json_with_a_top_level_array_becomes_an_array_document)
{
   bson_t *b = mongo_helper_json_to_bson ("[{\"a\": 1}, {\"a\": 2}]", &err);
   bson_t d;
   char *json;

   MH_ASSERT_OK (b != NULL, err);
   ck_assert_uint_eq (arr_len (b), 2);
   arr_doc (b, 1, &d);
   ck_assert_int_eq (get_int (&d, "a"), 2);
   json = mongo_helper_array_to_json (b, &err);
   ck_assert_str_eq (json, "[{ \"a\" : 1 }, { \"a\" : 2 }]");
   bson_free (json);
   bson_destroy (b);
}
END_TEST

START_TEST (null_and_empty_names_are_invalid_argument)
{
   bson_t *doc = BCON_NEW ("a", BCON_INT32 (1));
   bson_t results;
   int64_t n;

   ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, NULL, doc, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "collection name"));
   ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "", doc, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_insert_one ("", "c", doc, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "database name"));
   ASSERT_FAILS_WITH (mongo_helper_insert_one ("a.b", "c", doc, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_find (NULL, "x$y", NULL, NULL, &results, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (bson_empty (&results)); /* initialised even on failure */
   bson_destroy (&results);
   ASSERT_FAILS_WITH (mongo_helper_count_documents (NULL, NULL, NULL, &n, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_distinct (NULL, "c", "", NULL, &results, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   ASSERT_FAILS_WITH (mongo_helper_drop_index (NULL, "c", NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "c", NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_delete_many (NULL, "c", NULL, &n, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (doc);
}
END_TEST

/* A document of `size` bytes in one binary field. */
static bson_t *
big_doc (size_t size)
{
   bson_t *doc = bson_new ();
   uint8_t *blob = bson_malloc0 (size);

   ck_assert (bson_append_binary (doc, "blob", -1, BSON_SUBTYPE_BINARY, blob, (uint32_t) size));
   bson_free (blob);
   return doc;
}

START_TEST (document_over_16_mb_is_refused_before_sending)
{
   bson_t *big = big_doc (MONGO_HELPER_MAX_DOCUMENT_SIZE);
   bson_t *small = BCON_NEW ("a", BCON_INT32 (1));
   const bson_t *docs[3] = {small, big, small};
   mongo_helper_bulk_result_t *r = (void *) 1;
   int64_t n = -1;

   ck_assert_uint_gt (big->len, MONGO_HELPER_MAX_DOCUMENT_SIZE);
   ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "c", big, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_msg (strstr (err.message, "16777216"), "limit not named: %s", err.message);
   ASSERT_FAILS_WITH (mongo_helper_insert_many (NULL, "c", docs, 3, true, &n, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "index 1"));
   ck_assert_int_eq (n, 0);
   ASSERT_FAILS_WITH (mongo_helper_bulk_insert (NULL, "c", docs, 3, 2, false, &r, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "index 1"));
   ck_assert_ptr_null (r);
   ASSERT_FAILS_WITH (mongo_helper_update_one (NULL, "c", small, big, false, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   /* The connection string points at a closed port: had anything been sent,
    * the category would be CONNECTION, not INVALID_ARGUMENT. */
   bson_destroy (big);
   bson_destroy (small);
}
END_TEST

static bool
count_chunk (const bson_t *const *docs, size_t n, void *data)
{
   (void) docs;
   *(size_t *) data += n;
   return true;
}

START_TEST (batch_and_chunk_size_zero_are_invalid_argument)
{
   bson_t *doc = BCON_NEW ("a", BCON_INT32 (1));
   const bson_t *docs[1] = {doc};
   bson_t *pipeline = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   mongo_helper_bulk_result_t *r = (void *) 1;
   size_t seen = 0;

   ASSERT_FAILS_WITH (mongo_helper_bulk_insert (NULL, "c", docs, 1, 0, true, &r, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "batch_size"));
   ck_assert_ptr_null (r);
   ASSERT_FAILS_WITH (mongo_helper_bulk_insert (NULL, "c", NULL, 0, 10, true, &r, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_find_stream (NULL, "c", NULL, NULL, 0, count_chunk, &seen, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (
      mongo_helper_aggregate_stream (NULL, "c", pipeline, NULL, 0, count_chunk, &seen, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_find_stream (NULL, "c", NULL, NULL, 5, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_uint_eq (seen, 0);
   bson_destroy (doc);
   bson_destroy (pipeline);
}
END_TEST

START_TEST (invalid_object_id_text_is_invalid_argument)
{
   static const char *bad[] = {"",
                               "123",
                               "zzzzzzzzzzzzzzzzzzzzzzzz",
                               "5f1d7e2c9b1e8a3f4c2b1a0",    /* 23 */
                               "5f1d7e2c9b1e8a3f4c2b1a0d0"}; /* 25 */

   for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      ASSERT_FAILS_WITH (mongo_helper_find_by_id_json (NULL, "c", bad[i], &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_ptr_nonnull (strstr (err.message, "ObjectId"));
   }
   ASSERT_FAILS_WITH (mongo_helper_find_by_id_json (NULL, "c", NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST (bad_find_options_and_geo_input_are_invalid_argument)
{
   mongo_helper_find_opts_t o = {0};
   double two[2][2] = {{0, 0}, {1, 1}};
   bson_t *near = BCON_NEW ("loc", "{", "$near", "[", BCON_DOUBLE (0), BCON_DOUBLE (0), "]", "}");
   bson_t results;
   int64_t n;

   o.limit = -1;
   ASSERT_FAILS_WITH (mongo_helper_find (NULL, "c", NULL, &o, &results, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   ASSERT_FAILS_WITH (mongo_helper_geo_near (NULL, "c", "loc", 181, 0, 10, 0, &results, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   ASSERT_FAILS_WITH (mongo_helper_geo_within_circle (NULL, "c", "loc", 0, -91, 10, &results, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   ASSERT_FAILS_WITH (
      mongo_helper_geo_within_polygon (NULL, "c", "loc", &two[0][0], 2, &results, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   ASSERT_FAILS_WITH (mongo_helper_text_search (NULL, "c", "", NULL, NULL, 0, &results, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&results);
   ASSERT_FAILS_WITH (mongo_helper_count_documents (NULL, "c", near, &n, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "$geoWithin"));
   bson_destroy (near);
}
END_TEST

/* ---- live: CRUD ------------------------------------------------------- */

START_TEST (insert_one_generates_an_object_id_and_returns_it)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("name", BCON_UTF8 ("ada"), "age", BCON_INT32 (36));
   bson_t *filter, *found;
   bson_value_t id;

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, &id, &err), err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_OID);
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NONE);
   filter = bson_new ();
   BSON_APPEND_VALUE (filter, "_id", &id);
   found = mongo_helper_find_one (NULL, coll, filter, NULL, &err);
   MH_ASSERT_OK (found != NULL, err);
   ck_assert_str_eq (get_str (found, "name"), "ada");
   ck_assert_int_eq (get_int (found, "age"), 36);
   ck_assert_int_eq (count (coll, NULL), 1);
   bson_value_destroy (&id);
   bson_destroy (found);
   bson_destroy (filter);
   bson_destroy (doc);
   drop (NULL, coll);
}
END_TEST

START_TEST (insert_one_keeps_the_callers_id_and_duplicate_is_its_own_category)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("_id", BCON_UTF8 ("user-42"), "v", BCON_INT32 (1));
   bson_value_t id;

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, &id, &err), err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_UTF8);
   ck_assert_str_eq (id.value.v_utf8.str, "user-42");
   bson_value_destroy (&id);
   ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, coll, doc, &id, &err),
                      MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_int_eq (err.code, 11000);
   ck_assert_msg (strstr (err.message, "user-42") && strstr (err.message, "dup key"),
                  "key not in message: %s",
                  err.message);
   ck_assert_int_eq (id.value_type, BSON_TYPE_EOD);
   ck_assert_int_eq (count (coll, NULL), 1);
   bson_destroy (doc);
   drop (NULL, coll);
}
END_TEST

START_TEST (json_insert_and_find_round_trip_as_relaxed_json)
{
   const char *coll = mh_test_collection ("crud");
   bson_value_t id;
   char *json;
   bson_t *back;

   MH_ASSERT_OK (
      mongo_helper_insert_one_json (NULL,
                                    coll,
                                    "{\"_id\": 7, \"name\": \"bob\", \"when\": {\"$date\": "
                                    "\"2024-01-02T03:04:05Z\"}, \"score\": 2.5}",
                                    &id,
                                    &err),
      err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_INT32);
   ck_assert_int_eq (id.value.v_int32, 7);
   json = mongo_helper_find_one_json (
      NULL, coll, "{\"name\": \"bob\"}", "{\"_id\": 0, \"name\": 1, \"when\": 1}", &err);
   MH_ASSERT_OK (json != NULL, err);
   ck_assert_str_eq (json,
                     "{ \"name\" : \"bob\", \"when\" : { \"$date\" : \"2024-01-02T03:04:05Z\" } }");
   bson_free (json);
   json = mongo_helper_find_json (
      NULL, coll, "{\"score\": {\"$gt\": 2}}", "{\"projection\": {\"score\": 1}}", &err);
   MH_ASSERT_OK (json != NULL, err);
   /* Field order within a document is the server's: compare values. */
   back = mongo_helper_json_to_bson (json, &err);
   MH_ASSERT_OK (back != NULL, err);
   ck_assert_uint_eq (arr_len (back), 1);
   {
      bson_t d;
      bson_iter_t it;
      arr_doc (back, 0, &d);
      ck_assert_uint_eq (bson_count_keys (&d), 2);
      ck_assert_int_eq (get_int (&d, "_id"), 7);
      ck_assert (bson_iter_init_find (&it, &d, "score") && BSON_ITER_HOLDS_DOUBLE (&it));
      ck_assert (bson_iter_double (&it) == 2.5);
   }
   ck_assert_ptr_nonnull (strstr (json, "\"score\" : 2.5"));
   bson_destroy (back);
   bson_free (json);
   ck_assert_ptr_null (
      mongo_helper_find_one_json (NULL, coll, "{\"name\": \"nobody\"}", NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   drop (NULL, coll);
}
END_TEST

START_TEST (find_by_id_json_reads_the_document_with_that_object_id)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("k", BCON_UTF8 ("v"));
   bson_value_t id;
   char hex[25], *json, expected[128];

   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, doc, &id, &err), err);
   bson_oid_to_string (&id.value.v_oid, hex);
   json = mongo_helper_find_by_id_json (NULL, coll, hex, &err);
   MH_ASSERT_OK (json != NULL, err);
   snprintf (expected, sizeof expected, "{ \"_id\" : { \"$oid\" : \"%s\" }, \"k\" : \"v\" }", hex);
   ck_assert_str_eq (json, expected);
   bson_free (json);
   ck_assert_ptr_null (mongo_helper_find_by_id_json (NULL, coll, "000000000000000000000000", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_NOT_FOUND);
   bson_value_destroy (&id);
   bson_destroy (doc);
   drop (NULL, coll);
}
END_TEST

START_TEST (find_applies_filter_projection_sort_skip_and_limit)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *filter = BCON_NEW ("n", "{", "$gte", BCON_INT32 (2), "}");
   bson_t *sort = BCON_NEW ("n", BCON_INT32 (-1));
   bson_t *proj = BCON_NEW ("_id", BCON_INT32 (0), "n", BCON_INT32 (1));
   mongo_helper_find_opts_t o = {0};
   bson_t results, d;

   seed (coll, 10);
   o.projection = proj;
   o.sort = sort;
   o.skip = 1;
   o.limit = 3;
   MH_ASSERT_OK (mongo_helper_find (NULL, coll, filter, &o, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 3);
   for (uint32_t i = 0; i < 3; i++) {
      arr_doc (&results, i, &d);
      ck_assert_int_eq (get_int (&d, "n"), 8 - (int) i);
      ck_assert_uint_eq (bson_count_keys (&d), 1); /* only "n" */
   }
   bson_destroy (&results);
   /* No filter, no options: everything. */
   MH_ASSERT_OK (mongo_helper_find (NULL, coll, NULL, NULL, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 10);
   arr_doc (&results, 0, &d);
   ck_assert (has_field (&d, "_id") && has_field (&d, "tag") && has_field (&d, "even"));
   bson_destroy (&results);
   bson_destroy (filter);
   bson_destroy (sort);
   bson_destroy (proj);
   drop (NULL, coll);
}
END_TEST

START_TEST (explicit_database_is_used_instead_of_the_default)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *doc = BCON_NEW ("where", BCON_UTF8 ("other"));
   int64_t n = -1;

   MH_ASSERT_OK (mongo_helper_insert_one ("mh_test_other", coll, doc, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_count_documents ("mh_test_other", coll, NULL, &n, &err), err);
   ck_assert_int_eq (n, 1);
   ck_assert_int_eq (count (coll, NULL), 0); /* not in the default database */
   bson_destroy (doc);
   drop ("mh_test_other", coll);
}
END_TEST

START_TEST (update_one_many_and_upsert_report_matched_modified_and_id)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *even = BCON_NEW ("even", BCON_BOOL (true));
   bson_t *set = BCON_NEW ("$set", "{", "flag", BCON_UTF8 ("x"), "}");
   bson_t *nobody = BCON_NEW ("n", BCON_INT32 (100));
   bson_t *flagged = BCON_NEW ("flag", BCON_UTF8 ("x"));
   mongo_helper_update_result_t r;
   bson_t *doc;

   seed (coll, 6);
   MH_ASSERT_OK (mongo_helper_update_one (NULL, coll, even, set, false, &r, &err), err);
   ck_assert_int_eq (r.matched, 1);
   ck_assert_int_eq (r.modified, 1);
   ck_assert_int_eq (r.upserted, 0);
   ck_assert_int_eq (r.upserted_id.value_type, BSON_TYPE_EOD);
   mongo_helper_update_result_cleanup (&r);
   ck_assert_int_eq (count (coll, flagged), 1);

   MH_ASSERT_OK (mongo_helper_update_many (NULL, coll, even, set, false, &r, &err), err);
   ck_assert_int_eq (r.matched, 3);
   ck_assert_int_eq (r.modified, 2); /* one already had it */
   mongo_helper_update_result_cleanup (&r);
   ck_assert_int_eq (count (coll, flagged), 3);

   MH_ASSERT_OK (mongo_helper_update_one (NULL, coll, nobody, set, true, &r, &err), err);
   ck_assert_int_eq (r.matched, 0);
   ck_assert_int_eq (r.upserted, 1);
   ck_assert_int_eq (r.upserted_id.value_type, BSON_TYPE_OID);
   mongo_helper_update_result_cleanup (&r);
   doc = mongo_helper_find_one (NULL, coll, nobody, NULL, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_str_eq (get_str (doc, "flag"), "x"); /* upsert merged filter + update */
   bson_destroy (doc);
   ck_assert_int_eq (count (coll, NULL), 7);

   /* An update without operators is refused by the driver, nothing sent. */
   ASSERT_FAILS_WITH (mongo_helper_update_one (NULL, coll, even, flagged, false, &r, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_int_eq (r.matched, 0);
   mongo_helper_update_result_cleanup (&r);

   MH_ASSERT_OK (
      mongo_helper_update_json (
         NULL, coll, "{\"tag\": \"t0\"}", "{\"$inc\": {\"n\": 1000}}", true, false, &r, &err),
      err);
   ck_assert_int_eq (r.matched, 2);
   mongo_helper_update_result_cleanup (&r);
   ck_assert_int_eq (count (coll, NULL), 7);
   {
      bson_t *big = BCON_NEW ("n", "{", "$gte", BCON_INT32 (1000), "}");
      ck_assert_int_eq (count (coll, big), 2);
      bson_destroy (big);
   }
   bson_destroy (even);
   bson_destroy (set);
   bson_destroy (nobody);
   bson_destroy (flagged);
   drop (NULL, coll);
}
END_TEST

START_TEST (replace_one_replaces_the_whole_document_and_upserts)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *f1 = BCON_NEW ("n", BCON_INT32 (1));
   bson_t *repl = BCON_NEW ("n", BCON_INT32 (1), "only", BCON_UTF8 ("this"));
   bson_t *f9 = BCON_NEW ("_id", BCON_INT32 (9));
   bson_t *repl9 = BCON_NEW ("v", BCON_INT32 (9));
   mongo_helper_update_result_t r;
   bson_t *doc;

   seed (coll, 3);
   MH_ASSERT_OK (mongo_helper_replace_one (NULL, coll, f1, repl, false, &r, &err), err);
   ck_assert_int_eq (r.matched, 1);
   ck_assert_int_eq (r.modified, 1);
   mongo_helper_update_result_cleanup (&r);
   doc = mongo_helper_find_one (NULL, coll, f1, NULL, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_str_eq (get_str (doc, "only"), "this");
   ck_assert (!has_field (doc, "tag")); /* replaced, not merged */
   bson_destroy (doc);

   MH_ASSERT_OK (mongo_helper_replace_one (NULL, coll, f9, repl9, true, &r, &err), err);
   ck_assert_int_eq (r.upserted, 1);
   ck_assert_int_eq (r.upserted_id.value_type, BSON_TYPE_INT32);
   ck_assert_int_eq (r.upserted_id.value.v_int32, 9);
   mongo_helper_update_result_cleanup (&r);
   doc = mongo_helper_find_one (NULL, coll, f9, NULL, &err);
   MH_ASSERT_OK (doc != NULL, err);
   ck_assert_int_eq (get_int (doc, "v"), 9);
   bson_destroy (doc);
   /* A replacement with operators is refused. */
   {
      bson_t *ops = BCON_NEW ("$set", "{", "a", BCON_INT32 (1), "}");
      ASSERT_FAILS_WITH (mongo_helper_replace_one (NULL, coll, f1, ops, false, &r, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      mongo_helper_update_result_cleanup (&r);
      bson_destroy (ops);
   }
   bson_destroy (f1);
   bson_destroy (repl);
   bson_destroy (f9);
   bson_destroy (repl9);
   drop (NULL, coll);
}
END_TEST

START_TEST (delete_one_and_many_report_and_remove_exactly_those)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *even = BCON_NEW ("even", BCON_BOOL (true));
   bson_t all = BSON_INITIALIZER;
   int64_t n = -1;

   seed (coll, 10);
   MH_ASSERT_OK (mongo_helper_delete_one (NULL, coll, even, &n, &err), err);
   ck_assert_int_eq (n, 1);
   ck_assert_int_eq (count (coll, even), 4);
   MH_ASSERT_OK (mongo_helper_delete_many (NULL, coll, even, &n, &err), err);
   ck_assert_int_eq (n, 4);
   ck_assert_int_eq (count (coll, even), 0);
   ck_assert_int_eq (count (coll, NULL), 5);
   MH_ASSERT_OK (mongo_helper_delete_many (NULL, coll, &all, &n, &err), err);
   ck_assert_int_eq (n, 5);
   ck_assert_int_eq (count (coll, NULL), 0);
   bson_destroy (even);
   drop (NULL, coll);
}
END_TEST

START_TEST (counts_and_distinct_read_the_collection)
{
   const char *coll = mh_test_collection ("crud");
   bson_t *even = BCON_NEW ("even", BCON_BOOL (true));
   bson_t values;
   bson_iter_t it;
   int64_t n = -1;
   int seen[3] = {0, 0, 0};

   seed (coll, 9);
   ck_assert_int_eq (count (coll, even), 5);
   MH_ASSERT_OK (mongo_helper_estimated_count (NULL, coll, &n, &err), err);
   ck_assert_int_eq (n, 9);
   MH_ASSERT_OK (mongo_helper_distinct (NULL, coll, "tag", NULL, &values, &err), err);
   ck_assert_uint_eq (arr_len (&values), 3);
   ck_assert (bson_iter_init (&it, &values));
   while (bson_iter_next (&it)) {
      ck_assert (BSON_ITER_HOLDS_UTF8 (&it));
      seen[bson_iter_utf8 (&it, NULL)[1] - '0']++;
   }
   ck_assert (seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
   bson_destroy (&values);
   MH_ASSERT_OK (mongo_helper_distinct (NULL, coll, "n", even, &values, &err), err);
   ck_assert_uint_eq (arr_len (&values), 5);
   bson_destroy (&values);
   /* A collection that does not exist counts zero. */
   MH_ASSERT_OK (mongo_helper_count_documents (NULL, "no_such_collection_xyz", NULL, &n, &err),
                 err);
   ck_assert_int_eq (n, 0);
   bson_destroy (even);
   drop (NULL, coll);
}
END_TEST

/* ---- live: bulk insert ------------------------------------------------ */

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
   ck_assert_int_eq (count (coll, NULL), 2500);
   found = mongo_helper_find_one (NULL, coll, last, NULL, &err);
   MH_ASSERT_OK (found != NULL, err);
   ck_assert_str_eq (get_str (found, "payload"), "x");
   bson_destroy (found);
   bson_destroy (last);
   mongo_helper_bulk_result_destroy (r);
   free_docs (docs, n);
   drop (NULL, coll);
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
   ck_assert_int_eq (count (coll, NULL), 1198);
   {
      bson_t *dup = BCON_NEW ("payload", BCON_UTF8 ("dup"));
      ck_assert_int_eq (count (coll, dup), 0);
      bson_destroy (dup);
   }
   mongo_helper_bulk_result_destroy (r);
   free_docs (docs, n);
   drop (NULL, coll);
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
   ck_assert_int_eq (count (coll, NULL), 600);
   mongo_helper_bulk_result_destroy (r);
   free_docs (docs, n);
   drop (NULL, coll);
}
END_TEST

/* ---- live: aggregation and streaming ---------------------------------- */

START_TEST (aggregate_groups_and_honours_options)
{
   const char *coll = mh_test_collection ("agg");
   bson_t *pipeline = BCON_NEW ("0",
                                "{",
                                "$group",
                                "{",
                                "_id",
                                BCON_UTF8 ("$tag"),
                                "total",
                                "{",
                                "$sum",
                                BCON_UTF8 ("$n"),
                                "}",
                                "}",
                                "}",
                                "1",
                                "{",
                                "$sort",
                                "{",
                                "_id",
                                BCON_INT32 (1),
                                "}",
                                "}");
   mongo_helper_aggregate_opts_t o = {true, 2};
   bson_t results, d;
   char *json;

   seed (coll, 9); /* t0: 0+3+6, t1: 1+4+7, t2: 2+5+8 */
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, coll, pipeline, &o, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 3);
   for (uint32_t i = 0; i < 3; i++) {
      char tag[4];
      snprintf (tag, sizeof tag, "t%u", i);
      arr_doc (&results, i, &d);
      ck_assert_str_eq (get_str (&d, "_id"), tag);
      ck_assert_int_eq (get_int (&d, "total"), 9 + 3 * (int) i);
   }
   bson_destroy (&results);
   json = mongo_helper_aggregate_json (NULL,
                                       coll,
                                       "[{\"$match\": {\"n\": {\"$lt\": 2}}}, {\"$project\": "
                                       "{\"_id\": 0, \"n\": 1}}, {\"$sort\": {\"n\": 1}}]",
                                       NULL,
                                       &err);
   MH_ASSERT_OK (json != NULL, err);
   ck_assert_str_eq (json, "[{ \"n\" : 0 }, { \"n\" : 1 }]");
   bson_free (json);
   bson_destroy (pipeline);
   drop (NULL, coll);
}
END_TEST

START_TEST (lookup_facet_and_graph_lookup_pipelines_work)
{
   const char *users = mh_test_collection ("users");
   char orders[96];
   bson_t results, d;
   char *json, pipe[600];
   bson_t *p;

   snprintf (orders, sizeof orders, "%s_orders", users);
   p = mongo_helper_json_to_bson ("[{\"_id\": 1, \"name\": \"ann\", \"boss\": null},"
                                  " {\"_id\": 2, \"name\": \"ben\", \"boss\": 1},"
                                  " {\"_id\": 3, \"name\": \"cy\", \"boss\": 2}]",
                                  &err);
   {
      const bson_t *docs[3];
      bson_t u[3];
      int64_t n;
      for (uint32_t i = 0; i < 3; i++) {
         arr_doc (p, i, &u[i]);
         docs[i] = &u[i];
      }
      MH_ASSERT_OK (mongo_helper_insert_many (NULL, users, docs, 3, true, &n, &err), err);
   }
   bson_destroy (p);
   MH_ASSERT_OK (
      mongo_helper_insert_one_json (NULL, orders, "{\"user\": 2, \"amount\": 5}", NULL, &err), err);
   MH_ASSERT_OK (
      mongo_helper_insert_one_json (NULL, orders, "{\"user\": 2, \"amount\": 7}", NULL, &err), err);

   /* $lookup: ben has two orders. */
   snprintf (
      pipe,
      sizeof pipe,
      "[{\"$match\": {\"_id\": 2}}, {\"$lookup\": {\"from\": \"%s\", \"localField\": \"_id\","
      " \"foreignField\": \"user\", \"as\": \"orders\"}}]",
      orders);
   p = mongo_helper_json_to_bson (pipe, &err);
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, users, p, NULL, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 1);
   arr_doc (&results, 0, &d);
   ck_assert_int_eq (get_int (&d, "orders.1.amount"), 7);
   bson_destroy (&results);
   bson_destroy (p);

   /* $facet: two views in one pass. */
   json = mongo_helper_aggregate_json (
      NULL,
      users,
      "[{\"$facet\": {\"n\": [{\"$count\": \"c\"}], \"top\": [{\"$sort\": {\"_id\": -1}}, "
      "{\"$limit\": 1}, {\"$project\": {\"name\": 1}}]}}]",
      NULL,
      &err);
   MH_ASSERT_OK (json != NULL, err);
   ck_assert_str_eq (
      json, "[{ \"n\" : [ { \"c\" : 3 } ], \"top\" : [ { \"_id\" : 3, \"name\" : \"cy\" } ] }]");
   bson_free (json);

   /* $graphLookup: cy's chain of bosses is ben then ann. */
   snprintf (
      pipe,
      sizeof pipe,
      "[{\"$match\": {\"_id\": 3}}, {\"$graphLookup\": {\"from\": \"%s\", \"startWith\": \"$boss\","
      " \"connectFromField\": \"boss\", \"connectToField\": \"_id\", \"as\": \"chain\","
      " \"depthField\": \"depth\"}}]",
      users);
   p = mongo_helper_json_to_bson (pipe, &err);
   MH_ASSERT_OK (mongo_helper_aggregate (NULL, users, p, NULL, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 1);
   arr_doc (&results, 0, &d);
   {
      bson_iter_t it, chain;
      int names = 0;
      ck_assert (bson_iter_init_find (&it, &d, "chain") && bson_iter_recurse (&it, &chain));
      while (bson_iter_next (&chain)) {
         bson_t m;
         const uint8_t *data;
         uint32_t len;
         bson_iter_document (&chain, &len, &data);
         bson_init_static (&m, data, len);
         if (strcmp (get_str (&m, "name"), "ben") == 0) {
            ck_assert_int_eq (get_int (&m, "depth"), 0);
            names |= 1;
         } else if (strcmp (get_str (&m, "name"), "ann") == 0) {
            ck_assert_int_eq (get_int (&m, "depth"), 1);
            names |= 2;
         } else {
            ck_abort_msg ("unexpected %s in chain", get_str (&m, "name"));
         }
      }
      ck_assert_int_eq (names, 3);
   }
   bson_destroy (&results);
   bson_destroy (p);
   drop (NULL, users);
   drop (NULL, orders);
}
END_TEST

typedef struct {
   size_t chunks;
   size_t docs;
   size_t max_chunk;
   size_t stop_after; /* chunks; 0: never */
   int32_t last_n;
   bool ordered;
} chunk_log_t;

static bool
log_chunk (const bson_t *const *docs, size_t n, void *data)
{
   chunk_log_t *l = data;

   l->chunks++;
   l->docs += n;
   if (n > l->max_chunk) {
      l->max_chunk = n;
   }
   for (size_t i = 0; i < n; i++) {
      int32_t v = (int32_t) get_int (docs[i], "n");
      if (l->docs - n + i > 0 && v <= l->last_n) {
         l->ordered = false;
      }
      l->last_n = v;
   }
   return l->stop_after == 0 || l->chunks < l->stop_after;
}

START_TEST (find_stream_delivers_sorted_chunks_and_stops_early)
{
   const char *coll = mh_test_collection ("stream");
   bson_t *filter = BCON_NEW ("n", "{", "$gte", BCON_INT32 (5), "}");
   bson_t *sort = BCON_NEW ("n", BCON_INT32 (1));
   mongo_helper_find_opts_t o = {0};
   chunk_log_t l = {0, 0, 0, 0, -1, true};

   seed (coll, 300);
   o.sort = sort;
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, coll, filter, &o, 40, log_chunk, &l, &err), err);
   ck_assert_uint_eq (l.docs, 295);
   ck_assert_uint_eq (l.chunks, 8); /* 7 x 40 + 15 */
   ck_assert_uint_eq (l.max_chunk, 40);
   ck_assert (l.ordered);
   ck_assert_int_eq (l.last_n, 299);

   memset (&l, 0, sizeof l);
   l.ordered = true;
   l.stop_after = 2;
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, coll, filter, &o, 40, log_chunk, &l, &err), err);
   ck_assert_uint_eq (l.chunks, 2);
   ck_assert_uint_eq (l.docs, 80);
   ck_assert_int_eq (l.last_n, 84);
   bson_destroy (filter);
   bson_destroy (sort);
   drop (NULL, coll);
}
END_TEST

START_TEST (aggregate_stream_delivers_chunks_and_stops_early)
{
   const char *coll = mh_test_collection ("stream");
   bson_t *pipeline = BCON_NEW ("0",
                                "{",
                                "$match",
                                "{",
                                "even",
                                BCON_BOOL (true),
                                "}",
                                "}",
                                "1",
                                "{",
                                "$sort",
                                "{",
                                "n",
                                BCON_INT32 (1),
                                "}",
                                "}");
   mongo_helper_aggregate_opts_t o = {true, 0};
   chunk_log_t l = {0, 0, 0, 0, -1, true};

   seed (coll, 200);
   MH_ASSERT_OK (mongo_helper_aggregate_stream (NULL, coll, pipeline, &o, 30, log_chunk, &l, &err),
                 err);
   ck_assert_uint_eq (l.docs, 100);
   ck_assert_uint_eq (l.chunks, 4);
   ck_assert_uint_eq (l.max_chunk, 30);
   ck_assert (l.ordered);
   ck_assert_int_eq (l.last_n, 198);
   memset (&l, 0, sizeof l);
   l.stop_after = 1;
   MH_ASSERT_OK (
      mongo_helper_aggregate_stream (NULL, coll, pipeline, NULL, 30, log_chunk, &l, &err), err);
   ck_assert_uint_eq (l.docs, 30);
   bson_destroy (pipeline);
   drop (NULL, coll);
}
END_TEST

START_TEST (server_errors_in_pipelines_keep_their_code)
{
   const char *coll = mh_test_collection ("agg");
   bson_t *bad = BCON_NEW ("0", "{", "$noSuchStage", "{", "}", "}");
   bson_t results;

   seed (coll, 1);
   ASSERT_FAILS_WITH (mongo_helper_aggregate (NULL, coll, bad, NULL, &results, &err),
                      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 40324);
   ck_assert_ptr_nonnull (strstr (err.message, "$noSuchStage"));
   ck_assert_uint_eq (arr_len (&results), 0);
   bson_destroy (&results);
   bson_destroy (bad);
   drop (NULL, coll);
}
END_TEST

/* ---- live: indexes ---------------------------------------------------- */

/* The index description named `name` in a listIndexes array, or false. */
static bool
find_index (const bson_t *indexes, const char *name, bson_t *out)
{
   for (uint32_t i = 0; i < arr_len (indexes); i++) {
      arr_doc (indexes, i, out);
      if (strcmp (get_str (out, "name"), name) == 0) {
         return true;
      }
   }
   return false;
}

START_TEST (single_compound_unique_and_ttl_indexes_are_created_listed_and_dropped)
{
   const char *coll = mh_test_collection ("idx");
   bson_t *k1 = BCON_NEW ("email", BCON_INT32 (1));
   bson_t *k2 = BCON_NEW ("user", BCON_INT32 (1), "ts", BCON_INT32 (-1));
   bson_t *k3 = BCON_NEW ("created", BCON_INT32 (1));
   bson_t *unique = BCON_NEW ("unique", BCON_BOOL (true));
   bson_t *ttl =
      BCON_NEW ("expireAfterSeconds", BCON_INT32 (3600), "name", BCON_UTF8 ("ttl_created"));
   bson_t *a = BCON_NEW ("email", BCON_UTF8 ("a@example.com"));
   bson_t indexes, d;
   char *name = NULL;

   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k1, unique, &name, &err), err);
   ck_assert_str_eq (name, "email_1");
   bson_free (name);
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k2, NULL, &name, &err), err);
   ck_assert_str_eq (name, "user_1_ts_-1");
   bson_free (name);
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k3, ttl, NULL, &err), err);
   /* Same specification again: no error. */
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, k1, unique, NULL, &err), err);

   MH_ASSERT_OK (mongo_helper_list_indexes (NULL, coll, &indexes, &err), err);
   ck_assert_uint_eq (arr_len (&indexes), 4); /* with _id_ */
   ck_assert (find_index (&indexes, "email_1", &d));
   ck_assert_int_eq (get_int (&d, "key.email"), 1);
   {
      bson_iter_t it;
      ck_assert (bson_iter_init_find (&it, &d, "unique") && bson_iter_as_bool (&it));
   }
   ck_assert (find_index (&indexes, "user_1_ts_-1", &d));
   ck_assert_int_eq (get_int (&d, "key.ts"), -1);
   ck_assert (find_index (&indexes, "ttl_created", &d));
   ck_assert_int_eq (get_int (&d, "expireAfterSeconds"), 3600);
   bson_destroy (&indexes);

   /* The unique index is enforced. */
   MH_ASSERT_OK (mongo_helper_insert_one (NULL, coll, a, NULL, &err), err);
   ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, coll, a, NULL, &err),
                      MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_ptr_nonnull (strstr (err.message, "a@example.com"));

   MH_ASSERT_OK (mongo_helper_drop_index (NULL, coll, "user_1_ts_-1", &err), err);
   MH_ASSERT_OK (mongo_helper_list_indexes (NULL, coll, &indexes, &err), err);
   ck_assert_uint_eq (arr_len (&indexes), 3);
   ck_assert (!find_index (&indexes, "user_1_ts_-1", &d));
   bson_destroy (&indexes);
   ASSERT_FAILS_WITH (mongo_helper_drop_index (NULL, coll, "user_1_ts_-1", &err),
                      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 27);

   bson_destroy (k1);
   bson_destroy (k2);
   bson_destroy (k3);
   bson_destroy (unique);
   bson_destroy (ttl);
   bson_destroy (a);
   drop (NULL, coll);
}
END_TEST

/* ---- capture: the exact commands for what the test server cannot do --- */

static mh_test_server_t cap;

/* Starts a private test server (it logs every command) and points the
 * singleton at it.  The server dies with this test process, so a failing
 * assertion never leaves it behind. */
static void
setup_capture (void)
{
   const char *script = getenv ("MH_MOCK_SERVER_SCRIPT");
   char uri[160];

   memset (&err, 0, sizeof err);
   memset (&cap, 0, sizeof cap);
   if (!script || !*script) {
      return; /* tests skip themselves */
   }
   mh_test_server_start (&cap, 0, NULL);
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   snprintf (
      uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_cap?serverSelectionTimeoutMS=10000", cap.port);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);
}

static void
teardown_capture (void)
{
   mongo_helper_shutdown ();
   mh_test_server_stop (&cap);
}

/* The last logged command whose first key is `name`, as canonical extended
 * JSON without the driver's own bookkeeping fields. */
static char *
captured (const char *name)
{
   FILE *f = fopen (cap.command_log, "r");
   char *line = NULL, *found = NULL;
   size_t cap = 0;
   char prefix[64];

   ck_assert_ptr_nonnull (f);
   snprintf (prefix, sizeof prefix, "{\"%s\":", name);
   while (getline (&line, &cap, f) > 0) {
      if (strncmp (line, prefix, strlen (prefix)) == 0) {
         free (found);
         found = strdup (line);
      }
   }
   free (line);
   fclose (f);
   ck_assert_msg (found, "no %s command in the log", name);
   {
      /* Re-render without $db (checked separately) for a stable text. */
      bson_t *cmd = mongo_helper_json_to_bson (found, &err);
      bson_t clean = BSON_INITIALIZER;
      bson_iter_t it;
      char *json;

      MH_ASSERT_OK (cmd != NULL, err);
      ck_assert (bson_iter_init_find (&it, cmd, "$db"));
      ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "mh_cap");
      bson_copy_to_excluding_noinit (cmd, &clean, "$db", "$readPreference", NULL);
      json = bson_as_canonical_extended_json (&clean, NULL);
      bson_destroy (&clean);
      bson_destroy (cmd);
      free (found);
      return json;
   }
}

START_TEST (text_and_2dsphere_index_commands_are_exact)
{
   bson_t *text, *topts, *geo;
   char *json, *name = NULL;

   if (!cap.pid) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   text = BCON_NEW ("title", BCON_UTF8 ("text"), "body", BCON_UTF8 ("text"));
   topts = BCON_NEW ("weights",
                     "{",
                     "title",
                     BCON_INT32 (10),
                     "body",
                     BCON_INT32 (2),
                     "}",
                     "default_language",
                     BCON_UTF8 ("english"));
   geo = BCON_NEW ("loc", BCON_UTF8 ("2dsphere"));
   ASSERT_FAILS_WITH (mongo_helper_create_index (NULL, "articles", text, topts, &name, &err),
                      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 67); /* the test server refuses text indexes */
   ck_assert_ptr_null (name);
   json = captured ("createIndexes");
   ck_assert_str_eq (
      json,
      "{ \"createIndexes\" : \"articles\", \"indexes\" : [ { \"key\" : { \"title\" : \"text\", "
      "\"body\" : \"text\" }, \"name\" : \"title_text_body_text\", \"weights\" : { \"title\" : "
      "{ \"$numberInt\" : \"10\" }, \"body\" : { \"$numberInt\" : \"2\" } }, "
      "\"default_language\" : \"english\" } ] }");
   bson_free (json);
   ASSERT_FAILS_WITH (mongo_helper_create_index (NULL, "places", geo, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_SERVER);
   json = captured ("createIndexes");
   ck_assert_str_eq (
      json,
      "{ \"createIndexes\" : \"places\", \"indexes\" : [ { \"key\" : { \"loc\" : \"2dsphere\" }, "
      "\"name\" : \"loc_2dsphere\" } ] }");
   bson_free (json);
   bson_destroy (text);
   bson_destroy (topts);
   bson_destroy (geo);
}
END_TEST

START_TEST (text_search_command_is_exact)
{
   bson_t *extra;
   bson_t results;
   char *json;

   if (!cap.pid) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   extra = BCON_NEW ("published", BCON_BOOL (true));
   ASSERT_FAILS_WITH (mongo_helper_text_search (
                         NULL, "articles", "mongo c driver", "english", extra, 5, &results, &err),
                      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 27);
   bson_destroy (&results);
   json = captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"articles\", \"filter\" : { \"$text\" : { \"$search\" : \"mongo c driver\", "
      "\"$language\" : \"english\" }, \"published\" : true }, \"projection\" : { \"score\" : "
      "{ \"$meta\" : \"textScore\" } }, \"sort\" : { \"score\" : { \"$meta\" : \"textScore\" } }, "
      "\"limit\" : { \"$numberLong\" : \"5\" } }");
   bson_free (json);
   bson_destroy (extra);
}
END_TEST

START_TEST (geo_query_commands_are_exact)
{
   double tri[3][2] = {{2.0, 48.0}, {3.0, 48.0}, {2.5, 49.0}};
   bson_t results;
   char *json;

   if (!cap.pid) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   ASSERT_FAILS_WITH (
      mongo_helper_geo_near (NULL, "places", "loc", 2.35, 48.85, 1500, 10, &results, &err),
      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 291);
   bson_destroy (&results);
   json = captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"places\", \"filter\" : { \"loc\" : { \"$nearSphere\" : { \"$geometry\" : "
      "{ \"type\" : \"Point\", \"coordinates\" : [ { \"$numberDouble\" : \"2.3500000000000000888\" "
      "}, "
      "{ \"$numberDouble\" : \"48.850000000000001421\" } ] }, \"$maxDistance\" : "
      "{ \"$numberDouble\" : \"1500.0\" } } } }, \"limit\" : { \"$numberLong\" : \"10\" } }");
   bson_free (json);

   /* mongomock has no $geoWithin: the server answers 238 (not implemented). */
   ck_assert (
      !mongo_helper_geo_within_polygon (NULL, "places", "loc", &tri[0][0], 3, &results, &err));
   bson_destroy (&results);
   json = captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"places\", \"filter\" : { \"loc\" : { \"$geoWithin\" : { \"$geometry\" : "
      "{ \"type\" : \"Polygon\", \"coordinates\" : [ [ [ { \"$numberDouble\" : \"2.0\" }, "
      "{ \"$numberDouble\" : \"48.0\" } ], [ { \"$numberDouble\" : \"3.0\" }, { \"$numberDouble\" "
      ": "
      "\"48.0\" } ], [ { \"$numberDouble\" : \"2.5\" }, { \"$numberDouble\" : \"49.0\" } ], "
      "[ { \"$numberDouble\" : \"2.0\" }, { \"$numberDouble\" : \"48.0\" } ] ] ] } } } } }");
   bson_free (json);

   ck_assert (
      !mongo_helper_geo_within_circle (NULL, "places", "loc", 0.0, 0.0, 6378100.0, &results, &err));
   bson_destroy (&results);
   json = captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"places\", \"filter\" : { \"loc\" : { \"$geoWithin\" : { \"$centerSphere\" : "
      "[ [ { \"$numberDouble\" : \"0.0\" }, { \"$numberDouble\" : \"0.0\" } ], "
      "{ \"$numberDouble\" : \"1.0\" } ] } } } }");
   bson_free (json);
}
END_TEST

START_TEST (stream_and_aggregate_options_are_sent_as_batch_size_and_allow_disk_use)
{
   bson_t *pipeline, *sort;
   mongo_helper_aggregate_opts_t o = {true, 0};
   chunk_log_t l = {0, 0, 0, 0, -1, true};
   mongo_helper_find_opts_t fo = {0};
   char *json;

   if (!cap.pid) {
      MH_SKIP ("command capture needs MH_MOCK_SERVER_SCRIPT and is off under valgrind");
   }
   pipeline = BCON_NEW ("0", "{", "$match", "{", "}", "}");
   sort = BCON_NEW ("n", BCON_INT32 (1));
   MH_ASSERT_OK (mongo_helper_aggregate_stream (NULL, "c", pipeline, &o, 25, log_chunk, &l, &err),
                 err);
   json = captured ("aggregate");
   ck_assert_str_eq (
      json,
      "{ \"aggregate\" : \"c\", \"pipeline\" : [ { \"$match\" : {  } } ], \"cursor\" : "
      "{ \"batchSize\" : { \"$numberInt\" : \"25\" } }, \"allowDiskUse\" : true }");
   bson_free (json);
   fo.sort = sort;
   MH_ASSERT_OK (mongo_helper_find_stream (NULL, "c", NULL, &fo, 25, log_chunk, &l, &err), err);
   json = captured ("find");
   ck_assert_str_eq (
      json,
      "{ \"find\" : \"c\", \"filter\" : {  }, \"sort\" : { \"n\" : { \"$numberInt\" : \"1\" } }, "
      "\"batchSize\" : { \"$numberInt\" : \"25\" } }");
   bson_free (json);
   bson_destroy (pipeline);
   bson_destroy (sort);
}
END_TEST

/* ---- real mongod only: text and geo behaviour ------------------------- */

START_TEST (text_search_ranks_by_score_on_a_real_server)
{
   const char *coll = mh_test_collection ("text");
   bson_t *keys, *opts;
   bson_t results, d;

   if (on_mock ()) {
      MH_SKIP ("the test server has no $text (code 27); set MONGO_TEST_URI to a real mongod");
   }
   keys = BCON_NEW ("title", BCON_UTF8 ("text"), "body", BCON_UTF8 ("text"));
   opts = BCON_NEW ("weights", "{", "title", BCON_INT32 (10), "}");
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, opts, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (
                    NULL, coll, "{\"title\": \"other\", \"body\": \"coffee\"}", NULL, &err),
                 err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (
                    NULL, coll, "{\"title\": \"coffee\", \"body\": \"tea\"}", NULL, &err),
                 err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (
                    NULL, coll, "{\"title\": \"tea\", \"body\": \"tea\"}", NULL, &err),
                 err);
   MH_ASSERT_OK (
      mongo_helper_text_search (NULL, coll, "coffee", "english", NULL, 5, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 2);
   arr_doc (&results, 0, &d);
   ck_assert_str_eq (get_str (&d, "title"), "coffee"); /* title weighs 10 */
   {
      bson_t d2;
      bson_iter_t a, b;
      arr_doc (&results, 1, &d2);
      ck_assert (bson_iter_init_find (&a, &d, "score") && bson_iter_init_find (&b, &d2, "score"));
      ck_assert (bson_iter_as_double (&a) > bson_iter_as_double (&b));
   }
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_text_search (NULL, coll, "coffee", NULL, NULL, 1, &results, &err),
                 err);
   ck_assert_uint_eq (arr_len (&results), 1);
   bson_destroy (&results);
   bson_destroy (keys);
   bson_destroy (opts);
   drop (NULL, coll);
}
END_TEST

START_TEST (geo_near_and_within_find_the_right_places_on_a_real_server)
{
   const char *coll = mh_test_collection ("geo");
   bson_t *keys;
   /* Paris centre, the Eiffel tower (~3.6 km away), Lyon (~390 km). */
   double tri[3][2] = {{2.2, 48.8}, {2.5, 48.8}, {2.35, 48.95}};
   bson_t results, d;

   if (on_mock ()) {
      MH_SKIP ("the test server has no $nearSphere (291) or $geoWithin; set MONGO_TEST_URI to a "
               "real mongod");
   }
   keys = BCON_NEW ("loc", BCON_UTF8 ("2dsphere"));
   MH_ASSERT_OK (mongo_helper_create_index (NULL, coll, keys, NULL, NULL, &err), err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (NULL,
                                               coll,
                                               "{\"name\": \"centre\", \"loc\": {\"type\": "
                                               "\"Point\", \"coordinates\": [2.3522, 48.8566]}}",
                                               NULL,
                                               &err),
                 err);
   MH_ASSERT_OK (mongo_helper_insert_one_json (NULL,
                                               coll,
                                               "{\"name\": \"eiffel\", \"loc\": {\"type\": "
                                               "\"Point\", \"coordinates\": [2.2945, 48.8584]}}",
                                               NULL,
                                               &err),
                 err);
   MH_ASSERT_OK (
      mongo_helper_insert_one_json (
         NULL,
         coll,
         "{\"name\": \"lyon\", \"loc\": {\"type\": \"Point\", \"coordinates\": [4.8357, 45.7640]}}",
         NULL,
         &err),
      err);
   MH_ASSERT_OK (mongo_helper_geo_near (NULL, coll, "loc", 2.35, 48.85, 10000, 0, &results, &err),
                 err);
   ck_assert_uint_eq (arr_len (&results), 2);
   arr_doc (&results, 0, &d);
   ck_assert_str_eq (get_str (&d, "name"), "centre");
   arr_doc (&results, 1, &d);
   ck_assert_str_eq (get_str (&d, "name"), "eiffel");
   bson_destroy (&results);
   MH_ASSERT_OK (mongo_helper_geo_within_polygon (NULL, coll, "loc", &tri[0][0], 3, &results, &err),
                 err);
   ck_assert_uint_eq (arr_len (&results), 2);
   bson_destroy (&results);
   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, coll, "loc", 2.35, 48.85, 500000, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 3);
   bson_destroy (&results);
   MH_ASSERT_OK (
      mongo_helper_geo_within_circle (NULL, coll, "loc", 2.35, 48.85, 1000, &results, &err), err);
   ck_assert_uint_eq (arr_len (&results), 1);
   bson_destroy (&results);
   bson_destroy (keys);
   drop (NULL, coll);
}
END_TEST

Suite *
crud_suite (void)
{
   Suite *s = suite_create ("crud");
   TCase *core = tcase_create ("crud_core");
   TCase *live = tcase_create ("crud_live");
   TCase *cap = tcase_create ("crud_capture");

   tcase_add_checked_fixture (core, setup_core, teardown);
   tcase_set_timeout (core, 30);
   tcase_add_test (core, malformed_json_is_invalid_argument_with_position);
   tcase_add_test (core, json_with_a_top_level_array_becomes_an_array_document);
   tcase_add_test (core, null_and_empty_names_are_invalid_argument);
   tcase_add_test (core, document_over_16_mb_is_refused_before_sending);
   tcase_add_test (core, batch_and_chunk_size_zero_are_invalid_argument);
   tcase_add_test (core, invalid_object_id_text_is_invalid_argument);
   tcase_add_test (core, bad_find_options_and_geo_input_are_invalid_argument);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, setup_live, teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, insert_one_generates_an_object_id_and_returns_it);
   tcase_add_test (live, insert_one_keeps_the_callers_id_and_duplicate_is_its_own_category);
   tcase_add_test (live, json_insert_and_find_round_trip_as_relaxed_json);
   tcase_add_test (live, find_by_id_json_reads_the_document_with_that_object_id);
   tcase_add_test (live, find_applies_filter_projection_sort_skip_and_limit);
   tcase_add_test (live, explicit_database_is_used_instead_of_the_default);
   tcase_add_test (live, update_one_many_and_upsert_report_matched_modified_and_id);
   tcase_add_test (live, replace_one_replaces_the_whole_document_and_upserts);
   tcase_add_test (live, delete_one_and_many_report_and_remove_exactly_those);
   tcase_add_test (live, counts_and_distinct_read_the_collection);
   tcase_add_test (live, bulk_insert_in_batches_lands_every_document);
   tcase_add_test (live, unordered_bulk_insert_reports_failed_indexes_and_lands_the_rest);
   tcase_add_test (live, ordered_bulk_insert_stops_at_the_first_failure);
   tcase_add_test (live, aggregate_groups_and_honours_options);
   tcase_add_test (live, lookup_facet_and_graph_lookup_pipelines_work);
   tcase_add_test (live, find_stream_delivers_sorted_chunks_and_stops_early);
   tcase_add_test (live, aggregate_stream_delivers_chunks_and_stops_early);
   tcase_add_test (live, server_errors_in_pipelines_keep_their_code);
   tcase_add_test (live, single_compound_unique_and_ttl_indexes_are_created_listed_and_dropped);
   tcase_add_test (live, text_search_ranks_by_score_on_a_real_server);
   tcase_add_test (live, geo_near_and_within_find_the_right_places_on_a_real_server);
   suite_add_tcase (s, live);

   tcase_add_checked_fixture (cap, setup_capture, teardown_capture);
   tcase_set_timeout (cap, 60);
   tcase_add_test (cap, text_and_2dsphere_index_commands_are_exact);
   tcase_add_test (cap, text_search_command_is_exact);
   tcase_add_test (cap, geo_query_commands_are_exact);
   tcase_add_test (cap, stream_and_aggregate_options_are_sent_as_batch_size_and_allow_disk_use);
   suite_add_tcase (s, cap);
   return s;
}
