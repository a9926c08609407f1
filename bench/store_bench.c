/*
** store_bench.c -- the store over a long life (issue 9's figures): open time
** and peak resident memory after a clean close and after a crash, for N
** topics x 8 queues with a message in each queue and for a large log in one
** topic; topic create rate; retention's manual delete over 1 and 80,000
** queues against unlinking the same files; sends to 10,000 topics round
** robin against one topic; 1, 2 and 4 threads on one shared producer
** against a producer each.
**
**   store_bench [DIR]     (DIR: where stores go, default $TMPDIR or /tmp)
**   STORE_BENCH_TOPICS="10 1000 10000"  STORE_BENCH_LOG_MB=1024
**
** Every open is measured in a fresh child process, so its peak resident
** memory (VmHWM) is the open's own; "warm" means the files are in the page
** cache (they were just written).
*/
#include "bench_util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>

static char g_root[4096];

static void fail_if(int rc, const char *what)
{
  if (rc != RMQ_OK) fail_rmq(what, rc);
}

static void rm_rf(const char *dir)
{
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fail("rm -rf", dir);
}

static void opts(rmq_broker_options *o, int service)
{
  rmq_broker_options_init(o);
  o->service_thread = service;
  o->log_level = getenv("STORE_BENCH_LOG") ? RMQ_LOG_INFO : RMQ_LOG_ERROR;
}

static long status_kb(const char *key)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  size_t kl = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, kl)) kb = strtol(line + kl, NULL, 10);
  if (f) fclose(f);
  return kb;
}

static long vm_hwm_kb(void) { return status_kb("VmHWM:"); }

static void send_body(rmq_producer *p, const char *topic, int qid, uint64_t seq)
{
  unsigned char body[BODY];
  make_body(seq, body);
  rmq_msg *m;
  fail_if(rmq_msg_create(&m, topic, "TagA", body, BODY), "rmq_msg_create");
  rmq_send_result r;
  int rc = qid >= 0 ? rmq_producer_send_to_queue(p, m, qid, &r) : rmq_producer_send(p, m, &r);
  fail_if(rc, "send");
  rmq_msg_free(m);
}

/* Makes a store of `topics` x 8 queues, one message in each queue; clean
** closes it, or (crash) leaves it open by _exit in a child. Prints the
** create rate. */
static void make_topics_store(const char *dir, int topics, int crash)
{
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    rmq_broker_options o;
    opts(&o, 0);
    rmq_broker *b;
    fail_if(rmq_broker_open(dir, &o, &b), "open");
    char name[64];
    double t0 = now_s();
    for (int t = 0; t < topics; t++) {
      snprintf(name, sizeof name, "Topic%05d", t);
      fail_if(rmq_topic_create(b, name, 8), "rmq_topic_create");
    }
    double t1 = now_s();
    rmq_producer *p;
    fail_if(rmq_producer_create(b, NULL, NULL, &p), "producer");
    uint64_t seq = 0;
    for (int t = 0; t < topics; t++) {
      snprintf(name, sizeof name, "Topic%05d", t);
      for (int q = 0; q < 8; q++) send_body(p, name, q, seq++);
    }
    double t2 = now_s();
    printf("case=create topics=%d queues=%d create_s=%.3f topics_per_s=%.0f first_send_each_queue_s=%.3f\n", topics,
           topics * 8, t1 - t0, topics / (t1 - t0), t2 - t1);
    fflush(stdout);
    rmq_producer_destroy(p);
    if (crash) {
      fail_if(rmq_broker_flush(b), "flush");
      _exit(0);
    }
    fail_if(rmq_broker_close(b), "close");
    _exit(0);
  }
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) fail("make store", "child failed");
}

