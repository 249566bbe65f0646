/* src/gridfs.c: files in and out of GridFS from memory, files, streams and
 * callbacks, read back byte for byte.  "core" needs no server (bad input
 * is refused first); "live" runs against the test server (MONGO_TEST_URI). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mh_test.h"

static mongo_helper_error_t err;

/* Pseudo-random bytes (xorshift), reproducible from the seed. */
static uint8_t *
random_bytes (size_t len, uint32_t seed)
{
   uint8_t *p = malloc (len);
   uint32_t x = seed ? seed : 1;

   ck_assert_ptr_nonnull (p);
   for (size_t i = 0; i < len; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      p[i] = (uint8_t) x;
   }
   return p;
}

static const char *
temp_path (const char *name)
{
   static char path[2][256];
   static int n;
   char dir[] = "/tmp/mh_ops_XXXXXX";
   char *p = path[n++ % 2];

   ck_assert_ptr_nonnull (mkdtemp (dir));
   snprintf (p, sizeof path[0], "%s/%s", dir, name);
   return p;
}

static void
write_file (const char *path, const void *data, size_t len)
{
   FILE *f = fopen (path, "wb");

   ck_assert_ptr_nonnull (f);
   ck_assert_uint_eq (fwrite (data, 1, len, f), len);
   ck_assert_int_eq (fclose (f), 0);
}

static uint8_t *
read_file (const char *path, size_t *len)
{
   FILE *f = fopen (path, "rb");
   uint8_t *p;
   long n;

   ck_assert_msg (f != NULL, "cannot open %s", path);
   fseek (f, 0, SEEK_END);
   n = ftell (f);
   rewind (f);
   p = malloc ((size_t) n + 1);
   ck_assert_uint_eq (fread (p, 1, (size_t) n, f), (size_t) n);
   fclose (f);
   *len = (size_t) n;
   return p;
}

/* The files document of GridFS file `id`, looked up with the library. */
static bool
find_file_doc (const mongo_helper_gridfs_opts_t *opts,
               const char *filename,
               const bson_value_t *id,
               bson_t *out)
{
   bson_t files;
   bson_iter_t it, f;
   size_t n = 0;
   bool found = false;

   MH_ASSERT_OK (mongo_helper_gridfs_find (opts, filename, &files, &n, &err), err);
   ck_assert (bson_iter_init (&it, &files));
   while (bson_iter_next (&it)) {
      bson_t doc;
      const uint8_t *data;
      uint32_t len;

      bson_iter_document (&it, &len, &data);
      ck_assert (bson_init_static (&doc, data, len));
      if (bson_iter_init_find (&f, &doc, "_id") &&
          bson_oid_equal (bson_iter_oid (&f), &id->value.v_oid)) {
         bson_copy_to (&doc, out);
         found = true;
      }
   }
   bson_destroy (&files);
   return found;
}

/* ---- core: bad input (no server needed) ----------------------------- */

static int64_t
never_read (void *buf, size_t len, void *ud)
{
   (void) buf;
   (void) len;
   (void) ud;
   return 0;
}

static bool
never_write (const void *buf, size_t len, void *ud)
{
   (void) buf;
   (void) len;
   (void) ud;
   return true;
}

