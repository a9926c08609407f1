/*
** fuzz_json.c -- libFuzzer target for the config files' JSON (rmq_store.c:
** rmqi_json_parse, rmqi_json_get, rmqi_buf_json_str), which reads
** topics.json, consumerOffset.json, delayOffset.json, the broadcasting
** consumers' offset files and the topic journal's lines. fuzz_store reaches
** it too, but at a few hundred runs a second; this runs it alone.
**
** The input is the file's text. A parse either fails with RMQ_ECORRUPT or
** RMQ_ENOMEM and no tree, or gives a tree whose nodes are well formed:
** strings and keys present where the type says, object members found by
** rmqi_json_get (the first of a name). Every string and key written back
** with rmqi_buf_json_str, as the config writers do, parses to itself.
** Built by `make fuzz` with ASan + UBSan.
*/
#include "rmq.h"
#include "rmq_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* s written as the writers write it, read back inside an object. */
static void round_trip(const char *s)
{
  rmqi_buf b = {0};
  rmqi_buf_puts(&b, "{\"k\":");
  rmqi_buf_json_str(&b, s);
  rmqi_buf_puts(&b, "}");
  if (b.oom) { rmqi_buf_free(&b); return; }
  int rc;
  rmqi_json *j = rmqi_json_parse(b.p, b.len, &rc);
  if (!j) {
    if (rc != RMQ_ENOMEM) abort(); /* the writer's output must read back */
    rmqi_buf_free(&b);
    return;
  }
  const rmqi_json *k = rmqi_json_get(j, "k");
  if (!k || k->type != RMQI_JSTR || !k->str || strcmp(k->str, s)) abort();
  rmqi_json_free(j);
  rmqi_buf_free(&b);
}

static void walk(const rmqi_json *parent, const rmqi_json *j, int depth)
{
  if (depth > 64) abort(); /* the parser refuses deeper nesting */
  for (; j; j = j->next) {
    if (parent && parent->type == RMQI_JOBJ) {
      if (!j->key) abort();
      round_trip(j->key);
      /* rmqi_json_get returns the first member of that name. */
      const rmqi_json *g = rmqi_json_get(parent, j->key);
      if (!g || strcmp(g->key, j->key)) abort();
      for (const rmqi_json *c = parent->child; c != g; c = c->next)
        if (!c || !strcmp(c->key, j->key)) abort();
    } else if (j->key) {
      abort(); /* only object members have names */
    }
    switch (j->type) {
    case RMQI_JSTR:
      if (!j->str || j->child) abort();
      round_trip(j->str);
      break;
    case RMQI_JOBJ:
    case RMQI_JARR:
      if (j->str) abort();
      walk(j, j->child, depth + 1);
      break;
    case RMQI_JNULL:
    case RMQI_JBOOL:
    case RMQI_JNUM:
      if (j->str || j->child) abort();
      if (j->type == RMQI_JBOOL && j->inum != 0 && j->inum != 1) abort();
      break;
    default:
      abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int rc = 12345;
  rmqi_json *j = rmqi_json_parse((const char *)data, size, &rc);
  if (!j) {
    if (rc != RMQ_ECORRUPT && rc != RMQ_ENOMEM) abort();
    return 0;
  }
  if (rc != RMQ_OK || j->next || j->key) abort();
  walk(NULL, j, 0);
  /* The lookups the loaders make, on whatever the tree is. */
  static const char *const keys[] = {"offsetTable", "topicConfigTable", "dataVersion", "counter",
                                     "writeQueueNums", "readQueueNums", "perm", "topicName", ""};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) (void)rmqi_json_get(j, keys[i]);
  rmqi_json_free(j);
  return 0;
}
