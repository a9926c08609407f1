/*
** test_admin.c -- rmqadmin, run as a user runs it: a store is built with the
** library (a topic of 4 queues with tags and keys, sent at two known times
** by a fake clock; a topic with SQL92-filterable properties; a consumer
** group with committed offsets), closed, and every command is run on it by
** fork/exec with its stdout, stderr and exit status checked against what
** the library put there: topic names, offsets, bodies, keys, msgIds, the
** store times as mqadmin prints them. Also: -h of every command, usage
** errors (unknown command, bad flag, missing flag, bad number or time), a
** missing store, a store held by another process (reads work, writes say
** who holds it), and checkStore on a store with a flipped body byte and one
** with a damaged ConsumeQueue unit; and every command on the store the
** quick-start demo writes. The Makefile compiles this file with
** RMQ_ADMIN_BIN, the binary to run, and RMQ_DEMO_BIN, rmq-demo.
*/
#include "test_util.h"

#include <ctype.h>
#include <inttypes.h>
#include <sys/time.h>

#if !defined(RMQ_ADMIN_BIN) || !defined(RMQ_DEMO_BIN)
#error "build with -DRMQ_ADMIN_BIN and -DRMQ_DEMO_BIN (the Makefile does)"
#endif

static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_clock_advance; (void)tu_small_opts; (void)tu_make_body; (void)tu_body_check;
  (void)tu_java_hash; (void)tu_wait_atleast; (void)tu_count_files; (void)tu_rmqstore_check; (void)tu_kill_child;
  (void)tu_prop_copy; (void)tu_store_path; (void)tu_store_remove;
}

/* ------------------------------------------------------------------------- */
/* Running rmqadmin                                                           */
/* ------------------------------------------------------------------------- */

#define OUT_CAP (1 << 20)
typedef struct adm_run {
  int code; /* exit status, or 128 + signal */
  char out[OUT_CAP];
  char err[65536];
} adm_run;

static adm_run R;
static char g_dir[512];   /* this test's temp directory */
static char g_store[600]; /* the store in it */
static pid_t g_child;     /* a process holding the store, killed by teardown */

static void slurp(const char *path, char *buf, size_t cap)
{
  FILE *f = fopen(path, "r");
  size_t n = 0;
  if (f) {
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
  }
  buf[n] = 0;
}

/* Runs rmqadmin with argv (argv[0] unused, NULL-terminated) into R. */
static int adm_argv(const char **argv)
{
  char outp[700], errp[700];
  snprintf(outp, sizeof outp, "%s/stdout", g_dir);
  snprintf(errp, sizeof errp, "%s/stderr", g_dir);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600), fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fo < 0 || fe < 0) _exit(126);
    dup2(fo, 1);
    dup2(fe, 2);
    argv[0] = RMQ_ADMIN_BIN;
    execv(RMQ_ADMIN_BIN, (char *const *)argv);
    _exit(127);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  R.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  slurp(outp, R.out, sizeof R.out);
  slurp(errp, R.err, sizeof R.err);
  return R.code;
}

/* rmqadmin [-s store] args... (NULL-terminated). */
static int adm(const char *store, ...)
{
  const char *argv[64];
  int n = 1;
  if (store) {
    argv[n++] = "-s";
    argv[n++] = store;
  }
  va_list ap;
  va_start(ap, store);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL && n < 63;) argv[n++] = s;
  va_end(ap);
  argv[n] = NULL;
  return adm_argv(argv);
}

#define SHOW "\n--- stdout:\n%.6000s\n--- stderr:\n%.3000s"
#define expect_code(c)                                                                   \
  do {                                                                                   \
    if (R.code != (c)) fail_msg("exit status %d, wanted %d" SHOW, R.code, (c), R.out, R.err); \
  } while (0)
#define expect_out(s)                                                                    \
  do {                                                                                   \
    if (!strstr(R.out, (s))) fail_msg("stdout lacks \"%s\"" SHOW, (s), R.out, R.err);   \
  } while (0)
#define expect_no_out(s)                                                                 \
  do {                                                                                   \
    if (strstr(R.out, (s))) fail_msg("stdout has \"%s\"" SHOW, (s), R.out, R.err);      \
  } while (0)
#define expect_err(s)                                                                    \
  do {                                                                                   \
    if (!strstr(R.err, (s))) fail_msg("stderr lacks \"%s\"" SHOW, (s), R.out, R.err);   \
  } while (0)

static int count_of(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* The line of R.out holding `needle`, copied into line (or fails). */
static void out_line(const char *needle, char *line, size_t cap)
{
  const char *p = strstr(R.out, needle);
  if (!p) fail_msg("stdout lacks \"%s\"" SHOW, needle, R.out, R.err);
  while (p > R.out && p[-1] != '\n') p--;
  size_t n = strcspn(p, "\n");
  if (n >= cap) n = cap - 1;
  memcpy(line, p, n);
  line[n] = 0;
}

/* A line as mqadmin's queryMsgById prints it: "%-20s %s". */
static const char *detail(const char *label, const char *value)
{
  static char buf[2][1024];
  static int k;
  k ^= 1;
  snprintf(buf[k], sizeof buf[k], "%-20s %s\n", label, value);
  return buf[k];
}

/* The start of a topicStatus / consumerProgress row of queue q. */
static const char *row_of(int q)
{
  static char buf[128];
  snprintf(buf, sizeof buf, "%-32s  %-4d  ", "rmq-broker", q);
  return buf;
}

/* Splits a line into whitespace-separated fields. */
static int fields(char *line, char **f, int max)
{
  int n = 0;
  for (char *save = NULL, *t = strtok_r(line, " \t", &save); t && n < max; t = strtok_r(NULL, " \t", &save)) f[n++] = t;
  return n;
}

/* ------------------------------------------------------------------------- */
/* The store                                                                  */
/* ------------------------------------------------------------------------- */

#define TOPIC "TopicTest"
#define FILTER_TOPIC "FilterTopic"
#define GROUP "GroupA"
#define NMSG 20 /* to TOPIC: message i goes to queue i % 4, at queue offset i / 4 */
#define EARLY 12 /* messages 0..11 are stored at T0 + i s, the rest at T1 + (i - 12) s */

static struct {
  int64_t t0, t1;
  int64_t store_ts[NMSG];
  char msg_id[NMSG][RMQ_MSG_ID_SIZE];
  char offset_msg_id[NMSG][RMQ_MSG_ID_SIZE];
  int64_t phys[NMSG];
  int32_t size[NMSG];
} S;

static int64_t wall_ms(void)
{
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void send_one(rmq_producer *p, tu_clock *clk, int i)
{
  char body[64], tags[8], keys[64];
  snprintf(body, sizeof body, "Hello RocketMQ %d", i);
  snprintf(tags, sizeof tags, "Tag%c", i % 2 ? 'B' : 'A');
  snprintf(keys, sizeof keys, "key%d common", i);
  S.store_ts[i] = i < EARLY ? S.t0 + i * 1000 : S.t1 + (i - EARLY) * 1000;
  atomic_store(&clk->now_ms, S.store_ts[i]);
  rmq_msg *m;
  rmq_send_result r;
  ok(rmq_msg_create(&m, TOPIC, tags, body, strlen(body)));
  ok(rmq_msg_set_keys(m, keys));
  ok(rmq_producer_send_to_queue(p, m, i % 4, &r));
  assert_int_equal(r.queue_offset, i / 4);
  snprintf(S.msg_id[i], sizeof S.msg_id[i], "%s", r.msg_id);
  snprintf(S.offset_msg_id[i], sizeof S.offset_msg_id[i], "%s", r.offset_msg_id);
  S.phys[i] = r.commit_log_offset;
  S.size[i] = r.store_size;
  rmq_msg_free(m);
}

static void send_filtered(rmq_producer *p, int age)
{
  char body[32], v[16];
  snprintf(body, sizeof body, "age %d", age);
  snprintf(v, sizeof v, "%d", age);
  rmq_msg *m;
  ok(rmq_msg_create(&m, FILTER_TOPIC, "filter", body, strlen(body)));
  ok(rmq_msg_put_user_property(m, "age", v));
  ok(rmq_producer_send(p, m, NULL));
  rmq_msg_free(m);
}

static void opts_for(rmq_broker_options *o, tu_clock *clk, int64_t cl_size)
{
  rmq_broker_options_init(o);
  o->service_thread = 0;
  o->log_level = RMQ_LOG_ERROR;
  o->mapped_file_size_commit_log = cl_size;
  o->max_hash_slot_num = 1000; /* small index files: the default's are 420 MB (sparse) */
  o->max_index_num = 4000;
  if (clk) {
    o->clock = tu_clock_read;
    o->clock_ctx = clk;
  }
}

/* TOPIC (4 queues, NMSG messages), FILTER_TOPIC (ages 10..40), and GROUP's
** offsets: queues 0 and 1 consumed, queue 2 at 2, queue 3 none. */
static void build_store(void)
{
  tu_clock clk;
  rmq_broker_options o;
  rmq_broker *b;
  rmq_producer *p;
  rmq_pull_consumer *c;
  S.t0 = (wall_ms() / 1000 - 2 * 86400) * 1000 + 123;
  S.t1 = S.t0 + 3600 * 1000;
  atomic_store(&clk.now_ms, S.t0);
  opts_for(&o, &clk, 1 << 20);
  ok(rmq_broker_open(g_store, &o, &b));
  ok(rmq_topic_create(b, TOPIC, 4));
  ok(rmq_topic_create(b, FILTER_TOPIC, 1));
  ok(rmq_producer_create(b, "admin-test", NULL, &p));
  for (int i = 0; i < NMSG; i++) send_one(p, &clk, i);
  for (int age = 10; age <= 40; age += 10) send_filtered(p, age);
  rmq_producer_destroy(p);
  ok(rmq_pull_consumer_create(b, GROUP, &c));
  rmq_message_queue mq = tu_mq(TOPIC, 0);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 5));
  mq = tu_mq(TOPIC, 1);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 5));
  mq = tu_mq(TOPIC, 2);
  ok(rmq_pull_consumer_update_consume_offset(c, &mq, 2));
  rmq_pull_consumer_destroy(c);
  ok(rmq_broker_close(b));
}

