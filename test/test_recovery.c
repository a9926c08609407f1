/*
** test_recovery.c -- what rmq_broker_open does with a store that was not
** closed cleanly or was damaged on disk (ROCKETMQ.md section 15, DESIGN.md
** section 5):
**
**   - a torn tail (garbage or a partial record after the last record) is cut
**     and every earlier message survives;
**   - a flipped body byte cuts the CommitLog at that record, as RocketMQ
**     does, and the ConsumeQueues stop pointing past the cut;
**   - a missing or short ConsumeQueue is rebuilt from the CommitLog;
**   - SIGKILL of a process sending under SYNC_FLUSH loses no acknowledged
**     message and duplicates none;
**   - the lock (RMQ_EBUSY "Lock failed") and the abort file;
**   - damaged file names and config files give RMQ_ECORRUPT or a recovery,
**     never a crash.
** Each recovered store is also checked by ../shared/tools/rmqstore.py.
*/
#include "test_util.h"
#include "rmq_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#define CL_SIZE TU_CL_SIZE

/* ======================================================================= */
/* Helpers                                                                 */
/* ======================================================================= */

static void put64(uint8_t *p, uint64_t v)
{
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static void write_at(const char *path, int64_t off, const void *buf, size_t n)
{
  int fd = open(path, O_WRONLY);
  if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
  ssize_t w = pwrite(fd, buf, n, (off_t)off);
  close(fd);
  if (w != (ssize_t)n) fail_msg("pwrite %s: %s", path, strerror(errno));
}

static void write_file(const char *path, const void *data, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  close(fd);
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = calloc(1, 65536);
  assert_non_null(b);
  size_t n = fread(b, 1, 65535, f);
  b[n] = 0;
  fclose(f);
  return b;
}

static int file_exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

static void store_file(char *buf, size_t n, const char *store, const char *rel)
{
  snprintf(buf, n, "%s/%s", store, rel);
}

static void cl_file(char *buf, size_t n, const char *store, int64_t start)
{
  snprintf(buf, n, "%s/commitlog/%020" PRId64, store, start);
}

static void make_abort(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "abort");
  write_file(p, "4242", 4);
}

typedef struct seen {
  uint64_t id;
  int qid;
  int64_t qoff, phys;
  int32_t size;
} seen;

static int seen_cmp(const void *a, const void *b)
{
  uint64_t x = ((const seen *)a)->id, y = ((const seen *)b)->id;
  return x < y ? -1 : x > y;
}

static int u64_cmp(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int send_id(rmq_producer *p, rmq_msg *m, uint64_t id, size_t len, seen *out)
{
  static uint8_t buf[8192];
  assert_true(len >= 16 && len <= sizeof buf);
  tu_make_body(buf, id, len);
  ok(rmq_msg_set_body(m, buf, len));
  rmq_send_result r;
  int rc = rmq_producer_send(p, m, &r);
  if (rc == RMQ_OK && out)
    *out = (seen){id, r.message_queue.queue_id, r.queue_offset, r.commit_log_offset, r.store_size};
  return rc;
}

/* Pulls all of one queue from its min offset, checking bodies and that
** queue offsets have no gaps. */
static size_t pull_queue(rmq_broker *b, rmq_pull_consumer *c, const char *topic, int qid, seen *out, size_t cap)
{
  rmq_message_queue mq = tu_mq(topic, qid);
  int64_t min, max, off;
  ok(rmq_topic_queue_offsets(b, topic, qid, &min, &max));
  size_t n = 0;
  for (off = min;;) {
    rmq_pull_result r;
    ok(rmq_pull_consumer_pull(c, &mq, "*", off, 256, &r));
    if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
    assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
    for (size_t i = 0; i < r.n; i++) {
      const rmq_message_ext *e = &r.msgs[i];
      uint64_t id = 0;
      if (!tu_body_check(e->body, (size_t)e->body_len, &id))
        fail_msg("%s/%d offset %" PRId64 ": body damaged", topic, qid, e->queue_offset);
      assert_int_equal(e->queue_offset, off + (int64_t)i);
      if (n >= cap) fail_msg("%s/%d: more than %zu messages", topic, qid, cap);
      out[n++] = (seen){id, e->queue_id, e->queue_offset, e->commit_log_offset, e->store_size};
    }
    off = r.next_begin_offset;
  }
  assert_int_equal(off, max);
  return n;
}

static size_t pull_all(rmq_broker *b, const char *topic, seen *out, size_t cap)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "TestPullAll", &c));
  size_t nq, n = 0;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, NULL, 0, &nq));
  for (size_t q = 0; q < nq; q++) n += pull_queue(b, c, topic, (int)q, out + n, cap - n);
  rmq_pull_consumer_destroy(c);
  return n;
}

/* A closed store holding n messages sent round-robin to `nq` queues of
** `topic`, bodies of base..base+spread bytes; out[i] describes message i. */
static void populate(const char *store, const rmq_broker_options *o, const char *topic, int nq, size_t n,
                     size_t base, size_t spread, seen *out)
{
  rmq_broker *b;
  ok(rmq_broker_open(store, o, &b));
  ok(rmq_topic_create(b, topic, nq));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, topic, "TagP", NULL, 0));
  for (size_t i = 0; i < n; i++) ok(send_id(p, m, i, base + (i * 397u) % spread, &out[i]));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
}

/* Pulled messages are exactly sent[0..n), with the same places. */
static void assert_same(seen *got, size_t ngot, const seen *sent, size_t n)
{
  assert_int_equal(ngot, n);
  qsort(got, ngot, sizeof *got, seen_cmp);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(got[i].id, sent[i].id);
    assert_int_equal(got[i].qid, sent[i].qid);
    assert_int_equal(got[i].qoff, sent[i].qoff);
    assert_int_equal(got[i].phys, sent[i].phys);
  }
}

/* ======================================================================= */
/* Torn tail                                                               */
/* ======================================================================= */

enum { GARBAGE_RANDOM, GARBAGE_PARTIAL, GARBAGE_REPLAYED };

#define TORN_N 60

