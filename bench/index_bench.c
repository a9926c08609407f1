/*
** index_bench.c -- issue 13's figures: send throughput with the key index
** on and off (same run, alternating rounds), lookups per second by key, by
** msgId and by offsetMsgId with INDEX_N (default 10,000,000) messages
** stored, the cost of rmq_broker_stats_get, and rmq_broker_check's speed
** against reading the CommitLog files.
**
** Env: BENCH_DIR (default /tmp), INDEX_N, INDEX_SEND_N (default 500000).
*/
#include "bench_util.h"

#include <pthread.h>

static const char *g_root;

static rmq_broker *open_store(const char *dir, int index_on, int ro)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 30; /* RocketMQ's */
  o.message_index_enable = index_on;
  o.read_only = ro;
  o.file_reserved_time = 1000;
  rmq_broker *b;
  int rc = rmq_broker_open(dir, &o, &b);
  if (rc) fail_rmq("rmq_broker_open", rc);
  return b;
}

/* Sends n keyed messages ("k<i>") from one thread; msgs/s. */
static double send_keyed(rmq_broker *b, long n, long base)
{
  rmq_producer *p;
  int rc = rmq_producer_create(b, "bench_pg", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  unsigned char body[BODY];
  rmq_msg *m;
  if ((rc = rmq_msg_create(&m, "IndexBench", "TagA", NULL, 0))) fail_rmq("rmq_msg_create", rc);
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    char key[32];
    snprintf(key, sizeof key, "k%ld", base + i);
    make_body((uint64_t)(base + i), body);
    rmq_msg_set_body(m, body, BODY);
    rmq_msg_set_keys(m, key);
    if ((rc = rmq_producer_send_oneway(p, m))) fail_rmq("send", rc);
  }
  double dt = now_s() - t0;
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return (double)n / dt;
}

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_send(void)
{
  long n = getenv("INDEX_SEND_N") ? atol(getenv("INDEX_SEND_N")) : 500000;
  double on[5], off[5], lag_on[5], close_on[5];
  char dir[4200];
  for (int k = 0; k < 5; k++) {
    for (int idx = 1; idx >= 0; idx--) {
      snprintf(dir, sizeof dir, "%s/index-bench-send-%d", g_root, idx);
      rm_if(dir);
      rmq_broker *b = open_store(dir, idx, 0);
      double r = send_keyed(b, n, 0);
      rmq_broker_stats st;
      rmq_broker_stats_get(b, &st);
      double t0 = now_s();
      int rc = rmq_broker_close(b);
      if (rc) fail_rmq("close", rc);
      if (idx) {
        on[k] = r;
        lag_on[k] = (double)st.dispatch_behind_bytes;
        close_on[k] = now_s() - t0;
      } else {
        off[k] = r;
      }
      rmq_broker_stats_free(&st);
      rm_if(dir);
    }
  }
  double ratio[5];
  for (int k = 0; k < 5; k++) ratio[k] = on[k] / off[k];
  qsort(on, 5, sizeof *on, cmp_d);
  qsort(off, 5, sizeof *off, cmp_d);
  qsort(ratio, 5, sizeof *ratio, cmp_d);
  qsort(lag_on, 5, sizeof *lag_on, cmp_d);
  qsort(close_on, 5, sizeof *close_on, cmp_d);
  printf("send, index off     %10.0f msgs/s  (1 thread, ASYNC_FLUSH, %d-byte bodies, KEYS + UNIQ_KEY; median of 5)\n",
         off[2], BODY);
  printf("send, index on      %10.0f msgs/s  (%.2f x off, median of the 5 paired ratios %.2f..%.2f)\n", on[2],
         ratio[2], ratio[0], ratio[4]);
  printf("index behind at the last send  %8.1f MB (median); close, indexing the rest: %.2f s\n", lag_on[2] / 1e6,
         close_on[2]);
}

