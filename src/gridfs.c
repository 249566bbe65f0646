/*
 * gridfs.c — GridFS: files in and out of MongoDB (layer 8).
 */
#include "mh_private.h"

/* ---- GridFS ---- */

typedef enum {
   MH_GFS_PUT_READER, /* open_upload_stream + the read callback or memory */
   MH_GFS_PUT_STREAM, /* libmongoc's upload_from_stream */
   MH_GFS_GET,        /* open_download_stream + the write callback */
   MH_GFS_FIND,
   MH_GFS_DELETE
} mh_gfs_kind_t;

/* A file held in memory: uploaded from, or
 * downloaded into (cap: its allocation, one byte kept for a NUL). */
typedef struct {
   const uint8_t *data;
   size_t len;
} mh_gfs_mem_t;

typedef struct {
   uint8_t *data;
   size_t len, cap;
} mh_gfs_buf_t;

typedef struct {
   mh_gfs_kind_t kind;
   const mongo_helper_gridfs_opts_t *opts;
   const char *filename;
   const bson_t *upload_opts;   /* {metadata: ...} */
   mongoc_stream_t *stream;     /* PUT_STREAM source */
   mongo_helper_read_fn read;   /* PUT_READER */
   mongo_helper_write_fn write; /* GET */
   void *user_data;
   void (*restart) (void *user_data); /* rewinds a library-owned callback */
   const bson_value_t *file_id_in;    /* GET, DELETE */
   bson_value_t file_id;              /* PUT: the new id */
   bool have_id;
   bson_t *files; /* FIND */
   size_t count;
   bool capped;           /* GET into memory, FIND: at most max_result_bytes */
   mh_gfs_mem_t *mem_in;  /* PUT from memory: written straight from it */
   mh_gfs_buf_t *mem_out; /* GET into memory: read straight into it */
   bool not_found;
   bool aborted; /* a caller callback asked to stop */
} mh_gfs_ctx_t;

static bool
mh_gfs_check_opts (mongo_helper_error_t *error,
                   const char *fn,
                   const mongo_helper_gridfs_opts_t *opts)
{
   if (!opts) {
      return true;
   }
   if (!mh_check_db_name (fn, opts->database, error)) {
      return false;
   }
   if (opts->bucket &&
       (!*opts->bucket || strchr (opts->bucket, '$') || strlen (opts->bucket) > 200)) {
      return mh_bad_arg (error,
                         fn,
                         "the bucket name is empty or invalid: pass NULL "
                         "for \"fs\" or a plain name");
   }
   if (opts->chunk_size < 0 || opts->chunk_size > MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: chunk_size %d is out of range (0 for the default, "
                      "else 1 byte to 15 MiB, MONGO_HELPER_MAX_GRIDFS_CHUNK_SIZE, so a "
                      "chunk fits a document)",
                      fn,
                      (int) opts->chunk_size);
   }
   return true;
}

static void
mh_gfs_note_error (mh_gfs_ctx_t *c, const bson_error_t *berr)
{
   if (berr->domain == MONGOC_ERROR_GRIDFS &&
       berr->code == MONGOC_ERROR_GRIDFS_BUCKET_FILE_NOT_FOUND) {
      c->not_found = true;
   }
}

/* Size of the pieces moved through the callbacks: one default chunk. */
#define MH_GFS_IO_SIZE (255 * 1024)

/* The caller's bytes as they are: libmongoc cuts them into chunks, so no
 * copy of ours comes in between. */
static bool
mh_gfs_write_memory (mongoc_stream_t *st, const mh_gfs_mem_t *m, bson_error_t *berr)
{
   if (m->len && mongoc_stream_write (st, (void *) m->data, m->len, 0) != (ssize_t) m->len) {
      mongoc_gridfs_bucket_stream_error (st, berr);
      return false;
   }
   return true;
}

/* Pieces of at most MH_GFS_IO_SIZE bytes from the caller's read callback
 * until it says 0. */
