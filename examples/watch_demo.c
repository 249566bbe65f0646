/* Change streams: watch a collection, keep the resume token, continue
 * from it later.
 *
 *   MONGO_CACHE_URI=mongodb://host1,host2/app?replicaSet=rs0 ./build/watch_demo [seconds]
 *
 * Change streams need a replica set or a sharded cluster.  Against a
 * standalone server (or the project's test server) the demo prints the
 * server's error (code 40573) and exits 0: that is the documented answer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mongo_helper.h"

static bool
print_change (const bson_t *event, void *user_data)
{
   int *seen = user_data;
   char *json = bson_as_relaxed_extended_json (event, NULL);

   printf ("change: %s\n", json);
   bson_free (json);
   return ++*seen < 100; /* stop after 100 events */
}

int
main (int argc, char **argv)
{
   mongo_helper_watch_opts_t opts = {0};
   mongo_helper_error_t err;
   bson_t token;
   int seen = 0, rc = EXIT_SUCCESS;

   opts.full_document_update_lookup = true;
   opts.timeout_ms = (argc > 1 ? atoi (argv[1]) : 3) * 1000;

   if (!mongo_helper_watch ("events", &opts, print_change, &seen, &token, &err)) {
      if (err.code == 40573) {
         printf ("this server is a standalone: %s\n", err.message);
      } else {
         fprintf (stderr,
                  "watch failed (%s): %s\n",
                  mongo_helper_category_name (err.category),
                  err.message);
         rc = EXIT_FAILURE;
      }
   } else {
      char *json = bson_as_relaxed_extended_json (&token, NULL);
      /* Store this token; pass it as opts.resume_after to continue. */
      printf ("%d change(s); resume token: %s\n", seen, json);
      bson_free (json);
   }
   bson_destroy (&token);
   mongo_helper_shutdown ();
   return rc;
}
