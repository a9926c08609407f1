/*
** test_group.c -- consumer groups (issue 5): queue allocation equal to
** RocketMQ's AllocateMessageQueueAveragely for 1..10 consumers over 1..16
** queues, recomputed when a topic's queue count changes and when members
** join or leave.
*/
#include "test_util.h"

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_clock_advance; (void)tu_small_opts;
  (void)tu_make_body; (void)tu_body_check; (void)tu_java_hash; (void)tu_read_exact;
}

/* AllocateMessageQueueAveragely.allocate, written from its Java source's
** arithmetic: the queue ids consumer `index` of `ncid` gets of `nq`. */
static int java_allocate(int nq, int ncid, int index, int *out)
{
  int mod = nq % ncid;
  int average = nq <= ncid ? 1 : (mod > 0 && index < mod ? nq / ncid + 1 : nq / ncid);
  int start = (mod > 0 && index < mod) ? index * average : index * average + mod;
  int range = average < nq - start ? average : nq - start;
  int n = 0;
  for (int i = 0; i < range; i++) out[n++] = (start + i) % nq;
  return n;
}

static int noop_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)ctx; (void)msgs; (void)n; (void)cc;
  return RMQ_CONSUME_SUCCESS;
}

static rmq_push_consumer *member(rmq_broker *b, const char *topic, const char *instance)
{
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.consume_thread_min = co.consume_thread_max = 1;
  co.instance_name = instance;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(b, "AllocGroup", &co, &c));
  ok(rmq_push_consumer_subscribe(c, topic, "*"));
  ok(rmq_push_consumer_register_listener_concurrently(c, noop_listener, NULL));
  ok(rmq_push_consumer_start(c));
  return c;
}

/* Every live member holds exactly what the Java allocation gives it, by its
** place among the sorted client ids; together they hold each queue once. */
static void check_members(rmq_push_consumer **mem, const int *live, int n, const char *topic, int nq)
{
  int ncid = 0;
  for (int i = 0; i < n; i++) ncid += live[i];
  int held[16] = {0};
  int index = 0;
  for (int i = 0; i < n; i++) {
    if (!live[i]) continue;
    rmq_message_queue got[32];
    size_t ngot;
    ok(rmq_push_consumer_assigned_queues(mem[i], got, 32, &ngot));
    int want[32];
    int nwant = java_allocate(nq, ncid, index, want);
    /* The group's %RETRY% queue is shared out too; count only `topic`'s. */
    size_t mine = 0;
    for (size_t j = 0; j < ngot; j++) mine += !strcmp(got[j].topic, topic);
    ngot = mine;
    if ((int)ngot != nwant)
      fail_msg("%d consumers, %d queues: consumer %d holds %zu queues, RocketMQ gives it %d", ncid, nq, index, ngot, nwant);
    for (int k = 0; k < nwant; k++) {
      int found = 0;
      for (size_t j = 0; j < ngot; j++)
        if (got[j].queue_id == want[k] && !strcmp(got[j].topic, topic)) found = 1;
      if (!found) fail_msg("%d consumers, %d queues: consumer %d lacks queue %d", ncid, nq, index, want[k]);
      held[want[k]]++;
    }
    index++;
  }
  for (int q = 0; q < nq; q++) assert_int_equal(held[q], 1);
}

