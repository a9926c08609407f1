/*
** test_consumer.c -- DefaultMQPushConsumer and DefaultMQPullConsumer: tag
** subscriptions, clustering groups and rebalancing (ROCKETMQ.md 13), offsets
** across restarts, consumeFromWhere, RECONSUME_LATER, the delivered
** MessageExt and its toString (9), long polling, and every PullStatus.
** Waits are bounded polls; nothing asserts how fast anything happened.
*/
#include "test_util.h"
#include "rmq_int.h"

#include <inttypes.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_clock_advance; (void)tu_clock_read;
}

#define WAIT_MS 15000 /* generous bound for anything to arrive */
#define GRACE_MS 300  /* how long nothing more may arrive */

static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

static void small_options(rmq_broker_options *o)
{
  rmq_broker_options_init(o);
  o->mapped_file_size_commit_log = 4 << 20;
  o->mapped_file_size_consume_queue = 20 * 4096;
  /* Retries ride on delay levels 3 and up: one second each here. */
  o->message_delay_level = "1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";
}

typedef struct fx {
  char path[1024];
  tu_log log;             /* the broker's log lines (kept off stderr) */
  rmq_broker_options o;
  rmq_broker *b;
  rmq_producer *p;
} fx;

static void fx_open(fx *f, const char *tag)
{
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  small_options(&f->o);
  f->o.log = tu_log_fn;
  f->o.log_ctx = &f->log;
  f->o.log_level = RMQ_LOG_WARN;
  ok(rmq_broker_open(f->path, &f->o, &f->b));
  ok(rmq_producer_create(f->b, "ProducerGroup", NULL, &f->p));
}

/* fx_open, a topic of nq queues, a pull consumer of group and *mq naming
** the topic (queue 0). */
static rmq_pull_consumer *fx_open_pull(fx *f, const char *tag, const char *topic, int nq, const char *group,
                                       rmq_message_queue *mq)
{
  fx_open(f, tag);
  ok(rmq_topic_create(f->b, topic, nq));
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f->b, group, &c));
  memset(mq, 0, sizeof *mq);
  snprintf(mq->topic, sizeof mq->topic, "%s", topic);
  return c;
}

static void fx_close(fx *f)
{
  rmq_producer_destroy(f->p);
  f->p = NULL;
  ok(rmq_broker_close(f->b));
  f->b = NULL;
  tu_store_remove(f->path);
}

/* Sends body (a string) with tags (NULL: untagged); returns the result. */
static rmq_send_result send_msg(fx *f, const char *topic, const char *tags, const char *body)
{
  rmq_msg *m;
  ok(rmq_msg_create(&m, topic, tags, body, strlen(body)));
  rmq_send_result r;
  ok(rmq_producer_send(f->p, m, &r));
  rmq_msg_free(m);
  return r;
}

/* ------------------------------------------------------------------------- */
/* Collecting what a push consumer receives                                   */
/* ------------------------------------------------------------------------- */

typedef struct rec {
  char tags[32];          /* "" when untagged */
  int untagged;
  int queue_id;
  int64_t queue_offset;
  char msg_id[RMQ_MSG_ID_SIZE];
  char body[64];
  int reconsume_times;
  size_t batch;           /* n of the listener call */
} rec;

enum { REC_MAX = 4096 };

typedef struct collector {
  pthread_mutex_t mu;
  rec recs[REC_MAX];
  int n;                  /* mu */
  atomic_int count;       /* deliveries */
  /* Behaviour: fail (RECONSUME_LATER) while reconsume_times < fail_below,
  ** for messages whose body starts with fail_prefix (NULL: none). */
  const char *fail_prefix;
  int fail_below;
  int ack_index_first_call; /* >= 0: on the first call set ack_index to it */
  atomic_int calls;
  atomic_int bad_context;   /* calls whose context did not name the queue */
} collector;

static collector *collector_new(void)
{
  collector *c = calloc(1, sizeof *c);
  assert_non_null(c);
  pthread_mutex_init(&c->mu, NULL);
  c->ack_index_first_call = -1;
  return c;
}

static void collector_free(collector *c)
{
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static int collect_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  collector *c = ctx;
  int status = RMQ_CONSUME_SUCCESS;
  int call = atomic_fetch_add(&c->calls, 1);
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < n; i++) {
    const rmq_message_ext *m = msgs[i];
    if (c->n < REC_MAX) {
      rec *r = &c->recs[c->n++];
      memset(r, 0, sizeof *r);
      r->untagged = m->tags == NULL;
      if (m->tags) snprintf(r->tags, sizeof r->tags, "%.*s", (int)m->tags_len, m->tags);
      r->queue_id = m->queue_id;
      r->queue_offset = m->queue_offset;
      snprintf(r->msg_id, sizeof r->msg_id, "%s", m->msg_id);
      snprintf(r->body, sizeof r->body, "%.*s", (int)m->body_len, (const char *)m->body);
      r->reconsume_times = m->reconsume_times;
      r->batch = n;
      if (c->fail_prefix && !strncmp(r->body, c->fail_prefix, strlen(c->fail_prefix)) &&
          m->reconsume_times < c->fail_below)
        status = RMQ_RECONSUME_LATER;
    }
    /* The context names this message's queue (a retried message shows its
    ** original topic, the context the retry queue it came from). */
    if (cc->queue_id != m->queue_id || (strcmp(cc->topic, m->topic) && strncmp(cc->topic, "%RETRY%", 7)))
      atomic_fetch_add(&c->bad_context, 1);
  }
  pthread_mutex_unlock(&c->mu);
  if (call == 0 && c->ack_index_first_call >= 0) cc->ack_index = c->ack_index_first_call;
  atomic_fetch_add(&c->count, (int)n);
  return status;
}

/* Number of deliveries matching pred. */
static int collector_count(collector *c, int (*pred)(const rec *, const void *), const void *arg)
{
  pthread_mutex_lock(&c->mu);
  int k = 0;
  for (int i = 0; i < c->n; i++)
    if (!pred || pred(&c->recs[i], arg)) k++;
  pthread_mutex_unlock(&c->mu);
  return k;
}

static int has_tag(const rec *r, const void *tag) { return !r->untagged && !strcmp(r->tags, tag); }
static int is_untagged(const rec *r, const void *unused) { (void)unused; return r->untagged; }
static int body_is(const rec *r, const void *body) { return !strcmp(r->body, body); }
static int body_prefix(const rec *r, const void *p) { return !strncmp(r->body, p, strlen(p)); }

