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
   if (!s || !*s || !mh_utf8_ok (s, strlen (s))) {
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
   return mh_doc_check_embedded (fn, label, doc, error) && mh_web_size_ok (doc->len, label, error);
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
   bool ok;

   if (!addressed) {
      return mh_crud_update (call, kind, filter, update, upsert, NULL, error);
   }
   ok = mh_crud_update (call, kind, filter, update, upsert, &r, error);
   *addressed = ok ? r.matched + r.upserted : 0;
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
   s->state = MH_SETUP_PENDING;
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
      s->state = ok ? MH_SETUP_DONE : MH_SETUP_PENDING;
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

/* -- Encryption at rest: the sealed payload of sessions and cache values. */

/* The state of a ring that resolved to "no keys": never a valid pointer. */
static const char mh_web_no_ring;
#define MH_WEB_NO_RING ((uintptr_t) (const void *) &mh_web_no_ring)

bool
mh_web_ring_init (mh_web_ring_t *r,
                  mh_ring_kind_t kind,
                  const char *keys,
                  const char *key_file,
                  const char *what,
                  mongo_helper_error_t *error)
{
   char source[128];
   mh_keyring_t *ring;

   atomic_init (&r->state, 0);
   r->kind = kind;
   if (keys && key_file) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "%s keys and key_file are both set: give the keys one way",
                      what);
   }
   if (!keys && !key_file) {
      return true; /* the configuration's, on first use */
   }
   bson_snprintf (source, sizeof source, "%s %s", what, keys ? "keys" : "key_file");
   ring = keys ? mh_keyring_parse (keys, source, error)
               : mh_keyring_load_file (key_file, source, error);
   if (!ring) {
      return false;
   }
   atomic_store (&r->state, (uintptr_t) ring);
   return true;
}

void
mh_web_ring_destroy (mh_web_ring_t *r)
{
   uintptr_t v = atomic_load (&r->state);

   if (v != 0 && v != MH_WEB_NO_RING) {
      mh_keyring_destroy ((mh_keyring_t *) v);
   }
   atomic_store (&r->state, 0);
}

bool
mh_web_ring (mh_web_ring_t *r, const mh_keyring_t **ring, mongo_helper_error_t *error)
{
   uintptr_t v = atomic_load (&r->state), expected = 0;
   mh_keyring_t *mine;

   if (v == 0) {
      if (!mh_current_keyring (r->kind, &mine, error)) {
         *ring = NULL;
         return false;
      }
      v = mine ? (uintptr_t) mine : MH_WEB_NO_RING;
      /* Of threads resolving at once, the first to store wins. */
      if (!atomic_compare_exchange_strong (&r->state, &expected, v)) {
         mh_keyring_destroy (mine);
         v = expected;
      }
   }
   *ring = v == MH_WEB_NO_RING ? NULL : (const mh_keyring_t *) v;
   return true;
}

/* The associated data is the record's identity (mh_record_aad), so a
 * payload moved to another record does not open. */
bool
mh_web_seal (const mh_keyring_t *ring,
             const char *coll,
             const bson_value_t *id,
             const uint8_t *plain,
             size_t len,
             bson_t *parent,
             mongo_helper_error_t *error)
{
   bson_t aad;
   bool ok =
      mh_record_aad (&aad, coll, id, error) &&
      mh_seal (ring, bson_get_data (&aad), aad.len, plain, len, parent, MH_WEB_SEALED, error);

   bson_destroy (&aad);
   return ok;
}

/* INTEGRITY, counted under `op`, its message led by the operation and
 * collection so a log line says which store holds the damaged record. */
static bool
mh_web_integrity (mh_opid_t op, const char *coll, mongo_helper_error_t *error)
{
   char what[MONGO_HELPER_ERROR_MESSAGE_SIZE];

   mh_metrics_integrity (op, error->code);
   bson_strncpy (what, error->message, sizeof what);
   return mh_fail (
      error, error->category, error->code, "%s on %s: %s", mh_op_name (op), coll, what);
}

