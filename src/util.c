/*
 * util.c — what every layer above shares (layer 2): process set-up and
 * fork hooks, the clocks, the sleep, value parsing, name checks and bson
 * helpers.
 */
#include "mh_private.h"

/* ---- Process set-up and fork ---- */

/* The hooks, sorted by rank and linked both ways (prepare walks them
 * backwards).  Modules add theirs from a constructor (MH_FORK_HOOK), when
 * the library is loaded: every hook is then in place before any thread can
 * take the lock it guards, and none is ever added by code that holds
 * another lock.  (Added lazily from a module's once-init, under the core's
 * lock, a hook waited for mh_hooks_lock while a forking thread held it and
 * waited for the core's lock: fork() never returned.) */
static pthread_mutex_t mh_hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static mh_fork_hook_t *mh_hooks_first, *mh_hooks_last;
static pthread_once_t mh_process_once = PTHREAD_ONCE_INIT;

/* The mutexes (and condition variables) of handles the application
 * creates: taken across fork() before any module's locks. */
typedef struct {
   pthread_mutex_t *mutex;
   pthread_cond_t *cond;
} mh_tracked_t;

static pthread_mutex_t mh_tracked_lock = PTHREAD_MUTEX_INITIALIZER;
static mh_tracked_t *mh_tracked;
static size_t mh_n_tracked, mh_cap_tracked;
static atomic_uint mh_forks;

/* Every library lock is taken here, in the order the library nests them:
 * a file may call down the layers while holding its own lock, never up,
 * so the higher layers' locks come first and the log's (layer 1) last.
 * Handle mutexes come before all of them: nothing is locked while one is
 * held.  No lock is ever held across a network round trip, so this waits
 * for memory operations only. */
static void
mh_fork_prepare (void)
{
   pthread_mutex_lock (&mh_hooks_lock);
   pthread_mutex_lock (&mh_tracked_lock);
   for (size_t i = 0; i < mh_n_tracked; i++) {
      pthread_mutex_lock (mh_tracked[i].mutex);
   }
   for (mh_fork_hook_t *h = mh_hooks_last; h; h = h->prev) {
      if (h->prepare) {
         h->prepare ();
      }
   }
   mh_log_fork_prepare ();
}

/* Lowest layer first: a child hook may call down into a module that is
 * already usable again. */
static void
mh_fork_release (bool child)
{
   if (child) {
      mh_log_fork_child ();
   } else {
      mh_log_fork_parent ();
   }
   for (mh_fork_hook_t *h = mh_hooks_first; h; h = h->next) {
      void (*fn) (void) = child ? h->child : h->parent;
      if (fn) {
         fn ();
      }
   }
   for (size_t i = mh_n_tracked; i-- > 0;) {
      if (child && mh_tracked[i].cond) {
         /* Its waiters were threads of the parent. */
         pthread_cond_init (mh_tracked[i].cond, NULL);
      }
      pthread_mutex_unlock (mh_tracked[i].mutex);
   }
   pthread_mutex_unlock (&mh_tracked_lock);
   pthread_mutex_unlock (&mh_hooks_lock);
}

static void
mh_fork_parent (void)
{
   mh_fork_release (false);
}

static void
mh_fork_child (void)
{
   atomic_fetch_add (&mh_forks, 1);
   mh_fork_release (true);
}

/* At load, like the hooks: a fork before the first library call must find
 * the handlers too, since the first call may be one that takes a lock. */
__attribute__ ((constructor)) static void
mh_fork_handlers_install (void)
{
   pthread_atfork (mh_fork_prepare, mh_fork_parent, mh_fork_child);
}

void
mh_fork_hook_add (mh_fork_hook_t *hook)
{
   mh_fork_hook_t *at;

   pthread_mutex_lock (&mh_hooks_lock);
   if (!hook->added) {
      for (at = mh_hooks_first; at && at->rank <= hook->rank; at = at->next) {
      }
      /* before `at`, or last */
      hook->next = at;
      hook->prev = at ? at->prev : mh_hooks_last;
      if (hook->prev) {
         hook->prev->next = hook;
      } else {
         mh_hooks_first = hook;
      }
      if (at) {
         at->prev = hook;
      } else {
         mh_hooks_last = hook;
      }
      hook->added = true;
   }
   pthread_mutex_unlock (&mh_hooks_lock);
}

