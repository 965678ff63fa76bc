# agent/: wisp-agent (the guest's init and function runner, static) and
# wisp-agent-ctl (the host-side test tool). The protocol codec and the
# client library live in common/ (proto.c, agent_client.c).
AGENT_LIB_SRCS := agent/job.c agent/server.c agent/sweep.c agent/sys.c
AGENT_LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(AGENT_LIB_SRCS))
$(eval $(call lib_rule,wispagent,$(AGENT_LIB_OBJS)))
ALL_LIBS += $(BUILD)/libwispagent.a

# The release wisp-agent links against musl when musl-gcc is there (static,
# about 120 KB, a fraction of glibc's resident memory in every guest); the
# SAN=1 build, and machines without musl, use $(CC) and glibc. musl's headers
# come first; only the kernel's uapi headers (linux/, asm/) are borrowed.
AGENT_MUSL_CC := $(if $(filter 0,$(SAN)),$(shell command -v musl-gcc 2>/dev/null))
ifneq ($(AGENT_MUSL_CC),)
AGENT_MUSL_SRCS := agent/main.c $(AGENT_LIB_SRCS) common/err.c common/log.c common/io.c common/proto.c
AGENT_MUSL_OBJS := $(patsubst %.c,$(BUILD)/musl/%.o,$(AGENT_MUSL_SRCS))
AGENT_MUSL_INC := $(BUILD)/musl/include
$(AGENT_MUSL_INC)/.stamp:
	@mkdir -p $(dir $@)
	ln -sfn /usr/include/linux $(AGENT_MUSL_INC)/linux
	ln -sfn /usr/include/asm-generic $(AGENT_MUSL_INC)/asm-generic
	ln -sfn $$(dirname $$(realpath /usr/include/$$(gcc -print-multiarch)/asm/types.h)) $(AGENT_MUSL_INC)/asm
	touch $@
$(BUILD)/musl/%.o: %.c $(AGENT_MUSL_INC)/.stamp
	@mkdir -p $(dir $@)
	$(AGENT_MUSL_CC) $(CFLAGS) -isystem $(AGENT_MUSL_INC) -MMD -MP -c -o $@ $<
$(BUILD)/bin/wisp-agent: $(AGENT_MUSL_OBJS)
	@mkdir -p $(dir $@)
	$(AGENT_MUSL_CC) $(LDFLAGS) -static -o $@ $^
else
$(BUILD)/bin/wisp-agent: $(BUILD)/agent/main.o $(BUILD)/libwispagent.a $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(STATIC) -o $@ $^
endif

$(BUILD)/bin/wisp-agent-ctl: $(BUILD)/agent/ctl.o $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(STATIC) -o $@ $^

BINS += $(BUILD)/bin/wisp-agent $(BUILD)/bin/wisp-agent-ctl

# The protocol codec's fuzz target is tests/fuzz/fuzz_proto.c, built and run
# by `make fuzz` (tests/fuzz/module.mk) with its seeds in
# tests/fuzz/corpus/fuzz_proto/.
