/*
 * mongo_helper.c — the core: the singleton, its pool and per-thread
 * clients, and the one execution path every operation takes.
 *
 * The library, by layer (a file calls its own layer's shared file, marked
 * *, or lower layers; `make layer-check` verifies it on the objects):
 *
 *   0  src/redact.c       credential redaction (no dependencies)
 *      src/crypto.c       SHA-256, the CSPRNG, AES-256-GCM: the one OpenSSL
 *                         user
 *   1  src/error.c        error categories and messages
 *      src/log.c          the log sink and libmongoc's log route
 *   2  src/util.c*        process set-up and fork hooks, the clocks, the
 *                         sleep, name checks, bson helpers
 *      src/keyring.c      key rings and sealed (encrypted) records
 *      src/uri.c          URI option text: names, connection_options, merging
 *   3  src/config.c       URI and settings resolution (one settings table)
 *   4  src/resilience.c   retry classification, backoff, circuit breaker
 *      src/security.c     filter check, ObjectId parsing
 *   5  src/metrics.c      APM, counters, Prometheus and JSON snapshots
 *   6  mongo_helper.c     version, singleton, pool, thread slots, mh_run,
 *                         the dedicated health client
 *   7  src/ops.c*         the document operations every area above runs
 *      src/stream.c       find and aggregate results in chunks
 *      src/health.c       ping and server info
 *      src/command.c      commands, read commands, maxTimeMS
 *   8  src/crud.c         insert, find, update, replace, delete, count
 *      src/aggregate.c    aggregation
 *      src/bulk.c         batched inserts
 *      src/index.c        index management
 *      src/search.c       text and geospatial search
 *      src/gridfs.c       GridFS
 *      src/watch.c        change streams
 *      src/stats.c        statistics and metadata
 *   9  src/web.c*         ids, index set-up and the generic operation of
 *                         the web helpers
 *      src/sessions.c     sessions
 *      src/cache.c        cache
 *      src/eventlog.c     user event log
 *      src/concurrent.c   concurrent operations
 *  10  src/event_writer.c buffered event writer
 *      src/sessions_rotate.c  session id and key rotation (regenerate, rekey)
 *      src/cache_compute.c    get-or-compute with a lease, cache rekey
 *
 * Sections below follow mongo_helper.h.
 */
#include "src/mh_private.h"

#define MH_HEALTH_DEFAULT_MS 2000
#define MH_START_NOTE 1024

/* ---- Version -------------------------------------------------------- */

const char *
mongo_helper_version (void)
{
   return MONGO_HELPER_VERSION_STRING;
}

/* ---- Singleton ------------------------------------------------------ */

/* One pool and its configuration.  Reference-counted: the singleton holds
 * one reference, every thread slot and acquired connection another, so a
 * shutdown never frees a pool under a connection still out. */
typedef struct {
   mongoc_client_pool_t *pool;
   mongo_helper_config_t *config;
   bool config_borrowed; /* a forked child's copy of the parent's choice */
   atomic_int refs;
   unsigned fork_count; /* mh_fork_count() when made: a pool made before a
                           fork is never touched */
   uint32_t generation; /* mh_g.generation when it was made */
} mh_pool_t;

/* Collection handles a thread reuses instead of building one per call (a
 * handle is a few allocations; bench/ measured them on every find_one). */
#define MH_SLOT_COLLS 8

typedef struct {
   char *database; /* NULL: the default database */
   char *name;
   mongoc_collection_t *coll;
} mh_coll_entry_t;

/* A client out of the pool with the handles made on it. */
typedef struct {
   mh_pool_t *owner; /* NULL: nothing held */
   mongoc_client_t *client;
   mongoc_database_t *db; /* the default database */
   mh_coll_entry_t colls[MH_SLOT_COLLS];
   unsigned next_victim;
} mh_lease_t;

/* A thread's cached client (see mongo_helper_database()). */
typedef struct mh_slot {
   mh_lease_t lease;
   struct mh_slot *prev, *next; /* registry, under mh_g.lock */
   bool registered;
   bool own; /* a library thread's (mh_thread_slot_own) */
} mh_slot_t;

struct mongo_helper_conn_t {
   mh_lease_t lease;
};

/* What a forked child inherited and must neither use nor free: kept
 * reachable so leak checkers in the child do not report it. */
