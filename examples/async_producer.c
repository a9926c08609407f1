/*
** async_producer.c -- the quick start's AsyncProducer: send one message
** without waiting; a callback reports the result.
**
** As in the Java original the message has no tag, so ConsumerDemo's
** "add || update" subscription filters it out (the pull consumer, reading
** "*", gets it). The callback prints what Java's onSuccess prints ("发送成功了!"
** = sent successfully, then msgId, message queue and queue offset) or what
** onException prints ("消息发送失败!" = sending failed).
**
** rmq.h entries used: rmq_producer_create / rmq_producer_destroy,
** rmq_msg_create / rmq_msg_free, rmq_producer_send_async
** (rmq_send_callback), rmq_send_result_format, rmq_errstr / rmq_errmsg.
*/
#include <stdio.h>
#include <string.h>

#include "examples.h"

/* SendCallback. Runs on the sending thread under ASYNC_FLUSH, or on an rmq
** thread once the flush is done under SYNC_FLUSH; rmq_producer_destroy()
** waits for it either way. */
static void on_send_complete(void *ctx, int rc, const rmq_send_result *r)
{
  demo_stats *st = ctx;
  if (rc != RMQ_OK) {
    /* onException(Throwable e) */
    printf("消息发送失败!%s\n", rmq_errstr(rc));
    return;
  }
  /* onSuccess(SendResult sendResult) */
  st->sent++;
  char line[1024];
  if (rmq_send_result_format(r, line, sizeof line) < 0) {
    demo_error("rmq_send_result_format", RMQ_EINVAL);
    return;
  }
  printf("发送成功了!%s\n", line);
  printf("消息id：%s\n", r->msg_id);
  printf("消息队列：MessageQueue [topic=%s, brokerName=%s, queueId=%d]\n", r->message_queue.topic,
         r->message_queue.broker_name, r->message_queue.queue_id);
  printf("消息offset值：%lld\n", (long long)r->queue_offset);
}

int async_producer(rmq_broker *b, demo_stats *st)
{
  rmq_producer *producer = NULL;
  rmq_msg *message = NULL;

  int rc = rmq_producer_create(b, "haoke", NULL, &producer);
  if (rc != RMQ_OK) return demo_error("rmq_producer_create", rc);

  /* new Message("my-topic", msg.getBytes("UTF-8")): no tag. */
  const char *msg = "我的第一个异步发送消息!";
  rc = rmq_msg_create(&message, DEMO_TOPIC, NULL, msg, strlen(msg));
  if (rc != RMQ_OK) {
    demo_error("rmq_msg_create", rc);
    goto out_producer;
  }

  /* producer.send(message, new SendCallback() {...}). The record is stored
  ** before this returns; errors found before storing come back here and
  ** the callback is not called. */
  rc = rmq_producer_send_async(producer, message, on_send_complete, st);
  if (rc != RMQ_OK) demo_error("rmq_producer_send_async", rc);

  rmq_msg_free(message);
out_producer:
  /* The Java example leaves producer.shutdown() commented out so the JVM
  ** lives until the callback ran; rmq_producer_destroy() waits for pending
  ** callbacks itself. */
  rmq_producer_destroy(producer);
  return rc;
}
