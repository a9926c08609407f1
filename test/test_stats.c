/*
** test_stats.c -- rmq_broker_stats_get: put and get counters and rates
** over 10 s / 1 min / 1 h on a hand clock, consumer lag and delay per
** queue, flush and index backlogs, pending delayed, timed and half
** messages, disk figures, and the call under concurrent sends.
*/
#include "test_util.h"

#include <inttypes.h>

#define T0 1700000000000LL

static void send_n(rmq_producer *p, const char *topic, int n, int body_len)
{
  char body[256];
  memset(body, 'x', sizeof body);
  rmq_msg *m;
  ok(rmq_msg_create(&m, topic, "TagA", body, (size_t)body_len));
  for (int i = 0; i < n; i++) ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
  rmq_msg_free(m);
}

static const rmq_topic_stats *find_topic(const rmq_broker_stats *st, const char *t)
{
  for (size_t i = 0; i < st->ntopics; i++)
    if (!strcmp(st->topics[i].topic, t)) return &st->topics[i];
  return NULL;
}

static const rmq_group_stats *find_group(const rmq_broker_stats *st, const char *g, const char *t)
{
  for (size_t i = 0; i < st->ngroups; i++)
    if (!strcmp(st->groups[i].group, g) && !strcmp(st->groups[i].topic, t)) return &st->groups[i];
  return NULL;
}

/* A store on a hand clock set to T0, no service threads. */
static rmq_broker *open_clocked(char *path, size_t n, const char *tag, tu_clock *clk)
{
  tu_store_path(path, n, tag);
  rmq_broker_options o;
  tu_clock_opts(&o, 1 << 20, clk, T0);
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  return b;
}