static void test_allocation_table(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-alloc");
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  for (int n = 1; n <= 10; n++) {
    char topic[32];
    snprintf(topic, sizeof topic, "AllocT%d", n);
    ok(rmq_topic_create(b, topic, 1));
    rmq_push_consumer *mem[10];
    int live[10];
    /* Started in reverse: allocation follows the sorted ids, not joins. */
    for (int k = n - 1; k >= 0; k--) {
      char inst[16];
      snprintf(inst, sizeof inst, "c%02d", k);
      mem[k] = member(b, topic, inst);
      live[k] = 1;
    }
    for (int nq = 1; nq <= 16; nq++) {
      if (nq > 1) ok(rmq_topic_create(b, topic, nq)); /* a resize rebalances the group */
      check_members(mem, live, n, topic, nq);
    }
    /* Members leaving: the rest take their queues. */
    for (int k = 0; k < n - 1; k += 2) {
      rmq_push_consumer_shutdown(mem[k]);
      live[k] = 0;
      size_t none;
      ok(rmq_push_consumer_assigned_queues(mem[k], NULL, 0, &none));
      assert_int_equal(none, 0);
      check_members(mem, live, n, topic, 16);
    }
    for (int k = 0; k < n; k++) rmq_push_consumer_destroy(mem[k]);
  }
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

static void test_assigned_queues_args(void **state)
{
  (void)state;
  size_t n;
  assert_int_equal(rmq_push_consumer_assigned_queues(NULL, NULL, 0, &n), RMQ_EINVAL);
  char path[1024];
  tu_store_path(path, sizeof path, "group-args");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "ArgsT", 4));
  rmq_push_consumer *c = member(b, "ArgsT", "solo");
  assert_int_equal(rmq_push_consumer_assigned_queues(c, NULL, 1, &n), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_assigned_queues(c, NULL, 0, NULL), RMQ_EINVAL);
  rmq_message_queue two[2];
  ok(rmq_push_consumer_assigned_queues(c, two, 2, &n));
  assert_int_equal(n, 5); /* the count (4 + the %RETRY% queue), though only two fit */
  rmq_push_consumer_destroy(c);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* ---- consumer progress and reset by timestamp --------------------------- */

typedef struct bodies {
  pthread_mutex_t mu;
  atomic_int n;
  char got[64][16];
} bodies;

static int keep_bodies(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  bodies *b = ctx;
  pthread_mutex_lock(&b->mu);
  for (size_t i = 0; i < n; i++) {
    int k = atomic_load(&b->n);
    if (k < 64) snprintf(b->got[k], sizeof b->got[k], "%.*s", (int)msgs[i]->body_len, (const char *)msgs[i]->body);
    atomic_fetch_add(&b->n, 1);
  }
  pthread_mutex_unlock(&b->mu);
  return RMQ_CONSUME_SUCCESS;
}

static void progress_of(rmq_broker *b, const char *group, int64_t *consumer, int64_t *broker, int64_t *lag)
{
  rmq_queue_progress pg[2];
  size_t n;
  ok(rmq_broker_consumer_progress(b, group, "ProgT", pg, 2, &n));
  assert_int_equal(n, 1);
  assert_string_equal(pg[0].mq.topic, "ProgT");
  assert_int_equal(pg[0].mq.queue_id, 0);
  *consumer = pg[0].consumer_offset;
  *broker = pg[0].broker_offset;
  *lag = pg[0].lag;
}