typedef struct mh_orphan {
   void *what;
   struct mh_orphan *next;
} mh_orphan_t;

static struct {
   pthread_mutex_t lock;
   mh_pool_t *_Atomic current;
   mh_slot_t *slots;
   pthread_key_t slot_key;
   uint32_t generation;
   mh_orphan_t *orphans;
   /* A forked child's configuration: the one its parent chose (explicit
    * URI or file included), never a fresh resolution. */
   mongo_helper_config_t *inherited;
} mh_g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t mh_core_once = PTHREAD_ONCE_INIT;

static void mh_direct_reset (void);

/* Called with mh_g.lock held. */
static void
mh_orphan_locked (void *what)
{
   mh_orphan_t *o;

   if (!what) {
      return;
   }
   o = malloc (sizeof *o);
   if (o) {
      o->what = what;
      o->next = mh_g.orphans;
      mh_g.orphans = o;
   }
}

static void
mh_pool_unref (mh_pool_t *p)
{
   if (p && atomic_fetch_sub (&p->refs, 1) == 1) {
      mongoc_client_pool_destroy (p->pool);
      if (!p->config_borrowed) {
         mongo_helper_config_destroy (p->config);
      }
      bson_free (p);
   }
}

/* Gives a lease's client back to its pool; called WITHOUT mh_g.lock:
 * pushing a client or freeing the last pool reference may talk to the
 * server. */
static void
mh_lease_return (mh_lease_t *l)
{
   if (!l->owner) {
      return;
   }
   for (size_t i = 0; i < MH_SLOT_COLLS; i++) {
      mongoc_collection_destroy (l->colls[i].coll); /* memory only */
      bson_free (l->colls[i].database);
      bson_free (l->colls[i].name);
   }
   memset (l->colls, 0, sizeof l->colls);
   mongoc_database_destroy (l->db);
   if (l->owner->fork_count == mh_fork_count ()) {
      mongoc_client_pool_push (l->owner->pool, l->client);
      mh_pool_returned ();
      mh_pool_unref (l->owner);
   } else {
      pthread_mutex_lock (&mh_g.lock);
      mh_orphan_locked (l->client); /* the parent's socket: leave it alone */
      pthread_mutex_unlock (&mh_g.lock);
   }
   l->owner = NULL;
   l->client = NULL;
   l->db = NULL;
}

/* Called with mh_g.lock held. */
static void
mh_slot_register (mh_slot_t *s)
{
   if (s->registered) {
      return;
   }
   s->next = mh_g.slots;
   if (mh_g.slots) {
      mh_g.slots->prev = s;
   }
   mh_g.slots = s;
   s->registered = true;
}

/* Called with mh_g.lock held. */
static void
mh_slot_unregister (mh_slot_t *s)
{
   if (!s->registered) {
      return;
   }
   if (s->prev) {
      s->prev->next = s->next;
   } else {
      mh_g.slots = s->next;
   }
   if (s->next) {
      s->next->prev = s->prev;
   }
   s->prev = s->next = NULL;
   s->registered = false;
}

/* Thread exit: the client goes back to the pool. */
static void
mh_slot_destructor (void *arg)
{
   mh_slot_t *s = arg;
   mh_lease_t l;

   pthread_mutex_lock (&mh_g.lock);
   mh_slot_unregister (s);
   l = s->lease; /* shutdown may empty it concurrently: take it under the lock */
   s->lease.owner = NULL;
   pthread_mutex_unlock (&mh_g.lock);
   mh_lease_return (&l);
   bson_free (s);
}

/* fork(): hold the lock across it so the child sees consistent state. */
static void
mh_atfork_prepare (void)
{
   pthread_mutex_lock (&mh_g.lock);
}

static void
mh_atfork_parent (void)
{
   pthread_mutex_unlock (&mh_g.lock);
}

/* The child inherits the parent's pool and sockets.  Using them would
 * interleave bytes with the parent; destroying them would send endSessions
 * on the parent's connections and join monitor threads that do not exist
 * here.  So the child forgets them and builds its own on first use, with
 * the parent's configuration. */
