/*
** examples.h -- what the quick-start ports in examples/ share.
**
** Each example is one RocketMQ 4.x quick-start program (TopicDemo,
** SyncProducer, AsyncProducer, ConsumerDemo, a pull consumer, OrderProducer,
** OrderConsumer, the filter producer, ConsumerFilter and the transaction
** producer with its listener and consumer) turned into a
** function that takes an open broker: with rmq there is no NameServer to
** point at, the store directory is the broker. demo.c opens one broker and
** runs them (rmq-demo <name>|all).
*/
#ifndef RMQ_EXAMPLES_H
#define RMQ_EXAMPLES_H

#include <pthread.h>

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
  /* msgIds FilterProducer sent in this run that ConsumerFilter's SQL92
  ** selector (sex='女' AND age>=18) matches. */
  char filter_expected[DEMO_MAX_EXPECTED][RMQ_MSG_ID_SIZE];
  int nfilter_expected;
} demo_stats;

/* ConsumerFilter's topic and selector, as in the quick start. */
#define DEMO_FILTER_TOPIC "my-topic-filter"
#define DEMO_FILTER_SQL "sex='女' AND age>=18"

/* A push listener's bookkeeping: which of a run's expected msgIds it has
** seen, so the example can stop once they all came (the Java consumers run
** until killed). Listener threads call demo_expect_note; the example's
** thread waits in demo_expect_wait. */
typedef struct demo_expect {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  const char (*ids)[RMQ_MSG_ID_SIZE];
  int n;
  int seen[DEMO_MAX_EXPECTED];
  int nseen;
  int received;
} demo_expect;
void demo_expect_init(demo_expect *w, const char (*ids)[RMQ_MSG_ID_SIZE], int n);
void demo_expect_note(demo_expect *w, const rmq_message_ext *const *msgs, size_t n);
/* Waits until every expected msgId was seen, at most wait_ms; returns how
** many were seen (with none expected, it just listens for wait_ms). */
int demo_expect_wait(demo_expect *w, int wait_ms);
void demo_expect_destroy(demo_expect *w);

/* What SyncProducer prints for a SendResult: the msgId ("消息id"), the
** queue ("消息队列"), the queue offset ("消息offset值"), then
** SendResult.toString(). Returns RMQ_OK or the format error. */
int demo_print_send_result(const rmq_send_result *r);

/* What the Java listeners print for a batch: each body ("消息:" = message),
** then the list of MessageExt.toString() ("接收到消息 -> [...]" = received).
** Holds stdout's lock, so batches of concurrent listeners do not interleave. */
void demo_print_received(const rmq_message_ext *const *msgs, size_t n);

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
int transaction_producer(rmq_broker *b, demo_stats *st);
int order_consumer(rmq_broker *b, demo_stats *st);
int broadcast_consumer(rmq_broker *b, demo_stats *st);
int retry_consumer(rmq_broker *b, demo_stats *st);
int filter_producer(rmq_broker *b, demo_stats *st);
int consumer_filter(rmq_broker *b, demo_stats *st);

#endif /* RMQ_EXAMPLES_H */
