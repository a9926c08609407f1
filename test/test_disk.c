/*
** test_disk.c -- the store over a long life, as a user runs it: the lock
** RocketMQ's kind of lock sees, a checkpoint an idle open leaves alone, no
** file made ahead of the writer left behind (no all-zero ConsumeQueue file
** for RocketMQ's recovery to misread), a full disk that is an error and
** never a signal (through the OS layer, and on a real small tmpfs and ext4
** image when the tests run as root; and the disk-full mark that refuses
** sends before the disk is full), a failed topic create that changes
** nothing, and many topics.
*/
#include "test_util.h"
#include "rmq_int.h"

#include <dirent.h>
#include <inttypes.h>
#include <sys/mount.h>

static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_wait_atleast; (void)tu_java_hash;
}

static int setup_os(void **state) { (void)state; rmqi_os_reset(); return 0; }
static int teardown_os(void **state) { (void)state; rmqi_os_reset(); return 0; }

static void opts(rmq_broker_options *o, int flush, int service)
{
  rmq_broker_options_init(o);
  o->mapped_file_size_commit_log = 256 << 10;
  o->mapped_file_size_consume_queue = 20 * 2048;
  o->flush_disk_type = flush;
  o->service_thread = service;
  o->log_level = RMQ_LOG_ERROR;
}

/* Sends one message with body id; returns the send's code. */
static int send_one(rmq_producer *p, const char *topic, uint64_t id, size_t len, rmq_send_result *r)
{
  static __thread uint8_t body[65536];
  rmq_msg *m;
  ok(rmq_msg_create(&m, topic, "TagD", NULL, 0));
  tu_make_body(body, id, len);
  ok(rmq_msg_set_body(m, body, len));
  rmq_send_result local;
  int rc = rmq_producer_send(p, m, r ? r : &local);
  rmq_msg_free(m);
  return rc;
}

/* Every message of topic, all queues, checked intact; ids into seen[] (a
** bitmap over 0..max). Returns the count. */
static size_t read_all(rmq_broker *b, const char *topic, uint8_t *seen, uint64_t max)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "DiskReader", &c));
  rmq_message_queue mqs[64];
  size_t nq = 0;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, mqs, 64, &nq));
  size_t n = 0;
  for (size_t q = 0; q < nq; q++) {
    int64_t off = 0;
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mqs[q], "*", off, 32, &r));
      if (r.pull_status != RMQ_PULL_FOUND) break;
      for (size_t i = 0; i < r.n; i++) {
        uint64_t id;
        const rmq_message_ext *e = &r.msgs[i];
        if (!tu_body_check(e->body, e->body_len, &id)) fail_msg("a damaged body in %s/%zu", topic, q);
        if (id > max) fail_msg("message %" PRIu64 " was never sent", id);
        if (seen[id]) fail_msg("message %" PRIu64 " read twice", id);
        seen[id] = 1;
        n++;
      }
      off = r.next_begin_offset;
    }
  }
  rmq_pull_consumer_destroy(c);
  return n;
}

static int count_files(const char *dir, int (*want)(const char *path, const struct stat *st), char *first_bad,
                       size_t cap)
{
  int n = 0;
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) n += count_files(p, want, first_bad, cap);
    else if (want(p, &st)) {
      if (first_bad && !*first_bad) snprintf(first_bad, cap, "%s", p);
      n++;
    }
  }
  closedir(d);
  return n;
}

static int all_zero_file(const char *path, const struct stat *st)
{
  (void)st;
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  uint8_t buf[65536];
  size_t k;
  int zero = 1;
  while (zero && (k = fread(buf, 1, sizeof buf, f)) > 0)
    for (size_t i = 0; i < k; i++)
      if (buf[i]) { zero = 0; break; }
  fclose(f);
  return zero;
}

static int any_file(const char *path, const struct stat *st) { (void)path; (void)st; return 1; }

/* ======================================================================= */
/* The lock                                                                */
/* ======================================================================= */

/* RocketMQ's FileChannel.tryLock(0, 1, false) is an fcntl F_SETLK on byte 0:
** a store rmq holds refuses it, and a store it holds refuses rmq. */
static void test_lock_is_rocketmqs(void **state)
{
  (void)state;
  char store[1024], lock[1100];
  tu_store_path(store, sizeof store, "lock");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  snprintf(lock, sizeof lock, "%s/lock", store);

  /* Another process, as RocketMQ would: its POSIX lock fails. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(lock, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    _exit(fd >= 0 && fcntl(fd, F_SETLK, &fl) != 0 && (errno == EAGAIN || errno == EACCES) ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  ok(rmq_broker_close(b));

  /* A POSIX lock held (here, in this process) keeps rmq out. */
  int fd = open(lock, O_RDWR);
  assert_true(fd >= 0);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  assert_int_equal(fcntl(fd, F_SETLK, &fl), 0);
  assert_int_equal(rmq_broker_open(store, &o, &b), RMQ_EBUSY);
  assert_non_null(strstr(rmq_errmsg(), "Lock failed"));
  close(fd); /* drops the POSIX lock */
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* ======================================================================= */
/* What a clean close leaves                                               */
/* ======================================================================= */

static void slurp_cp(const char *store, uint8_t cp[40])
{
  char p[1100];
  snprintf(p, sizeof p, "%s/checkpoint", store);
  tu_read_exact(p, 0, cp, 40);
}

static void test_idle_open_keeps_checkpoint(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "cp");
  rmq_broker_options o;
  opts(&o, RMQ_SYNC_FLUSH, 0);
  rmq_broker *b;
  rmq_producer *p;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  for (int i = 0; i < 20; i++) ok(send_one(p, "Cp", (uint64_t)i, 100, NULL));
  rmq_producer_destroy(p);
  ok(rmq_broker_run_due(b, NULL));
  ok(rmq_broker_flush(b));
  ok(rmq_broker_close(b));
  uint8_t before[40], after[40];
  slurp_cp(store, before);
  assert_true(rmqi_get64(before) > 0); /* physicMsgTimestamp */
  char none[8] = "";
  int files = count_files(store, any_file, none, sizeof none);
  for (int round = 0; round < 3; round++) {
    ok(rmq_broker_open(store, &o, &b));
    ok(rmq_broker_close(b));
  }
  slurp_cp(store, after);
  assert_memory_equal(before, after, 40);
  assert_int_equal(count_files(store, any_file, none, sizeof none), files);
  tu_store_remove(store);
}

