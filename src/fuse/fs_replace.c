/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_replace.c - a file made where this mount's delete of it still waits
 * in the deferred queue: uploaded under a temporary name in its directory
 * and moved into place by a queued mv after that delete (a new inode, as
 * after delete-then-create, without a round trip for the delete), with a
 * crash copy of what was uploaded until the move has run. SEMANTICS.md,
 * section 4, "A file made where this mount's delete waits".
 * The design of the file proxy is in fs_files_int.h.
 */
#include "fs_files_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "rfs.h"
#include "stage.h"
#include "strbuf.h"
#include "tmpname.h"
#include "urlenc.h"
#include "writeback.h"

/*
 * Whether an upload of n may replace path under a temporary name when a
 * delete (or an earlier such move) of path waits in the queue: the move is
 * a command (not where commands do not work), the temporary name must be
 * uploaded as is (not Vercel's uploads, which write by command in place,
 * nor a name with white space at its ends), and the copy kept for crash
 * recovery is small. Caller holds n->lock.
 */
bool replace_ok(struct dfs *fs, struct open_node *n)
{
	return strrchr(n->path, '/') && list_mode_get(fs, n->sb) != LIST_API &&
	       !sp_has(fs->sp, SP_CAP_UPLOAD_IN_PLACE) && !sp_upload_path_changed(fs->sp, n->path) &&
	       (!n->stage || stage_size(n->stage) <= UP_SHARE_MAX);
}

bool files_create_may_replace(struct dfs *fs, struct sandbox *sb, const char *path)
{
	return strrchr(path, '/') && list_mode_get(fs, sb) != LIST_API && !sp_has(fs->sp, SP_CAP_UPLOAD_IN_PLACE) &&
	       !sp_upload_path_changed(fs->sp, path) && wb_only_own(fs->files->deferred.wb, sb, path);
}

/* A copy of n's stage with a crash-journal record of its own ("flushed",
 * at n's path, checked against base): what a queued move holds until it
 * has run, so that a crash of the mount meanwhile does not leave the data
 * only under the temporary name. Its staging-area name (malloc'd), or NULL
 * when it cannot be made. Not fsync'd, as a close's record is not. Caller
 * holds n->lock. */
static char *keep_copy(struct dfs *fs, struct open_node *n, const struct stat *base)
{
	struct journal_rec *r = calloc(1, sizeof(*r));
	struct stage *c = NULL;
	uint64_t size = stage_size(n->stage);
	char *name = NULL;
	int rc;

	if (!r || stage_copy(fs->stage, n->stage, size, &c) < 0)
		goto out;
	r->state = JOURNAL_FLUSHED;
	str_copy(r->sandbox_id, sizeof(r->sandbox_id), n->sb->id);
	str_copy(r->sandbox_name, sizeof(r->sandbox_name), n->sb->name);
	if (!str_copy(r->path, sizeof(r->path), n->path))
		goto out;
	if (S_ISREG(base->st_mode)) {
		r->base.kind = JOURNAL_BASE_FILE;
		r->base.size = (uint64_t)base->st_size;
		r->base.mtime = base->st_mtim;
	}
	r->mode = n->st.st_mode & 07777;
	r->size = size;
	r->time = (long long)time(NULL);
	rc = journal_create(stage_area_staging(fs->stage), stage_name(c), r, false);
	if (rc < 0)
		goto out;
	close(rc);
	name = strdup(stage_name(c));
	if (!name)
		journal_remove(stage_area_staging(fs->stage), stage_name(c));
out:
	if (c && name)
		stage_close_keep(c);
	else if (c)
		stage_free(c);
	free(r);
	return name;
}

/* The move's copy is no longer wanted (the move ran, or a newer upload
 * replaced it): record first, then the copy. preserve: the move failed, so
 * the copy goes to unsaved/ (the data is nowhere else under its name). */
void files_keep_drop(struct dfs *fs, const struct sandbox *sb, const char *path, const char *keep, bool preserve)
{
	struct stage *c = NULL;
	char where[4096];

	if (!keep)
		return;
	if (stage_adopt(fs->stage, keep, &c) < 0) {
		journal_remove(stage_area_staging(fs->stage), keep);
		return;
	}
	if (preserve) {
		char label[4600];

		snprintf(label, sizeof(label), "%s:%s", sb->name, path);
		if (stage_preserve(c, label, where, sizeof(where)) < 0) {
			/* stays staged with its record, for the next mount */
			stage_close_keep(c);
			return;
		}
		log_error("%s: %s could not be moved into place; its content is saved in %s", sb->name, path,
			  where);
	}
	journal_remove(stage_area_staging(fs->stage), keep);
	stage_free(c);
}

