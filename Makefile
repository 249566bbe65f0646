# mongo_helper — build, test and install.
#
#   make            static and shared library, the mongo-helper tool
#   make demo       run the example against MONGO_CACHE_URI or a local test server
#   make check      all tests (starts and stops the local test server)
#   make memcheck   the tests under valgrind (errors and leaks fail the run)
#   make sanitize   the tests built with ASan + UBSan
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make deps       install missing Debian packages (done by demo and check)
#   make fuzz       build the libFuzzer targets (clang) and run each FUZZ_SECONDS
#   make bench      helper vs raw libmongoc vs pymongo (BENCH_ARGS=--quick)
#   make abi-check  exported symbols == the header's functions (run by check)
#   make layer-check  no file calls up a layer (run by check)
#   make format     apply .clang-format (make format-check: refuse drift)

SHELL     := /bin/bash
NAME      := mongo_helper
VERSION   := $(shell sed -n 's/^\#define MONGO_HELPER_VERSION_STRING "\(.*\)"/\1/p' mongo_helper.h)
MAJOR     := $(firstword $(subst ., ,$(VERSION)))
PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
INCDIR    ?= $(PREFIX)/include
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
PYTHON    := /usr/bin/python3

CC        ?= cc
CFLAGS    ?= -O2 -g
STD_WARN  := -std=c11 -Wall -Wextra -Wpedantic
# -Werror is for the project's own targets (check, memcheck, sanitize,
# fuzz, CI), which set it; a user's plain `make` with a newer compiler must
# not fail on a warning that compiler adds.
WERROR    ?=
# Recursive on purpose: pkg-config runs when a recipe needs it, after `deps`.
PKG_CFLAGS = $(shell pkg-config --cflags libmongoc-1.0 libbson-1.0)
PKG_LIBS   = $(shell pkg-config --libs libmongoc-1.0 libbson-1.0) -liniparser -lcrypto -lpthread
CHECK_LIBS = $(shell pkg-config --libs check)
ALL_CFLAGS = $(STD_WARN) $(WERROR) $(CFLAGS) $(PKG_CFLAGS) -fPIC -I.

STATIC    := lib$(NAME).a
SONAME    := lib$(NAME).so.$(MAJOR)
SHARED    := lib$(NAME).so.$(VERSION)

