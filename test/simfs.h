/*
** simfs.h -- a test OS layer that knows what a power cut would leave.
**
** It sits in rmqi_os_table in front of the real calls and watches one
** directory tree (the store). For every file it keeps what was last made
** durable: the whole file at fsync/fdatasync, the range at msync(MS_SYNC),
** the directory's entries at an fsync of the directory. Writes go to the
** real files (through write calls and through shared mappings alike), so
** "what has only been written" is simply the real file where it differs
** from the synced copy. sim_image() then writes the disk a power cut at
** this moment would leave into another directory:
**   SIM_LOST    every unsynced byte lost; unsynced directory entries lost
**   SIM_TORN512 each 512-byte block holding unsynced bytes, at random, old
**   SIM_TORN4K  or new (so a write is torn at a sector or page boundary);
**               unsynced directory entries lost
**   SIM_KEPT    every written byte and entry kept (the process died, the
**               machine did not)
** A file whose name was never made durable is gone, with its data, however
** well its data was synced; one unlinked or renamed over whose removal was
** not synced comes back with its synced data.
**
** Every call under the root also goes past a hook (sim.hook) before it
** runs, with the lock held: the power-cut driver takes its images there,
** the I/O-error driver fails the n-th call. Calls outside the root (the
** verifier's own stores) pass straight through.
**
** Header-only for the tests that use it (test_powercut, test_ioerr).
*/
#ifndef RMQ_TEST_SIMFS_H
#define RMQ_TEST_SIMFS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rmq_int.h"

enum { SIM_LOST, SIM_TORN512, SIM_TORN4K, SIM_KEPT, SIM_NMODES };
static const char *const sim_mode_name[SIM_NMODES] = {"lost", "torn512", "torn4k", "kept"};

/* What a hooked call is. */
enum { SIM_OP_SYNC, SIM_OP_WRITE, SIM_OP_OTHER };

typedef struct sim_ino sim_ino;
typedef struct sim_dent {
  char name[256];
  sim_ino *ino;
} sim_dent;

struct sim_ino {
  dev_t dev;
  ino_t ino;
  int is_dir;
  int live;              /* still has a name in the real tree */
  uint8_t *synced;       /* file: the durable bytes */
  size_t synced_len;     /* file: the durable size */
  uint8_t *last;         /* file: its bytes when it lost its last name */
  size_t last_len;
  int has_last;
  sim_dent *dents;       /* directory: its durable entries */
  int ndents;
  sim_ino *next;
};

typedef struct sim_map {
  uint8_t *base;
  size_t len;
  sim_ino *ino;
  off_t off;
} sim_map;

#define SIM_MAX_FD 65536
#define SIM_MAX_MAPS 4096

/* The hook: op (SIM_OP_*), name (the call), path (may be NULL). Returns 0
** to let the call run, else an errno the call fails with (nothing done). */
typedef int (*sim_hook_fn)(void *ctx, int op, const char *call, const char *path);

static struct {
  pthread_mutex_t mu;
  char root[4096];
  size_t rootlen;
  sim_ino *inos;
  sim_ino *root_ino;
  sim_ino *fd_ino[SIM_MAX_FD];
  char *fd_path[SIM_MAX_FD];
  sim_map maps[SIM_MAX_MAPS];
  int nmaps;
  int real_sync;         /* also do the real syncs (the I/O-error driver) */
  atomic_long nsync;     /* sync calls begun under the root */
  atomic_long nwrite;    /* other changing calls begun under the root */
  atomic_long ncalls;    /* every call under the root */
  sim_hook_fn hook;
  void *hook_ctx;
  uint64_t rng;
} sim = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int sim_under(const char *p)
{
  return p && sim.rootlen && strncmp(p, sim.root, sim.rootlen) == 0 &&
         (p[sim.rootlen] == '/' || p[sim.rootlen] == 0);
}

static uint64_t sim_rand(void)
{
  uint64_t x = sim.rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return sim.rng = x;
}

