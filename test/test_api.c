/*
** test_api.c -- the public API as a user sees it: versions, error codes and
** messages, the message builder, option defaults (RocketMQ's), a small
** end-to-end run, topics, the allocator hook (balance and fault injection)
** and NULL arguments. Uses rmq.h only: it is also built against the one-file
** amalgamation (build/test/test_amalgamation, -DRMQ_TEST_AMALGAMATION).
*/
#include "test_util.h"

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_wait_atleast; (void)tu_clock_advance; (void)tu_clock_read;
}

static void quiet_log(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

/* Small files keep the many stores these tests open cheap. */
static void small_options(rmq_broker_options *o)
{
  rmq_broker_options_init(o);
  o->mapped_file_size_commit_log = 256 * 1024;
  o->mapped_file_size_consume_queue = 20 * 1024;
}

/* ------------------------------------------------------------------------- */
/* Version and errors                                                         */
/* ------------------------------------------------------------------------- */

static void test_version(void **state)
{
  (void)state;
  assert_int_equal(RMQ_VERSION_NUMBER, RMQ_VERSION_MAJOR * 1000000 + RMQ_VERSION_MINOR * 1000 + RMQ_VERSION_PATCH);
  assert_int_equal(rmq_libversion_number(), RMQ_VERSION_NUMBER);
  assert_non_null(rmq_libversion());
  assert_string_equal(rmq_libversion(), RMQ_VERSION);
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", RMQ_VERSION_MAJOR, RMQ_VERSION_MINOR, RMQ_VERSION_PATCH);
  assert_string_equal(RMQ_VERSION, want);
}

static const int k_codes[] = {
  RMQ_OK, RMQ_EINVAL, RMQ_ENOMEM, RMQ_EIO, RMQ_ENOSPC, RMQ_EBUSY, RMQ_ETIMEDOUT, RMQ_ECORRUPT,
  RMQ_ENOTFOUND, RMQ_ESTATE, RMQ_ETOPIC, RMQ_EGROUP, RMQ_ENOBODY, RMQ_EMSGSIZE, RMQ_EPROPERTY,
  RMQ_ERESERVED, RMQ_EPROPSIZE, RMQ_EFORBIDDEN, RMQ_ENOTOPIC, RMQ_EQUEUE, RMQ_EEXPR, RMQ_ENOTSUP,
  RMQ_EBATCH,
};
#define NCODES ((int)(sizeof k_codes / sizeof k_codes[0]))

static void test_errstr(void **state)
{
  (void)state;
  /* The codes themselves: 0, then -1 .. -22 with no gap. */
  for (int i = 0; i < NCODES; i++) assert_int_equal(k_codes[i], -i);
  const char *unknown = rmq_errstr(-999);
  assert_non_null(unknown);
  assert_true(unknown[0] != 0);
  assert_non_null(rmq_errstr(1));
  assert_non_null(rmq_errstr(INT32_MIN));
  for (int i = 0; i < NCODES; i++) {
    const char *s = rmq_errstr(k_codes[i]);
    assert_non_null(s);
    assert_true(s[0] != 0);
    if (!strcmp(s, unknown)) fail_msg("code %d has the unknown-code text '%s'", k_codes[i], s);
    for (int j = 0; j < i; j++)
      if (!strcmp(s, rmq_errstr(k_codes[j]))) fail_msg("codes %d and %d share the text '%s'", k_codes[i], k_codes[j], s);
  }
}

typedef struct errmsg_thread {
  char initial[512];
  char after[512];
  int rc;
} errmsg_thread;

static void *errmsg_main(void *arg)
{
  errmsg_thread *t = arg;
  snprintf(t->initial, sizeof t->initial, "%s", rmq_errmsg());
  rmq_msg *m;
  if (rmq_msg_create(&m, "T", NULL, "x", 1) != RMQ_OK) return NULL;
  t->rc = rmq_msg_set_delay_time_level(m, -77);
  snprintf(t->after, sizeof t->after, "%s", rmq_errmsg());
  rmq_msg_free(m);
  return NULL;
}

static void test_errmsg_per_thread(void **state)
{
  (void)state;
  assert_int_equal(rmq_topic_create(NULL, "T", 1), RMQ_EINVAL);
  char mine[512];
  snprintf(mine, sizeof mine, "%s", rmq_errmsg());
  assert_true(mine[0] != 0);
  assert_non_null(strstr(mine, "rmq_topic_create"));

  errmsg_thread t;
  memset(&t, 0, sizeof t);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, errmsg_main, &t), 0);
  pthread_join(th, NULL);
  /* A new thread starts with "", and its failure is its own. */
  assert_string_equal(t.initial, "");
  assert_int_equal(t.rc, RMQ_EINVAL);
  assert_non_null(strstr(t.after, "-77"));
  /* This thread's message did not change. */
  assert_string_equal(rmq_errmsg(), mine);
}

/* ------------------------------------------------------------------------- */
/* Messages                                                                   */
/* ------------------------------------------------------------------------- */