static void test_progress_and_reset(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-reset");
  tu_clock clk = {1700000000000LL};
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  o.service_thread = 0;
  o.clock = tu_clock_read;
  o.clock_ctx = &clk;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, "ProgT", 1));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "ProgT", NULL, "x", 1));
  for (int i = 0; i < 10; i++) {
    char body[16];
    snprintf(body, sizeof body, "m%d", i);
    ok(rmq_msg_set_body(m, body, strlen(body)));
    ok(rmq_producer_send(p, m, NULL));
    clk.now_ms += 10;
  }
  int64_t co, bo, lag;
  progress_of(b, "ProgGroup", &co, &bo, &lag);
  assert_int_equal(co, -1); /* the group has consumed nothing */
  assert_int_equal(bo, 10);
  assert_int_equal(lag, 10);

  static bodies got;
  memset(&got, 0, sizeof got);
  pthread_mutex_init(&got.mu, NULL);
  rmq_push_consumer_options co_opts;
  rmq_push_consumer_options_init(&co_opts);
  co_opts.consume_thread_min = co_opts.consume_thread_max = 1;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(b, "ProgGroup", &co_opts, &c));
  ok(rmq_push_consumer_subscribe(c, "ProgT", "*"));
  ok(rmq_push_consumer_register_listener_concurrently(c, keep_bodies, &got));
  ok(rmq_push_consumer_start(c));
  assert_true(tu_wait_atleast(&got.n, 10, 10000));
  for (int i = 0; i < 500; i++) {
    progress_of(b, "ProgGroup", &co, &bo, &lag);
    if (co == 10) break;
    usleep(2000);
  }
  assert_int_equal(co, 10);
  assert_int_equal(lag, 0);

  /* Back to the message stored at +50 ms: m5..m9 come again. */
  ok(rmq_broker_reset_offset_by_time(b, "ProgGroup", "ProgT", 1700000000000LL + 50));
  assert_true(tu_wait_atleast(&got.n, 15, 10000));
  usleep(100000);
  assert_int_equal(atomic_load(&got.n), 15);
  pthread_mutex_lock(&got.mu);
  for (int i = 0; i < 5; i++) {
    char want[16];
    snprintf(want, sizeof want, "m%d", 5 + i);
    assert_string_equal(got.got[10 + i], want);
  }
  pthread_mutex_unlock(&got.mu);
  rmq_push_consumer_destroy(c);

  /* With no consumer running: only the stored offsets move. */
  ok(rmq_broker_reset_offset_by_time(b, "ProgGroup", "ProgT", 1700000000000LL + 25));
  progress_of(b, "ProgGroup", &co, &bo, &lag);
  assert_int_equal(co, 3);
  assert_int_equal(lag, 7);
  ok(rmq_broker_reset_offset_by_time(b, "ProgGroup", "ProgT", 1800000000000LL));
  progress_of(b, "ProgGroup", &co, &bo, &lag);
  assert_int_equal(co, 10); /* past the last message: the queue's end */
  ok(rmq_broker_reset_offset_by_time(b, "ProgGroup", "ProgT", 0));
  progress_of(b, "ProgGroup", &co, &bo, &lag);
  assert_int_equal(co, 0);

  size_t n;
  rmq_queue_progress pg[1];
  assert_int_equal(rmq_broker_consumer_progress(b, "ProgGroup", "NoSuchT", pg, 1, &n), RMQ_ENOTOPIC);
  assert_int_equal(rmq_broker_reset_offset_by_time(b, "ProgGroup", "NoSuchT", 0), RMQ_ENOTOPIC);
  assert_int_equal(rmq_broker_reset_offset_by_time(b, "bad/group", "ProgT", 0), RMQ_EGROUP);
  assert_int_equal(rmq_broker_consumer_progress(b, "ProgGroup", "ProgT", NULL, 1, &n), RMQ_EINVAL);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  /* The reset was persisted. */
  ok(rmq_broker_open(path, &o, &b));
  progress_of(b, "ProgGroup", &co, &bo, &lag);
  assert_int_equal(co, 0);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* ---- broadcasting -------------------------------------------------------- */

static rmq_push_consumer *bc_member(rmq_broker *b, const char *instance, bodies *got)
{
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.message_model = RMQ_BROADCASTING;
  co.consume_thread_min = co.consume_thread_max = 2;
  co.instance_name = instance;
  co.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(b, "BcGroup", &co, &c));
  ok(rmq_push_consumer_subscribe(c, "BcT", "*"));
  ok(rmq_push_consumer_register_listener_concurrently(c, keep_bodies, got));
  return c;
}

static void send_n(rmq_producer *p, int from, int to)
{
  rmq_msg *m;
  ok(rmq_msg_create(&m, "BcT", NULL, "x", 1));
  for (int i = from; i < to; i++) {
    char body[16];
    snprintf(body, sizeof body, "b%d", i);
    ok(rmq_msg_set_body(m, body, strlen(body)));
    ok(rmq_producer_send(p, m, NULL));
  }
  rmq_msg_free(m);
}

