/*
** timer_bench.c -- issue 12's figures, in one run:
**   1. send throughput of plain, timed (TIMER_DELAY_MS, an hour ahead) and
**      transactional (COMMIT in the local transaction) messages, one
**      thread, ASYNC_FLUSH, 128-byte bodies; ratios to plain;
**   2. with TIMER_PENDING (1,000,000) timed messages pending, the lateness
**      of TIMER_PROBES messages due over the next seconds: store time of
**      the delivered copy minus the due time, p50 / p99 / max (ms), the
**      service thread on the real clock;
**   3. memory per pending timed message: rmq's live heap bytes (counted
**      through rmq_config_allocator) with them pending, less before, over
**      their count; and what a snapshot of them costs (rmq_broker_flush).
** BENCH_DIR (default /tmp) holds the stores; TIMER_PENDING and
** TIMER_PROBES override the counts. For perf: TIMER_PROFILE=0|1|2 runs ten
** rounds of one kind of send only (plain, timed, transactional), and
** TIMER_NOSVC=1 opens those brokers without the service threads.
*/
#include <pthread.h>
#include <stdatomic.h>

#include "bench_util.h"

static _Atomic long long g_live; /* bytes rmq has allocated and not freed */

static void *live_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  (void)ud;
  if (nsize == 0) {
    if (ptr) atomic_fetch_sub(&g_live, (long long)osize);
    free(ptr);
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p) atomic_fetch_add(&g_live, (long long)nsize - (ptr ? (long long)osize : 0));
  return p;
}

static rmq_broker *open_at(const char *dir, int service)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.service_thread = service;
  o.mapped_file_size_commit_log = 256 << 20;
  rmq_broker *b;
  int rc = rmq_broker_open(dir, &o, &b);
  if (rc) fail_rmq("rmq_broker_open", rc);
  return b;
}

static void close_broker(rmq_broker *b)
{
  int rc = rmq_broker_close(b);
  if (rc) fail_rmq("rmq_broker_close", rc);
}

static int commit_exec(void *ctx, const rmq_msg *m, const char *tid, void *arg)
{
  (void)ctx; (void)m; (void)tid; (void)arg;
  return RMQ_COMMIT_MESSAGE;
}

enum { PLAIN, TIMED, TX };
static int g_size[3]; /* store size of a record of each kind (a half message for TX) */