static void test_msg_builder(void **state)
{
  (void)state;
  rmq_msg *m;
  ok(rmq_msg_create(&m, "TopicA", "TagA", "body", 4));
  assert_string_equal(rmq_msg_get_property(m, "TAGS"), "TagA");
  /* new Message(...) always sets WAIT=true. */
  assert_string_equal(rmq_msg_get_property(m, "WAIT"), "true");
  assert_null(rmq_msg_get_property(m, "KEYS"));
  assert_null(rmq_msg_get_property(m, "DELAY"));
  assert_null(rmq_msg_get_property(m, "nope"));

  ok(rmq_msg_set_keys(m, "k1 k2"));
  assert_string_equal(rmq_msg_get_property(m, "KEYS"), "k1 k2");
  ok(rmq_msg_set_tags(m, "TagB"));
  assert_string_equal(rmq_msg_get_property(m, "TAGS"), "TagB");

  ok(rmq_msg_set_wait_store_msg_ok(m, 0));
  assert_string_equal(rmq_msg_get_property(m, "WAIT"), "false");
  ok(rmq_msg_set_wait_store_msg_ok(m, 1));
  assert_string_equal(rmq_msg_get_property(m, "WAIT"), "true");

  ok(rmq_msg_set_delay_time_level(m, 3));
  assert_string_equal(rmq_msg_get_property(m, "DELAY"), "3");
  assert_int_equal(rmq_msg_set_delay_time_level(m, -1), RMQ_EINVAL);
  assert_string_equal(rmq_msg_get_property(m, "DELAY"), "3"); /* unchanged by the failure */
  ok(rmq_msg_set_delay_time_level(m, 0));
  assert_null(rmq_msg_get_property(m, "DELAY"));

  ok(rmq_msg_put_user_property(m, "color", "red"));
  assert_string_equal(rmq_msg_get_property(m, "color"), "red");
  ok(rmq_msg_put_user_property(m, "color", "blue, a much longer value than before"));
  assert_string_equal(rmq_msg_get_property(m, "color"), "blue, a much longer value than before");
  ok(rmq_msg_put_user_property(m, "size", "L"));
  assert_string_equal(rmq_msg_get_property(m, "color"), "blue, a much longer value than before");
  assert_string_equal(rmq_msg_get_property(m, "size"), "L");

  /* Setters copy: the caller's buffer may change afterwards. */
  char buf[16];
  snprintf(buf, sizeof buf, "orig");
  ok(rmq_msg_put_user_property(m, "copy", buf));
  snprintf(buf, sizeof buf, "XXXX");
  assert_string_equal(rmq_msg_get_property(m, "copy"), "orig");

  /* NULL or "" clears tags and keys. */
  ok(rmq_msg_set_tags(m, NULL));
  assert_null(rmq_msg_get_property(m, "TAGS"));
  ok(rmq_msg_set_tags(m, "again"));
  ok(rmq_msg_set_tags(m, ""));
  assert_null(rmq_msg_get_property(m, "TAGS"));
  ok(rmq_msg_set_keys(m, NULL));
  assert_null(rmq_msg_get_property(m, "KEYS"));

  /* Bad values are refused and leave the old value. */
  ok(rmq_msg_set_tags(m, "good"));
  assert_int_equal(rmq_msg_set_tags(m, "a\x01" "b"), RMQ_EPROPERTY);
  assert_string_equal(rmq_msg_get_property(m, "TAGS"), "good");
  assert_int_equal(rmq_msg_set_keys(m, "\xff\xfe"), RMQ_EPROPERTY);
  assert_int_equal(rmq_msg_put_user_property(m, "TAGS", "x"), RMQ_ERESERVED);
  assert_string_equal(rmq_msg_get_property(m, "TAGS"), "good");
  rmq_msg_free(m);

  /* Everything may be set later. */
  ok(rmq_msg_create(&m, NULL, NULL, NULL, 0));
  assert_string_equal(rmq_msg_get_property(m, "WAIT"), "true");
  assert_null(rmq_msg_get_property(m, "TAGS"));
  ok(rmq_msg_set_topic(m, "T"));
  ok(rmq_msg_set_body(m, "abc", 3));
  ok(rmq_msg_set_flag(m, 42));
  rmq_msg_free(m);
}

/* ------------------------------------------------------------------------- */
/* Defaults                                                                   */
/* ------------------------------------------------------------------------- */

static void test_broker_defaults(void **state)
{
  (void)state;
  rmq_broker_options o;
  memset(&o, 0x5a, sizeof o);
  rmq_broker_options_init(&o);
  assert_int_equal(o.flush_disk_type, RMQ_ASYNC_FLUSH);
  assert_int_equal(o.flush_interval_commit_log, 500);
  assert_int_equal(o.flush_commit_log_least_pages, 4);
  assert_int_equal(o.flush_commit_log_thorough_interval, 10000);
  assert_int_equal(o.flush_interval_consume_queue, 1000);
  assert_int_equal(o.sync_flush_timeout, 5000);
  assert_int_equal(o.mapped_file_size_commit_log, 64 << 20);
  assert_int_equal(o.mapped_file_size_consume_queue, 6000000);
  assert_int_equal(o.max_message_size, 4194304);
  assert_int_equal(o.default_topic_queue_nums, 8);
  assert_int_equal(o.auto_create_topic_enable, 1);
  assert_int_equal(o.check_crc_on_recover, 1);
  assert_int_equal(o.flush_consumer_offset_interval, 5000);
  assert_int_equal(o.service_thread, 1);
  assert_int_equal(o.group_commit_gather_us, 200);
  assert_string_equal(o.broker_name, "rmq-broker");
  assert_string_equal(o.store_host, "127.0.0.1");
  assert_int_equal(o.store_port, 10911);
  assert_null(o.clock);
  assert_null(o.clock_ctx);
  assert_null(o.log);
  assert_null(o.log_ctx);
  assert_int_equal(o.log_level, RMQ_LOG_WARN);
  rmq_broker_options_init(NULL); /* harmless */
}

static void test_producer_defaults(void **state)
{
  (void)state;
  rmq_producer_options o;
  memset(&o, 0x5a, sizeof o);
  rmq_producer_options_init(&o);
  assert_int_equal(o.send_msg_timeout, 3000);
  assert_int_equal(o.default_topic_queue_nums, 4);
  assert_int_equal(o.max_message_size, 4194304);
  assert_string_equal(o.born_host, "127.0.0.1");
  assert_int_equal(o.born_port, 0);
  rmq_producer_options_init(NULL);
}

