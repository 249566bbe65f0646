/*
 * sessions.c — the session store (layer 9).
 */
#include "mh_private.h"

/* ---- Sessions ---- */

/* How often a read-modify-write of an encrypted session (set, unset) is
 * tried when concurrent writes keep changing it: each round one writer
 * wins, so only a crowd of writers on one session reaches the bound. */
#define MH_SESSION_CAS_TRIES 64

void
mongo_helper_sessions_options_init (mongo_helper_sessions_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->collection = "sessions";
   options->idle_lifetime_ms = INT64_C (14) * 24 * 3600 * 1000;
   options->absolute_lifetime_ms = 0;
   options->touch_interval_ms = 60000;
   options->regenerate_grace_ms = 0;
   options->lazy_ensure = true;
}

mongo_helper_sessions_t *
mongo_helper_sessions_new (const mongo_helper_sessions_options_t *options,
                           mongo_helper_error_t *error)
{
   mongo_helper_sessions_options_t o;
   mongo_helper_sessions_t *s;

   mh_error_clear (error);
   mongo_helper_sessions_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!mh_web_coll_name_ok (o.collection, error) ||
       !mh_web_duration_ok (o.idle_lifetime_ms, 1, "session option idle_lifetime_ms", error) ||
       !mh_web_duration_ok (
          o.absolute_lifetime_ms, 0, "session option absolute_lifetime_ms", error) ||
       !mh_web_duration_ok (o.touch_interval_ms, 0, "session option touch_interval_ms", error) ||
       !mh_web_duration_ok (
          o.regenerate_grace_ms, 0, "session option regenerate_grace_ms", error)) {
      return NULL;
   }
   s = bson_malloc0 (sizeof *s);
   if (!mh_web_ring_init (
          &s->ring, MH_RING_SESSIONS, o.keys, o.key_file, "sessions option", error)) {
      bson_free (s);
      return NULL;
   }
   s->coll = bson_strdup (o.collection);
   s->opt = o;
   s->opt.collection = s->coll;
   /* The key texts are not kept: the ring holds the keys. */
   s->opt.keys = NULL;
   s->opt.key_file = NULL;
   mh_web_setup_init (&s->setup, o.lazy_ensure);
   return s;
}

void
mongo_helper_sessions_destroy (mongo_helper_sessions_t *sessions)
{
   if (!sessions) {
      return;
   }
   mh_web_setup_destroy (&sessions->setup);
   mh_web_ring_destroy (&sessions->ring);
   bson_free (sessions->coll);
   bson_free (sessions);
}

bool
mongo_helper_sessions_ensure (mongo_helper_sessions_t *sessions, mongo_helper_error_t *error)
{
   mh_web_index_t ix[] = {
      {"expiresAt_ttl", "expiresAt", 1, NULL, 0, 0},
      {"userId_1", "userId", 1, NULL, 0, -1},
   };
   mh_web_ensure_t e;
   mh_call_t call = {MH_OPID_SESSIONS_ENSURE_INDEXES,
                     MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT,
                     NULL,
                     NULL,
                     NULL};

   mh_error_clear (error);
   if (!sessions) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_sessions_ensure: sessions is NULL");
   }
   e.coll = sessions->coll;
   e.ix = ix;
   e.n = 2;
   call.collection = sessions->coll;
   if (!mh_run (&call, mh_web_ensure_op, &e, error)) {
      return false;
   }
   mh_web_setup_done (&sessions->setup);
   return true;
}

static bool
mh_sessions_ensure_cb (void *h, mongo_helper_error_t *error)
{
   return mongo_helper_sessions_ensure (h, error);
}

/* Validates a client-supplied id (exact length and alphabet, so nothing
 * else ever reaches a filter) and hashes it to the stored _id.  A missing
 * or malformed id is NOT_FOUND: it comes from a cookie, not from code, and
 * a first visit has none. */
