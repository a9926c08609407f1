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
** rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <stdio.h>

#include "examples.h"

/* How long to wait for the expected messages, and how long to listen when
** this run sent none (rmq-demo consumer on its own). */
#define WAIT_EXPECTED_MS 5000
#define LISTEN_ALONE_MS 2000

/* MessageListenerConcurrently.consumeMessage. Runs on the consumer's
** threads, several at once; the views die when it returns. */
static int consume_message(void *arg, const rmq_message_ext *const *msgs, size_t n,
                           rmq_consume_concurrently_context *cc)
{
  (void)cc;
  demo_print_received(msgs, n);
  demo_expect_note(arg, msgs, n);
  return RMQ_CONSUME_SUCCESS;
}

int consumer_demo(rmq_broker *b, demo_stats *st)
{
  rmq_push_consumer *consumer = NULL;
  demo_expect ctx;
  demo_expect_init(&ctx, (const char (*)[RMQ_MSG_ID_SIZE])st->expected, st->nexpected);

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
  int nseen = demo_expect_wait(&ctx, wait_ms);

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
  demo_expect_destroy(&ctx);
  return rc;
}
