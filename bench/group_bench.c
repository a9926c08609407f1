/*
** group_bench.c -- consumer groups (issue 5): push-consume throughput of a
** clustering group with 1, 4 and 8 consumers, an orderly consumer over 16
** queues, and how long a rebalance takes when a fifth consumer joins a group
** of four while a producer keeps sending. Prints one line per case; figures
** only, nothing asserted.
**
**   environment: BENCH_GROUP_MSGS (default 2000000), BENCH_DIR (default $TMPDIR or /tmp)
*/
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rmq.h"
#include "bench_util.h"

#define TOPIC "GroupBenchTopic"
#define QUEUES 16

static char g_root[4096];
static uint64_t g_msgs = 2000000;

typedef struct counter {
  atomic_ullong n;
  atomic_ullong sum;
} counter;

static int on_conc(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  counter *c = ctx;
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s += fold(msgs[i]->body);
  atomic_fetch_add(&c->sum, s);
  atomic_fetch_add(&c->n, n);
  return RMQ_CONSUME_SUCCESS;
}

static int on_orderly(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_orderly_context *oc)
{
  (void)oc;
  counter *c = ctx;
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s += fold(msgs[i]->body);
  atomic_fetch_add(&c->sum, s);
  atomic_fetch_add(&c->n, n);
  return RMQ_CONSUME_SUCCESS;
}

static rmq_push_consumer *consumer(rmq_broker *b, const char *group, int i, int orderly, counter *ctr)
{
  rmq_push_consumer_options o;
  rmq_push_consumer_options_init(&o);
  o.consume_thread_min = o.consume_thread_max = 4;
  o.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  o.consume_message_batch_max_size = 16;
  char inst[32];
  snprintf(inst, sizeof inst, "%s-%02d", group, i);
  o.instance_name = inst;
  rmq_push_consumer *c;
  int rc = rmq_push_consumer_create(b, group, &o, &c);
  if (!rc) rc = rmq_push_consumer_subscribe(c, TOPIC, "*");
  if (!rc) rc = orderly ? rmq_push_consumer_register_listener_orderly(c, on_orderly, ctr)
                        : rmq_push_consumer_register_listener_concurrently(c, on_conc, ctr);
  if (rc) fail_rmq("consumer setup", rc);
  return c;
}

/* Consumes the whole topic with k consumers of a fresh group. */
static void consume_case(rmq_broker *b, int k, int orderly, uint64_t want_sum)
{
  char group[64];
  snprintf(group, sizeof group, "%s%d", orderly ? "Orderly" : "Group", k);
  counter ctr = {0, 0};
  rmq_push_consumer *cs[8];
  for (int i = 0; i < k; i++) cs[i] = consumer(b, group, i, orderly, &ctr);
  /* The group forms at the topic's end (nothing to consume), then its
  ** offsets go back to the start: all k consume from the first message on,
  ** with no rebalance (and its duplicates) mid-run. */
  int rc = rmq_broker_reset_offset_by_time(b, group, TOPIC, INT64_MAX);
  if (rc) fail_rmq("rmq_broker_reset_offset_by_time", rc);
  for (int i = 0; i < k; i++)
    if ((rc = rmq_push_consumer_start(cs[i]))) fail_rmq("rmq_push_consumer_start", rc);
  uint64_t t0 = now_ns();
  if ((rc = rmq_broker_reset_offset_by_time(b, group, TOPIC, 0))) fail_rmq("rmq_broker_reset_offset_by_time", rc);
  while (atomic_load(&ctr.n) < g_msgs && now_ns() - t0 < 120ull * 1000000000ull) usleep(1000);
  double secs = (double)(now_ns() - t0) * 1e-9;
  uint64_t got = atomic_load(&ctr.n);
  for (int i = 0; i < k; i++) rmq_push_consumer_destroy(cs[i]);
  if (got != g_msgs || atomic_load(&ctr.sum) != want_sum) {
    fprintf(stderr, "%s: %" PRIu64 " of %" PRIu64 " consumed\n", group, got, g_msgs);
    fail(group, "count or checksum differs from what was produced");
  }
  printf("case=rmq-push-%s-c%d op=consume consumers=%d threads_each=4 queues=%d msgs=%" PRIu64
         " secs=%.3f msgs_per_s=%.0f\n", orderly ? "orderly" : "group", k, k, QUEUES, got, secs, (double)got / secs);
  fflush(stdout);
}

