/*
** test_producer.c -- DefaultMQProducer's behaviour: sync, async and oneway
** sends, SendResult fields and ids (ROCKETMQ.md 5, 9), queue selection, topic
** auto-creation (8), concurrent SYNC_FLUSH senders, and every validation
** error (7) with its message, each proven to store nothing.
*/
#include "test_util.h"
#include "rmq_int.h"

#include <ctype.h>
#include <inttypes.h>

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_wait_atleast; (void)tu_clock_advance; (void)tu_clock_read;
}

static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct fx {
  char path[1024];
  rmq_broker *b;
  rmq_producer *p;
} fx;

static void small_options(rmq_broker_options *o)
{
  rmq_broker_options_init(o);
  o->mapped_file_size_commit_log = 4 << 20;
  o->mapped_file_size_consume_queue = 20 * 4096;
}

static void fx_open(fx *f, const char *tag, const rmq_broker_options *o)
{
  memset(f, 0, sizeof *f);
  tu_store_path(f->path, sizeof f->path, tag);
  rmq_broker_options def;
  if (!o) { small_options(&def); o = &def; }
  ok(rmq_broker_open(f->path, o, &f->b));
  ok(rmq_producer_create(f->b, "ProducerGroup", NULL, &f->p));
}

static void fx_close(fx *f)
{
  rmq_producer_destroy(f->p);
  ok(rmq_broker_close(f->b));
  tu_store_remove(f->path);
}

static int is_upper_hex(const char *s, size_t n)
{
  if (strlen(s) != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'A' && s[i] <= 'F')) return 0;
  return 1;
}

/* Encoded size of a v1 record (ROCKETMQ.md 3): 91 fixed bytes + body + topic
** + properties ("name\1value\2" each). */
static int32_t record_size(size_t body, size_t topic, size_t props) { return (int32_t)(91 + body + topic + props); }

static size_t prop_len(const char *name, const char *value) { return strlen(name) + strlen(value) + 2; }

/* Pulls every message of every queue of topic into *n (msgs copied). */
typedef struct pulled {
  rmq_message_ext *m[4096];
  size_t n;
} pulled;

static void pull_all(rmq_broker *b, const char *topic, pulled *out)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "PullAllGroup", &c));
  rmq_message_queue mqs[64];
  size_t nq;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, mqs, 64, &nq));
  out->n = 0;
  for (size_t q = 0; q < nq; q++) {
    int64_t off = 0;
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mqs[q], "*", off, 256, &r));
      if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
      assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
      for (size_t i = 0; i < r.n; i++) {
        assert_true(out->n < 4096);
        ok(rmq_message_ext_copy(&r.msgs[i], &out->m[out->n++]));
      }
      off = r.next_begin_offset;
    }
  }
  rmq_pull_consumer_destroy(c);
}

static void pulled_free(pulled *p)
{
  for (size_t i = 0; i < p->n; i++) rmq_message_ext_free(p->m[i]);
  p->n = 0;
}

static int64_t total_messages(rmq_broker *b)
{
  rmq_topic_info ti[64];
  size_t n;
  ok(rmq_topic_list(b, ti, 64, &n));
  int64_t sum = 0;
  for (size_t i = 0; i < n && i < 64; i++)
    for (int q = 0; q < ti[i].read_queue_nums; q++) {
      int64_t mn, mx;
      ok(rmq_topic_queue_offsets(b, ti[i].topic_name, q, &mn, &mx));
      sum += mx - mn;
    }
  return sum;
}

static size_t topic_count(rmq_broker *b)
{
  size_t n;
  ok(rmq_topic_list(b, NULL, 0, &n));
  return n;
}

/* ------------------------------------------------------------------------- */
/* Sync send                                                                  */
/* ------------------------------------------------------------------------- */

static void test_sync_send_result(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-sync", NULL);
  ok(rmq_topic_create(f.b, "SyncT", 4));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "SyncT", "TagA", NULL, 0));
  rmq_send_result r[12];
  char pid_hex[8];
  snprintf(pid_hex, sizeof pid_hex, "%04X", (unsigned)getpid() & 0xFFFF);
  for (int i = 0; i < 12; i++) {
    char body[32];
    int n = snprintf(body, sizeof body, "Hello RocketMQ %d", i);
    ok(rmq_msg_set_body(m, body, (size_t)n));
    int64_t before = wall_ms();
    ok(rmq_producer_send(f.p, m, &r[i]));
    int64_t after = wall_ms();
    assert_int_equal(r[i].send_status, RMQ_SEND_OK);
    /* msgId: UNIQ_KEY, 32 uppercase hex: IPv4 127.0.0.1 | pid low 16 bits | ... */
    assert_true(is_upper_hex(r[i].msg_id, 32));
    assert_memory_equal(r[i].msg_id, "7F000001", 8);
    assert_memory_equal(r[i].msg_id + 8, pid_hex, 4);
    /* offsetMsgId: store host 127.0.0.1, port 10911, commitlog offset. */
    char want[64];
    snprintf(want, sizeof want, "7F00000100002A9F%016" PRIX64, (uint64_t)r[i].commit_log_offset);
    assert_string_equal(r[i].offset_msg_id, want);
    assert_string_equal(r[i].message_queue.topic, "SyncT");
    assert_string_equal(r[i].message_queue.broker_name, "rmq-broker");
    assert_int_equal(r[i].store_size,
                     record_size((size_t)n, 5, prop_len("TAGS", "TagA") + prop_len("WAIT", "true") + prop_len("UNIQ_KEY", r[i].msg_id)));
    assert_in_range(r[i].store_timestamp, before, after);
    /* Round robin over the 4 queues; queue offsets count per queue. */
    assert_int_equal(r[i].message_queue.queue_id, (r[0].message_queue.queue_id + i) % 4);
    assert_int_equal(r[i].queue_offset, i / 4);
    /* Records are appended back to back, the first at offset 0. */
    if (i == 0) assert_int_equal(r[i].commit_log_offset, 0);
    else assert_int_equal(r[i].commit_log_offset, r[i - 1].commit_log_offset + r[i - 1].store_size);
    for (int k = 0; k < i; k++) assert_string_not_equal(r[i].msg_id, r[k].msg_id);
    /* The process-constant part of the id stays the same. */
    assert_memory_equal(r[i].msg_id, r[0].msg_id, 20);
  }
  rmq_msg_free(m);

  /* What was stored is what the results said. */
  pulled pl;
  pull_all(f.b, "SyncT", &pl);
  assert_int_equal(pl.n, 12);
  for (size_t k = 0; k < pl.n; k++) {
    const rmq_message_ext *e = pl.m[k];
    int i = -1;
    for (int j = 0; j < 12; j++)
      if (!strcmp(e->msg_id, r[j].msg_id)) i = j;
    assert_true(i >= 0);
    const char *v;
    size_t vl;
    ok(rmq_message_ext_property(e, "UNIQ_KEY", &v, &vl));
    assert_int_equal(vl, 32);
    assert_memory_equal(v, r[i].msg_id, 32);
    assert_string_equal(e->offset_msg_id, r[i].offset_msg_id);
    assert_int_equal(e->queue_id, r[i].message_queue.queue_id);
    assert_int_equal(e->queue_offset, r[i].queue_offset);
    assert_int_equal(e->commit_log_offset, r[i].commit_log_offset);
    assert_int_equal(e->store_size, r[i].store_size);
    assert_int_equal(e->store_timestamp, r[i].store_timestamp);
    char body[32];
    int n = snprintf(body, sizeof body, "Hello RocketMQ %d", i);
    assert_int_equal(e->body_len, n);
    assert_memory_equal(e->body, body, (size_t)n);
  }
  pulled_free(&pl);
  fx_close(&f);
}

