/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_runners.c - the mount's side of the remote layer's runners: the
 * callbacks through which the find listing and the changes by command
 * (listing.h), the deferred-change runner (deferred.h) and crash recovery
 * (recover.h) reach the sandbox registry, the caches and the open files,
 * and the names the rest of src/fuse calls them by.
 */
#include "fs_files_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "recover.h"
#include "urlenc.h"

/* ---- listings and changes by command ------------------------------------------ */

/* After a toolbox error: a stopped sandbox makes the registry re-read it. */
int toolbox_failed(struct dfs *fs, struct sandbox *sb, int rc, const struct sp_error *err,
			  const char *what, const char *path)
{
	if (rc == -EHOSTDOWN) {
		struct sp_error ignored = { 0 };

		sandbox_refresh(fs, sb, &ignored);
		sandbox_set_error(sb, "sandbox '%s' is not running (%s): start it with: echo start > %s/%s/ctl",
				  sb->name, err->message, fs->mountpoint, sb->name);
	} else if (rc != -ENOENT && rc != -EEXIST) {
		sandbox_set_error(sb, "%s %s: %s", what, path, err->message);
	}
	return rc;
}

static void ls_box(void *mount, void *owner, struct sp_box *box)
{
	sandbox_box(owner, box);
}

static int ls_failed(void *mount, void *owner, int rc, const struct sp_error *err, const char *what,
		     const char *path)
{
	return toolbox_failed(mount, owner, rc, err, what, path);
}

static enum list_mode ls_mode_get(void *mount, const void *owner)
{
	return list_mode_get(mount, owner);
}

static void ls_mode_set(void *mount, const void *owner, enum list_mode mode)
{
	list_mode_set(mount, owner, mode);
}

static void ls_link_put(void *mount, const void *owner, const char *path, const char *target)
{
	link_put(mount, owner, path, target);
}

static void ls_link_drop(void *mount, const void *owner, const char *path, bool subtree)
{
	link_drop(mount, owner, path, subtree);
}

static const struct listing_ops files_listing_ops = {
	.box = ls_box,
	.failed = ls_failed,
	.mode_get = ls_mode_get,
	.mode_set = ls_mode_set,
	.link_put = ls_link_put,
	.link_drop = ls_link_drop,
};

/* Commands in sb: bounded by the mount's request timeout (-o timeout). */
void files_listing_ctx(struct dfs *fs, struct sandbox *sb, struct listing_ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->sp = fs->sp;
	c->timeout_s = fs->opt.timeout_s;
	c->cache = fs->cache;
	c->id = sb->id;
	c->name = sb->name;
	c->ops = &files_listing_ops;
	c->mount = fs;
	c->owner = sb;
}

int files_find_list(struct dfs *fs, struct sandbox *sb, const char *dir, const char *child,
		    struct find_entry **out, size_t *n, struct child_listing *cl)
{
	struct listing_ctx c;

	files_listing_ctx(fs, sb, &c);
	return listing_find(&c, dir, child, out, n, cl);
}

int sandbox_sh_once(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out,
		    struct sp_error *err)
{
	struct listing_ctx c;

	files_listing_ctx(fs, sb, &c);
	return listing_sh_once(&c, script, code, out, err);
}

int sandbox_sh(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out)
{
	struct listing_ctx c;

	files_listing_ctx(fs, sb, &c);
	return listing_sh(&c, script, code, out);
}

int run_fs_command(struct dfs *fs, struct sandbox *sb, const char *script, char **out)
{
	struct listing_ctx c;

	files_listing_ctx(fs, sb, &c);
	return listing_run(&c, script, out);
}

void note_command_result(struct dfs *fs, struct sandbox *sb, const char *path, const char *out,
			 enum cache_change what)
{
	struct listing_ctx c;

	files_listing_ctx(fs, sb, &c);
	listing_note_result(&c, path, out, what, NULL);
}

int change_by_command(struct dfs *fs, struct sandbox *sb, struct strbuf *cmd, const char *path,
		      enum cache_change what)
{
	struct listing_ctx c;

	files_listing_ctx(fs, sb, &c);
	return listing_change(&c, cmd, path, what);
}

/* path's parent into parent (cap bytes) and *base its last name, which is
 * not empty ("/" has none). */
bool split_path(const char *path, char *parent, size_t cap, const char **base)
{
	return path_split(path, parent, cap, base) && **base;
}

/* ---- deferred changes ------------------------------------------------------ */

/* The runner's ctx is the open table; t->fs is set before anything is
 * queued (wb_queue_op), so before any batch runs. */
