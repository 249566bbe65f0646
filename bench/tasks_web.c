/*
 * bench/tasks_web.c — web-application tasks: session load + lazy touch (clear and
 * sealed), cache get/set, event logging (synchronous and buffered).
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- Task: session load + lazy touch --------------------------------- */

/* Sessions are stored under the lowercase hex SHA-256 of their id, never
 * the id itself (issue 3).  Ids here are deterministic but well-formed for
 * mongo_helper_sessions_*: 43 base64url characters, "sess" + 39 digits; the
 * documents have the store's shape (data, userId, createdAt, lastSeen,
 * expiresAt), so the helper's load finds the sessions seeded here. */
static void
session_key (long i, char hex[65])
{
   char token[48];
   unsigned char md[SHA256_DIGEST_LENGTH];

   snprintf (token, sizeof token, "sess%039ld", i);
   SHA256 ((const unsigned char *) token, strlen (token), md);
   for (int k = 0; k < SHA256_DIGEST_LENGTH; k++) {
      snprintf (hex + 2 * k, 3, "%02x", md[k]);
   }
}

/* Session i in the store's format; with `cart_len` > 0 its data also
 * holds a string of that many letters (session_sealed's ~1 KB). */
static bson_t *
gen_session_cart (long i, int cart_len)
{
   char hex[65], uid[16], cart[1024];
   bson_t *d = bson_new (), data;
   int64_t now = now_ms ();

   BSON_ASSERT (cart_len >= 0 && cart_len < (int) sizeof cart);
   session_key (i, hex);
   for (int k = 0; k < cart_len; k++) {
      cart[k] = (char) ('a' + (i + k) % 26);
   }
   cart[cart_len] = '\0';
   BSON_APPEND_UTF8 (d, "_id", hex);
   BSON_APPEND_DOCUMENT_BEGIN (d, "data", &data);
   BSON_APPEND_INT32 (&data, "counter", (int32_t) i);
   BSON_APPEND_UTF8 (&data, "theme", "dark");
   if (cart_len > 0) {
      BSON_APPEND_UTF8 (&data, "cart", cart);
   }
   bson_append_document_end (d, &data);
   snprintf (uid, sizeof uid, "user%ld", i % 100);
   BSON_APPEND_UTF8 (d, "userId", uid);
   BSON_APPEND_DATE_TIME (d, "createdAt", now);
   BSON_APPEND_DATE_TIME (d, "lastSeen", now);
   BSON_APPEND_DATE_TIME (d, "expiresAt", now + (int64_t) SESSION_IDLE_S * 1000);
   return d;
}

static bson_t *
gen_session (long i)
{
   return gen_session_cart (i, 0);
}

bool
setup_sessions (char *err, size_t err_size)
{
   return admin_seed ("bench_sessions", B.sessions_n, gen_session, err, err_size);
}

/* Every run sees fresh sessions, so lazy touch takes its common path (no
 * write) on all sides alike. */
static bool
refresh_sessions (const char *collection, char *err, size_t err_size)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, collection);
   int64_t now = now_ms ();
   bson_t filter = BSON_INITIALIZER;
   bson_t *update = BCON_NEW ("$set",
                              "{",
                              "lastSeen",
                              BCON_DATE_TIME (now),
                              "expiresAt",
                              BCON_DATE_TIME (now + (int64_t) SESSION_IDLE_S * 1000),
                              "}");
   bson_error_t e;
   bool ok = mongoc_collection_update_many (coll, &filter, update, NULL, NULL, &e);

   if (!ok) {
      snprintf (err, err_size, "refresh %s: %s", collection, e.message);
   }
   bson_destroy (update);
   bson_destroy (&filter);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return ok;
}

bool
prep_sessions (side_t side, char *err, size_t err_size)
{
   (void) side;
   return refresh_sessions ("bench_sessions", err, err_size);
}

/* Load: find {_id: sha256(token), expiresAt > now}.  Lazy touch: write
 * lastSeen/expiresAt only when lastSeen is older than SESSION_TOUCH_S. */
