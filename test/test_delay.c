/*
** test_delay.c -- delayed delivery by level (issue 5, ROCKETMQ.md 10): a
** message with DELAY=L waits in SCHEDULE_TOPIC_XXXX queue L-1 and is re-put
** to its real topic and queue when due, never early, in order within a
** level, at most one service tick late; progress survives a restart in
** config/delayOffset.json. Time runs on the broker's replaceable clock.
*/
#include "test_util.h"

#include <inttypes.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_wait_atleast; (void)tu_small_opts; (void)tu_make_body; (void)tu_body_check;
  (void)tu_java_hash; (void)tu_read_exact; (void)tu_clock_advance;
}

#define T0 1700000000000LL

typedef struct fx {
  char path[1024];
  tu_clock clk;
  rmq_broker_options o;
  rmq_broker *b;
  rmq_producer *p;
} fx;

static void fx_open(fx *f)
{
  ok(rmq_broker_open(f->path, &f->o, &f->b));
  ok(rmq_producer_create(f->b, "DelayProducers", NULL, &f->p));
}

static void fx_init(fx *f, const char *tag, const char *levels)
{
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  tu_clock_opts(&f->o, 1 << 20, &f->clk, T0);
  f->o.message_delay_level = levels;
  fx_open(f);
  ok(rmq_topic_create(f->b, "RealT", 4));
}

static void fx_shut(fx *f)
{
  rmq_producer_destroy(f->p);
  ok(rmq_broker_close(f->b));
}

/* Sends body with delay level `level` to queue qid of RealT. */
static void send_delayed(fx *f, const char *body, int level, int qid, rmq_send_result *r)
{
  rmq_msg *m;
  ok(rmq_msg_create(&m, "RealT", "TagD", body, strlen(body)));
  ok(rmq_msg_set_delay_time_level(m, level));
  ok(rmq_producer_send_to_queue(f->p, m, qid, r));
  rmq_msg_free(m);
}

typedef struct got {
  char body[32];
  char msg_id[RMQ_MSG_ID_SIZE];
  int qid;
  int64_t qoff, store_ts, born_ts;
  int store_port, reconsume_times;
  char delay[8], real_topic[32], real_qid[8];
} got;

/* Everything now in RealT, queue by queue, with tag filter "TagD". */
static size_t read_real(fx *f, got *out, size_t cap)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f->b, "DelayReader", &c));
  size_t n = 0;
  for (int q = 0; q < 4; q++) {
    rmq_message_queue mq = tu_mq("RealT", q);
    int64_t off = 0;
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mq, "TagD", off, 32, &r));
      if (r.pull_status != RMQ_PULL_FOUND) break;
      for (size_t i = 0; i < r.n; i++) {
        const rmq_message_ext *e = &r.msgs[i];
        assert_true(n < cap);
        got *g = &out[n++];
        snprintf(g->body, sizeof g->body, "%.*s", (int)e->body_len, (const char *)e->body);
        memcpy(g->msg_id, e->msg_id, sizeof g->msg_id);
        g->qid = e->queue_id;
        g->qoff = e->queue_offset;
        g->store_ts = e->store_timestamp;
        g->born_ts = e->born_timestamp;
        g->store_port = e->store_port;
        g->reconsume_times = e->reconsume_times;
        tu_prop_copy(e, "DELAY", g->delay, sizeof g->delay);
        tu_prop_copy(e, "REAL_TOPIC", g->real_topic, sizeof g->real_topic);
        tu_prop_copy(e, "REAL_QID", g->real_qid, sizeof g->real_qid);
      }
      off = r.next_begin_offset;
    }
  }
  rmq_pull_consumer_destroy(c);
  return n;
}

static const got *find_body(const got *g, size_t n, const char *body)
{
  for (size_t i = 0; i < n; i++)
    if (!strcmp(g[i].body, body)) return &g[i];
  return NULL;
}

