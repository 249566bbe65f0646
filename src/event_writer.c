/*
 * event_writer.c — the buffered event writer (layer 10).
 *
 * One thread per writer writes the queue in batches.  Two rules shape it:
 *
 * - destroy keeps its deadline even while a write hangs in the driver (a
 *   server that never answers holds a write for the driver's timeouts):
 *   it then returns and leaves that write to the thread, which frees the
 *   writer when the write comes back.  So the thread never touches the
 *   application's eventlog handle, which may be gone by then: the writer
 *   has its own copy of the log's settings and index set-up state, and its
 *   pooled client survives mongo_helper_shutdown() (mh_thread_slot_own).
 *
 * - fork(): a writer's thread is not in the child.  The events queued in
 *   the parent are the parent's, which writes and counts them; the child's
 *   writer starts empty, with counters of its own (accepted = stored +
 *   dropped + queued holds in each process for its own events), and gets
 *   a thread on its first log.
 */
#include "mh_private.h"

/* How long destroy waits past its deadline for a thread that is not
 * writing to stop (it only drops what is left). */
#define MH_EW_STOP_GRACE_US 100000

struct mongo_helper_event_writer_t {
   mongo_helper_eventlog_t log;            /* own copy: collection, settings, set-up */
   const mongo_helper_eventlog_t *app_log; /* read under the lock until destroy */
   mongo_helper_event_writer_options_t opt;
   pthread_mutex_t lock;
   pthread_cond_t wake; /* to the thread: work, flush request, stop */
   pthread_cond_t room; /* to producers, flush and destroy: progress */
   bson_t **ring;
   size_t head, len;
   bson_t **batch;  /* the batch being written */
   size_t inflight; /* its length */
   bool stop;
   bool flush_now;
   bool running;          /* this process has the thread, and it has not stopped */
   bool joinable;         /* this process started the thread and has not joined it */
   bool writing;          /* the thread is writing, without the lock */
   bool abandoned;        /* destroy returned without the thread: it frees */
   int64_t stop_deadline; /* monotonic µs */
   mongo_helper_event_writer_stats_t st;
   pthread_t thread;
   mongo_helper_event_writer_t *next; /* mh_ew_all */
};

/* Every writer of the process, for fork(). */
static struct {
   pthread_mutex_t lock;
   mongo_helper_event_writer_t *first;
} mh_ew_all = {PTHREAD_MUTEX_INITIALIZER, NULL};

static void mh_ew_child_reset (mongo_helper_event_writer_t *w);

/* A writer's lock is never held while calling into the library, so it is
 * taken after the handles' mutexes and before every module's lock. */
static void
mh_ew_prepare (void)
{
   pthread_mutex_lock (&mh_ew_all.lock);
   for (mongo_helper_event_writer_t *w = mh_ew_all.first; w; w = w->next) {
      pthread_mutex_lock (&w->lock);
   }
}

static void
mh_ew_parent (void)
{
   for (mongo_helper_event_writer_t *w = mh_ew_all.first; w; w = w->next) {
      pthread_mutex_unlock (&w->lock);
   }
   pthread_mutex_unlock (&mh_ew_all.lock);
}

static void
mh_ew_child (void)
{
   for (mongo_helper_event_writer_t *w = mh_ew_all.first; w; w = w->next) {
      mh_ew_child_reset (w);
      pthread_mutex_unlock (&w->lock);
   }
   pthread_mutex_unlock (&mh_ew_all.lock);
}

static mh_fork_hook_t mh_ew_fork = {.rank = 10,
                                    .prepare = mh_ew_prepare,
                                    .parent = mh_ew_parent,
                                    .child = mh_ew_child};
MH_FORK_HOOK (mh_ew_fork)

static void
mh_ew_register (mongo_helper_event_writer_t *w)
{
   pthread_mutex_lock (&mh_ew_all.lock);
   w->next = mh_ew_all.first;
   mh_ew_all.first = w;
   pthread_mutex_unlock (&mh_ew_all.lock);
}

