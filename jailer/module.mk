# jailer/: wisp-jailer. Everything but main goes into libwispjailer.a so the
# unit tests can link it.
JAILER_LIB_SRCS := jailer/args.c jailer/cgroup.c jailer/execfile.c jailer/fs.c jailer/jail.c \
	jailer/spawn.c
JAILER_LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(JAILER_LIB_SRCS))
$(eval $(call lib_rule,wispjailer,$(JAILER_LIB_OBJS)))
ALL_LIBS += $(BUILD)/libwispjailer.a

$(BUILD)/bin/wisp-jailer: $(BUILD)/jailer/main.o $(BUILD)/libwispjailer.a $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDFLAGS) $(STATIC) -lcap

BINS += $(BUILD)/bin/wisp-jailer
