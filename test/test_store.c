/*
** test_store.c -- the store's on-disk format and its file handling, checked
** against the published layout rather than against rmq's own decoder:
**
**   - a record written by a send decodes, field by field, with a decoder
**     written here from ROCKETMQ.md section 1 (and its ConsumeQueue unit
**     from section 2);
**   - the hash and CRC test vectors of ROCKETMQ.md;
**   - CommitLog roll-over: file names, BLANK end records, no record spanning
**     files, and ../shared/tools/rmqstore.py agreeing with the result;
**   - config JSON (section 4) written, reread, and recovered from .bak;
**   - OS-layer fault injection (ENOSPC creating a CommitLog file, EIO on
**     fdatasync);
**   - SYNC_FLUSH / ASYNC_FLUSH and rmq_broker_run_due() under a fake clock;
**   - store and born timestamps from the replaceable clock.
*/
#include "test_util.h"
#include "rmq_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/wait.h>

#define CL_SIZE TU_CL_SIZE

/* ======================================================================= */
/* Helpers                                                                 */
/* ======================================================================= */

static uint32_t be32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }
static uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

/* zlib's CRC-32 (reflected, poly 0xEDB88320), one bit at a time. */
static uint32_t t_crc32(const void *buf, size_t n)
{
  const uint8_t *p = buf;
  uint32_t c = 0xFFFFFFFFu;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return ~c;
}

/* A record decoded by this file's own reading of ROCKETMQ.md section 1
** (v1 magic, IPv4 hosts). */
typedef struct trec {
  uint32_t total, magic;
  int32_t body_crc, queue_id, flag, sys_flag, reconsume;
  int64_t queue_offset, phys, born_ts, store_ts, prepared;
  uint8_t born_ip[4], store_ip[4];
  int32_t born_port, store_port;
  const uint8_t *body;
  int32_t body_len;
  const char *topic;
  int topic_len;
  const uint8_t *props;
  int props_len;
} trec;

/* 0 when buf[0..avail) starts with a well-formed v1 record. */
static int trec_decode(const uint8_t *b, size_t avail, trec *r)
{
  if (avail < 91) return -1;
  r->total = be32(b);
  r->magic = be32(b + 4);
  if (r->magic != 0xDAA320A7u || r->total < 91 || r->total > avail) return -1;
  r->body_crc = (int32_t)be32(b + 8);
  r->queue_id = (int32_t)be32(b + 12);
  r->flag = (int32_t)be32(b + 16);
  r->queue_offset = (int64_t)be64(b + 20);
  r->phys = (int64_t)be64(b + 28);
  r->sys_flag = (int32_t)be32(b + 36);
  if (r->sys_flag & 0x30) return -1; /* IPv6 hosts: not used here */
  r->born_ts = (int64_t)be64(b + 40);
  memcpy(r->born_ip, b + 48, 4);
  r->born_port = (int32_t)be32(b + 52);
  r->store_ts = (int64_t)be64(b + 56);
  memcpy(r->store_ip, b + 64, 4);
  r->store_port = (int32_t)be32(b + 68);
  r->reconsume = (int32_t)be32(b + 72);
  r->prepared = (int64_t)be64(b + 76);
  r->body_len = (int32_t)be32(b + 84);
  if (r->body_len < 0 || 88 + (size_t)r->body_len + 1 > r->total) return -1;
  r->body = b + 88;
  size_t p = 88 + (size_t)r->body_len;
  r->topic_len = (int8_t)b[p];
  p += 1;
  if (r->topic_len <= 0 || p + (size_t)r->topic_len + 2 > r->total) return -1;
  r->topic = (const char *)b + p;
  p += (size_t)r->topic_len;
  r->props_len = (int16_t)be16(b + p);
  p += 2;
  if (r->props_len < 0 || p + (size_t)r->props_len != r->total) return -1;
  r->props = b + p;
  if (r->total != 91 + (uint32_t)r->body_len + (uint32_t)r->topic_len + (uint32_t)r->props_len) return -1;
  return 0;
}

/* Property `name` in "n\1v\2n\1v\2": value and length, or NULL. */
static const char *t_prop(const uint8_t *props, int len, const char *name, int *vlen)
{
  int i = 0;
  size_t nl = strlen(name);
  while (i < len) {
    int j = i;
    while (j < len && props[j] != 2) j++;
    int k = i;
    while (k < j && props[k] != 1) k++;
    if (k < j && (size_t)(k - i) == nl && !memcmp(props + i, name, nl)) {
      *vlen = j - k - 1;
      return (const char *)props + k + 1;
    }
    i = j + 1;
  }
  return NULL;
}

static int t_prop_count(const uint8_t *props, int len)
{
  int n = 0;
  for (int i = 0; i < len; i++) n += props[i] == 2;
  return n;
}

static char *slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  size_t got = fread(b, 1, (size_t)n, f);
  fclose(f);
  b[got] = 0;
  if (len) *len = got;
  return b;
}

static void write_file(const char *path, const void *data, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  close(fd);
}

static int file_exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

static int64_t checkpoint_at(const char *store, int off)
{
  char path[2048];
  uint8_t b[8];
  snprintf(path, sizeof path, "%s/checkpoint", store);
  tu_read_exact(path, off, b, 8);
  return (int64_t)be64(b);
}

/* Bodies carry their id (16 hex digits) and a filler derived from it, so a
** pulled body proves which message it is and that it is intact. */
static size_t body_len_for(uint64_t id, size_t base, size_t spread)
{
  return base + (size_t)((id * 397u) % (spread ? spread : 1));
}

static int send_id(rmq_producer *p, rmq_msg *m, uint64_t id, size_t len, int qid, rmq_send_result *r)
{
  static uint8_t buf[16384];
  assert_true(len <= sizeof buf && len >= 16);
  tu_make_body(buf, id, len);
  ok(rmq_msg_set_body(m, buf, len));
  return qid >= 0 ? rmq_producer_send_to_queue(p, m, qid, r) : rmq_producer_send(p, m, r);
}

typedef struct seen {
  uint64_t id;
  int qid;
  int64_t qoff, phys, store_ts;
  int32_t size;
} seen;

static int seen_cmp(const void *a, const void *b)
{
  uint64_t x = ((const seen *)a)->id, y = ((const seen *)b)->id;
  return x < y ? -1 : x > y;
}