/* Waits (bounded) for want deliveries, then a grace period, and asserts
** exactly want arrived. */
static void expect_exactly(collector *c, int want, const char *what)
{
  if (!tu_wait_atleast(&c->count, want, WAIT_MS))
    fail_msg("%s: %d of %d messages within %d ms", what, atomic_load(&c->count), want, WAIT_MS);
  sleep_ms(GRACE_MS);
  if (atomic_load(&c->count) != want) fail_msg("%s: %d messages, want exactly %d", what, atomic_load(&c->count), want);
  assert_int_equal(atomic_load(&c->bad_context), 0);
}

/* Every body seen exactly once. */
static void expect_unique_bodies(collector *c)
{
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->n; i++)
    for (int k = 0; k < i; k++)
      if (!strcmp(c->recs[i].body, c->recs[k].body)) {
        char b[64];
        snprintf(b, sizeof b, "%s", c->recs[i].body);
        pthread_mutex_unlock(&c->mu);
        fail_msg("message '%s' delivered twice", b);
      }
  pthread_mutex_unlock(&c->mu);
}

static void consumer_options(rmq_push_consumer_options *o)
{
  rmq_push_consumer_options_init(o);
  o->consume_thread_min = 4;
  o->consume_thread_max = 4;
  o->reconsume_delay_ms = 10;
}

static rmq_push_consumer *start_consumer_opts(rmq_broker *b, const char *group, const rmq_push_consumer_options *o,
                                              const char *topic, const char *expr, collector *c)
{
  rmq_push_consumer *pc;
  ok(rmq_push_consumer_create(b, group, o, &pc));
  ok(rmq_push_consumer_subscribe(pc, topic, expr));
  ok(rmq_push_consumer_register_listener_concurrently(pc, collect_listener, c));
  ok(rmq_push_consumer_start(pc));
  return pc;
}

static rmq_push_consumer *start_consumer(rmq_broker *b, const char *group, const char *topic, const char *expr,
                                         collector *c)
{
  rmq_push_consumer_options o;
  consumer_options(&o);
  return start_consumer_opts(b, group, &o, topic, expr, c);
}

/* ------------------------------------------------------------------------- */
/* Subscriptions                                                              */
/* ------------------------------------------------------------------------- */

static void test_tag_subscription(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-tags");
  ok(rmq_topic_create(f.b, "TagT", 4));
  collector *sel = collector_new(), *all = collector_new(), *aa = collector_new();
  rmq_push_consumer *c1 = start_consumer(f.b, "SelectGroup", "TagT", "add || update", sel);
  rmq_push_consumer *c2 = start_consumer(f.b, "AllGroup", "TagT", "*", all);
  /* "Aa" and "BB" share a hash code: the consumer's string re-check decides. */
  rmq_push_consumer *c3 = start_consumer(f.b, "CollideGroup", "TagT", "Aa", aa);

  static const char *const tags[] = {"add", "update", "delete", NULL, "Add", "add2", "upd", "Aa", "BB"};
  enum { NT = 9, PER = 8 };
  for (int i = 0; i < PER; i++)
    for (int t = 0; t < NT; t++) {
      char body[64];
      snprintf(body, sizeof body, "%s-%d", tags[t] ? tags[t] : "none", i);
      send_msg(&f, "TagT", tags[t], body);
    }

  expect_exactly(sel, 2 * PER, "add || update");
  assert_int_equal(collector_count(sel, has_tag, "add"), PER);
  assert_int_equal(collector_count(sel, has_tag, "update"), PER);
  assert_int_equal(collector_count(sel, is_untagged, NULL), 0);
  expect_unique_bodies(sel);

  expect_exactly(all, NT * PER, "*");
  for (int t = 0; t < NT; t++)
    if (tags[t]) assert_int_equal(collector_count(all, has_tag, tags[t]), PER);
  assert_int_equal(collector_count(all, is_untagged, NULL), PER);
  expect_unique_bodies(all);

  expect_exactly(aa, PER, "Aa");
  assert_int_equal(collector_count(aa, has_tag, "Aa"), PER);

  rmq_push_consumer_destroy(c1);
  rmq_push_consumer_destroy(c2);
  rmq_push_consumer_destroy(c3);
  collector_free(sel);
  collector_free(all);
  collector_free(aa);
  fx_close(&f);
}

/* Subscribing a topic again replaces its expression. */
static void test_resubscribe_replaces(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-resub");
  ok(rmq_topic_create(f.b, "ResubT", 2));
  collector *c = collector_new();
  rmq_push_consumer_options o;
  consumer_options(&o);
  rmq_push_consumer *pc;
  ok(rmq_push_consumer_create(f.b, "ResubGroup", &o, &pc));
  ok(rmq_push_consumer_subscribe(pc, "ResubT", "a"));
  ok(rmq_push_consumer_subscribe(pc, "ResubT", "b"));
  ok(rmq_push_consumer_register_listener_concurrently(pc, collect_listener, c));
  ok(rmq_push_consumer_start(pc));
  /* After start the handle's setup is frozen. */
  assert_int_equal(rmq_push_consumer_subscribe(pc, "ResubT", "*"), RMQ_ESTATE);
  assert_int_equal(rmq_push_consumer_register_listener_concurrently(pc, collect_listener, c), RMQ_ESTATE);
  assert_int_equal(rmq_push_consumer_start(pc), RMQ_ESTATE);
  for (int i = 0; i < 4; i++) {
    char body[16];
    snprintf(body, sizeof body, "a%d", i);
    send_msg(&f, "ResubT", "a", body);
    snprintf(body, sizeof body, "b%d", i);
    send_msg(&f, "ResubT", "b", body);
  }
  expect_exactly(c, 4, "resubscribed to b");
  assert_int_equal(collector_count(c, has_tag, "b"), 4);
  rmq_push_consumer_shutdown(pc);
  rmq_push_consumer_shutdown(pc); /* idempotent */
  rmq_push_consumer_destroy(pc);
  collector_free(c);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Consumer groups                                                            */
/* ------------------------------------------------------------------------- */

/* Bit set of the queues a collector's messages came from. */
static unsigned queue_set(collector *c)
{
  unsigned s = 0;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->n; i++) s |= 1u << c->recs[i].queue_id;
  pthread_mutex_unlock(&c->mu);
  return s;
}

static int body_in(collector *c, const char *body) { return collector_count(c, body_is, body); }

