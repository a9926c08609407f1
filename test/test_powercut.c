/*
** test_powercut.c -- simulated power cuts (simfs.h) during the durability
** workload (dura.h), as SQLite proves its own crash safety: at a sync point
** or a write call the disk a power cut would leave is written aside (unsynced
** bytes lost, torn at 512 bytes or 4 KiB, or kept; unsynced directory
** entries lost), and a checker thread opens each such image and checks it
** (wl_verify: acknowledged messages there byte for byte, nothing never
** sent, every unit and index entry on a whole record, offsets never
** behind), then runs ../shared/tools/rmqstore.py check on a sample.
**
** `make test` cuts at a sample of points (RMQ_CUT_SYNC_EVERY, default every
** 400th sync call under SYNC_FLUSH and every 30th under ASYNC_FLUSH, and
** RMQ_CUT_WRITE_EVERY, default every 4000th write call). The long
** target, `make powercut`, sets both to 1 and 10 (every sync point, every
** tenth write call) and runs every mode with both flush types. Counts are
** printed per run.
*/
#include "dura.h"

typedef struct pc_img { char dir[1200]; wl_cut cut; } pc_img;

typedef struct pc_run {
  wl w;
  int mode;
  long sync_every, write_every;
  char base[900];
  /* images waiting for the checker */
  pc_img q[4];
  int qn;
  int done;
  pthread_cond_t cv;
  long cuts, checked, py_checked, rmqstore_every;
  wl_check k;
  char kept_failure[1200];
} pc_run;

static pc_run *g_run;

static long env_long(const char *name, long dflt)
{
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* Last CommitLog file start in the real store now. */
static int64_t pc_last_cl_file(const char *store)
{
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/commitlog", store);
  DIR *d = opendir(dir);
  int64_t last = 0;
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strlen(e->d_name) == 20) {
      int64_t v = strtoll(e->d_name, NULL, 10);
      if (v > last) last = v;
    }
  closedir(d);
  return last;
}

/* First CommitLog file start in dir: -1 when none. */
static int64_t pc_first_cl_file(const char *dir)
{
  DIR *d = opendir(dir);
  int64_t first = -1;
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strlen(e->d_name) == 20) {
      int64_t v = strtoll(e->d_name, NULL, 10);
      if (first < 0 || v < first) first = v;
    }
  closedir(d);
  return first;
}

/* sim.mu held. */
static int pc_hook(void *ctx, int op, const char *call, const char *path)
{
  (void)call; (void)path;
  pc_run *r = ctx;
  long ns = atomic_load(&sim.nsync), nw = atomic_load(&sim.nwrite);
  int cut = (op == SIM_OP_SYNC && ns % r->sync_every == 0) || (op == SIM_OP_WRITE && nw % r->write_every == 0);
  if (!cut || r->done) return 0;
  while (r->qn == (int)(sizeof r->q / sizeof r->q[0])) pthread_cond_wait(&r->cv, &sim.mu);
  pc_img *img = &r->q[r->qn];
  /* The cut is now (after any wait): sends that returned before this call
  ** count are covered. Memory writes go on while the image is copied, so
  ** what was begun is read after it. */
  img->cut.call = atomic_load(&sim.ncalls);
  snprintf(img->dir, sizeof img->dir, "%s/cut-%07ld-%ld", r->base, img->cut.call, r->cuts);
  img->cut.last_cl_file = pc_last_cl_file(r->w.store);
  long rv = atomic_load(&r->w.retention_v);
  img->cut.retention_begun = rv && rv <= img->cut.call;
  if (sim_image(img->dir, r->mode) != 0) {
    wl_fail(&r->k, "could not write the image %s: %s", img->dir, strerror(errno));
    return 0;
  }
  for (int t = 0; t < WL_THREADS; t++) img->cut.attempts[t] = atomic_load(&r->w.attempts[t]);
  r->cuts++;
  r->qn++;
  pthread_cond_broadcast(&r->cv);
  return 0;
}