typedef struct sender {
  rmq_broker *b;
  atomic_int stop;
  uint64_t sent;
} sender;

static void *send_main(void *arg)
{
  sender *s = arg;
  rmq_producer *p;
  rmq_msg *m;
  if (rmq_producer_create(s->b, "GroupBenchLoad", NULL, &p) || rmq_msg_create(&m, TOPIC, "L", "load", 4))
    fail("load producer", rmq_errmsg());
  while (!atomic_load(&s->stop)) {
    if (rmq_producer_send(p, m, NULL)) fail("load send", rmq_errmsg());
    s->sent++;
    if (s->sent % 64 == 0) usleep(100); /* steady load, not a flood */
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return NULL;
}

/* A fifth consumer joins a group of four under load, 15 times (a new one
** each time): rmq_push_consumer_start returns when every member has applied
** the new assignment (join_ms); the new member's first message follows the
** hand-over of its queues, whose old owners let go once their listener
** calls have returned (first_msg_ms); then it shuts down (leave_ms).
** Medians and maxima over the rounds. */
static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void rebalance_case(rmq_broker *b)
{
  enum { ROUNDS = 15 };
  counter ctr = {0, 0}, fifth = {0, 0};
  rmq_push_consumer *cs[4];
  for (int i = 0; i < 4; i++) cs[i] = consumer(b, "Rebalance", i, 0, &ctr);
  for (int i = 0; i < 4; i++)
    if (rmq_push_consumer_start(cs[i])) fail("start", rmq_errmsg());
  sender s = {b, 0, 0};
  pthread_t th;
  if (pthread_create(&th, NULL, send_main, &s)) fail("pthread_create", "load");
  usleep(300000);
  uint64_t join[ROUNDS], first[ROUNDS], leave[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    atomic_store(&fifth.n, 0);
    rmq_push_consumer *c5 = consumer(b, "Rebalance", 4 + r, 0, &fifth);
    uint64_t t0 = now_ns();
    if (rmq_push_consumer_start(c5)) fail("start", rmq_errmsg());
    join[r] = now_ns() - t0;
    while (!atomic_load(&fifth.n) && now_ns() - t0 < 5000000000ull) usleep(50);
    first[r] = now_ns() - t0;
    usleep(50000);
    t0 = now_ns();
    rmq_push_consumer_shutdown(c5);
    leave[r] = now_ns() - t0;
    rmq_push_consumer_destroy(c5);
    usleep(50000);
  }
  atomic_store(&s.stop, 1);
  pthread_join(th, NULL);
  for (int i = 0; i < 4; i++) rmq_push_consumer_destroy(cs[i]);
  qsort(join, ROUNDS, sizeof join[0], cmp_u64);
  qsort(first, ROUNDS, sizeof first[0], cmp_u64);
  qsort(leave, ROUNDS, sizeof leave[0], cmp_u64);
  printf("case=rmq-rebalance op=join consumers=4+1 queues=%d rounds=%d join_ms_p50=%.3f join_ms_max=%.3f"
         " first_msg_ms_p50=%.3f first_msg_ms_max=%.3f leave_ms_p50=%.3f leave_ms_max=%.3f load_msgs=%" PRIu64 "\n",
         QUEUES, ROUNDS, (double)join[ROUNDS / 2] * 1e-6, (double)join[ROUNDS - 1] * 1e-6,
         (double)first[ROUNDS / 2] * 1e-6, (double)first[ROUNDS - 1] * 1e-6, (double)leave[ROUNDS / 2] * 1e-6,
         (double)leave[ROUNDS - 1] * 1e-6, s.sent);
  fflush(stdout);
}

/* ---- churn: members join and leave while messages flow -------------------- */

#define CHURN_Q 16
#define CHURN_PER_Q 32768

typedef struct churn {
  atomic_uchar inside[CHURN_Q][CHURN_PER_Q];
  atomic_uchar acked[CHURN_Q][CHURN_PER_Q];
  atomic_ullong overlaps, again, distinct, total;
  atomic_ullong member_n[4];
} churn;

typedef struct churn_ctx {
  churn *ch;
  int member;
} churn_ctx;

static int on_churn(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  churn_ctx *x = ctx;
  churn *ch = x->ch;
  (void)cc;
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) {
    int q = msgs[i]->queue_id;
    int64_t o = msgs[i]->queue_offset;
    s += fold(msgs[i]->body);
    if (q < 0 || q >= CHURN_Q || o < 0 || o >= CHURN_PER_Q) continue;
    if (atomic_fetch_add(&ch->inside[q][o], 1) != 0) atomic_fetch_add(&ch->overlaps, 1);
    if (atomic_load(&ch->acked[q][o])) atomic_fetch_add(&ch->again, 1);
  }
  for (size_t i = 0; i < n; i++) {
    int q = msgs[i]->queue_id;
    int64_t o = msgs[i]->queue_offset;
    if (q < 0 || q >= CHURN_Q || o < 0 || o >= CHURN_PER_Q) continue;
    if (atomic_exchange(&ch->acked[q][o], 1) == 0) atomic_fetch_add(&ch->distinct, 1);
    atomic_fetch_sub(&ch->inside[q][o], 1);
  }
  atomic_fetch_add(&ch->total, n);
  atomic_fetch_add(&ch->member_n[x->member], n + (s == 42)); /* s: the body is read */
  return RMQ_CONSUME_SUCCESS;
}