static void test_push_consumer_defaults(void **state)
{
  (void)state;
  rmq_push_consumer_options o;
  memset(&o, 0x5a, sizeof o);
  rmq_push_consumer_options_init(&o);
  assert_int_equal(o.message_model, RMQ_CLUSTERING);
  assert_int_equal(o.consume_from_where, RMQ_CONSUME_FROM_LAST_OFFSET);
  assert_int_equal(o.consume_timestamp, 0);
  assert_int_equal(o.consume_thread_min, 20);
  assert_int_equal(o.consume_thread_max, 20);
  assert_int_equal(o.pull_batch_size, 32);
  assert_int_equal(o.consume_message_batch_max_size, 1);
  assert_int_equal(o.pull_threshold_for_queue, 1000);
  assert_int_equal(o.max_reconsume_times, -1);
  assert_int_equal(o.persist_consumer_offset_interval, 5000);
  assert_int_equal(o.reconsume_delay_ms, 1000);
  assert_null(o.instance_name);
  rmq_push_consumer_options_init(NULL);
}

/* ------------------------------------------------------------------------- */
/* End to end, topics                                                         */
/* ------------------------------------------------------------------------- */

static void test_end_to_end(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "api-e2e");
  rmq_broker *b;
  ok(rmq_broker_open(path, NULL, &b));
  ok(rmq_topic_create(b, "ApiT", 4));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p)); /* NULL group: DEFAULT_PRODUCER */
  rmq_msg *m;
  ok(rmq_msg_create(&m, "ApiT", "TagA", NULL, 0));
  char sent_ids[8][RMQ_MSG_ID_SIZE];
  for (int i = 0; i < 8; i++) {
    char body[32];
    int n = snprintf(body, sizeof body, "Hello RocketMQ %d", i);
    ok(rmq_msg_set_body(m, body, (size_t)n));
    rmq_send_result r;
    ok(rmq_producer_send(p, m, &r));
    assert_int_equal(r.send_status, RMQ_SEND_OK);
    assert_string_equal(r.message_queue.topic, "ApiT");
    memcpy(sent_ids[i], r.msg_id, RMQ_MSG_ID_SIZE);
  }
  rmq_msg_free(m);

  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "ApiPull", &c));
  rmq_message_queue mqs[8];
  size_t nq;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, "ApiT", mqs, 8, &nq));
  assert_int_equal(nq, 4);
  int seen[8] = {0};
  for (size_t q = 0; q < nq; q++) {
    rmq_pull_result r;
    ok(rmq_pull_consumer_pull(c, &mqs[q], "TagA", 0, 32, &r));
    assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.next_begin_offset, 2);
    for (size_t i = 0; i < r.n; i++) {
      int k = -1;
      assert_int_equal(sscanf((const char *)r.msgs[i].body, "Hello RocketMQ %d", &k), 1);
      assert_in_range(k, 0, 7);
      assert_string_equal(r.msgs[i].msg_id, sent_ids[k]);
      assert_int_equal(r.msgs[i].queue_id, (int)q);
      seen[k]++;
    }
  }
  for (int i = 0; i < 8; i++) assert_int_equal(seen[i], 1);
  rmq_pull_consumer_destroy(c);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

static void test_topics(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "api-topics");
  rmq_broker_options o;
  small_options(&o);
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  size_t n = 99;
  ok(rmq_topic_list(b, NULL, 0, &n));
  assert_int_equal(n, 0);

  ok(rmq_topic_create(b, "Zeta", 2));
  ok(rmq_topic_create(b, "Alpha", 3));
  ok(rmq_topic_create(b, "Mid_1-x", 1));
  ok(rmq_topic_list(b, NULL, 0, &n));
  assert_int_equal(n, 3);
  rmq_topic_info ti[4];
  memset(ti, 0, sizeof ti);
  ok(rmq_topic_list(b, ti, 2, &n)); /* too small: fills 2, says 3 */
  assert_int_equal(n, 3);
  assert_string_equal(ti[0].topic_name, "Alpha");
  assert_string_equal(ti[1].topic_name, "Mid_1-x");
  assert_string_equal(ti[2].topic_name, ""); /* untouched */
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(n, 3);
  const char *names[] = {"Alpha", "Mid_1-x", "Zeta"};
  const int nqs[] = {3, 1, 2};
  for (int i = 0; i < 3; i++) {
    assert_string_equal(ti[i].topic_name, names[i]);
    assert_int_equal(ti[i].read_queue_nums, nqs[i]);
    assert_int_equal(ti[i].write_queue_nums, nqs[i]);
    assert_int_equal(ti[i].perm, 6);
  }

  /* Queue offsets follow the sends. */
  rmq_producer *p;
  ok(rmq_producer_create(b, "PG", NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Zeta", NULL, "x", 1));
  for (int i = 0; i < 3; i++) ok(rmq_producer_send_to_queue(p, m, 1, NULL));
  int64_t mn = -1, mx = -1;
  ok(rmq_topic_queue_offsets(b, "Zeta", 0, &mn, &mx));
  assert_int_equal(mn, 0);
  assert_int_equal(mx, 0);
  ok(rmq_topic_queue_offsets(b, "Zeta", 1, &mn, &mx));
  assert_int_equal(mn, 0);
  assert_int_equal(mx, 3);
  ok(rmq_topic_queue_offsets(b, "Zeta", 1, NULL, &mx)); /* either out may be NULL */
  assert_int_equal(rmq_topic_queue_offsets(b, "Zeta", 2, &mn, &mx), RMQ_EQUEUE);
  assert_int_equal(rmq_topic_queue_offsets(b, "Zeta", -1, &mn, &mx), RMQ_EQUEUE);
  assert_int_equal(rmq_topic_queue_offsets(b, "Nope", 0, &mn, &mx), RMQ_ENOTOPIC);
  assert_non_null(strstr(rmq_errmsg(), "Nope"));

  /* Growing keeps the messages; shrinking hides the higher queues. */
  ok(rmq_topic_create(b, "Zeta", 6));
  ok(rmq_topic_queue_offsets(b, "Zeta", 5, &mn, &mx));
  assert_int_equal(mx, 0);
  ok(rmq_topic_queue_offsets(b, "Zeta", 1, &mn, &mx));
  assert_int_equal(mx, 3);
  ok(rmq_topic_create(b, "Zeta", 1));
  assert_int_equal(rmq_topic_queue_offsets(b, "Zeta", 1, &mn, &mx), RMQ_EQUEUE);
  assert_int_equal(rmq_producer_send_to_queue(p, m, 1, NULL), RMQ_EQUEUE);
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(ti[2].read_queue_nums, 1);
  ok(rmq_topic_create(b, "Zeta", 2)); /* and growing again shows them */
  ok(rmq_topic_queue_offsets(b, "Zeta", 1, &mn, &mx));
  assert_int_equal(mx, 3);
  ok(rmq_topic_create(b, "Zeta", 1)); /* hidden again across the reopen below */

  /* Creation errors. */
  assert_int_equal(rmq_topic_create(b, "Bad", 0), RMQ_EQUEUE);
  assert_int_equal(rmq_topic_create(b, "Bad", RMQ_MAX_QUEUE_NUMS + 1), RMQ_EQUEUE);
  assert_int_equal(rmq_topic_create(b, "TBW102", 1), RMQ_EFORBIDDEN);
  assert_int_equal(rmq_topic_create(b, "rmq_sys_x", 1), RMQ_EFORBIDDEN);
  assert_int_equal(rmq_topic_create(b, "a/b", 1), RMQ_ETOPIC);
  assert_int_equal(rmq_topic_create(b, "", 1), RMQ_ETOPIC);
  ok(rmq_topic_list(b, NULL, 0, &n));
  assert_int_equal(n, 3);

  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));

  /* Topics and their queue counts survive a reopen; the hidden queue keeps
  ** its messages and its end, so growing again appends after them. */
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(n, 3);
  assert_string_equal(ti[0].topic_name, "Alpha");
  assert_int_equal(ti[0].read_queue_nums, 3);
  assert_string_equal(ti[2].topic_name, "Zeta");
  assert_int_equal(ti[2].read_queue_nums, 1);
  assert_int_equal(rmq_topic_queue_offsets(b, "Zeta", 1, &mn, &mx), RMQ_EQUEUE);
  ok(rmq_topic_create(b, "Zeta", 2));
  ok(rmq_topic_queue_offsets(b, "Zeta", 1, &mn, &mx));
  assert_int_equal(mx, 3);
  ok(rmq_producer_create(b, "PG", NULL, &p));
  ok(rmq_msg_create(&m, "Zeta", NULL, "y", 1));
  rmq_send_result sr;
  ok(rmq_producer_send_to_queue(p, m, 1, &sr));
  assert_int_equal(sr.queue_offset, 3);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

