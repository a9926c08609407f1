/*
** test_producer.c -- DefaultMQProducer's behaviour: sync, async and oneway
** sends, SendResult fields and ids (ROCKETMQ.md 5, 9), queue selection, topic
** auto-creation (8), concurrent SYNC_FLUSH senders, one producer shared by
** many threads (and sends from callbacks inside a send), every validation
** error (7) with its message, each proven to store nothing, and the handle
** checks.
*/
#include <dirent.h>
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
/* One producer shared by many threads                                        */
/* ------------------------------------------------------------------------- */

/* 8 threads send through one producer, each its own numbered messages, by
** every kind of send; then each queue is read back and every message must
** be there exactly once, in a unit of its own queue, with the id, queue and
** offsets its send returned. Before producers were thread-safe this lost
** acknowledged messages, duplicated ids and crossed ConsumeQueue units. */
#define SH_THREADS 8
#define SH_QUEUES 8
#define SH_TOPIC "SharedT"

enum { SH_SYNC, SH_MIXED };

/* What a send returned for one message; have = 0 for oneway (no result). */
typedef struct sh_sent {
  char msg_id[RMQ_MSG_ID_SIZE];
  int64_t phys;
  int64_t queue_offset;
  int queue_id;
  int have;
  atomic_int calls;            /* async callbacks (another thread under SYNC_FLUSH) */
} sh_sent;

typedef struct sh_run {
  rmq_producer *p;
  int per_thread;
  int mix;
  atomic_int bad_mqs;          /* selector calls that saw a wrong queue list */
} sh_run;

typedef struct sh_arg {
  sh_run *run;
  int idx;
  int failures;
  char first_error[256];
  sh_sent *sent;               /* per_thread of them */
} sh_arg;

static void sh_fail(sh_arg *a, const char *what, int rc)
{
  if (!a->failures++)
    snprintf(a->first_error, sizeof a->first_error, "thread %d: %s -> %d (%s): %s", a->idx, what, rc, rmq_errstr(rc),
             rmq_errmsg());
}

static void sh_record(sh_sent *s, const rmq_send_result *r)
{
  memcpy(s->msg_id, r->msg_id, sizeof s->msg_id);
  s->phys = r->commit_log_offset;
  s->queue_offset = r->queue_offset;
  s->queue_id = r->message_queue.queue_id;
  s->have = 1;
}

static void sh_async_cb(void *ctx, int rc, const rmq_send_result *r)
{
  sh_sent *s = ctx;
  if (rc == RMQ_OK && r) sh_record(s, r);
  atomic_fetch_add(&s->calls, 1);
}

typedef struct sh_sel {
  sh_run *run;
  unsigned key;
} sh_sel;

/* Picks queue key % n and checks the list it is handed is the topic's. */
static int sh_selector(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  const sh_sel *sel = arg;
  int bad = n != SH_QUEUES;
  for (size_t i = 0; !bad && i < n; i++)
    bad = mqs[i].queue_id != (int)i || strcmp(mqs[i].topic, SH_TOPIC) || strcmp(mqs[i].broker_name, "rmq-broker");
  if (bad) atomic_fetch_add(&sel->run->bad_mqs, 1);
  (void)m;
  return (int)(sel->key % n);
}

/* How thread t sends the group of 4 messages starting at seq: 4 sends, 4
** selected sends, a batch of 4, or async, to-queue, async and oneway. */
static int sh_op(int mix, int t, int seq) { return mix == SH_SYNC ? 0 : (seq / 4 + t) % 4; }

static int sh_body(char *buf, size_t cap, int t, int seq) { return snprintf(buf, cap, "t%02d-%05d", t, seq); }