static void test_store_host_in_offset_msg_id(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.store_host = "10.1.2.3";
  o.store_port = 9876;
  o.broker_name = "broker-a";
  fx f;
  fx_open(&f, "prod-host", &o);
  rmq_msg *m;
  ok(rmq_msg_create(&m, "HostT", NULL, "x", 1));
  rmq_send_result r1, r2;
  ok(rmq_producer_send(f.p, m, &r1));
  ok(rmq_producer_send(f.p, m, &r2));
  char want[64];
  snprintf(want, sizeof want, "0A01020300002694%016" PRIX64, (uint64_t)r2.commit_log_offset);
  assert_string_equal(r2.offset_msg_id, want);
  assert_true(r2.commit_log_offset > 0);
  assert_string_equal(r2.message_queue.broker_name, "broker-a");
  /* The store host is in the record too. */
  pulled pl;
  pull_all(f.b, "HostT", &pl);
  assert_int_equal(pl.n, 2);
  const uint8_t ip[4] = {10, 1, 2, 3};
  assert_int_equal(pl.m[0]->store_host_len, 4);
  assert_memory_equal(pl.m[0]->store_host, ip, 4);
  assert_int_equal(pl.m[0]->store_port, 9876);
  assert_string_equal(pl.m[0]->broker_name, "broker-a");
  pulled_free(&pl);
  rmq_msg_free(m);
  fx_close(&f);
}

static void test_send_result_format(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.broker_name = "broker-a";
  fx f;
  fx_open(&f, "prod-fmt", &o);
  ok(rmq_topic_create(f.b, "FmtT", 2));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "FmtT", NULL, "x", 1));
  rmq_send_result r;
  for (int i = 0; i < 3; i++) ok(rmq_producer_send(f.p, m, &r));
  char want[512], got[512];
  snprintf(want, sizeof want,
           "SendResult [sendStatus=SEND_OK, msgId=%s, offsetMsgId=%s, messageQueue=MessageQueue [topic=FmtT, "
           "brokerName=broker-a, queueId=%d], queueOffset=1]",
           r.msg_id, r.offset_msg_id, r.message_queue.queue_id);
  int n = rmq_send_result_format(&r, got, sizeof got);
  assert_string_equal(got, want);
  assert_int_equal(n, (int)strlen(want));
  /* snprintf-like: the full length back, the buffer cut and terminated. */
  char small[10];
  assert_int_equal(rmq_send_result_format(&r, small, sizeof small), n);
  assert_string_equal(small, "SendResul");
  assert_int_equal(rmq_send_result_format(&r, NULL, 0), n);
  r.send_status = RMQ_FLUSH_DISK_TIMEOUT;
  rmq_send_result_format(&r, got, sizeof got);
  assert_non_null(strstr(got, "sendStatus=FLUSH_DISK_TIMEOUT, "));
  rmq_msg_free(m);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Async and oneway                                                           */
/* ------------------------------------------------------------------------- */

typedef struct slot {
  atomic_int calls;
  int rc;
  int has_result;
  rmq_send_result r;
  pthread_t th;
} slot;

static void slot_cb(void *ctx, int rc, const rmq_send_result *r)
{
  slot *s = ctx;
  s->rc = rc;
  s->has_result = r != NULL;
  if (r) s->r = *r;
  s->th = pthread_self();
  atomic_fetch_add(&s->calls, 1);
}

static int slots_done(slot *s, int n)
{
  for (int i = 0; i < n; i++)
    if (atomic_load(&s[i].calls) < 1) return 0;
  return 1;
}

static int wait_slots(slot *s, int n, int timeout_ms)
{
  int64_t end = tu_mono_ms() + timeout_ms;
  while (!slots_done(s, n)) {
    if (tu_mono_ms() > end) return 0;
    usleep(2000);
  }
  return 1;
}

