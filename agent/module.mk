# agent/: wisp-agent (the guest's init and function runner, static) and
# wisp-agent-ctl (the host-side test tool). The protocol codec and the
# client library live in common/ (proto.c, agent_client.c).
AGENT_LIB_SRCS := agent/job.c agent/server.c agent/sys.c
AGENT_LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(AGENT_LIB_SRCS))
$(eval $(call lib_rule,wispagent,$(AGENT_LIB_OBJS)))
ALL_LIBS += $(BUILD)/libwispagent.a

$(BUILD)/bin/wisp-agent: $(BUILD)/agent/main.o $(BUILD)/libwispagent.a $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(STATIC) -o $@ $^

$(BUILD)/bin/wisp-agent-ctl: $(BUILD)/agent/ctl.o $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(STATIC) -o $@ $^

BINS += $(BUILD)/bin/wisp-agent $(BUILD)/bin/wisp-agent-ctl

# libFuzzer target for the protocol codec: `make fuzz` builds every fuzz
# target into build-fuzz/ (other modules add theirs to the same goal);
# `make fuzz-proto-run` runs this one for FUZZ_SECONDS.
FUZZ_BUILD ?= build-fuzz
FUZZ_CC ?= clang
FUZZ_CFLAGS ?= -std=gnu11 -g -O1 -D_GNU_SOURCE -I. -Icommon \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 30
$(FUZZ_BUILD)/fuzz-proto: tests/fuzz/fuzz_proto.c common/proto.c common/err.c common/proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_proto.c common/proto.c common/err.c

.PHONY: fuzz fuzz-proto-run
fuzz: $(FUZZ_BUILD)/fuzz-proto
fuzz-proto-run: $(FUZZ_BUILD)/fuzz-proto
	@mkdir -p $(FUZZ_BUILD)/corpus-proto
	$(FUZZ_BUILD)/fuzz-proto -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		$(FUZZ_BUILD)/corpus-proto
