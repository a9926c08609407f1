/*
** consumer_filter.c -- the quick start's ConsumerFilter: a push consumer of
** group "haoke" subscribed to "my-topic-filter" with
** MessageSelector.bySql("sex='女' AND age>=18").
**
** The broker evaluates the selector over each message's properties and
** hands the listener only those for which it is TRUE; the group's offsets
** move past the rest. RocketMQ needs enablePropertyFilter=true in
** broker.conf for this; demo.c sets the option (on by default in rmq). The
** listener prints like the Java one; the port stops once this run's
** matching messages (FilterProducer's msgIds) have come, or after a few
** seconds.
**
** rmq.h entries used: rmq_push_consumer_options_init, rmq_push_consumer_create,
** rmq_push_consumer_subscribe_selector (RMQ_SELECTOR_SQL92),
** rmq_push_consumer_register_listener_concurrently, rmq_push_consumer_start,
** rmq_push_consumer_shutdown / rmq_push_consumer_destroy, rmq_message_ext_property,
** rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "examples.h"

#define WAIT_EXPECTED_MS 5000
#define LISTEN_ALONE_MS 2000

typedef struct filter_ctx {
  demo_expect expect;
  atomic_int wrong; /* deliveries the selector should have kept back */
} filter_ctx;

/* Checks by hand what the selector promised: sex is 女 and age, read as an
** int, at least 18. */
static int selected(const rmq_message_ext *m)
{
  const char *v;
  size_t n;
  if (rmq_message_ext_property(m, "sex", &v, &n) != RMQ_OK || n != strlen("女") || memcmp(v, "女", n) != 0)
    return 0;
  if (rmq_message_ext_property(m, "age", &v, &n) != RMQ_OK || n == 0 || n > 9) return 0;
  char age[16];
  memcpy(age, v, n);
  age[n] = 0;
  int years = 0;
  return sscanf(age, "%d", &years) == 1 && years >= 18;
}

static int consume_message(void *arg, const rmq_message_ext *const *msgs, size_t n,
                           rmq_consume_concurrently_context *cc)
{
  filter_ctx *ctx = arg;
  (void)cc;
  demo_print_received(msgs, n);
  for (size_t i = 0; i < n; i++)
    if (!selected(msgs[i])) atomic_fetch_add(&ctx->wrong, 1);
  demo_expect_note(&ctx->expect, msgs, n);
  return RMQ_CONSUME_SUCCESS;
}

int consumer_filter(rmq_broker *b, demo_stats *st)
{
  rmq_push_consumer *consumer = NULL;
  filter_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  demo_expect_init(&ctx.expect, (const char (*)[RMQ_MSG_ID_SIZE])st->filter_expected, st->nfilter_expected);

  /* new DefaultMQPushConsumer("haoke"); */
  rmq_push_consumer_options o;
  rmq_push_consumer_options_init(&o);
  int rc = rmq_push_consumer_create(b, "haoke", &o, &consumer);
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_create", rc);
    goto out_ctx;
  }
  /* consumer.subscribe("my-topic-filter", MessageSelector.bySql("sex='女' AND age>=18")); */
  rc = rmq_push_consumer_subscribe_selector(consumer, DEMO_FILTER_TOPIC, RMQ_SELECTOR_SQL92, DEMO_FILTER_SQL);
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_subscribe_selector", rc);
    goto out_consumer;
  }
  rc = rmq_push_consumer_register_listener_concurrently(consumer, consume_message, &ctx);
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_register_listener_concurrently", rc);
    goto out_consumer;
  }
  /* consumer.start(); */
  rc = rmq_push_consumer_start(consumer);
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_start", rc);
    goto out_consumer;
  }
  int wait_ms = st->nfilter_expected > 0 ? WAIT_EXPECTED_MS : LISTEN_ALONE_MS;
  int nseen = demo_expect_wait(&ctx.expect, wait_ms);
  rmq_push_consumer_shutdown(consumer);
  st->received_push += ctx.expect.received;
  st->received += ctx.expect.received;
  if (st->nfilter_expected > 0 && nseen < st->nfilter_expected) {
    fprintf(stderr, "consumer_filter: got %d of the %d expected messages in %d ms\n", nseen,
            st->nfilter_expected, wait_ms);
    rc = RMQ_ETIMEDOUT;
  }
  if (atomic_load(&ctx.wrong)) {
    fprintf(stderr, "consumer_filter: %d delivered messages do not match the selector\n", atomic_load(&ctx.wrong));
    rc = RMQ_EEXPR;
  }
  printf("ConsumerFilter: %d messages matched %s\n", ctx.expect.received, DEMO_FILTER_SQL);

out_consumer:
  rmq_push_consumer_destroy(consumer);
out_ctx:
  demo_expect_destroy(&ctx.expect);
  return rc;
}