/* Files made ahead of the writer (the next CommitLog file, the next
** ConsumeQueue file) are gone after a clean close, and queues that never
** got a message have no file at all. */
static void test_no_files_made_ahead_remain(void **state)
{
  (void)state;
  char store[1024], bad[4096] = "";
  tu_store_path(store, sizeof store, "ahead");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 1); /* the prefaulter makes files ahead */
  o.mapped_file_size_commit_log = 4 << 20;
  o.mapped_file_size_consume_queue = 20 * 64;
  rmq_broker *b;
  rmq_producer *p;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "Ahead", 8));
  ok(rmq_topic_create(b, "Empty", 8));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  /* Queues 0..2 of 8 get messages; queue 0 fills its first file and
  ** half its second (the prefaulter makes a third). */
  for (int i = 0; i < 100; i++) {
    rmq_send_result r;
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Ahead", NULL, "x", 1));
    ok(rmq_producer_send_to_queue(p, m, i < 98 ? 0 : i - 97, &r));
    rmq_msg_free(m);
  }
  /* Well into the CommitLog's first file: the prefaulter makes the second. */
  for (int i = 0; i < 3000; i++) ok(send_one(p, "Big", (uint64_t)i, 1000, NULL));
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));

  char dir[1200];
  snprintf(dir, sizeof dir, "%s/consumequeue", store);
  assert_int_equal(count_files(dir, all_zero_file, bad, sizeof bad), 0);
  snprintf(dir, sizeof dir, "%s/consumequeue/Empty", store);
  assert_int_equal(count_files(dir, any_file, NULL, 0), 0);
  snprintf(dir, sizeof dir, "%s/consumequeue/Ahead", store);
  assert_int_equal(count_files(dir, any_file, NULL, 0), 2 + 1 + 1); /* queue 0: two files; 1, 2: one */
  snprintf(dir, sizeof dir, "%s/commitlog", store);
  assert_int_equal(count_files(dir, all_zero_file, bad, sizeof bad), 0);
  tu_rmqstore_check(store);

  ok(rmq_broker_open(store, &o, &b));
  int64_t mn, mx;
  ok(rmq_topic_queue_offsets(b, "Ahead", 0, &mn, &mx));
  assert_int_equal(mx, 98);
  ok(rmq_topic_queue_offsets(b, "Empty", 5, &mn, &mx));
  assert_int_equal(mx, 0);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* ======================================================================= */
/* A full disk through the OS layer                                        */
/* ======================================================================= */

static atomic_int g_full;          /* 1: every fallocate fails with ENOSPC */
static atomic_int g_cq_only;       /* ... only for ConsumeQueue files */
static atomic_int g_fallocs;
static _Atomic char g_fd_cq[65536]; /* fd -> opened under consumequeue/ */

static int hook_open(const char *p, int f, mode_t m)
{
  int fd = open(p, f | O_CLOEXEC, m);
  if (fd >= 0 && fd < (int)sizeof g_fd_cq) g_fd_cq[fd] = strstr(p, "/consumequeue/") != NULL;
  return fd;
}

static int hook_fallocate(int fd, off_t off, off_t len)
{
  atomic_fetch_add(&g_fallocs, 1);
  if (atomic_load(&g_full) && (!atomic_load(&g_cq_only) || (fd < (int)sizeof g_fd_cq && g_fd_cq[fd]))) {
    errno = ENOSPC;
    return -1;
  }
  int e = posix_fallocate(fd, off, len);
  if (e) { errno = e; return -1; }
  return 0;
}

static void test_enospc_is_an_error(void **state)
{
  (void)state;
  static const struct { const char *what; int flush, service, cq_only; const char *file; } cases[] = {
    {"ASYNC, no service thread, every file", RMQ_ASYNC_FLUSH, 0, 0, "fallocate"},
    {"ASYNC with the prefaulter, every file", RMQ_ASYNC_FLUSH, 1, 0, "fallocate"},
    {"ASYNC, ConsumeQueue files only", RMQ_ASYNC_FLUSH, 0, 1, "/consumequeue/"},
    {"SYNC, ConsumeQueue files only", RMQ_SYNC_FLUSH, 0, 1, "/consumequeue/"},
  };
  enum { N = 3000 };
  static uint8_t seen[N];
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    print_message("  case: %s\n", cases[ci].what);
    rmqi_os_table.open = hook_open;
    rmqi_os_table.fallocate = hook_fallocate;
    atomic_store(&g_full, 0);
    atomic_store(&g_cq_only, cases[ci].cq_only);
    char store[1024];
    tu_store_path(store, sizeof store, "nospc");
    rmq_broker_options o;
    opts(&o, cases[ci].flush, cases[ci].service);
    o.mapped_file_size_commit_log = 2 << 20;
    rmq_broker *b;
    rmq_producer *p;
    ok(rmq_broker_open(store, &o, &b));
    ok(rmq_topic_create(b, "Full", 4));
    ok(rmq_producer_create(b, NULL, NULL, &p));
    uint8_t acked[N] = {0};
    int failures = 0, resumed = 0;
    for (uint64_t id = 0; id < N; id++) {
      if (id == 1000) atomic_store(&g_full, 1); /* the disk fills */
      if (id == 2000) atomic_store(&g_full, 0); /* space is freed */
      int rc = send_one(p, "Full", id, 200 + (size_t)(id % 700), NULL);
      if (rc == RMQ_OK) {
        acked[id] = 1;
        resumed += id >= 2000;
        continue;
      }
      if (rc != RMQ_ENOSPC) fail_msg("send %" PRIu64 ": %d (%s)", id, rc, rmq_errmsg());
      if (!strstr(rmq_errmsg(), cases[ci].file) || !strstr(rmq_errmsg(), store))
        fail_msg("the error does not name the file: %s", rmq_errmsg());
      assert_true(id >= 1000 && id < 2000);
      failures++;
    }
    assert_true(failures > 0);
    assert_int_equal(resumed, N - 2000); /* no reopen needed */
    memset(seen, 0, sizeof seen);
    size_t n = read_all(b, "Full", seen, N - 1);
    for (int i = 0; i < N; i++)
      if (acked[i] != seen[i]) fail_msg("message %d: acknowledged %d, stored %d", i, acked[i], seen[i]);
    rmq_producer_destroy(p);
    ok(rmq_broker_close(b));
    rmqi_os_reset();
    ok(rmq_broker_open(store, &o, &b));
    memset(seen, 0, sizeof seen);
    assert_int_equal(read_all(b, "Full", seen, N - 1), n);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);
    tu_store_remove(store);
  }
}

