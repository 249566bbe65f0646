/*
 * bench/common.c — clocks, memory probes and what every task uses: failure
 * reporting, collection names, the raw side's pool, dropping and seeding
 * collections.
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- Clocks and memory ----------------------------------------------- */

double
now_s (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_MONOTONIC, &ts);
   return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

double
cpu_s (int who)
{
   struct rusage ru;

   getrusage (who, &ru);
   return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
          (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

double
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
long
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
void
hwm_reset (void)
{
   FILE *f = fopen ("/proc/self/clear_refs", "w");

   if (f) {
      fputs ("5", f);
      fclose (f);
   }
}

long
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

int64_t
now_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

status_t
fail (run_t *r, const char *fmt, ...)
{
   va_list ap;

   va_start (ap, fmt);
   vsnprintf (r->err, sizeof r->err, fmt, ap);
   va_end (ap);
   return ST_FAIL;
}

status_t
fail_bson (run_t *r, const char *what, const bson_error_t *e)
{
   return fail (r, "%s: %s (domain %u, code %u)", what, e->message, e->domain, e->code);
}

status_t
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
void
coll_name (char *out, size_t n, const char *what, side_t side)
{
   snprintf (out, n, "bench_%s_%s", what, side_name[side]);
}

/* The raw side: a client popped from the application's one pool for the
 * duration of a run (a thread's unit of work), as libmongoc's pool
 * examples do. */
mongoc_client_t *
raw_pop (void)
{
   return mongoc_client_pool_pop (B.pool);
}

void
raw_push (mongoc_client_t *c)
{
   if (c) {
      mongoc_client_pool_push (B.pool, c);
   }
}

/* Untimed set-up work always goes through the raw pool. */
bool
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

bson_t *
gen_flat_id (long i)
{
   return gen_flat (i, true);
}

bson_t *
gen_nested_id (long i)
{
   return gen_nested (i, true);
}

/* Drops `name` and inserts docs 0..n-1 from `gen`, in batches. */
bool
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