static void
mh_atfork_child (void)
{
   mh_pool_t *p = atomic_load (&mh_g.current);

   if (p) {
      mh_orphan_locked (p);
      mh_g.inherited = p->config; /* orphaned with p: never freed here */
      atomic_store (&mh_g.current, NULL);
   }
   /* Slots of threads that do not exist in the child stay reachable; the
    * forking thread's own slot is re-registered on its next use. */
   for (mh_slot_t *s = mh_g.slots, *next; s; s = next) {
      next = s->next;
      s->prev = s->next = NULL;
      s->registered = false;
      mh_orphan_locked (s);
   }
   mh_g.slots = NULL;
   pthread_mutex_unlock (&mh_g.lock);
}

static mh_fork_hook_t mh_core_fork = {.rank = 6,
                                      .prepare = mh_atfork_prepare,
                                      .parent = mh_atfork_parent,
                                      .child = mh_atfork_child};
MH_FORK_HOOK (mh_core_fork)

static void
mh_core_init (void)
{
   mh_process_init ();
   pthread_key_create (&mh_g.slot_key, mh_slot_destructor);
}

/* Creates the singleton's pool; called with mh_g.lock held.  Reads the
 * configuration files but never the network (the pool connects lazily).
 * What to log about a new pool goes to `note` (empty when none was made):
 * the caller logs it after unlocking, as the log sink is the
 * application's code. */
static bool
mh_start_locked (const char *config_path,
                 const char *uri,
                 char note[MH_START_NOTE],
                 mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg;
   bool borrowed = false;
   mh_pool_t *p;
   bson_error_t berr;

   note[0] = '\0';
   if (atomic_load (&mh_g.current)) {
      return true;
   }
   /* A forked child is initialised with its parent's choice: another init
    * there is a no-op, as in the parent. */
   if (mh_g.inherited) {
      cfg = mh_g.inherited;
      borrowed = true;
   } else {
      cfg = mongo_helper_config_new (config_path, uri, error);
      if (!cfg) {
         return false;
      }
   }
   p = bson_malloc0 (sizeof *p);
   p->pool = mongoc_client_pool_new_with_error (cfg->muri, &berr);
   if (!p->pool) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               (int32_t) berr.code,
               "%s: the driver cannot build a pool from this URI (%s)",
               cfg->source,
               berr.message);
      if (!borrowed) {
         mongo_helper_config_destroy (cfg);
      }
      bson_free (p);
      return false;
   }
   /* Error API 2 puts server errors in their own domain, which is what
    * mh_category_of() relies on. */
   mongoc_client_pool_set_error_api (p->pool, MONGOC_ERROR_API_VERSION_2);
   /* APM callbacks must be on the pool before its first client is popped;
    * only when asked for (command_metrics), since libmongoc then builds an
    * event per command. */
   if (cfg->command_metrics) {
      mh_metrics_attach (p->pool);
   }
   mh_breaker_configure (cfg->retry.circuit_threshold, cfg->retry.circuit_cooldown_ms);
   p->config = cfg;
   p->config_borrowed = borrowed;
   p->fork_count = mh_fork_count ();
   atomic_init (&p->refs, 1);
   p->generation = ++mh_g.generation;
   atomic_store (&mh_g.current, p);
   bson_snprintf (note,
                  MH_START_NOTE,
                  "pool created for %s (database %s, from %s)",
                  cfg->uri_redacted,
                  cfg->database,
                  cfg->source);
   return true;
}

/* After mh_start_locked(), without the lock. */
static void
mh_start_note (const char *note)
{
   if (note[0]) {
      mh_log (MONGO_HELPER_LOG_INFO, "%s", note);
   }
   mh_log_drain (); /* libmongoc's warnings about the URI, if any */
}

static bool
mh_start (const char *config_path, const char *uri, mongo_helper_error_t *error)
{
   char note[MH_START_NOTE];
   bool ok;

   pthread_once (&mh_core_once, mh_core_init);
   mh_error_clear (error);
   pthread_mutex_lock (&mh_g.lock);
   ok = mh_start_locked (config_path, uri, note, error);
   pthread_mutex_unlock (&mh_g.lock);
   mh_start_note (note);
   return ok;
}

bool
mongo_helper_init (const char *config_path, mongo_helper_error_t *error)
{
   return mh_start (config_path, NULL, error);
}