static void test_broadcasting_offsets(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-bc");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "BcT", 4));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  static bodies got[3];
  static const char *names[3] = {"bc1", "bc2", "bc3"};
  rmq_push_consumer *c[3];
  for (int i = 0; i < 3; i++) {
    memset(&got[i], 0, sizeof got[i]);
    pthread_mutex_init(&got[i].mu, NULL);
    c[i] = bc_member(b, names[i], &got[i]);
    ok(rmq_push_consumer_start(c[i]));
  }
  send_n(p, 0, 20);
  /* Every consumer gets every message: 3 x 20. */
  for (int i = 0; i < 3; i++) assert_true(tu_wait_atleast(&got[i].n, 20, 10000));
  usleep(100000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(atomic_load(&got[i].n), 20);
    rmq_push_consumer_destroy(c[i]);
  }
  /* Offsets are each consumer's own, in its own file. */
  char f[1200];
  snprintf(f, sizeof f, "%s/config/broadcastOffset.127.0.0.1@bc2.BcGroup.json", path);
  assert_int_equal(access(f, R_OK), 0);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));

  /* After a restart each resumes where it stopped: only the new ones. */
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  send_n(p, 20, 30);
  for (int i = 0; i < 3; i++) {
    memset(&got[i], 0, sizeof got[i]);
    pthread_mutex_init(&got[i].mu, NULL);
    c[i] = bc_member(b, names[i], &got[i]);
    ok(rmq_push_consumer_start(c[i]));
  }
  for (int i = 0; i < 3; i++) assert_true(tu_wait_atleast(&got[i].n, 10, 10000));
  usleep(200000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(atomic_load(&got[i].n), 10);
    for (int k = 0; k < 10; k++) {
      int v = atoi(got[i].got[k] + 1);
      if (v < 20) fail_msg("%s got %s again", names[i], got[i].got[k]);
    }
    rmq_push_consumer_destroy(c[i]);
  }
  /* Two running with one name (the default, DEFAULT, twice) is refused. */
  static bodies g1, g2;
  memset(&g1, 0, sizeof g1);
  memset(&g2, 0, sizeof g2);
  pthread_mutex_init(&g1.mu, NULL);
  pthread_mutex_init(&g2.mu, NULL);
  rmq_push_consumer *d1 = bc_member(b, NULL, &g1), *d2 = bc_member(b, NULL, &g2);
  ok(rmq_push_consumer_start(d1));
  assert_int_equal(rmq_push_consumer_start(d2), RMQ_ESTATE);
  assert_non_null(strstr(rmq_errmsg(), "has been created before"));
  rmq_push_consumer_destroy(d2);
  rmq_push_consumer_destroy(d1);

  /* Names that differ only in a character a file name cannot hold keep
  ** files of their own: a new "x_y" starts from the first offset even
  ** though "x/y" has consumed everything. */
  static bodies gs, gu;
  memset(&gs, 0, sizeof gs);
  memset(&gu, 0, sizeof gu);
  pthread_mutex_init(&gs.mu, NULL);
  pthread_mutex_init(&gu.mu, NULL);
  rmq_push_consumer *cs = bc_member(b, "x/y", &gs);
  ok(rmq_push_consumer_start(cs));
  assert_true(tu_wait_atleast(&gs.n, 30, 10000));
  rmq_push_consumer_destroy(cs);
  rmq_push_consumer *cu = bc_member(b, "x_y", &gu);
  ok(rmq_push_consumer_start(cu));
  assert_true(tu_wait_atleast(&gu.n, 30, 10000));
  rmq_push_consumer_destroy(cu);
  snprintf(f, sizeof f, "%s/config/broadcastOffset.127.0.0.1@x%%2Fy.BcGroup.json", path);
  assert_int_equal(access(f, R_OK), 0);
  /* A name too long for the offsets file is refused at start, not lost at
  ** every save. */
  char longname[101];
  memset(longname, 'I', 100);
  longname[100] = 0;
  static bodies gl;
  memset(&gl, 0, sizeof gl);
  pthread_mutex_init(&gl.mu, NULL);
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.message_model = RMQ_BROADCASTING;
  co.instance_name = longname;
  char group[121];
  memset(group, 'G', 120);
  group[120] = 0;
  rmq_push_consumer *cl;
  ok(rmq_push_consumer_create(b, group, &co, &cl));
  ok(rmq_push_consumer_subscribe(cl, "BcT", "*"));
  ok(rmq_push_consumer_register_listener_concurrently(cl, keep_bodies, &gl));
  assert_int_equal(rmq_push_consumer_start(cl), RMQ_EINVAL);
  assert_non_null(strstr(rmq_errmsg(), "offsets file name"));
  rmq_push_consumer_destroy(cl);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

/* ---- lite pull: assign, seek, poll, commit -------------------------------- */