static int setup(void **state)
{
  (void)state;
  tu_tmpdir(g_dir, sizeof g_dir, "admin");
  snprintf(g_store, sizeof g_store, "%s/store", g_dir);
  build_store();
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  if (g_child > 0) {
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
    g_child = 0;
  }
  tu_rm_rf(g_dir);
  return 0;
}

/* mqadmin's time formats, local time. */
static void human2(char *buf, size_t cap, int64_t ms)
{
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d,%03d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void ymd_hms(char *buf, size_t cap, int64_t ms)
{
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
}

/* ------------------------------------------------------------------------- */
/* Help and usage errors                                                      */
/* ------------------------------------------------------------------------- */

/* Every command with its long option names (mqadmin's) and a minimal valid
** set of flags for a run. */
static const struct cmd_row {
  const char *name;
  const char *flags[12];
  const char *args[10];
} CMDS[] = {
  {"updateTopic", {"--topic", "--readQueueNums", "--writeQueueNums"}, {"-t", "T2", "-w", "2"}},
  {"deleteTopic", {"--topic"}, {"-t", "T2"}},
  {"topicList", {NULL}, {NULL}},
  {"topicStatus", {"--topic"}, {"-t", TOPIC}},
  {"topicRoute", {"--topic", "--list"}, {"-t", TOPIC}},
  {"sendMessage", {"--topic", "--body", "--key", "--tags", "--broker", "--qid"}, {"-t", TOPIC, "-p", "x"}},
  {"consumeMessage",
   {"--topic", "--brokerName", "--queueId", "--offset", "--consumerGroup", "--beginTimestamp", "--endTimestamp",
    "--MessageNumber", "--commit", "--sql"},
   {"-t", TOPIC}},
  {"queryMsgById", {"--msgId", "--topic"}, {"-i", "0A0B0C0D00002A9F0000000000000000"}},
  {"queryMsgByKey", {"--topic", "--msgKey", "--beginTimestamp", "--endTimestamp", "--maxNum"}, {"-t", TOPIC, "-k", "common"}},
  {"queryMsgByOffset", {"--topic", "--brokerName", "--queueId", "--offset"}, {"-t", TOPIC, "-i", "0", "-o", "0"}},
  {"printMsg", {"--topic", "--charsetName", "--subExpression", "--beginTimestamp", "--endTimestamp", "--printBody"}, {"-t", TOPIC}},
  {"consumerProgress", {"--groupName", "--topicName", "--showClientIP"}, {NULL}},
  {"resetOffsetByTime", {"--group", "--topic", "--timestamp", "--force"}, {"-g", GROUP, "-t", TOPIC, "-s", "now"}},
  {"deleteSubGroup", {"--groupName"}, {"-g", GROUP}},
  {"brokerStatus", {NULL}, {NULL}},
  {"cleanExpiredCQ", {NULL}, {NULL}},
  {"deleteExpiredCommitLog", {NULL}, {NULL}},
  {"checkStore", {NULL}, {NULL}},
};
#define NCMDS (sizeof CMDS / sizeof CMDS[0])

/* rmqadmin [-s store] cmd args-of-row [extra] */
static int adm_row(const char *store, const struct cmd_row *c, const char *extra)
{
  const char *argv[40];
  int n = 1;
  if (store) {
    argv[n++] = "-s";
    argv[n++] = store;
  }
  argv[n++] = c->name;
  for (int i = 0; c->args[i]; i++) argv[n++] = c->args[i];
  if (extra) argv[n++] = extra;
  argv[n] = NULL;
  return adm_argv(argv);
}

static void test_help(void **state)
{
  (void)state;
  char want[1024];
  adm(NULL, "-h", NULL);
  expect_code(0);
  for (size_t i = 0; i < NCMDS; i++) {
    snprintf(want, sizeof want, "   %s ", CMDS[i].name);
    expect_out(want);
  }
  adm(NULL, "help", NULL);
  expect_code(0);
  expect_out("   checkStore ");
  adm(NULL, NULL); /* no command: the list, as a usage error */
  expect_code(2);
  expect_err("   topicList ");
  for (size_t i = 0; i < NCMDS; i++) {
    adm_row(g_store, &CMDS[i], "-h");
    expect_code(0);
    snprintf(want, sizeof want, "usage: rmqadmin -s <store> %s ", CMDS[i].name);
    expect_out(want);
    expect_out("-h,--help");
    for (int k = 0; CMDS[i].flags[k]; k++) expect_out(CMDS[i].flags[k]);
    /* -h names the open it makes: reads are read-only, writes read-write. */
    expect_out(strstr("updateTopic deleteTopic sendMessage resetOffsetByTime deleteSubGroup cleanExpiredCQ "
                      "deleteExpiredCommitLog", CMDS[i].name) ? "read-write" : "read-only");
    adm(NULL, "help", CMDS[i].name, NULL);
    expect_code(0);
    expect_out(want);
  }
  /* Without a store too, and names are matched ignoring case as mqadmin does. */
  adm(NULL, "topicstatus", "--help", NULL);
  expect_code(0);
  expect_out("-t,--topic <arg>");
}

static void test_usage_errors(void **state)
{
  (void)state;
  adm(g_store, "noSuchCommand", NULL);
  expect_code(2);
  expect_err("rmqadmin: the sub command noSuchCommand does not exist");
  expect_err("usage: rmqadmin");
  adm(g_store, "topicStatus", "-t", TOPIC, "-z", "1", NULL);
  expect_code(2);
  expect_err("rmqadmin: topicStatus: unknown option -z");
  expect_err("usage: rmqadmin -s <store> topicStatus [-h] -t <arg>");
  adm(g_store, "topicStatus", "--nope", NULL);
  expect_code(2);
  expect_err("unknown option --nope");
  adm(g_store, "topicStatus", NULL);
  expect_code(2);
  expect_err("missing required option -t/--topic");
  adm(g_store, "topicStatus", "-t", NULL);
  expect_code(2);
  expect_err("option -t needs a value");
  adm(g_store, "topicStatus", "-t", TOPIC, "stray", NULL);
  expect_code(2);
  expect_err("unexpected argument 'stray'");
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "x1", "-o", "0", NULL);
  expect_code(2);
  expect_err("-i/--queueId: 'x1' is not a number");
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "1", "-o", "12abc", NULL);
  expect_code(2);
  expect_err("-o/--offset: '12abc' is not a number");
  adm(g_store, "updateTopic", "-t", "T2", "-w", "", NULL);
  expect_code(2);
  expect_err("is not a number");
  adm(g_store, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "yesterday", NULL);
  expect_code(2);
  expect_err("'yesterday' is not a timestamp");
  adm(g_store, "printMsg", "-t", TOPIC, "-d", "maybe", NULL);
  expect_code(2);
  expect_err("'maybe' is not true or false");
  adm(g_store, "topicRoute", "-t", TOPIC, "--list=yes", NULL);
  expect_code(2);
  expect_err("takes no value");
  adm(g_store, "updateTopic", "-t", "T2", "-r", "2", "-w", "3", NULL);
  expect_code(2);
  adm(g_store, "consumeMessage", "-t", TOPIC, "-o", "1", NULL);
  expect_code(2);
  expect_err("queueId");
  adm(g_store, "consumeMessage", "-t", TOPIC, "-c", "0", NULL);
  expect_code(2);
  adm(g_store, "consumeMessage", "-t", FILTER_TOPIC, "--sql", "age >>> 3", NULL);
  expect_code(2);
  expect_err("SQL92 selector 'age >>> 3'");
  adm(g_store, "printMsg", "-t", TOPIC, "-s", "a\x01" "b", NULL);
  expect_code(2);
  expect_err("-s/--subExpression");
  adm(NULL, "topicList", NULL); /* no -s */
  expect_code(2);
  expect_err("no store given");
  adm(g_store, "-x", NULL);
  expect_code(2);
  /* None of these touched the store: the topics are as built. */
  adm(g_store, "topicList", NULL);
  expect_code(0);
  expect_no_out("T2\n");
}

