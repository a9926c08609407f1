/*
** test_index.c -- the key index (RocketMQ's IndexFile format) and lookups:
** queryMessage by key, by msgId (UNIQ_KEY) and by offsetMsgId, searchOffset,
** earliestMsgStoreTime; index files rolling over, a crowded hash slot, a
** crash, retention; every index file read back by a reader written here
** from ROCKETMQ.md section 3.
*/
#include <dirent.h>
#include "test_util.h"

#include <inttypes.h>

/* ---- an independent reader of index files (ROCKETMQ.md 3) -------------- */

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

typedef struct ref_file {
  char path[1100];
  uint8_t *data;
  size_t size;
  int64_t begin_ts, end_ts, begin_phy, end_phy;
  int32_t slots_used, count;
  int64_t slots, num;
} ref_file;

static int ref_name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Loads every index file of store (sorted by name), with the geometry. */
static int ref_load(const char *store, int64_t slots, int64_t num, ref_file *out, int max)
{
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/index", store);
  DIR *d = opendir(dir);
  if (!d) return 0;
  char *names[256];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 256)
    if (strlen(e->d_name) == 17 && strspn(e->d_name, "0123456789") == 17) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, ref_name_cmp);
  assert_true(n <= max);
  for (int i = 0; i < n; i++) {
    ref_file *f = &out[i];
    snprintf(f->path, sizeof f->path, "%s/%s", dir, names[i]);
    free(names[i]);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    f->size = (size_t)st.st_size;
    assert_int_equal((int64_t)f->size, 40 + slots * 4 + num * 20);
    f->slots = slots;
    f->num = num;
    f->data = malloc(f->size);
    assert_non_null(f->data);
    tu_read_exact(f->path, 0, f->data, f->size);
    f->begin_ts = (int64_t)be64(f->data);
    f->end_ts = (int64_t)be64(f->data + 8);
    f->begin_phy = (int64_t)be64(f->data + 16);
    f->end_phy = (int64_t)be64(f->data + 24);
    f->slots_used = (int32_t)be32(f->data + 32);
    f->count = (int32_t)be32(f->data + 36);
  }
  return n;
}

static void ref_free(ref_file *f, int n)
{
  for (int i = 0; i < n; i++) free(f[i].data);
}

static const uint8_t *ref_entry(const ref_file *f, int64_t k) { return f->data + 40 + f->slots * 4 + k * 20; }

static int32_t ref_key_hash(const char *topic, const char *key, size_t kl)
{
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s#%.*s", topic, (int)kl, key);
  int32_t h = tu_java_hash(buf, (size_t)n);
  return h == INT32_MIN ? 0 : h < 0 ? -h : h;
}

/* The record at phys, read from the CommitLog files (IPv4 hosts). 0 when
** no file holds it or its size field is implausible. */
typedef struct ref_rec {
  int64_t phys, store_ts;
  int32_t total;
  char topic[256];
  char props[4096];
} ref_rec;

static int ref_record(const char *store, int64_t cl_size, int64_t phys, ref_rec *r)
{
  char path[1200];
  snprintf(path, sizeof path, "%s/commitlog/%020" PRId64, store, phys / cl_size * cl_size);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  uint8_t h[4096];
  ssize_t got = pread(fd, h, sizeof h, (off_t)(phys % cl_size));
  close(fd);
  if (got < 91) return 0;
  r->phys = phys;
  r->total = (int32_t)be32(h);
  if (be32(h + 4) != 0xDAA320A7u || r->total < 91 || r->total > got) return 0;
  if ((int64_t)be64(h + 28) != phys) return 0;
  r->store_ts = (int64_t)be64(h + 56);
  int32_t body = (int32_t)be32(h + 84);
  const uint8_t *p = h + 88 + body;
  int tl = p[0];
  memcpy(r->topic, p + 1, (size_t)tl);
  r->topic[tl] = 0;
  p += 1 + tl;
  int pl = (int)(p[0] << 8 | p[1]);
  memcpy(r->props, p + 2, (size_t)pl);
  r->props[pl] = 0;
  return 1;
}

/* The value of property name in a raw property string, or NULL. */
static const char *ref_prop(const char *props, const char *name, size_t *len)
{
  size_t nl = strlen(name);
  for (const char *p = props; *p;) {
    const char *sep = strchr(p, 1), *end = strchr(p, 2);
    if (!end) end = p + strlen(p);
    if (sep && sep < end && (size_t)(sep - p) == nl && !memcmp(p, name, nl)) {
      *len = (size_t)(end - sep - 1);
      return sep + 1;
    }
    p = *end ? end + 1 : end;
  }
  return NULL;
}