static bool
mh_gfs_write_from_reader (mongoc_stream_t *st, mh_gfs_ctx_t *c, bson_error_t *berr)
{
   uint8_t *buf = bson_malloc (MH_GFS_IO_SIZE);
   bool ok = true;

   for (;;) {
      int64_t n = c->read (buf, MH_GFS_IO_SIZE, c->user_data);

      if (n == 0) {
         break;
      }
      if (n < 0 || n > MH_GFS_IO_SIZE) {
         c->aborted = true;
         bson_set_error (berr,
                         MONGOC_ERROR_GRIDFS,
                         MONGOC_ERROR_GRIDFS_BUCKET_STREAM,
                         "the read callback returned %" PRId64 " (expected 0..%d); upload aborted",
                         n,
                         MH_GFS_IO_SIZE);
         ok = false;
         break;
      }
      if (mongoc_stream_write (st, buf, (size_t) n, 0) != (ssize_t) n) {
         mongoc_gridfs_bucket_stream_error (st, berr);
         ok = false;
         break;
      }
   }
   bson_free (buf);
   return ok;
}

static bool
mh_gfs_op (mh_attempt_t *a, void *ctx)
{
   mh_gfs_ctx_t *c = ctx;
   const mongo_helper_gridfs_opts_t *o = c->opts;
   mongoc_gridfs_bucket_t *bucket;
   mongoc_stream_t *st = NULL;
   mongoc_cursor_t *cur;
   bson_t bopts = BSON_INITIALIZER;
   uint8_t *buf = NULL;
   const size_t max_bytes = c->capped ? mh_limit_result_bytes (a->config) : 0;
   size_t got = 0;
   bool ok = false;

   /* The path may run us again: start from a clean slate. */
   if (c->have_id) {
      bson_value_destroy (&c->file_id);
      c->have_id = false;
   }
   c->not_found = c->aborted = false;
   if (c->restart) {
      c->restart (c->user_data);
   }
   if (o && o->bucket) {
      BSON_APPEND_UTF8 (&bopts, "bucketName", o->bucket);
   }
   if (o && o->chunk_size > 0) {
      BSON_APPEND_INT32 (&bopts, "chunkSizeBytes", o->chunk_size);
   }
   bucket = mongoc_gridfs_bucket_new (a->db, &bopts, NULL, &a->error);
   bson_destroy (&bopts);
   if (!bucket) {
      return false;
   }

   switch (c->kind) {
   case MH_GFS_PUT_STREAM:
      ok = mongoc_gridfs_bucket_upload_from_stream (
         bucket, c->filename, c->stream, c->upload_opts, &c->file_id, &a->error);
      c->have_id = ok;
      break;

   case MH_GFS_PUT_READER:
      st = mongoc_gridfs_bucket_open_upload_stream (
         bucket, c->filename, c->upload_opts, &c->file_id, &a->error);
      if (!st) {
         break;
      }
      c->have_id = true;
      ok = c->mem_in ? mh_gfs_write_memory (st, c->mem_in, &a->error)
                     : mh_gfs_write_from_reader (st, c, &a->error);
      /* Close writes the last chunk and the files document; an upload
       * that failed is aborted instead, which deletes its chunks. */
      if (ok && mongoc_stream_close (st) != 0) {
         mongoc_gridfs_bucket_stream_error (st, &a->error);
         ok = false;
      }
      if (!ok) {
         mongoc_gridfs_bucket_abort_upload (st);
      }
      mongoc_stream_destroy (st);
      if (!ok) {
         bson_value_destroy (&c->file_id);
         c->have_id = false;
      }
      break;

   case MH_GFS_GET:
      st = mongoc_gridfs_bucket_open_download_stream (bucket, c->file_id_in, &a->error);
      if (!st) {
         mh_gfs_note_error (c, &a->error);
         break;
      }
      if (!c->mem_out) {
         buf = bson_malloc (MH_GFS_IO_SIZE);
      }
      ok = true;
      for (;;) {
         mh_gfs_buf_t *b = c->mem_out;
         ssize_t n;

         if (b) {
            /* Into memory: read straight into the growing buffer. */
            if (b->cap - b->len < MH_GFS_IO_SIZE + 1) {
               b->cap = b->cap ? 2 * b->cap : 1024 * 1024;
               b->data = bson_realloc (b->data, b->cap);
            }
            n = mongoc_stream_read (st, b->data + b->len, b->cap - b->len - 1, 1, 0);
         } else {
            n = mongoc_stream_read (st, buf, MH_GFS_IO_SIZE, 1, 0);
         }

         if (n == 0) {
            break;
         }
         if (n < 0) {
            if (!mongoc_gridfs_bucket_stream_error (st, &a->error)) {
               bson_set_error (&a->error,
                               MONGOC_ERROR_GRIDFS,
                               MONGOC_ERROR_GRIDFS_BUCKET_STREAM,
                               "reading the file failed");
            }
            ok = false;
            break;
         }
         got += (size_t) n;
         if (max_bytes && got > max_bytes) {
            ok = mh_result_too_big (&a->error,
                                    max_bytes,
                                    "read the file with mongo_helper_gridfs_get_writer(), "
                                    "_get_file() or _get_stream()");
            break;
         }
         if (b) {
            b->len += (size_t) n;
         } else if (!c->write (buf, (size_t) n, c->user_data)) {
            c->aborted = true;
            bson_set_error (&a->error,
                            MONGOC_ERROR_GRIDFS,
                            MONGOC_ERROR_GRIDFS_BUCKET_STREAM,
                            "download aborted by the write callback");
            ok = false;
            break;
         }
      }
      mongoc_stream_destroy (st);
      break;

   case MH_GFS_FIND: {
      bson_t filter = BSON_INITIALIZER;
      bson_t *fopts = BCON_NEW ("sort", "{", "uploadDate", BCON_INT32 (1), "}");
      const bson_t *doc;
      char key[16];
      const char *k;

      if (c->filename) {
         BSON_APPEND_UTF8 (&filter, "filename", c->filename);
      }
      cur = mongoc_gridfs_bucket_find (bucket, &filter, fopts);
      while (mongoc_cursor_next (cur, &doc)) {
         if (max_bytes && (size_t) c->files->len + doc->len > max_bytes) {
            bson_reinit (c->files);
            c->count = 0;
            mongoc_cursor_destroy (cur);
            cur = NULL;
            ok = mh_result_too_big (
               &a->error, max_bytes, "name the file to find instead of listing the bucket");
            break;
         }
         bson_uint32_to_string ((uint32_t) c->count, &k, key, sizeof key);
         BSON_APPEND_DOCUMENT (c->files, k, doc);
         c->count++;
      }
      if (cur) {
         ok = !mongoc_cursor_error (cur, &a->error);
         mongoc_cursor_destroy (cur);
      }
      bson_destroy (fopts);
      bson_destroy (&filter);
      break;
   }

   case MH_GFS_DELETE:
      ok = mongoc_gridfs_bucket_delete_by_id (bucket, c->file_id_in, &a->error);
      if (!ok) {
         mh_gfs_note_error (c, &a->error);
      }
      break;
   }

   bson_free (buf);
   mongoc_gridfs_bucket_destroy (bucket);
   return ok;
}