/* Opens dir in a child: time, peak RSS, what recovery did; checks the count
** of queues holding a message when expect_queues >= 0. */
static void open_case(const char *label, const char *dir, int expect_queues)
{
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    long before = vm_hwm_kb();
    rmq_broker_options o;
    opts(&o, 0);
    rmq_broker *b;
    double t0 = now_s();
    fail_if(rmq_broker_open(dir, &o, &b), "open");
    double t1 = now_s();
    long after = vm_hwm_kb();
    rmq_recovery_info ri;
    rmq_broker_recovery_info(b, &ri);
    size_t nt = 0;
    fail_if(rmq_topic_list(b, NULL, 0, &nt), "topic list");
    int holding = 0;
    if (expect_queues >= 0) {
      rmq_topic_info *ti = xmalloc(nt * sizeof *ti + 1);
      size_t n2;
      fail_if(rmq_topic_list(b, ti, nt, &n2), "topic list");
      for (size_t i = 0; i < nt; i++)
        for (int q = 0; q < ti[i].write_queue_nums; q++) {
          int64_t mn, mx;
          fail_if(rmq_topic_queue_offsets(b, ti[i].topic_name, q, &mn, &mx), "offsets");
          holding += mx > mn;
        }
      free(ti);
      if (holding != expect_queues) {
        fprintf(stderr, "%s: %d queues hold a message, expected %d\n", label, holding, expect_queues);
        _exit(2);
      }
    }
    double t2 = now_s();
    long anon = status_kb("RssAnon:"), file = status_kb("RssFile:") + status_kb("RssShmem:");
    fail_if(rmq_broker_close(b), "close");
    double t3 = now_s();
    printf("case=open %s topics=%zu abnormal=%d open_s=%.3f peak_rss_mb=%.1f open_rss_mb=%.1f anon_mb=%.1f file_mb=%.1f "
           "records_scanned=%" PRId64 " log_bytes=%" PRId64 " close_s=%.3f\n", label, nt, ri.abnormal, t1 - t0,
           after / 1024.0, (after - before) / 1024.0, anon / 1024.0, file / 1024.0, ri.records_scanned,
           ri.commitlog_max_offset - ri.commitlog_min_offset, t3 - t2);
    fflush(stdout);
    _exit(0);
  }
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) fail("open case", label);
}

static void topics_cases(int topics)
{
  char dir[4300], label[128];
  snprintf(dir, sizeof dir, "%s/topics-%d", g_root, topics);
  rm_rf(dir);
  make_topics_store(dir, topics, 0);
  snprintf(label, sizeof label, "kind=clean-warm topics_made=%d", topics);
  open_case(label, dir, topics * 8);
  open_case(label, dir, topics * 8); /* the first open may still find work of the create's */
  rm_rf(dir);
  make_topics_store(dir, topics, 1);
  snprintf(label, sizeof label, "kind=crash-warm topics_made=%d", topics);
  open_case(label, dir, topics * 8);
  rm_rf(dir);
}

uint32_t rmqi_crc32(const void *buf, size_t len); /* librmq's, for the ceiling */

/* The ceiling for a recovery scan: read the CommitLog's data (up to its
** first hole) from the page cache and CRC it, 1 MiB at a time. */
static void scan_ceiling(const char *dir)
{
  char cl[4400];
  snprintf(cl, sizeof cl, "%s/commitlog", dir);
  DIR *d = opendir(cl);
  if (!d) fail_errno("opendir");
  struct dirent *e;
  static unsigned char buf[1 << 20];
  uint64_t bytes = 0;
  uint32_t acc = 0;
  double t0 = now_s();
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char fp[4700];
    snprintf(fp, sizeof fp, "%s/%s", cl, e->d_name);
    int fd = open(fp, O_RDONLY);
    if (fd < 0) fail_errno("open");
    off_t end = lseek(fd, 0, SEEK_HOLE);
    for (off_t off = 0; off < end;) {
      ssize_t k = pread(fd, buf, sizeof buf, off);
      if (k <= 0) break;
      acc ^= rmqi_crc32(buf, (size_t)k);
      bytes += (uint64_t)k;
      off += k;
    }
    close(fd);
  }
  closedir(d);
  double secs = now_s() - t0;
  printf("case=scan_ceiling bytes=%" PRIu64 " secs=%.3f MB_per_s=%.0f crc=%08x\n", bytes, secs, bytes / secs / 1e6, acc);
}

/* One topic, log_mb MiB of 128-byte messages in 1 GiB files (RocketMQ's
** size); then clean and crash opens. */
static void big_log_cases(int log_mb)
{
  char dir[4300], label[128];
  snprintf(dir, sizeof dir, "%s/biglog", g_root);
  rm_rf(dir);
  for (int crash = 0; crash < 2; crash++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      rmq_broker_options o;
      opts(&o, 1);
      o.mapped_file_size_commit_log = 1ll << 30;
      rmq_broker *b;
      fail_if(rmq_broker_open(dir, &o, &b), "open");
      fail_if(rmq_topic_create(b, "Big", 8), "create");
      rmq_producer *p;
      fail_if(rmq_producer_create(b, NULL, NULL, &p), "producer");
      uint64_t n = (uint64_t)log_mb * 1048576 / 232;
      for (uint64_t i = 0; i < n; i++) send_body(p, "Big", -1, i);
      rmq_producer_destroy(p);
      fail_if(rmq_broker_flush(b), "flush");
      if (crash) _exit(0);
      fail_if(rmq_broker_close(b), "close");
      _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) fail("big log", "child failed");
    snprintf(label, sizeof label, "kind=%s-warm log_mb=%d", crash ? "crash" : "clean", log_mb);
    open_case(label, dir, -1);
    if (crash) scan_ceiling(dir);
  }
  rm_rf(dir);
}

