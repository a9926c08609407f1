/*
** order_producer.c -- the quick start's OrderProducer: 100 messages over 10
** order ids to "haoke_order_topic", tag "ORDER_MSG", each sent with a queue
** selector that picks queue `orderId % queues`, so one order's messages sit
** in one queue in the order they were sent. Prints each SendResult.
**
** rmq.h entries used: rmq_producer_create, rmq_msg_create, rmq_msg_set_body,
** rmq_producer_send_select (rmq_queue_selector), rmq_send_result_format,
** rmq_producer_destroy.
*/
#include <stdio.h>
#include <string.h>

#include "examples.h"

/* (mqs, msg, arg) -> mqs.get(orderId % mqs.size()) */
static int select_by_order_id(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  (void)mqs;
  (void)m;
  int order_id = *(const int *)arg;
  return order_id % (int)n;
}

int order_producer(rmq_broker *b, demo_stats *st)
{
  rmq_producer *producer = NULL;
  rmq_msg *message = NULL;
  /* new DefaultMQProducer("HAOKE_ORDER_PRODUCER"); producer.start(); */
  int rc = rmq_producer_create(b, "HAOKE_ORDER_PRODUCER", NULL, &producer);
  if (rc != RMQ_OK) return demo_error("rmq_producer_create", rc);
  rc = rmq_msg_create(&message, DEMO_ORDER_TOPIC, "ORDER_MSG", NULL, 0);
  if (rc != RMQ_OK) {
    demo_error("rmq_msg_create", rc);
    goto out;
  }
  for (int i = 0; i < DEMO_ORDER_MESSAGES; i++) {
    int order_id = i % DEMO_ORDER_IDS; /* 模拟生成订单id: a made-up order id */
    char body[64];
    snprintf(body, sizeof body, "order --> %d, id = %d", i, order_id);
    if ((rc = rmq_msg_set_body(message, body, strlen(body))) != RMQ_OK) {
      demo_error("rmq_msg_set_body", rc);
      goto out;
    }
    rmq_send_result r;
    rc = rmq_producer_send_select(producer, message, select_by_order_id, &order_id, &r);
    if (rc != RMQ_OK) {
      demo_error("rmq_producer_send_select", rc);
      goto out;
    }
    char line[1024];
    rmq_send_result_format(&r, line, sizeof line);
    printf("%s\n", line);
    st->sent++;
    st->order_sent++;
  }
out:
  rmq_msg_free(message);
  rmq_producer_destroy(producer);
  return rc;
}
