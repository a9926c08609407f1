/*
** test_ioerr.c -- ENOSPC and EIO injected at the n-th OS call of the
** durability workload (dura.h), for every n (`make ioerr`) or a sample
** (`make test`: RMQ_IOERR_EVERY, default every 61st call), through the
** simulated OS layer (simfs.h). For each run:
**   - every error an API call of the workload returned is RMQ_EIO or
**     RMQ_ENOSPC with a message (nothing else: no ECORRUPT, no crash, no
**     hang: the run is bounded);
**   - after the workload the broker either still takes a send or refuses
**     it with RMQ_EIO ("not writable") when a sync failed;
**   - the store reopened with the real OS holds every message that got
**     SEND_OK, byte for byte, nothing never sent, and rmq_broker_check
**     finds no problem (rmqstore.py on a sample).
** And the fsync rule on its own: a failed sync is never taken as done.
*/
#include "dura.h"

typedef struct ie_run {
  long fail_at;     /* the call to fail (sim.ncalls) */
  int err;          /* its errno */
  atomic_int fired;
  char call[32], path[512];
} ie_run;

static int ie_hook(void *ctx, int op, const char *call, const char *path)
{
  (void)op;
  ie_run *r = ctx;
  if (atomic_load(&sim.ncalls) != r->fail_at || atomic_exchange(&r->fired, 1)) return 0;
  snprintf(r->call, sizeof r->call, "%s", call);
  snprintf(r->path, sizeof r->path, "%s", path ? path : "(mapping)");
  return r->err;
}