static void bench_lookup(void)
{
  long n = getenv("INDEX_N") ? atol(getenv("INDEX_N")) : 10000000;
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/index-bench-10m", g_root);
  rm_if(dir);
  rmq_broker *b = open_store(dir, 1, 0);
  /* Keep a sample of ids to look up. */
  enum { SAMPLE = 20000 };
  static char mids[SAMPLE][RMQ_MSG_ID_SIZE], oids[SAMPLE][RMQ_MSG_ID_SIZE];
  static long keys[SAMPLE];
  rmq_producer *p;
  int rc = rmq_producer_create(b, "bench_pg", NULL, &p);
  if (rc) fail_rmq("rmq_producer_create", rc);
  unsigned char body[BODY];
  rmq_msg *m;
  rmq_msg_create(&m, "IndexBench", "TagA", NULL, 0);
  double t0 = now_s();
  long every = n / SAMPLE > 0 ? n / SAMPLE : 1;
  int ns = 0;
  for (long i = 0; i < n; i++) {
    char key[32];
    snprintf(key, sizeof key, "k%ld", i);
    make_body((uint64_t)i, body);
    rmq_msg_set_body(m, body, BODY);
    rmq_msg_set_keys(m, key);
    if (i % every == 0 && ns < SAMPLE) {
      rmq_send_result r;
      if ((rc = rmq_producer_send(p, m, &r))) fail_rmq("send", rc);
      memcpy(mids[ns], r.msg_id, RMQ_MSG_ID_SIZE);
      memcpy(oids[ns], r.offset_msg_id, RMQ_MSG_ID_SIZE);
      keys[ns++] = i;
    } else if ((rc = rmq_producer_send_oneway(p, m))) {
      fail_rmq("send", rc);
    }
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  double t_send = now_s() - t0;
  t0 = now_s();
  if ((rc = rmq_broker_close(b))) fail_rmq("close", rc);
  printf("stored %ld messages in %.1f s; close (index complete) %.1f s\n", n, t_send, now_s() - t0);
  t0 = now_s();
  b = open_store(dir, 1, 0);
  printf("reopen %.3f s\n", now_s() - t0);
  /* Lookups, each a random sampled message: a first pass over the sample
  ** from a fresh open (page faults into the index and the log), then a
  ** second, warm. */
  uint64_t seed = 88172645463325252ull;
  long rounds = 20000;
  long found = 0;
  double cold = 0;
  for (int pass = 0; pass < 2; pass++) {
  found = 0;
  t0 = now_s();
  for (long i = 0; i < rounds; i++) {
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    int k = (int)(seed % (uint64_t)ns);
    char key[32];
    snprintf(key, sizeof key, "k%ld", keys[k]);
    rmq_query_result q;
    if ((rc = rmq_broker_query_message(b, "IndexBench", key, 32, 0, INT64_MAX, &q))) fail_rmq("query", rc);
    found += (long)q.n;
    rmq_query_result_free(&q);
  }
  if (pass == 0) cold = (double)rounds / (now_s() - t0);
  }
  double by_key = (double)rounds / (now_s() - t0);
  if (found != rounds) fail("query by key", "a key was not found exactly once");
  t0 = now_s();
  for (long i = 0; i < rounds; i++) {
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    rmq_message_ext *e;
    if ((rc = rmq_broker_view_message(b, oids[seed % (uint64_t)ns], &e))) fail_rmq("view", rc);
    rmq_message_ext_free(e);
  }
  double by_off = (double)rounds / (now_s() - t0);
  t0 = now_s();
  for (long i = 0; i < rounds; i++) {
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    rmq_message_ext *e;
    if ((rc = rmq_broker_query_message_by_uniq_key(b, "IndexBench", mids[seed % (uint64_t)ns], &e))) fail_rmq("uniq", rc);
    rmq_message_ext_free(e);
  }
  double by_uniq = (double)rounds / (now_s() - t0);
  printf("lookups with %ld stored: by key %.0f/s (first pass after the open: %.0f/s), by msgId (UNIQ_KEY) %.0f/s, "
         "by offsetMsgId %.0f/s\n", n, by_key, cold, by_uniq, by_off);

  /* Stats: 100 topics x 8 queues, 10 groups with offsets. */
  rmq_pull_consumer *c[10];
  for (int t = 0; t < 100; t++) {
    char tn[64];
    snprintf(tn, sizeof tn, "StatsTopic%03d", t);
    rmq_topic_create(b, tn, 8);
  }
  for (int g = 0; g < 10; g++) {
    char gn[64];
    snprintf(gn, sizeof gn, "StatsGroup%d", g);
    rmq_pull_consumer_create(b, gn, &c[g]);
    for (int q = 0; q < 8; q++) {
      rmq_message_queue mq = {0};
      snprintf(mq.topic, sizeof mq.topic, "IndexBench");
      mq.queue_id = q;
      int64_t mx;
      rmq_topic_queue_offsets(b, "IndexBench", q, NULL, &mx);
      rmq_pull_consumer_update_consume_offset(c[g], &mq, mx / 2);
    }
  }
  int calls = 200;
  t0 = now_s();
  for (int i = 0; i < calls; i++) {
    rmq_broker_stats st;
    if ((rc = rmq_broker_stats_get(b, &st))) fail_rmq("stats", rc);
    rmq_broker_stats_free(&st);
  }
  printf("rmq_broker_stats_get: %.0f us a call (%d topics, 10 groups x 8 queues with a lag)\n",
         (now_s() - t0) / calls * 1e6, 100 + 1);
  for (int g = 0; g < 10; g++) rmq_pull_consumer_destroy(c[g]);
  if ((rc = rmq_broker_close(b))) fail_rmq("close", rc);

  /* checkStore against reading the CommitLog files (both from the page cache). */
  char cl[4300];
  snprintf(cl, sizeof cl, "%s/commitlog", dir);
  double bytes = 0;
  t0 = now_s();
  for (int f = 0;; f++) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%020lld", cl, (long long)f << 30);
    int fd = open(path, O_RDONLY);
    if (fd < 0) break;
    static char buf[1 << 20];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) bytes += (double)r;
    close(fd);
  }
  double read_s = now_s() - t0;
  b = open_store(dir, 1, 1);
  rmq_check_result cr;
  t0 = now_s();
  if ((rc = rmq_broker_check(b, NULL, NULL, &cr))) fail_rmq("check", rc);
  double chk_s = now_s() - t0;
  rmq_broker_close(b);
  printf("checkStore: %.0f MB/s over %.0f MB of records (%lld records, %lld units, %lld index entries, %lld problems); "
         "reading the files: %.0f MB/s (%.2f x)\n", (double)cr.bytes / 1e6 / chk_s, (double)cr.bytes / 1e6,
         (long long)cr.records, (long long)cr.units, (long long)cr.index_entries, (long long)cr.problems,
         bytes / 1e6 / read_s, ((double)cr.bytes / chk_s) / (bytes / read_s));
  rm_if(dir);
}

int main(void)
{
  g_root = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
  printf("# index_bench\n");
  bench_send();
  bench_lookup();
  return 0;
}
