/*
** rmq_bench.c -- rmq's figures on the peers' workload, and this machine's
** raw ceilings for the same record size, in one run.
**
** Workload (as ../shared/peers): 128-byte bodies, deterministic per sequence
** number (bench_util.h), one topic with 8 queues, tags TagA..TagD. Output:
** one line per case in the peers' key=value format, e.g.
**
**   case=rmq-async-t1 op=produce threads=1 msgs=.. secs=.. msgs_per_s=..
**   MB_per_s=.. lat_p50_us=.. lat_p99_us=.. lat_max_us=.. ...
**
** then `ratio NAME=VALUE` lines comparing cases taken in this run. Lines
** starting with '#' are comments. MB_per_s counts body bytes only (x128,
** 10^6). Latencies are nearest-rank percentiles from a histogram with 1/64
** resolution. allocs_per_msg counts every call of rmq's allocator
** (rmq_config_allocator, installed before anything else) that allocates or
** grows, from any thread, during the timed part of a case, per message.
**
** Cases, in order (each raw ceiling right before the cases it bounds;
** BENCH_ONLY=async,pull,sync,push,flush,crash picks groups):
**   raw-anonymous-like-fresh/-warm  memcpy of 228-byte records into a fresh
**                        ftruncate'd (sparse) MAP_SHARED file that nothing
**                        else touches, then again over the same pages
**   raw-fair-append      the fair ceiling of an ASYNC_FLUSH send: 291-byte
**                        records into 64 MiB files and 20-byte units into 8
**                        ConsumeQueue files, mapped as rmq maps them, with a
**                        prefault thread and msync every 500 ms
**   rmq-async-t1, -t2, -t4  ASYNC_FLUSH rmq_producer_send from 1 / 2 / 4
**                        threads, a producer each; the t1 store is reopened
**                        (page tables cold) for:
**   rmq-pull-b32(-first-pass), -b1024, -b32-in-turn  pull consumer over every
**                        queue of that store, from the page cache, max_nums
**                        32 / 1024; whole passes, each checked (count and
**                        body checksum); the first pass also on its own line
**   rmq-async-batch32-t1 batches of 32 from one thread
**   raw-pwrite-fdatasync one 228-byte pwrite + fdatasync at a time into a
**                        fresh ftruncate'd file (the CommitLog's layout)
**   rmq-sync-t1, -t4     SYNC_FLUSH sends (group commit, broker default
**                        group_commit_gather_us)
**   raw-group-commit-t16 16 threads pwrite records, one leader fdatasyncs for
**                        all pending (DESIGN.md 10), before rmq-sync-t16
**   rmq-push-e2e(-orderly)  push consumer latency, concurrently and orderly
**                        listeners: send timestamp in the body, read in the
**                        listener, sends spaced out
**   rmq-async-paced-1000, -20000  ASYNC_FLUSH at a steady rate for 12 s (a
**                        thorough flush included): bytes dirtied for the disk
**                        (/proc/self/io write_bytes) per byte stored
**   rmq-open-after-crash 1 GiB of CommitLog written under ASYNC_FLUSH by a
**                        child process killed with SIGKILL (crash=sigkill),
**                        then the time of rmq_broker_open (recovery), page
**                        cache warm; rmq-open-clean: the same store reopened
**                        after a clean close
**
** Environment: BENCH_SECS (default 3) caps each produce case; BENCH_MSGS
** (default 10000000) caps the messages of an ASYNC produce case;
** BENCH_CRASH_MB (default 1024) sizes the crash case's CommitLog; BENCH_DIR
** (default $TMPDIR, else /tmp) gets a fresh rmq-bench.XXXXXX directory,
** removed at the end (not after a crash: remove it by hand then). Each case
** starts after syncfs(), so none pays for the dirty pages of another.
*/
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "bench_util.h"

#define TOPIC "BenchTopic"
#define QUEUES 8
#define RAW_RECORD 228                  /* DESIGN.md 10's record: 128-byte body */
#define RECORD_FAIR 291                 /* rmq's record for that body, with its properties */
#define RAW_MMAP_BYTES (512ll << 20)
#define CONSUME_MIN_SECS 1.0
#define PUSH_MSGS 5000
#define PUSH_INTERVAL_US 200
#define WARM_SEQ (1ull << 62)           /* warm-up sends use seqs from here */

static const char *const TAGS[] = {"TagA", "TagB", "TagC", "TagD"};

static char g_root[4096];
static double g_secs = 3.0;
static uint64_t g_max_msgs = 10000000;
static int g_record_bytes;              /* store size of a bench record */
static int g_failed;                    /* a check failed but the run went on */
static int g_batch;                     /* produce cases: > 1 sends batches of this many */
#define MAX_BATCH 64
static int64_t g_crash_bytes = 1ll << 30; /* CommitLog written before the kill */
static const char *g_only;              /* BENCH_ONLY: comma-separated groups to run */

/* Whether group `g` (async, pull, sync, push, flush, crash) runs. */
static int want(const char *g)
{
  if (!g_only || !*g_only) return 1;
  size_t n = strlen(g);
  for (const char *p = g_only; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, g, n) == 0) return 1;
    p += len + (e ? 1 : 0);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Counting allocator                                                       */
/* ------------------------------------------------------------------------ */

static atomic_ullong g_allocs;          /* allocations and growing reallocs */

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (!ptr || nsize > osize) atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
  return realloc(ptr, nsize);
}

static uint64_t allocs_now(void)
{
  return atomic_load(&g_allocs);
}

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */
/* ------------------------------------------------------------------------ */

typedef struct result {
  const char *name, *op;
  int threads;
  uint64_t msgs;
  double secs;
  const hist *lat;          /* or NULL */
  double disk;              /* bytes on disk after the case, or 0 */
  int passes;               /* consume: whole passes, or 0 */
  int64_t allocs;           /* -1: not counted */
  const char *extra;        /* more key=value pairs, or NULL */
} result;

static double rate(const result *r)
{
  return (double)r->msgs / (r->secs > 0 ? r->secs : 1e-9);
}

static void report(const result *r)
{
  printf("case=%s op=%s threads=%d msgs=%" PRIu64 " secs=%.3f msgs_per_s=%.0f MB_per_s=%.2f", r->name, r->op,
         r->threads, r->msgs, r->secs, rate(r), rate(r) * BODY / 1e6);
  if (r->lat)
    printf(" lat_p50_us=%.1f lat_p99_us=%.1f lat_max_us=%.1f", hist_pct_us(r->lat, 500), hist_pct_us(r->lat, 990),
           (double)r->lat->max / 1000.0);
  if (r->disk > 0 && r->msgs) printf(" disk_bytes_per_msg=%.0f", r->disk / (double)r->msgs);
  if (r->passes) printf(" passes=%d", r->passes);
  if (r->allocs >= 0)
    printf(" allocs=%" PRId64 " allocs_per_msg=%.6f", r->allocs, r->msgs ? (double)r->allocs / (double)r->msgs : 0.0);
  if (r->extra && *r->extra) printf(" %s", r->extra);
  printf("\n");
  fflush(stdout);
}