static void test_clustering_group(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-cluster");
  ok(rmq_topic_create(f.b, "ClusterT", 8));
  collector *ca = collector_new(), *cb = collector_new();
  rmq_push_consumer_options o;
  consumer_options(&o);
  o.instance_name = "A"; /* client ids 127.0.0.1@A < 127.0.0.1@B */
  rmq_push_consumer *a = start_consumer_opts(f.b, "ClusterGroup", &o, "ClusterT", "*", ca);
  o.instance_name = "B";
  rmq_push_consumer *b = start_consumer_opts(f.b, "ClusterGroup", &o, "ClusterT", "*", cb);

  enum { N = 80 };
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "first-%d", i);
    send_msg(&f, "ClusterT", "t", body);
  }
  if (!tu_wait_atleast(&ca->count, 1, WAIT_MS) || !tu_wait_atleast(&cb->count, 1, WAIT_MS))
    fail_msg("a consumer received nothing: A %d, B %d", atomic_load(&ca->count), atomic_load(&cb->count));
  int64_t end = tu_mono_ms() + WAIT_MS;
  while (atomic_load(&ca->count) + atomic_load(&cb->count) < N && tu_mono_ms() < end) sleep_ms(2);
  sleep_ms(GRACE_MS);
  assert_int_equal(atomic_load(&ca->count) + atomic_load(&cb->count), N);
  /* Each message exactly once across the group. */
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "first-%d", i);
    if (body_in(ca, body) + body_in(cb, body) != 1)
      fail_msg("%s received %d times by A, %d by B", body, body_in(ca, body), body_in(cb, body));
  }
  /* Disjoint queue sets covering the topic: AllocateMessageQueueAveragely
  ** gives 8 queues / 2 clients as {0-3} to A and {4-7} to B. */
  unsigned qa = queue_set(ca), qb = queue_set(cb);
  assert_int_equal(qa & qb, 0);
  assert_int_equal(qa | qb, 0xFF);
  assert_int_equal(qa, 0x0F);
  assert_int_equal(qb, 0xF0);

  /* B leaves: A takes over every queue, starting where B stopped. */
  rmq_push_consumer_destroy(b);
  int before = atomic_load(&ca->count);
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "second-%d", i);
    send_msg(&f, "ClusterT", "t", body);
  }
  expect_exactly(ca, before + N, "A after B left");
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "second-%d", i);
    assert_int_equal(body_in(ca, body), 1);
    assert_int_equal(body_in(cb, body), 0);
  }
  /* Nothing B had consumed came back to A. */
  for (int i = 0; i < N; i++) {
    char body[32];
    snprintf(body, sizeof body, "first-%d", i);
    assert_int_equal(body_in(ca, body) + body_in(cb, body), 1);
  }
  assert_int_equal(queue_set(ca), 0xFF);
  rmq_push_consumer_destroy(a);
  collector_free(ca);
  collector_free(cb);
  fx_close(&f);
}