static void
mh_ew_unregister (mongo_helper_event_writer_t *w)
{
   pthread_mutex_lock (&mh_ew_all.lock);
   for (mongo_helper_event_writer_t **at = &mh_ew_all.first; *at; at = &(*at)->next) {
      if (*at == w) {
         *at = w->next;
         break;
      }
   }
   pthread_mutex_unlock (&mh_ew_all.lock);
}

/* Both on CLOCK_MONOTONIC, like every deadline here. */
static void
mh_ew_conds_init (mongo_helper_event_writer_t *w)
{
   pthread_condattr_t ca;

   pthread_condattr_init (&ca);
   pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
   pthread_cond_init (&w->wake, &ca);
   pthread_cond_init (&w->room, &ca);
   pthread_condattr_destroy (&ca);
}

/* Frees the queued events and the batch; counts them as dropped if asked. */
static void
mh_ew_discard (mongo_helper_event_writer_t *w, bool count)
{
   while (w->len > 0) {
      bson_destroy (w->ring[w->head]);
      w->head = (w->head + 1) % w->opt.queue_size;
      w->len--;
      w->st.dropped += count;
   }
   for (size_t i = 0; i < w->inflight; i++) {
      bson_destroy (w->batch[i]);
   }
   w->st.dropped += count ? w->inflight : 0;
   w->inflight = 0;
}

/* In a forked child (every lock held, no other thread): the parent's
 * events are the parent's; its thread is not here, nor are the waiters of
 * the condition variables.  A writer destroy gave up on is nobody's here. */
static void
mh_ew_child_reset (mongo_helper_event_writer_t *w)
{
   if (w->abandoned) {
      return;
   }
   mh_ew_discard (w, false);
   memset (&w->st, 0, sizeof w->st);
   w->head = 0;
   w->stop = w->flush_now = false;
   w->running = w->joinable = w->writing = false;
   mh_ew_conds_init (w);
}

/* Frees a writer whose thread is gone or is the caller. */
static void
mh_ew_free (mongo_helper_event_writer_t *w)
{
   mh_ew_unregister (w);
   pthread_cond_destroy (&w->wake);
   pthread_cond_destroy (&w->room);
   pthread_mutex_destroy (&w->lock);
   mh_web_setup_destroy (&w->log.setup);
   bson_free (w->log.coll);
   bson_free (w->log.granularity);
   bson_free (w->ring);
   bson_free (w->batch);
   bson_free (w);
}

void
mongo_helper_event_writer_options_init (mongo_helper_event_writer_options_t *options)
{
   if (!options) {
      return;
   }
   memset (options, 0, sizeof *options);
   options->queue_size = 10000;
   options->batch_size = 500;
   options->flush_interval_ms = 1000;
   options->policy = MONGO_HELPER_QUEUE_BLOCK;
   options->block_timeout_ms = 100;
   options->backoff_min_ms = 100;
   options->backoff_max_ms = 5000;
}

/* Absolute time for pthread_cond_timedwait on a CLOCK_MONOTONIC cond. */
static struct timespec
mh_ew_abstime (int64_t mono_us)
{
   struct timespec ts;

   ts.tv_sec = (time_t) (mono_us / 1000000);
   ts.tv_nsec = (long) (mono_us % 1000000) * 1000L;
   return ts;
}

typedef struct {
   bson_t **docs;
   size_t n;
   uint64_t stored, refused;
} mh_ew_batch_t;

/* One unordered bulk insert.  Success means the server answered for every
 * event: inserted, or already there from an attempt whose reply was lost
 * (11000 on our own ObjectId: stored), or refused for good (dropped).
 * Anything else (no answer) fails so the batch is retried as a whole. */
