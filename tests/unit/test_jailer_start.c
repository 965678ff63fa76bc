/* wisp-jailer's start, the parts that need no root: the exec file checked
 * for what would fail its exec in the jail, the undo of what a failed start
 * made, and the report pipe that carries a forked child's failure to the
 * parent. The privileged rest: tests/host/suite-jailer.sh. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jailer/jailer.h"

static char tmpdir[] = "/tmp/wisp-jstart-XXXXXX";

static void setup(void)
{
	strcpy(tmpdir, "/tmp/wisp-jstart-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct wisp_err e;
	jail_rmtree_at(fd, tmpdir + strlen("/tmp/"), &e);
	close(fd);
}

/* A file in tmpdir with these bytes, mode 0755; returns an O_RDONLY fd. */
static int file_with(const char *name, const void *bytes, size_t len)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0755);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
	close(fd);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	return fd;
}

/* A minimal x86-64 ELF executable header with one program header of the
 * given type (PT_LOAD: static; PT_INTERP: names interp). */
static int elf_with(const char *name, uint16_t machine, uint32_t ptype, const char *interp)
{
	unsigned char buf[512] = { 0 };
	Elf64_Ehdr eh = { 0 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = machine;
	eh.e_version = EV_CURRENT;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 1;
	Elf64_Phdr ph = { .p_type = ptype };
	size_t interp_at = sizeof(eh) + sizeof(ph);
	if (interp) {
		ph.p_offset = interp_at;
		ph.p_filesz = strlen(interp) + 1;
		memcpy(buf + interp_at, interp, strlen(interp) + 1);
	}
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + sizeof(eh), &ph, sizeof(ph));
	return file_with(name, buf, sizeof(buf));
}

Test(jailer_exec, formats_that_would_not_exec_are_refused, .init = setup, .fini = teardown)
{
	struct wisp_err e = { 0 };
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(root, 0);

	int fd = elf_with("static", EM_X86_64, PT_LOAD, NULL);
	cr_assert_eq(jail_check_exec(fd, "static", -1, &e), 0, "a static ELF: %s", e.msg);
	close(fd);

	fd = elf_with("dyn", EM_X86_64, PT_INTERP, "/nonexistent/ld.so");
	cr_assert_eq(jail_check_exec(fd, "dyn", -1, &e), -ENOENT);
	cr_assert(strstr(e.msg, "dynamically linked: its interpreter /nonexistent/ld.so is not "
			 "in the jail") != NULL, "%s", e.msg);
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "dyn", root, &e), -ENOENT, "absent from / as well");
	close(fd);

	/* The interpreter is looked up inside the jail's root: present in
	 * "/" (as a pre-staged jail would hold it) it is accepted. */
	fd = elf_with("dyn2", EM_X86_64, PT_INTERP, "/bin/sh");
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "dyn2", -1, &e), -ENOENT, "no jail root yet");
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "dyn2", root, &e), 0, "%s", e.msg);
	close(fd);

	fd = elf_with("arm", EM_AARCH64, PT_LOAD, NULL);
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "arm", -1, &e), -ENOEXEC);
	cr_assert(strstr(e.msg, "another machine") != NULL, "%s", e.msg);
	close(fd);

	static const char script[] = "#!/nonexistent/sh -e\necho hi\n";
	fd = file_with("script", script, sizeof(script) - 1);
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "script", root, &e), -ENOENT);
	cr_assert(strstr(e.msg, "a script for /nonexistent/sh, which is not in the jail") != NULL,
		  "%s", e.msg);
	close(fd);

	static const char sh_script[] = "#! /bin/sh\ntrue\n";
	fd = file_with("sh-script", sh_script, sizeof(sh_script) - 1);
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "sh-script", root, &e), 0, "%s", e.msg);
	close(fd);

	static const char junk[] = "MZ this is not for Linux";
	fd = file_with("junk", junk, sizeof(junk) - 1);
	wisp_err_clear(&e);
	cr_assert_eq(jail_check_exec(fd, "junk", root, &e), -ENOEXEC);
	cr_assert(strstr(e.msg, "neither an ELF executable nor a #! script") != NULL, "%s", e.msg);
	close(fd);
	close(root);
}

static int exists(const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
	struct stat st;
	return lstat(p, &st) == 0;
}

#define PARSE_START(a, e, ...) \
	jail_parse_args((int)(sizeof((char *[]){ "wisp-jailer", __VA_ARGS__ }) / sizeof(char *)), \
			(char *[]){ "wisp-jailer", __VA_ARGS__, NULL }, a, e)

