/* The original usage, in C: get the default database, log a user event,
 * read the user's events back.
 *
 *   MONGO_CACHE_URI=mongodb://localhost:27017/portal ./build/events_demo
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mongo_helper.h"

int
main (void)
{
   mongo_helper_error_t err;
   mongo_helper_status_t st;
   mongoc_database_t *db;
   mongoc_collection_t *events = NULL;
   mongoc_cursor_t *cursor = NULL;
   bson_t *event = NULL, *filter = NULL;
   const bson_t *doc;
   bson_error_t berr;
   int rc = EXIT_FAILURE, n = 0;

   db = mongo_helper_database (&err); /* lazy init, per-thread client */
   if (!db) {
      fprintf (stderr,
               "mongo_helper: %s error: %s\n",
               mongo_helper_category_name (err.category),
               err.message);
      goto cleanup;
   }
   mongo_helper_status (&st);
   printf ("connected to %s (database %s, from %s)\n", st.uri, st.database, st.source);

   events = mongoc_database_get_collection (db, "events");
   {
      struct timespec now;
      timespec_get (&now, TIME_UTC);
      event = BCON_NEW ("user_id",
                        BCON_INT32 (123),
                        "event_type",
                        BCON_UTF8 ("login"),
                        "metadata",
                        "{",
                        "ip",
                        BCON_UTF8 ("203.0.113.7"),
                        "}",
                        "timestamp",
                        BCON_DATE_TIME ((int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000));
   }
   if (!mongoc_collection_insert_one (events, event, NULL, NULL, &berr)) {
      fprintf (stderr, "insert failed: %s\n", berr.message);
      goto cleanup;
   }
   filter = BCON_NEW ("user_id", BCON_INT32 (123));
   cursor = mongoc_collection_find_with_opts (events, filter, NULL, NULL);
   while (mongoc_cursor_next (cursor, &doc)) {
      char *json = bson_as_relaxed_extended_json (doc, NULL);
      printf ("event: %s\n", json);
      bson_free (json);
      n++;
   }
   if (mongoc_cursor_error (cursor, &berr)) {
      fprintf (stderr, "find failed: %s\n", berr.message);
      goto cleanup;
   }
   printf ("user 123 has %d event(s)\n", n);
   rc = n > 0 ? EXIT_SUCCESS : EXIT_FAILURE;

cleanup:
   mongoc_cursor_destroy (cursor);
   mongoc_collection_destroy (events);
   bson_destroy (event);
   bson_destroy (filter);
   mongo_helper_shutdown ();
   return rc;
}
