/*
** archive.h -- reading fuzz_store's "rmqa" archive (fuzz/README.md): a
** mode byte, then entries of [path length u8][path][declared size u32]
** [offset u32][data length u16][data], big-endian. Shared by the fuzz
** target and fuzz-mkseeds' unpack, so both read an input the same way.
*/
#ifndef RMQ_FUZZ_ARCHIVE_H
#define RMQ_FUZZ_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

typedef struct rmqa_entry {
  char path[256];        /* NUL-terminated, as stored (not checked here) */
  size_t path_len;
  uint32_t size, off;    /* the file's declared size; where data goes */
  const uint8_t *data;   /* data_len bytes (cut at the archive's end) */
  size_t data_len;
} rmqa_entry;

/* Reads the entry at *i of d[0..n) into *e and moves *i past it; 0 at the
** end or at an entry too short to hold its header. */
static int rmqa_next(const uint8_t *d, size_t n, size_t *i, rmqa_entry *e)
{
  if (*i >= n) return 0;
  size_t pl = d[(*i)++];
  if (pl == 0 || n - *i < pl + 10) return 0;
  memcpy(e->path, d + *i, pl);
  e->path[pl] = 0;
  e->path_len = pl;
  *i += pl;
  e->size = get32(d + *i);
  e->off = get32(d + *i + 4);
  e->data_len = (size_t)d[*i + 8] << 8 | d[*i + 9];
  *i += 10;
  if (e->data_len > n - *i) e->data_len = n - *i;
  e->data = d + *i;
  *i += e->data_len;
  return 1;
}

#endif