/* Pulls every message of every queue of `topic`, checking bodies and that
** queue offsets run without gaps from each queue's min offset. */
static size_t pull_all(rmq_broker *b, const char *topic, seen *out, size_t cap)
{
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "TestPullAll", &c));
  rmq_message_queue mqs[64];
  size_t nq, n = 0;
  ok(rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, mqs, 64, &nq));
  assert_true(nq <= 64);
  for (size_t q = 0; q < nq; q++) {
    int64_t min, max;
    ok(rmq_topic_queue_offsets(b, topic, (int)q, &min, &max));
    int64_t off = min;
    for (;;) {
      rmq_pull_result r;
      ok(rmq_pull_consumer_pull(c, &mqs[q], "*", off, 32, &r));
      if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
      assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
      for (size_t i = 0; i < r.n; i++) {
        const rmq_message_ext *e = &r.msgs[i];
        uint64_t id;
        if (!tu_body_check(e->body, (size_t)e->body_len, &id))
          fail_msg("%s/%zu offset %" PRId64 ": body damaged", topic, q, e->queue_offset);
        assert_int_equal(e->queue_offset, off + (int64_t)i);
        assert_int_equal(e->queue_id, (int)q);
        assert_true(n < cap);
        out[n].id = id;
        out[n].qid = e->queue_id;
        out[n].qoff = e->queue_offset;
        out[n].phys = e->commit_log_offset;
        out[n].size = e->store_size;
        out[n].store_ts = e->store_timestamp;
        n++;
      }
      off = r.next_begin_offset;
    }
    assert_int_equal(off, max);
  }
  rmq_pull_consumer_destroy(c);
  return n;
}

/* The OS layer hooks: the real table is saved before a test replaces
** entries; teardown restores it even when an assertion fails. */
static rmqi_os g_real;
static atomic_int g_fail_armed;
static atomic_int g_cl_syncs;

static int fd_in_commitlog(int fd)
{
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 0) return 0;
  path[n] = 0;
  return strstr(path, "/commitlog/") != NULL;
}

static int hook_ftruncate_enospc(int fd, off_t len)
{
  if (atomic_load(&g_fail_armed) && fd_in_commitlog(fd)) { errno = ENOSPC; return -1; }
  return g_real.ftruncate(fd, len);
}

static int hook_open_enospc(const char *path, int flags, mode_t mode)
{
  if (atomic_load(&g_fail_armed) && (flags & O_CREAT) && strstr(path, "/commitlog/")) { errno = ENOSPC; return -1; }
  return g_real.open(path, flags, mode);
}

static int hook_fdatasync(int fd)
{
  if (fd_in_commitlog(fd)) {
    if (atomic_load(&g_fail_armed)) { errno = EIO; return -1; }
    atomic_fetch_add(&g_cl_syncs, 1);
  }
  return g_real.fdatasync(fd);
}

/* fsyncs of the CommitLog directory itself (a new file's entry). */
static atomic_int g_cl_dir_syncs;

static int hook_fsync_cl_dir(int fd)
{
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n > 0) {
    path[n] = 0;
    if (n >= 10 && !strcmp(path + n - 10, "/commitlog")) atomic_fetch_add(&g_cl_dir_syncs, 1);
  }
  return g_real.fsync(fd);
}

static int setup_os(void **state)
{
  (void)state;
  rmqi_os_reset();
  g_real = rmqi_os_table;
  atomic_store(&g_fail_armed, 0);
  atomic_store(&g_cl_syncs, 0);
  return 0;
}

static int teardown_os(void **state)
{
  (void)state;
  rmqi_os_reset();
  return 0;
}

/* ======================================================================= */
/* Record round trip                                                       */
/* ======================================================================= */

typedef struct rt_case {
  const char *what;
  const char *body;
  size_t body_len;
  const char *tags, *keys;
  int32_t flag;
  const char *props[3][2];
} rt_case;

/* "你好，RocketMQ！" then 0x00, 0xFF, "尾" */
static const char k_body_cn[] = "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C" "RocketMQ" "\xEF\xBC\x81" "\x00" "\xFF" "\xE5\xB0\xBE";
static const char k_body_bin[] = "\x00\x01\x02\x7F\x80\xFE\xFF\x00";
static const char k_body_one[] = "\x00";

static const rt_case k_rt[] = {
  {"non-ASCII body with NUL and 0xFF, tag with a negative hash", k_body_cn, sizeof k_body_cn - 1,
   "\xE8\xAE\xA2\xE5\x8D\x95-\xE6\x94\xAF\xE4\xBB\x98" /* 订单-支付 */, "key-1 \xE9\x94\xAE\xE4\xBA\x8C" /* 键二 */,
   -123456,
   {{"price", "\xC2\xA5" "12.50"}, {"\xE5\x9F\x8E\xE5\xB8\x82" /* 城市 */, "\xE4\xB8\x8A\xE6\xB5\xB7" /* 上海 */},
    {"emoji", "\xF0\x9F\x98\x80ok"}}},
  {"binary body, ASCII tag", k_body_bin, sizeof k_body_bin - 1, "TagA", NULL, 0, {{"a", "b"}}},
  {"one-byte body, no tags", k_body_one, 1, NULL, "k", INT32_MAX, {{NULL, NULL}}},
  {"non-BMP tag", "x", 1, "\xE6\xA0\x87\xE7\xAD\xBE\xF0\x9F\x98\x80" /* 标签😀 */, NULL, INT32_MIN,
   {{"k2", "\xF0\x9F\x98\x80"}}},
};

