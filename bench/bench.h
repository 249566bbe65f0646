/*
 * bench/bench.h — what the benchmark harness's files share: the run
 * configuration (B), tasks, runs and results, targets, and the functions
 * called across files.  See bench/bench.c for the list of files.
 */
#ifndef MH_BENCH_H
#define MH_BENCH_H

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
extern const char *side_name[SIDE_N];

typedef enum { ST_OK = 0, ST_NA, ST_FAIL } status_t;

/* Which target applies to the helper/raw ratio. */
typedef enum { KIND_SINGLE, KIND_BULK, KIND_HELPER, KIND_CONCURRENT } kind_t;

extern struct bench_config {
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

typedef bson_t *(*gen_fn) (long i);

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

typedef struct {
   double med, min, max;
   bool ok;
} stat_t;

/* Instruction pass (bench/instr.c) */
#define INSTR_DEFAULT_REPS 2  /* counted runs per task in each child process (quick: 1) */
#define INSTR_DEFAULT_PROCS 2 /* child processes per side, one after the other */
#define INSTR_MAX_PROCS 8
#define INSTR_STREAM_DOCS 2000
#define INSTR_HEARTBEAT_MS 600000

/* Where the helper's extra instructions go: the inclusive cost of the
 * calls into a few groups of functions (calls from outside the group),
 * read from one dump per side.  Approximate: callgrind keeps caller/callee
 * pairs, not whole call paths, so a group called from inside another is
 * counted in both (small here: the name checks' UTF-8 validation). */
enum { AG_APM, AG_HANDLE, AG_BOOK, AG_UTF8, AG_N };
_Static_assert(AG_N == 4, "task_res_t.attr has 4 groups");
extern const char *const AG_KEY[AG_N];

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
/* The targets for the instruction ratio helper/raw. */
#define TARGET_IR_SINGLE 1.03
#define TARGET_IR_BULK 1.01

extern const task_t TASKS[];
extern const size_t NTASKS;
extern task_res_t RES[];

extern mongo_helper_sessions_t *H_SESSIONS;
extern mongo_helper_cache_t *H_CACHE;
extern mongo_helper_eventlog_t *H_EVENTS;
extern mongo_helper_sessions_t *H_SEALED[2];
extern double INSTR_SECS;
extern char MACHINE[512], STARTED[64];
extern double LOAD0, LOAD1, DURATION;

/* bench/data.c */
bson_t *gen_flat (long i, bool with_id);
bson_t *gen_nested (long i, bool with_id);
bson_t *gen_large_ex (long i, bool bad_utf8);
bson_t *gen_large (long i);
bson_t *gen_meta (long i, int32_t *user_id, const char **type);
uint8_t *gen_blob (size_t len);
void data_fingerprint (char *out, size_t out_size);

/* bench/common.c */
double now_s (void);
double cpu_s (int who);
double thread_cpu_s (void);
long rss_kb (void);
void hwm_reset (void);
long hwm_kb (void);
int64_t now_ms (void);
status_t fail (run_t *r, const char *fmt, ...);
status_t fail_bson (run_t *r, const char *what, const bson_error_t *e);
status_t fail_mh (run_t *r, const char *what, const mongo_helper_error_t *e);
void coll_name (char *out, size_t n, const char *what, side_t side);
mongoc_client_t *raw_pop (void);
void raw_push (mongoc_client_t *c);
bool admin_drop (const char *name, char *err, size_t err_size);
bson_t *gen_flat_id (long i);
bson_t *gen_nested_id (long i);
bool admin_seed (const char *name, long n, gen_fn gen, char *err, size_t err_size);

/* bench/tasks_crud.c */
status_t helper_run_command (run_t *r);
status_t raw_run_command (run_t *r);
bool setup_flat (char *err, size_t err_size);
bool op_find_one (mongoc_collection_t *coll, int32_t id, bson_error_t *e);
bool h_find_one (int32_t id, char *err, size_t err_size);
status_t helper_find_one (run_t *r);
status_t raw_find_one (run_t *r);
bool prep_insert_small (side_t side, char *err, size_t err_size);
bool prep_insert_large (side_t side, char *err, size_t err_size);
status_t helper_insert_small (run_t *r);
status_t raw_insert_small (run_t *r);
status_t helper_insert_large (run_t *r);
status_t raw_insert_large (run_t *r);
bool prep_insert_invalid (side_t side, char *err, size_t err_size);
status_t helper_insert_invalid (run_t *r);
status_t raw_insert_invalid (run_t *r);

/* bench/tasks_bulk.c */
bool setup_nested (char *err, size_t err_size);
status_t helper_find_many (run_t *r);
status_t raw_find_many (run_t *r);
bool prep_many_small (side_t side, char *err, size_t err_size);
bool prep_many_large (side_t side, char *err, size_t err_size);
status_t helper_many_small (run_t *r);
status_t raw_many_small (run_t *r);
status_t helper_many_large (run_t *r);
status_t raw_many_large (run_t *r);
bool prep_bulk (side_t side, char *err, size_t err_size);
status_t helper_bulk (run_t *r);
status_t raw_bulk (run_t *r);
status_t helper_aggregate (run_t *r);
status_t raw_aggregate (run_t *r);
bool setup_stream (char *err, size_t err_size);
status_t helper_stream (run_t *r);
status_t raw_stream (run_t *r);
bool prep_gridfs (side_t side, char *err, size_t err_size);
status_t helper_gridfs (run_t *r);
status_t raw_gridfs (run_t *r);

/* bench/tasks_web.c */
bool setup_sessions (char *err, size_t err_size);
bool prep_sessions (side_t side, char *err, size_t err_size);
status_t helper_session (run_t *r);
status_t raw_session (run_t *r);
bool setup_sealed (char *err, size_t err_size);
bool prep_sealed (side_t side, char *err, size_t err_size);
status_t helper_sealed (run_t *r);
status_t clear_sealed (run_t *r);
bool setup_cache (char *err, size_t err_size);
status_t helper_cache_get (run_t *r);
status_t raw_cache_get (run_t *r);
status_t helper_cache_set (run_t *r);
status_t raw_cache_set (run_t *r);
bool prep_events (side_t side, char *err, size_t err_size);
status_t helper_event_sync (run_t *r);
status_t raw_event_sync (run_t *r);
status_t count_docs (const char *name, long expected, run_t *r);
status_t helper_event_buffered (run_t *r);
status_t raw_event_buffered (run_t *r);

/* bench/tasks_concurrent.c */
bool setup_conc (char *err, size_t err_size);
bool prep_conc (side_t side, char *err, size_t err_size);
status_t helper_conc (run_t *r);
status_t raw_conc (run_t *r);

/* bench/run.c */
bool py_start (char *err, size_t err_size);
bool py_call (const char *line, bson_t *reply, char *err, size_t err_size);
void py_stop (void);
double bson_num (const bson_t *b, const char *key, double dflt);
const char *bson_str (const bson_t *b, const char *key);
run_fn side_fn (const task_t *t, side_t side);
stat_t stats (const double *v, int n);
stat_t stats_long (const long *v, int n);
bool in_list (const char *list, const char *name);
void task_ops_param (const task_t *t, long *ops, long *param);
void run_task (task_res_t *tr);

/* bench/instr.c */
int instr_child (void);
void instr_pass (void);

/* bench/report.c */
double ir_limit (const task_t *t);
stat_t instr_ratio (const task_res_t *tr);
double instr_spread_pct (const task_res_t *tr, side_t s);
bool instr_extra (const task_res_t *tr, double extra[AG_N + 1], double *total);
int targets (bson_string_t *out);
const char *status_name (status_t st);
const char *mode_name (void);
bool write_json (const char *path);

/* bench/report_md.c */
bool write_md (const char *path, const char *target_lines);
bool write_chart (const char *dir);

#endif /* MH_BENCH_H */
