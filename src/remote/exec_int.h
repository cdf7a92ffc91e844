/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec_int.h - what the files of commands as files share; nothing outside
 * src/remote includes it.
 *
 * See exec.h for the layout of STATE_DIR/cmd/N. Four files:
 *  - exec_script.c: the shell scripts (pure: built from the spec,
 *    unit-tested, and run by the unit tests under dash and bash), and the
 *    parsers of what they print;
 *  - exec_poll.c: the in-memory model: per sandbox (struct ebox) the known
 *    commands (struct ecmd), behind one mutex that is never held across a
 *    request; and the workers: a poller thread per command, alive only while
 *    someone waits on that command, or for a while after this mount started
 *    it (to call on_end promptly); each poll is one listing of cmd/N;
 *  - exec_stdin.c: a stdin sender per command while written input is
 *    buffered;
 *  - exec.c: the API.
 *
 * Why files and ranged downloads: /process/execute merges stdout and stderr
 * and turns invalid UTF-8 into U+FFFD, and session logs add a newline to
 * every line and lose NULs. A file in the sandbox holds exactly what the
 * command wrote, a ranged download returns exactly those bytes (binary
 * safe, any size, with memory bounded by the read size), and a listing of
 * the command's directory gives both streams' sizes and whether it ended in
 * one request, which is what waiting costs.
 */
#ifndef DAYTONAFS_EXEC_INT_H
#define DAYTONAFS_EXEC_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "exec.h"
#include "strbuf.h"

#define EXEC_PATH_MAX 4096
#define WAIT_SLICE_MS 100        /* how often blocked waits look at o->interrupted */
#define EMPTY_EXIT_GRACE_MS 5000
#define LAUNCH_TIMEOUT_S 30      /* the launcher returns in well under a second */
#define KILL_TIMEOUT_S 30
#define RECONCILE_TIMEOUT_S 30
#define RECONCILE_RETRY_MS 10000 /* after a failed check of the sandbox's processes */
/* A command someone waits for that has run this long since the last check
 * of its sandbox's processes gets another (box_check): a restart of the
 * sandbox that this mount never saw stopped (another client's stop and
 * start between two polls; Vercel's resume, which the provider follows to
 * the new session without an error) ended it without an exit, and the wait
 * would never end. One request per this period per waited-for sandbox. */
#define LIVENESS_CHECK_MS 20000
/* A batch of stdin waits this long in the sandbox for the command to take
 * it (the pipe holds 64 KiB); then it fails with ETIMEDOUT. */
#define STDIN_TIMEOUT_S 120
#define STDIN_BUF_MAX (1u << 20) /* buffered stdin per command; also the largest batch */
/* A command this mount started is polled while nobody waits on it only to
 * call on_end (the cache invalidation) soon after it ends: the interval
 * doubles up to IDLE_POLL_MAX_MS, and stops IDLE_WATCH_MS after the start
 * (or the last waiter). Later ends are noticed at the next look. */
#define IDLE_POLL_MAX_MS 30000
#define IDLE_WATCH_MS (5 * 60 * 1000)
#define SMALL_FILE_MAX 4096      /* exit, state */
/* The inline output of at most this many commands is kept per sandbox
 * (the newest); older ones are read from the sandbox again. */
#define INLINE_KEEP 16
/* exec_options.wait_ms's bound: the launch request's own timeout is
 * LAUNCH_TIMEOUT_S. */
#define WAIT_MS_MAX 10000
#define COMMAND_TEXT_MAX (16u << 20)
/* How often a mount sends the helper again to a sandbox whose launcher
 * said it is missing (the first install failed: a noexec STATE_DIR, no
 * base64; or the sandbox lost it): its bytes are about 50 KB of each such launch. */
#define HELPER_RESENDS_MAX 2
/* A launch this soon after the one that sent it may find the install of the
 * helper still under way: its "missing" is not heard. */
#define HELPER_INSTALL_MS 3000

/* ---- the model ------------------------------------------------------------ */

/* A poll() waiter. It is woken when ready, or after POLL_REQ_MAX_MS anyway:
 * the kernel then polls again if the waiter is still there (a handle whose
 * file was closed would otherwise keep its command polled for ever). */
#define POLL_REQ_MAX_MS 30000

struct poll_req {
	void *handle;
	enum exec_stream s;
	uint64_t off;
	int64_t since_ms;
	struct poll_req *next;
};