bool
mongo_helper_init_uri (const char *uri, mongo_helper_error_t *error)
{
   if (!uri || !*uri) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_init_uri: the URI is NULL or empty");
   }
   return mh_start (NULL, uri, error);
}

void
mongo_helper_status (mongo_helper_status_t *status)
{
   const mongo_helper_config_t *cfg;
   mh_pool_t *p;

   if (!status) {
      return;
   }
   memset (status, 0, sizeof *status);
   pthread_once (&mh_core_once, mh_core_init);
   pthread_mutex_lock (&mh_g.lock);
   p = atomic_load (&mh_g.current);
   status->generation = mh_g.generation;
   /* A forked child before its first call: what that call will use. */
   cfg = p ? p->config : mh_g.inherited;
   if (cfg) {
      status->initialized = true;
      bson_strncpy (status->uri, cfg->uri_redacted, sizeof status->uri);
      bson_strncpy (status->source, cfg->source, sizeof status->source);
      bson_strncpy (status->database, cfg->database, sizeof status->database);
      status->max_pool_size =
         mongoc_uri_get_option_as_int32 (cfg->muri, MONGOC_URI_MAXPOOLSIZE, 100);
      status->pool_wait_ms =
         mongoc_uri_get_option_as_int32 (cfg->muri, MONGOC_URI_WAITQUEUETIMEOUTMS, 0);
   }
   pthread_mutex_unlock (&mh_g.lock);
}

void
mongo_helper_shutdown (void)
{
   mh_lease_t *leases = NULL;
   size_t n = 0, cap = 0;
   mh_pool_t *p;
   mh_slot_t *mine;

   pthread_once (&mh_core_once, mh_core_init);
   /* Under the lock, only detach; give back and destroy after it, as that
    * may talk to the server. */
   pthread_mutex_lock (&mh_g.lock);
   for (mh_slot_t *s = mh_g.slots, *next; s; s = next) {
      next = s->next;
      if (s->own) {
         continue; /* a library thread's: it gives it back itself */
      }
      if (s->lease.owner) {
         if (n == cap) {
            cap = cap ? 2 * cap : 16;
            leases = bson_realloc (leases, cap * sizeof *leases);
         }
         leases[n++] = s->lease;
         s->lease.owner = NULL;
      }
      mh_slot_unregister (s);
   }
   mine = pthread_getspecific (mh_g.slot_key);
   if (mine && mine->own) {
      mine = NULL;
   }
   if (mine) {
      pthread_setspecific (mh_g.slot_key, NULL);
   }
   p = atomic_load (&mh_g.current);
   atomic_store (&mh_g.current, NULL);
   mh_g.inherited = NULL; /* a shutdown forgets the configuration too */
   pthread_mutex_unlock (&mh_g.lock);

   for (size_t i = 0; i < n; i++) {
      mh_lease_return (&leases[i]);
   }
   bson_free (leases);
   if (mine) {
      mh_lease_return (&mine->lease); /* unregistered, so never in the list */
      bson_free (mine);
   }
   mh_pool_unref (p);
   mh_direct_reset ();
   mh_log_drain ();
}

/* Takes a reference on the current pool, creating it if needed. */
static mh_pool_t *
mh_pool_get (mongo_helper_error_t *error)
{
   char note[MH_START_NOTE];
   mh_pool_t *p = NULL;

   pthread_mutex_lock (&mh_g.lock);
   if (mh_start_locked (NULL, NULL, note, error)) {
      p = atomic_load (&mh_g.current);
      atomic_fetch_add (&p->refs, 1);
   }
   pthread_mutex_unlock (&mh_g.lock);
   mh_start_note (note);
   return p;
}

/* Fills `l` with a client of the current pool; waits at most
 * waitQueueTimeoutMS (always set), outside every lock. */
static bool
mh_lease_take (mh_lease_t *l, mongo_helper_error_t *error)
{
   mh_pool_t *p = mh_pool_get (error);
   mongoc_client_t *c;

   if (!p) {
      return false;
   }
   mh_pool_wait_begin ();
   c = mongoc_client_pool_pop (p->pool);
   mh_pool_wait_end (c != NULL);
   if (!c) {
      mh_fail (
         error,
         MONGO_HELPER_ERROR_TIMEOUT,
         0,
         "no pooled connection became free within %d ms (maxPoolSize "
         "%d): release connections sooner, or raise max_pool_size or "
         "wait_queue_timeout_ms",
         (int) mongoc_uri_get_option_as_int32 (p->config->muri, MONGOC_URI_WAITQUEUETIMEOUTMS, 0),
         (int) mongoc_uri_get_option_as_int32 (p->config->muri, MONGOC_URI_MAXPOOLSIZE, 100));
      mh_pool_unref (p);
      return false;
   }
   memset (l, 0, sizeof *l);
   l->owner = p;
   l->client = c;
   l->db = mongoc_client_get_database (c, p->config->database);
   return true;
}

