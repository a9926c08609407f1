/*
** filter_bench.c -- SQL92 filters (issue 6). Prints figures, asserts none.
**
** 1. Evaluations per second, one thread, of a three-term expression over a
**    message with 5 properties: through the public rmq_selector_match (name,
**    value pairs) and through the consume path's own check on a record's
**    raw properties (with and without the 3 system properties every stored
**    record carries). Four messages in turn: one matching, three failing at
**    each term. Shared machines are noisy: each way runs 5 rounds and the
**    fastest is reported.
** 2. Consume throughput with a filter that matches 10% of the messages: 8
**    queues of 128-byte messages whose property k is seq % 10; pulls
**    queue by queue with max_nums 32: everything ("*"), SQL92 `k = 3`, a
**    three-term SQL92 selector matching the same 10%, and the tag filter
**    "Tag3" (which skips on the ConsumeQueue's tag code, never reading the
**    other records); then a push consumer with `k = 3` until the group's
**    offsets reach the end.
**
**   environment: BENCH_FILTER_MSGS (default 1000000), BENCH_DIR (default $TMPDIR or /tmp)
*/
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rmq.h"
#include "rmq_int.h"
#include "bench_util.h"

#define TOPIC "FilterBenchTopic"
#define QUEUES 8
#define EVAL_SECS 2.0  /* per way, split into rounds; the best round is reported */
#define EVAL_ROUNDS 5

static char g_root[4096];
static uint64_t g_msgs = 1000000;

/* ---- 1. evaluations per second ------------------------------------------ */

#define EXPR3 "sex = 'F' AND age >= 18 AND city IN ('bj', 'sh', 'sz')"

/* sex, age, city, name, vip: matching, then failing at term 1, 2 and 3. */
static const char *const k_people[4][10] = {
  {"sex", "F", "age", "27", "city", "sh", "name", "Li Na", "vip", "true"},
  {"sex", "M", "age", "27", "city", "sh", "name", "Li Lei", "vip", "true"},
  {"sex", "F", "age", "16", "city", "sh", "name", "Han Meimei", "vip", "false"},
  {"sex", "F", "age", "31", "city", "gz", "name", "Wang Fang", "vip", "false"},
};

/* A record's properties blob: name 0x01 value 0x02 ..., the user ones and,
** with sys, what every stored record has besides (as the producer writes). */
static size_t make_blob(char *out, size_t cap, const char *const *kv, int sys)
{
  size_t n = 0;
  if (sys) n += (size_t)snprintf(out + n, cap - n, "TAGS\001Tag3\002WAIT\001true\002");
  for (int i = 0; i < 5; i++) n += (size_t)snprintf(out + n, cap - n, "%s\001%s\002", kv[2 * i], kv[2 * i + 1]);
  if (sys) n += (size_t)snprintf(out + n, cap - n, "UNIQ_KEY\0017F0000012C34C08F8F2A049A39AE006B\002");
  return n;
}

static void eval_rates(void)
{
  rmq_selector *s;
  int rc = rmq_selector_compile(RMQ_SELECTOR_SQL92, EXPR3, &s);
  if (rc) fail_rmq("rmq_selector_compile", rc);
  rmqi_filter f;
  if ((rc = rmqi_filter_compile(RMQ_SELECTOR_SQL92, EXPR3, &f))) fail_rmq("rmqi_filter_compile", rc);
  char blob[2][4][256];
  size_t blen[2][4];
  for (int sys = 0; sys < 2; sys++)
    for (int m = 0; m < 4; m++) blen[sys][m] = make_blob(blob[sys][m], sizeof blob[sys][m], k_people[m], sys);

  printf("%-44s %12s %10s %s\n", "evaluation (best of 5 rounds)", "evals/s", "ns/eval", "expression over 5 properties");
  for (int way = 0; way < 3; way++) {
    double best = 0;
    for (int round = 0; round < EVAL_ROUNDS; round++) {
      uint64_t n = 0, matched = 0;
      double t0 = now_s(), t;
      do {
        for (int rep = 0; rep < 4096; rep++) {
          int m = rep & 3;
          int hit = way == 0 ? rmq_selector_match(s, k_people[m], 5)
                             : rmqi_filter_record(&f, NULL, 0, blob[way - 1][m], blen[way - 1][m]);
          matched += (uint64_t)(hit == 1);
        }
        n += 4096;
        t = now_s();
      } while (t - t0 < EVAL_SECS / EVAL_ROUNDS);
      if (matched != n / 4) fail("eval", "the filter's verdicts differ from the expected 1 in 4");
      if ((double)n / (t - t0) > best) best = (double)n / (t - t0);
    }
    const char *name = way == 0 ? "rmq_selector_match (name/value pairs)"
                     : way == 1 ? "record properties, 5 user"
                                : "record properties, 5 user + 3 system";
    printf("%-44s %12.0f %10.1f %s\n", name, best, 1e9 / best, EXPR3);
  }
  rmqi_filter_free(&f);
  rmq_selector_free(s);
}