void
mh_fork_track (pthread_mutex_t *mutex, pthread_cond_t *cond)
{
   pthread_mutex_lock (&mh_tracked_lock);
   if (mh_n_tracked == mh_cap_tracked) {
      mh_cap_tracked = mh_cap_tracked ? 2 * mh_cap_tracked : 16;
      mh_tracked = bson_realloc (mh_tracked, mh_cap_tracked * sizeof *mh_tracked);
   }
   mh_tracked[mh_n_tracked].mutex = mutex;
   mh_tracked[mh_n_tracked].cond = cond;
   mh_n_tracked++;
   pthread_mutex_unlock (&mh_tracked_lock);
}

void
mh_fork_untrack (pthread_mutex_t *mutex)
{
   pthread_mutex_lock (&mh_tracked_lock);
   for (size_t i = 0; i < mh_n_tracked; i++) {
      if (mh_tracked[i].mutex == mutex) {
         mh_tracked[i] = mh_tracked[--mh_n_tracked];
         break;
      }
   }
   pthread_mutex_unlock (&mh_tracked_lock);
}

unsigned
mh_fork_count (void)
{
   return atomic_load (&mh_forks);
}

static void
mh_process_init_once (void)
{
   mongoc_init ();
   mh_log_install ();
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
   /* strcspn stops at '$' or the end, in one pass; the UTF-8 check has
    * an ASCII fast path (this runs on every call). */
   size_t len = strcspn (name, "$");

   if (name[len] == '$' || len > 255 || !mh_utf8_ok (name, len)) {
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

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF); NUL bytes are allowed, as in BSON strings.  Eight bytes at a
 * time while they are ASCII: libbson 1.23 validates byte by byte (twice
 * per string on insert), which bench/ measured as most of a large
 * document's insert. */
bool
mh_utf8_ok (const char *s, size_t len)
{
   const unsigned char *p = (const unsigned char *) s, *end = p + len;

   while (p < end) {
      uint64_t w;
      unsigned c;
      size_t n;
      uint32_t cp, min;

      if (end - p >= 8) {
         memcpy (&w, p, 8);
         if (!(w & UINT64_C (0x8080808080808080))) {
            p += 8;
            continue;
         }
      }
      c = *p;
      if (c < 0x80) {
         p++;
         continue;
      }
      if (c >= 0xC2 && c <= 0xDF) {
         n = 1, cp = c & 0x1F, min = 0x80;
      } else if (c >= 0xE0 && c <= 0xEF) {
         n = 2, cp = c & 0x0F, min = 0x800;
      } else if (c >= 0xF0 && c <= 0xF4) {
         n = 3, cp = c & 0x07, min = 0x10000;
      } else {
         return false; /* a continuation byte first, C0/C1, or F5 and up */
      }
      if ((size_t) (end - p) <= n) {
         return false;
      }
      for (size_t k = 1; k <= n; k++) {
         if ((p[k] & 0xC0) != 0x80) {
            return false;
         }
         cp = (cp << 6) | (p[k] & 0x3F);
      }
      if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
         return false;
      }
      p += n + 1;
   }
   return true;
}

/* The text of a string-holding element (UTF-8, code, symbol, the code of a
 * code-with-scope, a regex's pattern and options, a DBPointer's
 * collection) is valid UTF-8. */
