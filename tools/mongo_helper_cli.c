/*
 * mongo_helper_cli.c — the mongo-helper command: the command line, help,
 * errors and connection shared by every command (see mh_cli.h).
 *
 *   mongo-helper [GLOBAL OPTIONS] COMMAND [SUB-COMMAND] [OPTIONS] [ARGS]
 *
 * Commands live in cli_config.c (config), cli_server.c (ping, status,
 * stats, metrics), cli_store.c (ensure-indexes, sessions, cache) and
 * cli_events.c (events).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mh_cli.h"

static const char *const prog = "mongo-helper";

/* The commands, in the order --help lists them. */
static const mh_cli_cmd_t *const commands[] = {&mh_cli_config_cmd,
                                               &mh_cli_ping_cmd,
                                               &mh_cli_status_cmd,
                                               &mh_cli_stats_cmd,
                                               &mh_cli_ensure_indexes_cmd,
                                               &mh_cli_sessions_cmd,
                                               &mh_cli_cache_cmd,
                                               &mh_cli_events_cmd,
                                               &mh_cli_metrics_cmd};
#define N_COMMANDS (sizeof commands / sizeof *commands)

/* Accepted before and after the command. */
static const mh_cli_opt_t global_opts[] = {
   {"config", 'c', "FILE", "INI file (else $MONGO_HELPER_CONFIG, else conf/mongo_helper.ini)"},
   {"uri", 0, "URI", "MongoDB URI; wins over every other source, as in the library"},
   {"timeout", 0, "MS", "how long to wait for the server (default 5000)"},
   {"quiet", 'q', NULL, "print nothing but errors"},
   {"help", 'h', NULL, "show help (also: mongo-helper help COMMAND)"},
   {"version", 0, NULL, "print the version, and libmongoc's"},
   {NULL, 0, NULL, NULL}};

/* ---- help ------------------------------------------------------------ */

static void
print_opts (FILE *out, const mh_cli_opt_t *opts)
{
   for (; opts && opts->name; opts++) {
      char left[64];

      snprintf (left,
                sizeof left,
                "%s%c%s--%s%s%s",
                opts->short_name ? "-" : "",
                opts->short_name ? opts->short_name : ' ',
                opts->short_name ? ", " : " ",
                opts->name,
                opts->arg ? " " : "",
                opts->arg ? opts->arg : "");
      fprintf (out, "  %-30s %s\n", opts->short_name ? left : left + 2, opts->help);
   }
}

static void
print_main_help (FILE *out)
{
   fprintf (out,
            "usage: %s [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n\n"
            "Inspect and operate what an application using mongo_helper sees, with the\n"
            "same configuration rules (URI, environment, INI file).\n\n"
            "Commands:\n",
            prog);
   for (size_t i = 0; i < N_COMMANDS; i++) {
      const mh_cli_cmd_t *c = commands[i];

      if (c->subs) {
         for (const mh_cli_cmd_t *s = c->subs; s->name; s++) {
            char name[64];
            snprintf (name, sizeof name, "%s %s", c->name, s->name);
            fprintf (out, "  %-26s %s\n", name, s->summary);
         }
      } else {
         fprintf (out, "  %-26s %s\n", c->name, c->summary);
      }
   }
   fprintf (out, "\nGlobal options:\n");
   print_opts (out, global_opts);
   fprintf (out,
            "\nExit status: 0 ok, 1 failed or unreachable, 2 usage error, "
            "3 configuration error.\n"
            "See '%s help COMMAND' and mongo-helper(1).\n",
            prog);
}

