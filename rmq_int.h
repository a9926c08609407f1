/*
** rmq_int.h -- rmq's internal interfaces: shared by rmq.c, rmq_store.c and
** rmq_filter.c, never installed. Everything here is hidden from the shared
** library (RMQI_FUNC) and becomes static in the amalgamation.
**
** Layers (data flows one way):  rmq.c (API, broker core) -> rmq_store.c
** (CommitLog, ConsumeQueue, config files, OS layer); rmq_filter.c holds pure
** functions the core calls.
*/
#ifndef RMQ_INT_H
#define RMQ_INT_H

#include "rmq.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

/* Cross-file internals are hidden from the shared library; the generated
** amalgamation makes them static (RMQ_AMALGAMATION). */
#if defined(RMQ_AMALGAMATION)
#  define RMQI_FUNC static __attribute__((unused))
#  define RMQI_DATA static
#  define RMQI_DATA_DECL static
#elif defined(__GNUC__)
#  define RMQI_FUNC __attribute__((visibility("hidden")))
#  define RMQI_DATA RMQI_FUNC
#  define RMQI_DATA_DECL extern RMQI_FUNC
#else
#  define RMQI_FUNC
#  define RMQI_DATA
#  define RMQI_DATA_DECL extern
#endif

#define RMQI_UNUSED(x) ((void)(x))

/* ---- memory (rmq.c) ---------------------------------------------------- */
RMQI_FUNC void *rmqi_malloc(size_t n);
RMQI_FUNC void *rmqi_calloc(size_t n, size_t size);
RMQI_FUNC void *rmqi_realloc(void *p, size_t osize, size_t nsize);
RMQI_FUNC void rmqi_free(void *p, size_t size);
RMQI_FUNC char *rmqi_strdup(const char *s);
RMQI_FUNC void rmqi_strfree(char *s);

/* ---- errors (rmq.c) ---------------------------------------------------- */
/* Sets the calling thread's rmq_errmsg() text and returns code. */
RMQI_FUNC int rmqi_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps an errno from call `call` on `path` to an RMQ_E* code and message. */
RMQI_FUNC int rmqi_errno(int err, const char *call, const char *path);

/* ---- environment: clock and log ----------------------------------------- */
typedef struct rmqi_env {
  rmq_clock_fn clock;
  void *clock_ctx;
  rmq_log_fn log;
  void *log_ctx;
  int log_level;
} rmqi_env;