static void check_one_record(const char *store, const rt_case *c, const rmq_send_result *sr,
                             const rmq_message_ext *e, int64_t now)
{
  char path[2048];
  /* The record, read with plain pread from the file its offset names. */
  int64_t start = e->commit_log_offset / CL_SIZE * CL_SIZE;
  snprintf(path, sizeof path, "%s/commitlog/%020" PRId64, store, start);
  uint8_t *raw = malloc((size_t)e->store_size);
  assert_non_null(raw);
  tu_read_exact(path, e->commit_log_offset - start, raw, (size_t)e->store_size);
  trec r;
  if (trec_decode(raw, (size_t)e->store_size, &r) != 0) fail_msg("%s: record does not decode", c->what);
  const char *topic = "RoundTrip";
  size_t tl = strlen(topic);
  assert_int_equal(r.total, (uint32_t)e->store_size);
  assert_int_equal(r.total, 91 + c->body_len + tl + (size_t)r.props_len);
  assert_int_equal(r.magic, 0xDAA320A7u);
  assert_int_equal(r.body_crc, (int32_t)(t_crc32(c->body, c->body_len) & 0x7FFFFFFF));
  assert_int_equal(r.queue_id, sr->message_queue.queue_id);
  assert_int_equal(r.flag, c->flag);
  assert_int_equal(r.queue_offset, sr->queue_offset);
  assert_int_equal(r.phys, sr->commit_log_offset);
  assert_int_equal(r.phys, e->commit_log_offset);
  assert_int_equal(r.sys_flag, 0);
  assert_int_equal(r.born_ts, now);
  assert_int_equal(r.store_ts, now);
  assert_int_equal(be64(raw + 56), (uint64_t)now); /* STORETIMESTAMP sits at @56 with an IPv4 born host */
  static const uint8_t born_ip[4] = {10, 1, 2, 3}, store_ip[4] = {192, 168, 7, 9};
  assert_memory_equal(r.born_ip, born_ip, 4);
  assert_int_equal(r.born_port, 4321);
  assert_memory_equal(r.store_ip, store_ip, 4);
  assert_int_equal(r.store_port, 10922);
  assert_int_equal(r.reconsume, 0);
  assert_int_equal(r.prepared, 0);
  assert_int_equal(r.body_len, (int32_t)c->body_len);
  assert_memory_equal(r.body, c->body, c->body_len);
  assert_int_equal(r.topic_len, (int)tl);
  assert_memory_equal(r.topic, topic, tl);

  /* Properties: name\1value\2 for each, the last one \2-terminated too. */
  assert_true(r.props_len > 0);
  assert_int_equal(r.props[r.props_len - 1], 2);
  int want = 2; /* WAIT, UNIQ_KEY */
  int vl;
  const char *v = t_prop(r.props, r.props_len, "WAIT", &vl);
  assert_non_null(v);
  assert_int_equal(vl, 4);
  assert_memory_equal(v, "true", 4);
  v = t_prop(r.props, r.props_len, "UNIQ_KEY", &vl);
  assert_non_null(v);
  assert_int_equal(vl, 32);
  assert_memory_equal(v, sr->msg_id, 32);
  const char *fixed[2][2] = {{"TAGS", c->tags}, {"KEYS", c->keys}};
  for (int i = 0; i < 2; i++) {
    v = t_prop(r.props, r.props_len, fixed[i][0], &vl);
    if (!fixed[i][1]) { assert_null(v); continue; }
    want++;
    assert_non_null(v);
    assert_int_equal(vl, (int)strlen(fixed[i][1]));
    assert_memory_equal(v, fixed[i][1], (size_t)vl);
  }
  for (int i = 0; i < 3 && c->props[i][0]; i++) {
    want++;
    v = t_prop(r.props, r.props_len, c->props[i][0], &vl);
    if (!v) fail_msg("%s: property %s missing", c->what, c->props[i][0]);
    assert_int_equal(vl, (int)strlen(c->props[i][1]));
    assert_memory_equal(v, c->props[i][1], (size_t)vl);
  }
  assert_int_equal(t_prop_count(r.props, r.props_len), want);

  /* The delivered view agrees with the bytes on disk. */
  assert_int_equal(e->body_len, (int32_t)c->body_len);
  assert_memory_equal(e->body, c->body, c->body_len);
  assert_int_equal(e->flag, c->flag);
  assert_int_equal(e->body_crc, r.body_crc);
  assert_int_equal(e->properties_len, r.props_len);
  assert_memory_equal(e->properties, r.props, (size_t)r.props_len);
  if (c->tags) {
    assert_int_equal(e->tags_len, (int32_t)strlen(c->tags));
    assert_memory_equal(e->tags, c->tags, strlen(c->tags));
  } else {
    assert_null(e->tags);
  }
  for (int i = 0; i < 3 && c->props[i][0]; i++) {
    const char *pv;
    size_t pl;
    ok(rmq_message_ext_property(e, c->props[i][0], &pv, &pl));
    assert_int_equal(pl, strlen(c->props[i][1]));
    assert_memory_equal(pv, c->props[i][1], pl);
  }
  assert_string_equal(e->msg_id, sr->msg_id);
  /* offsetMsgId: store ip, port, commitlog offset as 32 uppercase hex. */
  char omid[64];
  snprintf(omid, sizeof omid, "C0A80709%08X%016" PRIX64, 10922u, (uint64_t)r.phys);
  assert_string_equal(sr->offset_msg_id, omid);
  assert_string_equal(e->offset_msg_id, omid);
  assert_int_equal(sr->store_size, e->store_size);
  assert_int_equal(sr->store_timestamp, now);

  /* The ConsumeQueue unit: offset i64, size i32, tags code i64. */
  uint8_t u[20];
  snprintf(path, sizeof path, "%s/consumequeue/%s/%d/%020d", store, topic, r.queue_id, 0);
  tu_read_exact(path, r.queue_offset * 20, u, 20);
  assert_int_equal((int64_t)be64(u), r.phys);
  assert_int_equal((int32_t)be32(u + 8), (int32_t)r.total);
  int64_t code = c->tags ? (int64_t)tu_java_hash(c->tags, strlen(c->tags)) : 0;
  assert_int_equal((int64_t)be64(u + 12), code);
  if (code < 0) assert_int_equal(be32(u + 12), 0xFFFFFFFFu); /* sign-extended */
  free(raw);
}

static void test_record_round_trip(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "roundtrip");
  tu_clock clk = {1700000000123};
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.clock = tu_clock_read;
  o.clock_ctx = &clk;
  o.store_host = "192.168.7.9";
  o.store_port = 10922;
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "RoundTrip", 2));
  rmq_producer_options po;
  rmq_producer_options_init(&po);
  po.born_host = "10.1.2.3";
  po.born_port = 4321;
  rmq_producer *p;
  ok(rmq_producer_create(b, "RoundTripProducer", &po, &p));
  rmq_pull_consumer *pc;
  ok(rmq_pull_consumer_create(b, "RoundTripGroup", &pc));

  /* Fillers first, so records sit at non-zero physical and queue offsets. */
  rmq_msg *f;
  ok(rmq_msg_create(&f, "RoundTrip", "filler", "0123456789", 10));
  for (int i = 0; i < 3; i++) ok(rmq_producer_send_to_queue(p, f, 1, NULL));
  ok(rmq_producer_send_to_queue(p, f, 0, NULL));
  rmq_msg_free(f);

  for (size_t i = 0; i < sizeof k_rt / sizeof k_rt[0]; i++) {
    const rt_case *c = &k_rt[i];
    tu_clock_advance(&clk, 1000);
    int64_t now = tu_clock_read(&clk);
    rmq_msg *m;
    ok(rmq_msg_create(&m, "RoundTrip", c->tags, c->body, c->body_len));
    if (c->keys) ok(rmq_msg_set_keys(m, c->keys));
    ok(rmq_msg_set_flag(m, c->flag));
    for (int k = 0; k < 3 && c->props[k][0]; k++) ok(rmq_msg_put_user_property(m, c->props[k][0], c->props[k][1]));
    rmq_send_result sr;
    ok(rmq_producer_send_to_queue(p, m, 1, &sr));
    rmq_msg_free(m);
    assert_int_equal(sr.send_status, RMQ_SEND_OK);
    assert_int_equal(sr.queue_offset, 3 + (int64_t)i);
    assert_true(sr.commit_log_offset > 0);

    rmq_message_queue mq = sr.message_queue;
    rmq_pull_result pr;
    ok(rmq_pull_consumer_pull(pc, &mq, "*", sr.queue_offset, 1, &pr));
    assert_int_equal(pr.pull_status, RMQ_PULL_FOUND);
    assert_int_equal(pr.n, 1);
    assert_int_equal(pr.msgs[0].commit_log_offset, sr.commit_log_offset);
    print_message("  case %zu: %s\n", i, c->what);
    check_one_record(store, c, &sr, &pr.msgs[0], now);
  }
  rmq_pull_consumer_destroy(pc);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* ======================================================================= */
