/* Metrics registry and JSON-lines flushing (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <linux/kvm.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "evloop.h"

struct metrics_endpoint {
	const char *name;               /* static string from the API's route table */
	_Atomic uint64_t requests;
	_Atomic uint64_t fails;
};

static const char *const exit_names[METRICS_EXIT_COUNT] = {
	[METRICS_EXIT_IO_IN] = "exit_io_in",
	[METRICS_EXIT_IO_OUT] = "exit_io_out",
	[METRICS_EXIT_MMIO_READ] = "exit_mmio_read",
	[METRICS_EXIT_MMIO_WRITE] = "exit_mmio_write",
	[METRICS_EXIT_HLT] = "exit_hlt",
	[METRICS_EXIT_SHUTDOWN] = "exit_shutdown",
	[METRICS_EXIT_SYSTEM_EVENT] = "exit_system_event",
	[METRICS_EXIT_FAIL_ENTRY] = "exit_fail_entry",
	[METRICS_EXIT_INTERNAL_ERROR] = "exit_internal_error",
	[METRICS_EXIT_OTHER] = "exit_other",
};

static const char *const dev_counter_names[METRICS_DEV_COUNTER_COUNT] = {
	[METRICS_DEV_REQUESTS] = "requests",
	[METRICS_DEV_BYTES_READ] = "bytes_read",
	[METRICS_DEV_BYTES_WRITTEN] = "bytes_written",
	[METRICS_DEV_ERRORS] = "errors",
	[METRICS_DEV_THROTTLED] = "throttled",
	[METRICS_DEV_FAILED] = "failed",
	[METRICS_DEV_RX_PACKETS] = "rx_packets",
	[METRICS_DEV_TX_PACKETS] = "tx_packets",
	[METRICS_DEV_CONNS_ADDED] = "conns_added",
	[METRICS_DEV_CONNS_CLOSED] = "conns_closed",
	[METRICS_DEV_CONNS_REFUSED] = "conns_refused",
	[METRICS_DEV_CONNECT_RETRIES] = "connect_retries",
};

/* The process-wide registry (see metrics.h for why it is one). */
static struct {
	pthread_mutex_t lock;           /* registration, flushing, the target fd */
	int fd;
	struct metrics_dev devs[METRICS_MAX_DEVICES];
	_Atomic int nr_devs;
	struct metrics_endpoint endpoints[METRICS_MAX_ENDPOINTS];
	_Atomic int nr_endpoints;
	_Atomic uint64_t exits[METRICS_EXIT_COUNT];
	_Atomic uint64_t flushes;
	_Atomic uint64_t flush_fails;
	int timerfd;
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .timerfd = -1 };

static inline uint64_t take(_Atomic uint64_t *c)
{
	return atomic_exchange_explicit(c, 0, memory_order_relaxed);
}

struct metrics_dev *metrics_dev_register(const char *name)
{
	return metrics_dev_register_n(name, METRICS_DEV_COMMON_COUNT);
}

struct metrics_dev *metrics_dev_register_n(const char *name, int nr_counters)
{
	struct metrics_dev *d = NULL;
	if (nr_counters < METRICS_DEV_COMMON_COUNT)
		nr_counters = METRICS_DEV_COMMON_COUNT;
	if (nr_counters > METRICS_DEV_COUNTER_COUNT)
		nr_counters = METRICS_DEV_COUNTER_COUNT;
	pthread_mutex_lock(&reg.lock);
	int n = atomic_load(&reg.nr_devs);
	for (int i = 0; i < n; i++)
		if (strcmp(reg.devs[i].name, name) == 0)
			d = &reg.devs[i];
	if (!d && n < METRICS_MAX_DEVICES) {
		d = &reg.devs[n];
		snprintf(d->name, sizeof(d->name), "%s", name);
		atomic_store(&reg.nr_devs, n + 1);
	}
	if (d && d->nr_counters < nr_counters)
		d->nr_counters = nr_counters;
	pthread_mutex_unlock(&reg.lock);
	if (!d)
		wlog_rl(WISP_LOG_WARN, "metrics: no room for device %s", name);
	return d;
}

void metrics_vcpu_exit(enum metrics_exit reason)
{
	if ((unsigned)reason >= METRICS_EXIT_COUNT)
		reason = METRICS_EXIT_OTHER;
	atomic_fetch_add_explicit(&reg.exits[reason], 1, memory_order_relaxed);
}

void metrics_kvm_exit(const struct kvm_run *run)
{
	enum metrics_exit m;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		m = run->io.direction == KVM_EXIT_IO_OUT ? METRICS_EXIT_IO_OUT : METRICS_EXIT_IO_IN;
		break;
	case KVM_EXIT_MMIO:
		m = run->mmio.is_write ? METRICS_EXIT_MMIO_WRITE : METRICS_EXIT_MMIO_READ;
		break;
	case KVM_EXIT_HLT: m = METRICS_EXIT_HLT; break;
	case KVM_EXIT_SHUTDOWN: m = METRICS_EXIT_SHUTDOWN; break;
	case KVM_EXIT_SYSTEM_EVENT: m = METRICS_EXIT_SYSTEM_EVENT; break;
	case KVM_EXIT_FAIL_ENTRY: m = METRICS_EXIT_FAIL_ENTRY; break;
	case KVM_EXIT_INTERNAL_ERROR: m = METRICS_EXIT_INTERNAL_ERROR; break;
	default: m = METRICS_EXIT_OTHER; break;
	}
	metrics_vcpu_exit(m);
}

