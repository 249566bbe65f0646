/*
 * uri.c — the text of MongoDB URI options (layer 2): percent-encoding,
 * option names as libmongoc reads them, the [db] connection_options list,
 * and merging settings into a URI so libmongoc's own parser reads them.
 */
#include "mh_private.h"

/* Appends `s` percent-encoded (RFC 3986: everything but unreserved), so a
 * password with '@', ':', '/' or '%' survives URI parsing. */
void
mh_pct_encode (bson_string_t *out, const char *s)
{
   static const char hex[] = "0123456789ABCDEF";

   for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
      if (isalnum (*p) || strchr ("-._~", *p)) {
         bson_string_append_c (out, (char) *p);
      } else {
         bson_string_append_c (out, '%');
         bson_string_append_c (out, hex[*p >> 4]);
         bson_string_append_c (out, hex[*p & 15]);
      }
   }
}

/* ---- URI options ------------------------------------------------------- */

/* Deprecated names libmongoc 1.23 still reads, and the option each stands
 * for: "does the URI name it" compares canonical names. */
static const char *const mh_aliases[][2] = {
   {"ssl", "tls"},
   {"sslClientCertificateKeyFile", "tlsCertificateKeyFile"},
   {"sslClientCertificateKeyPassword", "tlsCertificateKeyFilePassword"},
   {"sslCertificateAuthorityFile", "tlsCAFile"},
   {"sslAllowInvalidCertificates", "tlsAllowInvalidCertificates"},
   {"sslAllowInvalidHostnames", "tlsAllowInvalidHostnames"},
};

const char *
mh_canonical (const char *option)
{
   for (size_t i = 0; i < sizeof mh_aliases / sizeof *mh_aliases; i++) {
      if (strcasecmp (option, mh_aliases[i][0]) == 0) {
         return mh_aliases[i][1];
      }
   }
   return option;
}

/* The options libmongoc 1.23 reads by name besides its typed ones (see
 * mongoc_uri_apply_options).  It ignores any other with a warning; given
 * outside the URI such a name is a typo, so the library refuses it. */
static const char *const mh_named_options[] = {MONGOC_URI_W,
                                               MONGOC_URI_READPREFERENCETAGS,
                                               MONGOC_URI_AUTHMECHANISM,
                                               MONGOC_URI_AUTHSOURCE,
                                               MONGOC_URI_AUTHMECHANISMPROPERTIES,
                                               MONGOC_URI_GSSAPISERVICENAME,
                                               MONGOC_URI_SRVSERVICENAME,
                                               MONGOC_URI_READCONCERNLEVEL,
                                               MONGOC_URI_COMPRESSORS};

bool
mh_option_known (const char *option)
{
   if (mongoc_uri_option_is_int32 (option) || mongoc_uri_option_is_bool (option) ||
       mongoc_uri_option_is_utf8 (option)) {
      return true;
   }
   for (size_t i = 0; i < sizeof mh_named_options / sizeof *mh_named_options; i++) {
      if (strcasecmp (option, mh_named_options[i]) == 0) {
         return true;
      }
   }
   return false;
}

/* An option whose whole value is a credential (a key file's password):
 * never shown. */
bool
mh_option_secret (const char *option)
{
   return strcasecmp (mh_canonical (option), MONGOC_URI_TLSCERTIFICATEKEYFILEPASSWORD) == 0;
}

/* The options of a URI text ("a=1&b=2"), found the way libmongoc finds
 * them: from the first '?' after the first '/' behind the scheme; NULL
 * when there is no '?'. */
const char *
mh_uri_query (const char *uri)
{
   const char *p = strstr (uri, "://");
   const char *slash = p ? strchr (p + 3, '/') : NULL;
   const char *q = slash ? strchr (slash, '?') : NULL;

   return q ? q + 1 : NULL;
}

/* Whether the text of `uri` has `option` (or one of its aliases). */
bool
mh_query_has (const char *uri, const char *option)
{
   const char *q = mh_uri_query (uri);
   const char *canon = mh_canonical (option);

   while (q && *q) {
      size_t len = strcspn (q, "&");
      char *key = bson_strndup (q, strcspn (q, "=&"));
      bool same = strcasecmp (mh_canonical (key), canon) == 0;

      bson_free (key);
      if (same) {
         return true;
      }
      q += len + (q[len] == '&');
   }
   return false;
}

/* Whether the URI itself gives `option`, so it wins.  A typed option (and
 * w) counts when libmongoc took a value from it, as before settings were
 * merged into the URI text; the others (readPreferenceTags, auth*,
 * readConcernLevel, compressors) do not land among libmongoc's options and
 * are looked for in the text. */
