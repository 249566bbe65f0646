/*
 * bench/bench.c — mongo_helper versus raw libmongoc versus pymongo.
 *
 * Every task runs three ways in one run, on the same server and the same
 * data: through mongo_helper ("helper"), through raw libmongoc written the
 * way its documentation recommends ("raw": one mongoc_client_pool_t, a
 * client popped per thread of work and pushed back), and through Debian's
 * python3-pymongo in a separate process ("pymongo", bench/bench_pymongo.py,
 * driven over a pipe so its runs interleave with ours).
 *
 * Per task: one warm-up run per side, then --reps repetitions (default 6,
 * >= 5), the three sides in each of the six possible orders in turn.  Per
 * run we measure
 * the client process's CPU time (getrusage RUSAGE_SELF, user + sys), wall
 * time, and the peak resident set during the run (VmHWM after resetting it
 * through /proc/self/clear_refs; ru_maxrss is reported for the process).
 * Results: bench/results.json, bench/RESULTS.md and bench/ratios.png.
 *
 * Usage: bench [--quick] [--reps N] [--only a,b] [--skip a,b] [--list]
 *              [--uri URI] [--out DIR] [--no-pymongo] [--python PATH]
 *              [--script PATH] [--stream-docs N] [--aa]
 *              [--instr | --no-instr | --instr-only] [--instr-procs P]
 *              [--instr-reps R]
 * --aa is a calibration run: the raw implementation also plays the helper,
 * so helper/raw shows the noise floor of the machine (ideally 1.00).
 * --instr adds the instruction pass (on by default; --no-instr skips it): every
 * task's timed loop again, under valgrind's callgrind, counting the client's
 * instructions per operation for helper and raw (see "Instruction pass"
 * below); with it, the helper/raw targets are judged on instructions.
 * The URI comes from --uri, else MONGO_CACHE_URI, else MONGO_TEST_URI.
 * Exit status: 0 unless something failed to run (a missed target only
 * prints a warning line); 2 for a usage error.
 *
 * The helper side calls mongo_helper's public API only (the name-based
 * CRUD calls, streaming, bulk, aggregation, GridFS, sessions, cache, event
 * log and buffered writer); every run checks what it did (documents found,
 * counts inserted, bytes downloaded), so a broken call fails the run
 * instead of producing a fast number.  A task whose helper function is NULL
 * is reported as "n/a", never as a failure.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD, pipe2-free fork/exec helpers */

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mongo_helper.h"

/* The instruction pass runs this program under callgrind; the client
 * requests are no-ops when it runs natively.  Without the header (valgrind
 * not installed) the pass reports itself unavailable. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#endif
#endif
#ifndef HAVE_CALLGRIND
#define HAVE_CALLGRIND 0
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(s) ((void) (s))
#endif

/* ---- Configuration of the run ---------------------------------------- */

#define BENCH_SEED 0x6D6F6E676F5F6865ULL /* "mongo_he": the one fixed seed */
#define BENCH_MIN_REPS 5
#define BENCH_DEFAULT_REPS 6 /* one of each of the six side orders */
#define STREAM_CHUNK 1000
#define BULK_BATCH 1000
#define LARGE_FIELDS 3000 /* ~1.5 MB large document */
#define SESSION_IDLE_S (14 * 24 * 3600)
#define SESSION_TOUCH_S 60 /* lazy touch: write only when older */
#define CACHE_TTL_S 3600
#define EVENT_FLUSH_MAX 1000 /* buffered writer: flush at M events ... */
#define EVENT_FLUSH_MS 50    /* ... or every N ms */
#define EVENT_QUEUE_CAP 100000

typedef enum { SIDE_HELPER = 0, SIDE_RAW, SIDE_PY, SIDE_N } side_t;
static const char *side_name[SIDE_N] = {"helper", "raw", "pymongo"};

typedef enum { ST_OK = 0, ST_NA, ST_FAIL } status_t;

/* Which target applies to the helper/raw ratio. */
typedef enum { KIND_SINGLE, KIND_BULK, KIND_HELPER, KIND_CONCURRENT } kind_t;

static struct {
   bool quick;
   int reps;
   bool pymongo;
   bool aa; /* calibration: raw in the helper's place */
   /* instruction pass (callgrind) */
   bool instr;      /* run it (--instr; on by default in --quick) */
   bool instr_only; /* and skip the CPU/wall pass (--instr-only) */
   int instr_reps;  /* counted runs per child process */
   int instr_procs; /* child processes per side */
   char valgrind[1024], self_exe[1024];
   const char *ic_tasks, *ic_side; /* set in the child under callgrind */
   const char *only, *skip, *out_dir, *python, *script;
   char uri[2048];
   char uri_redacted[2048];
   char server[512];
   bool mock;
   long stream_docs; /* 0: mode default */
   char stream_note[256];
   mongoc_client_pool_t *pool; /* the raw side's pool */
   char db[128];
   /* pymongo coprocess */
   pid_t py_pid;
   FILE *py_in, *py_out;
   char py_info[512];
   bool fingerprint_ok;
   char fingerprint[32];
   /* pre-generated data */
   bson_t **flat; /* flat docs without _id, for inserts */
   long flat_n;
   bson_t *large;          /* one large document without _id */
   bson_t *large_bad;      /* the same with one invalid UTF-8 byte at its end */
   bson_t **meta;          /* event metadata documents */
   char (*meta_uid)[16];   /* and their user ids as text ... */
   const char **meta_type; /* ... and types, made once, off the clock */
   long meta_n;
   uint8_t *blob; /* GridFS payload */
   size_t blob_len;
   long flat_coll_n, nested_coll_n, sessions_n, cache_n;
} B;

/* ---- Deterministic data (mirrored exactly in bench_pymongo.py) ------- */

/* splitmix64, seeded per (kind, index) so any document can be generated
 * on its own, in C and in Python, byte for byte the same. */
typedef struct {
   uint64_t s;
} rng_t;

static void
rng_init (rng_t *r, uint64_t kind, uint64_t i)
{
   r->s = BENCH_SEED ^ (kind * 0x9E3779B97F4A7C15ULL) ^ (i * 0xD1B54A32D192ED03ULL);
}

static uint64_t
rng_next (rng_t *r)
{
   uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);

   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
   z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
   return z ^ (z >> 31);
}

/* n lowercase letters, 8 per random word (low byte first); leftover bytes
 * of the last word are discarded. */
static void
rng_letters (rng_t *r, char *out, size_t n)
{
   size_t k = 0;

   while (k < n) {
      uint64_t v = rng_next (r);
      for (int b = 0; b < 8 && k < n; b++) {
         out[k++] = (char) ('a' + ((v >> (8 * b)) & 0xff) % 26);
      }
   }
   out[n] = '\0';
}

static void
append_letters (bson_t *d, const char *key, rng_t *r, size_t n)
{
   char buf[1024];

   rng_letters (r, buf, n);
   BSON_APPEND_UTF8 (d, key, buf);
}

/* Flat: ~20 scalar fields, ~300 bytes (like the spec's small_doc). */
static bson_t *
gen_flat (long i, bool with_id)
{
   bson_t *d = bson_new ();
   rng_t r;
   char key[16];

   rng_init (&r, 1, (uint64_t) i);
   if (with_id) {
      BSON_APPEND_INT32 (d, "_id", (int32_t) i);
   }
   BSON_APPEND_INT32 (d, "category", (int32_t) (rng_next (&r) % 20));
   BSON_APPEND_INT32 (d, "value", (int32_t) (rng_next (&r) % 1000));
   for (int k = 0; k < 18; k++) {
      snprintf (key, sizeof key, "f%02d", k);
      if (k % 3 == 0) {
         size_t n = 8 + rng_next (&r) % 17;
         append_letters (d, key, &r, n);
      } else if (k % 3 == 1) {
         BSON_APPEND_INT32 (d, key, (int32_t) (rng_next (&r) % 2147483647u));
      } else {
         BSON_APPEND_DOUBLE (d, key, (double) (rng_next (&r) % 1000000000u) / 1000.0);
      }
   }
   return d;
}

/* Nested: a tweet-like document with sub-documents and arrays. */
static bson_t *
gen_nested (long i, bool with_id)
{
   bson_t *d = bson_new ();
   bson_t user, loc, geo, tags, ent, urls, url, idx;
   rng_t r;
   char key[16];
   size_t n;
   int ntags;

   rng_init (&r, 2, (uint64_t) i);
   if (with_id) {
      BSON_APPEND_INT32 (d, "_id", (int32_t) i);
   }
   BSON_APPEND_DOCUMENT_BEGIN (d, "user", &user);
   BSON_APPEND_INT32 (&user, "id", (int32_t) (rng_next (&r) % 1000000));
   n = 6 + rng_next (&r) % 10;
   append_letters (&user, "name", &r, n);
   BSON_APPEND_INT32 (&user, "followers", (int32_t) (rng_next (&r) % 100000));
   BSON_APPEND_DOCUMENT_BEGIN (&user, "location", &loc);
   n = 5 + rng_next (&r) % 10;
   append_letters (&loc, "city", &r, n);
   BSON_APPEND_ARRAY_BEGIN (&loc, "geo", &geo);
   BSON_APPEND_DOUBLE (&geo, "0", (double) (rng_next (&r) % 360000) / 1000.0);
   BSON_APPEND_DOUBLE (&geo, "1", (double) (rng_next (&r) % 180000) / 1000.0);
   bson_append_array_end (&loc, &geo);
   bson_append_document_end (&user, &loc);
   bson_append_document_end (d, &user);
   n = 60 + rng_next (&r) % 80;
   append_letters (d, "text", &r, n);
   ntags = 2 + (int) (rng_next (&r) % 4);
   BSON_APPEND_ARRAY_BEGIN (d, "tags", &tags);
   for (int k = 0; k < ntags; k++) {
      snprintf (key, sizeof key, "%d", k);
      n = 3 + rng_next (&r) % 8;
      append_letters (&tags, key, &r, n);
   }
   bson_append_array_end (d, &tags);
   BSON_APPEND_DOCUMENT_BEGIN (d, "entities", &ent);
   BSON_APPEND_ARRAY_BEGIN (&ent, "urls", &urls);
   for (int k = 0; k < 2; k++) {
      snprintf (key, sizeof key, "%d", k);
      BSON_APPEND_DOCUMENT_BEGIN (&urls, key, &url);
      append_letters (&url, "url", &r, 20);
      BSON_APPEND_ARRAY_BEGIN (&url, "idx", &idx);
      BSON_APPEND_INT32 (&idx, "0", (int32_t) (rng_next (&r) % 100));
      BSON_APPEND_INT32 (&idx, "1", (int32_t) (rng_next (&r) % 100));
      bson_append_array_end (&url, &idx);
      bson_append_document_end (&urls, &url);
   }
   bson_append_array_end (&ent, &urls);
   bson_append_document_end (d, &ent);
   BSON_APPEND_INT32 (d, "retweets", (int32_t) (rng_next (&r) % 5000));
   append_letters (d, "lang", &r, 2);
   return d;
}

/* Large: 3000 string fields of 400-599 letters, ~1.5 MB.  With bad_utf8,
 * the same document except that the last letter of the last string is the
 * byte 0xFF, never valid in UTF-8: a validator must read all of it to find
 * the error. */
static bson_t *
gen_large_ex (long i, bool bad_utf8)
{
   bson_t *d = bson_new ();
   rng_t r;
   char key[16], buf[1024];

   rng_init (&r, 3, (uint64_t) i);
   for (int k = 0; k < LARGE_FIELDS; k++) {
      size_t n = 400 + rng_next (&r) % 200;
      snprintf (key, sizeof key, "k%04d", k);
      rng_letters (&r, buf, n);
      if (bad_utf8 && k == LARGE_FIELDS - 1) {
         buf[n - 1] = (char) 0xFF; /* bson_append_utf8 does not validate */
      }
      BSON_APPEND_UTF8 (d, key, buf);
   }
   return d;
}

static bson_t *
gen_large (long i)
{
   return gen_large_ex (i, false);
}

/* Event metadata: what a request handler would attach to a user event. */
static bson_t *
gen_meta (long i, int32_t *user_id, const char **type)
{
   static const char *types[] = {"login", "view", "click", "purchase", "logout"};
   bson_t *d = bson_new ();
   rng_t r;
   char path[16];

   rng_init (&r, 5, (uint64_t) i);
   *user_id = (int32_t) (rng_next (&r) % 10000);
   *type = types[rng_next (&r) % 5];
   path[0] = '/';
   rng_letters (&r, path + 1, 10);
   BSON_APPEND_UTF8 (d, "path", path);
   BSON_APPEND_INT32 (d, "ms", (int32_t) (rng_next (&r) % 500));
   return d;
}

/* GridFS payload: a 1 MiB random block (kind 4) repeated to `len`. */
static uint8_t *
gen_blob (size_t len)
{
   uint8_t *b = bson_malloc (len ? len : 1);
   const size_t block = 1u << 20;
   rng_t r;

   rng_init (&r, 4, 0);
   for (size_t k = 0; k < block && k < len; k += 8) {
      uint64_t v = rng_next (&r);
      for (int j = 0; j < 8 && k + (size_t) j < len; j++) {
         b[k + (size_t) j] = (uint8_t) (v >> (8 * j));
      }
   }
   for (size_t k = block; k < len; k++) {
      b[k] = b[k - block];
   }
   return b;
}

/* FNV-1a 64 over the BSON of flat 0..99, nested 0..99 (with _id), large 0
 * and events 0..99 (without timestamp): compared with the Python side's,
 * so both insert the same bytes. */
static uint64_t
fnv (uint64_t h, const uint8_t *p, size_t n)
{
   for (size_t k = 0; k < n; k++) {
      h ^= p[k];
      h *= 0x100000001B3ULL;
   }
   return h;
}

static void
data_fingerprint (char *out, size_t out_size)
{
   uint64_t h = 0xCBF29CE484222325ULL;
   bson_t *d;

   for (long i = 0; i < 100; i++) {
      d = gen_flat (i, true);
      h = fnv (h, bson_get_data (d), d->len);
      bson_destroy (d);
   }
   for (long i = 0; i < 100; i++) {
      d = gen_nested (i, true);
      h = fnv (h, bson_get_data (d), d->len);
      bson_destroy (d);
   }
   d = gen_large (0);
   h = fnv (h, bson_get_data (d), d->len);
   bson_destroy (d);
   for (long i = 0; i < 100; i++) {
      int32_t uid;
      const char *type;
      char uid_s[16];
      bson_t *meta = gen_meta (i, &uid, &type);
      d = bson_new ();
      snprintf (uid_s, sizeof uid_s, "u%d", (int) uid);
      BSON_APPEND_UTF8 (d, "user_id", uid_s);
      BSON_APPEND_UTF8 (d, "event_type", type);
      BSON_APPEND_DOCUMENT (d, "metadata", meta);
      h = fnv (h, bson_get_data (d), d->len);
      bson_destroy (d);
      bson_destroy (meta);
   }
   snprintf (out, out_size, "%016llx", (unsigned long long) h);
}

/* ---- Clocks and memory ----------------------------------------------- */

static double
now_s (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_MONOTONIC, &ts);
   return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double
cpu_s (int who)
{
   struct rusage ru;

   getrusage (who, &ru);
   return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
          (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

static double
thread_cpu_s (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
   return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static long
maxrss_kb (void)
{
   struct rusage ru;

   getrusage (RUSAGE_SELF, &ru);
   return ru.ru_maxrss;
}

/* Current resident set from /proc/self/statm, in KiB. */
static long
rss_kb (void)
{
   long pages_total = 0, pages_res = 0;
   FILE *f;

   if (B.ic_side) {
      return 0; /* under callgrind: memory is not measured there */
   }
   f = fopen ("/proc/self/statm", "r");
   if (f) {
      if (fscanf (f, "%ld %ld", &pages_total, &pages_res) != 2) {
         pages_res = 0;
      }
      fclose (f);
   }
   return pages_res * (sysconf (_SC_PAGESIZE) / 1024);
}

/* Resets the kernel's peak-RSS mark (VmHWM) so each run sees its own
 * peak; ru_maxrss never goes down. */
static void
hwm_reset (void)
{
   FILE *f = fopen ("/proc/self/clear_refs", "w");

   if (f) {
      fputs ("5", f);
      fclose (f);
   }
}

static long
hwm_kb (void)
{
   char line[256];
   long v = -1;
   FILE *f;

   if (B.ic_side) {
      return 0;
   }
   f = fopen ("/proc/self/status", "r");
   if (!f) {
      return maxrss_kb ();
   }
   while (fgets (line, sizeof line, f)) {
      if (strncmp (line, "VmHWM:", 6) == 0) {
         v = strtol (line + 6, NULL, 10);
         break;
      }
   }
   fclose (f);
   return v < 0 ? maxrss_kb () : v;
}

static int64_t
now_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Runs and tasks -------------------------------------------------- */

/* One run of one side: `ops` operations with a task parameter. */
typedef struct {
   long ops;
   long param;
   bool warmup;
   char err[512];
   double req_cpu_s;     /* request-path CPU (buffered logging), < 0: none */
   long rss_growth_kb;   /* statm after - before (streaming), < 0: none */
   long peak_growth_kb;  /* VmHWM during the run - RSS before, < 0: none */
   char verify_coll[64]; /* if set: after the clock stops, this collection */
   long verify_count;    /* must hold exactly this many documents */
} run_t;

typedef status_t (*run_fn) (run_t *r);
typedef bool (*setup_fn) (char *err, size_t err_size);
typedef bool (*prep_fn) (side_t side, char *err, size_t err_size);

typedef struct {
   const char *name;
   kind_t kind;
   const char *op; /* what one operation is */
   long ops_full, ops_quick;
   long param_full, param_quick;
   setup_fn setup; /* shared data, once, untimed */
   prep_fn prep;   /* before every C-side run, untimed */
   run_fn helper;  /* NULL: n/a (helper API missing) */
   run_fn raw;     /* NULL: n/a */
   bool pymongo;   /* bench_pymongo.py implements it */
   const char *note;
} task_t;

static status_t
fail (run_t *r, const char *fmt, ...)
{
   va_list ap;

   va_start (ap, fmt);
   vsnprintf (r->err, sizeof r->err, fmt, ap);
   va_end (ap);
   return ST_FAIL;
}

static status_t
fail_bson (run_t *r, const char *what, const bson_error_t *e)
{
   return fail (r, "%s: %s (domain %u, code %u)", what, e->message, e->domain, e->code);
}

static status_t
fail_mh (run_t *r, const char *what, const mongo_helper_error_t *e)
{
   return fail (r,
                "%s: %s: %s (code %d)",
                what,
                mongo_helper_category_name (e->category),
                e->message,
                (int) e->code);
}

/* Collection names: shared read-only data, and one per side for writes. */
static void
coll_name (char *out, size_t n, const char *what, side_t side)
{
   snprintf (out, n, "bench_%s_%s", what, side_name[side]);
}

/* The raw side: a client popped from the application's one pool for the
 * duration of a run (a thread's unit of work), as libmongoc's pool
 * examples do. */
static mongoc_client_t *
raw_pop (void)
{
   return mongoc_client_pool_pop (B.pool);
}

static void
raw_push (mongoc_client_t *c)
{
   if (c) {
      mongoc_client_pool_push (B.pool, c);
   }
}

/* Untimed set-up work always goes through the raw pool. */
static bool
admin_drop (const char *name, char *err, size_t err_size)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, name);
   bson_error_t e;
   bool ok = mongoc_collection_drop (coll, &e);

   if (!ok && strstr (e.message, "ns not found") == NULL && e.code != 26) {
      snprintf (err, err_size, "drop %s: %s", name, e.message);
   } else {
      ok = true;
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return ok;
}

typedef bson_t *(*gen_fn) (long i);

static bson_t *
gen_flat_id (long i)
{
   return gen_flat (i, true);
}

static bson_t *
gen_nested_id (long i)
{
   return gen_nested (i, true);
}

/* Drops `name` and inserts docs 0..n-1 from `gen`, in batches. */
static bool
admin_seed (const char *name, long n, gen_fn gen, char *err, size_t err_size)
{
   mongoc_client_t *c;
   mongoc_collection_t *coll;
   bson_t *batch[BULK_BATCH];
   bson_error_t e;
   bool ok = true;

   if (!admin_drop (name, err, err_size)) {
      return false;
   }
   c = raw_pop ();
   coll = mongoc_client_get_collection (c, B.db, name);
   for (long i = 0; i < n && ok; i += BULK_BATCH) {
      long m = n - i < BULK_BATCH ? n - i : BULK_BATCH;
      for (long k = 0; k < m; k++) {
         batch[k] = gen (i + k);
      }
      ok =
         mongoc_collection_insert_many (coll, (const bson_t **) batch, (size_t) m, NULL, NULL, &e);
      if (!ok) {
         snprintf (err, err_size, "seeding %s: %s", name, e.message);
      }
      for (long k = 0; k < m; k++) {
         bson_destroy (batch[k]);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return ok;
}

/* ---- Task: run command --------------------------------------------- */

static status_t
helper_run_command (run_t *r)
{
   bson_t cmd = BSON_INITIALIZER, reply;
   mongo_helper_error_t e;
   status_t st = ST_OK;

   BSON_APPEND_INT32 (&cmd, "ping", 1);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!mongo_helper_command (&cmd, &reply, &e)) {
         st = fail_mh (r, "mongo_helper_command ping", &e);
      }
      bson_destroy (&reply);
   }
   bson_destroy (&cmd);
   return st;
}

static status_t
raw_run_command (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   bson_t cmd = BSON_INITIALIZER, reply;
   bson_error_t e;
   status_t st = ST_OK;

   BSON_APPEND_INT32 (&cmd, "ping", 1);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!mongoc_client_command_simple (c, B.db, &cmd, NULL, &reply, &e)) {
         st = fail_bson (r, "ping", &e);
      }
      bson_destroy (&reply);
   }
   bson_destroy (&cmd);
   raw_push (c);
   return st;
}

/* ---- Task: find one by _id ----------------------------------------- */

static bool
setup_flat (char *err, size_t err_size)
{
   static long seeded = -1;

   if (seeded == B.flat_coll_n) {
      return true;
   }
   if (!admin_seed ("bench_flat", B.flat_coll_n, gen_flat_id, err, err_size)) {
      return false;
   }
   seeded = B.flat_coll_n;
   return true;
}