static void test_missing_store(void **state)
{
  (void)state;
  char missing[700], notstore[700], want[800];
  snprintf(missing, sizeof missing, "%s/no-such-store", g_dir);
  snprintf(notstore, sizeof notstore, "%s/empty-dir", g_dir);
  assert_int_equal(mkdir(notstore, 0700), 0);
  for (size_t i = 0; i < NCMDS; i++) {
    adm_row(missing, &CMDS[i], NULL);
    expect_code(1);
    snprintf(want, sizeof want, "rmqadmin: store %s: cannot open the store directory: No such file or directory", missing);
    expect_err(want);
    assert_int_equal(access(missing, F_OK), -1); /* not made */
    adm_row(notstore, &CMDS[i], NULL);
    expect_code(1);
    snprintf(want, sizeof want, "rmqadmin: store %s: not an rmq store", notstore);
    expect_err(want);
  }
  assert_int_equal(tu_count_files(notstore), 0);
  snprintf(want, sizeof want, "%s/commitlog", notstore);
  assert_int_equal(access(want, F_OK), -1);
}

/* ------------------------------------------------------------------------- */
/* Topics                                                                     */
/* ------------------------------------------------------------------------- */

static void test_topics(void **state)
{
  (void)state;
  char line[1024], want[1024], *f[16];
  adm(g_store, "topicList", NULL);
  expect_code(0);
  expect_out(TOPIC "\n");
  expect_out(FILTER_TOPIC "\n");
  assert_true(strstr(R.out, FILTER_TOPIC "\n") < strstr(R.out, TOPIC "\n")); /* name order */

  adm(g_store, "topicStatus", "-t", TOPIC, NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-32s  %-4s  %-20s  %-20s    %s\n", "#Broker Name", "#QID", "#Min Offset", "#Max Offset",
           "#Last Updated");
  expect_out(want);
  for (int q = 0; q < 4; q++) {
    out_line(row_of(q), line, sizeof line);
    char when[64];
    human2(when, sizeof when, S.store_ts[16 + q]); /* offset 4 of queue q is message 16 + q */
    assert_non_null(strstr(line, when));
    assert_int_equal(fields(line, f, 16), 6);
    assert_string_equal(f[2], "0");
    assert_string_equal(f[3], "5");
  }
  expect_out("\nTopic Put TPS: 0.0\n");
  adm(g_store, "topicStatus", "-t", "NoSuchTopic", NULL);
  expect_code(1);
  snprintf(want, sizeof want, "rmqadmin: store %s: topic NoSuchTopic does not exist", g_store);
  expect_err(want);

  adm(g_store, "topicRoute", "-t", TOPIC, NULL);
  expect_code(0);
  expect_out("{\n\t\"brokerDatas\":[\n\t\t{\n\t\t\t\"brokerAddrs\":{0:\"127.0.0.1:10911\"\n\t\t\t},\n");
  expect_out("\t\t\t\"brokerName\":\"rmq-broker\",\n");
  expect_out("\t\t\t\"perm\":6,\n\t\t\t\"readQueueNums\":4,\n\t\t\t\"topicSysFlag\":0,\n\t\t\t\"writeQueueNums\":4\n");
  adm(g_store, "topicRoute", "-t", TOPIC, "-l", NULL);
  expect_code(0);
  expect_out("#ClusterName");
  out_line("rmq-broker", line, sizeof line);
  assert_int_equal(fields(line, f, 16), 6);
  assert_string_equal(f[2], "{0=127.0.0.1:10911}");
  assert_string_equal(f[3], "4");
  assert_string_equal(f[5], "6");

  adm(g_store, "updateTopic", "-t", "NewTopic", "-w", "3", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "create topic to %s success.\n", g_store);
  expect_out(want);
  expect_out("TopicConfig [topicName=NewTopic, readQueueNums=3, writeQueueNums=3, perm=RW-, topicFilterType=SINGLE_TAG, "
             "topicSysFlag=0, order=false, attributes={}]\n");
  adm(g_store, "topicStatus", "-t", "NewTopic", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "rmq-broker "), 3);
  adm(g_store, "updateTopic", "-t", "NewTopic", "-r", "5", NULL); /* grows it */
  expect_code(0);
  expect_out("readQueueNums=5, writeQueueNums=5");
  adm(g_store, "updateTopic", "-t", "bad/name", NULL);
  expect_code(1);
  snprintf(want, sizeof want, "rmqadmin: store %s: updateTopic bad/name: ", g_store);
  expect_err(want);
  adm(g_store, "updateTopic", "-t", "NewTopic", "-w", "0", NULL);
  expect_code(1);

  adm(g_store, "deleteTopic", "-t", "NewTopic", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "delete topic [NewTopic] from store [%s] success.\n", g_store);
  expect_out(want);
  adm(g_store, "topicList", NULL);
  expect_no_out("NewTopic");
  expect_out(TOPIC "\n");
  adm(g_store, "deleteTopic", "-t", "NewTopic", NULL);
  expect_code(1);
  expect_err("deleteTopic NewTopic: ");
}