static void test_broadcasting(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-bcast");
  ok(rmq_topic_create(f.b, "BcastT", 4));
  collector *ca = collector_new(), *cb = collector_new();
  rmq_push_consumer_options o;
  consumer_options(&o);
  o.message_model = RMQ_BROADCASTING;
  o.instance_name = "A";
  rmq_push_consumer *a = start_consumer_opts(f.b, "BcastGroup", &o, "BcastT", "*", ca);
  o.instance_name = "B";
  rmq_push_consumer *b = start_consumer_opts(f.b, "BcastGroup", &o, "BcastT", "*", cb);
  for (int i = 0; i < 20; i++) {
    char body[16];
    snprintf(body, sizeof body, "b%d", i);
    send_msg(&f, "BcastT", NULL, body);
  }
  /* Every member gets every message. */
  expect_exactly(ca, 20, "broadcast A");
  expect_exactly(cb, 20, "broadcast B");
  expect_unique_bodies(ca);
  expect_unique_bodies(cb);
  rmq_push_consumer_destroy(a);
  rmq_push_consumer_destroy(b);
  collector_free(ca);
  collector_free(cb);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Offsets and where to start                                                 */
/* ------------------------------------------------------------------------- */

static void test_restart_resumes(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-resume");
  ok(rmq_topic_create(f.b, "ResumeT", 3));
  enum { N = 12, M = 7 };
  for (int i = 0; i < N; i++) {
    char body[16];
    snprintf(body, sizeof body, "old-%d", i);
    send_msg(&f, "ResumeT", NULL, body);
  }
  collector *c = collector_new();
  rmq_push_consumer *pc = start_consumer(f.b, "ResumeGroup", "ResumeT", "*", c);
  expect_exactly(c, N, "before restart");
  rmq_push_consumer_destroy(pc);
  collector_free(c);

  /* The committed offsets are the group's: a pull consumer sees them. */
  rmq_pull_consumer *pl;
  ok(rmq_pull_consumer_create(f.b, "ResumeGroup", &pl));
  for (int q = 0; q < 3; q++) {
    rmq_message_queue mq = tu_mq("ResumeT", q);
    int64_t off = -1;
    ok(rmq_pull_consumer_fetch_consume_offset(pl, &mq, &off));
    assert_int_equal(off, N / 3);
  }
  rmq_pull_consumer_destroy(pl);

  rmq_producer_destroy(f.p);
  ok(rmq_broker_close(f.b));
  ok(rmq_broker_open(f.path, &f.o, &f.b));
  ok(rmq_producer_create(f.b, "ProducerGroup", NULL, &f.p));
  for (int i = 0; i < M; i++) {
    char body[16];
    snprintf(body, sizeof body, "new-%d", i);
    send_msg(&f, "ResumeT", NULL, body);
  }
  c = collector_new();
  pc = start_consumer(f.b, "ResumeGroup", "ResumeT", "*", c);
  expect_exactly(c, M, "after restart");
  assert_int_equal(collector_count(c, body_prefix, "new-"), M);
  expect_unique_bodies(c);
  rmq_push_consumer_destroy(pc);
  collector_free(c);
  fx_close(&f);
}

static void test_consume_from_where(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-where");
  ok(rmq_topic_create(f.b, "WhereT", 1));
  for (int i = 0; i < 3; i++) {
    char body[32];
    snprintf(body, sizeof body, "early-%d", i);
    send_msg(&f, "WhereT", NULL, body);
  }
  sleep_ms(20);
  int64_t t = wall_ms();
  for (int i = 0; i < 3; i++) {
    char body[32];
    snprintf(body, sizeof body, "late-%d", i);
    send_msg(&f, "WhereT", NULL, body);
  }

  /* A new group with the default LAST_OFFSET on a queue that still starts
  ** at 0 begins at 0, as RocketMQ's broker answers for it. */
  collector *last = collector_new(), *first = collector_new(), *ts = collector_new(), *future = collector_new();
  rmq_push_consumer_options o;
  consumer_options(&o);
  assert_int_equal(o.consume_from_where, RMQ_CONSUME_FROM_LAST_OFFSET);
  rmq_push_consumer *c1 = start_consumer_opts(f.b, "LastGroup", &o, "WhereT", "*", last);
  o.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  rmq_push_consumer *c2 = start_consumer_opts(f.b, "FirstGroup", &o, "WhereT", "*", first);
  o.consume_from_where = RMQ_CONSUME_FROM_TIMESTAMP;
  o.consume_timestamp = t;
  rmq_push_consumer *c3 = start_consumer_opts(f.b, "TimeGroup", &o, "WhereT", "*", ts);
  o.consume_timestamp = t + 3600 * 1000;
  rmq_push_consumer *c4 = start_consumer_opts(f.b, "FutureGroup", &o, "WhereT", "*", future);
  expect_exactly(last, 6, "LAST_OFFSET, queue from 0");
  expect_exactly(first, 6, "FIRST_OFFSET");
  expect_exactly(ts, 3, "TIMESTAMP");
  assert_int_equal(collector_count(ts, body_prefix, "late-"), 3);
  assert_int_equal(atomic_load(&future->count), 0);
  /* Starting at the end still gets what comes next. */
  send_msg(&f, "WhereT", NULL, "next");
  expect_exactly(future, 1, "TIMESTAMP in the future");
  assert_int_equal(collector_count(future, body_is, "next"), 1);
  rmq_push_consumer_destroy(c1);
  rmq_push_consumer_destroy(c2);
  rmq_push_consumer_destroy(c3);
  rmq_push_consumer_destroy(c4);
  collector_free(last);
  collector_free(first);
  collector_free(ts);
  collector_free(future);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Retries                                                                    */
/* ------------------------------------------------------------------------- */

static int body_times(const rec *r, const void *arg)
{
  const char *const *a = arg;
  return !strcmp(r->body, a[0]) && r->reconsume_times == atoi(a[1]);
}

static void test_reconsume_later(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-retry");
  ok(rmq_topic_create(f.b, "RetryT", 2));
  collector *c = collector_new();
  c->fail_prefix = "fail";
  c->fail_below = 2; /* fails at reconsume_times 0 and 1, succeeds at 2 */
  rmq_push_consumer *pc = start_consumer(f.b, "RetryGroup", "RetryT", "*", c);
  rmq_send_result fr = send_msg(&f, "RetryT", "t", "fail-me");
  send_msg(&f, "RetryT", "t", "fine-1");
  send_msg(&f, "RetryT", "t", "fine-2");
  expect_exactly(c, 5, "two retries and two others");
  assert_int_equal(collector_count(c, body_is, "fail-me"), 3);
  assert_int_equal(collector_count(c, body_is, "fine-1"), 1);
  assert_int_equal(collector_count(c, body_is, "fine-2"), 1);
  for (int k = 0; k < 3; k++) {
    char n[16];
    snprintf(n, sizeof n, "%d", k);
    const char *arg[2] = {"fail-me", n};
    if (collector_count(c, body_times, arg) != 1) fail_msg("no delivery with reconsume_times %d", k);
  }
  /* Every redelivery is the same message (msgId), the first from its queue,
  ** the retries from %RETRY%RetryGroup queue 0. */
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->recs[i].body, "fail-me")) {
      assert_string_equal(c->recs[i].msg_id, fr.msg_id);
      if (c->recs[i].reconsume_times == 0) {
        assert_int_equal(c->recs[i].queue_id, fr.message_queue.queue_id);
        assert_int_equal(c->recs[i].queue_offset, fr.queue_offset);
      } else {
        assert_int_equal(c->recs[i].queue_id, 0);
        assert_int_equal(c->recs[i].queue_offset, c->recs[i].reconsume_times - 1);
      }
    }
  pthread_mutex_unlock(&c->mu);
  rmq_push_consumer_destroy(pc);
  collector_free(c);

  /* maxReconsumeTimes 2, always failing: delivered 3 times, then it goes to
  ** %DLQ%GiveUpGroup (and the group does not see it again). */
  c = collector_new();
  c->fail_prefix = "fail";
  c->fail_below = 1000;
  rmq_push_consumer_options o;
  consumer_options(&o);
  o.max_reconsume_times = 2;
  o.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  pc = start_consumer_opts(f.b, "GiveUpGroup", &o, "RetryT", "*", c);
  expect_exactly(c, 5, "max_reconsume_times 2");
  assert_int_equal(collector_count(c, body_is, "fail-me"), 3);
  rmq_push_consumer_destroy(pc);
  rmq_pull_consumer *dl;
  ok(rmq_pull_consumer_create(f.b, "DlqReader", &dl));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "%%DLQ%%GiveUpGroup");
  rmq_pull_result pr;
  ok(rmq_pull_consumer_pull(dl, &mq, "*", 0, 32, &pr));
  assert_int_equal(pr.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(pr.n, 1);
  assert_string_equal(pr.msgs[0].msg_id, fr.msg_id);
  assert_int_equal(pr.msgs[0].reconsume_times, 3);
  assert_memory_equal(pr.msgs[0].body, "fail-me", 7);
  const char *v;
  size_t vl;
  ok(rmq_message_ext_property(&pr.msgs[0], "RETRY_TOPIC", &v, &vl));
  assert_int_equal(vl, 6);
  assert_memory_equal(v, "RetryT", 6);
  ok(rmq_message_ext_property(&pr.msgs[0], "ORIGIN_MESSAGE_ID", &v, &vl));
  assert_int_equal(vl, 32);
  assert_memory_equal(v, fr.offset_msg_id, 32);
  rmq_pull_consumer_destroy(dl);
  collector_free(c);
  c = collector_new();
  pc = start_consumer_opts(f.b, "GiveUpGroup", &o, "RetryT", "*", c);
  send_msg(&f, "RetryT", "t", "after");
  expect_exactly(c, 1, "after giving up");
  assert_int_equal(collector_count(c, body_is, "after"), 1);
  rmq_push_consumer_destroy(pc);
  collector_free(c);
  fx_close(&f);
}

