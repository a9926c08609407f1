/*
** test_transaction.c -- transactional messages (issue 12, ROCKETMQ.md 11):
** a half message in RMQ_SYS_TRANS_HALF_TOPIC invisible to consumers until
** COMMIT writes it to its topic once; ROLLBACK drops it; UNKNOW leaves it to
** the check, which asks the group's listener after transaction_timeout,
** every transaction_check_interval, at most transaction_check_max times.
** Crashes (a child killed) at each step, restarts with undecided halves.
*/
#include "test_util.h"

#include <inttypes.h>
#include <signal.h>

static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_wait_atleast; (void)tu_small_opts; (void)tu_make_body; (void)tu_body_check; (void)tu_java_hash;
  (void)tu_read_exact; (void)tu_clock_advance; (void)tu_count_files;
}

#define T0 1700000000000LL
#define TOPIC "TxTopic"
#define GROUP "TxGroup"

typedef struct fx {
  char path[1024];
  tu_clock clk;
  tu_log log;
  rmq_broker_options o;
  rmq_broker *b;
  rmq_producer *p;
  /* What the listener answers, and what it saw. */
  int exec_answer, check_answer;
  atomic_int execs, checks;
  char check_topic[64], check_id[RMQ_MSG_ID_SIZE];
  int check_qid;
  int64_t check_times; /* TRANSACTION_CHECK_TIMES of the last check */
  int exec_runs_due;   /* the execute callback lets the check run first (a late decision) */
} fx;

static int on_exec(void *ctx, const rmq_msg *m, const char *tid, void *arg)
{
  fx *f = ctx;
  assert_non_null(m);
  assert_int_equal(strlen(tid), 32);
  assert_ptr_equal(arg, f);
  atomic_fetch_add(&f->execs, 1);
  if (f->exec_runs_due) {
    /* The producer is slow: the check takes the transaction over. */
    f->clk.now_ms += 60000;
    ok(rmq_broker_run_due(f->b, NULL));
  }
  return f->exec_answer;
}

static int on_check(void *ctx, const rmq_message_ext *m)
{
  fx *f = ctx;
  atomic_fetch_add(&f->checks, 1);
  snprintf(f->check_topic, sizeof f->check_topic, "%s", m->topic);
  memcpy(f->check_id, m->msg_id, sizeof f->check_id);
  f->check_qid = m->queue_id;
  const char *v;
  size_t n;
  char buf[16] = "";
  if (rmq_message_ext_property(m, "TRANSACTION_CHECK_TIMES", &v, &n) == RMQ_OK && n < sizeof buf) memcpy(buf, v, n);
  f->check_times = atoll(buf);
  return f->check_answer;
}

static void fx_open(fx *f, int with_check)
{
  ok(rmq_broker_open(f->path, &f->o, &f->b));
  ok(rmq_producer_create(f->b, GROUP, NULL, &f->p));
  rmq_transaction_listener l = {on_exec, with_check ? on_check : NULL, f};
  ok(rmq_producer_set_transaction_listener(f->p, &l));
}

static void fx_init(fx *f, const char *tag)
{
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  tu_clock_opts(&f->o, 1 << 20, &f->clk, T0);
  f->o.transaction_check_interval = 1000;
  f->o.log = tu_log_fn;
  f->o.log_ctx = &f->log;
  f->o.log_level = RMQ_LOG_INFO;
  f->exec_answer = RMQ_COMMIT_MESSAGE;
  f->check_answer = RMQ_COMMIT_MESSAGE;
}

static void fx_shut(fx *f)
{
  rmq_producer_destroy(f->p);
  ok(rmq_broker_close(f->b));
}

static int send_tx(fx *f, const char *body, rmq_transaction_send_result *r)
{
  rmq_msg *m;
  ok(rmq_msg_create(&m, TOPIC, "TagT", body, strlen(body)));
  ok(rmq_msg_set_keys(m, body));
  int rc = rmq_producer_send_message_in_transaction(f->p, m, f, r);
  rmq_msg_free(m);
  return rc;
}

/* Runs the broker's due work at now + ms. */
static void at(fx *f, int64_t ms)
{
  f->clk.now_ms = T0 + ms;
  ok(rmq_broker_run_due(f->b, NULL));
}