static void *pc_checker(void *arg)
{
  pc_run *r = arg;
  for (;;) {
    pthread_mutex_lock(&sim.mu);
    while (r->qn == 0 && !r->done) pthread_cond_wait(&r->cv, &sim.mu);
    if (r->qn == 0) { pthread_mutex_unlock(&sim.mu); break; }
    pc_img img = r->q[0];
    pthread_mutex_unlock(&sim.mu);
    /* Checked while still queued, so the producer side waits for room. */
    wl_check k = r->k;
    k.why[0] = 0;
    if (getenv("RMQ_CUT_KEEP_RAW")) { /* debugging: the image as cut, before recovery changes it */
      char cmd[2600];
      snprintf(cmd, sizeof cmd, "cp -a '%s' '%s.raw'", img.dir, img.dir);
      if (system(cmd) != 0) wl_fail(&k, "%s failed", cmd);
    }
    wl_verify(&r->w, &img.cut, img.dir, &k);
    if (getenv("RMQ_CUT_KEEP_RAW") && !k.why[0]) { /* only a failing cut's is kept: thousands would fill the disk */
      char cmd[2600];
      snprintf(cmd, sizeof cmd, "rm -rf '%s.raw'", img.dir);
      if (system(cmd) != 0) wl_fail(&k, "%s failed", cmd);
    }
    /* rmqstore.py reads every unit against its record: after retention a
    ** queue's units below its min offset point at deleted records (as in
    ** RocketMQ, a ConsumeQueue file goes only when all its units do), and
    ** it calls a store without a CommitLog file an error. Those images are
    ** checked by wl_verify alone. */
    char cl[1300];
    snprintf(cl, sizeof cl, "%s/commitlog", img.dir);
    int64_t first_cl = pc_first_cl_file(cl);
    if (!k.why[0] && r->rmqstore_every > 0 && first_cl == 0 && r->checked % r->rmqstore_every == 0) {
      char cmd[4096];
      const char *script = tu_rmqstore_script();
      if (script) {
        snprintf(cmd, sizeof cmd, "python3 '%s' check '%s' >'%s.py.log' 2>&1", script, img.dir, img.dir);
        int st = system(cmd);
        if (st != 0) wl_fail(&k, "rmqstore.py check %s failed (see %s.py.log)", img.dir, img.dir);
        else r->py_checked++;
      }
    }
    if (k.why[0]) fprintf(stderr, "cut failed: %s (%s): %s\n", img.dir, sim_mode_name[r->mode], k.why);
    pthread_mutex_lock(&sim.mu);
    r->checked++;
    if (k.why[0] && !r->k.why[0]) {
      snprintf(r->k.why, sizeof r->k.why, "cut at call %ld (%s): %.900s", img.cut.call, sim_mode_name[r->mode], k.why);
      snprintf(r->kept_failure, sizeof r->kept_failure, "%s", img.dir);
    }
    r->k.problems += k.problems;
    memcpy(r->k.offsets, k.offsets, sizeof k.offsets);
    r->k.have_offsets = k.have_offsets;
    r->k.required += k.required;
    memmove(&r->q[0], &r->q[1], (size_t)(r->qn - 1) * sizeof r->q[0]);
    r->qn--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&sim.mu);
    if (!k.why[0]) {
      char cmd[1400];
      snprintf(cmd, sizeof cmd, "%s.py.log", img.dir);
      unlink(cmd);
      tu_rm_rf(img.dir);
      snprintf(cmd, sizeof cmd, "%s.raw", img.dir);
      tu_rm_rf(cmd);
    }
  }
  return NULL;
}

