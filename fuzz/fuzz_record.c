/*
** fuzz_record.c -- libFuzzer target for the CommitLog record decoder and
** property parsing. The input is one record's bytes (as a ConsumeQueue
** unit hands them over: the buffer ends where the record should). It is
** decoded with and without the body CRC check; an accepted record must lie
** wholly inside the buffer and add up to its TOTALSIZE. Accepted records
** are made into the consumer's view (rmq.c's ext_fill: tags, keys, msgId,
** offsetMsgId), which must agree with rmqi_props_find and decode back to
** the record's store host and offset, then formatted, copied and run
** through the tag and SQL92 filters. Whatever the framing, the input is
** also read as a raw property string by both parsers, which must agree.
** Built by `make fuzz` with ASan + UBSan.
**
** rmq.c is included rather than linked: ext_fill, props_scan and hexval
** are static there, and this is the only way to reach them without a
** broker (the Makefile links this target without rmq.c).
*/
#include "rmq.c"

#include <stdlib.h>

static void inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
  const uint8_t *q = p;
  if (n && (!q || q < buf || q > buf + len || n > (size_t)(buf + len - q))) abort();
}

/* The two property readers: the view's one pass and rmqi_props_find. */
static void props_agree(const char *props, size_t len)
{
  rmq_message_ext e;
  memset(&e, 0, sizeof e);
  const char *uniq, *v;
  size_t ul = 0, vl = 0;
  props_scan(props, len, &e, &uniq, &ul);
  int has = rmqi_props_find(props, len, "TAGS", 4, &v, &vl);
  if (has != (e.tags != NULL) || (has && (v != e.tags || vl != (size_t)e.tags_len))) abort();
  has = rmqi_props_find(props, len, "KEYS", 4, &v, &vl);
  if (has != (e.keys != NULL) || (has && (v != e.keys || vl != (size_t)e.keys_len))) abort();
  has = rmqi_props_find(props, len, "UNIQ_KEY", 8, &v, &vl);
  if (has != (uniq != NULL) || (has && (v != uniq || vl != ul))) abort();
  if (e.tags) inside(e.tags, (size_t)e.tags_len, (const uint8_t *)props, len);
  if (e.keys) inside(e.keys, (size_t)e.keys_len, (const uint8_t *)props, len);
  if (uniq) inside(uniq, ul, (const uint8_t *)props, len);
}

static rmqi_filter g_sql, g_tag;
static int g_ready;