/* Is hash the key hash of the record's UNIQ_KEY or a word of its KEYS? */
static int ref_record_has_hash(const ref_rec *r, int32_t hash)
{
  size_t l;
  const char *v = ref_prop(r->props, "UNIQ_KEY", &l);
  if (v && ref_key_hash(r->topic, v, l) == hash) return 1;
  v = ref_prop(r->props, "KEYS", &l);
  for (const char *p = v, *end = v ? v + l : NULL; p && p < end;) {
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t wl = sp ? (size_t)(sp - p) : (size_t)(end - p);
    if (wl && ref_key_hash(r->topic, p, wl) == hash) return 1;
    p += wl + 1;
  }
  return 0;
}

/* Checks every file and entry: header consistent, each slot and
** prevIndex inside the file's entries, each entry pointing at a whole
** record holding its key's hash. Returns the number of entries. */
static int64_t ref_verify(const char *store, int64_t cl_size, int64_t slots, int64_t num)
{
  ref_file f[64];
  int n = ref_load(store, slots, num, f, 64);
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    assert_true(f[i].count >= 1 && f[i].count <= num);
    int64_t used = 0;
    for (int64_t k = 0; k < slots; k++) {
      int32_t v = (int32_t)be32(f[i].data + 40 + k * 4);
      assert_true(v >= 0 && v < f[i].count);
      if (v) used++;
      if (v) assert_int_equal((int32_t)be32(ref_entry(&f[i], v)) % slots, k);
    }
    assert_int_equal(used, f[i].slots_used);
    for (int32_t k = 1; k < f[i].count; k++) {
      const uint8_t *e = ref_entry(&f[i], k);
      int32_t hash = (int32_t)be32(e);
      int64_t phy = (int64_t)be64(e + 4);
      int32_t prev = (int32_t)be32(e + 16);
      assert_true(prev >= 0 && prev < k);
      if (prev) assert_int_equal((int32_t)be32(ref_entry(&f[i], prev)) % slots, hash % slots);
      ref_rec r;
      if (!ref_record(store, cl_size, phy, &r)) fail_msg("%s entry %d: no record at %" PRId64, f[i].path, k, phy);
      if (!ref_record_has_hash(&r, hash)) fail_msg("%s entry %d: record at %" PRId64 " has no key of hash %d", f[i].path, k, phy, hash);
      if (k == 1) assert_int_equal(f[i].begin_phy, phy);
      if (k == f[i].count - 1) {
        assert_int_equal(f[i].end_phy, phy);
        assert_int_equal(f[i].end_ts, r.store_ts);
      }
      if (k > 1) assert_true(phy >= (int64_t)be64(ref_entry(&f[i], k - 1) + 4));
      total++;
    }
    if (i > 0) assert_true(f[i].begin_ts >= f[i - 1].end_ts);
  }
  ref_free(f, n);
  return total;
}

/* The documented query walk (newest file first, chain from the slot). */
static int ref_query(const char *store, int64_t slots, int64_t num, const char *topic, const char *key, int64_t *phys,
                     int max)
{
  ref_file f[64];
  int n = ref_load(store, slots, num, f, 64), got = 0;
  int32_t hash = ref_key_hash(topic, key, strlen(key));
  for (int i = n - 1; i >= 0; i--) {
    int32_t k = (int32_t)be32(f[i].data + 40 + (int64_t)(hash % slots) * 4);
    while (k > 0 && k < f[i].count && got < max) {
      const uint8_t *e = ref_entry(&f[i], k);
      if ((int32_t)be32(e) == hash) phys[got++] = (int64_t)be64(e + 4);
      k = (int32_t)be32(e + 16);
    }
  }
  ref_free(f, n);
  return got;
}

/* ---- helpers ------------------------------------------------------------- */

static int count_index_files(const char *store)
{
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/index", store);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += strlen(e->d_name) == 17 && strspn(e->d_name, "0123456789") == 17;
  closedir(d);
  return n;
}

/* The offset of the newest record, walking the CommitLog files. */
static int64_t last_record(const char *store)
{
  int64_t phys = 0, last = -1;
  for (;;) {
    ref_rec r;
    if (!ref_record(store, TU_CL_SIZE, phys, &r)) {
      int64_t next = (phys / TU_CL_SIZE + 1) * TU_CL_SIZE;
      if (!ref_record(store, TU_CL_SIZE, next, &r)) return last;
      phys = next;
      continue;
    }
    last = phys;
    phys += r.total;
  }
}

#define TOPIC "IdxTopic"

static void idx_opts(rmq_broker_options *o, int slots, int num)
{
  tu_small_opts(o, NULL);
  o->max_hash_slot_num = slots;
  o->max_index_num = num;
}

