/*
 * keyring.c — key rings and sealed records (layer 2): the keys that
 * encrypt stored payloads, read from configuration, and the versioned
 * envelope an encrypted payload is stored in.  The cipher itself is
 * crypto.c's; this file only reaches OpenSSL through it.
 *
 * Secrets: key bytes and key text never enter an error message (entries
 * are named by number and id, characters by position), and every buffer
 * that held them is wiped before it is freed.
 */
#include "mh_private.h"

#include <fcntl.h>
#include <sys/stat.h>

typedef struct {
   char id[MH_KEY_ID_MAX + 1];
   uint8_t key[MH_AEAD_KEY_LEN];
   unsigned no; /* its entry or line, for messages */
} mh_key_t;

struct mh_keyring {
   size_t n;
   mh_key_t keys[MH_KEYRING_MAX]; /* keys[0]: the current key */
};

/* ---- Parsing --------------------------------------------------------- */

static bool
mh_space (char c)
{
   return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static void
mh_trim (const char **s, size_t *len)
{
   while (*len > 0 && mh_space (**s)) {
      (*s)++;
      (*len)--;
   }
   while (*len > 0 && mh_space ((*s)[*len - 1])) {
      (*len)--;
   }
}

/* A key id: short, printable, and safe in a message, a metric label or a
 * query ("sealed.k"). */
static bool
mh_key_id_char (char c)
{
   return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-';
}

static bool
mh_key_id_ok (const char *s, size_t len)
{
   if (len < 1 || len > MH_KEY_ID_MAX) {
      return false;
   }
   for (size_t i = 0; i < len; i++) {
      if (!mh_key_id_char (s[i])) {
         return false;
      }
   }
   return true;
}

/* Strict base64, standard (+/) or URL-safe (-_) alphabet but not both,
 * '=' padding optional but exact when present, no bits set past the last
 * byte (so one key has one spelling, and a mistyped last character is
 * caught).  Writes at most `cap` bytes to `out` and counts every decoded
 * byte in *n.  Returns NULL, or why the text is not base64; *pos is then
 * the 1-based position of the offending character (0: none in
 * particular).  Nothing of the text goes into the reason. */
static const char *
mh_b64_decode (const char *s, size_t len, uint8_t *out, size_t cap, size_t *n, size_t *pos)
{
   size_t data = len, pad = 0;
   uint32_t acc = 0;
   int bits = 0;
   int alphabet = 0; /* 1 standard, 2 URL-safe */

   *n = 0;
   *pos = 0;
   while (data > 0 && s[data - 1] == '=') {
      data--;
      pad++;
   }
   for (size_t i = 0; i < data; i++) {
      char c = s[i];
      int v, a = 0;

      if (c >= 'A' && c <= 'Z') {
         v = c - 'A';
      } else if (c >= 'a' && c <= 'z') {
         v = c - 'a' + 26;
      } else if (c >= '0' && c <= '9') {
         v = c - '0' + 52;
      } else if (c == '+' || c == '/') {
         v = c == '+' ? 62 : 63;
         a = 1;
      } else if (c == '-' || c == '_') {
         v = c == '-' ? 62 : 63;
         a = 2;
      } else {
         *pos = i + 1;
         return c == '=' ? "padding '=' before the end" : "a character outside the base64 alphabet";
      }
      if (a != 0) {
         if (alphabet != 0 && alphabet != a) {
            *pos = i + 1;
            return "the standard (+/) and URL-safe (-_) alphabets mixed";
         }
         alphabet = a;
      }
      acc = (acc << 6) | (uint32_t) v;
      bits += 6;
      if (bits >= 8) {
         bits -= 8;
         if (*n < cap) {
            out[*n] = (uint8_t) (acc >> bits);
         }
         (*n)++;
         acc &= (1u << bits) - 1;
      }
   }
   if (data % 4 == 1) {
      return "a length no base64 text has (a character is missing or extra)";
   }
   if (pad > 0 && (data % 4 == 0 || pad != 4 - data % 4)) {
      return "the wrong number of '=' padding characters";
   }
   /* What is left in `acc` are the last character's bits past the data. */
   if (acc != 0) {
      *pos = data;
      return "bits set past the last byte (the last character is wrong)";
   }
   return NULL;
}

/* CONFIG error "<where>, <unit> <no>[ ('<id>')]: <detail>".  `id` is
 * given only once it is known to be a valid id, never key text. */
static bool mh_entry_fail (mongo_helper_error_t *error,
                           const char *where,
                           const char *unit,
                           unsigned no,
                           const char *id,
                           const char *fmt,
                           ...) BSON_GNUC_PRINTF (6, 7);

static bool
mh_entry_fail (mongo_helper_error_t *error,
               const char *where,
               const char *unit,
               unsigned no,
               const char *id,
               const char *fmt,
               ...)
{
   char detail[MONGO_HELPER_ERROR_MESSAGE_SIZE];
   va_list ap;

   va_start (ap, fmt);
   vsnprintf (detail, sizeof detail, fmt, ap);
   va_end (ap);
   if (id) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_CONFIG, 0, "%s, %s %u ('%s'): %s", where, unit, no, id, detail);
   }
   return mh_fail (error, MONGO_HELPER_ERROR_CONFIG, 0, "%s, %s %u: %s", where, unit, no, detail);
}

