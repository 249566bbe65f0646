/*
 * command.c — commands on the default (or a named) database through the
 * execution path, and the per-call time limit (layer 7).
 */
#include "mh_private.h"

typedef struct {
   const bson_t *command;
   const bson_t *opts;
   bool read;
   bson_t *reply; /* always initialised */
} mh_command_ctx_t;

static bool
mh_command_op (mh_attempt_t *a, void *ctx)
{
   mh_command_ctx_t *c = ctx;
   bool ok;

   bson_destroy (c->reply); /* the driver initialises it again */
   /* The client's command_simple: the database's (and the _with_opts
    * forms) parse options this path never has and compare the command's
    * name against libmongoc's lists, ~460 instructions a call. */
   ok = c->read
           ? mongoc_database_read_command_with_opts (
                a->db, c->command, NULL, c->opts, c->reply, &a->error)
           : mongoc_client_command_simple (
                a->client, mongoc_database_get_name (a->db), c->command, NULL, c->reply, &a->error);
   if (!ok) {
      mh_attempt_labels (a, c->reply);
   }
   return ok;
}

/* The command's name (its first key), or NULL after an INVALID_ARGUMENT. */
static const char *
mh_command_name (const char *fn, const bson_t *command, mongo_helper_error_t *error)
{
   bson_iter_t it;

   if (!command || bson_empty (command) || !bson_iter_init (&it, command) ||
       !bson_iter_next (&it)) {
      mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: the command is NULL or empty", fn);
      return NULL;
   }
   return mh_doc_check (fn, "command", command, error) ? bson_iter_key (&it) : NULL;
}

static bool
mh_command_run (mh_opid_t op,
                unsigned flags,
                const char *fn,
                const char *database,
                const bson_t *command,
                const bson_t *opts,
                bson_t *reply,
                mongo_helper_error_t *error)
{
   mh_call_t call = {op, flags, database, NULL, NULL};
   mh_command_ctx_t ctx = {command, opts, flags == MH_OP_READ, reply};
   bson_t scratch = BSON_INITIALIZER;
   bool ok;

   mh_error_clear (error);
   if (reply) {
      bson_init (reply);
   }
   call.detail = mh_command_name (fn, command, error);
   if (!call.detail || !mh_check_db_name (fn, database, error)) {
      return false;
   }
   if (!reply) {
      ctx.reply = &scratch;
   }
   ok = mh_run (&call, mh_command_op, &ctx, error);
   bson_destroy (&scratch);
   return ok;
}

bool
mongo_helper_command (const bson_t *command, bson_t *reply, mongo_helper_error_t *error)
{
   return mh_command_run (
      MH_OPID_COMMAND, MH_OP_WRITE, "mongo_helper_command", NULL, command, NULL, reply, error);
}

bool
mh_command_on (const char *database,
               const bson_t *command,
               bson_t *reply,
               mongo_helper_error_t *error)
{
   return mh_command_run (
      MH_OPID_COMMAND, MH_OP_WRITE, "command", database, command, NULL, reply, error);
}

/* -- per-call time limit and retried reads -- */

bool
mongo_helper_opts_set_max_time (bson_t *opts, int32_t max_time_ms, mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!opts || max_time_ms <= 0) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_opts_set_max_time: %s",
                      opts ? "the limit must be a positive number of ms" : "opts is NULL");
   }
   if (bson_has_field (opts, "maxTimeMS")) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mongo_helper_opts_set_max_time: opts already has "
                      "maxTimeMS: set it once");
   }
   if (!BSON_APPEND_INT32 (opts, "maxTimeMS", max_time_ms)) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INTERNAL, 0, "mongo_helper_opts_set_max_time: cannot append");
   }
   return true;
}

bool
mongo_helper_read_command (const bson_t *command,
                           int32_t max_time_ms,
                           bson_t *reply,
                           mongo_helper_error_t *error)
{
   bson_t opts = BSON_INITIALIZER;
   bool ok;

   if (max_time_ms > 0) {
      BSON_APPEND_INT32 (&opts, "maxTimeMS", max_time_ms);
   }
   ok = mh_command_run (MH_OPID_READ_COMMAND,
                        MH_OP_READ,
                        "mongo_helper_read_command",
                        NULL,
                        command,
                        &opts,
                        reply,
                        error);
   bson_destroy (&opts);
   return ok;
}