static void case_dir(const char *name, char *buf, size_t len)
{
  if ((size_t)snprintf(buf, len, "%s/%s", g_root, name) >= len) fail(name, "path too long");
  if (mkdir(buf, 0755) != 0) fail_errno(buf);
}

static rmq_broker *open_broker(const char *dir, int flush_type)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.flush_disk_type = flush_type;
  rmq_broker *b = NULL;
  int rc = rmq_broker_open(dir, &o, &b);
  if (rc) fail_rmq("rmq_broker_open", rc);
  rc = rmq_topic_create(b, TOPIC, QUEUES);
  if (rc) fail_rmq("rmq_topic_create", rc);
  return b;
}

static void close_broker(rmq_broker *b)
{
  int rc = rmq_broker_close(b);
  if (rc) fail_rmq("rmq_broker_close", rc);
}

static void barrier_wait(pthread_barrier_t *b)
{
  int rc = pthread_barrier_wait(b);
  if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) fail("pthread_barrier_wait", strerror(rc));
}

/* ------------------------------------------------------------------------ */
/* Raw ceilings                                                             */
/* ------------------------------------------------------------------------ */

/* (a) memcpy-append into a fresh sparse mapping, with a release store of the
** end offset per record (what publishing a record costs at least). Nothing
** else touches the file: the kernel treats it much like anonymous memory,
** hence its name; the fair ceiling is raw_fair_append. */
static void raw_mmap_append(double *fresh_rate, double *warm_rate)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/raw-mmap", g_root);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail_errno(path);
  if (ftruncate(fd, RAW_MMAP_BYTES) != 0) fail_errno("ftruncate");
  uint8_t *map = mmap(NULL, RAW_MMAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) fail_errno("mmap");
  unsigned char rec[RAW_RECORD];
  for (int i = 0; i < RAW_RECORD; i++) rec[i] = (unsigned char)(i * 7);
  static _Atomic int64_t end;
  const char *names[2] = {"raw-anonymous-like-fresh", "raw-anonymous-like-warm"};
  /* No syncfs between the passes: the file's pages never reach the disk
  ** (it is unlinked while they are still dirty), so it leaves no writeback
  ** or discard behind for the cases after it. */
  settle(g_root);
  for (int pass = 0; pass < 2; pass++) {
    uint64_t n = 0;
    double t0 = now_s();
    for (int64_t pos = 0; pos + RAW_RECORD <= RAW_MMAP_BYTES; pos += RAW_RECORD, n++) {
      rec[0] = (unsigned char)n;
      memcpy(map + pos, rec, RAW_RECORD);
      atomic_store_explicit(&end, pos + RAW_RECORD, memory_order_release);
    }
    double secs = now_s() - t0;
    char extra[64];
    snprintf(extra, sizeof extra, "record_bytes=%d", RAW_RECORD);
    result r = {names[pass], "produce", 1, n, secs, NULL, 0, 0, -1, extra};
    report(&r);
    *(pass ? warm_rate : fresh_rate) = rate(&r);
  }
  /* Unlinked at once: its dirty pages are dropped, not written back. */
  if (munmap(map, RAW_MMAP_BYTES) != 0) fail_errno("munmap");
  if (unlink(path) != 0) fail_errno(path);
  if (close(fd) != 0) fail_errno("close");
}

/* (a') The fair ceiling for an ASYNC_FLUSH send, the way rmq stores one:
** RECORD_FAIR-byte records into 64 MiB MAP_SHARED files and a 20-byte unit
** into one of 8 ConsumeQueue files (round robin), each mapped as rmq maps
** it (CommitLog 2 MiB-aligned with MADV_HUGEPAGE, ConsumeQueues 4 KiB pages
** with MADV_RANDOM), blocks allocated and pages
** populated ahead of the writer by a prefault thread, a release store of
** the end per record, msync of the new bytes every 500 ms by a flush
** thread. Stops at g_secs or g_max_msgs. */
#define FAIR_FILE (64ll << 20)
#define FAIR_CQ (32ll << 20)     /* one file a queue: rmq's roll every 6 MB is a rare cost */
#define FAIR_CHUNK (2ll << 20)
#define FAIR_FILES 64

typedef struct fair {
  int fd[FAIR_FILES];
  uint8_t *map[FAIR_FILES];
  int cqfd[QUEUES];
  uint8_t *cq[QUEUES];
  _Atomic int64_t end;          /* bytes appended (release) */
  _Atomic int64_t ready;        /* bytes allocated and populated ahead */
  atomic_int stop;
  atomic_int nfiles;
  pthread_mutex_t alloc_mu;
  int64_t alloc;                /* alloc_mu: CommitLog bytes allocated */
} fair;

static uint8_t *fair_map(int fd, int64_t size)
{
  size_t span = (size_t)size + FAIR_CHUNK;
  uint8_t *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) fail_errno("mmap");
  uint8_t *a = (uint8_t *)(((uintptr_t)r + FAIR_CHUNK - 1) & ~(uintptr_t)(FAIR_CHUNK - 1));
  if (mmap(a, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) fail_errno("mmap");
  if (a > r) munmap(r, (size_t)(a - r));
  if (r + span > a + size) munmap(a + size, (size_t)(r + span - (a + size)));
  madvise(a, (size_t)size, MADV_HUGEPAGE);
  return a;
}

static int fair_open(const char *name, int64_t size)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", g_root, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail_errno(path);
  if (ftruncate(fd, size) != 0) fail_errno("ftruncate");
  return fd;
}

/* Makes the file holding log offset `at` and allocates the blocks of the
** chunk holding it, once (alloc_mu): the writer when it outruns the
** prefaulter, else the prefaulter. Returns 1 when this call allocated. */
static int fair_alloc(fair *f, int64_t at)
{
  int done = 0;
  pthread_mutex_lock(&f->alloc_mu);
  int64_t chunk = at / FAIR_CHUNK * FAIR_CHUNK;
  if (chunk >= f->alloc) {
    int k = (int)(chunk / FAIR_FILE);
    if (k >= f->nfiles) {
      char name[32];
      snprintf(name, sizeof name, "fair-cl-%02d", k);
      f->fd[k] = fair_open(name, FAIR_FILE);
      f->map[k] = fair_map(f->fd[k], FAIR_FILE);
      atomic_store(&f->nfiles, k + 1);
    }
    if (fallocate(f->fd[k], 0, chunk % FAIR_FILE, FAIR_CHUNK) != 0) fail_errno("fallocate");
    f->alloc = chunk + FAIR_CHUNK;
    atomic_store_explicit(&f->ready, f->alloc, memory_order_release);
    done = 1;
  }
  pthread_mutex_unlock(&f->alloc_mu);
  return done;
}