/* The shared operation: find {_id: id} with limit 1, check what came back. */
static bool
op_find_one (mongoc_collection_t *coll, int32_t id, bson_error_t *e)
{
   bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
   const bson_t *doc;
   bson_iter_t it;
   mongoc_cursor_t *cur;
   bool ok;

   BSON_APPEND_INT32 (&filter, "_id", id);
   BSON_APPEND_INT32 (&opts, "limit", 1);
   cur = mongoc_collection_find_with_opts (coll, &filter, &opts, NULL);
   ok = mongoc_cursor_next (cur, &doc);
   if (ok) {
      ok = bson_iter_init_find (&it, doc, "_id") && bson_iter_int32 (&it) == id;
      if (!ok) {
         bson_set_error (e, 0, 0, "find one: wrong document for _id %d", id);
      }
   } else if (!mongoc_cursor_error (cur, e)) {
      bson_set_error (e, 0, 0, "find one: no document with _id %d", id);
   }
   mongoc_cursor_destroy (cur);
   bson_destroy (&filter);
   bson_destroy (&opts);
   return ok;
}

/* The helper's find one: the same filter, the same check of the _id. */
static bool
h_find_one (int32_t id, char *err, size_t err_size)
{
   bson_t filter = BSON_INITIALIZER;
   mongo_helper_error_t me;
   bson_iter_t it;
   bson_t *doc;
   bool ok;

   BSON_APPEND_INT32 (&filter, "_id", id);
   doc = mongo_helper_find_one (NULL, "bench_flat", &filter, NULL, &me);
   ok = doc && bson_iter_init_find (&it, doc, "_id") && BSON_ITER_HOLDS_INT32 (&it) &&
        bson_iter_int32 (&it) == id;
   if (!doc) {
      snprintf (err,
                err_size,
                "mongo_helper_find_one: %s: %.300s",
                mongo_helper_category_name (me.category),
                me.message);
   } else if (!ok) {
      snprintf (err, err_size, "mongo_helper_find_one: wrong document for _id %d", (int) id);
   }
   bson_destroy (doc);
   bson_destroy (&filter);
   return ok;
}

static status_t
helper_find_one (run_t *r)
{
   for (long j = 0; j < r->ops; j++) {
      if (!h_find_one ((int32_t) (j % B.flat_coll_n), r->err, sizeof r->err)) {
         return ST_FAIL;
      }
   }
   return ST_OK;
}

static status_t
raw_find_one (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_flat");
   bson_error_t e;
   status_t st = ST_OK;

   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!op_find_one (coll, (int32_t) (j % B.flat_coll_n), &e)) {
         st = fail_bson (r, "find one", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Tasks: insert one (small, large) ------------------------------- */

static bool
prep_insert_small (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "insert_small", side);
   return admin_drop (name, err, err_size);
}

static bool
prep_insert_large (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "insert_large", side);
   return admin_drop (name, err, err_size);
}

static status_t
helper_insert_one_common (run_t *r, const char *what, bool large)
{
   char name[64];
   mongo_helper_error_t me;

   coll_name (name, sizeof name, what, SIDE_HELPER);
   for (long j = 0; j < r->ops; j++) {
      if (!mongo_helper_insert_one (
             NULL, name, large ? B.large : B.flat[j % B.flat_n], NULL, &me)) {
         return fail_mh (r, "mongo_helper_insert_one", &me);
      }
   }
   /* every insert landed: counted after the clock stops */
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = r->ops;
   return ST_OK;
}

static status_t
raw_insert_one_common (run_t *r, const char *what, bool large)
{
   char name[64];
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll;
   bson_error_t e;
   status_t st = ST_OK;

   coll_name (name, sizeof name, what, SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!mongoc_collection_insert_one (
             coll, large ? B.large : B.flat[j % B.flat_n], NULL, NULL, &e)) {
         st = fail_bson (r, "insert one", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

static status_t
helper_insert_small (run_t *r)
{
   return helper_insert_one_common (r, "insert_small", false);
}

static status_t
raw_insert_small (run_t *r)
{
   return raw_insert_one_common (r, "insert_small", false);
}

static status_t
helper_insert_large (run_t *r)
{
   return helper_insert_one_common (r, "insert_large", true);
}

static status_t
raw_insert_large (run_t *r)
{
   return raw_insert_one_common (r, "insert_large", true);
}

/* ---- Task: insert one large document with invalid UTF-8 ------------- */

/* The bad path of insert_one_large: the same 1.5 MB document with one
 * invalid byte at the end of its last string.  A side that refuses it
 * before sending (its UTF-8 check has to read the whole document) is
 * measured; a side that would send it is "n/a" with the reason, never a
 * failure, and nothing of it counts.  libbson 1.23's bson_validate() drops
 * the invalid-UTF-8 result of bson_iter_visit_all() (cf. CDRIVER-4448), so
 * libmongoc 1.23's insert validates every string (twice) and still sends
 * invalid ones: raw is n/a there, and so is the helper until it checks
 * UTF-8 itself. */
static bool
prep_insert_invalid (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "insert_invalid", side);
   return admin_drop (name, err, err_size);
}

static status_t
na (run_t *r, const char *fmt, ...)
{
   va_list ap;

   va_start (ap, fmt);
   vsnprintf (r->err, sizeof r->err, fmt, ap);
   va_end (ap);
   return ST_NA;
}

static status_t
helper_insert_invalid (run_t *r)
{
   char name[64];

   coll_name (name, sizeof name, "insert_invalid", SIDE_HELPER);
   for (long j = 0; j < r->ops; j++) {
      mongo_helper_error_t me;
      bool utf8_error;

      if (mongo_helper_insert_one (NULL, name, B.large_bad, NULL, &me)) {
         return j == 0 ? na (r, "not rejected: mongo_helper_insert_one() stored the document")
                       : fail (r, "mongo_helper_insert_one() stored a document with invalid UTF-8");
      }
      utf8_error = me.category == MONGO_HELPER_ERROR_INVALID_ARGUMENT &&
                   (strcasestr (me.message, "utf-8") || strcasestr (me.message, "utf8"));
      if (!utf8_error && j == 0) {
         return na (r,
                    "not rejected before sending: mongo_helper_insert_one() relies on libmongoc's "
                    "validation, which passes it on libbson %s; the server got it (%s: %.*s)",
                    bson_get_version (),
                    mongo_helper_category_name (me.category),
                    (int) (strcspn (me.message, ";") < 200 ? strcspn (me.message, ";") : 200),
                    me.message);
      }
      if (!utf8_error) {
         return fail_mh (r, "mongo_helper_insert_one: not rejected as invalid UTF-8", &me);
      }
   }
   /* nothing stored: counted after the clock stops */
   snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
   r->verify_count = 0;
   return ST_OK;
}

static status_t
raw_insert_invalid (run_t *r)
{
   char name[64];
   mongoc_client_t *c;
   mongoc_collection_t *coll;
   status_t st = ST_OK;
   bson_error_t ve;

   /* libmongoc's default validation of an inserted document */
   if (bson_validate_with_error (B.large_bad,
                                 BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL |
                                    BSON_VALIDATE_EMPTY_KEYS | BSON_VALIDATE_DOT_KEYS |
                                    BSON_VALIDATE_DOLLAR_KEYS,
                                 &ve)) {
      return na (r,
                 "not rejected before sending: libbson %s's bson_validate() passes this document "
                 "(bson_iter_visit_all stops at the invalid string before the UTF-8 visitor sees "
                 "it, and bson_validate ignores that stop; cf. upstream CDRIVER-4448), so "
                 "mongoc_collection_insert_one() would send it to the server",
                 bson_get_version ());
   }
   coll_name (name, sizeof name, "insert_invalid", SIDE_RAW);
   c = raw_pop ();
   coll = mongoc_client_get_collection (c, B.db, name);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      bson_error_t e;

      if (mongoc_collection_insert_one (coll, B.large_bad, NULL, NULL, &e)) {
         st = fail (r, "insert one accepted a document with invalid UTF-8");
      } else if (e.domain != MONGOC_ERROR_COMMAND || e.code != MONGOC_ERROR_COMMAND_INVALID_ARG) {
         st = fail_bson (r, "insert one: not rejected as an invalid document", &e);
      }
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   if (st == ST_OK) {
      snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
      r->verify_count = 0;
   }
   return st;
}

/* ---- Task: find many and empty the cursor --------------------------- */

static bool
setup_nested (char *err, size_t err_size)
{
   static long seeded = -1;

   if (seeded == B.nested_coll_n) {
      return true;
   }
   if (!admin_seed ("bench_nested", B.nested_coll_n, gen_nested_id, err, err_size)) {
      return false;
   }
   seeded = B.nested_coll_n;
   return true;
}

/* Counts the documents of a stream's chunks: every one must be a
 * non-empty document and each chunk's first one must carry the _id of
 * the document that position holds (the collections hold _id 0..n-1 in
 * insertion order), so an empty, corrupt or skipped chunk cannot pass.
 * Per document this is O(1), like raw's count: the check must not be what
 * is measured. */
typedef struct {
   long n, bad;
} chunk_count_t;

static bool
count_chunk (const bson_t *const *docs, size_t n, void *user_data)
{
   chunk_count_t *c = user_data;
   bson_iter_t it;

   if (n == 0 || !bson_iter_init_find (&it, docs[0], "_id") || !BSON_ITER_HOLDS_INT32 (&it) ||
       bson_iter_int32 (&it) != (int32_t) c->n) {
      c->bad++;
   }
   for (size_t k = 0; k < n; k++) {
      if (!docs[k] || docs[k]->len <= 5) {
         c->bad++;
      }
   }
   c->n += (long) n;
   return true;
}

/* Iterates every document of `coll` matching nothing in particular;
 * `opts` may set batchSize/limit.  Counts documents. */
static bool
op_find_all (mongoc_collection_t *coll, const bson_t *opts, long *n, bson_error_t *e)
{
   bson_t filter = BSON_INITIALIZER;
   mongoc_cursor_t *cur = mongoc_collection_find_with_opts (coll, &filter, opts, NULL);
   const bson_t *doc;
   bson_t *chunk[STREAM_CHUNK];
   size_t k = 0;
   chunk_count_t c = {0, 0};
   bool ok;

   /* The same result as the helper's stream: chunks of documents that stay
    * valid together, so each is copied (a cursor's document lives until
    * the next mongoc_cursor_next()), handed over, then freed. */
   while (mongoc_cursor_next (cur, &doc)) {
      chunk[k++] = bson_copy (doc);
      if (k == STREAM_CHUNK) {
         count_chunk ((const bson_t *const *) chunk, k, &c);
         while (k > 0) {
            bson_destroy (chunk[--k]);
         }
      }
   }
   if (k > 0) {
      count_chunk ((const bson_t *const *) chunk, k, &c);
      while (k > 0) {
         bson_destroy (chunk[--k]);
      }
   }
   ok = !mongoc_cursor_error (cur, e);
   if (ok && c.bad) {
      bson_set_error (e, 0, 0, "%ld empty documents or chunks out of order", c.bad);
      ok = false;
   }
   *n = c.n;
   mongoc_cursor_destroy (cur);
   bson_destroy (&filter);
   return ok;
}

/* mongo_helper_find() would return every document in one bson_t; the
 * like-for-like call is the stream, which hands out chunks of documents
 * as raw's loop does (op_find_all). */
static status_t
helper_find_many (run_t *r)
{
   mongo_helper_error_t me;
   chunk_count_t c = {0, 0};

   if (!mongo_helper_find_stream (
          NULL, "bench_nested", NULL, NULL, STREAM_CHUNK, count_chunk, &c, &me)) {
      return fail_mh (r, "mongo_helper_find_stream", &me);
   }
   if (c.bad) {
      return fail (r, "find many: %ld empty documents or chunks out of order", c.bad);
   }
   return c.n == r->ops ? ST_OK : fail (r, "find many: %ld documents, expected %ld", c.n, r->ops);
}

static status_t
raw_find_many (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_nested");
   bson_error_t e;
   long n;
   bool ok = op_find_all (coll, NULL, &n, &e);

   mongoc_collection_destroy (coll);
   raw_push (c);
   if (!ok) {
      return fail_bson (r, "find many", &e);
   }
   return n == r->ops ? ST_OK : fail (r, "find many: %ld documents, expected %ld", n, r->ops);
}

/* ---- Tasks: ordered insert-many (small, large) ---------------------- */

static bool
prep_many_small (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "many_small", side);
   return admin_drop (name, err, err_size);
}

static bool
prep_many_large (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "many_large", side);
   return admin_drop (name, err, err_size);
}

static const bson_t **
many_docs (long n, bool large)
{
   const bson_t **docs = bson_malloc ((size_t) n * sizeof *docs);

   for (long k = 0; k < n; k++) {
      docs[k] = large ? B.large : B.flat[k % B.flat_n];
   }
   return docs;
}

static status_t
insert_many_in (mongoc_collection_t *coll, run_t *r, bool large)
{
   const bson_t **docs = many_docs (r->ops, large);
   bson_t reply;
   bson_iter_t it;
   bson_error_t e;
   bool ok = mongoc_collection_insert_many (coll, docs, (size_t) r->ops, NULL, &reply, &e);
   status_t st = ST_OK;

   if (!ok) {
      st = fail_bson (r, "insert many", &e);
   } else if (!bson_iter_init_find (&it, &reply, "insertedCount") ||
              bson_iter_as_int64 (&it) != r->ops) {
      st = fail (r, "insert many: insertedCount is not %ld", r->ops);
   }
   bson_destroy (&reply);
   bson_free (docs);
   return st;
}

static status_t
helper_many_common (run_t *r, const char *what, bool large)
{
   char name[64];
   const bson_t **docs = many_docs (r->ops, large);
   mongo_helper_error_t me;
   int64_t inserted = 0;
   status_t st = ST_OK;

   coll_name (name, sizeof name, what, SIDE_HELPER);
   if (!mongo_helper_insert_many (
          NULL, name, (const bson_t *const *) docs, (size_t) r->ops, true, &inserted, &me)) {
      st = fail_mh (r, "mongo_helper_insert_many", &me);
   } else if (inserted != r->ops) {
      st = fail (r, "insert many: %lld inserted, expected %ld", (long long) inserted, r->ops);
   } else {
      snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
      r->verify_count = r->ops;
   }
   bson_free (docs);
   return st;
}

