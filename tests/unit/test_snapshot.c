/* Snapshot state file encoding and the API request bodies: round trips and
 * every refusal a damaged or foreign file must get. Memory files:
 * test_snapshot_mem.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/io.h"
#include "vmm/snapshot.h"

struct demo_state {
	uint64_t rip, rsp;
	uint32_t flags;
	uint8_t tail[3];
};

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/wisp-snap-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(snapshot, .init = mkdir_tmp, .fini = rm_tmp);

/* A state image with three components, the way the VMM writes one. */
static uint8_t *build_image(size_t *len)
{
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 128ull << 20, 0), 0);
	struct demo_state s0 = { .rip = 0x1000, .rsp = 0x8ff0, .flags = 2, .tail = { 1, 2, 3 } };
	struct demo_state s1 = { .rip = 0x2000, .rsp = 0x9ff0, .flags = 0x202 };
	const char cfg[] = "{\"machine-config\":{\"vcpu_count\":2}}";
	cr_assert_eq(snap_put(&w, SNAP_SEC_CONFIG, 1, 0, cfg, sizeof(cfg) - 1), 0);
	cr_assert_eq(snap_put(&w, SNAP_SEC_VCPU, 3, 0, &s0, sizeof(s0)), 0);
	cr_assert_eq(snap_put(&w, SNAP_SEC_VCPU, 3, 1, &s1, sizeof(s1)), 0);
	cr_assert_eq(snap_put(&w, SNAP_SEC_SERIAL, 1, 0, NULL, 0), 0);
	const uint8_t *buf;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_writer_finish(&w, &buf, len, &e), 0, "%s", e.msg);
	uint8_t *copy = malloc(*len);
	memcpy(copy, buf, *len);
	snap_writer_free(&w);
	return copy;
}

static void reseal(uint8_t *buf, size_t len)
{
	struct snap_header *h = (struct snap_header *)buf;
	h->crc32 = 0;
	h->crc32 = snap_crc32(0, buf, len);
}

static void expect_refused(const uint8_t *buf, size_t len, const char *needle)
{
	struct snap_image img;
	struct wisp_err e = { 0 };
	int r = snap_parse(buf, len, &img, &e);
	cr_assert_lt(r, 0, "expected a refusal containing '%s'", needle);
	cr_assert(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
}

Test(snapshot, round_trip)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	cr_assert_eq(len % 8, 0);
	struct snap_image img;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_parse(buf, len, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(img.hdr.mem_size, 128ull << 20);
	cr_assert_eq(img.nr_sections, 4);
	struct demo_state s;
	cr_assert_eq(snap_get(&img, SNAP_SEC_VCPU, 3, 1, &s, sizeof(s), &e), 0, "%s", e.msg);
	cr_assert_eq(s.rip, 0x2000);
	cr_assert_eq(s.flags, 0x202);
	cr_assert_eq(snap_get(&img, SNAP_SEC_VCPU, 3, 0, &s, sizeof(s), &e), 0);
	cr_assert_eq(s.rsp, 0x8ff0);
	cr_assert_eq(s.tail[2], 3);
	const uint8_t *data;
	size_t dlen;
	cr_assert_eq(snap_get_var(&img, SNAP_SEC_CONFIG, 1, 0, &data, &dlen, &e), 0);
	cr_assert_eq(dlen, strlen("{\"machine-config\":{\"vcpu_count\":2}}"));
	cr_assert_eq(memcmp(data, "{\"machine", 9), 0);
	/* the empty serial section has not been read yet */
	cr_assert_lt(snap_check_all_used(&img, &e), 0);
	cr_assert(strstr(e.msg, "serial") != NULL, "%s", e.msg);
	cr_assert_eq(snap_get_var(&img, SNAP_SEC_SERIAL, 1, 0, &data, &dlen, &e), 0);
	cr_assert_eq(dlen, 0);
	cr_assert_eq(snap_check_all_used(&img, &e), 0);
	cr_assert(snap_has(&img, SNAP_SEC_VCPU, 1));
	cr_assert_not(snap_has(&img, SNAP_SEC_VCPU, 2));
	snap_image_free(&img);
	free(buf);
}

Test(snapshot, file_round_trip_and_size_cap)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	char path[128];
	snprintf(path, sizeof(path), "%s/state", dir);
	struct wisp_err e = { 0 };
	cr_assert_eq(wisp_write_file_atomic(path, buf, len, 0600, &e), 0);
	struct snap_image img;
	cr_assert_eq(snap_read_file(path, &img, &e), 0, "%s", e.msg);
	struct demo_state s;
	cr_assert_eq(snap_get(&img, SNAP_SEC_VCPU, 3, 0, &s, sizeof(s), &e), 0);
	cr_assert_eq(s.rip, 0x1000);
	snap_image_free(&img);

	/* over the cap: refused from fstat, without reading 16 MiB */
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, SNAP_STATE_MAX + 1), 0);
	close(fd);
	cr_assert_eq(snap_read_file(path, &img, &e), -EFBIG);
	cr_assert(strstr(e.msg, "more than the limit") != NULL, "%s", e.msg);

	snprintf(path, sizeof(path), "%s/missing", dir);
	cr_assert_eq(snap_read_file(path, &img, &e), -ENOENT);
	cr_assert(strstr(e.msg, "No such file") != NULL, "%s", e.msg);
	cr_assert_lt(snap_read_file(dir, &img, &e), 0);
	cr_assert(strstr(e.msg, "not a regular file") != NULL, "%s", e.msg);
	free(buf);
}