static void
print_cmd_help (FILE *out, const char *path, const mh_cli_cmd_t *c)
{
   if (c->subs) {
      fprintf (
         out, "usage: %s %s SUB-COMMAND ...\n\n%s.\n\nSub-commands:\n", prog, path, c->summary);
      for (const mh_cli_cmd_t *s = c->subs; s->name; s++) {
         fprintf (out, "  %s %s %s %s\n      %s.\n", prog, path, s->name, s->synopsis, s->summary);
      }
      fprintf (out, "\nSee '%s help %s SUB-COMMAND'.\n", prog, path);
      return;
   }
   fprintf (out,
            "usage: %s %s%s%s\n\n%s.\n",
            prog,
            path,
            *c->synopsis ? " " : "",
            c->synopsis,
            c->summary);
   if (c->details) {
      fprintf (out, "\n%s\n", c->details);
   }
   if (c->opts && c->opts->name) {
      fprintf (out, "\nOptions:\n");
      print_opts (out, c->opts);
   }
   fprintf (out,
            "\nGlobal options (-c FILE, --uri URI, --timeout MS, -q) apply too; see "
            "'%s --help'.\n",
            prog);
}

/* ---- shared helpers --------------------------------------------------- */

const char *
mh_cli_opt (const mh_cli_t *cli, const char *name)
{
   for (int i = 0; cli->cmd->opts && cli->cmd->opts[i].name; i++) {
      if (strcmp (cli->cmd->opts[i].name, name) == 0) {
         return cli->values[i];
      }
   }
   return NULL;
}

int
mh_cli_fail (const mh_cli_t *cli, const mongo_helper_error_t *error)
{
   (void) cli;
   fprintf (
      stderr, "%s: %s: %s\n", prog, mongo_helper_category_name (error->category), error->message);
   switch (error->category) {
   case MONGO_HELPER_ERROR_CONFIG:
      return MH_EXIT_CONFIG;
   case MONGO_HELPER_ERROR_INVALID_ARGUMENT:
      return MH_EXIT_USAGE;
   default:
      return MH_EXIT_FAILED;
   }
}

int
mh_cli_usage (const mh_cli_t *cli, const char *fmt, ...)
{
   va_list ap;

   fprintf (
      stderr, "%s%s%s: ", prog, cli && cli->path ? " " : "", cli && cli->path ? cli->path : "");
   va_start (ap, fmt);
   vfprintf (stderr, fmt, ap);
   va_end (ap);
   fprintf (stderr,
            "\nTry '%s help%s%s'.\n",
            prog,
            cli && cli->path ? " " : "",
            cli && cli->path ? cli->path : "");
   return MH_EXIT_USAGE;
}

int
mh_cli_init (const mh_cli_t *cli)
{
   mongo_helper_error_t err;
   bool ok;

   /* With both, the file still supplies the settings: the library reads
    * it through MONGO_HELPER_CONFIG when it is given a URI. */
   if (cli->uri && cli->config_path && setenv ("MONGO_HELPER_CONFIG", cli->config_path, 1) != 0) {
      fprintf (stderr, "%s: cannot set MONGO_HELPER_CONFIG: %s\n", prog, strerror (errno));
      return MH_EXIT_FAILED;
   }
   ok = cli->uri ? mongo_helper_init_uri (cli->uri, &err)
                 : mongo_helper_init (cli->config_path, &err);
   return ok ? MH_EXIT_OK : mh_cli_fail (cli, &err);
}

int
mh_cli_connect (const mh_cli_t *cli)
{
   mongo_helper_error_t err;
   int rc = mh_cli_init (cli);

   if (rc == MH_EXIT_OK && !mongo_helper_ping (cli->timeout_ms, &err)) {
      rc = mh_cli_fail (cli, &err);
   }
   return rc;
}

void
mh_cli_print_json (const mh_cli_t *cli, const bson_t *doc)
{
   char *json;

   if (cli->quiet) {
      return;
   }
   json = bson_as_relaxed_extended_json (doc, NULL);
   printf ("%s\n", json);
   fflush (stdout);
   bson_free (json);
}

bool
mh_cli_parse_int (const char *text, int64_t min, int64_t max, int64_t *out)
{
   char *end;
   long long v;

   if (!text || !*text) {
      return false;
   }
   errno = 0;
   v = strtoll (text, &end, 10);
   if (errno || *end || v < min || v > max) {
      return false;
   }
   *out = v;
   return true;
}