void metrics_api_request(const char *endpoint, bool failed)
{
	struct metrics_endpoint *e = NULL;
	pthread_mutex_lock(&reg.lock);
	int n = atomic_load(&reg.nr_endpoints);
	for (int i = 0; i < n; i++)
		if (strcmp(reg.endpoints[i].name, endpoint) == 0)
			e = &reg.endpoints[i];
	if (!e && n < METRICS_MAX_ENDPOINTS) {
		e = &reg.endpoints[n];
		e->name = endpoint;
		atomic_store(&reg.nr_endpoints, n + 1);
	}
	if (e) {
		atomic_fetch_add_explicit(&e->requests, 1, memory_order_relaxed);
		if (failed)
			atomic_fetch_add_explicit(&e->fails, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&reg.lock);
}

int metrics_open(const char *path, struct wisp_err *err)
{
	/* O_NONBLOCK: a named pipe nobody reads must not block the VMM thread. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
	if (fd < 0)
		return wisp_err_sys(err, errno, "metrics: cannot open %s", path);
	pthread_mutex_lock(&reg.lock);
	if (reg.fd >= 0)
		close(reg.fd);
	reg.fd = fd;
	pthread_mutex_unlock(&reg.lock);
	return 0;
}

/* Called with reg.lock held: the whole line, counters taken. */
static char *build_line(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	json_t *root = json_object();
	json_object_set_new(root, "utc_timestamp_ms",
			    json_integer((json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000));

	json_t *api = json_object();
	for (int i = 0; i < atomic_load(&reg.nr_endpoints); i++) {
		struct metrics_endpoint *e = &reg.endpoints[i];
		json_object_set_new(api, e->name,
				    json_pack("{s:I, s:I}", "requests", (json_int_t)take(&e->requests),
					      "fails", (json_int_t)take(&e->fails)));
	}
	json_object_set_new(root, "api", api);

	json_t *vcpu = json_object();
	for (int i = 0; i < METRICS_EXIT_COUNT; i++)
		json_object_set_new(vcpu, exit_names[i], json_integer((json_int_t)take(&reg.exits[i])));
	json_object_set_new(root, "vcpu", vcpu);

	json_t *devs = json_object();
	for (int i = 0; i < atomic_load(&reg.nr_devs); i++) {
		json_t *d = json_object();
		for (int c = 0; c < reg.devs[i].nr_counters; c++)
			json_object_set_new(d, dev_counter_names[c],
					    json_integer((json_int_t)take(&reg.devs[i].c[c])));
		json_object_set_new(devs, reg.devs[i].name, d);
	}
	json_object_set_new(root, "devices", devs);

	json_object_set_new(root, "metrics",
			    json_pack("{s:I, s:I}", "flushes", (json_int_t)take(&reg.flushes),
				      "flush_fails", (json_int_t)take(&reg.flush_fails)));
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

char *metrics_flush_to_string(void)
{
	pthread_mutex_lock(&reg.lock);
	char *s = build_line();
	pthread_mutex_unlock(&reg.lock);
	return s;
}

int metrics_flush(struct wisp_err *err)
{
	int r = 0;
	pthread_mutex_lock(&reg.lock);
	if (reg.fd >= 0) {
		atomic_fetch_add(&reg.flushes, 1);
		char *s = build_line();
		if (!s) {
			r = wisp_err_set(err, ENOMEM, "metrics: cannot build the line");
		} else {
			size_t n = strlen(s);
			s[n] = '\n';    /* json_dumps' buffer has room: the NUL goes */
			r = wisp_write_all(reg.fd, s, n + 1);
			free(s);
			if (r < 0) {
				atomic_fetch_add(&reg.flush_fails, 1);
				wisp_err_sys(err, -r, "metrics: write failed");
			}
		}
	}
	pthread_mutex_unlock(&reg.lock);
	return r;
}

static void timer_cb(void *opaque, uint32_t events)
{
	(void)opaque;
	(void)events;
	uint64_t ticks;
	struct wisp_err err = { 0 };
	if (read(reg.timerfd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	if (metrics_flush(&err) < 0)
		wlog_rl(WISP_LOG_WARN, "%s", err.msg);
}

int metrics_start_timer(struct evloop *loop, struct wisp_err *err)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd < 0)
		return wisp_err_sys(err, errno, "metrics: timerfd_create");
	struct itimerspec its = {
		.it_interval = { .tv_sec = METRICS_FLUSH_INTERVAL_S },
		.it_value = { .tv_sec = METRICS_FLUSH_INTERVAL_S },
	};
	if (timerfd_settime(fd, 0, &its, NULL) < 0) {
		int e = errno;
		close(fd);
		return wisp_err_sys(err, e, "metrics: timerfd_settime");
	}
	int r = evloop_add(loop, fd, EPOLLIN, timer_cb, NULL);
	if (r < 0) {
		close(fd);
		return wisp_err_sys(err, -r, "metrics: adding the flush timer");
	}
	reg.timerfd = fd;
	return 0;
}
