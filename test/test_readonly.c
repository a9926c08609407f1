/*
** test_readonly.c -- rmq_broker_options.read_only: a store opened for
** reading only takes no lock, changes no file, refuses every write with
** RMQ_EREADONLY, and reads a store that is closed, crashed, or held and
** written by another process.
*/
#include "test_util.h"

#include <inttypes.h>

/* A listing of every file under dir with size and mtime, to prove a
** read-only open changed nothing. */
typedef struct snap {
  char text[65536];
  size_t len;
} snap;

static snap *g_snap;

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)ftw;
  if (g_snap->len + 600 > sizeof g_snap->text) return 0;
  g_snap->len += (size_t)snprintf(g_snap->text + g_snap->len, sizeof g_snap->text - g_snap->len,
                                  "%s %d %lld %lld.%09ld\n", path, flag, (long long)st->st_size,
                                  (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
  return 0;
}

static void take_snap(const char *dir, snap *s)
{
  s->len = 0;
  s->text[0] = 0;
  g_snap = s;
  nftw(dir, snap_one, 16, FTW_PHYS);
}

static void make_store(const char *path, int n, int close_it, rmq_broker **keep)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.service_thread = 0;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, "RoTopic", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  for (int i = 0; i < n; i++) {
    char body[32], key[32];
    snprintf(body, sizeof body, "body-%d", i);
    snprintf(key, sizeof key, "k%d", i);
    rmq_msg *m;
    ok(rmq_msg_create(&m, "RoTopic", "TagA", body, strlen(body)));
    ok(rmq_msg_set_keys(m, key));
    ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
    rmq_msg_free(m);
  }
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "RoGroup", &c));
  rmq_message_queue mq = tu_mq("RoTopic", 0);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 3));
  rmq_pull_consumer_destroy(c);
  rmq_producer_destroy(p);
  ok(rmq_broker_flush(b));
  if (close_it) ok(rmq_broker_close(b));
  else *keep = b;
}

static rmq_broker *open_ro(const char *path)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.read_only = 1;
  o.log_level = RMQ_LOG_NONE;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  return b;
}

/* Everything a reader does, and every write refused. */
static void read_everything(rmq_broker *b, int n)
{
  int64_t mn, mx, total = 0;
  for (int q = 0; q < 2; q++) {
    ok(rmq_topic_queue_offsets(b, "RoTopic", q, &mn, &mx));
    total += mx - mn;
  }
  assert_int_equal(total, n);
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "RoGroup", &c));
  rmq_message_queue mq = tu_mq("RoTopic", 0);
  rmq_pull_result r;
  ok(rmq_pull_consumer_pull(c, &mq, "*", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_memory_equal(r.msgs[0].body, "body-0", 6);
  int64_t off;
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 3);
  assert_int_equal(rmq_pull_consumer_update_consume_offset(c, &mq, 5), RMQ_EREADONLY);
  rmq_pull_consumer_destroy(c);
  rmq_query_result qr;
  ok(rmq_broker_query_message(b, "RoTopic", "k7", 8, 0, INT64_MAX, &qr));
  assert_int_equal(qr.n, 1);
  assert_memory_equal(qr.msgs[0].body, "body-7", 6);
  rmq_message_ext *e;
  ok(rmq_broker_view_message(b, qr.msgs[0].offset_msg_id, &e));
  rmq_message_ext_free(e);
  rmq_query_result_free(&qr);
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  assert_int_equal(st.commit_log_min_offset, 0);
  assert_true(st.commit_log_max_offset > 0);
  rmq_broker_stats_free(&st);
  rmq_producer *p;
  assert_int_equal(rmq_producer_create(b, "pg", NULL, &p), RMQ_EREADONLY);
  assert_true(strstr(rmq_errmsg(), "read-only") != NULL);
  rmq_push_consumer *pc;
  assert_int_equal(rmq_push_consumer_create(b, "g", NULL, &pc), RMQ_EREADONLY);
  assert_int_equal(rmq_topic_create(b, "NewTopic", 1), RMQ_EREADONLY);
  assert_int_equal(rmq_topic_delete(b, "RoTopic"), RMQ_EREADONLY);
  assert_int_equal(rmq_group_delete(b, "RoGroup"), RMQ_EREADONLY);
  assert_int_equal(rmq_broker_reset_offset_by_time(b, "RoGroup", "RoTopic", 0), RMQ_EREADONLY);
  assert_int_equal(rmq_broker_flush(b), RMQ_EREADONLY);
  assert_int_equal(rmq_broker_run_due(b, NULL), RMQ_EREADONLY);
  assert_int_equal(rmq_broker_delete_expired_files(b, NULL), RMQ_EREADONLY);
  assert_string_equal(rmq_errstr(RMQ_EREADONLY), "the store was opened read-only");
}