static void test_torn_tail(void **state)
{
  (void)state;
  static const struct { const char *what; int kind; int abort_file; } cases[] = {
    {"random bytes after the last record, crash", GARBAGE_RANDOM, 1},
    {"the first 150 bytes of a record (torn write), crash", GARBAGE_PARTIAL, 1},
    {"a whole valid record with the wrong PHYSICALOFFSET, crash", GARBAGE_REPLAYED, 1},
    {"random bytes after the last record, clean close", GARBAGE_RANDOM, 0},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    print_message("  case: %s\n", cases[ci].what);
    char store[1024], path[2048];
    tu_store_path(store, sizeof store, "torn");
    tu_log log = {0};
    rmq_broker_options o;
    tu_small_opts(&o, &log);
    static seen sent[TORN_N + 8], got[TORN_N + 9];
    populate(store, &o, "Torn", 2, TORN_N, 800, 1200, sent);
    int64_t end = sent[TORN_N - 1].phys + sent[TORN_N - 1].size;
    assert_true(end > CL_SIZE); /* two files: the tail is in the second */
    int64_t start = end / CL_SIZE * CL_SIZE;
    cl_file(path, sizeof path, store, start);

    static uint8_t g[8192];
    size_t glen;
    if (cases[ci].kind == GARBAGE_RANDOM) {
      glen = 300;
      for (size_t i = 0; i < glen; i++) g[i] = (uint8_t)(i * 91u + 7u) | 1u;
      static const uint8_t bad_magic[4] = {0x12, 0x34, 0x56, 0x78};
      memcpy(g + 4, bad_magic, 4);
    } else {
      const seen *last = &sent[TORN_N - 1];
      char lp[2048];
      cl_file(lp, sizeof lp, store, last->phys / CL_SIZE * CL_SIZE);
      tu_read_exact(lp, last->phys % CL_SIZE, g, (size_t)last->size);
      glen = (size_t)last->size;
      if (cases[ci].kind == GARBAGE_PARTIAL) {
        put64(g + 28, (uint64_t)end); /* it would be a record right here... */
        glen = 150;                   /* ...had it been written whole */
      }
    }
    write_at(path, end - start, g, glen);
    if (cases[ci].abort_file) make_abort(store);

    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    rmq_recovery_info ri;
    ok(rmq_broker_recovery_info(b, &ri));
    assert_int_equal(ri.abnormal, cases[ci].abort_file);
    assert_true(ri.bytes_truncated > 0);
    assert_true(ri.bytes_truncated <= (int64_t)glen);
    if (cases[ci].kind == GARBAGE_RANDOM) assert_int_equal(ri.bytes_truncated, (int64_t)glen);
    assert_int_equal(ri.commitlog_max_offset, end);
    assert_true(ri.records_scanned > 0);
    if (!strstr(log.text, "commitlog cut at offset")) fail_msg("no cut reported in the log: %s", log.text);

    assert_same(got, pull_all(b, "Torn", got, TORN_N + 9), sent, TORN_N);

    /* New sends land right after the last good record. */
    int64_t max0, max1;
    ok(rmq_topic_queue_offsets(b, "Torn", 0, NULL, &max0));
    ok(rmq_topic_queue_offsets(b, "Torn", 1, NULL, &max1));
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Torn", "TagP", NULL, 0));
    int64_t pos = end;
    for (size_t i = TORN_N; i < TORN_N + 8; i++) {
      ok(send_id(p, m, i, 100, &sent[i]));
      assert_int_equal(sent[i].phys, pos);
      assert_int_equal(sent[i].qoff, sent[i].qid == 0 ? max0++ : max1++);
      pos += sent[i].size;
    }
    rmq_msg_free(m);
    rmq_producer_destroy(p);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);

    ok(rmq_broker_open(store, &o, &b));
    ok(rmq_broker_recovery_info(b, &ri));
    assert_int_equal(ri.abnormal, 0);
    assert_int_equal(ri.bytes_truncated, 0);
    assert_same(got, pull_all(b, "Torn", got, TORN_N + 9), sent, TORN_N + 8);
    ok(rmq_broker_close(b));
    tu_store_remove(store);
  }
}

/* ======================================================================= */
/* Flipped body byte                                                       */
/* ======================================================================= */

#define FLIP_N 60
#define FLIP_K 17

static void test_flipped_body_byte(void **state)
{
  (void)state;
  char store[1024], path[2048];
  tu_store_path(store, sizeof store, "flip");
  tu_log log = {0};
  rmq_broker_options o;
  tu_small_opts(&o, &log);
  static seen sent[FLIP_N], got[FLIP_N + 1];
  populate(store, &o, "Flip", 2, FLIP_N, 800, 1200, sent);
  const seen *k = &sent[FLIP_K];
  assert_true(k->phys + k->size < CL_SIZE);                          /* k is in the first file */
  assert_true(sent[FLIP_N - 1].phys >= CL_SIZE);                      /* later ones in the second */

  /* One byte of message k's body (the body starts at @88). */
  cl_file(path, sizeof path, store, 0);
  uint8_t byte;
  tu_read_exact(path, k->phys + 88 + 20, &byte, 1);
  byte ^= 0xFF;
  write_at(path, k->phys + 88 + 20, &byte, 1);
  make_abort(store);

  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 1);
  assert_int_equal(ri.commitlog_max_offset, k->phys); /* cut at the bad record */
  assert_true(ri.bytes_truncated >= (int64_t)(sent[FLIP_N - 1].phys + sent[FLIP_N - 1].size - CL_SIZE));
  assert_int_equal(ri.cq_units_dropped, FLIP_N - FLIP_K);
  assert_int_equal(ri.files_removed, 1);
  if (!strstr(log.text, "body CRC mismatch")) fail_msg("the log does not say why: %s", log.text);
  cl_file(path, sizeof path, store, CL_SIZE);
  assert_false(file_exists(path));

  /* Messages 0..k-1 and nothing else. */
  assert_same(got, pull_all(b, "Flip", got, FLIP_N + 1), sent, FLIP_K);
  for (int q = 0; q < 2; q++) {
    int64_t want = 0, max;
    for (int i = 0; i < FLIP_K; i++) want += sent[i].qid == q;
    ok(rmq_topic_queue_offsets(b, "Flip", q, NULL, &max));
    assert_int_equal(max, want);
    /* The unit that pointed at a dropped record is gone from the file. */
    uint8_t u[20];
    static const uint8_t zero[20];
    snprintf(path, sizeof path, "%s/consumequeue/Flip/%d/%020d", store, q, 0);
    tu_read_exact(path, max * 20, u, 20);
    assert_memory_equal(u, zero, 20);
  }

  /* The next send takes the bad record's place. */
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Flip", "TagP", NULL, 0));
  seen s;
  ok(send_id(p, m, 1000, 100, &s));
  assert_int_equal(s.phys, k->phys);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* ======================================================================= */
/* Lost ConsumeQueue                                                       */
/* ======================================================================= */

#define CQ_N 400

