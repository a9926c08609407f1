/*
** demo.c -- rmq-demo: runs the quick-start ports on one store.
**
**   rmq-demo [--store DIR] <name>|all      (DIR default ./demo-store)
**
** Opens ONE broker on DIR (the embedded stand-in for NameServer + broker),
** hands it to the chosen example, or to all of them in quick-start order
** (topic, sync, async, consumer, pull, order-producer, order-consumer,
** broadcast, retry, filter-producer, filter-consumer, transaction),
** closes it, and prints a summary.
** Running it again on the same store continues where the last run stopped:
** the consumer groups' offsets live in DIR/config/consumerOffset.json.
**
** rmq.h entries used: rmq_broker_options_init, rmq_broker_open,
** rmq_broker_recovery_info, rmq_broker_close, rmq_libversion, rmq_errstr,
** rmq_errmsg, rmq_message_ext_format (demo_print_received).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "examples.h"

int demo_error(const char *what, int rc)
{
  fprintf(stderr, "%s: %s: %s\n", what, rmq_errstr(rc), rmq_errmsg());
  return rc;
}

void demo_expect_init(demo_expect *w, const char (*ids)[RMQ_MSG_ID_SIZE], int n)
{
  memset(w, 0, sizeof *w);
  w->ids = ids;
  w->n = n;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &ca);
  pthread_condattr_destroy(&ca);
}

void demo_expect_note(demo_expect *w, const rmq_message_ext *const *msgs, size_t n)
{
  pthread_mutex_lock(&w->mu);
  w->received += (int)n;
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < w->n; k++)
      if (!w->seen[k] && strcmp(msgs[i]->msg_id, w->ids[k]) == 0) {
        w->seen[k] = 1;
        w->nseen++;
      }
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->mu);
}

int demo_expect_wait(demo_expect *w, int wait_ms)
{
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += wait_ms / 1000;
  deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  int timed_out = 0;
  pthread_mutex_lock(&w->mu);
  while ((w->n == 0 || w->nseen < w->n) && !timed_out)
    timed_out = pthread_cond_timedwait(&w->cond, &w->mu, &deadline) != 0;
  int nseen = w->nseen;
  pthread_mutex_unlock(&w->mu);
  return nseen;
}

void demo_expect_destroy(demo_expect *w)
{
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->mu);
}

int demo_print_send_result(const rmq_send_result *r)
{
  printf("消息id：%s\n", r->msg_id);
  printf("消息队列：MessageQueue [topic=%s, brokerName=%s, queueId=%d]\n", r->message_queue.topic,
         r->message_queue.broker_name, r->message_queue.queue_id);
  printf("消息offset值：%lld\n", (long long)r->queue_offset);
  char line[1024];
  int rc = rmq_send_result_format(r, line, sizeof line);
  if (rc < 0) return demo_error("rmq_send_result_format", rc);
  printf("%s\n", line);
  return RMQ_OK;
}

/* MessageExt.toString(); a small message's text fits the stack buffer, a
** bigger one gets a heap buffer of the size needed. */
static void print_message_ext(const rmq_message_ext *m)
{
  char buf[2048];
  int need = rmq_message_ext_format(m, buf, sizeof buf);
  if (need < 0) {
    demo_error("rmq_message_ext_format", need);
    return;
  }
  if ((size_t)need < sizeof buf) {
    fputs(buf, stdout);
    return;
  }
  char *big = malloc((size_t)need + 1);
  if (!big) return;
  rmq_message_ext_format(m, big, (size_t)need + 1);
  fputs(big, stdout);
  free(big);
}

void demo_print_received(const rmq_message_ext *const *msgs, size_t n)
{
  flockfile(stdout);
  for (size_t i = 0; i < n; i++)
    printf("消息:%.*s\n", (int)msgs[i]->body_len, (const char *)msgs[i]->body);
  printf("接收到消息 -> [");
  for (size_t i = 0; i < n; i++) {
    if (i) printf(", ");
    print_message_ext(msgs[i]);
  }
  printf("]\n");
  funlockfile(stdout);
}

typedef struct example {
  const char *name;
  const char *java;   /* the quick-start class it ports */
  int (*run)(rmq_broker *b, demo_stats *st);
} example;

