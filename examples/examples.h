/*
** examples.h -- what the quick-start ports in examples/ share.
**
** Each example is one RocketMQ 4.x quick-start program (TopicDemo,
** SyncProducer, AsyncProducer, ConsumerDemo, a pull consumer, OrderProducer,
** OrderConsumer) turned into a
** function that takes an open broker: with rmq there is no NameServer to
** point at, the store directory is the broker. demo.c opens one broker and
** runs them (rmq-demo <name>|all).
*/
#ifndef RMQ_EXAMPLES_H
#define RMQ_EXAMPLES_H

#include "rmq.h"

/* The topic every example uses, as in the quick start. */
#define DEMO_TOPIC "my-topic"

/* OrderProducer / OrderConsumer: 100 messages over 10 order ids. */
#define DEMO_ORDER_TOPIC "haoke_order_topic"
#define DEMO_ORDER_MESSAGES 100
#define DEMO_ORDER_IDS 10

/* At most this many msgIds are remembered for the push consumer. */
#define DEMO_MAX_EXPECTED 16

/* What the examples of one run tell each other and the summary. */
typedef struct demo_stats {
  int sent;      /* messages stored by the producers in this run */
  int received;  /* messages handed to consumers (push and pull) in this run */
  int received_push;
  int received_pull;
  /* msgIds (UNIQ_KEY) sent in this run that ConsumerDemo's subscription
  ** ("add || update") matches: it stops once it has seen all of them. */
  char expected[DEMO_MAX_EXPECTED][RMQ_MSG_ID_SIZE];
  int nexpected;
  int order_sent; /* OrderProducer's messages in this run */
} demo_stats;

/* Prints "<what>: <rmq_errstr(rc)>: <rmq_errmsg()>" to stderr and returns
** rc. Call it right after the failed rmq call (rmq_errmsg() belongs to the
** thread's last call). */
int demo_error(const char *what, int rc);

/* The examples. Each returns RMQ_OK or the first failing call's code (after
** printing it with demo_error). */
int topic_demo(rmq_broker *b, demo_stats *st);
int sync_producer(rmq_broker *b, demo_stats *st);
int async_producer(rmq_broker *b, demo_stats *st);
int consumer_demo(rmq_broker *b, demo_stats *st);
int pull_consumer(rmq_broker *b, demo_stats *st);
int order_producer(rmq_broker *b, demo_stats *st);
int order_consumer(rmq_broker *b, demo_stats *st);
int broadcast_consumer(rmq_broker *b, demo_stats *st);
int retry_consumer(rmq_broker *b, demo_stats *st);

#endif /* RMQ_EXAMPLES_H */
