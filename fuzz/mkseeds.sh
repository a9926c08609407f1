#!/bin/sh
# mkseeds.sh BUILD_DIR TMP -- regenerates fuzz/seeds/fuzz_store and
# fuzz/seeds/fuzz_record (run by `make fuzz-seeds`, from the source tree).
# BUILD_DIR holds rmq-demo and fuzz-mkseeds; TMP is scratch (tmpfs is best:
# the stores have 1 GiB and 420 MB sparse files). Regression inputs
# (regress-*) in the seed directories are kept.
set -e
B=$1
T=$2
M=$B/fuzz-mkseeds
rm -rf "$T"
mkdir -p "$T"
S=fuzz/seeds/fuzz_store
R=fuzz/seeds/fuzz_record
mkdir -p $S $R
find $S $R -type f ! -name 'regress-*' -delete

# The demo's store (default geometry: 64 MiB CommitLog, 6,000,000-byte
# ConsumeQueues, a default index file), as left by a clean close, and as a
# crash would leave it (abort present: the abnormal recovery).
$B/rmq-demo --store "$T/demo" all > "$T/demo.log" 2>&1
$M check "$T/demo"
$M pack "$T/demo" $S/demo
cp -a --sparse=always "$T/demo" "$T/demo-crash"
echo 1234 > "$T/demo-crash/abort"
$M pack "$T/demo-crash" $S/demo-crash

# Small geometry, made through the API: the fuzzer's mutations land on
# meaningful bytes at little cost per run.
$M small "$T/small"
$M check "$T/small"
$M pack "$T/small" $S/small
$M small "$T/small-crash" crash
$M pack "$T/small-crash" $S/small-crash
cp -a --sparse=always "$T/small" "$T/small-noqueues"
rm "$T/small-noqueues/config/rmq_queues.txt"
$M pack "$T/small-noqueues" $S/small-noqueues
$M small "$T/tiny" tiny
$M check "$T/tiny"
# Opened read-only then writable (mode 3), writable only (mode 0, as the
# other seeds), read-only only (mode 1).
$M pack "$T/tiny" $S/tiny 3
$M pack "$T/tiny" $S/tiny-rw 0
$M pack "$T/tiny" $S/tiny-ro 1

# A RocketMQ 4.9/5.x layout, constructed by mkseeds (not written by a
# running RocketMQ: see mkseeds.c), after a clean shutdown and a crash.
$M rocketmq "$T/rocketmq"
$M check "$T/rocketmq"
$M pack "$T/rocketmq" $S/rocketmq
$M rocketmq "$T/rocketmq-crash" crash
$M pack "$T/rocketmq-crash" $S/rocketmq-crash

# Records: real ones from those stores, and kinds rmq never writes.
$M records "$T/demo" $R 30
$M records "$T/small" $R 30
$M records "$T/rocketmq" $R 20
$M record-extra $R
rm -rf "$T"
du -sh fuzz/seeds