/* ------------------------------------------------------------------------- */
/* Messages                                                                   */
/* ------------------------------------------------------------------------- */

static void test_send_and_query(void **state)
{
  (void)state;
  char line[1024], want[1024], id[RMQ_MSG_ID_SIZE], *f[16];
  adm(g_store, "sendMessage", "-t", TOPIC, "-p", "hello admin", "-c", "TagC", "-k", "adminkey other", "-i", "2", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-32s  %-4s  %-20s    %s\n", "#Broker Name", "#QID", "#Send Result", "#MsgId");
  expect_out(want);
  out_line("SEND_OK", line, sizeof line);
  assert_int_equal(fields(line, f, 16), 4);
  assert_string_equal(f[0], "rmq-broker");
  assert_string_equal(f[1], "2");
  assert_int_equal(strlen(f[3]), 32);
  snprintf(id, sizeof id, "%s", f[3]);

  /* The new message by its key, its msgId and its queue offset (5 in queue 2). */
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "adminkey", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-50s %4s %40s\n", "#Message ID", "#QID", "#Offset");
  expect_out(want);
  snprintf(want, sizeof want, "%-50s %4d %40d\n", id, 2, 5);
  expect_out(want);
  adm(g_store, "queryMsgById", "-i", id, NULL);
  expect_code(0);
  expect_out(detail("Topic:", TOPIC));
  expect_out(detail("Tags:", "[TagC]"));
  expect_out(detail("Keys:", "[adminkey other]"));
  expect_out(detail("Queue ID:", "2"));
  expect_out(detail("Queue Offset:", "5"));
  expect_out(detail("Message Body:", "hello admin"));
  snprintf(want, sizeof want, "UNIQ_KEY=%s", id);
  expect_out(want);
  expect_no_out("MIN_OFFSET"); /* not pulled */
  /* GROUP stands at 2 in queue 2: offset 5 is not consumed yet. */
  expect_out("\n\nMessageTrack [consumerGroup=" GROUP ", trackType=NOT_CONSUME_YET, exceptionDesc=null]\n");
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "2", "-o", "5", NULL);
  expect_code(0);
  expect_out(detail("Message Body:", "hello admin"));
  expect_out("{MIN_OFFSET=0, MAX_OFFSET=6, ");
  /* The issue's -q names the queue as mqadmin's -i does. */
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-q", "2", "-o", "5", NULL);
  expect_code(0);
  expect_out(detail("Message Body:", "hello admin"));
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-o", "5", NULL);
  expect_code(2);
  /* A topic no group has offsets in. */
  adm(g_store, "queryMsgByOffset", "-t", FILTER_TOPIC, "-i", "0", "-o", "1", NULL);
  expect_code(0);
  expect_out(detail("Message Body:", "age 20"));
  expect_out("\n\nWARN: No Consumer\n");

  /* Every stored message by key "common" (20 of them, oldest first). */
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "common", NULL);
  expect_code(0);
  for (int i = 0; i < NMSG; i++) {
    snprintf(want, sizeof want, "%-50s %4d %40d\n", S.msg_id[i], i % 4, i / 4);
    expect_out(want);
  }
  assert_true(strstr(R.out, S.msg_id[0]) < strstr(R.out, S.msg_id[NMSG - 1]));
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "common", "-m", "3", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "\n") - 1, 3);
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "common", "-b", "0", "-e", "1", NULL);
  expect_code(1);
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "key7", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-50s %4d %40d\n", S.msg_id[7], 3, 1);
  expect_out(want);
  assert_int_equal(count_of(R.out, "\n"), 2);
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "nokey", NULL);
  expect_code(1);
  expect_err("no message with key nokey");

  /* By offsetMsgId (viewMessage) and by msgId, several at once. */
  snprintf(want, sizeof want, "%s,%s", S.offset_msg_id[5], S.msg_id[6]);
  adm(g_store, "queryMsgById", "-i", want, NULL);
  expect_code(0);
  expect_out(detail("OffsetID:", S.offset_msg_id[5]));
  expect_out(detail("Message Body:", "Hello RocketMQ 5"));
  expect_out(detail("Message Body:", "Hello RocketMQ 6"));
  snprintf(want, sizeof want, "%s%s", detail("Tags:", "[TagB]"), detail("Keys:", "[key5 common]"));
  expect_out(want);
  char v[64];
  snprintf(v, sizeof v, "%" PRId64, S.phys[5]);
  expect_out(detail("CommitLog Offset:", v));
  human2(v, sizeof v, S.store_ts[5]);
  expect_out(detail("Store Timestamp:", v));
  expect_out(detail("Store Host:", "127.0.0.1:10911"));
  /* Message 5 is offset 1 of queue 1, which GROUP consumed; 6 is offset 1 of queue 2, which it did too. */
  expect_out("MessageTrack [consumerGroup=" GROUP ", trackType=CONSUMED, exceptionDesc=null]");
  adm(g_store, "queryMsgById", "-i", S.msg_id[14], NULL); /* offset 3 of queue 2: not yet */
  expect_code(0);
  expect_out("MessageTrack [consumerGroup=" GROUP ", trackType=NOT_CONSUME_YET, exceptionDesc=null]");
  adm(g_store, "queryMsgById", "-i", S.msg_id[1], "-t", FILTER_TOPIC, NULL);
  expect_code(1);
  adm(g_store, "queryMsgById", "-i", "00000000000000000000000000000000", NULL);
  expect_code(1);
  snprintf(want, sizeof want, "rmqadmin: store %s: queryMsgById: no message with msgId or offsetMsgId 0000", g_store);
  expect_err(want);

  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "1", "-o", "3", "-b", "rmq-broker", NULL);
  expect_code(0);
  expect_out(detail("Message Body:", "Hello RocketMQ 13"));
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "1", "-o", "3", "-b", "broker-a", NULL);
  expect_code(1);
  expect_err("no broker broker-a here");
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "1", "-o", "99", NULL);
  expect_code(1);
  expect_err("queryMsgByOffset " TOPIC " queue 1 offset 99: ");
  adm(g_store, "queryMsgByOffset", "-t", TOPIC, "-i", "7", "-o", "0", NULL);
  expect_code(1);

  /* No topic is made by a send. */
  adm(g_store, "sendMessage", "-t", "Nowhere", "-p", "x", NULL);
  expect_code(1);
  expect_err("sendMessage to Nowhere: ");
  adm(g_store, "topicList", NULL);
  expect_no_out("Nowhere");
}

