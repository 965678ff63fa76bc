# tests/guests/: tiny KVM test guests. Freestanding, static, never sanitized:
# each is linked at a fixed physical address and entered in 64-bit mode.
GUEST_NAMES := $(patsubst tests/guests/%.c,%,$(wildcard tests/guests/*.c))
GUESTS := $(patsubst %,$(BUILD)/guests/%.elf,$(GUEST_NAMES))
GUEST_CFLAGS := -std=gnu11 -O2 -g -ffreestanding -nostdlib -static -fno-pic -fno-pie -no-pie \
	-mno-red-zone -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
	-fcf-protection=none -Wall -Wextra -Werror -Wno-main -Itests/guests
GUEST_LDFLAGS := -Wl,-T,tests/guests/guest.ld -Wl,--build-id=none -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments

$(BUILD)/guests/%.elf: tests/guests/%.c tests/guests/start.S tests/guests/guest.h tests/guests/guest.ld
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ tests/guests/start.S $<

.PHONY: guests
guests: $(GUESTS)
all: guests
