/* The snapshot routes of the API: parsing, the state table (create only
 * while Paused, load only in a fresh VMM before any configuration), and
 * what the controller asks the VM to do. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vmm/api.h"

struct fake {
	int creates, loads, resumes, pauses, starts;
	enum snap_type last_type;
	char last_state[128];
	bool last_resume;
	int fail_load;
};

static int f_start(void *c, struct wisp_err *e) { (void)e; ((struct fake *)c)->starts++; return 0; }
static int f_pause(void *c, struct wisp_err *e) { (void)e; ((struct fake *)c)->pauses++; return 0; }
static int f_resume(void *c, struct wisp_err *e) { (void)e; ((struct fake *)c)->resumes++; return 0; }

static int f_create(void *c, const struct snap_create_req *r, struct wisp_err *e)
{
	(void)e;
	struct fake *f = c;
	f->creates++;
	f->last_type = r->type;
	snprintf(f->last_state, sizeof(f->last_state), "%s", r->snapshot_path);
	return 0;
}

static int f_load(void *c, const struct snap_load_req *r, struct wisp_err *e)
{
	struct fake *f = c;
	if (f->fail_load)
		return wisp_err_set(e, EINVAL, "state file checksum mismatch");
	f->loads++;
	f->last_resume = r->resume_vm;
	snprintf(f->last_state, sizeof(f->last_state), "%s", r->snapshot_path);
	return 0;
}

static const struct api_vmm_ops ops = {
	.start = f_start, .pause = f_pause, .resume = f_resume,
	.snapshot_create = f_create, .snapshot_load = f_load,
};

static struct vm_config cfg;
static struct api_ctl ctl;
static struct fake fk;

static void setup(void)
{
	memset(&fk, 0, sizeof(fk));
	vmcfg_init(&cfg);
	api_ctl_init(&ctl, &cfg, "snap-1", &ops, &fk);
}

static void teardown(void)
{
	vmcfg_free(&cfg);
}

TestSuite(snapapi, .init = setup, .fini = teardown);

static int req(const char *method, const char *path, const char *body, char *fault, size_t n)
{
	struct api_action a;
	struct api_reply reply = { 0 };
	struct wisp_err err = { 0 };
	if (fault)
		fault[0] = '\0';
	if (api_parse(api_method_parse(method), path, body, strlen(body), &a, &err) < 0) {
		if (fault)
			snprintf(fault, n, "%s", err.msg);
		return 400;
	}
	api_ctl_execute(&ctl, &a, &reply);
	api_action_free(&a);
	const char *fm = json_string_value(json_object_get(reply.body, "fault_message"));
	if (fault && fm)
		snprintf(fault, n, "%s", fm);
	int st = reply.status;
	api_reply_free(&reply);
	return st;
}

#define LOAD "{\"snapshot_path\":\"/s/state\",\"mem_backend\":{\"backend_type\":\"File\"," \
	     "\"backend_path\":\"/s/mem\"}"
#define CREATE "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"/s/state\",\"mem_file_path\":\"/s/mem\"}"

Test(snapapi, load_in_a_fresh_vmm_then_resume)
{
	char f[512];
	cr_assert_eq(req("PUT", "/snapshot/load", LOAD ",\"resume_vm\":true}", f, sizeof(f)), 204, "%s", f);
	cr_assert_eq(fk.loads, 1);
	cr_assert(fk.last_resume);
	cr_assert_eq(fk.resumes, 1);
	cr_assert_eq(ctl.state, VM_RUNNING);
	/* a second load is refused: the VM exists */
	cr_assert_eq(req("PUT", "/snapshot/load", LOAD "}", f, sizeof(f)), 400);
	cr_assert(strstr(f, "not allowed") != NULL, "%s", f);
	cr_assert_eq(fk.loads, 1);
}

Test(snapapi, load_without_resume_stays_paused_and_can_snapshot)
{
	char f[512];
	cr_assert_eq(req("PUT", "/snapshot/load", LOAD "}", f, sizeof(f)), 204, "%s", f);
	cr_assert_eq(ctl.state, VM_PAUSED);
	cr_assert_eq(fk.resumes, 0);
	cr_assert_eq(req("PUT", "/snapshot/create",
			 "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"/s/d\",\"mem_file_path\":\"/s/dm\"}",
			 f, sizeof(f)), 204, "%s", f);
	cr_assert_eq(fk.last_type, SNAP_TYPE_DIFF);
	cr_assert_eq(req("PATCH", "/vm", "{\"state\":\"Resumed\"}", f, sizeof(f)), 204, "%s", f);
	cr_assert_eq(req("PUT", "/snapshot/create", CREATE, f, sizeof(f)), 400);
	cr_assert(strstr(f, "not allowed while the VM is Running") != NULL, "%s", f);
	cr_assert_eq(fk.creates, 1);
}

Test(snapapi, load_refused_after_configuration)
{
	char f[512];
	cr_assert_eq(req("PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":128}", f,
			 sizeof(f)), 204, "%s", f);
	cr_assert_eq(req("PUT", "/snapshot/load", LOAD "}", f, sizeof(f)), 400);
	cr_assert(strstr(f, "fresh VMM") != NULL, "%s", f);
	cr_assert_eq(fk.loads, 0);
}

Test(snapapi, failed_load_leaves_a_fresh_vmm)
{
	char f[512];
	fk.fail_load = 1;
	cr_assert_eq(req("PUT", "/snapshot/load", LOAD "}", f, sizeof(f)), 400);
	cr_assert(strstr(f, "checksum mismatch") != NULL, "%s", f);
	cr_assert_eq(ctl.state, VM_NOT_STARTED);
	fk.fail_load = 0;
	cr_assert_eq(req("PUT", "/snapshot/load", LOAD "}", f, sizeof(f)), 204, "%s", f);
}

Test(snapapi, create_before_start_and_bad_bodies)
{
	char f[512];
	cr_assert_eq(req("PUT", "/snapshot/create", CREATE, f, sizeof(f)), 400);
	cr_assert(strstr(f, "before the VM is started") != NULL, "%s", f);
	cr_assert_eq(req("PUT", "/snapshot/create", "{\"snapshot_path\":\"a\"}", f, sizeof(f)), 400);
	cr_assert(strstr(f, "mem_file_path") != NULL, "%s", f);
	cr_assert_eq(req("PUT", "/snapshot/load", "{\"snapshot_path\":\"a\",\"mem_file_path\":\"b\",\"x\":1}",
			 f, sizeof(f)), 400);
	cr_assert(strstr(f, "x: unknown field") != NULL, "%s", f);
	cr_assert_eq(fk.creates + fk.loads, 0);
}
