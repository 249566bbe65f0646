/*
 * cache.c — the cache (layer 9).
 */
#include "mh_private.h"

/* ---- Cache ---- */

void
mongo_helper_cache_options_init (mongo_helper_cache_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->collection = "cache";
   options->default_ttl_ms = 300000;
   options->max_key_length = 200;
   options->lease_ms = 10000;
   options->wait_ms = 5000;
   options->poll_ms = 25;
   options->lazy_ensure = true;
}

/* A time to live: negative (never expires), 0 (the default) or a
 * duration up to MONGO_HELPER_MAX_DURATION_MS. */
bool
mh_cache_ttl_ok (int64_t ttl_ms, const char *what, mongo_helper_error_t *error)
{
   return ttl_ms < 0 || mh_web_duration_ok (ttl_ms, 0, what, error);
}

mongo_helper_cache_t *
mongo_helper_cache_new (const mongo_helper_cache_options_t *options, mongo_helper_error_t *error)
{
   mongo_helper_cache_options_t o;
   mongo_helper_cache_t *c;

   mh_error_clear (error);
   mongo_helper_cache_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!mh_web_coll_name_ok (o.collection, error)) {
      return NULL;
   }
   if (o.max_key_length < 1 || o.max_key_length > 1000) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "cache option max_key_length is %zu: it must be within 1..1000",
               o.max_key_length);
      return NULL;
   }
   if (!mh_cache_ttl_ok (o.default_ttl_ms, "cache option default_ttl_ms", error) ||
       !mh_web_duration_ok (o.lease_ms, 1, "cache option lease_ms", error) ||
       !mh_web_duration_ok (o.wait_ms, 0, "cache option wait_ms", error) ||
       !mh_web_duration_ok (o.poll_ms, 1, "cache option poll_ms", error)) {
      return NULL;
   }
   c = bson_malloc0 (sizeof *c);
   if (!mh_web_ring_init (&c->ring, MH_RING_CACHE, o.keys, o.key_file, "cache option", error)) {
      bson_free (c);
      return NULL;
   }
   c->coll = bson_strdup (o.collection);
   c->opt = o;
   c->opt.collection = c->coll;
   /* The key texts are not kept: the ring holds the keys. */
   c->opt.keys = NULL;
   c->opt.key_file = NULL;
   mh_web_setup_init (&c->setup, o.lazy_ensure);
   return c;
}

void
mongo_helper_cache_destroy (mongo_helper_cache_t *cache)
{
   if (!cache) {
      return;
   }
   mh_web_setup_destroy (&cache->setup);
   mh_web_ring_destroy (&cache->ring);
   bson_free (cache->coll);
   bson_free (cache);
}

bool
mongo_helper_cache_ensure (mongo_helper_cache_t *cache, mongo_helper_error_t *error)
{
   mh_web_index_t ix[] = {{"expiresAt_ttl", "expiresAt", 1, NULL, 0, 0}};
   mh_web_ensure_t e;
   mh_call_t call = {MH_OPID_CACHE_ENSURE_INDEXES,
                     MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT,
                     NULL,
                     NULL,
                     NULL};

   mh_error_clear (error);
   if (!cache) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "mongo_helper_cache_ensure: cache is NULL");
   }
   e.coll = cache->coll;
   e.ix = ix;
   e.n = 1;
   call.collection = cache->coll;
   if (!mh_run (&call, mh_web_ensure_op, &e, error)) {
      return false;
   }
   mh_web_setup_done (&cache->setup);
   return true;
}

static bool
mh_cache_ensure_cb (void *h, mongo_helper_error_t *error)
{
   return mongo_helper_cache_ensure (h, error);
}

/* Bytes of a long key kept readable in its stored _id. */
#define MH_CACHE_KEY_PREFIX 64

/* Appends the stored _id of `key` under `field`: the key itself, or for a
 * long key { p: prefix, h: SHA-256 } (a document never equals a string,
 * so a crafted short key cannot collide with a hashed one). */
