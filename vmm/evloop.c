/* The VMM thread's event loop: epoll over device fds plus one eventfd that
 * wakes it for stop requests and cross-thread calls. */
#include "evloop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"

struct evloop_handler {
	int fd;
	evloop_cb cb;
	void *opaque;
	bool removed;
	struct evloop_handler *next;
};

struct evloop_call_req {
	int (*fn)(void *arg);
	void *arg;
	int result;
	bool done;
	pthread_cond_t cond;
	struct evloop_call_req *next;
};

#define EVLOOP_MAX_EVENTS 32

int evloop_init(struct evloop *l, struct wisp_err *err)
{
	memset(l, 0, sizeof(*l));
	l->epfd = l->wakefd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return wisp_err_sys(err, errno, "epoll_create1");
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wakefd < 0) {
		int e = errno;
		close(l->epfd);
		l->epfd = -1;
		return wisp_err_sys(err, e, "eventfd for the event loop");
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
		int e = errno;
		close(l->epfd);
		close(l->wakefd);
		l->epfd = l->wakefd = -1;
		return wisp_err_sys(err, e, "adding the wake eventfd to epoll");
	}
	pthread_mutex_init(&l->lock, NULL);
	l->owner = pthread_self();
	return 0;
}

static void evloop_free_list(struct evloop_handler *h)
{
	while (h) {
		struct evloop_handler *next = h->next;
		free(h);
		h = next;
	}
}

void evloop_destroy(struct evloop *l)
{
	if (l->epfd < 0 && l->wakefd < 0)
		return;
	evloop_free_list(l->handlers);
	evloop_free_list(l->dead);
	l->handlers = l->dead = NULL;
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->wakefd >= 0)
		close(l->wakefd);
	l->epfd = l->wakefd = -1;
	pthread_mutex_destroy(&l->lock);
}

static void evloop_wake(struct evloop *l)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (write(l->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		wlog_error("event loop wake failed: %s", strerror(errno));
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
	struct evloop_handler *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	*h = (struct evloop_handler){ .fd = fd, .cb = cb, .opaque = opaque };
	struct epoll_event ev = { .events = events, .data.ptr = h };
	pthread_mutex_lock(&l->lock);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		pthread_mutex_unlock(&l->lock);
		free(h);
		return -e;
	}
	h->next = l->handlers;
	l->handlers = h;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static struct evloop_handler *evloop_find(struct evloop *l, int fd, struct evloop_handler ***link)
{
	for (struct evloop_handler **pp = &l->handlers; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd == fd) {
			if (link)
				*link = pp;
			return *pp;
		}
	}
	return NULL;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
	pthread_mutex_lock(&l->lock);
	struct evloop_handler *h = evloop_find(l, fd, NULL);
	if (!h) {
		pthread_mutex_unlock(&l->lock);
		return -ENOENT;
	}
	struct epoll_event ev = { .events = events, .data.ptr = h };
	int r = epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
	if (!r) {
		h->cb = cb;
		h->opaque = opaque;
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

int evloop_del(struct evloop *l, int fd)
{
	struct evloop_handler **link;
	pthread_mutex_lock(&l->lock);
	struct evloop_handler *h = evloop_find(l, fd, &link);
	if (!h) {
		pthread_mutex_unlock(&l->lock);
		return -ENOENT;
	}
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	*link = h->next;
	/* An event for it may still be in the batch being dispatched. */
	h->removed = true;
	h->next = l->dead;
	l->dead = h;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* Run (or fail) every queued call. Called on the loop thread. */
static void evloop_run_calls(struct evloop *l, bool fail)
{
	for (;;) {
		pthread_mutex_lock(&l->lock);
		struct evloop_call_req *c = l->calls;
		if (c)
			l->calls = c->next;
		pthread_mutex_unlock(&l->lock);
		if (!c)
			return;
		int r = fail ? -ESHUTDOWN : c->fn(c->arg);
		pthread_mutex_lock(&l->lock);
		c->result = r;
		c->done = true;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&l->lock);
	}
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[EVLOOP_MAX_EVENTS];
	l->owner = pthread_self();
	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(l->epfd, evs, EVLOOP_MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			wlog_error("epoll_wait: %s", strerror(errno));
			evloop_stop(l, 1);
			break;
		}
		for (int i = 0; i < n; i++) {
			struct evloop_handler *h = evs[i].data.ptr;
			if (!h) {
				uint64_t v;
				if (read(l->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					wlog_error("event loop wake read: %s", strerror(errno));
				evloop_run_calls(l, false);
				continue;
			}
			if (!h->removed)
				h->cb(h->opaque, evs[i].events);
			if (__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE))
				break;
		}
		pthread_mutex_lock(&l->lock);
		struct evloop_handler *dead = l->dead;
		l->dead = NULL;
		pthread_mutex_unlock(&l->lock);
		evloop_free_list(dead);
	}
	pthread_mutex_lock(&l->lock);
	l->finished = true;
	int code = l->exit_code;
	pthread_mutex_unlock(&l->lock);
	evloop_run_calls(l, true);
	return code;
}

void evloop_stop(struct evloop *l, int exit_code)
{
	/* The first stop decides the exit code. */
	pthread_mutex_lock(&l->lock);
	if (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		l->exit_code = exit_code;
		__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&l->lock);
	evloop_wake(l);
}

int evloop_call(struct evloop *l, int (*fn)(void *arg), void *arg)
{
	if (pthread_equal(pthread_self(), l->owner))
		return fn(arg);
	struct evloop_call_req c = { .fn = fn, .arg = arg };
	pthread_cond_init(&c.cond, NULL);
	pthread_mutex_lock(&l->lock);
	if (l->finished) {
		pthread_mutex_unlock(&l->lock);
		pthread_cond_destroy(&c.cond);
		return -ESHUTDOWN;
	}
	/* Append, so calls run in the order they were made. */
	struct evloop_call_req **pp = &l->calls;
	while (*pp)
		pp = &(*pp)->next;
	*pp = &c;
	pthread_mutex_unlock(&l->lock);
	evloop_wake(l);
	pthread_mutex_lock(&l->lock);
	while (!c.done)
		pthread_cond_wait(&c.cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	pthread_cond_destroy(&c.cond);
	return c.result;
}
