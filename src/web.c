/*
 * web.c — what the web helpers share: ids, hashing, index set-up; the web layer's shared file
 * (layer 9).
 */
#include "mh_private.h"

/* Sessions, caches and user event logs share: their names and sizes, one
 * generic single-collection operation, lazy index set-up, and ids. */

/* base64url without padding (RFC 4648 section 5). */
static void
mh_b64url (const uint8_t *in, size_t n, char *out)
{
   static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
   size_t i, o = 0;

   for (i = 0; i + 2 < n; i += 3) {
      uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
      out[o++] = a[(v >> 18) & 63];
      out[o++] = a[(v >> 12) & 63];
      out[o++] = a[(v >> 6) & 63];
      out[o++] = a[v & 63];
   }
   if (n - i == 1) {
      uint32_t v = (uint32_t) in[i] << 16;
      out[o++] = a[(v >> 18) & 63];
      out[o++] = a[(v >> 12) & 63];
   } else if (n - i == 2) {
      uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
      out[o++] = a[(v >> 18) & 63];
      out[o++] = a[(v >> 12) & 63];
      out[o++] = a[(v >> 6) & 63];
   }
   out[o] = '\0';
}

/* A new random id: 256 bits from the CSPRNG, base64url (43 characters). */
bool
mh_web_id_new (char out[MONGO_HELPER_SESSION_ID_SIZE], mongo_helper_error_t *error)
{
   uint8_t raw[32];

   if (!mh_random_bytes (raw, sizeof raw)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INTERNAL,
                      0,
                      "the operating system's random generator failed "
                      "(OpenSSL RAND_bytes): no id was made");
   }
   mh_b64url (raw, sizeof raw, out);
   return true;
}

/* A collection name the server accepts and that cannot address another
 * namespace ('$' and system. are reserved). */
bool
mh_web_coll_name_ok (const char *name, mongo_helper_error_t *error)
{
   if (!mh_check_coll_name ("collection option", name, error)) {
      return false;
   }
   if (strncmp (name, "system.", 7) == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "collection option: '%.64s' starts with 'system.', "
                      "which MongoDB reserves: choose another name",
                      name);
   }
   return true;
}

bool
mh_web_str_ok (const char *s, const char *what, mongo_helper_error_t *error)
{
   if (!s || !*s || !bson_utf8_validate (s, strlen (s), false)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s must be a non-empty UTF-8 string",
                      what);
   }
   return true;
}

bool
mh_web_size_ok (size_t len, const char *what, mongo_helper_error_t *error)
{
   if (len > MH_MAX_BSON - MH_WEB_ENVELOPE) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s is %zu bytes: more than fits in one 16 MB MongoDB "
                      "document; store it in GridFS or split it",
                      what,
                      len);
   }
   return true;
}

bool
mh_web_doc_ok (const char *fn, const char *label, const bson_t *doc, mongo_helper_error_t *error)
{
   return mh_doc_check (fn, label, doc, error) && mh_web_size_ok (doc->len, label, error);
}

bool
mh_web_duration_ok (int64_t ms, int64_t min, const char *what, mongo_helper_error_t *error)
{
   if (ms < min || ms > MONGO_HELPER_MAX_DURATION_MS) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s is %" PRId64 " ms: it must be within %" PRId64 "..%" PRId64
                      " (MONGO_HELPER_MAX_DURATION_MS, 100 years)",
                      what,
                      ms,
                      min,
                      (int64_t) MONGO_HELPER_MAX_DURATION_MS);
   }
   return true;
}

/* -- The helpers' operations are the document operations of src/ops.c,
 * on the default database, under the helpers' own operation names. */

bool
mh_web_update (const mh_call_t *call,
               mh_update_kind_t kind,
               const bson_t *filter,
               const bson_t *update,
               bool upsert,
               int64_t *addressed,
               mongo_helper_error_t *error)
{
   mongo_helper_update_result_t r;
   bool ok = mh_crud_update (call, kind, filter, update, upsert, &r, error);

   if (addressed) {
      *addressed = ok ? r.matched + r.upserted : 0;
   }
   mongo_helper_update_result_cleanup (&r);
   return ok;
}

/* -- Index set-up shared by the three helpers. */

