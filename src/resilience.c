/*
 * resilience.c — which errors are transient, the circuit breaker and the
 * retry backoff that mh_run() uses (layer 4).
 */
#include "mh_private.h"

/* Server codes MongoDB documents as retryable (retryable reads/writes
 * specifications): the primary stepped down or is shutting down, or the
 * network between servers failed. */
static bool
mh_code_is_transient (uint32_t code)
{
   switch (code) {
   case 6:     /* HostUnreachable */
   case 7:     /* HostNotFound */
   case 89:    /* NetworkTimeout */
   case 91:    /* ShutdownInProgress */
   case 134:   /* ReadConcernMajorityNotAvailableYet */
   case 189:   /* PrimarySteppedDown */
   case 262:   /* ExceededTimeLimit */
   case 9001:  /* SocketException */
   case 10107: /* NotWritablePrimary */
   case 11600: /* InterruptedAtShutdown */
   case 11602: /* InterruptedDueToReplStateChange */
   case 13435: /* NotPrimaryNoSecondaryOk */
   case 13436: /* NotPrimaryOrSecondary */
      return true;
   default:
      return false;
   }
}

bool
mongo_helper_error_is_transient (const bson_error_t *error)
{
   if (!error) {
      return false;
   }
   switch (error->domain) {
   case MONGOC_ERROR_STREAM:
   case MONGOC_ERROR_SERVER_SELECTION:
      return true;
   /* Server-reported codes: only these domains carry the server's own
    * numbers (driver codes overlap them numerically). */
   case MONGOC_ERROR_SERVER:
   case MONGOC_ERROR_QUERY:
   case MONGOC_ERROR_WRITE_CONCERN:
      return mh_code_is_transient (error->code);
   default:
      return false;
   }
}

/* A failure to reach or talk to a server at all: what the breaker counts.
 * Garbage on the wire (protocol errors) counts too: the server is not
 * usable either way. */
static bool
mh_is_connection_failure (const bson_error_t *e)
{
   return e->domain == MONGOC_ERROR_STREAM || e->domain == MONGOC_ERROR_SERVER_SELECTION ||
          e->domain == MONGOC_ERROR_PROTOCOL;
}

/* -- circuit breaker -- */

static struct {
   pthread_mutex_t lock;
   mongo_helper_circuit_state_t state;
   int32_t consecutive;
   int64_t opened_mono_us;
   int64_t opened_wall_ms;
   bool probe_in_flight;
   uint64_t rejected;
   int32_t threshold;
   int32_t cooldown_ms;
} mh_cb = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .threshold = MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD,
           .cooldown_ms = MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS};

static void
mh_cb_prepare (void)
{
   pthread_mutex_lock (&mh_cb.lock);
}

static void
mh_cb_release (void)
{
   pthread_mutex_unlock (&mh_cb.lock);
}

/* A half-open probe in flight belongs to a thread the child lacks. */
static void
mh_cb_child (void)
{
   mh_cb.probe_in_flight = false;
   pthread_mutex_unlock (&mh_cb.lock);
}

static mh_fork_hook_t mh_cb_fork = {.rank = 4,
                                    .prepare = mh_cb_prepare,
                                    .parent = mh_cb_release,
                                    .child = mh_cb_child};
MH_FORK_HOOK (mh_cb_fork)

/* Decides whether a call may go out.  *probe is set for the one call that
 * tests a half-open circuit.  On refusal, *wait_ms says how long the
 * circuit stays open. */
bool
mh_breaker_admit (bool *probe, int64_t *wait_ms, int32_t *failures)
{
   bool ok = true;

   *probe = false;
   *wait_ms = 0;
   pthread_mutex_lock (&mh_cb.lock);
   *failures = mh_cb.consecutive;
   if (mh_cb.state == MONGO_HELPER_CIRCUIT_OPEN) {
      /* The clock only when it matters: not on every call. */
      int64_t left =
         mh_cb.opened_mono_us + (int64_t) mh_cb.cooldown_ms * 1000 - bson_get_monotonic_time ();
      if (left > 0) {
         ok = false;
         *wait_ms = (left + 999) / 1000;
      } else {
         mh_cb.state = MONGO_HELPER_CIRCUIT_HALF_OPEN;
         mh_cb.probe_in_flight = false;
      }
   }
   if (ok && mh_cb.state == MONGO_HELPER_CIRCUIT_HALF_OPEN) {
      if (mh_cb.probe_in_flight) {
         ok = false; /* another call is probing: fail fast meanwhile */
      } else {
         mh_cb.probe_in_flight = true;
         *probe = true;
      }
   }
   if (!ok) {
      mh_cb.rejected++;
   }
   pthread_mutex_unlock (&mh_cb.lock);
   return ok;
}

