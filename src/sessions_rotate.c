/*
 * sessions_rotate.c — rotating a session's id (regenerate, against
 * fixation) and its encryption key (rekey) (layer 10).
 */
#include "mh_private.h"

/* How long a claimed session is kept at least while its successor is
 * made: the claim must not shorten its expiry to "now", or the TTL monitor
 * could remove it mid-regenerate and the last step would take that for a
 * deletion.  Also how long the old id may still load after a regenerate
 * that failed half-way. */
#define MH_SESSION_CLAIM_HOLD_MS 10000

/* Regenerate, step 1: claims the live, unclaimed session `hex` for the
 * successor `new_hex` in one findAndModify, so of two racing regenerates
 * exactly one wins and no touch extends the old id afterwards, and caps
 * both of its expiries at the end of the grace or of the hold, whichever
 * is later (step 3 lowers it to the grace).  `old` receives the document
 * as it was. */
static bool
mh_session_claim (mongo_helper_sessions_t *s,
                  const char *hex,
                  const char *new_hex,
                  int64_t now,
                  bson_t *old,
                  mongo_helper_error_t *error)
{
   const mh_call_t call = {
      MH_OPID_SESSIONS_REGENERATE, MH_OP_WRITE | MH_OP_CHECKED, NULL, s->coll, NULL};
   int64_t hold = s->opt.regenerate_grace_ms > MH_SESSION_CLAIM_HOLD_MS ? s->opt.regenerate_grace_ms
                                                                        : MH_SESSION_CLAIM_HOLD_MS;
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t set, min;
   bool ok, found;

   mh_session_filter (&f, hex, now);
   mh_session_unclaimed (&f);
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &set);
   BSON_APPEND_UTF8 (&set, "replacedBy", new_hex);
   bson_append_document_end (&u, &set);
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$min", &min);
   mh_web_append_date (&min, "expiresAt", now + hold);
   mh_web_append_date (&min, "absoluteExpiresAt", now + hold);
   bson_append_document_end (&u, &min);
   ok = mh_crud_find_and_modify (&call, &f, &u, NULL, 0, old, &found, error);
   bson_destroy (&f);
   bson_destroy (&u);
   if (ok && !found) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_NOT_FOUND,
                      0,
                      "no such session (unknown, expired or already regenerated): "
                      "start a new one");
   }
   return ok;
}

/* Regenerate, step 3, once the successor is stored: deletes the claimed
 * session (no grace) or caps its expiries at the end of the grace (claim
 * time + grace).  Either must find it: if it is gone, a logout or "delete
 * every session of this user" (which could not see the successor yet)
 * reached it meanwhile, so the successor is deleted too and the deletion
 * wins. */
static bool
mh_session_retire (mongo_helper_sessions_t *s,
                   const char *hex,
                   const char *new_hex,
                   int64_t claimed_at,
                   mongo_helper_error_t *error)
{
   mh_call_t call = {MH_OPID_SESSIONS_REGENERATE, MH_OP_WRITE | MH_OP_CHECKED, NULL, s->coll, NULL};
   int64_t end = claimed_at + s->opt.regenerate_grace_ms;
   bson_t f = BSON_INITIALIZER;
   bson_t doc = BSON_INITIALIZER;
   bson_t *u = NULL;
   bool ok, found = false;
   int64_t n = 0;

   BSON_APPEND_UTF8 (&f, "_id", hex);
   BSON_APPEND_UTF8 (&f, "replacedBy", new_hex);
   if (s->opt.regenerate_grace_ms > 0) {
      u = BCON_NEW ("$min",
                    "{",
                    "expiresAt",
                    BCON_DATE_TIME (end),
                    "absoluteExpiresAt",
                    BCON_DATE_TIME (end),
                    "}");
      call.flags |= MH_OP_IDEMPOTENT; /* $min lands once however often sent */
      ok = mh_web_update (&call, MH_UPDATE_ONE, &f, u, false, &n, error);
      found = n > 0;
   } else {
      /* Not repeated: a repeat would find nothing and undo the regenerate. */
      ok = mh_crud_find_and_modify (&call, &f, NULL, NULL, MH_FAM_REMOVE, &doc, &found, error);
   }
   if (ok && !found) {
      bson_reinit (&f);
      BSON_APPEND_UTF8 (&f, "_id", new_hex);
      call.flags = MH_OP_WRITE | MH_OP_IDEMPOTENT;
      ok = mh_crud_delete (&call, &f, false, NULL, error) &&
           mh_fail (error,
                    MONGO_HELPER_ERROR_NOT_FOUND,
                    0,
                    "the session was deleted while it was being regenerated (a logout "
                    "or mongo_helper_sessions_delete_user()): start a new one");
   }
   bson_destroy (u);
   bson_destroy (&f);
   bson_destroy (&doc);
   return ok;
}

