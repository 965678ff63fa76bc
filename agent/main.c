/* wisp-agent: the guest's init and function runner.
 *
 *   wisp-agent [--listen vsock:PORT|unix:PATH] [--apply-restore] [--level L]
 *
 * As PID 1 it sets up the guest (mounts, hostname, network), listens on
 * vsock port 52, and never exits: SHUTDOWN or SIGTERM end in a reboot that
 * stops the microVM. Otherwise (host tests, or started by another init) it
 * serves until SHUTDOWN or SIGTERM and exits 0; RESTORED then only reports
 * what it would do unless --apply-restore is given. */
#include "agent.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: wisp-agent [--listen vsock:PORT|unix:PATH] [--apply-restore] [--level LEVEL]\n"
		"                  [--cmdline FILE]\n"
		"  --listen ADDR     where to serve the agent protocol (default vsock:%u)\n"
		"  --apply-restore   RESTORED reseeds the kernel RNG and sets the clock even\n"
		"                    when not running as PID 1 (PID 1 always does)\n"
		"  --level LEVEL     log level: error, warning, info, debug (default info)\n"
		"  --cmdline FILE    as PID 1, read the wisp.* boot parameters from FILE\n"
		"                    instead of /proc/cmdline (tests, containers)\n",
		WPROTO_VSOCK_PORT);
}

int main(int argc, char **argv)
{
	static struct agent a; /* large scratch buffer: not on the stack */
	char default_listen[32];
	snprintf(default_listen, sizeof(default_listen), "vsock:%u", WPROTO_VSOCK_PORT);
	a.pid1 = getpid() == 1;
	a.apply_restore = a.pid1;
	a.listen = default_listen;
	wisp_log_set_id("wisp-agent");

	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "apply-restore", no_argument, NULL, 'r' },
		{ "level", required_argument, NULL, 'L' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* As init, the kernel passes the boot arguments it does not know (and
	 * anything after "--") in argv: options are still honoured, the rest is
	 * ignored rather than refused, since init must start. */
	const char *cmdline = "/proc/cmdline";
	int c;
	opterr = !a.pid1;
	while ((c = getopt_long(argc, argv, "l:rL:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			a.listen = optarg;
			break;
		case 'r':
			a.apply_restore = 1;
			break;
		case 'c':
			cmdline = optarg;
			break;
		case 'L': {
			enum wisp_log_level lvl;
			if (wisp_log_level_parse(optarg, &lvl) == 0)
				wisp_log_set_level(lvl);
			else if (!a.pid1) {
				fprintf(stderr, "wisp-agent: bad log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		}
		case 'h':
			if (!a.pid1) {
				usage(stdout);
				return 0;
			}
			break;
		default:
			if (!a.pid1) {
				usage(stderr);
				return 2;
			}
			break;
		}
	}
	if (optind != argc && !a.pid1) {
		usage(stderr);
		return 2;
	}

	if (a.pid1) {
		sys_init_pid1(cmdline);
		char lvl[16];
		enum wisp_log_level l;
		if (sys_cmdline_get(cmdline, "wisp.log", lvl, sizeof(lvl)) == 0 &&
		    wisp_log_level_parse(lvl, &l) == 0)
			wisp_log_set_level(l);
	} else if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		/* orphans of handlers then go to the real init */
		wlog_warn("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	}
	wlog_info("wisp-agent %s starting%s", AGENT_VERSION, a.pid1 ? " as init" : "");

	int r = server_run(&a);
	if (r < 0)
		wlog_error("event loop: %s", strerror(-r));
	if (a.pid1)
		sys_shutdown_pid1(); /* does not return */
	if (!strncmp(a.listen, "unix:", 5))
		unlink(a.listen + 5);
	wlog_info("stopped");
	return r < 0 ? 1 : 0;
}
