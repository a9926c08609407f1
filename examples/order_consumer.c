/*
** order_consumer.c -- the quick start's OrderConsumer: a push consumer of
** group "HAOKE_ORDER_CONSUMER" on "haoke_order_topic" with an orderly
** listener, which prints "<thread> <queueId> <body>" per message. One thread
** at a time consumes a queue, in queue order, so each order id's messages
** come in the order OrderProducer sent them; this port also checks that and
** says so. The Java program runs until killed; this one stops when it has
** the messages OrderProducer sent in this run (or after a few seconds).
**
** rmq.h entries used: rmq_push_consumer_options_init, rmq_push_consumer_create,
** rmq_push_consumer_subscribe, rmq_push_consumer_register_listener_orderly
** (rmq_listener_orderly, rmq_consume_orderly_context), rmq_push_consumer_start,
** rmq_push_consumer_shutdown / rmq_push_consumer_destroy.
*/
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "examples.h"

#define WAIT_MS 5000

typedef struct order_ctx {
  pthread_mutex_t mu;          /* guards everything below */
  int received;
  int last_seq[DEMO_ORDER_IDS]; /* the last "order --> i" seen per order id, -1 before */
  int out_of_order;
} order_ctx;

/* A small stable number for the calling thread, as Java prints its name. */
static unsigned long thread_no(void)
{
  static __thread unsigned long no;
  static unsigned long next;
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  if (!no) {
    pthread_mutex_lock(&mu);
    no = ++next;
    pthread_mutex_unlock(&mu);
  }
  return no;
}

/* MessageListenerOrderly.consumeMessage */
static int consume_orderly(void *arg, const rmq_message_ext *const *msgs, size_t n, rmq_consume_orderly_context *oc)
{
  order_ctx *ctx = arg;
  (void)oc;
  for (size_t i = 0; i < n; i++) {
    printf("ConsumeMessageThread_%lu %d %.*s\n", thread_no(), msgs[i]->queue_id, (int)msgs[i]->body_len,
           (const char *)msgs[i]->body);
    int seq, id;
    char body[64];
    int len = msgs[i]->body_len < 63 ? msgs[i]->body_len : 63;
    memcpy(body, msgs[i]->body, (size_t)len);
    body[len] = 0;
    pthread_mutex_lock(&ctx->mu);
    if (sscanf(body, "order --> %d, id = %d", &seq, &id) == 2 && id >= 0 && id < DEMO_ORDER_IDS) {
      if (seq <= ctx->last_seq[id]) ctx->out_of_order++;
      ctx->last_seq[id] = seq;
    }
    ctx->received++;
    pthread_mutex_unlock(&ctx->mu);
  }
  return RMQ_CONSUME_SUCCESS;
}

int order_consumer(rmq_broker *b, demo_stats *st)
{
  order_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  pthread_mutex_init(&ctx.mu, NULL);
  for (int i = 0; i < DEMO_ORDER_IDS; i++) ctx.last_seq[i] = -1;
  rmq_push_consumer *consumer = NULL;
  /* new DefaultMQPushConsumer("HAOKE_ORDER_CONSUMER"); */
  int rc = rmq_push_consumer_create(b, "HAOKE_ORDER_CONSUMER", NULL, &consumer);
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_create", rc);
    goto out;
  }
  /* consumer.subscribe("haoke_order_topic", "*"); */
  if ((rc = rmq_push_consumer_subscribe(consumer, DEMO_ORDER_TOPIC, "*")) != RMQ_OK) {
    demo_error("rmq_push_consumer_subscribe", rc);
    goto out;
  }
  /* consumer.registerMessageListener(new MessageListenerOrderly() {...}); */
  if ((rc = rmq_push_consumer_register_listener_orderly(consumer, consume_orderly, &ctx)) != RMQ_OK) {
    demo_error("rmq_push_consumer_register_listener_orderly", rc);
    goto out;
  }
  if ((rc = rmq_push_consumer_start(consumer)) != RMQ_OK) {
    demo_error("rmq_push_consumer_start", rc);
    goto out;
  }
  int want = st->order_sent;
  for (int waited = 0; waited < (want ? WAIT_MS : 1000); waited += 10) {
    pthread_mutex_lock(&ctx.mu);
    int got = ctx.received;
    pthread_mutex_unlock(&ctx.mu);
    if (want && got >= want) break;
    usleep(10000);
  }
  rmq_push_consumer_shutdown(consumer);
  printf("order ids: %d, messages: %d, each id's messages in send order: %s\n", DEMO_ORDER_IDS, ctx.received,
         ctx.out_of_order ? "NO" : "yes");
  st->received += ctx.received;
  st->received_push += ctx.received;
  if (ctx.out_of_order || (want && ctx.received < want)) rc = RMQ_ETIMEDOUT;
out:
  rmq_push_consumer_destroy(consumer);
  pthread_mutex_destroy(&ctx.mu);
  return rc;
}
