/*
** pull_consumer.c -- a pull consumer, as in RocketMQ's PullConsumer example:
** list the queues of "my-topic", pull each one in batches of 32 until it has
** no new message, print every message, and store where the next pull
** starts.
**
** The Java example keeps its offsets in a local map starting at 0. Here the
** group "haoke-pull-consumer" stores them in the broker (persisted with the
** store), so the first run reads every queue from offset 0 and a later run
** continues after what the previous one read. The expression is "*": this
** consumer also gets AsyncProducer's untagged message.
**
** rmq.h entries used: rmq_pull_consumer_create / rmq_pull_consumer_destroy,
** rmq_pull_consumer_fetch_subscribe_message_queues (rmq_message_queue),
** rmq_pull_consumer_fetch_consume_offset, rmq_pull_consumer_pull
** (rmq_pull_result, rmq_message_ext), rmq_pull_consumer_update_consume_offset,
** rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <stdio.h>
#include <stdlib.h>

#include "examples.h"

int pull_consumer(rmq_broker *b, demo_stats *st)
{
  rmq_pull_consumer *consumer = NULL;
  rmq_message_queue *mqs = NULL;

  int rc = rmq_pull_consumer_create(b, "haoke-pull-consumer", &consumer);
  if (rc != RMQ_OK) return demo_error("rmq_pull_consumer_create", rc);

  /* consumer.fetchSubscribeMessageQueues("my-topic"): count, then fill. */
  size_t n = 0;
  rc = rmq_pull_consumer_fetch_subscribe_message_queues(consumer, DEMO_TOPIC, NULL, 0, &n);
  if (rc != RMQ_OK) {
    demo_error("rmq_pull_consumer_fetch_subscribe_message_queues", rc);
    goto out_consumer;
  }
  mqs = calloc(n ? n : 1, sizeof *mqs);
  if (!mqs) {
    rc = demo_error("calloc", RMQ_ENOMEM);
    goto out_consumer;
  }
  rc = rmq_pull_consumer_fetch_subscribe_message_queues(consumer, DEMO_TOPIC, mqs, n, &n);
  if (rc != RMQ_OK) {
    demo_error("rmq_pull_consumer_fetch_subscribe_message_queues", rc);
    goto out_mqs;
  }

  int total = 0;
  for (size_t i = 0; i < n; i++) {
    const rmq_message_queue *mq = &mqs[i];
    /* Where this group stopped last time; a new group starts at 0. */
    int64_t offset = 0;
    rc = rmq_pull_consumer_fetch_consume_offset(consumer, mq, &offset);
    if (rc == RMQ_ENOTFOUND) offset = 0;
    else if (rc != RMQ_OK) {
      demo_error("rmq_pull_consumer_fetch_consume_offset", rc);
      goto out_mqs;
    }
    int64_t first = offset;
    int got = 0;
    for (;;) {
      rmq_pull_result r;
      rc = rmq_pull_consumer_pull(consumer, mq, "*", offset, 32, &r);
      if (rc != RMQ_OK) {
        demo_error("rmq_pull_consumer_pull", rc);
        goto out_mqs;
      }
      if (r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
      /* FOUND: r.msgs[0..n) are views valid until the next pull. */
      for (size_t k = 0; k < r.n; k++) {
        const rmq_message_ext *m = &r.msgs[k];
        printf("pull: queueId=%d, queueOffset=%lld, msgId=%s, tags=%.*s, body=%.*s\n", m->queue_id,
               (long long)m->queue_offset, m->msg_id, m->tags ? (int)m->tags_len : 4,
               m->tags ? m->tags : "null", (int)m->body_len, (const char *)m->body);
        got++;
      }
      /* FOUND, NO_MATCHED_MSG and OFFSET_ILLEGAL all say where to go on. */
      offset = r.next_begin_offset;
      rc = rmq_pull_consumer_update_consume_offset(consumer, mq, offset);
      if (rc != RMQ_OK) {
        demo_error("rmq_pull_consumer_update_consume_offset", rc);
        goto out_mqs;
      }
    }
    if (got > 0)
      printf("pull: %s queueId=%d: %d message(s) from offset %lld, next offset %lld\n", mq->topic,
             mq->queue_id, got, (long long)first, (long long)offset);
    total += got;
  }
  printf("pull: %d message(s) from %zu queue(s) of %s\n", total, n, DEMO_TOPIC);
  st->received_pull += total;
  st->received += total;
  rc = RMQ_OK;

out_mqs:
  free(mqs);
out_consumer:
  /* Persists the stored offsets. */
  rmq_pull_consumer_destroy(consumer);
  return rc;
}
