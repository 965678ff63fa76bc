/* Token-bucket rate limiter with Firecracker's fields: a bandwidth bucket
 * (bytes) and an ops bucket (requests), each {size, one_time_burst,
 * refill_time ms}. A device asks before each request; when a bucket is
 * short the limiter arms its timerfd for the moment enough tokens exist,
 * and the device resumes from the timer's event. */
#ifndef WISP_RATELIMIT_H
#define WISP_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/config.h"

struct rl_bucket {
	bool on;
	uint64_t size;           /* tokens a full bucket holds */
	uint64_t refill_ns;      /* time to refill size tokens from empty */
	uint64_t burst;          /* one-time burst left */
	int64_t budget;          /* tokens now; negative after an oversized request */
	uint64_t last_ns;        /* when budget was last refilled */
};

struct ratelimit {
	struct rl_bucket bw, ops;
	int timer_fd;            /* -1 when no bucket is configured */
	bool blocked;            /* waiting for the timer */
	uint64_t throttled;      /* requests that had to wait */
};

/* cfg may be NULL or not present: the limiter then lets everything through. */
int ratelimit_init(struct ratelimit *rl, const struct vmcfg_rate_limiter *cfg,
		   struct wisp_err *err);
void ratelimit_destroy(struct ratelimit *rl);
bool ratelimit_enabled(const struct ratelimit *rl);
/* Take bytes and ops tokens, or none: false means wait for the timer. */
bool ratelimit_consume(struct ratelimit *rl, uint64_t bytes, uint64_t ops);
/* Same, at a given time (tests). */
bool ratelimit_consume_at(struct ratelimit *rl, uint64_t bytes, uint64_t ops, uint64_t now_ns);
/* The timer fired: drain it and clear blocked. */
void ratelimit_timer_event(struct ratelimit *rl);

#endif
