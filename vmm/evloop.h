/* The VMM thread's epoll loop: device backends, ioeventfds, timers, serial
 * input. Other threads hand work to it with evloop_call(). */
#ifndef WISP_EVLOOP_H
#define WISP_EVLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

typedef void (*evloop_cb)(void *opaque, uint32_t events);

struct evloop_call_req;
struct evloop_handler;

struct evloop {
	int epfd;
	int wakefd;                     /* eventfd: stop requests and calls */
	bool stop;
	int exit_code;                  /* set by evloop_stop() */
	pthread_mutex_t lock;           /* guards the call queue */
	struct evloop_call_req *calls;  /* pending cross-thread calls */
	pthread_t owner;                /* thread that runs the loop */
	bool finished;                  /* evloop_run returned: calls fail */
	struct evloop_handler *handlers;/* registered fds */
	struct evloop_handler *dead;    /* removed during dispatch, freed after it */
};

int evloop_init(struct evloop *l, struct wisp_err *err);
void evloop_destroy(struct evloop *l);
/* events: EPOLLIN/EPOLLOUT/...; the callback runs on the loop thread. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque);
int evloop_mod(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque);
int evloop_del(struct evloop *l, int fd);
/* Run until evloop_stop(); returns the exit code given to evloop_stop(). */
int evloop_run(struct evloop *l);
/* Thread-safe; the loop finishes its current callback and returns. */
void evloop_stop(struct evloop *l, int exit_code);
/* Run fn(arg) on the loop thread and wait for its result (thread-safe; runs
 * fn directly when called on the loop thread). Returns fn's return value, or
 * -ESHUTDOWN when the loop has stopped. */
int evloop_call(struct evloop *l, int (*fn)(void *arg), void *arg);

#endif
