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
