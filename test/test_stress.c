/*
** test_stress.c -- everything at once on one broker (issue 14): a producer
** shared by four threads sending sync, async, oneway, batch, to-queue and
** ordered (selector) messages; a topic created and deleted over and over
** while threads send to it; push consumers of a clustering group joining
** and leaving (concurrently listener), of an orderly group joining and
** leaving, a broadcasting consumer restarted now and then; two pull
** consumers (lite pull with assign/poll/commit, and pull by offset with
** update_consume_offset) re-created now and then; retention deleting
** CommitLog, ConsumeQueue and index files; statistics read meanwhile.
** Built for ThreadSanitizer (make tsan), also run plainly and under ASan.
**
** RMQ_STRESS_SECONDS sets how long the load runs (default 3, so the suite
** stays fast); a soak is e.g. RMQ_STRESS_SECONDS=600 build/test-tsan/test_stress.
**
** Retention runs from 15% to 70% of the load, so the last part of it stays
** stored. Once the senders stop and the consumers have drained, it checks:
**   - at least once: every message sent OK to a topic other than the doomed
**     one reached the clustering group (the union over its members), the
**     pull group, the broadcasting consumer and (its topic) the orderly
**     group, unless retention deleted it: its queue offset is below its
**     queue's min offset (a oneway send has no result: unless a consumer
**     saw where it went, its exemption is that a later message of its
**     thread was deleted, since retention takes the CommitLog from its head
**     and each thread's records follow its sends);
**   - deleted before delivery, not after a skip: the pull group reads each
**     queue in order, so a message it never got must have been below the
**     min offset right after the retention call that ran when it got the
**     next one (each delivery notes the retention epoch; the min offsets
**     after each call are kept); the same for the orderly group's calls
**     that start past unacknowledged messages;
**   - retention takes a prefix: per thread, a deleted message has no
**     surviving predecessor;
**   - clustering hand-over is exact (rmq.h, handover_timeout_ms): no
**     acknowledged message of the concurrently group comes again;
**   - orderly: per queue, across the group, one call at a time; each call
**     starts right after the last acknowledged message (the same first message again after a SUSPEND,
**     never an acknowledged one) and offsets rise within it; wherever it
**     skips offsets (between calls, or inside one whose pull met a file
**     being deleted) retention deleted all of them; each order key's
**     messages come in send order;
**   - no listener runs for a consumer once its shutdown has returned;
**   - rmq_broker_close refuses (RMQ_ESTATE) while a producer or consumer
**     exists and leaves the broker working; the store then closes cleanly
**     and passes rmq_broker_check.
*/
#include "test_util.h"

#include <inttypes.h>

static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_java_hash; (void)tu_wait_atleast; (void)tu_read_exact; (void)tu_small_opts;
  (void)tu_rmqstore_check; (void)tu_clock_advance; (void)tu_clock_read; (void)tu_make_body; (void)tu_body_check;
  (void)tu_count_files; (void)tu_clock_opts; (void)tu_prop_copy; (void)tu_kill_child;
}

enum {
  NSEND = 4,            /* sender threads sharing the producer */
  NPLAIN = 3,           /* plain topics StressT0..2 */
  T_ORD = 3,            /* the ordered topic */
  T_DOOM = 4,           /* created and deleted over and over */
  NTOPIC = 5,
  TQ = 4,               /* queues of a plain topic */
  OQ = 8,               /* queues of the ordered topic */
  OKEYS = 4,            /* order keys per sender thread */
  RATE = 1500,          /* most messages a second a sender thread sends */
  SLOTS_A = 3, SLOTS_B = 2,
  MAX_INST = 1 << 14,
  MAX_GAPS = 1 << 14,
  BODY_LEN = 96,
};

static const char *const topics[NTOPIC] = {"StressT0", "StressT1", "StressT2", "StressOrd", "StressDoomed"};
static int topic_queues(int t) { return t == T_ORD ? OQ : TQ; }

/* Delivery bits of a message, one per consumer group. */
#define GOT_A 1u  /* clustering, concurrently listener */
#define GOT_P 2u  /* pull group */
#define GOT_C 4u  /* broadcasting */
#define GOT_B 8u  /* orderly group (StressOrd only) */

enum { ST_NONE, ST_OK, ST_FAILED };

/* One message a sender thread sent: written by that thread (or its async
** callback, which under ASYNC_FLUSH runs before the send returns), read by
** the main thread after the senders are joined. got is set by consumers. */
typedef struct srec {
  _Atomic int64_t qoff;  /* -1: unknown (a oneway send's, until a consumer sees it) */
  _Atomic int32_t qid;
  uint8_t topic;
  uint8_t oneway;
  _Atomic uint8_t state; /* ST_* */
  _Atomic uint8_t got;   /* GOT_* */
  _Atomic uint16_t ep[4]; /* per group: the retention epoch of its first delivery */
} srec;

typedef struct sender {
  int id;
  srec *recs;
  int64_t cap;
  atomic_llong n;        /* messages recorded so far */
  pthread_t th;
} sender;

/* A consumer instance's record, never freed during the run: listener ctx. */
typedef struct cinst {
  int group;
  atomic_int shut;       /* set right after its shutdown returned */
  atomic_int calls;
} cinst;

/* The queues whose messages are checked: StressT0..2 and StressOrd. */
enum { NQ = NPLAIN * TQ + OQ };
static int qindex(int t, int q) { return t < NPLAIN ? t * TQ + q : NPLAIN * TQ + q; }

/* Orderly group state per queue of StressOrd, under ord_mu. */
typedef struct oqueue {
  atomic_int inside;
  int64_t last_acked;
} oqueue;

