/*
** consumer_demo.c -- the quick start's ConsumerDemo: a push consumer of
** group "haoke-consumer" on "my-topic" with the tag filter "add || update".
**
** For every batch the listener prints each body ("消息:" = message) and then
** the list of MessageExt.toString() ("接收到消息 -> [...]" = received), as the
** Java listener does. The Java program runs until killed; this one stops
** once it has received the messages this run's producers sent that match
** its subscription (their msgIds are in demo_stats), or after a few seconds.
** The group's offsets are stored in the store directory, so a second run
** starts where the first stopped and only gets the new messages.
**
** rmq.h entries used: rmq_push_consumer_options_init, rmq_push_consumer_create,
** rmq_push_consumer_subscribe, rmq_push_consumer_register_listener_concurrently
** (rmq_listener_concurrently, rmq_message_ext), rmq_push_consumer_start,
** rmq_push_consumer_shutdown / rmq_push_consumer_destroy,
** rmq_message_ext_format, rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "examples.h"

/* How long to wait for the expected messages, and how long to listen when
** this run sent none (rmq-demo consumer on its own). */
#define WAIT_EXPECTED_MS 5000
#define LISTEN_ALONE_MS 2000

typedef struct listener_ctx {
  pthread_mutex_t mu;        /* guards everything below */
  pthread_cond_t cond;       /* signalled when an expected message arrives */
  const demo_stats *st;      /* expected msgIds; read-only while started */
  int seen[DEMO_MAX_EXPECTED];
  int nseen;
  int received;
} listener_ctx;

/* Prints m as MessageExt.toString(); the text of a small message fits the
** stack buffer, a bigger one gets a heap buffer of the size needed. */
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

/* MessageListenerConcurrently.consumeMessage. Runs on the consumer's
** threads, several at once: printing holds stdout's lock so batches do not
** interleave, counting holds ctx->mu. The views die when it returns. */
static int consume_message(void *arg, const rmq_message_ext *const *msgs, size_t n,
                           rmq_consume_concurrently_context *cc)
{
  listener_ctx *ctx = arg;
  (void)cc;
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

  pthread_mutex_lock(&ctx->mu);
  ctx->received += (int)n;
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < ctx->st->nexpected; k++)
      if (!ctx->seen[k] && strcmp(msgs[i]->msg_id, ctx->st->expected[k]) == 0) {
        ctx->seen[k] = 1;
        ctx->nseen++;
      }
  pthread_cond_signal(&ctx->cond);
  pthread_mutex_unlock(&ctx->mu);
  return RMQ_CONSUME_SUCCESS;
}

int consumer_demo(rmq_broker *b, demo_stats *st)
{
  rmq_push_consumer *consumer = NULL;
  listener_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.st = st;
  pthread_mutex_init(&ctx.mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ctx.cond, &ca);
  pthread_condattr_destroy(&ca);

  /* new DefaultMQPushConsumer("haoke-consumer");
  ** consumer.setMessageModel(MessageModel.CLUSTERING); */
  rmq_push_consumer_options o;
  rmq_push_consumer_options_init(&o);
  o.message_model = RMQ_CLUSTERING;
  int rc = rmq_push_consumer_create(b, "haoke-consumer", &o, &consumer);
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_create", rc);
    goto out_ctx;
  }

  /* consumer.subscribe("my-topic", "add || update"); */
  rc = rmq_push_consumer_subscribe(consumer, DEMO_TOPIC, "add || update");
  if (rc != RMQ_OK) {
    demo_error("rmq_push_consumer_subscribe", rc);
    goto out_consumer;
  }
  /* consumer.registerMessageListener(new MessageListenerConcurrently() {...}); */
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

  /* Wait (bounded) until every expected message arrived. */
  int wait_ms = st->nexpected > 0 ? WAIT_EXPECTED_MS : LISTEN_ALONE_MS;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += wait_ms / 1000;
  deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  int timed_out = 0;
  pthread_mutex_lock(&ctx.mu);
  while ((st->nexpected == 0 || ctx.nseen < st->nexpected) && !timed_out)
    timed_out = pthread_cond_timedwait(&ctx.cond, &ctx.mu, &deadline) != 0;
  int nseen = ctx.nseen;
  pthread_mutex_unlock(&ctx.mu);

  /* consumer.shutdown(): waits for running listeners and stores the
  ** group's offsets, so the next run starts after what was consumed. */
  rmq_push_consumer_shutdown(consumer);
  st->received_push += ctx.received;
  st->received += ctx.received;
  if (st->nexpected > 0 && nseen < st->nexpected) {
    fprintf(stderr, "consumer_demo: got %d of the %d expected messages in %d ms\n", nseen, st->nexpected,
            wait_ms);
    rc = RMQ_ETIMEDOUT;
  }

out_consumer:
  rmq_push_consumer_destroy(consumer);
out_ctx:
  pthread_cond_destroy(&ctx.cond);
  pthread_mutex_destroy(&ctx.mu);
  return rc;
}
