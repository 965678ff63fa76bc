/* The snapshot state file: encoding, checks and section lookup. */
#include "snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"

static const char *const section_names[SNAP_SEC_MAX_ID] = {
	[SNAP_SEC_CONFIG] = "config",
	[SNAP_SEC_VCPU] = "vcpu",
	[SNAP_SEC_VM] = "vm",
	[SNAP_SEC_SERIAL] = "serial",
	[SNAP_SEC_I8042] = "i8042",
	[SNAP_SEC_VIRTIO_MMIO] = "virtio-mmio",
	[SNAP_SEC_VIRTIO_BLK] = "virtio-blk",
	[SNAP_SEC_VIRTIO_NET] = "virtio-net",
	[SNAP_SEC_VIRTIO_VSOCK] = "virtio-vsock",
};

const char *snap_section_name(uint32_t id)
{
	if (id == 0 || id >= SNAP_SEC_MAX_ID || !section_names[id])
		return "unknown";
	return section_names[id];
}

/* CRC-32 (IEEE 802.3, reflected polynomial 0xedb88320), table driven. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t snap_crc32(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	const uint8_t *p = buf;
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint32_t image_crc(const uint8_t *buf, size_t len)
{
	static const uint8_t zero[4];
	size_t off = offsetof(struct snap_header, crc32);
	uint32_t crc = snap_crc32(0, buf, off);
	crc = snap_crc32(crc, zero, sizeof(zero));
	return snap_crc32(crc, buf + off + 4, len - off - 4);
}

uint64_t snap_new_id(void)
{
	uint64_t id = 0;
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
		/* No entropy yet (very early boot): unique enough to tell
		 * snapshots apart, which is all an id is for. */
		struct timespec rt, mono;
		clock_gettime(CLOCK_REALTIME, &rt);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		id = ((uint64_t)rt.tv_sec << 32) ^ (uint64_t)rt.tv_nsec ^
		     ((uint64_t)mono.tv_nsec << 20) ^ ((uint64_t)getpid() << 40);
	}
	return id ? id : 1;
}

/* Writer */

