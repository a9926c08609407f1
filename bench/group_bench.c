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
  if (got != g_msgs || atomic_load(&ctr.sum) != want_sum) fail(group, "count or checksum differs from what was produced");
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

/* A fifth consumer joins a group of four under load: rmq_push_consumer_start
** returns when every member has applied the new assignment. */
static void rebalance_case(rmq_broker *b)
{
  counter ctr = {0, 0};
  rmq_push_consumer *cs[5];
  for (int i = 0; i < 5; i++) cs[i] = consumer(b, "Rebalance", i, 0, &ctr);
  for (int i = 0; i < 4; i++)
    if (rmq_push_consumer_start(cs[i])) fail("start", rmq_errmsg());
  sender s = {b, 0, 0};
  pthread_t th;
  if (pthread_create(&th, NULL, send_main, &s)) fail("pthread_create", "load");
  usleep(300000);
  hist h;
  memset(&h, 0, sizeof h);
  uint64_t t0 = now_ns();
  if (rmq_push_consumer_start(cs[4])) fail("start", rmq_errmsg());
  uint64_t join = now_ns() - t0;
  usleep(200000);
  t0 = now_ns();
  rmq_push_consumer_shutdown(cs[4]);
  uint64_t leave = now_ns() - t0;
  atomic_store(&s.stop, 1);
  pthread_join(th, NULL);
  for (int i = 0; i < 5; i++) rmq_push_consumer_destroy(cs[i]);
  printf("case=rmq-rebalance op=join consumers=4+1 queues=%d join_ms=%.3f leave_ms=%.3f load_msgs=%" PRIu64 "\n",
         QUEUES, (double)join * 1e-6, (double)leave * 1e-6, s.sent);
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
  if ((rc = rmq_broker_close(b))) fail_rmq("rmq_broker_close", rc);
  rm_tree(g_root);
  return 0;
}