static void test_print_msg(void **state)
{
  (void)state;
  char want[1024];
  adm(g_store, "printMsg", "-t", TOPIC, NULL);
  expect_code(0);
  for (int q = 0; q < 4; q++) {
    snprintf(want, sizeof want, "minOffset=0, maxOffset=5, MessageQueue [topic=%s, brokerName=rmq-broker, queueId=%d]\n",
             TOPIC, q);
    expect_out(want);
  }
  for (int i = 0; i < NMSG; i++) {
    snprintf(want, sizeof want, "MSGID: %s MessageExt [brokerName=rmq-broker, queueId=%d, ", S.msg_id[i], i % 4);
    expect_out(want);
    snprintf(want, sizeof want, "msgId=%s, commitLogOffset=%" PRId64 ",", S.offset_msg_id[i], S.phys[i]);
    expect_out(want);
    snprintf(want, sizeof want, "transactionId='null'}] BODY: Hello RocketMQ %d\n", i);
    expect_out(want);
  }
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG);
  assert_int_equal(count_of(R.out, "--------------------------------------------------------\n"), 4);

  adm(g_store, "printMsg", "-t", TOPIC, "-s", "TagB", NULL); /* queues 1 and 3 */
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG / 2);
  expect_out("BODY: Hello RocketMQ 1\n");
  expect_no_out("BODY: Hello RocketMQ 2\n");
  expect_out("queueId=0] no matched msg. status=NO_MATCHED_MSG, offset=5\n");

  /* From T1 on: offsets 3 and 4 of each queue, messages 12..19. */
  char t1[32];
  snprintf(t1, sizeof t1, "%" PRId64, S.t1);
  adm(g_store, "printMsg", "-t", TOPIC, "-b", t1, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG - EARLY);
  expect_out("minOffset=3, maxOffset=5, MessageQueue [topic=" TOPIC ", brokerName=rmq-broker, queueId=2]\n");
  expect_no_out("BODY: Hello RocketMQ 11\n");
  expect_out("BODY: Hello RocketMQ 12\n");
  /* Up to T1 in mqadmin's date form: offsets 0..2. */
  time_t tt = (time_t)(S.t1 / 1000);
  struct tm tm;
  localtime_r(&tt, &tm);
  char t1s[64];
  snprintf(t1s, sizeof t1s, "%04d-%02d-%02d#%02d:%02d:%02d:%03d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (int)(S.t1 % 1000));
  adm(g_store, "printMsg", "-t", TOPIC, "-e", t1s, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), EARLY);
  expect_out("BODY: Hello RocketMQ 11\n");
  expect_no_out("BODY: Hello RocketMQ 12\n");
  adm(g_store, "printMsg", "-t", TOPIC, "-d", "false", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "BODY: NOT PRINT BODY\n"), NMSG);
  adm(g_store, "printMsg", "-t", "NoSuchTopic", NULL);
  expect_code(1);
}

static void test_consume_message(void **state)
{
  (void)state;
  char want[1024];
  /* GROUP stands at 5, 5, 2 and nothing: queue 2 from 2, queue 3 from 0. */
  adm(g_store, "consumeMessage", "-t", TOPIC, "-g", GROUP, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 3 + 5);
  for (int i = 0; i < NMSG; i++) {
    int q = i % 4, off = i / 4;
    int shown = (q == 2 && off >= 2) || q == 3;
    snprintf(want, sizeof want, "BODY: Hello RocketMQ %d\n", i);
    if (shown != (strstr(R.out, want) != NULL)) fail_msg("message %d %s" SHOW, i, shown ? "missing" : "shown", R.out, R.err);
  }
  expect_out("Consume ok\n");
  expect_out("MessageQueue [topic=" TOPIC ", brokerName=rmq-broker, queueId=3] print msg finished. status=NO_NEW_MSG, offset=5\n");
  /* Nothing committed: the same again, and the group's offsets as built. */
  adm(g_store, "consumeMessage", "-t", TOPIC, "-g", GROUP, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 8);
  adm(g_store, "consumerProgress", "-g", GROUP, NULL);
  expect_code(0);
  expect_out("Consume Diff Total: 8\n");

  /* The tools group has no offsets: everything, capped by -c. */
  adm(g_store, "consumeMessage", "-t", TOPIC, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG);
  adm(g_store, "consumeMessage", "-t", TOPIC, "-c", "7", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 7);
  expect_out("The older 2 message of the 1 queue will be provided\n");
  /* One queue from an offset, and from a time. */
  adm(g_store, "consumeMessage", "-t", TOPIC, "-i", "1", "-o", "3", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 2);
  expect_out("BODY: Hello RocketMQ 13\n");
  expect_out("BODY: Hello RocketMQ 17\n");
  char t1[32];
  snprintf(t1, sizeof t1, "%" PRId64, S.t1);
  adm(g_store, "consumeMessage", "-t", TOPIC, "-s", t1, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG - EARLY);
  expect_no_out("BODY: Hello RocketMQ 11\n");

  /* -s that is not a time is an SQL92 selector (and --sql is one). */
  adm(g_store, "consumeMessage", "-t", FILTER_TOPIC, "-s", "age >= 25", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 2);
  expect_out("BODY: age 30\n");
  expect_out("BODY: age 40\n");
  expect_no_out("BODY: age 20\n");
  adm(g_store, "consumeMessage", "-t", FILTER_TOPIC, "--sql", "age < 15", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 1);
  expect_out("BODY: age 10\n");

  /* --commit: the offsets move, and a second run gets nothing. */
  adm(g_store, "consumeMessage", "-t", TOPIC, "-g", "GroupC", "--commit", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG);
  expect_out("MessageQueue [topic=" TOPIC ", brokerName=rmq-broker, queueId=0] committed offset=5\n");
  adm(g_store, "consumeMessage", "-t", TOPIC, "-g", "GroupC", "--commit", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 0);
  adm(g_store, "consumerProgress", "-g", "GroupC", NULL);
  expect_code(0);
  expect_out("Consume Diff Total: 0\n");
  adm(g_store, "consumeMessage", "-t", TOPIC, "-b", "other-broker", NULL);
  expect_code(1);
  adm(g_store, "consumeMessage", "-t", "NoSuchTopic", NULL);
  expect_code(1);
}

/* ------------------------------------------------------------------------- */
/* Groups and the broker                                                      */
/* ------------------------------------------------------------------------- */

