/*
** rmq_store.c -- the store: CommitLog, ConsumeQueues, checkpoint, lock and
** abort files, config files, flushing, crash recovery, and the OS layer every
** file call goes through. It knows nothing of producers, consumers or groups:
** the core (rmq.c) hands it encoded records and reads units and records back.
**
** On-disk format (RocketMQ's, byte for byte; all integers big-endian)
** =================================================================
**
** <store>/commitlog/<20-digit start offset>     (store/CommitLog.java)
**   Files of mapped_file_size_commit_log bytes, created sparse (ftruncate),
**   each named by the physical offset of its first byte. Records are packed
**   from offset 0; no record spans two files. A record (v1, IPv4 hosts):
**     @0  TOTALSIZE        i32  whole record, = 91 + body + topic + props
**     @4  MAGICCODE        u32  0xDAA320A7 (v1); 0xDAA320AB (v2, i16 topic len)
**     @8  BODYCRC          i32  CRC-32/IEEE of the body & 0x7FFFFFFF
**     @12 QUEUEID          i32
**     @16 FLAG             i32  the user's flag
**     @20 QUEUEOFFSET      i64  index in the ConsumeQueue (0 for prepared/rollback)
**     @28 PHYSICALOFFSET   i64  this record's own CommitLog offset
**     @36 SYSFLAG          i32  0x4/0x8/0xC tx type, 0x10/0x20 IPv6 hosts, ...
**     @40 BORNTIMESTAMP    i64  ms
**     @48 BORNHOST         4+4  IPv4 address, i32 port (IPv6: 16+4)
**     @56 STORETIMESTAMP   i64  ms, set under the append lock
**     @64 STOREHOST        4+4
**     @72 RECONSUMETIMES   i32
**     @76 PREPARED_TX_OFF  i64
**     @84 BODYLEN i32, BODY; TOPICLEN i8 (v1, read signed), TOPIC;
**         PROPLEN i16, PROPERTIES ("name\1value\2" per pair, trailing \2)
**   End of file: when a record does not fit with 8 bytes to spare, an 8-byte
**   BLANK record [TOTALSIZE = bytes left][0xCBD43194] fills the file's end and
**   the record starts the next file.
**   A record is valid when its magic is v1/v2, its field lengths add up to
**   TOTALSIZE, it lies inside its file, PHYSICALOFFSET equals its position,
**   and (check_crc_on_recover) the body CRC matches.
**
** <store>/consumequeue/<topic>/<queueId>/<20-digit start byte offset>
**   (store/ConsumeQueue.java) Files of mapped_file_size_consume_queue bytes
**   (300000 units). Unit n (queue offset n) at byte n*20:
**     @0 commitlog offset i64 | @8 size i32 | @12 tags code i64
**   tags code = Java String.hashCode of TAGS, sign-extended (0: no tags).
**   A pad unit {0, INT32_MAX, 0} marks a queue that starts late.
**
** <store>/checkpoint  (store/StoreCheckpoint.java): 4096 bytes,
**   @0 physicMsgTimestamp (last record flushed to the CommitLog),
**   @8 logicsMsgTimestamp (last unit flushed to a ConsumeQueue),
**   @16 indexMsgTimestamp, @24 masterFlushedOffset, @32 confirmPhyOffset.
** <store>/lock   byte 0 write-locked while open (an fcntl open-file-
**   description lock, which RocketMQ's FileChannel.tryLock sees); holds "lock".
** <store>/abort  exists while open (holds the pid): found at open = crash.
** <store>/config/<name>.json  fastjson text, written atomically (temp, fsync,
**   rename, fsync dir; the previous file kept as .bak).
** <store>/config/rmq_topics.journal  rmq's own: one line per topic create
**   since topics.json was last written, {"topicName":..,"readQueueNums":..,
**   "writeQueueNums":..,"perm":..} and a newline, synced before the create
**   returns; replayed over topics.json at open. A cut last line is ignored.
** <store>/config/rmq_queues.txt  rmq's own, written at a clean close:
**   "rmq-queues 1 <first CommitLog offset> <end> <ConsumeQueue file size>
**   <CommitLog file count>", then per queue with files "topic TAB qid TAB
**   min TAB max TAB first file index TAB file count". Used by the next open
**   only when no abort file exists and the CommitLog is as it says.
**
** Invariants
**   - Readers see only published records: a ConsumeQueue's max offset and the
**     CommitLog's published end are stored with release order after the bytes
**     they cover, and read with acquire order.
**   - No ConsumeQueue unit points past the last whole CommitLog record
**     (recovery drops those that would).
**   - CommitLog files are unmapped only at close, so views handed out stay
**     valid while the store is open. ConsumeQueue files are mapped while in
**     use and unmapped when idle (holding append_lock and the queue's stripe
**     lock); readers copy units out, so no pointer into them escapes.
**   - Nothing is stored through a mapping at or past a file's `alloc` (its
**     allocated prefix): a full disk is an error from fallocate, not SIGBUS.
**
** Recovery (store/DefaultMessageStore.java, CommitLog.recover*)
**   Clean close with a valid rmq_queues.txt: nothing is rescanned; every
**   ConsumeQueue file it lists is stat'ed. Otherwise:
**   Clean close (no abort file): rescan the last 3 CommitLog files, checking
**   each record and that its ConsumeQueue unit exists (rewriting it if not).
**   Crash: rescan from the newest file whose first record was stored before
**   the checkpoint's flushed time (minus 3 s), likewise. A ConsumeQueue that
**   is missing, has a gap or a short file, or whose last unit does not match
**   its record is rebuilt by rescanning the whole CommitLog. The CommitLog is
**   cut at the first bad record (everything after it is dropped, as RocketMQ
**   does) and units pointing past the cut are removed. What was done is in
**   rmq_recovery_info and the log.
*/
#include "rmq_int.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels answer EINVAL, harmlessly */
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* ======================================================================= */
/* OS layer                                                                */
/* ======================================================================= */

static int os_open(const char *p, int f, mode_t m) { return open(p, f | O_CLOEXEC, m); }
static int os_mkdir(const char *p, mode_t m) { return mkdir(p, m); }

/* Blocks for [off, off + len), so that a later store through a mapping
** never meets an unallocated block (SIGBUS on a full disk): ENOSPC comes
** back here instead. posix_fallocate returns its error; the table's
** convention is -1 and errno. */
static int os_fallocate(int fd, off_t off, off_t len)
{
  int e = posix_fallocate(fd, off, len);
  if (e == 0) return 0;
  errno = e;
  return -1;
}

/* RocketMQ locks byte 0 of <store>/lock with FileChannel.tryLock, a POSIX
** record lock. An open-file-description lock on the same byte conflicts with
** it (and, unlike a POSIX lock, with a second open in this process too); a
** flock would not see it at all. */
static int os_lock(int fd)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
#ifdef F_OFD_SETLK
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
  if (errno != EINVAL) return -1;
#endif
  return fcntl(fd, F_SETLK, &fl);
}

static const rmqi_os os_default = {
  os_open, close, ftruncate, fstat, mmap, munmap, fdatasync, fsync, msync,
  pwrite, pread, rename, unlink, rmdir, os_mkdir, os_lock, os_fallocate, lseek, statvfs, futimens,
};
RMQI_DATA rmqi_os rmqi_os_table = {
  os_open, close, ftruncate, fstat, mmap, munmap, fdatasync, fsync, msync,
  pwrite, pread, rename, unlink, rmdir, os_mkdir, os_lock, os_fallocate, lseek, statvfs, futimens,
};
#define OS (&rmqi_os_table)

RMQI_FUNC void rmqi_os_reset(void) { rmqi_os_table = os_default; }

/* ======================================================================= */
/* Encodings: CRC-32, Java String.hashCode, UTF-8                          */
/* ======================================================================= */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RMQ_CRC_CLMUL 1
static int crc_have_clmul; /* set once by crc_init */
#endif

static void crc_init(void)
{
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_tab[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
#ifdef RMQ_CRC_CLMUL
  __builtin_cpu_init();
  crc_have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") && !getenv("RMQ_NO_CLMUL");
#endif
}

#ifdef RMQ_CRC_CLMUL
/* CRC-32 by carry-less multiplication (Gopal et al., Intel 2009, "Fast CRC
** computation for generic polynomials using PCLMULQDQ"), for the reflected
** polynomial 0xEDB88320: fold 64 bytes at a time, then 16, then reduce 128
** bits to 32 with a Barrett step. len >= 64 and a multiple of 16; c is the
** running (not inverted) register. The constants are x^n mod P for the
** fold distances, P itself and floor(x^64 / P). */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_clmul(uint32_t c, const uint8_t *p, size_t len)
{
  const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596ll, 0x154442bd4ll);
  const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009ell, 0x1751997d0ll);
  const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124ll);
  const __m128i poly_u = _mm_set_epi64x(0x1f7011641ll, 0x1db710641ll);
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  __m128i x1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)c));
  __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
  __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
  __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
  p += 64;
  len -= 64;
#define FOLD(x, k, next) \
  _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next)
  while (len >= 64) {
    x1 = FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)p));
    x2 = FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
    x3 = FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
    x4 = FOLD(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
    p += 64;
    len -= 64;
  }
  x1 = FOLD(x1, k3k4, x2);
  x1 = FOLD(x1, k3k4, x3);
  x1 = FOLD(x1, k3k4, x4);
  while (len >= 16) {
    x1 = FOLD(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
    p += 16;
    len -= 16;
  }
#undef FOLD
  /* 128 -> 64 bits, then 64 -> 32, then Barrett. */
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(k3k4, x1, 0x01));
  x2 = _mm_and_si128(x1, mask32);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(x2, k5, 0x00));
  x2 = _mm_and_si128(x1, mask32);
  x2 = _mm_and_si128(_mm_clmulepi64_si128(x2, poly_u, 0x10), mask32);
  x2 = _mm_clmulepi64_si128(x2, poly_u, 0x00);
  x1 = _mm_xor_si128(x1, x2);
  return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

/* Slicing-by-8 (zlib's CRC-32 without depending on zlib), with the
** carry-less multiply above for the bulk of long buffers where the CPU has it. */
RMQI_FUNC uint32_t rmqi_crc32(const void *buf, size_t len)
{
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = buf;
  uint32_t c = 0xFFFFFFFFu;
#ifdef RMQ_CRC_CLMUL
  if (len >= 64 && crc_have_clmul) {
    size_t bulk = len & ~(size_t)15;
    c = crc32_clmul(c, p, bulk);
    p += bulk;
    len -= bulk;
  }
#endif
  while (len >= 8) {
    uint32_t a = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
    c = crc_tab[7][a & 0xff] ^ crc_tab[6][(a >> 8) & 0xff] ^ crc_tab[5][(a >> 16) & 0xff] ^
        crc_tab[4][a >> 24] ^ crc_tab[3][b & 0xff] ^ crc_tab[2][(b >> 8) & 0xff] ^
        crc_tab[1][(b >> 16) & 0xff] ^ crc_tab[0][b >> 24];
    p += 8;
    len -= 8;
  }
  while (len--) c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* Decodes one UTF-8 code point; returns its length or 0 when malformed. */
static int utf8_next(const uint8_t *s, size_t len, uint32_t *cp)
{
  uint8_t c = s[0];
  if (c < 0x80) { *cp = c; return 1; }
  int n;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) { n = 2; v = c & 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { n = 3; v = c & 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { n = 4; v = c & 0x07; min = 0x10000; }
  else return 0;
  if ((size_t)n > len) return 0;
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return n;
}

RMQI_FUNC int rmqi_utf8_valid(const char *s, size_t len)
{
  const uint8_t *p = (const uint8_t *)s;
  size_t i = 0;
  uint32_t cp;
  while (i < len) {
    if (p[i] < 0x80) { i++; continue; }
    int n = utf8_next(p + i, len - i, &cp);
    if (!n) return 0;
    i += (size_t)n;
  }
  return 1;
}

/* Java's String.hashCode runs over UTF-16 code units, so code points above
** U+FFFF count as their two surrogates. Malformed bytes hash as U+FFFD, as
** Java's UTF-8 decoder would read them. */
RMQI_FUNC int32_t rmqi_jhash(const char *s, size_t len) { return rmqi_jhash_cont(0, s, len); }

/* Java's hashCode is a left fold: the hash of a + b goes on from a's. */
RMQI_FUNC int32_t rmqi_jhash_cont(int32_t h0, const char *s, size_t len)
{
  const uint8_t *p = (const uint8_t *)s;
  uint32_t h = (uint32_t)h0;
  size_t i = 0;
  while (i < len) {
    uint32_t cp;
    if (p[i] < 0x80) { h = 31 * h + p[i++]; continue; }
    int n = utf8_next(p + i, len - i, &cp);
    if (!n) { cp = 0xFFFD; n = 1; }
    i += (size_t)n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      h = 31 * h + (0xD800 + (cp >> 10));
      h = 31 * h + (0xDC00 + (cp & 0x3FF));
    } else {
      h = 31 * h + cp;
    }
  }
  return (int32_t)h;
}

/* ======================================================================= */
/* Records                                                                 */
/* ======================================================================= */

RMQI_FUNC int rmqi_record_decode(const uint8_t *buf, size_t avail, int check_crc, rmqi_record *r)
{
  if (avail < 8) return rmqi_err(RMQ_ECORRUPT, "record header truncated (%zu bytes left)", avail);
  r->total = rmqi_get32(buf);
  r->magic = rmqi_get32(buf + 4);
  if (r->magic == RMQI_MAGIC_BLANK) return RMQ_ENOTFOUND;
  if (r->magic != RMQI_MAGIC_V1 && r->magic != RMQI_MAGIC_V2)
    return rmqi_err(RMQ_ECORRUPT, "bad magic code 0x%08x", r->magic);
  if (r->total < 91 || r->total > avail)
    return rmqi_err(RMQ_ECORRUPT, "record size %u out of range (%zu bytes left)", r->total, avail);
  const uint8_t *p = buf + 8, *end = buf + r->total;
  r->body_crc = (int32_t)rmqi_get32(p); p += 4;
  r->queue_id = (int32_t)rmqi_get32(p); p += 4;
  r->flag = (int32_t)rmqi_get32(p); p += 4;
  r->queue_offset = (int64_t)rmqi_get64(p); p += 8;
  r->phys_offset = (int64_t)rmqi_get64(p); p += 8;
  r->sys_flag = (int32_t)rmqi_get32(p); p += 4;
  r->born_ts = (int64_t)rmqi_get64(p); p += 8;
  r->born_host_len = (r->sys_flag & RMQI_SYSFLAG_BORNHOST_V6) ? 16 : 4;
  r->store_host_len = (r->sys_flag & RMQI_SYSFLAG_STOREHOST_V6) ? 16 : 4;
  size_t fixed = 84 - 8 + (size_t)(r->born_host_len - 4) + (size_t)(r->store_host_len - 4);
  if ((size_t)(end - buf) < fixed + 8 + 4)
    return rmqi_err(RMQ_ECORRUPT, "record size %u too small for its hosts", r->total);
  r->born_host = p; p += r->born_host_len + 4;
  r->store_ts = (int64_t)rmqi_get64(p); p += 8;
  r->store_host = p; p += r->store_host_len + 4;
  r->reconsume_times = (int32_t)rmqi_get32(p); p += 4;
  r->prepared_tx_offset = (int64_t)rmqi_get64(p); p += 8;
  int32_t blen = (int32_t)rmqi_get32(p); p += 4;
  if (blen < 0 || blen > end - p) return rmqi_err(RMQ_ECORRUPT, "body length %d out of range", blen);
  r->body = p; r->body_len = blen; p += blen;
  int tlen;
  if (r->magic == RMQI_MAGIC_V1) {
    if (end - p < 1) return rmqi_err(RMQ_ECORRUPT, "record ends before its topic length");
    tlen = (int8_t)*p; p += 1;
  } else {
    if (end - p < 2) return rmqi_err(RMQ_ECORRUPT, "record ends before its topic length");
    tlen = (int16_t)rmqi_get16(p); p += 2;
  }
  if (tlen <= 0 || tlen > end - p) return rmqi_err(RMQ_ECORRUPT, "topic length %d out of range", tlen);
  r->topic = (const char *)p; r->topic_len = tlen; p += tlen;
  if (end - p < 2) return rmqi_err(RMQ_ECORRUPT, "record ends before its properties length");
  int plen = (int16_t)rmqi_get16(p); p += 2;
  if (plen < 0 || plen != end - p)
    return rmqi_err(RMQ_ECORRUPT, "fields take %td bytes but TOTALSIZE is %u", (p - buf) + plen, r->total);
  r->props = (const char *)p; r->props_len = plen;
  if (check_crc && (int32_t)(rmqi_crc32(r->body, (size_t)blen) & 0x7FFFFFFF) != r->body_crc)
    return rmqi_err(RMQ_ECORRUPT, "body CRC mismatch");
  return RMQ_OK;
}

/* After a crash the last records written may be torn: the disk kept some
** of their sectors and not others, and a CommitLog is written once over
** zeros, so what was not kept reads as zeros. The body CRC covers the body
** and the lengths cover the layout; zeros elsewhere in the header make the
** magic, a length or PHYSICALOFFSET wrong. Left: zeros in the topic or the
** properties, which no CRC covers. A topic never holds a NUL; properties
** always end with the 0x02 after their last pair, and a whole zeroed
** sector (64 NULs in a row is far beyond any real property) means a tear
** inside them. Returns what is wrong, or NULL. */
static const char *record_torn(const rmqi_record *r)
{
  if (memchr(r->topic, 0, (size_t)r->topic_len)) return "NUL bytes in the topic";
  if (r->props_len > 0 && r->props[r->props_len - 1] != 2) return "the properties do not end with 0x02";
  int run = 0;
  for (int i = 0; i < r->props_len; i++) {
    run = r->props[i] ? 0 : run + 1;
    if (run >= 64) return "a zeroed sector in the properties";
  }
  if (r->store_ts == 0) return "no store timestamp";
  return NULL;
}

/* RocketMQ's string2messageProperties: segments split on 0x02; kept when at
** least 3 bytes long with the first 0x01 neither first nor last; the last of
** duplicate names wins. */
RMQI_FUNC int rmqi_props_find(const char *props, size_t len, const char *name, size_t name_len,
                              const char **val, size_t *val_len)
{
  size_t i = 0;
  int found = 0;
  while (i < len) {
    const char *seg = props + i;
    const char *e = memchr(seg, 2, len - i);
    size_t slen = e ? (size_t)(e - seg) : len - i;
    if (slen >= 3) {
      const char *sep = memchr(seg, 1, slen);
      if (sep && sep > seg && sep < seg + slen - 1 && (size_t)(sep - seg) == name_len &&
          memcmp(seg, name, name_len) == 0) {
        *val = sep + 1;
        *val_len = slen - name_len - 1;
        found = 1; /* go on: in Java's map a later duplicate wins */
      }
    }
    i += slen + 1;
  }
  return found;
}

/* ======================================================================= */
/* JSON, for config files                                                   */
/* ======================================================================= */

typedef struct jp {
  const char *s, *e;
  int depth;
  int rc;
} jp;

static void jskip(jp *p)
{
  while (p->s < p->e && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static char *jstring(jp *p)
{
  rmqi_buf b = {0};
  p->s++; /* opening quote */
  while (p->s < p->e && *p->s != '"') {
    const char *run = p->s;
    while (p->s < p->e && *p->s != '"' && *p->s != '\\') p->s++;
    if (p->s > run) { /* plain characters, at once */
      rmqi_buf_add(&b, run, (size_t)(p->s - run));
      continue;
    }
    char c = *p->s++;
    if (c == '\\') {
      if (p->s >= p->e) break;
      c = *p->s++;
      switch (c) {
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'u': {
        if (p->e - p->s < 4) { p->rc = RMQ_ECORRUPT; rmqi_buf_free(&b); return NULL; }
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
          char h = *p->s++;
          v <<= 4;
          if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
          else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
          else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
          else { p->rc = RMQ_ECORRUPT; rmqi_buf_free(&b); return NULL; }
        }
        char u[4];
        int n;
        if (v < 0x80) { u[0] = (char)v; n = 1; }
        else if (v < 0x800) { u[0] = (char)(0xC0 | (v >> 6)); u[1] = (char)(0x80 | (v & 0x3F)); n = 2; }
        else { u[0] = (char)(0xE0 | (v >> 12)); u[1] = (char)(0x80 | ((v >> 6) & 0x3F)); u[2] = (char)(0x80 | (v & 0x3F)); n = 3; }
        rmqi_buf_add(&b, u, (size_t)n);
        continue;
      }
      default: break; /* \" \\ \/ */
      }
    }
    rmqi_buf_add(&b, &c, 1);
  }
  if (p->s >= p->e || b.oom) { p->rc = b.oom ? RMQ_ENOMEM : RMQ_ECORRUPT; rmqi_buf_free(&b); return NULL; }
  p->s++;
  if (!b.p) { b.p = rmqi_strdup(""); if (!b.p) p->rc = RMQ_ENOMEM; }
  return b.p;
}

static rmqi_json *jvalue(jp *p);

/* Object keys: quoted strings, or fastjson's bare integers. */
static char *jkey(jp *p)
{
  jskip(p);
  if (p->s < p->e && *p->s == '"') return jstring(p);
  const char *b = p->s;
  while (p->s < p->e && (*p->s == '-' || (*p->s >= '0' && *p->s <= '9'))) p->s++;
  if (p->s == b) { p->rc = RMQ_ECORRUPT; return NULL; }
  char *k = rmqi_malloc((size_t)(p->s - b) + 1);
  if (!k) { p->rc = RMQ_ENOMEM; return NULL; }
  memcpy(k, b, (size_t)(p->s - b));
  k[p->s - b] = 0;
  return k;
}

static rmqi_json *jcontainer(jp *p, rmqi_json *j, char close)
{
  rmqi_json **tail = &j->child;
  p->s++;
  jskip(p);
  if (p->s < p->e && *p->s == close) { p->s++; return j; }
  for (;;) {
    char *key = NULL;
    if (close == '}') {
      key = jkey(p);
      if (!key) return NULL;
      jskip(p);
      if (p->s >= p->e || *p->s != ':') { rmqi_strfree(key); p->rc = RMQ_ECORRUPT; return NULL; }
      p->s++;
    }
    rmqi_json *v = jvalue(p);
    if (!v) { rmqi_strfree(key); return NULL; }
    v->key = key;
    *tail = v;
    tail = &v->next;
    jskip(p);
    if (p->s < p->e && *p->s == ',') { p->s++; continue; }
    if (p->s < p->e && *p->s == close) { p->s++; return j; }
    p->rc = RMQ_ECORRUPT;
    return NULL;
  }
}

static rmqi_json *jvalue(jp *p)
{
  jskip(p);
  if (p->s >= p->e || ++p->depth > 64) { p->rc = RMQ_ECORRUPT; return NULL; }
  rmqi_json *j = rmqi_calloc(1, sizeof *j);
  if (!j) { p->rc = RMQ_ENOMEM; return NULL; }
  /* Link before filling so a failure frees it with its parent. */
  rmqi_json *res = j;
  char c = *p->s;
  if (c == '{') { j->type = RMQI_JOBJ; res = jcontainer(p, j, '}'); }
  else if (c == '[') { j->type = RMQI_JARR; res = jcontainer(p, j, ']'); }
  else if (c == '"') { j->type = RMQI_JSTR; j->str = jstring(p); if (!j->str) res = NULL; }
  else if (p->e - p->s >= 4 && !memcmp(p->s, "true", 4)) { j->type = RMQI_JBOOL; j->num = 1; j->inum = 1; p->s += 4; }
  else if (p->e - p->s >= 5 && !memcmp(p->s, "false", 5)) { j->type = RMQI_JBOOL; p->s += 5; }
  else if (p->e - p->s >= 4 && !memcmp(p->s, "null", 4)) { j->type = RMQI_JNULL; p->s += 4; }
  else if (c == '-' || (c >= '0' && c <= '9')) {
    char tmp[64];
    size_t n = 0;
    while (p->s < p->e && n < sizeof tmp - 1 && strchr("+-0123456789.eE", *p->s)) tmp[n++] = *p->s++;
    tmp[n] = 0;
    j->type = RMQI_JNUM;
    j->num = strtod(tmp, NULL);
    j->inum = strtoll(tmp, NULL, 10);
  } else { p->rc = RMQ_ECORRUPT; res = NULL; }
  p->depth--;
  if (!res) { rmqi_json_free(j); return NULL; }
  return j;
}

RMQI_FUNC rmqi_json *rmqi_json_parse(const char *text, size_t len, int *rc)
{
  jp p = {text, text + len, 0, RMQ_OK};
  rmqi_json *j = jvalue(&p);
  if (j) {
    jskip(&p);
    if (p.s != p.e) { rmqi_json_free(j); j = NULL; p.rc = RMQ_ECORRUPT; }
  }
  if (!j && p.rc == RMQ_OK) p.rc = RMQ_ECORRUPT;
  *rc = j ? RMQ_OK : p.rc;
  return j;
}

RMQI_FUNC void rmqi_json_free(rmqi_json *j)
{
  while (j) {
    rmqi_json *n = j->next;
    rmqi_json_free(j->child);
    rmqi_strfree(j->key);
    rmqi_strfree(j->str);
    rmqi_free(j, sizeof *j);
    j = n;
  }
}

RMQI_FUNC const rmqi_json *rmqi_json_get(const rmqi_json *obj, const char *key)
{
  if (!obj || obj->type != RMQI_JOBJ) return NULL;
  for (const rmqi_json *c = obj->child; c; c = c->next)
    if (c->key && !strcmp(c->key, key)) return c;
  return NULL;
}

static void buf_reserve(rmqi_buf *b, size_t extra)
{
  if (b->oom || b->len + extra + 1 <= b->cap) return;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < b->len + extra + 1) ncap *= 2;
  char *np = rmqi_realloc(b->p, b->cap, ncap);
  if (!np) { b->oom = 1; return; }
  b->p = np;
  b->cap = ncap;
}

RMQI_FUNC void rmqi_buf_puts(rmqi_buf *b, const char *s)
{
  size_t n = strlen(s);
  buf_reserve(b, n);
  if (b->oom) return;
  memcpy(b->p + b->len, s, n + 1);
  b->len += n;
}

RMQI_FUNC void rmqi_buf_add(rmqi_buf *b, const void *p, size_t n)
{
  buf_reserve(b, n);
  if (b->oom) return;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
}

RMQI_FUNC void rmqi_buf_printf(rmqi_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  buf_reserve(b, (size_t)n);
  if (b->oom) return;
  if ((size_t)n < sizeof tmp) {
    memcpy(b->p + b->len, tmp, (size_t)n + 1);
  } else {
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  b->len += (size_t)n;
}

RMQI_FUNC void rmqi_buf_json_str(rmqi_buf *b, const char *s)
{
  rmqi_buf_puts(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') rmqi_buf_printf(b, "\\%c", c);
    else if (c < 0x20) rmqi_buf_printf(b, "\\u%04x", c);
    else rmqi_buf_printf(b, "%c", c);
  }
  rmqi_buf_puts(b, "\"");
}

RMQI_FUNC void rmqi_buf_free(rmqi_buf *b)
{
  rmqi_free(b->p, b->cap);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ======================================================================= */
/* Mapped files and grow-only vectors of them                              */
/* ======================================================================= */

typedef struct mfile {
  int64_t start;  /* offset of byte 0 (file name) */
  int64_t size;
  uint8_t *base;
  int fd;
  int64_t ro_upto; /* bytes remapped read-only (see seal); flush leader / cq_flush_lock */
  int huge;        /* mapped 2 MiB-aligned with MADV_HUGEPAGE (map_file) */
  /* Bytes from the file's start whose blocks are allocated: nothing is
  ** stored through the mapping at or past it (a store into a hole of a
  ** full disk is SIGBUS, not an error). Raised under alloc_lock. */
  _Atomic int64_t alloc;
  /* ConsumeQueue files are mapped while in use and unmapped when idle (a
  ** store of 80,000 queues cannot hold a descriptor and a mapping for each):
  ** base NULL and fd -1 while unmapped. Mapping state is guarded by the
  ** owning queue's stripe lock (cq_lock); `slot` is its index in the store's
  ** list of mapped files (lru_lock), `used` the CLOCK bit. A mapped
  ** ConsumeQueue file keeps no descriptor (fd -1): allocation and sync open
  ** one for the call. */
  const char *dir;
  struct rmqi_queue *owner;
  int slot;
  atomic_int used;
  /* CommitLog files: 1 for the store while the file is live, plus one per
  ** reader holding a view into it (RocketMQ's MappedFile hold/release).
  ** Retention drops the store's; whoever drops the last unmaps it. Never
  ** raised from 0. ConsumeQueue files: `gone` once deleted (retention or
  ** topic deletion), under the stripe lock; the struct stays until close. */
  atomic_int refs;
  int gone;
  /* CommitLog files: when last written, on the broker's clock (retention's
  ** "last modified"): the file's mtime at open, the roll time after. */
  _Atomic int64_t last_ts;
} mfile;

/* CommitLog pages are allocated and prefaulted in chunks of CL_CHUNK, a
** huge folio: the first store into a folio makes the file system reserve
** blocks for all of it (page_mkwrite), so a chunk must never be smaller or
** a full disk could answer with SIGBUS. Written pages of a mapping without
** huge folios are sealed read-only in chunks of SEAL_CHUNK (see seal). */
#define HUGE_BYTES (2 << 20)
#define CL_CHUNK HUGE_BYTES
#define CL_MAX_OFFSET (INT64_C(1) << 61) /* above any offset a store reaches */
#define SEAL_CHUNK (64 << 10)
/* The prefaulter keeps a window of about 20 ms of the current send rate
** faulted in ahead, between these bounds: a folio populated ahead is dirty
** (zeros), and one that waits long enough is written out as zeros before
** its data, so a slow sender gets the small window. */
#define PREFAULT_MIN (2 * CL_CHUNK)
#define PREFAULT_MAX (8 * CL_CHUNK)
#define PREFAULT_RATE_US 20000
#define CQ_CHUNK (64 << 10)

/* A vector readers walk without a lock: the writer (holding the owner's
** lock) publishes the array before the count, and an outgrown array is kept
** (chained through slot 0) until close, so a reader's copy stays valid. */
typedef struct mvec {
  _Atomic(mfile **) v;
  atomic_int n;
  int cap;
  mfile **chain; /* newest allocation, slot 0 links to the previous one */
} mvec;

static int mvec_push(mvec *m, mfile *f)
{
  int n = atomic_load_explicit(&m->n, memory_order_relaxed);
  if (n == m->cap) {
    int ncap = m->cap ? m->cap * 2 : 8;
    mfile **blk = rmqi_calloc((size_t)ncap + 1, sizeof *blk);
    if (!blk) return rmqi_err(RMQ_ENOMEM, "out of memory growing a file list");
    blk[0] = (mfile *)(void *)m->chain;
    mfile **old = atomic_load_explicit(&m->v, memory_order_relaxed);
    if (n) memcpy(blk + 1, old, (size_t)n * sizeof *blk);
    m->chain = blk;
    m->cap = ncap;
    atomic_store_explicit(&m->v, blk + 1, memory_order_release);
  }
  atomic_load_explicit(&m->v, memory_order_relaxed)[n] = f;
  atomic_store_explicit(&m->n, n + 1, memory_order_release);
  return RMQ_OK;
}

static inline mfile *mvec_at(mvec *m, int64_t i)
{
  int n = atomic_load_explicit(&m->n, memory_order_acquire);
  if (i < 0 || i >= n) return NULL;
  return atomic_load_explicit(&m->v, memory_order_acquire)[i];
}

static inline int mvec_len(mvec *m) { return atomic_load_explicit(&m->n, memory_order_acquire); }

static void mfile_close(mfile *f)
{
  if (!f) return;
  if (f->base) OS->munmap(f->base, (size_t)f->size);
  if (f->fd >= 0) OS->close(f->fd);
  rmqi_free(f, sizeof *f);
}

static void mvec_free(mvec *m)
{
  int n = mvec_len(m);
  for (int i = 0; i < n; i++) mfile_close(mvec_at(m, i));
  mfile **blk = m->chain;
  int cap = m->cap;
  while (blk) {
    mfile **prev = (mfile **)(void *)blk[0];
    rmqi_free(blk, ((size_t)cap + 1) * sizeof *blk);
    blk = prev;
    cap /= 2;
  }
  memset(m, 0, sizeof *m);
}

static int fsync_dir(const char *dir)
{
  int fd = OS->open(dir, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return rmqi_errno(errno, "open", dir);
  int rc = RMQ_OK;
  if (OS->fsync(fd) != 0) rc = rmqi_errno(errno, "fsync", dir);
  OS->close(fd);
  return rc;
}

/* A unit that does not lead to its own record was damaged after a clean
** close (nothing rescans it then), or a queue's head files were lost: the
** marker makes the next open rebuild every queue from the CommitLog; an
** open removes it once a rebuild is durable. */
#define REBUILD_MARK "consumequeue.rebuild"

static int mark_rebuild(const char *store_dir)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/" REBUILD_MARK, store_dir);
  int fd = OS->open(path, O_WRONLY | O_CREAT, 0644);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  int rc = OS->fsync(fd) != 0 ? rmqi_errno(errno, "fsync", path) : RMQ_OK;
  OS->close(fd);
  return rc ? rc : fsync_dir(store_dir);
}


/* Creates path and its missing parents; each directory it creates has its
** parent fsynced, so the new entry survives a power cut. */
static int mkdir_p(const char *path)
{
  char tmp[4096];
  size_t n = strlen(path);
  if (n >= sizeof tmp) return rmqi_err(RMQ_EINVAL, "path too long: %s", path);
  memcpy(tmp, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] == '/' || tmp[i] == 0) {
      char c = tmp[i];
      tmp[i] = 0;
      if (OS->mkdir(tmp, 0755) == 0) {
        char parent[4096];
        memcpy(parent, tmp, i + 1);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) *slash = 0;
        else snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        int rc = fsync_dir(parent);
        if (rc) return rc;
      } else if (errno != EEXIST) {
        return rmqi_errno(errno, "mkdir", tmp);
      }
      tmp[i] = c;
    }
  }
  return RMQ_OK;
}