static void *sh_main(void *arg)
{
  sh_arg *a = arg;
  sh_run *run = a->run;
  enum { BATCH = 4 };
  rmq_msg *ms[BATCH] = {0};
  for (int i = 0; i < BATCH; i++)
    if (rmq_msg_create(&ms[i], SH_TOPIC, "TagS", NULL, 0) != RMQ_OK) { sh_fail(a, "rmq_msg_create", RMQ_ENOMEM); goto out; }
  for (int seq = 0; seq < run->per_thread; seq += BATCH) {
    char body[32];
    for (int k = 0; k < BATCH; k++) {
      int n = sh_body(body, sizeof body, a->idx, seq + k);
      int rc = rmq_msg_set_body(ms[k], body, (size_t)n);
      if (rc) sh_fail(a, "rmq_msg_set_body", rc);
    }
    int op = sh_op(run->mix, a->idx, seq);
    rmq_send_result r[BATCH];
    int rc;
    switch (op) {
    case 0:
      for (int k = 0; k < BATCH; k++) {
        if ((rc = rmq_producer_send(run->p, ms[k], &r[k]))) sh_fail(a, "rmq_producer_send", rc);
        else sh_record(&a->sent[seq + k], &r[k]);
      }
      break;
    case 1:
      for (int k = 0; k < BATCH; k++) {
        sh_sel sel = {run, (unsigned)(a->idx * 7 + seq + k)};
        if ((rc = rmq_producer_send_select(run->p, ms[k], sh_selector, &sel, &r[k]))) sh_fail(a, "rmq_producer_send_select", rc);
        else sh_record(&a->sent[seq + k], &r[k]);
        if (!rc && r[k].message_queue.queue_id != (int)(sel.key % SH_QUEUES)) sh_fail(a, "selected queue not used", 0);
      }
      break;
    case 2:
      if ((rc = rmq_producer_send_batch(run->p, (const rmq_msg *const *)ms, BATCH, r))) sh_fail(a, "rmq_producer_send_batch", rc);
      for (int k = 0; !rc && k < BATCH; k++) {
        sh_record(&a->sent[seq + k], &r[k]);
        if (r[k].message_queue.queue_id != r[0].message_queue.queue_id || r[k].queue_offset != r[0].queue_offset + k)
          sh_fail(a, "batch not consecutive in one queue", 0);
      }
      break;
    default:
      if ((rc = rmq_producer_send_async(run->p, ms[0], sh_async_cb, &a->sent[seq]))) sh_fail(a, "rmq_producer_send_async", rc);
      if ((rc = rmq_producer_send_to_queue(run->p, ms[1], (a->idx + seq) % SH_QUEUES, &r[1])))
        sh_fail(a, "rmq_producer_send_to_queue", rc);
      else sh_record(&a->sent[seq + 1], &r[1]);
      if ((rc = rmq_producer_send_async(run->p, ms[2], sh_async_cb, &a->sent[seq + 2]))) sh_fail(a, "rmq_producer_send_async", rc);
      if ((rc = rmq_producer_send_oneway(run->p, ms[3]))) sh_fail(a, "rmq_producer_send_oneway", rc);
      break;
    }
  }
out:
  for (int i = 0; i < BATCH; i++) rmq_msg_free(ms[i]);
  return NULL;
}

static int sh_id_cmp(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

/* Reads every queue of SH_TOPIC back and checks it against what was sent. */
static void sh_verify(rmq_broker *b, sh_arg *args, int per_thread, int mix)
{
  enum { T = SH_THREADS };
  int total = T * per_thread;
  /* Every returned id is unique. */
  const char **ids = calloc((size_t)total, sizeof *ids);
  assert_non_null(ids);
  int nids = 0, oneway = 0;
  for (int t = 0; t < T; t++)
    for (int i = 0; i < per_thread; i++) {
      sh_sent *s = &args[t].sent[i];
      oneway += sh_op(mix, t, i) == 3 && i % 4 == 3;
      if (s->have) {
        assert_true(is_upper_hex(s->msg_id, 32));
        ids[nids++] = s->msg_id;
      }
    }
  /* Only oneway sends return nothing. */
  assert_int_equal(nids, total - oneway);
  qsort(ids, (size_t)nids, sizeof *ids, sh_id_cmp);
  for (int i = 1; i < nids; i++)
    if (!strcmp(ids[i - 1], ids[i])) fail_msg("msgId %s returned twice", ids[i]);
  free(ids);

  /* Every message stored exactly once, each queue's units its own records. */
  char *seen = calloc((size_t)total, 1);
  assert_non_null(seen);
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "SharedCheckGroup", &c));
  rmq_message_queue mqs[SH_QUEUES];
  size_t nq;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, SH_TOPIC, mqs, SH_QUEUES, &nq));
  assert_int_equal(nq, SH_QUEUES);
  int64_t sum = 0;
  for (size_t q = 0; q < nq; q++) {
    int64_t mn, mx, off = 0;
    ok(rmq_topic_queue_offsets(b, SH_TOPIC, (int)q, &mn, &mx));
    assert_int_equal(mn, 0);
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mqs[q], "*", off, 256, &r));
      if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
      assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
      for (size_t i = 0; i < r.n; i++) {
        const rmq_message_ext *e = &r.msgs[i];
        /* The unit at off + i leads to a record of this queue at that offset. */
        assert_int_equal(e->queue_id, (int)q);
        assert_int_equal(e->queue_offset, off + (int64_t)i);
        assert_string_equal(e->topic, SH_TOPIC);
        char body[32];
        assert_true(e->body_len > 0 && e->body_len < (int)sizeof body);
        memcpy(body, e->body, (size_t)e->body_len);
        body[e->body_len] = 0;
        int t = -1, seq = -1;
        if (sscanf(body, "t%d-%d", &t, &seq) != 2 || t < 0 || t >= T || seq < 0 || seq >= per_thread)
          fail_msg("queue %zu offset %" PRId64 ": body '%s' is no message of this run", q, e->queue_offset, body);
        if (seen[t * per_thread + seq]++) fail_msg("message %s stored twice", body);
        const sh_sent *s = &args[t].sent[seq];
        if (s->have) {
          assert_string_equal(e->msg_id, s->msg_id);
          assert_int_equal(e->commit_log_offset, s->phys);
          assert_int_equal(e->queue_id, s->queue_id);
          assert_int_equal(e->queue_offset, s->queue_offset);
        }
      }
      assert_int_equal(r.next_begin_offset, off + (int64_t)r.n);
      off = r.next_begin_offset;
    }
    assert_int_equal(off, mx); /* nothing skipped in this queue */
    sum += mx;
  }
  assert_int_equal(sum, total); /* the queues add up */
  for (int i = 0; i < total; i++)
    if (!seen[i]) fail_msg("message t%02d-%05d was acknowledged but is not stored", i / per_thread, i % per_thread);
  rmq_pull_consumer_destroy(c);
  free(seen);
}