static int wb_sh_once(void *ctx, void *owner, const char *script, int *code, char **out, struct sp_error *err)
{
	struct open_table *t = ctx;
	struct sandbox *sb = owner;
	char state[sizeof(sb->state)];

	/* A sandbox the mount last saw stopped gets no request: a batch waits
	 * for it to run again (wb_send, which has its state read again at
	 * each try: wb_parked). Not sandbox_require_running, whose -o
	 * autostart would start a sandbox for a batch of housekeeping. */
	pthread_mutex_lock(&t->fs->lock);
	memcpy(state, sb->state, sizeof(state));
	pthread_mutex_unlock(&t->fs->lock);
	if (state[0] && !sandbox_state_runs(state))
		return sp_error_set(err, -EHOSTDOWN, 0, "sandbox '%s' is %s", sb->name, state);
	return sandbox_sh_once(t->fs, owner, script, code, out, err);
}

/* A deferred change failed, for the settles that count them
 * (files_settle_sandbox) and fsync of a directory (writeback_error). */
static void count_wb_failure(struct open_table *t, struct sandbox *sb, int err)
{
	pthread_mutex_lock(&t->lock);
	if (!sb->writeback_error)
		sb->writeback_error = err;
	sb->writeback_failures++;
	sb->writeback_last = err;
	pthread_mutex_unlock(&t->lock);
}

/* (deferred_ops.parked) Counted as a failure of the settle that met it
 * (files_settle_sandbox, fsync of a directory), and the sandbox's state is
 * read again (toolbox_failed). */
static void wb_parked(void *ctx, void *owner, int rc, const struct sp_error *err)
{
	struct open_table *t = ctx;

	toolbox_failed(t->fs, owner, rc, err, "command for", "deferred changes");
	count_wb_failure(t, owner, rc);
}

static int wb_send_failed(void *ctx, void *owner, int rc, const struct sp_error *err)
{
	struct open_table *t = ctx;

	return toolbox_failed(t->fs, owner, rc, err, "command for", "deferred changes");
}

/* A deferred change did not happen: the cache forgets what it assumed, the
 * error file says why, and fsync of the directory reports it. */
static void wb_failed(void *ctx, void *owner, const struct wb_op *op, int err, const char *msg)
{
	struct open_table *t = ctx;
	struct sandbox *sb = owner;

	sandbox_set_error(sb, "%s %s failed: %s", deferred_what(op), op->path, msg);
	/* The data is under the temporary name: its crash copy is kept. */
	if (op->kind == WB_MOVE)
		files_keep_drop(t->fs, sb, op->path, op->keep, true);
	cache_invalidate(t->fs->cache, sb->id, op->path);
	link_drop(t->fs, sb, op->path, false);
	count_wb_failure(t, sb, err);
}

static void wb_done_one(void *ctx, void *owner, const struct wb_op *op, const char *text)
{
	struct open_table *t = ctx;
	struct listing_ctx c;
	struct stat st;

	files_listing_ctx(t->fs, owner, &c);
	if (listing_note_result(&c, op->path, text, CACHE_CHANGED, &st) &&
	    (op->ctime_shown.tv_sec || op->ctime_shown.tv_nsec))
		ctime_keep(t->fs, owner, op->path, &st.st_ctim, &op->ctime_shown);
}

/* A move done: its crash copy goes, and its record with a later batch
 * (which runs after the one that may still run again). */
static void wb_moved(void *ctx, void *owner, const struct wb_op *op)
{
	struct open_table *t = ctx;
	char mark[PATH_MAX + 64];

	files_keep_drop(t->fs, owner, op->path, op->keep, false);
	if (wb_move_mark(op, mark, sizeof(mark))) {
		struct wb_op *rm = wb_op_new(owner, WB_DELETE, mark);

		if (rm) {
			rm->lazy = true;
			wb_queue_op(t->fs, rm, WB_MARK_DELAY);
		}
	}
}

static const char *wb_name(const void *owner)
{
	return ((const struct sandbox *)owner)->name;
}

const struct deferred_ops files_deferred_ops = {
	.sh_once = wb_sh_once,
	.send_failed = wb_send_failed,
	.parked = wb_parked,
	.failed = wb_failed,
	.done = wb_done_one,
	.moved = wb_moved,
	.name = wb_name,
};

/* The first queued change ties the runner to the mount: its retry budget is
 * the mount's wait_timeout (WB_RETRY_BUDGET_S when that has no limit). Only
 * wb_queue_op needs it: with nothing queued, nothing runs (and the queue's
 * lock orders this before any batch, in whichever thread it runs). */
static struct deferred *bind_mount(struct dfs *fs)
{
	struct open_table *t = fs->files;