RMQI_FUNC void rmqi_log(const rmqi_env *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int64_t rmqi_now(const rmqi_env *e) { return e->clock(e->clock_ctx); }
/* How rmq stops its threads: sets *stop under m, signals c, joins t. */
RMQI_FUNC void rmqi_thread_stop(pthread_mutex_t *m, pthread_cond_t *c, int *stop, pthread_t t);
/* Monotonic microseconds, for waits that are not message time. */
RMQI_FUNC int64_t rmqi_mono_us(void);

/* ---- encodings (rmq_store.c) -------------------------------------------- */
RMQI_FUNC uint32_t rmqi_crc32(const void *buf, size_t len);   /* CRC-32/IEEE */
RMQI_FUNC int32_t rmqi_jhash(const char *s, size_t len);      /* Java String.hashCode of UTF-8 s */
RMQI_FUNC int32_t rmqi_jhash_cont(int32_t h, const char *s, size_t len); /* ... going on from h */
RMQI_FUNC int rmqi_utf8_valid(const char *s, size_t len);

/* Times and offsets read from a store may be anything a damaged record
** holds (STORETIMESTAMP and BORNTIMESTAMP lie outside the body CRC): sums
** and differences with them saturate instead of overflowing. */
static inline int64_t rmqi_add_sat(int64_t a, int64_t b)
{
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}
static inline int64_t rmqi_sub_sat(int64_t a, int64_t b)
{
  int64_t r;
  return __builtin_sub_overflow(a, b, &r) ? (b < 0 ? INT64_MAX : INT64_MIN) : r;
}
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Big-endian fields as one byte swap and one unaligned access each. */
static inline void rmqi_put32(uint8_t *p, uint32_t v) { v = __builtin_bswap32(v); memcpy(p, &v, 4); }
static inline void rmqi_put64(uint8_t *p, uint64_t v) { v = __builtin_bswap64(v); memcpy(p, &v, 8); }
static inline void rmqi_put16(uint8_t *p, uint16_t v) { v = __builtin_bswap16(v); memcpy(p, &v, 2); }
static inline uint32_t rmqi_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline uint64_t rmqi_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
static inline uint16_t rmqi_get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
#else
static inline void rmqi_put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void rmqi_put64(uint8_t *p, uint64_t v)
{
  rmqi_put32(p, (uint32_t)(v >> 32)); rmqi_put32(p + 4, (uint32_t)v);
}
static inline void rmqi_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint32_t rmqi_get32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t rmqi_get64(const uint8_t *p)
{
  return ((uint64_t)rmqi_get32(p) << 32) | rmqi_get32(p + 4);
}
static inline uint16_t rmqi_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
#endif

/* CommitLog record v1 layout (see rmq_store.c's header comment). */
#define RMQI_MAGIC_V1     0xDAA320A7u
#define RMQI_MAGIC_V2     0xDAA320ABu
#define RMQI_MAGIC_BLANK  0xCBD43194u
#define RMQI_OFF_TOTALSIZE   0
#define RMQI_OFF_MAGIC       4
#define RMQI_OFF_BODYCRC     8
#define RMQI_OFF_QUEUEID    12
#define RMQI_OFF_FLAG       16
#define RMQI_OFF_QUEUEOFFSET 20
#define RMQI_OFF_PHYSOFFSET 28
#define RMQI_OFF_SYSFLAG    36
#define RMQI_OFF_BORNTS     40
#define RMQI_OFF_BORNHOST   48
#define RMQI_SYSFLAG_COMPRESSED   0x1
#define RMQI_SYSFLAG_MULTI_TAGS   0x2
#define RMQI_SYSFLAG_TX_MASK      0xC
#define RMQI_SYSFLAG_TX_PREPARED  0x4
#define RMQI_SYSFLAG_TX_COMMIT    0x8
#define RMQI_SYSFLAG_TX_ROLLBACK  0xC
#define RMQI_SYSFLAG_BORNHOST_V6  0x10
#define RMQI_SYSFLAG_STOREHOST_V6 0x20
#define RMQI_CQ_UNIT 20
#define RMQI_END_FILE_MIN_BLANK 8

/* A decoded record: pointers into the buffer it was decoded from. */
typedef struct rmqi_record {
  uint32_t total;
  uint32_t magic;
  int32_t body_crc;
  int32_t queue_id;
  int32_t flag;
  int64_t queue_offset;
  int64_t phys_offset;
  int32_t sys_flag;
  int64_t born_ts;
  const uint8_t *born_host;
  int born_host_len;
  int64_t store_ts;
  const uint8_t *store_host;
  int store_host_len;
  int32_t reconsume_times;
  int64_t prepared_tx_offset;
  const uint8_t *body;
  int32_t body_len;
  const char *topic;
  int topic_len;
  const char *props;
  int props_len;
} rmqi_record;

/* Decodes the record at buf[0..avail). Returns RMQ_OK, or RMQ_ECORRUPT with
** the reason in rmq_errmsg() (sizes inconsistent, bad magic; a BLANK magic is
** reported as RMQ_ENOTFOUND with r->total = blank length). check_crc also
** verifies the body CRC. */
RMQI_FUNC int rmqi_record_decode(const uint8_t *buf, size_t avail, int check_crc, rmqi_record *r);
/* Finds a property in a raw property string (RocketMQ's parsing rules). */
RMQI_FUNC int rmqi_props_find(const char *props, size_t len, const char *name, size_t name_len,
                              const char **val, size_t *val_len);

/* ---- minimal JSON (rmq_store.c), for the config files ------------------- */
enum { RMQI_JNULL, RMQI_JBOOL, RMQI_JNUM, RMQI_JSTR, RMQI_JOBJ, RMQI_JARR };
typedef struct rmqi_json {
  int type;
  char *key;               /* member name inside an object (bare int keys allowed) */
  char *str;               /* JSTR */
  double num;              /* JNUM, JBOOL */
  int64_t inum;            /* JNUM as integer */
  struct rmqi_json *child; /* JOBJ, JARR */
  struct rmqi_json *next;
} rmqi_json;
/* Parses text[0..len) (fastjson's unquoted int keys accepted). NULL and
** RMQ_ECORRUPT/RMQ_ENOMEM in *rc on failure. */
RMQI_FUNC rmqi_json *rmqi_json_parse(const char *text, size_t len, int *rc);
RMQI_FUNC void rmqi_json_free(rmqi_json *j);
RMQI_FUNC const rmqi_json *rmqi_json_get(const rmqi_json *obj, const char *key);
/* Appends JSON-escaped s to a growing buffer. */
typedef struct rmqi_buf {
  char *p;
  size_t len, cap;
  int oom;
} rmqi_buf;
RMQI_FUNC void rmqi_buf_puts(rmqi_buf *b, const char *s);
/* Appends n bytes (kept NUL-terminated). */
RMQI_FUNC void rmqi_buf_add(rmqi_buf *b, const void *p, size_t n);
RMQI_FUNC void rmqi_buf_printf(rmqi_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
RMQI_FUNC void rmqi_buf_json_str(rmqi_buf *b, const char *s);
RMQI_FUNC void rmqi_buf_free(rmqi_buf *b);

/* ---- the OS layer (rmq_store.c) ----------------------------------------- */
/* Every file and mapping call the store makes goes through this table, as
** SQLite's go through aSyscall[]: tests replace entries to inject ENOSPC/EIO.
** Entries return -1 (MAP_FAILED for mmap) and set errno on failure. */
typedef struct rmqi_os {
  int (*open)(const char *path, int flags, mode_t mode);
  int (*close)(int fd);
  int (*ftruncate)(int fd, off_t len);
  int (*fstat)(int fd, struct stat *st);
  void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
  int (*munmap)(void *addr, size_t len);
  int (*fdatasync)(int fd);
  int (*fsync)(int fd);
  int (*msync)(void *addr, size_t len, int flags);
  ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
  ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
  int (*rename)(const char *from, const char *to);
  int (*unlink)(const char *path);
  int (*rmdir)(const char *path);
  int (*mkdir)(const char *path, mode_t mode);
  /* Write-locks byte 0 of fd without waiting (EAGAIN/EACCES when held). */
  int (*lock)(int fd);
  /* Allocates blocks for [off, off + len) (posix_fallocate). */
  int (*fallocate)(int fd, off_t off, off_t len);
  off_t (*lseek)(int fd, off_t off, int whence);
  int (*statvfs)(const char *path, struct statvfs *st);
  int (*futimens)(int fd, const struct timespec times[2]);
} rmqi_os;
RMQI_DATA_DECL rmqi_os rmqi_os_table;
RMQI_FUNC void rmqi_os_reset(void);

/* ---- statistics counters ---------------------------------------------- */
/* A counter and its samples for rates over windows, as RocketMQ's
** StatsItem keeps them: every 10 s into a ring of 7 (the last minute),
** every 10 min into a ring of 7 (the last hour). nums/size are bumped
** anywhere; the rings are the sampler's (the broker's stats_lock). */
#define RMQI_STAT_RING 7
typedef struct rmqi_stat {
  _Atomic int64_t nums, size;
  int64_t min_ts[RMQI_STAT_RING], min_v[RMQI_STAT_RING];
  int64_t hr_ts[RMQI_STAT_RING], hr_v[RMQI_STAT_RING];
  int min_n, hr_n;
  int64_t next_min, next_hr;
} rmqi_stat;

/* ---- the store (rmq_store.c) -------------------------------------------- */
typedef struct rmqi_store rmqi_store;
typedef struct rmqi_topic rmqi_topic;
typedef struct rmqi_queue rmqi_queue;

RMQI_FUNC int rmqi_store_open(const char *dir, const rmq_broker_options *o, const rmqi_env *env,
                              rmqi_store **out);
RMQI_FUNC int rmqi_store_close(rmqi_store *s);
RMQI_FUNC void rmqi_store_recovery_info(rmqi_store *s, rmq_recovery_info *out);
RMQI_FUNC const char *rmqi_store_dir(rmqi_store *s);

/* Topics. A topic's and its queues' structs live until the store closes,
** deleted or not. */
RMQI_FUNC rmqi_topic *rmqi_topic_find(rmqi_store *s, const char *name);
/* Creates or resizes a topic and persists topics.json. */
RMQI_FUNC int rmqi_topic_create(rmqi_store *s, const char *name, int nqueues, rmqi_topic **out);
/* Deletes a topic: it disappears from lookups, topics.json and the queue
** state at once, its ConsumeQueue files are removed, its records stay in
** the CommitLog until retention (recovery and delayed delivery skip them:
** rmqi_store_topic_deleted_at). Structs stay until close for whoever holds
** them; puts to them fail with RMQ_ENOTOPIC. RMQ_ENOTOPIC if absent. */
RMQI_FUNC int rmqi_topic_delete(rmqi_store *s, const char *name);
RMQI_FUNC int rmqi_store_topic_deleted_at(rmqi_store *s, const char *name, int64_t phys);
RMQI_FUNC int rmqi_topic_deleted(const rmqi_topic *t);
RMQI_FUNC const char *rmqi_topic_name(const rmqi_topic *t);
RMQI_FUNC int rmqi_topic_nqueues(const rmqi_topic *t);
RMQI_FUNC rmqi_queue *rmqi_topic_queue(rmqi_topic *t, int qid);
RMQI_FUNC int rmqi_topic_list(rmqi_store *s, rmq_topic_info *out, size_t cap, size_t *n);
/* The topic's put counters (TOPIC_PUT_NUMS / _SIZE), bumped by every put. */
RMQI_FUNC rmqi_stat *rmqi_topic_stat(rmqi_topic *t);
/* The store's: every record put, dispatched or not. */
RMQI_FUNC rmqi_stat *rmqi_store_put_stat(rmqi_store *s);
/* What retention and the disk look like now. */
typedef struct rmqi_disk_info {
  int cl_files;               /* CommitLog files on disk */
  int64_t cl_file_size;
  int64_t oldest_last_ts;     /* when the oldest was last written (broker clock), 0 if none */
  uint32_t delete_hours;      /* deleteWhen as a bit per hour */
  int disk_full, used_pct;
  int64_t total_bytes, free_bytes;
} rmqi_disk_info;
RMQI_FUNC void rmqi_store_disk_info(rmqi_store *s, rmqi_disk_info *out);

RMQI_FUNC rmqi_topic *rmqi_queue_topic(const rmqi_queue *q);
RMQI_FUNC int rmqi_queue_id(const rmqi_queue *q);
RMQI_FUNC int64_t rmqi_queue_min_offset(const rmqi_queue *q);
RMQI_FUNC int64_t rmqi_queue_max_offset(const rmqi_queue *q);
/* Copies up to `max` published ConsumeQueue units (20 bytes each, big-
** endian) from `offset` into buf, all from one file. Returns how many (0:
** none), or a negative RMQ_E* code when the file cannot be mapped (logged).
** A copy, because idle ConsumeQueue files are unmapped at any time. Any
** thread. */
RMQI_FUNC int rmqi_queue_read_units(rmqi_queue *q, int64_t offset, uint8_t *buf, int max);
/* The first offset in [off, end) whose unit lies in data of its file, not
** in a hole (a hole reads as zero units); end when none. Opens the file
** for SEEK_DATA; reads nothing. For rmq_broker_check. */
RMQI_FUNC int64_t rmqi_queue_next_data(rmqi_queue *q, int64_t off, int64_t end);
/* The queue offset of the first message stored at or after ts (ms). */
RMQI_FUNC int64_t rmqi_queue_offset_by_time(rmqi_store *s, rmqi_queue *q, int64_t ts);

/* One record to append: rec[0..size) is fully encoded except QUEUEOFFSET,
** PHYSICALOFFSET and STORETIMESTAMP, which the store fills under its lock.
** q NULL: not dispatched to a ConsumeQueue (prepared/rollback), queue
** offset 0. Outputs are filled on success. */
typedef struct rmqi_put {
  uint8_t *rec;
  uint32_t size;
  rmqi_queue *q;
  int64_t tags_code;
  int64_t phys_offset;
  int64_t queue_offset;
  int64_t store_ts; /* in: the append time when > 0 (else the store reads the clock); out: the time used */
} rmqi_put;
/* Appends n records in one lock round (consecutive in the CommitLog and, for
** one queue, in queue offsets), publishes them and wakes waiting readers.
** All or nothing. Any thread. Errors: RMQ_EIO, RMQ_ENOSPC, RMQ_EMSGSIZE. */
RMQI_FUNC int rmqi_store_put(rmqi_store *s, rmqi_put *p, int n);
/* Pointer to the record at phys (size bytes) inside the mapped CommitLog,
** or NULL when out of range or its file was deleted by retention. The
** record's file is pinned (*pin): it stays mapped, even if retention
** deletes it meanwhile, until rmqi_store_unpin(*pin). *pin is NULL when
** the result is. Any thread. */
RMQI_FUNC const uint8_t *rmqi_store_record_pin(rmqi_store *s, int64_t phys, int32_t size, void **pin);
/* Drops a pin (NULL is a no-op). Any thread; needs no store. */
RMQI_FUNC void rmqi_store_unpin(void *pin);
/* A reader's cache of the CommitLog file it last read from: a batch's
** records mostly share a file, and finding the file is most of a lookup.
** The span pins its file. Zero-initialise; end with rmqi_span_done. */
typedef struct rmqi_cl_span {
  const uint8_t *base;
  int64_t start, lo, hi;   /* base maps start; records in [lo, hi) are readable */
  void *pin;               /* the span's reference on its file */
} rmqi_cl_span;
RMQI_FUNC const uint8_t *rmqi_store_record_span(rmqi_store *s, rmqi_cl_span *sp, int64_t phys, int32_t size);
/* Another pin on the span's current file (the file of the record the span
** last returned), for a view that outlives the span. NULL if none. */
RMQI_FUNC void *rmqi_span_pin(rmqi_cl_span *sp);
/* Drops the span's pin and resets it. */
RMQI_FUNC void rmqi_span_done(rmqi_cl_span *sp);
/* A reader met a ConsumeQueue unit that does not lead to its record: the
** next open rebuilds the queues (a marker file in the store). Any thread. */
RMQI_FUNC void rmqi_store_note_bad_unit(rmqi_store *s);
/* rmqi_store_record through the span cache. */
static inline const uint8_t *rmqi_span_record(rmqi_store *s, rmqi_cl_span *sp, int64_t phys, int32_t size)
{
  if (size > 0 && phys >= sp->lo && phys <= sp->hi - size) return sp->base + (phys - sp->start); /* phys may be damaged: no phys + size */
  return rmqi_store_record_span(s, sp, phys, size);
}
RMQI_FUNC int64_t rmqi_store_max_phys(rmqi_store *s);
/* Calls fn for every whole record in [from, to) of the CommitLog (to is cut
** to the published end), in order, with its physical offset; stops at fn's
** first nonzero result and returns it. Records are views valid during the
** call. Any thread. */
typedef int (*rmqi_scan_fn)(void *ctx, const rmqi_record *r, int64_t phys);
RMQI_FUNC int rmqi_store_scan(rmqi_store *s, int64_t from, int64_t to, rmqi_scan_fn fn, void *ctx);
/* Where the open's recovery scan began after a crash (everything not on disk
** before the crash lies after it), or -1 after a clean close. */
RMQI_FUNC int64_t rmqi_store_recovery_from(rmqi_store *s);
/* checkStore's walk of the CommitLog: every file up to the published end,
** each record decoded with its CRC; a bad one is reported (file, byte
** offset in it, why) and the walk resumes at the next whole record. */
typedef struct rmqi_check_cb {
  void *ctx;
  int (*record)(void *ctx, const rmqi_record *r, int64_t phys); /* nonzero stops */
  void (*problem)(void *ctx, const char *file, int64_t off, const char *what);
  int64_t records, bytes, problems;
} rmqi_check_cb;
RMQI_FUNC int rmqi_store_check_log(rmqi_store *s, rmqi_check_cb *cb);
RMQI_FUNC int rmqi_store_cq_file_size(rmqi_store *s);
RMQI_FUNC int64_t rmqi_store_min_phys(rmqi_store *s);
/* Pins and decodes the whole record starting at phys (its PHYSICALOFFSET
** field must say phys) and returns it; NULL (no pin, RMQ_ENOTFOUND in
** rmq_errmsg) when none starts there. */
RMQI_FUNC const uint8_t *rmqi_store_record_at(rmqi_store *s, int64_t phys, rmqi_record *r, void **pin);

/* The key index. A query walks the chain of "topic#key" newest first over
** the files whose time overlaps [begin, end] (widened by a second: the
** caller checks each record), calling fn with each entry's CommitLog
** offset (an offset may come twice, and may not hold the key: a hash
** collision) until fn returns nonzero (> 0 stops, < 0 is an error
** returned). Indexes what is not yet first. Any thread. */
typedef int (*rmqi_index_fn)(void *ctx, int64_t phys);
RMQI_FUNC int rmqi_store_index_query(rmqi_store *s, const char *topic, const char *key, int64_t begin, int64_t end,
                                     rmqi_index_fn fn, void *ctx);
/* Indexes everything published (run_due without the index thread). */
RMQI_FUNC int rmqi_store_index_catch_up(rmqi_store *s);
typedef struct rmqi_index_info {
  int files;
  int64_t last_ts, last_phys; /* the newest entry's store time and offset */
  int64_t behind;             /* CommitLog bytes not indexed yet */
} rmqi_index_info;
RMQI_FUNC void rmqi_store_index_info(rmqi_store *s, rmqi_index_info *out);
/* Every index entry in order, for checks: fn(ctx, file, byte offset in it,
** keyHash, phyOffset, problem) with problem NULL for a well-formed entry,
** else keyHash and phyOffset -1. Stops at fn's first nonzero result. */
typedef int (*rmqi_index_each_fn)(void *ctx, const char *file, int64_t off, int32_t hash, int64_t phys,
                                  const char *problem);
RMQI_FUNC int rmqi_store_index_each(rmqi_store *s, rmqi_index_each_fn fn, void *ctx);
/* RocketMQ's index key hash of "topic#key". */
RMQI_FUNC int32_t rmqi_index_key_hash(const char *topic, size_t tl, const char *key, size_t kl);

/* Group commit: waits until the CommitLog is on disk up to `end`, flushing
** as leader if no one else is. RMQ_OK, RMQ_ETIMEDOUT (still stored), or an
** I/O error. Counts this caller as an active sender while `announce` was
** called before its append (see rmqi_store_sender_enter). */
RMQI_FUNC int rmqi_store_wait_flushed(rmqi_store *s, int64_t end, int timeout_ms);
RMQI_FUNC void rmqi_store_sender_enter(rmqi_store *s);
RMQI_FUNC void rmqi_store_sender_leave(rmqi_store *s);
RMQI_FUNC int64_t rmqi_store_flushed(rmqi_store *s);
/* Flushes the CommitLog to its end now (for async completions and close). */
RMQI_FUNC int rmqi_store_flush_commitlog(rmqi_store *s);
/* Flushes everything (CommitLog, ConsumeQueues, checkpoint). */
RMQI_FUNC int rmqi_store_flush_all(rmqi_store *s);
/* Periodic work by the clock: ASYNC flush, ConsumeQueue flush, checkpoint.
** *next_ms gets ms until the next due item. */
RMQI_FUNC int rmqi_store_run_due(rmqi_store *s, int64_t now, int64_t *next_ms);

/* Long polling: a sequence number bumped by every publish. wait returns when
** it differs from `seen`, on rmqi_store_wake, or after timeout_ms. */
RMQI_FUNC uint64_t rmqi_store_seq(rmqi_store *s);
RMQI_FUNC void rmqi_store_wait(rmqi_store *s, uint64_t seen, int timeout_ms);
RMQI_FUNC void rmqi_store_wake(rmqi_store *s);

/* Config files under <store>/config: atomic write (temp, fsync, rename, fsync
** dir; the old file is kept as .bak) and read (falls back to .bak). read
** returns RMQ_ENOTFOUND when neither exists; *text is NUL-terminated, free
** with rmqi_free(text, len + 1). */
RMQI_FUNC int rmqi_store_write_config(rmqi_store *s, const char *name, const char *text, size_t len);

/* Delay levels (RocketMQ's messageDelayLevel). SCHEDULE_TOPIC_XXXX queue L-1
** holds level L's messages; their ConsumeQueue tag code is the deliver time. */
#define RMQI_SCHEDULE_TOPIC "SCHEDULE_TOPIC_XXXX"
#define RMQI_DELAY_LEVELS_MAX 64
RMQI_FUNC int rmqi_delay_levels_parse(const char *spec, int64_t *ms, int *n);
RMQI_FUNC int rmqi_store_delay_levels(rmqi_store *s);
/* The delay of `level`, clamped to 1..levels. */
RMQI_FUNC int64_t rmqi_store_delay_ms(rmqi_store *s, int level);
/* deleteWhen ("04", "04;05"; NULL: "04") as a bit per hour of the day.
** RMQ_EINVAL with a message when malformed. */
RMQI_FUNC int rmqi_delete_when_parse(const char *spec, uint32_t *hours);
/* Retention now (rmq_broker_delete_expired_files): rounds until one deletes
** nothing. *deleted gets the CommitLog files deleted. */
RMQI_FUNC int rmqi_store_delete_expired(rmqi_store *s, int64_t now, int *deleted);
RMQI_FUNC int rmqi_store_read_config(rmqi_store *s, const char *name, char **text, size_t *len);
/* rmqi_store_read_config for a binary file of up to 2 GiB. */
RMQI_FUNC int rmqi_store_read_blob(rmqi_store *s, const char *name, char **data, size_t *len);

/* ---- filters (rmq_filter.c) --------------------------------------------- */
#define RMQI_TAGS_MAX 64
typedef struct rmqi_tag_filter {
  int all;                       /* "*" or empty: everything, untagged too */
  int n;
  int32_t codes[RMQI_TAGS_MAX];  /* jhash of each tag */
  char *tags[RMQI_TAGS_MAX];     /* owned copies, for the string re-check */
  size_t lens[RMQI_TAGS_MAX];
} rmqi_tag_filter;
/* Compiles a tag expression. RMQ_EEXPR with a message when invalid. */
RMQI_FUNC int rmqi_tag_filter_compile(const char *expr, rmqi_tag_filter *f);
RMQI_FUNC void rmqi_tag_filter_free(rmqi_tag_filter *f);
/* The ConsumeQueue pre-check on the tag hash code. */
RMQI_FUNC int rmqi_tag_filter_code(const rmqi_tag_filter *f, int64_t tags_code);
/* SQL92 property filter (../shared/ROCKETMQ_SQL92.md). */
typedef struct rmqi_sql rmqi_sql;
/* Looks property name[0..nlen) up: 1 with its value in v and vl, or 0 when absent. */
typedef int (*rmqi_sql_getter)(void *ud, const char *name, size_t nlen, const char **v, size_t *vl);
RMQI_FUNC int rmqi_sql_compile(const char *expr, rmqi_sql **out);
RMQI_FUNC void rmqi_sql_free(rmqi_sql *q);
/* 1 when the expression is TRUE for the message (null, FALSE and a failed
** conversion are 0). No allocation. */
RMQI_FUNC int rmqi_sql_match(const rmqi_sql *q, rmqi_sql_getter get, void *ud);
/* The same over a record's raw properties (name 0x01 value 0x02 ...). */
RMQI_FUNC int rmqi_sql_match_props(const rmqi_sql *q, const char *props, size_t len);
/* The client-side re-check on the TAGS string (NULL: untagged). */
RMQI_FUNC int rmqi_tag_filter_tags(const rmqi_tag_filter *f, const char *tags, size_t len);


/* A subscription's filter, either kind (RMQ_SELECTOR_TAG / _SQL92): what
** consumers and rmq_selector hold. */
typedef struct rmqi_filter {
  int type;
  rmqi_tag_filter tf;            /* TAG */
  rmqi_sql *sql;                 /* SQL92 */
} rmqi_filter;
RMQI_FUNC int rmqi_filter_compile(int type, const char *expr, rmqi_filter *f);
RMQI_FUNC void rmqi_filter_free(rmqi_filter *f);
/* The ConsumeQueue pre-check on a unit's tag code (SQL92 passes them all:
** rmq keeps no bloom filter in ConsumeQueue ext files). */
RMQI_FUNC int rmqi_filter_code(const rmqi_filter *f, int64_t tags_code);
/* The check on the record: its TAGS (NULL: untagged) and its raw
** properties (name 0x01 value 0x02 ...). */
RMQI_FUNC int rmqi_filter_record(const rmqi_filter *f, const char *tags, size_t tags_len,
                                 const char *props, size_t props_len);

#endif /* RMQ_INT_H */