/* Records one attempt's outcome (NULL: success). */
void
mh_breaker_record (const bson_error_t *e, bool probe)
{
   pthread_mutex_lock (&mh_cb.lock);
   if (e && mh_is_connection_failure (e)) {
      mh_cb.consecutive++;
      if ((probe && mh_cb.state == MONGO_HELPER_CIRCUIT_HALF_OPEN) ||
          (mh_cb.state == MONGO_HELPER_CIRCUIT_CLOSED && mh_cb.threshold > 0 &&
           mh_cb.consecutive >= mh_cb.threshold)) {
         mh_cb.state = MONGO_HELPER_CIRCUIT_OPEN;
         mh_cb.opened_mono_us = bson_get_monotonic_time ();
         mh_cb.opened_wall_ms = mh_wall_ms ();
         mh_cb.probe_in_flight = false;
      }
   } else if (!probe && mh_cb.state == MONGO_HELPER_CIRCUIT_OPEN) {
      /* A call admitted before the circuit opened came back: it does not
       * decide; only the probe does. */
   } else {
      /* The server answered (even with a server error): it is reachable. */
      mh_cb.consecutive = 0;
      mh_cb.state = MONGO_HELPER_CIRCUIT_CLOSED;
      mh_cb.probe_in_flight = false;
   }
   pthread_mutex_unlock (&mh_cb.lock);
}

/* The probe never reached the network (e.g. no pooled client free): let
 * the next call probe instead. */
void
mh_breaker_abstain (bool probe)
{
   if (probe) {
      pthread_mutex_lock (&mh_cb.lock);
      mh_cb.probe_in_flight = false;
      pthread_mutex_unlock (&mh_cb.lock);
   }
}

bool
mh_breaker_closed (void)
{
   bool closed;

   pthread_mutex_lock (&mh_cb.lock);
   closed = mh_cb.state == MONGO_HELPER_CIRCUIT_CLOSED;
   pthread_mutex_unlock (&mh_cb.lock);
   return closed;
}

void
mongo_helper_circuit_status (mongo_helper_circuit_t *circuit)
{
   if (!circuit) {
      return;
   }
   memset (circuit, 0, sizeof *circuit);
   pthread_mutex_lock (&mh_cb.lock);
   circuit->state = mh_cb.state;
   circuit->consecutive_failures = mh_cb.consecutive;
   circuit->opened_at_ms = mh_cb.opened_wall_ms;
   circuit->rejected = mh_cb.rejected;
   if (mh_cb.state == MONGO_HELPER_CIRCUIT_OPEN) {
      int64_t left =
         mh_cb.opened_mono_us + (int64_t) mh_cb.cooldown_ms * 1000 - bson_get_monotonic_time ();
      circuit->retry_in_ms = left > 0 ? (left + 999) / 1000 : 0;
   }
   pthread_mutex_unlock (&mh_cb.lock);
}

const char *
mongo_helper_circuit_state_name (mongo_helper_circuit_state_t state)
{
   switch (state) {
   case MONGO_HELPER_CIRCUIT_CLOSED:
      return "closed";
   case MONGO_HELPER_CIRCUIT_OPEN:
      return "open";
   case MONGO_HELPER_CIRCUIT_HALF_OPEN:
      return "half_open";
   }
   return "unknown";
}

/* -- backoff -- */

/* Full jitter (a uniform wait in [0, ceiling]) spreads the retries of many
 * clients hit by the same blip instead of having them return together. */
void
mh_backoff_sleep (const mongo_helper_retry_policy_t *pol, int32_t attempt)
{
   static _Thread_local uint64_t rng;
   int64_t ceiling = pol->base_ms;
   int64_t ms;

   for (int32_t i = 1; i < attempt && ceiling < pol->max_ms; i++) {
      ceiling *= 2;
   }
   if (ceiling > pol->max_ms) {
      ceiling = pol->max_ms;
   }
   if (ceiling <= 0) {
      return;
   }
   if (!rng) {
      rng = (uint64_t) bson_get_monotonic_time () ^ ((uint64_t) (uintptr_t) &rng << 16) ^
            0x9E3779B97F4A7C15ull;
   }
   rng ^= rng >> 12; /* xorshift64* */
   rng ^= rng << 25;
   rng ^= rng >> 27;
   ms = (int64_t) ((rng * 0x2545F4914F6CDD1Dull) % (uint64_t) (ceiling + 1));
   mh_sleep_ms (ms);
}

/* Called for every new pool: a new configuration starts closed. */
void
mh_breaker_configure (int32_t threshold, int32_t cooldown_ms)
{
   pthread_mutex_lock (&mh_cb.lock);
   mh_cb.state = MONGO_HELPER_CIRCUIT_CLOSED;
   mh_cb.consecutive = 0;
   mh_cb.opened_mono_us = 0;
   mh_cb.opened_wall_ms = 0;
   mh_cb.probe_in_flight = false;
   mh_cb.rejected = 0;
   mh_cb.threshold = threshold;
   mh_cb.cooldown_ms = cooldown_ms;
   pthread_mutex_unlock (&mh_cb.lock);
}

void
mh_breaker_reset_rejected (void)
{
   pthread_mutex_lock (&mh_cb.lock);
   mh_cb.rejected = 0;
   pthread_mutex_unlock (&mh_cb.lock);
}