static status_t
raw_many_common (run_t *r, const char *what, bool large)
{
   char name[64];
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll;
   status_t st;

   coll_name (name, sizeof name, what, SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   st = insert_many_in (coll, r, large);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

static status_t
helper_many_small (run_t *r)
{
   return helper_many_common (r, "many_small", false);
}

static status_t
raw_many_small (run_t *r)
{
   return raw_many_common (r, "many_small", false);
}

static status_t
helper_many_large (run_t *r)
{
   return helper_many_common (r, "many_large", true);
}

static status_t
raw_many_large (run_t *r)
{
   return raw_many_common (r, "many_large", true);
}

/* ---- Task: bulk insert with batching, unordered ---------------------- */

static bool
prep_bulk (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "bulk", side);
   return admin_drop (name, err, err_size);
}

/* libmongoc's bulk API, one unordered bulk operation per batch. */
static status_t
bulk_in (mongoc_collection_t *coll, run_t *r)
{
   bson_t opts = BSON_INITIALIZER;
   status_t st = ST_OK;
   long inserted = 0;

   BSON_APPEND_BOOL (&opts, "ordered", false);
   for (long i = 0; i < r->ops && st == ST_OK; i += r->param) {
      long m = r->ops - i < r->param ? r->ops - i : r->param;
      mongoc_bulk_operation_t *bulk =
         mongoc_collection_create_bulk_operation_with_opts (coll, &opts);
      bson_t reply;
      bson_iter_t it;
      bson_error_t e;

      for (long k = 0; k < m; k++) {
         mongoc_bulk_operation_insert (bulk, B.flat[(i + k) % B.flat_n]);
      }
      if (!mongoc_bulk_operation_execute (bulk, &reply, &e)) {
         st = fail_bson (r, "bulk insert", &e);
      } else if (bson_iter_init_find (&it, &reply, "nInserted")) {
         inserted += bson_iter_as_int64 (&it);
      }
      bson_destroy (&reply);
      mongoc_bulk_operation_destroy (bulk);
   }
   bson_destroy (&opts);
   if (st == ST_OK && inserted != r->ops) {
      st = fail (r, "bulk insert: nInserted %ld, expected %ld", inserted, r->ops);
   }
   return st;
}

static status_t
helper_bulk (run_t *r)
{
   char name[64];
   const bson_t **docs = bson_malloc ((size_t) r->ops * sizeof *docs);
   mongo_helper_bulk_result_t *res = NULL;
   mongo_helper_error_t me;
   status_t st = ST_OK;

   /* the same documents in the same order as bulk_in() (building the
    * array is part of using a bulk API that takes one) */
   for (long k = 0; k < r->ops; k++) {
      docs[k] = B.flat[k % B.flat_n];
   }
   coll_name (name, sizeof name, "bulk", SIDE_HELPER);
   if (!mongo_helper_bulk_insert (NULL,
                                  name,
                                  (const bson_t *const *) docs,
                                  (size_t) r->ops,
                                  (size_t) r->param,
                                  false,
                                  &res,
                                  &me)) {
      st = fail_mh (r, "mongo_helper_bulk_insert", &me);
   } else if (!res || res->inserted != r->ops || res->n_failures != 0) {
      st = fail (r,
                 "bulk insert: %lld inserted, expected %ld",
                 res ? (long long) res->inserted : -1LL,
                 r->ops);
   } else {
      snprintf (r->verify_coll, sizeof r->verify_coll, "%s", name);
      r->verify_count = r->ops;
   }
   mongo_helper_bulk_result_destroy (res);
   bson_free (docs);
   return st;
}

static status_t
raw_bulk (run_t *r)
{
   char name[64];
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll;
   status_t st;

   coll_name (name, sizeof name, "bulk", SIDE_RAW);
   coll = mongoc_client_get_collection (c, B.db, name);
   st = bulk_in (coll, r);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: aggregation $match + $group ------------------------------ */

/* [{$match: {category: {$lt: 10}}},
 *  {$group: {_id: "$category", total: {$sum: "$value"}, n: {$sum: 1}}}] */
static bson_t *
agg_pipeline (void)
{
   return BCON_NEW ("pipeline",
                    "[",
                    "{",
                    "$match",
                    "{",
                    "category",
                    "{",
                    "$lt",
                    BCON_INT32 (10),
                    "}",
                    "}",
                    "}",
                    "{",
                    "$group",
                    "{",
                    "_id",
                    BCON_UTF8 ("$category"),
                    "total",
                    "{",
                    "$sum",
                    BCON_UTF8 ("$value"),
                    "}",
                    "n",
                    "{",
                    "$sum",
                    BCON_INT32 (1),
                    "}",
                    "}",
                    "}",
                    "]");
}

static bool
op_aggregate (mongoc_collection_t *coll, const bson_t *pipeline, bson_error_t *e)
{
   mongoc_cursor_t *cur =
      mongoc_collection_aggregate (coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
   const bson_t *doc;
   bson_t results = BSON_INITIALIZER;
   long groups = 0;
   bool ok;

   /* The same result as mongo_helper_aggregate(): every result document
    * in one array the caller keeps. */
   while (mongoc_cursor_next (cur, &doc)) {
      char key[16];
      const char *k;

      bson_uint32_to_string ((uint32_t) groups++, &k, key, sizeof key);
      bson_append_document (&results, k, -1, doc);
   }
   bson_destroy (&results);
   ok = !mongoc_cursor_error (cur, e);
   if (ok && groups != 10) {
      bson_set_error (e, 0, 0, "aggregate: %ld groups, expected 10", groups);
      ok = false;
   }
   mongoc_cursor_destroy (cur);
   return ok;
}

/* mongo_helper_aggregate() materialises the 10 groups into an array, as
 * raw's loop does; it takes the stages as an array document. */
static status_t
helper_aggregate (run_t *r)
{
   bson_t *wrapped = agg_pipeline ();
   bson_t stages;
   bson_iter_t it;
   const uint8_t *data;
   uint32_t len;
   status_t st = ST_OK;

   if (!bson_iter_init_find (&it, wrapped, "pipeline") || !BSON_ITER_HOLDS_ARRAY (&it)) {
      bson_destroy (wrapped);
      return fail (r, "aggregate: pipeline not built");
   }
   bson_iter_array (&it, &len, &data);
   bson_init_static (&stages, data, len);
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      mongo_helper_error_t me;
      bson_t out;

      if (!mongo_helper_aggregate (NULL, "bench_flat", &stages, NULL, &out, &me)) {
         st = fail_mh (r, "mongo_helper_aggregate", &me);
      } else if (bson_count_keys (&out) != 10) {
         st = fail (r, "aggregate: %u groups, expected 10", bson_count_keys (&out));
      }
      bson_destroy (&out);
   }
   bson_destroy (wrapped);
   return st;
}

static status_t
raw_aggregate (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_flat");
   bson_t *pipeline = agg_pipeline ();
   bson_error_t e;
   status_t st = ST_OK;

   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      if (!op_aggregate (coll, pipeline, &e)) {
         st = fail_bson (r, "aggregate", &e);
      }
   }
   bson_destroy (pipeline);
   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: streaming a large collection in chunks -------------------- */

static bool
setup_stream (char *err, size_t err_size)
{
   static long seeded = -1;

   if (seeded == B.stream_docs) {
      return true;
   }
   if (!admin_seed ("bench_stream", B.stream_docs, gen_flat_id, err, err_size)) {
      return false;
   }
   seeded = B.stream_docs;
   return true;
}

/* Streams the first r->ops documents in server batches of STREAM_CHUNK and
 * records how resident memory moved: it must not grow with the count. */
static status_t
stream_in (mongoc_collection_t *coll, run_t *r)
{
   bson_t *opts = BCON_NEW ("batchSize", BCON_INT32 (STREAM_CHUNK));
   bson_error_t e;
   long before, n;
   bool ok;

   if (r->ops < B.stream_docs) {
      BSON_APPEND_INT64 (opts, "limit", r->ops); /* the warm-up reads a part */
   }
   before = rss_kb ();
   ok = op_find_all (coll, opts, &n, &e);

   r->rss_growth_kb = rss_kb () - before;
   r->peak_growth_kb = hwm_kb () - before;
   bson_destroy (opts);
   if (!ok) {
      return fail_bson (r, "stream", &e);
   }
   return n == r->ops ? ST_OK : fail (r, "stream: %ld documents, expected %ld", n, r->ops);
}

static status_t
helper_stream (run_t *r)
{
   mongo_helper_find_opts_t fo;
   mongo_helper_error_t me;
   chunk_count_t c = {0, 0};
   long before;
   bool ok;

   memset (&fo, 0, sizeof fo);
   if (r->ops < B.stream_docs) {
      fo.limit = r->ops; /* the warm-up reads a part */
   }
   before = rss_kb ();
   ok = mongo_helper_find_stream (
      NULL, "bench_stream", NULL, &fo, STREAM_CHUNK, count_chunk, &c, &me);
   r->rss_growth_kb = rss_kb () - before;
   r->peak_growth_kb = hwm_kb () - before;
   if (!ok) {
      return fail_mh (r, "mongo_helper_find_stream", &me);
   }
   if (c.bad) {
      return fail (r, "stream: %ld empty documents or chunks out of order", c.bad);
   }
   return c.n == r->ops ? ST_OK : fail (r, "stream: %ld documents, expected %ld", c.n, r->ops);
}

static status_t
raw_stream (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_collection_t *coll = mongoc_client_get_collection (c, B.db, "bench_stream");
   status_t st = stream_in (coll, r);

   mongoc_collection_destroy (coll);
   raw_push (c);
   return st;
}

/* ---- Task: GridFS upload + download ---------------------------------- */

static bool
prep_gridfs (side_t side, char *err, size_t err_size)
{
   char name[64], coll[80];

   coll_name (name, sizeof name, "fs", side);
   snprintf (coll, sizeof coll, "%s.files", name);
   if (!admin_drop (coll, err, err_size)) {
      return false;
   }
   snprintf (coll, sizeof coll, "%s.chunks", name);
   return admin_drop (coll, err, err_size);
}

/* One operation: upload r->param bytes, download them, compare. */
static status_t
gridfs_in (mongoc_database_t *db, side_t side, run_t *r)
{
   char name[64], fname[64];
   bson_t *opts;
   mongoc_gridfs_bucket_t *bucket;
   bson_error_t e;
   status_t st = ST_OK;
   uint8_t *back = bson_malloc ((size_t) r->param + 1);

   coll_name (name, sizeof name, "fs", side);
   opts = BCON_NEW ("bucketName", BCON_UTF8 (name));
   bucket = mongoc_gridfs_bucket_new (db, opts, NULL, &e);
   if (!bucket) {
      st = fail_bson (r, "gridfs bucket", &e);
   }
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      bson_value_t id;
      mongoc_stream_t *up, *down;
      ssize_t got = 0, k;

      snprintf (fname, sizeof fname, "blob-%ld", j);
      up = mongoc_gridfs_bucket_open_upload_stream (bucket, fname, NULL, &id, &e);
      if (!up) {
         st = fail_bson (r, "gridfs open upload", &e);
         break;
      }
      if (mongoc_stream_write (up, B.blob, (size_t) r->param, 0) != (ssize_t) r->param ||
          mongoc_gridfs_bucket_stream_error (up, &e)) {
         st = fail_bson (r, "gridfs upload", &e);
      }
      mongoc_stream_close (up);
      mongoc_stream_destroy (up);
      if (st == ST_OK) {
         down = mongoc_gridfs_bucket_open_download_stream (bucket, &id, &e);
         if (!down) {
            st = fail_bson (r, "gridfs open download", &e);
         } else {
            while ((k = mongoc_stream_read (
                       down, back + got, (size_t) (r->param + 1 - got), 1, 0)) > 0) {
               got += k;
            }
            if (mongoc_gridfs_bucket_stream_error (down, &e)) {
               st = fail_bson (r, "gridfs download", &e);
            } else if (got != r->param || memcmp (back, B.blob, (size_t) r->param) != 0) {
               st = fail (r,
                          "gridfs: downloaded %ld bytes differ from the %ld uploaded",
                          (long) got,
                          r->param);
            }
            mongoc_stream_destroy (down);
         }
      }
      bson_value_destroy (&id);
   }
   mongoc_gridfs_bucket_destroy (bucket);
   bson_destroy (opts);
   bson_free (back);
   return st;
}

/* One operation: put r->param bytes, get them back, compare. */
static status_t
helper_gridfs (run_t *r)
{
   char name[64], fname[64];
   mongo_helper_gridfs_opts_t go;
   status_t st = ST_OK;

   coll_name (name, sizeof name, "fs", SIDE_HELPER);
   memset (&go, 0, sizeof go);
   go.bucket = name;
   for (long j = 0; j < r->ops && st == ST_OK; j++) {
      mongo_helper_error_t me;
      bson_value_t id;
      uint8_t *data = NULL;
      size_t len = 0;

      snprintf (fname, sizeof fname, "blob-%ld", j);
      if (!mongo_helper_gridfs_put (&go, fname, B.blob, (size_t) r->param, NULL, NULL, &id, &me)) {
         return fail_mh (r, "mongo_helper_gridfs_put", &me);
      }
      if (!mongo_helper_gridfs_get (&go, &id, &data, &len, &me)) {
         st = fail_mh (r, "mongo_helper_gridfs_get", &me);
      } else if (len != (size_t) r->param || memcmp (data, B.blob, len) != 0) {
         st = fail (r, "gridfs: downloaded %zu bytes differ from the %ld uploaded", len, r->param);
      }
      bson_free (data);
      bson_value_destroy (&id);
   }
   return st;
}

static status_t
raw_gridfs (run_t *r)
{
   mongoc_client_t *c = raw_pop ();
   mongoc_database_t *db = mongoc_client_get_database (c, B.db);
   status_t st = gridfs_in (db, SIDE_RAW, r);

   mongoc_database_destroy (db);
   raw_push (c);
   return st;
}

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

static bson_t *
gen_session (long i)
{
   char hex[65];
   bson_t *d = bson_new (), data;
   int64_t now = now_ms ();

   session_key (i, hex);
   BSON_APPEND_UTF8 (d, "_id", hex);
   BSON_APPEND_DOCUMENT_BEGIN (d, "data", &data);
   BSON_APPEND_INT32 (&data, "counter", (int32_t) i);
   BSON_APPEND_UTF8 (&data, "theme", "dark");
   bson_append_document_end (d, &data);
   {
      char uid[16];
      snprintf (uid, sizeof uid, "user%ld", i % 100);
      BSON_APPEND_UTF8 (d, "userId", uid);
   }
   BSON_APPEND_DATE_TIME (d, "createdAt", now);
   BSON_APPEND_DATE_TIME (d, "lastSeen", now);
   BSON_APPEND_DATE_TIME (d, "expiresAt", now + (int64_t) SESSION_IDLE_S * 1000);
   return d;
}

static bool
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

static bool
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
static mongo_helper_sessions_t *H_SESSIONS;
static mongo_helper_cache_t *H_CACHE;
static mongo_helper_eventlog_t *H_EVENTS;

static mongo_helper_sessions_t *
h_sessions (run_t *r)
{
   if (!H_SESSIONS) {
      mongo_helper_sessions_options_t o;
      mongo_helper_error_t me;

      mongo_helper_sessions_options_init (&o);
      o.collection = "bench_sessions";
      o.idle_lifetime_ms = (int64_t) SESSION_IDLE_S * 1000;
      o.touch_interval_ms = (int64_t) SESSION_TOUCH_S * 1000;
      o.lazy_ensure = false;
      H_SESSIONS = mongo_helper_sessions_new (&o, &me);
      if (!H_SESSIONS) {
         fail_mh (r, "mongo_helper_sessions_new", &me);
      }
   }
   return H_SESSIONS;
}

/* load returns the data document (checked: the seeded counter), touch
 * slides the expiry lazily: two calls, because that is the API's shape
 * (a handler that only reads the session calls load alone). */
static status_t
helper_session (run_t *r)
{
   mongo_helper_sessions_t *S = h_sessions (r);
   char token[48];

   if (!S) {
      return ST_FAIL;
   }
   for (long j = 0; j < r->ops; j++) {
      long i = j % B.sessions_n;
      mongo_helper_error_t me;
      bson_t data;
      bson_iter_t it;
      bool wrote, ok;

      snprintf (token, sizeof token, "sess%039ld", i);
      if (!mongo_helper_sessions_load_touch (S, token, &data, &wrote, &me)) {
         bson_destroy (&data);
         return fail_mh (r, "mongo_helper_sessions_load_touch", &me);
      }
      ok = bson_iter_init_find (&it, &data, "counter") && BSON_ITER_HOLDS_INT32 (&it) &&
           bson_iter_int32 (&it) == (int32_t) i;
      bson_destroy (&data);
      if (!ok) {
         return fail (r, "session %ld: loaded data is not the seeded one", i);
      }
   }
   return ST_OK;
}

static status_t
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

static mongo_helper_sessions_t *H_SEALED[2]; /* [0] sealed, [1] clear */

static bson_t *
gen_session_1k (long i)
{
   char hex[65], blob[SEALED_BLOB + 1];
   bson_t *d = bson_new (), data;
   int64_t now = now_ms ();

   session_key (i, hex);
   for (int k = 0; k < SEALED_BLOB; k++) {
      blob[k] = (char) ('a' + (i + k) % 26);
   }
   blob[SEALED_BLOB] = '\0';
   BSON_APPEND_UTF8 (d, "_id", hex);
   BSON_APPEND_DOCUMENT_BEGIN (d, "data", &data);
   BSON_APPEND_INT32 (&data, "counter", (int32_t) i);
   BSON_APPEND_UTF8 (&data, "theme", "dark");
   BSON_APPEND_UTF8 (&data, "cart", blob);
   bson_append_document_end (d, &data);
   BSON_APPEND_DATE_TIME (d, "createdAt", now);
   BSON_APPEND_DATE_TIME (d, "lastSeen", now);
   BSON_APPEND_DATE_TIME (d, "expiresAt", now + (int64_t) SESSION_IDLE_S * 1000);
   return d;
}

static mongo_helper_sessions_t *
h_sealed (bool sealed, mongo_helper_error_t *me)
{
   mongo_helper_sessions_t **h = &H_SEALED[sealed ? 0 : 1];

   if (!*h) {
      mongo_helper_sessions_options_t o;

      mongo_helper_sessions_options_init (&o);
      o.collection = sealed ? "bench_sessions_sealed" : "bench_sessions_clear";
      o.idle_lifetime_ms = (int64_t) SESSION_IDLE_S * 1000;
      o.touch_interval_ms = (int64_t) SESSION_TOUCH_S * 1000;
      o.lazy_ensure = false;
      o.keys = sealed ? SEALED_KEYS : NULL;
      *h = mongo_helper_sessions_new (&o, me);
   }
   return *h;
}

static bool
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

static bool
prep_sealed (side_t side, char *err, size_t err_size)
{
   return refresh_sessions (
      side == SIDE_RAW ? "bench_sessions_clear" : "bench_sessions_sealed", err, err_size);
}

static status_t
sealed_loads (run_t *r, bool sealed)
{
   mongo_helper_error_t me;
   mongo_helper_sessions_t *S = h_sealed (sealed, &me);
   char token[48];

   if (!S) {
      return fail_mh (r, "mongo_helper_sessions_new", &me);
   }
   for (long j = 0; j < r->ops; j++) {
      long i = j % B.sessions_n;
      bson_t data;
      bson_iter_t it;
      bool ok;

      snprintf (token, sizeof token, "sess%039ld", i);
      if (!mongo_helper_sessions_load_touch (S, token, &data, NULL, &me)) {
         bson_destroy (&data);
         return fail_mh (r, "mongo_helper_sessions_load_touch", &me);
      }
      ok = bson_iter_init_find (&it, &data, "counter") && BSON_ITER_HOLDS_INT32 (&it) &&
           bson_iter_int32 (&it) == (int32_t) i && bson_iter_init_find (&it, &data, "cart") &&
           BSON_ITER_HOLDS_UTF8 (&it);
      bson_destroy (&data);
      if (!ok) {
         return fail (r, "session %ld: loaded data is not the seeded one", i);
      }
   }
   return ST_OK;
}

static status_t
helper_sealed (run_t *r)
{
   return sealed_loads (r, true);
}

static status_t
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

static bool
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
static status_t
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

static status_t
raw_cache_get (run_t *r)
{
   return raw_coll_loop (r, "bench_cache", op_cache_get, B.cache_n, "cache get");
}

/* Same keys and values as op_cache_set(); afterwards the cache must
 * still hold exactly its B.cache_n entries (a set under another _id
 * format would add documents instead of replacing them). */
static status_t
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

static status_t
raw_cache_set (run_t *r)
{
   return raw_coll_loop (r, "bench_cache", op_cache_set, B.flat_n, "cache set");
}

/* ---- Tasks: event logging, synchronous and buffered ------------------ */

static bool
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

static status_t
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

static status_t
raw_event_sync (run_t *r)
{
   char name[64];

   coll_name (name, sizeof name, "events", SIDE_RAW);
   return raw_coll_loop (r, name, op_event_sync, B.meta_n, "log event");
}

static status_t
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
static status_t
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
static status_t
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

/* ---- Tasks: concurrent mix on N threads ------------------------------ */

static bool
setup_conc (char *err, size_t err_size)
{
   static bool done;
   mongoc_client_t *c;
   mongoc_collection_t *coll;
   bson_t *docs[100];
   bson_error_t e;
   bool ok;

   if (done) {
      return true;
   }
   if (!setup_flat (err, err_size) || !admin_drop ("bench_conc_upd", err, err_size)) {
      return false;
   }
   for (int k = 0; k < 100; k++) {
      docs[k] = BCON_NEW ("_id", BCON_INT32 (k), "n", BCON_INT32 (0));
   }
   c = raw_pop ();
   coll = mongoc_client_get_collection (c, B.db, "bench_conc_upd");
   ok = mongoc_collection_insert_many (coll, (const bson_t **) docs, 100, NULL, NULL, &e);
   if (!ok) {
      snprintf (err, err_size, "seeding bench_conc_upd: %s", e.message);
   }
   for (int k = 0; k < 100; k++) {
      bson_destroy (docs[k]);
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   done = ok;
   return ok;
}

static bool
prep_conc (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "conc", side);
   return admin_drop (name, err, err_size);
}

/* The mix, by operation number: 2/4 find one by _id, 1/4 insert one small
 * document, 1/4 update one ($inc) — a web request's typical reads/writes. */
static bool
op_mix (mongoc_collection_t *flat,
        mongoc_collection_t *ins,
        mongoc_collection_t *upd,
        long j,
        bson_error_t *e)
{
   switch (j % 4) {
   case 0:
   case 1:
      return op_find_one (flat, (int32_t) ((j * 7919) % B.flat_coll_n), e);
   case 2:
      return mongoc_collection_insert_one (ins, B.flat[j % B.flat_n], NULL, NULL, e);
   default: {
      bson_t *sel = BCON_NEW ("_id", BCON_INT32 ((int32_t) (j % 100)));
      bson_t *inc = BCON_NEW ("$inc", "{", "n", BCON_INT32 (1), "}");
      bool ok = mongoc_collection_update_one (upd, sel, inc, NULL, NULL, e);
      bson_destroy (sel);
      bson_destroy (inc);
      return ok;
   }
   }
}

typedef struct {
   side_t side;
   long first, count;
   bool ok;
   char err[300];
   pthread_t thread;
} conc_arg_t;

static void *
conc_thread (void *arg)
{
   conc_arg_t *a = arg;
   char name[64];
   bson_error_t e;

   coll_name (name, sizeof name, "conc", a->side);
   a->ok = true;
   if (a->side == SIDE_HELPER) {
      /* N application threads each calling the per-op API is what a web
       * backend does.  (mongo_helper_run_concurrent() is the other shape,
       * a list of operations run K at once; it has no raw/pymongo twin.) */
      for (long j = a->first; j < a->first + a->count && a->ok; j++) {
         mongo_helper_error_t me;

         switch (j % 4) {
         case 0:
         case 1:
            a->ok = h_find_one ((int32_t) ((j * 7919) % B.flat_coll_n), a->err, sizeof a->err);
            break;
         case 2:
            if (!mongo_helper_insert_one (NULL, name, B.flat[j % B.flat_n], NULL, &me)) {
               a->ok = false;
               snprintf (a->err, sizeof a->err, "mongo_helper_insert_one: %.250s", me.message);
            }
            break;
         default: {
            bson_t *sel = BCON_NEW ("_id", BCON_INT32 ((int32_t) (j % 100)));
            bson_t *inc = BCON_NEW ("$inc", "{", "n", BCON_INT32 (1), "}");
            mongo_helper_update_result_t ur;

            if (!mongo_helper_update_one (NULL, "bench_conc_upd", sel, inc, false, &ur, &me)) {
               a->ok = false;
               snprintf (a->err, sizeof a->err, "mongo_helper_update_one: %.250s", me.message);
            } else if (ur.matched != 1) {
               a->ok = false;
               snprintf (a->err,
                         sizeof a->err,
                         "mongo_helper_update_one matched %lld, not 1",
                         (long long) ur.matched);
            }
            mongo_helper_update_result_cleanup (&ur);
            bson_destroy (sel);
            bson_destroy (inc);
            break;
         }
         }
      }
      mongo_helper_thread_release ();
   } else {
      mongoc_client_t *c = raw_pop ();
      mongoc_collection_t *f = mongoc_client_get_collection (c, B.db, "bench_flat");
      mongoc_collection_t *i = mongoc_client_get_collection (c, B.db, name);
      mongoc_collection_t *u = mongoc_client_get_collection (c, B.db, "bench_conc_upd");
      for (long j = a->first; j < a->first + a->count && a->ok; j++) {
         if (!op_mix (f, i, u, j, &e)) {
            a->ok = false;
            snprintf (a->err, sizeof a->err, "%.250s", e.message);
         }
      }
      mongoc_collection_destroy (f);
      mongoc_collection_destroy (i);
      mongoc_collection_destroy (u);
      raw_push (c);
   }
   return NULL;
}

static status_t
conc_run (run_t *r, side_t side)
{
   long nthreads = r->param;
   conc_arg_t *args = bson_malloc0 ((size_t) nthreads * sizeof *args);
   status_t st = ST_OK;

   for (long t = 0; t < nthreads; t++) {
      args[t].side = side;
      args[t].first = t * (r->ops / nthreads);
      args[t].count = r->ops / nthreads + (t == nthreads - 1 ? r->ops % nthreads : 0);
      pthread_create (&args[t].thread, NULL, conc_thread, &args[t]);
   }
   for (long t = 0; t < nthreads; t++) {
      pthread_join (args[t].thread, NULL);
      if (!args[t].ok && st == ST_OK) {
         st = fail (r, "thread %ld: %s", t, args[t].err);
      }
   }
   bson_free (args);
   return st;
}

static status_t
helper_conc (run_t *r)
{
   return conc_run (r, SIDE_HELPER);
}

static status_t
raw_conc (run_t *r)
{
   return conc_run (r, SIDE_RAW);
}

/* ---- The task table -------------------------------------------------- */

static const task_t TASKS[] = {
   {"run_command",
    KIND_SINGLE,
    "one ping command",
    10000,
    600,
    0,
    0,
    NULL,
    NULL,
    helper_run_command,
    raw_run_command,
    true,
    "helper: mongo_helper_command"},
   {"find_one",
    KIND_SINGLE,
    "find one flat document by _id",
    5000,
    600,
    0,
    0,
    setup_flat,
    NULL,
    helper_find_one,
    raw_find_one,
    true,
    "helper: mongo_helper_find_one"},
   {"insert_one_small",
    KIND_SINGLE,
    "insert one flat document (~300 B)",
    5000,
    600,
    0,
    0,
    NULL,
    prep_insert_small,
    helper_insert_small,
    raw_insert_small,
    true,
    "helper: mongo_helper_insert_one"},
   {"insert_one_large",
    KIND_SINGLE,
    "insert one large document (~1.5 MB)",
    50,
    10,
    0,
    0,
    NULL,
    prep_insert_large,
    helper_insert_large,
    raw_insert_large,
    true,
    "helper: mongo_helper_insert_one"},
   {"insert_one_large_invalid",
    KIND_SINGLE,
    "try to insert one large document (~1.5 MB) whose last string has an invalid UTF-8 byte: "
    "rejected before sending",
    50,
    10,
    0,
    0,
    NULL,
    prep_insert_invalid,
    helper_insert_invalid,
    raw_insert_invalid,
    true,
    "helper: mongo_helper_insert_one; every side must reject it (INVALID_ARGUMENT / "
    "MONGOC_ERROR_COMMAND_INVALID_ARG; pymongo: a lone surrogate, UnicodeEncodeError) and store "
    "nothing"},
   {"find_many",
    KIND_BULK,
    "one nested document read from a find cursor",
    10000,
    2000,
    0,
    0,
    setup_nested,
    NULL,
    helper_find_many,
    raw_find_many,
    true,
    "helper: mongo_helper_find_stream"},
   {"insert_many_small",
    KIND_BULK,
    "one flat document of an ordered insert-many",
    10000,
    2000,
    0,
    0,
    NULL,
    prep_many_small,
    helper_many_small,
    raw_many_small,
    true,
    "helper: mongo_helper_insert_many"},
   {"insert_many_large",
    KIND_BULK,
    "one large document of an ordered insert-many",
    20,
    5,
    0,
    0,
    NULL,
    prep_many_large,
    helper_many_large,
    raw_many_large,
    true,
    "helper: mongo_helper_insert_many"},
   {"bulk_insert",
    KIND_BULK,
    "one flat document of an unordered bulk insert, batches of 1000",
    50000,
    5000,
    BULK_BATCH,
    BULK_BATCH,
    NULL,
    prep_bulk,
    helper_bulk,
    raw_bulk,
    true,
    "helper: mongo_helper_bulk_insert"},
   {"aggregate",
    KIND_BULK,
    "one $match+$group pipeline over the flat collection",
    10,
    3,
    0,
    0,
    setup_flat,
    NULL,
    helper_aggregate,
    raw_aggregate,
    true,
    "helper: mongo_helper_aggregate"},
   {"stream",
    KIND_BULK,
    "one flat document streamed in chunks of 1000",
    0,
    0,
    0,
    0,
    setup_stream,
    NULL,
    helper_stream,
    raw_stream,
    true,
    "helper: mongo_helper_find_stream"},
   {"gridfs",
    KIND_BULK,
    "one upload + download of the file (50 MB full, 5 MB quick)",
    1,
    1,
    50L << 20,
    5L << 20,
    NULL,
    prep_gridfs,
    helper_gridfs,
    raw_gridfs,
    true,
    "helper: mongo_helper_gridfs_put/_get"},
   {"session_touch",
    KIND_HELPER,
    "session load + lazy touch (no write when fresh)",
    5000,
    600,
    0,
    0,
    setup_sessions,
    prep_sessions,
    helper_session,
    raw_session,
    true,
    "helper: mongo_helper_sessions_load_touch"},
   {"session_sealed",
    KIND_HELPER,
    "session load + lazy touch of a sealed ~1 KB session (AES-256-GCM)",
    5000,
    600,
    0,
    0,
    setup_sealed,
    prep_sealed,
    helper_sealed,
    clear_sealed,
    false,
    "helper: mongo_helper_sessions_load_touch on a store with a key ring; its raw column is the "
    "same call on a store without keys, so helper/raw is the added cost of encryption at rest "
    "(issue 13: <= 1.05 CPU)"},
   {"cache_get",
    KIND_HELPER,
    "cache get (hit, TTL filter)",
    5000,
    600,
    0,
    0,
    setup_cache,
    NULL,
    helper_cache_get,
    raw_cache_get,
    true,
    "helper: mongo_helper_cache_get"},
   {"cache_set",
    KIND_HELPER,
    "cache set (replace, upsert, TTL)",
    5000,
    600,
    0,
    0,
    setup_cache,
    NULL,
    helper_cache_set,
    raw_cache_set,
    true,
    "helper: mongo_helper_cache_set"},
   {"event_log_sync",
    KIND_HELPER,
    "log one event with one synchronous insert",
    5000,
    600,
    0,
    0,
    NULL,
    prep_events,
    helper_event_sync,
    raw_event_sync,
    true,
    "helper: mongo_helper_eventlog_log"},
   {"event_log_buffered",
    KIND_HELPER,
    "log one event through the buffered writer (incl. final flush)",
    50000,
    5000,
    0,
    0,
    NULL,
    prep_events,
    helper_event_buffered,
    raw_event_buffered,
    false,
    "helper: mongo_helper_event_writer_*; raw: the same events in unordered insert_many batches "
    "of the writer's batch size (1000), the fastest bulk path; pymongo has no buffered writer"},
   {"concurrent_8",
    KIND_CONCURRENT,
    "one op of the mix (find/insert/update) on 8 threads",
    8000,
    800,
    8,
    8,
    setup_conc,
    prep_conc,
    helper_conc,
    raw_conc,
    true,
    "helper: per-op mongo_helper_find_one/_insert_one/_update_one"},
   {"concurrent_32",
    KIND_CONCURRENT,
    "one op of the mix (find/insert/update) on 32 threads",
    16000,
    1280,
    32,
    32,
    setup_conc,
    prep_conc,
    helper_conc,
    raw_conc,
    true,
    "helper: per-op mongo_helper_find_one/_insert_one/_update_one"},
};

#define NTASKS (sizeof TASKS / sizeof TASKS[0])

/* ---- The pymongo coprocess ------------------------------------------- */

/* Started before libmongoc is initialised (fork before any driver
 * thread); talks one line per request, one JSON line per reply. */
static bool
py_start (char *err, size_t err_size)
{
   int to_child[2], from_child[2];

   if (pipe (to_child) != 0 || pipe (from_child) != 0) {
      snprintf (err, err_size, "pipe: %s", strerror (errno));
      return false;
   }
   B.py_pid = fork ();
   if (B.py_pid < 0) {
      snprintf (err, err_size, "fork: %s", strerror (errno));
      return false;
   }
   if (B.py_pid == 0) {
      dup2 (to_child[0], 0);
      dup2 (from_child[1], 1);
      close (to_child[0]);
      close (to_child[1]);
      close (from_child[0]);
      close (from_child[1]);
      execl (B.python, B.python, B.script, "--serve", "--uri", B.uri, (char *) NULL);
      fprintf (stderr, "bench: cannot run %s %s: %s\n", B.python, B.script, strerror (errno));
      _exit (127);
   }
   close (to_child[0]);
   close (from_child[1]);
   /* not inherited by the callgrind children */
   fcntl (to_child[1], F_SETFD, FD_CLOEXEC);
   fcntl (from_child[0], F_SETFD, FD_CLOEXEC);
   B.py_in = fdopen (to_child[1], "w");
   B.py_out = fdopen (from_child[0], "r");
   return B.py_in && B.py_out;
}

/* Sends one request line and parses the JSON reply into `reply`. */
static bool
py_call (const char *line, bson_t *reply, char *err, size_t err_size)
{
   char *buf = NULL;
   size_t cap = 0;
   ssize_t n;
   bson_error_t e;
   bool ok;

   bson_init (reply);
   if (!B.py_in || fprintf (B.py_in, "%s\n", line) < 0 || fflush (B.py_in) != 0) {
      snprintf (err, err_size, "pymongo side is not running");
      return false;
   }
   n = getline (&buf, &cap, B.py_out);
   if (n <= 0) {
      snprintf (err, err_size, "pymongo side exited (see its stderr above)");
      free (buf);
      fclose (B.py_in);
      B.py_in = NULL;
      return false;
   }
   bson_destroy (reply);
   ok = bson_init_from_json (reply, buf, n, &e);
   if (!ok) {
      snprintf (err, err_size, "pymongo side sent bad JSON: %.400s", e.message);
      bson_init (reply);
   }
   free (buf);
   return ok;
}

static void
py_stop (void)
{
   if (B.py_in) {
      fprintf (B.py_in, "quit\n");
      fclose (B.py_in);
      B.py_in = NULL;
   }
   if (B.py_out) {
      fclose (B.py_out);
      B.py_out = NULL;
   }
   if (B.py_pid > 0) {
      waitpid (B.py_pid, NULL, 0);
      B.py_pid = 0;
   }
}

static double
bson_num (const bson_t *b, const char *key, double dflt)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, b, key) &&
       (BSON_ITER_HOLDS_NUMBER (&it) || BSON_ITER_HOLDS_BOOL (&it))) {
      return bson_iter_as_double (&it);
   }
   return dflt;
}

