/* GridFS, change streams, concurrent operations and statistics, against
 * the test server (MONGO_TEST_URI, started by make check).  Change streams
 * need a replica set: against the mock server the exact command is
 * captured instead, and the behavioural test runs only against a real
 * mongod. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

Suite *ops_suite (void);

static mongo_helper_error_t err;

static void
setup (void)
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

#define ASSERT_FAILS_WITH(call, cat)                                         \
   do {                                                                      \
      memset (&err, 0, sizeof err);                                          \
      ck_assert_msg (!(call), "expected failure: %s", #call);                \
      ck_assert_msg (err.category == (cat),                                  \
                     "%s: expected %s, got %s (%s)",                         \
                     #call,                                                  \
                     mongo_helper_category_name (cat),                       \
                     mongo_helper_category_name (err.category),              \
                     err.message);                                           \
      ck_assert_msg (err.message[0] != '\0', "empty message for %s", #call); \
   } while (0)

static mongoc_collection_t *
collection (const char *name)
{
   mongoc_database_t *db = mongo_helper_database (&err);
   MH_ASSERT_OK (db != NULL, err);
   return mongoc_database_get_collection (db, name);
}

static int64_t
count_docs (const char *coll_name, const bson_t *filter)
{
   mongoc_collection_t *coll = collection (coll_name);
   bson_error_t e;
   bson_t empty = BSON_INITIALIZER;
   int64_t n =
      mongoc_collection_count_documents (coll, filter ? filter : &empty, NULL, NULL, NULL, &e);

   ck_assert_msg (n >= 0, "count failed: %s", e.message);
   mongoc_collection_destroy (coll);
   return n;
}

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

/* ---- bad input (no server needed) ---------------------------------- */

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

