/*
 * metrics.c — operation and command counters, pool gauges, and their
 * Prometheus and JSON snapshots (layer 5).
 */
#include "mh_private.h"

#define MH_METRIC_SLOTS 64
#define MH_METRIC_NAME 48
#define MH_CATEGORIES (MONGO_HELPER_ERROR_INTEGRITY + 1) /* the last category, + 1 */

static const int32_t mh_hist_le_ms[] =
   {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};
#define MH_HIST_N (sizeof mh_hist_le_ms / sizeof *mh_hist_le_ms)

typedef struct {
   const char *name;
   uint64_t calls, ok, retries;
   uint64_t errors[MH_CATEGORIES];
   uint64_t buckets[MH_HIST_N + 1]; /* per bucket, +Inf last */
   uint64_t sum_us;
} mh_op_metric_t;

/* The live operation counters: one row per operation of the table, plain
 * atomics, so the hot path takes no lock, formats nothing and looks
 * nothing up. */
typedef struct {
   atomic_uint_least64_t calls, ok, retries, sum_us;
   atomic_uint_least64_t errors[MH_CATEGORIES];
   atomic_uint_least64_t buckets[MH_HIST_N + 1];
} mh_op_live_t;

static mh_op_live_t mh_ops_live[MH_OPID__COUNT];

/* Encrypted records that did not open, per operation and MH_INTEGRITY_*
 * code (the reason); index 0 unused. */
#define MH_INTEGRITY_REASONS 4
static atomic_uint_least64_t mh_integrity_live[MH_OPID__COUNT][MH_INTEGRITY_REASONS];

static const char *
mh_integrity_reason (int code)
{
   switch (code) {
   case MH_INTEGRITY_MALFORMED:
      return "malformed";
   case MH_INTEGRITY_UNKNOWN_KEY:
      return "unknown_key";
   case MH_INTEGRITY_FORGED:
      return "forged";
   default:
      return "other";
   }
}

static const char *const mh_op_names[MH_OPID__COUNT] = {
#define MH_OPID_NAME(id, name) [MH_OPID_##id] = name,
   MH_OPERATIONS (MH_OPID_NAME)
#undef MH_OPID_NAME
};

const char *
mh_op_name (mh_opid_t op)
{
   return (unsigned) op < MH_OPID__COUNT ? mh_op_names[op] : "unknown";
}

typedef struct {
   char name[MH_METRIC_NAME];
   uint64_t started, succeeded, failed, duration_us;
} mh_cmd_metric_t;

static struct {
   pthread_mutex_t lock;
   mh_cmd_metric_t cmds[MH_METRIC_SLOTS];
   size_t n_cmds;
} mh_m = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_llong mh_pool_in_use, mh_pool_waiting;
static atomic_ullong mh_pool_checkouts, mh_pool_timeouts;

static void
mh_m_prepare (void)
{
   pthread_mutex_lock (&mh_m.lock);
}

static void
mh_m_parent (void)
{
   pthread_mutex_unlock (&mh_m.lock);
}

/* A forked child starts with none of the parent's clients in use. */
static void
mh_m_child (void)
{
   atomic_store (&mh_pool_in_use, 0);
   atomic_store (&mh_pool_waiting, 0);
   pthread_mutex_unlock (&mh_m.lock);
}

static mh_fork_hook_t mh_m_fork = {.rank = 5,
                                   .prepare = mh_m_prepare,
                                   .parent = mh_m_parent,
                                   .child = mh_m_child};
MH_FORK_HOOK (mh_m_fork)

/* Metric names become Prometheus label values and JSON keys: keep them to
 * [A-Za-z0-9_] so no escaping is ever needed and nothing else leaks. */
static void
mh_metric_name (const char *in, char out[MH_METRIC_NAME])
{
   size_t n = 0;

   for (; in && *in && n + 1 < MH_METRIC_NAME; in++) {
      if (isalnum ((unsigned char) *in) || *in == '_') {
         out[n++] = *in;
      } else {
         break;
      }
   }
   if (n == 0) {
      memcpy (out, "other", 6);
      return;
   }
   out[n] = '\0';
}

/* Finds or adds a slot; the last slot collects everything past the limit.
 * Called with mh_m.lock held. */
