# ftune build. `make` builds build/ftune (optimized). `make test` installs what the tests need,
# builds the ASan+UBSan test build and runs the whole suite. `make demo` runs the main job.
# Sources are discovered: every src/<module>/*.c goes into the library, src/cli/*.c into the CLI,
# every tests/<module>/test_*.c becomes a test binary.

CC      ?= cc
FUZZCC  ?= clang
PY      ?= /usr/bin/python3
LIBS    := -ldnnl -lcjson -lyaml -lpcre2-8 -lutf8proc -lm
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# -fno-math-errno: no math function here is read through errno; with it sqrtf compiles to one
# instruction that vectorizes (AdamW's update loop was scalar: 13% of a full fine-tuning step).
# It changes no result (IEEE sqrt is correctly rounded either way).
BASEFLAGS := -std=c11 -D_GNU_SOURCE -Iinclude -fopenmp -fno-math-errno -MMD -MP $(WARN)

REL_CFLAGS  := $(BASEFLAGS) -O2 -march=native -g
TEST_CFLAGS := $(BASEFLAGS) -O1 -march=native -g -Werror -fno-omit-frame-pointer -ftrivial-auto-var-init=pattern \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined
TEST_LDFLAGS := -fsanitize=address,undefined

LIB_SRC  := $(sort $(wildcard src/core/*.c src/io/*.c src/model/*.c src/kernels/cpu/*.c \
              src/tokenizer/*.c src/peft/*.c src/train/*.c src/data/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

REL  := build/rel
TST  := build/test

rel_obj  = $(patsubst %.c,$(REL)/%.o,$(1))
tst_obj  = $(patsubst %.c,$(TST)/%.o,$(1))

.PHONY: all test demo deps fixtures check clean fuzz bench format
all: build/ftune

# ---- optimized build ----
$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -c $< -o $@
$(REL)/libftune.a: $(call rel_obj,$(LIB_SRC))
	@rm -f $@; ar rcs $@ $^
build/ftune: $(call rel_obj,$(CLI_SRC)) $(REL)/libftune.a
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)
$(REL)/bench/%: $(REL)/bench/%.o $(REL)/libftune.a
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)

# ---- sanitizer test build ----
$(TST)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -c $< -o $@
$(TST)/libftune.a: $(call tst_obj,$(LIB_SRC))
	@rm -f $@; ar rcs $@ $^
$(TST)/ftune: $(call tst_obj,$(CLI_SRC)) $(TST)/libftune.a
	$(CC) $(TEST_CFLAGS) -o $@ $^ $(LIBS) $(TEST_LDFLAGS)
$(TST)/bin/%: $(TST)/tests/%.o $(TST)/libftune.a
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $^ $(LIBS) $(TEST_LDFLAGS)

TEST_BINS := $(patsubst tests/%.c,$(TST)/bin/%,$(TEST_SRC))
BENCH_BINS := $(patsubst bench/%.c,$(REL)/bench/%,$(BENCH_SRC))

# ---- libFuzzer targets (clang) ----
# The library is compiled once with -fsanitize=fuzzer-no-link (coverage, ASan, UBSan) into
# build/fuzz/lib.a; each target links it with the fuzzer runtime. -Wno-pass-failed: clang's
# "loop not vectorized" notes about omp simd loops are not problems in a fuzz build.
FUZZ := build/fuzz
FUZZ_COMMON := -std=c11 -D_GNU_SOURCE -Iinclude -O1 -g -fopenmp -fno-sanitize-recover=undefined \
               -Wno-pass-failed -MMD -MP
FUZZ_FLAGS := $(FUZZ_COMMON) -fsanitize=fuzzer,address,undefined
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ)/%,$(FUZZ_SRC))
$(FUZZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZCC) $(FUZZ_COMMON) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@
$(FUZZ)/lib.a: $(patsubst %.c,$(FUZZ)/obj/%.o,$(LIB_SRC))
	@rm -f $@; ar rcs $@ $^
$(FUZZ)/%: tests/fuzz/%.c $(FUZZ)/lib.a
	$(FUZZCC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ)/lib.a $(LIBS)

deps:
	@tools/install-deps.sh

fixtures: deps build/ftune
	@tools/fetch-fixtures.sh

# the bench programs are built too, so an interface change cannot leave them broken
check: build/ftune $(TST)/ftune $(TEST_BINS) $(FUZZ_BINS) $(BENCH_BINS)

test: deps
	@$(MAKE) --no-print-directory fixtures
	@$(MAKE) --no-print-directory -j2 check
	@tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory fixtures
	@tools/demo.sh

bench: build/ftune $(BENCH_BINS)
	@bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