Test(snapshot, refuses_truncated)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	expect_refused(buf, len - 8, "truncated");
	expect_refused(buf, len - 1, "truncated");
	expect_refused(buf, 40, "truncated");
	expect_refused(buf, 0, "truncated");
	free(buf);
}

Test(snapshot, refuses_every_flipped_bit)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			buf[i] ^= (uint8_t)(1u << bit);
			struct snap_image img;
			struct wisp_err e = { 0 };
			cr_assert_lt(snap_parse(buf, len, &img, &e), 0, "flip at byte %zu bit %d accepted",
				     i, bit);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	/* a flip in the body is reported as a checksum mismatch */
	buf[len - 20] ^= 0x10;
	expect_refused(buf, len, "checksum mismatch");
	free(buf);
}

Test(snapshot, refuses_other_version_arch_magic)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	struct snap_header *h = (struct snap_header *)buf;
	h->version = 1;    /* before snapshot ids, CPUID and device state */
	reseal(buf, len);
	expect_refused(buf, len, "format version 1; this wisp-vmm reads version 2");
	h->version = SNAP_FORMAT_VERSION + 1;
	reseal(buf, len);
	expect_refused(buf, len, "format version 3");
	h->version = SNAP_FORMAT_VERSION;
	h->arch = 183; /* aarch64 */
	reseal(buf, len);
	expect_refused(buf, len, "architecture 183");
	h->arch = SNAP_ARCH_X86_64;
	memcpy(h->magic, "FIRECRAC", 8);
	expect_refused(buf, len, "bad magic");
	memcpy(h->magic, SNAP_MAGIC, 8);
	h->flags = 0x80;
	reseal(buf, len);
	expect_refused(buf, len, "unknown flags");
	h->flags = 0;
	h->mem_size = 12345;
	reseal(buf, len);
	expect_refused(buf, len, "whole number of pages");
	h->mem_size = 128ull << 20;
	/* ids: a Full has a snapshot id and no base, a Diff both */
	uint64_t id = h->snap_id;
	cr_assert_neq(id, 0);
	h->snap_id = 0;
	reseal(buf, len);
	expect_refused(buf, len, "do not fit a Full snapshot");
	h->snap_id = id;
	h->base_id = 7;
	reseal(buf, len);
	expect_refused(buf, len, "do not fit a Full snapshot");
	h->base_id = 0;
	h->flags = SNAP_F_DIFF;
	reseal(buf, len);
	expect_refused(buf, len, "do not fit a Diff snapshot");
	h->base_id = 7;
	reseal(buf, len);
	struct snap_image img;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_parse(buf, len, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(img.hdr.snap_id, id);
	cr_assert_eq(img.hdr.base_id, 7);
	snap_image_free(&img);
	free(buf);
}

