/*
** rmq.c -- the public API and the broker core: validation, message encoding,
** producers, consumer offsets, consumer groups and queue allocation, push and
** pull consumers, the service thread. It turns API calls into store calls
** (rmq_store.c) and filter calls (rmq_filter.c); the store never calls back.
**
** Threads: callers' threads send and pull; any number of them may share one
** producer (its per-send state is atomic or the thread's own, see "Producer").
** The broker may own one service thread (flushes, offset persistence, async
** completions under SYNC_FLUSH). Each push consumer owns a pool of consume
** threads that take turns as its puller (leader/follower, see lead_turn).
*/
#include "rmq_int.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ======================================================================= */
/* Version, errors, memory, log, clock                                     */
/* ======================================================================= */

RMQ_API const char *rmq_libversion(void) { return RMQ_VERSION; }
RMQ_API int rmq_libversion_number(void) { return RMQ_VERSION_NUMBER; }

RMQ_API const char *rmq_errstr(int code)
{
  switch (code) {
  case RMQ_OK: return "OK";
  case RMQ_EINVAL: return "invalid argument";
  case RMQ_ENOMEM: return "out of memory";
  case RMQ_EIO: return "I/O error";
  case RMQ_ENOSPC: return "no space left on device";
  case RMQ_EBUSY: return "store directory is locked by another open";
  case RMQ_ETIMEDOUT: return "timed out";
  case RMQ_ECORRUPT: return "store or config file is damaged";
  case RMQ_ENOTFOUND: return "not found";
  case RMQ_ESTATE: return "handle is in the wrong state for this call";
  case RMQ_ETOPIC: return "invalid topic name";
  case RMQ_EGROUP: return "invalid group name";
  case RMQ_ENOBODY: return "message body is null or empty";
  case RMQ_EMSGSIZE: return "message body too large";
  case RMQ_EPROPERTY: return "invalid property name or value";
  case RMQ_ERESERVED: return "property name is reserved for the system";
  case RMQ_EPROPSIZE: return "message properties too large";
  case RMQ_EFORBIDDEN: return "sending to this topic is forbidden";
  case RMQ_ENOTOPIC: return "topic does not exist";
  case RMQ_EQUEUE: return "queue id or queue count out of range";
  case RMQ_EEXPR: return "invalid subscription expression";
  case RMQ_ENOTSUP: return "feature disabled";
  case RMQ_EBATCH: return "batch breaks the batching rules";
  case RMQ_ETIMER: return "timer message illegal";
  case RMQ_EREADONLY: return "the store was opened read-only";
  default: return "unknown error";
  }
}

static _Thread_local char tls_errmsg[512];

RMQ_API const char *rmq_errmsg(void) { return tls_errmsg; }

RMQI_FUNC int rmqi_err(int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_errmsg, sizeof tls_errmsg, fmt, ap);
  va_end(ap);
  return code;
}

RMQI_FUNC int rmqi_errno(int err, const char *call, const char *path)
{
  int code = RMQ_EIO;
  if (err == ENOSPC || err == EDQUOT) code = RMQ_ENOSPC;
  else if (err == ENOMEM) code = RMQ_ENOMEM;
  return rmqi_err(code, "%s: %s: %s", path, call, strerror(err));
}

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  (void)ud;
  (void)osize;
  if (nsize == 0) { free(ptr); return NULL; }
  return realloc(ptr, nsize);
}

static rmq_alloc_fn g_alloc = default_alloc;
static void *g_alloc_ud;

RMQ_API void rmq_config_allocator(rmq_alloc_fn fn, void *ud)
{
  g_alloc = fn ? fn : default_alloc;
  g_alloc_ud = fn ? ud : NULL;
}

RMQI_FUNC void *rmqi_malloc(size_t n) { return g_alloc(g_alloc_ud, NULL, 0, n ? n : 1); }
RMQI_FUNC void *rmqi_calloc(size_t n, size_t size)
{
  if (size && n > SIZE_MAX / size) return NULL;
  size_t total = n * size;
  void *p = rmqi_malloc(total);
  if (p) memset(p, 0, total ? total : 1);
  return p;
}
RMQI_FUNC void *rmqi_realloc(void *p, size_t osize, size_t nsize)
{
  return g_alloc(g_alloc_ud, p, p ? osize : 0, nsize ? nsize : 1);
}
RMQI_FUNC void rmqi_free(void *p, size_t size)
{
  if (p) g_alloc(g_alloc_ud, p, size ? size : 1, 0);
}
RMQI_FUNC char *rmqi_strdup(const char *s)
{
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = rmqi_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
RMQI_FUNC void rmqi_strfree(char *s)
{
  if (s) rmqi_free(s, strlen(s) + 1);
}

RMQI_FUNC void rmqi_log(const rmqi_env *e, int level, const char *fmt, ...)
{
  if (level > e->log_level) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (e->log) {
    e->log(e->log_ctx, level, msg);
  } else {
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    fprintf(stderr, "rmq %s: %s\n", names[level & 3], msg);
  }
}

static int64_t system_clock(void *ctx)
{
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

RMQI_FUNC int64_t rmqi_mono_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void deadline_ms(struct timespec *ts, int64_t ms)
{
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

static void cond_init_mono(pthread_cond_t *c)
{
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(c, &ca);
  pthread_condattr_destroy(&ca);
}

/* ======================================================================= */
/* Names and validation (RocketMQ's Validators / TopicValidator)           */
/* ======================================================================= */

static int name_chars_ok(const char *s, char *bad)
{
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '%' || c == '|' ||
          c == '_' || c == '-')) {
      *bad = c;
      return 0;
    }
  }
  return 1;
}

static int check_topic(const char *topic)
{
  if (!topic || !*topic) return rmqi_err(RMQ_ETOPIC, "The specified topic is blank");
  size_t n = strlen(topic);
  if (n > RMQ_TOPIC_MAX_LEN)
    return rmqi_err(RMQ_ETOPIC, "The specified topic is longer than topic max length %d (%zu bytes)", RMQ_TOPIC_MAX_LEN, n);
  char bad;
  if (!name_chars_ok(topic, &bad)) {
    if ((unsigned char)bad >= 0x20 && (unsigned char)bad < 0x7f)
      return rmqi_err(RMQ_ETOPIC, "The specified topic[%s] contains illegal character '%c', allowing only ^[%%|a-zA-Z0-9_-]+$", topic, bad);
    return rmqi_err(RMQ_ETOPIC, "The specified topic contains illegal byte 0x%02x, allowing only ^[%%|a-zA-Z0-9_-]+$", (unsigned char)bad);
  }
  return RMQ_OK;
}

static const char *const k_system_topics[] = {
  "TBW102", "SCHEDULE_TOPIC_XXXX", "BenchmarkTest", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRACE_TOPIC",
  "RMQ_SYS_TRANS_OP_HALF_TOPIC", "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT",
  "CHECKPOINT_TOPIC", NULL,
};
static const char *const k_send_forbidden[] = {
  "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC",
  "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT", NULL,
};

static int in_list(const char *const *l, const char *s)
{
  for (; *l; l++)
    if (!strcmp(*l, s)) return 1;
  return 0;
}

static int is_system_topic(const char *t) { return in_list(k_system_topics, t) || !strncmp(t, "rmq_sys_", 8); }

static int check_group(const char *group)
{
  if (!group || !*group) return rmqi_err(RMQ_EGROUP, "the specified group is blank");
  size_t n = strlen(group);
  if (n > RMQ_GROUP_MAX_LEN)
    return rmqi_err(RMQ_EGROUP, "the specified group[%s] is longer than group max length: %d.", group, RMQ_GROUP_MAX_LEN);
  char bad;
  if (!name_chars_ok(group, &bad))
    return rmqi_err(RMQ_EGROUP, "the specified group[%s] contains illegal characters, allowing only ^[%%|a-zA-Z0-9_-]+$", group);
  return RMQ_OK;
}

/* MessageConst.STRING_HASH_SET: names users may not set. */
static const char *const k_reserved_props[] = {
  "KEYS", "TAGS", "WAIT", "DELAY", "RETRY_TOPIC", "REAL_TOPIC", "REAL_QID", "TRAN_MSG", "PGROUP", "MIN_OFFSET",
  "MAX_OFFSET", "BUYER_ID", "ORIGIN_MESSAGE_ID", "TRANSFER_FLAG", "CORRECTION_FLAG", "MQ2_FLAG",
  "RECONSUME_TIME", "MSG_REGION", "TRACE_ON", "UNIQ_KEY", "EXTEND_UNIQ_INFO", "MAX_RECONSUME_TIMES",
  "CONSUME_START_TIME", "TRAN_PREPARED_QUEUE_OFFSET", "DUP_INFO", "INSTANCE_ID", "CORRELATION_ID",
  "REPLY_TO_CLIENT", "TTL", "ARRIVE_TIME", "PUSH_REPLY_TIME", "CLUSTER", "MSG_TYPE", "POP_CK", "POP_CK_OFFSET",
  "1ST_POP_TIME", "TIMER_DELAY_SEC", "TIMER_DELIVER_MS", "TIMER_DELAY_MS", "TIMER_ENQUEUE_MS",
  "TIMER_DEQUEUE_MS", "TIMER_ROLL_TIMES", "TIMER_OUT_MS", "TIMER_DEL_UNIQKEY", "TIMER_DELAY_LEVEL",
  "__BORNHOST", "BORN_TIMESTAMP", "__CRC32#", "DLQ_ORIGIN_TOPIC", "DLQ_ORIGIN_MESSAGE_ID", NULL,
};

static int blank(const char *s)
{
  for (; *s; s++)
    if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v') return 0;
  return 1;
}

/* A property name or value: non-blank UTF-8 without the separators. */
static int check_prop_text(const char *what, const char *name, const char *s)
{
  if (blank(s)) return rmqi_err(RMQ_EPROPERTY, "The name or value of property can not be null or blank string! (%s of '%s')", what, name);
  size_t n = strlen(s);
  if (memchr(s, 1, n) || memchr(s, 2, n))
    return rmqi_err(RMQ_EPROPERTY, "property %s of '%s' contains a 0x01/0x02 separator byte", what, name);
  if (!rmqi_utf8_valid(s, n)) return rmqi_err(RMQ_EPROPERTY, "property %s of '%s' is not valid UTF-8", what, name);
  return RMQ_OK;
}

/* ======================================================================= */
/* Messages to send                                                        */
/* ======================================================================= */

typedef struct prop {
  char *name, *value;
  size_t ncap, vcap;
  size_t nlen, vlen; /* strlen of each, kept so a send measures nothing */
} prop;

struct rmq_msg {
  char *topic;
  size_t topic_cap;
  uint8_t *body;
  size_t body_len, body_cap;
  int32_t flag;
  prop *props;
  int nprops, pcap;
};

/* Copies s into *dst, reusing its buffer when it fits. */
static int str_set(char **dst, size_t *cap, const char *s)
{
  size_t n = strlen(s) + 1;
  if (n > *cap) {
    char *p = rmqi_realloc(*dst, *cap, n);
    if (!p) return rmqi_err(RMQ_ENOMEM, "out of memory");
    *dst = p;
    *cap = n;
  }
  memcpy(*dst, s, n);
  return RMQ_OK;
}

static prop *msg_prop_n(const rmq_msg *m, const char *name, size_t n)
{
  for (int i = 0; i < m->nprops; i++)
    if (m->props[i].nlen == n && !memcmp(m->props[i].name, name, n)) return &m->props[i];
  return NULL;
}
static prop *msg_prop(const rmq_msg *m, const char *name) { return msg_prop_n(m, name, strlen(name)); }
/* For a literal name: its length is known and memcmp inlines. */
#define MSG_PROP(m, lit) msg_prop_n(m, lit, sizeof lit - 1)

static int msg_prop_set(rmq_msg *m, const char *name, const char *value)
{
  prop *p = msg_prop(m, name);
  if (!value) {
    if (p) {
      int i = (int)(p - m->props);
      prop t = *p;
      memmove(p, p + 1, (size_t)(m->nprops - i - 1) * sizeof *p);
      m->props[--m->nprops] = t; /* keep its buffers for reuse */
    }
    return RMQ_OK;
  }
  if (!p) {
    if (m->nprops == m->pcap) {
      int ncap = m->pcap ? m->pcap * 2 : 8;
      prop *np = rmqi_realloc(m->props, (size_t)m->pcap * sizeof *np, (size_t)ncap * sizeof *np);
      if (!np) return rmqi_err(RMQ_ENOMEM, "out of memory");
      memset(np + m->pcap, 0, (size_t)(ncap - m->pcap) * sizeof *np);
      m->props = np;
      m->pcap = ncap;
    }
    p = &m->props[m->nprops];
    if (str_set(&p->name, &p->ncap, name)) return RMQ_ENOMEM;
    if (str_set(&p->value, &p->vcap, value)) return RMQ_ENOMEM;
    p->nlen = strlen(name);
    p->vlen = strlen(value);
    m->nprops++;
    return RMQ_OK;
  }
  if (str_set(&p->value, &p->vcap, value)) return RMQ_ENOMEM;
  p->vlen = strlen(value);
  return RMQ_OK;
}

RMQ_API int rmq_msg_create(rmq_msg **out, const char *topic, const char *tags, const void *body, size_t body_len)
{
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_msg_create: out is NULL");
  rmq_msg *m = rmqi_calloc(1, sizeof *m);
  if (!m) return rmqi_err(RMQ_ENOMEM, "out of memory creating a message");
  int rc = msg_prop_set(m, "WAIT", "true");
  if (!rc && topic) rc = rmq_msg_set_topic(m, topic);
  if (!rc && tags) rc = rmq_msg_set_tags(m, tags);
  if (!rc && body) rc = rmq_msg_set_body(m, body, body_len);
  if (rc) { rmq_msg_free(m); return rc; }
  *out = m;
  return RMQ_OK;
}

RMQ_API void rmq_msg_free(rmq_msg *m)
{
  if (!m) return;
  for (int i = 0; i < m->pcap; i++) {
    rmqi_free(m->props[i].name, m->props[i].ncap);
    rmqi_free(m->props[i].value, m->props[i].vcap);
  }
  rmqi_free(m->props, (size_t)m->pcap * sizeof *m->props);
  rmqi_free(m->topic, m->topic_cap);
  rmqi_free(m->body, m->body_cap);
  rmqi_free(m, sizeof *m);
}

RMQ_API int rmq_msg_set_topic(rmq_msg *m, const char *topic)
{
  if (!m || !topic) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_topic: NULL argument");
  return str_set(&m->topic, &m->topic_cap, topic);
}

RMQ_API int rmq_msg_set_tags(rmq_msg *m, const char *tags)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_tags: message is NULL");
  if (!tags || !*tags) return msg_prop_set(m, "TAGS", NULL);
  int rc = check_prop_text("value", "TAGS", tags);
  return rc ? rc : msg_prop_set(m, "TAGS", tags);
}

RMQ_API int rmq_msg_set_keys(rmq_msg *m, const char *keys)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_keys: message is NULL");
  if (!keys || !*keys) return msg_prop_set(m, "KEYS", NULL);
  int rc = check_prop_text("value", "KEYS", keys);
  return rc ? rc : msg_prop_set(m, "KEYS", keys);
}

RMQ_API int rmq_msg_set_body(rmq_msg *m, const void *body, size_t len)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_body: message is NULL");
  if (!body) len = 0;
  if (len > m->body_cap) {
    uint8_t *p = rmqi_realloc(m->body, m->body_cap, len);
    if (!p) return rmqi_err(RMQ_ENOMEM, "out of memory copying a %zu-byte body", len);
    m->body = p;
    m->body_cap = len;
  }
  if (len) memcpy(m->body, body, len);
  m->body_len = len;
  return RMQ_OK;
}

RMQ_API int rmq_msg_set_flag(rmq_msg *m, int32_t flag)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_flag: message is NULL");
  m->flag = flag;
  return RMQ_OK;
}

RMQ_API int rmq_msg_set_delay_time_level(rmq_msg *m, int level)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_delay_time_level: message is NULL");
  if (level < 0) return rmqi_err(RMQ_EINVAL, "delay level %d is negative", level);
  if (level == 0) return msg_prop_set(m, "DELAY", NULL);
  char v[16];
  snprintf(v, sizeof v, "%d", level);
  return msg_prop_set(m, "DELAY", v);
}

/* One of the TIMER_* properties as a decimal number; negative clears. */
static int msg_set_long(rmq_msg *m, const char *fn, const char *name, int64_t v)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "%s: message is NULL", fn);
  if (v < 0) return msg_prop_set(m, name, NULL);
  char s[24];
  snprintf(s, sizeof s, "%" PRId64, v);
  return msg_prop_set(m, name, s);
}

RMQ_API int rmq_msg_set_deliver_time_ms(rmq_msg *m, int64_t time_ms)
{
  return msg_set_long(m, "rmq_msg_set_deliver_time_ms", "TIMER_DELIVER_MS", time_ms);
}

RMQ_API int rmq_msg_set_delay_time_sec(rmq_msg *m, int64_t sec)
{
  return msg_set_long(m, "rmq_msg_set_delay_time_sec", "TIMER_DELAY_SEC", sec);
}

RMQ_API int rmq_msg_set_delay_time_ms(rmq_msg *m, int64_t ms)
{
  return msg_set_long(m, "rmq_msg_set_delay_time_ms", "TIMER_DELAY_MS", ms);
}

RMQ_API int rmq_msg_set_wait_store_msg_ok(rmq_msg *m, int wait)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_set_wait_store_msg_ok: message is NULL");
  return msg_prop_set(m, "WAIT", wait ? "true" : "false");
}

RMQ_API int rmq_msg_put_user_property(rmq_msg *m, const char *name, const char *value)
{
  if (!m) return rmqi_err(RMQ_EINVAL, "rmq_msg_put_user_property: message is NULL");
  if (!name || !value) return rmqi_err(RMQ_EPROPERTY, "The name or value of property can not be null or blank string!");
  int rc = check_prop_text("name", name, name);
  if (rc) return rc;
  if (in_list(k_reserved_props, name))
    return rmqi_err(RMQ_ERESERVED, "The Property<%s> is used by system, input another please", name);
  rc = check_prop_text("value", name, value);
  return rc ? rc : msg_prop_set(m, name, value);
}

RMQ_API const char *rmq_msg_get_property(const rmq_msg *m, const char *name)
{
  if (!m || !name) return NULL;
  prop *p = msg_prop(m, name);
  return p ? p->value : NULL;
}

/* ======================================================================= */
/* Broker                                                                  */
/* ======================================================================= */

/* Consumer offsets of one "topic@group": next offset to consume per queue,
** -1 = none. Entries live until close; consumers keep pointers to them. */
typedef struct offent {
  char *topic, *group;
  _Atomic int64_t off[RMQ_MAX_QUEUE_NUMS];
  /* Queue locks (the broker's RebalanceLockManager in small), taken by
  ** every push consumer, orderly or not: the process queue (struct pq)
  ** consuming each queue, or NULL. A queue changes hands only when its old
  ** holder lets go, after its listener calls on it have returned and its
  ** offset is committed (or after handover_timeout_ms). */
  _Atomic(void *) lock[RMQ_MAX_QUEUE_NUMS];
} offent;

typedef struct async_ent {
  int64_t end;
  rmq_send_callback cb;
  void *ctx;
  struct rmq_producer *p;
  rmq_send_result r;
} async_ent;

struct rmq_push_consumer;

/* Handle magics. The first field of each handle holds its kind's value from
** create (open) until destroy (close), which overwrites it with MAGIC_DEAD
** before freeing. Every public call checks it first, so a handle of another
** kind, or one destroyed (best effort: freed memory may have been reused),
** gets RMQ_EINVAL and a message instead of a walk through the wrong memory. */
#define MAGIC_BROKER   0x524D5142u /* "RMQB" */
#define MAGIC_PRODUCER 0x524D5150u /* "RMQP" */
#define MAGIC_PUSH     0x524D5155u /* "RMQU" */
#define MAGIC_PULL     0x524D514Cu /* "RMQL" */
#define MAGIC_DEAD     0xDEADDEADu

/* The error for handle h of `kind`, NULL or failing its magic check, passed
** to function fn; `gone` is what ended a handle of that kind. */
static int bad_handle(const void *h, const char *fn, const char *kind, const char *gone)
{
  if (!h) return rmqi_err(RMQ_EINVAL, "%s: the %s is NULL", fn, kind);
  return rmqi_err(RMQ_EINVAL, "%s: %s handle is invalid (%s or not a %s)", fn, kind, gone, kind);
}

/* A set of non-negative int64s (open addressing, -1 = empty). */
typedef struct i64set {
  int64_t *k;
  size_t cap, n;
} i64set;

/* A pending timer message: due time (broker clock), queue offset in
** rmq_sys_wheel_timer. */
typedef struct tm_ent {
  int64_t due, qoff;
} tm_ent;

struct rmq_broker;
/* A broker thread that does its round, then sleeps until the round's next
** due time; kick (sleeper_kick) wakes it sooner. lock: its sleep and stop. */
typedef struct sleeper {
  pthread_t thr;
  int started, stop;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  _Atomic int64_t wake_at;  /* the broker-clock time it sleeps until; INT64_MAX while it works */
  atomic_int kick;
  struct rmq_broker *b;
  const char *name;
  /* Does the work due at now; *next: ms until more is due (0: at once). */
  int (*round)(struct rmq_broker *b, int64_t now, int64_t *next);
} sleeper;

/* A timed message's due time, by queue offset (seqlock: qoff -1 while it
** is written). */
typedef struct tm_slot {
  _Atomic int64_t qoff, due;
} tm_slot;
#define TM_RING 16384

/* A copy of the timer heap on its way to disk (see tm_snap_take). */
typedef struct tm_snap {
  struct rmq_broker *b;
  tm_ent *ents;      /* the copy; kept between snapshots with its encoding: */
  size_t n, cap;     /* a 16 MB buffer freed and made again each time */
  uint8_t *enc;      /* would unmap and fault in 4,000 pages a time */
  size_t enc_cap;
  int64_t read, mark;
} tm_snap;

struct rmq_broker {
  uint32_t magic;             /* MAGIC_BROKER while open */
  rmqi_store *st;
  rmqi_env env;
  rmq_broker_options o;
  char *broker_name, *store_host;
  uint8_t store_ip[4];
  atomic_int nhandles;        /* producers and consumers alive */
  atomic_uint next_instance;

  /* The service thread (flushes, offsets, transaction checks, retention,
  ** async completions) and the delivery thread (timed and delayed
  ** messages only, so that no flush or fsync delays one). */
  sleeper svc, dlv;

  /* async_lock: the ring of SYNC_FLUSH async sends awaiting their flush. */
  pthread_mutex_t async_lock;
  pthread_cond_t async_cond;
  async_ent *aring;
  size_t acap, ahead, acount;

  /* off_lock: the offset table's entry list and persistence. Values are
  ** atomics written without it. */
  pthread_mutex_t off_lock;
  /* persist_lock: one writer of consumerOffset.json and delayOffset.json
  ** at a time (writers share the temporary file), each writing a snapshot
  ** no older than the last one's. */
  pthread_mutex_t persist_lock;
  offent **offs;
  int noffs, offcap;
  atomic_int off_dirty;
  int64_t next_off_persist;

  /* group_lock: the list of started clustering push consumers and
  ** rebalancing. Taken before a consumer's mu; never under store locks. */
  pthread_mutex_t group_lock;
  struct rmq_push_consumer *consumers;
  struct gref *grefs;         /* group_lock: live consumer handles by group */

  /* sched_lock: delayed delivery (ScheduleMessageService): one runner at a
  ** time, its next offset per level, and the buffer records are re-put from. */
  pthread_mutex_t sched_lock;
  int64_t delay_off[RMQI_DELAY_LEVELS_MAX + 1];
  atomic_int delay_dirty;
  uint8_t *reput;
  size_t reput_cap;


  /* tx_lock: transactions: decisions written (COMMIT and op records, in
  ** b->txrec / b->txop), the decided half offsets (tx_done, and all below
  ** tx_base), the producers with listeners (txps), the next check time.
  ** tx_check_lock: one check pass at a time; listeners run under it only. */
  pthread_mutex_t tx_lock, tx_check_lock;
  i64set tx_done;
  int64_t tx_base, tx_next_check;
  struct rmq_producer *txps;
  uint8_t *txrec, *txop;
  size_t txrec_cap, txop_cap;

  /* stats_lock: the samplers' rings and the list of group get counters
  ** (see "Statistics"); counters themselves are atomics. */
  pthread_mutex_t stats_lock;
  struct gstat *gstats;
  rmqi_stat get_stat;         /* every message delivered */
  int64_t boot_ts, next_sample;

  /* tm_lock: timer messages: the heap of pending ones, the next unit of
  ** rmq_sys_wheel_timer to read, the snapshot (see tm_snap_take). */
  pthread_mutex_t tm_lock;
  tm_ent *tm_heap;
  size_t tm_n, tm_cap;
  int64_t tm_read, tm_next_snap;
  int tm_dirty;
  int tm_snap_busy, tm_snap_thr_started; /* a snapshot in flight; its thread */
  /* What senders tell the timer: a timed message's due time by its queue
  ** offset, so the delivery thread need not read the record back. */
  struct tm_slot *_Atomic tm_ring;
  pthread_t tm_snap_thr;
  pthread_cond_t tm_snap_cond;
  tm_snap tm_snap;
  uint8_t *tmbuf;
  size_t tmbuf_cap;
};

static inline int broker_ok(const rmq_broker *b) { return b && b->magic == MAGIC_BROKER; }

/* Consumer handles alive in each group: rmq_group_delete refuses a group
** in use. group_lock. */
typedef struct gref {
  struct gref *next;
  int n;
  char group[];
} gref;

static int group_hold(rmq_broker *b, const char *group)
{
  pthread_mutex_lock(&b->group_lock);
  gref *g = b->grefs;
  while (g && strcmp(g->group, group)) g = g->next;
  if (!g) {
    size_t n = strlen(group) + 1;
    g = rmqi_calloc(1, sizeof *g + n);
    if (g) {
      memcpy(g->group, group, n);
      g->next = b->grefs;
      b->grefs = g;
    }
  }
  if (g) g->n++;
  pthread_mutex_unlock(&b->group_lock);
  return g ? RMQ_OK : rmqi_err(RMQ_ENOMEM, "out of memory creating a consumer of %s", group);
}

static void group_release(rmq_broker *b, const char *group)
{
  pthread_mutex_lock(&b->group_lock);
  for (gref **pp = &b->grefs; *pp; pp = &(*pp)->next) {
    gref *g = *pp;
    if (strcmp(g->group, group)) continue;
    if (--g->n == 0) {
      *pp = g->next;
      rmqi_free(g, sizeof *g + strlen(g->group) + 1);
    }
    break;
  }
  pthread_mutex_unlock(&b->group_lock);
}
static int bad_broker(const rmq_broker *b, const char *fn) { return bad_handle(b, fn, "broker", "closed"); }

static int ro_refused(const rmq_broker *b, const char *fn)
{
  return rmqi_err(RMQ_EREADONLY, "%s: the store %s was opened read-only", fn, rmqi_store_dir(b->st));
}

RMQ_API void rmq_broker_options_init(rmq_broker_options *o)
{
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->flush_disk_type = RMQ_ASYNC_FLUSH;
  o->flush_interval_commit_log = 500;
  o->flush_commit_log_least_pages = 4;
  o->flush_commit_log_thorough_interval = 10000;
  o->flush_interval_consume_queue = 1000;
  o->sync_flush_timeout = 5000;
  o->mapped_file_size_commit_log = 64 << 20;
  o->mapped_file_size_consume_queue = 300000 * 20;
  o->max_message_size = 4194304;
  o->default_topic_queue_nums = 8;
  o->auto_create_topic_enable = 1;
  o->enable_property_filter = 1;
  o->check_crc_on_recover = 1;
  o->flush_consumer_offset_interval = 5000;
  o->service_thread = 1;
  o->group_commit_gather_us = 200;
  o->broker_name = "rmq-broker";
  o->store_host = "127.0.0.1";
  o->store_port = 10911;
  o->log_level = RMQ_LOG_WARN;
  o->disk_space_warning_level_ratio = 90;
  o->clean_resource_interval = 10000;
  o->file_reserved_time = 72;
  o->delete_when = "04";
  o->disk_max_used_space_ratio = 75;
  o->disk_space_clean_forcibly_ratio = 85;
  o->clean_file_forcibly_enable = 1;
  o->delete_file_batch_max = 10;
  o->transaction_timeout = 6000;
  o->transaction_check_interval = 30000;
  o->transaction_check_max = 15;
  o->timer_max_delay_sec = 259200;
  o->timer_precision_ms = 1;
  o->message_index_enable = 1;
  o->max_hash_slot_num = 5000000;
  o->max_index_num = 20000000;
}

static int parse_ipv4(const char *s, uint8_t ip[4])
{
  unsigned a, b, c, d;
  char tail;
  if (!s || sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 || c > 255 || d > 255)
    return 0;
  ip[0] = (uint8_t)a; ip[1] = (uint8_t)b; ip[2] = (uint8_t)c; ip[3] = (uint8_t)d;
  return 1;
}

static int check_broker_options(const rmq_broker_options *o)
{
  if (o->log_level < RMQ_LOG_NONE || o->log_level > RMQ_LOG_DEBUG)
    return rmqi_err(RMQ_EINVAL, "log_level %d out of range RMQ_LOG_NONE (-1) .. RMQ_LOG_DEBUG (3)", o->log_level);
  if (o->flush_disk_type != RMQ_ASYNC_FLUSH && o->flush_disk_type != RMQ_SYNC_FLUSH)
    return rmqi_err(RMQ_EINVAL, "flush_disk_type %d is neither RMQ_ASYNC_FLUSH nor RMQ_SYNC_FLUSH", o->flush_disk_type);
  if (o->mapped_file_size_commit_log < 65536 || o->mapped_file_size_commit_log % 4096)
    return rmqi_err(RMQ_EINVAL, "mapped_file_size_commit_log %" PRId64 " must be a multiple of 4096 and at least 65536",
                    o->mapped_file_size_commit_log);
  if (o->mapped_file_size_consume_queue < 20 * 64 || o->mapped_file_size_consume_queue % 20)
    return rmqi_err(RMQ_EINVAL, "mapped_file_size_consume_queue %d must be a multiple of 20 and at least 1280",
                    o->mapped_file_size_consume_queue);
  if (o->max_message_size < 1) return rmqi_err(RMQ_EINVAL, "max_message_size %d must be positive", o->max_message_size);
  if (o->flush_interval_commit_log < 1 || o->flush_interval_consume_queue < 1 || o->sync_flush_timeout < 1 ||
      o->flush_consumer_offset_interval < 1 || o->flush_commit_log_thorough_interval < 1)
    return rmqi_err(RMQ_EINVAL, "flush intervals and timeouts must be positive");
  if (o->default_topic_queue_nums < 1 || o->default_topic_queue_nums > RMQ_MAX_QUEUE_NUMS)
    return rmqi_err(RMQ_EINVAL, "default_topic_queue_nums %d out of range 1..%d", o->default_topic_queue_nums, RMQ_MAX_QUEUE_NUMS);
  if (o->store_port < 0 || o->store_port > 65535) return rmqi_err(RMQ_EINVAL, "store_port %d out of range", o->store_port);
  if (o->clean_resource_interval < 1)
    return rmqi_err(RMQ_EINVAL, "clean_resource_interval %d must be positive", o->clean_resource_interval);
  if (o->file_reserved_time < 0)
    return rmqi_err(RMQ_EINVAL, "file_reserved_time %d must not be negative", o->file_reserved_time);
  if (o->delete_file_batch_max < 1)
    return rmqi_err(RMQ_EINVAL, "delete_file_batch_max %d must be positive", o->delete_file_batch_max);
  if (o->transaction_timeout < 0 || o->transaction_check_interval < 1 || o->transaction_check_max < 1)
    return rmqi_err(RMQ_EINVAL, "transaction_timeout must not be negative, transaction_check_interval and "
                    "transaction_check_max must be positive");
  if (o->timer_max_delay_sec < 1)
    return rmqi_err(RMQ_EINVAL, "timer_max_delay_sec %d must be positive", o->timer_max_delay_sec);
  if (o->timer_precision_ms < 1 || o->timer_precision_ms > 1000)
    return rmqi_err(RMQ_EINVAL, "timer_precision_ms %d out of range 1..1000", o->timer_precision_ms);
  if (o->max_hash_slot_num < 1 || o->max_hash_slot_num > 100000000)
    return rmqi_err(RMQ_EINVAL, "max_hash_slot_num %d out of range 1..100000000", o->max_hash_slot_num);
  if (o->max_index_num < 2 || o->max_index_num > 100000000)
    return rmqi_err(RMQ_EINVAL, "max_index_num %d out of range 2..100000000", o->max_index_num);
  uint32_t hours;
  int rc = rmqi_delete_when_parse(o->delete_when, &hours);
  if (rc) return rc;
  uint8_t ip[4];
  if (o->store_host && !parse_ipv4(o->store_host, ip))
    return rmqi_err(RMQ_EINVAL, "store_host '%s' is not a dotted IPv4 address", o->store_host);
  if (o->broker_name && (!*o->broker_name || strlen(o->broker_name) >= 64))
    return rmqi_err(RMQ_EINVAL, "broker_name must be 1..63 characters");
  int64_t ms[RMQI_DELAY_LEVELS_MAX + 1];
  int n;
  return rmqi_delay_levels_parse(o->message_delay_level, ms, &n);
}

static int offsets_load(rmq_broker *b);
static int offsets_persist(rmq_broker *b);
static void stats_sample_all(rmq_broker *b, int64_t now);
static rmqi_stat *gstat_get(rmq_broker *b, const char *group, const char *topic);
static void gstats_free(rmq_broker *b);
static inline void stat_add(rmq_broker *b, rmqi_stat *st, int64_t n, int64_t bytes);
static int delay_offsets_load(rmq_broker *b);
static int delay_offsets_persist(rmq_broker *b);
static int schedule_due(rmq_broker *b, int64_t now, int64_t *next);
static int async_drain(rmq_broker *b);
static int service_round(rmq_broker *b, int64_t now, int64_t *next);
static int delivery_round(rmq_broker *b, int64_t now, int64_t *next);
static void sleeper_init(sleeper *s, rmq_broker *b, const char *name,
                         int (*round)(rmq_broker *b, int64_t now, int64_t *next));
static int sleeper_start(sleeper *s);
static void sleeper_stop(sleeper *s);
static int tx_load(rmq_broker *b);
static void delivery_wake_by(rmq_broker *b, int64_t due);
static void service_kick(rmq_broker *b);
struct rmq_producer;
static void tx_producer_gone(struct rmq_producer *p);
static int tx_check_due(rmq_broker *b, int64_t now, int64_t *next);
static int timer_load(rmq_broker *b);
static int timer_due(rmq_broker *b, int64_t now, int64_t *next, int force_snapshot);
static void broker_free_txtm(rmq_broker *b);
static void offsets_free(rmq_broker *b);

RMQ_API int rmq_broker_open(const char *dir, const rmq_broker_options *opts, rmq_broker **out)
{
  if (!dir || !*dir || !out) return rmqi_err(RMQ_EINVAL, "rmq_broker_open: dir and out are required");
  rmq_broker_options o;
  if (opts) o = *opts;
  else rmq_broker_options_init(&o);
  int rc = check_broker_options(&o);
  if (rc) return rc;
  rmq_broker *b = rmqi_calloc(1, sizeof *b);
  if (!b) return rmqi_err(RMQ_ENOMEM, "out of memory opening %s", dir);
  b->broker_name = rmqi_strdup(o.broker_name ? o.broker_name : "rmq-broker");
  b->store_host = rmqi_strdup(o.store_host ? o.store_host : "127.0.0.1");
  if (!b->broker_name || !b->store_host) { rc = rmqi_err(RMQ_ENOMEM, "out of memory"); goto out_free; }
  o.broker_name = b->broker_name;
  o.store_host = b->store_host;
  parse_ipv4(b->store_host, b->store_ip);
  b->o = o;
  b->env.clock = o.clock ? o.clock : system_clock;
  b->env.clock_ctx = o.clock_ctx;
  b->env.log = o.log;
  b->env.log_ctx = o.log_ctx;
  b->env.log_level = o.log_level;
  sleeper_init(&b->svc, b, "service", service_round);
  sleeper_init(&b->dlv, b, "delivery", delivery_round);
  pthread_mutex_init(&b->async_lock, NULL);
  cond_init_mono(&b->async_cond);
  pthread_mutex_init(&b->off_lock, NULL);
  pthread_mutex_init(&b->persist_lock, NULL);
  pthread_mutex_init(&b->group_lock, NULL);
  pthread_mutex_init(&b->sched_lock, NULL);
  pthread_mutex_init(&b->tx_lock, NULL);
  pthread_mutex_init(&b->tx_check_lock, NULL);
  pthread_mutex_init(&b->tm_lock, NULL);
  pthread_cond_init(&b->tm_snap_cond, NULL);
  pthread_mutex_init(&b->stats_lock, NULL);
  b->boot_ts = rmqi_now(&b->env);
  rc = rmqi_store_open(dir, &b->o, &b->env, &b->st);
  if (rc) goto out_free;
  b->o.message_delay_level = NULL; /* the store keeps it parsed */
  if (o.read_only) b->o.service_thread = o.service_thread = 0;
  rc = offsets_load(b);
  if (rc) goto out_store;
  rc = delay_offsets_load(b);
  if (!rc) rc = tx_load(b);
  if (!rc) rc = timer_load(b);
  if (rc) goto out_store;
  b->tm_next_snap = rmqi_now(&b->env) + o.flush_consumer_offset_interval;
  b->next_off_persist = rmqi_now(&b->env) + o.flush_consumer_offset_interval;
  stats_sample_all(b, b->boot_ts); /* the rates' starting point */
  if (o.service_thread) {
    if (sleeper_start(&b->svc) || sleeper_start(&b->dlv)) {
      sleeper_stop(&b->svc);
      rc = rmqi_err(RMQ_ENOMEM, "cannot start the service threads");
      goto out_store;
    }
  }
  b->magic = MAGIC_BROKER;
  *out = b;
  return RMQ_OK;
out_store:
  rmqi_store_close(b->st);
  broker_free_txtm(b);
  gstats_free(b);
  offsets_free(b); /* loaded before a later step failed */
out_free:
  rmqi_strfree(b->broker_name);
  rmqi_strfree(b->store_host);
  rmqi_free(b, sizeof *b);
  return rc;
}

/* Timed and delayed messages now due; *next: ms until the next one. */
static int deliveries_due(rmq_broker *b, int64_t now, int64_t *next)
{
  int rc = timer_due(b, now, next, 0);
  int rc2 = schedule_due(b, now, next);
  return rc ? rc : rc2;
}

/* Everything due (deliveries: with them too). */
static int broker_due(rmq_broker *b, int64_t *next_ms, int deliveries)
{
  int64_t now = rmqi_now(&b->env);
  stats_sample_all(b, now);
  int64_t next = 1000, store_next = 1000;
  int rc = deliveries ? deliveries_due(b, now, &next) : RMQ_OK;
  int rct = tx_check_due(b, rmqi_now(&b->env), &next);
  if (!rc) rc = rct;
  int rcs = rmqi_store_run_due(b->st, now, &store_next);
  if (store_next < next) next = store_next; /* the earlier of the two */
  if (!rc) rc = rcs;
  int rc2 = RMQ_OK;
  pthread_mutex_lock(&b->off_lock);
  int due = now >= b->next_off_persist;
  if (due) b->next_off_persist = now + b->o.flush_consumer_offset_interval;
  int64_t left = b->next_off_persist - now;
  pthread_mutex_unlock(&b->off_lock);
  if (due && atomic_load(&b->off_dirty)) rc2 = offsets_persist(b);
  if (due && atomic_load(&b->delay_dirty) && !rc2) rc2 = delay_offsets_persist(b);
  if (left < next) next = left;
  int rc3 = async_drain(b);
  if (next_ms) *next_ms = next < 0 ? 0 : next;
  return rc ? rc : rc2 ? rc2 : rc3;
}

static void sleeper_init(sleeper *s, rmq_broker *b, const char *name,
                         int (*round)(rmq_broker *b, int64_t now, int64_t *next))
{
  memset(s, 0, sizeof *s);
  s->b = b;
  s->name = name;
  s->round = round;
  atomic_store(&s->wake_at, INT64_MAX);
  pthread_mutex_init(&s->lock, NULL);
  cond_init_mono(&s->cond);
}

static void *sleeper_main(void *arg)
{
  sleeper *s = arg;
  rmq_broker *b = s->b;
  pthread_mutex_lock(&s->lock);
  while (!s->stop) {
    pthread_mutex_unlock(&s->lock);
    /* Awake: whoever has something due sooner only needs to say so. */
    atomic_store(&s->wake_at, INT64_MAX);
    atomic_store(&s->kick, 0);
    int64_t next = 1000, now = rmqi_now(&b->env);
    if (s->round(b, now, &next)) rmqi_log(&b->env, RMQ_LOG_ERROR, "%s: %s", s->name, rmq_errmsg());
    pthread_mutex_lock(&s->lock);
    if (s->stop || next <= 0) continue;
    atomic_store(&s->wake_at, now + next);
    if (atomic_load(&s->kick)) continue;
    struct timespec dl;
    deadline_ms(&dl, next);
    pthread_cond_timedwait(&s->cond, &s->lock, &dl);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

static int sleeper_start(sleeper *s)
{
  if (pthread_create(&s->thr, NULL, sleeper_main, s) != 0) return -1;
  s->started = 1;
  return 0;
}

/* Wakes s if it sleeps past `due` (INT64_MIN: at once). One atomic load
** when it does not. */
static void sleeper_kick(sleeper *s, int64_t due)
{
  if (!s->started || due >= atomic_load(&s->wake_at)) return;
  if (atomic_exchange(&s->kick, 1)) return; /* already told */
  pthread_mutex_lock(&s->lock);
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

static void sleeper_stop(sleeper *s)
{
  if (!s->started) return;
  rmqi_thread_stop(&s->lock, &s->cond, &s->stop, s->thr);
  s->started = 0;
}

static void sleeper_destroy(sleeper *s)
{
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cond);
}

static int clamp_next(int64_t *next)
{
  if (*next > 1000) *next = 1000;
  if (*next < 1) *next = 1;
  return 0;
}

static int service_round(rmq_broker *b, int64_t now, int64_t *next)
{
  (void)now;
  int rc = broker_due(b, next, 0);
  clamp_next(next);
  pthread_mutex_lock(&b->async_lock);
  if (b->acount > 0) *next = 0; /* async sends waiting for a flush: again at once */
  pthread_mutex_unlock(&b->async_lock);
  return rc;
}

static int delivery_round(rmq_broker *b, int64_t now, int64_t *next)
{
  int rc = deliveries_due(b, now, next);
  clamp_next(next);
  return rc;
}

/* A delayed or timed message due at `due` (broker clock) was stored. */
static void delivery_wake_by(rmq_broker *b, int64_t due) { sleeper_kick(&b->dlv, due); }

/* Asks the service thread for a round now (a transaction check). */
static void service_kick(rmq_broker *b) { sleeper_kick(&b->svc, INT64_MIN); }

RMQ_API int rmq_broker_run_due(rmq_broker *b, int64_t *next_due_ms)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_run_due");
  if (b->o.read_only) return ro_refused(b, "rmq_broker_run_due");
  return broker_due(b, next_due_ms, 1);
}

RMQ_API int rmq_broker_delete_expired_files(rmq_broker *b, int *deleted)
{
  if (deleted) *deleted = 0;
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_delete_expired_files");
  if (b->o.read_only) return ro_refused(b, "rmq_broker_delete_expired_files");
  /* Only what the flusher has reached can go: flush first, as the manual
  ** call means "now". */
  int rc = rmqi_store_flush_commitlog(b->st);
  if (!rc) rc = rmqi_store_delete_expired(b->st, rmqi_now(&b->env), deleted);
  return rc;
}

RMQ_API int rmq_broker_flush(rmq_broker *b)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_flush");
  if (b->o.read_only) return ro_refused(b, "rmq_broker_flush");
  int rc = rmqi_store_flush_all(b->st);
  int64_t ignore = 0;
  int rc2 = timer_due(b, rmqi_now(&b->env), &ignore, 1);
  if (!rc2) rc2 = offsets_persist(b);
  if (!rc2) rc2 = delay_offsets_persist(b);
  int rc3 = async_drain(b);
  return rc ? rc : rc2 ? rc2 : rc3;
}

RMQ_API int rmq_broker_recovery_info(rmq_broker *b, rmq_recovery_info *out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_recovery_info");
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_broker_recovery_info: out is NULL");
  rmqi_store_recovery_info(b->st, out);
  return RMQ_OK;
}

static void offsets_free(rmq_broker *b);

RMQ_API int rmq_broker_close(rmq_broker *b)
{
  if (!b) return RMQ_OK;
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_close");
  int n = atomic_load(&b->nhandles);
  if (n > 0)
    return rmqi_err(RMQ_ESTATE, "rmq_broker_close: %d producer(s)/consumer(s) still exist; destroy them first", n);
  /* From here the broker is freed whatever happens: a second close, or a
  ** call racing this one, fails the magic check. */
  b->magic = MAGIC_DEAD;
  sleeper_stop(&b->svc);
  sleeper_stop(&b->dlv);
  int rc = RMQ_OK, rc2;
  if (!b->o.read_only) {
    rc = async_drain(b);
    int64_t ignore = 0;
    rc2 = timer_due(b, rmqi_now(&b->env), &ignore, 1); /* the final snapshot */
    if (!rc) rc = rc2;
    rc2 = offsets_persist(b);
    if (!rc) rc = rc2;
    rc2 = delay_offsets_persist(b);
    if (!rc) rc = rc2;
  }
  char msg[512];
  snprintf(msg, sizeof msg, "%s", rmq_errmsg());
  int rc3 = rmqi_store_close(b->st);
  if (!rc) rc = rc3;
  else rmqi_err(rc, "%s", msg);
  offsets_free(b);
  rmqi_free(b->aring, b->acap * sizeof *b->aring);
  sleeper_destroy(&b->svc);
  sleeper_destroy(&b->dlv);
  pthread_mutex_destroy(&b->async_lock);
  pthread_cond_destroy(&b->async_cond);
  pthread_mutex_destroy(&b->off_lock);
  pthread_mutex_destroy(&b->persist_lock);
  pthread_mutex_destroy(&b->group_lock);
  pthread_mutex_destroy(&b->sched_lock);
  broker_free_txtm(b);
  gstats_free(b);
  pthread_mutex_destroy(&b->stats_lock);
  rmqi_free(b->reput, b->reput_cap);
  rmqi_strfree(b->broker_name);
  rmqi_strfree(b->store_host);
  rmqi_free(b, sizeof *b);
  return rc;
}

/* ======================================================================= */
/* Topics                                                                  */
/* ======================================================================= */

static void rebalance_all(rmq_broker *b);

/* Every offset of the entries of topic (or of group, when topic is NULL)
** becomes "none". Returns how many entries had one. */
static int offsets_forget(rmq_broker *b, const char *topic, const char *group)
{
  int n = 0;
  pthread_mutex_lock(&b->off_lock);
  for (int i = 0; i < b->noffs; i++) {
    offent *e = b->offs[i];
    if (topic ? strcmp(e->topic, topic) != 0 : strcmp(e->group, group) != 0) continue;
    int had = 0;
    for (int q = 0; q < RMQ_MAX_QUEUE_NUMS; q++) had |= atomic_exchange(&e->off[q], -1) >= 0;
    n += had;
  }
  pthread_mutex_unlock(&b->off_lock);
  if (n) atomic_store(&b->off_dirty, 1);
  return n;
}

RMQ_API int rmq_topic_delete(rmq_broker *b, const char *topic)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_topic_delete");
  if (b->o.read_only) return ro_refused(b, "rmq_topic_delete");
  int rc = check_topic(topic);
  if (rc) return rc;
  if (is_system_topic(topic)) return rmqi_err(RMQ_EFORBIDDEN, "The topic[%s] is a system topic and cannot be deleted.", topic);
  if ((rc = rmqi_topic_delete(b->st, topic))) return rc;
  /* RocketMQ's deleteTopic cleans the offsets of the topic too. */
  if (offsets_forget(b, topic, NULL) && offsets_persist(b) != RMQ_OK)
    rmqi_log(&b->env, RMQ_LOG_WARN, "topic %s deleted; its offsets are forgotten at the next persist (%s)", topic, rmq_errmsg());
  rebalance_all(b);
  return RMQ_OK;
}

RMQ_API int rmq_group_delete(rmq_broker *b, const char *group)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_group_delete");
  if (b->o.read_only) return ro_refused(b, "rmq_group_delete");
  int rc = check_group(group);
  if (rc) return rc;
  char retry[300], dlq[300];
  snprintf(retry, sizeof retry, "%%RETRY%%%s", group);
  snprintf(dlq, sizeof dlq, "%%DLQ%%%s", group);
  /* group_lock throughout: no consumer of the group starts meanwhile. */
  pthread_mutex_lock(&b->group_lock);
  gref *g = b->grefs;
  while (g && strcmp(g->group, group)) g = g->next;
  if (g) {
    int n = g->n;
    pthread_mutex_unlock(&b->group_lock);
    return rmqi_err(RMQ_ESTATE, "consumer group %s has %d live consumer%s: destroy them first", group, n, n == 1 ? "" : "s");
  }
  int found = offsets_forget(b, NULL, group);
  const char *topics[2] = {retry, dlq};
  for (int i = 0; i < 2 && !rc; i++) {
    int trc = rmqi_topic_delete(b->st, topics[i]);
    if (trc == RMQ_OK) found++;
    else if (trc != RMQ_ENOTOPIC) rc = trc;
  }
  pthread_mutex_unlock(&b->group_lock);
  if (rc) return rc;
  if (!found) return rmqi_err(RMQ_ENOTFOUND, "consumer group %s has no offsets, retry or dead-letter topic", group);
  return offsets_persist(b);
}

RMQ_API int rmq_topic_create(rmq_broker *b, const char *topic, int queue_nums)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_topic_create");
  if (b->o.read_only) return ro_refused(b, "rmq_topic_create");
  int rc = check_topic(topic);
  if (rc) return rc;
  if (is_system_topic(topic)) return rmqi_err(RMQ_EFORBIDDEN, "The topic[%s] is conflict with system topic.", topic);
  if (queue_nums < 1 || queue_nums > RMQ_MAX_QUEUE_NUMS)
    return rmqi_err(RMQ_EQUEUE, "queue_nums %d for topic %s out of range 1..%d", queue_nums, topic, RMQ_MAX_QUEUE_NUMS);
  rmqi_topic *t = rmqi_topic_find(b->st, topic);
  int old = t ? rmqi_topic_nqueues(t) : 0;
  rc = rmqi_topic_create(b->st, topic, queue_nums, NULL);
  if (!rc && old && old != queue_nums) rebalance_all(b);
  return rc;
}

RMQ_API int rmq_topic_list(rmq_broker *b, rmq_topic_info *out, size_t cap, size_t *n)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_topic_list");
  if (!n || (!out && cap)) return rmqi_err(RMQ_EINVAL, "rmq_topic_list: NULL argument");
  return rmqi_topic_list(b->st, out, cap, n);
}

static int find_queue(rmq_broker *b, const char *topic, int queue_id, rmqi_queue **q)
{
  if (!topic) return rmqi_err(RMQ_EINVAL, "topic is NULL");
  rmqi_topic *t = rmqi_topic_find(b->st, topic);
  if (!t) return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist", topic);
  if (queue_id < 0 || queue_id >= rmqi_topic_nqueues(t))
    return rmqi_err(RMQ_EQUEUE, "queue %d of topic %s does not exist (it has %d)", queue_id, topic, rmqi_topic_nqueues(t));
  *q = rmqi_topic_queue(t, queue_id);
  if (!*q) return rmqi_err(RMQ_EQUEUE, "queue %d of topic %s does not exist", queue_id, topic);
  return RMQ_OK;
}

RMQ_API int rmq_topic_queue_offsets(rmq_broker *b, const char *topic, int queue_id, int64_t *min_offset, int64_t *max_offset)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_topic_queue_offsets");
  rmqi_queue *q;
  int rc = find_queue(b, topic, queue_id, &q);
  if (rc) return rc;
  if (min_offset) *min_offset = rmqi_queue_min_offset(q);
  if (max_offset) *max_offset = rmqi_queue_max_offset(q);
  return RMQ_OK;
}

/* ======================================================================= */
/* Consumer offsets (config/consumerOffset.json)                           */
/* ======================================================================= */

/* off_lock held. */
static offent *offent_new(const char *topic, const char *group)
{
  offent *e = rmqi_calloc(1, sizeof *e);
  if (!e) return NULL;
  e->topic = rmqi_strdup(topic);
  e->group = rmqi_strdup(group);
  if (!e->topic || !e->group) {
    rmqi_strfree(e->topic);
    rmqi_strfree(e->group);
    rmqi_free(e, sizeof *e);
    return NULL;
  }
  for (int i = 0; i < RMQ_MAX_QUEUE_NUMS; i++) atomic_store(&e->off[i], -1);
  return e;
}

static void offent_free(offent *e)
{
  if (!e) return;
  rmqi_strfree(e->topic);
  rmqi_strfree(e->group);
  rmqi_free(e, sizeof *e);
}

static offent *off_find_locked(rmq_broker *b, const char *topic, const char *group, int create)
{
  for (int i = 0; i < b->noffs; i++)
    if (!strcmp(b->offs[i]->topic, topic) && !strcmp(b->offs[i]->group, group)) return b->offs[i];
  if (!create) return NULL;
  if (b->noffs == b->offcap) {
    int ncap = b->offcap ? b->offcap * 2 : 16;
    offent **n = rmqi_realloc(b->offs, (size_t)b->offcap * sizeof *n, (size_t)ncap * sizeof *n);
    if (!n) return NULL;
    b->offs = n;
    b->offcap = ncap;
  }
  offent *e = offent_new(topic, group);
  if (!e) return NULL;
  b->offs[b->noffs++] = e;
  return e;
}

static offent *off_find(rmq_broker *b, const char *topic, const char *group, int create)
{
  pthread_mutex_lock(&b->off_lock);
  offent *e = off_find_locked(b, topic, group, create);
  pthread_mutex_unlock(&b->off_lock);
  if (!e && create) rmqi_err(RMQ_ENOMEM, "out of memory creating offsets of %s@%s", topic, group);
  return e;
}

static void off_set(rmq_broker *b, offent *e, int qid, int64_t off)
{
  if (atomic_exchange(&e->off[qid], off) != off) atomic_store(&b->off_dirty, 1);
}

static int offsets_load(rmq_broker *b)
{
  char *text;
  size_t len;
  int damaged = 0;
  int rc = rmqi_store_read_config(b->st, "consumerOffset.json", &text, &len);
  if (rc == RMQ_ENOTFOUND) return RMQ_OK;
  if (rc) return rc;
  int prc;
  rmqi_json *j = rmqi_json_parse(text, len, &prc);
  rmqi_free(text, len + 1);
  if (!j && prc != RMQ_ENOMEM &&
      rmqi_store_read_config(b->st, "consumerOffset.json.bak", &text, &len) == RMQ_OK) {
    /* RocketMQ's ConfigManager.load falls back to the .bak copy. */
    rmqi_log(&b->env, RMQ_LOG_WARN, "config/consumerOffset.json is damaged; using its .bak");
    damaged = 1;
    j = rmqi_json_parse(text, len, &prc);
    rmqi_free(text, len + 1);
  }
  if (!j) {
    /* Offsets are a convenience over the store: losing them re-delivers,
    ** it never loses a message. Start over rather than refuse to open. */
    if (prc == RMQ_ENOMEM) return rmqi_err(RMQ_ENOMEM, "out of memory reading consumerOffset.json");
    rmqi_log(&b->env, RMQ_LOG_ERROR, "config/consumerOffset.json is damaged; consumer offsets start over");
    if (offsets_persist(b)) rmqi_log(&b->env, RMQ_LOG_WARN, "cannot rewrite consumerOffset.json: %s", rmq_errmsg());
    return RMQ_OK;
  }
  const rmqi_json *tab = rmqi_json_get(j, "offsetTable");
  for (const rmqi_json *e = tab ? tab->child : NULL; e; e = e->next) {
    const char *at = e->key ? strchr(e->key, '@') : NULL;
    if (!at || at == e->key || !at[1] || e->type != RMQI_JOBJ) continue;
    char topic[256];
    size_t tl = (size_t)(at - e->key);
    if (tl >= sizeof topic) continue;
    memcpy(topic, e->key, tl);
    topic[tl] = 0;
    offent *oe = off_find(b, topic, at + 1, 1);
    if (!oe) { rc = RMQ_ENOMEM; break; }
    for (const rmqi_json *q = e->child; q; q = q->next) {
      long qid = q->key ? strtol(q->key, NULL, 10) : -1;
      /* INT64_MAX is what an out-of-range number reads as. */
      if (qid < 0 || qid >= RMQ_MAX_QUEUE_NUMS || q->type != RMQI_JNUM || q->inum < 0 || q->inum == INT64_MAX) {
        rmqi_log(&b->env, RMQ_LOG_WARN, "consumerOffset.json: %s queue %s: not a queue and offset; ignored", e->key,
                 q->key ? q->key : "?");
        continue;
      }
      atomic_store(&oe->off[qid], q->inum);
    }
  }
  rmqi_json_free(j);
  /* Rewrite a main file that only its .bak could stand in for. */
  if (!rc && damaged && offsets_persist(b))
    rmqi_log(&b->env, RMQ_LOG_WARN, "cannot rewrite consumerOffset.json: %s", rmq_errmsg());
  return rc;
}

/* {"offsetTable":{"topic@group":{0:5,1:7},...}}: consumerOffset.json's
** shape, for the broker's table and a broadcasting consumer's own file. */
static void offsets_json(rmqi_buf *buf, offent *const *offs, int noffs)
{
  rmqi_buf_puts(buf, "{\"offsetTable\":{");
  int first = 1;
  for (int i = 0; i < noffs; i++) {
    offent *e = offs[i];
    int any = 0;
    for (int q = 0; q < RMQ_MAX_QUEUE_NUMS; q++) {
      int64_t v = atomic_load(&e->off[q]);
      if (v < 0) continue;
      if (!any) {
        if (!first) rmqi_buf_puts(buf, ",");
        first = 0;
        char key[512];
        snprintf(key, sizeof key, "%s@%s", e->topic, e->group);
        rmqi_buf_json_str(buf, key);
        rmqi_buf_puts(buf, ":{");
      } else {
        rmqi_buf_puts(buf, ",");
      }
      any = 1;
      rmqi_buf_printf(buf, "%d:%" PRId64, q, v);
    }
    if (any) rmqi_buf_puts(buf, "}");
  }
  rmqi_buf_puts(buf, "}}");
}

static int offsets_persist(rmq_broker *b)
{
  if (b->o.read_only) return RMQ_OK;
  rmqi_buf buf = {0};
  pthread_mutex_lock(&b->persist_lock);
  atomic_store(&b->off_dirty, 0);
  pthread_mutex_lock(&b->off_lock);
  offsets_json(&buf, b->offs, b->noffs);
  pthread_mutex_unlock(&b->off_lock);
  int rc;
  if (buf.oom) rc = rmqi_err(RMQ_ENOMEM, "out of memory writing consumerOffset.json");
  else rc = rmqi_store_write_config(b->st, "consumerOffset.json", buf.p, buf.len);
  if (rc) atomic_store(&b->off_dirty, 1);
  pthread_mutex_unlock(&b->persist_lock);
  rmqi_buf_free(&buf);
  return rc;
}

static void offsets_free(rmq_broker *b)
{
  for (int i = 0; i < b->noffs; i++) offent_free(b->offs[i]);
  rmqi_free(b->offs, (size_t)b->offcap * sizeof *b->offs);
}

/* ======================================================================= */
/* Delayed delivery (RocketMQ's ScheduleMessageService)                    */
/* ======================================================================= */

/* config/delayOffset.json: {"offsetTable":{1:5,3:17}}, level -> next unit of
** SCHEDULE_TOPIC_XXXX queue level-1. A damaged file restarts at 0, which
** re-delivers: never a loss. */
static int delay_offsets_load(rmq_broker *b)
{
  char *text;
  size_t len;
  int rc = rmqi_store_read_config(b->st, "delayOffset.json", &text, &len);
  if (rc) return rc == RMQ_ENOTFOUND ? RMQ_OK : rc;
  int prc;
  rmqi_json *j = rmqi_json_parse(text, len, &prc);
  rmqi_free(text, len + 1);
  if (!j) {
    rmqi_log(&b->env, RMQ_LOG_ERROR, "config/delayOffset.json is damaged; delayed messages are delivered again from the start");
    return prc == RMQ_ENOMEM ? rmqi_err(RMQ_ENOMEM, "out of memory reading delayOffset.json") : RMQ_OK;
  }
  const rmqi_json *tab = rmqi_json_get(j, "offsetTable");
  for (const rmqi_json *e = tab ? tab->child : NULL; e; e = e->next) {
    long level = e->key ? strtol(e->key, NULL, 10) : 0;
    if (level >= 1 && level <= RMQI_DELAY_LEVELS_MAX && e->type == RMQI_JNUM && e->inum >= 0) b->delay_off[level] = e->inum;
  }
  rmqi_json_free(j);
  return RMQ_OK;
}

static int delay_offsets_persist(rmq_broker *b)
{
  if (b->o.read_only) return RMQ_OK;
  if (!rmqi_topic_find(b->st, RMQI_SCHEDULE_TOPIC)) return RMQ_OK;
  rmqi_buf buf = {0};
  pthread_mutex_lock(&b->persist_lock);
  pthread_mutex_lock(&b->sched_lock);
  atomic_store(&b->delay_dirty, 0);
  rmqi_buf_puts(&buf, "{\"offsetTable\":{");
  int n = rmqi_store_delay_levels(b->st);
  for (int l = 1; l <= n; l++) rmqi_buf_printf(&buf, "%s%d:%" PRId64, l > 1 ? "," : "", l, b->delay_off[l]);
  pthread_mutex_unlock(&b->sched_lock);
  rmqi_buf_puts(&buf, "}}");
  int rc;
  if (buf.oom) rc = rmqi_err(RMQ_ENOMEM, "out of memory writing delayOffset.json");
  else rc = rmqi_store_write_config(b->st, "delayOffset.json", buf.p, buf.len);
  if (rc) atomic_store(&b->delay_dirty, 1);
  pthread_mutex_unlock(&b->persist_lock);
  rmqi_buf_free(&buf);
  return rc;
}

/* The schedule topic, one queue per level, made on first use. */
static int schedule_topic(rmq_broker *b, rmqi_topic **out)
{
  int n = rmqi_store_delay_levels(b->st);
  rmqi_topic *t = rmqi_topic_find(b->st, RMQI_SCHEDULE_TOPIC);
  if (t && rmqi_topic_nqueues(t) >= n) { *out = t; return RMQ_OK; }
  return rmqi_topic_create(b->st, RMQI_SCHEDULE_TOPIC, n, out);
}

/* Appends "name\1value\2" to b. */
static void prop_append(rmqi_buf *b, const char *name, const char *value, size_t vlen)
{
  rmqi_buf_puts(b, name);
  rmqi_buf_puts(b, "\1");
  rmqi_buf_add(b, value, vlen);
  rmqi_buf_puts(b, "\2");
}

/* Builds into *buf (growing it) a copy of record rec (decoded as r) for
** topic/qid with properties props[0..plen) and reconsume times `recon`: the
** same body, flag, sysflag, born and store hosts, born time. The store fills
** in the offsets and the store time. Returns the size, 0 when out of memory. */
static size_t record_rebuild(uint8_t **buf, size_t *cap, const uint8_t *rec, const rmqi_record *r, const char *topic,
                             int qid, const char *props, size_t plen, int32_t recon)
{
  size_t tl = strlen(topic);
  size_t hdr = (size_t)((const uint8_t *)r->body - 4 - rec); /* everything before BODYLEN */
  int v2 = tl > 127;
  size_t total = hdr + 4 + (size_t)r->body_len + (v2 ? 2 : 1) + tl + 2 + plen;
  if (total > *cap) {
    uint8_t *nb = rmqi_realloc(*buf, *cap, total);
    if (!nb) return 0;
    *buf = nb;
    *cap = total;
  }
  uint8_t *w = *buf;
  memcpy(w, rec, hdr);
  rmqi_put32(w, (uint32_t)total);
  rmqi_put32(w + 4, v2 ? RMQI_MAGIC_V2 : RMQI_MAGIC_V1);
  rmqi_put32(w + 12, (uint32_t)qid);
  rmqi_put64(w + RMQI_OFF_QUEUEOFFSET, 0);
  rmqi_put64(w + RMQI_OFF_PHYSOFFSET, 0);
  rmqi_put32(w + hdr - 12, (uint32_t)recon); /* RECONSUMETIMES, then PREPARED_TX_OFFSET (8) */
  w += hdr;
  rmqi_put32(w, (uint32_t)r->body_len);
  memcpy(w + 4, r->body, (size_t)r->body_len);
  w += 4 + r->body_len;
  if (v2) { rmqi_put16(w, (uint16_t)tl); w += 2; }
  else *w++ = (uint8_t)tl;
  memcpy(w, topic, tl);
  w += tl;
  rmqi_put16(w, (uint16_t)plen);
  memcpy(w + 2, props, plen);
  return total;
}

static int64_t props_tags_code(const char *props, size_t len)
{
  const char *tv;
  size_t tl;
  return rmqi_props_find(props, len, "TAGS", 4, &tv, &tl) ? rmqi_jhash(tv, tl) : 0;
}

/* sched_lock held. Re-puts the due record at phys to REAL_TOPIC/REAL_QID:
** the same record with the topic and queue changed, properties as stored
** (RocketMQ's delivered records keep DELAY, REAL_TOPIC and REAL_QID). */
static int reput_pinned(rmq_broker *b, const uint8_t *rec, int64_t phys, int32_t size, int64_t now);
static int reput(rmq_broker *b, int64_t phys, int32_t size, int64_t now)
{
  void *pin;
  const uint8_t *rec = rmqi_store_record_pin(b->st, phys, size, &pin);
  int rc = reput_pinned(b, rec, phys, size, now);
  rmqi_store_unpin(pin);
  return rc;
}

/* reput with the record pinned (rec NULL: it is gone). */
static int reput_pinned(rmq_broker *b, const uint8_t *rec, int64_t phys, int32_t size, int64_t now)
{
  rmqi_record r;
  if (!rec || rmqi_record_decode(rec, (size_t)size, 0, &r) != RMQ_OK)
    return rmqi_err(RMQ_ECORRUPT, "delayed message at %" PRId64 " is unreadable", phys);
  const char *tv, *qv;
  size_t tl, ql;
  if (!rmqi_props_find(r.props, (size_t)r.props_len, "REAL_TOPIC", 10, &tv, &tl) || tl == 0 || tl > 255 ||
      !rmqi_props_find(r.props, (size_t)r.props_len, "REAL_QID", 8, &qv, &ql) || ql == 0 || ql > 5)
    return rmqi_err(RMQ_ECORRUPT, "delayed message at %" PRId64 " lacks REAL_TOPIC/REAL_QID", phys);
  char topic[256], qs[8];
  memcpy(topic, tv, tl);
  topic[tl] = 0;
  memcpy(qs, qv, ql);
  qs[ql] = 0;
  int qid = atoi(qs);
  if (rmqi_store_topic_deleted_at(b->st, topic, phys)) {
    rmqi_log(&b->env, RMQ_LOG_INFO, "delayed message at %" PRId64 " for deleted topic %s dropped", phys, topic);
    return RMQ_OK;
  }
  rmqi_topic *t = rmqi_topic_find(b->st, topic);
  int rc;
  if (!t && (rc = rmqi_topic_create(b->st, topic, b->o.default_topic_queue_nums < 4 ? b->o.default_topic_queue_nums : 4, &t)))
    return rc;
  int nq = rmqi_topic_nqueues(t);
  if (nq < 1) return rmqi_err(RMQ_ENOTOPIC, "topic %s has no queues", topic);
  if (qid < 0 || qid >= nq) qid = (qid < 0 ? 0 : qid) % nq; /* the topic shrank meanwhile */
  rmqi_put put = {0};
  put.size = (uint32_t)record_rebuild(&b->reput, &b->reput_cap, rec, &r, topic, qid, r.props, (size_t)r.props_len,
                                      r.reconsume_times);
  if (!put.size) return rmqi_err(RMQ_ENOMEM, "out of memory re-putting a delayed message");
  put.rec = b->reput;
  put.q = rmqi_topic_queue(t, qid);
  put.tags_code = props_tags_code(r.props, (size_t)r.props_len);
  put.store_ts = now;
  return rmqi_store_put(b->st, &put, 1);
}

/* Delivers every delayed message that is due, level by level in queue order
** (a level's messages fall due in that order), and says when the next is. */
static int schedule_due(rmq_broker *b, int64_t now, int64_t *next)
{
  rmqi_topic *t = rmqi_topic_find(b->st, RMQI_SCHEDULE_TOPIC);
  if (!t) return RMQ_OK;
  if (pthread_mutex_trylock(&b->sched_lock) != 0) return RMQ_OK; /* another thread runs it */
  int rc = RMQ_OK;
  int n = rmqi_store_delay_levels(b->st);
  for (int l = 1; l <= n && l <= rmqi_topic_nqueues(t) && !rc; l++) {
    rmqi_queue *q = rmqi_topic_queue(t, l - 1);
    if (!q) continue;
    int64_t off = b->delay_off[l], min = rmqi_queue_min_offset(q);
    if (off < min) off = min;
    int64_t delay = rmqi_store_delay_ms(b->st, l);
    int waiting = 0;
    uint8_t ub[64 * RMQI_CQ_UNIT];
    while (!waiting && !rc) {
      int k = rmqi_queue_read_units(q, off, ub, 64);
      if (k <= 0) break;
      const uint8_t *u = ub;
      for (int i = 0; i < k; i++, u += RMQI_CQ_UNIT) {
        int64_t due = (int64_t)rmqi_get64(u + 12);
        if (due > now + delay) due = now; /* stored under a clock since turned back */
        if (due > now) {
          if (due - now < *next) *next = due - now;
          waiting = 1;
          break;
        }
        if ((int64_t)rmqi_get64(u) < rmqi_store_min_phys(b->st)) {
          rmqi_log(&b->env, RMQ_LOG_WARN, "delay level %d offset %" PRId64 ": deleted by retention before its "
                   "delivery time; skipped", l, off);
          off++;
          continue;
        }
        rc = reput(b, (int64_t)rmqi_get64(u), (int32_t)rmqi_get32(u + 8), now);
        if (rc == RMQ_ECORRUPT) {
          rmqi_log(&b->env, RMQ_LOG_ERROR, "delay level %d offset %" PRId64 ": %s; skipped", l, off, rmq_errmsg());
          rc = RMQ_OK;
        }
        if (rc) break; /* retried next time */
        off++;
      }
    }
    if (off != b->delay_off[l]) {
      b->delay_off[l] = off;
      atomic_store(&b->delay_dirty, 1);
    }
  }
  pthread_mutex_unlock(&b->sched_lock);
  return rc;
}

/* ======================================================================= */
/* Delivered messages                                                      */
/* ======================================================================= */

/* Two uppercase hex digits per byte value, built by the compiler. */
#define HEXD(n) ((n) < 10 ? '0' + (n) : 'A' - 10 + (n))
#define HEXB(b) {HEXD((b) >> 4), HEXD((b) & 15)}
#define HEX4(b) HEXB(b), HEXB((b) + 1), HEXB((b) + 2), HEXB((b) + 3)
#define HEX16(b) HEX4(b), HEX4((b) + 4), HEX4((b) + 8), HEX4((b) + 12)
#define HEX64(b) HEX16(b), HEX16((b) + 16), HEX16((b) + 32), HEX16((b) + 48)
static const char k_hex2[256][2] = {HEX64(0), HEX64(64), HEX64(128), HEX64(192)};

/* Ids are built on every send and delivery: 16 bytes at once with SSE2
** (nibbles interleaved high first, then '0' plus 7 more where over 9). */
#ifdef __SSE2__
static inline void hex16(char *out, __m128i v)
{
  __m128i lo4 = _mm_set1_epi8(0x0F);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), lo4), lo = _mm_and_si128(v, lo4);
  __m128i a = _mm_unpacklo_epi8(hi, lo), b = _mm_unpackhi_epi8(hi, lo);
  __m128i nine = _mm_set1_epi8(9), zero = _mm_set1_epi8('0'), seven = _mm_set1_epi8(7);
  a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), seven));
  b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), seven));
  _mm_storeu_si128((__m128i *)out, a);
  _mm_storeu_si128((__m128i *)(out + 16), b);
}
#endif

static void hex_id(char *out, const uint8_t *bytes, int n)
{
  int i = 0;
#ifdef __SSE2__
  for (; i + 16 <= n; i += 16) hex16(out + 2 * i, _mm_loadu_si128((const __m128i *)(bytes + i)));
#endif
  for (; i < n; i++) memcpy(out + 2 * i, k_hex2[bytes[i]], 2);
  out[2 * n] = 0;
}

/* offsetMsgId: store host address + port + commitlog offset. */
static void offset_msg_id(char *out, const uint8_t *host, int host_len, int32_t port, int64_t phys)
{
  uint8_t b[28];
  memcpy(b, host, (size_t)host_len);
  rmqi_put32(b + host_len, (uint32_t)port);
  rmqi_put64(b + host_len + 4, (uint64_t)phys);
  hex_id(out, b, host_len + 12);
}

/* Bit i set where p[i] is the 0x02 separator, for i < min(64, end - p).
** Reads only inside [p, end): a record's properties end it, and the
** mapping may end right after. */
static uint64_t sep_mask64(const char *p, const char *end)
{
  uint64_t m = 0;
  int i = 0, n = end - p < 64 ? (int)(end - p) : 64;
#ifdef __SSE2__
  const __m128i two = _mm_set1_epi8(2);
  for (; i + 16 <= n; i += 16)
    m |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), two)) << i;
  if (i < n && n >= 16) {
    /* The tail: the last 16 bytes, overlapping what was seen. */
    uint32_t t = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + n - 16)), two));
    return m | (uint64_t)(t >> (16 - (n - i))) << i;
  }
#endif
  for (; i < n; i++) m |= (uint64_t)(p[i] == 2) << i;
  return m;
}

/* One segment of the properties (RocketMQ's parsing rules: see
** rmqi_props_find) checked for the three names a view needs. */
static inline void props_seg(const char *p, size_t slen, rmq_message_ext *e, const char **uniq, size_t *uniq_len)
{
  if (slen > 5 && !memcmp(p, "TAGS\1", 5)) { e->tags = p + 5; e->tags_len = (int32_t)(slen - 5); }
  else if (slen > 5 && !memcmp(p, "KEYS\1", 5)) { e->keys = p + 5; e->keys_len = (int32_t)(slen - 5); }
  else if (slen > 9 && !memcmp(p, "UNIQ_KEY\1", 9)) { *uniq = p + 9; *uniq_len = slen - 9; }
}

/* One pass over the raw properties, 64 bytes of separators at a time. */
static void props_scan(const char *p, size_t len, rmq_message_ext *e, const char **uniq, size_t *uniq_len)
{
  const char *end = p + len, *seg = p;
  *uniq = NULL;
  for (const char *blk = p; blk < end; blk += 64) {
    for (uint64_t m = sep_mask64(blk, end); m; m &= m - 1) {
      const char *sep = blk + __builtin_ctzll(m);
      props_seg(seg, (size_t)(sep - seg), e, uniq, uniq_len);
      seg = sep + 1;
    }
  }
  if (seg < end) props_seg(seg, (size_t)(end - seg), e, uniq, uniq_len);
}

/* A record that did not decode: the unit's fault (it points nowhere, or
** its size is not the record's), or the CommitLog's (a rebuild cannot mend
** that)? */
static int unit_is_bad(const uint8_t *rec, int32_t size)
{
  return !rec || size < 91 || (int32_t)rmqi_get32(rec) != size;
}

/* A damaged ConsumeQueue unit can point at another queue's record: that
** record is not delivered in its place. */
static int unit_is_record(rmq_broker *b, const rmq_message_ext *e, int queue_id, int64_t offset)
{
  if (e->queue_id == queue_id && e->queue_offset == offset) return 1;
  rmqi_log(&b->env, RMQ_LOG_ERROR, "%s/%d offset %" PRId64 ": its unit points at the record of queue %d offset %"
           PRId64 " (damaged consume queue); skipped", e->topic, queue_id, offset, e->queue_id, e->queue_offset);
  return 0;
}

/* Fills a view from the record at rec. */
static int ext_fill(rmq_message_ext *e, const uint8_t *rec, int32_t size, const char *topic, const char *broker_name)
{
  rmqi_record r;
  if (rmqi_record_decode(rec, (size_t)size, 0, &r) != RMQ_OK) return RMQ_ECORRUPT;
  e->topic = topic;
  e->broker_name = broker_name;
  e->queue_id = r.queue_id;
  e->store_size = (int32_t)r.total;
  e->queue_offset = r.queue_offset;
  e->sys_flag = r.sys_flag;
  e->flag = r.flag;
  e->born_timestamp = r.born_ts;
  e->store_timestamp = r.store_ts;
  /* Fixed-size copies: a call to memcpy per host costs more than the copy. */
  if (r.born_host_len == 4) memcpy(e->born_host, r.born_host, 4);
  else memcpy(e->born_host, r.born_host, 16);
  e->born_host_len = r.born_host_len;
  e->born_port = (int32_t)rmqi_get32(r.born_host + r.born_host_len);
  if (r.store_host_len == 4) memcpy(e->store_host, r.store_host, 4);
  else memcpy(e->store_host, r.store_host, 16);
  e->store_host_len = r.store_host_len;
  e->store_port = (int32_t)rmqi_get32(r.store_host + r.store_host_len);
  e->reconsume_times = r.reconsume_times;
  e->prepared_transaction_offset = r.prepared_tx_offset;
  e->commit_log_offset = r.phys_offset;
  e->body_crc = r.body_crc;
  e->body = r.body;
  e->body_len = r.body_len;
  e->properties = r.props;
  e->properties_len = r.props_len;
  const char *v;
  size_t vl = 0;
  e->tags = NULL; e->tags_len = 0;
  e->keys = NULL; e->keys_len = 0;
  props_scan(r.props, (size_t)r.props_len, e, &v, &vl);
#ifdef __SSE2__
  if (r.store_host_len == 4) {
    /* The id's 16 bytes are in the record already, big-endian: the store
    ** host and port, then the physical offset at byte 28. */
    uint64_t hp, ph;
    memcpy(&hp, r.store_host, 8);
    memcpy(&ph, rec + 28, 8);
    hex16(e->offset_msg_id, _mm_set_epi64x((long long)ph, (long long)hp));
    e->offset_msg_id[32] = 0;
  } else
#endif
    offset_msg_id(e->offset_msg_id, r.store_host, r.store_host_len, e->store_port, r.phys_offset);
  if (v && vl < RMQ_MSG_ID_SIZE) {
    memcpy(e->msg_id, v, vl);
    e->msg_id[vl] = 0;
  } else {
    memcpy(e->msg_id, e->offset_msg_id, sizeof e->msg_id);
  }
  e->min_offset = e->max_offset = e->consume_start_time = 0;
  return RMQ_OK;
}

RMQ_API int rmq_message_ext_property(const rmq_message_ext *m, const char *name, const char **value, size_t *len)
{
  if (!m || !name || !value || !len) return rmqi_err(RMQ_EINVAL, "rmq_message_ext_property: NULL argument");
  if (rmqi_props_find(m->properties, (size_t)m->properties_len, name, strlen(name), value, len)) return RMQ_OK;
  return rmqi_err(RMQ_ENOTFOUND, "message has no property %s", name);
}

/* The owned copy keeps everything in one block after the struct. */
RMQ_API int rmq_message_ext_copy(const rmq_message_ext *m, rmq_message_ext **out)
{
  if (!m || !out) return rmqi_err(RMQ_EINVAL, "rmq_message_ext_copy: NULL argument");
  size_t tl = strlen(m->topic) + 1, bl = strlen(m->broker_name ? m->broker_name : "") + 1;
  size_t total = sizeof *m + (size_t)m->body_len + (size_t)m->properties_len + tl + bl + sizeof(size_t);
  uint8_t *blk = rmqi_malloc(total);
  if (!blk) return rmqi_err(RMQ_ENOMEM, "out of memory copying a message");
  memcpy(blk, &total, sizeof total);
  rmq_message_ext *c = (rmq_message_ext *)(void *)(blk + sizeof(size_t));
  *c = *m;
  uint8_t *p = (uint8_t *)(c + 1);
  memcpy(p, m->body, (size_t)m->body_len);
  c->body = p;
  p += m->body_len;
  memcpy(p, m->properties, (size_t)m->properties_len);
  c->properties = (const char *)p;
  if (m->tags) c->tags = (const char *)p + (m->tags - m->properties);
  if (m->keys) c->keys = (const char *)p + (m->keys - m->properties);
  p += m->properties_len;
  memcpy(p, m->topic, tl);
  c->topic = (const char *)p;
  p += tl;
  memcpy(p, m->broker_name ? m->broker_name : "", bl);
  c->broker_name = (const char *)p;
  *out = c;
  return RMQ_OK;
}

RMQ_API void rmq_message_ext_free(rmq_message_ext *m)
{
  if (!m) return;
  uint8_t *blk = (uint8_t *)m - sizeof(size_t);
  size_t total;
  memcpy(&total, blk, sizeof total);
  rmqi_free(blk, total);
}

typedef struct fmt {
  char *buf;
  size_t cap, len;
} fmt;

static void fmt_add(fmt *f, const char *s, ...) __attribute__((format(printf, 2, 3)));
static void fmt_add(fmt *f, const char *s, ...)
{
  va_list ap;
  va_start(ap, s);
  char *dst = f->len < f->cap ? f->buf + f->len : NULL;
  size_t room = f->len < f->cap ? f->cap - f->len : 0;
  int n = vsnprintf(dst, room, s, ap);
  va_end(ap);
  if (n > 0) f->len += (size_t)n;
}

static void fmt_host(fmt *f, const uint8_t *h, int len, int32_t port)
{
  if (len == 4) fmt_add(f, "/%u.%u.%u.%u:%d", h[0], h[1], h[2], h[3], port);
  else {
    fmt_add(f, "/");
    for (int i = 0; i < 16; i += 2) fmt_add(f, "%s%x", i ? ":" : "", (h[i] << 8) | h[i + 1]);
    fmt_add(f, ":%d", port);
  }
}

RMQ_API int rmq_message_ext_format(const rmq_message_ext *m, char *buf, size_t cap)
{
  if (!m || (!buf && cap)) return rmqi_err(RMQ_EINVAL, "rmq_message_ext_format: NULL argument");
  fmt f = {buf, cap, 0};
  if (cap) buf[0] = 0;
  fmt_add(&f, "MessageExt [brokerName=%s, queueId=%d, storeSize=%d, queueOffset=%" PRId64 ", sysFlag=%d, bornTimestamp=%" PRId64 ", bornHost=",
          m->broker_name ? m->broker_name : "", m->queue_id, m->store_size, m->queue_offset, m->sys_flag, m->born_timestamp);
  fmt_host(&f, m->born_host, m->born_host_len, m->born_port);
  fmt_add(&f, ", storeTimestamp=%" PRId64 ", storeHost=", m->store_timestamp);
  fmt_host(&f, m->store_host, m->store_host_len, m->store_port);
  fmt_add(&f, ", msgId=%s, commitLogOffset=%" PRId64 ", bodyCRC=%d, reconsumeTimes=%d, preparedTransactionOffset=%" PRId64
          ", toString()=Message{topic='%s', flag=%d, properties={",
          m->offset_msg_id, m->commit_log_offset, m->body_crc, m->reconsume_times, m->prepared_transaction_offset,
          m->topic, m->flag);
  fmt_add(&f, "MIN_OFFSET=%" PRId64 ", MAX_OFFSET=%" PRId64, m->min_offset, m->max_offset);
  if (m->consume_start_time) fmt_add(&f, ", CONSUME_START_TIME=%" PRId64, m->consume_start_time);
  const char *p = m->properties, *end = m->properties + m->properties_len;
  while (p < end) {
    const char *e = memchr(p, 2, (size_t)(end - p));
    if (!e) e = end;
    const char *sep = memchr(p, 1, (size_t)(e - p));
    if (sep && sep > p && sep < e - 1)
      fmt_add(&f, ", %.*s=%.*s", (int)(sep - p), p, (int)(e - sep - 1), sep + 1);
    p = e + 1;
  }
  fmt_add(&f, "}, body=[");
  const int8_t *bd = m->body;
  for (int i = 0; i < m->body_len; i++) fmt_add(&f, "%s%d", i ? ", " : "", bd[i]);
  fmt_add(&f, "], transactionId='null'}]");
  return (int)f.len;
}

RMQ_API int rmq_send_result_format(const rmq_send_result *r, char *buf, size_t cap)
{
  if (!r || (!buf && cap)) return rmqi_err(RMQ_EINVAL, "rmq_send_result_format: NULL argument");
  static const char *st[] = {"SEND_OK", "FLUSH_DISK_TIMEOUT", "FLUSH_SLAVE_TIMEOUT", "SLAVE_NOT_AVAILABLE"};
  fmt f = {buf, cap, 0};
  if (cap) buf[0] = 0;
  fmt_add(&f, "SendResult [sendStatus=%s, msgId=%s, offsetMsgId=%s, messageQueue=MessageQueue [topic=%s, brokerName=%s, queueId=%d], queueOffset=%" PRId64 "]",
          st[r->send_status & 3], r->msg_id, r->offset_msg_id, r->message_queue.topic, r->message_queue.broker_name,
          r->message_queue.queue_id, r->queue_offset);
  return (int)f.len;
}

/* ======================================================================= */
/* Producer                                                                */
/* ======================================================================= */

/* A producer may be shared by any number of threads, as RocketMQ's
** DefaultMQProducer is. A send writes nothing of the producer's but two
** atomics (the round-robin counter and the topic cache); everything else it
** writes is in the sending thread's scratch (below). So sends take no lock
** of the producer's, only the store's (as sends through separate producers
** do), and 4 threads on one producer go as fast as 4 with a producer each. */
struct rmq_producer {
  uint32_t magic;            /* MAGIC_PRODUCER while alive */
  rmq_broker *b;
  char *group;
  rmq_producer_options o;
  uint8_t born_ip[4];
  int32_t born_port;
  /* Cache: the topic of a previous send, whose name was checked and looked
  ** up already. A send that looks up another topic stores it (release);
  ** readers load it (acquire). Topics live until the broker closes, which
  ** outlives p, so a loaded pointer stays valid. */
  _Atomic(rmqi_topic *) last_topic;
  /* Round-robin counter, one relaxed fetch_add per send (per batch): one
  ** thread's sends take the queues in turn exactly as with a private
  ** counter. Every send writes it, so it sits alone on its cache line,
  ** away from the fields above that every send reads. */
  char pad_rr[64];
  atomic_uint rr;
  char pad_async[64];
  /* SYNC_FLUSH async sends queued and not yet completed; destroy waits for
  ** 0 (async_lock and async_cond for the wait). */
  atomic_int pending_async;
  /* Transactions (tx_lock): the listener, the broker's list of producers
  ** with one, and the check calls running through it (destroy waits). */
  rmq_transaction_listener txl;
  int tx_listed;
  struct rmq_producer *tx_next;
  atomic_int tx_checking;
};

static inline int producer_ok(const rmq_producer *p) { return p && p->magic == MAGIC_PRODUCER; }
static int bad_producer(const rmq_producer *p, const char *fn) { return bad_handle(p, fn, "producer", "destroyed"); }

/* ---- per-thread send scratch -------------------------------------------- */

/* What a send writes besides the store and the two atomics above: the
** record being encoded, a batch's records and ids, a delayed message's
** properties, the queue list handed to a selector. Each thread has its own,
** kept between sends, so a loop of sends allocates nothing whichever
** producers it uses.
**
** Reentrancy: a user callback run inside a send (a queue selector; an
** ASYNC_FLUSH send callback runs after the scratch is given back) may send
** again on the same thread. A level in use is `busy`, and such a send takes
** the next level (`nested`, made on first need and kept), so the outer
** send's buffers and the queue list its selector is reading stay intact.
**
** Lifetime: a thread's scratch is freed at its exit (a pthread key's
** destructor), and every thread's as soon as the process's last producer
** is destroyed, so no rmq memory outlives the last rmq object (the allocator
** may then be replaced). The send path needs no lock for that: while no
** producer is alive no send runs, and a thread learns that its scratch was
** freed from scratch_gen. */
typedef struct scratch {
  struct scratch *next, *prev;   /* scratch_lock: scratch_all's links (first levels only) */
  pthread_t owner;
  int busy;                      /* owner thread only */
  struct scratch *nested;        /* the level a send from a callback inside this one uses */
  uint8_t *buf;                  /* the record, or a batch's records, being encoded */
  size_t buf_cap;
  rmqi_put *puts;                /* a batch's records */
  size_t puts_cap;
  char (*ids)[RMQ_MSG_ID_SIZE];  /* a batch's UNIQ_KEYs */
  size_t ids_cap;
  prop *xprops;                  /* a rewritten message's properties (send_transform) */
  int xcap, xn;
  char xval[4][32];              /* values of the properties send_transform adds */
  rmq_message_queue *sel_mqs;    /* the queues handed to a selector: sel_n of one topic */
  int sel_n, sel_cap;
} scratch;

/* scratch_lock: scratch_all and scratch_producers. Taken when a thread makes
** its scratch, at thread exit, and by producer create and destroy; never on
** the send path once a thread has its scratch. A leaf: nothing else is
** locked under it. */
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static scratch *scratch_all;
static long scratch_producers;  /* producers alive in the process */
/* Bumped (release, under scratch_lock) when the last producer's destroy
** frees every scratch; a thread whose tls_scratch_gen differs (acquire)
** drops its freed tls_scratch and makes a new one. */
static atomic_uint scratch_gen;
static _Thread_local scratch *tls_scratch;
static _Thread_local unsigned tls_scratch_gen;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static int scratch_key_err;

/* Frees s and its nested levels. */
static void scratch_free(scratch *s)
{
  while (s) {
    scratch *n = s->nested;
    rmqi_free(s->buf, s->buf_cap);
    rmqi_free(s->puts, s->puts_cap * sizeof *s->puts);
    rmqi_free(s->ids, s->ids_cap * sizeof *s->ids);
    rmqi_free(s->xprops, (size_t)s->xcap * sizeof *s->xprops);
    rmqi_free(s->sel_mqs, (size_t)s->sel_cap * sizeof *s->sel_mqs);
    rmqi_free(s, sizeof *s);
    s = n;
  }
}

/* The key's destructor, at thread exit: frees the thread's scratch unless
** the last producer's destroy did already (v is then stale, and no longer
** listed as this thread's: its address may be another thread's by now). A
** send from a later destructor of the thread's makes a new one, which the
** key's next destructor round frees. */
static void scratch_thread_exit(void *v)
{
  tls_scratch = NULL;
  pthread_mutex_lock(&scratch_lock);
  scratch *s = scratch_all;
  while (s && !(s == v && pthread_equal(s->owner, pthread_self()))) s = s->next;
  if (s) {
    if (s->prev) s->prev->next = s->next;
    else scratch_all = s->next;
    if (s->next) s->next->prev = s->prev;
  }
  pthread_mutex_unlock(&scratch_lock);
  scratch_free(s);
}

static void scratch_key_init(void) { scratch_key_err = pthread_key_create(&scratch_key, scratch_thread_exit); }

/* Makes, registers and returns the calling thread's scratch. */
static scratch *scratch_new(void)
{
  pthread_once(&scratch_once, scratch_key_init);
  if (scratch_key_err) {
    rmqi_err(RMQ_ENOMEM, "cannot create the thread key of the send buffers: %s", strerror(scratch_key_err));
    return NULL;
  }
  scratch *s = rmqi_calloc(1, sizeof *s);
  if (!s) {
    rmqi_err(RMQ_ENOMEM, "out of memory for this thread's send buffers");
    return NULL;
  }
  s->owner = pthread_self();
  if (pthread_setspecific(scratch_key, s) != 0) {
    rmqi_free(s, sizeof *s);
    rmqi_err(RMQ_ENOMEM, "out of memory for this thread's send buffers");
    return NULL;
  }
  pthread_mutex_lock(&scratch_lock);
  s->next = scratch_all;
  if (scratch_all) scratch_all->prev = s;
  scratch_all = s;
  tls_scratch_gen = atomic_load_explicit(&scratch_gen, memory_order_relaxed);
  pthread_mutex_unlock(&scratch_lock);
  tls_scratch = s;
  return s;
}

/* The calling thread's first free scratch level, marked busy until
** scratch_give; NULL (RMQ_ENOMEM, message set) when it cannot be made. */
static scratch *scratch_take(void)
{
  scratch *s = tls_scratch;
  if (!s || tls_scratch_gen != atomic_load_explicit(&scratch_gen, memory_order_acquire)) {
    if (!(s = scratch_new())) return NULL;
  }
  while (s->busy) {
    if (!s->nested && !(s->nested = rmqi_calloc(1, sizeof *s))) {
      rmqi_err(RMQ_ENOMEM, "out of memory for the send buffers of a send from a callback");
      return NULL;
    }
    s = s->nested;
  }
  s->busy = 1;
  return s;
}

static void scratch_give(scratch *s) { s->busy = 0; }

static void scratch_producer_added(void)
{
  pthread_mutex_lock(&scratch_lock);
  scratch_producers++;
  pthread_mutex_unlock(&scratch_lock);
}

/* A producer is gone; after the last one no send can be running (each runs
** on a live producer), so every thread's scratch is freed now. */
static void scratch_producer_removed(void)
{
  scratch *all = NULL;
  pthread_mutex_lock(&scratch_lock);
  if (--scratch_producers == 0) {
    all = scratch_all;
    scratch_all = NULL;
    atomic_fetch_add_explicit(&scratch_gen, 1, memory_order_release);
  }
  pthread_mutex_unlock(&scratch_lock);
  while (all) {
    scratch *n = all->next;
    scratch_free(all);
    all = n;
  }
}

RMQ_API void rmq_producer_options_init(rmq_producer_options *o)
{
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->send_msg_timeout = 3000;
  o->default_topic_queue_nums = 4;
  o->max_message_size = 4194304;
  o->born_host = "127.0.0.1";
}

RMQ_API int rmq_producer_create(rmq_broker *b, const char *group, const rmq_producer_options *opts, rmq_producer **out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_producer_create");
  if (b->o.read_only) return ro_refused(b, "rmq_producer_create");
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_producer_create: out is NULL");
  if (!group) group = "DEFAULT_PRODUCER";
  int rc = check_group(group);
  if (rc) return rc;
  rmq_producer_options o;
  if (opts) o = *opts;
  else rmq_producer_options_init(&o);
  uint8_t ip[4] = {127, 0, 0, 1};
  if (o.born_host && !parse_ipv4(o.born_host, ip))
    return rmqi_err(RMQ_EINVAL, "born_host '%s' is not a dotted IPv4 address", o.born_host);
  if (o.send_msg_timeout < 1 || o.max_message_size < 1 || o.default_topic_queue_nums < 1 ||
      o.default_topic_queue_nums > RMQ_MAX_QUEUE_NUMS || o.born_port < 0 || o.born_port > 65535)
    return rmqi_err(RMQ_EINVAL, "producer options out of range");
  rmq_producer *p = rmqi_calloc(1, sizeof *p);
  if (!p) return rmqi_err(RMQ_ENOMEM, "out of memory creating a producer");
  p->group = rmqi_strdup(group);
  if (!p->group) { rmqi_free(p, sizeof *p); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  p->b = b;
  p->o = o;
  p->o.born_host = NULL;
  memcpy(p->born_ip, ip, 4);
  p->born_port = o.born_port ? o.born_port : (int32_t)(10000 + getpid() % 50000);
  p->magic = MAGIC_PRODUCER;
  scratch_producer_added();
  atomic_fetch_add(&b->nhandles, 1);
  *out = p;
  return RMQ_OK;
}

RMQ_API void rmq_producer_destroy(rmq_producer *p)
{
  if (!producer_ok(p)) return;
  rmq_broker *b = p->b;
  async_drain(b);
  pthread_mutex_lock(&b->async_lock);
  while (atomic_load(&p->pending_async) > 0) {
    pthread_mutex_unlock(&b->async_lock);
    async_drain(b);
    pthread_mutex_lock(&b->async_lock);
    if (atomic_load(&p->pending_async) > 0) {
      struct timespec dl;
      deadline_ms(&dl, 10);
      pthread_cond_timedwait(&b->async_cond, &b->async_lock, &dl);
    }
  }
  pthread_mutex_unlock(&b->async_lock);
  tx_producer_gone(p);
  p->magic = MAGIC_DEAD;
  rmqi_strfree(p->group);
  rmqi_free(p, sizeof *p);
  /* Before the broker may close: the last producer frees the scratches. */
  scratch_producer_removed();
  atomic_fetch_sub(&b->nhandles, 1);
}

/* MessageClientIDSetter: IPv4 | pid low 16 bits | a per-process int | ms
** since the start of this month (local time) | counter low 16 bits. */
static pthread_once_t uniq_once = PTHREAD_ONCE_INIT;
static uint8_t uniq_fixed[10];
static _Atomic int64_t uniq_month_start, uniq_next_month;
/* The counter on a line of its own (every send reads the lines above), and
** taken UNIQ_BLOCK values at a time per thread, a block used only in the
** millisecond it was taken: ids stay unique while fewer than 65,536 are
** handed out in one millisecond, as with RocketMQ's single counter. */
#define UNIQ_BLOCK 64
static _Alignas(64) atomic_uint uniq_counter;
static _Thread_local unsigned uniq_next, uniq_left;
static _Thread_local int64_t uniq_ms;
static pthread_mutex_t uniq_lock = PTHREAD_MUTEX_INITIALIZER;

static void uniq_init(void)
{
  uniq_fixed[0] = 127; uniq_fixed[1] = 0; uniq_fixed[2] = 0; uniq_fixed[3] = 1;
  rmqi_put16(uniq_fixed + 4, (uint16_t)getpid());
  uint32_t r = (uint32_t)rmqi_mono_us() ^ ((uint32_t)getpid() << 16) ^ (uint32_t)(uintptr_t)&uniq_fixed;
  rmqi_put32(uniq_fixed + 6, r);
}

static void month_bounds(int64_t now_ms)
{
  time_t t = (time_t)(now_ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  tm.tm_mday = 1; tm.tm_hour = 0; tm.tm_min = 0; tm.tm_sec = 0; tm.tm_isdst = -1;
  int64_t start = (int64_t)mktime(&tm) * 1000;
  tm.tm_mon += 1;
  tm.tm_isdst = -1;
  int64_t next = (int64_t)mktime(&tm) * 1000;
  atomic_store(&uniq_month_start, start);
  atomic_store(&uniq_next_month, next);
}

static void uniq_key(int64_t now, char out[RMQ_MSG_ID_SIZE])
{
  pthread_once(&uniq_once, uniq_init);
  if (now >= atomic_load(&uniq_next_month) || now < atomic_load(&uniq_month_start)) {
    pthread_mutex_lock(&uniq_lock);
    if (now >= atomic_load(&uniq_next_month) || now < atomic_load(&uniq_month_start)) month_bounds(now);
    pthread_mutex_unlock(&uniq_lock);
  }
  uint8_t id[16];
  memcpy(id, uniq_fixed, 10);
  rmqi_put32(id + 10, (uint32_t)(now - atomic_load(&uniq_month_start)));
  if (!uniq_left || now != uniq_ms) {
    uniq_next = atomic_fetch_add_explicit(&uniq_counter, UNIQ_BLOCK, memory_order_relaxed);
    uniq_left = UNIQ_BLOCK;
    uniq_ms = now;
  }
  uniq_left--;
  rmqi_put16(id + 14, (uint16_t)uniq_next++);
  hex_id(out, id, 16);
}

/* Validates m for a send and returns its topic. */
static int check_msg(rmq_producer *p, const rmq_msg *m)
{
  if (!m) return rmqi_err(RMQ_ENOBODY, "the message is null");
  /* The previous send's topic was validated already. */
  rmqi_topic *last = atomic_load_explicit(&p->last_topic, memory_order_acquire);
  if (!(m->topic && last && !strcmp(m->topic, rmqi_topic_name(last)))) {
    int rc = check_topic(m->topic);
    if (rc) return rc;
    if (in_list(k_send_forbidden, m->topic)) return rmqi_err(RMQ_EFORBIDDEN, "Sending message to topic[%s] is forbidden.", m->topic);
  }
  if (m->body_len == 0) return rmqi_err(RMQ_ENOBODY, "the message body length is zero");
  int max = p->o.max_message_size < p->b->o.max_message_size ? p->o.max_message_size : p->b->o.max_message_size;
  if (m->body_len > (size_t)max)
    return rmqi_err(RMQ_EMSGSIZE, "the message body size over max value, MAX: %d (body is %zu bytes)", max, m->body_len);
  return RMQ_OK;
}

static int producer_topic(rmq_producer *p, const char *name, rmqi_topic **out)
{
  rmqi_topic *t = atomic_load_explicit(&p->last_topic, memory_order_acquire);
  if (t && !strcmp(rmqi_topic_name(t), name) && !rmqi_topic_deleted(t)) { *out = t; return RMQ_OK; }
  t = rmqi_topic_find(p->b->st, name);
  if (!t) {
    if (!p->b->o.auto_create_topic_enable)
      return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist and auto_create_topic_enable is off", name);
    if (is_system_topic(name)) return rmqi_err(RMQ_EFORBIDDEN, "The topic[%s] is conflict with system topic.", name);
    int nq = p->o.default_topic_queue_nums < p->b->o.default_topic_queue_nums ? p->o.default_topic_queue_nums
                                                                              : p->b->o.default_topic_queue_nums;
    int rc = rmqi_topic_create(p->b->st, name, nq, &t);
    if (rc) return rc;
  }
  /* Only a damaged store's recovery could leave one with no queues. */
  if (rmqi_topic_nqueues(t) < 1) return rmqi_err(RMQ_ENOTOPIC, "topic %s has no queues", name);
  atomic_store_explicit(&p->last_topic, t, memory_order_release);
  *out = t;
  return RMQ_OK;
}

/* The next queue of n in p's round robin. */
static int next_queue(rmq_producer *p, int n)
{
  return (int)(atomic_fetch_add_explicit(&p->rr, 1, memory_order_relaxed) % (uint32_t)n);
}

/* Encodes the v1 record (v2 for topics over 127 bytes) into s->buf. */
static int encode_at(rmq_producer *p, scratch *s, const rmq_msg *m, int qid, const char *uniq, int64_t now, size_t at,
                     uint32_t *size);
static int encode(rmq_producer *p, scratch *s, const rmq_msg *m, int qid, const char *uniq, int64_t now, uint32_t *size)
{
  return encode_at(p, s, m, qid, uniq, now, 0, size);
}

/* Encodes the record at s->buf + at, growing the buffer. */
static int encode_at(rmq_producer *p, scratch *s, const rmq_msg *m, int qid, const char *uniq, int64_t now, size_t at,
                     uint32_t *size)
{
  size_t tl = strlen(m->topic);
  int v2 = tl > 127;
  size_t plen = 0;
  for (int i = 0; i < m->nprops; i++) plen += m->props[i].nlen + m->props[i].vlen + 2;
  if (uniq) plen += 8 + 32 + 2;
  if (plen > RMQ_PROPERTIES_MAX_LEN)
    return rmqi_err(RMQ_EPROPSIZE, "message properties take %zu bytes, over the limit of %d", plen, RMQ_PROPERTIES_MAX_LEN);
  size_t total = 91 + (size_t)v2 + m->body_len + tl + plen;
  if (at + total > s->buf_cap) {
    size_t ncap = at + total;
    if (at && ncap < 2 * s->buf_cap) ncap = 2 * s->buf_cap; /* a batch grows geometrically */
    uint8_t *nb = rmqi_realloc(s->buf, s->buf_cap, ncap);
    if (!nb) return rmqi_err(RMQ_ENOMEM, "out of memory encoding a %zu-byte record", total);
    s->buf = nb;
    s->buf_cap = ncap;
  }
  uint8_t *b = s->buf + at;
  rmqi_put32(b + 0, (uint32_t)total);
  rmqi_put32(b + 4, v2 ? RMQI_MAGIC_V2 : RMQI_MAGIC_V1);
  rmqi_put32(b + 8, rmqi_crc32(m->body, m->body_len) & 0x7FFFFFFF);
  rmqi_put32(b + 12, (uint32_t)qid);
  rmqi_put32(b + 16, (uint32_t)m->flag);
  rmqi_put64(b + 20, 0);                     /* QUEUEOFFSET: store */
  rmqi_put64(b + 28, 0);                     /* PHYSICALOFFSET: store */
  rmqi_put32(b + 36, 0);                     /* SYSFLAG */
  rmqi_put64(b + 40, (uint64_t)now);
  memcpy(b + 48, p->born_ip, 4);
  rmqi_put32(b + 52, (uint32_t)p->born_port);
  rmqi_put64(b + 56, 0);                     /* STORETIMESTAMP: store */
  memcpy(b + 64, p->b->store_ip, 4);
  rmqi_put32(b + 68, (uint32_t)p->b->o.store_port);
  rmqi_put32(b + 72, 0);                     /* RECONSUMETIMES */
  rmqi_put64(b + 76, 0);                     /* PREPARED_TX_OFFSET */
  rmqi_put32(b + 84, (uint32_t)m->body_len);
  uint8_t *w = b + 88;
  memcpy(w, m->body, m->body_len);
  w += m->body_len;
  if (v2) { rmqi_put16(w, (uint16_t)tl); w += 2; }
  else *w++ = (uint8_t)tl;
  memcpy(w, m->topic, tl);
  w += tl;
  rmqi_put16(w, (uint16_t)plen);
  w += 2;
  for (int i = 0; i < m->nprops; i++) {
    size_t nl = m->props[i].nlen, vl = m->props[i].vlen;
    memcpy(w, m->props[i].name, nl); w += nl; *w++ = 1;
    memcpy(w, m->props[i].value, vl); w += vl; *w++ = 2;
  }
  if (uniq) {
    memcpy(w, "UNIQ_KEY", 8); w += 8; *w++ = 1;
    memcpy(w, uniq, 32); w += 32; *w++ = 2;
  }
  *size = (uint32_t)total;
  return RMQ_OK;
}

/* Send modes; SEND_HALF is a sync send of a transaction's half message. */
enum { SEND_ASYNC, SEND_ONEWAY, SEND_SYNC, SEND_HALF };
#define SEND_SYNC_ANY SEND_SYNC

/* Copies src into dst[cap], cut to fit and NUL-terminated: snprintf's
** result without its format parsing, which showed on the send path. */
static void copy_str(char *dst, size_t cap, const char *src)
{
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

static void result_fill(rmq_producer *p, rmqi_topic *t, int qid, const char *uniq, const rmqi_put *put, rmq_send_result *r)
{
  r->send_status = RMQ_SEND_OK;
  memcpy(r->msg_id, uniq, RMQ_MSG_ID_SIZE);
  offset_msg_id(r->offset_msg_id, p->b->store_ip, 4, p->b->o.store_port, put->phys_offset);
  copy_str(r->message_queue.topic, sizeof r->message_queue.topic, rmqi_topic_name(t));
  copy_str(r->message_queue.broker_name, sizeof r->message_queue.broker_name, p->b->broker_name);
  r->message_queue.queue_id = qid;
  r->queue_offset = put->queue_offset;
  r->commit_log_offset = put->phys_offset;
  r->store_size = (int32_t)put->size;
  r->store_timestamp = put->store_ts;
}

static int async_enqueue(rmq_broker *b, rmq_producer *p, int64_t end, rmq_send_callback cb, void *ctx, const rmq_send_result *r)
{
  pthread_mutex_lock(&b->async_lock);
  if (b->acount == b->acap) {
    size_t ncap = b->acap ? b->acap * 2 : 256;
    async_ent *n = rmqi_malloc(ncap * sizeof *n);
    if (!n) { pthread_mutex_unlock(&b->async_lock); return rmqi_err(RMQ_ENOMEM, "out of memory queueing an async send"); }
    for (size_t i = 0; i < b->acount; i++) n[i] = b->aring[(b->ahead + i) % b->acap];
    rmqi_free(b->aring, b->acap * sizeof *n);
    b->aring = n;
    b->acap = ncap;
    b->ahead = 0;
  }
  async_ent *e = &b->aring[(b->ahead + b->acount) % b->acap];
  e->end = end;
  e->cb = cb;
  e->ctx = ctx;
  e->p = p;
  e->r = *r;
  b->acount++;
  atomic_fetch_add(&p->pending_async, 1);
  pthread_mutex_unlock(&b->async_lock);
  sleeper_kick(&b->svc, INT64_MIN); /* its flush completes the send */
  return RMQ_OK;
}

/* Flushes and completes the async sends the flush covered, in order. */
static int async_drain(rmq_broker *b)
{
  pthread_mutex_lock(&b->async_lock);
  size_t n = b->acount;
  pthread_mutex_unlock(&b->async_lock);
  if (!n) return RMQ_OK;
  int rc = rmqi_store_flush_commitlog(b->st);
  int64_t flushed = rmqi_store_flushed(b->st);
  for (;;) {
    pthread_mutex_lock(&b->async_lock);
    if (!b->acount || (rc == RMQ_OK && b->aring[b->ahead].end > flushed)) {
      pthread_cond_broadcast(&b->async_cond);
      pthread_mutex_unlock(&b->async_lock);
      break;
    }
    async_ent e = b->aring[b->ahead];
    b->ahead = (b->ahead + 1) % b->acap;
    b->acount--;
    pthread_mutex_unlock(&b->async_lock);
    if (e.cb) {
      if (rc == RMQ_OK) e.cb(e.ctx, RMQ_OK, &e.r);
      else e.cb(e.ctx, rc, NULL);
    }
    atomic_fetch_sub(&e.p->pending_async, 1);
  }
  return rc;
}

/* An array, not a literal: send_one knows a timed message by this address. */
static const char TIMER_TOPIC[] = "rmq_sys_wheel_timer";
#define TX_HALF_TOPIC "RMQ_SYS_TRANS_HALF_TOPIC"

/* Java's Long.parseLong: an optional sign and decimal digits, nothing else. */
static int parse_long(const char *s, size_t n, int64_t *out)
{
  size_t i = n && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == n || n > 20) return 0;
  uint64_t v = 0, lim = s[0] == '-' ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (d > 9 || v > (lim - d) / 10) return 0; /* not a digit, or out of range */
    v = v * 10 + d;
  }
  *out = s[0] == '-' ? (int64_t)(0 - v) : (int64_t)v;
  return 1;
}

/* A sender's note of a timed message's due time (see tm_ring). */
static void tm_ring_put(rmq_broker *b, int64_t qoff, int64_t due)
{
  tm_slot *r = atomic_load_explicit(&b->tm_ring, memory_order_acquire);
  if (!r) {
    tm_slot *n = rmqi_calloc(TM_RING, sizeof *n);
    if (!n) return; /* the delivery thread reads the record instead */
    tm_slot *expect = NULL;
    if (atomic_compare_exchange_strong(&b->tm_ring, &expect, n)) r = n;
    else { rmqi_free(n, TM_RING * sizeof *n); r = expect; }
  }
  tm_slot *s = &r[qoff & (TM_RING - 1)];
  /* A seqlock without fences (which ThreadSanitizer does not model): the
  ** exchange's acquire keeps the due store after it, the reader's
  ** fetch_add's release keeps its due load before it. */
  atomic_exchange_explicit(&s->qoff, -1, memory_order_acq_rel);
  atomic_store_explicit(&s->due, due, memory_order_relaxed);
  atomic_store_explicit(&s->qoff, qoff, memory_order_release);
}

/* The due time a sender noted for qoff, or -1. */
static int64_t tm_ring_get(rmq_broker *b, int64_t qoff)
{
  tm_slot *r = atomic_load_explicit(&b->tm_ring, memory_order_acquire);
  if (!r) return -1;
  tm_slot *s = &r[qoff & (TM_RING - 1)];
  if (atomic_load_explicit(&s->qoff, memory_order_acquire) != qoff) return -1;
  int64_t due = atomic_load_explicit(&s->due, memory_order_relaxed);
  return atomic_fetch_add_explicit(&s->qoff, 0, memory_order_acq_rel) == qoff ? due : -1;
}

static int has_timer_props(const rmq_msg *m)
{
  return MSG_PROP(m, "TIMER_DELIVER_MS") || MSG_PROP(m, "TIMER_DELAY_SEC") || MSG_PROP(m, "TIMER_DELAY_MS");
}

/* When a timed message sent at `now` is due (RocketMQ's HookUtils, with
** TIMER_DELAY_SEC first, then TIMER_DELAY_MS, then TIMER_DELIVER_MS), into
** *deliver; RMQ_ETIMER when unparsable or past the horizon. */
static int timer_deliver_ms(rmq_broker *b, const rmq_msg *m, int64_t now, int64_t *deliver)
{
  const prop *ps = MSG_PROP(m, "TIMER_DELAY_SEC"), *pm = MSG_PROP(m, "TIMER_DELAY_MS"),
             *pd = MSG_PROP(m, "TIMER_DELIVER_MS");
  const prop *w = ps ? ps : pm ? pm : pd;
  int64_t v;
  if (!parse_long(w->value, w->vlen, &v))
    return rmqi_err(RMQ_ETIMER, "timer message illegal: %s is '%s', not a number", w->name, w->value);
  if (ps) {
    if (v > INT64_MAX / 2000 || v < -INT64_MAX / 2000) return rmqi_err(RMQ_ETIMER, "timer message illegal: TIMER_DELAY_SEC %" PRId64 " out of range", v);
    v = now + v * 1000;
  } else if (pm) {
    if (v > INT64_MAX / 2 || v < -INT64_MAX / 2) return rmqi_err(RMQ_ETIMER, "timer message illegal: TIMER_DELAY_MS %" PRId64 " out of range", v);
    v = now + v;
  }
  int64_t max_ms = (int64_t)b->o.timer_max_delay_sec * 1000;
  if (v > now && v - now > max_ms)
    return rmqi_err(RMQ_ETIMER, "timer message illegal, the delay time should not be bigger than the max delay %" PRId64
                    "ms (timer_max_delay_sec); this one is %" PRId64 " ms ahead", max_ms, v - now);
  *deliver = v;
  return RMQ_OK;
}

/* v in decimal into out (room for 21 bytes): snprintf's parsing showed on
** the send path of timed messages. */
static void i64_dec(char *out, int64_t v)
{
  char t[24];
  int n = 0;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do t[n++] = (char)('0' + u % 10); while ((u /= 10));
  if (v < 0) *out++ = '-';
  while (n) *out++ = t[--n];
  *out = 0;
}

/* Room for n rewritten properties in s->xprops. */
static int xprops_room(scratch *s, int n)
{
  if (n <= s->xcap) return RMQ_OK;
  prop *np = rmqi_realloc(s->xprops, (size_t)s->xcap * sizeof *np, (size_t)n * sizeof *np);
  if (!np) return rmqi_err(RMQ_ENOMEM, "out of memory");
  s->xprops = np;
  s->xcap = n;
  return RMQ_OK;
}

static void xprop_add(scratch *s, const char *name, const char *value)
{
  prop *x = &s->xprops[s->xn++];
  memset(x, 0, sizeof *x);
  x->name = (char *)name;
  x->nlen = strlen(name);
  x->value = (char *)value;
  x->vlen = strlen(value);
}

/* The broker's rewrites of a message before it is stored (RocketMQ's
** HookUtils and TransactionalMessageBridge), into s->xprops and *xtopic
** (NULL: stored as sent), with put->q and put->tags_code set for the
** rewritten record; *due gets when a delayed or timed message is due.
**   - a half message (half): RMQ_SYS_TRANS_HALF_TOPIC queue 0, DELAY
**     dropped, TRAN_MSG, PGROUP, REAL_TOPIC, REAL_QID, __transactionId__;
**   - a delay level: SCHEDULE_TOPIC_XXXX queue level-1 with REAL_TOPIC and
**     REAL_QID, its unit's tag code the deliver time (ROCKETMQ.md 10); any
**     TIMER_* property is dropped;
**   - a delivery time in the future: rmq_sys_wheel_timer queue 0 with
**     TIMER_OUT_MS (RocketMQ's rounding: the slot before the one holding
**     it, so that it is due at TIMER_OUT_MS + precision), REAL_TOPIC,
**     REAL_QID. */
static int send_transform(rmq_producer *p, scratch *s, const rmq_msg *m, int qid, int half, int64_t now,
                          const char *uniq, rmqi_put *put, const char **xtopic, int64_t *due)
{
  rmq_broker *b = p->b;
  const prop *dp = MSG_PROP(m, "DELAY");
  int level = dp && !half ? atoi(dp->value) : 0;
  int timed = level <= 0 && !half && has_timer_props(m);
  int64_t out_ms = 0;
  if (timed) {
    int64_t deliver = 0;
    int rc = timer_deliver_ms(b, m, now, &deliver);
    if (rc) return rc;
    if (deliver <= now) return RMQ_OK; /* stored as sent */
    int64_t pr = b->o.timer_precision_ms;
    out_ms = deliver % pr == 0 ? deliver - pr : deliver / pr * pr;
    *due = out_ms + pr;
  }
  if (!half && level <= 0 && !timed) return RMQ_OK;
  int rc = xprops_room(s, m->nprops + 6);
  if (rc) return rc;
  s->xn = 0;
  for (int i = 0; i < m->nprops; i++) {
    const prop *x = &m->props[i];
    /* A half message loses DELAY (RocketMQ's client clears it); a delay
    ** level wins over a delivery time. */
    int drop = (half && x->nlen == 5 && !memcmp(x->name, "DELAY", 5)) ||
               ((half || level > 0) && x->nlen > 6 && !memcmp(x->name, "TIMER_", 6));
    if (!drop) s->xprops[s->xn++] = *x;
  }
  i64_dec(s->xval[0], qid);
  if (half) {
    rmqi_topic *ht;
    if (!(ht = rmqi_topic_find(b->st, TX_HALF_TOPIC)) && (rc = rmqi_topic_create(b->st, TX_HALF_TOPIC, 1, &ht))) return rc;
    xprop_add(s, "TRAN_MSG", "true");
    xprop_add(s, "PGROUP", p->group);
    xprop_add(s, "__transactionId__", uniq);
    *xtopic = TX_HALF_TOPIC;
    put->q = rmqi_topic_queue(ht, 0);
  } else if (level > 0) {
    if (level > rmqi_store_delay_levels(b->st)) level = rmqi_store_delay_levels(b->st);
    rmqi_topic *sched;
    if ((rc = schedule_topic(b, &sched))) return rc;
    *xtopic = RMQI_SCHEDULE_TOPIC;
    put->q = rmqi_topic_queue(sched, level - 1);
    put->tags_code = now + rmqi_store_delay_ms(b->st, level);
    *due = put->tags_code;
  } else {
    rmqi_topic *tt;
    if (!(tt = rmqi_topic_find(b->st, TIMER_TOPIC)) && (rc = rmqi_topic_create(b->st, TIMER_TOPIC, 1, &tt))) return rc;
    i64_dec(s->xval[1], out_ms);
    xprop_add(s, "TIMER_OUT_MS", s->xval[1]);
    *xtopic = TIMER_TOPIC;
    put->q = rmqi_topic_queue(tt, 0);
  }
  xprop_add(s, "REAL_TOPIC", m->topic);
  xprop_add(s, "REAL_QID", s->xval[0]);
  return RMQ_OK;
}

/* One message to queue_id (< 0: the next in p's round robin) with scratch
** level s. *call_cb is set when an ASYNC_FLUSH async send is complete and
** cb must run, which the caller does once s is given back. */
static int send_one(rmq_producer *p, scratch *s, const rmq_msg *m, int queue_id, int mode, rmq_send_callback cb,
                    void *ctx, rmq_send_result *r, int *call_cb)
{
  rmq_broker *b = p->b;
  int rc = check_msg(p, m);
  if (rc) return rc;
  rmqi_topic *t = NULL;
  rc = producer_topic(p, m->topic, &t);
  if (rc) return rc;
  int nq = rmqi_topic_nqueues(t);
  int qid;
  if (queue_id >= 0) {
    if (queue_id >= nq) return rmqi_err(RMQ_EQUEUE, "queue %d of topic %s does not exist (it has %d)", queue_id, m->topic, nq);
    qid = queue_id;
  } else {
    qid = next_queue(p, nq);
  }
  char uniq[RMQ_MSG_ID_SIZE];
  prop *up = MSG_PROP(m, "UNIQ_KEY");
  if (up) copy_str(uniq, sizeof uniq, up->value);
  /* One clock read per send (a VM's clock is not cheap): born time, the
  ** id's time and the store's append time hint. */
  int64_t now = rmqi_now(&b->env);
  if (!up) uniq_key(now, uniq);
  rmqi_put put = {0};
  put.store_ts = now;
  prop *tags = MSG_PROP(m, "TAGS");
  put.tags_code = tags ? rmqi_jhash(tags->value, tags->vlen) : 0;
  put.q = rmqi_topic_queue(t, qid);
  int64_t due = 0; /* a delayed or timed message: when it is due */
  const char *xtopic = NULL;
  rc = send_transform(p, s, m, qid, mode == SEND_HALF, now, uniq, &put, &xtopic, &due);
  if (rc) return rc;
  if (xtopic) {
    rmq_msg tmp = *m;
    tmp.topic = (char *)xtopic;
    tmp.props = s->xprops;
    tmp.nprops = s->xn;
    rc = encode(p, s, &tmp, put.q ? rmqi_queue_id(put.q) : 0, up ? NULL : uniq, now, &put.size);
  } else {
    rc = encode(p, s, m, qid, up ? NULL : uniq, now, &put.size);
  }
  if (rc) return rc;
  put.rec = s->buf;
  prop *wait = MSG_PROP(m, "WAIT");
  int sync_wait = b->o.flush_disk_type == RMQ_SYNC_FLUSH && !(wait && !strcmp(wait->value, "false"));
  if (sync_wait && mode >= SEND_SYNC_ANY) rmqi_store_sender_enter(b->st);
  rc = rmqi_store_put(b->st, &put, 1);
  if (sync_wait && mode >= SEND_SYNC_ANY) rmqi_store_sender_leave(b->st);
  if (rc) return rc;
  if (due) {
    if (xtopic == TIMER_TOPIC) tm_ring_put(b, put.queue_offset, due);
    delivery_wake_by(b, due);
  }
  rmq_send_result local;
  if (!r) r = &local;
  result_fill(p, t, qid, uniq, &put, r);
  int64_t end = put.phys_offset + put.size;
  if (mode >= SEND_SYNC_ANY && sync_wait) {
    int timeout = b->o.sync_flush_timeout;
    rc = rmqi_store_wait_flushed(b->st, end, timeout);
    if (rc == RMQ_ETIMEDOUT) {
      rmqi_log(&b->env, RMQ_LOG_WARN, "send: flush of offset %" PRId64 " took over %d ms", end, timeout);
      r->send_status = RMQ_FLUSH_DISK_TIMEOUT;
      rc = RMQ_OK;
    }
    return rc;
  }
  if (mode == SEND_ASYNC) {
    if (sync_wait) return async_enqueue(b, p, end, cb, ctx, r);
    *call_cb = cb != NULL;
  }
  return RMQ_OK;
}

/* send_one with the calling thread's scratch; p is checked by the caller. */
static int send_impl(rmq_producer *p, const rmq_msg *m, int queue_id, int mode, rmq_send_callback cb, void *ctx,
                     rmq_send_result *r)
{
  scratch *s = scratch_take();
  if (!s) return RMQ_ENOMEM;
  int call_cb = 0;
  int rc = send_one(p, s, m, queue_id, mode, cb, ctx, r, &call_cb);
  scratch_give(s);
  /* With the scratch given back: the callback may send on this thread. */
  if (call_cb) cb(ctx, RMQ_OK, r);
  return rc;
}

RMQ_API int rmq_producer_send(rmq_producer *p, const rmq_msg *m, rmq_send_result *r)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send");
  return send_impl(p, m, -1, SEND_SYNC, NULL, NULL, r);
}

RMQ_API int rmq_producer_send_to_queue(rmq_producer *p, const rmq_msg *m, int queue_id, rmq_send_result *r)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send_to_queue");
  if (queue_id < 0) return rmqi_err(RMQ_EQUEUE, "queue id %d is negative", queue_id);
  return send_impl(p, m, queue_id, SEND_SYNC, NULL, NULL, r);
}

/* copy, a copy_str of src into cap bytes, is the same as a new copy would be. */
static int same_copy(const char *copy, size_t cap, const char *src) { return !strncmp(copy, src, cap - 1); }

/* Lists t's nq queues on p's broker in s->sel_mqs for a selector. The list is
** kept: a level's next send_select, maybe through another producer or broker,
** rebuilds it only when the topic, broker name or queue count differs. */
static int select_queues(rmq_producer *p, scratch *s, rmqi_topic *t, int nq)
{
  const char *topic = rmqi_topic_name(t), *broker = p->b->broker_name;
  if (nq == s->sel_n && same_copy(s->sel_mqs[0].topic, sizeof s->sel_mqs[0].topic, topic) &&
      same_copy(s->sel_mqs[0].broker_name, sizeof s->sel_mqs[0].broker_name, broker))
    return RMQ_OK;
  if (nq > s->sel_cap) {
    rmq_message_queue *n = rmqi_realloc(s->sel_mqs, (size_t)s->sel_cap * sizeof *n, (size_t)nq * sizeof *n);
    if (!n) return rmqi_err(RMQ_ENOMEM, "out of memory listing %d queues", nq);
    s->sel_mqs = n;
    s->sel_cap = nq;
  }
  for (int i = 0; i < nq; i++) {
    copy_str(s->sel_mqs[i].topic, sizeof s->sel_mqs[i].topic, topic);
    copy_str(s->sel_mqs[i].broker_name, sizeof s->sel_mqs[i].broker_name, broker);
    s->sel_mqs[i].queue_id = i;
  }
  s->sel_n = nq;
  return RMQ_OK;
}

RMQ_API int rmq_producer_send_select(rmq_producer *p, const rmq_msg *m, rmq_queue_selector select, void *arg,
                                     rmq_send_result *r)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send_select");
  if (!select) return rmqi_err(RMQ_EINVAL, "rmq_producer_send_select: the selector is NULL");
  int rc = check_msg(p, m);
  if (rc) return rc;
  rmqi_topic *t;
  if ((rc = producer_topic(p, m->topic, &t))) return rc;
  int nq = rmqi_topic_nqueues(t), qi, call_cb = 0;
  scratch *s = scratch_take();
  if (!s) return RMQ_ENOMEM;
  if ((rc = select_queues(p, s, t, nq))) goto out;
  /* s stays busy while the selector runs: a send it makes on this thread
  ** takes another level, and sel_mqs holds still under it. */
  qi = select(s->sel_mqs, (size_t)nq, m, arg);
  if (qi < 0 || qi >= nq) {
    rc = rmqi_err(RMQ_EQUEUE, "the selector chose queue %d of topic %s, which has %d", qi, m->topic, nq);
    goto out;
  }
  rc = send_one(p, s, m, qi, SEND_SYNC, NULL, NULL, r, &call_cb);
out:
  scratch_give(s);
  return rc;
}

/* RocketMQ's batch rules (MessageBatch.generateFromList and the broker's
** checks) for msgs[0..n); *wait0 gets the first message's WAIT property. */
static int batch_check(rmq_producer *p, const rmq_msg *const *msgs, size_t n, const prop **wait0)
{
  if (n == 0) return rmqi_err(RMQ_EBATCH, "the batch is empty");
  /* Far more than max_message_size can hold (records are >= 91 bytes). */
  if (n > 65536) return rmqi_err(RMQ_EBATCH, "a batch holds at most 65536 messages (%zu given)", n);
  for (size_t i = 0; i < n; i++) {
    const rmq_msg *m = msgs[i];
    int rc = check_msg(p, m);
    if (rc) {
      /* The thread's message is the output buffer too: copy it first. */
      char alone[sizeof tls_errmsg];
      memcpy(alone, tls_errmsg, sizeof alone);
      return rmqi_err(rc, "batch message %zu: %s", i, alone);
    }
    if (strcmp(m->topic, msgs[0]->topic))
      return rmqi_err(RMQ_EBATCH, "The topic of the messages in one batch should be the same (message %zu is for %s, not %s)",
                      i, m->topic, msgs[0]->topic);
    const prop *d = MSG_PROP(m, "DELAY");
    if (d && strcmp(d->value, "0")) return rmqi_err(RMQ_EBATCH, "TimeDelayLevel is not supported for batching (message %zu)", i);
    if (has_timer_props(m)) return rmqi_err(RMQ_EBATCH, "a delivery time is not supported for batching (message %zu)", i);
    if (!strncmp(m->topic, "%RETRY%", 7)) return rmqi_err(RMQ_EBATCH, "Retry Group is not supported for batching");
    const prop *w = MSG_PROP(m, "WAIT");
    int wv = !(w && !strcmp(w->value, "false"));
    if (i == 0) *wait0 = w;
    else if (wv != !(*wait0 && !strcmp((*wait0)->value, "false")))
      return rmqi_err(RMQ_EBATCH, "The waitStoreMsgOK of the messages in one batch should be the same (message %zu)", i);
  }
  return RMQ_OK;
}

/* Encodes a checked batch into scratch level s and appends it to queue qid
** of t in one store call. */
static int batch_put(rmq_producer *p, scratch *s, const rmq_msg *const *msgs, size_t n, rmqi_topic *t, int qid,
                     int sync_wait, rmq_send_result *results)
{
  rmq_broker *b = p->b;
  int max = p->o.max_message_size < b->o.max_message_size ? p->o.max_message_size : b->o.max_message_size;
  int rc;
  if (n > s->puts_cap || n > s->ids_cap) {
    rmqi_put *np = rmqi_realloc(s->puts, s->puts_cap * sizeof *np, n * sizeof *np);
    if (!np) return rmqi_err(RMQ_ENOMEM, "out of memory for a batch of %zu", n);
    s->puts = np;
    s->puts_cap = n;
    char (*ni)[RMQ_MSG_ID_SIZE] = rmqi_realloc(s->ids, s->ids_cap * sizeof *ni, n * sizeof *ni);
    if (!ni) return rmqi_err(RMQ_ENOMEM, "out of memory for a batch of %zu", n);
    s->ids = ni;
    s->ids_cap = n;
  }
  int64_t now = rmqi_now(&b->env);
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const rmq_msg *m = msgs[i];
    const prop *up = MSG_PROP(m, "UNIQ_KEY");
    if (up) copy_str(s->ids[i], sizeof s->ids[i], up->value);
    else uniq_key(now, s->ids[i]);
    rmqi_put *u = &s->puts[i];
    memset(u, 0, sizeof *u);
    if ((rc = encode_at(p, s, m, qid, up ? NULL : s->ids[i], now, at, &u->size))) return rc;
    u->rec = (uint8_t *)(uintptr_t)at; /* an offset until the buffer stops moving */
    u->q = rmqi_topic_queue(t, qid);
    const prop *tags = MSG_PROP(m, "TAGS");
    u->tags_code = tags ? rmqi_jhash(tags->value, tags->vlen) : 0;
    u->store_ts = now;
    at += u->size;
    if (at > (size_t)max)
      return rmqi_err(RMQ_EMSGSIZE, "the batch takes over %zu bytes, over the message size limit of %d", at, max);
  }
  for (size_t i = 0; i < n; i++) s->puts[i].rec = s->buf + (size_t)(uintptr_t)s->puts[i].rec;
  if (sync_wait) rmqi_store_sender_enter(b->st);
  rc = rmqi_store_put(b->st, s->puts, (int)n);
  if (sync_wait) rmqi_store_sender_leave(b->st);
  if (rc) return rc;
  int status = RMQ_SEND_OK;
  if (sync_wait) {
    const rmqi_put *last = &s->puts[n - 1];
    rc = rmqi_store_wait_flushed(b->st, last->phys_offset + last->size, b->o.sync_flush_timeout);
    if (rc == RMQ_ETIMEDOUT) { status = RMQ_FLUSH_DISK_TIMEOUT; rc = RMQ_OK; }
    if (rc) return rc;
  }
  for (size_t i = 0; results && i < n; i++) {
    result_fill(p, t, qid, s->ids[i], &s->puts[i], &results[i]);
    results[i].send_status = status;
  }
  return RMQ_OK;
}

/* The batch rules, then one append of all records to one queue. */
RMQ_API int rmq_producer_send_batch(rmq_producer *p, const rmq_msg *const *msgs, size_t n, rmq_send_result *results)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send_batch");
  if (!msgs && n) return rmqi_err(RMQ_EINVAL, "rmq_producer_send_batch: msgs is NULL");
  const prop *wait0 = NULL;
  int rc = batch_check(p, msgs, n, &wait0);
  if (rc) return rc;
  rmqi_topic *t;
  if ((rc = producer_topic(p, msgs[0]->topic, &t))) return rc;
  int qid = next_queue(p, rmqi_topic_nqueues(t));
  int sync_wait = p->b->o.flush_disk_type == RMQ_SYNC_FLUSH && !(wait0 && !strcmp(wait0->value, "false"));
  scratch *s = scratch_take();
  if (!s) return RMQ_ENOMEM;
  rc = batch_put(p, s, msgs, n, t, qid, sync_wait, results);
  scratch_give(s);
  return rc;
}

RMQ_API int rmq_producer_send_async(rmq_producer *p, const rmq_msg *m, rmq_send_callback cb, void *ctx)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send_async");
  rmq_send_result r;
  return send_impl(p, m, -1, SEND_ASYNC, cb, ctx, &r);
}

RMQ_API int rmq_producer_send_oneway(rmq_producer *p, const rmq_msg *m)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send_oneway");
  return send_impl(p, m, -1, SEND_ONEWAY, NULL, NULL, NULL);
}

/* ======================================================================= */
/* Records the broker makes                                                */
/* ======================================================================= */


static size_t i64_slot(int64_t v, size_t cap) { return (size_t)(((uint64_t)v * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static int i64set_has(const i64set *s, int64_t v)
{
  if (!s->n) return 0;
  for (size_t i = i64_slot(v, s->cap);; i = (i + 1) & (s->cap - 1)) {
    if (s->k[i] == v) return 1;
    if (s->k[i] < 0) return 0;
  }
}

static int i64set_add(i64set *s, int64_t v)
{
  if (v < 0 || i64set_has(s, v)) return RMQ_OK;
  if ((s->n + 1) * 2 > s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 64;
    int64_t *nk = rmqi_malloc(ncap * sizeof *nk);
    if (!nk) return rmqi_err(RMQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < ncap; i++) nk[i] = -1;
    for (size_t i = 0; i < s->cap; i++)
      if (s->k[i] >= 0) {
        size_t j = i64_slot(s->k[i], ncap);
        while (nk[j] >= 0) j = (j + 1) & (ncap - 1);
        nk[j] = s->k[i];
      }
    rmqi_free(s->k, s->cap * sizeof *s->k);
    s->k = nk;
    s->cap = ncap;
  }
  size_t j = i64_slot(v, s->cap);
  while (s->k[j] >= 0) j = (j + 1) & (s->cap - 1);
  s->k[j] = v;
  s->n++;
  return RMQ_OK;
}

/* Drops the members below min (rebuilding the table). */
static void i64set_prune(i64set *s, int64_t min)
{
  if (!s->n) return;
  i64set t = {0};
  int oom = 0;
  for (size_t i = 0; i < s->cap; i++)
    if (s->k[i] >= min && i64set_add(&t, s->k[i])) oom = 1;
  if (oom) { rmqi_free(t.k, t.cap * sizeof *t.k); return; } /* keep the old: only bigger */
  rmqi_free(s->k, s->cap * sizeof *s->k);
  *s = t;
}

static void i64set_free(i64set *s)
{
  rmqi_free(s->k, s->cap * sizeof *s->k);
  memset(s, 0, sizeof *s);
}

/* Encodes a record the broker writes itself (an op record) into *buf:
** born and store host the broker's, born now, no UNIQ_KEY (RocketMQ's op
** records have none stored). Returns the size, 0 when out of memory. */
static size_t record_new(rmq_broker *b, uint8_t **buf, size_t *cap, const char *topic, int qid, const void *body,
                         size_t blen, const char *props, size_t plen, int64_t now)
{
  size_t tl = strlen(topic);
  size_t total = 91 + blen + tl + plen;
  if (total > *cap) {
    uint8_t *nb = rmqi_realloc(*buf, *cap, total);
    if (!nb) return 0;
    *buf = nb;
    *cap = total;
  }
  uint8_t *w = *buf;
  memset(w, 0, 88);
  rmqi_put32(w, (uint32_t)total);
  rmqi_put32(w + 4, RMQI_MAGIC_V1);
  rmqi_put32(w + 8, rmqi_crc32(body, blen) & 0x7FFFFFFF);
  rmqi_put32(w + 12, (uint32_t)qid);
  rmqi_put64(w + 40, (uint64_t)now);
  memcpy(w + 48, b->store_ip, 4);
  rmqi_put32(w + 52, (uint32_t)b->o.store_port);
  memcpy(w + 64, b->store_ip, 4);
  rmqi_put32(w + 68, (uint32_t)b->o.store_port);
  rmqi_put32(w + 84, (uint32_t)blen);
  w += 88;
  memcpy(w, body, blen);
  w += blen;
  *w++ = (uint8_t)tl;
  memcpy(w, topic, tl);
  w += tl;
  rmqi_put16(w, (uint16_t)plen);
  memcpy(w + 2, props, plen);
  return total;
}

/* Copies raw properties p[0..len) into pb without the names in drop[]
** (NULL-terminated). */
static void props_copy_except(rmqi_buf *pb, const char *p, size_t len, const char *const *drop)
{
  const char *end = p + len;
  while (p < end) {
    const char *se = memchr(p, 2, (size_t)(end - p));
    if (!se) se = end;
    const char *sep = memchr(p, 1, (size_t)(se - p));
    size_t nl = sep ? (size_t)(sep - p) : 0;
    int skip = 0;
    for (int i = 0; sep && drop[i] && !skip; i++) skip = strlen(drop[i]) == nl && !memcmp(p, drop[i], nl);
    if (!skip && se > p) {
      rmqi_buf_add(pb, p, (size_t)(se - p));
      rmqi_buf_puts(pb, "\2");
    }
    p = se + 1;
  }
}

/* Pins and decodes the whole record at phys, its size read from it. NULL
** (and *pin NULL) when gone or unreadable. */
static const uint8_t *pin_record(rmq_broker *b, int64_t phys, void **pin, rmqi_record *r)
{
  const uint8_t *h = rmqi_store_record_pin(b->st, phys, 8, pin);
  int32_t total = h ? (int32_t)rmqi_get32(h) : 0;
  rmqi_store_unpin(*pin);
  const uint8_t *rec = total > 8 ? rmqi_store_record_pin(b->st, phys, total, pin) : NULL;
  if (!rec) *pin = NULL;
  if (rec && rmqi_record_decode(rec, (size_t)total, 0, r) != RMQ_OK) {
    rmqi_store_unpin(*pin);
    *pin = NULL;
    return NULL;
  }
  return rec;
}

/* The value of property name of record r as a NUL-terminated string in
** out[cap]; 0 when absent or too long. */
static int rec_prop(const rmqi_record *r, const char *name, char *out, size_t cap)
{
  const char *v;
  size_t vl;
  if (!rmqi_props_find(r->props, (size_t)r->props_len, name, strlen(name), &v, &vl) || vl >= cap) return 0;
  memcpy(out, v, vl);
  out[vl] = 0;
  return 1;
}

/* ======================================================================= */
/* Transactions (RocketMQ's TransactionalMessageService, in process)       */
/* ======================================================================= */

#define TX_OP_TOPIC "RMQ_SYS_TRANS_OP_HALF_TOPIC"
#define TX_MAXTIME_TOPIC "TRANS_CHECK_MAX_TIME_TOPIC"
#define TX_GROUP "CID_RMQ_SYS_TRANS"

RMQ_API const char *rmq_local_transaction_state_name(int state)
{
  switch (state) {
  case RMQ_COMMIT_MESSAGE: return "COMMIT_MESSAGE";
  case RMQ_ROLLBACK_MESSAGE: return "ROLLBACK_MESSAGE";
  case RMQ_UNKNOW: return "UNKNOW";
  default: return "?";
  }
}

static int sys_topic(rmq_broker *b, const char *name, rmqi_topic **t)
{
  *t = rmqi_topic_find(b->st, name);
  return *t ? RMQ_OK : rmqi_topic_create(b->st, name, 1, t);
}

/* The op record marking half queue offset hoff decided: RocketMQ 4.x's
** form (tag "d", the offset in decimal), which 5.x reads too. In
** b->txop; tx_lock held. */
static int tx_op_put(rmq_broker *b, rmqi_put *put, int64_t hoff, int64_t now)
{
  rmqi_topic *ot;
  int rc = sys_topic(b, TX_OP_TOPIC, &ot);
  if (rc) return rc;
  char body[24];
  int blen = snprintf(body, sizeof body, "%" PRId64, hoff);
  static const char props[] = "TAGS\1d\2WAIT\1true\2";
  put->size = (uint32_t)record_new(b, &b->txop, &b->txop_cap, TX_OP_TOPIC, 0, body, (size_t)blen, props,
                                   sizeof props - 1, now);
  if (!put->size) return rmqi_err(RMQ_ENOMEM, "out of memory writing an op record");
  put->rec = b->txop;
  put->q = rmqi_topic_queue(ot, 0);
  put->tags_code = rmqi_jhash("d", 1);
  put->store_ts = now;
  return RMQ_OK;
}

/* Is half queue offset hoff decided (an op record, or below the base)? tx_lock. */
static int tx_decided(rmq_broker *b, int64_t hoff) { return hoff < b->tx_base || i64set_has(&b->tx_done, hoff); }

/* Keeps the decided set small: every 4096 decisions, its contiguous run
** from tx_base becomes part of the base (what is below the base is
** decided). tx_lock. */
static void tx_compact(rmq_broker *b)
{
  if (b->tx_done.n < 4096 || (b->tx_done.n & 4095)) return;
  int64_t base = b->tx_base;
  while (i64set_has(&b->tx_done, base)) base++;
  if (base > b->tx_base) {
    b->tx_base = base;
    i64set_prune(&b->tx_done, base);
  }
}

/* Stores a copy of half message rec (decoded r) in b->txrec: to its real
** topic as the COMMIT record (commit), back to the half queue with
** TRANSACTION_CHECK_TIMES = checks (a check's re-append), or to
** TRANS_CHECK_MAX_TIME_TOPIC (discard). */
enum { TXC_COMMIT, TXC_REAPPEND, TXC_DISCARD };
static int tx_copy_put(rmq_broker *b, rmqi_put *put, const uint8_t *rec, const rmqi_record *r, int kind, int checks,
                       int64_t now)
{
  char topic[256], qs[16];
  int qid = 0, rc;
  rmqi_topic *t;
  rmqi_buf pb = {0};
  if (kind == TXC_COMMIT) {
    if (!rec_prop(r, "REAL_TOPIC", topic, sizeof topic) || !rec_prop(r, "REAL_QID", qs, sizeof qs))
      return rmqi_err(RMQ_ECORRUPT, "half message at %" PRId64 " lacks REAL_TOPIC/REAL_QID", r->phys_offset);
    qid = atoi(qs);
    t = rmqi_topic_find(b->st, topic);
    if (!t && (rc = rmqi_topic_create(b->st, topic, b->o.default_topic_queue_nums < 4 ? b->o.default_topic_queue_nums : 4, &t)))
      return rc;
    int nq = rmqi_topic_nqueues(t);
    if (nq < 1) return rmqi_err(RMQ_ENOTOPIC, "topic %s has no queues", topic);
    if (qid < 0 || qid >= nq) qid = (qid < 0 ? 0 : qid) % nq;
    /* RocketMQ builds the stored properties before it clears REAL_TOPIC,
    ** REAL_QID and TRAN_MSG: the COMMIT record keeps them all. */
    rmqi_buf_add(&pb, r->props, (size_t)r->props_len);
  } else {
    snprintf(topic, sizeof topic, "%s", kind == TXC_REAPPEND ? TX_HALF_TOPIC : TX_MAXTIME_TOPIC);
    if ((rc = sys_topic(b, topic, &t))) return rc;
    static const char *const drop[] = {"TRANSACTION_CHECK_TIMES", NULL};
    props_copy_except(&pb, r->props, (size_t)r->props_len, drop);
    char cv[16];
    snprintf(cv, sizeof cv, "%d", checks);
    prop_append(&pb, "TRANSACTION_CHECK_TIMES", cv, strlen(cv));
  }
  if (pb.oom) { rmqi_buf_free(&pb); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  if (pb.len > RMQ_PROPERTIES_MAX_LEN) { rmqi_buf_free(&pb); return rmqi_err(RMQ_EPROPSIZE, "half message properties too long"); }
  put->size = (uint32_t)record_rebuild(&b->txrec, &b->txrec_cap, rec, r, topic, qid, pb.p ? pb.p : "", pb.len,
                                       r->reconsume_times);
  rmqi_buf_free(&pb);
  if (!put->size) return rmqi_err(RMQ_ENOMEM, "out of memory");
  if (kind == TXC_COMMIT) {
    size_t hdr = (size_t)(r->body - 4 - rec);
    uint32_t sf = (uint32_t)((r->sys_flag & ~RMQI_SYSFLAG_TX_MASK) | RMQI_SYSFLAG_TX_COMMIT);
    rmqi_put32(b->txrec + 36, sf);
    rmqi_put64(b->txrec + hdr - 8, (uint64_t)r->phys_offset); /* PREPARED_TX_OFFSET */
  }
  put->rec = b->txrec;
  put->q = rmqi_topic_queue(t, qid);
  put->tags_code = props_tags_code(r->props, (size_t)r->props_len);
  put->store_ts = now;
  return RMQ_OK;
}

/* endTransaction: the decision `state` on the half message at
** phys/size/queue offset hoff of producer group `group`. tx_lock held. */
static int tx_end_locked(rmq_broker *b, const char *group, int64_t phys, int32_t size, int64_t hoff, int state,
                         int from_check)
{
  if (state != RMQ_COMMIT_MESSAGE && state != RMQ_ROLLBACK_MESSAGE) return RMQ_OK;
  if (tx_decided(b, hoff)) {
    rmqi_log(&b->env, RMQ_LOG_WARN, "transaction of half message %" PRId64 " (group %s) was decided already%s; "
             "%s ignored", hoff, group, from_check ? "" : " (the check took it over)", rmq_local_transaction_state_name(state));
    return RMQ_OK;
  }
  void *pin;
  const uint8_t *rec = rmqi_store_record_pin(b->st, phys, size, &pin);
  rmqi_record r;
  int rc = RMQ_OK;
  char pg[RMQ_GROUP_MAX_LEN + 2];
  if (!rec || rmqi_record_decode(rec, (size_t)size, 0, &r) != RMQ_OK) {
    rc = rmqi_err(RMQ_ENOTFOUND, "Find prepared transaction message failed (commit log offset %" PRId64 ")", phys);
  } else if (!rec_prop(&r, "PGROUP", pg, sizeof pg) || strcmp(pg, group)) {
    rc = rmqi_err(RMQ_EINVAL, "The producer group wrong (%s, the half message's is %s)", group, pg);
  } else if (r.queue_offset != hoff) {
    rc = rmqi_err(RMQ_EINVAL, "The transaction state table offset wrong");
  } else if (r.phys_offset != phys) {
    rc = rmqi_err(RMQ_EINVAL, "The commit log offset wrong");
  } else {
    int64_t now = rmqi_now(&b->env);
    rmqi_put puts[2];
    memset(puts, 0, sizeof puts);
    int n = 0;
    if (state == RMQ_COMMIT_MESSAGE) rc = tx_copy_put(b, &puts[n++], rec, &r, TXC_COMMIT, 0, now);
    /* The decision and its op record in one append: a crash keeps both,
    ** neither, or the decision alone, which the next open completes. */
    if (!rc) rc = tx_op_put(b, &puts[n++], hoff, now);
    if (!rc) rc = rmqi_store_put(b->st, puts, n);
    if (!rc) rc = i64set_add(&b->tx_done, hoff);
    if (!rc) tx_compact(b);
  }
  rmqi_store_unpin(pin);
  return rc;
}

RMQ_API int rmq_producer_set_transaction_listener(rmq_producer *p, const rmq_transaction_listener *l)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_set_transaction_listener");
  if (l && !l->execute_local_transaction)
    return rmqi_err(RMQ_EINVAL, "rmq_producer_set_transaction_listener: execute_local_transaction is NULL");
  rmq_broker *b = p->b;
  pthread_mutex_lock(&b->tx_lock);
  if (l) p->txl = *l;
  else memset(&p->txl, 0, sizeof p->txl);
  if (!p->tx_listed) {
    p->tx_next = b->txps;
    b->txps = p;
    p->tx_listed = 1;
  }
  /* Half messages a crash or an earlier run left undecided are checked
  ** soon, not a whole check interval later. */
  if (l && l->check_local_transaction) b->tx_next_check = 0;
  pthread_mutex_unlock(&b->tx_lock);
  if (l && l->check_local_transaction) service_kick(b);
  return RMQ_OK;
}

RMQ_API int rmq_producer_send_message_in_transaction(rmq_producer *p, const rmq_msg *m, void *arg,
                                                     rmq_transaction_send_result *r)
{
  if (!producer_ok(p)) return bad_producer(p, "rmq_producer_send_message_in_transaction");
  rmq_broker *b = p->b;
  rmq_execute_local_transaction exec = p->txl.execute_local_transaction;
  if (!exec) return rmqi_err(RMQ_ESTATE, "TransactionListener is null");
  if (m && has_timer_props(m))
    return rmqi_err(RMQ_ETIMER, "a transactional message cannot have a delivery time (TIMER_* property)");
  rmq_transaction_send_result local;
  if (!r) r = &local;
  memset(r, 0, sizeof *r);
  int rc = send_impl(p, m, -1, SEND_HALF, NULL, NULL, &r->send_result);
  if (rc) return rc;
  copy_str(r->transaction_id, sizeof r->transaction_id, r->send_result.msg_id);
  int state;
  if (r->send_result.send_status != RMQ_SEND_OK) {
    state = RMQ_ROLLBACK_MESSAGE; /* as RocketMQ: the local transaction does not run */
  } else {
    state = exec(p->txl.ctx, m, r->transaction_id, arg);
    if (state != RMQ_COMMIT_MESSAGE && state != RMQ_ROLLBACK_MESSAGE && state != RMQ_UNKNOW) {
      rmqi_log(&b->env, RMQ_LOG_WARN, "executeLocalTransaction returned %d for %s: taken as UNKNOW", state,
               r->transaction_id);
      state = RMQ_UNKNOW;
    }
  }
  r->local_transaction_state = state;
  pthread_mutex_lock(&b->tx_lock);
  rc = tx_end_locked(b, p->group, r->send_result.commit_log_offset, r->send_result.store_size,
                     r->send_result.queue_offset, state, 0);
  pthread_mutex_unlock(&b->tx_lock);
  return rc;
}

/* Unlists p (destroy) and waits for a check running through it. */
static void tx_producer_gone(rmq_producer *p)
{
  rmq_broker *b = p->b;
  pthread_mutex_lock(&b->tx_lock);
  if (p->tx_listed) {
    for (rmq_producer **pp = &b->txps; *pp; pp = &(*pp)->tx_next)
      if (*pp == p) { *pp = p->tx_next; break; }
    p->tx_listed = 0;
  }
  pthread_mutex_unlock(&b->tx_lock);
  while (atomic_load(&p->tx_checking) > 0) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* A producer of `group` with a check listener, its use counted and its
** listener copied into *l (it may be replaced meanwhile); tx_lock. */
static rmq_producer *tx_checker(rmq_broker *b, const char *group, rmq_transaction_listener *l)
{
  for (rmq_producer *p = b->txps; p; p = p->tx_next)
    if (p->txl.check_local_transaction && !strcmp(p->group, group)) {
      atomic_fetch_add(&p->tx_checking, 1);
      *l = p->txl;
      return p;
    }
  return NULL;
}

/* The half offsets an op record (4.x "12" or 5.x "12,13,") marks decided. */
static int tx_op_parse(rmq_broker *b, const rmqi_record *r, int64_t min)
{
  const char *p = (const char *)r->body, *end = p + r->body_len;
  while (p < end) {
    const char *c = memchr(p, ',', (size_t)(end - p));
    if (!c) c = end;
    int64_t v;
    if (parse_long(p, (size_t)(c - p), &v) && v >= min) {
      int rc = i64set_add(&b->tx_done, v);
      if (rc) return rc;
    }
    p = c + 1;
  }
  return RMQ_OK;
}

/* The half queue's consumed offset (CID_RMQ_SYS_TRANS), its min if none. */
static int64_t tx_offset(rmq_broker *b, const char *topic, rmqi_queue *q)
{
  offent *e = off_find(b, topic, TX_GROUP, 0);
  int64_t off = e ? atomic_load(&e->off[0]) : -1;
  int64_t min = rmqi_queue_min_offset(q);
  return off < min ? min : off;
}

typedef struct tx_fix {
  rmq_broker *b;
  int64_t commits[64]; /* half offsets of COMMIT records met, waiting for their op */
  int n, rc;
} tx_fix;

/* After a crash: a COMMIT record whose op record was lost gets it now, so
** the check does not ask again and commit the message twice. */
static int tx_fix_rec(void *ctx, const rmqi_record *r, int64_t phys)
{
  tx_fix *f = ctx;
  rmq_broker *b = f->b;
  (void)phys;
  if ((r->sys_flag & RMQI_SYSFLAG_TX_MASK) != RMQI_SYSFLAG_TX_COMMIT || r->prepared_tx_offset < 0) return 0;
  void *pin;
  rmqi_record h;
  const uint8_t *hrec = pin_record(b, r->prepared_tx_offset, &pin, &h);
  int rc = 0;
  if (hrec && h.topic_len == (int)strlen(TX_HALF_TOPIC) && !memcmp(h.topic, TX_HALF_TOPIC, (size_t)h.topic_len) &&
      !tx_decided(b, h.queue_offset)) {
    int64_t now = rmqi_now(&b->env);
    rmqi_put put = {0};
    rc = tx_op_put(b, &put, h.queue_offset, now);
    if (!rc) rc = rmqi_store_put(b->st, &put, 1);
    if (!rc) rc = i64set_add(&b->tx_done, h.queue_offset);
    if (!rc) rmqi_log(&b->env, RMQ_LOG_WARN, "recovery: committed transaction of half message %" PRId64
                      " lacked its op record; written", h.queue_offset);
  }
  rmqi_store_unpin(pin);
  f->rc = rc;
  return rc;
}

/* At open: the decided half offsets from the op queue, and after a crash
** the op records of commits it cut off. */
static int tx_load(rmq_broker *b)
{
  rmqi_topic *ht = rmqi_topic_find(b->st, TX_HALF_TOPIC), *ot = rmqi_topic_find(b->st, TX_OP_TOPIC);
  if (!ht) return RMQ_OK;
  b->tx_base = tx_offset(b, TX_HALF_TOPIC, rmqi_topic_queue(ht, 0));
  if (ot) {
    rmqi_queue *oq = rmqi_topic_queue(ot, 0);
    uint8_t ub[64 * RMQI_CQ_UNIT];
    for (int64_t off = tx_offset(b, TX_OP_TOPIC, oq);;) {
      int k = rmqi_queue_read_units(oq, off, ub, 64);
      if (k <= 0) break;
      for (int i = 0; i < k; i++, off++) {
        void *pin;
        const uint8_t *u = ub + i * RMQI_CQ_UNIT;
        int32_t size = (int32_t)rmqi_get32(u + 8);
        const uint8_t *rec = rmqi_store_record_pin(b->st, (int64_t)rmqi_get64(u), size, &pin);
        rmqi_record r;
        int rc = rec && rmqi_record_decode(rec, (size_t)size, 0, &r) == RMQ_OK ? tx_op_parse(b, &r, b->tx_base) : RMQ_OK;
        rmqi_store_unpin(pin);
        if (rc) return rc;
      }
    }
  }
  int64_t from = rmqi_store_recovery_from(b->st);
  if (from < 0 || b->o.read_only) return RMQ_OK;
  tx_fix f = {.b = b};
  pthread_mutex_lock(&b->tx_lock);
  int rc = rmqi_store_scan(b->st, from, rmqi_store_max_phys(b->st), tx_fix_rec, &f);
  pthread_mutex_unlock(&b->tx_lock);
  return rc;
}

/* Moves the half and op offsets past what is decided: the half offset to
** `first_open`, the op offset over op records of halves below it. */
static void tx_advance(rmq_broker *b, rmqi_queue *hq, int64_t first_open)
{
  offent *he = off_find(b, TX_HALF_TOPIC, TX_GROUP, 1);
  if (!he) return;
  off_set(b, he, 0, first_open);
  pthread_mutex_lock(&b->tx_lock);
  if (first_open > b->tx_base) {
    b->tx_base = first_open;
    i64set_prune(&b->tx_done, first_open);
  }
  pthread_mutex_unlock(&b->tx_lock);
  rmqi_topic *ot = rmqi_topic_find(b->st, TX_OP_TOPIC);
  offent *oe = ot ? off_find(b, TX_OP_TOPIC, TX_GROUP, 1) : NULL;
  if (!oe) return;
  rmqi_queue *oq = rmqi_topic_queue(ot, 0);
  int64_t off = tx_offset(b, TX_OP_TOPIC, oq);
  uint8_t u[RMQI_CQ_UNIT];
  while (rmqi_queue_read_units(oq, off, u, 1) == 1) {
    void *pin;
    int32_t size = (int32_t)rmqi_get32(u + 8);
    const uint8_t *rec = rmqi_store_record_pin(b->st, (int64_t)rmqi_get64(u), size, &pin);
    rmqi_record r;
    int64_t v = -1, below = 1;
    if (rec && rmqi_record_decode(rec, (size_t)size, 0, &r) == RMQ_OK) {
      const char *p = (const char *)r.body, *end = p + r.body_len;
      while (p < end && below) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        if (!c) c = end;
        if (parse_long(p, (size_t)(c - p), &v) && v >= first_open) below = 0;
        p = c + 1;
      }
    }
    rmqi_store_unpin(pin);
    if (!below) break;
    off++;
  }
  off_set(b, oe, 0, off);
  (void)hq;
}

/* One check pass (RocketMQ's TransactionalMessageCheckService), on the
** broker's clock: each undecided half message old enough is re-appended
** with its check count raised (and an op record for the old copy, in one
** append), then its group's check listener decides on the new copy. */
static int tx_check_due(rmq_broker *b, int64_t now, int64_t *next)
{
  rmqi_topic *ht = rmqi_topic_find(b->st, TX_HALF_TOPIC);
  if (!ht) return RMQ_OK;
  pthread_mutex_lock(&b->tx_lock);
  int64_t when = b->tx_next_check;
  pthread_mutex_unlock(&b->tx_lock);
  if (now < when) {
    if (when - now < *next) *next = when - now;
    return RMQ_OK;
  }
  if (pthread_mutex_trylock(&b->tx_check_lock) != 0) return RMQ_OK;
  rmqi_queue *hq = rmqi_topic_queue(ht, 0);
  int64_t start = now, i = tx_offset(b, TX_HALF_TOPIC, hq), first_open = -1;
  pthread_mutex_lock(&b->tx_lock);
  b->tx_next_check = now + b->o.transaction_check_interval;
  if (i < b->tx_base) i = b->tx_base; /* all decided below it */
  pthread_mutex_unlock(&b->tx_lock);
  if (b->o.transaction_check_interval < *next) *next = b->o.transaction_check_interval;
  int rc = RMQ_OK;
  int64_t keep_ms = (int64_t)b->o.file_reserved_time * 3600 * 1000;
  for (; rc == RMQ_OK; i++) {
    uint8_t u[RMQI_CQ_UNIT];
    if (rmqi_queue_read_units(hq, i, u, 1) != 1) break;
    pthread_mutex_lock(&b->tx_lock);
    int done = tx_decided(b, i);
    pthread_mutex_unlock(&b->tx_lock);
    if (done) continue;
    int64_t phys = (int64_t)rmqi_get64(u);
    int32_t size = (int32_t)rmqi_get32(u + 8);
    void *pin;
    const uint8_t *rec = rmqi_store_record_pin(b->st, phys, size, &pin);
    rmqi_record r;
    if (!rec || rmqi_record_decode(rec, (size_t)size, 0, &r) != RMQ_OK) {
      rmqi_store_unpin(pin);
      rmqi_log(&b->env, RMQ_LOG_WARN, "transaction check: half message %" PRId64 " is gone or unreadable; skipped", i);
      continue;
    }
    char cv[24], imm[24], group[RMQ_GROUP_MAX_LEN + 2];
    int64_t checks = 0, immunity = b->o.transaction_timeout;
    if (rec_prop(&r, "TRANSACTION_CHECK_TIMES", cv, sizeof cv) && !parse_long(cv, strlen(cv), &checks)) checks = -1;
    int has_imm = rec_prop(&r, "CHECK_IMMUNITY_TIME_IN_SECONDS", imm, sizeof imm);
    int64_t iv;
    if (has_imm && parse_long(imm, strlen(imm), &iv) && iv >= 0 && iv < INT64_MAX / 1000) immunity = iv * 1000;
    if (!rec_prop(&r, "PGROUP", group, sizeof group)) group[0] = 0;
    int64_t age = rmqi_sub_sat(now, r.born_ts);
    int kind = -1;
    if (checks >= b->o.transaction_check_max) kind = TXC_DISCARD;
    else if (age > keep_ms) kind = -2; /* older than the files are kept: RocketMQ skips it */
    else if (r.store_ts >= start) { rmqi_store_unpin(pin); break; }
    else if (age >= 0 && age < immunity) {
      rmqi_store_unpin(pin);
      if (!has_imm) break; /* the younger ones after it wait too */
      if (first_open < 0) first_open = i;
      continue;
    }
    rmq_producer *cp = NULL;
    rmqi_put puts[2];
    memset(puts, 0, sizeof puts);
    pthread_mutex_lock(&b->tx_lock);
    if (tx_decided(b, i)) { /* the producer decided meanwhile */
      pthread_mutex_unlock(&b->tx_lock);
      rmqi_store_unpin(pin);
      continue;
    }
    rmq_transaction_listener cl = {0};
    if (kind == -1 && !(cp = tx_checker(b, group, &cl))) {
      /* No listener to ask: left as it is, its count unchanged. */
      pthread_mutex_unlock(&b->tx_lock);
      rmqi_store_unpin(pin);
      if (first_open < 0) first_open = i;
      continue;
    }
    int n = 0;
    if (kind == TXC_DISCARD) rc = tx_copy_put(b, &puts[n++], rec, &r, TXC_DISCARD, (int)checks, now);
    else if (kind == -1) rc = tx_copy_put(b, &puts[n++], rec, &r, TXC_REAPPEND, checks < 0 ? 0 : (int)checks + 1, now);
    if (!rc) rc = tx_op_put(b, &puts[n++], i, now);
    if (!rc) rc = rmqi_store_put(b->st, puts, n);
    if (!rc) rc = i64set_add(&b->tx_done, i);
    pthread_mutex_unlock(&b->tx_lock);
    rmqi_store_unpin(pin);
    if (rc) {
      /* Not re-appended: it stays where it is for the next pass. */
      if (cp) atomic_fetch_sub(&cp->tx_checking, 1);
      if (first_open < 0) first_open = i;
      break;
    }
    if (!rc && kind == TXC_DISCARD)
      rmqi_log(&b->env, RMQ_LOG_WARN, "transaction of half message %" PRId64 " (group %s) still undecided after %" PRId64
               " checks: discarded to " TX_MAXTIME_TOPIC, i, group, checks);
    if (!rc && kind == -2)
      rmqi_log(&b->env, RMQ_LOG_WARN, "transaction of half message %" PRId64 " (group %s) born over %d h ago: skipped",
               i, group, b->o.file_reserved_time);
    if (!cp) continue;
    /* Ask about the new copy, as RocketMQ's check does. */
    const uint8_t *nrec = rmqi_store_record_pin(b->st, puts[0].phys_offset, (int32_t)puts[0].size, &pin);
    rmq_message_ext e;
    char rt[256], rq[16];
    rmqi_record nr;
    int state = RMQ_UNKNOW;
    if (nrec && ext_fill(&e, nrec, (int32_t)puts[0].size, TX_HALF_TOPIC, b->broker_name) == RMQ_OK &&
        rmqi_record_decode(nrec, puts[0].size, 0, &nr) == RMQ_OK) {
      if (rec_prop(&nr, "REAL_TOPIC", rt, sizeof rt)) e.topic = rt;
      if (rec_prop(&nr, "REAL_QID", rq, sizeof rq)) e.queue_id = atoi(rq);
      state = cl.check_local_transaction(cl.ctx, &e);
      if (state != RMQ_COMMIT_MESSAGE && state != RMQ_ROLLBACK_MESSAGE && state != RMQ_UNKNOW) {
        rmqi_log(&b->env, RMQ_LOG_WARN, "checkLocalTransaction returned %d for %s: taken as UNKNOW", state, e.msg_id);
        state = RMQ_UNKNOW;
      }
    }
    rmqi_store_unpin(pin);
    atomic_fetch_sub(&cp->tx_checking, 1);
    pthread_mutex_lock(&b->tx_lock);
    rc = tx_end_locked(b, group, puts[0].phys_offset, (int32_t)puts[0].size, puts[0].queue_offset, state, 1);
    pthread_mutex_unlock(&b->tx_lock);
  }
  tx_advance(b, hq, first_open >= 0 ? first_open : i);
  pthread_mutex_unlock(&b->tx_check_lock);
  return rc;
}

/* ======================================================================= */
/* Timer messages (RocketMQ 5's TimerMessageStore, in small)               */
/* ======================================================================= */

/* Pending timed messages are a binary min-heap of (due, queue offset in
** rmq_sys_wheel_timer): 16 bytes each, the next due at the top, O(log n)
** to add or take one. The service reads the timer queue from tm_read into
** the heap (each record's TIMER_OUT_MS), delivers what is due, and sleeps
** until the top's due time. config/rmq_timer.bin keeps the heap across
** restarts (see tm_snap_take and TM_FILE). */

static int tm_less(const tm_ent *a, const tm_ent *b) { return a->due < b->due || (a->due == b->due && a->qoff < b->qoff); }

static void tm_sift_down(tm_ent *h, size_t n, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < n && tm_less(&h[l], &h[m])) m = l;
    if (l + 1 < n && tm_less(&h[l + 1], &h[m])) m = l + 1;
    if (m == i) return;
    tm_ent t = h[i]; h[i] = h[m]; h[m] = t;
    i = m;
  }
}

static int tm_push(rmq_broker *b, int64_t due, int64_t qoff)
{
  if (b->tm_n == b->tm_cap) {
    size_t ncap = b->tm_cap ? b->tm_cap * 2 : 1024;
    tm_ent *nh = rmqi_realloc(b->tm_heap, b->tm_cap * sizeof *nh, ncap * sizeof *nh);
    if (!nh) return rmqi_err(RMQ_ENOMEM, "out of memory: %zu timer messages pending", b->tm_n);
    b->tm_heap = nh;
    b->tm_cap = ncap;
  }
  tm_ent *h = b->tm_heap;
  size_t i = b->tm_n++;
  h[i].due = due;
  h[i].qoff = qoff;
  while (i > 0 && tm_less(&h[i], &h[(i - 1) / 2])) {
    tm_ent t = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = t;
    i = (i - 1) / 2;
  }
  return RMQ_OK;
}

static void tm_pop(rmq_broker *b)
{
  b->tm_heap[0] = b->tm_heap[--b->tm_n];
  tm_sift_down(b->tm_heap, b->tm_n, 0);
}

/* The due time of the timed record at phys/size: TIMER_OUT_MS + precision
** (RocketMQ delivers slot TIMER_OUT_MS once it has passed). -1 when the
** record is gone or has no TIMER_OUT_MS. */
static int64_t tm_record_due(rmq_broker *b, int64_t phys, int32_t size, char *uniq, size_t ucap)
{
  void *pin;
  const uint8_t *rec = rmqi_store_record_pin(b->st, phys, size, &pin);
  rmqi_record r;
  char v[24];
  int64_t out = -1;
  if (rec && rmqi_record_decode(rec, (size_t)size, 0, &r) == RMQ_OK && rec_prop(&r, "TIMER_OUT_MS", v, sizeof v) &&
      parse_long(v, strlen(v), &out))
    out = rmqi_add_sat(out, b->o.timer_precision_ms); /* TIMER_OUT_MS may be any long */
  else
    out = -1;
  if (uniq && (out < 0 || !rec_prop(&r, "UNIQ_KEY", uniq, ucap))) uniq[0] = 0;
  rmqi_store_unpin(pin);
  return out;
}

/* tm_lock held. Reads the timer queue's new units into the heap. */
static int tm_enqueue(rmq_broker *b, rmqi_queue *q)
{
  uint8_t ub[64 * RMQI_CQ_UNIT];
  if (b->tm_read < rmqi_queue_min_offset(q)) b->tm_read = rmqi_queue_min_offset(q);
  for (;;) {
    int k = rmqi_queue_read_units(q, b->tm_read, ub, 64);
    if (k <= 0) return k < 0 ? k : RMQ_OK;
    for (int i = 0; i < k; i++) {
      const uint8_t *u = ub + i * RMQI_CQ_UNIT;
      int64_t due = tm_ring_get(b, b->tm_read);
      if (due < 0) due = tm_record_due(b, (int64_t)rmqi_get64(u), (int32_t)rmqi_get32(u + 8), NULL, 0);
      if (due < 0) {
        rmqi_log(&b->env, RMQ_LOG_WARN, "timer message %" PRId64 " is unreadable or lacks TIMER_OUT_MS; skipped", b->tm_read);
      } else {
        int rc = tm_push(b, due, b->tm_read);
        if (rc) return rc;
      }
      b->tm_read++;
      b->tm_dirty = 1;
    }
  }
}

/* The delivered copy of timed record rec: to REAL_TOPIC / REAL_QID, with
** TIMER_ENQUEUE_MS (when it entered the timer: its store time) and
** TIMER_DEQUEUE_MS (now) added; the rest as RocketMQ's TimerMessageStore
** leaves it (TIMER_OUT_MS, REAL_TOPIC and REAL_QID stay, UNIQ_KEY too, so
** the msgId is the sender's). tm_lock held. */
static int tm_reput(rmq_broker *b, int64_t phys, int32_t size, int64_t now)
{
  void *pin;
  const uint8_t *rec = rmqi_store_record_pin(b->st, phys, size, &pin);
  rmqi_record r;
  int rc = RMQ_OK;
  char topic[256], qs[16];
  if (!rec || rmqi_record_decode(rec, (size_t)size, 0, &r) != RMQ_OK || !rec_prop(&r, "REAL_TOPIC", topic, sizeof topic) ||
      !rec_prop(&r, "REAL_QID", qs, sizeof qs)) {
    rc = rmqi_err(RMQ_ECORRUPT, "timer message at %" PRId64 " is unreadable or lacks REAL_TOPIC/REAL_QID", phys);
    goto out;
  }
  if (rmqi_store_topic_deleted_at(b->st, topic, phys)) {
    rmqi_log(&b->env, RMQ_LOG_INFO, "timer message at %" PRId64 " for deleted topic %s dropped", phys, topic);
    goto out;
  }
  rmqi_topic *t = rmqi_topic_find(b->st, topic);
  if (!t && (rc = rmqi_topic_create(b->st, topic, b->o.default_topic_queue_nums < 4 ? b->o.default_topic_queue_nums : 4, &t)))
    goto out;
  int qid = atoi(qs), nq = rmqi_topic_nqueues(t);
  if (nq < 1) {
    rc = rmqi_err(RMQ_ENOTOPIC, "topic %s has no queues", topic);
    goto out;
  }
  if (qid < 0 || qid >= nq) qid = (qid < 0 ? 0 : qid) % nq;
  rmqi_buf pb = {0};
  static const char *const drop[] = {"TIMER_ENQUEUE_MS", "TIMER_DEQUEUE_MS", NULL};
  props_copy_except(&pb, r.props, (size_t)r.props_len, drop);
  char v[24];
  snprintf(v, sizeof v, "%" PRId64, r.store_ts);
  prop_append(&pb, "TIMER_ENQUEUE_MS", v, strlen(v));
  snprintf(v, sizeof v, "%" PRId64, now);
  prop_append(&pb, "TIMER_DEQUEUE_MS", v, strlen(v));
  rmqi_put put = {0};
  if (pb.oom) rc = rmqi_err(RMQ_ENOMEM, "out of memory delivering a timer message");
  else if (pb.len > RMQ_PROPERTIES_MAX_LEN) rc = rmqi_err(RMQ_ECORRUPT, "timer message at %" PRId64 ": properties too long to deliver", phys);
  else if (!(put.size = (uint32_t)record_rebuild(&b->tmbuf, &b->tmbuf_cap, rec, &r, topic, qid, pb.p, pb.len, r.reconsume_times)))
    rc = rmqi_err(RMQ_ENOMEM, "out of memory delivering a timer message");
  rmqi_buf_free(&pb);
  if (rc) goto out;
  put.rec = b->tmbuf;
  put.q = rmqi_topic_queue(t, qid);
  put.tags_code = props_tags_code(r.props, (size_t)r.props_len);
  put.store_ts = now;
  rc = rmqi_store_put(b->st, &put, 1);
out:
  rmqi_store_unpin(pin);
  return rc;
}

/* config/rmq_timer.bin: "RMQTIMR1", the next timer-queue unit to read, the
** CommitLog end the heap reflects (deliveries after it are found again by
** their records), the count, then (TIMER_OUT_MS, queue offset) per pending
** message, all big-endian, and a CRC-32 of everything before it. Written
** after the CommitLog is flushed to that end, atomically (temp file,
** rename), with tm_lock held so no delivery runs meanwhile. */
#define TM_FILE "rmq_timer.bin"
#define TM_MAGIC "RMQTIMR1"

/* A copy of the heap to write: taken under tm_lock (a memcpy), written
** without it, by a thread of its own when the service thread runs, so a
** snapshot of a million pending messages (16 MB and an fsync) never holds
** up a delivery. One is in flight at a time (tm_snap_busy), so they reach
** the disk in the order they were taken. */

/* tm_lock held, no snapshot in flight: marks one in flight and copies. */
static tm_snap *tm_snap_take(rmq_broker *b)
{
  tm_snap *s = &b->tm_snap;
  if (b->tm_n > s->cap) {
    size_t ncap = b->tm_n + b->tm_n / 4;
    tm_ent *ne = rmqi_realloc(s->ents, s->cap * sizeof *ne, ncap * sizeof *ne);
    if (!ne) return NULL;
    s->ents = ne;
    s->cap = ncap;
  }
  if (b->tm_n) memcpy(s->ents, b->tm_heap, b->tm_n * sizeof *s->ents);
  s->b = b;
  s->n = b->tm_n;
  s->read = b->tm_read;
  /* Deliveries the copy reflects lie below the CommitLog's end now. */
  s->mark = rmqi_store_max_phys(b->st);
  b->tm_snap_busy = 1;
  b->tm_dirty = 0;
  return s;
}

/* Writes s, then ends the in-flight mark. No tm_lock held. */
static int tm_snap_write(tm_snap *s)
{
  rmq_broker *b = s->b;
  int rc = rmqi_store_flush_commitlog(b->st); /* what the copy says was delivered is on disk */
  size_t len = 8 + 24 + s->n * 16 + 4;
  if (!rc && len > s->enc_cap) {
    size_t ncap = len + len / 4;
    uint8_t *nb = rmqi_realloc(s->enc, s->enc_cap, ncap);
    if (nb) { s->enc = nb; s->enc_cap = ncap; }
    else rc = rmqi_err(RMQ_ENOMEM, "out of memory writing " TM_FILE);
  }
  if (!rc) {
    uint8_t *buf = s->enc;
    memcpy(buf, TM_MAGIC, 8);
    rmqi_put64(buf + 8, (uint64_t)s->read);
    rmqi_put64(buf + 16, (uint64_t)s->mark);
    rmqi_put64(buf + 24, (uint64_t)s->n);
    uint8_t *w = buf + 32;
    for (size_t i = 0; i < s->n; i++, w += 16) {
      rmqi_put64(w, (uint64_t)(s->ents[i].due - b->o.timer_precision_ms));
      rmqi_put64(w + 8, (uint64_t)s->ents[i].qoff);
    }
    rmqi_put32(w, rmqi_crc32(buf, len - 4));
    rc = rmqi_store_write_config(b->st, TM_FILE, (const char *)buf, len);
  }
  if (!rc) {
    /* RocketMQ's own checkpoint (config/timercheck, 4096 bytes): with no
    ** timer log of its own, a RocketMQ broker opening this store reads the
    ** timer queue from lastTimerQueueOffset, the oldest message still
    ** pending here, so it delivers what is pending (and again what rmq
    ** delivered after that one) rather than the whole queue. */
    int64_t low = s->read;
    for (size_t i = 0; i < s->n; i++) if (s->ents[i].qoff < low) low = s->ents[i].qoff;
    uint8_t cp[4096];
    memset(cp, 0, sizeof cp);
    rmqi_put64(cp, (uint64_t)(rmqi_now(&b->env) / 1000 * 1000)); /* lastReadTimeMs */
    rmqi_put64(cp + 16, (uint64_t)low);                           /* lastTimerQueueOffset */
    rmqi_put64(cp + 24, (uint64_t)low);                           /* masterTimerQueueOffset */
    rc = rmqi_store_write_config(b->st, "timercheck", (const char *)cp, sizeof cp);
  }
  pthread_mutex_lock(&b->tm_lock);
  if (rc) b->tm_dirty = 1; /* tried again at the next turn */
  b->tm_snap_busy = 0;
  pthread_cond_broadcast(&b->tm_snap_cond);
  pthread_mutex_unlock(&b->tm_lock);
  return rc;
}

static void *tm_snap_main(void *arg)
{
  tm_snap *s = arg;
  rmq_broker *b = s->b;
  if (tm_snap_write(s)) rmqi_log(&b->env, RMQ_LOG_ERROR, "timer snapshot: %s", rmq_errmsg());
  return NULL;
}

/* Joins a finished snapshot thread, or (wait) waits for one in flight.
** tm_lock held. */
static void tm_snap_reap(rmq_broker *b, int wait)
{
  while (wait && b->tm_snap_busy) pthread_cond_wait(&b->tm_snap_cond, &b->tm_lock);
  if (b->tm_snap_thr_started && !b->tm_snap_busy) {
    pthread_join(b->tm_snap_thr, NULL);
    b->tm_snap_thr_started = 0;
  }
}

typedef struct tm_hit {
  int64_t out;                 /* TIMER_OUT_MS of a delivered copy */
  char uniq[RMQ_MSG_ID_SIZE];  /* its UNIQ_KEY */
  int used;
} tm_hit;

typedef struct tm_seen {
  tm_hit *v;
  size_t n, cap;
  int oom;
} tm_seen;

static int tm_hit_cmp(const void *a, const void *b)
{
  const tm_hit *x = a, *y = b;
  if (x->out != y->out) return x->out < y->out ? -1 : 1;
  return strcmp(x->uniq, y->uniq);
}

/* A delivered copy of a timed message: not in the timer topic, with
** TIMER_DEQUEUE_MS, TIMER_OUT_MS and UNIQ_KEY. */
static int tm_seen_rec(void *ctx, const rmqi_record *r, int64_t phys)
{
  tm_seen *s = ctx;
  (void)phys;
  char v[24], dq[24];
  tm_hit h = {0};
  if (r->topic_len == (int)sizeof TIMER_TOPIC - 1 && !memcmp(r->topic, TIMER_TOPIC, sizeof TIMER_TOPIC - 1)) return 0;
  if (!rec_prop(r, "TIMER_DEQUEUE_MS", dq, sizeof dq) || !rec_prop(r, "TIMER_OUT_MS", v, sizeof v) ||
      !parse_long(v, strlen(v), &h.out) || !rec_prop(r, "UNIQ_KEY", h.uniq, sizeof h.uniq))
    return 0;
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 256;
    tm_hit *nv = rmqi_realloc(s->v, s->cap * sizeof *nv, ncap * sizeof *nv);
    if (!nv) { s->oom = 1; return RMQ_ENOMEM; }
    s->v = nv;
    s->cap = ncap;
  }
  s->v[s->n++] = h;
  return 0;
}

/* At open: the heap from config/rmq_timer.bin, the timer queue's units
** after it, and, when the CommitLog goes on past the snapshot's end (a
** crash), the messages delivered since then taken out again, found by
** their delivered copies (TIMER_DEQUEUE_MS, with the same UNIQ_KEY and
** TIMER_OUT_MS). So nothing is delivered twice nor lost across a crash. */
static int timer_load(rmq_broker *b)
{
  rmqi_topic *tt = rmqi_topic_find(b->st, TIMER_TOPIC);
  if (!tt) return RMQ_OK;
  rmqi_queue *q = rmqi_topic_queue(tt, 0);
  int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q), pr = b->o.timer_precision_ms;
  char *text;
  size_t len;
  int64_t mark = -1;
  b->tm_read = min;
  int rc = rmqi_store_read_blob(b->st, TM_FILE, &text, &len);
  if (rc && rc != RMQ_ENOTFOUND) return rc;
  if (!rc) {
    const uint8_t *p = (const uint8_t *)text;
    uint64_t cnt = len >= 36 ? rmqi_get64(p + 24) : 0;
    if (len < 36 || memcmp(p, TM_MAGIC, 8) || cnt > (len - 36) / 16 || len != 36 + cnt * 16 ||
        rmqi_get32(p + len - 4) != rmqi_crc32(p, len - 4)) {
      rmqi_log(&b->env, RMQ_LOG_ERROR, "config/" TM_FILE " is damaged: every timer message still stored is "
               "delivered again at its time");
    } else {
      int64_t rd = (int64_t)rmqi_get64(p + 8);
      mark = (int64_t)rmqi_get64(p + 16);
      for (uint64_t i = 0; i < cnt && !rc; i++) {
        int64_t out = (int64_t)rmqi_get64(p + 32 + i * 16), qoff = (int64_t)rmqi_get64(p + 40 + i * 16);
        if (qoff >= min && qoff < max) rc = tm_push(b, rmqi_add_sat(out, pr), qoff);
      }
      b->tm_read = rd < min ? min : rd > max ? max : rd;
    }
    rmqi_free(text, len + 1);
    if (rc) return rc;
  }
  if ((rc = tm_enqueue(b, q))) return rc;
  int64_t end = rmqi_store_max_phys(b->st);
  if (mark < 0) {
    /* No snapshot (a first run cut short, or a store RocketMQ wrote):
    ** whatever was delivered lies after the queue's first record. */
    uint8_t u[RMQI_CQ_UNIT];
    mark = rmqi_queue_read_units(q, min, u, 1) == 1 ? (int64_t)rmqi_get64(u) : end;
  }
  if (mark < end && b->tm_n) {
    tm_seen s = {0};
    rc = rmqi_store_scan(b->st, mark, end, tm_seen_rec, &s);
    if (s.oom) rc = rmqi_err(RMQ_ENOMEM, "out of memory recovering timer messages");
    size_t dropped = 0;
    if (!rc && s.n) qsort(s.v, s.n, sizeof *s.v, tm_hit_cmp);
    for (size_t i = 0; i < b->tm_n && !rc && s.n; i++) {
      tm_hit key = {.out = rmqi_sub_sat(b->tm_heap[i].due, pr)};
      /* The time first: only a message due then is read for its id. */
      size_t lo = 0, hi = s.n;
      while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s.v[mid].out < key.out) lo = mid + 1;
        else hi = mid;
      }
      if (lo == s.n || s.v[lo].out != key.out) continue;
      uint8_t u[RMQI_CQ_UNIT];
      if (rmqi_queue_read_units(q, b->tm_heap[i].qoff, u, 1) != 1) continue;
      if (tm_record_due(b, (int64_t)rmqi_get64(u), (int32_t)rmqi_get32(u + 8), key.uniq, sizeof key.uniq) < 0 || !key.uniq[0])
        continue;
      for (size_t k = lo; k < s.n && s.v[k].out == key.out; k++)
        if (!s.v[k].used && !strcmp(s.v[k].uniq, key.uniq)) {
          s.v[k].used = 1;
          b->tm_heap[i--] = b->tm_heap[--b->tm_n]; /* delivered before the crash */
          dropped++;
          break;
        }
    }
    rmqi_free(s.v, s.cap * sizeof *s.v);
    if (rc) return rc;
    if (dropped)
      rmqi_log(&b->env, RMQ_LOG_INFO, "recovery: %zu timer messages were delivered after the last snapshot", dropped);
  }
  for (size_t i = b->tm_n / 2; i-- > 0;) tm_sift_down(b->tm_heap, b->tm_n, i);
  b->tm_dirty = 1;
  return RMQ_OK;
}

static void broker_free_txtm(rmq_broker *b)
{
  i64set_free(&b->tx_done);
  rmqi_free(b->txrec, b->txrec_cap);
  rmqi_free(b->txop, b->txop_cap);
  rmqi_free(b->tm_heap, b->tm_cap * sizeof *b->tm_heap);
  rmqi_free(b->tmbuf, b->tmbuf_cap);
  if (atomic_load(&b->tm_ring)) rmqi_free(atomic_load(&b->tm_ring), TM_RING * sizeof(tm_slot));
  rmqi_free(b->tm_snap.ents, b->tm_snap.cap * sizeof *b->tm_snap.ents);
  rmqi_free(b->tm_snap.enc, b->tm_snap.enc_cap);
  pthread_mutex_destroy(&b->tx_lock);
  pthread_mutex_destroy(&b->tx_check_lock);
  pthread_mutex_destroy(&b->tm_lock);
  pthread_cond_destroy(&b->tm_snap_cond);
}

/* Delivers the timed messages that are due, in due order, and says when
** the next is. Snapshots the heap every flush_consumer_offset_interval;
** force_snapshot: only reads new units and snapshots now (flush, close). */
static int timer_due(rmq_broker *b, int64_t now, int64_t *next, int force_snapshot)
{
  rmqi_topic *tt = rmqi_topic_find(b->st, TIMER_TOPIC);
  if (!tt) return RMQ_OK;
  if (force_snapshot) pthread_mutex_lock(&b->tm_lock);
  else if (pthread_mutex_trylock(&b->tm_lock) != 0) return RMQ_OK;
  rmqi_queue *q = rmqi_topic_queue(tt, 0);
  int rc = tm_enqueue(b, q);
  while (!rc && !force_snapshot && b->tm_n && b->tm_heap[0].due <= now) {
    tm_ent e = b->tm_heap[0];
    uint8_t u[RMQI_CQ_UNIT];
    if (e.qoff < rmqi_queue_min_offset(q) || rmqi_queue_read_units(q, e.qoff, u, 1) != 1 ||
        (int64_t)rmqi_get64(u) < rmqi_store_min_phys(b->st)) {
      rmqi_log(&b->env, RMQ_LOG_WARN, "timer message %" PRId64 ": deleted by retention before its delivery time; skipped", e.qoff);
    } else {
      rc = tm_reput(b, (int64_t)rmqi_get64(u), (int32_t)rmqi_get32(u + 8), now);
      if (rc == RMQ_ECORRUPT) {
        rmqi_log(&b->env, RMQ_LOG_ERROR, "timer message %" PRId64 ": %s; skipped", e.qoff, rmq_errmsg());
        rc = RMQ_OK;
      }
      if (rc) break; /* retried at the next turn */
    }
    tm_pop(b);
    b->tm_dirty = 1;
  }
  if (b->tm_n && rmqi_sub_sat(b->tm_heap[0].due, now) < *next) *next = rmqi_sub_sat(b->tm_heap[0].due, now);
  int rc2 = RMQ_OK;
  tm_snap_reap(b, force_snapshot);
  tm_snap *snap = NULL;
  if (b->tm_dirty && !b->tm_snap_busy && (force_snapshot || now >= b->tm_next_snap)) {
    b->tm_next_snap = now + b->o.flush_consumer_offset_interval;
    if (!(snap = tm_snap_take(b))) rc2 = rmqi_err(RMQ_ENOMEM, "out of memory copying the timer heap");
  }
  if (snap && !force_snapshot && b->dlv.started && pthread_equal(pthread_self(), b->dlv.thr)) {
    if (pthread_create(&b->tm_snap_thr, NULL, tm_snap_main, snap) == 0) {
      b->tm_snap_thr_started = 1;
      snap = NULL;
    }
  }
  pthread_mutex_unlock(&b->tm_lock);
  if (snap) rc2 = tm_snap_write(snap);
  return rc ? rc : rc2;
}


/* ======================================================================= */
/* Queue allocation (AllocateMessageQueueAveragely)                        */
/* ======================================================================= */

/* Queues [*start, *start + *count) of n go to client i of c. */
static void allocate_averagely(int n, int c, int i, int *start, int *count)
{
  if (i < 0 || i >= c || n <= 0) { *start = 0; *count = 0; return; }
  int mod = n % c;
  int avg = n <= c ? 1 : (mod > 0 && i < mod ? n / c + 1 : n / c);
  int st = (mod > 0 && i < mod) ? i * avg : i * avg + mod;
  int cnt = n - st < avg ? n - st : avg;
  *start = st;
  *count = cnt < 0 ? 0 : cnt;
}

/* ======================================================================= */
/* Push consumer                                                           */
/* ======================================================================= */

/* A subscription's filter; SQL92 needs enablePropertyFilter, as in RocketMQ. */
static int filter_compile(rmq_broker *b, int type, const char *expr, rmqi_filter *f)
{
  memset(f, 0, sizeof *f);
  if (type == RMQ_SELECTOR_SQL92 && !b->o.enable_property_filter)
    return rmqi_err(RMQ_ENOTSUP, "The broker does not support consumer to filter message by SQL92 "
                    "(enable_property_filter is off)");
  return rmqi_filter_compile(type, expr, f);
}

typedef struct sub {
  char *topic;
  char *expr;
  rmqi_filter f;
  offent *offs;
  rmqi_stat *gs;           /* the group's get counters of the topic */
  int is_retry;            /* the group's %RETRY% topic */
} sub;

struct pq;

typedef struct req {
  struct req *next;
  struct pq *pq;
  int first;               /* slot index */
  int n;
  int64_t due_us;          /* redelivery time (monotonic), 0 = now */
  int resume;              /* orderly: a suspended request, its queue still busy with it */
} req;

/* A queue this consumer holds: a ring of message slots in flight. */
typedef struct pq {
  struct pq *next;
  sub *sb;
  rmqi_queue *q;
  int qid;
  int64_t pull_offset;     /* the puller: next unit to read */
  int cap;
  rmq_message_ext *slots;
  void **pins;             /* pins[i]: slot i's CommitLog file (the view stays valid under retention) */
  uint8_t *done;           /* mu */
  req *reqs;               /* reqs[i]: the request starting at slot i */
  const rmq_message_ext **ptrs;
  int head, count;         /* mu */
  int inflight;            /* mu: requests queued or running */
  int dropped;             /* mu */
  int busy;                /* mu, orderly: a request of this queue is running or suspended */
  int no_commit;           /* mu: dropped by an offset reset, whose offsets win */
  int locked;              /* mu: this pq holds the queue's lock: it alone commits */
  int64_t dropped_us;      /* mu: when it was dropped (monotonic), for handover_timeout_ms */
} pq;

typedef struct assign {
  sub *sb;
  int qid;
} assign;

struct rmq_push_consumer {
  uint32_t magic;              /* MAGIC_PUSH while alive */
  rmq_broker *b;
  char *group;
  char client_id[160];
  rmq_push_consumer_options o;
  sub *subs;
  int nsubs;
  rmq_listener_concurrently listener;
  rmq_listener_orderly listener_orderly; /* set instead of listener for orderly consumption */
  void *listener_ctx;
  int started, stopped;
  struct rmq_push_consumer *next_member; /* group_lock */

  /* mu: process queues, the request queue, assignment hand-over. */
  pthread_mutex_t mu;
  pthread_cond_t work_cond;    /* consume threads: work queued, or stop */
  pthread_cond_t gen_cond;     /* rebalance: assignment applied */
  req *work_head, *work_tail;  /* due now */
  req *later;                  /* redeliveries, sorted by due_us */
  pq *pqs;                     /* the puller's list (the leader writes it, under mu) */
  pq *graveyard;               /* dropped, awaiting idle */
  assign *target;
  int ntarget;
  unsigned target_gen, applied_gen;
  int stop;
  atomic_int throttled;       /* the puller found a queue full */

  /* Leader/follower: the consume threads take turns as the puller (mu).
  ** `leader` is set while one pulls; `fresh` counts the requests its turn
  ** queued, one wake-up each (and one to hand the pulling on). */
  int leader;
  int fresh;
  int running, pool;         /* mu: threads in a listener, and the most allowed */
  pthread_t *workers;
  int nworkers;

  /* Broadcasting: the consumer's own offsets (RocketMQ's LocalFileOffsetStore),
  ** in config/<bc_file>, written every persist interval when changed. */
  char bc_file[320];
  atomic_int bc_dirty;
  int64_t bc_next_us;        /* the puller */
};

static inline int push_ok(const rmq_push_consumer *c) { return c && c->magic == MAGIC_PUSH; }
static int bad_push(const rmq_push_consumer *c, const char *fn) { return bad_handle(c, fn, "push consumer", "destroyed"); }

RMQ_API void rmq_push_consumer_options_init(rmq_push_consumer_options *o)
{
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->message_model = RMQ_CLUSTERING;
  o->consume_from_where = RMQ_CONSUME_FROM_LAST_OFFSET;
  o->consume_thread_min = 20;
  o->consume_thread_max = 20;
  o->pull_batch_size = 32;
  o->consume_message_batch_max_size = 1;
  o->pull_threshold_for_queue = 1000;
  o->max_reconsume_times = -1;
  o->persist_consumer_offset_interval = 5000;
  o->reconsume_delay_ms = 1000;
  o->suspend_current_queue_time_millis = 1000;
  o->handover_timeout_ms = 60000;
}

RMQ_API int rmq_push_consumer_create(rmq_broker *b, const char *group, const rmq_push_consumer_options *opts,
                                     rmq_push_consumer **out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_push_consumer_create");
  if (b->o.read_only) return ro_refused(b, "rmq_push_consumer_create");
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_push_consumer_create: out is NULL");
  int rc = check_group(group);
  if (rc) return rc;
  rmq_push_consumer_options o;
  if (opts) o = *opts;
  else rmq_push_consumer_options_init(&o);
  if (o.message_model != RMQ_CLUSTERING && o.message_model != RMQ_BROADCASTING)
    return rmqi_err(RMQ_EINVAL, "message_model %d is neither RMQ_CLUSTERING nor RMQ_BROADCASTING", o.message_model);
  if (o.consume_from_where < RMQ_CONSUME_FROM_LAST_OFFSET || o.consume_from_where > RMQ_CONSUME_FROM_TIMESTAMP)
    return rmqi_err(RMQ_EINVAL, "consume_from_where %d out of range", o.consume_from_where);
  if (o.consume_thread_min < 1 || o.consume_thread_min > 1000 || o.consume_thread_max > 1000)
    return rmqi_err(RMQ_EINVAL, "consume_thread_min %d out of range 1..1000", o.consume_thread_min);
  if (o.pull_batch_size < 1 || o.pull_batch_size > 1024)
    return rmqi_err(RMQ_EINVAL, "pull_batch_size %d out of range 1..1024", o.pull_batch_size);
  if (o.consume_message_batch_max_size < 1 || o.consume_message_batch_max_size > 1024)
    return rmqi_err(RMQ_EINVAL, "consume_message_batch_max_size %d out of range 1..1024", o.consume_message_batch_max_size);
  if (o.pull_threshold_for_queue < 1 || o.pull_threshold_for_queue > 65535)
    return rmqi_err(RMQ_EINVAL, "pull_threshold_for_queue %d out of range 1..65535", o.pull_threshold_for_queue);
  if (o.reconsume_delay_ms < 0) return rmqi_err(RMQ_EINVAL, "reconsume_delay_ms is negative");
  if (o.suspend_current_queue_time_millis < 0) return rmqi_err(RMQ_EINVAL, "suspend_current_queue_time_millis is negative");
  if (o.handover_timeout_ms < 0) return rmqi_err(RMQ_EINVAL, "handover_timeout_ms is negative");
  if (o.instance_name && (!*o.instance_name || strlen(o.instance_name) > 100))
    return rmqi_err(RMQ_EINVAL, "instance_name must be 1..100 characters");
  rmq_push_consumer *c = rmqi_calloc(1, sizeof *c);
  if (!c) return rmqi_err(RMQ_ENOMEM, "out of memory creating a push consumer");
  c->group = rmqi_strdup(group);
  if (!c->group) { rmqi_free(c, sizeof *c); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  c->b = b;
  c->o = o;
  if (o.instance_name) snprintf(c->client_id, sizeof c->client_id, "127.0.0.1@%s", o.instance_name);
  /* RocketMQ's default instanceName is "DEFAULT" (a clustering client
  ** changes it to its pid): a broadcasting consumer's offsets file is named
  ** by it, so a restart finds it. */
  else if (o.message_model == RMQ_BROADCASTING) snprintf(c->client_id, sizeof c->client_id, "127.0.0.1@DEFAULT");
  else snprintf(c->client_id, sizeof c->client_id, "127.0.0.1@%d#%u", (int)getpid(), atomic_fetch_add(&b->next_instance, 1));
  c->o.instance_name = NULL;
  pthread_mutex_init(&c->mu, NULL);
  cond_init_mono(&c->work_cond);
  cond_init_mono(&c->gen_cond);
  if (group_hold(b, group)) {
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->work_cond);
    pthread_cond_destroy(&c->gen_cond);
    rmqi_strfree(c->group);
    rmqi_free(c, sizeof *c);
    return RMQ_ENOMEM;
  }
  c->magic = MAGIC_PUSH;
  atomic_fetch_add(&b->nhandles, 1);
  *out = c;
  return RMQ_OK;
}

RMQ_API int rmq_push_consumer_subscribe_selector(rmq_push_consumer *c, const char *topic, int type,
                                                 const char *expression)
{
  if (!push_ok(c)) return bad_push(c, "rmq_push_consumer_subscribe_selector");
  if (c->started) return rmqi_err(RMQ_ESTATE, "subscribe before rmq_push_consumer_start");
  int rc = check_topic(topic);
  if (rc) return rc;
  rmqi_filter f;
  rc = filter_compile(c->b, type, expression, &f);
  if (rc) return rc;
  char *e = rmqi_strdup(expression ? expression : "*");
  if (!e) { rmqi_filter_free(&f); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  for (int i = 0; i < c->nsubs; i++)
    if (!strcmp(c->subs[i].topic, topic)) {
      rmqi_filter_free(&c->subs[i].f);
      rmqi_strfree(c->subs[i].expr);
      c->subs[i].f = f;
      c->subs[i].expr = e;
      return RMQ_OK;
    }
  sub *ns = rmqi_realloc(c->subs, (size_t)c->nsubs * sizeof *ns, (size_t)(c->nsubs + 1) * sizeof *ns);
  if (!ns) { rmqi_filter_free(&f); rmqi_strfree(e); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  c->subs = ns;
  sub *s = &c->subs[c->nsubs];
  memset(s, 0, sizeof *s);
  s->topic = rmqi_strdup(topic);
  s->expr = e;
  s->f = f;
  s->is_retry = !strncmp(topic, "%RETRY%", 7) && !strcmp(topic + 7, c->group);
  s->gs = gstat_get(c->b, c->group, topic);
  if (!s->topic) {
    rmqi_strfree(e);
    rmqi_filter_free(&f);
    return rmqi_err(RMQ_ENOMEM, "out of memory");
  }
  c->nsubs++;
  return RMQ_OK;
}

RMQ_API int rmq_push_consumer_subscribe(rmq_push_consumer *c, const char *topic, const char *expression)
{
  if (!push_ok(c)) return bad_push(c, "rmq_push_consumer_subscribe");
  return rmq_push_consumer_subscribe_selector(c, topic, RMQ_SELECTOR_TAG, expression);
}

/* One listener, of either kind, set before start. */
static int register_listener(rmq_push_consumer *c, rmq_listener_concurrently conc, rmq_listener_orderly ord, void *ctx,
                             const char *fn)
{
  if (!push_ok(c)) return bad_push(c, fn);
  if (!conc && !ord) return rmqi_err(RMQ_EINVAL, "%s: the listener is NULL", fn);
  if (c->started) return rmqi_err(RMQ_ESTATE, "register the listener before rmq_push_consumer_start");
  c->listener = conc;
  c->listener_orderly = ord;
  c->listener_ctx = ctx;
  return RMQ_OK;
}

RMQ_API int rmq_push_consumer_register_listener_concurrently(rmq_push_consumer *c, rmq_listener_concurrently fn, void *ctx)
{
  return register_listener(c, fn, NULL, ctx, "rmq_push_consumer_register_listener_concurrently");
}

RMQ_API int rmq_push_consumer_register_listener_orderly(rmq_push_consumer *c, rmq_listener_orderly fn, void *ctx)
{
  return register_listener(c, NULL, fn, ctx, "rmq_push_consumer_register_listener_orderly");
}

/* The first offset to consume from when the group has none stored. */
static int64_t initial_offset(rmq_push_consumer *c, rmqi_queue *q)
{
  int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
  switch (c->o.consume_from_where) {
  case RMQ_CONSUME_FROM_FIRST_OFFSET: return min;
  case RMQ_CONSUME_FROM_TIMESTAMP: {
    int64_t ts = c->o.consume_timestamp ? c->o.consume_timestamp : rmqi_now(&c->b->env) - 30 * 60 * 1000;
    return rmqi_queue_offset_by_time(c->b->st, q, ts);
  }
  default:
    /* RocketMQ's broker answers 0 for a new group while the queue still
    ** holds offset 0 in memory; an embedded store always does. */
    return min == 0 ? 0 : max;
  }
}

static pq *pq_new(rmq_push_consumer *c, sub *sb, rmqi_queue *q)
{
  pq *p = rmqi_calloc(1, sizeof *p);
  if (!p) return NULL;
  p->cap = c->o.pull_threshold_for_queue;
  p->slots = rmqi_calloc((size_t)p->cap, sizeof *p->slots);
  p->done = rmqi_calloc((size_t)p->cap, 1);
  p->reqs = rmqi_calloc((size_t)p->cap, sizeof *p->reqs);
  p->ptrs = rmqi_calloc((size_t)p->cap, sizeof *p->ptrs);
  p->pins = rmqi_calloc((size_t)p->cap, sizeof *p->pins);
  if (!p->slots || !p->done || !p->reqs || !p->ptrs || !p->pins) {
    rmqi_free(p->pins, (size_t)p->cap * sizeof *p->pins);
    rmqi_free(p->slots, (size_t)p->cap * sizeof *p->slots);
    rmqi_free(p->done, (size_t)p->cap);
    rmqi_free(p->reqs, (size_t)p->cap * sizeof *p->reqs);
    rmqi_free(p->ptrs, (size_t)p->cap * sizeof *p->ptrs);
    rmqi_free(p, sizeof *p);
    return NULL;
  }
  p->sb = sb;
  p->q = q;
  p->qid = rmqi_queue_id(q);
  int64_t stored = sb->offs ? atomic_load(&sb->offs->off[p->qid]) : -1;
  int64_t off = stored >= 0 ? stored : initial_offset(c, q);
  int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
  if (off < min) off = min;
  if (off > max) off = max;
  p->pull_offset = off;
  return p;
}

static void pq_commit(rmq_push_consumer *c, pq *p);

/* mu held (or the consumer's threads stopped). Commits and gives up the
** queue's lock: its next owner starts at this commit. */
static void pq_unlock(rmq_push_consumer *c, pq *p)
{
  if (!p->locked) return;
  pq_commit(c, p);
  void *me = p;
  atomic_compare_exchange_strong(&p->sb->offs->lock[p->qid], &me, NULL);
  p->locked = 0;
  rmqi_store_wake(c->b->st); /* a consumer waiting for the lock may go on */
}

/* Puller: takes the lock of p's queue, or says to retry (the previous owner
** is still finishing its calls on it). The new owner starts where the old
** one committed. */
static int pq_lock(rmq_push_consumer *c, pq *p)
{
  if (p->locked || !p->sb->offs) return 1;
  void *none = NULL;
  if (!atomic_compare_exchange_strong(&p->sb->offs->lock[p->qid], &none, (void *)p)) return 0;
  pthread_mutex_lock(&c->mu);
  if (p->no_commit) {
    /* An offset reset replaces this pq at the next apply: reading the reset
    ** offset here would deliver from it twice (here and in the new pq). */
    void *me = p;
    atomic_compare_exchange_strong(&p->sb->offs->lock[p->qid], &me, NULL);
    pthread_mutex_unlock(&c->mu);
    return 0;
  }
  p->locked = 1;
  int64_t stored = atomic_load(&p->sb->offs->off[p->qid]);
  if (stored >= 0 && p->count == 0) {
    int64_t min = rmqi_queue_min_offset(p->q), max = rmqi_queue_max_offset(p->q);
    p->pull_offset = stored < min ? min : stored > max ? max : stored;
  }
  pthread_mutex_unlock(&c->mu);
  return 1;
}

/* mu held (or the consumer's last thread). Removes the done messages at the
** head of p, dropping their pins. */
static void pq_pop_done(pq *p)
{
  while (p->count && p->done[p->head]) {
    p->done[p->head] = 0;
    rmqi_store_unpin(p->pins[p->head]);
    p->pins[p->head] = NULL;
    p->head = (p->head + 1) % p->cap;
    p->count--;
  }
}

static void pq_free(pq *p)
{
  for (int i = 0; i < p->count; i++) rmqi_store_unpin(p->pins[(p->head + i) % p->cap]);
  rmqi_free(p->pins, (size_t)p->cap * sizeof *p->pins);
  rmqi_free(p->slots, (size_t)p->cap * sizeof *p->slots);
  rmqi_free(p->done, (size_t)p->cap);
  rmqi_free(p->reqs, (size_t)p->cap * sizeof *p->reqs);
  rmqi_free(p->ptrs, (size_t)p->cap * sizeof *p->ptrs);
  rmqi_free(p, sizeof *p);
}

/* mu held. The group's next offset for this queue: the oldest message still
** in flight, or where pulling continues when none is. */
static void pq_commit(rmq_push_consumer *c, pq *p)
{
  /* Only the lock's holder commits: a queue not yet taken over, or one
  ** whose lock was let go after handover_timeout_ms, is another's. */
  if (!p->locked || p->no_commit) return;
  int64_t off = p->count ? p->slots[p->head].queue_offset : p->pull_offset;
  if (c->o.message_model == RMQ_BROADCASTING) {
    if (atomic_exchange(&p->sb->offs->off[p->qid], off) != off) atomic_store(&c->bc_dirty, 1);
  } else {
    off_set(c->b, p->sb->offs, p->qid, off);
  }
}

/* mu held. Unlinks p's requests from the list at *head (tail: its last
** element's pointer, updated; NULL for the sorted `later` list). */
static void req_purge(rmq_push_consumer *c, pq *p, req **head, req **tail)
{
  req *prev = NULL;
  for (req **rp = head; *rp;) {
    req *r = *rp;
    if (r->pq != p) { prev = r; rp = &r->next; continue; }
    *rp = r->next;
    r->next = NULL;
    if (r->resume) { p->busy = 0; r->resume = 0; } /* an orderly SUSPEND held the queue */
    p->inflight--;
  }
  if (tail) *tail = prev;
  (void)c;
}

/* Puller: applies a new assignment. mu held. */
static void apply_assignment(rmq_push_consumer *c)
{
  /* Drop queues no longer assigned. */
  for (pq **pp = &c->pqs; *pp;) {
    pq *p = *pp;
    int keep = 0;
    for (int i = 0; i < c->ntarget && !p->no_commit; i++) /* an offset reset re-takes the queue */
      if (c->target[i].sb == p->sb && c->target[i].qid == p->qid) keep = 1;
    if (keep) { pp = &p->next; continue; }
    p->dropped = 1;
    p->dropped_us = rmqi_mono_us();
    *pp = p->next;
    p->next = c->graveyard;
    c->graveyard = p;
    /* Its requests not yet running are the next owner's to deliver: they
    ** leave the queues and their messages stay unconsumed here. Once the
    ** running ones return, the offset is committed and the lock let go. */
    req_purge(c, p, &c->work_head, &c->work_tail);
    req_purge(c, p, &c->later, NULL);
    if (p->inflight == 0 || c->o.handover_timeout_ms == 0) pq_unlock(c, p);
  }
  /* Add newly assigned queues. */
  for (int i = 0; i < c->ntarget; i++) {
    int have = 0;
    for (pq *p = c->pqs; p; p = p->next)
      if (p->sb == c->target[i].sb && p->qid == c->target[i].qid) have = 1;
    if (have) continue;
    rmqi_topic *t = rmqi_topic_find(c->b->st, c->target[i].sb->topic);
    rmqi_queue *q = t ? rmqi_topic_queue(t, c->target[i].qid) : NULL;
    if (!q) continue;
    pq *p = pq_new(c, c->target[i].sb, q);
    if (!p) {
      rmqi_log(&c->b->env, RMQ_LOG_ERROR, "consumer %s: out of memory taking queue %s/%d", c->client_id,
               c->target[i].sb->topic, c->target[i].qid);
      continue;
    }
    p->next = c->pqs;
    c->pqs = p;
  }
  c->applied_gen = c->target_gen;
  pthread_cond_broadcast(&c->gen_cond);
}

static int client_cmp(const void *a, const void *b)
{
  return strcmp((*(rmq_push_consumer *const *)a)->client_id, (*(rmq_push_consumer *const *)b)->client_id);
}

/* Started push consumers of one group in one process (start refuses more). */
#define GROUP_MAX_MEMBERS 256

/* group_lock held. Recomputes the assignment of every started consumer of
** `group` and waits (bounded) until each has applied it, so no queue is
** pulled by two members after this returns. */
static void rebalance_group(rmq_broker *b, const char *group)
{
  rmq_push_consumer *mem[GROUP_MAX_MEMBERS];
  int n = 0;
  for (rmq_push_consumer *c = b->consumers; c && n < GROUP_MAX_MEMBERS; c = c->next_member)
    if (!strcmp(c->group, group)) mem[n++] = c;
  int nclust = 0;
  rmq_push_consumer *clust[GROUP_MAX_MEMBERS];
  for (int i = 0; i < n; i++)
    if (mem[i]->o.message_model == RMQ_CLUSTERING) clust[nclust++] = mem[i];
  qsort(clust, (size_t)nclust, sizeof *clust, client_cmp);
  for (int i = 0; i < n; i++) {
    rmq_push_consumer *c = mem[i];
    int idx = -1;
    for (int k = 0; k < nclust; k++)
      if (clust[k] == c) idx = k;
    /* Count first, so the block is exactly ntarget long (freed with that
    ** size), and fill it before the puller can see it (it reads the target
    ** under mu, maybe for an earlier rebalance not yet applied). A topic
    ** made, deleted or resized between the passes changes the count: the
    ** block is counted and filled again, never left with empty entries. */
    int na = 0;
    assign *a = NULL;
    for (int pass = 0; pass < 2; pass++) {
      if (pass == 1) {
        a = rmqi_calloc((size_t)(na ? na : 1), sizeof *a);
        if (!a) { rmqi_log(&b->env, RMQ_LOG_ERROR, "rebalance of %s: out of memory", c->client_id); break; }
      }
      int k = 0;
      for (int s = 0; s < c->nsubs; s++) {
        rmqi_topic *t = rmqi_topic_find(b->st, c->subs[s].topic);
        int nq = t ? rmqi_topic_nqueues(t) : 0;
        int st = 0, cnt = nq;
        if (c->o.message_model == RMQ_CLUSTERING) allocate_averagely(nq, nclust, idx, &st, &cnt);
        for (int q = st; q < st + cnt; q++) {
          if (pass == 1 && k < na) { a[k].sb = &c->subs[s]; a[k].qid = q; }
          k++;
        }
      }
      if (pass == 1 && k != na) {
        rmqi_free(a, (size_t)(na ? na : 1) * sizeof *a);
        a = NULL;
        pass = 0; /* the next pass fills a block of the new count */
      }
      na = k;
    }
    pthread_mutex_lock(&c->mu);
    if (a) {
      rmqi_free(c->target, (size_t)(c->ntarget ? c->ntarget : 1) * sizeof *c->target);
      c->target = a;
      c->ntarget = na;
    }
    c->target_gen++;
    pthread_mutex_unlock(&c->mu);
  }
  rmqi_store_wake(b->st);
  for (int i = 0; i < n; i++) {
    rmq_push_consumer *c = mem[i];
    struct timespec dl;
    deadline_ms(&dl, 5000);
    pthread_mutex_lock(&c->mu);
    while (c->applied_gen != c->target_gen && !c->stop)
      if (pthread_cond_timedwait(&c->gen_cond, &c->mu, &dl) == ETIMEDOUT) break;
    pthread_mutex_unlock(&c->mu);
  }
}

static void rebalance_all(rmq_broker *b)
{
  pthread_mutex_lock(&b->group_lock);
  for (rmq_push_consumer *c = b->consumers; c; c = c->next_member) {
    int first = 1;
    for (rmq_push_consumer *d = b->consumers; d != c; d = d->next_member)
      if (!strcmp(d->group, c->group)) first = 0;
    if (first) rebalance_group(b, c->group);
  }
  pthread_mutex_unlock(&b->group_lock);
}

/* mu held. Queues a request for slots [first, first+n). */
static void work_push(rmq_push_consumer *c, pq *p, int first, int n)
{
  req *r = &p->reqs[first];
  r->next = NULL;
  r->pq = p;
  r->first = first;
  r->n = n;
  r->due_us = 0;
  p->inflight++;
  if (c->work_tail) c->work_tail->next = r;
  else c->work_head = r;
  c->work_tail = r;
}

/* A message from the retry topic shows its original topic (RocketMQ's
** client resets it from RETRY_TOPIC), as the consumer's own subscription
** string so the view's topic stays NUL-terminated and alive. */
static void retry_topic_restore(rmq_push_consumer *c, rmq_message_ext *e)
{
  const char *v;
  size_t n;
  if (rmq_message_ext_property(e, "RETRY_TOPIC", &v, &n) != RMQ_OK) return;
  for (int i = 0; i < c->nsubs; i++)
    if (strlen(c->subs[i].topic) == n && !memcmp(c->subs[i].topic, v, n)) { e->topic = c->subs[i].topic; return; }
}

/* RocketMQ scans at most max(16000 bytes of units, max_nums units) per pull. */
#define PULL_SCAN_UNITS 800
/* ConsumeQueue units are copied out a batch at a time (idle files are
** unmapped at any time): at most this many per read. */
#define UNIT_BUF 256

/* Pull thread: reads units of p until a batch of matching messages fills
** free slots (or PULL_SCAN_UNITS were read, so a sparse filter still moves
** on in big steps) and queues them. Returns how many units were read. */
static int pull_queue(rmq_push_consumer *c, pq *p)
{
  if (!pq_lock(c, p)) { atomic_store(&c->throttled, 1); return 0; }
  pthread_mutex_lock(&c->mu);
  int free_slots = p->cap - p->count;
  int tail = (p->head + p->count) % p->cap;
  pthread_mutex_unlock(&c->mu);
  int want = c->o.pull_batch_size < free_slots ? c->o.pull_batch_size : free_slots;
  if (want <= 0) { atomic_store(&c->throttled, 1); return 0; }
  int64_t min = rmqi_queue_min_offset(p->q), max = rmqi_queue_max_offset(p->q);
  if (p->pull_offset < min) {
    /* Retention deleted what this queue held below min: go on at min
    ** (RocketMQ's OFFSET_TOO_SMALL, nextBeginOffset = min). */
    rmqi_log(&c->b->env, RMQ_LOG_WARN, "consumer %s: %s/%d offset %" PRId64 " was deleted by retention; continuing at %" PRId64,
             c->client_id, p->sb->topic, p->qid, p->pull_offset, min);
    pthread_mutex_lock(&c->mu);
    p->pull_offset = min;
    if (p->count == 0) pq_commit(c, p);
    pthread_mutex_unlock(&c->mu);
  }
  int got = 0, n = 0; /* matched, units read */
  int64_t got_bytes = 0;
  rmqi_cl_span sp = {0};
  while (got < want && n < PULL_SCAN_UNITS) {
    uint8_t ub[UNIT_BUF * RMQI_CQ_UNIT];
    int avail = PULL_SCAN_UNITS - n < UNIT_BUF ? PULL_SCAN_UNITS - n : UNIT_BUF;
    avail = rmqi_queue_read_units(p->q, p->pull_offset + n, ub, avail);
    if (avail <= 0) break;
    const uint8_t *u = ub;
    int i;
    for (i = 0; i < avail && got < want; i++, u += RMQI_CQ_UNIT) {
      int64_t phys = (int64_t)rmqi_get64(u);
      int32_t size = (int32_t)rmqi_get32(u + 8);
      int64_t code = (int64_t)rmqi_get64(u + 12);
      if (size == INT32_MAX || !rmqi_filter_code(&p->sb->f, code)) continue;
      const uint8_t *rec = rmqi_span_record(c->b->st, &sp, phys, size);
      int slot = (tail + got) % p->cap;
      rmq_message_ext *e = &p->slots[slot];
      /* A unit that points nowhere, at another record or with another size
      ** is the queue's damage (a rebuild mends it); a record that fails to
      ** decode otherwise is the CommitLog's. */
      int bad = !rec ? 1 : ext_fill(e, rec, size, rmqi_topic_name(rmqi_queue_topic(p->q)), c->b->broker_name) != RMQ_OK
                               ? 2 : !unit_is_record(c->b, e, p->qid, p->pull_offset + n + i);
      if (!rec && phys < rmqi_store_min_phys(c->b->st)) continue; /* deleted by retention meanwhile */
      if (bad) {
        if (bad != 2 || unit_is_bad(rec, size)) rmqi_store_note_bad_unit(c->b->st);
        rmqi_log(&c->b->env, RMQ_LOG_ERROR, "consumer %s: unreadable record at %" PRId64 " (%s/%d offset %" PRId64 "); skipped",
                 c->client_id, phys, p->sb->topic, p->qid, p->pull_offset + n + i);
        continue;
      }
      if (!rmqi_filter_record(&p->sb->f, e->tags, (size_t)e->tags_len, e->properties, (size_t)e->properties_len))
        continue;
      if (p->sb->is_retry) retry_topic_restore(c, e);
      e->min_offset = min;
      e->max_offset = max;
      p->done[slot] = 0;
      p->pins[slot] = rmqi_span_pin(&sp);
      got_bytes += size;
      got++;
    }
    n += i;
  }
  stat_add(c->b, p->sb->gs, got, got_bytes);
  rmqi_span_done(&sp);
  if (n == 0) return 0;
  pthread_mutex_lock(&c->mu);
  p->pull_offset += n;
  int bmax = c->o.consume_message_batch_max_size;
  for (int k = 0; k < got;) {
    int first = (tail + k) % p->cap;
    int len = got - k;
    if (len > bmax) len = bmax;
    if (first + len > p->cap) len = p->cap - first; /* a batch never wraps */
    work_push(c, p, first, len);
    k += len;
  }
  p->count += got;
  if (p->count == 0) pq_commit(c, p);
  /* Woken by lead_turn, one idle thread a request: a broadcast would wake
  ** all 20 to race for mu on 2 cores (~60 us, DESIGN.md 10). */
  for (int k = 0; k < got; k += bmax) c->fresh++;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* A broadcasting consumer's offsets file. */
static int bc_persist(rmq_push_consumer *c)
{
  offent **list = rmqi_calloc((size_t)(c->nsubs ? c->nsubs : 1), sizeof *list);
  if (!list) return rmqi_err(RMQ_ENOMEM, "out of memory writing %s", c->bc_file);
  int n = 0;
  for (int i = 0; i < c->nsubs; i++)
    if (c->subs[i].offs) list[n++] = c->subs[i].offs;
  atomic_store(&c->bc_dirty, 0);
  rmqi_buf buf = {0};
  offsets_json(&buf, list, n);
  rmqi_free(list, (size_t)(c->nsubs ? c->nsubs : 1) * sizeof *list);
  int rc = buf.oom ? rmqi_err(RMQ_ENOMEM, "out of memory writing %s", c->bc_file)
                   : rmqi_store_write_config(c->b->st, c->bc_file, buf.p, buf.len);
  if (rc) atomic_store(&c->bc_dirty, 1);
  rmqi_buf_free(&buf);
  return rc;
}

static void bc_load(rmq_push_consumer *c)
{
  char *text;
  size_t len;
  if (rmqi_store_read_config(c->b->st, c->bc_file, &text, &len) != RMQ_OK) return;
  int prc;
  rmqi_json *j = rmqi_json_parse(text, len, &prc);
  rmqi_free(text, len + 1);
  if (!j) {
    rmqi_log(&c->b->env, RMQ_LOG_ERROR, "config/%s is damaged; consumer %s starts over", c->bc_file, c->client_id);
    return;
  }
  const rmqi_json *tab = rmqi_json_get(j, "offsetTable");
  for (const rmqi_json *e = tab ? tab->child : NULL; e; e = e->next)
    for (int i = 0; i < c->nsubs; i++) {
      char key[512];
      snprintf(key, sizeof key, "%s@%s", c->subs[i].topic, c->group);
      if (!e->key || strcmp(e->key, key) || !c->subs[i].offs) continue;
      for (const rmqi_json *q = e->child; q; q = q->next) {
        long qid = q->key ? strtol(q->key, NULL, 10) : -1;
        if (qid >= 0 && qid < RMQ_MAX_QUEUE_NUMS && q->type == RMQI_JNUM && q->inum >= 0)
          atomic_store(&c->subs[i].offs->off[qid], q->inum);
      }
    }
  rmqi_json_free(j);
}

/* mu held; c->leader was 0. One turn as the consumer's puller (RocketMQ's
** PullMessageService, leader/follower): applies the assignment, frees
** dropped queues, pulls every queue, and with nothing new sleeps on the
** store until a publish (long polling: never a sleep loop), at most
** wait_ms (a redelivery due, -1 none). Then takes a request it queued with
** `take` and returns it (mu held) for the caller to run at once: the
** message reaches its listener with one wake-up (the publisher's, of this
** thread), and an idle thread woken here pulls next. NULL: nothing to run. */
static req *lead_turn(rmq_push_consumer *c, int64_t wait_ms, req *(*take)(rmq_push_consumer *))
{
  rmqi_store *st = c->b->st;
  c->leader = 1;
  uint64_t seq = rmqi_store_seq(st);
  if (c->applied_gen != c->target_gen) apply_assignment(c);
  /* Free dropped queues nobody works on any more. One whose listener calls
  ** outlast handover_timeout_ms lets go of its queue anyway: the next owner
  ** starts at the oldest message still in a call here, which it delivers
  ** again (what a RocketMQ client does at once). */
  int64_t now_us = rmqi_mono_us(), handover_ms = -1; /* until the next such hand-over */
  for (pq **pp = &c->graveyard; *pp;) {
    pq *p = *pp;
    if (p->inflight == 0) { *pp = p->next; pq_unlock(c, p); pq_free(p); continue; }
    int64_t left_us = p->dropped_us + (int64_t)c->o.handover_timeout_ms * 1000 - now_us;
    if (p->locked && left_us > 0 && (handover_ms < 0 || left_us / 1000 + 1 < handover_ms)) handover_ms = left_us / 1000 + 1;
    if (p->locked && left_us <= 0) {
      rmqi_log(&c->b->env, RMQ_LOG_WARN,
               "consumer %s: %s/%d handed over while a listener call on it still runs after %d ms "
               "(handover_timeout_ms); its next owner delivers the messages in that call again",
               c->client_id, p->sb->topic, p->qid, c->o.handover_timeout_ms);
      pq_unlock(c, p);
    }
    pp = &p->next;
  }
  pthread_mutex_unlock(&c->mu);
  if (c->o.message_model == RMQ_BROADCASTING && atomic_load(&c->bc_dirty) && rmqi_mono_us() >= c->bc_next_us) {
    c->bc_next_us = rmqi_mono_us() + (int64_t)c->o.persist_consumer_offset_interval * 1000;
    if (bc_persist(c)) rmqi_log(&c->b->env, RMQ_LOG_ERROR, "consumer %s: %s", c->client_id, rmq_errmsg());
  }
  int progress = 0;
  atomic_store(&c->throttled, 0);
  for (pq *p = c->pqs; p; p = p->next) progress += pull_queue(c, p);
  if (!progress) {
    int ms = atomic_load(&c->throttled) ? 10 : 1000;
    if (wait_ms >= 0 && wait_ms < ms) ms = (int)wait_ms;
    if (handover_ms >= 0 && handover_ms < ms) ms = (int)handover_ms;
    rmqi_store_wait(st, seq, ms);
  }
  pthread_mutex_lock(&c->mu);
  c->leader = 0;
  req *r = c->stop ? NULL : take(c);
  /* The requests left for others, and the pulling. */
  int wake = c->fresh;
  c->fresh = 0;
  for (int k = 0; k < wake; k++) pthread_cond_signal(&c->work_cond);
  return r;
}

/* mu held. A concurrently consumer's next request. */
static req *take_concurrently(rmq_push_consumer *c)
{
  req *r = c->work_head;
  /* At most consume_thread_max listeners at once: one thread more than
  ** that exists only to pull. */
  if (!r || c->running >= c->pool) return NULL;
  c->work_head = r->next;
  if (!c->work_head) c->work_tail = NULL;
  c->running++;
  return r;
}

/* mu held. Moves due redeliveries onto the work queue; returns the wait (ms)
** until the next one, or -1. */
static int64_t later_due(rmq_push_consumer *c)
{
  int64_t now = rmqi_mono_us();
  while (c->later && c->later->due_us <= now) {
    req *r = c->later;
    c->later = r->next;
    r->next = NULL;
    if (c->work_tail) c->work_tail->next = r;
    else c->work_head = r;
    c->work_tail = r;
  }
  return c->later ? (c->later->due_us - now) / 1000 + 1 : -1;
}


/* RocketMQ's consumerSendMsgBack, in process: the failed message e goes to
** %RETRY%<group> through delay level `level` (0: 3 + reconsumeTimes), or to
** %DLQ%<group> once it has been retried max_reconsume_times (or level < 0),
** as a new record with reconsumeTimes + 1, RETRY_TOPIC (its topic) and
** ORIGIN_MESSAGE_ID (its offsetMsgId) when it has none yet. */
static int send_back_pinned(rmq_push_consumer *c, const rmq_message_ext *e, int level, const uint8_t *rec);
static int send_back(rmq_push_consumer *c, const rmq_message_ext *e, int level)
{
  void *pin;
  const uint8_t *rec = rmqi_store_record_pin(c->b->st, e->commit_log_offset, e->store_size, &pin);
  int rc = send_back_pinned(c, e, level, rec);
  rmqi_store_unpin(pin);
  return rc;
}

static int send_back_pinned(rmq_push_consumer *c, const rmq_message_ext *e, int level, const uint8_t *rec)
{
  rmq_broker *b = c->b;
  rmqi_record r;
  if (!rec || rmqi_record_decode(rec, (size_t)e->store_size, 0, &r) != RMQ_OK)
    return rmqi_err(RMQ_ECORRUPT, "message %s is unreadable", e->msg_id);
  /* The view's count: the record's, or an orderly consumer's in-memory one. */
  int32_t recon = e->reconsume_times;
  /* A damaged record's count may be anything: kept in [0, INT32_MAX - 1]
  ** so that the next one, and the level from it, are numbers too. */
  if (recon < 0) recon = 0;
  if (recon > INT32_MAX - 1) recon = INT32_MAX - 1;
  int max = c->o.max_reconsume_times < 0 ? 16 : c->o.max_reconsume_times;
  int to_dlq = recon >= max || level < 0;
  if (level <= 0) level = recon > 1000 ? 1000 : 3 + recon;
  if (level > rmqi_store_delay_levels(b->st)) level = rmqi_store_delay_levels(b->st);
  char retry[160], dlq[160];
  snprintf(retry, sizeof retry, "%%RETRY%%%s", c->group);
  snprintf(dlq, sizeof dlq, "%%DLQ%%%s", c->group);
  rmqi_buf pb = {0};
  int has_retry_topic = 0, has_origin = 0;
  const char *p = r.props, *end = r.props + r.props_len;
  while (p < end) {
    const char *se = memchr(p, 2, (size_t)(end - p));
    if (!se) se = end;
    const char *sep = memchr(p, 1, (size_t)(se - p));
    size_t nl = sep ? (size_t)(sep - p) : 0;
    int drop = sep && ((nl == 5 && !memcmp(p, "DELAY", 5)) || (nl == 10 && !memcmp(p, "REAL_TOPIC", 10)) ||
                       (nl == 8 && !memcmp(p, "REAL_QID", 8)));
    if (sep && nl == 11 && !memcmp(p, "RETRY_TOPIC", 11)) has_retry_topic = 1;
    if (sep && nl == 17 && !memcmp(p, "ORIGIN_MESSAGE_ID", 17)) has_origin = 1;
    if (!drop && se > p) {
      rmqi_buf_add(&pb, p, (size_t)(se - p));
      rmqi_buf_puts(&pb, "\2");
    }
    p = se + 1;
  }
  if (!has_retry_topic) prop_append(&pb, "RETRY_TOPIC", r.topic, (size_t)r.topic_len);
  if (!has_origin) prop_append(&pb, "ORIGIN_MESSAGE_ID", e->offset_msg_id, strlen(e->offset_msg_id));
  rmqi_put put = {0};
  int64_t now = rmqi_now(&b->env);
  rmqi_topic *t;
  int rc, qid = 0;
  if (to_dlq) {
    if ((rc = rmqi_topic_create(b->st, dlq, 1, &t))) goto out;
    put.tags_code = props_tags_code(pb.p ? pb.p : "", pb.len);
  } else {
    char lv[16];
    snprintf(lv, sizeof lv, "%d", level);
    prop_append(&pb, "DELAY", lv, strlen(lv));
    prop_append(&pb, "REAL_TOPIC", retry, strlen(retry));
    prop_append(&pb, "REAL_QID", "0", 1);
    if (!rmqi_topic_find(b->st, retry) && (rc = rmqi_topic_create(b->st, retry, 1, NULL))) goto out;
    if ((rc = schedule_topic(b, &t))) goto out;
    qid = level - 1;
    put.tags_code = now + rmqi_store_delay_ms(b->st, level);
  }
  if (pb.oom) { rc = rmqi_err(RMQ_ENOMEM, "out of memory sending a message back"); goto out; }
  if (pb.len > RMQ_PROPERTIES_MAX_LEN) { rc = rmqi_err(RMQ_EPROPSIZE, "properties of message %s too long to send back", e->msg_id); goto out; }
  uint8_t *buf = NULL;
  size_t cap = 0;
  put.size = (uint32_t)record_rebuild(&buf, &cap, rec, &r, to_dlq ? dlq : RMQI_SCHEDULE_TOPIC, qid, pb.p ? pb.p : "",
                                      pb.len, recon + 1);
  if (!put.size) { rc = rmqi_err(RMQ_ENOMEM, "out of memory sending a message back"); goto out; }
  put.rec = buf;
  put.q = rmqi_topic_queue(t, qid);
  put.store_ts = now;
  rc = rmqi_store_put(b->st, &put, 1);
  rmqi_free(buf, cap);
out:
  rmqi_buf_free(&pb);
  return rc;
}

static void *worker_main(void *arg)
{
  rmq_push_consumer *c = arg;
  int max_re = c->o.max_reconsume_times < 0 ? 16 : c->o.max_reconsume_times;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    if (c->stop) break;
    int64_t wait = later_due(c);
    req *r = take_concurrently(c);
    if (!r && !c->leader && !(r = lead_turn(c, wait, take_concurrently))) continue;
    if (!r) {
      if (wait < 0) pthread_cond_wait(&c->work_cond, &c->mu);
      else {
        struct timespec dl;
        deadline_ms(&dl, wait);
        pthread_cond_timedwait(&c->work_cond, &c->mu, &dl);
      }
      continue;
    }
    pq *p = r->pq;
    int dropped = p->dropped;
    pthread_mutex_unlock(&c->mu);

    int64_t now = rmqi_now(&c->b->env);
    for (int i = 0; i < r->n; i++) {
      p->slots[r->first + i].consume_start_time = now;
      p->ptrs[r->first + i] = &p->slots[r->first + i];
    }
    rmq_consume_concurrently_context cc = {p->sb->topic, p->qid, 0, r->n - 1};
    /* A request of a dropped queue is not delivered here (apply_assignment
    ** takes them off the queues; this is only a guard). */
    int status = dropped ? RMQ_RECONSUME_LATER : c->listener(c->listener_ctx, &p->ptrs[r->first], (size_t)r->n, &cc);
    int ok = status == RMQ_CONSUME_SUCCESS ? (cc.ack_index < r->n - 1 ? cc.ack_index + 1 : r->n) : 0;
    if (ok < 0) ok = 0;
    /* The failed part goes back to the broker (clustering: the retry topic
    ** through a delay level, or the DLQ) and counts as consumed here;
    ** broadcasting drops it, as RocketMQ does. A send-back that fails is
    ** retried locally after reconsume_delay_ms. */
    uint8_t sent_back[1024];
    memset(sent_back, 0, (size_t)r->n);
    for (int i = ok; i < r->n && !dropped; i++) {
      const rmq_message_ext *e = &p->slots[r->first + i];
      if (c->o.message_model == RMQ_BROADCASTING) {
        rmqi_log(&c->b->env, RMQ_LOG_WARN, "consumer %s: broadcasting message %s failed; dropped", c->client_id, e->msg_id);
        sent_back[i] = 1;
        continue;
      }
      sent_back[i] = send_back(c, e, cc.delay_level_when_next_consume) == RMQ_OK;
      if (!sent_back[i])
        rmqi_log(&c->b->env, RMQ_LOG_WARN, "consumer %s: sending message %s back failed (%s); retrying it here",
                 c->client_id, e->msg_id, rmq_errmsg());
    }

    pthread_mutex_lock(&c->mu);
    c->running--;
    int retry = 0;
    for (int i = 0; i < r->n; i++) {
      rmq_message_ext *e = &p->slots[r->first + i];
      if (i < ok || sent_back[i]) { p->done[r->first + i] = 1; continue; }
      if (p->dropped) continue; /* not consumed: the queue's next owner delivers it */
      if (e->reconsume_times >= max_re) {
        rmqi_log(&c->b->env, RMQ_LOG_WARN, "consumer %s: message %s failed %lld times; giving it up", c->client_id,
                 e->msg_id, (long long)e->reconsume_times + 1);
        p->done[r->first + i] = 1;
        continue;
      }
      e->reconsume_times++;
      retry = 1;
    }
    if (retry) {
      /* Redeliver the failed part of the batch after the back-off. */
      int first_fail = r->first;
      while (first_fail < r->first + r->n && p->done[first_fail]) first_fail++;
      r->n -= first_fail - r->first;
      r->first = first_fail;
      r->due_us = rmqi_mono_us() + (int64_t)c->o.reconsume_delay_ms * 1000;
      /* The request keeps its slot index; re-home it at reqs[first]. */
      req *nr = &p->reqs[r->first];
      if (nr != r) { *nr = *r; r = nr; }
      req **pp = &c->later;
      while (*pp && (*pp)->due_us <= r->due_us) pp = &(*pp)->next;
      r->next = *pp;
      *pp = r;
    } else {
      p->inflight--;
    }
    pq_pop_done(p);
    pq_commit(c, p);
    if (p->dropped && p->inflight == 0) pq_unlock(c, p); /* hand the queue over */
    if (atomic_load(&c->throttled)) rmqi_store_wake(c->b->st);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* mu held. Orderly: takes the first queued request whose queue is not busy
** (requests of one queue are queued in offset order), or a resumed one. */
static req *take_orderly(rmq_push_consumer *c)
{
  req *prev = NULL;
  if (c->running >= c->pool) return NULL; /* as take_concurrently */
  for (req *r = c->work_head; r; prev = r, r = r->next) {
    if (r->pq->busy && !r->resume) continue;
    if (prev) prev->next = r->next;
    else c->work_head = r->next;
    if (c->work_tail == r) c->work_tail = prev;
    r->next = NULL;
    c->running++;
    return r;
  }
  return NULL;
}

/* The consume threads of an orderly consumer (ConsumeMessageOrderlyService):
** one request per queue at a time, SUSPEND puts the same request back after
** the suspend time with its queue still held, so nothing after it runs first. */
static void *worker_orderly_main(void *arg)
{
  rmq_push_consumer *c = arg;
  int max_re = c->o.max_reconsume_times < 0 ? INT32_MAX : c->o.max_reconsume_times;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    if (c->stop) break;
    int64_t wait = later_due(c);
    req *r = take_orderly(c);
    if (!r && !c->leader && !(r = lead_turn(c, wait, take_orderly))) continue;
    if (!r) {
      if (wait < 0) pthread_cond_wait(&c->work_cond, &c->mu);
      else {
        struct timespec dl;
        deadline_ms(&dl, wait);
        pthread_cond_timedwait(&c->work_cond, &c->mu, &dl);
      }
      continue;
    }
    pq *p = r->pq;
    p->busy = 1;
    r->resume = 0;
    if (p->dropped) {
      /* Not consumed: the queue's next owner delivers these. */
      c->running--;
      p->busy = 0;
      p->inflight--;
      if (p->inflight == 0) pq_unlock(c, p);
      pthread_cond_broadcast(&c->work_cond);
      continue;
    }
    pthread_mutex_unlock(&c->mu);

    int64_t now = rmqi_now(&c->b->env);
    for (int i = 0; i < r->n; i++) {
      p->slots[r->first + i].consume_start_time = now;
      p->ptrs[r->first + i] = &p->slots[r->first + i];
    }
    rmq_consume_orderly_context oc = {p->sb->topic, p->qid, c->o.suspend_current_queue_time_millis};
    int status = c->listener_orderly(c->listener_ctx, &p->ptrs[r->first], (size_t)r->n, &oc);

    pthread_mutex_lock(&c->mu);
    c->running--;
    int give_up = 0;
    if (status == RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT && p->dropped) {
      /* Not consumed, and the queue is another's now: its next owner
      ** delivers these, once this consumer lets go of the lock. */
      p->busy = 0;
      p->inflight--;
      if (p->inflight == 0) pq_unlock(c, p);
      pthread_cond_signal(&c->work_cond);
      continue;
    }
    if (status == RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT) {
      for (int i = 0; i < r->n; i++)
        if (p->slots[r->first + i].reconsume_times >= max_re) give_up = 1;
      if (give_up && c->o.message_model == RMQ_CLUSTERING) {
        /* Past the maximum: to %DLQ%<group> (RocketMQ sends it back, and the
        ** broker's count says DLQ). If that fails, suspend again. */
        pthread_mutex_unlock(&c->mu);
        for (int i = 0; i < r->n && give_up; i++)
          if (send_back(c, &p->slots[r->first + i], -1) != RMQ_OK) {
            rmqi_log(&c->b->env, RMQ_LOG_WARN, "consumer %s: sending %s to the DLQ failed (%s); suspending again",
                     c->client_id, p->slots[r->first + i].msg_id, rmq_errmsg());
            give_up = 0;
          }
        pthread_mutex_lock(&c->mu);
      } else if (give_up) {
        rmqi_log(&c->b->env, RMQ_LOG_WARN, "consumer %s: %s/%d offset %" PRId64 " suspended %d times; dropped",
                 c->client_id, p->sb->topic, p->qid, p->slots[r->first].queue_offset, max_re);
      }
      if (!give_up) {
        for (int i = 0; i < r->n; i++) p->slots[r->first + i].reconsume_times++;
        int ms = oc.suspend_current_queue_time_millis;
        ms = ms < 10 ? 10 : ms > 30000 ? 30000 : ms;
        r->due_us = rmqi_mono_us() + (int64_t)ms * 1000;
        r->resume = 1;
        req **pp = &c->later;
        while (*pp && (*pp)->due_us <= r->due_us) pp = &(*pp)->next;
        r->next = *pp;
        *pp = r;
        continue; /* the queue stays busy until it comes back */
      }
    }
    for (int i = 0; i < r->n; i++) p->done[r->first + i] = 1;
    p->busy = 0;
    p->inflight--;
    pq_pop_done(p);
    pq_commit(c, p);
    if (p->dropped && p->inflight == 0) pq_unlock(c, p);
    /* The queue's next request may go: this thread takes it at the loop's
    ** top, or a request of another queue; one more idle thread is woken in
    ** case both wait (a broadcast would wake all 20 to race for mu). */
    pthread_cond_signal(&c->work_cond);
    if (atomic_load(&c->throttled)) rmqi_store_wake(c->b->st);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static void consumer_stop_threads(rmq_push_consumer *c)
{
  pthread_mutex_lock(&c->mu);
  c->stop = 1;
  pthread_cond_broadcast(&c->work_cond);
  pthread_cond_broadcast(&c->gen_cond);
  pthread_mutex_unlock(&c->mu);
  rmqi_store_wake(c->b->st);
  for (int i = 0; i < c->nworkers; i++) pthread_join(c->workers[i], NULL);
  rmqi_free(c->workers, (size_t)c->nworkers * sizeof *c->workers);
  c->workers = NULL;
  c->nworkers = 0;
}

/* c->bc_file for a broadcasting consumer: client id and group with every
** byte outside [A-Za-z0-9_@-] (and '.' in the client id) as %XX, which keeps
** distinct names distinct. The group's dots are escaped, so the name splits
** back unambiguously at its last two dots. */
static int bc_file_name(rmq_push_consumer *c)
{
  static const char keep[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_@";
  char buf[1024];
  size_t k = (size_t)snprintf(buf, sizeof buf, "broadcastOffset.");
  for (int part = 0; part < 2; part++) {
    const char *src = part ? c->group : c->client_id;
    for (const char *p = src; *p && k + 4 < sizeof buf; p++) {
      unsigned char ch = (unsigned char)*p;
      if (strchr(keep, ch) || (ch == '.' && !part)) buf[k++] = (char)ch;
      else k += (size_t)snprintf(buf + k, sizeof buf - k, "%%%02X", ch);
    }
    if (k + 1 < sizeof buf) buf[k++] = '.';
  }
  k += (size_t)snprintf(buf + k, sizeof buf - k, "json");
  /* 255 bytes is the common file name limit; the temporary file adds ".tmp". */
  if (k + 4 > 255 || k >= sizeof c->bc_file)
    return rmqi_err(RMQ_EINVAL, "broadcasting consumer %s of group %s: its offsets file name would be %zu bytes "
                    "(at most 251): use a shorter instance name", c->client_id, c->group, k);
  memcpy(c->bc_file, buf, k + 1);
  return RMQ_OK;
}

RMQ_API int rmq_push_consumer_start(rmq_push_consumer *c)
{
  if (!push_ok(c)) return bad_push(c, "rmq_push_consumer_start");
  if (c->started) return rmqi_err(RMQ_ESTATE, "consumer %s is already started", c->client_id);
  if (!c->listener && !c->listener_orderly)
    return rmqi_err(RMQ_ESTATE, "register a listener before starting consumer %s", c->client_id);
  if (c->nsubs == 0) return rmqi_err(RMQ_ESTATE, "subscribe a topic before starting consumer %s", c->client_id);
  rmq_broker *b = c->b;
  if (c->o.message_model == RMQ_CLUSTERING) {
    /* A clustering group also consumes its retry topic (RocketMQ's
    ** copySubscription), one queue, made here. */
    char retry[160];
    snprintf(retry, sizeof retry, "%%RETRY%%%s", c->group);
    int have = 0;
    for (int i = 0; i < c->nsubs; i++) have |= !strcmp(c->subs[i].topic, retry);
    int rc;
    if (!have && (rc = rmq_push_consumer_subscribe(c, retry, "*"))) return rc;
    if (!rmqi_topic_find(b->st, retry) && (rc = rmqi_topic_create(b->st, retry, 1, NULL))) return rc;
  }
  for (int i = 0; i < c->nsubs; i++) {
    if (!rmqi_topic_find(b->st, c->subs[i].topic)) {
      /* RocketMQ lets a consumer subscribe a topic that does not exist yet;
      ** here the topic is made so its queues can be shared out. */
      if (!b->o.auto_create_topic_enable)
        return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist and auto_create_topic_enable is off", c->subs[i].topic);
      int rc = rmqi_topic_create(b->st, c->subs[i].topic, b->o.default_topic_queue_nums < 4 ? b->o.default_topic_queue_nums : 4, NULL);
      if (rc) return rc;
    }
    if (c->o.message_model == RMQ_CLUSTERING) {
      c->subs[i].offs = off_find(b, c->subs[i].topic, c->group, 1);
      if (!c->subs[i].offs) return RMQ_ENOMEM;
    }
  }
  if (c->o.message_model == RMQ_BROADCASTING) {
    pthread_mutex_lock(&b->group_lock);
    int dup = 0;
    for (rmq_push_consumer *o = b->consumers; o; o = o->next_member)
      dup |= !strcmp(o->group, c->group) && !strcmp(o->client_id, c->client_id);
    pthread_mutex_unlock(&b->group_lock);
    if (dup)
      return rmqi_err(RMQ_ESTATE, "The consumer group[%s] has been created before, specify another name please. "
                      "(a broadcasting consumer of %s with instance name %s is running)", c->group, c->group,
                      strchr(c->client_id, '@') + 1);
    /* Its offsets are its own: config/broadcastOffset.<clientId>.<group>.json,
    ** the names %XX-escaped so that no two instances share a file. */
    int rc = bc_file_name(c);
    if (rc) return rc;
    for (int i = 0; i < c->nsubs; i++)
      if (!c->subs[i].offs && !(c->subs[i].offs = offent_new(c->subs[i].topic, c->group)))
        return rmqi_err(RMQ_ENOMEM, "out of memory starting consumer %s", c->client_id);
    bc_load(c);
  }
  /* The consume threads, and one more: they take turns as the puller. */
  c->pool = c->o.consume_thread_max > c->o.consume_thread_min ? c->o.consume_thread_max : c->o.consume_thread_min;
  c->running = 0;
  int nw = c->pool + 1;
  c->workers = rmqi_calloc((size_t)nw, sizeof *c->workers);
  if (!c->workers) return rmqi_err(RMQ_ENOMEM, "out of memory starting consumer %s", c->client_id);
  c->stop = 0;
  for (int i = 0; i < nw; i++) {
    if (pthread_create(&c->workers[i], NULL, c->listener_orderly ? worker_orderly_main : worker_main, c) != 0) break;
    c->nworkers++;
  }
  if (c->nworkers == 0) {
    c->nworkers = 0;
    consumer_stop_threads(c);
    return rmqi_err(RMQ_ENOMEM, "cannot start the consume threads of consumer %s", c->client_id);
  }
  pthread_mutex_lock(&b->group_lock);
  int members = 0;
  for (rmq_push_consumer *d = b->consumers; d; d = d->next_member) members += !strcmp(d->group, c->group);
  if (members >= GROUP_MAX_MEMBERS) {
    pthread_mutex_unlock(&b->group_lock);
    consumer_stop_threads(c);
    return rmqi_err(RMQ_ESTATE, "group %s already has %d started consumers in this process (at most %d)", c->group,
                    members, GROUP_MAX_MEMBERS);
  }
  c->started = 1;
  c->next_member = b->consumers;
  b->consumers = c;
  rebalance_group(b, c->group);
  pthread_mutex_unlock(&b->group_lock);
  return RMQ_OK;
}

RMQ_API int rmq_push_consumer_assigned_queues(rmq_push_consumer *c, rmq_message_queue *out, size_t cap, size_t *n)
{
  if (!push_ok(c)) return bad_push(c, "rmq_push_consumer_assigned_queues");
  if (!n || (!out && cap)) return rmqi_err(RMQ_EINVAL, "rmq_push_consumer_assigned_queues: NULL argument");
  pthread_mutex_lock(&c->mu);
  size_t k = 0;
  for (int i = 0; i < c->ntarget; i++, k++) {
    if (k >= cap) continue;
    copy_str(out[k].topic, sizeof out[k].topic, c->target[i].sb->topic);
    copy_str(out[k].broker_name, sizeof out[k].broker_name, c->b->broker_name);
    out[k].queue_id = c->target[i].qid;
  }
  pthread_mutex_unlock(&c->mu);
  *n = k;
  return RMQ_OK;
}

RMQ_API void rmq_push_consumer_shutdown(rmq_push_consumer *c)
{
  if (!push_ok(c) || !c->started || c->stopped) return;
  rmq_broker *b = c->b;
  consumer_stop_threads(c);
  pthread_mutex_lock(&c->mu);
  for (pq *p = c->pqs; p; p = p->next) { pq_commit(c, p); pq_unlock(c, p); }
  for (pq *p = c->graveyard; p; p = p->next) pq_unlock(c, p);
  pthread_mutex_unlock(&c->mu);
  if (c->o.message_model == RMQ_BROADCASTING && bc_persist(c) != RMQ_OK)
    rmqi_log(&b->env, RMQ_LOG_ERROR, "consumer %s: persisting offsets failed: %s", c->client_id, rmq_errmsg());
  /* Offsets go to disk before the queues move to other members. */
  if (offsets_persist(b) != RMQ_OK)
    rmqi_log(&b->env, RMQ_LOG_ERROR, "consumer %s: persisting offsets failed: %s", c->client_id, rmq_errmsg());
  pthread_mutex_lock(&b->group_lock);
  for (rmq_push_consumer **pp = &b->consumers; *pp; pp = &(*pp)->next_member)
    if (*pp == c) { *pp = c->next_member; break; }
  rebalance_group(b, c->group);
  pthread_mutex_unlock(&b->group_lock);
  pthread_mutex_lock(&c->mu);
  rmqi_free(c->target, (size_t)(c->ntarget ? c->ntarget : 1) * sizeof *c->target);
  c->target = NULL; /* it holds no queue any more */
  c->ntarget = 0;
  pthread_mutex_unlock(&c->mu);
  c->stopped = 1;
}

RMQ_API void rmq_push_consumer_destroy(rmq_push_consumer *c)
{
  if (!push_ok(c)) return;
  rmq_push_consumer_shutdown(c);
  c->magic = MAGIC_DEAD;
  for (pq *p = c->pqs, *n; p; p = n) { n = p->next; pq_free(p); }
  for (pq *p = c->graveyard, *n; p; p = n) { n = p->next; pq_free(p); }
  for (int i = 0; i < c->nsubs; i++) {
    rmqi_strfree(c->subs[i].topic);
    rmqi_strfree(c->subs[i].expr);
    rmqi_filter_free(&c->subs[i].f);
    if (c->o.message_model == RMQ_BROADCASTING) offent_free(c->subs[i].offs); /* its own, not the broker's */
  }
  rmqi_free(c->subs, (size_t)c->nsubs * sizeof *c->subs);
  rmqi_free(c->target, (size_t)(c->ntarget ? c->ntarget : 1) * sizeof *c->target);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->work_cond);
  pthread_cond_destroy(&c->gen_cond);
  group_release(c->b, c->group);
  atomic_fetch_sub(&c->b->nhandles, 1);
  rmqi_strfree(c->group);
  rmqi_free(c, sizeof *c);
}

/* ======================================================================= */
/* Selectors                                                               */
/* ======================================================================= */

struct rmq_selector {
  rmqi_filter f;
};

RMQ_API int rmq_selector_compile(int type, const char *expression, rmq_selector **out)
{
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_selector_compile: out is NULL");
  *out = NULL;
  rmq_selector *s = rmqi_calloc(1, sizeof *s);
  if (!s) return rmqi_err(RMQ_ENOMEM, "out of memory");
  int rc = rmqi_filter_compile(type, expression, &s->f);
  if (rc) { rmqi_free(s, sizeof *s); return rc; }
  *out = s;
  return RMQ_OK;
}

typedef struct pairs { const char *const *p; size_t n; } pairs;

static int pairs_get(void *ud, const char *name, size_t nlen, const char **v, size_t *vl)
{
  const pairs *ps = ud;
  for (size_t i = ps->n; i-- > 0;) { /* the last of duplicates wins, as in a record */
    const char *k = ps->p[2 * i];
    if (k && strlen(k) == nlen && !memcmp(k, name, nlen) && ps->p[2 * i + 1]) {
      *v = ps->p[2 * i + 1];
      *vl = strlen(*v);
      return 1;
    }
  }
  return 0;
}

RMQ_API int rmq_selector_match(const rmq_selector *s, const char *const *props, size_t nprops)
{
  if (!s || (!props && nprops)) return rmqi_err(RMQ_EINVAL, "rmq_selector_match: NULL argument");
  pairs ps = {props, nprops};
  if (s->f.type == RMQ_SELECTOR_SQL92) return rmqi_sql_match(s->f.sql, pairs_get, &ps);
  const char *tags;
  size_t tl;
  if (!pairs_get(&ps, "TAGS", 4, &tags, &tl)) return rmqi_tag_filter_tags(&s->f.tf, NULL, 0);
  return rmqi_tag_filter_code(&s->f.tf, rmqi_jhash(tags, tl)) && rmqi_tag_filter_tags(&s->f.tf, tags, tl);
}

RMQ_API void rmq_selector_free(rmq_selector *s)
{
  if (!s) return;
  rmqi_filter_free(&s->f);
  rmqi_free(s, sizeof *s);
}

/* ======================================================================= */
/* Consumer progress                                                       */
/* ======================================================================= */

RMQ_API int rmq_broker_consumer_progress(rmq_broker *b, const char *group, const char *topic, rmq_queue_progress *out,
                                         size_t cap, size_t *n)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_consumer_progress");
  if (!n || (!out && cap)) return rmqi_err(RMQ_EINVAL, "rmq_broker_consumer_progress: NULL argument");
  int rc = check_group(group);
  if (!rc) rc = check_topic(topic);
  if (rc) return rc;
  rmqi_topic *t = rmqi_topic_find(b->st, topic);
  if (!t) return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist", topic);
  offent *e = off_find(b, topic, group, 0);
  int nq = rmqi_topic_nqueues(t);
  for (int i = 0; i < nq && (size_t)i < cap; i++) {
    rmqi_queue *q = rmqi_topic_queue(t, i);
    rmq_queue_progress *g = &out[i];
    memset(g, 0, sizeof *g);
    copy_str(g->mq.topic, sizeof g->mq.topic, topic);
    copy_str(g->mq.broker_name, sizeof g->mq.broker_name, b->broker_name);
    g->mq.queue_id = i;
    g->broker_offset = q ? rmqi_queue_max_offset(q) : 0;
    g->consumer_offset = e ? atomic_load(&e->off[i]) : -1;
    int64_t from = g->consumer_offset >= 0 ? g->consumer_offset : (q ? rmqi_queue_min_offset(q) : 0);
    g->lag = g->broker_offset > from ? g->broker_offset - from : 0;
  }
  *n = (size_t)nq;
  return RMQ_OK;
}

RMQ_API int rmq_broker_reset_offset_by_time(rmq_broker *b, const char *group, const char *topic, int64_t timestamp_ms)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_reset_offset_by_time");
  if (b->o.read_only) return ro_refused(b, "rmq_broker_reset_offset_by_time");
  int rc = check_group(group);
  if (!rc) rc = check_topic(topic);
  if (rc) return rc;
  rmqi_topic *t = rmqi_topic_find(b->st, topic);
  if (!t) return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist", topic);
  offent *e = off_find(b, topic, group, 1);
  if (!e) return RMQ_ENOMEM;
  pthread_mutex_lock(&b->group_lock);
  /* Running members let go of the topic's queues first, without committing,
  ** so nothing they hold writes over the new offsets. */
  for (rmq_push_consumer *c = b->consumers; c; c = c->next_member) {
    if (strcmp(c->group, group) || c->o.message_model != RMQ_CLUSTERING) continue;
    pthread_mutex_lock(&c->mu);
    for (pq *p = c->pqs; p; p = p->next)
      if (!strcmp(p->sb->topic, topic)) p->no_commit = 1; /* its pull thread drops it (apply_assignment) */
    pthread_mutex_unlock(&c->mu);
  }
  int nq = rmqi_topic_nqueues(t);
  for (int i = 0; i < nq; i++) {
    rmqi_queue *q = rmqi_topic_queue(t, i);
    if (q) off_set(b, e, i, rmqi_queue_offset_by_time(b->st, q, timestamp_ms));
  }
  /* Then they take the queues again, from the stored offsets. */
  for (rmq_push_consumer *c = b->consumers; c; c = c->next_member) {
    if (strcmp(c->group, group) || c->o.message_model != RMQ_CLUSTERING) continue;
    pthread_mutex_lock(&c->mu);
    c->target_gen++;
    pthread_mutex_unlock(&c->mu);
  }
  pthread_mutex_unlock(&b->group_lock);
  rmqi_store_wake(b->st);
  rc = offsets_persist(b);
  return rc;
}

/* ======================================================================= */
/* Pull consumer                                                           */
/* ======================================================================= */

struct rmq_pull_consumer {
  uint32_t magic;          /* MAGIC_PULL while alive */
  rmq_broker *b;
  char *group;
  rmq_message_ext *msgs;
  int msgs_cap;
  void **pins;             /* the CommitLog files msgs point into (distinct in a row) */
  int npins, pins_cap;
  char *expr;              /* the last expression and its type, compiled in f */
  rmqi_filter f;
  int have_f;
  /* Lite pull: the held queues, the position in each, whose turn is next. */
  rmq_message_queue *amqs;
  int64_t *apos;
  char *aexpr;
  int atype;
  int na, next_q;
  int auto_commit, auto_ms;
  int64_t next_commit_us;
  rmqi_topic *gs_topic;    /* the topic of gs: the group's get counters cached */
  rmqi_stat *gs;
};

static inline int pull_ok(const rmq_pull_consumer *c) { return c && c->magic == MAGIC_PULL; }

/* The last pull's views end. */
static void pull_unpin(rmq_pull_consumer *c)
{
  for (int i = 0; i < c->npins; i++) rmqi_store_unpin(c->pins[i]);
  c->npins = 0;
}

/* The view just filled lies in the span's file: hold it for the result. */
static int pull_hold(rmq_pull_consumer *c, rmqi_cl_span *sp)
{
  if (c->npins && c->pins[c->npins - 1] == sp->pin) return RMQ_OK;
  if (c->npins == c->pins_cap) {
    int ncap = c->pins_cap ? 2 * c->pins_cap : 8;
    void **np = rmqi_realloc(c->pins, (size_t)c->pins_cap * sizeof *np, (size_t)ncap * sizeof *np);
    if (!np) return rmqi_err(RMQ_ENOMEM, "out of memory holding pulled messages");
    c->pins = np;
    c->pins_cap = ncap;
  }
  c->pins[c->npins++] = rmqi_span_pin(sp);
  return RMQ_OK;
}
static int bad_pull(const rmq_pull_consumer *c, const char *fn) { return bad_handle(c, fn, "pull consumer", "destroyed"); }

RMQ_API int rmq_pull_consumer_create(rmq_broker *b, const char *group, rmq_pull_consumer **out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_pull_consumer_create");
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_create: out is NULL");
  int rc = check_group(group);
  if (rc) return rc;
  rmq_pull_consumer *c = rmqi_calloc(1, sizeof *c);
  if (!c) return rmqi_err(RMQ_ENOMEM, "out of memory creating a pull consumer");
  c->group = rmqi_strdup(group);
  if (!c->group) { rmqi_free(c, sizeof *c); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  c->b = b;
  if (group_hold(b, group)) {
    rmqi_strfree(c->group);
    rmqi_free(c, sizeof *c);
    return RMQ_ENOMEM;
  }
  c->magic = MAGIC_PULL;
  atomic_fetch_add(&b->nhandles, 1);
  *out = c;
  return RMQ_OK;
}

RMQ_API void rmq_pull_consumer_destroy(rmq_pull_consumer *c)
{
  if (!pull_ok(c)) return;
  if (atomic_load(&c->b->off_dirty) && offsets_persist(c->b) != RMQ_OK)
    rmqi_log(&c->b->env, RMQ_LOG_ERROR, "pull consumer %s: persisting offsets failed: %s", c->group, rmq_errmsg());
  if (c->auto_commit && c->na && rmq_pull_consumer_commit(c) != RMQ_OK)
    rmqi_log(&c->b->env, RMQ_LOG_ERROR, "pull consumer %s: committing offsets failed: %s", c->group, rmq_errmsg());
  rmq_pull_consumer_assign_selector(c, NULL, 0, RMQ_SELECTOR_TAG, NULL);
  pull_unpin(c);
  rmqi_free(c->pins, (size_t)c->pins_cap * sizeof *c->pins);
  rmqi_free(c->msgs, (size_t)c->msgs_cap * sizeof *c->msgs);
  if (c->have_f) rmqi_filter_free(&c->f);
  rmqi_strfree(c->expr);
  group_release(c->b, c->group);
  rmqi_strfree(c->group);
  c->magic = MAGIC_DEAD;
  atomic_fetch_sub(&c->b->nhandles, 1);
  rmqi_free(c, sizeof *c);
}

RMQ_API int rmq_pull_consumer_fetch_subscribe_message_queues(rmq_pull_consumer *c, const char *topic,
                                                             rmq_message_queue *out, size_t cap, size_t *n)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_fetch_subscribe_message_queues");
  if (!n || (!out && cap)) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_fetch_subscribe_message_queues: NULL argument");
  int rc = check_topic(topic);
  if (rc) return rc;
  rmqi_topic *t = rmqi_topic_find(c->b->st, topic);
  if (!t) return rmqi_err(RMQ_ENOTOPIC, "topic %s does not exist", topic);
  int nq = rmqi_topic_nqueues(t);
  for (int i = 0; i < nq && (size_t)i < cap; i++) {
    snprintf(out[i].topic, sizeof out[i].topic, "%s", topic);
    snprintf(out[i].broker_name, sizeof out[i].broker_name, "%s", c->b->broker_name);
    out[i].queue_id = i;
  }
  *n = (size_t)nq;
  return RMQ_OK;
}

/* Compiles the pull's expression, or keeps the last one when it is the same. */
static int pull_filter(rmq_pull_consumer *c, int type, const char *expr)
{
  if (!expr) expr = "*";
  if (c->have_f && c->f.type == type && !strcmp(c->expr, expr)) return RMQ_OK;
  rmqi_filter f;
  int rc = filter_compile(c->b, type, expr, &f);
  if (rc) return rc;
  char *e = rmqi_strdup(expr);
  if (!e) { rmqi_filter_free(&f); return rmqi_err(RMQ_ENOMEM, "out of memory"); }
  if (c->have_f) rmqi_filter_free(&c->f);
  rmqi_strfree(c->expr);
  c->f = f;
  c->expr = e;
  c->have_f = 1;
  return RMQ_OK;
}

/* A queue's records lie one per few hundred bytes of CommitLog, interleaved
** with the other queues', a stride the hardware prefetcher does not follow:
** ask for the record this many units ahead while decoding the current one. */
#define PULL_PREFETCH 6

static void prefetch_record(rmqi_store *st, rmqi_cl_span *sp, const uint8_t *unit)
{
  int32_t size = (int32_t)rmqi_get32(unit + 8);
  const uint8_t *rec = rmqi_span_record(st, sp, (int64_t)rmqi_get64(unit), size);
  if (!rec) return;
  /* The header and a small body; the properties end the record. */
  for (int32_t at = 0; at < size && at < 256; at += 64) __builtin_prefetch(rec + at);
  __builtin_prefetch(rec + size - 64 > rec ? rec + size - 64 : rec);
  __builtin_prefetch(rec + size - 1);
}

RMQ_API int rmq_pull_consumer_pull_selector(rmq_pull_consumer *c, const rmq_message_queue *mq, int type,
                                            const char *expression, int64_t offset, int max_nums,
                                            rmq_pull_result *r)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_pull_selector");
  if (!mq || !r) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_pull: NULL argument");
  memset(r, 0, sizeof *r);
  pull_unpin(c);
  if (max_nums < 1 || max_nums > 1024) return rmqi_err(RMQ_EINVAL, "max_nums %d out of range 1..1024", max_nums);
  rmqi_queue *q;
  int rc = find_queue(c->b, mq->topic, mq->queue_id, &q);
  if (rc) return rc;
  rc = pull_filter(c, type, expression);
  if (rc) return rc;
  if (max_nums > c->msgs_cap) {
    rmq_message_ext *nm = rmqi_realloc(c->msgs, (size_t)c->msgs_cap * sizeof *nm, (size_t)max_nums * sizeof *nm);
    if (!nm) return rmqi_err(RMQ_ENOMEM, "out of memory for %d pulled messages", max_nums);
    c->msgs = nm;
    c->msgs_cap = max_nums;
  }
  int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
  r->min_offset = min;
  r->max_offset = max;
  r->msgs = c->msgs;
  if (offset < min || offset > max) {
    r->pull_status = RMQ_PULL_OFFSET_ILLEGAL;
    r->next_begin_offset = offset < min ? min : max;
    return RMQ_OK;
  }
  if (offset == max) {
    r->pull_status = RMQ_PULL_NO_NEW_MSG;
    r->next_begin_offset = offset;
    return RMQ_OK;
  }
  int scan_max = max_nums > PULL_SCAN_UNITS ? max_nums : PULL_SCAN_UNITS;
  int64_t off = offset;
  size_t got = 0;
  const char *topic = rmqi_topic_name(rmqi_queue_topic(q));
  rmqi_cl_span sp = {0};
  while (got < (size_t)max_nums && off - offset < scan_max) {
    uint8_t ub[UNIT_BUF * RMQI_CQ_UNIT];
    int n = (int)(scan_max - (off - offset));
    n = rmqi_queue_read_units(q, off, ub, n < UNIT_BUF ? n : UNIT_BUF);
    if (n <= 0) break;
    const uint8_t *u = ub;
    int i;
    for (i = 0; i < n && got < (size_t)max_nums; i++, u += RMQI_CQ_UNIT) {
      if (i + PULL_PREFETCH < n) prefetch_record(c->b->st, &sp, u + PULL_PREFETCH * RMQI_CQ_UNIT);
      int32_t size = (int32_t)rmqi_get32(u + 8);
      if (size == INT32_MAX || !rmqi_filter_code(&c->f, (int64_t)rmqi_get64(u + 12))) continue;
      const uint8_t *rec = rmqi_span_record(c->b->st, &sp, (int64_t)rmqi_get64(u), size);
      rmq_message_ext *e = &c->msgs[got];
      if (!rec && (int64_t)rmqi_get64(u) < rmqi_store_min_phys(c->b->st)) continue; /* deleted by retention meanwhile */
      if (!rec || ext_fill(e, rec, size, topic, c->b->broker_name) != RMQ_OK) {
        if (unit_is_bad(rec, size)) rmqi_store_note_bad_unit(c->b->st);
        continue;
      }
      if (!unit_is_record(c->b, e, mq->queue_id, off + i)) {
        rmqi_store_note_bad_unit(c->b->st);
        continue;
      }
      if (!rmqi_filter_record(&c->f, e->tags, (size_t)e->tags_len, e->properties, (size_t)e->properties_len))
        continue;
      if ((rc = pull_hold(c, &sp))) break;
      e->min_offset = min;
      e->max_offset = max;
      got++;
    }
    off += i;
    if (rc) break;
  }
  rmqi_span_done(&sp);
  if (rc) {
    pull_unpin(c);
    memset(r, 0, sizeof *r);
    return rc;
  }
  r->n = got;
  r->next_begin_offset = off;
  r->pull_status = got ? RMQ_PULL_FOUND : RMQ_PULL_NO_MATCHED_MSG;
  if (got) {
    rmqi_topic *t = rmqi_queue_topic(q);
    if (c->gs_topic != t) {
      c->gs = gstat_get(c->b, c->group, topic);
      c->gs_topic = t;
    }
    int64_t bytes = 0;
    for (size_t i = 0; i < got; i++) bytes += c->msgs[i].store_size;
    stat_add(c->b, c->gs, (int64_t)got, bytes);
  }
  return RMQ_OK;
}

RMQ_API int rmq_pull_consumer_pull(rmq_pull_consumer *c, const rmq_message_queue *mq, const char *expression,
                                   int64_t offset, int max_nums, rmq_pull_result *r)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_pull");
  return rmq_pull_consumer_pull_selector(c, mq, RMQ_SELECTOR_TAG, expression, offset, max_nums, r);
}

RMQ_API int rmq_pull_consumer_pull_selector_block(rmq_pull_consumer *c, const rmq_message_queue *mq, int type,
                                                  const char *expression, int64_t offset, int max_nums,
                                                  int timeout_ms, rmq_pull_result *r)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_pull_selector_block");
  int64_t until = rmqi_mono_us() + (int64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
  for (;;) {
    uint64_t seq = rmqi_store_seq(c->b->st);
    int rc = rmq_pull_consumer_pull_selector(c, mq, type, expression, offset, max_nums, r);
    if (rc || r->pull_status != RMQ_PULL_NO_NEW_MSG) return rc;
    int64_t left = (until - rmqi_mono_us()) / 1000;
    if (left <= 0) return RMQ_OK;
    rmqi_store_wait(c->b->st, seq, (int)(left > 1000 ? 1000 : left));
  }
}

RMQ_API int rmq_pull_consumer_pull_block_if_not_found(rmq_pull_consumer *c, const rmq_message_queue *mq,
                                                      const char *expression, int64_t offset, int max_nums,
                                                      int timeout_ms, rmq_pull_result *r)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_pull_block_if_not_found");
  return rmq_pull_consumer_pull_selector_block(c, mq, RMQ_SELECTOR_TAG, expression, offset, max_nums,
                                               timeout_ms, r);
}

static int pull_offent(rmq_pull_consumer *c, const rmq_message_queue *mq, int create, offent **e)
{
  if (!mq) return rmqi_err(RMQ_EINVAL, "the message queue is NULL");
  rmqi_queue *q;
  int rc = find_queue(c->b, mq->topic, mq->queue_id, &q);
  if (rc) return rc;
  *e = off_find(c->b, mq->topic, c->group, create);
  if (!*e) return create ? RMQ_ENOMEM : rmqi_err(RMQ_ENOTFOUND, "group %s has no offset for %s/%d", c->group, mq->topic, mq->queue_id);
  return RMQ_OK;
}

RMQ_API int rmq_pull_consumer_update_consume_offset(rmq_pull_consumer *c, const rmq_message_queue *mq, int64_t offset)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_update_consume_offset");
  if (c->b->o.read_only) return ro_refused(c->b, "rmq_pull_consumer_update_consume_offset");
  if (offset < 0) return rmqi_err(RMQ_EINVAL, "offset %" PRId64 " is negative", offset);
  offent *e;
  int rc = pull_offent(c, mq, 1, &e);
  if (rc) return rc;
  off_set(c->b, e, mq->queue_id, offset);
  return RMQ_OK;
}

RMQ_API int rmq_pull_consumer_fetch_consume_offset(rmq_pull_consumer *c, const rmq_message_queue *mq, int64_t *offset)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_fetch_consume_offset");
  if (!offset) return rmqi_err(RMQ_EINVAL, "offset is NULL");
  offent *e;
  int rc = pull_offent(c, mq, 0, &e);
  if (rc) return rc;
  int64_t v = atomic_load(&e->off[mq->queue_id]);
  if (v < 0) return rmqi_err(RMQ_ENOTFOUND, "group %s has no offset for %s/%d", c->group, mq->topic, mq->queue_id);
  *offset = v;
  return RMQ_OK;
}

/* ---- lite pull ---------------------------------------------------------- */

RMQ_API int rmq_pull_consumer_assign_selector(rmq_pull_consumer *c, const rmq_message_queue *mqs, size_t n,
                                              int type, const char *expression)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_assign_selector");
  if (!mqs && n) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_assign: mqs is NULL");
  if (n > 1024) return rmqi_err(RMQ_EINVAL, "at most 1024 queues can be assigned (%zu given)", n);
  rmq_message_queue *nm = NULL;
  int64_t *np = NULL;
  char *ne = NULL;
  int rc = RMQ_OK;
  if (n) {
    if ((rc = pull_filter(c, type, expression))) return rc;
    nm = rmqi_calloc(n, sizeof *nm);
    np = rmqi_calloc(n, sizeof *np);
    ne = rmqi_strdup(expression ? expression : "*");
    if (!nm || !np || !ne) { rc = rmqi_err(RMQ_ENOMEM, "out of memory assigning %zu queues", n); goto fail; }
    for (size_t i = 0; i < n; i++) {
      rmqi_queue *q;
      if ((rc = find_queue(c->b, mqs[i].topic, mqs[i].queue_id, &q))) goto fail;
      nm[i] = mqs[i];
      offent *e = off_find(c->b, mqs[i].topic, c->group, 0);
      int64_t stored = e ? atomic_load(&e->off[mqs[i].queue_id]) : -1;
      int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
      np[i] = stored >= 0 ? stored : (min == 0 ? 0 : max);
    }
  }
  rmqi_free(c->amqs, (size_t)c->na * sizeof *c->amqs);
  rmqi_free(c->apos, (size_t)c->na * sizeof *c->apos);
  rmqi_strfree(c->aexpr);
  c->amqs = nm;
  c->apos = np;
  c->aexpr = ne;
  c->atype = type;
  c->na = (int)n;
  c->next_q = 0;
  return RMQ_OK;
fail:
  rmqi_free(nm, n * sizeof *nm);
  rmqi_free(np, n * sizeof *np);
  rmqi_strfree(ne);
  return rc;
}

RMQ_API int rmq_pull_consumer_assign(rmq_pull_consumer *c, const rmq_message_queue *mqs, size_t n, const char *expression)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_assign");
  return rmq_pull_consumer_assign_selector(c, mqs, n, RMQ_SELECTOR_TAG, expression);
}

static int assigned_index(rmq_pull_consumer *c, const rmq_message_queue *mq)
{
  for (int i = 0; i < c->na; i++)
    if (c->amqs[i].queue_id == mq->queue_id && !strcmp(c->amqs[i].topic, mq->topic)) return i;
  return -1;
}

RMQ_API int rmq_pull_consumer_seek(rmq_pull_consumer *c, const rmq_message_queue *mq, int64_t offset)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_seek");
  if (!mq) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_seek: the message queue is NULL");
  int i = assigned_index(c, mq);
  if (i < 0) return rmqi_err(RMQ_ENOTFOUND, "queue %s/%d is not assigned to this consumer", mq->topic, mq->queue_id);
  rmqi_queue *q;
  int rc = find_queue(c->b, mq->topic, mq->queue_id, &q);
  if (rc) return rc;
  int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
  if (offset < min || offset > max)
    return rmqi_err(RMQ_EINVAL, "Seek offset illegal: %" PRId64 " is outside %s/%d's %" PRId64 "..%" PRId64, offset,
                    mq->topic, mq->queue_id, min, max);
  c->apos[i] = offset;
  return RMQ_OK;
}

RMQ_API int rmq_pull_consumer_commit(rmq_pull_consumer *c)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_commit");
  if (c->b->o.read_only) return ro_refused(c->b, "rmq_pull_consumer_commit");
  for (int i = 0; i < c->na; i++) {
    offent *e = off_find(c->b, c->amqs[i].topic, c->group, 1);
    if (!e) return RMQ_ENOMEM;
    off_set(c->b, e, c->amqs[i].queue_id, c->apos[i]);
  }
  c->next_commit_us = rmqi_mono_us() + (int64_t)c->auto_ms * 1000;
  return offsets_persist(c->b);
}

RMQ_API int rmq_pull_consumer_set_auto_commit(rmq_pull_consumer *c, int on, int interval_ms)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_set_auto_commit");
  if (interval_ms < 0) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_set_auto_commit: interval_ms %d is negative", interval_ms);
  c->auto_commit = on != 0;
  c->auto_ms = interval_ms;
  c->next_commit_us = rmqi_mono_us() + (int64_t)interval_ms * 1000;
  return RMQ_OK;
}

RMQ_API int rmq_pull_consumer_poll(rmq_pull_consumer *c, int max_nums, int timeout_ms, rmq_pull_result *r)
{
  if (!pull_ok(c)) return bad_pull(c, "rmq_pull_consumer_poll");
  if (!r) return rmqi_err(RMQ_EINVAL, "rmq_pull_consumer_poll: r is NULL");
  if (c->na == 0) return rmqi_err(RMQ_ESTATE, "no queue is assigned to pull consumer %s", c->group);
  if (c->auto_commit && rmqi_mono_us() >= c->next_commit_us) {
    int rc = rmq_pull_consumer_commit(c);
    if (rc) return rc;
  }
  int64_t until = rmqi_mono_us() + (int64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
  for (;;) {
    uint64_t seq = rmqi_store_seq(c->b->st);
    for (int k = 0; k < c->na; k++) {
      int i = (c->next_q + k) % c->na;
      int rc = rmq_pull_consumer_pull_selector(c, &c->amqs[i], c->atype, c->aexpr, c->apos[i], max_nums, r);
      if (rc) return rc;
      if (r->pull_status == RMQ_PULL_NO_NEW_MSG) continue;
      c->apos[i] = r->next_begin_offset; /* past what was read, matched or not */
      if (r->pull_status == RMQ_PULL_FOUND) {
        c->next_q = (i + 1) % c->na;
        return RMQ_OK;
      }
      k--; /* NO_MATCHED / OFFSET_ILLEGAL moved the position: look at this queue again */
    }
    int64_t left = (until - rmqi_mono_us()) / 1000;
    if (left <= 0) {
      memset(r, 0, sizeof *r);
      r->pull_status = RMQ_PULL_NO_NEW_MSG;
      return RMQ_OK;
    }
    rmqi_store_wait(c->b->st, seq, (int)left);
  }
}

/* ======================================================================= */
/* Lookup: queryMessage, viewMessage, searchOffset                         */
/* ======================================================================= */

/* Topics in lookups may be any stored one: %RETRY% topics run to 255. */
static int check_lookup_topic(const char *topic)
{
  if (!topic || !*topic) return rmqi_err(RMQ_ETOPIC, "The specified topic is blank");
  char bad;
  if (strlen(topic) > 255 || !name_chars_ok(topic, &bad))
    return rmqi_err(RMQ_ETOPIC, "The specified topic is not a topic name (1..255 of ^[%%|a-zA-Z0-9_-]+$)");
  return RMQ_OK;
}

typedef struct qres {
  rmq_message_ext *msgs;
  void **pins;
  size_t n, cap;
  char topic[256];
} qres;

static void qres_free(qres *q)
{
  if (!q) return;
  for (size_t i = 0; i < q->n; i++) rmqi_store_unpin(q->pins[i]);
  rmqi_free(q->msgs, q->cap * sizeof *q->msgs);
  rmqi_free(q->pins, q->cap * sizeof *q->pins);
  rmqi_free(q, sizeof *q);
}

/* Is `key` the UNIQ_KEY, or (unless uniq_only) a word of KEYS? The index
** holds hashes: every hit is checked against its record. */
static int record_has_key(const rmq_message_ext *e, const char *key, size_t kl, int uniq_only)
{
  const char *v;
  size_t vl;
  if (rmqi_props_find(e->properties, (size_t)e->properties_len, "UNIQ_KEY", 8, &v, &vl) && vl == kl &&
      !memcmp(v, key, kl))
    return 1;
  if (uniq_only || !e->keys) return 0;
  const char *p = e->keys, *end = e->keys + e->keys_len;
  while (p < end) {
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t wl = sp ? (size_t)(sp - p) : (size_t)(end - p);
    if (wl == kl && !memcmp(p, key, kl)) return 1;
    p += wl + 1;
  }
  return 0;
}

typedef struct qctx {
  rmq_broker *b;
  qres *r;
  const char *topic, *key;
  size_t kl;
  int uniq_only;
  int64_t begin, end;
  size_t max;
} qctx;

static int query_hit(void *ctx, int64_t phys)
{
  qctx *c = ctx;
  qres *r = c->r;
  for (size_t i = 0; i < r->n; i++)
    if (r->msgs[i].commit_log_offset == phys) return 0; /* made twice: a crash re-indexed it */
  rmqi_record rec;
  void *pin;
  const uint8_t *p = rmqi_store_record_at(c->b->st, phys, &rec, &pin);
  if (!p) return 0; /* retention took it, or the entry outlived its record */
  if (r->n == r->cap) {
    size_t ncap = r->cap ? r->cap * 2 : 8;
    rmq_message_ext *m = rmqi_malloc(ncap * sizeof *m);
    void **pv = rmqi_malloc(ncap * sizeof *pv);
    if (!m || !pv) {
      rmqi_free(m, ncap * sizeof *m);
      rmqi_free(pv, ncap * sizeof *pv);
      rmqi_store_unpin(pin);
      return rmqi_err(RMQ_ENOMEM, "out of memory collecting query results");
    }
    if (r->n) {
      memcpy(m, r->msgs, r->n * sizeof *m);
      memcpy(pv, r->pins, r->n * sizeof *pv);
    }
    rmqi_free(r->msgs, r->cap * sizeof *m);
    rmqi_free(r->pins, r->cap * sizeof *pv);
    r->msgs = m;
    r->pins = pv;
    r->cap = ncap;
  }
  rmq_message_ext *e = &r->msgs[r->n];
  if ((size_t)rec.topic_len != strlen(c->topic) || memcmp(rec.topic, c->topic, (size_t)rec.topic_len) != 0 ||
      rec.store_ts < c->begin || rec.store_ts > c->end ||
      ext_fill(e, p, (int32_t)rec.total, r->topic, c->b->broker_name) != RMQ_OK ||
      !record_has_key(e, c->key, c->kl, c->uniq_only)) {
    rmqi_store_unpin(pin);
    return 0;
  }
  r->pins[r->n++] = pin;
  return r->n >= c->max ? 1 : 0;
}

static int query_run(rmq_broker *b, const char *topic, const char *key, int uniq_only, size_t max, int64_t begin,
                     int64_t end, qres **out)
{
  *out = NULL;
  qres *r = rmqi_calloc(1, sizeof *r);
  if (!r) return rmqi_err(RMQ_ENOMEM, "out of memory querying messages");
  snprintf(r->topic, sizeof r->topic, "%s", topic);
  qctx c = {b, r, topic, key, strlen(key), uniq_only, begin, end, max};
  int rc = rmqi_store_index_query(b->st, topic, key, begin, end, query_hit, &c);
  if (rc) {
    qres_free(r);
    return rc;
  }
  *out = r;
  return RMQ_OK;
}

RMQ_API int rmq_broker_query_message(rmq_broker *b, const char *topic, const char *key, int max_num,
                                     int64_t begin_ms, int64_t end_ms, rmq_query_result *r)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_query_message");
  if (!r) return rmqi_err(RMQ_EINVAL, "rmq_broker_query_message: result is NULL");
  memset(r, 0, sizeof *r);
  int rc = check_lookup_topic(topic);
  if (rc) return rc;
  if (!key || !*key) return rmqi_err(RMQ_EINVAL, "rmq_broker_query_message: key is NULL or empty");
  if (max_num < 1 || max_num > 65536)
    return rmqi_err(RMQ_EINVAL, "rmq_broker_query_message: max_num %d out of range 1..65536", max_num);
  if (begin_ms > end_ms)
    return rmqi_err(RMQ_EINVAL, "rmq_broker_query_message: begin %" PRId64 " is after end %" PRId64, begin_ms, end_ms);
  qres *q;
  if ((rc = query_run(b, topic, key, 0, (size_t)max_num, begin_ms, end_ms, &q))) return rc;
  rmqi_index_info ii;
  rmqi_store_index_info(b->st, &ii);
  r->index_last_update_timestamp = ii.last_ts;
  r->index_last_update_phyoffset = ii.last_phys;
  r->msgs = q->msgs;
  r->n = q->n;
  r->internal = q;
  return RMQ_OK;
}

RMQ_API void rmq_query_result_free(rmq_query_result *r)
{
  if (!r) return;
  qres_free(r->internal);
  memset(r, 0, sizeof *r);
}

/* An owned copy of the view of the record at rec (pinned by pin, dropped). */
static int ext_copy_out(rmq_broker *b, const uint8_t *rec, const rmqi_record *r, void *pin, rmq_message_ext **out)
{
  char topic[256];
  snprintf(topic, sizeof topic, "%.*s", r->topic_len, r->topic);
  rmq_message_ext e;
  int rc = ext_fill(&e, rec, (int32_t)r->total, topic, b->broker_name);
  if (rc == RMQ_OK) rc = rmq_message_ext_copy(&e, out);
  else rc = rmqi_err(RMQ_ECORRUPT, "record at %" PRId64 " does not decode", r->phys_offset);
  rmqi_store_unpin(pin);
  return rc;
}

static int hexval(char c)
{
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

RMQ_API int rmq_broker_view_message(rmq_broker *b, const char *offset_msg_id, rmq_message_ext **out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_view_message");
  if (!offset_msg_id || !out) return rmqi_err(RMQ_EINVAL, "rmq_broker_view_message: NULL argument");
  *out = NULL;
  size_t n = strlen(offset_msg_id);
  if (n != 32 && n != 56)
    return rmqi_err(RMQ_EINVAL, "'%s' is not an offsetMsgId: %zu characters, not 32 (IPv4) or 56 (IPv6)", offset_msg_id, n);
  uint8_t id[28];
  for (size_t i = 0; i < n; i += 2) {
    int hi = hexval(offset_msg_id[i]), lo = hexval(offset_msg_id[i + 1]);
    if (hi < 0 || lo < 0) return rmqi_err(RMQ_EINVAL, "'%s' is not an offsetMsgId: not hexadecimal", offset_msg_id);
    id[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  int hl = n == 32 ? 4 : 16;
  int64_t phys = (int64_t)rmqi_get64(id + hl + 4);
  rmqi_record r;
  void *pin;
  const uint8_t *rec = rmqi_store_record_at(b->st, phys, &r, &pin);
  if (!rec || r.store_host_len != hl || memcmp(r.store_host, id, (size_t)hl + 4) != 0) {
    rmqi_store_unpin(pin);
    return rmqi_err(RMQ_ENOTFOUND, "no message %s in this store: no record of this store host starts at CommitLog "
                    "offset %" PRId64, offset_msg_id, phys);
  }
  return ext_copy_out(b, rec, &r, pin, out);
}

static int is_user_topic(const char *t)
{
  return !is_system_topic(t) && strncmp(t, "%RETRY%", 7) != 0 && strncmp(t, "%DLQ%", 5) != 0;
}

/* The store's topics as one list, which the caller frees with
** rmqi_free(*ti, *cap * sizeof **ti). Topics made between the count and the
** fill are counted by the second call but only cap fit: n is clamped, and a
** topic missed is one made during the call. */
static int topics_snapshot(rmq_broker *b, rmq_topic_info **ti, size_t *n, size_t *cap, const char *doing)
{
  *ti = NULL;
  *n = *cap = 0;
  size_t nt = 0;
  int rc = rmqi_topic_list(b->st, NULL, 0, &nt);
  if (rc) return rc;
  size_t c = nt + 16;
  rmq_topic_info *v = rmqi_calloc(c, sizeof *v);
  if (!v) return rmqi_err(RMQ_ENOMEM, "out of memory %s", doing);
  if ((rc = rmqi_topic_list(b->st, v, c, &nt))) {
    rmqi_free(v, c * sizeof *v);
    return rc;
  }
  *ti = v;
  *n = nt > c ? c : nt;
  *cap = c;
  return RMQ_OK;
}

RMQ_API int rmq_broker_query_message_by_uniq_key(rmq_broker *b, const char *topic, const char *msg_id,
                                                 rmq_message_ext **out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_query_message_by_uniq_key");
  if (!msg_id || !*msg_id || !out) return rmqi_err(RMQ_EINVAL, "rmq_broker_query_message_by_uniq_key: NULL or empty argument");
  *out = NULL;
  int rc;
  if (topic && (rc = check_lookup_topic(topic))) return rc;
  rmq_topic_info *ti = NULL;
  size_t nt = 1, cap = 0;
  if (!topic && (rc = topics_snapshot(b, &ti, &nt, &cap, "listing topics"))) return rc;
  /* The best hit so far: earliest stored, a user topic's before any other. */
  int64_t best_phys = -1, best_ts = 0;
  int best_user = 0;
  for (size_t i = 0; i < nt; i++) {
    const char *t = topic ? topic : ti[i].topic_name;
    qres *q;
    if ((rc = query_run(b, t, msg_id, 1, 32, INT64_MIN, INT64_MAX, &q))) goto done;
    int user = is_user_topic(t);
    for (size_t k = 0; k < q->n; k++) {
      const rmq_message_ext *e = &q->msgs[k];
      if (best_phys < 0 || user > best_user || (user == best_user && e->store_timestamp < best_ts) ||
          (user == best_user && e->store_timestamp == best_ts && e->commit_log_offset < best_phys)) {
        best_phys = e->commit_log_offset;
        best_ts = e->store_timestamp;
        best_user = user;
      }
    }
    qres_free(q);
  }
  if (best_phys < 0) {
    rc = rmqi_err(RMQ_ENOTFOUND, "no message with msgId %s%s%s", msg_id, topic ? " in topic " : "", topic ? topic : "");
    goto done;
  }
  rmqi_record r;
  void *pin;
  const uint8_t *rec = rmqi_store_record_at(b->st, best_phys, &r, &pin);
  rc = rec ? ext_copy_out(b, rec, &r, pin, out) : RMQ_ENOTFOUND;
done:
  rmqi_free(ti, cap * sizeof *ti);
  return rc;
}

RMQ_API int rmq_broker_query_message_by_offset(rmq_broker *b, const char *topic, int queue_id, int64_t offset,
                                               rmq_message_ext **out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_query_message_by_offset");
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_broker_query_message_by_offset: out is NULL");
  *out = NULL;
  rmqi_queue *q;
  int rc = find_queue(b, topic, queue_id, &q);
  if (rc) return rc;
  int64_t min = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
  if (offset < min || offset >= max)
    return rmqi_err(RMQ_ENOTFOUND, "offset %" PRId64 " of %s/%d is outside the stored %" PRId64 "..%" PRId64, offset,
                    topic, queue_id, min, max);
  uint8_t u[RMQI_CQ_UNIT];
  rc = rmqi_queue_read_units(q, offset, u, 1);
  if (rc != 1) return rc < 0 ? rc : rmqi_err(RMQ_ENOTFOUND, "offset %" PRId64 " of %s/%d is gone", offset, topic, queue_id);
  rmqi_record r;
  void *pin;
  const uint8_t *rec = rmqi_store_record_at(b->st, (int64_t)rmqi_get64(u), &r, &pin);
  if (!rec || r.queue_id != queue_id || r.queue_offset != offset) {
    rmqi_store_unpin(pin);
    return rmqi_err(RMQ_ENOTFOUND, "offset %" PRId64 " of %s/%d: its unit does not lead to its record", offset, topic,
                    queue_id);
  }
  return ext_copy_out(b, rec, &r, pin, out);
}

RMQ_API int rmq_broker_search_offset(rmq_broker *b, const char *topic, int queue_id, int64_t timestamp_ms,
                                     int64_t *offset)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_search_offset");
  if (!offset) return rmqi_err(RMQ_EINVAL, "rmq_broker_search_offset: offset is NULL");
  rmqi_queue *q;
  int rc = find_queue(b, topic, queue_id, &q);
  if (rc) return rc;
  *offset = rmqi_queue_offset_by_time(b->st, q, timestamp_ms);
  return RMQ_OK;
}

RMQ_API int rmq_broker_earliest_msg_store_time(rmq_broker *b, const char *topic, int queue_id, int64_t *timestamp_ms)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_earliest_msg_store_time");
  if (!timestamp_ms) return rmqi_err(RMQ_EINVAL, "rmq_broker_earliest_msg_store_time: timestamp_ms is NULL");
  rmqi_queue *q;
  int rc = find_queue(b, topic, queue_id, &q);
  if (rc) return rc;
  /* The first unit still leading to a record (pads and units retention
  ** left behind lead nowhere). */
  for (int64_t off = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q); off < max; off++) {
    uint8_t u[RMQI_CQ_UNIT];
    if (rmqi_queue_read_units(q, off, u, 1) != 1) continue;
    rmqi_record r;
    void *pin;
    if (rmqi_store_record_at(b->st, (int64_t)rmqi_get64(u), &r, &pin)) {
      *timestamp_ms = r.store_ts;
      rmqi_store_unpin(pin);
      return RMQ_OK;
    }
    if (off - rmqi_queue_min_offset(q) > 64) break;
  }
  return rmqi_err(RMQ_ENOTFOUND, "queue %s/%d holds no message", topic, queue_id);
}

RMQ_API int rmq_store_lock_owner(const char *dir)
{
  if (!dir) return 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/lock", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  /* The holder's pid, as the kernel knows it (a read descriptor can ask
  ** about a write lock without taking one). */
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  int pid = 0, held = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  close(fd);
  if (!held) return 0;
  if (fl.l_pid > 0) return fl.l_pid;
  /* An open file description lock (rmq's) names no process: the holder
  ** wrote its pid into `abort` when it opened the store, as RocketMQ does. */
  snprintf(path, sizeof path, "%s/abort", dir);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) pid = pid * 10 + (buf[i] - '0');
  return pid > 0 && pid < (1 << 22) && kill(pid, 0) == 0 ? pid : 0;
}

/* ======================================================================= */
/* Statistics (BrokerStatsManager's counters, runtime info, ConsumeStats)  */
/* ======================================================================= */

typedef struct gstat {
  struct gstat *next;
  char *group, *topic;
  rmqi_stat st;
} gstat;

/* The get counters of group on topic, made on first use and kept until
** close (consumers cache the pointer). NULL when out of memory. */
static rmqi_stat *gstat_get(rmq_broker *b, const char *group, const char *topic)
{
  pthread_mutex_lock(&b->stats_lock);
  gstat *g = b->gstats;
  while (g && (strcmp(g->group, group) || strcmp(g->topic, topic))) g = g->next;
  if (!g && (g = rmqi_calloc(1, sizeof *g))) {
    g->group = rmqi_strdup(group);
    g->topic = rmqi_strdup(topic);
    if (!g->group || !g->topic) {
      rmqi_strfree(g->group);
      rmqi_strfree(g->topic);
      rmqi_free(g, sizeof *g);
      g = NULL;
    } else {
      g->next = b->gstats;
      b->gstats = g;
    }
  }
  pthread_mutex_unlock(&b->stats_lock);
  return g ? &g->st : NULL;
}

static void gstats_free(rmq_broker *b)
{
  for (gstat *g = b->gstats, *n; g; g = n) {
    n = g->next;
    rmqi_strfree(g->group);
    rmqi_strfree(g->topic);
    rmqi_free(g, sizeof *g);
  }
  b->gstats = NULL;
}

/* Counts n messages of `bytes` delivered through st (may be NULL). */
static inline void stat_add(rmq_broker *b, rmqi_stat *st, int64_t n, int64_t bytes)
{
  if (n <= 0) return;
  atomic_fetch_add_explicit(&b->get_stat.nums, n, memory_order_relaxed);
  atomic_fetch_add_explicit(&b->get_stat.size, bytes, memory_order_relaxed);
  if (!st) return;
  atomic_fetch_add_explicit(&st->nums, n, memory_order_relaxed);
  atomic_fetch_add_explicit(&st->size, bytes, memory_order_relaxed);
}

static void ring_push(int64_t *ts, int64_t *v, int *n, int64_t now, int64_t val)
{
  if (*n == RMQI_STAT_RING) {
    memmove(ts, ts + 1, (RMQI_STAT_RING - 1) * sizeof *ts);
    memmove(v, v + 1, (RMQI_STAT_RING - 1) * sizeof *v);
    (*n)--;
  }
  ts[*n] = now;
  v[(*n)++] = val;
}

/* stats_lock held. */
static void stat_sample(rmqi_stat *st, int64_t now)
{
  int64_t v = atomic_load_explicit(&st->nums, memory_order_relaxed);
  if (now >= st->next_min) {
    ring_push(st->min_ts, st->min_v, &st->min_n, now, v);
    st->next_min = now + 10000;
  }
  if (now >= st->next_hr) {
    ring_push(st->hr_ts, st->hr_v, &st->hr_n, now, v);
    st->next_hr = now + 600000;
  }
}

/* stats_lock held. Messages a second over the last `window` ms: from the
** newest sample at least that old (the oldest there is when none is). */
static double stat_tps(const rmqi_stat *st, int64_t now, int64_t window, int64_t boot)
{
  const int64_t *ts = window <= 60000 ? st->min_ts : st->hr_ts, *v = window <= 60000 ? st->min_v : st->hr_v;
  int n = window <= 60000 ? st->min_n : st->hr_n;
  /* Counters start at 0 at the open: with no sample that old, from there. */
  int64_t t0 = boot, v0 = 0;
  for (int i = n - 1; i >= 0; i--)
    if (ts[i] <= now - window) { t0 = ts[i]; v0 = v[i]; break; }
  int64_t dt = now - t0;
  if (dt <= 0) return 0;
  return (double)(atomic_load_explicit(&((rmqi_stat *)st)->nums, memory_order_relaxed) - v0) * 1000.0 / (double)dt;
}

static void stat_tps3(const rmq_broker *b, const rmqi_stat *st, int64_t now, double out[3])
{
  out[RMQ_TPS_10S] = stat_tps(st, now, 10000, b->boot_ts);
  out[RMQ_TPS_1MIN] = stat_tps(st, now, 60000, b->boot_ts);
  out[RMQ_TPS_1H] = stat_tps(st, now, 3600000, b->boot_ts);
}

/* Samples every counter whose turn has come (run_due and the service
** thread, about every second). */
static void stats_sample_all(rmq_broker *b, int64_t now)
{
  pthread_mutex_lock(&b->stats_lock);
  if (now < b->next_sample) {
    pthread_mutex_unlock(&b->stats_lock);
    return;
  }
  b->next_sample = now + 1000;
  stat_sample(rmqi_store_put_stat(b->st), now);
  stat_sample(&b->get_stat, now);
  for (gstat *g = b->gstats; g; g = g->next) stat_sample(&g->st, now);
  pthread_mutex_unlock(&b->stats_lock);
  /* A topic made during the call is sampled next round. */
  size_t n, cap;
  rmq_topic_info *ti;
  if (topics_snapshot(b, &ti, &n, &cap, "sampling statistics") == RMQ_OK) {
    pthread_mutex_lock(&b->stats_lock);
    for (size_t i = 0; i < n; i++) {
      rmqi_topic *t = rmqi_topic_find(b->st, ti[i].topic_name);
      if (t) stat_sample(rmqi_topic_stat(t), now);
    }
    pthread_mutex_unlock(&b->stats_lock);
  }
  rmqi_free(ti, cap * sizeof *ti);
}

typedef struct stats_mem {
  rmq_topic_stats *topics;
  size_t ntopics;
  rmq_group_stats *groups;
  size_t ngroups, gcap;
  rmq_queue_stats *queues;
  size_t nqueues, qcap;
  char *strings;
  size_t slen, scap;
} stats_mem;

static void stats_mem_free(stats_mem *m)
{
  if (!m) return;
  rmqi_free(m->topics, m->ntopics * sizeof *m->topics);
  rmqi_free(m->groups, m->gcap * sizeof *m->groups);
  rmqi_free(m->queues, m->qcap * sizeof *m->queues);
  rmqi_free(m->strings, m->scap);
  rmqi_free(m, sizeof *m);
}

/* The store time of the message at `off` of q, 0 when it cannot be read. */
static int64_t msg_store_time(rmq_broker *b, rmqi_queue *q, int64_t off)
{
  uint8_t u[RMQI_CQ_UNIT];
  if (rmqi_queue_read_units(q, off, u, 1) != 1) return 0;
  rmqi_record r;
  void *pin;
  int64_t ts = rmqi_store_record_at(b->st, (int64_t)rmqi_get64(u), &r, &pin) ? r.store_ts : 0;
  rmqi_store_unpin(pin);
  return ts;
}

/* The next hour of deleteWhen at or after now (local time), -1 never. */
static int64_t next_delete_time(uint32_t hours, int64_t now)
{
  if (!hours) return -1;
  time_t secs = (time_t)(now / 1000);
  struct tm tm;
  if (!localtime_r(&secs, &tm)) return -1;
  if ((hours >> tm.tm_hour) & 1) return now;
  tm.tm_min = tm.tm_sec = 0;
  for (int k = 1; k <= 24; k++) {
    struct tm t = tm;
    t.tm_hour += k;
    t.tm_isdst = -1;
    time_t at = mktime(&t);
    struct tm chk;
    if (at != (time_t)-1 && localtime_r(&at, &chk) && ((hours >> chk.tm_hour) & 1)) return (int64_t)at * 1000;
  }
  return -1;
}

/* Half messages stored and not decided yet. */
static int64_t tx_pending(rmq_broker *b)
{
  rmqi_topic *ht = rmqi_topic_find(b->st, TX_HALF_TOPIC);
  rmqi_queue *q = ht ? rmqi_topic_queue(ht, 0) : NULL;
  if (!q) return 0;
  pthread_mutex_lock(&b->tx_lock);
  int64_t base = b->tx_base, max = rmqi_queue_max_offset(q), done = 0;
  for (size_t i = 0; i < b->tx_done.cap; i++)
    if (b->tx_done.k[i] >= base && b->tx_done.k[i] < max) done++;
  pthread_mutex_unlock(&b->tx_lock);
  return max > base + done ? max - base - done : 0;
}

RMQ_API int rmq_broker_stats_get(rmq_broker *b, rmq_broker_stats *out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_stats_get");
  if (!out) return rmqi_err(RMQ_EINVAL, "rmq_broker_stats_get: out is NULL");
  memset(out, 0, sizeof *out);
  int64_t now = rmqi_now(&b->env);
  stats_mem *m = rmqi_calloc(1, sizeof *m);
  if (!m) return rmqi_err(RMQ_ENOMEM, "out of memory taking statistics");
  int rc = RMQ_OK;
  rmq_topic_info *ti = NULL;
  size_t nt = 0, ticap = 0;
  if ((rc = topics_snapshot(b, &ti, &nt, &ticap, "taking statistics"))) goto fail;
  /* Strings first: names live in one block the result owns. */
  size_t need = 0;
  for (size_t i = 0; i < nt; i++) need += strlen(ti[i].topic_name) + 1;
  pthread_mutex_lock(&b->off_lock);
  for (int i = 0; i < b->noffs; i++) need += strlen(b->offs[i]->topic) + strlen(b->offs[i]->group) + 2;
  pthread_mutex_unlock(&b->off_lock);
  m->scap = need + 4096;
  m->strings = rmqi_malloc(m->scap);
  m->topics = rmqi_calloc(nt ? nt : 1, sizeof *m->topics);
  m->ntopics = nt ? nt : 1;
  if (!m->strings || !m->topics) { rc = rmqi_err(RMQ_ENOMEM, "out of memory taking statistics"); goto fail; }
#define STATS_STR(dst, src)                                            \
  do {                                                                 \
    size_t l_ = strlen(src) + 1;                                       \
    if (m->slen + l_ > m->scap) { (dst) = ""; break; }                 \
    memcpy(m->strings + m->slen, (src), l_);                           \
    (dst) = m->strings + m->slen;                                      \
    m->slen += l_;                                                     \
  } while (0)
  pthread_mutex_lock(&b->stats_lock);
  size_t k = 0;
  for (size_t i = 0; i < nt; i++) {
    rmqi_topic *t = rmqi_topic_find(b->st, ti[i].topic_name);
    if (!t) continue;
    rmq_topic_stats *ts = &m->topics[k++];
    STATS_STR(ts->topic, ti[i].topic_name);
    ts->queue_nums = rmqi_topic_nqueues(t);
    rmqi_stat *st = rmqi_topic_stat(t);
    ts->put_nums = atomic_load(&st->nums);
    ts->put_size = atomic_load(&st->size);
    stat_tps3(b, st, now, ts->put_tps);
    for (int q = 0; q < ts->queue_nums; q++) {
      rmqi_queue *qq = rmqi_topic_queue(t, q);
      if (qq) ts->max_offset_sum = rmqi_add_sat(ts->max_offset_sum, rmqi_queue_max_offset(qq));
    }
    if (b->o.read_only) {
      /* No counters run in a reader (the writer's are its own): the rates
      ** from the store times of what the queues hold, a search a window. */
      static const int64_t win[3] = {10000, 60000, 3600000};
      for (int w = 0; w < 3; w++) {
        int64_t n = 0;
        for (int q = 0; q < ts->queue_nums; q++) {
          rmqi_queue *qq = rmqi_topic_queue(t, q);
          if (qq) n = rmqi_add_sat(n, rmqi_queue_max_offset(qq) - rmqi_queue_offset_by_time(b->st, qq, now - win[w] + 1));
        }
        ts->put_tps[w] = (double)n * 1000.0 / (double)win[w];
        out->put_tps[w] += ts->put_tps[w];
      }
    }
  }
  out->ntopics = k;
  rmqi_stat *ps = rmqi_store_put_stat(b->st);
  out->put_nums = atomic_load(&ps->nums);
  out->put_size = atomic_load(&ps->size);
  if (!b->o.read_only) stat_tps3(b, ps, now, out->put_tps);
  out->get_nums = atomic_load(&b->get_stat.nums);
  stat_tps3(b, &b->get_stat, now, out->get_tps);
  pthread_mutex_unlock(&b->stats_lock);

  /* Groups: every clustering offset entry, in group then topic order. */
  pthread_mutex_lock(&b->off_lock);
  int noffs = b->noffs;
  offent **offs = noffs ? rmqi_malloc((size_t)noffs * sizeof *offs) : NULL;
  if (offs) memcpy(offs, b->offs, (size_t)noffs * sizeof *offs);
  pthread_mutex_unlock(&b->off_lock);
  if (noffs && !offs) { rc = rmqi_err(RMQ_ENOMEM, "out of memory taking statistics"); goto fail; }
  for (int i = 1; i < noffs; i++)
    for (int j = i; j > 0; j--) {
      int c = strcmp(offs[j - 1]->group, offs[j]->group);
      if (c < 0 || (c == 0 && strcmp(offs[j - 1]->topic, offs[j]->topic) <= 0)) break;
      offent *x = offs[j]; offs[j] = offs[j - 1]; offs[j - 1] = x;
    }
  m->gcap = noffs ? (size_t)noffs : 1;
  m->groups = rmqi_calloc(m->gcap, sizeof *m->groups);
  if (!m->groups) { rmqi_free(offs, (size_t)noffs * sizeof *offs); rc = rmqi_err(RMQ_ENOMEM, "out of memory"); goto fail; }
  size_t *qstart = rmqi_calloc(m->gcap, sizeof *qstart);
  if (!qstart) { rmqi_free(offs, (size_t)noffs * sizeof *offs); rc = rmqi_err(RMQ_ENOMEM, "out of memory"); goto fail; }
  for (int i = 0; i < noffs && !rc; i++) {
    offent *e = offs[i];
    if (!strcmp(e->group, TX_GROUP)) continue; /* the transaction checker's own bookkeeping */
    rmqi_topic *t = rmqi_topic_find(b->st, e->topic);
    if (!t) continue;
    int nq = rmqi_topic_nqueues(t), any = 0;
    for (int q = 0; q < nq; q++) any |= atomic_load(&e->off[q]) >= 0;
    if (!any) continue;
    rmq_group_stats *g = &m->groups[m->ngroups];
    STATS_STR(g->group, e->group);
    STATS_STR(g->topic, e->topic);
    qstart[m->ngroups] = m->nqueues;
    int64_t oldest = 0;
    for (int q = 0; q < nq; q++) {
      rmqi_queue *qq = rmqi_topic_queue(t, q);
      if (!qq) continue;
      if (m->nqueues == m->qcap) {
        size_t ncap = m->qcap ? m->qcap * 2 : 64;
        rmq_queue_stats *nqv = rmqi_realloc(m->queues, m->qcap * sizeof *nqv, ncap * sizeof *nqv);
        if (!nqv) { rc = rmqi_err(RMQ_ENOMEM, "out of memory taking statistics"); break; }
        m->queues = nqv;
        m->qcap = ncap;
      }
      rmq_queue_stats *qs = &m->queues[m->nqueues++];
      memset(qs, 0, sizeof *qs);
      qs->queue_id = q;
      qs->broker_offset = rmqi_queue_max_offset(qq);
      int64_t co = atomic_load(&e->off[q]);
      int64_t min = rmqi_queue_min_offset(qq);
      qs->consumer_offset = co;
      int64_t from = co < 0 ? min : co < min ? min : co;
      qs->lag = qs->broker_offset > from ? qs->broker_offset - from : 0;
      if (qs->lag > 0) {
        qs->oldest_unconsumed_timestamp = msg_store_time(b, qq, from);
        if (qs->oldest_unconsumed_timestamp && (!oldest || qs->oldest_unconsumed_timestamp < oldest))
          oldest = qs->oldest_unconsumed_timestamp;
      }
      g->diff_total = rmqi_add_sat(g->diff_total, qs->lag); /* damaged offsets can be near 2^61 */
    }
    g->nqueues = m->nqueues - qstart[m->ngroups];
    g->consumer_delay_ms = oldest && now > oldest ? rmqi_sub_sat(now, oldest) : 0;
    m->ngroups++;
  }
  rmqi_free(offs, (size_t)noffs * sizeof *offs);
  /* Queue arrays are final now: point each group at its slice, and its
  ** get counters. */
  for (size_t i = 0; i < m->ngroups; i++) {
    m->groups[i].queues = m->queues ? m->queues + qstart[i] : NULL;
    rmqi_stat *gs = NULL;
    pthread_mutex_lock(&b->stats_lock);
    for (gstat *x = b->gstats; x && !gs; x = x->next)
      if (!strcmp(x->group, m->groups[i].group) && !strcmp(x->topic, m->groups[i].topic)) gs = &x->st;
    if (gs) {
      m->groups[i].get_nums = atomic_load(&gs->nums);
      m->groups[i].get_size = atomic_load(&gs->size);
      stat_tps3(b, gs, now, m->groups[i].get_tps);
    }
    pthread_mutex_unlock(&b->stats_lock);
  }
  rmqi_free(qstart, m->gcap * sizeof *qstart);
  if (rc) goto fail;
#undef STATS_STR

  /* The store. */
  out->now = now;
  out->boot_timestamp = b->boot_ts;
  out->commit_log_min_offset = rmqi_store_min_phys(b->st);
  out->commit_log_max_offset = rmqi_store_max_phys(b->st);
  out->flushed_offset = rmqi_store_flushed(b->st);
  if (out->flushed_offset > out->commit_log_max_offset) out->flushed_offset = out->commit_log_max_offset;
  out->flush_behind_bytes = out->commit_log_max_offset - out->flushed_offset;
  rmqi_index_info ii;
  rmqi_store_index_info(b->st, &ii);
  out->dispatch_behind_bytes = ii.behind;
  out->index_files = ii.files;
  rmqi_record r;
  void *pin;
  if (out->commit_log_max_offset > out->commit_log_min_offset &&
      rmqi_store_record_at(b->st, out->commit_log_min_offset, &r, &pin))
    out->earliest_message_time_stamp = r.store_ts;
  else
    pin = NULL;
  rmqi_store_unpin(pin);
  rmqi_disk_info di;
  rmqi_store_disk_info(b->st, &di);
  out->commit_log_files = di.cl_files;
  out->commit_log_bytes = (int64_t)di.cl_files * di.cl_file_size;
  out->disk_total_bytes = di.total_bytes;
  out->disk_free_bytes = di.free_bytes;
  out->commit_log_disk_ratio = di.used_pct / 100.0;
  out->disk_full = di.disk_full;
  out->next_delete_time = next_delete_time(di.delete_hours, now);
  out->oldest_file_last_modified = di.oldest_last_ts;
  /* Pending work. */
  rmqi_topic *sch = rmqi_topic_find(b->st, RMQI_SCHEDULE_TOPIC);
  if (sch) {
    pthread_mutex_lock(&b->sched_lock);
    for (int q = 0; q < rmqi_topic_nqueues(sch) && q < RMQI_DELAY_LEVELS_MAX; q++) {
      rmqi_queue *qq = rmqi_topic_queue(sch, q);
      if (!qq) continue;
      int64_t from = b->delay_off[q + 1], mn = rmqi_queue_min_offset(qq), mx = rmqi_queue_max_offset(qq);
      if (from < mn) from = mn;
      if (mx > from) out->pending_delay += mx - from;
    }
    pthread_mutex_unlock(&b->sched_lock);
  }
  /* Timed: those in the heap, and those stored that it has not read yet. */
  rmqi_topic *tt = rmqi_topic_find(b->st, TIMER_TOPIC);
  rmqi_queue *tq = tt ? rmqi_topic_queue(tt, 0) : NULL;
  pthread_mutex_lock(&b->tm_lock);
  out->pending_timer = (int64_t)b->tm_n;
  if (tq && rmqi_queue_max_offset(tq) > b->tm_read) out->pending_timer += rmqi_queue_max_offset(tq) - b->tm_read;
  pthread_mutex_unlock(&b->tm_lock);
  out->pending_half = tx_pending(b);
  out->topics = m->topics;
  out->groups = m->groups;
  out->ngroups = m->ngroups;
  out->internal = m;
  rmqi_free(ti, ticap * sizeof *ti);
  return RMQ_OK;
fail:
  rmqi_free(ti, ticap * sizeof *ti);
  stats_mem_free(m);
  memset(out, 0, sizeof *out);
  return rc;
}

RMQ_API void rmq_broker_stats_free(rmq_broker_stats *st)
{
  if (!st) return;
  stats_mem_free(st->internal);
  memset(st, 0, sizeof *st);
}

/* ======================================================================= */
/* checkStore                                                              */
/* ======================================================================= */

typedef struct chk {
  rmq_broker *b;
  rmq_check_fn fn;
  void *ctx;
  rmqi_check_cb cb;
  int64_t units, entries;
} chk;

static void chk_problem(void *ctx, const char *file, int64_t off, const char *what)
{
  chk *c = ctx;
  if (c->fn) c->fn(c->ctx, file, off, what);
}

static void chk_report(chk *c, const char *file, int64_t off, const char *f, ...) __attribute__((format(printf, 4, 5)));
static void chk_report(chk *c, const char *file, int64_t off, const char *f, ...)
{
  char what[700];
  va_list ap;
  va_start(ap, f);
  vsnprintf(what, sizeof what, f, ap);
  va_end(ap);
  c->cb.problems++;
  chk_problem(c, file, off, what);
}

/* Topics whose ConsumeQueue tag code is a time, not the tag's hash. */
static int tag_code_is_time(const char *topic)
{
  return !strcmp(topic, RMQI_SCHEDULE_TOPIC) || !strcmp(topic, TIMER_TOPIC);
}

/* Reports the zero units of offsets [from, to) of a queue as one problem. */
static void chk_zero_run(chk *c, char *file, size_t fsz, const char *topic, int qid, int64_t cqs, int64_t from,
                         int64_t to)
{
  int64_t byte = from * RMQI_CQ_UNIT;
  snprintf(file, fsz, "%s/consumequeue/%s/%d/%020" PRId64, rmqi_store_dir(c->b->st), topic, qid, byte / cqs * cqs);
  if (to - from == 1) chk_report(c, file, byte % cqs, "unit of offset %" PRId64 " is zeros", from);
  else chk_report(c, file, byte % cqs, "units of offsets %" PRId64 " to %" PRId64 " are zeros", from, to - 1);
}

static void chk_queue(chk *c, rmqi_topic *t, int qid)
{
  rmqi_queue *q = rmqi_topic_queue(t, qid);
  if (!q) return;
  rmq_broker *b = c->b;
  const char *topic = rmqi_topic_name(t);
  int64_t cqs = rmqi_store_cq_file_size(b->st), min_cl = rmqi_store_min_phys(b->st);
  char file[4600];
  uint8_t ub[64 * RMQI_CQ_UNIT];
  int64_t zrun = -1, probe = 0, off = rmqi_queue_min_offset(q), max = rmqi_queue_max_offset(q);
#define CQ_FILE() snprintf(file, sizeof file, "%s/consumequeue/%s/%d/%020" PRId64, rmqi_store_dir(b->st), topic, qid, \
                           byte / cqs * cqs)
  while (off < max) {
    int k = rmqi_queue_read_units(q, off, ub, 64);
    if (k <= 0) {
      int64_t byte = off * RMQI_CQ_UNIT;
      snprintf(file, sizeof file, "%s/consumequeue/%s/%d/%020" PRId64, rmqi_store_dir(b->st), topic, qid,
               byte / cqs * cqs);
      chk_report(c, file, byte % cqs, "unit of offset %" PRId64 " cannot be read (%s)", off,
                 k < 0 ? rmq_errmsg() : "file missing");
      break;
    }
    for (int i = 0; i < k; i++, off++) {
      const uint8_t *u = ub + i * RMQI_CQ_UNIT;
      int64_t phys = (int64_t)rmqi_get64(u);
      int32_t size = (int32_t)rmqi_get32(u + 8);
      int64_t code = (int64_t)rmqi_get64(u + 12);
      c->units++;
      if (phys == 0 && size == 0 && code == 0) {
        /* Zero units (never written) are one problem a run. A damaged max
        ** can claim millions of them in a hole: every 256 the rest of the
        ** run is looked for in the file's data, and a hole skipped unread. */
        if (zrun < 0) {
          zrun = off;
          probe = off;
        }
        if (off >= probe) {
          int64_t next = rmqi_queue_next_data(q, off + 1, max);
          probe = next + 256;
          if (next > off + 1) {
            c->units += next - off - 1;
            off = next;
            break;
          }
        }
        continue;
      }
      if (zrun >= 0) {
        chk_zero_run(c, file, sizeof file, topic, qid, cqs, zrun, off);
        zrun = -1;
      }
      if (size == INT32_MAX) continue;           /* a pad at a queue's head */
      if (phys >= 0 && phys < min_cl) continue;  /* its record went with retention */
      int64_t byte = off * RMQI_CQ_UNIT;
      rmqi_record r;
      void *pin;
      if (!rmqi_store_record_at(b->st, phys, &r, &pin)) {
        CQ_FILE();
        chk_report(c, file, byte % cqs, "unit of offset %" PRId64 " points at CommitLog offset %" PRId64
                   " (size %d), where no record starts", off, phys, size);
        continue;
      }
      char why[300] = "";
      if ((int64_t)r.total != size) snprintf(why, sizeof why, "size %d, the record's is %u", size, r.total);
      else if ((size_t)r.topic_len != strlen(topic) || memcmp(r.topic, topic, (size_t)r.topic_len))
        snprintf(why, sizeof why, "its record is of topic %.*s", r.topic_len, r.topic);
      else if (r.queue_id != qid || r.queue_offset != off)
        snprintf(why, sizeof why, "its record is queue %d offset %" PRId64, r.queue_id, r.queue_offset);
      else if (!tag_code_is_time(topic)) {
        const char *tv;
        size_t tl;
        int64_t want = rmqi_props_find(r.props, (size_t)r.props_len, "TAGS", 4, &tv, &tl) ? rmqi_jhash(tv, tl) : 0;
        if (want != code) snprintf(why, sizeof why, "tag code %" PRId64 ", the record's tags hash to %" PRId64, code, want);
      }
      rmqi_store_unpin(pin);
      if (*why) {
        CQ_FILE();
        chk_report(c, file, byte % cqs, "unit of offset %" PRId64 " (CommitLog %" PRId64 "): %s", off, phys, why);
      }
#undef CQ_FILE
    }
  }
  if (zrun >= 0) chk_zero_run(c, file, sizeof file, topic, qid, cqs, zrun, off);
}

/* Does a key of the record (UNIQ_KEY, a word of KEYS) hash to h? */
static int32_t key_hash_from(int32_t prefix, const char *k, size_t kl)
{
  int32_t x = rmqi_jhash_cont(prefix, k, kl);
  return x == INT32_MIN ? 0 : x < 0 ? -x : x;
}

static int record_key_hash(const rmqi_record *r, int32_t h)
{
  const char *v;
  size_t vl;
  /* The hash of "topic#" once; each key's goes on from it. */
  int32_t prefix = rmqi_jhash_cont(rmqi_jhash(r->topic, (size_t)r->topic_len), "#", 1);
  if (rmqi_props_find(r->props, (size_t)r->props_len, "UNIQ_KEY", 8, &v, &vl) && key_hash_from(prefix, v, vl) == h)
    return 1;
  if (!rmqi_props_find(r->props, (size_t)r->props_len, "KEYS", 4, &v, &vl)) return 0;
  for (const char *p = v, *end = v + vl; p < end;) {
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t wl = sp ? (size_t)(sp - p) : (size_t)(end - p);
    if (wl && key_hash_from(prefix, p, wl) == h) return 1;
    p += wl + 1;
  }
  return 0;
}

static int chk_entry(void *ctx, const char *file, int64_t off, int32_t hash, int64_t phys, const char *problem)
{
  chk *c = ctx;
  c->entries++;
  if (problem) {
    chk_report(c, file, off, "index entry: %s", problem);
    return 0;
  }
  if (phys < rmqi_store_min_phys(c->b->st)) return 0; /* its record went with retention */
  rmqi_record r;
  void *pin;
  if (!rmqi_store_record_at(c->b->st, phys, &r, &pin)) {
    chk_report(c, file, off, "index entry points at CommitLog offset %" PRId64 ", where no record starts", phys);
    return 0;
  }
  if (!record_key_hash(&r, hash))
    chk_report(c, file, off, "index entry of key hash %d points at CommitLog offset %" PRId64
               ", whose record has no key of that hash", hash, phys);
  rmqi_store_unpin(pin);
  return 0;
}

RMQ_API int rmq_broker_check(rmq_broker *b, rmq_check_fn fn, void *ctx, rmq_check_result *out)
{
  if (!broker_ok(b)) return bad_broker(b, "rmq_broker_check");
  if (out) memset(out, 0, sizeof *out);
  chk c = {.b = b, .fn = fn, .ctx = ctx};
  c.cb.ctx = &c;
  c.cb.problem = chk_problem;
  int rc = rmqi_store_check_log(b->st, &c.cb);
  if (rc) return rc;
  size_t nt, cap;
  rmq_topic_info *ti;
  if ((rc = topics_snapshot(b, &ti, &nt, &cap, "checking the store"))) return rc;
  for (size_t i = 0; i < nt; i++) {
    rmqi_topic *t = rmqi_topic_find(b->st, ti[i].topic_name);
    if (!t) continue;
    for (int q = 0; q < rmqi_topic_nqueues(t); q++) chk_queue(&c, t, q);
  }
  rmqi_free(ti, cap * sizeof *ti);
  rc = rmqi_store_index_each(b->st, chk_entry, &c);
  if (rc) return rc;
  if (out) {
    out->records = c.cb.records;
    out->bytes = c.cb.bytes;
    out->units = c.units;
    out->index_entries = c.entries;
    out->problems = c.cb.problems;
  }
  if (c.cb.problems)
    return rmqi_err(RMQ_ECORRUPT, "%s: %" PRId64 " problem(s) found", rmqi_store_dir(b->st), c.cb.problems);
  return RMQ_OK;
}