static void test_lost_consume_queue_rebuilt(void **state)
{
  (void)state;
  static const struct { const char *what; int truncate_to; int64_t rebuilt; } cases[] = {
    {"consumequeue/<topic>/2 deleted", -1, CQ_N / 4},
    {"its first file cut to 30 units", 600, 64 - 30},
    /* A damaged name: a queue file 10^5 files in, past any unit the
    ** 4-file log can hold, is ignored (not 10^5 head files made). */
    {"its files replaced by one named 128000000", -2, CQ_N / 4},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    print_message("  case: %s\n", cases[ci].what);
    char store[1024], path[2048];
    tu_store_path(store, sizeof store, "cq");
    rmq_broker_options o;
    tu_small_opts(&o, NULL);
    o.mapped_file_size_consume_queue = 20 * 64; /* 100 units a queue: two files */
    static seen sent[CQ_N], got[CQ_N + 1];
    populate(store, &o, "Cq", 4, CQ_N, 16, 100, sent);
    if (cases[ci].truncate_to == -1) {
      snprintf(path, sizeof path, "%s/consumequeue/Cq/2", store);
      tu_rm_rf(path);
      assert_false(file_exists(path));
    } else if (cases[ci].truncate_to == -2) {
      char far[2048];
      snprintf(path, sizeof path, "%s/consumequeue/Cq/2/%020d", store, 1280);
      assert_int_equal(unlink(path), 0);
      snprintf(path, sizeof path, "%s/consumequeue/Cq/2/%020d", store, 0);
      snprintf(far, sizeof far, "%s/consumequeue/Cq/2/%020d", store, 128000000);
      assert_int_equal(rename(path, far), 0);
    } else {
      snprintf(path, sizeof path, "%s/consumequeue/Cq/2/%020d", store, 0);
      assert_int_equal(truncate(path, cases[ci].truncate_to), 0);
    }

    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    rmq_recovery_info ri;
    ok(rmq_broker_recovery_info(b, &ri));
    assert_int_equal(ri.abnormal, 0);
    assert_int_equal(ri.bytes_truncated, 0);
    assert_int_equal(ri.cq_units_rebuilt, cases[ci].rebuilt);
    for (int f = 0; f < 2; f++) {
      snprintf(path, sizeof path, "%s/consumequeue/Cq/2/%020d", store, f * 1280);
      assert_true(file_exists(path));
    }
    snprintf(path, sizeof path, "%s/consumequeue/Cq/2/%020d", store, 128000000);
    assert_false(file_exists(path));

    /* Queue 2 in order, at the offsets the sends returned. */
    rmq_pull_consumer *c;
    ok(rmq_pull_consumer_create(b, "CqGroup", &c));
    size_t n = pull_queue(b, c, "Cq", 2, got, CQ_N + 1);
    rmq_pull_consumer_destroy(c);
    assert_int_equal(n, CQ_N / 4);
    size_t j = 0;
    for (size_t i = 0; i < CQ_N; i++) {
      if (sent[i].qid != 2) continue;
      assert_int_equal(got[j].id, sent[i].id);
      assert_int_equal(got[j].qoff, sent[i].qoff);
      assert_int_equal(got[j].qoff, (int64_t)j);
      assert_int_equal(got[j].phys, sent[i].phys);
      j++;
    }
    assert_same(got, pull_all(b, "Cq", got, CQ_N + 1), sent, CQ_N);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);
    tu_store_remove(store);
  }
}

/* ======================================================================= */
/* SIGKILL under SYNC_FLUSH                                                */
/* ======================================================================= */

#define CRASH_THREADS 4

typedef struct crash_ctx {
  rmq_broker *b;
  int fd;
  int t;
} crash_ctx;

static void quiet_log(void *ctx, int level, const char *msg)
{
  (void)ctx; (void)level; (void)msg;
}

static void *crash_sender(void *arg)
{
  crash_ctx *cx = arg;
  rmq_producer *p;
  if (rmq_producer_create(cx->b, NULL, NULL, &p) != RMQ_OK) _exit(20);
  rmq_msg *m;
  if (rmq_msg_create(&m, "Crash", "TagC", NULL, 0) != RMQ_OK) _exit(21);
  uint8_t body[128];
  int64_t stop = tu_mono_ms() + 60000; /* the parent kills us long before */
  for (uint64_t seq = 0; tu_mono_ms() < stop; seq++) {
    uint64_t id = ((uint64_t)cx->t << 32) | seq;
    size_t len = 16 + (size_t)(seq % 64);
    tu_make_body(body, id, len);
    if (rmq_msg_set_body(m, body, len) != RMQ_OK) _exit(22);
    rmq_send_result r;
    int rc = rmq_producer_send(p, m, &r);
    if (rc != RMQ_OK) _exit(23);
    if (r.send_status != RMQ_SEND_OK) continue; /* stored, but not acknowledged as durable */
    ssize_t w;
    do w = write(cx->fd, &id, sizeof id);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)sizeof id) _exit(24);
  }
  _exit(25);
}

static void crash_child(const char *store, int fd)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.mapped_file_size_consume_queue = 20 * 65536;
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  o.log = quiet_log;
  rmq_broker *b;
  if (rmq_broker_open(store, &o, &b) != RMQ_OK) _exit(10);
  if (rmq_topic_create(b, "Crash", 4) != RMQ_OK) _exit(11);
  pthread_t th[CRASH_THREADS];
  crash_ctx cx[CRASH_THREADS];
  for (int i = 0; i < CRASH_THREADS; i++) {
    cx[i] = (crash_ctx){b, fd, i};
    if (pthread_create(&th[i], NULL, crash_sender, &cx[i]) != 0) _exit(12);
  }
  for (int i = 0; i < CRASH_THREADS; i++) pthread_join(th[i], NULL);
  _exit(13);
}

static void test_sigkill_under_sync_flush(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "kill");
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    crash_child(store, fds[1]);
    _exit(99);
  }
  close(fds[1]);

  size_t cap = 1 << 16, nacks = 0, have = 0;
  uint64_t *acks = malloc(cap * sizeof *acks);
  assert_non_null(acks);
  uint8_t buf[4096 + 8];
  int64_t t0 = tu_mono_ms(), first = -1;
  int eof = 0, killed = 0, status = 0;
  /* Read acknowledgments until 700 ms after the first one, kill the child
  ** with SIGKILL, then read what it had written before dying. */
  while (!eof) {
    int64_t now = tu_mono_ms();
    if (!killed && ((first >= 0 && now - first >= 700) || now - t0 > 20000)) {
      assert_int_equal(kill(pid, SIGKILL), 0);
      assert_int_equal(waitpid(pid, &status, 0), pid);
      killed = 1;
    }
    struct pollfd pf = {fds[0], POLLIN, 0};
    if (poll(&pf, 1, killed ? 1000 : 20) < 0 && errno != EINTR) fail_msg("poll: %s", strerror(errno));
    ssize_t r = read(fds[0], buf + have, 4096);
    if (r == 0) { eof = 1; break; }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail_msg("read: %s", strerror(errno));
    }
    have += (size_t)r;
    size_t whole = have / 8 * 8;
    for (size_t i = 0; i < whole; i += 8) {
      if (nacks == cap) {
        cap *= 2;
        acks = realloc(acks, cap * sizeof *acks);
        assert_non_null(acks);
      }
      memcpy(&acks[nacks++], buf + i, 8);
    }
    memmove(buf, buf + whole, have - whole);
    have -= whole;
    if (first < 0 && nacks) first = tu_mono_ms();
  }
  close(fds[0]);
  if (!killed) {
    waitpid(pid, &status, 0);
    fail_msg("the child exited by itself (status 0x%x) after %zu acknowledgments", status, nacks);
  }
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
    fail_msg("the child ended with status 0x%x, not SIGKILL", status);
  assert_int_equal(have, 0);
  assert_true(nacks > 0);

  tu_log log = {0};
  rmq_broker_options o;
  tu_small_opts(&o, &log);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 1);
  size_t gcap = nacks + 64;
  seen *got = malloc(gcap * sizeof *got);
  assert_non_null(got);
  size_t n = pull_all(b, "Crash", got, gcap);
  ok(rmq_broker_close(b));

  /* Every acknowledged id exactly once; at most one unacknowledged send per
  ** thread (stored, killed before its acknowledgment) besides. */
  uint64_t *ids = malloc((n + 1) * sizeof *ids);
  assert_non_null(ids);
  for (size_t i = 0; i < n; i++) ids[i] = got[i].id;
  qsort(ids, n, sizeof *ids, u64_cmp);
  for (size_t i = 1; i < n; i++)
    if (ids[i] == ids[i - 1]) fail_msg("message %016" PRIx64 " stored twice", ids[i]);
  for (size_t i = 0; i < nacks; i++)
    if (!bsearch(&acks[i], ids, n, sizeof *ids, u64_cmp))
      fail_msg("acknowledged message %016" PRIx64 " lost (%zu acknowledged, %zu recovered)", acks[i], nacks, n);
  assert_true(n >= nacks);
  assert_true(n <= nacks + CRASH_THREADS);
  print_message("  %zu acknowledged, %zu recovered, %" PRId64 " bytes cut\n", nacks, n, ri.bytes_truncated);
  tu_rmqstore_check(store);
  free(ids);
  free(got);
  free(acks);
  tu_store_remove(store);
}

