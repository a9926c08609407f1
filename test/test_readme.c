/*
** test_readme.c -- the README's example, extracted as written by the
** Makefile (build/readme/readme_example), run as a user runs it: in a
** fresh directory (it opens ./store), where it must print "sent <msgId>"
** and "got hello" and exit with 0, ten times over (the example once raced
** its consumer's start against its destroy); then again on the same store,
** where the group's stored offset gives it exactly the new message.
*/
#include "test_util.h"

#include <sys/wait.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_clock_advance; (void)tu_clock_read; (void)tu_small_opts; (void)tu_store_path;
  (void)tu_make_body; (void)tu_body_check; (void)tu_java_hash; (void)tu_read_exact; (void)tu_wait_atleast;
  (void)tu_mq; (void)tu_count_files; (void)tu_store_remove;
}

static char g_exe[8192];

/* Runs the example in dir; *out gets its stdout. Returns its exit status. */
static int run_in(const char *dir, char *out, size_t cap)
{
  char cmd[16384];
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s'", dir, g_exe);
  FILE *f = popen(cmd, "r");
  assert_non_null(f);
  size_t n = fread(out, 1, cap - 1, f);
  out[n] = 0;
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int count_lines(const char *text, const char *prefix)
{
  int n = 0;
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    n += !strncmp(p, prefix, strlen(prefix));
  return n;
}

static void test_readme_example(void **state)
{
  (void)state;
  char out[8192];
  for (int i = 0; i < 10; i++) {
    char dir[1024];
    tu_tmpdir(dir, sizeof dir, "readme");
    assert_int_equal(run_in(dir, out, sizeof out), 0);
    if (count_lines(out, "sent ") != 1 || count_lines(out, "got hello") != 1) fail_msg("run %d printed:\n%s", i, out);
    if (i == 9) {
      /* Again on the same store: only the new message. */
      assert_int_equal(run_in(dir, out, sizeof out), 0);
      assert_int_equal(count_lines(out, "got hello"), 1);
      char store[1100];
      snprintf(store, sizeof store, "%s/store", dir);
      tu_rmqstore_check(store);
    }
    tu_rm_rf(dir);
  }
}

int main(int argc, char **argv)
{
  /* build/test/test_readme -> build/readme/readme_example */
  char self[4096];
  snprintf(self, sizeof self, "%s", argc > 0 ? argv[0] : "");
  char *slash = strrchr(self, '/');
  if (slash) *slash = 0;
  else snprintf(self, sizeof self, ".");
  char abs[4096];
  if (!realpath(self, abs)) snprintf(abs, sizeof abs, "%s", self);
  snprintf(g_exe, sizeof g_exe, "%s/../readme/readme_example", abs);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_readme_example),
  };
  return cmocka_run_group_tests_name("readme", tests, NULL, NULL);
}