/* Runs a GridFS operation and refines the category of its error. */
static bool
mh_gfs_run (mh_opid_t op,
            unsigned flags,
            const char *detail,
            mh_gfs_ctx_t *c,
            mongo_helper_error_t *error)
{
   const mh_call_t call = {op, flags, c->opts ? c->opts->database : NULL, NULL, detail};

   if (mh_run (&call, mh_gfs_op, c, error)) {
      return true;
   }
   if (c->not_found) {
      mh_recategorize (error, MONGO_HELPER_ERROR_NOT_FOUND);
   } else if (c->aborted) {
      mh_recategorize (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   }
   return false;
}

/* {metadata: caller's metadata with contentType set}, or empty. */
static void
mh_gfs_upload_opts (bson_t *out, const char *content_type, const bson_t *metadata)
{
   bson_t meta;

   bson_init (out);
   if (!content_type && !metadata) {
      return;
   }
   BSON_APPEND_DOCUMENT_BEGIN (out, "metadata", &meta);
   if (metadata) {
      if (content_type) {
         bson_copy_to_excluding_noinit (metadata, &meta, "contentType", NULL);
      } else {
         bson_concat (&meta, metadata);
      }
   }
   if (content_type) {
      BSON_APPEND_UTF8 (&meta, "contentType", content_type);
   }
   bson_append_document_end (out, &meta);
}

static bool
mh_gfs_check_put (mongo_helper_error_t *error,
                  const char *fn,
                  const mongo_helper_gridfs_opts_t *opts,
                  const char *filename,
                  const bson_t *metadata)
{
   if (!mh_gfs_check_opts (error, fn, opts)) {
      return false;
   }
   if (!filename || !*filename) {
      return mh_bad_arg (error, fn, "the filename is NULL or empty: pass a name");
   }
   /* The files document that carries it is validated by libmongoc, which
    * recurses. */
   return !metadata || mh_doc_check (fn, "metadata", metadata, error);
}

static bool
mh_gfs_put_common (mh_gfs_ctx_t *c,
                   const char *content_type,
                   const bson_t *metadata,
                   bson_value_t *file_id,
                   mongo_helper_error_t *error)
{
   bson_t uopts;
   bool ok;

   mh_gfs_upload_opts (&uopts, content_type, metadata);
   c->upload_opts = &uopts;
   ok = mh_gfs_run (MH_OPID_GRIDFS_PUT, MH_OP_WRITE, c->filename, c, error);
   bson_destroy (&uopts);
   if (ok && file_id) {
      *file_id = c->file_id; /* ownership moves to the caller */
   } else if (c->have_id) {
      bson_value_destroy (&c->file_id);
   }
   return ok;
}

bool
mongo_helper_gridfs_put (const mongo_helper_gridfs_opts_t *opts,
                         const char *filename,
                         const void *data,
                         size_t len,
                         const char *content_type,
                         const bson_t *metadata,
                         bson_value_t *file_id,
                         mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put";
   mh_gfs_ctx_t c = {0};
   mh_gfs_mem_t m = {data, len};

   mh_error_clear (error);
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   if (!data && len > 0) {
      return mh_bad_arg (error, fn, "data is NULL but len is not 0");
   }
   c.kind = MH_GFS_PUT_READER;
   c.opts = opts;
   c.filename = filename;
   c.mem_in = &m;
   return mh_gfs_put_common (&c, content_type, metadata, file_id, error);
}

bool
mongo_helper_gridfs_put_reader (const mongo_helper_gridfs_opts_t *opts,
                                const char *filename,
                                mongo_helper_read_fn read,
                                void *user_data,
                                const char *content_type,
                                const bson_t *metadata,
                                bson_value_t *file_id,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put_reader";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   if (!read) {
      return mh_bad_arg (error, fn, "the read callback is NULL");
   }
   c.kind = MH_GFS_PUT_READER;
   c.opts = opts;
   c.filename = filename;
   c.read = read;
   c.user_data = user_data;
   return mh_gfs_put_common (&c, content_type, metadata, file_id, error);
}