static bool
mh_ew_write_op (mh_attempt_t *a, void *ctx)
{
   mh_ew_batch_t *b = ctx;
   bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (false));
   mongoc_bulk_operation_t *bulk =
      mongoc_collection_create_bulk_operation_with_opts (a->coll, opts);
   bson_t reply, no_validate;
   bson_iter_t it, we;
   uint64_t inserted, dup = 0, other = 0;
   bool ok = true;

   b->stored = b->refused = 0;
   /* mh_event_build() checked every event when it was logged. */
   mh_opts_no_validate (&no_validate);
   for (size_t i = 0; ok && i < b->n; i++) {
      ok = mongoc_bulk_operation_insert_with_opts (bulk, b->docs[i], &no_validate, &a->error);
   }
   if (!ok) {
      bson_init (&reply);
   } else if (mongoc_bulk_operation_execute (bulk, &reply, &a->error) != 0) {
      b->stored = b->n;
   } else {
      inserted = (uint64_t) mh_bson_int64 (&reply, "nInserted");
      if (bson_iter_init_find (&it, &reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY (&it) &&
          bson_iter_recurse (&it, &we)) {
         while (bson_iter_next (&we)) {
            bson_iter_t c;

            if (bson_iter_recurse (&we, &c) && bson_iter_find (&c, "code") &&
                bson_iter_as_int64 (&c) == 11000) {
               dup++;
            } else {
               other++;
            }
         }
      }
      if (inserted + dup + other == b->n) {
         b->stored = inserted + dup;
         b->refused = other;
      } else {
         ok = false;
      }
   }
   bson_destroy (&reply);
   mongoc_bulk_operation_destroy (bulk);
   bson_destroy (opts);
   return ok;
}

static bool
mh_ew_past_deadline (const mongo_helper_event_writer_t *w)
{
   return w->stop && mh_mono_us () >= w->stop_deadline;
}

/* Waits `backoff_ms` before the next attempt, or less: until a stop's
 * deadline.  Lock held. */
static void
mh_ew_backoff (mongo_helper_event_writer_t *w, int64_t backoff_ms)
{
   int64_t until = mh_mono_us () + backoff_ms * 1000;
   struct timespec at;

   if (w->stop && w->stop_deadline < until) {
      until = w->stop_deadline;
   }
   at = mh_ew_abstime (until);
   while (mh_mono_us () < until) {
      if (pthread_cond_timedwait (&w->wake, &w->lock, &at) != 0) {
         break;
      }
      if (w->stop && w->stop_deadline < until) {
         until = w->stop_deadline;
         at = mh_ew_abstime (until);
      }
   }
}

/* Writes the batch (w->inflight events) until the server answered for
 * every event or the stop deadline passed (then they count as dropped).
 * While the server is unreachable the batch is kept and retried with
 * backoff, and the queue absorbs new events.  Called and returns with the
 * lock held; false when destroy gave up on the write (w->abandoned). */
static bool
mh_ew_write_batch (mongo_helper_event_writer_t *w)
{
   mh_ew_batch_t b = {w->batch, w->inflight, 0, 0};
   int64_t backoff = w->opt.backoff_min_ms;

   for (;;) {
      const mh_call_t call = {MH_OPID_EVENT_WRITER_WRITE, MH_OP_WRITE, NULL, w->log.coll, NULL};
      mongo_helper_error_t e;
      bool app_ready, ok;

      if (w->abandoned) {
         return false;
      }
      if (mh_ew_past_deadline (w)) {
         w->st.dropped += b.n;
         return true;
      }
      /* The application's log may have run its set-up meanwhile: then the
       * writer need not.  Read under the lock: the log exists until destroy
       * returns, and destroy needs the lock. */
      app_ready = atomic_load (&w->app_log->setup.done);
      w->writing = true;
      pthread_mutex_unlock (&w->lock);
      if (app_ready) {
         mh_web_setup_done (&w->log.setup);
      }
      ok = mh_web_ready (&w->log.setup, mh_eventlog_ensure_cb, &w->log, &e) &&
           mh_run (&call, mh_ew_write_op, &b, &e);
      pthread_mutex_lock (&w->lock);
      w->writing = false;
      if (w->abandoned) {
         return false;
      }
      if (ok) {
         w->st.stored += b.stored;
         w->st.dropped += b.refused;
         return true;
      }
      w->st.failed_batches++;
      mh_ew_backoff (w, backoff);
      backoff = backoff * 2 > w->opt.backoff_max_ms ? w->opt.backoff_max_ms : backoff * 2;
   }
}