bool
mh_uri_names (const mongoc_uri_t *muri, const char *uri, const char *option)
{
   const char *canon = mh_canonical (option);

   if (mongoc_uri_option_is_int32 (canon) || mongoc_uri_option_is_bool (canon) ||
       mongoc_uri_option_is_utf8 (canon) || strcasecmp (canon, MONGOC_URI_W) == 0) {
      return mongoc_uri_has_option (muri, canon);
   }
   return mh_query_has (uri, canon);
}

/* Percent-decodes a value written in URI syntax, as libmongoc does; NULL
 * for a '%' not followed by two hex digits, or %00. */
char *
mh_pct_decode (const char *s)
{
   char *out = bson_malloc (strlen (s) + 1), *o = out;

   while (*s) {
      if (*s == '%') {
         char hex[3] = {s[1], s[1] ? s[2] : '\0', '\0'};

         if (!isxdigit ((unsigned char) hex[0]) || !isxdigit ((unsigned char) hex[1]) ||
             strtol (hex, NULL, 16) == 0) {
            bson_free (out);
            return NULL;
         }
         *o++ = (char) strtol (hex, NULL, 16);
         s += 3;
      } else {
         *o++ = *s++;
      }
   }
   *o = '\0';
   return out;
}

/* A URI text safe to show: mongo_helper_redact() hides the password and
 * the values of credential options (key file passwords, AWS session
 * tokens), the one place that knows them. */
char *
mh_redact_uri (const char *uri)
{
   size_t size = 2 * strlen (uri) + 16; /* each hidden run may grow by 3 */
   char *r = bson_malloc (size);

   mongo_helper_redact (uri, r, size);
   return r;
}

/* libmongoc drops a compressor it was built without, with a warning; named
 * outside the URI that is a typo to report. */
bool
mh_compressors_check (const char *value, const char *label, mongo_helper_error_t *error)
{
   bson_string_t *probe = bson_string_new ("mongodb://localhost/?compressors=");
   mongoc_uri_t *u;
   const char *p = value;
   bool ok = true;

   mh_pct_encode (probe, value);
   u = mongoc_uri_new_with_error (probe->str, NULL);
   bson_string_free (probe, true);
   while (ok) {
      size_t len = strcspn (p, ",");
      char *name = bson_strndup (p, len);
      bson_iter_t it;

      if (!u || !*name || !bson_iter_init_find_case (&it, mongoc_uri_get_compressors (u), name)) {
         ok = mh_fail (error,
                       MONGO_HELPER_ERROR_CONFIG,
                       0,
                       "%s: compressors names '%s', which this libmongoc does not "
                       "have: use snappy, zlib or zstd, separated by commas",
                       label,
                       name);
      }
      bson_free (name);
      if (!p[len]) {
         break;
      }
      p += len + 1;
   }
   mongoc_uri_destroy (u);
   return ok;
}

void
mh_conn_opts_free (mh_conn_opts_t *c)
{
   for (size_t i = 0; i < c->n; i++) {
      bson_free (c->v[i].value);
   }
   bson_free (c->v);
   bson_free (c->buf);
}

bool
mh_conn_opts_split (mh_conn_opts_t *c, const char *text, mongo_helper_error_t *error)
{
   char *save = NULL;
   size_t cap = 0;

   c->buf = bson_strdup (text);
   for (char *kv = strtok_r (c->buf, "&", &save); kv; kv = strtok_r (NULL, "&", &save)) {
      char *eq = strchr (kv, '=');
      char *value;

      if (!eq || eq == kv) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s: '%s' is not of the form option=value",
                         c->label,
                         kv);
      }
      *eq = '\0';
      if (!mh_option_known (kv)) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s names '%s', which is not a MongoDB URI option this "
                         "driver knows",
                         c->label,
                         kv);
      }
      for (size_t i = 0; i < c->n; i++) {
         /* Several readPreferenceTags are a list; anything else twice is
          * ambiguous. */
         if (strcasecmp (mh_canonical (c->v[i].key), mh_canonical (kv)) == 0 &&
             strcasecmp (kv, MONGOC_URI_READPREFERENCETAGS) != 0) {
            return mh_fail (
               error, MONGO_HELPER_ERROR_CONFIG, 0, "%s names %s twice: keep one", c->label, kv);
         }
      }
      if (!(value = mh_pct_decode (eq + 1))) {
         return mh_fail (error,
                         MONGO_HELPER_ERROR_CONFIG,
                         0,
                         "%s: the value of %s has a bad escape: write '%%' as %%25 "
                         "(values are percent-encoded as in a URI)",
                         c->label,
                         kv);
      }
      if (c->n == cap) {
         cap = cap ? 2 * cap : 8;
         c->v = bson_realloc (c->v, cap * sizeof *c->v);
      }
      c->v[c->n++] = (mh_conn_opt_t){kv, value, false};
   }
   return true;
}

