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
 * in bench/instr.c); with it, the helper/raw targets are judged on
 * instructions.
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
 *
 * Files (bench/):
 *   bench.h            what crosses files: run configuration B, side/status/
 *                      kind, run_t, task_t, task_res_t, stat_t, constants
 *                      and targets, prototypes
 *   bench.c            this file: machine and server info, usage, argument
 *                      parsing, set-up and teardown of the run, main()
 *   data.c             deterministic data generators and the data
 *                      fingerprint (mirrored in bench_pymongo.py)
 *   common.c           clocks and memory probes; failure reporting, the raw
 *                      side's pool, collection drop/seed used by the tasks
 *   tasks_crud.c       tasks: run command, find one, insert one (small,
 *                      large, invalid UTF-8)
 *   tasks_bulk.c       tasks: find many, insert-many, bulk, aggregation,
 *                      streaming, GridFS
 *   tasks_web.c        tasks: sessions (clear and sealed), cache get/set,
 *                      event logging (synchronous and buffered)
 *   tasks_concurrent.c task: the concurrent mix on N threads
 *   tasks.c            the task table TASKS, NTASKS and the results RES
 *   run.c              the pymongo coprocess and the CPU/wall pass
 *   instr.c            the instruction pass (callgrind) and its child
 *   report.c           targets, why a target was missed, results.json
 *   report_md.c        RESULTS.md and ratios.png
 *   bench_pymongo.py   the pymongo side
 */
#include "bench.h"

const char *side_name[SIDE_N] = {"helper", "raw", "pymongo"};

struct bench_config B;

char MACHINE[512], STARTED[64];
double LOAD0, LOAD1, DURATION;

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
      /* The binary is build/mh_bench and the script bench/bench_pymongo.py:
       * look beside the binary's directory, then beside the binary. */
      const char *slash = strrchr (argv[0], '/');
      int dir = slash ? (int) (slash - argv[0] + 1) : 0;

      snprintf (script_buf, sizeof script_buf, "%.*s../bench/bench_pymongo.py", dir, argv[0]);
      if (access (script_buf, R_OK) != 0) {
         snprintf (script_buf, sizeof script_buf, "%.*sbench_pymongo.py", dir, argv[0]);
      }
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
