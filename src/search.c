/*
 * search.c — text and geospatial search (layer 8).
 */
#include "mh_private.h"

/* ---- text and geospatial search ---- */

static bool
mh_results_init (const char *op, bson_t *results, mongo_helper_error_t *error)
{
   mh_error_clear (error);
   if (!results) {
      return mh_fail (error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "%s: results is NULL", op);
   }
   bson_init (results);
   return true;
}

bool
mongo_helper_text_search (const char *database,
                          const char *collection,
                          const char *search,
                          const char *language,
                          const bson_t *filter,
                          int64_t limit,
                          bson_t *results,
                          mongo_helper_error_t *error)
{
   bson_t f = BSON_INITIALIZER, text, opts = BSON_INITIALIZER, sub;
   bool ok;

   if (!mh_results_init ("text_search", results, error) ||
       !mh_target_check ("text_search", database, collection, error)) {
      return false;
   }
   if (!search || !*search || limit < 0 || (language && !*language)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "text_search: the search text must be non-empty, the "
                      "language NULL or non-empty, the limit not negative");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&f, "$text", &text);
   BSON_APPEND_UTF8 (&text, "$search", search);
   if (language) {
      BSON_APPEND_UTF8 (&text, "$language", language);
   }
   bson_append_document_end (&f, &text);
   if (filter) {
      bson_concat (&f, filter);
   }
   BSON_APPEND_DOCUMENT_BEGIN (&opts, "projection", &sub);
   BCON_APPEND (&sub, "score", "{", "$meta", BCON_UTF8 ("textScore"), "}");
   bson_append_document_end (&opts, &sub);
   BSON_APPEND_DOCUMENT_BEGIN (&opts, "sort", &sub);
   BCON_APPEND (&sub, "score", "{", "$meta", BCON_UTF8 ("textScore"), "}");
   bson_append_document_end (&opts, &sub);
   if (limit > 0) {
      BSON_APPEND_INT64 (&opts, "limit", limit);
   }
   ok = mh_find_exec (MH_OPID_TEXT_SEARCH, database, collection, &f, &opts, results, NULL, error);
   bson_destroy (&f);
   bson_destroy (&opts);
   return ok;
}

static bool
mh_geo_check (const char *op,
              const char *field,
              double lng,
              double lat,
              double meters,
              mongo_helper_error_t *error)
{
   /* The negated forms also reject NaN (and the bound, infinity). */
   if (!field || !*field || !(lng >= -180.0 && lng <= 180.0) || !(lat >= -90.0 && lat <= 90.0) ||
       !(meters >= 0.0 && meters <= MONGO_HELPER_MAX_DISTANCE_M)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "%s: need a field name, longitude in [-180, 180], "
                      "latitude in [-90, 90] and a distance from 0 to %.0f m, half the "
                      "Earth's circumference (got %g, %g, %g)",
                      op,
                      MONGO_HELPER_MAX_DISTANCE_M,
                      lng,
                      lat,
                      meters);
   }
   return true;
}

bool
mongo_helper_geo_near (const char *database,
                       const char *collection,
                       const char *field,
                       double longitude,
                       double latitude,
                       double max_meters,
                       int64_t limit,
                       bson_t *results,
                       mongo_helper_error_t *error)
{
   bson_t *filter, opts = BSON_INITIALIZER;
   bool ok;

   if (!mh_results_init ("geo_near", results, error) ||
       !mh_target_check ("geo_near", database, collection, error) ||
       !mh_geo_check ("geo_near", field, longitude, latitude, max_meters, error)) {
      return false;
   }
   if (limit < 0) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "geo_near: the limit must not be negative");
   }
   /* $nearSphere with GeoJSON measures in meters on the WGS84 sphere and
    * returns nearest first, which is what "near me" means. */
   filter = BCON_NEW (field,
                      "{",
                      "$nearSphere",
                      "{",
                      "$geometry",
                      "{",
                      "type",
                      BCON_UTF8 ("Point"),
                      "coordinates",
                      "[",
                      BCON_DOUBLE (longitude),
                      BCON_DOUBLE (latitude),
                      "]",
                      "}",
                      "$maxDistance",
                      BCON_DOUBLE (max_meters),
                      "}",
                      "}");
   if (limit > 0) {
      BSON_APPEND_INT64 (&opts, "limit", limit);
   }
   ok = mh_find_exec (MH_OPID_GEO_NEAR, database, collection, filter, &opts, results, NULL, error);
   bson_destroy (filter);
   bson_destroy (&opts);
   return ok;
}