/* Sends n messages to topic with KEYS "order-<i> batch-<i % 10>", body
** carrying i; results into res (may be NULL). */
static void send_keyed(rmq_broker *b, const char *topic, int from, int n, rmq_send_result *res)
{
  rmq_producer *p;
  ok(rmq_producer_create(b, "idx_pg", NULL, &p));
  for (int i = from; i < from + n; i++) {
    uint8_t body[40];
    tu_make_body(body, (uint64_t)i, sizeof body);
    rmq_msg *m;
    ok(rmq_msg_create(&m, topic, "TagA", body, sizeof body));
    char keys[64];
    snprintf(keys, sizeof keys, "order-%d batch-%d", i, i % 10);
    ok(rmq_msg_set_keys(m, keys));
    rmq_send_result r;
    ok(rmq_producer_send(p, m, &r));
    if (res) res[i - from] = r;
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
}

static uint64_t body_id(const rmq_message_ext *e)
{
  uint64_t id;
  assert_true(tu_body_check(e->body, (size_t)e->body_len, &id));
  return id;
}

/* The key finds exactly the message with body id `want` (-1: none). */
static void expect_key(rmq_broker *b, const char *topic, const char *key, int64_t want)
{
  rmq_query_result r;
  ok(rmq_broker_query_message(b, topic, key, 64, 0, INT64_MAX, &r));
  if (want < 0) {
    assert_int_equal(r.n, 0);
  } else {
    if (r.n != 1) fail_msg("key %s: %zu messages, expected 1", key, r.n);
    assert_int_equal(body_id(&r.msgs[0]), (uint64_t)want);
    assert_string_equal(r.msgs[0].topic, topic);
  }
  rmq_query_result_free(&r);
}

/* ---- tests --------------------------------------------------------------- */

static void test_query_by_key_and_ids(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "idx-basic");
  rmq_broker_options o;
  idx_opts(&o, 97, 400); /* 500 messages x 3 keys: the index rolls over 3 times */
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, TOPIC, 4));
  enum { N = 500 };
  static rmq_send_result res[N];
  send_keyed(b, TOPIC, 0, N, res);

  expect_key(b, TOPIC, "order-123", 123);
  expect_key(b, TOPIC, "order-0", 0);
  expect_key(b, TOPIC, "order-499", 499);
  expect_key(b, TOPIC, "order-500", -1);
  expect_key(b, "OtherTopic", "order-7", -1);

  /* A word shared by 50 messages: all, newest first; max_num keeps the newest. */
  rmq_query_result r;
  ok(rmq_broker_query_message(b, TOPIC, "batch-3", 1000, 0, INT64_MAX, &r));
  assert_int_equal(r.n, 50);
  for (size_t i = 0; i < r.n; i++) {
    assert_int_equal(body_id(&r.msgs[i]), (uint64_t)(493 - 10 * i));
    assert_true(r.msgs[i].keys_len > 0);
    if (i) assert_true(r.msgs[i].commit_log_offset < r.msgs[i - 1].commit_log_offset);
  }
  assert_true(r.index_last_update_timestamp >= r.msgs[0].store_timestamp);
  assert_int_equal(r.index_last_update_phyoffset, res[N - 1].commit_log_offset);
  rmq_query_result_free(&r);
  rmq_query_result_free(&r); /* a second free is a no-op */
  ok(rmq_broker_query_message(b, TOPIC, "batch-3", 5, 0, INT64_MAX, &r));
  assert_int_equal(r.n, 5);
  assert_int_equal(body_id(&r.msgs[4]), 453);
  rmq_query_result_free(&r);

  /* By msgId (UNIQ_KEY) through the index, and by offsetMsgId straight. */
  for (int i = 0; i < N; i += 37) {
    rmq_message_ext *e;
    ok(rmq_broker_query_message_by_uniq_key(b, TOPIC, res[i].msg_id, &e));
    assert_int_equal(body_id(e), (uint64_t)i);
    assert_string_equal(e->msg_id, res[i].msg_id);
    assert_string_equal(e->offset_msg_id, res[i].offset_msg_id);
    assert_int_equal(e->queue_offset, res[i].queue_offset);
    rmq_message_ext_free(e);
    ok(rmq_broker_query_message_by_uniq_key(b, NULL, res[i].msg_id, &e));
    assert_int_equal(body_id(e), (uint64_t)i);
    rmq_message_ext_free(e);
    ok(rmq_broker_view_message(b, res[i].offset_msg_id, &e));
    assert_int_equal(body_id(e), (uint64_t)i);
    assert_int_equal(e->commit_log_offset, res[i].commit_log_offset);
    assert_string_equal(e->topic, TOPIC);
    rmq_message_ext_free(e);
    /* The uniq key is also a key for queryMessage. */
    expect_key(b, TOPIC, res[i].msg_id, i);
  }
  rmq_message_ext *e77;
  ok(rmq_broker_query_message_by_offset(b, TOPIC, res[77].message_queue.queue_id, res[77].queue_offset, &e77));
  assert_int_equal(body_id(e77), 77);
  rmq_message_ext_free(e77);

  /* The index read back by the reference reader. */
  ok(rmq_broker_flush(b));
  assert_int_equal(ref_verify(path, TU_CL_SIZE, 97, 400), 3 * N);
  int64_t phys[8];
  assert_int_equal(ref_query(path, 97, 400, TOPIC, "order-77", phys, 8), 1);
  assert_int_equal(phys[0], res[77].commit_log_offset);
  assert_int_equal(count_index_files(path), 4);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