static void *
mh_ew_thread (void *arg)
{
   mongo_helper_event_writer_t *w = arg;
   int64_t next = mh_mono_us () + (int64_t) w->opt.flush_interval_ms * 1000;

   mh_thread_slot_own ();
   pthread_mutex_lock (&w->lock);
   for (;;) {
      while (!w->stop && !w->flush_now && w->len < w->opt.batch_size && mh_mono_us () < next) {
         struct timespec at = mh_ew_abstime (next);
         pthread_cond_timedwait (&w->wake, &w->lock, &at);
      }
      next = mh_mono_us () + (int64_t) w->opt.flush_interval_ms * 1000;
      if (w->abandoned) {
         break;
      }
      if (mh_ew_past_deadline (w)) {
         mh_ew_discard (w, true);
         break;
      }
      if (w->len == 0) {
         w->flush_now = false;
         pthread_cond_broadcast (&w->room);
         if (w->stop) {
            break;
         }
         continue;
      }
      while (w->inflight < w->opt.batch_size && w->len > 0) {
         w->batch[w->inflight++] = w->ring[w->head];
         w->head = (w->head + 1) % w->opt.queue_size;
         w->len--;
      }
      pthread_cond_broadcast (&w->room);
      if (!mh_ew_write_batch (w)) {
         break;
      }
      for (size_t i = 0; i < w->inflight; i++) {
         bson_destroy (w->batch[i]);
      }
      w->inflight = 0;
      pthread_cond_broadcast (&w->room);
   }
   if (w->abandoned) {
      /* destroy has returned, its final counters already count all of
       * this as dropped: only the memory is left. */
      mh_ew_discard (w, false);
      pthread_mutex_unlock (&w->lock);
      mh_ew_free (w);
   } else {
      w->running = false;
      pthread_cond_broadcast (&w->room);
      pthread_mutex_unlock (&w->lock);
   }
   /* Give this thread's pooled client back now rather than at exit. */
   mongo_helper_thread_release ();
   return NULL;
}

/* Starts the thread (lock held, or the writer not yet shared). */
static bool
mh_ew_start (mongo_helper_event_writer_t *w, mongo_helper_error_t *error)
{
   int rc = pthread_create (&w->thread, NULL, mh_ew_thread, w);

   if (rc != 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INTERNAL,
                      rc,
                      "event writer: cannot start its thread (%s)",
                      strerror (rc));
   }
   w->running = w->joinable = true;
   return true;
}

/* The first problem with the options, or NULL. */
static const char *
mh_ew_options_problem (const mongo_helper_event_writer_options_t *o, char *buf, size_t size)
{
   if (o->queue_size < 1 || o->queue_size > MONGO_HELPER_EVENT_WRITER_MAX_QUEUE) {
      bson_snprintf (buf,
                     size,
                     "queue_size %zu is out of range (1 to %d)",
                     o->queue_size,
                     MONGO_HELPER_EVENT_WRITER_MAX_QUEUE);
   } else if (o->batch_size < 1 || o->batch_size > MONGO_HELPER_EVENT_WRITER_MAX_BATCH) {
      bson_snprintf (buf,
                     size,
                     "batch_size %zu is out of range (1 to %d)",
                     o->batch_size,
                     MONGO_HELPER_EVENT_WRITER_MAX_BATCH);
   } else if (o->flush_interval_ms <= 0) {
      bson_snprintf (buf, size, "flush_interval_ms must be > 0");
   } else if (o->block_timeout_ms < 0) {
      bson_snprintf (buf, size, "block_timeout_ms must be >= 0");
   } else if (o->backoff_min_ms <= 0 || o->backoff_max_ms < o->backoff_min_ms) {
      bson_snprintf (buf, size, "backoff needs 0 < backoff_min_ms <= backoff_max_ms");
   } else if (o->policy != MONGO_HELPER_QUEUE_BLOCK &&
              o->policy != MONGO_HELPER_QUEUE_DROP_NEWEST &&
              o->policy != MONGO_HELPER_QUEUE_DROP_OLDEST) {
      bson_snprintf (buf, size, "policy %d is not a mongo_helper_queue_policy_t", (int) o->policy);
   } else {
      return NULL;
   }
   return buf;
}