bool
mongo_helper_gridfs_put_stream (const mongo_helper_gridfs_opts_t *opts,
                                const char *filename,
                                mongoc_stream_t *source,
                                const char *content_type,
                                const bson_t *metadata,
                                bson_value_t *file_id,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put_stream";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   if (!source) {
      return mh_bad_arg (error, fn, "the source stream is NULL");
   }
   c.kind = MH_GFS_PUT_STREAM;
   c.opts = opts;
   c.filename = filename;
   c.stream = source;
   return mh_gfs_put_common (&c, content_type, metadata, file_id, error);
}

bool
mongo_helper_gridfs_put_file (const mongo_helper_gridfs_opts_t *opts,
                              const char *filename,
                              const char *path,
                              const char *content_type,
                              const bson_t *metadata,
                              bson_value_t *file_id,
                              mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_put_file";
   mongoc_stream_t *src;
   const char *base;
   bool ok;

   mh_error_clear (error);
   if (!path || !*path) {
      return mh_bad_arg (error, fn, "the path is NULL or empty");
   }
   base = strrchr (path, '/');
   base = base ? base + 1 : path;
   if (!filename) {
      filename = base;
   }
   if (!mh_gfs_check_put (error, fn, opts, filename, metadata)) {
      return false;
   }
   src = mongoc_stream_file_new_for_path (path, O_RDONLY, 0);
   if (!src) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      errno,
                      "%s: cannot open '%.300s' for reading (%s)",
                      fn,
                      path,
                      strerror (errno));
   }
   ok =
      mongo_helper_gridfs_put_stream (opts, filename, src, content_type, metadata, file_id, error);
   mongoc_stream_destroy (src);
   return ok;
}

