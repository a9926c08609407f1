/*
** rmqadmin.c -- rmqadmin, the store-local counterpart of RocketMQ's mqadmin.
**
**   rmqadmin -s STORE <command> [options]     rmqadmin help [command]
**
** Each command opens the store directory STORE with rmq_broker_open, does
** one thing and closes it. Command names, option letters and long names,
** and the output's headers and row formats are mqadmin's (RocketMQ 5.x
** tools); what has no meaning without a NameServer or a broker process
** (-n, cluster and broker addresses, client ids) is left out, and
** checkStore is rmq's own. Messages print as RocketMQ's MessageExt prints
** (rmq_message_ext_format).
**
** Commands that only read open the store read-only (no lock taken, no file
** changed), so they work while another process has it open; commands that
** write open it read-write and, when another process holds the store, say
** so with that process's pid. Every error names the store and what failed.
** Exit status: 0 done, 1 the operation failed (2 for a usage error: an
** unknown command, a bad or missing option, a malformed number or time).
**
** Uses only rmq.h and libc; owns no state beyond one invocation.
*/
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "rmq.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* RocketMQ's MixAll.TOOLS_CONSUMER_GROUP: the group mqadmin reads with. */
#define TOOLS_CONSUMER_GROUP "TOOLS_CONSUMER"
/* RocketMQ's default brokerClusterName, shown by topicRoute. */
#define CLUSTER_NAME "DefaultCluster"
/* RocketMQ's tools ask a key query for at most this many messages. */
#define QUERY_MAX_NUM 64
/* Messages a pull asks for, as printMsg does. */
#define PULL_BATCH 32

/* ------------------------------------------------------------------------- */
/* Commands and their options                                                 */
/* ------------------------------------------------------------------------- */

enum { ARG_NONE, ARG_STR, ARG_NUM, ARG_TIME, ARG_BOOL };

typedef struct opt_def {
  char letter;      /* 0: long name only */
  const char *name; /* long name, also the key commands look options up by */
  int type;         /* ARG_*: ARG_NONE is a flag without value */
  int required;
  const char *desc;
} opt_def;

#define MAX_OPTS 10

typedef struct admin admin;

typedef struct command {
  const char *name;
  const char *desc; /* mqadmin's commandDesc */
  /* 1: opens the store read-write (refused while another process holds it);
  ** 0: read-only; 2: read-only unless --commit (consumeMessage). */
  int writes;
  int (*run)(admin *a);
  const char *about; /* what the command does in rmq, for -h */
  opt_def opts[MAX_OPTS];
} command;

struct admin {
  const char *store;
  const command *cmd;
  const char *val[MAX_OPTS]; /* the value of each option given ("" for a flag), else NULL */
  int64_t num[MAX_OPTS];     /* ARG_NUM / ARG_TIME values in ms / ARG_BOOL 0 or 1 */
  rmq_broker_options opts;
  rmq_broker *b;
};

/* ------------------------------------------------------------------------- */
/* Messages                                                                   */
/* ------------------------------------------------------------------------- */

static void usage_line(FILE *f, const command *c);

/* Sums of lags: offsets in a damaged store can be near 2^61 each. */
static int64_t add_sat(int64_t a, int64_t b)
{
  return b > 0 && a > INT64_MAX - b ? INT64_MAX : b < 0 && a < INT64_MIN - b ? INT64_MIN : a + b;
}

/* A usage error: the message, the command's usage line, status 2. */
static int usage_error(const admin *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const admin *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rmqadmin: %s: ", a->cmd->name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  usage_line(stderr, a->cmd);
  return EXIT_USAGE;
}

/* A failed operation not from an rmq call: "rmqadmin: store S: ...". */
static int fail_msg(const admin *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_msg(const admin *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rmqadmin: store %s: ", a->store);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return EXIT_FAIL;
}

/* A failed rmq call: what was being done, then rmq_errmsg() (rmq_errstr()
** when the call left no message). */
static int fail(const admin *a, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const admin *a, int rc, const char *fmt, ...)
{
  char why[1024];
  const char *m = rmq_errmsg();
  snprintf(why, sizeof why, "%s", *m ? m : rmq_errstr(rc));
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rmqadmin: store %s: ", a->store);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, ": %s\n", why);
  va_end(ap);
  return EXIT_FAIL;
}

/* rmq's warnings and errors (damage met while reading, say) go to stderr. */
static void log_line(void *ctx, int level, const char *msg)
{
  const admin *a = ctx;
  fprintf(stderr, "rmqadmin: store %s: %s: %s\n", a->store, level == RMQ_LOG_ERROR ? "error" : "warning", msg);
}

/* ------------------------------------------------------------------------- */
/* Formatting, as RocketMQ's Java prints                                      */
/* ------------------------------------------------------------------------- */

static struct tm local_tm(int64_t ms)
{
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  return tm;
}

/* UtilAll.timeMillisToHumanString2: "2024-01-02 03:04:05,678", local time. */
static const char *human2(char *buf, size_t cap, int64_t ms)
{
  struct tm tm = local_tm(ms);
  snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d,%03d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
  return buf;
}

/* UtilAll.YYYY_MM_DD_HH_MM_SS: "2024-01-02 03:04:05", local time. */
static const char *ymd_hms(char *buf, size_t cap, int64_t ms)
{
  struct tm tm = local_tm(ms);
  snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
  return buf;
}

/* Java's Double.toString: the shortest digits that read back as v, plain
** from 1e-3 up to 1e7 ("12.5", "0.0"), else "1.0E-4". */
static const char *jdouble(char *buf, size_t cap, double v)
{
  if (v != v) return snprintf(buf, cap, "NaN"), buf;
  if (v - v != 0) return snprintf(buf, cap, "%sInfinity", v < 0 ? "-" : ""), buf;
  if (v == 0) return snprintf(buf, cap, "0.0"), buf;
  char e[48];
  for (int p = 1; p <= 17; p++) {
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    if (strtod(e, NULL) == v) break;
  }
  /* e is [-]d[.ddd]e[+-]xx: take its digits and exponent. */
  const char *s = e + (e[0] == '-');
  char d[24];
  size_t nd = 0;
  for (; *s && *s != 'e' && nd < sizeof d - 1; s++)
    if (*s != '.') d[nd++] = *s;
  d[nd] = 0;
  int exp = atoi(s + 1);
  while (nd > 1 && d[nd - 1] == '0') d[--nd] = 0;
  const char *sign = v < 0 ? "-" : "";
  double mag = v < 0 ? -v : v;
  int point = exp + 1; /* digits before the decimal point: -2..7 in the plain range */
  if (mag < 1e-3 || mag >= 1e7) snprintf(buf, cap, "%s%c.%sE%d", sign, d[0], nd > 1 ? d + 1 : "0", exp);
  else if (point <= 0) snprintf(buf, cap, "%s0.%.*s%s", sign, -point, "000", d);
  else if ((size_t)point >= nd) snprintf(buf, cap, "%s%s%.*s.0", sign, d, point - (int)nd, "0000000");
  else snprintf(buf, cap, "%s%.*s.%s", sign, point, d, d + point);
  return buf;
}

/* RocketMQ's three TPS windows joined by spaces: "12.5 3.3 0.0". */
static const char *tps3(char *buf, size_t cap, const double t[3])
{
  char x[3][40];
  snprintf(buf, cap, "%s %s %s", jdouble(x[0], sizeof x[0], t[0]), jdouble(x[1], sizeof x[1], t[1]),
           jdouble(x[2], sizeof x[2], t[2]));
  return buf;
}

/* MixAll.humanReadableByteCount(bytes, false): "512 B", "1.5 KiB". */
static const char *human_bytes(char *buf, size_t cap, int64_t bytes)
{
  if (bytes < 1024) return snprintf(buf, cap, "%" PRId64 " B", bytes), buf;
  double v = (double)bytes;
  int exp = 0;
  while (v >= 1024 && exp < 6) {
    v /= 1024;
    exp++;
  }
  snprintf(buf, cap, "%.1f %ciB", v, "KMGTPE"[exp - 1]);
  return buf;
}

/* MessageQueue.toString(). */
static const char *mq_str(char *buf, size_t cap, const rmq_message_queue *mq)
{
  snprintf(buf, cap, "MessageQueue [topic=%s, brokerName=%s, queueId=%d]", mq->topic, mq->broker_name, mq->queue_id);
  return buf;
}

static const char *pull_status_name(int s)
{
  switch (s) {
  case RMQ_PULL_FOUND: return "FOUND";
  case RMQ_PULL_NO_NEW_MSG: return "NO_NEW_MSG";
  case RMQ_PULL_NO_MATCHED_MSG: return "NO_MATCHED_MSG";
  default: return "OFFSET_ILLEGAL";
  }
}

static const char *send_status_name(int s)
{
  static const char *n[] = {"SEND_OK", "FLUSH_DISK_TIMEOUT", "FLUSH_SLAVE_TIMEOUT", "SLAVE_NOT_AVAILABLE"};
  return s >= 0 && s < 4 ? n[s] : "UNKNOWN";
}

/* PermName.perm2String: "RW-". */
static const char *perm_str(char buf[4], int perm)
{
  buf[0] = perm & 4 ? 'R' : '-';
  buf[1] = perm & 2 ? 'W' : '-';
  buf[2] = perm & 1 ? 'X' : '-';
  buf[3] = 0;
  return buf;
}

/* "MSGID: <msgId> <MessageExt.toString()> BODY: <body>", as printMsg and
** consumeMessage print a message. */
static void print_msg_line(const rmq_message_ext *m, int body)
{
  char small[4096], *text = small;
  int need = rmq_message_ext_format(m, small, sizeof small);
  if (need >= (int)sizeof small && (text = malloc((size_t)need + 1)) != NULL)
    rmq_message_ext_format(m, text, (size_t)need + 1);
  printf("MSGID: %s %s BODY: ", m->msg_id, text ? text : small);
  if (body) fwrite(m->body, 1, (size_t)m->body_len, stdout);
  else fputs("NOT PRINT BODY", stdout);
  putchar('\n');
  if (text != small) free(text);
}

/* ------------------------------------------------------------------------- */
/* Options                                                                    */
/* ------------------------------------------------------------------------- */

static int opt_index(const command *c, const char *name)
{
  for (int i = 0; i < MAX_OPTS && c->opts[i].name; i++)
    if (strcmp(c->opts[i].name, name) == 0) return i;
  return -1;
}

static const char *arg(const admin *a, const char *name)
{
  int i = opt_index(a->cmd, name);
  return i < 0 ? NULL : a->val[i];
}

static int64_t num(const admin *a, const char *name)
{
  int i = opt_index(a->cmd, name);
  return i < 0 ? 0 : a->num[i];
}

/* The int an rmq call takes; out-of-range values become one rmq refuses. */
static int to_int(int64_t v) { return v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v; }

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_num(const char *s, int64_t *out)
{
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno) return 0;
  *out = v;
  return 1;
}