bool
mh_web_open (const mh_keyring_t *ring,
             mh_opid_t op,
             const char *coll,
             const bson_t *doc,
             bson_t *plain,
             mongo_helper_error_t *error)
{
   mongo_helper_error_t local;
   mh_opened_t o;
   bson_iter_t id, env;
   bson_t aad, v;
   bool ok;

   if (!error) {
      error = &local;
   }
   bson_init (plain);
   if (!bson_iter_init_find (&env, doc, MH_WEB_SEALED)) {
      return mh_bad_arg (error, "mh_web_open", "the record has no sealed payload");
   }
   if (!ring) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INTEGRITY,
               MH_INTEGRITY_UNKNOWN_KEY,
               "the record is encrypted and this handle has no key ring: configure "
               "the keys (session_keys / cache_keys, their key files, or the options' "
               "keys)");
      return mh_web_integrity (op, coll, error);
   }
   if (!bson_iter_init_find (&id, doc, "_id")) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INTEGRITY,
               MH_INTEGRITY_MALFORMED,
               "the encrypted record has no _id");
      return mh_web_integrity (op, coll, error);
   }
   ok = mh_record_aad (&aad, coll, bson_iter_value (&id), error) &&
        mh_open (ring, bson_get_data (&aad), aad.len, &env, &o, error);
   bson_destroy (&aad);
   if (!ok) {
      return error->category == MONGO_HELPER_ERROR_INTEGRITY ? mh_web_integrity (op, coll, error)
                                                             : false;
   }
   /* Authenticated, so written by a holder of the key: still checked like
    * any document the helpers hand out. */
   if (!bson_init_static (&v, o.data, o.len) ||
       !mh_doc_check ("decrypted payload", "payload", &v, error)) {
      mh_opened_clear (&o);
      mh_fail (error,
               MONGO_HELPER_ERROR_INTEGRITY,
               MH_INTEGRITY_MALFORMED,
               "the decrypted payload is not a well-formed document");
      return mh_web_integrity (op, coll, error);
   }
   bson_destroy (plain);
   bson_copy_to (&v, plain);
   mh_opened_clear (&o);
   return true;
}

void
mh_web_cas (bson_t *filter, const bson_t *doc, const char *clear)
{
   bson_iter_t it;
   bson_t ex;

   if (bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, MH_WEB_SEALED ".n", &it)) {
      bson_append_iter (filter, MH_WEB_SEALED ".n", -1, &it);
      return;
   }
   BSON_APPEND_DOCUMENT_BEGIN (filter, MH_WEB_SEALED, &ex);
   BSON_APPEND_BOOL (&ex, "$exists", false);
   bson_append_document_end (filter, &ex);
   if (bson_iter_init_find (&it, doc, clear)) {
      bson_append_iter (filter, clear, -1, &it);
   } else {
      BSON_APPEND_DOCUMENT_BEGIN (filter, clear, &ex);
      BSON_APPEND_BOOL (&ex, "$exists", false);
      bson_append_document_end (filter, &ex);
   }
}

bool
mh_web_reseal_update (const mh_keyring_t *ring,
                      const char *coll,
                      const bson_value_t *id,
                      const bson_t *plain,
                      const char *clear,
                      bson_t *update,
                      mongo_helper_error_t *error)
{
   bson_t set, unset;
   bool ok;

   bson_init (update);
   BSON_APPEND_DOCUMENT_BEGIN (update, "$set", &set);
   ok = mh_web_seal (ring, coll, id, bson_get_data (plain), plain->len, &set, error);
   bson_append_document_end (update, &set);
   BSON_APPEND_DOCUMENT_BEGIN (update, "$unset", &unset);
   BSON_APPEND_UTF8 (&unset, clear, "");
   bson_append_document_end (update, &unset);
   return ok;
}