/* offsetMsgId: hex of store host, port and CommitLog offset, upper case. */
static void check_offset_id(const rmq_message_ext *e, const rmqi_record *r)
{
  size_t n = strlen(e->offset_msg_id);
  if (n != (size_t)(r->store_host_len + 12) * 2) abort();
  uint8_t id[28];
  for (size_t i = 0; i < n; i += 2) {
    int hi = hexval(e->offset_msg_id[i]), lo = hexval(e->offset_msg_id[i + 1]);
    if (hi < 0 || lo < 0 || (e->offset_msg_id[i] >= 'a' && e->offset_msg_id[i] <= 'f')) abort();
    id[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  if (memcmp(id, r->store_host, (size_t)r->store_host_len + 4) != 0) abort();
  if ((int64_t)rmqi_get64(id + r->store_host_len + 4) != r->phys_offset) abort();
}

static void check_view(const uint8_t *buf, const rmqi_record *r)
{
  rmq_message_ext e;
  if (ext_fill(&e, buf, (int32_t)r->total, "FuzzTopic", "broker") != RMQ_OK) abort();
  if (e.body != r->body || e.body_len != r->body_len || e.properties != r->props ||
      e.properties_len != r->props_len || e.store_size != (int32_t)r->total)
    abort();
  props_agree(e.properties, (size_t)e.properties_len);
  check_offset_id(&e, r);
  const char *v;
  size_t vl;
  int has = rmqi_props_find(r->props, (size_t)r->props_len, "UNIQ_KEY", 8, &v, &vl);
  if (strlen(e.msg_id) >= RMQ_MSG_ID_SIZE) abort();
  if (!(has && vl < RMQ_MSG_ID_SIZE) && strcmp(e.msg_id, e.offset_msg_id) != 0) abort();
  if (rmq_message_ext_property(&e, "TAGS", &v, &vl) == RMQ_OK && (v != e.tags || vl != (size_t)e.tags_len)) abort();
  /* format is snprintf-like: the length it reports is what it writes. */
  char small[16], *big;
  int need = rmq_message_ext_format(&e, small, sizeof small);
  if (need < 0 || (big = malloc((size_t)need + 1)) == NULL) abort();
  if (rmq_message_ext_format(&e, big, (size_t)need + 1) != need || strlen(big) != (size_t)need) abort();
  free(big);
  rmq_message_ext *c = NULL;
  if (rmq_message_ext_copy(&e, &c) == RMQ_OK) {
    if (c->body_len != e.body_len || memcmp(c->body, e.body, (size_t)e.body_len) != 0 ||
        (e.tags && memcmp(c->tags, e.tags, (size_t)e.tags_len) != 0) ||
        (e.keys && memcmp(c->keys, e.keys, (size_t)e.keys_len) != 0) || strcmp(c->msg_id, e.msg_id) != 0)
      abort();
    rmq_message_ext_free(c);
  }
  rmqi_filter_record(&g_sql, e.tags, (size_t)e.tags_len, e.properties, (size_t)e.properties_len);
  rmqi_filter_record(&g_tag, e.tags, (size_t)e.tags_len, e.properties, (size_t)e.properties_len);
}

static void check_record(const uint8_t *buf, size_t len, const rmqi_record *r, int crc)
{
  if (r->total < 91 || r->total > len) abort();
  if (r->magic != RMQI_MAGIC_V1 && r->magic != RMQI_MAGIC_V2) abort();
  inside(r->born_host, (size_t)r->born_host_len + 4, buf, r->total);
  inside(r->store_host, (size_t)r->store_host_len + 4, buf, r->total);
  inside(r->body, (size_t)r->body_len, buf, r->total);
  inside(r->topic, (size_t)r->topic_len, buf, r->total);
  inside(r->props, (size_t)r->props_len, buf, r->total);
  if (r->topic_len <= 0 || r->body_len < 0 || r->props_len < 0) abort();
  if ((const uint8_t *)r->props + r->props_len != buf + r->total) abort();
  if (r->body + r->body_len > (const uint8_t *)r->topic) abort();
  if (crc && (int32_t)(rmqi_crc32(r->body, (size_t)r->body_len) & 0x7FFFFFFF) != r->body_crc) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!g_ready) {
    if (rmqi_filter_compile(RMQ_SELECTOR_SQL92, "a > 1 OR (TAGS IN ('TagA', 'TagB') AND KEYS IS NOT NULL)", &g_sql) ||
        rmqi_filter_compile(RMQ_SELECTOR_TAG, "TagA || TagB", &g_tag))
      abort();
    g_ready = 1;
  }
  if (size > 65536) return 0;
  /* An exact-size copy: a read past the record's end shows under ASan. */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  rmqi_record r0, r1;
  int rc0 = rmqi_record_decode(buf, size, 0, &r0);
  int rc1 = rmqi_record_decode(buf, size, 1, &r1);
  if ((rc0 != RMQ_OK && rc0 != RMQ_ECORRUPT && rc0 != RMQ_ENOTFOUND) ||
      (rc1 != RMQ_OK && rc1 != RMQ_ECORRUPT && rc1 != RMQ_ENOTFOUND))
    abort();
  /* The CRC check only ever refuses more. */
  if (rc1 == RMQ_OK && rc0 != RMQ_OK) abort();
  if (rc0 == RMQ_ENOTFOUND && (rc1 != RMQ_ENOTFOUND || rmqi_get32(buf + 4) != RMQI_MAGIC_BLANK)) abort();
  if (rc0 == RMQ_OK) {
    check_record(buf, size, &r0, 0);
    check_view(buf, &r0);
  }
  if (rc1 == RMQ_OK) check_record(buf, size, &r1, 1);
  props_agree((const char *)buf, size);
  rmqi_sql_match_props(g_sql.sql, (const char *)buf, size);
  free(buf);
  return 0;
}
