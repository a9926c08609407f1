/*
** rmq.h -- the whole public API of rmq, Apache RocketMQ's message model as an
** embeddable C library.
**
** One process opens a store directory (rmq_broker_open) and gets topics with
** message queues, producers, push and pull consumers in consumer groups, and a
** CommitLog + ConsumeQueue store in RocketMQ's own on-disk format. There is no
** NameServer, no broker process and no network.
**
** Conventions that hold for every function below unless its comment says
** otherwise:
**
**   - Calls that can fail return int: RMQ_OK (0) or a negative RMQ_E* code.
**     rmq_errstr(code) names the code; rmq_errmsg() gives the calling thread's
**     message for its last failed call (which argument, which limit, which
**     file). Results come back through out-parameters.
**   - A NULL handle or a NULL required pointer argument is RMQ_EINVAL,
**     except a NULL name, message or expression, which gets that argument's
**     own code (RMQ_ETOPIC, RMQ_EGROUP, RMQ_ENOBODY, RMQ_EPROPERTY,
**     RMQ_EEXPR) as an empty one does.
**   - Broker, producer and consumer handles carry a magic number, checked
**     first by every call taking one: a handle of another kind is RMQ_EINVAL
**     ("producer handle is invalid (destroyed or not a producer)"), and a
**     void call (destroy, shutdown) returns doing nothing. A destroyed or
**     closed handle fails the same check unless its memory has been reused
**     for a new handle of its kind; that is a cheap best-effort diagnosis,
**     not a promise: using a handle after destroy or close is undefined.
**   - Strings passed in are NUL-terminated UTF-8 and are copied: the caller
**     keeps ownership and may free them when the call returns.
**   - Options structs are filled with defaults by their *_options_init
**     function; passing NULL options means all defaults.
**   - Callbacks take the caller's `void *ctx` as their first argument.
**   - Thread safety is stated in fixed words: "any thread" (may be called
**     concurrently with any call on the same handle), "one thread at a time
**     per handle", "callback only". Where RocketMQ's client object is
**     thread-safe (DefaultMQProducer), rmq's is too: every send is "any
**     thread".
**
** Memory: rmq allocates through one pair of functions, libc's by default,
** replaceable once before first use with rmq_config_allocator(). No heap
** allocation happens per message on the send and consume paths: a thread's
** first send makes its encode buffers, kept for its later sends through any
** producer and freed at the thread's exit or when the process's last
** producer is destroyed.
*/
#ifndef RMQ_H
#define RMQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef RMQ_API
#  if defined(__GNUC__) && !defined(RMQ_AMALGAMATION)
#    define RMQ_API __attribute__((visibility("default")))
#  else
#    define RMQ_API
#  endif
#endif

/* ------------------------------------------------------------------------- */
/* Version                                                                    */
/* ------------------------------------------------------------------------- */

#define RMQ_VERSION_MAJOR 0
#define RMQ_VERSION_MINOR 1
#define RMQ_VERSION_PATCH 0
#define RMQ_VERSION "0.1.0"
/* MAJOR*1000000 + MINOR*1000 + PATCH, SQLite's formula. */
#define RMQ_VERSION_NUMBER \
  (RMQ_VERSION_MAJOR * 1000000 + RMQ_VERSION_MINOR * 1000 + RMQ_VERSION_PATCH)

/* The library's RMQ_VERSION string, so a program can compare it with the
** header it was compiled against. Static storage. Any thread. */
RMQ_API const char *rmq_libversion(void);
/* The library's RMQ_VERSION_NUMBER. Any thread. */
RMQ_API int rmq_libversion_number(void);

/* ------------------------------------------------------------------------- */
/* Errors                                                                     */
/* ------------------------------------------------------------------------- */

#define RMQ_OK            0
#define RMQ_EINVAL       -1  /* an argument is NULL, out of range or malformed */
#define RMQ_ENOMEM       -2  /* an allocation failed */
#define RMQ_EIO          -3  /* a file operation failed (the message names file and call) */
#define RMQ_ENOSPC       -4  /* the disk is full */
#define RMQ_EBUSY        -5  /* the store directory is locked by another open */
#define RMQ_ETIMEDOUT    -6  /* a wait ran out of time */
#define RMQ_ECORRUPT     -7  /* a store or config file is damaged beyond repair */
#define RMQ_ENOTFOUND    -8  /* no such topic, queue, offset or message */
#define RMQ_ESTATE       -9  /* the handle is in the wrong state for this call */
#define RMQ_ETOPIC      -10  /* topic name blank, too long or with illegal characters */
#define RMQ_EGROUP      -11  /* group name blank, too long or with illegal characters */
#define RMQ_ENOBODY     -12  /* message body NULL or empty */
#define RMQ_EMSGSIZE    -13  /* message body over max_message_size */
#define RMQ_EPROPERTY   -14  /* property name or value blank, not UTF-8, or holding 0x01/0x02 */
#define RMQ_ERESERVED   -15  /* property name reserved for the system */
#define RMQ_EPROPSIZE   -16  /* encoded properties over 32767 bytes */
#define RMQ_EFORBIDDEN  -17  /* sending to this system topic is forbidden */
#define RMQ_ENOTOPIC    -18  /* topic does not exist and auto-create is off */
#define RMQ_EQUEUE      -19  /* queue id or queue count out of range */
#define RMQ_EEXPR       -20  /* subscription expression invalid */
#define RMQ_ENOTSUP     -21  /* feature disabled by an option */
#define RMQ_EBATCH      -22  /* a batch breaks RocketMQ's rules: empty, mixed topics, delayed, retry topic */
#define RMQ_ETIMER      -23  /* a delivery time past timer_max_delay_sec ahead, or not a number */
#define RMQ_EREADONLY   -24  /* the broker was opened read-only (rmq_broker_options.read_only) */

/* A static, never NULL, English description of any code (unknown codes get
** a generic text). Any thread. */
RMQ_API const char *rmq_errstr(int code);

/* The calling thread's message for its most recent failed rmq call, e.g.
** "The specified topic[a/b] contains illegal character '/', allowing only ^[%|a-zA-Z0-9_-]+$".
** Owned by rmq, valid until this thread's next rmq call. "" when no call
** failed yet. Any thread (each thread has its own message). */
RMQ_API const char *rmq_errmsg(void);

/* ------------------------------------------------------------------------- */
/* Allocation                                                                 */
/* ------------------------------------------------------------------------- */