static bool
mh_session_key (const char *id, char hex[65], mongo_helper_error_t *error)
{
   size_t i;

   if (!id) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_NOT_FOUND,
                      0,
                      "no session id (e.g. no cookie yet): start a new session");
   }
   for (i = 0; id[i] && i <= MONGO_HELPER_SESSION_ID_LEN; i++) {
      char c = id[i];
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_')) {
         break;
      }
   }
   if (i != MONGO_HELPER_SESSION_ID_LEN || id[i] != '\0') {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_NOT_FOUND,
                      0,
                      "no such session: the id is not a well-formed session "
                      "id (43 base64url characters)");
   }
   if (!mh_sha256_hex (id, MONGO_HELPER_SESSION_ID_LEN, hex)) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INTERNAL, 0, "SHA-256 of the session id failed (OpenSSL)");
   }
   return true;
}

bool
mh_sessions_begin (mongo_helper_sessions_t *s,
                   const char *id,
                   char hex[65],
                   mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!s) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "sessions handle is NULL");
   }
   if (hex && !mh_session_key (id, hex, error)) {
      return false;
   }
   return mh_web_ready (&s->setup, mh_sessions_ensure_cb, s, error);
}

static bool
mh_session_not_found (mongo_helper_error_t *error)
{
   return mh_fail (error,
                   MONGO_HELPER_ERROR_NOT_FOUND,
                   0,
                   "no such session (unknown or expired): start a new one");
}

/* { _id: hex, expiresAt: { $gt: now } } */
void
mh_session_filter (bson_t *f, const char *hex, int64_t now)
{
   BSON_APPEND_UTF8 (f, "_id", hex);
   mh_web_append_live (f, "expiresAt", now);
}

/* A regenerated session keeps its document until the grace ends, marked
 * with the digest of its successor's id: { replacedBy: { $exists: false } }
 * matches only sessions nobody has regenerated. */
void
mh_session_unclaimed (bson_t *f)
{
   bson_t ex;

   BSON_APPEND_DOCUMENT_BEGIN (f, "replacedBy", &ex);
   BSON_APPEND_BOOL (&ex, "$exists", false);
   bson_append_document_end (f, &ex);
}

static int64_t
mh_session_expiry (const mongo_helper_sessions_t *s, int64_t now, int64_t abs_exp)
{
   int64_t e = now + s->opt.idle_lifetime_ms;
   return abs_exp > 0 && abs_exp < e ? abs_exp : e;
}

/* The stored _id `hex` as a value, for the associated data. */
static bson_value_t
mh_session_id_value (const char *hex)
{
   bson_value_t v;

   v.value_type = BSON_TYPE_UTF8;
   v.value.v_utf8.str = (char *) hex;
   v.value.v_utf8.len = (uint32_t) strlen (hex);
   return v;
}

/* Appends the data of session `hex`: sealed with the current key when the
 * handle has a ring, else as `data`. */
static bool
mh_session_append_data (mongo_helper_sessions_t *s,
                        const mh_keyring_t *ring,
                        const char *hex,
                        const bson_t *data,
                        bson_t *doc,
                        mongo_helper_error_t *error)
{
   bson_value_t id = mh_session_id_value (hex);

   if (ring) {
      return mh_web_seal (ring, s->coll, &id, bson_get_data (data), data->len, doc, error);
   }
   BSON_APPEND_DOCUMENT (doc, "data", data);
   return true;
}