/* The disk-full mark: over disk_space_warning_level_ratio sends are
** refused (reads go on) until the disk has room again. */
static atomic_int g_used_pct;

static int hook_statvfs(const char *path, struct statvfs *st)
{
  int rc = statvfs(path, st);
  if (rc == 0) {
    st->f_blocks = 1000000;
    st->f_bfree = st->f_bavail = (fsblkcnt_t)(1000000 - 10000 * atomic_load(&g_used_pct));
  }
  return rc;
}

static void test_disk_full_mark(void **state)
{
  (void)state;
  rmqi_os_table.statvfs = hook_statvfs;
  atomic_store(&g_used_pct, 50);
  tu_clock clk = {1700000000000};
  char store[1024];
  tu_store_path(store, sizeof store, "diskmark");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  o.clock = tu_clock_read;
  o.clock_ctx = &clk;
  rmq_broker *b;
  rmq_producer *p;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  ok(send_one(p, "Mark", 1, 100, NULL));
  atomic_store(&g_used_pct, 91);
  ok(send_one(p, "Mark", 2, 100, NULL)); /* not checked yet: the next round sees it */
  tu_clock_advance(&clk, 10000);
  ok(rmq_broker_run_due(b, NULL));
  assert_int_equal(send_one(p, "Mark", 3, 100, NULL), RMQ_ENOSPC);
  assert_non_null(strstr(rmq_errmsg(), "disk is full"));
  assert_non_null(strstr(rmq_errmsg(), "91%"));
  uint8_t seen[8] = {0};
  assert_int_equal(read_all(b, "Mark", seen, 7), 2); /* reads go on */
  atomic_store(&g_used_pct, 60);                     /* space freed: the next send sees it */
  ok(send_one(p, "Mark", 4, 100, NULL));
  /* The level is clamped to 35..90, as RocketMQ does. */
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  o.disk_space_warning_level_ratio = 99;
  atomic_store(&g_used_pct, 95);
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  assert_int_equal(send_one(p, "Mark", 5, 100, NULL), RMQ_ENOSPC);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  o.disk_space_warning_level_ratio = 20; /* -> 35 */
  atomic_store(&g_used_pct, 36);
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  assert_int_equal(send_one(p, "Mark", 6, 100, NULL), RMQ_ENOSPC);
  atomic_store(&g_used_pct, 35);
  ok(send_one(p, "Mark", 7, 100, NULL));
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* ======================================================================= */
/* A real full disk (root only)                                            */
/* ======================================================================= */

static int sh(const char *cmd)
{
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int hook_statvfs_empty(const char *path, struct statvfs *st)
{
  int rc = statvfs(path, st);
  if (rc == 0) st->f_bfree = st->f_bavail = st->f_blocks;
  return rc;
}

/* Fills the file system under mnt with sends until RMQ_ENOSPC, then frees
** space and sends again; in a child, so a SIGBUS shows as what it is. With
** mark 0 the disk-full mark never trips (statvfs says empty), so the sends
** meet the file system's own ENOSPC; with 1 the mark stops them first. */
static void fill_and_free(const char *mnt, int flush, int service, int mark)
{
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (!mark) rmqi_os_table.statvfs = hook_statvfs_empty;
    char store[1024], filler[1024];
    snprintf(store, sizeof store, "%s/store", mnt);
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static uint8_t zeros[1 << 20];
    memset(zeros, 1, sizeof zeros);
    for (int i = 0; i < 3; i++)
      if (fd < 0 || write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) _exit(2);
    fsync(fd);
    close(fd);
    rmq_broker_options o;
    opts(&o, flush, service);
    o.mapped_file_size_commit_log = 1 << 20;
    rmq_broker *b;
    rmq_producer *p;
    if (rmq_broker_open(store, &o, &b) || rmq_producer_create(b, NULL, NULL, &p)) _exit(3);
    uint64_t id = 0, acked = 0;
    int rc = RMQ_OK;
    for (; id < 100000 && rc == RMQ_OK; id++) {
      rc = send_one(p, "Disk", id, 4000, NULL);
      if (rc == RMQ_OK) acked++;
    }
    if (rc != RMQ_ENOSPC) { fprintf(stderr, "fill: %d %s\n", rc, rmq_errmsg()); _exit(4); }
    if (!!strstr(rmq_errmsg(), "disk is full") != mark) { fprintf(stderr, "fill: %s\n", rmq_errmsg()); _exit(12); }
    /* The disk stays full. What failed may have been one queue's next
    ** ConsumeQueue chunk while the next send goes to another queue with
    ** room, or the file system may give back blocks it had reserved (ext4,
    ** once the service thread's flush writes them): a few more sends may
    ** fit (seen once, ext4 with the service thread, in a make test run); then
    ** ENOSPC again. */
    int more = 0;
    while ((rc = send_one(p, "Disk", id++, 4000, NULL)) == RMQ_OK) {
      acked++;
      if (++more > 64) break;
    }
    if (rc != RMQ_ENOSPC) { fprintf(stderr, "still full: %d after %d more sends\n", rc, more); _exit(5); }
    if (more) fprintf(stderr, "  %d more send(s) fit after the first ENOSPC\n", more);
    if (unlink(filler) != 0) _exit(6);
    for (int i = 0; i < 100; i++, id++) {
      if ((rc = send_one(p, "Disk", id, 4000, NULL)) != RMQ_OK) {
        fprintf(stderr, "after freeing: %d %s\n", rc, rmq_errmsg());
        _exit(7);
      }
      acked++;
    }
    static uint8_t seen[100200];
    size_t n = read_all(b, "Disk", seen, id);
    rmq_producer_destroy(p);
    if (rmq_broker_close(b) != RMQ_OK) _exit(8);
    if (rmq_broker_open(store, &o, &b) != RMQ_OK) _exit(9);
    memset(seen, 0, sizeof seen);
    size_t n2 = read_all(b, "Disk", seen, id);
    if (rmq_broker_close(b) != RMQ_OK) _exit(10);
    if (n != acked || n2 != acked) { fprintf(stderr, "acked %" PRIu64 " read %zu / %zu\n", acked, n, n2); _exit(11); }
    _exit(0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (WIFSIGNALED(st)) fail_msg("%s: killed by signal %d", mnt, WTERMSIG(st));
  assert_true(WIFEXITED(st));
  if (WEXITSTATUS(st) != 0) fail_msg("%s: child exit %d", mnt, WEXITSTATUS(st));
}

static void test_real_full_disk(void **state)
{
  (void)state;
  if (geteuid() != 0) { print_message("  not root: real full-disk runs skipped\n"); return; }
  char dir[512], mnt[600], img[600], cmd[4096];
  tu_tmpdir(dir, sizeof dir, "fulldisk");
  snprintf(mnt, sizeof mnt, "%s/mnt", dir);
  snprintf(img, sizeof img, "%s/ext4.img", dir);
  assert_int_equal(mkdir(mnt, 0755), 0);
  static const int modes[][3] = {{RMQ_ASYNC_FLUSH, 0, 0}, {RMQ_ASYNC_FLUSH, 1, 0}, {RMQ_SYNC_FLUSH, 0, 0},
                                 {RMQ_ASYNC_FLUSH, 1, 1}};
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=16m") == 0) {
    for (size_t i = 0; i < 4; i++) {
      print_message("  tmpfs 16 MiB, %s%s%s\n", modes[i][0] == RMQ_SYNC_FLUSH ? "SYNC" : "ASYNC",
                    modes[i][1] ? " + service thread" : "", modes[i][2] ? ", stopped by the disk-full mark" : "");
      snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", mnt);
      sh(cmd);
      fill_and_free(mnt, modes[i][0], modes[i][1], modes[i][2]);
    }
    umount(mnt);
  } else {
    print_message("  mount tmpfs: %s (skipped)\n", strerror(errno));
  }
  snprintf(cmd, sizeof cmd, "truncate -s 24M '%s' && mkfs.ext4 -q -F '%s' >/dev/null 2>&1 && mount -o loop '%s' '%s' 2>/dev/null",
           img, img, img, mnt);
  if (sh(cmd) == 0) {
    for (size_t i = 0; i < 4; i++) {
      print_message("  ext4 24 MiB loop, %s%s%s\n", modes[i][0] == RMQ_SYNC_FLUSH ? "SYNC" : "ASYNC",
                    modes[i][1] ? " + service thread" : "", modes[i][2] ? ", stopped by the disk-full mark" : "");
      snprintf(cmd, sizeof cmd, "rm -rf '%s'/* && sync", mnt);
      sh(cmd);
      fill_and_free(mnt, modes[i][0], modes[i][1], modes[i][2]);
    }
    umount(mnt);
  } else {
    print_message("  ext4 loop image not available here (skipped)\n");
  }
  tu_rm_rf(dir);
}

/* ======================================================================= */
/* Topic creation                                                          */
/* ======================================================================= */

static atomic_int g_fail_journal;

static ssize_t hook_pwrite(int fd, const void *buf, size_t n, off_t off)
{
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t k = readlink(link, path, sizeof path - 1);
  path[k > 0 ? k : 0] = 0;
  if (atomic_load(&g_fail_journal) && (strstr(path, "rmq_topics.journal") || strstr(path, "topics.json"))) {
    errno = EIO;
    return -1;
  }
  return pwrite(fd, buf, n, off);
}

static void test_failed_create_changes_nothing(void **state)
{
  (void)state;
  char store[1024], tj[1100];
  tu_store_path(store, sizeof store, "tcreate");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "Kept", 4));
  rmqi_os_table.pwrite = hook_pwrite;
  atomic_store(&g_fail_journal, 1);
  assert_int_equal(rmq_topic_create(b, "Lost", 8), RMQ_EIO);
  assert_non_null(strstr(rmq_errmsg(), "rmq_topics.journal"));
  assert_int_equal(rmq_topic_create(b, "Kept", 2), RMQ_EIO);
  rmq_topic_info ti[8];
  size_t n;
  ok(rmq_topic_list(b, ti, 8, &n));
  assert_int_equal(n, 1);
  assert_string_equal(ti[0].topic_name, "Kept");
  assert_int_equal(ti[0].write_queue_nums, 4);
  /* A send to the failed topic does not find it half made. */
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  assert_int_equal(send_one(p, "Lost", 1, 50, NULL), RMQ_EIO);
  atomic_store(&g_fail_journal, 0);
  rmq_send_result r;
  ok(send_one(p, "Kept", 2, 50, &r));
  assert_true(r.message_queue.queue_id < 4);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  rmqi_os_reset();
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_list(b, ti, 8, &n));
  assert_int_equal(n, 1);
  assert_int_equal(ti[0].write_queue_nums, 4);
  ok(rmq_broker_close(b));
  snprintf(tj, sizeof tj, "%s/config/rmq_topics.journal", store);
  assert_int_equal(access(tj, F_OK), -1); /* folded into topics.json at close */
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* A crash after creates: the journal brings them back (topics.json was
** not rewritten for each). */
static void test_topic_journal_after_crash(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "tjournal");
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rmq_broker_options o;
    opts(&o, RMQ_ASYNC_FLUSH, 0);
    rmq_broker *b;
    if (rmq_broker_open(store, &o, &b)) _exit(2);
    char name[64];
    for (int i = 0; i < 300; i++) {
      snprintf(name, sizeof name, "J%03d", i);
      if (rmq_topic_create(b, name, 1 + i % 16)) _exit(3);
    }
    rmq_producer *p;
    rmq_send_result r;
    if (rmq_producer_create(b, NULL, NULL, &p) || send_one(p, "J007", 7, 100, &r)) _exit(4);
    if (rmq_broker_flush(b)) _exit(5);
    _exit(0); /* no close: a crash */
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  static rmq_topic_info ti[400];
  size_t n;
  ok(rmq_topic_list(b, ti, 400, &n));
  assert_int_equal(n, 300);
  for (int i = 0; i < 300; i++) {
    char name[64];
    snprintf(name, sizeof name, "J%03d", i);
    assert_string_equal(ti[i].topic_name, name);
    assert_int_equal(ti[i].write_queue_nums, 1 + i % 16);
  }
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* ======================================================================= */
/* Many queues, few mappings                                               */
/* ======================================================================= */