/* lua_Alloc's shape: nsize == 0 frees ptr and returns NULL; otherwise
** (re)allocates ptr (NULL = new) of osize bytes to nsize bytes and returns
** it, or NULL on failure (ptr untouched). */
typedef void *(*rmq_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* Replaces the allocator rmq uses for everything it allocates. Call it before
** any other rmq call, or when no rmq object exists (every broker closed,
** every producer, consumer, message, selector and copy freed: the threads'
** send buffers go with the last producer); NULL restores libc's. The
** function must be thread-safe. Not thread-safe itself: no other rmq call
** may run meanwhile. */
RMQ_API void rmq_config_allocator(rmq_alloc_fn fn, void *ud);

/* ------------------------------------------------------------------------- */
/* Constants                                                                  */
/* ------------------------------------------------------------------------- */

/* flushDiskType */
#define RMQ_ASYNC_FLUSH 0
#define RMQ_SYNC_FLUSH  1

/* SendStatus */
#define RMQ_SEND_OK                0
#define RMQ_FLUSH_DISK_TIMEOUT     1
#define RMQ_FLUSH_SLAVE_TIMEOUT    2
#define RMQ_SLAVE_NOT_AVAILABLE    3

/* PullStatus */
#define RMQ_PULL_FOUND             0
#define RMQ_PULL_NO_NEW_MSG        1
#define RMQ_PULL_NO_MATCHED_MSG    2
#define RMQ_PULL_OFFSET_ILLEGAL    3

/* ConsumeConcurrentlyStatus */
#define RMQ_CONSUME_SUCCESS        0
#define RMQ_RECONSUME_LATER        1
/* ConsumeOrderlyStatus: RMQ_CONSUME_SUCCESS, or this (RocketMQ's ordinal) */
#define RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT 3

/* ConsumeFromWhere: where a push consumer starts on a queue its group has no
** stored offset for (see rmq_push_consumer_options.consume_from_where). */
#define RMQ_CONSUME_FROM_LAST_OFFSET   0 /* the queue's end (0 while it still holds its first message) */
#define RMQ_CONSUME_FROM_FIRST_OFFSET  1 /* the queue's min offset: its oldest message still stored */
#define RMQ_CONSUME_FROM_TIMESTAMP     2 /* the first message stored at or after consume_timestamp */

/* MessageModel */
#define RMQ_CLUSTERING    0
#define RMQ_BROADCASTING  1

/* Log levels, most severe first. */
#define RMQ_LOG_NONE  -1 /* as log_level: nothing is logged */
#define RMQ_LOG_ERROR 0
#define RMQ_LOG_WARN  1
#define RMQ_LOG_INFO  2
#define RMQ_LOG_DEBUG 3

/* RocketMQ's limits. */
#define RMQ_TOPIC_MAX_LEN       127
#define RMQ_GROUP_MAX_LEN       120
#define RMQ_PROPERTIES_MAX_LEN  32767
#define RMQ_MAX_QUEUE_NUMS      1024

/* Buffer sizes for ids: 32 hex characters for IPv4 ids, 56 for IPv6. */
#define RMQ_MSG_ID_SIZE 57

/* ------------------------------------------------------------------------- */
/* Broker: one open store directory                                           */
/* ------------------------------------------------------------------------- */

typedef struct rmq_broker rmq_broker;

/* Log sink: level is RMQ_LOG_*, msg a NUL-terminated line without newline,
** valid during the call. Called from any rmq thread; must be thread-safe. */
typedef void (*rmq_log_fn)(void *ctx, int level, const char *msg);

/* The clock every timestamp and timer reads: milliseconds since the Unix
** epoch. Replacing it lets tests run time forward without sleeping. Called
** from any rmq thread, also under rmq's locks: it must be thread-safe, fast
** and never call into rmq. */
typedef int64_t (*rmq_clock_fn)(void *ctx);

/* RocketMQ's default messageDelayLevel: the delays of levels 1..18. */
#define RMQ_DEFAULT_DELAY_LEVELS "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"

typedef struct rmq_broker_options {
  /* flushDiskType: RMQ_ASYNC_FLUSH (default) returns from a send when the
  ** record is in the page cache and flushes every flush_interval_commit_log;
  ** RMQ_SYNC_FLUSH returns SEND_OK only when the record is on disk
  ** (concurrent senders share one flush: group commit). */
  int flush_disk_type;
  /* flushIntervalCommitLog, ms, default 500 (ASYNC_FLUSH period). */
  int flush_interval_commit_log;
  /* flushCommitLogLeastPages, 4 KiB pages, default 4: an ASYNC periodic flush
  ** is skipped while fewer pages are dirty ... */
  int flush_commit_log_least_pages;
  /* flushCommitLogThoroughInterval, ms, default 10000: ... unless this long
  ** has passed since the last flush. Under ASYNC_FLUSH the CommitLog is
  ** mapped with 2 MiB huge folios where the kernel allows (see README,
  ** Performance): a flush writes a dirty folio whole, so between thorough
  ** flushes only whole folios are flushed, and the last, partly written
  ** one waits for the next thorough flush (at most this long). */
  int flush_commit_log_thorough_interval;
  /* flushIntervalConsumeQueue, ms, default 1000. */
  int flush_interval_consume_queue;
  /* syncFlushTimeout, ms, default 5000: a SYNC_FLUSH send whose flush takes
  ** longer returns status RMQ_FLUSH_DISK_TIMEOUT (the record is stored). */
  int sync_flush_timeout;
  /* mappedFileSizeCommitLog, bytes, default 64 MiB (RocketMQ: 1 GiB). Must be
  ** a multiple of 4096, at least 64 KiB. An existing store keeps the size its
  ** files were made with. */
  int64_t mapped_file_size_commit_log;
  /* mappedFileSizeConsumeQueue, bytes, default 6000000 (300000 units). Must be
  ** a multiple of 20, at least 1280 (64 units). */
  int mapped_file_size_consume_queue;
  /* maxMessageSize, bytes of body, default 4194304. */
  int max_message_size;
  /* defaultTopicQueueNums, default 8: the broker-side cap on queues of an
  ** auto-created topic (the producer asks for its own default, 4). */
  int default_topic_queue_nums;
  /* autoCreateTopicEnable, default 1: a send to an unknown topic creates it. */
  int auto_create_topic_enable;
  /* enablePropertyFilter, default 1 (RocketMQ's default is false): consumers
  ** may subscribe and pull with SQL92 selectors. With 0 such a subscribe,
  ** pull or assign fails with RMQ_ENOTSUP, as RocketMQ refuses it. */
  int enable_property_filter;
  /* checkCRCOnRecover, default 1: recovery checks every record's body CRC. */
  int check_crc_on_recover;
  /* flushConsumerOffsetInterval, ms, default 5000: consumer offsets are
  ** written to config/consumerOffset.json this often (and at close). */
  int flush_consumer_offset_interval;
  /* Run rmq's service threads (default 1): the service thread (ASYNC
  ** flushes, ConsumeQueue flushes, offset persistence, transaction checks,
  ** the disk check, retention and the completion of SYNC_FLUSH async
  ** sends) and the delivery thread (timed and delayed messages, at their
  ** time: it sleeps until the next is due and never waits for a flush).
  ** With 0, rmq starts no thread of its own for the broker and the
  ** application calls rmq_broker_run_due() instead. (Push consumers always
  ** own threads.) */
  int service_thread;
  /* SYNC_FLUSH group commit: how long, in microseconds, a flush leader waits
  ** for other senders that are about to append so one sync covers them all.
  ** Default 200; 0 disables gathering. Only waits when other senders exist. */
  int group_commit_gather_us;
  /* messageDelayLevel: the delays of levels 1, 2, ... as "1s 5s 10s 1m 2h"
  ** (units s, m, h, d; up to 64 levels). NULL (default) = RocketMQ's
  ** RMQ_DEFAULT_DELAY_LEVELS. A message's level above the count is clamped
  ** to the last. Parsed at open (the string need not outlive it). */
  const char *message_delay_level;
  /* brokerName shown in MessageQueue, default "rmq-broker" (1..63 bytes). Copied. */
  const char *broker_name;
  /* Store host written into records and offsetMsgId: IPv4 dotted string,
  ** default "127.0.0.1", and port, default 10911. Copied. */
  const char *store_host;
  int store_port;
  /* The clock (NULL = the system clock) and its ctx. */
  rmq_clock_fn clock;
  void *clock_ctx;
  /* Log sink (NULL = lines "rmq WARN: ..." to stderr) and the most verbose
  ** level passed to it: RMQ_LOG_NONE (nothing, stderr stays silent) ..
  ** RMQ_LOG_DEBUG, default RMQ_LOG_WARN (errors and warnings: a damaged
  ** file repaired at open, a full disk, a failed offsets write, a queue
  ** handed over after handover_timeout_ms). Others: RMQ_EINVAL. */
  rmq_log_fn log;
  void *log_ctx;
  int log_level;
  /* The most ConsumeQueue files kept mapped at once, default 16384 (0 =
  ** default; Linux allows 65530 mappings a process). A mapped file holds no
  ** descriptor. Idle ones beyond it are unmapped (least recently used
  ** first) and mapped again when next read or written, so a store of any
  ** number of queues stays within the process's limits. No RocketMQ key
  ** (RocketMQ keeps every file mapped and open). */
  int max_mapped_consume_queue_files;
  /* diskSpaceWarningLevelRatio, percent, default 90 (clamped to 35..90 as
  ** RocketMQ does): when the file system holding the store is fuller than
  ** this, the store is marked full and sends fail with RMQ_ENOSPC ("the
  ** broker's disk is full") until it is no longer; reads go on. Checked at
  ** open, every clean_resource_interval and when a CommitLog file is made. */
  int disk_space_warning_level_ratio;
  /* cleanResourceInterval, ms, default 10000: how often the disk is checked
  ** and retention runs (see below). */
  int clean_resource_interval;
  /* Retention, as RocketMQ's CleanCommitLogService does it. Every
  ** clean_resource_interval, if the hour (local time, broker's clock) is one
  ** of delete_when, or the disk is fuller than disk_max_used_space_ratio, or
  ** rmq_broker_delete_expired_files() asks, CommitLog files last written
  ** more than file_reserved_time ago are deleted, oldest first, at most
  ** delete_file_batch_max a round, never the file being written nor one not
  ** yet flushed. Over disk_space_clean_forcibly_ratio (or the warning level)
  ** with clean_file_forcibly_enable, files are deleted whatever their age.
  ** Then ConsumeQueue files whose last unit points below the CommitLog's new
  ** first offset are deleted and each queue's min offset moves up to its
  ** first message still stored; consumers below it continue there. */
  /* fileReservedTime, hours, default 72 (0: a file expires as soon as it
  ** is complete). */
  int file_reserved_time;
  /* deleteWhen, hours of the day separated by ';', default "04". NULL =
  ** default, "" = never by the clock (space and the manual call still
  ** delete). Parsed at open. */
  const char *delete_when;
  /* diskMaxUsedSpaceRatio, percent, default 75 (clamped 10..95). */
  int disk_max_used_space_ratio;
  /* diskSpaceCleanForciblyRatio, percent, default 85 (clamped 30..85). */
  int disk_space_clean_forcibly_ratio;
  /* cleanFileForciblyEnable, default 1. */
  int clean_file_forcibly_enable;
  /* deleteFileBatchMax, default 10: CommitLog files deleted a round. */
  int delete_file_batch_max;
  /* Transactions (see rmq_producer_send_message_in_transaction), as
  ** RocketMQ's broker checks undecided half messages: one is first checked
  ** once it is transaction_timeout ms old (transactionTimeOut, default
  ** 6000), passes run every transaction_check_interval ms
  ** (transactionCheckInterval, default 30000), and a half message checked
  ** transaction_check_max times (transactionCheckMax, default 15) is
  ** discarded to TRANS_CHECK_MAX_TIME_TOPIC with a warning. */
  int transaction_timeout;
  int transaction_check_interval;
  int transaction_check_max;
  /* Timer messages (rmq_msg_set_deliver_time_ms and friends): the furthest
  ** ahead a delivery time may be, in seconds (timerMaxDelaySec, default
  ** 259200 = 3 days; further is RMQ_ETIMER), and the precision, in ms
  ** (timerPrecisionMs, 1..1000, default 1; RocketMQ's is 1000): a message
  ** is delivered at its time rounded up to a multiple of it, never before. */
  int timer_max_delay_sec;
  int timer_precision_ms;
  /* The key index, RocketMQ's IndexService (messageIndexEnable, default 1):
  ** every message's UNIQ_KEY and each space-separated word of its KEYS are
  ** indexed under "topic#key" in index/<yyyyMMddHHmmssSSS> files in
  ** RocketMQ's IndexFile format, for rmq_broker_query_message and
  ** rmq_broker_query_message_by_uniq_key. Built off the send path: by a
  ** thread of its own when service_thread is on, else by
  ** rmq_broker_run_due; every query first indexes what is not yet, so a
  ** query sees every message stored before it. Complete at every close,
  ** repaired after a crash, deleted by retention with the CommitLog files
  ** it points into. 0: no index is written (existing files stay; queries
  ** by key find nothing newer than them). */
  int message_index_enable;
  /* maxHashSlotNum (default 5000000) and maxIndexNum (default 20000000):
  ** the geometry of each new index file, RocketMQ's defaults, so a
  ** RocketMQ broker with its default configuration can read rmq's index
  ** (with other values, set the same two keys in its broker.conf). A file
  ** is 40 + 4 * slots + 20 * entries bytes long (420,000,040 with the
  ** defaults); its slot table (20 MB) is allocated on disk when the file is
  ** made, its entries as they are written. Existing files keep their own
  ** geometry. Slots 1..100,000,000, entries 2..100,000,000. */
  int max_hash_slot_num;
  int max_index_num;
  /* Open read-only (default 0): for inspecting a store another process has
  ** open, a copy, or a store on a read-only mount. Takes no lock, writes,
  ** creates and deletes no file, starts no thread, recovers nothing on disk
  ** (a store left by a crash is read as it is, up to its last whole record,
  ** with its ConsumeQueues and index as they are). Reads, lookups,
  ** statistics and rmq_broker_check work; anything that would write (a
  ** send, a topic or group change, an offset commit, a flush, run_due,
  ** retention) fails with RMQ_EREADONLY. A store another process is
  ** writing may change under the reader: the view is of the moment of the
  ** open (records written after it are not seen). */
  int read_only;
} rmq_broker_options;

/* Writes every default into *o (NULL: does nothing). Any thread. */
RMQ_API void rmq_broker_options_init(rmq_broker_options *o);

/* What the last open found and repaired. */
typedef struct rmq_recovery_info {
  int abnormal;                 /* 1: the previous run did not close cleanly */
  int64_t commitlog_min_offset; /* first physical offset in the store */
  int64_t commitlog_max_offset; /* end of the last whole record */
  int64_t records_scanned;      /* records checked by the recovery scan */
  int64_t bytes_truncated;      /* CommitLog bytes dropped after the last good record */
  int64_t cq_units_rebuilt;     /* ConsumeQueue units written from the CommitLog */
  int64_t cq_units_dropped;     /* ConsumeQueue units removed (pointed past the end) */
  int files_removed;            /* CommitLog / ConsumeQueue files deleted */
  int64_t bytes_skipped;        /* CommitLog bytes after damage in the middle of the log
                                ** (whole records follow in the next file): kept, not indexed */
} rmq_recovery_info;

/* Opens (creating if needed) the store directory `dir` and recovers it:
** after a clean close by rmq it trusts the checkpoint and ConsumeQueues and
** reads nothing (config/rmq_queues.txt says where every queue stands; each
** ConsumeQueue file is stat'ed); otherwise (a store RocketMQ closed, a lost
** or cut file) it rescans the last three CommitLog files; after a crash it
** rescans the CommitLog, truncates at the first bad record and repairs the
** ConsumeQueues. Damage met when there was no crash is skipped, not cut (see
** the README). Opening costs time and memory in proportion to the queues and
** the data since the checkpoint, not to the files' reserved size. What was
** found and dropped is logged and readable with rmq_broker_recovery_info().
** `o` may be NULL (defaults); its strings are copied. On success *out is a
** broker the caller closes with rmq_broker_close(). Any thread.
** Errors: RMQ_EBUSY (the directory is already open, in this or another
** process, by rmq or by RocketMQ: both lock byte 0 of `lock` with fcntl),
** RMQ_EIO / RMQ_ENOSPC (file calls), RMQ_ECORRUPT (damage rmq does not
** repair, e.g. topics.json and its .bak both unreadable, a config file that
** is not a regular file or is over 64 MiB, a CommitLog file out of
** sequence, short though not the last, or holding another offset's records:
** open refused, nothing changed), RMQ_ENOMEM (also: the service threads
** cannot start), RMQ_EINVAL (dir NULL or empty, out NULL, an option out of
** range or unparsable: rmq_errmsg() names it). */
RMQ_API int rmq_broker_open(const char *dir, const rmq_broker_options *o, rmq_broker **out);

/* Flushes everything, persists offsets and config, stops the service threads,
** removes `abort`, unlocks and frees the broker. Every producer and consumer
** made on it must be destroyed first (RMQ_ESTATE otherwise, and nothing is
** closed). NULL is a no-op returning RMQ_OK. After an I/O error during the
** final flush the broker is still freed and the error returned (the next
** open then recovers). One thread, with no other call on this broker.
** Errors: RMQ_ESTATE (producers or consumers alive), RMQ_EIO / RMQ_ENOSPC /
** RMQ_ENOMEM (the final flush, offsets or config writes). */
RMQ_API int rmq_broker_close(rmq_broker *b);

/* Does the service threads' work that is due now by the broker's clock:
**   - timer messages whose delivery time has come, in due order, each
**     stored into its real topic and queue (see rmq_msg_set_deliver_time_ms);
**     config/rmq_timer.bin (their snapshot) every
**     flush_consumer_offset_interval, written by this call;
**   - every transaction_check_interval, the check of undecided half
**     messages: the check listener of a producer of their group runs on
**     the calling thread (see rmq_producer_send_message_in_transaction);
**   - delayed delivery (RocketMQ's ScheduleMessageService): messages sent
**     with a delay level, and failed messages a consumer sent back to
**     %RETRY%<group>, wait in SCHEDULE_TOPIC_XXXX, one queue per delay
**     level; each one whose time has come is stored into its real topic and
**     queue (the topic made if missing; one whose topic was deleted, or
**     whose record retention took first, is skipped);
**   - the periodic CommitLog flush, every flush_interval_commit_log when
**     flush_commit_log_least_pages are dirty or
**     flush_commit_log_thorough_interval has passed;
**   - every clean_resource_interval, the disk check and retention
**     (CommitLog files, then ConsumeQueue files and min offsets);
**   - every flush_interval_consume_queue, the ConsumeQueue flush and the
**     checkpoint;
**   - every flush_consumer_offset_interval, when changed,
**     config/consumerOffset.json and config/delayOffset.json;
**   - completing SYNC_FLUSH async sends: a flush covering them, then their
**     callbacks, on the calling thread.
** Meant for brokers opened with service_thread = 0, which must call it
** regularly: without it no delayed, timed or retried message is delivered,
** no half message is checked and no SYNC_FLUSH async send completes.
** Harmless otherwise (each part runs in one thread at a time). If
** next_due_ms is not NULL it receives how many ms until the next of these
** is due (the next delayed or timed message included, at most 1000): call
** again by then, or sooner after a send with a delay or delivery time. Any
** thread.
** Errors: RMQ_EIO / RMQ_ENOSPC (a flush, a file's deletion, a config write,
** a delayed message's store; retried at its next turn), RMQ_ENOMEM,
** RMQ_ETIMEDOUT (a CommitLog flush waited over 60 s for another thread's). */
RMQ_API int rmq_broker_run_due(rmq_broker *b, int64_t *next_due_ms);

/* RocketMQ's executeDeleteFilesManually, done now: deletes every CommitLog
** file older than file_reserved_time whatever the hour (and, over the
** forced-clean ratio, whatever its age), then the ConsumeQueue files that
** point only below the new first offset, exactly as the periodic clean-up
** does. *deleted (may be NULL) gets the number of CommitLog files deleted.
** A file a message view still holds leaves the disk when the view ends.
** Any thread. Errors: RMQ_EIO / RMQ_ENOSPC (the CommitLog flush done first,
** or a file's removal), RMQ_ETIMEDOUT (that flush waited over 60 s for
** another thread's). */
RMQ_API int rmq_broker_delete_expired_files(rmq_broker *b, int *deleted);

/* Flushes the CommitLog, ConsumeQueues, checkpoint, consumer and delay
** offsets to disk now, whatever the flush type, and completes the SYNC_FLUSH
** async sends it covers (their callbacks run on this thread). Any thread.
** Errors: RMQ_EIO, RMQ_ENOSPC, RMQ_ENOMEM (writing the offsets),
** RMQ_ETIMEDOUT (the CommitLog flush waited over 60 s for another thread's). */
RMQ_API int rmq_broker_flush(rmq_broker *b);

/* Copies what the last open found into *out. Any thread.
** Errors: RMQ_EINVAL (out NULL). */
RMQ_API int rmq_broker_recovery_info(rmq_broker *b, rmq_recovery_info *out);

/* ------------------------------------------------------------------------- */
/* Topics and queues                                                          */
/* ------------------------------------------------------------------------- */

typedef struct rmq_topic_info {
  char topic_name[256];
  int read_queue_nums;
  int write_queue_nums;
  int perm;       /* RocketMQ perm bits: 4 READ | 2 WRITE = 6 */
} rmq_topic_info;

typedef struct rmq_message_queue {
  char topic[256];
  char broker_name[64];
  int queue_id;
} rmq_message_queue;

/* Creates topic `topic` with `queue_nums` read and write queues (1..1024),
** or changes an existing topic's queue count (growing keeps every queue's
** messages; shrinking hides the higher queues from producers and consumers
** but keeps their files). Durable when it returns: one synced line in
** config/rmq_topics.journal, folded into config/topics.json (written
** atomically) as the journal grows and at close, so N creates cost O(N).
** Any thread.
** Errors: RMQ_EINVAL (b NULL or not an open broker), RMQ_ETOPIC (name),
** RMQ_EFORBIDDEN (a system topic name), RMQ_EQUEUE (queue_nums out of
** range), RMQ_EIO / RMQ_ENOSPC (writing the topic journal; the call then
** changed nothing), RMQ_ENOMEM. */
RMQ_API int rmq_topic_create(rmq_broker *b, const char *topic, int queue_nums);

/* Deletes topic `topic`, as RocketMQ's deleteTopic: it is gone from
** lookups, rmq_topic_list and config/topics.json at once, its
** ConsumeQueue files are removed and every group's offsets of it are
** forgotten. Its records stay in the CommitLog until retention takes their
** files; recovery and delayed delivery skip them, so a topic made again
** under the same name starts empty at queue offset 0. Sends to it fail
** with RMQ_ENOTOPIC (or, with auto_create_topic_enable, make it anew);
** consumers subscribed to it get nothing more. Durable when it returns
** (config/rmq_deleted_topics.txt; an open after a crash finishes a
** deletion cut short). Any thread.
** Errors: RMQ_ETOPIC (name), RMQ_EFORBIDDEN (a system topic),
** RMQ_ENOTOPIC (no such topic), RMQ_EIO / RMQ_ENOSPC / RMQ_ENOMEM (nothing
** changed). */
RMQ_API int rmq_topic_delete(rmq_broker *b, const char *topic);

/* Deletes consumer group `group`, as RocketMQ's deleteSubscriptionGroup
** with its offsets cleaned: its consume offsets of every topic, and its
** retry and dead-letter topics (%RETRY%group, %DLQ%group, with
** rmq_topic_delete's effects). Offsets a broadcasting consumer keeps in its
** own file are the client's, as in RocketMQ, and stay. Any thread.
** Errors: RMQ_EGROUP (name), RMQ_ESTATE (a consumer of the group is alive:
** destroy it first), RMQ_ENOTFOUND (no offsets, retry or dead-letter topic
** of the group), RMQ_EIO / RMQ_ENOSPC, RMQ_ENOMEM. */
RMQ_API int rmq_group_delete(rmq_broker *b, const char *group);

/* Fills out[0..cap) with the broker's topics in name order and sets *n to
** how many exist (which may exceed cap: call again with a bigger array).
** out may be NULL when cap is 0. Any thread.
** Errors: RMQ_EINVAL (n NULL, or out NULL with cap > 0), RMQ_ENOMEM. */
RMQ_API int rmq_topic_list(rmq_broker *b, rmq_topic_info *out, size_t cap, size_t *n);

/* The first and one-past-last queue offsets stored in one queue (min == max:
** the queue is empty); either out pointer may be NULL. Any thread.
** Errors: RMQ_EINVAL (topic NULL), RMQ_ENOTOPIC (no such topic; the name is
** not otherwise checked), RMQ_EQUEUE. */
RMQ_API int rmq_topic_queue_offsets(rmq_broker *b, const char *topic, int queue_id,
                                    int64_t *min_offset, int64_t *max_offset);

/* ------------------------------------------------------------------------- */
/* Messages to send                                                           */
/* ------------------------------------------------------------------------- */

/* A message under construction, owned by the caller. Reusable: a producer
** only reads it, so one rmq_msg can be changed and sent again and again
** (setters reuse its buffers, so a loop of sends allocates nothing), and
** several threads may send the same message at once while none changes it. */
typedef struct rmq_msg rmq_msg;

/* Creates a message. topic, tags and body may be NULL (set them later);
** body_len bytes of body are copied. Free with rmq_msg_free(). Any thread.
** Errors: RMQ_EINVAL (out NULL), RMQ_EPROPERTY (tags, as
** rmq_msg_set_tags), RMQ_ENOMEM. */
RMQ_API int rmq_msg_create(rmq_msg **out, const char *topic, const char *tags,
                           const void *body, size_t body_len);
/* Frees a message. NULL is a no-op. One thread at a time per message, and
** not while a send of it is running. */
RMQ_API void rmq_msg_free(rmq_msg *m);

/* Setters (this one to rmq_msg_put_user_property) copy their arguments. One
** thread at a time per message, and not while a send of it is running.
** The topic's name is checked at send time; this call's errors: RMQ_EINVAL
** (topic NULL), RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_topic(rmq_msg *m, const char *topic);
/* Tags (property TAGS; NULL or "" clears). One thread at a time per message.
** Errors: RMQ_EPROPERTY (blank, invalid UTF-8, a 0x01 or 0x02 byte),
** RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_tags(rmq_msg *m, const char *tags);
/* Keys (property KEYS), several separated by a space; each is indexed.
** NULL or "" clears. One thread at a time per message. Errors: RMQ_EPROPERTY
** (as tags), RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_keys(rmq_msg *m, const char *keys);
/* Body bytes (binary), copied (body NULL: empty). Emptiness and size are
** checked at send. One thread at a time per message. Errors: RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_body(rmq_msg *m, const void *body, size_t len);
/* The user's int flag, stored as is. One thread at a time per message. */
RMQ_API int rmq_msg_set_flag(rmq_msg *m, int32_t flag);
/* Delay level: 0 (none), or 1 .. the broker's level count (18 with
** RocketMQ's default message_delay_level); a higher one is clamped to the
** last level at send. Stored in the DELAY property. One thread at a time
** per message. Errors: RMQ_EINVAL (a negative level), RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_delay_time_level(rmq_msg *m, int level);
/* Delivery at a chosen time (RocketMQ 5's timer messages). Each sets one
** property, a decimal number: rmq_msg_set_deliver_time_ms the absolute
** time in ms since the epoch on the broker's clock (TIMER_DELIVER_MS),
** rmq_msg_set_delay_time_sec / _ms a delay counted from the send
** (TIMER_DELAY_SEC / TIMER_DELAY_MS). When several are set, TIMER_DELAY_SEC
** wins, then TIMER_DELAY_MS, as in RocketMQ's broker; a delay level
** (rmq_msg_set_delay_time_level) wins over all three, which are then
** dropped. At send, a time past timer_max_delay_sec ahead is refused with
** RMQ_ETIMER; one not in the future is stored as a plain message at once;
** otherwise the message waits in rmq_sys_wheel_timer and is delivered to
** its topic when due (see the README, Timer messages). Not for batches
** (RMQ_EBATCH) nor transactional sends (RMQ_ETIMER). A negative value
** clears the property. One thread at a time per message. Errors: RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_deliver_time_ms(rmq_msg *m, int64_t time_ms);
RMQ_API int rmq_msg_set_delay_time_sec(rmq_msg *m, int64_t sec);
RMQ_API int rmq_msg_set_delay_time_ms(rmq_msg *m, int64_t ms);
/* waitStoreMsgOK (property WAIT), default 1. With 0 a SYNC_FLUSH send does
** not wait for the disk. One thread at a time per message. Errors:
** RMQ_ENOMEM. */
RMQ_API int rmq_msg_set_wait_store_msg_ok(rmq_msg *m, int wait);
/* Adds or replaces a user property. One thread at a time per message.
** Errors: RMQ_EPROPERTY (name or value NULL or blank, invalid UTF-8, a 0x01
** or 0x02 byte), RMQ_ERESERVED (a name RocketMQ reserves, e.g. TAGS,
** UNIQ_KEY, DELAY), RMQ_ENOMEM. */
RMQ_API int rmq_msg_put_user_property(rmq_msg *m, const char *name, const char *value);
/* The value of a property (TAGS, KEYS, WAIT, DELAY or a user property) or
** NULL. Owned by the message, valid until it changes. Any thread while no
** setter runs on the message. */
RMQ_API const char *rmq_msg_get_property(const rmq_msg *m, const char *name);

/* ------------------------------------------------------------------------- */
/* Delivered messages: read-only views                                        */
/* ------------------------------------------------------------------------- */

/* RocketMQ's MessageExt. A delivered message is a view into the mapped
** CommitLog: body, properties, tags and keys point into the store and are
** NOT NUL-terminated (use the _len fields). The view is valid until the
** listener returns (push) or until the next pull on the same handle or its
** destruction (pull), even when retention deletes its CommitLog file
** meanwhile: the view holds the file (RocketMQ's hold/release), whose disk
** space comes back when the last view of it ends. rmq_message_ext_copy()
** makes an owned copy. topic and broker_name are
** NUL-terminated and live as long as the broker. */
typedef struct rmq_message_ext {
  const char *topic;
  const char *broker_name;
  int32_t queue_id;
  int32_t store_size;
  int64_t queue_offset;
  int32_t sys_flag;
  int32_t flag;
  int64_t born_timestamp;
  int64_t store_timestamp;
  uint8_t born_host[16];        /* address bytes, born_host_len 4 (IPv4) or 16 */
  int32_t born_host_len;
  int32_t born_port;
  uint8_t store_host[16];
  int32_t store_host_len;
  int32_t store_port;
  int32_t reconsume_times;
  int64_t prepared_transaction_offset;
  int64_t commit_log_offset;
  int32_t body_crc;
  const void *body;
  int32_t body_len;
  const char *properties;       /* raw: name 0x01 value 0x02 ... */
  int32_t properties_len;
  const char *tags;             /* TAGS value or NULL */
  int32_t tags_len;
  const char *keys;             /* KEYS value or NULL */
  int32_t keys_len;
  char msg_id[RMQ_MSG_ID_SIZE];        /* UNIQ_KEY, else offset_msg_id */
  char offset_msg_id[RMQ_MSG_ID_SIZE]; /* store host + commitlog offset */
  /* Added by the consumer, not stored (RocketMQ's client adds them as
  ** properties): the queue's bounds at pull time and when the listener got it. */
  int64_t min_offset;
  int64_t max_offset;
  int64_t consume_start_time;
} rmq_message_ext;

/* Finds property `name` among m's stored properties: *value (not
** NUL-terminated, pointing into the view) and *len. Any thread while the
** view is valid. Errors: RMQ_EINVAL (an argument NULL, name too),
** RMQ_ENOTFOUND. */
RMQ_API int rmq_message_ext_property(const rmq_message_ext *m, const char *name,
                                     const char **value, size_t *len);
/* Makes an owned deep copy of a view, valid until rmq_message_ext_free().
** Any thread while the view is valid. Errors: RMQ_EINVAL (m or out NULL),
** RMQ_ENOMEM. */
RMQ_API int rmq_message_ext_copy(const rmq_message_ext *m, rmq_message_ext **out);
/* Frees a copy from rmq_message_ext_copy; NULL is a no-op. One thread, not
** while another thread reads the copy. */
RMQ_API void rmq_message_ext_free(rmq_message_ext *m);
/* Writes RocketMQ's MessageExt.toString() of m into buf (always
** NUL-terminated when cap > 0) and returns the length the whole text needs,
** like snprintf. Any thread while the view is valid. RMQ_EINVAL (negative)
** when m is NULL, or buf NULL with cap > 0. */
RMQ_API int rmq_message_ext_format(const rmq_message_ext *m, char *buf, size_t cap);

/* ------------------------------------------------------------------------- */
/* Producer                                                                   */
/* ------------------------------------------------------------------------- */

/* A producer is thread-safe, as RocketMQ's DefaultMQProducer: any number of
** threads may send through one at once, with every kind of send. Sends take
** no lock of the producer's (only the store's, as sends through separate
** producers do), and what a send encodes lives in the sending thread's
** buffers (see Memory above), so sharing one producer is as fast as a
** producer each. Its round robin is one counter: the sends of one thread
** take the queues in turn, and concurrent sends spread over them. */
typedef struct rmq_producer rmq_producer;

typedef struct rmq_send_result {
  int send_status;                     /* RMQ_SEND_OK or RMQ_FLUSH_DISK_TIMEOUT */
  char msg_id[RMQ_MSG_ID_SIZE];        /* UNIQ_KEY */
  char offset_msg_id[RMQ_MSG_ID_SIZE]; /* store host + commitlog offset */
  rmq_message_queue message_queue;
  int64_t queue_offset;
  int64_t commit_log_offset;           /* physical offset of the record */
  int32_t store_size;
  int64_t store_timestamp;
} rmq_send_result;

/* Writes RocketMQ's SendResult.toString() (4.x form) into buf, snprintf-like.
** Any thread. RMQ_EINVAL (negative) when r is NULL, or buf NULL with cap > 0. */
RMQ_API int rmq_send_result_format(const rmq_send_result *r, char *buf, size_t cap);

typedef struct rmq_producer_options {
  /* sendMsgTimeout, ms, default 3000: a send waiting longer (for the disk,
  ** under SYNC_FLUSH) returns RMQ_FLUSH_DISK_TIMEOUT status. */
  int send_msg_timeout;
  /* defaultTopicQueueNums, default 4: queues of a topic auto-created by this
  ** producer's first send (capped by the broker's default_topic_queue_nums). */
  int default_topic_queue_nums;
  /* maxMessageSize, default 4194304 (the broker's limit also applies). */
  int max_message_size;
  /* Client address shown as bornHost: IPv4 string, default "127.0.0.1";
  ** port default 0 = derived from the process id. Copied. */
  const char *born_host;
  int born_port;
} rmq_producer_options;

/* Writes every default into *o (NULL: does nothing). Any thread. */
RMQ_API void rmq_producer_options_init(rmq_producer_options *o);

/* Creates a producer of group `group` (NULL = "DEFAULT_PRODUCER") on broker
** b. Destroy with rmq_producer_destroy() before closing the broker. Any
** thread; the producer may then be shared by any number of threads.
** Errors: RMQ_EINVAL (out NULL; born_host not a dotted IPv4 address;
** send_msg_timeout or max_message_size below 1, default_topic_queue_nums
** outside 1..1024 or born_port outside 0..65535), RMQ_EGROUP, RMQ_ENOMEM. */
RMQ_API int rmq_producer_create(rmq_broker *b, const char *group,
                                const rmq_producer_options *o, rmq_producer **out);
/* Waits for the producer's pending async sends to complete (their callbacks
** run), then frees it. NULL is a no-op. One thread, with no other call on
** this producer running or to come (every thread's sends through it have
** returned), and not from one of its send callbacks or selectors. */
RMQ_API void rmq_producer_destroy(rmq_producer *p);

/* Sends m synchronously: validates it, picks a queue round-robin, stores the
** record and, under SYNC_FLUSH with waitStoreMsgOK, waits for the disk. The
** message gets a UNIQ_KEY (msgId) unless it has one. *r receives the result
** (r may be NULL). Any thread; a producer may be shared by any number of
** threads. Errors: RMQ_ETOPIC, RMQ_EFORBIDDEN (a topic closed to sends,
** e.g. SCHEDULE_TOPIC_XXXX, or auto-creating a system topic), RMQ_ENOTOPIC
** (no such topic and auto_create_topic_enable off, or deleted meanwhile),
** RMQ_ENOBODY (m NULL or its body empty), RMQ_EMSGSIZE (body over
** max_message_size, or the record over a CommitLog file), RMQ_EPROPSIZE,
** RMQ_EIO, RMQ_ENOSPC (the disk is full, or fuller than
** disk_space_warning_level_ratio: the message names the file or the level;
** nothing stored is harmed and sending works again once space is freed),
** RMQ_ENOMEM (e.g. the thread's first send could not make its buffers).
** Under SYNC_FLUSH an RMQ_EIO / RMQ_ENOSPC of the flush comes after the
** record is stored. A flush timeout is not an error: RMQ_OK with
** r->send_status = RMQ_FLUSH_DISK_TIMEOUT. A failed sync (fsync, fdatasync
** or msync of any store file) is never retried as if a later one covered
** it: the store becomes not writable, and this and every later send and
** flush fail with RMQ_EIO ("not writable since a sync failed") while reads
** go on, until the broker is closed (which returns the error and leaves the
** store to be recovered) and opened again. */
RMQ_API int rmq_producer_send(rmq_producer *p, const rmq_msg *m, rmq_send_result *r);

/* Sends m to queue `queue_id` of its topic. As rmq_producer_send, plus
** RMQ_EQUEUE when the queue does not exist (queue_id negative or not below
** the topic's queue count). Any thread; a producer may be shared by any
** number of threads. */
RMQ_API int rmq_producer_send_to_queue(rmq_producer *p, const rmq_msg *m, int queue_id,
                                       rmq_send_result *r);

/* MessageQueueSelector: returns the index in mqs[0..n) of the queue for m,
** from the caller's arg (e.g. an order id: `id % n`). Called on the sending
** thread, by that send only; mqs belongs to that send and is valid during
** the call. It may send (on this producer or another): mqs stays intact. */
typedef int (*rmq_queue_selector)(const rmq_message_queue *mqs, size_t n, const rmq_msg *m, void *arg);

/* Sends m to the queue `select` picks (RocketMQ's send(msg, selector, arg)),
** for ordered messages: the messages one selector result gets are stored in
** send order in one queue (sends of one key from several threads at once
** are stored in the order they reach the store). As rmq_producer_send, plus
** RMQ_EINVAL (no selector) and RMQ_EQUEUE (the selector answered out of
** range). Any thread; a producer may be shared by any number of threads. */
RMQ_API int rmq_producer_send_select(rmq_producer *p, const rmq_msg *m, rmq_queue_selector select,
                                     void *arg, rmq_send_result *r);

/* Sends msgs[0..n) as one batch (RocketMQ's send(Collection)): they go to
** one queue (round-robin per batch) in one append, with consecutive queue
** offsets, all or none; under SYNC_FLUSH one wait covers them. results, when
** not NULL, has room for n results (RocketMQ joins the ids with commas).
** Rules: 1 <= n <= 65536, one topic, no delay level, no %RETRY% topic, the same
** waitStoreMsgOK, and all records together within max_message_size. Errors:
** RMQ_EINVAL (msgs NULL with n > 0), RMQ_EBATCH (the rules), RMQ_EMSGSIZE
** (size), those of rmq_producer_send (the message is named in
** rmq_errmsg()). Any thread; a producer may be shared by any number of
** threads. */
RMQ_API int rmq_producer_send_batch(rmq_producer *p, const rmq_msg *const *msgs, size_t n,
                                    rmq_send_result *results);

/* Async completion: rc is RMQ_OK with the result, or the error (r NULL). The
** result is valid during the call. Called on the sending thread before the
** send returns, unless the send waits for the disk (SYNC_FLUSH with
** waitStoreMsgOK): then once a flush covers the record (rc: that flush's
** error, if any), on the thread completing it: the service thread, or one
** calling rmq_broker_run_due, rmq_broker_flush or rmq_producer_destroy. It
** must not destroy the producer. It may send, on this producer or another
** (on the sending thread it runs after that send is done with its buffers). */
typedef void (*rmq_send_callback)(void *ctx, int rc, const rmq_send_result *r);

/* Sends m without waiting for the disk: the record is stored before this
** returns (so m may be changed at once) and cb runs when the send is
** complete (durable under SYNC_FLUSH). Any thread; a producer may be shared
** by any number of threads. Errors (then cb is not called): those of
** rmq_producer_send but a flush's, and RMQ_ENOMEM (queueing the completion). */
RMQ_API int rmq_producer_send_async(rmq_producer *p, const rmq_msg *m,
                                    rmq_send_callback cb, void *ctx);

/* Sends m and forgets it: stored before return, never waits for the disk,
** no result. Validation and store errors are still returned: those of
** rmq_producer_send but a flush's. Any thread; a producer may be shared by
** any number of threads. */
RMQ_API int rmq_producer_send_oneway(rmq_producer *p, const rmq_msg *m);

/* ------------------------------------------------------------------------- */
/* Transactions                                                               */
/* ------------------------------------------------------------------------- */

/* LocalTransactionState. */
#define RMQ_COMMIT_MESSAGE   0
#define RMQ_ROLLBACK_MESSAGE 1
#define RMQ_UNKNOW           2  /* RocketMQ's spelling */

/* TransactionListener.executeLocalTransaction: runs the local transaction
** for the half message m just stored (m as the caller passed it; its
** transaction id, the message's UNIQ_KEY, in transaction_id) with the
** caller's arg, on the sending thread, and returns a state. Any other
** value counts as RMQ_UNKNOW (logged), as a null or an exception does. */
typedef int (*rmq_execute_local_transaction)(void *ctx, const rmq_msg *m, const char *transaction_id, void *arg);
/* TransactionListener.checkLocalTransaction: asked for a half message whose
** transaction is still undecided transaction_timeout ms after its birth,
** e.g. after UNKNOW or a crash. m is the stored half message with its real
** topic and queue_id; m->msg_id is the transaction id. Returns a state as
** above. Runs on the service thread, or on a thread in rmq_broker_run_due();
** it may send (also transactionally) but must not destroy its producer. */
typedef int (*rmq_check_local_transaction)(void *ctx, const rmq_message_ext *m);

typedef struct rmq_transaction_listener {
  rmq_execute_local_transaction execute_local_transaction;
  rmq_check_local_transaction check_local_transaction;
  void *ctx;
} rmq_transaction_listener;

/* TransactionMQProducer.setTransactionListener: copies *l into p (l NULL
** removes it). From then on undecided half messages of p's group are
** checked through p (any producer of the group with a check function does;
** a pass finding none leaves them as they are, uncounted, until one is
** set). One thread at a time per producer, not while a transactional send
** through it runs. Errors: RMQ_EINVAL (l->execute_local_transaction NULL). */
RMQ_API int rmq_producer_set_transaction_listener(rmq_producer *p, const rmq_transaction_listener *l);

/* TransactionSendResult: the half message's send result (msg_id = the
** transaction id; message_queue = the real topic's queue it goes to;
** queue_offset and offset_msg_id those of the half message) and the state
** the local transaction returned. */
typedef struct rmq_transaction_send_result {
  rmq_send_result send_result;
  int local_transaction_state;          /* RMQ_COMMIT_MESSAGE, RMQ_ROLLBACK_MESSAGE, RMQ_UNKNOW */
  char transaction_id[RMQ_MSG_ID_SIZE]; /* the UNIQ_KEY */
} rmq_transaction_send_result;

/* sendMessageInTransaction, as RocketMQ's broker and client do it together:
**   1. m (its delay level ignored) is stored as a half message in
**      RMQ_SYS_TRANS_HALF_TOPIC with TRAN_MSG=true, PGROUP=<group>, its
**      real topic and queue (round robin) in REAL_TOPIC / REAL_QID:
**      invisible to consumers;
**   2. the execute function runs with arg;
**   3. COMMIT_MESSAGE stores the message into its real topic (a COMMIT
**      record pointing at the half; consumers get it once) and an op record
**      in RMQ_SYS_TRANS_OP_HALF_TOPIC; ROLLBACK_MESSAGE stores only the op
**      record; UNKNOW nothing: the check (rmq_check_local_transaction)
**      decides later.
** Under SYNC_FLUSH a half message not flushed in time (FLUSH_DISK_TIMEOUT)
** is rolled back without running the local transaction, as RocketMQ does.
** *r (may be NULL) gets the result. The decision of a transaction the check
** already took over is ignored (logged). Any thread; the producer may be
** shared. Errors: RMQ_ESTATE ("TransactionListener is null": none set),
** RMQ_ETIMER (m has a delivery time), those of rmq_producer_send for the
** half message (then nothing runs), and for storing the decision
** RMQ_EIO / RMQ_ENOSPC (the check resolves the transaction later). */
RMQ_API int rmq_producer_send_message_in_transaction(rmq_producer *p, const rmq_msg *m, void *arg,
                                                     rmq_transaction_send_result *r);

/* "COMMIT_MESSAGE", "ROLLBACK_MESSAGE", "UNKNOW", or "?" for another value:
** a static string. Any thread. */
RMQ_API const char *rmq_local_transaction_state_name(int state);

/* ------------------------------------------------------------------------- */
/* Push consumer                                                              */
/* ------------------------------------------------------------------------- */

typedef struct rmq_push_consumer rmq_push_consumer;

typedef struct rmq_consume_concurrently_context {
  const char *topic;
  int queue_id;
  /* The listener may set these: RocketMQ's delayLevelWhenNextConsume (0) and
  ** ackIndex (the messages 0..ack_index succeeded when returning SUCCESS;
  ** default: all). */
  int delay_level_when_next_consume;
  int ack_index;
} rmq_consume_concurrently_context;

/* MessageListenerConcurrently: gets msgs[0..n) (n <= consume_message_batch_max_size),
** returns RMQ_CONSUME_SUCCESS or RMQ_RECONSUME_LATER. Runs on the consumer's
** thread pool, several calls at once; the views are valid until it returns.
** Clustering: each failed message (all of them on RECONSUME_LATER, those
** after ack_index on SUCCESS) is sent back to %RETRY%<group> through delay
** level delay_level_when_next_consume (0: 3 + reconsume_times; -1: straight
** to the DLQ) and comes again with reconsume_times + 1 and its original
** topic; after max_reconsume_times retries it goes to %DLQ%<group>.
** Broadcasting: failed messages are dropped (logged), as in RocketMQ. */
typedef int (*rmq_listener_concurrently)(void *ctx, const rmq_message_ext *const *msgs,
                                         size_t n, rmq_consume_concurrently_context *cc);

typedef struct rmq_consume_orderly_context {
  const char *topic;
  int queue_id;
  /* suspendCurrentQueueTimeMillis for this call: the listener may change it
  ** before returning SUSPEND (clamped to 10..30000 ms). */
  int suspend_current_queue_time_millis;
} rmq_consume_orderly_context;

/* MessageListenerOrderly: gets msgs[0..n) of one queue in queue-offset order
** (n <= consume_message_batch_max_size) and returns RMQ_CONSUME_SUCCESS or
** RMQ_SUSPEND_CURRENT_QUEUE_A_MOMENT (the same messages again after the
** suspend time, nothing after them first). At most one call per queue at a
** time, in this process and, for clustering, across the group's consumers;
** calls for different queues run in parallel on the consumer's threads. The
** views are valid until it returns. */
typedef int (*rmq_listener_orderly)(void *ctx, const rmq_message_ext *const *msgs, size_t n,
                                    rmq_consume_orderly_context *oc);

typedef struct rmq_push_consumer_options {
  int message_model;          /* RMQ_CLUSTERING (default) or RMQ_BROADCASTING */
  /* consumeFromWhere, default RMQ_CONSUME_FROM_LAST_OFFSET; used only when
  ** the group (broadcasting: this consumer's own file) has no stored offset
  ** for a queue. LAST_OFFSET starts at the queue's end, but, as in RocketMQ,
  ** at 0 while the queue still holds its first message; FIRST_OFFSET at the
  ** queue's min offset; TIMESTAMP as consume_timestamp says. */
  int consume_from_where;
  /* consumeTimestamp for CONSUME_FROM_TIMESTAMP, ms since epoch by the
  ** broker's clock; default 0 = half an hour before the consumer takes the
  ** queue (at start, or at a later rebalance). Consumption starts at the
  ** first message whose store time is at or after it (the queue's min
  ** offset when none is older), or at the queue's end when every message is
  ** older. Only for a queue without a stored offset, as above. */
  int64_t consume_timestamp;
  int consume_thread_min;     /* consumeThreadMin, default 20 */
  int consume_thread_max;     /* consumeThreadMax, default 20 (the pool is fixed at max(min,max), plus one that pulls) */
  int pull_batch_size;        /* pullBatchSize, default 32 */
  int consume_message_batch_max_size; /* default 1 */
  int pull_threshold_for_queue;       /* pullThresholdForQueue, default 1000 */
  int max_reconsume_times;    /* maxReconsumeTimes, default -1 (16) */
  int persist_consumer_offset_interval; /* ms, default 5000 */
  /* A failed message goes back to the broker (%RETRY%<group>, see
  ** rmq_listener_concurrently); one whose send-back itself failed is
  ** redelivered here after this many ms, default 1000. */
  int reconsume_delay_ms;
  /* suspendCurrentQueueTimeMillis, default 1000: an orderly listener's
  ** SUSPEND waits this long before the messages come again. An orderly
  ** listener retries up to max_reconsume_times (-1: without end, as RocketMQ). */
  int suspend_current_queue_time_millis;
  /* instanceName; NULL = "<pid>#<n>", unique per consumer (broadcasting:
  ** "DEFAULT", as RocketMQ's). The client id ("127.0.0.1@instanceName")
  ** orders consumers for queue allocation and names a broadcasting
  ** consumer's offsets file, config/broadcastOffset.<clientId>.<group>.json
  ** (bytes other than letters, digits, '-', '_', '@' and the client id's
  ** dots written %XX; start fails with RMQ_EINVAL when that name would pass
  ** 251 bytes). */
  const char *instance_name;
  /* Clustering: when a rebalance moves a queue to another member, its new
  ** owner starts only after this consumer's listener calls on the queue
  ** have returned and its offset is committed, so no message is in two
  ** listeners at once and nothing acknowledged is delivered again. Calls
  ** not yet begun are left to the new owner. A call that outlasts this many
  ** ms (default 60000, RocketMQ's lock lifetime) no longer holds the queue
  ** back: the hand-over happens, a warning is logged, and the new owner
  ** delivers that call's messages again. 0 hands over at once, as a RocketMQ
  ** network client does. */
  int handover_timeout_ms;
} rmq_push_consumer_options;

/* Writes every default into *o (NULL: does nothing). Any thread. */
RMQ_API void rmq_push_consumer_options_init(rmq_push_consumer_options *o);

/* Selector types (RocketMQ's ExpressionType), for subscribe, pull, assign
** and rmq_selector_compile. */
#define RMQ_SELECTOR_TAG   0  /* "*", "a || b": the TAGS property */
#define RMQ_SELECTOR_SQL92 1  /* MessageSelector.bySql: sex='F' AND age>=18 */

/* Creates a push consumer of `group` on broker b. Subscribe, register a
** listener, then start it. Destroy before closing the broker. Any thread.
** Errors: RMQ_EGROUP, RMQ_EINVAL (out NULL, or an option out of range:
** rmq_errmsg() names it), RMQ_ENOMEM. */
RMQ_API int rmq_push_consumer_create(rmq_broker *b, const char *group,
                                     const rmq_push_consumer_options *o,
                                     rmq_push_consumer **out);
/* Subscribes `topic` with a tag expression: "*" or NULL (everything), or
** "a || b || c" (messages whose tag is one of them). Subscribing a topic
** again replaces its expression. Before start only. One thread at a time per
** handle. Errors: RMQ_ETOPIC, RMQ_EEXPR, RMQ_ESTATE (started), RMQ_ENOMEM. */
RMQ_API int rmq_push_consumer_subscribe(rmq_push_consumer *c, const char *topic,
                                        const char *expression);
/* Subscribes `topic` with a selector (RocketMQ's MessageSelector): type
** RMQ_SELECTOR_TAG takes a tag expression as above, RMQ_SELECTOR_SQL92 an
** SQL92 expression over the message's properties (MessageSelector.bySql,
** e.g. "sex='F' AND age>=18"; see the README). Messages that do not match
** are skipped store-side: the group's offset moves past them and the
** listener never sees them. A clustering consumer's start subscribes its
** group's %RETRY%<group> topic with "*", as in RocketMQ. Before start only.
** One thread at a time per handle. Errors:
** RMQ_ETOPIC, RMQ_EINVAL (type), RMQ_EEXPR (rmq_errmsg() names the column
** and what was expected; a NULL SQL92 expression too), RMQ_ENOTSUP (SQL92
** with enable_property_filter off), RMQ_ESTATE (started), RMQ_ENOMEM. */
RMQ_API int rmq_push_consumer_subscribe_selector(rmq_push_consumer *c, const char *topic, int type,
                                                 const char *expression);
/* Registers the listener. Before start only. One thread at a time per
** handle. Errors: RMQ_EINVAL (fn NULL), RMQ_ESTATE (started). */
RMQ_API int rmq_push_consumer_register_listener_concurrently(rmq_push_consumer *c,
                                                             rmq_listener_concurrently fn,
                                                             void *ctx);
/* Registers an orderly listener instead (MessageListenerOrderly): each queue
** is consumed by one thread at a time, in order; as with a concurrently
** listener, a clustering group's consumers hand a queue over only when its
** current call has returned (see handover_timeout_ms).
** Before start only. One thread at a time per handle. Errors: RMQ_EINVAL
** (fn NULL), RMQ_ESTATE (started). */
RMQ_API int rmq_push_consumer_register_listener_orderly(rmq_push_consumer *c,
                                                        rmq_listener_orderly fn, void *ctx);
/* Joins the group (queues are shared out among its clustering consumers
** with RocketMQ's AllocateMessageQueueAveragely; the others rebalance before
** this returns), starts the consume threads (max(min, max) + 1: they
** take turns pulling, and the one whose pull found messages runs the
** listener on the first of them itself; at most max(min, max) run a
** listener at once). New messages wake the consumer at
** once (long polling). A clustering consumer first subscribes
** %RETRY%<group> with "*" (made with one queue if missing); a subscribed
** topic that does not exist is made (min(4, default_topic_queue_nums)
** queues). A shut-down consumer cannot start again. One thread at a time
** per handle. Errors: RMQ_ESTATE (no listener or subscription, started
** before, a broadcasting consumer of the group with the same instance
** name runs, or 256 consumers of the group run in this process already:
** a consumer refused for that may start later), RMQ_ENOTOPIC (a subscribed topic does not exist and
** auto_create_topic_enable is off), RMQ_EINVAL (a broadcasting consumer's
** offsets file name would pass 251 bytes), RMQ_EIO / RMQ_ENOSPC (making a
** topic), RMQ_ENOMEM (also: no consume thread could start). */
RMQ_API int rmq_push_consumer_start(rmq_push_consumer *c);
/* The queues currently assigned to c by its group's rebalance, at most cap
** of them into out; *n gets the count (which may exceed cap). Clustering:
** c's share (AllocateMessageQueueAveragely, topic by topic) of each
** subscribed topic's queues, %RETRY%<group> included: start subscribes it,
** and with its one queue it is listed (topic "%RETRY%<group>", queue 0) by
** the group's first consumer in client id order only. Broadcasting: every
** queue of each subscribed topic, no retry topic. In subscription order
** (%RETRY%<group> last unless subscribed before), queues ascending; none
** before start or after shutdown. A queue may be listed while its previous
** owner still finishes its calls (see handover_timeout_ms). Any thread.
** Errors: RMQ_EINVAL (n NULL, or out NULL with cap > 0). */
RMQ_API int rmq_push_consumer_assigned_queues(rmq_push_consumer *c, rmq_message_queue *out,
                                              size_t cap, size_t *n);
/* Stops delivery: waits for running listeners, commits and persists the
** offsets, leaves the group (the rest rebalance). Idempotent. One thread at
** a time per handle; not from a listener (it would wait for itself). */
RMQ_API void rmq_push_consumer_shutdown(rmq_push_consumer *c);
/* Shuts down (if started) and frees. NULL is a no-op. One thread, with no
** other call on this consumer running or to come; not from a listener. */
RMQ_API void rmq_push_consumer_destroy(rmq_push_consumer *c);

/* ------------------------------------------------------------------------- */
/* Selectors (RocketMQ's MessageSelector), usable on their own                */
/* ------------------------------------------------------------------------- */

typedef struct rmq_selector rmq_selector;

/* Compiles expression (type RMQ_SELECTOR_TAG or RMQ_SELECTOR_SQL92) into
** *out, which the caller owns and frees with rmq_selector_free; the
** expression text is copied. A bad expression is RMQ_EEXPR with
** rmq_errmsg() naming the column and what was expected; SQL92 follows
** RocketMQ 5 with the differences listed in the README. Needs no broker.
** Any thread. Errors: RMQ_EINVAL (type, out), RMQ_EEXPR (a NULL SQL92
** expression too; a NULL tag expression is "*"), RMQ_ENOMEM. */
RMQ_API int rmq_selector_compile(int type, const char *expression, rmq_selector **out);
/* 1 when a message with the properties props[0..2*nprops) (name, value,
** name, value, ...; TAGS among them; of duplicate names the last wins) is
** delivered under s, else 0: an SQL92 expression delivers only on TRUE.
** No allocation, except a moment's copy to read a number string longer than
** 359 bytes. Any thread, s shared read-only. RMQ_EINVAL (negative) for NULL
** arguments. */
RMQ_API int rmq_selector_match(const rmq_selector *s, const char *const *props, size_t nprops);
/* Frees a selector from rmq_selector_compile; NULL is a no-op. Any thread,
** but not while another thread matches with it. */
RMQ_API void rmq_selector_free(rmq_selector *s);

/* ------------------------------------------------------------------------- */
/* Consumer progress (RocketMQ's admin ConsumeStats and resetOffsetByTime)    */
/* ------------------------------------------------------------------------- */

typedef struct rmq_queue_progress {
  rmq_message_queue mq;
  int64_t broker_offset;   /* the queue's max offset (next to be written) */
  int64_t consumer_offset; /* the group's committed offset, -1 when it has none */
  int64_t lag;             /* broker_offset - consumer_offset (from the queue's min when none) */
} rmq_queue_progress;

/* A clustering group's progress on each queue of topic, at most cap entries
** into out; *n gets the queue count. Any thread. Errors: RMQ_EINVAL (n NULL,
** or out NULL with cap > 0), RMQ_EGROUP, RMQ_ETOPIC, RMQ_ENOTOPIC. */
RMQ_API int rmq_broker_consumer_progress(rmq_broker *b, const char *group, const char *topic,
                                         rmq_queue_progress *out, size_t cap, size_t *n);
/* Moves a clustering group's offsets on every queue of topic to the first
** message stored at or after timestamp_ms (the queue's end when none), like
** RocketMQ's resetOffsetByTime with force: running consumers of the group
** drop what they hold of the topic and go on from the new offsets (messages
** in their listeners finish, uncommitted). Any thread but a listener of that
** group. Errors: RMQ_EINVAL, RMQ_EGROUP, RMQ_ETOPIC, RMQ_ENOTOPIC, RMQ_ENOMEM,
** RMQ_EIO / RMQ_ENOSPC (writing consumerOffset.json: the offsets are moved
** all the same, and written at the next persist). */
RMQ_API int rmq_broker_reset_offset_by_time(rmq_broker *b, const char *group, const char *topic,
                                            int64_t timestamp_ms);

/* ------------------------------------------------------------------------- */
/* Pull consumer                                                              */
/* ------------------------------------------------------------------------- */

typedef struct rmq_pull_consumer rmq_pull_consumer;

typedef struct rmq_pull_result {
  int pull_status;              /* RMQ_PULL_* */
  int64_t next_begin_offset;    /* where the next pull of this queue starts */
  int64_t min_offset;           /* the queue's bounds at pull time */
  int64_t max_offset;
  /* FOUND: msgs[0..n). Owned by the handle, valid until its next pull. */
  const rmq_message_ext *msgs;
  size_t n;
} rmq_pull_result;

/* Creates a pull consumer of `group`. Destroy before closing the broker.
** Any thread; the handle has no lock of its own: calls on it that use its
** results, held queues or positions are one thread at a time per handle.
** Errors: RMQ_EINVAL (out NULL), RMQ_EGROUP, RMQ_ENOMEM. */
RMQ_API int rmq_pull_consumer_create(rmq_broker *b, const char *group, rmq_pull_consumer **out);
/* With auto-commit on, commits the held queues' positions; persists the
** group's offsets (a failure is logged) and frees it, ending the views of
** its last result. NULL is a no-op. One thread, with no other call on this
** consumer running or to come. */
RMQ_API void rmq_pull_consumer_destroy(rmq_pull_consumer *c);

/* The readable queues of `topic`: fills out[0..cap) and sets *n to their
** count (out may be NULL when cap is 0). Any thread (it reads nothing of
** the handle's own state). Errors: RMQ_EINVAL (n NULL, or out NULL with
** cap > 0), RMQ_ETOPIC, RMQ_ENOTOPIC. */
RMQ_API int rmq_pull_consumer_fetch_subscribe_message_queues(rmq_pull_consumer *c,
                                                             const char *topic,
                                                             rmq_message_queue *out,
                                                             size_t cap, size_t *n);
/* Pulls up to max_nums (1..1024) messages matching the tag `expression`
** ("*"/NULL or "a || b") from queue mq starting at queue offset `offset`,
** without waiting. *r: FOUND with messages; NO_MATCHED_MSG (units read,
** none matched: continue from next_begin_offset); NO_NEW_MSG (offset is the
** queue's end); OFFSET_ILLEGAL (offset outside [min, max]: next_begin_offset
** is the nearest valid one). A pull given mq and r ends the views of the
** handle's previous result, failing or not. One thread at a time per handle.
** Errors: RMQ_EINVAL (mq or r NULL, max_nums out of range), RMQ_ENOTOPIC
** (no such topic; mq->topic is not otherwise checked), RMQ_EQUEUE,
** RMQ_EEXPR, RMQ_ENOMEM. */
RMQ_API int rmq_pull_consumer_pull(rmq_pull_consumer *c, const rmq_message_queue *mq,
                                   const char *expression, int64_t offset, int max_nums,
                                   rmq_pull_result *r);
/* rmq_pull_consumer_pull with a selector of either type (see
** rmq_push_consumer_subscribe_selector): RocketMQ's pull(mq, MessageSelector,
** offset, maxNums). The compiled expression is kept for the next pull with
** the same one. Errors as rmq_pull_consumer_pull, and RMQ_EINVAL (type),
** RMQ_ENOTSUP (SQL92 with enable_property_filter off). One thread at a time
** per handle. */
RMQ_API int rmq_pull_consumer_pull_selector(rmq_pull_consumer *c, const rmq_message_queue *mq, int type,
                                            const char *expression, int64_t offset, int max_nums,
                                            rmq_pull_result *r);
/* As rmq_pull_consumer_pull, but when the queue has no new message it waits
** up to timeout_ms for one (long polling: woken by the send, no sleep loop).
** One thread at a time per handle. Errors as rmq_pull_consumer_pull. */
RMQ_API int rmq_pull_consumer_pull_block_if_not_found(rmq_pull_consumer *c,
                                                      const rmq_message_queue *mq,
                                                      const char *expression, int64_t offset,
                                                      int max_nums, int timeout_ms,
                                                      rmq_pull_result *r);
/* rmq_pull_consumer_pull_block_if_not_found with a selector of either type.
** One thread at a time per handle. Errors as
** rmq_pull_consumer_pull_selector. */
RMQ_API int rmq_pull_consumer_pull_selector_block(rmq_pull_consumer *c, const rmq_message_queue *mq,
                                                  int type, const char *expression, int64_t offset,
                                                  int max_nums, int timeout_ms, rmq_pull_result *r);
/* Stores the group's next offset for mq (persisted with the others, and at
** destroy). Any thread. Errors: RMQ_EINVAL (mq NULL, offset negative),
** RMQ_ENOTOPIC, RMQ_EQUEUE, RMQ_ENOMEM. */
RMQ_API int rmq_pull_consumer_update_consume_offset(rmq_pull_consumer *c,
                                                    const rmq_message_queue *mq,
                                                    int64_t offset);
/* The group's stored next offset for mq. Any thread. Errors: RMQ_EINVAL (mq
** or offset NULL), RMQ_ENOTOPIC, RMQ_EQUEUE, RMQ_ENOTFOUND (none yet). */
RMQ_API int rmq_pull_consumer_fetch_consume_offset(rmq_pull_consumer *c,
                                                   const rmq_message_queue *mq,
                                                   int64_t *offset);

/* Lite pull (RocketMQ's DefaultLitePullConsumer in assign mode): the handle
** holds queues and a position in each, and poll() reads across them.
**
** rmq_pull_consumer_assign replaces the held queues with mqs[0..n) (n <= 1024,
** all existing) filtered by `expression` ("*", NULL or "a || b"); each starts
** at the group's stored offset, else at 0 while the queue still holds its
** first message, else at its end (as a new push consumer). n = 0 releases
** them all. One thread at a time per handle. Errors: RMQ_EINVAL (mqs NULL
** with n > 0, n over 1024), RMQ_ENOTOPIC, RMQ_EQUEUE, RMQ_EEXPR, RMQ_ENOMEM;
** after an error the held queues are as they were. */
RMQ_API int rmq_pull_consumer_assign(rmq_pull_consumer *c, const rmq_message_queue *mqs, size_t n,
                                     const char *expression);
/* rmq_pull_consumer_assign with a selector of either type; poll() filters
** with it. Errors as rmq_pull_consumer_assign, and RMQ_EINVAL (type),
** RMQ_ENOTSUP (SQL92 with enable_property_filter off). One thread at a time
** per handle. */
RMQ_API int rmq_pull_consumer_assign_selector(rmq_pull_consumer *c, const rmq_message_queue *mqs,
                                              size_t n, int type, const char *expression);
/* Moves the position in held queue mq to offset (min..max of the queue).
** One thread at a time per handle. Errors: RMQ_ENOTFOUND (not held),
** RMQ_EINVAL (mq NULL, offset out of range), RMQ_ENOTOPIC / RMQ_EQUEUE (its
** topic was deleted or shrunk since the assign). */
RMQ_API int rmq_pull_consumer_seek(rmq_pull_consumer *c, const rmq_message_queue *mq, int64_t offset);
/* Up to max_nums (1..1024) messages from the next held queue that has any,
** taking the queues in turn, waiting up to timeout_ms (long polling) when
** none has: r as rmq_pull_consumer_pull's, FOUND (the queue is in the
** messages' topic and queue_id) or NO_NEW_MSG. The position moves past what
** is returned. With auto-commit on, positions are committed (as
** rmq_pull_consumer_commit) when the interval has passed. One thread at a
** time per handle; the messages live until its next pull or poll. Errors:
** RMQ_ESTATE (no queue held), RMQ_EINVAL (r NULL, max_nums out of range),
** RMQ_ENOTOPIC / RMQ_EQUEUE (a held queue's topic was deleted or shrunk),
** RMQ_ENOMEM, and with auto-commit those of rmq_pull_consumer_commit. */
RMQ_API int rmq_pull_consumer_poll(rmq_pull_consumer *c, int max_nums, int timeout_ms, rmq_pull_result *r);
/* Stores the positions of the held queues as the group's offsets and
** persists them (commitSync). One thread at a time per handle. Errors:
** RMQ_EIO / RMQ_ENOSPC (writing consumerOffset.json: the offsets are stored
** all the same, and written at the next persist), RMQ_ENOMEM. */
RMQ_API int rmq_pull_consumer_commit(rmq_pull_consumer *c);
/* autoCommit: on (1) commits at a poll once interval_ms (>= 0; RocketMQ's
** default 5000) have passed since the last commit. Off by default here, as
** for DefaultMQPullConsumer. One thread at a time per handle. Errors:
** RMQ_EINVAL. */
RMQ_API int rmq_pull_consumer_set_auto_commit(rmq_pull_consumer *c, int on, int interval_ms);

/* ------------------------------------------------------------------------- */
/* Lookup (RocketMQ's queryMessage, viewMessage, searchOffset)                */
/* ------------------------------------------------------------------------- */

/* Messages found by a query: views as consumers get them (see
** rmq_message_ext), valid until rmq_query_result_free(). */
typedef struct rmq_query_result {
  /* The store time and CommitLog offset of the newest record the index
  ** covered when the query ran (RocketMQ's indexLastUpdateTimestamp and
  ** indexLastUpdatePhyoffset); 0 when there is no index. */
  int64_t index_last_update_timestamp;
  int64_t index_last_update_phyoffset;
  const rmq_message_ext *msgs;
  size_t n;
  void *internal; /* rmq's: what keeps the views valid */
} rmq_query_result;

/* RocketMQ's queryMessage(topic, key, maxNum, begin, end): the messages of
** `topic` whose KEYS hold the word `key` or whose UNIQ_KEY is `key`,
** stored in [begin_ms, end_ms] (ms since the epoch; 0 and INT64_MAX for
** all time), newest first, at most max_num (1..65536; RocketMQ's tools
** ask for 64), each once. Found through the key index (see
** message_index_enable); every hit is checked against its record, so a
** hash collision or a stale entry is never returned. *r is filled (n may
** be 0) and must be freed with rmq_query_result_free() after RMQ_OK. Any
** thread.
** Errors: RMQ_EINVAL (an argument NULL, key empty, max_num or the range out
** of range), RMQ_ETOPIC, RMQ_ENOMEM, RMQ_EIO (indexing what was not yet). */
RMQ_API int rmq_broker_query_message(rmq_broker *b, const char *topic, const char *key, int max_num,
                                     int64_t begin_ms, int64_t end_ms, rmq_query_result *r);
/* Ends a query result's views and frees what it owns (the views, the
** array, the hold on their CommitLog files); the result is zeroed. NULL,
** or a result already freed or zeroed, is a no-op. Any thread, one call
** per result, not while another thread reads its views; the broker must
** still be open. */
RMQ_API void rmq_query_result_free(rmq_query_result *r);

/* RocketMQ's viewMessage(offsetMsgId): the message whose offsetMsgId (32
** or 56 hex characters: store host, port, CommitLog offset) is given,
** read straight from its CommitLog offset with no index. The store host
** and port must be this store's, as its records say. *out is an owned
** copy: free it with rmq_message_ext_free(). Any thread.
** Errors: RMQ_EINVAL (NULL, or not an offsetMsgId: length or a non-hex
** character), RMQ_ENOTFOUND (no record starts at that offset of this
** store: never stored, deleted by retention, or another broker's id),
** RMQ_ENOMEM. */
RMQ_API int rmq_broker_view_message(rmq_broker *b, const char *offset_msg_id, rmq_message_ext **out);

/* RocketMQ's queryMessageByUniqKey / viewMessage(topic, msgId): the message
** whose msgId (UNIQ_KEY, as SendResult.msgId gives it) is msg_id, through
** the index. topic NULL searches every topic. When several records carry
** the id (a retried message keeps it in %RETRY%group; a delayed, timed or
** transactional one also has a record in a system topic), the earliest
** stored in a topic that is not a system topic is returned, else the
** earliest. *out is an owned copy (rmq_message_ext_free). Any thread.
** Errors: RMQ_EINVAL, RMQ_ETOPIC, RMQ_ENOTFOUND, RMQ_ENOMEM, RMQ_EIO. */
RMQ_API int rmq_broker_query_message_by_uniq_key(rmq_broker *b, const char *topic, const char *msg_id,
                                                 rmq_message_ext **out);

/* The message at queue offset `offset` of one queue (mqadmin's
** queryMsgByOffset), as an owned copy (rmq_message_ext_free). Any thread.
** Errors: RMQ_EINVAL, RMQ_ENOTOPIC, RMQ_EQUEUE, RMQ_ENOTFOUND (offset
** outside [min, max) of the queue), RMQ_ENOMEM. */
RMQ_API int rmq_broker_query_message_by_offset(rmq_broker *b, const char *topic, int queue_id, int64_t offset,
                                               rmq_message_ext **out);

/* RocketMQ's searchOffset(mq, timestamp): the first queue offset whose
** message was stored at or after timestamp_ms (the queue's max offset
** when none was). Any thread.
** Errors: RMQ_EINVAL, RMQ_ENOTOPIC, RMQ_EQUEUE. */
RMQ_API int rmq_broker_search_offset(rmq_broker *b, const char *topic, int queue_id, int64_t timestamp_ms,
                                     int64_t *offset);

/* RocketMQ's earliestMsgStoreTime(mq): the store time of the oldest message
** still stored in one queue. Any thread.
** Errors: RMQ_EINVAL, RMQ_ENOTOPIC, RMQ_EQUEUE, RMQ_ENOTFOUND (the queue is
** empty). */
RMQ_API int rmq_broker_earliest_msg_store_time(rmq_broker *b, const char *topic, int queue_id,
                                               int64_t *timestamp_ms);

/* ------------------------------------------------------------------------- */
/* Statistics (RocketMQ's BrokerStatsManager, brokerStatus, ConsumeStats)     */
/* ------------------------------------------------------------------------- */

/* TPS over the last 10 s, 1 min and 1 h (RocketMQ's minute, hour and day
** windows are sampled the same way: every 10 s, every 10 min, every hour).
** A window the broker has not been open for yet covers what it has. */
#define RMQ_TPS_10S 0
#define RMQ_TPS_1MIN 1
#define RMQ_TPS_1H 2

typedef struct rmq_topic_stats {
  const char *topic;
  int queue_nums;
  int64_t put_nums;       /* TOPIC_PUT_NUMS: messages put since the open */
  int64_t put_size;       /* TOPIC_PUT_SIZE: their stored bytes */
  double put_tps[3];      /* RMQ_TPS_* */
  int64_t max_offset_sum; /* sum over its queues of the max offset: messages it holds ever */
} rmq_topic_stats;

typedef struct rmq_queue_stats {
  int queue_id;
  int64_t broker_offset;    /* the queue's max offset */
  int64_t consumer_offset;  /* the group's committed offset */
  int64_t lag;              /* broker_offset - consumer_offset ("#Diff") */
  /* Store time of the oldest unconsumed message (RocketMQ's "#LastTime"
  ** column and consumer delay); 0 when lag is 0. */
  int64_t oldest_unconsumed_timestamp;
} rmq_queue_stats;

typedef struct rmq_group_stats {
  const char *group;
  const char *topic;
  int64_t get_nums;       /* GROUP_GET_NUMS: messages delivered to the group since the open */
  int64_t get_size;       /* GROUP_GET_SIZE */
  double get_tps[3];      /* RMQ_TPS_* */
  int64_t diff_total;     /* RocketMQ's diffTotal: sum of lag */
  /* now - the oldest oldest_unconsumed_timestamp of its queues, ms
  ** (RocketMQ's consumer delay); 0 when nothing is unconsumed. */
  int64_t consumer_delay_ms;
  const rmq_queue_stats *queues;
  size_t nqueues;
} rmq_group_stats;

typedef struct rmq_broker_stats {
  int64_t now;                       /* the broker clock when taken */
  int64_t boot_timestamp;            /* bootTimestamp: when the broker was opened */
  int64_t put_nums, put_size;        /* msgPutTotal since the open, and bytes */
  double put_tps[3];                 /* putTps */
  int64_t get_nums;                  /* msgGetTotal since the open */
  double get_tps[3];                 /* getTransferedTps */
  int64_t commit_log_min_offset;     /* commitLogMinOffset */
  int64_t commit_log_max_offset;     /* commitLogMaxOffset */
  int64_t flushed_offset;            /* what is on disk */
  int64_t flush_behind_bytes;        /* max - flushed: the flush backlog */
  int64_t dispatch_behind_bytes;     /* dispatchBehindBytes: what the key index has yet to cover */
  int64_t earliest_message_time_stamp; /* earliestMessageTimeStamp: store time of the first record */
  int commit_log_files;              /* CommitLog files on disk */
  int64_t commit_log_bytes;          /* their size: files x mapped_file_size_commit_log */
  int index_files;
  double commit_log_disk_ratio;      /* commitLogDiskRatio: used fraction of its file system, 0..1 */
  int64_t disk_total_bytes, disk_free_bytes;
  int disk_full;                     /* sends refused: over disk_space_warning_level_ratio */
  /* Retention: the next hour deleteWhen allows (ms since the epoch, -1 when
  ** never by the clock) and the last-written time of the oldest CommitLog
  ** file (when it expires: + file_reserved_time). */
  int64_t next_delete_time;
  int64_t oldest_file_last_modified;
  int64_t pending_delay;             /* messages waiting in SCHEDULE_TOPIC_XXXX (delay levels, retries) */
  int64_t pending_timer;             /* timed messages not yet delivered */
  int64_t pending_half;              /* half messages awaiting a decision */
  const rmq_topic_stats *topics;     /* in name order, system topics included */
  size_t ntopics;
  const rmq_group_stats *groups;     /* one per (group, topic) with an offset, by group then topic */
  size_t ngroups;
  void *internal;
} rmq_broker_stats;

/* Fills *out with the broker's figures now. Cheap enough to call every
** second: counters are kept as messages move, windows sampled by the
** service thread (or rmq_broker_run_due); the call reads them, one
** ConsumeQueue unit and one record per queue with a lag, and statvfs.
** On a read_only broker (another process's store, say) no counter ran:
** put_nums, put_size, get_nums and the get rates are 0, and the put rates
** are the messages stored in each window by their store times (a binary
** search of each queue: a few hundred record reads a queue).
** Everything *out points to (names, topic, group and queue arrays) is
** owned by it, independent of the broker, until rmq_broker_stats_free().
** On an error *out is zeroed and owns nothing. Any thread.
** Errors: RMQ_EINVAL (b not an open broker, out NULL), RMQ_ENOMEM. */
RMQ_API int rmq_broker_stats_get(rmq_broker *b, rmq_broker_stats *out);
/* Frees what a stats result owns and zeroes it; NULL or a zeroed result is
** a no-op. Any thread, once per result, not while another thread reads it. */
RMQ_API void rmq_broker_stats_free(rmq_broker_stats *st);

/* ------------------------------------------------------------------------- */
/* Checking a store (rmqadmin checkStore)                                     */
/* ------------------------------------------------------------------------- */

typedef struct rmq_check_result {
  int64_t records;        /* CommitLog records checked */
  int64_t bytes;          /* CommitLog bytes read */
  int64_t units;          /* ConsumeQueue units checked */
  int64_t index_entries;  /* index entries checked */
  int64_t problems;       /* problems reported */
} rmq_check_result;

/* Told of each problem: the file, the byte offset in it, and what is wrong.
** Strings valid during the call. */
typedef void (*rmq_check_fn)(void *ctx, const char *file, int64_t offset, const char *problem);

/* Verifies the whole store: every CommitLog record (magic, sizes, its
** physical offset field, body CRC, file ends), every ConsumeQueue unit
** against the record it points at (offset, size, topic, queue, queue
** offset, tag code), every index entry (it points at a record holding its
** key's hash). Reads only. Best on a read-only open. fn (may be NULL) gets
** each problem (a run of index entries in a hole of the file, zeros a
** damaged count claims, is one problem); *out (may be NULL) the counts.
** Any thread.
** Errors: RMQ_ECORRUPT (problems were found), RMQ_ENOMEM, RMQ_EIO. */
RMQ_API int rmq_broker_check(rmq_broker *b, rmq_check_fn fn, void *ctx, rmq_check_result *out);

/* The process holding the store at `dir` open (its lock taken), for
** telling a user who has it: the pid from the lock (a POSIX record lock,
** RocketMQ's) or, for rmq's own lock, from the `abort` file the holder
** wrote at its open (a live process's only). 0 when the store is not held
** or the holder is unknown. Changes nothing. Any thread. */
RMQ_API int rmq_store_lock_owner(const char *dir);

#ifdef __cplusplus
}
#endif
#endif /* RMQ_H */