static void test_consumer_progress(void **state)
{
  (void)state;
  char line[1024], want[1024], *f[16];
  adm(g_store, "consumerProgress", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-64s  %-6s  %-24s %-5s  %-14s  %-7s  %s\n", "#Group", "#Count", "#Version", "#Type",
           "#Model", "#TPS", "#Diff Total");
  expect_out(want);
  out_line(GROUP " ", line, sizeof line);
  assert_int_equal(fields(line, f, 16), 5);
  assert_string_equal(f[1], "0");
  assert_string_equal(f[2], "OFFLINE");
  assert_string_equal(f[3], "0");
  assert_string_equal(f[4], "8");

  adm(g_store, "consumerProgress", "-g", GROUP, NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-64s  %-32s  %-4s  %-20s  %-20s  %-20s %-20s%s\n", "#Topic", "#Broker Name", "#QID",
           "#Broker Offset", "#Consumer Offset", "#Diff", "#Inflight", "#LastTime");
  expect_out(want);
  for (int q = 0; q < 4; q++) {
    int co = q < 2 ? 5 : q == 2 ? 2 : 0;
    out_line(row_of(q), line, sizeof line);
    char when[64] = "N/A";
    if (co) ymd_hms(when, sizeof when, S.store_ts[(co - 1) * 4 + q]); /* the last consumed message */
    if (!strstr(line, when)) fail_msg("queue %d: no \"%s\" in \"%s\"", q, when, line);
    assert_true(fields(line, f, 16) >= 7);
    assert_string_equal(f[0], TOPIC);
    assert_int_equal(atoi(f[3]), 5);
    assert_int_equal(atoi(f[4]), co);
    assert_int_equal(atoi(f[5]), 5 - co);
  }
  expect_out("\nConsume TPS: 0.00\nConsume Diff Total: 8\nConsume Inflight Total: 0\n");
  adm(g_store, "consumerProgress", "-g", GROUP, "-s", "true", NULL);
  expect_code(0);
  expect_out("#Client IP");
  adm(g_store, "consumerProgress", "-g", GROUP, "-t", FILTER_TOPIC, NULL);
  expect_code(1);
  adm(g_store, "consumerProgress", "-g", "NoGroup", NULL);
  expect_code(1);
  expect_err("consumer group NoGroup has no consume offsets");

  /* Back to T1: every queue at its offset 3. */
  char t1[32];
  snprintf(t1, sizeof t1, "%" PRId64, S.t1);
  adm(g_store, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", t1, NULL);
  expect_code(0);
  snprintf(want, sizeof want, "group[%s], topic[%s], force[true], timestamp(string)[%s], timestamp(long)[%s]\n", GROUP,
           TOPIC, t1, t1);
  expect_out(want);
  snprintf(want, sizeof want, "%-40s  %-40s  %-40s\n", "#brokerName", "#queueId", "#offset");
  expect_out(want);
  for (int q = 0; q < 4; q++) {
    snprintf(want, sizeof want, "%-40s  %-40d  %-40d\n", "rmq-broker", q, 3);
    expect_out(want);
  }
  adm(g_store, "consumerProgress", "-g", GROUP, NULL);
  expect_out("Consume Diff Total: 8\n");
  expect_no_out("N/A");
  adm(g_store, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "now", NULL);
  expect_code(0);
  adm(g_store, "consumerProgress", "-g", GROUP, NULL);
  expect_out("Consume Diff Total: 0\n");
  adm(g_store, "resetOffsetByTime", "-g", GROUP, "-t", "NoSuchTopic", "-s", "0", NULL);
  expect_code(1);

  adm(g_store, "deleteSubGroup", "-g", GROUP, NULL);
  expect_code(0);
  snprintf(want, sizeof want, "delete subscription group [%s] from store [%s] success.\n", GROUP, g_store);
  expect_out(want);
  adm(g_store, "consumerProgress", "-g", GROUP, NULL);
  expect_code(1);
  adm(g_store, "consumerProgress", NULL);
  expect_code(0);
  expect_no_out(GROUP);
  adm(g_store, "deleteSubGroup", "-g", GROUP, NULL);
  expect_code(1);
  expect_err("deleteSubGroup " GROUP ": ");
}

static void test_broker_status(void **state)
{
  (void)state;
  char line[1024], want[1024], *f[16];
  rmq_broker *b;
  rmq_broker_options o;
  rmq_broker_stats st;
  opts_for(&o, NULL, 1 << 20);
  o.read_only = 1;
  ok(rmq_broker_open(g_store, &o, &b));
  ok(rmq_broker_stats_get(b, &st));
  int64_t max = st.commit_log_max_offset, min = st.commit_log_min_offset;
  rmq_broker_stats_free(&st);
  ok(rmq_broker_close(b));
  assert_true(max > S.phys[NMSG - 1] + S.size[NMSG - 1]); /* the filtered messages came after */

  adm(g_store, "brokerStatus", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-32s: %" PRId64 "\n", "commitLogMaxOffset", max);
  expect_out(want);
  snprintf(want, sizeof want, "%-32s: %" PRId64 "\n", "commitLogMinOffset", min);
  expect_out(want);
  snprintf(want, sizeof want, "%-32s: %" PRId64 "\n", "earliestMessageTimeStamp", S.store_ts[0]);
  expect_out(want);
  snprintf(want, sizeof want, "%-32s: %s\n", "putTps", "0.0 0.0 0.0");
  expect_out(want);
  snprintf(want, sizeof want, "%-32s: %s\n", "remainHowManyDataToFlush", "0 B");
  expect_out(want);
  snprintf(want, sizeof want, "%-32s: %s", "runtime", "[ 0 days, 0 hours, 0 minutes, ");
  expect_out(want);
  /* Keys sorted as a TreeMap. */
  assert_true(strstr(R.out, "bootTimestamp") < strstr(R.out, "commitLogMaxOffset"));
  assert_true(strstr(R.out, "commitLogMaxOffset") < strstr(R.out, "putTps"));
  out_line(TOPIC " ", line, sizeof line);
  assert_int_equal(fields(line, f, 16), 8);
  assert_string_equal(f[1], "4");
  assert_string_equal(f[7], "20");
  snprintf(want, sizeof want, "%-32s  %-48s  ", GROUP, TOPIC);
  out_line(want, line, sizeof line);
  assert_int_equal(fields(line, f, 16), 8);
  assert_string_equal(f[6], "8"); /* diff total */
  assert_true(atoll(f[7]) > 86400LL * 1000); /* the oldest unconsumed message is two days old */
}

/* ------------------------------------------------------------------------- */
/* A store held by another process                                            */
/* ------------------------------------------------------------------------- */

static void test_held_store(void **state)
{
  (void)state;
  int up[2], down[2];
  char want[800];
  assert_int_equal(pipe(up), 0);
  assert_int_equal(pipe(down), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rmq_broker *b;
    rmq_broker_options o;
    rmq_broker_options_init(&o);
    o.service_thread = 0;
    char c = rmq_broker_open(g_store, &o, &b) == RMQ_OK ? 'y' : 'n';
    if (write(up[1], &c, 1) != 1) _exit(3);
    if (read(down[0], &c, 1) < 0) _exit(4);
    _exit(c == 'y' || rmq_broker_close(b) == RMQ_OK ? 0 : 5);
  }
  g_child = pid;
  close(up[1]);
  close(down[0]);
  char c = 0;
  assert_int_equal(read(up[0], &c, 1), 1);
  assert_int_equal(c, 'y');

  /* Reads work while the child holds the store ... */
  adm(g_store, "topicList", NULL);
  expect_code(0);
  expect_out(TOPIC "\n");
  adm(g_store, "queryMsgByKey", "-t", TOPIC, "-k", "key3", NULL);
  expect_code(0);
  expect_out(S.msg_id[3]);
  adm(g_store, "consumerProgress", "-g", GROUP, NULL);
  expect_code(0);
  adm(g_store, "printMsg", "-t", TOPIC, NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), NMSG);
  adm(g_store, "consumeMessage", "-t", TOPIC, "-g", GROUP, NULL);
  expect_code(0);
  adm(g_store, "checkStore", NULL);
  expect_code(0);
  adm(g_store, "brokerStatus", NULL);
  expect_code(0);

  /* ... writes say who holds it. */
  snprintf(want, sizeof want, "rmqadmin: store %s is held by another process (pid %d); stop it first\n", g_store, (int)pid);
  adm(g_store, "updateTopic", "-t", "T2", NULL);
  expect_code(1);
  expect_err(want);
  adm(g_store, "sendMessage", "-t", TOPIC, "-p", "x", NULL);
  expect_code(1);
  expect_err(want);
  adm(g_store, "consumeMessage", "-t", TOPIC, "-g", GROUP, "--commit", NULL);
  expect_code(1);
  expect_err(want);
  adm(g_store, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "now", NULL);
  expect_code(1);
  expect_err(want);
  adm(g_store, "deleteExpiredCommitLog", NULL);
  expect_code(1);
  expect_err(want);

  assert_int_equal(write(down[1], "q", 1), 1);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  g_child = 0;
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  close(up[0]);
  close(down[1]);
  /* Released: the write goes through, and nothing the reads did hurt the store. */
  adm(g_store, "updateTopic", "-t", "T2", NULL);
  expect_code(0);
  adm(g_store, "checkStore", NULL);
  expect_code(0);
}

/* Every file of the store with its size and change time, one a line. */
static char g_snap[65536];
static size_t g_snap_len;

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)ftw;
  int n = snprintf(g_snap + g_snap_len, sizeof g_snap - g_snap_len, "%s %d %lld %lld.%09ld %lld.%09ld\n", path, flag,
                   (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
                   (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
  if (n > 0 && g_snap_len + (size_t)n < sizeof g_snap) g_snap_len += (size_t)n;
  return 0;
}

static void snapshot(const char *dir, char *out, size_t cap)
{
  g_snap_len = 0;
  g_snap[0] = 0;
  assert_int_equal(nftw(dir, snap_one, 16, FTW_PHYS), 0);
  snprintf(out, cap, "%s", g_snap);
}

/* The read commands change no file of the store, not even a time. */
static void test_reads_change_nothing(void **state)
{
  (void)state;
  static char before[65536], after[65536];
  snapshot(g_store, before, sizeof before);
  assert_non_null(strstr(before, "/commitlog/00000000000000000000 "));
  static const char *const reads[][12] = {
    {"topicList"},
    {"topicStatus", "-t", TOPIC},
    {"topicRoute", "-t", TOPIC},
    {"consumeMessage", "-t", TOPIC, "-g", GROUP},
    {"consumeMessage", "-t", FILTER_TOPIC, "-s", "age > 1"},
    {"queryMsgByKey", "-t", TOPIC, "-k", "common"},
    {"queryMsgByOffset", "-t", TOPIC, "-i", "1", "-o", "1"},
    {"printMsg", "-t", TOPIC},
    {"consumerProgress"},
    {"consumerProgress", "-g", GROUP},
    {"brokerStatus"},
    {"checkStore"},
  };
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
    const char *argv[16] = {NULL, "-s", g_store};
    int n = 3;
    for (int k = 0; reads[i][k]; k++) argv[n++] = reads[i][k];
    argv[n] = NULL;
    adm_argv(argv);
    expect_code(0);
  }
  adm(g_store, "queryMsgById", "-i", S.msg_id[3], NULL);
  expect_code(0);
  snapshot(g_store, after, sizeof after);
  assert_string_equal(before, after);
}

/* ------------------------------------------------------------------------- */
/* checkStore                                                                 */
/* ------------------------------------------------------------------------- */

static void flip_byte(const char *path, int64_t off)
{
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  uint8_t b;
  assert_int_equal(pread(fd, &b, 1, off), 1);
  b ^= 0x55;
  assert_int_equal(pwrite(fd, &b, 1, off), 1);
  close(fd);
}

static void test_check_store_clean(void **state)
{
  (void)state;
  adm(g_store, "checkStore", NULL);
  expect_code(0);
  char want[1024];
  snprintf(want, sizeof want, "checked %d CommitLog records (", NMSG + 4);
  expect_out(want);
  snprintf(want, sizeof want, "%d ConsumeQueue units", NMSG + 4);
  expect_out(want);
  expect_out("MB/s): 0 problems\n");
}

/* A byte of message 9's body (CommitLog record v1: the body follows 88
** bytes of header) flipped: its CRC no longer matches. */
static void test_check_store_crc(void **state)
{
  (void)state;
  char path[800], want[1024];
  snprintf(path, sizeof path, "%s/commitlog/00000000000000000000", g_store);
  flip_byte(path, S.phys[9] + 88 + 3);
  adm(g_store, "checkStore", NULL);
  expect_code(1);
  snprintf(want, sizeof want, "commitlog/00000000000000000000@%" PRId64 ": ", S.phys[9]);
  expect_out(want);
  out_line(want, path, sizeof path);
  for (char *p = path; *p; p++) *p = (char)tolower((unsigned char)*p);
  if (!strstr(path, "crc")) fail_msg("the problem does not name the CRC: %s", path);
  expect_out(" problem");
  expect_no_out(": 0 problems");
  snprintf(want, sizeof want, "rmqadmin: store %s: checkStore: ", g_store);
  expect_err(want);
}

/* Unit 2 of queue 1's ConsumeQueue made to point at another record. */
static void test_check_store_cq(void **state)
{
  (void)state;
  char path[800], want[1024];
  snprintf(path, sizeof path, "%s/consumequeue/%s/1/00000000000000000000", g_store, TOPIC);
  uint8_t unit[20];
  tu_read_exact(path, 40, unit, sizeof unit);
  int64_t phys = 0;
  for (int i = 0; i < 8; i++) phys = phys << 8 | unit[i];
  assert_int_equal(phys, S.phys[9]); /* message 9 is queue 1 offset 2 */
  for (int i = 0; i < 8; i++) unit[i] = (uint8_t)((uint64_t)S.phys[10] >> (56 - 8 * i));
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, unit, 8, 40), 8);
  close(fd);
  adm(g_store, "checkStore", NULL);
  expect_code(1);
  snprintf(want, sizeof want, "consumequeue/%s/1/00000000000000000000@40: ", TOPIC);
  expect_out(want);
  expect_out(" problem");
  expect_no_out(": 0 problems");
}