Test(snapshot, refuses_bad_sections_even_with_valid_checksum)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	uint8_t *orig = malloc(len);
	memcpy(orig, buf, len);
	struct snap_section_hdr *s0 = (struct snap_section_hdr *)(buf + sizeof(struct snap_header));

	s0->len = 0x7ffffff0;
	reseal(buf, len);
	expect_refused(buf, len, "overruns");

	memcpy(buf, orig, len);
	s0->id = 99;
	reseal(buf, len);
	expect_refused(buf, len, "unknown component id 99");

	memcpy(buf, orig, len);
	((struct snap_header *)buf)->nr_sections = 3;
	reseal(buf, len);
	expect_refused(buf, len, "after its last section");

	memcpy(buf, orig, len);
	((struct snap_header *)buf)->nr_sections = 5;
	reseal(buf, len);
	expect_refused(buf, len, "truncated");

	/* two sections for the same vCPU */
	memcpy(buf, orig, len);
	size_t off = sizeof(struct snap_header) + sizeof(struct snap_section_hdr) +
		     ((strlen("{\"machine-config\":{\"vcpu_count\":2}}") + 7) & ~7u);
	off += sizeof(struct snap_section_hdr) + ((sizeof(struct demo_state) + 7) & ~7u);
	struct snap_section_hdr *s2 = (struct snap_section_hdr *)(buf + off);
	cr_assert_eq(s2->instance, 1);
	s2->instance = 0;
	reseal(buf, len);
	expect_refused(buf, len, "twice");

	/* trailing garbage: checked against the header's length */
	uint8_t *longer = calloc(1, len + 8);
	memcpy(longer, orig, len);
	expect_refused(longer, len + 8, "after its end");
	free(longer);
	free(orig);
	free(buf);
}

Test(snapshot, component_checks)
{
	size_t len;
	uint8_t *buf = build_image(&len);
	struct snap_image img;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_parse(buf, len, &img, &e), 0);
	struct demo_state s;
	cr_assert_eq(snap_get(&img, SNAP_SEC_VCPU, 4, 0, &s, sizeof(s), &e), -EPROTO);
	cr_assert(strstr(e.msg, "vcpu state of instance 0 has version 3") != NULL, "%s", e.msg);
	uint64_t small;
	cr_assert_eq(snap_get(&img, SNAP_SEC_VCPU, 3, 0, &small, sizeof(small), &e), -EINVAL);
	cr_assert(strstr(e.msg, "expected 8") != NULL, "%s", e.msg);
	cr_assert_eq(snap_get(&img, SNAP_SEC_I8042, 1, 0, &small, sizeof(small), &e), -ENOENT);
	cr_assert(strstr(e.msg, "no i8042 state") != NULL, "%s", e.msg);
	snap_image_free(&img);
	free(buf);
}

Test(snapshot, writer_refusals)
{
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	cr_assert_eq(snap_put(&w, 0, 1, 0, NULL, 0), -EINVAL);
	/* sticky: later puts and finish report the first failure */
	cr_assert_eq(snap_put(&w, SNAP_SEC_VM, 1, 0, "x", 1), -EINVAL);
	const uint8_t *b;
	size_t l;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_writer_finish(&w, &b, &l, &e), -EINVAL);
	cr_assert(strstr(e.msg, "unknown snapshot section id 0") != NULL, "%s", e.msg);
	snap_writer_free(&w);

	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	static uint8_t big[SNAP_SECTION_MAX + 1];
	cr_assert_eq(snap_put(&w, SNAP_SEC_VM, 1, 0, big, sizeof(big)), -EFBIG);
	snap_writer_free(&w);
}

