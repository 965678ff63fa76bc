# libFuzzer targets: tests/fuzz/fuzz_<name>.c, each defining
# LLVMFuzzerTestOneInput and linking every module library like a unit test.
#
#   make fuzz                       build with clang (ASan+UBSan+libFuzzer) into
#                                   build-fuzz/ and run each target for
#                                   FUZZ_SECONDS (default 20) over its seed corpus
#                                   tests/fuzz/corpus/<target>/
#   make fuzz FUZZ_TARGETS=fuzz_x   only some targets
#
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION is defined in this build only, so
# parsers can skip checks a fuzzer cannot satisfy (checksums) and reach the
# code behind them.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_ALL := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRCS))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_SECONDS ?= 20
FUZZ_BINS := $(patsubst %,$(BUILD)/fuzz/%,$(FUZZ_TARGETS))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(ALL_LIBS) $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< -Wl,--start-group $(UNIT_LIBS) -Wl,--end-group $(LDFLAGS) $(UNIT_LDLIBS)

.PHONY: fuzz fuzz-bins
fuzz-bins: $(FUZZ_BINS)

fuzz:
	$(MAKE) SAN=1 CC=clang BUILD=build-fuzz \
		EXTRA_CFLAGS="-fsanitize=fuzzer-no-link -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -Wno-error -Wno-unknown-warning-option" \
		fuzz-bins
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p build-fuzz/corpus/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		build-fuzz/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			build-fuzz/corpus/$$t $$( [ -d tests/fuzz/corpus/$$t ] && echo tests/fuzz/corpus/$$t ); \
	done
