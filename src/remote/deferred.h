/* SPDX-License-Identifier: Apache-2.0 */
/*
 * deferred.h - the deferred-change runner: the changes of a wb_queue
 * (writeback.h) sent in batches, one command a batch, by a thread of its
 * own or at once when something must see the sandbox (deferred_settle),
 * sent again while the sandbox's refusal may pass.
 *
 * It knows commands, not the mount: what a batch's sandbox is, how a
 * command reaches it, and what a failed or finished change means for the
 * mount's caches are the caller's (struct deferred_ops). A change's owner
 * (wb_op.owner) is the caller's sandbox, handed back to the ops as is.
 */
#ifndef DAYTONAFS_DEFERRED_H
#define DAYTONAFS_DEFERRED_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "provider.h"
#include "writeback.h"

/* A batch that met a failure that may pass is sent again after 200 ms,
 * doubling up to 5 s, for up to budget_s (see wb_send in deferred.c). */
#define WB_RETRY_FIRST_MS 200L
#define WB_RETRY_MAX_MS 5000L
#define WB_RETRY_BUDGET_S 120.0

struct deferred_ops {
	/* Runs script once in owner's sandbox: 0 (code and out set), or
	 * -errno with err set. No retry: the runner retries. */
	int (*sh_once)(void *ctx, void *owner, const char *script, int *code, char **out, struct sp_error *err);
	/* A batch that could not be sent: the -errno to report for it (the
	 * caller may re-read the sandbox's state). */
	int (*send_failed)(void *ctx, void *owner, int rc, const struct sp_error *err);
	/* op did not happen (err: -errno; msg: why): the caller forgets what it
	 * assumed, and reports it (fsync of the directory). */
	void (*failed)(void *ctx, void *owner, const struct wb_op *op, int err, const char *msg);
	/* An owner, mode or times change done: text is the stat line the batch
	 * printed for op->path (find_fmt), for the caller's cache, which keeps
	 * showing op->ctime_shown (when set) while the sandbox's ctime is the
	 * one printed: the batch ran later than the change the mount showed.
	 * Called under the queue's lock (wb_if_current): it must not call into
	 * the queue. */
	void (*done)(void *ctx, void *owner, const struct wb_op *op, const char *text);
	/* A WB_MOVE done: what kept its data for crash recovery (op->keep) may
	 * go. (One that failed goes to failed.) May be NULL. */
	void (*moved)(void *ctx, void *owner, const struct wb_op *op);
	/* owner's name, for the log. */
	const char *(*name)(const void *owner);
	/* A batch went back to the queue because owner's sandbox is not
	 * running (rc -EHOSTDOWN): nothing is dropped, but what settled for it
	 * (fsync of a directory, a stop, a snapshot) must not take it as done,
	 * and the caller may re-read the sandbox's state. May be NULL. */
	void (*parked)(void *ctx, void *owner, int rc, const struct sp_error *err);
};

struct deferred {
	struct wb_queue *wb;      /* the queue (writeback.h) */
	pthread_mutex_t lock;     /* starting the thread */
	pthread_mutex_t wb_run;   /* taking and running batches; released while one backs off */
	pthread_cond_t idle;      /* (with wb_run) a batch was done or requeued */
	pthread_t wb_thread;
	bool wb_thread_on;
	double budget_s;          /* how long a batch is sent again */
	const char *find_fmt;     /* find -printf format of the stat lines (done) */
	/* The deletes' clock test (wb_since): when the last batch's request
	 * ended (wb_now()), under wb_run; and how long after a request of the
	 * mount's ended unsure (http_last_unsure) the deletes go without it:
	 * that request, maybe a change of a path deleted since, may still
	 * run in the sandbox (for as long as a request's time limit). */
	double last_done;
	double unsure_s;
	const struct deferred_ops *ops;
	void *ctx;                /* the ops' first argument */
};

/* batch_max: see wb_new. 0, or -ENOMEM. */
int deferred_init(struct deferred *d, size_t batch_max, const struct deferred_ops *ops, void *ctx,
		  const char *find_fmt);
/* Stops the thread, runs what is still queued, and frees the queue. */
void deferred_fini(struct deferred *d);
/* Runs everything queued of owner (of every owner when NULL), hidden deletes
 * included, after any batch in flight. */
void deferred_run_all(struct deferred *d, const void *owner);
/* Drops everything queued of owner, unsent (its sandbox was deleted: there
 * is nothing left to change), after any batch of it in flight. */
void deferred_forget(struct deferred *d, const void *owner);
/* Queues op (the queue takes it) to run after delay; false when it cannot be
 * queued (no memory, no thread): op is freed, and the caller does the change
 * at once. Only where commands work: the batch is a command. */
bool deferred_queue(struct deferred *d, struct wb_op *op, double delay);
/* Runs what is queued of owner that touches path (anything of owner: NULL)
 * before the caller looks at path in the sandbox. */
void deferred_settle(struct deferred *d, const void *owner, const char *path);
/* Waits until no batch in flight holds a change of owner that touches path
 * (what is queued stays queued). */
void deferred_wait_running(struct deferred *d, const void *owner, const char *path);
/* What op does, for messages: "removing", "setting the owner, mode or
 * times of" (then its path). */
const char *deferred_what(const struct wb_op *op);

#endif