/* Maps fd's first `size` bytes shared, read-write. huge: at a 2 MiB-aligned
** address with MADV_HUGEPAGE, so that the page cache can hold the file in
** 2 MiB folios each mapped by one page-table entry. On this VM the first
** store into every 4 KiB page table entry exits to the hypervisor (~5 us),
** which MADV_RANDOM (one entry per page) made 56% of a send (DESIGN.md 10).
** *got says whether the advice took; without it (a kernel or file system
** with no large folios for files) the mapping gets no advice at all. */
static void *map_file(int fd, int64_t size, int huge, int *got)
{
  *got = 0;
  if (!huge || size < HUGE_BYTES) return OS->mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  /* Reserve address space with room to align, then place the file in it. */
  size_t span = (size_t)size + HUGE_BYTES;
  uint8_t *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return OS->mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  uint8_t *a = (uint8_t *)(((uintptr_t)r + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
  void *p = OS->mmap(a, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    munmap(r, span);
    return MAP_FAILED;
  }
  if (a > r) munmap(r, (size_t)(a - r));
  if (r + span > a + size) munmap(a + size, (size_t)(r + span - (a + size)));
  *got = madvise(p, (size_t)size, MADV_HUGEPAGE) == 0;
  return p;
}

/* Opens (create: creates sparse) the file dir/<20 digits of start> of `size`
** bytes and maps it shared. A created file's directory entry is fsynced
** (unless sync_dir is 0: the caller has the next flush do it) so a send that
** lands in it is durable with its name. */
/* A file's mtime in ms; any time a filesystem holds (touch can set one past
** year 292 million) stays in range. */
static int64_t mtime_ms(const struct stat *st)
{
  int64_t sec = (int64_t)st->st_mtim.tv_sec, lim = INT64_MAX / 1000 - 1;
  return (sec > lim ? lim : sec < -lim ? -lim : sec) * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static int mfile_open(const char *dir, int64_t start, int64_t size, int create, int sync_dir, int huge, mfile **out)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, dir, start);
  int rc = RMQ_OK;
  mfile *f = rmqi_calloc(1, sizeof *f);
  if (!f) return rmqi_err(RMQ_ENOMEM, "out of memory opening %s", path);
  const int ro = create < 0; /* a read-only open: map what is there, change nothing */
  if (ro) create = 0;
  f->fd = -1;
  f->start = start;
  f->size = size;
  f->fd = OS->open(path, ro ? O_RDONLY : O_RDWR | (create ? O_CREAT : 0), 0644);
  if (f->fd < 0) { rc = rmqi_errno(errno, "open", path); goto out_free; }
  struct stat st;
  if (OS->fstat(f->fd, &st) != 0) { rc = rmqi_errno(errno, "fstat", path); goto out_close; }
  if (ro) {
    /* A short file is mapped as long as it is: reading past its end is SIGBUS. */
    if (st.st_size < size) f->size = size = (int64_t)st.st_size & ~(int64_t)7;
    void *rp = size > 0 ? OS->mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, f->fd, 0) : MAP_FAILED;
    if (size > 0 && rp == MAP_FAILED) { rc = rmqi_errno(errno, "mmap", path); goto out_close; }
    if (size == 0) { rc = rmqi_err(RMQ_ECORRUPT, "%s is empty", path); goto out_close; }
    f->base = rp;
    atomic_store(&f->refs, 1);
    atomic_store(&f->last_ts, mtime_ms(&st));
    *out = f;
    return RMQ_OK;
  }
  if (st.st_size != size) {
    if (!create && st.st_size > size) {
      rc = rmqi_err(RMQ_ECORRUPT, "%s: %lld bytes, expected %lld", path, (long long)st.st_size, (long long)size);
      goto out_close;
    }
    if (OS->ftruncate(f->fd, size) != 0) { rc = rmqi_errno(errno, "ftruncate", path); goto out_close; }
    /* The size durable before the name is: a power cut must not leave a
    ** named file of 0 bytes before whole ones (an open refuses a short
    ** CommitLog file that is not the last). Metadata only, once a file. */
    if (OS->fsync(f->fd) != 0) { rc = rmqi_errno(errno, "fsync", path); goto out_close; }
  }
  void *p = map_file(f->fd, size, huge, &f->huge);
  if (p == MAP_FAILED) { rc = rmqi_errno(errno, "mmap", path); goto out_close; }
  f->base = p;
  atomic_store(&f->refs, 1);
  /* A file made now ages from its roll (the writer sets it, on the broker's
  ** clock); one found, from its mtime. */
  atomic_store(&f->last_ts, create && st.st_size == 0 ? INT64_MAX / 4
                                                      : mtime_ms(&st));
  if (create && sync_dir && st.st_size == 0) {
    rc = fsync_dir(dir);
    if (rc) goto out_unmap;
  }
  *out = f;
  return RMQ_OK;
out_unmap:
  OS->munmap(f->base, (size_t)size);
out_close:
  OS->close(f->fd);
out_free:
  rmqi_free(f, sizeof *f);
  return rc;
}

/* Zeroes f from byte `from` to its end: shrink and regrow the file, so the
** tail becomes a hole instead of dirty pages. */
static int mfile_zero_from(const char *dir, mfile *f, int64_t from)
{
  if (from >= f->size) return RMQ_OK;
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, dir, f->start);
  if (OS->ftruncate(f->fd, from) != 0 || OS->ftruncate(f->fd, f->size) != 0)
    return rmqi_errno(errno, "ftruncate", path);
  /* Durable now: open syncs only what recovery changed, not the whole log. */
  if (OS->fsync(f->fd) != 0) return rmqi_errno(errno, "fsync", path);
  atomic_store(&f->alloc, from);
  if (f->ro_upto > from) f->ro_upto = from & ~(int64_t)(SEAL_CHUNK - 1);
  return RMQ_OK;
}

static int mfile_sync(const char *dir, mfile *f)
{
  if (OS->fdatasync(f->fd) == 0) return RMQ_OK;
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, dir, f->start);
  return rmqi_errno(errno, "fdatasync", path);
}

/* Makes sure the blocks of f's first `need` bytes are allocated, allocating
** in steps of `step` (never past the file's end). alloc_lock serialises the
** prefaulter and senders; the common case reads one atomic. */
static int mfile_reserve(rmqi_store *s, const char *dir, mfile *f, int64_t need, int64_t step);

/* Lists the 20-digit file names of dir, sorted; RMQ_OK with *n = 0 when the
** directory does not exist. */
static int list20(const char *dir, int64_t **starts, int *n)
{
  *starts = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? RMQ_OK : rmqi_errno(errno, "opendir", dir);
  int cap = 0, rc = RMQ_OK;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strlen(e->d_name) != 20 || strspn(e->d_name, "0123456789") != 20) continue;
    if (*n == cap) {
      int ncap = cap ? cap * 2 : 16;
      int64_t *ns = rmqi_realloc(*starts, (size_t)cap * sizeof **starts, (size_t)ncap * sizeof **starts);
      if (!ns) { rc = rmqi_err(RMQ_ENOMEM, "out of memory listing %s", dir); break; }
      *starts = ns;
      cap = ncap;
    }
    (*starts)[(*n)++] = strtoll(e->d_name, NULL, 10);
  }
  closedir(d);
  if (rc) { rmqi_free(*starts, (size_t)cap * sizeof **starts); *starts = NULL; *n = 0; return rc; }
  for (int i = 1; i < *n; i++)
    for (int j = i; j > 0 && (*starts)[j - 1] > (*starts)[j]; j--) {
      int64_t t = (*starts)[j]; (*starts)[j] = (*starts)[j - 1]; (*starts)[j - 1] = t;
    }
  return RMQ_OK;
}

static void list20_free(int64_t *starts, int n)
{
  RMQI_UNUSED(n);
  /* list20 grows by doubling from 16; freeing needs only the pointer with
  ** the default allocator, but the hook wants the size: recompute it. */
  int cap = 16;
  while (cap < n) cap *= 2;
  if (starts) rmqi_free(starts, (size_t)cap * sizeof *starts);
}

/* ======================================================================= */
/* Store, topics, queues                                                   */
/* ======================================================================= */

struct rmqi_queue {
  rmqi_topic *topic;
  int qid;
  char *dir;                 /* consumequeue/<topic>/<qid> */
  mvec cq;                   /* files; pushed under append_lock */
  int64_t first_file;        /* index (byte offset / file size) of cq.v[0] */
  int64_t next_offset;       /* append_lock: next queue offset to assign */
  _Atomic int64_t max_offset;  /* published end (release by the appender) */
  _Atomic int64_t min_offset;
  int64_t flushed_units;     /* cq_flush_lock: units known on disk */
  atomic_int dir_dirty;      /* a file was made: the next cq_flush fsyncs dir */
  atomic_int dir_made;       /* its directory exists (made or found) */
  atomic_int parents_dirty;  /* its directory was made: cq_flush fsyncs the topic's and the root */
  int rec_dirty;             /* open only: recovery rewrote units of this queue */
  int cq_dead;               /* cq_flush_lock: files at cq's head deleted by retention (gone) */
  /* The CommitLog offset of its newest unit, -1 unknown (not written since
  ** open): retention skips reading a queue whose every unit is below the
  ** log's new minimum. Written under append_lock. */
  _Atomic int64_t last_phys;
  /* append_lock: the file the last unit went to and its unit range
  ** [cur_lo, cur_hi), so the next unit's place needs no division. */
  struct mfile *cq_cur;
  int64_t cur_lo, cur_hi;
};

struct rmqi_topic {
  char name[256];
  size_t name_len;
  atomic_int nqueues;
  int perm;
  int configured;            /* its queue count is known: topics.json or created */
  atomic_int deleted;        /* rmqi_topic_delete: invisible, kept until close for its holders */
  rmqi_store *s;
  /* Its queue structs, sized to the queue count (a fixed array of the
  ** 1024 allowed would cost 8 KiB a topic: 80 MB for 10,000 topics).
  ** Grown under topic_lock; readers load it without a lock, so an
  ** outgrown array stays (chained through `prev`) until close. */
  _Atomic(struct qvec *) qv;
  rmqi_stat stat;            /* puts into it (any thread), sampled by the broker */
};

typedef struct qvec {
  int cap;
  struct qvec *prev;
  _Atomic(rmqi_queue *) q[];
} qvec;

struct rmqi_store {
  char *dir;
  char *cl_dir;
  char *cq_root;
  char *cfg_dir;
  rmq_broker_options o;
  const rmqi_env *env;
  int lock_fd;
  int64_t cl_size;           /* CommitLog file size */
  int cl_shift;              /* log2(cl_size) when a power of two, else -1 */
  int cq_size;               /* ConsumeQueue file size */

  /* append_lock: CommitLog write position, file creation, every queue's
  ** next_offset and ConsumeQueue file list. Taken after topic_lock, never
  ** held across a sync. */
  pthread_mutex_t append_lock;
  mvec cl;                   /* CommitLog files, pushed under append_lock */
  int64_t write_pos;         /* append_lock */
  _Atomic int64_t published; /* end of published records (release, appender) */
  _Atomic int64_t last_store_ts; /* store time of the newest published record */
  /* cl_base: the offset of cl's first entry, fixed while open (the file
  ** index is computed from it). min_phys: the first offset still stored,
  ** raised by retention; cl_dead files at cl's head are deleted (their
  ** structs stay until close: readers may hold them, see cl_pin). */
  int64_t cl_base;
  _Atomic int64_t min_phys;
  int cl_dead;
  /* messageDelayLevel, parsed at open: delay_ms[1..ndelay]. */
  int64_t delay_ms[RMQI_DELAY_LEVELS_MAX + 1];
  int ndelay;

  /* flush_lock: flushed is written under it, read anywhere. Never taken
  ** with append_lock held. Group commit: one sender at a time wins
  ** flush_leader and syncs for all; the others sleep on flush_gen, which
  ** the leader bumps after each sync (a futex: no mutex to hand round). */
  pthread_mutex_t flush_lock;
  atomic_int flush_leader;
  atomic_uint flush_gen;
  _Atomic int64_t flushed;
  _Atomic int64_t flushed_ts;  /* store time of the newest flushed record */
  atomic_int appending;        /* senders between enter and leave */
  atomic_int bad_unit_noted;   /* a reader met a unit that is not its record's */

  /* cq_flush_lock: periodic work (ConsumeQueue flush, checkpoint). */
  pthread_mutex_t cq_flush_lock;
  int64_t next_cl_flush, next_cq_flush, last_thorough;
  int64_t logics_ts;
  int cp_fd;

  /* topic_lock: topic table writes and topics.json. Lookups are lock-free:
  ** the table array is published with release and outgrown ones are kept.
  ** Taken before pf_lock and cq_flush_lock (a topic's deletion holds it
  ** while it removes the topic's files). */
  pthread_mutex_t topic_lock;
  _Atomic(rmqi_topic **) ttab;
  int tcap, tcount;
  void *tchain;
  int64_t topics_version;
  /* The topic journal (config/rmq_topics.journal), topic_lock: one synced
  ** line per create since topics.json was last written, so that N creates
  ** cost O(N) and not N rewrites of a growing topics.json. */
  int tj_fd;
  int64_t tj_size;
  int tj_count;

  /* Long polling: the sequence waiters watch is `published` plus wake_cnt
  ** (no counter of its own: a line written by every send on every core);
  ** they sleep on wake_word, which a publisher bumps and wakes only while
  ** `waiters` says someone sleeps (one futex call, no lock handed over). */
  /* The pads keep lines that every put reads apart from lines other threads
  ** write (the struct's own alignment is malloc's, so no _Alignas). */
  char pad0[64];
  atomic_uint_fast64_t wake_cnt; /* rmqi_store_wake calls: part of rmqi_store_seq */
  atomic_int waiters;
  atomic_uint wake_word;       /* futex word: bumped (and woken) when waiters > 0 */
  int membarrier;              /* waiters fence every thread (rmqi_store_wait); set at open */
  char pad1[64];
  int pf_running;              /* read by every put: apart from what the prefaulter writes */
  char pad2[64];

  /* The prefaulter (ASYNC_FLUSH with the service thread on): a thread that
  ** keeps CommitLog pages faulted in pf_window beyond the published
  ** end, creating the next file early as RocketMQ's AllocateMappedFileService
  ** does, so that senders only copy. pf_next is its own; pf_lock guards
  ** pf_stop and the sleep on pf_cond. */
  pthread_t pf_thread;
  int pf_stop;
  int64_t pf_next;
  _Atomic int64_t pf_upto;   /* faulted in up to here (prefaulter) */
  _Atomic int64_t pf_window; /* bytes to keep ahead (prefaulter; senders read it) */
  int64_t pf_rate_pos, pf_rate_us; /* prefaulter: published and the time at the last rate estimate */
  /* ASYNC_FLUSH: a CommitLog file was made whose directory entry the next
  ** flush must fsync (a directory fsync can take a journal commit, seconds on
  ** a busy disk: never under append_lock). */
  atomic_int cl_dir_dirty;
  pthread_mutex_t pf_lock;
  pthread_cond_t pf_cond;
  /* pf_lock: queues past half of their last ConsumeQueue file, whose next
  ** file the prefaulter makes ahead (creating a file can wait on the
  ** journal for a second; the sender must not, under append_lock). */
  rmqi_queue *cq_want[16];
  int ncq_want;
  rmqi_queue *pf_making;     /* pf_lock: the queue whose file is being made */
  struct { rmqi_queue *q; int64_t qoff; } cq_pf[32]; /* pf_lock: ConsumeQueue chunks to fault in */
  int ncq_pf;

  /* alloc_lock: raising any mapped file's `alloc` (block allocation ahead
  ** of stores through the mapping). Taken under append_lock or alone. */
  pthread_mutex_t alloc_lock;

  /* Mapped ConsumeQueue files. cq_locks: a queue's files' mapping state
  ** (striped by queue), after append_lock. lru_lock: the mapped[] list,
  ** innermost. At most max_mapped stay mapped; cq_evict unmaps idle ones by
  ** the CLOCK rule, holding append_lock so no sender is mid-write. */
  pthread_mutex_t cq_locks[64];
  pthread_mutex_t lru_lock;
  mfile **mapped;
  int nmapped_cap, hand;
  atomic_int nmapped;
  int max_mapped;

  /* The checkpoint as found at open: its fields never move backwards. */
  int64_t cp_old[5];
  int cl_last_short;         /* open: the last CommitLog file was found short */

  /* The disk-full mark (RocketMQ's diskSpaceWarningLevelRatio): set and
  ** cleared by disk_check, read by every put. */
  atomic_int disk_full;
  atomic_int disk_used_pct;
  /* Set for good by a failed sync of a store file: the
  ** pages it covered may be gone from the disk while the page cache calls
  ** them clean, so no later sync may be taken to cover them. Sends, flushes
  ** and the checkpoint stop; reads go on; close leaves `abort`, so the next
  ** open recovers from what the disk really holds. */
  atomic_int failed;
  char failed_why[512];
  int64_t next_disk_check;   /* cq_flush_lock */
  /* Retention: deleteWhen as a bit per hour; the CommitLog minimum the
  ** ConsumeQueues were last cleaned against (cq_flush_lock). */
  uint32_t delete_hours;
  int64_t cq_clean_min;
  rmqi_topic *rec_topic;     /* open: the topic of the last record recovery dispatched */
  /* Deleted topics (topic_lock), config/rmq_deleted_topics.txt: the
  ** records of `name` before CommitLog offset `phys` are gone (recovery
  ** and delayed delivery skip them); `version` is the topics.json counter
  ** that says the topic is gone from it. */
  struct tomb { char name[256]; int64_t phys, version; } *tombs;
  int ntombs, tombcap;
  atomic_int has_tombs;
  int64_t topics_loaded_version;

  rmqi_stat put_stat;          /* every record put */
  rmq_recovery_info rinfo;
  int64_t scan_from;          /* where an open after a crash began its scan, else -1 */

  /* The key index (see "The key index"). idx_lock: the index files and
  ** where indexing stands; taken after cq_flush_lock, never with
  ** append_lock. Records from idx_pos on are not indexed yet; one below
  ** idx_skip never is (it was before the open). */
  char *ix_dir;
  pthread_mutex_t idx_lock;
  struct ixfile **ix;
  int nix, ixcap;
  int64_t idx_pos, idx_skip;
  int ix_ro_last;             /* the newest file has another geometry: the next key starts a file */
  int64_t ix_geo[8][2];       /* geometries (slots, entries) index files were made with */
  int nix_geo;
  atomic_int ix_failing;      /* the last attempt to index failed (logged once) */
  int ix_opening;             /* the open's flush: sync the index, do not index */
  _Atomic int64_t ix_retry_us; /* run_due retries no sooner (monotonic us) */
  _Atomic int64_t idx_done;   /* idx_pos, for readers without the lock */
  _Atomic int64_t ix_cp_ts;   /* the checkpoint's indexMsgTimestamp: end of the last full file synced */
  pthread_t ix_thread;
  int ix_running, ix_stop;
  pthread_mutex_t ix_wait_lock;
  pthread_cond_t ix_cond;
};

static int store_failed_err(rmqi_store *s)
{
  return rmqi_err(RMQ_EIO, "the store %s is not writable since a sync failed (%s): what that sync covered may "
                  "not be on disk; close and reopen the broker to recover", s->dir, s->failed_why);
}

/* rc is the error of a sync of a store file (sync 1): marks the store
** failed (see rmqi_store.failed), once, and returns rc. With sync 0 only an
** EIO marks it. */
static int store_fail(rmqi_store *s, int rc, int sync)
{
  if (rc == RMQ_OK || (!sync && rc != RMQ_EIO)) return rc;
  char why[512];
  snprintf(why, sizeof why, "%s", rmq_errmsg());
  int was = 0;
  if (atomic_compare_exchange_strong(&s->failed, &was, 1)) {
    snprintf(s->failed_why, sizeof s->failed_why, "%s", why);
    rmqi_log(s->env, RMQ_LOG_ERROR, "store %s is no longer writable: %s (sends and flushes fail from now on; "
             "close and reopen to recover)", s->dir, why);
  }
  rmqi_err(rc, "%s", why); /* the caller's error stays the one it reports */
  return rc;
}


static int mfile_reserve(rmqi_store *s, const char *dir, mfile *f, int64_t need, int64_t step)
{
  if (need > f->size) need = f->size;
  if (atomic_load_explicit(&f->alloc, memory_order_acquire) >= need) return RMQ_OK;
  int rc = RMQ_OK;
  pthread_mutex_lock(&s->alloc_lock);
  int64_t have = atomic_load_explicit(&f->alloc, memory_order_relaxed);
  if (have < need) {
    int64_t to = (need + step - 1) / step * step;
    if (to > f->size) to = f->size;
    char path[4200];
    snprintf(path, sizeof path, "%s/%020" PRId64, dir, f->start);
    /* A mapped ConsumeQueue file keeps no descriptor: open one for this. */
    int fd = f->fd >= 0 ? f->fd : OS->open(path, O_RDWR, 0);
    if (fd < 0) rc = rmqi_errno(errno, "open", path);
    else if (OS->fallocate(fd, (off_t)have, (off_t)(to - have)) != 0) rc = rmqi_errno(errno, "fallocate", path);
    else atomic_store_explicit(&f->alloc, to, memory_order_release);
    if (fd >= 0 && fd != f->fd) OS->close(fd);
  }
  pthread_mutex_unlock(&s->alloc_lock);
  return rc;
}

/* ---- mapped ConsumeQueue files ------------------------------------------ */

static pthread_mutex_t *cq_lock(rmqi_store *s, const rmqi_queue *q)
{
  return &s->cq_locks[((uintptr_t)q >> 6) % (sizeof s->cq_locks / sizeof s->cq_locks[0])];
}

static int lru_add(rmqi_store *s, mfile *f)
{
  pthread_mutex_lock(&s->lru_lock);
  int n = atomic_load_explicit(&s->nmapped, memory_order_relaxed);
  if (n == s->nmapped_cap) {
    int ncap = n ? 2 * n : 256;
    mfile **nm = rmqi_realloc(s->mapped, (size_t)s->nmapped_cap * sizeof *nm, (size_t)ncap * sizeof *nm);
    if (!nm) { pthread_mutex_unlock(&s->lru_lock); return rmqi_err(RMQ_ENOMEM, "out of memory mapping a consume queue file"); }
    s->mapped = nm;
    s->nmapped_cap = ncap;
  }
  s->mapped[n] = f;
  f->slot = n;
  atomic_store_explicit(&s->nmapped, n + 1, memory_order_relaxed);
  pthread_mutex_unlock(&s->lru_lock);
  return RMQ_OK;
}

static void lru_remove(rmqi_store *s, mfile *f)
{
  pthread_mutex_lock(&s->lru_lock);
  int n = atomic_load_explicit(&s->nmapped, memory_order_relaxed) - 1;
  mfile *last = s->mapped[n];
  s->mapped[f->slot] = last;
  last->slot = f->slot;
  f->slot = -1;
  atomic_store_explicit(&s->nmapped, n, memory_order_relaxed);
  pthread_mutex_unlock(&s->lru_lock);
}

/* f's stripe lock held. Maps ConsumeQueue file f; `create` makes it (or
** extends a short one) first. */
static int cq_map(rmqi_store *s, mfile *f, int create)
{
  if (f->gone) return rmqi_err(RMQ_ENOTFOUND, "%s/%020" PRId64 ": deleted by retention", f->dir, f->start);
  if (f->base) {
    if (!atomic_load_explicit(&f->used, memory_order_relaxed)) atomic_store_explicit(&f->used, 1, memory_order_relaxed);
    return RMQ_OK;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
  int rc = RMQ_OK;
  const int ro = s->o.read_only;
  if (ro) create = 0;
  int fd = OS->open(path, ro ? O_RDONLY : O_RDWR | (create ? O_CREAT : 0), 0644);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  struct stat st;
  if (OS->fstat(fd, &st) != 0) { rc = rmqi_errno(errno, "fstat", path); goto out_close; }
  if (st.st_size != f->size) {
    if (!create || st.st_size > f->size) {
      rc = rmqi_err(RMQ_ECORRUPT, "%s: %lld bytes, expected %lld", path, (long long)st.st_size, (long long)f->size);
      goto out_close;
    }
    if (OS->ftruncate(fd, f->size) != 0) { rc = rmqi_errno(errno, "ftruncate", path); goto out_close; }
  }
  /* One 4 KiB page at a time, no readahead: 80,000 queues with a few
  ** messages each must not take 128 KiB of page cache each. Not huge folios
  ** either: a queue's units fill one in ~100,000 messages, and each lazy
  ** flush would write all 2 MiB of it (a unit is 1/200 of a 4 KiB page, so
  ** its page's first store costs a send little). */
  void *p = OS->mmap(NULL, (size_t)f->size, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) { rc = rmqi_errno(errno, "mmap", path); goto out_close; }
  madvise(p, (size_t)f->size, MADV_RANDOM);
  if ((rc = lru_add(s, f))) { OS->munmap(p, (size_t)f->size); goto out_close; }
  OS->close(fd); /* the mapping stays; a descriptor per queue would not fit the limit */
  f->ro_upto = 0;
  atomic_store_explicit(&f->used, 1, memory_order_relaxed);
  /* Published last: a sender (append_lock, no stripe lock) that sees it
  ** uses the mapping, which only an evictor holding append_lock removes. */
  __atomic_store_n(&f->base, (uint8_t *)p, __ATOMIC_RELEASE);
  return RMQ_OK;
out_close:
  OS->close(fd);
  return rc;
}

/* f's stripe lock and append_lock held (or single-threaded). */
static void cq_unmap(rmqi_store *s, mfile *f)
{
  if (!f->base) return;
  lru_remove(s, f);
  uint8_t *base = f->base;
  __atomic_store_n(&f->base, NULL, __ATOMIC_RELEASE);
  OS->munmap(base, (size_t)f->size);
}

/* Maps f under its stripe lock (single-threaded callers: recovery). */
static int cq_need_mode(rmqi_store *s, mfile *f, int create)
{
  pthread_mutex_t *l = cq_lock(s, f->owner);
  pthread_mutex_lock(l);
  int rc = cq_map(s, f, create);
  pthread_mutex_unlock(l);
  return rc;
}
static int cq_need_create(rmqi_store *s, mfile *f) { return cq_need_mode(s, f, 1); }

/* A ConsumeQueue file's struct, unmapped. */
static mfile *cq_file_new(rmqi_queue *q, int64_t start, int64_t size)
{
  mfile *f = rmqi_calloc(1, sizeof *f);
  if (!f) return NULL;
  f->start = start;
  f->size = size;
  f->fd = -1;
  f->slot = -1;
  f->dir = q->dir;
  f->owner = q;
  return f;
}

static void cq_file_free(rmqi_store *s, mfile *f)
{
  if (!f) return;
  if (f->owner && f->owner->cq_cur == f) f->owner->cq_cur = NULL;
  cq_unmap(s, f);
  rmqi_free(f, sizeof *f);
}

/* Unmaps idle ConsumeQueue files (CLOCK: a file used since the hand last
** passed gets another round) while more than max_mapped are mapped. Takes
** append_lock, so no sender holds a unit pointer: call with no store lock. */
static void cq_evict(rmqi_store *s)
{
  if (atomic_load_explicit(&s->nmapped, memory_order_relaxed) <= s->max_mapped) return;
  pthread_mutex_lock(&s->append_lock);
  int target = s->max_mapped - s->max_mapped / 8;
  int visits = 3 * atomic_load_explicit(&s->nmapped, memory_order_relaxed) + 16;
  while (atomic_load_explicit(&s->nmapped, memory_order_relaxed) > target && visits-- > 0) {
    pthread_mutex_lock(&s->lru_lock);
    int n = atomic_load_explicit(&s->nmapped, memory_order_relaxed);
    if (s->hand >= n) s->hand = 0;
    mfile *f = s->mapped[s->hand];
    int used = atomic_exchange_explicit(&f->used, 0, memory_order_relaxed);
    pthread_mutex_unlock(&s->lru_lock);
    if (used) { s->hand++; continue; }
    pthread_mutex_t *l = cq_lock(s, f->owner);
    pthread_mutex_lock(l);
    /* Unmapping moves the last slot into this one: the hand stays. */
    if (f->base && !atomic_load_explicit(&f->used, memory_order_relaxed)) cq_unmap(s, f);
    else s->hand++;
    pthread_mutex_unlock(l);
  }
  pthread_mutex_unlock(&s->append_lock);
}

/* Syncs ConsumeQueue file f, mapped or not (an unmapped file's written
** pages are still in the page cache: a descriptor of its own syncs them). */
static int cq_sync(rmqi_store *s, mfile *f)
{
  (void)s;
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
  int fd = OS->open(path, O_RDWR, 0);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  int rc = OS->fdatasync(fd) != 0 ? rmqi_errno(errno, "fdatasync", path) : RMQ_OK;
  OS->close(fd);
  return rc;
}

/* Makes q's directory (and its topic's) without syncing them: the next
** cq_flush syncs the three levels before the checkpoint says any unit in
** them is durable. append_lock held. */
static int cq_mkdirs(rmqi_store *s, rmqi_queue *q)
{
  if (atomic_load(&q->dir_made)) return RMQ_OK;
  char tdir[4200];
  snprintf(tdir, sizeof tdir, "%s/%s", s->cq_root, q->topic->name);
  if (OS->mkdir(tdir, 0755) != 0 && errno != EEXIST) return rmqi_errno(errno, "mkdir", tdir);
  if (OS->mkdir(q->dir, 0755) != 0 && errno != EEXIST) return rmqi_errno(errno, "mkdir", q->dir);
  atomic_store(&q->dir_made, 1);
  atomic_store(&q->parents_dirty, 1);
  return RMQ_OK;
}

/* Marks the store full when its file system is fuller than the warning
** level, and clears the mark when it is not (space was freed). Any thread. */
static void disk_check(rmqi_store *s)
{
  struct statvfs st;
  if (OS->statvfs(s->dir, &st) != 0 || st.f_blocks == 0) return;
  /* RocketMQ's getDiskPartitionSpaceUsedPercent: (total - free) / total,
  ** free counting the blocks reserved for root (File.getFreeSpace). */
  int pct = (int)(100.0 * (double)(st.f_blocks - st.f_bfree) / (double)st.f_blocks);
  int level = s->o.disk_space_warning_level_ratio;
  level = level < 35 ? 35 : level > 90 ? 90 : level;
  atomic_store(&s->disk_used_pct, pct);
  int full = pct > level;
  if (atomic_exchange(&s->disk_full, full) != full)
    rmqi_log(s->env, full ? RMQ_LOG_ERROR : RMQ_LOG_WARN, full ? "disk of %s is %d%% used, over %d%%: sends are refused"
             : "disk of %s is %d%% used, at or under %d%%: sends are accepted again", s->dir, pct, level);
}

static void set_cl_size(rmqi_store *s, int64_t size)
{
  s->cl_size = size;
  s->cl_shift = -1;
  if (size > 0 && (size & (size - 1)) == 0) s->cl_shift = __builtin_ctzll((unsigned long long)size);
}

/* The index of the CommitLog file holding phys. Every read of a record asks
** this; a 64-bit division costs more than the rest of the lookup. */
/* ASYNC_FLUSH stores through the mapping: huge folios. SYNC_FLUSH appends
** with pwrite and reads through the mapping: no advice (readahead for the
** readers), and no huge folios, whose msync would write 2 MiB a sync. */
static int cl_huge(const rmqi_store *s) { return s->o.flush_disk_type != RMQ_SYNC_FLUSH; }

static inline int64_t cl_index(const rmqi_store *s, int64_t phys)
{
  int64_t rel = phys - s->cl_base;
  return s->cl_shift >= 0 ? rel >> s->cl_shift : rel / s->cl_size;
}

RMQI_FUNC const char *rmqi_store_dir(rmqi_store *s) { return s->dir; }
RMQI_FUNC const char *rmqi_topic_name(const rmqi_topic *t) { return t->name; }
RMQI_FUNC int rmqi_topic_deleted(const rmqi_topic *t) { return atomic_load(&((rmqi_topic *)t)->deleted); }
RMQI_FUNC int rmqi_topic_nqueues(const rmqi_topic *t) { return atomic_load(&((rmqi_topic *)t)->nqueues); }
RMQI_FUNC rmqi_topic *rmqi_queue_topic(const rmqi_queue *q) { return q->topic; }
RMQI_FUNC int rmqi_queue_id(const rmqi_queue *q) { return q->qid; }
RMQI_FUNC int64_t rmqi_queue_min_offset(const rmqi_queue *q)
{
  return atomic_load_explicit(&((rmqi_queue *)q)->min_offset, memory_order_acquire);
}
RMQI_FUNC int64_t rmqi_queue_max_offset(const rmqi_queue *q)
{
  return atomic_load_explicit(&((rmqi_queue *)q)->max_offset, memory_order_acquire);
}
RMQI_FUNC rmqi_stat *rmqi_topic_stat(rmqi_topic *t) { return &t->stat; }
RMQI_FUNC rmqi_stat *rmqi_store_put_stat(rmqi_store *s) { return &s->put_stat; }

RMQI_FUNC void rmqi_store_disk_info(rmqi_store *s, rmqi_disk_info *out)
{
  memset(out, 0, sizeof *out);
  int n = mvec_len(&s->cl);
  /* Files below the minimum are deleted (cl_dead, without its lock). */
  int dead = n ? (int)((rmqi_store_min_phys(s) - s->cl_base) / s->cl_size) : 0;
  if (dead > n) dead = n;
  out->cl_files = n - dead;
  out->cl_file_size = s->cl_size;
  mfile *f = n > dead ? mvec_at(&s->cl, dead) : NULL;
  out->oldest_last_ts = f ? atomic_load(&f->last_ts) : 0;
  if (out->oldest_last_ts >= INT64_MAX / 4) out->oldest_last_ts = 0; /* not written yet */
  out->delete_hours = s->delete_hours;
  out->disk_full = atomic_load(&s->disk_full);
  struct statvfs st;
  if (OS->statvfs(s->dir, &st) == 0) {
    out->total_bytes = (int64_t)st.f_blocks * (int64_t)st.f_frsize;
    out->free_bytes = (int64_t)st.f_bavail * (int64_t)st.f_frsize;
    if (out->total_bytes > 0)
      out->used_pct = (int)((out->total_bytes - (int64_t)st.f_bfree * (int64_t)st.f_frsize) * 100 / out->total_bytes);
  }
}

RMQI_FUNC int64_t rmqi_store_max_phys(rmqi_store *s) { return atomic_load_explicit(&s->published, memory_order_acquire); }
RMQI_FUNC int64_t rmqi_store_min_phys(rmqi_store *s) { return atomic_load_explicit(&s->min_phys, memory_order_acquire); }
RMQI_FUNC int64_t rmqi_store_flushed(rmqi_store *s) { return atomic_load(&s->flushed); }

static uint64_t name_hash(const char *s) { return XXH3_64bits(s, strlen(s)); }

RMQI_FUNC rmqi_topic *rmqi_topic_find(rmqi_store *s, const char *name)
{
  rmqi_topic **tab = atomic_load_explicit(&s->ttab, memory_order_acquire);
  if (!tab) return NULL;
  int cap = (int)(uintptr_t)tab[-1];
  for (uint64_t i = name_hash(name) & (uint64_t)(cap - 1);; i = (i + 1) & (uint64_t)(cap - 1)) {
    rmqi_topic *t = __atomic_load_n(&tab[i], __ATOMIC_ACQUIRE);
    if (!t) return NULL;
    /* A deleted topic keeps its slot (lookups run without a lock); one
    ** made again under its name sits further along. */
    if (!strcmp(t->name, name) && !atomic_load_explicit(&t->deleted, memory_order_acquire)) return t;
  }
}

/* topic_lock held. The table's capacity lives in slot -1; slot -2 chains the
** outgrown allocation. */
static int ttab_insert(rmqi_store *s, rmqi_topic *t)
{
  rmqi_topic **tab = atomic_load_explicit(&s->ttab, memory_order_relaxed);
  if ((s->tcount + 1) * 2 > s->tcap) {
    int ncap = s->tcap ? s->tcap * 2 : 64;
    rmqi_topic **blk = rmqi_calloc((size_t)ncap + 2, sizeof *blk);
    if (!blk) return rmqi_err(RMQ_ENOMEM, "out of memory growing the topic table");
    blk[0] = (rmqi_topic *)s->tchain;
    blk[1] = (rmqi_topic *)(uintptr_t)ncap;
    rmqi_topic **ntab = blk + 2;
    for (int i = 0; i < s->tcap; i++) {
      rmqi_topic *o = tab[i];
      if (!o) continue;
      uint64_t j = name_hash(o->name) & (uint64_t)(ncap - 1);
      while (ntab[j]) j = (j + 1) & (uint64_t)(ncap - 1);
      ntab[j] = o;
    }
    s->tchain = blk;
    s->tcap = ncap;
    atomic_store_explicit(&s->ttab, ntab, memory_order_release);
    tab = ntab;
  }
  uint64_t j = name_hash(t->name) & (uint64_t)(s->tcap - 1);
  while (tab[j]) j = (j + 1) & (uint64_t)(s->tcap - 1);
  __atomic_store_n(&tab[j], t, __ATOMIC_RELEASE);
  s->tcount++;
  return RMQ_OK;
}

static void ttab_free(rmqi_store *s)
{
  void *blk = s->tchain;
  int cap = s->tcap;
  while (blk) {
    rmqi_topic **b = blk;
    void *prev = b[0];
    rmqi_free(b, ((size_t)cap + 2) * sizeof *b);
    blk = prev;
    cap /= 2;
  }
}

/* Makes queue qid's struct. Its directory and first ConsumeQueue file are
** made when its first unit is written, as RocketMQ does: an empty queue
** costs no file, and no all-zero file is left for RocketMQ's recovery to
** read a phantom message from (ROCKETMQ.md 2). topic_lock held (or
** single-threaded open). */
static rmqi_queue *queue_new(rmqi_topic *t, int qid)
{
  rmqi_store *s = t->s;
  rmqi_queue *q = rmqi_calloc(1, sizeof *q);
  if (!q) return NULL;
  q->topic = t;
  q->qid = qid;
  atomic_store_explicit(&q->last_phys, -1, memory_order_relaxed);
  /* Exactly the string's size: queue_free frees strlen + 1 bytes. */
  size_t n = (size_t)snprintf(NULL, 0, "%s/%s/%d", s->cq_root, t->name, qid) + 1;
  q->dir = rmqi_malloc(n);
  if (!q->dir) { rmqi_free(q, sizeof *q); return NULL; }
  snprintf(q->dir, n, "%s/%s/%d", s->cq_root, t->name, qid);
  return q;
}

/* Makes sure queues [0, n) of t have structs: all or nothing. topic_lock
** held (or single-threaded open). */
static int queues_make(rmqi_topic *t, int n)
{
  qvec *v = atomic_load_explicit(&t->qv, memory_order_relaxed);
  int have = v ? v->cap : 0;
  if (n > have) {
    int cap = have ? have : 1;
    while (cap < n) cap *= 2;
    if (cap > RMQ_MAX_QUEUE_NUMS) cap = RMQ_MAX_QUEUE_NUMS;
    qvec *nv = rmqi_calloc(1, sizeof *nv + (size_t)cap * sizeof nv->q[0]);
    if (!nv) return rmqi_err(RMQ_ENOMEM, "out of memory creating the queues of %s", t->name);
    nv->cap = cap;
    nv->prev = v;
    for (int i = 0; i < have; i++) atomic_store_explicit(&nv->q[i], atomic_load(&v->q[i]), memory_order_relaxed);
    atomic_store_explicit(&t->qv, nv, memory_order_release);
    v = nv;
  }
  rmqi_queue *made[64];
  for (int base = 0; base < n; base += 64) {
    int k = 0;
    for (int i = base; i < n && i < base + 64; i++) {
      if (atomic_load_explicit(&v->q[i], memory_order_relaxed)) continue;
      rmqi_queue *q = queue_new(t, i);
      if (!q) {
        while (k-- > 0) { rmqi_free(made[k]->dir, strlen(made[k]->dir) + 1); rmqi_free(made[k], sizeof *made[k]); }
        return rmqi_err(RMQ_ENOMEM, "out of memory creating queue %s/%d", t->name, i);
      }
      made[k++] = q;
    }
    for (int j = 0; j < k; j++) atomic_store_explicit(&v->q[made[j]->qid], made[j], memory_order_release);
  }
  return RMQ_OK;
}

/* Makes queue qid's struct. Its directory and first ConsumeQueue file are
** made when its first unit is written, as RocketMQ does: an empty queue
** costs no file, and no all-zero file is left for RocketMQ's recovery to
** read a phantom message from (ROCKETMQ.md 2). */
static int queue_make(rmqi_topic *t, int qid)
{
  return queues_make(t, qid + 1);
}

static void queue_free(rmqi_queue *q)
{
  if (!q) return;
  for (int i = 0; i < mvec_len(&q->cq); i++) cq_file_free(q->topic->s, mvec_at(&q->cq, i));
  atomic_store(&q->cq.n, 0);
  mvec_free(&q->cq);
  rmqi_free(q->dir, strlen(q->dir) + 1);
  rmqi_free(q, sizeof *q);
}

/* topic_lock held (or single-threaded open). */
static void topic_free(rmqi_topic *t)
{
  qvec *v = atomic_load(&t->qv);
  for (int i = 0; v && i < v->cap; i++) queue_free(atomic_load(&v->q[i]));
  while (v) {
    qvec *prev = v->prev;
    rmqi_free(v, sizeof *v + (size_t)v->cap * sizeof v->q[0]);
    v = prev;
  }
  rmqi_free(t, sizeof *t);
}

/* Finds or makes topic `name` with queues [0, nqueues) (0: leave the count).
** All or nothing: a failure leaves the table as it was. topic_lock held (or
** single-threaded open). */
static int topic_make(rmqi_store *s, const char *name, int nqueues, int perm, rmqi_topic **out)
{
  rmqi_topic *t = rmqi_topic_find(s, name);
  int rc;
  if (!t) {
    t = rmqi_calloc(1, sizeof *t);
    if (!t) return rmqi_err(RMQ_ENOMEM, "out of memory creating topic %s", name);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->name_len = strlen(t->name);
    t->perm = perm;
    t->s = s;
    if ((rc = queues_make(t, nqueues))) { topic_free(t); return rc; }
    /* The count before the table: lookups run without the lock, and a
    ** sender that found it with no queues would divide by zero. */
    if (nqueues > 0) atomic_store(&t->nqueues, nqueues);
    if ((rc = ttab_insert(s, t))) { topic_free(t); return rc; }
  } else if ((rc = queues_make(t, nqueues))) {
    return rc; /* the structs made are unused until the count says so */
  }
  if (nqueues > 0) atomic_store(&t->nqueues, nqueues);
  *out = t;
  return RMQ_OK;
}

static int topic_cmp(const void *a, const void *b)
{
  return strcmp((*(rmqi_topic *const *)a)->name, (*(rmqi_topic *const *)b)->name);
}

/* Snapshot of all topics sorted by name; caller frees with n. */
static int topics_sorted(rmqi_store *s, rmqi_topic ***out, int *n)
{
  pthread_mutex_lock(&s->topic_lock);
  rmqi_topic **tab = atomic_load(&s->ttab);
  rmqi_topic **v = rmqi_calloc((size_t)(s->tcount ? s->tcount : 1), sizeof *v);
  int k = 0;
  if (v)
    for (int i = 0; i < s->tcap; i++)
      if (tab[i] && !atomic_load(&tab[i]->deleted)) v[k++] = tab[i];
  pthread_mutex_unlock(&s->topic_lock);
  if (!v) return rmqi_err(RMQ_ENOMEM, "out of memory listing topics");
  qsort(v, (size_t)k, sizeof *v, topic_cmp);
  *out = v;
  *n = k;
  return RMQ_OK;
}

/* topic_lock held. */
static int topics_persist(rmqi_store *s)
{
  if (s->o.read_only) return RMQ_OK;
  rmqi_topic **v;
  int n, rc;
  /* topics_sorted takes topic_lock itself: walk the table directly. */
  rmqi_topic **tab = atomic_load(&s->ttab);
  v = rmqi_calloc((size_t)(s->tcount ? s->tcount : 1), sizeof *v);
  if (!v) return rmqi_err(RMQ_ENOMEM, "out of memory writing topics.json");
  n = 0;
  for (int i = 0; i < s->tcap; i++)
    if (tab[i] && !atomic_load(&tab[i]->deleted)) v[n++] = tab[i];
  qsort(v, (size_t)n, sizeof *v, topic_cmp);
  rmqi_buf b = {0};
  s->topics_version++;
  rmqi_buf_printf(&b, "{\"dataVersion\":{\"counter\":%" PRId64 ",\"stateVersion\":0,\"timestamp\":%" PRId64 "},"
                  "\"topicConfigTable\":{", s->topics_version, rmqi_now(s->env));
  for (int i = 0; i < n; i++) {
    int nq = rmqi_topic_nqueues(v[i]);
    if (i) rmqi_buf_puts(&b, ",");
    rmqi_buf_json_str(&b, v[i]->name);
    rmqi_buf_puts(&b, ":{\"attributes\":{},\"order\":false,");
    rmqi_buf_printf(&b, "\"perm\":%d,\"readQueueNums\":%d,\"topicFilterType\":\"SINGLE_TAG\",\"topicName\":",
                    v[i]->perm, nq);
    rmqi_buf_json_str(&b, v[i]->name);
    rmqi_buf_printf(&b, ",\"topicSysFlag\":0,\"writeQueueNums\":%d}", nq);
  }
  rmqi_buf_puts(&b, "}}");
  rmqi_free(v, (size_t)(s->tcount ? s->tcount : 1) * sizeof *v);
  if (b.oom) { rmqi_buf_free(&b); return rmqi_err(RMQ_ENOMEM, "out of memory writing topics.json"); }
  /* Twice, so that topics.json.bak holds the whole table too: with the
  ** journal, topics.json is rewritten seldom, and a .bak one version old
  ** would lose the topics made since (load falls back to it). */
  rc = rmqi_store_write_config(s, "topics.json", b.p, b.len);
  if (!rc) rc = rmqi_store_write_config(s, "topics.json", b.p, b.len);
  rmqi_buf_free(&b);
  return rc;
}

#define TOPICS_JOURNAL "rmq_topics.journal"

static int read_file(const char *path, char **text, size_t *len);

/* topic_lock held. Appends topic `name`'s config to the journal and syncs
** it; on failure the journal is as before. */
static int journal_append(rmqi_store *s, const char *name, int nq, int perm)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/" TOPICS_JOURNAL, s->cfg_dir);
  if (s->tj_fd < 0) {
    s->tj_fd = OS->open(path, O_RDWR | O_CREAT, 0644);
    if (s->tj_fd < 0) return rmqi_errno(errno, "open", path);
    int rc = fsync_dir(s->cfg_dir);
    if (rc) { OS->close(s->tj_fd); s->tj_fd = -1; return rc; }
  }
  rmqi_buf b = {0};
  rmqi_buf_puts(&b, "{\"topicName\":");
  rmqi_buf_json_str(&b, name);
  rmqi_buf_printf(&b, ",\"readQueueNums\":%d,\"writeQueueNums\":%d,\"perm\":%d}\n", nq, nq, perm);
  if (b.oom) { rmqi_buf_free(&b); return rmqi_err(RMQ_ENOMEM, "out of memory writing %s", path); }
  int rc = RMQ_OK;
  ssize_t w = OS->pwrite(s->tj_fd, b.p, b.len, (off_t)s->tj_size);
  if (w != (ssize_t)b.len) rc = rmqi_errno(w < 0 ? errno : ENOSPC, "pwrite", path);
  else if (OS->fdatasync(s->tj_fd) != 0) rc = rmqi_errno(errno, "fdatasync", path);
  if (rc) {
    OS->ftruncate(s->tj_fd, (off_t)s->tj_size); /* no torn line left behind */
  } else {
    s->tj_size += (int64_t)b.len;
    s->tj_count++;
  }
  rmqi_buf_free(&b);
  return rc;
}