static bool
op_session (mongoc_collection_t *coll, long i, bson_error_t *e)
{
   char hex[65];
   int64_t now = now_ms ();
   bson_t *filter, *opts = BCON_NEW ("limit", BCON_INT32 (1));
   const bson_t *doc;
   bson_iter_t it;
   mongoc_cursor_t *cur;
   bool ok;

   session_key (i, hex);
   filter = BCON_NEW ("_id", BCON_UTF8 (hex), "expiresAt", "{", "$gt", BCON_DATE_TIME (now), "}");
   cur = mongoc_collection_find_with_opts (coll, filter, opts, NULL);
   ok = mongoc_cursor_next (cur, &doc);
   if (ok) {
      if (bson_iter_init_find (&it, doc, "lastSeen") && BSON_ITER_HOLDS_DATE_TIME (&it) &&
          now - bson_iter_date_time (&it) > (int64_t) SESSION_TOUCH_S * 1000) {
         bson_t sel = BSON_INITIALIZER;
         bson_t *upd = BCON_NEW ("$set",
                                 "{",
                                 "lastSeen",
                                 BCON_DATE_TIME (now),
                                 "expiresAt",
                                 BCON_DATE_TIME (now + (int64_t) SESSION_IDLE_S * 1000),
                                 "}");
         BSON_APPEND_UTF8 (&sel, "_id", hex);
         ok = mongoc_collection_update_one (coll, &sel, upd, NULL, NULL, e);
         bson_destroy (upd);
         bson_destroy (&sel);
      }
   } else if (!mongoc_cursor_error (cur, e)) {
      bson_set_error (e, 0, 0, "session %ld not found", i);
   }
   mongoc_cursor_destroy (cur);
   bson_destroy (filter);
   bson_destroy (opts);
   return ok;
}

/* The helper's handles, made once like an application does at start-up
 * (no server contact), freed at the end of main().  lazy_ensure off: the
 * harness creates and drops these collections itself. */
mongo_helper_sessions_t *H_SESSIONS;
mongo_helper_cache_t *H_CACHE;
mongo_helper_eventlog_t *H_EVENTS;

/* A session store on `collection` (`keys` NULL: in clear), made once in
 * `*slot`. */
static mongo_helper_sessions_t *
h_store (mongo_helper_sessions_t **slot,
         const char *collection,
         const char *keys,
         mongo_helper_error_t *me)
{
   if (!*slot) {
      mongo_helper_sessions_options_t o;

      mongo_helper_sessions_options_init (&o);
      o.collection = collection;
      o.idle_lifetime_ms = (int64_t) SESSION_IDLE_S * 1000;
      o.touch_interval_ms = (int64_t) SESSION_TOUCH_S * 1000;
      o.lazy_ensure = false;
      o.keys = keys;
      *slot = mongo_helper_sessions_new (&o, me);
   }
   return *slot;
}

/* r->ops loads (with the lazy touch) of the seeded sessions through `S`,
 * each checked: the seeded counter, and the 1 KB "cart" when `cart`. */
static status_t
load_touch_loop (run_t *r, mongo_helper_sessions_t *S, const mongo_helper_error_t *made, bool cart)
{
   char token[48];

   if (!S) {
      return fail_mh (r, "mongo_helper_sessions_new", made);
   }
   for (long j = 0; j < r->ops; j++) {
      long i = j % B.sessions_n;
      mongo_helper_error_t me;
      bson_t data;
      bson_iter_t it;
      bool ok;

      snprintf (token, sizeof token, "sess%039ld", i);
      if (!mongo_helper_sessions_load_touch (S, token, &data, NULL, &me)) {
         bson_destroy (&data);
         return fail_mh (r, "mongo_helper_sessions_load_touch", &me);
      }
      ok = bson_iter_init_find (&it, &data, "counter") && BSON_ITER_HOLDS_INT32 (&it) &&
           bson_iter_int32 (&it) == (int32_t) i &&
           (!cart || (bson_iter_init_find (&it, &data, "cart") && BSON_ITER_HOLDS_UTF8 (&it)));
      bson_destroy (&data);
      if (!ok) {
         return fail (r, "session %ld: loaded data is not the seeded one", i);
      }
   }
   return ST_OK;
}

/* One call per request: load with the lazy touch (no write while the
 * session is fresh, as prep_sessions keeps it). */
