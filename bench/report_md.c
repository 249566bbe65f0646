/*
 * bench/report_md.c — RESULTS.md (tables, instruction tables) and ratios.png
 * (gnuplot).
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

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
   } else if (!B.instr) {
      strcat (args, " --no-instr"); /* the instruction pass is the default */
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

bool
write_md (const char *path, const char *target_lines)
{
   FILE *f = fopen (path, "w");

   if (!f) {
      fprintf (stderr, "bench: cannot write %s: %s\n", path, strerror (errno));
      return false;
   }
   fprintf (f, "# mongo_helper benchmark results\n\n");
   fprintf (f,
            "Generated by `%s` (bench/*.c, bench/bench_pymongo.py). Do not edit by hand.\n\n",
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

bool
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