/* Inserts the session `hex` (the digest of a new id). */
bool
mh_session_insert (mongo_helper_sessions_t *s,
                   const mh_keyring_t *ring,
                   mh_opid_t op,
                   const char *hex,
                   const bson_t *data,
                   const char *user_id,
                   int64_t created,
                   int64_t abs_exp,
                   mongo_helper_error_t *error)
{
   bson_t doc = BSON_INITIALIZER;
   bson_t empty = BSON_INITIALIZER;
   int64_t now = mh_wall_ms ();
   const mh_call_t call = {op, MH_OP_WRITE | MH_OP_CHECKED, NULL, s->coll, NULL};
   bool ok;

   if (created == 0) { /* a new session, not a regenerated one */
      created = now;
      abs_exp = s->opt.absolute_lifetime_ms > 0 ? now + s->opt.absolute_lifetime_ms : 0;
   }
   BSON_APPEND_UTF8 (&doc, "_id", hex);
   if (!mh_session_append_data (s, ring, hex, data ? data : &empty, &doc, error)) {
      bson_destroy (&doc);
      bson_destroy (&empty);
      return false;
   }
   if (user_id) {
      BSON_APPEND_UTF8 (&doc, "userId", user_id);
   }
   mh_web_append_date (&doc, "createdAt", created);
   mh_web_append_date (&doc, "lastSeen", now);
   mh_web_append_date (&doc, "expiresAt", mh_session_expiry (s, now, abs_exp));
   if (abs_exp > 0) {
      mh_web_append_date (&doc, "absoluteExpiresAt", abs_exp);
   }
   ok = mh_crud_insert_one (&call, &doc, error);
   bson_destroy (&doc);
   bson_destroy (&empty);
   return ok;
}

/* A new id and its digest. */
bool
mh_session_new_id (char id[MONGO_HELPER_SESSION_ID_SIZE], char hex[65], mongo_helper_error_t *error)
{
   return mh_web_id_new (id, error) && mh_session_key (id, hex, error);
}

bool
mongo_helper_sessions_create (mongo_helper_sessions_t *sessions,
                              const bson_t *data,
                              const char *user_id,
                              char id_out[MONGO_HELPER_SESSION_ID_SIZE],
                              mongo_helper_error_t *error)
{
   char id[MONGO_HELPER_SESSION_ID_SIZE];
   char hex[65];
   const mh_keyring_t *ring;

   if (!mh_sessions_begin (sessions, NULL, NULL, error) ||
       !mh_web_ring (&sessions->ring, &ring, error)) {
      return false;
   }
   if (!id_out) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_sessions_create: id_out is NULL");
   }
   if (user_id && !mh_web_str_ok (user_id, "user_id", error)) {
      return false;
   }
   if (data && !mh_web_doc_ok ("mongo_helper_sessions_create", "session data", data, error)) {
      return false;
   }
   if (!mh_session_new_id (id, hex, error) ||
       !mh_session_insert (
          sessions, ring, MH_OPID_SESSIONS_CREATE, hex, data, user_id, 0, 0, error)) {
      return false;
   }
   memcpy (id_out, id, sizeof id);
   return true;
}

/* Reads the live session document into `doc` (`opts` NULL: all fields). */
static bool
mh_session_read (mongo_helper_sessions_t *s,
                 mh_opid_t op,
                 const char *hex,
                 const bson_t *opts,
                 int64_t now,
                 bson_t *doc,
                 mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_READ | MH_OP_CHECKED, NULL, s->coll, NULL};
   bson_t f = BSON_INITIALIZER;
   bool ok, found;

   mh_session_filter (&f, hex, now);
   ok = mh_crud_find_one (&call, &f, opts, doc, &found, error);
   bson_destroy (&f);
   if (ok && !found) {
      return mh_session_not_found (error);
   }
   return ok;
}

int64_t
mh_doc_date (const bson_t *doc, const char *field)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME (&it)) {
      return bson_iter_date_time (&it);
   }
   return 0;
}

/* Copies the session document's data into `data_out` (initialised): the
 * sealed payload opened with the handle's ring, or the clear `data` of a
 * session stored before encryption was turned on.  INTEGRITY when the
 * sealed payload does not open; nothing of it is returned then. */
bool
mh_session_data (mongo_helper_sessions_t *s,
                 mh_opid_t op,
                 const bson_t *doc,
                 bson_t *data_out,
                 mongo_helper_error_t *error)
{
   const mh_keyring_t *ring;
   bson_iter_t it;
   uint32_t len;
   const uint8_t *d;
   bson_t v;

   if (bson_has_field (doc, MH_WEB_SEALED)) {
      if (!mh_web_ring (&s->ring, &ring, error)) {
         return false;
      }
      bson_destroy (data_out);
      return mh_web_open (ring, op, s->coll, doc, data_out, error);
   }
   if (bson_iter_init_find (&it, doc, "data") && BSON_ITER_HOLDS_DOCUMENT (&it)) {
      bson_iter_document (&it, &len, &d);
      if (bson_init_static (&v, d, len)) {
         bson_destroy (data_out);
         bson_copy_to (&v, data_out);
      }
   }
   return true;
}