typedef struct seen {
  int n;
  char body[16][32];
  char id[16][RMQ_MSG_ID_SIZE];
  int32_t sys_flag[16];
  int64_t prepared[16];
  char tran_msg[16][8], pgroup[16][32];
} seen;

/* Everything in topic's queues (pulled from 0). */
static int read_topic(fx *f, const char *topic, seen *s)
{
  memset(s, 0, sizeof *s);
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f->b, "TxReader", &c));
  rmq_message_queue mqs[16];
  size_t nq = 0;
  int rc = rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, mqs, 16, &nq);
  if (rc == RMQ_ENOTOPIC) nq = 0;
  else ok(rc);
  for (size_t q = 0; q < nq; q++) {
    int64_t off = 0;
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mqs[q], "*", off, 32, &r));
      if (r.pull_status != RMQ_PULL_FOUND) break;
      for (size_t i = 0; i < r.n; i++) {
        const rmq_message_ext *e = &r.msgs[i];
        assert_true(s->n < 16);
        snprintf(s->body[s->n], sizeof s->body[0], "%.*s", (int)e->body_len, (const char *)e->body);
        memcpy(s->id[s->n], e->msg_id, sizeof s->id[0]);
        s->sys_flag[s->n] = e->sys_flag;
        s->prepared[s->n] = e->prepared_transaction_offset;
        tu_prop_copy(e, "TRAN_MSG", s->tran_msg[s->n], sizeof s->tran_msg[0]);
        tu_prop_copy(e, "PGROUP", s->pgroup[s->n], sizeof s->pgroup[0]);
        s->n++;
      }
      off = r.next_begin_offset;
    }
  }
  rmq_pull_consumer_destroy(c);
  return s->n;
}

static int64_t queue_max(fx *f, const char *topic)
{
  int64_t min, max;
  if (rmq_topic_queue_offsets(f->b, topic, 0, &min, &max) != RMQ_OK) return 0;
  return max;
}

