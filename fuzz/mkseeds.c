/*
** mkseeds.c -- makes the fuzz targets' seeds (run by `make fuzz-seeds`; a
** plain program linked with librmq, not a fuzz target).
**
**   mkseeds pack DIR OUT [MODE]   a store directory as an "rmqa" archive,
**                                 fuzz_store's input (see fuzz_store.c):
**                                 only nonzero bytes are kept
**   mkseeds unpack ARCHIVE DIR    the other way, to look at a crash input
**                                 with rmqadmin
**   mkseeds small DIR [crash] [tiny]   a store of small geometry made
**                                 through the API (64 KiB CommitLog files,
**                                 64-unit ConsumeQueue files, 64-slot index
**                                 files); with "crash", DIR is a copy taken
**                                 while the broker was still open; "tiny"
**                                 sends a dozen messages instead of 113
**   mkseeds rocketmq DIR [crash]  a store laid out as a RocketMQ 4.9/5.x
**                                 broker leaves it (see below)
**   mkseeds records DIR OUTDIR N  the first N records of DIR's CommitLog,
**                                 one file each: fuzz_record's seeds
**   mkseeds record-extra OUTDIR   records no rmq broker writes (IPv6
**                                 hosts, a V2 long-topic record)
**   mkseeds check DIR             opens DIR read-only and checks it
**
** The "rocketmq" store is CONSTRUCTED here, byte by byte, from the format
** in ../shared/ROCKETMQ.md: no RocketMQ broker ran to write it (none can
** run here). It has what a 4.9/5.x broker's clean shutdown leaves: 1 GiB
** CommitLog files named by offset, 6,000,000-byte ConsumeQueue files, a
** default-geometry index file (5,000,000 slots, 20,000,000 entries) named
** by its local creation time, the 4096-byte checkpoint, fastjson config
** files (dataVersion, topicConfigTable, offsetTable with unquoted int keys,
** subscriptionGroupTable, .bak copies), `lock` holding "lock", the empty
** `abort.bak`, and no `abort`. With "crash": `abort` present and the next
** CommitLog file pre-made and all zeros, as a killed broker leaves them.
** Its encoders (CRC, hash, records) are written here from the format, not
** taken from rmq, so the seed is an independent reading of it.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rmq.h"
#include "archive.h"

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static void mkdirs(const char *path)
{
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
  mkdir(tmp, 0755);
}

/* Writes data at off of dir/rel, a file of `size` bytes (sparse). */
static void write_at(const char *dir, const char *rel, int64_t size, int64_t off, const void *data, size_t n)
{
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  char *slash = strrchr(path, '/');
  *slash = 0;
  mkdirs(path);
  *slash = '/';
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  if (fd < 0) die(path);
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size < size && ftruncate(fd, size) != 0) die("ftruncate");
  if (n && pwrite(fd, data, n, off) != (ssize_t)n) die("pwrite");
  close(fd);
}

static void write_text(const char *dir, const char *rel, const char *text)
{
  write_at(dir, rel, (int64_t)strlen(text), 0, text, strlen(text));
}

/* ---- pack / unpack --------------------------------------------------- */

static FILE *g_out;

static void emit(const char *rel, uint32_t size, uint32_t off, const uint8_t *d, size_t n)
{
  uint8_t h[10];
  size_t pl = strlen(rel);
  if (pl == 0 || pl > 255) { fprintf(stderr, "path too long: %s\n", rel); exit(1); }
  fputc((int)pl, g_out);
  fwrite(rel, 1, pl, g_out);
  put32(h, size);
  put32(h + 4, off);
  put16(h + 8, (uint16_t)n);
  fwrite(h, 1, 10, g_out);
  fwrite(d, 1, n, g_out);
}

