/* Host-side backends of the virtio devices, kept apart from the devices:
 * a raw image file (blk) and a tap interface (net). The vsock device's Unix
 * socket side lives in vsock_uds.c. */
#ifndef WISP_VIRTIO_BACKEND_H
#define WISP_VIRTIO_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/err.h"

/* ---- raw image file ---- */

struct blkfile {
	int fd;
	uint64_t size;      /* bytes */
	bool read_only;
};

int blkfile_open(struct blkfile *f, const char *path, bool read_only, struct wisp_err *err);
void blkfile_close(struct blkfile *f);
/* Whole transfers: 0 or -errno. Reads past the end of the file return
 * zeros (an image whose size is not a multiple of 512). */
int blkfile_preadv(struct blkfile *f, struct iovec *iov, int n, uint64_t off);
int blkfile_pwritev(struct blkfile *f, struct iovec *iov, int n, uint64_t off);
int blkfile_flush(struct blkfile *f);
/* Deallocate (discard) or zero a byte range; zeroing falls back to writing
 * zeros where the file system cannot. */
int blkfile_discard(struct blkfile *f, uint64_t off, uint64_t len);
int blkfile_write_zeroes(struct blkfile *f, uint64_t off, uint64_t len, bool unmap);

/* ---- tap ---- */

/* TUN_F_* bits for TUNSETOFFLOAD (linux/if_tun.h) */
#define TAP_OFFLOAD_CSUM 0x01
#define TAP_OFFLOAD_TSO4 0x02
#define TAP_OFFLOAD_TSO6 0x04
#define TAP_OFFLOAD_ECN  0x08
#define TAP_OFFLOAD_UFO  0x10

/* Open an existing (or create a new) tap named name with IFF_TAP |
 * IFF_NO_PI | IFF_VNET_HDR, non-blocking, vnet header size hdr_len. */
int tap_open(const char *name, int hdr_len, struct wisp_err *err);
int tap_set_offload(int fd, unsigned int flags, struct wisp_err *err);

#endif
