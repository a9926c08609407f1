/*
** test_util.h -- helpers shared by the cmocka tests: temporary store
** directories, a fake clock, bounded waiting. Header-only (static).
*/
#ifndef RMQ_TEST_UTIL_H
#define RMQ_TEST_UTIL_H

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <signal.h>
#include <cmocka.h>

#include "rmq.h"

/* Asserts rc == RMQ_OK and shows rmq_errmsg() when it is not. */
#define ok(expr)                                                                       \
  do {                                                                                 \
    int rc_ = (expr);                                                                  \
    if (rc_ != RMQ_OK) fail_msg("%s -> %d (%s): %s", #expr, rc_, rmq_errstr(rc_), rmq_errmsg()); \
  } while (0)

static inline int tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st; (void)flag; (void)ftw;
  return remove(path);
}

static inline void tu_rm_rf(const char *dir) { nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh empty directory under $TMPDIR (or /tmp); buf receives its path. */
static inline void tu_tmpdir(char *buf, size_t n, const char *tag)
{
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  snprintf(buf, n, "%s/rmq-test-%s-XXXXXX", base, tag);
  if (!mkdtemp(buf)) fail_msg("mkdtemp %s failed", buf);
}

/* A store directory path inside a fresh temp dir (the store itself is made
** by rmq_broker_open). */
static inline void tu_store_path(char *buf, size_t n, const char *tag)
{
  char d[512];
  tu_tmpdir(d, sizeof d, tag);
  if (snprintf(buf, n, "%s/store", d) >= (int)n) fail_msg("store path too long: %s/store", d);
}

static inline void tu_store_remove(const char *store_path)
{
  char d[1024];
  snprintf(d, sizeof d, "%s", store_path);
  char *slash = strrchr(d, '/');
  if (slash) *slash = 0;
  tu_rm_rf(d);
}

/* A clock tests move by hand. */
typedef struct tu_clock {
  _Atomic int64_t now_ms;
} tu_clock;

static inline int64_t tu_clock_read(void *ctx) { return atomic_load(&((tu_clock *)ctx)->now_ms); }

static inline void tu_clock_advance(tu_clock *c, int64_t ms) { atomic_fetch_add(&c->now_ms, ms); }

static inline int64_t tu_mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to timeout_ms for *counter >= want, polling every 2 ms. */
static inline int tu_wait_atleast(atomic_int *counter, int want, int timeout_ms)
{
  int64_t end = tu_mono_ms() + timeout_ms;
  while (atomic_load(counter) < want) {
    if (tu_mono_ms() > end) return 0;
    usleep(2000);
  }
  return 1;
}

/* Queue qid of topic (no broker name: rmq has one broker). */
static inline rmq_message_queue tu_mq(const char *topic, int qid)
{
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "%s", topic);
  mq.queue_id = qid;
  return mq;
}

/* How many entries of dir have a 20-digit name (a store's data files); 0
** when dir cannot be opened. */
static inline int tu_count_files(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += strlen(e->d_name) == 20 && strspn(e->d_name, "0123456789") == 20;
  closedir(d);
  return n;
}

/* The path of an index file of store (the one readdir lists last; a
** 17-digit name), or fails the test when there is none. */
static inline void tu_index_file(const char *store, char *buf, size_t n)
{
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/index", store);
  DIR *d = opendir(dir);
  assert_non_null(d);
  buf[0] = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strlen(e->d_name) == 17) snprintf(buf, n, "%s/%s", dir, e->d_name);
  closedir(d);
  assert_true(buf[0]);
}

/* Collects log lines (thread-safe) so tests can look for recovery reports. */
typedef struct tu_log {
  char text[16384];
  size_t len;
  int count;
} tu_log;

static inline void tu_log_fn(void *ctx, int level, const char *msg)
{
  static __thread int busy;
  (void)level;
  tu_log *l = ctx;
  if (busy) return;
  busy = 1;
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  int n = snprintf(l->text + l->len, sizeof l->text - l->len, "%s\n", msg);
  if (n > 0 && l->len + (size_t)n < sizeof l->text) l->len += (size_t)n;
  l->count++;
  pthread_mutex_unlock(&mu);
  busy = 0;
}

/* Broker options for store tests: 64 KiB CommitLog files (so a few hundred
** messages roll over), 1024-unit ConsumeQueue files, no service thread (the
** test drives time), and the log into *log when given. */
#define TU_CL_SIZE 65536
static inline void tu_small_opts(rmq_broker_options *o, tu_log *log)
{
  rmq_broker_options_init(o);
  o->mapped_file_size_commit_log = TU_CL_SIZE;
  o->mapped_file_size_consume_queue = 20 * 1024;
  o->service_thread = 0;
  if (log) {
    o->log = tu_log_fn;
    o->log_ctx = log;
    o->log_level = RMQ_LOG_INFO;
  }
}

/* Reads exactly n bytes of path at off, or fails the test. */
static inline void tu_read_exact(const char *path, int64_t off, void *buf, size_t n)
{
  int fd = open(path, O_RDONLY);
  if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
  ssize_t got = pread(fd, buf, n, (off_t)off);
  close(fd);
  if (got != (ssize_t)n) fail_msg("pread %s @%lld: got %zd of %zu bytes", path, (long long)off, got, n);
}

