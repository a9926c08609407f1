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
  (void)tu_log_fn; (void)tu_clock_advance; (void)tu_clock_read;
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
  rmq_message_queue mq = tu_mq(topic, qid);
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

/* A store with 4096-byte messages at most, a producer and topic BatchT (4 queues). */
static void batch_fx_open(fx *f, const char *tag)
{
  rmq_broker_options o;
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.max_message_size = 4096;
  ok(rmq_broker_open(f->path, &o, &f->b));
  ok(rmq_producer_create(f->b, "OrderProducers", NULL, &f->p));
  ok(rmq_topic_create(f->b, "BatchT", 4));
}

/* A batch whose message 1 is bad fails with the code and the text the bad
** message gets when sent alone, after "batch message 1: ". */
static void expect_batch_text(rmq_producer *p, const rmq_msg *good, const rmq_msg *bad)
{
  rmq_send_result r[2];
  int rc = rmq_producer_send(p, bad, &r[0]);
  assert_int_not_equal(rc, RMQ_OK);
  char want[600];
  snprintf(want, sizeof want, "batch message 1: %s", rmq_errmsg());
  const rmq_msg *v[2] = {good, bad};
  assert_int_equal(rmq_producer_send_batch(p, v, 2, r), rc);
  assert_string_equal(rmq_errmsg(), want);
}

static void test_batch_error_texts(void **state)
{
  (void)state;
  fx f;
  batch_fx_open(&f, "order-texts");
  rmq_msg *a, *x;
  ok(rmq_msg_create(&a, "BatchT", NULL, "a", 1));
  ok(rmq_msg_create(&x, "BatchT", NULL, "x", 1));
  expect_batch_text(f.p, a, NULL);
  assert_string_equal(rmq_errmsg(), "batch message 1: the message is null");
  ok(rmq_msg_set_body(x, NULL, 0));
  expect_batch_text(f.p, a, x);
  assert_string_equal(rmq_errmsg(), "batch message 1: the message body length is zero");
  static uint8_t big[5000];
  ok(rmq_msg_set_body(x, big, sizeof big));
  expect_batch_text(f.p, a, x);
  assert_non_null(strstr(rmq_errmsg(), "batch message 1: the message body size over max value, MAX: 4096"));
  rmq_msg_free(x);
  ok(rmq_msg_create(&x, "SCHEDULE_TOPIC_XXXX", NULL, "x", 1));
  expect_batch_text(f.p, a, x);
  rmq_msg_free(x);
  ok(rmq_msg_create(&x, "a/b", NULL, "x", 1)); /* names are checked when sent */
  expect_batch_text(f.p, a, x);
  rmq_msg_free(x);
  /* Nothing of the refused batches was stored. */
  for (int q = 0; q < 4; q++) {
    int64_t mn, mx;
    ok(rmq_topic_queue_offsets(f.b, "BatchT", q, &mn, &mx));
    assert_int_equal(mx, 0);
  }
  ok(rmq_producer_send(f.p, a, NULL));
  rmq_msg_free(a);
  fx_close(&f);
}

