/*
** dura.h -- the durability workload and its checks, shared by the power-cut
** (test_powercut) and I/O-error (test_ioerr) drivers.
**
** The workload, on one broker: 4 threads share a producer and send 10k
** messages (by default) over three topics, plain, ordered (a queue
** selector), batched, delayed (levels 1 and 2) and transactional (commit
** and rollback); a topic is created half way; a lite pull consumer reads
** two topics and commits its offsets; a flusher calls rmq_broker_flush
** every n/40 acknowledgements; retention deletes the complete
** CommitLog files once; the service thread flushes, indexes, delivers and
** checks transactions; small files make the CommitLog, ConsumeQueue and
** index files roll. Every message says who sent it (properties t, s, j and
** k) and its body is derived from that, so any stored message proves what
** it is and that it is whole.
**
** An acknowledgement (wl_ack) notes the sim call count read after the send
** returned: a cut taken at a later call comes after the send returned.
*/
#ifndef RMQ_TEST_DURA_H
#define RMQ_TEST_DURA_H

#include "test_util.h"
#include "simfs.h"

#define WL_THREADS 4
enum { WL_PLAIN, WL_ORDER, WL_BATCH, WL_DELAY, WL_TX_COMMIT, WL_TX_ROLLBACK, WL_NKINDS };
static const char *const wl_kind_name[WL_NKINDS] = {"plain", "order", "batch", "delay", "commit", "rollback"};
static const char *const wl_topics[] = {"PcA", "PcB", "PcC", "PcD"};
#define WL_NTOPICS 4
#define WL_CL_SIZE (256 * 1024)

typedef struct wl_ack {
  atomic_int ready;
  int t, s, j, kind;
  long v;                 /* sim.ncalls read after the send returned */
  int64_t phys;
  char offset_msg_id[RMQ_MSG_ID_SIZE];
  char key[48];
} wl_ack;

typedef struct wl_flush { long n_before; long v_after; } wl_flush;

typedef struct wl {
  int flush_type;
  int n_msgs;             /* per thread: n_msgs / WL_THREADS sends */
  char store[1024];
  rmq_broker *b;
  rmq_producer *p, *tx;
  atomic_int stop_consumer;
  atomic_int producers_done;
  int drain_ms;                     /* how long the consumer may drain after the sends (default 5000) */
  atomic_int attempts[WL_THREADS];  /* sends begun: s < attempts[t] */
  wl_ack *acks;
  atomic_long nacks;
  wl_flush flushes[4096];
  atomic_int nflushes;
  pthread_mutex_t flush_mu;         /* the flush record's writers: consumer and flusher */
  atomic_long retention_v;          /* sim call count when retention began (0: not yet) */
  atomic_int send_errors, other_errors;
  atomic_int unclear_errors;        /* not RMQ_EIO / RMQ_ENOSPC, or no message */
  char first_error[512], first_unclear[512];
  pthread_mutex_t err_mu;
} wl;

static void wl_opts(rmq_broker_options *o, int flush_type, int service)
{
  rmq_broker_options_init(o);
  o->flush_disk_type = flush_type;
  o->mapped_file_size_commit_log = WL_CL_SIZE;
  o->mapped_file_size_consume_queue = 20 * 512;
  o->max_hash_slot_num = 1024;
  o->max_index_num = 8192;
  o->service_thread = service;
  o->file_reserved_time = 0;
  o->delete_when = "";
  o->message_delay_level = "1s 2s";
  o->flush_interval_consume_queue = 200;
  o->flush_consumer_offset_interval = 300;
  o->transaction_timeout = 500;
  o->transaction_check_interval = 300;
  o->log_level = RMQ_LOG_NONE;
}

static uint64_t wl_id(int t, int s, int j) { return ((uint64_t)t << 40) | ((uint64_t)s << 8) | (uint64_t)j; }
static size_t wl_body_len(uint64_t id) { return 40 + (size_t)((id * 7919u) % 300u); }

static int wl_kind_of(int s)
{
  switch (s % 20) {
  case 14: return WL_ORDER;
  case 15: return WL_BATCH;
  case 16: return WL_DELAY;
  case 17: return WL_TX_COMMIT;
  case 18: return WL_TX_ROLLBACK;
  default: return WL_PLAIN;
  }
}