static void shared_producer_run(const char *tag, int flush_type, int per_thread, int mix)
{
  rmq_broker_options o;
  small_options(&o);
  o.mapped_file_size_commit_log = 16 << 20;
  o.flush_disk_type = flush_type;
  fx f;
  fx_open(&f, tag, &o);
  ok(rmq_topic_create(f.b, SH_TOPIC, SH_QUEUES));
  static sh_run run;
  memset(&run, 0, sizeof run);
  run.p = f.p;
  run.per_thread = per_thread;
  run.mix = mix;
  static sh_arg args[SH_THREADS];
  pthread_t th[SH_THREADS];
  for (int i = 0; i < SH_THREADS; i++) {
    memset(&args[i], 0, sizeof args[i]);
    args[i].run = &run;
    args[i].idx = i;
    args[i].sent = calloc((size_t)per_thread, sizeof *args[i].sent);
    assert_non_null(args[i].sent);
    assert_int_equal(pthread_create(&th[i], NULL, sh_main, &args[i]), 0);
  }
  for (int i = 0; i < SH_THREADS; i++) pthread_join(th[i], NULL);
  /* Waits for the async sends' callbacks (SYNC_FLUSH: after their flush). */
  rmq_producer_destroy(f.p);
  f.p = NULL;
  for (int i = 0; i < SH_THREADS; i++)
    if (args[i].failures) fail_msg("%d failed sends; first: %s", args[i].failures, args[i].first_error);
  assert_int_equal(atomic_load(&run.bad_mqs), 0);
  /* Read back after a flush: the service thread's flushes, which remap
  ** flushed CommitLog chunks read-only, are then done with every record
  ** (TSan cannot see that a MAP_FIXED remap keeps the bytes readers see). */
  ok(rmq_broker_flush(f.b));
  for (int i = 0; i < SH_THREADS; i++)
    for (int k = 0; mix == SH_MIXED && k < per_thread; k++) {
      int calls = atomic_load(&args[i].sent[k].calls);
      int want = sh_op(mix, i, k) == 3 && (k % 4 == 0 || k % 4 == 2);
      if (calls != want) fail_msg("thread %d message %d: %d callbacks, want %d", i, k, calls, want);
    }
  sh_verify(f.b, args, per_thread, mix);
  for (int i = 0; i < SH_THREADS; i++) free(args[i].sent);
  fx_close(&f);
}

static void test_shared_producer_sync_sends(void **state)
{
  (void)state;
  shared_producer_run("prod-shared-sync", RMQ_ASYNC_FLUSH, 2000, SH_SYNC);
}

static void test_shared_producer_mixed_sends(void **state)
{
  (void)state;
  shared_producer_run("prod-shared-mixed", RMQ_ASYNC_FLUSH, 2000, SH_MIXED);
}

static void test_shared_producer_sync_flush(void **state)
{
  (void)state;
  shared_producer_run("prod-shared-syncflush", RMQ_SYNC_FLUSH, 200, SH_MIXED);
}

/* ---- sends racing CommitLog roll-overs, read as they are published ------ */

#define RACE_SENDERS 3
#define RACE_QUEUES 2
#define RACE_PER_SENDER 3000

