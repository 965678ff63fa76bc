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

# The protocol codec's fuzz target is tests/fuzz/fuzz_proto.c, built and run
# by `make fuzz` (tests/fuzz/module.mk) with its seeds in
# tests/fuzz/corpus/fuzz_proto/.