/* Test vectors                                                            */
/* ======================================================================= */

static void test_hash_and_crc_vectors(void **state)
{
  (void)state;
  static const struct { const char *s; int32_t h; } v[] = {
    {"TagA", 2598919},                        /* confirmed by RocketMQ's own store */
    {"TopicTest#KEY1", -1656969516},
    {"polygenelubricants", INT32_MIN},
    {"", 0},
    {"\xF0\x9F\x98\x80", 31 * 0xD83D + 0xDE00}, /* U+1F600 as two UTF-16 surrogates = 1772899 */
    {"\xE6\xA0\x87\xE7\xAD\xBE", 857175},      /* 标签 */
    {"\xE8\xAE\xA2\xE5\x8D\x95-\xE6\x94\xAF\xE4\xBB\x98", -711158877}, /* 订单-支付 */
    {"\xC3\xA9", 233},                         /* é */
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    assert_int_equal(rmqi_jhash(v[i].s, strlen(v[i].s)), v[i].h);
    assert_int_equal(tu_java_hash(v[i].s, strlen(v[i].s)), v[i].h);
  }
  assert_int_equal(1772899, 31 * 0xD83D + 0xDE00);

  const char *hello = "Hello RocketMQ";
  assert_int_equal(rmqi_crc32(hello, strlen(hello)) & 0x7FFFFFFF, 1774740973u);
  assert_int_equal(t_crc32(hello, strlen(hello)) & 0x7FFFFFFF, 1774740973u);
  assert_int_equal(rmqi_crc32("123456789", 9), 0xCBF43926u); /* CRC-32/IEEE check value */
  assert_int_equal(rmqi_crc32("", 0), 0);
  /* The slicing-by-8 CRC against the bitwise one at every length and
  ** alignment of the 8-byte loop and its tail. */
  uint8_t buf[1100];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 167u + 13u);
  for (size_t off = 0; off < 8; off++)
    for (size_t n = 0; n + off <= sizeof buf; n += 1 + n / 16)
      assert_int_equal(rmqi_crc32(buf + off, n), t_crc32(buf + off, n));
}

/* ======================================================================= */
/* CommitLog roll-over                                                     */
/* ======================================================================= */

#define ROLL_N 200

static void test_commitlog_rollover(void **state)
{
  (void)state;
  char store[1024], dir[1100], path[2048];
  tu_store_path(store, sizeof store, "roll");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.mapped_file_size_consume_queue = 20 * 64; /* roll ConsumeQueue files too */
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "Roll", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Roll", "TagR", NULL, 0));
  static seen sent[ROLL_N], got[ROLL_N + 1];
  for (uint64_t id = 0; id < ROLL_N; id++) {
    rmq_send_result r;
    ok(send_id(p, m, id, body_len_for(id, 64, 3000), -1, &r));
    sent[id] = (seen){id, r.message_queue.queue_id, r.queue_offset, r.commit_log_offset, 0, r.store_size};
  }
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  int64_t end = sent[ROLL_N - 1].phys + sent[ROLL_N - 1].size;
  size_t n = pull_all(b, "Roll", got, ROLL_N + 1);
  assert_int_equal(n, ROLL_N);
  ok(rmq_broker_close(b));

  /* File names: 20-digit start offsets, consecutive, nothing else. */
  snprintf(dir, sizeof dir, "%s/commitlog", store);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int nfiles = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    assert_int_equal(strlen(de->d_name), 20);
    assert_int_equal(strspn(de->d_name, "0123456789"), 20);
    assert_int_equal(strtoll(de->d_name, NULL, 10) % CL_SIZE, 0);
    nfiles++;
  }
  closedir(d);
  assert_true(nfiles >= 3);
  assert_int_equal(nfiles, (end + CL_SIZE - 1) / CL_SIZE);

  /* Walk every file with the independent decoder. */
  static uint8_t fbuf[CL_SIZE];
  size_t nrec = 0;
  int64_t blank_len = -1;
  for (int i = 0; i < nfiles; i++) {
    int64_t start = (int64_t)i * CL_SIZE;
    snprintf(path, sizeof path, "%s/%020" PRId64, dir, start);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, CL_SIZE);
    tu_read_exact(path, 0, fbuf, CL_SIZE);
    if (blank_len >= 0) {
      /* The previous file's BLANK: this file's first record did not fit. */
      trec r;
      assert_int_equal(trec_decode(fbuf, CL_SIZE, &r), 0);
      assert_true((int64_t)r.total + 8 > blank_len);
    }
    int64_t pos = 0;
    blank_len = -1;
    for (;;) {
      assert_true(pos + 8 <= CL_SIZE);
      uint32_t total = be32(fbuf + pos), magic = be32(fbuf + pos + 4);
      if (total == 0 && magic == 0) break;
      if (magic == 0xCBD43194u) {
        assert_int_equal(pos + total, CL_SIZE); /* exactly reaches the end */
        assert_true(total >= 8);
        blank_len = total;
        break;
      }
      trec r;
      if (trec_decode(fbuf + pos, (size_t)(CL_SIZE - pos), &r) != 0)
        fail_msg("file %d: bad record at %" PRId64, i, pos);
      assert_true(pos + r.total <= CL_SIZE); /* no record spans files */
      assert_int_equal(r.phys, start + pos);
      assert_int_equal(r.body_crc, (int32_t)(t_crc32(r.body, (size_t)r.body_len) & 0x7FFFFFFF));
      uint64_t id;
      assert_true(tu_body_check(r.body, (size_t)r.body_len, &id));
      assert_int_equal(id, nrec);
      assert_int_equal(sent[id].phys, r.phys);
      assert_int_equal(sent[id].qoff, r.queue_offset);
      nrec++;
      pos += r.total;
    }
    if (i < nfiles - 1) assert_true(blank_len >= 8);  /* every full file ends with BLANK */
    else assert_int_equal(blank_len, -1);
    if (i == nfiles - 1) {
      assert_int_equal(start + pos, end);
      for (int64_t k = pos; k < CL_SIZE; k++) assert_int_equal(fbuf[k], 0);
    }
  }
  assert_int_equal(nrec, ROLL_N);

  /* ConsumeQueue files rolled too (64 units each, 100 units a queue). */
  for (int q = 0; q < 2; q++) {
    snprintf(path, sizeof path, "%s/consumequeue/Roll/%d/%020d", store, q, 1280);
    assert_true(file_exists(path));
  }

  /* Everything came back intact, before and after a reopen. */
  qsort(got, n, sizeof *got, seen_cmp);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(got[i].id, i);
    assert_int_equal(got[i].phys, sent[i].phys);
    assert_int_equal(got[i].qoff, sent[i].qoff);
  }
  tu_rmqstore_check(store);
  ok(rmq_broker_open(store, &o, &b));
  rmq_recovery_info ri;
  ok(rmq_broker_recovery_info(b, &ri));
  assert_int_equal(ri.abnormal, 0);
  assert_int_equal(ri.bytes_truncated, 0);
  assert_int_equal(ri.commitlog_max_offset, end);
  memset(got, 0, sizeof got);
  n = pull_all(b, "Roll", got, ROLL_N + 1);
  assert_int_equal(n, ROLL_N);
  qsort(got, n, sizeof *got, seen_cmp);
  for (size_t i = 0; i < n; i++) assert_int_equal(got[i].phys, sent[i].phys);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* ======================================================================= */
