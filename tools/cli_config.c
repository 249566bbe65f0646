/*
 * cli_config.c — mongo-helper config: the resolved configuration, every
 * setting with its value and where it came from.  Never connects.
 */
#include "mh_cli.h"

static void
append_or_null (bson_t *doc, const char *key, const char *value)
{
   if (value) {
      BSON_APPEND_UTF8 (doc, key, value);
   } else {
      BSON_APPEND_NULL (doc, key);
   }
}

static void
print_json (const mh_cli_t *cli, const mongo_helper_config_t *c)
{
   bson_t doc = BSON_INITIALIZER, settings, one;
   mongo_helper_setting_t st;
   mongo_helper_error_t err;

   BSON_APPEND_UTF8 (&doc, "uri", mongo_helper_config_uri_redacted (c));
   BSON_APPEND_UTF8 (&doc, "uri_source", mongo_helper_config_source (c));
   BSON_APPEND_UTF8 (&doc, "effective_uri", mongo_helper_config_effective_uri_redacted (c));
   BSON_APPEND_UTF8 (&doc, "database", mongo_helper_config_database (c));
   BSON_APPEND_ARRAY_BEGIN (&doc, "settings", &settings);
   for (size_t i = 0; mongo_helper_config_setting (c, i, &st, &err); i++) {
      char key[16];
      const char *k;

      bson_uint32_to_string ((uint32_t) i, &k, key, sizeof key);
      BSON_APPEND_DOCUMENT_BEGIN (&settings, k, &one);
      BSON_APPEND_UTF8 (&one, "name", st.name);
      append_or_null (&one, "value", st.value);
      BSON_APPEND_UTF8 (&one, "source", mongo_helper_source_name (st.source));
      BSON_APPEND_UTF8 (&one, "source_text", st.source_text);
      append_or_null (&one, "env", st.env);
      append_or_null (&one, "uri_option", st.uri_option);
      BSON_APPEND_BOOL (&one, "is_default", st.is_default);
      bson_append_document_end (&settings, &one);
   }
   bson_append_array_end (&doc, &settings);
   mh_cli_print_json (cli, &doc);
   bson_destroy (&doc);
}

static void
print_text (const mongo_helper_config_t *c)
{
   mongo_helper_setting_t st;
   mongo_helper_error_t err;

   printf ("uri:        %s\n", mongo_helper_config_uri_redacted (c));
   printf ("from:       %s\n", mongo_helper_config_source (c));
   printf ("effective:  %s\n", mongo_helper_config_effective_uri_redacted (c));
   printf ("\n%-30s %-20s %s\n", "SETTING", "VALUE", "SOURCE");
   for (size_t i = 0; mongo_helper_config_setting (c, i, &st, &err); i++) {
      printf ("%-30s %-20s %s\n", st.name, st.value ? st.value : "(none)", st.source_text);
   }
}

static int
run (mh_cli_t *cli)
{
   mongo_helper_error_t err;
   mongo_helper_config_t *c;

   if (cli->n_args) {
      return mh_cli_usage (cli, "takes no arguments");
   }
   c = mongo_helper_config_new (cli->config_path, cli->uri, &err);
   if (!c) {
      return mh_cli_fail (cli, &err);
   }
   if (mh_cli_opt (cli, "json")) {
      print_json (cli, c);
   } else if (!cli->quiet) {
      print_text (c);
   }
   mongo_helper_config_destroy (c);
   return MH_EXIT_OK;
}

static const mh_cli_opt_t opts[] = {
   {"json", 0, NULL, "one JSON object: uri, uri_source, effective_uri, database, settings"},
   {NULL, 0, NULL, NULL}};

const mh_cli_cmd_t mh_cli_config_cmd = {
   "config",
   "[--json]",
   "the resolved configuration: URI, database, every setting and its source",
   "Resolves the configuration exactly as the library does (--uri, MONGO_CACHE_URI,\n"
   "[db] mongo_uri, MONGO_URI, MONGO_HOST and friends, the default; settings from\n"
   "the URI, the environment, the INI file, connection_options or the default)\n"
   "without connecting.  'effective' is the URI libmongoc parses, every setting\n"
   "appended.  Passwords are never shown; credential options show as ****.\n"
   "Exit status 3 when the configuration is invalid.",
   opts,
   run,
   NULL};