/* ------------------------------------------------------------------------- */
/* Retention commands                                                         */
/* ------------------------------------------------------------------------- */

/* A store of 64 KiB CommitLog files, all but the last made four days old:
** deleteExpiredCommitLog removes them and the queues start later. */
static void test_expired_files(void **state)
{
  (void)state;
  char dir[800], path[1200], want[1024];
  rmq_broker_options o;
  rmq_broker *b;
  rmq_producer *p;
  snprintf(dir, sizeof dir, "%s/small", g_dir);
  opts_for(&o, NULL, 64 << 10);
  ok(rmq_broker_open(dir, &o, &b));
  ok(rmq_topic_create(b, "Big", 2));
  ok(rmq_producer_create(b, NULL, NULL, &p));
  static char body[1000];
  memset(body, 'x', sizeof body);
  for (int i = 0; i < 200; i++) {
    rmq_msg *m;
    ok(rmq_msg_create(&m, "Big", NULL, body, sizeof body));
    ok(rmq_producer_send(p, m, NULL));
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
  snprintf(path, sizeof path, "%s/commitlog", dir);
  int files = tu_count_files(path);
  assert_true(files >= 3);
  DIR *d = opendir(path);
  assert_non_null(d);
  struct timeval old[2] = {{time(NULL) - 96 * 3600, 0}, {time(NULL) - 96 * 3600, 0}};
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char f[1500];
    snprintf(f, sizeof f, "%s/%s", path, e->d_name);
    assert_int_equal(utimes(f, old), 0);
  }
  closedir(d);

  adm(dir, "cleanExpiredCQ", NULL);
  expect_code(0);
  expect_out("success\n");
  adm(dir, "deleteExpiredCommitLog", NULL);
  expect_code(0);
  int left = tu_count_files(path);
  assert_true(left < files);
  snprintf(want, sizeof want, "success (%d expired CommitLog files deleted)\n", files - left);
  expect_out(want);
  adm(dir, "topicStatus", "-t", "Big", NULL);
  expect_code(0);
  char line[1024], *f[16];
  out_line(row_of(0), line, sizeof line);
  assert_true(fields(line, f, 16) >= 4);
  assert_true(atoi(f[2]) > 0);
  assert_int_equal(atoi(f[3]), 100);
  adm(dir, "brokerStatus", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "%-32s: %d\n", "commitLogFileCount", left);
  expect_out(want);
}