/* The topic (t, s) goes to; PcD once it exists (thread 0 makes it half way). */
static const char *wl_topic_of(int t, int s, int per)
{
  if (t == 0 && s > per / 2 && s % 5 == 0) return "PcD";
  return wl_topics[(t + s) % 3];
}

static rmq_msg *wl_msg(int t, int s, int j, int kind, const char *topic)
{
  uint64_t id = wl_id(t, s, j);
  size_t len = wl_body_len(id);
  uint8_t body[400];
  tu_make_body(body, id, len);
  char tags[8], keys[64], v[32];
  snprintf(tags, sizeof tags, "Tag%d", s % 3);
  snprintf(keys, sizeof keys, "K%d_%d_%d KS%d", t, s, j, s % 50);
  rmq_msg *m;
  if (rmq_msg_create(&m, topic, tags, body, len) != RMQ_OK) return NULL;
  rmq_msg_set_keys(m, keys);
  snprintf(v, sizeof v, "%d", t);
  rmq_msg_put_user_property(m, "t", v);
  snprintf(v, sizeof v, "%d", s);
  rmq_msg_put_user_property(m, "s", v);
  snprintf(v, sizeof v, "%d", j);
  rmq_msg_put_user_property(m, "j", v);
  rmq_msg_put_user_property(m, "k", wl_kind_name[kind]);
  if (kind == WL_DELAY) rmq_msg_set_delay_time_level(m, 1 + s % 2);
  return m;
}

static void wl_error(wl *w, atomic_int *counter, const char *what, int rc)
{
  atomic_fetch_add(counter, 1);
  const char *msg = rmq_errmsg();
  int clear = (rc == RMQ_EIO || rc == RMQ_ENOSPC) && msg && *msg;
  if (!clear) atomic_fetch_add(&w->unclear_errors, 1);
  pthread_mutex_lock(&w->err_mu);
  if (!w->first_error[0]) snprintf(w->first_error, sizeof w->first_error, "%s: %s: %s", what, rmq_errstr(rc), msg);
  if (!clear && !w->first_unclear[0])
    snprintf(w->first_unclear, sizeof w->first_unclear, "%s: %s: %s", what, rmq_errstr(rc), msg);
  pthread_mutex_unlock(&w->err_mu);
}

static void wl_ack_add(wl *w, int t, int s, int j, int kind, const rmq_send_result *r)
{
  long v = atomic_load(&sim.ncalls);
  long i = atomic_fetch_add(&w->nacks, 1);
  wl_ack *a = &w->acks[i];
  a->t = t;
  a->s = s;
  a->j = j;
  a->kind = kind;
  a->v = v;
  a->phys = r->commit_log_offset;
  memcpy(a->offset_msg_id, r->offset_msg_id, sizeof a->offset_msg_id);
  snprintf(a->key, sizeof a->key, "K%d_%d_%d", t, s, j);
  atomic_store_explicit(&a->ready, 1, memory_order_release);
}

static int wl_select(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg)
{
  (void)mqs; (void)m;
  return (int)((uintptr_t)arg % n);
}

static int wl_tx_exec(void *ctx, const rmq_msg *m, const char *tid, void *arg)
{
  (void)ctx; (void)m; (void)tid;
  return (int)(intptr_t)arg;
}

static int wl_tx_check(void *ctx, const rmq_message_ext *m)
{
  (void)ctx;
  const char *v;
  size_t n;
  if (rmq_message_ext_property(m, "k", &v, &n) == RMQ_OK && n == 6 && !memcmp(v, "commit", 6)) return RMQ_COMMIT_MESSAGE;
  return RMQ_ROLLBACK_MESSAGE;
}

typedef struct wl_thread { wl *w; int t; } wl_thread;

