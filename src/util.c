/*
 * util.c — what every layer above shares (layer 2): process set-up and
 * fork hooks, the clocks, the sleep, value parsing, name checks and bson
 * helpers.
 */
#include "mh_private.h"

/* ---- Process set-up and fork ---- */

/* Hooks sorted by rank; the list is only ever appended to, under the lock,
 * which the fork handlers hold across fork() like every other lock. */
static pthread_mutex_t mh_hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static mh_fork_hook_t *mh_hooks;
static pthread_once_t mh_process_once = PTHREAD_ONCE_INIT;

/* prepare runs the higher layers first: their code may call down while
 * holding its own lock, never the other way round, so this order takes
 * every lock in the order the library itself nests them. */
static void
mh_fork_prepare (void)
{
   mh_fork_hook_t *stack[64];
   size_t n = 0;

   pthread_mutex_lock (&mh_hooks_lock);
   for (mh_fork_hook_t *h = mh_hooks; h && n < 64; h = h->next) {
      stack[n++] = h;
   }
   while (n > 0) {
      mh_fork_hook_t *h = stack[--n];
      if (h->prepare) {
         h->prepare ();
      }
   }
}

static void
mh_fork_parent (void)
{
   for (mh_fork_hook_t *h = mh_hooks; h; h = h->next) {
      if (h->parent) {
         h->parent ();
      }
   }
   pthread_mutex_unlock (&mh_hooks_lock);
}

static void
mh_fork_child (void)
{
   for (mh_fork_hook_t *h = mh_hooks; h; h = h->next) {
      if (h->child) {
         h->child ();
      }
   }
   pthread_mutex_unlock (&mh_hooks_lock);
}

void
mh_fork_hook_add (mh_fork_hook_t *hook)
{
   mh_fork_hook_t **at;

   mh_process_init ();
   pthread_mutex_lock (&mh_hooks_lock);
   if (!hook->added) {
      for (at = &mh_hooks; *at && (*at)->rank <= hook->rank; at = &(*at)->next) {
      }
      hook->next = *at;
      *at = hook;
      hook->added = true;
   }
   pthread_mutex_unlock (&mh_hooks_lock);
}

static void
mh_process_init_once (void)
{
   mongoc_init ();
   mh_log_install ();
   pthread_atfork (mh_fork_prepare, mh_fork_parent, mh_fork_child);
}

void
mh_process_init (void)
{
   pthread_once (&mh_process_once, mh_process_init_once);
}

/* ---- Clocks and sleep ---- */

int64_t
mh_wall_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mh_mono_us (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_MONOTONIC, &ts);
   return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
mh_sleep_ms (int64_t ms)
{
   struct timespec ts;

   if (ms <= 0) {
      return;
   }
   ts.tv_sec = (time_t) (ms / 1000);
   ts.tv_nsec = (long) (ms % 1000) * 1000000L;
   while (nanosleep (&ts, &ts) != 0 && errno == EINTR) {
   }
}

/* ---- Values and names ---- */

bool
mh_parse_int32 (const char *s, int32_t *out)
{
   char *end;
   long v;

   if (!s || !*s) {
      return false;
   }
   errno = 0;
   v = strtol (s, &end, 10);
   if (errno || *end != '\0' || v < INT32_MIN || v > INT32_MAX) {
      return false;
   }
   *out = (int32_t) v;
   return true;
}

bool
mh_parse_bool (const char *s, bool *out)
{
   static const char *yes[] = {"true", "1", "yes", "on"};
   static const char *no[] = {"false", "0", "no", "off"};

   for (size_t i = 0; s && i < 4; i++) {
      if (strcasecmp (s, yes[i]) == 0) {
         *out = true;
         return true;
      }
      if (strcasecmp (s, no[i]) == 0) {
         *out = false;
         return true;
      }
   }
   return false;
}

/* MongoDB's rules for database names, so a typo fails here and not on the
 * first write. */
bool
mh_valid_db_name (const char *name)
{
   size_t len = strlen (name);

   return len > 0 && len < 64 && !strpbrk (name, "/\\. \"$*<>:|?");
}

/* Database and collection names a caller passes: checked here, once, so
 * every area refuses the same names with the same words.  A NULL database
 * means the default one. */
bool
mh_check_db_name (const char *what, const char *name, mongo_helper_error_t *error)
{
   if (name && !mh_valid_db_name (name)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: database name '%.64s' is not valid (1-63 bytes, "
                      "none of /\\. \"$*<>:|?): pass NULL for the default "
                      "database",
                      what,
                      name);
   }
   return true;
}