/* The whole content of the file at path (real calls). */
static uint8_t *sim_slurp(const char *path, size_t *len)
{
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) { close(fd); return NULL; }
  size_t n = (size_t)st.st_size;
  uint8_t *b = malloc(n ? n : 1);
  size_t got = 0;
  while (b && got < n) {
    ssize_t r = pread(fd, b + got, n - got, (off_t)got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  *len = got;
  return b;
}

static sim_ino *sim_find(dev_t dev, ino_t ino)
{
  for (sim_ino *i = sim.inos; i; i = i->next)
    if (i->live && i->dev == dev && i->ino == ino) return i;
  return NULL;
}

static sim_ino *sim_get(const struct stat *st)
{
  sim_ino *i = sim_find(st->st_dev, st->st_ino);
  if (i) return i;
  i = calloc(1, sizeof *i);
  i->dev = st->st_dev;
  i->ino = st->st_ino;
  i->is_dir = S_ISDIR(st->st_mode);
  i->live = 1;
  i->next = sim.inos;
  sim.inos = i;
  return i;
}

static sim_ino *sim_get_path(const char *path)
{
  struct stat st;
  if (lstat(path, &st) != 0) return NULL;
  return sim_get(&st);
}

/* The file at path is losing its last name: keep what it holds now. */
static void sim_detach(const char *path)
{
  struct stat st;
  if (lstat(path, &st) != 0) return;
  sim_ino *i = sim_find(st.st_dev, st.st_ino);
  if (!i) return;
  if (!i->is_dir && st.st_nlink <= 1) {
    free(i->last);
    i->last = sim_slurp(path, &i->last_len);
    i->has_last = 1;
  }
  if (i->is_dir || st.st_nlink <= 1) i->live = 0;
}

/* dir's entries now become its durable ones. */
static void sim_sync_dir(sim_ino *d, const char *path)
{
  DIR *dd = opendir(path);
  if (!dd) return;
  free(d->dents);
  d->dents = NULL;
  d->ndents = 0;
  int cap = 0;
  struct dirent *e;
  while ((e = readdir(dd))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    sim_ino *c = sim_get_path(p);
    if (!c) continue;
    if (d->ndents == cap) {
      cap = cap ? cap * 2 : 16;
      d->dents = realloc(d->dents, (size_t)cap * sizeof *d->dents);
    }
    snprintf(d->dents[d->ndents].name, sizeof d->dents[0].name, "%s", e->d_name);
    d->dents[d->ndents++].ino = c;
  }
  closedir(dd);
}

/* The file's bytes [off, off + n) (all when n is SIZE_MAX) become durable,
** its size too. */
static void sim_sync_file(sim_ino *f, const char *path, size_t off, size_t n)
{
  size_t len;
  uint8_t *now = sim_slurp(path, &len);
  if (!now) return;
  uint8_t *s = realloc(f->synced, len ? len : 1);
  if (len > f->synced_len) memset(s + f->synced_len, 0, len - f->synced_len);
  f->synced = s;
  f->synced_len = len;
  if (n == SIZE_MAX) { off = 0; n = len; }
  if (off < len) memcpy(s + off, now + off, off + n <= len ? n : len - off);
  free(now);
}

/* Starts watching root: everything already there counts as durable. */
static void sim_walk_init(const char *path, sim_ino *d)
{
  sim_sync_dir(d, path);
  for (int k = 0; k < d->ndents; k++) {
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", path, d->dents[k].name);
    if (d->dents[k].ino->is_dir) sim_walk_init(p, d->dents[k].ino);
    else sim_sync_file(d->dents[k].ino, p, 0, SIZE_MAX);
  }
}

/* ---- the hooked calls --------------------------------------------------- */

static int sim_enter(int op, const char *call, const char *path)
{
  atomic_fetch_add(&sim.ncalls, 1);
  if (op == SIM_OP_SYNC) atomic_fetch_add(&sim.nsync, 1);
  else if (op == SIM_OP_WRITE) atomic_fetch_add(&sim.nwrite, 1);
  if (!sim.hook) return 0;
  return sim.hook(sim.hook_ctx, op, call, path);
}

#define SIM_FAIL(e) do { errno = (e); pthread_mutex_unlock(&sim.mu); return -1; } while (0)

static int sim_fd_watched(int fd) { return fd >= 0 && fd < SIM_MAX_FD && sim.fd_path[fd]; }

static int sim_open(const char *p, int f, mode_t m)
{
  if (!sim_under(p)) return open(p, f | O_CLOEXEC, m);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter((f & (O_CREAT | O_TRUNC)) ? SIM_OP_WRITE : SIM_OP_OTHER, "open", p);
  if (e) SIM_FAIL(e);
  int fd = open(p, f | O_CLOEXEC, m);
  if (fd >= 0 && fd < SIM_MAX_FD) {
    struct stat st;
    if (fstat(fd, &st) == 0) {
      sim.fd_ino[fd] = sim_get(&st);
      free(sim.fd_path[fd]);
      sim.fd_path[fd] = strdup(p);
    }
  }
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return fd;
}

static int sim_close(int fd)
{
  if (fd >= 0 && fd < SIM_MAX_FD && sim.fd_path[fd]) {
    pthread_mutex_lock(&sim.mu);
    free(sim.fd_path[fd]);
    sim.fd_path[fd] = NULL;
    sim.fd_ino[fd] = NULL;
    pthread_mutex_unlock(&sim.mu);
  }
  return close(fd);
}

static int sim_do_sync(int fd, int data_only, const char *call)
{
  if (!sim_fd_watched(fd)) return data_only ? fdatasync(fd) : fsync(fd);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_SYNC, call, sim.fd_path[fd]);
  if (e) SIM_FAIL(e);
  if (sim.real_sync && (data_only ? fdatasync(fd) : fsync(fd)) != 0) SIM_FAIL(errno);
  sim_ino *i = sim.fd_ino[fd];
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (i->is_dir) sim_sync_dir(i, sim.fd_path[fd]);
  else sim_sync_file(i, proc, 0, SIZE_MAX);
  pthread_mutex_unlock(&sim.mu);
  return 0;
}
static int sim_fsync(int fd) { return sim_do_sync(fd, 0, "fsync"); }
static int sim_fdatasync(int fd) { return sim_do_sync(fd, 1, "fdatasync"); }

