/* vmm/config.c: Firecracker's configuration schema, accepted and refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/config.h"

static json_t *parse(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	cr_assert_not_null(j, "test JSON does not parse: %s: %s", text, je.text);
	return j;
}

/* Every case: a whole config document that must be refused, and a piece of
 * the message that must name the problem. */
struct refusal {
	const char *json;
	const char *msg;
};

static const struct refusal refusals[] = {
	{ "[]", "configuration: must be a JSON object" },
	{ "{\"boot_source\": {}}", "configuration.boot_source: unknown field" },
	{ "{\"balloon\": {}}", "configuration.balloon: unknown field" },
	/* boot-source */
	{ "{\"boot-source\": 5}", "boot-source: must be a JSON object" },
	{ "{\"boot-source\": {}}", "boot-source.kernel_image_path: missing required field" },
	{ "{\"boot-source\": {\"kernel_image_path\": 1}}",
	  "boot-source.kernel_image_path: must be a string" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"\"}}",
	  "boot-source.kernel_image_path: must not be empty" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"a\\u0000b\"}}",
	  "boot-source.kernel_image_path: must not contain NUL" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\", \"boot_args\": 3}}",
	  "boot-source.boot_args: must be a string" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\", \"initrd\": \"/i\"}}",
	  "boot-source.initrd: unknown field" },
	/* machine-config */
	{ "{\"machine-config\": {\"vcpu_count\": 0, \"mem_size_mib\": 128}}",
	  "machine-config.vcpu_count: must be between 1 and 32" },
	{ "{\"machine-config\": {\"vcpu_count\": 33, \"mem_size_mib\": 128}}",
	  "machine-config.vcpu_count: must be between 1 and 32" },
	{ "{\"machine-config\": {\"vcpu_count\": -1, \"mem_size_mib\": 128}}",
	  "machine-config.vcpu_count: must be between 1 and 32" },
	{ "{\"machine-config\": {\"vcpu_count\": 1.5, \"mem_size_mib\": 128}}",
	  "machine-config.vcpu_count: must be an integer" },
	{ "{\"machine-config\": {\"vcpu_count\": \"2\", \"mem_size_mib\": 128}}",
	  "machine-config.vcpu_count: must be an integer" },
	{ "{\"machine-config\": {\"mem_size_mib\": 128}}",
	  "machine-config.vcpu_count: missing required field" },
	{ "{\"machine-config\": {\"vcpu_count\": 1}}",
	  "machine-config.mem_size_mib: missing required field" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 0}}",
	  "machine-config.mem_size_mib: must be between" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 99999999999}}",
	  "machine-config.mem_size_mib: must be between" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"smt\": 1}}",
	  "machine-config.smt: must be true or false" },
	{ "{\"machine-config\": {\"vcpu_count\": 3, \"mem_size_mib\": 128, \"smt\": true}}",
	  "machine-config.vcpu_count: must be 1 or an even number when smt is true" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"track_dirty_pages\": \"yes\"}}",
	  "machine-config.track_dirty_pages: must be true or false" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"C3\"}}",
	  "machine-config.cpu_template: only \"None\" is supported" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"ht_enabled\": false}}",
	  "machine-config.ht_enabled: unknown field" },
	/* drives */
	{ "{\"drives\": {}}", "drives: must be an array" },
	{ "{\"drives\": [5]}", "drives[0]: must be a JSON object" },
	{ "{\"drives\": [{\"path_on_host\": \"/d\", \"is_root_device\": true}]}",
	  "drives[0].drive_id: missing required field" },
	{ "{\"drives\": [{\"drive_id\": \"a-b\", \"path_on_host\": \"/d\", \"is_root_device\": true}]}",
	  "drives[0].drive_id: only letters, digits and '_' are allowed" },
	{ "{\"drives\": [{\"drive_id\": \"rootfs\", \"is_root_device\": true}]}",
	  "drives[0].path_on_host: missing required field" },
	{ "{\"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/d\"}]}",
	  "drives[0].is_root_device: missing required field" },
	{ "{\"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/d\", \"is_root_device\": true, \"is_read_only\": \"no\"}]}",
	  "drives[0].is_read_only: must be true or false" },
	{ "{\"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/d\", \"is_root_device\": true, \"cache_type\": \"Fast\"}]}",
	  "drives[0].cache_type: must be \"Unsafe\" or \"Writeback\"" },
	{ "{\"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/d\", \"is_root_device\": true, \"io_engine\": \"Async\"}]}",
	  "drives[0].io_engine: only \"Sync\" is supported" },
	{ "{\"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/d\", \"is_root_device\": true, \"bogus\": 1}]}",
	  "drives[0].bogus: unknown field" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": true},"
	  "{\"drive_id\": \"b\", \"path_on_host\": \"/e\", \"is_root_device\": true}]}",
	  "drives: \"b\" is a second root device" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": false},"
	  "{\"drive_id\": \"a\", \"path_on_host\": \"/e\", \"is_root_device\": false}]}",
	  "drives: drive_id \"a\" is used twice" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": false, "
	  "\"rate_limiter\": {\"bandwidth\": {\"size\": -1, \"refill_time\": 100}}}]}",
	  "drives[0].rate_limiter.bandwidth.size: must be at least 0" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": false, "
	  "\"rate_limiter\": {\"ops\": {\"size\": 5}}}]}",
	  "drives[0].rate_limiter.ops.refill_time: missing required field" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": false, "
	  "\"rate_limiter\": {\"iops\": {}}}]}",
	  "drives[0].rate_limiter.iops: unknown field" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": false, "
	  "\"rate_limiter\": {\"ops\": {\"size\": 5, \"refill_time\": 1, \"burst\": 1}}}]}",
	  "drives[0].rate_limiter.ops.burst: unknown field" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/d\", \"is_root_device\": false, "
	  "\"rate_limiter\": []}]}",
	  "drives[0].rate_limiter: must be a JSON object" },
	/* network-interfaces */
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\"}]}",
	  "network-interfaces[0].host_dev_name: missing required field" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"averyveryverylongtapname\"}]}",
	  "network-interfaces[0].host_dev_name: longer than 15 bytes" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"a/b\"}]}",
	  "network-interfaces[0].host_dev_name: not a valid interface name" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"zz:00:00:00:00:01\"}]}",
	  "network-interfaces[0].guest_mac: must be a unicast MAC" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"01:00:00:00:00:01\"}]}",
	  "network-interfaces[0].guest_mac: must be a unicast MAC" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:00:00:00:1\"}]}",
	  "network-interfaces[0].guest_mac: must be a unicast MAC" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"rx_rate_limiter\": 7}]}",
	  "network-interfaces[0].rx_rate_limiter: must be a JSON object" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"},"
	  "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}]}",
	  "network-interfaces: host_dev_name \"tap0\" is used twice" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"},"
	  "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap1\"}]}",
	  "network-interfaces: iface_id \"eth0\" is used twice" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:00:00:00:01\"},"
	  "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\", \"guest_mac\": \"06:00:00:00:00:01\"}]}",
	  "network-interfaces: guest_mac of \"eth1\" is used twice" },
	/* vsock */
	{ "{\"vsock\": {\"guest_cid\": 2, \"uds_path\": \"/v\"}}",
	  "vsock.guest_cid: must be between 3 and 4294967294" },
	{ "{\"vsock\": {\"guest_cid\": 4294967295, \"uds_path\": \"/v\"}}",
	  "vsock.guest_cid: must be between 3 and 4294967294" },
	{ "{\"vsock\": {\"guest_cid\": 3}}", "vsock.uds_path: missing required field" },
	{ "{\"vsock\": {\"guest_cid\": 3, \"uds_path\": \"/v\", \"port\": 1}}",
	  "vsock.port: unknown field" },
	/* logger and metrics */
	{ "{\"logger\": {\"log_path\": \"/l\", \"level\": \"Loud\"}}",
	  "logger.level: must be one of" },
	{ "{\"logger\": {\"log_path\": \"/l\", \"show_level\": 1}}",
	  "logger.show_level: must be true or false" },
	{ "{\"logger\": {\"log_path\": 5}}", "logger.log_path: must be a string" },
	{ "{\"metrics\": {}}", "metrics.metrics_path: missing required field" },
	{ "{\"metrics\": {\"metrics_path\": \"/m\", \"format\": \"json\"}}",
	  "metrics.format: unknown field" },
};

