/*
** retry_consumer.c -- retries and the dead-letter queue: a consumer of group
** "HAOKE_RETRY_CONSUMER" whose listener always answers RECONSUME_LATER.
** Each failure sends the message back to %RETRY%HAOKE_RETRY_CONSUMER through
** a delay level (here level 1, 1 s, set through the context; RocketMQ's
** default is 3 + reconsumeTimes, 10 s and up), and it comes again with
** reconsumeTimes + 1. After max_reconsume_times (2 here, 16 by default) it
** goes to %DLQ%HAOKE_RETRY_CONSUMER, which is then read with a pull consumer.
**
** rmq.h entries used: rmq_push_consumer_options_init (max_reconsume_times),
** rmq_consume_concurrently_context.delay_level_when_next_consume,
** rmq_pull_consumer_create / _pull, rmq_message_ext_property,
** rmq_message_ext_format.
*/
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "examples.h"

#define RETRY_TOPIC "haoke_retry_topic"
#define RETRY_GROUP "HAOKE_RETRY_CONSUMER"
#define WAIT_MS 10000

typedef struct retry_ctx {
  pthread_mutex_t mu;
  int deliveries;
} retry_ctx;

static int always_fail(void *arg, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  retry_ctx *ctx = arg;
  pthread_mutex_lock(&ctx->mu);
  for (size_t i = 0; i < n; i++) {
    printf("消费失败 (consume failed): %.*s, reconsumeTimes=%d, topic=%s\n", (int)msgs[i]->body_len,
           (const char *)msgs[i]->body, msgs[i]->reconsume_times, msgs[i]->topic);
    ctx->deliveries++;
  }
  pthread_mutex_unlock(&ctx->mu);
  cc->delay_level_when_next_consume = 1; /* retry after level 1 (1 s) */
  return RMQ_RECONSUME_LATER;
}

/* The DLQ's messages from `from` on; returns how many were printed. */
static int print_dlq(rmq_broker *b, int64_t *next, demo_stats *st)
{
  rmq_pull_consumer *pc = NULL;
  int rc = rmq_pull_consumer_create(b, "HAOKE_DLQ_READER", &pc);
  if (rc != RMQ_OK) return demo_error("rmq_pull_consumer_create", rc), 0;
  rmq_message_queue mq;
  memset(&mq, 0, sizeof mq);
  snprintf(mq.topic, sizeof mq.topic, "%%DLQ%%%s", RETRY_GROUP);
  rmq_pull_result r;
  int n = 0;
  if (rmq_pull_consumer_pull(pc, &mq, "*", *next, 32, &r) == RMQ_OK && r.pull_status == RMQ_PULL_FOUND) {
    for (size_t i = 0; i < r.n; i++) {
      const char *v;
      size_t vl;
      char text[2048];
      rmq_message_ext_format(&r.msgs[i], text, sizeof text);
      printf("死信 (dead letter): %s\n", text);
      if (rmq_message_ext_property(&r.msgs[i], "RETRY_TOPIC", &v, &vl) == RMQ_OK)
        printf("  原主题 (original topic): %.*s, reconsumeTimes=%d\n", (int)vl, v, r.msgs[i].reconsume_times);
      n++;
    }
    *next = r.next_begin_offset;
    st->received += n;
    st->received_pull += n;
  }
  rmq_pull_consumer_destroy(pc);
  return n;
}

int retry_consumer(rmq_broker *b, demo_stats *st)
{
  retry_ctx ctx = {PTHREAD_MUTEX_INITIALIZER, 0};
  rmq_push_consumer *c = NULL;
  rmq_producer *p = NULL;
  rmq_msg *m = NULL;
  int64_t dlq_from = 0, mn, mx;
  char dlq[160];
  snprintf(dlq, sizeof dlq, "%%DLQ%%%s", RETRY_GROUP);
  if (rmq_topic_queue_offsets(b, dlq, 0, &mn, &mx) == RMQ_OK) dlq_from = mx; /* this run's only */
  rmq_push_consumer_options o;
  rmq_push_consumer_options_init(&o);
  o.max_reconsume_times = 2;
  int rc = rmq_push_consumer_create(b, RETRY_GROUP, &o, &c);
  if (rc == RMQ_OK) rc = rmq_push_consumer_subscribe(c, RETRY_TOPIC, "*");
  if (rc == RMQ_OK) rc = rmq_push_consumer_register_listener_concurrently(c, always_fail, &ctx);
  if (rc == RMQ_OK) rc = rmq_push_consumer_start(c);
  if (rc == RMQ_OK) rc = rmq_producer_create(b, "HAOKE_RETRY_PRODUCER", NULL, &p);
  static const char body[] = "这条消息总是失败 (this message always fails)";
  if (rc == RMQ_OK) rc = rmq_msg_create(&m, RETRY_TOPIC, "retry", body, strlen(body));
  if (rc == RMQ_OK) rc = rmq_producer_send(p, m, NULL);
  if (rc != RMQ_OK) {
    demo_error("retry_consumer setup", rc);
    goto out;
  }
  st->sent++;
  int got = 0;
  for (int waited = 0; waited < WAIT_MS && !got; waited += 50) {
    usleep(50000);
    if (rmq_topic_queue_offsets(b, dlq, 0, &mn, &mx) == RMQ_OK && mx > dlq_from) got = 1;
  }
  rmq_push_consumer_destroy(c);
  c = NULL;
  int n = print_dlq(b, &dlq_from, st);
  printf("retry: %d deliveries (1 + max_reconsume_times 2), %d message(s) in %s\n", ctx.deliveries, n, dlq);
  st->received += ctx.deliveries;
  st->received_push += ctx.deliveries;
  if (n != 1 || ctx.deliveries != 3) rc = RMQ_ETIMEDOUT;
out:
  rmq_push_consumer_destroy(c);
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  return rc;
}