static void check_slots(slot *s, int n, int nqueues)
{
  int64_t per_queue[16] = {0};
  for (int i = 0; i < n; i++) {
    if (atomic_load(&s[i].calls) != 1) fail_msg("send %d: callback ran %d times", i, atomic_load(&s[i].calls));
    assert_int_equal(s[i].rc, RMQ_OK);
    assert_true(s[i].has_result);
    assert_int_equal(s[i].r.send_status, RMQ_SEND_OK);
    assert_true(is_upper_hex(s[i].r.msg_id, 32));
    int q = s[i].r.message_queue.queue_id;
    assert_in_range(q, 0, nqueues - 1);
    assert_int_equal(s[i].r.queue_offset, per_queue[q]); /* in send order per queue */
    per_queue[q]++;
    for (int k = 0; k < i; k++) assert_string_not_equal(s[i].r.msg_id, s[k].r.msg_id);
  }
}

static void test_async_async_flush(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-async", NULL);
  ok(rmq_topic_create(f.b, "AsyncT", 4));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "AsyncT", NULL, "async", 5));
  enum { N = 40 };
  static slot s[N];
  memset(s, 0, sizeof s);
  for (int i = 0; i < N; i++) {
    ok(rmq_producer_send_async(f.p, m, slot_cb, &s[i]));
    /* ASYNC_FLUSH: completed on the sending thread before the call returns. */
    assert_int_equal(atomic_load(&s[i].calls), 1);
    assert_true(pthread_equal(s[i].th, pthread_self()));
  }
  check_slots(s, N, 4);
  /* A validation error is returned and the callback is not called. */
  slot bad;
  memset(&bad, 0, sizeof bad);
  ok(rmq_msg_set_body(m, NULL, 0));
  assert_int_equal(rmq_producer_send_async(f.p, m, slot_cb, &bad), RMQ_ENOBODY);
  rmq_producer_destroy(f.p);
  f.p = NULL;
  assert_int_equal(atomic_load(&bad.calls), 0);
  check_slots(s, N, 4); /* still exactly once after destroy */
  assert_int_equal(total_messages(f.b), N);
  rmq_msg_free(m);
  fx_close(&f);
}

static void test_async_sync_flush_service_thread(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  fx f;
  fx_open(&f, "prod-async-sync", &o);
  ok(rmq_topic_create(f.b, "AsyncT", 4));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "AsyncT", NULL, "async", 5));
  enum { N = 60 };
  static slot s[N];
  memset(s, 0, sizeof s);
  for (int i = 0; i < N; i++) ok(rmq_producer_send_async(f.p, m, slot_cb, &s[i]));
  /* The service thread completes them once the flush covers them. */
  if (!wait_slots(s, N, 10000)) fail_msg("async sends not completed within 10 s");
  for (int i = 0; i < N; i++) assert_false(pthread_equal(s[i].th, pthread_self()));
  check_slots(s, N, 4);
  rmq_producer_destroy(f.p);
  f.p = NULL;
  check_slots(s, N, 4);
  assert_int_equal(total_messages(f.b), N);
  rmq_msg_free(m);
  fx_close(&f);
}

static void test_async_sync_flush_no_service_thread(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  o.service_thread = 0;
  fx f;
  fx_open(&f, "prod-async-nosvc", &o);
  ok(rmq_topic_create(f.b, "AsyncT", 2));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "AsyncT", NULL, "async", 5));
  enum { N = 10, M = 5, K = 4 };
  static slot s[N + M + K];
  memset(s, 0, sizeof s);

  /* 1: no rmq thread exists, so nothing completes until run_due. */
  for (int i = 0; i < N; i++) ok(rmq_producer_send_async(f.p, m, slot_cb, &s[i]));
  for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&s[i].calls), 0);
  assert_int_equal(total_messages(f.b), N); /* but they are stored already */
  int64_t next;
  ok(rmq_broker_run_due(f.b, &next));
  check_slots(s, N, 2);
  for (int i = 0; i < N; i++) assert_true(pthread_equal(s[i].th, pthread_self()));

  /* 2: rmq_broker_flush completes them too. */
  for (int i = N; i < N + K; i++) ok(rmq_producer_send_async(f.p, m, slot_cb, &s[i]));
  for (int i = N; i < N + K; i++) assert_int_equal(atomic_load(&s[i].calls), 0);
  ok(rmq_broker_flush(f.b));
  for (int i = N; i < N + K; i++) assert_int_equal(atomic_load(&s[i].calls), 1);

  /* 3: rmq_producer_destroy waits for (and here runs) its pending ones. */
  for (int i = N + K; i < N + K + M; i++) ok(rmq_producer_send_async(f.p, m, slot_cb, &s[i]));
  for (int i = N + K; i < N + K + M; i++) assert_int_equal(atomic_load(&s[i].calls), 0);
  rmq_producer_destroy(f.p);
  f.p = NULL;
  check_slots(s, N + K + M, 2);

  /* WAIT=false: a SYNC_FLUSH async send does not wait for the disk. */
  ok(rmq_producer_create(f.b, "ProducerGroup", NULL, &f.p));
  ok(rmq_msg_set_wait_store_msg_ok(m, 0));
  slot w;
  memset(&w, 0, sizeof w);
  ok(rmq_producer_send_async(f.p, m, slot_cb, &w));
  assert_int_equal(atomic_load(&w.calls), 1);
  assert_int_equal(w.rc, RMQ_OK);
  rmq_msg_free(m);
  fx_close(&f);
  assert_int_equal(atomic_load(&w.calls), 1);
}