static void *fair_prefault(void *arg)
{
  fair *f = arg;
  int64_t cq_at = 0;
  while (!atomic_load(&f->stop)) {
    int64_t ready = atomic_load(&f->ready), end = atomic_load_explicit(&f->end, memory_order_relaxed);
    if (ready - end >= 8 * FAIR_CHUNK || ready >= (int64_t)FAIR_FILES * FAIR_FILE) {
      usleep(50);
      continue;
    }
    if (fair_alloc(f, ready)) madvise(f->map[ready / FAIR_FILE] + ready % FAIR_FILE, FAIR_CHUNK, MADV_POPULATE_WRITE);
    /* ConsumeQueue units keep pace: 20 bytes a record in each of 8 queues
    ** (their blocks were allocated up front). */
    int64_t cq_need = (ready + FAIR_CHUNK) / RECORD_FAIR * 20 / QUEUES + 64 * 1024;
    while (cq_at < cq_need && cq_at + 64 * 1024 <= FAIR_CQ) {
      for (int q = 0; q < QUEUES; q++) madvise(f->cq[q] + cq_at, 64 * 1024, MADV_POPULATE_WRITE);
      cq_at += 64 * 1024;
    }
  }
  return NULL;
}

static void *fair_flusher(void *arg)
{
  fair *f = arg;
  int64_t done = 0;
  while (!atomic_load(&f->stop)) {
    for (int i = 0; i < 50 && !atomic_load(&f->stop); i++) usleep(10000);
    int64_t end = atomic_load_explicit(&f->end, memory_order_acquire);
    while (done < end) {
      int k = (int)(done / FAIR_FILE);
      int64_t lo = done % FAIR_FILE, hi = end - (int64_t)k * FAIR_FILE;
      if (hi > FAIR_FILE) hi = FAIR_FILE;
      lo &= ~(int64_t)4095;
      if (msync(f->map[k] + lo, (size_t)(hi - lo), MS_SYNC) != 0) fail_errno("msync");
      done = (int64_t)k * FAIR_FILE + hi;
    }
    for (int q = 0; q < QUEUES; q++) msync(f->cq[q], (size_t)FAIR_CQ, MS_SYNC);
  }
  return NULL;
}

static void raw_fair_append(double *out_rate)
{
  fair *f = xmalloc(sizeof *f);
  pthread_mutex_init(&f->alloc_mu, NULL);
  for (int q = 0; q < QUEUES; q++) {
    char name[32];
    snprintf(name, sizeof name, "fair-cq-%d", q);
    f->cqfd[q] = fair_open(name, FAIR_CQ);
    /* ConsumeQueue files as rmq maps them: 4 KiB pages, no readahead. */
    f->cq[q] = mmap(NULL, (size_t)FAIR_CQ, PROT_READ | PROT_WRITE, MAP_SHARED, f->cqfd[q], 0);
    if (f->cq[q] == MAP_FAILED) fail_errno("mmap");
    madvise(f->cq[q], (size_t)FAIR_CQ, MADV_RANDOM);
    if (fallocate(f->cqfd[q], 0, 0, FAIR_CQ) != 0) fail_errno("fallocate");
  }
  unsigned char rec[RECORD_FAIR];
  for (int i = 0; i < RECORD_FAIR; i++) rec[i] = (unsigned char)(i * 7);
  settle(g_root);
  pthread_t pf, fl;
  if (pthread_create(&pf, NULL, fair_prefault, f) || pthread_create(&fl, NULL, fair_flusher, f))
    fail("pthread_create", "fair ceiling");
  uint64_t n = 0, t0 = now_ns(), deadline = t0 + (uint64_t)(g_secs * 1e9);
  int64_t pos = 0, qoff[QUEUES] = {0};
  const int64_t limit = (int64_t)FAIR_FILES * FAIR_FILE;
  for (;;) {
    if ((n & 1023) == 0 && now_ns() >= deadline) break;
    if (n >= g_max_msgs) break;
    int64_t fend = (pos / FAIR_FILE + 1) * FAIR_FILE;
    if (pos + RECORD_FAIR + 8 > fend) pos = fend; /* the BLANK end of a file */
    if (pos + RECORD_FAIR > limit) break;
    int q = (int)(n % QUEUES);
    if ((qoff[q] + 1) * 20 > FAIR_CQ - 64 * 1024) break;
    /* Past the prefaulter's window the writer does not wait: it allocates
    ** the blocks itself and faults the pages in by writing, as rmq's sender
    ** does (fair_alloc). */
    if (pos + RECORD_FAIR > atomic_load_explicit(&f->ready, memory_order_acquire)) fair_alloc(f, pos);
    rec[0] = (unsigned char)n;
    memcpy(f->map[pos / FAIR_FILE] + pos % FAIR_FILE, rec, RECORD_FAIR);
    uint8_t *u = f->cq[q] + qoff[q] * 20;
    memcpy(u, &pos, 8);
    memcpy(u + 8, &n, 8);
    memcpy(u + 16, &n, 4);
    qoff[q]++;
    pos += RECORD_FAIR;
    atomic_store_explicit(&f->end, pos, memory_order_release);
    n++;
  }
  double secs = (double)(now_ns() - t0) * 1e-9;
  atomic_store(&f->stop, 1);
  pthread_join(pf, NULL);
  pthread_join(fl, NULL);
  char extra[96];
  snprintf(extra, sizeof extra, "record_bytes=%d mapping=as-rmq", RECORD_FAIR);
  result r = {"raw-fair-append", "produce", 1, n, secs, NULL, 0, 0, -1, extra};
  report(&r);
  *out_rate = rate(&r);
  for (int k = 0; k < f->nfiles; k++) {
    munmap(f->map[k], FAIR_FILE);
    close(f->fd[k]);
    char path[4200];
    snprintf(path, sizeof path, "%s/fair-cl-%02d", g_root, k);
    unlink(path);
  }
  for (int q = 0; q < QUEUES; q++) {
    munmap(f->cq[q], FAIR_CQ);
    close(f->cqfd[q]);
    char path[4200];
    snprintf(path, sizeof path, "%s/fair-cq-%d", g_root, q);
    unlink(path);
  }
  free(f);
}

/* (b) one record + fdatasync at a time, into a sparse file like a
** CommitLog's (a new 4 KiB block every ~18 records needs a metadata commit). */
static void raw_pwrite_fdatasync(double *out_rate, double *out_p50)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/raw-pwrite", g_root);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail_errno(path);
  if (ftruncate(fd, 64ll << 20) != 0) fail_errno("ftruncate");
  if (fsync(fd) != 0) fail_errno("fsync");
  unsigned char rec[RAW_RECORD];
  memset(rec, 0x5a, sizeof rec);
  hist *h = xmalloc(sizeof *h);
  settle(g_root);
  uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(g_secs * 1e9), t = t0, n = 0;
  for (off_t pos = 0; t < deadline && pos + RAW_RECORD <= (64ll << 20); pos += RAW_RECORD, n++) {
    rec[0] = (unsigned char)n;
    if (pwrite(fd, rec, RAW_RECORD, pos) != RAW_RECORD) fail_errno("pwrite");
    if (fdatasync(fd) != 0) fail_errno("fdatasync");
    uint64_t t1 = now_ns();
    hist_add(h, t1 - t);
    t = t1;
  }
  char extra[64];
  snprintf(extra, sizeof extra, "record_bytes=%d", RAW_RECORD);
  result r = {"raw-pwrite-fdatasync", "produce", 1, n, (double)(t - t0) * 1e-9, h, 0, 0, -1, extra};
  report(&r);
  *out_rate = rate(&r);
  *out_p50 = hist_pct_us(h, 500);
  free(h);
  if (close(fd) != 0) fail_errno("close");
  if (unlink(path) != 0) fail_errno(path);
}

