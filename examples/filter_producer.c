/*
** filter_producer.c -- the producer of the quick start's filter section: a
** SyncProducer that sends to "my-topic-filter" with tag "delete" and the
** user properties sex and age (message.putUserProperty("sex", "女")).
**
** The Java program sends one message per run (sex=女, age=21, and the
** seed's consumer shows three such runs); this port sends a few people in
** one run, so ConsumerFilter's SQL92 selector (sex='女' AND age>=18) has
** something to keep and something to skip. It prints what the Java one
** does for each: msgId, queue, queue offset and SendResult.
**
** rmq.h entries used: rmq_producer_create / rmq_producer_destroy,
** rmq_msg_create / rmq_msg_free, rmq_msg_put_user_property,
** rmq_producer_send (rmq_send_result), rmq_send_result_format,
** rmq_errstr / rmq_errmsg (through demo_error).
*/
#include <stdio.h>
#include <string.h>

#include "examples.h"

typedef struct person {
  const char *body;
  const char *sex;
  const char *age;
  int matches; /* does sex='女' AND age>=18 select it */
} person;

static const person people[] = {
  {"美女001", "女", "17", 0},
  {"美女002", "女", "21", 1},
  {"帅哥001", "男", "25", 0},
  {"美女003", "女", "22", 1},
  {"美女004", "女", "23", 1},
  {"路人001", NULL, "30", 0}, /* no sex property: the selector is null, not delivered */
};

int filter_producer(rmq_broker *b, demo_stats *st)
{
  rmq_producer *producer = NULL;
  /* new DefaultMQProducer("haoke"); producer.start(); */
  int rc = rmq_producer_create(b, "haoke", NULL, &producer);
  if (rc != RMQ_OK) return demo_error("rmq_producer_create", rc);

  for (size_t i = 0; i < sizeof people / sizeof people[0]; i++) {
    const person *who = &people[i];
    rmq_msg *message = NULL;
    /* new Message("my-topic-filter", "delete", msg.getBytes("UTF-8")); */
    rc = rmq_msg_create(&message, DEMO_FILTER_TOPIC, "delete", who->body, strlen(who->body));
    if (rc != RMQ_OK) {
      demo_error("rmq_msg_create", rc);
      break;
    }
    /* message.putUserProperty("sex", "女"); message.putUserProperty("age", "21"); */
    if (who->sex && (rc = rmq_msg_put_user_property(message, "sex", who->sex)) != RMQ_OK) {
      demo_error("rmq_msg_put_user_property", rc);
      rmq_msg_free(message);
      break;
    }
    if ((rc = rmq_msg_put_user_property(message, "age", who->age)) != RMQ_OK) {
      demo_error("rmq_msg_put_user_property", rc);
      rmq_msg_free(message);
      break;
    }
    /* SendResult sendResult = producer.send(message); */
    rmq_send_result r;
    rc = rmq_producer_send(producer, message, &r);
    rmq_msg_free(message);
    if (rc != RMQ_OK) {
      demo_error("rmq_producer_send", rc);
      break;
    }
    st->sent++;
    if (who->matches && st->nfilter_expected < DEMO_MAX_EXPECTED)
      memcpy(st->filter_expected[st->nfilter_expected++], r.msg_id, RMQ_MSG_ID_SIZE);

    if ((rc = demo_print_send_result(&r)) != RMQ_OK) break;
  }

  /* producer.shutdown(); */
  rmq_producer_destroy(producer);
  return rc;
}