/* The file's nonzero bytes as extents; zero runs of 24 bytes or more (over
** twice an extent header) are left out. */
static void pack_file(const char *path, const char *rel)
{
  int fd = open(path, O_RDONLY);
  if (fd < 0) die(path);
  struct stat st;
  if (fstat(fd, &st) != 0) die("fstat");
  if (st.st_size > UINT32_MAX) { fprintf(stderr, "%s: too big\n", path); exit(1); }
  uint32_t size = (uint32_t)st.st_size;
  int any = 0;
  off_t pos = 0;
  static uint8_t buf[1 << 20];
  size_t ext_start = 0, ext_len = 0; /* pending extent, in file offsets */
  static uint8_t ext[65535];
  size_t zeros = 0;
  while (pos < st.st_size) {
    off_t d = lseek(fd, pos, SEEK_DATA);
    if (d < 0) break;
    off_t h = lseek(fd, d, SEEK_HOLE);
    if (h < 0) h = st.st_size;
    for (off_t p = d; p < h;) {
      size_t want = (size_t)(h - p) < sizeof buf ? (size_t)(h - p) : sizeof buf;
      ssize_t got = pread(fd, buf, want, p);
      if (got <= 0) die("pread");
      for (ssize_t i = 0; i < got; i++) {
        size_t at = (size_t)(p + i);
        if (buf[i] == 0) {
          if (ext_len) zeros++;
          continue;
        }
        if (ext_len && (zeros >= 24 || at != ext_start + ext_len + zeros || ext_len + zeros + 1 > sizeof ext)) {
          emit(rel, size, (uint32_t)ext_start, ext, ext_len);
          any = 1;
          ext_len = 0;
        }
        if (!ext_len) { ext_start = at; zeros = 0; }
        memset(ext + ext_len, 0, zeros);
        ext_len += zeros;
        zeros = 0;
        ext[ext_len++] = buf[i];
      }
      p += got;
    }
    pos = h;
  }
  if (ext_len) { emit(rel, size, (uint32_t)ext_start, ext, ext_len); any = 1; }
  if (!any) emit(rel, size, 0, NULL, 0);
  close(fd);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void pack_dir(const char *root, const char *rel)
{
  char path[1024];
  snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(path);
  if (!d) die(path);
  char *names[4096];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 4096)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp_str);
  if (n == 0 && *rel) {
    char r[1024];
    snprintf(r, sizeof r, "%s/", rel);
    emit(r, 0, 0, NULL, 0);
  }
  for (int i = 0; i < n; i++) {
    char r[1024], p[1100];
    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", names[i]);
    snprintf(p, sizeof p, "%s/%s", root, r);
    struct stat st;
    if (lstat(p, &st) != 0) die(p);
    if (S_ISDIR(st.st_mode)) pack_dir(root, r);
    else if (S_ISREG(st.st_mode)) pack_file(p, r);
    free(names[i]);
  }
}

static int cmd_pack(const char *dir, const char *out, int mode)
{
  g_out = fopen(out, "wb");
  if (!g_out) die(out);
  fputc(mode, g_out);
  pack_dir(dir, "");
  if (fclose(g_out) != 0) die(out);
  return 0;
}

static int cmd_unpack(const char *archive, const char *dir)
{
  FILE *f = fopen(archive, "rb");
  if (!f) die(archive);
  static uint8_t d[1 << 24];
  size_t n = fread(d, 1, sizeof d, f);
  fclose(f);
  mkdirs(dir);
  size_t i = 1;
  rmqa_entry e;
  while (rmqa_next(d, n, &i, &e)) {
    if (strstr(e.path, "..") || e.path[0] == '/') continue;
    if (e.path[e.path_len - 1] == '/') {
      char p[1024];
      snprintf(p, sizeof p, "%s/%s", dir, e.path);
      mkdirs(p);
    } else {
      write_at(dir, e.path, e.size, e.off, e.data, e.data_len);
    }
  }
  printf("unpacked %s (mode %d) into %s\n", archive, n ? d[0] : 0, dir);
  return 0;
}

/* ---- the small store, through the API ---------------------------------- */

static int exec_commit(void *ctx, const rmq_msg *m, const char *id, void *arg)
{
  (void)ctx; (void)m; (void)id;
  return *(int *)arg;
}

static void chk(int rc, const char *what)
{
  if (rc != RMQ_OK) { fprintf(stderr, "%s: %s (%s)\n", what, rmq_errstr(rc), rmq_errmsg()); exit(1); }
}

static void send(rmq_producer *p, const char *topic, int qid, const char *tags, const char *keys, const void *body,
                 size_t blen, int delay, const char *pname, const char *pval)
{
  rmq_msg *m;
  chk(rmq_msg_create(&m, topic, tags, body, blen), "rmq_msg_create");
  if (keys) chk(rmq_msg_set_keys(m, keys), "keys");
  if (delay) chk(rmq_msg_set_delay_time_level(m, delay), "delay");
  if (pname) chk(rmq_msg_put_user_property(m, pname, pval), "property");
  rmq_send_result r;
  if (qid >= 0) chk(rmq_producer_send_to_queue(p, m, qid, &r), "send");
  else chk(rmq_producer_send(p, m, &r), "send");
  rmq_msg_free(m);
}

static void remove_tree(const char *dir)
{
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) die("rm");
}

static void copy_tree(const char *from, const char *to)
{
  char cmd[4096];
  remove_tree(to);
  snprintf(cmd, sizeof cmd, "cp -a --sparse=always '%s' '%s'", from, to);
  if (system(cmd) != 0) die("cp");
}

