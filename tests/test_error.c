/* src/error.c: the error categories' names.  No server needed. */
#include "mh_test.h"

START_TEST (category_names_are_stable)
{
   ck_assert_str_eq (mongo_helper_category_name (MONGO_HELPER_ERROR_TIMEOUT), "timeout");
   ck_assert_str_eq (mongo_helper_category_name (MONGO_HELPER_ERROR_DUPLICATE_KEY),
                     "duplicate_key");
   ck_assert_str_eq (mongo_helper_category_name (MONGO_HELPER_ERROR_CONFIG), "config");
   ck_assert_str_eq (mongo_helper_category_name ((mongo_helper_category_t) 999), "unknown");
   ck_assert_str_eq (mongo_helper_version (), MONGO_HELPER_VERSION_STRING);
}
END_TEST

Suite *
error_suite (void)
{
   Suite *s = suite_create ("error");
   TCase *core = tcase_create ("core");

   tcase_add_checked_fixture (core, mh_test_bare_setup, mh_test_teardown);
   tcase_add_test (core, category_names_are_stable);
   suite_add_tcase (s, core);
   return s;
}