/* Config JSON                                                             */
/* ======================================================================= */

static void mq_of(rmq_message_queue *mq, const char *topic, int qid)
{
  memset(mq, 0, sizeof *mq);
  snprintf(mq->topic, sizeof mq->topic, "%s", topic);
  mq->queue_id = qid;
}

static void test_config_json(void **state)
{
  (void)state;
  char store[1024], path[2048];
  tu_store_path(store, sizeof store, "cfg");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "CfgA", 8));
  ok(rmq_topic_create(b, "CfgB", 3));
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "GroupX", &c));
  rmq_message_queue mq;
  mq_of(&mq, "CfgA", 0);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 5));
  mq_of(&mq, "CfgA", 3);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 17));
  rmq_pull_consumer_destroy(c);
  ok(rmq_broker_close(b));

  snprintf(path, sizeof path, "%s/config/topics.json", store);
  size_t len;
  char *t = slurp(path, &len);
  assert_non_null(t);
  static const char *topic_subs[] = {
    "\"dataVersion\":{\"counter\":", "\"topicConfigTable\":{", "\"CfgA\":{", "\"CfgB\":{",
    "\"readQueueNums\":8", "\"writeQueueNums\":8", "\"readQueueNums\":3", "\"writeQueueNums\":3",
    "\"perm\":6", "\"topicName\":\"CfgA\"", "\"topicFilterType\":\"SINGLE_TAG\"", "\"order\":false",
  };
  for (size_t i = 0; i < sizeof topic_subs / sizeof topic_subs[0]; i++)
    if (!strstr(t, topic_subs[i])) fail_msg("topics.json lacks %s: %s", topic_subs[i], t);
  int prc;
  rmqi_json *j = rmqi_json_parse(t, len, &prc);
  assert_non_null(j);
  const rmqi_json *a = rmqi_json_get(rmqi_json_get(j, "topicConfigTable"), "CfgA");
  assert_non_null(a);
  assert_int_equal(rmqi_json_get(a, "readQueueNums")->inum, 8);
  assert_int_equal(rmqi_json_get(a, "writeQueueNums")->inum, 8);
  assert_string_equal(rmqi_json_get(a, "topicName")->str, "CfgA");
  rmqi_json_free(j);
  free(t);

  snprintf(path, sizeof path, "%s/config/consumerOffset.json", store);
  t = slurp(path, &len);
  assert_non_null(t);
  /* fastjson's unquoted integer keys; values are the next offset. */
  if (!strstr(t, "{\"offsetTable\":{") || !strstr(t, "\"CfgA@GroupX\":{0:5,3:17}"))
    fail_msg("consumerOffset.json shape: %s", t);
  free(t);

  /* Reopen: topics and offsets come back. */
  ok(rmq_broker_open(store, &o, &b));
  rmq_topic_info ti[4];
  size_t n;
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(n, 2);
  assert_string_equal(ti[0].topic_name, "CfgA");
  assert_int_equal(ti[0].read_queue_nums, 8);
  assert_int_equal(ti[0].write_queue_nums, 8);
  assert_int_equal(ti[0].perm, 6);
  assert_string_equal(ti[1].topic_name, "CfgB");
  assert_int_equal(ti[1].read_queue_nums, 3);
  ok(rmq_pull_consumer_create(b, "GroupX", &c));
  int64_t off;
  mq_of(&mq, "CfgA", 0);
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 5);
  mq_of(&mq, "CfgA", 3);
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 17);
  mq_of(&mq, "CfgA", 1);
  assert_int_equal(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off), RMQ_ENOTFOUND);
  rmq_pull_consumer_destroy(c);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* A damaged config file with a good .bak: the .bak's content is loaded. */
static void test_config_bak_fallback(void **state)
{
  (void)state;
  char store[1024], path[2048], bak[2100];
  tu_store_path(store, sizeof store, "cfgbak");
  tu_log log = {0};
  rmq_broker_options o;
  tu_small_opts(&o, &log);
  rmq_broker *b;
  rmq_pull_consumer *c;
  rmq_message_queue mq;
  mq_of(&mq, "BakA", 2);

  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "BakA", 8));
  ok(rmq_topic_create(b, "BakB", 2));
  ok(rmq_topic_create(b, "BakB", 2)); /* rewrite: the .bak now holds both topics */
  ok(rmq_pull_consumer_create(b, "GroupBak", &c));
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 4));
  rmq_pull_consumer_destroy(c); /* persists {2:4}; close writes it again, so the .bak holds it too */
  ok(rmq_broker_close(b));

  snprintf(path, sizeof path, "%s/config/topics.json", store);
  snprintf(bak, sizeof bak, "%s.bak", path);
  char *t = slurp(bak, NULL);
  assert_non_null(t);
  assert_non_null(strstr(t, "\"BakB\""));
  free(t);
  static const char garbage[] = "{\"topicConfigTable\":{\"BakA\":{\"readQueueNums\":";
  write_file(path, garbage, sizeof garbage - 1);
  snprintf(path, sizeof path, "%s/config/consumerOffset.json", store);
  snprintf(bak, sizeof bak, "%s.bak", path);
  t = slurp(bak, NULL);
  assert_non_null(t);
  assert_non_null(strstr(t, "\"BakA@GroupBak\":{2:4}"));
  free(t);
  write_file(path, "\x00\x01garbage", 9);

  ok(rmq_broker_open(store, &o, &b));
  rmq_topic_info ti[4];
  size_t n;
  ok(rmq_topic_list(b, ti, 4, &n));
  assert_int_equal(n, 2);
  assert_string_equal(ti[0].topic_name, "BakA");
  assert_int_equal(ti[0].read_queue_nums, 8);
  assert_string_equal(ti[1].topic_name, "BakB");
  assert_int_equal(ti[1].read_queue_nums, 2);
  assert_non_null(strstr(log.text, "topics.json is not valid JSON"));
  ok(rmq_pull_consumer_create(b, "GroupBak", &c));
  int64_t off = -1;
  ok(rmq_pull_consumer_fetch_consume_offset(c, &mq, &off));
  assert_int_equal(off, 4);
  rmq_pull_consumer_destroy(c);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

/* ======================================================================= */
/* OS layer fault injection                                                */
/* ======================================================================= */

#define FAULT_MAX 400

