/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_deferred.c - the deferred-change runner (writeback.h): changes queued for a
 * short while, then sent in batches as one command, retried while the
 * sandbox refuses, their failures kept for fsync of the directory.
 * The design of the file proxy is in fs_files_int.h.
 */
#include "fs_files_int.h"

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

#include "journal.h"
#include "log.h"
#include "strbuf.h"
#include "urlenc.h"
#include "writeback.h"

/* ---- deferred changes (writeback.h) --------------------------------------------- */

static const char *wb_what(const struct wb_op *op)
{
	return op->kind == WB_DELETE ? "removing" : "setting the owner, mode or times of";
}

/* A deferred change did not happen: the cache forgets what it assumed, the
 * error file and the log say why, and fsync of the directory reports it. */
static void wb_failed(struct dfs *fs, struct sandbox *sb, const struct wb_op *op, int err, const char *msg)
{
	log_warn("%s: %s %s failed: %s", sb->name, wb_what(op), op->path, msg);
	sandbox_set_error(sb, "%s %s failed: %s", wb_what(op), op->path, msg);
	cache_invalidate(fs->cache, sb->id, op->path);
	link_drop(fs, sb, op->path, false);
	pthread_mutex_lock(&fs->files->lock);
	if (!sb->writeback_error)
		sb->writeback_error = err;
	pthread_mutex_unlock(&fs->files->lock);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Sends a batch's script, and sends it again after a failure that may pass
 * (dt_error_transient: no answer, a reset, 5xx, 429), with backoff, for up
 * to wait_timeout: a delete that unlink reported done must not come back
 * because of one lost request. Safe, as every op of a batch is idempotent
 * (rm -f, chown, chmod to a number, touch -c to a given time), so a batch
 * that ran but whose answer was lost may run again. Only the sandbox's own
 * refusal of an op (its part of the output) drops a change. *resent: the
 * script may have run before the answer that counts.
 */
static int wb_send(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out, bool *resent)
{
	double start = now_mono();
	double budget = fs->opt.wait_timeout_s > 0 ? (double)fs->opt.wait_timeout_s : WB_RETRY_BUDGET_S;
	long wait = WB_RETRY_FIRST_MS;

	*resent = false;
	for (;;) {
		struct dt_error err = { 0 };
		int rc = sandbox_sh_once(fs, sb, script, code, out, &err);

		if (rc == 0)
			return 0;
		if (!dt_error_transient(&err) || now_mono() - start + (double)wait / 1000.0 > budget)
			return toolbox_failed(fs, sb, rc, &err, "command for", "deferred changes");
		log_info("%s: deferred changes: %s; sending them again in %ld ms", sb->name, err.message, wait);
		sleep_ms(wait);
		wait = wait * 2 > WB_RETRY_MAX_MS ? WB_RETRY_MAX_MS : wait * 2;
		*resent = true;
	}
}

/* On a batch sent again: a failure that the first send explains. An owner
 * or mode change of a path that a later op of the batch deletes finds it
 * gone, if the first send ran the batch. */
static bool wb_done_by_first_send(const struct wb_op *op, const char *text)
{
	if (op->kind != WB_ATTRS || errno_from_message(text) != -ENOENT)
		return false;
	for (const struct wb_op *o = op->next; o; o = o->next)
		if (o->kind == WB_DELETE && !strcmp(o->path, op->path))
			return true;
	return false;
}

/* Runs one batch (all of one sandbox) as one command and applies what each
 * op's part of the output says. Caller holds wb_run. */
static void wb_run_batch(struct dfs *fs, struct wb_op *batch)
{
	static unsigned counter;
	struct sandbox *sb = (struct sandbox *)batch->owner;
	struct strbuf script = STRBUF_INIT;
	struct wb_result *res;
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
	wb_script(&script, batch, mark, FIND_FMT);
	log_debug("%s: %zu deferred changes in one command, from %s", sb->name, n, batch->path);
	if (!res || script.oom)
		rc = -ENOMEM;
	else
		rc = wb_send(fs, sb, sb_str(&script), &code, &out, &resent);
	if (rc == 0 && out)
		wb_parse(out, strlen(out), mark, res, n);
	for (struct wb_op *op = batch; op; op = op->next, i++) {
		enum wb_status status = res && rc == 0 ? res[i].status : WB_UNKNOWN;
		char *text = status != WB_UNKNOWN ? strndup(res[i].text, res[i].len) : NULL;

		if (status == WB_FAILED && resent && wb_done_by_first_send(op, text))
			status = WB_OK;
		if (status == WB_OK && op->kind == WB_ATTRS && op->stat_after) {
			/* Not if a later change (a delete, say) makes it stale: the
			 * cache already holds what that one left. */
			if (!wb_superseded(fs->files->wb, op))
				note_command_result(fs, sb, op->path, text, CACHE_CHANGED);
		}
		else if (status == WB_FAILED)
			wb_failed(fs, sb, op, errno_from_message(text), text ? text : "");
		else if (status == WB_UNKNOWN)
			wb_failed(fs, sb, op, rc < 0 ? rc : -EIO,
				  rc < 0 ? strerror(-rc) : "the command ended before it got there");
		free(text);
	}
	free(res);
	free(out);
	sb_free(&script);
}

/* Runs everything queued of sb (of every sandbox when NULL), hidden deletes
 * included, after any batch in flight. */
void wb_run_all(struct dfs *fs, struct sandbox *sb)
{
	struct open_table *t = fs->files;
	struct wb_op *batch;

	pthread_mutex_lock(&t->wb_run);
	while ((batch = wb_take(t->wb, sb, false, now_mono())) != NULL) {
		wb_run_batch(fs, batch);
		wb_done(t->wb, batch);
	}
	pthread_mutex_unlock(&t->wb_run);
}

static void *wb_main(void *arg)
{
	struct open_table *t = arg;
	struct wb_op *batch;

	while (wb_wait(t->wb)) {
		pthread_mutex_lock(&t->wb_run);
		while ((batch = wb_take(t->wb, NULL, true, now_mono())) != NULL) {
			wb_run_batch(t->fs, batch);
			wb_done(t->wb, batch);
		}
		pthread_mutex_unlock(&t->wb_run);
	}
	return NULL;
}

/* Queues op (the queue takes it) to run after delay; false when it cannot be
 * queued (no memory, no thread): op is freed, and the caller does the change
 * at once. Only where commands work: the batch is a command. */
bool wb_queue_op(struct dfs *fs, struct wb_op *op, double delay)
{
	struct open_table *t = fs->files;
	bool ok = true;

	pthread_mutex_lock(&t->lock);
	t->fs = fs;
	if (!t->wb_thread_on) {
		if (pthread_create(&t->wb_thread, NULL, wb_main, t) == 0)
			t->wb_thread_on = true;
		else
			ok = false;
	}
	pthread_mutex_unlock(&t->lock);
	if (ok)
		ok = wb_push(t->wb, op, now_mono(), delay);
	if (!ok)
		wb_op_free(op);
	return ok;
}

void files_settle_changes(struct dfs *fs, struct sandbox *sb, const char *path)
{
	if (wb_conflicts(fs->files->wb, sb, path))
		wb_run_all(fs, sb);
}

void files_settle(struct dfs *fs, struct sandbox *sb, const char *path)
{
	/* Uploads that wait (-o writeback) first: what is queued of a file
	 * (its times after its upload, say) follows its content. A failure is
	 * kept for fsync of the directory and for the next close. */
	files_writeback_flush(fs, sb, path);
	files_settle_changes(fs, sb, path);
}

/* Before a stat of path alone: only what changes its own attributes. */
void files_settle_attr(struct dfs *fs, struct sandbox *sb, const char *path)
{
	if (wb_conflicts_attr(fs->files->wb, sb, path))
		wb_run_all(fs, sb);
}