static void test_lite_pull(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-lite");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "LiteT", 4));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "LiteT", "A", "x", 1));
  for (int i = 0; i < 40; i++) { /* round-robin: queue i % 4, offset i / 4 */
    char body[16];
    snprintf(body, sizeof body, "q%d-%d", i % 4, i / 4);
    ok(rmq_msg_set_body(m, body, strlen(body)));
    ok(rmq_msg_set_tags(m, (i / 4) % 2 ? "B" : "A"));
    ok(rmq_producer_send(p, m, NULL));
  }
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "LiteGroup", &c));
  rmq_pull_result r;
  assert_int_equal(rmq_pull_consumer_poll(c, 10, 0, &r), RMQ_ESTATE);
  rmq_message_queue mqs[4];
  size_t nq;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, "LiteT", mqs, 4, &nq));
  rmq_message_queue mine[2] = {mqs[1], mqs[3]};
  ok(rmq_pull_consumer_assign(c, mine, 2, "*"));
  /* Polls take the held queues in turn and nothing else. */
  int got[4] = {0};
  for (;;) {
    ok(rmq_pull_consumer_poll(c, 4, 0, &r));
    if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
    assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
    for (size_t i = 0; i < r.n; i++) {
      int q = r.msgs[i].queue_id;
      char want[16];
      snprintf(want, sizeof want, "q%d-%d", q, got[q]);
      assert_int_equal(r.msgs[i].body_len, (int)strlen(want));
      assert_memory_equal(r.msgs[i].body, want, strlen(want));
      got[q]++;
    }
  }
  assert_int_equal(got[0], 0);
  assert_int_equal(got[1], 10);
  assert_int_equal(got[2], 0);
  assert_int_equal(got[3], 10);
  /* Long polling: an empty poll waits for the timeout... */
  int64_t t0 = tu_mono_ms();
  ok(rmq_pull_consumer_poll(c, 4, 60, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_NEW_MSG);
  assert_true(tu_mono_ms() - t0 >= 55);
  /* ...and seek goes back. */
  ok(rmq_pull_consumer_seek(c, &mine[0], 7));
  ok(rmq_pull_consumer_poll(c, 10, 0, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.msgs[0].queue_id, 1);
  assert_int_equal(r.msgs[0].queue_offset, 7);
  assert_int_equal(r.n, 3);
  assert_int_equal(rmq_pull_consumer_seek(c, &mine[0], 11), RMQ_EINVAL);
  assert_non_null(strstr(rmq_errmsg(), "Seek offset illegal"));
  assert_int_equal(rmq_pull_consumer_seek(c, &mqs[0], 0), RMQ_ENOTFOUND);
  /* Nothing is committed until asked. */
  int64_t off;
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, &mine[0], &off), RMQ_ENOTFOUND);
  ok(rmq_pull_consumer_commit(c));
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mine[0], &off));
  assert_int_equal(off, 10);
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mine[1], &off));
  assert_int_equal(off, 10);
  /* A tag filter; auto-commit at every poll. */
  ok(rmq_pull_consumer_seek(c, &mine[1], 0));
  ok(rmq_pull_consumer_assign(c, &mine[1], 1, "B"));
  ok(rmq_pull_consumer_seek(c, &mine[1], 0));
  ok(rmq_pull_consumer_set_auto_commit(c, 1, 0));
  int nb = 0;
  for (;;) {
    ok(rmq_pull_consumer_poll(c, 32, 0, &r));
    if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
    for (size_t i = 0; i < r.n; i++) {
      assert_int_equal(r.msgs[i].tags_len, 1);
      assert_memory_equal(r.msgs[i].tags, "B", 1);
      nb++;
    }
  }
  assert_int_equal(nb, 5);
  ok(rmq_pull_consumer_poll(c, 32, 0, &r)); /* commits the position reached */
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mine[1], &off));
  assert_int_equal(off, 10);
  assert_int_equal(rmq_pull_consumer_set_auto_commit(c, 1, -1), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_assign(c, NULL, 1, "*"), RMQ_EINVAL);
  rmq_message_queue bad = mqs[0];
  bad.queue_id = 9;
  assert_int_equal(rmq_pull_consumer_assign(c, &bad, 1, "*"), RMQ_EQUEUE);
  assert_int_equal(rmq_pull_consumer_assign(c, mqs, 1, "a\x01"), RMQ_EEXPR);
  rmq_pull_consumer_destroy(c);
  /* A new handle of the group starts at the committed offsets. */
  ok(rmq_pull_consumer_create(b, "LiteGroup", &c));
  ok(rmq_pull_consumer_assign(c, mine, 2, NULL));
  ok(rmq_pull_consumer_poll(c, 4, 0, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_NEW_MSG);
  rmq_pull_consumer_destroy(c);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* ---- join and leave under load: nothing lost ------------------------------ */

enum { JL_N = 3000 };

typedef struct seenset {
  pthread_mutex_t mu;
  unsigned char seen[JL_N];
  atomic_int distinct, total;
} seenset;

static int mark_seen(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  seenset *s = ctx;
  for (size_t i = 0; i < n; i++) {
    char body[16];
    int len = msgs[i]->body_len < 15 ? msgs[i]->body_len : 15;
    memcpy(body, msgs[i]->body, (size_t)len);
    body[len] = 0;
    int k = atoi(body + 1);
    pthread_mutex_lock(&s->mu);
    if (k >= 0 && k < JL_N && !s->seen[k]++) atomic_fetch_add(&s->distinct, 1);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->total, 1);
  }
  return RMQ_CONSUME_SUCCESS;
}