/* topic_lock held. Writes topics.json whole and empties the journal: the
** journal only replays what topics.json already says if a crash comes
** between the two. */
static int journal_compact(rmqi_store *s)
{
  int rc = topics_persist(s);
  if (rc || s->tj_fd < 0 || s->tj_size == 0) return rc;
  char path[4200];
  snprintf(path, sizeof path, "%s/" TOPICS_JOURNAL, s->cfg_dir);
  if (OS->ftruncate(s->tj_fd, 0) != 0) return rmqi_errno(errno, "ftruncate", path);
  if (OS->fdatasync(s->tj_fd) != 0) return rmqi_errno(errno, "fdatasync", path);
  s->tj_size = 0;
  s->tj_count = 0;
  return RMQ_OK;
}

/* Open: applies the journal's lines over topics.json. A line cut by a crash
** (its create never returned) ends the replay. */
static int journal_replay(rmqi_store *s)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/" TOPICS_JOURNAL, s->cfg_dir);
  char *text;
  size_t len;
  int rc = read_file(path, &text, &len);
  if (rc == RMQ_ENOTFOUND) return RMQ_OK;
  if (rc) return rc;
  size_t at = 0;
  int n = 0;
  while (at < len && !rc) {
    char *nl = memchr(text + at, '\n', len - at);
    if (!nl) break;
    int prc;
    rmqi_json *j = rmqi_json_parse(text + at, (size_t)(nl - (text + at)), &prc);
    const rmqi_json *tn = rmqi_json_get(j, "topicName"), *w = rmqi_json_get(j, "writeQueueNums");
    const rmqi_json *perm = rmqi_json_get(j, "perm");
    if (!tn || tn->type != RMQI_JSTR || !w || w->inum < 1 || w->inum > RMQ_MAX_QUEUE_NUMS || !*tn->str ||
        strlen(tn->str) > 255 || strchr(tn->str, '/') || !strcmp(tn->str, ".") || !strcmp(tn->str, "..")) {
      rmqi_log(s->env, RMQ_LOG_WARN, "%s: line %d is not a topic; the rest is ignored", path, n + 1);
      rmqi_json_free(j);
      break;
    }
    rmqi_topic *t;
    rc = topic_make(s, tn->str, (int)w->inum, perm && perm->inum >= 0 && perm->inum <= INT32_MAX ? (int)perm->inum : 6, &t);
    if (!rc) t->configured = 1;
    rmqi_json_free(j);
    at = (size_t)(nl - text) + 1;
    n++;
  }
  rmqi_free(text, len + 1);
  if (rc || n == 0 || s->o.read_only) return rc;
  pthread_mutex_lock(&s->topic_lock);
  rc = topics_persist(s);
  pthread_mutex_unlock(&s->topic_lock);
  if (rc) return rc;
  /* topics.json now holds every line: the journal starts empty. */
  if (OS->unlink(path) != 0 && errno != ENOENT) return rmqi_errno(errno, "unlink", path);
  return fsync_dir(s->cfg_dir);
}

static struct tomb *tomb_find(rmqi_store *s, const char *name);
static int cq_topic_dir_remove(rmqi_store *s, const char *name);
static int write_config(rmqi_store *s, const char *name, const char *text, size_t len, int keep_bak);

RMQI_FUNC int rmqi_topic_create(rmqi_store *s, const char *name, int nqueues, rmqi_topic **out)
{
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  pthread_mutex_lock(&s->topic_lock);
  rmqi_topic *t = rmqi_topic_find(s, name);
  int rc = RMQ_OK;
  if (t && t->configured && rmqi_topic_nqueues(t) == nqueues) goto out_unlock; /* nothing changes */
  /* Made again after a deletion whose files could not all be removed:
  ** they must go before new units land where old ones lie. */
  if (!t && s->ntombs && tomb_find(s, name) && (rc = cq_topic_dir_remove(s, name))) goto out_unlock;
  /* Durable first, then in memory: a failure changes neither. */
  int64_t undo = s->tj_size;
  if ((rc = journal_append(s, name, nqueues, t ? t->perm : 6))) goto out_unlock;
  if ((rc = topic_make(s, name, nqueues, 6, &t))) {
    if (OS->ftruncate(s->tj_fd, (off_t)undo) == 0) { s->tj_size = undo; s->tj_count--; }
    goto out_unlock;
  }
  t->configured = 1;
  /* Rewrite topics.json once the journal is as long as half of it: each
  ** rewrite is paid for by as many cheap appends. */
  if (s->tj_count >= 64 + s->tcount / 2) {
    int crc = journal_compact(s);
    if (crc) rmqi_log(s->env, RMQ_LOG_WARN, "topics.json not rewritten (%s); the journal keeps the topics", rmq_errmsg());
  }
out_unlock:
  pthread_mutex_unlock(&s->topic_lock);
  if (!rc && out) *out = t;
  return rc;
}


/* ---- deleted topics ----------------------------------------------------- */

static int topic_qcap(rmqi_topic *t);

#define TOMBS_FILE "rmq_deleted_topics.txt"

/* topic_lock held (or single-threaded open). The tomb of `name`, or NULL. */
static struct tomb *tomb_find(rmqi_store *s, const char *name)
{
  for (int i = 0; i < s->ntombs; i++)
    if (!strcmp(s->tombs[i].name, name)) return &s->tombs[i];
  return NULL;
}

/* topic_lock held. Writes the tombs, leaving out those no record and no
** topics.json still needs (retention took every older record, and
** topics.json says the topic is gone). */
static int tombs_write(rmqi_store *s)
{
  rmqi_buf b = {0};
  rmqi_buf_puts(&b, "rmq-deleted-topics 1\n");
  int64_t min = rmqi_store_min_phys(s);
  for (int i = 0; i < s->ntombs; i++) {
    struct tomb *t = &s->tombs[i];
    if (t->phys <= min && t->version <= s->topics_version) continue;
    rmqi_buf_printf(&b, "%s\t%" PRId64 "\t%" PRId64 "\n", t->name, t->phys, t->version);
  }
  if (b.oom) { rmqi_buf_free(&b); return rmqi_err(RMQ_ENOMEM, "out of memory writing " TOMBS_FILE); }
  int rc = write_config(s, TOMBS_FILE, b.p, b.len, 0);
  rmqi_buf_free(&b);
  return rc;
}

/* topic_lock held. Adds or moves name's tomb; nothing changes on failure. */
static int tomb_set(rmqi_store *s, const char *name, int64_t phys, int64_t version)
{
  struct tomb *t = tomb_find(s, name);
  int idx = t ? (int)(t - s->tombs) : -1;
  struct tomb old;
  memset(&old, 0, sizeof old);
  if (t) {
    old = *t;
  } else {
    if (s->ntombs == s->tombcap) {
      int ncap = s->tombcap ? 2 * s->tombcap : 8;
      struct tomb *nt = rmqi_realloc(s->tombs, (size_t)s->tombcap * sizeof *nt, (size_t)ncap * sizeof *nt);
      if (!nt) return rmqi_err(RMQ_ENOMEM, "out of memory deleting topic %s", name);
      s->tombs = nt;
      s->tombcap = ncap;
    }
    t = &s->tombs[s->ntombs++];
    snprintf(t->name, sizeof t->name, "%s", name);
  }
  t->phys = phys;
  t->version = version;
  int rc = tombs_write(s);
  if (rc && idx < 0) s->ntombs--;
  else if (rc) s->tombs[idx] = old;
  if (!rc) atomic_store(&s->has_tombs, 1);
  return rc;
}

/* Were the records of `name` at `phys` deleted with the topic? Any thread. */
RMQI_FUNC int rmqi_store_topic_deleted_at(rmqi_store *s, const char *name, int64_t phys)
{
  if (!atomic_load_explicit(&s->has_tombs, memory_order_acquire)) return 0;
  pthread_mutex_lock(&s->topic_lock);
  struct tomb *t = tomb_find(s, name);
  int gone = t && phys < t->phys;
  pthread_mutex_unlock(&s->topic_lock);
  return gone;
}

/* Removes consumequeue/<name> and everything in it. */
static int cq_topic_dir_remove(rmqi_store *s, const char *name)
{
  char tdir[4200];
  snprintf(tdir, sizeof tdir, "%s/%s", s->cq_root, name);
  DIR *d = opendir(tdir);
  if (!d) return errno == ENOENT ? RMQ_OK : rmqi_errno(errno, "opendir", tdir);
  int rc = RMQ_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char qdir[4500];
    snprintf(qdir, sizeof qdir, "%s/%s", tdir, e->d_name);
    DIR *qd = opendir(qdir);
    if (qd) {
      struct dirent *f;
      while ((f = readdir(qd)) != NULL) {
        if (f->d_name[0] == '.') continue;
        char fp[4800];
        snprintf(fp, sizeof fp, "%s/%s", qdir, f->d_name);
        if (OS->unlink(fp) != 0 && errno != ENOENT && !rc) rc = rmqi_errno(errno, "unlink", fp);
      }
      closedir(qd);
    }
    if (OS->rmdir(qdir) != 0 && errno != ENOENT && !rc) rc = rmqi_errno(errno, "rmdir", qdir);
  }
  closedir(d);
  if (OS->rmdir(tdir) != 0 && errno != ENOENT && !rc) rc = rmqi_errno(errno, "rmdir", tdir);
  int frc = fsync_dir(s->cq_root);
  return rc ? rc : frc;
}

RMQI_FUNC int rmqi_topic_delete(rmqi_store *s, const char *name)
{
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  pthread_mutex_lock(&s->topic_lock);
  rmqi_topic *t = rmqi_topic_find(s, name);
  if (!t) {
    pthread_mutex_unlock(&s->topic_lock);
    return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist", name);
  }
  /* No send gets in after this: puts check the flag under append_lock. */
  pthread_mutex_lock(&s->append_lock);
  int64_t phys = s->write_pos;
  atomic_store(&t->deleted, 1);
  pthread_mutex_unlock(&s->append_lock);
  /* The tomb is the deletion: once it is on disk, an open that finds the
  ** topic in an older topics.json, or its files, finishes the job. */
  int rc = tomb_set(s, name, phys, s->topics_version + 1);
  if (rc) {
    atomic_store(&t->deleted, 0);
    pthread_mutex_unlock(&s->topic_lock);
    return rc;
  }
  if (journal_compact(s) != RMQ_OK)
    rmqi_log(s->env, RMQ_LOG_WARN, "topic %s deleted, but topics.json not rewritten (%s); the next open does it",
             name, rmq_errmsg());
  /* topic_lock stays held until its directory is gone: a topic of the same
  ** name made meanwhile (a create, an auto-creating send) would have its
  ** new files removed with it. */
  /* The prefaulter makes no more files for it. */
  pthread_mutex_lock(&s->pf_lock);
  for (int i = 0; i < s->ncq_want;)
    if (s->cq_want[i]->topic == t) s->cq_want[i] = s->cq_want[--s->ncq_want];
    else i++;
  for (int i = 0; i < s->ncq_pf;)
    if (s->cq_pf[i].q->topic == t) s->cq_pf[i] = s->cq_pf[--s->ncq_pf];
    else i++;
  while (s->pf_making && s->pf_making->topic == t) pthread_cond_wait(&s->pf_cond, &s->pf_lock);
  pthread_mutex_unlock(&s->pf_lock);
  /* Its files: unmapped (readers find them gone), then removed. */
  pthread_mutex_lock(&s->cq_flush_lock);
  for (int qid = 0; qid < topic_qcap(t); qid++) {
    rmqi_queue *q = rmqi_topic_queue(t, qid);
    if (!q) continue;
    pthread_mutex_t *l = cq_lock(s, q);
    pthread_mutex_lock(l);
    for (int k = 0; k < mvec_len(&q->cq); k++) {
      mfile *f = mvec_at(&q->cq, k);
      f->gone = 1;
      cq_unmap(s, f);
    }
    pthread_mutex_unlock(l);
  }
  pthread_mutex_unlock(&s->cq_flush_lock);
  if (cq_topic_dir_remove(s, name) != RMQ_OK)
    rmqi_log(s->env, RMQ_LOG_WARN, "topic %s deleted, but its consume queue files stay (%s); the next open removes them",
             name, rmq_errmsg());
  pthread_mutex_unlock(&s->topic_lock);
  rmqi_log(s->env, RMQ_LOG_INFO, "topic %s deleted (its records before commitlog offset %" PRId64 " are gone)", name, phys);
  return RMQ_OK;
}