Test(config, refusals_name_the_key)
{
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		json_t *j = parse(refusals[i].json);
		struct vm_config cfg;
		struct wisp_err e = { 0 };
		vmcfg_init(&cfg);
		int r = vmcfg_from_json(j, &cfg, &e);
		cr_expect_lt(r, 0, "accepted: %s", refusals[i].json);
		cr_expect(strstr(e.msg, refusals[i].msg) != NULL,
			  "for %s\n  expected message containing: %s\n  got: %s", refusals[i].json,
			  refusals[i].msg, e.msg);
		/* A refused document leaves the configuration at its defaults. */
		cr_expect_eq(cfg.machine.vcpu_count, 1);
		cr_expect_eq(cfg.nr_drives, 0);
		cr_expect(!cfg.boot.present);
		vmcfg_free(&cfg);
		json_decref(j);
	}
}

static const char *full_config =
	"{\"boot-source\": {\"kernel_image_path\": \"/k/vmlinux\", \"boot_args\": \"console=ttyS0\","
	" \"initrd_path\": \"/k/initrd\"},"
	" \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256, \"smt\": true,"
	" \"track_dirty_pages\": true, \"cpu_template\": \"None\"},"
	" \"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img/root.ext4\","
	" \"is_root_device\": true, \"is_read_only\": false, \"partuuid\": \"abcd-01\","
	" \"cache_type\": \"Writeback\", \"io_engine\": \"Sync\","
	" \"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"one_time_burst\": 10,"
	" \"refill_time\": 100}, \"ops\": {\"size\": 1000, \"refill_time\": 1000}}},"
	" {\"drive_id\": \"data_1\", \"path_on_host\": \"/img/data\", \"is_root_device\": false,"
	" \"is_read_only\": true}],"
	" \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\","
	" \"guest_mac\": \"06:00:AC:10:00:02\", \"tx_rate_limiter\": {\"ops\": {\"size\": 5,"
	" \"refill_time\": 10}}}],"
	" \"vsock\": {\"vsock_id\": \"vsock0\", \"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\"},"
	" \"logger\": {\"log_path\": \"/tmp/log\", \"level\": \"debug\", \"show_level\": true},"
	" \"metrics\": {\"metrics_path\": \"/tmp/metrics\"}}";