/* Descriptors this process holds on ConsumeQueue files. */
static int open_fds(void)
{
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    char l[300], t[4096];
    snprintf(l, sizeof l, "/proc/self/fd/%s", e->d_name);
    ssize_t k = readlink(l, t, sizeof t - 1);
    if (k > 0) { t[k] = 0; n += strstr(t, "/consumequeue/") != NULL; }
  }
  closedir(d);
  return n;
}

/* ConsumeQueue files this process has mapped. */
static int mapped_cq_files(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strstr(line, "/consumequeue/") != NULL;
  fclose(f);
  return n;
}

typedef struct mq_ctx {
  rmq_broker *b;
  int t, topics;
  atomic_int *stop;
  atomic_int peak_fds, peak_maps;
} mq_ctx;

/* Pulls every queue of every topic round and round while senders write:
** files are unmapped and mapped again under the reader. */
static void *mq_reader(void *arg)
{
  mq_ctx *x = arg;
  rmq_pull_consumer *c;
  if (rmq_pull_consumer_create(x->b, "MqReader", &c)) return (void *)1;
  static __thread int64_t offs[64][4];
  memset(offs, 0, sizeof offs);
  while (!atomic_load(x->stop)) {
    for (int t = 0; t < x->topics; t++)
      for (int q = 0; q < 4; q++) {
        rmq_message_queue mq;
        memset(&mq, 0, sizeof mq);
        snprintf(mq.topic, sizeof mq.topic, "Many%02d", t);
        mq.queue_id = q;
        rmq_pull_result r;
        if (rmq_pull_consumer_pull(c, &mq, "*", offs[t][q], 32, &r)) return (void *)2;
        for (size_t i = 0; i < r.n; i++) {
          uint64_t id;
          if (!tu_body_check(r.msgs[i].body, (size_t)r.msgs[i].body_len, &id)) return (void *)3;
          if (r.msgs[i].queue_offset != offs[t][q] + (int64_t)i) return (void *)4;
        }
        if (r.pull_status == RMQ_PULL_FOUND) offs[t][q] = r.next_begin_offset;
      }
    int maps = mapped_cq_files();
    if (maps > atomic_load(&x->peak_maps)) atomic_store(&x->peak_maps, maps);
    int fds = open_fds();
    if (fds > atomic_load(&x->peak_fds)) atomic_store(&x->peak_fds, fds);
  }
  rmq_pull_consumer_destroy(c);
  return NULL;
}

