# vmm/tools/: small offline tools for wisp-vmm's files (issue 6).
#   wisp-snap   inspect a snapshot state file, merge a diff memory file onto its base
$(BUILD)/bin/wisp-snap: $(BUILD)/vmm/tools/wisp-snap.o $(BUILD)/libwispvmm.a $(BUILD)/libwispcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(STATIC) -o $@ $< -Wl,--start-group $(BUILD)/libwispvmm.a $(BUILD)/libwispcommon.a -Wl,--end-group $(LDFLAGS) -lpthread
BINS += $(BUILD)/bin/wisp-snap