static int cmd_small(const char *dir, int crash, int tiny)
{
  char work[1100];
  snprintf(work, sizeof work, "%s.work", dir);
  remove_tree(work);
  remove_tree(dir);
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.service_thread = 0;
  o.mapped_file_size_commit_log = 64 * 1024;
  o.mapped_file_size_consume_queue = 1280;
  o.max_hash_slot_num = 64;
  o.max_index_num = 128;
  rmq_broker *b;
  chk(rmq_broker_open(crash ? work : dir, &o, &b), "open");
  chk(rmq_topic_create(b, "TopicTest", 4), "topic");
  chk(rmq_topic_create(b, "OrderTopic", 2), "topic");
  rmq_producer *p;
  chk(rmq_producer_create(b, "ProducerGroup", NULL, &p), "producer");
  char body[64], keys[64];
  static const char *tags[] = {"TagA", "TagB", "TagC", NULL};
  for (int i = 0; i < (tiny ? 6 : 24); i++) {
    int n = snprintf(body, sizeof body, "Hello RocketMQ %d", i);
    snprintf(keys, sizeof keys, "KEY%d ORDER%d", i, i / 3);
    send(p, "TopicTest", -1, tags[i % 4], keys, body, (size_t)n, 0, i % 5 == 0 ? "a" : NULL, "7");
  }
  /* One queue past a 64-unit ConsumeQueue file. */
  for (int i = 0; i < (tiny ? 2 : 70); i++) {
    int n = snprintf(body, sizeof body, "order %d", i);
    send(p, "OrderTopic", 0, "TagO", NULL, body, (size_t)n, 0, NULL, NULL);
  }
  send(p, "TopicTest", 1, "TagD", "DELAYED", "later", 5, 3, NULL, NULL);
  /* Zero bodies fill the first 64 KiB file at no cost in the archive, so
  ** the store has two CommitLog files. */
  static uint8_t zeros[8000];
  for (int i = 0; i < (tiny ? 0 : 8); i++) send(p, "TopicTest", 2, "Big", NULL, zeros, sizeof zeros, 0, NULL, NULL);
  for (int i = 0; i < (tiny ? 1 : 6); i++) {
    int n = snprintf(body, sizeof body, "after %d", i);
    send(p, "TopicTest", 3, "TagA", "AFTER", body, (size_t)n, 0, "b", "x y");
  }
  rmq_producer *tp;
  chk(rmq_producer_create(b, "TxGroup", NULL, &tp), "tx producer");
  rmq_transaction_listener l = {exec_commit, NULL, NULL};
  chk(rmq_producer_set_transaction_listener(tp, &l), "listener");
  int states[] = {RMQ_COMMIT_MESSAGE, RMQ_UNKNOW};
  for (int i = 0; i < (tiny ? 0 : 2); i++) {
    rmq_msg *m;
    chk(rmq_msg_create(&m, "TopicTest", "TagT", "tx", 2), "msg");
    rmq_transaction_send_result tr;
    chk(rmq_producer_send_message_in_transaction(tp, m, &states[i], &tr), "tx send");
    rmq_msg_free(m);
  }
  rmq_producer_destroy(tp);
  rmq_producer_destroy(p);
  rmq_pull_consumer *c;
  chk(rmq_pull_consumer_create(b, "ConsumerGroup", &c), "consumer");
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "TopicTest");
  rmq_pull_result r;
  chk(rmq_pull_consumer_pull(c, &mq, "*", 0, 4, &r), "pull");
  chk(rmq_pull_consumer_update_consume_offset(c, &mq, r.next_begin_offset), "commit");
  rmq_pull_consumer_destroy(c);
  chk(rmq_broker_run_due(b, NULL), "run_due");
  if (crash) {
    chk(rmq_broker_flush(b), "flush");
    copy_tree(work, dir); /* while open: abort and lock present, as after a kill */
  }
  chk(rmq_broker_close(b), "close");
  if (crash) remove_tree(work);
  return 0;
}

/* ---- the constructed RocketMQ store ------------------------------------ */

static uint32_t crc_table[256];

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
  if (!crc_table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      crc_table[i] = c;
    }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* Java String.hashCode of an ASCII string. */
static int32_t jhash(const char *s)
{
  uint32_t h = 0;
  while (*s) h = 31 * h + (uint8_t)*s++;
  return (int32_t)h;
}