static void test_levels_on_time(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "delay-levels", "1s 2s 5s"); /* a shortened table */
  rmq_send_result r1, r2, r3, r9, r0;
  send_delayed(&f, "L1", 1, 2, &r1);
  send_delayed(&f, "L2", 2, 1, &r2);
  send_delayed(&f, "L3", 3, 3, &r3);
  send_delayed(&f, "L9", 9, 0, &r9); /* above the table: clamped to its last level */
  send_delayed(&f, "L0", 0, 0, &r0);
  /* The result names the real queue, as RocketMQ's does. */
  assert_string_equal(r1.message_queue.topic, "RealT");
  assert_int_equal(r1.message_queue.queue_id, 2);
  static got g[64];
  /* Only the undelayed one is there at first. */
  assert_int_equal(read_real(&f, g, 64), 1);
  assert_string_equal(g[0].body, "L0");
  int64_t left_ms = -1;
  ok(rmq_broker_run_due(f.b, &left_ms));
  assert_true(left_ms > 0 && left_ms <= 1000); /* level 1's delivery, or an earlier flush, is next */
  assert_int_equal(read_real(&f, g, 64), 1);
  /* Never early: one ms before each deliver time, still not there. */
  static const struct { int64_t at; size_t want; } steps[] = {{999, 1}, {1000, 2}, {1999, 2}, {2000, 3}, {4999, 3}, {5000, 5}};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    f.clk.now_ms = T0 + steps[i].at;
    ok(rmq_broker_run_due(f.b, &left_ms));
    if (read_real(&f, g, 64) != steps[i].want)
      fail_msg("at +%" PRId64 " ms: %zu messages, want %zu", steps[i].at, read_real(&f, g, 64), steps[i].want);
  }
  /* Delivered to the real queue, same msgId, the record keeping DELAY,
  ** REAL_TOPIC and REAL_QID as RocketMQ's does; stored when it fell due. */
  const got *d1 = find_body(g, 5, "L1"), *d3 = find_body(g, 5, "L3"), *d9 = find_body(g, 5, "L9");
  assert_non_null(d1);
  assert_non_null(d3);
  assert_non_null(d9);
  assert_int_equal(d1->qid, 2);
  assert_string_equal(d1->msg_id, r1.msg_id);
  assert_string_equal(d1->delay, "1");
  assert_string_equal(d1->real_topic, "RealT");
  assert_string_equal(d1->real_qid, "2");
  assert_int_equal(d1->store_ts, T0 + 1000);
  assert_int_equal(d1->born_ts, T0);
  assert_int_equal(d1->store_port, 10911); /* the rest of the record as sent */
  assert_int_equal(d1->reconsume_times, 0);
  assert_int_equal(d3->qid, 3);
  assert_int_equal(d9->qid, 0);
  assert_string_equal(d9->delay, "9");
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

/* rmq_broker_run_due's next_due_ms counts the next delayed message even
** when every store chore is further away. */
static void test_next_due_counts_delays(void **state)
{
  (void)state;
  fx f;
  memset(&f, 0, sizeof f);
  tu_store_path(f.path, sizeof f.path, "delay-next");
  tu_clock_opts(&f.o, 1 << 20, &f.clk, T0);
  f.o.message_delay_level = "1s 2s";
  f.o.flush_interval_commit_log = 10000;
  f.o.flush_interval_consume_queue = 10000;
  f.o.clean_resource_interval = 10000;
  f.o.flush_consumer_offset_interval = 10000;
  fx_open(&f);
  ok(rmq_topic_create(f.b, "RealT", 4));
  int64_t left_ms = -1;
  ok(rmq_broker_run_due(f.b, &left_ms));
  assert_int_equal(left_ms, 1000); /* nothing due within the cap */
  rmq_send_result r;
  send_delayed(&f, "N1", 1, 0, &r);
  f.clk.now_ms = T0 + 300;
  ok(rmq_broker_run_due(f.b, &left_ms));
  assert_int_equal(left_ms, 700); /* the delayed message, not the flush 9.7 s away */
  static got g[8];
  f.clk.now_ms += left_ms;
  ok(rmq_broker_run_due(f.b, &left_ms));
  assert_int_equal(read_real(&f, g, 8), 1);
  fx_shut(&f);
  tu_store_remove(f.path);
}

static void test_order_within_level(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "delay-order", "1s 2s");
  enum { N = 50 };
  for (int i = 0; i < N; i++) {
    char body[16];
    snprintf(body, sizeof body, "m%02d", i);
    rmq_send_result r;
    send_delayed(&f, body, 1, 1, &r);
    if (i % 10 == 9) f.clk.now_ms += 1; /* a few distinct deliver times */
  }
  f.clk.now_ms = T0 + 5000;
  ok(rmq_broker_run_due(f.b, NULL));
  static got g[N + 1];
  assert_int_equal(read_real(&f, g, N + 1), N);
  for (int i = 0; i < N; i++) {
    char want[16];
    snprintf(want, sizeof want, "m%02d", i);
    assert_string_equal(g[i].body, want);
    assert_int_equal(g[i].qoff, i);
  }
  fx_shut(&f);
  tu_store_remove(f.path);
}

