/* src/redact.c: credentials hidden in URIs and key=value text.  No
 * server needed. */
#include "mh_test.h"

START_TEST (redact_hides_passwords_in_uris_and_key_values)
{
   char out[256];

   mongo_helper_redact ("connect mongodb://app:s3cr%40t@h1,h2/db failed", out, sizeof out);
   ck_assert_str_eq (out, "connect mongodb://app:****@h1,h2/db failed");
   mongo_helper_redact ("mongodb+srv://u:p@ss@x.net/?password=abc&w=1", out, sizeof out);
   ck_assert_str_eq (out, "mongodb+srv://u:****@x.net/?password=****&w=1");
   mongo_helper_redact ("mongodb://onlyuser@h/db", out, sizeof out);
   ck_assert_str_eq (out, "mongodb://onlyuser@h/db");
   mongo_helper_redact (NULL, out, sizeof out);
   ck_assert_str_eq (out, "");
   ck_assert_uint_eq (mongo_helper_redact ("mongodb://a:b@c", out, 8), 7);
}
END_TEST

Suite *
redact_suite (void)
{
   Suite *s = suite_create ("redact");
   TCase *core = tcase_create ("core");

   tcase_add_checked_fixture (core, mh_test_bare_setup, mh_test_teardown);
   tcase_add_test (core, redact_hides_passwords_in_uris_and_key_values);
   suite_add_tcase (s, core);
   return s;
}
