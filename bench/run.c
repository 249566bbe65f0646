/*
 * bench/run.c — the pymongo coprocess and the CPU/wall pass (runs, repetitions,
 * statistics).
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- The pymongo coprocess ------------------------------------------- */

/* Started before libmongoc is initialised (fork before any driver
 * thread); talks one line per request, one JSON line per reply. */
bool
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
bool
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

void
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

double
bson_num (const bson_t *b, const char *key, double dflt)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, b, key) &&
       (BSON_ITER_HOLDS_NUMBER (&it) || BSON_ITER_HOLDS_BOOL (&it))) {
      return bson_iter_as_double (&it);
   }
   return dflt;
}

const char *
bson_str (const bson_t *b, const char *key)
{
   bson_iter_t it;

   if (bson_iter_init_find (&it, b, key) && BSON_ITER_HOLDS_UTF8 (&it)) {
      return bson_iter_utf8 (&it, NULL);
   }
   return "";
}

/* ---- Measurement ----------------------------------------------------- */

run_fn
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

stat_t
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

stat_t
stats_long (const long *v, int n)
{
   double d[MAX_REPS];

   for (int k = 0; k < n; k++) {
      d[k] = (double) v[k];
   }
   return stats (d, n);
}

bool
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
void
task_ops_param (const task_t *t, long *ops, long *param)
{
   *ops = B.quick ? t->ops_quick : t->ops_full;
   *param = B.quick ? t->param_quick : t->param_full;
   if (strcmp (t->name, "stream") == 0) {
      *ops = B.stream_docs;
      *param = STREAM_CHUNK;
   }
}

void
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
