/*
 * cache_compute.c — get-or-compute under a lease, so one caller computes a
 * missing value while the others wait for it, and the cache's key rotation
 * (rekey) (layer 10).
 */
#include "mh_private.h"

bool
mongo_helper_cache_rekey (mongo_helper_cache_t *cache,
                          size_t batch_size,
                          int64_t *changed,
                          mongo_helper_error_t *error)
{
   const mh_keyring_t *ring = NULL;
   mh_web_sealing_t w;
   bson_t *f;
   bool ok;

   if (changed) {
      *changed = 0;
   }
   if (!mh_cache_begin (cache, NULL, NULL, false, error) ||
       !mh_web_ring (&cache->ring, &ring, error)) {
      return false;
   }
   if (!ring) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "mongo_helper_cache_rekey: this cache handle has no key ring: set "
                      "cache_keys or cache_key_file (INI [db], MONGO_CACHE_KEYS, "
                      "MONGO_CACHE_KEY_FILE) or the options' keys");
   }
   /* Besides those sealed with another key: a clear document or binary
    * value (counters stay clear; leases hold no value). */
   f = BCON_NEW ("0",
                 "{",
                 "value",
                 "{",
                 "$type",
                 BCON_UTF8 ("object"),
                 "}",
                 "}",
                 "1",
                 "{",
                 "value",
                 "{",
                 "$type",
                 BCON_UTF8 ("binData"),
                 "}",
                 "}");
   w = (mh_web_sealing_t){MH_OPID_CACHE_REKEY, ring, cache->coll, "value", true};
   ok = mh_web_rekey (&w, f, batch_size, changed, error);
   bson_destroy (f);
   return ok;
}

/* The lease of a key: _id { lease: <stored id> } (a document of another
 * shape than any value's _id), a random token naming its holder, and an
 * expiresAt so the TTL index removes leases of crashed holders. */
static bool
mh_cache_lease_doc (mongo_helper_cache_t *c,
                    const char *key,
                    bson_t *doc,
                    const char *token,
                    bool with_body,
                    mongo_helper_error_t *error)
{
   bson_t id;

   BSON_APPEND_DOCUMENT_BEGIN (doc, "_id", &id);
   if (!mh_cache_append_id (c, &id, "lease", key, error)) {
      bson_append_document_end (doc, &id);
      return false;
   }
   bson_append_document_end (doc, &id);
   BSON_APPEND_UTF8 (doc, "token", token);
   if (with_body) {
      mh_web_append_date (doc, "expiresAt", mh_wall_ms () + c->opt.lease_ms);
   }
   return true;
}

static void
mh_cache_lease_release (mongo_helper_cache_t *c, const char *key, const char *token)
{
   const mh_call_t call = {
      MH_OPID_CACHE_LEASE, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, c->coll, NULL};
   bson_t f = BSON_INITIALIZER;

   if (mh_cache_lease_doc (c, key, &f, token, false, NULL)) {
      mh_crud_delete (&call, &f, false, NULL, NULL); /* else TTL cleans it */
   }
   bson_destroy (&f);
}

bool
mongo_helper_cache_get_or_compute (mongo_helper_cache_t *cache,
                                   const char *key,
                                   int64_t ttl_ms,
                                   mongo_helper_cache_compute_fn compute,
                                   void *user_data,
                                   bson_t *value_out,
                                   bool *computed,
                                   mongo_helper_error_t *error)
{
   mongo_helper_error_t local;
   char token[MONGO_HELPER_SESSION_ID_SIZE];
   int64_t deadline_us, left_us;

   if (!error) {
      error = &local;
   }
   if (computed) {
      *computed = false;
   }
   if (!value_out || !compute) {
      if (value_out) {
         bson_init (value_out);
      }
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_cache_get_or_compute: value_out or "
                      "compute is NULL");
   }
   bson_init (value_out);
   if (!cache) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "cache handle is NULL");
   }
   if (!mh_cache_ttl_ok (ttl_ms, "mongo_helper_cache_get_or_compute: ttl_ms", error) ||
       !mh_web_id_new (token, error)) {
      return false;
   }
   /* This caller's own bound, on the monotonic clock: the holder's
    * lease_ms only decides when its lease may be taken over. */
   deadline_us = mh_mono_us () + cache->opt.wait_ms * 1000;
   for (;;) {
      bson_t lease = BSON_INITIALIZER;
      bool ok;

      bson_destroy (value_out);
      if (mongo_helper_cache_get (cache, key, value_out, error)) {
         return true;
      }
      if (error->category != MONGO_HELPER_ERROR_NOT_FOUND) {
         return false;
      }
      if (!mh_cache_lease_doc (cache, key, &lease, token, true, error)) {
         bson_destroy (&lease);
         return false;
      }
      ok = mh_cache_insert (cache, MH_OPID_CACHE_LEASE, &lease, error);
      bson_destroy (&lease);
      if (ok) {
         /* Re-check: the previous holder may have stored the value
          * between our miss and our lease. */
         bson_destroy (value_out);
         if (mongo_helper_cache_get (cache, key, value_out, error)) {
            mh_cache_lease_release (cache, key, token);
            return true;
         }
         bson_reinit (value_out);
         mh_error_clear (error);
         ok = compute (key, value_out, user_data, error);
         if (ok) {
            if (computed) {
               *computed = true;
            }
            ok = mongo_helper_cache_set (cache, key, value_out, ttl_ms, error);
         } else if (error->category == MONGO_HELPER_ERROR_NONE) {
            mh_fail (error,
                     MONGO_HELPER_ERROR_INTERNAL,
                     0,
                     "the compute function for cache key '%.64s' failed "
                     "without saying why",
                     key);
         }
         mh_cache_lease_release (cache, key, token);
         return ok;
      }
      if (error->category != MONGO_HELPER_ERROR_DUPLICATE_KEY) {
         return false;
      }
      /* Someone else holds the lease (an expired one was reaped by
       * mh_cache_insert's retry already): wait for their value, but never
       * sleep past this caller's deadline. */
      left_us = deadline_us - mh_mono_us ();
      if (left_us <= 0) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_TIMEOUT,
                         0,
                         "cache key '%.64s': another caller is computing "
                         "the value and it did not arrive within %lld ms; "
                         "raise wait_ms or retry",
                         key,
                         (long long) cache->opt.wait_ms);
      }
      mh_sleep_ms (cache->opt.poll_ms < (left_us + 999) / 1000 ? cache->opt.poll_ms
                                                               : (left_us + 999) / 1000);
   }
}
