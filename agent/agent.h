/* wisp-agent internals: the guest's init (sys.c), the connection server
 * (server.c) and the handler runner (job.c). One thread, one epoll loop;
 * struct agent is owned by main and passed everywhere. */
#ifndef WISP_AGENT_H
#define WISP_AGENT_H

#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/proto.h"

#define AGENT_VERSION "0.1.0"
#define AGENT_MAX_CONNS 128
#define AGENT_MAX_JOBS_PER_CONN 64
/* Back-pressure: a connection whose unsent output passes HIGH stops reading
 * requests and its EXEC pipes; both resume below LOW. */
#define AGENT_OUT_HIGH (1u << 20)
#define AGENT_OUT_LOW  (256u << 10)
#define AGENT_CHUNK    (64u << 10)
/* A connection keeps its receive buffer between frames up to this size. */
#define AGENT_KEEP_RXBUF (256u << 10)

enum ep_kind { EP_LISTEN = 1, EP_SIGNAL, EP_CONN, EP_JOB_IN, EP_JOB_OUT, EP_JOB_ERR };

/* What an epoll event points at. */
struct ep_src {
	enum ep_kind kind;
	void *obj;
};

struct conn;
struct job;

struct agent {
	int epfd;
	int sigfd;
	int lfd;
	struct ep_src listen_src, signal_src;
	int pid1;           /* running as the guest's init */
	int apply_restore;  /* RESTORED really reseeds and steps the clock */
	const char *listen; /* "vsock:PORT" or "unix:PATH" */
	uint64_t next_listen_try_ns;
	struct conn *conns;
	unsigned nconns;
	struct job *jobs;
	int stop;           /* SHUTDOWN or SIGTERM seen */
	uint8_t scratch[AGENT_CHUNK];
};

struct conn {
	struct conn *next, *prev;
	struct agent *a;
	int fd;
	struct ep_src src;
	uint8_t hdr[WPROTO_HDR_SIZE];
	size_t hdr_got;
	struct wproto_hdr h;
	uint8_t *body;     /* frame being received (reused between frames) */
	size_t body_cap, body_got;
	struct wproto_buf out;
	size_t out_off;
	uint32_t cur_events;
	int closing;       /* refused a frame: flush the ERROR, then close */
	unsigned njobs;
};

struct job {
	struct job *next, *prev;
	struct agent *a;
	struct conn *conn; /* NULL once the client went away */
	uint32_t id;
	int streaming;     /* EXEC: OUTPUT frames then EXIT */
	pid_t pid;         /* also the process group id; a child subreaper */
	int in_fd, out_fd[2];
	struct ep_src in_src, out_src[2];
	uint8_t *frame;    /* request body: keeps the stdin bytes alive */
	const uint8_t *in_ptr;
	size_t in_left;
	struct wproto_buf cap[2]; /* INVOKE: kept stdout/stderr */
	uint64_t total[2];
	uint32_t limit;    /* per stream, 0 = unlimited (EXEC only) */
	uint32_t flags;
	uint64_t start_ns, deadline_ns;
	int paused;
	int killed;        /* kill_job done: its tree is gone */
};

/* sweep.c: a process tree, found through /proc (a handler's, killed on a
 * timeout, a disconnect or a stop). One row per process of a scan. */
struct sweep_proc {
	pid_t pid, ppid;
	char state;          /* from /proc/PID/stat: R, S, D, Z, ... */
	signed char verdict; /* internal */
	unsigned char below; /* its parents lead to the root: part of the tree */
};
/* At most this many scans per tree kill (see sweep_kill_tree). */
#define SWEEP_MAX_PASSES 20
/* Marks (below = 1) every process whose chain of parents reaches root (root
 * itself is not marked); returns how many of them are alive (not zombies).
 * Sorts p by pid. */
size_t sweep_mark_tree(struct sweep_proc *p, size_t n, pid_t root);
/* Reads every PROC/PID/stat; *out is malloc'ed. */
int sweep_scan(const char *proc, struct sweep_proc **out, size_t *n);
/* SIGKILLs every process below root (not root itself), scanning PROC again
 * until a scan finds none alive, SWEEP_MAX_PASSES scans at most. For a
 * complete result root must be a child subreaper that stays alive (and
 * forks no more: stopped) meanwhile. Returns 0 when the tree is empty, how
 * many processes were still alive after the last scan, or -errno. */
int sweep_kill_tree(const char *proc, pid_t root);

/* sys.c: PID 1 duties */
/* cmdline: where the boot parameters are read (/proc/cmdline) */
void sys_init_pid1(const char *cmdline);
void sys_shutdown_pid1(void);
int sys_apply_restore(const struct wproto_msg *m, int apply, struct wproto_msg *ack,
		      struct wisp_err *err);
/* Value of "key=" in the boot parameters file, copied into out. */
int sys_cmdline_get(const char *path, const char *key, char *out, size_t outlen);

/* server.c */
int server_run(struct agent *a);
void conn_send(struct conn *c, const struct wproto_msg *m);
void conn_send_error(struct conn *c, uint32_t id, int errnum, const char *msg);
void conn_update_events(struct conn *c);
int agent_epoll_set(struct agent *a, int fd, struct ep_src *src, uint32_t events, int add);

/* job.c */
int job_start(struct agent *a, struct conn *c, uint8_t *frame,
	      const struct wproto_msg *m, struct wisp_err *err);
void job_on_fd(struct job *j, enum ep_kind kind, uint32_t events);
void job_reaped(struct agent *a, pid_t pid, int status, const struct rusage *ru);
void job_detach_conn(struct agent *a, struct conn *c);
void job_resume_conn(struct agent *a, struct conn *c);
void job_check_timeouts(struct agent *a, uint64_t now);
int64_t job_next_deadline_ms(struct agent *a, uint64_t now);
void job_kill_all(struct agent *a);
void job_free_all(struct agent *a);
struct job *job_find(struct agent *a, struct conn *c, uint32_t id);

#endif