bool
mh_cache_append_id (const mongo_helper_cache_t *c,
                    bson_t *dst,
                    const char *field,
                    const char *key,
                    mongo_helper_error_t *error)
{
   size_t len;

   if (!mh_web_str_ok (key, "cache key", error)) {
      return false;
   }
   len = strlen (key);
   if (len <= c->opt.max_key_length) {
      BSON_APPEND_UTF8 (dst, field, key);
   } else {
      char hex[65];
      bson_t sub;
      /* max_key_length may be below the prefix size: never read past the
       * key's own bytes. */
      size_t p = len < MH_CACHE_KEY_PREFIX ? len : MH_CACHE_KEY_PREFIX;

      if (!mh_sha256_hex (key, len, hex)) {
         return mh_fail (
            error, MONGO_HELPER_ERROR_INTERNAL, 0, "SHA-256 of the cache key failed (OpenSSL)");
      }
      /* Cut the readable prefix on a UTF-8 character boundary (key[len]
       * is the NUL, never a continuation byte). */
      while (p > 0 && ((unsigned char) key[p] & 0xC0) == 0x80) {
         p--;
      }
      BSON_APPEND_DOCUMENT_BEGIN (dst, field, &sub);
      bson_append_utf8 (&sub, "p", 1, key, (int) p);
      BSON_APPEND_UTF8 (&sub, "h", hex);
      bson_append_document_end (dst, &sub);
   }
   return true;
}

/* The live condition's array, built once with a marker date whose bytes
 * each call overwrites with its own (five nested documents cost ~3,000
 * instructions per cache get to build with libbson). */
#define MH_CACHE_LIVE_MARK INT64_C (0x0123456789abcdef)

/* state: 0 not built, 1 being built, 2 ready, 3 unusable.  Not a
 * pthread_once: a fork() while another thread ran it would leave the
 * child's first cache get waiting for ever; here a child that inherits
 * "being built" simply builds the condition on each call. */
static struct {
   atomic_int state;
   uint8_t bytes[96];
   uint32_t len;
   size_t date_at;
} mh_cache_live;

static void
mh_cache_live_build (bson_t *arr, int64_t now)
{
   bson_t a, b, ex;

   BSON_APPEND_DOCUMENT_BEGIN (arr, "0", &a);
   mh_web_append_live (&a, "expiresAt", now);
   bson_append_document_end (arr, &a);
   BSON_APPEND_DOCUMENT_BEGIN (arr, "1", &b);
   BSON_APPEND_DOCUMENT_BEGIN (&b, "expiresAt", &ex);
   BSON_APPEND_BOOL (&ex, "$exists", false);
   bson_append_document_end (&b, &ex);
   bson_append_document_end (arr, &b);
}

/* True when the template is ready; the first caller builds it. */
static bool
mh_cache_live_ready (void)
{
   bson_t arr = BSON_INITIALIZER;
   uint64_t mark = BSON_UINT64_TO_LE ((uint64_t) MH_CACHE_LIVE_MARK);
   int expect = 0;
   int state = atomic_load_explicit (&mh_cache_live.state, memory_order_acquire);

   if (state != 0) {
      return state == 2;
   }
   if (!atomic_compare_exchange_strong (&mh_cache_live.state, &expect, 1)) {
      return false; /* another thread builds it: this call builds its own */
   }
   state = 3;
   mh_cache_live_build (&arr, MH_CACHE_LIVE_MARK);
   if (arr.len <= sizeof mh_cache_live.bytes) {
      memcpy (mh_cache_live.bytes, bson_get_data (&arr), arr.len);
      for (size_t i = 0; i + sizeof mark <= arr.len; i++) {
         if (memcmp (mh_cache_live.bytes + i, &mark, sizeof mark) == 0) {
            mh_cache_live.len = arr.len;
            mh_cache_live.date_at = i;
            state = 2;
            break;
         }
      }
   }
   bson_destroy (&arr);
   atomic_store_explicit (&mh_cache_live.state, state, memory_order_release);
   return state == 2;
}