static const char *
bson_str (const bson_t *b, const char *key)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, b, key) && BSON_ITER_HOLDS_UTF8 (&it)) {
      return bson_iter_utf8 (&it, NULL);
   }
   return "";
}

/* ---- Measurement ----------------------------------------------------- */

#define MAX_REPS 64

typedef struct {
   status_t status; /* worst over the runs */
   char err[512];
   int n;                                      /* measured repetitions */
   double cpu_us[MAX_REPS], wall_us[MAX_REPS]; /* per operation */
   double ops_s[MAX_REPS];
   long peak_kb[MAX_REPS];
   long growth_kb[MAX_REPS], peak_growth_kb[MAX_REPS];
   double req_cpu_us[MAX_REPS];
   long warm_ops, warm_peak_growth_kb; /* the warm-up run, for flatness */
} side_res_t;

typedef struct {
   const task_t *t;
   bool selected;
   long ops, param;
   status_t setup_status;
   char setup_err[512];
   side_res_t s[SIDE_N];
   double ratio_hr[MAX_REPS], ratio_ph[MAX_REPS]; /* per repetition, paired */
   int n_hr, n_ph;
   double elapsed_s;
   /* instruction pass: instructions per operation of each measured run */
   bool instr_run;
   long instr_ops;
   status_t instr_status[SIDE_N];
   char instr_err[SIDE_N][512];
   double instr[SIDE_N][MAX_REPS];
   int n_instr[SIDE_N];
   double attr[SIDE_N][4]; /* per operation, AG_* groups, from the median run */
   bool attr_ok[SIDE_N];
   int instr_proc[SIDE_N][MAX_REPS], instr_dump[SIDE_N][MAX_REPS]; /* each value's dump */
   int instr_got[SIDE_N];     /* counted runs reported by the current child */
   double instr_secs[SIDE_N]; /* wall time of this task in the children */
} task_res_t;

static task_res_t RES[NTASKS];

static run_fn
side_fn (const task_t *t, side_t side)
{
   if (side == SIDE_HELPER && B.aa) {
      return t->raw;
   }
   return side == SIDE_HELPER ? t->helper : side == SIDE_RAW ? t->raw : NULL;
}

/* One run of one side; records it unless it is the warm-up. */
static void
run_side (task_res_t *tr, side_t side, long ops, bool warmup)
{
   side_res_t *sr = &tr->s[side];
   const task_t *t = tr->t;
   run_t r;
   status_t st;
   double c0, w0, cpu, wall;
   long peak;

   if (sr->status != ST_OK) {
      return; /* n/a, or already failed: one failure per side is enough */
   }
   memset (&r, 0, sizeof r);
   r.ops = ops;
   r.param = tr->param;
   r.warmup = warmup;
   r.req_cpu_s = -1;
   r.rss_growth_kb = -1;
   r.peak_growth_kb = -1;
   if (side == SIDE_PY) {
      char line[256];
      bson_t reply;
      const char *status;

      snprintf (line, sizeof line, "run %s %ld %ld %d", t->name, ops, tr->param, warmup ? 1 : 0);
      if (!py_call (line, &reply, r.err, sizeof r.err)) {
         st = ST_FAIL;
         cpu = wall = 0;
         peak = 0;
      } else {
         status = bson_str (&reply, "status");
         st = strcmp (status, "ok") == 0 ? ST_OK : strcmp (status, "na") == 0 ? ST_NA : ST_FAIL;
         snprintf (r.err, sizeof r.err, "%s", bson_str (&reply, "error"));
         cpu = bson_num (&reply, "cpu_s", 0);
         wall = bson_num (&reply, "wall_s", 0);
         peak = (long) bson_num (&reply, "peak_rss_kb", 0);
         r.rss_growth_kb = (long) bson_num (&reply, "rss_growth_kb", -1);
         r.peak_growth_kb = (long) bson_num (&reply, "peak_growth_kb", -1);
      }
      bson_destroy (&reply);
   } else {
      run_fn fn = side_fn (t, side);

      if (!fn) {
         sr->status = ST_NA;
         return;
      }
      if (t->prep && !t->prep (side, r.err, sizeof r.err)) {
         st = ST_FAIL;
         cpu = wall = 0;
         peak = 0;
      } else {
         hwm_reset ();
         c0 = cpu_s (RUSAGE_SELF);
         w0 = now_s ();
         st = fn (&r);
         wall = now_s () - w0;
         cpu = cpu_s (RUSAGE_SELF) - c0;
         peak = hwm_kb ();
         if (st == ST_OK && r.verify_coll[0]) {
            st = count_docs (r.verify_coll, r.verify_count, &r);
         }
      }
   }
   if (st != ST_OK) {
      sr->status = st;
      snprintf (sr->err, sizeof sr->err, "%s", r.err);
      if (st == ST_FAIL) {
         fprintf (stderr, "bench: %s/%s FAILED: %s\n", t->name, side_name[side], r.err);
      }
      return;
   }
   if (warmup) {
      sr->warm_ops = ops;
      sr->warm_peak_growth_kb = r.peak_growth_kb;
      return;
   }
   if (sr->n >= MAX_REPS) {
      return;
   }
   sr->cpu_us[sr->n] = cpu * 1e6 / (double) ops;
   sr->wall_us[sr->n] = wall * 1e6 / (double) ops;
   sr->ops_s[sr->n] = wall > 0 ? (double) ops / wall : 0;
   sr->peak_kb[sr->n] = peak;
   sr->growth_kb[sr->n] = r.rss_growth_kb;
   sr->peak_growth_kb[sr->n] = r.peak_growth_kb;
   sr->req_cpu_us[sr->n] = r.req_cpu_s >= 0 ? r.req_cpu_s * 1e6 / (double) ops : -1;
   sr->n++;
}

static int
cmp_double (const void *a, const void *b)
{
   double x = *(const double *) a, y = *(const double *) b;

   return (x > y) - (x < y);
}

typedef struct {
   double med, min, max;
   bool ok;
} stat_t;

static stat_t
stats (const double *v, int n)
{
   stat_t s = {0, 0, 0, false};
   double tmp[MAX_REPS];

   if (n <= 0) {
      return s;
   }
   memcpy (tmp, v, (size_t) n * sizeof *tmp);
   qsort (tmp, (size_t) n, sizeof *tmp, cmp_double);
   s.min = tmp[0];
   s.max = tmp[n - 1];
   s.med = n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
   s.ok = true;
   return s;
}

static stat_t
stats_long (const long *v, int n)
{
   double d[MAX_REPS];

   for (int k = 0; k < n; k++) {
      d[k] = (double) v[k];
   }
   return stats (d, n);
}

static bool
in_list (const char *list, const char *name)
{
   size_t n = strlen (name);
   const char *p = list;

   while (p && *p) {
      const char *comma = strchr (p, ',');
      size_t len = comma ? (size_t) (comma - p) : strlen (p);
      if (len == n && strncmp (p, name, n) == 0) {
         return true;
      }
      p = comma ? comma + 1 : NULL;
   }
   return false;
}

/* Operations per run and the task parameter in this mode. */
static void
task_ops_param (const task_t *t, long *ops, long *param)
{
   *ops = B.quick ? t->ops_quick : t->ops_full;
   *param = B.quick ? t->param_quick : t->param_full;
   if (strcmp (t->name, "stream") == 0) {
      *ops = B.stream_docs;
      *param = STREAM_CHUNK;
   }
}

static void
run_task (task_res_t *tr)
{
   const task_t *t = tr->t;
   double t0 = now_s ();
   long wops;

   task_ops_param (t, &tr->ops, &tr->param);
   for (int s = 0; s < SIDE_N; s++) {
      tr->s[s].status = ST_OK;
   }
   if (!side_fn (t, SIDE_HELPER)) {
      tr->s[SIDE_HELPER].status = ST_NA;
   }
   if (!t->raw) {
      tr->s[SIDE_RAW].status = ST_NA;
   }
   if (!t->pymongo || !B.pymongo) {
      tr->s[SIDE_PY].status = ST_NA;
      snprintf (tr->s[SIDE_PY].err,
                sizeof tr->s[SIDE_PY].err,
                "%s",
                B.pymongo ? "not implemented for pymongo" : "--no-pymongo");
   }
   if (B.instr_only) {
      for (int s = 0; s < SIDE_N; s++) {
         if (tr->s[s].status == ST_OK) {
            tr->s[s].status = ST_NA;
            snprintf (tr->s[s].err, sizeof tr->s[s].err, "--instr-only: no CPU pass");
         }
      }
      fprintf (stderr, "bench: %-20s set-up ...", t->name);
   } else {
      fprintf (stderr, "bench: %-20s %8ld ops x %d reps ...", t->name, tr->ops, B.reps);
   }
   if (t->setup && !t->setup (tr->setup_err, sizeof tr->setup_err)) {
      tr->setup_status = ST_FAIL;
      fprintf (stderr, " set-up FAILED: %s\n", tr->setup_err);
      return;
   }
   if (B.instr_only) {
      fprintf (stderr, " %.1f s\n", now_s () - t0);
      return;
   }
   /* Warm-up: connections, server caches, allocator; a fifth of the work
    * (all of it for find_many, whose operation count is the collection's). */
   wops = tr->ops / 5 > 0 ? tr->ops / 5 : 1;
   if (strcmp (t->name, "find_many") == 0) {
      wops = tr->ops;
   }
   if (strcmp (t->name, "concurrent_8") == 0 || strcmp (t->name, "concurrent_32") == 0) {
      wops = wops < tr->param ? tr->param : wops;
   }
   for (int s = 0; s < SIDE_N; s++) {
      run_side (tr, (side_t) s, wops, true);
   }
   for (int rep = 0; rep < B.reps; rep++) {
      /* Cycle through all six orders, so every side runs first, last and
       * right after each other side equally often (over 6 repetitions):
       * an A/A test (raw against raw) showed a plain rotation biasing the
       * side that always followed pymongo's run by up to 10-20% CPU on a
       * busy machine. */
      static const int order[6][SIDE_N] = {
         {0, 1, 2}, {1, 0, 2}, {2, 0, 1}, {0, 2, 1}, {1, 2, 0}, {2, 1, 0}};
      for (int k = 0; k < SIDE_N; k++) {
         struct timespec settle = {0, 20 * 1000000L};
         nanosleep (&settle, NULL); /* let the server finish the last run */
         run_side (tr, (side_t) order[rep % 6][k], tr->ops, false);
      }
   }
   for (int k = 0; k < B.reps; k++) {
      side_res_t *h = &tr->s[SIDE_HELPER], *r = &tr->s[SIDE_RAW], *p = &tr->s[SIDE_PY];
      if (k < h->n && k < r->n && r->cpu_us[k] > 0) {
         tr->ratio_hr[tr->n_hr++] = h->cpu_us[k] / r->cpu_us[k];
      }
      if (k < h->n && k < p->n && h->cpu_us[k] > 0) {
         tr->ratio_ph[tr->n_ph++] = p->cpu_us[k] / h->cpu_us[k];
      }
   }
   tr->elapsed_s = now_s () - t0;
   fprintf (stderr, " %.1f s\n", tr->elapsed_s);
}

/* ---- Instruction pass (callgrind) -------------------------------------- */

/* CPU time on a shared 2-core machine moves by tens of percent between
 * repetitions; the number of instructions the client executes for the same
 * work hardly moves at all.  So each task's timed loop is also run under
 * valgrind's callgrind, in one child process per side (this program
 * re-executed with --instr-child SIDE), client process only: the test
 * server is another process and is not traced.  The child runs with
 * --instr-atstart=no and, task after task, does the connections and a
 * warm-up run uninstrumented, then per counted run: prep (untimed),
 * instrumentation on, counters zeroed, the same run function as the CPU
 * pass, counters dumped to a file named after the run, instrumentation
 * off, result check.
 * The parent reads the "totals:" line of each dump (every thread of the
 * client process, e.g. the concurrent tasks' workers and the buffered
 * writer's flusher) and divides by the operations of the run. */

#define INSTR_DEFAULT_REPS 2  /* counted runs per task in each child process (quick: 1) */
#define INSTR_DEFAULT_PROCS 2 /* child processes per side, one after the other */
#define INSTR_MAX_PROCS 8
#define INSTR_STREAM_DOCS 2000
#define INSTR_HEARTBEAT_MS 600000

/* Operations per instruction run: a third of the quick mode's (instruction
 * counts need no long runs to be stable; a multiple of the threads for the
 * concurrent tasks), 1 large document, the whole collection for find_many,
 * at most INSTR_STREAM_DOCS streamed documents, one batch of the bulk
 * insert. */
static long
instr_ops_for (const task_t *t)
{
   long ops, param;

   task_ops_param (t, &ops, &param);
   if (strcmp (t->name, "find_many") == 0) {
      return ops;
   }
   if (strcmp (t->name, "stream") == 0) {
      return ops < INSTR_STREAM_DOCS ? ops : INSTR_STREAM_DOCS;
   }
   if (strcmp (t->name, "bulk_insert") == 0) {
      return BULK_BATCH; /* one whole batch */
   }
   if (strstr (t->name, "_large")) {
      return 1; /* ~40 million instructions, the same to a few in a million */
   }
   ops = t->ops_quick >= 300 ? t->ops_quick / 3 : t->ops_quick;
   if (t->kind == KIND_CONCURRENT) {
      ops -= ops % param; /* an equal share per thread */
   }
   return ops;
}

/* The child's URI: the run's, with server monitoring slowed down
 * (heartbeatFrequencyMS, unless the URI sets it), so that no heartbeat of
 * the two pools' monitor threads lands inside a counted run.  Monitoring
 * is not per-operation work, and both sides get the same URI. */
static void
child_uri (char *out, size_t out_size)
{
   bool has = false;

   for (const char *p = B.uri; *p && !has; p++) {
      has = strncasecmp (p, "heartbeatFrequencyMS=", 21) == 0;
   }
   if (has) {
      snprintf (out, out_size, "%s", B.uri);
   } else {
      snprintf (out,
                out_size,
                "%s%cheartbeatFrequencyMS=%d",
                B.uri,
                strchr (B.uri, '?') ? '&' : '?',
                INSTR_HEARTBEAT_MS);
   }
}

/* The concurrent tasks: N threads, each holding a connected client of the
 * side's pool at the same time, so the counted runs never open a
 * connection (a handshake is ~100k instructions, which the runs' thread
 * interleaving would otherwise decide to include or not). */
typedef struct {
   side_t side;
   pthread_barrier_t *bar;
   bool ok;
   char err[300];
   pthread_t thread;
} warm_arg_t;

static void *
warm_thread (void *arg)
{
   warm_arg_t *a = arg;

   if (a->side == SIDE_HELPER && !B.aa) {
      a->ok = h_find_one (0, a->err, sizeof a->err);
      pthread_barrier_wait (a->bar);
      mongo_helper_thread_release ();
   } else {
      mongoc_client_t *c = raw_pop ();
      bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));
      bson_error_t e;

      a->ok = mongoc_client_command_simple (c, B.db, cmd, NULL, NULL, &e);
      if (!a->ok) {
         snprintf (a->err, sizeof a->err, "ping: %.250s", e.message);
      }
      bson_destroy (cmd);
      pthread_barrier_wait (a->bar);
      raw_push (c);
   }
   return NULL;
}

static bool
prewarm_clients (side_t side, long n, char *err, size_t err_size)
{
   pthread_barrier_t bar;
   warm_arg_t *args = bson_malloc0 ((size_t) n * sizeof *args);
   bool ok = true;

   pthread_barrier_init (&bar, NULL, (unsigned) n);
   for (long k = 0; k < n; k++) {
      args[k].side = side;
      args[k].bar = &bar;
      pthread_create (&args[k].thread, NULL, warm_thread, &args[k]);
   }
   for (long k = 0; k < n; k++) {
      pthread_join (args[k].thread, NULL);
      if (!args[k].ok && ok) {
         ok = false;
         snprintf (err, err_size, "pre-warming %ld clients: %s", n, args[k].err);
      }
   }
   pthread_barrier_destroy (&bar);
   bson_free (args);
   return ok;
}

/* The child's warm-up, uncounted: as in the CPU pass, a fifth of the
 * work (all of it for find_many, whose count is the collection's; at
 * least one operation per thread for the concurrent tasks). */
static long
instr_warmup_ops (const task_t *t, long ops, long param)
{
   long w = ops / 5 > 0 ? ops / 5 : 1;

   if (strcmp (t->name, "find_many") == 0) {
      w = ops;
   }
   if (t->kind == KIND_CONCURRENT && w < param) {
      w = param;
   }
   return w;
}

/* One task in the child: a warm-up run, then B.instr_reps counted runs.
 * Reports "run TASK K ok" per counted run (its dump is written by then),
 * then "done TASK", or "na TASK WHY" / "fail TASK WHY", on stdout. */