/* SUCCESS with ackIndex acks messages 0..ackIndex; the rest come back. */
static void test_ack_index(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-ack");
  ok(rmq_topic_create(f.b, "AckT", 1));
  for (int i = 0; i < 4; i++) {
    char body[16];
    snprintf(body, sizeof body, "m%d", i);
    send_msg(&f, "AckT", NULL, body);
  }
  collector *c = collector_new();
  c->ack_index_first_call = 1;
  rmq_push_consumer_options o;
  consumer_options(&o);
  o.consume_message_batch_max_size = 4;
  rmq_push_consumer *pc = start_consumer_opts(f.b, "AckGroup", &o, "AckT", "*", c);
  expect_exactly(c, 6, "ack_index 1 of a batch of 4");
  pthread_mutex_lock(&c->mu);
  size_t first_batch = c->recs[0].batch;
  pthread_mutex_unlock(&c->mu);
  assert_int_equal(first_batch, 4);
  assert_int_equal(collector_count(c, body_is, "m0"), 1);
  assert_int_equal(collector_count(c, body_is, "m1"), 1);
  assert_int_equal(collector_count(c, body_is, "m2"), 2);
  assert_int_equal(collector_count(c, body_is, "m3"), 2);
  const char *a2[2] = {"m2", "1"}, *a3[2] = {"m3", "1"};
  assert_int_equal(collector_count(c, body_times, a2), 1);
  assert_int_equal(collector_count(c, body_times, a3), 1);
  rmq_push_consumer_destroy(pc);
  collector_free(c);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* The delivered message                                                      */
/* ------------------------------------------------------------------------- */

typedef struct ext_ctx {
  atomic_int calls;
  rmq_message_ext *copy;
  char text[4096];
  int text_len;
  int prop_rc;
  char uniq[RMQ_MSG_ID_SIZE];
  char color[16];
  int64_t cb_time;
} ext_ctx;

static int ext_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  ext_ctx *x = ctx;
  if (n != 1 || atomic_load(&x->calls) > 0) { atomic_fetch_add(&x->calls, 1); return RMQ_CONSUME_SUCCESS; }
  const rmq_message_ext *m = msgs[0];
  x->cb_time = wall_ms();
  if (rmq_message_ext_copy(m, &x->copy) != RMQ_OK) x->copy = NULL;
  x->text_len = rmq_message_ext_format(m, x->text, sizeof x->text);
  const char *v;
  size_t vl;
  x->prop_rc = rmq_message_ext_property(m, "UNIQ_KEY", &v, &vl);
  if (!x->prop_rc) snprintf(x->uniq, sizeof x->uniq, "%.*s", (int)vl, v);
  if (!rmq_message_ext_property(m, "color", &v, &vl)) snprintf(x->color, sizeof x->color, "%.*s", (int)vl, v);
  atomic_fetch_add(&x->calls, 1);
  return RMQ_CONSUME_SUCCESS;
}

static void test_message_ext_fields(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-ext");
  ok(rmq_topic_create(f.b, "ExtT", 2));
  static ext_ctx x;
  memset(&x, 0, sizeof x);
  rmq_push_consumer_options o;
  consumer_options(&o);
  rmq_push_consumer *pc;
  ok(rmq_push_consumer_create(f.b, "ExtGroup", &o, &pc));
  ok(rmq_push_consumer_subscribe(pc, "ExtT", "add"));
  ok(rmq_push_consumer_register_listener_concurrently(pc, ext_listener, &x));
  ok(rmq_push_consumer_start(pc));

  const uint8_t body[] = {104, 105, 0xFF, 0x80, 0, 127};
  rmq_msg *m;
  ok(rmq_msg_create(&m, "ExtT", "add", body, sizeof body));
  ok(rmq_msg_set_keys(m, "k1 k2"));
  ok(rmq_msg_put_user_property(m, "color", "red"));
  ok(rmq_msg_set_flag(m, 5));
  int64_t before = wall_ms();
  rmq_send_result r;
  ok(rmq_producer_send(f.p, m, &r));
  int64_t after = wall_ms();
  rmq_msg_free(m);

  if (!tu_wait_atleast(&x.calls, 1, WAIT_MS)) fail_msg("message not delivered");
  sleep_ms(GRACE_MS);
  assert_int_equal(atomic_load(&x.calls), 1);
  assert_non_null(x.copy);
  assert_int_equal(x.prop_rc, RMQ_OK);
  assert_string_equal(x.uniq, r.msg_id);
  assert_string_equal(x.color, "red");

  /* The copy outlives the callback, the consumer and the broker's mapping. */
  rmq_push_consumer_destroy(pc);
  rmq_producer_destroy(f.p);
  f.p = NULL;
  ok(rmq_broker_close(f.b));
  f.b = NULL;

  const rmq_message_ext *e = x.copy;
  assert_string_equal(e->topic, "ExtT");
  assert_string_equal(e->broker_name, "rmq-broker");
  assert_int_equal(e->queue_id, r.message_queue.queue_id);
  assert_int_equal(e->queue_offset, r.queue_offset);
  assert_int_equal(e->queue_offset, 0);
  assert_int_equal(e->store_size, r.store_size);
  assert_int_equal(e->commit_log_offset, r.commit_log_offset);
  assert_int_equal(e->sys_flag, 0);
  assert_int_equal(e->flag, 5);
  assert_int_equal(e->reconsume_times, 0);
  assert_int_equal(e->prepared_transaction_offset, 0);
  assert_int_equal(e->body_len, (int32_t)sizeof body);
  assert_memory_equal(e->body, body, sizeof body);
  assert_int_equal(e->body_crc, (int32_t)(rmqi_crc32(body, sizeof body) & 0x7FFFFFFF));
  assert_int_equal(e->tags_len, 3);
  assert_memory_equal(e->tags, "add", 3);
  assert_int_equal(e->keys_len, 5);
  assert_memory_equal(e->keys, "k1 k2", 5);
  assert_string_equal(e->msg_id, r.msg_id);
  assert_string_equal(e->offset_msg_id, r.offset_msg_id);
  assert_in_range(e->born_timestamp, before, after);
  assert_int_equal(e->store_timestamp, r.store_timestamp);
  assert_true(e->store_timestamp >= e->born_timestamp);
  const uint8_t lo[4] = {127, 0, 0, 1};
  assert_int_equal(e->born_host_len, 4);
  assert_memory_equal(e->born_host, lo, 4);
  assert_int_equal(e->store_host_len, 4);
  assert_memory_equal(e->store_host, lo, 4);
  assert_int_equal(e->store_port, 10911);
  assert_int_equal(e->min_offset, 0);
  assert_int_equal(e->max_offset, 1);
  assert_in_range(e->consume_start_time, e->store_timestamp, x.cb_time);
  const char *v;
  size_t vl;
  ok(rmq_message_ext_property(e, "KEYS", &v, &vl));
  assert_int_equal(vl, 5);
  assert_memory_equal(v, "k1 k2", 5);
  ok(rmq_message_ext_property(e, "UNIQ_KEY", &v, &vl));
  assert_memory_equal(v, r.msg_id, 32);

  /* MessageExt.toString(): msgId shows the offsetMsgId; body as signed bytes. */
  assert_int_equal(x.text_len, (int)strlen(x.text));
  char want[1024];
  snprintf(want, sizeof want,
           "MessageExt [brokerName=rmq-broker, queueId=%d, storeSize=%d, queueOffset=0, sysFlag=0, bornTimestamp=%" PRId64
           ", bornHost=/127.0.0.1:%d, storeTimestamp=%" PRId64 ", storeHost=/127.0.0.1:10911, msgId=%s, commitLogOffset=%" PRId64
           ", bodyCRC=%d, reconsumeTimes=0, preparedTransactionOffset=0, toString()=Message{topic='ExtT', flag=5, properties={",
           e->queue_id, e->store_size, e->born_timestamp, e->born_port, e->store_timestamp, r.offset_msg_id,
           r.commit_log_offset, e->body_crc);
  if (strncmp(x.text, want, strlen(want))) fail_msg("format:\n  got  %s\n  want %s...", x.text, want);
  assert_non_null(strstr(x.text, "MessageExt [brokerName="));
  assert_non_null(strstr(x.text, "MIN_OFFSET=0"));
  assert_non_null(strstr(x.text, "MAX_OFFSET=1"));
  assert_non_null(strstr(x.text, "CONSUME_START_TIME="));
  assert_non_null(strstr(x.text, ", TAGS=add"));
  assert_non_null(strstr(x.text, ", KEYS=k1 k2"));
  assert_non_null(strstr(x.text, ", color=red"));
  assert_non_null(strstr(x.text, ", WAIT=true"));
  char uk[96];
  snprintf(uk, sizeof uk, ", UNIQ_KEY=%s", r.msg_id);
  assert_non_null(strstr(x.text, uk));
  const char *tail = "}, body=[104, 105, -1, -128, 0, 127], transactionId='null'}]";
  assert_true(strlen(x.text) > strlen(tail));
  assert_string_equal(x.text + strlen(x.text) - strlen(tail), tail);

  /* The format of the copy is the same text. */
  char again[4096];
  assert_int_equal(rmq_message_ext_format(e, again, sizeof again), x.text_len);
  assert_string_equal(again, x.text);
  rmq_message_ext_free(x.copy);
  tu_store_remove(f.path);
}