mongo_helper_event_writer_t *
mongo_helper_event_writer_new (mongo_helper_eventlog_t *log,
                               const mongo_helper_event_writer_options_t *options,
                               mongo_helper_error_t *error)
{
   mongo_helper_event_writer_options_t o;
   mongo_helper_event_writer_t *w;
   char why[128];
   const char *problem;

   mh_error_clear (error);
   mongo_helper_event_writer_options_init (&o);
   if (options) {
      o = *options;
   }
   problem = log ? mh_ew_options_problem (&o, why, sizeof why) : "log is NULL";
   if (problem) {
      mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "event writer: %s", problem);
      return NULL;
   }
   w = bson_malloc0 (sizeof *w);
   w->app_log = log;
   w->log.coll = bson_strdup (log->coll);
   w->log.granularity = bson_strdup (log->granularity);
   w->log.retention_s = log->retention_s;
   mh_web_setup_init (&w->log.setup, log->setup.lazy);
   if (atomic_load (&log->setup.done)) {
      mh_web_setup_done (&w->log.setup);
   }
   w->opt = o;
   /* Both sizes are bounded above, so neither product can wrap. */
   w->ring = bson_malloc0 (o.queue_size * sizeof *w->ring);
   w->batch = bson_malloc0 (o.batch_size * sizeof *w->batch);
   pthread_mutex_init (&w->lock, NULL);
   mh_ew_conds_init (w);
   mh_ew_register (w);
   pthread_mutex_lock (&w->lock);
   if (!mh_ew_start (w, error)) {
      pthread_mutex_unlock (&w->lock);
      mh_ew_free (w);
      return NULL;
   }
   pthread_mutex_unlock (&w->lock);
   return w;
}

bool
mongo_helper_event_writer_log (mongo_helper_event_writer_t *writer,
                               const char *user_id,
                               const char *event_type,
                               const bson_t *metadata,
                               int64_t timestamp_ms,
                               mongo_helper_error_t *error)
{
   bson_t *doc;
   bool queued = true;

   mh_error_clear (error);
   if (!writer) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "event writer is NULL");
   }
   doc = mh_event_build (user_id, event_type, metadata, timestamp_ms, error);
   if (!doc) {
      return false;
   }
   pthread_mutex_lock (&writer->lock);
   /* A forked child's first log starts the child's thread. */
   if (!writer->running && !writer->stop && !mh_ew_start (writer, error)) {
      pthread_mutex_unlock (&writer->lock);
      bson_destroy (doc);
      return false;
   }
   writer->st.accepted++;
   if (writer->len == writer->opt.queue_size) {
      switch (writer->opt.policy) {
      case MONGO_HELPER_QUEUE_BLOCK: {
         int64_t until = mh_mono_us () + (int64_t) writer->opt.block_timeout_ms * 1000;
         struct timespec at = mh_ew_abstime (until);

         while (writer->len == writer->opt.queue_size && !writer->stop &&
                pthread_cond_timedwait (&writer->room, &writer->lock, &at) == 0) {
         }
         queued = writer->len < writer->opt.queue_size && !writer->stop;
         break;
      }
      case MONGO_HELPER_QUEUE_DROP_NEWEST:
         queued = false;
         break;
      case MONGO_HELPER_QUEUE_DROP_OLDEST:
         bson_destroy (writer->ring[writer->head]);
         writer->head = (writer->head + 1) % writer->opt.queue_size;
         writer->len--;
         writer->st.dropped++;
         break;
      }
   }
   if (queued) {
      writer->ring[(writer->head + writer->len) % writer->opt.queue_size] = doc;
      writer->len++;
      if (writer->len >= writer->opt.batch_size) {
         pthread_cond_signal (&writer->wake);
      }
   } else {
      writer->st.dropped++;
   }
   pthread_mutex_unlock (&writer->lock);
   if (!queued) {
      bson_destroy (doc);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_TIMEOUT,
                      0,
                      "event writer queue is full (%zu events; the server "
                      "may be unreachable): event dropped and counted",
                      writer->opt.queue_size);
   }
   return true;
}

