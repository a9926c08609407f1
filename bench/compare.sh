#!/bin/sh
# compare.sh RMQ_OUT PEERS_OUT -- the ratios between rmq_bench's cases and
# ../shared/peers' taken in the same `make bench` run (issue 10's targets).
# Prints `ratio NAME=VALUE` lines like rmq_bench's own.
rmq=$1 peers=$2
[ -f "$rmq" ] && [ -f "$peers" ] || { echo "usage: $0 RMQ_BENCH_OUTPUT PEERS_OUTPUT" >&2; exit 2; }
awk '
  function rate(line,   i, n, f) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) if (f[i] ~ /^msgs_per_s=/) return substr(f[i], 12) + 0
    return 0
  }
  FNR == 1 { file++ }
  file == 1 && /^case=rmq-async-t1 /       { a1 = rate($0) }
  file == 1 && /^case=rmq-async-batch32-t1 / { ab = rate($0) }
  file == 1 && /^case=rmq-pull-b32 /       { p32 = rate($0) }
  file == 1 && /^case=rmq-pull-b32-first-pass / { pf = rate($0) }
  file == 1 && /^case=rmq-sync-t1 /        { s1 = rate($0) }
  file == 1 && /^case=rmq-sync-t16 /       { s16 = rate($0) }
  file == 2 && /^peer=lmdb-nosync-batch100 / { lb = rate($0) }
  file == 2 && /^peer=sqlite-wal-normal-batch100 / { sb = rate($0) }
  file == 2 && /^peer=lmdb-cursor-scan /   { lc = rate($0) }
  file == 2 && /^peer=sqlite-wal-full-txn1 / { sf = rate($0) }
  file == 2 && /^peer=sqlite-wal-full-txn1-t16 / { sf16 = rate($0) }
  function r(name, a, b) { if (a > 0 && b > 0) printf "ratio %s=%.3f\n", name, a / b }
  END {
    r("async_t1_vs_lmdb_nosync_batch100", a1, lb)
    r("async_t1_vs_sqlite_wal_normal_batch100", a1, sb)
    r("async_batch32_vs_lmdb_nosync_batch100", ab, lb)
    r("pull_b32_vs_lmdb_cursor_scan", p32, lc)
    r("pull_b32_first_pass_vs_lmdb_cursor_scan", pf, lc)
    r("sync_t1_vs_sqlite_wal_full_txn1", s1, sf)
    r("sync_t16_vs_sqlite_wal_full_txn1_t16", s16, sf16)
  }' "$rmq" "$peers"