struct ecmd {
	unsigned n;
	bool known;                 /* its listing was read at least once */
	bool ended;
	enum exec_state state;
	int exit_code;
	uint64_t size[2];
	bool with_stdin, stdin_eof;
	bool mine;                  /* started (or killed) by this mount: on_end is owed */
	bool end_reported;
	unsigned alive_gen;         /* the box generation in which it was started here */
	char *text;                 /* the command text, once read */
	size_t text_len;
	/* The streams of a command that ended within its launch's wait, as
	 * the launch's answer brought them (exactly size[s] bytes; NULL when
	 * empty); reads are served from here while has_out[s]. */
	char *out[2];
	bool has_out[2];
	/* When this mount first found its exit empty (0: not seen so). The
	 * wrapper writes it in place, in one write: empty for longer than
	 * EMPTY_EXIT_GRACE_MS, its write failed or its writer died between
	 * the create and the write, and the command ended with no status. */
	int64_t exit_empty_since_ms;
	/* Read-ahead of an ended command's stream read in order (exec_read):
	 * bytes [ra_off[s], ra_off[s] + ra_len[s]) of it, and where the last
	 * read of it ended. */
	char *ra_buf[2];
	uint64_t ra_off[2], ra_next[2];
	size_t ra_len[2];
	/* When a poll of this mount first found it running (0: not yet):
	 * from then on, LIVENESS_CHECK_MS. */
	int64_t running_seen_ms;

	/* waiting and polling */
	int waiters;                /* readers and exit waiters blocked on it */
	unsigned poll_seq;          /* polls completed */
	int poll_err;               /* the last poll's error that waiters should see, or 0 */
	struct poll_req *polls;
	bool poller_on;
	long interval_ms;
	int64_t next_poll_ms, last_poll_ms;
	int64_t watch_until_ms;     /* mine: polled while nobody waits until then */
	pthread_cond_t cv;          /* its state changed */
	pthread_cond_t poll_cv;     /* wakes its poller */

	/* stdin */
	struct strbuf in_buf;       /* written, not yet delivered */
	bool in_flight;             /* a batch is being delivered */
	bool sender_on;
	bool in_close;              /* EOF is asked for */
	int in_err;                 /* sticky: why a delivery failed */
	int close_err;              /* why the last EOF failed */
	char in_done[64];           /* the id of the last batch delivered, "" before */
	pthread_cond_t in_cv;       /* in_buf shrank, or the sender stopped */
};

struct ebox {
	char id[SP_ID_SIZE];
	char url[512];
	int refs;
	bool dead;
	bool listed;
	int64_t listed_ms;
	/* Generations: gen is bumped when the sandbox is seen stopped (its
	 * processes may be gone), checked_gen is the one in which the records
	 * were last checked against its processes (exec_build_reconcile). */
	unsigned gen, checked_gen;
	bool checking;
	int64_t check_failed_ms;
	int64_t checked_ms;         /* when the last check succeeded (0: never) */
	struct ecmd **cmds;         /* ascending n */
	size_t n_cmds, cap;
	unsigned max_n;             /* highest number known or claimed */
	/* This mount's launches in the sandbox have carried the helper
	 * (exec_helper.h) for the launcher to install when it is missing:
	 * the later ones only look for it. */
	bool helper_sent;
	bool helper_sending;        /* a launch carrying it has not answered yet */
	int64_t helper_sent_ms;     /* when (an install in the background takes a moment) */
	unsigned helper_resends;    /* sent again after a launch said it missing */
	struct ebox *next;
};

struct exec_mgr {
	struct sandbox_provider *sp;
	struct exec_options o;
	char *state_dir;
	long idle_max_ms;
	pthread_mutex_t lock;
	pthread_cond_t idle_cv;     /* workers reached 0 */
	pthread_condattr_t cattr;
	int workers;
	/* Workers that have finished, to be joined: joined rather than
	 * detached so that none is still in its exit (curl's per-thread
	 * handle is freed then) when exec_mgr_free returns. */
	pthread_t *exited;
	size_t n_exited, cap_exited;
	bool stopping;
	struct ebox *boxes;
	/* Client tokens of launches and stdin batches: this mount's nonce and
	 * a count (see add_claim). */
	char nonce[24];
	unsigned long tokens;
};