static void
instr_child_task (const task_t *t, side_t side)
{
   run_fn fn = side_fn (t, side);
   long ops, param;
   char err[512];

   task_ops_param (t, &ops, &param);
   ops = instr_ops_for (t);
   if (!fn) {
      printf ("na %s no %s implementation\n", t->name, side_name[side]);
      return;
   }
   if (t->kind == KIND_CONCURRENT && !prewarm_clients (side, param, err, sizeof err)) {
      printf ("fail %s %s\n", t->name, err);
      return;
   }
   for (int rep = 0; rep <= B.instr_reps; rep++) {
      run_t r;
      char label[160];
      status_t st;

      memset (&r, 0, sizeof r);
      r.ops = rep > 0 ? ops : instr_warmup_ops (t, ops, param);
      r.param = param;
      r.warmup = rep == 0;
      r.req_cpu_s = -1;
      r.rss_growth_kb = -1;
      r.peak_growth_kb = -1;
      if (t->prep && !t->prep (side, r.err, sizeof r.err)) {
         printf ("fail %s prep: %s\n", t->name, r.err);
         return;
      }
      snprintf (label, sizeof label, "%s %s run %d", t->name, side_name[side], rep);
      if (rep > 0) {
         CALLGRIND_START_INSTRUMENTATION;
         CALLGRIND_ZERO_STATS;
      }
      st = fn (&r);
      if (rep > 0) {
         CALLGRIND_DUMP_STATS_AT (label);
         CALLGRIND_STOP_INSTRUMENTATION;
      }
      if (st == ST_OK && r.verify_coll[0]) {
         st = count_docs (r.verify_coll, r.verify_count, &r);
      }
      if (st != ST_OK) {
         printf ("%s %s %s\n", st == ST_NA ? "na" : "fail", t->name, r.err);
         fflush (stdout);
         return;
      }
      if (rep > 0) {
         printf ("run %s %d ok\n", t->name, rep);
         fflush (stdout);
      }
   }
   printf ("done %s\n", t->name);
   fflush (stdout);
}

/* The child, under callgrind: the tasks of B.ic_tasks in table order, for
 * side B.ic_side.  A failed task does not stop the others. */
static int
instr_child (void)
{
   side_t side = SIDE_N;

   for (int s = 0; s < SIDE_PY; s++) {
      if (strcmp (B.ic_side, side_name[s]) == 0) {
         side = (side_t) s;
      }
   }
   if (side == SIDE_N) {
      printf ("fail - no side %s\n", B.ic_side);
      return 2;
   }
   for (size_t k = 0; k < NTASKS; k++) {
      if (in_list (B.ic_tasks, TASKS[k].name)) {
         instr_child_task (&TASKS[k], side);
      }
   }
   return 0;
}

/* Starts argv (argv[0] a path) with its stdout on a pipe (returned in
 * *fd), stderr shared with ours; returns the pid or -1. */
static pid_t
spawn_capture (char *const argv[], int *fd)
{
   int p[2];
   pid_t pid;

   if (pipe (p) != 0) {
      return -1;
   }
   pid = fork ();
   if (pid < 0) {
      close (p[0]);
      close (p[1]);
      return -1;
   }
   if (pid == 0) {
      dup2 (p[1], 1);
      close (p[0]);
      close (p[1]);
      execv (argv[0], argv);
      _exit (127);
   }
   close (p[1]);
   fcntl (p[0], F_SETFD, FD_CLOEXEC); /* not inherited by the other side's child */
   *fd = p[0];
   return pid;
}

/* The total of a callgrind dump ("totals:" line, summed over its cost
 * lines, all threads), after checking that it is the dump of `label`. */
static bool
cg_totals (const char *path, const char *label, double *total, char *err, size_t err_size)
{
   char line[1024], trigger[256];
   bool label_ok = false, have = false;
   FILE *f = fopen (path, "r");

   if (!f) {
      snprintf (err, err_size, "no callgrind dump %.200s: %.100s", path, strerror (errno));
      return false;
   }
   snprintf (trigger, sizeof trigger, "desc: Trigger: Client Request: %s\n", label);
   while (fgets (line, sizeof line, f)) {
      if (strcmp (line, trigger) == 0) {
         label_ok = true;
      } else if (strncmp (line, "totals:", 7) == 0) {
         *total = strtod (line + 7, NULL);
         have = true;
      }
   }
   fclose (f);
   if (!label_ok || !have) {
      snprintf (err,
                err_size,
                "%.200s is not the callgrind dump of \"%.150s\" (or has no totals)",
                path,
                label);
      return false;
   }
   return true;
}

/* Where the helper's extra instructions go: the inclusive cost of the
 * calls into a few groups of functions (calls from outside the group),
 * read from one dump per side.  Approximate: callgrind keeps caller/callee
 * pairs, not whole call paths, so a group called from inside another is
 * counted in both (small here: the name checks' UTF-8 validation). */
enum { AG_APM, AG_HANDLE, AG_BOOK, AG_UTF8, AG_N };
_Static_assert(AG_N == 4, "task_res_t.attr has 4 groups");
static const char *const AG_KEY[AG_N] = {"command_monitoring",
                                         "collection_handles",
                                         "helper_bookkeeping",
                                         "utf8_validation"};
static const char *const AG_FNS[AG_N][12] = {
   {"mongoc_apm_command_started_init",
    "mongoc_apm_command_started_init_with_cmd",
    "mongoc_apm_command_started_cleanup",
    "mongoc_apm_command_succeeded_init",
    "mongoc_apm_command_succeeded_cleanup",
    "mongoc_apm_command_failed_init",
    "mongoc_apm_command_failed_cleanup",
    "mh_apm_started",
    "mh_apm_succeeded",
    "mh_apm_failed",
    NULL},
   {"mongoc_client_get_collection",
    "mongoc_database_get_collection",
    "mongoc_collection_destroy",
    "mongoc_client_get_database",
    "mongoc_database_destroy",
    NULL},
   {"mh_target_check", "mh_doc_check", "mh_metrics_op", "bson_snprintf", NULL},
   {"bson_utf8_validate", NULL},
};

static int
ag_of (const char *name)
{
   size_t n = strcspn (name, "'\n"); /* "f'2": a recursion level of f */

   for (int g = 0; g < AG_N; g++) {
      for (int k = 0; AG_FNS[g][k]; k++) {
         if (strlen (AG_FNS[g][k]) == n && strncmp (AG_FNS[g][k], name, n) == 0) {
            return g;
         }
      }
   }
   return -1;
}

/* "fn=(12) name" or "fn=(12)": the group of function 12, recording its
 * name's group the first time. */
static int
cg_fn_group (const char *spec, signed char **map, size_t *map_n)
{
   char *end;
   long id = strtol (spec + 1, &end, 10);

   if (spec[0] != '(' || *end != ')' || id < 0 || id > 10000000) {
      return -1;
   }
   if ((size_t) id >= *map_n) {
      size_t n = (size_t) id * 2 + 64;
      *map = bson_realloc (*map, n);
      memset (*map + *map_n, -1, n - *map_n);
      *map_n = n;
   }
   if (end[1] == ' ') {
      (*map)[id] = (signed char) ag_of (end + 2);
   }
   return (*map)[id];
}

static bool
cg_attribute (const char *path, double out[AG_N])
{
   char line[4096];
   signed char *map = NULL;
   size_t map_n = 0;
   int fn_g = -1, cfn_g = -1;
   bool call = false;
   FILE *f = fopen (path, "r");

   for (int g = 0; g < AG_N; g++) {
      out[g] = 0;
   }
   if (!f) {
      return false;
   }
   while (fgets (line, sizeof line, f)) {
      if (strncmp (line, "fn=", 3) == 0) {
         fn_g = cg_fn_group (line + 3, &map, &map_n);
      } else if (strncmp (line, "cfn=", 4) == 0) {
         cfn_g = cg_fn_group (line + 4, &map, &map_n);
      } else if (strncmp (line, "calls=", 6) == 0) {
         call = true;
      } else if (call && (isdigit ((unsigned char) line[0]) || line[0] == '+' || line[0] == '-' ||
                          line[0] == '*')) {
         /* "position inclusive-cost": the call just announced */
         char *cost = strchr (line, ' ');
         if (cost && cfn_g >= 0 && cfn_g != fn_g) {
            out[cfn_g] += strtod (cost + 1, NULL);
         }
         call = false;
      }
   }
   fclose (f);
   bson_free (map);
   return true;
}

/* The instruction pass, after the CPU pass: for each of B.instr_procs
 * rounds, one callgrind child per side (helper and raw at the same time:
 * instruction counts do not depend on the machine's load, and on 2 cores
 * the pass takes about half the time; the sides use separate collections
 * for what they write).  Each child runs all its side's tasks; its dumps
 * are read as it reports each counted run. */
typedef struct {
   side_t side;
   pid_t pid;
   int fd;
   char out[1024];
   char line[4096];
   size_t len;
   int dumps; /* dumps read so far (callgrind numbers them 1, 2, ...) */
   int rc;
   double last; /* when the child reported its last task finished */
} instr_child_t;

static task_res_t *
res_of_task (const char *name, size_t len)
{
   for (size_t k = 0; k < NTASKS; k++) {
      if (RES[k].selected && strlen (RES[k].t->name) == len &&
          strncmp (RES[k].t->name, name, len) == 0) {
         return &RES[k];
      }
   }
   return NULL;
}

/* One line of a child's report. */
static void
instr_line (instr_child_t *c, int proc, const char *line)
{
   side_t side = c->side;
   const char *name = strchr (line, ' ');
   size_t nlen;
   task_res_t *tr;

   if (!name) {
      return;
   }
   name++;
   nlen = strcspn (name, " \n");
   tr = res_of_task (name, nlen);
   if (!tr) {
      return;
   }
   if (strncmp (line, "done ", 5) == 0 || strncmp (line, "na ", 3) == 0 ||
       strncmp (line, "fail ", 5) == 0) {
      double now = now_s ();
      tr->instr_secs[side] += now - c->last;
      c->last = now;
   }
   if (tr->instr_status[side] != ST_OK) {
      return;
   }
   if (strncmp (line, "run ", 4) == 0) {
      char path[1100], label[160];
      double total = 0;
      int k = atoi (name + nlen);

      c->dumps++;
      snprintf (path, sizeof path, "%s.%d", c->out, c->dumps);
      snprintf (label, sizeof label, "%s %s run %d", tr->t->name, side_name[side], k);
      if (!cg_totals (path, label, &total, tr->instr_err[side], sizeof tr->instr_err[side])) {
         tr->instr_status[side] = ST_FAIL;
         return;
      }
      if (tr->n_instr[side] < MAX_REPS) {
         tr->instr_proc[side][tr->n_instr[side]] = proc;
         tr->instr_dump[side][tr->n_instr[side]] = c->dumps;
         tr->instr[side][tr->n_instr[side]++] = total / (double) tr->instr_ops;
      }
      tr->instr_got[side]++;
   } else if (strncmp (line, "na ", 3) == 0 || strncmp (line, "fail ", 5) == 0) {
      tr->instr_status[side] = line[0] == 'n' ? ST_NA : ST_FAIL;
      snprintf (tr->instr_err[side],
                sizeof tr->instr_err[side],
                "%.*s",
                (int) strcspn (name + nlen + 1, "\n"),
                name[nlen] ? name + nlen + 1 : "");
   }
}

static void
instr_task_done (task_res_t *tr)
{
   char path[1100];

   fprintf (stderr,
            "bench: %-20s %8ld ops x %d run%s x %d process%s under callgrind:",
            tr->t->name,
            tr->instr_ops,
            B.instr_reps,
            B.instr_reps == 1 ? "" : "s",
            B.instr_procs,
            B.instr_procs == 1 ? "" : "es");
   for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
      stat_t st = stats (tr->instr[s], tr->n_instr[s]);
      int best = 0;

      if (tr->instr_status[s] == ST_FAIL) {
         fprintf (stderr, " %s FAILED: %s;", side_name[s], tr->instr_err[s]);
         continue;
      }
      if (tr->instr_status[s] == ST_NA || !st.ok) {
         fprintf (stderr, " %s n/a;", side_name[s]);
         continue;
      }
      fprintf (stderr, " %s %.0f [%.0f, %.0f];", side_name[s], st.med, st.min, st.max);
      /* attribution from the run nearest the median */
      for (int k = 1; k < tr->n_instr[s]; k++) {
         if (fabs (tr->instr[s][k] - st.med) < fabs (tr->instr[s][best] - st.med)) {
            best = k;
         }
      }
      snprintf (path,
                sizeof path,
                "build/bench/callgrind/%s.p%d.out.%d",
                side_name[s],
                tr->instr_proc[s][best] + 1,
                tr->instr_dump[s][best]);
      tr->attr_ok[s] = cg_attribute (path, tr->attr[s]);
      for (int g = 0; g < AG_N; g++) {
         tr->attr[s][g] /= (double) tr->instr_ops;
      }
   }
   fprintf (stderr,
            " instructions/op; %.1f s\n",
            tr->instr_secs[SIDE_HELPER] > tr->instr_secs[SIDE_RAW] ? tr->instr_secs[SIDE_HELPER]
                                                                   : tr->instr_secs[SIDE_RAW]);
}

static double INSTR_SECS;

static void
instr_pass (void)
{
   double t0 = now_s ();
   char uri[2300], reps_s[16], stream_s[32], path[1100], arg_out[SIDE_PY][1100];
   char tasks[SIDE_PY][1024];
   instr_child_t ch[SIDE_PY];

   child_uri (uri, sizeof uri);
   snprintf (reps_s, sizeof reps_s, "%d", B.instr_reps);
   snprintf (stream_s, sizeof stream_s, "%ld", B.stream_docs);
   mkdir ("build", 0777);
   mkdir ("build/bench", 0777);
   mkdir ("build/bench/callgrind", 0777);
   {
      /* last run's dumps: no stale file can pass for one of this run */
      DIR *d = opendir ("build/bench/callgrind");
      struct dirent *e;

      while (d && (e = readdir (d))) {
         if (strstr (e->d_name, ".out")) {
            snprintf (path, sizeof path, "build/bench/callgrind/%s", e->d_name);
            unlink (path);
         }
      }
      if (d) {
         closedir (d);
      }
   }
   /* which side runs which task */
   for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
      tasks[s][0] = '\0';
   }
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      if (!tr->selected || tr->setup_status == ST_FAIL) {
         continue;
      }
      tr->instr_run = true;
      tr->instr_ops = instr_ops_for (tr->t);
      for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
         side_t side = (side_t) s;

         tr->instr_status[side] = ST_OK;
         if (!side_fn (tr->t, side)) {
            tr->instr_status[side] = ST_NA;
         } else if (!B.instr_only && tr->s[side].status == ST_NA) {
            /* the CPU pass found this side not applicable: same reason */
            tr->instr_status[side] = ST_NA;
            snprintf (tr->instr_err[side], sizeof tr->instr_err[side], "%s", tr->s[side].err);
         } else if (!B.valgrind[0] || !HAVE_CALLGRIND) {
            tr->instr_status[side] = ST_FAIL;
            snprintf (tr->instr_err[side],
                      sizeof tr->instr_err[side],
                      "%s",
                      !HAVE_CALLGRIND
                         ? "bench was built without <valgrind/callgrind.h> (make deps-bench)"
                         : "valgrind not found in PATH (make deps-bench installs it)");
         } else if (strlen (tasks[side]) + strlen (tr->t->name) + 2 < sizeof tasks[side]) {
            snprintf (tasks[side] + strlen (tasks[side]),
                      sizeof tasks[side] - strlen (tasks[side]),
                      "%s%s",
                      tasks[side][0] ? "," : "",
                      tr->t->name);
         }
      }
   }
   fprintf (stderr,
            "bench: instruction pass: helper and raw under callgrind, %d process%s per side, "
            "%d counted run%s per task in each ...\n",
            B.instr_procs,
            B.instr_procs == 1 ? "" : "es",
            B.instr_reps,
            B.instr_reps == 1 ? "" : "s");
   for (int p = 0; p < B.instr_procs; p++) {
      int running = 0;

      for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
         instr_child_t *c = &ch[s];
         char *av[40];
         int a = 0;

         memset (c, 0, sizeof *c);
         c->side = (side_t) s;
         c->pid = -1;
         for (size_t k = 0; k < NTASKS; k++) {
            RES[k].instr_got[s] = 0;
         }
         if (!tasks[s][0]) {
            continue;
         }
         snprintf (c->out, sizeof c->out, "build/bench/callgrind/%s.p%d.out", side_name[s], p + 1);
         snprintf (arg_out[s], sizeof arg_out[s], "--callgrind-out-file=%s", c->out);
         av[a++] = B.valgrind;
         av[a++] = "-q";
         av[a++] = "--tool=callgrind";
         av[a++] = "--instr-atstart=no";
         av[a++] = "--trace-children=no";
         av[a++] = arg_out[s];
         av[a++] = B.self_exe;
         av[a++] = "--instr-child";
         av[a++] = (char *) side_name[s];
         av[a++] = "--instr-tasks";
         av[a++] = tasks[s];
         av[a++] = "--instr-reps";
         av[a++] = reps_s;
         av[a++] = "--stream-docs";
         av[a++] = stream_s;
         av[a++] = "--uri";
         av[a++] = uri;
         av[a++] = "--no-pymongo";
         if (B.quick) {
            av[a++] = "--quick";
         }
         if (B.aa) {
            av[a++] = "--aa";
         }
         av[a] = NULL;
         c->last = now_s ();
         c->pid = spawn_capture (av, &c->fd);
         running += c->pid > 0;
      }
      /* read both reports as they come */
      while (running > 0) {
         struct pollfd pfd[SIDE_PY];
         int n = 0, map[SIDE_PY];

         for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
            if (ch[s].pid > 0 && ch[s].fd >= 0) {
               pfd[n].fd = ch[s].fd;
               pfd[n].events = POLLIN;
               map[n++] = s;
            }
         }
         if (poll (pfd, (nfds_t) n, -1) < 0) {
            if (errno == EINTR) {
               continue;
            }
            break;
         }
         for (int i = 0; i < n; i++) {
            instr_child_t *c = &ch[map[i]];
            ssize_t got;
            char *nl;

            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
               continue;
            }
            got = read (c->fd, c->line + c->len, sizeof c->line - 1 - c->len);
            if (got <= 0) {
               close (c->fd);
               c->fd = -1;
               while (waitpid (c->pid, &c->rc, 0) < 0 && errno == EINTR) {
               }
               running--;
               continue;
            }
            c->len += (size_t) got;
            c->line[c->len] = '\0';
            while ((nl = strchr (c->line, '\n'))) {
               *nl = '\0';
               instr_line (c, p, c->line);
               memmove (c->line, nl + 1, c->len - (size_t) (nl + 1 - c->line) + 1);
               c->len -= (size_t) (nl + 1 - c->line);
            }
            if (c->len >= sizeof c->line - 1) {
               c->len = 0; /* an overlong line: dropped */
            }
         }
      }
      /* a task a child did not finish (it crashed) */
      for (size_t k = 0; k < NTASKS; k++) {
         task_res_t *tr = &RES[k];
         for (int s = SIDE_HELPER; s <= SIDE_RAW && tr->instr_run; s++) {
            if (tr->instr_status[s] == ST_OK && tr->instr_got[s] < B.instr_reps) {
               tr->instr_status[s] = ST_FAIL;
               snprintf (tr->instr_err[s],
                         sizeof tr->instr_err[s],
                         "the callgrind child (process %d) ended (status %d) after %d of %d runs",
                         p + 1,
                         ch[s].rc,
                         tr->instr_got[s],
                         B.instr_reps);
            }
         }
      }
   }
   for (size_t k = 0; k < NTASKS; k++) {
      if (RES[k].instr_run) {
         instr_task_done (&RES[k]);
      }
   }
   INSTR_SECS = now_s () - t0;
   fprintf (stderr, "bench: instruction pass took %.0f s\n", INSTR_SECS);
}

/* ---- Targets ---------------------------------------------------------- */

#define TARGET_HR_SINGLE 1.05
/* session_sealed compares the helper with itself (sealed against clear
 * store): its target, CPU and instructions, is the encryption issue's
 * "under 5 % added to a session load". */
#define TARGET_SEALED 1.05
#define TARGET_HR_BULK 1.02
#define TARGET_PH 2.0
#define TARGET_BUFFERED_X 10.0
#define TARGET_REQ_CPU_US 1.0
#define TARGET_WRITER_TPUT 0.90 /* of raw insert_many in the same batches */
#define TARGET_STREAM_MB 32.0

static task_res_t *
res_by_name (const char *name)
{
   for (size_t k = 0; k < NTASKS; k++) {
      if (RES[k].selected && strcmp (RES[k].t->name, name) == 0) {
         return &RES[k];
      }
   }
   return NULL;
}

static double
hr_limit (const task_t *t)
{
   if (strcmp (t->name, "session_sealed") == 0) {
      return TARGET_SEALED;
   }
   return t->kind == KIND_BULK ? TARGET_HR_BULK : TARGET_HR_SINGLE;
}

/* Known causes of misses, found by profiling (perf record -g) this
 * harness; printed under the warning so a reader need not rediscover them. */
static const char *
why_missed (const task_t *t, bool pymongo_ratio)
{
   if (pymongo_ratio && strcmp (t->name, "session_touch") == 0) {
      return "the helper does two round trips (load, then touch re-reads) where pymongo does one "
             "find; per round trip the helper is still well under pymongo's CPU";
   }
   if (pymongo_ratio &&
       (strcmp (t->name, "insert_one_large") == 0 || strcmp (t->name, "insert_many_large") == 0)) {
      return "libmongoc validates every string of an inserted document as UTF-8 by default "
             "(bson_utf8_validate was ~40% of the C client's CPU in `perf record` of this task and "
             "is "
             "~89% of its instructions under callgrind: libbson 1.23's bson_validate runs it twice "
             "per "
             "string); pymongo encodes Python str objects, valid by construction, without that "
             "pass. "
             "On libbson 1.23 that validation does not even reject invalid UTF-8 (see "
             "insert_one_large_invalid)";
   }
   if (!pymongo_ratio && strcmp (t->name, "session_touch") == 0) {
      return "two calls, two round trips: mongo_helper_sessions_load() reads the session and "
             "mongo_helper_sessions_touch() reads it again (it needs lastSeen and "
             "absoluteExpiresAt to decide whether and what to write), where raw and pymongo do "
             "one find and decide from that document; a combined load-and-touch call would "
             "remove the second read (API decision, not a harness artefact)";
   }
   if (!pymongo_ratio &&
       (strcmp (t->name, "cache_set") == 0 || strcmp (t->name, "cache_get") == 0 ||
        strcmp (t->name, "event_log_sync") == 0 || t->kind != KIND_HELPER)) {
      return "measured with callgrind on this harness: (1) the helper's pool has libmongoc "
             "command monitoring on (mongo_helper's per-command metrics), so libmongoc builds a "
             "started and a succeeded event per command (~4.7k instructions each time) and, for "
             "inserts, copies every document of the batch into the started event "
             "(_mongoc_cmd_append_payload_as_array: ~1k instructions per flat document, ~7% of "
             "bulk_insert/insert_many); (2) the name-based API makes a collection handle per call "
             "(~5k instructions) and formats its operation name; (3) streams and find_many copy "
             "each document once into the chunk the callback receives (the raw loop only looks "
             "at each one before the next cursor step); (4) insert_one makes the _id itself (one "
             "copy of the document) so the caller can learn it. Small runs on a shared 2-core "
             "machine "
             "are also noisy (see min/max). Fixed in the library: per-document label formatting, "
             "a per-call URI lookup, a bson_copy per streamed document, find_one's extra "
             "singleBatch option and second cursor step";
   }
   return NULL;
}