/* What a failed start made goes; what was pre-staged stays. */
Test(jailer_undo, rollback_removes_what_the_run_made, .init = setup, .fini = teardown)
{
	char uid[16], gid[16], base[256];
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	snprintf(gid, sizeof(gid), "%u", (unsigned)getgid());
	snprintf(base, sizeof(base), "%s/base", tmpdir);
	struct jail_args a;
	struct wisp_err e = { 0 };
	cr_assert_eq(PARSE_START(&a, &e, "--id", "j1", "--exec-file", "/bin/true", "--uid", uid,
				 "--gid", gid, "--chroot-base-dir", base, "--new-pid-ns"), 0, "%s",
		     e.msg);
	int exec_fd = jail_open_exec("/bin/true", &e);
	cr_assert_geq(exec_fd, 0, "%s", e.msg);

	/* A fresh jail: everything goes, up to <base>/<exec name>. */
	struct jail_fs fs = { .base_fd = -1, .exec_dir_fd = -1, .id_dir_fd = -1, .root_fd = -1 };
	cr_assert_eq(jail_fs_check(&a, &fs, &e), 0, "%s", e.msg);
	cr_assert_eq(jail_fs_create(&a, exec_fd, &fs, &e), 0, "%s", e.msg);
	cr_assert_eq(mkdirat(fs.root_fd, "dev", 0755), 0);
	jail_fs_made(&fs, "dev", true);
	int fd = openat(fs.root_fd, "dev/kvm", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	jail_fs_made(&fs, "dev/kvm", false);
	fd = openat(fs.root_fd, "true.pid", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert(exists("base/true/j1/root/dev/kvm"));
	cr_assert(jail_fs_rollback(&a, &fs));
	jail_fs_close(&fs);
	cr_assert(!exists("base/true"), "the exec-name directory this run made is left");
	cr_assert(exists("base"), "the base directory belongs to the administrator");

	/* A pre-staged jail: its files stay, the run's own go. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/base/true/j1/root/dev && "
		 "touch %s/base/true/j1/root/vmlinux", tmpdir, tmpdir);
	cr_assert_eq(system(cmd), 0);
	struct jail_fs fs2 = { .base_fd = -1, .exec_dir_fd = -1, .id_dir_fd = -1, .root_fd = -1 };
	cr_assert_eq(jail_fs_check(&a, &fs2, &e), 0, "%s", e.msg);
	cr_assert_eq(jail_fs_create(&a, exec_fd, &fs2, &e), 0, "%s", e.msg);
	fd = openat(fs2.root_fd, "dev/kvm", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	jail_fs_made(&fs2, "dev/kvm", false);
	cr_assert(jail_fs_rollback(&a, &fs2));
	jail_fs_close(&fs2);
	cr_assert(exists("base/true/j1/root/vmlinux"), "a pre-staged file was removed");
	cr_assert(exists("base/true/j1/root/dev"), "a pre-staged directory was removed");
	cr_assert(!exists("base/true/j1/root/dev/kvm"));
	cr_assert(!exists("base/true/j1/root/true"), "the exec copy is left");
	/* ... so the same id starts again. */
	cr_assert_eq(jail_fs_check(&a, &fs2, &e), 0, "%s", e.msg);
	close(exec_fd);
}

Test(jailer_undo, a_pid_file_in_a_prestaged_jail_is_refused, .init = setup, .fini = teardown)
{
	char base[256], p[512];
	snprintf(base, sizeof(base), "%s/base", tmpdir);
	struct jail_args a;
	struct wisp_err e = { 0 };
	cr_assert_eq(PARSE_START(&a, &e, "--id", "j2", "--exec-file", "/bin/true", "--uid", "1",
				 "--gid", "1", "--chroot-base-dir", base, "--new-pid-ns"), 0, "%s",
		     e.msg);
	snprintf(p, sizeof(p), "%s/true/j2/root", base);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "mkdir -p %s && touch %s/true.pid", p, p);
	cr_assert_eq(system(cmd), 0);
	struct jail_fs fs;
	cr_assert_eq(jail_fs_check(&a, &fs, &e), -EEXIST);
	cr_assert(strstr(e.msg, "already has a pid file") != NULL, "%s", e.msg);
	/* Without --new-pid-ns the file is no pid file of the jailer's. */
	cr_assert_eq(PARSE_START(&a, &e, "--id", "j2", "--exec-file", "/bin/true", "--uid", "1",
				 "--gid", "1", "--chroot-base-dir", base), 0, "%s", e.msg);
	wisp_err_clear(&e);
	cr_assert_eq(jail_fs_check(&a, &fs, &e), 0, "%s", e.msg);
}

/* The report pipe: a child's failure reaches the parent whole; an exec
 * closes the pipe and reads as success. */
Test(jailer_spawn, a_childs_failure_reaches_the_parent)
{
	struct jail_args a = { .daemonize = true };
	struct jail_spawn sp;
	struct wisp_err e = { 0 };
	cr_assert_eq(jail_spawn_prepare(&a, &sp, &e), 0, "%s", e.msg);
	cr_assert(sp.rd >= 0 && sp.wr >= 0);
	cr_assert(fcntl(sp.wr, F_GETFD) & FD_CLOEXEC, "the write end must close on exec");
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		sp.child = true;
		struct wisp_err ce = { 0 };
		wisp_err_set(&ce, EAGAIN, "fork into the new PID namespace: %s", strerror(EAGAIN));
		jail_spawn_report(&sp, &ce);
		_exit(1);
	}
	sp.first = pid;
	cr_assert_eq(jail_spawn_wait(&sp, &e), -EAGAIN);
	cr_assert_str_eq(e.msg, "fork into the new PID namespace: Resource temporarily unavailable");
	cr_assert_eq(sp.rd, -1);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), -1, "the parent reaps the failed child");

	cr_assert_eq(jail_spawn_prepare(&a, &sp, &e), 0, "%s", e.msg);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char *argv[] = { "true", NULL }, *envp[] = { NULL };
		execve("/bin/true", argv, envp);
		_exit(127);
	}
	sp.first = pid;
	wisp_err_clear(&e);
	cr_assert_eq(jail_spawn_wait(&sp, &e), 0, "an exec reads as success: %s", e.msg);
	waitpid(pid, NULL, 0);

	/* No forks, no pipe. */
	struct jail_args plain = { 0 };
	cr_assert_eq(jail_spawn_prepare(&plain, &sp, &e), 0);
	cr_assert(sp.rd == -1 && sp.wr == -1);
}