static void test_put_rates(void **state)
{
  (void)state;
  char path[1024];
  tu_clock clk;
  rmq_broker *b = open_clocked(path, sizeof path, "stats-rates", &clk);
  ok(rmq_topic_create(b, "RateTopic", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  send_n(p, "RateTopic", 100, 100);
  tu_clock_advance(&clk, 10000);
  ok(rmq_broker_run_due(b, NULL)); /* samples at T0 + 10 s: 100 */
  send_n(p, "RateTopic", 50, 100);
  tu_clock_advance(&clk, 10000); /* T0 + 20 s, not sampled yet */
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  const rmq_topic_stats *t = find_topic(&st, "RateTopic");
  assert_non_null(t);
  assert_int_equal(t->put_nums, 150);
  assert_int_equal(t->queue_nums, 2);
  assert_int_equal(t->max_offset_sum, 150);
  assert_true(t->put_size > 150 * 100 && t->put_size < 150 * 400);
  /* 10 s: from the sample at T0 + 10 s; 1 min and 1 h: from the open. */
  assert_true(t->put_tps[RMQ_TPS_10S] > 4.99 && t->put_tps[RMQ_TPS_10S] < 5.01);
  assert_true(t->put_tps[RMQ_TPS_1MIN] > 7.49 && t->put_tps[RMQ_TPS_1MIN] < 7.51);
  assert_true(t->put_tps[RMQ_TPS_1H] > 7.49 && t->put_tps[RMQ_TPS_1H] < 7.51);
  assert_int_equal(st.put_nums, 150);
  assert_true(st.put_tps[RMQ_TPS_10S] > 4.99 && st.put_tps[RMQ_TPS_10S] < 5.01);
  assert_int_equal(st.now, T0 + 20000);
  assert_int_equal(st.boot_timestamp, T0);
  assert_int_equal(st.earliest_message_time_stamp, T0);
  assert_true(st.commit_log_max_offset == st.put_size);
  assert_int_equal(st.commit_log_min_offset, 0);
  /* ASYNC_FLUSH with no service thread: the backlog waits for run_due. */
  assert_true(st.flush_behind_bytes > 0 || st.flushed_offset == st.commit_log_max_offset);
  assert_int_equal(st.commit_log_files, 1);
  assert_int_equal(st.commit_log_bytes, 1 << 20);
  assert_true(st.disk_total_bytes > 0 && st.disk_free_bytes > 0 && st.disk_free_bytes <= st.disk_total_bytes);
  assert_true(st.commit_log_disk_ratio > 0 && st.commit_log_disk_ratio < 1);
  assert_int_equal(st.disk_full, 0);
  assert_true(st.next_delete_time >= st.now && st.next_delete_time <= st.now + 86400000);
  assert_true(st.oldest_file_last_modified == 0 || st.oldest_file_last_modified <= st.now);
  rmq_broker_stats_free(&st);
  rmq_broker_stats_free(&st); /* freed twice: a no-op */
  /* A minute of silence: the 10 s rate falls to 0 once sampled past it. */
  for (int i = 0; i < 8; i++) {
    tu_clock_advance(&clk, 10000);
    ok(rmq_broker_run_due(b, NULL));
  }
  ok(rmq_broker_stats_get(b, &st));
  t = find_topic(&st, "RateTopic");
  assert_true(t->put_tps[RMQ_TPS_10S] == 0);
  assert_true(t->put_tps[RMQ_TPS_1MIN] == 0);
  assert_true(t->put_tps[RMQ_TPS_1H] > 0); /* 150 over the 100 s since the open */
  assert_int_equal(st.flush_behind_bytes, 0);
  assert_int_equal(st.dispatch_behind_bytes, 0);
  rmq_broker_stats_free(&st);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  /* A reader (rmqadmin's open) runs no counters: its put rates come from
  ** the store times, 100 messages at T0 and 50 at T0 + 10 s. */
  rmq_broker_options o;
  tu_clock_opts(&o, 1 << 20, &clk, T0 + 15000);
  o.read_only = 1;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_broker_stats_get(b, &st));
  t = find_topic(&st, "RateTopic");
  assert_int_equal(t->put_nums, 0);
  assert_true(t->put_tps[RMQ_TPS_10S] > 4.99 && t->put_tps[RMQ_TPS_10S] < 5.01);
  assert_true(t->put_tps[RMQ_TPS_1MIN] > 2.49 && t->put_tps[RMQ_TPS_1MIN] < 2.51);
  assert_true(t->put_tps[RMQ_TPS_1H] > 150.0 / 3600 - 0.001 && t->put_tps[RMQ_TPS_1H] < 150.0 / 3600 + 0.001);
  assert_true(st.put_tps[RMQ_TPS_10S] > 4.99 && st.put_tps[RMQ_TPS_10S] < 5.01);
  rmq_broker_stats_free(&st);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* Lag per queue, the oldest unconsumed message's store time, get counts. */
static void test_consumer_lag(void **state)
{
  (void)state;
  char path[1024];
  tu_clock clk;
  rmq_broker *b = open_clocked(path, sizeof path, "stats-lag", &clk);
  ok(rmq_topic_create(b, "LagTopic", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  for (int i = 0; i < 20; i++) {
    rmq_msg *m;
    ok(rmq_msg_create(&m, "LagTopic", NULL, "body", 4));
    ok(rmq_producer_send_to_queue(p, m, i % 2, &(rmq_send_result){0}));
    rmq_msg_free(m);
    tu_clock_advance(&clk, 1000); /* message i stored at T0 + i s */
  }
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "LagGroup", &c));
  rmq_message_queue mq = tu_mq("LagTopic", 0);
  rmq_pull_result r;
  ok(rmq_pull_consumer_pull(c, &mq, "*", 0, 4, &r));
  assert_int_equal(r.n, 4);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 4)); /* queue 0: 4 of 10 consumed */
  mq.queue_id = 1;
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 10)); /* queue 1: all */
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  const rmq_group_stats *g = find_group(&st, "LagGroup", "LagTopic");
  assert_non_null(g);
  assert_int_equal(g->nqueues, 2);
  assert_int_equal(g->queues[0].broker_offset, 10);
  assert_int_equal(g->queues[0].consumer_offset, 4);
  assert_int_equal(g->queues[0].lag, 6);
  /* Queue 0 holds messages 0, 2, 4...: offset 4 is message 8, stored at T0 + 8 s. */
  assert_int_equal(g->queues[0].oldest_unconsumed_timestamp, T0 + 8000);
  assert_int_equal(g->queues[1].lag, 0);
  assert_int_equal(g->queues[1].oldest_unconsumed_timestamp, 0);
  assert_int_equal(g->diff_total, 6);
  assert_int_equal(g->consumer_delay_ms, st.now - (T0 + 8000));
  assert_int_equal(g->get_nums, 4);
  assert_true(g->get_size > 4 * 4);
  assert_int_equal(st.get_nums, 4);
  rmq_broker_stats_free(&st);
  rmq_pull_consumer_destroy(c);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

