/*
** topic_demo.c -- the quick start's TopicDemo: create a topic with 8 queues.
**
** The Java version starts a producer against a NameServer and calls
** producer.createTopic("broker-...", topic, 8). Here the broker is the open
** store, so the topic is made on it directly.
**
** rmq.h entries used: rmq_topic_create, rmq_topic_list (rmq_topic_info),
** rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <stdio.h>
#include <stdlib.h>

#include "examples.h"

int topic_demo(rmq_broker *b, demo_stats *st)
{
  (void)st;
  /* Creating a topic that already exists with 8 queues changes nothing, so
  ** running the demo again on the same store is fine. */
  int rc = rmq_topic_create(b, DEMO_TOPIC, 8);
  if (rc != RMQ_OK) return demo_error("rmq_topic_create", rc);
  printf("topic created\n");

  /* Show the route table: every topic with its queue counts. A first call
  ** with no array gives the count. */
  size_t n = 0;
  rc = rmq_topic_list(b, NULL, 0, &n);
  if (rc != RMQ_OK) return demo_error("rmq_topic_list", rc);
  rmq_topic_info *topics = calloc(n ? n : 1, sizeof *topics);
  if (!topics) return demo_error("calloc", RMQ_ENOMEM);
  size_t got = 0;
  rc = rmq_topic_list(b, topics, n, &got);
  if (rc != RMQ_OK) {
    free(topics);
    return demo_error("rmq_topic_list", rc);
  }
  for (size_t i = 0; i < n && i < got; i++)
    printf("  topic %s: readQueueNums=%d, writeQueueNums=%d, perm=%d\n", topics[i].topic_name,
           topics[i].read_queue_nums, topics[i].write_queue_nums, topics[i].perm);
  free(topics);
  return RMQ_OK;
}
