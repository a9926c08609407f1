/*
** fuzz_sql92.c -- libFuzzer target for the SQL92 filter: the input's first
** line is the expression, the rest "name=value" lines are the properties.
** Compiles (any input must give RMQ_OK or RMQ_EEXPR, never crash or leak)
** and, when it compiles, matches twice: through the public name/value API
** and through the consume path's one-pass reading of a record's raw
** properties; the two verdicts must agree. Built by `make fuzz` with ASan +
** UBSan.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq.h"
#include "rmq_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 4096) return 0;
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = 0;
  char *nl = memchr(buf, '\n', size);
  const char *pairs[32];
  size_t np = 0;
  if (nl) {
    *nl = 0;
    char *p = nl + 1;
    while (*p && np < 16) {
      char *e = strchr(p, '\n');
      if (e) *e = 0;
      char *eq = strchr(p, '=');
      /* Only what a record can hold: a name and a value, neither empty,
      ** without the 0x01 / 0x02 separators. */
      if (eq && eq > p && eq[1] && !strpbrk(p, "\001\002")) {
        *eq = 0;
        pairs[2 * np] = p;
        pairs[2 * np + 1] = eq + 1;
        np++;
      }
      if (!e) break;
      p = e + 1;
    }
  }
  char blob[4200];
  size_t bl = 0;
  for (size_t i = 0; i < np; i++)
    bl += (size_t)snprintf(blob + bl, sizeof blob - bl, "%s\001%s\002", pairs[2 * i], pairs[2 * i + 1]);
  rmq_selector *s = NULL;
  int rc = rmq_selector_compile(RMQ_SELECTOR_SQL92, buf, &s);
  if (rc == RMQ_OK) {
    int a = rmq_selector_match(s, pairs, np);
    rmqi_filter f;
    if (rmqi_filter_compile(RMQ_SELECTOR_SQL92, buf, &f) != RMQ_OK) abort();
    int b = rmqi_filter_record(&f, NULL, 0, blob, bl);
    if (a < 0 || a != b) abort();
    rmqi_filter_free(&f);
    rmq_selector_free(s);
  } else if (rc != RMQ_EEXPR) {
    abort();
  }
  free(buf);
  return 0;
}
