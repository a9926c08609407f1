/*
** fuzz_store.c -- libFuzzer target for opening a damaged store: the input
** is a small store directory in an archive (format below), written to a
** tmpfs directory, opened read-only or writable (or both, one after the
** other) with rmq_broker_open, read through (every queue pulled, rmq_broker_check, a
** key query, a view by offsetMsgId, statistics), written to once, and
** closed. Any return code is fine; a crash, a leak (memory or file
** descriptor), a hang or an out-of-bounds read is a bug. Built by
** `make fuzz` with ASan + UBSan.
**
** Input ("rmqa" archive; all integers big-endian):
**   u8 mode                  bits 0-1: which opens: 0 or 2 writable,
**                            1 read-only, 3 read-only then writable
**                            bit 2: check_crc_on_recover off
**                            bit 3: message_index_enable off
**                            bit 4: flush_disk_type SYNC_FLUSH
**                            bit 5: call rmq_broker_run_due before closing
**   entries, until the input ends or a path length of 0:
**     u8 plen, path[plen]    relative path; a trailing '/' makes a directory
**     u32 size               the file's size (clamped to FZ_MAX_FILE)
**     u32 off, u16 len, data[len]   bytes written at off; the rest of the
**                            file reads as zeros (a sparse hole)
**   A path may come more than once: each entry adds an extent, and the file
**   is as long as the largest size (or extent end) given. So a default
**   geometry store (1 GiB CommitLog, 6,000,000-byte ConsumeQueues, a
**   420,000,040-byte index file) takes only its nonzero bytes.
**   Entries with an unusable path ("", "..", "/x", a NUL) are skipped.
** fuzz/mkseeds.c writes and reads this format (pack/unpack).
**
** Why tmpfs and not an in-memory OS table: the store lists directories
** with opendir/readdir and stat()s files directly, outside rmqi_os_table.
** /dev/shm keeps the per-run cost to a few system calls a file.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rmq.h"
#include "archive.h"

/* Bounds that keep one run cheap whatever the sizes say: files are sparse,
** so only what is written costs memory. */
#define FZ_MAX_FILE (1u << 30)
#define FZ_MAX_ENTRIES 512
#define FZ_MAX_PULLS 256
#define FZ_MAX_TOPICS 64
#define FZ_MAX_QUEUES 64

/* A fixed clock: a run must not depend on the day (retention, delays). */
#define FZ_NOW INT64_C(1796600000000)

static char g_root[256]; /* this process's scratch directory */
static char g_dir[300];  /* the store: g_root/s */

static int64_t fixed_clock(void *ctx)
{
  (void)ctx;
  return FZ_NOW;
}

/* ASan maps each large block afresh, and every first touch of a page is a
** fault (costly on a VM): the recovery scan's 4 MiB read buffer alone was
** half of a run's time. Freed blocks of 1 MiB or more are kept and handed
** out again for the same size. Each is still an ASan block of exactly its
** size, so reads past its end are caught; a use after free of one is not. */
#define FZ_BIG ((size_t)1 << 20)
#define FZ_CACHED 4
static void *g_cache[FZ_CACHED];
static size_t g_cache_size[FZ_CACHED];
static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  (void)ud;
  (void)osize; /* the block's real size is asked of the allocator */
  if (nsize == 0) {
    size_t have = ptr ? malloc_usable_size(ptr) : 0;
    if (have >= FZ_BIG) {
      pthread_mutex_lock(&g_cache_lock);
      for (int i = 0; i < FZ_CACHED; i++)
        if (!g_cache[i]) {
          g_cache[i] = ptr;
          g_cache_size[i] = have;
          ptr = NULL;
          break;
        }
      pthread_mutex_unlock(&g_cache_lock);
    }
    free(ptr);
    return NULL;
  }
  if (!ptr && nsize >= FZ_BIG) {
    void *p = NULL;
    pthread_mutex_lock(&g_cache_lock);
    for (int i = 0; i < FZ_CACHED && !p; i++)
      if (g_cache[i] && g_cache_size[i] == nsize) {
        p = g_cache[i];
        g_cache[i] = NULL;
      }
    pthread_mutex_unlock(&g_cache_lock);
    if (p) return p;
  }
  return realloc(ptr, nsize);
}