/* A producer thread: n messages "h0".."h<n-1>" to topic, a 1 ms pause every
** pace_every sends. */
typedef struct ho_sender {
  rmq_broker *b;
  const char *topic;
  int n, pace_every;
  atomic_int sent;
} ho_sender;

static void *ho_send(void *arg)
{
  ho_sender *s = arg;
  rmq_producer *p;
  rmq_msg *m;
  if (rmq_producer_create(s->b, NULL, NULL, &p) || rmq_msg_create(&m, s->topic, NULL, "x", 1)) return NULL;
  for (int i = 0; i < s->n; i++) {
    char body[16];
    snprintf(body, sizeof body, "h%d", i);
    if (rmq_msg_set_body(m, body, strlen(body)) || rmq_producer_send(p, m, NULL)) break;
    atomic_fetch_add(&s->sent, 1);
    if (s->pace_every && i % s->pace_every == 0) usleep(1000);
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return NULL;
}

/* A started clustering member of group on topic: `threads` consume threads,
** listener batches of up to `batch`, handover_timeout_ms when >= 0. */
static rmq_push_consumer *start_member(rmq_broker *b, const char *group, const char *topic, const char *inst, int threads,
                                       int batch, int timeout_ms, rmq_listener_concurrently fn, void *ctx)
{
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.consume_thread_min = co.consume_thread_max = threads;
  co.consume_message_batch_max_size = batch;
  co.instance_name = inst;
  if (timeout_ms >= 0) co.handover_timeout_ms = timeout_ms;
  rmq_push_consumer *c;
  ok(rmq_push_consumer_create(b, group, &co, &c));
  ok(rmq_push_consumer_subscribe(c, topic, "*"));
  ok(rmq_push_consumer_register_listener_concurrently(c, fn, ctx));
  ok(rmq_push_consumer_start(c));
  return c;
}

static void test_join_leave_no_loss(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-join");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "JoinT", 8));
  static seenset s;
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.mu, NULL);
  rmq_push_consumer *a = start_member(b, "JoinGroup", "JoinT", "A", 2, 1, -1, mark_seen, &s);
  ho_sender js = {b, "JoinT", JL_N, 50, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, ho_send, &js), 0);
  assert_true(tu_wait_atleast(&js.sent, JL_N / 4, 10000));
  rmq_push_consumer *c2 = start_member(b, "JoinGroup", "JoinT", "B", 2, 1, -1, mark_seen, &s);  /* joins */
  assert_true(tu_wait_atleast(&js.sent, JL_N / 2, 10000));
  rmq_push_consumer *c3 = start_member(b, "JoinGroup", "JoinT", "C", 2, 1, -1, mark_seen, &s);  /* joins */
  assert_true(tu_wait_atleast(&js.sent, 3 * JL_N / 4, 10000));
  rmq_push_consumer_destroy(a);                   /* leaves */
  pthread_join(th, NULL);
  assert_int_equal(atomic_load(&js.sent), JL_N);
  if (!tu_wait_atleast(&s.distinct, JL_N, 15000)) fail_msg("%d of %d messages received", atomic_load(&s.distinct), JL_N);
  rmq_push_consumer_destroy(c2);
  rmq_push_consumer_destroy(c3);
  /* At least once: every message, a few twice at most around hand-overs. */
  assert_int_equal(atomic_load(&s.distinct), JL_N);
  print_message("  %d deliveries for %d messages\n", atomic_load(&s.total), JL_N);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* ---- exact hand-over: members join and leave under load, slow listener ---- */

enum { HO_N = 4000 };
#ifndef HO_TIMEOUT
#define HO_TIMEOUT -1
#endif

