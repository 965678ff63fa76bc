/* The exec file: opened once for the copy, and checked up front for what
 * would make its exec fail inside the jail. The exec is the last step, after
 * the privileges are gone: a jailer that failed there could not remove the
 * jail it made, so what can be known before is refused in validation. */
#include "jailer.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"

#if defined(__x86_64__)
#define JAIL_ELF_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define JAIL_ELF_MACHINE EM_AARCH64
#else
#error "wisp-jailer: unknown native ELF machine"
#endif

/* The kernel reads this much of a file to pick its format (BINPRM_BUF_SIZE). */
#define JAIL_EXEC_HEAD 256

int jail_open_exec(const char *path, struct wisp_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "exec file %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return wisp_err_sys(err, e, "stat exec file %s", path);
	}
	if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
		close(fd);
		return wisp_err_set(err, EINVAL, "exec file %s is not an executable regular file",
				    path);
	}
	return fd;
}

/* Is path (absolute, as the jailed process will see it) a regular file in
 * the jail? Resolved inside root_fd, as after pivot_root: an absolute
 * symlink in a pre-staged jail points into the jail, not at the host. */
static bool in_jail(int root_fd, const char *path)
{
	if (root_fd < 0)
		return false;
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
	if (fd < 0)
		return errno == ENOSYS;         /* cannot tell: let exec decide */
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	close(fd);
	return ok;
}

static int check_script(const char *head, size_t n, const char *shown, int root_fd,
			struct wisp_err *err)
{
	size_t i = 2;
	while (i < n && (head[i] == ' ' || head[i] == '\t'))
		i++;
	size_t start = i;
	while (i < n && head[i] != ' ' && head[i] != '\t' && head[i] != '\n' && head[i] != '\0')
		i++;
	if (i == start || i == n)
		return wisp_err_set(err, ENOEXEC,
				    "exec file %s: its #! line names no interpreter the kernel "
				    "can read", shown);
	char interp[JAIL_EXEC_HEAD];
	snprintf(interp, sizeof(interp), "%.*s", (int)(i - start), head + start);
	if (!in_jail(root_fd, interp))
		return wisp_err_set(err, ENOENT,
				    "exec file %s is a script for %s, which is not in the jail "
				    "(exec would fail there; put it into root/ first)", shown,
				    interp);
	return 0;
}

/* The ELF's PT_INTERP, if any, must be in the jail (a static VMM has none). */
static int check_elf(int fd, const char *head, size_t n, const char *shown, int root_fd,
		     struct wisp_err *err)
{
	Elf64_Ehdr ehdr, *eh = &ehdr;
	if (n < sizeof(ehdr))
		return wisp_err_set(err, ENOEXEC, "exec file %s: truncated ELF header", shown);
	memcpy(&ehdr, head, sizeof(ehdr));
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != JAIL_ELF_MACHINE)
		return wisp_err_set(err, ENOEXEC,
				    "exec file %s is an ELF file for another machine or class "
				    "(exec would fail: Exec format error)", shown);
	if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
		return wisp_err_set(err, ENOEXEC, "exec file %s is an ELF file but not an "
				    "executable (type %u)", shown, eh->e_type);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 256)
		return wisp_err_set(err, ENOEXEC, "exec file %s: unusable ELF program headers",
				    shown);
	for (unsigned int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		off_t at = (off_t)(eh->e_phoff + (uint64_t)i * sizeof(ph));
		if (pread(fd, &ph, sizeof(ph), at) != (ssize_t)sizeof(ph))
			return wisp_err_set(err, ENOEXEC, "exec file %s: truncated ELF program "
					    "headers", shown);
		if (ph.p_type != PT_INTERP)
			continue;
		char interp[PATH_MAX];
		if (ph.p_filesz < 2 || ph.p_filesz > sizeof(interp) ||
		    pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz ||
		    interp[ph.p_filesz - 1] != '\0')
			return wisp_err_set(err, ENOEXEC, "exec file %s: bad ELF interpreter entry",
					    shown);
		if (!in_jail(root_fd, interp))
			return wisp_err_set(err, ENOENT,
					    "exec file %s is dynamically linked: its interpreter %s "
					    "is not in the jail (exec would fail there; use a static "
					    "build, as wisp-vmm is)", shown, interp);
	}
	return 0;
}

int jail_check_exec(int exec_fd, const char *shown, int root_fd, struct wisp_err *err)
{
	char head[JAIL_EXEC_HEAD];
	ssize_t n = pread(exec_fd, head, sizeof(head), 0);
	if (n < 0)
		return wisp_err_sys(err, errno, "read exec file %s", shown);
	if (n >= 2 && head[0] == '#' && head[1] == '!')
		return check_script(head, (size_t)n, shown, root_fd, err);
	if (n >= SELFMAG && memcmp(head, ELFMAG, SELFMAG) == 0)
		return check_elf(exec_fd, head, (size_t)n, shown, root_fd, err);
	return wisp_err_set(err, ENOEXEC,
			    "exec file %s is neither an ELF executable nor a #! script "
			    "(exec would fail: Exec format error)", shown);
}