/* Removes dirfd's entry `name`, a tree when is_dir (d_type saves a failed
** unlink per directory: every system call counts at this rate). */
static void rm_tree_at(int dirfd, const char *name, int is_dir)
{
  if (!is_dir && (unlinkat(dirfd, name, 0) == 0 || (errno != EISDIR && errno != EPERM))) return;
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  DIR *d = fdopendir(fd);
  if (!d) { close(fd); return; }
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) rm_tree_at(fd, e->d_name, e->d_type == DT_DIR);
  closedir(d);
  unlinkat(dirfd, name, AT_REMOVEDIR);
}

static void rm_tree(int dirfd, const char *name) { rm_tree_at(dirfd, name, 1); }

/* Checks a relative path and makes its parent directories. 1: a file may
** be made at rel (0: skip the entry). *is_dir: it names a directory. */
static int prepare_path(char *rel, size_t n, int *is_dir)
{
  *is_dir = n > 0 && rel[n - 1] == '/';
  if (*is_dir) rel[--n] = 0;
  if (n == 0 || rel[0] == '/' || memchr(rel, 0, n)) return 0;
  char full[600];
  int base = snprintf(full, sizeof full, "%s/", g_dir);
  for (size_t i = 0, c = 0; i <= n; i++) {
    if (i < n && rel[i] != '/') continue;
    size_t cl = i - c;
    if (cl == 0 || (cl == 1 && rel[c] == '.') || (cl == 2 && rel[c] == '.' && rel[c + 1] == '.')) return 0;
    if (i < n || *is_dir) {
      memcpy(full + base, rel, i);
      full[base + i] = 0;
      if (mkdir(full, 0755) != 0 && errno != EEXIST) return 0;
    }
    c = i + 1;
  }
  return !*is_dir;
}

/* Writes the archive's store under g_dir. Returns the mode byte. */
static int materialise(const uint8_t *data, size_t size)
{
  rm_tree(AT_FDCWD, g_dir);
  if (mkdir(g_dir, 0755) != 0) abort();
  if (size == 0) return 0;
  int mode = data[0];
  size_t i = 1;
  rmqa_entry e;
  for (int k = 0; k < FZ_MAX_ENTRIES && rmqa_next(data, size, &i, &e); k++) {
    char *rel = e.path;
    size_t plen = e.path_len;
    uint32_t fsize = e.size, off = e.off;
    size_t dlen = e.data_len;
    const uint8_t *content = e.data;
    int is_dir;
    if (!prepare_path(rel, plen, &is_dir)) continue;
    char full[600];
    snprintf(full, sizeof full, "%s/%s", g_dir, rel);
    int fd = open(full, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    if (fsize > FZ_MAX_FILE) fsize = FZ_MAX_FILE;
    if (off > FZ_MAX_FILE) off = FZ_MAX_FILE;
    if (dlen > FZ_MAX_FILE - off) dlen = FZ_MAX_FILE - off;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size < (off_t)fsize && ftruncate(fd, (off_t)fsize) != 0) abort();
    if (dlen && pwrite(fd, content, dlen, (off_t)off) != (ssize_t)dlen) abort();
    close(fd);
  }
  return mode;
}

static void use_bytes(const void *p, size_t n)
{
  /* Every byte of a view is read: an out-of-bounds view shows under ASan. */
  volatile uint8_t acc = 0;
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) acc ^= b[i];
  (void)acc;
}

static void use_msg(rmq_broker *b, const rmq_message_ext *m, int deep)
{
  use_bytes(m->body, (size_t)m->body_len);
  use_bytes(m->properties, (size_t)m->properties_len);
  if (m->tags) use_bytes(m->tags, (size_t)m->tags_len);
  if (m->keys) use_bytes(m->keys, (size_t)m->keys_len);
  use_bytes(m->topic, strlen(m->topic));
  if (strlen(m->msg_id) >= RMQ_MSG_ID_SIZE || strlen(m->offset_msg_id) >= RMQ_MSG_ID_SIZE) abort();
  const char *v;
  size_t vl;
  if (rmq_message_ext_property(m, "UNIQ_KEY", &v, &vl) == RMQ_OK) use_bytes(v, vl);
  if (!deep) return;
  /* Once a batch: the text has every body byte in decimal, a snprintf
  ** each, and was most of a run's time (fuzz_record formats every record). */
  char text[256];
  if (rmq_message_ext_format(m, text, sizeof text) < 0) abort();
  rmq_message_ext *c = NULL;
  if (rmq_message_ext_copy(m, &c) == RMQ_OK) {
    use_msg(b, c, 0);
    rmq_message_ext_free(c);
  }
  rmq_message_ext *x = NULL;
  if (rmq_broker_view_message(b, m->offset_msg_id, &x) == RMQ_OK) {
    use_msg(b, x, 0);
    rmq_message_ext_free(x);
  }
}