/* ------------------------------------------------------------------------- */
/* The demo's store                                                           */
/* ------------------------------------------------------------------------- */

/* The sum of one column of topicStatus's rows. */
static int64_t column_sum(int col)
{
  int64_t sum = 0;
  char line[1024], *f[16];
  for (const char *p = R.out; (p = strstr(p, "rmq-broker ")) != NULL; p++) {
    size_t n = strcspn(p, "\n");
    snprintf(line, sizeof line, "%.*s", (int)n, p);
    if (fields(line, f, 16) > col) sum += atoll(f[col]);
  }
  return sum;
}

/* Every command on the store `rmq-demo all` writes (the quick-start ports:
** 100 ordered messages, the SQL92 filter demo's six people, consumer
** groups, a retried message in a DLQ, transactions). */
static void test_demo_store(void **state)
{
  (void)state;
  char demo[800], cmd[2000], want[1024], id[RMQ_MSG_ID_SIZE];
  snprintf(demo, sizeof demo, "%s/demo-store", g_dir);
  snprintf(cmd, sizeof cmd, "'%s' --store '%s' all >/dev/null 2>&1", RMQ_DEMO_BIN, demo);
  assert_int_equal(system(cmd), 0);

  adm(demo, "topicList", NULL);
  expect_code(0);
  static const char *const topics[] = {"my-topic\n", "haoke_order_topic\n", "haoke_im_topic\n", "haoke_retry_topic\n",
                                       "my-topic-filter\n", "pay_topic\n", "%DLQ%HAOKE_RETRY_CONSUMER\n"};
  for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) expect_out(topics[i]);
  adm(demo, "topicStatus", "-t", "haoke_order_topic", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "rmq-broker "), 4);
  assert_int_equal(column_sum(3), 100); /* the 100 ordered messages */
  adm(demo, "topicRoute", "-t", "pay_topic", NULL);
  expect_code(0);
  expect_out("\"readQueueNums\":4,");

  adm(demo, "printMsg", "-t", "my-topic-filter", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 6);
  expect_out("BODY: 美女001\n");
  expect_out("age=30");
  const char *m = strstr(R.out, "MSGID: ");
  snprintf(id, sizeof id, "%.32s", m + 7);
  adm(demo, "printMsg", "-t", "haoke_order_topic", "-d", "false", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "BODY: NOT PRINT BODY\n"), 100);
  adm(demo, "consumeMessage", "-t", "my-topic-filter", "--sql", "sex='女' AND age>=18", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "MSGID: "), 3);
  expect_out("BODY: 美女002\n");
  expect_out("BODY: 美女003\n");
  expect_out("BODY: 美女004\n");
  adm(demo, "queryMsgByOffset", "-t", "haoke_order_topic", "-i", "0", "-o", "0", NULL);
  expect_code(0);
  expect_out(detail("Tags:", "[ORDER_MSG]"));
  expect_out("Message Body:        order --> ");
  adm(demo, "queryMsgByKey", "-t", "my-topic-filter", "-k", id, NULL); /* a UNIQ_KEY is indexed too */
  expect_code(0);
  assert_int_equal(count_of(R.out, id), 1);
  adm(demo, "queryMsgById", "-i", id, NULL);
  expect_code(0);
  expect_out(detail("Topic:", "my-topic-filter"));
  expect_out("trackType=CONSUMED"); /* the filter demo's group read them all */

  adm(demo, "consumerProgress", NULL);
  expect_code(0);
  expect_out("\nhaoke-consumer ");
  expect_out("\nHAOKE_ORDER_CONSUMER ");
  adm(demo, "consumerProgress", "-g", "HAOKE_ORDER_CONSUMER", NULL);
  expect_code(0);
  expect_out("\nhaoke_order_topic ");
  expect_out("Consume Diff Total: 0\n");
  adm(demo, "brokerStatus", NULL);
  expect_code(0);
  expect_out("commitLogMaxOffset");
  expect_out("\nhaoke_order_topic ");
  adm(demo, "checkStore", NULL);
  expect_code(0);
  expect_out(": 0 problems\n");

  /* The writes. */
  adm(demo, "sendMessage", "-t", "my-topic", "-p", "hello rmqadmin", "-k", "order-42", NULL);
  expect_code(0);
  adm(demo, "queryMsgByKey", "-t", "my-topic", "-k", "order-42", NULL);
  expect_code(0);
  assert_int_equal(count_of(R.out, "\n"), 2);
  adm(demo, "updateTopic", "-t", "audit", "-w", "2", NULL);
  expect_code(0);
  adm(demo, "deleteTopic", "-t", "audit", NULL);
  expect_code(0);
  adm(demo, "resetOffsetByTime", "-g", "HAOKE_ORDER_CONSUMER", "-t", "haoke_order_topic", "-s", "0", NULL);
  expect_code(0);
  adm(demo, "consumerProgress", "-g", "HAOKE_ORDER_CONSUMER", NULL);
  expect_out("Consume Diff Total: 100\n");
  adm(demo, "deleteSubGroup", "-g", "HAOKE_RETRY_CONSUMER", NULL);
  expect_code(0);
  adm(demo, "topicList", NULL);
  expect_no_out("HAOKE_RETRY_CONSUMER");
  expect_out("haoke_retry_topic\n");
  adm(demo, "cleanExpiredCQ", NULL);
  expect_code(0);
  adm(demo, "deleteExpiredCommitLog", NULL);
  expect_code(0);
  expect_out("success (0 expired CommitLog files deleted)\n");
  adm(demo, "checkStore", NULL);
  expect_code(0);
  snprintf(want, sizeof want, "rmqadmin: store %s", demo);
  if (strstr(R.err, want)) fail_msg("unexpected stderr: %s", R.err);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
    T(test_help),
    T(test_usage_errors),
    T(test_missing_store),
    T(test_topics),
    T(test_send_and_query),
    T(test_print_msg),
    T(test_consume_message),
    T(test_consumer_progress),
    T(test_broker_status),
    T(test_held_store),
    T(test_reads_change_nothing),
    T(test_check_store_clean),
    T(test_check_store_crc),
    T(test_check_store_cq),
    T(test_expired_files),
    T(test_demo_store),
  };
  return cmocka_run_group_tests_name("admin", tests, NULL, NULL);
}