static void test_restart_mid_delay(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "delay-restart", "1s 3s");
  rmq_send_result r;
  send_delayed(&f, "a1", 1, 0, &r);
  send_delayed(&f, "b1", 1, 0, &r);
  send_delayed(&f, "a2", 2, 0, &r);
  send_delayed(&f, "b2", 2, 0, &r);
  f.clk.now_ms = T0 + 1500;
  ok(rmq_broker_run_due(f.b, NULL));
  static got g[16];
  assert_int_equal(read_real(&f, g, 16), 2);
  fx_shut(&f);
  /* Restart: the level-1 messages are not delivered again, level 2's wait. */
  char text[256] = "";
  char path[1200];
  snprintf(path, sizeof path, "%s/config/delayOffset.json", f.path);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t n = fread(text, 1, sizeof text - 1, fp);
  text[n] = 0;
  fclose(fp);
  assert_string_equal(text, "{\"offsetTable\":{1:2,2:0}}");
  fx_open(&f);
  ok(rmq_broker_run_due(f.b, NULL));
  assert_int_equal(read_real(&f, g, 16), 2);
  f.clk.now_ms = T0 + 3000;
  ok(rmq_broker_run_due(f.b, NULL));
  assert_int_equal(read_real(&f, g, 16), 4);
  const char *want[] = {"a1", "b1", "a2", "b2"};
  for (int i = 0; i < 4; i++) assert_string_equal(g[i].body, want[i]);
  fx_shut(&f);
  /* And once more after that: nothing repeats. */
  fx_open(&f);
  f.clk.now_ms = T0 + 10000;
  ok(rmq_broker_run_due(f.b, NULL));
  assert_int_equal(read_real(&f, g, 16), 4);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

/* With the service thread and the system clock: delivered after the delay,
** and no later than one service tick (1 s) after it. */
static void test_service_thread_delivers(void **state)
{
  (void)state;
  fx f;
  memset(&f, 0, sizeof f);
  tu_store_path(f.path, sizeof f.path, "delay-svc");
  rmq_broker_options_init(&f.o);
  f.o.mapped_file_size_commit_log = 1 << 20;
  f.o.message_delay_level = "1s";
  fx_open(&f);
  ok(rmq_topic_create(f.b, "RealT", 4));
  rmq_send_result r;
  send_delayed(&f, "svc", 1, 0, &r);
  static got g[4];
  int64_t t0 = tu_mono_ms();
  while (read_real(&f, g, 4) == 0 && tu_mono_ms() - t0 < 5000) usleep(5000);
  int64_t waited = tu_mono_ms() - t0;
  assert_int_equal(read_real(&f, g, 4), 1);
  assert_true(g[0].store_ts - g[0].born_ts >= 1000); /* never early */
  if (waited > 2500) fail_msg("delivered after %" PRId64 " ms", waited);
  fx_shut(&f);
  tu_store_remove(f.path);
}

static void test_bad_level_table(void **state)
{
  (void)state;
  static const char *bad[] = {"", "   ", "1x", "s", "1s 2", "1s,2s", "-1s", "1ss"};
  char path[1024];
  tu_store_path(path, sizeof path, "delay-bad");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rmq_broker_options o;
    rmq_broker_options_init(&o);
    o.message_delay_level = bad[i];
    rmq_broker *b = NULL;
    if (rmq_broker_open(path, &o, &b) != RMQ_EINVAL) fail_msg("'%s' was accepted", bad[i]);
    assert_null(b);
    assert_non_null(strstr(rmq_errmsg(), "message_delay_level"));
  }
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.message_delay_level = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h 1d";
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_levels_on_time),
    cmocka_unit_test(test_next_due_counts_delays),
    cmocka_unit_test(test_order_within_level),
    cmocka_unit_test(test_restart_mid_delay),
    cmocka_unit_test(test_service_thread_delivers),
    cmocka_unit_test(test_bad_level_table),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("delay", tests, NULL, NULL);
}
