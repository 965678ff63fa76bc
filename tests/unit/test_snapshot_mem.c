/* Snapshot memory files: sparse full and diff writes with their footer,
 * what load refuses (a diff alone, another snapshot's file, an unmerged
 * base, no footer, wrong size) and accepts (a diff merged onto its base),
 * merge and its refusals, and creates that fail leaving nothing behind. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/io.h"
#include "vmm/snapshot.h"

#define PG 4096u
#define RAM (24 * PG)
#define FILE_SIZE (RAM + SNAP_MEM_FOOTER_SIZE)
#define ID_A 0xaaaa000000000001ull
#define ID_B 0xbbbb000000000002ull
#define ID_C 0xcccc000000000003ull

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/wisp-snapmem-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(snapmem, .init = mkdir_tmp, .fini = rm_tmp);

static struct gmem fake_mem(uint8_t **lo, uint8_t **hi)
{
	struct gmem m = { 0 };
	*lo = calloc(16, PG);
	*hi = calloc(8, PG);
	m.regions[0] = (struct gmem_region){ .gpa = 0, .size = 16 * PG, .host = *lo };
	m.regions[1] = (struct gmem_region){ .gpa = 1ull << 32, .size = 8 * PG, .host = *hi,
					     .file_off = 16 * PG };
	m.nr_regions = 2;
	m.ram_size = RAM;
	return m;
}

static uint8_t *read_all(const char *path, size_t *len)
{
	char *b;
	struct wisp_err e = { 0 };
	cr_assert_eq(wisp_read_file(path, 1 << 24, &b, len, &e), 0, "%s", e.msg);
	return (uint8_t *)b;
}

static bool is_data(int fd, off_t off)
{
	off_t d = lseek(fd, off, SEEK_DATA);
	return d == off;
}

static int count_entries(void)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The state file header a load of snapshot id would check against. */
static struct snap_header hdr(uint64_t id, uint64_t base)
{
	struct snap_header h = { .mem_size = RAM, .snap_id = id, .base_id = base };
	h.flags = base ? SNAP_F_DIFF : 0;
	return h;
}

static void open_refused(const char *path, const struct snap_header *h, const char *needle)
{
	struct wisp_err e = { 0 };
	int fd = snap_mem_open(path, h, &e);
	if (fd >= 0)
		close(fd);
	cr_assert_lt(fd, 0, "%s was accepted, expected '%s'", path, needle);
	cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
}

static void open_accepted(const char *path, const struct snap_header *h)
{
	struct wisp_err e = { 0 };
	int fd = snap_mem_open(path, h, &e);
	cr_assert_geq(fd, 0, "%s", e.msg);
	close(fd);
}

static struct snap_mem_footer footer_of(const char *path)
{
	struct snap_mem_footer f;
	struct wisp_err e = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	struct stat st;
	fstat(fd, &st);
	cr_assert_eq(snap_mem_footer_read(fd, path, (uint64_t)st.st_size, &f, &e), 0, "%s", e.msg);
	close(fd);
	return f;
}