static long env_long(const char *name, long dflt)
{
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* A send after the workload: OK, or RMQ_EIO saying the store is not
** writable (only after a failed sync), or ENOSPC. */
static void after_send(wl *w, rmq_broker *b, char *why, size_t cap)
{
  rmq_producer *p;
  if (rmq_producer_create(b, "PcAfter", NULL, &p) != RMQ_OK) { snprintf(why, cap, "producer_create after"); return; }
  rmq_msg *m = wl_msg(0, 0, 0, WL_PLAIN, "PcA");
  rmq_send_result r;
  int rc = rmq_producer_send(p, m, &r);
  if (rc != RMQ_OK && rc != RMQ_ENOSPC && !(rc == RMQ_EIO && strstr(rmq_errmsg(), "not writable")))
    snprintf(why, cap, "a send after the workload: %s: %s", rmq_errstr(rc), rmq_errmsg());
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  (void)w;
}

/* One run failing call n with err; returns the calls the run made. */
static long ie_one(int flush_type, long n, int err, int n_msgs, int py, char *why, size_t cap)
{
  char base[1024], store[1100];
  tu_tmpdir(base, sizeof base, "ioerr");
  snprintf(store, sizeof store, "%s/store", base);
  if (mkdir(store, 0755) != 0) { snprintf(why, cap, "mkdir"); return 0; }
  wl w;
  wl_init(&w, store, flush_type, n_msgs);
  w.drain_ms = 1000;
  ie_run r = {.fail_at = n, .err = err};
  sim_start(store, 0, ie_hook, &r, 1);
  int crc = wl_run(&w);
  long calls = atomic_load(&sim.ncalls);
  why[0] = 0;
  if (crc != RMQ_OK && crc != RMQ_EIO && crc != RMQ_ENOSPC)
    snprintf(why, cap, "close: %s: %s", rmq_errstr(crc), rmq_errmsg());
  if (!why[0] && atomic_load(&w.unclear_errors))
    snprintf(why, cap, "%d unclear errors, first: %s", atomic_load(&w.unclear_errors), w.first_unclear);
  sim_stop();
  if (!why[0]) {
    wl_cut all = {.call = LONG_MAX, .retention_begun = 1, .last_cl_file = INT64_MAX, .all_acks = 1};
    for (int t = 0; t < WL_THREADS; t++) all.attempts[t] = atomic_load(&w.attempts[t]);
    wl_check k;
    memset(&k, 0, sizeof k);
    wl_verify(&w, &all, store, &k);
    if (k.why[0]) snprintf(why, cap, "reopened: %s", k.why);
  }
  if (!why[0]) {
    /* The reopened broker takes sends again. */
    rmq_broker_options o;
    wl_opts(&o, flush_type, 0);
    rmq_broker *b;
    int rc = rmq_broker_open(store, &o, &b);
    if (rc) snprintf(why, cap, "reopen: %s", rmq_errmsg());
    else {
      after_send(&w, b, why, cap);
      rmq_broker_close(b);
    }
  }
  if (!why[0] && py) {
    const char *script = tu_rmqstore_script();
    char cl[1200];
    snprintf(cl, sizeof cl, "%s/commitlog/00000000000000000000", store);
    if (script && access(cl, F_OK) == 0) {
      char cmd[4096];
      snprintf(cmd, sizeof cmd, "python3 '%s' check '%s' >/dev/null 2>&1", script, store);
      if (system(cmd) != 0) snprintf(why, cap, "rmqstore.py check failed on %s", store);
    }
  }
  if (why[0]) {
    size_t l = strlen(why);
    snprintf(why + l, cap - l, " [%s failed with %s at call %ld: %s %s; store kept: %s]",
             r.fired ? r.call : "nothing", strerror(err), n, r.call, r.path, store);
  } else {
    tu_rm_rf(base);
  }
  wl_free(&w);
  return calls;
}

static void run_errors(int flush_type)
{
  int n_msgs = (int)env_long("RMQ_IOERR_MSGS", 400);
  long every = env_long("RMQ_IOERR_EVERY", 61);
  if (every < 1) every = 1;
  char why[2048];
  /* A run with nothing failed says how many calls there are. */
  long total = ie_one(flush_type, -1, EIO, n_msgs, 1, why, sizeof why);
  if (why[0]) fail_msg("without errors: %s", why);
  long tried = 0, failed_runs = 0;
  char first[2048] = "";
  int64_t t0 = tu_mono_ms();
  for (int e = 0; e < 2; e++) {
    int err = e ? EIO : ENOSPC;
    for (long n = 1 + (e * 7) % every; n <= total; n += every) {
      ie_one(flush_type, n, err, n_msgs, tried % 16 == 0, why, sizeof why);
      tried++;
      if (why[0]) {
        failed_runs++;
        if (!first[0]) snprintf(first, sizeof first, "%s", why);
        if (!getenv("RMQ_IOERR_KEEP_GOING")) break;
      }
    }
    if (first[0] && !getenv("RMQ_IOERR_KEEP_GOING")) break;
  }
  print_message("ioerr %s: %ld calls in the workload (%d messages); %ld runs with ENOSPC/EIO injected "
                "(every %ld calls), %ld failed, %.1f s\n", flush_type == RMQ_SYNC_FLUSH ? "SYNC " : "ASYNC",
                total, n_msgs, tried, every, failed_runs, (double)(tu_mono_ms() - t0) / 1000.0);
  if (first[0]) fail_msg("%s", first);
}

static void test_sync_errors(void **state) { (void)state; run_errors(RMQ_SYNC_FLUSH); }
static void test_async_errors(void **state) { (void)state; run_errors(RMQ_ASYNC_FLUSH); }

/* The fsync rule: a failed CommitLog sync fails the send that waited on
** it, and no later send or flush is reported done over it. */
static int fs_fail_next;
static int fs_hook(void *ctx, int op, const char *call, const char *path)
{
  (void)ctx; (void)call;
  if (op == SIM_OP_SYNC && fs_fail_next && path == NULL) { fs_fail_next = 0; return EIO; } /* msync */
  if (op == SIM_OP_SYNC && fs_fail_next && path && strstr(path, "/commitlog/")) { fs_fail_next = 0; return EIO; }
  return 0;
}

static void test_failed_fsync_is_not_retried(void **state)
{
  (void)state;
  char base[1024], store[1100];
  tu_tmpdir(base, sizeof base, "fsyncfail");
  snprintf(store, sizeof store, "%s/store", base);
  assert_int_equal(mkdir(store, 0755), 0);
  sim_start(store, 0, fs_hook, NULL, 1);
  rmq_broker_options o;
  wl_opts(&o, RMQ_SYNC_FLUSH, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "PcA", 4));
  rmq_producer *p;
  ok(rmq_producer_create(b, "PcP", NULL, &p));
  rmq_send_result r, acked[10];
  for (int s = 0; s < 10; s++) {
    rmq_msg *m = wl_msg(0, s, 0, WL_PLAIN, "PcA");
    ok(rmq_producer_send(p, m, &acked[s]));
    assert_int_equal(acked[s].send_status, RMQ_SEND_OK);
    rmq_msg_free(m);
  }
  fs_fail_next = 1;
  rmq_msg *m = wl_msg(0, 10, 0, WL_PLAIN, "PcA");
  int rc = rmq_producer_send(p, m, &r);
  assert_int_equal(rc, RMQ_EIO);
  assert_false(fs_fail_next); /* the sync was tried, and failed */
  /* A later sync would succeed: it must not be asked to cover the lost pages. */
  rc = rmq_producer_send(p, m, &r);
  assert_int_equal(rc, RMQ_EIO);
  assert_non_null(strstr(rmq_errmsg(), "not writable"));
  assert_int_equal(rmq_broker_flush(b), RMQ_EIO);
  rmq_msg_free(m);
  /* Reads go on. */
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "PcG", &c));
  rmq_message_queue mq = tu_mq("PcA", acked[0].message_queue.queue_id);
  rmq_pull_result pr;
  ok(rmq_pull_consumer_pull(c, &mq, "*", 0, 32, &pr));
  assert_int_equal(pr.pull_status, RMQ_PULL_FOUND);
  rmq_pull_consumer_destroy(c);
  rmq_producer_destroy(p);
  assert_int_equal(rmq_broker_close(b), RMQ_EIO);
  sim_stop();
  /* The next open recovers (after a crash: abort was left) with every
  ** acknowledged message. */
  ok(rmq_broker_open(store, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 1);
  for (int s = 0; s < 10; s++) {
    rmq_message_ext *e;
    ok(rmq_broker_view_message(b, acked[s].offset_msg_id, &e));
    uint64_t id;
    assert_true(tu_body_check(e->body, (size_t)e->body_len, &id));
    assert_int_equal(id, wl_id(0, s, 0));
    rmq_message_ext_free(e);
  }
  ok(rmq_producer_create(b, "PcP", NULL, &p));
  m = wl_msg(0, 11, 0, WL_PLAIN, "PcA");
  ok(rmq_producer_send(p, m, &r));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_rm_rf(base);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failed_fsync_is_not_retried),
      cmocka_unit_test(test_sync_errors),
      cmocka_unit_test(test_async_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