Test(config, full_document_accepted)
{
	json_t *j = parse(full_config);
	struct vm_config cfg;
	struct wisp_err e = { 0 };
	vmcfg_init(&cfg);
	cr_assert_eq(vmcfg_from_json(j, &cfg, &e), 0, "%s", e.msg);
	json_decref(j);

	cr_assert_str_eq(cfg.boot.kernel_image_path, "/k/vmlinux");
	cr_assert_str_eq(cfg.boot.boot_args, "console=ttyS0");
	cr_assert_str_eq(cfg.boot.initrd_path, "/k/initrd");
	cr_assert_eq(cfg.machine.vcpu_count, 2);
	cr_assert_eq(cfg.machine.mem_size_mib, 256);
	cr_assert(cfg.machine.smt && cfg.machine.track_dirty_pages);
	cr_assert_eq(cfg.nr_drives, 2);
	cr_assert_str_eq(cfg.drives[0].drive_id, "rootfs");
	cr_assert(cfg.drives[0].is_root_device && !cfg.drives[0].is_read_only);
	cr_assert(cfg.drives[0].cache_writeback);
	cr_assert_str_eq(cfg.drives[0].partuuid, "abcd-01");
	cr_assert(cfg.drives[0].rate_limiter.present);
	cr_assert_eq(cfg.drives[0].rate_limiter.bandwidth.size, 1048576);
	cr_assert_eq(cfg.drives[0].rate_limiter.bandwidth.one_time_burst, 10);
	cr_assert_eq(cfg.drives[0].rate_limiter.ops.refill_time, 1000);
	cr_assert(cfg.drives[1].is_read_only && !cfg.drives[1].rate_limiter.present);
	cr_assert_eq(cfg.nr_nets, 1);
	cr_assert_str_eq(cfg.nets[0].host_dev_name, "tap0");
	cr_assert(cfg.nets[0].has_guest_mac);
	cr_assert_eq(cfg.nets[0].guest_mac[2], 0xac);
	cr_assert(!cfg.nets[0].rx_rate_limiter.present && cfg.nets[0].tx_rate_limiter.present);
	cr_assert_eq(cfg.vsock.guest_cid, 3);
	cr_assert_str_eq(cfg.vsock.uds_path, "/tmp/v.sock");
	cr_assert_str_eq(cfg.logger.level, "Debug");
	cr_assert(cfg.logger.show_level && !cfg.logger.show_log_origin);
	cr_assert_str_eq(cfg.metrics.metrics_path, "/tmp/metrics");
	vmcfg_free(&cfg);
}