/* ---- references written from the docs, independent of the library ------ */

/* Java's String.hashCode of UTF-8 text: code points to UTF-16 units (one
** above U+FFFF is its two surrogates), h = 31 * h + unit. Valid input only. */
static inline int32_t tu_java_hash(const char *s, size_t n)
{
  const uint8_t *p = (const uint8_t *)s;
  uint32_t h = 0;
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    if (p[i] < 0x80) cp = p[i++];
    else if ((p[i] & 0xE0) == 0xC0) { cp = ((uint32_t)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F); i += 2; }
    else if ((p[i] & 0xF0) == 0xE0) {
      cp = ((uint32_t)(p[i] & 0x0F) << 12) | ((uint32_t)(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
      i += 3;
    } else {
      cp = ((uint32_t)(p[i] & 0x07) << 18) | ((uint32_t)(p[i + 1] & 0x3F) << 12) |
           ((uint32_t)(p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
      i += 4;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      h = 31 * h + (0xD800 + (cp >> 10));
      h = 31 * h + (0xDC00 + (cp & 0x3FF));
    } else {
      h = 31 * h + cp;
    }
  }
  return (int32_t)h;
}

/* Bodies carry their id (16 hex digits) and a filler derived from it, so a
** pulled body proves which message it is and that it is intact. */
static inline void tu_make_body(uint8_t *buf, uint64_t id, size_t len)
{
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)id);
  memcpy(buf, hex, 16);
  for (size_t i = 16; i < len; i++) buf[i] = (uint8_t)(id * 131u + i * 7u);
}

static inline int tu_body_check(const void *body, size_t len, uint64_t *id)
{
  const uint8_t *b = body;
  *id = 0;
  if (len < 16) return 0;
  char hex[17];
  memcpy(hex, b, 16);
  hex[16] = 0;
  char *end;
  *id = strtoull(hex, &end, 16);
  if (*end) return 0;
  for (size_t i = 16; i < len; i++)
    if (b[i] != (uint8_t)(*id * 131u + i * 7u)) return 0;
  return 1;
}

/* Runs ../shared/tools/rmqstore.py check on the store (RMQSTORE_PY may name
** the script); a missing python3 or script is a printed note, anything else
** a failure. */
static inline const char *tu_rmqstore_script(void)
{
  static const char *cands[] = {"../shared/tools/rmqstore.py", "../../../shared/tools/rmqstore.py",
                                "/work/shared/tools/rmqstore.py", NULL};
  const char *script = getenv("RMQSTORE_PY");
  for (int i = 0; (!script || access(script, R_OK) != 0) && cands[i]; i++) script = cands[i];
  if (!script || access(script, R_OK) != 0 || system("python3 -c pass >/dev/null 2>&1") != 0) return NULL;
  return script;
}

static inline void tu_rmqstore_check(const char *store)
{
  const char *script = tu_rmqstore_script();
  if (!script) {
    print_message("note: python3 or rmqstore.py not available; store check of %s skipped\n", store);
    return;
  }
  char cmd[4096], out[2048] = "";
  snprintf(cmd, sizeof cmd, "python3 '%s' check '%s' 2>&1", script, store);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = 0;
  int st = pclose(p);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("rmqstore.py check %s failed (status %d): %s", store, st, out);
}

/* Broker options for tests that drive time by hand: defaults, CommitLog
** files of cl_size bytes, no service threads, the clock clk (set to now). */
static inline void tu_clock_opts(rmq_broker_options *o, int64_t cl_size, tu_clock *clk, int64_t now)
{
  rmq_broker_options_init(o);
  o->mapped_file_size_commit_log = cl_size;
  o->service_thread = 0;
  atomic_store(&clk->now_ms, now);
  o->clock = tu_clock_read;
  o->clock_ctx = clk;
}

/* Copies m's property `name` into out[cap] as a string ("" when absent
** or too long). */
static inline void tu_prop_copy(const rmq_message_ext *e, const char *name, char *out, size_t cap)
{
  const char *v;
  size_t n;
  out[0] = 0;
  if (rmq_message_ext_property(e, name, &v, &n) == RMQ_OK && n < cap) {
    memcpy(out, v, n);
    out[n] = 0;
  }
}

/* A child for tu_kill_child: works on the store at path, writes a byte to
** fd when it reaches the point to be killed at, and waits there. */
typedef void (*tu_child_fn)(const char *path, int arg, int fd);

/* Runs child(path, arg, fd) in a forked process (killed with the test if
** the test dies first) and returns its pid once it wrote its byte. */
static inline pid_t tu_start_child(tu_child_fn child, const char *path, int arg)
{
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    child(path, arg, fds[1]);
    _exit(9);
  }
  close(fds[1]);
  char c;
  assert_int_equal(read(fds[0], &c, 1), 1);
  close(fds[0]);
  return pid;
}

/* Kills a child with SIGKILL and reaps it. */
static inline void tu_reap_killed(pid_t pid)
{
  assert_int_equal(kill(pid, SIGKILL), 0);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st));
}

/* tu_start_child, then a SIGKILL at its byte: a crash at exactly that point. */
static inline void tu_kill_child(tu_child_fn child, const char *path, int arg)
{
  tu_reap_killed(tu_start_child(child, path, arg));
}

#endif