/* ======================================================================= */
/* Lock and abort file                                                     */
/* ======================================================================= */

static void test_second_open_is_busy(void **state)
{
  (void)state;
  char store[1024], path[2048];
  tu_store_path(store, sizeof store, "busy");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  rmq_broker *b, *b2 = NULL;
  ok(rmq_broker_open(store, &o, &b));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Busy", NULL, NULL, 0));
  seen s[2];
  ok(send_id(p, m, 0, 32, &s[0]));

  /* Same process. */
  assert_int_equal(rmq_broker_open(store, &o, &b2), RMQ_EBUSY);
  assert_null(b2);
  if (!strstr(rmq_errmsg(), "Lock failed")) fail_msg("EBUSY message: %s", rmq_errmsg());

  /* Another process. */
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rmq_broker *cb = NULL;
    int rc = rmq_broker_open(store, &o, &cb);
    _exit(rc == RMQ_EBUSY && strstr(rmq_errmsg(), "Lock failed") ? 0 : rc == RMQ_OK ? 2 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  /* The failed opens touched nothing: the first broker goes on. */
  store_file(path, sizeof path, store, "abort");
  assert_true(file_exists(path));
  store_file(path, sizeof path, store, "lock");
  char *lock = slurp(path);
  assert_non_null(lock);
  assert_string_equal(lock, "lock");
  free(lock);
  ok(send_id(p, m, 1, 32, &s[1]));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  seen got[3];
  assert_same(got, pull_all(b, "Busy", got, 3), s, 2);
  ok(rmq_broker_close(b));

  ok(rmq_broker_open(store, &o, &b)); /* unlocked by the close */
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 0);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

static void test_abort_file(void **state)
{
  (void)state;
  char store[1024], path[2048];
  tu_store_path(store, sizeof store, "abort");
  store_file(path, sizeof path, store, "abort");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  rmq_broker *b;
  seen sent[10], got[11];

  ok(rmq_broker_open(store, &o, &b));
  assert_true(file_exists(path)); /* exists while open */
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Abort", NULL, NULL, 0));
  for (int i = 0; i < 5; i++) ok(send_id(p, m, (uint64_t)i, 40, &sent[i]));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  assert_false(file_exists(path)); /* a clean close removes it */

  ok(rmq_broker_open(store, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 0);
  ok(rmq_broker_close(b));

  /* A process that ends without closing leaves it, holding its pid. */
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rmq_broker *cb;
    rmq_producer *cp;
    rmq_msg *cm;
    if (rmq_broker_open(store, &o, &cb) || rmq_producer_create(cb, NULL, NULL, &cp) ||
        rmq_msg_create(&cm, "Abort", NULL, NULL, 0))
      _exit(1);
    for (int i = 5; i < 10; i++) {
      uint8_t body[40];
      tu_make_body(body, (uint64_t)i, sizeof body);
      rmq_send_result r;
      if (rmq_msg_set_body(cm, body, sizeof body) || rmq_producer_send(cp, cm, &r)) _exit(2);
    }
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  char *text = slurp(path);
  assert_non_null(text);
  char want[32];
  snprintf(want, sizeof want, "%d", (int)pid);
  assert_string_equal(text, want);
  free(text);

  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 1);
  size_t n = pull_all(b, "Abort", got, 11);
  assert_int_equal(n, 10); /* the page cache outlives the process */
  qsort(got, n, sizeof *got, seen_cmp);
  for (size_t i = 0; i < n; i++) assert_int_equal(got[i].id, i);
  for (int i = 0; i < 5; i++) assert_int_equal(got[i].phys, sent[i].phys);
  ok(rmq_broker_close(b));
  assert_false(file_exists(path));
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 0);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* ======================================================================= */
/* Damaged names and config files                                          */
/* ======================================================================= */

#define BAD_N 200

static seen g_bad_sent[BAD_N];

static void move_file(const char *store, const char *from_rel, const char *to_rel)
{
  char a[2048], b[2048];
  store_file(a, sizeof a, store, from_rel);
  store_file(b, sizeof b, store, to_rel);
  assert_int_equal(rename(a, b), 0);
}

static void dmg_cl_gap(const char *store) { move_file(store, "commitlog/00000000000000065536", "moved-away"); }
static void fix_cl_gap(const char *store) { move_file(store, "moved-away", "commitlog/00000000000000065536"); }

static void dmg_cl_long(const char *store)
{
  char p[2048];
  cl_file(p, sizeof p, store, 2 * CL_SIZE);
  assert_int_equal(truncate(p, CL_SIZE + 100), 0);
}
static void fix_cl_long(const char *store)
{
  char p[2048];
  cl_file(p, sizeof p, store, 2 * CL_SIZE);
  assert_int_equal(truncate(p, CL_SIZE), 0);
}

/* Cut the last file 50 bytes into message BAD_N-3. */
static void dmg_cl_short(const char *store)
{
  const seen *s = &g_bad_sent[BAD_N - 3];
  char p[2048];
  cl_file(p, sizeof p, store, s->phys / CL_SIZE * CL_SIZE);
  assert_int_equal(truncate(p, s->phys % CL_SIZE + 50), 0);
}

static void dmg_cl_junk(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "commitlog/00000000000000000000.tmp");
  write_file(p, "junk", 4);
  store_file(p, sizeof p, store, "commitlog/README");
  write_file(p, "junk", 4);
  store_file(p, sizeof p, store, "consumequeue/Bad/not-a-queue");
  assert_int_equal(mkdir(p, 0755), 0);
}

