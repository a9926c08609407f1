/*
** bench_util.h -- helpers for bench/rmq_bench.c: failing loudly, clocks,
** the peers' deterministic message bodies and checksum, a latency
** histogram, and store-directory chores (remove, size, syncfs).
**
** Everything is static inline so a bench that uses part of it stays
** warning-free. The bodies and fold() are byte for byte those of
** ../shared/peers/peers.c, so both write and check the same data.
*/
#ifndef RMQ_BENCH_UTIL_H
#define RMQ_BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rmq.h"

#define BODY 128

static inline void fail(const char *what, const char *why)
{
  fflush(stdout);
  fprintf(stderr, "rmq_bench: %s: %s\n", what, why);
  exit(1);
}

static inline void fail_errno(const char *what)
{
  fail(what, strerror(errno));
}

/* For a failed rmq call: its code's name and the thread's message. */
static inline void fail_rmq(const char *what, int rc)
{
  char why[700];
  snprintf(why, sizeof why, "%s (%s)", rmq_errstr(rc), rmq_errmsg());
  fail(what, why);
}

static inline void *xmalloc(size_t n)
{
  void *p = calloc(1, n ? n : 1);
  if (!p) fail("calloc", strerror(errno));
  return p;
}

static inline uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double now_s(void)
{
  return (double)now_ns() * 1e-9;
}

/* Body of message seq: 16 splitmix64 words (as peers.c). */
static inline void make_body(uint64_t seq, unsigned char *out)
{
  uint64_t x = seq * 0xD1B54A32D192ED03ull;
  for (int i = 0; i < BODY / 8; i++) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    memcpy(out + 8 * i, &z, 8);
  }
}

/* Checksum of one body (as peers.c); a consumer has to touch what it gets. */
static inline uint64_t fold(const void *body)
{
  const unsigned char *b = body;
  uint64_t h = 0;
  for (int i = 0; i < BODY / 8; i++) {
    uint64_t w;
    memcpy(&w, b + 8 * i, 8);
    h = (h ^ w) * 0x100000001B3ull;
  }
  return h;
}

/* ------------------------------------------------------------------------ */
/* Latency histogram: log-linear, 64 sub-buckets per power of two (values   */
/* below 128 ns exact), so a percentile is within 1/64 of the true value.   */
/* Not thread-safe: one per thread, merged afterwards.                      */
/* ------------------------------------------------------------------------ */

#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * 60)

typedef struct hist {
  uint64_t c[HIST_BUCKETS];
  uint64_t n;
  uint64_t max;
} hist;

static inline int hist_index(uint64_t v)
{
  if (v < 2 * HIST_SUB) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - HIST_SUB_BITS;
  int idx = (shift + 1) * HIST_SUB + (int)((v >> shift) & (HIST_SUB - 1));
  return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The middle of bucket idx's value range. */
static inline double hist_value(int idx)
{
  if (idx < 2 * HIST_SUB) return idx;
  int shift = idx / HIST_SUB - 1;
  uint64_t lo = (uint64_t)(HIST_SUB + idx % HIST_SUB) << shift;
  return (double)lo + (double)(1ull << shift) / 2;
}

static inline void hist_add(hist *h, uint64_t ns)
{
  h->c[hist_index(ns)]++;
  h->n++;
  if (ns > h->max) h->max = ns;
}

static inline void hist_merge(hist *dst, const hist *src)
{
  for (int i = 0; i < HIST_BUCKETS; i++) dst->c[i] += src->c[i];
  dst->n += src->n;
  if (src->max > dst->max) dst->max = src->max;
}

/* Nearest-rank percentile in microseconds; pm in per mille. */
static inline double hist_pct_us(const hist *h, unsigned pm)
{
  if (!h->n) return 0;
  uint64_t k = (h->n * pm + 999) / 1000, seen = 0;
  if (!k) k = 1;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->c[i];
    if (seen >= k) {
      double v = hist_value(i);
      return (v > (double)h->max ? (double)h->max : v) / 1000.0;
    }
  }
  return (double)h->max / 1000.0;
}

/* ------------------------------------------------------------------------ */
/* Directories                                                              */
/* ------------------------------------------------------------------------ */

static inline int bench_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  if (remove(path) != 0) fail_errno(path);
  return 0;
}

static inline void rm_tree(const char *dir)
{
  if (nftw(dir, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) fail_errno(dir);
}

/* rm_tree when dir exists. */
static inline void rm_if(const char *dir)
{
  if (access(dir, F_OK) == 0) rm_tree(dir);
}

static double bench_du_total;

static inline int bench_du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)path;
  (void)ftw;
  if (flag == FTW_F) bench_du_total += (double)st->st_blocks * 512.0;
  return 0;
}

/* Bytes allocated on disk (st_blocks) to the files under dir: the CommitLog
** and ConsumeQueue files are sparse, so their apparent size would lie. */
static inline double dir_disk_bytes(const char *dir)
{
  bench_du_total = 0;
  if (nftw(dir, bench_du_one, 16, FTW_PHYS) != 0) fail_errno(dir);
  return bench_du_total;
}

/* Writes back every dirty page of the filesystem holding dir, so a case
** does not pay for the one before. */
static inline void settle(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail_errno(dir);
  if (syncfs(fd) != 0) fail_errno("syncfs");
  if (close(fd) != 0) fail_errno("close");
}

#endif /* RMQ_BENCH_UTIL_H */