static void test_broker_open_errors(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "api-open");
  rmq_broker *b = NULL;
  rmq_broker_options o;

  small_options(&o);
  o.flush_disk_type = 7;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  assert_non_null(strstr(rmq_errmsg(), "flush_disk_type"));
  small_options(&o);
  o.mapped_file_size_commit_log = 65536 + 100;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  small_options(&o);
  o.mapped_file_size_consume_queue = 20 * 1000 + 1;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  small_options(&o);
  o.store_host = "localhost";
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  assert_non_null(strstr(rmq_errmsg(), "localhost"));
  small_options(&o);
  o.broker_name = "";
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  small_options(&o);
  o.max_message_size = 0;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  small_options(&o);
  o.default_topic_queue_nums = 0;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  assert_null(b);
  /* Refused options create nothing. */
  struct stat st;
  assert_int_not_equal(stat(path, &st), 0);

  /* One open at a time per directory. */
  small_options(&o);
  ok(rmq_broker_open(path, &o, &b));
  rmq_broker *b2 = NULL;
  assert_int_equal(rmq_broker_open(path, &o, &b2), RMQ_EBUSY);
  assert_null(b2);
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 0);
  ok(rmq_broker_close(b));
  ok(rmq_broker_open(path, &o, &b2)); /* free again after close */
  ok(rmq_broker_close(b2));
  tu_store_remove(path);
}

/* ------------------------------------------------------------------------- */
/* The allocator hook                                                         */
/* ------------------------------------------------------------------------- */

/* Each block carries its size in a header, so frees and reallocs can be
** checked against the osize rmq passes. */
typedef struct counting {
  atomic_long allocs, frees, reallocs;
  atomic_long live_bytes;
  atomic_long size_mismatches;
  atomic_long events;      /* calls with nsize > 0 */
  atomic_long fail_at;     /* fail the event with this number (1-based), 0 = never */
  atomic_long failed;      /* failures injected */
} counting;

#define HDR 16

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  counting *c = ud;
  if (nsize == 0) {
    if (ptr) {
      char *h = (char *)ptr - HDR;
      size_t have;
      memcpy(&have, h, sizeof have);
      if (have != osize) atomic_fetch_add(&c->size_mismatches, 1);
      atomic_fetch_add(&c->frees, 1);
      atomic_fetch_sub(&c->live_bytes, (long)have);
      free(h);
    }
    return NULL;
  }
  long ev = atomic_fetch_add(&c->events, 1) + 1;
  if (ev == atomic_load(&c->fail_at)) {
    atomic_fetch_add(&c->failed, 1);
    return NULL;
  }
  if (!ptr) {
    char *h = malloc(nsize + HDR);
    if (!h) return NULL;
    memcpy(h, &nsize, sizeof nsize);
    atomic_fetch_add(&c->allocs, 1);
    atomic_fetch_add(&c->live_bytes, (long)nsize);
    return h + HDR;
  }
  char *h = (char *)ptr - HDR;
  size_t have;
  memcpy(&have, h, sizeof have);
  if (have != osize) atomic_fetch_add(&c->size_mismatches, 1);
  char *nh = realloc(h, nsize + HDR);
  if (!nh) return NULL;
  memcpy(nh, &nsize, sizeof nsize);
  atomic_fetch_add(&c->reallocs, 1);
  atomic_fetch_add(&c->live_bytes, (long)nsize - (long)have);
  return nh + HDR;
}