static void *wl_producer(void *arg)
{
  wl_thread *th = arg;
  wl *w = th->w;
  int t = th->t, per = w->n_msgs / WL_THREADS;
  for (int s = 0; s < per; s++) {
    if (t == 0 && s == per / 2) {
      int rc = rmq_topic_create(w->b, "PcD", 2);
      if (rc) wl_error(w, &w->other_errors, "topic_create PcD", rc);
    }
    int kind = wl_kind_of(s);
    const char *topic = wl_topic_of(t, s, per);
    atomic_store(&w->attempts[t], s + 1);
    rmq_send_result r;
    int rc;
    if (kind == WL_BATCH) {
      rmq_msg *ms[3];
      rmq_send_result rs[3];
      for (int j = 0; j < 3; j++) ms[j] = wl_msg(t, s, j, kind, topic);
      rc = rmq_producer_send_batch(w->p, (const rmq_msg *const *)ms, 3, rs);
      for (int j = 0; j < 3; j++) {
        if (rc == RMQ_OK && rs[j].send_status == RMQ_SEND_OK) wl_ack_add(w, t, s, j, kind, &rs[j]);
        rmq_msg_free(ms[j]);
      }
      if (rc) wl_error(w, &w->send_errors, "send_batch", rc);
      continue;
    }
    rmq_msg *m = wl_msg(t, s, 0, kind, topic);
    if (!m) { wl_error(w, &w->other_errors, "msg_create", RMQ_ENOMEM); continue; }
    if (kind == WL_ORDER) {
      rc = rmq_producer_send_select(w->p, m, wl_select, (void *)(uintptr_t)s, &r);
    } else if (kind == WL_TX_COMMIT || kind == WL_TX_ROLLBACK) {
      rmq_transaction_send_result tr;
      rc = rmq_producer_send_message_in_transaction(
          w->tx, m, (void *)(intptr_t)(kind == WL_TX_COMMIT ? RMQ_COMMIT_MESSAGE : RMQ_ROLLBACK_MESSAGE), &tr);
      r = tr.send_result;
    } else {
      rc = rmq_producer_send(w->p, m, &r);
    }
    if (rc == RMQ_OK && r.send_status == RMQ_SEND_OK) wl_ack_add(w, t, s, 0, kind, &r);
    else if (rc) wl_error(w, &w->send_errors, wl_kind_name[kind], rc);
    rmq_msg_free(m);
  }
  atomic_fetch_add(&w->producers_done, 1);
  return NULL;
}

/* rmq_broker_flush, and the record of it: the acknowledgements before it
** are required of every cut after it returned (ASYNC_FLUSH's promise). */
static void wl_flush_now(wl *w)
{
  long before = atomic_load(&w->nacks);
  int rc = rmq_broker_flush(w->b);
  if (rc != RMQ_OK) {
    wl_error(w, &w->other_errors, "flush", rc);
    return;
  }
  long v = atomic_load(&sim.ncalls);
  pthread_mutex_lock(&w->flush_mu);
  int i = atomic_load(&w->nflushes);
  if (i < (int)(sizeof w->flushes / sizeof w->flushes[0])) {
    w->flushes[i].n_before = before;
    w->flushes[i].v_after = v;
    atomic_store(&w->nflushes, i + 1);
  }
  pthread_mutex_unlock(&w->flush_mu);
}

/* Flushes every n_msgs / 40 acknowledgements (at least 50), whatever the
** consumer does: under ASYNC_FLUSH the flushes are what make acknowledged
** messages required, and the consumer's alone came too rarely when cuts
** were dense (a few hundred required in a whole run). */
static void *wl_flusher(void *arg)
{
  wl *w = arg;
  long step = w->n_msgs / 40 > 50 ? w->n_msgs / 40 : 50, next = step;
  while (atomic_load(&w->producers_done) < WL_THREADS && !atomic_load(&w->stop_consumer)) {
    if (atomic_load(&w->nacks) < next) {
      usleep(500);
      continue;
    }
    wl_flush_now(w);
    next = atomic_load(&w->nacks) + step;
  }
  return NULL;
}