#define MH_FIND_SLOT(arr, count, key, out)                          \
   do {                                                             \
      (out) = NULL;                                                 \
      for (size_t i_ = 0; i_ < (count); i_++) {                     \
         if (strcmp ((arr)[i_].name, (key)) == 0) {                 \
            (out) = &(arr)[i_];                                     \
            break;                                                  \
         }                                                          \
      }                                                             \
      if (!(out)) {                                                 \
         if ((count) < MH_METRIC_SLOTS - 1) {                       \
            (out) = &(arr)[(count)++];                              \
            bson_strncpy ((out)->name, (key), MH_METRIC_NAME);      \
         } else {                                                   \
            (out) = &(arr)[MH_METRIC_SLOTS - 1];                    \
            if ((count) < MH_METRIC_SLOTS) {                        \
               (count)++;                                           \
               bson_strncpy ((out)->name, "other", MH_METRIC_NAME); \
            }                                                       \
         }                                                          \
      }                                                             \
   } while (0)

void
mh_metrics_op (mh_opid_t op, int64_t t0_us, int32_t retries, mongo_helper_category_t cat)
{
   mh_op_live_t *m;
   int64_t us = mh_mono_us () - t0_us;
   size_t b = 0;

   if ((unsigned) op >= MH_OPID__COUNT) {
      return;
   }
   m = &mh_ops_live[op];
   while (b < MH_HIST_N && us > (int64_t) mh_hist_le_ms[b] * 1000) {
      b++;
   }
   atomic_fetch_add_explicit (&m->calls, 1, memory_order_relaxed);
   if (retries > 0) {
      atomic_fetch_add_explicit (&m->retries, (uint64_t) retries, memory_order_relaxed);
   }
   if (cat == MONGO_HELPER_ERROR_NONE) {
      atomic_fetch_add_explicit (&m->ok, 1, memory_order_relaxed);
   } else if ((int) cat >= 0 && (int) cat < MH_CATEGORIES) {
      atomic_fetch_add_explicit (&m->errors[cat], 1, memory_order_relaxed);
   }
   atomic_fetch_add_explicit (&m->buckets[b], 1, memory_order_relaxed);
   atomic_fetch_add_explicit (&m->sum_us, (uint64_t) (us > 0 ? us : 0), memory_order_relaxed);
}

void
mh_metrics_integrity (mh_opid_t op, int32_t code)
{
   if ((unsigned) op < MH_OPID__COUNT) {
      atomic_fetch_add_explicit (
         &mh_integrity_live[op][code > 0 && code < MH_INTEGRITY_REASONS ? code : 0],
         1,
         memory_order_relaxed);
   }
}

static void
mh_metrics_cmd (const char *command, int kind, int64_t duration_us)
{
   char name[MH_METRIC_NAME];
   mh_cmd_metric_t *m;

   mh_metric_name (command, name);
   pthread_mutex_lock (&mh_m.lock);
   MH_FIND_SLOT (mh_m.cmds, mh_m.n_cmds, name, m);
   if (kind == 1) {
      m->succeeded++;
   } else {
      m->failed++;
   }
   /* A command is counted as started when it finishes: libmongoc builds
    * its "started" event, a copy of the whole command with every inserted
    * document, only for a started callback, which bench/ measured as the
    * largest cost of the helper over raw libmongoc. */
   m->started++;
   m->duration_us += (uint64_t) (duration_us > 0 ? duration_us : 0);
   pthread_mutex_unlock (&mh_m.lock);
}

static void
mh_apm_succeeded (const mongoc_apm_command_succeeded_t *event)
{
   mh_metrics_cmd (mongoc_apm_command_succeeded_get_command_name (event),
                   1,
                   mongoc_apm_command_succeeded_get_duration (event));
}

static void
mh_apm_failed (const mongoc_apm_command_failed_t *event)
{
   mh_metrics_cmd (mongoc_apm_command_failed_get_command_name (event),
                   2,
                   mongoc_apm_command_failed_get_duration (event));
}

/* Called by mh_start_locked() for every new pool, before any client is
 * popped (libmongoc requires that for APM on a pool). */
void
mh_metrics_attach (mongoc_client_pool_t *pool)
{
   mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new ();

   mongoc_apm_set_command_succeeded_cb (cbs, mh_apm_succeeded);
   mongoc_apm_set_command_failed_cb (cbs, mh_apm_failed);
   mongoc_client_pool_set_apm_callbacks (pool, cbs, NULL);
   mongoc_apm_callbacks_destroy (cbs);
}