/* Live: no expiresAt (never expires) or expiresAt in the future. */
static void
mh_cache_append_live (bson_t *f, int64_t now)
{
   uint8_t buf[sizeof mh_cache_live.bytes];
   uint64_t le = BSON_UINT64_TO_LE ((uint64_t) now);
   bson_t arr;

   if (!mh_cache_live_ready ()) {
      BSON_APPEND_ARRAY_BEGIN (f, "$or", &arr);
      mh_cache_live_build (&arr, now);
      bson_append_array_end (f, &arr);
      return;
   }
   memcpy (buf, mh_cache_live.bytes, mh_cache_live.len);
   memcpy (buf + mh_cache_live.date_at, &le, sizeof le);
   BSON_ASSERT (bson_init_static (&arr, buf, mh_cache_live.len));
   BSON_APPEND_ARRAY (f, "$or", &arr);
}

bool
mh_cache_begin (mongo_helper_cache_t *c,
                const char *key,
                bson_t *filter,
                bool live,
                mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!c) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "cache handle is NULL");
   }
   if (filter) {
      if (!mh_cache_append_id (c, filter, "_id", key, error)) {
         return false;
      }
      if (live) {
         mh_cache_append_live (filter, mh_wall_ms ());
      }
   }
   return mh_web_ready (&c->setup, mh_cache_ensure_cb, c, error);
}

static int64_t
mh_cache_ttl (const mongo_helper_cache_t *c, int64_t ttl_ms)
{
   return ttl_ms == 0 ? c->opt.default_ttl_ms : ttl_ms;
}

static void
mh_cache_append_expiry (const mongo_helper_cache_t *c, bson_t *b, int64_t ttl_ms)
{
   int64_t ttl = mh_cache_ttl (c, ttl_ms);

   if (ttl > 0) {
      mh_web_append_date (b, "expiresAt", mh_wall_ms () + ttl);
   }
}

static bool
mh_cache_not_found (const char *key, mongo_helper_error_t *error)
{
   return mh_fail (
      error, MONGO_HELPER_ERROR_NOT_FOUND, 0, "cache key '%.64s' has no live value", key);
}

/* Appends the value `wrapped` holds as "v" to `doc`, a record whose _id
 * `id` points at: sealed (the plaintext is `wrapped`, {v: value}, so a
 * document and bytes stay apart) when the handle has a ring, else as
 * `value`; then the expiry. */
static bool
mh_cache_append_value (mongo_helper_cache_t *c,
                       bson_iter_t *id,
                       const bson_t *wrapped,
                       int64_t ttl_ms,
                       bson_t *doc,
                       mongo_helper_error_t *error)
{
   const mh_keyring_t *ring;
   bson_iter_t v;

   if (!mh_web_ring (&c->ring, &ring, error)) {
      return false;
   }
   if (ring) {
      if (!mh_web_seal (ring,
                        c->coll,
                        bson_iter_value (id),
                        bson_get_data (wrapped),
                        wrapped->len,
                        doc,
                        error)) {
         return false;
      }
   } else if (bson_iter_init_find (&v, wrapped, "v")) {
      bson_append_iter (doc, "value", 5, &v);
   }
   mh_cache_append_expiry (c, doc, ttl_ms);
   return true;
}

/* Stores the value of `wrapped` ({v: value}) under key (upsert). */
static bool
mh_cache_store (mongo_helper_cache_t *c,
                const char *key,
                const bson_t *wrapped,
                int64_t ttl_ms,
                mongo_helper_error_t *error)
{
   /* A replacement by _id lands once however often it is repeated. */
   const mh_call_t call = {
      MH_OPID_CACHE_SET, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, c->coll, NULL};
   bson_t f = BSON_INITIALIZER;
   bson_t entry = BSON_INITIALIZER;
   bson_iter_t id;
   bool ok;

   ok = mh_cache_begin (c, key, &f, false, error) && bson_iter_init_find (&id, &f, "_id") &&
        mh_cache_append_value (c, &id, wrapped, ttl_ms, &entry, error) &&
        mh_web_update (&call, MH_REPLACE_ONE, &f, &entry, true, NULL, error);
   bson_destroy (&f);
   bson_destroy (&entry);
   return ok;
}