static int on_exec_unknown(void *ctx, const rmq_msg *m, const char *tid, void *arg)
{
  (void)ctx; (void)m; (void)tid; (void)arg;
  return RMQ_UNKNOW;
}

static int on_check_unknown(void *ctx, const rmq_message_ext *m)
{
  (void)ctx; (void)m;
  return RMQ_UNKNOW;
}

/* Pending delayed, timed and half messages, and the index backlog. */
static void test_pending(void **state)
{
  (void)state;
  char path[1024];
  tu_clock clk;
  rmq_broker *b = open_clocked(path, sizeof path, "stats-pending", &clk);
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  rmq_transaction_listener l = {on_exec_unknown, on_check_unknown, NULL};
  ok(rmq_producer_set_transaction_listener(p, &l));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "PendTopic", NULL, "b", 1));
  ok(rmq_msg_set_delay_time_level(m, 3));
  for (int i = 0; i < 3; i++) ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
  ok(rmq_msg_set_delay_time_level(m, 0));
  ok(rmq_msg_set_delay_time_ms(m, 60000));
  for (int i = 0; i < 5; i++) ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
  ok(rmq_msg_set_delay_time_ms(m, -1));
  for (int i = 0; i < 2; i++) {
    rmq_transaction_send_result tr;
    ok(rmq_producer_send_message_in_transaction(p, m, NULL, &tr));
  }
  rmq_msg_free(m);
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  assert_int_equal(st.pending_delay, 3);
  assert_int_equal(st.pending_timer, 5);
  assert_int_equal(st.pending_half, 2);
  assert_true(st.dispatch_behind_bytes > 0); /* no index thread, no run_due yet */
  rmq_broker_stats_free(&st);
  tu_clock_advance(&clk, 10001); /* level 3 (10 s) is due */
  ok(rmq_broker_run_due(b, NULL));
  ok(rmq_broker_stats_get(b, &st));
  assert_int_equal(st.pending_delay, 0);
  assert_int_equal(st.pending_timer, 5);
  assert_int_equal(st.dispatch_behind_bytes, 0);
  const rmq_topic_stats *t = find_topic(&st, "PendTopic");
  assert_non_null(t);
  assert_int_equal(t->put_nums, 3); /* the delivered copies */
  rmq_broker_stats_free(&st);
  tu_clock_advance(&clk, 60000);
  ok(rmq_broker_run_due(b, NULL));
  ok(rmq_broker_stats_get(b, &st));
  assert_int_equal(st.pending_timer, 0);
  rmq_broker_stats_free(&st);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* Four senders and a monitor calling the stats every moment. */
typedef struct conc {
  rmq_broker *b;
  rmq_producer *p;
  atomic_int done;
  atomic_int calls;
} conc;

static void *sender(void *arg)
{
  conc *c = arg;
  /* Not before the monitor's first call: on a loaded machine the sends
  ** could all be over before it ran once. */
  while (atomic_load(&c->calls) == 0) usleep(1000);
  send_n(c->p, "ConcTopic", 2000, 64);
  atomic_fetch_add(&c->done, 1);
  return NULL;
}

static void *monitor(void *arg)
{
  conc *c = arg;
  int64_t last = 0;
  do {
    rmq_broker_stats st;
    ok(rmq_broker_stats_get(c->b, &st));
    const rmq_topic_stats *t = find_topic(&st, "ConcTopic");
    int64_t n = t ? t->put_nums : 0;
    assert_true(n >= last); /* counters never go back */
    last = n;
    rmq_broker_stats_free(&st);
    atomic_fetch_add(&c->calls, 1);
  } while (atomic_load(&c->done) < 4);
  return NULL;
}

