/* Document operations end to end: insert, find with sort and limit,
 * update, aggregate, bulk insert and streaming, printing JSON as a web
 * handler would send it.
 *
 *   MONGO_CACHE_URI=mongodb://localhost:27017/portal ./build/crud_demo
 *   bash tests/with_server.sh sh -c 'MONGO_CACHE_URI=$MONGO_TEST_URI ./build/crud_demo'
 */
#include <stdio.h>
#include <stdlib.h>

#include "mongo_helper.h"

#define COLL "crud_demo_products"
#define BULK_N 2500

static bool
print_chunk (const bson_t *const *docs, size_t n, void *user_data)
{
   size_t *chunks = user_data;
   bson_iter_t it;
   int64_t first = -1, last = -1;

   if (bson_iter_init_find (&it, docs[0], "sku")) {
      first = bson_iter_as_int64 (&it);
   }
   if (bson_iter_init_find (&it, docs[n - 1], "sku")) {
      last = bson_iter_as_int64 (&it);
   }
   (*chunks)++;
   printf ("  chunk %zu: %zu documents, sku %lld..%lld\n",
           *chunks,
           n,
           (long long) first,
           (long long) last);
   return *chunks < 3; /* three chunks are enough for a demo: stop early */
}

static void
report (const char *what, const mongo_helper_error_t *err)
{
   fprintf (stderr,
            "%s failed: %s error %d: %s\n",
            what,
            mongo_helper_category_name (err->category),
            (int) err->code,
            err->message);
}

int
main (void)
{
   mongo_helper_error_t err;
   mongo_helper_update_result_t upd = {0};
   mongo_helper_bulk_result_t *bulk = NULL;
   bson_value_t id = {0};
   bson_t *doc = NULL, *filter = NULL, *update = NULL, *sort = NULL;
   bson_t **many = NULL;
   bson_t empty = BSON_INITIALIZER;
   char *json = NULL;
   int64_t n = 0;
   size_t chunks = 0;
   int rc = EXIT_FAILURE;

   /* Start clean so the demo prints the same thing on every run. */
   if (!mongo_helper_delete_many (NULL, COLL, &empty, NULL, &err)) {
      report ("delete_many", &err);
      goto cleanup;
   }

   /* Insert from bson_t: the generated _id comes back. */
   doc = BCON_NEW ("name",
                   BCON_UTF8 ("kettle"),
                   "price",
                   BCON_DOUBLE (29.5),
                   "tags",
                   "[",
                   BCON_UTF8 ("kitchen"),
                   "]");
   if (!mongo_helper_insert_one (NULL, COLL, doc, &id, &err)) {
      report ("insert_one", &err);
      goto cleanup;
   }
   printf ("inserted kettle with _id of type %s\n",
           id.value_type == BSON_TYPE_OID ? "ObjectId" : "other");

   /* Insert from JSON, as a request body would arrive. */
   if (!mongo_helper_insert_one_json (
          NULL,
          COLL,
          "{\"name\": \"toaster\", \"price\": 45.0, \"tags\": [\"kitchen\"]}",
          NULL,
          &err) ||
       !mongo_helper_insert_one_json (
          NULL,
          COLL,
          "{\"name\": \"lamp\", \"price\": 19.99, \"tags\": [\"living\"]}",
          NULL,
          &err)) {
      report ("insert_one_json", &err);
      goto cleanup;
   }

   /* Find with sort and limit, answered as JSON. */
   json = mongo_helper_find_json (NULL,
                                  COLL,
                                  "{\"tags\": \"kitchen\"}",
                                  "{\"sort\": {\"price\": -1}, \"limit\": 1, "
                                  "\"projection\": {\"_id\": 0}}",
                                  &err);
   if (!json) {
      report ("find_json", &err);
      goto cleanup;
   }
   printf ("most expensive kitchen product: %s\n", json);
   bson_free (json);
   json = NULL;

   /* Update many with $set, then an upsert from JSON. */
   filter = BCON_NEW ("tags", BCON_UTF8 ("kitchen"));
   update = BCON_NEW ("$set", "{", "on_sale", BCON_BOOL (true), "}");
   if (!mongo_helper_update_many (NULL, COLL, filter, update, false, &upd, &err)) {
      report ("update_many", &err);
      goto cleanup;
   }
   printf ("kitchen on sale: matched %lld, modified %lld\n",
           (long long) upd.matched,
           (long long) upd.modified);
   mongo_helper_update_result_cleanup (&upd);
   if (!mongo_helper_update_json (NULL,
                                  COLL,
                                  "{\"name\": \"rug\"}",
                                  "{\"$set\": {\"price\": 80}}",
                                  false,
                                  true,
                                  &upd,
                                  &err)) {
      report ("update_json", &err);
      goto cleanup;
   }
   printf ("upsert of rug inserted %lld document(s)\n", (long long) upd.upserted);

   /* Aggregate: average price per tag. */
   json = mongo_helper_aggregate_json (NULL,
                                       COLL,
                                       "[{\"$unwind\": \"$tags\"},"
                                       " {\"$group\": {\"_id\": \"$tags\", \"n\": {\"$sum\": 1}}},"
                                       " {\"$sort\": {\"_id\": 1}}]",
                                       NULL,
                                       &err);
   if (!json) {
      report ("aggregate_json", &err);
      goto cleanup;
   }
   printf ("products per tag: %s\n", json);
   bson_free (json);
   json = NULL;

   /* Bulk insert in batches of 1000, unordered. */
   many = bson_malloc0 (BULK_N * sizeof *many);
   for (int i = 0; i < BULK_N; i++) {
      many[i] = BCON_NEW ("sku", BCON_INT32 (i), "price", BCON_DOUBLE (i * 0.5));
   }
   if (!mongo_helper_bulk_insert (
          NULL, COLL, (const bson_t *const *) many, BULK_N, 1000, false, &bulk, &err)) {
      report ("bulk_insert", &err);
      goto cleanup;
   }
   printf ("bulk insert: %lld inserted in %zu batches, %zu failed\n",
           (long long) bulk->inserted,
           bulk->batches,
           bulk->n_failures);

   /* Stream the bulk documents in chunks of 500, stopping after three. */
   sort = BCON_NEW ("sku", BCON_INT32 (1));
   {
      mongo_helper_find_opts_t opts = {0};
      bson_t *has_sku = BCON_NEW ("sku", "{", "$exists", BCON_BOOL (true), "}");
      bool ok;

      opts.sort = sort;
      ok = mongo_helper_find_stream (NULL, COLL, has_sku, &opts, 500, print_chunk, &chunks, &err);
      bson_destroy (has_sku);
      if (!ok) {
         report ("find_stream", &err);
         goto cleanup;
      }
   }

   if (!mongo_helper_count_documents (NULL, COLL, NULL, &n, &err)) {
      report ("count_documents", &err);
      goto cleanup;
   }
   printf ("collection now holds %lld documents\n", (long long) n);
   rc = n == BULK_N + 4 ? EXIT_SUCCESS : EXIT_FAILURE;

cleanup:
   if (many) {
      for (int i = 0; i < BULK_N; i++) {
         bson_destroy (many[i]);
      }
      bson_free (many);
   }
   mongo_helper_bulk_result_destroy (bulk);
   mongo_helper_update_result_cleanup (&upd);
   bson_value_destroy (&id);
   bson_destroy (doc);
   bson_destroy (filter);
   bson_destroy (update);
   bson_destroy (sort);
   bson_free (json);
   mongo_helper_shutdown ();
   return rc;
}