bool
mongo_helper_sessions_load (mongo_helper_sessions_t *sessions,
                            const char *id,
                            bson_t *data_out,
                            mongo_helper_error_t *error)
{
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   bool ok;

   if (data_out) {
      bson_init (data_out);
   }
   if (!mh_sessions_begin (sessions, id, hex, error)) {
      bson_destroy (&doc);
      return false;
   }
   if (!data_out) {
      bson_destroy (&doc);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_sessions_load: data_out is NULL");
   }
   ok = mh_session_read (sessions, MH_OPID_SESSIONS_LOAD, hex, NULL, mh_wall_ms (), &doc, error) &&
        mh_session_data (sessions, MH_OPID_SESSIONS_LOAD, &doc, data_out, error);
   bson_destroy (&doc);
   return ok;
}

/* The lazy touch of a session document just read at `now`: when its
 * lastSeen is older than touch_interval_ms, one update slides lastSeen and
 * expiresAt (capped by absoluteExpiresAt).  Its filter repeats the lastSeen
 * condition, so concurrent touches write once between them, and requires
 * an unclaimed session, so a touch never extends the old id of a
 * regenerated session, whichever runs first. */
static bool
mh_session_touch_due (mongo_helper_sessions_t *s,
                      const char *hex,
                      const bson_t *doc,
                      int64_t now,
                      bool *wrote,
                      mongo_helper_error_t *error)
{
   const mh_call_t call = {
      MH_OPID_SESSIONS_TOUCH, MH_OP_WRITE | MH_OP_CHECKED, NULL, s->coll, NULL};
   int64_t threshold = now - s->opt.touch_interval_ms;
   bson_t f = BSON_INITIALIZER;
   bson_t u = BSON_INITIALIZER;
   bson_t set, lt;
   int64_t n = 0;
   bool ok;

   if (mh_doc_date (doc, "lastSeen") >= threshold || bson_has_field (doc, "replacedBy")) {
      return true; /* fresh enough (or retired): the whole point is not writing */
   }
   mh_session_filter (&f, hex, now);
   BSON_APPEND_DOCUMENT_BEGIN (&f, "lastSeen", &lt);
   mh_web_append_date (&lt, "$lt", threshold);
   bson_append_document_end (&f, &lt);
   mh_session_unclaimed (&f);
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &set);
   mh_web_append_date (&set, "lastSeen", now);
   mh_web_append_date (
      &set, "expiresAt", mh_session_expiry (s, now, mh_doc_date (doc, "absoluteExpiresAt")));
   bson_append_document_end (&u, &set);
   ok = mh_web_update (&call, MH_UPDATE_ONE, &f, &u, false, &n, error);
   if (ok && wrote) {
      *wrote = n > 0;
   }
   bson_destroy (&f);
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_sessions_load_touch (mongo_helper_sessions_t *sessions,
                                  const char *id,
                                  bson_t *data_out,
                                  bool *touched,
                                  mongo_helper_error_t *error)
{
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   int64_t now = mh_wall_ms ();
   bool ok;

   if (touched) {
      *touched = false;
   }
   if (data_out) {
      bson_init (data_out);
   }
   ok = mh_sessions_begin (sessions, id, hex, error);
   if (ok && !data_out) {
      ok = mh_fail (error,
                    MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                    0,
                    "mongo_helper_sessions_load_touch: data_out is NULL");
   }
   /* The data is opened before the touch: a session whose payload does not
    * open is not kept alive. */
   ok = ok && mh_session_read (sessions, MH_OPID_SESSIONS_LOAD, hex, NULL, now, &doc, error) &&
        mh_session_data (sessions, MH_OPID_SESSIONS_LOAD, &doc, data_out, error) &&
        mh_session_touch_due (sessions, hex, &doc, now, touched, error);
   if (!ok && data_out) {
      bson_reinit (data_out);
   }
   bson_destroy (&doc);
   return ok;
}