static void test_many_queues_few_mappings(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "manyq");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 1);
  o.mapped_file_size_consume_queue = 20 * 64; /* many files per queue too */
  o.max_mapped_consume_queue_files = 16;
  enum { TOPICS = 40, PER = 300 };
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  int base_fds = open_fds();
  char name[32];
  for (int t = 0; t < TOPICS; t++) {
    snprintf(name, sizeof name, "Many%02d", t);
    ok(rmq_topic_create(b, name, 4));
  }
  atomic_int stop = 0;
  mq_ctx rx = {b, 0, TOPICS, &stop, 0, 0};
  pthread_t rd;
  assert_int_equal(pthread_create(&rd, NULL, mq_reader, &rx), 0);
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  for (int i = 0; i < TOPICS * PER; i++) {
    snprintf(name, sizeof name, "Many%02d", i % TOPICS);
    ok(send_one(p, name, (uint64_t)i, 64, NULL));
  }
  rmq_producer_destroy(p);
  atomic_store(&stop, 1);
  void *rr;
  pthread_join(rd, &rr);
  assert_null(rr);
  /* 160 queues of 5 files each: the bound, give or take the few threads
  ** mapping at the moment before they evict; descriptors only for the
  ** moment of a call (allocation, sync). */
  print_message("  peak ConsumeQueue mappings: %d, descriptors: %d\n", atomic_load(&rx.peak_maps),
                atomic_load(&rx.peak_fds));
  assert_int_equal(base_fds, 0);
  assert_true(atomic_load(&rx.peak_maps) > 0);
  assert_true(atomic_load(&rx.peak_maps) <= 16 + 4);
  assert_true(atomic_load(&rx.peak_fds) <= 4);
  ok(rmq_broker_close(b));
  ok(rmq_broker_open(store, &o, &b));
  static uint8_t seen[TOPICS * PER];
  size_t total = 0;
  for (int t = 0; t < TOPICS; t++) {
    snprintf(name, sizeof name, "Many%02d", t);
    total += read_all(b, name, seen, TOPICS * PER - 1);
  }
  assert_int_equal(total, TOPICS * PER);
  assert_true(mapped_cq_files() <= 16);
  assert_int_equal(open_fds(), 0);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* Sends round robin over more queues than may be mapped: cold queues'