bool
mongo_helper_cache_set (mongo_helper_cache_t *cache,
                        const char *key,
                        const bson_t *value,
                        int64_t ttl_ms,
                        mongo_helper_error_t *error)
{
   bson_t wrapped = BSON_INITIALIZER;
   bool ok;

   mh_error_clear (error);
   if (!value) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "mongo_helper_cache_set: value is NULL");
   }
   if (!cache || !mh_web_doc_ok ("mongo_helper_cache_set", "cache value", value, error)) {
      return cache
                ? false
                : mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "cache handle is NULL");
   }
   if (!mh_cache_ttl_ok (ttl_ms, "mongo_helper_cache_set: ttl_ms", error)) {
      return false;
   }
   BSON_APPEND_DOCUMENT (&wrapped, "v", value);
   ok = mh_cache_store (cache, key, &wrapped, ttl_ms, error);
   bson_destroy (&wrapped);
   return ok;
}

bool
mongo_helper_cache_set_bytes (mongo_helper_cache_t *cache,
                              const char *key,
                              const uint8_t *data,
                              size_t len,
                              int64_t ttl_ms,
                              mongo_helper_error_t *error)
{
   bson_t wrapped = BSON_INITIALIZER;
   static const uint8_t none = 0;
   bool ok;

   mh_error_clear (error);
   if ((!data && len > 0) || !cache) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_cache_set_bytes: cache or data is NULL");
   }
   if (!mh_web_size_ok (len, "cache value", error) ||
       !mh_cache_ttl_ok (ttl_ms, "mongo_helper_cache_set_bytes: ttl_ms", error)) {
      return false;
   }
   bson_append_binary (&wrapped, "v", 1, BSON_SUBTYPE_BINARY, data ? data : &none, (uint32_t) len);
   ok = mh_cache_store (cache, key, &wrapped, ttl_ms, error);
   bson_destroy (&wrapped);
   return ok;
}

/* Removes `key`'s document if it is expired but not yet reaped by the TTL
 * monitor; returns true if it did (so an insert may be retried). */
static bool
mh_cache_reap (mongo_helper_cache_t *c, const bson_t *id_filter)
{
   bson_t f = BSON_INITIALIZER;
   bson_t lte;
   bson_iter_t it;
   const mh_call_t call = {
      MH_OPID_CACHE_REAP, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, c->coll, NULL};
   int64_t n = 0;
   bool ok;

   if (bson_iter_init_find (&it, id_filter, "_id")) {
      bson_append_iter (&f, "_id", 3, &it);
   }
   BSON_APPEND_DOCUMENT_BEGIN (&f, "expiresAt", &lte);
   mh_web_append_date (&lte, "$lte", mh_wall_ms ());
   bson_append_document_end (&f, &lte);
   ok = mh_crud_delete (&call, &f, false, &n, NULL);
   bson_destroy (&f);
   return ok && n > 0;
}

/* Inserts `doc` (which carries its _id); one retry after reaping an
 * expired document that still holds the _id. */
bool
mh_cache_insert (mongo_helper_cache_t *c,
                 mh_opid_t op,
                 const bson_t *doc,
                 mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_WRITE | MH_OP_CHECKED, NULL, c->coll, NULL};

   if (mh_crud_insert_one (&call, doc, error)) {
      return true;
   }
   if (error && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY && mh_cache_reap (c, doc)) {
      mh_error_clear (error);
      return mh_crud_insert_one (&call, doc, error);
   }
   return false;
}