typedef struct rec {
  const char *topic;
  int qid;
  const char *tags, *keys, *uniq, *extra; /* extra: more "name\1value\2" pairs */
  const char *body;
  int sysflag;
  int64_t store_ts;
  int v6;          /* IPv6 born and store hosts */
  int reconsume;   /* RECONSUMETIMES */
  int64_t prep;    /* PREPARED_TRANSACTION_OFFSET: a COMMIT record's half message */
  int64_t qoff;    /* filled */
  int64_t phys;    /* filled */
  int32_t size;    /* filled */
  int64_t tagcode; /* ConsumeQueue tag code (0: jhash of tags) */
} rec;

/* Encodes r at phys into out (CommitLog.java / MessageDecoder.java layout:
** V1 magic unless the topic is over 127 bytes). Returns its size. */
static int32_t encode(uint8_t *out, rec *r, int64_t phys)
{
  char props[1024];
  size_t pl = 0;
  /* RocketMQ's order is HashMap order; any order reads the same. */
  if (r->keys) pl += (size_t)snprintf(props + pl, sizeof props - pl, "KEYS\001%s\002", r->keys);
  if (r->uniq) pl += (size_t)snprintf(props + pl, sizeof props - pl, "UNIQ_KEY\001%s\002", r->uniq);
  pl += (size_t)snprintf(props + pl, sizeof props - pl, "WAIT\001true\002");
  if (r->tags) pl += (size_t)snprintf(props + pl, sizeof props - pl, "TAGS\001%s\002", r->tags);
  if (r->extra) pl += (size_t)snprintf(props + pl, sizeof props - pl, "%s", r->extra);
  size_t bl = strlen(r->body), tl = strlen(r->topic);

  int v2 = tl > 127;
  int hl = r->v6 ? 16 : 4;
  int sysflag = r->sysflag | (r->v6 ? 0x30 : 0);
  int32_t total = (int32_t)(4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + (hl + 4) + 8 + (hl + 4) + 4 + 8 + 4 + bl +
                            (v2 ? 2 : 1) + tl + 2 + pl);
  uint8_t *p = out;
  put32(p, (uint32_t)total); p += 4;
  put32(p, v2 ? 0xDAA320ABu : 0xDAA320A7u); p += 4;
  put32(p, crc32_ieee((const uint8_t *)r->body, bl) & 0x7FFFFFFF); p += 4;
  put32(p, (uint32_t)r->qid); p += 4;
  put32(p, 0); p += 4; /* flag */
  put64(p, (uint64_t)r->qoff); p += 8;
  put64(p, (uint64_t)phys); p += 8;
  put32(p, (uint32_t)sysflag); p += 4;
  put64(p, (uint64_t)(r->store_ts - 3)); p += 8; /* born */
  static const uint8_t born4[4] = {192, 168, 0, 20}, store4[4] = {192, 168, 0, 10};
  static const uint8_t born6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20};
  static const uint8_t store6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
  memcpy(p, r->v6 ? born6 : born4, (size_t)hl); p += hl;
  put32(p, 53412); p += 4;
  put64(p, (uint64_t)r->store_ts); p += 8;
  memcpy(p, r->v6 ? store6 : store4, (size_t)hl); p += hl;
  put32(p, 10911); p += 4;
  put32(p, (uint32_t)r->reconsume); p += 4;
  put64(p, (uint64_t)r->prep); p += 8;
  put32(p, (uint32_t)bl); p += 4;
  memcpy(p, r->body, bl); p += bl;
  if (v2) { put16(p, (uint16_t)tl); p += 2; } else *p++ = (uint8_t)tl;
  memcpy(p, r->topic, tl); p += tl;
  put16(p, (uint16_t)pl); p += 2;
  memcpy(p, props, pl); p += pl;
  if (p - out != total) abort();
  r->phys = phys;
  r->size = total;
  return total;
}

#define RQ_CL (INT64_C(1) << 30)
#define RQ_CQ 6000000
#define RQ_SLOTS 5000000
#define RQ_ENTRIES 20000000
#define RQ_T0 INT64_C(1765000000000) /* 2025-12-06, when the constructed broker "ran" */

static const char *RQ_GROUP = "please_rename_unique_group_name_4";

static const char *dv(char *buf, size_t n, int counter)
{
  snprintf(buf, n, "{\"counter\":%d,\"stateVersion\":0,\"timestamp\":%" PRId64 "}", counter, RQ_T0 - 60000);
  return buf;
}

static void topic_json(char *out, size_t n, size_t *l, const char *name, int q, int perm, int sysflag, int first)
{
  *l += (size_t)snprintf(out + *l, n - *l,
                         "%s\"%s\":{\"attributes\":{},\"order\":false,\"perm\":%d,\"readQueueNums\":%d,"
                         "\"topicFilterType\":\"SINGLE_TAG\",\"topicName\":\"%s\",\"topicSysFlag\":%d,"
                         "\"writeQueueNums\":%d}",
                         first ? "" : ",", name, perm, q, name, sysflag, q);
}