static atomic_int g_listener_count;

static int count_listener(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)msgs; (void)cc;
  atomic_fetch_add((atomic_int *)ctx, (int)n);
  return RMQ_CONSUME_SUCCESS;
}

static void test_allocator_balances(void **state)
{
  (void)state;
  static counting c;
  memset(&c, 0, sizeof c);
  rmq_config_allocator(counting_alloc, &c);

  char path[1024];
  tu_store_path(path, sizeof path, "api-alloc");
  rmq_broker_options o;
  small_options(&o);
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, "AllocT", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, "PG", NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "AllocT", "t1", "payload", 7));
  ok(rmq_msg_set_keys(m, "k1 k2"));
  ok(rmq_msg_put_user_property(m, "a", "b"));
  for (int i = 0; i < 10; i++) ok(rmq_producer_send(p, m, NULL));
  ok(rmq_producer_send(p, m, NULL));
  ok(rmq_msg_set_topic(m, "AllocAuto")); /* auto-created */
  ok(rmq_producer_send_oneway(p, m));

  atomic_int got = 0;
  rmq_push_consumer_options po;
  rmq_push_consumer_options_init(&po);
  po.consume_thread_min = po.consume_thread_max = 2;
  po.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  rmq_push_consumer *pc;
  ok(rmq_push_consumer_create(b, "PushG", &po, &pc));
  ok(rmq_push_consumer_subscribe(pc, "AllocT", "t1 || t2"));
  ok(rmq_push_consumer_register_listener_concurrently(pc, count_listener, &got));
  ok(rmq_push_consumer_start(pc));

  rmq_pull_consumer *pl;
  ok(rmq_pull_consumer_create(b, "PullG", &pl));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "AllocT");
  rmq_pull_result r;
  ok(rmq_pull_consumer_pull(pl, &mq, "t1", 0, 64, &r));
  assert_int_equal(r.n, 6);
  rmq_message_ext *copy;
  ok(rmq_message_ext_copy(&r.msgs[0], &copy));
  ok(rmq_pull_consumer_update_consume_offset(pl, &mq, 6));
  assert_true(tu_wait_atleast(&got, 11, 10000));
  rmq_push_consumer_destroy(pc);
  rmq_message_ext_free(copy);
  rmq_pull_consumer_destroy(pl);
  rmq_producer_destroy(p);
  rmq_msg_free(m);
  ok(rmq_broker_close(b));

  long allocs = atomic_load(&c.allocs), frees = atomic_load(&c.frees);
  rmq_config_allocator(NULL, NULL);
  tu_store_remove(path);
  assert_true(allocs > 20); /* the hook was really used */
  if (allocs != frees || atomic_load(&c.live_bytes) != 0)
    fail_msg("allocations %ld, frees %ld, live bytes %ld", allocs, frees, atomic_load(&c.live_bytes));
  assert_int_equal(atomic_load(&c.size_mismatches), 0);
}

