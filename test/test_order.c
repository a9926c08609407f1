/*
** test_order.c -- ordered sending and batches (issue 5): a queue selector
** (RocketMQ's send(msg, selector, arg)) keeps each key's messages in one queue
** in send order; a batch is one append to one queue with consecutive offsets,
** all or nothing, under RocketMQ's batching rules.
*/
#include "test_util.h"
#include "rmq_int.h"

#include <inttypes.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_wait_atleast; (void)tu_clock_advance; (void)tu_clock_read;
  (void)tu_small_opts; (void)tu_make_body; (void)tu_body_check; (void)tu_java_hash; (void)tu_read_exact;
}

typedef struct fx {
  char path[1024];
  rmq_broker *b;
  rmq_producer *p;
} fx;

static void fx_open(fx *f, const char *tag, int flush_type)
{
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.mapped_file_size_consume_queue = 20 * 4096;
  o.flush_disk_type = flush_type;
  ok(rmq_broker_open(f->path, &o, &f->b));
  ok(rmq_producer_create(f->b, "OrderProducers", NULL, &f->p));
}

static void fx_close(fx *f)
{
  rmq_producer_destroy(f->p);
  ok(rmq_broker_close(f->b));
  tu_rmqstore_check(f->path);
  tu_store_remove(f->path);
}

/* Reads every message of topic/queue in order into bodies (NUL-terminated,
** at most 64 bytes each); returns the count. */
static size_t read_queue(rmq_broker *b, const char *topic, int qid, char (*bodies)[64], size_t cap)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "OrderReader", &c));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "%s", topic);
  mq.queue_id = qid;
  size_t n = 0;
  int64_t off = 0;
  for (;;) {
    rmq_pull_result r;
    ok(rmq_pull_consumer_pull(c, &mq, "*", off, 32, &r));
    if (r.pull_status != RMQ_PULL_FOUND) break;
    for (size_t i = 0; i < r.n; i++) {
      assert_true(n < cap);
      assert_int_equal(r.msgs[i].queue_offset, off + (int64_t)i);
      assert_true(r.msgs[i].body_len < 64);
      memcpy(bodies[n], r.msgs[i].body, (size_t)r.msgs[i].body_len);
      bodies[n][r.msgs[i].body_len] = 0;
      n++;
    }
    off = r.next_begin_offset;
  }
  rmq_pull_consumer_destroy(c);
  return n;
}

/* The seed's OrderProducer selector: orderId % queues. */
static int by_order_id(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  (void)m;
  assert_non_null(mqs);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(mqs[i].queue_id, (int)i);
    assert_string_equal(mqs[i].topic, "OrderT");
    assert_string_equal(mqs[i].broker_name, "rmq-broker");
  }
  long id = *(const long *)arg;
  return (int)(id % (long)n);
}

static void test_selector_keeps_order_per_key(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "order-sel", RMQ_ASYNC_FLUSH);
  ok(rmq_topic_create(f.b, "OrderT", 4));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "OrderT", "TagA", "x", 1));
  /* 100 messages over 10 order ids, each id's steps in order. */
  for (int i = 0; i < 100; i++) {
    long id = i % 10;
    char body[64];
    snprintf(body, sizeof body, "order-%ld-step-%d", id, i / 10);
    ok(rmq_msg_set_body(m, body, strlen(body)));
    rmq_send_result r;
    ok(rmq_producer_send_select(f.p, m, by_order_id, &id, &r));
    assert_int_equal(r.message_queue.queue_id, (int)(id % 4));
    assert_int_equal(r.send_status, RMQ_SEND_OK);
  }
  for (int q = 0; q < 4; q++) {
    static char bodies[100][64];
    size_t n = read_queue(f.b, "OrderT", q, bodies, 100);
    int next_step[10] = {0};
    size_t want = 0;
    for (int id = q; id < 10; id += 4) want += 10;
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) {
      long id;
      int step;
      assert_int_equal(sscanf(bodies[i], "order-%ld-step-%d", &id, &step), 2);
      assert_int_equal(id % 4, q);
      assert_int_equal(step, next_step[id]); /* each id's steps in send order */
      next_step[id]++;
    }
  }
  rmq_msg_free(m);
  fx_close(&f);
}