static int cmd_rocketmq(const char *dir, int crash)
{
  remove_tree(dir);
  enum { NREC = 15 };
  rec recs[NREC];
  memset(recs, 0, sizeof recs);
  static const char *tags[] = {"TagA", "TagB", "TagC"};
  static char uniq[NREC][40], keys[NREC][32], body[NREC][40];
  int n = 0;
  for (int i = 0; i < 10; i++, n++) {
    /* UNIQ_KEY: client IPv4, pid, classloader hash, ms in month, counter. */
    snprintf(uniq[n], sizeof uniq[n], "C0A80014%04X%08X%08X%04X", 0x1F2E, 0x6D06C1A2u, (unsigned)(1234567 + i * 10),
             0x0100 + i);
    snprintf(keys[n], sizeof keys[n], "KEY%d", i);
    snprintf(body[n], sizeof body[n], "Hello RocketMQ %d", i);
    recs[n] = (rec){.topic = "TopicTest", .qid = i % 4, .tags = tags[i % 3], .keys = keys[n], .uniq = uniq[n],
                    .body = body[n], .store_ts = RQ_T0 + i * 10};
  }
  /* A delay level 3 message (10 s): in SCHEDULE_TOPIC_XXXX queue 2, tag
  ** code the delivery time. */
  snprintf(uniq[n], sizeof uniq[n], "C0A80014%04X%08X%08X%04X", 0x1F2E, 0x6D06C1A2u, 1234700u, 0x0200);
  recs[n] = (rec){.topic = "SCHEDULE_TOPIC_XXXX", .qid = 2, .tags = "TagA", .uniq = uniq[n], .body = "later",
                  .extra = "DELAY\0013\002REAL_TOPIC\001TopicTest\002REAL_QID\0011\002", .store_ts = RQ_T0 + 200,
                  .tagcode = RQ_T0 + 200 + 10000};
  n++;
  /* A half message: tx type reset to NOT_TYPE, real topic in properties. */
  snprintf(uniq[n], sizeof uniq[n], "C0A80014%04X%08X%08X%04X", 0x1F2E, 0x6D06C1A2u, 1234800u, 0x0300);
  static char half_extra[256];
  snprintf(half_extra, sizeof half_extra,
           "TRAN_MSG\001true\002PGROUP\001TxGroup\002REAL_TOPIC\001TopicTest\002REAL_QID\0012\002"
           "__transactionId__\001%s\002", uniq[n]);
  recs[n] = (rec){.topic = "RMQ_SYS_TRANS_HALF_TOPIC", .qid = 0, .tags = "TagT", .uniq = uniq[n], .body = "tx",
                  .extra = half_extra, .store_ts = RQ_T0 + 300};
  n++;
  /* A retried message, in the group's retry topic. */
  snprintf(uniq[n], sizeof uniq[n], "C0A80014%04X%08X%08X%04X", 0x1F2E, 0x6D06C1A2u, 1234900u, 0x0400);
  char retry[128];
  snprintf(retry, sizeof retry, "%%RETRY%%%s", RQ_GROUP);
  recs[n] = (rec){.topic = retry, .qid = 0, .tags = "TagA", .keys = "KEY1", .uniq = uniq[n], .body = "Hello RocketMQ 1",
                  .extra = "RETRY_TOPIC\001TopicTest\002ORIGIN_MESSAGE_ID\001C0A8000A00002A9F0000000000000000\002"
                           "DELAY\0013\002REAL_TOPIC\001%RETRY%please_rename_unique_group_name_4\002REAL_QID\0010\002",
                  .store_ts = RQ_T0 + 10400, .reconsume = 1};
  n++;
  /* A commit record: the real message of the half, tx type COMMIT, its
  ** PREPARED_TRANSACTION_OFFSET the half's (set below), then the op
  ** record marking the half done: tag "d", body the half's offset. */
  int half = n - 2;
  recs[n] = (rec){.topic = "TopicTest", .qid = 2, .tags = "TagT", .uniq = uniq[half], .body = "tx", .sysflag = 0x8,
                  .extra = "TRAN_MSG\001true\002PGROUP\001TxGroup\002REAL_TOPIC\001TopicTest\002REAL_QID\0012\002",
                  .store_ts = RQ_T0 + 300};
  int commit = n++;
  static char op_body[24];
  recs[n] = (rec){.topic = "RMQ_SYS_TRANS_OP_HALF_TOPIC", .qid = 0, .tags = "d", .body = op_body,
                  .store_ts = RQ_T0 + 301};
  int op = n++;

  /* CommitLog: records packed from 0, queue offsets per (topic, queue). */
  static uint8_t cl[1 << 16];
  int64_t pos = 0;
  typedef struct qstate { const char *topic; int qid; int64_t next; } qstate;
  qstate qs[16];
  int nqs = 0;
  for (int i = 0; i < n; i++) {
    if (i == commit) recs[i].prep = recs[half].phys;
    if (i == op) snprintf(op_body, sizeof op_body, "%" PRId64, recs[half].phys);
    int k = 0;
    while (k < nqs && !(qs[k].qid == recs[i].qid && !strcmp(qs[k].topic, recs[i].topic))) k++;
    if (k == nqs) qs[nqs++] = (qstate){recs[i].topic, recs[i].qid, 0};
    recs[i].qoff = qs[k].next++;
    pos += encode(cl + pos, &recs[i], pos);
  }
  write_at(dir, "commitlog/00000000000000000000", RQ_CL, 0, cl, (size_t)pos);
  if (crash) write_at(dir, "commitlog/00000000001073741824", RQ_CL, 0, NULL, 0);

  /* ConsumeQueues: one 20-byte unit per record at queue offset * 20. */
  for (int i = 0; i < n; i++) {
    uint8_t u[20];
    put64(u, (uint64_t)recs[i].phys);
    put32(u + 8, (uint32_t)recs[i].size);
    put64(u + 12, (uint64_t)(recs[i].tagcode ? recs[i].tagcode : (int64_t)jhash(recs[i].tags)));
    char rel[512];
    snprintf(rel, sizeof rel, "consumequeue/%s/%d/00000000000000000000", recs[i].topic, recs[i].qid);
    write_at(dir, rel, RQ_CQ, recs[i].qoff * 20, u, 20);
  }

  /* Index: "topic#key" for UNIQ_KEY then each KEYS word; entry 0 unused. */
  char ixname[64];
  time_t t0 = (time_t)(RQ_T0 / 1000);
  struct tm tm;
  gmtime_r(&t0, &tm);
  strftime(ixname, sizeof ixname, "index/%Y%m%d%H%M%S", &tm);
  snprintf(ixname + strlen(ixname), sizeof ixname - strlen(ixname), "%03d", (int)(RQ_T0 % 1000));
  int64_t ixsize = 40 + (int64_t)RQ_SLOTS * 4 + (int64_t)RQ_ENTRIES * 20;
  int count = 1, used = 0;
  int64_t begin_ts = 0, end_ts = 0, begin_phy = 0, end_phy = 0;
  static int32_t slot_head[64];
  static int32_t slot_no[64];
  int nslots = 0;
  for (int i = 0; i < n; i++) {
    if ((recs[i].sysflag & 0xC) == 0xC) continue;
    const char *ks[2] = {recs[i].uniq, recs[i].keys};
    for (int j = 0; j < 2; j++) {
      if (!ks[j]) continue;
      char key[300];
      snprintf(key, sizeof key, "%s#%s", recs[i].topic, ks[j]);
      int32_t h = jhash(key);
      int32_t kh = h == INT32_MIN ? 0 : h < 0 ? -h : h;
      int32_t slot = kh % RQ_SLOTS;
      int k = 0;
      while (k < nslots && slot_no[k] != slot) k++;
      if (k == nslots) { slot_no[nslots] = slot; slot_head[nslots++] = 0; used++; }
      if (begin_ts == 0) { begin_ts = recs[i].store_ts; begin_phy = recs[i].phys; }
      uint8_t e[20];
      put32(e, (uint32_t)kh);
      put64(e + 4, (uint64_t)recs[i].phys);
      put32(e + 12, (uint32_t)((recs[i].store_ts - begin_ts) / 1000));
      put32(e + 16, (uint32_t)slot_head[k]);
      write_at(dir, ixname, ixsize, 40 + (int64_t)RQ_SLOTS * 4 + (int64_t)count * 20, e, 20);
      slot_head[k] = count++;
      uint8_t s4[4];
      put32(s4, (uint32_t)slot_head[k]);
      write_at(dir, ixname, ixsize, 40 + (int64_t)slot * 4, s4, 4);
      end_ts = recs[i].store_ts;
      end_phy = recs[i].phys;
    }
  }
  uint8_t hdr[40];
  put64(hdr, (uint64_t)begin_ts);
  put64(hdr + 8, (uint64_t)end_ts);
  put64(hdr + 16, (uint64_t)begin_phy);
  put64(hdr + 24, (uint64_t)end_phy);
  put32(hdr + 32, (uint32_t)used);
  put32(hdr + 36, (uint32_t)count);
  write_at(dir, ixname, ixsize, 0, hdr, 40);

  /* Checkpoint: physic, logics, index timestamps; 5.x's two offsets. The
  ** physic time lags the newest record, as after a real shutdown. */
  uint8_t cp[40];
  put64(cp, (uint64_t)(RQ_T0 + 200));
  put64(cp + 8, (uint64_t)(RQ_T0 + 10400));
  put64(cp + 16, 0); /* no full index file yet */
  put64(cp + 24, 0);
  put64(cp + 32, (uint64_t)pos);
  write_at(dir, "checkpoint", 4096, 0, cp, sizeof cp);

  /* Config files, as fastjson writes them (one line; int keys unquoted). */
  static char js[16384];
  char dvb[128];
  size_t l = 0;
  l += (size_t)snprintf(js + l, sizeof js - l, "{\"dataVersion\":%s,\"topicConfigTable\":{", dv(dvb, sizeof dvb, 7));
  topic_json(js, sizeof js, &l, "SCHEDULE_TOPIC_XXXX", 18, 6, 0, 1);
  topic_json(js, sizeof js, &l, "TopicTest", 4, 6, 0, 0);
  topic_json(js, sizeof js, &l, "SELF_TEST_TOPIC", 1, 6, 0, 0);
  topic_json(js, sizeof js, &l, "DefaultCluster", 16, 7, 0, 0);
  topic_json(js, sizeof js, &l, "RMQ_SYS_TRANS_HALF_TOPIC", 1, 6, 0, 0);
  topic_json(js, sizeof js, &l, "RMQ_SYS_TRANS_OP_HALF_TOPIC", 1, 6, 0, 0);
  topic_json(js, sizeof js, &l, "broker-a", 1, 7, 0, 0);
  topic_json(js, sizeof js, &l, "TBW102", 8, 7, 0, 0);
  topic_json(js, sizeof js, &l, "OFFSET_MOVED_EVENT", 1, 6, 0, 0);
  topic_json(js, sizeof js, &l, retry, 1, 6, 0, 0);
  l += (size_t)snprintf(js + l, sizeof js - l, "}}");
  write_text(dir, "config/topics.json", js);
  write_text(dir, "config/topics.json.bak", js);
  snprintf(js, sizeof js,
           "{\"dataVersion\":%s,\"offsetTable\":{\"TopicTest@%s\":{0:3,1:2,2:2,3:2},\"%s@%s\":{0:0}}}",
           dv(dvb, sizeof dvb, 3), RQ_GROUP, retry, RQ_GROUP);
  write_text(dir, "config/consumerOffset.json", js);
  write_text(dir, "config/consumerOffset.json.bak", js);
  snprintf(js, sizeof js, "{\"dataVersion\":%s,\"offsetTable\":{3:0}}", dv(dvb, sizeof dvb, 1));
  write_text(dir, "config/delayOffset.json", js);
  snprintf(js, sizeof js,
           "{\"dataVersion\":%s,\"forbiddenTable\":{},\"subscriptionGroupTable\":{\"%s\":{\"attributes\":{},"
           "\"brokerId\":0,\"consumeBroadcastEnable\":true,\"consumeEnable\":true,\"consumeFromMinEnable\":true,"
           "\"consumeMessageOrderly\":false,\"consumeTimeoutMinute\":15,\"groupName\":\"%s\","
           "\"groupRetryPolicy\":{\"type\":\"CUSTOMIZED\"},\"groupSysFlag\":0,\"notifyConsumerIdsChangedEnable\":true,"
           "\"retryMaxTimes\":16,\"retryQueueNums\":1,\"whichBrokerWhenConsumeSlowly\":1}}}",
           dv(dvb, sizeof dvb, 2), RQ_GROUP, RQ_GROUP);
  write_text(dir, "config/subscriptionGroup.json", js);
  write_text(dir, "lock", "lock");
  write_text(dir, "abort.bak", "");
  if (crash) write_text(dir, "abort", "");
  printf("rocketmq store: %d records, %" PRId64 " CommitLog bytes, %d index entries%s\n", n, pos, count - 1,
         crash ? " (crash: abort, zero next file)" : "");
  return 0;
}