/* One update on a live session; NOT_FOUND when it matched nothing.  With
 * `clear_only` (a change of the clear `data` by a handle without keys) it
 * leaves an encrypted session alone, which then fails with INTEGRITY:
 * writing `data` beside the sealed payload would be lost on the next
 * load. */
static bool
mh_session_update (mongo_helper_sessions_t *s,
                   mh_opid_t op,
                   const char *hex,
                   const bson_t *update,
                   bool clear_only,
                   mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_WRITE | MH_OP_CHECKED, NULL, s->coll, NULL};
   bson_t f = BSON_INITIALIZER;
   bson_t doc = BSON_INITIALIZER;
   bson_t data = BSON_INITIALIZER;
   bson_t ex;
   mongo_helper_error_t local;
   int64_t n;
   bool ok;

   if (!error) {
      error = &local;
   }
   mh_session_filter (&f, hex, mh_wall_ms ());
   if (clear_only) {
      BSON_APPEND_DOCUMENT_BEGIN (&f, MH_WEB_SEALED, &ex);
      BSON_APPEND_BOOL (&ex, "$exists", false);
      bson_append_document_end (&f, &ex);
   }
   ok = mh_web_update (&call, MH_UPDATE_ONE, &f, update, false, &n, error);
   if (ok && n == 0) {
      /* Missing (NOT_FOUND), or encrypted while this handle has no keys
       * (INTEGRITY); else it went away between the two calls. */
      ok = clear_only && mh_session_read (s, op, hex, NULL, mh_wall_ms (), &doc, error) &&
           mh_session_data (s, op, &doc, &data, error);
      if (ok || error->category == MONGO_HELPER_ERROR_NONE) {
         ok = mh_session_not_found (error);
      }
   }
   bson_destroy (&f);
   bson_destroy (&doc);
   bson_destroy (&data);
   return ok;
}

/* Read-modify-write of an encrypted session's data: reads it, opens it,
 * lets `edit` make the new data, seals that with the current key and
 * writes it only if the payload is still the one read (the nonce
 * compare-and-swap), else starts again.  A session stored in clear text is
 * encrypted by its first such write. */
typedef void (*mh_session_edit_fn) (const bson_t *data, bson_t *out, const void *ctx);

static bool
mh_session_rewrite (mongo_helper_sessions_t *s,
                    const mh_keyring_t *ring,
                    mh_opid_t op,
                    const char *hex,
                    mh_session_edit_fn edit,
                    const void *ctx,
                    mongo_helper_error_t *error)
{
   const mh_call_t call = {op, MH_OP_WRITE | MH_OP_CHECKED, NULL, s->coll, NULL};
   bson_value_t id = mh_session_id_value (hex);

   for (int attempt = 1;; attempt++) {
      bson_t doc = BSON_INITIALIZER, data = BSON_INITIALIZER, next = BSON_INITIALIZER;
      bson_t f = BSON_INITIALIZER, u = BSON_INITIALIZER;
      int64_t now = mh_wall_ms (), n = 0;
      bool ok;

      ok = mh_session_read (s, op, hex, NULL, now, &doc, error) &&
           mh_session_data (s, op, &doc, &data, error);
      if (ok) {
         edit (&data, &next, ctx);
         ok = mh_web_size_ok (next.len, "session data", error);
      }
      if (ok) {
         bson_destroy (&u);
         mh_session_filter (&f, hex, now);
         mh_web_cas (&f, &doc, "data");
         ok = mh_web_reseal_update (ring, s->coll, &id, &next, "data", &u, error) &&
              mh_web_update (&call, MH_UPDATE_ONE, &f, &u, false, &n, error);
      }
      bson_destroy (&doc);
      bson_destroy (&data);
      bson_destroy (&next);
      bson_destroy (&f);
      bson_destroy (&u);
      if (!ok || n > 0) {
         return ok;
      }
      if (attempt == MH_SESSION_CAS_TRIES) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_SERVER,
                         112, /* WriteConflict */
                         "%s: the encrypted session changed under %d attempts to write it "
                         "(other requests keep writing it): retry",
                         mh_op_name (op),
                         MH_SESSION_CAS_TRIES);
      }
   }
}

