/*
 * log.c — the log sink and libmongoc's log route (layer 1).
 *
 * The application's sink is never called with a library lock held: a slow
 * sink would otherwise stall every thread that logs and fork() itself
 * (whose handlers take every lock), and a sink that calls the library
 * could deadlock.  The lock guards only which sink is set and how many
 * calls of it are under way, so that replacing a sink can wait for them.
 *
 * libmongoc calls its log handler with its own global log mutex held.  No
 * application code may run there: a fork() while another thread sits in a
 * slow sink would leave that mutex locked in the child, where libmongoc's
 * next log message (a monitor thread's, for one) waits for ever.  So
 * libmongoc's messages are redacted, queued and handed to the sink by the
 * library's next call (mh_log_drain()).
 */
#include "mh_private.h"

#include <sched.h>

static pthread_mutex_t mh_log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mh_log_idle = PTHREAD_COND_INITIALIZER; /* a sink call ended */
static mongo_helper_log_fn mh_log_fn;                         /* under mh_log_lock */
static void *mh_log_data;
static unsigned mh_log_gen;     /* changes of sink; its parity tags calls */
static unsigned mh_log_busy[2]; /* sink calls under way, by parity */
/* The calling thread's own calls under way: a sink may replace itself,
 * and a forked child keeps only its own thread's. */
static _Thread_local unsigned mh_log_mine[2];
/* The level wanted, -1 without a sink: the fast path reads only this. */
static atomic_int mh_log_max = -1;

/* Calls the sink, without the lock, if it wants `level`. */
static void
mh_log_deliver (mongo_helper_log_level_t level, const char *domain, const char *clean)
{
   mongo_helper_log_fn fn;
   void *data;
   unsigned tag;

   pthread_mutex_lock (&mh_log_lock);
   fn = mh_log_fn;
   data = mh_log_data;
   tag = mh_log_gen & 1u;
   if (!fn || (int) level > atomic_load (&mh_log_max)) {
      pthread_mutex_unlock (&mh_log_lock);
      return;
   }
   mh_log_busy[tag]++;
   mh_log_mine[tag]++;
   pthread_mutex_unlock (&mh_log_lock);

   fn (level, domain, clean, data);

   pthread_mutex_lock (&mh_log_lock);
   mh_log_busy[tag]--;
   mh_log_mine[tag]--;
   pthread_cond_broadcast (&mh_log_idle);
   pthread_mutex_unlock (&mh_log_lock);
}

/* ---- libmongoc's messages, queued ---- */

#define MH_LOG_QUEUE 32

typedef struct {
   mongo_helper_log_level_t level;
   char domain[32];
   char msg[1024];
} mh_log_entry_t;

/* A spin lock, as libmongoc's mutex is held while we wait for it: it is
 * held for a copy only, never across a fork (the child just clears it). */
static atomic_flag mh_q_spin = ATOMIC_FLAG_INIT;
static mh_log_entry_t mh_q[MH_LOG_QUEUE];
static size_t mh_q_head, mh_q_len;
static uint64_t mh_q_lost;
static atomic_size_t mh_q_pending; /* len + (lost > 0), for the fast path */

static void
mh_q_lock (void)
{
   while (atomic_flag_test_and_set_explicit (&mh_q_spin, memory_order_acquire)) {
      sched_yield ();
   }
}

static void
mh_q_unlock (void)
{
   atomic_store (&mh_q_pending, mh_q_len + (mh_q_lost > 0));
   atomic_flag_clear_explicit (&mh_q_spin, memory_order_release);
}

/* libmongoc would print to stderr by default; route it to our sink. */
static void
mh_mongoc_log (mongoc_log_level_t level, const char *domain, const char *message, void *user_data)
{
   mongo_helper_log_level_t l;
   char clean[1024];

   (void) user_data;
   switch (level) {
   case MONGOC_LOG_LEVEL_ERROR:
   case MONGOC_LOG_LEVEL_CRITICAL:
      l = MONGO_HELPER_LOG_ERROR;
      break;
   case MONGOC_LOG_LEVEL_WARNING:
      l = MONGO_HELPER_LOG_WARNING;
      break;
   case MONGOC_LOG_LEVEL_MESSAGE:
   case MONGOC_LOG_LEVEL_INFO:
      l = MONGO_HELPER_LOG_INFO;
      break;
   default:
      l = MONGO_HELPER_LOG_DEBUG;
      break;
   }
   if ((int) l > atomic_load (&mh_log_max)) {
      return;
   }
   mongo_helper_redact (message, clean, sizeof clean);
   mh_q_lock ();
   if (mh_q_len < MH_LOG_QUEUE) {
      mh_log_entry_t *e = &mh_q[(mh_q_head + mh_q_len++) % MH_LOG_QUEUE];
      e->level = l;
      bson_strncpy (e->domain, domain ? domain : "mongoc", sizeof e->domain);
      bson_strncpy (e->msg, clean, sizeof e->msg);
   } else {
      mh_q_lost++;
   }
   mh_q_unlock ();
}