typedef struct hoset {
  atomic_int inside[HO_N]; /* listener calls holding message k now */
  atomic_int acked[HO_N];  /* k's listener call returned SUCCESS */
  atomic_int overlaps;     /* deliveries that began while k was in another call */
  atomic_int again;        /* deliveries of a k already acknowledged */
  atomic_int distinct, total;
  int slow_us;
} hoset;

static int ho_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  hoset *s = ctx;
  int ks[64];
  for (size_t i = 0; i < n && i < 64; i++) {
    char body[16];
    int len = msgs[i]->body_len < 15 ? msgs[i]->body_len : 15;
    memcpy(body, msgs[i]->body, (size_t)len);
    body[len] = 0;
    int k = ks[i] = atoi(body + 1);
    if (k < 0 || k >= HO_N) continue;
    if (atomic_fetch_add(&s->inside[k], 1) != 0) atomic_fetch_add(&s->overlaps, 1);
    if (atomic_load(&s->acked[k])) atomic_fetch_add(&s->again, 1);
    atomic_fetch_add(&s->total, 1);
  }
  usleep((useconds_t)s->slow_us);
  for (size_t i = 0; i < n && i < 64; i++) {
    int k = ks[i];
    if (k < 0 || k >= HO_N) continue;
    if (atomic_exchange(&s->acked[k], 1) == 0) atomic_fetch_add(&s->distinct, 1);
    atomic_fetch_sub(&s->inside[k], 1);
  }
  return RMQ_CONSUME_SUCCESS;
}

/* Members join and leave seven times while a producer sends and every
** listener call takes 10 ms: every message is delivered exactly once, and no
** delivery starts while another call on the same message runs. */
static void test_handover_exact(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-handover");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "HandT", 8));
  static hoset s;
  memset(&s, 0, sizeof s);
  s.slow_us = 10000;
  ho_sender hs = {b, "HandT", HO_N, 40, 0};
  rmq_push_consumer *m[4] = {NULL};
  m[0] = start_member(b, "HandGroup", "HandT", "A", 4, 2, HO_TIMEOUT, ho_listener, &s);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, ho_send, &hs), 0);
  /* join B, join C, leave A, join D, leave B, join A', leave C: each step at
  ** a new eighth of the sending. */
  static const struct { int slot; const char *inst; } steps[] = {
    {1, "B"}, {2, "C"}, {0, NULL}, {3, "D"}, {1, NULL}, {0, "A2"}, {2, NULL},
  };
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    assert_true(tu_wait_atleast(&hs.sent, (int)(i + 1) * HO_N / 8, 20000));
    int k = steps[i].slot;
    if (steps[i].inst) m[k] = start_member(b, "HandGroup", "HandT", steps[i].inst, 4, 2, HO_TIMEOUT, ho_listener, &s);
    else { rmq_push_consumer_destroy(m[k]); m[k] = NULL; }
  }
  pthread_join(th, NULL);
  assert_int_equal(atomic_load(&hs.sent), HO_N);
  if (!tu_wait_atleast(&s.distinct, HO_N, 30000)) fail_msg("%d of %d messages consumed", atomic_load(&s.distinct), HO_N);
  for (int k = 0; k < 4; k++)
    if (m[k]) rmq_push_consumer_destroy(m[k]);
  print_message("  %d deliveries of %d messages, %d overlapping, %d of acknowledged messages\n", atomic_load(&s.total),
                HO_N, atomic_load(&s.overlaps), atomic_load(&s.again));
  assert_int_equal(atomic_load(&s.overlaps), 0);
  assert_int_equal(atomic_load(&s.again), 0);
  assert_int_equal(atomic_load(&s.total), HO_N);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* A listener call that outlasts handover_timeout_ms no longer holds the
** queue: the new owner delivers its message again, and a warning says so.
** With the timeout at 0 the hand-over does not wait at all. */
typedef struct blocker {
  atomic_int entered, release, calls;
} blocker;

static int block_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)msgs; (void)n; (void)cc;
  blocker *bl = ctx;
  atomic_fetch_add(&bl->calls, 1);
  if (atomic_fetch_add(&bl->entered, 1) == 0)
    while (!atomic_load(&bl->release)) usleep(1000);
  return RMQ_CONSUME_SUCCESS;
}