/* mqadmin's timestamps: "now", milliseconds since the epoch, or
** yyyy-MM-dd#HH:mm:ss:SSS in local time. */
static int parse_time(const char *s, int64_t *out)
{
  if (strcasecmp(s, "now") == 0) return *out = now_ms(), 1;
  if (parse_num(s, out)) return 1;
  struct tm tm;
  int ms, n = 0;
  memset(&tm, 0, sizeof tm);
  if (sscanf(s, "%4d-%2d-%2d#%2d:%2d:%2d:%3d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
             &tm.tm_sec, &ms, &n) != 7 || s[n])
    return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;
  time_t t = mktime(&tm);
  if (t == (time_t)-1) return 0;
  *out = (int64_t)t * 1000 + ms;
  return 1;
}

static int check_value(admin *a, int i)
{
  const opt_def *d = &a->cmd->opts[i];
  const char *v = a->val[i];
  switch (d->type) {
  case ARG_NUM:
    if (!parse_num(v, &a->num[i])) return usage_error(a, "-%c/--%s: '%s' is not a number", d->letter, d->name, v);
    break;
  case ARG_TIME:
    if (!parse_time(v, &a->num[i]))
      return usage_error(a, "-%c/--%s: '%s' is not a timestamp (now, milliseconds or yyyy-MM-dd#HH:mm:ss:SSS)",
                         d->letter, d->name, v);
    break;
  case ARG_BOOL:
    if (strcasecmp(v, "true") && strcasecmp(v, "false"))
      return usage_error(a, "-%c/--%s: '%s' is not true or false", d->letter, d->name, v);
    a->num[i] = strcasecmp(v, "true") == 0;
    break;
  }
  return EXIT_OK;
}

/* Finds the option argv[*k] names (-x, -xVALUE, --name, --name=VALUE),
** stores its value; -1 for -h. */
static int parse_one(admin *a, int argc, char **argv, int *k)
{
  const char *t = argv[*k], *inline_val = NULL;
  const command *c = a->cmd;
  int i = -1;
  if (strcmp(t, "-h") == 0 || strcmp(t, "--help") == 0) return -1;
  if (t[0] != '-' || !t[1]) return usage_error(a, "unexpected argument '%s'", t);
  if (t[1] == '-') {
    const char *eq = strchr(t + 2, '=');
    size_t len = eq ? (size_t)(eq - t - 2) : strlen(t + 2);
    for (int j = 0; j < MAX_OPTS && c->opts[j].name && i < 0; j++)
      if (strlen(c->opts[j].name) == len && strncmp(c->opts[j].name, t + 2, len) == 0) i = j;
    if (eq) inline_val = eq + 1;
  } else {
    for (int j = 0; j < MAX_OPTS && c->opts[j].name && i < 0; j++)
      if (c->opts[j].letter == t[1]) i = j;
    if (t[2]) inline_val = t + 2;
  }
  if (i < 0) return usage_error(a, "unknown option %s", t);
  if (c->opts[i].type == ARG_NONE) {
    if (inline_val) return usage_error(a, "option %s takes no value", t);
    a->val[i] = "";
    return EXIT_OK;
  }
  if (!inline_val) {
    if (*k + 1 >= argc) return usage_error(a, "option %s needs a value", t);
    inline_val = argv[++*k];
  }
  a->val[i] = inline_val;
  return check_value(a, i);
}

