/* Stand-in VMM for tests/host/suite-jailer.sh and bench/jailer.sh while
 * wisp-vmm cannot run on this host: static, takes the VMM's --id and
 * --api-sock flags, listens on the API socket like wisp-vmm, then waits. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *sock = NULL;
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "--api-sock") == 0)
			sock = argv[i + 1];
	if (sock) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
			perror("jail-probe: api socket");
			return 1;
		}
	}
	for (;;)
		pause();
}