#define PG 4096u

/* API request bodies */

static json_t *js(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	cr_assert_not_null(j, "bad test JSON: %s", je.text);
	return j;
}

static void create_refused(const char *body, const char *needle)
{
	json_t *j = js(body);
	struct snap_create_req r;
	struct wisp_err e = { 0 };
	cr_assert_lt(snap_parse_create(j, &r, &e), 0, "accepted %s", body);
	cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
	json_decref(j);
}

static void load_refused(const char *body, const char *needle)
{
	json_t *j = js(body);
	struct snap_load_req r;
	struct wisp_err e = { 0 };
	cr_assert_lt(snap_parse_load(j, &r, &e), 0, "accepted %s", body);
	cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
	json_decref(j);
}

Test(snapreq, create)
{
	json_t *j = js("{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"/s/state\","
		       "\"mem_file_path\":\"/s/mem\"}");
	struct snap_create_req r;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_parse_create(j, &r, &e), 0, "%s", e.msg);
	cr_assert_eq(r.type, SNAP_TYPE_DIFF);
	cr_assert_str_eq(r.snapshot_path, "/s/state");
	cr_assert_str_eq(r.mem_file_path, "/s/mem");
	snap_create_req_free(&r);
	json_decref(j);
	j = js("{\"snapshot_path\":\"a\",\"mem_file_path\":\"b\",\"version\":\"1.5.0\"}");
	cr_assert_eq(snap_parse_create(j, &r, &e), 0, "%s", e.msg);
	cr_assert_eq(r.type, SNAP_TYPE_FULL);
	snap_create_req_free(&r);
	json_decref(j);

	create_refused("{\"snapshot_type\":\"Half\",\"snapshot_path\":\"a\",\"mem_file_path\":\"b\"}",
		       "\"Full\" or \"Diff\"");
	create_refused("{\"snapshot_path\":\"a\"}", "mem_file_path: missing");
	create_refused("{\"snapshot_path\":\"a\",\"mem_file_path\":\"b\",\"x\":1}", "x: unknown field");
	create_refused("{\"snapshot_path\":\"\",\"mem_file_path\":\"b\"}", "snapshot_path: must be 1");
	create_refused("{\"snapshot_path\":5,\"mem_file_path\":\"b\"}", "must be a string");
	create_refused("{\"snapshot_path\":\"a\",\"mem_file_path\":\"a\"}", "same file");
	create_refused("[]", "must be a JSON object");
}