/* Parses the command's options: EXIT_OK, EXIT_USAGE, or -1 for help. */
static int parse_opts(admin *a, int argc, char **argv)
{
  for (int k = 0; k < argc; k++) {
    int rc = parse_one(a, argc, argv, &k);
    if (rc) return rc;
  }
  for (int i = 0; i < MAX_OPTS && a->cmd->opts[i].name; i++)
    if (a->cmd->opts[i].required && !a->val[i])
      return usage_error(a, "missing required option -%c/--%s", a->cmd->opts[i].letter, a->cmd->opts[i].name);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* Opening the store                                                          */
/* ------------------------------------------------------------------------- */

static int is_dir(const char *store, const char *sub)
{
  char p[PATH_MAX];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", store, sub);
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A store is a directory holding commitlog/ or config/: rmqadmin never
** makes one, so a mistyped path is an error, not a new empty store. */
static int check_store(const admin *a)
{
  struct stat st;
  if (stat(a->store, &st) != 0) return fail_msg(a, "cannot open the store directory: %s", strerror(errno));
  if (!S_ISDIR(st.st_mode)) return fail_msg(a, "not a directory");
  if (!is_dir(a->store, "commitlog") && !is_dir(a->store, "config"))
    return fail_msg(a, "not an rmq store (no commitlog/ or config/ in it)");
  return EXIT_OK;
}

/* Opens the store, read-only or read-write; no service thread (the
** command's calls do all the work), no topic made by a send. */
static int open_store(admin *a, int read_only)
{
  rmq_broker_options_init(&a->opts);
  a->opts.read_only = read_only;
  a->opts.service_thread = 0;
  a->opts.auto_create_topic_enable = 0;
  a->opts.log = log_line;
  a->opts.log_ctx = a;
  a->opts.log_level = RMQ_LOG_WARN;
  int rc = rmq_broker_open(a->store, &a->opts, &a->b);
  if (rc == RMQ_EBUSY) {
    int pid = rmq_store_lock_owner(a->store);
    if (pid > 0)
      fprintf(stderr, "rmqadmin: store %s is held by another process (pid %d); stop it first\n", a->store, pid);
    else
      fprintf(stderr, "rmqadmin: store %s is held by another process; stop it first\n", a->store);
    return EXIT_FAIL;
  }
  if (rc) return fail(a, rc, "cannot open the store%s", read_only ? " (read-only)" : "");
  return EXIT_OK;
}

/* The topic's configuration, or an error naming it. */
static int find_topic(const admin *a, const char *topic, rmq_topic_info *out)
{
  size_t n = 0;
  int rc = rmq_topic_list(a->b, NULL, 0, &n);
  if (rc) return fail(a, rc, "listing the topics");
  rmq_topic_info *all = calloc(n ? n : 1, sizeof *all);
  if (!all) return fail_msg(a, "out of memory");
  size_t cap = n;
  rc = rmq_topic_list(a->b, all, cap, &n);
  int found = 0;
  for (size_t i = 0; rc == RMQ_OK && i < n && i < cap && !found; i++)
    if (strcmp(all[i].topic_name, topic) == 0) {
      *out = all[i];
      found = 1;
    }
  free(all);
  if (rc) return fail(a, rc, "listing the topics");
  if (!found) return fail_msg(a, "topic %s does not exist", topic);
  return EXIT_OK;
}

/* The store time of the message at a queue offset; 0 when there is none. */
static int64_t store_time_at(const admin *a, const char *topic, int qid, int64_t offset)
{
  rmq_message_ext *m = NULL;
  if (offset < 0 || rmq_broker_query_message_by_offset(a->b, topic, qid, offset, &m) != RMQ_OK) return 0;
  int64_t t = m->store_timestamp;
  rmq_message_ext_free(m);
  return t;
}

/* -b (brokerName), where mqadmin has it, must name this store's broker. */
static int check_broker_name(const admin *a)
{
  const char *bn = arg(a, "brokerName");
  if (!bn) bn = arg(a, "broker");
  if (bn && strcmp(bn, a->opts.broker_name) != 0)
    return fail_msg(a, "no broker %s here: this store's broker is %s", bn, a->opts.broker_name);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* Topics                                                                     */
/* ------------------------------------------------------------------------- */

static int cmd_update_topic(admin *a)
{
  const char *topic = arg(a, "topic");
  int hr = arg(a, "readQueueNums") != NULL, hw = arg(a, "writeQueueNums") != NULL;
  int64_t r = hr ? num(a, "readQueueNums") : 8, w = hw ? num(a, "writeQueueNums") : 8;
  if (hr && !hw) w = r;
  if (hw && !hr) r = w;
  if (r != w) return usage_error(a, "-r and -w differ: rmq keeps one queue count for reading and writing");
  int rc = open_store(a, 0);
  if (rc) return rc;
  rc = rmq_topic_create(a->b, topic, to_int(w));
  if (rc) return fail(a, rc, "updateTopic %s", topic);
  rmq_topic_info ti;
  if ((rc = find_topic(a, topic, &ti))) return rc;
  char perm[4];
  printf("create topic to %s success.\n", a->store);
  printf("TopicConfig [topicName=%s, readQueueNums=%d, writeQueueNums=%d, perm=%s, topicFilterType=SINGLE_TAG, "
         "topicSysFlag=0, order=false, attributes={}]\n",
         ti.topic_name, ti.read_queue_nums, ti.write_queue_nums, perm_str(perm, ti.perm));
  return EXIT_OK;
}

static int cmd_delete_topic(admin *a)
{
  const char *topic = arg(a, "topic");
  int rc = open_store(a, 0);
  if (rc) return rc;
  if ((rc = rmq_topic_delete(a->b, topic))) return fail(a, rc, "deleteTopic %s", topic);
  printf("delete topic [%s] from store [%s] success.\n", topic, a->store);
  return EXIT_OK;
}

static int cmd_topic_list(admin *a)
{
  int rc = open_store(a, 1);
  if (rc) return rc;
  size_t n = 0;
  if ((rc = rmq_topic_list(a->b, NULL, 0, &n))) return fail(a, rc, "listing the topics");
  rmq_topic_info *all = calloc(n ? n : 1, sizeof *all);
  if (!all) return fail_msg(a, "out of memory");
  size_t cap = n;
  rc = rmq_topic_list(a->b, all, cap, &n);
  for (size_t i = 0; rc == RMQ_OK && i < n && i < cap; i++) printf("%s\n", all[i].topic_name);
  free(all);
  return rc ? fail(a, rc, "listing the topics") : EXIT_OK;
}

/* The topic's put TPS over the last minute, from the statistics. */
static double topic_put_tps(const admin *a, const char *topic)
{
  rmq_broker_stats st;
  double tps = 0;
  if (rmq_broker_stats_get(a->b, &st) != RMQ_OK) return 0;
  for (size_t i = 0; i < st.ntopics; i++)
    if (strcmp(st.topics[i].topic, topic) == 0) tps = st.topics[i].put_tps[RMQ_TPS_1MIN];
  rmq_broker_stats_free(&st);
  return tps;
}

static int cmd_topic_status(admin *a)
{
  const char *topic = arg(a, "topic");
  rmq_topic_info ti;
  int rc = open_store(a, 1);
  if (rc || (rc = find_topic(a, topic, &ti))) return rc;
  int nq = ti.read_queue_nums > ti.write_queue_nums ? ti.read_queue_nums : ti.write_queue_nums;
  printf("%-32s  %-4s  %-20s  %-20s    %s\n", "#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated");
  for (int q = 0; q < nq; q++) {
    int64_t min = 0, max = 0;
    if ((rc = rmq_topic_queue_offsets(a->b, topic, q, &min, &max))) return fail(a, rc, "topicStatus %s queue %d", topic, q);
    int64_t last = max > 0 ? store_time_at(a, topic, q, max - 1) : 0;
    char when[80] = "";
    if (last > 0) human2(when, sizeof when, last);
    printf("%-32.32s  %-4d  %-20" PRId64 "  %-20" PRId64 "    %s\n", a->opts.broker_name, q, min < 0 ? 0 : min,
           max < 0 ? 0 : max, when);
  }
  char tps[40];
  printf("\nTopic Put TPS: %s\n", jdouble(tps, sizeof tps, topic_put_tps(a, topic)));
  return EXIT_OK;
}

static int cmd_topic_route(admin *a)
{
  const char *topic = arg(a, "topic");
  rmq_topic_info ti;
  int rc = open_store(a, 1);
  if (rc || (rc = find_topic(a, topic, &ti))) return rc;
  char addr[300];
  snprintf(addr, sizeof addr, "%s:%d", a->opts.store_host, a->opts.store_port);
  if (arg(a, "list")) {
    const char *fmt = "%-45s %-32s %-50s %-10s %-11s %-5s\n";
    char brokers[320], rq[16], wq[16], perm[16];
    snprintf(brokers, sizeof brokers, "{0=%s}", addr);
    snprintf(rq, sizeof rq, "%d", ti.read_queue_nums);
    snprintf(wq, sizeof wq, "%d", ti.write_queue_nums);
    snprintf(perm, sizeof perm, "%d", ti.perm);
    printf(fmt, "#ClusterName", "#BrokerName", "#BrokerAddrs", "#ReadQueue", "#WriteQueue", "#Perm");
    printf(fmt, CLUSTER_NAME, a->opts.broker_name, brokers, rq, wq, perm);
    for (int i = 0; i < 158; i++) putchar('-');
    putchar('\n');
    printf(fmt, "Total:", "1", "", rq, wq, "");
    return EXIT_OK;
  }
  /* TopicRouteData as fastjson pretty-prints it: tabs, sorted fields. */
  printf("{\n\t\"brokerDatas\":[\n\t\t{\n\t\t\t\"brokerAddrs\":{0:\"%s\"\n\t\t\t},\n", addr);
  printf("\t\t\t\"brokerName\":\"%s\",\n\t\t\t\"cluster\":\"%s\",\n\t\t\t\"enableActingMaster\":false\n\t\t}\n\t],\n",
         a->opts.broker_name, CLUSTER_NAME);
  printf("\t\"filterServerTable\":{},\n\t\"queueDatas\":[\n\t\t{\n\t\t\t\"brokerName\":\"%s\",\n", a->opts.broker_name);
  printf("\t\t\t\"perm\":%d,\n\t\t\t\"readQueueNums\":%d,\n\t\t\t\"topicSysFlag\":0,\n\t\t\t\"writeQueueNums\":%d\n"
         "\t\t}\n\t]\n}\n",
         ti.perm, ti.read_queue_nums, ti.write_queue_nums);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* Sending and consuming                                                      */
/* ------------------------------------------------------------------------- */

static int cmd_send_message(admin *a)
{
  const char *topic = arg(a, "topic"), *body = arg(a, "body");
  const char *qid = arg(a, "qid");
  int rc = open_store(a, 0);
  if (rc || (rc = check_broker_name(a))) return rc;
  rmq_producer *p = NULL;
  rmq_msg *m = NULL;
  rmq_send_result r;
  if ((rc = rmq_producer_create(a->b, NULL, NULL, &p))) return fail(a, rc, "sendMessage: creating the producer");
  if ((rc = rmq_msg_create(&m, topic, arg(a, "tags"), body, strlen(body))) ||
      (arg(a, "key") && (rc = rmq_msg_set_keys(m, arg(a, "key"))))) {
    fail(a, rc, "sendMessage to %s: the message", topic);
    goto out;
  }
  rc = qid ? rmq_producer_send_to_queue(p, m, to_int(num(a, "qid")), &r) : rmq_producer_send(p, m, &r);
  if (rc) {
    fail(a, rc, "sendMessage to %s", topic);
    goto out;
  }
  char q[16];
  snprintf(q, sizeof q, "%d", r.message_queue.queue_id);
  printf("%-32s  %-4s  %-20s    %s\n", "#Broker Name", "#QID", "#Send Result", "#MsgId");
  printf("%-32s  %-4s  %-20s    %s\n", r.message_queue.broker_name, q, send_status_name(r.send_status), r.msg_id);
out:
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return rc ? EXIT_FAIL : EXIT_OK;
}

/* The queues a read covers: all readable queues of the topic, or -i's. */
static int read_queues(admin *a, rmq_pull_consumer *c, const char *topic, rmq_message_queue **out, size_t *n)
{
  size_t cnt = 0;
  int rc = rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, NULL, 0, &cnt);
  if (rc) return fail(a, rc, "%s: the queues of %s", a->cmd->name, topic);
  rmq_message_queue *mqs = calloc(cnt ? cnt : 1, sizeof *mqs);
  if (!mqs) return fail_msg(a, "out of memory");
  size_t cap = cnt;
  if ((rc = rmq_pull_consumer_fetch_subscribe_message_queues(c, topic, mqs, cap, &cnt))) {
    free(mqs);
    return fail(a, rc, "%s: the queues of %s", a->cmd->name, topic);
  }
  if (cnt > cap) cnt = cap;
  const char *qid = arg(a, "queueId");
  if (qid) {
    int64_t want = num(a, "queueId");
    size_t k = 0;
    while (k < cnt && mqs[k].queue_id != want) k++;
    if (k == cnt) {
      free(mqs);
      return fail_msg(a, "%s: topic %s has no queue %s", a->cmd->name, topic, qid);
    }
    mqs[0] = mqs[k];
    cnt = 1;
  }
  *out = mqs;
  *n = cnt;
  return EXIT_OK;
}

/* One consumeMessage pass over a queue: print [start, end) (and, when end is
** the queue's end, go on to the pull that says so), then commit. */
typedef struct consume_job {
  rmq_pull_consumer *c;
  const char *sql;
  int commit;
} consume_job;

static int consume_queue(admin *a, const consume_job *j, const rmq_message_queue *mq, int64_t start, int64_t end,
                         int to_queue_end)
{
  char mqs[400];
  int64_t off = start;
  while (off < end || (off == end && to_queue_end)) {
    int64_t want = end - off > PULL_BATCH ? PULL_BATCH : end - off;
    rmq_pull_result r;
    int rc = j->sql ? rmq_pull_consumer_pull_selector(j->c, mq, RMQ_SELECTOR_SQL92, j->sql, off, want ? (int)want : 1, &r)
                    : rmq_pull_consumer_pull(j->c, mq, "*", off, want ? (int)want : 1, &r);
    if (rc) return fail(a, rc, "consumeMessage: pulling %s at offset %" PRId64, mq_str(mqs, sizeof mqs, mq), off);
    if (r.pull_status == RMQ_PULL_FOUND) {
      printf("Consume ok\n");
      for (size_t i = 0; i < r.n; i++) print_msg_line(&r.msgs[i], 1);
    }
    int finished = r.pull_status == RMQ_PULL_NO_NEW_MSG || r.pull_status == RMQ_PULL_OFFSET_ILLEGAL;
    if (r.pull_status != RMQ_PULL_FOUND)
      printf("%s %s. status=%s, offset=%" PRId64 "\n", mq_str(mqs, sizeof mqs, mq),
             finished ? "print msg finished" : "no matched msg", pull_status_name(r.pull_status), r.next_begin_offset);
    if (finished || r.next_begin_offset <= off) break;
    off = r.next_begin_offset;
  }
  if (j->commit && off > start) {
    int rc = rmq_pull_consumer_update_consume_offset(j->c, mq, off);
    if (rc) return fail(a, rc, "consumeMessage: committing offset %" PRId64 " of %s", off, mq_str(mqs, sizeof mqs, mq));
    printf("%s committed offset=%" PRId64 "\n", mq_str(mqs, sizeof mqs, mq), off);
  }
  return EXIT_OK;
}

/* Where consumeMessage starts in a queue: -s's time or, without it, the
** group's committed offset (none: the queue's first message); -o (as
** mqadmin, the later of it and that) instead of the committed offset. */
static int consume_range(admin *a, rmq_pull_consumer *c, const rmq_message_queue *mq, int64_t begin_ms,
                         int64_t *start, int64_t *end, int64_t *qmax)
{
  int64_t min, max;
  int rc = rmq_topic_queue_offsets(a->b, mq->topic, mq->queue_id, &min, &max);
  if (rc) return fail(a, rc, "consumeMessage: the offsets of %s queue %d", mq->topic, mq->queue_id);
  *qmax = max;
  *start = min;
  int64_t committed;
  if (begin_ms > 0) {
    if ((rc = rmq_broker_search_offset(a->b, mq->topic, mq->queue_id, begin_ms, start)))
      return fail(a, rc, "consumeMessage: searching %s queue %d by time", mq->topic, mq->queue_id);
  } else if (!arg(a, "offset") && rmq_pull_consumer_fetch_consume_offset(c, mq, &committed) == RMQ_OK &&
             committed > min) {
    *start = committed;
  }
  if (arg(a, "offset") && num(a, "offset") > *start) *start = num(a, "offset");
  *end = max;
  if (arg(a, "endTimestamp") &&
      (rc = rmq_broker_search_offset(a->b, mq->topic, mq->queue_id, num(a, "endTimestamp"), end)))
    return fail(a, rc, "consumeMessage: searching %s queue %d by time", mq->topic, mq->queue_id);
  if (*start > *end) *start = *end;
  return EXIT_OK;
}

/* -s is mqadmin's begin time; anything that is not a time is the issue's
** SQL92 selector. --sql always is one. */
static int consume_selector(admin *a, const char **sql, int64_t *begin_ms)
{
  const char *s = arg(a, "beginTimestamp");
  *sql = arg(a, "sql");
  *begin_ms = 0;
  if (s && !parse_time(s, begin_ms)) {
    if (*sql) return usage_error(a, "-s '%s' is not a timestamp, and --sql is given too", s);
    *sql = s;
  }
  if (*sql) {
    rmq_selector *sel = NULL;
    int rc = rmq_selector_compile(RMQ_SELECTOR_SQL92, *sql, &sel);
    rmq_selector_free(sel);
    if (rc) return usage_error(a, "SQL92 selector '%s': %s", *sql, rmq_errmsg());
  }
  return EXIT_OK;
}

static int consume_all(admin *a, const consume_job *j, const rmq_message_queue *mqs, size_t n, int64_t begin_ms)
{
  int64_t left = arg(a, "MessageNumber") ? num(a, "MessageNumber") : 128;
  for (size_t i = 0; i < n && left > 0; i++) {
    int64_t start = 0, end = 0, qmax = 0;
    int rc = consume_range(a, j->c, &mqs[i], begin_ms, &start, &end, &qmax);
    if (rc) return rc;
    int capped = 0;
    if (end - start > left) {
      if (arg(a, "queueId")) printf("The oldler %" PRId64 " message will be provided\n", left);
      else printf("The older %" PRId64 " message of the %d queue will be provided\n", left, mqs[i].queue_id);
      end = start + left;
      capped = 1;
    }
    left -= end - start;
    if ((rc = consume_queue(a, j, &mqs[i], start, end, !capped && end == qmax))) return rc;
  }
  return EXIT_OK;
}

static int cmd_consume_message(admin *a)
{
  const char *topic = arg(a, "topic");
  const char *group = arg(a, "consumerGroup") ? arg(a, "consumerGroup") : TOOLS_CONSUMER_GROUP;
  consume_job j = {NULL, NULL, arg(a, "commit") != NULL};
  int64_t begin_ms;
  if (arg(a, "MessageNumber") && num(a, "MessageNumber") <= 0)
    return usage_error(a, "-c/--MessageNumber: please input a positive messageNumber");
  if (arg(a, "offset") && !arg(a, "queueId")) return usage_error(a, "please set queueId (-i) before offset (-o)");
  int rc = consume_selector(a, &j.sql, &begin_ms);
  if (rc || (rc = open_store(a, !j.commit)) || (rc = check_broker_name(a))) return rc;
  if ((rc = rmq_pull_consumer_create(a->b, group, &j.c))) return fail(a, rc, "consumeMessage: pull consumer of %s", group);
  rmq_message_queue *mqs = NULL;
  size_t n = 0;
  if (!(rc = read_queues(a, j.c, topic, &mqs, &n))) rc = consume_all(a, &j, mqs, n, begin_ms);
  free(mqs);
  rmq_pull_consumer_destroy(j.c);
  return rc;
}

static int cmd_print_msg(admin *a)
{
  const char *topic = arg(a, "topic"), *expr = arg(a, "subExpression") ? arg(a, "subExpression") : "*";
  const char *cs = arg(a, "charsetName");
  int body = arg(a, "printBody") ? (int)num(a, "printBody") : 1;
  if (cs && strcasecmp(cs, "UTF-8") && strcasecmp(cs, "UTF8"))
    return usage_error(a, "-c/--charsetName: only UTF-8 is supported (bodies print as stored)");
  rmq_selector *sel = NULL;
  int rc = rmq_selector_compile(RMQ_SELECTOR_TAG, expr, &sel);
  rmq_selector_free(sel);
  if (rc) return usage_error(a, "-s/--subExpression '%s': %s", expr, rmq_errmsg());
  rmq_pull_consumer *c = NULL;
  rmq_message_queue *mqs = NULL;
  size_t n = 0;
  if ((rc = open_store(a, 1))) return rc;
  if ((rc = rmq_pull_consumer_create(a->b, TOOLS_CONSUMER_GROUP, &c))) return fail(a, rc, "printMsg: pull consumer");
  if ((rc = read_queues(a, c, topic, &mqs, &n))) goto out;
  for (size_t i = 0; i < n && !rc; i++) {
    char mq[400];
    int64_t min, max;
    if ((rc = rmq_topic_queue_offsets(a->b, topic, mqs[i].queue_id, &min, &max)) ||
        (arg(a, "beginTimestamp") && (rc = rmq_broker_search_offset(a->b, topic, mqs[i].queue_id, num(a, "beginTimestamp"), &min))) ||
        (arg(a, "endTimestamp") && (rc = rmq_broker_search_offset(a->b, topic, mqs[i].queue_id, num(a, "endTimestamp"), &max)))) {
      rc = fail(a, rc, "printMsg: the offsets of %s", mq_str(mq, sizeof mq, &mqs[i]));
      break;
    }
    printf("minOffset=%" PRId64 ", maxOffset=%" PRId64 ", %s\n", min, max, mq_str(mq, sizeof mq, &mqs[i]));
    for (int64_t off = min; off < max;) {
      rmq_pull_result r;
      /* Up to max only (mqadmin asks for 32 and prints past -e's offset). */
      int want = max - off > PULL_BATCH ? PULL_BATCH : (int)(max - off);
      if ((rc = rmq_pull_consumer_pull(c, &mqs[i], expr, off, want, &r))) {
        rc = fail(a, rc, "printMsg: pulling %s at offset %" PRId64, mq, off);
        break;
      }
      if (r.pull_status == RMQ_PULL_FOUND)
        for (size_t k = 0; k < r.n; k++) print_msg_line(&r.msgs[k], body);
      else
        printf("%s %s. status=%s, offset=%" PRId64 "\n", mq,
               r.pull_status == RMQ_PULL_NO_MATCHED_MSG ? "no matched msg" : "print msg finished",
               pull_status_name(r.pull_status), r.next_begin_offset);
      if (r.pull_status == RMQ_PULL_NO_NEW_MSG || r.pull_status == RMQ_PULL_OFFSET_ILLEGAL ||
          r.next_begin_offset <= off)
        break;
      off = r.next_begin_offset;
    }
    printf("--------------------------------------------------------\n");
  }
out:
  free(mqs);
  rmq_pull_consumer_destroy(c);
  return rc ? EXIT_FAIL : EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* Looking messages up                                                        */
/* ------------------------------------------------------------------------- */

static void print_host(FILE *f, const uint8_t *h, int len, int port)
{
  if (len == 4) fprintf(f, "%u.%u.%u.%u:%d", h[0], h[1], h[2], h[3], port);
  else {
    for (int i = 0; i < 16; i += 2) fprintf(f, "%s%x", i ? ":" : "", (h[i] << 8) | h[i + 1]);
    fprintf(f, ":%d", port);
  }
}

/* The message's properties as a Java Map prints them, in stored order;
** with_bounds adds MIN_OFFSET and MAX_OFFSET first, as a pull does. */
static void print_props(const rmq_message_ext *m, int with_bounds)
{
  const char *p = m->properties, *end = m->properties + m->properties_len;
  int first = 1;
  putchar('{');
  if (with_bounds) {
    printf("MIN_OFFSET=%" PRId64 ", MAX_OFFSET=%" PRId64, m->min_offset, m->max_offset);
    first = 0;
  }
  while (p < end) {
    const char *e = memchr(p, 2, (size_t)(end - p));
    if (!e) e = end;
    const char *sep = memchr(p, 1, (size_t)(e - p));
    if (sep) printf("%s%.*s=%.*s", first ? "" : ", ", (int)(sep - p), p, (int)(e - sep - 1), sep + 1), first = 0;
    p = e + 1;
  }
  putchar('}');
}

/* Which groups consumed the message, from their committed offsets (rmq's
** consumers run inside other processes, so none is "online" here). */
static void print_tracks(const admin *a, const rmq_message_ext *m)
{
  rmq_broker_stats st;
  int shown = 0;
  if (rmq_broker_stats_get(a->b, &st) == RMQ_OK) {
    for (size_t i = 0; i < st.ngroups; i++) {
      const rmq_group_stats *g = &st.groups[i];
      if (strcmp(g->topic, m->topic) != 0) continue;
      for (size_t q = 0; q < g->nqueues; q++)
        if (g->queues[q].queue_id == m->queue_id) {
          printf("%sMessageTrack [consumerGroup=%s, trackType=%s, exceptionDesc=null]\n", shown ? "" : "\n\n",
                 g->group, g->queues[q].consumer_offset > m->queue_offset ? "CONSUMED" : "NOT_CONSUME_YET");
          shown = 1;
        }
    }
    rmq_broker_stats_free(&st);
  }
  if (!shown) printf("\n\nWARN: No Consumer\n");
}

/* queryMsgById's listing of one message, "%-20s %s" a line. */
static void print_msg_detail(const admin *a, const rmq_message_ext *m, int with_bounds)
{
  char t[80];
  printf("%-20s %s\n", "OffsetID:", m->offset_msg_id);
  printf("%-20s %s\n", "Topic:", m->topic);
  printf("%-20s [%.*s]\n", "Tags:", m->tags ? m->tags_len : 4, m->tags ? m->tags : "null");
  printf("%-20s [%.*s]\n", "Keys:", m->keys ? m->keys_len : 4, m->keys ? m->keys : "null");
  printf("%-20s %d\n", "Queue ID:", m->queue_id);
  printf("%-20s %" PRId64 "\n", "Queue Offset:", m->queue_offset);
  printf("%-20s %" PRId64 "\n", "CommitLog Offset:", m->commit_log_offset);
  printf("%-20s %d\n", "Reconsume Times:", m->reconsume_times);
  printf("%-20s %s\n", "Born Timestamp:", human2(t, sizeof t, m->born_timestamp));
  printf("%-20s %s\n", "Store Timestamp:", human2(t, sizeof t, m->store_timestamp));
  printf("%-20s ", "Born Host:");
  print_host(stdout, m->born_host, m->born_host_len, m->born_port);
  printf("\n%-20s ", "Store Host:");
  print_host(stdout, m->store_host, m->store_host_len, m->store_port);
  printf("\n%-20s %d\n", "System Flag:", m->sys_flag);
  printf("%-20s ", "Properties:");
  print_props(m, with_bounds);
  printf("\n%-20s ", "Message Body:");
  fwrite(m->body, 1, (size_t)m->body_len, stdout);
  putchar('\n');
  print_tracks(a, m);
}

static int cmd_query_msg_by_id(admin *a)
{
  char ids[4096];
  const char *topic = arg(a, "topic");
  snprintf(ids, sizeof ids, "%s", arg(a, "msgId"));
  int rc = open_store(a, 1);
  if (rc) return rc;
  int first = 1;
  for (char *save = NULL, *id = strtok_r(ids, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
    while (*id == ' ') id++;
    rmq_message_ext *m = NULL;
    /* An offsetMsgId first, then a msgId (UNIQ_KEY), as mqadmin does. */
    rc = rmq_broker_view_message(a->b, id, &m);
    if (rc == RMQ_OK && topic && strcmp(m->topic, topic) != 0) {
      rmq_message_ext_free(m);
      m = NULL;
      rc = RMQ_ENOTFOUND;
    }
    if (rc == RMQ_ENOTFOUND || rc == RMQ_EINVAL) rc = rmq_broker_query_message_by_uniq_key(a->b, topic, id, &m);
    if (rc == RMQ_ENOTFOUND)
      return fail_msg(a, "queryMsgById: no message with msgId or offsetMsgId %s%s%s", id, topic ? " in topic " : "",
                      topic ? topic : "");
    if (rc) return fail(a, rc, "queryMsgById %s", id);
    if (!first) putchar('\n');
    print_msg_detail(a, m, 0);
    rmq_message_ext_free(m);
    first = 0;
  }
  return EXIT_OK;
}

static int cmd_query_msg_by_key(admin *a)
{
  const char *topic = arg(a, "topic"), *key = arg(a, "msgKey");
  int64_t begin = arg(a, "beginTimestamp") ? num(a, "beginTimestamp") : 0;
  int64_t end = arg(a, "endTimestamp") ? num(a, "endTimestamp") : INT64_MAX;
  int max = arg(a, "maxNum") ? to_int(num(a, "maxNum")) : QUERY_MAX_NUM;
  rmq_query_result r;
  int rc = open_store(a, 1);
  if (rc) return rc;
  if ((rc = rmq_broker_query_message(a->b, topic, key, max, begin, end, &r))) return fail(a, rc, "queryMsgByKey %s %s", topic, key);
  if (r.n == 0) {
    rmq_query_result_free(&r);
    return fail_msg(a, "queryMsgByKey: no message with key %s in topic %s", key, topic);
  }
  /* rmq answers newest first; a broker sends them in CommitLog order. */
  printf("%-50s %4s %40s\n", "#Message ID", "#QID", "#Offset");
  for (size_t i = r.n; i-- > 0;)
    printf("%-50s %4d %40" PRId64 "\n", r.msgs[i].msg_id, r.msgs[i].queue_id, r.msgs[i].queue_offset);
  rmq_query_result_free(&r);
  return EXIT_OK;
}

static int cmd_query_msg_by_offset(admin *a)
{
  const char *topic = arg(a, "topic");
  /* -i is mqadmin's letter for the queue, -q the issue's: either. */
  if (!arg(a, "queueId") && !arg(a, "queue")) return usage_error(a, "the queue is required: -i/--queueId or -q");
  int qid = to_int(arg(a, "queue") ? num(a, "queue") : num(a, "queueId"));
  int64_t off = num(a, "offset");
  rmq_message_ext *m = NULL;
  int rc = open_store(a, 1);
  if (rc || (rc = check_broker_name(a))) return rc;
  if ((rc = rmq_broker_query_message_by_offset(a->b, topic, qid, off, &m)))
    return fail(a, rc, "queryMsgByOffset %s queue %d offset %" PRId64, topic, qid, off);
  rmq_topic_queue_offsets(a->b, topic, qid, &m->min_offset, &m->max_offset);
  print_msg_detail(a, m, 1);
  rmq_message_ext_free(m);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* Consumer groups                                                            */
/* ------------------------------------------------------------------------- */

static int cmp_queue_stats(const void *x, const void *y)
{
  const rmq_queue_stats *a = x, *b = y;
  return (a->queue_id > b->queue_id) - (a->queue_id < b->queue_id);
}

/* consumerProgress -g: one row per queue of each topic the group has
** offsets in (in name order: the statistics are sorted), as 5.x prints. */
static int progress_of_group(admin *a, const rmq_broker_stats *st, const char *group)
{
  const char *topic = arg(a, "topicName");
  int ip = arg(a, "showClientIP") && num(a, "showClientIP");
  double tps = 0;
  int64_t diff_total = 0;
  int rows = 0;
  if (ip)
    printf("%-64s  %-32s  %-4s  %-20s  %-20s  %-20s %-20s %-20s%s\n", "#Topic", "#Broker Name", "#QID",
           "#Broker Offset", "#Consumer Offset", "#Client IP", "#Diff", "#Inflight", "#LastTime");
  else
    printf("%-64s  %-32s  %-4s  %-20s  %-20s  %-20s %-20s%s\n", "#Topic", "#Broker Name", "#QID", "#Broker Offset",
           "#Consumer Offset", "#Diff", "#Inflight", "#LastTime");
  for (size_t i = 0; i < st->ngroups; i++) {
    const rmq_group_stats *g = &st->groups[i];
    if (strcmp(g->group, group) != 0 || (topic && strcmp(g->topic, topic) != 0)) continue;
    tps += g->get_tps[RMQ_TPS_1MIN];
    rmq_queue_stats *qs = malloc((g->nqueues ? g->nqueues : 1) * sizeof *qs);
    if (!qs) return fail_msg(a, "out of memory");
    memcpy(qs, g->queues, g->nqueues * sizeof *qs);
    qsort(qs, g->nqueues, sizeof *qs, cmp_queue_stats);
    for (size_t q = 0; q < g->nqueues; q++, rows++) {
      int64_t bo = qs[q].broker_offset < 0 ? 0 : qs[q].broker_offset;
      int64_t co = qs[q].consumer_offset < 0 ? 0 : qs[q].consumer_offset;
      int64_t last = co >= 1 ? store_time_at(a, g->topic, qs[q].queue_id, co - 1) : 0;
      char when[80] = "N/A";
      if (last > 0) ymd_hms(when, sizeof when, last);
      diff_total = add_sat(diff_total, bo - co);
      if (ip)
        printf("%-64.64s  %-32.32s  %-4d  %-20" PRId64 "  %-20" PRId64 "  %-20s %-20" PRId64 " %-20d %s\n", g->topic,
               a->opts.broker_name, qs[q].queue_id, bo, co, "N/A", bo - co, 0, when);
      else
        printf("%-64.64s  %-32.32s  %-4d  %-20" PRId64 "  %-20" PRId64 "  %-20" PRId64 " %-20d %s\n", g->topic,
               a->opts.broker_name, qs[q].queue_id, bo, co, bo - co, 0, when);
    }
    free(qs);
  }
  if (!rows)
    return fail_msg(a, "consumerProgress: consumer group %s has no consume offsets%s%s (no such group, or it committed none)",
                    group, topic ? " in topic " : "", topic ? topic : "");
  printf("\nConsume TPS: %.2f\nConsume Diff Total: %" PRId64 "\nConsume Inflight Total: 0\n", tps, diff_total);
  return EXIT_OK;
}

typedef struct group_row {
  char name[300];
  double tps;
  int64_t diff;
} group_row;

static int cmp_group_row(const void *x, const void *y) { return strcmp(((const group_row *)x)->name, ((const group_row *)y)->name); }

static group_row *group_add(group_row *rows, size_t *n, const char *name)
{
  for (size_t i = 0; i < *n; i++)
    if (strcmp(rows[i].name, name) == 0) return &rows[i];
  group_row *r = &rows[(*n)++];
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  return r;
}

/* consumerProgress without -g: every group with offsets or a retry topic,
** none online (their consumers live in the processes that use the store). */
static int progress_all(admin *a, const rmq_broker_stats *st)
{
  group_row *rows = calloc(st->ngroups + st->ntopics + 1, sizeof *rows);
  size_t n = 0;
  if (!rows) return fail_msg(a, "out of memory");
  for (size_t i = 0; i < st->ntopics; i++)
    if (strncmp(st->topics[i].topic, "%RETRY%", 7) == 0) group_add(rows, &n, st->topics[i].topic + 7);
  for (size_t i = 0; i < st->ngroups; i++) {
    const rmq_group_stats *g = &st->groups[i];
    group_row *r = group_add(rows, &n, g->group);
    r->tps += g->get_tps[RMQ_TPS_1MIN];
    for (size_t q = 0; q < g->nqueues; q++)
      r->diff = add_sat(r->diff, (g->queues[q].broker_offset < 0 ? 0 : g->queues[q].broker_offset) -
                                     (g->queues[q].consumer_offset < 0 ? 0 : g->queues[q].consumer_offset));
  }
  qsort(rows, n, sizeof *rows, cmp_group_row);
  printf("%-64s  %-6s  %-24s %-5s  %-14s  %-7s  %s\n", "#Group", "#Count", "#Version", "#Type", "#Model", "#TPS",
         "#Diff Total");
  for (size_t i = 0; i < n; i++)
    printf("%-64.64s  %-6d  %-24s %-5s  %-14s  %-7d  %" PRId64 "\n", rows[i].name, 0, "OFFLINE", "", "",
           (int)rows[i].tps, rows[i].diff);
  free(rows);
  return EXIT_OK;
}

static int cmd_consumer_progress(admin *a)
{
  rmq_broker_stats st;
  int rc = open_store(a, 1);
  if (rc) return rc;
  if ((rc = rmq_broker_stats_get(a->b, &st))) return fail(a, rc, "consumerProgress: the statistics");
  rc = arg(a, "groupName") ? progress_of_group(a, &st, arg(a, "groupName")) : progress_all(a, &st);
  rmq_broker_stats_free(&st);
  return rc;
}

static int cmd_reset_offset_by_time(admin *a)
{
  const char *group = arg(a, "group"), *topic = arg(a, "topic"), *ts = arg(a, "timestamp");
  int64_t when = num(a, "timestamp");
  int rc = open_store(a, 0);
  if (rc) return rc;
  if ((rc = rmq_broker_reset_offset_by_time(a->b, group, topic, when)))
    return fail(a, rc, "resetOffsetByTime %s %s", group, topic);
  size_t n = 0;
  if ((rc = rmq_broker_consumer_progress(a->b, group, topic, NULL, 0, &n))) return fail(a, rc, "resetOffsetByTime: the new offsets");
  rmq_queue_progress *qp = calloc(n ? n : 1, sizeof *qp);
  if (!qp) return fail_msg(a, "out of memory");
  size_t cap = n;
  if ((rc = rmq_broker_consumer_progress(a->b, group, topic, qp, cap, &n))) {
    free(qp);
    return fail(a, rc, "resetOffsetByTime: the new offsets");
  }
  printf("start reset consumer offset by specified, group[%s], topic[%s], force[%s], timestamp(string)[%s], "
         "timestamp(long)[%" PRId64 "]\n",
         group, topic, arg(a, "force") && !num(a, "force") ? "false" : "true", ts, when);
  printf("%-40s  %-40s  %-40s\n", "#brokerName", "#queueId", "#offset");
  for (size_t i = 0; i < n && i < cap; i++)
    printf("%-40.32s  %-40d  %-40" PRId64 "\n", qp[i].mq.broker_name, qp[i].mq.queue_id, qp[i].consumer_offset);
  free(qp);
  return EXIT_OK;
}

static int cmd_delete_sub_group(admin *a)
{
  const char *group = arg(a, "groupName");
  int rc = open_store(a, 0);
  if (rc) return rc;
  if ((rc = rmq_group_delete(a->b, group))) return fail(a, rc, "deleteSubGroup %s", group);
  printf("delete subscription group [%s] from store [%s] success.\n", group, a->store);
  return EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* The broker                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct kv {
  const char *key;
  char val[160];
} kv;

static int cmp_kv(const void *x, const void *y) { return strcmp(((const kv *)x)->key, ((const kv *)y)->key); }

#define KV(k, ...) (snprintf(t[n].val, sizeof t[n].val, __VA_ARGS__), t[n++].key = (k))

/* brokerStatus's table: RocketMQ's runtime keys where rmq has the figure,
** rmq's own (camelCase likewise) for the rest; sorted as a TreeMap. */
static size_t runtime_table(const rmq_broker_stats *s, kv *t)
{
  size_t n = 0;
  char x[80], y[80];
  int64_t up = (s->now - s->boot_timestamp) / 1000;
  KV("bootTimestamp", "%" PRId64, s->boot_timestamp);
  KV("brokerVersionDesc", "rmq %s", rmq_libversion());
  KV("commitLogDirCapacity", "Total : %s, Free : %s.", human_bytes(x, sizeof x, s->disk_total_bytes),
     human_bytes(y, sizeof y, s->disk_free_bytes));
  KV("commitLogDiskRatio", "%s", jdouble(x, sizeof x, (double)(int64_t)(s->commit_log_disk_ratio * 100 + 0.999999) / 100));
  KV("commitLogFileCount", "%d", s->commit_log_files);
  KV("commitLogFlushedOffset", "%" PRId64, s->flushed_offset);
  KV("commitLogMaxOffset", "%" PRId64, s->commit_log_max_offset);
  KV("commitLogMinOffset", "%" PRId64, s->commit_log_min_offset);
  KV("diskFull", "%s", s->disk_full ? "true" : "false");
  KV("dispatchBehindBytes", "%" PRId64, s->dispatch_behind_bytes);
  KV("earliestMessageTimeStamp", "%" PRId64, s->earliest_message_time_stamp);
  KV("getTransferredTps", "%s", tps3(x, sizeof x, s->get_tps));
  KV("indexFileCount", "%d", s->index_files);
  KV("msgGetTotalSinceOpen", "%" PRId64, s->get_nums);
  KV("nextDeleteTime", "%s", s->next_delete_time < 0 ? "never" : ymd_hms(x, sizeof x, s->next_delete_time));
  KV("oldestFileLastModified", "%s", s->oldest_file_last_modified > 0 ? ymd_hms(y, sizeof y, s->oldest_file_last_modified) : "");
  KV("pendingDelayMessages", "%" PRId64, s->pending_delay);
  KV("pendingHalfMessages", "%" PRId64, s->pending_half);
  KV("pendingTimerMessages", "%" PRId64, s->pending_timer);
  KV("putMessageAverageSize", "%s", jdouble(x, sizeof x, s->put_nums ? (double)s->put_size / (double)s->put_nums : 0));
  KV("putMessageSizeTotal", "%" PRId64, s->put_size);
  KV("putMessageTimesTotal", "%" PRId64, s->put_nums);
  KV("putTps", "%s", tps3(x, sizeof x, s->put_tps));
  KV("remainHowManyDataToFlush", "%s", human_bytes(x, sizeof x, s->flush_behind_bytes));
  KV("runtime", "[ %" PRId64 " days, %" PRId64 " hours, %" PRId64 " minutes, %" PRId64 " seconds ]", up / 86400,
     up / 3600 % 24, up / 60 % 60, up % 60);
  KV("commitLogFileBytes", "%" PRId64, s->commit_log_bytes);
  qsort(t, n, sizeof *t, cmp_kv);
  return n;
}

static int cmd_broker_status(admin *a)
{
  rmq_broker_stats s;
  kv t[40];
  char x[80];
  int rc = open_store(a, 1);
  if (rc) return rc;
  if ((rc = rmq_broker_stats_get(a->b, &s))) return fail(a, rc, "brokerStatus: the statistics");
  size_t n = runtime_table(&s, t);
  for (size_t i = 0; i < n; i++) printf("%-32s: %s\n", t[i].key, t[i].val);
  printf("\n%-48s  %-7s  %-12s  %-14s  %-24s  %s\n", "#Topic", "#Queues", "#Put Nums", "#Put Size", "#Put TPS",
         "#Max Offset Sum");
  for (size_t i = 0; i < s.ntopics; i++) {
    const rmq_topic_stats *ts = &s.topics[i];
    printf("%-48s  %-7d  %-12" PRId64 "  %-14" PRId64 "  %-24s  %" PRId64 "\n", ts->topic, ts->queue_nums, ts->put_nums,
           ts->put_size, tps3(x, sizeof x, ts->put_tps), ts->max_offset_sum);
  }
  printf("\n%-32s  %-48s  %-12s  %-24s  %-12s  %s\n", "#Group", "#Topic", "#Get Nums", "#Get TPS", "#Diff Total",
         "#Consumer Delay(ms)");
  for (size_t i = 0; i < s.ngroups; i++) {
    const rmq_group_stats *g = &s.groups[i];
    printf("%-32s  %-48s  %-12" PRId64 "  %-24s  %-12" PRId64 "  %" PRId64 "\n", g->group, g->topic, g->get_nums,
           tps3(x, sizeof x, g->get_tps), g->diff_total, g->consumer_delay_ms);
  }
  rmq_broker_stats_free(&s);
  return EXIT_OK;
}

static int cmd_clean_expired_cq(admin *a)
{
  /* rmq deletes ConsumeQueue files in the same round as the CommitLog files
  ** they point into, and a deleted topic's at once, so none is left over:
  ** opening read-write recovers a store left by a crash, repairing its
  ** ConsumeQueues, and closing flushes them. */
  int rc = open_store(a, 0);
  if (rc) return rc;
  if ((rc = rmq_broker_flush(a->b))) return fail(a, rc, "cleanExpiredCQ: flushing");
  printf("success\n");
  return EXIT_OK;
}

static int cmd_delete_expired_commit_log(admin *a)
{
  int deleted = 0;
  int rc = open_store(a, 0);
  if (rc) return rc;
  if ((rc = rmq_broker_delete_expired_files(a->b, &deleted))) return fail(a, rc, "deleteExpiredCommitLog");
  printf("success (%d expired CommitLog files deleted)\n", deleted);
  return EXIT_OK;
}

static void check_problem(void *ctx, const char *file, int64_t offset, const char *problem)
{
  (void)ctx;
  printf("%s@%" PRId64 ": %s\n", file, offset, problem);
}

static int cmd_check_store(admin *a)
{
  rmq_check_result r;
  struct timespec t0, t1;
  int rc = open_store(a, 1);
  if (rc) return rc;
  memset(&r, 0, sizeof r);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rc = rmq_broker_check(a->b, check_problem, a, &r);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (rc && rc != RMQ_ECORRUPT) return fail(a, rc, "checkStore");
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  double mb = (double)r.bytes / 1e6;
  printf("checked %" PRId64 " CommitLog records (%.2f MB), %" PRId64 " ConsumeQueue units, %" PRId64
         " index entries in %.3f s (%.1f MB/s): %" PRId64 " problem%s\n",
         r.records, mb, r.units, r.index_entries, secs, secs > 0 ? mb / secs : 0.0, r.problems,
         r.problems == 1 ? "" : "s");
  if (rc == RMQ_ECORRUPT || r.problems)
    return fail_msg(a, "checkStore: %" PRId64 " problem%s found", r.problems, r.problems == 1 ? "" : "s");
  return EXIT_OK;
}

/* ------------------------------------------------------------------------- */
/* The command table                                                          */
/* ------------------------------------------------------------------------- */

#define O_TOPIC(req, d) {'t', "topic", ARG_STR, req, d}
#define O_BEGIN(l) {l, "beginTimestamp", ARG_TIME, 0, "Begin timestamp[currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]"}
#define O_END {'e', "endTimestamp", ARG_TIME, 0, "End timestamp[currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]"}

static const command commands[] = {
  {"updateTopic", "Update or create topic.", 1, cmd_update_topic,
   "Creates the topic, or changes its queue count (read and write counts are one in rmq).",
   {{'r', "readQueueNums", ARG_NUM, 0, "set read queue nums (default 8)"},
    O_TOPIC(1, "topic name"),
    {'w', "writeQueueNums", ARG_NUM, 0, "set write queue nums (default 8)"}}},
  {"deleteTopic", "Delete topic from broker and NameServer.", 1, cmd_delete_topic,
   "Deletes the topic, its ConsumeQueues and every group's offsets of it.",
   {O_TOPIC(1, "topic name")}},
  {"topicList", "Fetch all topic list from name server.", 0, cmd_topic_list,
   "Lists every topic of the store, system topics included, in name order.",
   {{0}}},
  {"topicStatus", "Examine topic Status info.", 0, cmd_topic_status,
   "Each queue's min and max offset and the store time of its last message.",
   {O_TOPIC(1, "topic name")}},
  {"topicRoute", "Examine topic route info.", 0, cmd_topic_route,
   "The topic's route as a NameServer would give it: this store's one broker.",
   {{'l', "list", ARG_NONE, 0, "Use list format to print data"}, O_TOPIC(1, "topic name")}},
  {"sendMessage", "Send a message.", 1, cmd_send_message,
   "Sends one message (the topic must exist) and prints its msgId.",
   {{'b', "broker", ARG_STR, 0, "Send message to target broker (must be this store's)"},
    {'c', "tags", ARG_STR, 0, "Message tags"},
    {'i', "qid", ARG_NUM, 0, "Send message to target queue"},
    {'k', "key", ARG_STR, 0, "Message keys"},
    {'p', "body", ARG_STR, 1, "UTF-8 string format of the message body"},
    O_TOPIC(1, "Topic name")}},
  {"consumeMessage", "Consume message.", 2, cmd_consume_message,
   "Prints up to -c messages of the topic, from where the group stands in each queue (its committed\n"
   "offset, else the queue's first message), from -s's time, or from -o in queue -i. Commits\n"
   "nothing unless --commit is given (then the store is opened read-write).",
   {{'b', "brokerName", ARG_STR, 0, "Broker name (must be this store's)"},
    {'c', "MessageNumber", ARG_NUM, 0, "Number of message to be consumed (default 128; counts the queue offsets read, as mqadmin)"},
    {'e', "endTimestamp", ARG_TIME, 0, "End timestamp[currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]"},
    {'g', "consumerGroup", ARG_STR, 0, "Consumer group name (default " TOOLS_CONSUMER_GROUP ")"},
    {'i', "queueId", ARG_NUM, 0, "Queue Id"},
    {'o', "offset", ARG_NUM, 0, "Queue offset"},
    {'s', "beginTimestamp", ARG_STR, 0,
     "Begin timestamp[currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS], or else an SQL92 selector (e.g. \"age > 18\")"},
    O_TOPIC(1, "Topic name"),
    {0, "commit", ARG_NONE, 0, "commit the consumed offsets as the group's (rmq's; mqadmin commits nothing)"},
    {0, "sql", ARG_STR, 0, "SQL92 selector over the message properties (rmq's)"}}},
  {"queryMsgById", "Query Message by Id.", 0, cmd_query_msg_by_id,
   "Finds messages by offsetMsgId or msgId (UNIQ_KEY); -i takes several, comma-separated.",
   {{'i', "msgId", ARG_STR, 1, "Message Id"}, O_TOPIC(0, "topic name")}},
  {"queryMsgByKey", "Query Message by Key.", 0, cmd_query_msg_by_key,
   "Finds messages by a word of their KEYS (or their UNIQ_KEY) through the index, oldest first.",
   {O_BEGIN('b'),
    O_END,
    {'k', "msgKey", ARG_STR, 1, "Message Key"},
    {'m', "maxNum", ARG_NUM, 0, "The maximum number of messages returned by the query, default:64"},
    O_TOPIC(1, "Topic name")}},
  {"queryMsgByOffset", "Query Message by offset.", 0, cmd_query_msg_by_offset,
   "Shows the message at one queue offset.",
   {{'b', "brokerName", ARG_STR, 0, "Broker Name (must be this store's)"},
    {'i', "queueId", ARG_NUM, 0, "Queue Id (required, or -q)"},
    {'q', "queue", ARG_NUM, 0, "Queue Id, as -i"},
    {'o', "offset", ARG_NUM, 1, "Queue Offset"},
    O_TOPIC(1, "topic name")}},
  {"printMsg", "Print Message Detail.", 0, cmd_print_msg,
   "Prints every message of the topic, queue by queue, between -b's and -e's times.",
   {O_BEGIN('b'),
    {'c', "charsetName", ARG_STR, 0, "CharsetName(eg: UTF-8,GBK); rmq prints bodies as stored: UTF-8 only"},
    {'d', "printBody", ARG_BOOL, 0, "print body"},
    O_END,
    {'s', "subExpression", ARG_STR, 0, "Subscribe Expression(eg: TagA || TagB)"},
    O_TOPIC(1, "topic name")}},
  {"consumerProgress", "Query consumer's progress, speed.", 0, cmd_consumer_progress,
   "Without -g, every group; with -g, the group's offsets and lag in each queue.",
   {{'g', "groupName", ARG_STR, 0, "consumer group name"},
    {'s', "showClientIP", ARG_BOOL, 0, "Show Client IP per Queue"},
    {'t', "topicName", ARG_STR, 0, "topic name"}}},
  {"resetOffsetByTime", "Reset consumer offset by timestamp(without client restart).", 1, cmd_reset_offset_by_time,
   "Moves the group's offset in every queue of the topic to the first message stored at or after -s.",
   {{'f', "force", ARG_BOOL, 0, "set the force rollback by timestamp switch[true|false]. Deprecated."},
    {'g', "group", ARG_STR, 1, "set the consumer group"},
    {'s', "timestamp", ARG_TIME, 1, "set the timestamp[now|currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]"},
    O_TOPIC(1, "set the topic")}},
  {"deleteSubGroup", "Delete subscription group from broker.", 1, cmd_delete_sub_group,
   "Deletes the group's offsets and its %RETRY% and %DLQ% topics.",
   {{'g', "groupName", ARG_STR, 1, "subscription group name"}}},
  {"brokerStatus", "Fetch broker runtime status data.", 0, cmd_broker_status,
   "The store's runtime figures, then one line per topic and per (group, topic). Put TPS are\n"
   "counted from the store times of the messages in each window; counters since an open and get\n"
   "TPS live in the process using the store, so they read 0 here; offsets, sizes and lags are the store's.",
   {{0}}},
  {"cleanExpiredCQ", "Clean expired ConsumeQueue on broker.", 1, cmd_clean_expired_cq,
   "rmq deletes ConsumeQueue files with the CommitLog files they point into, so none is left over;\n"
   "this opens the store read-write (recovering it after a crash) and flushes it.",
   {{0}}},
  {"deleteExpiredCommitLog", "Delete expired CommitLog files.", 1, cmd_delete_expired_commit_log,
   "Deletes the CommitLog files older than fileReservedTime (72 h) now, then their ConsumeQueue files.",
   {{0}}},
  {"checkStore", "Check every record, ConsumeQueue unit and index entry of the store.", 0, cmd_check_store,
   "Verifies every CommitLog record (magic, sizes, position, CRC), every ConsumeQueue unit against its\n"
   "record and every index entry; prints each problem as FILE@OFFSET: problem; exit status 1 on any.",
   {{0}}},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name)
{
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcasecmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static void usage_line(FILE *f, const command *c)
{
  fprintf(f, "usage: rmqadmin -s <store> %s [-h]", c->name);
  for (int i = 0; i < MAX_OPTS && c->opts[i].name; i++) {
    const opt_def *d = &c->opts[i];
    char flag[64];
    if (d->letter) snprintf(flag, sizeof flag, "-%c", d->letter);
    else snprintf(flag, sizeof flag, "--%s", d->name);
    fprintf(f, d->required ? " %s%s" : " [%s%s]", flag, d->type == ARG_NONE ? "" : " <arg>");
  }
  fputc('\n', f);
}

/* As commons-cli's HelpFormatter lays it out. */
static void command_help(const command *c)
{
  char col[MAX_OPTS + 1][96];
  int width = (int)strlen("-h,--help");
  snprintf(col[MAX_OPTS], sizeof col[0], "-h,--help");
  usage_line(stdout, c);
  printf("%s\n%s\n", c->about,
         c->writes == 1   ? "Opens the store read-write: refused while another process has it open."
         : c->writes == 2 ? "Opens the store read-only (works while another process has it open); read-write with --commit."
                          : "Opens the store read-only: works while another process has it open.");
  for (int i = 0; i < MAX_OPTS && c->opts[i].name; i++) {
    const opt_def *d = &c->opts[i];
    if (d->letter) snprintf(col[i], sizeof col[i], "-%c,--%s%s", d->letter, d->name, d->type == ARG_NONE ? "" : " <arg>");
    else snprintf(col[i], sizeof col[i], "   --%s%s", d->name, d->type == ARG_NONE ? "" : " <arg>");
    if ((int)strlen(col[i]) > width) width = (int)strlen(col[i]);
  }
  printf(" %-*s   %s\n", width, col[MAX_OPTS], "Print help");
  for (int i = 0; i < MAX_OPTS && c->opts[i].name; i++)
    printf(" %-*s   %s%s\n", width, col[i], c->opts[i].desc, c->opts[i].required ? " (required)" : "");
}

static void general_help(FILE *f)
{
  fprintf(f, "usage: rmqadmin -s <store> <command> [options]    (rmq %s)\n", rmq_libversion());
  fprintf(f, "The most commonly used rmqadmin commands are:\n");
  for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "   %-35s %s\n", commands[i].name, commands[i].desc);
  fprintf(f, "\nSee 'rmqadmin help <command>' for more information on a specific command.\n");
}

/* ------------------------------------------------------------------------- */
/* main                                                                       */
/* ------------------------------------------------------------------------- */

static int run(admin *a, int argc, char **argv)
{
  int rc = parse_opts(a, argc, argv);
  if (rc < 0) {
    command_help(a->cmd);
    return EXIT_OK;
  }
  if (rc) return rc;
  if (!a->store) {
    fprintf(stderr, "rmqadmin: %s: no store given (-s <store> before the command)\n", a->cmd->name);
    usage_line(stderr, a->cmd);
    return EXIT_USAGE;
  }
  if ((rc = check_store(a))) return rc;
  rc = a->cmd->run(a);
  if (a->b) {
    int crc = rmq_broker_close(a->b);
    if (crc && !rc) rc = fail(a, crc, "closing the store");
  }
  if (fflush(stdout) != 0 && !rc) rc = fail_msg(a, "writing the output: %s", strerror(errno));
  return rc;
}

int main(int argc, char **argv)
{
  admin a;
  memset(&a, 0, sizeof a);
  int k = 1;
  while (k < argc && argv[k][0] == '-') {
    const char *t = argv[k];
    if (strcmp(t, "-h") == 0 || strcmp(t, "--help") == 0) {
      general_help(stdout);
      return EXIT_OK;
    } else if (strcmp(t, "-s") == 0 || strcmp(t, "--store") == 0) {
      if (k + 1 >= argc) {
        fprintf(stderr, "rmqadmin: option %s needs a value\n", t);
        return EXIT_USAGE;
      }
      a.store = argv[k + 1];
      k += 2;
    } else if (strncmp(t, "--store=", 8) == 0) {
      a.store = t + 8, k++;
    } else if (strncmp(t, "-s", 2) == 0) {
      a.store = t + 2, k++;
    } else {
      fprintf(stderr, "rmqadmin: unknown option %s\n", t);
      general_help(stderr);
      return EXIT_USAGE;
    }
  }
  if (k >= argc) {
    general_help(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[k], "help") == 0) {
    if (k + 1 >= argc) {
      general_help(stdout);
      return EXIT_OK;
    }
    const command *c = find_command(argv[k + 1]);
    if (!c) {
      fprintf(stderr, "rmqadmin: the sub command %s does not exist\n", argv[k + 1]);
      return EXIT_USAGE;
    }
    command_help(c);
    return EXIT_OK;
  }
  if (!(a.cmd = find_command(argv[k]))) {
    fprintf(stderr, "rmqadmin: the sub command %s does not exist\n", argv[k]);
    fprintf(stderr, "usage: rmqadmin -s <store> <command> [options]; 'rmqadmin help' lists the commands\n");
    return EXIT_USAGE;
  }
  return run(&a, argc - k - 1, argv + k + 1);
}