/* In the order `all` runs them: the topic first, producers before the
** consumers that wait for their messages. */
static const example examples[] = {
  {"topic", "TopicDemo", topic_demo},
  {"sync", "SyncProducer", sync_producer},
  {"async", "AsyncProducer", async_producer},
  {"consumer", "ConsumerDemo", consumer_demo},
  {"pull", "PullConsumer", pull_consumer},
  {"order-producer", "OrderProducer", order_producer},
  {"order-consumer", "OrderConsumer", order_consumer},
  {"broadcast", "BROADCASTING consumers", broadcast_consumer},
  {"retry", "RECONSUME_LATER to the DLQ", retry_consumer},
  {"filter-producer", "SyncProducer with user properties", filter_producer},
  {"filter-consumer", "ConsumerFilter", consumer_filter},
  {"transaction", "TransactionProducer + TransactionConsumer", transaction_producer},
};
#define NEXAMPLES (sizeof examples / sizeof examples[0])

static void usage(FILE *f, const char *argv0)
{
  fprintf(f, "usage: %s [--store DIR] <name>|all\n  DIR default ./demo-store; names:", argv0);
  for (size_t i = 0; i < NEXAMPLES; i++) fprintf(f, " %s (%s)%s", examples[i].name, examples[i].java,
                                                 i + 1 < NEXAMPLES ? "," : "\n");
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
  const char *store = "./demo-store";
  int argi = 1;
  if (argi + 1 < argc && strcmp(argv[argi], "--store") == 0) {
    store = argv[argi + 1];
    argi += 2;
  }
  if (argi + 1 != argc) {
    usage(stderr, argv[0]);
    return 2;
  }
  const char *name = argv[argi];
  if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
    usage(stdout, argv[0]);
    return 0;
  }
  int all = strcmp(name, "all") == 0;
  const example *one = NULL;
  for (size_t i = 0; i < NEXAMPLES; i++)
    if (strcmp(name, examples[i].name) == 0) one = &examples[i];
  if (!all && !one) {
    fprintf(stderr, "%s: no example named '%s'\n", argv[0], name);
    usage(stderr, argv[0]);
    return 2;
  }

  double t0 = now_s();
  printf("store: %s (rmq %s)\n", store, rmq_libversion());
  fflush(stdout);

  /* The broker.conf of the quick start: defaults (ASYNC_FLUSH), plus
  ** enablePropertyFilter=true for ConsumerFilter (rmq's default already). */
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.enable_property_filter = 1;
  /* Shortened so the transaction example's check-back comes within a
  ** second or two (RocketMQ's: transactionTimeOut 6 s, a pass every 30 s). */
  o.transaction_timeout = 1000;
  o.transaction_check_interval = 500;
  rmq_broker *b = NULL;
  int rc = rmq_broker_open(store, &o, &b);
  if (rc != RMQ_OK) {
    demo_error("rmq_broker_open", rc);
    return 1;
  }
  rmq_recovery_info ri;
  rc = rmq_broker_recovery_info(b, &ri);
  if (rc != RMQ_OK) demo_error("rmq_broker_recovery_info", rc);
  else if (ri.abnormal)
    printf("store: the last run did not close cleanly; recovery kept %lld bytes of CommitLog, dropped %lld\n",
           (long long)(ri.commitlog_max_offset - ri.commitlog_min_offset), (long long)ri.bytes_truncated);

  demo_stats st;
  memset(&st, 0, sizeof st);
  int failed = 0;
  for (size_t i = 0; i < NEXAMPLES && !failed; i++) {
    if (!all && &examples[i] != one) continue;
    printf("\n== %s (%s)\n", examples[i].name, examples[i].java);
    fflush(stdout);
    rc = examples[i].run(b, &st);
    fflush(stdout);
    if (rc != RMQ_OK) {
      fprintf(stderr, "%s failed: %s\n", examples[i].name, rmq_errstr(rc));
      failed = 1;
    }
  }

  rc = rmq_broker_close(b);
  if (rc != RMQ_OK) {
    demo_error("rmq_broker_close", rc);
    failed = 1;
  }
  printf("\nconsumers: push %d, pull %d\n", st.received_push, st.received_pull);
  printf("summary: sent %d, received %d, elapsed %.3f s\n", st.sent, st.received, now_s() - t0);
  return failed ? 1 : 0;
}
