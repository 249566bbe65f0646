/* libFuzzer target: configuration and URI building.
 *
 * The input is split at NUL bytes: the first eight fields are the values
 * of MONGO_HOST, MONGO_PORT, MONGO_USERNAME, MONGO_PASSWORD,
 * MONGO_AUTH_SOURCE, MONGO_REPLICA_SET, MONGO_USE_SSL and
 * MONGO_SSL_CA_CERTS (an empty field leaves the variable unset); the rest
 * is the text of the INI file.  Properties checked: no crash, no leak,
 * only CONFIG errors, and a resolved configuration always has a URI, a
 * redacted URI, a database and at least one attempt. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mongo_helper.h"

static const char *vars[] = {"MONGO_HOST",
                             "MONGO_PORT",
                             "MONGO_USERNAME",
                             "MONGO_PASSWORD",
                             "MONGO_AUTH_SOURCE",
                             "MONGO_REPLICA_SET",
                             "MONGO_USE_SSL",
                             "MONGO_SSL_CA_CERTS"};
#define NVARS (sizeof vars / sizeof *vars)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
   static char path[64];
   char *buf = malloc (size + 1);
   const char *field = buf, *end = buf + size;
   mongo_helper_error_t err;
   mongo_helper_config_t *cfg;
   FILE *f;

   if (!path[0]) {
      snprintf (path, sizeof path, "/tmp/mh_fuzz_config_%ld.ini", (long) getpid ());
      unsetenv ("MONGO_CACHE_URI");
      unsetenv ("MONGO_URI");
      unsetenv ("MONGO_DB");
      unsetenv ("MONGO_HELPER_CONFIG");
   }
   memcpy (buf, data, size);
   buf[size] = '\0';
   for (size_t i = 0; i < NVARS; i++) {
      size_t len = field < end ? strlen (field) : 0;
      if (len) {
         setenv (vars[i], field, 1);
      } else {
         unsetenv (vars[i]);
      }
      field = field < end ? field + len + 1 : end;
   }
   f = fopen (path, "w");
   if (f) {
      if (field < end) {
         fwrite (field, 1, (size_t) (end - field), f);
      }
      fclose (f);
   }
   cfg = mongo_helper_config_new (path, NULL, &err);
   if (cfg) {
      mongo_helper_retry_policy_t pol;
      if (!mongo_helper_config_uri (cfg) || !mongo_helper_config_uri_redacted (cfg) ||
          !mongo_helper_config_database (cfg)) {
         abort ();
      }
      mongo_helper_config_retry_policy (cfg, &pol);
      if (pol.attempts < 1) {
         abort ();
      }
      mongo_helper_config_destroy (cfg);
   } else if (err.category != MONGO_HELPER_ERROR_CONFIG) {
      abort ();
   }
   free (buf);
   return 0;
}
