/*
** broadcast_consumer.c -- the quick start's message models, broadcasting
** side: two consumers of group "HAOKE_IM" with
** consumer.setMessageModel(MessageModel.BROADCASTING) each receive every
** message of "haoke_im_topic" (with CLUSTERING they would share them). Each
** keeps its own offsets (RocketMQ keeps them on the client side; rmq in
** config/broadcastOffset.<clientId>.HAOKE_IM.json), so a second run gets
** only the new messages.
**
** rmq.h entries used: rmq_push_consumer_options_init (message_model,
** instance_name), rmq_push_consumer_create, _subscribe,
** _register_listener_concurrently, _start, _destroy; rmq_producer_create,
** rmq_producer_send, rmq_msg_create / rmq_msg_free.
*/
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "examples.h"

#define BC_TOPIC "haoke_im_topic"
#define BC_MESSAGES 4
#define WAIT_MS 5000

typedef struct im_client {
  const char *name;
  pthread_mutex_t mu;
  int received;
} im_client;

static int on_im_message(void *arg, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  im_client *cl = arg;
  (void)cc;
  pthread_mutex_lock(&cl->mu);
  for (size_t i = 0; i < n; i++) {
    printf("%s 收到 (received): %.*s\n", cl->name, (int)msgs[i]->body_len, (const char *)msgs[i]->body);
    cl->received++;
  }
  pthread_mutex_unlock(&cl->mu);
  return RMQ_CONSUME_SUCCESS;
}

int broadcast_consumer(rmq_broker *b, demo_stats *st)
{
  im_client cl[2] = {{"im-1", PTHREAD_MUTEX_INITIALIZER, 0}, {"im-2", PTHREAD_MUTEX_INITIALIZER, 0}};
  rmq_push_consumer *c[2] = {NULL, NULL};
  rmq_producer *p = NULL;
  rmq_msg *m = NULL;
  int rc;
  for (int i = 0; i < 2; i++) {
    rmq_push_consumer_options o;
    rmq_push_consumer_options_init(&o);
    o.message_model = RMQ_BROADCASTING; /* consumer.setMessageModel(MessageModel.BROADCASTING); */
    o.instance_name = cl[i].name;       /* each its own client id, so each its own offsets */
    if ((rc = rmq_push_consumer_create(b, "HAOKE_IM", &o, &c[i])) != RMQ_OK) {
      demo_error("rmq_push_consumer_create", rc);
      goto out;
    }
    if ((rc = rmq_push_consumer_subscribe(c[i], BC_TOPIC, "*")) != RMQ_OK ||
        (rc = rmq_push_consumer_register_listener_concurrently(c[i], on_im_message, &cl[i])) != RMQ_OK ||
        (rc = rmq_push_consumer_start(c[i])) != RMQ_OK) {
      demo_error("rmq_push_consumer_subscribe/register/start", rc);
      goto out;
    }
  }
  if ((rc = rmq_producer_create(b, "HAOKE_IM_PRODUCER", NULL, &p)) != RMQ_OK ||
      (rc = rmq_msg_create(&m, BC_TOPIC, NULL, NULL, 0)) != RMQ_OK) {
    demo_error("rmq_producer_create/rmq_msg_create", rc);
    goto out;
  }
  for (int i = 0; i < BC_MESSAGES; i++) {
    char body[64];
    snprintf(body, sizeof body, "广播消息 (broadcast message) %d", i);
    if ((rc = rmq_msg_set_body(m, body, strlen(body))) != RMQ_OK || (rc = rmq_producer_send(p, m, NULL)) != RMQ_OK) {
      demo_error("rmq_producer_send", rc);
      goto out;
    }
    st->sent++;
  }
  for (int waited = 0; waited < WAIT_MS; waited += 10) {
    int done = 1;
    for (int i = 0; i < 2; i++) {
      pthread_mutex_lock(&cl[i].mu);
      done &= cl[i].received >= BC_MESSAGES;
      pthread_mutex_unlock(&cl[i].mu);
    }
    if (done) break;
    usleep(10000);
  }
out:
  for (int i = 0; i < 2; i++) rmq_push_consumer_destroy(c[i]); /* joins their threads */
  rmq_msg_free(m);
  rmq_producer_destroy(p);
  if (rc == RMQ_OK) {
    printf("broadcasting: im-1 got %d, im-2 got %d of the %d messages sent\n", cl[0].received, cl[1].received,
           BC_MESSAGES);
    if (cl[0].received < BC_MESSAGES || cl[1].received < BC_MESSAGES) rc = RMQ_ETIMEDOUT;
  }
  st->received += cl[0].received + cl[1].received;
  st->received_push += cl[0].received + cl[1].received;
  return rc;
}