static bool
mh_element_text_ok (const bson_iter_t *it)
{
   uint32_t len;
   const char *s, *opts;

   switch (bson_iter_type (it)) {
   case BSON_TYPE_UTF8:
      s = bson_iter_utf8 (it, &len);
      return mh_utf8_ok (s, len);
   case BSON_TYPE_CODE:
      s = bson_iter_code (it, &len);
      return mh_utf8_ok (s, len);
   case BSON_TYPE_SYMBOL:
      s = bson_iter_symbol (it, &len);
      return mh_utf8_ok (s, len);
   case BSON_TYPE_CODEWSCOPE: {
      uint32_t scope_len;
      const uint8_t *scope;

      s = bson_iter_codewscope (it, &len, &scope_len, &scope);
      return mh_utf8_ok (s, len);
   }
   case BSON_TYPE_REGEX:
      s = bson_iter_regex (it, &opts);
      return mh_utf8_ok (s, strlen (s)) && mh_utf8_ok (opts, strlen (opts));
   case BSON_TYPE_DBPOINTER: {
      const bson_oid_t *oid;

      bson_iter_dbpointer (it, &len, &s, &oid);
      return mh_utf8_ok (s, len);
   }
   default:
      return true;
   }
}

/* One walk of a caller's document, without recursion (its own stack), so
 * a hostile 10,000-level document costs a loop, not the thread's stack:
 * size, well-formedness, nesting, and with `stored` what the server would
 * keep: no empty key and valid UTF-8 in every key and string. */
static bool
mh_doc_walk (const char *what,
             const char *label,
             const bson_t *doc,
             bool stored,
             int max_depth,
             mongo_helper_error_t *error)
{
   mh_iter_frame_t stack[MH_MAX_DEPTH];
   int depth = 0;

   if (!doc) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: the %s is NULL", what, label);
   }
   if (doc->len > MH_MAX_BSON) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: the %s is %u bytes, over MongoDB's 16 MiB limit (%d "
                      "bytes): split it or store large content with GridFS",
                      what,
                      label,
                      (unsigned) doc->len,
                      MH_MAX_BSON);
   }
   if (!bson_iter_init (&stack[0].it, doc)) {
      goto corrupt;
   }
   while (depth >= 0) {
      bson_iter_t *it = &stack[depth].it;
      bson_type_t type;
      bool nested;

      if (!bson_iter_next (it)) {
         /* The end of the elements, or a corrupt one: tell them apart. */
         if (it->err_off) {
            goto corrupt;
         }
         depth--;
         continue;
      }
      if (stored) {
         uint32_t klen = bson_iter_key_len (it);

         if (klen == 0) {
            return mh_fail (error,
                            MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                            0,
                            "%s: the %s has an empty field name: name every field",
                            what,
                            label);
         }
         if (!mh_utf8_ok (bson_iter_key (it), klen) || !mh_element_text_ok (it)) {
            return mh_fail (error,
                            MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                            0,
                            "%s: the %s holds invalid UTF-8 in field '%.64s' (or its name): "
                            "store text as UTF-8, bytes as binary",
                            what,
                            label,
                            mh_utf8_ok (bson_iter_key (it), klen) ? bson_iter_key (it) : "?");
         }
      }
      type = bson_iter_type (it);
      nested =
         type == BSON_TYPE_DOCUMENT || type == BSON_TYPE_ARRAY || type == BSON_TYPE_CODEWSCOPE;
      if (!nested) {
         continue;
      }
      if (depth + 1 >= max_depth) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                         0,
                         "%s: the %s is nested too deeply: %smore than %d levels, "
                         "MongoDB's limit (MONGO_HELPER_MAX_DEPTH): flatten it",
                         what,
                         label,
                         max_depth < MH_MAX_DEPTH ? "with the level it is stored under, " : "",
                         MH_MAX_DEPTH);
      }
      if (type == BSON_TYPE_CODEWSCOPE) {
         const uint8_t *scope = NULL;
         uint32_t scope_len = 0, code_len;

         bson_iter_codewscope (it, &code_len, &scope_len, &scope);
         if (!scope || !bson_iter_init_from_data (&stack[depth + 1].it, scope, scope_len)) {
            goto corrupt;
         }
      } else if (!bson_iter_recurse (it, &stack[depth + 1].it)) {
         goto corrupt;
      }
      depth++;
   }
   return true;

corrupt:
   return mh_fail (error,
                   MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                   0,
                   "%s: the %s is not valid BSON (corrupt or truncated)",
                   what,
                   label);
}

