/* What the resilience suites share (test_resilience.c,
 * test_resilience_outages.c): time, metrics, a ping, and the live set-up. */
#ifndef RESILIENCE_FIXTURE_H
#define RESILIENCE_FIXTURE_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* ---- helpers ---------------------------------------------------------- */

static inline int64_t
now_ms (void)
{
   return bson_get_monotonic_time () / 1000;
}

static char app_name[64];

/* Looks a number up in the JSON snapshot by a dotted path. */
static inline int64_t
metric (const char *dotted)
{
   char *json = mongo_helper_metrics_json_dup (&err);
   bson_t doc;
   bson_iter_t it, found;
   int64_t v = -1;

   ck_assert_ptr_nonnull (json);
   ck_assert (bson_init_from_json (&doc, json, -1, NULL));
   if (bson_iter_init (&it, &doc) && bson_iter_find_descendant (&it, dotted, &found) &&
       BSON_ITER_HOLDS_NUMBER (&found)) {
      v = bson_iter_as_int64 (&found);
   } else {
      v = 0; /* never recorded */
   }
   bson_destroy (&doc);
   bson_free (json);
   return v;
}

static inline bool
run_ping (void)
{
   bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));
   bool ok = mongo_helper_command (ping, NULL, &err);
   bson_destroy (ping);
   return ok;
}

/* ---- fixtures ---------------------------------------------------------- */

/* The live server, with this process's own application name (so fail
 * points hit only its clients), only the library's own retries (so
 * counts are exact) and per-command metrics on (the tests count what
 * libmongoc's command monitoring saw). */
static inline void
live_setup (void)
{
   mh_test_live_setup ();
   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "3000", 1);
   snprintf (app_name, sizeof app_name, "mh_resil_%ld", (long) getpid ());
   setenv ("MONGO_APP_NAME", app_name, 1);
   setenv ("MONGO_RETRY_READS", "false", 1);
   setenv ("MONGO_RETRY_BASE_MS", "5", 1);
   setenv ("MONGO_COMMAND_METRICS", "true", 1);
   mongo_helper_metrics_reset ();
}

#endif