/* An ended command's stream read in order is downloaded READ_AHEAD_MAX bytes
 * at a time (one request, where cat asks for 128 KiB a read: a 30 MB log
 * cost 232 requests, each a command on Vercel), the rest kept for the reads
 * that follow; at most READ_AHEAD_SLOTS of them, held or being downloaded,
 * the least recently used giving way. */
#define READ_AHEAD_MAX (4u << 20)
#define READ_AHEAD_SLOTS 8
/* Frees c's read-ahead of stream s. Lock held (exec.c). */
void ra_drop(struct ecmd *c, int s);

/* Delay of the first look at a command just started. */
#define FIRST_POLL_MS 10

/* A sp_box with copies of the box's strings, for use without the lock. */
struct box_copy {
	char id[SP_ID_SIZE];
	char url[512];
	struct sp_box db;
};

struct fetch {
	struct exec_listing l;
	bool exit_empty;            /* exit is there but empty (being written, or its write failed) */
	bool have_end;              /* end_state and exit_code are set */
	enum exec_state end_state;
	int exit_code;
};

/* Callbacks gathered under the lock, made after it is released. */
struct pending {
	struct poll_req *wake;      /* woken handles */
	bool end;                   /* call on_end for (box, n) */
	char id[SP_ID_SIZE];
	unsigned n;
};

struct worker_arg {
	struct exec_mgr *m;
	struct ebox *b;
	struct ecmd *c;
};

/* exec_poll.c */
int64_t now_ms(void);
void timed_wait(pthread_cond_t *cv, pthread_mutex_t *lock, int64_t until_ms);
bool interrupted(struct exec_mgr *m);
void box_free(struct ebox *b);
struct ebox *box_get(struct exec_mgr *m, const struct sp_box *db);
void box_put(struct ebox *b);
struct ecmd *cmd_find(const struct ebox *b, unsigned n);
struct ecmd *cmd_add(struct exec_mgr *m, struct ebox *b, unsigned n);
int cmd_path(const struct exec_mgr *m, unsigned n, const char *file, char *out, size_t cap);
void box_copy(const struct ebox *b, struct box_copy *bc);
int download_small(struct exec_mgr *m, const struct sp_box *db, const char *path, size_t max,
			  char **out, size_t *len, struct sp_error *err);
int fetch_cmd(struct exec_mgr *m, const struct sp_box *db, unsigned n, bool need_end,
		     struct fetch *f, struct sp_error *err);
void pending_run(struct exec_mgr *m, struct pending *p);
void pending_flush(struct exec_mgr *m, struct pending *p);
bool cmd_waiting(const struct ecmd *c);
void apply_fetch(struct exec_mgr *m, struct ebox *b, struct ecmd *c, const struct fetch *f,
			struct pending *p);
void apply_gone(struct ebox *b, struct ecmd *c, struct pending *p);
void apply_launch_end(struct ebox *b, struct ecmd *c, struct exec_launch_result *r, struct pending *p);
void box_stopped(struct ebox *b);
bool liveness_due(struct ebox *b, struct ecmd *c, int64_t now);
bool needs_check(const struct ebox *b, const struct ecmd *c);
void box_check(struct exec_mgr *m, struct ebox *b, struct pending *p);
int worker_start(struct exec_mgr *m, struct ebox *b, struct ecmd *c, void *(*fn)(void *));
void worker_exit(struct exec_mgr *m, struct ebox *b);
void workers_reap(struct exec_mgr *m);
void poller_ensure(struct exec_mgr *m, struct ebox *b, struct ecmd *c);
void wait_begin(struct exec_mgr *m, struct ebox *b, struct ecmd *c, bool was_waiting);
void wait_end(struct ecmd *c);

/* exec.c */
int check_args(struct exec_mgr *m, const struct sp_box *db, struct sp_error *err);
/* fresh: 0 any known state will do; 1 a running command's state is listed
 * again when poll_min_ms old; FRESH_ENDED also an ended command's sizes when
 * poll_max_ms old (a background child it left may still write). */
#define FRESH_ENDED 2
int lock_cmd(struct exec_mgr *m, const struct sp_box *box, unsigned n, int fresh, struct ebox **bp,
		    struct ecmd **cp, struct sp_error *err);
void next_token(struct exec_mgr *m, char kind, char *out, size_t cap);

/* exec_stdin.c */
int stdin_eof(struct exec_mgr *m, const struct sp_box *db, unsigned n, struct sp_error *err);

#endif