bool
mh_check_coll_name (const char *what, const char *name, mongo_helper_error_t *error)
{
   if (!name || !*name) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the collection name is NULL or empty: pass a name",
                      what);
   }
   if (strchr (name, '$') || strlen (name) > 255 ||
       !bson_utf8_validate (name, strlen (name), false)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: collection name '%.64s' is not valid (UTF-8, no "
                      "'$', at most 255 bytes)",
                      what,
                      name);
   }
   return true;
}

/* ---- Operation helpers ---- */

bool
mh_target_check (const char *what,
                 const char *database,
                 const char *collection,
                 mongo_helper_error_t *error)
{
   mh_error_clear (error);
   return mh_check_db_name (what, database, error) && mh_check_coll_name (what, collection, error);
}

/* The server would refuse an oversized document only after the whole of it
 * crossed the network; refusing here is cheaper and names the culprit. */
bool
mh_doc_check (const char *what, const char *label, const bson_t *doc, mongo_helper_error_t *error)
{
   if (!doc) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: the %s is NULL", what, label);
   }
   if (doc->len > MH_MAX_BSON) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the %s is %u bytes, over MongoDB's limit of %d "
                      "bytes: split it or store large content with GridFS",
                      what,
                      label,
                      (unsigned) doc->len,
                      MH_MAX_BSON);
   }
   return true;
}

/* The collection, on the default database unless `database` names one. */
mongoc_collection_t *
mh_collection (mongoc_client_t *client,
               mongoc_database_t *db,
               const char *database,
               const char *collection)
{
   if (database) {
      return mongoc_client_get_collection (client, database, collection);
   }
   return mongoc_database_get_collection (db, collection);
}

void
mh_array_append (bson_t *array, uint32_t i, const bson_t *doc)
{
   char buf[16];
   const char *key;
   size_t len = bson_uint32_to_string (i, &key, buf, sizeof buf);

   bson_append_document (array, key, (int) len, doc);
}

/* Appends the current value of `it` under the next array index. */
void
mh_array_append_iter (bson_t *array, uint32_t i, const bson_iter_t *it)
{
   char buf[16];
   const char *key;
   size_t len = bson_uint32_to_string (i, &key, buf, sizeof buf);

   bson_append_iter (array, key, (int) len, it);
}

/* Drains a cursor into `results` (reinitialised first, so a repeated
 * operation never appends twice).  Takes ownership of `cursor`. */
bool
mh_cursor_drain (mongoc_cursor_t *cursor, bson_t *results, bson_error_t *berr)
{
   const bson_t *doc;
   uint32_t i = 0;
   bool ok;

   bson_reinit (results);
   while (mongoc_cursor_next (cursor, &doc)) {
      mh_array_append (results, i++, doc);
   }
   ok = !mongoc_cursor_error (cursor, berr);
   mongoc_cursor_destroy (cursor);
   return ok;
}

const char *
mh_ns (char *buf, size_t size, const char *database, const char *collection)
{
   bson_snprintf (
      buf, size, "%s.%s", database ? database : "(default)", collection ? collection : "");
   return buf;
}

bool
mh_bad_arg (mongo_helper_error_t *error, const char *fn, const char *what)
{
   return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: %s", fn, what);
}

/* The database an operation works on: the thread's default one (borrowed)
 * or a named one (owned, *owned set). */
mongoc_database_t *
mh_database (mongoc_client_t *client, mongoc_database_t *db, const char *name, bool *owned)
{
   *owned = name != NULL;
   return name ? mongoc_client_get_database (client, name) : db;
}

void
mh_database_done (mongoc_database_t *db, bool owned)
{
   if (owned) {
      mongoc_database_destroy (db);
   }
}

/* Any numeric field as int64 (servers answer int32, int64 or double for
 * the same statistic depending on size and version); 0 when absent. */
int64_t
mh_bson_int64 (const bson_t *doc, const char *dotted)
{
   bson_iter_t it, f;

   if (doc && bson_iter_init (&it, doc) && bson_iter_find_descendant (&it, dotted, &f) &&
       (BSON_ITER_HOLDS_NUMBER (&f) || BSON_ITER_HOLDS_BOOL (&f))) {
      return bson_iter_as_int64 (&f);
   }
   return 0;
}

/* Changes the category mh_run chose, for the few driver errors this
 * area knows better (a missing GridFS file is NOT_FOUND, not SERVER). */
void
mh_recategorize (mongo_helper_error_t *error, mongo_helper_category_t cat)
{
   if (error) {
      error->category = cat;
   }
}

bool
mh_berr (bson_error_t *berr, uint32_t code, const char *fmt, ...)
{
   va_list ap;

   berr->domain = MONGOC_ERROR_SERVER;
   berr->code = code;
   va_start (ap, fmt);
   vsnprintf (berr->message, sizeof berr->message, fmt, ap);
   va_end (ap);
   return false;
}