static void test_lookup_errors(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "idx-err");
  rmq_broker_options o;
  idx_opts(&o, 97, 400);
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  rmq_send_result res[3];
  send_keyed(b, TOPIC, 0, 3, res);
  rmq_query_result r;
  rmq_message_ext *e = NULL;
  assert_int_equal(rmq_broker_query_message(b, TOPIC, "", 10, 0, INT64_MAX, &r), RMQ_EINVAL);
  assert_int_equal(rmq_broker_query_message(b, TOPIC, NULL, 10, 0, INT64_MAX, &r), RMQ_EINVAL);
  assert_int_equal(rmq_broker_query_message(b, TOPIC, "k", 0, 0, INT64_MAX, &r), RMQ_EINVAL);
  assert_int_equal(rmq_broker_query_message(b, TOPIC, "k", 10, 5, 4, &r), RMQ_EINVAL);
  assert_int_equal(rmq_broker_query_message(b, "a/b", "k", 10, 0, INT64_MAX, &r), RMQ_ETOPIC);
  assert_int_equal(rmq_broker_query_message(b, TOPIC, "k", 10, 0, INT64_MAX, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_broker_view_message(b, "XYZ", &e), RMQ_EINVAL);
  assert_int_equal(rmq_broker_view_message(b, "7F00000100002A9F00000000000000ZZ", &e), RMQ_EINVAL);
  /* A valid id of this store host, at an offset inside a record: no record starts there. */
  char id[RMQ_MSG_ID_SIZE];
  snprintf(id, sizeof id, "%.16s%016" PRIX64, res[1].offset_msg_id, (uint64_t)res[1].commit_log_offset + 4);
  assert_int_equal(rmq_broker_view_message(b, id, &e), RMQ_ENOTFOUND);
  /* Another broker's host. */
  snprintf(id, sizeof id, "0A000001%.8s%016" PRIX64, res[1].offset_msg_id + 8, (uint64_t)res[1].commit_log_offset);
  assert_int_equal(rmq_broker_view_message(b, id, &e), RMQ_ENOTFOUND);
  assert_null(e);
  assert_int_equal(rmq_broker_query_message_by_uniq_key(b, TOPIC, "00000000000000000000000000000000", &e), RMQ_ENOTFOUND);
  assert_int_equal(rmq_broker_query_message_by_uniq_key(b, TOPIC, NULL, &e), RMQ_EINVAL);
  assert_int_equal(rmq_broker_query_message_by_offset(b, TOPIC, 0, 1000, &e), RMQ_ENOTFOUND);
  assert_int_equal(rmq_broker_query_message_by_offset(b, TOPIC, 99, 0, &e), RMQ_EQUEUE);
  assert_int_equal(rmq_broker_query_message_by_offset(b, "NoSuchTopic", 0, 0, &e), RMQ_ENOTOPIC);
  int64_t v;
  assert_int_equal(rmq_broker_search_offset(b, TOPIC, 0, 0, NULL), RMQ_EINVAL);
  assert_int_equal(rmq_broker_earliest_msg_store_time(b, "NoSuchTopic", 0, &v), RMQ_ENOTOPIC);
  rmq_broker_options bad = o;
  bad.max_hash_slot_num = 0;
  rmq_broker *b2;
  assert_int_equal(rmq_broker_open(path, &bad, &b2), RMQ_EINVAL);
  bad = o;
  bad.max_index_num = 1;
  assert_int_equal(rmq_broker_open(path, &bad, &b2), RMQ_EINVAL);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* One hash slot: every key of every topic shares one chain. Results are
** still exactly the messages holding the key, in their topic. */
static void test_crowded_slot(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "idx-slot");
  rmq_broker_options o;
  idx_opts(&o, 1, 100000);
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  send_keyed(b, "TopicA", 0, 200, NULL);
  send_keyed(b, "TopicB", 1000, 200, NULL);
  expect_key(b, "TopicA", "order-5", 5);
  expect_key(b, "TopicB", "order-1005", 1005);
  expect_key(b, "TopicB", "order-5", -1);
  expect_key(b, "TopicA", "order-1005", -1);
  rmq_query_result r;
  ok(rmq_broker_query_message(b, "TopicB", "batch-7", 64, 0, INT64_MAX, &r));
  assert_int_equal(r.n, 20);
  for (size_t i = 0; i < r.n; i++) assert_int_equal(body_id(&r.msgs[i]) % 10, 7);
  rmq_query_result_free(&r);
  /* Two keys of one hash: "Aa" and "BB" are Java's classic collision. */
  assert_int_equal(tu_java_hash("T#Aa", 4), tu_java_hash("T#BB", 4));
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "T", NULL, "aa", 2));
  ok(rmq_msg_set_keys(m, "Aa"));
  ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
  ok(rmq_msg_set_keys(m, "BB"));
  ok(rmq_msg_set_body(m, "bb", 2));
  ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_query_message(b, "T", "Aa", 64, 0, INT64_MAX, &r));
  assert_int_equal(r.n, 1);
  assert_memory_equal(r.msgs[0].body, "aa", 2);
  rmq_query_result_free(&r);
  ok(rmq_broker_flush(b));
  assert_int_equal(ref_verify(path, TU_CL_SIZE, 1, 100000), 400 * 3 + 4);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* Time ranges, searchOffset and earliestMsgStoreTime on a hand clock. */