/* Queues rm -f of a temporary name that is not wanted (a failed upload may
 * have left part of it), or removes it at once when nothing can be queued. */
static void drop_tmp(struct dfs *fs, struct sandbox *sb, const char *tmp)
{
	struct wb_op *op = wb_op_new(sb, WB_DELETE, tmp);
	struct sp_error ignored = { 0 };
	struct sp_box box;

	if (op && wb_queue_op(fs, op, WB_DELAY))
		return;
	sandbox_box(sb, &box);
	rfs_delete(fs->sp, &box, tmp, false, &ignored);
}

/*
 * Uploads n where a delete of its path (or n's own earlier move) waits in
 * the queue: the file must be a new inode, as after delete-then-create
 * (an upload into the path would write into the old file's other hard
 * links and open readers, and fail on a running binary). The stage goes
 * to a new temporary name in the same directory and a queued
 * `mv -f -T TMP PATH` puts it in place after the delete, in the same
 * batch: the delete no longer costs a round trip before the upload. Until
 * the move has run, a copy of the stage with its own journal record
 * (keep_copy) covers a crash of the mount. n's previous move, still
 * queued (rp->prev_src), stays in its place until this upload has landed
 * and is then given this one's name (wb_swap_move): a batch sent meanwhile
 * (an exec, a listing, a rename) must put what the last fsync promised at
 * the path, and a failed upload must not move that move behind what was
 * queued since. When nothing can be queued (no memory, no copy), the queue
 * is sent and the move run now. Caller holds n->lock.
 */
int upload_replacing(struct dfs *fs, struct open_node *n, struct replace *rp, struct sp_error *err)
{
	struct strbuf tmp = STRBUF_INIT, cmd = STRBUF_INIT;
	const char *slash = strrchr(n->path, '/');
	struct wb_op *op = NULL;
	struct sp_box box;
	char tname[96];
	char *keep = NULL;
	int rc;

	sb_add(&tmp, n->path, (size_t)(slash - n->path) + 1);
	if (!tmp_name(tname, sizeof(tname), ".daytonafs-replace"))
		tmp.oom = true;
	sb_adds(&tmp, tname);
	if (tmp.oom) {
		rc = sp_error_set(err, -ENOMEM, 0, "write %s: out of memory", n->path);
		goto failed;
	}
	sandbox_box(n->sb, &box);
	rc = upload_shared(fs, n->sb, &box, sb_str(&tmp), stage_fd(n->stage), stage_size(n->stage), err);
	if (rc < 0) {
		drop_tmp(fs, n->sb, sb_str(&tmp));
		goto failed;
	}
	keep = keep_copy(fs, n, &rp->base);
	op = keep ? wb_op_new(n->sb, WB_MOVE, n->path) : NULL;
	if (op) {
		op->src = strdup(sb_str(&tmp));
		op->st = rp->base;
	}
	if (op && op->src) {
		char kname[64];

		str_copy(kname, sizeof(kname), keep);
		op->keep = keep;
		keep = NULL;
		if (rp->prev_src && wb_swap_move(fs->files->deferred.wb, n->sb, n->path, rp->prev_src, op)) {
			/* The previous upload's move, still queued, now moves
			 * this one: its name and copy go. */
			drop_tmp(fs, n->sb, op->src);
			files_keep_drop(fs, n->sb, n->path, op->keep, false);
			wb_op_free(op);
			goto out;
		}
		if (wb_queue_op(fs, op, WB_DELAY))
			goto out;
		op = NULL;   /* freed, with its copy's name */
		files_keep_drop(fs, n->sb, n->path, kname, false);
	}
	/* Nothing queued: the delete first, then the move, now. */
	wb_op_free(op);
	if (keep) {
		files_keep_drop(fs, n->sb, n->path, keep, false);
		free(keep);
		keep = NULL;
	}
	files_settle_changes(fs, n->sb, n->path);
	sb_adds(&cmd, "mv -f -T -- ");
	sh_word(&cmd, sb_str(&tmp));
	sb_addc(&cmd, ' ');
	sh_word(&cmd, n->path);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, n->sb, sb_str(&cmd), NULL);
	if (rc < 0) {
		sp_error_set(err, rc, 0, "write %s: moving the upload into place failed: %s", n->path,
			     strerror(-rc));
		drop_tmp(fs, n->sb, sb_str(&tmp));
	}
	goto out;
failed:
	/* (A previous upload's move stays queued, in its place.) */
out:
	free(rp->prev_src);
	rp->prev_src = NULL;
	sb_free(&tmp);
	sb_free(&cmd);
	return rc;
}
