/*
** test_check.c -- rmq_broker_check (rmqadmin checkStore): a sound store
** checks clean with every record, unit and index entry counted; damage to
** a record's body, a record's header, a ConsumeQueue unit or an index
** entry is each reported with its file and offset.
*/
#include "test_util.h"

#include <inttypes.h>

typedef struct seen {
  int n;
  char file[8][1200];
  int64_t off[8];
  char what[8][800];
} seen;

static void on_problem(void *ctx, const char *file, int64_t off, const char *what)
{
  seen *s = ctx;
  if (s->n < 8) {
    snprintf(s->file[s->n], sizeof s->file[0], "%s", file);
    s->off[s->n] = off;
    snprintf(s->what[s->n], sizeof s->what[0], "%s", what);
  }
  s->n++;
}

static rmq_send_result g_res[100];

static void build(const char *path)
{
  rmq_broker_options o;
  tu_small_opts(&o, NULL);
  o.max_hash_slot_num = 101;
  o.max_index_num = 1000;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  ok(rmq_topic_create(b, "ChkTopic", 2));
  rmq_producer *p;
  ok(rmq_producer_create(b, "pg", NULL, &p));
  for (int i = 0; i < 100; i++) {
    char body[64], key[32];
    snprintf(body, sizeof body, "check body %03d ..........................", i);
    snprintf(key, sizeof key, "ck%d", i);
    rmq_msg *m;
    ok(rmq_msg_create(&m, "ChkTopic", i % 2 ? "TagA" : "TagB", body, strlen(body)));
    ok(rmq_msg_set_keys(m, key));
    ok(rmq_producer_send(p, m, &g_res[i]));
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
  ok(rmq_broker_close(b));
}

static int check(const char *path, seen *s, rmq_check_result *r)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.read_only = 1;
  o.log_level = RMQ_LOG_NONE;
  rmq_broker *b;
  ok(rmq_broker_open(path, &o, &b));
  memset(s, 0, sizeof *s);
  int rc = rmq_broker_check(b, on_problem, s, r);
  ok(rmq_broker_close(b));
  return rc;
}

static void poke(const char *file, int64_t off, const void *bytes, size_t n)
{
  int fd = open(file, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
  close(fd);
}

static void test_clean(void **state)
{
  (void)state;
  char path[1024];
  tu_store_path(path, sizeof path, "chk-clean");
  build(path);
  seen s;
  rmq_check_result r;
  ok(check(path, &s, &r));
  assert_int_equal(s.n, 0);
  assert_int_equal(r.records, 100);
  assert_int_equal(r.units, 100);
  assert_int_equal(r.index_entries, 200); /* UNIQ_KEY and one key each */
  assert_int_equal(r.problems, 0);
  assert_true(r.bytes >= g_res[99].commit_log_offset + g_res[99].store_size);
  tu_store_remove(path);
}

static void test_body_flip(void **state)
{
  (void)state;
  char path[1024], cl[1200];
  tu_store_path(path, sizeof path, "chk-body");
  build(path);
  /* Record 40's body: its CRC no longer matches. */
  int64_t phys = g_res[40].commit_log_offset;
  snprintf(cl, sizeof cl, "%s/commitlog/%020" PRId64, path, phys / TU_CL_SIZE * TU_CL_SIZE);
  poke(cl, phys % TU_CL_SIZE + 84 + 4 + 3, "#", 1);
  seen s;
  rmq_check_result r;
  assert_int_equal(check(path, &s, &r), RMQ_ECORRUPT);
  assert_true(s.n >= 1);
  assert_string_equal(s.file[0], cl);
  assert_int_equal(s.off[0], phys % TU_CL_SIZE);
  assert_non_null(strstr(s.what[0], "CRC"));
  /* The records after it are still checked (resynchronised). */
  assert_int_equal(r.records, 99);
  tu_store_remove(path);
}

static void test_unit_and_entry(void **state)
{
  (void)state;
  char path[1024], cq[1200], ix[1400];
  tu_store_path(path, sizeof path, "chk-unit");
  build(path);
  /* Queue of message 10: its unit's size field is wrong. */
  int q = g_res[10].message_queue.queue_id;
  int64_t qo = g_res[10].queue_offset;
  snprintf(cq, sizeof cq, "%s/consumequeue/ChkTopic/%d/%020d", path, q, 0);
  uint8_t bad_size[4] = {0, 0, 0, 7};
  poke(cq, qo * 20 + 8, bad_size, 4);
  seen s;
  rmq_check_result r;
  assert_int_equal(check(path, &s, &r), RMQ_ECORRUPT);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.file[0], cq);
  assert_int_equal(s.off[0], qo * 20);
  assert_non_null(strstr(s.what[0], "size 7"));
  /* Mend it; then point an index entry at another record. */
  uint8_t good[4] = {(uint8_t)(g_res[10].store_size >> 24), (uint8_t)(g_res[10].store_size >> 16),
                     (uint8_t)(g_res[10].store_size >> 8), (uint8_t)g_res[10].store_size};
  poke(cq, qo * 20 + 8, good, 4);
  ok(check(path, &s, &r));
  tu_index_file(path, ix, sizeof ix);
  /* Entry 5's phyOffset -> record 99's offset (it has no key of entry 5's hash). */
  int64_t entry = 40 + 101 * 4 + 5 * 20;
  uint8_t phy[8];
  for (int i = 0; i < 8; i++) phy[i] = (uint8_t)((uint64_t)g_res[99].commit_log_offset >> (56 - 8 * i));
  poke(ix, entry + 4, phy, 8);
  assert_int_equal(check(path, &s, &r), RMQ_ECORRUPT);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.file[0], ix);
  assert_int_equal(s.off[0], entry);
  assert_non_null(strstr(s.what[0], "no key of that hash"));
  tu_store_remove(path);
}

int main(void)
{
  (void)tu_wait_atleast;
  (void)tu_clock_advance;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_clean),
    cmocka_unit_test(test_body_flip),
    cmocka_unit_test(test_unit_and_entry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