static void test_time_range_and_offsets(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "idx-time");
  tu_clock clk;
  rmq_broker_options o;
  tu_clock_opts(&o, TU_CL_SIZE, &clk, 1700000000000LL);
  o.max_hash_slot_num = 97;
  o.max_index_num = 1000;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, TOPIC, 1));
  /* Messages i = 0..29 at t0 + i * 1500 ms, each also keyed "same". */
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  int64_t t0 = 1700000000000LL;
  for (int i = 0; i < 30; i++) {
    atomic_store(&clk.now_ms, t0 + i * 1500);
    uint8_t body[40];
    tu_make_body(body, (uint64_t)i, sizeof body);
    rmq_msg *m;
    ok(rmq_msg_create(&m, TOPIC, NULL, body, sizeof body));
    ok(rmq_msg_set_keys(m, "same"));
    ok(rmq_producer_send(p, m, &(rmq_send_result){0}));
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
  rmq_query_result r;
  /* [t0 + 3000, t0 + 9000] holds i = 2..6, inclusive at both ends. */
  ok(rmq_broker_query_message(b, TOPIC, "same", 64, t0 + 3000, t0 + 9000, &r));
  assert_int_equal(r.n, 5);
  for (size_t i = 0; i < r.n; i++) assert_int_equal(body_id(&r.msgs[i]), 6 - i);
  rmq_query_result_free(&r);
  ok(rmq_broker_query_message(b, TOPIC, "same", 64, t0 + 3001, t0 + 8999, &r));
  assert_int_equal(r.n, 3);
  rmq_query_result_free(&r);
  ok(rmq_broker_query_message(b, TOPIC, "same", 64, t0 + 100000, INT64_MAX, &r));
  assert_int_equal(r.n, 0);
  rmq_query_result_free(&r);
  int64_t off, ts;
  ok(rmq_broker_search_offset(b, TOPIC, 0, t0 + 3000, &off));
  assert_int_equal(off, 2);
  ok(rmq_broker_search_offset(b, TOPIC, 0, t0 + 3001, &off));
  assert_int_equal(off, 3);
  ok(rmq_broker_search_offset(b, TOPIC, 0, 0, &off));
  assert_int_equal(off, 0);
  ok(rmq_broker_search_offset(b, TOPIC, 0, t0 + 10000000, &off));
  assert_int_equal(off, 30);
  ok(rmq_broker_earliest_msg_store_time(b, TOPIC, 0, &ts));
  assert_int_equal(ts, t0);
  ok(rmq_topic_create(b, "EmptyTopic", 1));
  assert_int_equal(rmq_broker_earliest_msg_store_time(b, "EmptyTopic", 0, &ts), RMQ_ENOTFOUND);
  rmq_message_ext *e;
  ok(rmq_broker_query_message_by_offset(b, TOPIC, 0, 17, &e));
  assert_int_equal(body_id(e), 17);
  assert_int_equal(e->store_timestamp, t0 + 17 * 1500);
  rmq_message_ext_free(e);
  ok(rmq_broker_close(b));

  /* A damaged header's beginTimestamp near INT64_MAX: entry times (begin +
  ** timeDiff seconds) saturate rather than overflow (UBSan), and a lookup
  ** still ends. */
  char ix[1400];
  tu_index_file(path, ix, sizeof ix);
  static const uint8_t far_ts[8] = {0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00};
  int fd = open(ix, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, far_ts, 8, 0), 8);
  close(fd);
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_broker_query_message(b, TOPIC, "same", 64, 0, INT64_MAX, &r));
  assert_true(r.n <= 30);
  rmq_query_result_free(&r);
  ok(rmq_broker_close(b));
  tu_store_remove(path);
}