** units are written without mapping their files, and every message reads
** back in its queue at its offset. */
static void test_sends_to_cold_queues(void **state)
{
  (void)state;
  char store[1024], name[32];
  tu_store_path(store, sizeof store, "coldq");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  o.mapped_file_size_consume_queue = 20 * 64;
  o.max_mapped_consume_queue_files = 8;
  enum { TOPICS = 16, ROUNDS = 150 };
  rmq_broker *b;
  rmq_producer *p;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  int peak = 0;
  uint64_t id = 0;
  for (int r = 0; r < ROUNDS; r++)
    for (int t = 0; t < TOPICS; t++) {
      snprintf(name, sizeof name, "Cold%02d", t);
      rmq_send_result res;
      uint8_t body[40];
      rmq_msg *m;
      tu_make_body(body, id++, sizeof body);
      ok(rmq_msg_create(&m, name, NULL, body, sizeof body));
      ok(rmq_producer_send_to_queue(p, m, r % 4, &res)); /* 4 queues a topic (auto-created) */
      rmq_msg_free(m);
      assert_int_equal(res.queue_offset, r / 4);
      if ((id & 63) == 0) {
        int nm = mapped_cq_files();
        if (nm > peak) peak = nm;
      }
    }
  print_message("  peak ConsumeQueue mappings while sending to 64 queues: %d\n", peak);
  assert_true(peak <= 8);
  rmq_producer_destroy(p);
  static uint8_t seen[TOPICS * ROUNDS];
  size_t n = 0;
  for (int t = 0; t < TOPICS; t++) {
    snprintf(name, sizeof name, "Cold%02d", t);
    n += read_all(b, name, seen, TOPICS * ROUNDS - 1);
  }
  assert_int_equal(n, TOPICS * ROUNDS);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* ======================================================================= */
/* Open after a clean close: from the queue state, the same as the long way */
/* ======================================================================= */

typedef struct qsnap { int64_t mn[8], mx[8]; size_t n; } qsnap;

static void snap(rmq_broker *b, qsnap *out, int topics)
{
  static uint8_t seen[40000];
  char name[32];
  memset(seen, 0, sizeof seen);
  for (int t = 0; t < topics; t++) {
    snprintf(name, sizeof name, "Fast%d", t);
    for (int q = 0; q < 8; q++) ok(rmq_topic_queue_offsets(b, name, q, &out[t].mn[q], &out[t].mx[q]));
    out[t].n = read_all(b, name, seen, sizeof seen - 1);
  }
}

static void test_clean_open_uses_queue_state(void **state)
{
  (void)state;
  char store[1024], sp[1100];
  tu_store_path(store, sizeof store, "fastopen");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  o.mapped_file_size_consume_queue = 20 * 128;
  o.mapped_file_size_commit_log = 1 << 20;
  enum { T = 6 };
  rmq_broker *b;
  rmq_producer *p;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  char name[32];
  uint64_t id = 0;
  for (int t = 0; t < T; t++) {
    snprintf(name, sizeof name, "Fast%d", t);
    ok(rmq_topic_create(b, name, 8));
    for (int i = 0; i < 400 * t; i++) ok(send_one(p, name, id++, 100 + (size_t)(i % 300), NULL));
  }
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));

  static qsnap fast[T], slow[T];
  rmq_recovery_info ri;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.records_scanned, 0); /* nothing read, nothing rescanned */
  assert_int_equal(ri.abnormal, 0);
  snap(b, fast, T);
  /* Sends go on at the right offsets after a fast open. */
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_send_result r;
  rmq_msg *m;
  uint8_t body[100];
  tu_make_body(body, id++, sizeof body);
  ok(rmq_msg_create(&m, "Fast3", NULL, body, sizeof body));
  ok(rmq_producer_send_to_queue(p, m, 5, &r));
  assert_int_equal(r.queue_offset, fast[3].mx[5]);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  fast[3].mx[5]++;
  fast[3].n++;

  /* The long way (no state file) finds the same. */
  snprintf(sp, sizeof sp, "%s/config/rmq_queues.txt", store);
  assert_int_equal(unlink(sp), 0);
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_recovery_info(b, &ri));
  assert_true(ri.records_scanned > 0);
  snap(b, slow, T);
  ok(rmq_broker_close(b));
  for (int t = 0; t < T; t++) {
    assert_int_equal(fast[t].n, slow[t].n);
    assert_int_equal(slow[t].n, (size_t)(400 * t + (t == 3)));
    for (int q = 0; q < 8; q++) {
      assert_int_equal(fast[t].mn[q], slow[t].mn[q]);
      assert_int_equal(fast[t].mx[q], slow[t].mx[q]);
    }
  }

  /* A record appended after the close (as another writer would) makes the
  ** state stale: the open goes the long way and finds it. */
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_close(b));
  char cl[1100];
  snprintf(cl, sizeof cl, "%s/config/rmq_queues.txt", store);
  FILE *f = fopen(cl, "r");
  assert_non_null(f);
  long long minp, end;
  assert_int_equal(fscanf(f, "rmq-queues 1 %lld %lld", &minp, &end), 2);
  fclose(f);
  long long fsz = 1 << 20;
  snprintf(cl, sizeof cl, "%s/commitlog/%020lld", store, end / fsz * fsz);
  uint8_t junk[8] = {0, 0, 0, 100, 0xDA, 0xA3, 0x20, 0xA7};
  int fd = open(cl, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, junk, 8, (off_t)(end % fsz)), 8);
  close(fd);
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_recovery_info(b, &ri));
  assert_true(ri.records_scanned > 0);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* A store of one topic, Fast0 (8 queues, 300 messages; 1 MiB CommitLog and
** 128-unit ConsumeQueue files), closed, its options in *o, and its queues as
** a reopen sees them in *want. */
static void fast0_store(const char *store, rmq_broker_options *o, qsnap *want)
{
  opts(o, RMQ_ASYNC_FLUSH, 0);
  o->mapped_file_size_consume_queue = 20 * 128;
  o->mapped_file_size_commit_log = 1 << 20;
  rmq_broker *b;
  rmq_producer *p;
  ok(rmq_broker_open(store, o, &b));
  ok(rmq_topic_create(b, "Fast0", 8));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  for (int i = 0; i < 300; i++) ok(send_one(p, "Fast0", (uint64_t)i, 120, NULL));
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  ok(rmq_broker_open(store, o, &b));
  snap(b, want, 1);
  ok(rmq_broker_close(b));
  assert_int_equal(want->n, 300);
}