/* (c) The group-commit ceiling (DESIGN.md 10): GC_THREADS threads each
** pwrite a record at the next free offset of one ftruncate'd file and wait
** until a sync that started after their write covers it; the first waiter
** with no sync running becomes the leader and fdatasyncs for everyone
** pending. Nothing else: no encoding, no index, no gathering delay. */
#define GC_THREADS 16

typedef struct gc_shared {
  int fd;
  _Atomic int64_t next;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t started, done;      /* syncs begun / finished (mu) */
  int leader;                  /* mu */
  uint64_t deadline;
  pthread_barrier_t go;
  atomic_ullong msgs;
} gc_shared;

static void *gc_main(void *arg)
{
  gc_shared *g = arg;
  unsigned char rec[RAW_RECORD];
  memset(rec, 0x5a, sizeof rec);
  uint64_t n = 0;
  barrier_wait(&g->go);
  while (now_ns() < g->deadline) {
    int64_t off = atomic_fetch_add(&g->next, RAW_RECORD);
    if (off + RAW_RECORD > (256ll << 20)) break;
    if (pwrite(g->fd, rec, RAW_RECORD, off) != RAW_RECORD) fail_errno("pwrite");
    pthread_mutex_lock(&g->mu);
    uint64_t need = g->started + 1; /* a sync that starts from now on covers this write */
    while (g->done < need) {
      if (!g->leader) {
        g->leader = 1;
        uint64_t gen = ++g->started;
        pthread_mutex_unlock(&g->mu);
        if (fdatasync(g->fd) != 0) fail_errno("fdatasync");
        pthread_mutex_lock(&g->mu);
        g->done = gen;
        g->leader = 0;
        pthread_cond_broadcast(&g->cv);
      } else {
        pthread_cond_wait(&g->cv, &g->mu);
      }
    }
    pthread_mutex_unlock(&g->mu);
    n++;
  }
  atomic_fetch_add(&g->msgs, n);
  return NULL;
}

static void raw_group_commit(double *out_rate)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/raw-group-commit", g_root);
  gc_shared *g = xmalloc(sizeof *g);
  g->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (g->fd < 0) fail_errno(path);
  if (ftruncate(g->fd, 256ll << 20) != 0 || fsync(g->fd) != 0) fail_errno("ftruncate");
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  pthread_barrier_init(&g->go, NULL, GC_THREADS + 1);
  pthread_t th[GC_THREADS];
  for (int i = 0; i < GC_THREADS; i++)
    if (pthread_create(&th[i], NULL, gc_main, g)) fail("pthread_create", "group commit ceiling");
  settle(g_root);
  uint64_t t0 = now_ns();
  g->deadline = t0 + (uint64_t)(g_secs * 1e9);
  barrier_wait(&g->go);
  for (int i = 0; i < GC_THREADS; i++) pthread_join(th[i], NULL);
  double secs = (double)(now_ns() - t0) * 1e-9;
  char extra[96];
  snprintf(extra, sizeof extra, "record_bytes=%d syncs=%" PRIu64, RAW_RECORD, g->done);
  result r = {"raw-group-commit-t16", "produce", GC_THREADS, atomic_load(&g->msgs), secs, NULL, 0, 0, -1, extra};
  report(&r);
  *out_rate = rate(&r);
  close(g->fd);
  unlink(path);
  pthread_barrier_destroy(&g->go);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

/* ------------------------------------------------------------------------ */
/* Producing                                                                */
/* ------------------------------------------------------------------------ */

typedef struct prod_shared {
  rmq_broker *b;
  int threads;
  uint64_t cap;              /* messages in all */
  uint64_t deadline_ns;      /* set before `go` */
  int batch;                 /* > 1: rmq_producer_send_batch of this many */
  pthread_barrier_t ready, go;
} prod_shared;

typedef struct prod_thread {
  prod_shared *s;
  int tid;
  pthread_t th;
  hist h;
  uint64_t done;
  uint64_t timeouts;         /* sends answered FLUSH_DISK_TIMEOUT */
  uint64_t warm_sum;         /* fold() of the warm-up body */
} prod_thread;

static void *prod_main(void *arg)
{
  prod_thread *t = arg;
  prod_shared *s = t->s;
  rmq_producer *p = NULL;
  rmq_msg *m = NULL;
  int rc = rmq_producer_create(s->b, "bench-producer", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  rc = rmq_msg_create(&m, TOPIC, NULL, NULL, 0);
  if (rc) fail_rmq("rmq_msg_create", rc);
  unsigned char body[BODY];
  rmq_send_result r;

  /* One warm-up send sizes the producer's and the message's buffers, so the
  ** timed part shows the steady state. Its body is outside the timed seqs. */
  make_body(WARM_SEQ + (uint64_t)t->tid, body);
  t->warm_sum = fold(body);
  if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_msg_set_tags(m, TAGS[0])))
    fail_rmq("rmq_msg_set_*", rc);
  if ((rc = rmq_producer_send(p, m, &r))) fail_rmq("rmq_producer_send", rc);
  if (t->tid == 0) g_record_bytes = r.store_size; /* before `ready`: main reads it after */

  /* Batch cases: the messages are made before the clock starts. */
  rmq_msg *ms[MAX_BATCH];
  static unsigned char bodies[MAX_BATCH][BODY];
  rmq_send_result rs[MAX_BATCH];
  for (int k = 0; k < s->batch; k++)
    if ((rc = rmq_msg_create(&ms[k], TOPIC, TAGS[k & 3], body, BODY))) fail_rmq("rmq_msg_create", rc);
  barrier_wait(&s->ready);
  barrier_wait(&s->go);
  if (s->batch > 1) {
    /* Batches of s->batch messages, latency per batch call. */
    for (uint64_t seq = 0; seq + (uint64_t)s->batch <= s->cap; seq += (uint64_t)s->batch) {
      for (int k = 0; k < s->batch; k++) {
        make_body(seq + (uint64_t)k, bodies[k]);
        if ((rc = rmq_msg_set_body(ms[k], bodies[k], BODY))) fail_rmq("rmq_msg_set_body", rc);
      }
      uint64_t t0 = now_ns();
      if (t0 >= s->deadline_ns) break;
      if ((rc = rmq_producer_send_batch(p, (const rmq_msg *const *)ms, (size_t)s->batch, rs)))
        fail_rmq("rmq_producer_send_batch", rc);
      hist_add(&t->h, now_ns() - t0);
      if (rs[0].send_status != RMQ_SEND_OK) t->timeouts++;
      t->done += (uint64_t)s->batch;
    }
    for (int k = 0; k < s->batch; k++) rmq_msg_free(ms[k]);
  }
  for (uint64_t seq = (uint64_t)t->tid; s->batch <= 1 && seq < s->cap; seq += (uint64_t)s->threads) {
    make_body(seq, body);
    if ((rc = rmq_msg_set_body(m, body, BODY))) fail_rmq("rmq_msg_set_body", rc);
    if ((rc = rmq_msg_set_tags(m, TAGS[seq & 3]))) fail_rmq("rmq_msg_set_tags", rc);
    uint64_t t0 = now_ns();
    if (t0 >= s->deadline_ns) break;
    if ((rc = rmq_producer_send(p, m, &r))) fail_rmq("rmq_producer_send", rc);
    hist_add(&t->h, now_ns() - t0);
    if (r.send_status != RMQ_SEND_OK) t->timeouts++;
    t->done++;
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return NULL;
}