/* Adds one "id:base64key" entry (already trimmed, not empty). */
static bool
mh_keyring_add (mh_keyring_t *ring,
                const char *text,
                size_t len,
                const char *where,
                const char *unit,
                unsigned no,
                mongo_helper_error_t *error)
{
   const char *colon = memchr (text, ':', len);
   const char *id, *key;
   size_t id_len, key_len, n, pos;
   uint8_t buf[MH_AEAD_KEY_LEN + 1];
   const char *why;
   mh_key_t *k;

   if (!colon) {
      return mh_entry_fail (
         error, where, unit, no, NULL, "no ':' between key id and key (expected id:base64key)");
   }
   id = text;
   id_len = (size_t) (colon - text);
   key = colon + 1;
   key_len = len - id_len - 1;
   mh_trim (&id, &id_len);
   mh_trim (&key, &key_len);
   if (!mh_key_id_ok (id, id_len)) {
      /* Not echoed: a reversed "key:id" would put the key here. */
      return mh_entry_fail (error,
                            where,
                            unit,
                            no,
                            NULL,
                            "the key id must be 1 to %d characters among A-Z a-z 0-9 _ - "
                            "(it has %zu characters)",
                            MH_KEY_ID_MAX,
                            id_len);
   }
   if (ring->n == MH_KEYRING_MAX) {
      return mh_entry_fail (
         error, where, unit, no, NULL, "more than %d keys in one ring", MH_KEYRING_MAX);
   }
   k = &ring->keys[ring->n];
   memcpy (k->id, id, id_len);
   k->id[id_len] = '\0';
   for (size_t i = 0; i < ring->n; i++) {
      if (strcmp (ring->keys[i].id, k->id) == 0) {
         return mh_entry_fail (error,
                               where,
                               unit,
                               no,
                               k->id,
                               "the key id is already used by %s %u; each key needs its "
                               "own id",
                               unit,
                               ring->keys[i].no);
      }
   }
   if (key_len == 0) {
      return mh_entry_fail (error,
                            where,
                            unit,
                            no,
                            k->id,
                            "the key is empty (make one with: openssl rand -base64 32)");
   }
   why = mh_b64_decode (key, key_len, buf, sizeof buf, &n, &pos);
   if (why) {
      mh_cleanse (buf, sizeof buf);
      if (pos > 0) {
         return mh_entry_fail (error,
                               where,
                               unit,
                               no,
                               k->id,
                               "the key is not valid base64: %s at character %zu of %zu",
                               why,
                               pos,
                               key_len);
      }
      return mh_entry_fail (error, where, unit, no, k->id, "the key is not valid base64: %s", why);
   }
   if (n != MH_AEAD_KEY_LEN) {
      mh_cleanse (buf, sizeof buf);
      return mh_entry_fail (error,
                            where,
                            unit,
                            no,
                            k->id,
                            "the key is %zu bytes after base64 decoding, AES-256 needs %d "
                            "(make one with: openssl rand -base64 32)",
                            n,
                            MH_AEAD_KEY_LEN);
   }
   memcpy (k->key, buf, MH_AEAD_KEY_LEN);
   mh_cleanse (buf, sizeof buf);
   k->no = no;
   ring->n++;
   return true;
}