/* Reads PcA and PcB through a lite pull consumer, committing as it goes;
** flushes now and then (ASYNC_FLUSH acknowledgements before a flush that
** returned must survive); runs retention once. */
static void *wl_consumer(void *arg)
{
  wl *w = arg;
  rmq_pull_consumer *c;
  int rc = rmq_pull_consumer_create(w->b, "PcG", &c);
  if (rc) { wl_error(w, &w->other_errors, "pull_consumer_create", rc); return NULL; }
  rmq_message_queue mqs[8];
  size_t n = 0, got;
  for (int k = 0; k < 2; k++) {
    if (rmq_pull_consumer_fetch_subscribe_message_queues(c, wl_topics[k], mqs + n, 4, &got) == RMQ_OK) n += got;
  }
  rc = rmq_pull_consumer_assign(c, mqs, n, "*");
  if (rc) wl_error(w, &w->other_errors, "assign", rc);
  long polls = 0;
  int retained = 0;
  while (!atomic_load(&w->stop_consumer)) {
    rmq_pull_result r;
    rc = rmq_pull_consumer_poll(c, 32, 5, &r);
    if (rc) { wl_error(w, &w->other_errors, "poll", rc); usleep(2000); }
    if (++polls % 8 == 0 && (rc = rmq_pull_consumer_commit(c)) != RMQ_OK) wl_error(w, &w->other_errors, "commit", rc);
    if (polls % 16 == 0) wl_flush_now(w);
    if (!retained && atomic_load(&w->nacks) > w->n_msgs / 2) {
      retained = 1;
      atomic_store(&w->retention_v, atomic_load(&sim.ncalls) + 1);
      int deleted = 0;
      rc = rmq_broker_delete_expired_files(w->b, &deleted);
      if (rc) wl_error(w, &w->other_errors, "delete_expired_files", rc);
    }
    if (atomic_load(&w->producers_done) == WL_THREADS && rc == RMQ_OK && r.pull_status == RMQ_PULL_NO_NEW_MSG) break;
  }
  rc = rmq_pull_consumer_commit(c);
  if (rc) wl_error(w, &w->other_errors, "final commit", rc);
  rmq_pull_consumer_destroy(c);
  return NULL;
}

/* Runs the workload on w->store (which exists and is watched by sim).
** Returns the close's code (other errors are counted in w). */
static int wl_run(wl *w)
{
  rmq_broker_options o;
  wl_opts(&o, w->flush_type, 1);
  int rc = rmq_broker_open(w->store, &o, &w->b);
  if (rc) { wl_error(w, &w->other_errors, "open", rc); return rc; }
  for (int k = 0; k < 3; k++)
    if ((rc = rmq_topic_create(w->b, wl_topics[k], 4))) wl_error(w, &w->other_errors, "topic_create", rc);
  if ((rc = rmq_producer_create(w->b, "PcP", NULL, &w->p))) wl_error(w, &w->other_errors, "producer_create", rc);
  if ((rc = rmq_producer_create(w->b, "PcTx", NULL, &w->tx))) wl_error(w, &w->other_errors, "producer_create", rc);
  rmq_transaction_listener l = {wl_tx_exec, wl_tx_check, NULL};
  if (w->tx) rmq_producer_set_transaction_listener(w->tx, &l);
  pthread_t th[WL_THREADS], ct, ft;
  wl_thread args[WL_THREADS];
  if (w->p && w->tx) {
    pthread_create(&ct, NULL, wl_consumer, w);
    pthread_create(&ft, NULL, wl_flusher, w);
    for (int t = 0; t < WL_THREADS; t++) {
      args[t] = (wl_thread){w, t};
      pthread_create(&th[t], NULL, wl_producer, &args[t]);
    }
    for (int t = 0; t < WL_THREADS; t++) pthread_join(th[t], NULL);
    pthread_join(ft, NULL);
    /* Let the consumer drain (bounded: a failing store may not let it). */
    int64_t until = tu_mono_ms() + (w->drain_ms ? w->drain_ms : 5000);
    while (tu_mono_ms() < until) {
      pthread_t dummy;
      (void)dummy;
      usleep(20000);
      if (pthread_tryjoin_np(ct, NULL) == 0) goto joined;
    }
    atomic_store(&w->stop_consumer, 1);
    pthread_join(ct, NULL);
  joined:;
  }
  rmq_producer_destroy(w->p);
  rmq_producer_destroy(w->tx);
  w->p = w->tx = NULL;
  rc = rmq_broker_close(w->b);
  w->b = NULL;
  return rc;
}

static void wl_init(wl *w, const char *store, int flush_type, int n_msgs)
{
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->err_mu, NULL);
  pthread_mutex_init(&w->flush_mu, NULL);
  if (snprintf(w->store, sizeof w->store, "%s", store) >= (int)sizeof w->store) fail_msg("path too long: %s", store);
  w->flush_type = flush_type;
  w->n_msgs = n_msgs;
  w->acks = calloc((size_t)n_msgs * 3 + 64, sizeof *w->acks);
}

