# rmq -- RocketMQ's message model as an embeddable C library.
#
#   make            library (static + shared), demo, tests (built, not run)
#   make demo       build and run the quick-start demo on ./demo-store
#   make test       run the cmocka suite, then again under ASan + UBSan
#   make tsan       run the concurrency tests under ThreadSanitizer
#   make bench      run the benchmarks (and ../shared/peers when present)
#   make amalgamation   write build/rmq-amalgamation.c
#   make install / uninstall   (PREFIX, DESTDIR)
#   make DEBUG=1    keep assert()s, -O0
#
# Missing Debian packages (libxxhash-dev, libcmocka-dev) are installed with
# apt-get when run as root; otherwise the exact command is printed.

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
TSAN_TESTS ?= test_consumer test_producer test_disk test_retention test_order test_group test_delay test_retry test_sql92

SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all deps lib demo test test-plain test-asan tsan bench amalgamation install uninstall clean fuzz
.DEFAULT_GOAL := all

all: deps lib $(B)/rmq-demo tests

# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------
DEPS_STAMP := $(B)/.deps-ok
deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p $(B)
	@missing=""; \
	 [ -f /usr/include/xxhash.h ] || missing="$$missing libxxhash-dev"; \
	 [ -f /usr/include/cmocka.h ] || missing="$$missing libcmocka-dev"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	     echo "installing$$missing"; \
	     (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null || exit 1; \
	   else \
	     echo "missing Debian packages:$$missing"; \
	     echo "run: sudo apt-get install -y$$missing"; exit 1; \
	   fi; \
	 fi
	@touch $@

# --------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------
lib: $(B)/librmq.a $(B)/librmq.so

$(B)/obj/%.o: %.c $(LIB_HDR) | $(DEPS_STAMP)
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

demo: deps $(B)/rmq-demo
	$(B)/rmq-demo all

# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------
TEST_BINS      := $(patsubst %,$(B)/test/%,$(TESTS)) $(B)/test/test_amalgamation
TEST_ASAN_BINS := $(patsubst %,$(B)/test-asan/%,$(TESTS))
tests: $(TEST_BINS)

$(B)/test/%: test/%.c $(wildcard test/*.h) $(B)/librmq.a | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I. -o $@ $< $(B)/librmq.a -lcmocka $(LDLIBS)

# One test compiled against the amalgamation alone (no library).
$(B)/test/test_amalgamation: test/test_api.c $(wildcard test/*.h) $(B)/rmq-amalgamation.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I. -DRMQ_TEST_AMALGAMATION -o $@ $< $(B)/rmq-amalgamation.c -lcmocka $(LDLIBS)

$(B)/asan/%.o: %.c $(LIB_HDR) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -c $< -o $@

$(B)/asan/librmq.a: $(patsubst %.c,$(B)/asan/%.o,$(LIB_SRC))
	rm -f $@
	ar rcs $@ $^

$(B)/test-asan/%: test/%.c $(wildcard test/*.h) $(B)/asan/librmq.a | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -I. -o $@ $< $(B)/asan/librmq.a -lcmocka $(LDLIBS)

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
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(call RUN_TESTS,$(TEST_ASAN_BINS),asan+ubsan test binaries)

tsan: deps $(patsubst %,$(B)/test-tsan/%,$(filter $(TESTS),$(TSAN_TESTS)))
	@TSAN_OPTIONS=halt_on_error=1 \
	  $(call RUN_TESTS,$(patsubst %,$(B)/test-tsan/%,$(filter $(TESTS),$(TSAN_TESTS))),tsan test binaries)

# --------------------------------------------------------------------------
# Amalgamation
# --------------------------------------------------------------------------
amalgamation: $(B)/rmq-amalgamation.c
$(B)/rmq-amalgamation.c: $(LIB_SRC) $(LIB_HDR) tools/amalgamate.sh
	@mkdir -p $(B)
	sh tools/amalgamate.sh > $@.tmp && mv $@.tmp $@
	@echo "wrote $@ (compile it with rmq.h beside it: cc -c -pthread rmq-amalgamation.c)"

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

bench: deps $(BENCH_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b > $$b.out; rc=$$?; cat $$b.out; test $$rc = 0 || exit 1; done
	@if [ -f $(PEERS_SRC) ]; then \
	   if [ -f /usr/include/sqlite3.h ] && [ -f /usr/include/lmdb.h ]; then \
	     $(MAKE) --no-print-directory $(B)/peers && echo "== peers" && $(B)/peers > $(B)/peers.out && cat $(B)/peers.out && \
	     echo "== rmq against the peers, this run" && sh bench/compare.sh $(B)/bench/rmq_bench.out $(B)/peers.out; \
	   else echo "(peers skipped: apt-get install -y libsqlite3-dev liblmdb-dev)"; fi; \
	 fi

# --------------------------------------------------------------------------
# Install
# --------------------------------------------------------------------------
LIBDIR := $(PREFIX)/lib
INCDIR := $(PREFIX)/include
PCDIR  := $(LIBDIR)/pkgconfig

$(B)/rmq.pc: Makefile rmq.h
	@mkdir -p $(B)
	printf 'prefix=%s\nexec_prefix=$${prefix}\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: rmq\nDescription: RocketMQ message model as an embeddable C library\nVersion: %s\nLibs: -L$${libdir} -lrmq\nLibs.private: -pthread\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(VERSION)' > $@

install: lib $(B)/rmq.pc
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR)
	install -m 644 rmq.h $(DESTDIR)$(INCDIR)/rmq.h
	install -m 644 $(B)/librmq.a $(DESTDIR)$(LIBDIR)/librmq.a
	install -m 755 $(B)/librmq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librmq.so.$(VERSION)
	ln -sf librmq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librmq.so.$(SOMAJOR)
	ln -sf librmq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librmq.so
	install -m 644 $(B)/rmq.pc $(DESTDIR)$(PCDIR)/rmq.pc

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/rmq.h $(DESTDIR)$(LIBDIR)/librmq.a $(DESTDIR)$(LIBDIR)/librmq.so \
	      $(DESTDIR)$(LIBDIR)/librmq.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/librmq.so.$(VERSION) \
	      $(DESTDIR)$(PCDIR)/rmq.pc

clean:
	rm -rf $(B) demo-store

# --------------------------------------------------------------------------
# Fuzzing (clang's libFuzzer, with ASan + UBSan): make fuzz [FUZZ_RUNS=n]
# fuzz/seeds/<target>/ holds the starting cases (for SQL92: every row of
# test/test_sql92.c's table, one file each: the expression, then name=value lines).
# --------------------------------------------------------------------------
FUZZ_RUNS ?= 1000000
$(B)/fuzz/%: fuzz/%.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. -o $@ $< $(LIB_SRC) -pthread -lm

fuzz: $(patsubst fuzz/%.c,$(B)/fuzz/%,$(wildcard fuzz/*.c))
	@for f in $^; do echo "== $$f"; mkdir -p $(B)/fuzz/corpus-$$(basename $$f); \
	  seeds=fuzz/seeds/$$(basename $$f); [ -d $$seeds ] || seeds=; \
	  $$f -runs=$(FUZZ_RUNS) -max_len=512 $(B)/fuzz/corpus-$$(basename $$f) $$seeds || exit 1; done