/* One broker life with the allocation numbered fail_at failing. Returns 1 if
** that allocation was reached. Every call must answer RMQ_OK or RMQ_ENOMEM;
** whatever got made is destroyed. */
static int alloc_fault_run(counting *c, long fail_at)
{
  char path[1024];
  tu_store_path(path, sizeof path, "api-oom");
  memset(c, 0, sizeof *c);
  atomic_store(&c->fail_at, fail_at);
  rmq_config_allocator(counting_alloc, c);

  rmq_broker_options o;
  small_options(&o);
  o.service_thread = 0; /* every allocation on this thread, in a fixed order */
  o.log = quiet_log;
  rmq_broker *b = NULL;
  rmq_producer *p = NULL;
  rmq_pull_consumer *pl = NULL;
  rmq_msg *m = NULL;
  int rc, step = 0;
#define STEP(call)                                                                             \
  do {                                                                                        \
    step++;                                                                                   \
    rc = (call);                                                                              \
    if (rc != RMQ_OK && rc != RMQ_ENOMEM)                                                     \
      fail_msg("fail_at %ld, step %d (%s): rc %d (%s): %s", fail_at, step, #call, rc, rmq_errstr(rc), rmq_errmsg()); \
    if (rc == RMQ_ENOMEM) {                                                                   \
      if (!rmq_errmsg()[0]) fail_msg("fail_at %ld, step %d: ENOMEM without a message", fail_at, step); \
      goto out;                                                                               \
    }                                                                                         \
  } while (0)

  STEP(rmq_broker_open(path, &o, &b));
  STEP(rmq_topic_create(b, "OomT", 2));
  STEP(rmq_producer_create(b, "PG", NULL, &p));
  STEP(rmq_msg_create(&m, "OomT", "tag", "body", 4));
  STEP(rmq_msg_set_keys(m, "key1"));
  STEP(rmq_msg_put_user_property(m, "prop", "value"));
  STEP(rmq_producer_send(p, m, NULL));
  STEP(rmq_producer_send(p, m, NULL));
  STEP(rmq_msg_set_topic(m, "OomAuto"));
  STEP(rmq_producer_send(p, m, NULL));
  STEP(rmq_pull_consumer_create(b, "CG", &pl));
  {
    rmq_message_queue mq;
    memset(&mq, 0, sizeof mq);
    snprintf(mq.topic, sizeof mq.topic, "OomT");
    rmq_pull_result r;
    STEP(rmq_pull_consumer_pull(pl, &mq, "tag", 0, 8, &r));
    if (r.n != 1) fail_msg("fail_at %ld: pulled %zu messages, want 1", fail_at, r.n);
    STEP(rmq_pull_consumer_update_consume_offset(pl, &mq, 1));
    STEP(rmq_broker_run_due(b, NULL));
    STEP(rmq_broker_flush(b));
  }
out:
  rmq_pull_consumer_destroy(pl);
  rmq_producer_destroy(p);
  rmq_msg_free(m);
  if (b) {
    rc = rmq_broker_close(b);
    if (rc != RMQ_OK && rc != RMQ_ENOMEM) fail_msg("fail_at %ld: close rc %d: %s", fail_at, rc, rmq_errmsg());
  }
#undef STEP
  rmq_config_allocator(NULL, NULL);
  tu_store_remove(path);
  if (atomic_load(&c->allocs) != atomic_load(&c->frees) || atomic_load(&c->live_bytes) != 0)
    fail_msg("fail_at %ld (step %d): %ld allocations, %ld frees, %ld bytes leaked", fail_at, step,
             atomic_load(&c->allocs), atomic_load(&c->frees), atomic_load(&c->live_bytes));
  if (atomic_load(&c->size_mismatches)) fail_msg("fail_at %ld: %ld frees with a wrong size", fail_at, atomic_load(&c->size_mismatches));
  return atomic_load(&c->failed) > 0;
}

static void test_allocator_fault_injection(void **state)
{
  (void)state;
  static counting c;
  /* A clean run first: how many allocations the sequence makes. */
  assert_int_equal(alloc_fault_run(&c, 0), 0);
  long total = atomic_load(&c.events);
  assert_true(total > 10);
  long n;
  for (n = 1; n <= total + 5; n++)
    if (!alloc_fault_run(&c, n)) break;
  /* Failing past the last allocation changes nothing. */
  assert_true(n > total);
  print_message("    %ld allocation points injected\n", total);
}

/* ------------------------------------------------------------------------- */
/* NULL arguments                                                             */
/* ------------------------------------------------------------------------- */

static void test_null_arguments(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "api-null");
  rmq_broker_options o;
  small_options(&o);
  rmq_broker *b = NULL;
  assert_int_equal(rmq_broker_open(NULL, &o, &b), RMQ_EINVAL);
  assert_int_equal(rmq_broker_open("", &o, &b), RMQ_EINVAL);
  assert_int_equal(rmq_broker_open(path, &o, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_broker_close(NULL), RMQ_OK);
  assert_int_equal(rmq_broker_run_due(NULL, NULL), RMQ_EINVAL);
  /* A NULL handle's message names the function called, wrapper or not. */
  static const struct { int rc; const char *fn; } named[] = {
    {0, "rmq_pull_consumer_pull:"}, {1, "rmq_pull_consumer_pull_selector:"},
    {2, "rmq_pull_consumer_pull_block_if_not_found:"}, {3, "rmq_pull_consumer_pull_selector_block:"},
    {4, "rmq_pull_consumer_assign:"}, {5, "rmq_pull_consumer_assign_selector:"},
    {6, "rmq_push_consumer_subscribe:"}, {7, "rmq_push_consumer_subscribe_selector:"},
  };
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
    rmq_pull_result pr;
    rmq_message_queue mq = tu_mq("T", 0);
    int rc = -100;
    switch (named[i].rc) {
    case 0: rc = rmq_pull_consumer_pull(NULL, &mq, "*", 0, 1, &pr); break;
    case 1: rc = rmq_pull_consumer_pull_selector(NULL, &mq, RMQ_SELECTOR_TAG, "*", 0, 1, &pr); break;
    case 2: rc = rmq_pull_consumer_pull_block_if_not_found(NULL, &mq, "*", 0, 1, 0, &pr); break;
    case 3: rc = rmq_pull_consumer_pull_selector_block(NULL, &mq, RMQ_SELECTOR_TAG, "*", 0, 1, 0, &pr); break;
    case 4: rc = rmq_pull_consumer_assign(NULL, &mq, 1, "*"); break;
    case 5: rc = rmq_pull_consumer_assign_selector(NULL, &mq, 1, RMQ_SELECTOR_TAG, "*"); break;
    case 6: rc = rmq_push_consumer_subscribe(NULL, "T", "*"); break;
    case 7: rc = rmq_push_consumer_subscribe_selector(NULL, "T", RMQ_SELECTOR_TAG, "*"); break;
    }
    assert_int_equal(rc, RMQ_EINVAL);
    if (strncmp(rmq_errmsg(), named[i].fn, strlen(named[i].fn))) fail_msg("%s: %s", named[i].fn, rmq_errmsg());
  }
  assert_int_equal(rmq_broker_flush(NULL), RMQ_EINVAL);
  rmq_recovery_info ri;
  assert_int_equal(rmq_broker_recovery_info(NULL, &ri), RMQ_EINVAL);
  ok(rmq_broker_open(path, &o, &b));
  assert_int_equal(rmq_broker_recovery_info(b, NULL), RMQ_EINVAL);
  int64_t next = -1;
  ok(rmq_broker_run_due(b, NULL));
  ok(rmq_broker_run_due(b, &next));
  assert_true(next >= 0);

  size_t n;
  rmq_topic_info ti;
  assert_int_equal(rmq_topic_create(NULL, "T", 1), RMQ_EINVAL);
  assert_int_equal(rmq_topic_create(b, NULL, 1), RMQ_ETOPIC);
  assert_int_equal(rmq_topic_list(NULL, &ti, 1, &n), RMQ_EINVAL);
  assert_int_equal(rmq_topic_list(b, &ti, 1, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_topic_list(b, NULL, 1, &n), RMQ_EINVAL);
  int64_t mn, mx;
  assert_int_equal(rmq_topic_queue_offsets(NULL, "T", 0, &mn, &mx), RMQ_EINVAL);
  assert_int_equal(rmq_topic_queue_offsets(b, NULL, 0, &mn, &mx), RMQ_EINVAL);
  ok(rmq_topic_create(b, "T", 1));

  /* Messages. */
  rmq_msg *m;
  assert_int_equal(rmq_msg_create(NULL, "T", NULL, "x", 1), RMQ_EINVAL);
  rmq_msg_free(NULL);
  assert_int_equal(rmq_msg_set_topic(NULL, "T"), RMQ_EINVAL);
  assert_int_equal(rmq_msg_set_tags(NULL, "a"), RMQ_EINVAL);
  assert_int_equal(rmq_msg_set_keys(NULL, "a"), RMQ_EINVAL);
  assert_int_equal(rmq_msg_set_body(NULL, "a", 1), RMQ_EINVAL);
  assert_int_equal(rmq_msg_set_flag(NULL, 1), RMQ_EINVAL);
  assert_int_equal(rmq_msg_set_delay_time_level(NULL, 1), RMQ_EINVAL);
  assert_int_equal(rmq_msg_set_wait_store_msg_ok(NULL, 1), RMQ_EINVAL);
  assert_int_equal(rmq_msg_put_user_property(NULL, "a", "b"), RMQ_EINVAL);
  assert_null(rmq_msg_get_property(NULL, "TAGS"));
  ok(rmq_msg_create(&m, "T", NULL, "x", 1));
  assert_int_equal(rmq_msg_set_topic(m, NULL), RMQ_EINVAL);
  assert_null(rmq_msg_get_property(m, NULL));
  /* A NULL name or value is RocketMQ's "can not be null or blank". */
  assert_int_equal(rmq_msg_put_user_property(m, NULL, "b"), RMQ_EPROPERTY);
  assert_int_equal(rmq_msg_put_user_property(m, "a", NULL), RMQ_EPROPERTY);
  ok(rmq_msg_set_body(m, NULL, 5)); /* NULL body: empty, refused at send */

  /* Producers. */
  rmq_producer *p;
  assert_int_equal(rmq_producer_create(NULL, "G", NULL, &p), RMQ_EINVAL);
  assert_int_equal(rmq_producer_create(b, "G", NULL, NULL), RMQ_EINVAL);
  rmq_producer_destroy(NULL);
  ok(rmq_producer_create(b, "G", NULL, &p));
  rmq_send_result sr;
  assert_int_equal(rmq_producer_send(NULL, m, &sr), RMQ_EINVAL);
  assert_int_equal(rmq_producer_send_to_queue(NULL, m, 0, &sr), RMQ_EINVAL);
  assert_int_equal(rmq_producer_send_async(NULL, m, NULL, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_producer_send_oneway(NULL, m), RMQ_EINVAL);
  /* A NULL message: RocketMQ's "the message is null" (MESSAGE_ILLEGAL). */
  int rc = rmq_producer_send(p, NULL, &sr);
  assert_true(rc == RMQ_EINVAL || rc == RMQ_ENOBODY);
  rc = rmq_producer_send_oneway(p, NULL);
  assert_true(rc == RMQ_EINVAL || rc == RMQ_ENOBODY);
  assert_int_equal(rmq_producer_send(p, m, NULL), RMQ_ENOBODY); /* the NULL body */
  ok(rmq_msg_set_body(m, "x", 1));
  ok(rmq_producer_send(p, m, NULL)); /* r may be NULL */
  ok(rmq_producer_send_async(p, m, NULL, NULL)); /* cb may be NULL */
  assert_int_equal(rmq_send_result_format(NULL, NULL, 0), RMQ_EINVAL);
  assert_int_equal(rmq_send_result_format(&sr, NULL, 10), RMQ_EINVAL);

  /* Push consumers. */
  rmq_push_consumer *pc;
  assert_int_equal(rmq_push_consumer_create(NULL, "G", NULL, &pc), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_create(b, "G", NULL, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_create(b, NULL, NULL, &pc), RMQ_EGROUP);
  assert_int_equal(rmq_push_consumer_subscribe(NULL, "T", "*"), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_register_listener_concurrently(NULL, count_listener, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_start(NULL), RMQ_EINVAL);
  rmq_push_consumer_shutdown(NULL);
  rmq_push_consumer_destroy(NULL);
  ok(rmq_push_consumer_create(b, "G", NULL, &pc));
  assert_int_equal(rmq_push_consumer_subscribe(pc, NULL, "*"), RMQ_ETOPIC);
  assert_int_equal(rmq_push_consumer_register_listener_concurrently(pc, NULL, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_push_consumer_start(pc), RMQ_ESTATE); /* no listener, no subscription */
  ok(rmq_push_consumer_register_listener_concurrently(pc, count_listener, &g_listener_count));
  assert_int_equal(rmq_push_consumer_start(pc), RMQ_ESTATE); /* no subscription */
  ok(rmq_push_consumer_subscribe(pc, "T", NULL)); /* NULL expression: everything */
  rmq_push_consumer_shutdown(pc); /* never started: a no-op */
  rmq_push_consumer_destroy(pc);

  /* Pull consumers. */
  rmq_pull_consumer *c;
  assert_int_equal(rmq_pull_consumer_create(NULL, "G", &c), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_create(b, "G", NULL), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_create(b, NULL, &c), RMQ_EGROUP);
  rmq_pull_consumer_destroy(NULL);
  ok(rmq_pull_consumer_create(b, "G", &c));
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "T");
  rmq_pull_result pr;
  int64_t off;
  assert_int_equal(rmq_pull_consumer_fetch_subscribe_message_queues(NULL, "T", &mq, 1, &n), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_fetch_subscribe_message_queues(c, "T", NULL, 1, &n), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_fetch_subscribe_message_queues(c, "T", &mq, 1, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_fetch_subscribe_message_queues(c, NULL, &mq, 1, &n), RMQ_ETOPIC);
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, "T", NULL, 0, &n));
  assert_int_equal(n, 1);
  assert_int_equal(rmq_pull_consumer_pull(NULL, &mq, "*", 0, 1, &pr), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_pull(c, NULL, "*", 0, 1, &pr), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_pull(c, &mq, "*", 0, 1, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_pull(c, &mq, "*", 0, 0, &pr), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_pull(c, &mq, "*", 0, 1025, &pr), RMQ_EINVAL);
  ok(rmq_pull_consumer_pull(c, &mq, NULL, 0, 1, &pr)); /* NULL expression: everything */
  assert_int_equal(pr.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(rmq_pull_consumer_pull_block_if_not_found(NULL, &mq, "*", 0, 1, 10, &pr), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_pull_block_if_not_found(c, NULL, "*", 0, 1, 10, &pr), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_pull_block_if_not_found(c, &mq, "*", 0, 1, 10, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_update_consume_offset(NULL, &mq, 1), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_update_consume_offset(c, NULL, 1), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_update_consume_offset(c, &mq, -1), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(NULL, &mq, &off), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, NULL, &off), RMQ_EINVAL);
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, &mq, NULL), RMQ_EINVAL);

  /* Delivered-message helpers. */
  const rmq_message_ext *e = &pr.msgs[0];
  const char *v;
  size_t vl;
  rmq_message_ext *copy;
  char buf[64];
  assert_int_equal(rmq_message_ext_property(NULL, "UNIQ_KEY", &v, &vl), RMQ_EINVAL);
  assert_int_equal(rmq_message_ext_property(e, NULL, &v, &vl), RMQ_EINVAL);
  assert_int_equal(rmq_message_ext_property(e, "UNIQ_KEY", NULL, &vl), RMQ_EINVAL);
  assert_int_equal(rmq_message_ext_property(e, "UNIQ_KEY", &v, NULL), RMQ_EINVAL);
  ok(rmq_message_ext_property(e, "UNIQ_KEY", &v, &vl));
  assert_int_equal(vl, 32);
  assert_int_equal(rmq_message_ext_property(e, "NOPE", &v, &vl), RMQ_ENOTFOUND);
  assert_int_equal(rmq_message_ext_copy(NULL, &copy), RMQ_EINVAL);
  assert_int_equal(rmq_message_ext_copy(e, NULL), RMQ_EINVAL);
  rmq_message_ext_free(NULL);
  assert_int_equal(rmq_message_ext_format(NULL, buf, sizeof buf), RMQ_EINVAL);
  assert_int_equal(rmq_message_ext_format(e, NULL, 10), RMQ_EINVAL);
  /* cap 0 with NULL: only the length, as snprintf. */
  int need = rmq_message_ext_format(e, NULL, 0);
  assert_true(need > 100);
  assert_int_equal(rmq_message_ext_format(e, buf, sizeof buf), need);
  assert_int_equal(strlen(buf), sizeof buf - 1);

  rmq_pull_consumer_destroy(c);
  rmq_producer_destroy(p);
  rmq_msg_free(m);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* Opens path with log_level (no log sink: stderr) after damaging its
** consumerOffset.json, with stderr sent to a file; returns what was printed. */
static void open_damaged_capture(const char *path, int log_level, char *out, size_t cap)
{
  char cfg[1200];
  snprintf(cfg, sizeof cfg, "%s/config/consumerOffset.json", path);
  FILE *f = fopen(cfg, "w");
  assert_non_null(f);
  fputs("{\"offsetTable\":{", f); /* cut short */
  fclose(f);
  snprintf(cfg, sizeof cfg, "%s/config/consumerOffset.json.bak", path);
  unlink(cfg);
  char errf[1200];
  snprintf(errf, sizeof errf, "%s.stderr", path);
  fflush(stderr);
  int saved = dup(2), fd = open(errf, O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  rmq_broker_options o;
  small_options(&o);
  o.log = NULL;
  o.log_level = log_level;
  rmq_broker *b = NULL;
  int rc = rmq_broker_open(path, &o, &b);
  if (rc == RMQ_OK) rc = rmq_broker_close(b);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  ok(rc);
  ssize_t n = pread(fd, out, cap - 1, 0);
  close(fd);
  unlink(errf);
  out[n > 0 ? n : 0] = 0;
}

static void test_log_to_stderr_and_silence(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "api-log");
  rmq_broker_options o;
  small_options(&o);
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b)); /* makes the store and its config dir */
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "LogGroup", &c));
  ok(rmq_topic_create(b, "LogT", 1));
  rmq_message_queue mq = tu_mq("LogT", 0);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 0));
  rmq_pull_consumer_destroy(c); /* writes consumerOffset.json */
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  char out[4096];
  rmq_broker_options_init(&o);
  assert_int_equal(o.log_level, RMQ_LOG_WARN); /* the default */
  open_damaged_capture(path, RMQ_LOG_WARN, out, sizeof out);
  if (!strstr(out, "rmq ERROR: config/consumerOffset.json is damaged")) fail_msg("stderr had: %s", out);
  open_damaged_capture(path, RMQ_LOG_NONE, out, sizeof out);
  assert_string_equal(out, "");
  small_options(&o);
  o.log_level = 4;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  assert_non_null(strstr(rmq_errmsg(), "log_level"));
  o.log_level = -2;
  assert_int_equal(rmq_broker_open(path, &o, &b), RMQ_EINVAL);
  tu_store_remove(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_version),
    cmocka_unit_test(test_errstr),
    cmocka_unit_test(test_errmsg_per_thread),
    cmocka_unit_test(test_msg_builder),
    cmocka_unit_test(test_broker_defaults),
    cmocka_unit_test(test_producer_defaults),
    cmocka_unit_test(test_push_consumer_defaults),
    cmocka_unit_test(test_end_to_end),
    cmocka_unit_test(test_topics),
    cmocka_unit_test(test_broker_open_errors),
    cmocka_unit_test(test_allocator_balances),
    cmocka_unit_test(test_allocator_fault_injection),
    cmocka_unit_test(test_null_arguments),
    cmocka_unit_test(test_log_to_stderr_and_silence),
  };
#ifdef RMQ_TEST_AMALGAMATION
  print_message("(built against the amalgamation)\n");
#endif
  return cmocka_run_group_tests(tests, NULL, NULL);
}