/* Edits for mh_session_rewrite: set (`ctx` the fields, replacing those the
 * data has in place and appending the others, as $set does) and unset
 * (`ctx` an mh_session_names_t). */
static void
mh_session_edit_set (const bson_t *data, bson_t *out, const void *ctx)
{
   const bson_t *fields = ctx;
   bson_iter_t it, f;

   if (bson_iter_init (&it, data)) {
      while (bson_iter_next (&it)) {
         if (bson_iter_init_find (&f, fields, bson_iter_key (&it))) {
            bson_append_iter (out, bson_iter_key (&it), -1, &f);
         } else {
            bson_append_iter (out, bson_iter_key (&it), -1, &it);
         }
      }
   }
   if (bson_iter_init (&f, fields)) {
      while (bson_iter_next (&f)) {
         if (!bson_has_field (data, bson_iter_key (&f))) {
            bson_append_iter (out, bson_iter_key (&f), -1, &f);
         }
      }
   }
}

typedef struct {
   const char *const *names;
   size_t n;
} mh_session_names_t;

static void
mh_session_edit_unset (const bson_t *data, bson_t *out, const void *ctx)
{
   const mh_session_names_t *u = ctx;
   bson_iter_t it;

   if (bson_iter_init (&it, data)) {
      while (bson_iter_next (&it)) {
         size_t i = 0;

         while (i < u->n && strcmp (u->names[i], bson_iter_key (&it)) != 0) {
            i++;
         }
         if (i == u->n) {
            bson_append_iter (out, bson_iter_key (&it), -1, &it);
         }
      }
   }
}

bool
mongo_helper_sessions_save (mongo_helper_sessions_t *sessions,
                            const char *id,
                            const bson_t *data,
                            mongo_helper_error_t *error)
{
   char hex[65];
   const mh_keyring_t *ring;
   bson_value_t v;
   bson_t u;
   bool ok;

   if (!mh_sessions_begin (sessions, id, hex, error) ||
       !mh_web_ring (&sessions->ring, &ring, error)) {
      return false;
   }
   if (!data) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "mongo_helper_sessions_save: data is NULL");
   }
   if (!mh_web_doc_ok ("mongo_helper_sessions_save", "session data", data, error)) {
      return false;
   }
   /* A whole new payload: sealed with the current key whatever the stored
    * one was (so a save also moves a session to the current key). */
   if (ring) {
      v = mh_session_id_value (hex);
      ok = mh_web_reseal_update (ring, sessions->coll, &v, data, "data", &u, error);
   } else {
      bson_init (&u);
      BCON_APPEND (&u, "$set", "{", "data", BCON_DOCUMENT (data), "}");
      ok = true;
   }
   ok = ok && mh_session_update (sessions, MH_OPID_SESSIONS_SAVE, hex, &u, !ring, error);
   bson_destroy (&u);
   return ok;
}

/* A name set or unset names one top-level field of the data: in an update
 * a '.' would make it a path into a nested document, and a leading '$' an
 * operator, so both are refused rather than reinterpreted. */
static bool
mh_session_field_ok (const char *fn, const char *name, mongo_helper_error_t *error)
{
   if (!name || !*name || name[0] == '$' || strchr (name, '.')) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: session field name '%.64s' is NULL, empty, starts with '$' "
                      "or contains '.': only top-level fields of the data can be set "
                      "or unset (set the whole top-level field, or use "
                      "mongo_helper_sessions_save())",
                      fn,
                      name ? name : "(null)");
   }
   return true;
}