/* The issue's targets for the instruction ratio helper/raw. */
#define TARGET_IR_SINGLE 1.03
#define TARGET_IR_BULK 1.01

static double
ir_limit (const task_t *t)
{
   if (strcmp (t->name, "session_sealed") == 0) {
      return TARGET_SEALED;
   }
   return t->kind == KIND_BULK ? TARGET_IR_BULK : TARGET_IR_SINGLE;
}

/* helper/raw instructions per operation: the ratio of the medians, and as
 * its range the extreme pairings (min helper / max raw, max / min). */
static stat_t
instr_ratio (const task_res_t *tr)
{
   stat_t q = {0, 0, 0, false};
   stat_t h, r;

   if (!tr->instr_run || tr->instr_status[SIDE_HELPER] != ST_OK ||
       tr->instr_status[SIDE_RAW] != ST_OK) {
      return q;
   }
   h = stats (tr->instr[SIDE_HELPER], tr->n_instr[SIDE_HELPER]);
   r = stats (tr->instr[SIDE_RAW], tr->n_instr[SIDE_RAW]);
   if (h.ok && r.ok && r.min > 0) {
      q.med = h.med / r.med;
      q.min = h.min / r.max;
      q.max = h.max / r.min;
      q.ok = true;
   }
   return q;
}

/* (max - min) / min of one side's instruction counts, in percent. */
static double
instr_spread_pct (const task_res_t *tr, side_t s)
{
   stat_t st = stats (tr->instr[s], tr->n_instr[s]);

   return st.ok && st.min > 0 ? 100.0 * (st.max - st.min) / st.min : -1;
}

/* The helper's extra instructions per operation by group (helper minus
 * raw), with the remainder; false without both sides' attribution. */
static bool
instr_extra (const task_res_t *tr, double extra[AG_N + 1], double *total)
{
   stat_t h = stats (tr->instr[SIDE_HELPER], tr->n_instr[SIDE_HELPER]);
   stat_t r = stats (tr->instr[SIDE_RAW], tr->n_instr[SIDE_RAW]);

   if (!tr->attr_ok[SIDE_HELPER] || !tr->attr_ok[SIDE_RAW] || !h.ok || !r.ok) {
      return false;
   }
   *total = h.med - r.med;
   extra[AG_N] = *total;
   for (int g = 0; g < AG_N; g++) {
      extra[g] = tr->attr[SIDE_HELPER][g] - tr->attr[SIDE_RAW][g];
      extra[AG_N] -= extra[g];
   }
   return true;
}

/* Why the helper executes more instructions than raw, per task: what the
 * callgrind profiles of this harness show (the numbers per group are
 * printed beside it, from this run's dumps). */
static const char *
why_instr (const task_t *t)
{
   const char *n = t->name;

   if (strcmp (n, "session_touch") == 0) {
      return "two calls, two round trips: mongo_helper_sessions_load() reads the session and "
             "mongo_helper_sessions_touch() reads it again (it needs lastSeen and "
             "absoluteExpiresAt to decide whether and what to write), where raw does one find and "
             "decides from that document (the \"rest\" above is mostly that second find); plus, "
             "per call, command monitoring and a collection handle as in the other tasks";
   }
   if (strcmp (n, "find_many") == 0) {
      return "mongo_helper_find_stream() asks for batches of its chunk size (batchSize 1000) where "
             "the raw loop takes the server's default batches (101, then all the rest in one "
             "reply), "
             "and copies each document once into the chunk the callback receives. This task's "
             "counts "
             "are mostly libmongoc's reply reading, which copies more or less depending on the "
             "reply "
             "sizes and on how they arrive over the socket: with 2,000 documents raw measured from "
             "~1,450 to ~1,820 instructions/document in different processes of otherwise identical "
             "runs (the helper ~1,770 to ~1,990); with the full mode's 10,000 raw measured ~430 "
             "against the helper's ~1,970, while the full mode's CPU pass had the helper cheaper "
             "(0.63 against 1.44 us/document): raw's one 3.5 MB reply costs page faults and cache "
             "misses that CPU time sees and instruction counts do not. The instruction ratio is "
             "not a "
             "fair judge of this task";
   }
   if (strcmp (n, "aggregate") == 0) {
      return "per call as in the single-document tasks (command monitoring, a collection handle, "
             "bookkeeping), plus: mongo_helper_aggregate() copies each result document into the "
             "array it returns (mh_cursor_drain; raw only looks at each), and its aggregate "
             "command "
             "costs libmongoc more to assemble and run (_mongoc_cursor_run_command +~6,800)";
   }
   if (strcmp (n, "stream") == 0) {
      return "each document is copied once into the chunk the callback receives "
             "(mh_stream_deliver, bson_init_static, memcpy: ~150 instructions per flat document); "
             "both sides use batches of 1000";
   }
   if (strcmp (n, "gridfs") == 0) {
      return "three extra copies of the 5 MB file: command monitoring copies every chunk document "
             "of the upload into the started event (_mongoc_cmd_append_payload_as_array), "
             "mongo_helper_gridfs_put() reads the caller's buffer through its own memory stream "
             "(mh_gfs_mem_read) and mongo_helper_gridfs_get() collects the download into a buffer "
             "it allocates (mh_gfs_buf_write); under callgrind a large memcpy counts one "
             "instruction "
             "per byte (rep movsb), so copies weigh more here than in CPU time";
   }
   if (strcmp (n, "insert_one_large") == 0 || strcmp (n, "insert_many_large") == 0 ||
       strcmp (n, "insert_one_large_invalid") == 0) {
      return "command monitoring copies the whole 1.5 MB document into the started event "
             "(_mongoc_cmd_append_payload_as_array: about one instruction per byte); libbson's "
             "per-byte UTF-8 validation (bson_utf8_validate, ~23 instructions per byte) is ~89% of "
             "both sides' instructions, the same on both (see the UTF-8 column), and is why "
             "pymongo "
             "needs less CPU here";
   }
   if (strcmp (n, "insert_many_small") == 0 || strcmp (n, "bulk_insert") == 0) {
      return "command monitoring copies every document of each batch into the started event "
             "(_mongoc_cmd_append_payload_as_array, ~560-600 instructions per flat document), "
             "which is most of the gap";
   }
   if (strcmp (n, "event_log_buffered") == 0) {
      return NULL;
   }
   return "per call: (1) command monitoring: the helper's pool has libmongoc's APM callbacks on "
          "(mongo_helper's per-command metrics), so libmongoc copies each command into a started "
          "event (and, for inserts, every document of it: _mongoc_cmd_append_payload_as_array) and "
          "builds a succeeded event from the reply; (2) the name-based API makes and destroys a "
          "collection handle per call (mongoc_database_get_collection + "
          "mongoc_collection_destroy); (3) bookkeeping: name checks, the operation label "
          "(bson_snprintf), per-operation metrics; the rest is the helper's own wrapping (mh_run, "
          "options, the returned copy of a found document, the _id insert_one makes)";
}

/* Appends one line per target to `out` ("WARNING: ..." when missed). */
static int
targets (bson_string_t *out)
{
   int missed = 0;
   task_res_t *buf, *sync;

   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      stat_t hr, ph, ir;

      if (!tr->selected) {
         continue;
      }
      hr = stats (tr->ratio_hr, tr->n_hr);
      ph = stats (tr->ratio_ph, tr->n_ph);
      ir = instr_ratio (tr);
      if (ir.ok) {
         bool miss = ir.med > ir_limit (tr->t);
         double extra[AG_N + 1], total;
         missed += miss;
         bson_string_append_printf (
            out,
            "%s %s: helper/raw instructions %.3f [%.3f, %.3f], target <= %.2f\n",
            miss ? "WARNING: missed" : "met:",
            tr->t->name,
            ir.med,
            ir.min,
            ir.max,
            ir_limit (tr->t));
         if (miss && instr_extra (tr, extra, &total)) {
            bson_string_append_printf (
               out,
               "    helper - raw: %+.0f instructions/op: command monitoring %+.0f, collection "
               "handles %+.0f, helper bookkeeping %+.0f, UTF-8 validation %+.0f, rest %+.0f\n",
               total,
               extra[AG_APM],
               extra[AG_HANDLE],
               extra[AG_BOOK],
               extra[AG_UTF8],
               extra[AG_N]);
         }
         if (miss && why_instr (tr->t)) {
            bson_string_append_printf (out, "    why: %s\n", why_instr (tr->t));
         }
      }
      if (hr.ok && ir.ok) {
         bson_string_append_printf (
            out,
            "info: %s: helper/raw CPU %.3f [%.3f, %.3f] (not judged: the instruction ratio "
            "is)\n",
            tr->t->name,
            hr.med,
            hr.min,
            hr.max);
      } else if (hr.ok) {
         bool miss = hr.med > hr_limit (tr->t);
         missed += miss;
         bson_string_append_printf (out,
                                    "%s %s: helper/raw CPU %.3f [%.3f, %.3f], target <= %.2f\n",
                                    miss ? "WARNING: missed" : "met:",
                                    tr->t->name,
                                    hr.med,
                                    hr.min,
                                    hr.max,
                                    hr_limit (tr->t));
         if (miss && why_missed (tr->t, false)) {
            bson_string_append_printf (out, "    why: %s\n", why_missed (tr->t, false));
         }
      }
      if (ph.ok) {
         bool miss = ph.med < TARGET_PH;
         missed += miss;
         bson_string_append_printf (out,
                                    "%s %s: pymongo/helper CPU %.2f [%.2f, %.2f], target >= %.0f\n",
                                    miss ? "WARNING: missed" : "met:",
                                    tr->t->name,
                                    ph.med,
                                    ph.min,
                                    ph.max,
                                    TARGET_PH);
         if (miss && why_missed (tr->t, true)) {
            bson_string_append_printf (out, "    why: %s\n", why_missed (tr->t, true));
         }
      }
   }
   buf = res_by_name ("insert_one_large_invalid");
   for (int s = 0; buf && s < SIDE_N; s++) {
      /* every side must refuse the document before sending it */
      const char *why = buf->s[s].status == ST_NA                         ? buf->s[s].err
                        : buf->instr_run && buf->instr_status[s] == ST_NA ? buf->instr_err[s]
                                                                          : NULL;
      if (why && strncmp (why, "not rejected", 12) == 0) {
         missed++;
         bson_string_append_printf (
            out, "WARNING: missed insert_one_large_invalid (%s): %s\n", side_name[s], why);
      }
   }
   buf = res_by_name ("event_log_buffered");
   sync = res_by_name ("event_log_sync");
   if (buf && sync && buf->s[SIDE_HELPER].n && sync->s[SIDE_HELPER].n) {
      stat_t b = stats (buf->s[SIDE_HELPER].ops_s, buf->s[SIDE_HELPER].n);
      stat_t s = stats (sync->s[SIDE_HELPER].ops_s, sync->s[SIDE_HELPER].n);
      stat_t rq = stats (buf->s[SIDE_HELPER].req_cpu_us, buf->s[SIDE_HELPER].n);
      bool miss = b.med < TARGET_BUFFERED_X * s.med;
      missed += miss;
      bson_string_append_printf (
         out,
         "%s buffered logging: %.0f events/s vs %.0f synchronous = %.1fx, target >= %.0fx\n",
         miss ? "WARNING: missed" : "met:",
         b.med,
         s.med,
         s.med > 0 ? b.med / s.med : 0.0,
         TARGET_BUFFERED_X);
      if (miss && B.mock) {
         bson_string_append_printf (
            out,
            "    why: the local test server's insert throughput (Python/mongomock) bounds the "
            "buffered writer's wall time, not the client (see the request-path CPU below); "
            "rerun against a real mongod\n");
      }
      if (buf->s[SIDE_RAW].n) {
         stat_t rw = stats (buf->s[SIDE_RAW].ops_s, buf->s[SIDE_RAW].n);

         miss = b.med < TARGET_WRITER_TPUT * rw.med;
         missed += miss;
         bson_string_append_printf (out,
                                    "%s buffered logging: %.0f events/s vs raw insert_many in "
                                    "batches of %d: %.0f events/s = %.2f, target >= %.2f\n",
                                    miss ? "WARNING: missed" : "met:",
                                    b.med,
                                    EVENT_FLUSH_MAX,
                                    rw.med,
                                    rw.med > 0 ? b.med / rw.med : 0.0,
                                    TARGET_WRITER_TPUT);
      }
      miss = rq.med >= TARGET_REQ_CPU_US;
      missed += miss;
      bson_string_append_printf (
         out,
         "%s buffered logging: request-path CPU %.2f us/event [%.2f, %.2f], target < %.0f us\n",
         miss ? "WARNING: missed" : "met:",
         rq.med,
         rq.min,
         rq.max,
         TARGET_REQ_CPU_US);
   }
   buf = res_by_name ("stream");
   if (buf) {
      for (int s = 0; s < SIDE_N; s++) {
         side_res_t *sr = &buf->s[s];
         stat_t g;
         bool miss;
         if (!sr->n) {
            continue;
         }
         g = stats_long (sr->peak_growth_kb, sr->n);
         miss = g.max / 1024.0 >= TARGET_STREAM_MB;
         missed += miss;
         bson_string_append_printf (
            out,
            "%s stream (%s): peak RSS growth %.2f MB streaming %ld docs (max over reps), "
            "%.2f MB streaming %ld docs (warm-up), target < %.0f MB\n",
            miss ? "WARNING: missed" : "met:",
            side_name[s],
            g.max / 1024.0,
            buf->ops,
            (double) sr->warm_peak_growth_kb / 1024.0,
            sr->warm_ops,
            TARGET_STREAM_MB);
      }
   }
   return missed;
}

/* ---- Output ----------------------------------------------------------- */

static void
json_str (FILE *f, const char *s)
{
   fputc ('"', f);
   for (; *s; s++) {
      unsigned char c = (unsigned char) *s;
      if (c == '"' || c == '\\') {
         fprintf (f, "\\%c", c);
      } else if (c < 0x20) {
         fprintf (f, "\\u%04x", c);
      } else {
         fputc (c, f);
      }
   }
   fputc ('"', f);
}

static void
json_stat (FILE *f, const char *key, stat_t s, int prec)
{
   if (!s.ok) {
      fprintf (f, ", \"%s\": null, \"%s_min\": null, \"%s_max\": null", key, key, key);
   } else {
      fprintf (f,
               ", \"%s\": %.*f, \"%s_min\": %.*f, \"%s_max\": %.*f",
               key,
               prec,
               s.med,
               key,
               prec,
               s.min,
               key,
               prec,
               s.max);
   }
}

static const char *
status_name (status_t st)
{
   return st == ST_OK ? "ok" : st == ST_NA ? "n/a" : "failed";
}

static const char *
mode_name (void)
{
   return B.aa      ? (B.quick ? "quick A/A calibration" : "full A/A calibration")
          : B.quick ? "quick"
                    : "full";
}

static char MACHINE[512], STARTED[64];
static double LOAD0, LOAD1, DURATION;

static bool
write_json (const char *path)
{
   FILE *f = fopen (path, "w");
   bool first = true;

   if (!f) {
      fprintf (stderr, "bench: cannot write %s: %s\n", path, strerror (errno));
      return false;
   }
   fputs ("[\n", f);
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      if (!tr->selected) {
         continue;
      }
      fprintf (f, "%s  {\"task\": ", first ? "" : ",\n");
      first = false;
      json_str (f, tr->t->name);
      fprintf (f, ", \"op\": ");
      json_str (f, tr->t->op);
      fprintf (f, ", \"ops\": %ld, \"reps\": %d, \"mode\": \"%s\"", tr->ops, B.reps, mode_name ());
      for (int s = 0; s < SIDE_N; s++) {
         side_res_t *sr = &tr->s[s];
         char key[64];
         status_t st = tr->setup_status == ST_FAIL ? ST_FAIL : sr->status;
         fprintf (f, ", \"%s_status\": \"%s\"", side_name[s], status_name (st));
         if (st != ST_OK) {
            fprintf (f, ", \"%s_error\": ", side_name[s]);
            json_str (f, tr->setup_status == ST_FAIL ? tr->setup_err : sr->err);
         }
         snprintf (key, sizeof key, "%s_cpu_us", side_name[s]);
         json_stat (f, key, stats (sr->cpu_us, sr->n), 3);
         snprintf (key, sizeof key, "%s_wall_us", side_name[s]);
         json_stat (f, key, stats (sr->wall_us, sr->n), 3);
         snprintf (key, sizeof key, "%s_ops_per_s", side_name[s]);
         json_stat (f, key, stats (sr->ops_s, sr->n), 1);
         snprintf (key, sizeof key, "%s_peak_rss_kb", side_name[s]);
         json_stat (f, key, stats_long (sr->peak_kb, sr->n), 0);
         if (sr->n && sr->peak_growth_kb[0] >= 0) {
            snprintf (key, sizeof key, "%s_rss_growth_kb", side_name[s]);
            json_stat (f, key, stats_long (sr->growth_kb, sr->n), 0);
            snprintf (key, sizeof key, "%s_peak_rss_growth_kb", side_name[s]);
            json_stat (f, key, stats_long (sr->peak_growth_kb, sr->n), 0);
         }
         if (sr->n && sr->req_cpu_us[0] >= 0) {
            snprintf (key, sizeof key, "%s_request_cpu_us", side_name[s]);
            json_stat (f, key, stats (sr->req_cpu_us, sr->n), 3);
         }
      }
      json_stat (f, "helper_raw_cpu_ratio", stats (tr->ratio_hr, tr->n_hr), 4);
      json_stat (f, "pymongo_helper_cpu_ratio", stats (tr->ratio_ph, tr->n_ph), 4);
      /* the instruction pass: instructions per operation under callgrind */
      if (tr->instr_run) {
         double extra[AG_N + 1], total;

         fprintf (f,
                  ", \"instr_ops\": %ld, \"instr_procs\": %d, \"instr_reps\": %d",
                  tr->instr_ops,
                  B.instr_procs,
                  B.instr_reps);
         for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
            char key[64];
            double sp = instr_spread_pct (tr, (side_t) s);

            fprintf (
               f, ", \"%s_instr_status\": \"%s\"", side_name[s], status_name (tr->instr_status[s]));
            if (tr->instr_status[s] == ST_FAIL) {
               fprintf (f, ", \"%s_instr_error\": ", side_name[s]);
               json_str (f, tr->instr_err[s]);
            }
            snprintf (key, sizeof key, "%s_instr", side_name[s]);
            json_stat (f, key, stats (tr->instr[s], tr->n_instr[s]), 1);
            if (sp >= 0) {
               fprintf (f, ", \"%s_instr_spread_pct\": %.3f", side_name[s], sp);
            } else {
               fprintf (f, ", \"%s_instr_spread_pct\": null", side_name[s]);
            }
         }
         json_stat (f, "instr_ratio", instr_ratio (tr), 4);
         fprintf (f, ", \"instr_ratio_target\": %.2f", ir_limit (tr->t));
         if (instr_extra (tr, extra, &total)) {
            fprintf (f, ", \"instr_extra_per_op\": {\"total\": %.1f", total);
            for (int g = 0; g < AG_N; g++) {
               fprintf (f, ", \"%s\": %.1f", AG_KEY[g], extra[g]);
            }
            fprintf (f, ", \"rest\": %.1f}", extra[AG_N]);
         }
      }
      fprintf (f, ", \"server\": ");
      json_str (f, B.server);
      fprintf (f, ", \"note\": ");
      json_str (f, tr->t->note);
      fputc ('}', f);
   }
   fputs ("\n]\n", f);
   return fclose (f) == 0;
}

static void
md_stat (FILE *f, stat_t s, const char *fmt_med)
{
   if (!s.ok) {
      fputs (" n/a |", f);
      return;
   }
   fputc (' ', f);
   fprintf (f, fmt_med, s.med);
   fputs (" |", f);
}

static void
md_ratio (FILE *f, stat_t s)
{
   if (!s.ok) {
      fputs (" n/a |", f);
   } else {
      fprintf (f, " %.3f [%.3f, %.3f] |", s.med, s.min, s.max);
   }
}

/* 1234567.8 -> "1,234,568" */
static const char *
grouped (double v, char *buf, size_t size)
{
   char digits[64];
   size_t n, out = 0;
   bool neg = v < 0;

   snprintf (digits, sizeof digits, "%.0f", fabs (v));
   n = strlen (digits);
   if (neg && strcmp (digits, "0") != 0 && out + 1 < size) {
      buf[out++] = '-';
   }
   for (size_t k = 0; k < n && out + 2 < size; k++) {
      if (k > 0 && (n - k) % 3 == 0) {
         buf[out++] = ',';
      }
      buf[out++] = digits[k];
   }
   buf[out] = '\0';
   return buf;
}

/* "make bench BENCH_ARGS=..." as this run was started (mode flags only). */
static const char *
make_line (void)
{
   static char line[256];
   char args[128] = "";

   if (B.quick) {
      strcat (args, " --quick");
   }
   if (B.instr_only) {
      strcat (args, " --instr-only");
   } else if (B.instr && !B.quick) {
      strcat (args, " --instr");
   } else if (!B.instr && B.quick) {
      strcat (args, " --no-instr");
   }
   if (B.aa) {
      strcat (args, " --aa");
   }
   if (!args[0]) {
      return "make bench";
   }
   snprintf (line,
             sizeof line,
             strchr (args + 1, ' ') ? "make bench BENCH_ARGS=\"%s\"" : "make bench BENCH_ARGS=%s",
             args + 1);
   return line;
}