static void wl_free(wl *w)
{
  free(w->acks);
  w->acks = NULL;
  pthread_mutex_destroy(&w->err_mu);
  pthread_mutex_destroy(&w->flush_mu);
}

/* ---- checking a store after a cut or an error --------------------------- */

/* What was true when the image was taken. */
typedef struct wl_cut {
  long call;                       /* the cut came at this sim call */
  int attempts[WL_THREADS];
  int64_t last_cl_file;            /* start of the newest CommitLog file then */
  int retention_begun;
  int all_acks;                    /* no power was cut: every SEND_OK is required */
} wl_cut;

typedef struct wl_check {
  char why[1024];                  /* the first problem, "" when none */
  int64_t offsets[2][4];           /* PcG's committed offsets, to compare with the next image */
  int have_offsets;
  long required, found_msgs, problems;
} wl_check;

static void wl_fail(wl_check *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wl_fail(wl_check *k, const char *fmt, ...)
{
  k->problems++;
  if (k->why[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->why, sizeof k->why, fmt, ap);
  va_end(ap);
}

static int wl_prop_int(const rmq_message_ext *m, const char *name, int *out)
{
  const char *v;
  size_t n;
  if (rmq_message_ext_property(m, name, &v, &n) != RMQ_OK || n == 0 || n > 11) return 0;
  char buf[16];
  memcpy(buf, v, n);
  buf[n] = 0;
  char *end;
  long x = strtol(buf, &end, 10);
  if (*end || x < 0 || x > INT_MAX) return 0;
  *out = (int)x;
  return 1;
}

/* m is what (t, s, j) was sent as, byte for byte; *kind_out its kind. */
static int wl_msg_matches(const rmq_message_ext *m, int *t, int *s, int *j, int *kind_out, char *why, size_t cap)
{
  if (!wl_prop_int(m, "t", t) || !wl_prop_int(m, "s", s) || !wl_prop_int(m, "j", j) || *t >= WL_THREADS || *j > 2) {
    snprintf(why, cap, "a message never sent (no t/s/j properties) at offset %lld", (long long)m->commit_log_offset);
    return 0;
  }
  uint64_t id = wl_id(*t, *s, *j);
  size_t len = wl_body_len(id);
  uint64_t got;
  if ((size_t)m->body_len != len || !tu_body_check(m->body, len, &got) || got != id) {
    snprintf(why, cap, "body of (%d,%d,%d) at offset %lld is not what was sent", *t, *s, *j,
             (long long)m->commit_log_offset);
    return 0;
  }
  const char *v;
  size_t n;
  int kind = -1;
  if (rmq_message_ext_property(m, "k", &v, &n) == RMQ_OK)
    for (int k = 0; k < WL_NKINDS; k++)
      if (strlen(wl_kind_name[k]) == n && !memcmp(wl_kind_name[k], v, n)) kind = k;
  if (kind != wl_kind_of(*s)) {
    snprintf(why, cap, "kind of (%d,%d,%d) is not what was sent", *t, *s, *j);
    return 0;
  }
  char tags[8], keys[64];
  snprintf(tags, sizeof tags, "Tag%d", *s % 3);
  snprintf(keys, sizeof keys, "K%d_%d_%d KS%d", *t, *s, *j, *s % 50);
  if (!m->tags || (size_t)m->tags_len != strlen(tags) || memcmp(m->tags, tags, strlen(tags)) ||
      !m->keys || (size_t)m->keys_len != strlen(keys) || memcmp(m->keys, keys, strlen(keys))) {
    snprintf(why, cap, "tags or keys of (%d,%d,%d) are not what was sent", *t, *s, *j);
    return 0;
  }
  *kind_out = kind;
  return 1;
}

static int wl_check_cb_count;
static char wl_check_first[512];
static void wl_check_cb(void *ctx, const char *file, int64_t off, const char *problem)
{
  (void)ctx;
  if (wl_check_cb_count++ == 0) snprintf(wl_check_first, sizeof wl_check_first, "%s @%lld: %s", file, (long long)off, problem);
}

/* Opens the store at dir (a cut's image, or the store after an error) and
** checks it against what the workload w had done by cut *c:
**  - every required acknowledgement (SYNC_FLUSH: SEND_OK before the cut;
**    ASYNC_FLUSH: SEND_OK before a flush that returned before the cut) is
**    there byte for byte, found by its offsetMsgId, its key, and (plain,
**    ordered and batched messages) in its topic's queues;
**  - every message in the workload's topics is one that was sent (begun
**    before the cut), whole, at most once (delayed and committed ones may
**    come twice: their delivery is at least once), never a rolled-back one;
**  - rmq_broker_check finds no problem (every ConsumeQueue unit and index
**    entry points at a whole record of its own);
**  - PcG's committed offsets are not behind those of the previous image.
** Problems go to k->why (the first) and k->problems. */
static void wl_verify(wl *w, const wl_cut *c, const char *dir, wl_check *k)
{
  rmq_broker_options o;
  wl_opts(&o, w->flush_type, 0);
  rmq_broker *b;
  k->problems = 0;
  k->why[0] = 0;
  int rc = rmq_broker_open(dir, &o, &b);
  if (rc) { wl_fail(k, "open: %s: %s", rmq_errstr(rc), rmq_errmsg()); return; }
  rmq_recovery_info ri;
  rmq_broker_recovery_info(b, &ri);
  int per = w->n_msgs / WL_THREADS;
  size_t nbits = (size_t)WL_THREADS * (size_t)per * 3;
  uint8_t *seen = calloc(nbits, 1);

  /* The queues. */
  rmq_pull_consumer *pc = NULL;
  rmq_pull_consumer_create(b, "PcVerify", &pc);
  for (int ti = 0; ti < WL_NTOPICS && pc; ti++) {
    rmq_message_queue mqs[8];
    size_t nq = 0;
    if (rmq_pull_consumer_fetch_subscribe_message_queues(pc, wl_topics[ti], mqs, 8, &nq) != RMQ_OK) continue;
    for (size_t q = 0; q < nq; q++) {
      int64_t min = 0, max = 0;
      rmq_topic_queue_offsets(b, wl_topics[ti], mqs[q].queue_id, &min, &max);
      for (int64_t off = min; off < max;) {
        rmq_pull_result r;
        rc = rmq_pull_consumer_pull(pc, &mqs[q], "*", off, 64, &r);
        if (rc) { wl_fail(k, "pull %s/%d @%lld: %s", wl_topics[ti], mqs[q].queue_id, (long long)off, rmq_errmsg()); break; }
        if (r.pull_status != RMQ_PULL_FOUND) {
          wl_fail(k, "pull %s/%d @%lld of [%lld,%lld): status %d", wl_topics[ti], mqs[q].queue_id, (long long)off,
                  (long long)min, (long long)max, r.pull_status);
          break;
        }
        for (size_t i = 0; i < r.n; i++) {
          const rmq_message_ext *m = &r.msgs[i];
          int t, s, j, kind;
          char why[256];
          k->found_msgs++;
          if (!wl_msg_matches(m, &t, &s, &j, &kind, why, sizeof why)) { wl_fail(k, "%s: %s", wl_topics[ti], why); continue; }
          if (s >= per || s >= c->attempts[t]) { wl_fail(k, "(%d,%d,%d) is stored but was never sent", t, s, j); continue; }
          if (kind == WL_TX_ROLLBACK) wl_fail(k, "rolled-back (%d,%d) delivered to %s", t, s, wl_topics[ti]);
          if (strcmp(wl_topic_of(t, s, per), wl_topics[ti]) != 0) wl_fail(k, "(%d,%d,%d) in the wrong topic %s", t, s, j, wl_topics[ti]);
          size_t bit = ((size_t)t * (size_t)per + (size_t)s) * 3 + (size_t)j;
          if (seen[bit] && kind != WL_DELAY && kind != WL_TX_COMMIT)
            wl_fail(k, "(%d,%d,%d) stored twice in %s", t, s, j, wl_topics[ti]);
          seen[bit] = 1;
        }
        off = r.next_begin_offset;
      }
    }
  }
  if (pc) rmq_pull_consumer_destroy(pc);

  /* The acknowledgements. */
  long required_upto = 0; /* ASYNC_FLUSH: acks [0, required_upto) */
  if (w->flush_type != RMQ_SYNC_FLUSH) {
    int nf = atomic_load(&w->nflushes);
    for (int i = 0; i < nf; i++)
      if (w->flushes[i].v_after < c->call && w->flushes[i].n_before > required_upto) required_upto = w->flushes[i].n_before;
  }
  long nacks = atomic_load(&w->nacks);
  k->required = 0;
  for (long i = 0; i < nacks; i++) {
    wl_ack *a = &w->acks[i];
    if (!atomic_load_explicit(&a->ready, memory_order_acquire)) continue;
    if (!c->all_acks && (w->flush_type == RMQ_SYNC_FLUSH ? a->v >= c->call : i >= required_upto)) continue;
    /* Retention may have taken it: only whole files below the newest one. */
    if (a->phys < ri.commitlog_min_offset) {
      if (!c->retention_begun || ri.commitlog_min_offset > c->last_cl_file)
        wl_fail(k, "acknowledged (%d,%d,%d) at %lld is below the CommitLog's start %lld", a->t, a->s, a->j,
                (long long)a->phys, (long long)ri.commitlog_min_offset);
      continue;
    }
    k->required++;
    size_t bit = ((size_t)a->t * (size_t)per + (size_t)a->s) * 3 + (size_t)a->j;
    if (a->kind == WL_PLAIN || a->kind == WL_ORDER || a->kind == WL_BATCH) {
      /* Read whole from its queue above; by its offsetMsgId too, for a sample. */
      if (!seen[bit]) wl_fail(k, "acknowledged (%d,%d,%d) is not in its topic's queues", a->t, a->s, a->j);
      if (i % 16 != 0) continue;
    }
    rmq_message_ext *m = NULL;
    rc = rmq_broker_view_message(b, a->offset_msg_id, &m);
    int t, s, j, kind;
    char why[256];
    if (rc) {
      wl_fail(k, "acknowledged (%d,%d,%d) %s at %lld lost: %s", a->t, a->s, a->j, wl_kind_name[a->kind],
              (long long)a->phys, rmq_errmsg());
    } else if (!wl_msg_matches(m, &t, &s, &j, &kind, why, sizeof why) || t != a->t || s != a->s || j != a->j) {
      wl_fail(k, "acknowledged (%d,%d,%d) at %lld differs: %s", a->t, a->s, a->j, (long long)a->phys, why);
    }
    rmq_message_ext_free(m);
    if (i % 97 == 0) { /* and by key, through the index */
      rmq_query_result qr;
      const char *topic = a->kind == WL_DELAY ? "SCHEDULE_TOPIC_XXXX"
                        : a->kind >= WL_TX_COMMIT ? "RMQ_SYS_TRANS_HALF_TOPIC" : wl_topic_of(a->t, a->s, per);
      rc = rmq_broker_query_message(b, topic, a->key, 8, 0, INT64_MAX, &qr);
      if (rc || qr.n == 0) wl_fail(k, "acknowledged (%d,%d,%d) not found by key %s in %s: %s", a->t, a->s, a->j, a->key, topic,
                                   rc ? rmq_errmsg() : "none");
      if (!rc) rmq_query_result_free(&qr);
    }
  }
  free(seen);

  /* The store as a whole. */
  rmq_check_result cr;
  wl_check_cb_count = 0;
  rc = rmq_broker_check(b, wl_check_cb, NULL, &cr);
  if (rc || cr.problems) wl_fail(k, "check: %lld problems, first: %s", (long long)cr.problems, wl_check_first);

  /* Offsets: never behind an earlier image's (they were durable then). */
  for (int ti = 0; ti < 2; ti++) {
    rmq_queue_progress qp[4];
    size_t n = 0;
    if (rmq_broker_consumer_progress(b, "PcG", wl_topics[ti], qp, 4, &n) != RMQ_OK) n = 0;
    for (size_t q = 0; q < 4; q++) {
      int64_t now = q < n ? qp[q].consumer_offset : -1;
      if (k->have_offsets && now < k->offsets[ti][q])
        wl_fail(k, "PcG's offset of %s/%zu went back from %lld to %lld", wl_topics[ti], q,
                (long long)k->offsets[ti][q], (long long)now);
      if (now > k->offsets[ti][q] || !k->have_offsets) k->offsets[ti][q] = now;
    }
  }
  k->have_offsets = 1;
  rc = rmq_broker_close(b);
  if (rc) wl_fail(k, "close: %s", rmq_errmsg());
}

#endif
