/*
** demo.c -- rmq-demo: runs the quick-start ports on one store.
**
**   rmq-demo [--store DIR] <name>|all      (DIR default ./demo-store)
**
** Opens ONE broker on DIR (the embedded stand-in for NameServer + broker),
** hands it to the chosen example, or to all of them in quick-start order
** (topic, sync, async, consumer, pull, order-producer, order-consumer,
** broadcast, retry),
** closes it, and prints a summary.
** Running it again on the same store continues where the last run stopped:
** the consumer groups' offsets live in DIR/config/consumerOffset.json.
**
** rmq.h entries used: rmq_broker_options_init, rmq_broker_open,
** rmq_broker_recovery_info, rmq_broker_close, rmq_libversion, rmq_errstr,
** rmq_errmsg.
*/
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "examples.h"

int demo_error(const char *what, int rc)
{
  fprintf(stderr, "%s: %s: %s\n", what, rmq_errstr(rc), rmq_errmsg());
  return rc;
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

  /* The broker.conf of the quick start is all defaults (ASYNC_FLUSH). */
  rmq_broker_options o;
  rmq_broker_options_init(&o);
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
