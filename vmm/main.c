/* wisp-vmm: one microVM per process. Read top to bottom: parse flags, load
 * the configuration, build the VM, start it, run the event loop until the
 * guest or a signal ends it, exit with the code that says why. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "vmm/api_vm.h"
#include "vmm/config.h"
#include "vmm/evloop.h"
#include "vmm/seccomp.h"
#include "vmm/vm.h"

#define WISP_VMM_VERSION_STRING "wisp-vmm 0.1.0"

struct opts {
	const char *config_file;
	const char *api_sock;
	const char *id;
	const char *log_path;
	const char *level;
	const char *metrics_path;
	bool no_api, boot_timer, no_seccomp;
	const char *restore_from, *mem_file, *load_snapshot;   /* snapshots (docs/snapshot.md) */
	bool resume, clock_realtime;
	int seccomp_selftest;   /* hidden test flag: a thread kind, or none */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: wisp-vmm [options]\n"
		"  --config-file PATH   boot from a Firecracker-format JSON configuration\n"
		"  --no-api             do not serve the API (needs --config-file)\n"
		"  --api-sock PATH      the API's Unix socket\n"
		"  --id ID              the microVM's id in log lines (1-64 of [A-Za-z0-9-])\n"
		"  --log-path PATH      append log lines to PATH instead of stderr\n"
		"  --level LEVEL        Error, Warning, Info, Debug, Trace or Off\n"
		"  --metrics-path PATH  write metrics as JSON lines to PATH\n"
		"  --boot-timer         log the guest's boot time when it writes the boot timer\n"
		"  --no-seccomp         do not install seccomp filters (debugging; logged)\n"
		"  --seccomp-selftest vmm|api|vcpu\n"
		"                       testing: that thread calls execve once its filter is\n"
		"                       loaded; the filter exits the VMM with 148 naming execve;\n"
		"                       with --no-seccomp the call goes through: the VMM says\n"
		"                       it \"was not stopped\" and exits 1\n"
		"  --restore-from STATE --mem-file MEM\n"
		"                       restore a snapshot instead of booting (PUT /snapshot/load)\n"
		"  --load-snapshot FILE restore with a PUT /snapshot/load JSON body (overrides)\n"
		"  --resume             resume the restored VM at once (implied by --no-api)\n"
		"  --clock-realtime     step the restored guest's clock to the host's time\n"
		"  --help, --version\n"
		"signals: SIGTERM, SIGINT, SIGHUP stop the VM and exit; SIGUSR1 logs each\n"
		"  virtio device's queue and interrupt state (Info level) and goes on\n");
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
	}
	return true;
}