bool
mongo_helper_event_writer_flush (mongo_helper_event_writer_t *writer,
                                 int32_t timeout_ms,
                                 mongo_helper_error_t *error)
{
   int64_t until = mh_mono_us () + (int64_t) (timeout_ms > 0 ? timeout_ms : 0) * 1000;
   struct timespec at = mh_ew_abstime (until);
   size_t left;

   mh_error_clear (error);
   if (!writer) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "event writer is NULL");
   }
   pthread_mutex_lock (&writer->lock);
   writer->flush_now = true;
   pthread_cond_signal (&writer->wake);
   while (writer->len + writer->inflight > 0 &&
          pthread_cond_timedwait (&writer->room, &writer->lock, &at) == 0) {
      if (writer->len > 0) {
         writer->flush_now = true;
         pthread_cond_signal (&writer->wake);
      }
   }
   left = writer->len + writer->inflight;
   pthread_mutex_unlock (&writer->lock);
   if (left > 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_TIMEOUT,
                      0,
                      "event writer: %zu events still queued after %d ms "
                      "(is the server reachable?)",
                      left,
                      (int) timeout_ms);
   }
   return true;
}

void
mongo_helper_event_writer_stats (mongo_helper_event_writer_t *writer,
                                 mongo_helper_event_writer_stats_t *stats)
{
   if (!stats) {
      return;
   }
   memset (stats, 0, sizeof *stats);
   if (!writer) {
      return;
   }
   pthread_mutex_lock (&writer->lock);
   *stats = writer->st;
   stats->queued = writer->len + writer->inflight;
   pthread_mutex_unlock (&writer->lock);
}

void
mongo_helper_event_writer_destroy (mongo_helper_event_writer_t *writer,
                                   int32_t deadline_ms,
                                   mongo_helper_event_writer_stats_t *final_stats)
{
   mongo_helper_event_writer_stats_t st;
   bool join;

   if (!writer) {
      if (final_stats) {
         memset (final_stats, 0, sizeof *final_stats);
      }
      return;
   }
   pthread_mutex_lock (&writer->lock);
   writer->stop = true;
   writer->stop_deadline = mh_mono_us () + (int64_t) (deadline_ms > 0 ? deadline_ms : 0) * 1000;
   pthread_cond_broadcast (&writer->wake);
   pthread_cond_broadcast (&writer->room);
   while (writer->running) {
      int64_t now = mh_mono_us ();

      if (now < writer->stop_deadline) {
         struct timespec at = mh_ew_abstime (writer->stop_deadline);
         pthread_cond_timedwait (&writer->room, &writer->lock, &at);
      } else if (writer->writing || now >= writer->stop_deadline + MH_EW_STOP_GRACE_US) {
         /* The deadline holds: a write under way (or a thread that cannot
          * even stop in time) is left to the thread, which frees the
          * writer when it gets back.  What it carries and what is queued
          * cannot be confirmed any more: dropped. */
         writer->abandoned = true;
         st = writer->st;
         st.dropped += writer->len + writer->inflight;
         st.queued = 0;
         pthread_detach (writer->thread);
         pthread_mutex_unlock (&writer->lock);
         if (final_stats) {
            *final_stats = st;
         }
         return;
      } else {
         /* Past the deadline and not writing: the thread drops what is
          * left and stops without touching the network. */
         struct timespec at = mh_ew_abstime (writer->stop_deadline + MH_EW_STOP_GRACE_US);
         pthread_cond_timedwait (&writer->room, &writer->lock, &at);
      }
   }
   /* A forked child's writer that never logged has no thread to do this. */
   mh_ew_discard (writer, true);
   st = writer->st;
   join = writer->joinable;
   writer->joinable = false;
   pthread_mutex_unlock (&writer->lock);
   if (join) {
      pthread_join (writer->thread, NULL);
   }
   if (final_stats) {
      *final_stats = st;
   }
   mh_ew_free (writer);
}