bool
mongo_helper_sessions_regenerate (mongo_helper_sessions_t *sessions,
                                  const char *old_id,
                                  char new_id_out[MONGO_HELPER_SESSION_ID_SIZE],
                                  mongo_helper_error_t *error)
{
   char hex[65], new_hex[65];
   char new_id[MONGO_HELPER_SESSION_ID_SIZE];
   bson_t old = BSON_INITIALIZER;
   bson_t data = BSON_INITIALIZER;
   bson_iter_t it;
   const char *user = NULL;
   const mh_keyring_t *ring = NULL;
   int64_t now = mh_wall_ms ();
   bool ok;

   ok = mh_sessions_begin (sessions, old_id, hex, error) &&
        mh_web_ring (&sessions->ring, &ring, error);
   if (ok && !new_id_out) {
      ok = mh_fail (error,
                    MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                    0,
                    "mongo_helper_sessions_regenerate: new_id_out is NULL");
   }
   /* Claim, then store the successor with the same data, owner, creation
    * and absolute expiry (a copy of what the claim returned; an encrypted
    * payload is opened and sealed again, as it is bound to its _id), then
    * retire the claimed session, which must still be there. */
   ok = ok && mh_session_new_id (new_id, new_hex, error) &&
        mh_session_claim (sessions, hex, new_hex, now, &old, error) &&
        mh_session_data (sessions, MH_OPID_SESSIONS_REGENERATE, &old, &data, error);
   if (ok) {
      if (bson_iter_init_find (&it, &old, "userId") && BSON_ITER_HOLDS_UTF8 (&it)) {
         user = bson_iter_utf8 (&it, NULL);
      }
      ok = mh_session_insert (sessions,
                              ring,
                              MH_OPID_SESSIONS_REGENERATE,
                              new_hex,
                              &data,
                              user,
                              mh_doc_date (&old, "createdAt"),
                              mh_doc_date (&old, "absoluteExpiresAt"),
                              error) &&
           mh_session_retire (sessions, hex, new_hex, now, error);
   }
   if (ok) {
      memcpy (new_id_out, new_id, sizeof new_id);
   }
   bson_destroy (&old);
   bson_destroy (&data);
   return ok;
}

bool
mongo_helper_sessions_rekey (mongo_helper_sessions_t *sessions,
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
   if (!mh_sessions_begin (sessions, NULL, NULL, error) ||
       !mh_web_ring (&sessions->ring, &ring, error)) {
      return false;
   }
   if (!ring) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_CONFIG,
                      0,
                      "mongo_helper_sessions_rekey: this sessions handle has no key ring: set "
                      "session_keys or session_key_file (INI [db], MONGO_SESSION_KEYS, "
                      "MONGO_SESSION_KEY_FILE) or the options' keys");
   }
   /* Besides those sealed with another key: sessions still in clear text. */
   f = BCON_NEW ("0", "{", "data", "{", "$exists", BCON_BOOL (true), "}", "}");
   w = (mh_web_sealing_t){MH_OPID_SESSIONS_REKEY, ring, sessions->coll, "data", false};
   ok = mh_web_rekey (&w, f, batch_size, changed, error);
   bson_destroy (f);
   return ok;
}