static void test_closed_store(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "ro-closed");
  make_store(path, 40, 1, NULL);
  static snap before, after;
  take_snap(path, &before);
  rmq_broker *b = open_ro(path);
  /* No lock: a writer opens the store beside the reader. */
  rmq_broker *w;
  ok(rmq_broker_open(path, NULL, &w));
  ok(rmq_broker_close(w));
  take_snap(path, &before); /* the writer's open and close changed files: from here */
  read_everything(b, 40);
  ok(rmq_broker_close(b));
  take_snap(path, &after);
  assert_string_equal(before.text, after.text);
  tu_store_remove(path);
}

static void test_missing_store(void **state)
{
  (void)state;
  char dir[1024], path[1100];
  tu_tmpdir(dir, sizeof dir, "ro-missing");
  snprintf(path, sizeof path, "%s/nothing", dir);
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.read_only = 1;
  rmq_broker *b;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_ENOTFOUND);
  assert_true(strstr(rmq_errmsg(), path) != NULL);
  struct stat st;
  assert_int_equal(stat(path, &st), -1); /* nothing made */
  tu_rm_rf(dir);
}

/* A store left by a crash: read as it is, nothing repaired on disk. */
static void crash_child(const char *path, int arg, int fd)
{
  (void)arg;
  rmq_broker *b;
  make_store(path, 30, 0, &b);
  if (write(fd, "k", 1) != 1) _exit(5);
  pause();
}

static void test_crashed_store(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "ro-crash");
  tu_kill_child(crash_child, path, 0);
  static snap before, after;
  take_snap(path, &before);
  rmq_broker *b = open_ro(path);
  read_everything(b, 30);
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 1);
  ok(rmq_broker_close(b));
  take_snap(path, &after);
  assert_string_equal(before.text, after.text);
  /* A writer then recovers it as usual. */
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_broker_close(b));
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

/* A store another process holds and writes to. */
static void writer_child(const char *path, int arg, int fd)
{
  (void)arg;
  rmq_broker *b;
  make_store(path, 20, 0, &b);
  if (write(fd, "k", 1) != 1) _exit(5);
  rmq_producer *p;
  if (rmq_producer_create(b, "pg2", NULL, &p)) _exit(6);
  rmq_msg *m;
  if (rmq_msg_create(&m, "RoTopic", "TagB", "more", 4)) _exit(7);
  /* A steady trickle until killed. */
  for (int i = 0; i < 20000; i++) {
    rmq_producer_send(p, m, &(rmq_send_result){0});
    usleep(200);
  }
  pause();
}

static void test_held_store(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "ro-held");
  pid_t pid = tu_start_child(writer_child, path, 0);
  usleep(50000);
  /* A writer is refused and told who holds it; a reader opens. */
  rmq_broker *b;
  assert_int_equal(rmq_broker_open(path, NULL, &b), RMQ_EBUSY);
  assert_int_equal(rmq_store_lock_owner(path), pid);
  for (int round = 0; round < 3; round++) {
    b = open_ro(path);
    int64_t mx0, mx1;
    ok(rmq_topic_queue_offsets(b, "RoTopic", 0, NULL, &mx0));
    ok(rmq_topic_queue_offsets(b, "RoTopic", 1, NULL, &mx1));
    assert_true(mx0 + mx1 >= 20);
    rmq_pull_consumer *c;
    ok(rmq_pull_consumer_create(b, "RoGroup", &c));
    /* Every unit the reader sees leads to its whole record. */
    for (int q = 0; q < 2; q++) {
      rmq_message_queue mq = tu_mq("RoTopic", q);
      int64_t off = 0, got = 0, mx = q ? mx1 : mx0;
      while (off < mx) {
        rmq_pull_result r;
        ok(rmq_pull_consumer_pull(c, &mq, "*", off, 32, &r));
        if (r.pull_status != RMQ_PULL_FOUND) break;
        for (size_t i = 0; i < r.n; i++) assert_true(r.msgs[i].body_len == 4 || r.msgs[i].body_len >= 6);
        got += (int64_t)r.n;
        off = r.next_begin_offset;
      }
      assert_int_equal(got, mx);
    }
    rmq_pull_consumer_destroy(c);
    ok(rmq_broker_close(b));
  }
  tu_reap_killed(pid);
  assert_int_equal(rmq_store_lock_owner(path), 0);
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

int main(void)
{
  (void)tu_wait_atleast;
  (void)tu_clock_advance;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_closed_store),
    cmocka_unit_test(test_missing_store),
    cmocka_unit_test(test_crashed_store),
    cmocka_unit_test(test_held_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