/* Parses `len` bytes of entries separated by `sep`; with `comments`,
 * blank entries and those starting with '#' are skipped (a key file),
 * else a blank entry is an error (a list). */
static mh_keyring_t *
mh_keyring_parse_text (const char *text,
                       size_t len,
                       char sep,
                       bool comments,
                       const char *where,
                       const char *unit,
                       mongo_helper_error_t *error)
{
   mh_keyring_t *ring = bson_malloc0 (sizeof *ring);
   const char *p = text, *end = text + len;
   unsigned no = 0;

   for (;;) {
      const char *stop = memchr (p, sep, (size_t) (end - p));
      const char *e = p;
      size_t elen = (size_t) ((stop ? stop : end) - p);

      no++;
      mh_trim (&e, &elen);
      if (comments && (elen == 0 || e[0] == '#')) {
         /* skipped */
      } else if (elen == 0) {
         mh_keyring_destroy (ring);
         mh_entry_fail (error, where, unit, no, NULL, "the entry is empty (expected id:base64key)");
         return NULL;
      } else if (!mh_keyring_add (ring, e, elen, where, unit, no, error)) {
         mh_keyring_destroy (ring);
         return NULL;
      }
      if (!stop) {
         break;
      }
      p = stop + 1;
   }
   if (ring->n == 0) {
      mh_keyring_destroy (ring);
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s holds no key: give one or more id:base64key entries, the current key "
               "first",
               where);
      return NULL;
   }
   return ring;
}

mh_keyring_t *
mh_keyring_parse (const char *spec, const char *source, mongo_helper_error_t *error)
{
   const char *where = source && *source ? source : "key ring";
   const char *s = spec;
   size_t len;

   mh_error_clear (error);
   if (!spec) {
      mh_fail (error, MONGO_HELPER_ERROR_CONFIG, 0, "%s: no key ring given (NULL)", where);
      return NULL;
   }
   len = strlen (spec);
   mh_trim (&s, &len);
   if (len == 0) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s is empty: give one or more id:base64key entries, the current key first",
               where);
      return NULL;
   }
   return mh_keyring_parse_text (spec, strlen (spec), ',', false, where, "entry", error);
}

mh_keyring_t *
mh_keyring_load_file (const char *path, const char *source, mongo_helper_error_t *error)
{
   char where[512];
   char *buf = NULL;
   size_t len = 0;
   struct stat st;
   mh_keyring_t *ring = NULL;
   int fd;

   mh_error_clear (error);
   if (!path || !*path) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: no key file path given",
               source && *source ? source : "key file");
      return NULL;
   }
   if (source && *source) {
      snprintf (where, sizeof where, "%s, key file %s", source, path);
   } else {
      snprintf (where, sizeof where, "key file %s", path);
   }
   /* O_NONBLOCK: opening a FIFO put in the key file's place must not hang;
    * it is refused below as not a regular file.  Symbolic links are
    * followed (secret volumes are made of them); the checks are on what
    * was opened. */
   fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
   if (fd < 0) {
      mh_fail (error, MONGO_HELPER_ERROR_CONFIG, 0, "%s: cannot open: %s", where, strerror (errno));
      return NULL;
   }
   if (fstat (fd, &st) != 0) {
      mh_fail (error, MONGO_HELPER_ERROR_CONFIG, 0, "%s: cannot stat: %s", where, strerror (errno));
   } else if (!S_ISREG (st.st_mode)) {
      mh_fail (error, MONGO_HELPER_ERROR_CONFIG, 0, "%s: not a regular file", where);
   } else if (st.st_mode & S_IRWXO) {
      /* Keys every local user can read are not secret; group access is
       * allowed (a service group sharing the file, mode 0640). */
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: other users have access to it (mode %04o): restrict it with "
               "chmod o-rwx (e.g. mode 0600 or 0640)",
               where,
               (unsigned) (st.st_mode & 07777));
   } else if (st.st_size > MH_KEY_FILE_MAX) {
      mh_fail (error,
               MONGO_HELPER_ERROR_CONFIG,
               0,
               "%s: %lld bytes, more than a key file holds (at most %d)",
               where,
               (long long) st.st_size,
               MH_KEY_FILE_MAX);
   } else {
      ssize_t r = 0;

      /* One byte more than allowed, to see a file that grew meanwhile. */
      buf = bson_malloc (MH_KEY_FILE_MAX + 1);
      while (len <= MH_KEY_FILE_MAX && ((r = read (fd, buf + len, MH_KEY_FILE_MAX + 1 - len)) > 0 ||
                                        (r < 0 && errno == EINTR))) {
         len += r > 0 ? (size_t) r : 0;
      }
      if (r < 0) {
         mh_fail (
            error, MONGO_HELPER_ERROR_CONFIG, 0, "%s: cannot read: %s", where, strerror (errno));
      } else if (len > MH_KEY_FILE_MAX) {
         mh_fail (error,
                  MONGO_HELPER_ERROR_CONFIG,
                  0,
                  "%s: more than a key file holds (at most %d bytes)",
                  where,
                  MH_KEY_FILE_MAX);
      } else if (memchr (buf, '\0', len)) {
         mh_fail (error, MONGO_HELPER_ERROR_CONFIG, 0, "%s: holds a NUL byte, not text", where);
      } else {
         ring = mh_keyring_parse_text (buf, len, '\n', true, where, "line", error);
      }
   }
   close (fd);
   if (buf) {
      mh_cleanse (buf, len);
      bson_free (buf);
   }
   return ring;
}