static int bad_selector(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  (void)mqs; (void)m;
  return *(const int *)arg < 0 ? -1 : (int)n + *(const int *)arg;
}

static void test_selector_errors(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "order-selerr", RMQ_ASYNC_FLUSH);
  ok(rmq_topic_create(f.b, "OrderT", 4));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "OrderT", NULL, "x", 1));
  rmq_send_result r;
  int arg = 0;
  assert_int_equal(rmq_producer_send_select(f.p, m, bad_selector, &arg, &r), RMQ_EQUEUE);
  assert_non_null(strstr(rmq_errmsg(), "chose queue 4"));
  arg = -1;
  assert_int_equal(rmq_producer_send_select(f.p, m, bad_selector, &arg, &r), RMQ_EQUEUE);
  assert_int_equal(rmq_producer_send_select(f.p, m, NULL, &arg, &r), RMQ_EINVAL);
  assert_int_equal(rmq_producer_send_select(NULL, m, bad_selector, &arg, &r), RMQ_EINVAL);
  assert_int_equal(rmq_producer_send_select(f.p, NULL, bad_selector, &arg, &r), RMQ_ENOBODY);
  /* Nothing was stored. */
  for (int q = 0; q < 4; q++) {
    int64_t mn, mx;
    ok(rmq_topic_queue_offsets(f.b, "OrderT", q, &mn, &mx));
    assert_int_equal(mx, 0);
  }
  /* A resized topic: the selector sees the new queue count. */
  ok(rmq_topic_create(f.b, "OrderT", 6));
  long id = 5;
  ok(rmq_msg_set_topic(m, "OrderT"));
  assert_int_equal(rmq_producer_send_select(f.p, m, by_order_id, &id, &r), RMQ_OK);
  assert_int_equal(r.message_queue.queue_id, 5);
  rmq_msg_free(m);
  fx_close(&f);
}

static void check_batch(int flush_type)
{
  fx f;
  fx_open(&f, "order-batch", flush_type);
  ok(rmq_topic_create(f.b, "BatchT", 4));
  enum { N = 32 };
  rmq_msg *ms[N];
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "batch-%02d", i);
    ok(rmq_msg_create(&ms[i], "BatchT", (i & 1) ? "odd" : "even", body, strlen(body)));
    if (i == 7) ok(rmq_msg_set_keys(ms[i], "key-7"));
  }
  rmq_send_result rs[N];
  ok(rmq_producer_send_batch(f.p, (const rmq_msg *const *)ms, N, rs));
  int qid = rs[0].message_queue.queue_id;
  for (int i = 0; i < N; i++) {
    assert_int_equal(rs[i].send_status, RMQ_SEND_OK);
    assert_int_equal(rs[i].message_queue.queue_id, qid); /* one queue */
    assert_int_equal(rs[i].queue_offset, i);             /* consecutive offsets */
    if (i) assert_int_equal(rs[i].commit_log_offset, rs[i - 1].commit_log_offset + rs[i - 1].store_size);
    for (int j = 0; j < i; j++) assert_string_not_equal(rs[i].msg_id, rs[j].msg_id);
  }
  static char bodies[N][64];
  assert_int_equal(read_queue(f.b, "BatchT", qid, bodies, N), N);
  for (int i = 0; i < N; i++) {
    char want[32];
    snprintf(want, sizeof want, "batch-%02d", i);
    assert_string_equal(bodies[i], want);
  }
  /* The next batch goes to the next queue, round-robin. */
  ok(rmq_producer_send_batch(f.p, (const rmq_msg *const *)ms, 3, rs));
  assert_int_equal(rs[0].message_queue.queue_id, (qid + 1) % 4);
  for (int i = 0; i < N; i++) rmq_msg_free(ms[i]);
  fx_close(&f);
}

static void test_batch_one_append(void **state)
{
  (void)state;
  check_batch(RMQ_ASYNC_FLUSH);
  check_batch(RMQ_SYNC_FLUSH);
}