Test(snapmem, full_is_sparse_exact_and_has_a_footer)
{
	uint8_t *lo, *hi;
	struct gmem m = fake_mem(&lo, &hi);
	memset(lo + 1 * PG, 0xaa, PG);
	lo[5 * PG + 100] = 7;
	memset(hi + 7 * PG, 0x55, PG);
	char path[128];
	snprintf(path, sizeof(path), "%s/mem", dir);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_mem_write(&m, path, NULL, ID_A, 0, NULL, &e), 0, "%s", e.msg);
	size_t len;
	uint8_t *f = read_all(path, &len);
	cr_assert_eq(len, FILE_SIZE);
	cr_assert_eq(memcmp(f, lo, 16 * PG), 0);
	cr_assert_eq(memcmp(f + 16 * PG, hi, 8 * PG), 0);
	free(f);
	struct snap_mem_footer ft = footer_of(path);
	cr_assert_eq(ft.flags, 0);
	cr_assert_eq(ft.snap_id, ID_A);
	cr_assert_eq(ft.base_id, 0);
	cr_assert_eq(ft.mem_size, RAM);
	struct snap_header h = hdr(ID_A, 0);
	int fd = snap_mem_open(path, &h, &e);
	cr_assert_geq(fd, 0, "%s", e.msg);
	cr_assert(is_data(fd, 1 * PG));
	cr_assert(is_data(fd, 5 * PG));
	cr_assert(is_data(fd, 23 * PG));
	cr_assert_not(is_data(fd, 0));
	cr_assert_not(is_data(fd, 10 * PG));
	struct stat st;
	fstat(fd, &st);
	cr_assert_leq(st.st_blocks * 512, 5 * PG, "zero pages were written: %lld blocks",
		      (long long)st.st_blocks);
	close(fd);
	cr_assert_eq(count_entries(), 1, "a temporary file was left behind");
	free(lo);
	free(hi);
}

Test(snapmem, open_refusals)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/mem", dir);
	struct snap_header h = hdr(ID_A, 0);
	open_refused(path, &h, "No such file");
	/* a raw RAM image of the old format: right RAM size, no footer */
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_eq(ftruncate(fd, RAM), 0);
	close(fd);
	open_refused(path, &h, "is 98304 bytes; the snapshot's guest memory is 98304 bytes (plus a 4096-byte footer)");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	cr_assert_eq(ftruncate(fd, RAM / 2), 0);
	close(fd);
	open_refused(path, &h, "is 49152 bytes; the snapshot's guest memory is 98304");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	cr_assert_eq(ftruncate(fd, FILE_SIZE), 0);
	close(fd);
	open_refused(path, &h, "no wisp memory footer");
	open_refused(dir, &h, "not a regular file");

	/* a damaged footer */
	uint8_t *lo, *hi;
	struct gmem m = fake_mem(&lo, &hi);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_mem_write(&m, path, NULL, ID_A, 0, NULL, &e), 0, "%s", e.msg);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	uint64_t bad = 12345;
	cr_assert_eq(pwrite(fd, &bad, 8, RAM + offsetof(struct snap_mem_footer, mem_size)), 8);
	close(fd);
	open_refused(path, &h, "footer is damaged");
	uint32_t v = 9;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	cr_assert_eq(pwrite(fd, &v, 4, RAM + offsetof(struct snap_mem_footer, version)), 4);
	close(fd);
	open_refused(path, &h, "footer version 9");
	free(lo);
	free(hi);
}

/* Full snapshot A, then B, a diff of A, then C, a diff of B. */
struct chain {
	uint8_t *lo, *hi;
	struct gmem m;
	char full[128], diff[128], diff2[128];
	uint8_t want_lo[16 * PG], want_hi[8 * PG];
};

static void make_chain(struct chain *c)
{
	c->m = fake_mem(&c->lo, &c->hi);
	memset(c->lo + 2 * PG, 0x11, PG);
	memset(c->lo + 3 * PG, 0x22, PG);
	memset(c->hi + 1 * PG, 0x33, PG);
	snprintf(c->full, sizeof(c->full), "%s/full", dir);
	snprintf(c->diff, sizeof(c->diff), "%s/diff", dir);
	snprintf(c->diff2, sizeof(c->diff2), "%s/diff2", dir);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_mem_write(&c->m, c->full, NULL, ID_A, 0, NULL, &e), 0, "%s", e.msg);
	/* the guest changes pages: one rewritten, one zeroed, one new */
	memset(c->lo + 2 * PG, 0x44, PG);
	memset(c->lo + 3 * PG, 0, PG);
	memset(c->hi + 4 * PG, 0x66, PG);
	uint64_t bm_lo[1] = { (1u << 2) | (1u << 3) }, bm_hi[1] = { 1u << 4 };
	const uint64_t *const dirty[GMEM_MAX_REGIONS] = { bm_lo, bm_hi };
	cr_assert_eq(snap_mem_write(&c->m, c->diff, dirty, ID_B, ID_A, NULL, &e), 0, "%s", e.msg);
	/* and once more */
	memset(c->lo + 9 * PG, 0x77, PG);
	uint64_t bm2_lo[1] = { 1u << 9 }, bm2_hi[1] = { 0 };
	const uint64_t *const dirty2[GMEM_MAX_REGIONS] = { bm2_lo, bm2_hi };
	cr_assert_eq(snap_mem_write(&c->m, c->diff2, dirty2, ID_C, ID_B, NULL, &e), 0, "%s", e.msg);
	memcpy(c->want_lo, c->lo, sizeof(c->want_lo));
	memcpy(c->want_hi, c->hi, sizeof(c->want_hi));
}