static bool
mh_gfs_check_id (mongo_helper_error_t *error,
                 const char *fn,
                 const mongo_helper_gridfs_opts_t *opts,
                 const bson_value_t *file_id)
{
   if (!mh_gfs_check_opts (error, fn, opts)) {
      return false;
   }
   bson_t doc;

   if (!file_id || file_id->value_type == BSON_TYPE_EOD) {
      return mh_bad_arg (error, fn, "file_id is NULL or empty");
   }
   /* An id may be any value, a document too: it goes into the queries. */
   if (file_id->value_type == BSON_TYPE_DOCUMENT || file_id->value_type == BSON_TYPE_ARRAY) {
      if (!bson_init_static (&doc, file_id->value.v_doc.data, file_id->value.v_doc.data_len)) {
         return mh_bad_arg (error, fn, "file_id is not valid BSON (corrupt or truncated)");
      }
      return mh_doc_check (fn, "file_id", &doc, error);
   }
   if (file_id->value_type == BSON_TYPE_CODEWSCOPE) {
      if (!bson_init_static (
             &doc, file_id->value.v_codewscope.scope_data, file_id->value.v_codewscope.scope_len)) {
         return mh_bad_arg (error, fn, "file_id is not valid BSON (corrupt or truncated)");
      }
      return mh_doc_check (fn, "file_id's scope", &doc, error);
   }
   return true;
}

static bool
mh_gfs_get_common (const mongo_helper_gridfs_opts_t *opts,
                   const bson_value_t *file_id,
                   unsigned flags,
                   mongo_helper_write_fn write,
                   void (*restart) (void *),
                   void *user_data,
                   bool capped,
                   mongo_helper_error_t *error)
{
   mh_gfs_ctx_t c = {0};

   c.kind = MH_GFS_GET;
   c.opts = opts;
   c.file_id_in = file_id;
   c.write = write;
   c.restart = restart;
   c.user_data = user_data;
   c.capped = capped; /* into memory: at most max_result_bytes */
   return mh_gfs_run (MH_OPID_GRIDFS_GET, flags, NULL, &c, error);
}

bool
mongo_helper_gridfs_get_writer (const mongo_helper_gridfs_opts_t *opts,
                                const bson_value_t *file_id,
                                mongo_helper_write_fn write,
                                void *user_data,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get_writer";

   mh_error_clear (error);
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   if (!write) {
      return mh_bad_arg (error, fn, "the write callback is NULL");
   }
   return mh_gfs_get_common (opts, file_id, MH_OP_ONCE, write, NULL, user_data, false, error);
}

static void
mh_gfs_buf_restart (void *user_data)
{
   ((mh_gfs_buf_t *) user_data)->len = 0;
}

bool
mongo_helper_gridfs_get (const mongo_helper_gridfs_opts_t *opts,
                         const bson_value_t *file_id,
                         uint8_t **data,
                         size_t *len,
                         mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get";
   mh_gfs_buf_t b = {0};
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (data) {
      *data = NULL;
   }
   if (len) {
      *len = 0;
   }
   if (!data || !len) {
      return mh_bad_arg (error, fn, "data and len must not be NULL");
   }
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   c.kind = MH_GFS_GET;
   c.opts = opts;
   c.file_id_in = file_id;
   c.mem_out = &b;
   /* The buffer restarts if the path repeats the read: safe as MH_OP_READ. */
   c.restart = mh_gfs_buf_restart;
   c.user_data = &b;
   c.capped = true; /* into memory: at most max_result_bytes */
   if (!mh_gfs_run (MH_OPID_GRIDFS_GET, MH_OP_READ, NULL, &c, error)) {
      bson_free (b.data);
      return false;
   }
   if (!b.data) {
      b.data = bson_malloc (1); /* an empty file is an empty string */
   }
   b.data[b.len] = '\0';
   *data = b.data;
   *len = b.len;
   return true;
}