typedef struct prod_out {
  uint64_t msgs;             /* timed sends */
  uint64_t warm;             /* warm-up sends (one per thread) */
  uint64_t warm_sum;
  double rate;
  double p50_us;
} prod_out;

/* Runs one produce case on broker b (opened on dir); leaves b open. */
static void produce_case(const char *name, rmq_broker *b, const char *dir, int threads, uint64_t cap,
                         prod_out *out)
{
  prod_shared s;
  memset(&s, 0, sizeof s);
  s.batch = g_batch;
  s.b = b;
  s.threads = threads;
  s.cap = cap;
  int rc;
  if ((rc = pthread_barrier_init(&s.ready, NULL, (unsigned)threads + 1)) ||
      (rc = pthread_barrier_init(&s.go, NULL, (unsigned)threads + 1)))
    fail("pthread_barrier_init", strerror(rc));
  prod_thread *th = xmalloc((size_t)threads * sizeof *th);
  for (int i = 0; i < threads; i++) {
    th[i].s = &s;
    th[i].tid = i;
    if ((rc = pthread_create(&th[i].th, NULL, prod_main, &th[i]))) fail("pthread_create", strerror(rc));
  }
  barrier_wait(&s.ready);
  settle(g_root);
  uint64_t a0 = allocs_now();
  uint64_t t0 = now_ns();
  s.deadline_ns = t0 + (uint64_t)(g_secs * 1e9);
  barrier_wait(&s.go);
  for (int i = 0; i < threads; i++)
    if ((rc = pthread_join(th[i].th, NULL))) fail("pthread_join", strerror(rc));
  double secs = (double)(now_ns() - t0) * 1e-9;
  int64_t allocs = (int64_t)(allocs_now() - a0);

  hist *h = xmalloc(sizeof *h);
  uint64_t done = 0, timeouts = 0;
  memset(out, 0, sizeof *out);
  for (int i = 0; i < threads; i++) {
    hist_merge(h, &th[i].h);
    done += th[i].done;
    timeouts += th[i].timeouts;
    out->warm_sum += th[i].warm_sum;
  }
  char extra[160];
  snprintf(extra, sizeof extra, "record_bytes=%d flush_timeouts=%" PRIu64, g_record_bytes, timeouts);
  result r = {name, "produce", threads, done, secs, h, dir_disk_bytes(dir), 0, allocs, extra};
  report(&r);
  out->msgs = done;
  out->warm = (uint64_t)threads;
  out->rate = rate(&r);
  out->p50_us = hist_pct_us(h, 500);
  free(h);
  free(th);
  pthread_barrier_destroy(&s.ready);
  pthread_barrier_destroy(&s.go);
}

