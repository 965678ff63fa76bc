# common/: errors, logging, cleanup helpers, safe I/O, the host-agent protocol.
COMMON_SRCS := $(wildcard common/*.c)
COMMON_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(COMMON_SRCS))
$(eval $(call lib_rule,wispcommon,$(COMMON_OBJS)))