/* The middle CommitLog file cut short: its records are gone, so open
** refuses rather than read the rest as a hole. */
static void dmg_cl_mid_short(const char *store)
{
  char p[2048];
  cl_file(p, sizeof p, store, CL_SIZE);
  assert_int_equal(truncate(p, 1000), 0);
}

/* The first CommitLog file renamed to follow the last one. */
static void dmg_cl_renamed(const char *store)
{
  move_file(store, "commitlog/00000000000000000000", "commitlog/00000000000000196608");
}
static void fix_cl_renamed(const char *store)
{
  move_file(store, "commitlog/00000000000000196608", "commitlog/00000000000000000000");
}

/* A CommitLog file named near INT64_MAX: the next file's start would
** overflow (found by fuzz_store: a send after such an open). */
static void dmg_cl_far(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "commitlog/09223372036854710000");
  write_file(p, "x", 1);
}
static void fix_cl_far(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "commitlog/09223372036854710000");
  assert_int_equal(unlink(p), 0);
}

/* A directory where consumerOffset.json should be. */
static void dmg_offsets_dir(const char *store)
{
  char p[2048];
  move_file(store, "config/consumerOffset.json", "offsets-away");
  store_file(p, sizeof p, store, "config/consumerOffset.json");
  assert_int_equal(mkdir(p, 0755), 0);
}
static void fix_offsets_dir(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "config/consumerOffset.json");
  assert_int_equal(rmdir(p), 0);
  move_file(store, "offsets-away", "config/consumerOffset.json");
}

static void garbage(const char *store, const char *rel)
{
  char p[2048];
  store_file(p, sizeof p, store, rel);
  static const char junk[] = "{\"topicConfigTable\":{\"Bad\":{\x01\xff";
  write_file(p, junk, sizeof junk - 1);
}

static void dmg_topics_both(const char *store)
{
  garbage(store, "config/topics.json");
  garbage(store, "config/topics.json.bak");
}

static void dmg_topics_nobak(const char *store)
{
  char p[2048];
  garbage(store, "config/topics.json");
  store_file(p, sizeof p, store, "config/topics.json.bak");
  unlink(p);
}

static void dmg_topics_empty(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "config/topics.json");
  write_file(p, "", 0);
}

static void dmg_offsets_both(const char *store)
{
  garbage(store, "config/consumerOffset.json");
  garbage(store, "config/consumerOffset.json.bak");
}

static void dmg_checkpoint(const char *store)
{
  char p[2048];
  store_file(p, sizeof p, store, "checkpoint");
  assert_int_equal(truncate(p, 3), 0);
  make_abort(store);
}

typedef struct bad_case {
  const char *what;
  void (*damage)(const char *store);
  int rc;                            /* what rmq_broker_open returns */
  const char *errsub;                /* ...and its message holds */
  void (*repair)(const char *store); /* failed open: undo, then all must be there */
  size_t readable;                   /* successful open: messages readable */
  int offsets_kept;                  /* the committed consumer offset survives */
  int64_t cl_size;                   /* reopen with this mapped_file_size_commit_log (0: same) */
} bad_case;

static const bad_case k_bad[] = {
  {"gap in CommitLog file names", dmg_cl_gap, RMQ_ECORRUPT, "does not follow", fix_cl_gap, BAD_N, 1, 0},
  {"CommitLog file longer than the others", dmg_cl_long, RMQ_ECORRUPT, "expected", fix_cl_long, BAD_N, 1, 0},
  {"last CommitLog file cut mid-record", dmg_cl_short, RMQ_OK, NULL, NULL, BAD_N - 3, 1, 0},
  {"junk names in commitlog/ and consumequeue/", dmg_cl_junk, RMQ_OK, NULL, NULL, BAD_N, 1, 0},
  {"middle CommitLog file cut short", dmg_cl_mid_short, RMQ_ECORRUPT, "expected 65536", NULL, 0, 0, 0},
  {"first CommitLog file renamed after the last", dmg_cl_renamed, RMQ_ECORRUPT, "renamed?", fix_cl_renamed, BAD_N, 1, 0},
  {"a CommitLog file named near INT64_MAX", dmg_cl_far, RMQ_ECORRUPT, "past any offset", fix_cl_far, BAD_N, 1, 0},
  {"topics.json and .bak garbage", dmg_topics_both, RMQ_ECORRUPT, "topics.json", NULL, 0, 0, 0},
  {"topics.json garbage, no .bak", dmg_topics_nobak, RMQ_ECORRUPT, "topics.json", NULL, 0, 0, 0},
  {"topics.json empty, .bak good", dmg_topics_empty, RMQ_OK, NULL, NULL, BAD_N, 1, 0},
  {"consumerOffset.json and .bak garbage", dmg_offsets_both, RMQ_OK, NULL, NULL, BAD_N, 0, 0},
  {"a directory in place of consumerOffset.json", dmg_offsets_dir, RMQ_ECORRUPT, "not a regular file", fix_offsets_dir,
   BAD_N, 1, 0},
  {"checkpoint cut to 3 bytes, crash", dmg_checkpoint, RMQ_OK, NULL, NULL, BAD_N, 1, 0},
  {"reopened with another CommitLog file size", NULL, RMQ_OK, NULL, NULL, BAD_N, 1, 2 * CL_SIZE},
};

static void test_damaged_files_never_crash(void **state)
{
  (void)state;
  for (size_t ci = 0; ci < sizeof k_bad / sizeof k_bad[0]; ci++) {
    const bad_case *c = &k_bad[ci];
    print_message("  case: %s\n", c->what);
    char store[1024];
    tu_store_path(store, sizeof store, "bad");
    tu_log log = {0};
    rmq_broker_options o;
    tu_small_opts(&o, &log);
    populate(store, &o, "Bad", 2, BAD_N, 400, 400, g_bad_sent);
    assert_true(g_bad_sent[BAD_N - 1].phys >= 2 * CL_SIZE); /* three files */
    /* A committed offset, and topics.json written twice (so a .bak exists). */
    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    ok(rmq_topic_create(b, "Bad", 2));
    rmq_pull_consumer *pc;
    ok(rmq_pull_consumer_create(b, "BadGroup", &pc));
    rmq_message_queue mq = tu_mq("Bad", 1);
    ok(rmq_pull_consumer_update_consume_offset(pc, &mq, 7));
    rmq_pull_consumer_destroy(pc);
    ok(rmq_broker_close(b));

    if (c->damage) c->damage(store);
    if (c->cl_size) o.mapped_file_size_commit_log = c->cl_size;
    b = NULL;
    int rc = rmq_broker_open(store, &o, &b);
    if (rc != c->rc) fail_msg("%s: open -> %d (%s): %s", c->what, rc, rmq_errstr(rc), rmq_errmsg());
    size_t want = c->readable;
    if (rc != RMQ_OK) {
      assert_null(b);
      if (!strstr(rmq_errmsg(), c->errsub)) fail_msg("%s: message lacks '%s': %s", c->what, c->errsub, rmq_errmsg());
      if (!c->repair) { tu_store_remove(store); continue; }
      c->repair(store); /* the failed open released the lock and changed nothing */
      ok(rmq_broker_open(store, &o, &b));
    }
    static seen got[BAD_N + 2];
    assert_same(got, pull_all(b, "Bad", got, BAD_N + 2), g_bad_sent, want);
    ok(rmq_pull_consumer_create(b, "BadGroup", &pc));
    int64_t off = -1;
    rc = rmq_pull_consumer_fetch_consume_offset(pc, &mq, &off);
    if (c->offsets_kept) {
      ok(rc);
      assert_int_equal(off, 7);
    } else {
      assert_int_equal(rc, RMQ_ENOTFOUND); /* what the code does: offsets start over */
      assert_non_null(strstr(log.text, "consumerOffset.json is damaged"));
    }
    rmq_pull_consumer_destroy(pc);
    /* Sends go on after the last readable message. */
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Bad", "TagP", NULL, 0));
    seen s;
    ok(send_id(p, m, 5000, 64, &s));
    assert_int_equal(s.phys, g_bad_sent[want - 1].phys + g_bad_sent[want - 1].size);
    rmq_msg_free(m);
    rmq_producer_destroy(p);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);
    tu_store_remove(store);
  }
}