bool
mh_doc_check (const char *what, const char *label, const bson_t *doc, mongo_helper_error_t *error)
{
   return mh_doc_walk (what, label, doc, false, MH_MAX_DEPTH, error);
}

bool
mh_doc_check_stored (const char *what,
                     const char *label,
                     const bson_t *doc,
                     mongo_helper_error_t *error)
{
   return mh_doc_walk (what, label, doc, true, MH_MAX_DEPTH, error);
}

bool
mh_doc_check_embedded (const char *what,
                       const char *label,
                       const bson_t *doc,
                       mongo_helper_error_t *error)
{
   return mh_doc_walk (what, label, doc, true, MH_MAX_DEPTH - 1, error);
}

bool
mh_docs_check (const char *what, const bson_t *const *docs, size_t n, mongo_helper_error_t *error)
{
   char label[48];

   if (!docs || n == 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: no documents given (docs NULL or n 0)",
                      what);
   }
   for (size_t i = 0; i < n; i++) {
      /* The label is formatted only for a failing document: a vsnprintf
       * per document was measurable in bench/ (insert_many_small). */
      if (!mh_doc_check_stored (what, "document", docs[i], NULL)) {
         bson_snprintf (label, sizeof label, "document at index %zu", i);
         return mh_doc_check_stored (what, label, docs[i], error);
      }
   }
   return true;
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
mh_cursor_drain (mongoc_cursor_t *cursor, bson_t *results, size_t max_bytes, bson_error_t *berr)
{
   const bson_t *doc;
   uint32_t i = 0;
   bool ok = true;

   bson_reinit (results);
   while (mongoc_cursor_next (cursor, &doc)) {
      /* Checked before the copy: memory never passes the cap by more than
       * the array's own framing. */
      if (max_bytes && (size_t) results->len + doc->len > max_bytes) {
         ok = mh_result_too_big (berr,
                                 max_bytes,
                                 "read them with a stream (find_stream, aggregate_stream) "
                                 "or ask for fewer (a limit, $limit)");
         bson_reinit (results);
         break;
      }
      mh_array_append (results, i++, doc);
   }
   ok = ok && !mongoc_cursor_error (cursor, berr);
   mongoc_cursor_destroy (cursor);
   return ok;
}

/* ---- Limits ---- */

void
mh_limits_defaults (mongo_helper_config_t *config)
{
   config->max_result_bytes = MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES;
   config->default_max_time_ms = MONGO_HELPER_DEFAULT_MAX_TIME_MS;
   config->command_metrics = 0;
}

size_t
mh_limit_result_bytes (const mongo_helper_config_t *config)
{
   return config && config->max_result_bytes > 0 ? (size_t) config->max_result_bytes
                                                 : (size_t) MONGO_HELPER_DEFAULT_MAX_RESULT_BYTES;
}

int32_t
mh_limit_max_time_ms (const mongo_helper_config_t *config)
{
   return config && config->default_max_time_ms > 0 ? config->default_max_time_ms : 0;
}

const char *
mh_json_levels_hint (const char *message)
{
   return strstr (message, "LEVELS_EXCEEDED")
             ? " (nested deeper than libbson's JSON parser allows, 98 levels; MongoDB's "
               "limit is 100): flatten it"
             : "";
}

bool
mh_result_too_big (bson_error_t *berr, size_t max_bytes, const char *hint)
{
   bson_set_error (berr,
                   MONGOC_ERROR_CLIENT,
                   MONGOC_ERROR_CLIENT_TOO_BIG,
                   "the results pass max_result_bytes (%zu bytes): %s",
                   max_bytes,
                   hint);
   return false;
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
   bool found;

   if (!doc || !bson_iter_init (&it, doc)) {
      return 0;
   }
   /* A plain key (every reply count) needs no path walk. */
   if (strchr (dotted, '.')) {
      found = bson_iter_find_descendant (&it, dotted, &f);
   } else {
      found = bson_iter_find (&it, dotted);
      f = it;
   }
   if (found && (BSON_ITER_HOLDS_NUMBER (&f) || BSON_ITER_HOLDS_BOOL (&f))) {
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