static struct {
  rmq_broker *b;
  rmq_producer *p;
  int seconds;
  atomic_int stop;       /* senders, churn, retention */
  atomic_int stop_pull;  /* pull threads (after draining) */
  int64_t t0;
  sender snd[NSEND + 1]; /* [NSEND]: the message sent after the refused close */
  cinst inst[MAX_INST];
  atomic_int ninst;
  pthread_mutex_t ord_mu;
  oqueue oq[OQ];
  int64_t key_last[NSEND * OKEYS]; /* last acknowledged seq of each order key, under ord_mu */
  struct { int q, epoch; int64_t from, to; } gaps[MAX_GAPS]; /* orderly calls starting past [from, to), ord_mu */
  int ngaps;
  /* violations, counted by any thread, asserted by the main one */
  atomic_int late_calls, bad_body, again_a, overlap_b, again_b, disorder_in_call_b, key_order_b, wrong_queue_b;
  atomic_int bad_illegal, unexpected_rc, send_failed;
  /* activity, to show the run did what it claims */
  atomic_int doom_cycles, doom_sent, doom_errors, joins_a, leaves_a, joins_b, leaves_b, restarts_c, pull_recreates;
  atomic_int files_deleted, suspends, deliveries_a, doomed_deliveries;
  /* Retention epochs: epoch e has seen e rmq_broker_delete_expired_files
  ** calls return; min_after[e][qindex] is each queue's min offset after
  ** the e-th (written before epoch is raised to e, with release). Min
  ** offsets move only in those calls (delete_when is ""), so a consumer
  ** that reads epoch e at a delivery pulled it while every min offset was
  ** at most min_after[e + 1]. */
  atomic_int epoch;
  int max_epochs;
  int64_t (*min_after)[NQ];
  pthread_mutex_t err_mu;
  char first_err[512];
} S;