START_TEST (gridfs_rejects_bad_input_without_touching_the_server)
{
   mongo_helper_gridfs_opts_t bad_chunk = {NULL, NULL, -1};
   mongo_helper_gridfs_opts_t bad_bucket = {NULL, "", 0};
   mongo_helper_gridfs_opts_t bad_db = {"no/slash", NULL, 0};
   bson_value_t id = {0}, eod = {0};
   bson_t files;
   uint8_t *data = (uint8_t *) "x";
   size_t len = 7;

   mh_test_clean_env ();
   id.value_type = BSON_TYPE_INT32;
   id.value.v_int32 = 1;
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put (NULL, NULL, "a", 1, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put (NULL, "", "a", 1, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put (NULL, "f", NULL, 5, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put (&bad_chunk, "f", "a", 1, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put (&bad_bucket, "f", "a", 1, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put (&bad_db, "f", "a", 1, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_file (NULL, NULL, "/no/such/file.bin", NULL, NULL, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "/no/such/file.bin"));
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put_file (NULL, NULL, NULL, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_put_stream (NULL, "f", NULL, NULL, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_reader (NULL, "f", NULL, NULL, NULL, NULL, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_reader (NULL, NULL, never_read, NULL, NULL, NULL, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, &id, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, NULL, &data, &len, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_null (data);
   ck_assert_uint_eq (len, 0);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, &eod, &data, &len, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_file (NULL, &id, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_file (NULL, &id, "/no/such/dir/out.bin", &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_stream (NULL, &id, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_writer (NULL, &id, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_writer (NULL, NULL, never_write, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_find (NULL, "", &files, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&files);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_find (NULL, "f", NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_delete (NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   /* A NULL error out-parameter is allowed. */
   ck_assert (!mongo_helper_gridfs_put (NULL, NULL, "a", 1, NULL, NULL, NULL, NULL));
}
END_TEST

/* ---- live ------------------------------------------------------------- */

START_TEST (gridfs_put_from_memory_is_found_read_back_and_deleted)
{
   const char *name = mh_test_collection ("note.txt");
   const char text[] = "hello gridfs\nsecond line\n";
   bson_t *meta =
      BCON_NEW ("author", BCON_UTF8 ("user123"), "contentType", BCON_UTF8 ("will/be-replaced"));
   bson_value_t id;
   bson_t doc = BSON_INITIALIZER, files;
   bson_iter_t it;
   uint8_t *data;
   size_t len, n;

   MH_ASSERT_OK (
      mongo_helper_gridfs_put (NULL, name, text, sizeof text - 1, "text/plain", meta, &id, &err),
      err);
   ck_assert_int_eq (id.value_type, BSON_TYPE_OID);

   bson_destroy (&doc);
   ck_assert_msg (find_file_doc (NULL, name, &id, &doc), "file %s not found by name", name);
   ck_assert (bson_iter_init_find (&it, &doc, "length"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), (int64_t) sizeof text - 1);
   ck_assert (bson_iter_init_find (&it, &doc, "filename"));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), name);
   ck_assert (bson_iter_init_find (&it, &doc, "chunkSize"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 255 * 1024);
   ck_assert (bson_iter_init (&it, &doc) &&
              bson_iter_find_descendant (&it, "metadata.contentType", &it));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "text/plain");
   ck_assert (bson_iter_init (&it, &doc) &&
              bson_iter_find_descendant (&it, "metadata.author", &it));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "user123");
   ck_assert (!bson_iter_init_find (&it, &doc, "contentType")); /* spec: none at top */
   bson_destroy (&doc);

   MH_ASSERT_OK (mongo_helper_gridfs_get (NULL, &id, &data, &len, &err), err);
   ck_assert_uint_eq (len, sizeof text - 1);
   ck_assert_str_eq ((char *) data, text);
   bson_free (data);

   MH_ASSERT_OK (mongo_helper_gridfs_delete (NULL, &id, &err), err);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, &id, &data, &len, &err),
                         MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert_ptr_null (data);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_delete (NULL, &id, &err),
                         MONGO_HELPER_ERROR_NOT_FOUND);
   MH_ASSERT_OK (mongo_helper_gridfs_find (NULL, name, &files, &n, &err), err);
   ck_assert_uint_eq (n, 0);
   ck_assert (bson_empty (&files));
   bson_destroy (&files);
   {
      bson_t *chunk_filter = BCON_NEW ("files_id", BCON_OID (&id.value.v_oid));
      ck_assert_int_eq (mh_test_raw_count ("fs.chunks", chunk_filter), 0);
      bson_destroy (chunk_filter);
   }
   bson_value_destroy (&id);
   bson_destroy (meta);
}
END_TEST

START_TEST (gridfs_empty_file_round_trips_as_empty_string)
{
   const char *name = mh_test_collection ("empty");
   bson_value_t id;
   uint8_t *data;
   size_t len = 99;

   MH_ASSERT_OK (mongo_helper_gridfs_put (NULL, name, NULL, 0, NULL, NULL, &id, &err), err);
   MH_ASSERT_OK (mongo_helper_gridfs_get (NULL, &id, &data, &len, &err), err);
   ck_assert_uint_eq (len, 0);
   ck_assert_ptr_nonnull (data);
   ck_assert_int_eq (data[0], '\0');
   bson_free (data);
   MH_ASSERT_OK (mongo_helper_gridfs_delete (NULL, &id, &err), err);
   bson_value_destroy (&id);
}
END_TEST

/* Over 16 MB, so no single document could hold it. */
#define BIG_LEN (17u * 1024u * 1024u + 12345u)

START_TEST (gridfs_file_over_16mb_round_trips_byte_for_byte)
{
   const char *name = mh_test_collection ("big.bin");
   uint8_t *src = random_bytes (BIG_LEN, 0xC0FFEEu);
   const char *out_path = temp_path ("big.out");
   bson_value_t id;
   bson_t doc = BSON_INITIALIZER;
   bson_iter_t it;
   uint8_t *back;
   size_t len;

   MH_ASSERT_OK (mongo_helper_gridfs_put (
                    NULL, name, src, BIG_LEN, "application/octet-stream", NULL, &id, &err),
                 err);
   bson_destroy (&doc);
   ck_assert (find_file_doc (NULL, name, &id, &doc));
   ck_assert (bson_iter_init_find (&it, &doc, "length"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), (int64_t) BIG_LEN);
   bson_destroy (&doc);
   {
      bson_t *chunk_filter = BCON_NEW ("files_id", BCON_OID (&id.value.v_oid));
      ck_assert_int_eq (mh_test_raw_count ("fs.chunks", chunk_filter),
                        (BIG_LEN + 255 * 1024 - 1) / (255 * 1024));
      bson_destroy (chunk_filter);
   }

   /* Back to a file, then compare every byte. */
   MH_ASSERT_OK (mongo_helper_gridfs_get_file (NULL, &id, out_path, &err), err);
   back = read_file (out_path, &len);
   ck_assert_uint_eq (len, BIG_LEN);
   ck_assert_msg (memcmp (back, src, BIG_LEN) == 0, "downloaded bytes differ");
   free (back);
   unlink (out_path);

   MH_ASSERT_OK (mongo_helper_gridfs_delete (NULL, &id, &err), err);
   bson_value_destroy (&id);
   free (src);
}
END_TEST

typedef struct {
   const uint8_t *data;
   size_t len, pos;
   size_t piece; /* odd piece sizes, so chunk boundaries do not line up */
   int calls;
   int fail_at; /* return -1 on this call; 0: never */
} reader_t;

static int64_t
piece_read (void *buf, size_t len, void *ud)
{
   reader_t *r = ud;
   size_t n = r->len - r->pos;

   if (++r->calls == r->fail_at) {
      return -1;
   }
   if (n > r->piece) {
      n = r->piece;
   }
   if (n > len) {
      n = len;
   }
   memcpy (buf, r->data + r->pos, n);
   r->pos += n;
   return (int64_t) n;
}

typedef struct {
   uint8_t *data;
   size_t len;
   int calls;
   int stop_at; /* return false on this call; 0: never */
} sink_t;

static bool
sink_write (const void *buf, size_t len, void *ud)
{
   sink_t *s = ud;

   if (++s->calls == s->stop_at) {
      return false;
   }
   s->data = realloc (s->data, s->len + len);
   memcpy (s->data + s->len, buf, len);
   s->len += len;
   return true;
}

START_TEST (gridfs_file_stream_and_callbacks_use_the_named_bucket_and_chunk_size)
{
   mongo_helper_gridfs_opts_t opts = {NULL, mh_test_collection ("docs"), 1000};
   char chunks_coll[128];
   uint8_t *src = random_bytes (2500, 7);
   const char *in_path = temp_path ("report.pdf");
   const char *out_path = temp_path ("copy.pdf");
   bson_value_t id_file, id_reader, id_stream;
   reader_t rd = {src, 2500, 0, 333, 0, 0};
   sink_t sk = {0};
   bson_t doc = BSON_INITIALIZER, files;
   bson_t *filter;
   bson_iter_t it;
   mongoc_stream_t *st;
   uint8_t *back;
   size_t len, n;

   snprintf (chunks_coll, sizeof chunks_coll, "%s.chunks", opts.bucket);
   write_file (in_path, src, 2500);

   /* From a file: the filename defaults to the path's last component. */
   MH_ASSERT_OK (
      mongo_helper_gridfs_put_file (&opts, NULL, in_path, "application/pdf", NULL, &id_file, &err),
      err);
   bson_destroy (&doc);
   ck_assert (find_file_doc (&opts, "report.pdf", &id_file, &doc));
   ck_assert (bson_iter_init_find (&it, &doc, "chunkSize"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 1000);
   bson_destroy (&doc);
   filter = BCON_NEW ("files_id", BCON_OID (&id_file.value.v_oid));
   ck_assert_int_eq (mh_test_raw_count (chunks_coll, filter), 3);
   bson_destroy (filter);
   /* ... and not in the default bucket. */
   MH_ASSERT_OK (mongo_helper_gridfs_find (NULL, "report.pdf", &files, &n, &err), err);
   bson_destroy (&files);
   ck_assert_uint_eq (n, 0);

   /* From a read callback, back through a write callback. */
   MH_ASSERT_OK (mongo_helper_gridfs_put_reader (
                    &opts, "report.pdf", piece_read, &rd, NULL, NULL, &id_reader, &err),
                 err);
   ck_assert_uint_eq (rd.pos, 2500);
   MH_ASSERT_OK (mongo_helper_gridfs_get_writer (&opts, &id_reader, sink_write, &sk, &err), err);
   ck_assert_uint_eq (sk.len, 2500);
   ck_assert (memcmp (sk.data, src, 2500) == 0);
   ck_assert_int_ge (sk.calls, 1);

   /* From a mongoc_stream_t, back into one. */
   st = mongoc_stream_file_new_for_path (in_path, O_RDONLY, 0);
   ck_assert_ptr_nonnull (st);
   MH_ASSERT_OK (
      mongo_helper_gridfs_put_stream (&opts, "report.pdf", st, NULL, NULL, &id_stream, &err), err);
   mongoc_stream_destroy (st);
   st = mongoc_stream_file_new_for_path (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
   ck_assert_ptr_nonnull (st);
   MH_ASSERT_OK (mongo_helper_gridfs_get_stream (&opts, &id_stream, st, &err), err);
   mongoc_stream_destroy (st);
   back = read_file (out_path, &len);
   ck_assert_uint_eq (len, 2500);
   ck_assert (memcmp (back, src, 2500) == 0);
   free (back);

   /* Three versions under one name, oldest first. */
   MH_ASSERT_OK (mongo_helper_gridfs_find (&opts, "report.pdf", &files, &n, &err), err);
   ck_assert_uint_eq (n, 3);
   ck_assert (bson_iter_init (&it, &files) && bson_iter_find_descendant (&it, "0._id", &it));
   ck_assert (bson_oid_equal (bson_iter_oid (&it), &id_file.value.v_oid));
   ck_assert (bson_iter_init (&it, &files) &&
              bson_iter_find_descendant (&it, "0.metadata.contentType", &it));
   ck_assert_str_eq (bson_iter_utf8 (&it, NULL), "application/pdf");
   bson_destroy (&files);

   MH_ASSERT_OK (mongo_helper_gridfs_delete (&opts, &id_file, &err), err);
   MH_ASSERT_OK (mongo_helper_gridfs_delete (&opts, &id_reader, &err), err);
   MH_ASSERT_OK (mongo_helper_gridfs_delete (&opts, &id_stream, &err), err);
   ck_assert_int_eq (mh_test_raw_count (chunks_coll, NULL), 0);
   bson_value_destroy (&id_file);
   bson_value_destroy (&id_reader);
   bson_value_destroy (&id_stream);
   free (sk.data);
   free (src);
   unlink (in_path);
   unlink (out_path);
}
END_TEST

START_TEST (gridfs_aborted_callbacks_fail_and_leave_no_chunks)
{
   mongo_helper_gridfs_opts_t opts = {NULL, mh_test_collection ("abort"), 100};
   char chunks_coll[128], files_coll[128];
   uint8_t *src = random_bytes (1000, 3);
   reader_t rd = {src, 1000, 0, 250, 0, 3}; /* fails on the third call */
   sink_t sk = {0, 0, 0, 1};                /* refuses the first piece */
   const char *out_path = temp_path ("partial.bin");
   bson_value_t id, missing;
   uint8_t *data;
   size_t len;

   snprintf (chunks_coll, sizeof chunks_coll, "%s.chunks", opts.bucket);
   snprintf (files_coll, sizeof files_coll, "%s.files", opts.bucket);
   MH_ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_reader (&opts, "x", piece_read, &rd, NULL, NULL, &id, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "read callback"));
   ck_assert_int_eq (mh_test_raw_count (chunks_coll, NULL), 0);
   ck_assert_int_eq (mh_test_raw_count (files_coll, NULL), 0);

   MH_ASSERT_OK (mongo_helper_gridfs_put (&opts, "x", src, 1000, NULL, NULL, &id, &err), err);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_writer (&opts, &id, sink_write, &sk, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_int_eq (sk.calls, 1);
   ck_assert_uint_eq (sk.len, 0);

   /* A missing file: NOT_FOUND, and no output file left behind. */
   missing.value_type = BSON_TYPE_OID;
   bson_oid_init (&missing.value.v_oid, NULL);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get_file (&opts, &missing, out_path, &err),
                         MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert_int_ne (access (out_path, F_OK), 0);
   MH_ASSERT_FAILS_WITH (mongo_helper_gridfs_get (&opts, &missing, &data, &len, &err),
                         MONGO_HELPER_ERROR_NOT_FOUND);
   MH_ASSERT_OK (mongo_helper_gridfs_delete (&opts, &id, &err), err);
   bson_value_destroy (&id);
   free (sk.data);
   free (src);
}
END_TEST

Suite *
gridfs_suite (void)
{
   Suite *s = suite_create ("gridfs");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, gridfs_rejects_bad_input_without_touching_the_server);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, gridfs_put_from_memory_is_found_read_back_and_deleted);
   tcase_add_test (live, gridfs_empty_file_round_trips_as_empty_string);
   tcase_add_test (live, gridfs_file_over_16mb_round_trips_byte_for_byte);
   tcase_add_test (live, gridfs_file_stream_and_callbacks_use_the_named_bucket_and_chunk_size);
   tcase_add_test (live, gridfs_aborted_callbacks_fail_and_leave_no_chunks);
   suite_add_tcase (s, live);
   return s;
}