/* A key to look up: the first word of some message's KEYS, else its id. */
typedef struct found {
  char topic[256];
  char key[128];
  char uniq[RMQ_MSG_ID_SIZE];
} found;

static void note_key(found *f, const rmq_message_ext *m)
{
  if (f->key[0]) return;
  snprintf(f->topic, sizeof f->topic, "%s", m->topic);
  snprintf(f->uniq, sizeof f->uniq, "%s", m->msg_id);
  if (m->keys && m->keys_len > 0) {
    int n = 0;
    while (n < m->keys_len && n < (int)sizeof f->key - 1 && m->keys[n] != ' ') n++;
    memcpy(f->key, m->keys, (size_t)n);
    f->key[n] = 0;
  }
  if (!f->key[0]) snprintf(f->key, sizeof f->key, "%s", m->msg_id);
}

static void pull_all(rmq_broker *b, found *f)
{
  rmq_pull_consumer *c = NULL;
  if (rmq_pull_consumer_create(b, "FuzzGroup", &c) != RMQ_OK) return;
  static rmq_topic_info ti[FZ_MAX_TOPICS];
  size_t nt = 0;
  if (rmq_topic_list(b, ti, FZ_MAX_TOPICS, &nt) != RMQ_OK) nt = 0;
  if (nt > FZ_MAX_TOPICS) nt = FZ_MAX_TOPICS;
  int pulls = 0;
  for (size_t t = 0; t < nt && pulls < FZ_MAX_PULLS; t++) {
    static rmq_message_queue mq[FZ_MAX_QUEUES];
    size_t nq = 0;
    if (rmq_pull_consumer_fetch_subscribe_message_queues(c, ti[t].topic_name, mq, FZ_MAX_QUEUES, &nq) != RMQ_OK)
      continue;
    if (nq > FZ_MAX_QUEUES) nq = FZ_MAX_QUEUES;
    for (size_t q = 0; q < nq && pulls < FZ_MAX_PULLS; q++) {
      int64_t lo = 0, hi = 0, ts;
      rmq_topic_queue_offsets(b, mq[q].topic, mq[q].queue_id, &lo, &hi);
      rmq_broker_search_offset(b, mq[q].topic, mq[q].queue_id, FZ_NOW - 3600000, &ts);
      rmq_broker_earliest_msg_store_time(b, mq[q].topic, mq[q].queue_id, &ts);
      rmq_message_ext *one = NULL;
      if (rmq_broker_query_message_by_offset(b, mq[q].topic, mq[q].queue_id, lo, &one) == RMQ_OK) {
        use_msg(b, one, 0);
        rmq_message_ext_free(one);
      }
      int64_t off = lo;
      /* Each queue is read twice over: by tags, then (its first batch)
      ** through the SQL92 filter, which parses every record's properties. */
      for (int round = 0; round < 8 && pulls < FZ_MAX_PULLS; round++, pulls++) {
        rmq_pull_result r;
        int rc = round == 1 ? rmq_pull_consumer_pull_selector(c, &mq[q], RMQ_SELECTOR_SQL92,
                                                                "a > 1 OR TAGS IS NOT NULL", lo, 32, &r)
                            : rmq_pull_consumer_pull(c, &mq[q], "*", off, 32, &r);
        if (rc != RMQ_OK) break;
        for (size_t k = 0; k < r.n; k++) {
          use_msg(b, &r.msgs[k], k == 0);
          note_key(f, &r.msgs[k]);
        }
        if (round == 1) continue;
        if (r.pull_status == RMQ_PULL_NO_NEW_MSG || r.next_begin_offset <= off) break;
        off = r.next_begin_offset;
      }
      rmq_pull_consumer_update_consume_offset(c, &mq[q], off);
    }
  }
  rmq_pull_consumer_destroy(c);
}