/* The calling thread's slot, refreshed if the singleton changed. */
static mh_slot_t *
mh_thread_slot (mongo_helper_error_t *error)
{
   mh_slot_t *s;
   mh_lease_t fresh;

   pthread_once (&mh_core_once, mh_core_init);
   mh_log_drain ();
   s = pthread_getspecific (mh_g.slot_key);
   if (s && s->lease.owner && s->lease.owner->fork_count == mh_fork_count ()) {
      mh_pool_t *cur = atomic_load (&mh_g.current);

      /* A library thread keeps its pool through a shutdown (it must not
       * start a new singleton behind the application's back), but moves
       * to the next one. */
      if (s->lease.owner == cur || (s->own && !cur)) {
         mh_error_clear (error);
         return s; /* the fast path: no lock, no pool traffic */
      }
   }
   mh_error_clear (error);
   if (s) {
      mh_lease_return (&s->lease); /* stale: a re-init or a fork happened */
   }
   if (!mh_lease_take (&fresh, error)) {
      return NULL;
   }
   if (!s) {
      s = bson_malloc0 (sizeof *s);
      pthread_setspecific (mh_g.slot_key, s);
   }
   pthread_mutex_lock (&mh_g.lock);
   s->lease = fresh;
   mh_slot_register (s);
   pthread_mutex_unlock (&mh_g.lock);
   return s;
}

void
mh_thread_slot_own (void)
{
   mh_slot_t *s;

   pthread_once (&mh_core_once, mh_core_init);
   s = pthread_getspecific (mh_g.slot_key);
   if (!s) {
      s = bson_malloc0 (sizeof *s);
      pthread_setspecific (mh_g.slot_key, s);
   }
   pthread_mutex_lock (&mh_g.lock);
   s->own = true;
   mh_slot_register (s); /* now: a forked child keeps it reachable */
   pthread_mutex_unlock (&mh_g.lock);
}

mongoc_database_t *
mongo_helper_database (mongo_helper_error_t *error)
{
   mh_slot_t *s = mh_thread_slot (error);

   return s ? s->lease.db : NULL;
}

void
mongo_helper_thread_release (void)
{
   mh_slot_t *s;
   mh_lease_t l;

   pthread_once (&mh_core_once, mh_core_init);
   s = pthread_getspecific (mh_g.slot_key);
   if (s) {
      pthread_mutex_lock (&mh_g.lock);
      l = s->lease;
      s->lease.owner = NULL;
      pthread_mutex_unlock (&mh_g.lock);
      mh_lease_return (&l);
   }
}

mongo_helper_conn_t *
mongo_helper_acquire (mongo_helper_error_t *error)
{
   mongo_helper_conn_t *conn;
   mh_lease_t l;

   pthread_once (&mh_core_once, mh_core_init);
   mh_error_clear (error);
   if (!mh_lease_take (&l, error)) {
      return NULL;
   }
   conn = bson_malloc0 (sizeof *conn);
   conn->lease = l;
   return conn;
}

mongoc_client_t *
mongo_helper_conn_client (mongo_helper_conn_t *conn)
{
   return conn ? conn->lease.client : NULL;
}

mongoc_database_t *
mongo_helper_conn_database (mongo_helper_conn_t *conn)
{
   return conn ? conn->lease.db : NULL;
}

void
mongo_helper_release (mongo_helper_conn_t *conn)
{
   if (!conn) {
      return;
   }
   mh_lease_return (&conn->lease);
   bson_free (conn);
}

/* ---- Execution path (internal) ------------------------------------- */

/* The collection of a call on the thread's client, built once per thread
 * and reused (the slot owns it). */
