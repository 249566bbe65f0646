/*
 * event_writer.c — the buffered event writer (layer 10).
 */
#include "mh_private.h"

/* -- Buffered writer. */

struct mongo_helper_event_writer_t {
   mongo_helper_eventlog_t *log;
   mongo_helper_event_writer_options_t opt;
   pthread_mutex_t lock;
   pthread_cond_t wake; /* to the flusher: work, flush request, stop */
   pthread_cond_t room; /* to producers and flush waiters: progress */
   bson_t **ring;
   size_t head, len;
   size_t inflight; /* events in the batch being written */
   bool stop;
   bool flush_now;
   int64_t stop_deadline; /* monotonic µs */
   mongo_helper_event_writer_stats_t st;
   pthread_t thread;
};

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
   mongo_helper_eventlog_t *log;
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
   bson_t reply;
   bson_iter_t it, we;
   uint64_t inserted, dup = 0, other = 0;
   bool ok = true;

   b->stored = b->refused = 0;
   for (size_t i = 0; ok && i < b->n; i++) {
      ok = mongoc_bulk_operation_insert_with_opts (bulk, b->docs[i], NULL, &a->error);
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

static void *
mh_ew_thread (void *arg)
{
   mongo_helper_event_writer_t *w = arg;
   bson_t **batch = bson_malloc (w->opt.batch_size * sizeof *batch);
   int64_t next = mh_mono_us () + (int64_t) w->opt.flush_interval_ms * 1000;

   pthread_mutex_lock (&w->lock);
   for (;;) {
      mh_ew_batch_t b = {w->log, batch, 0, 0, 0};
      int64_t backoff = w->opt.backoff_min_ms;

      while (!w->stop && !w->flush_now && w->len < w->opt.batch_size && mh_mono_us () < next) {
         struct timespec at = mh_ew_abstime (next);
         pthread_cond_timedwait (&w->wake, &w->lock, &at);
      }
      next = mh_mono_us () + (int64_t) w->opt.flush_interval_ms * 1000;
      if (w->len == 0) {
         w->flush_now = false;
         pthread_cond_broadcast (&w->room);
         if (w->stop) {
            break;
         }
         continue;
      }
      while (b.n < w->opt.batch_size && w->len > 0) {
         batch[b.n++] = w->ring[w->head];
         w->head = (w->head + 1) % w->opt.queue_size;
         w->len--;
      }
      w->inflight = b.n;
      pthread_cond_broadcast (&w->room);
      for (;;) {
         const mh_call_t call = {MH_OPID_EVENT_WRITER_WRITE, MH_OP_WRITE, NULL, w->log->coll, NULL};
         mongo_helper_error_t e;
         bool ok;

         pthread_mutex_unlock (&w->lock);
         ok = mh_web_ready (&w->log->setup, mh_eventlog_ensure_cb, w->log, &e) &&
              mh_run (&call, mh_ew_write_op, &b, &e);
         pthread_mutex_lock (&w->lock);
         if (ok) {
            w->st.stored += b.stored;
            w->st.dropped += b.refused;
            break;
         }
         w->st.failed_batches++;
         if (mh_ew_past_deadline (w)) {
            w->st.dropped += b.n;
            break;
         }
         /* Server unreachable (or refusing): keep the batch, back off, and
          * let the queue absorb new events meanwhile. */
         {
            int64_t until = mh_mono_us () + backoff * 1000;
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
         backoff = backoff * 2 > w->opt.backoff_max_ms ? w->opt.backoff_max_ms : backoff * 2;
      }
      for (size_t i = 0; i < b.n; i++) {
         bson_destroy (batch[i]);
      }
      w->inflight = 0;
      if (mh_ew_past_deadline (w)) {
         while (w->len > 0) {
            bson_destroy (w->ring[w->head]);
            w->head = (w->head + 1) % w->opt.queue_size;
            w->len--;
            w->st.dropped++;
         }
      }
      pthread_cond_broadcast (&w->room);
   }
   pthread_mutex_unlock (&w->lock);
   bson_free (batch);
   /* Give this thread's pooled client back now rather than at exit. */
   mongo_helper_thread_release ();
   return NULL;
}

mongo_helper_event_writer_t *
mongo_helper_event_writer_new (mongo_helper_eventlog_t *log,
                               const mongo_helper_event_writer_options_t *options,
                               mongo_helper_error_t *error)
{
   mongo_helper_event_writer_options_t o;
   mongo_helper_event_writer_t *w;
   pthread_condattr_t ca;
   int rc;

   mh_error_clear (error);
   mongo_helper_event_writer_options_init (&o);
   if (options) {
      o = *options;
   }
   if (!log || o.queue_size == 0 || o.batch_size == 0 || o.batch_size > 100000 ||
       o.flush_interval_ms <= 0 || o.block_timeout_ms < 0 || o.backoff_min_ms <= 0 ||
       o.backoff_max_ms < o.backoff_min_ms ||
       (o.policy != MONGO_HELPER_QUEUE_BLOCK && o.policy != MONGO_HELPER_QUEUE_DROP_NEWEST &&
        o.policy != MONGO_HELPER_QUEUE_DROP_OLDEST)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INVALID_ARGUMENT,
               0,
               "event writer: log is NULL or an option is out of range "
               "(queue_size and batch_size (<= 100000) > 0, "
               "flush_interval_ms > 0, 0 < backoff_min_ms <= backoff_max_ms, "
               "a known policy)");
      return NULL;
   }
   w = bson_malloc0 (sizeof *w);
   w->log = log;
   w->opt = o;
   w->ring = bson_malloc0 (o.queue_size * sizeof *w->ring);
   pthread_mutex_init (&w->lock, NULL);
   pthread_condattr_init (&ca);
   pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
   pthread_cond_init (&w->wake, &ca);
   pthread_cond_init (&w->room, &ca);
   pthread_condattr_destroy (&ca);
   rc = pthread_create (&w->thread, NULL, mh_ew_thread, w);
   if (rc != 0) {
      pthread_cond_destroy (&w->wake);
      pthread_cond_destroy (&w->room);
      pthread_mutex_destroy (&w->lock);
      bson_free (w->ring);
      bson_free (w);
      mh_fail (error,
               MONGO_HELPER_ERROR_INTERNAL,
               rc,
               "event writer: cannot start its thread (%s)",
               strerror (rc));
      return NULL;
   }
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
   pthread_mutex_unlock (&writer->lock);
   pthread_join (writer->thread, NULL);
   mongo_helper_event_writer_stats (writer, final_stats);
   pthread_cond_destroy (&writer->wake);
   pthread_cond_destroy (&writer->room);
   pthread_mutex_destroy (&writer->lock);
   bson_free (writer->ring);
   bson_free (writer);
}