static void test_concurrent_sends(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "stats-conc");
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 4 << 20;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, "ConcTopic", 4));
  conc c = {.b = b};
  ok(rmq_producer_create(b, "pg", NULL, &c.p));
  pthread_t th[5];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, sender, &c), 0);
  assert_int_equal(pthread_create(&th[4], NULL, monitor, &c), 0);
  for (int i = 0; i < 5; i++) pthread_join(th[i], NULL);
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  const rmq_topic_stats *t = find_topic(&st, "ConcTopic");
  assert_int_equal(t->put_nums, 8000);
  assert_int_equal(t->max_offset_sum, 8000);
  assert_true(t->put_tps[RMQ_TPS_10S] > 0);
  assert_int_equal(st.put_nums, 8000);
  /* Topics come in name order. */
  for (size_t i = 1; i < st.ntopics; i++) assert_true(strcmp(st.topics[i - 1].topic, st.topics[i].topic) < 0);
  rmq_broker_stats_free(&st);
  rmq_producer_destroy(c.p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

static void test_errors(void **state)
{
  (void)state;
  assert_int_equal(rmq_broker_stats_get(NULL, &(rmq_broker_stats){0}), RMQ_EINVAL);
  char path[1024];
  tu_store_path(path, sizeof path, "stats-err");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  assert_int_equal(rmq_broker_stats_get(b, NULL), RMQ_EINVAL);
  rmq_broker_stats_free(NULL);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* Topics made while the sampler lists them: the allocator, armed, makes
** them the moment the sampler allocates its list (between its count and
** its fill), so the fill finds more topics than it counted. Under ASan
** a read past the list fails here (test_stress found it by chance). */
static struct {
  rmq_broker *b;
  size_t ntopics;        /* topics the sampler will count */
  int armed, fired, made;
} hook;

static void *hook_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  (void)ud;
  (void)osize;
  if (nsize == 0) { free(ptr); return NULL; }
  if (ptr) return realloc(ptr, nsize);
  void *p = malloc(nsize);
  if (hook.armed && nsize % sizeof(rmq_topic_info) == 0 &&
      nsize / sizeof(rmq_topic_info) >= hook.ntopics && nsize / sizeof(rmq_topic_info) <= hook.ntopics + 64) {
    hook.armed = 0; /* before creating, whose allocations pass through */
    hook.fired = 1;
    for (int i = 0; i < 40; i++) {
      char name[32];
      snprintf(name, sizeof name, "Late%02d", i);
      if (rmq_topic_create(hook.b, name, 1) == RMQ_OK) hook.made++;
    }
  }
  return p;
}

static void test_topics_made_while_sampling(void **state)
{
  (void)state;
  char path[1024];
  tu_clock clk;
  rmq_broker *b = open_clocked(path, sizeof path, "stats-late", &clk);
  ok(rmq_topic_create(b, "Early", 1));
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  send_n(p, "Early", 10, 50);
  size_t n = 0;
  ok(rmq_topic_list(b, NULL, 0, &n));
  hook.b = b;
  hook.ntopics = n;
  hook.armed = 1;
  tu_clock_advance(&clk, 1000);
  ok(rmq_broker_run_due(b, NULL));
  hook.armed = 0;
  assert_true(hook.fired);
  assert_int_equal(hook.made, 40);
  /* The late topics are sampled from the next round on. */
  send_n(p, "Late39", 20, 50);
  tu_clock_advance(&clk, 1000);
  ok(rmq_broker_run_due(b, NULL));
  rmq_broker_stats st;
  ok(rmq_broker_stats_get(b, &st));
  assert_int_equal(st.ntopics >= n + 40, 1);
  const rmq_topic_stats *t = find_topic(&st, "Late39");
  assert_non_null(t);
  assert_int_equal(t->put_nums, 20);
  assert_true(t->put_tps[RMQ_TPS_10S] > 0);
  rmq_broker_stats_free(&st);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

int main(void)
{
  (void)tu_wait_atleast;
  /* Before any other rmq call (rmq.h); it passes through unless armed. */
  rmq_config_allocator(hook_alloc, NULL);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_put_rates),
    cmocka_unit_test(test_consumer_lag),
    cmocka_unit_test(test_pending),
    cmocka_unit_test(test_concurrent_sends),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_topics_made_while_sampling),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