static mongoc_collection_t *
mh_lease_collection (mh_lease_t *l, const char *database, const char *name)
{
   mh_coll_entry_t *e;

   for (size_t i = 0; i < MH_SLOT_COLLS; i++) {
      e = &l->colls[i];
      if (e->coll && strcmp (e->name, name) == 0 &&
          (database ? e->database && strcmp (e->database, database) == 0 : !e->database)) {
         return e->coll;
      }
   }
   e = &l->colls[l->next_victim++ % MH_SLOT_COLLS];
   mongoc_collection_destroy (e->coll);
   bson_free (e->database);
   bson_free (e->name);
   e->database = database ? bson_strdup (database) : NULL;
   e->name = bson_strdup (name);
   e->coll = database ? mongoc_client_get_collection (l->client, database, name)
                      : mongoc_database_get_collection (l->db, name);
   return e->coll;
}

void
mh_attempt_labels (mh_attempt_t *a, const bson_t *reply)
{
   if (!reply) {
      return;
   }
   if (mongoc_error_has_label (reply, "RetryableWriteError")) {
      a->labels |= MH_LABEL_RETRYABLE_WRITE;
   }
   if (mongoc_error_has_label (reply, "TransientTransactionError")) {
      a->labels |= MH_LABEL_TRANSIENT_TRANSACTION;
   }
   if (mongoc_error_has_label (reply, "ResumableChangeStreamError")) {
      a->labels |= MH_LABEL_RESUMABLE_CHANGE_STREAM;
   }
}

/* The words that open a failed call's message: "<op> [detail] on db.coll". */
static void
mh_call_describe (const mh_call_t *call, const char *default_db, char *buf, size_t size)
{
   bson_snprintf (buf,
                  size,
                  "%s%s%s on %s%s%s",
                  mh_op_name (call->op),
                  call->detail ? " " : "",
                  call->detail ? call->detail : "",
                  call->database ? call->database
                  : default_db   ? default_db
                                 : "the default database",
                  call->collection ? "." : "",
                  call->collection ? call->collection : "");
}

const char *
mh_ns (char *buf, size_t size, const char *database, const char *collection)
{
   char def[128] = "the default database";
   mh_pool_t *p;

   if (!database) {
      pthread_mutex_lock (&mh_g.lock);
      p = atomic_load (&mh_g.current);
      if (p) {
         bson_strncpy (def, p->config->database, sizeof def);
      }
      pthread_mutex_unlock (&mh_g.lock);
   }
   bson_snprintf (buf,
                  size,
                  "%s%s%s",
                  database ? database : def,
                  collection ? "." : "",
                  collection ? collection : "");
   return buf;
}

/* A copy, so the handle keeps its keys across a shutdown of the
 * configuration they came from. */
bool
mh_current_keyring (mh_ring_kind_t kind, mh_keyring_t **ring, mongo_helper_error_t *error)
{
   mh_pool_t *p;

   *ring = NULL;
   pthread_once (&mh_core_once, mh_core_init);
   if (!(p = mh_pool_get (error))) {
      return false;
   }
   *ring = mh_keyring_dup (p->config->rings[kind]);
   mh_pool_unref (p);
   return true;
}