static void test_enospc_new_commitlog_file(void **state)
{
  (void)state;
  static const struct { const char *call; int use_open; } cases[] = {{"ftruncate", 0}, {"open", 1}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    char store[1024];
    tu_store_path(store, sizeof store, "enospc");
    rmq_broker_options o;
    tu_small_opts(&o, NULL);
    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Full", "TagF", NULL, 0));
    static uint8_t acked[FAULT_MAX];
    memset(acked, 0, sizeof acked);
    uint64_t id = 0;
    ok(send_id(p, m, id, 1500, -1, NULL)); /* the first file exists now */
    acked[id++] = 1;

    if (cases[ci].use_open) rmqi_os_table.open = hook_open_enospc;
    else rmqi_os_table.ftruncate = hook_ftruncate_enospc;
    atomic_store(&g_fail_armed, 1);
    int rc = RMQ_OK;
    for (; id < 100 && rc == RMQ_OK; id++) {
      rc = send_id(p, m, id, 1500, -1, NULL);
      if (rc == RMQ_OK) acked[id] = 1;
    }
    assert_int_equal(rc, RMQ_ENOSPC);
    const char *em = rmq_errmsg();
    if (!strstr(em, "commitlog/00000000000000065536") || !strstr(em, cases[ci].call) ||
        !strstr(em, strerror(ENOSPC)))
      fail_msg("ENOSPC message does not name the file and call: %s", em);
    assert_true(id > 30); /* the first file filled before the failure */
    /* Still full: the same message fails again, nothing half-written. */
    for (int k = 0; k < 2; k++, id++) assert_int_equal(send_id(p, m, id, 1500, -1, NULL), RMQ_ENOSPC);
    int64_t total = 0;
    for (int q = 0; q < 4; q++) {
      int64_t mn, mx;
      ok(rmq_topic_queue_offsets(b, "Full", q, &mn, &mx));
      total += mx - mn;
    }
    int nacked = 0;
    for (int i = 0; i < FAULT_MAX; i++) nacked += acked[i];
    assert_int_equal(total, nacked);

    /* Space is back. */
    rmqi_os_reset();
    atomic_store(&g_fail_armed, 0);
    for (int k = 0; k < 20; k++, id++) {
      rmq_send_result r;
      ok(send_id(p, m, id, 1500, -1, &r));
      if (k == 0) assert_int_equal(r.commit_log_offset, CL_SIZE);
      acked[id] = 1;
    }
    rmq_msg_free(m);
    rmq_producer_destroy(p);

    static seen got[FAULT_MAX];
    for (int round = 0; round < 2; round++) {
      size_t n = pull_all(b, "Full", got, FAULT_MAX);
      assert_int_equal(n, (size_t)nacked + 20);
      for (size_t i = 0; i < n; i++) {
        assert_true(got[i].id < FAULT_MAX);
        if (!acked[got[i].id]) fail_msg("message %" PRIu64 " failed to send but is stored", got[i].id);
      }
      ok(rmq_broker_close(b));
      if (round == 0) {
        tu_rmqstore_check(store);
        ok(rmq_broker_open(store, &o, &b));
      }
    }
    tu_store_remove(store);
  }
}

static void test_eio_on_fdatasync(void **state)
{
  (void)state;
  static const int types[] = {RMQ_SYNC_FLUSH, RMQ_ASYNC_FLUSH};
  for (size_t ci = 0; ci < 2; ci++) {
    char store[1024];
    tu_store_path(store, sizeof store, "eio");
    tu_clock clk = {1700000000000};
    rmq_broker_options o;
    tu_small_opts(&o, NULL);
    o.flush_disk_type = types[ci];
    o.clock = tu_clock_read;
    o.clock_ctx = &clk;
    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Eio", NULL, NULL, 0));
    rmq_send_result r;
    ok(send_id(p, m, 0, 100, 0, &r));
    assert_int_equal(r.send_status, RMQ_SEND_OK);

    rmqi_os_table.fdatasync = hook_fdatasync;
    atomic_store(&g_fail_armed, 1);
    int rc = send_id(p, m, 1, 100, 0, &r);
    if (types[ci] == RMQ_SYNC_FLUSH) {
      /* The record is appended but not durable: the send must not say OK. */
      assert_int_equal(rc, RMQ_EIO);
      if (!strstr(rmq_errmsg(), "fdatasync") || !strstr(rmq_errmsg(), "commitlog/00000000000000000000"))
        fail_msg("EIO message: %s", rmq_errmsg());
    } else {
      ok(rc); /* ASYNC_FLUSH: the send does not wait for the disk */
      tu_clock_advance(&clk, 20000);
      assert_int_equal(rmq_broker_run_due(b, NULL), RMQ_EIO);
    }
    assert_int_equal(rmq_broker_flush(b), RMQ_EIO);
    assert_non_null(strstr(rmq_errmsg(), "fdatasync"));

    /* A failed sync is never retried as if it had succeeded: the kernel
    ** may have dropped the pages it covered and now calls them clean, so the
    ** store takes no more writes, although a sync would now succeed. */
    rmqi_os_reset();
    atomic_store(&g_fail_armed, 0);
    assert_int_equal(send_id(p, m, 2, 100, 0, &r), RMQ_EIO);
    assert_non_null(strstr(rmq_errmsg(), "not writable"));
    assert_int_equal(rmq_broker_flush(b), RMQ_EIO);
    rmq_msg_free(m);
    seen got[8];
    /* Reads go on: what was appended stays readable. */
    assert_int_equal(pull_all(b, "Eio", got, 8), 2);
    rmq_producer_destroy(p);
    /* Close reports it and leaves `abort`: the next open recovers from
    ** what the disk holds, with every send that returned OK. */
    assert_int_equal(rmq_broker_close(b), RMQ_EIO);
    ok(rmq_broker_open(store, &o, &b));
    rmq_recovery_info ri;
    ok(rmq_broker_recovery_info(b, &ri));
    assert_int_equal(ri.abnormal, 1);
    ok(rmq_producer_create(b, NULL, NULL, &p));
    ok(rmq_msg_create(&m, "Eio", NULL, NULL, 0));
    ok(send_id(p, m, 2, 100, 0, &r));
    assert_int_equal(r.send_status, RMQ_SEND_OK);
    ok(rmq_broker_flush(b));
    rmq_msg_free(m);
    rmq_producer_destroy(p);
    size_t n = pull_all(b, "Eio", got, 8);
    /* The record whose flush failed was appended before the sync and the
    ** page cache still held it, so this recovery found it whole. */
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) assert_int_equal(got[i].id, i);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);
    tu_store_remove(store);
  }
}

