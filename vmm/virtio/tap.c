/* Tap backend of virtio-net: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, so frames
 * carry the virtio-net header (checksum and segmentation offload metadata)
 * between the guest and the host's stack. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "vmm/virtio/backend.h"

int tap_open(const char *name, int hdr_len, struct wisp_err *err)
{
	if (!name || !*name || strlen(name) >= IFNAMSIZ)
		return wisp_err_set(err, EINVAL, "bad tap name");
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "opening /dev/net/tun for %s", name);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, strlen(name));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return wisp_err_sys(err, errno, "TUNSETIFF %s", name);
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0)
		return wisp_err_sys(err, errno, "TUNSETVNETHDRSZ %s", name);
	return wisp_steal_fd(fd);
}

int tap_set_offload(int fd, unsigned int flags, struct wisp_err *err)
{
	if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0)
		return wisp_err_sys(err, errno, "TUNSETOFFLOAD 0x%x", flags);
	return 0;
}
