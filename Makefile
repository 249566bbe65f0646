# mongo_helper — build, test and install.
#
#   make            static and shared library
#   make demo       run the example against MONGO_CACHE_URI or a local test server
#   make check      all tests (starts and stops the local test server)
#   make memcheck   the tests under valgrind (errors and leaks fail the run)
#   make sanitize   the tests built with ASan + UBSan
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make deps       install missing Debian packages (done by demo and check)
#   make fuzz       build the libFuzzer targets (clang) and run each FUZZ_SECONDS

SHELL     := /bin/bash
NAME      := mongo_helper
VERSION   := $(shell sed -n 's/^\#define MONGO_HELPER_VERSION_STRING "\(.*\)"/\1/p' mongo_helper.h)
MAJOR     := $(firstword $(subst ., ,$(VERSION)))
PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
INCDIR    ?= $(PREFIX)/include
PYTHON    := /usr/bin/python3

CC        ?= cc
CFLAGS    ?= -O2 -g
STD_WARN  := -std=c11 -Wall -Wextra -Wpedantic -Werror
# Recursive on purpose: pkg-config runs when a recipe needs it, after `deps`.
PKG_CFLAGS = $(shell pkg-config --cflags libmongoc-1.0 libbson-1.0)
PKG_LIBS   = $(shell pkg-config --libs libmongoc-1.0 libbson-1.0) -liniparser -lcrypto -lpthread
CHECK_LIBS = $(shell pkg-config --libs check)
ALL_CFLAGS = $(STD_WARN) $(CFLAGS) $(PKG_CFLAGS) -fPIC -I.

STATIC    := lib$(NAME).a
SONAME    := lib$(NAME).so.$(MAJOR)
SHARED    := lib$(NAME).so.$(VERSION)
OBJ       := build/$(NAME).o

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_BIN  := build/check_mongo_helper
EXAMPLES  := $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))


.PHONY: deps-valgrind deps-fuzz fuzz bench deps-bench
.PHONY: all deps demo check memcheck sanitize install uninstall clean examples

all: $(STATIC) $(SHARED)