bool
mongo_helper_cache_add (mongo_helper_cache_t *cache,
                        const char *key,
                        const bson_t *value,
                        int64_t ttl_ms,
                        mongo_helper_error_t *error)
{
   bson_t doc = BSON_INITIALIZER;
   bson_t id = BSON_INITIALIZER;
   bson_t wrapped = BSON_INITIALIZER;
   bson_iter_t it;
   mongo_helper_error_t local;
   bool ok;

   if (!error) {
      error = &local;
   }
   ok = mh_cache_begin (cache, key, &id, false, error);
   if (ok && !value) {
      ok = mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "mongo_helper_cache_add: value is NULL");
   }
   ok = ok && mh_web_doc_ok ("mongo_helper_cache_add", "cache value", value, error) &&
        mh_cache_ttl_ok (ttl_ms, "mongo_helper_cache_add: ttl_ms", error);
   if (ok) {
      BSON_APPEND_DOCUMENT (&wrapped, "v", value);
      bson_iter_init_find (&it, &id, "_id");
      bson_append_iter (&doc, "_id", 3, &it);
      ok = mh_cache_append_value (cache, &it, &wrapped, ttl_ms, &doc, error);
   }
   if (ok) {
      ok = mh_cache_insert (cache, MH_OPID_CACHE_ADD, &doc, error);
      if (!ok && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_DUPLICATE_KEY,
                  11000,
                  "cache key '%.64s' already has a live value: nothing added",
                  key);
      }
   }
   bson_destroy (&doc);
   bson_destroy (&id);
   bson_destroy (&wrapped);
   return ok;
}

/* Positions `it` on the value of the stored record `entry`: the clear
 * `value`, or "v" of the sealed payload opened into `plain` (initialised
 * here).  False (and `it` unset) when there is none: INTEGRITY for a
 * payload that does not open, else no error (e.g. a lease). */
static bool
mh_cache_value (mongo_helper_cache_t *c,
                mh_opid_t op,
                const bson_t *entry,
                bson_t *plain,
                bson_iter_t *it,
                mongo_helper_error_t *error)
{
   const mh_keyring_t *ring;

   bson_init (plain);
   if (bson_has_field (entry, MH_WEB_SEALED)) {
      bson_destroy (plain);
      if (!mh_web_ring (&c->ring, &ring, error)) {
         bson_init (plain);
         return false;
      }
      return mh_web_open (ring, op, c->coll, entry, plain, error) &&
             bson_iter_init_find (it, plain, "v");
   }
   return bson_iter_init_find (it, entry, "value");
}

/* Leads `error` (already set) with the cache key it concerns; false. */
static bool
mh_cache_key_failed (const char *key, mongo_helper_error_t *error)
{
   char what[MONGO_HELPER_ERROR_MESSAGE_SIZE];

   bson_strncpy (what, error->message, sizeof what);
   return mh_fail (error, error->category, error->code, "cache key '%.64s': %s", key, what);
}

/* Reads the live entry of `key` and positions `it` on its value (in
 * `entry`, or in the opened `plain`: both always initialised). */
static bool
mh_cache_read (mongo_helper_cache_t *c,
               const char *key,
               bson_t *entry,
               bson_t *plain,
               bson_iter_t *it,
               mongo_helper_error_t *error)
{
   const mh_call_t call = {MH_OPID_CACHE_GET, MH_OP_READ | MH_OP_CHECKED, NULL, c->coll, NULL};
   bson_t f = BSON_INITIALIZER;
   mongo_helper_error_t local;
   bool ok, found;

   if (!error) {
      error = &local;
   }
   bson_init (plain);
   ok = mh_cache_begin (c, key, &f, true, error);
   if (ok) {
      ok = mh_crud_find_one (&call, &f, NULL, entry, &found, error);
      if (ok && found) {
         bson_destroy (plain);
         ok = mh_cache_value (c, MH_OPID_CACHE_GET, entry, plain, it, error);
         if (!ok && error->category == MONGO_HELPER_ERROR_NONE) {
            ok = mh_cache_not_found (key, error);
         } else if (!ok) {
            mh_cache_key_failed (key, error);
         }
      } else if (ok) {
         ok = mh_cache_not_found (key, error);
      }
   }
   bson_destroy (&f);
   return ok;
}