/* ======================================================================= */
/* Damaged record headers and ConsumeQueue units                            */
/* ======================================================================= */

/* Writes n big-endian bytes of v at the CommitLog offset phys. */
static void patch_cl(const char *store, int64_t phys, uint64_t v, int n)
{
  char p[2048];
  cl_file(p, sizeof p, store, phys / CL_SIZE * CL_SIZE);
  uint8_t b[8];
  for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  int fd = open(p, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, b, (size_t)n, phys % CL_SIZE), n);
  close(fd);
}

static void cq_path(char *buf, size_t n, const char *store, int qid, int64_t file_start)
{
  snprintf(buf, n, "%s/consumequeue/Hdr/%d/%020" PRId64, store, qid, file_start);
}


#define HDR_N 300
#define HDR_CQ 2000 /* 100 units a ConsumeQueue file */

static seen g_hdr_sent[HDR_N];

static rmq_broker *hdr_open(const char *store, rmq_broker_options *o, tu_log *log)
{
  tu_small_opts(o, log);
  o->mapped_file_size_consume_queue = HDR_CQ;
  rmq_broker *b;
  ok(rmq_broker_open(store, o, &b));
  return b;
}

/* Messages of queue qid, as sent. */
static size_t hdr_expected(int qid, seen *out, int skip_id)
{
  size_t n = 0;
  for (size_t i = 0; i < HDR_N; i++)
    if (g_hdr_sent[i].qid == qid && (int)g_hdr_sent[i].id != skip_id) out[n++] = g_hdr_sent[i];
  return n;
}

/* Pulls queue qid of Hdr to its end: messages whose bodies check, each of
** that queue; holes (skipped units) allowed. */
static size_t hdr_pull(rmq_broker *b, int qid, seen *out)
{
  rmq_pull_consumer *pc;
  ok(rmq_pull_consumer_create(b, "HdrGroup", &pc));
  rmq_message_queue mq = tu_mq("Hdr", qid);
  int64_t min, max;
  ok(rmq_topic_queue_offsets(b, "Hdr", qid, &min, &max));
  size_t n = 0;
  for (int64_t off = min; off < max;) {
    rmq_pull_result r;
    ok(rmq_pull_consumer_pull(pc, &mq, "*", off, 32, &r));
    assert_true(r.pull_status == RMQ_PULL_FOUND || r.pull_status == RMQ_PULL_NO_MATCHED_MSG);
    for (size_t i = 0; i < r.n; i++) {
      uint64_t id;
      assert_true(tu_body_check(r.msgs[i].body, (size_t)r.msgs[i].body_len, &id));
      assert_int_equal(r.msgs[i].queue_id, qid);
      out[n++] = (seen){id, qid, r.msgs[i].queue_offset, r.msgs[i].commit_log_offset, r.msgs[i].store_size};
    }
    off = r.next_begin_offset;
  }
  rmq_pull_consumer_destroy(pc);
  return n;
}