bool
mongo_helper_sessions_set (mongo_helper_sessions_t *sessions,
                           const char *id,
                           const bson_t *fields,
                           mongo_helper_error_t *error)
{
   char hex[65];
   bson_t u = BSON_INITIALIZER;
   bson_t set;
   bson_iter_t it;
   const mh_keyring_t *ring = NULL;
   bool ok = true;
   int n = 0;

   if (!mh_sessions_begin (sessions, id, hex, error) ||
       !mh_web_ring (&sessions->ring, &ring, error)) {
      bson_destroy (&u);
      return false;
   }
   if (!fields || !mh_web_doc_ok ("mongo_helper_sessions_set", "session fields", fields, error) ||
       !bson_iter_init (&it, fields)) {
      bson_destroy (&u);
      return fields ? false
                    : mh_fail (error,
                               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                               0,
                               "mongo_helper_sessions_set: fields is NULL");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$set", &set);
   while (ok && bson_iter_next (&it)) {
      const char *k = bson_iter_key (&it);
      char *path;

      ok = mh_session_field_ok ("mongo_helper_sessions_set", k, error);
      if (ok) {
         path = bson_strdup_printf ("data.%s", k);
         bson_append_iter (&set, path, -1, &it);
         bson_free (path);
         n++;
      }
   }
   bson_append_document_end (&u, &set);
   if (ok && n == 0) {
      ok = mh_fail (error,
                    MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                    0,
                    "mongo_helper_sessions_set: fields is empty");
   }
   if (ok && ring) {
      ok = mh_session_rewrite (
         sessions, ring, MH_OPID_SESSIONS_SET, hex, mh_session_edit_set, fields, error);
   } else if (ok) {
      ok = mh_session_update (sessions, MH_OPID_SESSIONS_SET, hex, &u, true, error);
   }
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_sessions_unset (mongo_helper_sessions_t *sessions,
                             const char *id,
                             const char *const *fields,
                             size_t n,
                             mongo_helper_error_t *error)
{
   char hex[65];
   bson_t u = BSON_INITIALIZER;
   bson_t unset;
   const mh_keyring_t *ring = NULL;
   mh_session_names_t names = {fields, n};
   bool ok = true;

   if (!mh_sessions_begin (sessions, id, hex, error) ||
       !mh_web_ring (&sessions->ring, &ring, error)) {
      bson_destroy (&u);
      return false;
   }
   if (!fields || n == 0) {
      bson_destroy (&u);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_sessions_unset: no fields given");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&u, "$unset", &unset);
   for (size_t i = 0; ok && i < n; i++) {
      char *path;

      ok = mh_session_field_ok ("mongo_helper_sessions_unset", fields[i], error);
      if (ok) {
         path = bson_strdup_printf ("data.%s", fields[i]);
         BSON_APPEND_UTF8 (&unset, path, "");
         bson_free (path);
      }
   }
   bson_append_document_end (&u, &unset);
   if (ok && ring) {
      ok = mh_session_rewrite (
         sessions, ring, MH_OPID_SESSIONS_UNSET, hex, mh_session_edit_unset, &names, error);
   } else if (ok) {
      ok = mh_session_update (sessions, MH_OPID_SESSIONS_UNSET, hex, &u, true, error);
   }
   bson_destroy (&u);
   return ok;
}

bool
mongo_helper_sessions_set_user (mongo_helper_sessions_t *sessions,
                                const char *id,
                                const char *user_id,
                                mongo_helper_error_t *error)
{
   char hex[65];
   bson_t *u;
   bool ok;

   if (!mh_sessions_begin (sessions, id, hex, error)) {
      return false;
   }
   if (user_id && !mh_web_str_ok (user_id, "user_id", error)) {
      return false;
   }
   u = user_id ? BCON_NEW ("$set", "{", "userId", BCON_UTF8 (user_id), "}")
               : BCON_NEW ("$unset", "{", "userId", BCON_UTF8 (""), "}");
   ok = mh_session_update (sessions, MH_OPID_SESSIONS_SET_USER, hex, u, false, error);
   bson_destroy (u);
   return ok;
}

bool
mongo_helper_sessions_touch (mongo_helper_sessions_t *sessions,
                             const char *id,
                             bool *wrote,
                             mongo_helper_error_t *error)
{
   char hex[65];
   bson_t doc = BSON_INITIALIZER;
   /* The touch needs the dates, not the data. */
   bson_t *opts =
      BCON_NEW ("projection", "{", "data", BCON_INT32 (0), MH_WEB_SEALED, BCON_INT32 (0), "}");
   int64_t now = mh_wall_ms ();
   bool ok;

   if (wrote) {
      *wrote = false;
   }
   ok = mh_sessions_begin (sessions, id, hex, error) &&
        mh_session_read (sessions, MH_OPID_SESSIONS_TOUCH, hex, opts, now, &doc, error) &&
        mh_session_touch_due (sessions, hex, &doc, now, wrote, error);
   bson_destroy (&doc);
   bson_destroy (opts);
   return ok;
}

bool
mongo_helper_sessions_delete (mongo_helper_sessions_t *sessions,
                              const char *id,
                              mongo_helper_error_t *error)
{
   char hex[65];
   bson_t f = BSON_INITIALIZER;
   mh_call_t call = {
      MH_OPID_SESSIONS_DELETE, MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT, NULL, NULL, NULL};
   mongo_helper_error_t local;
   bool ok;

   if (!error) {
      error = &local;
   }
   if (!mh_sessions_begin (sessions, id, hex, error)) {
      bson_destroy (&f);
      /* A missing or malformed id names no session: already deleted. */
      if (error->category == MONGO_HELPER_ERROR_NOT_FOUND) {
         mh_error_clear (error);
         return true;
      }
      return false;
   }
   BSON_APPEND_UTF8 (&f, "_id", hex);
   call.collection = sessions->coll;
   ok = mh_crud_delete (&call, &f, false, NULL, error);
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_sessions_delete_user (mongo_helper_sessions_t *sessions,
                                   const char *user_id,
                                   int64_t *deleted,
                                   mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_call_t call = {MH_OPID_SESSIONS_DELETE_USER,
                     MH_OP_WRITE | MH_OP_CHECKED | MH_OP_IDEMPOTENT,
                     NULL,
                     NULL,
                     NULL};
   bool ok;

   if (deleted) {
      *deleted = 0;
   }
   if (!mh_sessions_begin (sessions, NULL, NULL, error) ||
       !mh_web_str_ok (user_id, "user_id", error)) {
      bson_destroy (&f);
      return false;
   }
   BSON_APPEND_UTF8 (&f, "userId", user_id);
   call.collection = sessions->coll;
   ok = mh_crud_delete (&call, &f, true, deleted, error);
   bson_destroy (&f);
   return ok;
}

bool
mongo_helper_sessions_count (mongo_helper_sessions_t *sessions,
                             const char *user_id,
                             int64_t *count,
                             mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER;
   mh_call_t call = {MH_OPID_SESSIONS_COUNT, MH_OP_READ | MH_OP_CHECKED, NULL, NULL, NULL};
   bool ok;

   if (count) {
      *count = 0;
   }
   if (!mh_sessions_begin (sessions, NULL, NULL, error) ||
       (user_id && !mh_web_str_ok (user_id, "user_id", error))) {
      bson_destroy (&f);
      return false;
   }
   if (!count) {
      bson_destroy (&f);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_sessions_count: count is NULL");
   }
   if (user_id) {
      BSON_APPEND_UTF8 (&f, "userId", user_id);
   }
   mh_web_append_live (&f, "expiresAt", mh_wall_ms ());
   /* The old id of a regenerated session is not a session of its own. */
   mh_session_unclaimed (&f);
   call.collection = sessions->coll;
   ok = mh_crud_count (&call, &f, NULL, count, error);
   bson_destroy (&f);
   return ok;
}