static int64_t total_in(rmq_broker *b, const char *topic)
{
  int64_t sum = 0;
  for (int q = 0; q < 4; q++) {
    int64_t mn, mx;
    if (rmq_topic_queue_offsets(b, topic, q, &mn, &mx) == RMQ_OK) sum += mx;
  }
  return sum;
}

static void test_batch_rules(void **state)
{
  (void)state;
  fx f;
  rmq_broker_options o;
  memset(&f, 0, sizeof f);
  tu_store_path(f.path, sizeof f.path, "order-rules");
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.max_message_size = 4096;
  ok(rmq_broker_open(f.path, &o, &f.b));
  ok(rmq_producer_create(f.b, "OrderProducers", NULL, &f.p));
  ok(rmq_topic_create(f.b, "BatchT", 4));
  ok(rmq_topic_create(f.b, "OtherT", 4));
  rmq_msg *a, *b2, *c;
  ok(rmq_msg_create(&a, "BatchT", NULL, "a", 1));
  ok(rmq_msg_create(&b2, "BatchT", NULL, "b", 1));
  ok(rmq_msg_create(&c, "OtherT", NULL, "c", 1));
  const rmq_msg *v[3] = {a, b2, c};
  rmq_send_result rs[3];

  assert_int_equal(rmq_producer_send_batch(f.p, v, 0, rs), RMQ_EBATCH);
  assert_non_null(strstr(rmq_errmsg(), "empty"));
  assert_int_equal(rmq_producer_send_batch(f.p, v, 3, rs), RMQ_EBATCH);
  assert_non_null(strstr(rmq_errmsg(), "topic of the messages in one batch should be the same"));
  ok(rmq_msg_set_delay_time_level(b2, 3));
  assert_int_equal(rmq_producer_send_batch(f.p, v, 2, rs), RMQ_EBATCH);
  assert_non_null(strstr(rmq_errmsg(), "TimeDelayLevel is not supported for batching"));
  ok(rmq_msg_set_delay_time_level(b2, 0));
  ok(rmq_msg_set_wait_store_msg_ok(b2, 0));
  assert_int_equal(rmq_producer_send_batch(f.p, v, 2, rs), RMQ_EBATCH);
  assert_non_null(strstr(rmq_errmsg(), "waitStoreMsgOK"));
  ok(rmq_msg_set_wait_store_msg_ok(b2, 1));
  const rmq_msg *withnull[2] = {a, NULL};
  assert_int_equal(rmq_producer_send_batch(f.p, withnull, 2, rs), RMQ_ENOBODY);
  assert_non_null(strstr(rmq_errmsg(), "batch message 1"));
  assert_int_equal(rmq_producer_send_batch(NULL, v, 2, rs), RMQ_EINVAL);
  assert_int_equal(rmq_producer_send_batch(f.p, NULL, 2, rs), RMQ_EINVAL);
  /* Together over max_message_size (4096): refused, nothing stored. */
  static uint8_t big[1500];
  memset(big, 'z', sizeof big);
  ok(rmq_msg_set_body(a, big, sizeof big));
  ok(rmq_msg_set_body(b2, big, sizeof big));
  const rmq_msg *three[3] = {a, b2, a};
  assert_int_equal(rmq_producer_send_batch(f.p, three, 3, rs), RMQ_EMSGSIZE);
  assert_non_null(strstr(rmq_errmsg(), "batch"));
  assert_int_equal(total_in(f.b, "BatchT"), 0);
  /* Two of them fit. */
  ok(rmq_producer_send_batch(f.p, three, 2, rs));
  assert_int_equal(total_in(f.b, "BatchT"), 2);
  rmq_msg_free(a);
  rmq_msg_free(b2);
  rmq_msg_free(c);
  fx_close(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_selector_keeps_order_per_key),
    cmocka_unit_test(test_selector_errors),
    cmocka_unit_test(test_batch_one_append),
    cmocka_unit_test(test_batch_rules),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("order", tests, NULL, NULL);
}