status_t
helper_session (run_t *r)
{
   mongo_helper_error_t me;

   return load_touch_loop (r, h_store (&H_SESSIONS, "bench_sessions", NULL, &me), &me, false);
}

status_t
raw_session (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_sessions");
   bson_error_t e;
   status_t st = ST_OK;

   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!op_session (coll, j % B.sessions_n, &e)) {
         st = fail_bson (r, "session load/touch", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: sealed session load + lazy touch (issue 13) --------------- */

/* The cost of encryption at rest, measured as a ratio taken in one run:
 * the same mongo_helper_sessions_load_touch() on two stores that differ
 * only in their key ring.  The "helper" side loads from a sealed store
 * (AES-256-GCM, one fixed test key), the "raw" side from a store without
 * keys; both hold the same sessions with ~1 KB of data.  Seeded in clear
 * text, then sealed by mongo_helper_sessions_rekey(), so the tokens stay
 * the deterministic ones of session_key(). */
#define SEALED_KEYS "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SEALED_BLOB 960

mongo_helper_sessions_t *H_SEALED[2]; /* [0] sealed, [1] clear */

static bson_t *
gen_session_1k (long i)
{
   return gen_session_cart (i, SEALED_BLOB);
}

static mongo_helper_sessions_t *
h_sealed (bool sealed, mongo_helper_error_t *me)
{
   return sealed ? h_store (&H_SEALED[0], "bench_sessions_sealed", SEALED_KEYS, me)
                 : h_store (&H_SEALED[1], "bench_sessions_clear", NULL, me);
}

bool
setup_sealed (char *err, size_t err_size)
{
   mongo_helper_sessions_t *S;
   mongo_helper_error_t me;
   int64_t changed = 0;

   if (!admin_seed ("bench_sessions_clear", B.sessions_n, gen_session_1k, err, err_size) ||
       !admin_seed ("bench_sessions_sealed", B.sessions_n, gen_session_1k, err, err_size)) {
      return false;
   }
   S = h_sealed (true, &me);
   if (!S || !mongo_helper_sessions_rekey (S, 0, &changed, &me)) {
      snprintf (err, err_size, "sealing the seeded sessions: %s", me.message);
      return false;
   }
   if (changed != B.sessions_n) {
      snprintf (err, err_size, "rekey sealed %" PRId64 " of %ld sessions", changed, B.sessions_n);
      return false;
   }
   return true;
}

bool
prep_sealed (side_t side, char *err, size_t err_size)
{
   return refresh_sessions (
      side == SIDE_RAW ? "bench_sessions_clear" : "bench_sessions_sealed", err, err_size);
}

static status_t
sealed_loads (run_t *r, bool sealed)
{
   mongo_helper_error_t me;

   return load_touch_loop (r, h_sealed (sealed, &me), &me, true);
}

status_t
helper_sealed (run_t *r)
{
   return sealed_loads (r, true);
}

status_t
clear_sealed (run_t *r)
{
   return sealed_loads (r, false);
}

/* ---- Tasks: cache get, cache set ------------------------------------- */

static bson_t *
gen_cache_entry (long i)
{
   char key[32];
   bson_t *d = bson_new ();
   bson_t *value = gen_flat (i, false);

   snprintf (key, sizeof key, "user:%ld", i);
   BSON_APPEND_UTF8 (d, "_id", key);
   BSON_APPEND_DOCUMENT (d, "value", value);
   BSON_APPEND_DATE_TIME (d, "expiresAt", now_ms () + (int64_t) CACHE_TTL_S * 1000);
   bson_destroy (value);
   return d;
}

bool
setup_cache (char *err, size_t err_size)
{
   return admin_seed ("bench_cache", B.cache_n, gen_cache_entry, err, err_size);
}

/* Get: find {_id: key, expiresAt > now} (the TTL monitor lags). */
static bool
op_cache_get (mongoc_collection_t *coll, long i, bson_error_t *e)
{
   char key[32];
   bson_t *filter, *opts = BCON_NEW ("limit", BCON_INT32 (1));
   const bson_t *doc;
   bson_iter_t it;
   mongoc_cursor_t *cur;
   bool ok;

   snprintf (key, sizeof key, "user:%ld", i);
   filter =
      BCON_NEW ("_id", BCON_UTF8 (key), "expiresAt", "{", "$gt", BCON_DATE_TIME (now_ms ()), "}");
   cur = mongoc_collection_find_with_opts (coll, filter, opts, NULL);
   ok = mongoc_cursor_next (cur, &doc);
   if (ok) {
      ok = bson_iter_init_find (&it, doc, "value") && BSON_ITER_HOLDS_DOCUMENT (&it);
      if (!ok) {
         bson_set_error (e, 0, 0, "cache entry %s has no value document", key);
      }
   } else if (!mongoc_cursor_error (cur, e)) {
      bson_set_error (e, 0, 0, "cache miss for %s", key);
   }
   mongoc_cursor_destroy (cur);
   bson_destroy (filter);
   bson_destroy (opts);
   return ok;
}

/* Set: replace {_id: key} with {_id, value, expiresAt}, upsert (the
 * original cache_user_data). */
static bool
op_cache_set (mongoc_collection_t *coll, long i, bson_error_t *e)
{
   char key[32];
   bson_t sel = BSON_INITIALIZER, doc = BSON_INITIALIZER;
   bson_t *opts = BCON_NEW ("upsert", BCON_BOOL (true));
   bool ok;

   snprintf (key, sizeof key, "user:%ld", i % B.cache_n);
   BSON_APPEND_UTF8 (&sel, "_id", key);
   BSON_APPEND_UTF8 (&doc, "_id", key);
   BSON_APPEND_DOCUMENT (&doc, "value", B.flat[i % B.flat_n]);
   BSON_APPEND_DATE_TIME (&doc, "expiresAt", now_ms () + (int64_t) CACHE_TTL_S * 1000);
   ok = mongoc_collection_replace_one (coll, &sel, &doc, opts, NULL, e);
   bson_destroy (opts);
   bson_destroy (&doc);
   bson_destroy (&sel);
   return ok;
}

typedef bool (*coll_op_fn) (mongoc_collection_t *coll, long i, bson_error_t *e);

static status_t
raw_coll_loop (run_t *r, const char *name, coll_op_fn op, long modulo, const char *what)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, name);
   bson_error_t e;
   status_t st = ST_OK;

   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!op (coll, j % modulo, &e)) {
         st = fail_bson (r, what, &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

static mongo_helper_cache_t *
h_cache (run_t *r)
{
   if (!H_CACHE) {
      mongo_helper_cache_options_t o;
      mongo_helper_error_t me;

      mongo_helper_cache_options_init (&o);
      o.collection = "bench_cache";
      o.default_ttl_ms = (int64_t) CACHE_TTL_S * 1000;
      o.lazy_ensure = false;
      H_CACHE = mongo_helper_cache_new (&o, &me);
      if (!H_CACHE) {
         fail_mh (r, "mongo_helper_cache_new", &me);
      }
   }
   return H_CACHE;
}

/* The seeded entries are found by the helper because they have its
 * format: _id = the key itself (keys up to max_key_length, 200), the
 * document under "value", expiresAt a date. */
status_t
helper_cache_get (run_t *r)
{
   mongo_helper_cache_t *C = h_cache (r);
   char key[32];

   if (!C) {
      return ST_FAIL;
   }
   for (long j = 0; j < r->ops; j++) {
      mongo_helper_error_t me;
      bson_t v;
      bool ok;

      snprintf (key, sizeof key, "user:%ld", j % B.cache_n);
      if (!mongo_helper_cache_get (C, key, &v, &me)) {
         bson_destroy (&v);
         return fail_mh (r, "mongo_helper_cache_get", &me);
      }
      ok = bson_has_field (&v, "category");
      bson_destroy (&v);
      if (!ok) {
         return fail (r, "cache entry %s: value is not the seeded document", key);
      }
   }
   return ST_OK;
}

status_t
raw_cache_get (run_t *r)
{
   return raw_coll_loop (r, "bench_cache", op_cache_get, B.cache_n, "cache get");
}

/* Same keys and values as op_cache_set(); afterwards the cache must
 * still hold exactly its B.cache_n entries (a set under another _id
 * format would add documents instead of replacing them). */
status_t
helper_cache_set (run_t *r)
{
   mongo_helper_cache_t *C = h_cache (r);
   char key[32];

   if (!C) {
      return ST_FAIL;
   }
   for (long j = 0; j < r->ops; j++) {
      long i = j % B.flat_n;
      mongo_helper_error_t me;

      snprintf (key, sizeof key, "user:%ld", i % B.cache_n);
      if (!mongo_helper_cache_set (C, key, B.flat[i], (int64_t) CACHE_TTL_S * 1000, &me)) {
         return fail_mh (r, "mongo_helper_cache_set", &me);
      }
   }
   snprintf (r->verify_coll, sizeof r->verify_coll, "bench_cache");
   r->verify_count = B.cache_n;
   return ST_OK;
}

status_t
raw_cache_set (run_t *r)
{
   return raw_coll_loop (r, "bench_cache", op_cache_set, B.flat_n, "cache set");
}

/* ---- Tasks: event logging, synchronous and buffered ------------------ */

bool
prep_events (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "events", side);
   return admin_drop (name, err, err_size);
}

/* Event i's user id, type and metadata: gen_meta()'s, made before any
 * clock runs (so the request-path CPU is the logging call's own). */
static const bson_t *
event_fields (long i, char uid[16], const char **type)
{
   long k = i % B.meta_n;

   memcpy (uid, B.meta_uid[k], 16);
   *type = B.meta_type[k];
   return B.meta[k];
}

/* {user_id, event_type, metadata, timestamp} — the original log_user_event. */
static void
event_doc (bson_t *d, long i)
{
   long k = i % B.meta_n;
   char uid[16];
   const char *type;

   event_fields (i, uid, &type); /* BSON_APPEND_UTF8 evaluates twice */
   bson_init (d);
   BSON_APPEND_UTF8 (d, "user_id", uid);
   BSON_APPEND_UTF8 (d, "event_type", type);
   BSON_APPEND_DOCUMENT (d, "metadata", B.meta[k]);
   BSON_APPEND_DATE_TIME (d, "timestamp", now_ms ());
}

static bool
op_event_sync (mongoc_collection_t *coll, long i, bson_error_t *e)
{
   bson_t d;
   bool ok;

   event_doc (&d, i);
   ok = mongoc_collection_insert_one (coll, &d, NULL, NULL, e);
   bson_destroy (&d);
   return ok;
}

static mongo_helper_eventlog_t *
h_events (run_t *r)
{
   if (!H_EVENTS) {
      mongo_helper_eventlog_options_t o;
      mongo_helper_error_t me;
      static char name[64];

      coll_name (name, sizeof name, "events", SIDE_HELPER);
      mongo_helper_eventlog_options_init (&o);
      o.collection = name;
      o.lazy_ensure = false; /* prep_events() drops it before every run */
      H_EVENTS = mongo_helper_eventlog_new (&o, &me);
      if (!H_EVENTS) {
         fail_mh (r, "mongo_helper_eventlog_new", &me);
      }
   }
   return H_EVENTS;
}

status_t
helper_event_sync (run_t *r)
{
   mongo_helper_eventlog_t *L = h_events (r);
   char name[64];

   if (!L) {
      return ST_FAIL;
   }
   for (long j = 0; j < r->ops; j++) {
      mongo_helper_error_t me;
      char uid[16];
      const char *type;
      const bson_t *meta = event_fields (j, uid, &type);

      if (!mongo_helper_eventlog_log (L, uid, type, meta, 0, &me)) {
         return fail_mh (r, "mongo_helper_eventlog_log", &me);
      }
   }
   coll_name (name, sizeof name, "events", SIDE_HELPER);
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = r->ops;
   return ST_OK;
}

status_t
raw_event_sync (run_t *r)
{
   char name[64];

   coll_name (name, sizeof name, "events", SIDE_RAW);
   return raw_coll_loop (r, name, op_event_sync, B.meta_n, "log event");
}

status_t
count_docs (const char *name, long expected, run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, name);
   bson_t filter = BSON_INITIALIZER;
   bson_error_t e;
   int64_t n = mongoc_collection_count_documents (coll, &filter, NULL, NULL, NULL, &e);
   status_t st = ST_OK;

   if (n < 0) {
      st = fail_bson (r, "count", &e);
   } else if (n != expected) {
      st = fail (r, "%s holds %lld documents, expected %ld", name, (long long) n, expected);
   }
   bson_destroy (&filter);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* The writer flushes at EVENT_FLUSH_MAX events or every EVENT_FLUSH_MS,
 * with a queue (EVENT_QUEUE_CAP) larger than a run, so its BLOCK policy
 * never drops: every event must be stored. */
status_t
helper_event_buffered (run_t *r)
{
   mongo_helper_eventlog_t *L = h_events (r);
   mongo_helper_event_writer_options_t o;
   mongo_helper_event_writer_stats_t stats;
   mongo_helper_event_writer_t *W;
   mongo_helper_error_t me;
   char name[64];
   double t0;

   if (!L) {
      return ST_FAIL;
   }
   mongo_helper_event_writer_options_init (&o);
   o.queue_size = EVENT_QUEUE_CAP;
   o.batch_size = EVENT_FLUSH_MAX;
   o.flush_interval_ms = EVENT_FLUSH_MS;
   o.policy = MONGO_HELPER_QUEUE_BLOCK;
   W = mongo_helper_event_writer_new (L, &o, &me);
   if (!W) {
      return fail_mh (r, "mongo_helper_event_writer_new", &me);
   }
   /* The request path alone: this thread's CPU while logging
    * (CLOCK_THREAD_CPUTIME_ID: exact for short intervals, where the split
    * getrusage(RUSAGE_THREAD) reports can lag by a scheduler tick). */
   t0 = thread_cpu_s ();
   for (long j = 0; j < r->ops; j++) {
      char uid[16];
      const char *type;
      const bson_t *meta = event_fields (j, uid, &type);

      if (!mongo_helper_event_writer_log (W, uid, type, meta, 0, &me)) {
         r->req_cpu_s = thread_cpu_s () - t0;
         mongo_helper_event_writer_destroy (W, 60000, NULL);
         return fail_mh (r, "mongo_helper_event_writer_log", &me);
      }
   }
   r->req_cpu_s = thread_cpu_s () - t0;
   /* the final flush is counted in wall and CPU */
   mongo_helper_event_writer_destroy (W, 60000, &stats);
   if (stats.accepted != (uint64_t) r->ops || stats.stored != (uint64_t) r->ops ||
       stats.dropped != 0) {
      return fail (r,
                   "buffered writer: accepted %llu, stored %llu, dropped %llu of %ld events",
                   (unsigned long long) stats.accepted,
                   (unsigned long long) stats.stored,
                   (unsigned long long) stats.dropped,
                   r->ops);
   }
   /* every accepted event stored: counted after the clock stops */
   coll_name (name, sizeof name, "events", SIDE_HELPER);
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = r->ops;
   return ST_OK;
}

/* The writer's raw counterpart, the fastest bulk path: the same events in
 * unordered insert_many batches of the writer's batch size, on the
 * request thread (so its request-path CPU is all of it). */
status_t
raw_event_buffered (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   char name[64];
   mongoc_collection_t *coll;
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (false));
   bson_t *docs = bson_malloc (sizeof (bson_t) * EVENT_FLUSH_MAX);
   bson_t *batch[EVENT_FLUSH_MAX];
   bson_error_t e;
   status_t st = ST_OK;

   coll_name (name, sizeof name, "events", SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   for (long j = 0; j < r->ops && st == ST_OK; j += EVENT_FLUSH_MAX) {
      long m = r->ops - j < EVENT_FLUSH_MAX ? r->ops - j : EVENT_FLUSH_MAX;

      for (long k = 0; k < m; k++) {
         event_doc (&docs[k], j + k);
         batch[k] = &docs[k];
      }
      if (!mongoc_collection_insert_many (
             coll, (const bson_t **) batch, (size_t) m, opts, NULL, &e)) {
         st = fail_bson (r, "insert_many of events", &e);
      }
      for (long k = 0; k < m; k++) {
         bson_destroy (batch[k]);
      }
   }
   bson_free (docs);
   bson_destroy (opts);
   mongoc_collection_destroy (coll);
   raw_push (c);
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = r->ops;
   return st;
}