typedef struct race {
  rmq_broker *b;
  atomic_int senders_done;
  atomic_int bad;             /* consumer-seen faults */
  int64_t got[RACE_QUEUES];
  char why[256];
} race;

typedef struct race_arg { race *r; int id; } race_arg;

static void *race_send(void *arg)
{
  race_arg *a = arg;
  rmq_producer *p;
  ok(rmq_producer_create(a->r->b, "race-prod", NULL, &p));
  uint8_t body[300];
  for (uint64_t i = 0; i < RACE_PER_SENDER; i++) {
    uint64_t id = (uint64_t)a->id << 32 | i;
    /* Sizes vary so that records end at every position of a file. */
    size_t len = 40 + (size_t)((id * 2654435761u) % 250);
    tu_make_body(body, id, len);
    rmq_msg *m;
    ok(rmq_msg_create(&m, "RaceTopic", "T", body, len));
    ok(rmq_producer_send(p, m, NULL));
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
  atomic_fetch_add(&a->r->senders_done, 1);
  return NULL;
}

/* One queue's reader: long polling from offset 0; every message it is given
** must be the next offset of its queue, whole (the body proves it). */
static void *race_read(void *arg)
{
  race_arg *a = arg;
  race *r = a->r;
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(r->b, "race-reader", &c));
  rmq_message_queue mq = tu_mq("RaceTopic", a->id);
  int64_t off = 0;
  int idle = 0;
  while (idle < 3) {
    rmq_pull_result pr;
    ok(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", off, 32, 200, &pr));
    if (pr.pull_status != RMQ_PULL_FOUND) {
      /* Done once every sender is and nothing came for three waits. */
      if (atomic_load(&r->senders_done) == RACE_SENDERS) idle++;
      continue;
    }
    idle = 0;
    for (size_t k = 0; k < pr.n; k++) {
      uint64_t id;
      if (pr.msgs[k].queue_offset != off + (int64_t)k ||
          !tu_body_check(pr.msgs[k].body, (size_t)pr.msgs[k].body_len, &id)) {
        if (atomic_fetch_add(&r->bad, 1) == 0)
          snprintf(r->why, sizeof r->why, "queue %d offset %lld: got offset %lld, body %s", a->id,
                   (long long)(off + (int64_t)k), (long long)pr.msgs[k].queue_offset,
                   tu_body_check(pr.msgs[k].body, (size_t)pr.msgs[k].body_len, &id) ? "intact" : "damaged");
      }
    }
    off = pr.next_begin_offset;
  }
  r->got[a->id] = off;
  rmq_pull_consumer_destroy(c);
  return NULL;
}

/* Senders on several threads fill 64 KiB CommitLog files (a roll-over every
** ~400 records) while a reader per queue wakes on each publication: no
** reader may see a unit whose record is not yet there, and every message
** arrives once, in queue order. */
static void test_send_racing_rollover(void **state)
{
  (void)state;
  char path[512];
  tu_store_path(path, sizeof path, "prod-race-roll");
  tu_log log = {0};
  rmq_broker_options o;
  tu_small_opts(&o, &log);
  race r;
  memset(&r, 0, sizeof r);
  ok(rmq_broker_open(path, &o, &r.b));
  ok(rmq_topic_create(r.b, "RaceTopic", RACE_QUEUES));
  pthread_t th[RACE_SENDERS + RACE_QUEUES];
  race_arg args[RACE_SENDERS + RACE_QUEUES];
  for (int i = 0; i < RACE_QUEUES; i++) {
    args[RACE_SENDERS + i] = (race_arg){&r, i};
    assert_int_equal(pthread_create(&th[RACE_SENDERS + i], NULL, race_read, &args[RACE_SENDERS + i]), 0);
  }
  for (int i = 0; i < RACE_SENDERS; i++) {
    args[i] = (race_arg){&r, i};
    assert_int_equal(pthread_create(&th[i], NULL, race_send, &args[i]), 0);
  }
  for (int i = 0; i < RACE_SENDERS + RACE_QUEUES; i++) pthread_join(th[i], NULL);
  if (atomic_load(&r.bad)) fail_msg("%d faults, first: %s", atomic_load(&r.bad), r.why);
  assert_int_equal(r.got[0] + r.got[1], RACE_SENDERS * RACE_PER_SENDER);
  if (strstr(log.text, "unreadable")) fail_msg("a reader met an unreadable record: %s", log.text);
  ok(rmq_broker_close(r.b));
  /* It did roll over, many times. */
  char cl[600];
  snprintf(cl, sizeof cl, "%s/commitlog", path);
  assert_true(tu_count_files(cl) >= 20);
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

/* One thread's sends through a producer still take the queues in turn,
** sends and batches alike, as RocketMQ's round robin. */
static void test_round_robin_order(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-rr", NULL);
  ok(rmq_topic_create(f.b, "RrT", 3));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "RrT", NULL, "r", 1));
  const rmq_msg *batch[2] = {m, m};
  rmq_send_result r[2];
  for (int i = 0; i < 12; i++) {
    if (i % 4 == 3) {
      ok(rmq_producer_send_batch(f.p, batch, 2, r));
    } else {
      ok(rmq_producer_send(f.p, m, &r[0]));
    }
    assert_int_equal(r[0].message_queue.queue_id, i % 3);
    ok(rmq_producer_send_to_queue(f.p, m, 0, &r[1])); /* no turn taken */
  }
  rmq_msg_free(m);
  fx_close(&f);
}