static void free_chain(struct chain *c)
{
	free(c->lo);
	free(c->hi);
}

Test(snapmem, a_diff_alone_is_refused_and_loads_once_merged)
{
	struct chain c;
	make_chain(&c);
	struct wisp_err e = { 0 };
	struct snap_mem_footer ft = footer_of(c.diff);
	cr_assert_eq(ft.flags, SNAP_F_DIFF);
	cr_assert_eq(ft.snap_id, ID_B);
	cr_assert_eq(ft.base_id, ID_A);
	int fd = open(c.diff, O_RDONLY | O_CLOEXEC);
	cr_assert(is_data(fd, 3 * PG), "a dirty zero page must be written in a diff");
	cr_assert_not(is_data(fd, 16 * PG + 1 * PG), "clean pages must be holes in a diff");
	close(fd);

	/* the diff's state file with the diff's memory file: refused */
	struct snap_header hb = hdr(ID_B, ID_A), ha = hdr(ID_A, 0);
	open_refused(c.diff, &hb, "is a Diff snapshot's");
	open_refused(c.diff, &hb, "not a whole memory image");
	open_refused(c.diff, &ha, "is a Diff snapshot's");
	/* with its base, not merged yet: refused, and says so */
	open_refused(c.full, &hb, "not yet merged with the diff");
	/* another snapshot's state file */
	struct snap_header hc = hdr(ID_C, 0);
	open_refused(c.full, &hc, "belongs to snapshot aaaa000000000001; the state file is snapshot cccc000000000003");
	open_accepted(c.full, &ha);

	/* merged: a Full memory file of B that loads with B's state file */
	struct snap_mem_footer mf;
	cr_assert_eq(snap_mem_merge(c.full, c.diff, &mf, &e), 0, "%s", e.msg);
	cr_assert_eq(mf.flags, 0);
	cr_assert_eq(mf.snap_id, ID_B);
	open_accepted(c.full, &hb);
	open_refused(c.full, &ha, "belongs to snapshot bbbb000000000002");
	size_t len;
	uint8_t *f = read_all(c.full, &len);
	cr_assert_eq(len, FILE_SIZE);
	memset(c.lo + 9 * PG, 0, PG);   /* C's page is not in B */
	cr_assert_eq(memcmp(f, c.lo, 16 * PG), 0, "merged low RAM differs");
	cr_assert_eq(memcmp(f + 16 * PG, c.hi, 8 * PG), 0, "merged high RAM differs");
	free(f);
	cr_assert_eq(count_entries(), 3);

	/* the next diff onto the merged file: C */
	open_refused(c.diff2, &hc, "is a Diff snapshot's");
	cr_assert_eq(snap_mem_merge(c.full, c.diff2, &mf, &e), 0, "%s", e.msg);
	cr_assert_eq(mf.snap_id, ID_C);
	struct snap_header hc2 = hdr(ID_C, ID_B);
	open_accepted(c.full, &hc2);
	f = read_all(c.full, &len);
	cr_assert_eq(memcmp(f, c.want_lo, 16 * PG), 0, "low RAM after two merges differs");
	cr_assert_eq(memcmp(f + 16 * PG, c.want_hi, 8 * PG), 0);
	free(f);
	cr_assert_eq(count_entries(), 3, "a temporary file was left behind");
	free_chain(&c);
}