/* A produce case on a fresh store, removed afterwards. */
static void produce_fresh(const char *name, int flush_type, int threads, uint64_t cap, prod_out *out)
{
  char dir[4096];
  case_dir(name, dir, sizeof dir);
  rmq_broker *b = open_broker(dir, flush_type);
  produce_case(name, b, dir, threads, cap, out);
  close_broker(b);
  rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* Pull consumer                                                            */
/* ------------------------------------------------------------------------ */

/* interleave: 0 reads each queue to its end before the next; 1 takes one
** batch from each queue in turn, as a push consumer's pull service does,
** which walks the CommitLog (written round-robin) nearly in order. */
static void pull_case(const char *name, rmq_broker *b, int batch, int interleave, uint64_t expect,
                      uint64_t want_sum, double *out_rate, double *first_rate)
{
  rmq_pull_consumer *c = NULL;
  int rc = rmq_pull_consumer_create(b, "bench-pull", &c);
  if (rc) fail_rmq("rmq_pull_consumer_create", rc);
  rmq_message_queue mqs[QUEUES];
  size_t nq = 0;
  rc = rmq_pull_consumer_fetch_subscribe_message_queues(c, TOPIC, mqs, QUEUES, &nq);
  if (rc) fail_rmq("rmq_pull_consumer_fetch_subscribe_message_queues", rc);
  if (nq != QUEUES) fail(name, "topic does not have 8 queues");
  rmq_pull_result r;
  /* One pull before the clock sizes the handle's message array. */
  if ((rc = rmq_pull_consumer_pull(c, &mqs[0], "*", 0, batch, &r))) fail_rmq("rmq_pull_consumer_pull", rc);

  uint64_t total = 0;
  int passes = 0, first = first_rate != NULL;
  uint64_t a0 = allocs_now();
  double t0 = now_s(), t, first_secs = 0;
  do {
    uint64_t got = 0, sum = 0;
    int64_t off[QUEUES] = {0};
    size_t open = nq; /* queues not yet read to their end */
    int done[QUEUES] = {0};
    for (size_t q = 0; open > 0; q = (q + 1) % nq) {
      if (done[q]) continue;
      for (;;) {
        if ((rc = rmq_pull_consumer_pull(c, &mqs[q], "*", off[q], batch, &r))) fail_rmq("rmq_pull_consumer_pull", rc);
        if (r.pull_status == RMQ_PULL_NO_NEW_MSG) { done[q] = 1; open--; break; }
        if (r.pull_status == RMQ_PULL_OFFSET_ILLEGAL) fail(name, "offset illegal");
        for (size_t k = 0; k < r.n; k++) {
          if (r.msgs[k].body_len != BODY) fail(name, "message body of the wrong size");
          sum += fold(r.msgs[k].body);
        }
        got += r.n;
        off[q] = r.next_begin_offset;
        if (interleave) break;
      }
    }
    if (got != expect || sum != want_sum) fail(name, "count or checksum differs from what was produced");
    t = now_s();
    if (first) {
      /* The first pass of a fresh open is reported on its own line; the
      ** case's figure is of the passes after it. */
      first = 0;
      first_secs = t - t0;
      t0 = t;
      a0 = allocs_now();
      continue;
    }
    total += got;
    passes++;
  } while (t - t0 < CONSUME_MIN_SECS || passes == 0);
  int64_t allocs = (int64_t)(allocs_now() - a0);
  char extra[64];
  snprintf(extra, sizeof extra, "max_nums=%d order=%s", batch, interleave ? "queues-in-turn" : "queue-by-queue");
  result res = {name, "consume", 1, total, t - t0, NULL, 0, passes, allocs, extra};
  report(&res);
  *out_rate = rate(&res);
  if (first_rate) {
    /* The first pass of a fresh open: page cache warm, page tables cold. */
    char fname[96];
    snprintf(fname, sizeof fname, "%s-first-pass", name);
    result fr = {fname, "consume", 1, expect, first_secs, NULL, 0, 1, -1, extra};
    report(&fr);
    *first_rate = rate(&fr);
  }
  rmq_pull_consumer_destroy(c);
}

/* ------------------------------------------------------------------------ */
/* Push consumer end-to-end latency                                         */
/* ------------------------------------------------------------------------ */

typedef struct push_ctx {
  pthread_mutex_t mu;        /* guards all below */
  pthread_cond_t cv;         /* signalled when got reaches want, or warm QUEUES */
  hist h;
  uint64_t got, want, bad;
  int warm;                  /* warm-up messages seen (tag WARM_TAG, not timed) */
} push_ctx;

#define WARM_TAG "Warm"

static int push_take(push_ctx *x, const rmq_message_ext *const *msgs, size_t n)
{
  uint64_t now = now_ns();
  pthread_mutex_lock(&x->mu);
  for (size_t i = 0; i < n; i++) {
    uint64_t sent;
    if (msgs[i]->tags_len == 4 && memcmp(msgs[i]->tags, WARM_TAG, 4) == 0) {
      if (++x->warm == QUEUES) pthread_cond_signal(&x->cv);
      continue;
    }
    if (msgs[i]->body_len != BODY) {
      x->bad++;
      continue;
    }
    memcpy(&sent, msgs[i]->body, sizeof sent);
    hist_add(&x->h, now > sent ? now - sent : 0);
    x->got++;
  }
  if (x->got >= x->want) pthread_cond_signal(&x->cv);
  pthread_mutex_unlock(&x->mu);
  return RMQ_CONSUME_SUCCESS;
}

static int push_listener(void *arg, const rmq_message_ext *const *msgs, size_t n,
                         rmq_consume_concurrently_context *cc)
{
  (void)cc;
  return push_take(arg, msgs, n);
}

static int push_listener_orderly(void *arg, const rmq_message_ext *const *msgs, size_t n,
                                 rmq_consume_orderly_context *oc)
{
  (void)oc;
  return push_take(arg, msgs, n);
}

static void push_case(int orderly, double *out_p50, double *out_p99)
{
  const char *name = orderly ? "rmq-push-e2e-orderly" : "rmq-push-e2e";
  char dir[4096];
  case_dir(name, dir, sizeof dir);
  rmq_broker *b = open_broker(dir, RMQ_ASYNC_FLUSH);
  push_ctx *x = xmalloc(sizeof *x);
  pthread_mutex_init(&x->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&x->cv, &ca);
  pthread_condattr_destroy(&ca);
  x->want = PUSH_MSGS;

  rmq_push_consumer *c = NULL;
  int rc = rmq_push_consumer_create(b, "bench-push", NULL, &c);
  if (rc) fail_rmq("rmq_push_consumer_create", rc);
  if ((rc = rmq_push_consumer_subscribe(c, TOPIC, "*"))) fail_rmq("rmq_push_consumer_subscribe", rc);
  if (orderly) rc = rmq_push_consumer_register_listener_orderly(c, push_listener_orderly, x);
  else rc = rmq_push_consumer_register_listener_concurrently(c, push_listener, x);
  if (rc) fail_rmq("rmq_push_consumer_register_listener", rc);
  if ((rc = rmq_push_consumer_start(c))) fail_rmq("rmq_push_consumer_start", rc);
  rmq_producer *p = NULL;
  if ((rc = rmq_producer_create(b, "bench-producer", NULL, &p))) fail_rmq("rmq_producer_create", rc);
  rmq_msg *m = NULL;
  if ((rc = rmq_msg_create(&m, TOPIC, TAGS[0], NULL, 0))) fail_rmq("rmq_msg_create", rc);
  unsigned char body[BODY];
  struct timespec dl;

  /* Warm-up: one message per queue (round robin), so the producer's buffer,
  ** the message's and every ConsumeQueue's first file exist and every
  ** consume thread has run before the clock starts. */
  make_body(WARM_SEQ, body);
  if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_msg_set_tags(m, WARM_TAG))) fail_rmq("rmq_msg_set_*", rc);
  for (int q = 0; q < QUEUES; q++)
    if ((rc = rmq_producer_send(p, m, NULL))) fail_rmq("rmq_producer_send", rc);
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += 10;
  pthread_mutex_lock(&x->mu);
  while (x->warm < QUEUES)
    if (pthread_cond_timedwait(&x->cv, &x->mu, &dl) != 0) break;
  int warm = x->warm;
  pthread_mutex_unlock(&x->mu);
  if (warm < QUEUES) fail(name, "the consumer did not get the warm-up messages within 10 s");

  settle(g_root);
  uint64_t a0 = allocs_now();
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < PUSH_MSGS; i++) {
    uint64_t due = t0 + i * PUSH_INTERVAL_US * 1000ull;
    struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
    make_body(i, body);
    uint64_t sent = now_ns();
    memcpy(body, &sent, sizeof sent);
    if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_msg_set_tags(m, TAGS[i & 3])))
      fail_rmq("rmq_msg_set_*", rc);
    if ((rc = rmq_producer_send(p, m, NULL))) fail_rmq("rmq_producer_send", rc);
  }
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += 10;
  pthread_mutex_lock(&x->mu);
  while (x->got < x->want)
    if (pthread_cond_timedwait(&x->cv, &x->mu, &dl) != 0) break;
  uint64_t got = x->got, bad = x->bad;
  pthread_mutex_unlock(&x->mu);
  double secs = (double)(now_ns() - t0) * 1e-9;
  int64_t allocs = (int64_t)(allocs_now() - a0);
  /* A lost message is a bug, but the latencies measured are still good:
  ** say so on the case line and in the exit status, and go on. */
  if (got < PUSH_MSGS || bad) {
    fprintf(stderr, "rmq_bench: %s: the consumer got %" PRIu64 " of %d messages within 10 s (%" PRIu64
            " malformed)\n", name, got, PUSH_MSGS, bad);
    g_failed = 1;
  }

  rmq_push_consumer_shutdown(c);
  char extra[128];
  snprintf(extra, sizeof extra, "send_interval_us=%d lost=%" PRIu64 " allocs_cover=send+consume", PUSH_INTERVAL_US,
           got < PUSH_MSGS ? PUSH_MSGS - got : 0);
  pthread_mutex_lock(&x->mu);
  result r = {name, "consume", 1, got, secs, &x->h, 0, 0, allocs, extra};
  report(&r);
  *out_p50 = hist_pct_us(&x->h, 500);
  *out_p99 = hist_pct_us(&x->h, 990);
  pthread_mutex_unlock(&x->mu);

  rmq_msg_free(m);
  rmq_producer_destroy(p);
  rmq_push_consumer_destroy(c);
  close_broker(b);
  pthread_cond_destroy(&x->cv);
  pthread_mutex_destroy(&x->mu);
  free(x);
  rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* ASYNC_FLUSH at a steady low rate: what the flushes write                 */
/* ------------------------------------------------------------------------ */