/* The first untaken entry for `option`, taken. */
const char *
mh_conn_opts_take (mh_conn_opts_t *c, const char *option)
{
   for (size_t i = 0; i < c->n; i++) {
      if (!c->v[i].taken && strcasecmp (c->v[i].key, option) == 0) {
         c->v[i].taken = true;
         return c->v[i].value;
      }
   }
   return NULL;
}

/* ---- Merging the settings into the URI ---------------------------------- */

void
mh_extras_add (mh_extras_t *x, const char *option, const char *value, const char *label)
{
   if (x->n == x->cap) {
      x->cap = x->cap ? 2 * x->cap : 16;
      x->v = bson_realloc (x->v, x->cap * sizeof *x->v);
   }
   x->v[x->n++] = (mh_extra_t){bson_strdup (option), bson_strdup (value), bson_strdup (label)};
}

void
mh_extras_add_first (mh_extras_t *x, const char *option, const char *value, const char *label)
{
   mh_extra_t e;

   mh_extras_add (x, option, value, label);
   e = x->v[x->n - 1];
   memmove (x->v + 1, x->v, (x->n - 1) * sizeof *x->v);
   x->v[0] = e;
}

void
mh_extras_free (mh_extras_t *x)
{
   for (size_t i = 0; i < x->n; i++) {
      bson_free (x->v[i].option);
      bson_free (x->v[i].value);
      bson_free (x->v[i].label);
   }
   bson_free (x->v);
}

/* `uri` with the extras before `upto` appended, except number `skip`. */
char *
mh_uri_merged (const char *uri, const mh_extras_t *x, size_t skip, size_t upto)
{
   const char *q = mh_uri_query (uri);
   bson_string_t *s = bson_string_new (uri);
   const char *sep;

   if (!q) {
      sep = strchr (strstr (uri, "://") + 3, '/') ? "?" : "/?";
   } else {
      sep = *q && uri[strlen (uri) - 1] != '&' ? "&" : "";
   }
   for (size_t i = 0; i < upto && i < x->n; i++) {
      if (i != skip) {
         bson_string_append_printf (s, "%s%s=", sep, x->v[i].option);
         mh_pct_encode (s, x->v[i].value);
         sep = "&";
      }
   }
   return bson_string_free (s, false);
}

/* Parses the URI with every extra.  When libmongoc refuses the result,
 * finds the extra to blame (the one whose removal makes it parse, else the
 * first that breaks it) and names its source. */
mongoc_uri_t *
mh_uri_parse_merged (const char *uri,
                     const mh_extras_t *x,
                     const char *uri_source,
                     char **merged,
                     mongo_helper_error_t *error)
{
   bson_error_t berr, other;
   char *text = mh_uri_merged (uri, x, SIZE_MAX, x->n);
   mongoc_uri_t *muri = mongoc_uri_new_with_error (text, &berr);
   size_t culprit = SIZE_MAX;

   if (muri) {
      *merged = text;
      return muri;
   }
   bson_free (text);
   for (size_t i = 0; i < x->n && culprit == SIZE_MAX; i++) {
      text = mh_uri_merged (uri, x, i, x->n);
      muri = mongoc_uri_new_with_error (text, &other);
      culprit = muri ? i : SIZE_MAX;
      mongoc_uri_destroy (muri);
      bson_free (text);
   }
   for (size_t i = 0; i < x->n && culprit == SIZE_MAX; i++) {
      text = mh_uri_merged (uri, x, SIZE_MAX, i + 1);
      muri = mongoc_uri_new_with_error (text, &other);
      if (!muri) {
         culprit = i;
         berr = other;
      }
      mongoc_uri_destroy (muri);
      bson_free (text);
   }
   if (culprit == SIZE_MAX) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: the URI with the settings applied is invalid (%s)",
               uri_source,
               berr.message);
   } else if (mh_option_secret (x->v[culprit].option)) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: the driver refused the value of %s (not shown: it is a credential)",
               x->v[culprit].label,
               x->v[culprit].option);
   } else {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: the driver refused %s='%s' (%s): fix the value, or the "
               "URI option it conflicts with",
               x->v[culprit].label,
               x->v[culprit].option,
               x->v[culprit].value,
               berr.message);
   }
   return NULL;
}