/* ---- records ------------------------------------------------------------ */

static int cmd_records(const char *dir, const char *outdir, int max)
{
  char cld[1024];
  snprintf(cld, sizeof cld, "%s/commitlog", dir);
  DIR *d = opendir(cld);
  if (!d) die(cld);
  char *names[256];
  int nn = 0;
  struct dirent *e;
  while ((e = readdir(d)) && nn < 256)
    if (e->d_name[0] != '.') names[nn++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)nn, sizeof names[0], cmp_str);
  mkdirs(outdir);
  int written = 0;
  for (int i = 0; i < nn && written < max; i++) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", cld, names[i]);
    FILE *f = fopen(p, "rb");
    if (!f) die(p);
    uint8_t *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    for (size_t off = 0; off + 8 <= n && written < max;) {
      uint32_t total = get32(buf + off), magic = get32(buf + off + 4);
      if (magic != 0xDAA320A7u && magic != 0xDAA320ABu) break;
      if (total < 8 || total > n - off) break;
      char op[2048];
      snprintf(op, sizeof op, "%s/%s-%s-%zu", outdir, strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir, names[i], off);
      FILE *o = fopen(op, "wb");
      if (!o) die(op);
      /* Big zero bodies are cut to keep the seeds small: the record then
      ** fails to decode at first, and the fuzzer mends it. */
      fwrite(buf + off, 1, total > 4096 ? 4096 : total, o);
      fclose(o);
      written++;
      off += total;
    }
    free(buf);
    free(names[i]);
  }
  printf("%d records from %s\n", written, dir);
  return 0;
}