static rmq_push_consumer *churn_member(rmq_broker *b, const char *topic, churn_ctx *x, int timeout_ms, int gen)
{
  rmq_push_consumer_options o;
  rmq_push_consumer_options_init(&o);
  o.consume_thread_min = o.consume_thread_max = 4;
  o.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  o.handover_timeout_ms = timeout_ms;
  char inst[32];
  snprintf(inst, sizeof inst, "churn-%d-%d", x->member, gen);
  o.instance_name = inst;
  rmq_push_consumer *c;
  int rc = rmq_push_consumer_create(b, "Churn", &o, &c);
  if (!rc) rc = rmq_push_consumer_subscribe(c, topic, "*");
  if (!rc) rc = rmq_push_consumer_register_listener_concurrently(c, on_churn, x);
  if (!rc) rc = rmq_push_consumer_start(c);
  if (rc) fail_rmq("churn member", rc);
  return c;
}

/* 200000 messages (16 queues) sent at a steady pace while one of four
** members leaves or joins every 20 ms; counts deliveries that began while
** the same message was in another listener call, and deliveries of a
** message already acknowledged. handover_timeout_ms 0 is RocketMQ's
** network-client behaviour (rmq before the exact hand-over). */
static void churn_case(rmq_broker *b, int timeout_ms)
{
  static churn ch;
  memset(&ch, 0, sizeof ch);
  char topic[64];
  snprintf(topic, sizeof topic, "ChurnTopic%d", timeout_ms);
  int rc = rmq_topic_create(b, topic, CHURN_Q);
  if (rc) fail_rmq("rmq_topic_create", rc);
  const uint64_t n = 200000;
  churn_ctx ctx[4];
  rmq_push_consumer *m[4];
  for (int i = 0; i < 4; i++) {
    ctx[i].ch = &ch;
    ctx[i].member = i;
    m[i] = churn_member(b, topic, &ctx[i], timeout_ms, 0);
  }
  rmq_producer *p;
  rmq_msg *msg;
  if ((rc = rmq_producer_create(b, "ChurnLoad", NULL, &p)) || (rc = rmq_msg_create(&msg, topic, "C", NULL, 0)))
    fail_rmq("producer", rc);
  unsigned char body[BODY];
  uint64_t t0 = now_ns(), next_churn = t0 + 20000000ull;
  int joins = 0, leaves = 0, gen = 1, turn = 0;
  double join_ms = 0, leave_ms = 0, join_max = 0, leave_max = 0;
  for (uint64_t i = 0; i < n; i++) {
    make_body(i, body);
    if ((rc = rmq_msg_set_body(msg, body, BODY)) || (rc = rmq_producer_send(p, msg, NULL))) fail_rmq("send", rc);
    if (i % 64 == 63) usleep(200); /* a steady load, not a flood */
    if (now_ns() < next_churn) continue;
    /* Steps 0, 1: member 0 leaves, then joins again; 2, 3: member 1; ... */
    int k = (turn / 2) % 4;
    turn++;
    uint64_t t = now_ns();
    if (m[k]) {
      rmq_push_consumer_destroy(m[k]);
      m[k] = NULL;
      double ms = (double)(now_ns() - t) * 1e-6;
      leave_ms += ms;
      if (ms > leave_max) leave_max = ms;
      leaves++;
    } else {
      m[k] = churn_member(b, topic, &ctx[k], timeout_ms, gen++);
      double ms = (double)(now_ns() - t) * 1e-6;
      join_ms += ms;
      if (ms > join_max) join_max = ms;
      joins++;
    }
    next_churn = now_ns() + 20000000ull;
  }
  for (int k = 0; k < 4; k++)
    if (!m[k]) m[k] = churn_member(b, topic, &ctx[k], timeout_ms, gen++);
  uint64_t t1 = now_ns();
  while (atomic_load(&ch.distinct) < n && now_ns() - t1 < 60ull * 1000000000ull) usleep(1000);
  double secs = (double)(now_ns() - t0) * 1e-9;
  for (int k = 0; k < 4; k++) rmq_push_consumer_destroy(m[k]);
  rmq_msg_free(msg);
  rmq_producer_destroy(p);
  if (atomic_load(&ch.distinct) != n) fail("churn", "a message was not consumed");
  printf("case=rmq-churn-timeout%d op=consume consumers=4 queues=%d msgs=%" PRIu64 " joins=%d leaves=%d"
         " join_ms_avg=%.3f join_ms_max=%.3f leave_ms_avg=%.3f leave_ms_max=%.3f deliveries=%llu overlapping=%llu"
         " redelivered_acked=%llu secs=%.3f\n",
         timeout_ms, CHURN_Q, n, joins, leaves, joins ? join_ms / joins : 0, join_max, leaves ? leave_ms / leaves : 0,
         leave_max, (unsigned long long)atomic_load(&ch.total), (unsigned long long)atomic_load(&ch.overlaps),
         (unsigned long long)atomic_load(&ch.again), secs);
  fflush(stdout);
}

