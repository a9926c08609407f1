/*
** transaction_producer.c -- the quick start's distributed transaction:
** TransactionListenerImpl, TransactionProducer and TransactionConsumer.
**
** The producer (group "transaction_producer") sends three transfers of 500
** to "pay_topic" with sendMessageInTransaction. Each is stored as a half
** message, invisible to consumers, and the listener's local transaction
** runs: "A -500, B +500". Its answer decides:
**   - COMMIT_MESSAGE: the message reaches the consumer;
**   - ROLLBACK_MESSAGE: it never does;
**   - UNKNOW (the quick start's commented-out variant: the answer is lost):
**     the broker checks back (checkLocalTransaction) once the transaction
**     is transaction_timeout old, the listener looks the outcome up in its
**     STATE_MAP (COMMIT), and the message is delivered.
** The consumer (group "HAOKE_CONSUMER", "*") prints what it receives and
** stops once the two committed transfers came (the Java one runs until
** killed); the rolled-back one must not come.
**
** rmq.h entries used: rmq_producer_set_transaction_listener,
** rmq_producer_send_message_in_transaction, rmq_transaction_send_result,
** rmq_local_transaction_state_name, and the push consumer's.
*/
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "examples.h"

#define PAY_TOPIC "pay_topic"
#define WAIT_MS 15000

/* TransactionListenerImpl's STATE_MAP: transaction id -> final state. */
typedef struct state_map {
  pthread_mutex_t mu;
  char id[8][RMQ_MSG_ID_SIZE];
  int state[8];
  int n;
  int checks;
} state_map;

static void map_put(state_map *m, const char *id, int state)
{
  pthread_mutex_lock(&m->mu);
  if (m->n < 8) {
    snprintf(m->id[m->n], sizeof m->id[0], "%s", id);
    m->state[m->n++] = state;
  }
  pthread_mutex_unlock(&m->mu);
}

static int map_get(state_map *m, const char *id)
{
  int s = RMQ_UNKNOW;
  pthread_mutex_lock(&m->mu);
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->id[i], id)) s = m->state[i];
  pthread_mutex_unlock(&m->mu);
  return s;
}

/* executeLocalTransaction: the transfer, then the answer the demo's arg
** asks for (the Java example returns COMMIT_MESSAGE; its comments show the
** other two). The outcome itself is COMMIT unless rolled back. */
static int execute_local(void *ctx, const rmq_msg *msg, const char *transaction_id, void *arg)
{
  state_map *m = ctx;
  int answer = *(const int *)arg;
  (void)msg;
  printf("用户A账户减500元. (A -500, transaction %s)\n", transaction_id);
  usleep(50 * 1000); /* the service call (500 ms in the quick start) */
  printf("用户B账户加500元. (B +500)\n");
  map_put(m, transaction_id, answer == RMQ_ROLLBACK_MESSAGE ? RMQ_ROLLBACK_MESSAGE : RMQ_COMMIT_MESSAGE);
  return answer;
}

/* checkLocalTransaction: the broker asks about an undecided transaction. */
static int check_local(void *ctx, const rmq_message_ext *msg)
{
  state_map *m = ctx;
  int s = map_get(m, msg->msg_id);
  pthread_mutex_lock(&m->mu);
  m->checks++;
  pthread_mutex_unlock(&m->mu);
  printf("状态回查 ---> %s %s\n", msg->msg_id, rmq_local_transaction_state_name(s));
  return s;
}

typedef struct consumer_ctx {
  demo_expect *want;
  const char *rolled_back;
  int got_rolled_back;
} consumer_ctx;

static int on_message(void *arg, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  consumer_ctx *c = arg;
  (void)cc;
  for (size_t i = 0; i < n; i++) {
    printf("%.*s (transaction %s)\n", (int)msgs[i]->body_len, (const char *)msgs[i]->body, msgs[i]->msg_id);
    if (!strcmp(msgs[i]->msg_id, c->rolled_back)) c->got_rolled_back = 1;
  }
  demo_expect_note(c->want, msgs, n);
  return RMQ_CONSUME_SUCCESS;
}

int transaction_producer(rmq_broker *b, demo_stats *st)
{
  state_map map;
  memset(&map, 0, sizeof map);
  pthread_mutex_init(&map.mu, NULL);
  rmq_producer *p = NULL;
  rmq_push_consumer *c = NULL;
  int rc = rmq_producer_create(b, "transaction_producer", NULL, &p);
  if (rc) { demo_error("rmq_producer_create", rc); goto out; }
  rmq_transaction_listener l = {execute_local, check_local, &map};
  if ((rc = rmq_producer_set_transaction_listener(p, &l))) { demo_error("rmq_producer_set_transaction_listener", rc); goto out; }

  static const int answers[3] = {RMQ_COMMIT_MESSAGE, RMQ_ROLLBACK_MESSAGE, RMQ_UNKNOW};
  char ids[3][RMQ_MSG_ID_SIZE];
  rmq_msg *m = NULL;
  if ((rc = rmq_msg_create(&m, PAY_TOPIC, NULL, NULL, 0))) { demo_error("rmq_msg_create", rc); goto out; }
  for (int i = 0; i < 3; i++) {
    char body[96];
    snprintf(body, sizeof body, "用户A给用户B转账500元 (#%d, local transaction answers %s)", i + 1,
             rmq_local_transaction_state_name(answers[i]));
    rmq_msg_set_body(m, body, strlen(body));
    rmq_transaction_send_result r;
    rc = rmq_producer_send_message_in_transaction(p, m, (void *)&answers[i], &r);
    if (rc) { demo_error("rmq_producer_send_message_in_transaction", rc); break; }
    char line[1024];
    rmq_send_result_format(&r.send_result, line, sizeof line);
    printf("%s, localTransactionState=%s\n", line, rmq_local_transaction_state_name(r.local_transaction_state));
    memcpy(ids[i], r.transaction_id, sizeof ids[i]);
    st->sent++;
  }
  rmq_msg_free(m);
  if (rc) goto out;

  /* TransactionConsumer. */
  char want_ids[2][RMQ_MSG_ID_SIZE];
  memcpy(want_ids[0], ids[0], sizeof want_ids[0]);
  memcpy(want_ids[1], ids[2], sizeof want_ids[1]);
  demo_expect want;
  demo_expect_init(&want, (const char(*)[RMQ_MSG_ID_SIZE])want_ids, 2);
  consumer_ctx cc = {&want, ids[1], 0};
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  if ((rc = rmq_push_consumer_create(b, "HAOKE_CONSUMER", &co, &c)) ||
      (rc = rmq_push_consumer_subscribe(c, PAY_TOPIC, "*")) ||
      (rc = rmq_push_consumer_register_listener_concurrently(c, on_message, &cc)) ||
      (rc = rmq_push_consumer_start(c))) {
    demo_error("push consumer", rc);
    demo_expect_destroy(&want);
    goto out;
  }
  int seen = demo_expect_wait(&want, WAIT_MS);
  usleep(200 * 1000); /* a moment for a rolled-back message that should not come */
  rmq_push_consumer_shutdown(c);
  st->received += want.received;
  st->received_push += want.received;
  printf("committed transfers received: %d of 2 (one by the check-back: %d check(s)); rolled back received: %s\n",
         seen, map.checks, cc.got_rolled_back ? "yes" : "no");
  if (seen != 2 || cc.got_rolled_back) rc = RMQ_ESTATE;
  demo_expect_destroy(&want);
out:
  rmq_push_consumer_destroy(c);
  rmq_producer_destroy(p);
  pthread_mutex_destroy(&map.mu);
  return rc;
}