static bool
ignore_event (const bson_t *ev, void *ud)
{
   (void) ev;
   (void) ud;
   return false;
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
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put (NULL, NULL, "a", 1, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put (NULL, "", "a", 1, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put (NULL, "f", NULL, 5, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put (&bad_chunk, "f", "a", 1, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put (&bad_bucket, "f", "a", 1, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put (&bad_db, "f", "a", 1, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_file (NULL, NULL, "/no/such/file.bin", NULL, NULL, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "/no/such/file.bin"));
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put_file (NULL, NULL, NULL, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_put_stream (NULL, "f", NULL, NULL, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_reader (NULL, "f", NULL, NULL, NULL, NULL, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_reader (NULL, NULL, never_read, NULL, NULL, NULL, NULL, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, &id, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, NULL, &data, &len, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_null (data);
   ck_assert_uint_eq (len, 0);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, &eod, &data, &len, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_file (NULL, &id, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_file (NULL, &id, "/no/such/dir/out.bin", &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_stream (NULL, &id, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_writer (NULL, &id, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_writer (NULL, NULL, never_write, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_find (NULL, "", &files, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&files);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_find (NULL, "f", NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_delete (NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   /* A NULL error out-parameter is allowed. */
   ck_assert (!mongo_helper_gridfs_put (NULL, NULL, "a", 1, NULL, NULL, NULL, NULL));
}
END_TEST

START_TEST (watch_rejects_bad_input_without_touching_the_server)
{
   mongo_helper_watch_opts_t both = {0}, empty_tok = {0}, bad_db = {0};
   bson_t *tok = BCON_NEW ("_data", BCON_UTF8 ("82AB"));
   bson_t empty = BSON_INITIALIZER;
   bson_t out;

   mh_test_clean_env ();
   both.resume_after = tok;
   both.start_after = tok;
   empty_tok.resume_after = &empty;
   bad_db.database = "";
   ASSERT_FAILS_WITH (mongo_helper_watch ("c", NULL, NULL, NULL, &out, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (bson_empty (&out)); /* initialised even on failure */
   bson_destroy (&out);
   ASSERT_FAILS_WITH (mongo_helper_watch ("", NULL, ignore_event, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_watch ("c", &both, ignore_event, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_watch ("c", &empty_tok, ignore_event, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_watch ("c", &bad_db, ignore_event, NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (tok);
}
END_TEST

START_TEST (run_concurrent_rejects_zero_k_empty_list_and_null_results)
{
   mongo_helper_op_t op = {.type = MONGO_HELPER_OP_COUNT, .collection = "c"};
   mongo_helper_op_result_t res[1];

   mh_test_clean_env ();
   ASSERT_FAILS_WITH (mongo_helper_run_concurrent (&op, 1, 0, res, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "max_concurrent"));
   ck_assert (bson_empty (&res[0].result));
   mongo_helper_op_results_cleanup (res, 1);
   ASSERT_FAILS_WITH (mongo_helper_run_concurrent (&op, 0, 4, res, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "empty"));
   ASSERT_FAILS_WITH (mongo_helper_run_concurrent (NULL, 1, 4, res, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   mongo_helper_op_results_cleanup (res, 1);
   ASSERT_FAILS_WITH (mongo_helper_run_concurrent (&op, 1, 4, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   mongo_helper_op_results_cleanup (NULL, 3);
}
END_TEST

START_TEST (stats_reject_null_and_empty_names)
{
   bson_t reply;

   mh_test_clean_env ();
   ASSERT_FAILS_WITH (mongo_helper_collection_stats (NULL, NULL, NULL, &reply, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (bson_empty (&reply));
   bson_destroy (&reply);
   ASSERT_FAILS_WITH (mongo_helper_collection_stats (NULL, "", NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_collection_stats ("", "c", NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_db_stats ("bad.name", NULL, NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_collection_names ("", &err) != NULL,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ASSERT_FAILS_WITH (mongo_helper_index_sizes (NULL, NULL, &reply, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&reply);
   ASSERT_FAILS_WITH (mongo_helper_index_sizes (NULL, "c", NULL, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
}
END_TEST

/* ---- GridFS --------------------------------------------------------- */

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
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get (NULL, &id, &data, &len, &err),
                      MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert_ptr_null (data);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_delete (NULL, &id, &err), MONGO_HELPER_ERROR_NOT_FOUND);
   MH_ASSERT_OK (mongo_helper_gridfs_find (NULL, name, &files, &n, &err), err);
   ck_assert_uint_eq (n, 0);
   ck_assert (bson_empty (&files));
   bson_destroy (&files);
   {
      bson_t *chunk_filter = BCON_NEW ("files_id", BCON_OID (&id.value.v_oid));
      ck_assert_int_eq (count_docs ("fs.chunks", chunk_filter), 0);
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
      ck_assert_int_eq (count_docs ("fs.chunks", chunk_filter),
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
   ck_assert_int_eq (count_docs (chunks_coll, filter), 3);
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
   ck_assert_int_eq (count_docs (chunks_coll, NULL), 0);
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
   ASSERT_FAILS_WITH (
      mongo_helper_gridfs_put_reader (&opts, "x", piece_read, &rd, NULL, NULL, &id, &err),
      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (err.message, "read callback"));
   ck_assert_int_eq (count_docs (chunks_coll, NULL), 0);
   ck_assert_int_eq (count_docs (files_coll, NULL), 0);

   MH_ASSERT_OK (mongo_helper_gridfs_put (&opts, "x", src, 1000, NULL, NULL, &id, &err), err);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_writer (&opts, &id, sink_write, &sk, &err),
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_int_eq (sk.calls, 1);
   ck_assert_uint_eq (sk.len, 0);

   /* A missing file: NOT_FOUND, and no output file left behind. */
   missing.value_type = BSON_TYPE_OID;
   bson_oid_init (&missing.value.v_oid, NULL);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get_file (&opts, &missing, out_path, &err),
                      MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert_int_ne (access (out_path, F_OK), 0);
   ASSERT_FAILS_WITH (mongo_helper_gridfs_get (&opts, &missing, &data, &len, &err),
                      MONGO_HELPER_ERROR_NOT_FOUND);
   MH_ASSERT_OK (mongo_helper_gridfs_delete (&opts, &id, &err), err);
   bson_value_destroy (&id);
   free (sk.data);
   free (src);
}
END_TEST

/* ---- Change streams ------------------------------------------------- */

/* The first logged command whose text contains `needle`, parsed. */
static bson_t *
logged_command (const char *log_path, const char *needle)
{
   FILE *f = fopen (log_path, "r");
   char *line = NULL;
   size_t cap = 0;
   bson_t *doc = NULL;

   ck_assert_ptr_nonnull (f);
   while (getline (&line, &cap, f) > 0) {
      if (strstr (line, needle)) {
         bson_error_t e;
         doc = bson_new_from_json ((const uint8_t *) line, -1, &e);
         ck_assert_msg (doc, "bad log line: %s", e.message);
         break;
      }
   }
   free (line);
   fclose (f);
   return doc;
}

static const char *
utf8_at (const bson_t *doc, const char *path)
{
   bson_iter_t it, f;

   ck_assert_msg (bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, path, &f) &&
                     BSON_ITER_HOLDS_UTF8 (&f),
                  "no string at %s",
                  path);
   return bson_iter_utf8 (&f, NULL);
}

START_TEST (watch_sends_change_stream_aggregate_and_reports_standalone_error)
{
   mh_test_server_t srv = {0};
   char uri[160];
   bson_t *tok = BCON_NEW ("_data", BCON_UTF8 ("8263A1B2C3000000012B022C0100296E5A1004"));
   bson_t *pipeline = BCON_NEW (
      "pipeline", "[", "{", "$match", "{", "operationType", BCON_UTF8 ("insert"), "}", "}", "]");
   mongo_helper_watch_opts_t opts = {0};
   bson_t *cmd, out;
   bson_iter_t it;
   int calls = 0;

   if (!on_mock ()) {
      MH_SKIP ("captures the command at the mock server; a real server is in use");
   }
   mh_test_server_start (&srv, 0, NULL); /* logs every command */
   snprintf (
      uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_test?serverSelectionTimeoutMS=5000", srv.port);
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);

   opts.pipeline = pipeline;
   opts.full_document_update_lookup = true;
   opts.resume_after = tok;
   opts.max_await_time_ms = 250;
   opts.batch_size = 10;
   ASSERT_FAILS_WITH (mongo_helper_watch ("orders", &opts, ignore_event, &calls, &out, &err),
                      MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 40573);
   ck_assert_ptr_nonnull (strstr (err.message, "change stream"));
   ck_assert_int_eq (calls, 0);
   ck_assert (bson_empty (&out)); /* no event, no token */
   bson_destroy (&out);

   cmd = logged_command (srv.command_log, "$changeStream");
   ck_assert_msg (cmd, "no $changeStream command was sent");
   ck_assert_str_eq (utf8_at (cmd, "aggregate"), "orders");
   ck_assert_str_eq (utf8_at (cmd, "$db"), "mh_test");
   ck_assert_str_eq (utf8_at (cmd, "pipeline.0.$changeStream.fullDocument"), "updateLookup");
   ck_assert_str_eq (utf8_at (cmd, "pipeline.0.$changeStream.resumeAfter._data"),
                     "8263A1B2C3000000012B022C0100296E5A1004");
   ck_assert_str_eq (utf8_at (cmd, "pipeline.1.$match.operationType"), "insert");
   ck_assert (bson_iter_init (&it, cmd) && !bson_iter_find_descendant (&it, "pipeline.2", &it));
   ck_assert (bson_iter_init (&it, cmd) &&
              bson_iter_find_descendant (&it, "cursor.batchSize", &it));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 10);
   bson_destroy (cmd);

   /* The whole database, starting after a token: aggregate 1. */
   opts.pipeline = NULL;
   opts.full_document_update_lookup = false;
   opts.resume_after = NULL;
   opts.start_after = tok;
   opts.database = "other_db";
   memset (&err, 0, sizeof err);
   ck_assert (!mongo_helper_watch (NULL, &opts, ignore_event, &calls, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_SERVER);
   cmd = logged_command (srv.command_log, "startAfter");
   ck_assert_msg (cmd, "no database-level $changeStream command was sent");
   ck_assert (bson_iter_init_find (&it, cmd, "aggregate"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 1);
   ck_assert_str_eq (utf8_at (cmd, "$db"), "other_db");
   ck_assert_str_eq (utf8_at (cmd, "pipeline.0.$changeStream.startAfter._data"),
                     "8263A1B2C3000000012B022C0100296E5A1004");
   ck_assert (bson_iter_init (&it, cmd) &&
              !bson_iter_find_descendant (&it, "pipeline.0.$changeStream.fullDocument", &it));
   bson_destroy (cmd);

   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
   bson_destroy (tok);
   bson_destroy (pipeline);
}
END_TEST

/* The behavioural test needs a replica set: a real mongod. */
typedef struct {
   int n;
   int stop_after;
   char types[8][16];
   int32_t values[8];
   bool full_doc_on_update;
} events_t;

static bool
collect_event (const bson_t *ev, void *ud)
{
   events_t *e = ud;
   bson_iter_t it;

   if (e->n < 8) {
      if (bson_iter_init_find (&it, ev, "operationType")) {
         bson_strncpy (e->types[e->n], bson_iter_utf8 (&it, NULL), sizeof e->types[0]);
      }
      if (bson_iter_init (&it, ev) && bson_iter_find_descendant (&it, "fullDocument.v", &it)) {
         e->values[e->n] = bson_iter_int32 (&it);
         if (strcmp (e->types[e->n], "update") == 0) {
            e->full_doc_on_update = true;
         }
      }
   }
   e->n++;
   return e->n < e->stop_after;
}

static const char *writer_coll;

static void *
change_writer (void *arg)
{
   mongo_helper_error_t e;
   mongoc_database_t *db = mongo_helper_database (&e);
   mongoc_collection_t *coll;
   bson_t *d1 = BCON_NEW ("_id", BCON_INT32 (1), "v", BCON_INT32 (10));
   bson_t *d2 = BCON_NEW ("_id", BCON_INT32 (2), "v", BCON_INT32 (20));
   bson_t *sel = BCON_NEW ("_id", BCON_INT32 (1));
   bson_t *upd = BCON_NEW ("$set", "{", "v", BCON_INT32 (11), "}");
   intptr_t ok = 0;

   (void) arg;
   if (db) {
      coll = mongoc_database_get_collection (db, writer_coll);
      ok = mongoc_collection_insert_one (coll, d1, NULL, NULL, NULL) &&
           mongoc_collection_insert_one (coll, d2, NULL, NULL, NULL) &&
           mongoc_collection_update_one (coll, sel, upd, NULL, NULL, NULL);
      mongoc_collection_destroy (coll);
   }
   mongo_helper_thread_release ();
   bson_destroy (d1);
   bson_destroy (d2);
   bson_destroy (sel);
   bson_destroy (upd);
   return (void *) ok;
}

START_TEST (watch_delivers_events_in_order_with_update_lookup_and_resumes)
{
   mongo_helper_watch_opts_t opts = {0};
   events_t ev = {0}, again = {0};
   bson_t start, token, token2;
   pthread_t t;
   void *wrote;

   if (on_mock ()) {
      MH_SKIP ("change streams need a replica set; the mock server is a standalone "
               "(set MONGO_TEST_URI to a replica-set mongod)");
   }
   writer_coll = mh_test_collection ("watched");
   {
      mongoc_collection_t *c = collection (writer_coll);
      bson_t empty = BSON_INITIALIZER;
      mongoc_collection_insert_one (c, &empty, NULL, NULL, NULL); /* create it */
      mongoc_collection_delete_many (c, &empty, NULL, NULL, NULL);
      mongoc_collection_destroy (c);
   }

   /* A short watch gives the starting point, so no write can be missed. */
   opts.timeout_ms = 300;
   ev.stop_after = 100;
   MH_ASSERT_OK (mongo_helper_watch (writer_coll, &opts, collect_event, &ev, &start, &err), err);
   ck_assert_int_eq (ev.n, 0); /* the writes above came before the stream */
   ck_assert (!bson_empty (&start));

   ck_assert_int_eq (pthread_create (&t, NULL, change_writer, NULL), 0);
   memset (&ev, 0, sizeof ev);
   ev.stop_after = 3;
   opts.resume_after = &start;
   opts.full_document_update_lookup = true;
   opts.timeout_ms = 20000;
   MH_ASSERT_OK (mongo_helper_watch (writer_coll, &opts, collect_event, &ev, &token, &err), err);
   pthread_join (t, &wrote);
   ck_assert_msg ((intptr_t) wrote == 1, "the writer thread failed");
   ck_assert_int_eq (ev.n, 3);
   ck_assert_str_eq (ev.types[0], "insert");
   ck_assert_int_eq (ev.values[0], 10);
   ck_assert_str_eq (ev.types[1], "insert");
   ck_assert_int_eq (ev.values[1], 20);
   ck_assert_str_eq (ev.types[2], "update");
   ck_assert_int_eq (ev.values[2], 11);
   ck_assert (ev.full_doc_on_update);

   /* Resuming from the token after the first insert replays the rest. */
   {
      mongo_helper_watch_opts_t o2 = {0};
      events_t first = {0};

      first.stop_after = 1;
      o2.resume_after = &start;
      o2.timeout_ms = 20000;
      MH_ASSERT_OK (mongo_helper_watch (writer_coll, &o2, collect_event, &first, &token2, &err),
                    err);
      ck_assert_int_eq (first.n, 1);
      again.stop_after = 2;
      o2.resume_after = &token2;
      o2.full_document_update_lookup = true;
      MH_ASSERT_OK (mongo_helper_watch (writer_coll, &o2, collect_event, &again, NULL, &err), err);
      ck_assert_int_eq (again.n, 2);
      ck_assert_str_eq (again.types[0], "insert");
      ck_assert_int_eq (again.values[0], 20);
      ck_assert_str_eq (again.types[1], "update");
      bson_destroy (&token2);
   }

   /* With nothing happening, the timeout ends the watch successfully. */
   memset (&ev, 0, sizeof ev);
   ev.stop_after = 100;
   opts.resume_after = &token;
   opts.timeout_ms = 500;
   MH_ASSERT_OK (mongo_helper_watch (writer_coll, &opts, collect_event, &ev, NULL, &err), err);
   ck_assert_int_eq (ev.n, 0);

   bson_destroy (&start);
   bson_destroy (&token);
}
END_TEST

/* ---- Concurrent operations ------------------------------------------ */

static const char *
result_utf8 (const mongo_helper_op_result_t *r, const char *path)
{
   return utf8_at (&r->result, path);
}

static int64_t
result_int (const mongo_helper_op_result_t *r, const char *path)
{
   bson_iter_t it, f;

   ck_assert_msg (bson_iter_init (&it, &r->result) && bson_iter_find_descendant (&it, path, &f) &&
                     BSON_ITER_HOLDS_NUMBER (&f),
                  "no number at %s",
                  path);
   return bson_iter_as_int64 (&f);
}

START_TEST (run_concurrent_returns_each_result_in_order_with_its_own_error)
{
   const char *name = mh_test_collection ("conc");
   char coll_name[96];
   mongoc_collection_t *coll;
   bson_t *f_a, *f_i3, *f_lt10, *f_i1, *set_x, *f_i200, *set_d, *doc_new, *dup, *pipe, *f_del,
      *ping;
   mongo_helper_op_result_t res[13];
   bson_iter_t it;

   bson_strncpy (coll_name, name, sizeof coll_name);
   coll = collection (coll_name);
   for (int i = 0; i < 10; i++) {
      bson_t *d = BCON_NEW (
         "_id", BCON_INT32 (i), "i", BCON_INT32 (i), "dept", BCON_UTF8 (i < 5 ? "a" : "b"));
      ck_assert (mongoc_collection_insert_one (coll, d, NULL, NULL, NULL));
      bson_destroy (d);
   }
   {
      bson_t *d = BCON_NEW ("_id", BCON_INT32 (100), "tag", BCON_UTF8 ("del"));
      ck_assert (mongoc_collection_insert_one (coll, d, NULL, NULL, NULL));
      bson_destroy (d);
   }
   mongoc_collection_destroy (coll);

   f_a = BCON_NEW ("dept", BCON_UTF8 ("a"));
   f_i3 = BCON_NEW ("i", BCON_INT32 (3));
   f_lt10 = BCON_NEW ("i", "{", "$lt", BCON_INT32 (10), "}");
   f_i1 = BCON_NEW ("i", BCON_INT32 (1));
   set_x = BCON_NEW ("$set", "{", "x", BCON_INT32 (1), "}");
   f_i200 = BCON_NEW ("i", BCON_INT32 (200));
   set_d = BCON_NEW ("$set", "{", "dept", BCON_UTF8 ("d"), "}");
   doc_new = BCON_NEW ("i", BCON_INT32 (300), "dept", BCON_UTF8 ("e"));
   dup = BCON_NEW ("_id", BCON_INT32 (4), "i", BCON_INT32 (4));
   pipe = BCON_NEW ("pipeline",
                    "[",
                    "{",
                    "$match",
                    "{",
                    "dept",
                    BCON_UTF8 ("b"),
                    "}",
                    "}",
                    "{",
                    "$sort",
                    "{",
                    "i",
                    BCON_INT32 (1),
                    "}",
                    "}",
                    "]");
   f_del = BCON_NEW ("tag", BCON_UTF8 ("del"));
   ping = BCON_NEW ("ping", BCON_INT32 (1));
   {
      const mongo_helper_op_t ops[13] = {
         {.type = MONGO_HELPER_OP_COUNT, .collection = coll_name, .filter = f_a},
         {.type = MONGO_HELPER_OP_FIND_ONE, .collection = coll_name, .filter = f_i3},
         {.type = MONGO_HELPER_OP_DISTINCT,
          .collection = coll_name,
          .field = "dept",
          .filter = f_lt10},
         {.type = MONGO_HELPER_OP_INSERT_ONE, .collection = coll_name, .document = doc_new},
         {.type = MONGO_HELPER_OP_UPDATE_ONE,
          .collection = coll_name,
          .filter = f_i1,
          .document = set_x},
         {.type = MONGO_HELPER_OP_UPDATE_MANY,
          .collection = coll_name,
          .filter = f_i200,
          .document = set_d,
          .upsert = true},
         {.type = MONGO_HELPER_OP_AGGREGATE, .collection = coll_name, .pipeline = pipe},
         {.type = MONGO_HELPER_OP_DELETE_ONE, .collection = coll_name, .filter = f_del},
         {.type = MONGO_HELPER_OP_INSERT_ONE, .collection = coll_name, .document = dup},
         {.type = MONGO_HELPER_OP_DISTINCT,
          .collection = "no_such_collection_here",
          .field = "dept"},
         {.type = MONGO_HELPER_OP_COMMAND, .document = ping},
         {.type = MONGO_HELPER_OP_DISTINCT, .collection = coll_name}, /* no field */
         {.type = MONGO_HELPER_OP_FIND_ONE,
          .collection = coll_name,
          .filter = f_i200 /* before upsert? either */},
      };

      ck_assert (!mongo_helper_run_concurrent (ops, 13, 4, res, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
      ck_assert_ptr_nonnull (strstr (err.message, "2 of 13 operations failed"));
   }

   for (int i = 0; i < 13; i++) {
      if (i != 8 && i != 11) {
         ck_assert_msg (res[i].error.category == MONGO_HELPER_ERROR_NONE,
                        "op %d failed: %s",
                        i,
                        res[i].error.message);
      }
      ck_assert_int_ge (res[i].concurrent, 1);
      ck_assert_int_le (res[i].concurrent, 4);
   }
   ck_assert_int_eq (result_int (&res[0], "count"), 5);
   ck_assert_int_eq (result_int (&res[1], "document.i"), 3);
   {
      /* distinct does not promise an order */
      const char *v0 = result_utf8 (&res[2], "values.0");
      const char *v1 = result_utf8 (&res[2], "values.1");
      ck_assert_msg ((!strcmp (v0, "a") && !strcmp (v1, "b")) ||
                        (!strcmp (v0, "b") && !strcmp (v1, "a")),
                     "distinct gave %s, %s",
                     v0,
                     v1);
   }
   ck_assert (bson_iter_init (&it, &res[2].result) &&
              !bson_iter_find_descendant (&it, "values.2", &it));
   ck_assert (bson_iter_init_find (&it, &res[3].result, "insertedId"));
   ck_assert (BSON_ITER_HOLDS_OID (&it));
   ck_assert_int_eq (result_int (&res[3], "insertedCount"), 1);
   ck_assert_int_eq (result_int (&res[4], "matchedCount"), 1);
   ck_assert_int_eq (result_int (&res[4], "modifiedCount"), 1);
   ck_assert_int_eq (result_int (&res[5], "upsertedCount"), 1);
   ck_assert_int_eq (result_int (&res[6], "documents.0.i"), 5);
   ck_assert_int_eq (result_int (&res[6], "documents.4.i"), 9);
   ck_assert (bson_iter_init (&it, &res[6].result) &&
              !bson_iter_find_descendant (&it, "documents.5", &it));
   ck_assert_int_eq (result_int (&res[7], "deletedCount"), 1);
   ck_assert_int_eq (res[8].error.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_int_eq (res[8].error.code, 11000);
   ck_assert (bson_empty (&res[8].result));
   ck_assert (bson_iter_init_find (&it, &res[9].result, "values"));
   ck_assert (bson_iter_init (&it, &res[9].result) &&
              !bson_iter_find_descendant (&it, "values.0", &it));
   ck_assert_int_eq (result_int (&res[10], "ok"), 1);
   ck_assert_int_eq (res[11].error.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_ptr_nonnull (strstr (res[11].error.message, "operation 11"));
   mongo_helper_op_results_cleanup (res, 13);

   /* Read the writes back. */
   ck_assert_int_eq (count_docs (coll_name, NULL), 11 + 1 + 1 - 1);
   {
      bson_t *x1 = BCON_NEW ("i", BCON_INT32 (1), "x", BCON_INT32 (1));
      bson_t *d = BCON_NEW ("dept", BCON_UTF8 ("d"));
      ck_assert_int_eq (count_docs (coll_name, x1), 1);
      ck_assert_int_eq (count_docs (coll_name, d), 1);
      ck_assert_int_eq (count_docs (coll_name, doc_new), 1);
      ck_assert_int_eq (count_docs (coll_name, f_del), 0);
      bson_destroy (x1);
      bson_destroy (d);
   }
   bson_destroy (f_a);
   bson_destroy (f_i3);
   bson_destroy (f_lt10);
   bson_destroy (f_i1);
   bson_destroy (set_x);
   bson_destroy (f_i200);
   bson_destroy (set_d);
   bson_destroy (doc_new);
   bson_destroy (dup);
   bson_destroy (pipe);
   bson_destroy (f_del);
   bson_destroy (ping);
}
END_TEST

#define SLEEPERS 9
#define K 3

START_TEST (run_concurrent_never_runs_more_than_k_at_once)
{
   mongo_helper_op_t ops[SLEEPERS];
   mongo_helper_op_result_t res[SLEEPERS];
   bson_t *sleep_cmd = BCON_NEW ("sleep", BCON_INT32 (1), "millis", BCON_INT32 (300));
   const char *name = mh_test_collection ("k");
   int peak = 0;

   memset (ops, 0, sizeof ops);
   for (int i = 0; i < SLEEPERS; i++) {
      if (on_mock ()) {
         /* The test server's `sleep` holds each operation for 300 ms. */
         ops[i].type = MONGO_HELPER_OP_COMMAND;
         ops[i].document = sleep_cmd;
      } else {
         ops[i].type = MONGO_HELPER_OP_COUNT;
         ops[i].collection = name;
      }
   }
   MH_ASSERT_OK (mongo_helper_run_concurrent (ops, SLEEPERS, K, res, &err), err);
   for (int i = 0; i < SLEEPERS; i++) {
      MH_ASSERT_OK (res[i].error.category == MONGO_HELPER_ERROR_NONE, res[i].error);
      ck_assert_int_le (res[i].concurrent, K);
      if (res[i].concurrent > peak) {
         peak = res[i].concurrent;
      }
   }
   if (on_mock ()) {
      /* Nine 300 ms operations on three workers do overlap. */
      ck_assert_int_ge (peak, 2);
   }
   mongo_helper_op_results_cleanup (res, SLEEPERS);

   /* K larger than the list: one worker per operation. */
   /* An oversized document fails its own operation only. */
   {
      size_t big = 16u * 1024u * 1024u + 10u;
      uint8_t *blob = calloc (1, big);
      bson_t *huge = bson_new ();

      ck_assert_ptr_nonnull (blob);
      ck_assert (bson_append_binary (huge, "blob", -1, BSON_SUBTYPE_BINARY, blob, (uint32_t) big));
      ops[SLEEPERS - 1].type = MONGO_HELPER_OP_INSERT_ONE;
      ops[SLEEPERS - 1].collection = name;
      ops[SLEEPERS - 1].document = huge;
      ck_assert (!mongo_helper_run_concurrent (ops + SLEEPERS - 2, 2, 2, res, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_int_eq (res[0].error.category, MONGO_HELPER_ERROR_NONE);
      ck_assert_int_eq (res[1].error.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
      ck_assert_ptr_nonnull (strstr (res[1].error.message, "16 MiB"));
      mongo_helper_op_results_cleanup (res, 2);
      ck_assert_int_eq (count_docs (name, NULL), 0);
      bson_destroy (huge);
      free (blob);
   }

   MH_ASSERT_OK (mongo_helper_run_concurrent (ops, 2, 64, res, &err), err);
   ck_assert_int_le (res[0].concurrent, 2);
   ck_assert_int_le (res[1].concurrent, 2);
   mongo_helper_op_results_cleanup (res, 2);
   bson_destroy (sleep_cmd);
}
END_TEST

/* ---- Statistics and metadata ---------------------------------------- */

START_TEST (stats_report_the_documents_and_indexes_inserted)
{
   const char *name = mh_test_collection ("stats");
   char coll_name[96], other_db[64];
   mongoc_collection_t *coll;
   mongo_helper_coll_stats_t cs;
   mongo_helper_db_stats_t ds;
   mongo_helper_server_status_t ss;
   bson_t reply, sizes;
   bson_t *create_index;
   mongo_helper_conn_t *conn;
   bson_error_t e;
   bson_iter_t it;
   char **names;
   bool seen = false;

   bson_strncpy (coll_name, name, sizeof coll_name);
   coll = collection (coll_name);
   for (int i = 0; i < 7; i++) {
      bson_t *d = BCON_NEW ("k", BCON_INT32 (i), "pad", BCON_UTF8 ("0123456789"));
      ck_assert (mongoc_collection_insert_one (coll, d, NULL, NULL, &e));
      bson_destroy (d);
   }
   create_index = BCON_NEW ("createIndexes",
                            BCON_UTF8 (coll_name),
                            "indexes",
                            "[",
                            "{",
                            "key",
                            "{",
                            "k",
                            BCON_INT32 (1),
                            "}",
                            "name",
                            BCON_UTF8 ("k_1"),
                            "}",
                            "]");
   MH_ASSERT_OK (mongo_helper_command (create_index, NULL, &err), err);
   bson_destroy (create_index);

   MH_ASSERT_OK (mongo_helper_collection_stats (NULL, coll_name, &cs, &reply, &err), err);
   ck_assert_int_eq (cs.count, 7);
   ck_assert_int_eq (cs.nindexes, 2);
   ck_assert_int_gt (cs.size, 7 * 20);
   ck_assert_int_eq (cs.avg_obj_size, cs.size / 7);
   ck_assert_int_gt (cs.total_index_size, 0);
   {
      char ns[260];
      mongo_helper_status_t st;

      mongo_helper_status (&st);
      snprintf (ns, sizeof ns, "%s.%s", st.database, coll_name);
      ck_assert_str_eq (utf8_at (&reply, "ns"), ns);
   }
   bson_destroy (&reply);

   MH_ASSERT_OK (mongo_helper_index_sizes (NULL, coll_name, &sizes, &err), err);
   ck_assert (bson_iter_init_find (&it, &sizes, "_id_"));
   ck_assert_int_gt (bson_iter_int64 (&it), 0);
   ck_assert (bson_iter_init_find (&it, &sizes, "k_1"));
   ck_assert_int_gt (bson_iter_int64 (&it), 0);
   ck_assert_uint_eq (bson_count_keys (&sizes), 2);
   bson_destroy (&sizes);

   names = mongo_helper_collection_names (NULL, &err);
   MH_ASSERT_OK (names != NULL, err);
   for (char **n = names; *n; n++) {
      seen = seen || strcmp (*n, coll_name) == 0;
   }
   ck_assert_msg (seen, "%s not among the collection names", coll_name);
   bson_strfreev (names);

   MH_ASSERT_OK (mongo_helper_db_stats (NULL, &ds, NULL, &err), err);
   ck_assert_int_ge (ds.objects, 7);
   ck_assert_int_ge (ds.collections, 1);
   ck_assert_int_ge (ds.indexes, 2);
   ck_assert_int_gt (ds.data_size, 0);

   /* An explicit database holds exactly what was put there. */
   snprintf (other_db, sizeof other_db, "mh_ops_%ld", (long) getpid ());
   {
      mongoc_collection_t *oc;

      conn = mongo_helper_acquire (&err);
      MH_ASSERT_OK (conn != NULL, err);
      oc = mongoc_client_get_collection (mongo_helper_conn_client (conn), other_db, "only");

      for (int i = 0; i < 3; i++) {
         bson_t *d = BCON_NEW ("i", BCON_INT32 (i));
         ck_assert (mongoc_collection_insert_one (oc, d, NULL, NULL, &e));
         bson_destroy (d);
      }
      mongoc_collection_destroy (oc);
   }
   MH_ASSERT_OK (mongo_helper_db_stats (other_db, &ds, &reply, &err), err);
   ck_assert_int_eq (ds.objects, 3);
   ck_assert_int_eq (ds.collections, 1);
   ck_assert_str_eq (utf8_at (&reply, "db"), other_db);
   bson_destroy (&reply);
   names = mongo_helper_collection_names (other_db, &err);
   MH_ASSERT_OK (names != NULL, err);
   ck_assert_str_eq (names[0], "only");
   ck_assert_ptr_null (names[1]);
   bson_strfreev (names);
   MH_ASSERT_OK (mongo_helper_collection_stats (other_db, "only", &cs, NULL, &err), err);
   ck_assert_int_eq (cs.count, 3);
   {
      mongoc_database_t *od =
         mongoc_client_get_database (mongo_helper_conn_client (conn), other_db);
      mongoc_database_drop (od, NULL);
      mongoc_database_destroy (od);
      mongo_helper_release (conn);
   }

   /* A missing collection is NOT_FOUND. */
   ASSERT_FAILS_WITH (mongo_helper_collection_stats (NULL, "no_such_coll_at_all", &cs, NULL, &err),
                      MONGO_HELPER_ERROR_NOT_FOUND);
   ck_assert_int_eq (err.code, 26);

   MH_ASSERT_OK (mongo_helper_server_status (&ss, NULL, &err), err);
   ck_assert_msg (strlen (ss.version) >= 3, "version '%s'", ss.version);
   ck_assert_int_ge (ss.uptime_s, 0);
   ck_assert_int_ge (ss.connections_current, 1);
   ck_assert_int_gt (ss.connections_available, 0);
   ck_assert_int_ge (ss.connections_total_created, ss.connections_current);
   ck_assert (ss.host[0] != '\0');

   mongoc_collection_drop (coll, NULL);
   mongoc_collection_destroy (coll);
}
END_TEST

Suite *
ops_suite (void)
{
   Suite *s = suite_create ("ops");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_test (core, gridfs_rejects_bad_input_without_touching_the_server);
   tcase_add_test (core, watch_rejects_bad_input_without_touching_the_server);
   tcase_add_test (core, run_concurrent_rejects_zero_k_empty_list_and_null_results);
   tcase_add_test (core, stats_reject_null_and_empty_names);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, setup, teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, gridfs_put_from_memory_is_found_read_back_and_deleted);
   tcase_add_test (live, gridfs_empty_file_round_trips_as_empty_string);
   tcase_add_test (live, gridfs_file_over_16mb_round_trips_byte_for_byte);
   tcase_add_test (live, gridfs_file_stream_and_callbacks_use_the_named_bucket_and_chunk_size);
   tcase_add_test (live, gridfs_aborted_callbacks_fail_and_leave_no_chunks);
   tcase_add_test (live, watch_sends_change_stream_aggregate_and_reports_standalone_error);
   tcase_add_test (live, watch_delivers_events_in_order_with_update_lookup_and_resumes);
   tcase_add_test (live, run_concurrent_returns_each_result_in_order_with_its_own_error);
   tcase_add_test (live, run_concurrent_never_runs_more_than_k_at_once);
   tcase_add_test (live, stats_report_the_documents_and_indexes_inserted);
   suite_add_tcase (s, live);
   return s;
}