int main(void)
{
  const char *env = getenv("BENCH_GROUP_MSGS");
  if (env && (g_msgs = strtoull(env, NULL, 10)) == 0) fail("BENCH_GROUP_MSGS", "expected a positive count");
  const char *base = getenv("BENCH_DIR");
  if (!base || !*base) base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  snprintf(g_root, sizeof g_root, "%s/rmq-group-bench.XXXXXX", base);
  if (!mkdtemp(g_root)) fail_errno(g_root);
  rmq_broker *b;
  int rc = rmq_broker_open(g_root, NULL, &b);
  if (rc) fail_rmq("rmq_broker_open", rc);
  if ((rc = rmq_topic_create(b, TOPIC, QUEUES))) fail_rmq("rmq_topic_create", rc);
  rmq_producer *p;
  rmq_msg *m;
  if ((rc = rmq_producer_create(b, NULL, NULL, &p)) || (rc = rmq_msg_create(&m, TOPIC, "T", NULL, 0)))
    fail_rmq("producer", rc);
  uint64_t want = 0;
  unsigned char body[BODY];
  for (uint64_t i = 0; i < g_msgs; i++) {
    make_body(i, body);
    want += fold(body);
    if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_producer_send(p, m, NULL))) fail_rmq("send", rc);
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  printf("# group-bench: rmq %s, %" PRIu64 " messages of %d B in %d queues (page cache), 4 consume threads per consumer\n",
         rmq_libversion(), g_msgs, BODY, QUEUES);
  consume_case(b, 1, 0, want);
  consume_case(b, 4, 0, want);
  consume_case(b, 8, 0, want);
  consume_case(b, 1, 1, want);
  rebalance_case(b);
  churn_case(b, 60000);
  churn_case(b, 0);
  if ((rc = rmq_broker_close(b))) fail_rmq("rmq_broker_close", rc);
  rm_tree(g_root);
  return 0;
}