void
mh_log_drain (void)
{
   mh_log_entry_t e;
   uint64_t lost;

   /* At most one queue's worth per call, so a thread never delivers for
    * ever while others keep logging. */
   for (int i = 0; i <= MH_LOG_QUEUE && atomic_load (&mh_q_pending) > 0; i++) {
      bool got = false;

      mh_q_lock ();
      lost = 0;
      if (mh_q_len > 0) {
         e = mh_q[mh_q_head];
         mh_q_head = (mh_q_head + 1) % MH_LOG_QUEUE;
         mh_q_len--;
         got = true;
      } else {
         lost = mh_q_lost;
         mh_q_lost = 0;
      }
      mh_q_unlock ();
      if (got) {
         mh_log_deliver (e.level, e.domain, e.msg);
      } else if (lost > 0) {
         char msg[128];
         bson_snprintf (msg,
                        sizeof msg,
                        "%" PRIu64 " libmongoc log messages dropped: more than %d arrived "
                        "between two library calls",
                        lost,
                        MH_LOG_QUEUE);
         mh_log_deliver (MONGO_HELPER_LOG_WARNING, "mongo_helper", msg);
      }
   }
}

/* ---- The library's own messages ---- */

void
mh_log (mongo_helper_log_level_t level, const char *fmt, ...)
{
   char buf[1024], clean[1024];
   va_list ap;

   if ((int) level > atomic_load (&mh_log_max)) {
      return;
   }
   va_start (ap, fmt);
   vsnprintf (buf, sizeof buf, fmt, ap);
   va_end (ap);
   mongo_helper_redact (buf, clean, sizeof clean);
   mh_log_drain (); /* libmongoc's earlier messages first */
   mh_log_deliver (level, "mongo_helper", clean);
}

void
mongo_helper_set_log_handler (mongo_helper_log_fn fn,
                              mongo_helper_log_level_t max_level,
                              void *user_data)
{
   unsigned old;

   mh_log_install ();
   mh_log_drain (); /* what was logged so far goes to the sink of the time */
   pthread_mutex_lock (&mh_log_lock);
   old = mh_log_gen & 1u;
   mh_log_gen++;
   mh_log_fn = fn;
   mh_log_data = user_data;
   atomic_store (&mh_log_max, fn ? (int) max_level : -1);
   /* The old sink's calls on other threads finish before this returns, so
    * the caller may free what the old user_data points to. */
   while (mh_log_busy[old] > mh_log_mine[old]) {
      pthread_cond_wait (&mh_log_idle, &mh_log_lock);
   }
   pthread_mutex_unlock (&mh_log_lock);
}

static pthread_once_t mh_log_once = PTHREAD_ONCE_INIT;

static void
mh_log_install_once (void)
{
   mongoc_log_set_handler (mh_mongoc_log, NULL);
}

void
mh_log_install (void)
{
   pthread_once (&mh_log_once, mh_log_install_once);
}

/* ---- fork ---- */

void
mh_log_fork_prepare (void)
{
   pthread_mutex_lock (&mh_log_lock);
}

void
mh_log_fork_parent (void)
{
   pthread_mutex_unlock (&mh_log_lock);
}

/* Sink calls of the parent's other threads do not exist here, nor do
 * their waiters; the queued libmongoc messages are the parent's to
 * deliver. */
void
mh_log_fork_child (void)
{
   mh_log_busy[0] = mh_log_mine[0];
   mh_log_busy[1] = mh_log_mine[1];
   pthread_cond_init (&mh_log_idle, NULL);
   pthread_mutex_unlock (&mh_log_lock);
   mh_q_head = mh_q_len = 0;
   mh_q_lost = 0;
   atomic_store (&mh_q_pending, 0);
   atomic_flag_clear (&mh_q_spin);
}