static void
md_instr_tables (FILE *f)
{
   char a[32], b[32], c[32], d[32];

   fprintf (f, "## Client instructions per operation (callgrind; the judged ratio)\n\n");
   fprintf (
      f,
      "Instructions the client process executes per operation (all its threads, user space), "
      "counted by valgrind's callgrind around the same timed loop as the CPU pass, in child "
      "processes: median of %d runs (%d in each of %d process%s per side), [min, max]. The spread "
      "is (max - min) / min of each side's runs%s; the ratio's range pairs the extremes (min "
      "helper / max raw, max / min). See \"Instruction mode\" below for how and why.\n\n",
      B.instr_reps * B.instr_procs,
      B.instr_reps,
      B.instr_procs,
      B.instr_procs == 1 ? "" : "es",
      B.instr_reps == 1   ? " across processes"
      : B.instr_procs > 1 ? ", within and across processes"
                          : " within one process");
   fprintf (f,
            "| task | ops x runs x processes | helper | raw libmongoc | spread helper / raw | "
            "helper/raw | target | |\n");
   fprintf (f, "|---|---:|---:|---:|---:|---:|---:|---|\n");
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      stat_t ir;

      if (!tr->selected || !tr->instr_run) {
         continue;
      }
      ir = instr_ratio (tr);
      fprintf (
         f, "| %s | %ld x %d x %d |", tr->t->name, tr->instr_ops, B.instr_reps, B.instr_procs);
      for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
         stat_t st = stats (tr->instr[s], tr->n_instr[s]);
         if (tr->instr_status[s] == ST_OK && st.ok) {
            fprintf (f,
                     " %s [%s, %s] |",
                     grouped (st.med, a, sizeof a),
                     grouped (st.min, b, sizeof b),
                     grouped (st.max, c, sizeof c));
         } else {
            fprintf (f,
                     " %s%s |",
                     status_name (tr->instr_status[s]),
                     tr->instr_err[s][0] ? " (below)" : "");
         }
      }
      for (int s = SIDE_HELPER; s <= SIDE_RAW; s++) {
         double sp = instr_spread_pct (tr, (side_t) s);
         if (sp >= 0) {
            fprintf (f, "%s%.2f%%", s == SIDE_HELPER ? " " : " / ", sp);
         } else {
            fprintf (f, "%sn/a", s == SIDE_HELPER ? " " : " / ");
         }
      }
      fputs (" |", f);
      md_ratio (f, ir);
      if (ir.ok) {
         fprintf (f,
                  " <= %.2f | %s |\n",
                  ir_limit (tr->t),
                  ir.med <= ir_limit (tr->t) ? "met" : "**missed**");
      } else {
         fprintf (f, " <= %.2f | n/a |\n", ir_limit (tr->t));
      }
   }
   for (size_t k = 0, listed = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      for (int s = SIDE_HELPER; s <= SIDE_RAW && tr->selected && tr->instr_run; s++) {
         if (tr->instr_status[s] != ST_OK && tr->instr_err[s][0]) {
            fprintf (f,
                     "%s- %s, %s: %s: %s\n",
                     listed++ ? "" : "\n",
                     tr->t->name,
                     side_name[s],
                     status_name (tr->instr_status[s]),
                     tr->instr_err[s]);
         }
      }
   }
   fprintf (f, "\n### Where the helper's extra instructions go\n\n");
   fprintf (
      f,
      "Helper minus raw, instructions per operation, from each side's median run: the inclusive "
      "cost of the calls into libmongoc's command monitoring (APM started/succeeded events and "
      "mongo_helper's callbacks), collection handles (mongoc_*_get_collection, "
      "mongoc_collection_destroy), the helper's bookkeeping (name checks, the operation label, "
      "per-operation metrics) and libbson's UTF-8 validation (bson_utf8_validate; its total per "
      "side in parentheses); \"rest\" is everything else (e.g. a second round trip, document "
      "copies). Approximate: callgrind keeps caller/callee pairs, not whole call paths. The "
      "dumps are in build/bench/callgrind/ (`callgrind_annotate --inclusive=yes FILE`; the "
      "`desc: Trigger:` line of each names its task and run).\n\n");
   fprintf (
      f,
      "| task | helper - raw | command monitoring | collection handles | helper bookkeeping | "
      "UTF-8 validation (helper / raw) | rest |\n");
   fprintf (f, "|---|---:|---:|---:|---:|---:|---:|\n");
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      double extra[AG_N + 1], total;

      if (!tr->selected || !tr->instr_run || !instr_extra (tr, extra, &total)) {
         continue;
      }
      fprintf (f, "| %s | %s |", tr->t->name, grouped (total, a, sizeof a));
      for (int g = 0; g < AG_N; g++) {
         if (g == AG_UTF8) {
            fprintf (f,
                     " %s (%s / %s) |",
                     grouped (extra[g], a, sizeof a),
                     grouped (tr->attr[SIDE_HELPER][g], b, sizeof b),
                     grouped (tr->attr[SIDE_RAW][g], c, sizeof c));
         } else {
            fprintf (f, " %s |", grouped (extra[g], d, sizeof d));
         }
      }
      fprintf (f, " %s |\n", grouped (extra[AG_N], a, sizeof a));
   }
   fputc ('\n', f);
}

static bool
write_md (const char *path, const char *target_lines)
{
   FILE *f = fopen (path, "w");

   if (!f) {
      fprintf (stderr, "bench: cannot write %s: %s\n", path, strerror (errno));
      return false;
   }
   fprintf (f, "# mongo_helper benchmark results\n\n");
   fprintf (f,
            "Generated by `%s` (bench/bench.c, bench/bench_pymongo.py). Do not edit by hand.\n\n",
            make_line ());
   if (B.instr_only) {
      fprintf (f, "- **Mode:** %s, instruction pass only (no CPU/wall pass)\n", mode_name ());
   } else {
      fprintf (f,
               "- **Mode:** %s, %d measured repetitions per side after one warm-up run, "
               "sides interleaved (the six possible orders in turn)\n",
               mode_name (),
               B.reps);
   }
   if (B.instr) {
      double secs = INSTR_SECS;
      fprintf (
         f,
         "- **Instruction pass:** valgrind callgrind (%s), %d child process%s per side running "
         "all its tasks, per task one uncounted warm-up run then %d counted run%s; took %.0f s of "
         "the total\n",
         B.valgrind[0] ? B.valgrind : "not found",
         B.instr_procs,
         B.instr_procs == 1 ? "" : "es",
         B.instr_reps,
         B.instr_reps == 1 ? "" : "s",
         secs);
   } else {
      fprintf (
         f,
         "- **Instruction pass:** not run (add BENCH_ARGS=--instr; the quick mode includes it)\n");
   }
   fprintf (f, "- **Started:** %s UTC, took %.0f s\n", STARTED, DURATION);
   fprintf (f, "- **Server:** %s\n", B.server);
   fprintf (
      f, "- **Machine:** %s; load average %.2f at start, %.2f at end\n", MACHINE, LOAD0, LOAD1);
   fprintf (f,
            "- **Client:** mongo_helper %s, libmongoc %s, compiled with %s; %s\n",
            mongo_helper_version (),
            mongoc_get_version (),
#ifdef __clang__
            "clang " __clang_version__,
#else
            "gcc " __VERSION__,
#endif
            B.py_info[0] ? B.py_info : "pymongo side not run");
   fprintf (
      f,
      "- **Data:** generated in code, seed 0x%016llx; C and Python data fingerprint %s (%s)\n",
      (unsigned long long) BENCH_SEED,
      B.fingerprint,
      B.fingerprint_ok ? "identical"
      : B.py_info[0]   ? "DIFFERENT"
                       : "not compared: no pymongo side");
   fprintf (f, "- **Streaming:** %s\n", B.stream_note);
   if (B.aa) {
      fprintf (f,
               "- **A/A CALIBRATION RUN (--aa):** the \"helper\" columns are raw libmongoc again; "
               "helper/raw shows this machine's noise floor, not mongo_helper\n");
   }
   fputc ('\n', f);

   if (B.instr) {
      md_instr_tables (f);
   }
   if (B.instr_only) {
      goto status_table;
   }
   fprintf (f, "## Client CPU per operation (µs, median over repetitions)\n\n");
   fprintf (
      f,
      "CPU is getrusage(RUSAGE_SELF) user+sys of the client process (the C process for helper "
      "and raw, the Python process for pymongo), divided by the operations of the run: what the "
      "library costs, independent of how fast the server is. Ratios are computed per repetition "
      "(paired, same repetition) and shown as median [min, max].\n\n");
   fprintf (f,
            "| task | one operation | ops/run | helper | raw libmongoc | pymongo | helper/raw | "
            "pymongo/helper |\n");
   fprintf (f, "|---|---|---:|---:|---:|---:|---:|---:|\n");
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      if (!tr->selected) {
         continue;
      }
      fprintf (f, "| %s | %s | %ld |", tr->t->name, tr->t->op, tr->ops);
      for (int s = 0; s < SIDE_N; s++) {
         md_stat (f, stats (tr->s[s].cpu_us, tr->s[s].n), "%.2f");
      }
      md_ratio (f, stats (tr->ratio_hr, tr->n_hr));
      md_ratio (f, stats (tr->ratio_ph, tr->n_ph));
      fputc ('\n', f);
   }
   fprintf (f, "\n## Wall time, throughput and memory\n\n");
   fprintf (f,
            "Wall µs per operation and operations per second (medians); peak RSS is the process's "
            "VmHWM during the run (reset before each run through /proc/self/clear_refs), in MB. "
            "helper and raw share one C process (the pre-generated data and both pools are in both "
            "numbers), so compare them with each other, and with pymongo's separate process only "
            "roughly.\n\n");
   fprintf (f,
            "| task | helper wall | raw wall | pymongo wall | helper ops/s | raw ops/s | pymongo "
            "ops/s | peak RSS helper / raw / pymongo |\n");
   fprintf (f, "|---|---:|---:|---:|---:|---:|---:|---:|\n");
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      if (!tr->selected) {
         continue;
      }
      fprintf (f, "| %s |", tr->t->name);
      for (int s = 0; s < SIDE_N; s++) {
         md_stat (f, stats (tr->s[s].wall_us, tr->s[s].n), "%.1f");
      }
      for (int s = 0; s < SIDE_N; s++) {
         md_stat (f, stats (tr->s[s].ops_s, tr->s[s].n), "%.0f");
      }
      fputc (' ', f);
      for (int s = 0; s < SIDE_N; s++) {
         stat_t p = stats_long (tr->s[s].peak_kb, tr->s[s].n);
         if (p.ok) {
            fprintf (f, "%.1f", p.med / 1024.0);
         } else {
            fputs ("n/a", f);
         }
         fputs (s < SIDE_N - 1 ? " / " : " |\n", f);
      }
   }
status_table:
   fprintf (
      f,
      "\n## Status per side\n\n| task | helper | raw | pymongo | note |\n|---|---|---|---|---|\n");
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      if (!tr->selected) {
         continue;
      }
      fprintf (f, "| %s |", tr->t->name);
      for (int s = 0; s < SIDE_N; s++) {
         status_t st = tr->setup_status == ST_FAIL ? ST_FAIL : tr->s[s].status;
         const char *why = tr->setup_status == ST_FAIL ? tr->setup_err : tr->s[s].err;
         fprintf (f,
                  " %s%s%s |",
                  status_name (st),
                  st != ST_OK && why[0] ? ": " : "",
                  st != ST_OK ? why : "");
      }
      fprintf (f, " %s |\n", tr->t->note);
   }
   fprintf (f, "\n## Targets\n\n");
   if (B.instr) {
      fprintf (
         f,
         "helper/raw **instructions** <= %.2f on every single-document task (and the "
         "sessions, cache, event-log and concurrent ones, whose operations are single "
         "documents), <= %.2f on bulk and streaming tasks (find_many, insert_many_*, bulk_insert, "
         "aggregate, stream, gridfs), <= %.2f for session_sealed (a sealed load against the same "
         "load in clear): with the instruction pass these judge the helper, and the "
         "CPU ratio helper/raw is printed as information only. ",
         TARGET_IR_SINGLE,
         TARGET_IR_BULK,
         TARGET_SEALED);
   }
   fprintf (
      f,
      "%shelper/raw CPU <= %.2f on single-document tasks (and the helper-specific and concurrent "
      "ones, whose operations are single documents), <= %.2f on bulk and streaming tasks "
      "(find_many, insert_many_*, bulk_insert, aggregate, stream, gridfs); pymongo/helper >= %.0f "
      "everywhere; buffered logging >= %.0fx the events/s of one synchronous insert per event, "
      ">= %.2f of the events/s of raw insert_many in the writer's batches, and "
      "< %.0f µs request-path CPU per event (the logging thread's CPU); streaming "
      "peak RSS growth < %.0f MB. Medians are compared; a miss is a warning, not a "
      "failure.\n\n```\n%s```\n",
      B.instr ? "Without it: " : "",
      TARGET_HR_SINGLE,
      TARGET_HR_BULK,
      TARGET_PH,
      TARGET_BUFFERED_X,
      TARGET_WRITER_TPUT,
      TARGET_REQ_CPU_US,
      TARGET_STREAM_MB,
      target_lines);
   fprintf (f, "\n## Chart\n\n![helper/raw and pymongo/helper CPU ratios](ratios.png)\n\n");
   fprintf (
      f,
      "## How it is measured\n\n"
      "- **helper**: mongo_helper's public API (the call is named in the status table's note), "
      "on the singleton's pool (the thread's pooled client); every run checks its result "
      "(documents and _ids found, counts inserted, bytes downloaded, events stored).\n"
      "- **raw**: libmongoc as its documentation recommends: one mongoc_client_pool_t "
      "(error API 2), a client popped for a run (one per thread in the concurrent tasks) and "
      "pushed back, collection handles reused.\n"
      "- **pymongo**: Debian's python3-pymongo in a separate /usr/bin/python3 process, one "
      "MongoClient, driven over a pipe so its runs interleave with the C runs; its CPU is "
      "resource.getrusage of that process.\n"
      "- One operation is what the \"one operation\" column says: per document for find_many, "
      "insert_many_*, bulk_insert and stream; per pipeline run for aggregate; per upload + "
      "download for gridfs; per event for the logging tasks.\n"
      "- Untimed: dropping/seeding collections before a run, result verification that is not part "
      "of the operation (counts). Timed: the operations, including draining cursors and the "
      "buffered writer's final flush.\n"
      "- Buffered logging: events/s is wall time from the first event to the end of the final "
      "flush; request-path CPU is CLOCK_THREAD_CPUTIME_ID of the logging thread only, the flusher "
      "thread's work is in the process CPU column.\n"
      "- Streaming memory: RSS from /proc/self/statm before the stream, peak (VmHWM) during it; "
      "the warm-up streams a fifth of the documents, so the growth at two sizes shows whether "
      "memory depends on the number of documents.\n"
      "- Concurrent tasks: N threads each take an equal share of the operations (2/4 find one by "
      "_id, 1/4 insert one, 1/4 update one $inc); thread start-up is inside the timing for all "
      "sides "
      "(pymongo: N threading.Thread on one MongoClient).\n"
      "- Against the local test server (tests/mock_server.py, Python + mongomock) wall times and "
      "throughput are bounded by the server, not the client: compare CPU columns, and rerun "
      "against a real mongod (MONGO_TEST_URI=...) for wall-time numbers.\n");
   fprintf (
      f,
      "\n## Instruction mode: how it works and why\n\n"
      "- **Why:** the client's CPU time on this shared 2-core machine moves by tens of percent "
      "between repetitions (one task's helper/raw CPU ratio ranged 0.89..1.69 across the "
      "repetitions of one run), far more than the 1-3%% the targets are about. The number of "
      "instructions the client executes for the same work hardly moves (the spread column), so "
      "with the instruction pass the helper/raw targets are judged on instructions. The CPU "
      "columns stay: they are what a user pays, the instructions are what can be compared.\n"
      "- **Running it:** `make bench BENCH_ARGS=--instr` adds the pass to the full mode; "
      "`make bench BENCH_ARGS=--quick` includes it (`--no-instr` leaves it out); "
      "`--instr-only` runs only it (no CPU pass, no pymongo); `--instr-procs P` child processes "
      "per side, one after the other (default %d), with `--instr-reps R` counted runs per task "
      "in each (default %d; 1 in quick mode, which spends its time on processes rather than "
      "runs because counts differ more between processes); `--only`/`--skip` select tasks as "
      "usual.\n",
      INSTR_DEFAULT_PROCS,
      INSTR_DEFAULT_REPS);
   fprintf (
      f,
      "- **How:** after the CPU pass, bench re-executes itself once per side as `valgrind "
      "--tool=callgrind --instr-atstart=no --trace-children=no "
      "--callgrind-out-file=build/bench/callgrind/SIDE.pN.out bench --instr-child SIDE "
      "--instr-tasks LIST ...`: the client process only (the test server is another process and "
      "is not traced). The child connects, generates its data, and for each task does a warm-up "
      "run with instrumentation off (a fifth of the work as in the CPU pass: connections, "
      "handshakes, first round trips, the helper's handles; for the concurrent tasks N pool "
      "clients are first held at once, so no counted run opens a connection). Each counted run: "
      "prep (dropping its collection) uninstrumented; `CALLGRIND_START_INSTRUMENTATION` + "
      "`CALLGRIND_ZERO_STATS`; the same run function as the CPU pass; "
      "`CALLGRIND_DUMP_STATS_AT(\"TASK SIDE run K\")` + `CALLGRIND_STOP_INSTRUMENTATION`; then "
      "the usual result check (counts), uninstrumented. The child reports each run on a pipe; "
      "the parent then reads the `totals:` line of that dump (SIDE.pN.out.K, after checking its "
      "trigger label) and divides by the run's operations. The helper's and raw's children run "
      "at the same time (they write separate collections), which does not change what they "
      "count; with more than one process per side they run one after the other.\n"
      "- **What is counted:** user-space instructions of every thread of the client process "
      "between zero and dump: the operations, their libmongoc and libbson work, the concurrent "
      "tasks' worker threads, the buffered writer's flusher. Not counted: the server, the kernel "
      "(system calls, the network), set-up and checks outside the runs.\n"
      "- **Operations per counted run:** a third of the quick mode's (per-operation counts need "
      "no long runs): 200 single-document operations, 1 large document (its count repeats to a "
      "few instructions in a million), one batch of 1000 for bulk_insert, the whole collection "
      "for find_many, at most %d streamed documents; the same for both sides.\n"
      "- **Keeping counts repeatable:** the child's URI gets heartbeatFrequencyMS=%d (unless it "
      "sets one), so no server-monitoring heartbeat of the two pools lands in a counted run; the "
      "child fixes glibc's mmap threshold (mallopt M_MMAP_THRESHOLD, 128 KiB), which glibc "
      "otherwise raises whenever a large block is freed, making later runs copy on realloc "
      "where earlier ones remapped (up to 2%% drift from run to run). What still varies: "
      "the heap layout, which decides whether a growing buffer (e.g. the started event's copy "
      "of an insert batch) is extended in place or copied, and glibc malloc's internal paths; "
      "string functions' costs, which depend on addresses; and how replies arrive over the "
      "socket (number of reads and buffer copies in libmongoc). These differ more between "
      "processes, and between bench runs, than between runs of one process: the helper's "
      "insert_many_small count has ranged from ~14,400 to ~14,710 instructions/document across "
      "bench runs (identical runs inside each process; raw's stayed at 13,792), so read the "
      "spread column as a lower bound of the noise and differences under ~2%% as noise. One child "
      "runs all of a "
      "side's tasks in table order, so a task starts from the heap the tasks before it left, "
      "in the same order on both sides.\n"
      "- **Limits:** instructions are not cycles: cache misses, branch mispredictions, "
      "system calls and page faults do not show (find_many's note shows a case where this "
      "reverses the CPU ratio), and a large memcpy counts one instruction per byte (`rep "
      "movsb`, which valgrind executes byte by byte), so big copies weigh more here than in CPU "
      "time. Under valgrind threads run one at a time. event_log_buffered's count depends on "
      "timing (its flusher writes every %d ms or %d events, so a slower run makes more, smaller "
      "batches); it has no raw counterpart and is shown for information.\n",
      INSTR_STREAM_DOCS,
      INSTR_HEARTBEAT_MS,
      EVENT_FLUSH_MS,
      EVENT_FLUSH_MAX);
   return fclose (f) == 0;
}