void
mh_pool_wait_begin (void)
{
   atomic_fetch_add (&mh_pool_waiting, 1);
}

void
mh_pool_wait_end (bool got)
{
   atomic_fetch_sub (&mh_pool_waiting, 1);
   if (got) {
      atomic_fetch_add (&mh_pool_in_use, 1);
      atomic_fetch_add (&mh_pool_checkouts, 1);
   } else {
      atomic_fetch_add (&mh_pool_timeouts, 1);
   }
}

void
mh_pool_returned (void)
{
   atomic_fetch_sub (&mh_pool_in_use, 1);
}

void
mongo_helper_pool_stats (mongo_helper_pool_stats_t *stats)
{
   if (!stats) {
      return;
   }
   stats->in_use = atomic_load (&mh_pool_in_use);
   stats->waiting = atomic_load (&mh_pool_waiting);
   stats->checkouts = atomic_load (&mh_pool_checkouts);
   stats->wait_timeouts = atomic_load (&mh_pool_timeouts);
}

void
mongo_helper_metrics_reset (void)
{
   for (size_t i = 0; i < MH_OPID__COUNT; i++) {
      mh_op_live_t *m = &mh_ops_live[i];
      atomic_store (&m->calls, 0);
      atomic_store (&m->ok, 0);
      atomic_store (&m->retries, 0);
      atomic_store (&m->sum_us, 0);
      for (size_t c = 0; c < MH_CATEGORIES; c++) {
         atomic_store (&m->errors[c], 0);
      }
      for (size_t b = 0; b <= MH_HIST_N; b++) {
         atomic_store (&m->buckets[b], 0);
      }
      for (size_t r = 0; r < MH_INTEGRITY_REASONS; r++) {
         atomic_store (&mh_integrity_live[i][r], 0);
      }
   }
   pthread_mutex_lock (&mh_m.lock);
   memset (mh_m.cmds, 0, sizeof mh_m.cmds);
   mh_m.n_cmds = 0;
   pthread_mutex_unlock (&mh_m.lock);
   atomic_store (&mh_pool_checkouts, 0);
   atomic_store (&mh_pool_timeouts, 0);
   mh_breaker_reset_rejected ();
}

/* A consistent copy, so formatting happens without the lock. */
typedef struct {
   mh_op_metric_t ops[MH_OPID__COUNT];
   size_t n_ops;
   uint64_t integrity[MH_OPID__COUNT][MH_INTEGRITY_REASONS]; /* by opid */
   mh_cmd_metric_t cmds[MH_METRIC_SLOTS];
   size_t n_cmds;
   mongo_helper_pool_stats_t pool;
   mongo_helper_circuit_t circuit;
} mh_snapshot_t;

static mh_snapshot_t *
mh_snapshot_new (void)
{
   mh_snapshot_t *s = bson_malloc0 (sizeof *s);

   for (size_t i = 0; i < MH_OPID__COUNT; i++) {
      for (size_t r = 0; r < MH_INTEGRITY_REASONS; r++) {
         s->integrity[i][r] = atomic_load (&mh_integrity_live[i][r]);
      }
   }
   /* Operations that never ran are left out, as before the table. */
   for (size_t i = 0; i < MH_OPID__COUNT; i++) {
      const mh_op_live_t *m = &mh_ops_live[i];
      mh_op_metric_t *o = &s->ops[s->n_ops];

      o->calls = atomic_load (&m->calls);
      if (o->calls == 0) {
         continue;
      }
      o->name = mh_op_names[i];
      o->ok = atomic_load (&m->ok);
      o->retries = atomic_load (&m->retries);
      o->sum_us = atomic_load (&m->sum_us);
      for (size_t c = 0; c < MH_CATEGORIES; c++) {
         o->errors[c] = atomic_load (&m->errors[c]);
      }
      for (size_t b = 0; b <= MH_HIST_N; b++) {
         o->buckets[b] = atomic_load (&m->buckets[b]);
      }
      s->n_ops++;
   }
   pthread_mutex_lock (&mh_m.lock);
   memcpy (s->cmds, mh_m.cmds, sizeof s->cmds);
   s->n_cmds = mh_m.n_cmds;
   pthread_mutex_unlock (&mh_m.lock);
   mongo_helper_pool_stats (&s->pool);
   mongo_helper_circuit_status (&s->circuit);
   return s;
}