/* Bytes this process has dirtied for the disk (/proc/self/io write_bytes:
** counted when a page or folio becomes dirty, so a 2 MiB folio dirtied
** again after each flush counts 2 MiB each time). -1 when unreadable. */
static int64_t io_write_bytes(void)
{
  FILE *f = fopen("/proc/self/io", "r");
  if (!f) return -1;
  char key[64];
  long long v, out = -1;
  while (fscanf(f, "%63s %lld", key, &v) == 2)
    if (!strcmp(key, "write_bytes:")) out = v;
  fclose(f);
  return out;
}

/* Sends `rate` messages a second for PACED_SECS (past a thorough flush),
** with the service thread flushing as configured, and reports the bytes
** written for the disk per byte stored. */
#define PACED_SECS 12
static void paced_case(int rate)
{
  char name[64], dir[4096];
  snprintf(name, sizeof name, "rmq-async-paced-%d", rate);
  case_dir(name, dir, sizeof dir);
  rmq_broker *b = open_broker(dir, RMQ_ASYNC_FLUSH);
  rmq_producer *p = NULL;
  rmq_msg *m = NULL;
  int rc = rmq_producer_create(b, "bench-producer", NULL, &p);
  if (rc || (rc = rmq_msg_create(&m, TOPIC, TAGS[0], NULL, 0))) fail_rmq("create", rc);
  unsigned char body[BODY];
  make_body(0, body);
  rmq_send_result r;
  if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_producer_send(p, m, &r))) fail_rmq("send", rc);
  settle(g_root);
  int64_t w0 = io_write_bytes(), data = 0;
  uint64_t t0 = now_ns(), n = (uint64_t)rate * PACED_SECS;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t due = t0 + i * 1000000000ull / (uint64_t)rate;
    struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
    if ((rc = rmq_producer_send(p, m, &r))) fail_rmq("send", rc);
    data += r.store_size;
  }
  int64_t w1 = io_write_bytes();
  double secs = (double)(now_ns() - t0) * 1e-9;
  char extra[200];
  snprintf(extra, sizeof extra, "stored_bytes=%" PRId64 " written_bytes=%" PRId64 " written_per_stored=%.2f", data,
           w0 >= 0 && w1 >= 0 ? w1 - w0 : -1, w0 >= 0 && w1 >= 0 && data ? (double)(w1 - w0) / (double)data : 0.0);
  result res = {name, "produce", 1, n, secs, NULL, 0, 0, -1, extra};
  report(&res);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  close_broker(b);
  rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* Open after a crash                                                       */
/* ------------------------------------------------------------------------ */

/* Child: writes g_crash_bytes of CommitLog under ASYNC_FLUSH, says so on fd,
** and waits to be killed. Never returns. */
static void crash_child(const char *dir, int fd)
{
  rmq_broker *b = open_broker(dir, RMQ_ASYNC_FLUSH);
  rmq_producer *p = NULL;
  rmq_msg *m = NULL;
  int rc = rmq_producer_create(b, "bench-producer", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  if ((rc = rmq_msg_create(&m, TOPIC, NULL, NULL, 0))) fail_rmq("rmq_msg_create", rc);
  unsigned char body[BODY];
  rmq_send_result r;
  for (uint64_t seq = 0;; seq++) {
    make_body(seq, body);
    if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_msg_set_tags(m, TAGS[seq & 3])))
      fail_rmq("rmq_msg_set_*", rc);
    if ((rc = rmq_producer_send(p, m, &r))) fail_rmq("rmq_producer_send", rc);
    if (r.commit_log_offset + r.store_size >= g_crash_bytes) break;
  }
  if (write(fd, "x", 1) != 1) _exit(1);
  for (;;) pause();
}

static void crash_case(double *out_crash_secs, double *out_clean_secs)
{
  char dir[4096];
  case_dir("rmq-crash", dir, sizeof dir);
  int fds[2];
  if (pipe(fds) != 0) fail_errno("pipe");
  fflush(stdout);
  fflush(stderr);
  /* No rmq thread runs in this process now (every broker is closed), so the
  ** child starts from a clean state. */
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    close(fds[0]);
    crash_child(dir, fds[1]);
  }
  close(fds[1]);
  struct pollfd pfd = {fds[0], POLLIN, 0};
  int pr = poll(&pfd, 1, 120000);
  char c;
  int ok = pr == 1 && read(fds[0], &c, 1) == 1;
  kill(pid, SIGKILL);
  int status;
  if (waitpid(pid, &status, 0) != pid) fail_errno("waitpid");
  close(fds[0]);
  if (!ok) fail("rmq-open-after-crash", "the writing child failed or took over 120 s");
  char abort_path[4200];
  snprintf(abort_path, sizeof abort_path, "%s/abort", dir);
  if (access(abort_path, F_OK) != 0) fail(abort_path, "missing after the kill");

  /* The killed child's dirty pages go to disk first: the open below is
  ** timed on its own (page cache warm), not with that writeback. */
  settle(g_root);
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  rmq_broker *b = NULL;
  double t0 = now_s();
  int rc = rmq_broker_open(dir, &o, &b);
  double crash_secs = now_s() - t0;
  if (rc) fail_rmq("rmq_broker_open after the crash", rc);
  rmq_recovery_info ri;
  if ((rc = rmq_broker_recovery_info(b, &ri))) fail_rmq("rmq_broker_recovery_info", rc);
  if (!ri.abnormal) fail("rmq-open-after-crash", "the open did not see the crash");
  int64_t cl_bytes = ri.commitlog_max_offset - ri.commitlog_min_offset;
  printf("case=rmq-open-after-crash op=open crash=sigkill page_cache=warm commitlog_bytes=%" PRId64
         " secs=%.3f records_scanned=%" PRId64 " bytes_truncated=%" PRId64 " cq_units_rebuilt=%" PRId64
         " cq_units_dropped=%" PRId64 "\n",
         cl_bytes, crash_secs, ri.records_scanned, ri.bytes_truncated, ri.cq_units_rebuilt, ri.cq_units_dropped);
  fflush(stdout);
  close_broker(b);

  settle(g_root);
  t0 = now_s();
  rc = rmq_broker_open(dir, &o, &b);
  double clean_secs = now_s() - t0;
  if (rc) fail_rmq("rmq_broker_open after a clean close", rc);
  if ((rc = rmq_broker_recovery_info(b, &ri))) fail_rmq("rmq_broker_recovery_info", rc);
  printf("case=rmq-open-clean op=open page_cache=warm commitlog_bytes=%" PRId64 " secs=%.3f records_scanned=%" PRId64
         "\n",
         ri.commitlog_max_offset - ri.commitlog_min_offset, clean_secs, ri.records_scanned);
  fflush(stdout);
  close_broker(b);
  rm_tree(dir);
  *out_crash_secs = crash_secs;
  *out_clean_secs = clean_secs;
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

static uint64_t expected_sum(uint64_t n)
{
  unsigned char body[BODY];
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; i++) {
    make_body(i, body);
    sum += fold(body);
  }
  return sum;
}

static void ratio(const char *name, double num, double den)
{
  printf("ratio %s=%.3f\n", name, den > 0 ? num / den : 0.0);
}