/* -- Rekey: one pass of a cursor over the records to seal again, written
 * back batch by batch with one unordered bulk write each. */

typedef struct {
   const mh_web_sealing_t *w;
   const bson_t *filter;
   size_t batch;
   int64_t changed, failed;
   mongo_helper_error_t first; /* the first record that did not open */
} mh_rekey_ctx_t;

/* The plaintext of record `doc`: opened, or its clear payload. */
static bool
mh_rekey_plain (mh_rekey_ctx_t *c, const bson_t *doc, bson_t *plain)
{
   mongo_helper_error_t e;
   bson_iter_t it;

   if (bson_has_field (doc, MH_WEB_SEALED)) {
      if (mh_web_open (c->w->ring, c->w->op, c->w->coll, doc, plain, &e)) {
         return true;
      }
      if (c->failed++ == 0) {
         c->first = e;
      }
      return false;
   }
   bson_init (plain);
   if (bson_iter_init_find (&it, doc, c->w->clear)) {
      if (c->w->wrap) {
         bson_append_iter (plain, "v", 1, &it);
      } else if (BSON_ITER_HOLDS_DOCUMENT (&it)) {
         uint32_t len;
         const uint8_t *d;
         bson_t v;

         bson_iter_document (&it, &len, &d);
         if (bson_init_static (&v, d, len)) {
            bson_destroy (plain);
            bson_copy_to (&v, plain);
         }
      }
   }
   return true;
}

/* Seals each record of the batch again and writes it back if its payload
 * is still the one read. */
static bool
mh_rekey_flush (mh_attempt_t *a, mh_rekey_ctx_t *c, bson_t *const *docs, size_t n)
{
   bson_t *bopts = BCON_NEW ("ordered", BCON_BOOL (false));
   mongoc_bulk_operation_t *bulk =
      mongoc_collection_create_bulk_operation_with_opts (a->coll, bopts);
   mongo_helper_error_t e;
   bson_t reply;
   size_t ops = 0;
   bool ok = true;

   for (size_t i = 0; ok && i < n; i++) {
      bson_t plain, f, u;
      bson_iter_t id;

      if (!bson_iter_init_find (&id, docs[i], "_id")) {
         continue;
      }
      if (!mh_rekey_plain (c, docs[i], &plain)) {
         bson_destroy (&plain);
         continue;
      }
      bson_init (&f);
      bson_append_iter (&f, "_id", 3, &id);
      mh_web_cas (&f, docs[i], c->w->clear);
      if (mh_web_reseal_update (
             c->w->ring, c->w->coll, bson_iter_value (&id), &plain, c->w->clear, &u, &e)) {
         ok = mongoc_bulk_operation_update_one_with_opts (bulk, &f, &u, NULL, &a->error);
         ops++;
      } else {
         ok = mh_berr (&a->error, 0, "%s", e.message);
      }
      mh_cleanse ((void *) bson_get_data (&plain), plain.len);
      bson_destroy (&plain);
      bson_destroy (&f);
      bson_destroy (&u);
   }
   if (ok && ops > 0) {
      ok = mongoc_bulk_operation_execute (bulk, &reply, &a->error) != 0;
      c->changed += mh_bson_int64 (&reply, "nModified");
      mh_attempt_labels (a, &reply);
      bson_destroy (&reply);
   }
   mongoc_bulk_operation_destroy (bulk);
   bson_destroy (bopts);
   return ok;
}