/* ---- sends ------------------------------------------------------------- */

typedef struct sctx {
  rmq_broker *b;
  rmq_producer *shared;
  int topics;
  uint64_t n;
  pthread_barrier_t *bar;
} sctx;

static void *sender(void *arg)
{
  sctx *x = arg;
  rmq_producer *p = x->shared;
  if (!p) fail_if(rmq_producer_create(x->b, NULL, NULL, &p), "producer");
  unsigned char body[BODY];
  make_body(1, body);
  rmq_msg *m[16];
  char name[64];
  int nm = x->topics < 16 ? x->topics : 16;
  for (int i = 0; i < nm; i++) {
    snprintf(name, sizeof name, "Topic%05d", i);
    fail_if(rmq_msg_create(&m[i], name, "TagA", body, BODY), "msg");
  }
  rmq_msg *one;
  fail_if(rmq_msg_create(&one, "Topic00000", "TagA", body, BODY), "msg");
  pthread_barrier_wait(x->bar);
  rmq_send_result r;
  for (uint64_t i = 0; i < x->n; i++) {
    if (x->topics > 1) {
      /* Every queue of every topic in turn: topic i mod T, then its queues. */
      snprintf(name, sizeof name, "Topic%05d", (int)(i % (uint64_t)x->topics));
      fail_if(rmq_msg_set_topic(m[0], name), "set topic");
      fail_if(rmq_producer_send_to_queue(p, m[0], (int)(i / (uint64_t)x->topics % 8), &r), "send");
    } else {
      fail_if(rmq_producer_send_to_queue(p, one, (int)(i % 8), &r), "send");
    }
  }
  for (int i = 0; i < nm; i++) rmq_msg_free(m[i]);
  rmq_msg_free(one);
  if (!x->shared) rmq_producer_destroy(p);
  return NULL;
}

static double send_rate(const char *dir, int topics, int threads, int shared, uint64_t per_thread)
{
  rm_rf(dir);
  rmq_broker_options o;
  opts(&o, 1);
  rmq_broker *b;
  fail_if(rmq_broker_open(dir, &o, &b), "open");
  char name[64];
  for (int t = 0; t < topics; t++) {
    snprintf(name, sizeof name, "Topic%05d", t);
    fail_if(rmq_topic_create(b, name, 8), "create");
  }
  rmq_producer *sp = NULL;
  if (shared) fail_if(rmq_producer_create(b, NULL, NULL, &sp), "producer");
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  pthread_t th[8];
  sctx x = {b, sp, topics, per_thread, &bar};
  for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, sender, &x);
  pthread_barrier_wait(&bar);
  double t0 = now_s();
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  double secs = now_s() - t0;
  pthread_barrier_destroy(&bar);
  if (sp) rmq_producer_destroy(sp);
  fail_if(rmq_broker_close(b), "close");
  rm_rf(dir);
  return (double)per_thread * threads / secs;
}

