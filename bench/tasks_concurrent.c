/*
 * bench/tasks_concurrent.c — the concurrent mix on N threads.
 * Part of the benchmark harness; see bench/bench.c.
 */
#include "bench.h"

/* ---- Tasks: concurrent mix on N threads ------------------------------ */

bool
setup_conc (char *err, size_t err_size)
{
   static bool done;
   mongoc_client_t *c;
   mongoc_collection_t *coll;
   bson_t *docs[100];
   bson_error_t e;
   bool ok;

   if (done) {
      return true;
   }
   if (!setup_flat (err, err_size) || !admin_drop ("bench_conc_upd", err, err_size)) {
      return false;
   }
   for (int k = 0; k < 100; k++) {
      docs[k] = BCON_NEW ("_id", BCON_INT32 (k), "n", BCON_INT32 (0));
   }
   c = raw_pop ();
   coll = mongoc_client_get_collection (c, B.db, "bench_conc_upd");
   ok = mongoc_collection_insert_many (coll, (const bson_t **) docs, 100, NULL, NULL, &e);
   if (!ok) {
      snprintf (err, err_size, "seeding bench_conc_upd: %s", e.message);
   }
   for (int k = 0; k < 100; k++) {
      bson_destroy (docs[k]);
   }
   mongoc_collection_destroy (coll);
   raw_push (c);
   done = ok;
   return ok;
}

bool
prep_conc (side_t side, char *err, size_t err_size)
{
   char name[64];

   coll_name (name, sizeof name, "conc", side);
   return admin_drop (name, err, err_size);
}

/* The mix, by operation number: 2/4 find one by _id, 1/4 insert one small
 * document, 1/4 update one ($inc) — a web request's typical reads/writes. */
static bool
op_mix (mongoc_collection_t *flat,
        mongoc_collection_t *ins,
        mongoc_collection_t *upd,
        long j,
        bson_error_t *e)
{
   switch (j % 4) {
   case 0:
   case 1:
      return op_find_one (flat, (int32_t) ((j * 7919) % B.flat_coll_n), e);
   case 2:
      return mongoc_collection_insert_one (ins, B.flat[j % B.flat_n], NULL, NULL, e);
   default: {
      bson_t *sel = BCON_NEW ("_id", BCON_INT32 ((int32_t) (j % 100)));
      bson_t *inc = BCON_NEW ("$inc", "{", "n", BCON_INT32 (1), "}");
      bool ok = mongoc_collection_update_one (upd, sel, inc, NULL, NULL, e);
      bson_destroy (sel);
      bson_destroy (inc);
      return ok;
   }
   }
}

typedef struct {
   side_t side;
   long first, count;
   bool ok;
   char err[300];
   pthread_t thread;
} conc_arg_t;

static void *
conc_thread (void *arg)
{
   conc_arg_t *a = arg;
   char name[64];
   bson_error_t e;

   coll_name (name, sizeof name, "conc", a->side);
   a->ok = true;
   if (a->side == SIDE_HELPER) {
      /* N application threads each calling the per-op API is what a web
       * backend does.  (mongo_helper_run_concurrent() is the other shape,
       * a list of operations run K at once; it has no raw/pymongo twin.) */
      for (long j = a->first; j < a->first + a->count && a->ok; j++) {
         mongo_helper_error_t me;

         switch (j % 4) {
         case 0:
         case 1:
            a->ok = h_find_one ((int32_t) ((j * 7919) % B.flat_coll_n), a->err, sizeof a->err);
            break;
         case 2:
            if (!mongo_helper_insert_one (NULL, name, B.flat[j % B.flat_n], NULL, &me)) {
               a->ok = false;
               snprintf (a->err, sizeof a->err, "mongo_helper_insert_one: %.250s", me.message);
            }
            break;
         default: {
            bson_t *sel = BCON_NEW ("_id", BCON_INT32 ((int32_t) (j % 100)));
            bson_t *inc = BCON_NEW ("$inc", "{", "n", BCON_INT32 (1), "}");
            mongo_helper_update_result_t ur;

            if (!mongo_helper_update_one (NULL, "bench_conc_upd", sel, inc, false, &ur, &me)) {
               a->ok = false;
               snprintf (a->err, sizeof a->err, "mongo_helper_update_one: %.250s", me.message);
            } else if (ur.matched != 1) {
               a->ok = false;
               snprintf (a->err,
                         sizeof a->err,
                         "mongo_helper_update_one matched %lld, not 1",
                         (long long) ur.matched);
            }
            mongo_helper_update_result_cleanup (&ur);
            bson_destroy (sel);
            bson_destroy (inc);
            break;
         }
         }
      }
      mongo_helper_thread_release ();
   } else {
      mongoc_client_t *c = raw_pop ();
      mongoc_collection_t *f = mongoc_client_get_collection (c, B.db, "bench_flat");
      mongoc_collection_t *i = mongoc_client_get_collection (c, B.db, name);
      mongoc_collection_t *u = mongoc_client_get_collection (c, B.db, "bench_conc_upd");
      for (long j = a->first; j < a->first + a->count && a->ok; j++) {
         if (!op_mix (f, i, u, j, &e)) {
            a->ok = false;
            snprintf (a->err, sizeof a->err, "%.250s", e.message);
         }
      }
      mongoc_collection_destroy (f);
      mongoc_collection_destroy (i);
      mongoc_collection_destroy (u);
      raw_push (c);
   }
   return NULL;
}

static status_t
conc_run (run_t *r, side_t side)
{
   long nthreads = r->param;
   conc_arg_t *args = bson_malloc0 ((size_t) nthreads * sizeof *args);
   status_t st = ST_OK;

   for (long t = 0; t < nthreads; t++) {
      args[t].side = side;
      args[t].first = t * (r->ops / nthreads);
      args[t].count = r->ops / nthreads + (t == nthreads - 1 ? r->ops % nthreads : 0);
      pthread_create (&args[t].thread, NULL, conc_thread, &args[t]);
   }
   for (long t = 0; t < nthreads; t++) {
      pthread_join (args[t].thread, NULL);
      if (!args[t].ok && st == ST_OK) {
         st = fail (r, "thread %ld: %s", t, args[t].err);
      }
   }
   bson_free (args);
   return st;
}

status_t
helper_conc (run_t *r)
{
   return conc_run (r, SIDE_HELPER);
}

status_t
raw_conc (run_t *r)
{
   return conc_run (r, SIDE_RAW);
}
