/* Metrics: counters flushed as one JSON object per line (Firecracker
 * style: each flush reports what happened since the previous one) to the
 * metrics path, every 60 s and on FlushMetrics.
 *
 * Like the log sink, the registry is one per process: vCPU threads, device
 * backends and the API thread bump counters without locks (relaxed
 * atomics), and only registration and flushing take the lock. */
#ifndef WISP_METRICS_H
#define WISP_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct evloop;

#define METRICS_FLUSH_INTERVAL_S 60
#define METRICS_MAX_DEVICES      32
#define METRICS_MAX_ENDPOINTS    32

/* vCPU exits by reason (KVM_EXIT_*), counted by the vCPU threads. */
enum metrics_exit {
	METRICS_EXIT_IO_IN,
	METRICS_EXIT_IO_OUT,
	METRICS_EXIT_MMIO_READ,
	METRICS_EXIT_MMIO_WRITE,
	METRICS_EXIT_HLT,
	METRICS_EXIT_SHUTDOWN,
	METRICS_EXIT_SYSTEM_EVENT,
	METRICS_EXIT_FAIL_ENTRY,
	METRICS_EXIT_INTERNAL_ERROR,
	METRICS_EXIT_OTHER,
	METRICS_EXIT_COUNT,
};

/* Per-device counters: every device reports the common ones; a device
 * with counters of its own (vsock) reports those after them. */
enum metrics_dev_counter {
	METRICS_DEV_REQUESTS,        /* requests / packets / connections handled */
	METRICS_DEV_BYTES_READ,      /* bytes from the backend into the guest */
	METRICS_DEV_BYTES_WRITTEN,   /* bytes from the guest to the backend */
	METRICS_DEV_ERRORS,          /* failed requests (I/O errors, bad descriptors) */
	METRICS_DEV_THROTTLED,       /* times the rate limiter held a request back */
	METRICS_DEV_FAILED,          /* the device was marked failed (guest misbehaved) */
	METRICS_DEV_COMMON_COUNT,
	/* vsock (requests: packets both ways; bytes: stream payload) */
	METRICS_DEV_RX_PACKETS = METRICS_DEV_COMMON_COUNT, /* packets to the guest */
	METRICS_DEV_TX_PACKETS,      /* packets from the guest */
	METRICS_DEV_CONNS_ADDED,     /* connections established, either direction */
	METRICS_DEV_CONNS_CLOSED,    /* established connections that ended */
	METRICS_DEV_CONNS_REFUSED,   /* connection requests refused, either direction */
	METRICS_DEV_CONNECT_RETRIES, /* connect() to a full host listener tried again */
	METRICS_DEV_COUNTER_COUNT,
};

struct metrics_dev {
	char name[80];                  /* "block_" / "net_" + a 64-byte id */
	int nr_counters;                /* reported: c[0, nr_counters) */
	_Atomic uint64_t c[METRICS_DEV_COUNTER_COUNT];
};

/* A device's counter block, named e.g. "block_rootfs", "net_eth0", "vsock",
 * reporting the common counters. Registering an existing name returns its
 * block. NULL when the table is full; metrics_dev_add() accepts NULL. */
struct metrics_dev *metrics_dev_register(const char *name);
/* The same reporting counters [0, nr_counters): the common ones and the
 * device's own (vsock: METRICS_DEV_COUNTER_COUNT). */
struct metrics_dev *metrics_dev_register_n(const char *name, int nr_counters);

static inline void metrics_dev_add(struct metrics_dev *d, enum metrics_dev_counter c,
				   uint64_t n)
{
	if (d)
		atomic_fetch_add_explicit(&d->c[c], n, memory_order_relaxed);
}

void metrics_vcpu_exit(enum metrics_exit reason);
/* The same from a vCPU's kvm_run after KVM_RUN returned. */
struct kvm_run;
void metrics_kvm_exit(const struct kvm_run *run);
/* One API request on endpoint ("put_drives"); failed: answered 4xx/5xx. */
void metrics_api_request(const char *endpoint, bool failed);

/* Where flushes go: opened for appending (a file or a named pipe).
 * Replaces a previous target. */
int metrics_open(const char *path, struct wisp_err *err);
/* Write one line with everything counted since the previous flush and
 * reset the counters. Without a target, nothing is written (counters
 * keep adding up) and 0 is returned. */
int metrics_flush(struct wisp_err *err);
/* The same line as a string (malloc'd), counters reset; for tests. */
char *metrics_flush_to_string(void);
/* Flush every METRICS_FLUSH_INTERVAL_S on the loop's thread (a timerfd). */
int metrics_start_timer(struct evloop *loop, struct wisp_err *err);

#endif