/* A clean close leaves every entry made once; a reopen adds none again. */
static void test_reopen_complete(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "idx-reopen");
  rmq_broker_options o;
  idx_opts(&o, 97, 400);
  o.service_thread = 1; /* the index thread builds it */
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  send_keyed(b, TOPIC, 0, 300, NULL);
  ok(rmq_broker_close(b));
  assert_int_equal(ref_verify(path, TU_CL_SIZE, 97, 400), 900);
  ok(rmq_broker_open(path, &o, &b));
  send_keyed(b, TOPIC, 300, 100, NULL);
  expect_key(b, TOPIC, "order-299", 299);
  expect_key(b, TOPIC, "order-300", 300);
  ok(rmq_broker_close(b));
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_broker_close(b));
  assert_int_equal(ref_verify(path, TU_CL_SIZE, 97, 400), 1200);
  /* Index off: nothing new is indexed, older entries still answer. */
  o.message_index_enable = 0;
  ok(rmq_broker_open(path, &o, &b));
  send_keyed(b, TOPIC, 400, 10, NULL);
  expect_key(b, TOPIC, "order-405", -1);
  expect_key(b, TOPIC, "order-5", 5);
  ok(rmq_broker_close(b));
  assert_int_equal(ref_verify(path, TU_CL_SIZE, 97, 400), 1200);
  /* On again: the messages sent meanwhile are indexed at the next open. */
  o.message_index_enable = 1;
  ok(rmq_broker_open(path, &o, &b));
  expect_key(b, TOPIC, "order-405", 405);
  ok(rmq_broker_close(b));
  assert_int_equal(ref_verify(path, TU_CL_SIZE, 97, 400), 1230);
  tu_store_remove(path);
}

/* ---- a crash ---------------------------------------------------------------- */

static void crash_child(const char *path, int flush_first, int fd)
{
  rmq_broker_options o;
  idx_opts(&o, 97, 400);
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  o.log_level = RMQ_LOG_NONE;
  rmq_broker *b;
  if (rmq_broker_open(path, &o, &b)) _exit(3);
  send_keyed(b, TOPIC, 0, 200, NULL);
  if (flush_first && rmq_broker_flush(b)) _exit(4); /* the index is synced to here */
  send_keyed(b, TOPIC, 200, 100, NULL);
  if (write(fd, "k", 1) != 1) _exit(5);
  pause();
}