static void run_mode(int flush_type, int mode)
{
  pc_run *r = calloc(1, sizeof *r);
  g_run = r;
  r->mode = mode;
  /* ASYNC_FLUSH syncs about a tenth as often. */
  r->sync_every = env_long("RMQ_CUT_SYNC_EVERY", flush_type == RMQ_SYNC_FLUSH ? 400 : 30);
  r->write_every = env_long("RMQ_CUT_WRITE_EVERY", 4000);
  r->rmqstore_every = env_long("RMQ_CUT_RMQSTORE_EVERY", 8);
  if (r->sync_every < 1) r->sync_every = 1;
  if (r->write_every < 1) r->write_every = 1;
  pthread_cond_init(&r->cv, NULL);
  char store[1024];
  tu_tmpdir(r->base, sizeof r->base, "powercut");
  snprintf(store, sizeof store, "%s/store", r->base);
  assert_int_equal(mkdir(store, 0755), 0);
  wl_init(&r->w, store, flush_type, (int)env_long("RMQ_CUT_MSGS", 10000));
  sim_start(store, 0, pc_hook, r, 0x9e3779b97f4a7c15ull ^ (uint64_t)(mode * 31 + flush_type));
  pthread_t ck;
  pthread_create(&ck, NULL, pc_checker, r);
  int64_t t0 = tu_mono_ms();
  int rc = wl_run(&r->w);
  pthread_mutex_lock(&sim.mu);
  r->done = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&sim.mu);
  pthread_join(ck, NULL);
  long calls = atomic_load(&sim.ncalls), syncs = atomic_load(&sim.nsync), writes = atomic_load(&sim.nwrite);
  sim_stop();
  /* And the store as the workload left it, after its clean close. */
  wl_cut all = {.call = LONG_MAX, .retention_begun = 1, .last_cl_file = INT64_MAX, .all_acks = 1};
  for (int t = 0; t < WL_THREADS; t++) all.attempts[t] = atomic_load(&r->w.attempts[t]);
  wl_check k = r->k;
  wl_verify(&r->w, &all, store, &k);
  print_message("powercut %s %-7s: %ld msgs acked, %ld calls (%ld syncs, %ld writes), %ld cuts checked "
                "(%ld by rmqstore.py), %ld acked messages required in all, %.1f s\n",
                flush_type == RMQ_SYNC_FLUSH ? "SYNC " : "ASYNC", sim_mode_name[mode], atomic_load(&r->w.nacks), calls,
                syncs, writes, r->checked, r->py_checked, r->k.required, (double)(tu_mono_ms() - t0) / 1000.0);
  if (rc) fail_msg("workload close: %s (%s)", rmq_errstr(rc), r->w.first_error);
  if (atomic_load(&r->w.send_errors) || atomic_load(&r->w.other_errors))
    fail_msg("workload errors: %d sends, %d others; first: %s", atomic_load(&r->w.send_errors),
             atomic_load(&r->w.other_errors), r->w.first_error);
  if (r->k.why[0]) fail_msg("%s (image kept: %s)", r->k.why, r->kept_failure);
  if (k.why[0]) fail_msg("after the workload: %s", k.why);
  assert_true(r->checked > 0);
  assert_int_equal(r->checked, r->cuts);
  tu_rm_rf(r->base);
  wl_free(&r->w);
  pthread_cond_destroy(&r->cv);
  free(r);
}

static int only_mode(int flush, int mode)
{
  const char *m = getenv("RMQ_CUT_MODE"), *f = getenv("RMQ_CUT_FLUSH");
  if (f && *f && strcmp(f, flush == RMQ_SYNC_FLUSH ? "sync" : "async") != 0) return 0;
  return !m || !*m || !strcmp(m, sim_mode_name[mode]);
}

#define PC_TEST(flush, mode, name)                 \
  static void name(void **state)                   \
  {                                                \
    (void)state;                                   \
    if (!only_mode(flush, mode)) { skip(); return; }      \
    run_mode(flush, mode);                         \
  }
PC_TEST(RMQ_SYNC_FLUSH, SIM_LOST, test_sync_lost)
PC_TEST(RMQ_SYNC_FLUSH, SIM_TORN512, test_sync_torn512)
PC_TEST(RMQ_SYNC_FLUSH, SIM_TORN4K, test_sync_torn4k)
PC_TEST(RMQ_SYNC_FLUSH, SIM_KEPT, test_sync_kept)
PC_TEST(RMQ_ASYNC_FLUSH, SIM_LOST, test_async_lost)
PC_TEST(RMQ_ASYNC_FLUSH, SIM_TORN512, test_async_torn512)
PC_TEST(RMQ_ASYNC_FLUSH, SIM_TORN4K, test_async_torn4k)
PC_TEST(RMQ_ASYNC_FLUSH, SIM_KEPT, test_async_kept)

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sync_lost),   cmocka_unit_test(test_sync_torn512), cmocka_unit_test(test_sync_torn4k),
      cmocka_unit_test(test_sync_kept),   cmocka_unit_test(test_async_lost),   cmocka_unit_test(test_async_torn512),
      cmocka_unit_test(test_async_torn4k), cmocka_unit_test(test_async_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