void
mh_keyring_destroy (mh_keyring_t *ring)
{
   if (ring) {
      mh_cleanse (ring, sizeof *ring);
      bson_free (ring);
   }
}

mh_keyring_t *
mh_keyring_dup (const mh_keyring_t *ring)
{
   mh_keyring_t *copy;

   if (!ring) {
      return NULL;
   }
   copy = bson_malloc (sizeof *copy);
   memcpy (copy, ring, sizeof *copy);
   return copy;
}

size_t
mh_keyring_count (const mh_keyring_t *ring)
{
   return ring ? ring->n : 0;
}

const char *
mh_keyring_id (const mh_keyring_t *ring, size_t i)
{
   return ring && i < ring->n ? ring->keys[i].id : NULL;
}

/* ---- Sealed records --------------------------------------------------- */

bool
mh_record_aad (bson_t *aad,
               const char *collection,
               const bson_value_t *id,
               mongo_helper_error_t *error)
{
   bson_init (aad);
   if (!collection || !id) {
      return mh_fail (
         error, MONGO_HELPER_ERROR_INVALID_ARGUMENT, 0, "mh_record_aad: collection or id is NULL");
   }
   if (!BSON_APPEND_UTF8 (aad, "c", collection) || !bson_append_value (aad, "i", 1, id)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "the record's identity exceeds the BSON size limit");
   }
   return true;
}

/* The associated data GCM authenticates: the envelope's version and key
 * id, then the caller's record identity.  The key id is length-prefixed
 * so no two (id, aad) pairs give the same bytes.  Returns a buffer to
 * free with bson_free when it is not `local`. */
static uint8_t *
mh_seal_aad (uint8_t local[2 + MH_KEY_ID_MAX + 256],
             const char *key_id,
             const uint8_t *aad,
             size_t aad_len,
             size_t *total)
{
   size_t id_len = strlen (key_id);
   size_t head = 2 + id_len;
   uint8_t *buf = head + aad_len <= 2 + MH_KEY_ID_MAX + 256 ? local : bson_malloc (head + aad_len);

   buf[0] = MH_SEALED_VERSION;
   buf[1] = (uint8_t) id_len;
   memcpy (buf + 2, key_id, id_len);
   if (aad_len > 0) {
      memcpy (buf + head, aad, aad_len);
   }
   *total = head + aad_len;
   return buf;
}

