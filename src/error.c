/*
 * error.c — error categories, messages and advice (layer 1).
 */
#include "mh_private.h"

const char *
mongo_helper_category_name (mongo_helper_category_t category)
{
   switch (category) {
   case MONGO_HELPER_ERROR_NONE:
      return "none";
   case MONGO_HELPER_ERROR_CONFIG:
      return "config";
   case MONGO_HELPER_ERROR_CONNECTION:
      return "connection";
   case MONGO_HELPER_ERROR_TIMEOUT:
      return "timeout";
   case MONGO_HELPER_ERROR_SERVER:
      return "server";
   case MONGO_HELPER_ERROR_DUPLICATE_KEY:
      return "duplicate_key";
   case MONGO_HELPER_ERROR_NOT_FOUND:
      return "not_found";
   case MONGO_HELPER_ERROR_INVALID_ARGUMENT:
      return "invalid_argument";
   case MONGO_HELPER_ERROR_AUTH:
      return "auth";
   case MONGO_HELPER_ERROR_CIRCUIT_OPEN:
      return "circuit_open";
   case MONGO_HELPER_ERROR_INTERNAL:
      return "internal";
   case MONGO_HELPER_ERROR_INTEGRITY:
      return "integrity";
   }
   return "unknown";
}

void
mh_error_clear (mongo_helper_error_t *error)
{
   if (error) {
      error->category = MONGO_HELPER_ERROR_NONE;
      error->code = 0;
      error->message[0] = '\0';
   }
}

/* Fills `error` and returns false, so failure paths read
 * `return mh_fail (...)`.  Every message passes through the redactor: a
 * URI that slipped into a driver message never reaches the caller. */
bool
mh_fail (mongo_helper_error_t *error,
         mongo_helper_category_t category,
         int32_t code,
         const char *fmt,
         ...)
{
   char raw[MONGO_HELPER_ERROR_MESSAGE_SIZE * 2];
   va_list ap;

   if (!error) {
      return false;
   }
   va_start (ap, fmt);
   vsnprintf (raw, sizeof raw, fmt, ap);
   va_end (ap);
   error->category = category;
   error->code = code;
   mongo_helper_redact (raw, error->message, sizeof error->message);
   return false;
}

/* Decides the category of a libmongoc / server error (error API 2). */
static mongo_helper_category_t
mh_category_of (const bson_error_t *e)
{
   switch (e->domain) {
   case MONGOC_ERROR_SERVER_SELECTION:
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_STREAM:
      if (strstr (e->message, "timed out")) {
         return MONGO_HELPER_ERROR_TIMEOUT;
      }
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_PROTOCOL:
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_CLIENT:
      if (e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) {
         return MONGO_HELPER_ERROR_AUTH;
      }
      if (e->code == MONGOC_ERROR_CLIENT_TOO_BIG) {
         return MONGO_HELPER_ERROR_INVALID_ARGUMENT;
      }
      return MONGO_HELPER_ERROR_CONNECTION;
   case MONGOC_ERROR_BSON:
   case MONGOC_ERROR_COMMAND:
   case MONGOC_ERROR_COLLECTION:
   case MONGOC_ERROR_CURSOR:
      if (e->code == MONGOC_ERROR_DUPLICATE_KEY) {
         return MONGO_HELPER_ERROR_DUPLICATE_KEY;
      }
      return MONGO_HELPER_ERROR_INVALID_ARGUMENT;
   default:
      break;
   }
   /* Server-side codes (MONGOC_ERROR_SERVER, _QUERY, _WRITE_CONCERN). */
   switch (e->code) {
   case 11000:
   case 11001:
   case 12582:
      return MONGO_HELPER_ERROR_DUPLICATE_KEY;
   case 50:  /* MaxTimeMSExpired */
   case 262: /* ExceededTimeLimit */
      return MONGO_HELPER_ERROR_TIMEOUT;
   case 13: /* Unauthorized */
   case 18: /* AuthenticationFailed */
      return MONGO_HELPER_ERROR_AUTH;
   default:
      return MONGO_HELPER_ERROR_SERVER;
   }
}

/* Turns a driver error into the library's error, with advice. */
bool
mh_fail_bson (mongo_helper_error_t *error, const char *what, const bson_error_t *e)
{
   mongo_helper_category_t cat = mh_category_of (e);
   const char *advice = "";

   switch (cat) {
   case MONGO_HELPER_ERROR_CONNECTION:
      advice = "; check that MongoDB is running and reachable at the "
               "configured hosts";
      break;
   case MONGO_HELPER_ERROR_TIMEOUT:
      advice = "; the server did not answer in time: raise the timeout or "
               "check the server's load";
      break;
   case MONGO_HELPER_ERROR_AUTH:
      advice = "; check the user name, password and authSource";
      break;
   default:
      break;
   }
   return mh_fail (error, cat, (int32_t) e->code, "%s failed: %s%s", what, e->message, advice);
}