static void write_rec(const char *outdir, const char *name, rec *r, int64_t phys)
{
  static uint8_t buf[4096];
  int32_t n = encode(buf, r, phys);
  char p[2048];
  snprintf(p, sizeof p, "%s/%s", outdir, name);
  FILE *f = fopen(p, "wb");
  if (!f) die(p);
  fwrite(buf, 1, (size_t)n, f);
  fclose(f);
}

static int cmd_record_extra(const char *outdir)
{
  mkdirs(outdir);
  rec r = {.topic = "TopicTest", .qid = 1, .tags = "TagA", .keys = "KEY1 KEY2", .uniq = "2001DB80000000000000000000201F2E6D06C1A2001D4A8F0001",
           .body = "Hello RocketMQ", .store_ts = RQ_T0, .v6 = 1};
  write_rec(outdir, "ipv6", &r, 4096);
  char longt[200];
  memset(longt, 'g', sizeof longt);
  memcpy(longt, "%RETRY%", 7);
  longt[160] = 0;
  rec v2 = {.topic = longt, .qid = 0, .tags = "TagB", .uniq = "C0A800141F2E6D06C1A2001D4A8F0002", .body = "retry",
            .store_ts = RQ_T0, .extra = "RETRY_TOPIC\001TopicTest\002"};
  write_rec(outdir, "v2-long-topic", &v2, 8192);
  rec np = {.topic = "T", .qid = 0, .body = "", .store_ts = RQ_T0};
  write_rec(outdir, "minimal", &np, 0);
  printf("extra records in %s\n", outdir);
  return 0;
}