Test(config, to_json_round_trips)
{
	json_t *j = parse(full_config);
	struct vm_config a, b;
	struct wisp_err e = { 0 };
	vmcfg_init(&a);
	vmcfg_init(&b);
	cr_assert_eq(vmcfg_from_json(j, &a, &e), 0, "%s", e.msg);
	json_decref(j);

	json_t *out = vmcfg_to_json(&a);
	cr_assert_not_null(out);
	/* Firecracker's field names come back. */
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(out, "boot-source"),
							   "kernel_image_path")), "/k/vmlinux");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(out, "machine-config"),
							"vcpu_count")), 2);
	json_t *d0 = json_array_get(json_object_get(out, "drives"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(d0, "cache_type")), "Writeback");
	json_t *n0 = json_array_get(json_object_get(out, "network-interfaces"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(n0, "guest_mac")), "06:00:ac:10:00:02");

	/* ... and parse back into an equal configuration. */
	cr_assert_eq(vmcfg_from_json(out, &b, &e), 0, "%s", e.msg);
	json_t *again = vmcfg_to_json(&b);
	cr_assert(json_equal(out, again), "round trip differs");
	json_decref(out);
	json_decref(again);
	vmcfg_free(&a);
	vmcfg_free(&b);
}

Test(config, defaults_and_empty_document)
{
	json_t *j = parse("{}");
	struct vm_config cfg;
	struct wisp_err e = { 0 };
	vmcfg_init(&cfg);
	cr_assert_eq(vmcfg_from_json(j, &cfg, &e), 0);
	cr_assert_eq(cfg.machine.vcpu_count, 1);
	cr_assert_eq(cfg.machine.mem_size_mib, 128);
	/* No kernel: validation refuses to boot it. */
	cr_assert_lt(vmcfg_validate(&cfg, &e), 0);
	cr_assert(strstr(e.msg, "kernel_image_path") != NULL, "%s", e.msg);
	json_t *out = vmcfg_to_json(&cfg);
	cr_assert_null(json_object_get(out, "boot-source"));
	cr_assert_eq(json_array_size(json_object_get(out, "drives")), 0);
	json_decref(out);
	json_decref(j);
	vmcfg_free(&cfg);
}

Test(config, machine_patch_keeps_other_fields)
{
	struct vmcfg_machine m = { .vcpu_count = 2, .mem_size_mib = 512 };
	struct wisp_err e = { 0 };
	json_t *j = parse("{\"mem_size_mib\": 64}");
	cr_assert_eq(vmcfg_parse_machine(j, &m, true, &e), 0, "%s", e.msg);
	cr_assert_eq(m.vcpu_count, 2);
	cr_assert_eq(m.mem_size_mib, 64);
	json_decref(j);

	/* A PUT needs both counts; a refused PATCH changes nothing. */
	j = parse("{\"mem_size_mib\": 64}");
	cr_assert_lt(vmcfg_parse_machine(j, &m, false, &e), 0);
	json_decref(j);
	j = parse("{\"vcpu_count\": 4, \"mem_size_mib\": 1}");
	cr_assert_lt(vmcfg_parse_machine(j, &m, true, &e), 0);
	cr_assert_eq(m.vcpu_count, 2);
	cr_assert_eq(m.mem_size_mib, 64);
	json_decref(j);
}

Test(config, drive_and_net_patch)
{
	struct wisp_err e = { 0 };
	char *path = NULL;
	struct vmcfg_rate_limiter rl, rx, tx;
	bool has_rl, has_rx, has_tx;

	json_t *j = parse("{\"drive_id\": \"rootfs\", \"path_on_host\": \"/new\"}");
	cr_assert_eq(vmcfg_parse_drive_patch(j, "rootfs", &path, &rl, &has_rl, &e), 0, "%s", e.msg);
	cr_assert_str_eq(path, "/new");
	cr_assert(!has_rl);
	free(path);
	cr_assert_lt(vmcfg_parse_drive_patch(j, "other", &path, &rl, &has_rl, &e), 0);
	cr_assert(strstr(e.msg, "does not match the path's id") != NULL, "%s", e.msg);
	json_decref(j);

	j = parse("{\"drive_id\": \"rootfs\", \"is_read_only\": true}");
	cr_assert_lt(vmcfg_parse_drive_patch(j, "rootfs", &path, &rl, &has_rl, &e), 0);
	cr_assert(strstr(e.msg, "drives.is_read_only: unknown field") != NULL, "%s", e.msg);
	json_decref(j);

	j = parse("{\"iface_id\": \"eth0\", \"rx_rate_limiter\": {\"bandwidth\": {\"size\": 100,"
		  " \"refill_time\": 10}}}");
	cr_assert_eq(vmcfg_parse_net_patch(j, "eth0", &rx, &has_rx, &tx, &has_tx, &e), 0, "%s",
		     e.msg);
	cr_assert(has_rx && !has_tx);
	cr_assert_eq(rx.bandwidth.size, 100);
	json_decref(j);

	j = parse("{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap1\"}");
	cr_assert_lt(vmcfg_parse_net_patch(j, "eth0", &rx, &has_rx, &tx, &has_tx, &e), 0);
	cr_assert(strstr(e.msg, "network-interfaces.host_dev_name: unknown field") != NULL, "%s",
		  e.msg);
	json_decref(j);
}