/* ---- 2. consume throughput at 10% --------------------------------------- */

static void produce(rmq_broker *b)
{
  rmq_producer *p;
  int rc = rmq_producer_create(b, "filter-bench-producer", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  unsigned char body[BODY];
  rmq_msg *m;
  if ((rc = rmq_msg_create(&m, TOPIC, "Tag0", body, BODY))) fail_rmq("rmq_msg_create", rc);
  static const char *const tags[10] = {"Tag0", "Tag1", "Tag2", "Tag3", "Tag4", "Tag5", "Tag6", "Tag7", "Tag8", "Tag9"};
  static const char *const ks[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  double t0 = now_s();
  for (uint64_t i = 0; i < g_msgs; i++) {
    make_body(i, body);
    int k = (int)(i % 10);
    if ((rc = rmq_msg_set_body(m, body, BODY)) || (rc = rmq_msg_set_tags(m, tags[k])) ||
        (rc = rmq_msg_put_user_property(m, "k", ks[k])) ||
        (rc = rmq_msg_put_user_property(m, "region", k == 3 ? "north" : "south")) ||
        (rc = rmq_msg_put_user_property(m, "amount", "250")))
      fail_rmq("rmq_msg_set", rc);
    if ((rc = rmq_producer_send_oneway(p, m))) fail_rmq("rmq_producer_send_oneway", rc);
  }
  double t = now_s() - t0;
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  printf("produced %" PRIu64 " messages (128-byte bodies, 3 user properties) in %.2f s\n", g_msgs, t);
}

static void pull_all(rmq_broker *b, const char *name, int type, const char *expr, uint64_t want)
{
  rmq_pull_consumer *c;
  int rc = rmq_pull_consumer_create(b, "filter-bench-pull", &c);
  if (rc) fail_rmq("rmq_pull_consumer_create", rc);
  rmq_message_queue mqs[QUEUES];
  size_t nq = 0;
  if ((rc = rmq_pull_consumer_fetch_subscribe_message_queues(c, TOPIC, mqs, QUEUES, &nq))) fail_rmq("fetch queues", rc);
  uint64_t got = 0, scanned = 0, sum = 0;
  double t0 = now_s();
  for (size_t q = 0; q < nq; q++) {
    int64_t off = 0;
    for (;;) {
      rmq_pull_result r;
      if ((rc = rmq_pull_consumer_pull_selector(c, &mqs[q], type, expr, off, 32, &r))) fail_rmq("pull", rc);
      if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
      for (size_t i = 0; i < r.n; i++) sum += fold(r.msgs[i].body);
      got += r.n;
      scanned += (uint64_t)(r.next_begin_offset - off);
      off = r.next_begin_offset;
    }
  }
  double t = now_s() - t0;
  (void)sum;
  if (got != want) {
    char why[128];
    snprintf(why, sizeof why, "delivered %" PRIu64 ", expected %" PRIu64, got, want);
    fail(name, why);
  }
  printf("%-30s %10.0f scanned/s %10.0f delivered/s %9" PRIu64 " delivered  %s\n", name, (double)scanned / t,
         (double)got / t, got, expr);
  rmq_pull_consumer_destroy(c);
}

typedef struct push_ctx {
  atomic_ullong n, bad;
} push_ctx;

static int on_push(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  push_ctx *x = ctx;
  for (size_t i = 0; i < n; i++) {
    const char *v;
    size_t l;
    if (rmq_message_ext_property(msgs[i], "k", &v, &l) != RMQ_OK || l != 1 || v[0] != '3') atomic_fetch_add(&x->bad, 1);
    (void)fold(msgs[i]->body);
  }
  atomic_fetch_add(&x->n, n);
  return RMQ_CONSUME_SUCCESS;
}

static void push_sql(rmq_broker *b, uint64_t want)
{
  rmq_push_consumer_options o;
  rmq_push_consumer_options_init(&o);
  o.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  o.consume_thread_min = o.consume_thread_max = 4;
  o.consume_message_batch_max_size = 16;
  rmq_push_consumer *c;
  push_ctx x;
  memset(&x, 0, sizeof x);
  int rc = rmq_push_consumer_create(b, "filter-bench-push", &o, &c);
  if (rc) fail_rmq("rmq_push_consumer_create", rc);
  if ((rc = rmq_push_consumer_subscribe_selector(c, TOPIC, RMQ_SELECTOR_SQL92, "k = 3"))) fail_rmq("subscribe", rc);
  if ((rc = rmq_push_consumer_register_listener_concurrently(c, on_push, &x))) fail_rmq("listener", rc);
  /* start() makes the group's %RETRY% topic and writes topics.json with
  ** fsync, which waits behind the writeback of what was just produced: it is
  ** timed on its own. */
  double ts = now_s();
  if ((rc = rmq_push_consumer_start(c))) fail_rmq("start", rc);
  double t0 = now_s(), t;
  ts = t0 - ts;
  /* Done when every match came and the offsets passed the rest. */
  for (;;) {
    rmq_queue_progress pg[QUEUES];
    size_t n = 0;
    int64_t lag = 0;
    if ((rc = rmq_broker_consumer_progress(b, "filter-bench-push", TOPIC, pg, QUEUES, &n))) fail_rmq("progress", rc);
    for (size_t i = 0; i < n; i++) lag += pg[i].consumer_offset < 0 ? 1 : pg[i].lag;
    t = now_s();
    if (lag == 0 && atomic_load(&x.n) >= want) break;
    if (t - t0 > 300) fail("push k = 3", "not caught up after 300 s");
    usleep(1000);
  }
  rmq_push_consumer_destroy(c);
  if (atomic_load(&x.n) != want || atomic_load(&x.bad)) fail("push k = 3", "wrong deliveries");
  printf("%-30s %10.0f scanned/s %10.0f delivered/s %9" PRIu64 " delivered  k = 3 (4 threads, offsets caught up;"
         " start took %.3f s)\n", "push, SQL92 10%", (double)g_msgs / (t - t0), (double)want / (t - t0), want, ts);
}

int main(void)
{
  const char *env = getenv("BENCH_FILTER_MSGS");
  if (env && atoll(env) > 0) g_msgs = (uint64_t)atoll(env);
  const char *dir = getenv("BENCH_DIR");
  if (!dir) dir = getenv("TMPDIR");
  if (!dir) dir = "/tmp";
  snprintf(g_root, sizeof g_root, "%s/rmq-filter-bench-%d", dir, (int)getpid());

  eval_rates();

  rmq_broker_options o;
  rmq_broker_options_init(&o);
  rmq_broker *b;
  int rc = rmq_broker_open(g_root, &o, &b);
  if (rc) fail_rmq("rmq_broker_open", rc);
  if ((rc = rmq_topic_create(b, TOPIC, QUEUES))) fail_rmq("rmq_topic_create", rc);
  printf("\n");
  produce(b);
  uint64_t tenth = g_msgs / 10 + (g_msgs % 10 > 3);
  pull_all(b, "pull, everything", RMQ_SELECTOR_TAG, "*", g_msgs);
  pull_all(b, "pull, SQL92 10%", RMQ_SELECTOR_SQL92, "k = 3", tenth);
  pull_all(b, "pull, SQL92 3 terms 10%", RMQ_SELECTOR_SQL92, "k = 3 AND region IN ('north', 'east') AND amount >= 100",
           tenth);
  pull_all(b, "pull, tag 10%", RMQ_SELECTOR_TAG, "Tag3", tenth);
  push_sql(b, tenth);
  if ((rc = rmq_broker_close(b))) fail_rmq("rmq_broker_close", rc);
  rm_tree(g_root);
  return 0;
}