/* Both queues read back hold `want` messages; then b is closed and the store
** removed. */
static void hdr_expect_and_remove(rmq_broker *b, const char *store, size_t want, seen *got)
{
  size_t n = hdr_pull(b, 0, got);
  n += hdr_pull(b, 1, got + n);
  assert_int_equal(n, want);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

static void test_damaged_headers_and_units(void **state)
{
  (void)state;
  char store[1024], p[2048];
  tu_log log = {0};
  rmq_broker_options o;
  static seen got[HDR_N + 2], want[HDR_N];

  /* QUEUEOFFSET and QUEUEID lie outside the body's CRC. A crash recovery
  ** that meets a record claiming offset 10^17 or queue 1000 leaves it
  ** unindexed: no queue files without end, no queue count grown. */
  tu_store_path(store, sizeof store, "hdr");
  tu_small_opts(&o, NULL);
  o.mapped_file_size_consume_queue = HDR_CQ;
  populate(store, &o, "Hdr", 2, HDR_N, 100, 200, g_hdr_sent);
  patch_cl(store, g_hdr_sent[HDR_N - 10].phys + 20, 100000000000000000ull, 8);
  patch_cl(store, g_hdr_sent[HDR_N - 5].phys + 12, 1000, 4);
  make_abort(store);
  rmq_broker *b = hdr_open(store, &o, &log);
  assert_non_null(strstr(log.text, "not indexed"));
  for (int q = 0; q < 2; q++) {
    snprintf(p, sizeof p, "%s/consumequeue/Hdr/%d", store, q);
    assert_true(tu_count_files(p) <= 2);
  }
  rmq_message_queue mqs[8];
  size_t nq;
  rmq_pull_consumer *pc;
  ok(rmq_pull_consumer_create(b, "HdrGroup", &pc));
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(pc, "Hdr", mqs, 8, &nq));
  assert_int_equal(nq, 2);
  rmq_pull_consumer_destroy(pc);
  /* Every other message reads back; the two damaged ones, whose units
  ** still point at them, are skipped rather than delivered as what their
  ** headers now claim. */
  size_t n = hdr_pull(b, 0, got);
  n += hdr_pull(b, 1, got + n);
  assert_int_equal(n, HDR_N - 2);
  assert_non_null(strstr(log.text, "damaged consume queue"));
  ok(rmq_broker_close(b));
  tu_store_remove(store);

  /* A QUEUEOFFSET that jumps further than the log between it and its
  ** queue's previous record could hold (but within the log's bound above):
  ** unindexed too, no empty files up to it. */
  tu_store_path(store, sizeof store, "hdr");
  populate(store, &o, "Hdr", 2, HDR_N, 100, 200, g_hdr_sent);
  int64_t cl_bytes = (g_hdr_sent[HDR_N - 1].phys / CL_SIZE + 1) * CL_SIZE;
  int jump = HDR_N - 7;
  assert_true(cl_bytes / 91 > 10 * (HDR_CQ / 20)); /* room for 10 files */
  patch_cl(store, g_hdr_sent[jump].phys + 20, (uint64_t)(cl_bytes / 91), 8);
  make_abort(store);
  b = hdr_open(store, &o, &log);
  assert_non_null(strstr(log.text, "too near for that"));
  snprintf(p, sizeof p, "%s/consumequeue/Hdr/%d", store, g_hdr_sent[jump].qid);
  assert_true(tu_count_files(p) <= 2);
  hdr_expect_and_remove(b, store, HDR_N - 1, got);

  /* STORETIMESTAMP and BORNTIMESTAMP lie outside the CRC too: a record
  ** claiming a time near INT64_MIN is re-indexed after the crash without
  ** an overflow (UBSan; found by fuzz_store in the index's time delta). */
  tu_store_path(store, sizeof store, "hdr");
  populate(store, &o, "Hdr", 2, HDR_N, 100, 200, g_hdr_sent);
  patch_cl(store, g_hdr_sent[HDR_N - 1].phys + 56, 0x8000000000000001ull, 8); /* STORETIMESTAMP (IPv4) */
  patch_cl(store, g_hdr_sent[HDR_N - 2].phys + 36, 0x8000000000000001ull, 8); /* BORNTIMESTAMP */
  make_abort(store);
  b = hdr_open(store, &o, &log);
  n = hdr_pull(b, 0, got);
  n += hdr_pull(b, 1, got + n);
  assert_int_equal(n, HDR_N);
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  rmq_broker_stats_free(&st);
  ok(rmq_broker_close(b));
  tu_store_remove(store);

  /* Garbage units after a queue's end are dropped with the rebuild, so the
  ** next send takes the next offset and leaves no hole. */
  tu_store_path(store, sizeof store, "hdr");
  populate(store, &o, "Hdr", 2, HDR_N, 100, 200, g_hdr_sent);
  cq_path(p, sizeof p, store, 1, HDR_CQ);
  int fd = open(p, O_WRONLY);
  assert_true(fd >= 0);
  uint8_t junk[20 * 10];
  memset(junk, 0x17, sizeof junk);
  assert_int_equal(pwrite(fd, junk, sizeof junk, 20 * 60), (ssize_t)sizeof junk); /* units 160..169 */
  close(fd);
  make_abort(store);
  b = hdr_open(store, &o, &log);
  int64_t min, max;
  ok(rmq_topic_queue_offsets(b, "Hdr", 1, &min, &max));
  assert_int_equal(max, HDR_N / 2);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);

  /* A queue's first ConsumeQueue file deleted: rebuilt from the log. */
  tu_store_path(store, sizeof store, "hdr");
  populate(store, &o, "Hdr", 2, HDR_N, 100, 200, g_hdr_sent);
  cq_path(p, sizeof p, store, 0, 0);
  assert_int_equal(unlink(p), 0);
  b = hdr_open(store, &o, &log);
  ok(rmq_topic_queue_offsets(b, "Hdr", 0, &min, &max));
  assert_int_equal(min, 0);
  assert_int_equal(max, HDR_N / 2);
  n = pull_all(b, "Hdr", got, HDR_N + 2);
  assert_same(got, n, g_hdr_sent, HDR_N);
  ok(rmq_broker_close(b));
  tu_store_remove(store);

  /* A damaged record in the middle of the log found by a rebuild after a
  ** clean close (a queue's files were lost): no crash, so no torn tail to
  ** cut. The scan skips to the next whole record and keeps everything after
  ** it; only the damaged record is lost. (After a crash the CommitLog is
  ** cut at the first bad record, as RocketMQ does: test_flipped_body_byte.) */
  tu_store_path(store, sizeof store, "hdr");
  populate(store, &o, "Hdr", 2, HDR_N, 1000, 200, g_hdr_sent);
  assert_true(g_hdr_sent[HDR_N - 1].phys >= 4 * CL_SIZE);
  int victim = 0;
  while (g_hdr_sent[victim].phys < CL_SIZE + CL_SIZE / 2) victim++;
  patch_cl(store, g_hdr_sent[victim].phys + 4, 0x01020304, 4); /* its magic */
  snprintf(p, sizeof p, "%s/consumequeue/Hdr/0", store);
  tu_rm_rf(p);
  b = hdr_open(store, &o, &log);
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_true(ri.bytes_skipped > 0);
  assert_int_equal(ri.bytes_truncated, 0);
  assert_int_equal(ri.commitlog_max_offset, g_hdr_sent[HDR_N - 1].phys + g_hdr_sent[HDR_N - 1].size);
  hdr_expect_and_remove(b, store, HDR_N - 1, got);

  /* After a clean close the units before the last three CommitLog files
  ** are trusted, but one that points at another queue's record does not
  ** deliver that record in its place. */
  tu_store_path(store, sizeof store, "hdr");
  populate(store, &o, "Hdr", 2, HDR_N, 1000, 200, g_hdr_sent);
  uint8_t unit[20];
  cq_path(p, sizeof p, store, 0, 0);
  tu_read_exact(p, 20 * 7, unit, sizeof unit);
  cq_path(p, sizeof p, store, 1, 0);
  fd = open(p, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, unit, sizeof unit, 20 * 7), 20);
  /* And one whose offset is near INT64_MAX: no overflow on the way to the
  ** record, skipped like any unit that points nowhere. */
  uint8_t huge[8] = {0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xEF};
  assert_int_equal(pwrite(fd, huge, 8, 20 * 9), 8);
  close(fd);
  b = hdr_open(store, &o, &log);
  n = hdr_pull(b, 1, got);
  size_t nw = hdr_expected(1, want, -1);
  assert_int_equal(n, nw - 2); /* queue 1's offsets 7 and 9 are skipped, nothing else */
  assert_non_null(strstr(log.text, "damaged consume queue"));
  ok(rmq_broker_close(b));
  /* The reader left a marker: the next open rebuilds the queues, and the
  ** messages come back. */
  store_file(p, sizeof p, store, "consumequeue.rebuild");
  assert_true(file_exists(p));
  b = hdr_open(store, &o, &log);
  assert_non_null(strstr(log.text, "rebuilding the queues"));
  assert_false(file_exists(p));
  n = hdr_pull(b, 1, got);
  assert_int_equal(n, nw);
  qsort(got, n, sizeof *got, seen_cmp);
  for (size_t i = 0; i < n; i++) assert_int_equal(got[i].id, want[i].id);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* RocketMQ deletes expired CommitLog files from the head and keeps each