static int writer_reserve(struct snap_writer *w, size_t more)
{
	if (more > SNAP_STATE_MAX || w->len > SNAP_STATE_MAX - more)
		return wisp_err_set(&w->err, EFBIG,
				    "state exceeds the state file limit of %u bytes",
				    SNAP_STATE_MAX);
	if (w->len + more <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 4096;
	while (cap < w->len + more)
		cap *= 2;
	uint8_t *nb = realloc(w->buf, cap);
	if (!nb)
		return wisp_err_set(&w->err, ENOMEM, "no memory for the snapshot state");
	w->buf = nb;
	w->cap = cap;
	return 0;
}

int snap_writer_init(struct snap_writer *w, uint64_t mem_size, uint32_t flags)
{
	memset(w, 0, sizeof(*w));
	int r = writer_reserve(w, sizeof(struct snap_header));
	if (r < 0)
		return r;
	struct snap_header h = {
		.version = SNAP_FORMAT_VERSION,
		.arch = SNAP_ARCH_X86_64,
		.mem_size = mem_size,
		.flags = flags,
		.snap_id = snap_new_id(),
	};
	memcpy(h.magic, SNAP_MAGIC, sizeof(h.magic));
	memcpy(w->buf, &h, sizeof(h));
	w->len = sizeof(h);
	return 0;
}

void snap_writer_ids(struct snap_writer *w, uint64_t snap_id, uint64_t base_id)
{
	if (w->len < sizeof(struct snap_header))
		return;
	struct snap_header *h = (struct snap_header *)w->buf;
	h->snap_id = snap_id;
	h->base_id = base_id;
}

int snap_put(struct snap_writer *w, uint32_t id, uint32_t version, uint32_t instance,
	     const void *data, size_t len)
{
	if (w->err.code)
		return -w->err.code;
	if (id == 0 || id >= SNAP_SEC_MAX_ID)
		return wisp_err_set(&w->err, EINVAL, "unknown snapshot section id %u", id);
	if (len > SNAP_SECTION_MAX)
		return wisp_err_set(&w->err, EFBIG, "%s state is %zu bytes, more than %u",
				    snap_section_name(id), len, SNAP_SECTION_MAX);
	if (w->nr_sections >= SNAP_SECTIONS_MAX)
		return wisp_err_set(&w->err, EFBIG, "more than %u snapshot sections",
				    SNAP_SECTIONS_MAX);
	size_t padded = (len + 7) & ~(size_t)7;
	int r = writer_reserve(w, sizeof(struct snap_section_hdr) + padded);
	if (r < 0)
		return r;
	struct snap_section_hdr sh = {
		.id = id, .version = version, .instance = instance, .len = (uint32_t)len,
	};
	memcpy(w->buf + w->len, &sh, sizeof(sh));
	w->len += sizeof(sh);
	if (len)
		memcpy(w->buf + w->len, data, len);
	memset(w->buf + w->len + len, 0, padded - len);
	w->len += padded;
	w->nr_sections++;
	return 0;
}

int snap_writer_finish(struct snap_writer *w, const uint8_t **buf, size_t *len,
		       struct wisp_err *err)
{
	if (w->err.code) {
		if (err)
			*err = w->err;
		return -w->err.code;
	}
	struct snap_header *h = (struct snap_header *)w->buf;
	h->total_len = w->len;
	h->nr_sections = w->nr_sections;
	h->crc32 = image_crc(w->buf, w->len);
	*buf = w->buf;
	*len = w->len;
	return 0;
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

/* Reader */

int snap_parse(const uint8_t *buf, size_t len, struct snap_image *img, struct wisp_err *err)
{
	memset(img, 0, sizeof(*img));
	if (len > SNAP_STATE_MAX)
		return wisp_err_set(err, EFBIG, "state file is %zu bytes, more than the limit of %u",
				    len, SNAP_STATE_MAX);
	struct snap_header h;
	if (len < sizeof(h))
		return wisp_err_set(err, EINVAL,
				    "state file is truncated: %zu bytes, shorter than its %zu-byte header",
				    len, sizeof(h));
	memcpy(&h, buf, sizeof(h));
	if (memcmp(h.magic, SNAP_MAGIC, sizeof(h.magic)) != 0)
		return wisp_err_set(err, EINVAL, "not a wisp snapshot state file (bad magic)");
	if (h.version != SNAP_FORMAT_VERSION)
		return wisp_err_set(err, EPROTO,
				    "state file has format version %u; this wisp-vmm reads version %u only",
				    h.version, SNAP_FORMAT_VERSION);
	if (h.arch != SNAP_ARCH_X86_64)
		return wisp_err_set(err, EPROTO,
				    "state file is for architecture %u (ELF machine), not x86_64 (%u)",
				    h.arch, SNAP_ARCH_X86_64);
	if (h.total_len > len)
		return wisp_err_set(err, EINVAL,
				    "state file is truncated: the header says %llu bytes, the file has %zu",
				    (unsigned long long)h.total_len, len);
	if (h.total_len < len)
		return wisp_err_set(err, EINVAL,
				    "state file has %zu bytes after its end (header says %llu bytes)",
				    len - (size_t)h.total_len, (unsigned long long)h.total_len);
	uint32_t crc = image_crc(buf, len);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (crc != h.crc32)
#else
	if (crc != h.crc32 && (h.crc32 & 1))  /* let the fuzzer past the checksum */
#endif
		return wisp_err_set(err, EBADMSG,
				    "state file checksum mismatch (stored %08x, computed %08x): the file is corrupt",
				    h.crc32, crc);
	if (h.flags & ~SNAP_F_KNOWN)
		return wisp_err_set(err, EPROTO, "state file has unknown flags 0x%x", h.flags);
	if (h.snap_id == 0 || ((h.flags & SNAP_F_DIFF) != 0) != (h.base_id != 0))
		return wisp_err_set(err, EINVAL,
				    "state file has snapshot id %016llx and base id %016llx, which do not fit a %s snapshot",
				    (unsigned long long)h.snap_id, (unsigned long long)h.base_id,
				    (h.flags & SNAP_F_DIFF) ? "Diff" : "Full");
	if (h.nr_sections > SNAP_SECTIONS_MAX)
		return wisp_err_set(err, EINVAL, "state file claims %u sections, more than %u",
				    h.nr_sections, SNAP_SECTIONS_MAX);
	if (h.mem_size == 0 || h.mem_size % 4096)
		return wisp_err_set(err, EINVAL,
				    "state file gives a guest memory size of %llu bytes, not a whole number of pages",
				    (unsigned long long)h.mem_size);

	_cleanup_free_ struct snap_section *secs = calloc(h.nr_sections ? h.nr_sections : 1,
							  sizeof(*secs));
	if (!secs)
		return wisp_err_set(err, ENOMEM, "no memory to index the state file");
	size_t off = sizeof(h);
	for (uint32_t i = 0; i < h.nr_sections; i++) {
		struct snap_section_hdr sh;
		if (len - off < sizeof(sh))
			return wisp_err_set(err, EINVAL,
					    "state file is truncated: section %u of %u has no header",
					    i, h.nr_sections);
		memcpy(&sh, buf + off, sizeof(sh));
		off += sizeof(sh);
		size_t padded = ((size_t)sh.len + 7) & ~(size_t)7;
		if (sh.len > SNAP_SECTION_MAX || padded > len - off)
			return wisp_err_set(err, EINVAL,
					    "section %u (%s) of %u bytes overruns the state file",
					    i, snap_section_name(sh.id), sh.len);
		if (sh.id == 0 || sh.id >= SNAP_SEC_MAX_ID)
			return wisp_err_set(err, EPROTO, "section %u has unknown component id %u",
					    i, sh.id);
		for (uint32_t j = 0; j < i; j++)
			if (secs[j].hdr.id == sh.id && secs[j].hdr.instance == sh.instance)
				return wisp_err_set(err, EINVAL,
						    "state file holds the %s state of instance %u twice",
						    snap_section_name(sh.id), sh.instance);
		secs[i].hdr = sh;
		secs[i].data = buf + off;
		off += padded;
	}
	if (off != len)
		return wisp_err_set(err, EINVAL,
				    "state file has %zu bytes after its last section", len - off);
	img->buf = NULL;
	img->len = len;
	img->hdr = h;
	img->sections = wisp_steal_ptr(secs);
	img->nr_sections = h.nr_sections;
	return 0;
}

int snap_read_file(const char *path, struct snap_image *img, struct wisp_err *err)
{
	memset(img, 0, sizeof(*img));
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "state file %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return wisp_err_sys(err, errno, "state file %s: stat", path);
	if (!S_ISREG(st.st_mode))
		return wisp_err_set(err, EINVAL, "state file %s is not a regular file", path);
	if ((uint64_t)st.st_size > SNAP_STATE_MAX)
		return wisp_err_set(err, EFBIG, "state file %s is %lld bytes, more than the limit of %u",
				    path, (long long)st.st_size, SNAP_STATE_MAX);
	size_t len = (size_t)st.st_size;
	_cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return wisp_err_set(err, ENOMEM, "no memory to read state file %s", path);
	int r = wisp_read_exact(fd, buf, len);
	if (r == -EPIPE)
		return wisp_err_set(err, EINVAL, "state file %s shrank while being read", path);
	if (r < 0)
		return wisp_err_sys(err, -r, "state file %s: read", path);
	r = snap_parse(buf, len, img, err);
	if (r < 0)
		return wisp_err_prefix(err, "state file %s", path);
	img->buf = wisp_steal_ptr(buf);
	return 0;
}

void snap_image_free(struct snap_image *img)
{
	free(img->sections);
	free(img->buf);
	memset(img, 0, sizeof(*img));
}

static struct snap_section *find(const struct snap_image *img, uint32_t id, uint32_t instance)
{
	for (uint32_t i = 0; i < img->nr_sections; i++)
		if (img->sections[i].hdr.id == id && img->sections[i].hdr.instance == instance)
			return &img->sections[i];
	return NULL;
}

bool snap_has(const struct snap_image *img, uint32_t id, uint32_t instance)
{
	return find(img, id, instance) != NULL;
}

int snap_get_var(struct snap_image *img, uint32_t id, uint32_t version, uint32_t instance,
		 const uint8_t **data, size_t *len, struct wisp_err *err)
{
	struct snap_section *s = find(img, id, instance);
	if (!s)
		return wisp_err_set(err, ENOENT, "state file has no %s state for instance %u",
				    snap_section_name(id), instance);
	if (s->hdr.version != version)
		return wisp_err_set(err, EPROTO,
				    "%s state of instance %u has version %u; this wisp-vmm reads version %u",
				    snap_section_name(id), instance, s->hdr.version, version);
	s->used = true;
	*data = s->data;
	*len = s->hdr.len;
	return 0;
}

int snap_get(struct snap_image *img, uint32_t id, uint32_t version, uint32_t instance,
	     void *out, size_t len, struct wisp_err *err)
{
	const uint8_t *data;
	size_t have;
	int r = snap_get_var(img, id, version, instance, &data, &have, err);
	if (r < 0)
		return r;
	if (have != len)
		return wisp_err_set(err, EINVAL, "%s state of instance %u is %zu bytes, expected %zu",
				    snap_section_name(id), instance, have, len);
	memcpy(out, data, len);
	return 0;
}

int snap_check_all_used(const struct snap_image *img, struct wisp_err *err)
{
	for (uint32_t i = 0; i < img->nr_sections; i++)
		if (!img->sections[i].used)
			return wisp_err_set(err, EINVAL,
					    "state file holds %s state for instance %u that the restored VM has no component for",
					    snap_section_name(img->sections[i].hdr.id),
					    img->sections[i].hdr.instance);
	return 0;
}