static void *sim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  if (!sim_fd_watched(fd)) return mmap(addr, len, prot, flags, fd, off);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_OTHER, "mmap", sim.fd_path[fd]);
  if (e) { errno = e; pthread_mutex_unlock(&sim.mu); return MAP_FAILED; }
  void *p = mmap(addr, len, prot, flags, fd, off);
  if (p != MAP_FAILED && (flags & MAP_SHARED)) {
    /* A MAP_FIXED remap replaces part of an older mapping: the newest
    ** record of an address wins (searched from the end). */
    if (sim.nmaps < SIM_MAX_MAPS) sim.maps[sim.nmaps++] = (sim_map){p, len, sim.fd_ino[fd], off};
  }
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return p;
}

static int sim_munmap(void *addr, size_t len)
{
  pthread_mutex_lock(&sim.mu);
  uint8_t *a = addr;
  for (int k = 0; k < sim.nmaps;) {
    if (sim.maps[k].base >= a && sim.maps[k].base + sim.maps[k].len <= a + len) sim.maps[k] = sim.maps[--sim.nmaps];
    else k++;
  }
  int r = munmap(addr, len);
  pthread_mutex_unlock(&sim.mu);
  return r;
}

static int sim_msync(void *addr, size_t len, int flags)
{
  pthread_mutex_lock(&sim.mu);
  uint8_t *a = addr;
  sim_map *m = NULL;
  for (int k = sim.nmaps - 1; k >= 0 && !m; k--)
    if (a >= sim.maps[k].base && a < sim.maps[k].base + sim.maps[k].len) m = &sim.maps[k];
  if (!m) {
    pthread_mutex_unlock(&sim.mu);
    return msync(addr, len, flags);
  }
  int e = sim_enter(SIM_OP_SYNC, "msync", NULL);
  if (e) SIM_FAIL(e);
  if (sim.real_sync && msync(addr, len, flags) != 0) SIM_FAIL(errno);
  if (flags & MS_SYNC) {
    /* The range's bytes straight from the mapping; the size with them, as
    ** fdatasync would (ext4 syncs it for a range too). */
    sim_ino *f = m->ino;
    size_t off = (size_t)(m->off + (a - m->base));
    if (len > m->len - (size_t)(a - m->base)) len = m->len - (size_t)(a - m->base);
    size_t size = off + len;
    struct stat st;
    for (int fd = 0; fd < SIM_MAX_FD; fd++)
      if (sim.fd_ino[fd] == f && fstat(fd, &st) == 0) { size = (size_t)st.st_size; break; }
    uint8_t *s = realloc(f->synced, size > f->synced_len ? size : f->synced_len ? f->synced_len : 1);
    if (size > f->synced_len) memset(s + f->synced_len, 0, size - f->synced_len);
    f->synced = s;
    f->synced_len = size > f->synced_len ? size : f->synced_len;
    if (off < f->synced_len) memcpy(s + off, a, off + len <= f->synced_len ? len : f->synced_len - off);
  }
  pthread_mutex_unlock(&sim.mu);
  return 0;
}