bool
mh_cli_parse_duration (const char *text, int64_t *ms)
{
   static const struct {
      char unit;
      int64_t ms;
   } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
   size_t len = text ? strlen (text) : 0;
   char number[32];
   int64_t n;

   if (len < 2 || len >= sizeof number) {
      return false;
   }
   memcpy (number, text, len - 1);
   number[len - 1] = '\0';
   for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
      if (text[len - 1] == units[i].unit) {
         if (!mh_cli_parse_int (number, 1, INT64_MAX / units[i].ms, &n)) {
            return false;
         }
         *ms = n * units[i].ms;
         return true;
      }
   }
   return false;
}

int64_t
mh_cli_now_ms (void)
{
   struct timespec ts;

   clock_gettime (CLOCK_REALTIME, &ts);
   return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
mh_cli_sleep_ms (int64_t ms)
{
   struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000L};

   while (ms > 0 && nanosleep (&ts, &ts) != 0 && errno == EINTR) {
   }
}

/* ---- the command line ------------------------------------------------- */

/* Finds `arg` ("--name", "--name=value", "-x") among `opts`; *value
 * points at an inline "=value" if any. */
static int
find_opt (const mh_cli_opt_t *opts, const char *arg, const char **inline_value)
{
   *inline_value = NULL;
   for (int i = 0; opts && opts[i].name; i++) {
      size_t len = strlen (opts[i].name);

      if (arg[1] == '-' && strncmp (arg + 2, opts[i].name, len) == 0 &&
          (arg[2 + len] == '\0' || arg[2 + len] == '=')) {
         *inline_value = arg[2 + len] == '=' ? arg + 3 + len : NULL;
         return i;
      }
      if (arg[1] != '-' && opts[i].short_name && arg[1] == opts[i].short_name && arg[2] == '\0') {
         return i;
      }
   }
   return -1;
}

typedef enum { PARSED, SHOW_HELP, SHOW_VERSION, PARSE_ERROR } parse_t;

/* Takes the option at argv[*i] (global or the command's), advancing *i
 * past its argument.  Returns false after printing a usage error. */
static bool
take_opt (mh_cli_t *cli, int argc, char **argv, int *i, parse_t *what)
{
   const char *arg = argv[*i], *inline_value, *value = "";
   const mh_cli_opt_t *opts = cli->cmd ? cli->cmd->opts : NULL;
   int k = find_opt (opts, arg, &inline_value);
   const mh_cli_opt_t *o = k >= 0 ? &opts[k] : NULL;
   int g = -1;

   if (!o && (g = find_opt (global_opts, arg, &inline_value)) >= 0) {
      o = &global_opts[g];
   }
   if (!o) {
      mh_cli_usage (cli, "unknown option '%s'", arg);
      return false;
   }
   if (o->arg) {
      if (inline_value) {
         value = inline_value;
      } else if (*i + 1 < argc) {
         value = argv[++*i];
      } else {
         mh_cli_usage (cli, "option --%s needs a value (%s)", o->name, o->arg);
         return false;
      }
   } else if (inline_value) {
      mh_cli_usage (cli, "option --%s takes no value", o->name);
      return false;
   }
   if (k >= 0) {
      cli->values[k] = value;
   } else if (strcmp (o->name, "config") == 0) {
      cli->config_path = value;
   } else if (strcmp (o->name, "uri") == 0) {
      cli->uri = value;
   } else if (strcmp (o->name, "quiet") == 0) {
      cli->quiet = true;
   } else if (strcmp (o->name, "help") == 0) {
      *what = SHOW_HELP;
   } else if (strcmp (o->name, "version") == 0) {
      *what = SHOW_VERSION;
   } else if (strcmp (o->name, "timeout") == 0) {
      int64_t ms;
      if (!mh_cli_parse_int (value, 1, INT32_MAX, &ms)) {
         mh_cli_usage (cli, "--timeout '%s' is not a positive number of milliseconds", value);
         return false;
      }
      cli->timeout_ms = (int32_t) ms;
   }
   return true;
}

static const mh_cli_cmd_t *
find_cmd (const mh_cli_cmd_t *const *list, size_t n, const mh_cli_cmd_t *subs, const char *name)
{
   for (size_t i = 0; list && i < n; i++) {
      if (strcmp (list[i]->name, name) == 0) {
         return list[i];
      }
   }
   for (; subs && subs->name; subs++) {
      if (strcmp (subs->name, name) == 0) {
         return subs;
      }
   }
   return NULL;
}