bool
mongo_helper_geo_within_polygon (const char *database,
                                 const char *collection,
                                 const char *field,
                                 const double *lng_lat,
                                 size_t n_points,
                                 bson_t *results,
                                 mongo_helper_error_t *error)
{
   bson_t filter = BSON_INITIALIZER, f, w, g, coords, ring, pt;
   char buf[16];
   const char *key;
   uint32_t k = 0;
   size_t n = n_points;
   bool closed, ok;

   if (!mh_results_init ("geo_within_polygon", results, error) ||
       !mh_target_check ("geo_within_polygon", database, collection, error)) {
      return false;
   }
   if (!lng_lat || n < 3 || n > MONGO_HELPER_MAX_POLYGON_POINTS) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "geo_within_polygon: a polygon needs 3 to %d points "
                      "(MONGO_HELPER_MAX_POLYGON_POINTS), got %zu%s",
                      MONGO_HELPER_MAX_POLYGON_POINTS,
                      n,
                      lng_lat ? "" : " and lng_lat is NULL");
   }
   for (size_t i = 0; i < n; i++) {
      if (!mh_geo_check (
             "geo_within_polygon", field, lng_lat[2 * i], lng_lat[2 * i + 1], 0, error)) {
         return false;
      }
   }
   closed = lng_lat[0] == lng_lat[2 * (n - 1)] && lng_lat[1] == lng_lat[2 * (n - 1) + 1];
   if (closed && n < 4) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "geo_within_polygon: a closed ring needs at least 4 "
                      "points (3 distinct)");
   }
   BSON_APPEND_DOCUMENT_BEGIN (&filter, field, &f);
   BSON_APPEND_DOCUMENT_BEGIN (&f, "$geoWithin", &w);
   BSON_APPEND_DOCUMENT_BEGIN (&w, "$geometry", &g);
   BSON_APPEND_UTF8 (&g, "type", "Polygon");
   BSON_APPEND_ARRAY_BEGIN (&g, "coordinates", &coords);
   BSON_APPEND_ARRAY_BEGIN (&coords, "0", &ring);
   /* GeoJSON rings must end where they start. */
   for (size_t i = 0; i < n + (closed ? 0 : 1); i++) {
      size_t j = i < n ? i : 0;
      bson_uint32_to_string (k++, &key, buf, sizeof buf);
      bson_append_array_begin (&ring, key, -1, &pt);
      BSON_APPEND_DOUBLE (&pt, "0", lng_lat[2 * j]);
      BSON_APPEND_DOUBLE (&pt, "1", lng_lat[2 * j + 1]);
      bson_append_array_end (&ring, &pt);
   }
   bson_append_array_end (&coords, &ring);
   bson_append_array_end (&g, &coords);
   bson_append_document_end (&w, &g);
   bson_append_document_end (&f, &w);
   bson_append_document_end (&filter, &f);
   ok = mh_find_exec (
      MH_OPID_GEO_WITHIN_POLYGON, database, collection, &filter, NULL, results, NULL, error);
   bson_destroy (&filter);
   return ok;
}

bool
mongo_helper_geo_within_circle (const char *database,
                                const char *collection,
                                const char *field,
                                double longitude,
                                double latitude,
                                double radius_meters,
                                bson_t *results,
                                mongo_helper_error_t *error)
{
   bson_t *filter;
   bool ok;

   if (!mh_results_init ("geo_within_circle", results, error) ||
       !mh_target_check ("geo_within_circle", database, collection, error) ||
       !mh_geo_check ("geo_within_circle", field, longitude, latitude, radius_meters, error)) {
      return false;
   }
   filter = BCON_NEW (field,
                      "{",
                      "$geoWithin",
                      "{",
                      "$centerSphere",
                      "[",
                      "[",
                      BCON_DOUBLE (longitude),
                      BCON_DOUBLE (latitude),
                      "]",
                      BCON_DOUBLE (radius_meters / MH_EARTH_RADIUS_M),
                      "]",
                      "}",
                      "}");
   ok = mh_find_exec (
      MH_OPID_GEO_WITHIN_CIRCLE, database, collection, filter, NULL, results, NULL, error);
   bson_destroy (filter);
   return ok;
}