static void test_oneway(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-oneway", NULL);
  ok(rmq_topic_create(f.b, "OnewayT", 1));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "OnewayT", "TagO", "fire and forget", 15));
  ok(rmq_producer_send_oneway(f.p, m));
  /* The message may change at once: it was stored before the call returned. */
  ok(rmq_msg_set_body(m, "second", 6));
  ok(rmq_producer_send_oneway(f.p, m));
  ok(rmq_msg_set_body(m, NULL, 0));
  assert_int_equal(rmq_producer_send_oneway(f.p, m), RMQ_ENOBODY);
  rmq_msg_free(m);

  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f.b, "OnewayPull", &c));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "OnewayT");
  rmq_pull_result r;
  ok(rmq_pull_consumer_pull(c, &mq, "TagO", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.msgs[0].body_len, 15);
  assert_memory_equal(r.msgs[0].body, "fire and forget", 15);
  assert_memory_equal(r.msgs[1].body, "second", 6);
  assert_true(is_upper_hex(r.msgs[0].msg_id, 32)); /* oneway sends get a UNIQ_KEY too */
  assert_string_not_equal(r.msgs[0].msg_id, r.msgs[1].msg_id);
  rmq_pull_consumer_destroy(c);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Queues and topics                                                          */
/* ------------------------------------------------------------------------- */

static void test_send_to_queue(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-queue", NULL);
  ok(rmq_topic_create(f.b, "QueueT", 4));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "QueueT", NULL, "q", 1));
  rmq_send_result r;
  for (int i = 0; i < 5; i++) {
    ok(rmq_producer_send_to_queue(f.p, m, 2, &r));
    assert_int_equal(r.message_queue.queue_id, 2);
    assert_int_equal(r.queue_offset, i);
  }
  ok(rmq_producer_send_to_queue(f.p, m, 3, &r));
  assert_int_equal(r.message_queue.queue_id, 3);
  assert_int_equal(r.queue_offset, 0);
  int64_t mn, mx;
  ok(rmq_topic_queue_offsets(f.b, "QueueT", 2, &mn, &mx));
  assert_int_equal(mx, 5);
  ok(rmq_topic_queue_offsets(f.b, "QueueT", 0, &mn, &mx));
  assert_int_equal(mx, 0);

  assert_int_equal(rmq_producer_send_to_queue(f.p, m, 4, &r), RMQ_EQUEUE);
  assert_non_null(strstr(rmq_errmsg(), "4"));
  assert_non_null(strstr(rmq_errmsg(), "QueueT"));
  assert_int_equal(rmq_producer_send_to_queue(f.p, m, -1, &r), RMQ_EQUEUE);
  assert_int_equal(rmq_producer_send_to_queue(f.p, m, RMQ_MAX_QUEUE_NUMS, &r), RMQ_EQUEUE);
  assert_int_equal(total_messages(f.b), 6);
  /* An unknown topic: as RocketMQ's broker (msgCheck), the send creates the
  ** topic first (4 queues), then refuses queue 9; no message is stored. */
  ok(rmq_msg_set_topic(m, "QueueUnknown"));
  assert_int_equal(rmq_producer_send_to_queue(f.p, m, 9, &r), RMQ_EQUEUE);
  assert_int_equal(total_messages(f.b), 6);
  ok(rmq_producer_send_to_queue(f.p, m, 3, &r));
  assert_int_equal(r.message_queue.queue_id, 3);
  assert_int_equal(rmq_producer_send_to_queue(f.p, m, 4, &r), RMQ_EQUEUE);
  rmq_msg_free(m);
  fx_close(&f);
}

static void check_auto_create(int producer_default, int broker_default, int want_queues)
{
  rmq_broker_options o;
  small_options(&o);
  if (broker_default) o.default_topic_queue_nums = broker_default;
  fx f;
  memset(&f, 0, sizeof f);
  tu_store_path(f.path, sizeof f.path, "prod-auto");
  ok(rmq_broker_open(f.path, &o, &f.b));
  rmq_producer_options po;
  rmq_producer_options_init(&po);
  if (producer_default) po.default_topic_queue_nums = producer_default;
  ok(rmq_producer_create(f.b, "AutoGroup", &po, &f.p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "AutoT", NULL, "auto", 4));
  rmq_send_result r;
  for (int i = 0; i < 2 * want_queues; i++) {
    ok(rmq_producer_send(f.p, m, &r));
    assert_int_equal(r.message_queue.queue_id, i % want_queues);
  }
  rmq_topic_info ti[4];
  size_t n;
  ok(rmq_topic_list(f.b, ti, 4, &n));
  assert_int_equal(n, 1);
  assert_string_equal(ti[0].topic_name, "AutoT");
  assert_int_equal(ti[0].read_queue_nums, want_queues);
  assert_int_equal(ti[0].write_queue_nums, want_queues);
  assert_int_equal(ti[0].perm, 6);
  rmq_msg_free(m);
  rmq_producer_destroy(f.p);
  ok(rmq_broker_close(f.b));
  /* The topic was persisted. */
  ok(rmq_broker_open(f.path, &o, &f.b));
  ok(rmq_topic_list(f.b, ti, 4, &n));
  assert_int_equal(n, 1);
  assert_int_equal(ti[0].read_queue_nums, want_queues);
  ok(rmq_broker_close(f.b));
  tu_store_remove(f.path);
}

static void test_auto_create_topic(void **state)
{
  (void)state;
  check_auto_create(0, 0, 4);   /* min(producer 4, broker 8) */
  check_auto_create(0, 2, 2);   /* min(producer 4, broker 2) */
  check_auto_create(16, 0, 8);  /* min(producer 16, broker 8) */
  check_auto_create(1, 0, 1);
}

