/*
** rmq_filter.c -- message filters: pure functions the core calls, no I/O, no
** locks, no allocation while matching.
**
** Tag expressions (RocketMQ's FilterAPI.buildSubscriptionData and
** ExpressionMessageFilter): "" or "*" matches every message, untagged ones
** too. Otherwise the expression is split on "||", each part trimmed, empty
** parts dropped; the ConsumeQueue pre-check compares the unit's tag code
** (Java String.hashCode of TAGS, truncated to int) with the parts' codes, and
** the consumer re-checks the TAGS string itself, so hash collisions and
** untagged messages never reach a listener.
*/
#include "rmq_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

RMQI_FUNC void rmqi_tag_filter_free(rmqi_tag_filter *f)
{
  for (int i = 0; i < f->n; i++) rmqi_free(f->tags[i], f->lens[i] + 1);
  memset(f, 0, sizeof *f);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'; }

RMQI_FUNC int rmqi_tag_filter_compile(const char *expr, rmqi_tag_filter *f)
{
  memset(f, 0, sizeof *f);
  if (!expr) { f->all = 1; return RMQ_OK; }
  const char *s = expr;
  while (is_space(*s)) s++;
  size_t len = strlen(s);
  while (len && is_space(s[len - 1])) len--;
  if (len == 0 || (len == 1 && s[0] == '*')) { f->all = 1; return RMQ_OK; }
  if (!rmqi_utf8_valid(s, len)) return rmqi_err(RMQ_EEXPR, "tag expression is not valid UTF-8");
  const char *p = s, *end = s + len;
  while (p < end) {
    const char *bar = p;
    while (bar < end && !(bar + 1 < end && bar[0] == '|' && bar[1] == '|')) bar++;
    const char *a = p, *b = bar;
    while (a < b && is_space(*a)) a++;
    while (b > a && is_space(b[-1])) b--;
    if (b > a) {
      if (f->n == RMQI_TAGS_MAX) {
        rmqi_tag_filter_free(f);
        return rmqi_err(RMQ_EEXPR, "tag expression has more than %d tags", RMQI_TAGS_MAX);
      }
      size_t n = (size_t)(b - a);
      for (size_t i = 0; i < n; i++)
        if (a[i] == 1 || a[i] == 2) {
          rmqi_tag_filter_free(f);
          return rmqi_err(RMQ_EEXPR, "tag '%.*s' holds a 0x01/0x02 byte", (int)n, a);
        }
      char *t = rmqi_malloc(n + 1);
      if (!t) { rmqi_tag_filter_free(f); return rmqi_err(RMQ_ENOMEM, "out of memory compiling a tag expression"); }
      memcpy(t, a, n);
      t[n] = 0;
      f->tags[f->n] = t;
      f->lens[f->n] = n;
      f->codes[f->n] = rmqi_jhash(t, n);
      f->n++;
    }
    p = bar + 2;
  }
  if (f->n == 0) { f->all = 1; }
  return RMQ_OK;
}

RMQI_FUNC int rmqi_tag_filter_code(const rmqi_tag_filter *f, int64_t tags_code)
{
  if (f->all) return 1;
  int32_t c = (int32_t)tags_code;
  for (int i = 0; i < f->n; i++)
    if (f->codes[i] == c) return 1;
  return 0;
}

RMQI_FUNC int rmqi_tag_filter_tags(const rmqi_tag_filter *f, const char *tags, size_t len)
{
  if (f->all) return 1;
  if (!tags) return 0;
  for (int i = 0; i < f->n; i++)
    if (f->lens[i] == len && !memcmp(f->tags[i], tags, len)) return 1;
  return 0;
}

/* ======================================================================= */
/* SQL92 property filter (RocketMQ's MessageSelector.bySql)                */
/* ======================================================================= */
/*
** ../shared/ROCKETMQ_SQL92.md is the specification. The expression compiles
** once into an array of nodes (children by index, strings pointing into one
** copy of the text); evaluation walks it with values on the C stack, so a
** match allocates nothing. Depth, length and node count are bounded so no
** input can exhaust the stack.
*/

enum {
  T_EOF, T_IDENT, T_STR, T_INT, T_FLOAT, T_NOT, T_AND, T_OR, T_BETWEEN, T_IN, T_TRUE, T_FALSE, T_NULL, T_IS,
  T_CONTAINS, T_STARTSWITH, T_ENDSWITH, T_EQ, T_NE, T_GT, T_GE, T_LT, T_LE, T_LP, T_RP, T_COMMA, T_PLUS, T_MINUS
};

enum {
  N_PROP, N_STR, N_INT, N_LONG, N_DBL, N_TRUE, N_FALSE, N_NULL, N_NEG, N_NOT, N_AND, N_OR, N_EQ, N_NE, N_GT,
  N_GE, N_LT, N_LE, N_ISNULL, N_ISNOTNULL, N_IN, N_NOTIN, N_CONTAINS, N_NOTCONTAINS, N_STARTS, N_NOTSTARTS,
  N_ENDS, N_NOTENDS, N_BETWEEN, N_NOTBETWEEN
};

#define SQL_MAX_LEN 65536
#define SQL_MAX_DEPTH 64         /* parentheses and prefix operators, while parsing */
#define SQL_MAX_NODES SQL_MAX_LEN /* each node takes at least a byte of text */
/* Evaluation recurses once per level of the tree (AND and OR chains lean
** right and are walked in a loop, so they do not count): this bounds the
** stack an evaluation takes, about half a KiB a level, whatever thread
** calls it. */
#define SQL_MAX_EVAL_DEPTH 256

typedef struct snode {
  uint8_t op;
  uint8_t paren_prop;      /* N_PROP, possibly in parentheses: for IN's check */
  int a, b, c;             /* children; IN: a = property, b = first list node, c = count;
                           ** N_PROP: c = its slot */
  const char *s;           /* N_PROP / N_STR: text (N_STR: quotes undone into the pool) */
  int len;
  int64_t i;               /* N_INT / N_LONG */
  double d;                /* N_DBL */
} snode;

/* A record's properties are read in one pass into one slot per distinct
** property name the expression uses (N_PROP's `c`), when there are at most
** this many; more fall back to a lookup per reference. */
#define SQL_MAX_SLOTS 32

struct rmqi_sql {
  snode *nodes;
  int n, cap;
  char *pool;              /* string literals, unquoted */
  size_t pool_len, pool_cap;
  int root;
  int nslots;              /* distinct property names; > SQL_MAX_SLOTS: no slots */
  int slot_node[SQL_MAX_SLOTS]; /* an N_PROP node naming each slot */
};

typedef struct lexer {
  const char *src, *p, *end;
  int tok;
  const char *ts;          /* token text */
  int tlen;
  int64_t ival;
  int is_long;             /* INT did not fit 32 bits */
  double dval;
  int depth;
  rmqi_sql *out;
  int rc;
  int *terms;              /* AND/OR chain terms being gathered (a stack) */
  int nterms, terms_cap;
} lexer;

static int sql_err(lexer *lx, const char *at, const char *fmt, const char *what)
{
  if (lx->rc) return lx->rc;
  char buf[200];
  snprintf(buf, sizeof buf, fmt, what);
  lx->rc = rmqi_err(RMQ_EEXPR, "%s at column %d", buf, (int)(at - lx->src) + 1);
  return lx->rc;
}

static int kw(const char *s, int n, const char *k)
{
  if ((int)strlen(k) != n) return 0;
  for (int i = 0; i < n; i++)
    if ((s[i] | 0x20) != k[i]) return 0;
  return 1;
}

static int is_ident_start(int c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Reads the next token into lx; RMQ_EEXPR on a lexical error. */
static int lex(lexer *lx)
{
  for (;;) {
    while (lx->p < lx->end && (is_space(*lx->p) || *lx->p == '\f')) lx->p++;
    if (lx->end - lx->p >= 2 && lx->p[0] == '/' && lx->p[1] == '*') {
      const char *e = lx->p + 2;
      while (e + 1 < lx->end && !(e[0] == '*' && e[1] == '/')) e++;
      if (e + 1 >= lx->end) return sql_err(lx, lx->p, "%s", "unterminated comment");
      lx->p = e + 2;
      continue;
    }
    if (lx->end - lx->p >= 2 && lx->p[0] == '-' && lx->p[1] == '-') {
      const char *e = lx->p + 2;
      while (e < lx->end && *e != '\n' && *e != '\r') e++;
      if (e < lx->end) { lx->p = e; continue; } /* a comment needs its line end; else two '-' */
    }
    break;
  }
  const char *s = lx->p;
  lx->ts = s;
  if (s >= lx->end) { lx->tok = T_EOF; lx->tlen = 0; return RMQ_OK; }
  unsigned char c = (unsigned char)*s;
  if (is_ident_start(c)) {
    const char *e = s + 1;
    while (e < lx->end && (is_ident_start((unsigned char)*e) || is_digit((unsigned char)*e))) e++;
    int n = (int)(e - s);
    lx->p = e;
    lx->tlen = n;
    static const struct { const char *k; int t; } kws[] = {
      {"not", T_NOT}, {"and", T_AND}, {"or", T_OR}, {"between", T_BETWEEN}, {"in", T_IN}, {"true", T_TRUE},
      {"false", T_FALSE}, {"null", T_NULL}, {"is", T_IS}, {"contains", T_CONTAINS}, {"startswith", T_STARTSWITH},
      {"endswith", T_ENDSWITH},
    };
    lx->tok = T_IDENT;
    for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++)
      if (kw(s, n, kws[i].k)) lx->tok = kws[i].t;
    if (e < lx->end && ((unsigned char)*e >= 0x80 || *e == '.'))
      return sql_err(lx, e, "%s", "a property name holds only ASCII letters, digits, '_' and '$'");
    return RMQ_OK;
  }
  if (c >= 0x80) return sql_err(lx, s, "%s", "a property name holds only ASCII letters, digits, '_' and '$'");
  if (c == '\'') {
    const char *e = s + 1;
    for (;;) {
      if (e >= lx->end) return sql_err(lx, s, "%s", "unterminated string literal");
      if (*e == '\'') {
        if (e + 1 < lx->end && e[1] == '\'') { e += 2; continue; }
        break;
      }
      e++;
    }
    lx->tok = T_STR;
    lx->tlen = (int)(e + 1 - s);
    lx->p = e + 1;
    return RMQ_OK;
  }
  if (is_digit(c) || (c == '.' && s + 1 < lx->end && is_digit((unsigned char)s[1]))) {
    const char *e = s;
    while (e < lx->end && is_digit((unsigned char)*e)) e++;
    int is_float = 0;
    if (e < lx->end && *e == '.' && !(c == '0' && e == s + 1 && 0)) {
      is_float = 1;
      e++;
      while (e < lx->end && is_digit((unsigned char)*e)) e++;
    }
    if (e < lx->end && (*e == 'e' || *e == 'E')) {
      const char *x = e + 1;
      if (x < lx->end && (*x == '+' || *x == '-')) x++;
      if (x < lx->end && is_digit((unsigned char)*x)) {
        is_float = 1;
        e = x;
        while (e < lx->end && is_digit((unsigned char)*e)) e++;
      }
    }
    if (is_float) {
      /* Any length, as Java's Double.valueOf: long literals get a heap copy
      ** (strtod needs a terminator; the expression need not have one). */
      char sbuf[128], *buf = sbuf;
      size_t n = (size_t)(e - s);
      if (n >= sizeof sbuf && !(buf = rmqi_malloc(n + 1)))
        return lx->rc = rmqi_err(RMQ_ENOMEM, "out of memory compiling a filter");
      memcpy(buf, s, n);
      buf[n] = 0;
      double d = strtod(buf, NULL);
      if (buf != sbuf) rmqi_free(buf, n + 1);
      /* rmq accepts literals equal to zero (RocketMQ rejects them by accident);
      ** overflow and nonzero values that round to zero stay errors. */
      int nonzero = 0;
      for (const char *q = s; q < e && *q != 'e' && *q != 'E'; q++) nonzero |= *q >= '1' && *q <= '9';
      if (d == HUGE_VAL || (nonzero && d == 0.0)) return sql_err(lx, s, "%s", "float literal out of range");
      lx->tok = T_FLOAT;
      lx->dval = d;
      lx->p = e;
      lx->tlen = (int)n;
      return RMQ_OK;
    }
    /* Integers: "0" alone, or [1-9][0-9]* with an optional L. The grammar
    ** gives "0" no suffix, so in "0L" the L is an identifier of its own
    ** (left-over input: an error). */
    if (c == '0') e = s + 1;
    uint64_t v = 0;
    for (const char *q = s; q < e; q++) {
      if (v > (UINT64_C(9223372036854775807) - (uint64_t)(*q - '0')) / 10)
        return sql_err(lx, s, "%s", "integer literal out of range");
      v = v * 10 + (uint64_t)(*q - '0');
    }
    if (c != '0' && e < lx->end && (*e == 'l' || *e == 'L')) e++;
    lx->tok = T_INT;
    lx->ival = (int64_t)v;
    lx->is_long = v > 2147483647u;
    lx->p = e;
    lx->tlen = (int)(e - s);
    return RMQ_OK;
  }
  lx->p = s + 1;
  lx->tlen = 1;
  switch (c) {
  case '=': lx->tok = T_EQ; return RMQ_OK;
  case '(': lx->tok = T_LP; return RMQ_OK;
  case ')': lx->tok = T_RP; return RMQ_OK;
  case ',': lx->tok = T_COMMA; return RMQ_OK;
  case '+': lx->tok = T_PLUS; return RMQ_OK;
  case '-': lx->tok = T_MINUS; return RMQ_OK;
  case '<':
    if (s + 1 < lx->end && s[1] == '>') { lx->tok = T_NE; lx->p = s + 2; lx->tlen = 2; }
    else if (s + 1 < lx->end && s[1] == '=') { lx->tok = T_LE; lx->p = s + 2; lx->tlen = 2; }
    else lx->tok = T_LT;
    return RMQ_OK;
  case '>':
    if (s + 1 < lx->end && s[1] == '=') { lx->tok = T_GE; lx->p = s + 2; lx->tlen = 2; }
    else lx->tok = T_GT;
    return RMQ_OK;
  default: {
    char what[64];
    snprintf(what, sizeof what, "'%c' is not supported", c >= 0x20 && c < 0x7f ? c : '?');
    return sql_err(lx, s, "%s", what);
  }
  }
}

static int node_new(lexer *lx, int op)
{
  rmqi_sql *q = lx->out;
  if (q->n >= SQL_MAX_NODES) { sql_err(lx, lx->ts, "%s", "expression too large"); return -1; }
  if (q->n == q->cap) {
    int ncap = q->cap ? q->cap * 2 : 16;
    snode *nn = rmqi_realloc(q->nodes, (size_t)q->cap * sizeof *nn, (size_t)ncap * sizeof *nn);
    if (!nn) { lx->rc = rmqi_err(RMQ_ENOMEM, "out of memory compiling a filter"); return -1; }
    q->nodes = nn;
    q->cap = ncap;
  }
  snode *n = &q->nodes[q->n];
  memset(n, 0, sizeof *n);
  n->op = (uint8_t)op;
  n->a = n->b = n->c = -1;
  return q->n++;
}

#define ND(i) (lx->out->nodes[i])

/* Boolean-valued nodes (comparisons, logic, IN, CONTAINS...). */
static int is_bool_expr(int op) { return op >= N_NOT && op <= N_NOTBETWEEN; }
static int is_literal(int op) { return op >= N_STR && op <= N_NULL; }
/* What may stand where a boolean is needed (ROCKETMQ_SQL92.md 4). */
static int boolean_ok(int op) { return is_bool_expr(op) || op == N_TRUE || op == N_FALSE || op == N_NULL || op == N_PROP; }

static int parse_or(lexer *lx);

static int expect_bool(lexer *lx, int n, const char *at)
{
  if (n >= 0 && !boolean_ok(ND(n).op)) { sql_err(lx, at, "%s", "a number or string cannot be used as a condition"); return -1; }
  return n;
}

static int parse_primary(lexer *lx)
{
  const char *at = lx->ts;
  int n;
  switch (lx->tok) {
  case T_STR: {
    n = node_new(lx, N_STR);
    if (n < 0) return -1;
    rmqi_sql *q = lx->out;
    size_t need = q->pool_len + (size_t)lx->tlen;
    if (need > q->pool_cap) { sql_err(lx, at, "%s", "internal: string pool"); return -1; }
    char *w = q->pool + q->pool_len;
    int len = 0;
    for (const char *p = lx->ts + 1; p < lx->ts + lx->tlen - 1; p++) {
      w[len++] = *p;
      if (*p == '\'') p++;
    }
    ND(n).s = w;
    ND(n).len = len;
    q->pool_len += (size_t)len;
    break;
  }
  case T_INT:
    n = node_new(lx, lx->is_long ? N_LONG : N_INT);
    if (n < 0) return -1;
    ND(n).i = lx->ival;
    break;
  case T_FLOAT:
    n = node_new(lx, N_DBL);
    if (n < 0) return -1;
    ND(n).d = lx->dval;
    break;
  case T_TRUE: n = node_new(lx, N_TRUE); break;
  case T_FALSE: n = node_new(lx, N_FALSE); break;
  case T_NULL: n = node_new(lx, N_NULL); break;
  case T_IDENT:
    n = node_new(lx, N_PROP);
    if (n < 0) return -1;
    ND(n).s = lx->ts;
    ND(n).len = lx->tlen;
    ND(n).paren_prop = 1;
    break;
  case T_LP:
    if (++lx->depth > SQL_MAX_DEPTH) { sql_err(lx, at, "%s", "expression nested too deeply"); return -1; }
    if (lex(lx)) return -1;
    n = parse_or(lx);
    if (n < 0) return -1;
    if (lx->tok != T_RP) { sql_err(lx, lx->ts, "%s", "expected ')'"); return -1; }
    lx->depth--;
    break;
  default:
    sql_err(lx, at, "%s", lx->tok == T_EOF ? "expected a value, found the end" : "expected a value");
    return -1;
  }
  if (n < 0) return -1;
  if (lex(lx)) return -1;
  return n;
}

static int parse_unary(lexer *lx)
{
  const char *at = lx->ts;
  if (lx->tok == T_PLUS || lx->tok == T_MINUS || lx->tok == T_NOT) {
    int t = lx->tok;
    if (++lx->depth > SQL_MAX_DEPTH) { sql_err(lx, at, "%s", "expression nested too deeply"); return -1; }
    if (lex(lx)) return -1;
    int x = parse_unary(lx);
    lx->depth--;
    if (x < 0) return -1;
    if (t == T_PLUS) return x;
    if (t == T_NOT && expect_bool(lx, x, at) < 0) return -1;
    int n = node_new(lx, t == T_MINUS ? N_NEG : N_NOT);
    if (n < 0) return -1;
    ND(n).a = x;
    return n;
  }
  return parse_primary(lx);
}

/* An operand of > >= < <= (and BETWEEN): not a string, boolean or NULL
** literal, nor a boolean-valued expression. */
static int check_ordered(lexer *lx, int n, const char *at)
{
  int op = ND(n).op;
  if (op == N_STR || op == N_TRUE || op == N_FALSE || op == N_NULL || is_bool_expr(op)) {
    sql_err(lx, at, "%s", "> >= < <= and BETWEEN compare numbers or properties only");
    return -1;
  }
  return n;
}

static int binary(lexer *lx, int op, int a, int b)
{
  int n = node_new(lx, op);
  if (n < 0) return -1;
  ND(n).a = a;
  ND(n).b = b;
  return n;
}

/* BETWEEN's bounds and IN's list both take a third field. */
static int ternary(lexer *lx, int op, int a, int b, int c)
{
  int n = binary(lx, op, a, b);
  if (n >= 0) ND(n).c = c;
  return n;
}

static int parse_cmp(lexer *lx)
{
  const char *at = lx->ts;
  int l = parse_unary(lx);
  if (l < 0) return -1;
  for (;;) {
    const char *opat = lx->ts;
    int t = lx->tok;
    if (t == T_GT || t == T_GE || t == T_LT || t == T_LE) {
      if (lex(lx)) return -1;
      const char *rat = lx->ts;
      int r = parse_unary(lx);
      if (r < 0 || check_ordered(lx, l, at) < 0 || check_ordered(lx, r, rat) < 0) return -1;
      l = binary(lx, t == T_GT ? N_GT : t == T_GE ? N_GE : t == T_LT ? N_LT : N_LE, l, r);
      if (l < 0) return -1;
      continue;
    }
    int neg = 0;
    if (t == T_NOT) {
      /* NOT here must start NOT CONTAINS/STARTSWITH/ENDSWITH/BETWEEN/IN. */
      if (lex(lx)) return -1;
      neg = 1;
      t = lx->tok;
      if (t != T_CONTAINS && t != T_STARTSWITH && t != T_ENDSWITH && t != T_BETWEEN && t != T_IN) {
        sql_err(lx, lx->ts, "%s", "expected CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT");
        return -1;
      }
    }
    if (t == T_CONTAINS || t == T_STARTSWITH || t == T_ENDSWITH) {
      if (lex(lx)) return -1;
      if (lx->tok != T_STR) { sql_err(lx, lx->ts, "%s", "expected a string literal"); return -1; }
      int r = parse_primary(lx);
      if (r < 0) return -1;
      int op = t == T_CONTAINS ? N_CONTAINS : t == T_STARTSWITH ? N_STARTS : N_ENDS;
      l = binary(lx, op + neg, l, r);
      if (l < 0) return -1;
      continue;
    }
    if (t == T_BETWEEN) {
      if (ND(l).op == N_NOT) { sql_err(lx, opat, "%s", "write NOT (...) around a condition"); return -1; }
      if (lex(lx)) return -1;
      const char *lo_at = lx->ts;
      int lo = parse_unary(lx);
      if (lo < 0) return -1;
      if (lx->tok != T_AND) { sql_err(lx, lx->ts, "%s", "expected AND in BETWEEN"); return -1; }
      if (lex(lx)) return -1;
      const char *hi_at = lx->ts;
      int hi = parse_unary(lx);
      if (hi < 0) return -1;
      if (check_ordered(lx, l, at) < 0 || check_ordered(lx, lo, lo_at) < 0 || check_ordered(lx, hi, hi_at) < 0) return -1;
      if (!neg) {
        int lop = ND(lo).op, hop = ND(hi).op;
        if ((lop == N_INT || lop == N_LONG || lop == N_DBL) && (hop == N_INT || hop == N_LONG || hop == N_DBL)) {
          double a = lop == N_DBL ? ND(lo).d : (double)ND(lo).i, b = hop == N_DBL ? ND(hi).d : (double)ND(hi).i;
          int gt = (lop != N_DBL && hop != N_DBL) ? ND(lo).i > ND(hi).i : a > b;
          if (gt) { sql_err(lx, lo_at, "%s", "BETWEEN's low bound is above its high bound"); return -1; }
        }
      }
      l = ternary(lx, neg ? N_NOTBETWEEN : N_BETWEEN, l, lo, hi);
      if (l < 0) return -1;
      continue;
    }
    if (t == T_IN) {
      if (ND(l).op != N_PROP) { sql_err(lx, opat, "%s", "IN needs a property on its left"); return -1; }
      if (lex(lx)) return -1;
      if (lx->tok != T_LP) { sql_err(lx, lx->ts, "%s", "expected '(' after IN"); return -1; }
      if (lex(lx)) return -1;
      int first = -1, count = 0;
      for (;;) {
        if (lx->tok != T_STR) { sql_err(lx, lx->ts, "%s", "expected a string literal after IN ("); return -1; }
        int s = parse_primary(lx);
        if (s < 0) return -1;
        if (first < 0) first = s;
        count++;
        if (lx->tok == T_COMMA) { if (lex(lx)) return -1; continue; }
        if (lx->tok == T_RP) break;
        sql_err(lx, lx->ts, "%s", "expected ',' or ')' in the IN list");
        return -1;
      }
      if (lex(lx)) return -1;
      l = ternary(lx, neg ? N_NOTIN : N_IN, l, first, count);
      if (l < 0) return -1;
      continue;
    }
    if (neg) return -1; /* not reached */
    return l;
  }
}

static int parse_eq(lexer *lx)
{
  int l = parse_cmp(lx);
  if (l < 0) return -1;
  for (;;) {
    const char *at = lx->ts;
    if (lx->tok == T_EQ || lx->tok == T_NE) {
      int t = lx->tok;
      if (lex(lx)) return -1;
      int r = parse_cmp(lx);
      if (r < 0) return -1;
      if (ND(l).op == N_NULL || ND(r).op == N_NULL) { sql_err(lx, at, "%s", "compare with NULL by IS NULL"); return -1; }
      int lo = ND(l).op, ro = ND(r).op;
      if (is_literal(lo) && is_literal(ro) && (lo == N_TRUE || lo == N_FALSE) && ro != N_TRUE && ro != N_FALSE) {
        sql_err(lx, at, "%s", "TRUE or FALSE compares only with a boolean here");
        return -1;
      }
      l = binary(lx, t == T_EQ ? N_EQ : N_NE, l, r);
      if (l < 0) return -1;
      continue;
    }
    if (lx->tok == T_IS) {
      if (lex(lx)) return -1;
      int op = N_ISNULL;
      if (lx->tok == T_NOT) { op = N_ISNOTNULL; if (lex(lx)) return -1; }
      if (lx->tok != T_NULL) { sql_err(lx, lx->ts, "%s", "expected NULL after IS"); return -1; }
      if (lex(lx)) return -1;
      l = binary(lx, op, l, -1);
      if (l < 0) return -1;
      continue;
    }
    return l;
  }
}

/* AND and OR: left-associative chains of boolean operands of `sub`. */
static int push_term(lexer *lx, int t)
{
  if (lx->nterms == lx->terms_cap) {
    int ncap = lx->terms_cap ? 2 * lx->terms_cap : 64;
    int *nt = rmqi_realloc(lx->terms, (size_t)lx->terms_cap * sizeof *nt, (size_t)ncap * sizeof *nt);
    if (!nt) { lx->rc = rmqi_err(RMQ_ENOMEM, "out of memory compiling a filter"); return -1; }
    lx->terms = nt;
    lx->terms_cap = ncap;
  }
  lx->terms[lx->nterms++] = t;
  return 0;
}

/* A chain `t1 AND t2 AND t3` is built leaning right, AND(t1, AND(t2, t3)),
** so that eval walks it in a loop in source order; with Java's left-to-right
** short circuit the result is the same as the left-leaning tree's. The
** terms are gathered first so that every node still follows its children
** in the node array (check_eval_depth relies on it). */
static int parse_logic(lexer *lx, int tok, int op, int (*sub)(lexer *))
{
  const char *at = lx->ts;
  int l = sub(lx);
  if (l < 0) return -1;
  if (lx->tok != tok) return l;
  int base = lx->nterms;
  if (push_term(lx, l) < 0) return -1;
  while (lx->tok == tok) {
    if (expect_bool(lx, l, at) < 0 || lex(lx)) return -1;
    at = lx->ts;
    l = sub(lx);
    if (l < 0 || expect_bool(lx, l, at) < 0 || push_term(lx, l) < 0) return -1;
  }
  int r = lx->terms[--lx->nterms];
  while (lx->nterms > base) {
    r = binary(lx, op, lx->terms[--lx->nterms], r);
    if (r < 0) return -1;
  }
  return r;
}

static int parse_and(lexer *lx) { return parse_logic(lx, T_AND, N_AND, parse_eq); }
static int parse_or(lexer *lx) { return parse_logic(lx, T_OR, N_OR, parse_and); }

RMQI_FUNC void rmqi_sql_free(rmqi_sql *q)
{
  if (!q) return;
  rmqi_free(q->nodes, (size_t)q->cap * sizeof *q->nodes);
  rmqi_free(q->pool, q->pool_cap + 1);
  rmqi_free(q, sizeof *q);
}

/* The stack depth eval reaches from each node (children come before their
** parents in the node array, so one pass does it). */
static int check_eval_depth(rmqi_sql *q)
{
  int *h = rmqi_malloc((size_t)q->n * sizeof *h);
  if (!h) return rmqi_err(RMQ_ENOMEM, "out of memory compiling a filter");
  int worst = 0;
  for (int i = 0; i < q->n; i++) {
    const snode *n = &q->nodes[i];
    int d = 0;
    switch (n->op) {
    case N_PROP: case N_STR: case N_INT: case N_LONG: case N_DBL: case N_TRUE: case N_FALSE: case N_NULL:
      break;
    case N_NEG: case N_NOT: case N_ISNULL: case N_ISNOTNULL: case N_IN: case N_NOTIN:
      d = h[n->a];
      break;
    case N_AND: case N_OR:
      /* The chain's next link runs in this frame. */
      d = h[n->a];
      if (q->nodes[n->b].op == n->op) { if (h[n->b] - 1 > d) d = h[n->b] - 1; }
      else if (h[n->b] > d) d = h[n->b];
      break;
    default: /* binary and BETWEEN */
      d = h[n->a] > h[n->b] ? h[n->a] : h[n->b];
      if (n->c >= 0 && h[n->c] > d) d = h[n->c];
      break;
    }
    h[i] = d + 1;
    if (h[i] > worst) worst = h[i];
  }
  rmqi_free(h, (size_t)q->n * sizeof *h);
  if (worst > SQL_MAX_EVAL_DEPTH)
    return rmqi_err(RMQ_EEXPR, "expression nested too deeply: its operators nest %d levels (at most %d)", worst,
                    SQL_MAX_EVAL_DEPTH);
  return RMQ_OK;
}

RMQI_FUNC int rmqi_sql_compile(const char *expr, rmqi_sql **out)
{
  *out = NULL;
  if (!expr) return rmqi_err(RMQ_EEXPR, "the SQL92 expression is NULL");
  size_t len = strlen(expr);
  if (len > SQL_MAX_LEN) return rmqi_err(RMQ_EEXPR, "the SQL92 expression is longer than %d bytes", SQL_MAX_LEN);
  rmqi_sql *q = rmqi_calloc(1, sizeof *q);
  if (!q) return rmqi_err(RMQ_ENOMEM, "out of memory compiling a filter");
  /* The text is kept (property names point into it), then the unquoted
  ** literals, which are never longer than the text. */
  q->pool_cap = 2 * len + 1;
  q->pool = rmqi_malloc(q->pool_cap + 1);
  if (!q->pool) { rmqi_free(q, sizeof *q); return rmqi_err(RMQ_ENOMEM, "out of memory compiling a filter"); }
  memcpy(q->pool, expr, len + 1);
  q->pool_len = len + 1;
  lexer lx = {0};
  lx.src = q->pool;
  lx.p = q->pool;
  lx.end = q->pool + len;
  lx.out = q;
  int rc = lex(&lx);
  if (!rc && lx.tok == T_EOF) rc = rmqi_err(RMQ_EEXPR, "the SQL92 expression is empty");
  int root = rc ? -1 : parse_or(&lx);
  if (!rc && root >= 0) rc = expect_bool(&lx, root, lx.src) < 0 ? lx.rc : RMQ_OK;
  /* rmq's difference 1: nothing may follow a complete expression. */
  if (!rc && root >= 0 && lx.tok != T_EOF) {
    /* Name what RocketMQ's grammar lacks but SQL users try first. */
    const char *what = "unexpected input after the expression";
    if (lx.tok == T_IDENT && kw(lx.ts, lx.tlen, "like")) what = "LIKE is not supported";
    else if (lx.tok == T_IDENT && kw(lx.ts, lx.tlen, "escape")) what = "ESCAPE is not supported";
    else if (lx.tok == T_PLUS || lx.tok == T_MINUS) what = "arithmetic is not supported";
    rc = sql_err(&lx, lx.ts, "%s", what);
  }
  if (!rc && root < 0) rc = lx.rc ? lx.rc : rmqi_err(RMQ_EEXPR, "invalid SQL92 expression");
  rmqi_free(lx.terms, (size_t)lx.terms_cap * sizeof *lx.terms);
  if (!rc) rc = check_eval_depth(q);
  if (rc) { rmqi_sql_free(q); return rc; }
  q->root = root;
  for (int i = 0; i < q->n; i++) {
    snode *n = &q->nodes[i];
    if (n->op != N_PROP) continue;
    int k = 0;
    while (k < q->nslots && k < SQL_MAX_SLOTS) {
      const snode *o = &q->nodes[q->slot_node[k]];
      if (o->len == n->len && !memcmp(o->s, n->s, (size_t)n->len)) break;
      k++;
    }
    if (k == q->nslots) {
      if (k < SQL_MAX_SLOTS) q->slot_node[k] = i;
      q->nslots++;
    }
    n->c = k;
  }
  *out = q;
  return RMQ_OK;
}

/* ---- evaluation ---------------------------------------------------------- */

enum { V_NULL, V_STR, V_INT, V_LONG, V_DBL, V_BOOL, V_ERR };

typedef struct sval {
  int t;
  const char *s;
  size_t n;
  int64_t i;
  double d;
} sval;

typedef struct sctx {
  const rmqi_sql *q;
  rmqi_sql_getter get;     /* NULL: the values are in slots */
  void *ud;
  const char *const *val;  /* per slot, set when its bit is in `present` */
  const uint32_t *vlen;
  uint32_t present;
} sctx;

static sval vnull(void) { sval v = {V_NULL, NULL, 0, 0, 0}; return v; }
static sval verr(void) { sval v = {V_ERR, NULL, 0, 0, 0}; return v; }
static sval vbool(int b) { sval v = {V_BOOL, NULL, 0, b, 0}; return v; }

/* The first code point of each run of ten decimal digits (Unicode category
** Nd) in the Basic Multilingual Plane, Unicode 14. Java's Integer/Long
** parsing takes any of them (Character.digit on one UTF-16 unit, so digits
** beyond the BMP are not digits there). */
static const uint16_t k_bmp_digit_zero[] = {
  0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
  0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
  0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10};

/* The decimal digit at s[*i] (ASCII, or a UTF-8 encoded BMP digit), moving
** *i past it; -1 when it is not one. Malformed UTF-8 is never a digit: Java
** decodes it to U+FFFD. */
static int java_digit(const char *s, size_t n, size_t *i)
{
  unsigned c = (unsigned char)s[*i];
  if (c < 0x80) { (*i)++; return is_digit(c) ? (int)(c - '0') : -1; }
  unsigned cp;
  size_t len;
  if (c >= 0xC2 && c <= 0xDF) { cp = c & 0x1F; len = 2; }
  else if (c >= 0xE0 && c <= 0xEF) { cp = c & 0x0F; len = 3; }
  else return -1;
  if (n - *i < len) return -1;
  for (size_t k = 1; k < len; k++) {
    unsigned cc = (unsigned char)s[*i + k];
    if ((cc & 0xC0) != 0x80) return -1;
    cp = cp << 6 | (cc & 0x3F);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return -1;
  int lo = 0, hi = (int)(sizeof k_bmp_digit_zero / sizeof *k_bmp_digit_zero) - 1, at = -1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (k_bmp_digit_zero[mid] <= cp) { at = mid; lo = mid + 1; } else hi = mid - 1;
  }
  if (at < 0 || cp - k_bmp_digit_zero[at] > 9) return -1;
  *i += len;
  return (int)(cp - k_bmp_digit_zero[at]);
}

/* Java's Integer/Long.parseInt: optional ASCII sign, decimal digits of any
** script (java_digit), range. */
static int parse_java_long(const char *s, size_t n, int bits, int64_t *out)
{
  if (n == 0) return 0;
  size_t i = 0;
  int neg = 0;
  if (s[0] == '-' || s[0] == '+') { neg = s[0] == '-'; i = 1; if (n == 1) return 0; }
  uint64_t lim = bits == 32 ? (neg ? 2147483648u : 2147483647u) : (neg ? UINT64_C(9223372036854775808) : UINT64_C(9223372036854775807));
  uint64_t v = 0;
  while (i < n) {
    int d = java_digit(s, n, &i);
    if (d < 0) return 0;
    if (v > (lim - (uint64_t)d) / 10) return 0;
    v = v * 10 + (uint64_t)d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 1;
}

/* Java's Double.parseDouble: trims, accepts exponents, NaN, Infinity, hex
** floats and a d/f suffix. */
static int parse_java_double_z(char *buf, size_t n, double *out);

static int parse_java_double(const char *s, size_t n, double *out)
{
  while (n && (unsigned char)*s <= ' ') { s++; n--; }
  while (n && (unsigned char)s[n - 1] <= ' ') n--;
  if (n == 0) return 0;
  /* strtod wants a terminated copy; numbers longer than the stack buffer
  ** (Java reads any length) are rare enough to take the heap. */
  char sbuf[360], *buf = sbuf;
  if (n >= sizeof sbuf && !(buf = rmqi_malloc(n + 1))) return 0;
  memcpy(buf, s, n);
  buf[n] = 0;
  int ok = parse_java_double_z(buf, n, out);
  if (buf != sbuf) rmqi_free(buf, n + 1);
  return ok;
}

/* buf holds n > 0 trimmed bytes and a terminator; it may be changed. */
static int parse_java_double_z(char *buf, size_t n, double *out)
{
  if (buf[n - 1] == 'd' || buf[n - 1] == 'D' || buf[n - 1] == 'f' || buf[n - 1] == 'F') buf[--n] = 0;
  if (n == 0) return 0;
  const char *b = buf;
  int sign = 1;
  if (*b == '+' || *b == '-') { sign = *b == '-' ? -1 : 1; b++; }
  if (!strcmp(b, "NaN")) { *out = NAN; return 1; }
  if (!strcmp(b, "Infinity")) { *out = sign * INFINITY; return 1; }
  /* strtod also takes "inf", "nan", "infinity" in any case: Java does not. */
  for (const char *c = b; *c; c++)
    if (!(is_digit((unsigned char)*c) || *c == '.' || *c == 'e' || *c == 'E' || *c == '+' || *c == '-' || *c == 'x' ||
          *c == 'X' || *c == 'p' || *c == 'P' || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')))
      return 0;
  if ((b[0] == '0' && (b[1] == 'x' || b[1] == 'X'))) {
    if (!strchr(b, 'p') && !strchr(b, 'P')) return 0; /* Java's hex floats need the exponent */
  } else {
    for (const char *c = b; *c; c++)
      if ((*c >= 'a' && *c <= 'f' && *c != 'e') || (*c >= 'A' && *c <= 'F' && *c != 'E') || *c == 'x' || *c == 'X' ||
          *c == 'p' || *c == 'P')
        return 0;
  }
  char *end;
  double d = strtod(buf, &end);
  if (*end || end == buf) return 0;
  *out = d;
  return 1;
}

/* Java's Double.compareTo: -0.0 < 0.0, NaN above everything, NaN == NaN. */
static int dcmp(double a, double b)
{
  if (a < b) return -1;
  if (a > b) return 1;
  int an = isnan(a), bn = isnan(b);
  if (an || bn) return an - bn;
  if (a == 0 && b == 0) return (signbit(b) ? 1 : 0) - (signbit(a) ? 1 : 0);
  return 0;
}

/* The coerced comparison (ROCKETMQ_SQL92.md 5): sets *c to <0, 0, >0.
** Returns 0 when it throws. */
static int compare(sval l, sval r, int *c)
{
  /* Number vs string: the string is read as the number's type. */
  if (l.t == V_STR && (r.t == V_INT || r.t == V_LONG || r.t == V_DBL)) {
    sval t = l; l = r; r = t;
    int ok = compare(l, r, c);
    if (ok) *c = -*c; /* on a throw *c was never set */
    return ok;
  }
  if ((l.t == V_INT || l.t == V_LONG) && r.t == V_STR) {
    int64_t v;
    if (!parse_java_long(r.s, r.n, l.t == V_INT ? 32 : 64, &v)) return 0;
    *c = l.i < v ? -1 : l.i > v;
    return 1;
  }
  if (l.t == V_DBL && r.t == V_STR) {
    double v;
    if (!parse_java_double(r.s, r.n, &v)) return 0;
    *c = dcmp(l.d, v);
    return 1;
  }
  if ((l.t == V_INT || l.t == V_LONG) && (r.t == V_INT || r.t == V_LONG)) { *c = l.i < r.i ? -1 : l.i > r.i; return 1; }
  if ((l.t == V_INT || l.t == V_LONG || l.t == V_DBL) && (r.t == V_INT || r.t == V_LONG || r.t == V_DBL)) {
    double a = l.t == V_DBL ? l.d : (double)l.i, b = r.t == V_DBL ? r.d : (double)r.i;
    *c = dcmp(a, b);
    return 1;
  }
  if (l.t == V_STR && r.t == V_STR) {
    size_t m = l.n < r.n ? l.n : r.n;
    int k = memcmp(l.s, r.s, m);
    *c = k ? k : (l.n < r.n ? -1 : l.n > r.n);
    return 1;
  }
  if (l.t == V_STR && r.t == V_BOOL) {
    int tv = l.n == 4 && kw(l.s, 4, "true");
    *c = tv == (int)r.i ? 0 : tv < (int)r.i ? -1 : 1;
    return 1;
  }
  if (l.t == V_BOOL && r.t == V_BOOL) { *c = (int)(l.i - r.i); return 1; }
  if (l.t == V_BOOL && r.t == V_STR) return 0; /* RocketMQ's cast bug throws */
  *c = -1;                                      /* other mixes: "less" */
  return 1;
}

static sval eval(sctx *x, int i);

/* Property names and values are a few bytes: comparing inline beats a
** call to memcmp. */
static inline int bytes_eq(const char *a, const char *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* A property or a value as a condition: null stays null, strings are FALSE. */
static sval as_bool(sval v)
{
  if (v.t == V_NULL || v.t == V_ERR || v.t == V_BOOL) return v;
  return vbool(0);
}

static sval eval_eq(sctx *x, const snode *n)
{
  const snode *ln = &x->q->nodes[n->a], *rn = &x->q->nodes[n->b];
  sval l = eval(x, n->a), r = eval(x, n->b);
  if (l.t == V_ERR || r.t == V_ERR) return verr();
  if (l.t == V_NULL && r.t == V_NULL) return vbool(1);
  if (l.t == V_NULL) return vnull();
  if (r.t == V_NULL) return vbool(0);
  if (l.t == V_STR && r.t == V_STR) return vbool(l.n == r.n && bytes_eq(l.s, r.s, l.n));
  int c;
  /* rmq's difference 3: TRUE/FALSE left of a present property compares as
  ** the mirrored expression (RocketMQ throws there). */
  if ((ln->op == N_TRUE || ln->op == N_FALSE) && rn->op == N_PROP && r.t == V_STR) {
    if (!compare(r, l, &c)) return verr();
    return vbool(c == 0);
  }
  if (!compare(l, r, &c)) return verr();
  return vbool(c == 0);
}

/* As RocketMQ: a null (or failed) left side decides before the right side
** is evaluated, so a failure on the right cannot override a null left. */
static sval eval_ordered(sctx *x, int op, sval l, int rnode)
{
  if (l.t == V_ERR || l.t == V_NULL) return l;
  sval r = eval(x, rnode);
  if (r.t == V_ERR || r.t == V_NULL) return r;
  int c;
  if (l.t == V_STR && r.t == V_STR) {
    double a, b;
    if (!parse_java_double(l.s, l.n, &a) || !parse_java_double(r.s, r.n, &b)) return verr();
    c = dcmp(a, b);
  } else if (!compare(l, r, &c)) {
    return verr();
  }
  switch (op) {
  case N_GT: return vbool(c > 0);
  case N_GE: return vbool(c >= 0);
  case N_LT: return vbool(c < 0);
  default: return vbool(c <= 0);
  }
}

static sval eval(sctx *x, int i)
{
  const snode *n = &x->q->nodes[i];
  switch (n->op) {
  case N_PROP: {
    const char *v;
    size_t vl;
    if (!x->get) {
      if (!(x->present >> n->c & 1)) return vnull();
      v = x->val[n->c];
      vl = x->vlen[n->c];
    } else if (!x->get(x->ud, n->s, (size_t)n->len, &v, &vl)) {
      return vnull();
    }
    sval r = {V_STR, v, vl, 0, 0};
    return r;
  }
  case N_STR: { sval r = {V_STR, n->s, (size_t)n->len, 0, 0}; return r; }
  case N_INT: { sval r = {V_INT, NULL, 0, n->i, 0}; return r; }
  case N_LONG: { sval r = {V_LONG, NULL, 0, n->i, 0}; return r; }
  case N_DBL: { sval r = {V_DBL, NULL, 0, 0, n->d}; return r; }
  case N_TRUE: return vbool(1);
  case N_FALSE: return vbool(0);
  case N_NULL: return vnull();
  case N_NEG: {
    sval v = eval(x, n->a);
    if (v.t == V_INT) { if (v.i == INT32_MIN) { v.t = V_LONG; } v.i = -v.i; return v; }
    if (v.t == V_LONG) { v.i = (int64_t)(0 - (uint64_t)v.i); return v; }
    if (v.t == V_DBL) { v.d = -v.d; return v; }
    if (v.t == V_ERR) return v;
    return vnull();
  }
  case N_NOT: {
    sval v = as_bool(eval(x, n->a));
    if (v.t == V_BOOL) v.i = !v.i;
    return v;
  }
  case N_AND: case N_OR: {
    /* The chain's terms in source order: an exception or the deciding value
    ** (FALSE for AND, TRUE for OR) ends it; else null if any was null. */
    int op = n->op, stop = op == N_OR, saw_null = 0;
    for (int j = i;;) {
      const snode *m = &x->q->nodes[j];
      int more = m->op == op;
      sval v = as_bool(eval(x, more ? m->a : j));
      if (v.t == V_ERR) return v;
      if (v.t == V_BOOL && v.i == stop) return v;
      if (v.t == V_NULL) saw_null = 1;
      if (!more) break;
      j = m->b;
    }
    return saw_null ? vnull() : vbool(!stop);
  }
  case N_EQ: return eval_eq(x, n);
  case N_NE: {
    sval v = eval_eq(x, n);
    if (v.t == V_BOOL) v.i = !v.i;
    return v;
  }
  case N_GT: case N_GE: case N_LT: case N_LE:
    return eval_ordered(x, n->op, eval(x, n->a), n->b);
  case N_ISNULL: case N_ISNOTNULL: {
    sval v = eval(x, n->a);
    if (v.t == V_ERR) return v;
    return vbool((v.t == V_NULL) == (n->op == N_ISNULL));
  }
  case N_IN: case N_NOTIN: {
    sval v = eval(x, n->a);
    if (v.t == V_ERR) return v;
    if (v.t != V_STR) return vnull();
    int found = 0;
    for (int k = 0; k < n->c && !found; k++) {
      const snode *s = &x->q->nodes[n->b + k];
      found = (size_t)s->len == v.n && bytes_eq(s->s, v.s, v.n);
    }
    return vbool(n->op == N_IN ? found : !found);
  }
  case N_CONTAINS: case N_NOTCONTAINS: case N_STARTS: case N_NOTSTARTS: case N_ENDS: case N_NOTENDS: {
    /* An empty pattern is FALSE (NOT forms too) before the left side is
    ** evaluated, as in RocketMQ: its failure does not count. */
    const snode *s = &x->q->nodes[n->b];
    if (s->len == 0) return vbool(0);
    sval v = eval(x, n->a);
    if (v.t == V_ERR) return v;
    if (v.t != V_STR) return vbool(0);
    int hit;
    size_t m = (size_t)s->len;
    if (n->op == N_CONTAINS || n->op == N_NOTCONTAINS) {
      hit = 0;
      for (size_t k = 0; k + m <= v.n && !hit; k++) hit = !memcmp(v.s + k, s->s, m);
    } else if (n->op == N_STARTS || n->op == N_NOTSTARTS) {
      hit = m <= v.n && !memcmp(v.s, s->s, m);
    } else {
      hit = m <= v.n && !memcmp(v.s + v.n - m, s->s, m);
    }
    int negate = n->op == N_NOTCONTAINS || n->op == N_NOTSTARTS || n->op == N_NOTENDS;
    return vbool(negate ? !hit : hit);
  }
  case N_BETWEEN: case N_NOTBETWEEN: {
    /* v >= lo AND v <= hi (NOT: v < lo OR v > hi), each comparison with
    ** its lazy right side, with AND's (OR's) short circuit and null rules.
    ** v is evaluated once: evaluation has no side effects. */
    sval v = eval(x, n->a);
    if (n->op == N_BETWEEN) {
      sval a = eval_ordered(x, N_GE, v, n->b);
      if (a.t == V_ERR || (a.t == V_BOOL && !a.i)) return a;
      sval b = eval_ordered(x, N_LE, v, n->c);
      if (b.t == V_ERR || (b.t == V_BOOL && !b.i)) return b;
      return (a.t == V_NULL || b.t == V_NULL) ? vnull() : vbool(1);
    }
    sval a = eval_ordered(x, N_LT, v, n->b);
    if (a.t == V_ERR || (a.t == V_BOOL && a.i)) return a;
    sval b = eval_ordered(x, N_GT, v, n->c);
    if (b.t == V_ERR || (b.t == V_BOOL && b.i)) return b;
    return (a.t == V_NULL || b.t == V_NULL) ? vnull() : vbool(0);
  }
  }
  return verr();
}

RMQI_FUNC int rmqi_sql_match(const rmqi_sql *q, rmqi_sql_getter get, void *ud)
{
  sctx x = {q, get, ud, NULL, NULL, 0};
  sval v = as_bool(eval(&x, q->root));
  return v.t == V_BOOL && v.i;
}

typedef struct rawprops { const char *p; size_t n; } rawprops;

static int rawprops_get(void *ud, const char *name, size_t nlen, const char **v, size_t *vl)
{
  const rawprops *r = ud;
  return rmqi_props_find(r->p, r->n, name, nlen, v, vl);
}

/* The first 0x01 or 0x02 byte at or after p, else end. Eight bytes at a
** time: (w - 0x03..) & ~w & 0x80.. flags a byte below 3 (the lowest flag
** is exact); a 0x00 byte is passed over. */
static const char *next_sep(const char *p, const char *end)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (end - p >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t t = (w - UINT64_C(0x0303030303030303)) & ~w & UINT64_C(0x8080808080808080);
    if (!t) { p += 8; continue; }
    p += __builtin_ctzll(t) >> 3; /* little-endian: the lowest byte first */
    if (*p) return p;
    p++;
  }
#endif
  while (p < end && *p != 1 && *p != 2) p++;
  return p;
}

/* One pass over the record's properties (string2messageProperties' rules,
** as rmqi_props_find: a later duplicate wins) fills the slots. */
RMQI_FUNC int rmqi_sql_match_props(const rmqi_sql *q, const char *props, size_t len)
{
  if (q->nslots > SQL_MAX_SLOTS) {
    rawprops r = {props, len};
    return rmqi_sql_match(q, rawprops_get, &r);
  }
  const char *val[SQL_MAX_SLOTS];
  uint32_t vlen[SQL_MAX_SLOTS];
  uint32_t present = 0;
  const char *p = props, *end = props + len;
  while (p < end) {
    const char *seg = p, *sep = NULL;
    while ((p = next_sep(p, end)) < end && *p == 1) {
      if (!sep) sep = p;
      p++;
    }
    if (sep && sep > seg && sep < p - 1) {
      size_t nl = (size_t)(sep - seg);
      for (int k = 0; k < q->nslots; k++) {
        const snode *o = &q->nodes[q->slot_node[k]];
        if ((size_t)o->len == nl && bytes_eq(o->s, seg, nl)) {
          val[k] = sep + 1;
          vlen[k] = (uint32_t)(p - sep - 1);
          present |= UINT32_C(1) << k;
          break;
        }
      }
    }
    p++; /* past the 0x02 */
  }
  sctx x = {q, NULL, NULL, val, vlen, present};
  sval v = as_bool(eval(&x, q->root));
  return v.t == V_BOOL && v.i;
}

/* ======================================================================= */
/* Either kind, as a subscription holds it                                 */
/* ======================================================================= */

RMQI_FUNC int rmqi_filter_compile(int type, const char *expr, rmqi_filter *f)
{
  memset(f, 0, sizeof *f);
  if (type != RMQ_SELECTOR_TAG && type != RMQ_SELECTOR_SQL92)
    return rmqi_err(RMQ_EINVAL, "selector type %d is neither RMQ_SELECTOR_TAG nor RMQ_SELECTOR_SQL92", type);
  f->type = type;
  return type == RMQ_SELECTOR_TAG ? rmqi_tag_filter_compile(expr, &f->tf) : rmqi_sql_compile(expr, &f->sql);
}

RMQI_FUNC void rmqi_filter_free(rmqi_filter *f)
{
  if (f->type == RMQ_SELECTOR_TAG) rmqi_tag_filter_free(&f->tf);
  else rmqi_sql_free(f->sql);
  memset(f, 0, sizeof *f);
}

RMQI_FUNC int rmqi_filter_code(const rmqi_filter *f, int64_t tags_code)
{
  return f->type != RMQ_SELECTOR_TAG || rmqi_tag_filter_code(&f->tf, tags_code);
}

RMQI_FUNC int rmqi_filter_record(const rmqi_filter *f, const char *tags, size_t tags_len,
                                 const char *props, size_t props_len)
{
  if (f->type == RMQ_SELECTOR_TAG) return rmqi_tag_filter_tags(&f->tf, tags, tags_len);
  return rmqi_sql_match_props(f->sql, props, props_len);
}