/* ------------------------------------------------------------------------- */
/* Long polling                                                               */
/* ------------------------------------------------------------------------- */

static void test_push_long_polling(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-longpoll");
  ok(rmq_topic_create(f.b, "PollT", 1));
  collector *c = collector_new();
  rmq_push_consumer *pc = start_consumer(f.b, "PollGroup", "PollT", "*", c);
  sleep_ms(1500); /* idle */
  assert_int_equal(atomic_load(&c->count), 0);
  send_msg(&f, "PollT", NULL, "wake");
  if (!tu_wait_atleast(&c->count, 1, 2000)) fail_msg("an idle push consumer did not get a new message within 2 s");
  assert_int_equal(collector_count(c, body_is, "wake"), 1);
  rmq_push_consumer_destroy(pc);
  collector_free(c);
  fx_close(&f);
}

typedef struct late_send {
  fx *f;
  int delay_ms;
} late_send;

static void *late_send_main(void *arg)
{
  late_send *l = arg;
  sleep_ms(l->delay_ms);
  rmq_producer *p;
  if (rmq_producer_create(l->f->b, "LateGroup", NULL, &p) != RMQ_OK) return NULL;
  rmq_msg *m;
  if (rmq_msg_create(&m, "BlockT", NULL, "late", 4) == RMQ_OK) {
    rmq_producer_send_to_queue(p, m, 0, NULL);
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
  return NULL;
}

static void test_pull_block_if_not_found(void **state)
{
  (void)state;
  fx f;
  rmq_message_queue mq;
  rmq_pull_consumer *c = fx_open_pull(&f, "cons-block", "BlockT", 2, "BlockGroup", &mq);
  rmq_pull_result r;

  /* Nothing comes: NO_NEW_MSG after the wait. */
  ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 0, 32, 100, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_NEW_MSG);
  assert_int_equal(r.next_begin_offset, 0);

  /* Another thread sends during the wait: FOUND. */
  late_send l = {&f, 200};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, late_send_main, &l), 0);
  ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 0, 32, WAIT_MS, &r));
  pthread_join(th, NULL);
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 1);
  assert_memory_equal(r.msgs[0].body, "late", 4);
  assert_int_equal(r.next_begin_offset, 1);

  /* A message on another queue does not end the wait with a wrong answer. */
  mq.queue_id = 1;
  ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 0, 32, 50, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_NEW_MSG);

  /* Messages already there: no waiting needed, and other statuses return as is. */
  mq.queue_id = 0;
  ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 0, 32, WAIT_MS, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 5, 32, WAIT_MS, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_OFFSET_ILLEGAL);
  ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "nomatch", 0, 32, WAIT_MS, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_MATCHED_MSG);
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Pull consumer                                                              */
/* ------------------------------------------------------------------------- */