/* A new CommitLog file's directory entry is durable before a send into it
** returns under SYNC_FLUSH; under ASYNC_FLUSH it is synced by the next flush
** (never on the send path, where a directory fsync can wait seconds for the
** journal), and before the flushed position covers the file. */
static void test_new_file_dir_sync(void **state)
{
  (void)state;
  const int types[2] = {RMQ_SYNC_FLUSH, RMQ_ASYNC_FLUSH};
  for (int ci = 0; ci < 2; ci++) {
    char store[1024];
    tu_store_path(store, sizeof store, "dirsync");
    rmq_broker_options o;
    tu_small_opts(&o, NULL);
    o.flush_disk_type = types[ci];
    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "DirSync", NULL, NULL, 0));
    rmq_send_result r;
    ok(send_id(p, m, 0, 1000, 0, &r));
    ok(rmq_broker_flush(b));
    rmqi_os_table.fsync = hook_fsync_cl_dir;
    atomic_store(&g_cl_dir_syncs, 0);
    /* 1000-byte records: the 64 KiB first file fills after about 60. */
    uint64_t id = 1;
    for (; id < 200; id++) {
      ok(send_id(p, m, id, 1000, 0, &r));
      int64_t phys = (int64_t)strtoull(r.offset_msg_id + 16, NULL, 16);
      if (phys >= TU_CL_SIZE) break;
    }
    assert_true(id < 200);
    if (types[ci] == RMQ_SYNC_FLUSH) {
      assert_int_equal(atomic_load(&g_cl_dir_syncs), 1);
    } else {
      assert_int_equal(atomic_load(&g_cl_dir_syncs), 0);
      ok(rmq_broker_flush(b));
      assert_int_equal(atomic_load(&g_cl_dir_syncs), 1);
      ok(rmq_broker_flush(b)); /* once per new file */
      assert_int_equal(atomic_load(&g_cl_dir_syncs), 1);
    }
    rmqi_os_reset();
    rmq_msg_free(m);
    rmq_producer_destroy(p);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);
    tu_store_remove(store);
  }
}

/* ======================================================================= */
/* Flush modes and the fake clock                                          */
/* ======================================================================= */

typedef struct async_acks {
  atomic_int done, failed;
} async_acks;

static void on_async_sent(void *ctx, int rc, const rmq_send_result *r)
{
  async_acks *a = ctx;
  if (rc != RMQ_OK || !r || r->send_status != RMQ_SEND_OK) atomic_fetch_add(&a->failed, 1);
  atomic_fetch_add(&a->done, 1);
}

static void test_sync_and_async_flush(void **state)
{
  (void)state;
  static const int types[] = {RMQ_SYNC_FLUSH, RMQ_ASYNC_FLUSH};
  enum { N = 20 };
  for (size_t ci = 0; ci < 2; ci++) {
    char store[1024];
    tu_store_path(store, sizeof store, "flush");
    tu_clock clk = {1700000000000};
    rmq_broker_options o;
    tu_small_opts(&o, NULL);
    o.flush_disk_type = types[ci];
    o.clock = tu_clock_read;
    o.clock_ctx = &clk;
    rmq_broker *b;
    ok(rmq_broker_open(store, &o, &b));
    rmqi_os_table.fdatasync = hook_fdatasync;
    atomic_store(&g_cl_syncs, 0);
    rmq_producer *p;
    ok(rmq_producer_create(b, NULL, NULL, &p));
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Flush", NULL, NULL, 0));
    for (uint64_t id = 0; id < N; id++) {
      rmq_send_result r;
      ok(send_id(p, m, id, 200, -1, &r));
      assert_int_equal(r.send_status, RMQ_SEND_OK);
    }
    int syncs = atomic_load(&g_cl_syncs);
    if (types[ci] == RMQ_SYNC_FLUSH) assert_true(syncs >= N); /* one sender: a sync per send */
    else assert_int_equal(syncs, 0);                          /* nothing due on a stopped clock */
    ok(rmq_broker_flush(b));
    if (types[ci] == RMQ_ASYNC_FLUSH) assert_true(atomic_load(&g_cl_syncs) >= 1);
    /* Async sends complete once durable (SYNC_FLUSH: at the next flush,
    ** here driven by rmq_broker_flush) or at once (ASYNC_FLUSH). */
    async_acks acks = {0};
    static uint8_t body[64];
    for (uint64_t id = N; id < 2 * N; id++) {
      tu_make_body(body, id, sizeof body);
      ok(rmq_msg_set_body(m, body, sizeof body));
      ok(rmq_producer_send_async(p, m, on_async_sent, &acks));
    }
    ok(rmq_broker_flush(b));
    assert_true(tu_wait_atleast(&acks.done, N, 10000));
    assert_int_equal(atomic_load(&acks.failed), 0);
    rmq_msg_free(m);
    rmq_producer_destroy(p);
    assert_int_equal(atomic_load(&acks.done), N);
    ok(rmq_broker_close(b));
    rmqi_os_reset();
    ok(rmq_broker_open(store, &o, &b));
    seen got[2 * N + 1];
    assert_int_equal(pull_all(b, "Flush", got, 2 * N + 1), 2 * N);
    ok(rmq_broker_close(b));
    tu_rmqstore_check(store);
    tu_store_remove(store);
  }
}

/* ASYNC_FLUSH with the service thread: a prefaulter keeps CommitLog pages
** faulted in ahead of the writer (and makes the next file early), and the
** CommitLog is synced by range with msync. Every message survives a reopen,
** the extra file is fine for the decoders, and an msync error reaches the
** caller of rmq_broker_flush. */
static atomic_int g_msyncs;
static int hook_msync(void *addr, size_t len, int flags)
{
  if (atomic_load(&g_fail_armed)) { errno = EIO; return -1; }
  atomic_fetch_add(&g_msyncs, 1);
  return g_real.msync(addr, len, flags);
}