static double send_rate(const char *root, int kind, long n)
{
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/timer-bench-send-%d", root, kind);
  rm_if(dir);
  rmq_broker *b = open_at(dir, !getenv("TIMER_NOSVC"));
  rmq_producer *p;
  int rc = rmq_producer_create(b, "BenchProducers", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  rmq_transaction_listener l = {commit_exec, NULL, NULL};
  if (kind == TX && (rc = rmq_producer_set_transaction_listener(p, &l))) fail_rmq("listener", rc);
  if ((rc = rmq_topic_create(b, "BenchT", 4))) fail_rmq("rmq_topic_create", rc);
  unsigned char body[BODY];
  rmq_msg *m;
  if ((rc = rmq_msg_create(&m, "BenchT", "TagA", NULL, 0))) fail_rmq("rmq_msg_create", rc);
  if (kind == TIMED) rmq_msg_set_delay_time_ms(m, 3600 * 1000);
  /* Warm-up, then the measured run. */
  double t0 = 0;
  for (long i = -n / 10; i < n; i++) {
    if (i == 0) t0 = now_s();
    make_body((uint64_t)(i + n), body);
    rmq_msg_set_body(m, body, BODY);
    if (kind == TX) {
      rmq_transaction_send_result r;
      rc = rmq_producer_send_message_in_transaction(p, m, NULL, &r);
      g_size[kind] = r.send_result.store_size;
    } else {
      rmq_send_result r;
      rc = rmq_producer_send(p, m, &r);
      g_size[kind] = r.store_size;
    }
    if (rc) fail_rmq("send", rc);
  }
  double secs = now_s() - t0;
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  close_broker(b);
  rm_tree(dir);
  return (double)n / secs;
}

static int cmp_dbl(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median5(double *v)
{
  qsort(v, 5, sizeof *v, cmp_dbl);
  return v[2];
}

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(void)
{
  rmq_config_allocator(live_alloc, NULL);
  const char *root = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
  long pending = getenv("TIMER_PENDING") ? atol(getenv("TIMER_PENDING")) : 1000000;
  long probes = getenv("TIMER_PROBES") ? atol(getenv("TIMER_PROBES")) : 2000;
  long n = 200000;

  printf("# timer_bench: sends (1 thread, ASYNC_FLUSH, %d-byte bodies, %ld each; median of 5 rounds of the three)\n",
         BODY, n);
  if (getenv("TIMER_PROFILE")) { /* for perf: timed sends only */
    for (int k = 0; k < 10; k++) printf("timed %.0f msgs/s\n", send_rate(root, atoi(getenv("TIMER_PROFILE")), n));
    return 0;
  }
  double pr[5], tr[5], xr[5];
  for (int k = 0; k < 5; k++) {
    pr[k] = send_rate(root, PLAIN, n);
    tr[k] = send_rate(root, TIMED, n);
    xr[k] = send_rate(root, TX, n / 2);
  }
  double plain = median5(pr), timed = median5(tr), tx = median5(xr);
  printf("send plain          %10.0f msgs/s  (%d-byte records, %.0f MB/s)\n", plain, g_size[PLAIN],
         plain * g_size[PLAIN] / 1e6);
  printf("send timed          %10.0f msgs/s  (%.2f x plain; %d-byte records, %.0f MB/s, %.2f x plain's bytes/s)\n",
         timed, timed / plain, g_size[TIMED], timed * g_size[TIMED] / 1e6,
         timed * g_size[TIMED] / (plain * g_size[PLAIN]));
  printf("send transactional  %10.0f msgs/s  (%.2f x plain; half + COMMIT + op record each)\n", tx, tx / plain);

  char dir[4200];
  snprintf(dir, sizeof dir, "%s/timer-bench-pending", root);
  rm_if(dir);
  rmq_broker *b = open_at(dir, 1);
  rmq_producer *p;
  int rc = rmq_producer_create(b, "BenchProducers", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  if ((rc = rmq_topic_create(b, "TimedT", 1))) fail_rmq("rmq_topic_create", rc);
  if ((rc = rmq_topic_create(b, "FarT", 1))) fail_rmq("rmq_topic_create", rc);
  rmq_msg *m;
  unsigned char body[BODY];
  if ((rc = rmq_msg_create(&m, "FarT", NULL, NULL, 0))) fail_rmq("rmq_msg_create", rc);
  /* One timed message first, so the timer's structures exist in both readings. */
  rmq_msg_set_body(m, body, BODY);
  rmq_msg_set_delay_time_ms(m, 7200 * 1000);
  if ((rc = rmq_producer_send(p, m, NULL))) fail_rmq("send", rc);
  usleep(300 * 1000);
  long long live0 = atomic_load(&g_live);
  double t0 = now_s();
  int64_t base = wall_ms();
  for (long i = 0; i < pending; i++) {
    make_body((uint64_t)i, body);
    rmq_msg_set_body(m, body, BODY);
    rmq_msg_set_deliver_time_ms(m, base + 3600 * 1000 + (i * 7919) % (3600 * 1000)); /* an hour or two ahead */
    if ((rc = rmq_producer_send(p, m, NULL))) fail_rmq("send", rc);
  }
  double send_s = now_s() - t0;
  rmq_msg_free(m);
  /* The delivery thread reads them into its heap when it next wakes (they
  ** are due later than that); this call does it now. */
  if ((rc = rmq_broker_run_due(b, NULL))) fail_rmq("rmq_broker_run_due", rc);
  long long live1 = atomic_load(&g_live);
  printf("\n# %ld timed messages pending (sent at %.0f msgs/s)\n", pending, (double)pending / send_s);
  printf("memory per pending timed message  %.1f bytes (rmq's heap: %.1f MB for them)\n",
         (double)(live1 - live0) / (double)pending, (double)(live1 - live0) / 1e6);
  t0 = now_s();
  if ((rc = rmq_broker_flush(b))) fail_rmq("rmq_broker_flush", rc);
  printf("snapshot of them (rmq_broker_flush)  %.0f ms\n", (now_s() - t0) * 1e3);

  /* Probes: due 300 ms .. 300 + 3 * probes ms from now, in random order. */
  if ((rc = rmq_msg_create(&m, "TimedT", NULL, NULL, 0))) fail_rmq("rmq_msg_create", rc);
  int64_t *due = xmalloc((size_t)probes * sizeof *due);
  int64_t start = wall_ms() + 300;
  for (long i = 0; i < probes; i++) {
    char bd[32];
    snprintf(bd, sizeof bd, "%ld", i);
    due[i] = start + (i * 7907) % probes * 3;
    rmq_msg_set_body(m, bd, strlen(bd));
    rmq_msg_set_deliver_time_ms(m, due[i]);
    if ((rc = rmq_producer_send(p, m, NULL))) fail_rmq("send", rc);
  }
  rmq_msg_free(m);
  rmq_pull_consumer *c;
  if ((rc = rmq_pull_consumer_create(b, "BenchReader", &c))) fail_rmq("rmq_pull_consumer_create", rc);
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "TimedT");
  int64_t *late = xmalloc((size_t)probes * sizeof *late), off = 0;
  long got = 0, early = 0, order_breaks = 0;
  int64_t last_due = 0;
  double deadline = now_s() + 60;
  while (got < probes && now_s() < deadline) {
    rmq_pull_result r;
    if ((rc = rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", off, 32, 1000, &r))) fail_rmq("pull", rc);
    if (r.pull_status != RMQ_PULL_FOUND) continue;
    for (size_t i = 0; i < r.n; i++) {
      long id = strtol((const char *)r.msgs[i].body, NULL, 10);
      int64_t d = due[id];
      late[got++] = r.msgs[i].store_timestamp - d;
      if (r.msgs[i].store_timestamp < d) early++;
      if (d < last_due) order_breaks++;
      last_due = d;
    }
    off = r.next_begin_offset;
  }
  qsort(late, (size_t)got, sizeof *late, cmp_i64);
  printf("\n# %ld probes due over %.1f s, %ld pending meanwhile (service thread, real clock)\n", probes,
         (double)probes * 3 / 1000, pending);
  printf("delivered %ld, early %ld, out of due order %ld\n", got, early, order_breaks);
  if (got)
    printf("lateness ms  p50 %" PRId64 "  p99 %" PRId64 "  max %" PRId64 "\n", late[got / 2], late[got * 99 / 100],
           late[got - 1]);
  rmq_pull_consumer_destroy(c);
  rmq_producer_destroy(p);
  t0 = now_s();
  close_broker(b);
  printf("close (final snapshot) %.0f ms\n", (now_s() - t0) * 1e3);
  t0 = now_s();
  b = open_at(dir, 0);
  printf("reopen with %ld pending  %.0f ms\n", pending, (now_s() - t0) * 1e3);
  close_broker(b);
  rm_tree(dir);
  free(due);
  free(late);
  return got == probes && early == 0 ? 0 : 1;
}