/* A view's tags, keys and msg id come from one pass over the raw
** properties, 64 bytes of separators at a time: they must agree with a
** lookup by name whatever the properties' length and wherever the
** separators fall. */
static void test_view_fields_any_layout(void **state)
{
  (void)state;
  fx f;
  rmq_message_queue mq;
  rmq_pull_consumer *c = fx_open_pull(&f, "cons-layout", "LayT", 1, "LayGroup", &mq);
  enum { N = 200 };
  for (int i = 0; i < N; i++) {
    rmq_msg *m;
    char v[300], tag[64], keys[64];
    ok(rmq_msg_create(&m, "LayT", NULL, "b", 1));
    /* A user property of length i % 150 first, so the system ones shift. */
    memset(v, 'v', sizeof v);
    v[i % 150] = 0;
    if (i % 150) ok(rmq_msg_put_user_property(m, "pad", v));
    snprintf(tag, sizeof tag, "t%.*s", i % 40, "0123456789012345678901234567890123456789");
    if (i % 3) ok(rmq_msg_set_tags(m, tag));
    snprintf(keys, sizeof keys, "k%d", i);
    if (i % 5) ok(rmq_msg_set_keys(m, keys));
    ok(rmq_producer_send(f.p, m, NULL));
    rmq_msg_free(m);
  }
  int64_t off = 0;
  int seen = 0;
  while (seen < N) {
    rmq_pull_result r;
    ok(rmq_pull_consumer_pull(c, &mq, "*", off, 32, &r));
    assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
    for (size_t k = 0; k < r.n; k++) {
      const rmq_message_ext *e = &r.msgs[k];
      const char *val;
      size_t len;
      if (rmq_message_ext_property(e, "TAGS", &val, &len) == RMQ_OK) {
        assert_non_null(e->tags);
        assert_int_equal((size_t)e->tags_len, len);
        assert_memory_equal(e->tags, val, len);
      } else {
        assert_null(e->tags);
      }
      if (rmq_message_ext_property(e, "KEYS", &val, &len) == RMQ_OK) {
        assert_int_equal((size_t)e->keys_len, len);
        assert_memory_equal(e->keys, val, len);
      } else {
        assert_null(e->keys);
      }
      ok(rmq_message_ext_property(e, "UNIQ_KEY", &val, &len));
      assert_int_equal(strlen(e->msg_id), len);
      assert_memory_equal(e->msg_id, val, len);
      seen++;
    }
    off = r.next_begin_offset;
  }
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

static void test_pull_statuses(void **state)
{
  (void)state;
  fx f;
  rmq_message_queue mq;
  rmq_pull_consumer *c = fx_open_pull(&f, "cons-pull", "PullT", 2, "PullGroup", &mq);
  rmq_msg *m;
  ok(rmq_msg_create(&m, "PullT", NULL, NULL, 0));
  for (int i = 0; i < 10; i++) {
    char body[16];
    int n = snprintf(body, sizeof body, "p%d", i);
    ok(rmq_msg_set_body(m, body, (size_t)n));
    ok(rmq_msg_set_tags(m, i % 2 ? "b" : "a"));
    ok(rmq_producer_send_to_queue(f.p, m, 0, NULL));
  }
  rmq_pull_result r;

  /* An empty queue: offset 0 is its end. */
  mq.queue_id = 1;
  ok(rmq_pull_consumer_pull(c, &mq, "*", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_NEW_MSG);
  assert_int_equal(r.next_begin_offset, 0);
  assert_int_equal(r.n, 0);
  mq.queue_id = 0;

  /* FOUND. */
  ok(rmq_pull_consumer_pull(c, &mq, "*", 0, 4, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 4);
  assert_int_equal(r.next_begin_offset, 4);
  assert_int_equal(r.min_offset, 0);
  assert_int_equal(r.max_offset, 10);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(r.msgs[i].queue_offset, i);
    assert_int_equal(r.msgs[i].queue_id, 0);
    assert_int_equal(r.msgs[i].min_offset, 0);
    assert_int_equal(r.msgs[i].max_offset, 10);
    char body[16];
    snprintf(body, sizeof body, "p%d", i);
    assert_memory_equal(r.msgs[i].body, body, strlen(body));
  }
  ok(rmq_pull_consumer_pull(c, &mq, "a", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 5);
  for (size_t i = 0; i < r.n; i++) {
    assert_int_equal(r.msgs[i].queue_offset, 2 * (int64_t)i);
    assert_memory_equal(r.msgs[i].tags, "a", 1);
  }
  assert_int_equal(r.next_begin_offset, 10);
  ok(rmq_pull_consumer_pull(c, &mq, "a || b", 7, 32, &r));
  assert_int_equal(r.n, 3);
  assert_int_equal(r.msgs[0].queue_offset, 7);

  /* NO_MATCHED_MSG: the units were read, none matched; continue after them. */
  ok(rmq_pull_consumer_pull(c, &mq, "zzz", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_MATCHED_MSG);
  assert_int_equal(r.n, 0);
  assert_int_equal(r.next_begin_offset, 10);
  ok(rmq_pull_consumer_pull(c, &mq, "b", 9, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  ok(rmq_pull_consumer_pull(c, &mq, "a", 9, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_MATCHED_MSG);
  assert_int_equal(r.next_begin_offset, 10);

  /* NO_NEW_MSG at the end. */
  ok(rmq_pull_consumer_pull(c, &mq, "*", 10, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_NEW_MSG);
  assert_int_equal(r.next_begin_offset, 10);
  assert_int_equal(r.max_offset, 10);

  /* OFFSET_ILLEGAL past the end and before the start, with the nearest
  ** valid offset. */
  ok(rmq_pull_consumer_pull(c, &mq, "*", 11, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_OFFSET_ILLEGAL);
  assert_int_equal(r.next_begin_offset, 10);
  ok(rmq_pull_consumer_pull(c, &mq, "*", 1000000, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_OFFSET_ILLEGAL);
  assert_int_equal(r.next_begin_offset, 10);
  ok(rmq_pull_consumer_pull(c, &mq, "*", -1, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_OFFSET_ILLEGAL);
  assert_int_equal(r.next_begin_offset, 0);
  assert_int_equal(r.n, 0);

  /* Errors. */
  assert_int_equal(rmq_pull_consumer_pull(c, &mq, "a\x01", 0, 32, &r), RMQ_EEXPR);
  mq.queue_id = 2;
  assert_int_equal(rmq_pull_consumer_pull(c, &mq, "*", 0, 32, &r), RMQ_EQUEUE);
  mq.queue_id = 0;
  snprintf(mq.topic, sizeof mq.topic, "Missing");
  assert_int_equal(rmq_pull_consumer_pull(c, &mq, "*", 0, 32, &r), RMQ_ENOTOPIC);
  rmq_msg_free(m);
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

/* A long run of non-matching units: the scan stops after a bounded number
** and next_begin_offset moves past exactly the units it read. */
static void test_pull_no_matched_scan_advances(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-scan");
  ok(rmq_topic_create(f.b, "ScanT", 1));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "ScanT", "other", "x", 1));
  enum { N = 2000 };
  for (int i = 0; i < N; i++) ok(rmq_producer_send_oneway(f.p, m));
  ok(rmq_msg_set_tags(m, "wanted"));
  ok(rmq_producer_send(f.p, m, NULL));
  rmq_msg_free(m);
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f.b, "ScanGroup", &c));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "ScanT");
  rmq_pull_result r;
  int64_t off = 0;
  int pulls = 0, found = 0;
  while (pulls < 100) {
    ok(rmq_pull_consumer_pull(c, &mq, "wanted", off, 32, &r));
    pulls++;
    if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
    assert_true(r.next_begin_offset > off); /* always progress */
    if (r.pull_status == RMQ_PULL_NO_MATCHED_MSG) {
      assert_int_equal(r.n, 0);
      assert_true(r.next_begin_offset <= N);
    } else {
      assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
      assert_int_equal(r.n, 1);
      assert_int_equal(r.msgs[0].queue_offset, N);
      found++;
    }
    off = r.next_begin_offset;
  }
  assert_int_equal(found, 1);
  assert_int_equal(off, N + 1);
  assert_true(pulls > 2); /* the scan was bounded, not the whole queue at once */
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

static void test_consume_offsets(void **state)
{
  (void)state;
  fx f;
  rmq_message_queue mq;
  rmq_pull_consumer *c = fx_open_pull(&f, "cons-offsets", "OffT", 2, "OffGroup", &mq);
  int64_t off = -5;
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off), RMQ_ENOTFOUND);
  assert_int_equal(off, -5);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 7));
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 7);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 3)); /* may move back */
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 3);
  mq.queue_id = 1;
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off), RMQ_ENOTFOUND);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 0));
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 0);
  mq.queue_id = 2;
  assert_int_equal(rmq_pull_consumer_update_consume_offset(c, &mq, 1), RMQ_EQUEUE);
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off), RMQ_EQUEUE);
  mq.queue_id = 0;
  snprintf(mq.topic, sizeof mq.topic, "NoTopic");
  assert_int_equal(rmq_pull_consumer_update_consume_offset(c, &mq, 1), RMQ_ENOTOPIC);
  snprintf(mq.topic, sizeof mq.topic, "OffT");

  /* Another group has its own offsets. */
  rmq_pull_consumer *other;
  ok(rmq_pull_consumer_create(f.b, "OtherGroup", &other));
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(other, &mq, &off), RMQ_ENOTFOUND);
  rmq_pull_consumer_destroy(other);
  rmq_pull_consumer_destroy(c);

  /* Persisted across a reopen, in RocketMQ's consumerOffset.json. */
  rmq_producer_destroy(f.p);
  ok(rmq_broker_close(f.b));
  char jp[1200];
  snprintf(jp, sizeof jp, "%s/config/consumerOffset.json", f.path);
  FILE *fp = fopen(jp, "r");
  assert_non_null(fp);
  char text[4096];
  size_t tl = fread(text, 1, sizeof text - 1, fp);
  fclose(fp);
  text[tl] = 0;
  assert_non_null(strstr(text, "\"offsetTable\""));
  assert_non_null(strstr(text, "\"OffT@OffGroup\""));
  assert_non_null(strstr(text, "0:3"));
  assert_non_null(strstr(text, "1:0"));

  ok(rmq_broker_open(f.path, &f.o, &f.b));
  ok(rmq_producer_create(f.b, "ProducerGroup", NULL, &f.p));
  ok(rmq_pull_consumer_create(f.b, "OffGroup", &c));
  mq.queue_id = 0;
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 3);
  mq.queue_id = 1;
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 0);
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