static parse_t
parse (mh_cli_t *cli, int argc, char **argv, char *path, size_t path_size)
{
   parse_t what = PARSED;
   bool options_done = false;

   path[0] = '\0';
   for (int i = 1; i < argc; i++) {
      const char *a = argv[i];

      if (!options_done && strcmp (a, "--") == 0) {
         options_done = true;
      } else if (!options_done && a[0] == '-' && a[1]) {
         if (!take_opt (cli, argc, argv, &i, &what)) {
            return PARSE_ERROR;
         }
      } else if (!cli->cmd || cli->cmd->subs) {
         /* A command, then (for sessions, cache, events) a sub-command. */
         const mh_cli_cmd_t *c = cli->cmd ? find_cmd (NULL, 0, cli->cmd->subs, a)
                                          : find_cmd (commands, N_COMMANDS, NULL, a);
         if (!c) {
            mh_cli_usage (cli, "'%s' is not a command", a);
            return PARSE_ERROR;
         }
         cli->cmd = c;
         snprintf (path + strlen (path), path_size - strlen (path), "%s%s", path[0] ? " " : "", a);
         cli->path = path;
      } else if (cli->n_args < MH_CLI_MAX_ARGS) {
         cli->args[cli->n_args++] = argv[i];
      } else {
         mh_cli_usage (cli, "too many arguments");
         return PARSE_ERROR;
      }
   }
   return what;
}

/* "help [COMMAND [SUB-COMMAND]]" */
static int
run_help (int argc, char **argv, int first)
{
   const mh_cli_cmd_t *c = NULL;
   char path[64] = "";

   for (int i = first; i < argc; i++) {
      const mh_cli_cmd_t *next =
         c ? find_cmd (NULL, 0, c->subs, argv[i]) : find_cmd (commands, N_COMMANDS, NULL, argv[i]);
      if (!next) {
         fprintf (
            stderr, "%s help: '%s' is not a command\nTry '%s --help'.\n", prog, argv[i], prog);
         return MH_EXIT_USAGE;
      }
      c = next;
      snprintf (
         path + strlen (path), sizeof path - strlen (path), "%s%s", path[0] ? " " : "", argv[i]);
   }
   if (c) {
      print_cmd_help (stdout, path, c);
   } else {
      print_main_help (stdout);
   }
   return MH_EXIT_OK;
}

int
main (int argc, char **argv)
{
   mh_cli_t cli;
   char path[64];
   parse_t what;
   int rc;

   memset (&cli, 0, sizeof cli);
   cli.timeout_ms = MH_CLI_DEFAULT_TIMEOUT_MS;
   /* "help" in the place of the command, after any global options. */
   for (int i = 1; i < argc; i++) {
      const char *inline_value;
      int g = find_opt (global_opts, argv[i], &inline_value);

      if (strcmp (argv[i], "help") == 0) {
         return run_help (argc, argv, i + 1);
      }
      if (argv[i][0] != '-' || g < 0) {
         break;
      }
      i += global_opts[g].arg && !inline_value; /* skip its value */
   }
   what = parse (&cli, argc, argv, path, sizeof path);
   if (what == PARSE_ERROR) {
      return MH_EXIT_USAGE;
   }
   if (what == SHOW_VERSION) {
      printf ("%s %s (libmongoc %s)\n", prog, MONGO_HELPER_VERSION_STRING, mongoc_get_version ());
      return MH_EXIT_OK;
   }
   if (what == SHOW_HELP) {
      if (cli.cmd) {
         print_cmd_help (stdout, cli.path, cli.cmd);
      } else {
         print_main_help (stdout);
      }
      return MH_EXIT_OK;
   }
   if (!cli.cmd) {
      print_main_help (stderr);
      return MH_EXIT_USAGE;
   }
   if (!cli.cmd->run) {
      return mh_cli_usage (&cli, "needs a sub-command");
   }
   rc = cli.cmd->run (&cli);
   mongo_helper_shutdown ();
   return rc;
}