static bool
mh_web_key_is (const bson_t *key, const mh_web_index_t *w)
{
   bson_iter_t it;
   const char *f[2] = {w->f1, w->f2};
   int d[2] = {w->d1, w->d2};
   int want = w->f2 ? 2 : 1;
   int i = 0;

   if (!bson_iter_init (&it, key)) {
      return false;
   }
   while (bson_iter_next (&it)) {
      if (i >= want || strcmp (bson_iter_key (&it), f[i]) != 0 || !BSON_ITER_HOLDS_NUMBER (&it) ||
          bson_iter_as_int64 (&it) != d[i]) {
         return false;
      }
      i++;
   }
   return i == want;
}

static void
mh_web_append_key (bson_t *dst, const char *field, const mh_web_index_t *w)
{
   bson_t key;

   BSON_APPEND_DOCUMENT_BEGIN (dst, field, &key);
   BSON_APPEND_INT32 (&key, w->f1, w->d1);
   if (w->f2) {
      BSON_APPEND_INT32 (&key, w->f2, w->d2);
   }
   bson_append_document_end (dst, &key);
}

/* Reads the existing indexes first, so an index with the right key but
 * another TTL is changed with collMod (what "index already exists with
 * different options" users had to do by hand), one with the right key but
 * no TTL (or a TTL where none is wanted) is a clear error, and only the
 * missing ones are sent to createIndexes. */
bool
mh_web_ensure_op (mh_attempt_t *a, void *ctx)
{
   mh_web_ensure_t *e = ctx;
   mongoc_database_t *db = a->db;
   bson_error_t *berr = &a->error;
   mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts (a->coll, NULL);
   bool present[8] = {false};
   bson_t cmd = BSON_INITIALIZER;
   bson_t arr;
   const bson_t *doc;
   bson_error_t cerr;
   size_t missing = 0;
   bool ok = true;

   BSON_ASSERT (e->n <= 8);
   while (ok && mongoc_cursor_next (cur, &doc)) {
      bson_iter_t it;
      uint32_t len;
      const uint8_t *data;
      bson_t key;
      const char *name = "";
      bool has_ttl = false;
      int64_t ttl = 0;

      if (!bson_iter_init_find (&it, doc, "key") || !BSON_ITER_HOLDS_DOCUMENT (&it)) {
         continue;
      }
      bson_iter_document (&it, &len, &data);
      if (!bson_init_static (&key, data, len)) {
         continue;
      }
      if (bson_iter_init_find (&it, doc, "name") && BSON_ITER_HOLDS_UTF8 (&it)) {
         name = bson_iter_utf8 (&it, NULL);
      }
      if (bson_iter_init_find (&it, doc, "expireAfterSeconds") && BSON_ITER_HOLDS_NUMBER (&it)) {
         has_ttl = true;
         ttl = bson_iter_as_int64 (&it);
      }
      for (size_t i = 0; ok && i < e->n; i++) {
         const mh_web_index_t *w = &e->ix[i];

         if (!mh_web_key_is (&key, w)) {
            if (strcmp (name, w->name) == 0) {
               ok = mh_berr (berr,
                             86,
                             "index '%s' on %s has another key than the "
                             "library needs: drop it "
                             "(db.%s.dropIndex('%s')) and ensure again",
                             name,
                             e->coll,
                             e->coll,
                             name);
            }
            continue;
         }
         present[i] = true;
         if ((w->ttl_s >= 0) != has_ttl) {
            ok = mh_berr (berr,
                          85,
                          "index '%s' on %s.%s %s expireAfterSeconds: "
                          "drop it (db.%s.dropIndex('%s')) and ensure "
                          "again",
                          name,
                          e->coll,
                          w->f1,
                          has_ttl ? "has an unwanted" : "lacks the needed",
                          e->coll,
                          name);
         } else if (has_ttl && ttl != w->ttl_s) {
            bson_t *mod = BCON_NEW ("collMod",
                                    BCON_UTF8 (e->coll),
                                    "index",
                                    "{",
                                    "name",
                                    BCON_UTF8 (name),
                                    "expireAfterSeconds",
                                    BCON_INT64 (w->ttl_s),
                                    "}");
            ok = mongoc_database_command_simple (db, mod, NULL, NULL, berr);
            bson_destroy (mod);
         }
      }
   }
   if (ok && mongoc_cursor_error (cur, &cerr)) {
      /* 26 NamespaceNotFound: no collection yet, so no indexes. */
      if (cerr.code != 26) {
         *berr = cerr;
         ok = false;
      }
   }
   mongoc_cursor_destroy (cur);
   if (ok) {
      BSON_APPEND_UTF8 (&cmd, "createIndexes", e->coll);
      BSON_APPEND_ARRAY_BEGIN (&cmd, "indexes", &arr);
      for (size_t i = 0; i < e->n; i++) {
         char k[16];
         const char *kk;
         bson_t one;

         if (present[i]) {
            continue;
         }
         bson_uint32_to_string ((uint32_t) missing++, &kk, k, sizeof k);
         BSON_APPEND_DOCUMENT_BEGIN (&arr, kk, &one);
         mh_web_append_key (&one, "key", &e->ix[i]);
         BSON_APPEND_UTF8 (&one, "name", e->ix[i].name);
         if (e->ix[i].ttl_s >= 0) {
            BSON_APPEND_INT64 (&one, "expireAfterSeconds", e->ix[i].ttl_s);
         }
         bson_append_document_end (&arr, &one);
      }
      bson_append_array_end (&cmd, &arr);
      if (missing > 0) {
         ok = mongoc_database_command_simple (db, &cmd, NULL, NULL, berr);
      }
   }
   bson_destroy (&cmd);
   return ok;
}