static ssize_t sim_pwrite(int fd, const void *buf, size_t n, off_t off)
{
  if (!sim_fd_watched(fd)) return pwrite(fd, buf, n, off);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_WRITE, "pwrite", sim.fd_path[fd]);
  if (e) SIM_FAIL(e);
  pthread_mutex_unlock(&sim.mu);
  return pwrite(fd, buf, n, off);
}

static ssize_t sim_pread(int fd, void *buf, size_t n, off_t off)
{
  if (sim_fd_watched(fd)) {
    pthread_mutex_lock(&sim.mu);
    int e = sim_enter(SIM_OP_OTHER, "pread", sim.fd_path[fd]);
    if (e) SIM_FAIL(e);
    pthread_mutex_unlock(&sim.mu);
  }
  return pread(fd, buf, n, off);
}

static int sim_ftruncate(int fd, off_t len)
{
  if (!sim_fd_watched(fd)) return ftruncate(fd, len);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_WRITE, "ftruncate", sim.fd_path[fd]);
  if (e) SIM_FAIL(e);
  int r = ftruncate(fd, len);
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return r;
}

static int sim_fallocate(int fd, off_t off, off_t len)
{
  if (sim_fd_watched(fd)) {
    pthread_mutex_lock(&sim.mu);
    int e = sim_enter(SIM_OP_WRITE, "fallocate", sim.fd_path[fd]);
    if (e) SIM_FAIL(e);
    pthread_mutex_unlock(&sim.mu);
  }
  int e = posix_fallocate(fd, off, len);
  if (e == 0) return 0;
  errno = e;
  return -1;
}

static int sim_rename(const char *from, const char *to)
{
  if (!sim_under(from) && !sim_under(to)) return rename(from, to);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_WRITE, "rename", to);
  if (e) SIM_FAIL(e);
  sim_detach(to);
  int r = rename(from, to);
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return r;
}

static int sim_unlink(const char *p)
{
  if (!sim_under(p)) return unlink(p);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_WRITE, "unlink", p);
  if (e) SIM_FAIL(e);
  sim_detach(p);
  int r = unlink(p);
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return r;
}

static int sim_rmdir(const char *p)
{
  if (!sim_under(p)) return rmdir(p);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_WRITE, "rmdir", p);
  if (e) SIM_FAIL(e);
  sim_detach(p);
  int r = rmdir(p);
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return r;
}

static int sim_mkdir(const char *p, mode_t m)
{
  if (!sim_under(p)) return mkdir(p, m);
  pthread_mutex_lock(&sim.mu);
  int e = sim_enter(SIM_OP_WRITE, "mkdir", p);
  if (e) SIM_FAIL(e);
  int r = mkdir(p, m);
  int saved = errno;
  pthread_mutex_unlock(&sim.mu);
  errno = saved;
  return r;
}

static int sim_futimens(int fd, const struct timespec t[2])
{
  if (sim_fd_watched(fd)) {
    pthread_mutex_lock(&sim.mu);
    int e = sim_enter(SIM_OP_OTHER, "futimens", sim.fd_path[fd]);
    if (e) SIM_FAIL(e);
    pthread_mutex_unlock(&sim.mu);
  }
  return futimens(fd, t);
}