static void test_auto_create_disabled(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.auto_create_topic_enable = 0;
  fx f;
  fx_open(&f, "prod-noauto", &o);
  rmq_msg *m;
  ok(rmq_msg_create(&m, "NoSuchTopic", NULL, "x", 1));
  rmq_send_result r;
  assert_int_equal(rmq_producer_send(f.p, m, &r), RMQ_ENOTOPIC);
  assert_non_null(strstr(rmq_errmsg(), "NoSuchTopic"));
  assert_int_equal(rmq_producer_send_oneway(f.p, m), RMQ_ENOTOPIC);
  assert_int_equal(rmq_producer_send_async(f.p, m, NULL, NULL), RMQ_ENOTOPIC);
  assert_int_equal(rmq_producer_send_to_queue(f.p, m, 0, &r), RMQ_ENOTOPIC);
  assert_int_equal(topic_count(f.b), 0);
  /* An explicitly created topic works. */
  ok(rmq_topic_create(f.b, "NoSuchTopic", 2));
  ok(rmq_producer_send(f.p, m, &r));
  assert_int_equal(total_messages(f.b), 1);
  rmq_msg_free(m);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Concurrent SYNC_FLUSH senders                                              */
/* ------------------------------------------------------------------------- */

enum { SF_THREADS = 4, SF_PER = 40 };

typedef struct sf_arg {
  rmq_broker *b;
  int idx;
  int failures;
  rmq_send_result r[SF_PER];
} sf_arg;

static void *sf_main(void *arg)
{
  sf_arg *a = arg;
  rmq_producer *p;
  if (rmq_producer_create(a->b, "SyncFlushGroup", NULL, &p) != RMQ_OK) { a->failures = SF_PER; return NULL; }
  rmq_msg *m;
  if (rmq_msg_create(&m, "SyncFlushT", NULL, NULL, 0) != RMQ_OK) { a->failures = SF_PER; rmq_producer_destroy(p); return NULL; }
  for (int i = 0; i < SF_PER; i++) {
    char body[32];
    int n = snprintf(body, sizeof body, "t%d-%d", a->idx, i);
    if (rmq_msg_set_body(m, body, (size_t)n) != RMQ_OK || rmq_producer_send(p, m, &a->r[i]) != RMQ_OK ||
        a->r[i].send_status != RMQ_SEND_OK)
      a->failures++;
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return NULL;
}

static void test_sync_flush_concurrent(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  fx f;
  fx_open(&f, "prod-syncflush", &o);
  ok(rmq_topic_create(f.b, "SyncFlushT", 4));
  static sf_arg args[SF_THREADS];
  pthread_t th[SF_THREADS];
  for (int i = 0; i < SF_THREADS; i++) {
    memset(&args[i], 0, sizeof args[i]);
    args[i].b = f.b;
    args[i].idx = i;
    assert_int_equal(pthread_create(&th[i], NULL, sf_main, &args[i]), 0);
  }
  for (int i = 0; i < SF_THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < SF_THREADS; i++) assert_int_equal(args[i].failures, 0);

  /* Every result distinct: ids, physical offsets, (queue, queue offset). */
  enum { N = SF_THREADS * SF_PER };
  static const rmq_send_result *all[N];
  for (int i = 0; i < SF_THREADS; i++)
    for (int k = 0; k < SF_PER; k++) all[i * SF_PER + k] = &args[i].r[k];
  for (int i = 0; i < N; i++)
    for (int k = 0; k < i; k++) {
      assert_string_not_equal(all[i]->msg_id, all[k]->msg_id);
      assert_int_not_equal(all[i]->commit_log_offset, all[k]->commit_log_offset);
      assert_false(all[i]->message_queue.queue_id == all[k]->message_queue.queue_id &&
                   all[i]->queue_offset == all[k]->queue_offset);
    }

  /* Everything stored exactly once, each body with the id its send returned. */
  pulled pl;
  pull_all(f.b, "SyncFlushT", &pl);
  assert_int_equal(pl.n, N);
  static int seen[SF_THREADS][SF_PER];
  memset(seen, 0, sizeof seen);
  for (size_t j = 0; j < pl.n; j++) {
    int t = -1, i = -1;
    char body[32];
    assert_true(pl.m[j]->body_len < (int)sizeof body);
    memcpy(body, pl.m[j]->body, (size_t)pl.m[j]->body_len);
    body[pl.m[j]->body_len] = 0;
    assert_int_equal(sscanf(body, "t%d-%d", &t, &i), 2);
    assert_in_range(t, 0, SF_THREADS - 1);
    assert_in_range(i, 0, SF_PER - 1);
    seen[t][i]++;
    assert_string_equal(pl.m[j]->msg_id, args[t].r[i].msg_id);
    assert_int_equal(pl.m[j]->commit_log_offset, args[t].r[i].commit_log_offset);
  }
  for (int t = 0; t < SF_THREADS; t++)
    for (int i = 0; i < SF_PER; i++) assert_int_equal(seen[t][i], 1);
  pulled_free(&pl);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Validation                                                                 */
/* ------------------------------------------------------------------------- */

enum { AT_SEND, AT_PROPERTY, AT_TAGS, AT_GROUP, AT_DELAY };

#define NO_TOPIC ((const char *)1)   /* the message never gets a topic */
#define LONG_128 ((const char *)2)   /* 128 characters */
#define LONG_121 ((const char *)3)   /* 121 characters */
#define BIG_VALUE ((const char *)4)  /* a 40000-byte property value */
#define BODY_NULL ((const char *)5)

typedef struct vrow {
  const char *what;
  int at;
  const char *topic;      /* default "ValidT" */
  const char *body;       /* default "x"; BODY_NULL: none */
  int body_len;           /* with body */
  const char *pname, *pvalue;  /* AT_PROPERTY, or an extra property for AT_SEND */
  const char *arg;        /* AT_TAGS: tags; AT_GROUP: group */
  int delay;              /* AT_DELAY */
  int want;
  const char *mention;    /* rmq_errmsg() must contain it */
} vrow;

static const vrow k_vrows[] = {
  {"blank topic", AT_SEND, "", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "blank"},
  {"no topic", AT_SEND, NO_TOPIC, NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "blank"},
  {"topic of 128 chars", AT_SEND, LONG_128, NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "127"},
  {"topic with '/'", AT_SEND, "a/b", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "'/'"},
  {"topic with '.'", AT_SEND, "a.b", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "'.'"},
  {"topic '..'", AT_SEND, "..", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "'.'"},
  {"topic with space", AT_SEND, "a b", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "' '"},
  {"topic non-ASCII", AT_SEND, "caf\xc3\xa9", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "0xc3"},
  {"topic with tab", AT_SEND, "a\tb", NULL, 0, NULL, NULL, NULL, 0, RMQ_ETOPIC, "0x09"},
  {"system topic SCHEDULE_TOPIC_XXXX", AT_SEND, "SCHEDULE_TOPIC_XXXX", NULL, 0, NULL, NULL, NULL, 0, RMQ_EFORBIDDEN, "SCHEDULE_TOPIC_XXXX"},
  {"system topic RMQ_SYS_TRANS_HALF_TOPIC", AT_SEND, "RMQ_SYS_TRANS_HALF_TOPIC", NULL, 0, NULL, NULL, NULL, 0, RMQ_EFORBIDDEN, "RMQ_SYS_TRANS_HALF_TOPIC"},
  {"system topic OFFSET_MOVED_EVENT", AT_SEND, "OFFSET_MOVED_EVENT", NULL, 0, NULL, NULL, NULL, 0, RMQ_EFORBIDDEN, "OFFSET_MOVED_EVENT"},
  {"auto-create a system topic", AT_SEND, "TBW102", NULL, 0, NULL, NULL, NULL, 0, RMQ_EFORBIDDEN, "TBW102"},
  {"NULL body", AT_SEND, NULL, BODY_NULL, 0, NULL, NULL, NULL, 0, RMQ_ENOBODY, "body"},
  {"empty body", AT_SEND, NULL, "", 0, NULL, NULL, NULL, 0, RMQ_ENOBODY, "body"},
  {"body over max_message_size", AT_SEND, NULL, "0123456789abcdefX", 17, NULL, NULL, NULL, 0, RMQ_EMSGSIZE, "16"},
  {"properties over 32767 bytes", AT_SEND, NULL, NULL, 0, "big", BIG_VALUE, NULL, 0, RMQ_EPROPSIZE, "32767"},
  {"reserved UNIQ_KEY", AT_PROPERTY, NULL, NULL, 0, "UNIQ_KEY", "0123", NULL, 0, RMQ_ERESERVED, "UNIQ_KEY"},
  {"reserved TAGS", AT_PROPERTY, NULL, NULL, 0, "TAGS", "t", NULL, 0, RMQ_ERESERVED, "TAGS"},
  {"reserved DELAY", AT_PROPERTY, NULL, NULL, 0, "DELAY", "3", NULL, 0, RMQ_ERESERVED, "DELAY"},
  {"reserved KEYS", AT_PROPERTY, NULL, NULL, 0, "KEYS", "k", NULL, 0, RMQ_ERESERVED, "KEYS"},
  {"reserved WAIT", AT_PROPERTY, NULL, NULL, 0, "WAIT", "false", NULL, 0, RMQ_ERESERVED, "WAIT"},
  {"reserved MAX_OFFSET", AT_PROPERTY, NULL, NULL, 0, "MAX_OFFSET", "1", NULL, 0, RMQ_ERESERVED, "MAX_OFFSET"},
  {"blank property name", AT_PROPERTY, NULL, NULL, 0, "", "v", NULL, 0, RMQ_EPROPERTY, "blank"},
  {"spaces property name", AT_PROPERTY, NULL, NULL, 0, "  ", "v", NULL, 0, RMQ_EPROPERTY, "blank"},
  {"blank property value", AT_PROPERTY, NULL, NULL, 0, "name", "", NULL, 0, RMQ_EPROPERTY, "blank"},
  {"whitespace property value", AT_PROPERTY, NULL, NULL, 0, "name", " \t", NULL, 0, RMQ_EPROPERTY, "blank"},
  {"property name with 0x01", AT_PROPERTY, NULL, NULL, 0, "na\x01me", "v", NULL, 0, RMQ_EPROPERTY, "0x01"},
  {"property value with 0x02", AT_PROPERTY, NULL, NULL, 0, "name", "v\x02", NULL, 0, RMQ_EPROPERTY, "name"},
  {"property value with 0x01", AT_PROPERTY, NULL, NULL, 0, "name", "v\x01w", NULL, 0, RMQ_EPROPERTY, "0x01"},
  {"property value not UTF-8", AT_PROPERTY, NULL, NULL, 0, "name", "\xff\xfe", NULL, 0, RMQ_EPROPERTY, "UTF-8"},
  {"property name not UTF-8", AT_PROPERTY, NULL, NULL, 0, "n\xc3", "v", NULL, 0, RMQ_EPROPERTY, "UTF-8"},
  {"overlong UTF-8 value", AT_PROPERTY, NULL, NULL, 0, "name", "\xc0\xaf", NULL, 0, RMQ_EPROPERTY, "UTF-8"},
  {"tags with 0x01", AT_TAGS, NULL, NULL, 0, NULL, NULL, "a\x01" "b", 0, RMQ_EPROPERTY, "TAGS"},
  {"tags not UTF-8", AT_TAGS, NULL, NULL, 0, NULL, NULL, "\xff", 0, RMQ_EPROPERTY, "UTF-8"},
  {"blank group", AT_GROUP, NULL, NULL, 0, NULL, NULL, "", 0, RMQ_EGROUP, "blank"},
  {"group with space", AT_GROUP, NULL, NULL, 0, NULL, NULL, "my group", 0, RMQ_EGROUP, "my group"},
  {"group with '/'", AT_GROUP, NULL, NULL, 0, NULL, NULL, "g/1", 0, RMQ_EGROUP, "g/1"},
  {"group with '.'", AT_GROUP, NULL, NULL, 0, NULL, NULL, "g.1", 0, RMQ_EGROUP, "g.1"},
  {"group of 121 chars", AT_GROUP, NULL, NULL, 0, NULL, NULL, LONG_121, 0, RMQ_EGROUP, "120"},
  {"negative delay level", AT_DELAY, NULL, NULL, 0, NULL, NULL, NULL, -1, RMQ_EINVAL, "-1"},
  {"very negative delay level", AT_DELAY, NULL, NULL, 0, NULL, NULL, NULL, -100, RMQ_EINVAL, "-100"},
};

static void test_validation_table(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.max_message_size = 16;
  fx f;
  fx_open(&f, "prod-valid", &o);
  ok(rmq_topic_create(f.b, "ValidT", 2));
  ok(rmq_topic_create(f.b, "ProbeT", 1));
  char long128[129], long121[122];
  memset(long128, 'T', 128);
  long128[128] = 0;
  memset(long121, 'G', 121);
  long121[121] = 0;
  static char big[40001];
  memset(big, 'v', 40000);
  big[40000] = 0;

  rmq_msg *probe;
  ok(rmq_msg_create(&probe, "ProbeT", NULL, "probe", 5));
  rmq_send_result pr;
  ok(rmq_producer_send(f.p, probe, &pr));
  int64_t next_phys = pr.commit_log_offset + pr.store_size;
  size_t topics = topic_count(f.b);
  int64_t stored = total_messages(f.b);

  for (size_t i = 0; i < sizeof k_vrows / sizeof k_vrows[0]; i++) {
    const vrow *row = &k_vrows[i];
    const char *topic = row->topic == NO_TOPIC ? NULL : row->topic == LONG_128 ? long128 : row->topic ? row->topic : "ValidT";
    rmq_msg *m;
    ok(rmq_msg_create(&m, topic, NULL, NULL, 0));
    if (row->body == BODY_NULL) ok(rmq_msg_set_body(m, NULL, 3));
    else if (row->body) ok(rmq_msg_set_body(m, row->body, (size_t)row->body_len));
    else ok(rmq_msg_set_body(m, "x", 1));
    int rc = 0;
    rmq_producer *gp = NULL;
    switch (row->at) {
    case AT_SEND:
      if (row->pname) ok(rmq_msg_put_user_property(m, row->pname, row->pvalue == BIG_VALUE ? big : row->pvalue));
      rc = rmq_producer_send(f.p, m, NULL);
      break;
    case AT_PROPERTY:
      rc = rmq_msg_put_user_property(m, row->pname, row->pvalue);
      break;
    case AT_TAGS:
      rc = rmq_msg_set_tags(m, row->arg);
      break;
    case AT_GROUP:
      rc = rmq_producer_create(f.b, row->arg == LONG_121 ? long121 : row->arg, NULL, &gp);
      break;
    case AT_DELAY:
      rc = rmq_msg_set_delay_time_level(m, row->delay);
      break;
    }
    if (rc != row->want)
      fail_msg("row %zu (%s): rc %d (%s), want %d (%s): %s", i, row->what, rc, rmq_errstr(rc), row->want,
               rmq_errstr(row->want), rmq_errmsg());
    const char *msg = rmq_errmsg();
    if (!msg[0]) fail_msg("row %zu (%s): empty rmq_errmsg()", i, row->what);
    if (!strstr(msg, row->mention)) fail_msg("row %zu (%s): '%s' does not mention '%s'", i, row->what, msg, row->mention);
    assert_null(gp);
    if (row->at == AT_PROPERTY) {
      /* The refused property is not on the message. */
      if (row->pname) assert_true(rmq_msg_get_property(m, row->pname) == NULL ||
                                  strcmp(rmq_msg_get_property(m, row->pname), row->pvalue) != 0);
    }
    if (row->at == AT_TAGS) assert_null(rmq_msg_get_property(m, "TAGS"));
    if (row->at == AT_DELAY) assert_null(rmq_msg_get_property(m, "DELAY"));
    rmq_msg_free(m);

    /* Nothing was stored: no topic, no queue unit, no CommitLog byte (the
    ** next record lands where the last good one ended). */
    assert_int_equal(topic_count(f.b), topics);
    assert_int_equal(total_messages(f.b), stored);
    ok(rmq_producer_send(f.p, probe, &pr));
    if (pr.commit_log_offset != next_phys)
      fail_msg("row %zu (%s): the CommitLog grew: next record at %" PRId64 ", want %" PRId64, i, row->what,
               pr.commit_log_offset, next_phys);
    next_phys = pr.commit_log_offset + pr.store_size;
    stored++;
  }
  rmq_msg_free(probe);
  fx_close(&f);
}

/* The limits themselves are allowed. */
static void test_validation_limits(void **state)
{
  (void)state;
  rmq_broker_options o;
  small_options(&o);
  o.max_message_size = 16;
  fx f;
  fx_open(&f, "prod-limits", &o);
  rmq_msg *m;
  char long127[128];
  memset(long127, 'T', 127);
  long127[127] = 0;
  ok(rmq_msg_create(&m, long127, NULL, "0123456789abcdef", 16)); /* 127 chars, 16 bytes */
  rmq_send_result r;
  ok(rmq_producer_send(f.p, m, &r));
  assert_string_equal(r.message_queue.topic, long127);
  ok(rmq_msg_set_topic(m, "%|aZ09_-")); /* every allowed character class */
  ok(rmq_producer_send(f.p, m, &r));

  /* Properties: exactly 32767 bytes with WAIT and UNIQ_KEY counted. */
  ok(rmq_msg_set_topic(m, "LimitT"));
  static char v[32800];
  size_t fixed = prop_len("WAIT", "true") + 8 + 32 + 2 + 1 + 2; /* + "p" \1 \2 */
  size_t max_v = RMQ_PROPERTIES_MAX_LEN - fixed;
  memset(v, 'v', max_v);
  v[max_v] = 0;
  ok(rmq_msg_put_user_property(m, "p", v));
  ok(rmq_producer_send(f.p, m, &r));
  assert_int_equal(r.store_size, record_size(16, 6, RMQ_PROPERTIES_MAX_LEN));
  v[max_v] = 'v';
  v[max_v + 1] = 0;
  ok(rmq_msg_put_user_property(m, "p", v));
  assert_int_equal(rmq_producer_send(f.p, m, &r), RMQ_EPROPSIZE);

  /* The producer's own max_message_size applies too (the smaller wins). */
  rmq_producer_options po;
  rmq_producer_options_init(&po);
  po.max_message_size = 8;
  rmq_producer *p8;
  ok(rmq_producer_create(f.b, "Small", &po, &p8));
  rmq_msg *m8;
  ok(rmq_msg_create(&m8, "LimitT", NULL, "012345678", 9));
  assert_int_equal(rmq_producer_send(p8, m8, NULL), RMQ_EMSGSIZE);
  assert_non_null(strstr(rmq_errmsg(), "8"));
  ok(rmq_msg_set_body(m8, "01234567", 8));
  ok(rmq_producer_send(p8, m8, NULL));
  rmq_msg_free(m8);
  rmq_producer_destroy(p8);

  /* Group names: 120 characters and every allowed class. */
  char g120[121];
  memset(g120, 'G', 120);
  g120[120] = 0;
  rmq_producer *gp;
  ok(rmq_producer_create(f.b, g120, NULL, &gp));
  rmq_producer_destroy(gp);
  ok(rmq_producer_create(f.b, "%RETRY%|g_-9", NULL, &gp));
  rmq_producer_destroy(gp);

  /* Bad producer options. */
  rmq_producer_options_init(&po);
  po.born_host = "not-an-ip";
  assert_int_equal(rmq_producer_create(f.b, "G", &po, &gp), RMQ_EINVAL);
  rmq_producer_options_init(&po);
  po.default_topic_queue_nums = 0;
  assert_int_equal(rmq_producer_create(f.b, "G", &po, &gp), RMQ_EINVAL);
  rmq_msg_free(m);
  fx_close(&f);
}

static void test_born_host_and_flag(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-born", NULL);
  rmq_producer_options po;
  rmq_producer_options_init(&po);
  po.born_host = "192.168.7.9";
  po.born_port = 4321;
  rmq_producer *p;
  ok(rmq_producer_create(f.b, "BornGroup", &po, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "BornT", NULL, "b", 1));
  ok(rmq_msg_set_flag(m, 77));
  int64_t before = wall_ms();
  ok(rmq_producer_send(p, m, NULL));
  int64_t after = wall_ms();
  pulled pl;
  pull_all(f.b, "BornT", &pl);
  assert_int_equal(pl.n, 1);
  const uint8_t ip[4] = {192, 168, 7, 9};
  assert_int_equal(pl.m[0]->born_host_len, 4);
  assert_memory_equal(pl.m[0]->born_host, ip, 4);
  assert_int_equal(pl.m[0]->born_port, 4321);
  assert_int_equal(pl.m[0]->flag, 77);
  assert_in_range(pl.m[0]->born_timestamp, before, after);
  assert_true(pl.m[0]->store_timestamp >= pl.m[0]->born_timestamp);
  pulled_free(&pl);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  fx_close(&f);
}

/* ------------------------------------------------------------------------- */
/* Lifecycle                                                                  */
/* ------------------------------------------------------------------------- */

static void test_close_with_live_handles(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-close", NULL);
  rmq_msg *m;
  ok(rmq_msg_create(&m, "CloseT", NULL, "x", 1));
  ok(rmq_producer_send(f.p, m, NULL));
  assert_int_equal(rmq_broker_close(f.b), RMQ_ESTATE);
  assert_non_null(strstr(rmq_errmsg(), "destroy"));
  /* Nothing was closed: the producer still works. */
  rmq_send_result r;
  ok(rmq_producer_send(f.p, m, &r));
  assert_int_equal(r.queue_offset >= 0, 1);
  assert_int_equal(total_messages(f.b), 2);

  rmq_pull_consumer *pc;
  ok(rmq_pull_consumer_create(f.b, "G", &pc));
  rmq_producer_destroy(f.p);
  f.p = NULL;
  assert_int_equal(rmq_broker_close(f.b), RMQ_ESTATE); /* the pull consumer */
  rmq_pull_consumer_destroy(pc);
  rmq_push_consumer *push;
  ok(rmq_push_consumer_create(f.b, "G", NULL, &push));
  assert_int_equal(rmq_broker_close(f.b), RMQ_ESTATE); /* even unstarted */
  rmq_push_consumer_destroy(push);
  rmq_msg_free(m);
  ok(rmq_broker_close(f.b));

  /* Everything sent before is there after a reopen. */
  rmq_broker_options o;
  small_options(&o);
  ok(rmq_broker_open(f.path, &o, &f.b));
  assert_int_equal(total_messages(f.b), 2);
  ok(rmq_broker_close(f.b));
  tu_store_remove(f.path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sync_send_result),
    cmocka_unit_test(test_store_host_in_offset_msg_id),
    cmocka_unit_test(test_send_result_format),
    cmocka_unit_test(test_async_async_flush),
    cmocka_unit_test(test_async_sync_flush_service_thread),
    cmocka_unit_test(test_async_sync_flush_no_service_thread),
    cmocka_unit_test(test_oneway),
    cmocka_unit_test(test_send_to_queue),
    cmocka_unit_test(test_auto_create_topic),
    cmocka_unit_test(test_auto_create_disabled),
    cmocka_unit_test(test_sync_flush_concurrent),
    cmocka_unit_test(test_validation_table),
    cmocka_unit_test(test_validation_limits),
    cmocka_unit_test(test_born_host_and_flag),
    cmocka_unit_test(test_close_with_live_handles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