bool
mh_seal (const mh_keyring_t *ring,
         const uint8_t *aad,
         size_t aad_len,
         const uint8_t *plain,
         size_t len,
         bson_t *parent,
         const char *field,
         mongo_helper_error_t *error)
{
   uint8_t nonce[MH_AEAD_NONCE_LEN];
   uint8_t local[2 + MH_KEY_ID_MAX + 256];
   uint8_t *full, *sealed;
   size_t full_len;
   const mh_key_t *k;
   bson_t env;
   bool ok;

   mh_error_clear (error);
   if (!ring || ring->n == 0 || !parent || !field || (!plain && len > 0) || (!aad && aad_len > 0)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mh_seal: key ring, destination, field, payload or associated data "
                      "is NULL");
   }
   if (len > MH_MAX_BSON || aad_len > MH_MAX_BSON) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "the payload to encrypt is %zu bytes, more than a document holds (%d)",
                      len,
                      MH_MAX_BSON);
   }
   if (!mh_random_bytes (nonce, sizeof nonce)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INTERNAL,
                      0,
                      "encryption failed: OpenSSL's random generator gave no nonce");
   }
   k = &ring->keys[0];
   full = mh_seal_aad (local, k->id, aad, aad_len, &full_len);
   sealed = bson_malloc (len + MH_AEAD_TAG_LEN);
   ok = mh_aead_seal (k->key, nonce, full, full_len, plain, len, sealed);
   if (full != local) {
      bson_free (full);
   }
   if (!ok) {
      bson_free (sealed);
      return mh_fail (
         error, MONGO_HELPER_ERROR_INTERNAL, 0, "encryption failed: OpenSSL's AES-256-GCM failed");
   }
   ok = bson_append_document_begin (parent, field, -1, &env) &&
        BSON_APPEND_INT32 (&env, "v", MH_SEALED_VERSION) && BSON_APPEND_UTF8 (&env, "k", k->id) &&
        bson_append_binary (&env, "n", 1, BSON_SUBTYPE_BINARY, nonce, sizeof nonce) &&
        bson_append_binary (
           &env, "c", 1, BSON_SUBTYPE_BINARY, sealed, (uint32_t) (len + MH_AEAD_TAG_LEN)) &&
        bson_append_document_end (parent, &env);
   bson_free (sealed);
   if (!ok) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "the encrypted payload does not fit in the document (BSON size limit)");
   }
   return true;
}

/* INTEGRITY error with one of the MH_INTEGRITY_* codes. */
static bool mh_integrity_fail (mongo_helper_error_t *error, int32_t code, const char *fmt, ...)
   BSON_GNUC_PRINTF (3, 4);

static bool
mh_integrity_fail (mongo_helper_error_t *error, int32_t code, const char *fmt, ...)
{
   char detail[MONGO_HELPER_ERROR_MESSAGE_SIZE];
   va_list ap;

   va_start (ap, fmt);
   vsnprintf (detail, sizeof detail, fmt, ap);
   va_end (ap);
   return mh_fail (error, MONGO_HELPER_ERROR_INTEGRITY, code, "%s", detail);
}

static bool
mh_malformed (mongo_helper_error_t *error, const char *what)
{
   return mh_integrity_fail (error,
                             MH_INTEGRITY_MALFORMED,
                             "the encrypted record is malformed (%s): it was truncated or "
                             "altered and cannot be read",
                             what);
}

/* The next field of the envelope, which must be `key` of `type`. */
static bool
mh_env_next (bson_iter_t *it, const char *key, bson_type_t type)
{
   return bson_iter_next (it) && strcmp (bson_iter_key (it), key) == 0 &&
          bson_iter_type (it) == type;
}

static bool
mh_env_binary (bson_iter_t *it, const char *key, const uint8_t **data, uint32_t *len)
{
   bson_subtype_t sub;

   if (!mh_env_next (it, key, BSON_TYPE_BINARY)) {
      return false;
   }
   bson_iter_binary (it, &sub, len, data);
   return sub == BSON_SUBTYPE_BINARY;
}

