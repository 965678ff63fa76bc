/* Token buckets (Firecracker's rate_limiter semantics): tokens refill
 * linearly, size per refill_time; the one-time burst is spent first and
 * never refills. A request larger than the bucket passes when the bucket is
 * full and leaves a debt, so the average rate still holds. */
#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/io.h"
#include "vmm/ratelimit.h"

static void bucket_init(struct rl_bucket *b, const struct vmcfg_token_bucket *c, uint64_t now)
{
	memset(b, 0, sizeof(*b));
	if (!c || !c->present || c->size == 0 || c->refill_time == 0)
		return;
	b->on = true;
	b->size = c->size;
	b->refill_ns = c->refill_time * 1000000ull;
	b->burst = c->one_time_burst;
	b->budget = (int64_t)(c->size > INT64_MAX ? INT64_MAX : c->size);
	b->last_ns = now;
}

int ratelimit_init(struct ratelimit *rl, const struct vmcfg_rate_limiter *cfg,
		   struct wisp_err *err)
{
	memset(rl, 0, sizeof(*rl));
	rl->timer_fd = -1;
	if (!cfg || !cfg->present)
		return 0;
	uint64_t now = wisp_now_ns();
	bucket_init(&rl->bw, &cfg->bandwidth, now);
	bucket_init(&rl->ops, &cfg->ops, now);
	if (!rl->bw.on && !rl->ops.on)
		return 0;
	rl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (rl->timer_fd < 0)
		return wisp_err_sys(err, errno, "rate limiter timerfd");
	return 0;
}

void ratelimit_destroy(struct ratelimit *rl)
{
	if (rl->timer_fd >= 0)
		close(rl->timer_fd);
	rl->timer_fd = -1;
}

bool ratelimit_enabled(const struct ratelimit *rl)
{
	return rl->bw.on || rl->ops.on;
}

static void refill(struct rl_bucket *b, uint64_t now)
{
	if (now <= b->last_ns)
		return;
	uint64_t el = now - b->last_ns;
	int64_t room = (int64_t)b->size - b->budget;
	if (room <= 0) {
		b->last_ns = now;
		return;
	}
	unsigned __int128 t = (unsigned __int128)el * b->size / b->refill_ns;
	if (t >= (unsigned __int128)room) {
		b->budget = (int64_t)b->size;
		b->last_ns = now;
		return;
	}
	b->budget += (int64_t)t;
	/* advance only by the time those whole tokens took */
	b->last_ns += (uint64_t)((unsigned __int128)t * b->refill_ns / b->size);
}

/* ns until n tokens can be taken (0: now). */
static uint64_t bucket_wait(struct rl_bucket *b, uint64_t n, uint64_t now)
{
	if (!b->on || n == 0)
		return 0;
	refill(b, now);
	uint64_t from_burst = n < b->burst ? n : b->burst;
	n -= from_burst;
	if (n == 0)
		return 0;
	uint64_t need = n < b->size ? n : b->size;
	if (b->budget >= (int64_t)need)
		return 0;
	uint64_t missing = (uint64_t)((int64_t)need - b->budget);
	uint64_t ns = (uint64_t)((unsigned __int128)missing * b->refill_ns / b->size) + 1;
	return ns;
}

static void bucket_take(struct rl_bucket *b, uint64_t n)
{
	if (!b->on)
		return;
	uint64_t from_burst = n < b->burst ? n : b->burst;
	b->burst -= from_burst;
	n -= from_burst;
	b->budget -= (int64_t)(n > INT64_MAX / 2 ? INT64_MAX / 2 : n);
}

bool ratelimit_consume_at(struct ratelimit *rl, uint64_t bytes, uint64_t ops, uint64_t now)
{
	if (!ratelimit_enabled(rl))
		return true;
	if (rl->blocked)
		return false;
	uint64_t w1 = bucket_wait(&rl->bw, bytes, now);
	uint64_t w2 = bucket_wait(&rl->ops, ops, now);
	uint64_t w = w1 > w2 ? w1 : w2;
	if (w == 0) {
		bucket_take(&rl->bw, bytes);
		bucket_take(&rl->ops, ops);
		return true;
	}
	rl->throttled++;
	rl->blocked = true;
	if (w < 100000)
		w = 100000; /* no faster than 10 kHz wake-ups */
	struct itimerspec its = { .it_value = { .tv_sec = (time_t)(w / 1000000000ull),
						.tv_nsec = (long)(w % 1000000000ull) } };
	if (rl->timer_fd >= 0)
		timerfd_settime(rl->timer_fd, 0, &its, NULL);
	return false;
}

bool ratelimit_consume(struct ratelimit *rl, uint64_t bytes, uint64_t ops)
{
	return ratelimit_consume_at(rl, bytes, ops, wisp_now_ns());
}

void ratelimit_timer_event(struct ratelimit *rl)
{
	uint64_t v;
	if (rl->timer_fd >= 0 && read(rl->timer_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a spurious wake; the state below is still right */
	}
	rl->blocked = false;
}