/* ---- sends from callbacks inside a send --------------------------------- */

typedef struct nest {
  rmq_producer *p;
  int depth;
  int inner_rc[2];
  rmq_send_result inner[2];
  int mqs_intact;
} nest;

/* Sends from inside the selector: another selected send (whose own selector
** sends once more) to another topic, and a plain send; then checks that the
** queue list it was handed still lists its own topic. */
static int nest_selector(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  nest *x = arg;
  int d = x->depth++;
  if (d < 2) {
    rmq_msg *inner;
    char topic[32];
    snprintf(topic, sizeof topic, "NestInner%d", d);
    if (rmq_msg_create(&inner, topic, NULL, "inner", 5) == RMQ_OK) {
      x->inner_rc[d] = rmq_producer_send_select(x->p, inner, nest_selector, x, &x->inner[d]);
      if (x->inner_rc[d] == RMQ_OK) x->inner_rc[d] = rmq_producer_send(x->p, inner, NULL);
      rmq_msg_free(inner);
    }
  }
  char want[32];
  snprintf(want, sizeof want, "%s", d == 0 ? "NestOuter" : d == 1 ? "NestInner0" : "NestInner1");
  int intact = 1;
  (void)m;
  for (size_t i = 0; i < n; i++) intact &= !strcmp(mqs[i].topic, want) && mqs[i].queue_id == (int)i;
  x->mqs_intact += intact;
  return (int)(n - 1);
}

typedef struct cb_send {
  rmq_producer *p;
  rmq_msg *m;
  int calls;
  int inner_rc;
  rmq_send_result outer, inner;
} cb_send;

/* An ASYNC_FLUSH callback runs on the sending thread; it sends again. */
static void send_from_cb(void *ctx, int rc, const rmq_send_result *r)
{
  cb_send *c = ctx;
  c->calls++;
  if (rc == RMQ_OK) c->outer = *r;
  c->inner_rc = rmq_producer_send(c->p, c->m, &c->inner);
}

static void test_send_from_callbacks(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-nest", NULL);
  ok(rmq_topic_create(f.b, "NestOuter", 4));
  ok(rmq_topic_create(f.b, "NestInner0", 2));
  ok(rmq_topic_create(f.b, "NestInner1", 3));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "NestOuter", NULL, "outer-body-that-is-longer", 25));
  nest x = {f.p, 0, {-1, -1}, {{0}}, 0};
  rmq_send_result r;
  ok(rmq_producer_send_select(f.p, m, nest_selector, &x, &r));
  assert_int_equal(x.depth, 3);
  ok(x.inner_rc[0]);
  ok(x.inner_rc[1]);
  assert_int_equal(x.mqs_intact, 3);
  assert_int_equal(r.message_queue.queue_id, 3);
  assert_string_equal(r.message_queue.topic, "NestOuter");
  assert_int_equal(x.inner[0].message_queue.queue_id, 1);
  assert_int_equal(x.inner[1].message_queue.queue_id, 2);
  /* The outer record was encoded after the selector's sends, intact. */
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(f.b, "NestCheck", &c));
  rmq_message_queue mq = tu_mq("NestOuter", 3);
  rmq_pull_result pr;
  ok(rmq_pull_consumer_pull(c, &mq, "*", 0, 8, &pr));
  assert_int_equal(pr.n, 1);
  assert_int_equal(pr.msgs[0].body_len, 25);
  assert_memory_equal(pr.msgs[0].body, "outer-body-that-is-longer", 25);
  assert_string_equal(pr.msgs[0].msg_id, r.msg_id);
  assert_int_equal(total_messages(f.b), 5);

  /* A send from an ASYNC_FLUSH callback, on the sending thread. */
  rmq_msg *m2;
  ok(rmq_msg_create(&m2, "NestInner0", NULL, "from-callback", 13));
  cb_send cs = {f.p, m2, 0, -1, {0}, {0}};
  ok(rmq_producer_send_async(f.p, m, send_from_cb, &cs));
  assert_int_equal(cs.calls, 1);
  ok(cs.inner_rc);
  assert_string_equal(cs.outer.message_queue.topic, "NestOuter");
  assert_string_equal(cs.inner.message_queue.topic, "NestInner0");
  assert_string_not_equal(cs.outer.msg_id, cs.inner.msg_id);
  assert_int_equal(total_messages(f.b), 7);
  rmq_pull_consumer_destroy(c);
  rmq_msg_free(m2);
  rmq_msg_free(m);
  fx_close(&f);
}

