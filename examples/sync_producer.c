/*
** sync_producer.c -- the quick start's SyncProducer: send one message with
** tag "add" and wait for the result.
**
** Java prints, in this order: the msgId, the message queue, the queue
** offset, then SendResult.toString(); so does this port, with the same
** labels ("消息id" = message id, "消息队列" = message queue, "消息offset值" =
** queue offset).
**
** rmq.h entries used: rmq_producer_create / rmq_producer_destroy,
** rmq_msg_create / rmq_msg_free, rmq_producer_send (rmq_send_result),
** rmq_send_result_format (demo_print_send_result), rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <stdio.h>
#include <string.h>

#include "examples.h"

int sync_producer(rmq_broker *b, demo_stats *st)
{
  rmq_producer *producer = NULL;
  rmq_msg *message = NULL;

  /* new DefaultMQProducer("haoke"); producer.start(); */
  int rc = rmq_producer_create(b, "haoke", NULL, &producer);
  if (rc != RMQ_OK) return demo_error("rmq_producer_create", rc);

  /* new Message("my-topic", "add", msg.getBytes("UTF-8")): the body is the
  ** string's UTF-8 bytes, without a terminating NUL. */
  const char *msg = "我的第一个消息-add!";
  rc = rmq_msg_create(&message, DEMO_TOPIC, "add", msg, strlen(msg));
  if (rc != RMQ_OK) {
    demo_error("rmq_msg_create", rc);
    goto out_producer;
  }

  /* producer.send(message): returns once the message is stored (and, under
  ** SYNC_FLUSH, on disk). */
  rmq_send_result r;
  rc = rmq_producer_send(producer, message, &r);
  if (rc != RMQ_OK) {
    demo_error("rmq_producer_send", rc);
    goto out_msg;
  }
  if (r.send_status != RMQ_SEND_OK)
    printf("note: send status %d (stored, but not confirmed on disk in time)\n", r.send_status);
  st->sent++;
  /* ConsumerDemo subscribes "add || update": it must get this one. */
  if (st->nexpected < DEMO_MAX_EXPECTED)
    memcpy(st->expected[st->nexpected++], r.msg_id, RMQ_MSG_ID_SIZE);

  rc = demo_print_send_result(&r);

out_msg:
  rmq_msg_free(message);
out_producer:
  /* producer.shutdown(); */
  rmq_producer_destroy(producer);
  return rc;
}