static bool
mh_cache_wrong_type (const char *key, const char *use, mongo_helper_error_t *error)
{
   return mh_fail (error,
                   MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                   0,
                   "cache key '%.64s' holds another kind of value: read it "
                   "with %s",
                   key,
                   use);
}

static const char *
mh_cache_reader_for (const bson_iter_t *it)
{
   if (BSON_ITER_HOLDS_BINARY (it)) {
      return "mongo_helper_cache_get_bytes()";
   }
   if (BSON_ITER_HOLDS_DOCUMENT (it)) {
      return "mongo_helper_cache_get()";
   }
   return "mongo_helper_cache_incr() with delta 0";
}

bool
mongo_helper_cache_get (mongo_helper_cache_t *cache,
                        const char *key,
                        bson_t *value_out,
                        mongo_helper_error_t *error)
{
   bson_t entry = BSON_INITIALIZER;
   bson_t plain;
   bson_iter_t it;
   bool ok;

   if (!value_out) {
      bson_destroy (&entry);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_cache_get: value_out is NULL");
   }
   bson_init (value_out);
   ok = mh_cache_read (cache, key, &entry, &plain, &it, error);
   if (ok && !BSON_ITER_HOLDS_DOCUMENT (&it)) {
      ok = mh_cache_wrong_type (key, mh_cache_reader_for (&it), error);
   } else if (ok) {
      uint32_t len;
      const uint8_t *d;
      bson_t v;

      bson_iter_document (&it, &len, &d);
      if (bson_init_static (&v, d, len)) {
         bson_destroy (value_out);
         bson_copy_to (&v, value_out);
      }
   }
   bson_destroy (&entry);
   bson_destroy (&plain);
   return ok;
}

bool
mongo_helper_cache_get_bytes (mongo_helper_cache_t *cache,
                              const char *key,
                              uint8_t **data,
                              size_t *len,
                              mongo_helper_error_t *error)
{
   bson_t entry = BSON_INITIALIZER;
   bson_t plain;
   bson_iter_t it;
   bool ok;

   if (!data || !len) {
      bson_destroy (&entry);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_cache_get_bytes: data or len is NULL");
   }
   *data = NULL;
   *len = 0;
   ok = mh_cache_read (cache, key, &entry, &plain, &it, error);
   if (ok && !BSON_ITER_HOLDS_BINARY (&it)) {
      ok = mh_cache_wrong_type (key, mh_cache_reader_for (&it), error);
   } else if (ok) {
      bson_subtype_t st;
      uint32_t n;
      const uint8_t *d;

      bson_iter_binary (&it, &st, &n, &d);
      *data = bson_malloc (n ? n : 1);
      memcpy (*data, d, n);
      *len = n;
   }
   bson_destroy (&entry);
   bson_destroy (&plain);
   return ok;
}