Test(snapreq, load_and_overrides)
{
	json_t *j = js("{\"snapshot_path\":\"/s/state\","
		       "\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"/s/mem\"},"
		       "\"track_dirty_pages\":true,\"resume_vm\":true,"
		       "\"network_overrides\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap7\"}],"
		       "\"vsock_override\":{\"uds_path\":\"/run/c7.sock\"},"
		       "\"drive_overrides\":[{\"drive_id\":\"rootfs\",\"path_on_host\":\"/c7/root.ext4\"}]}");
	struct snap_load_req r;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_parse_load(j, &r, &e), 0, "%s", e.msg);
	json_decref(j);
	cr_assert_str_eq(r.mem_path, "/s/mem");
	cr_assert(r.track_dirty_pages && r.resume_vm && !r.clock_realtime);
	cr_assert_eq(r.nr_nets, 1);
	cr_assert_eq(r.nr_drives, 1);

	struct vm_config cfg;
	vmcfg_init(&cfg);
	cfg.nr_nets = 1;
	snprintf(cfg.nets[0].iface_id, sizeof(cfg.nets[0].iface_id), "eth0");
	snprintf(cfg.nets[0].host_dev_name, sizeof(cfg.nets[0].host_dev_name), "tap0");
	cfg.nr_drives = 1;
	snprintf(cfg.drives[0].drive_id, sizeof(cfg.drives[0].drive_id), "rootfs");
	cfg.drives[0].path_on_host = strdup("/base/root.ext4");
	/* no vsock in this snapshot: the whole load is refused, nothing changed */
	cr_assert_lt(snap_apply_overrides(&cfg, &r, &e), 0);
	cr_assert(strstr(e.msg, "no vsock device") != NULL, "%s", e.msg);
	cr_assert_str_eq(cfg.nets[0].host_dev_name, "tap0");
	cr_assert_str_eq(cfg.drives[0].path_on_host, "/base/root.ext4");
	cfg.vsock.present = true;
	cfg.vsock.guest_cid = 3;
	cfg.vsock.uds_path = strdup("/run/base.sock");
	cr_assert_eq(snap_apply_overrides(&cfg, &r, &e), 0, "%s", e.msg);
	cr_assert_str_eq(cfg.nets[0].host_dev_name, "tap7");
	cr_assert_str_eq(cfg.drives[0].path_on_host, "/c7/root.ext4");
	cr_assert_str_eq(cfg.vsock.uds_path, "/run/c7.sock");
	cr_assert(cfg.machine.track_dirty_pages);
	snprintf(r.nets[0].iface_id, sizeof(r.nets[0].iface_id), "eth9");
	cr_assert_lt(snap_apply_overrides(&cfg, &r, &e), 0);
	cr_assert(strstr(e.msg, "no network interface eth9") != NULL, "%s", e.msg);
	vmcfg_free(&cfg);
	snap_load_req_free(&r);

	j = js("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"enable_diff_snapshots\":true}");
	cr_assert_eq(snap_parse_load(j, &r, &e), 0, "%s", e.msg);
	cr_assert(r.track_dirty_pages);
	cr_assert_str_eq(r.mem_path, "m");
	snap_load_req_free(&r);
	json_decref(j);

	load_refused("{\"snapshot_path\":\"s\"}", "exactly one of mem_backend and mem_file_path");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\","
		     "\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"m\"}}",
		     "exactly one");
	load_refused("{\"snapshot_path\":\"s\",\"mem_backend\":{\"backend_type\":\"Uffd\","
		     "\"backend_path\":\"/u\"}}", "only \"File\"");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"resume_vm\":1}",
		     "resume_vm: must be true or false");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"network_overrides\":"
		     "[{\"iface_id\":\"a\",\"host_dev_name\":\"b\"},{\"iface_id\":\"a\",\"host_dev_name\":\"c\"}]}",
		     "given twice");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"network_overrides\":"
		     "[{\"iface_id\":\"a\",\"host_dev_name\":\"averyveryverylongtap\"}]}",
		     "host_dev_name: must be 1 to 15");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"vsock_override\":{}}",
		     "uds_path: missing");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"drive_overrides\":"
		     "[{\"drive_id\":\"r/x\",\"path_on_host\":\"p\"}]}", "characters other than");
	load_refused("{\"snapshot_path\":\"s\",\"mem_file_path\":\"m\",\"bogus\":true}",
		     "bogus: unknown field");
}

Test(snapreq, vmm_writes_are_tracked_for_diffs)
{
	struct gmem m;
	memset(&m, 0, sizeof(m));
	uint8_t *ram = calloc(64, PG);
	cr_assert_eq(gmem_add_region(&m, 0, ram, 64 * PG), 0);
	cr_assert_not_null(gmem_ptr(&m, 0, 16));
	cr_assert_null(m.vmm_dirty[0], "nothing is tracked unless asked");
	struct wisp_err e = { 0 };
	cr_assert_eq(gmem_track_dirty(&m, &e), 0);
	cr_assert_not_null(gmem_ptr(&m, 3 * PG + 100, PG));        /* pages 3 and 4 */
	cr_assert_not_null(gmem_ptr(&m, 63 * PG, PG));             /* the last page */
	cr_assert_null(gmem_ptr(&m, 63 * PG, PG + 1));             /* refused: not marked */
	cr_assert_eq(m.vmm_dirty[0][0], (1ull << 3) | (1ull << 4) | (1ull << 63));
	free(m.vmm_dirty[0]);
	free(ram);
}