int main(int argc, char **argv)
{
  /* Before any other rmq call: every rmq allocation is counted. */
  rmq_config_allocator(counting_alloc, NULL);
  if (argc > 1) {
    fprintf(stderr, "usage: %s   (environment: BENCH_SECS, BENCH_MSGS, BENCH_CRASH_MB, BENCH_DIR, BENCH_ONLY)\n",
            argv[0]);
    return 2;
  }
  g_only = getenv("BENCH_ONLY");
  const char *env = getenv("BENCH_SECS");
  if (env) {
    char *end;
    g_secs = strtod(env, &end);
    if (*end || !(g_secs > 0)) fail("BENCH_SECS", "expected a positive number of seconds");
  }
  env = getenv("BENCH_MSGS");
  if (env) {
    char *end;
    g_max_msgs = strtoull(env, &end, 10);
    if (*end || g_max_msgs == 0) fail("BENCH_MSGS", "expected a positive message count");
  }
  env = getenv("BENCH_CRASH_MB");
  if (env) {
    char *end;
    unsigned long long mb = strtoull(env, &end, 10);
    if (*end || mb == 0 || mb > (1ull << 20)) fail("BENCH_CRASH_MB", "expected a positive size in MiB");
    g_crash_bytes = (int64_t)mb << 20;
  }
  const char *base = getenv("BENCH_DIR");
  if (!base || !*base) base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  if ((size_t)snprintf(g_root, sizeof g_root, "%s/rmq-bench.XXXXXX", base) >= sizeof g_root) fail(base, "path too long");
  if (!mkdtemp(g_root)) fail_errno(g_root);
  rmq_broker_options bo;
  rmq_broker_options_init(&bo);
  printf("# rmq-bench: rmq %s, body %d B, topic %s with %d queues, cap %.1f s / %" PRIu64
         " msgs per produce case, group_commit_gather_us=%d, mapped_file_size_commit_log=%" PRId64 ", dir %s\n",
         rmq_libversion(), BODY, TOPIC, QUEUES, g_secs, g_max_msgs, bo.group_commit_gather_us,
         bo.mapped_file_size_commit_log, g_root);
  fflush(stdout);

  /* Each raw ceiling runs just before the rmq cases it is compared with,
  ** so a shared machine's load drifts as little as possible between them. */
  double raw_fresh = 0, raw_warm = 0, raw_fair = 0, raw_sync = 0, raw_sync_p50 = 0, raw_gc = 0;
  prod_out a1 = {0}, a2 = {0}, a4 = {0}, ab = {0}, s1 = {0}, s4 = {0}, s16 = {0};
  double pull32 = 0, pull1024 = 0, pull32rr = 0, pull_first = 0;
  if (want("async")) {
    raw_mmap_append(&raw_fresh, &raw_warm);
    raw_fair_append(&raw_fair);
    /* ASYNC_FLUSH, 1 thread; its store is reopened for the pull cases (page
    ** cache warm, page tables cold for the first pass). */
    char dir1[4096];
    case_dir("rmq-async-t1", dir1, sizeof dir1);
    rmq_broker *b1 = open_broker(dir1, RMQ_ASYNC_FLUSH);
    produce_case("rmq-async-t1", b1, dir1, 1, g_max_msgs, &a1);
    close_broker(b1);
    if (want("pull")) {
      uint64_t sum = expected_sum(a1.msgs) + a1.warm_sum;
      settle(g_root);
      b1 = open_broker(dir1, RMQ_ASYNC_FLUSH);
      pull_case("rmq-pull-b32", b1, 32, 0, a1.msgs + a1.warm, sum, &pull32, &pull_first);
      pull_case("rmq-pull-b1024", b1, 1024, 0, a1.msgs + a1.warm, sum, &pull1024, NULL);
      pull_case("rmq-pull-b32-in-turn", b1, 32, 1, a1.msgs + a1.warm, sum, &pull32rr, NULL);
      close_broker(b1);
    }
    rm_tree(dir1);
    produce_fresh("rmq-async-t2", RMQ_ASYNC_FLUSH, 2, g_max_msgs, &a2);
    produce_fresh("rmq-async-t4", RMQ_ASYNC_FLUSH, 4, g_max_msgs, &a4);
    /* Batches of 32 from one thread (latency figures are per batch call). */
    g_batch = 32;
    produce_fresh("rmq-async-batch32-t1", RMQ_ASYNC_FLUSH, 1, g_max_msgs, &ab);
    g_batch = 0;
  }

  if (want("sync")) {
    /* SYNC_FLUSH: time-capped only. */
    raw_pwrite_fdatasync(&raw_sync, &raw_sync_p50);
    produce_fresh("rmq-sync-t1", RMQ_SYNC_FLUSH, 1, UINT64_MAX, &s1);
    produce_fresh("rmq-sync-t4", RMQ_SYNC_FLUSH, 4, UINT64_MAX, &s4);
    raw_group_commit(&raw_gc);
    produce_fresh("rmq-sync-t16", RMQ_SYNC_FLUSH, 16, UINT64_MAX, &s16);
  }

  double push_p50 = 0, push_p99 = 0, opush_p50 = 0, opush_p99 = 0;
  if (want("push")) {
    push_case(0, &push_p50, &push_p99);
    push_case(1, &opush_p50, &opush_p99);
  }

  if (want("flush")) {
    paced_case(1000);
    paced_case(20000);
  }

  double crash_secs = 0, clean_secs = 0;
  if (want("crash")) crash_case(&crash_secs, &clean_secs);

  if (want("sync")) {
    ratio("sync_t1_vs_pwrite_fdatasync", s1.rate, raw_sync);
    ratio("sync_t1_p50_vs_pwrite_fdatasync_p50", s1.p50_us, raw_sync_p50);
    ratio("sync_t4_vs_sync_t1", s4.rate, s1.rate);
    ratio("sync_t16_vs_sync_t1", s16.rate, s1.rate);
    ratio("sync_t16_vs_group_commit_t16", s16.rate, raw_gc);
    ratio("sync_t16_vs_pwrite_fdatasync", s16.rate, raw_sync);
  }
  if (want("async")) {
    ratio("async_t1_vs_fair_append", a1.rate, raw_fair);
    ratio("async_t1_vs_anonymous_like_fresh", a1.rate, raw_fresh);
    ratio("async_t2_vs_async_t1", a2.rate, a1.rate);
    ratio("async_t4_vs_async_t1", a4.rate, a1.rate);
    ratio("async_batch32_vs_async_t1", ab.rate, a1.rate);
  }
  if (want("async") && want("pull")) {
    ratio("pull_b1024_vs_pull_b32", pull1024, pull32);
    ratio("pull_b32_first_pass_vs_pull_b32", pull_first, pull32);
    ratio("pull_b32_vs_async_t1", pull32, a1.rate);
    ratio("pull_b32_in_turn_vs_queue_by_queue", pull32rr, pull32);
  }
  if (want("crash")) ratio("open_after_crash_vs_open_clean", crash_secs, clean_secs);

  rm_tree(g_root);
  return g_failed ? 1 : 0;
}
