/*
 * log.c — the log sink and libmongoc's log route (layer 1).
 */
#include "mh_private.h"

static pthread_mutex_t mh_log_lock = PTHREAD_MUTEX_INITIALIZER;
static mongo_helper_log_fn mh_log_fn;
static void *mh_log_data;
static atomic_int mh_log_max = MONGO_HELPER_LOG_ERROR;

static void
mh_log_emit (mongo_helper_log_level_t level, const char *domain, const char *msg)
{
   char clean[1024];

   if ((int) level > atomic_load (&mh_log_max)) {
      return;
   }
   mongo_helper_redact (msg, clean, sizeof clean);
   pthread_mutex_lock (&mh_log_lock);
   if (mh_log_fn) {
      mh_log_fn (level, domain, clean, mh_log_data);
   }
   pthread_mutex_unlock (&mh_log_lock);
}

void
mh_log (mongo_helper_log_level_t level, const char *fmt, ...)
{
   char buf[1024];
   va_list ap;

   if ((int) level > atomic_load (&mh_log_max) || !mh_log_fn) {
      return;
   }
   va_start (ap, fmt);
   vsnprintf (buf, sizeof buf, fmt, ap);
   va_end (ap);
   mh_log_emit (level, "mongo_helper", buf);
}

/* libmongoc would print to stderr by default; route it to our sink. */
static void
mh_mongoc_log (mongoc_log_level_t level, const char *domain, const char *message, void *user_data)
{
   mongo_helper_log_level_t l;

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
   mh_log_emit (l, domain, message);
}

void
mongo_helper_set_log_handler (mongo_helper_log_fn fn,
                              mongo_helper_log_level_t max_level,
                              void *user_data)
{
   mh_log_install ();
   pthread_mutex_lock (&mh_log_lock);
   mh_log_fn = fn;
   mh_log_data = user_data;
   atomic_store (&mh_log_max, (int) max_level);
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
