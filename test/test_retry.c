/*
** test_retry.c -- retries and dead letters (issue 5, ROCKETMQ.md 12): a
** clustering consumer's RECONSUME_LATER sends the message back through delay
** level 3 + reconsumeTimes to %RETRY%<group>, which the group consumes; after
** max_reconsume_times retries it lands in %DLQ%<group>. The retry delays run
** on the broker's replaceable clock, driven by rmq_broker_run_due().
*/
#include "test_util.h"

#include <inttypes.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_small_opts; (void)tu_make_body; (void)tu_body_check; (void)tu_java_hash;
  (void)tu_read_exact; (void)tu_clock_advance;
}

#define T0 1700000000000LL

typedef struct seen {
  pthread_mutex_t mu;
  atomic_int calls;
  int n;
  int recon[64];
  int64_t at[64];         /* broker clock at each delivery */
  char topic[64][64];
  char msg_id[64][RMQ_MSG_ID_SIZE];
  tu_clock *clk;
  int orderly;
} seen;

static void note(seen *s, const rmq_message_ext *m)
{
  pthread_mutex_lock(&s->mu);
  if (s->n < 64) {
    s->recon[s->n] = m->reconsume_times;
    s->at[s->n] = tu_clock_read(s->clk);
    snprintf(s->topic[s->n], sizeof s->topic[s->n], "%s", m->topic);
    memcpy(s->msg_id[s->n], m->msg_id, RMQ_MSG_ID_SIZE);
    s->n++;
  }
  pthread_mutex_unlock(&s->mu);
  atomic_fetch_add(&s->calls, 1);
}

static int always_later(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  for (size_t i = 0; i < n; i++) note(ctx, msgs[i]);
  return RMQ_RECONSUME_LATER;
}

static int always_suspend(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_orderly_context *oc)
{
  for (size_t i = 0; i < n; i++) note(ctx, msgs[i]);
  oc->suspend_current_queue_time_millis = 10;
  return RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT;
}

typedef struct fx {
  char path[1024];
  tu_clock clk;
  rmq_broker *b;
  rmq_producer *p;
} fx;

static void fx_open(fx *f, const char *tag)
{
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  f->clk.now_ms = T0;
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.service_thread = 0;
  o.clock = tu_clock_read;
  o.clock_ctx = &f->clk;
  /* Level L waits L seconds, so each retry's level shows in its timing. */
  o.message_delay_level = "1s 2s 3s 4s 5s 6s 7s 8s 9s 10s 11s 12s 13s 14s 15s 16s 17s 18s 19s 20s";
  ok(rmq_broker_open(f->path, &o, &f->b));
  ok(rmq_producer_create(f->b, "RetryProducers", NULL, &f->p));
  ok(rmq_topic_create(f->b, "OrdersT", 2));
}

static rmq_send_result send_one(fx *f, const char *body)
{
  rmq_msg *m;
  ok(rmq_msg_create(&m, "OrdersT", "TagR", body, strlen(body)));
  rmq_send_result r;
  ok(rmq_producer_send(f->p, m, &r));
  rmq_msg_free(m);
  return r;
}

/* Runs the broker clock forward a second at a time until `calls` reaches
** want (each step waits for the consumer to catch up in real time). */
static int64_t retry_end(fx *f, const char *group)
{
  char t[160];
  snprintf(t, sizeof t, "%%RETRY%%%s", group);
  int64_t mn, mx;
  return rmq_topic_queue_offsets(f->b, t, 0, &mn, &mx) == RMQ_OK ? mx : 0;
}

/* Messages sent back so far: units in SCHEDULE_TOPIC_XXXX and the DLQ. */
static int64_t sent_back(fx *f, const char *group)
{
  int64_t n = 0, mn, mx;
  for (int q = 0; q < 20; q++)
    if (rmq_topic_queue_offsets(f->b, "SCHEDULE_TOPIC_XXXX", q, &mn, &mx) == RMQ_OK) n += mx;
  char t[160];
  snprintf(t, sizeof t, "%%DLQ%%%s", group);
  if (rmq_topic_queue_offsets(f->b, t, 0, &mn, &mx) == RMQ_OK) n += mx;
  return n;
}

static void run_until(fx *f, seen *s, const char *group, int want, int64_t limit_ms)
{
  int64_t end = T0 + limit_ms;
  while (atomic_load(&s->calls) < want && f->clk.now_ms < end) {
    int before = atomic_load(&s->calls);
    /* Every failure so far has been sent back before time moves on. */
    for (int i = 0; i < 5000 && sent_back(f, group) < before; i++) usleep(1000);
    int64_t re = retry_end(f, group);
    f->clk.now_ms += 1000;
    ok(rmq_broker_run_due(f->b, NULL));
    /* A retry fell due: wait (real time) for the consumer to take it. */
    if (retry_end(f, group) > re)
      for (int i = 0; i < 5000 && atomic_load(&s->calls) == before; i++) usleep(1000);
  }
  if (atomic_load(&s->calls) < want) fail_msg("%d of %d deliveries", atomic_load(&s->calls), want);
}