static void
mh_prom_family (bson_string_t *out, const char *name, const char *type, const char *help)
{
   bson_string_append_printf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static char *
mh_prometheus_text (void)
{
   mh_snapshot_t *s = mh_snapshot_new ();
   bson_string_t *o = bson_string_new (NULL);

   mh_prom_family (o,
                   "mongo_helper_operations_total",
                   "counter",
                   "Operations run through the library's execution path.");
   for (size_t i = 0; i < s->n_ops; i++) {
      bson_string_append_printf (o,
                                 "mongo_helper_operations_total{op=\"%s\"} "
                                 "%" PRIu64 "\n",
                                 s->ops[i].name,
                                 s->ops[i].calls);
   }
   mh_prom_family (
      o, "mongo_helper_operation_errors_total", "counter", "Failed operations by error category.");
   for (size_t i = 0; i < s->n_ops; i++) {
      for (int c = 1; c < MH_CATEGORIES; c++) {
         if (s->ops[i].errors[c]) {
            bson_string_append_printf (
               o,
               "mongo_helper_operation_errors_total{op=\"%s\",category=\"%s\"}"
               " %" PRIu64 "\n",
               s->ops[i].name,
               mongo_helper_category_name ((mongo_helper_category_t) c),
               s->ops[i].errors[c]);
         }
      }
   }
   mh_prom_family (o,
                   "mongo_helper_operation_retries_total",
                   "counter",
                   "Extra attempts made after transient failures.");
   for (size_t i = 0; i < s->n_ops; i++) {
      bson_string_append_printf (o,
                                 "mongo_helper_operation_retries_total{op=\"%s\"} %" PRIu64 "\n",
                                 s->ops[i].name,
                                 s->ops[i].retries);
   }
   mh_prom_family (o,
                   "mongo_helper_operation_duration_seconds",
                   "histogram",
                   "Time of a whole operation including retries.");
   for (size_t i = 0; i < s->n_ops; i++) {
      uint64_t cum = 0;
      for (size_t b = 0; b <= MH_HIST_N; b++) {
         cum += s->ops[i].buckets[b];
         if (b < MH_HIST_N) {
            bson_string_append_printf (o,
                                       "mongo_helper_operation_duration_seconds_bucket{op=\"%s\","
                                       "le=\"%d.%03d\"} %" PRIu64 "\n",
                                       s->ops[i].name,
                                       (int) (mh_hist_le_ms[b] / 1000),
                                       (int) (mh_hist_le_ms[b] % 1000),
                                       cum);
         } else {
            bson_string_append_printf (o,
                                       "mongo_helper_operation_duration_seconds_bucket{op=\"%s\","
                                       "le=\"+Inf\"} %" PRIu64 "\n",
                                       s->ops[i].name,
                                       cum);
         }
      }
      bson_string_append_printf (
         o,
         "mongo_helper_operation_duration_seconds_sum{op=\"%s\"} %" PRIu64 ".%06" PRIu64 "\n"
         "mongo_helper_operation_duration_seconds_count{op=\"%s\"} %" PRIu64 "\n",
         s->ops[i].name,
         s->ops[i].sum_us / 1000000u,
         s->ops[i].sum_us % 1000000u,
         s->ops[i].name,
         s->ops[i].calls);
   }
   mh_prom_family (o,
                   "mongo_helper_integrity_failures_total",
                   "counter",
                   "Encrypted records that did not open, by operation and reason.");
   for (size_t i = 0; i < MH_OPID__COUNT; i++) {
      for (int r = 0; r < MH_INTEGRITY_REASONS; r++) {
         if (s->integrity[i][r]) {
            bson_string_append_printf (o,
                                       "mongo_helper_integrity_failures_total{op=\"%s\","
                                       "reason=\"%s\"} %" PRIu64 "\n",
                                       mh_op_names[i],
                                       mh_integrity_reason (r),
                                       s->integrity[i][r]);
         }
      }
   }
   mh_prom_family (
      o,
      "mongo_helper_commands_started_total",
      "counter",
      "Server commands sent, counted when they finish (libmongoc command monitoring).");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (o,
                                 "mongo_helper_commands_started_total{command=\"%s\"} %" PRIu64
                                 "\n",
                                 s->cmds[i].name,
                                 s->cmds[i].started);
   }
   mh_prom_family (
      o, "mongo_helper_commands_succeeded_total", "counter", "Server commands that succeeded.");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (o,
                                 "mongo_helper_commands_succeeded_total{command=\"%s\"} %" PRIu64
                                 "\n",
                                 s->cmds[i].name,
                                 s->cmds[i].succeeded);
   }
   mh_prom_family (o,
                   "mongo_helper_commands_failed_total",
                   "counter",
                   "Server commands that failed (server or network error).");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (o,
                                 "mongo_helper_commands_failed_total{command=\"%s\"} %" PRIu64 "\n",
                                 s->cmds[i].name,
                                 s->cmds[i].failed);
   }
   mh_prom_family (o,
                   "mongo_helper_command_duration_seconds_total",
                   "counter",
                   "Total time of finished server commands.");
   for (size_t i = 0; i < s->n_cmds; i++) {
      bson_string_append_printf (
         o,
         "mongo_helper_command_duration_seconds_total{command=\"%s\"} %" PRIu64 ".%06" PRIu64 "\n",
         s->cmds[i].name,
         s->cmds[i].duration_us / 1000000u,
         s->cmds[i].duration_us % 1000000u);
   }
   mh_prom_family (
      o, "mongo_helper_pool_in_use", "gauge", "Pooled clients taken and not given back.");
   bson_string_append_printf (o, "mongo_helper_pool_in_use %" PRId64 "\n", s->pool.in_use);
   mh_prom_family (o, "mongo_helper_pool_waiting", "gauge", "Threads waiting for a pooled client.");
   bson_string_append_printf (o, "mongo_helper_pool_waiting %" PRId64 "\n", s->pool.waiting);
   mh_prom_family (
      o, "mongo_helper_pool_checkouts_total", "counter", "Clients taken from the pool.");
   bson_string_append_printf (
      o, "mongo_helper_pool_checkouts_total %" PRIu64 "\n", s->pool.checkouts);
   mh_prom_family (o,
                   "mongo_helper_pool_wait_timeouts_total",
                   "counter",
                   "Waits for a pooled client that timed out.");
   bson_string_append_printf (
      o, "mongo_helper_pool_wait_timeouts_total %" PRIu64 "\n", s->pool.wait_timeouts);
   mh_prom_family (
      o, "mongo_helper_circuit_state", "gauge", "Circuit breaker: 0 closed, 1 open, 2 half-open.");
   bson_string_append_printf (o, "mongo_helper_circuit_state %d\n", (int) s->circuit.state);
   mh_prom_family (o,
                   "mongo_helper_circuit_consecutive_failures",
                   "gauge",
                   "Consecutive connection failures seen by the breaker.");
   bson_string_append_printf (
      o, "mongo_helper_circuit_consecutive_failures %d\n", (int) s->circuit.consecutive_failures);
   mh_prom_family (
      o, "mongo_helper_circuit_rejected_total", "counter", "Calls failed fast by an open circuit.");
   bson_string_append_printf (
      o, "mongo_helper_circuit_rejected_total %" PRIu64 "\n", s->circuit.rejected);
   bson_free (s);
   return bson_string_free (o, false);
}

