/* Log lines: "<RFC3339 time with ns> [<id>:<thread>:<LEVEL>] <message>".
 * One process-wide sink, configured by main (and the API's PUT /logger);
 * each line is written with a single write() so threads never interleave. */
#ifndef WISP_LOG_H
#define WISP_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum wisp_log_level {
	WISP_LOG_OFF = 0,
	WISP_LOG_ERROR,
	WISP_LOG_WARN,
	WISP_LOG_INFO,
	WISP_LOG_DEBUG,
	WISP_LOG_TRACE,
};

/* Identity printed on every line (the VM id, "anonymous-instance" by default). */
void wisp_log_set_id(const char *id);
/* Where lines go: an fd the logger does not own (default 2). */
void wisp_log_set_fd(int fd);
/* Open path for appending (O_CLOEXEC); the logger owns and closes it. */
int wisp_log_open(const char *path);
void wisp_log_set_level(enum wisp_log_level level);
enum wisp_log_level wisp_log_get_level(void);
/* Parse "Error", "warning", "INFO", "Debug", "Trace", "Off" (any case). */
int wisp_log_level_parse(const char *s, enum wisp_log_level *out);
/* Name of the calling thread in log lines (thread-local, copied). */
void wisp_log_set_thread(const char *name);
/* Whether a line at this level would be written: lets callers skip work. */
int wisp_log_enabled(enum wisp_log_level level);

void wisp_log(enum wisp_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Per call site rate limit: at most WISP_LOG_RL_BURST lines per
 * WISP_LOG_RL_WINDOW_NS; later ones are counted and the count is reported
 * with the next line let through. A guest cannot flood the log this way. */
#define WISP_LOG_RL_BURST 10
#define WISP_LOG_RL_WINDOW_NS 5000000000ull

struct wisp_log_rl {
	_Atomic uint64_t window_start;
	_Atomic uint32_t count;
	_Atomic uint64_t suppressed;
};

/* Returns the number of suppressed lines to report (>= 0) when this line
 * may be written, or -1 when it must be dropped. */
int64_t wisp_log_rl_check(struct wisp_log_rl *rl);

#define wlog(level, ...) \
	do { \
		if (wisp_log_enabled(level)) \
			wisp_log(level, __VA_ARGS__); \
	} while (0)
#define wlog_error(...) wlog(WISP_LOG_ERROR, __VA_ARGS__)
#define wlog_warn(...)  wlog(WISP_LOG_WARN, __VA_ARGS__)
#define wlog_info(...)  wlog(WISP_LOG_INFO, __VA_ARGS__)
#define wlog_debug(...) wlog(WISP_LOG_DEBUG, __VA_ARGS__)

/* Rate-limited variant: one static limiter per call site. */
#define wlog_rl(level, fmt, ...) \
	do { \
		static struct wisp_log_rl _rl; \
		if (wisp_log_enabled(level)) { \
			int64_t _s = wisp_log_rl_check(&_rl); \
			if (_s > 0) \
				wisp_log(level, fmt " (%lld similar lines suppressed)", \
					 ##__VA_ARGS__, (long long)_s); \
			else if (_s == 0) \
				wisp_log(level, fmt, ##__VA_ARGS__); \
		} \
	} while (0)

#endif
