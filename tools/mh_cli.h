/*
 * mh_cli.h — what the files of the mongo-helper command share: the command
 * table, the parsed command line, output and error helpers.
 *
 * The tool uses only the library's public API (mongo_helper.h), with the
 * same configuration rules as any application.
 */
#ifndef MH_CLI_H
#define MH_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "mongo_helper.h"

/* Exit status (documented in --help, the man page and the README). */
#define MH_EXIT_OK 0
#define MH_EXIT_FAILED 1 /* the operation failed, or the server is unreachable */
#define MH_EXIT_USAGE 2  /* bad command line */
#define MH_EXIT_CONFIG 3 /* bad or missing configuration */

/* The probe's default wait for the server, in milliseconds. */
#define MH_CLI_DEFAULT_TIMEOUT_MS 5000

#define MH_CLI_MAX_OPTS 16
#define MH_CLI_MAX_ARGS 8

typedef struct mh_cli mh_cli_t;

/* One option of a command: --name [ARG], or -s. */
typedef struct {
   const char *name; /* without "--" */
   char short_name;  /* 0: none */
   const char *arg;  /* NULL for a flag, else its placeholder ("USER") */
   const char *help; /* one line */
} mh_cli_opt_t;

/* One command or sub-command.  Adding a command is one entry in a table
 * (mongo_helper_cli.c for commands, the command's file for sub-commands). */
typedef struct mh_cli_cmd {
   const char *name;
   const char *synopsis;          /* after the name: "[--user USER]" */
   const char *summary;           /* one line, for the list of commands */
   const char *details;           /* further help text, or NULL */
   const mh_cli_opt_t *opts;      /* terminated by {NULL}; NULL: none */
   int (*run) (mh_cli_t *cli);    /* NULL when the command has sub-commands */
   const struct mh_cli_cmd *subs; /* terminated by {NULL}; NULL: none */
} mh_cli_cmd_t;

/* The parsed command line. */
struct mh_cli {
   const char *config_path; /* -c FILE; NULL: the library's rules */
   const char *uri;         /* --uri URI; NULL: the library's rules */
   bool quiet;
   int32_t timeout_ms;
   const mh_cli_cmd_t *cmd;             /* the command (or sub-command) to run */
   const char *path;                    /* its name as typed: "sessions count" */
   const char *values[MH_CLI_MAX_OPTS]; /* per cmd->opts: value, "" for a
                                           flag, NULL when absent */
   char *args[MH_CLI_MAX_ARGS];         /* positional arguments */
   int n_args;
};

/* The command tables of each file. */
extern const mh_cli_cmd_t mh_cli_config_cmd;
extern const mh_cli_cmd_t mh_cli_ping_cmd;
extern const mh_cli_cmd_t mh_cli_status_cmd;
extern const mh_cli_cmd_t mh_cli_stats_cmd;
extern const mh_cli_cmd_t mh_cli_metrics_cmd;
extern const mh_cli_cmd_t mh_cli_ensure_indexes_cmd;
extern const mh_cli_cmd_t mh_cli_sessions_cmd;
extern const mh_cli_cmd_t mh_cli_cache_cmd;
extern const mh_cli_cmd_t mh_cli_events_cmd;

/* The value of option `name` of the running command: its argument, "" for
 * a flag that was given, NULL when absent. */
const char *mh_cli_opt (const mh_cli_t *cli, const char *name);

/* Prints "mongo-helper: CATEGORY: MESSAGE" on stderr and returns the exit
 * status for the category (CONFIG 3, INVALID_ARGUMENT 2, else 1). */
int mh_cli_fail (const mh_cli_t *cli, const mongo_helper_error_t *error);

/* Prints "mongo-helper COMMAND: MESSAGE" and a pointer to the command's
 * help on stderr; returns MH_EXIT_USAGE. */
int mh_cli_usage (const mh_cli_t *cli, const char *fmt, ...) BSON_GNUC_PRINTF (2, 3);

/* Initialises the library from -c / --uri (the application's rules) and
 * pings the deployment within the timeout, so a command fails fast when
 * the server is unreachable.  Returns MH_EXIT_OK or the exit status,
 * having printed the error. */
int mh_cli_connect (const mh_cli_t *cli);

/* Initialises the library only (no server contact).  As mh_cli_connect. */
int mh_cli_init (const mh_cli_t *cli);

/* Prints `doc` as one line of relaxed extended JSON on stdout (unless
 * quiet) and flushes. */
void mh_cli_print_json (const mh_cli_t *cli, const bson_t *doc);

/* Parses a whole number in [min, max]. */
bool mh_cli_parse_int (const char *text, int64_t min, int64_t max, int64_t *out);

/* Parses a duration: a number and a unit, s, m, h or d ("30s", "15m",
 * "1h", "2d"), into milliseconds. */
bool mh_cli_parse_duration (const char *text, int64_t *ms);

/* Milliseconds since the epoch, and a sleep of `ms` milliseconds. */
int64_t mh_cli_now_ms (void);
void mh_cli_sleep_ms (int64_t ms);

#endif