static void test_fetch_subscribe_message_queues(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "cons-mqs");
  ok(rmq_topic_create(f.b, "MqT", 5));
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f.b, "MqGroup", &c));
  rmq_message_queue mqs[8];
  memset(mqs, 0, sizeof mqs);
  size_t n = 0;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, "MqT", mqs, 8, &n));
  assert_int_equal(n, 5);
  for (int i = 0; i < 5; i++) {
    assert_string_equal(mqs[i].topic, "MqT");
    assert_string_equal(mqs[i].broker_name, "rmq-broker");
    assert_int_equal(mqs[i].queue_id, i);
  }
  assert_string_equal(mqs[5].topic, "");
  memset(mqs, 0, sizeof mqs);
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, "MqT", mqs, 2, &n));
  assert_int_equal(n, 5);
  assert_int_equal(mqs[1].queue_id, 1);
  assert_string_equal(mqs[2].topic, "");
  assert_int_equal(rmq_pull_consumer_fetch_subscribe_message_queues(c, "Unknown", mqs, 8, &n), RMQ_ENOTOPIC);
  assert_int_equal(rmq_pull_consumer_fetch_subscribe_message_queues(c, "a/b", mqs, 8, &n), RMQ_ETOPIC);
  /* A grown topic lists its new queues. */
  ok(rmq_topic_create(f.b, "MqT", 7));
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, "MqT", mqs, 8, &n));
  assert_int_equal(n, 7);
  assert_int_equal(mqs[6].queue_id, 6);
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

/* ---- the consume thread count bounds the listeners running at once ----- */

typedef struct overlap {
  atomic_int inside, most, seen;
} overlap;

static int overlap_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n,
                            rmq_consume_concurrently_context *cc)
{
  (void)msgs; (void)cc;
  overlap *o = ctx;
  int now = atomic_fetch_add(&o->inside, 1) + 1;
  for (int m = atomic_load(&o->most); now > m && !atomic_compare_exchange_weak(&o->most, &m, now);) {}
  usleep(500); /* long enough for another thread to come in if it may */
  atomic_fetch_sub(&o->inside, 1);
  atomic_fetch_add(&o->seen, (int)n);
  return RMQ_CONSUME_SUCCESS;
}

/* consume_thread_max listeners at most, though one thread more exists to
** pull (leader/follower): 1 means one message at a time. */
static void test_consume_threads_bound_listeners(void **state)
{
  (void)state;
  for (int threads = 1; threads <= 3; threads += 2) {
    char path[512];
    tu_store_path(path, sizeof path, "cons-bound");
    rmq_broker_options bo;
    tu_small_opts(&bo, NULL);
    bo.service_thread = 1;
    rmq_broker *b;
    ok(rmq_broker_open(path, &bo, &b));
    ok(rmq_topic_create(b, "BoundT", 4));
    static overlap o;
    memset(&o, 0, sizeof o);
    rmq_push_consumer_options co;
    rmq_push_consumer_options_init(&co);
    co.consume_thread_min = co.consume_thread_max = threads;
    co.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
    rmq_push_consumer *c;
    ok(rmq_push_consumer_create(b, "BoundG", &co, &c));
    ok(rmq_push_consumer_subscribe(c, "BoundT", "*"));
    ok(rmq_push_consumer_register_listener_concurrently(c, overlap_listener, &o));
    ok(rmq_push_consumer_start(c));
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "BoundT", NULL, "x", 1));
    for (int i = 0; i < 200; i++) ok(rmq_producer_send(p, m, NULL));
    assert_true(tu_wait_atleast(&o.seen, 200, 20000));
    assert_true(atomic_load(&o.most) <= threads);
    if (threads == 3) assert_true(atomic_load(&o.most) >= 2); /* and they do run side by side */
    rmq_msg_free(m);
    rmq_producer_destroy(p);
    rmq_push_consumer_destroy(c);
    ok(rmq_broker_close(b));
    tu_store_remove(path);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_tag_subscription),
    cmocka_unit_test(test_resubscribe_replaces),
    cmocka_unit_test(test_clustering_group),
    cmocka_unit_test(test_broadcasting),
    cmocka_unit_test(test_restart_resumes),
    cmocka_unit_test(test_consume_from_where),
    cmocka_unit_test(test_reconsume_later),
    cmocka_unit_test(test_ack_index),
    cmocka_unit_test(test_message_ext_fields),
    cmocka_unit_test(test_push_long_polling),
    cmocka_unit_test(test_pull_block_if_not_found),
    cmocka_unit_test(test_pull_statuses),
    cmocka_unit_test(test_view_fields_any_layout),
    cmocka_unit_test(test_pull_no_matched_scan_advances),
    cmocka_unit_test(test_consume_offsets),
    cmocka_unit_test(test_fetch_subscribe_message_queues),
    cmocka_unit_test(test_consume_threads_bound_listeners),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
