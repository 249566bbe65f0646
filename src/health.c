/*
 * health.c — ping and server info through the core's dedicated client
 * (layer 7).
 */
#include "mh_private.h"

/* ---- Health --------------------------------------------------------- */

/* <= 0 is the documented default; a health check that may wait longer
 * than a minute would not tell a load balancer anything in time. */
static bool
mh_health_timeout_ok (const char *fn, int32_t timeout_ms, mongo_helper_error_t *error)
{
   if (timeout_ms > MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: timeout_ms %d is over %d (MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS); "
                      "<= 0 means 2000",
                      fn,
                      (int) timeout_ms,
                      MONGO_HELPER_MAX_HEALTH_TIMEOUT_MS);
   }
   return true;
}

bool
mongo_helper_ping (int32_t timeout_ms, mongo_helper_error_t *error)
{
   bson_t reply;
   bool ok;

   mh_error_clear (error);
   if (!mh_health_timeout_ok ("mongo_helper_ping", timeout_ms, error)) {
      return false;
   }
   ok = mh_direct_command ("ping", timeout_ms, &reply, NULL, error);
   bson_destroy (&reply);
   return ok;
}

bool
mongo_helper_server_info (int32_t timeout_ms,
                          mongo_helper_server_info_t *info,
                          mongo_helper_error_t *error)
{
   bson_t reply;
   bson_iter_t it;
   int64_t rtt = 0;

   mh_error_clear (error);
   if (!info) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "mongo_helper_server_info: info is NULL");
   }
   memset (info, 0, sizeof *info);
   if (!mh_health_timeout_ok ("mongo_helper_server_info", timeout_ms, error)) {
      return false;
   }
   if (!mh_direct_command ("hello", timeout_ms, &reply, &rtt, error)) {
      bson_destroy (&reply);
      return false;
   }
   info->round_trip_us = rtt;
   bson_strncpy (info->topology, "Single", sizeof info->topology);
   if (bson_iter_init_find (&it, &reply, "setName") && BSON_ITER_HOLDS_UTF8 (&it)) {
      bson_strncpy (info->topology, "ReplicaSet", sizeof info->topology);
      bson_strncpy (info->set_name, bson_iter_utf8 (&it, NULL), sizeof info->set_name);
   }
   if (bson_iter_init_find (&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8 (&it) &&
       strcmp (bson_iter_utf8 (&it, NULL), "isdbgrid") == 0) {
      bson_strncpy (info->topology, "Sharded", sizeof info->topology);
   }
   if (bson_iter_init_find (&it, &reply, "maxWireVersion") && BSON_ITER_HOLDS_INT (&it)) {
      info->max_wire_version = (int32_t) bson_iter_as_int64 (&it);
   }
   bson_destroy (&reply);
   if (!mh_direct_command ("buildInfo", timeout_ms, &reply, NULL, error)) {
      bson_destroy (&reply);
      return false;
   }
   if (bson_iter_init_find (&it, &reply, "version") && BSON_ITER_HOLDS_UTF8 (&it)) {
      bson_strncpy (info->version, bson_iter_utf8 (&it, NULL), sizeof info->version);
   }
   bson_destroy (&reply);
   return true;
}
