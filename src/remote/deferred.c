/* SPDX-License-Identifier: Apache-2.0 */
/*
 * deferred.c - the deferred-change runner (writeback.h): changes queued for a
 * short while, then sent in batches as one command, retried while the
 * sandbox refuses, their failures handed to the caller (deferred.h).
 * Why the mount defers them is in src/fuse/fs_files_int.h.
 */
#include "deferred.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "writeback.h"

/* ---- deferred changes (writeback.h) --------------------------------------------- */

const char *deferred_what(const struct wb_op *op)
{
	if (op->kind == WB_MOVE)
		return "moving a new upload into place at";
	return op->kind == WB_DELETE ? "removing" : "setting the owner, mode or times of";
}

/* A deferred change did not happen: the log says why, and the caller
 * forgets what it assumed and reports it. */
static void wb_failed(struct deferred *d, void *sb, const struct wb_op *op, int err, const char *msg)
{
	log_warn("%s: %s %s failed: %s", d->ops->name(sb), deferred_what(op), op->path, msg);
	d->ops->failed(d->ctx, sb, op, err, msg);
}

/*
 * Sends a batch's script, and sends it again after a failure that may pass
 * (sp_error_transient: no answer, a reset, 5xx, 429), with backoff, for up
 * to wait_timeout: a delete that unlink reported done must not come back
 * because of one lost request. Safe, as the script of a batch does and
 * says the same when run again after it ran (wb_script: rm -f, chown,
 * chmod to a number, touch -c to a given time; a move and the ops beside
 * it by the move's record), so a batch that ran but whose answer was lost
 * may run again. Only the sandbox's own
 * refusal of an op (its part of the output) drops a change. *resent: the
 * script may have run before the answer that counts.
 *
 * The backoff never holds wb_run, which every sandbox's batches need: one
 * sandbox that refuses for a while must not hold up the others' changes,
 * nor the settles that wait for them. With requeue (the runner thread),
 * the batch goes back to the queue, due after the backoff, and 1 is
 * returned; else (a settle, which must wait for this sandbox) the caller
 * sleeps with wb_run released. Either way its ops stay ahead of their
 * sandbox's later ones: wb_take takes nothing of a sandbox with a batch in
 * flight, and a requeued batch keeps its place. Caller holds wb_run.
 */
static int wb_send(struct deferred *d, void *sb, struct wb_op *batch, const char *script, int *code,
		   char **out, bool *resent, bool requeue, bool park_down)
{
	double start = 0, now;
	double budget = d->budget_s;
	long wait = WB_RETRY_FIRST_MS;

	*resent = false;
	for (const struct wb_op *op = batch; op; op = op->next) {
		/* A requeued batch: the budget and backoff go on from its last try. */
		if (op->sent)
			*resent = true;
		if (op->retry_start > 0 && (start == 0 || op->retry_start < start)) {
			start = op->retry_start;
			wait = op->retry_wait_ms;
		}
	}
	for (;;) {
		struct sp_error err = { 0 };
		int rc = d->ops->sh_once(d->ctx, sb, script, code, out, &err);
		bool down;

		if (rc == 0)
			return 0;
		now = wb_now();
		if (start == 0)
			start = now;
		/* A sandbox that is not running (stopped by its timeout or by
		 * another client while the batch waited its WB_DELAY) is a
		 * failure that may pass too: dropped, the delete that unlink
		 * said done came back when it was started again. Not for the
		 * last settle of all sandboxes (park_down false: the unmount),
		 * after which nobody sends it. */
		down = rc == -EHOSTDOWN && park_down;
		if (!(sp_error_transient(&err) || down) || now - start + (double)wait / 1000.0 > budget)
			return d->ops->send_failed(d->ctx, sb, rc, &err);
		log_info("%s: deferred changes: %s; sending them again in %ld ms", d->ops->name(sb), err.message, wait);
		for (struct wb_op *op = batch; op; op = op->next) {
			op->sent = true;
			op->retry_start = start;
			op->retry_wait_ms = wait * 2 > WB_RETRY_MAX_MS ? WB_RETRY_MAX_MS : wait * 2;
		}
		/* A settle does not wait for a sandbox to be started: what it
		 * settles for meets the stopped sandbox too. The batch goes
		 * back to the queue, for the runner to send again
		 * (deferred_run_all). */
		if (down && d->ops->parked)
			d->ops->parked(d->ctx, sb, rc, &err);
		if (requeue || down) {
			wb_requeue(d->wb, batch, now + (double)wait / 1000.0);
			pthread_cond_broadcast(&d->idle);
			return 1;
		}
		pthread_mutex_unlock(&d->wb_run);
		sleep_ms(wait);
		pthread_mutex_lock(&d->wb_run);
		wait = wait * 2 > WB_RETRY_MAX_MS ? WB_RETRY_MAX_MS : wait * 2;
		*resent = true;
	}
}