# The suites (tests/test_*.c) and their shared fixture.
TEST_SRCS := tests/mh_test.c $(sort $(wildcard tests/test_*.c))
TEST_BIN  := build/check_mongo_helper
EXAMPLES  := $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))
TOOL      := build/mongo-helper
TOOL_SRCS := $(sort $(wildcard tools/*.c))
MANPAGE   := tools/mongo-helper.1


.PHONY: all deps deps-valgrind deps-fuzz deps-bench demo check memcheck sanitize fuzz bench
.PHONY: install uninstall clean examples abi-check layer-check format format-check FORCE

all: $(STATIC) $(SHARED) $(TOOL)

# ---- dependencies ---------------------------------------------------------
# Installs only what is missing, and says what.  Debian package names.
# libstemmer0d: the test server stems text-search words with it, as MongoDB
# does (Snowball); without it the server still runs, words unstemmed.
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
	command -v clang-format >/dev/null 2>&1 || missing="$$missing clang-format"; \
	[ -x $(PYTHON) ] || missing="$$missing python3"; \
	for pair in mockupdb:python3-mockupdb mongomock:python3-mongomock bson:python3-pymongo; do \
	  mod=$${pair%%:*}; deb=$${pair#*:}; \
	  [ -x $(PYTHON) ] && $(PYTHON) -c "import $$mod" >/dev/null 2>&1 || missing="$$missing $$deb"; \
	done; \
	$(PYTHON) -c "import ctypes; ctypes.CDLL('libstemmer.so.0d')" >/dev/null 2>&1 || missing="$$missing libstemmer0d"; \
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
# Every .c compiles to build/obj/; the objects are partially linked into one
# relocatable object whose only global symbols are mongo_helper_*, so the
# internal mh_* names cannot clash with an application's when it links the
# static archive; the shared library also exports only mongo_helper_* (the
# version script).  Header dependencies come from -MMD.
SRCS      := mongo_helper.c $(sort $(wildcard src/*.c))
OBJS      := $(patsubst %.c,build/obj/%.o,$(SRCS))
LIB_OBJ   := build/$(NAME).o
VSCRIPT   := src/exports.map

build:
	@mkdir -p build

# The compiler flags that shape the objects; objects are rebuilt when they
# change (e.g. `make` then `make check`, which adds -Werror).
build/cflags: FORCE | build
	@echo '$(CC) $(STD_WARN) $(WERROR) $(CFLAGS)' | cmp -s - $@ || \
	  echo '$(CC) $(STD_WARN) $(WERROR) $(CFLAGS)' > $@
FORCE:

build/obj/%.o: %.c build/cflags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

-include $(OBJS:.o=.d)

$(LIB_OBJ): $(OBJS)
	$(LD) -r -o build/$(NAME)-partial.o $(OBJS)
	objcopy --wildcard --keep-global-symbol='mongo_helper_*' build/$(NAME)-partial.o $@

$(STATIC): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ) $(VSCRIPT)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(VSCRIPT) -o $@ $(LIB_OBJ) $(PKG_LIBS)
	ln -sf $(SHARED) $(SONAME)
	ln -sf $(SONAME) lib$(NAME).so

# The exported symbols are exactly the functions the header declares, and
# the layers of the map in mongo_helper.c hold on the objects.
abi-check: $(STATIC) $(SHARED)
	bash tests/abi_check.sh mongo_helper.h $(SHARED) $(STATIC)

layer-check: $(OBJS)
	bash tests/layer_check.sh mongo_helper.c $(OBJS)

# ---- the mongo-helper tool ----------------------------------------------------
# Public API only; linked with the static library, so it runs without the
# shared one installed.
$(TOOL): $(TOOL_SRCS) tools/mh_cli.h $(STATIC) | build
	$(CC) $(ALL_CFLAGS) -Itools $(TOOL_SRCS) -o $@ $(STATIC) $(PKG_LIBS)

# Writes the test data tests/test_cli.sh reads back with the tool.
build/cli_fixture: tests/cli_fixture.c $(STATIC) | build
	$(CC) $(ALL_CFLAGS) $< -o $@ $(STATIC) $(PKG_LIBS)

# ---- install --------------------------------------------------------------
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
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 mongo_helper.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SHARED) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/lib$(NAME).so
	install -m 644 mongo_helper.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 755 $(TOOL) $(DESTDIR)$(BINDIR)/mongo-helper
	install -m 644 $(MANPAGE) $(DESTDIR)$(MANDIR)/man1/mongo-helper.1

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/mongo_helper.h $(DESTDIR)$(LIBDIR)/$(STATIC) \
	  $(DESTDIR)$(LIBDIR)/$(SHARED) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/lib$(NAME).so $(DESTDIR)$(LIBDIR)/pkgconfig/mongo_helper.pc \
	  $(DESTDIR)$(BINDIR)/mongo-helper $(DESTDIR)$(MANDIR)/man1/mongo-helper.1

# ---- examples and demo ----------------------------------------------------
build/%: examples/%.c $(STATIC) | build
	$(CC) $(ALL_CFLAGS) $< -o $@ $(STATIC) $(PKG_LIBS) $(shell pkg-config --libs libmicrohttpd)

examples: $(EXAMPLES)

# The main job: against MONGO_CACHE_URI when set, else a local test server.
# Then the operator's view: mongo-helper config and status.
DEMO_TOOL := echo "== mongo-helper config" && ./$(TOOL) config && \
  echo "== mongo-helper status" && ./$(TOOL) status
demo: deps
	@$(MAKE) --no-print-directory examples $(TOOL)
	@if [ -n "$$MONGO_CACHE_URI" ]; then \
	  ./build/events_demo && bash examples/web_demo.sh && $(DEMO_TOOL); \
	else \
	  bash tests/with_server.sh sh -c 'export MONGO_CACHE_URI=$$MONGO_TEST_URI; ./build/events_demo && bash examples/web_demo.sh && $(DEMO_TOOL)'; \
	fi

# ---- tests ----------------------------------------------------------------
TEST_HDRS := $(wildcard tests/*.h)
# The suites link the library before its internal (mh_*) names are hidden,
# as the sanitizer build does, so a suite can test an internal unit (e.g.
# tests/test_crypto.c); abi-check proves what the archive and .so export.
$(TEST_BIN): $(TEST_SRCS) tests/check_main.c $(TEST_HDRS) $(LIB_OBJ) | build
	$(CC) $(ALL_CFLAGS) -Itests tests/check_main.c $(TEST_SRCS) -o $@ build/$(NAME)-partial.o $(PKG_LIBS) $(CHECK_LIBS)

# The test server's own self-test runs only against the mock (it starts its
# own); the Check suites run against MONGO_TEST_URI or a fresh mock.
check: deps
	@$(MAKE) --no-print-directory WERROR=-Werror all $(TEST_BIN) build/metrics_server build/cli_fixture
	@$(MAKE) --no-print-directory WERROR=-Werror abi-check layer-check format-check
	@if [ -z "$$MONGO_TEST_URI" ]; then $(PYTHON) tests/test_mock_server.py 2>&1 | tail -3; \
	  test $${PIPESTATUS[0]} -eq 0; fi
	bash tests/with_server.sh bash tests/run_checks.sh $(TEST_BIN)
	bash tests/with_server.sh $(PYTHON) tests/readme_snippets.py
	bash tests/with_server.sh bash tests/test_metrics_http.sh build/metrics_server
	bash tests/with_server.sh bash tests/test_cli.sh $(TOOL) build/cli_fixture

memcheck: deps-valgrind
	@$(MAKE) --no-print-directory WERROR=-Werror $(TEST_BIN) $(TOOL)
	MH_VALGRIND=1 bash tests/with_server.sh bash tests/run_checks.sh $(TEST_BIN)

# A separate build tree so sanitizer objects never mix with the normal ones.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize: deps
	@$(MAKE) --no-print-directory WERROR=-Werror build/san/check_mongo_helper build/san/mongo-helper build/san/cli_fixture
	$(SAN_ENV) bash tests/with_server.sh bash tests/run_checks.sh build/san/check_mongo_helper
	$(SAN_ENV) bash tests/with_server.sh bash tests/test_cli.sh build/san/mongo-helper build/san/cli_fixture

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
build/san/check_mongo_helper: $(SRCS) src/mh_private.h mongo_helper.h $(TEST_SRCS) tests/check_main.c $(TEST_HDRS)
	@mkdir -p build/san
	$(CC) $(STD_WARN) $(WERROR) $(SAN_FLAGS) $(PKG_CFLAGS) -I. -Itests $(SRCS) tests/check_main.c $(TEST_SRCS) \
	  -o $@ $(PKG_LIBS) $(CHECK_LIBS)

build/san/mongo-helper: $(SRCS) src/mh_private.h mongo_helper.h $(TOOL_SRCS) tools/mh_cli.h
	@mkdir -p build/san
	$(CC) $(STD_WARN) $(WERROR) $(SAN_FLAGS) $(PKG_CFLAGS) -I. -Itools $(SRCS) $(TOOL_SRCS) -o $@ $(PKG_LIBS)

build/san/cli_fixture: $(SRCS) src/mh_private.h mongo_helper.h tests/cli_fixture.c
	@mkdir -p build/san
	$(CC) $(STD_WARN) $(WERROR) $(SAN_FLAGS) $(PKG_CFLAGS) -I. $(SRCS) tests/cli_fixture.c -o $@ $(PKG_LIBS)

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

BENCH_SRCS := $(wildcard bench/*.c)

build/mh_bench: $(BENCH_SRCS) bench/bench.h mongo_helper.h $(STATIC) | build
	$(CC) $(ALL_CFLAGS) $(BENCH_SRCS) -o $@ $(STATIC) $(PKG_LIBS) -lm

bench: deps-bench
	@$(MAKE) --no-print-directory build/mh_bench
	@if [ -n "$$MONGO_CACHE_URI$$MONGO_TEST_URI" ]; then ./build/mh_bench $(BENCH_ARGS); \
	else bash tests/with_server.sh ./build/mh_bench $(BENCH_ARGS); fi

# ---- formatting -----------------------------------------------------------
# One style for the whole tree (.clang-format, clang-format 14 as Debian 12
# ships it).  format-check runs in make check.
FORMAT_FILES = mongo_helper.h $(SRCS) src/mh_private.h $(wildcard tests/*.c tests/*.h tests/fuzz/*.c examples/*.c bench/*.c bench/*.h tools/*.c tools/*.h)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) 2>&1 | head -20; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "format-check: run make format" >&2; exit 1; }
	@echo "format-check: $(words $(FORMAT_FILES)) files follow .clang-format"

clean:
	rm -rf build $(STATIC) lib$(NAME).so* mongo_helper.pc

# ---- fuzzing --------------------------------------------------------------
# Each target runs FUZZ_SECONDS from its seed corpus, with inputs up to
# 1 MB (FUZZ_MAX_LEN); a crash stops the run and leaves the input in
# build/fuzz/ (add it to tests/fuzz/regressions/).
FUZZ_SECONDS ?= 20
FUZZ_MAX_LEN ?= 1048576
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
build/fuzz/%: tests/fuzz/%.c $(SRCS) src/mh_private.h mongo_helper.h
	@mkdir -p build/fuzz
	clang $(STD_WARN) -Werror -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	  $(PKG_CFLAGS) -I. $< $(SRCS) -o $@ $(PKG_LIBS)

fuzz: deps-fuzz
	@$(MAKE) --no-print-directory $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  if ls tests/fuzz/regressions/$$n/* >/dev/null 2>&1; then \
	    echo "fuzz: $$n regressions"; $$f tests/fuzz/regressions/$$n/* >/dev/null 2>&1 || { echo "fuzz: $$n regression failed" >&2; exit 1; }; fi; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
	    -artifact_prefix=build/fuzz/$$n- build/fuzz/corpus/$$n tests/fuzz/corpus/$$n 2>build/fuzz/$$n.log \
	    || { tail -40 build/fuzz/$$n.log >&2; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE' build/fuzz/$$n.log | tail -1; done
