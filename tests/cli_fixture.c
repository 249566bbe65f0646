/* Test data for tests/test_cli.sh, written through the library's public
 * API against MONGO_CACHE_URI:
 *
 *   cli_fixture session COLLECTION USER        creates a session of USER
 *   cli_fixture cache COLLECTION KEY doc JSON  stores a document
 *   cli_fixture cache COLLECTION KEY bytes TEXT
 *   cli_fixture cache COLLECTION KEY counter N
 *   cli_fixture event COLLECTION USER TYPE AGE_MS   logs an event AGE_MS ago
 *
 * Exit status 0 on success; errors on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mongo_helper.h"

static int
fail (const char *what, const mongo_helper_error_t *e)
{
   fprintf (stderr,
            "cli_fixture %s: %s: %s\n",
            what,
            mongo_helper_category_name (e->category),
            e->message);
   return 1;
}

static int
session (const char *coll, const char *user)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;
   mongo_helper_error_t e;
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   bool ok;

   mongo_helper_sessions_options_init (&o);
   o.collection = coll;
   if (!(s = mongo_helper_sessions_new (&o, &e))) {
      return fail ("session", &e);
   }
   ok = mongo_helper_sessions_create (s, NULL, user, id, &e);
   mongo_helper_sessions_destroy (s);
   return ok ? 0 : fail ("session", &e);
}

static int
cache (const char *coll, const char *key, const char *kind, const char *value)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;
   mongo_helper_error_t e;
   bson_t *doc = NULL;
   bool ok = false;

   mongo_helper_cache_options_init (&o);
   o.collection = coll;
   if (!(c = mongo_helper_cache_new (&o, &e))) {
      return fail ("cache", &e);
   }
   if (strcmp (kind, "doc") == 0) {
      ok = (doc = mongo_helper_json_to_bson (value, &e)) &&
           mongo_helper_cache_set (c, key, doc, 0, &e);
   } else if (strcmp (kind, "bytes") == 0) {
      ok = mongo_helper_cache_set_bytes (c, key, (const uint8_t *) value, strlen (value), 0, &e);
   } else if (strcmp (kind, "counter") == 0) {
      ok = mongo_helper_cache_incr (c, key, strtoll (value, NULL, 10), 0, NULL, &e);
   }
   bson_destroy (doc);
   mongo_helper_cache_destroy (c);
   return ok ? 0 : fail ("cache", &e);
}

static int
event (const char *coll, const char *user, const char *type, const char *age_ms)
{
   mongo_helper_eventlog_options_t o;
   mongo_helper_eventlog_t *log;
   mongo_helper_error_t e;
   struct timespec now;
   bson_t *meta = BCON_NEW ("source", BCON_UTF8 ("cli_fixture"));
   bool ok;

   timespec_get (&now, TIME_UTC);
   mongo_helper_eventlog_options_init (&o);
   o.collection = coll;
   if (!(log = mongo_helper_eventlog_new (&o, &e))) {
      bson_destroy (meta);
      return fail ("event", &e);
   }
   ok = mongo_helper_eventlog_log (log,
                                   user,
                                   type,
                                   meta,
                                   (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000 -
                                      strtoll (age_ms, NULL, 10),
                                   &e);
   mongo_helper_eventlog_destroy (log);
   bson_destroy (meta);
   return ok ? 0 : fail ("event", &e);
}

int
main (int argc, char **argv)
{
   int rc = 2;

   if (argc == 4 && strcmp (argv[1], "session") == 0) {
      rc = session (argv[2], argv[3]);
   } else if (argc == 6 && strcmp (argv[1], "cache") == 0) {
      rc = cache (argv[2], argv[3], argv[4], argv[5]);
   } else if (argc == 6 && strcmp (argv[1], "event") == 0) {
      rc = event (argv[2], argv[3], argv[4], argv[5]);
   } else {
      fprintf (stderr, "usage: see the comment at the top of tests/cli_fixture.c\n");
   }
   mongo_helper_shutdown ();
   return rc;
}