/* On a batch sent again: a failure that the first send explains. An owner
 * or mode change of a path that a later op of the batch deletes finds it
 * gone, if the first send ran the batch. */
static bool wb_done_by_first_send(const struct wb_op *op, const char *text)
{
	/* (Not a move whose temporary name is gone: the directory may have
	 * gone too. A move that ran says so itself: wb_move_mark.) */
	if (op->kind != WB_ATTRS || errno_from_message(text) != -ENOENT)
		return false;
	for (const struct wb_op *o = op->next; o; o = o->next)
		if (o->kind == WB_DELETE && !strcmp(o->path, op->path))
			return true;
	return false;
}

struct done_call {
	struct deferred *d;
	void *sb;
	const struct wb_op *op;
	const char *text;
};

static void call_done(void *arg)
{
	struct done_call *c = arg;

	c->d->ops->done(c->d->ctx, c->sb, c->op, c->text);
}

/* Runs one batch (all of one sandbox) as one command and applies what each
 * op's part of the output says, then lets it go (wb_done). False: the
 * batch went back to the queue (wb_send's requeue). Caller holds wb_run. */
static bool wb_run_batch(struct deferred *d, struct wb_op *batch, bool requeue, bool park_down)
{
	static unsigned counter;
	void *sb = (void *)batch->owner;
	struct strbuf script = STRBUF_INIT;
	struct wb_result *res;
	struct wb_since since;
	double unsure;
	struct timespec now;
	char mark[48], *out = NULL;
	size_t n = 0, i = 0;
	bool resent = false;
	int code = 0, rc;

	for (const struct wb_op *op = batch; op; op = op->next)
		n++;
	res = calloc(n, sizeof(*res));
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(mark, sizeof(mark), "dfs%x%lx%x", (unsigned)getpid(), (unsigned long)now.tv_nsec,
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	since.built = wb_now();
	since.floor = d->last_done;
	unsure = http_last_unsure();
	wb_script(&script, batch, mark, d->find_fmt,
		  unsure > 0 && since.built - unsure < d->unsure_s ? NULL : &since);
	log_debug("%s: %zu deferred changes in one command, from %s", d->ops->name(sb), n, batch->path);
	if (!res || script.oom)
		rc = -ENOMEM;
	else
		rc = wb_send(d, sb, batch, sb_str(&script), &code, &out, &resent, requeue, park_down);
	d->last_done = wb_now();
	if (rc > 0) {
		free(res);
		free(out);
		sb_free(&script);
		return false;
	}
	if (rc == 0 && out)
		wb_parse(out, strlen(out), mark, res, n);
	for (struct wb_op *op = batch; op; op = op->next, i++) {
		enum wb_status status = res && rc == 0 ? res[i].status : WB_UNKNOWN;
		char *text = status != WB_UNKNOWN ? strndup(res[i].text, res[i].len) : NULL;

		if (status == WB_FAILED && resent && wb_done_by_first_send(op, text))
			status = WB_OK;
		if (status == WB_OK && op->kind == WB_ATTRS && op->stat_after) {
			/* Not if a later change (a delete, an upload that went on
			 * beside it) makes it stale: the cache already holds what
			 * that one left. */
			struct done_call c = { d, sb, op, text };

			wb_if_current(d->wb, op, call_done, &c);
		}
		else if (status == WB_OK && op->kind == WB_MOVE && d->ops->moved)
			d->ops->moved(d->ctx, sb, op);
		else if (status == WB_FAILED)
			wb_failed(d, sb, op, errno_from_message(text), text ? text : "");
		else if (status == WB_UNKNOWN)
			wb_failed(d, sb, op, rc < 0 ? rc : -EIO,
				  rc < 0 ? strerror(-rc) : "the command ended before it got there");
		free(text);
	}
	free(res);
	free(out);
	sb_free(&script);
	wb_done(d->wb, batch);
	pthread_cond_broadcast(&d->idle);
	return true;
}

/* Runs everything of owner (NULL: of every owner) queued now, and waits for
 * a batch of it that another thread has in flight (backing off, say). */
void deferred_run_all(struct deferred *d, const void *owner)
{
	struct wb_op *batch;

	pthread_mutex_lock(&d->wb_run);
	for (;;) {
		/* (Lazy housekeeping alone is not worth a command now.) */
		batch = wb_eager(d->wb, owner) ? wb_take(d->wb, owner, false, wb_now()) : NULL;
		if (batch) {
			/* false: back in the queue, its sandbox not running
			 * (wb_send): not waited for. */
			if (!wb_run_batch(d, batch, false, owner != NULL))
				break;
		} else if (wb_busy(d->wb, owner)) {
			pthread_cond_wait(&d->idle, &d->wb_run);
		} else {
			break;
		}
	}
	pthread_mutex_unlock(&d->wb_run);
}

void deferred_forget(struct deferred *d, const void *owner)
{
	struct wb_op *batch;

	pthread_mutex_lock(&d->wb_run);
	for (;;) {
		batch = wb_take(d->wb, owner, false, wb_now());
		if (batch) {
			log_debug("%s: deferred changes dropped with the sandbox, from %s", d->ops->name(batch->owner),
				  batch->path);
			/* A move's crash copy goes with it: kept, a later mount's
			 * recovery would write the deleted sandbox's file into a
			 * new sandbox of the same name (Vercel's id is its name). */
			for (const struct wb_op *op = batch; op; op = op->next)
				if (op->kind == WB_MOVE && op->keep && d->ops->moved)
					d->ops->moved(d->ctx, (void *)batch->owner, op);
			wb_done(d->wb, batch);
		} else if (wb_busy(d->wb, owner)) {
			pthread_cond_wait(&d->idle, &d->wb_run);
		} else {
			break;
		}
	}
	pthread_cond_broadcast(&d->idle);
	pthread_mutex_unlock(&d->wb_run);
}

static void *wb_main(void *arg)
{
	struct deferred *d = arg;
	struct wb_op *batch;

	while (wb_wait(d->wb)) {
		pthread_mutex_lock(&d->wb_run);
		while ((batch = wb_take(d->wb, NULL, true, wb_now())) != NULL)
			wb_run_batch(d, batch, true, true);
		pthread_mutex_unlock(&d->wb_run);
	}
	return NULL;
}

bool deferred_queue(struct deferred *d, struct wb_op *op, double delay)
{
	bool ok = true;

	pthread_mutex_lock(&d->lock);
	if (!d->wb_thread_on) {
		if (pthread_create(&d->wb_thread, NULL, wb_main, d) == 0)
			d->wb_thread_on = true;
		else
			ok = false;
	}
	pthread_mutex_unlock(&d->lock);
	if (ok)
		ok = wb_push(d->wb, op, wb_now(), delay);
	if (!ok)
		wb_op_free(op);
	return ok;
}

void deferred_wait_running(struct deferred *d, const void *owner, const char *path)
{
	/* A batch runs with wb_run held, and lets it go only to sleep before
	 * it is sent again (wb_send), then signals idle when done. */
	pthread_mutex_lock(&d->wb_run);
	while (wb_running_touches(d->wb, owner, path))
		pthread_cond_wait(&d->idle, &d->wb_run);
	pthread_mutex_unlock(&d->wb_run);
}

void deferred_settle(struct deferred *d, const void *owner, const char *path)
{
	if (wb_conflicts(d->wb, owner, path))
		deferred_run_all(d, owner);
}

int deferred_init(struct deferred *d, size_t batch_max, const struct deferred_ops *ops, void *ctx,
		  const char *find_fmt)
{
	memset(d, 0, sizeof(*d));
	d->wb = wb_new(batch_max);
	if (!d->wb)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->wb_run, NULL);
	pthread_cond_init(&d->idle, NULL);
	d->budget_s = WB_RETRY_BUDGET_S;
	d->find_fmt = find_fmt;
	d->unsure_s = 2 * 60 + 10;
	d->ops = ops;
	d->ctx = ctx;
	return 0;
}

void deferred_fini(struct deferred *d)
{
	if (!d->wb)
		return;
	if (d->wb_thread_on) {
		wb_stop(d->wb);
		pthread_join(d->wb_thread, NULL);
		d->wb_thread_on = false;
	}
	deferred_run_all(d, NULL);
	wb_free(d->wb);
	d->wb = NULL;
	pthread_mutex_destroy(&d->wb_run);
	pthread_cond_destroy(&d->idle);
	pthread_mutex_destroy(&d->lock);
}