static bool
mh_rekey_op (mh_attempt_t *a, void *ctx)
{
   mh_rekey_ctx_t *c = ctx;
   bson_t *opts = BCON_NEW ("projection",
                            "{",
                            "_id",
                            BCON_INT32 (1),
                            MH_WEB_SEALED,
                            BCON_INT32 (1),
                            c->w->clear,
                            BCON_INT32 (1),
                            "}",
                            "batchSize",
                            BCON_INT64 ((int64_t) c->batch));
   mongoc_cursor_t *cur = mongoc_collection_find_with_opts (a->coll, c->filter, opts, NULL);
   bson_t **docs = bson_malloc0 (c->batch * sizeof *docs);
   const bson_t *doc;
   size_t n = 0;
   bool ok = true;

   /* The cursor's documents are copied: the bulk write of a batch runs on
    * the same client before the cursor's next round trip. */
   while (ok && mongoc_cursor_next (cur, &doc)) {
      docs[n++] = bson_copy (doc);
      if (n == c->batch) {
         ok = mh_rekey_flush (a, c, docs, n);
         for (size_t i = 0; i < n; i++) {
            bson_destroy (docs[i]);
         }
         n = 0;
      }
   }
   if (ok && mongoc_cursor_error (cur, &a->error)) {
      ok = false;
   }
   if (ok && n > 0) {
      ok = mh_rekey_flush (a, c, docs, n);
   }
   for (size_t i = 0; i < n; i++) {
      bson_destroy (docs[i]);
   }
   bson_free (docs);
   mongoc_cursor_destroy (cur);
   bson_destroy (opts);
   return ok;
}

bool
mh_web_rekey (const mh_web_sealing_t *w,
              const bson_t *clear_clauses,
              size_t batch,
              int64_t *changed,
              mongo_helper_error_t *error)
{
   /* Never repeated by mh_run: a batch written stays written; running
    * rekey again picks up where it stopped. */
   const mh_call_t call = {w->op, MH_OP_ONCE | MH_OP_CHECKED, NULL, w->coll, NULL};
   bson_t filter = BSON_INITIALIZER, any, stale, k;
   bson_iter_t it;
   mh_rekey_ctx_t c = {w, &filter, batch, 0, 0, {MONGO_HELPER_ERROR_NONE, 0, ""}};
   uint32_t i = 1;
   bool ok;

   if (changed) {
      *changed = 0;
   }
   if (batch > MONGO_HELPER_REKEY_MAX_BATCH) {
      bson_destroy (&filter);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: batch_size %zu is more than %d (MONGO_HELPER_REKEY_MAX_BATCH)",
                      mh_op_name (w->op),
                      batch,
                      MONGO_HELPER_REKEY_MAX_BATCH);
   }
   /* {$or: [{sealed.k: {$exists: true, $ne: current}}, ...clear_clauses]} */
   BSON_APPEND_ARRAY_BEGIN (&filter, "$or", &any);
   BSON_APPEND_DOCUMENT_BEGIN (&any, "0", &stale);
   BSON_APPEND_DOCUMENT_BEGIN (&stale, MH_WEB_SEALED ".k", &k);
   BSON_APPEND_BOOL (&k, "$exists", true);
   BSON_APPEND_UTF8 (&k, "$ne", mh_keyring_id (w->ring, 0));
   bson_append_document_end (&stale, &k);
   bson_append_document_end (&any, &stale);
   if (bson_iter_init (&it, clear_clauses)) {
      while (bson_iter_next (&it)) {
         char key[16];
         const char *kp;
         size_t kl = bson_uint32_to_string (i++, &kp, key, sizeof key);

         bson_append_iter (&any, kp, (int) kl, &it);
      }
   }
   bson_append_array_end (&filter, &any);
   c.batch = batch ? batch : MONGO_HELPER_REKEY_DEFAULT_BATCH;
   ok = mh_run (&call, mh_rekey_op, &c, error);
   bson_destroy (&filter);
   if (changed) {
      *changed = c.changed;
   }
   if (ok && c.failed > 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INTEGRITY,
                      c.first.code,
                      "%" PRId64 " records sealed again with key '%s'; %" PRId64
                      " did not open and were left as they are (the first: %s)",
                      c.changed,
                      mh_keyring_id (w->ring, 0),
                      c.failed,
                      c.first.message);
   }
   return ok;
}