static bool
mh_gfs_file_write (const void *buf, size_t len, void *user_data)
{
   return fwrite (buf, 1, len, (FILE *) user_data) == len;
}

static void
mh_gfs_file_restart (void *user_data)
{
   FILE *f = user_data;

   rewind (f);
   if (ftruncate (fileno (f), 0) != 0) {
      /* a later write error reports it */
   }
}

bool
mongo_helper_gridfs_get_file (const mongo_helper_gridfs_opts_t *opts,
                              const bson_value_t *file_id,
                              const char *path,
                              mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get_file";
   FILE *f;
   bool ok;

   mh_error_clear (error);
   if (!path || !*path) {
      return mh_bad_arg (error, fn, "the path is NULL or empty");
   }
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   f = fopen (path, "wb");
   if (!f) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      errno,
                      "%s: cannot open '%.300s' for writing (%s)",
                      fn,
                      path,
                      strerror (errno));
   }
   ok = mh_gfs_get_common (
      opts, file_id, MH_OP_READ, mh_gfs_file_write, mh_gfs_file_restart, f, false, error);
   if (fclose (f) != 0 && ok) {
      ok = mh_fail (error,
                    MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                    errno,
                    "%s: writing '%.300s' failed (%s)",
                    fn,
                    path,
                    strerror (errno));
   }
   if (!ok) {
      unlink (path); /* never leave a truncated copy behind */
   }
   return ok;
}

static bool
mh_gfs_stream_write (const void *buf, size_t len, void *user_data)
{
   return mongoc_stream_write ((mongoc_stream_t *) user_data, (void *) buf, len, -1) ==
          (ssize_t) len;
}

bool
mongo_helper_gridfs_get_stream (const mongo_helper_gridfs_opts_t *opts,
                                const bson_value_t *file_id,
                                mongoc_stream_t *destination,
                                mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_get_stream";

   mh_error_clear (error);
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   if (!destination) {
      return mh_bad_arg (error, fn, "the destination stream is NULL");
   }
   return mh_gfs_get_common (
      opts, file_id, MH_OP_ONCE, mh_gfs_stream_write, NULL, destination, false, error);
}

static void
mh_gfs_find_restart (void *user_data)
{
   mh_gfs_ctx_t *c = user_data;

   bson_reinit (c->files);
   c->count = 0;
}

bool
mongo_helper_gridfs_find (const mongo_helper_gridfs_opts_t *opts,
                          const char *filename,
                          bson_t *files,
                          size_t *count,
                          mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_find";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (count) {
      *count = 0;
   }
   if (!files) {
      return mh_bad_arg (error, fn, "files is NULL");
   }
   bson_init (files);
   if (!mh_gfs_check_opts (error, fn, opts)) {
      return false;
   }
   if (filename && !*filename) {
      return mh_bad_arg (error, fn, "the filename is empty: pass NULL to list every file");
   }
   c.kind = MH_GFS_FIND;
   c.opts = opts;
   c.filename = filename;
   c.files = files;
   c.capped = true;
   c.restart = mh_gfs_find_restart;
   c.user_data = &c;
   if (!mh_gfs_run (MH_OPID_GRIDFS_FIND, MH_OP_READ, filename, &c, error)) {
      bson_reinit (files);
      return false;
   }
   if (count) {
      *count = c.count;
   }
   return true;
}

bool
mongo_helper_gridfs_delete (const mongo_helper_gridfs_opts_t *opts,
                            const bson_value_t *file_id,
                            mongo_helper_error_t *error)
{
   static const char fn[] = "mongo_helper_gridfs_delete";
   mh_gfs_ctx_t c = {0};

   mh_error_clear (error);
   if (!mh_gfs_check_id (error, fn, opts, file_id)) {
      return false;
   }
   c.kind = MH_GFS_DELETE;
   c.opts = opts;
   c.file_id_in = file_id;
   /* Deleting twice ends in NOT_FOUND, not in damage: safe to repeat. */
   return mh_gfs_run (MH_OPID_GRIDFS_DELETE, MH_OP_WRITE | MH_OP_IDEMPOTENT, NULL, &c, error);
}