bool
mongo_helper_cache_get_many (mongo_helper_cache_t *cache,
                             const char *const *keys,
                             size_t n,
                             bson_t *found_out,
                             mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t ids = BSON_INITIALIZER; /* "i": stored id of keys[i] */
   bson_t res = BSON_INITIALIZER;
   bson_t idf;
   mh_call_t call = {MH_OPID_CACHE_GET_MANY, MH_OP_READ | MH_OP_CHECKED, NULL, NULL, NULL};
   bson_iter_t r;
   mongo_helper_error_t local;
   bool ok;

   if (!error) {
      error = &local;
   }
   if (found_out) {
      bson_init (found_out);
   }
   ok = mh_cache_begin (cache, NULL, NULL, false, error);
   if (ok && (!found_out || !keys || n == 0)) {
      ok = mh_fail (error,
                    MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                    0,
                    "mongo_helper_cache_get_many: no keys or found_out is "
                    "NULL");
   }
   for (size_t i = 0; ok && i < n; i++) {
      char k[16];
      const char *kk;

      bson_uint32_to_string ((uint32_t) i, &kk, k, sizeof k);
      ok = mh_cache_append_id (cache, &ids, kk, keys[i], error);
   }
   if (!ok) {
      goto cleanup;
   }
   BSON_APPEND_DOCUMENT_BEGIN (&f, "_id", &idf);
   bson_append_array (&idf, "$in", 3, &ids);
   bson_append_document_end (&f, &idf);
   mh_cache_append_live (&f, mh_wall_ms ());
   call.collection = cache->coll;
   ok = mh_crud_find (&call, &f, NULL, &res, error);
   if (!ok || !bson_iter_init (&r, &res)) {
      goto cleanup;
   }
   /* Map each stored _id back to the caller's key, then read its value. */
   while (ok && bson_iter_next (&r)) {
      bson_iter_t d, id, v, k;
      bson_t rec, plain;
      uint32_t rlen;
      const uint8_t *rdata;
      size_t i = 0;
      bool same = false;

      if (!BSON_ITER_HOLDS_DOCUMENT (&r) || !bson_iter_recurse (&r, &d) ||
          !bson_iter_find (&d, "_id") || !bson_iter_init (&k, &ids)) {
         continue;
      }
      id = d;
      while (!same && bson_iter_next (&k)) {
         if (bson_iter_type (&k) == bson_iter_type (&id)) {
            if (BSON_ITER_HOLDS_UTF8 (&k)) {
               same = strcmp (bson_iter_utf8 (&k, NULL), bson_iter_utf8 (&id, NULL)) == 0;
            } else {
               uint32_t l1, l2;
               const uint8_t *p1, *p2;

               bson_iter_document (&k, &l1, &p1);
               bson_iter_document (&id, &l2, &p2);
               same = l1 == l2 && memcmp (p1, p2, l1) == 0;
            }
         }
         i += !same;
      }
      bson_iter_document (&r, &rlen, &rdata);
      if (!same || !bson_init_static (&rec, rdata, rlen)) {
         continue;
      }
      if (mh_cache_value (cache, MH_OPID_CACHE_GET_MANY, &rec, &plain, &v, error)) {
         bson_append_iter (found_out, keys[i], -1, &v);
      } else if (error->category != MONGO_HELPER_ERROR_NONE) {
         ok = mh_cache_key_failed (keys[i], error);
      }
      bson_destroy (&plain);
   }
   if (!ok) {
      bson_reinit (found_out); /* nothing of a call that failed */
   }
cleanup:
   bson_destroy (&f);
   bson_destroy (&ids);
   bson_destroy (&res);
   return ok;
}

