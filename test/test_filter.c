/*
** test_filter.c -- tag expressions (RocketMQ's FilterAPI.buildSubscriptionData
** and ExpressionMessageFilter, ROCKETMQ.md 14): the compiled filter's hash
** pre-check and string re-check, table-driven, plus an end-to-end pull that
** proves a hash collision never reaches the consumer.
*/
#include "test_util.h"
#include "rmq_int.h"

/* Helpers of test_util.h this file does not call. */
static void unused_helpers(void) __attribute__((unused));
static void unused_helpers(void)
{
  (void)tu_log_fn; (void)tu_wait_atleast; (void)tu_clock_advance; (void)tu_clock_read;
}

/* ---- the hash every Java client and broker computes --------------------- */

static void test_jhash_matches_java(void **state)
{
  (void)state;
  static const struct { const char *s; int32_t want; } rows[] = {
    {"", 0},
    {"a", 97},
    {"Aa", 2112},
    {"BB", 2112},
    {"hello", 99162322},
    {"TagA", 2598919},
    {"f5a5a608", 0},                       /* a well-known string hashing to 0 */
    {"polygenelubricants", INT32_MIN},     /* ... and one hashing to MIN_VALUE */
    {"\xc3\xa9", 233},                     /* U+00E9: one UTF-16 unit */
    {"\xe4\xb8\xad", 0x4E2D},              /* U+4E2D */
    {"\xf0\x9f\x98\x80", 0xD83D * 31 + 0xDE00}, /* U+1F600: a surrogate pair */
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    int32_t got = rmqi_jhash(rows[i].s, strlen(rows[i].s));
    if (got != rows[i].want || tu_java_hash(rows[i].s, strlen(rows[i].s)) != rows[i].want)
      fail_msg("row %zu '%s': rmqi_jhash %d, test hash %d, want %d", i, rows[i].s, got, tu_java_hash(rows[i].s, strlen(rows[i].s)),
               rows[i].want);
  }
  /* The collisions the table below relies on. */
  assert_int_equal(rmqi_jhash("Aa", 2), rmqi_jhash("BB", 2));
  assert_int_equal(rmqi_jhash("f5a5a608", 8), 0);
}

/* ---- the filter table --------------------------------------------------- */

/* Messages the table's rows are matched against: tags, or NULL (untagged,
** tags code 0 in the ConsumeQueue). */
enum { M_A, M_B, M_C, M_NONE, M_AA, M_BB, M_SPACE_A, M_COUNT };
static const char *const k_msg_tags[M_COUNT] = {"a", "b", "c", NULL, "Aa", "BB", " a"};

typedef struct filter_row {
  const char *expr;
  int all;                 /* compiles to "everything" */
  int ntags;               /* tags kept after split/trim/drop-empty */
  const char *want;        /* 1/0 per message, in k_msg_tags order: the final verdict */
} filter_row;

static const filter_row k_rows[] = {
  /* expr                 all ntags   a b c none Aa BB " a" */
  {"*",                    1, 0,     "1111111"},
  {"",                     1, 0,     "1111111"},
  {NULL,                   1, 0,     "1111111"},
  {"  *  ",                1, 0,     "1111111"},
  {"   ",                  1, 0,     "1111111"},
  {" \t ",                 1, 0,     "1111111"},
  {"||",                   1, 0,     "1111111"},   /* only empty parts: everything */
  {"a",                    0, 1,     "1000000"},
  {"a || b",               0, 2,     "1100000"},
  {" a ||  b ",            0, 2,     "1100000"},
  {"a||b||c",              0, 3,     "1110000"},
  {"||a||",                0, 1,     "1000000"},
  {"a || || c",            0, 2,     "1010000"},
  {"c||a",                 0, 2,     "1010000"},
  {"Aa",                   0, 1,     "0000100"},   /* "BB" collides: code passes, string fails */
  {"BB",                   0, 1,     "0000010"},
  {"Aa || BB",             0, 2,     "0000110"},
  {"f5a5a608",             0, 1,     "0000000"},   /* hash 0 == untagged's code: still rejected */
  {"A",                    0, 1,     "0000000"},   /* case matters */
  {"a|b",                  0, 1,     "0000000"},   /* a single bar is part of the tag */
};

