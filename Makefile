# wisp top-level build.
#
#   make            release build into build/ (-Werror, static wisp-vmm/wisp-agent)
#   make asan       ASan+UBSan build into build-asan/ (dynamic)
#   make unit       build and run the criterion unit tests (both builds: make unit asan=1)
#   make test       everything the README's test command runs (scripts/test.sh)
#
# Each folder owns a module.mk fragment that adds its sources and binaries;
# this file holds only the shared rules so folders can grow independently.

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-asan
else
BUILD ?= build
endif

CC      ?= cc
CFLAGS_COMMON := -std=gnu11 -g -O2 -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 \
	-Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-missing-field-initializers -Wno-format-truncation \
	-fno-strict-aliasing -fstack-protector-strong -I. -Icommon
LDFLAGS_COMMON :=
ifeq ($(SAN),1)
CFLAGS_COMMON += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -U_FORTIFY_SOURCE
LDFLAGS_COMMON += -fsanitize=address,undefined
STATIC :=
else
STATIC := -static
endif

CFLAGS  := $(CFLAGS_COMMON) $(EXTRA_CFLAGS)
LDFLAGS := $(LDFLAGS_COMMON) $(EXTRA_LDFLAGS)

BINS :=
UNIT_TESTS :=
ALL_LIBS :=

.PHONY: all asan unit test clean bins
all: bins

# objects: build/<path>.o, with dependency files
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# lib_rule(name, objects): a static archive of a module's objects
define lib_rule
$(BUILD)/lib$(1).a: $(2)
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef

include common/module.mk
-include vmm/module.mk
-include agent/module.mk
-include jailer/module.mk
-include api/module.mk
-include tests/module.mk
-include bench/module.mk

bins: $(BINS)

asan:
	$(MAKE) SAN=1

# Every unit test binary links every module library; archives pull in only
# what a test uses.
UNIT_LIBS = $(ALL_LIBS) $(BUILD)/libwispcommon.a
UNIT_LDLIBS = -lcriterion -lseccomp -lcap -levent -levent_pthreads -ljansson -lpthread

$(BUILD)/tests/unit/%: tests/unit/%.c $(UNIT_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -o $@ $< -Wl,--start-group $(UNIT_LIBS) -Wl,--end-group $(LDFLAGS) $(UNIT_LDLIBS)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))

unit: $(UNIT_TESTS)
	@scripts/run-unit.sh $(BUILD) $(UNIT_TESTS)

test:
	bash scripts/test.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