static void merge_refused(const char *base, const char *diff, const char *needle)
{
	size_t blen, dlen;
	uint8_t *b0 = read_all(base, &blen), *d0 = read_all(diff, &dlen);
	int n = count_entries();
	struct wisp_err e = { 0 };
	cr_assert_lt(snap_mem_merge(base, diff, NULL, &e), 0, "merge of %s onto %s accepted", diff,
		     base);
	cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
	size_t l;
	uint8_t *b1 = read_all(base, &l);
	cr_assert(l == blen && memcmp(b0, b1, l) == 0, "a refused merge changed the base");
	free(b1);
	b1 = read_all(diff, &l);
	cr_assert(l == dlen && memcmp(d0, b1, l) == 0, "a refused merge changed the diff");
	free(b1);
	cr_assert_eq(count_entries(), n, "a refused merge left a file behind");
	free(b0);
	free(d0);
}

Test(snapmem, merge_refusals_leave_both_files_alone)
{
	struct chain c;
	make_chain(&c);
	merge_refused(c.full, c.full, "same file");
	merge_refused(c.full, c.diff2, "applies onto snapshot bbbb000000000002; base");
	merge_refused(c.diff, c.diff2, "itself a diff");
	merge_refused(c.diff2, c.full, "is a Full memory file");
	char raw[128];
	snprintf(raw, sizeof(raw), "%s/raw", dir);
	int fd = open(raw, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_eq(ftruncate(fd, FILE_SIZE), 0);
	close(fd);
	merge_refused(raw, c.diff, "no wisp memory footer");
	merge_refused(c.full, raw, "no wisp memory footer");
	fd = open(raw, O_WRONLY | O_CLOEXEC);
	cr_assert_eq(ftruncate(fd, 8 * PG), 0);
	close(fd);
	merge_refused(c.full, raw, "its base");
	free_chain(&c);
}

Test(snapmem, failed_create_leaves_nothing)
{
	uint8_t *lo, *hi;
	struct gmem m = fake_mem(&lo, &hi);
	memset(lo, 1, 16 * PG);
	memset(hi, 2, 8 * PG);
	char path[128];
	snprintf(path, sizeof(path), "%s/mem", dir);
	/* an existing snapshot must survive a failed overwrite */
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_eq(write(fd, "old", 3), 3);
	close(fd);
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl = { 8 * PG, RLIM_INFINITY };
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	struct wisp_err e = { 0 };
	cr_assert_lt(snap_mem_write(&m, path, NULL, ID_A, 0, NULL, &e), 0);
	cr_assert_eq(count_entries(), 1, "a temporary file was left behind");
	size_t len;
	uint8_t *f = read_all(path, &len);
	cr_assert_eq(len, 3);
	free(f);

	/* state + memory committed together; a failed state write keeps both */
	char state[128], mtmp[4096], stmp[4096];
	snprintf(state, sizeof(state), "%s/nodir/state", dir);
	cr_assert_lt(snap_state_write_tmp(state, (const uint8_t *)"x", 1, stmp, sizeof(stmp), &e), 0);
	cr_assert_eq(count_entries(), 1);
	rl.rlim_cur = RLIM_INFINITY;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	snprintf(state, sizeof(state), "%s/state", dir);
	cr_assert_eq(snap_mem_write(&m, path, NULL, ID_A, 0, mtmp, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_state_write_tmp(state, (const uint8_t *)"xyz", 3, stmp, sizeof(stmp), &e), 0);
	cr_assert_eq(count_entries(), 3);
	cr_assert_eq(snap_commit(mtmp, path, stmp, state, &e), 0, "%s", e.msg);
	cr_assert_eq(count_entries(), 2);
	f = read_all(path, &len);
	cr_assert_eq(len, FILE_SIZE);
	free(f);
	free(lo);
	free(hi);
}