static bool
write_chart (const char *dir)
{
   char dat[1024], gp[1024], png[1024], cmd[4096], server_short[512];
   char plot_hr[2048], plot_ph[2048], plot_ir[2048];
   int n_hr = 0, n_ph = 0, n_ir = 0, n_rows = 0;
   FILE *f;
   int rc;

   mkdir ("build", 0777);
   mkdir ("build/bench", 0777);
   snprintf (dat, sizeof dat, "build/bench/ratios.dat");
   snprintf (gp, sizeof gp, "build/bench/ratios.gp");
   snprintf (png, sizeof png, "%s/ratios.png", dir);
   /* The chart's subtitle: the server without its address, no quotes. */
   snprintf (server_short, sizeof server_short, "%s", B.server);
   if (strstr (server_short, " at ")) {
      *strstr (server_short, " at ") = '\0';
   }
   for (char *q = server_short; *q; q++) {
      if (*q == '"' || *q == '\\') {
         *q = '\'';
      }
   }
   f = fopen (dat, "w");
   if (!f) {
      return false;
   }
   fprintf (f, "# task hr_med hr_min hr_max ph_med ph_min ph_max ir_med ir_min ir_max\n");
   for (size_t k = 0; k < NTASKS; k++) {
      task_res_t *tr = &RES[k];
      stat_t hr, ph, ir;
      if (!tr->selected) {
         continue;
      }
      hr = stats (tr->ratio_hr, tr->n_hr);
      ph = stats (tr->ratio_ph, tr->n_ph);
      ir = instr_ratio (tr);
      n_ir += ir.ok;
      fprintf (f, "%s", tr->t->name);
      n_rows++;
      n_hr += hr.ok;
      n_ph += ph.ok;
      if (hr.ok) {
         fprintf (f, " %.4f %.4f %.4f", hr.med, hr.min, hr.max);
      } else {
         fprintf (f, " ? ? ?");
      }
      if (ph.ok) {
         fprintf (f, " %.4f %.4f %.4f", ph.med, ph.min, ph.max);
      } else {
         fprintf (f, " ? ? ?");
      }
      if (ir.ok) {
         fprintf (f, " %.4f %.4f %.4f\n", ir.med, ir.min, ir.max);
      } else {
         fprintf (f, " ? ? ?\n");
      }
   }
   fclose (f);
   /* A panel without a single ratio (e.g. --no-pymongo) shows only its
    * target, so gnuplot has nothing to warn about. */
   if (n_hr) {
      snprintf (
         plot_hr,
         sizeof plot_hr,
         "set xrange [-0.6:%.1f]\n"
         "plot '%s' using 2:3:4:xtic(1) title 'helper / raw CPU, %d repetitions (%s)' lc rgb "
         "'#3366cc', "
         "1.05 with lines dt 2 lw 2 lc rgb '#cc0000' title 'CPU target <= 1.05 single-doc%s', "
         "1.02 with lines dt 3 lw 2 lc rgb '#ff9900' title 'CPU target <= 1.02 bulk/streaming%s', "
         "'' using 0:2:(sprintf('%%.2f', $2)) with labels offset char 2.2,0.6 font ',8' notitle",
         (double) n_rows - 0.4,
         dat,
         B.reps,
         n_ir ? "information: noisy, see instructions" : "lower is better",
         n_ir ? ", not judged" : "",
         n_ir ? ", not judged" : "");
   } else {
      snprintf (plot_hr,
                sizeof plot_hr,
                "unset xtics\nset xrange [0:1]\nplot 1.05 with lines dt 2 lw 2 lc rgb '#cc0000' "
                "title 'target <= 1.05 (no helper/raw ratio in this run)'\nset autoscale x");
   }
   if (n_ph) {
      snprintf (
         plot_ph,
         sizeof plot_ph,
         "set xrange [-0.6:%.1f]\n"
         "plot '%s' using 5:6:7:xtic(1) title 'pymongo / helper CPU (higher is better)' lc rgb "
         "'#109618', "
         "2 with lines dt 2 lw 2 lc rgb '#cc0000' title 'target >= 2', "
         "'' using 0:5:(sprintf('%%.1f', $5)) with labels offset char 2.2,0.6 font ',8' notitle",
         (double) n_rows - 0.4,
         dat);
   } else {
      snprintf (plot_ph,
                sizeof plot_ph,
                "unset xtics\nset xrange [0:1]\nplot 2 with lines dt 2 lw 2 lc rgb '#cc0000' "
                "title 'target >= 2 (no pymongo/helper ratio in this run)'\nset autoscale x");
   }
   plot_ir[0] = '\0';
   if (n_ir) {
      snprintf (
         plot_ir,
         sizeof plot_ir,
         "set ylabel 'helper / raw instructions'\n"
         "set yrange [0:*]\n"
         "set xrange [-0.6:%.1f]\n"
         "plot '%s' using 8:9:10:xtic(1) title 'helper / raw instructions per op, callgrind "
         "(judged; lower is better)' lc rgb '#7b3294', "
         "%.2f with lines dt 2 lw 2 lc rgb '#cc0000' title 'target <= %.2f single-doc', "
         "%.2f with lines dt 3 lw 2 lc rgb '#ff9900' title 'target <= %.2f bulk/streaming', "
         "'' using 0:8:(sprintf('%%.3f', $8)) with labels offset char 2.4,0.6 font ',8' notitle\n"
         "set xtics rotate by -30 scale 0 font ',10'\n",
         (double) n_rows - 0.4,
         dat,
         TARGET_IR_SINGLE,
         TARGET_IR_SINGLE,
         TARGET_IR_BULK,
         TARGET_IR_BULK);
   }
   f = fopen (gp, "w");
   if (!f) {
      return false;
   }
   fprintf (f,
            "set terminal pngcairo size 1400,%d font 'DejaVu Sans,11' noenhanced\n"
            "set output '%s'\n"
            "set datafile missing '?'\n"
            "set multiplot layout %d,1 title \"mongo_helper: client %s per operation, %s mode "
            "(bar = median, whisker = min..max)\\n%s\"\n"
            "set style data histogram\n"
            "set style histogram errorbars gap 2 lw 1.5\n"
            "set style fill solid 0.7 border -1\n"
            "set boxwidth 0.8\n"
            "set xtics rotate by -30 scale 0 font ',10'\n"
            "set grid ytics\n"
            "set key top left\n"
            "set bmargin 6\n"
            "%s",
            B.instr_only ? 560
            : n_ir       ? 1450
                         : 1000,
            png,
            (n_ir ? 1 : 0) + (B.instr_only ? 0 : 2),
            B.instr_only ? "instructions"
            : n_ir       ? "instructions and CPU"
                         : "CPU",
            mode_name (),
            server_short,
            plot_ir);
   if (!B.instr_only) {
      fprintf (f,
               "set ylabel 'helper / raw libmongoc CPU'\n"
               "set yrange [0:*]\n"
               "%s\n"
               "set xtics rotate by -30 scale 0 font ',10'\n"
               "set ylabel 'pymongo / helper CPU (log scale)'\n"
               "set logscale y\n"
               "set yrange [0.1:*]\n"
               "%s\n",
               plot_hr,
               plot_ph);
   }
   fprintf (f, "unset multiplot\n");
   fclose (f);
   snprintf (cmd, sizeof cmd, "gnuplot '%s'", gp);
   rc = system (cmd);
   if (rc != 0) {
      fprintf (stderr, "bench: gnuplot failed (exit %d); run `make deps-bench`\n", rc);
      return false;
   }
   return true;
}

/* ---- Machine and server ---------------------------------------------- */

static double
loadavg (void)
{
   double l = 0;
   FILE *f = fopen ("/proc/loadavg", "r");

   if (f) {
      if (fscanf (f, "%lf", &l) != 1) {
         l = 0;
      }
      fclose (f);
   }
   return l;
}

static void
machine_info (void)
{
   char model[256] = "unknown CPU", line[512];
   long mem_kb = 0;
   struct utsname u;
   FILE *f = fopen ("/proc/cpuinfo", "r");

   if (f) {
      while (fgets (line, sizeof line, f)) {
         if (strncmp (line, "model name", 10) == 0 && strchr (line, ':')) {
            snprintf (model, sizeof model, "%s", strchr (line, ':') + 2);
            model[strcspn (model, "\n")] = '\0';
            break;
         }
      }
      fclose (f);
   }
   f = fopen ("/proc/meminfo", "r");
   if (f) {
      if (fscanf (f, "MemTotal: %ld kB", &mem_kb) != 1) {
         mem_kb = 0;
      }
      fclose (f);
   }
   uname (&u);
   snprintf (MACHINE,
             sizeof MACHINE,
             "%s, %ld CPUs online, %.1f GB RAM, %s %s %s",
             model,
             sysconf (_SC_NPROCESSORS_ONLN),
             (double) mem_kb / 1048576.0,
             u.sysname,
             u.release,
             u.machine);
}

/* ---- main -------------------------------------------------------------- */

static void
usage (FILE *f)
{
   fprintf (
      f,
      "usage: bench [--quick] [--reps N] [--only a,b] [--skip a,b] [--list]\n"
      "             [--uri URI] [--out DIR] [--no-pymongo] [--python PATH]\n"
      "             [--script PATH] [--stream-docs N] [--aa]\n"
      "             [--instr | --no-instr | --instr-only] [--instr-procs P] [--instr-reps R]\n"
      "--aa: calibration, raw libmongoc also plays the helper (noise floor).\n"
      "--instr: also count instructions per operation under callgrind (the default; --no-instr "
      "skips it);\n"
      "  P child processes per side (default 2), R counted runs per task in each (default 2, quick "
      "1).\n"
      "URI: --uri, else MONGO_CACHE_URI, else MONGO_TEST_URI (must name a database).\n"
      "Writes DIR/results.json, DIR/RESULTS.md, DIR/ratios.png (DIR default: bench).\n");
}

int
main (int argc, char **argv)
{
   static char script_buf[1024];
   const char *uri = NULL;
   char err[512], path[1024], hex[32];
   mongo_helper_error_t me;
   mongo_helper_status_t hs;
   mongo_helper_server_info_t info;
   mongoc_uri_t *muri;
   bson_string_t *tl;
   bool failed = false;
   double t_start;
   time_t wall0 = time (NULL);
   long blob_len = 0;
   bool no_instr = false;
   int child_rc = 0;

   B.reps = BENCH_DEFAULT_REPS;
   B.pymongo = true;
   B.out_dir = "bench";
   B.python = "/usr/bin/python3";
   for (int k = 1; k < argc; k++) {
      const char *a = argv[k];
      const char *v = k + 1 < argc ? argv[k + 1] : NULL;
      if (strcmp (a, "--quick") == 0) {
         B.quick = true;
      } else if (strcmp (a, "--aa") == 0) {
         B.aa = true;
      } else if (strcmp (a, "--instr") == 0) {
         B.instr = true;
      } else if (strcmp (a, "--no-instr") == 0) {
         no_instr = true;
      } else if (strcmp (a, "--instr-only") == 0) {
         B.instr = B.instr_only = true;
      } else if (v && strcmp (a, "--instr-reps") == 0) {
         B.instr_reps = atoi (v), k++;
      } else if (v && strcmp (a, "--instr-procs") == 0) {
         B.instr_procs = atoi (v), k++;
      } else if (v && strcmp (a, "--instr-child") == 0) {
         B.ic_side = v, k++;
      } else if (v && strcmp (a, "--instr-tasks") == 0) {
         B.ic_tasks = v, k++;
      } else if (strcmp (a, "--no-pymongo") == 0) {
         B.pymongo = false;
      } else if (strcmp (a, "--list") == 0) {
         for (size_t t = 0; t < NTASKS; t++) {
            printf ("%-20s %s\n", TASKS[t].name, TASKS[t].op);
         }
         return 0;
      } else if (strcmp (a, "--help") == 0 || strcmp (a, "-h") == 0) {
         usage (stdout);
         return 0;
      } else if (v && strcmp (a, "--reps") == 0) {
         B.reps = atoi (v), k++;
      } else if (v && strcmp (a, "--only") == 0) {
         B.only = v, k++;
      } else if (v && strcmp (a, "--skip") == 0) {
         B.skip = v, k++;
      } else if (v && strcmp (a, "--uri") == 0) {
         uri = v, k++;
      } else if (v && strcmp (a, "--out") == 0) {
         B.out_dir = v, k++;
      } else if (v && strcmp (a, "--python") == 0) {
         B.python = v, k++;
      } else if (v && strcmp (a, "--script") == 0) {
         B.script = v, k++;
      } else if (v && strcmp (a, "--stream-docs") == 0) {
         B.stream_docs = atol (v), k++;
      } else {
         usage (stderr);
         return 2;
      }
   }
   if (!B.ic_side) {
      B.instr = true; /* both modes include the instruction pass (--no-instr: skip it) */
   }
   if (no_instr) {
      B.instr = B.instr_only = false;
   }
   if (B.instr_only) {
      B.pymongo = false; /* nothing for it to do */
   }
   if (B.instr_procs == 0) {
      B.instr_procs = INSTR_DEFAULT_PROCS;
   }
   if (B.instr_reps == 0) {
      /* Counts differ more between processes (heap layout: how often a
       * growing buffer is copied; how replies arrive) than between runs of
       * one process, so the quick mode spends its time on two processes
       * with one counted run each rather than on more runs in one. */
      B.instr_reps = B.quick ? 1 : INSTR_DEFAULT_REPS;
   }
   if (B.instr_reps < 1 || B.instr_procs < 1 || B.instr_procs > INSTR_MAX_PROCS ||
       B.instr_reps * B.instr_procs > MAX_REPS || (B.ic_side && !B.ic_tasks)) {
      fprintf (stderr,
               "bench: --instr-procs must be 1..%d and --instr-reps x --instr-procs "
               "1..%d (and --instr-child needs --instr-tasks)\n",
               INSTR_MAX_PROCS,
               MAX_REPS);
      return 2;
   }
   if (B.reps < 1 || B.reps > MAX_REPS) {
      fprintf (stderr, "bench: --reps must be 1..%d\n", MAX_REPS);
      return 2;
   }
   if (B.reps < BENCH_MIN_REPS && !B.instr_only && !B.ic_side) {
      fprintf (
         stderr, "bench: WARNING: %d repetitions; results need >= %d\n", B.reps, BENCH_MIN_REPS);
   }
   if (!uri || !*uri) {
      uri = getenv ("MONGO_CACHE_URI");
   }
   if (!uri || !*uri) {
      uri = getenv ("MONGO_TEST_URI");
   }
   if (!uri || !*uri) {
      fprintf (stderr,
               "bench: no server: set MONGO_CACHE_URI or MONGO_TEST_URI, or pass --uri "
               "(`make bench` starts a local test server)\n");
      return 2;
   }
   snprintf (B.uri, sizeof B.uri, "%s", uri);
   mongo_helper_redact (B.uri, B.uri_redacted, sizeof B.uri_redacted);
   B.mock = getenv ("MH_MOCK_SERVER") && *getenv ("MH_MOCK_SERVER");
   if (!B.script) {
      const char *slash = strrchr (argv[0], '/');
      snprintf (script_buf,
                sizeof script_buf,
                "%.*sbench_pymongo.py",
                slash ? (int) (slash - argv[0] + 1) : 0,
                argv[0]);
      B.script = script_buf;
   }
   if (B.stream_docs <= 0) {
      if (B.quick) {
         B.stream_docs = 10000;
         snprintf (B.stream_note,
                   sizeof B.stream_note,
                   "%ld documents per run (quick mode)",
                   B.stream_docs);
      } else if (B.mock) {
         B.stream_docs = 50000;
         snprintf (B.stream_note,
                   sizeof B.stream_note,
                   "%ld documents per run: the local test server (Python/mongomock) serves ~4,000 "
                   "documents/s, so 1,000,000 x 18 runs would take over an hour; against a real "
                   "mongod the full mode streams 1,000,000",
                   B.stream_docs);
      } else {
         B.stream_docs = 1000000;
         snprintf (B.stream_note, sizeof B.stream_note, "%ld documents per run", B.stream_docs);
      }
   } else {
      snprintf (B.stream_note,
                sizeof B.stream_note,
                "%ld documents per run (--stream-docs)",
                B.stream_docs);
   }
   B.flat_coll_n = B.quick ? 1000 : 10000;
   B.nested_coll_n = B.quick ? 2000 : 10000;
   /* mongomock scans the collection for any filter beyond a bare _id, so
    * on the test server a session load or cache get costs O(entries):
    * 1000 entries made the full mode's session task take ~5 minutes. */
   B.sessions_n = B.quick || B.mock ? 200 : 1000;
   B.cache_n = B.quick || B.mock ? 200 : 1000;
   B.flat_n = B.quick ? 5000 : 50000;
   B.meta_n = 1000;
   if (B.ic_side) {
      B.only = B.ic_tasks; /* the child generates only its tasks' data */
      B.pymongo = false;
      /* A fixed mmap threshold: glibc otherwise raises it each time a
       * large block is freed, so later runs take other allocation paths
       * (a realloc copies instead of mremap) and the counts drift by up
       * to 2% from run to run.  Same setting for both sides. */
      mallopt (M_MMAP_THRESHOLD, 128 * 1024);
   }
   for (size_t k = 0; k < NTASKS; k++) {
      RES[k].t = &TASKS[k];
      RES[k].selected = (!B.only || in_list (B.only, TASKS[k].name)) &&
                        !(B.skip && in_list (B.skip, TASKS[k].name));
      if (RES[k].selected && strcmp (TASKS[k].name, "gridfs") == 0) {
         blob_len = B.quick ? TASKS[k].param_quick : TASKS[k].param_full;
      }
   }
   if (B.instr && !B.ic_side) {
      /* valgrind from PATH; this program by its absolute path */
      const char *pathvar = getenv ("PATH");
      ssize_t n = readlink ("/proc/self/exe", B.self_exe, sizeof B.self_exe - 1);

      B.self_exe[n > 0 ? n : 0] = '\0';
      for (const char *p = pathvar; p && *p;) {
         size_t len = strcspn (p, ":");
         snprintf (path, sizeof path, "%.*s/valgrind", (int) len, p);
         if (len && access (path, X_OK) == 0) {
            snprintf (B.valgrind, sizeof B.valgrind, "%s", path);
            break;
         }
         p += len + (p[len] == ':');
      }
      if (!B.valgrind[0] || !HAVE_CALLGRIND || !B.self_exe[0]) {
         fprintf (stderr,
                  "bench: the instruction pass needs valgrind (make deps-bench): %s\n",
                  !B.valgrind[0]    ? "not found in PATH"
                  : !HAVE_CALLGRIND ? "bench was built without <valgrind/callgrind.h>"
                                    : "cannot read /proc/self/exe");
      }
   }
   machine_info ();
   LOAD0 = loadavg ();
   strftime (STARTED, sizeof STARTED, "%Y-%m-%d %H:%M:%S", gmtime (&wall0));
   t_start = now_s ();

   /* Fork the Python side before libmongoc starts any thread. */
   if (B.pymongo && !py_start (err, sizeof err)) {
      fprintf (stderr, "bench: cannot start the pymongo side: %s\n", err);
      return 1;
   }
   signal (SIGPIPE, SIG_IGN);
   mongoc_init ();
   if (!mongo_helper_init_uri (B.uri, &me)) {
      fprintf (stderr, "bench: mongo_helper_init_uri: %s\n", me.message);
      py_stop ();
      return 1;
   }
   mongo_helper_status (&hs);
   snprintf (B.db, sizeof B.db, "%s", hs.database);
   muri = mongoc_uri_new (B.uri);
   if (!muri) {
      fprintf (stderr, "bench: invalid URI %s\n", B.uri_redacted);
      py_stop ();
      return 1;
   }
   B.pool = mongoc_client_pool_new (muri);
   mongoc_client_pool_set_error_api (B.pool, MONGOC_ERROR_API_VERSION_2);
   mongoc_client_pool_set_appname (B.pool, "mh-bench-raw");
   mongoc_uri_destroy (muri);
   if (!mongo_helper_server_info (5000, &info, &me)) {
      fprintf (stderr, "bench: cannot reach the server at %s: %s\n", B.uri_redacted, me.message);
      failed = true;
      goto done;
   }
   snprintf (B.server,
             sizeof B.server,
             "%s%s %s (%s) at %.300s",
             B.mock ? "tests/mock_server.py (Python + mongomock) reporting " : "",
             "MongoDB",
             info.version,
             info.topology,
             B.uri_redacted);

   /* Data, generated once, untimed. */
   if (!B.ic_side) {
      data_fingerprint (B.fingerprint, sizeof B.fingerprint);
   }
   B.flat = bson_malloc ((size_t) B.flat_n * sizeof *B.flat);
   for (long i = 0; i < B.flat_n; i++) {
      B.flat[i] = gen_flat (i, false);
   }
   B.large = gen_large (0);
   B.large_bad = gen_large_ex (0, true);
   B.meta = bson_malloc ((size_t) B.meta_n * sizeof *B.meta);
   B.meta_uid = bson_malloc ((size_t) B.meta_n * sizeof *B.meta_uid);
   B.meta_type = bson_malloc ((size_t) B.meta_n * sizeof *B.meta_type);
   for (long i = 0; i < B.meta_n; i++) {
      int32_t uid;
      B.meta[i] = gen_meta (i, &uid, &B.meta_type[i]);
      snprintf (B.meta_uid[i], sizeof B.meta_uid[i], "u%d", (int) uid);
   }
   B.blob_len = (size_t) blob_len;
   B.blob = gen_blob (B.blob_len);

   if (B.pymongo) {
      bson_t reply;
      char line[256];
      snprintf (line,
                sizeof line,
                "config %ld %ld %ld %ld %ld %ld %d %ld",
                B.flat_coll_n,
                B.nested_coll_n,
                B.sessions_n,
                B.cache_n,
                B.flat_n,
                B.meta_n,
                B.quick ? 1 : 0,
                B.stream_docs);
      if (!py_call ("info", &reply, err, sizeof err)) {
         fprintf (stderr, "bench: pymongo side: %s\n", err);
         failed = true;
         B.pymongo = false;
      } else {
         snprintf (hex, sizeof hex, "%s", bson_str (&reply, "fingerprint"));
         snprintf (B.py_info,
                   sizeof B.py_info,
                   "Python %s, pymongo %s (C extensions: %s)",
                   bson_str (&reply, "python"),
                   bson_str (&reply, "pymongo"),
                   bson_num (&reply, "c_extensions", 0) ? "yes" : "no");
         B.fingerprint_ok = strcmp (hex, B.fingerprint) == 0;
         if (!B.fingerprint_ok) {
            fprintf (stderr,
                     "bench: the Python side generates different data (fingerprint %s, C %s): "
                     "fix bench_pymongo.py's generators\n",
                     hex,
                     B.fingerprint);
            failed = true;
         }
      }
      bson_destroy (&reply);
      if (B.pymongo && !py_call (line, &reply, err, sizeof err)) {
         fprintf (stderr, "bench: pymongo side: %s\n", err);
         failed = true;
         B.pymongo = false;
      }
      bson_destroy (&reply);
   }

   if (B.ic_side) {
      child_rc = instr_child ();
      goto done;
   }
   fprintf (stderr, "bench: %s mode against %s\n", mode_name (), B.server);
   for (size_t k = 0; k < NTASKS; k++) {
      if (RES[k].selected) {
         run_task (&RES[k]);
         if (RES[k].setup_status == ST_FAIL) {
            failed = true;
         }
         for (int s = 0; s < SIDE_N; s++) {
            failed |= RES[k].s[s].status == ST_FAIL;
         }
      }
   }
   if (B.instr) {
      instr_pass ();
      for (size_t k = 0; k < NTASKS; k++) {
         for (int s = 0; s < SIDE_N; s++) {
            failed |= RES[k].instr_run && RES[k].instr_status[s] == ST_FAIL;
         }
      }
   }

done:
   py_stop ();
   LOAD1 = loadavg ();
   DURATION = now_s () - t_start;
   tl = bson_string_new (NULL);
   if (B.server[0] && !B.ic_side) {
      mkdir (B.out_dir, 0777); /* an existing directory is fine */
      int missed = targets (tl);
      fputs (tl->str, stdout);
      if (missed) {
         printf (
            "bench: %d target(s) missed (warnings above; see %s/RESULTS.md)\n", missed, B.out_dir);
      }
      snprintf (path, sizeof path, "%s/results.json", B.out_dir);
      failed |= !write_json (path);
      snprintf (path, sizeof path, "%s/RESULTS.md", B.out_dir);
      failed |= !write_md (path, tl->str);
      failed |= !write_chart (B.out_dir);
      printf ("bench: wrote %s/results.json, %s/RESULTS.md, %s/ratios.png (%.0f s)%s\n",
              B.out_dir,
              B.out_dir,
              B.out_dir,
              DURATION,
              failed ? "; SOMETHING FAILED TO RUN (see above)" : "");
   }
   bson_string_free (tl, true);
   for (long i = 0; B.flat && i < B.flat_n; i++) {
      bson_destroy (B.flat[i]);
   }
   bson_free (B.flat);
   bson_destroy (B.large);
   bson_destroy (B.large_bad);
   for (long i = 0; B.meta && i < B.meta_n; i++) {
      bson_destroy (B.meta[i]);
   }
   bson_free (B.meta);
   bson_free (B.meta_uid);
   bson_free ((void *) B.meta_type);
   bson_free (B.blob);
   mongo_helper_sessions_destroy (H_SESSIONS);
   mongo_helper_sessions_destroy (H_SEALED[0]);
   mongo_helper_sessions_destroy (H_SEALED[1]);
   mongo_helper_cache_destroy (H_CACHE);
   mongo_helper_eventlog_destroy (H_EVENTS);
   mongo_helper_shutdown ();
   mongoc_client_pool_destroy (B.pool);
   mongoc_cleanup ();
   if (B.ic_side) {
      return failed && !child_rc ? 1 : child_rc;
   }
   return failed ? 1 : 0;
}
