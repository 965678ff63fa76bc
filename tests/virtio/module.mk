# tests/virtio/: wisp-virtio-test, the guest-side helper of the virtio lane
# cases and bench/virtio.sh (vsock echo/source/send, random block I/O). A
# static binary the cases copy into the guest's root filesystem.
$(BUILD)/bin/wisp-virtio-test: $(BUILD)/tests/virtio/wisp-virtio-test.o
	@mkdir -p $(dir $@)
	$(CC) $(STATIC) -o $@ $^ $(LDFLAGS)
BINS += $(BUILD)/bin/wisp-virtio-test
