# vmm/: wisp-vmm. Every vmm/**/*.c except main.c goes into libwispvmm.a (the
# unit tests link it too); main.c is only in the binary. vmm/tools/ holds
# offline tools with their own main (snapshot, issue 6).
VMM_SRCS := $(filter-out vmm/main.c vmm/tools/%,$(shell find vmm -name '*.c'))
VMM_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(VMM_SRCS))
$(eval $(call lib_rule,wispvmm,$(VMM_OBJS)))
ALL_LIBS += $(BUILD)/libwispvmm.a

ifneq ($(wildcard vmm/main.c),)
VMM_LDLIBS := -lseccomp -levent -levent_pthreads -ljansson -lpthread
$(BUILD)/bin/wisp-vmm: $(BUILD)/vmm/main.o $(BUILD)/libwispvmm.a $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(STATIC) -o $@ $(BUILD)/vmm/main.o -Wl,--start-group $(BUILD)/libwispvmm.a \
		$(BUILD)/libwispcommon.a -Wl,--end-group $(LDFLAGS) $(VMM_LDLIBS)
BINS += $(BUILD)/bin/wisp-vmm
endif

-include vmm/tools/module.mk