static void test_batch_rules(void **state)
{
  (void)state;
  fx f;
  batch_fx_open(&f, "order-rules");
  ok(rmq_topic_create(f.b, "OtherT", 4));
  rmq_msg *a, *b2, *c;
  ok(rmq_msg_create(&a, "BatchT", NULL, "a", 1));
  ok(rmq_msg_create(&b2, "BatchT", NULL, "b", 1));
  ok(rmq_msg_create(&c, "OtherT", NULL, "c", 1));
  const rmq_msg *v[3] = {a, b2, c};
  rmq_send_result rs[3];

  assert_int_equal(rmq_producer_send_batch(f.p, v, 0, rs), RMQ_EBATCH);
  assert_non_null(strstr(rmq_errmsg(), "empty"));
  assert_int_equal(rmq_producer_send_batch(f.p, v, (size_t)-1, rs), RMQ_EBATCH);
  assert_non_null(strstr(rmq_errmsg(), "at most 65536"));
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

/* ---- orderly consumption ------------------------------------------------ */

enum { OQ = 4, OIDS = 20, OSTEPS = 20, ON = OIDS * OSTEPS };

typedef struct orec {
  pthread_mutex_t mu;
  atomic_int inside[OQ];       /* listener calls running per queue, all consumers */
  atomic_int overlap;          /* a queue was in two calls at once */
  atomic_int got;
  int next_step[OIDS];         /* mu */
  int bad_order;               /* mu */
  int dup;                     /* mu */
  int suspend_id, suspend_step, suspends_left; /* mu: SUSPEND this message so often */
  int seen_times[8];           /* mu: reconsume_times seen for the suspended message */
  int nseen;
  char last_body[OQ][64];      /* mu: the previous body per queue */
  int after_suspend_bad;       /* mu: a later message of the queue came before a suspended one */
  int sleep_us;
} orec;

static void orec_init(orec *o)
{
  memset(o, 0, sizeof *o);
  pthread_mutex_init(&o->mu, NULL);
  o->suspend_id = -1;
}

static int on_orderly(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_orderly_context *oc)
{
  orec *o = ctx;
  int q = oc->queue_id;
  if (atomic_fetch_add(&o->inside[q], 1) != 0) atomic_store(&o->overlap, 1);
  if (o->sleep_us) usleep((useconds_t)o->sleep_us);
  int status = RMQ_CONSUME_SUCCESS;
  pthread_mutex_lock(&o->mu);
  /* SUSPEND takes the whole batch back: decide it before counting any. */
  for (size_t i = 0; i < n && o->suspends_left > 0; i++) {
    char body[64];
    int len = msgs[i]->body_len < 63 ? msgs[i]->body_len : 63;
    memcpy(body, msgs[i]->body, (size_t)len);
    body[len] = 0;
    long id;
    int step;
    if (sscanf(body, "order-%ld-step-%d", &id, &step) == 2 && (int)id == o->suspend_id && step == o->suspend_step) {
      if (o->nseen < 8) o->seen_times[o->nseen++] = msgs[i]->reconsume_times;
      o->suspends_left--;
      oc->suspend_current_queue_time_millis = 20;
      pthread_mutex_unlock(&o->mu);
      atomic_fetch_sub(&o->inside[q], 1);
      return RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT;
    }
  }
  for (size_t i = 0; i < n; i++) {
    char body[64];
    int len = msgs[i]->body_len < 63 ? msgs[i]->body_len : 63;
    memcpy(body, msgs[i]->body, (size_t)len);
    body[len] = 0;
    long id;
    int step;
    if (sscanf(body, "order-%ld-step-%d", &id, &step) != 2 || id < 0 || id >= OIDS) { o->bad_order = 1; continue; }
    if (msgs[i]->queue_id != q) o->bad_order = 1;
    if ((int)id == o->suspend_id && step == o->suspend_step && o->nseen < 8)
      o->seen_times[o->nseen++] = msgs[i]->reconsume_times;
    if (step < o->next_step[id]) o->dup = 1;
    else if (step > o->next_step[id]) o->bad_order = 1;
    else { o->next_step[id]++; atomic_fetch_add(&o->got, 1); }
  }
  pthread_mutex_unlock(&o->mu);
  atomic_fetch_sub(&o->inside[q], 1);
  return status;
}

static int by_id(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  (void)mqs; (void)m;
  return (int)(*(const long *)arg % (long)n);
}

/* Sends OSTEPS steps for each of OIDS order ids, interleaved, each id's steps
** to one queue in order. */
static void send_orders(rmq_producer *p, int from_step, int to_step)
{
  rmq_msg *m;
  ok(rmq_msg_create(&m, "OrderlyT", "TagA", "x", 1));
  for (int step = from_step; step < to_step; step++)
    for (long id = 0; id < OIDS; id++) {
      char body[64];
      snprintf(body, sizeof body, "order-%ld-step-%d", id, step);
      ok(rmq_msg_set_body(m, body, strlen(body)));
      rmq_send_result r;
      ok(rmq_producer_send_select(p, m, by_id, &id, &r));
    }
  rmq_msg_free(m);
}

static rmq_push_consumer *orderly_consumer(rmq_broker *b, orec *o, int threads, int batch, const char *instance)
{
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.consume_thread_min = co.consume_thread_max = threads;
  co.consume_message_batch_max_size = batch;
  co.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  co.instance_name = instance;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(b, "OrderlyGroup", &co, &c));
  ok(rmq_push_consumer_subscribe(c, "OrderlyT", "*"));
  ok(rmq_push_consumer_register_listener_orderly(c, on_orderly, o));
  return c;
}