static void handover_timeout_case(int timeout_ms)
{
  char path[1024];
  tu_store_path(path, sizeof path, "group-hto");
  static tu_log log;
  memset(&log, 0, sizeof log);
  rmq_broker_options bo;
  rmq_broker_options_init(&bo);
  bo.log = tu_log_fn;
  bo.log_ctx = &log;
  rmq_broker *b;
  ok(rmq_broker_open(path, &bo, &b));
  ok(rmq_topic_create(b, "HtoT", 1));
  static blocker bl;
  memset(&bl, 0, sizeof bl);
  rmq_push_consumer *c[2];
  for (int i = 0; i < 2; i++) {
    rmq_push_consumer_options co;
    rmq_push_consumer_options_init(&co);
    co.consume_thread_min = co.consume_thread_max = 1;
    co.handover_timeout_ms = timeout_ms;
    co.instance_name = i ? "B" : "A"; /* B sorts after A: the single queue moves to... */
    ok(rmq_push_consumer_create(b, "HtoGroup", &co, &c[i]));
    ok(rmq_push_consumer_subscribe(c[i], "HtoT", "*"));
    ok(rmq_push_consumer_register_listener_concurrently(c[i], block_listener, &bl));
  }
  /* ... B alone first, then A joins and takes queue 0 (A sorts first). */
  ok(rmq_push_consumer_start(c[1]));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "HtoT", NULL, "x", 1));
  ok(rmq_producer_send(p, m, NULL));
  assert_true(tu_wait_atleast(&bl.entered, 1, 5000)); /* B is inside the call, blocked */
  int64_t t0 = tu_mono_ms();
  ok(rmq_push_consumer_start(c[0]));
  /* A delivers the same message once B lets go, which it does after the timeout. */
  assert_true(tu_wait_atleast(&bl.calls, 2, 10000));
  int64_t waited = tu_mono_ms() - t0;
  print_message("  timeout %d ms: redelivered after %lld ms\n", timeout_ms, (long long)waited);
  assert_true(waited >= timeout_ms);
  if (timeout_ms) assert_non_null(strstr(log.text, "handed over while a listener call on it still runs"));
  atomic_store(&bl.release, 1);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  rmq_push_consumer_destroy(c[0]);
  rmq_push_consumer_destroy(c[1]);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

static void test_handover_timeout(void **state)
{
  (void)state;
  handover_timeout_case(300);
  handover_timeout_case(0);
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  assert_int_equal(co.handover_timeout_ms, 60000);
}

/* A group takes at most 256 started consumers in one process: the 257th
** start is refused with RMQ_ESTATE rather than left without queues. */
static void test_group_member_limit(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "group-limit");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "LimitT", 4));
  enum { N = 257 };
  static rmq_push_consumer *cs[N];
  int64_t t0 = tu_mono_ms();
  for (int i = 0; i < N; i++) {
    rmq_push_consumer_options co;
    rmq_push_consumer_options_init(&co);
    co.consume_thread_min = co.consume_thread_max = 1;
    char inst[32];
    snprintf(inst, sizeof inst, "m%03d", i);
    co.instance_name = inst;
    ok(rmq_push_consumer_create(b, "LimitGroup", &co, &cs[i]));
    ok(rmq_push_consumer_subscribe(cs[i], "LimitT", "*"));
    ok(rmq_push_consumer_register_listener_concurrently(cs[i], noop_listener, NULL));
    int rc = rmq_push_consumer_start(cs[i]);
    if (i < 256) {
      ok(rc);
    } else {
      assert_int_equal(rc, RMQ_ESTATE);
      assert_non_null(strstr(rmq_errmsg(), "at most 256"));
    }
  }
  /* One leaves; the refused one may start now. */
  rmq_push_consumer_destroy(cs[0]);
  cs[0] = NULL;
  ok(rmq_push_consumer_start(cs[N - 1]));
  for (int i = 0; i < N; i++)
    if (cs[i]) rmq_push_consumer_destroy(cs[i]);
  print_message("  %d consumers started and stopped in %lld ms\n", N, (long long)(tu_mono_ms() - t0));
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_allocation_table),
    cmocka_unit_test(test_assigned_queues_args),
    cmocka_unit_test(test_progress_and_reset),
    cmocka_unit_test(test_broadcasting_offsets),
    cmocka_unit_test(test_lite_pull),
    cmocka_unit_test(test_join_leave_no_loss),
    cmocka_unit_test(test_handover_exact),
    cmocka_unit_test(test_handover_timeout),
    cmocka_unit_test(test_group_member_limit),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}