/* ---- the per-thread buffers' lifetime ----------------------------------- */

/* An allocator that counts live bytes (a size header before each block). */
typedef struct tally {
  atomic_long allocs, frees, live;
} tally;

static void *tally_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  tally *a = ud;
  enum { HDR = 16 };
  (void)osize;
  if (nsize == 0) {
    if (ptr) {
      char *h = (char *)ptr - HDR;
      size_t have;
      memcpy(&have, h, sizeof have);
      atomic_fetch_add(&a->frees, 1);
      atomic_fetch_sub(&a->live, (long)have);
      free(h);
    }
    return NULL;
  }
  char *h = ptr ? (char *)ptr - HDR : NULL;
  size_t have = 0;
  if (h) memcpy(&have, h, sizeof have);
  char *nh = realloc(h, nsize + HDR);
  if (!nh) return NULL;
  memcpy(nh, &nsize, sizeof nsize);
  if (!h) atomic_fetch_add(&a->allocs, 1);
  atomic_fetch_add(&a->live, (long)nsize - (long)have);
  return nh + HDR;
}

typedef struct lt_arg {
  rmq_producer *p;
  pthread_barrier_t *sent, *go;
  int rc;
} lt_arg;

static void *lt_main(void *arg)
{
  lt_arg *a = arg;
  rmq_msg *m;
  a->rc = rmq_msg_create(&m, "LifeT", NULL, "life", 4);
  for (int i = 0; a->rc == RMQ_OK && i < 10; i++) a->rc = rmq_producer_send(a->p, m, NULL);
  if (a->rc == RMQ_OK) rmq_msg_free(m);
  if (a->sent) {
    pthread_barrier_wait(a->sent);
    pthread_barrier_wait(a->go); /* alive while the producer is destroyed */
  }
  return NULL;
}

/* A thread's send buffers go at its exit; every thread's go with the last
** producer, so nothing of rmq's is left when the broker is closed, even with
** sending threads still alive. */
static void test_thread_buffers_freed(void **state)
{
  (void)state;
  static tally a;
  memset(&a, 0, sizeof a);
  rmq_config_allocator(tally_alloc, &a);
  /* No service thread: its periodic work allocates and frees at any moment. */
  rmq_broker_options o;
  small_options(&o);
  o.service_thread = 0;
  fx f;
  fx_open(&f, "prod-life", &o);
  ok(rmq_topic_create(f.b, "LifeT", 2));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "LifeT", NULL, "life", 4));
  /* This thread's buffers made, and both queues' ConsumeQueue files. */
  ok(rmq_producer_send(f.p, m, NULL));
  ok(rmq_producer_send(f.p, m, NULL));
  long live = atomic_load(&a.live);
  /* A thread that sends and exits leaves nothing behind. */
  lt_arg one = {f.p, NULL, NULL, -1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, lt_main, &one), 0);
  pthread_join(th, NULL);
  ok(one.rc);
  assert_int_equal(atomic_load(&a.live), live);

  /* Threads still alive when the last producer goes. */
  enum { N = 4 };
  pthread_barrier_t sent, go;
  pthread_barrier_init(&sent, NULL, N + 1);
  pthread_barrier_init(&go, NULL, N + 1);
  lt_arg args[N];
  pthread_t ths[N];
  for (int i = 0; i < N; i++) {
    args[i] = (lt_arg){f.p, &sent, &go, -1};
    assert_int_equal(pthread_create(&ths[i], NULL, lt_main, &args[i]), 0);
  }
  pthread_barrier_wait(&sent);
  rmq_msg_free(m);
  rmq_producer_destroy(f.p);
  f.p = NULL;
  ok(rmq_broker_close(f.b));
  long allocs = atomic_load(&a.allocs), frees = atomic_load(&a.frees), left = atomic_load(&a.live);
  pthread_barrier_wait(&go);
  for (int i = 0; i < N; i++) {
    pthread_join(ths[i], NULL);
    ok(args[i].rc);
  }
  pthread_barrier_destroy(&sent);
  pthread_barrier_destroy(&go);
  /* Their exit found nothing more to free. */
  assert_int_equal(atomic_load(&a.frees), frees);
  rmq_config_allocator(NULL, NULL);
  tu_store_remove(f.path);
  if (allocs != frees || left != 0) fail_msg("%ld allocations, %ld frees, %ld bytes live", allocs, frees, left);

  /* A new producer afterwards makes new buffers for this thread. */
  fx_open(&f, "prod-life2", NULL);
  ok(rmq_msg_create(&m, "LifeT", NULL, "again", 5));
  ok(rmq_producer_send(f.p, m, NULL));
  rmq_msg_free(m);
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