static void read_through(rmq_broker *b)
{
  found f;
  memset(&f, 0, sizeof f);
  rmq_recovery_info ri;
  rmq_broker_recovery_info(b, &ri);
  rmq_check_result cr;
  pull_all(b, &f);
  rmq_broker_check(b, NULL, NULL, &cr);
  rmq_query_result qr;
  if (rmq_broker_query_message(b, f.key[0] ? f.topic : "TopicTest", f.key[0] ? f.key : "KEY1", 32, 0, INT64_MAX,
                               &qr) == RMQ_OK) {
    for (size_t k = 0; k < qr.n; k++) use_msg(b, &qr.msgs[k], 0);
    rmq_query_result_free(&qr);
  }
  rmq_message_ext *x = NULL;
  if (f.uniq[0] && rmq_broker_query_message_by_uniq_key(b, NULL, f.uniq, &x) == RMQ_OK) {
    use_msg(b, x, 0);
    rmq_message_ext_free(x);
  }
  rmq_broker_stats st;
  if (rmq_broker_stats_get(b, &st) == RMQ_OK) {
    for (size_t k = 0; k < st.ntopics; k++) use_bytes(st.topics[k].topic, strlen(st.topics[k].topic));
    for (size_t k = 0; k < st.ngroups; k++) use_bytes(st.groups[k].queues, st.groups[k].nqueues * sizeof *st.groups[k].queues);
    rmq_broker_stats_free(&st);
  }
}

/* After recovery the store must take a new message where it left off. */
static void write_one(rmq_broker *b)
{
  rmq_producer *p = NULL;
  if (rmq_producer_create(b, "FuzzProducer", NULL, &p) != RMQ_OK) return;
  rmq_msg *m = NULL;
  if (rmq_msg_create(&m, "FuzzTopic", "TagA", "hello", 5) == RMQ_OK) {
    rmq_msg_set_keys(m, "KEY1");
    rmq_send_result r;
    rmq_producer_send(p, m, &r);
    rmq_msg_free(m);
  }
  rmq_producer_destroy(p);
}

static void open_and_read(int mode, int read_only)
{
  rmq_broker_options o;
  rmq_broker_options_init(&o);
  o.service_thread = 0;
  o.log_level = RMQ_LOG_NONE;
  o.clock = fixed_clock;
  o.read_only = read_only;
  /* Small geometry for what a store without files makes anew; existing
  ** files keep theirs. */
  o.mapped_file_size_commit_log = 64 * 1024;
  o.mapped_file_size_consume_queue = 1280;
  o.max_hash_slot_num = 64;
  o.max_index_num = 256;
  o.max_mapped_consume_queue_files = 64;
  o.check_crc_on_recover = !(mode & 4);
  o.message_index_enable = !(mode & 8);
  if (mode & 16) o.flush_disk_type = RMQ_SYNC_FLUSH;
  rmq_broker *b = NULL;
  if (rmq_broker_open(g_dir, &o, &b) != RMQ_OK) return;
  read_through(b);
  if (!read_only) {
    write_one(b);
    if (mode & 32) rmq_broker_run_due(b, NULL);
  }
  rmq_broker_close(b);
}

static void remove_root(void) { rm_tree(AT_FDCWD, g_root); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  const char *base = getenv("FUZZ_STORE_TMP");
  snprintf(g_root, sizeof g_root, "%s/rmq-fuzz-store.%d", base && *base ? base : "/dev/shm", (int)getpid());
  snprintf(g_dir, sizeof g_dir, "%s/s", g_root);
  rmq_config_allocator(fz_alloc, NULL);
  rm_tree(AT_FDCWD, g_root);
  if (mkdir(g_root, 0755) != 0) {
    perror(g_root);
    abort();
  }
  atexit(remove_root);
  return 0;
}

/* The lowest free descriptor: a run that leaks one leaves it higher than
** it found it (libFuzzer opens none while the run is on). */
static int lowest_free_fd(void)
{
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) close(fd);
  return fd;
}

/* Mappings of the run's files still in place after the run (the files are
** gone: /proc lists them "(deleted)"): a leak. Thousands of runs later the
** process would meet vm.max_map_count, ENOMEM from every mmap (ASan's too). */
static int store_maps_left(void)
{
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f) return 0;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, g_root)) n++;
  fclose(f);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int fd_base = lowest_free_fd();
  int mode = materialise(data, size);
  /* One open a run, mostly: each is most of a run's time. Both (mode 3):
  ** the read-only open writes nothing, so the writable one that follows
  ** sees the same fresh copy. */
  if (mode & 1) open_and_read(mode, 1);
  if ((mode & 3) != 1) open_and_read(mode, 0);
  rm_tree(AT_FDCWD, g_dir);
  if (lowest_free_fd() != fd_base) {
    fprintf(stderr, "fuzz_store: a file descriptor leaked (lowest free %d, was %d)\n", lowest_free_fd(), fd_base);
    abort();
  }
  int maps = store_maps_left();
  if (maps) {
    fprintf(stderr, "fuzz_store: %d mapping(s) of the store's files left after the run\n", maps);
    abort();
  }
  return 0;
}