/* See mh_private.h; "Which operations retry" in the header. */
bool
mh_run (const mh_call_t *call, mh_op_fn fn, void *ctx, mongo_helper_error_t *error)
{
   const bool may_retry = (call->flags & (MH_OP_READ | MH_OP_IDEMPOTENT)) != 0;
   const int64_t t0 = mh_mono_us ();
   mongo_helper_error_t local;
   mongo_helper_retry_policy_t pol;
   mh_slot_t *s = NULL;
   mh_attempt_t a;
   bool owned_db = false, transient;
   int32_t attempt = 0, failures, socket_ms;
   int64_t wait_ms, t_attempt;
   char what[400];
   bool probe;

   if (!error) {
      error = &local;
   }
   if (!mh_breaker_admit (&probe, &wait_ms, &failures)) {
      mh_call_describe (call, NULL, what, sizeof what);
      mh_fail (error,
               MONGO_HELPER_ERROR_CIRCUIT_OPEN,
               0,
               "%s failed: circuit open after %d consecutive connection "
               "failures; failing fast for %" PRId64 " more ms: check that "
               "MongoDB is running and reachable",
               what,
               (int) failures,
               wait_ms);
      mh_metrics_op (call->op, t0, 0, MONGO_HELPER_ERROR_CIRCUIT_OPEN);
      return false;
   }
   for (;;) {
      s = mh_thread_slot (error);
      if (!s) {
         mh_breaker_abstain (probe);
         mh_metrics_op (call->op, t0, attempt, error->category);
         return false;
      }
      pol = s->lease.owner->config->retry;
      attempt++;
      memset (&a, 0, sizeof a);
      a.config = s->lease.owner->config;
      a.client = s->lease.client;
      a.db = call->database ? mh_database (a.client, s->lease.db, call->database, &owned_db)
                            : s->lease.db;
      a.coll = call->collection ? mh_lease_collection (&s->lease, call->database, call->collection)
                                : NULL;
      t_attempt = mh_mono_us ();
      if (fn (&a, ctx)) {
         mh_database_done (a.db, owned_db);
         mh_breaker_record (NULL, probe);
         mh_metrics_op (call->op, t0, attempt - 1, MONGO_HELPER_ERROR_NONE);
         return true;
      }
      mh_database_done (a.db, owned_db);
      /* libmongoc says "socket error or timeout" for both; the clock tells
       * them apart, so the caller learns it was a timeout.  socketTimeoutMS
       * is looked up only here: a URI option lookup on every call was
       * measurable in bench/ (~2% of a find_one's client CPU). */
      socket_ms = a.error.domain == MONGOC_ERROR_STREAM
                     ? mongoc_uri_get_option_as_int32 (
                          s->lease.owner->config->muri, MONGOC_URI_SOCKETTIMEOUTMS, 0)
                     : 0;
      if (a.error.domain == MONGOC_ERROR_STREAM && socket_ms > 0 &&
          mh_mono_us () - t_attempt >= (int64_t) socket_ms * 950) {
         size_t len = strlen (a.error.message);
         bson_snprintf (a.error.message + len,
                        sizeof a.error.message - len,
                        " (timed out after socketTimeoutMS=%d)",
                        (int) socket_ms);
      }
      mh_breaker_record (&a.error, probe);
      probe = false; /* the probe has given its verdict */
      /* The server's RetryableWriteError label marks an error as transient
       * even when its code is not in our list; for plain writes it only
       * says libmongoc's own single retry is allowed (already done). */
      transient =
         mongo_helper_error_is_transient (&a.error) || (a.labels & MH_LABEL_RETRYABLE_WRITE) != 0;
      if (!may_retry || attempt >= pol.attempts || !transient || !mh_breaker_closed ()) {
         break;
      }
      mh_backoff_sleep (&pol, attempt);
   }
   mh_call_describe (call, s->lease.owner->config->database, what, sizeof what);
   mh_fail_bson (error, what, &a.error);
   if (a.labels & MH_LABEL_RETRYABLE_WRITE) {
      size_t len = strlen (error->message);
      bson_snprintf (error->message + len,
                     sizeof error->message - len,
                     " [server label RetryableWriteError%s]",
                     may_retry ? "" : ": a plain write is not repeated by the library");
   }
   mh_metrics_op (call->op, t0, attempt - 1, error->category);
   return false;
}

/* ---- Dedicated client (internal, for Health) ------------------------ */

/* One small single-threaded client outside the pool, so a health check
 * answers quickly even when the pool is exhausted or the server is down.
 * It is taken out of this slot while in use, so no lock is ever held
 * across the network: concurrent checks build a second client and the
 * spare one is destroyed when both come back. */
static struct {
   pthread_mutex_t lock;
   mongoc_client_t *client; /* idle client, or NULL */
   int32_t timeout_ms;      /* what it was built with */
   uint32_t generation;     /* the pool generation it was built for */
   mh_orphan_t *orphans;    /* a forked child's inherited clients */
} mh_direct = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
mh_direct_prepare (void)
{
   pthread_mutex_lock (&mh_direct.lock);
}

static void
mh_direct_parent (void)
{
   pthread_mutex_unlock (&mh_direct.lock);
}

/* The parent's socket: never use or close it in the child. */
static void
mh_direct_child (void)
{
   if (mh_direct.client) {
      mh_orphan_t *o = malloc (sizeof *o);
      if (o) {
         o->what = mh_direct.client;
         o->next = mh_direct.orphans;
         mh_direct.orphans = o;
      }
      mh_direct.client = NULL;
   }
   pthread_mutex_unlock (&mh_direct.lock);
}