/* ---- check ---------------------------------------------------------------- */

static void problem(void *ctx, const char *file, int64_t off, const char *what)
{
  (void)ctx;
  printf("  problem: %s @%" PRId64 ": %s\n", file, off, what);
}

static int cmd_check(const char *dir)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.read_only = 1;
  o.service_thread = 0;
  rmq_broker *b;
  chk(rmq_broker_open(dir, &o, &b), "open");
  rmq_check_result cr;
  int rc = rmq_broker_check(b, problem, NULL, &cr);
  printf("%s: check %s: %" PRId64 " records, %" PRId64 " units, %" PRId64 " index entries, %" PRId64 " problems\n",
         dir, rmq_errstr(rc), cr.records, cr.units, cr.index_entries, cr.problems);
  rmq_broker_close(b);
  return rc == RMQ_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
  if (argc >= 4 && !strcmp(argv[1], "pack")) return cmd_pack(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 0);
  if (argc == 4 && !strcmp(argv[1], "unpack")) return cmd_unpack(argv[2], argv[3]);
  if (argc >= 3 && !strcmp(argv[1], "small")) return cmd_small(argv[2], argc > 3 && !strcmp(argv[3], "crash"),
                                                      argc > 3 && !strcmp(argv[argc - 1], "tiny"));
  if (argc >= 3 && !strcmp(argv[1], "rocketmq")) return cmd_rocketmq(argv[2], argc > 3 && !strcmp(argv[3], "crash"));
  if (argc == 5 && !strcmp(argv[1], "records")) return cmd_records(argv[2], argv[3], atoi(argv[4]));
  if (argc == 3 && !strcmp(argv[1], "record-extra")) return cmd_record_extra(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "check")) return cmd_check(argv[2]);
  fprintf(stderr, "usage: see the comment atop fuzz/mkseeds.c\n");
  return 2;
}
