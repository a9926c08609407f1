/*
** test_install.c -- packaging: `make install` to one PREFIX, then to a
** second (and with its own LIBDIR) from the same build directory; each
** install's rmq.pc must name the directories it was installed to, the
** header, the rmq(3) reference and rmqadmin must be there (rmqadmin runs),
** and a program built from the second install's rmq.pc (pkg-config when
** present) must link and run.
** The Makefile compiles this file with RMQ_SRC_DIR and RMQ_BUILD_DIR.
*/
#include "test_util.h"

#include <sys/wait.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_clock_advance; (void)tu_clock_read; (void)tu_small_opts; (void)tu_store_path;
  (void)tu_make_body; (void)tu_body_check; (void)tu_java_hash; (void)tu_read_exact; (void)tu_wait_atleast;
  (void)tu_mq; (void)tu_count_files; (void)tu_store_remove; (void)tu_rmqstore_check;
}

#ifndef RMQ_SRC_DIR
#error "build with -DRMQ_SRC_DIR and -DRMQ_BUILD_DIR (the Makefile does)"
#endif

static int sh(const char *fmt, const char *a, const char *b, const char *c)
{
  char cmd[8192];
  snprintf(cmd, sizeof cmd, fmt, a, b, c);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int file_has(const char *path, const char *text)
{
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return strstr(buf, text) != NULL;
}

/* make install PREFIX=prefix [LIBDIR=libdir], quietly, outside any outer make. */
static void install_to(const char *prefix, const char *libdir)
{
  char extra[2048] = "";
  if (libdir) snprintf(extra, sizeof extra, "LIBDIR='%s'", libdir);
  int rc = sh("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C '" RMQ_SRC_DIR "' B='" RMQ_BUILD_DIR
              "' PREFIX='%s' %s install >/dev/null%s",
              prefix, extra, "");
  assert_int_equal(rc, 0);
}

static void expect_pc(const char *prefix, const char *libdir)
{
  char pc[2048], line[2048];
  snprintf(pc, sizeof pc, "%s/pkgconfig/rmq.pc", libdir);
  snprintf(line, sizeof line, "prefix=%s\n", prefix);
  if (!file_has(pc, line)) fail_msg("%s does not say %s", pc, line);
  snprintf(line, sizeof line, "libdir=%s\n", libdir);
  if (!file_has(pc, line)) fail_msg("%s does not say %s", pc, line);
  snprintf(line, sizeof line, "includedir=%s/include\n", prefix);
  if (!file_has(pc, line)) fail_msg("%s does not say %s", pc, line);
}

static void test_install_two_prefixes(void **state)
{
  (void)state;
  char dir[1024], a[1100], alib[1200], bp[1100], blib[1200], c[1100], clib[1200], path[1400];
  tu_tmpdir(dir, sizeof dir, "install");
  snprintf(a, sizeof a, "%s/first", dir);
  snprintf(alib, sizeof alib, "%s/lib", a);
  snprintf(bp, sizeof bp, "%s/second", dir);
  snprintf(blib, sizeof blib, "%s/lib", bp);
  snprintf(c, sizeof c, "%s/third", dir);
  snprintf(clib, sizeof clib, "%s/lib64", c);
  install_to(a, NULL);
  expect_pc(a, alib);
  install_to(bp, NULL);
  expect_pc(bp, blib);
  expect_pc(a, alib); /* the first install is left as it was */
  install_to(c, clib);
  expect_pc(c, clib);
  snprintf(path, sizeof path, "%s/include/rmq.h", bp);
  assert_true(file_has(path, "rmq_broker_open"));
  snprintf(path, sizeof path, "%s/share/man/man3/rmq.3", bp);
  assert_true(file_has(path, ".TH RMQ 3"));
  assert_true(file_has(path, "rmq_broker_open"));
  snprintf(path, sizeof path, "%s/librmq.so", blib);
  assert_int_equal(access(path, F_OK), 0);
  /* rmqadmin is installed beside them and runs. */
  snprintf(path, sizeof path, "%s/bin/rmqadmin", bp);
  assert_int_equal(access(path, X_OK), 0);
  assert_int_equal(sh("'%s' -h | grep -q '^   checkStore '%s%s", path, "", ""), 0);
  assert_int_equal(sh("'%s' help topicStatus | grep -q -- '-t,--topic'%s%s", path, "", ""), 0);

  /* A program built from the second install's rmq.pc links and runs. */
  char src[1200], exe[1200];
  snprintf(src, sizeof src, "%s/app.c", dir);
  snprintf(exe, sizeof exe, "%s/app", dir);
  FILE *f = fopen(src, "w");
  assert_non_null(f);
  fputs("#include <rmq.h>\n#include <stdio.h>\n#include <string.h>\n"
        "int main(void) { puts(rmq_libversion()); return strcmp(rmq_libversion(), RMQ_VERSION) != 0; }\n", f);
  fclose(f);
  int have_pkgconfig = sh("command -v pkg-config >/dev/null%s%s%s", "", "", "") == 0;
  char flags[4096];
  if (have_pkgconfig)
    snprintf(flags, sizeof flags, "$(PKG_CONFIG_PATH='%s/pkgconfig' pkg-config --cflags --libs rmq)", blib);
  else
    snprintf(flags, sizeof flags, "-I'%s/include' -L'%s' -lrmq", bp, blib);
  assert_int_equal(sh("cc -o '%s' '%s' %s", exe, src, flags), 0);
  assert_int_equal(sh("LD_LIBRARY_PATH='%s' '%s' >/dev/null%s", blib, exe, ""), 0);
  print_message("  installed to 3 prefixes; app built with %s\n", have_pkgconfig ? "pkg-config" : "rmq.pc's paths");
  tu_rm_rf(dir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_install_two_prefixes),
  };
  return cmocka_run_group_tests_name("install", tests, NULL, NULL);
}