static void crash_and_check(int flush_first, int cut_tail)
{
  char path[1024];
  tu_store_path(path, sizeof path, "idx-crash");
  tu_kill_child(crash_child, path, flush_first);
  int expect_n = 300;
  if (cut_tail) {
    /* Tear the newest record: recovery cuts it, and its entries must go. */
    char cl[1100];
    snprintf(cl, sizeof cl, "%s/commitlog", path);
    int64_t best_phys = last_record(path);
    assert_true(best_phys > 0);
    char f[1200];
    snprintf(f, sizeof f, "%s/%020" PRId64, cl, best_phys / TU_CL_SIZE * TU_CL_SIZE);
    int fd = open(f, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(pwrite(fd, junk, 8, (off_t)(best_phys % TU_CL_SIZE) + 4), 8); /* its magic */
    close(fd);
    expect_n = 299;
  }
  rmq_broker_options o;
  idx_opts(&o, 97, 400);
  o.log_level = RMQ_LOG_NONE;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 1);
  for (int i = 0; i < expect_n; i++) {
    char k[32];
    snprintf(k, sizeof k, "order-%d", i);
    expect_key(b, TOPIC, k, i);
  }
  if (cut_tail) expect_key(b, TOPIC, "order-299", -1);
  rmq_query_result r;
  ok(rmq_broker_query_message(b, TOPIC, "batch-9", 64, 0, INT64_MAX, &r));
  assert_int_equal(r.n, cut_tail ? 29 : 30);
  rmq_query_result_free(&r);
  ok(rmq_broker_flush(b));
  /* Entries may be made twice after a crash (as RocketMQ's are); every one
  ** points at its record, and none at the torn one. */
  int64_t n = ref_verify(path, TU_CL_SIZE, 97, 400);
  assert_true(n >= 3 * expect_n);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

static void test_crash_index_lagging(void **state) { (void)state; crash_and_check(0, 0); }
static void test_crash_after_flush(void **state) { (void)state; crash_and_check(1, 0); }
static void test_crash_torn_tail(void **state) { (void)state; crash_and_check(1, 1); }

/* A power cut may keep a slot's sector older than its entries': the slot
** names an entry before the newest of its hash. Recovery must rebuild the
** slots; otherwise the newer entries, below the re-indexing cut, are never
** reached again. Every entry of the file must be on its slot's chain. */
static _Atomic int64_t g_stale_now = INT64_C(1796600000000);
/* Each reading 100 ms later: the messages span minutes, so recovery's scan
** (from the checkpoint's time less 3 s) starts after most of them. */
static int64_t stale_clock(void *ctx)
{
  (void)ctx;
  return atomic_fetch_add(&g_stale_now, 100);
}

/* A store of 1,000 keyed messages on the stale clock, closed; *o its options. */
static void crash_store(char *path, size_t n, const char *tag, rmq_broker_options *o)
{
  tu_store_path(path, n, tag);
  idx_opts(o, 97, 4000);
  o->log_level = RMQ_LOG_NONE;
  o->clock = stale_clock;
  rmq_broker *b;
  ok(rmq_broker_open(path, o, &b));
  send_keyed(b, TOPIC, 0, 1000, NULL);
  ok(rmq_broker_close(b));
}

/* The next open is after a crash. */
static void mark_crashed(const char *path)
{
  char abort_path[1100];
  snprintf(abort_path, sizeof abort_path, "%s/abort", path);
  int fd = open(abort_path, O_WRONLY | O_CREAT, 0644);
  assert_true(fd >= 0);
  close(fd);
}

/* Every entry of the store's one index file is on its slot's chain;
** returns whether entry `want` is one of them. */
static int chains_whole(const char *path, int32_t want)
{
  ref_file f[2];
  assert_int_equal(ref_load(path, 97, 4000, f, 2), 1);
  int found = 0;
  for (int32_t n = 1; n < f[0].count; n++) {
    int32_t hn = (int32_t)be32(ref_entry(&f[0], n));
    int32_t v = (int32_t)be32(f[0].data + 40 + (int64_t)(hn % 97) * 4);
    while (v > n) v = (int32_t)be32(ref_entry(&f[0], v) + 16);
    if (v != n) fail_msg("entry %d (hash %d) is not on its slot's chain", n, hn);
    found |= n == want;
  }
  ref_free(f, 1);
  return found;
}

static void test_crash_stale_slot(void **state)
{
  (void)state;
  char path[1024];
  rmq_broker_options o;
  crash_store(path, sizeof path, "idx-stale", &o);
  rmq_broker *b;
  /* The first record of the newest CommitLog file: recovery re-indexes
  ** from about there; the entry hidden lies below it. */
  int64_t cut = last_record(path) / TU_CL_SIZE * TU_CL_SIZE;
  assert_true(cut >= 2 * TU_CL_SIZE);
  ref_file f[2];
  assert_int_equal(ref_load(path, 97, 4000, f, 2), 1);
  int32_t h = ref_key_hash(TOPIC, "order-50", 8);
  uint8_t *slot = f[0].data + 40 + (int64_t)(h % 97) * 4;
  int32_t c = (int32_t)be32(slot);
  while (c > 0 && (int64_t)be64(ref_entry(&f[0], c) + 4) >= cut) c = (int32_t)be32(ref_entry(&f[0], c) + 16);
  assert_true(c > 0);
  int fd = open(f[0].path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, ref_entry(&f[0], c) + 16, 4, slot - f[0].data), 4); /* the slot names c's prev */
  close(fd);
  ref_free(f, 1);
  mark_crashed(path);

  ok(rmq_broker_open(path, &o, &b));
  for (int i = 0; i < 1000; i += 7) {
    char k[32];
    snprintf(k, sizeof k, "order-%d", i);
    expect_key(b, TOPIC, k, i);
  }
  expect_key(b, TOPIC, "order-50", 50);
  ok(rmq_broker_close(b));
  chains_whole(path, 0);
  ref_verify(path, TU_CL_SIZE, 97, 4000);
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

/* A power cut between two sectors of one entry (20 bytes; sectors of 512
** split every few entries): its hash and CommitLog offset kept, its time
** and link lost (zeros), the entries after it lost. The zero link looks
** like the first of its hash; accepted, it would hide every older entry of
** its chain (the power-cut test's torn512 run met it: an acknowledged
** message no longer found by its key). Recovery must end the file before
** the torn entry and index the rest again. */
static void test_crash_torn_entry_link(void **state)
{
  (void)state;
  char path[1024];
  rmq_broker_options o;
  crash_store(path, sizeof path, "idx-torn-link", &o);
  rmq_broker *b;
  ref_file f[2];
  assert_int_equal(ref_load(path, 97, 4000, f, 2), 1);
  /* A late entry with an older one of its hash (so its link is not 0). */
  int32_t t = f[0].count - 20;
  while (t > 1 && be32(ref_entry(&f[0], t) + 16) == 0) t--;
  assert_true(t > f[0].count / 2);
  int32_t older = (int32_t)be32(ref_entry(&f[0], t) + 16);
  int64_t ent0 = 40 + 97 * 4;
  int fd = open(f[0].path, O_WRONLY);
  assert_true(fd >= 0);
  static const uint8_t zeros[20 * 4000];
  /* Its time and link, and every entry after it, as the cut left them. */
  assert_int_equal(pwrite(fd, zeros, 8, ent0 + (int64_t)t * 20 + 12), 8);
  size_t rest = (size_t)(f[0].count - t - 1) * 20;
  assert_int_equal(pwrite(fd, zeros, rest, ent0 + (int64_t)(t + 1) * 20), (ssize_t)rest);
  close(fd);
  ref_free(f, 1);
  mark_crashed(path);

  ok(rmq_broker_open(path, &o, &b));
  for (int i = 0; i < 1000; i++) {
    char k[32];
    snprintf(k, sizeof k, "order-%d", i);
    expect_key(b, TOPIC, k, i);
  }
  ok(rmq_broker_close(b));
  /* Every entry is on its slot's chain, the older one of the torn entry's too. */
  assert_true(chains_whole(path, older));
  ref_verify(path, TU_CL_SIZE, 97, 4000);
  tu_rmqstore_check(path);
  tu_store_remove(path);
}

/* Retention deletes index files that point only below the CommitLog's
** new first offset, never the newest. */
static void test_retention(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "idx-ret");
  tu_clock clk;
  rmq_broker_options o;
  tu_clock_opts(&o, TU_CL_SIZE, &clk, 1700000000000LL);
  o.max_hash_slot_num = 97;
  o.max_index_num = 400;
  o.file_reserved_time = 0;
  o.log_level = RMQ_LOG_NONE;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, TOPIC, 4));
  enum { N = 1200 };
  static rmq_send_result res[N];
  send_keyed(b, TOPIC, 0, N, res);
  ok(rmq_broker_flush(b));
  int before = count_index_files(path);
  assert_true(before >= 9);
  tu_clock_advance(&clk, 1000);
  int deleted = 0;
  ok(rmq_broker_delete_expired_files(b, &deleted));
  assert_true(deleted > 0);
  int after = count_index_files(path);
  assert_true(after < before);
  assert_true(after >= 1);
  int64_t min_phys = INT64_MAX;
  for (int q = 0; q < 4; q++) {
    int64_t mn;
    ok(rmq_topic_queue_offsets(b, TOPIC, q, &mn, NULL));
    rmq_message_ext *e;
    if (rmq_broker_query_message_by_offset(b, TOPIC, q, mn, &e) == RMQ_OK) {
      if (e->commit_log_offset < min_phys) min_phys = e->commit_log_offset;
      rmq_message_ext_free(e);
    }
  }
  /* Messages gone with their files are not found; those kept are. */
  for (int i = 0; i < N; i += 7) {
    char k[32];
    snprintf(k, sizeof k, "order-%d", i);
    expect_key(b, TOPIC, k, res[i].commit_log_offset >= min_phys ? i : -1);
    rmq_message_ext *e = NULL;
    int rc = rmq_broker_view_message(b, res[i].offset_msg_id, &e);
    assert_int_equal(rc, res[i].commit_log_offset >= min_phys ? RMQ_OK : RMQ_ENOTFOUND);
    rmq_message_ext_free(e);
  }
  ok(rmq_broker_close(b));
  /* Each index file left still has entries at or above the minimum. */
  ref_file f[64];
  int n = ref_load(path, 97, 400, f, 64);
  assert_int_equal(n, after);
  for (int i = 0; i < n - 1; i++) assert_true(f[i].end_phy >= min_phys);
  ref_free(f, n);
  tu_store_remove(path);
}

int main(void)
{
  (void)tu_wait_atleast;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_query_by_key_and_ids),
    cmocka_unit_test(test_lookup_errors),
    cmocka_unit_test(test_crowded_slot),
    cmocka_unit_test(test_time_range_and_offsets),
    cmocka_unit_test(test_reopen_complete),
    cmocka_unit_test(test_crash_index_lagging),
    cmocka_unit_test(test_crash_after_flush),
    cmocka_unit_test(test_crash_torn_tail),
    cmocka_unit_test(test_crash_stale_slot),
    cmocka_unit_test(test_crash_torn_entry_link),
    cmocka_unit_test(test_retention),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