static int sim_fstat(int fd, struct stat *st)
{
  if (sim_fd_watched(fd)) {
    pthread_mutex_lock(&sim.mu);
    int e = sim_enter(SIM_OP_OTHER, "fstat", sim.fd_path[fd]);
    if (e) SIM_FAIL(e);
    pthread_mutex_unlock(&sim.mu);
  }
  return fstat(fd, st);
}

/* Installs the layer over root (which must exist). */
static void sim_start(const char *root, int real_sync, sim_hook_fn hook, void *ctx, uint64_t seed)
{
  pthread_mutex_lock(&sim.mu);
  snprintf(sim.root, sizeof sim.root, "%s", root);
  sim.rootlen = strlen(sim.root);
  sim.real_sync = real_sync;
  sim.hook = hook;
  sim.hook_ctx = ctx;
  sim.rng = seed ? seed : 88172645463325252ull;
  atomic_store(&sim.nsync, 0);
  atomic_store(&sim.nwrite, 0);
  atomic_store(&sim.ncalls, 0);
  sim.root_ino = sim_get_path(root);
  sim_walk_init(root, sim.root_ino);
  pthread_mutex_unlock(&sim.mu);
  rmqi_os_table.open = sim_open;
  rmqi_os_table.close = sim_close;
  rmqi_os_table.fsync = sim_fsync;
  rmqi_os_table.fdatasync = sim_fdatasync;
  rmqi_os_table.mmap = sim_mmap;
  rmqi_os_table.munmap = sim_munmap;
  rmqi_os_table.msync = sim_msync;
  rmqi_os_table.pwrite = sim_pwrite;
  rmqi_os_table.pread = sim_pread;
  rmqi_os_table.ftruncate = sim_ftruncate;
  rmqi_os_table.fallocate = sim_fallocate;
  rmqi_os_table.rename = sim_rename;
  rmqi_os_table.unlink = sim_unlink;
  rmqi_os_table.rmdir = sim_rmdir;
  rmqi_os_table.mkdir = sim_mkdir;
  rmqi_os_table.futimens = sim_futimens;
  rmqi_os_table.fstat = sim_fstat;
}

/* Back to the real calls; forgets everything. */
static void sim_stop(void)
{
  rmqi_os_reset();
  pthread_mutex_lock(&sim.mu);
  sim.hook = NULL;
  sim.rootlen = 0;
  while (sim.inos) {
    sim_ino *n = sim.inos->next;
    free(sim.inos->synced);
    free(sim.inos->last);
    free(sim.inos->dents);
    free(sim.inos);
    sim.inos = n;
  }
  sim.root_ino = NULL;
  for (int fd = 0; fd < SIM_MAX_FD; fd++) {
    free(sim.fd_path[fd]);
    sim.fd_path[fd] = NULL;
    sim.fd_ino[fd] = NULL;
  }
  sim.nmaps = 0;
  pthread_mutex_unlock(&sim.mu);
}

/* ---- the image of a power cut ------------------------------------------ */

static int sim_write_file(const char *path, const uint8_t *b, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < n) {
    ssize_t w = pwrite(fd, b + done, n - done, (off_t)done);
    if (w <= 0) { close(fd); return -1; }
    done += (size_t)w;
  }
  close(fd);
  return 0;
}

/* Where each live file is now (for its unsynced bytes). */
typedef struct sim_loc { sim_ino *ino; char path[4096]; } sim_loc;

static void sim_locate(const char *path, sim_loc **locs, int *n, int *cap)
{
  DIR *dd = opendir(path);
  if (!dd) return;
  struct dirent *e;
  while ((e = readdir(dd))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    struct stat st;
    if (lstat(p, &st) != 0) continue;
    sim_ino *i = sim_find(st.st_dev, st.st_ino);
    if (S_ISDIR(st.st_mode)) sim_locate(p, locs, n, cap);
    if (!i) continue;
    if (*n == *cap) {
      *cap = *cap ? *cap * 2 : 64;
      *locs = realloc(*locs, (size_t)*cap * sizeof **locs);
    }
    (*locs)[*n].ino = i;
    snprintf((*locs)[(*n)++].path, sizeof (*locs)[0].path, "%s", p);
  }
  closedir(dd);
}