/* Returns -1 to go on, or the exit code. */
static int parse_flags(int argc, char **argv, struct opts *o)
{
	enum { O_CONFIG = 256, O_NO_API, O_API_SOCK, O_ID, O_LOG_PATH, O_LEVEL, O_METRICS,
	       O_BOOT_TIMER, O_NO_SECCOMP, O_HELP, O_VERSION, O_SECCOMP_SELFTEST,
	       O_RESTORE_FROM, O_MEM_FILE, O_LOAD_SNAPSHOT, O_RESUME, O_CLOCK_REALTIME };
	static const struct option longopts[] = {
		{ "config-file", required_argument, NULL, O_CONFIG },
		{ "no-api", no_argument, NULL, O_NO_API },
		{ "api-sock", required_argument, NULL, O_API_SOCK },
		{ "id", required_argument, NULL, O_ID },
		{ "log-path", required_argument, NULL, O_LOG_PATH },
		{ "level", required_argument, NULL, O_LEVEL },
		{ "metrics-path", required_argument, NULL, O_METRICS },
		{ "boot-timer", no_argument, NULL, O_BOOT_TIMER },
		{ "no-seccomp", no_argument, NULL, O_NO_SECCOMP },
		{ "help", no_argument, NULL, O_HELP },
		{ "version", no_argument, NULL, O_VERSION },
		{ "seccomp-selftest", required_argument, NULL, O_SECCOMP_SELFTEST },
		{ "restore-from", required_argument, NULL, O_RESTORE_FROM },
		{ "mem-file", required_argument, NULL, O_MEM_FILE },
		{ "load-snapshot", required_argument, NULL, O_LOAD_SNAPSHOT },
		{ "resume", no_argument, NULL, O_RESUME },
		{ "clock-realtime", no_argument, NULL, O_CLOCK_REALTIME },
		{ 0 },
	};
	int c;
	opterr = 0;
	while ((c = getopt_long_only(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_CONFIG: o->config_file = optarg; break;
		case O_NO_API: o->no_api = true; break;
		case O_API_SOCK: o->api_sock = optarg; break;
		case O_ID: o->id = optarg; break;
		case O_LOG_PATH: o->log_path = optarg; break;
		case O_LEVEL: o->level = optarg; break;
		case O_METRICS: o->metrics_path = optarg; break;
		case O_BOOT_TIMER: o->boot_timer = true; break;
		case O_NO_SECCOMP: o->no_seccomp = true; break;
		case O_RESTORE_FROM: o->restore_from = optarg; break;
		case O_MEM_FILE: o->mem_file = optarg; break;
		case O_LOAD_SNAPSHOT: o->load_snapshot = optarg; break;
		case O_RESUME: o->resume = true; break;
		case O_CLOCK_REALTIME: o->clock_realtime = true; break;
		case O_SECCOMP_SELFTEST: {
			enum seccomp_thread_kind k;
			if (seccomp_kind_parse(optarg, &k) < 0) {
				fprintf(stderr, "wisp-vmm: --seccomp-selftest: vmm, api or vcpu\n");
				return WISP_EXIT_BAD_ARGS;
			}
			o->seccomp_selftest = (int)k;
			break;
		}
		case O_HELP: usage(stdout); return WISP_EXIT_OK;
		case O_VERSION: printf("%s\n", WISP_VMM_VERSION_STRING); return WISP_EXIT_OK;
		default:
			fprintf(stderr, "wisp-vmm: unknown flag or missing value: %s\n",
				argv[optind - 1]);
			usage(stderr);
			return WISP_EXIT_BAD_ARGS;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "wisp-vmm: unexpected argument: %s\n", argv[optind]);
		return WISP_EXIT_BAD_ARGS;
	}
	bool restore = o->restore_from || o->load_snapshot;
	if (!o->restore_from != !o->mem_file) {
		fprintf(stderr, "wisp-vmm: --restore-from and --mem-file go together\n");
		return WISP_EXIT_BAD_ARGS;
	}
	if ((o->restore_from && o->load_snapshot) || (restore && o->config_file)) {
		fprintf(stderr, "wisp-vmm: use one of --config-file, --restore-from, --load-snapshot\n");
		return WISP_EXIT_BAD_ARGS;
	}
	if ((o->resume || o->clock_realtime) && !restore) {
		fprintf(stderr, "wisp-vmm: --resume and --clock-realtime need a snapshot to restore\n");
		return WISP_EXIT_BAD_ARGS;
	}
	if (o->no_api && !o->config_file && !restore) {
		fprintf(stderr, "wisp-vmm: --no-api needs --config-file or a snapshot to restore\n");
		return WISP_EXIT_BAD_ARGS;
	}
	if (o->seccomp_selftest == SECCOMP_API && o->no_api) {
		fprintf(stderr, "wisp-vmm: --seccomp-selftest api needs the API thread (not --no-api)\n");
		return WISP_EXIT_BAD_ARGS;
	}
	if (o->id && !id_valid(o->id)) {
		fprintf(stderr, "wisp-vmm: --id must be 1-64 characters of [A-Za-z0-9-]\n");
		return WISP_EXIT_BAD_ARGS;
	}
	enum wisp_log_level lvl;
	if (o->level && wisp_log_level_parse(o->level, &lvl) < 0) {
		fprintf(stderr, "wisp-vmm: --level: unknown level '%s'\n", o->level);
		return WISP_EXIT_BAD_ARGS;
	}
	return -1;
}

static int setup_logging(const struct opts *o)
{
	if (o->id)
		wisp_log_set_id(o->id);
	if (o->level) {
		enum wisp_log_level lvl;
		wisp_log_level_parse(o->level, &lvl);
		wisp_log_set_level(lvl);
	}
	if (o->log_path) {
		int r = wisp_log_open(o->log_path);
		if (r < 0) {
			fprintf(stderr, "wisp-vmm: --log-path %s: %s\n", o->log_path, strerror(-r));
			return WISP_EXIT_BAD_ARGS;
		}
	}
	wisp_log_set_thread("fc_vmm");
	return -1;
}

/* SIGTERM/SIGINT/SIGHUP end the VMM cleanly through the event loop;
 * SIGUSR1 logs the devices' state and goes on. */
struct signal_ctx {
	struct vm *vm;
	int fd;
};

static void on_signal(void *opaque, uint32_t events)
{
	struct signal_ctx *c = opaque;
	struct signalfd_siginfo si;
	(void)events;
	if (read(c->fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return;
	unsigned int signo = si.ssi_signo;
	if (signo == SIGUSR1) {
		vm_log_state(c->vm);
		return;
	}
	wlog_info("stopping on signal %u", signo);
	vm_request_exit(c->vm, WISP_EXIT_OK);
}

/* The PUT /snapshot/load body that --restore-from or --load-snapshot
 * stands for. Without the API nothing could resume the VM later, so
 * --no-api resumes at once. */
static int snapshot_request(const struct opts *o, struct snap_load_req *req, struct wisp_err *err)
{
	int r;
	memset(req, 0, sizeof(*req));
	if (o->load_snapshot) {
		char *text = NULL;
		if ((r = wisp_read_file(o->load_snapshot, API_MAX_BODY, &text, NULL, err)) < 0)
			return r;
		json_error_t je;
		json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
		free(text);
		if (!j)
			return wisp_err_set(err, EINVAL, "%s: line %d: %s", o->load_snapshot, je.line,
					    je.text);
		r = snap_parse_load(j, req, err);
		json_decref(j);
		if (r < 0)
			return wisp_err_prefix(err, "%s", o->load_snapshot);
	} else {
		req->snapshot_path = strdup(o->restore_from);
		req->mem_path = strdup(o->mem_file);
		if (!req->snapshot_path || !req->mem_path) {
			snap_load_req_free(req);
			return wisp_err_set(err, ENOMEM, "out of memory");
		}
	}
	if (o->resume || o->no_api)
		req->resume_vm = true;
	if (o->clock_realtime)
		req->clock_realtime = true;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .seccomp_selftest = SECCOMP_SELFTEST_NONE };
	int code = parse_flags(argc, argv, &o);
	if (code >= 0)
		return code;
	if ((code = setup_logging(&o)) >= 0)
		return code;
	if (!o.no_api && !o.api_sock) {
		fprintf(stderr, "wisp-vmm: --api-sock PATH is needed (or --no-api --config-file)\n");
		return WISP_EXIT_BAD_ARGS;
	}
	seccomp_configure(!o.no_seccomp, o.seccomp_selftest);
	if (o.no_seccomp)
		wlog_warn("seccomp filters are off (--no-seccomp)");

	static struct vm vm;
	vm_init(&vm);
	vm.boot_timer = o.boot_timer;
	struct wisp_err err = { 0 };
	if (o.config_file && vmcfg_load_file(o.config_file, &vm.cfg, &err) < 0) {
		wlog_error("configuration %s: %s", o.config_file, err.msg);
		fprintf(stderr, "wisp-vmm: %s\n", err.msg);
		vm_destroy(&vm);
		return WISP_EXIT_BAD_CONFIG;
	}

	/* Signals go to the event loop; every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	/* The event loop, metrics, and the API thread (unless --no-api). */
	static struct api_vmm api;
	const struct api_vmm_opts aopts = {
		.api_sock = o.no_api ? NULL : o.api_sock,
		.id = o.id,
		.metrics_path = o.metrics_path,
	};
	if (api_vmm_init(&api, &vm, &aopts, &err) < 0) {
		wlog_error("%s", err.msg);
		fprintf(stderr, "wisp-vmm: %s\n", err.msg);
		api_vmm_fini(&api);
		vm_destroy(&vm);
		/* The API thread's self-test ends like the other threads' (1);
		 * the rest here comes from the flags (socket, log, metrics). */
		return err.code == SECCOMP_SELFTEST_UNSTOPPED ? WISP_EXIT_GENERIC : WISP_EXIT_BAD_ARGS;
	}
	struct signal_ctx sc = { .vm = &vm };
	int sfd = sc.fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || evloop_add(&vm.loop, sfd, EPOLLIN, on_signal, &sc) < 0) {
		wlog_error("signalfd: %s", strerror(errno));
		api_vmm_fini(&api);
		vm_destroy(&vm);
		return WISP_EXIT_GENERIC;
	}

	struct termios saved;
	bool raw = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		t.c_oflag |= OPOST | ONLCR; /* keep host-side output readable */
		tcsetattr(STDIN_FILENO, TCSANOW, &t);
	}

	/* --config-file boots at once; otherwise InstanceStart does. Either
	 * way the VMM thread's filter goes on right after the vCPU threads
	 * exist (api_vm.c): its filter would otherwise be inherited by them. */
	if (o.config_file && api_vmm_boot(&api, &err) < 0) {
		wlog_error("starting the VM: %s", err.msg);
		fprintf(stderr, "wisp-vmm: %s\n", err.msg);
		vm_request_exit(&vm, vm.config_error ? WISP_EXIT_BAD_CONFIG : WISP_EXIT_GENERIC);
	}
	if (o.restore_from || o.load_snapshot) {
		struct snap_load_req req;
		int r = snapshot_request(&o, &req, &err);
		if (r == 0)
			r = api_vmm_load_snapshot(&api, &req, &err);
		snap_load_req_free(&req);
		if (r < 0) {
			wlog_error("restoring the snapshot: %s", err.msg);
			fprintf(stderr, "wisp-vmm: %s\n", err.msg);
			/* 152: refused before any vCPU ran (the VMM is fresh);
			 * 1: failed once the vCPU threads existed. */
			vm_request_exit(&vm, api.broken ? WISP_EXIT_GENERIC : WISP_EXIT_BAD_CONFIG);
		}
	}
	code = evloop_run(&vm.loop);

	api_vmm_fini(&api);
	vm_destroy(&vm);
	close(sfd);
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	wlog_info("exiting with code %d", code);
	return code;
}
