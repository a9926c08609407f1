# rmq -- RocketMQ's message model as an embeddable C library.
#
#   make            library (static + shared), demo, tests (built, not run)
#   make demo       build and run the quick-start demo on ./demo-store
#   make test       run the cmocka suite, then again under ASan + UBSan
#   make tsan       run the concurrency tests under ThreadSanitizer
#   make powercut / ioerr / stress   the durability proofs at full length
#                   (test/README.md); make test runs a sample of each
#   make bench      run the benchmarks (and, in the development tree, ../shared/peers:
#                   SQLite and LMDB as queues, for the ratios; skipped when absent)
#   make amalgamation   write build/rmq-amalgamation.c
#   make install / uninstall   (PREFIX, DESTDIR)
#   make DEBUG=1    keep assert()s, -O0
#
# Missing Debian packages are installed with apt-get when run as root;
# otherwise the exact command is printed. The library (lib, install, demo,
# amalgamation) needs libxxhash-dev only; the tests also need libcmocka-dev.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
B       := build

VERSION := $(shell sed -n 's/^\#define RMQ_VERSION "\(.*\)"/\1/p' rmq.h)
SOMAJOR := 0

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ifeq ($(DEBUG),1)
OPT     := -O0 -g
else
OPT     := -O2 -g -DNDEBUG
endif
CFLAGS  ?= $(OPT)
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -pthread
LDLIBS  := -pthread