static mh_fork_hook_t mh_direct_fork = {.rank = 6,
                                        .prepare = mh_direct_prepare,
                                        .parent = mh_direct_parent,
                                        .child = mh_direct_child};
MH_FORK_HOOK (mh_direct_fork)

/* Shutdown: the next check builds a client for the new configuration. */
static void
mh_direct_reset (void)
{
   mongoc_client_t *c;

   pthread_mutex_lock (&mh_direct.lock);
   c = mh_direct.client;
   mh_direct.client = NULL;
   pthread_mutex_unlock (&mh_direct.lock);
   mongoc_client_destroy (c);
}

bool
mh_direct_command (const char *cmd_name,
                   int32_t timeout_ms,
                   bson_t *reply,
                   int64_t *elapsed_us,
                   mongo_helper_error_t *error)
{
   mongo_helper_config_t *cfg;
   mongoc_client_t *c = NULL, *spare = NULL;
   mh_pool_t *p;
   bson_t cmd = BSON_INITIALIZER;
   bson_error_t berr;
   int64_t t0;
   bool ok;

   pthread_once (&mh_core_once, mh_core_init);
   bson_init (reply);
   if (timeout_ms <= 0) {
      timeout_ms = MH_HEALTH_DEFAULT_MS;
   }
   p = mh_pool_get (error);
   if (!p) {
      return false;
   }
   cfg = p->config;
   pthread_mutex_lock (&mh_direct.lock);
   if (mh_direct.client && mh_direct.timeout_ms == timeout_ms &&
       mh_direct.generation == p->generation) {
      c = mh_direct.client;
   } else {
      spare = mh_direct.client; /* built for another limit or pool */
   }
   mh_direct.client = NULL;
   pthread_mutex_unlock (&mh_direct.lock);
   mongoc_client_destroy (spare);
   if (!c) {
      mongoc_uri_t *u = mongoc_uri_copy (cfg->muri);

      mongoc_uri_set_option_as_int32 (u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
      mongoc_uri_set_option_as_int32 (u, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
      mongoc_uri_set_option_as_int32 (u, MONGOC_URI_SOCKETTIMEOUTMS, timeout_ms);
      /* A refused connection fails at once instead of retrying until the
       * selection timeout. */
      mongoc_uri_set_option_as_bool (u, MONGOC_URI_SERVERSELECTIONTRYONCE, true);
      c = mongoc_client_new_from_uri_with_error (u, &berr);
      mongoc_uri_destroy (u);
      if (!c) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_CONFIG,
                  (int32_t) berr.code,
                  "%s: cannot build a client (%s)",
                  cfg->source,
                  berr.message);
         mh_pool_unref (p);
         return false;
      }
      mongoc_client_set_error_api (c, MONGOC_ERROR_API_VERSION_2);
   }
   BSON_APPEND_INT32 (&cmd, cmd_name, 1);
   bson_destroy (reply); /* the driver initialises it again */
   t0 = mh_mono_us ();
   ok = mongoc_client_command_simple (c, "admin", &cmd, NULL, reply, &berr);
   if (elapsed_us) {
      *elapsed_us = mh_mono_us () - t0;
   }
   bson_destroy (&cmd);
   if (ok) {
      /* Keep it for the next check unless another came back first. */
      pthread_mutex_lock (&mh_direct.lock);
      if (!mh_direct.client) {
         mh_direct.client = c;
         mh_direct.timeout_ms = timeout_ms;
         mh_direct.generation = p->generation;
         c = NULL;
      }
      pthread_mutex_unlock (&mh_direct.lock);
   } else {
      /* Rebuilt after any failure, so a server that comes back is seen at
       * once instead of after libmongoc's 5 s cooldown. */
      char what[400];
      bson_snprintf (what,
                     sizeof what,
                     "%s to %s (limit %d ms)",
                     cmd_name,
                     cfg->uri_redacted,
                     (int) timeout_ms);
      mh_fail_bson (error, what, &berr);
   }
   mongoc_client_destroy (c);
   mh_pool_unref (p);
   mh_log_drain ();
   return ok;
}