/* Lazy set-up state of one handle: ensure runs once (under the lock so
 * many first requests send one createIndexes), and again after a failure. */

void
mh_web_setup_init (mh_web_setup_t *s, bool lazy)
{
   s->lazy = lazy;
   atomic_init (&s->done, false);
   pthread_mutex_init (&s->lock, NULL);
   pthread_cond_init (&s->cond, NULL);
   s->state = MH_SETUP_TODO;
   mh_fork_track (&s->lock, &s->cond);
}

void
mh_web_setup_destroy (mh_web_setup_t *s)
{
   mh_fork_untrack (&s->lock);
   pthread_cond_destroy (&s->cond);
   pthread_mutex_destroy (&s->lock);
}

void
mh_web_setup_done (mh_web_setup_t *s)
{
   pthread_mutex_lock (&s->lock);
   s->state = MH_SETUP_DONE;
   atomic_store (&s->done, true);
   pthread_cond_broadcast (&s->cond);
   pthread_mutex_unlock (&s->lock);
}

bool
mh_web_ready (mh_web_setup_t *s, mh_web_ensure_fn fn, void *handle, mongo_helper_error_t *error)
{
   bool ok, waited = false;

   if (!s->lazy || atomic_load (&s->done)) {
      return true;
   }
   pthread_mutex_lock (&s->lock);
   /* One runner at a time (an event log's time-series collection must
    * exist before the first insert creates a plain one).  A runner from
    * before a fork() is a thread this process does not have. */
   while (s->state == MH_SETUP_RUNNING && s->fork_count == mh_fork_count ()) {
      pthread_cond_wait (&s->cond, &s->lock);
      waited = true;
   }
   if (s->state == MH_SETUP_DONE || waited) {
      /* Done, or the run we waited for failed: the request goes ahead and
       * reports the server's own condition instead of queueing retries. */
      pthread_mutex_unlock (&s->lock);
      return true;
   }
   s->state = MH_SETUP_RUNNING;
   s->fork_count = mh_fork_count ();
   pthread_mutex_unlock (&s->lock);

   ok = fn (handle, error); /* sets DONE through mh_web_setup_done() */

   pthread_mutex_lock (&s->lock);
   if (s->state == MH_SETUP_RUNNING) {
      s->state = ok ? MH_SETUP_DONE : MH_SETUP_TODO;
   }
   if (ok) {
      atomic_store (&s->done, true);
   }
   pthread_cond_broadcast (&s->cond);
   pthread_mutex_unlock (&s->lock);
   return ok;
}

void
mh_web_append_date (bson_t *b, const char *key, int64_t ms)
{
   bson_append_date_time (b, key, -1, ms);
}

/* { field: { $gt: now } } */
void
mh_web_append_live (bson_t *b, const char *field, int64_t now)
{
   bson_t gt;

   BSON_APPEND_DOCUMENT_BEGIN (b, field, &gt);
   mh_web_append_date (&gt, "$gt", now);
   bson_append_document_end (b, &gt);
}