bool
mh_open (const mh_keyring_t *ring,
         const uint8_t *aad,
         size_t aad_len,
         const bson_iter_t *sealed,
         mh_opened_t *out,
         mongo_helper_error_t *error)
{
   const uint8_t *doc, *nonce, *ct;
   uint32_t doc_len, nonce_len, ct_len, id_len = 0;
   uint8_t local[2 + MH_KEY_ID_MAX + 256];
   uint8_t *full;
   size_t full_len, i;
   const char *id;
   bson_t env;
   bson_iter_t it;
   bool ok;

   mh_error_clear (error);
   if (out) {
      memset (out, 0, sizeof *out);
   }
   if (!ring || ring->n == 0 || !sealed || !out || (!aad && aad_len > 0)) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mh_open: key ring, record, result or associated data is NULL");
   }
   if (aad_len > MH_MAX_BSON) {
      return mh_fail (error,
                      MONGO_HELPER_ERROR_INVALID_ARGUMENT,
                      0,
                      "mh_open: associated data of %zu bytes",
                      aad_len);
   }
   if (!BSON_ITER_HOLDS_DOCUMENT (sealed)) {
      return mh_malformed (error, "not a document {v, k, n, c}");
   }
   /* No bson_validate(): the walk below checks every element's bounds
    * (bson_iter_next), the one string's characters (mh_key_id_ok) and
    * that 'c' ends at the terminating byte, which is all four fields
    * can hold, for a tenth of its instructions. */
   bson_iter_document (sealed, &doc_len, &doc);
   if (!bson_init_static (&env, doc, doc_len) || !bson_iter_init (&it, &env)) {
      return mh_malformed (error, "not well-formed BSON");
   }
   if (!mh_env_next (&it, "v", BSON_TYPE_INT32)) {
      return mh_malformed (error, "the first field is not the version 'v', an int32");
   }
   if (bson_iter_int32 (&it) != MH_SEALED_VERSION) {
      return mh_integrity_fail (error,
                                MH_INTEGRITY_MALFORMED,
                                "the encrypted record has envelope version %" PRId32
                                ", this library reads version %d: it was written by another "
                                "version of mongo_helper, or altered",
                                bson_iter_int32 (&it),
                                MH_SEALED_VERSION);
   }
   if (!mh_env_next (&it, "k", BSON_TYPE_UTF8)) {
      return mh_malformed (error, "the second field is not the key id 'k', a string");
   }
   id = bson_iter_utf8 (&it, &id_len);
   if (!mh_key_id_ok (id, id_len)) {
      return mh_malformed (error, "the key id is not 1 to 32 characters among A-Z a-z 0-9 _ -");
   }
   if (!mh_env_binary (&it, "n", &nonce, &nonce_len) || nonce_len != MH_AEAD_NONCE_LEN) {
      return mh_malformed (error, "the third field is not the nonce 'n', 12 bytes of binary");
   }
   if (!mh_env_binary (&it, "c", &ct, &ct_len) || ct_len < MH_AEAD_TAG_LEN) {
      return mh_malformed (
         error, "the fourth field is not the ciphertext 'c', at least 16 bytes of binary");
   }
   if ((size_t) (ct + ct_len - doc) != (size_t) doc_len - 1u) {
      return mh_malformed (error, "a field after 'c'");
   }
   for (i = 0; i < ring->n && strcmp (ring->keys[i].id, id) != 0; i++) {
   }
   if (i == ring->n) {
      return mh_integrity_fail (error,
                                MH_INTEGRITY_UNKNOWN_KEY,
                                "the encrypted record uses key '%s', which is not in the key "
                                "ring (current key '%s'): add that key to the ring, after the "
                                "current one, at least until a rekey has re-encrypted every "
                                "record",
                                id,
                                ring->keys[0].id);
   }
   full = mh_seal_aad (local, ring->keys[i].id, aad, aad_len, &full_len);
   out->len = ct_len - MH_AEAD_TAG_LEN;
   out->data = bson_malloc (out->len + 1);
   ok = mh_aead_open (ring->keys[i].key, nonce, full, full_len, ct, ct_len, out->data);
   if (full != local) {
      bson_free (full);
   }
   if (!ok) {
      mh_opened_clear (out);
      return mh_integrity_fail (error,
                                MH_INTEGRITY_FORGED,
                                "the encrypted record does not authenticate with key '%s': it "
                                "was altered, copied from another record, or sealed with "
                                "other key bytes under the same id",
                                ring->keys[i].id);
   }
   out->data[out->len] = '\0';
   out->key_id = ring->keys[i].id;
   out->stale = i != 0;
   return true;
}

void
mh_opened_clear (mh_opened_t *opened)
{
   if (opened) {
      if (opened->data) {
         mh_cleanse (opened->data, opened->len);
         bson_free (opened->data);
      }
      memset (opened, 0, sizeof *opened);
   }
}