/* Fast0's queues and messages in b are those of want. */
static void fast0_expect(rmq_broker *b, const qsnap *want)
{
  qsnap got;
  snap(b, &got, 1);
  assert_int_equal(got.n, want->n);
  for (int q = 0; q < 8; q++) {
    assert_int_equal(got.mn[q], want->mn[q]);
    assert_int_equal(got.mx[q], want->mx[q]);
  }
}

/* A queue state whose numbers are at the edge of 64 bits (a fuzzed file:
** an end offset near INT64_MAX overflowed the bound check) is refused, and
** the open goes the long way to the right offsets. */
static void test_queue_state_huge_numbers(void **state)
{
  (void)state;
  char store[1024], sp[1100];
  tu_store_path(store, sizeof store, "hugestate");
  rmq_broker_options o;
  rmq_broker *b;
  qsnap want;
  fast0_store(store, &o, &want);

  snprintf(sp, sizeof sp, "%s/config/rmq_queues.txt", store);
  char head[256];
  FILE *f = fopen(sp, "r");
  assert_non_null(f);
  assert_non_null(fgets(head, sizeof head, f));
  fclose(f);
  static const char *const bad[] = {
    "Fast0\t0\t0\t9223372036854775806\t0\t1\n",         /* the fuzzer's: (mx - 1) * 20 */
    "Fast0\t0\t0\t461168601842738791\t3602879701896396\t1\n", /* mx * 20 */
    "Fast0\t0\t0\t5\t9223372036854775800\t4\n",         /* (first + k) * file size */
    "Fast0\t0\t0\t5\t72057594037927935\t1\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    f = fopen(sp, "w");
    assert_non_null(f);
    fputs(head, f);
    fputs(bad[i], f);
    assert_int_equal(fclose(f), 0);
    rmq_recovery_info ri;
    ok(rmq_broker_open(store, &o, &b));
    ok(rmq_broker_recovery_info(b, &ri));
    assert_true(ri.records_scanned > 0); /* the state was not used */
    fast0_expect(b, &want);
    ok(rmq_broker_close(b));
  }
  tu_store_remove(store);
}

/* Writes n bytes to path (made or truncated), or fails the test. */
static void put_file(const char *path, const void *data, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  assert_int_equal(close(fd), 0);
}

/* A ConsumeQueue file named near INT64_MAX (a multiple of the file size,
** with a unit in it) made the open's queue scan overflow start + size; it is
** now beyond any offset a store reaches: removed (ignored when read-only),
** and the queue rebuilt from the CommitLog. */
static void test_cq_name_near_max(void **state)
{
  (void)state;
  char store[1024], path[1400];
  tu_store_path(store, sizeof store, "cqmax");
  rmq_broker_options o;
  rmq_broker *b;
  qsnap want;
  fast0_store(store, &o, &want);

  int64_t cqs = 20 * 128, name = INT64_MAX / cqs * cqs; /* name + cqs > INT64_MAX */
  static uint8_t unit[20 * 128];
  memset(unit + sizeof unit - 20, 0x11, 20);
  snprintf(path, sizeof path, "%s/consumequeue/Fast0/0/%020" PRId64, store, name);
  for (int ro = 1; ro >= 0; ro--) {
    put_file(path, unit, sizeof unit);
    snprintf(path + strlen(store), sizeof path - strlen(store), "/config/rmq_queues.txt");
    unlink(path); /* the state lists no such file: the long way reads the directory */
    snprintf(path, sizeof path, "%s/consumequeue/Fast0/0/%020" PRId64, store, name);
    o.read_only = ro;
    ok(rmq_broker_open(store, &o, &b));
    fast0_expect(b, &want);
    ok(rmq_broker_close(b));
    struct stat st;
    assert_int_equal(stat(path, &st) == 0, ro); /* kept by a reader, removed by a writer */
  }
  tu_store_remove(store);

  /* The same file as a queue's only one, with no CommitLog file to bound
  ** its name: the queue scan read its last unit at (name + cqs) / 20 - 1. */
  o.read_only = 0;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_close(b));
  snprintf(path, sizeof path, "%s/consumequeue/Far", store);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/consumequeue/Far/0", store);
  assert_int_equal(mkdir(path, 0755), 0);
  for (int ro = 1; ro >= 0; ro--) {
    snprintf(path, sizeof path, "%s/consumequeue/Far/0/%020" PRId64, store, name);
    put_file(path, unit, sizeof unit);
    snprintf(path, sizeof path, "%s/config/rmq_queues.txt", store);
    unlink(path);
    o.read_only = ro;
    ok(rmq_broker_open(store, &o, &b));
    int64_t mn, mx;
    ok(rmq_topic_queue_offsets(b, "Far", 0, &mn, &mx));
    assert_int_equal(mn, 0);
    assert_int_equal(mx, 0);
    ok(rmq_broker_close(b));
  }
  tu_store_remove(store);
}