static void test_orderly_per_key_order(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "order-orderly", RMQ_ASYNC_FLUSH);
  ok(rmq_topic_create(f.b, "OrderlyT", OQ));
  static orec o;
  orec_init(&o);
  rmq_push_consumer *c = orderly_consumer(f.b, &o, 4, 1, "solo");
  ok(rmq_push_consumer_start(c));
  send_orders(f.p, 0, OSTEPS);
  if (!tu_wait_atleast(&o.got, ON, 20000)) fail_msg("got %d of %d", atomic_load(&o.got), ON);
  rmq_push_consumer_destroy(c);
  assert_int_equal(atomic_load(&o.overlap), 0);
  assert_int_equal(o.bad_order, 0);
  assert_int_equal(o.dup, 0);
  for (int id = 0; id < OIDS; id++) assert_int_equal(o.next_step[id], OSTEPS);
  /* The offsets were committed: a restart delivers nothing again. */
  static orec o2;
  orec_init(&o2);
  c = orderly_consumer(f.b, &o2, 2, 1, "solo");
  ok(rmq_push_consumer_start(c));
  usleep(200000);
  rmq_push_consumer_destroy(c);
  assert_int_equal(atomic_load(&o2.got), 0);
  assert_int_equal(o2.dup, 0);
  fx_close(&f);
}

static void test_orderly_suspend_keeps_order(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "order-suspend", RMQ_ASYNC_FLUSH);
  ok(rmq_topic_create(f.b, "OrderlyT", OQ));
  static orec o;
  orec_init(&o);
  o.suspend_id = 6;
  o.suspend_step = 3;
  o.suspends_left = 2;
  send_orders(f.p, 0, OSTEPS);
  rmq_push_consumer *c = orderly_consumer(f.b, &o, 4, 3, "solo");
  ok(rmq_push_consumer_start(c));
  if (!tu_wait_atleast(&o.got, ON, 20000)) fail_msg("got %d of %d", atomic_load(&o.got), ON);
  rmq_push_consumer_destroy(c);
  assert_int_equal(atomic_load(&o.overlap), 0);
  assert_int_equal(o.bad_order, 0); /* nothing after the suspended message came first */
  assert_int_equal(o.dup, 0);
  /* Delivered three times, reconsume_times counting up. */
  assert_int_equal(o.nseen, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(o.seen_times[i], i);
  fx_close(&f);
}

static void test_orderly_rebalance_no_overlap(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "order-rebal", RMQ_ASYNC_FLUSH);
  ok(rmq_topic_create(f.b, "OrderlyT", OQ));
  static orec o;
  orec_init(&o);
  o.sleep_us = 300; /* calls long enough for hand-overs to meet them */
  rmq_push_consumer *a = orderly_consumer(f.b, &o, 4, 1, "A");
  ok(rmq_push_consumer_start(a));
  send_orders(f.p, 0, 5);
  /* B joins mid-stream: half the queues move while A consumes them. */
  rmq_push_consumer *b2 = orderly_consumer(f.b, &o, 4, 1, "B");
  ok(rmq_push_consumer_start(b2));
  send_orders(f.p, 5, 12);
  /* A leaves: its queues move to B. */
  usleep(20000);
  rmq_push_consumer_destroy(a);
  send_orders(f.p, 12, OSTEPS);
  if (!tu_wait_atleast(&o.got, ON, 30000)) fail_msg("got %d of %d", atomic_load(&o.got), ON);
  rmq_push_consumer_destroy(b2);
  assert_int_equal(atomic_load(&o.overlap), 0);
  assert_int_equal(o.bad_order, 0);
  assert_int_equal(o.dup, 0);
  for (int id = 0; id < OIDS; id++) assert_int_equal(o.next_step[id], OSTEPS);
  fx_close(&f);
}

static void test_orderly_register_errors(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "order-reg", RMQ_ASYNC_FLUSH);
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(f.b, "OrderlyGroup", NULL, &c));
  assert_int_equal(rmq_push_consumer_register_listener_orderly(c, NULL, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_register_listener_orderly(NULL, on_orderly, NULL), RMQ_EINVAL);
  rmq_push_consumer_destroy(c);
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  assert_int_equal(co.suspend_current_queue_time_millis, 1000);
  co.suspend_current_queue_time_millis = -1;
  assert_int_equal(rmq_push_consumer_create(f.b, "OrderlyGroup", &co, &c), RMQ_EINVAL);
  send_orders(f.p, 0, 1); /* a store with records, for the decoder */
  fx_close(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_selector_keeps_order_per_key),
    cmocka_unit_test(test_selector_errors),
    cmocka_unit_test(test_batch_one_append),
    cmocka_unit_test(test_batch_rules),
    cmocka_unit_test(test_batch_error_texts),
    cmocka_unit_test(test_orderly_per_key_order),
    cmocka_unit_test(test_orderly_suspend_keeps_order),
    cmocka_unit_test(test_orderly_rebalance_no_overlap),
    cmocka_unit_test(test_orderly_register_errors),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("order", tests, NULL, NULL);
}