static void test_commit(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-commit");
  fx_open(&f, 1);
  ok(rmq_topic_create(f.b, TOPIC, 2));
  rmq_transaction_send_result r;
  ok(send_tx(&f, "c1", &r));
  assert_int_equal(r.local_transaction_state, RMQ_COMMIT_MESSAGE);
  assert_int_equal(r.send_result.send_status, RMQ_SEND_OK);
  assert_string_equal(r.transaction_id, r.send_result.msg_id);
  assert_string_equal(r.send_result.message_queue.topic, TOPIC); /* the real queue, as RocketMQ's result */
  assert_int_equal(r.send_result.queue_offset, 0);               /* the half message's */
  assert_int_equal(atomic_load(&f.execs), 1);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  assert_string_equal(s.body[0], "c1");
  assert_string_equal(s.id[0], r.transaction_id);
  assert_int_equal(s.sys_flag[0] & 0xC, 0x8); /* a COMMIT record */
  assert_int_equal(s.prepared[0], r.send_result.commit_log_offset);
  assert_string_equal(s.tran_msg[0], "true");
  assert_string_equal(s.pgroup[0], GROUP);
  assert_int_equal(queue_max(&f, "RMQ_SYS_TRANS_HALF_TOPIC"), 1);
  assert_int_equal(queue_max(&f, "RMQ_SYS_TRANS_OP_HALF_TOPIC"), 1);
  /* The op record: tag d, body the half's queue offset. */
  seen op;
  assert_int_equal(read_topic(&f, "RMQ_SYS_TRANS_OP_HALF_TOPIC", &op), 1);
  assert_string_equal(op.body[0], "0");
  /* Later passes change nothing and never ask. */
  at(&f, 10000);
  at(&f, 20000);
  assert_int_equal(atomic_load(&f.checks), 0);
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

static void test_rollback(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-rollback");
  fx_open(&f, 1);
  f.exec_answer = RMQ_ROLLBACK_MESSAGE;
  rmq_transaction_send_result r;
  ok(send_tx(&f, "r1", &r));
  assert_int_equal(r.local_transaction_state, RMQ_ROLLBACK_MESSAGE);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 0);
  assert_int_equal(queue_max(&f, "RMQ_SYS_TRANS_OP_HALF_TOPIC"), 1);
  at(&f, 40000);
  assert_int_equal(atomic_load(&f.checks), 0);
  assert_int_equal(read_topic(&f, TOPIC, &s), 0);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

/* UNKNOW: nothing until transaction_timeout has passed, then one check on
** the next pass, whose answer decides. */
static void unknow_then(int answer, const char *tag)
{
  fx f;
  fx_init(&f, tag);
  fx_open(&f, 1);
  f.exec_answer = RMQ_UNKNOW;
  f.check_answer = answer;
  rmq_transaction_send_result r;
  ok(send_tx(&f, "u1", &r));
  assert_int_equal(r.local_transaction_state, RMQ_UNKNOW);
  seen s;
  at(&f, 0);
  at(&f, 5999); /* younger than transaction_timeout (6000) */
  assert_int_equal(atomic_load(&f.checks), 0);
  assert_int_equal(read_topic(&f, TOPIC, &s), 0);
  at(&f, 7000);
  assert_int_equal(atomic_load(&f.checks), 1);
  assert_string_equal(f.check_topic, TOPIC);           /* the real topic and queue */
  assert_int_equal(f.check_qid, r.send_result.message_queue.queue_id);
  assert_string_equal(f.check_id, r.transaction_id);   /* msg_id is the transaction id */
  assert_int_equal(f.check_times, 1);
  assert_int_equal(read_topic(&f, TOPIC, &s), answer == RMQ_COMMIT_MESSAGE);
  if (answer == RMQ_COMMIT_MESSAGE) assert_string_equal(s.id[0], r.transaction_id);
  at(&f, 20000);
  at(&f, 40000);
  assert_int_equal(atomic_load(&f.checks), 1);
  assert_int_equal(read_topic(&f, TOPIC, &s), answer == RMQ_COMMIT_MESSAGE);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

static void test_unknow_check_commit(void **state) { (void)state; unknow_then(RMQ_COMMIT_MESSAGE, "tx-uc"); }
static void test_unknow_check_rollback(void **state) { (void)state; unknow_then(RMQ_ROLLBACK_MESSAGE, "tx-ur"); }

static void test_check_max(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-max");
  f.o.transaction_check_max = 3;
  fx_open(&f, 1);
  f.exec_answer = RMQ_UNKNOW;
  f.check_answer = RMQ_UNKNOW;
  rmq_transaction_send_result r;
  ok(send_tx(&f, "m1", &r));
  for (int i = 1; i <= 8; i++) at(&f, 6000 + i * 1000);
  assert_int_equal(atomic_load(&f.checks), 3);
  assert_int_equal(f.check_times, 3);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 0);
  assert_int_equal(read_topic(&f, "TRANS_CHECK_MAX_TIME_TOPIC", &s), 1);
  assert_string_equal(s.body[0], "m1");
  assert_non_null(strstr(f.log.text, "discarded to TRANS_CHECK_MAX_TIME_TOPIC"));
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

/* No check listener yet: passes leave the half alone (uncounted); setting
** one has it checked at the next run. */
static void test_checked_once_listener_set(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-nolistener");
  fx_open(&f, 0);
  f.exec_answer = RMQ_UNKNOW;
  rmq_transaction_send_result r;
  ok(send_tx(&f, "n1", &r));
  at(&f, 10000);
  at(&f, 20000);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 0);
  rmq_transaction_listener l = {on_exec, on_check, &f};
  ok(rmq_producer_set_transaction_listener(f.p, &l));
  f.clk.now_ms = T0 + 20001;
  ok(rmq_broker_run_due(f.b, NULL)); /* before the interval: setting the listener asked for a pass */
  assert_int_equal(atomic_load(&f.checks), 1);
  assert_int_equal(f.check_times, 1);
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  fx_shut(&f);
  tu_store_remove(f.path);
}

static void test_restart_undecided(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-restart");
  fx_open(&f, 1);
  f.exec_answer = RMQ_UNKNOW;
  f.check_answer = RMQ_UNKNOW;
  rmq_transaction_send_result r1, r2;
  ok(send_tx(&f, "a", &r1));
  ok(send_tx(&f, "b", &r2));
  at(&f, 7000); /* one check each, both still undecided */
  assert_int_equal(atomic_load(&f.checks), 2);
  fx_shut(&f);
  /* Reopen with a producer whose listener commits "a" and rolls "b" back. */
  f.check_answer = RMQ_COMMIT_MESSAGE;
  atomic_store(&f.checks, 0);
  fx_open(&f, 1);
  at(&f, 7001);
  assert_int_equal(atomic_load(&f.checks), 2);
  assert_int_equal(f.check_times, 2); /* the count survived the restart */
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 2);
  at(&f, 60000);
  assert_int_equal(read_topic(&f, TOPIC, &s), 2);
  assert_int_equal(atomic_load(&f.checks), 2);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

/* The check commits while the producer's execute still runs; the late
** ROLLBACK is ignored: one message, delivered once. */
static void test_late_decision_ignored(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-late");
  fx_open(&f, 1);
  f.exec_runs_due = 1;
  f.exec_answer = RMQ_ROLLBACK_MESSAGE;
  f.check_answer = RMQ_COMMIT_MESSAGE;
  rmq_transaction_send_result r;
  ok(send_tx(&f, "late", &r));
  assert_int_equal(atomic_load(&f.checks), 1);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  assert_non_null(strstr(f.log.text, "decided already"));
  fx_shut(&f);
  tu_store_remove(f.path);
}

/* CHECK_IMMUNITY_TIME_IN_SECONDS: not checked before it; others go on. */
static void test_check_immunity(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-immunity");
  fx_open(&f, 1);
  f.exec_answer = RMQ_UNKNOW;
  rmq_msg *m;
  ok(rmq_msg_create(&m, TOPIC, NULL, "imm", 3));
  ok(rmq_msg_put_user_property(m, "CHECK_IMMUNITY_TIME_IN_SECONDS", "60"));
  rmq_transaction_send_result r;
  ok(rmq_producer_send_message_in_transaction(f.p, m, &f, &r));
  rmq_msg_free(m);
  ok(send_tx(&f, "plain", &r));
  at(&f, 30000);
  assert_int_equal(atomic_load(&f.checks), 1); /* only "plain" */
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  assert_string_equal(s.body[0], "plain");
  at(&f, 61000);
  assert_int_equal(atomic_load(&f.checks), 2);
  assert_int_equal(read_topic(&f, TOPIC, &s), 2);
  fx_shut(&f);
  tu_store_remove(f.path);
}

static void test_errors(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-errors");
  ok(rmq_broker_open(f.path, &f.o, &f.b));
  ok(rmq_producer_create(f.b, GROUP, NULL, &f.p));
  rmq_transaction_send_result r;
  assert_int_equal(send_tx(&f, "x", &r), RMQ_ESTATE); /* no listener */
  assert_string_equal(rmq_errmsg(), "TransactionListener is null");
  rmq_transaction_listener bad = {NULL, on_check, &f};
  assert_int_equal(rmq_producer_set_transaction_listener(f.p, &bad), RMQ_EINVAL);
  rmq_transaction_listener l = {on_exec, on_check, &f};
  ok(rmq_producer_set_transaction_listener(f.p, &l));
  assert_int_equal(rmq_producer_send_message_in_transaction(f.p, NULL, NULL, &r), RMQ_ENOBODY);
  assert_int_equal(rmq_producer_send_message_in_transaction(NULL, NULL, NULL, &r), RMQ_EINVAL);
  rmq_msg *m;
  ok(rmq_msg_create(&m, TOPIC, NULL, "t", 1));
  ok(rmq_msg_set_delay_time_sec(m, 10));
  assert_int_equal(rmq_producer_send_message_in_transaction(f.p, m, &f, &r), RMQ_ETIMER);
  ok(rmq_msg_set_delay_time_sec(m, -1));
  ok(rmq_msg_set_topic(m, "bad/topic"));
  assert_int_equal(rmq_producer_send_message_in_transaction(f.p, m, &f, &r), RMQ_ETOPIC);
  rmq_msg_free(m);
  assert_int_equal(atomic_load(&f.execs), 0);
  assert_string_equal(rmq_local_transaction_state_name(RMQ_UNKNOW), "UNKNOW");
  assert_string_equal(rmq_local_transaction_state_name(7), "?");
  /* A delay level is dropped from a transactional message, as RocketMQ's client does. */
  ok(rmq_msg_create(&m, TOPIC, NULL, "d", 1));
  ok(rmq_msg_set_delay_time_level(m, 3));
  ok(rmq_producer_send_message_in_transaction(f.p, m, &f, &r));
  rmq_msg_free(m);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  fx_shut(&f);
  tu_store_remove(f.path);
}

/* Thousands of decided transactions (the decided set is compacted every
** 4096), then one UNKNOW: the check still finds it, before and after a
** restart, and nothing decided is asked about. */
static void test_many_transactions(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-many");
  fx_open(&f, 1);
  ok(rmq_topic_create(f.b, TOPIC, 4));
  rmq_transaction_send_result r;
  for (int i = 0; i < 9000; i++) {
    f.exec_answer = i % 3 == 2 ? RMQ_ROLLBACK_MESSAGE : RMQ_COMMIT_MESSAGE;
    ok(send_tx(&f, "bulk", &r));
  }
  f.exec_answer = RMQ_UNKNOW;
  ok(send_tx(&f, "last", &r));
  fx_shut(&f);
  fx_open(&f, 1);
  at(&f, 7000);
  assert_int_equal(atomic_load(&f.checks), 1);
  int64_t total = 0;
  for (int q = 0; q < 4; q++) {
    int64_t min, max;
    ok(rmq_topic_queue_offsets(f.b, TOPIC, q, &min, &max));
    total += max;
  }
  assert_int_equal(total, 6000 + 1);
  at(&f, 30000);
  assert_int_equal(atomic_load(&f.checks), 1);
  fx_shut(&f);
  tu_store_remove(f.path);
}

/* ---- crashes: a child process killed at each step ---------------------- */

enum { STEP_AFTER_HALF, STEP_AFTER_DECISION, STEP_IN_CHECK };

static int g_pipe = -1;

static int crash_exec(void *ctx, const rmq_msg *m, const char *tid, void *arg)
{
  (void)ctx; (void)m; (void)tid;
  int step = (int)(intptr_t)arg;
  if (step == STEP_AFTER_HALF) {
    if (write(g_pipe, "H", 1) != 1) _exit(3);
    for (;;) pause(); /* killed here: the half is stored, no decision */
  }
  return step == STEP_IN_CHECK ? RMQ_UNKNOW : RMQ_COMMIT_MESSAGE;
}

static int crash_check(void *ctx, const rmq_message_ext *m)
{
  (void)ctx; (void)m;
  if (write(g_pipe, "C", 1) != 1) _exit(3);
  for (;;) pause(); /* killed here: re-appended, not decided */
  return RMQ_UNKNOW;
}

static void crash_child(const char *path, int step, int fd)
{
  g_pipe = fd;
  tu_clock clk;
  rmq_broker_options o;
  tu_clock_opts(&o, 1 << 20, &clk, T0);
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  o.transaction_check_interval = 1000;
  rmq_broker *b;
  rmq_producer *p;
  if (rmq_broker_open(path, &o, &b) || rmq_producer_create(b, GROUP, NULL, &p)) _exit(2);
  rmq_transaction_listener l = {crash_exec, crash_check, NULL};
  rmq_producer_set_transaction_listener(p, &l);
  rmq_msg *m;
  rmq_msg_create(&m, TOPIC, "TagT", "crash", 5);
  rmq_transaction_send_result r;
  if (rmq_producer_send_message_in_transaction(p, m, (void *)(intptr_t)step, &r)) _exit(4);
  rmq_broker_flush(b);
  if (step == STEP_AFTER_DECISION) {
    if (write(fd, "D", 1) != 1) _exit(3);
    for (;;) pause();
  }
  clk.now_ms = T0 + 7000;
  rmq_broker_run_due(b, NULL); /* the check blocks in crash_check */
  _exit(5);
}

static void crash_at(int step, const char *tag)
{
  fx f;
  fx_init(&f, tag);
  tu_kill_child(crash_child, f.path, step);
  /* Reopen: the listener commits whatever it is asked about. */
  f.clk.now_ms = T0 + 8000;
  fx_open(&f, 1);
  for (int i = 0; i < 4; i++) at(&f, 8000 + i * 1000);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 1); /* exactly once, whatever the step */
  assert_string_equal(s.body[0], "crash");
  assert_int_equal(atomic_load(&f.checks), step == STEP_AFTER_DECISION ? 0 : 1);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

static void test_crash_after_half(void **state) { (void)state; crash_at(STEP_AFTER_HALF, "tx-crash-half"); }
static void test_crash_after_decision(void **state) { (void)state; crash_at(STEP_AFTER_DECISION, "tx-crash-dec"); }
static void test_crash_in_check(void **state) { (void)state; crash_at(STEP_IN_CHECK, "tx-crash-check"); }

/* A crash that keeps the COMMIT record but loses its op record (the op's
** bytes zeroed after the kill): the next open writes the op, so the check
** never asks and the message is there once. */
static void test_crash_commit_without_op(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-crash-noop");
  tu_kill_child(crash_child, f.path, STEP_AFTER_DECISION);
  /* The last record of the CommitLog is the op record: zero it. */
  char cl[1200];
  snprintf(cl, sizeof cl, "%s/commitlog/00000000000000000000", f.path);
  int fd = open(cl, O_RDWR);
  assert_true(fd >= 0);
  int64_t pos = 0, last = -1;
  for (;;) {
    uint8_t h[8];
    if (pread(fd, h, 8, pos) != 8) break;
    uint32_t size = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
    if (size == 0) break;
    last = pos;
    pos += size;
  }
  assert_true(last > 0);
  static uint8_t zeros[4096];
  assert_int_equal(pwrite(fd, zeros, (size_t)(pos - last), last), pos - last);
  close(fd);
  f.clk.now_ms = T0 + 8000;
  fx_open(&f, 1);
  if (!strstr(f.log.text, "lacked its op record")) fail_msg("log: %s", f.log.text);
  for (int i = 0; i < 4; i++) at(&f, 8000 + i * 1000);
  seen s;
  assert_int_equal(read_topic(&f, TOPIC, &s), 1);
  assert_int_equal(atomic_load(&f.checks), 0);
  fx_shut(&f);
  tu_rmqstore_check(f.path);
  tu_store_remove(f.path);
}

/* With the service thread on the real clock: UNKNOW resolved by a check. */
static void test_service_thread_checks(void **state)
{
  (void)state;
  fx f;
  fx_init(&f, "tx-svc");
  f.o.service_thread = 1;
  f.o.clock = NULL;
  f.o.transaction_timeout = 50;
  f.o.transaction_check_interval = 100;
  fx_open(&f, 1);
  f.exec_answer = RMQ_UNKNOW;
  rmq_transaction_send_result r;
  ok(send_tx(&f, "svc", &r));
  assert_true(tu_wait_atleast(&f.checks, 1, 10000));
  seen s;
  int64_t end = tu_mono_ms() + 5000;
  while (read_topic(&f, TOPIC, &s) < 1 && tu_mono_ms() < end) usleep(5000);
  assert_int_equal(s.n, 1);
  fx_shut(&f);
  tu_store_remove(f.path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_commit),
    cmocka_unit_test(test_rollback),
    cmocka_unit_test(test_unknow_check_commit),
    cmocka_unit_test(test_unknow_check_rollback),
    cmocka_unit_test(test_check_max),
    cmocka_unit_test(test_checked_once_listener_set),
    cmocka_unit_test(test_restart_undecided),
    cmocka_unit_test(test_late_decision_ignored),
    cmocka_unit_test(test_check_immunity),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_many_transactions),
    cmocka_unit_test(test_crash_after_half),
    cmocka_unit_test(test_crash_after_decision),
    cmocka_unit_test(test_crash_in_check),
    cmocka_unit_test(test_crash_commit_without_op),
    cmocka_unit_test(test_service_thread_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