	pthread_mutex_lock(&t->lock);
	if (!t->fs) {
		t->fs = fs;
		if (fs->opt.wait_timeout_s > 0)
			t->deferred.budget_s = (double)fs->opt.wait_timeout_s;
	}
	pthread_mutex_unlock(&t->lock);
	return &t->deferred;
}

void wb_run_all(struct dfs *fs, struct sandbox *sb)
{
	deferred_run_all(&fs->files->deferred, sb);
}

bool wb_queue_op(struct dfs *fs, struct wb_op *op, double delay)
{
	return deferred_queue(bind_mount(fs), op, delay);
}

void files_settle_changes(struct dfs *fs, struct sandbox *sb, const char *path)
{
	deferred_settle(&fs->files->deferred, sb, path);
}

void files_settle(struct dfs *fs, struct sandbox *sb, const char *path)
{
	/* Uploads that wait (-o writeback) first: what is queued of a file
	 * (its times after its upload, say) follows its content. A failure is
	 * kept for fsync of the directory and for the next close. */
	files_writeback_flush(fs, sb, path);
	files_settle_changes(fs, sb, path);
}

int files_settle_sandbox(struct dfs *fs, struct sandbox *sb)
{
	struct open_table *t = fs->files;
	unsigned before;
	int rc;

	rc = files_writeback_flush(fs, sb, NULL);
	if (rc < 0)
		return rc;
	/* Only the failures during this settle count (wb_failed counts them).
	 * sb->writeback_error is left alone: an older failure in it is fsync
	 * of a directory's to report, and setting it aside meanwhile let a
	 * concurrent fsync find 0 and succeed. */
	pthread_mutex_lock(&t->lock);
	before = sb->writeback_failures;
	pthread_mutex_unlock(&t->lock);
	files_settle_changes(fs, sb, NULL);
	pthread_mutex_lock(&t->lock);
	rc = sb->writeback_failures != before ? sb->writeback_last : 0;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* Before a stat of path alone: only what changes its own attributes. */
void files_settle_attr(struct dfs *fs, struct sandbox *sb, const char *path)
{
	if (wb_conflicts_attr(fs->files->deferred.wb, sb, path))
		wb_run_all(fs, sb);
}

struct overlay_ctx {
	struct find_entry *v;
	size_t n;
	struct timespec now;
};

static void overlay_one(void *ctx, const char *name, const struct wb_op *op)
{
	struct overlay_ctx *o = ctx;
	struct find_entry key = { .name = (char *)name };
	struct find_entry *e = bsearch(&key, o->v, o->n, sizeof(*o->v), entry_cmp);

	if (e) {
		wb_apply_attrs(op, &e->st);
		e->st.st_ctim = o->now;   /* as note_attr_change: it moved */
	}
}

void files_overlay_queued(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry *v, size_t n)
{
	struct overlay_ctx o = { .v = v, .n = n };

	clock_gettime(CLOCK_REALTIME, &o.now);
	wb_each_child_attrs(fs->files->deferred.wb, sb, dir, overlay_one, &o);
}

/* ---- crash recovery ----------------------------------------------------------- */

static int rec_upload_fd(void *mount, const struct sp_box *box, const char *path, int fd, uint64_t size,
			 struct sp_error *err)
{
	return files_upload_fd(mount, NULL, box, path, fd, size, err);
}

static int rec_chmod_path(void *mount, const struct sp_box *box, const char *path, mode_t mode,
			  struct sp_error *err)
{
	return files_chmod_path(mount, box, path, mode, err);
}

static bool rec_claim(void *mount, const char *sandbox_id, const char *path)
{
	return files_recovery_claim(mount, sandbox_id, path);
}

static void rec_claim_done(void *mount)
{
	files_recovery_done(mount);
}

static void rec_settle(void *mount, const char *sandbox_id)
{
	struct dfs *fs = mount;
	struct sandbox *sb;

	pthread_mutex_lock(&fs->lock);
	sb = registry_by_id(&fs->registry, sandbox_id);   /* entries last as long as the mount */
	pthread_mutex_unlock(&fs->lock);
	if (sb)
		files_settle_sandbox(fs, sb);   /* a failure stays for fsync and the next close */
}

struct recovery *mount_recover_scan(struct dfs *fs)
{
	struct recover_ctx ctx = {
		.sp = fs->sp,
		.stage = fs->stage,
		.cache = fs->cache,
		.mount = fs,
		.upload_fd = rec_upload_fd,
		.chmod_path = rec_chmod_path,
		.claim = rec_claim,
		.claim_done = rec_claim_done,
		.settle = rec_settle,
	};

	return recover_scan(&ctx);
}
