/* GridFS: store a file, find it by name, read it back and compare, delete.
 *
 *   MONGO_CACHE_URI=mongodb://localhost:27017/portal ./build/gridfs_demo [FILE]
 *
 * Without FILE the demo writes 3 MB of pseudo-random bytes to a temporary
 * file and uses that.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mongo_helper.h"

static void
report (const char *what, const mongo_helper_error_t *err)
{
   fprintf (stderr,
            "%s: %s error %d: %s\n",
            what,
            mongo_helper_category_name (err->category),
            (int) err->code,
            err->message);
}

/* Reads a whole file into memory (malloc'd). */
static unsigned char *
slurp (const char *path, size_t *len)
{
   FILE *f = fopen (path, "rb");
   unsigned char *p = NULL;
   long n;

   if (!f) {
      return NULL;
   }
   if (fseek (f, 0, SEEK_END) == 0 && (n = ftell (f)) >= 0) {
      rewind (f);
      p = malloc ((size_t) n + 1);
      if (p && fread (p, 1, (size_t) n, f) != (size_t) n) {
         free (p);
         p = NULL;
      }
      *len = (size_t) n;
   }
   fclose (f);
   return p;
}

int
main (int argc, char **argv)
{
   mongo_helper_error_t err;
   mongo_helper_gridfs_opts_t opts = {NULL, "demo_files", 0};
   char tmp_in[] = "/tmp/gridfs_demo_XXXXXX";
   char out_path[64];
   const char *path = argc > 1 ? argv[1] : NULL;
   bson_t *meta = BCON_NEW ("author", BCON_UTF8 ("user123"));
   bson_value_t id = {0};
   bson_t files = BSON_INITIALIZER;
   unsigned char *original = NULL, *copy = NULL;
   size_t len = 0, copy_len = 0, n = 0;
   bool have_id = false, made_input = false;
   int rc = EXIT_FAILURE;

   if (!path) {
      int fd = mkstemp (tmp_in);
      FILE *f = fd >= 0 ? fdopen (fd, "wb") : NULL;
      uint32_t x = 2463534242u;

      if (!f) {
         perror ("temporary file");
         goto cleanup;
      }
      for (int i = 0; i < 3 * 1024 * 1024; i++) {
         x ^= x << 13;
         x ^= x >> 17;
         x ^= x << 5;
         fputc ((int) (x & 0xff), f);
      }
      fclose (f);
      path = tmp_in;
      made_input = true;
   }

   if (!mongo_helper_gridfs_put_file (
          &opts, "report.bin", path, "application/octet-stream", meta, &id, &err)) {
      report ("put", &err);
      goto cleanup;
   }
   have_id = true;
   {
      char hex[25] = "?";

      if (id.value_type == BSON_TYPE_OID) {
         bson_oid_to_string (&id.value.v_oid, hex);
      }
      printf ("stored %s as report.bin, id %s\n", path, hex);
   }

   bson_destroy (&files);
   if (!mongo_helper_gridfs_find (&opts, "report.bin", &files, &n, &err)) {
      report ("find", &err);
      goto cleanup;
   }
   printf ("bucket demo_files holds %zu file(s) named report.bin\n", n);

   snprintf (out_path, sizeof out_path, "/tmp/gridfs_demo_out_%ld", (long) getpid ());
   if (!mongo_helper_gridfs_get_file (&opts, &id, out_path, &err)) {
      report ("get", &err);
      goto cleanup;
   }
   original = slurp (path, &len);
   copy = slurp (out_path, &copy_len);
   unlink (out_path);
   if (!original || !copy || len != copy_len || memcmp (original, copy, len) != 0) {
      fprintf (stderr, "the copy differs from the original\n");
      goto cleanup;
   }
   printf ("read back %zu bytes: identical\n", copy_len);

   if (!mongo_helper_gridfs_delete (&opts, &id, &err)) {
      report ("delete", &err);
      goto cleanup;
   }
   printf ("deleted\n");
   rc = EXIT_SUCCESS;

cleanup:
   if (have_id) {
      bson_value_destroy (&id);
   }
   if (made_input) {
      unlink (tmp_in);
   }
   free (original);
   free (copy);
   bson_destroy (&files);
   bson_destroy (meta);
   mongo_helper_shutdown ();
   return rc;
}