/* Retention: a store of `topics` x 8 queues holding a message each, then
** `mb` MiB more in one topic, all expired (file_reserved_time 0); times the
** manual delete (CommitLog files, then every queue's clean-up and min
** correction) against the ceiling of unlinking as many files of that size. */
static void retention_case(int topics, int mb)
{
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/retention-%d", g_root, topics);
  rm_rf(dir);
  rmq_broker_options o;
  opts(&o, 0);
  o.file_reserved_time = 0;
  o.delete_when = "";
  rmq_broker *b;
  fail_if(rmq_broker_open(dir, &o, &b), "open");
  rmq_producer *p;
  fail_if(rmq_producer_create(b, NULL, NULL, &p), "producer");
  char name[64];
  uint64_t seq = 0;
  for (int t = 0; t < topics; t++) {
    snprintf(name, sizeof name, "Topic%05d", t);
    fail_if(rmq_topic_create(b, name, 8), "rmq_topic_create");
    for (int q = 0; q < 8; q++) send_body(p, name, q, seq++);
  }
  fail_if(rmq_topic_create(b, "Bulk", 8), "rmq_topic_create");
  int64_t bulk = (int64_t)mb * 1048576 / (BODY + 150);
  for (int64_t i = 0; i < bulk; i++) send_body(p, "Bulk", -1, seq++);
  rmq_producer_destroy(p);
  fail_if(rmq_broker_flush(b), "flush");
  long before = vm_hwm_kb();
  int deleted = 0;
  double t0 = now_s();
  fail_if(rmq_broker_delete_expired_files(b, &deleted), "delete expired");
  double t1 = now_s();
  int64_t mn, mx;
  fail_if(rmq_topic_queue_offsets(b, "Topic00000", 0, &mn, &mx), "offsets");
  if (deleted < 1 || mn != mx) fail("retention", "nothing deleted, or a queue's min did not move");
  fail_if(rmq_broker_close(b), "close");
  /* Ceiling: as many files of that size written, synced and mapped (as
  ** the CommitLog's are), then unlinked and unmapped: what
  ** deleting them costs the kernel, whatever does it. */
  char fp[4400];
  snprintf(fp, sizeof fp, "%s/ceiling", dir);
  int64_t size = o.mapped_file_size_commit_log;
  static unsigned char chunk[1 << 20];
  memset(chunk, 0x5a, sizeof chunk);
  void *maps[64];
  int fds[64], nc = deleted < 64 ? deleted : 64;
  for (int i = 0; i < nc; i++) {
    char f[4500];
    snprintf(f, sizeof f, "%s.%d", fp, i);
    fds[i] = open(f, O_RDWR | O_CREAT, 0644);
    if (fds[i] < 0 || posix_fallocate(fds[i], 0, size) != 0) fail_errno("ceiling file");
    for (int64_t at = 0; at < size; at += (int64_t)sizeof chunk)
      if (pwrite(fds[i], chunk, sizeof chunk, at) != (ssize_t)sizeof chunk) fail_errno("ceiling write");
    if (fdatasync(fds[i]) != 0) fail_errno("ceiling sync"); /* flushed, as the CommitLog's are */
    maps[i] = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, fds[i], 0);
    if (maps[i] == MAP_FAILED) fail_errno("ceiling mmap");
  }
  double c0 = now_s();
  for (int i = 0; i < nc; i++) {
    char f[4500];
    snprintf(f, sizeof f, "%s.%d", fp, i);
    unlink(f);
    munmap(maps[i], (size_t)size);
    close(fds[i]);
  }
  double c1 = now_s();
  printf("case=retention topics=%d queues=%d log_mb=%d files_deleted=%d delete_s=%.3f per_queue_us=%.2f "
         "unlink_unmap_ceiling_s=%.3f ratio_vs_ceiling=%.2f rss_growth_mb=%.1f\n", topics, topics * 8 + 8, mb, deleted,
         t1 - t0, (t1 - t0) * 1e6 / (topics * 8 + 8), c1 - c0, (c1 - c0) / (t1 - t0), (vm_hwm_kb() - before) / 1024.0);
  rm_rf(dir);
}

int main(int argc, char **argv)
{
  const char *base = argc > 1 ? argv[1] : getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  snprintf(g_root, sizeof g_root, "%s/rmq-store-bench-XXXXXX", base);
  if (!mkdtemp(g_root)) fail_errno("mkdtemp");
  const char *tl = getenv("STORE_BENCH_TOPICS");
  if (!tl) tl = "10 1000 10000";
  int log_mb = getenv("STORE_BENCH_LOG_MB") ? atoi(getenv("STORE_BENCH_LOG_MB")) : 1024;
  printf("# store_bench: stores in %s; open cases run in a fresh child each\n", g_root);
  for (const char *p = tl; *p;) {
    char *end;
    long t = strtol(p, &end, 10);
    if (end == p) break;
    topics_cases((int)t);
    p = end;
  }
  if (log_mb > 0) big_log_cases(log_mb);
  retention_case(1, 256);
  retention_case(10000, 256);

  char dir[4300];
  snprintf(dir, sizeof dir, "%s/sends", g_root);
  double one = send_rate(dir, 1, 1, 1, 2000000);
  double many = send_rate(dir, 10000, 1, 1, 2000000);
  printf("case=send topics=1 queues=8 msgs_per_s=%.0f\ncase=send topics=10000 queues=80000 round_robin=1 msgs_per_s=%.0f "
         "ratio_vs_1_topic=%.2f\n",
         one, many, many / one);
  for (int th = 1; th <= 4; th *= 2) {
    double sh = send_rate(dir, 1, th, 1, 1000000);
    double own = send_rate(dir, 1, th, 0, 1000000);
    printf("case=threads threads=%d shared_producer_msgs_per_s=%.0f producer_each_msgs_per_s=%.0f shared_vs_each=%.2f\n", th,
           sh, own, sh / own);
  }
  rm_rf(g_root);
  return 0;
}