LIB_SRC := rmq.c rmq_store.c rmq_filter.c
LIB_HDR := rmq.h rmq_int.h
TESTS   := $(patsubst test/%.c,%,$(wildcard test/test_*.c))
EXAMPLES:= $(wildcard examples/*.c)
BENCHES := $(patsubst bench/%.c,%,$(wildcard bench/*.c))
# Tests that exercise threads; they also run under ThreadSanitizer.
TSAN_TESTS ?= test_consumer test_producer test_disk test_retention test_order test_group test_delay test_retry test_sql92 test_transaction test_timer test_index test_stats test_stress
# test/tsan.supp says why each suppression is there.
TSAN_OPTS = halt_on_error=1:suppressions=$(CURDIR)/test/tsan.supp

SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all deps deps-lib lib demo test test-plain test-asan tsan powercut ioerr stress bench amalgamation install uninstall clean fuzz FORCE
.DEFAULT_GOAL := all

all: deps lib $(B)/rmq-demo $(B)/rmqadmin tests

# --------------------------------------------------------------------------
# Dependencies: $(call need,header,package) installs or names what is missing
# --------------------------------------------------------------------------
need = @mkdir -p $(B); \
	 missing=""; for pair in $(1); do h=$${pair%%:*}; pkg=$${pair\#*:}; \
	   [ -f /usr/include/$$h ] || missing="$$missing $$pkg"; done; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	     echo "installing$$missing"; \
	     (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null || exit 1; \
	   else \
	     echo "missing Debian packages:$$missing"; \
	     echo "run: sudo apt-get install -y$$missing"; exit 1; \
	   fi; \
	 fi; touch $@

LIB_DEPS  := $(B)/.deps-lib-ok
DEPS_STAMP := $(B)/.deps-ok
deps-lib: $(LIB_DEPS)
deps: $(DEPS_STAMP)
$(LIB_DEPS):
	$(call need,xxhash.h:libxxhash-dev)
$(DEPS_STAMP): | $(LIB_DEPS)
	$(call need,xxhash.h:libxxhash-dev cmocka.h:libcmocka-dev)

# --------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------
lib: $(B)/librmq.a $(B)/librmq.so

$(B)/obj/%.o: %.c $(LIB_HDR) | $(LIB_DEPS)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(B)/librmq.a: $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRC))
	rm -f $@
	ar rcs $@ $^

$(B)/librmq.so.$(VERSION): $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRC))
	$(CC) -shared -Wl,-soname,librmq.so.$(SOMAJOR) -o $@ $^ $(LDLIBS)

$(B)/librmq.so: $(B)/librmq.so.$(VERSION)
	ln -sf librmq.so.$(VERSION) $(B)/librmq.so.$(SOMAJOR)
	ln -sf librmq.so.$(VERSION) $@

# --------------------------------------------------------------------------
# Demo (examples/ ported from the RocketMQ quick start)
# --------------------------------------------------------------------------
$(B)/rmq-demo: $(EXAMPLES) $(wildcard examples/*.h) $(B)/librmq.a
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I. -o $@ $(EXAMPLES) $(B)/librmq.a $(LDLIBS)

demo: deps-lib $(B)/rmq-demo $(B)/rmqadmin
	$(B)/rmq-demo all

# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------
TEST_BINS      := $(patsubst %,$(B)/test/%,$(TESTS)) $(B)/test/test_amalgamation
TEST_ASAN_BINS := $(patsubst %,$(B)/test-asan/%,$(TESTS))
tests: $(TEST_BINS)

# test_install runs `make install` from this tree and build directory;
# test_admin runs rmqadmin (under ASan, the ASan build of it) and rmq-demo.
TEST_DEFS = $(if $(filter test_install,$(notdir $@)),-DRMQ_SRC_DIR='"$(CURDIR)"' -DRMQ_BUILD_DIR='"$(abspath $(B))"') \
	    $(if $(filter test_admin,$(notdir $@)),-DRMQ_ADMIN_BIN='"$(abspath $(B))/$(if $(findstring /test-asan/,$@),asan/)rmqadmin"' \
	      -DRMQ_DEMO_BIN='"$(abspath $(B))/rmq-demo"')

$(B)/test/%: test/%.c $(wildcard test/*.h) $(B)/librmq.a | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(TEST_DEFS) -I. -o $@ $< $(B)/librmq.a -lcmocka $(LDLIBS)

# The README's example, extracted as written (the first ```c block after
# "## Example") and built as a user would: default C dialect, -Wall -Wextra.
# test_readme runs it.
$(B)/readme/readme_example.c: README.md
	@mkdir -p $(@D)
	awk '/^## Example/{s=1} s==1&&/^```c/{s=2;next} s==2&&/^```/{exit} s==2{print}' README.md > $@
	@test -s $@ || { echo "no example found in README.md"; exit 1; }

$(B)/readme/readme_example: $(B)/readme/readme_example.c $(B)/librmq.a
	$(CC) -O2 -Wall -Wextra -Werror -I. -o $@ $< $(B)/librmq.a $(LDLIBS)

$(B)/test/test_readme $(B)/test-asan/test_readme: $(B)/readme/readme_example

$(B)/test/test_admin: $(B)/rmqadmin $(B)/rmq-demo
$(B)/test-asan/test_admin: $(B)/asan/rmqadmin $(B)/rmq-demo

# One test compiled against the amalgamation alone (no library), with an
# xxhash.h that stops the build first on the include path: the amalgamation
# must carry xxHash itself.
$(B)/noxxhash/xxhash.h:
	@mkdir -p $(@D)
	echo '#error "the amalgamation must not need xxhash.h"' > $@

$(B)/test/test_amalgamation: test/test_api.c $(wildcard test/*.h) $(B)/rmq-amalgamation.c $(B)/noxxhash/xxhash.h | $(DEPS_STAMP)
	@mkdir -p $(@D)
	@! grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]xxhash.h' $(B)/rmq-amalgamation.c
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I$(B)/noxxhash -I. -DRMQ_TEST_AMALGAMATION -o $@ $< $(B)/rmq-amalgamation.c -lcmocka $(LDLIBS)

$(B)/asan/%.o: %.c $(LIB_HDR) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -c $< -o $@

$(B)/asan/librmq.a: $(patsubst %.c,$(B)/asan/%.o,$(LIB_SRC))
	rm -f $@
	ar rcs $@ $^

$(B)/asan/rmqadmin: tools/rmqadmin.c $(B)/asan/librmq.a
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -I. -o $@ $< $(B)/asan/librmq.a $(LDLIBS)

$(B)/test-asan/%: test/%.c $(wildcard test/*.h) $(B)/asan/librmq.a | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) $(TEST_DEFS) -I. -o $@ $< $(B)/asan/librmq.a -lcmocka $(LDLIBS)

$(B)/tsan/%.o: %.c $(LIB_HDR) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=thread -c $< -o $@

$(B)/tsan/librmq.a: $(patsubst %.c,$(B)/tsan/%.o,$(LIB_SRC))
	rm -f $@
	ar rcs $@ $^

$(B)/test-tsan/%: test/%.c $(wildcard test/*.h) $(B)/tsan/librmq.a | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=thread -I. -o $@ $< $(B)/tsan/librmq.a -lcmocka $(LDLIBS)

# Each binary prints cmocka's summary; the last line is the whole count.
RUN_TESTS = pass=0; fail=0; for t in $(1); do \
	  echo "== $$t"; if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "$(2): $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

test: deps
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory test-asan

test-plain: $(TEST_BINS)
	@$(call RUN_TESTS,$(TEST_BINS),test binaries)

test-asan: $(TEST_ASAN_BINS)
	@export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1; \
	  $(call RUN_TESTS,$(TEST_ASAN_BINS),asan+ubsan test binaries)

tsan: deps $(patsubst %,$(B)/test-tsan/%,$(filter $(TESTS),$(TSAN_TESTS)))
	@export TSAN_OPTIONS=$(TSAN_OPTS); \
	  $(call RUN_TESTS,$(patsubst %,$(B)/test-tsan/%,$(filter $(TESTS),$(TSAN_TESTS))),tsan test binaries)

# Durability proofs at full length (test/README.md): the power-cut workload
# cut at every sync point and every tenth write call, in every mode with
# both flush types (hours); ENOSPC and EIO at every call of the I/O-error
# workload; the ThreadSanitizer stress for STRESS_SECONDS (default 600).
powercut: deps $(B)/test/test_powercut
	RMQ_CUT_SYNC_EVERY=1 RMQ_CUT_WRITE_EVERY=10 RMQ_CUT_RMQSTORE_EVERY=50 $(B)/test/test_powercut

ioerr: deps $(B)/test/test_ioerr
	RMQ_IOERR_EVERY=1 $(B)/test/test_ioerr

stress: deps $(B)/test-tsan/test_stress
	RMQ_STRESS_SECONDS=$(or $(STRESS_SECONDS),600) TSAN_OPTIONS=$(TSAN_OPTS) $(B)/test-tsan/test_stress

# --------------------------------------------------------------------------
# Amalgamation
# --------------------------------------------------------------------------
amalgamation: $(B)/rmq-amalgamation.c
$(B)/rmq-amalgamation.c: $(LIB_SRC) $(LIB_HDR) tools/amalgamate.sh | $(LIB_DEPS)
	@mkdir -p $(B)
	sh tools/amalgamate.sh > $@.tmp && mv $@.tmp $@
	@echo "wrote $@ (libc and pthreads only; compile it with rmq.h beside it: cc -c -pthread rmq-amalgamation.c)"

# --------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------
BENCH_BINS := $(patsubst %,$(B)/bench/%,$(BENCHES))
$(B)/bench/%: bench/%.c $(wildcard bench/*.h) $(B)/librmq.a
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O2 -g -DNDEBUG -I. -o $@ $< $(B)/librmq.a $(LDLIBS) -lm

PEERS_SRC := ../shared/peers/peers.c
$(B)/peers: $(PEERS_SRC)
	$(CC) -O2 -Wall -Wextra -std=c11 -o $@ $< -lsqlite3 -llmdb -lpthread

bench: deps-lib $(BENCH_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b > $$b.out; rc=$$?; cat $$b.out; test $$rc = 0 || exit 1; done
	@if [ -f $(PEERS_SRC) ]; then \
	   if [ -f /usr/include/sqlite3.h ] && [ -f /usr/include/lmdb.h ]; then \
	     $(MAKE) --no-print-directory $(B)/peers && echo "== peers" && $(B)/peers > $(B)/peers.out && cat $(B)/peers.out && \
	     echo "== rmq against the peers, this run" && sh bench/compare.sh $(B)/bench/rmq_bench.out $(B)/peers.out; \
	   else echo "(peers skipped: apt-get install -y libsqlite3-dev liblmdb-dev)"; fi; \
	 fi

# --------------------------------------------------------------------------
# Install: the library, rmq.h, rmq.pc, the rmq(3) reference (rmq.h as a man
# page) and rmqadmin once tools/rmqadmin.c exists. Needs xxHash only.
# --------------------------------------------------------------------------
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
BINDIR ?= $(PREFIX)/bin
PCDIR  := $(LIBDIR)/pkgconfig
ADMIN  := $(if $(wildcard tools/rmqadmin.c),$(B)/rmqadmin)

# rmq.pc names the directories of this install: rebuilt whenever they change.
PC_VARS := prefix=$(PREFIX) libdir=$(LIBDIR) includedir=$(INCDIR) version=$(VERSION)
$(B)/pc-vars: FORCE
	@mkdir -p $(B)
	@echo '$(PC_VARS)' | cmp -s - $@ || echo '$(PC_VARS)' > $@
FORCE:

$(B)/rmq.pc: $(B)/pc-vars
	printf 'prefix=%s\nexec_prefix=$${prefix}\nlibdir=%s\nincludedir=%s\n\nName: rmq\nDescription: RocketMQ message model as an embeddable C library\nVersion: %s\nLibs: -L$${libdir} -lrmq\nLibs.private: -pthread\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(LIBDIR)' '$(INCDIR)' '$(VERSION)' > $@

$(B)/rmq.3: rmq.h tools/manpage.sh
	@mkdir -p $(B)
	sh tools/manpage.sh rmq.h $(VERSION) > $@

$(B)/rmqadmin: tools/rmqadmin.c $(B)/librmq.a
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I. -o $@ $< $(B)/librmq.a $(LDLIBS)

install: lib $(B)/rmq.pc $(B)/rmq.3 $(ADMIN)
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(MANDIR)/man3
	install -m 644 rmq.h $(DESTDIR)$(INCDIR)/rmq.h
	install -m 644 $(B)/librmq.a $(DESTDIR)$(LIBDIR)/librmq.a
	install -m 755 $(B)/librmq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librmq.so.$(VERSION)
	ln -sf librmq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librmq.so.$(SOMAJOR)
	ln -sf librmq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librmq.so
	install -m 644 $(B)/rmq.pc $(DESTDIR)$(PCDIR)/rmq.pc
	install -m 644 $(B)/rmq.3 $(DESTDIR)$(MANDIR)/man3/rmq.3
	$(if $(ADMIN),install -d $(DESTDIR)$(BINDIR) && install -m 755 $(ADMIN) $(DESTDIR)$(BINDIR)/rmqadmin)

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/rmq.h $(DESTDIR)$(LIBDIR)/librmq.a $(DESTDIR)$(LIBDIR)/librmq.so \
	      $(DESTDIR)$(LIBDIR)/librmq.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/librmq.so.$(VERSION) \
	      $(DESTDIR)$(PCDIR)/rmq.pc $(DESTDIR)$(MANDIR)/man3/rmq.3 $(DESTDIR)$(BINDIR)/rmqadmin

clean:
	rm -rf $(B) demo-store

# --------------------------------------------------------------------------
# Fuzzing (clang's libFuzzer, with ASan + UBSan): make fuzz [FUZZ_RUNS=n]
#   [FUZZ_JOBS=n]. FUZZ_RUNS counts per job; with FUZZ_JOBS > 1 libFuzzer runs
#   that many processes at once (-jobs/-workers), logs in $(B)/fuzz/fuzz-<n>.log.
# Targets (fuzz/README.md): fuzz_sql92 (the SQL92 filter), fuzz_json (the
# config files' JSON), fuzz_record (the record decoder and property
# parsing), fuzz_store (opening a damaged store, given as an archive of its
# files). fuzz/seeds/<target>/ holds the starting
# cases (for SQL92: every row of test/test_sql92.c's table, one file each:
# the expression, then name=value lines); `make fuzz-seeds` remakes those of
# fuzz_store and fuzz_record (fuzz/mkseeds.sh).
# --------------------------------------------------------------------------
FUZZ_RUNS ?= 1000000
FUZZ_JOBS ?= 1
FUZZ_TIMEOUT ?= 30
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_MAXLEN_fuzz_sql92 := 512
FUZZ_MAXLEN_fuzz_record := 4096
FUZZ_MAXLEN_fuzz_store := 65536
FUZZ_MAXLEN_fuzz_json := 65536
# fuzz_record includes rmq.c itself, to reach its static decoders.
FUZZ_SRC_fuzz_record := rmq_store.c rmq_filter.c
# A 16 MB quarantine (ASan's default 256 MB) lets freed blocks be reused
# sooner: fuzz_store allocates a 32 KB directory buffer per opendir, and
# fresh pages for each cost it more than half its speed.
FUZZ_ENV := ASAN_OPTIONS=quarantine_size_mb=16$(if $(ASAN_OPTIONS),:$(ASAN_OPTIONS))
FUZZ_SEED_TMP ?= /dev/shm/rmq-fuzz-seeds

$(B)/fuzz/%: fuzz/%.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. -o $@ $< \
	  $(or $(FUZZ_SRC_$*),$(LIB_SRC)) -pthread -lm

# One target: corpus in $(B)/fuzz/corpus-<t>, seeds read but not written.
FUZZ_RUN = echo "== $(B)/fuzz/$(1)" && mkdir -p $(B)/fuzz/corpus-$(1) && cd $(B)/fuzz && \
	$(FUZZ_ENV) ./$(1) -runs=$(FUZZ_RUNS) -max_len=$(or $(FUZZ_MAXLEN_$(1)),4096) -timeout=$(FUZZ_TIMEOUT) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  corpus-$(1) $(if $(wildcard fuzz/seeds/$(1)),$(CURDIR)/fuzz/seeds/$(1))

fuzz: $(patsubst %,$(B)/fuzz/%,$(FUZZ_TARGETS))
	@$(foreach t,$(FUZZ_TARGETS),($(call FUZZ_RUN,$(t))) &&) true

$(B)/fuzz-mkseeds: fuzz/mkseeds.c $(B)/librmq.a
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I. -o $@ $< $(B)/librmq.a $(LDLIBS)

.PHONY: fuzz-seeds
fuzz-seeds: $(B)/rmq-demo $(B)/fuzz-mkseeds
	sh fuzz/mkseeds.sh $(B) $(FUZZ_SEED_TMP)