# ---- dependencies ---------------------------------------------------------
# Installs only what is missing, and says what.  Debian package names.
deps:
	@missing=""; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	for pair in libmongoc-1.0:libmongoc-dev libbson-1.0:libbson-dev check:check; do \
	  pc=$${pair%%:*}; deb=$${pair#*:}; \
	  pkg-config --exists $$pc 2>/dev/null || missing="$$missing $$deb"; \
	done; \
	[ -f /usr/include/iniparser/iniparser.h ] || missing="$$missing libiniparser-dev"; \
	[ -f /usr/include/openssl/sha.h ] || missing="$$missing libssl-dev"; \
	pkg-config --exists libmicrohttpd 2>/dev/null || missing="$$missing libmicrohttpd-dev"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	[ -x $(PYTHON) ] || missing="$$missing python3"; \
	for pair in mockupdb:python3-mockupdb mongomock:python3-mongomock bson:python3-pymongo; do \
	  mod=$${pair%%:*}; deb=$${pair#*:}; \
	  [ -x $(PYTHON) ] && $(PYTHON) -c "import $$mod" >/dev/null 2>&1 || missing="$$missing $$deb"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	  { echo "make deps: apt-get failed; install these Debian packages by hand:$$missing" >&2; exit 1; }; \
	else \
	  echo "make deps: all dependencies present"; \
	fi

# valgrind is needed only by memcheck.
deps-valgrind: deps
	@command -v valgrind >/dev/null 2>&1 || { echo "make deps: installing valgrind"; \
	  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

# clang's libFuzzer runtime is needed only by fuzz (Debian: libclang-rt-14-dev).
deps-fuzz: deps
	@printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' \
	  | clang -x c -fsanitize=fuzzer - -o /dev/null >/dev/null 2>&1 || { echo "make deps: installing clang libclang-rt-14-dev"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null; }

# ---- library --------------------------------------------------------------
build:
	@mkdir -p build

$(OBJ): mongo_helper.c mongo_helper.h | build
	$(CC) $(ALL_CFLAGS) -c mongo_helper.c -o $@

$(STATIC): $(OBJ)
	$(AR) rcs $@ $^

$(SHARED): $(OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(PKG_LIBS)
	ln -sf $(SHARED) $(SONAME)
	ln -sf $(SONAME) lib$(NAME).so

mongo_helper.pc: Makefile mongo_helper.h
	@printf '%s\n' \
	  'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: mongo_helper' \
	  'Description: One place for a C web backend'"'"'s MongoDB access' \
	  'Version: $(VERSION)' \
	  'Requires: libmongoc-1.0 libbson-1.0' \
	  'Libs: -L$${libdir} -lmongo_helper' \
	  'Libs.private: -liniparser -lcrypto -lpthread' \
	  'Cflags: -I$${includedir}' > $@

install: all mongo_helper.pc
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 mongo_helper.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SHARED) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/lib$(NAME).so
	install -m 644 mongo_helper.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/mongo_helper.h $(DESTDIR)$(LIBDIR)/$(STATIC) \
	  $(DESTDIR)$(LIBDIR)/$(SHARED) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/lib$(NAME).so $(DESTDIR)$(LIBDIR)/pkgconfig/mongo_helper.pc

# ---- examples and demo ----------------------------------------------------
build/%: examples/%.c $(STATIC) | build
	$(CC) $(ALL_CFLAGS) $< -o $@ $(STATIC) $(PKG_LIBS) $(shell pkg-config --libs libmicrohttpd)

examples: $(EXAMPLES)

# The main job: against MONGO_CACHE_URI when set, else a local test server.
demo: deps
	@$(MAKE) --no-print-directory examples
	@if [ -n "$$MONGO_CACHE_URI" ]; then \
	  ./build/events_demo && bash examples/web_demo.sh; \
	else \
	  bash tests/with_server.sh sh -c 'export MONGO_CACHE_URI=$$MONGO_TEST_URI; ./build/events_demo && bash examples/web_demo.sh'; \
	fi

# ---- tests ----------------------------------------------------------------
$(TEST_BIN): $(TEST_SRCS) tests/check_main.c tests/mh_test.h $(STATIC) | build
	$(CC) $(ALL_CFLAGS) -Itests tests/check_main.c $(TEST_SRCS) -o $@ $(STATIC) $(PKG_LIBS) $(CHECK_LIBS)

# The test server's own self-test runs only against the mock (it starts its
# own); the Check suites run against MONGO_TEST_URI or a fresh mock.
check: deps
	@$(MAKE) --no-print-directory $(TEST_BIN)
	@if [ -z "$$MONGO_TEST_URI" ]; then $(PYTHON) tests/test_mock_server.py 2>&1 | tail -3; \
	  test $${PIPESTATUS[0]} -eq 0; fi
	bash tests/with_server.sh bash tests/run_checks.sh $(TEST_BIN)
	@$(MAKE) --no-print-directory build/metrics_server && bash tests/with_server.sh bash tests/test_metrics_http.sh build/metrics_server

memcheck: deps-valgrind
	@$(MAKE) --no-print-directory $(TEST_BIN)
	MH_VALGRIND=1 bash tests/with_server.sh bash tests/run_checks.sh $(TEST_BIN)

# A separate build tree so sanitizer objects never mix with the normal ones.
sanitize: deps
	@$(MAKE) --no-print-directory build/san/check_mongo_helper
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bash tests/with_server.sh bash tests/run_checks.sh build/san/check_mongo_helper

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
build/san/check_mongo_helper: mongo_helper.c mongo_helper.h $(TEST_SRCS) tests/check_main.c tests/mh_test.h
	@mkdir -p build/san
	$(CC) $(STD_WARN) $(SAN_FLAGS) $(PKG_CFLAGS) -I. -Itests mongo_helper.c tests/check_main.c $(TEST_SRCS) \
	  -o $@ $(PKG_LIBS) $(CHECK_LIBS)

# ---- benchmark ------------------------------------------------------------
# `make bench` (full mode) or `make bench BENCH_ARGS=--quick` (< 5 minutes,
# including the callgrind instruction pass; `--instr` adds that pass to the
# full mode): helper vs raw libmongoc vs pymongo, against MONGO_CACHE_URI/
# MONGO_TEST_URI or a local test server; writes bench/RESULTS.md,
# bench/results.json and bench/ratios.png.  See bench/bench.c for BENCH_ARGS
# (--only, --skip, --instr-only, --instr-reps, ...).
deps-bench: deps
	@missing=""; \
	command -v gnuplot >/dev/null 2>&1 || missing="$$missing gnuplot-nox"; \
	command -v valgrind >/dev/null 2>&1 || missing="$$missing valgrind"; \
	$(PYTHON) -c "import gridfs" >/dev/null 2>&1 || missing="$$missing python3-gridfs"; \
	if [ -n "$$missing" ]; then \
	  echo "make deps-bench: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	  { echo "make deps-bench: apt-get failed; install these Debian packages by hand:$$missing" >&2; exit 1; }; \
	fi

bench/bench: bench/bench.c mongo_helper.h $(STATIC)
	$(CC) $(ALL_CFLAGS) bench/bench.c -o $@ $(STATIC) $(PKG_LIBS) -lm

bench: deps-bench
	@$(MAKE) --no-print-directory bench/bench
	@if [ -n "$$MONGO_CACHE_URI$$MONGO_TEST_URI" ]; then ./bench/bench $(BENCH_ARGS); \
	else bash tests/with_server.sh ./bench/bench $(BENCH_ARGS); fi

clean:
	rm -rf build $(STATIC) lib$(NAME).so* mongo_helper.pc

# ---- fuzzing --------------------------------------------------------------
# Each target runs FUZZ_SECONDS from its seed corpus; a crash stops the run
# and leaves the input in build/fuzz/ (add it to tests/fuzz/regressions/).
FUZZ_SECONDS ?= 20
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
build/fuzz/%: tests/fuzz/%.c mongo_helper.c mongo_helper.h
	@mkdir -p build/fuzz
	clang $(STD_WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	  $(PKG_CFLAGS) -I. $< mongo_helper.c -o $@ $(PKG_LIBS)

fuzz: deps-fuzz
	@$(MAKE) --no-print-directory $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  if ls tests/fuzz/regressions/$$n/* >/dev/null 2>&1; then \
	    echo "fuzz: $$n regressions"; $$f tests/fuzz/regressions/$$n/* >/dev/null 2>&1 || { echo "fuzz: $$n regression failed" >&2; exit 1; }; fi; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
	    -artifact_prefix=build/fuzz/$$n- build/fuzz/corpus/$$n tests/fuzz/corpus/$$n 2>build/fuzz/$$n.log \
	    || { tail -40 build/fuzz/$$n.log >&2; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE' build/fuzz/$$n.log | tail -1; done