** queue's last ConsumeQueue file: units below the CommitLog's first file
** are records that expired, and a queue keeps its offsets. */
static void test_expired_head_keeps_queue_offsets(void **state)
{
  (void)state;
  char store[1024], p[2048];
  tu_store_path(store, sizeof store, "expired");
  tu_log log = {0};
  rmq_broker_options o;
  tu_small_opts(&o, &log);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "ExpA", 1));
  ok(rmq_topic_create(b, "ExpB", 1));
  rmq_producer *pr;
  ok(rmq_producer_create(b, NULL, NULL, &pr));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "ExpA", NULL, "hello", 5));
  for (int i = 0; i < 100; i++) ok(rmq_producer_send(pr, m, NULL));
  ok(rmq_msg_set_topic(m, "ExpB"));
  for (int i = 0; i < 2000; i++) ok(rmq_producer_send(pr, m, NULL));
  rmq_producer_destroy(pr);
  ok(rmq_broker_close(b));
  cl_file(p, sizeof p, store, 0);
  assert_int_equal(unlink(p), 0);
  ok(rmq_broker_open(store, &o, &b));
  int64_t min, max;
  ok(rmq_topic_queue_offsets(b, "ExpA", 0, &min, &max));
  assert_int_equal(max, 100);
  ok(rmq_producer_create(b, NULL, NULL, &pr));
  rmq_send_result r;
  ok(rmq_msg_set_topic(m, "ExpA"));
  ok(rmq_producer_send(pr, m, &r));
  assert_int_equal(r.queue_offset, 100);
  rmq_msg_free(m);
  rmq_producer_destroy(pr);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* A queue rebuilt with its head gone (CommitLog head files deleted, the
** ConsumeQueues lost) starts at the file holding its first surviving
** offset, the units before it padded (RocketMQ's fillPreBlank): no file is
** made for the offsets below. */
static void test_rebuild_late_queue_padded(void **state)
{
  (void)state;
  char store[1024], p[2048];
  tu_store_path(store, sizeof store, "latequeue");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.mapped_file_size_consume_queue = 64 * 20;
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "Late", 1));
  rmq_producer *pr;
  ok(rmq_producer_create(b, NULL, NULL, &pr));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Late", "TagL", "hello", 5));
  enum { N = 3000 };
  int64_t first_kept = -1;
  for (int i = 0; i < N; i++) {
    rmq_send_result r;
    ok(rmq_producer_send(pr, m, &r));
    if (first_kept < 0 && r.commit_log_offset >= TU_CL_SIZE) first_kept = r.queue_offset;
  }
  rmq_msg_free(m);
  rmq_producer_destroy(pr);
  ok(rmq_broker_close(b));
  assert_true(first_kept >= 64 * 3); /* past the first three queue files */
  cl_file(p, sizeof p, store, 0);
  assert_int_equal(unlink(p), 0);
  snprintf(p, sizeof p, "%s/consumequeue", store);
  tu_rm_rf(p);

  for (int pass = 0; pass < 2; pass++) { /* the rebuild, then a clean reopen */
    ok(rmq_broker_open(store, &o, &b));
    int64_t min, max;
    ok(rmq_topic_queue_offsets(b, "Late", 0, &min, &max));
    assert_int_equal(min, first_kept);
    assert_int_equal(max, N);
    snprintf(p, sizeof p, "%s/consumequeue/Late/0", store);
    assert_int_equal(tu_count_files(p), (N - 1) / 64 - first_kept / 64 + 1);
    snprintf(p, sizeof p, "%s/consumequeue/Late/0/%020" PRId64, store, first_kept / 64 * 64 * 20);
    uint8_t unit[20];
    if (first_kept % 64) { /* the file's first unit is a pad */
      tu_read_exact(p, 0, unit, sizeof unit);
      static const uint8_t pad[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF};
      assert_memory_equal(unit, pad, sizeof pad); /* offset 0, size INT32_MAX */
    }
    rmq_pull_consumer *pc;
    ok(rmq_pull_consumer_create(b, "LateGroup", &pc));
    rmq_message_queue mq = tu_mq("Late", 0);
    rmq_pull_result r;
    ok(rmq_pull_consumer_pull(pc, &mq, "*", first_kept, 4, &r));
    assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.msgs[0].queue_offset, first_kept);
    ok(rmq_pull_consumer_pull(pc, &mq, "*", 0, 4, &r)); /* below the queue: moved to its start */
    assert_int_not_equal(r.pull_status, RMQ_PULL_FOUND);
    assert_int_equal(r.next_begin_offset, first_kept);
    rmq_pull_consumer_destroy(pc);
    ok(rmq_broker_close(b));
  }
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* Recovery reads the log through a buffer: records that cross its 4 MiB
** boundary, and one larger than it (a 4 MiB body), come out whole. */
static void test_rebuild_reads_large_records(void **state)
{
  (void)state;
  char store[1024], path[2048];
  tu_store_path(store, sizeof store, "bigrec");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.mapped_file_size_commit_log = 16 << 20;
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "Big", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, "BigP", NULL, &p));
  static const size_t sizes[] = {1000, 100000, 4194304, 777, 3000000, 65536, 20};
  enum { N = 120 };
  static uint8_t body[4194304];
  size_t lens[N];
  for (int i = 0; i < N; i++) {
    lens[i] = sizes[(size_t)i % (sizeof sizes / sizeof sizes[0])];
    if (i % 3) lens[i] = 16 + (size_t)(i * 37) % 5000;
    tu_make_body(body, (uint64_t)i, lens[i]);
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Big", "T", body, lens[i]));
    rmq_send_result r;
    ok(rmq_producer_send_to_queue(p, m, i % 2, &r));
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  snprintf(path, sizeof path, "%s/consumequeue", store);
  tu_rm_rf(path);
  ok(rmq_broker_open(store, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.cq_units_rebuilt, N);
  assert_int_equal(ri.bytes_truncated, 0);
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "BigC", &c));
  int nseen = 0;
  for (int q = 0; q < 2; q++) {
    rmq_message_queue mq = tu_mq("Big", q);
    int64_t off = 0;
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mq, "*", off, 8, &r));
      if (r.pull_status != RMQ_PULL_FOUND) break;
      for (size_t k = 0; k < r.n; k++) {
        uint64_t id;
        assert_true(tu_body_check(r.msgs[k].body, (size_t)r.msgs[k].body_len, &id));
        assert_true(id < N);
        assert_int_equal(id % 2, q);
        assert_int_equal((size_t)r.msgs[k].body_len, lens[id]);
        nseen++;
      }
      off = r.next_begin_offset;
    }
  }
  assert_int_equal(nseen, N);
  rmq_pull_consumer_destroy(c);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_torn_tail),
    cmocka_unit_test(test_flipped_body_byte),
    cmocka_unit_test(test_lost_consume_queue_rebuilt),
    cmocka_unit_test(test_sigkill_under_sync_flush),
    cmocka_unit_test(test_second_open_is_busy),
    cmocka_unit_test(test_abort_file),
    cmocka_unit_test(test_damaged_files_never_crash),
    cmocka_unit_test(test_damaged_headers_and_units),
    cmocka_unit_test(test_expired_head_keeps_queue_offsets),
    cmocka_unit_test(test_rebuild_reads_large_records),
    cmocka_unit_test(test_rebuild_late_queue_padded),
  };
  (void)tu_wait_atleast; /* shared helpers this file has no use for */
  (void)tu_clock_read;
  (void)tu_clock_advance;
  /* TEST_FILTER=test_name* runs a subset. */
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("recovery", tests, NULL, NULL);
}