static void test_filter_table(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof k_rows / sizeof k_rows[0]; i++) {
    const filter_row *row = &k_rows[i];
    rmqi_tag_filter f;
    int rc = rmqi_tag_filter_compile(row->expr, &f);
    if (rc != RMQ_OK) fail_msg("row %zu '%s': compile -> %d (%s)", i, row->expr ? row->expr : "(null)", rc, rmq_errmsg());
    if (f.all != row->all || f.n != row->ntags)
      fail_msg("row %zu '%s': all=%d n=%d, want all=%d n=%d", i, row->expr ? row->expr : "(null)", f.all, f.n, row->all,
               row->ntags);
    for (int m = 0; m < M_COUNT; m++) {
      const char *tags = k_msg_tags[m];
      size_t len = tags ? strlen(tags) : 0;
      int64_t code = tags ? rmqi_jhash(tags, len) : 0;
      int pre = rmqi_tag_filter_code(&f, code);
      int post = rmqi_tag_filter_tags(&f, tags, len);
      int got = pre && post;
      int want = row->want[m] == '1';
      if (got != want)
        fail_msg("row %zu '%s' on message tagged %s: code check %d, string check %d, want %d", i,
                 row->expr ? row->expr : "(null)", tags ? tags : "(untagged)", pre, post, want);
      /* The string re-check alone is exact: it must agree with the verdict. */
      if (post != want)
        fail_msg("row %zu '%s' on %s: string check %d, want %d", i, row->expr ? row->expr : "(null)",
                 tags ? tags : "(untagged)", post, want);
    }
    rmqi_tag_filter_free(&f);
  }
}

/* The pre-check alone lets the collisions through: that is why the
** re-check exists. */
static void test_collision_passes_code_check_only(void **state)
{
  (void)state;
  rmqi_tag_filter f;
  ok(rmqi_tag_filter_compile("Aa", &f));
  assert_int_equal(rmqi_tag_filter_code(&f, rmqi_jhash("BB", 2)), 1);
  assert_int_equal(rmqi_tag_filter_tags(&f, "BB", 2), 0);
  assert_int_equal(rmqi_tag_filter_tags(&f, "Aa", 2), 1);
  /* A prefix or a longer string with the same start is not the tag. */
  assert_int_equal(rmqi_tag_filter_tags(&f, "A", 1), 0);
  assert_int_equal(rmqi_tag_filter_tags(&f, "Aab", 3), 0);
  /* Only the low 32 bits of the stored code count (Java casts to int). */
  assert_int_equal(rmqi_tag_filter_code(&f, (int64_t)2112 + ((int64_t)1 << 32)), 1);
  assert_int_equal(rmqi_tag_filter_code(&f, 2113), 0);
  rmqi_tag_filter_free(&f);

  ok(rmqi_tag_filter_compile("f5a5a608", &f));
  assert_int_equal(rmqi_tag_filter_code(&f, 0), 1);      /* untagged units carry code 0 */
  assert_int_equal(rmqi_tag_filter_tags(&f, NULL, 0), 0);
  rmqi_tag_filter_free(&f);
}

static void test_compiled_tags_are_trimmed_copies(void **state)
{
  (void)state;
  char expr[] = "  x1 ||y2||   z3  ";
  rmqi_tag_filter f;
  ok(rmqi_tag_filter_compile(expr, &f));
  assert_int_equal(f.n, 3);
  memset(expr, 'q', sizeof expr - 1); /* the filter owns its copies */
  const char *want[] = {"x1", "y2", "z3"};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(f.lens[i], 2);
    assert_memory_equal(f.tags[i], want[i], 2);
    assert_int_equal(f.codes[i], tu_java_hash(want[i], strlen(want[i])));
    assert_int_equal(rmqi_tag_filter_tags(&f, want[i], 2), 1);
  }
  rmqi_tag_filter_free(&f);
  assert_int_equal(f.n, 0);
}

static void test_invalid_expressions(void **state)
{
  (void)state;
  static const char *const bad[] = {
    "a||\x01" "b", "\x02", "x\x01", "a || b\x02 || c", "\xff", "a || \xc3", "\xc0\xaf",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rmqi_tag_filter f;
    int rc = rmqi_tag_filter_compile(bad[i], &f);
    if (rc != RMQ_EEXPR) fail_msg("bad expression %zu: rc %d, want RMQ_EEXPR", i, rc);
    assert_true(rmq_errmsg()[0] != 0);
    assert_int_equal(f.n, 0); /* nothing left allocated */
  }
  /* More tags than a filter holds. */
  char big[RMQI_TAGS_MAX * 8 + 64];
  size_t len = 0;
  for (int i = 0; i <= RMQI_TAGS_MAX; i++) len += (size_t)snprintf(big + len, sizeof big - len, "%st%d", i ? "||" : "", i);
  rmqi_tag_filter f;
  assert_int_equal(rmqi_tag_filter_compile(big, &f), RMQ_EEXPR);
  assert_non_null(strstr(rmq_errmsg(), "64"));
  /* Exactly the maximum is fine. */
  len = 0;
  for (int i = 0; i < RMQI_TAGS_MAX; i++) len += (size_t)snprintf(big + len, sizeof big - len, "%st%d", i ? "||" : "", i);
  ok(rmqi_tag_filter_compile(big, &f));
  assert_int_equal(f.n, RMQI_TAGS_MAX);
  assert_int_equal(rmqi_tag_filter_tags(&f, "t63", 3), 1);
  rmqi_tag_filter_free(&f);
}

/* ---- end to end ---------------------------------------------------------- */

typedef struct e2e {
  char path[1024];
  rmq_broker *b;
  rmq_producer *p;
  rmq_pull_consumer *c;
  rmq_message_queue mq;
} e2e;