static void test_prefaulter_and_range_sync(void **state)
{
  (void)state;
  enum { N = 12000, LEN = 1000 }; /* ~12.5 MB over 4 MiB files */
  char store[1024];
  tu_store_path(store, sizeof store, "prefault");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.mapped_file_size_commit_log = 4 << 20;
  o.flush_disk_type = RMQ_ASYNC_FLUSH;
  o.service_thread = 1;
  o.flush_interval_commit_log = 10;
  rmqi_os_table.msync = hook_msync;
  atomic_store(&g_msyncs, 0);
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Pf", "T", NULL, 0));
  for (uint64_t id = 0; id < N; id++) {
    rmq_send_result r;
    ok(send_id(p, m, id, LEN, -1, &r));
    assert_int_equal(r.send_status, RMQ_SEND_OK);
  }
  ok(rmq_broker_flush(b));
  assert_true(atomic_load(&g_msyncs) >= 1);
  /* The CommitLog file after the one being written exists already. */
  rmq_send_result r;
  ok(send_id(p, m, N, LEN, -1, &r));
  char path[2048];
  snprintf(path, sizeof path, "%s/commitlog/%020" PRId64, store, (r.commit_log_offset / (4 << 20) + 1) * (4 << 20));
  for (int i = 0; i < 500 && access(path, F_OK) != 0; i++) usleep(10000);
  assert_int_equal(access(path, F_OK), 0);
  atomic_store(&g_fail_armed, 1);
  assert_int_equal(rmq_broker_flush(b), RMQ_EIO);
  assert_non_null(strstr(rmq_errmsg(), "msync"));
  atomic_store(&g_fail_armed, 0);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  /* The failed sync leaves the store not writable (close says so and
  ** leaves `abort`); the next open recovers every message. */
  assert_int_equal(rmq_broker_close(b), RMQ_EIO);
  rmqi_os_reset();
  ok(rmq_broker_open(store, &o, &b));
  static seen got[N + 1];
  assert_int_equal(pull_all(b, "Pf", got, N + 1), N + 1);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

/* SYNC_FLUSH appends with pwrite: a failing write is reported, publishes
** nothing, and takes no queue offset. */
static ssize_t hook_pwrite_eio(int fd, const void *buf, size_t n, off_t off)
{
  if (atomic_load(&g_fail_armed) && fd_in_commitlog(fd)) { errno = EIO; return -1; }
  return g_real.pwrite(fd, buf, n, off);
}

static void test_sync_append_write_error(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "pwrite");
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.flush_disk_type = RMQ_SYNC_FLUSH;
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Pw", NULL, NULL, 0));
  rmq_send_result r;
  ok(send_id(p, m, 0, 100, 0, &r));
  rmqi_os_table.pwrite = hook_pwrite_eio;
  atomic_store(&g_fail_armed, 1);
  assert_int_equal(send_id(p, m, 1, 100, 0, &r), RMQ_EIO);
  assert_non_null(strstr(rmq_errmsg(), "pwrite"));
  int64_t min, max;
  ok(rmq_topic_queue_offsets(b, "Pw", 0, &min, &max));
  assert_int_equal(max, 1);
  atomic_store(&g_fail_armed, 0);
  ok(send_id(p, m, 2, 100, 0, &r));
  assert_int_equal(r.queue_offset, 1);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  rmqi_os_reset();
  ok(rmq_broker_open(store, &o, &b));
  seen got[4];
  assert_int_equal(pull_all(b, "Pw", got, 4), 2);
  qsort(got, 2, sizeof got[0], seen_cmp);
  assert_int_equal(got[0].id, 0);
  assert_int_equal(got[1].id, 2);
  ok(rmq_broker_close(b));
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

static void test_run_due_with_fake_clock(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "due");
  const int64_t t0 = 1700000000000;
  tu_clock clk = {t0};
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.flush_disk_type = RMQ_ASYNC_FLUSH;
  o.flush_interval_commit_log = 500;
  o.flush_commit_log_least_pages = 4;
  o.flush_commit_log_thorough_interval = 10000;
  o.flush_interval_consume_queue = 1000;
  o.clock = tu_clock_read;
  o.clock_ctx = &clk;
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  rmqi_os_table.fdatasync = hook_fdatasync;
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Due", NULL, NULL, 0));
  for (uint64_t id = 0; id < 3; id++) ok(send_id(p, m, id, 100, -1, NULL));
  assert_int_equal(checkpoint_at(store, 0), 0);

  int64_t next = -1;
  ok(rmq_broker_run_due(b, &next));
  assert_int_equal(next, 500); /* the ASYNC flush is the next item */
  assert_int_equal(atomic_load(&g_cl_syncs), 0);

  /* Past the flush interval with under 4 dirty pages: skipped. */
  tu_clock_advance(&clk, 500);
  ok(rmq_broker_run_due(b, &next));
  assert_true(next > 0 && next <= 500);
  assert_int_equal(atomic_load(&g_cl_syncs), 0);
  assert_int_equal(checkpoint_at(store, 0), 0);

  /* Past the thorough interval: flushed whatever the amount, and the
  ** ConsumeQueue pass writes the checkpoint with the flushed store time. */
  clk.now_ms = t0 + 10000;
  ok(rmq_broker_run_due(b, &next));
  assert_true(next > 0 && next <= 500);
  assert_true(atomic_load(&g_cl_syncs) >= 1);
  assert_int_equal(checkpoint_at(store, 0), t0);
  assert_int_equal(checkpoint_at(store, 8), t0);

  /* Four pages dirty: the next periodic flush does not wait for the
  ** thorough interval. */
  clk.now_ms = t0 + 10001;
  for (uint64_t id = 3; id < 8; id++) ok(send_id(p, m, id, 4000, -1, NULL));
  int before = atomic_load(&g_cl_syncs);
  clk.now_ms = t0 + 10500;
  ok(rmq_broker_run_due(b, &next));
  assert_true(atomic_load(&g_cl_syncs) > before);
  clk.now_ms = t0 + 11000;
  ok(rmq_broker_run_due(b, &next));
  assert_int_equal(checkpoint_at(store, 0), t0 + 10001);

  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  rmqi_os_reset();
  tu_rmqstore_check(store);
  tu_store_remove(store);
}

static void test_timestamps_from_clock(void **state)
{
  (void)state;
  char store[1024];
  tu_store_path(store, sizeof store, "clock");
  static const int64_t times[] = {1234567890123, 1234567890124, 1600000000000, 4102444800000};
  tu_clock clk = {times[0]};
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.clock = tu_clock_read;
  o.clock_ctx = &clk;
  rmq_broker *b;
  ok(rmq_broker_open(store, &o, &b));
  ok(rmq_topic_create(b, "Clock", 1));
  rmq_producer *p;
  ok(rmq_producer_create(b, NULL, NULL, &p));
  rmq_msg *m;
  ok(rmq_msg_create(&m, "Clock", NULL, NULL, 0));
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
    clk.now_ms = times[i];
    rmq_send_result r;
    ok(send_id(p, m, i, 50, 0, &r));
    assert_int_equal(r.store_timestamp, times[i]);
  }
  rmq_pull_consumer *c;
  ok(rmq_pull_consumer_create(b, "ClockGroup", &c));
  rmq_message_queue mq;
  mq_of(&mq, "Clock", 0);
  rmq_pull_result pr;
  ok(rmq_pull_consumer_pull(c, &mq, NULL, 0, 32, &pr));
  assert_int_equal(pr.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(pr.n, sizeof times / sizeof times[0]);
  for (size_t i = 0; i < pr.n; i++) {
    assert_int_equal(pr.msgs[i].store_timestamp, times[i]);
    assert_int_equal(pr.msgs[i].born_timestamp, times[i]);
  }
  rmq_pull_consumer_destroy(c);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  tu_store_remove(store);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_record_round_trip, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_hash_and_crc_vectors, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_commitlog_rollover, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_config_json, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_config_bak_fallback, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_enospc_new_commitlog_file, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_eio_on_fdatasync, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_prefaulter_and_range_sync, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_sync_append_write_error, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_sync_and_async_flush, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_new_file_dir_sync, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_run_due_with_fake_clock, setup_os, teardown_os),
    cmocka_unit_test_setup_teardown(test_timestamps_from_clock, setup_os, teardown_os),
  };
  /* TEST_FILTER=test_name* runs a subset. */
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