Test(config, section_parsers_name_their_section)
{
	struct wisp_err e = { 0 };
	struct vmcfg_drive d;
	struct vmcfg_vsock v;
	struct vmcfg_logger l;
	json_t *j = parse("{\"drive_id\": \"x\", \"path_on_host\": 3, \"is_root_device\": true}");
	cr_assert_lt(vmcfg_parse_drive(j, &d, &e), 0);
	cr_assert_str_eq(e.msg, "drives.path_on_host: must be a string");
	cr_assert_null(d.path_on_host);
	json_decref(j);

	j = parse("{\"guest_cid\": 3, \"uds_path\": \"/tmp/"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}");
	cr_assert_lt(vmcfg_parse_vsock(j, &v, &e), 0);
	cr_assert(strstr(e.msg, "vsock.uds_path: longer than") != NULL, "%s", e.msg);
	json_decref(j);

	j = parse("{\"level\": \"warn\"}");
	cr_assert_eq(vmcfg_parse_logger(j, &l, &e), 0, "%s", e.msg);
	cr_assert_str_eq(l.level, "Warning");
	cr_assert_null(l.log_path);
	json_decref(j);
}

Test(config, load_file_validates_paths)
{
	char dir[] = "/tmp/wisp-cfg-XXXXXX";
	char kernel[256], cfgpath[256], text[1024];
	struct vm_config cfg;
	struct wisp_err e = { 0 };
	cr_assert_not_null(mkdtemp(dir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
	snprintf(cfgpath, sizeof(cfgpath), "%s/vm.json", dir);
	vmcfg_init(&cfg);

	/* The kernel does not exist yet: refused, naming the key and path. */
	snprintf(text, sizeof(text),
		 "{\"boot-source\": {\"kernel_image_path\": \"%s\"},"
		 " \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64}}", kernel);
	FILE *f = fopen(cfgpath, "w");
	fputs(text, f);
	fclose(f);
	cr_assert_lt(vmcfg_load_file(cfgpath, &cfg, &e), 0);
	cr_assert(strstr(e.msg, "boot-source.kernel_image_path: cannot read") != NULL, "%s", e.msg);
	cr_assert(!cfg.boot.present);

	f = fopen(kernel, "w");
	fputs("x", f);
	fclose(f);
	cr_assert_eq(vmcfg_load_file(cfgpath, &cfg, &e), 0, "%s", e.msg);
	cr_assert_eq(cfg.machine.mem_size_mib, 64);

	/* Duplicate keys and syntax errors are refused with a position. */
	f = fopen(cfgpath, "w");
	fputs("{\"machine-config\": {\"vcpu_count\": 1, \"vcpu_count\": 2, \"mem_size_mib\": 64}}", f);
	fclose(f);
	cr_assert_lt(vmcfg_load_file(cfgpath, &cfg, &e), 0);
	cr_assert(strstr(e.msg, "duplicate") != NULL, "%s", e.msg);
	f = fopen(cfgpath, "w");
	fputs("{\"machine-config\": ", f);
	fclose(f);
	cr_assert_lt(vmcfg_load_file(cfgpath, &cfg, &e), 0);
	cr_assert(strstr(e.msg, "line 1") != NULL, "%s", e.msg);
	cr_assert_lt(vmcfg_load_file("/nonexistent/wisp.json", &cfg, &e), 0);
	/* The last good configuration survived every refusal. */
	cr_assert_eq(cfg.machine.mem_size_mib, 64);
	cr_assert_str_eq(cfg.boot.kernel_image_path, kernel);

	vmcfg_free(&cfg);
	unlink(cfgpath);
	unlink(kernel);
	rmdir(dir);
}