static void note_err(atomic_int *counter, const char *fmt, ...)
{
  atomic_fetch_add(counter, 1);
  pthread_mutex_lock(&S.err_mu);
  if (!S.first_err[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(S.first_err, sizeof S.first_err, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_unlock(&S.err_mu);
}

static uint32_t rnd(uint32_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* ---- message bodies: "S topic thread seq key" padded ------------------- */

static size_t make_body(char *buf, int t, int th, int64_t seq, int key)
{
  int n = snprintf(buf, BODY_LEN, "S %d %d %" PRId64 " %d ", t, th, seq, key);
  for (int i = n; i < BODY_LEN; i++) buf[i] = (char)('a' + (seq + i) % 26);
  return BODY_LEN;
}

/* The record a delivered message names, or NULL (counted) when its body or
** topic is not one this test sent. *t gets its topic index. */
static srec *rec_of(const rmq_message_ext *m, int *t, int *th, int64_t *seq, int *key)
{
  char body[48];
  int len = m->body_len < (int)sizeof body - 1 ? m->body_len : (int)sizeof body - 1;
  memcpy(body, m->body, (size_t)len);
  body[len] = 0;
  long long sq;
  if (sscanf(body, "S %d %d %lld %d", t, th, &sq, key) != 4 || *t < 0 || *t >= NTOPIC || *th < 0 || *th > NSEND ||
      *key < -1 || *key >= NSEND * OKEYS ||
      strcmp(m->topic, topics[*t]) != 0) {
    note_err(&S.bad_body, "bad body '%s' in topic %s", body, m->topic);
    return NULL;
  }
  *seq = sq;
  sender *sd = &S.snd[*th];
  if (sq < 0 || sq >= atomic_load(&sd->n) + 64 || sq >= sd->cap) {
    note_err(&S.bad_body, "body '%s' names a message never sent", body);
    return NULL;
  }
  return &sd->recs[sq];
}

/* Notes group g's delivery of m: the first one's epoch, and where a oneway
** send's message went. Returns the bits it had. */
static unsigned mark(srec *rec, int g, unsigned bit, const rmq_message_ext *m)
{
  if (rec->oneway && atomic_load(&rec->qoff) < 0) {
    atomic_store(&rec->qid, m->queue_id);
    atomic_store(&rec->qoff, m->queue_offset);
  }
  unsigned old = atomic_fetch_or(&rec->got, (uint8_t)bit);
  if (!(old & bit)) atomic_store(&rec->ep[g], (uint16_t)atomic_load_explicit(&S.epoch, memory_order_acquire));
  return old;
}

/* ---- senders ----------------------------------------------------------- */

static void async_done(void *ctx, int rc, const rmq_send_result *r)
{
  srec *rec = ctx;
  if (rc == RMQ_OK) {
    rec->qid = r->message_queue.queue_id;
    rec->qoff = r->queue_offset;
    atomic_store(&rec->state, ST_OK);
  } else {
    atomic_store(&rec->state, ST_FAILED);
  }
}

static int by_key(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  (void)mqs; (void)m;
  return (int)(*(const int *)arg % (int)n);
}

/* Before the send (and before sender.n covers it): consumers read oneway
** and may fill in qid and qoff as soon as the message is stored. */
static void prep(srec *rec, int t, int oneway)
{
  rec->topic = (uint8_t)t;
  rec->oneway = (uint8_t)oneway;
  rec->qid = -1;
  rec->qoff = -1;
}

/* After the send: its result (r NULL: none). */
static void record(srec *rec, int t, int rc, const rmq_send_result *r)
{
  if (rc == RMQ_OK && r) {
    rec->qid = r->message_queue.queue_id;
    rec->qoff = r->queue_offset;
  }
  if (t == T_DOOM) {
    atomic_fetch_add(&S.doom_sent, 1);
    if (rc != RMQ_OK) atomic_fetch_add(&S.doom_errors, 1);
    /* A topic being deleted: sends may fail, but only as rmq.h allows. */
    if (rc != RMQ_OK && rc != RMQ_ENOTOPIC && rc != RMQ_EQUEUE)
      note_err(&S.unexpected_rc, "send to the doomed topic: %d (%s)", rc, rmq_errstr(rc));
  } else if (rc != RMQ_OK) {
    note_err(&S.send_failed, "send to %s: %d (%s): %s", topics[t], rc, rmq_errstr(rc), rmq_errmsg());
  }
  atomic_store(&rec->state, rc == RMQ_OK ? ST_OK : ST_FAILED);
}

static void *send_main(void *arg)
{
  sender *sd = arg;
  uint32_t seed = 0x9e3779b9u * (uint32_t)(sd->id + 1);
  rmq_msg *m, *bm[3];
  char body[BODY_LEN];
  if (rmq_msg_create(&m, topics[0], "TagA", "x", 1)) return NULL;
  for (int i = 0; i < 3; i++)
    if (rmq_msg_create(&bm[i], topics[0], "TagB", "x", 1)) return NULL;
  int64_t seq = 0;
  for (int64_t i = 0; !atomic_load(&S.stop); i++) {
    /* Pace: at most RATE a second, and no more than the records hold. */
    while (!atomic_load(&S.stop) && (seq + 3 >= sd->cap || seq > (tu_mono_ms() - S.t0) * RATE / 1000)) sleep_ms(1);
    if (atomic_load(&S.stop)) break;
    int kind = (int)(i % 16), t = (int)((i / 16 + (uint64_t)kind) % NPLAIN), rc;
    rmq_send_result r;
    srec *rec = &sd->recs[seq];
    if (kind == 10) { /* a batch of three to one plain topic */
      rmq_send_result br[3];
      for (int k = 0; k < 3; k++) {
        prep(&sd->recs[seq + k], t, 0);
        rmq_msg_set_topic(bm[k], topics[t]);
        rmq_msg_set_body(bm[k], body, make_body(body, t, sd->id, seq + k, -1));
      }
      atomic_store(&sd->n, seq + 3);
      rc = rmq_producer_send_batch(S.p, (const rmq_msg *const *)bm, 3, br);
      for (int k = 0; k < 3; k++) record(&sd->recs[seq + k], t, rc, rc == RMQ_OK ? &br[k] : NULL);
      seq += 3;
      continue;
    }
    int key = -1;
    if (kind >= 11 && kind <= 13) t = T_ORD, key = sd->id * OKEYS + (int)((i / 16 + (uint64_t)kind) % OKEYS);
    if (kind == 14) t = T_DOOM;
    rmq_msg_set_topic(m, topics[t]);
    rmq_msg_set_body(m, body, make_body(body, t, sd->id, seq, key));
    prep(rec, t, kind == 9);
    /* published before the send: a consumer may see the message first */
    atomic_store(&sd->n, seq + 1);
    if (kind <= 7) {
      rc = rmq_producer_send(S.p, m, &r);
      record(rec, t, rc, &r);
    } else if (kind == 8) {
      rc = rmq_producer_send_async(S.p, m, async_done, rec);
      if (rc != RMQ_OK) record(rec, t, rc, NULL);
    } else if (kind == 9) {
      /* A key to ask the store for it at the end (tally_up: gone_oneway). */
      char okey[48];
      snprintf(okey, sizeof okey, "OW%d_%" PRId64, sd->id, seq);
      ok(rmq_msg_set_keys(m, okey));
      rc = rmq_producer_send_oneway(S.p, m);
      ok(rmq_msg_set_keys(m, NULL));
      record(rec, t, rc, NULL);
    } else if (kind <= 13) {
      rc = rmq_producer_send_select(S.p, m, by_key, &key, &r);
      record(rec, t, rc, &r);
    } else if (kind == 14) {
      if (rnd(&seed) % 2) rc = rmq_producer_send(S.p, m, &r);
      else rc = rmq_producer_send_to_queue(S.p, m, 1, &r);
      record(rec, t, rc, &r);
    } else {
      rc = rmq_producer_send_to_queue(S.p, m, (int)(i / 16 % TQ), &r);
      record(rec, t, rc, &r);
    }
    seq++;
  }
  rmq_msg_free(m);
  for (int i = 0; i < 3; i++) rmq_msg_free(bm[i]);
  return NULL;
}

/* ---- push consumers ---------------------------------------------------- */

static void call_check(cinst *ci)
{
  if (atomic_load(&ci->shut)) note_err(&S.late_calls, "a listener ran after its consumer's shutdown returned");
}

static int on_a(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  cinst *ci = ctx;
  call_check(ci);
  atomic_fetch_add(&ci->calls, 1);
  for (size_t i = 0; i < n; i++) {
    int t, th, key;
    int64_t seq;
    srec *rec = rec_of(msgs[i], &t, &th, &seq, &key);
    if (!rec) continue;
    if (t == T_DOOM) { atomic_fetch_add(&S.doomed_deliveries, 1); continue; }
    atomic_fetch_add(&S.deliveries_a, 1);
    if (mark(rec, 0, GOT_A, msgs[i]) & GOT_A)
      note_err(&S.again_a, "group A got %s thread %d seq %" PRId64 " (queue %d offset %" PRId64 ") again", topics[t], th,
               seq, msgs[i]->queue_id, msgs[i]->queue_offset);
  }
  if (atomic_load(&ci->calls) % 64 == 0) usleep(300); /* now and then a slow call meets a hand-over */
  call_check(ci);
  return RMQ_CONSUME_SUCCESS;
}

static int on_c(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_concurrently_context *cc)
{
  (void)cc;
  cinst *ci = ctx;
  call_check(ci);
  for (size_t i = 0; i < n; i++) {
    int t, th, key;
    int64_t seq;
    srec *rec = rec_of(msgs[i], &t, &th, &seq, &key);
    if (rec) mark(rec, 2, GOT_C, msgs[i]);
  }
  call_check(ci);
  return RMQ_CONSUME_SUCCESS;
}

/* ord_mu held. An orderly call skips [from, to): allowed only when
** retention took all of it, checked at the end against the min offset after
** the retention call running now (the min offset read now may lag a
** CommitLog deletion still under way). */
static void note_gap(int q, int64_t from, int64_t to)
{
  if (S.ngaps == MAX_GAPS) return;
  S.gaps[S.ngaps].q = q;
  S.gaps[S.ngaps].from = from;
  S.gaps[S.ngaps].to = to;
  S.gaps[S.ngaps++].epoch = atomic_load_explicit(&S.epoch, memory_order_acquire);
}

static int on_b(void *ctx, const rmq_message_ext *const *msgs, size_t n, rmq_consume_orderly_context *oc)
{
  cinst *ci = ctx;
  call_check(ci);
  int q = oc->queue_id;
  if (q < 0 || q >= OQ || strcmp(oc->topic, topics[T_ORD]) != 0) {
    note_err(&S.wrong_queue_b, "orderly call for %s queue %d", oc->topic, q);
    return RMQ_CONSUME_SUCCESS;
  }
  oqueue *o = &S.oq[q];
  if (atomic_fetch_add(&o->inside, 1) != 0) note_err(&S.overlap_b, "two orderly calls at once on queue %d", q);
  int calls = atomic_fetch_add(&ci->calls, 1);
  pthread_mutex_lock(&S.ord_mu);
  int64_t first = msgs[0]->queue_offset, expect = o->last_acked + 1;
  for (size_t i = 0; i < n; i++) {
    if (msgs[i]->queue_id != q || strcmp(msgs[i]->topic, topics[T_ORD]) != 0)
      note_err(&S.wrong_queue_b, "orderly call for queue %d got %s queue %d", q, msgs[i]->topic, msgs[i]->queue_id);
    if (i && msgs[i]->queue_offset <= msgs[i - 1]->queue_offset)
      note_err(&S.disorder_in_call_b, "queue %d: offsets %" PRId64 " then %" PRId64 " in one call", q,
               msgs[i - 1]->queue_offset, msgs[i]->queue_offset);
    else if (i && msgs[i]->queue_offset > msgs[i - 1]->queue_offset + 1)
      note_gap(q, msgs[i - 1]->queue_offset + 1, msgs[i]->queue_offset); /* a pull met a file being deleted */
  }
  if (first < expect)
    note_err(&S.again_b, "queue %d: call starts at %" PRId64 ", %" PRId64 " already acknowledged", q, first, expect - 1);
  else if (first > expect)
    note_gap(q, expect, first);
  int status = RMQ_CONSUME_SUCCESS;
  if (calls % 29 == 7) { /* the same messages again, nothing after them first */
    status = RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT;
    oc->suspend_current_queue_time_millis = 10;
    atomic_fetch_add(&S.suspends, 1);
  } else {
    for (size_t i = 0; i < n; i++) {
      int t, th, key;
      int64_t seq;
      srec *rec = rec_of(msgs[i], &t, &th, &seq, &key);
      if (!rec) continue;
      mark(rec, 3, GOT_B, msgs[i]);
      /* each order key's messages in send order */
      if (key < 0 || key / OKEYS != th) {
        note_err(&S.key_order_b, "orderly message thread %d seq %" PRId64 " without its key (%d)", th, seq, key);
      } else {
        if (seq <= S.key_last[key])
          note_err(&S.key_order_b, "key %d: seq %" PRId64 " after %" PRId64, key, seq, S.key_last[key]);
        S.key_last[key] = seq;
      }
    }
    o->last_acked = msgs[n - 1]->queue_offset;
  }
  pthread_mutex_unlock(&S.ord_mu);
  atomic_fetch_sub(&o->inside, 1);
  call_check(ci);
  return status;
}

enum { G_A, G_B, G_C };

static rmq_push_consumer *push_start(int group, int *inst_out)
{
  int k = atomic_fetch_add(&S.ninst, 1);
  if (k >= MAX_INST) return NULL;
  cinst *ci = &S.inst[k];
  ci->group = group;
  char name[32];
  if (group == G_C) snprintf(name, sizeof name, "BC"); /* the same one again: it resumes from its offsets file */
  else snprintf(name, sizeof name, "%c%d", group == G_A ? 'A' : 'B', k);
  rmq_push_consumer_options co;
  rmq_push_consumer_options_init(&co);
  co.consume_thread_min = co.consume_thread_max = 2;
  co.consume_from_where = RMQ_CONSUME_FROM_FIRST_OFFSET;
  co.consume_message_batch_max_size = group == G_A ? 2 : 3;
  co.instance_name = name;
  if (group == G_C) co.message_model = RMQ_BROADCASTING;
  const char *gname = group == G_A ? "StressA" : group == G_B ? "StressB" : "StressC";
  rmq_push_consumer *c;
  int rc = rmq_push_consumer_create(S.b, gname, &co, &c);
  if (rc) goto out_err;
  if (group == G_B) {
    rc = rmq_push_consumer_subscribe(c, topics[T_ORD], "*");
    if (!rc) rc = rmq_push_consumer_register_listener_orderly(c, on_b, ci);
  } else {
    for (int t = 0; t <= T_ORD && !rc; t++) rc = rmq_push_consumer_subscribe(c, topics[t], "*");
    if (!rc && group == G_A) rc = rmq_push_consumer_subscribe(c, topics[T_DOOM], "*");
    if (!rc) rc = rmq_push_consumer_register_listener_concurrently(c, group == G_A ? on_a : on_c, ci);
  }
  if (!rc) rc = rmq_push_consumer_start(c);
  if (rc) {
    rmq_push_consumer_destroy(c);
    goto out_err;
  }
  *inst_out = k;
  return c;
out_err:
  note_err(&S.unexpected_rc, "starting a consumer of %s: %d (%s): %s", gname, rc, rmq_errstr(rc), rmq_errmsg());
  return NULL;
}

/* Shutdown, mark, then (after a moment in which a late call would be seen)
** destroy. */
static void push_stop(rmq_push_consumer *c, int k, int pause_ms)
{
  rmq_push_consumer_shutdown(c);
  atomic_store(&S.inst[k].shut, 1);
  if (pause_ms) sleep_ms(pause_ms);
  rmq_push_consumer_destroy(c);
}

typedef struct member {
  rmq_push_consumer *c;
  int inst;
} member;

static member ma[SLOTS_A], mb[SLOTS_B], mc;

static void *churn_main(void *arg)
{
  (void)arg;
  uint32_t seed = 12345;
  while (!atomic_load(&S.stop)) {
    sleep_ms(20 + (int)(rnd(&seed) % 120));
    uint32_t what = rnd(&seed) % 10;
    member *m = what < 5 ? &ma[rnd(&seed) % SLOTS_A] : what < 9 ? &mb[rnd(&seed) % SLOTS_B] : &mc;
    int group = what < 5 ? G_A : what < 9 ? G_B : G_C;
    if (m->c) {
      push_stop(m->c, m->inst, (int)(rnd(&seed) % 3));
      m->c = NULL;
      atomic_fetch_add(group == G_A ? &S.leaves_a : group == G_B ? &S.leaves_b : &S.restarts_c, 1);
      if (group == G_C) m->c = push_start(G_C, &m->inst);
    } else {
      m->c = push_start(group, &m->inst);
      if (m->c) atomic_fetch_add(group == G_A ? &S.joins_a : &S.joins_b, 1);
    }
  }
  return NULL;
}

/* ---- the doomed topic, retention, statistics --------------------------- */

static void *doom_main(void *arg)
{
  (void)arg;
  uint32_t seed = 777;
  while (!atomic_load(&S.stop)) {
    int rc = rmq_topic_create(S.b, topics[T_DOOM], 2);
    if (rc) note_err(&S.unexpected_rc, "creating the doomed topic: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
    sleep_ms(5 + (int)(rnd(&seed) % 25));
    rc = rmq_topic_delete(S.b, topics[T_DOOM]);
    if (rc && rc != RMQ_ENOTOPIC)
      note_err(&S.unexpected_rc, "deleting the doomed topic: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
    atomic_fetch_add(&S.doom_cycles, 1);
    sleep_ms((int)(rnd(&seed) % 15));
  }
  return NULL;
}

static void read_mins(int64_t *min)
{
  for (int t = 0; t <= T_ORD; t++)
    for (int q = 0; q < topic_queues(t); q++) {
      int rc = rmq_topic_queue_offsets(S.b, topics[t], q, &min[qindex(t, q)], NULL);
      if (rc) note_err(&S.unexpected_rc, "queue offsets: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
    }
}

/* Deletes expired files from 15% to 70% of the run: the messages of the
** last part stay stored, so each group must have them all. */
static void *retention_main(void *arg)
{
  (void)arg;
  uint32_t seed = 4242;
  while (!atomic_load(&S.stop)) {
    sleep_ms(100 + (int)(rnd(&seed) % 300));
    int64_t el = tu_mono_ms() - S.t0, run = (int64_t)S.seconds * 1000;
    int e = atomic_load(&S.epoch);
    if (el > run * 15 / 100 && el < run * 70 / 100 && e + 1 < S.max_epochs) {
      int d = 0, rc = rmq_broker_delete_expired_files(S.b, &d);
      if (rc) note_err(&S.unexpected_rc, "delete_expired_files: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
      atomic_fetch_add(&S.files_deleted, d);
      read_mins(S.min_after[e + 1]);
      atomic_store_explicit(&S.epoch, e + 1, memory_order_release);
    }
    rmq_broker_stats st;
    int rc = rmq_broker_stats_get(S.b, &st);
    if (rc) note_err(&S.unexpected_rc, "stats: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
    else rmq_broker_stats_free(&st);
    rmq_queue_progress pr[TQ];
    size_t n;
    rc = rmq_broker_consumer_progress(S.b, "StressA", topics[0], pr, TQ, &n);
    if (rc) note_err(&S.unexpected_rc, "progress: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
  }
  return NULL;
}

/* ---- pull consumers ---------------------------------------------------- */

static void pull_mark(const rmq_pull_result *r)
{
  for (size_t i = 0; i < r->n; i++) {
    int t, th, key;
    int64_t seq;
    srec *rec = rec_of(&r->msgs[i], &t, &th, &seq, &key);
    if (rec) mark(rec, 1, GOT_P, &r->msgs[i]);
  }
}

static int lite_open(rmq_pull_consumer **c)
{
  rmq_message_queue mqs[2 * TQ];
  for (int t = 0; t < 2; t++)
    for (int q = 0; q < TQ; q++) mqs[t * TQ + q] = tu_mq(topics[t], q);
  int rc = rmq_pull_consumer_create(S.b, "StressP", c);
  if (!rc) rc = rmq_pull_consumer_assign(*c, mqs, 2 * TQ, "*");
  if (!rc) rc = rmq_pull_consumer_set_auto_commit(*c, 1, 100);
  if (rc) note_err(&S.unexpected_rc, "lite pull open: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
  return rc;
}

/* Lite pull (assign/poll, auto-commit) of StressT0 and StressT1, the
** handle re-created every second or so (it resumes at the commits). */
static void *lite_main(void *arg)
{
  rmq_pull_consumer *c = arg;
  uint32_t seed = 99;
  int64_t made = tu_mono_ms();
  while (!atomic_load(&S.stop_pull)) {
    rmq_pull_result r;
    int rc = rmq_pull_consumer_poll(c, 16, 20, &r);
    if (rc) note_err(&S.unexpected_rc, "poll: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
    else if (r.pull_status == RMQ_PULL_FOUND) pull_mark(&r);
    if (!atomic_load(&S.stop) && tu_mono_ms() - made > 700 + (int)(rnd(&seed) % 800)) {
      if (rnd(&seed) % 2) {
        rc = rmq_pull_consumer_commit(c);
        if (rc) note_err(&S.unexpected_rc, "commit: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
      }
      rmq_pull_consumer_destroy(c); /* auto-commit commits */
      if (lite_open(&c)) return NULL;
      atomic_fetch_add(&S.pull_recreates, 1);
      made = tu_mono_ms();
    }
  }
  rmq_pull_consumer_destroy(c);
  return NULL;
}

enum { NPQ = TQ + OQ };

static int by_offset_open(rmq_pull_consumer **c, rmq_message_queue *mqs, int64_t *off)
{
  int rc = rmq_pull_consumer_create(S.b, "StressP", c);
  for (int i = 0; i < NPQ && !rc; i++) {
    rc = rmq_pull_consumer_fetch_consume_offset(*c, &mqs[i], &off[i]);
    if (rc == RMQ_ENOTFOUND) off[i] = 0, rc = RMQ_OK;
  }
  if (rc) note_err(&S.unexpected_rc, "pull open: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
  return rc;
}

static int by_offset_commit(rmq_pull_consumer *c, rmq_message_queue *mqs, int64_t *off)
{
  for (int i = 0; i < NPQ; i++) {
    int rc = rmq_pull_consumer_update_consume_offset(c, &mqs[i], off[i]);
    if (rc) {
      note_err(&S.unexpected_rc, "update_consume_offset: %d (%s): %s", rc, rmq_errstr(rc), rmq_errmsg());
      return rc;
    }
  }
  return RMQ_OK;
}

/* Pull by offset of StressT2 and StressOrd, offsets kept here and stored
** with update_consume_offset; a look at the doomed topic now and then. */
static void *by_offset_main(void *arg)
{
  (void)arg;
  rmq_message_queue mqs[NPQ], doom = tu_mq(topics[T_DOOM], 0);
  int64_t off[NPQ];
  for (int q = 0; q < TQ; q++) mqs[q] = tu_mq(topics[2], q);
  for (int q = 0; q < OQ; q++) mqs[TQ + q] = tu_mq(topics[T_ORD], q);
  rmq_pull_consumer *c;
  if (by_offset_open(&c, mqs, off)) return NULL;
  uint32_t seed = 31337;
  int64_t made = tu_mono_ms(), committed = made;
  while (!atomic_load(&S.stop_pull)) {
    int found = 0;
    for (int i = 0; i < NPQ; i++) {
      rmq_pull_result r;
      int rc = (rnd(&seed) % 8 == 0)
                   ? rmq_pull_consumer_pull_block_if_not_found(c, &mqs[i], "*", off[i], 32, 2, &r)
                   : rmq_pull_consumer_pull(c, &mqs[i], "*", off[i], 32, &r);
      if (rc) {
        note_err(&S.unexpected_rc, "pull %s/%d: %d (%s): %s", mqs[i].topic, mqs[i].queue_id, rc, rmq_errstr(rc),
                 rmq_errmsg());
        continue;
      }
      if (r.pull_status == RMQ_PULL_FOUND) pull_mark(&r), found = 1;
      if (r.pull_status == RMQ_PULL_OFFSET_ILLEGAL && r.next_begin_offset <= off[i])
        note_err(&S.bad_illegal, "pull %s/%d at %" PRId64 ": OFFSET_ILLEGAL sends back to %" PRId64, mqs[i].topic,
                 mqs[i].queue_id, off[i], r.next_begin_offset);
      if (r.pull_status != RMQ_PULL_NO_NEW_MSG) off[i] = r.next_begin_offset;
    }
    if (rnd(&seed) % 16 == 0) {
      rmq_pull_result r;
      int rc = rmq_pull_consumer_pull(c, &doom, "*", 0, 8, &r);
      if (rc && rc != RMQ_ENOTOPIC && rc != RMQ_EQUEUE)
        note_err(&S.unexpected_rc, "pull of the doomed topic: %d (%s)", rc, rmq_errstr(rc));
    }
    int64_t now = tu_mono_ms();
    if (now - committed > 150) {
      by_offset_commit(c, mqs, off);
      committed = now;
    }
    if (!atomic_load(&S.stop) && now - made > 900 + (int)(rnd(&seed) % 1200)) {
      /* commit (or not: a new handle then pulls some again), re-create */
      if (rnd(&seed) % 3) by_offset_commit(c, mqs, off);
      rmq_pull_consumer_destroy(c);
      if (by_offset_open(&c, mqs, off)) return NULL;
      atomic_fetch_add(&S.pull_recreates, 1);
      made = now;
    }
    if (!found) sleep_ms(2);
  }
  rmq_pull_consumer_destroy(c);
  return NULL;
}

/* ---- the checks -------------------------------------------------------- */

typedef struct tally {
  int64_t sent_ok, oneway, exempt, missing[4], doomed_ok, skipped_p;
  int prefix_broken;
  char first_missing[4][160], first_skipped[160];
} tally;

static const unsigned group_bit[4] = {GOT_A, GOT_P, GOT_C, GOT_B};
static const char *const group_name[4] = {"StressA (clustering)", "StressP (pull)", "StressC (broadcasting)",
                                          "StressB (orderly)"};

static int by_qoff(const void *a, const void *b)
{
  int64_t x = atomic_load(&(*(srec *const *)a)->qoff), y = atomic_load(&(*(srec *const *)b)->qoff);
  return x < y ? -1 : x > y;
}

/* The pull group reads each queue in order, so a message it never got and
** retention took must have been gone before it got any later message of
** the queue: below the min offset after the epoch following that one. */
static void check_pull_skips(tally *ty, const int64_t *final_min)
{
  int64_t cnt[NQ] = {0}, at[NQ] = {0}, total = 0;
  for (int th = 0; th < NSEND; th++)
    for (int64_t s = 0; s < atomic_load(&S.snd[th].n); s++) {
      srec *r = &S.snd[th].recs[s];
      if (atomic_load(&r->state) == ST_OK && r->topic != T_DOOM && atomic_load(&r->qoff) >= 0)
        cnt[qindex(r->topic, atomic_load(&r->qid))]++, total++;
    }
  srec **v = calloc((size_t)total + 1, sizeof *v);
  assert_non_null(v);
  for (int i = 1; i < NQ; i++) at[i] = at[i - 1] + cnt[i - 1];
  int64_t base[NQ];
  memcpy(base, at, sizeof base);
  for (int th = 0; th < NSEND; th++)
    for (int64_t s = 0; s < atomic_load(&S.snd[th].n); s++) {
      srec *r = &S.snd[th].recs[s];
      if (atomic_load(&r->state) == ST_OK && r->topic != T_DOOM && atomic_load(&r->qoff) >= 0)
        v[at[qindex(r->topic, atomic_load(&r->qid))]++] = r;
    }
  int last = atomic_load(&S.epoch);
  for (int k = 0; k < NQ; k++) {
    srec **qv = v + base[k];
    qsort(qv, (size_t)cnt[k], sizeof *qv, by_qoff);
    int later = -1; /* earliest first-delivery epoch of a later message */
    for (int64_t i = cnt[k] - 1; i >= 0; i--) {
      srec *r = qv[i];
      int64_t off = atomic_load(&r->qoff);
      if (atomic_load(&r->got) & GOT_P) {
        int e = atomic_load(&r->ep[1]);
        if (later < 0 || e < later) later = e;
        continue;
      }
      if (later < 0 || off >= final_min[k]) continue; /* nothing after it came, or counted as missing */
      int64_t bound = later + 1 <= last ? S.min_after[later + 1][k] : final_min[k];
      if (off >= bound) {
        if (!ty->skipped_p)
          snprintf(ty->first_skipped, sizeof ty->first_skipped,
                   "queue %d of %s offset %" PRId64 ": a later one came in epoch %d, min after it %" PRId64, k,
                   topics[r->topic], off, later, bound);
        ty->skipped_p++;
      }
    }
  }
  free(v);
}

/* A oneway message of thread th, seq s, that no consumer saw (so its place
** is unknown) and that retention took last of its thread's messages: the
** rule "a later message of its thread was deleted" cannot cover it. It is
** gone if the store no longer has it (by its key) and the thread's message
** before it with a known place was deleted (retention takes a prefix of
** the CommitLog). Seen once, with consumers starved behind retention. */
static int gone_oneway(int th, int64_t s, int64_t cut)
{
  int64_t prev = s - 1;
  while (prev >= 0 && (S.snd[th].recs[prev].oneway || atomic_load(&S.snd[th].recs[prev].qoff) < 0 ||
                       S.snd[th].recs[prev].topic == T_DOOM))
    prev--;
  if (prev < 0 || prev > cut) return 0;
  char key[48];
  snprintf(key, sizeof key, "OW%d_%" PRId64, th, s);
  rmq_query_result qr;
  if (rmq_broker_query_message(S.b, topics[S.snd[th].recs[s].topic], key, 4, 0, INT64_MAX, &qr) != RMQ_OK) return 0;
  size_t n = qr.n;
  rmq_query_result_free(&qr);
  return n == 0;
}

/* Counts, from each queue's min offset now, what each group still misses. */
static void tally_up(tally *ty)
{
  memset(ty, 0, sizeof *ty);
  int64_t min[T_ORD + 1][OQ], flat[NQ];
  for (int t = 0; t <= T_ORD; t++)
    for (int q = 0; q < topic_queues(t); q++) {
      ok(rmq_topic_queue_offsets(S.b, topics[t], q, &min[t][q], NULL));
      flat[qindex(t, q)] = min[t][q];
    }
  check_pull_skips(ty, flat);
  for (int th = 0; th < NSEND; th++) {
    sender *sd = &S.snd[th];
    int64_t n = atomic_load(&sd->n), cut = -1;
    /* cut: the last message of the thread retention is known to have taken */
    for (int64_t s = 0; s < n; s++) {
      srec *r = &sd->recs[s];
      int64_t off = atomic_load(&r->qoff);
      if (atomic_load(&r->state) == ST_OK && r->topic != T_DOOM && !r->oneway && off >= 0 &&
          off < min[r->topic][atomic_load(&r->qid)])
        cut = s;
    }
    for (int64_t s = 0; s < n; s++) {
      srec *r = &sd->recs[s];
      if (atomic_load(&r->state) != ST_OK) continue;
      if (r->topic == T_DOOM) { ty->doomed_ok++; continue; }
      ty->sent_ok++;
      ty->oneway += r->oneway;
      int64_t off = atomic_load(&r->qoff);
      int qid = atomic_load(&r->qid);
      int deleted = off >= 0 ? off < min[r->topic][qid] : s <= cut;
      if (!deleted && off < 0 && atomic_load(&r->got) != (r->topic == T_ORD ? 15u : 7u) && gone_oneway(th, s, cut))
        deleted = 1;
      if (off >= 0 && s < cut && !deleted) ty->prefix_broken++;
      if (deleted) { ty->exempt++; continue; }
      unsigned got = atomic_load(&r->got);
      for (int g = 0; g < 4; g++) {
        if (g == 3 && r->topic != T_ORD) continue;
        if (got & group_bit[g]) continue;
        if (!ty->missing[g])
          snprintf(ty->first_missing[g], sizeof ty->first_missing[g],
                   "%s thread %d seq %" PRId64 " queue %d offset %" PRId64 " (min %" PRId64 ")", topics[r->topic], th,
                   s, qid, off, off >= 0 ? min[r->topic][qid] : -1);
        ty->missing[g]++;
      }
    }
  }
}

static int env_seconds(void)
{
  const char *e = getenv("RMQ_STRESS_SECONDS");
  int s = e && *e ? atoi(e) : 3;
  return s < 1 ? 1 : s;
}

static void test_stress(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "stress");
  memset(&S, 0, sizeof S);
  pthread_mutex_init(&S.ord_mu, NULL);
  pthread_mutex_init(&S.err_mu, NULL);
  S.seconds = env_seconds();
  for (int q = 0; q < OQ; q++) S.oq[q].last_acked = -1;
  for (int k = 0; k < NSEND * OKEYS; k++) S.key_last[k] = -1;
  S.max_epochs = S.seconds * 12 + 16;
  S.min_after = calloc((size_t)S.max_epochs + 1, sizeof *S.min_after);
  assert_non_null(S.min_after);
  for (int th = 0; th <= NSEND; th++) {
    S.snd[th].id = th;
    S.snd[th].cap = th < NSEND ? (int64_t)RATE * S.seconds + 1024 : 1;
    S.snd[th].recs = calloc((size_t)S.snd[th].cap, sizeof(srec));
    assert_non_null(S.snd[th].recs);
  }

  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 64 << 10;    /* files to delete every second */
  o.mapped_file_size_consume_queue = 20 * 64; /* ConsumeQueue files too */
  o.max_mapped_consume_queue_files = 16;      /* and the unmapping of idle ones */
  o.file_reserved_time = 0;                   /* a complete, flushed file has expired */
  o.delete_when = "";                         /* deleted when the test asks, not by the clock */
  o.clean_resource_interval = 50;
  o.flush_interval_commit_log = 20;
  o.flush_interval_consume_queue = 50;
  o.flush_consumer_offset_interval = 100;
  o.max_hash_slot_num = 64;                   /* index files roll over and go too */
  o.max_index_num = 2048;
  o.default_topic_queue_nums = 4;
  o.log_level = RMQ_LOG_ERROR;
  ok(rmq_broker_open(path, &o, &S.b));
  for (int t = 0; t <= T_ORD; t++) ok(rmq_topic_create(S.b, topics[t], topic_queues(t)));
  ok(rmq_producer_create(S.b, "StressProducer", NULL, &S.p));

  /* Members before any message: the pull group commits its start. */
  ma[0].c = push_start(G_A, &ma[0].inst);
  ma[1].c = push_start(G_A, &ma[1].inst);
  mb[0].c = push_start(G_B, &mb[0].inst);
  mc.c = push_start(G_C, &mc.inst);
  assert_non_null(ma[0].c);
  assert_non_null(ma[1].c);
  assert_non_null(mb[0].c);
  assert_non_null(mc.c);
  rmq_pull_consumer *lite;
  ok(lite_open(&lite));
  ok(rmq_pull_consumer_commit(lite));

  S.t0 = tu_mono_ms();
  pthread_t th_churn, th_doom, th_ret, th_lite, th_pull;
  for (int i = 0; i < NSEND; i++) assert_int_equal(pthread_create(&S.snd[i].th, NULL, send_main, &S.snd[i]), 0);
  assert_int_equal(pthread_create(&th_churn, NULL, churn_main, NULL), 0);
  assert_int_equal(pthread_create(&th_doom, NULL, doom_main, NULL), 0);
  assert_int_equal(pthread_create(&th_ret, NULL, retention_main, NULL), 0);
  assert_int_equal(pthread_create(&th_lite, NULL, lite_main, lite), 0);
  assert_int_equal(pthread_create(&th_pull, NULL, by_offset_main, NULL), 0);

  sleep_ms(S.seconds * 1000);
  atomic_store(&S.stop, 1);
  for (int i = 0; i < NSEND; i++) pthread_join(S.snd[i].th, NULL);
  pthread_join(th_churn, NULL);
  pthread_join(th_doom, NULL);
  pthread_join(th_ret, NULL);
  int64_t load_ms = tu_mono_ms() - S.t0;

  /* Drain: a member of each push group, the pull threads still pulling. */
  if (!ma[0].c) ma[0].c = push_start(G_A, &ma[0].inst);
  if (!mb[0].c) mb[0].c = push_start(G_B, &mb[0].inst);
  if (!mc.c) mc.c = push_start(G_C, &mc.inst);
  tally ty;
  int64_t drain_end = tu_mono_ms() + 60000 + (int64_t)S.seconds * 200;
  for (;;) {
    tally_up(&ty);
    if (!ty.missing[0] && !ty.missing[1] && !ty.missing[2] && !ty.missing[3]) break;
    if (tu_mono_ms() > drain_end) break;
    sleep_ms(100);
  }
  atomic_store(&S.stop_pull, 1);
  pthread_join(th_lite, NULL);
  pthread_join(th_pull, NULL);

  /* Close is refused while a producer or consumer exists, and closes nothing:
  ** a send still reaches a member of group A. */
  assert_int_equal(rmq_broker_close(S.b), RMQ_ESTATE);
  {
    rmq_msg *m;
    char body[BODY_LEN];
    ok(rmq_msg_create(&m, topics[0], NULL, body, make_body(body, 0, NSEND, 0, -1)));
    prep(&S.snd[NSEND].recs[0], 0, 0);
    atomic_store(&S.snd[NSEND].n, 1);
    rmq_send_result r;
    ok(rmq_producer_send(S.p, m, &r));
    record(&S.snd[NSEND].recs[0], 0, RMQ_OK, &r);
    rmq_msg_free(m);
    int64_t end = tu_mono_ms() + 20000;
    while (!(atomic_load(&S.snd[NSEND].recs[0].got) & GOT_A) && tu_mono_ms() < end) sleep_ms(2);
    assert_true(atomic_load(&S.snd[NSEND].recs[0].got) & GOT_A);
  }

  for (int i = 0; i < SLOTS_A; i++)
    if (ma[i].c) push_stop(ma[i].c, ma[i].inst, 20);
  for (int i = 0; i < SLOTS_B; i++)
    if (mb[i].c) push_stop(mb[i].c, mb[i].inst, 20);
  if (mc.c) push_stop(mc.c, mc.inst, 20);
  rmq_producer_destroy(S.p);
  tally_up(&ty);

  print_message("  %d s of load (%" PRId64 " ms): %" PRId64 " messages sent OK (%" PRId64 " oneway), %" PRId64
                " to the doomed topic (%d sends failed there, %d create/delete cycles)\n",
                S.seconds, load_ms, ty.sent_ok, ty.oneway, ty.doomed_ok, atomic_load(&S.doom_errors),
                atomic_load(&S.doom_cycles));
  print_message("  retention: %d CommitLog files deleted in %d calls, %" PRId64 " of the messages gone by the end\n",
                atomic_load(&S.files_deleted), atomic_load(&S.epoch), ty.exempt);
  print_message("  group A: %d joins, %d leaves, %d deliveries (+%d of the doomed topic); group B: %d joins, %d leaves, "
                "%d suspends; broadcasting: %d restarts; pull handles re-created %d times\n",
                atomic_load(&S.joins_a), atomic_load(&S.leaves_a), atomic_load(&S.deliveries_a),
                atomic_load(&S.doomed_deliveries), atomic_load(&S.joins_b), atomic_load(&S.leaves_b),
                atomic_load(&S.suspends), atomic_load(&S.restarts_c), atomic_load(&S.pull_recreates));
  if (S.first_err[0]) print_message("  first violation or error: %s\n", S.first_err);
  for (int g = 0; g < 4; g++)
    if (ty.missing[g])
      fail_msg("%s never got %" PRId64 " messages that were stored, e.g. %s", group_name[g], ty.missing[g],
               ty.first_missing[g]);
  assert_int_equal(ty.prefix_broken, 0);
  int last = atomic_load(&S.epoch);
  for (int i = 0; i < S.ngaps; i++) {
    int64_t min;
    if (S.gaps[i].epoch + 1 <= last) min = S.min_after[S.gaps[i].epoch + 1][qindex(T_ORD, S.gaps[i].q)];
    else ok(rmq_topic_queue_offsets(S.b, topics[T_ORD], S.gaps[i].q, &min, NULL));
    if (min < S.gaps[i].to)
      fail_msg("orderly queue %d: a call skipped offsets %" PRId64 "..%" PRId64 ", but the min offset was %" PRId64
               " after the retention call then running", S.gaps[i].q, S.gaps[i].from, S.gaps[i].to - 1, min);
  }
  print_message("  orderly: %d skips over messages retention took\n", S.ngaps);
  if (ty.skipped_p) fail_msg("the pull group skipped %" PRId64 " messages still stored, e.g. %s", ty.skipped_p, ty.first_skipped);
  assert_int_equal(atomic_load(&S.late_calls), 0);
  assert_int_equal(atomic_load(&S.bad_body), 0);
  assert_int_equal(atomic_load(&S.again_a), 0);
  assert_int_equal(atomic_load(&S.overlap_b), 0);
  assert_int_equal(atomic_load(&S.again_b), 0);
  assert_int_equal(atomic_load(&S.disorder_in_call_b), 0);
  assert_int_equal(atomic_load(&S.key_order_b), 0);
  assert_int_equal(atomic_load(&S.wrong_queue_b), 0);
  assert_int_equal(atomic_load(&S.bad_illegal), 0);
  assert_int_equal(atomic_load(&S.unexpected_rc), 0);
  assert_int_equal(atomic_load(&S.send_failed), 0);
  /* The run did what it claims. */
  assert_true(ty.sent_ok > 1000);
  assert_true(ty.doomed_ok > 0);
  assert_true(atomic_load(&S.doom_cycles) > 0);
  assert_true(atomic_load(&S.files_deleted) > 0);
  assert_true(atomic_load(&S.joins_a) + atomic_load(&S.leaves_a) > 0);
  assert_true(atomic_load(&S.suspends) > 0);

  ok(rmq_broker_close(S.b));
  /* The store the run left is whole. */
  rmq_broker_options ro;
  rmq_broker_options_init(&ro);
  ro.read_only = 1;
  ro.log_level = RMQ_LOG_ERROR;
  ok(rmq_broker_open(path, &ro, &S.b));
  rmq_check_result cr;
  ok(rmq_broker_check(S.b, NULL, NULL, &cr));
  assert_true(cr.records > 0);
  ok(rmq_broker_close(S.b));
  for (int th = 0; th <= NSEND; th++) free(S.snd[th].recs);
  free(S.min_after);
  pthread_mutex_destroy(&S.ord_mu);
  pthread_mutex_destroy(&S.err_mu);
  tu_store_remove(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_stress),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
