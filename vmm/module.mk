# vmm/: the wisp-vmm library (everything but main.c); core extends this.
VMM_SRCS := $(filter-out vmm/main.c,$(wildcard vmm/*.c vmm/*/*.c))
VMM_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(VMM_SRCS))
$(eval $(call lib_rule,wispvmm,$(VMM_OBJS)))
ALL_LIBS += $(BUILD)/libwispvmm.a