static uint8_t *sim_current(sim_ino *f, sim_loc *locs, int nlocs, size_t *len)
{
  for (int k = 0; k < nlocs; k++)
    if (locs[k].ino == f) return sim_slurp(locs[k].path, len);
  if (f->has_last) {
    *len = f->last_len;
    uint8_t *b = malloc(f->last_len ? f->last_len : 1);
    memcpy(b, f->last, f->last_len);
    return b;
  }
  *len = 0;
  return NULL;
}

static int sim_image_dir(sim_ino *d, const char *dst, int mode, sim_loc *locs, int nlocs)
{
  for (int k = 0; k < d->ndents; k++) {
    sim_ino *c = d->dents[k].ino;
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dst, d->dents[k].name);
    if (c->is_dir) {
      if (mkdir(p, 0755) != 0) return -1;
      if (sim_image_dir(c, p, mode, locs, nlocs)) return -1;
      continue;
    }
    size_t cur_len;
    uint8_t *cur = sim_current(c, locs, nlocs, &cur_len);
    size_t blk = mode == SIM_TORN512 ? 512 : 4096;
    size_t len = c->synced_len;
    uint8_t *out;
    if (mode == SIM_LOST || !cur) {
      out = malloc(len ? len : 1);
      if (len) memcpy(out, c->synced, len);
    } else {
      /* Torn: the size is the old or the new one, each block of the
      ** result old or new where they differ. */
      if (cur_len != c->synced_len && (sim_rand() & 1)) len = cur_len;
      out = calloc(1, len ? len : 1);
      for (size_t o = 0; o < len; o += blk) {
        size_t n = len - o < blk ? len - o : blk;
        int have_old = o < c->synced_len, have_new = o < cur_len;
        size_t n_old = have_old ? (c->synced_len - o < n ? c->synced_len - o : n) : 0;
        size_t n_new = have_new ? (cur_len - o < n ? cur_len - o : n) : 0;
        int differ = n_old != n_new || (n_old && memcmp(c->synced + o, cur + o, n_old) != 0);
        int take_new = differ && (sim_rand() & 1);
        if (take_new) memcpy(out + o, cur + o, n_new);
        else if (n_old) memcpy(out + o, c->synced + o, n_old);
      }
    }
    int r = sim_write_file(p, out, len);
    free(out);
    free(cur);
    if (r) return -1;
  }
  return 0;
}

static int sim_copy_tree(const char *src, const char *dst)
{
  DIR *dd = opendir(src);
  if (!dd) return -1;
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(dd))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char s[4096], d[4096];
    snprintf(s, sizeof s, "%s/%s", src, e->d_name);
    snprintf(d, sizeof d, "%s/%s", dst, e->d_name);
    struct stat st;
    if (lstat(s, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      rc = mkdir(d, 0755) != 0 || sim_copy_tree(s, d);
    } else if (S_ISREG(st.st_mode)) {
      size_t n;
      uint8_t *b = sim_slurp(s, &n);
      rc = b ? sim_write_file(d, b, n) : 0; /* deleted meanwhile */
      free(b);
    }
  }
  closedir(dd);
  return rc;
}

/* Writes into dst (made here) the disk a power cut now would leave. Called
** with sim.mu held (from the hook). Returns 0 or -1. */
__attribute__((unused)) static int sim_image(const char *dst, int mode)
{
  if (mkdir(dst, 0755) != 0) return -1;
  if (mode == SIM_KEPT) return sim_copy_tree(sim.root, dst);
  sim_loc *locs = NULL;
  int n = 0, cap = 0;
  if (mode != SIM_LOST) sim_locate(sim.root, &locs, &n, &cap);
  int r = sim_image_dir(sim.root_ino, dst, mode, locs, n);
  free(locs);
  return r;
}

#endif