/* topics.json's dataVersion counter at 20 digits (strtoll saturates it to
** INT64_MAX): each topic change adds 1 to it. */
static void test_topics_counter_huge(void **state)
{
  (void)state;
  char store[1024], path[1200];
  tu_store_path(store, sizeof store, "tcounter");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "A", 2));
  ok(rmq_broker_close(b));
  snprintf(path, sizeof path, "%s/config/topics.json", store);
  static const char topics[] = "{\"dataVersion\":{\"counter\":99999999999999999999,\"timestamp\":0},"
                               "\"topicConfigTable\":{\"A\":{\"topicName\":\"A\",\"readQueueNums\":2,"
                               "\"writeQueueNums\":2,\"perm\":4294967298},"
                               "\"P\":{\"topicName\":\"P\",\"readQueueNums\":1,\"writeQueueNums\":1,\"perm\":14},"
                               "\"Z\":{\"topicName\":\"Z\",\"readQueueNums\":2,\"writeQueueNums\":4294967298}}}";
  put_file(path, topics, sizeof topics - 1);
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "B", 3)); /* persists: the counter + 1 */
  ok(rmq_topic_delete(b, "B"));
  rmq_topic_info ti[4];
  size_t n;
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(n, 2);
  assert_string_equal(ti[0].topic_name, "A");
  assert_int_equal(ti[0].write_queue_nums, 2);
  assert_int_equal(ti[0].perm, 6); /* 4294967298 is no perm (cast to int it was 2) */
  assert_string_equal(ti[1].topic_name, "P");
  assert_int_equal(ti[1].perm, 14); /* PRIORITY | READ | WRITE, as RocketMQ wrote it */
  ok(rmq_broker_close(b));
  ok(rmq_broker_open(store, &o, &b)); /* Z, 2^32 + 2 queues, was skipped; A and P stay */
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(n, 2);
  assert_int_equal(ti[1].perm, 14);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* An index file whose hashSlotCount is INT32_MAX: the next key in an empty
** slot adds 1 to it. */
static void test_index_slot_count_huge(void **state)
{
  (void)state;
  char store[1024], path[1400];
  tu_store_path(store, sizeof store, "ixslots");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  rmq_broker *b;
  rmq_producer *p;
  rmq_msg *m;
  rmq_send_result r;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "K", 1));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  ok(rmq_msg_create(&m, "K", NULL, "one", 3));
  ok(rmq_msg_set_keys(m, "first"));
  ok(rmq_producer_send(p, m, &r));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_index_file(store, path, sizeof path);
  static const uint8_t big[4] = {0x7F, 0xFF, 0xFF, 0xFF};
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, big, 4, 32), 4);
  assert_int_equal(close(fd), 0);
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  ok(rmq_msg_create(&m, "K", NULL, "two", 3));
  ok(rmq_msg_set_keys(m, "second"));
  ok(rmq_producer_send(p, m, &r));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  rmq_query_result q;
  ok(rmq_broker_query_message(b, "K", "second", 64, 0, INT64_MAX, &q));
  assert_int_equal(q.n, 1);
  assert_memory_equal(q.msgs[0].body, "two", 3);
  rmq_query_result_free(&q);
  ok(rmq_broker_query_message(b, "K", "first", 64, 0, INT64_MAX, &q));
  assert_int_equal(q.n, 1);
  rmq_query_result_free(&q);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* A queue state giving 100 queues a max offset near the bound (2^61 / 20)
** each: the statistics' sums over queues saturate at INT64_MAX. (The state is
** used: each queue's one file lies below 2^61.) */
static void test_lag_sums_saturate(void **state)
{
  (void)state;
  char store[1024], path[1400];
  tu_store_path(store, sizeof store, "lagsum");
  rmq_broker_options o;
  opts(&o, RMQ_ASYNC_FLUSH, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_broker_close(b));
  /* The header as the close wrote it (this CommitLog, this file size). */
  snprintf(path, sizeof path, "%s/config/rmq_queues.txt", store);
  static char text[100 * 80 + 256];
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(fgets(text, 256, f));
  fclose(f);
  long long minp, end;
  int cqs, ncl;
  assert_int_equal(sscanf(text, "rmq-queues 1 %lld %lld %d %d", &minp, &end, &cqs, &ncl), 4);
  size_t len = strlen(text);
  enum { NQ = 100 };
  const int64_t mx = ((INT64_C(1) << 61) - 2 * cqs) / 20, first = (mx - 1) * 20 / cqs; /* the file ends below 2^61 */
  static uint8_t unit[20 * 2048];
  assert_true((size_t)cqs <= sizeof unit);
  unit[7] = 1;
  unit[11] = 50;
  for (int q = 0; q < NQ; q++) {
    len += (size_t)snprintf(text + len, sizeof text - len, "L\t%d\t0\t%" PRId64 "\t%" PRId64 "\t1\n", q, mx, first);
    snprintf(path, sizeof path, "%s/consumequeue/L", store);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/consumequeue/L/%d", store, q);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/consumequeue/L/%d/%020" PRId64, store, q, first * cqs);
    put_file(path, unit, (size_t)cqs);
  }
  snprintf(path, sizeof path, "%s/config/rmq_queues.txt", store);
  put_file(path, text, len);
  snprintf(path, sizeof path, "%s/config/consumerOffset.json", store);
  static const char offs[] = "{\"offsetTable\":{\"L@G\":{0:0}}}";
  put_file(path, offs, sizeof offs - 1);
  ok(rmq_broker_open(store, &o, &b));
  int64_t mn, max;
  ok(rmq_topic_queue_offsets(b, "L", 99, &mn, &max));
  assert_int_equal(max, mx);
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  int found = 0;
  for (size_t i = 0; i < st.ntopics; i++)
    if (!strcmp(st.topics[i].topic, "L")) {
      assert_int_equal(st.topics[i].max_offset_sum, INT64_MAX);
      found++;
    }
  for (size_t i = 0; i < st.ngroups; i++)
    if (!strcmp(st.groups[i].group, "G")) {
      assert_int_equal(st.groups[i].nqueues, NQ);
      assert_int_equal(st.groups[i].queues[0].lag, mx);
      assert_int_equal(st.groups[i].diff_total, INT64_MAX);
      found++;
    }
  assert_int_equal(found, 2);
  rmq_broker_stats_free(&st);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_lock_is_rocketmqs, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_idle_open_keeps_checkpoint, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_no_files_made_ahead_remain, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_enospc_is_an_error, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_disk_full_mark, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_real_full_disk, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_failed_create_changes_nothing, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_topic_journal_after_crash, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_many_queues_few_mappings, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_clean_open_uses_queue_state, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_sends_to_cold_queues, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_queue_state_huge_numbers, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_cq_name_near_max, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_topics_counter_huge, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_index_slot_count_huge, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_lag_sums_saturate, setup_os, teardown_os),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