bool
mongo_helper_metrics_prometheus (char *buf,
                                 size_t size,
                                 size_t *needed,
                                 mongo_helper_error_t *error)
{
   char *text = mh_prometheus_text ();
   size_t len = strlen (text);

   mh_error_clear (error);
   if (needed) {
      *needed = len + 1;
   }
   if (!buf || size < len + 1) {
      if (buf && size > 0) {
         buf[0] = '\0';
      }
      bson_free (text);
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_metrics_prometheus: the buffer holds %zu "
                      "bytes but the metrics need %zu: pass a larger buffer",
                      buf ? size : (size_t) 0,
                      len + 1);
   }
   memcpy (buf, text, len + 1);
   bson_free (text);
   return true;
}

char *
mongo_helper_metrics_json_dup (mongo_helper_error_t *error)
{
   mh_snapshot_t *s = mh_snapshot_new ();
   bson_t doc = BSON_INITIALIZER, ops, cmds, child, sub;
   char *json;

   mh_error_clear (error);
   bson_append_document_begin (&doc, "operations", -1, &ops);
   for (size_t i = 0; i < s->n_ops; i++) {
      const mh_op_metric_t *m = &s->ops[i];
      char le[16];

      bson_append_document_begin (&ops, m->name, -1, &child);
      BSON_APPEND_INT64 (&child, "calls", (int64_t) m->calls);
      BSON_APPEND_INT64 (&child, "ok", (int64_t) m->ok);
      BSON_APPEND_INT64 (&child, "retries", (int64_t) m->retries);
      bson_append_document_begin (&child, "errors", -1, &sub);
      for (int c = 1; c < MH_CATEGORIES; c++) {
         if (m->errors[c]) {
            BSON_APPEND_INT64 (&sub,
                               mongo_helper_category_name ((mongo_helper_category_t) c),
                               (int64_t) m->errors[c]);
         }
      }
      bson_append_document_end (&child, &sub);
      BSON_APPEND_INT64 (&child, "latency_us_sum", (int64_t) m->sum_us);
      bson_append_document_begin (&child, "latency_buckets_ms", -1, &sub);
      for (size_t b = 0; b <= MH_HIST_N; b++) {
         if (b < MH_HIST_N) {
            bson_snprintf (le, sizeof le, "%d", (int) mh_hist_le_ms[b]);
         } else {
            bson_strncpy (le, "inf", sizeof le);
         }
         BSON_APPEND_INT64 (&sub, le, (int64_t) m->buckets[b]);
      }
      bson_append_document_end (&child, &sub);
      bson_append_document_end (&ops, &child);
   }
   bson_append_document_end (&doc, &ops);
   bson_append_document_begin (&doc, "integrity_failures", -1, &ops);
   for (size_t i = 0; i < MH_OPID__COUNT; i++) {
      bool any = false;

      for (int r = 0; r < MH_INTEGRITY_REASONS; r++) {
         if (s->integrity[i][r]) {
            if (!any) {
               bson_append_document_begin (&ops, mh_op_names[i], -1, &child);
               any = true;
            }
            BSON_APPEND_INT64 (&child, mh_integrity_reason (r), (int64_t) s->integrity[i][r]);
         }
      }
      if (any) {
         bson_append_document_end (&ops, &child);
      }
   }
   bson_append_document_end (&doc, &ops);
   bson_append_document_begin (&doc, "commands", -1, &cmds);
   for (size_t i = 0; i < s->n_cmds; i++) {
      const mh_cmd_metric_t *m = &s->cmds[i];

      bson_append_document_begin (&cmds, m->name, -1, &child);
      BSON_APPEND_INT64 (&child, "started", (int64_t) m->started);
      BSON_APPEND_INT64 (&child, "succeeded", (int64_t) m->succeeded);
      BSON_APPEND_INT64 (&child, "failed", (int64_t) m->failed);
      BSON_APPEND_INT64 (&child, "duration_us_sum", (int64_t) m->duration_us);
      bson_append_document_end (&cmds, &child);
   }
   bson_append_document_end (&doc, &cmds);
   bson_append_document_begin (&doc, "pool", -1, &child);
   BSON_APPEND_INT64 (&child, "in_use", s->pool.in_use);
   BSON_APPEND_INT64 (&child, "waiting", s->pool.waiting);
   BSON_APPEND_INT64 (&child, "checkouts", (int64_t) s->pool.checkouts);
   BSON_APPEND_INT64 (&child, "wait_timeouts", (int64_t) s->pool.wait_timeouts);
   bson_append_document_end (&doc, &child);
   bson_append_document_begin (&doc, "circuit", -1, &child);
   BSON_APPEND_UTF8 (&child, "state", mongo_helper_circuit_state_name (s->circuit.state));
   BSON_APPEND_INT32 (&child, "consecutive_failures", s->circuit.consecutive_failures);
   BSON_APPEND_INT64 (&child, "opened_at_ms", s->circuit.opened_at_ms);
   BSON_APPEND_INT64 (&child, "rejected", (int64_t) s->circuit.rejected);
   bson_append_document_end (&doc, &child);
   json = bson_as_relaxed_extended_json (&doc, NULL);
   bson_destroy (&doc);
   bson_free (s);
   if (!json) {
      mh_fail (error,
               MONGO_HELPER_ERROR_INTERNAL,
               0,
               "mongo_helper_metrics_json_dup: cannot encode the metrics");
   }
   return json;
}
