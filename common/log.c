#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The sink is process-wide by nature (every thread logs); main owns its
 * configuration. Guarded by a mutex because PUT /logger may change it while
 * other threads write. */
static struct {
	pthread_mutex_t lock;
	int fd;
	int owned;
	char id[65];
	_Atomic int level;
} sink = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.fd = 2,
	.owned = 0,
	.id = "anonymous-instance",
	.level = WISP_LOG_INFO,
};

static __thread char thread_name[24] = "main";

static const char *level_names[] = {
	[WISP_LOG_OFF] = "OFF", [WISP_LOG_ERROR] = "ERROR", [WISP_LOG_WARN] = "WARN",
	[WISP_LOG_INFO] = "INFO", [WISP_LOG_DEBUG] = "DEBUG", [WISP_LOG_TRACE] = "TRACE",
};

void wisp_log_set_id(const char *id)
{
	pthread_mutex_lock(&sink.lock);
	snprintf(sink.id, sizeof(sink.id), "%s", id);
	pthread_mutex_unlock(&sink.lock);
}

void wisp_log_set_fd(int fd)
{
	pthread_mutex_lock(&sink.lock);
	if (sink.owned && sink.fd >= 0)
		close(sink.fd);
	sink.fd = fd;
	sink.owned = 0;
	pthread_mutex_unlock(&sink.lock);
}

int wisp_log_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&sink.lock);
	if (sink.owned && sink.fd >= 0)
		close(sink.fd);
	sink.fd = fd;
	sink.owned = 1;
	pthread_mutex_unlock(&sink.lock);
	return 0;
}

void wisp_log_set_level(enum wisp_log_level level)
{
	sink.level = level;
}

enum wisp_log_level wisp_log_get_level(void)
{
	return (enum wisp_log_level)sink.level;
}

int wisp_log_level_parse(const char *s, enum wisp_log_level *out)
{
	static const struct { const char *name; enum wisp_log_level level; } names[] = {
		{ "off", WISP_LOG_OFF }, { "error", WISP_LOG_ERROR },
		{ "warn", WISP_LOG_WARN }, { "warning", WISP_LOG_WARN },
		{ "info", WISP_LOG_INFO }, { "debug", WISP_LOG_DEBUG },
		{ "trace", WISP_LOG_TRACE },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

void wisp_log_set_thread(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int wisp_log_enabled(enum wisp_log_level level)
{
	return level != WISP_LOG_OFF && (int)level <= sink.level;
}

void wisp_log(enum wisp_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	pthread_mutex_lock(&sink.lock);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ [%s:%s:%s] ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec, sink.id, thread_name,
			 level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n;
	if (m > 0)
		len += ((size_t)m < sizeof(line) - (size_t)n - 1) ? (size_t)m
								   : sizeof(line) - (size_t)n - 2;
	line[len++] = '\n';
	if (sink.fd >= 0) {
		ssize_t w = write(sink.fd, line, len);
		(void)w; /* a log line that cannot be written has nowhere to go */
	}
	pthread_mutex_unlock(&sink.lock);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t wisp_log_rl_check(struct wisp_log_rl *rl)
{
	uint64_t now = now_ns();
	uint64_t start = atomic_load(&rl->window_start);
	if (start == 0 || now - start >= WISP_LOG_RL_WINDOW_NS) {
		if (atomic_compare_exchange_strong(&rl->window_start, &start, now))
			atomic_store(&rl->count, 0);
	}
	if (atomic_fetch_add(&rl->count, 1) < WISP_LOG_RL_BURST)
		return (int64_t)atomic_exchange(&rl->suppressed, 0);
	atomic_fetch_add(&rl->suppressed, 1);
	return -1;
}