bool
mongo_helper_cache_incr (mongo_helper_cache_t *cache,
                         const char *key,
                         int64_t delta,
                         int64_t ttl_ms,
                         int64_t *result,
                         mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t doc = BSON_INITIALIZER;
   bson_t inc, soi;
   mh_call_t call = {MH_OPID_CACHE_INCR, MH_OP_WRITE | MH_OP_CHECKED, NULL, NULL, NULL};
   bson_iter_t it;
   mongo_helper_error_t local;
   bool ok, found = false;

   if (!error) {
      error = &local;
   }
   if (result) {
      *result = 0;
   }
   ok = mh_cache_begin (cache, key, &f, true, error) &&
        mh_cache_ttl_ok (ttl_ms, "mongo_helper_cache_incr: ttl_ms", error);
   if (!ok) {
      goto cleanup;
   }
   /* Never on an encrypted value: $inc would add a clear `value` beside
    * it.  Such a key then fails the upsert with a duplicate _id. */
   BSON_APPEND_DOCUMENT_BEGIN (&f, MH_WEB_SEALED, &soi);
   BSON_APPEND_BOOL (&soi, "$exists", false);
   bson_append_document_end (&f, &soi);
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$inc", &inc);
   BSON_APPEND_INT64 (&inc, "value", delta);
   bson_append_document_end (&u, &inc);
   if (mh_cache_ttl (cache, ttl_ms) > 0) {
      BSON_APPEND_DOCUMENT_BEGIN (&u, "$setOnInsert", &soi);
      mh_cache_append_expiry (cache, &soi, ttl_ms);
      bson_append_document_end (&u, &soi);
   }
   call.collection = cache->coll;
   ok = mh_crud_find_and_modify (
      &call, &f, &u, NULL, MH_FAM_UPSERT | MH_FAM_RETURN_NEW, &doc, &found, error);
   /* A duplicate _id: an expired record not reaped yet (reaped here), a
    * concurrent first incr (matched now), or a value the filter excludes
    * (an encrypted one: a duplicate again). */
   if (!ok && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY) {
      mh_cache_reap (cache, &f);
      ok = mh_crud_find_and_modify (
         &call, &f, &u, NULL, MH_FAM_UPSERT | MH_FAM_RETURN_NEW, &doc, &found, error);
      if (!ok && error->category == MONGO_HELPER_ERROR_DUPLICATE_KEY) {
         mh_cache_wrong_type (key, "mongo_helper_cache_get() or _get_bytes()", error);
         goto cleanup;
      }
   }
   if (ok) {
      if (!found || !bson_iter_init_find (&it, &doc, "value") || !BSON_ITER_HOLDS_NUMBER (&it)) {
         ok = mh_cache_wrong_type (key, "mongo_helper_cache_get()", error);
      } else if (result) {
         *result = bson_iter_as_int64 (&it);
      }
   } else if (error->category == MONGO_HELPER_ERROR_SERVER) {
      /* 14: TypeMismatch ($inc on a non-number). */
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               error->code,
               "cache key '%.64s' does not hold a number: %s",
               key,
               error->message);
   }
cleanup:
   bson_destroy (&f);
   bson_destroy (&u);
   bson_destroy (&doc);
   return ok;
}

bool
mongo_helper_cache_delete (mongo_helper_cache_t *cache,
                           const char *key,
                           bool *deleted,
                           mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_call_t call = {
      MH_OPID_CACHE_DELETE, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, NULL, NULL};
   int64_t n = 0;
   bool ok;

   if (deleted) {
      *deleted = false;
   }
   ok = mh_cache_begin (cache, key, &f, false, error);
   if (ok) {
      call.collection = cache->coll;
      ok = mh_crud_delete (&call, &f, false, &n, error);
      if (ok && deleted) {
         *deleted = n > 0;
      }
   }
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_cache_touch (mongo_helper_cache_t *cache,
                          const char *key,
                          int64_t ttl_ms,
                          mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t sub;
   mh_call_t call = {MH_OPID_CACHE_TOUCH, MH_OP_WRITE | MH_OP_CHECKED, NULL, NULL, NULL};
   int64_t n = 0;
   bool ok;

   ok = mh_cache_begin (cache, key, &f, true, error) &&
        mh_cache_ttl_ok (ttl_ms, "mongo_helper_cache_touch: ttl_ms", error);
   if (ok) {
      if (mh_cache_ttl (cache, ttl_ms) > 0) {
         BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &sub);
         mh_cache_append_expiry (cache, &sub, ttl_ms);
      } else {
         BSON_APPEND_DOCUMENT_BEGIN (&u, "$unset", &sub);
         BSON_APPEND_UTF8 (&sub, "expiresAt", "");
      }
      bson_append_document_end (&u, &sub);
      call.collection = cache->coll;
      ok = mh_web_update (&call, MH_UPDATE_ONE, &f, &u, false, &n, error);
      if (ok && n == 0) {
         ok = mh_cache_not_found (key, error);
      }
   }
   bson_destroy (&f);
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_cache_clear (mongo_helper_cache_t *cache, mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_call_t call = {
      MH_OPID_CACHE_CLEAR, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, NULL, NULL};
   bool ok;

   /* deleteMany rather than drop: the indexes (and their TTL) stay. */
   ok = mh_cache_begin (cache, NULL, NULL, false, error);
   if (ok) {
      call.collection = cache->coll;
      ok = mh_crud_delete (&call, &f, true, NULL, error);
   }
   bson_destroy (&f);
   return ok;
}