/* Every call checks its handle's kind: NULL, or a handle of another kind
** (here: the others cast), is RMQ_EINVAL with a message naming the call and
** the kind, and a void call does nothing. (A destroyed handle fails the same
** check while its memory is not reused; that is not tested: reading freed
** memory is undefined, and ASan says so.) */
static void expect_bad(int rc, const char *fn, const char *what)
{
  assert_int_equal(rc, RMQ_EINVAL);
  if (!strstr(rmq_errmsg(), fn) || !strstr(rmq_errmsg(), what))
    fail_msg("rmq_errmsg() '%s' should name %s and say '%s'", rmq_errmsg(), fn, what);
}

static void test_handle_checks(void **state)
{
  (void)state;
  fx f;
  fx_open(&f, "prod-magic", NULL);
  ok(rmq_topic_create(f.b, "MagicT", 2));
  rmq_pull_consumer *pull;
  ok(rmq_pull_consumer_create(f.b, "MagicPull", &pull));
  rmq_push_consumer *push;
  ok(rmq_push_consumer_create(f.b, "MagicPush", NULL, &push));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "MagicT", NULL, "x", 1));
  const rmq_msg *batch[1] = {m};
  rmq_send_result r;
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "MagicT");
  rmq_pull_result pr;
  int64_t off;
  size_t n;

  /* Producer calls given NULL, a broker, a pull and a push consumer. */
  rmq_producer *bad_p[] = {NULL, (rmq_producer *)f.b, (rmq_producer *)pull, (rmq_producer *)push};
  for (size_t i = 0; i < sizeof bad_p / sizeof *bad_p; i++) {
    const char *what = i ? "producer handle is invalid" : "producer is NULL";
    expect_bad(rmq_producer_send(bad_p[i], m, &r), "rmq_producer_send", what);
    expect_bad(rmq_producer_send_to_queue(bad_p[i], m, 0, &r), "rmq_producer_send_to_queue", what);
    expect_bad(rmq_producer_send_select(bad_p[i], m, sh_selector, NULL, &r), "rmq_producer_send_select", what);
    expect_bad(rmq_producer_send_batch(bad_p[i], batch, 1, &r), "rmq_producer_send_batch", what);
    expect_bad(rmq_producer_send_async(bad_p[i], m, NULL, NULL), "rmq_producer_send_async", what);
    expect_bad(rmq_producer_send_oneway(bad_p[i], m), "rmq_producer_send_oneway", what);
    rmq_producer_destroy(bad_p[i]); /* a no-op */
  }
  /* Broker calls given a producer and consumers. */
  void *bad_b[] = {f.p, pull, push};
  for (size_t i = 0; i < sizeof bad_b / sizeof *bad_b; i++) {
    rmq_broker *b = bad_b[i];
    const char *what = "broker handle is invalid";
    rmq_producer *p2;
    rmq_pull_consumer *c2;
    rmq_push_consumer *u2;
    rmq_recovery_info ri;
    rmq_queue_progress qp;
    int64_t mn, mx;
    expect_bad(rmq_broker_close(b), "rmq_broker_close", what);
    expect_bad(rmq_broker_flush(b), "rmq_broker_flush", what);
    expect_bad(rmq_broker_run_due(b, NULL), "rmq_broker_run_due", what);
    expect_bad(rmq_broker_recovery_info(b, &ri), "rmq_broker_recovery_info", what);
    expect_bad(rmq_topic_create(b, "MagicT2", 1), "rmq_topic_create", what);
    expect_bad(rmq_topic_list(b, NULL, 0, &n), "rmq_topic_list", what);
    expect_bad(rmq_topic_queue_offsets(b, "MagicT", 0, &mn, &mx), "rmq_topic_queue_offsets", what);
    expect_bad(rmq_producer_create(b, "G", NULL, &p2), "rmq_producer_create", what);
    expect_bad(rmq_pull_consumer_create(b, "G", &c2), "rmq_pull_consumer_create", what);
    expect_bad(rmq_push_consumer_create(b, "G", NULL, &u2), "rmq_push_consumer_create", what);
    expect_bad(rmq_broker_consumer_progress(b, "G", "MagicT", &qp, 1, &n), "rmq_broker_consumer_progress", what);
    expect_bad(rmq_broker_reset_offset_by_time(b, "G", "MagicT", 0), "rmq_broker_reset_offset_by_time", what);
  }
  /* Pull consumer calls given a push consumer and a producer. */
  void *bad_c[] = {push, f.p};
  for (size_t i = 0; i < sizeof bad_c / sizeof *bad_c; i++) {
    rmq_pull_consumer *c = bad_c[i];
    const char *what = "pull consumer handle is invalid";
    expect_bad(rmq_pull_consumer_fetch_subscribe_message_queues(c, "MagicT", &mq, 1, &n),
               "rmq_pull_consumer_fetch_subscribe_message_queues", what);
    expect_bad(rmq_pull_consumer_pull(c, &mq, "*", 0, 1, &pr), "rmq_pull_consumer_pull", what);
    expect_bad(rmq_pull_consumer_pull_selector(c, &mq, RMQ_SELECTOR_TAG, "*", 0, 1, &pr), "rmq_pull_consumer_pull", what);
    expect_bad(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 0, 1, 0, &pr), "rmq_pull_consumer_pull", what);
    expect_bad(rmq_pull_consumer_update_consume_offset(c, &mq, 0), "rmq_pull_consumer_update_consume_offset", what);
    expect_bad(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off), "rmq_pull_consumer_fetch_consume_offset", what);
    expect_bad(rmq_pull_consumer_assign(c, &mq, 1, "*"), "rmq_pull_consumer_assign", what);
    expect_bad(rmq_pull_consumer_seek(c, &mq, 0), "rmq_pull_consumer_seek", what);
    expect_bad(rmq_pull_consumer_commit(c), "rmq_pull_consumer_commit", what);
    expect_bad(rmq_pull_consumer_set_auto_commit(c, 1, 10), "rmq_pull_consumer_set_auto_commit", what);
    expect_bad(rmq_pull_consumer_poll(c, 1, 0, &pr), "rmq_pull_consumer_poll", what);
    rmq_pull_consumer_destroy(c); /* a no-op */
  }
  /* Push consumer calls given a pull consumer and a producer. */
  void *bad_u[] = {pull, f.p};
  for (size_t i = 0; i < sizeof bad_u / sizeof *bad_u; i++) {
    rmq_push_consumer *c = bad_u[i];
    const char *what = "push consumer handle is invalid";
    expect_bad(rmq_push_consumer_subscribe(c, "MagicT", "*"), "rmq_push_consumer_subscribe", what);
    expect_bad(rmq_push_consumer_register_listener_concurrently(c, NULL, NULL),
               "rmq_push_consumer_register_listener_concurrently", what);
    expect_bad(rmq_push_consumer_register_listener_orderly(c, NULL, NULL), "rmq_push_consumer_register_listener_orderly", what);
    expect_bad(rmq_push_consumer_start(c), "rmq_push_consumer_start", what);
    expect_bad(rmq_push_consumer_assigned_queues(c, NULL, 0, &n), "rmq_push_consumer_assigned_queues", what);
    rmq_push_consumer_shutdown(c); /* no-ops */
    rmq_push_consumer_destroy(c);
  }

  /* Nothing above touched the real handles: all still work. */
  ok(rmq_producer_send(f.p, m, &r));
  ok(rmq_pull_consumer_pull(pull, &r.message_queue, "*", 0, 1, &pr));
  assert_int_equal(pr.n, 1);
  ok(rmq_push_consumer_subscribe(push, "MagicT", "*"));
  rmq_push_consumer_destroy(push);
  rmq_pull_consumer_destroy(pull);
  rmq_msg_free(m);
  assert_int_equal(total_messages(f.b), 1);
  fx_close(&f);
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
    cmocka_unit_test(test_shared_producer_sync_sends),
    cmocka_unit_test(test_shared_producer_mixed_sends),
    cmocka_unit_test(test_shared_producer_sync_flush),
    cmocka_unit_test(test_send_racing_rollover),
    cmocka_unit_test(test_round_robin_order),
    cmocka_unit_test(test_send_from_callbacks),
    cmocka_unit_test(test_thread_buffers_freed),
    cmocka_unit_test(test_validation_table),
    cmocka_unit_test(test_validation_limits),
    cmocka_unit_test(test_born_host_and_flag),
    cmocka_unit_test(test_close_with_live_handles),
    cmocka_unit_test(test_handle_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
