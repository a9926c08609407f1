/*
** test_util.h -- helpers shared by the cmocka tests: temporary store
** directories, a fake clock, bounded waiting. Header-only (static).
*/
#ifndef RMQ_TEST_UTIL_H
#define RMQ_TEST_UTIL_H

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
#include <pthread.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "rmq.h"

/* Asserts rc == RMQ_OK and shows rmq_errmsg() when it is not. */
#define ok(expr)                                                                       \
  do {                                                                                 \
    int rc_ = (expr);                                                                  \
    if (rc_ != RMQ_OK) fail_msg("%s -> %d (%s): %s", #expr, rc_, rmq_errstr(rc_), rmq_errmsg()); \
  } while (0)

static int tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st; (void)flag; (void)ftw;
  return remove(path);
}

static void tu_rm_rf(const char *dir) { nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh empty directory under $TMPDIR (or /tmp); buf receives its path. */
static void tu_tmpdir(char *buf, size_t n, const char *tag)
{
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  snprintf(buf, n, "%s/rmq-test-%s-XXXXXX", base, tag);
  if (!mkdtemp(buf)) fail_msg("mkdtemp %s failed", buf);
}

/* A store directory path inside a fresh temp dir (the store itself is made
** by rmq_broker_open). */
static void tu_store_path(char *buf, size_t n, const char *tag)
{
  char d[512];
  tu_tmpdir(d, sizeof d, tag);
  snprintf(buf, n, "%s/store", d);
}

static void tu_store_remove(const char *store_path)
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

static int64_t tu_clock_read(void *ctx) { return atomic_load(&((tu_clock *)ctx)->now_ms); }

static void tu_clock_advance(tu_clock *c, int64_t ms) { atomic_fetch_add(&c->now_ms, ms); }

static int64_t tu_mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to timeout_ms for *counter >= want, polling every 2 ms. */
static int tu_wait_atleast(atomic_int *counter, int want, int timeout_ms)
{
  int64_t end = tu_mono_ms() + timeout_ms;
  while (atomic_load(counter) < want) {
    if (tu_mono_ms() > end) return 0;
    usleep(2000);
  }
  return 1;
}

/* Collects log lines (thread-safe) so tests can look for recovery reports. */
typedef struct tu_log {
  char text[16384];
  size_t len;
  int count;
} tu_log;

static void tu_log_fn(void *ctx, int level, const char *msg)
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

#endif
