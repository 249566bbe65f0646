/*
 * bench/instr.c — the instruction pass: every task's timed loop under callgrind,
 * the child process side and the parent reading the dumps.
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

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
int
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
const char *const AG_KEY[AG_N] = {"command_monitoring",
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

double INSTR_SECS;

void
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