static void e2e_open(e2e *t, const char *tag)
{
  memset(t, 0, sizeof *t);
  tu_store_path(t->path, sizeof t->path, tag);
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.mapped_file_size_commit_log = 1 << 20;
  ok(rmq_broker_open(t->path, &o, &t->b));
  ok(rmq_topic_create(t->b, "FilterT", 1));
  ok(rmq_producer_create(t->b, "PG", NULL, &t->p));
  ok(rmq_pull_consumer_create(t->b, "CG", &t->c));
  snprintf(t->mq.topic, sizeof t->mq.topic, "FilterT");
  t->mq.queue_id = 0;
}

static void e2e_close(e2e *t)
{
  rmq_pull_consumer_destroy(t->c);
  rmq_producer_destroy(t->p);
  ok(rmq_broker_close(t->b));
  tu_store_remove(t->path);
}

static void e2e_send(e2e *t, const char *tags, int i)
{
  char body[32];
  int n = snprintf(body, sizeof body, "m%d", i);
  rmq_msg *m;
  ok(rmq_msg_create(&m, "FilterT", tags, body, (size_t)n));
  ok(rmq_producer_send(t->p, m, NULL));
  rmq_msg_free(m);
}

static void test_pull_collision_end_to_end(void **state)
{
  (void)state;
  e2e t;
  e2e_open(&t, "filter-e2e");
  /* offsets: 0 Aa, 1 BB, 2 BB, 3 Aa, 4 untagged, 5 BB, 6 Aa */
  const char *seq[] = {"Aa", "BB", "BB", "Aa", NULL, "BB", "Aa"};
  for (int i = 0; i < 7; i++) e2e_send(&t, seq[i], i);

  rmq_pull_result r;
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "Aa", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 3);
  const int64_t want_off[] = {0, 3, 6};
  for (size_t i = 0; i < r.n; i++) {
    assert_int_equal(r.msgs[i].tags_len, 2);
    assert_memory_equal(r.msgs[i].tags, "Aa", 2);
    assert_int_equal(r.msgs[i].queue_offset, want_off[i]);
  }
  assert_int_equal(r.next_begin_offset, 7);

  ok(rmq_pull_consumer_pull(t.c, &t.mq, "BB", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 3);
  for (size_t i = 0; i < r.n; i++) assert_memory_equal(r.msgs[i].tags, "BB", 2);

  /* Collisions pass the ConsumeQueue code check but never the string check. */
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "Aa", 1, 1, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_FOUND);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.msgs[0].queue_offset, 3);
  assert_int_equal(r.next_begin_offset, 4);
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "Aa", 1, 3, &r));
  assert_int_equal(r.n, 2); /* the two BBs before it never count */
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "Aa", 4, 32, &r));
  assert_int_equal(r.n, 1);
  assert_int_equal(r.msgs[0].queue_offset, 6);
  /* Only collisions in range: NO_MATCHED_MSG, and the scan moves past them. */
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "BB", 6, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_MATCHED_MSG);
  assert_int_equal(r.n, 0);
  assert_int_equal(r.next_begin_offset, 7);

  /* A tag hashing to 0 never matches the untagged message at offset 4. */
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "f5a5a608", 0, 32, &r));
  assert_int_equal(r.pull_status, RMQ_PULL_NO_MATCHED_MSG);
  assert_int_equal(r.n, 0);
  assert_int_equal(r.next_begin_offset, 7);

  /* "*" returns everything, the untagged message included. */
  ok(rmq_pull_consumer_pull(t.c, &t.mq, "*", 0, 32, &r));
  assert_int_equal(r.n, 7);
  assert_null(r.msgs[4].tags);
  assert_int_equal(r.msgs[4].tags_len, 0);

  /* Invalid expressions are refused by the pull. */
  assert_int_equal(rmq_pull_consumer_pull(t.c, &t.mq, "a\x01", 0, 32, &r), RMQ_EEXPR);
  e2e_close(&t);
}

static void test_push_subscribe_rejects_invalid_expression(void **state)
{
  (void)state;
  e2e t;
  e2e_open(&t, "filter-sub");
  rmq_push_consumer *pc;
  ok(rmq_push_consumer_create(t.b, "SubG", NULL, &pc));
  assert_int_equal(rmq_push_consumer_subscribe(pc, "FilterT", "x || \x02y"), RMQ_EEXPR);
  assert_true(rmq_errmsg()[0] != 0);
  ok(rmq_push_consumer_subscribe(pc, "FilterT", "Aa || b"));
  rmq_push_consumer_destroy(pc);
  e2e_close(&t);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_jhash_matches_java),
    cmocka_unit_test(test_filter_table),
    cmocka_unit_test(test_collision_passes_code_check_only),
    cmocka_unit_test(test_compiled_tags_are_trimmed_copies),
    cmocka_unit_test(test_invalid_expressions),
    cmocka_unit_test(test_pull_collision_end_to_end),
    cmocka_unit_test(test_push_subscribe_rejects_invalid_expression),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