static size_t dlq_read(fx *f, const char *group, rmq_message_ext **copy)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f->b, "DlqReader", &c));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "%%DLQ%%%s", group);
  rmq_pull_result r;
  int rc = rmq_pull_consumer_pull(c, &mq, "*", 0, 32, &r);
  size_t n = 0;
  if (rc == RMQ_OK && r.pull_status == RMQ_PULL_FOUND) {
    n = r.n;
    if (copy) ok(rmq_message_ext_copy(&r.msgs[0], copy));
  }
  rmq_pull_consumer_destroy(c);
  return n;
}

static void test_default_retries_then_dlq(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "retry-default");
  static seen s;
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.mu, NULL);
  s.clk = &f.clk;
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.consume_thread_min = co.consume_thread_max = 2;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(f.b, "RetryGroup", &co, &c));
  ok(rmq_push_consumer_subscribe(c, "OrdersT", "*"));
  ok(rmq_push_consumer_register_listener_concurrently(c, always_later, &s));
  ok(rmq_push_consumer_start(c));
  rmq_send_result r = send_one(&f, "pay-order-7");
  /* max_reconsume_times -1 = 16: 17 deliveries in all. */
  if (!tu_wait_atleast(&s.calls, 1, 10000)) fail_msg("the first delivery did not come");
  run_until(&f, &s, "RetryGroup", 17, 400000);
  /* Nothing more comes: it is in the DLQ. */
  for (int i = 0; i < 30; i++) {
    f.clk.now_ms += 20000;
    ok(rmq_broker_run_due(f.b, NULL));
  }
  usleep(200000);
  rmq_push_consumer_destroy(c);
  assert_int_equal(atomic_load(&s.calls), 17);
  for (int i = 0; i < 17; i++) {
    assert_int_equal(s.recon[i], i);                 /* reconsumeTimes counting up */
    assert_string_equal(s.topic[i], "OrdersT");      /* the original topic, restored */
    assert_string_equal(s.msg_id[i], r.msg_id);      /* the same msgId */
    if (i > 0) {
      /* Retry i waited level 3 + (i - 1), i.e. that many seconds here,
      ** within one run-due step of the clock. */
      int64_t waited = s.at[i] - s.at[i - 1], want = (3 + (i - 1)) * 1000;
      if (waited < want || waited > want + 1000)
        fail_msg("retry %d came %" PRId64 " ms after the failure before it, want %" PRId64, i, waited, want);
    }
  }
  rmq_message_ext *d = NULL;
  assert_int_equal(dlq_read(&f, "RetryGroup", &d), 1);
  assert_string_equal(d->topic, "%DLQ%RetryGroup");
  assert_string_equal(d->msg_id, r.msg_id);
  assert_int_equal(d->reconsume_times, 17);
  assert_int_equal(d->body_len, 11);
  assert_memory_equal(d->body, "pay-order-7", 11);
  const char *v;
  size_t vl;
  ok(rmq_message_ext_property(d, "RETRY_TOPIC", &v, &vl));
  assert_int_equal(vl, 7);
  assert_memory_equal(v, "OrdersT", 7);
  ok(rmq_message_ext_property(d, "ORIGIN_MESSAGE_ID", &v, &vl));
  assert_memory_equal(v, r.offset_msg_id, 32);
  assert_int_equal(rmq_message_ext_property(d, "DELAY", &v, &vl), RMQ_ENOTFOUND);
  rmq_message_ext_free(d);
  rmq_producer_destroy(f.p);
  ok(rmq_broker_close(f.b));
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

static void test_orderly_to_dlq(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "retry-orderly");
  static seen s;
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.mu, NULL);
  s.clk = &f.clk;
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.max_reconsume_times = 2;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(f.b, "OrderlyRetryGroup", &co, &c));
  ok(rmq_push_consumer_subscribe(c, "OrdersT", "*"));
  ok(rmq_push_consumer_register_listener_orderly(c, always_suspend, &s));
  ok(rmq_push_consumer_start(c));
  rmq_send_result r = send_one(&f, "ship-order-9");
  /* Suspended in place (same queue, no send-back) up to the maximum. */
  if (!tu_wait_atleast(&s.calls, 3, 10000)) fail_msg("%d deliveries", atomic_load(&s.calls));
  int64_t t0 = tu_mono_ms();
  while (dlq_read(&f, "OrderlyRetryGroup", NULL) == 0 && tu_mono_ms() - t0 < 5000) usleep(5000);
  usleep(100000);
  rmq_push_consumer_destroy(c);
  assert_int_equal(atomic_load(&s.calls), 3);
  for (int i = 0; i < 3; i++) assert_int_equal(s.recon[i], i);
  rmq_message_ext *d = NULL;
  assert_int_equal(dlq_read(&f, "OrderlyRetryGroup", &d), 1);
  assert_string_equal(d->msg_id, r.msg_id);
  assert_int_equal(d->reconsume_times, 3);
  rmq_message_ext_free(d);
  rmq_producer_destroy(f.p);
  ok(rmq_broker_close(f.b));
  tu_store_remove(f.path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_default_retries_then_dlq),
    cmocka_unit_test(test_orderly_to_dlq),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("retry", tests, NULL, NULL);
}