/* Open, after topics.json and the journal: reads the tombs, finishes a
** deletion a crash cut short (the topic still in an older topics.json, or
** its files still there). */
static int tombs_load(rmqi_store *s)
{
  char path[4200], *text;
  size_t len;
  snprintf(path, sizeof path, "%s/" TOMBS_FILE, s->cfg_dir);
  int rc = read_file(path, &text, &len);
  if (rc == RMQ_ENOTFOUND) return RMQ_OK;
  if (rc) return rc;
  char *line = strchr(text, '\n');
  int changed = 0;
  if (strncmp(text, "rmq-deleted-topics 1\n", 21) != 0) {
    rmqi_log(s->env, RMQ_LOG_WARN, "%s: not a deleted-topics file; ignored", path);
    line = NULL;
  }
  while (!rc && line && *++line) {
    char *end = strchr(line, '\n');
    if (!end) break;
    *end = 0;
    char name[256];
    long long phys, version;
    char *tab = strchr(line, '\t');
    if (!tab || tab - line > 255 || tab == line || sscanf(tab, "\t%lld\t%lld", &phys, &version) != 2) {
      rmqi_log(s->env, RMQ_LOG_WARN, "%s: bad line '%s'; ignored", path, line);
      line = end;
      continue;
    }
    memcpy(name, line, (size_t)(tab - line));
    name[tab - line] = 0;
    line = end;
    if (s->ntombs == s->tombcap) {
      int ncap = s->tombcap ? 2 * s->tombcap : 8;
      struct tomb *nt = rmqi_realloc(s->tombs, (size_t)s->tombcap * sizeof *nt, (size_t)ncap * sizeof *nt);
      if (!nt) { rc = rmqi_err(RMQ_ENOMEM, "out of memory reading %s", path); break; }
      s->tombs = nt;
      s->tombcap = ncap;
    }
    struct tomb *t = &s->tombs[s->ntombs++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->phys = phys;
    t->version = version;
    rmqi_topic *tp = rmqi_topic_find(s, name);
    if (tp && s->topics_loaded_version < version) {
      /* topics.json is from before the deletion: the topic found is the
      ** deleted one, not one made again since. */
      atomic_store(&tp->deleted, 1);
      tp = NULL;
      changed = 1;
    }
    if (!tp && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..")) rc = cq_topic_dir_remove(s, name);
  }
  rmqi_free(text, len + 1);
  if (s->ntombs) atomic_store(&s->has_tombs, 1);
  if (!rc && changed) {
    pthread_mutex_lock(&s->topic_lock);
    rc = topics_persist(s);
    pthread_mutex_unlock(&s->topic_lock);
  }
  return rc;
}

static int topic_qcap(rmqi_topic *t)
{
  qvec *v = atomic_load_explicit(&t->qv, memory_order_acquire);
  return v ? v->cap : 0;
}

RMQI_FUNC rmqi_queue *rmqi_topic_queue(rmqi_topic *t, int qid)
{
  if (qid < 0 || qid >= RMQ_MAX_QUEUE_NUMS) return NULL;
  qvec *v = atomic_load_explicit(&t->qv, memory_order_acquire);
  if (!v || qid >= v->cap) return NULL;
  return atomic_load_explicit(&v->q[qid], memory_order_acquire);
}

RMQI_FUNC int rmqi_topic_list(rmqi_store *s, rmq_topic_info *out, size_t cap, size_t *n)
{
  rmqi_topic **v = NULL;
  int k = 0;
  int rc = topics_sorted(s, &v, &k);
  if (rc) return rc;
  for (int i = 0; i < k && (size_t)i < cap; i++) {
    snprintf(out[i].topic_name, sizeof out[i].topic_name, "%s", v[i]->name);
    out[i].read_queue_nums = out[i].write_queue_nums = rmqi_topic_nqueues(v[i]);
    out[i].perm = v[i]->perm;
  }
  *n = (size_t)k;
  rmqi_free(v, (size_t)(k ? k : 1) * sizeof *v);
  return RMQ_OK;
}

/* ======================================================================= */
/* Config files                                                            */
/* ======================================================================= */

static int write_config(rmqi_store *s, const char *name, const char *text, size_t len, int keep_bak);

RMQI_FUNC int rmqi_store_write_config(rmqi_store *s, const char *name, const char *text, size_t len)
{
  return write_config(s, name, text, len, 1);
}

static int write_config(rmqi_store *s, const char *name, const char *text, size_t len, int keep_bak)
{
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  char path[4200], tmp[4300], bak[4300];
  snprintf(path, sizeof path, "%s/%s", s->cfg_dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  snprintf(bak, sizeof bak, "%s.bak", path);
  int rc = RMQ_OK;
  int fd = OS->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return rmqi_errno(errno, "open", tmp);
  size_t done = 0;
  while (done < len) {
    ssize_t w = OS->pwrite(fd, text + done, len - done, (off_t)done);
    if (w < 0) { if (errno == EINTR) continue; rc = rmqi_errno(errno, "pwrite", tmp); break; }
    done += (size_t)w;
  }
  if (!rc && OS->fsync(fd) != 0) rc = rmqi_errno(errno, "fsync", tmp);
  OS->close(fd);
  if (rc) { OS->unlink(tmp); return rc; }
  /* The old version becomes .bak; a crash between the renames leaves only
  ** .bak, which read_config falls back to. */
  if (keep_bak && OS->rename(path, bak) != 0 && errno != ENOENT) {
    rc = rmqi_errno(errno, "rename", path);
    OS->unlink(tmp);
    return rc;
  }
  if (OS->rename(tmp, path) != 0) { rc = rmqi_errno(errno, "rename", tmp); OS->unlink(tmp); return rc; }
  return fsync_dir(s->cfg_dir);
}

static int read_file_max(const char *path, char **text, size_t *len, int64_t max);
static int read_file(const char *path, char **text, size_t *len) { return read_file_max(path, text, len, 64 << 20); }

static int read_file_max(const char *path, char **text, size_t *len, int64_t max)
{
  int fd = OS->open(path, O_RDONLY, 0);
  if (fd < 0) return errno == ENOENT ? RMQ_ENOTFOUND : rmqi_errno(errno, "open", path);
  struct stat st;
  int rc = RMQ_OK;
  if (OS->fstat(fd, &st) != 0) { rc = rmqi_errno(errno, "fstat", path); goto out_close; }
  /* A directory in its place would fail every later save: say so now. */
  if (!S_ISREG(st.st_mode)) { rc = rmqi_err(RMQ_ECORRUPT, "%s is not a regular file", path); goto out_close; }
  if (st.st_size > max) { rc = rmqi_err(RMQ_ECORRUPT, "%s: %lld bytes is too large for a config file", path, (long long)st.st_size); goto out_close; }
  char *buf = rmqi_malloc((size_t)st.st_size + 1);
  if (!buf) { rc = rmqi_err(RMQ_ENOMEM, "out of memory reading %s", path); goto out_close; }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = OS->pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  buf[got] = 0;
  *text = buf;
  *len = got;
  if (got != (size_t)st.st_size) {
    /* The size is what the caller frees with. */
    *len = (size_t)st.st_size;
    memset(buf + got, ' ', (size_t)st.st_size - got);
    buf[st.st_size] = 0;
  }
out_close:
  OS->close(fd);
  return rc;
}

RMQI_FUNC int rmqi_store_read_config(rmqi_store *s, const char *name, char **text, size_t *len)
{
  char path[4200], bak[4300];
  snprintf(path, sizeof path, "%s/%s", s->cfg_dir, name);
  snprintf(bak, sizeof bak, "%s.bak", path);
  int rc = read_file(path, text, len);
  if (rc == RMQ_ENOTFOUND) rc = read_file(bak, text, len);
  return rc;
}

RMQI_FUNC int rmqi_store_read_blob(rmqi_store *s, const char *name, char **data, size_t *len)
{
  char path[4200], bak[4300];
  snprintf(path, sizeof path, "%s/%s", s->cfg_dir, name);
  snprintf(bak, sizeof bak, "%s.bak", path);
  int rc = read_file_max(path, data, len, (int64_t)1 << 31);
  if (rc == RMQ_ENOTFOUND) rc = read_file_max(bak, data, len, (int64_t)1 << 31);
  return rc;
}

/* Parses config `name` into *out, trying the .bak copy when the main file is
** damaged. RMQ_ENOTFOUND when neither exists. */
static int config_json(rmqi_store *s, const char *name, rmqi_json **out, int *damaged)
{
  *damaged = 0;
  char *text;
  size_t len;
  char fname[256];
  int rc = RMQ_OK;
  for (int attempt = 0; attempt < 2; attempt++) {
    snprintf(fname, sizeof fname, attempt ? "%s.bak" : "%s", name);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", s->cfg_dir, fname);
    /* A missing .bak must not hide that the main file was damaged. */
    int frc = read_file(path, &text, &len);
    if (frc == RMQ_ENOTFOUND) continue;
    if (frc) return frc;
    int prc;
    *out = rmqi_json_parse(text, len, &prc);
    rmqi_free(text, len + 1);
    if (*out) return RMQ_OK;
    if (prc == RMQ_ENOMEM) return rmqi_err(RMQ_ENOMEM, "out of memory parsing %s", path);
    rmqi_log(s->env, RMQ_LOG_WARN, "%s is not valid JSON%s", path, attempt ? "" : "; trying its .bak");
    *damaged = 1;
    rc = rmqi_err(RMQ_ECORRUPT, "%s is not valid JSON", path);
  }
  return rc == RMQ_OK ? RMQ_ENOTFOUND : rc;
}

/* ======================================================================= */
/* Appending                                                               */
/* ======================================================================= */

/* append_lock held (prefaulter running). Asks the prefaulter for q's next
** ConsumeQueue file. */
static void cq_want_next(rmqi_store *s, rmqi_queue *q)
{
  pthread_mutex_lock(&s->pf_lock);
  int have = 0;
  for (int i = 0; i < s->ncq_want; i++) have |= s->cq_want[i] == q;
  if (!have && s->ncq_want < (int)(sizeof s->cq_want / sizeof s->cq_want[0])) {
    s->cq_want[s->ncq_want++] = q;
    pthread_cond_signal(&s->pf_cond);
  }
  pthread_mutex_unlock(&s->pf_lock);
}

/* append_lock held. Makes sure CommitLog file `idx` (relative to the first)
** exists. Under SYNC_FLUSH its directory entry is synced at once (the send
** waits for the disk anyway); under ASYNC_FLUSH by the next flush. */
static int cl_file_ensure(rmqi_store *s, int64_t idx)
{
  int sync_now = s->o.flush_disk_type == RMQ_SYNC_FLUSH;
  while (mvec_len(&s->cl) <= idx) {
    int64_t start = s->cl_base + (int64_t)mvec_len(&s->cl) * s->cl_size;
    mfile *f;
    int rc = mfile_open(s->cl_dir, start, s->cl_size, 1, sync_now, cl_huge(s), &f);
    if (rc) return rc;
    rc = mvec_push(&s->cl, f);
    if (rc) { mfile_close(f); return rc; }
    if (!sync_now) atomic_store(&s->cl_dir_dirty, 1);
    disk_check(s);
  }
  return RMQ_OK;
}

/* Prefaulter: makes the next CommitLog file without append_lock (opening
** and sizing a file can wait on the disk), then installs it unless a sender
** made it meanwhile. ASYNC_FLUSH only. */
static int cl_file_make_next(rmqi_store *s, int64_t idx)
{
  if (mvec_len(&s->cl) > idx) return RMQ_OK;
  if (mvec_len(&s->cl) < idx) { /* not the next one: the plain way */
    pthread_mutex_lock(&s->append_lock);
    int rc = cl_file_ensure(s, idx);
    pthread_mutex_unlock(&s->append_lock);
    return rc;
  }
  mfile *f;
  int rc = mfile_open(s->cl_dir, s->cl_base + idx * s->cl_size, s->cl_size, 1, 0, cl_huge(s), &f);
  if (rc) return rc;
  pthread_mutex_lock(&s->append_lock);
  if (mvec_len(&s->cl) == idx) {
    rc = mvec_push(&s->cl, f);
    if (rc == RMQ_OK) f = NULL;
    atomic_store(&s->cl_dir_dirty, 1);
  }
  pthread_mutex_unlock(&s->append_lock);
  mfile_close(f); /* a sender opened the same file first: drop this mapping */
  return rc;
}

/* append_lock held (or single-threaded open). Makes sure the ConsumeQueue
** file holding unit `off` exists and returns a pointer to the unit. */
/* Over the mapping bound, a sender does not map a cold queue's file (and
** so unmap another's, a TLB shootdown each): it writes the unit with
** pwrite. */
static int cq_cold(rmqi_store *s, int cold_ok)
{
  return cold_ok && atomic_load_explicit(&s->nmapped, memory_order_relaxed) >= s->max_mapped;
}

/* Makes ConsumeQueue file f on disk without mapping it. */
static int cq_create_unmapped(mfile *f)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
  int fd = OS->open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  struct stat st;
  int rc = RMQ_OK;
  if (OS->fstat(fd, &st) != 0) rc = rmqi_errno(errno, "fstat", path);
  else if (st.st_size != f->size && OS->ftruncate(fd, f->size) != 0) rc = rmqi_errno(errno, "ftruncate", path);
  OS->close(fd);
  return rc;
}

/* Writes one unit into q's file without a mapping (its blocks are
** allocated already). append_lock held. */
static int cq_unit_pwrite(rmqi_store *s, rmqi_queue *q, int64_t off, int64_t phys, int32_t size, int64_t tags_code)
{
  int64_t byte = off * RMQI_CQ_UNIT;
  mfile *f = mvec_at(&q->cq, byte / s->cq_size - q->first_file);
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, q->dir, f->start);
  uint8_t u[RMQI_CQ_UNIT];
  rmqi_put64(u, (uint64_t)phys);
  rmqi_put32(u + 8, (uint32_t)size);
  rmqi_put64(u + 12, (uint64_t)tags_code);
  int fd = OS->open(path, O_WRONLY, 0);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  ssize_t w = OS->pwrite(fd, u, sizeof u, (off_t)(byte - f->start));
  int rc = w == (ssize_t)sizeof u ? RMQ_OK : rmqi_errno(w < 0 ? errno : EIO, "pwrite", path);
  OS->close(fd);
  return rc;
}

/* append_lock held (or single-threaded open). Makes sure the ConsumeQueue
** file holding unit `off` exists with the unit's blocks allocated and
** returns a pointer to the unit; with cold_ok, *unit may be NULL (the file
** is left unmapped: cq_cold) and the caller writes with cq_unit_pwrite. */
static int cq_unit_ptr_mode(rmqi_store *s, rmqi_queue *q, int64_t off, uint8_t **unit, int cold_ok)
{
  mfile *c = q->cq_cur;
  if (c && off >= q->cur_lo && off < q->cur_hi) {
    /* The common case: the same mapped file as the last unit, its blocks
    ** allocated, its CLOCK bit set. */
    uint8_t *base = __atomic_load_n(&c->base, __ATOMIC_ACQUIRE);
    int64_t in = off * RMQI_CQ_UNIT - c->start;
    if (base && atomic_load_explicit(&c->used, memory_order_relaxed) &&
        atomic_load_explicit(&c->alloc, memory_order_relaxed) >= in + RMQI_CQ_UNIT) {
      *unit = base + in;
      return RMQ_OK;
    }
  }
  int64_t byte = off * RMQI_CQ_UNIT;
  int64_t fidx = byte / s->cq_size - q->first_file;
  if (fidx < 0) return rmqi_err(RMQ_ECORRUPT, "queue %s/%d: offset %" PRId64 " before its first file", q->topic->name, q->qid, off);
  while (mvec_len(&q->cq) <= fidx) {
    /* Its directories and entry are synced by the next cq_flush, not here
    ** under append_lock: ConsumeQueues are flushed lazily and rebuilt from
    ** the CommitLog by recovery, whatever the flush type. */
    int rc = cq_mkdirs(s, q);
    if (rc) return rc;
    mfile *f = cq_file_new(q, (q->first_file + mvec_len(&q->cq)) * s->cq_size, s->cq_size);
    if (!f) return rmqi_err(RMQ_ENOMEM, "out of memory adding a file to %s", q->dir);
    pthread_mutex_lock(cq_lock(s, q));
    /* Files before the one wanted (a record far ahead of its queue: a
    ** rebuild of damage) are made but not mapped: tens of thousands of
    ** mappings at once would meet vm.max_map_count. */
    rc = cq_cold(s, cold_ok) || mvec_len(&q->cq) < fidx ? cq_create_unmapped(f) : cq_map(s, f, 1);
    if (!rc && (rc = mvec_push(&q->cq, f))) cq_unmap(s, f);
    pthread_mutex_unlock(cq_lock(s, q));
    if (rc) { rmqi_free(f, sizeof *f); return rc; }
    atomic_store(&q->dir_dirty, 1);
  }
  mfile *f = mvec_at(&q->cq, fidx);
  if (!__atomic_load_n(&f->base, __ATOMIC_ACQUIRE) || !atomic_load_explicit(&f->used, memory_order_relaxed)) {
    pthread_mutex_lock(cq_lock(s, q));
    int rc = f->base || !cq_cold(s, cold_ok) ? cq_map(s, f, 1) : RMQ_OK;
    pthread_mutex_unlock(cq_lock(s, q));
    if (rc) return rc;
  }
  int64_t in = byte - f->start;
  if (atomic_load_explicit(&f->alloc, memory_order_relaxed) < in + RMQI_CQ_UNIT) {
    /* Small steps for a small queue (thousands of queues with a few
    ** messages each must not take 64 KiB each), larger as it grows. */
    int64_t step = atomic_load_explicit(&f->alloc, memory_order_relaxed);
    step = step < 4096 ? 4096 : step > CQ_CHUNK ? CQ_CHUNK : step;
    int rc = mfile_reserve(s, q->dir, f, in + RMQI_CQ_UNIT, step);
    if (rc) return rc;
  }
  uint8_t *base = __atomic_load_n(&f->base, __ATOMIC_ACQUIRE);
  *unit = base ? base + in : NULL;
  q->cq_cur = f;
  q->cur_lo = f->start / RMQI_CQ_UNIT;
  q->cur_hi = (f->start + f->size) / RMQI_CQ_UNIT;
  return RMQ_OK;
}

static int cq_unit_ptr(rmqi_store *s, rmqi_queue *q, int64_t off, uint8_t **unit)
{
  return cq_unit_ptr_mode(s, q, off, unit, 0);
}

static void unit_write(uint8_t *u, int64_t phys, int32_t size, int64_t tags_code)
{
  rmqi_put64(u, (uint64_t)phys);
  rmqi_put32(u + 8, (uint32_t)size);
  rmqi_put64(u + 12, (uint64_t)tags_code);
}

static inline int store_ts_off(const uint8_t *rec)
{
  return (rmqi_get32(rec + RMQI_OFF_SYSFLAG) & RMQI_SYSFLAG_BORNHOST_V6) ? 68 : 56;
}

/* append_lock held. Writes CommitLog bytes at pos. Under SYNC_FLUSH through
** pwrite, not the mapping: a page written through a writable mapping must be
** write-protected by every sync (a TLB shootdown) and faulted writable again
** by the next send, about a fifth of the cost of a one-record sync. RocketMQ's
** transientStorePool likewise writes through the file. */
static int cl_write(rmqi_store *s, mfile *f, int64_t pos, const void *buf, size_t len)
{
  if (s->o.flush_disk_type != RMQ_SYNC_FLUSH) {
    /* The page cache (and so the disk, after a power cut) may see a record
    ** half copied: memcpy stores the head and the tail of a few hundred
    ** bytes before its middle. Left so, a cut kept a record whose header
    ** and body (the CRC's only span) were whole and whose properties were
    ** partly zeros: recovery kept it, a message never sent (seen in the
    ** ASYNC torn512 power-cut sample). TOTALSIZE and MAGIC go last, after a
    ** full fence (x86 lets a fast-string copy's stores pass each other):
    ** whoever sees them sees the rest of the record. */
    uint8_t *d = f->base + (pos - f->start);
    if (len > 8) {
      memcpy(d + 8, (const uint8_t *)buf + 8, len - 8);
      atomic_thread_fence(memory_order_seq_cst);
      memcpy(d, buf, 8);
    } else {
      memcpy(d, buf, len);
    }
    return RMQ_OK;
  }
  const uint8_t *b = buf;
  off_t off = (off_t)(pos - f->start);
  while (len > 0) {
    ssize_t w = OS->pwrite(f->fd, b, len, off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      char path[4200];
      snprintf(path, sizeof path, "%s/%020" PRId64, s->cl_dir, f->start);
      /* Not sticky: a failed write takes back what it placed (put_undo) and
      ** nothing acknowledged depends on it; the next put writes there again. */
      return rmqi_errno(w < 0 ? errno : EIO, "pwrite", path);
    }
    b += w;
    len -= (size_t)w;
    off += w;
  }
  return RMQ_OK;
}

/* Allocates CommitLog file idx's blocks up to log offset `end` (a chunk at
** a time) before anything is stored there through the mapping. */
static int cl_reserve(rmqi_store *s, int64_t idx, int64_t end)
{
  mfile *f = mvec_at(&s->cl, idx);
  if (atomic_load_explicit(&f->alloc, memory_order_relaxed) >= end - f->start) return RMQ_OK;
  /* A chunk at a time: look at the disk before taking the next one, so
  ** the disk-full mark stops sends within a chunk of the level. */
  disk_check(s);
  if (atomic_load(&s->disk_full))
    return rmqi_err(RMQ_ENOSPC, "service not available now: the broker's disk is full (%s is %d%% used, over "
                    "disk_space_warning_level_ratio %d)", s->dir, atomic_load(&s->disk_used_pct),
                    s->o.disk_space_warning_level_ratio);
  return mfile_reserve(s, s->cl_dir, f, end - f->start, CL_CHUNK);
}

/* A failed pass 2 leaves nothing published: records [0, i) give back the
** queue offsets they took, and their units are zeroed, so that none is left
** past its queue's end for a later flush to make durable (the next put to
** the queue would overwrite it, a close or a crash would not). */
static void put_undo(rmqi_store *s, rmqi_put *p, int i)
{
  while (i-- > 0) {
    if (!p[i].q) continue;
    uint8_t *u;
    if (cq_unit_ptr_mode(s, p[i].q, p[i].queue_offset, &u, 1) == RMQ_OK) {
      if (u) unit_write(u, 0, 0, 0);
      else cq_unit_pwrite(s, p[i].q, p[i].queue_offset, 0, 0, 0);
    }
    p[i].q->next_offset--;
  }
}

/* Stores into every 4 KiB page of [p, p + len) from this thread, changing
** nothing: an atomic add of 0 to its first word, safe beside a sender's
** store to the same bytes. On this VM a page populated by MADV_POPULATE_WRITE
** still exits to the hypervisor at the first user store into it (~5 us);
** after one from any thread of the process it no longer does (0.04 us). So
** helper threads touch the pages senders are about to write. The TSan build
** goes without: the add is a race by the C memory model's letter. */
static void touch_pages(uint8_t *p, size_t len)
{
#if !defined(__SANITIZE_THREAD__)
  for (size_t o = 0; o < len; o += 4096) __atomic_fetch_add((uint32_t *)(void *)(p + o), 0, __ATOMIC_RELAXED);
#else
  (void)p; (void)len;
#endif
}

/* The unit at qoff opened a new CQ_CHUNK of its file: fault in the next
** chunk in one call rather than a fault per page on the send path. Called
** after append_lock is let go (a sender needs that chunk only ~3,000 units
** later), under q's stripe lock, which eviction takes too. Not under
** SYNC_FLUSH, whose syncs would write the zeros. */
static void cq_prefault(rmqi_store *s, rmqi_queue *q, int64_t qoff)
{
  int64_t byte = (qoff * RMQI_CQ_UNIT / CQ_CHUNK + 1) * CQ_CHUNK;
  pthread_mutex_t *l = cq_lock(s, q);
  pthread_mutex_lock(l);
  mfile *f = mvec_at(&q->cq, byte / s->cq_size - q->first_file);
  if (f && !f->gone && f->base && byte >= f->start && byte + CQ_CHUNK <= f->start + f->size &&
      mfile_reserve(s, q->dir, f, byte - f->start + CQ_CHUNK, CQ_CHUNK) == RMQ_OK) {
    madvise(f->base + (byte - f->start), CQ_CHUNK, MADV_POPULATE_WRITE);
    touch_pages(f->base + (byte - f->start), CQ_CHUNK);
  }
  pthread_mutex_unlock(l);
}

/* Has the prefaulter fault in q's next ConsumeQueue chunk after unit qoff,
** or does it here when there is none (or its list is full). */
static void cq_prefault_ask(rmqi_store *s, rmqi_queue *q, int64_t qoff)
{
  if (s->pf_running) {
    pthread_mutex_lock(&s->pf_lock);
    int queued = s->ncq_pf < (int)(sizeof s->cq_pf / sizeof s->cq_pf[0]);
    if (queued) {
      s->cq_pf[s->ncq_pf].q = q;
      s->cq_pf[s->ncq_pf++].qoff = qoff;
      pthread_cond_signal(&s->pf_cond);
    }
    pthread_mutex_unlock(&s->pf_lock);
    if (queued) return;
  }
  cq_prefault(s, q, qoff);
}

static void gen_wait(atomic_uint *gen, unsigned seen, int64_t us);
static void gen_wake_all(atomic_uint *gen);

RMQI_FUNC int rmqi_store_put(rmqi_store *s, rmqi_put *p, int n)
{
  int rc = RMQ_OK;
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  if (atomic_load_explicit(&s->failed, memory_order_relaxed)) return store_failed_err(s);
  const int via_map = s->o.flush_disk_type != RMQ_SYNC_FLUSH; /* see cl_write */
  if (atomic_load_explicit(&s->disk_full, memory_order_relaxed)) {
    disk_check(s); /* it may have been freed since */
    if (atomic_load(&s->disk_full))
      return rmqi_err(RMQ_ENOSPC, "service not available now: the broker's disk is full (%s is %d%% used, over "
                      "disk_space_warning_level_ratio %d)", s->dir, atomic_load(&s->disk_used_pct),
                      s->o.disk_space_warning_level_ratio);
  }
  pthread_mutex_lock(&s->append_lock);
  /* The caller may pass the time it read just before; store times never go
  ** back in CommitLog order. */
  int64_t now = p[0].store_ts > 0 ? p[0].store_ts : rmqi_now(s->env);
  int64_t last = atomic_load_explicit(&s->last_store_ts, memory_order_relaxed);
  if (now < last) now = last;
  int64_t pos = s->write_pos;
  const int64_t start_pos = pos;
  rmqi_queue *pfq[8]; /* queues whose next ConsumeQueue chunk to fault in, after the lock */
  int64_t pfoff[8];
  int npf = 0;
  /* Pass 1: place every record and create the files they need, so a failure
  ** leaves nothing half written. */
  for (int i = 0; i < n; i++) {
    if (p[i].q && atomic_load_explicit(&p[i].q->topic->deleted, memory_order_relaxed)) {
      rc = rmqi_err(RMQ_ENOTOPIC, "topic %s was deleted", p[i].q->topic->name);
      goto out_unlock;
    }
    if ((int64_t)p[i].size + RMQI_END_FILE_MIN_BLANK > s->cl_size) {
      rc = rmqi_err(RMQ_EMSGSIZE, "record of %u bytes does not fit a CommitLog file of %" PRId64 " bytes",
                    p[i].size, s->cl_size);
      goto out_unlock;
    }
    int64_t fidx = cl_index(s, pos);
    int64_t fend = s->cl_base + (fidx + 1) * s->cl_size;
    if (pos + p[i].size + RMQI_END_FILE_MIN_BLANK > fend) {
      if (via_map && (rc = cl_reserve(s, fidx, pos + RMQI_END_FILE_MIN_BLANK))) goto out_unlock; /* the BLANK */
      pos = fend;
      fidx++;
    }
    rc = cl_file_ensure(s, fidx);
    if (rc) goto out_unlock;
    if (via_map && (rc = cl_reserve(s, fidx, pos + p[i].size))) goto out_unlock;
    p[i].phys_offset = pos;
    pos += p[i].size;
    if (p[i].q) {
      uint8_t *u;
      /* Its queue offset: a batch's records share a queue (RocketMQ's rule),
      ** so the previous record's offset + 1 is the common answer. */
      int64_t qoff = p[i].q->next_offset;
      if (i > 0 && p[i - 1].q == p[i].q) qoff = p[i - 1].queue_offset + 1;
      else for (int j = 0; j < i; j++) if (p[j].q == p[i].q) qoff++;
      p[i].queue_offset = qoff;
      rc = cq_unit_ptr_mode(s, p[i].q, qoff, &u, 1);
      if (rc) goto out_unlock;
    }
  }
  /* Pass 2: write. */
  pos = s->write_pos;
  for (int i = 0; i < n; i++) {
    if (p[i].phys_offset != pos) {
      /* The rest of this file gets the BLANK end record. */
      mfile *f = mvec_at(&s->cl, cl_index(s, pos));
      uint8_t blank[8];
      rmqi_put32(blank, (uint32_t)(p[i].phys_offset - pos));
      rmqi_put32(blank + 4, RMQI_MAGIC_BLANK);
      if ((rc = cl_write(s, f, pos, blank, 8))) { put_undo(s, p, i); goto out_unlock; }
      /* Retention ages a file from its last write, on the broker's clock:
      ** its mtime says the same to the next open (and to RocketMQ). */
      atomic_store(&f->last_ts, now);
      struct timespec tv[2] = {{0, UTIME_OMIT}, {(time_t)(now / 1000), (long)(now % 1000) * 1000000}};
      OS->futimens(f->fd, tv);
      pos = p[i].phys_offset;
    }
    uint8_t *rec = p[i].rec;
    int64_t qoff = 0;
    if (p[i].q) qoff = p[i].q->next_offset;
    p[i].queue_offset = qoff;
    p[i].store_ts = now;
    rmqi_put64(rec + RMQI_OFF_QUEUEOFFSET, (uint64_t)qoff);
    rmqi_put64(rec + RMQI_OFF_PHYSOFFSET, (uint64_t)pos);
    rmqi_put64(rec + store_ts_off(rec), (uint64_t)now);
    mfile *f = mvec_at(&s->cl, cl_index(s, pos));
    if ((rc = cl_write(s, f, pos, rec, p[i].size))) { put_undo(s, p, i); goto out_unlock; }
    if (p[i].q) {
      uint8_t *u;
      /* The file exists and the unit's blocks are allocated (pass 1). */
      rc = cq_unit_ptr_mode(s, p[i].q, qoff, &u, 1);
      if (!rc && u) unit_write(u, pos, (int32_t)p[i].size, p[i].tags_code);
      else if (!rc) rc = cq_unit_pwrite(s, p[i].q, qoff, pos, (int32_t)p[i].size, p[i].tags_code);
      if (rc) { put_undo(s, p, i); goto out_unlock; }
      p[i].q->next_offset++;
      atomic_store_explicit(&p[i].q->last_phys, pos, memory_order_relaxed);
      /* Not for a queue's first chunk: a queue with a few messages must
      ** not cost 64 KiB more of disk and memory. */
      if (s->o.flush_disk_type == RMQ_ASYNC_FLUSH && (qoff * RMQI_CQ_UNIT) % CQ_CHUNK < RMQI_CQ_UNIT &&
          qoff * RMQI_CQ_UNIT >= CQ_CHUNK && npf < (int)(sizeof pfq / sizeof *pfq)) {
        pfq[npf] = p[i].q;
        pfoff[npf++] = qoff;
      }
      int64_t in_file = (qoff * RMQI_CQ_UNIT) % s->cq_size;
      if (s->pf_running && in_file >= s->cq_size / 2 && in_file < s->cq_size / 2 + RMQI_CQ_UNIT)
        cq_want_next(s, p[i].q);
    }
    pos += p[i].size;
  }
  s->write_pos = pos;
  /* Statistics: counters only, no lock beyond this one. */
  atomic_fetch_add_explicit(&s->put_stat.nums, n, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->put_stat.size, pos - start_pos, memory_order_relaxed);
  for (int i = 0; i < n; i++)
    if (p[i].q) {
      rmqi_stat *ts = &p[i].q->topic->stat;
      atomic_fetch_add_explicit(&ts->nums, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&ts->size, p[i].size, memory_order_relaxed);
    }
  /* Publish the CommitLog end first, then the queue ends: a reader that sees
  ** a unit must find its record inside the published CommitLog. */
  atomic_store_explicit(&s->last_store_ts, now, memory_order_release);
  /* The store must be ordered before the load of `waiters` below (see
  ** rmqi_store_wait). A seq_cst store waits for every byte this put wrote
  ** to leave the store buffer (half of a put's own time with two senders);
  ** where waiters fence all threads with membarrier, a release store and a
  ** compiler barrier do. */
  if (s->membarrier) {
    atomic_store_explicit(&s->published, pos, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
  } else {
    atomic_store(&s->published, pos);
  }
  for (int i = 0; i < n; i++)
    if (p[i].q) atomic_store_explicit(&p[i].q->max_offset, p[i].q->next_offset, memory_order_release);
out_unlock:
  pthread_mutex_unlock(&s->append_lock);
  for (int k = 0; rc == RMQ_OK && k < npf; k++) cq_prefault_ask(s, pfq[k], pfoff[k]);
  if (rc == RMQ_OK && s->pf_running) {
    /* Wake the prefaulter when it is less than half its window ahead. */
    /* Or when the put entered a new file: the one after it is to be made. */
    if ((pos + atomic_load_explicit(&s->pf_window, memory_order_relaxed) / 2 >
             atomic_load_explicit(&s->pf_upto, memory_order_relaxed) ||
         cl_index(s, pos - 1) != cl_index(s, start_pos - 1)) &&
        (pos - 1) / CL_CHUNK != (start_pos - 1) / CL_CHUNK) {
      pthread_mutex_lock(&s->pf_lock);
      pthread_cond_signal(&s->pf_cond);
      pthread_mutex_unlock(&s->pf_lock);
    }
  } else if (rc == RMQ_OK && s->o.flush_disk_type == RMQ_ASYNC_FLUSH &&
      (pos - 1) / CL_CHUNK != (start_pos - 1) / CL_CHUNK) {
    /* Entering a new chunk: fault in the next one now, in one call, instead
    ** of one page fault per 4 KiB on the send path (DESIGN.md 10). Not under
    ** SYNC_FLUSH, where each sync would write the prefaulted zeros. */
    int64_t next = ((pos - s->cl_base) / CL_CHUNK + 1) * CL_CHUNK + s->cl_base;
    mfile *f = mvec_at(&s->cl, cl_index(s, next));
    if (f && next + CL_CHUNK <= f->start + f->size &&
        mfile_reserve(s, s->cl_dir, f, next + CL_CHUNK - f->start, CL_CHUNK) == RMQ_OK)
      madvise(f->base + (next - f->start), CL_CHUNK, MADV_POPULATE_WRITE);
  }
  cq_evict(s); /* the appends may have mapped ConsumeQueue files */
  if (rc == RMQ_OK) {
    /* `published` (stored seq_cst above) is what waiters watch. */
    if (atomic_load(&s->waiters) > 0) {
      atomic_fetch_add(&s->wake_word, 1);
      gen_wake_all(&s->wake_word);
    }
  }
  return rc;
}

static void abs_deadline(struct timespec *ts, int timeout_ms)
{
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += timeout_ms / 1000;
  ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

/* Prefaulter: makes queue q's next ConsumeQueue file outside append_lock
** and installs it unless the queue's sender got there first. */
static void cq_file_make_next(rmqi_store *s, rmqi_queue *q)
{
  int len = mvec_len(&q->cq);
  int64_t start = (q->first_file + len) * s->cq_size;
  char path[4200];
  snprintf(path, sizeof path, "%s/%020" PRId64, q->dir, start);
  /* The slow part (a new directory entry) here; the sender maps it. */
  int fd = OS->open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) return; /* the sender retries and reports */
  int sized = OS->ftruncate(fd, s->cq_size) == 0;
  OS->close(fd);
  if (!sized) return;
  mfile *f = cq_file_new(q, start, s->cq_size);
  if (!f) return;
  pthread_mutex_lock(&s->append_lock);
  if (mvec_len(&q->cq) == len && mvec_push(&q->cq, f) == RMQ_OK) {
    f = NULL;
    atomic_store(&q->dir_dirty, 1);
  }
  pthread_mutex_unlock(&s->append_lock);
  if (f) rmqi_free(f, sizeof *f);
}

/* Faults in the CommitLog chunk at pf_next (making its file when needed)
** and moves on. Returns 0 when there is nothing it can do. */
static int prefault_step(rmqi_store *s)
{
  int64_t idx = (s->pf_next - s->cl_base) / s->cl_size;
  int rc = cl_file_make_next(s, idx);
  if (rc) return 0; /* the sender meets the same error and reports it */
  mfile *f = mvec_at(&s->cl, idx);
  int64_t fend = f->start + f->size;
  if (s->pf_next + CL_CHUNK <= fend) {
    /* Allocate before faulting in: the disk may be full (then the sender
    ** meets ENOSPC from its own reserve; the prefaulter tries again later). */
    if (mfile_reserve(s, s->cl_dir, f, s->pf_next + CL_CHUNK - f->start, CL_CHUNK)) return 0;
    madvise(f->base + (s->pf_next - f->start), CL_CHUNK, MADV_POPULATE_WRITE);
    touch_pages(f->base + (s->pf_next - f->start), CL_CHUNK);
    s->pf_next += CL_CHUNK;
  }
  if (s->pf_next + CL_CHUNK > fend) s->pf_next = fend; /* a partial tail chunk is left to faults */
  atomic_store_explicit(&s->pf_upto, s->pf_next, memory_order_relaxed);
  return 1;
}

static void *prefault_main(void *arg)
{
  rmqi_store *s = arg;
  pthread_mutex_lock(&s->pf_lock);
  while (!s->pf_stop) {
    if (s->ncq_pf > 0) {
      s->ncq_pf--;
      rmqi_queue *q = s->cq_pf[s->ncq_pf].q;
      int64_t qoff = s->cq_pf[s->ncq_pf].qoff;
      s->pf_making = q; /* topic deletion waits for it (as for a file being made) */
      pthread_mutex_unlock(&s->pf_lock);
      if (!atomic_load(&q->topic->deleted)) cq_prefault(s, q, qoff);
      pthread_mutex_lock(&s->pf_lock);
      s->pf_making = NULL;
      pthread_cond_broadcast(&s->pf_cond);
      continue;
    }
    if (s->ncq_want > 0) {
      rmqi_queue *q = s->cq_want[--s->ncq_want];
      s->pf_making = q;
      pthread_mutex_unlock(&s->pf_lock);
      if (!atomic_load(&q->topic->deleted)) cq_file_make_next(s, q);
      pthread_mutex_lock(&s->pf_lock);
      s->pf_making = NULL;
      pthread_cond_broadcast(&s->pf_cond);
      continue;
    }
    int64_t pub = atomic_load_explicit(&s->published, memory_order_relaxed);
    int64_t now = rmqi_mono_us();
    if (now - s->pf_rate_us >= PREFAULT_RATE_US) {
      int64_t w = (pub - s->pf_rate_pos) * PREFAULT_RATE_US / (now - s->pf_rate_us);
      w = (w + CL_CHUNK - 1) / CL_CHUNK * CL_CHUNK;
      atomic_store_explicit(&s->pf_window, w < PREFAULT_MIN ? PREFAULT_MIN : w > PREFAULT_MAX ? PREFAULT_MAX : w,
                            memory_order_relaxed);
      s->pf_rate_pos = pub;
      s->pf_rate_us = now;
    }
    int64_t want = pub + atomic_load_explicit(&s->pf_window, memory_order_relaxed);
    if (s->pf_next >= want) {
      /* The file after the one being written exists early whatever the
      ** window, as RocketMQ's AllocateMappedFileService makes it: making a
      ** file can wait on the disk, and a small window reaches it late. */
      int64_t next = cl_index(s, pub) + 1;
      if (mvec_len(&s->cl) == next) {
        pthread_mutex_unlock(&s->pf_lock);
        int rc = cl_file_make_next(s, next);
        pthread_mutex_lock(&s->pf_lock);
        if (rc == RMQ_OK || s->pf_stop) continue;
        struct timespec dl; /* the sender meets the error itself; try again later */
        abs_deadline(&dl, 1000);
        pthread_cond_timedwait(&s->pf_cond, &s->pf_lock, &dl);
        continue;
      }
      pthread_cond_wait(&s->pf_cond, &s->pf_lock);
      continue;
    }
    pthread_mutex_unlock(&s->pf_lock);
    int more = prefault_step(s);
    pthread_mutex_lock(&s->pf_lock);
    if (!more && !s->pf_stop) {
      /* A full disk (or a file call failing): try again in a while, so
      ** that sending picks up again once space is freed. */
      struct timespec dl;
      abs_deadline(&dl, 1000);
      pthread_cond_timedwait(&s->pf_cond, &s->pf_lock, &dl);
    }
  }
  pthread_mutex_unlock(&s->pf_lock);
  return NULL;
}

static void prefault_start(rmqi_store *s)
{
  if (!s->o.service_thread || s->o.flush_disk_type != RMQ_ASYNC_FLUSH || s->cl_size < 2 * CL_CHUNK) return;
  /* Start at the chunk after the one being written. */
  s->pf_next = s->cl_base + ((s->write_pos - s->cl_base) / CL_CHUNK + 1) * CL_CHUNK;
  atomic_store(&s->pf_window, PREFAULT_MIN);
  s->pf_rate_pos = s->write_pos;
  s->pf_rate_us = rmqi_mono_us();
  atomic_store(&s->pf_upto, s->pf_next);
  if (pthread_create(&s->pf_thread, NULL, prefault_main, s) == 0) s->pf_running = 1;
}

RMQI_FUNC void rmqi_thread_stop(pthread_mutex_t *m, pthread_cond_t *c, int *stop, pthread_t t)
{
  pthread_mutex_lock(m);
  *stop = 1;
  pthread_cond_signal(c);
  pthread_mutex_unlock(m);
  pthread_join(t, NULL);
}

static void prefault_stop(rmqi_store *s)
{
  if (!s->pf_running) return;
  rmqi_thread_stop(&s->pf_lock, &s->pf_cond, &s->pf_stop, s->pf_thread);
  s->pf_running = 0;
}

/* Takes a reference on the live CommitLog file holding [phys, phys + size):
** NULL when out of range or the file was deleted (a reference is never
** raised from 0, so a file being destroyed is never resurrected). */
static mfile *cl_pin(rmqi_store *s, int64_t phys, int32_t size, int64_t max)
{
  if (phys < s->cl_base || size <= 0 || phys > max - size) return NULL;
  mfile *f = mvec_at(&s->cl, cl_index(s, phys));
  if (!f || phys + size > f->start + f->size) return NULL;
  int r = atomic_load_explicit(&f->refs, memory_order_relaxed);
  do {
    if (r <= 0) return NULL;
  } while (!atomic_compare_exchange_weak_explicit(&f->refs, &r, r + 1, memory_order_acquire, memory_order_relaxed));
  return f;
}

/* Drops a reference; the last one unmaps and closes a deleted file. */
static void cl_unpin(mfile *f)
{
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) return;
  uint8_t *base = f->base;
  f->base = NULL;
  if (base) OS->munmap(base, (size_t)f->size);
  if (f->fd >= 0) OS->close(f->fd);
  f->fd = -1;
}

RMQI_FUNC const uint8_t *rmqi_store_record_pin(rmqi_store *s, int64_t phys, int32_t size, void **pin)
{
  mfile *f = cl_pin(s, phys, size, rmqi_store_max_phys(s));
  *pin = f;
  return f ? f->base + (phys - f->start) : NULL;
}

RMQI_FUNC void rmqi_store_unpin(void *pin)
{
  if (pin) cl_unpin(pin);
}

RMQI_FUNC const uint8_t *rmqi_store_record_at(rmqi_store *s, int64_t phys, rmqi_record *r, void **pin)
{
  *pin = NULL;
  int64_t max = rmqi_store_max_phys(s);
  mfile *f = cl_pin(s, phys, RMQI_END_FILE_MIN_BLANK, max);
  if (!f) {
    rmqi_err(RMQ_ENOTFOUND, "no record at CommitLog offset %" PRId64 " (stored: %" PRId64 "..%" PRId64 ")", phys,
             rmqi_store_min_phys(s), max);
    return NULL;
  }
  int64_t lim = f->start + f->size < max ? f->start + f->size : max;
  const uint8_t *rec = f->base + (phys - f->start);
  if (rmqi_record_decode(rec, (size_t)(lim - phys), 0, r) != RMQ_OK || r->phys_offset != phys) {
    cl_unpin(f);
    rmqi_err(RMQ_ENOTFOUND, "no record starts at CommitLog offset %" PRId64, phys);
    return NULL;
  }
  *pin = f;
  return rec;
}

RMQI_FUNC int rmqi_store_scan(rmqi_store *s, int64_t from, int64_t to, rmqi_scan_fn fn, void *ctx)
{
  int64_t max = rmqi_store_max_phys(s);
  if (to > max) to = max;
  if (from < rmqi_store_min_phys(s)) from = rmqi_store_min_phys(s);
  int64_t phys = from;
  while (phys < to) {
    mfile *f = cl_pin(s, phys, 8, max);
    if (!f) {
      /* The start of a file, or a file retention took meanwhile. */
      int64_t next = s->cl_base + (cl_index(s, phys) + 1) * s->cl_size;
      if (next <= phys) break;
      phys = next;
      continue;
    }
    int64_t off = phys - f->start, lim = to - f->start < f->size ? to - f->start : f->size;
    int rc = RMQ_OK;
    while (off + 8 <= lim) {
      rmqi_record r;
      int drc = rmqi_record_decode(f->base + off, (size_t)(lim - off), 0, &r);
      if (drc == RMQ_ENOTFOUND) { off = f->size; break; } /* BLANK: the file's end */
      if (drc) {
        /* Damage the open skipped: on to the next file. */
        rmqi_log(s->env, RMQ_LOG_WARN, "scan: unreadable record at %" PRId64 ", rest of its file skipped", f->start + off);
        off = f->size;
        break;
      }
      rc = fn(ctx, &r, f->start + off);
      if (rc) break;
      off += r.total;
    }
    int64_t next = off + 8 > f->size ? f->start + f->size : f->start + off;
    cl_unpin(f);
    if (rc) return rc;
    if (next <= phys) break;
    phys = next;
  }
  return RMQ_OK;
}

RMQI_FUNC int64_t rmqi_store_recovery_from(rmqi_store *s) { return s->scan_from; }

RMQI_FUNC int rmqi_store_cq_file_size(rmqi_store *s) { return s->cq_size; }

static int64_t last_nonzero(const mfile *f, int64_t from);
static int64_t data_next(int fd, int64_t from, int64_t to, int64_t *end);
static int64_t resync(rmqi_store *s, const mfile *f, int64_t from);

RMQI_FUNC int rmqi_store_check_log(rmqi_store *s, rmqi_check_cb *cb)
{
  int64_t pub = rmqi_store_max_phys(s);
  int nf = mvec_len(&s->cl);
  char path[4200], what[700];
  for (int i = 0; i < nf; i++) {
    mfile *f = cl_pin(s, s->cl_base + (int64_t)i * s->cl_size, RMQI_END_FILE_MIN_BLANK, INT64_MAX);
    if (!f) continue; /* deleted by retention */
    snprintf(path, sizeof path, "%s/%020" PRId64, s->cl_dir, f->start);
    int last = i == nf - 1 || f->start + f->size >= pub;
    int64_t end = last ? pub - f->start : f->size;
    if (end > f->size) end = f->size;
    int64_t p = 0;
    int rc = RMQ_OK;
    while (p < end && !rc) {
      rmqi_record r;
      const char *bad = NULL;
      int drc = end - p >= RMQI_END_FILE_MIN_BLANK ? rmqi_record_decode(f->base + p, (size_t)(end - p), 1, &r) : RMQ_ECORRUPT;
      if (drc == RMQ_ENOTFOUND) {
        if (p + (int64_t)r.total == f->size) { p = f->size; break; }
        snprintf(what, sizeof what, "BLANK record of %u bytes does not end its file (%" PRId64 " bytes left)", r.total,
                 f->size - p);
        bad = what;
      } else if (drc != RMQ_OK) {
        snprintf(what, sizeof what, "%s", end - p < RMQI_END_FILE_MIN_BLANK ? "a record cut short" : rmq_errmsg());
        bad = what;
      } else if (r.phys_offset != f->start + p) {
        snprintf(what, sizeof what, "PHYSICALOFFSET says %" PRId64, r.phys_offset);
        bad = what;
      }
      if (bad) {
        cb->problems++;
        cb->problem(cb->ctx, path, p, bad);
        int64_t next = resync(s, f, p + 1);
        if (next < 0 || next >= end) { p = end; break; }
        cb->bytes += next - p;
        p = next;
        continue;
      }
      cb->records++;
      cb->bytes += r.total;
      rc = cb->record ? cb->record(cb->ctx, &r, f->start + p) : RMQ_OK;
      p += r.total;
    }
    if (!rc && !last && p < f->size && last_nonzero(f, p) <= p) {
      cb->problems++;
      cb->problem(cb->ctx, path, p, "the file ends in zeros without a BLANK record (records after it would be lost)");
    }
    cl_unpin(f);
    if (rc) return rc;
  }
  return RMQ_OK;
}


RMQI_FUNC void rmqi_store_note_bad_unit(rmqi_store *s)
{
  if (atomic_exchange(&s->bad_unit_noted, 1)) return;
  if (s->o.read_only) {
    rmqi_log(s->env, RMQ_LOG_WARN, "a consume queue unit does not lead to its record (read-only: nothing repaired)");
    return;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/" REBUILD_MARK, s->dir);
  mark_rebuild(s->dir);
  rmqi_log(s->env, RMQ_LOG_WARN, "a consume queue unit does not lead to its record: %s written, the queues are "
           "rebuilt at the next open", path);
}

RMQI_FUNC const uint8_t *rmqi_store_record_span(rmqi_store *s, rmqi_cl_span *sp, int64_t phys, int32_t size)
{
  int64_t max = rmqi_store_max_phys(s);
  mfile *f = cl_pin(s, phys, size, max);
  if (!f) return NULL;
  rmqi_span_done(sp);
  sp->pin = f;
  sp->base = f->base;
  sp->start = f->start;
  sp->lo = f->start;
  sp->hi = f->start + f->size < max ? f->start + f->size : max;
  return f->base + (phys - f->start);
}

RMQI_FUNC void *rmqi_span_pin(rmqi_cl_span *sp)
{
  mfile *f = sp->pin;
  if (f) atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

RMQI_FUNC void rmqi_span_done(rmqi_cl_span *sp)
{
  if (sp->pin) cl_unpin(sp->pin);
  memset(sp, 0, sizeof *sp);
}

RMQI_FUNC int rmqi_queue_read_units(rmqi_queue *q, int64_t offset, uint8_t *buf, int max)
{
  rmqi_store *s = q->topic->s;
  int64_t end = rmqi_queue_max_offset(q);
  if (offset < 0 || offset >= end || max <= 0) return 0;
  int64_t byte = offset * RMQI_CQ_UNIT;
  mfile *f = mvec_at(&q->cq, byte / s->cq_size - q->first_file);
  if (!f) return 0;
  int64_t k = (f->start + f->size - byte) / RMQI_CQ_UNIT;
  if (k > end - offset) k = end - offset;
  if (k > max) k = max;
  pthread_mutex_t *l = cq_lock(s, q);
  pthread_mutex_lock(l);
  if (f->gone) { pthread_mutex_unlock(l); return 0; } /* retention deleted it: the queue's min moved past */
  int rc = cq_map(s, f, 0);
  if (rc == RMQ_OK) memcpy(buf, f->base + (byte - f->start), (size_t)k * RMQI_CQ_UNIT);
  pthread_mutex_unlock(l);
  if (rc) {
    rmqi_log(s->env, RMQ_LOG_ERROR, "reading queue %s/%d: %s", q->topic->name, q->qid, rmq_errmsg());
    return rc;
  }
  cq_evict(s);
  return (int)k;
}

RMQI_FUNC int64_t rmqi_queue_next_data(rmqi_queue *q, int64_t off, int64_t end)
{
  rmqi_store *s = q->topic->s;
  while (off < end) {
    int64_t byte = off * RMQI_CQ_UNIT;
    mfile *f = mvec_at(&q->cq, byte / s->cq_size - q->first_file);
    if (!f) return off; /* a file retention removed fails to open below */
    char path[4400];
    snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
    int fd = OS->open(path, O_RDONLY, 0);
    if (fd < 0) return off;
    int64_t d = data_next(fd, byte - f->start, f->size, NULL);
    OS->close(fd);
    if (d >= 0) {
      int64_t u = (f->start + d) / RMQI_CQ_UNIT;
      return u > off ? (u < end ? u : end) : off;
    }
    off = (f->start + f->size) / RMQI_CQ_UNIT; /* a file holds whole units */
  }
  return end;
}

RMQI_FUNC int64_t rmqi_queue_offset_by_time(rmqi_store *s, rmqi_queue *q, int64_t ts)
{
  int64_t lo = rmqi_queue_min_offset(q), hi = rmqi_queue_max_offset(q);
  /* First offset whose record's store time is >= ts (store times rise with
  ** CommitLog position, so with queue offset too). Pad units compare low. */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    uint8_t u[RMQI_CQ_UNIT];
    int64_t sts = INT64_MIN;
    if (rmqi_queue_read_units(q, mid, u, 1) == 1) {
      void *pin;
      const uint8_t *rec = rmqi_store_record_pin(s, (int64_t)rmqi_get64(u), (int32_t)rmqi_get32(u + 8), &pin);
      if (rec) sts = (int64_t)rmqi_get64(rec + store_ts_off(rec));
      rmqi_store_unpin(pin);
    }
    if (sts < ts) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* ======================================================================= */
/* Long polling                                                            */
/* ======================================================================= */

/* Both parts only grow, so their sum changes whenever either does. */
RMQI_FUNC uint64_t rmqi_store_seq(rmqi_store *s)
{
  return (uint64_t)atomic_load(&s->published) + atomic_load(&s->wake_cnt);
}

RMQI_FUNC void rmqi_store_wait(rmqi_store *s, uint64_t seen, int timeout_ms)
{
  int64_t until = rmqi_mono_us() + (int64_t)timeout_ms * 1000;
  /* waiters is raised before seq is re-read, and the appender bumps seq
  ** before reading waiters (both seq_cst): one of the two sees the other.
  ** The word is read before seq: a bump after that read fails the wait. */
  atomic_fetch_add(&s->waiters, 1);
  /* Every running thread of the process executes a full barrier: a put
  ** whose `published` this thread does not see next sees waiters > 0. */
#if defined(__linux__) && defined(SYS_membarrier)
  if (s->membarrier) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#endif
  for (;;) {
    unsigned w = atomic_load(&s->wake_word);
    if (rmqi_store_seq(s) != seen) break;
    int64_t left = until - rmqi_mono_us();
    if (left <= 0) break;
    gen_wait(&s->wake_word, w, left);
  }
  atomic_fetch_sub(&s->waiters, 1);
}

RMQI_FUNC void rmqi_store_wake(rmqi_store *s)
{
  atomic_fetch_add(&s->wake_cnt, 1);
  atomic_fetch_add(&s->wake_word, 1);
  gen_wake_all(&s->wake_word);
}

/* ======================================================================= */
/* Flushing                                                                */
/* ======================================================================= */

/* Remaps the whole chunks of f below file offset `upto` read-only. Writeback must
** write-protect every dirty page still mapped writable, one TLB shootdown
** (an IPI to the appending CPU) per page; a page with no writable mapping
** needs none. MAP_FIXED replaces the range atomically, so readers holding
** pointers into it keep seeing the same file pages. Flush leader only. */
static void seal(mfile *f, int64_t upto)
{
#if defined(__SANITIZE_THREAD__)
  /* ThreadSanitizer reads the MAP_FIXED remap as a write racing with every
  ** reader of those bytes; the remap changes only the pages' protection,
  ** so the TSan build goes without it. */
  (void)f; (void)upto;
  return;
#endif
  /* A huge mapping stays as it is: writeback write-protects one entry per
  ** 2 MiB, and a remap would split them. */
  if (f->huge) return;
  int64_t end = (upto - f->start) & ~(int64_t)(SEAL_CHUNK - 1);
  if (end > f->size) end = f->size;
  if (end <= f->ro_upto) return;
  void *p = OS->mmap(f->base + f->ro_upto, (size_t)(end - f->ro_upto), PROT_READ,
                     MAP_SHARED | MAP_FIXED | MAP_POPULATE, f->fd, (off_t)f->ro_upto);
  if (p != MAP_FAILED) f->ro_upto = end;
}

/* Syncs the CommitLog files holding [from, to). No lock needed: files are
** never removed while open. */
static int cl_sync_range(rmqi_store *s, int64_t from, int64_t to)
{
  if (to <= from) return RMQ_OK;
  int64_t a = (from - s->cl_base) / s->cl_size, b = (to - 1 - s->cl_base) / s->cl_size;
  for (int64_t i = a; i <= b; i++) {
    mfile *f = mvec_at(&s->cl, i);
    if (!f) continue;
    if (s->o.flush_disk_type != RMQ_SYNC_FLUSH) seal(f, to); /* SYNC_FLUSH writes by pwrite */
    int rc;
    if (s->pf_running) {
      /* The prefaulter keeps pages beyond `to` dirty (zeros) and mapped
      ** writable; fdatasync would write them and write-protect each one, an
      ** IPI per page, and the sender would fault on them again. msync syncs
      ** just the range, as fdatasync would (data and the metadata to reach it). */
      int64_t lo = (from > f->start ? from - f->start : 0) & ~(int64_t)4095;
      int64_t hi = to - f->start < f->size ? to - f->start : f->size;
      rc = RMQ_OK;
      if (OS->msync(f->base + lo, (size_t)(hi - lo), MS_SYNC) != 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%020" PRId64, s->cl_dir, f->start);
        rc = rmqi_errno(errno, "msync", path);
      }
    } else {
      rc = mfile_sync(s->cl_dir, f);
    }
    if (rc) return rc;
  }
  /* New files' directory entries, after their data: a flushed position is
  ** only published once its file's name is durable too. */
  if (atomic_exchange(&s->cl_dir_dirty, 0)) {
    int rc = fsync_dir(s->cl_dir);
    if (rc) { atomic_store(&s->cl_dir_dirty, 1); return rc; }
  }
  return RMQ_OK;
}

RMQI_FUNC void rmqi_store_sender_enter(rmqi_store *s) { atomic_fetch_add(&s->appending, 1); }
RMQI_FUNC void rmqi_store_sender_leave(rmqi_store *s) { atomic_fetch_sub(&s->appending, 1); }

/* One flush as leader: flush_lock NOT held. Returns the sync's code. */
static int flush_once(rmqi_store *s, int gather, int64_t cap)
{
  if (gather && s->o.group_commit_gather_us > 0 && atomic_load(&s->appending) > 0) {
    /* Other senders are between encoding and appending: waiting a moment
    ** lets one sync cover them too (DESIGN.md 10: ~8 -> ~16 records/sync). */
    int64_t until = rmqi_mono_us() + s->o.group_commit_gather_us;
    while (atomic_load(&s->appending) > 0 && rmqi_mono_us() < until) sched_yield();
  }
  int64_t ts = atomic_load_explicit(&s->last_store_ts, memory_order_acquire);
  int64_t target = atomic_load_explicit(&s->published, memory_order_acquire);
  int64_t from = atomic_load(&s->flushed);
  if (target > cap) {
    target = cap;
    /* Records up to cap only: the store time of the last of them is not
    ** at hand, so the checkpoint keeps the older one. */
    ts = atomic_load(&s->flushed_ts);
  }
  if (atomic_load(&s->failed)) return store_failed_err(s);
  int rc = store_fail(s, cl_sync_range(s, from, target), 1);
  if (rc == RMQ_OK) {
    pthread_mutex_lock(&s->flush_lock);
    if (target > atomic_load(&s->flushed)) {
      atomic_store(&s->flushed, target);
      atomic_store(&s->flushed_ts, ts);
    }
    pthread_mutex_unlock(&s->flush_lock);
  }
  return rc;
}

/* Sleeps while *gen == seen, at most us microseconds (spurious returns are
** fine: callers re-check). */
static void gen_wait(atomic_uint *gen, unsigned seen, int64_t us)
{
#ifdef __linux__
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  syscall(SYS_futex, (unsigned *)gen, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
#else
  (void)gen; (void)seen;
  struct timespec ts = {0, (long)(us < 50 ? us : 50) * 1000};
  nanosleep(&ts, NULL);
#endif
}

static void gen_wake_all(atomic_uint *gen)
{
#ifdef __linux__
  syscall(SYS_futex, (unsigned *)gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
  (void)gen;
#endif
}

/* Waits until the CommitLog is flushed to `end`, flushing as leader when no
** one else is; a leader flushes no further than cap. */
static int wait_flushed_cap(rmqi_store *s, int64_t end, int64_t cap, int timeout_ms)
{
  int64_t until = rmqi_mono_us() + (int64_t)timeout_ms * 1000;
  for (;;) {
    if (atomic_load(&s->flushed) >= end) return RMQ_OK;
    if (atomic_load(&s->failed)) return store_failed_err(s);
    int idle = 0;
    if (atomic_compare_exchange_strong(&s->flush_leader, &idle, 1)) {
      int rc = flush_once(s, 1, cap);
      atomic_store(&s->flush_leader, 0);
      atomic_fetch_add(&s->flush_gen, 1);
      gen_wake_all(&s->flush_gen);
      if (rc) return rc;
      continue;
    }
    /* Read the generation, then re-check: a leader that finished in between
    ** has bumped it, so the wait returns at once. */
    unsigned g = atomic_load(&s->flush_gen);
    if (atomic_load(&s->flushed) >= end) return RMQ_OK;
    if (!atomic_load(&s->flush_leader)) continue;
    int64_t left = until - rmqi_mono_us();
    if (left <= 0) return RMQ_ETIMEDOUT;
    gen_wait(&s->flush_gen, g, left);
  }
}

RMQI_FUNC int rmqi_store_wait_flushed(rmqi_store *s, int64_t end, int timeout_ms)
{
  return wait_flushed_cap(s, end, INT64_MAX, timeout_ms);
}

RMQI_FUNC int rmqi_store_flush_commitlog(rmqi_store *s)
{
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  int64_t end = rmqi_store_max_phys(s);
  if (atomic_load(&s->flushed) >= end) return RMQ_OK;
  return rmqi_store_wait_flushed(s, end, 60000);
}

/* cq_flush_lock held. Syncs every ConsumeQueue file with units written since
** its last flush. */
static int ix_flush(rmqi_store *s);

static int cq_flush(rmqi_store *s)
{
  if (atomic_load(&s->failed)) return store_failed_err(s);
  int64_t ts = atomic_load(&s->last_store_ts);
  int irc = ix_flush(s);
  if (irc) return irc;
  rmqi_topic **tab = atomic_load(&s->ttab);
  int cap = tab ? (int)(uintptr_t)tab[-1] : 0;
  for (int i = 0; i < cap; i++) {
    rmqi_topic *t = __atomic_load_n(&tab[i], __ATOMIC_ACQUIRE);
    if (!t || atomic_load(&t->deleted)) continue;
    for (int qid = 0; qid < topic_qcap(t); qid++) {
      rmqi_queue *q = rmqi_topic_queue(t, qid);
      if (!q) break;
      int64_t max = rmqi_queue_max_offset(q);
      if (atomic_exchange(&q->parents_dirty, 0)) {
        char tdir[4200];
        snprintf(tdir, sizeof tdir, "%s/%s", s->cq_root, t->name);
        int rc = fsync_dir(tdir);
        if (!rc) rc = fsync_dir(s->cq_root);
        if (rc) { atomic_store(&q->parents_dirty, 1); return store_fail(s, rc, 1); }
      }
      if (atomic_exchange(&q->dir_dirty, 0)) {
        int rc = fsync_dir(q->dir);
        if (rc) { atomic_store(&q->dir_dirty, 1); return store_fail(s, rc, 1); }
      }
      if (max <= q->flushed_units) continue;
      int64_t a = q->flushed_units * RMQI_CQ_UNIT / s->cq_size - q->first_file;
      int64_t b = ((max * RMQI_CQ_UNIT) - 1) / s->cq_size - q->first_file;
      for (int64_t k = a < 0 ? 0 : a; k <= b; k++) {
        mfile *f = mvec_at(&q->cq, k);
        if (!f || f->gone) continue;
        int rc = cq_sync(s, f);
        if (rc) return store_fail(s, rc, 1);
      }
      q->flushed_units = max;
    }
  }
  s->logics_ts = ts;
  return RMQ_OK;
}

/* The checkpoint's fields never move backwards: an open and close with no
** writes leaves the times RocketMQ's recovery relies on as they were. */
static int checkpoint_write(rmqi_store *s)
{
  uint8_t b[40];
  int64_t v[5] = {atomic_load(&s->flushed_ts), s->logics_ts, atomic_load(&s->ix_cp_ts), atomic_load(&s->flushed),
                  atomic_load(&s->flushed)};
  for (int i = 0; i < 5; i++) {
    if (v[i] < s->cp_old[i]) v[i] = s->cp_old[i];
    s->cp_old[i] = v[i];
    rmqi_put64(b + 8 * i, (uint64_t)v[i]);
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/checkpoint", s->dir);
  if (OS->pwrite(s->cp_fd, b, sizeof b, 0) != (ssize_t)sizeof b) return rmqi_errno(errno, "pwrite", path);
  if (OS->fdatasync(s->cp_fd) != 0) return store_fail(s, rmqi_errno(errno, "fdatasync", path), 1);
  return RMQ_OK;
}

RMQI_FUNC int rmqi_store_flush_all(rmqi_store *s)
{
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  int rc = rmqi_store_flush_commitlog(s);
  if (rc) return rc;
  pthread_mutex_lock(&s->cq_flush_lock);
  rc = cq_flush(s);
  if (!rc) rc = checkpoint_write(s);
  pthread_mutex_unlock(&s->cq_flush_lock);
  return rc;
}

/* Calls fn for every queue struct of every topic (topics made meanwhile
** may be missed). */
static void queue_each(rmqi_store *s, void (*fn)(rmqi_store *, rmqi_queue *, void *), void *ctx)
{
  rmqi_topic **tab = atomic_load(&s->ttab);
  int cap = tab ? (int)(uintptr_t)tab[-1] : 0; /* the table may grow meanwhile: this one's size */
  for (int i = 0; i < cap; i++) {
    rmqi_topic *t = __atomic_load_n(&tab[i], __ATOMIC_ACQUIRE);
    qvec *v = t && !atomic_load(&t->deleted) ? atomic_load(&t->qv) : NULL;
    for (int qid = 0; v && qid < v->cap; qid++) {
      rmqi_queue *q = atomic_load(&v->q[qid]);
      if (q) fn(s, q, ctx);
    }
  }
}

/* ======================================================================= */
/* Retention (RocketMQ's CleanCommitLogService, CleanConsumeQueueService)  */
/* ======================================================================= */

RMQI_FUNC int rmqi_delete_when_parse(const char *spec, uint32_t *hours)
{
  *hours = 0;
  const char *p = spec ? spec : "04";
  while (*p) {
    if (*p < '0' || *p > '9') goto bad;
    int h = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 3) h = h * 10 + (*p++ - '0'), digits++;
    if (h > 23 || digits > 2) goto bad;
    *hours |= 1u << h;
    if (*p == ';') p++;
    else if (*p) goto bad;
  }
  return RMQ_OK;
bad:
  return rmqi_err(RMQ_EINVAL, "delete_when '%s': expected hours 0..23 separated by ';' (e.g. \"04\" or \"04;05\")",
                  spec);
}

static int clamp_pct(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* cq_flush_lock held. Deletes CommitLog files from the head while they
** are expired (or at once), at most delete_file_batch_max: RocketMQ's
** deleteExpiredFileByTime. Never the file being written, nor one whose
** bytes are not all flushed (a flush may still be on its way to them).
** Returns how many; *rc gets an unlink failure. */
static int cl_delete_expired(rmqi_store *s, int64_t now, int at_once, int *rc)
{
  int64_t keep_ms = (int64_t)s->o.file_reserved_time * 3600 * 1000;
  int64_t flushed = atomic_load(&s->flushed), published = rmqi_store_max_phys(s);
  int nf = mvec_len(&s->cl), deleted = 0;
  for (int i = s->cl_dead; i < nf - 1 && deleted < s->o.delete_file_batch_max; i++) {
    mfile *f = mvec_at(&s->cl, i);
    int64_t end = f->start + f->size;
    if (end >= published || end > flushed) break;
    int64_t age = rmqi_sub_sat(now, atomic_load(&f->last_ts)); /* an mtime may be anything */
    if (!at_once && age < keep_ms) break;
    char path[4200];
    snprintf(path, sizeof path, "%s/%020" PRId64, s->cl_dir, f->start);
    if (OS->unlink(path) != 0 && errno != ENOENT) { *rc = rmqi_errno(errno, "unlink", path); break; }
    /* Readers see the new minimum before the file can go; views holding it
    ** keep it mapped until they end (cl_unpin). */
    atomic_store_explicit(&s->min_phys, end, memory_order_release);
    s->cl_dead = i + 1;
    cl_unpin(f);
    deleted++;
    rmqi_log(s->env, RMQ_LOG_INFO, "retention: deleted %s (%s, last written %" PRId64 " s ago)", path,
             at_once && age < keep_ms ? "disk over the clean-forcibly ratio" : "expired", age / 1000);
  }
  if (deleted) {
    /* Deleted in order and durably so: a crash must not bring back a later
    ** file without an earlier one (the log's files must follow each other). */
    int r = fsync_dir(s->cl_dir);
    if (!*rc) *rc = r;
  }
  return deleted;
}

/* Reads unit `off` of q, mapped or not, without mapping it (retention
** must not push the queues in use out of the mapping bound). */
static int cq_read_unit(rmqi_store *s, rmqi_queue *q, int64_t off, uint8_t *u)
{
  int64_t byte = off * RMQI_CQ_UNIT;
  pthread_mutex_t *l = cq_lock(s, q);
  pthread_mutex_lock(l);
  mfile *f = mvec_at(&q->cq, byte / s->cq_size - q->first_file);
  int rc = RMQ_ENOTFOUND;
  if (f && !f->gone && f->base) {
    memcpy(u, f->base + (byte - f->start), RMQI_CQ_UNIT);
    rc = RMQ_OK;
  } else if (f && !f->gone) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
    int fd = OS->open(path, O_RDONLY, 0);
    if (fd >= 0) {
      if (OS->pread(fd, u, RMQI_CQ_UNIT, (off_t)(byte - f->start)) == RMQI_CQ_UNIT) rc = RMQ_OK;
      OS->close(fd);
    }
  }
  pthread_mutex_unlock(l);
  return rc;
}

/* cq_flush_lock held. Moves q's min offset up to its first unit whose
** record is at or after min_cl (RocketMQ's correctMinOffset); units rise
** with the CommitLog, pads at a queue's head compare low. */
static void cq_correct_min(rmqi_store *s, rmqi_queue *q, int64_t min_cl)
{
  int64_t cur = rmqi_queue_min_offset(q), lo = cur, hi = rmqi_queue_max_offset(q);
  int64_t first = (q->first_file + q->cq_dead) * (int64_t)s->cq_size / RMQI_CQ_UNIT;
  if (lo < first) lo = first;
  uint8_t u[RMQI_CQ_UNIT];
  if (lo < hi && cq_read_unit(s, q, lo, u) == RMQ_OK && (int64_t)rmqi_get64(u) >= min_cl &&
      (int32_t)rmqi_get32(u + 8) != INT32_MAX)
    hi = lo; /* the usual case: already there */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (cq_read_unit(s, q, mid, u) != RMQ_OK) break;
    if ((int64_t)rmqi_get64(u) < min_cl || (int32_t)rmqi_get32(u + 8) == INT32_MAX) lo = mid + 1;
    else hi = mid;
  }
  if (lo > cur) atomic_store_explicit(&q->min_offset, lo, memory_order_release);
}

typedef struct cq_clean_ctx {
  int64_t min_cl;
  int files;
  int rc;
} cq_clean_ctx;

/* cq_flush_lock held. Deletes q's head files whose last unit points below
** the CommitLog's minimum (never its last file, nor one not fully
** written: no sender is in them), then corrects its min offset. */
static void cq_clean_queue(rmqi_store *s, rmqi_queue *q, void *arg)
{
  cq_clean_ctx *c = arg;
  int n = mvec_len(&q->cq);
  int64_t max = rmqi_queue_max_offset(q);
  if (n - q->cq_dead <= 1 && rmqi_queue_min_offset(q) >= max) return; /* empty: nothing to move or delete */
  /* Idle since before the new minimum: every unit is below it, no read. */
  int64_t lp = atomic_load_explicit(&q->last_phys, memory_order_relaxed);
  int all_below = lp >= 0 && lp < c->min_cl;
  uint8_t u[RMQI_CQ_UNIT];
  for (int k = q->cq_dead; k < n - 1; k++) {
    mfile *f = mvec_at(&q->cq, k);
    int64_t last = (f->start + f->size) / RMQI_CQ_UNIT - 1;
    if (last >= max) break;
    if (!all_below) {
      if (cq_read_unit(s, q, last, u) != RMQ_OK) break;
      if ((int64_t)rmqi_get64(u) >= c->min_cl && (int32_t)rmqi_get32(u + 8) != INT32_MAX) break;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
    pthread_mutex_t *l = cq_lock(s, q);
    pthread_mutex_lock(l);
    f->gone = 1;
    cq_unmap(s, f);
    pthread_mutex_unlock(l);
    q->cq_dead = k + 1;
    if (OS->unlink(path) != 0 && errno != ENOENT && !c->rc) c->rc = rmqi_errno(errno, "unlink", path);
    atomic_store(&q->dir_dirty, 1);
    c->files++;
  }
  if (all_below) {
    if (max > rmqi_queue_min_offset(q)) atomic_store_explicit(&q->min_offset, max, memory_order_release);
  } else {
    cq_correct_min(s, q, c->min_cl);
  }
}

/* cq_flush_lock held. One round of the clean services: CommitLog files
** when it is time (deleteWhen), the disk is over diskMaxUsedSpaceRatio or
** the caller asks (manual); then the ConsumeQueues, whenever the
** CommitLog's minimum moved since they were last cleaned. */
static int ix_delete_expired(rmqi_store *s, int64_t min_cl);

static int clean_round(rmqi_store *s, int64_t now, int manual, int *deleted)
{
  *deleted = 0;
  disk_check(s);
  int pct = atomic_load(&s->disk_used_pct);
  int clean_now = pct > clamp_pct(s->o.disk_space_warning_level_ratio, 35, 90) ||
                  pct > clamp_pct(s->o.disk_space_clean_forcibly_ratio, 30, 85);
  int space = pct > clamp_pct(s->o.disk_max_used_space_ratio, 10, 95);
  time_t secs = (time_t)(now / 1000);
  struct tm tm;
  int timeup = localtime_r(&secs, &tm) && ((s->delete_hours >> tm.tm_hour) & 1);
  int rc = RMQ_OK;
  if (timeup || space || manual)
    *deleted = cl_delete_expired(s, now, s->o.clean_file_forcibly_enable && clean_now, &rc);
  int64_t min_cl = rmqi_store_min_phys(s);
  if (min_cl > s->cq_clean_min) {
    cq_clean_ctx c = {min_cl, 0, RMQ_OK};
    queue_each(s, cq_clean_queue, &c);
    s->cq_clean_min = min_cl;
    if (c.files) rmqi_log(s->env, RMQ_LOG_INFO, "retention: deleted %d consume queue files below %" PRId64, c.files, min_cl);
    if (!rc) rc = c.rc;
    pthread_mutex_lock(&s->idx_lock);
    int irc = ix_delete_expired(s, min_cl);
    pthread_mutex_unlock(&s->idx_lock);
    if (!rc) rc = irc;
  }
  if (*deleted) disk_check(s); /* sends refused for a full disk may go again */
  return rc;
}

RMQI_FUNC int rmqi_store_delete_expired(rmqi_store *s, int64_t now, int *deleted)
{
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  int rc = RMQ_OK, d, total = 0;
  pthread_mutex_lock(&s->cq_flush_lock);
  do {
    rc = clean_round(s, now, 1, &d);
    total += d;
  } while (!rc && d > 0);
  pthread_mutex_unlock(&s->cq_flush_lock);
  if (deleted) *deleted = total;
  return rc;
}

RMQI_FUNC int rmqi_store_run_due(rmqi_store *s, int64_t now, int64_t *next_ms)
{
  int rc = RMQ_OK;
  if (s->o.read_only) return rmqi_err(RMQ_EREADONLY, "%s was opened read-only", s->dir);
  if (!s->ix_running && s->o.message_index_enable &&
      (!atomic_load(&s->ix_failing) || rmqi_mono_us() >= atomic_load(&s->ix_retry_us))) {
    rc = rmqi_store_index_catch_up(s);
    if (rc == RMQ_ENOSPC) rc = RMQ_OK; /* retried at the next call; sends report the full disk */
  }
  pthread_mutex_lock(&s->cq_flush_lock);
  if (now >= s->next_cl_flush) {
    s->next_cl_flush = now + s->o.flush_interval_commit_log;
    int64_t end = rmqi_store_max_phys(s);
    int thorough = now - s->last_thorough >= s->o.flush_commit_log_thorough_interval;
    if (!thorough && cl_huge(s)) {
      /* Huge folios: a flush writes every dirty folio whole, so a folio
      ** flushed half full is written again once full (15x the bytes at
      ** 1,000 sends a second). Between thorough flushes only whole folios
      ** go, as RocketMQ's flushLeastPages waits for pages to fill. */
      mfile *f = mvec_at(&s->cl, cl_index(s, end));
      if (f && f->huge) end = f->start + ((end - f->start) & ~(int64_t)(HUGE_BYTES - 1));
    }
    int64_t dirty = end - atomic_load(&s->flushed);
    if (dirty > 0 && (thorough || dirty >= (int64_t)s->o.flush_commit_log_least_pages * 4096)) {
      if (thorough) s->last_thorough = now;
      pthread_mutex_unlock(&s->cq_flush_lock);
      rc = wait_flushed_cap(s, end, end, 60000);
      pthread_mutex_lock(&s->cq_flush_lock);
    }
  }
  if (now >= s->next_disk_check) {
    s->next_disk_check = now + s->o.clean_resource_interval;
    int deleted;
    int crc = clean_round(s, now, 0, &deleted);
    if (!rc) rc = crc;
  }
  if (!rc && now >= s->next_cq_flush) {
    s->next_cq_flush = now + s->o.flush_interval_consume_queue;
    rc = cq_flush(s);
    if (!rc) rc = checkpoint_write(s);
  }
  if (next_ms) {
    int64_t n = s->next_cl_flush < s->next_cq_flush ? s->next_cl_flush : s->next_cq_flush;
    if (s->next_disk_check < n) n = s->next_disk_check;
    *next_ms = n > now ? n - now : 0;
  }
  pthread_mutex_unlock(&s->cq_flush_lock);
  return rc;
}

/* ======================================================================= */
/* The key index (RocketMQ's IndexService and IndexFile)                   */
/* ======================================================================= */

/* index/<yyyyMMddHHmmssSSS> (local time of its creation): a 40-byte header,
** `slots` int32 hash slots (each the number of the newest entry of its
** chain, 0 empty), then `num` 20-byte entries (keyHash, phyOffset,
** timeDiff in seconds from beginTimestamp, prevIndex), entry 0 unused; all
** big-endian (ROCKETMQ.md 3). The indexer writes it through a mapping
** behind the CommitLog, never on the send path, under idx_lock. Its slot
** table is allocated when the file is made and its entries a chunk ahead
** of the writer: a store through a mapping into a hole of a full disk is
** SIGBUS, not an error. */
#define IX_HEADER 40
#define IX_ENTRY 20
#define IX_CHUNK (1 << 20)
#define IX_BEGIN_TS 0
#define IX_END_TS 8
#define IX_BEGIN_PHY 16
#define IX_END_PHY 24
#define IX_SLOTS_USED 32
#define IX_COUNT 36
#define IX_NAME_LEN 17

typedef struct ixfile {
  char name[IX_NAME_LEN + 1];
  int64_t name_ms;   /* the time its name says */
  uint8_t *base;
  int64_t size;
  int fd;
  int32_t slots, num;
  int64_t alloc;     /* bytes from the start whose blocks are allocated */
  int dirty;         /* written since its last sync */
} ixfile;

static inline int64_t ix_h64(const ixfile *f, int off) { return (int64_t)rmqi_get64(f->base + off); }
static inline int32_t ix_h32(const ixfile *f, int off) { return (int32_t)rmqi_get32(f->base + off); }
static inline uint8_t *ix_entry(const ixfile *f, int64_t n)
{
  return f->base + IX_HEADER + (int64_t)f->slots * 4 + n * IX_ENTRY;
}
static inline int64_t ix_size(int64_t slots, int64_t num) { return IX_HEADER + slots * 4 + num * IX_ENTRY; }
/* Entries in use: the header's count, never trusted beyond the file. */
static inline int32_t ix_count(const ixfile *f)
{
  int32_t c = ix_h32(f, IX_COUNT);
  return c < 1 ? 1 : c > f->num ? f->num : c;
}

/* RocketMQ's indexKeyHashMethod of "topic#key": |String.hashCode()|,
** INT_MIN -> 0; `prefix` is the hash of "topic#" (rmqi_jhash). */
static int32_t ix_hash(int32_t prefix, const char *key, size_t kl)
{
  int32_t h = rmqi_jhash_cont(prefix, key, kl);
  return h == INT32_MIN ? 0 : h < 0 ? -h : h;
}

static int32_t ix_prefix(const char *topic, size_t tl) { return rmqi_jhash_cont(rmqi_jhash(topic, tl), "#", 1); }

RMQI_FUNC int32_t rmqi_index_key_hash(const char *topic, size_t tl, const char *key, size_t kl)
{
  return ix_hash(ix_prefix(topic, tl), key, kl);
}

static void ix_path(const rmqi_store *s, const ixfile *f, char *path)
{
  snprintf(path, 4200, "%s/%s", s->ix_dir, f->name);
}

static void ix_free(ixfile *f)
{
  if (!f) return;
  if (f->base) OS->munmap(f->base, (size_t)f->size);
  if (f->fd >= 0) OS->close(f->fd);
  rmqi_free(f, sizeof *f);
}

/* Makes sure f's first `need` bytes (and always its slot table) have
** blocks, a chunk at a time. */
static int ix_reserve(rmqi_store *s, ixfile *f, int64_t need)
{
  int64_t table = IX_HEADER + (int64_t)f->slots * 4;
  if (need < table) need = table;
  if (f->alloc >= need) return RMQ_OK;
  int64_t to = need + IX_CHUNK;
  if (to > f->size) to = f->size;
  if (OS->fallocate(f->fd, (off_t)f->alloc, (off_t)(to - f->alloc)) != 0) {
    char path[4200];
    ix_path(s, f, path);
    return rmqi_errno(errno, "fallocate", path);
  }
  /* One call faults the new chunk in, not a fault (and an exit to the
  ** hypervisor, on a VM) per page as the indexer reaches it. */
  if (f->base) {
    int64_t a = f->alloc & ~(int64_t)4095;
    madvise(f->base + a, (size_t)(to - a), MADV_POPULATE_WRITE);
  }
  f->alloc = to;
  return RMQ_OK;
}

static int ix_push(rmqi_store *s, ixfile *f)
{
  if (s->nix == s->ixcap) {
    int ncap = s->ixcap ? s->ixcap * 2 : 8;
    ixfile **v = rmqi_realloc(s->ix, (size_t)s->ixcap * sizeof *v, (size_t)ncap * sizeof *v);
    if (!v) return rmqi_err(RMQ_ENOMEM, "out of memory listing index files");
    s->ix = v;
    s->ixcap = ncap;
  }
  s->ix[s->nix++] = f;
  return RMQ_OK;
}

/* A file's size does not say its geometry (RocketMQ takes both numbers
** from its configuration): rmq notes each one it makes files with in
** config/rmq_index.txt, "slots entries" a line, so that any later open
** (rmqadmin's, with default options) reads them. */
#define IX_GEOMETRY "rmq_index.txt"

static void ix_geo_load(rmqi_store *s)
{
  char *text;
  size_t len;
  if (rmqi_store_read_config(s, IX_GEOMETRY, &text, &len) != RMQ_OK) return;
  for (char *p = text; *p && s->nix_geo < 8;) {
    long long a, b;
    if (sscanf(p, "%lld %lld", &a, &b) == 2 && a >= 1 && b >= 2 && a <= 100000000 && b <= 100000000) {
      s->ix_geo[s->nix_geo][0] = a;
      s->ix_geo[s->nix_geo++][1] = b;
    }
    char *nl = strchr(p, '\n');
    if (!nl) break;
    p = nl + 1;
  }
  rmqi_free(text, len + 1);
}

static int ix_geo_note(rmqi_store *s, int64_t slots, int64_t num)
{
  for (int i = 0; i < s->nix_geo; i++)
    if (s->ix_geo[i][0] == slots && s->ix_geo[i][1] == num) return RMQ_OK;
  if (s->nix_geo == 8) { /* the oldest goes */
    memmove(s->ix_geo, s->ix_geo + 1, 7 * sizeof s->ix_geo[0]);
    s->nix_geo--;
  }
  s->ix_geo[s->nix_geo][0] = slots;
  s->ix_geo[s->nix_geo++][1] = num;
  rmqi_buf b = {0};
  for (int i = 0; i < s->nix_geo; i++) rmqi_buf_printf(&b, "%" PRId64 " %" PRId64 "\n", s->ix_geo[i][0], s->ix_geo[i][1]);
  int rc = b.oom ? rmqi_err(RMQ_ENOMEM, "out of memory") : write_config(s, IX_GEOMETRY, b.p, b.len, 0);
  rmqi_buf_free(&b);
  return rc;
}

/* idx_lock held. Makes the next index file, seeded as RocketMQ seeds it
** with the previous file's end time and offset. */
static int ix_create(rmqi_store *s)
{
  ixfile *prev = s->nix ? s->ix[s->nix - 1] : NULL;
  int rc = mkdir_p(s->ix_dir);
  if (!rc) rc = ix_geo_note(s, s->o.max_hash_slot_num, s->o.max_index_num);
  if (rc) return rc;
  ixfile *f = rmqi_calloc(1, sizeof *f);
  if (!f) return rmqi_err(RMQ_ENOMEM, "out of memory making an index file");
  f->fd = -1;
  f->slots = s->o.max_hash_slot_num;
  f->num = s->o.max_index_num;
  f->size = ix_size(f->slots, f->num);
  /* Names sort as the files were made, whatever the clock did. */
  int64_t ms = rmqi_now(s->env);
  if (prev && ms <= prev->name_ms) ms = prev->name_ms + 1;
  char path[4200];
  for (;; ms++) {
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&secs, &tm);
    char nb[64];
    snprintf(nb, sizeof nb, "%04d%02d%02d%02d%02d%02d%03d", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100, (int)(ms % 1000));
    memcpy(f->name, nb, IX_NAME_LEN);
    f->name[IX_NAME_LEN] = 0;
    f->name_ms = ms;
    ix_path(s, f, path);
    f->fd = OS->open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (f->fd >= 0 || errno != EEXIST) break;
  }
  if (f->fd < 0) { rc = rmqi_errno(errno, "open", path); goto fail; }
  if (OS->ftruncate(f->fd, f->size) != 0) { rc = rmqi_errno(errno, "ftruncate", path); goto fail; }
  if ((rc = ix_reserve(s, f, 0))) goto fail;
  void *p = OS->mmap(NULL, (size_t)f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
  if (p == MAP_FAILED) { rc = rmqi_errno(errno, "mmap", path); goto fail; }
  f->base = p;
  /* The slot table is written at random: fault it all in at once. */
  madvise(f->base, (size_t)f->alloc, MADV_POPULATE_WRITE);
  int64_t end_phy = prev ? ix_h64(prev, IX_END_PHY) : 0, end_ts = prev ? ix_h64(prev, IX_END_TS) : 0;
  if (end_phy > 0) { rmqi_put64(f->base + IX_BEGIN_PHY, (uint64_t)end_phy); rmqi_put64(f->base + IX_END_PHY, (uint64_t)end_phy); }
  if (end_ts > 0) { rmqi_put64(f->base + IX_BEGIN_TS, (uint64_t)end_ts); rmqi_put64(f->base + IX_END_TS, (uint64_t)end_ts); }
  rmqi_put32(f->base + IX_COUNT, 1);
  f->dirty = 1;
  /* The seeded header (and the size) durable before the name: a power cut
  ** must not leave a named file whose header reads zeros. */
  if (OS->msync(f->base, IX_HEADER, MS_SYNC) != 0) { rc = rmqi_errno(errno, "msync", path); goto fail; }
  if ((rc = fsync_dir(s->ix_dir)) || (rc = ix_push(s, f))) goto fail;
  rmqi_log(s->env, RMQ_LOG_INFO, "index: new file %s", path);
  return RMQ_OK;
fail:
  if (f->fd >= 0) OS->unlink(path);
  ix_free(f);
  return rc;
}

/* idx_lock held. A full file is synced and its end time becomes the
** checkpoint's indexMsgTimestamp, as RocketMQ does when it rolls. */
static int ix_roll(rmqi_store *s)
{
  if (s->nix) {
    ixfile *old = s->ix[s->nix - 1];
    if (old->dirty && OS->fdatasync(old->fd) != 0) {
      char path[4200];
      ix_path(s, old, path);
      return store_fail(s, rmqi_errno(errno, "fdatasync", path), 1);
    }
    old->dirty = 0;
    int64_t ts = ix_h64(old, IX_END_TS);
    if (ts > atomic_load(&s->ix_cp_ts)) atomic_store(&s->ix_cp_ts, ts);
  }
  return ix_create(s);
}

/* idx_lock held. RocketMQ's IndexFile.putKey. */
static int ix_put(rmqi_store *s, int32_t hash, int64_t phys, int64_t ts)
{
  ixfile *f = s->nix ? s->ix[s->nix - 1] : NULL;
  int rc;
  if (!f || f->base == NULL || ix_count(f) >= f->num || s->ix_ro_last) {
    if ((rc = ix_roll(s))) return rc;
    s->ix_ro_last = 0;
    f = s->ix[s->nix - 1];
  }
  int32_t count = ix_count(f);
  uint8_t *e = ix_entry(f, count);
  if ((rc = ix_reserve(s, f, (e - f->base) + IX_ENTRY))) return rc;
  uint8_t *slot = f->base + IX_HEADER + (int64_t)(hash % f->slots) * 4;
  int32_t prev = (int32_t)rmqi_get32(slot);
  if (prev <= 0 || prev > count) prev = 0;
  int64_t begin = ix_h64(f, IX_BEGIN_TS);
  int64_t diff = begin <= 0 || ts <= begin ? 0 : (ts - begin) / 1000;
  if (diff < 0) diff = 0;
  if (diff > INT32_MAX) diff = INT32_MAX;
  rmqi_put32(e, (uint32_t)hash);
  rmqi_put64(e + 4, (uint64_t)phys);
  rmqi_put32(e + 12, (uint32_t)diff);
  rmqi_put32(e + 16, (uint32_t)prev);
  rmqi_put32(slot, (uint32_t)count);
  if (count <= 1) {
    rmqi_put64(f->base + IX_BEGIN_PHY, (uint64_t)phys);
    rmqi_put64(f->base + IX_BEGIN_TS, (uint64_t)ts);
  }
  if (prev == 0) rmqi_put32(f->base + IX_SLOTS_USED, (uint32_t)ix_h32(f, IX_SLOTS_USED) + 1u); /* a damaged count wraps, no UB */
  rmqi_put32(f->base + IX_COUNT, (uint32_t)(count + 1));
  rmqi_put64(f->base + IX_END_PHY, (uint64_t)phys);
  rmqi_put64(f->base + IX_END_TS, (uint64_t)ts);
  f->dirty = 1;
  return RMQ_OK;
}

/* idx_lock held. RocketMQ's buildIndex: UNIQ_KEY, then each word of KEYS,
** as "topic#key"; nothing for a rolled-back transaction's record. */
static int ix_add(rmqi_store *s, const rmqi_record *r, int64_t phys)
{
  if ((r->sys_flag & RMQI_SYSFLAG_TX_MASK) == RMQI_SYSFLAG_TX_ROLLBACK) return RMQ_OK;
  const char *v;
  size_t vl;
  int32_t prefix = ix_prefix(r->topic, (size_t)r->topic_len);
  int rc;
  if (rmqi_props_find(r->props, (size_t)r->props_len, "UNIQ_KEY", 8, &v, &vl) && vl > 0 &&
      (rc = ix_put(s, ix_hash(prefix, v, vl), phys, r->store_ts)))
    return rc;
  if (rmqi_props_find(r->props, (size_t)r->props_len, "KEYS", 4, &v, &vl)) {
    const char *end = v + vl;
    while (v < end) {
      const char *sp = memchr(v, ' ', (size_t)(end - v));
      size_t wl = sp ? (size_t)(sp - v) : (size_t)(end - v);
      if (wl > 0 && (rc = ix_put(s, ix_hash(prefix, v, wl), phys, r->store_ts))) return rc;
      v += wl + 1;
    }
  }
  return RMQ_OK;
}

typedef struct ix_scan_ctx {
  rmqi_store *s;
  int64_t next;
  int n, max, rc;
} ix_scan_ctx;

static int ix_scan_fn(void *ctx, const rmqi_record *r, int64_t phys)
{
  ix_scan_ctx *c = ctx;
  if (phys >= c->s->idx_skip && (c->rc = ix_add(c->s, r, phys))) return 1;
  c->next = phys + r->total;
  return ++c->n >= c->max ? 2 : 0;
}

/* idx_lock held. Indexes up to `max` records after idx_pos. Returns how
** many it read, or an error (idx_pos stays at the record that failed). */
static int ix_step(rmqi_store *s, int max)
{
  if (!s->o.message_index_enable || s->o.read_only) return 0;
  int64_t to = rmqi_store_max_phys(s);
  if (s->idx_pos >= to) return 0;
  ix_scan_ctx c = {s, s->idx_pos, 0, max, RMQ_OK};
  int r = rmqi_store_scan(s, s->idx_pos, to, ix_scan_fn, &c);
  if (c.rc) {
    s->idx_pos = c.next;
    atomic_store(&s->idx_done, s->idx_pos);
    return c.rc;
  }
  s->idx_pos = r == 2 ? c.next : to;
  atomic_store(&s->idx_done, s->idx_pos);
  return c.n;
}

/* idx_lock held. Indexes everything published. */
static int ix_catch_up(rmqi_store *s)
{
  int n;
  while ((n = ix_step(s, 1 << 20)) > 0) {}
  return n < 0 ? n : RMQ_OK;
}

/* idx_lock held. Logs the first failure to index (a full disk, say) and
** the recovery from it, not every retry. */
static void ix_note(rmqi_store *s, int rc)
{
  int was = atomic_load(&s->ix_failing);
  if (rc && !was)
    rmqi_log(s->env, RMQ_LOG_ERROR, "index: %s; messages are stored but not indexed until this is retried with "
             "success", rmq_errmsg());
  else if (!rc && was)
    rmqi_log(s->env, RMQ_LOG_WARN, "index: indexing again (caught up to CommitLog offset %" PRId64 ")", s->idx_pos);
  if (rc) atomic_store(&s->ix_retry_us, rmqi_mono_us() + 1000000);
  atomic_store(&s->ix_failing, rc != 0);
}

/* idx_lock held. Syncs what was written since the last sync. */
static int ix_sync(rmqi_store *s)
{
  for (int i = 0; i < s->nix; i++) {
    ixfile *f = s->ix[i];
    if (!f->dirty || f->fd < 0) continue;
    if (OS->fdatasync(f->fd) != 0) {
      char path[4200];
      ix_path(s, f, path);
      return store_fail(s, rmqi_errno(errno, "fdatasync", path), 1);
    }
    f->dirty = 0;
  }
  return RMQ_OK;
}

/* The ConsumeQueue flush's share: index everything stored so far and sync
** it, before the checkpoint says those records are dispatched (a crash
** re-indexes only what the checkpoint does not cover). */
static int ix_flush(rmqi_store *s)
{
  if (s->o.read_only) return RMQ_OK;
  pthread_mutex_lock(&s->idx_lock);
  /* Not at open: a store with a long unindexed stretch (one from before
  ** the index, or with it off) is indexed afterwards, not by the open. */
  int rc = s->ix_opening ? RMQ_OK : ix_catch_up(s);
  ix_note(s, rc);
  int src = ix_sync(s);
  pthread_mutex_unlock(&s->idx_lock);
  /* A full disk stops the index, not the flush: it resumes with space. */
  return src ? src : rc == RMQ_ENOSPC ? RMQ_OK : rc;
}

/* idx_lock held. Retention: index files whose every entry points below the
** CommitLog's new first offset go, never the newest (RocketMQ's
** IndexService.deleteExpiredFile). */
static int ix_delete_expired(rmqi_store *s, int64_t min_cl)
{
  int k = 0, rc = RMQ_OK;
  while (k < s->nix - 1 && ix_h64(s->ix[k], IX_END_PHY) < min_cl) {
    char path[4200];
    ix_path(s, s->ix[k], path);
    if (OS->unlink(path) != 0 && errno != ENOENT) { rc = rmqi_errno(errno, "unlink", path); break; }
    rmqi_log(s->env, RMQ_LOG_INFO, "retention: deleted index file %s", path);
    ix_free(s->ix[k]);
    k++;
  }
  if (k) {
    memmove(s->ix, s->ix + k, (size_t)(s->nix - k) * sizeof *s->ix);
    s->nix -= k;
    int r = fsync_dir(s->ix_dir);
    if (!rc) rc = r;
  }
  return rc;
}

/* Index files found at open: named by 17 digits, in name order. The
** geometry is the options' when the size fits it, else RocketMQ's ratio of
** four entries a slot (both defaults have it); a file that fits neither
** is left alone and unused. */
static int ix_name_cmp(const void *a, const void *b)
{
  return strcmp((*(ixfile *const *)a)->name, (*(ixfile *const *)b)->name);
}

static int ix_open_file(rmqi_store *s, const char *name)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", s->ix_dir, name);
  int ro = s->o.read_only;
  int fd = OS->open(path, ro ? O_RDONLY : O_RDWR, 0);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  struct stat st;
  if (OS->fstat(fd, &st) != 0) { int rc = rmqi_errno(errno, "fstat", path); OS->close(fd); return rc; }
  int64_t size = (int64_t)st.st_size, slots = 0, num = 0;
  for (int i = s->nix_geo - 1; i >= 0 && !slots; i--)
    if (size == ix_size(s->ix_geo[i][0], s->ix_geo[i][1])) {
      slots = s->ix_geo[i][0];
      num = s->ix_geo[i][1];
    }
  if (slots) {
    /* noted when it was made */
  } else if (size == ix_size(s->o.max_hash_slot_num, s->o.max_index_num)) {
    slots = s->o.max_hash_slot_num;
    num = s->o.max_index_num;
  } else if (size > IX_HEADER + 84 && (size - IX_HEADER) % 84 == 0 && (size - IX_HEADER) / 84 <= INT32_MAX / 4) {
    slots = (size - IX_HEADER) / 84;
    num = slots * 4;
  } else {
    rmqi_log(s->env, RMQ_LOG_WARN, "index: %s is %" PRId64 " bytes, which fits no index geometry (slots %d, "
             "entries %d): left alone, not used", path, size, s->o.max_hash_slot_num, s->o.max_index_num);
    OS->close(fd);
    return RMQ_OK;
  }
  ixfile *f = rmqi_calloc(1, sizeof *f);
  if (!f) { OS->close(fd); return rmqi_err(RMQ_ENOMEM, "out of memory opening %s", path); }
  f->fd = fd;
  f->size = size;
  f->slots = (int32_t)slots;
  f->num = (int32_t)num;
  memcpy(f->name, name, IX_NAME_LEN + 1);
  struct tm tm = {0};
  if (sscanf(name, "%4d%2d%2d%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) == 6) {
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    f->name_ms = (int64_t)mktime(&tm) * 1000 + atoi(name + 14);
  }
  void *p = OS->mmap(NULL, (size_t)size, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) { int rc = rmqi_errno(errno, "mmap", path); ix_free(f); return rc; }
  f->base = p;
  int rc = ix_push(s, f);
  if (rc) ix_free(f);
  return rc;
}

static int ix_list(rmqi_store *s)
{
  ix_geo_load(s);
  DIR *d = opendir(s->ix_dir);
  if (!d) return errno == ENOENT ? RMQ_OK : rmqi_errno(errno, "opendir", s->ix_dir);
  struct dirent *e;
  int rc = RMQ_OK;
  while (!rc && (e = readdir(d))) {
    if (strlen(e->d_name) != IX_NAME_LEN || strspn(e->d_name, "0123456789") != IX_NAME_LEN) continue;
    rc = ix_open_file(s, e->d_name);
  }
  closedir(d);
  if (s->nix > 1) qsort(s->ix, (size_t)s->nix, sizeof *s->ix, ix_name_cmp);
  return rc;
}

/* Points every slot at the newest of entries [1, upto) with its hash (the
** entries keep their own chain links). */
/* The next data region of fd's file within [from, to): its start, and its
** end in *end; -1 when the rest is a hole. Holes read as zeros, and a
** pass over a mapped hole either allocates it (tmpfs) or faults in a page
** per 4 KiB: a default index file's slots are 20 MB, mostly hole. Without
** SEEK_DATA (fd < 0, or unsupported) the whole range is one region. end
** NULL: the start only. (On tmpfs SEEK_HOLE walks the page cache through
** the whole region, and a probe per batch of a long one is quadratic.) */
static int64_t data_next(int fd, int64_t from, int64_t to, int64_t *end)
{
  if (from >= to) return -1;
  off_t d = fd >= 0 ? OS->lseek(fd, (off_t)from, SEEK_DATA) : -1;
  if (d < 0 && fd >= 0 && errno == ENXIO) return -1;
  off_t h = d >= 0 && end ? OS->lseek(fd, d, SEEK_HOLE) : (off_t)to;
  if (d < 0 || h < d) {
    if (end) *end = to;
    return from;
  }
  if ((int64_t)d >= to) return -1;
  if (end) *end = (int64_t)h < to ? (int64_t)h : to;
  return (int64_t)d;
}

/* Zeroes [from, to) of fd's file mapped at base, holes left alone. */
static void zero_mapped(int fd, uint8_t *base, int64_t from, int64_t to)
{
  int64_t e;
  for (int64_t d; (d = data_next(fd, from, to, &e)) >= 0; from = e) memset(base + d, 0, (size_t)(e - d));
}

static void ix_rebuild_slots(ixfile *f, int32_t upto)
{
  uint8_t *slots = f->base + IX_HEADER;
  zero_mapped(f->fd, f->base, IX_HEADER, IX_HEADER + (int64_t)f->slots * 4);
  for (int32_t n = 1; n < upto; n++) {
    int32_t h = (int32_t)rmqi_get32(ix_entry(f, n));
    if (h >= 0) rmqi_put32(slots + (int64_t)(h % f->slots) * 4, (uint32_t)n);
  }
  f->dirty = 1;
}

/* Open after a crash: drops every entry pointing at or after `cut` (the
** recovery may have cut those records, and whatever the page cache lost is
** re-indexed from there). Files wholly after it go; in the file holding
** it the count goes back and each slot is pointed at the newest entry left
** of its chain; when a chain cannot be followed (entries lost with the page
** cache), the slots are rebuilt from the entries left. */
static int ix_truncate(rmqi_store *s, int64_t cut)
{
  int rc = RMQ_OK;
  while (s->nix > 0) {
    ixfile *f = s->ix[s->nix - 1];
    int32_t count = ix_count(f);
    if (count <= 1) {
      if (s->nix == 1) break;
      /* An empty newest file: what it was seeded from is the one before. */
    } else if ((int64_t)rmqi_get64(ix_entry(f, 1) + 4) < cut) {
      /* The first entry with phy >= cut; entries rise with the log. */
      int32_t lo = 1, hi = count;
      while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if ((int64_t)rmqi_get64(ix_entry(f, mid) + 4) < cut) lo = mid + 1;
        else hi = mid;
      }
      if (lo < count) {
        int rebuild = 0;
        uint8_t *slots = f->base + IX_HEADER;
        /* Slots in holes are 0 and stay so: only the data is walked. */
        int64_t sf = IX_HEADER, st = IX_HEADER + (int64_t)f->slots * 4, se;
        for (int64_t d; !rebuild && (d = data_next(f->fd, sf, st, &se)) >= 0; sf = se)
        for (int64_t k = (d - IX_HEADER) / 4; k < (se - IX_HEADER + 3) / 4 && !rebuild; k++) {
          int32_t v = (int32_t)rmqi_get32(slots + k * 4);
          if (v == 0) continue;
          while (v >= lo && v < count) {
            const uint8_t *e = ix_entry(f, v);
            int32_t prev = (int32_t)rmqi_get32(e + 16);
            if ((int32_t)rmqi_get32(e) % f->slots != k || (int32_t)rmqi_get32(e) < 0 || prev >= v || prev < 0) {
              rebuild = 1;
              break;
            }
            v = prev;
          }
          if (v >= count) v = 0;
          if (!rebuild) rmqi_put32(slots + k * 4, (uint32_t)v);
        }
        if (rebuild) {
          rmqi_log(s->env, RMQ_LOG_WARN, "index %s: a hash chain was broken by the crash; rebuilding its slots from "
                   "%d entries", f->name, lo - 1);
          ix_rebuild_slots(f, lo);
        }
        int32_t used = 0;
        sf = IX_HEADER;
        for (int64_t d; (d = data_next(f->fd, sf, st, &se)) >= 0; sf = se)
          for (int64_t k = (d - IX_HEADER) / 4; k < (se - IX_HEADER + 3) / 4; k++) used += rmqi_get32(slots + k * 4) != 0;
        const uint8_t *last = ix_entry(f, lo - 1);
        int64_t last_phy = (int64_t)rmqi_get64(last + 4);
        int64_t last_ts = rmqi_add_sat(ix_h64(f, IX_BEGIN_TS), (int64_t)rmqi_get32(last + 12) * 1000);
        void *pin;
        rmqi_record r;
        if (rmqi_store_record_at(s, last_phy, &r, &pin)) last_ts = r.store_ts;
        rmqi_store_unpin(pin);
        rmqi_put32(f->base + IX_SLOTS_USED, (uint32_t)used);
        rmqi_put32(f->base + IX_COUNT, (uint32_t)lo);
        rmqi_put64(f->base + IX_END_PHY, (uint64_t)last_phy);
        rmqi_put64(f->base + IX_END_TS, (uint64_t)last_ts);
        f->dirty = 1;
        rmqi_log(s->env, RMQ_LOG_INFO, "recovery: index %s: %d entries at or after CommitLog offset %" PRId64
                 " dropped, to be made again", f->name, count - lo, cut);
      }
      break;
    }
    /* Every entry of f is at or after cut (or f is empty): the file goes. */
    char path[4200];
    ix_path(s, f, path);
    if (OS->unlink(path) != 0 && errno != ENOENT) { rc = rmqi_errno(errno, "unlink", path); break; }
    rmqi_log(s->env, RMQ_LOG_INFO, "recovery: index %s: every entry at or after CommitLog offset %" PRId64
             "; deleted, to be made again", path, cut);
    ix_free(f);
    s->nix--;
    if ((rc = fsync_dir(s->ix_dir))) break;
  }
  return rc;
}

/* Open: the index files, repaired, and where indexing resumes. */
/* A header a crash did not keep (zeros, or torn: an indexCount out of
** range) leaves nothing in its file to trust: the file becomes empty,
** seeded from the one before, and its records are indexed again (from its
** begin offset, returned; -1 when the newest file's header was whole). */
static int64_t ix_repair_headers(rmqi_store *s, int abnormal)
{
  int64_t from = -1;
  for (int i = 0; i < s->nix; i++) {
    ixfile *f = s->ix[i];
    int32_t raw = (int32_t)rmqi_get32(f->base + IX_COUNT);
    if (raw >= 1 && raw <= f->num) {
      if (abnormal && i == s->nix - 1) {
        /* Entries the count holds may not have been kept (a newer header
        ** sector than theirs): the first one that cannot be (zeros, an
        ** offset going back, a link other than the one it was written
        ** with) ends the file; the records from the last whole entry's on
        ** are indexed again. An entry is 20 bytes and a sector 512, so a
        ** cut can keep an entry's hash and offset and lose its time and
        ** link, whose zeros would pass for the first of its hash: each
        ** link must name exactly the entry before it of its hash (as
        ** RocketMQ writes them too). Without the memory to track that, the
        ** whole file is indexed again. */
        int32_t *newest = rmqi_calloc((size_t)f->slots, sizeof *newest);
        int64_t last = -1;
        int32_t n = 1;
        if (newest) {
          for (; n < raw; n++) {
            const uint8_t *e = ix_entry(f, n);
            int32_t h = (int32_t)rmqi_get32(e);
            int64_t phy = (int64_t)rmqi_get64(e + 4);
            int32_t prev = (int32_t)rmqi_get32(e + 16);
            int zero = h == 0 && phy == 0 && rmqi_get32(e + 12) == 0 && prev == 0;
            if (h < 0 || phy < last || prev != newest[h % f->slots] || (zero && n > 1)) break;
            newest[h % f->slots] = n;
            last = phy;
          }
          rmqi_free(newest, (size_t)f->slots * sizeof *newest);
        }
        if (n < raw) {
          rmqi_log(s->env, RMQ_LOG_WARN, "recovery: index %s: entry %d of %d was not kept by the crash; the file "
                   "ends before it, the records after it are indexed again", f->name, n, raw);
          int64_t end_phy = n > 1 ? last : ix_h64(f, IX_BEGIN_PHY);
          rmqi_put32(f->base + IX_COUNT, (uint32_t)n);
          rmqi_put64(f->base + IX_END_PHY, (uint64_t)end_phy);
          raw = n;
          ix_rebuild_slots(f, raw);
          if (from < 0 || end_phy < from) from = end_phy;
        }
        /* Slots and entries live in other sectors, and the crash may have
        ** kept either one's newer version. A slot newer than the count
        ** (naming an entry it does not hold) would chain the entries
        ** written again to garbage, and zeroing it would lose the older
        ** entries of its chain; a slot older than its entries (naming one
        ** before the newest of its hash, or none) hides them from every
        ** lookup. Either way the slots are made again from the entries
        ** the count holds. Every slot names the newest entry of its hash
        ** or is 0 when no entry has it. */
        int bad = 0;
        int64_t sf = IX_HEADER, st = IX_HEADER + (int64_t)f->slots * 4, se;
        for (int64_t d; !bad && (d = data_next(f->fd, sf, st, &se)) >= 0; sf = se)
          for (int64_t k = d & ~(int64_t)3; k < se && !bad; k += 4) {
            int32_t v = (int32_t)rmqi_get32(f->base + k);
            bad = v < 0 || v >= raw || (v > 0 && (int32_t)rmqi_get32(ix_entry(f, v)) % f->slots != (k - IX_HEADER) / 4);
          }
        for (int32_t m = 1; m < raw && !bad; m++) {
          int32_t h = (int32_t)rmqi_get32(ix_entry(f, m));
          bad = h >= 0 && (int32_t)rmqi_get32(f->base + IX_HEADER + (int64_t)(h % f->slots) * 4) < m;
        }
        if (bad) {
          rmqi_log(s->env, RMQ_LOG_WARN, "recovery: index %s: slots older or newer than its %d entries; slots rebuilt",
                   f->name, raw);
          ix_rebuild_slots(f, raw);
        }
      }
      continue;
    }
    if (i == s->nix - 1) from = i > 0 ? ix_h64(s->ix[i - 1], IX_END_PHY) : 0;
    ixfile *pf = i > 0 ? s->ix[i - 1] : NULL;
    zero_mapped(f->fd, f->base, 0, IX_HEADER + (int64_t)f->slots * 4);
    if (pf) {
      rmqi_put64(f->base + IX_BEGIN_PHY, (uint64_t)ix_h64(pf, IX_END_PHY));
      rmqi_put64(f->base + IX_END_PHY, (uint64_t)ix_h64(pf, IX_END_PHY));
      rmqi_put64(f->base + IX_BEGIN_TS, (uint64_t)ix_h64(pf, IX_END_TS));
      rmqi_put64(f->base + IX_END_TS, (uint64_t)ix_h64(pf, IX_END_TS));
    }
    rmqi_put32(f->base + IX_COUNT, 1);
    f->dirty = 1;
    rmqi_log(s->env, RMQ_LOG_WARN, "recovery: index file %s had a damaged header (indexCount %d): emptied%s",
             f->name, raw, i == s->nix - 1 ? ", its records indexed again" : " (its keys are no longer found)");
  }
  return from;
}

static int ix_load(rmqi_store *s, int abnormal)
{
  int rc = ix_list(s);
  if (rc || s->o.read_only) return rc;
  const int64_t repaired = ix_repair_headers(s, abnormal);
  int64_t e = -1; /* the newest entry's CommitLog offset */
  for (int i = s->nix - 1; i >= 0 && e < 0; i--)
    if (ix_count(s->ix[i]) > 1) e = ix_h64(s->ix[i], IX_END_PHY);
  int64_t cut = -1;
  if (abnormal) cut = s->scan_from >= 0 && (e < 0 || s->scan_from < e) ? s->scan_from : e;
  else if (e >= s->write_pos) cut = s->write_pos;
  if (cut >= 0 && e >= cut) {
    if ((rc = ix_truncate(s, cut))) return rc;
    e = -1;
    for (int i = s->nix - 1; i >= 0 && e < 0; i--)
      if (ix_count(s->ix[i]) > 1) e = ix_h64(s->ix[i], IX_END_PHY);
  }
  if (abnormal && cut >= 0) {
    s->idx_pos = cut;
    s->idx_skip = 0;
  } else if (e >= 0) {
    /* The record at e is indexed; those after it are not (RocketMQ's rule:
    ** nothing below the newest file's endPhyOffset). */
    s->idx_pos = e;
    s->idx_skip = e + 1;
  } else {
    s->idx_pos = rmqi_store_min_phys(s);
    s->idx_skip = 0;
  }
  if (repaired >= 0 && s->idx_pos > repaired) {
    int64_t minp = rmqi_store_min_phys(s);
    s->idx_pos = repaired > minp ? repaired : minp;
    s->idx_skip = 0;
  }
  /* A newest file of another geometry is read but not written. */
  if (s->nix && (s->ix[s->nix - 1]->slots != s->o.max_hash_slot_num || s->ix[s->nix - 1]->num != s->o.max_index_num))
    s->ix_ro_last = 1;
  atomic_store(&s->idx_done, s->idx_pos);
  atomic_store(&s->ix_cp_ts, s->cp_old[2]);
  return RMQ_OK;
}

static void *ix_main(void *arg)
{
  rmqi_store *s = arg;
  /* Behind the senders: on a machine with as many busy threads as cores it
  ** takes what they leave (queries and the checkpoint's flush index the
  ** rest themselves, so the lag stays bounded). */
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
  pthread_mutex_lock(&s->ix_wait_lock);
  while (!s->ix_stop) {
    pthread_mutex_unlock(&s->ix_wait_lock);
    pthread_mutex_lock(&s->idx_lock);
    int n = ix_step(s, 4096);
    ix_note(s, n < 0 ? n : RMQ_OK);
    pthread_mutex_unlock(&s->idx_lock);
    pthread_mutex_lock(&s->ix_wait_lock);
    if (n <= 0 && !s->ix_stop) {
      struct timespec ts;
      abs_deadline(&ts, n < 0 ? 1000 : 20);
      pthread_cond_timedwait(&s->ix_cond, &s->ix_wait_lock, &ts);
    }
  }
  pthread_mutex_unlock(&s->ix_wait_lock);
  return NULL;
}

static void ix_start(rmqi_store *s)
{
  if (!s->o.service_thread || !s->o.message_index_enable || s->o.read_only) return;
  if (pthread_create(&s->ix_thread, NULL, ix_main, s) == 0) s->ix_running = 1;
}

static void ix_stop_thread(rmqi_store *s)
{
  if (!s->ix_running) return;
  rmqi_thread_stop(&s->ix_wait_lock, &s->ix_cond, &s->ix_stop, s->ix_thread);
  s->ix_running = 0;
}

RMQI_FUNC int rmqi_store_index_catch_up(rmqi_store *s)
{
  if (s->o.read_only || !s->o.message_index_enable) return RMQ_OK;
  pthread_mutex_lock(&s->idx_lock);
  int rc = ix_catch_up(s);
  ix_note(s, rc);
  pthread_mutex_unlock(&s->idx_lock);
  return rc;
}

RMQI_FUNC int rmqi_store_index_query(rmqi_store *s, const char *topic, const char *key, int64_t begin, int64_t end,
                                     rmqi_index_fn fn, void *ctx)
{
  int32_t hash = rmqi_index_key_hash(topic, strlen(topic), key, strlen(key));
  pthread_mutex_lock(&s->idx_lock);
  /* Whatever is stored is found: index what is not yet. */
  int rc = ix_catch_up(s);
  if (rc == RMQ_ENOSPC) rc = RMQ_OK; /* what is indexed is still found */
  /* The index's times are whole seconds from a file's begin (and a file's
  ** first entry counts from the previous file's end): a second of slack
  ** each way, the caller checks the store time exactly. */
  int64_t lo = begin > INT64_MIN + 1000 ? begin - 1000 : begin, hi = end < INT64_MAX - 1000 ? end + 1000 : end;
  for (int i = s->nix - 1; i >= 0 && !rc; i--) {
    ixfile *f = s->ix[i];
    int32_t count = ix_count(f);
    int64_t fb = ix_h64(f, IX_BEGIN_TS), fe = ix_h64(f, IX_END_TS);
    if (count > 1 && fe >= lo && fb <= hi) {
      int32_t n = (int32_t)rmqi_get32(f->base + IX_HEADER + (int64_t)(hash % f->slots) * 4);
      while (n > 0 && n < count) {
        const uint8_t *e = ix_entry(f, n);
        int64_t t = rmqi_add_sat(fb, (int64_t)rmqi_get32(e + 8 + 4) * 1000); /* a header may say anything */
        if ((int32_t)rmqi_get32(e) == hash && (rc = fn(ctx, (int64_t)rmqi_get64(e + 4)))) break;
        if (t < lo) break;
        int32_t prev = (int32_t)rmqi_get32(e + 16);
        if (prev >= n) break; /* chains only go back: a damaged one ends */
        n = prev;
      }
    }
    if (fb > 0 && fb < lo) break;
  }
  pthread_mutex_unlock(&s->idx_lock);
  return rc > 0 ? RMQ_OK : rc;
}

RMQI_FUNC void rmqi_store_index_info(rmqi_store *s, rmqi_index_info *out)
{
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&s->idx_lock);
  out->files = s->nix;
  for (int i = s->nix - 1; i >= 0; i--)
    if (ix_count(s->ix[i]) > 1) {
      out->last_ts = ix_h64(s->ix[i], IX_END_TS);
      out->last_phys = ix_h64(s->ix[i], IX_END_PHY);
      break;
    }
  pthread_mutex_unlock(&s->idx_lock);
  int64_t behind = rmqi_store_max_phys(s) - atomic_load(&s->idx_done);
  out->behind = s->o.message_index_enable && !s->o.read_only && behind > 0 ? behind : 0;
}

RMQI_FUNC int rmqi_store_index_each(rmqi_store *s, rmqi_index_each_fn fn, void *ctx)
{
  int rc = RMQ_OK;
  pthread_mutex_lock(&s->idx_lock);
  for (int i = 0; i < s->nix && !rc; i++) {
    ixfile *f = s->ix[i];
    char path[4200];
    ix_path(s, f, path);
    int32_t count = ix_count(f);
    if (ix_h32(f, IX_COUNT) != count)
      rc = fn(ctx, path, IX_COUNT, -1, -1, "header indexCount out of range");
    /* Entries in a hole are zeros: one problem for the run, not one per
    ** entry (a damaged count can claim 20 million of them). */
    const int64_t ebase = ix_entry(f, 0) - f->base, eend = ebase + (int64_t)count * IX_ENTRY;
    for (int32_t n = 1; n < count && !rc;) {
      int64_t off = ebase + (int64_t)n * IX_ENTRY, de;
      int64_t d = data_next(f->fd, off, eend, &de);
      if (d < 0) d = de = eend;
      int32_t m = (int32_t)((d - ebase) / IX_ENTRY);
      if (m > n) {
        rc = fn(ctx, path, off, -1, -1, "entries the header counts are a hole (zeros)");
        n = m;
        continue;
      }
      int32_t last = (int32_t)((de - ebase + IX_ENTRY - 1) / IX_ENTRY);
      if (last > count) last = count;
      for (; n < last && !rc; n++) {
        const uint8_t *e = ix_entry(f, n);
        int32_t prev = (int32_t)rmqi_get32(e + 16);
        int64_t eoff = e - f->base;
        if (prev < 0 || prev >= n) rc = fn(ctx, path, eoff, -1, -1, "prevIndex does not point at an older entry");
        else rc = fn(ctx, path, eoff, (int32_t)rmqi_get32(e), (int64_t)rmqi_get64(e + 4), NULL);
      }
    }
  }
  pthread_mutex_unlock(&s->idx_lock);
  return rc;
}

/* ======================================================================= */
/* Open and recovery                                                       */
/* ======================================================================= */

static char *path_join(const char *a, const char *b)
{
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = rmqi_malloc(n);
  if (p) snprintf(p, n, "%s/%s", a, b);
  return p;
}

static int load_topics(rmqi_store *s)
{
  rmqi_json *j = NULL;
  int damaged;
  int rc = config_json(s, "topics.json", &j, &damaged);
  if (rc == RMQ_ENOTFOUND) return RMQ_OK;
  if (rc) return rc;
  const rmqi_json *dv = rmqi_json_get(j, "dataVersion");
  const rmqi_json *ctr = rmqi_json_get(dv, "counter");
  /* Each persist adds 1: a damaged counter is kept where that cannot overflow. */
  if (ctr) s->topics_version = s->topics_loaded_version = ctr->inum < 0 ? 0 : ctr->inum > INT64_MAX / 2 ? INT64_MAX / 2 : ctr->inum;
  const rmqi_json *tab = rmqi_json_get(j, "topicConfigTable");
  for (const rmqi_json *t = tab ? tab->child : NULL; t; t = t->next) {
    const rmqi_json *w = rmqi_json_get(t, "writeQueueNums"), *r = rmqi_json_get(t, "readQueueNums");
    const rmqi_json *perm = rmqi_json_get(t, "perm");
    int64_t nq64 = w ? w->inum : 0;
    if (r && r->inum > nq64) nq64 = r->inum;
    if (!t->key || !*t->key || strlen(t->key) > 255 || strchr(t->key, '/') || nq64 < 1 || nq64 > RMQ_MAX_QUEUE_NUMS) {
      rmqi_log(s->env, RMQ_LOG_WARN, "topics.json: skipping invalid entry '%s'", t->key ? t->key : "");
      continue;
    }
    if (!strcmp(t->key, ".") || !strcmp(t->key, "..")) continue;
    rmqi_topic *tp;
    rc = topic_make(s, t->key, (int)nq64, perm && perm->inum >= 0 && perm->inum <= INT32_MAX ? (int)perm->inum : 6, &tp);
    if (rc) break;
    /* An older .bak may lack a later queue count: then the log decides. */
    tp->configured = !damaged;
  }
  rmqi_json_free(j);
  /* Loaded from the .bak: rewrite the damaged main file now, so that other
  ** readers of the store (RocketMQ's own) find it whole. */
  if (!rc && damaged) {
    pthread_mutex_lock(&s->topic_lock);
    rc = topics_persist(s);
    pthread_mutex_unlock(&s->topic_lock);
  }
  return rc;
}

/* An existing store keeps the ConsumeQueue file size its files were made
** with (RocketMQ refuses to load a queue whose files differ from its
** setting). From the first queues found: the distance between two file
** names where a queue has two, else the size most of their files have. */
static void cq_size_from_files(rmqi_store *s)
{
  DIR *d = opendir(s->cq_root);
  if (!d) return;
  int64_t sizes[64], dist = 0;
  int counts[64], nsizes = 0, seen = 0;
  struct dirent *e;
  while (!dist && seen < 64 && (e = readdir(d))) {
    if (e->d_name[0] == '.' || strlen(e->d_name) > 255) continue;
    char *tdir = path_join(s->cq_root, e->d_name);
    DIR *qd = tdir ? opendir(tdir) : NULL;
    struct dirent *qe;
    while (qd && !dist && seen < 64 && (qe = readdir(qd))) {
      if (qe->d_name[0] < '0' || qe->d_name[0] > '9') continue;
      char *qdir = path_join(tdir, qe->d_name);
      int64_t *starts = NULL;
      int n = 0;
      if (qdir && list20(qdir, &starts, &n) == RMQ_OK && n > 0) {
        seen++;
        if (n > 1 && starts[1] > starts[0] && (starts[1] - starts[0]) % RMQI_CQ_UNIT == 0) {
          dist = starts[1] - starts[0];
        } else {
          char fp[4400];
          struct stat st;
          snprintf(fp, sizeof fp, "%s/%020" PRId64, qdir, starts[0]);
          if (stat(fp, &st) == 0 && st.st_size > 0 && st.st_size % RMQI_CQ_UNIT == 0 && st.st_size <= INT32_MAX) {
            int k = 0;
            while (k < nsizes && sizes[k] != st.st_size) k++;
            if (k == nsizes && nsizes < 64) { sizes[nsizes] = st.st_size; counts[nsizes++] = 0; }
            if (k < nsizes) counts[k]++;
          }
        }
      }
      list20_free(starts, n);
      if (qdir) rmqi_free(qdir, strlen(qdir) + 1);
    }
    if (qd) closedir(qd);
    if (tdir) rmqi_free(tdir, strlen(tdir) + 1);
  }
  closedir(d);
  int64_t size = dist;
  for (int k = 0, best = 0; !size && k < nsizes; k++)
    if (counts[k] > best) { best = counts[k]; size = sizes[k]; }
  if (size > 0 && size <= INT32_MAX && size != s->cq_size) {
    rmqi_log(s->env, RMQ_LOG_INFO, "consumequeue files are %lld bytes; using that size", (long long)size);
    s->cq_size = (int)size;
  }
}

/* Lists the ConsumeQueue files found on disk (mapped when first used).
** Anomalies (a gap, a short non-last file) set *rebuild. */
static int load_cqs(rmqi_store *s, int *rebuild)
{
  cq_size_from_files(s);
  DIR *d = opendir(s->cq_root);
  if (!d) return errno == ENOENT ? RMQ_OK : rmqi_errno(errno, "opendir", s->cq_root);
  struct dirent *e;
  int rc = RMQ_OK;
  while (!rc && (e = readdir(d))) {
    const char *tn = e->d_name;
    if (tn[0] == '.' || strlen(tn) > 255) continue;
    char *tdir = path_join(s->cq_root, tn);
    if (!tdir) { rc = rmqi_err(RMQ_ENOMEM, "out of memory"); break; }
    DIR *qd = opendir(tdir);
    /* A topic listed in topics.json keeps its queue count: directories of
    ** queues above it were hidden by a shrink and stay hidden. */
    int listed = rmqi_topic_find(s, tn) != NULL;
    if (qd) {
      struct dirent *qe;
      while (!rc && (qe = readdir(qd))) {
        char *endp;
        long qid = strtol(qe->d_name, &endp, 10);
        if (qe->d_name[0] < '0' || qe->d_name[0] > '9' || *endp || qid < 0 || qid >= RMQ_MAX_QUEUE_NUMS) continue;
        rmqi_topic *t = rmqi_topic_find(s, tn);
        if (!t) {
          rc = topic_make(s, tn, 0, 6, &t);
          if (rc) break;
        }
        if (!listed && qid >= rmqi_topic_nqueues(t)) atomic_store(&t->nqueues, (int)qid + 1);
        rc = queue_make(t, (int)qid);
        if (rc) break;
        rmqi_queue *q = rmqi_topic_queue(t, (int)qid);
        int64_t *starts;
        int n;
        rc = list20(q->dir, &starts, &n);
        if (rc) break;
        for (int i = 0; i < n && !rc; i++) {
          if (starts[i] % s->cq_size) {
            rmqi_log(s->env, RMQ_LOG_WARN, "%s/%020" PRId64 ": name is not a multiple of the file size; ignored", q->dir, starts[i]);
            continue;
          }
          /* A unit (20 bytes) per record (64 and more): a queue's bytes stay
          ** below the log's bound. A name past it would overflow the sums
          ** of starts, sizes and units. */
          if (starts[i] > CL_MAX_OFFSET - s->cq_size) {
            char fp[4200];
            snprintf(fp, sizeof fp, "%s/%020" PRId64, q->dir, starts[i]);
            rmqi_log(s->env, RMQ_LOG_WARN, "%s: beyond any offset a store reaches; %s, the queue is rebuilt", fp,
                     s->o.read_only ? "ignored" : "removed");
            if (!s->o.read_only && OS->unlink(fp) != 0) { rc = rmqi_errno(errno, "unlink", fp); break; }
            *rebuild = 1;
            continue;
          }
          if (mvec_len(&q->cq) == 0) {
            q->first_file = starts[i] / s->cq_size;
            /* A record takes more than 64 bytes: a log of L bytes holds
            ** under L / 64 units. A queue file beyond that is no head lost
            ** but a damaged name; making the "missing" files before it
            ** would make millions. It goes (a reader would take its units
            ** for the queue's: RocketMQ too), and the queue is rebuilt. */
            if (q->first_file > 0 && s->cl_base == 0 && mvec_len(&s->cl) > 0 &&
                q->first_file > (int64_t)mvec_len(&s->cl) * (s->cl_size / 64) / (s->cq_size / RMQI_CQ_UNIT) + 1) {
              char fp[4200];
              snprintf(fp, sizeof fp, "%s/%020" PRId64, q->dir, starts[i]);
              rmqi_log(s->env, RMQ_LOG_WARN, "%s: beyond any unit the commitlog can hold; %s, the queue is rebuilt", fp,
                       s->o.read_only ? "ignored" : "removed");
              if (!s->o.read_only && OS->unlink(fp) != 0) { rc = rmqi_errno(errno, "unlink", fp); break; }
              q->first_file = 0;
              *rebuild = 1;
              continue;
            }
            if (q->first_file > 0 && s->cl_base == 0 && mvec_len(&s->cl) > 0 && !s->o.read_only) {
              /* ConsumeQueue files are deleted only after the CommitLog's
              ** head (rmq and RocketMQ alike): with the log whole from 0,
              ** the queue's head files were lost. Make them and rebuild. */
              rmqi_log(s->env, RMQ_LOG_WARN, "%s: the files before %020" PRId64 " are missing; rebuilding", q->dir,
                       starts[i]);
              *rebuild = 1;
              /* Once the empty head files exist the loss no longer shows:
              ** the marker keeps the rebuild due until one completes. */
              if ((rc = mark_rebuild(s->dir))) break;
              int64_t nhead = q->first_file;
              q->first_file = 0;
              for (int64_t k = 0; k < nhead && !rc; k++) {
                mfile *h = cq_file_new(q, k * s->cq_size, s->cq_size);
                if (!h) { rc = rmqi_err(RMQ_ENOMEM, "out of memory"); break; }
                /* Made, not mapped: there may be many (see the bound above). */
                if (!(rc = cq_create_unmapped(h)) && (rc = mvec_push(&q->cq, h))) cq_file_free(s, h);
                else if (rc) rmqi_free(h, sizeof *h);
              }
              if (!rc) rc = fsync_dir(q->dir);
              if (rc) break;
            }
          } else if (starts[i] / s->cq_size != q->first_file + mvec_len(&q->cq)) {
            rmqi_log(s->env, RMQ_LOG_WARN, "%s: gap before file %020" PRId64 "; rebuilding", q->dir, starts[i]);
            *rebuild = 1;
            break;
          }
          char fp[4200];
          snprintf(fp, sizeof fp, "%s/%020" PRId64, q->dir, starts[i]);
          struct stat st;
          if (stat(fp, &st) == 0 && st.st_size != s->cq_size) {
            rmqi_log(s->env, RMQ_LOG_WARN, "%s: %lld bytes, expected %d; rebuilding", fp, (long long)st.st_size, s->cq_size);
            *rebuild = 1;
          }
          /* Mapped when first used, not here: opening must not cost a
          ** descriptor and a mapping per queue. */
          mfile *f = cq_file_new(q, starts[i], s->cq_size);
          if (!f) { rc = rmqi_err(RMQ_ENOMEM, "out of memory"); break; }
          if ((rc = mvec_push(&q->cq, f))) rmqi_free(f, sizeof *f);
        }
        if (n > 0) atomic_store(&q->dir_made, 1);
        list20_free(starts, n);
      }
      closedir(qd);
    }
    rmqi_free(tdir, strlen(tdir) + 1);
  }
  closedir(d);
  return rc;
}

static int load_commitlog(rmqi_store *s)
{
  int64_t *starts;
  int n;
  int rc = list20(s->cl_dir, &starts, &n);
  if (rc) return rc;
  if (n > 0) {
    /* The store's file size: the first file's, unless the distance to the
    ** second name says that file was cut (a gap of whole files keeps it). */
    char fp[4200];
    struct stat st;
    snprintf(fp, sizeof fp, "%s/%020" PRId64, s->cl_dir, starts[0]);
    int64_t size = stat(fp, &st) == 0 ? (int64_t)st.st_size : 0;
    if (n > 1 && (size <= 0 || (starts[1] - starts[0]) % size != 0)) size = starts[1] - starts[0];
    if (size > 0 && size != s->cl_size) {
      rmqi_log(s->env, RMQ_LOG_INFO, "commitlog files are %lld bytes; using that size", (long long)size);
      set_cl_size(s, size);
    }
    s->cl_base = starts[0];
    atomic_store(&s->min_phys, starts[0]);
  }
  /* A 20-digit name reads up to INT64_MAX: offsets that near it would
  ** overflow the next file's start. No store writes 2^61 bytes. */
  if (n > 0 && starts[n - 1] > CL_MAX_OFFSET)
    rc = rmqi_err(RMQ_ECORRUPT, "%s: file %020" PRId64 " is past any offset a store reaches (%lld); open refused, "
                  "nothing changed", s->cl_dir, starts[n - 1], (long long)CL_MAX_OFFSET);
  for (int i = 0; i < n && !rc; i++) {
    if (starts[i] != s->cl_base + (int64_t)i * s->cl_size) {
      rc = rmqi_err(RMQ_ECORRUPT, "%s: file %020" PRId64 " does not follow the previous one (expected %020" PRId64 ")",
                    s->cl_dir, starts[i], s->cl_base + (int64_t)i * s->cl_size);
      break;
    }
    /* Only the last file may be short (a crash while making it); a short
    ** one before it has lost records and would read as a hole. */
    char fp[4200];
    struct stat st;
    snprintf(fp, sizeof fp, "%s/%020" PRId64, s->cl_dir, starts[i]);
    if (i < n - 1 && stat(fp, &st) == 0 && (int64_t)st.st_size != s->cl_size) {
      rc = rmqi_err(RMQ_ECORRUPT, "%s: %lld bytes, expected %lld (damaged or cut); open refused, nothing changed", fp,
                    (long long)st.st_size, (long long)s->cl_size);
      break;
    }
    if (i == n - 1 && stat(fp, &st) == 0 && (int64_t)st.st_size != s->cl_size) s->cl_last_short = 1;
    mfile *f;
    rc = mfile_open(s->cl_dir, starts[i], s->cl_size, s->o.read_only ? -1 : 0, 1, cl_huge(s), &f);
    if (!rc) rc = mvec_push(&s->cl, f);
  }
  list20_free(starts, n);
  return rc;
}

/* True when b[0..n) is all zero; n a multiple of 8 and b 8-aligned. */
static int zero_block(const uint8_t *b, size_t n)
{
  const uint64_t *w = (const uint64_t *)(const void *)b;
  uint64_t acc = 0;
  for (size_t i = 0; i < n / 8; i++) acc |= w[i];
  return acc == 0;
}

/* The end of the last nonzero byte of base[lo, hi), or -1: bytes down to
** a 4 KiB boundary, then whole blocks, then bytes. (Blocks only from an
** aligned end made a region ending at an odd unit, 20 bytes, a byte loop.) */
static int64_t last_nonzero_in(const uint8_t *base, int64_t lo, int64_t hi)
{
  int64_t i = hi;
  for (; i > lo && (i & 4095); i--)
    if (base[i - 1]) return i;
  while (i - 4096 >= lo && zero_block(base + i - 4096, 4096)) i -= 4096;
  for (; i > lo; i--)
    if (base[i - 1]) return i;
  return -1;
}

/* The end of the last nonzero byte of f in [from, to), or `from` when
** there is none. Only the file's data regions are read (SEEK_DATA and
** SEEK_HOLE): a file's unwritten tail is a hole, and reading a hole would
** cost its whole reserved size in reads (and, on tmpfs, in memory). */
static int64_t last_nonzero_fd(const mfile *f, int fd, int64_t from, int64_t to)
{
  if (to > f->size) to = f->size;
  if (from >= to) return from;
  int64_t lo = from, hi = to; /* the last data region found */
  if (fd >= 0) {
    off_t d = OS->lseek(fd, (off_t)from, SEEK_DATA);
    if (d < 0 && errno == ENXIO) return from;
    if (d >= 0) {
      /* Walk the regions forward and keep the last; then read backwards
      ** through it, and through earlier ones when it is all zeros. */
      int64_t rl[64][2];
      int nr = 0;
      while (d >= 0 && d < to) {
        off_t h = OS->lseek(fd, d, SEEK_HOLE);
        if (h < 0 || h > to) h = (off_t)to;
        if (nr == 64) { memmove(rl, rl + 1, sizeof rl[0] * 63); nr = 63; }
        rl[nr][0] = d < from ? from : d;
        rl[nr][1] = h;
        nr++;
        if (h >= to) break;
        d = OS->lseek(fd, h, SEEK_DATA);
      }
      for (int r = nr - 1; r >= 0; r--) {
        int64_t e = last_nonzero_in(f->base, rl[r][0], rl[r][1]);
        if (e >= 0) return e;
      }
      if (nr < 64) return from;
      hi = rl[0][0]; /* more regions than kept: read the rest plainly */
    }
  }
  int64_t e = last_nonzero_in(f->base, lo, hi);
  return e >= 0 ? e : from;
}

/* Last unit + 1 of a queue's files: units are written front to back, so
** the queue ends at its last nonzero unit. Only data regions are read, never
** a file's unwritten tail. */
/* Open only (single-threaded): the unit at queue offset off, mapping its
** file (a short one is extended, as recovery rewrites it). NULL when the
** queue has no such file. Valid until the next cq_evict. */
static uint8_t *cq_unit_at(rmqi_store *s, rmqi_queue *q, int64_t off)
{
  int64_t byte = off * RMQI_CQ_UNIT;
  mfile *f = mvec_at(&q->cq, byte / s->cq_size - q->first_file);
  if (!f || cq_need_create(s, f) != RMQ_OK) return NULL;
  return f->base + (byte - f->start);
}

static int64_t last_nonzero(const mfile *f, int64_t from) { return last_nonzero_fd(f, f->fd, from, f->size); }

static int64_t cq_scan_max_below(rmqi_store *s, rmqi_queue *q, int64_t limit)
{
  int nf = mvec_len(&q->cq);
  for (int k = nf - 1; k >= 0; k--) {
    mfile *f = mvec_at(&q->cq, k);
    if (f->start / RMQI_CQ_UNIT >= limit) continue;
    int64_t to = limit - f->start / RMQI_CQ_UNIT < f->size / RMQI_CQ_UNIT ? (limit - f->start / RMQI_CQ_UNIT) * RMQI_CQ_UNIT
                                                                          : f->size;
    if (cq_need_create(s, f) != RMQ_OK) {
      rmqi_log(s->env, RMQ_LOG_WARN, "%s", rmq_errmsg());
      continue;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/%020" PRId64, f->dir, f->start);
    int fd = OS->open(path, O_RDONLY, 0); /* for SEEK_DATA: the tail is never read */
    int64_t e = last_nonzero_fd(f, fd, 0, to);
    if (fd >= 0) OS->close(fd);
    if (e > 0) return f->start / RMQI_CQ_UNIT + (e - 1) / RMQI_CQ_UNIT + 1;
  }
  return nf ? (q->first_file * s->cq_size) / RMQI_CQ_UNIT : 0;
}

static int64_t cq_scan_max(rmqi_store *s, rmqi_queue *q) { return cq_scan_max_below(s, q, INT64_MAX); }

static int64_t cq_scan_min(rmqi_store *s, rmqi_queue *q, int64_t max)
{
  int64_t off = (q->first_file * s->cq_size) / RMQI_CQ_UNIT;
  for (; off < max; off++) {
    /* max_offset is not published yet: read through the file directly. */
    const uint8_t *u = cq_unit_at(s, q, off);
    if (!u || (int32_t)rmqi_get32(u + 8) != INT32_MAX) break;
  }
  return off;
}

/* Is the unit's record there and does it say it belongs here? */
static int unit_matches(rmqi_store *s, rmqi_queue *q, int64_t off, const uint8_t *u, int64_t cl_end)
{
  int64_t phys = (int64_t)rmqi_get64(u);
  int32_t size = (int32_t)rmqi_get32(u + 8);
  if (size == INT32_MAX && phys == 0) return 1; /* pad */
  if (phys < s->cl_base || size <= 0 || phys > cl_end - size) return 0;
  mfile *f = mvec_at(&s->cl, cl_index(s, phys));
  if (!f || phys + size > f->start + f->size) return 0;
  rmqi_record r;
  if (rmqi_record_decode(f->base + (phys - f->start), (size_t)size, 0, &r) != RMQ_OK) return 0;
  return (int64_t)r.total == size && r.queue_id == q->qid && r.queue_offset == off &&
         (size_t)r.topic_len == q->topic->name_len && !memcmp(r.topic, q->topic->name, q->topic->name_len);
}

/* Rewrites the record's ConsumeQueue unit if it is missing or different. */
static int dispatch(rmqi_store *s, const rmqi_record *r, int64_t pos, int *created_topic)
{
  int tx = r->sys_flag & RMQI_SYSFLAG_TX_MASK;
  if (tx == RMQI_SYSFLAG_TX_PREPARED || tx == RMQI_SYSFLAG_TX_ROLLBACK) return RMQ_OK;
  if (r->queue_id < 0 || r->queue_id >= RMQ_MAX_QUEUE_NUMS || r->queue_offset < 0 || r->topic_len > 255) return RMQ_OK;
  /* QUEUEID and QUEUEOFFSET lie outside the body's CRC: a damaged one must
  ** not grow a topic or make queue files without end. Such a record stays
  ** in the CommitLog, unindexed. No log this size holds more records than
  ** this (91 bytes is the smallest record). */
  int64_t most = (s->cl_base + (int64_t)mvec_len(&s->cl) * s->cl_size) / 91 + 1;
  if (r->queue_offset > most) {
    rmqi_log(s->env, RMQ_LOG_WARN, "recovery: record at %" PRId64 " of %.*s claims queue offset %" PRId64
             " (no log this size reaches %" PRId64 "); not indexed", pos, r->topic_len, r->topic, r->queue_offset, most);
    return RMQ_OK;
  }
  /* Runs of records share a topic: the last one found is kept. */
  rmqi_topic *t = s->rec_topic;
  int rc;
  if (!t || t->name_len != (size_t)r->topic_len || memcmp(t->name, r->topic, t->name_len) != 0) {
    char name[256];
    memcpy(name, r->topic, (size_t)r->topic_len);
    name[r->topic_len] = 0;
    if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) return RMQ_OK;
    /* A deleted topic's records stay in the log until retention: not its. */
    struct tomb *tb = s->ntombs ? tomb_find(s, name) : NULL;
    if (tb && pos < tb->phys) return RMQ_OK;
    t = rmqi_topic_find(s, name);
    if (!t) {
      rc = topic_make(s, name, 0, 6, &t);
      if (rc) return rc;
      *created_topic = 1;
    }
    s->rec_topic = t;
  }
  const char *name = t->name;
  if (t->configured && r->queue_id >= rmqi_topic_nqueues(t) && !rmqi_topic_queue(t, r->queue_id)) {
    rmqi_log(s->env, RMQ_LOG_WARN, "recovery: record at %" PRId64 " claims queue %d of %s, which has %d; not indexed",
             pos, r->queue_id, name, rmqi_topic_nqueues(t));
    return RMQ_OK;
  }
  /* A queue mapped from disk above the topic's count was hidden by a shrink:
  ** it stays hidden. Only a queue with no files at all is added. */
  if (r->queue_id >= rmqi_topic_nqueues(t) && !rmqi_topic_queue(t, r->queue_id)) {
    atomic_store(&t->nqueues, r->queue_id + 1);
    *created_topic = 1;
  }
  rc = queue_make(t, r->queue_id);
  if (rc) return rc;
  rmqi_queue *q = rmqi_topic_queue(t, r->queue_id);
  /* A queue without files whose first record comes far in (its head files
  ** deleted, or a damaged QUEUEOFFSET): only the file holding the record is
  ** made, the units before it padded, as RocketMQ's fillPreBlank does. Made
  ** from 0 on, that was every file before it (10^4 and more, seconds). */
  /* Records of a queue lie in the log in offset order, each of 91 bytes or
  ** more: from the record of the queue's last unit to this one, the offset
  ** grows by at most the bytes between over 91. A larger jump is a damaged
  ** QUEUEOFFSET, left unindexed like the one above rather than filling the
  ** gap with empty files (seconds for 10^5 small files). Only when that
  ** last unit's record is there and says it is this queue's. */
  if (r->queue_offset > q->next_offset && q->next_offset > 0) {
    int64_t last = q->next_offset - 1;
    const uint8_t *lu = cq_unit_at(s, q, last);
    int64_t lphys = lu ? (int64_t)rmqi_get64(lu) : -1;
    if (lu && lphys < pos && unit_matches(s, q, last, lu, pos) && r->queue_offset - last > (pos - lphys) / 91) {
      rmqi_log(s->env, RMQ_LOG_WARN, "recovery: record at %" PRId64 " of %.*s claims queue offset %" PRId64
               " (queue %d's offset %" PRId64 " is at %" PRId64 ", too near for that); not indexed", pos,
               r->topic_len, r->topic, r->queue_offset, r->queue_id, last, lphys);
      return RMQ_OK;
    }
  }
  int64_t pad_from = -1;
  if (mvec_len(&q->cq) == 0 && q->next_offset == 0 && r->queue_offset * RMQI_CQ_UNIT >= s->cq_size) {
    q->first_file = r->queue_offset * RMQI_CQ_UNIT / s->cq_size;
    pad_from = q->first_file * s->cq_size / RMQI_CQ_UNIT;
  }
  if (r->queue_offset * RMQI_CQ_UNIT / s->cq_size < q->first_file) return RMQ_OK; /* cleaned up */
  uint8_t *u;
  rc = cq_unit_ptr(s, q, r->queue_offset, &u);
  if (rc) return rc;
  for (int64_t o = pad_from; pad_from >= 0 && o < r->queue_offset; o++) {
    uint8_t *pu; /* the same mapped file as u: no failure left */
    if (cq_unit_ptr(s, q, o, &pu) == RMQ_OK) unit_write(pu, 0, INT32_MAX, 0);
  }
  int64_t tags_code = 0;
  const char *tv;
  size_t tl;
  if (rmqi_props_find(r->props, (size_t)r->props_len, "TAGS", 4, &tv, &tl)) tags_code = rmqi_jhash(tv, tl);
  /* A delayed message's unit carries its deliver time (queue id = level - 1),
  ** as RocketMQ's checkMessageAndReturnSize computes it. */
  if (t->name_len == sizeof RMQI_SCHEDULE_TOPIC - 1 && !strcmp(name, RMQI_SCHEDULE_TOPIC))
    tags_code = rmqi_add_sat(r->store_ts, rmqi_store_delay_ms(s, r->queue_id + 1));
  if ((int64_t)rmqi_get64(u) != pos || (int32_t)rmqi_get32(u + 8) != (int32_t)r->total ||
      (int64_t)rmqi_get64(u + 12) != tags_code) {
    unit_write(u, pos, (int32_t)r->total, tags_code);
    s->rinfo.cq_units_rebuilt++;
    q->rec_dirty = 1;
  }
  if (r->queue_offset + 1 > q->next_offset) q->next_offset = r->queue_offset + 1;
  return RMQ_OK;
}

/* Reads the checkpoint's five fields into s->cp_old (zeros when missing or
** short). */
static void checkpoint_read(rmqi_store *s)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/checkpoint", s->dir);
  uint8_t b[40] = {0};
  int fd = OS->open(path, O_RDONLY, 0);
  if (fd >= 0) {
    ssize_t n = OS->pread(fd, b, sizeof b, 0);
    OS->close(fd);
    if (n < (ssize_t)sizeof b) memset(b + (n > 0 ? n : 0), 0, sizeof b - (size_t)(n > 0 ? n : 0));
  }
  int64_t later = rmqi_now(s->env) + 86400000; /* a time past this is damage, not to be kept */
  for (int i = 0; i < 5; i++) {
    int64_t v = (int64_t)rmqi_get64(b + 8 * i);
    s->cp_old[i] = v > 0 && (i > 2 || v <= later) ? v : 0;
  }
}

static int64_t checkpoint_min_ts(rmqi_store *s)
{
  int64_t phys = s->cp_old[0], logics = s->cp_old[1];
  int64_t m = (phys < logics ? phys : logics) - 3000;
  return m > 0 ? m : 0;
}

/* Index of the file the scan starts from. */
static int64_t scan_start_file(rmqi_store *s, int abnormal, int rebuild)
{
  int nf = mvec_len(&s->cl);
  if (rebuild || nf == 0) return 0;
  if (!abnormal) return nf > 3 ? nf - 3 : 0;
  int64_t min_ts = checkpoint_min_ts(s);
  for (int i = nf - 1; i >= 0; i--) {
    mfile *f = mvec_at(&s->cl, i);
    rmqi_record r;
    if (rmqi_record_decode(f->base, (size_t)f->size, 0, &r) != RMQ_OK || r.magic != RMQI_MAGIC_V1) continue;
    if (r.store_ts != 0 && r.store_ts <= min_ts) return i;
  }
  return 0;
}

/* Does CommitLog file idx begin with a whole, CRC-checked record of its own
** offset? Then damage before it is in the middle of the log, not a torn
** tail. */
static int file_starts_intact(rmqi_store *s, int64_t idx)
{
  mfile *f = mvec_at(&s->cl, idx);
  rmqi_record r;
  return f && rmqi_record_decode(f->base, (size_t)f->size, 1, &r) == RMQ_OK && r.phys_offset == f->start;
}

/* The next whole record of f at or after `from`, found by its magic and
** its PHYSICALOFFSET naming its own position (and its CRC), or -1. */
static int64_t resync(rmqi_store *s, const mfile *f, int64_t from)
{
  int64_t lim = last_nonzero(f, from); /* a record's magic lies inside the data */
  int64_t data_end = f->fd >= 0 ? from : INT64_MAX; /* [q, data_end) is known to be data */
  for (int64_t q = from; q + 91 <= f->size && q + 8 <= lim; q++) {
    if (q >= data_end) {
      /* Holes are skipped unread (SEEK_DATA): reading one byte by byte
      ** costs time in proportion to the file's reserved size and, on tmpfs,
      ** as much memory, since a read through the mapping fills a hole (a
      ** damaged 1 GiB file took seconds). The magic has no zero byte, so
      ** it lies wholly in data: a record starts at least 4 bytes before. */
      off_t d = OS->lseek(f->fd, (off_t)q, SEEK_DATA);
      if (d < 0 && errno == ENXIO) break;
      off_t h = d < 0 ? -1 : OS->lseek(f->fd, d, SEEK_HOLE);
      data_end = h < 0 ? INT64_MAX : (int64_t)h;
      if (d > q + 4) q = (int64_t)d - 4;
      if (q + 91 > f->size || q + 8 > lim) break;
    }
    if (q + 8 > data_end) { q = data_end - 1; continue; } /* the magic would reach into a hole */
    uint32_t magic = rmqi_get32(f->base + q + 4);
    if (magic != RMQI_MAGIC_V1 && magic != RMQI_MAGIC_V2) continue;
    int64_t ph = 0; /* PHYSICALOFFSET; bytes in a hole are zeros, not read */
    for (int k = 0; k < 8; k++) ph = (int64_t)((uint64_t)ph << 8 | (q + 28 + k < data_end ? f->base[q + 28 + k] : 0));
    if (ph != f->start + q) continue;
    rmqi_record r;
    if (rmqi_record_decode(f->base + q, (size_t)(f->size - q), 1, &r) == RMQ_OK) return q;
  }
  (void)s;
  return -1;
}

/* The scan reads a 1 GiB file front to back once: the pages behind it are
** let go from this process (they stay in the page cache), so a recovery's
** resident memory does not grow with the log it reads. */
#define SCAN_DROP (64 << 20)
static int64_t scan_drop(mfile *f, int64_t from, int64_t to)
{
  to &= ~(int64_t)4095;
  if (to > from) madvise(f->base + from, (size_t)(to - from), MADV_DONTNEED);
  return to > from ? to : from;
}

/* The scan reads the log with pread into a buffer rather than through
** the mapping: on a VM the first touch of each mapped 4 KiB page costs an
** exit to the hypervisor (2.5 us a page measured here, most of a scan's
** time), where the kernel's copy goes through its own huge-page mapping.
** scan_at returns bytes [p, p + n) of f, or NULL (not all there, a read
** failed): the caller then reads through the mapping. */
#define SCAN_BUF (4 << 20)
typedef struct scan_buf {
  uint8_t *b;
  size_t cap;
  int64_t start, len;
} scan_buf;

static const uint8_t *scan_at(scan_buf *sb, mfile *f, int64_t p, int64_t n)
{
  if (p >= sb->start && p + n <= sb->start + sb->len) return sb->b + (p - sb->start);
  if (n > f->size - p || n > 4 * (int64_t)SCAN_BUF) return NULL;
  int64_t len = f->size - p < (int64_t)SCAN_BUF ? f->size - p : (int64_t)SCAN_BUF;
  /* Only the data region at p is read (and at least the n bytes asked):
  ** a hole reads as zeros, but copying megabytes of them is most of a
  ** small store's open, and the scan stops at the first zero anyway. The
  ** buffer grows with what is read, up to SCAN_BUF. */
  off_t hole = OS->lseek(f->fd, (off_t)p, SEEK_HOLE);
  if (hole >= (off_t)p && (int64_t)hole - p < len) len = (int64_t)hole - p;
  if (len < n) len = n;
  size_t want = ((size_t)len + 65535) & ~(size_t)65535;
  if (want > sb->cap) {
    if (want < sb->cap * 2) want = sb->cap * 2;
    if (want < (size_t)len) want = (size_t)len;
    uint8_t *nb = rmqi_realloc(sb->b, sb->cap, want);
    if (!nb) return NULL;
    sb->b = nb;
    sb->cap = want;
  }
  int64_t got = 0;
  while (got < len) {
    ssize_t r = OS->pread(f->fd, sb->b + got, (size_t)(len - got), (off_t)(p + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += r;
  }
  sb->start = p;
  sb->len = got;
  return got >= n ? sb->b : NULL;
}

static int recover(rmqi_store *s, int abnormal, int rebuild)
{
  rmq_recovery_info *ri = &s->rinfo;
  int nf = mvec_len(&s->cl);
  int created_topic = 0, rc = RMQ_OK;
  int check_crc = s->o.check_crc_on_recover;
  int64_t fidx = scan_start_file(s, abnormal, rebuild);
  int64_t end = s->cl_base + fidx * s->cl_size;
  s->scan_from = abnormal ? end : -1;
  const char *why = NULL;
  char whybuf[600];
  if (nf) rmqi_log(s->env, RMQ_LOG_INFO, "recovery: %s, scanning commitlog from file %020" PRId64,
                   abnormal ? "abnormal (abort file found)" : "normal", end);
  scan_buf sb = {NULL, 0, 0, 0};
  for (; fidx < nf && !why; fidx++) {
    mfile *f = mvec_at(&s->cl, fidx);
    int64_t p = 0, dropped = 0;
    sb.start = sb.len = 0;
    for (;;) {
      const char *bad = NULL;
      rmqi_record r;
      int drc = RMQ_OK;
      const uint8_t *h = f->size - p >= 8 ? scan_at(&sb, f, p, 8) : NULL;
      if (!h) h = f->base + p;
      if (f->size - p < 8 || (rmqi_get32(h) == 0 && rmqi_get32(h + 4) == 0)) {
        bad = "end of data";
      } else {
        /* A whole record from the buffer; a BLANK, an odd size or damage
        ** through the mapping, which holds the file whole. */
        uint32_t total = rmqi_get32(h), magic = rmqi_get32(h + 4);
        const uint8_t *rp = (magic == RMQI_MAGIC_V1 || magic == RMQI_MAGIC_V2) && total >= 8 ? scan_at(&sb, f, p, total) : NULL;
        drc = rp ? rmqi_record_decode(rp, total, check_crc, &r)
                 : rmqi_record_decode(f->base + p, (size_t)(f->size - p), check_crc, &r);
        if (drc == RMQ_ENOTFOUND) {  /* BLANK: the file is full */
          if (p + r.total == f->size) { end = f->start + f->size; break; }
          snprintf(whybuf, sizeof whybuf, "blank record of %u bytes does not end its file", r.total);
          bad = whybuf;
        } else if (drc != RMQ_OK) {
          snprintf(whybuf, sizeof whybuf, "%s", rmq_errmsg());
          bad = whybuf;
        } else if (r.phys_offset != f->start + p) {
          /* A whole file of records that belong elsewhere was renamed:
          ** cutting here would destroy them. */
          if (p == 0 && r.phys_offset >= 0 && r.phys_offset % s->cl_size == s->cl_base % s->cl_size) {
            rmqi_free(sb.b, sb.cap);
            return rmqi_err(RMQ_ECORRUPT, "%s/%020" PRId64 ": the file holds the records of offset %020" PRId64
                            " (renamed?); open refused, nothing changed", s->cl_dir, f->start, r.phys_offset);
          }
          snprintf(whybuf, sizeof whybuf, "PHYSICALOFFSET %" PRId64 " stored at %" PRId64, r.phys_offset, f->start + p);
          bad = whybuf;
        } else if (abnormal && (bad = record_torn(&r)) != NULL) {
          snprintf(whybuf, sizeof whybuf, "torn record: %s", bad);
          bad = whybuf;
        }
      }
      if (bad && !abnormal) {
        /* No crash: this is damage, not a torn tail, and cutting here (as
        ** after a crash) would delete every intact record after it. Skip
        ** to the next whole record, in this file or the next. */
        int zeros = !strcmp(bad, "end of data");
        int64_t next = zeros && last_nonzero(f, p) == p ? -1 : resync(s, f, p + 1);
        if (next > 0) {
          ri->bytes_skipped += next - p;
          rmqi_log(s->env, RMQ_LOG_ERROR, "recovery: commitlog damaged at %" PRId64 " (%s): %" PRId64
                   " bytes skipped (not indexed), the records after them kept", f->start + p, bad, next - p);
          p = next;
          continue;
        }
        if (fidx + 1 < nf && file_starts_intact(s, fidx + 1)) {
          if (!zeros || last_nonzero(f, p) > p) {
            ri->bytes_skipped += f->size - p;
            rmqi_log(s->env, RMQ_LOG_ERROR, "recovery: commitlog damaged at %" PRId64 " (%s): the rest of file %020"
                     PRId64 " skipped (not indexed), the files after it kept", f->start + p, bad, f->start);
          }
          break;
        }
      }
      if (bad) {
        why = bad;
        break;
      }
      ri->records_scanned++;
      rc = s->o.read_only ? RMQ_OK : dispatch(s, &r, f->start + p, &created_topic);
      if (rc) { rmqi_free(sb.b, sb.cap); return rc; }
      if ((ri->records_scanned & 1023) == 0) cq_evict(s); /* no unit pointer is held here */
      p += r.total;
      end = f->start + p;
      if (p - dropped >= SCAN_DROP) dropped = scan_drop(f, dropped, p);
    }
    scan_drop(f, dropped, p);
  }
  rmqi_free(sb.b, sb.cap);
  /* Cut at `end`: zero the rest of its file, delete the files after it.
  ** A read-only open only reads up to it. */
  if (nf && !s->o.read_only) {
    int64_t cut_idx = (end - s->cl_base) / s->cl_size;
    /* A file past the cut that begins with a whole record of another
    ** offset was renamed, not torn: refuse rather than destroy it. */
    for (int64_t i = cut_idx + 1; i < nf; i++) {
      mfile *f = mvec_at(&s->cl, i);
      rmqi_record r;
      if (rmqi_record_decode(f->base, (size_t)f->size, 1, &r) == RMQ_OK && r.phys_offset != f->start)
        return rmqi_err(RMQ_ECORRUPT, "%s/%020" PRId64 ": the file holds the records of offset %020" PRId64
                        " (renamed?); open refused, nothing changed", s->cl_dir, f->start, r.phys_offset);
    }
    for (int64_t i = cut_idx; i < nf; i++) {
      mfile *f = mvec_at(&s->cl, i);
      int64_t from = end > f->start ? end - f->start : 0;
      int64_t last = last_nonzero(f, from);
      if (last > from) {
        ri->bytes_truncated += last - from;
        rc = mfile_zero_from(s->cl_dir, f, from);
        if (rc) return rc;
      }
    }
    if (ri->bytes_truncated) s->cp_old[3] = s->cp_old[4] = 0; /* offsets past the cut are gone */
    if (ri->bytes_truncated)
      rmqi_log(s->env, RMQ_LOG_WARN, "recovery: commitlog cut at offset %" PRId64 " (%s): %" PRId64 " bytes dropped",
               end, why ? why : "?", ri->bytes_truncated);
    /* Files wholly past the cut go (RocketMQ deletes them). Keep the file
    ** holding `end` so the next append has somewhere to go. */
    while (mvec_len(&s->cl) > cut_idx + 1 && mvec_len(&s->cl) > 1) {
      int last = mvec_len(&s->cl) - 1;
      mfile *f = mvec_at(&s->cl, last);
      if (f->start < end) break;
      char fp[4200];
      snprintf(fp, sizeof fp, "%s/%020" PRId64, s->cl_dir, f->start);
      mfile_close(f);
      OS->unlink(fp);
      atomic_store(&s->cl.n, last);
      ri->files_removed++;
    }
  }
  s->write_pos = end;
  atomic_store(&s->published, end);
  atomic_store(&s->flushed, end);
  for (int i = 0; i < mvec_len(&s->cl); i++) {
    mfile *f = mvec_at(&s->cl, i);
    int64_t w = end - f->start;
    w = w < 0 ? 0 : w > f->size ? f->size : w;
    atomic_store(&f->alloc, w);
    f->ro_upto = w & ~(int64_t)(SEAL_CHUNK - 1);
  }
  ri->commitlog_min_offset = s->cl_base;
  ri->commitlog_max_offset = end;
  /* Queues: drop units past the cut, set bounds. */
  rmqi_topic **tab = atomic_load(&s->ttab);
  for (int i = 0; tab && i < s->tcap; i++) {
    rmqi_topic *t = tab[i];
    if (!t) continue;
    for (int qid = 0; qid < topic_qcap(t); qid++) {
      rmqi_queue *q = rmqi_topic_queue(t, qid);
      if (!q) continue;
      int64_t max = cq_scan_max(s, q);
      int64_t min = (q->first_file * s->cq_size) / RMQI_CQ_UNIT;
      /* The scan dispatched this queue's records up to the log's end: every
      ** unit after the last of them is garbage, whatever it says (a torn
      ** sector can leave a unit with half its offset zeroed, which would
      ** pass for an expired record below). */
      const int64_t dispatched = q->next_offset;
      while (max > min) {
        uint8_t *u = cq_unit_at(s, q, max - 1);
        if (!u) break;
        int64_t phys = (int64_t)rmqi_get64(u);
        int32_t size = (int32_t)rmqi_get32(u + 8);
        /* Else garbage: past the cut, not the unit of this queue's record
        ** there, or zeros (a torn sector left a hole under units written
        ** after it). A unit below the CommitLog's first file is a record
        ** that expired (RocketMQ keeps the queue's last file): it stays. */
        int garbage = (dispatched > 0 && max > dispatched) ||
                      (size != INT32_MAX && (size <= 0 || phys > end - size ||
                                             (phys >= s->cl_base && !unit_matches(s, q, max - 1, u, end))));
        if (!garbage) break;
        static const uint8_t zero_unit[RMQI_CQ_UNIT];
        if (!memcmp(u, zero_unit, RMQI_CQ_UNIT)) {
          /* A run of zero units, most likely a hole a stray byte far into a
          ** sparse file made the queue claim: skipped to the last nonzero
          ** unit below it, not visited one by one. Within the unit's page
          ** (read already) by looking; below it by one SEEK_DATA search. */
          const uint8_t *pg = (const uint8_t *)((uintptr_t)u & ~(uintptr_t)4095);
          const uint8_t *v = u;
          int64_t o = max - 1;
          while (o > min && v - RMQI_CQ_UNIT >= pg && !memcmp(v - RMQI_CQ_UNIT, zero_unit, RMQI_CQ_UNIT)) {
            v -= RMQI_CQ_UNIT;
            o--;
          }
          int64_t below = o > min && v - RMQI_CQ_UNIT >= pg ? o : cq_scan_max_below(s, q, o);
          if (below < min) below = min;
          ri->cq_units_dropped += max - below;
          max = below;
          continue;
        }
        if (!s->o.read_only) {
          memset(u, 0, RMQI_CQ_UNIT);
          q->rec_dirty = 1;
        }
        ri->cq_units_dropped++;
        max--;
      }
      if (q->next_offset > max) max = q->next_offset;
      q->next_offset = max;
      atomic_store(&q->max_offset, max);
      /* Only what recovery rewrote needs a sync at open; written units are
      ** allocated, and sealing starts after them. */
      q->flushed_units = q->rec_dirty ? 0 : max;
      for (int k = 0; k < mvec_len(&q->cq); k++) {
        mfile *f = mvec_at(&q->cq, k);
        int64_t w = max * RMQI_CQ_UNIT - f->start;
        w = w < 0 ? 0 : w > f->size ? f->size : w;
        atomic_store(&f->alloc, w);
        f->ro_upto = q->rec_dirty ? 0 : w & ~(int64_t)(SEAL_CHUNK - 1);
      }
      atomic_store(&q->min_offset, cq_scan_min(s, q, max));
      /* Retention left the queue's head units pointing below the log's
      ** first file: its min is its first message still stored. */
      if (s->cl_base > 0) cq_correct_min(s, q, s->cl_base);
      cq_evict(s);
    }
  }
  if (ri->cq_units_rebuilt || ri->cq_units_dropped)
    rmqi_log(s->env, RMQ_LOG_WARN, "recovery: %" PRId64 " consume queue units rebuilt, %" PRId64 " dropped",
             ri->cq_units_rebuilt, ri->cq_units_dropped);
  if (created_topic) {
    pthread_mutex_lock(&s->topic_lock);
    rc = topics_persist(s);
    pthread_mutex_unlock(&s->topic_lock);
  }
  return rc;
}

/* A ConsumeQueue whose last unit does not match its record, or a known
** topic's queue without files, means the queues cannot be trusted. */
static int cqs_suspect(rmqi_store *s)
{
  rmqi_topic **tab = atomic_load(&s->ttab);
  int64_t cl_end = INT64_MAX;
  for (int i = 0; tab && i < s->tcap; i++) {
    rmqi_topic *t = tab[i];
    if (!t) continue;
    int nq = rmqi_topic_nqueues(t);
    for (int qid = 0; qid < nq; qid++) {
      rmqi_queue *q = rmqi_topic_queue(t, qid);
      if (!q || mvec_len(&q->cq) == 0) continue; /* empty: files come with the first unit */
      int64_t max = cq_scan_max(s, q);
      const uint8_t *u = max > (q->first_file * s->cq_size) / RMQI_CQ_UNIT ? cq_unit_at(s, q, max - 1) : NULL;
      if (u) {
        if (!unit_matches(s, q, max - 1, u, cl_end)) {
          rmqi_log(s->env, RMQ_LOG_WARN, "consume queue %s/%d: last unit does not match its record; rebuilding", t->name, qid);
          return 1;
        }
      }
      cq_evict(s);
    }
  }
  return 0;
}

static int lock_dir(rmqi_store *s)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/lock", s->dir);
  s->lock_fd = OS->open(path, O_RDWR | O_CREAT, 0644);
  if (s->lock_fd < 0) return rmqi_errno(errno, "open", path);
  if (OS->lock(s->lock_fd) != 0) {
    int e = errno;
    OS->close(s->lock_fd);
    s->lock_fd = -1;
    if (e == EAGAIN || e == EACCES)
      return rmqi_err(RMQ_EBUSY, "Lock failed, MQ already started: %s is held by another open of this store", path);
    return rmqi_errno(e, "fcntl(F_SETLK)", path);
  }
  OS->pwrite(s->lock_fd, "lock", 4, 0);
  return RMQ_OK;
}

static int write_abort(rmqi_store *s)
{
  char path[4200], pid[32];
  snprintf(path, sizeof path, "%s/abort", s->dir);
  int fd = OS->open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return rmqi_errno(errno, "open", path);
  int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
  int rc = RMQ_OK;
  if (OS->pwrite(fd, pid, (size_t)n, 0) != n) rc = rmqi_errno(errno, "pwrite", path);
  if (!rc && OS->fsync(fd) != 0) rc = rmqi_errno(errno, "fsync", path);
  OS->close(fd);
  if (!rc) rc = fsync_dir(s->dir);
  return rc;
}

static void store_free(rmqi_store *s)
{
  rmqi_topic **tab = atomic_load(&s->ttab);
  for (int i = 0; tab && i < s->tcap; i++) {
    rmqi_topic *t = tab[i];
    if (!t) continue;
    topic_free(t);
  }
  ttab_free(s);
  for (int i = 0; i < s->nix; i++) ix_free(s->ix[i]);
  rmqi_free(s->ix, (size_t)s->ixcap * sizeof *s->ix);
  rmqi_strfree(s->ix_dir);
  pthread_mutex_destroy(&s->idx_lock);
  pthread_mutex_destroy(&s->ix_wait_lock);
  pthread_cond_destroy(&s->ix_cond);
  mvec_free(&s->cl);
  if (s->cp_fd >= 0) OS->close(s->cp_fd);
  if (s->tj_fd >= 0) OS->close(s->tj_fd);
  if (s->lock_fd >= 0) OS->close(s->lock_fd);
  pthread_mutex_destroy(&s->append_lock);
  pthread_mutex_destroy(&s->flush_lock);
  pthread_mutex_destroy(&s->cq_flush_lock);
  pthread_mutex_destroy(&s->topic_lock);
  pthread_mutex_destroy(&s->pf_lock);
  pthread_cond_destroy(&s->pf_cond);
  pthread_mutex_destroy(&s->alloc_lock);
  pthread_mutex_destroy(&s->lru_lock);
  for (size_t i = 0; i < sizeof s->cq_locks / sizeof s->cq_locks[0]; i++) pthread_mutex_destroy(&s->cq_locks[i]);
  rmqi_free(s->mapped, (size_t)s->nmapped_cap * sizeof *s->mapped);
  rmqi_free(s->tombs, (size_t)s->tombcap * sizeof *s->tombs);
  rmqi_strfree(s->dir);
  rmqi_strfree(s->cl_dir);
  rmqi_strfree(s->cq_root);
  rmqi_strfree(s->cfg_dir);
  rmqi_free(s, sizeof *s);
}

/* "1s 5s 10s 30s 1m ..." -> ms[1..n]: RocketMQ's messageDelayLevel, units
** s, m, h, d. NULL means RocketMQ's default table. */
RMQI_FUNC int rmqi_delay_levels_parse(const char *spec, int64_t *ms, int *n)
{
  if (!spec) spec = RMQ_DEFAULT_DELAY_LEVELS;
  *n = 0;
  const char *p = spec;
  for (;;) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *end;
    long long v = strtoll(p, &end, 10);
    int64_t unit = *end == 's' ? 1000 : *end == 'm' ? 60000 : *end == 'h' ? 3600000 : *end == 'd' ? 86400000 : 0;
    if (end == p || v < 0 || v > 365LL * 86400 || !unit || (end[1] && end[1] != ' '))
      return rmqi_err(RMQ_EINVAL, "message_delay_level '%s': expected numbers with s, m, h or d, space separated", spec);
    if (*n == RMQI_DELAY_LEVELS_MAX)
      return rmqi_err(RMQ_EINVAL, "message_delay_level '%s': more than %d levels", spec, RMQI_DELAY_LEVELS_MAX);
    ms[++*n] = v * unit;
    p = end + 1;
  }
  if (*n == 0) return rmqi_err(RMQ_EINVAL, "message_delay_level is empty");
  return RMQ_OK;
}

RMQI_FUNC int rmqi_store_delay_levels(rmqi_store *s) { return s->ndelay; }

RMQI_FUNC int64_t rmqi_store_delay_ms(rmqi_store *s, int level)
{
  if (level < 1) level = 1;
  if (level > s->ndelay) level = s->ndelay;
  return s->delay_ms[level];
}

static int queues_state_check(rmqi_store *s);
static int queues_state_load(rmqi_store *s);

RMQI_FUNC int rmqi_store_open(const char *dir, const rmq_broker_options *o, const rmqi_env *env, rmqi_store **out)
{
  int rc;
  rmqi_store *s = rmqi_calloc(1, sizeof *s);
  if (s) s->scan_from = -1;
  if (!s) return rmqi_err(RMQ_ENOMEM, "out of memory opening %s", dir);
  s->lock_fd = s->cp_fd = s->tj_fd = -1;
  s->o = *o;
  s->env = env;
  set_cl_size(s, o->mapped_file_size_commit_log);
  /* The delay table is kept parsed; the caller's string need not outlive open. */
  if ((rc = rmqi_delay_levels_parse(o->message_delay_level, s->delay_ms, &s->ndelay))) {
    rmqi_free(s, sizeof *s);
    return rc;
  }
  s->o.message_delay_level = NULL;
  if ((rc = rmqi_delete_when_parse(o->delete_when, &s->delete_hours))) {
    rmqi_free(s, sizeof *s);
    return rc;
  }
  s->o.delete_when = NULL;
  s->cq_size = o->mapped_file_size_consume_queue;
  /* Adaptive: a sender spins a moment for a holder running on the other
  ** core instead of sleeping at once (a futex call is ~1 us here and the
  ** lock is held well under that). */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
  pthread_mutex_init(&s->append_lock, &ma);
  pthread_mutexattr_destroy(&ma);
#if defined(__linux__) && defined(SYS_membarrier)
  /* Lets long-polling waiters pay for the fence instead of every put. */
  s->membarrier = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
  pthread_mutex_init(&s->flush_lock, NULL);
  pthread_mutex_init(&s->cq_flush_lock, NULL);
  pthread_mutex_init(&s->topic_lock, NULL);
  pthread_condattr_t ca;
  pthread_mutex_init(&s->pf_lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->pf_cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&s->alloc_lock, NULL);
  pthread_mutex_init(&s->lru_lock, NULL);
  pthread_mutex_init(&s->idx_lock, NULL);
  pthread_mutex_init(&s->ix_wait_lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->ix_cond, &ca);
  pthread_condattr_destroy(&ca);
  for (size_t i = 0; i < sizeof s->cq_locks / sizeof s->cq_locks[0]; i++) pthread_mutex_init(&s->cq_locks[i], NULL);
  s->max_mapped = o->max_mapped_consume_queue_files > 0 ? o->max_mapped_consume_queue_files : 16384;
  s->dir = rmqi_strdup(dir);
  s->cl_dir = path_join(dir, "commitlog");
  s->cq_root = path_join(dir, "consumequeue");
  s->cfg_dir = path_join(dir, "config");
  s->ix_dir = path_join(dir, "index");
  if (!s->dir || !s->cl_dir || !s->cq_root || !s->cfg_dir || !s->ix_dir) {
    rc = rmqi_err(RMQ_ENOMEM, "out of memory");
    goto out_free;
  }
  char path[4200];
  struct stat st;
  if (s->o.read_only) {
    /* No lock, nothing made: the store must be there. */
    s->o.service_thread = 0;
    snprintf(path, sizeof path, "%s/commitlog", dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || stat(path, &st) != 0) {
      rc = rmqi_err(RMQ_ENOTFOUND, "no store at %s (read-only open: nothing is created)", dir);
      goto out_free;
    }
  } else {
    if ((rc = mkdir_p(dir)) || (rc = lock_dir(s))) goto out_free;
    if ((rc = mkdir_p(s->cl_dir)) || (rc = mkdir_p(s->cq_root)) || (rc = mkdir_p(s->cfg_dir))) goto out_free;
  }
  snprintf(path, sizeof path, "%s/abort", dir);
  int abnormal = stat(path, &st) == 0;
  s->rinfo.abnormal = abnormal;
  checkpoint_read(s);
  int rebuild = 0;
  if ((rc = load_topics(s)) || (rc = journal_replay(s)) || (rc = tombs_load(s)) || (rc = load_commitlog(s)))
    goto out_free;
  snprintf(path, sizeof path, "%s/" REBUILD_MARK, dir);
  int marked = OS->open(path, O_RDONLY, 0);
  if (marked >= 0) OS->close(marked);
  if (abnormal || marked >= 0 || !queues_state_load(s)) {
    if ((rc = load_cqs(s, &rebuild))) goto out_free;
    if (marked >= 0) {
      rmqi_log(env, RMQ_LOG_WARN, "%s: a reader met a damaged consume queue unit; rebuilding the queues", path);
      rebuild = 1;
    }
    if (!rebuild) rebuild = cqs_suspect(s);
    if (!rebuild && !abnormal) rebuild = queues_state_check(s);
    if ((rc = recover(s, abnormal, rebuild))) goto out_free;
  }
  if ((rc = ix_load(s, abnormal))) goto out_free;
  if (s->o.read_only) {
    /* What a writer may add after this moment is not seen. */
    atomic_store(&s->flushed, s->write_pos);
    atomic_store(&s->idx_done, s->write_pos);
    *out = s;
    return RMQ_OK;
  }
  snprintf(path, sizeof path, "%s/checkpoint", dir);
  s->cp_fd = OS->open(path, O_RDWR | O_CREAT, 0644);
  if (s->cp_fd < 0) { rc = rmqi_errno(errno, "open", path); goto out_free; }
  if (OS->fstat(s->cp_fd, &st) == 0 && st.st_size < 4096 && OS->ftruncate(s->cp_fd, 4096) != 0) {
    rc = rmqi_errno(errno, "ftruncate", path);
    goto out_free;
  }
  /* Whatever recovery rewrote is made durable before new appends: the
  ** CommitLog files it cut were synced as it cut them; the queues it
  ** rewrote are synced here. Nothing else is read or synced. */
  atomic_store(&s->last_store_ts, 0);
  s->ix_opening = 1;
  rc = rmqi_store_flush_all(s);
  s->ix_opening = 0;
  if (rc) goto out_free;
  if (marked >= 0) {
    snprintf(path, sizeof path, "%s/" REBUILD_MARK, dir);
    OS->unlink(path);
  }
  if ((rc = write_abort(s))) goto out_free;
  int64_t now = rmqi_now(env);
  s->next_cl_flush = now + o->flush_interval_commit_log;
  s->next_cq_flush = now + o->flush_interval_consume_queue;
  s->last_thorough = now;
  s->next_disk_check = now + o->clean_resource_interval;
  disk_check(s);
  prefault_start(s);
  ix_start(s);
  *out = s;
  return RMQ_OK;
out_free:
  {
    int keep = rc;
    const char *m = rmq_errmsg();
    char msg[512];
    snprintf(msg, sizeof msg, "%s", m);
    store_free(s);
    return rmqi_err(keep, "%s", msg);
  }
}

RMQI_FUNC void rmqi_store_recovery_info(rmqi_store *s, rmq_recovery_info *out) { *out = s->rinfo; }

/* A clean close leaves no file made ahead of the writer: RocketMQ deletes
** its pre-made CommitLog file at shutdown, and reads an all-zero last
** ConsumeQueue file as a phantom message (ROCKETMQ.md 1, 2). */
static void tidy_queue(rmqi_store *s, rmqi_queue *q, void *ctx);

static void close_tidy(rmqi_store *s)
{
  char path[4200];
  while (mvec_len(&s->cl) > 1) {
    int last = mvec_len(&s->cl) - 1;
    mfile *f = mvec_at(&s->cl, last);
    if (f->start < s->write_pos) break;
    snprintf(path, sizeof path, "%s/%020" PRId64, s->cl_dir, f->start);
    mfile_close(f);
    OS->unlink(path);
    atomic_store(&s->cl.n, last);
  }
  queue_each(s, tidy_queue, NULL);
}

static void tidy_queue(rmqi_store *s, rmqi_queue *q, void *ctx)
{
  (void)ctx;
  char path[4200];
  int64_t end = rmqi_queue_max_offset(q) * RMQI_CQ_UNIT;
  /* A queue whose only file starts at its end keeps it: without it the
  ** next open would not know where the queue's offsets stand. */
  while (mvec_len(&q->cq) > (end > 0 ? 1 : 0)) {
    int last = mvec_len(&q->cq) - 1;
    mfile *f = mvec_at(&q->cq, last);
    if (f->start < end) break;
    snprintf(path, sizeof path, "%s/%020" PRId64, q->dir, f->start);
    cq_file_free(s, f);
    OS->unlink(path);
    atomic_store(&q->cq.n, last);
  }
}

#define QUEUES_STATE "rmq_queues.txt"

static void state_line(rmqi_store *s, rmqi_queue *q, void *ctx)
{
  (void)s;
  if (mvec_len(&q->cq) == 0) return;
  rmqi_buf_printf(ctx, "%s\t%d\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%d\n", q->topic->name, q->qid,
                  rmqi_queue_min_offset(q), rmqi_queue_max_offset(q), q->first_file + q->cq_dead,
                  mvec_len(&q->cq) - q->cq_dead);
}

/* Close: each queue with units, as "topic TAB qid TAB min TAB max" lines,
** so that the next open notices a queue whose files were lost (an empty
** queue has no files, so their absence alone says nothing). */
static int queues_state_write(rmqi_store *s)
{
  rmqi_buf b = {0};
  /* The header pins the state to this exact CommitLog: any later writer
  ** (RocketMQ's own broker, say) moves its end or its first file. */
  rmqi_buf_printf(&b, "rmq-queues 1 %" PRId64 " %" PRId64 " %d %d\n", rmqi_store_min_phys(s), s->write_pos,
                  s->cq_size, mvec_len(&s->cl) - s->cl_dead);
  queue_each(s, state_line, &b);
  if (b.oom) { rmqi_buf_free(&b); return rmqi_err(RMQ_ENOMEM, "out of memory writing " QUEUES_STATE); }
  int rc = write_config(s, QUEUES_STATE, b.p ? b.p : "", b.len, 0);
  rmqi_buf_free(&b);
  return rc;
}

/* Reads config/rmq_queues.txt (its path into path[4200]). */
static int state_read(rmqi_store *s, char *path, char **text, size_t *len)
{
  snprintf(path, 4200, "%s/" QUEUES_STATE, s->cfg_dir);
  return read_file(path, text, len);
}

/* Drops every queue's file list and bounds (a fast open that found the
** state stale goes the long way from scratch). */
static void queue_reset(rmqi_store *s, rmqi_queue *q, void *ctx)
{
  (void)ctx;
  for (int k = 0; k < mvec_len(&q->cq); k++) cq_file_free(s, mvec_at(&q->cq, k));
  atomic_store(&q->cq.n, 0);
  q->first_file = q->next_offset = q->flushed_units = 0;
  atomic_store(&q->max_offset, 0);
  atomic_store(&q->min_offset, 0);
  atomic_store(&q->dir_made, 0);
}

static void queues_reset(rmqi_store *s) { queue_each(s, queue_reset, NULL); }

/* Open after a clean close: the queues as the close left them, from the
** state file, without listing, mapping or reading any ConsumeQueue file
** and without rescanning the CommitLog (DESIGN.md 5: trust the checkpoint
** and the ConsumeQueues). Each queue file it lists is stat'ed: there and
** whole. 1 when the store is open this way; 0 (nothing changed) when
** the state is missing or no longer this store's: then the long way. */
static int queues_state_load(rmqi_store *s)
{
  char *text, path[4200];
  size_t len;
  if (state_read(s, path, &text, &len) != RMQ_OK) return 0;
  const char *why = NULL;
  long long minp, end;
  int cqs, ncl, used;
  if (sscanf(text, "rmq-queues 1 %lld %lld %d %d%n", &minp, &end, &cqs, &ncl, &used) != 4) why = "no header";
  else if (minp != s->cl_base || ncl != mvec_len(&s->cl) || s->cl_last_short) why = "the commitlog's files changed";
  else if (cqs <= 0 || cqs % RMQI_CQ_UNIT) why = "bad file size";
  int nf = mvec_len(&s->cl);
  if (!why && nf > 0) {
    /* The end lies in the last file, and nothing was written after it. */
    mfile *last = mvec_at(&s->cl, nf - 1);
    struct stat st;
    if (end < last->start || end > last->start + last->size) why = "the commitlog's end moved";
    else if (fstat(last->fd, &st) != 0 || st.st_size != last->size) why = "the last commitlog file changed size";
    else if (end + 8 <= last->start + last->size && (rmqi_get32(last->base + (end - last->start)) != 0 ||
                                                     rmqi_get32(last->base + (end - last->start) + 4) != 0))
      why = "records follow the recorded end";
  } else if (!why && end != s->cl_base) {
    why = "the commitlog is gone";
  }
  if (!why && cqs != s->cq_size) s->cq_size = cqs;
  char *line = why ? NULL : strchr(text, '\n');
  int nq = 0;
  while (!why && line && *++line) {
    char *nl = strchr(line, '\n');
    if (!nl) { why = "cut short"; break; }
    *nl = 0;
    char name[256];
    int qid, nfiles;
    long long mn, mx, first;
    if (sscanf(line, "%255[^\t]\t%d\t%lld\t%lld\t%lld\t%d", name, &qid, &mn, &mx, &first, &nfiles) != 6 ||
        qid < 0 || qid >= RMQ_MAX_QUEUE_NUMS || mn < 0 || mx < mn || first < 0 || nfiles < 1 ||
        nfiles > (1 << 24) || mx > CL_MAX_OFFSET / RMQI_CQ_UNIT || first > CL_MAX_OFFSET / cqs - nfiles ||
        (mx > 0 && (mx - 1) * RMQI_CQ_UNIT / cqs >= first + nfiles) || !*name ||
        strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
      why = "a line does not parse";
      break;
    }
    rmqi_topic *t = rmqi_topic_find(s, name);
    int rc = t ? RMQ_OK : topic_make(s, name, 0, 6, &t);
    if (!rc) rc = queue_make(t, qid);
    if (rc) { why = "out of memory"; break; }
    if (!t->configured && qid >= rmqi_topic_nqueues(t)) atomic_store(&t->nqueues, qid + 1);
    rmqi_queue *q = rmqi_topic_queue(t, qid);
    if (mvec_len(&q->cq)) { why = "a queue is listed twice"; break; }
    q->first_file = first;
    for (int k = 0; k < nfiles && !why; k++) {
      mfile *f = cq_file_new(q, (first + k) * cqs, cqs);
      if (!f || mvec_push(&q->cq, f)) { if (f) rmqi_free(f, sizeof *f); why = "out of memory"; }
      else {
        int64_t w = mx * RMQI_CQ_UNIT - f->start;
        atomic_store(&f->alloc, w < 0 ? 0 : w > cqs ? cqs : w);
      }
    }
    /* A lost or cut file shows here (a stat a file: no read, no map). */
    for (int k = 0; k < nfiles && !why; k++) {
      char fp[4400];
      struct stat st;
      snprintf(fp, sizeof fp, "%s/%020" PRId64, q->dir, (int64_t)(first + k) * cqs);
      int there = stat(fp, &st) == 0;
      if (!there || st.st_size != cqs) {
        rmqi_log(s->env, RMQ_LOG_WARN, "%s: %s; the queues are recovered the long way", fp,
                 !there ? "missing" : "not its size");
        why = "a queue file is missing or cut";
      }
    }
    if (why) break;
    atomic_store(&q->dir_made, 1);
    q->next_offset = mx;
    q->flushed_units = mx;
    atomic_store(&q->max_offset, mx);
    atomic_store(&q->min_offset, mn);
    nq++;
    line = nl;
  }
  rmqi_free(text, len + 1);
  if (why) {
    rmqi_log(s->env, RMQ_LOG_INFO, "%s not used (%s): recovering the queues the long way", path, why);
    queues_reset(s);
    return 0;
  }
  s->write_pos = end;
  atomic_store(&s->published, end);
  atomic_store(&s->flushed, end);
  for (int i = 0; i < nf; i++) {
    mfile *f = mvec_at(&s->cl, i);
    int64_t w = end - f->start;
    w = w < 0 ? 0 : w > f->size ? f->size : w;
    atomic_store(&f->alloc, w);
    f->ro_upto = w & ~(int64_t)(SEAL_CHUNK - 1);
  }
  s->rinfo.commitlog_min_offset = s->cl_base;
  s->rinfo.commitlog_max_offset = end;
  rmqi_log(s->env, RMQ_LOG_INFO, "open after a clean close: %d queues from %s, commitlog end %lld", nq, path, end);
  return 1;
}

/* Open after a clean close: a queue the last close saw with units but whose
** files are gone, or end short of what it had, needs the rebuild. */
static int queues_state_check(rmqi_store *s)
{
  char *text, path[4200];
  size_t len;
  if (state_read(s, path, &text, &len) != RMQ_OK) return 0;
  int suspect = 0;
  for (char *line = text; !suspect && line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    if (!nl) break;
    *nl = 0;
    char name[256];
    int qid;
    long long mn, mx;
    if (sscanf(line, "%255[^\t]\t%d\t%lld\t%lld", name, &qid, &mn, &mx) == 4 && mx > mn && strncmp(line, "rmq-queues", 10)) {
      rmqi_topic *t = rmqi_topic_find(s, name);
      rmqi_queue *q = t ? rmqi_topic_queue(t, qid) : NULL;
      int64_t have = q && mvec_len(&q->cq) ? cq_scan_max(s, q) : 0;
      cq_evict(s);
      if (!q || mvec_len(&q->cq) == 0 || have < mx) {
        rmqi_log(s->env, RMQ_LOG_WARN, "consume queue %s/%d had units up to %lld at the last close and has %s now; "
                 "rebuilding from the commitlog", name, qid, mx, !q || mvec_len(&q->cq) == 0 ? "no files" : "fewer");
        suspect = 1;
      }
    }
    line = nl + 1;
  }
  rmqi_free(text, len + 1);
  return suspect;
}

RMQI_FUNC int rmqi_store_close(rmqi_store *s)
{
  if (s->o.read_only) {
    store_free(s);
    return RMQ_OK;
  }
  prefault_stop(s);
  ix_stop_thread(s);
  int rc = RMQ_OK;
  if (s->tj_count > 0) {
    /* topics.json whole at a clean close, for RocketMQ's readers. */
    pthread_mutex_lock(&s->topic_lock);
    rc = journal_compact(s);
    pthread_mutex_unlock(&s->topic_lock);
  }
  if (s->tj_fd >= 0 && s->tj_size == 0) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" TOPICS_JOURNAL, s->cfg_dir);
    OS->unlink(path);
  }
  int frc = rmqi_store_flush_all(s);
  if (!rc) rc = frc;
  if (rc == RMQ_OK) {
    close_tidy(s);
    rc = queues_state_write(s);
  }
  if (rc == RMQ_OK) {
    char path[4200];
    snprintf(path, sizeof path, "%s/abort", s->dir);
    if (OS->unlink(path) != 0 && errno != ENOENT) rc = rmqi_errno(errno, "unlink", path);
    else rc = fsync_dir(s->dir);
  } else {
    rmqi_log(s->env, RMQ_LOG_ERROR, "close: final flush failed (%s); the next open will recover", rmq_errmsg());
  }
  store_free(s);
  return rc;
}
