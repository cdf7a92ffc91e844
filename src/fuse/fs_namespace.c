/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_namespace.c - namespace and attribute changes of the sandbox's files:
 * mkdir, unlink, rmdir, rename, chmod, chown, utimens, symlink, readlink,
 * mknod.
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
#include "prefetch.h"
#include "rename_pin.h"
#include "strbuf.h"
#include "urlenc.h"
#include "writeback.h"
#include "rfs.h"

/* ---- namespace ------------------------------------------------------------------- */

static int flush_under(struct dfs *fs, struct sandbox *sb, const char *path);
static int delete_later(struct dfs *fs, struct sandbox *sb, const char *path, const struct stat *st, bool hidden);

int files_mkdir(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	struct stat st;
	int rc;

	files_settle(fs, sb, path);
	/* The toolbox's mkdir is mkdir -p: it succeeds on an existing directory.
	 * POSIX mkdir must fail on an existing path (and the kernel looked it
	 * up just before, so this costs nothing). */
	rc = lookup_attr(fs, sb, path, &st);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	mode &= 07777;
	if ((mode & 07022) == 0 && list_mode_get(fs, sb) == LIST_API) {
		/* The toolbox applies the sandbox's umask (022) to the mode; for
		 * these modes that changes nothing. (Where commands work, mkdir -m
		 * costs the same one request and returns the exact attributes,
		 * which tools stat right after.) */
		sandbox_box(sb, &box);
		rc = sp_fs_mkdir(fs->sp, &box, path, mode, &err);
		if (rc == -EINVAL)
			rc = -EEXIST;   /* a file is in the way */
		if (rc < 0)
			return toolbox_failed(fs, sb, rc, &err, "mkdir", path);
		memset(&st, 0, sizeof(st));
		st.st_mode = S_IFDIR | mode;
		st.st_nlink = 2;
		clock_gettime(CLOCK_REALTIME, &st.st_mtim);
		cache_update(fs->cache, sb->id, path, CACHE_REPLACED, &st, false);
	} else {
		/* mkdir -m sets the mode exactly, group or other write and
		 * special bits included. */
		struct strbuf cmd = STRBUF_INIT;

		sb_addf(&cmd, "mkdir -m %04o -- ", (unsigned)mode);
		sh_word(&cmd, path);
		rc = change_by_command(fs, sb, &cmd, path, CACHE_REPLACED);
		if (rc < 0)
			return rc;
	}
	link_drop(fs, sb, path, true);
	/* A directory just made is empty: lookups in it cost nothing. */
	cache_put_dir(fs->cache, sb->id, path, NULL, 0, cache_generation(fs->cache, sb->id));
	return 0;
}

/* Removes a path that is not a directory: a link with a command (the
 * toolbox follows links, and answers 404 for a dangling one), anything else
 * with the file API. */
static int remove_path(struct dfs *fs, struct sandbox *sb, const char *path, const struct stat *st)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	int rc;

	if (st && S_ISLNK(st->st_mode)) {
		struct strbuf cmd = STRBUF_INIT;

		sb_adds(&cmd, "rm -- ");
		sh_word(&cmd, path);
		rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
		sb_free(&cmd);
		return rc;
	}
	sandbox_box(sb, &box);
	rc = rfs_delete(fs->sp, &box, path, false, &err);
	/* Daytona's file API answers a delete of a directory without
	 * recursive with 400. Where the delete is a command (Vercel), rm says
	 * "Is a directory" itself, and a 400 is a refused request. */
	if (rc == -EINVAL && sp_has(fs->sp, SP_CAP_FS_DELETE))
		rc = -EISDIR;
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "unlink", path);
	return 0;
}

/* n's name is gone from the sandbox (or never reached it): its staged data
 * and crash-journal record go, and nothing of it is uploaded again. Only
 * after the remove succeeded: an unlink that fails keeps the file, and with
 * it what was written to it. Caller holds n->lock. */
static void node_unlinked(struct dfs *fs, struct open_node *n)
{
	n->unlinked = true;
	n->dirty = false;
	journal_drop(fs, n);
}

/*
 * A new file whose upload was sent and failed (n->maybe_remote) may be in
 * the sandbox all the same: the request did its work and only its answer
 * was lost. Its unlink (or hiding) removes it there now, as rm -f does (a
 * file the upload never made is no error), not later: its crash-journal
 * record goes with the unlink, and a queued delete lost in a crash would
 * leave it there. What is queued for the path goes first. Caller holds
 * n->lock, so no retry of the upload (-o writeback, the empty-file wait)
 * lands after the delete: it finds the node unlinked.
 */
static int remove_maybe_landed(struct dfs *fs, struct open_node *n, const char *path)
{
	int rc;

	files_settle_changes(fs, n->sb, path);
	rc = remove_path(fs, n->sb, path, NULL);
	return rc == -ENOENT ? 0 : rc;
}

int files_unlink(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct open_node *n;
	struct stat st, node_st;
	bool only_local = false, have_st = false, open = false;
	int rc = 0;

	if (is_hidden_name(path))
		return 0;   /* the last close of an unlinked file: it left the sandbox at its unlink */
	/* A kept upload of path (keep_uploaded) is not what a file created
	 * there next holds, whatever its size and time. */
	prefetch_drop_path(fs->files->prefetch, sb->id, path);
	n = node_find(fs->files, sb, path);

	if (n) {
		/* Open descriptors keep reading what the file held. A node
		 * without any (a closed file whose upload waits, -o writeback)
		 * is a closed file: its data goes, its delete waits as any. */
		node_stat(n, &node_st);   /* (takes n->lock) */
		pthread_mutex_lock(&n->lock);
		only_local = n->is_new;
		open = n->handles > 0;
		if (!only_local && open)
			rc = ensure_populated(fs, n);
		if (only_local && n->maybe_remote) {
			rc = remove_maybe_landed(fs, n, path);
			if (rc < 0) {
				/* kept, with its data: the unlink did not happen */
				pthread_mutex_unlock(&n->lock);
				node_release(fs, n);
				cache_invalidate(fs->cache, sb->id, path);
				return rc;
			}
		}
		if (rc == 0 && only_local)
			node_unlinked(fs, n);   /* never in the sandbox (or removed there now) */
		pthread_mutex_unlock(&n->lock);
		if (rc < 0 && rc != -ENOENT) {
			node_release(fs, n);
			return rc;
		}
	}
	if (!only_local) {
		if (n && !open && S_ISREG(node_st.st_mode)) {
			st = node_st;   /* a regular file: the node says so, no request */
			have_st = true;
		} else {
			have_st = lookup_attr(fs, sb, path, &st) == 0;
		}
		if (have_st && S_ISDIR(st.st_mode)) {
			if (n)
				node_release(fs, n);
			return -EISDIR;
		}
		/* rm -r unlinks a tree one file at a time, each waiting for the
		 * last: the deletes of files no descriptor holds open go out
		 * together, later. An open one goes now: its content was just
		 * read for the descriptors, and they expect nothing else; and so
		 * does one in a directory known to refuse the sandbox's file user
		 * (files_parent_may_refuse), so that rm gets the sandbox's answer.
		 * What is queued for the path goes first. The node's lock is
		 * held over the remove, so that no upload of it (a close
		 * meanwhile) lands after the delete, and its data is dropped
		 * only once the remove succeeded (or is queued). */
		bool later = have_st && !open && !files_parent_may_refuse(fs, sb, path);

		if (!later)
			files_settle(fs, sb, path);
		if (n)
			pthread_mutex_lock(&n->lock);
		if (later)
			rc = delete_later(fs, sb, path, &st, false);
		else
			rc = remove_path(fs, sb, path, have_st ? &st : NULL);
		if (n && rc == 0)
			node_unlinked(fs, n);
		if (n)
			pthread_mutex_unlock(&n->lock);
	}
	if (n)
		node_release(fs, n);
	if (rc < 0) {
		cache_invalidate(fs->cache, sb->id, path);
		return rc;
	}
	/* What went (a file): the directory keeps its cached attributes. */
	cache_update(fs->cache, sb->id, path, CACHE_REMOVED, only_local ? &node_st : have_st ? &st : NULL, false);
	link_drop(fs, sb, path, false);
	return 0;
}

static int count_entries(void *ctx, const char *name, const struct stat *st)
{
	(void)name;
	(void)st;
	(*(size_t *)ctx)++;
	return 0;
}

int files_rmdir(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	size_t n = 0;
	int rc;

	files_settle(fs, sb, path);
	/* rmdir never removes content, not even files made in it through this
	 * mount and not uploaded yet (they are uploaded, and then count). */
	rc = flush_under(fs, sb, path);
	if (rc < 0)
		return rc;
	/* rmdir(2) in the sandbox checks emptiness itself, as it runs: not the
	 * cache, which does not know what a command or another client made
	 * there since it listed the directory (those files were deleted by
	 * the recursive delete that followed). Only where no command runs (a
	 * daemon without a shell) the file API's delete, which is recursive,
	 * after a check by the cache or a listing. */
	sandbox_box(sb, &box);
	rc = rfs_rmdir(fs->sp, &box, path, &err);
	if (rc == -ENOSYS && rfs_rmdir_needs_check(fs->sp)) {
		if (!cache_get_dir(fs->cache, sb->id, path, count_entries, &n)) {
			struct find_entry *v = NULL;

			rc = list_dir(fs, sb, path, &v, &n);
			files_find_free(v, n);
			if (rc < 0)
				return rc;
		}
		if (n > 0)
			return -ENOTEMPTY;
		memset(&err, 0, sizeof(err));
		rc = rfs_rmdir_by_delete(fs->sp, &box, path, &err);
	}
	if (rc < 0) {
		cache_invalidate_tree(fs->cache, sb->id, path);
		/* (not an error of the sandbox's: rmdir said what a disk says) */
		return rc == -ENOTEMPTY ? rc : toolbox_failed(fs, sb, rc, &err, "rmdir", path);
	}
	cache_update(fs->cache, sb->id, path, CACHE_REMOVED, NULL, false);
	link_drop(fs, sb, path, true);
	return 0;
}

/* Uploads every dirty node at or below path (before it is renamed). */
/* Takes a reference on a node with staged writes, of sb at or below path
 * (any, when sb is NULL), or returns NULL. The caller uploads it without
 * the table's lock (an upload may run queued changes, and they take it). */
struct open_node *next_dirty(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct open_node *found = NULL;

	pthread_mutex_lock(&fs->files->lock);
	for (struct open_node *o = fs->files->head; o && !found; o = o->next) {
		if (o->dirty && !o->unlinked && (!sb || (o->sb == sb && path_is_within(o->path, path)))) {
			found = o;
			o->refs++;
		}
	}
	pthread_mutex_unlock(&fs->files->lock);
	return found;
}

static int flush_under(struct dfs *fs, struct sandbox *sb, const char *path)
{
	int rc = 0;

	for (;;) {
		struct open_node *found = next_dirty(fs, sb, path);

		if (!found)
			return rc;
		pthread_mutex_lock(&found->lock);
		/* A failure ends the walk and stays dirty: the file's own flush
		 * and close try again, and report it or keep the data. */
		rc = upload_node(fs, found);
		pthread_mutex_unlock(&found->lock);
		node_release(fs, found);
		if (rc < 0)
			return rc;
	}
}

/* Before path is replaced by a rename: descriptors open on the file there
 * keep reading what it held, so its content is fetched now. */
static int keep_replaced_content(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct open_node *n = node_find(fs->files, sb, path);
	int rc = 0;

	if (!n)
		return 0;
	pthread_mutex_lock(&n->lock);
	if (!n->is_new)
		rc = ensure_populated(fs, n);
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
	return rc == -ENOENT ? 0 : rc;
}

/* Takes a reference on o and adds it to *v (best effort: out of memory,
 * the node is left out). Caller holds the table's lock. */
static void node_collect(struct open_node *o, struct open_node ***v, size_t *n)
{
	struct open_node **grown = realloc(*v, (*n + 1) * sizeof(**v));

	if (!grown)
		return;
	*v = grown;
	o->refs++;
	(*v)[(*n)++] = o;
}

/* The journal records of nodes a rename touched follow them: a moved
 * node's record gets its new path, a replaced one's goes. */
static void journal_follow(struct dfs *fs, struct open_node **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct open_node *o = v[i];

		pthread_mutex_lock(&o->lock);
		if (o->unlinked)
			journal_drop(fs, o);
		else if (o->journal_name[0])
			journal_put(fs, o, o->journal_flushed ? JOURNAL_FLUSHED : JOURNAL_OPEN, o->journal_flushed);
		pthread_mutex_unlock(&o->lock);
		node_release(fs, o);
	}
	free(v);
}

/* Open nodes follow their file to its new name. */
static void rekey_nodes(struct dfs *fs, struct sandbox *sb, const char *from, const char *to)
{
	size_t flen = strlen(from), nj = 0;
	struct open_node **journaled = NULL;

	pthread_mutex_lock(&fs->files->lock);
	for (struct open_node *o = fs->files->head; o; o = o->next) {
		struct strbuf np = STRBUF_INIT;

		if (o->sb != sb)
			continue;
		if (!o->unlinked && path_is_within(o->path, to) && !path_is_within(o->path, from)) {
			/* The file that was replaced: its readers keep its old content. */
			if (!o->populated)
				log_warn("%s: %s was replaced before its content was read: its reads fail (ESTALE)",
					 sb->name, o->path);
			o->unlinked = true;
			o->dirty = false;
			node_collect(o, &journaled, &nj);
			continue;
		}
		if (strncmp(o->path, from, flen) || (o->path[flen] && o->path[flen] != '/'))
			continue;
		if (o->unlinked && !o->path[flen])
			continue;   /* hidden files move only with their directory */
		sb_adds(&np, to);
		sb_adds(&np, o->path + flen);
		if (!np.oom) {
			node_set_path(o, sb_detach(&np));
			node_collect(o, &journaled, &nj);
		}
		sb_free(&np);
	}
	hidden_names_rekey_locked(fs->files, sb, from, to);
	pthread_mutex_unlock(&fs->files->lock);
	journal_follow(fs, journaled, nj);
}


/*
 * Whether path's directory, as the cache knows it, may refuse a new name or
 * a removal to the user the sandbox's file API and commands act as. A
 * delete queued there is refused when it runs, after the unlink said 0, and
 * the name comes back (the error only in NAME/error and a later fsync of
 * the directory); a new file's upload is refused at its close, which shells
 * do not check. Such changes go to the sandbox at once, so that the answer
 * is the sandbox's own: nobody but root may write the directory (chmod 555,
 * a tree made read-only), which a toolbox that runs as root (Daytona's)
 * changes all the same; or, where the provider says who that user is
 * (files_owner_known: Vercel's uid 1000), its bits do not let that user
 * write it (root's 755 /etc), as far as they tell (a group bit may be a
 * supplementary group's, which only the sandbox knows). A directory the
 * cache does not hold: no.
 */
bool files_parent_may_refuse(struct dfs *fs, struct sandbox *sb, const char *path)
{
	const struct sandbox_provider *sp = fs->sp;
	char parent[PATH_MAX];
	const char *base;
	struct stat st;
	mode_t bit;

	if (!split_path(path, parent, sizeof(parent), &base) ||
	    cache_get_attr(fs->cache, sb->id, parent, &st) != CACHE_HIT || !S_ISDIR(st.st_mode))
		return false;
	if (!(st.st_mode & 0222))
		return true;
	if (!sp->files_owner_known || sp->files_uid == 0)
		return false;
	bit = st.st_uid == sp->files_uid ? 0200 : st.st_gid == sp->files_gid ? 0020 : 0002;
	return !(st.st_mode & bit);
}

/* Deletes path (not a directory) in the sandbox, later (see WB_DELAY), or
 * at once where commands do not work. */
static int delete_later(struct dfs *fs, struct sandbox *sb, const char *path, const struct stat *st, bool hidden)
{
	struct wb_op *op;

	if (list_mode_get(fs, sb) != LIST_FIND)
		return remove_path(fs, sb, path, st);
	op = wb_op_new(sb, WB_DELETE, path);
	if (!op)
		return remove_path(fs, sb, path, st);
	op->hidden = hidden;
	op->st = *st;
	if (!wb_queue_op(fs, op, hidden ? HIDDEN_DELAY : WB_DELAY))
		return remove_path(fs, sb, path, st);
	return 0;
}

int files_fsyncdir(struct dfs *fs, struct sandbox *sb, const char *path)
{
	int rc;

	files_settle(fs, sb, path);
	pthread_mutex_lock(&fs->files->lock);
	rc = sb->writeback_error;
	sb->writeback_error = 0;
	pthread_mutex_unlock(&fs->files->lock);
	return rc;
}

/* The rename pin's rename whose destination, an open file, this thread hid
 * (hide_for_rename): libfuse hides it and then runs the rename in the same
 * thread, and the rename's outcome decides (files_rename_hide_end). A
 * reference. */
static __thread struct open_node *rename_hidden;
/* The last hide in this thread was the pin's of a file no one had open
 * (hidden_name_note's pinned ring): files_rename_failed's to mark. */
static __thread bool pinned_closed_hide;

static void hide_undo(struct dfs *fs, struct open_node *n);

/* The hide of n is for good: the rename replaced the file. */
static void hide_final(struct dfs *fs, struct open_node *n)
{
	pthread_mutex_lock(&n->lock);
	/* The replaced file held data whose upload failed (a close said EIO,
	 * and its release, which would have uploaded or kept it, has not come
	 * yet, or another descriptor keeps the file open): kept in unsaved/,
	 * as that release would have, whichever came first. Its descriptors
	 * go on with the same file (the stage's descriptor), now there. When
	 * unsaved/ cannot take it (full, unwritable), the stage stays in
	 * staging/ with its record, which names the replaced path, as a last
	 * close's does (journal_keep_for_recovery). The record is rewritten
	 * first with the sandbox's file unknown: whatever is at that path by
	 * the next mount (the new file, or nothing once that is deleted too)
	 * replaced this data, which its recovery keeps in unsaved/ and never
	 * uploads. */
	if (n->hide_dirty && n->upload_error && n->stage && n->hide_from) {
		if (node_keep_unsaved(n, n->hide_from, ", and a rename replaced it") == 0) {
			n->upload_error = 0;
			journal_drop(fs, n);
		} else {
			/* (Should the rewrite fail, the record stays as it was:
			 * the data is kept all the same.) */
			n->base.kind = JOURNAL_BASE_UNKNOWN;
			if (n->journal_name[0])
				journal_put(fs, n, JOURNAL_FLUSHED, true);
			if (journal_keep_for_recovery(n, n->hide_from))
				sandbox_set_error(n->sb, "%s could not be uploaded, and a rename replaced it; its "
						  "content stays staged for the next mount", n->hide_from);
		}
	} else {
		journal_drop(fs, n);
	}
	free(n->hide_from);
	n->hide_from = NULL;
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
}

/*
 * The rename pin's rename onto from follows this hide of the open file n
 * (rename_pin.h), in this thread. Nothing changes in the sandbox or in the
 * cache yet: if the rename succeeds, it replaces the file (mv -T) and the
 * hide is for good; if it fails, the file gets its name back
 * (files_rename_hide_end). Meanwhile n is hidden as an unlinked file is: its
 * descriptors read what it held and write into its stage, which no close
 * uploads. Its journal record stays until the rename's end: a crash
 * meanwhile leaves what was written to the next mount's recovery, which
 * checks the file it would replace first. Caller holds n->lock; np, the
 * hidden name, is taken.
 */
static int hide_for_rename(struct dfs *fs, struct open_node *n, const char *from, char *np)
{
	int rc = n->is_new ? 0 : ensure_populated(fs, n);
	char *back = rc == 0 ? strdup(from) : NULL;

	if (rc == 0 && !back)
		rc = -ENOMEM;
	if (rc < 0) {
		free(np);
		return rc;
	}
	free(n->hide_from);
	n->hide_from = back;
	n->hide_dirty = n->dirty;
	n->unlinked = true;
	n->dirty = false;
	pthread_mutex_lock(&fs->files->lock);
	node_set_path(n, np);
	pthread_mutex_unlock(&fs->files->lock);
	return 0;
}

/* libfuse hides an open file that is unlinked or replaced: the rename to
 * its hidden name is the unlink, in the sandbox (after PENDING_DELAY, unless
 * a rename replaces it first), and local otherwise. */
static int hide_open_file(struct dfs *fs, struct sandbox *sb, const char *from, const char *to)
{
	struct open_node *n = node_find(fs->files, sb, from);
	struct stat st, node_st;
	bool local, have_st = false;
	char *np;
	int rc = 0;

	if (n && rename_pin_hiding()) {
		/* A closed file whose upload waits (-o writeback) is not open
		 * either: unlinking it here would lose it if the rename then
		 * fails. The rename replaces it as any closed file. */
		bool closed;

		pthread_mutex_lock(&n->lock);
		closed = n->handles == 0;
		pthread_mutex_unlock(&n->lock);
		if (closed) {
			node_release(fs, n);
			n = NULL;
		}
	}
	if (!n && rename_pin_hiding()) {
		/* Not open: pinned by the rename that follows (rename_pin.h).
		 * Nothing changes here or in the sandbox: if the rename fails,
		 * the file is there as it was; if it succeeds, it replaces the
		 * file. An open of its inode opens the name it was hidden from. */
		hidden_name_note(fs->files, sb, to, from, true);
		pinned_closed_hide = true;
		hide_window_open(fs->files, sb, from, caller_tid());
		return 1;   /* the inode keeps its name's number (dfs_rename) */
	}
	if (!n)
		return -ENOENT;
	np = strdup(to);
	if (!np) {
		node_release(fs, n);
		return -ENOMEM;
	}
	if (rename_pin_hiding()) {
		/* One left by a rename that never came: that rename failed. */
		if (rename_hidden) {
			struct open_node *stale = rename_hidden;

			rename_hidden = NULL;
			hide_undo(fs, stale);
		}
		pinned_closed_hide = false;
		pthread_mutex_lock(&n->lock);
		rc = hide_for_rename(fs, n, from, np);
		pthread_mutex_unlock(&n->lock);
		if (rc < 0) {
			node_release(fs, n);
			return rc;
		}
		rename_hidden = n;   /* with this reference */
		hidden_name_note(fs->files, sb, to, from, false);
		hide_window_open(fs->files, sb, from, caller_tid());
		return 0;
	}
	node_stat(n, &node_st);   /* (takes n->lock) */
	pthread_mutex_lock(&n->lock);
	local = n->is_new;
	/* Descriptors open on it keep reading what it held (a new file's
	 * stage holds it all). One whose failed upload may have landed is
	 * removed there now (remove_maybe_landed). */
	if (!local)
		rc = ensure_populated(fs, n);
	else if (n->maybe_remote)
		rc = remove_maybe_landed(fs, n, from);
	if (rc == 0 && !local) {
		rc = lookup_attr(fs, sb, from, &st);
		have_st = rc == 0;
		if (rc == 0)
			rc = delete_later(fs, sb, from, &st, true);
	}
	if (rc == 0 || (rc == -ENOENT && local)) {
		rc = 0;
		n->unlinked = true;
		n->dirty = false;
		journal_drop(fs, n);
		pthread_mutex_lock(&fs->files->lock);
		node_set_path(n, np);
		np = NULL;
		pthread_mutex_unlock(&fs->files->lock);
	}
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
	free(np);
	if (rc < 0) {
		cache_invalidate(fs->cache, sb->id, from);
		return rc;
	}
	/* What went, as files_unlink says it: a file (the node's attributes,
	 * or those its delete was queued with), so that the directory keeps
	 * its cached attributes. Without it, vim's probe file (.swx, made and
	 * deleted before the kernel's release of it came) dropped them, and
	 * the next save's walk down the path cost a command. */
	cache_update(fs->cache, sb->id, from, CACHE_REMOVED, local ? &node_st : have_st ? &st : NULL, false);
	link_drop(fs, sb, from, false);
	hidden_name_note(fs->files, sb, to, from, false);
	hide_window_open(fs->files, sb, from, caller_tid());
	return 0;
}

/* Adds hidden (taken on success) to n's aliases. Caller holds the table's lock. */
static bool alias_add(struct open_node *n, char *hidden)
{
	char **v = realloc(n->hidden_aliases, (n->n_hidden_aliases + 1) * sizeof(*v));

	if (!v)
		return false;
	n->hidden_aliases = v;
	v[n->n_hidden_aliases++] = hidden;
	return true;
}

/*
 * Gives n, hidden for a rename that failed (or never came: libfuse failed
 * between its hide and the rename), its name back, with what its
 * descriptors wrote before the rename and since, uploaded at its last close
 * as ever (now, if that came meanwhile: the hide made it upload nothing),
 * with its journal record as the writes left it, and its inode number. The
 * hidden name stays an alias of it (node_find_hidden): libfuse keeps naming
 * the descriptors' inode so. Unless another open file took the name
 * meanwhile: then it stays hidden. Takes the reference.
 */
static void hide_undo(struct dfs *fs, struct open_node *n)
{
	struct sandbox *sb = n->sb;
	bool back = false;
	char *hidden;

	pthread_mutex_lock(&n->lock);
	hidden = strdup(n->path);
	pthread_mutex_lock(&fs->files->lock);
	if (hidden && !node_lookup_locked(fs->files, sb, n->hide_from) && alias_add(n, hidden)) {
		node_set_path(n, n->hide_from);
		n->hide_from = NULL;
		n->unlinked = false;
		back = true;
	}
	pthread_mutex_unlock(&fs->files->lock);
	if (back) {
		hidden_name_kept(fs->files, sb, hidden, n->path);
		ino_rename(fs->inos, sb->id, hidden, n->path);
		n->dirty = n->dirty || n->hide_dirty;
		if (n->handles == 0)
			node_last_close(fs, n);
		else if (n->dirty && !n->journal_name[0])
			journal_put(fs, n, JOURNAL_OPEN, false);
	} else {
		log_warn("%s: %s stays hidden after a failed rename onto it: another file was opened at its name",
			 sb->name, n->hide_from);
		free(hidden);
		free(n->hide_from);
		n->hide_from = NULL;
		journal_drop(fs, n);
	}
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
}

/* The rename onto to ended with rc: the hide this thread left for it
 * (hide_for_rename) is for good when it succeeded, else undone. */
void files_rename_hide_end(struct dfs *fs, struct sandbox *sb, const char *to, int rc)
{
	struct open_node *n = rename_hidden;

	if (!n || is_hidden_name(to))
		return;   /* (libfuse's hide itself) */
	rename_hidden = NULL;
	if (rc == 0 && sb && n->sb == sb && !strcmp(n->hide_from, to))
		hide_final(fs, n);
	else
		hide_undo(fs, n);   /* failed, or not its rename: that one never came */
}

bool files_rename_hide_pending(void)
{
	return rename_hidden != NULL;
}

void files_rename_script(struct strbuf *cmd, const char *from, const char *to)
{
	sb_adds(cmd, "o=$(mv -f -T -- ");
	sh_word(cmd, from);
	sb_addc(cmd, ' ');
	sh_word(cmd, to);
	/* mv refuses a link onto the file it points to ("are the same
	 * file"), which rename(2) does: perl's rename is rename(2). */
	sb_adds(cmd, " 2>&1) || case $o in *'are the same file'*) perl -e "
		"'rename($ARGV[0], $ARGV[1]) or die \"$!\\n\"' -- ");
	sh_word(cmd, from);
	sb_addc(cmd, ' ');
	sh_word(cmd, to);
	sb_adds(cmd, ";; *) printf '%s\\n' \"$o\"; exit 1;; esac");
}

/* Whether either path is on a volume of the sandbox: there the toolbox's
 * move copies and deletes when rename(2) fails (EXDEV between the volume
 * and the rest), so a real rename by command is used (mv does the copy
 * itself for EXDEV, as rename(2) users expect of mv, and is atomic
 * otherwise). */
static bool on_volume(struct dfs *fs, struct sandbox *sb, const char *from, const char *to)
{
	char paths[sizeof(sb->volume_paths)];
	bool known;

	pthread_mutex_lock(&fs->lock);
	known = sb->volumes_known;
	pthread_mutex_unlock(&fs->lock);
	if (!known) {
		/* Known only from the list, which does not give volumes: asked
		 * once. An API whose sandbox has no "volumes" either has none. */
		struct sp_error ignored = { 0 };
		bool asked = sandbox_refresh(fs, sb, &ignored) == 0;

		pthread_mutex_lock(&fs->lock);
		if (asked)
			sb->volumes_known = true;
		pthread_mutex_unlock(&fs->lock);
	}
	pthread_mutex_lock(&fs->lock);
	str_copy(paths, sizeof(paths), sb->volume_paths);
	pthread_mutex_unlock(&fs->lock);
	return sp_path_on_volume(paths, from) || sp_path_on_volume(paths, to);
}

/*
 * After a move answered 404: whether it was done all the same. The proxy
 * and the runner re-send a request once after a stale connection
 * (FIDELITY D7), and the second move finds no source. The destination was
 * absent before the move (the API's move is used only then), so a
 * destination that exists now, with the source gone, is the move's work.
 */
static bool move_was_done(struct dfs *fs, const struct sp_box *box, const char *from, const char *to)
{
	struct sp_error err = { 0 };
	struct sp_fileinfo fi;
	bool done;

	memset(&fi, 0, sizeof(fi));
	if (sp_fs_info(fs->sp, box, to, &fi, &err) < 0)
		return false;
	free(fi.name);
	memset(&fi, 0, sizeof(fi));
	done = sp_fs_info(fs->sp, box, from, &fi, &err) == -ENOENT;
	free(fi.name);
	if (done)
		log_info("move %s to %s: 404, but the move is done (a re-sent request)", from, to);
	return done;
}

static int rename_path(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags);

/*
 * After a rename that failed: whether it was done all the same (its
 * answer lost in transit, or a command that renamed and then failed). The
 * kernel keeps the old name's inode, with its size, when a rename fails: a
 * read of the new file through it would be cut to the old size. So the
 * sandbox is asked: the source gone and the destination with the source's
 * type, size and mtime (a rename keeps them) mean success.
 */
static bool renamed_all_the_same(struct dfs *fs, struct sandbox *sb, const char *from, const char *to,
				 const struct stat *sf)
{
	struct stat st;

	if (lookup_attr(fs, sb, from, &st) != -ENOENT)
		return false;
	if (lookup_attr(fs, sb, to, &st) != 0)
		return false;
	return (st.st_mode & S_IFMT) == (sf->st_mode & S_IFMT) && st.st_mtim.tv_sec == sf->st_mtim.tv_sec &&
	       (S_ISDIR(st.st_mode) || st.st_size == sf->st_size);
}

int files_rename(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags)
{
	bool held;
	int rc;

	/* Kept uploads (keep_uploaded) of either name, and below them. */
	prefetch_drop_path(fs->files->prefetch, sb->id, from);
	prefetch_drop_path(fs->files->prefetch, sb->id, to);
	if (is_hidden_name(to))
		return hide_open_file(fs, sb, from, to);
	/* Lookups of a destination just hidden wait until it is there again. */
	held = hide_window_renaming(fs->files, sb, to, true);
	rc = rename_path(fs, sb, from, to, flags);
	/* Before lookups of to go on: no open makes a new node there first. */
	files_rename_hide_end(fs, sb, to, rc);
	if (held)
		hide_window_renaming(fs->files, sb, to, false);
	return rc;
}

void files_rename_failed(struct dfs *fs, struct sandbox *sb, const char *to)
{
	/* What is in the sandbox stays (the pin's hides queue no delete:
	 * hide_open_file); the mount asks for it again. An open file libfuse
	 * hid for this rename has its name back already (files_rename_hide_end).
	 * libfuse keeps the file's inode under the hidden name, which now
	 * follows the file's renames (hidden_name_kept). */
	if (pinned_closed_hide)
		hidden_name_kept(fs->files, sb, NULL, to);
	pinned_closed_hide = false;
	cache_invalidate(fs->cache, sb->id, to);
	/* No rename onto it follows: lookups of it need not wait. */
	hide_window_renaming(fs->files, sb, to, false);
}

static int rename_path(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags)
{
	struct sp_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct stat sf, st, hidden_st;
	struct sp_box box;
	bool to_exists, from_exact, replaced_hidden, api_move, ask_mv = false;
	int rc;

	if (flags & RENAME_EXCHANGE)
		return -EINVAL;   /* SEMANTICS.md: not supported */
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	if (!strcmp(from, to))
		return 0;
	if (is_hidden_name(from))
		return -ENOENT;
	/* Over an open file libfuse just hid: its delete is not needed, mv -T
	 * replaces it in one step (it still exists in the sandbox). */
	{
		struct wb_op *hidden = wb_cancel_hidden(fs->files->deferred.wb, sb, to);

		replaced_hidden = hidden != NULL;
		if (hidden)
			hidden_st = hidden->st;
		wb_op_free(hidden);
	}
	files_settle(fs, sb, from);
	files_settle(fs, sb, to);
	rc = flush_under(fs, sb, from);
	if (rc < 0)
		return rc;
	/* Those uploads queued what their files were given while being
	 * written (a new file's mode: apply_after_upload) at their paths
	 * under from: sent before the move, which would leave them nothing
	 * at those paths (a new file open while its directory was renamed
	 * lost its mode). */
	files_settle(fs, sb, from);
	/* Both were looked up by the kernel just before: no request. */
	rc = lookup_attr(fs, sb, from, &sf);
	if (rc < 0)
		return rc;
	from_exact = cache_lookup(fs->cache, sb->id, from, &st, NULL) == CACHE_HIT;
	rc = lookup_attr(fs, sb, to, &st);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	to_exists = rc == 0 || replaced_hidden;
	if (replaced_hidden && rc != 0)
		st = hidden_st;
	if (to_exists && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (to_exists && S_ISDIR(st.st_mode)) {
		/* Files made in it and not uploaded yet must be there for the
		 * sandbox's rename to see that it is not empty. */
		rc = flush_under(fs, sb, to);
		if (rc < 0)
			return rc;
	} else if (to_exists) {
		rc = keep_replaced_content(fs, sb, to);
		if (rc < 0)
			return rc;
	}
	sandbox_box(sb, &box);
	rc = -EEXIST;
	api_move = sp_has(fs->sp, SP_CAP_FS_MOVE) && !to_exists && !S_ISLNK(sf.st_mode) && !on_volume(fs, sb, from, to);
	if (api_move) {
		rc = sp_fs_move(fs->sp, &box, from, to, &err);
		if (rc == -ENOENT && move_was_done(fs, &box, from, to))
			rc = 0;
		/* The API's move refuses with a bare 400 (EINVAL) whatever the
		 * reason: a read-only or unwritable directory, which mv(1) then
		 * reported as "cannot move to a subdirectory of itself". mv -T
		 * in the sandbox tells which (not for RENAME_NOREPLACE, which
		 * mv -T would not keep). */
		ask_mv = rc == -EINVAL && !(flags & RENAME_NOREPLACE);
		if (rc < 0 && rc != -EEXIST && !ask_mv)
			toolbox_failed(fs, sb, rc, &err, "rename", from);
	}
	/* (With RENAME_NOREPLACE the destination was absent: a 409 of the
	 * API's move means it came since, and is EEXIST.) */
	if ((rc == -EEXIST && (!api_move || !(flags & RENAME_NOREPLACE))) || ask_mv) {
		/* The toolbox's move never replaces, follows a link at the
		 * source, and copies where rename fails (a volume); rename(2)
		 * must replace, atomically: mv -T is rename(2) in the sandbox. */
		files_rename_script(&cmd, from, to);
		rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
		sb_free(&cmd);
	}
	if (rc < 0) {
		cache_invalidate_tree(fs->cache, sb->id, from);
		cache_invalidate_tree(fs->cache, sb->id, to);
		if (rc != -ENOMEM && renamed_all_the_same(fs, sb, from, to, &sf)) {
			log_info("%s: rename %s to %s: %s, but the rename is done", sb->name, from, to,
				 strerror(-rc));
			rc = 0;
		}
	}
	if (rc < 0) {
		/* The queued delete this rename took was an unlink's (or,
		 * without the pin, libfuse's hide for this rename, for good):
		 * it goes now. (The pin's hides queue none: hide_open_file.) */
		if (replaced_hidden)
			remove_path(fs, sb, to, &hidden_st);
		return rc;
	}
	/* The object keeps its attributes (ctime is shown as mtime). */
	cache_update(fs->cache, sb->id, from, CACHE_REMOVED, NULL, false);
	cache_update(fs->cache, sb->id, to, CACHE_REPLACED, &sf, from_exact);
	link_drop(fs, sb, to, true);
	if (S_ISDIR(sf.st_mode)) {
		link_drop(fs, sb, from, true);
	} else if (S_ISLNK(sf.st_mode)) {
		char target[4096];

		if (link_get(fs, sb, from, target, sizeof(target)))
			link_put(fs, sb, to, target);
		link_drop(fs, sb, from, false);
	}
	rekey_nodes(fs, sb, from, to);
	return 0;
}

/* The cached attributes of path after a change fn made to them, kept
 * exact when they were; dropped when nothing was known. */
static void note_attr_change(struct dfs *fs, struct sandbox *sb, const char *path,
			     void (*fn)(struct stat *st, const void *arg), const void *arg,
			     struct timespec *shown)
{
	struct stat st;
	bool listed = false;
	enum cache_result r = cache_lookup(fs->cache, sb->id, path, &st, &listed);

	if (r == CACHE_HIT || listed) {
		fn(&st, arg);
		/* The sandbox sets ctime to its now; until its value is read
		 * back, ours shows that it moved. */
		clock_gettime(CLOCK_REALTIME, &st.st_ctim);
		cache_update(fs->cache, sb->id, path, CACHE_CHANGED, &st, r == CACHE_HIT);
		if (shown && r == CACHE_HIT)
			*shown = st.st_ctim;
	} else {
		cache_invalidate(fs->cache, sb->id, path);
	}
}

static void set_mode(struct stat *st, const void *arg)
{
	st->st_mode = (st->st_mode & S_IFMT) | (*(const mode_t *)arg & 07777);
}

/* fchmod, fchown, futimens of an unlinked open file: libfuse names it by
 * its hidden name, which is only here. */
static int hidden_set(struct dfs *fs, struct sandbox *sb, const char *path, const mode_t *mode, uid_t uid,
		      gid_t gid, const struct timespec *tv)
{
	struct open_node *n = node_find_hidden(fs->files, sb, path);
	const struct timespec *mt = tv ? &tv[1] : NULL;
	char from[sizeof(((struct node *)0)->path)];
	int given_back = n ? node_given_back_name(fs->files, n, from, sizeof(from)) : 0;

	if (given_back != 0) {
		/* A failed rename gave the file its name back: that file. */
		node_release(fs, n);
		if (given_back < 0)
			return given_back;
		n = NULL;
	} else if (!n && (!hidden_name_origin(fs->files, sb, path, from, sizeof(from)) || is_hidden_name(from))) {
		/* Hidden with no descriptor open on it (a rename's pin,
		 * rename_pin.h, or the last close after the unlink): the file
		 * now at the name it was hidden from, as getattr and open. */
		return -ENOENT;
	}
	if (!n) {
		if (mode)
			return files_chmod(fs, sb, from, *mode);
		if (uid != (uid_t)-1 || gid != (gid_t)-1)
			return files_chown(fs, sb, from, uid, gid);
		return tv ? files_utimens(fs, sb, from, tv) : 0;
	}
	pthread_mutex_lock(&n->lock);
	if (mode)
		n->st.st_mode = (n->st.st_mode & S_IFMT) | (*mode & 07777);
	if (uid != (uid_t)-1)
		n->st.st_uid = uid;
	if (gid != (gid_t)-1)
		n->st.st_gid = gid;
	if (mt && mt->tv_nsec != UTIME_OMIT) {
		if (mt->tv_nsec == UTIME_NOW) {
			touch_now(n);
		} else {
			n->mtime = *mt;
			n->mtime_set = true;
		}
		n->st.st_mtim = n->mtime;
		n->mtime_pending = true;   /* shown by node_stat; never uploaded */
	}
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
	return 0;
}

/* Without -o writeback the only closed files whose upload waits are empty
 * new ones (upload_later): an attribute set on one is sent after its upload,
 * as it was when it went at close, so that nothing the upload stats back
 * (Daytona's /files/info has no atime) replaces what was set. With -o
 * writeback a file's attributes wait with it (tar sets every file's time). */
static int upload_waiting_first(struct dfs *fs, struct sandbox *sb, const char *path)
{
	if (fs->opt.writeback > 0)
		return 0;
	return files_writeback_flush(fs, sb, path);
}

int files_chmod(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct sp_error err = { 0 };
	struct open_node *n = node_find(fs->files, sb, path);
	struct sp_box box;
	int rc;

	mode &= 07777;
	if (is_hidden_name(path)) {
		if (n)
			node_release(fs, n);
		return hidden_set(fs, sb, path, &mode, (uid_t)-1, (gid_t)-1, NULL);
	}
	rc = upload_waiting_first(fs, sb, path);
	if (rc < 0) {
		if (n)
			node_release(fs, n);
		return rc;
	}
	if (n) {
		bool pending = false;

		pthread_mutex_lock(&n->lock);
		/* The mode it was opened with (and has kept): nothing to do. */
		if (!n->is_new && (n->st.st_mode & 07777) == mode)
			pending = true;
		n->st.st_mode = (n->st.st_mode & S_IFMT) | mode;
		if (n->is_new) {
			/* Applied after the first upload, which creates the file. */
			n->chmod_pending = true;
			pending = true;
		}
		pthread_mutex_unlock(&n->lock);
		node_release(fs, n);
		if (pending)
			return 0;
	}
	{
		struct stat st;

		/* Editors chmod what they wrote to the mode it has: nothing to do. */
		if (cache_lookup(fs->cache, sb->id, path, &st, NULL) == CACHE_HIT && (st.st_mode & 07777) == mode)
			return 0;
	}
	files_settle(fs, sb, path);
	sandbox_box(sb, &box);
	if (mode & 07000) {
		/* The file API applies only the 0777 bits. */
		struct strbuf cmd = STRBUF_INIT;

		/* Five digits: GNU chmod keeps a directory's setuid and setgid
		 * bits for a shorter numeric mode, which chmod(2) does not. */
		sb_addf(&cmd, "chmod %05o -- ", (unsigned)mode);
		sh_word(&cmd, path);
		return change_by_command(fs, sb, &cmd, path, CACHE_CHANGED);
	}
	rc = rfs_chmod(fs->sp, &box, path, mode, &err);
	if (rc == -EINVAL)
		rc = -EPERM;   /* a chmod failure is a bare 400 */
	if (rc < 0) {
		cache_invalidate(fs->cache, sb->id, path);
		return toolbox_failed(fs, sb, rc, &err, "chmod", path);
	}
	note_attr_change(fs, sb, path, set_mode, &mode, NULL);
	return 0;
}

int files_chown(struct dfs *fs, struct sandbox *sb, const char *path, uid_t uid, gid_t gid)
{
	struct open_node *n = node_find(fs->files, sb, path);
	struct strbuf cmd = STRBUF_INIT;
	struct stat st;
	int rc;

	if (uid == (uid_t)-1 && gid == (gid_t)-1)
		return 0;
	if (is_hidden_name(path)) {
		if (n)
			node_release(fs, n);
		return hidden_set(fs, sb, path, NULL, uid, gid, NULL);
	}
	rc = upload_waiting_first(fs, sb, path);
	if (rc < 0) {
		if (n)
			node_release(fs, n);
		return rc;
	}
	if (n) {
		bool pending = false;

		pthread_mutex_lock(&n->lock);
		if (n->is_new && fs->sp->files_owner_known &&
		    ((uid != (uid_t)-1 && uid != fs->sp->files_uid) || (gid != (gid_t)-1 && gid != fs->sp->files_gid))) {
			/* The sandbox's files are changed as one user who is not
			 * root (Vercel): another owner is refused, now, as a chown
			 * of a file already there is. Taken, it was refused after
			 * the upload, and the mode and times queued with it went. */
			pthread_mutex_unlock(&n->lock);
			node_release(fs, n);
			return -EPERM;
		}
		if (n->is_new) {
			/* Applied after the first upload, with the mode and times. */
			if (uid != (uid_t)-1)
				n->uid = n->st.st_uid = uid;
			else if (!n->chown_pending)
				n->uid = (uid_t)-1;
			if (gid != (gid_t)-1)
				n->gid = n->st.st_gid = gid;
			else if (!n->chown_pending)
				n->gid = (gid_t)-1;
			n->chown_pending = true;
			pending = true;
		}
		pthread_mutex_unlock(&n->lock);
		node_release(fs, n);
		if (pending)
			return 0;
	}
	/* cp -a, tar and rsync chown what they make to what it already is:
	 * nothing to do, unless the call must clear setuid bits. */
	if (cache_lookup(fs->cache, sb->id, path, &st, NULL) == CACHE_HIT &&
	    (uid == (uid_t)-1 || st.st_uid == uid) && (gid == (gid_t)-1 || st.st_gid == gid) &&
	    !(S_ISREG(st.st_mode) && (st.st_mode & 06000)))
		return 0;
	files_settle(fs, sb, path);
	sb_adds(&cmd, "chown -h ");
	if (uid != (uid_t)-1)
		sb_addf(&cmd, "%u", (unsigned)uid);
	if (gid != (gid_t)-1)
		sb_addf(&cmd, ":%u", (unsigned)gid);
	sb_adds(&cmd, " -- ");
	sh_word(&cmd, path);
	rc = change_by_command(fs, sb, &cmd, path, CACHE_CHANGED);
	if (rc < 0)
		cache_invalidate(fs->cache, sb->id, path);
	return rc;
}

static void set_times(struct stat *st, const void *arg)
{
	const struct timespec *tv = arg;

	if (tv[0].tv_nsec != UTIME_OMIT)
		st->st_atim = tv[0];
	if (tv[1].tv_nsec != UTIME_OMIT)
		st->st_mtim = tv[1];
}

/* Queues utimens of path with explicit times (tar sets every file's and
 * directory's): false when it cannot be, or must not (UTIME_NOW is the
 * sandbox's clock at the time of the call). */
static bool times_later(struct dfs *fs, struct sandbox *sb, const char *path, const struct timespec tv[2])
{
	struct wb_op *op;

	if (tv[0].tv_nsec == UTIME_NOW || tv[1].tv_nsec == UTIME_NOW || list_mode_get(fs, sb) != LIST_FIND)
		return false;
	op = wb_op_new(sb, WB_ATTRS, path);
	if (!op)
		return false;
	op->stat_after = true;
	op->set_atime = tv[0].tv_nsec != UTIME_OMIT;
	op->atime = tv[0];
	op->set_mtime = tv[1].tv_nsec != UTIME_OMIT;
	op->mtime = tv[1];
	/* The ctime shown from now on is this call's (the batch runs later). */
	note_attr_change(fs, sb, path, set_times, tv, &op->ctime_shown);
	if (wb_queue_op(fs, op, WB_DELAY))
		return true;
	cache_invalidate(fs->cache, sb->id, path);
	return false;
}

int files_utimens(struct dfs *fs, struct sandbox *sb, const char *path, const struct timespec tv[2])
{
	struct open_node *n = node_find(fs->files, sb, path);
	const struct timespec *at = &tv[0], *mt = &tv[1];
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	if (is_hidden_name(path)) {
		if (n)
			node_release(fs, n);
		return hidden_set(fs, sb, path, NULL, (uid_t)-1, (gid_t)-1, tv);
	}
	rc = upload_waiting_first(fs, sb, path);
	if (rc < 0) {
		if (n)
			node_release(fs, n);
		return rc;
	}
	if (n) {
		bool pending = false;

		pthread_mutex_lock(&n->lock);
		if (n->dirty) {
			/* The upload would reset the time: it is applied after it.
			 * "Now" needs nothing, the upload is later still. */
			if (mt->tv_nsec == UTIME_NOW) {
				n->mtime_pending = false;
				touch_now(n);
			} else if (mt->tv_nsec != UTIME_OMIT) {
				n->mtime = *mt;
				n->mtime_set = true;
				n->mtime_pending = true;
			}
			if (at->tv_nsec != UTIME_OMIT && at->tv_nsec != UTIME_NOW) {
				n->atime = *at;
				n->atime_pending = true;
			}
			pending = true;
		}
		pthread_mutex_unlock(&n->lock);
		node_release(fs, n);
		if (pending)
			return 0;
	}
	if (at->tv_nsec == UTIME_OMIT && mt->tv_nsec == UTIME_OMIT)
		return 0;
	{
		/* A directory's time (tar sets them last): the files made in it
		 * whose upload waits (empty ones, -o writeback) land first, or
		 * their arrival would move the time set (the kernel looked the
		 * path up just before: no request). */
		struct stat st;

		if (lookup_attr(fs, sb, path, &st) == 0 && S_ISDIR(st.st_mode))
			files_writeback_flush(fs, sb, path);
	}
	if (times_later(fs, sb, path, tv))
		return 0;
	files_settle(fs, sb, path);
	sb_adds(&cmd, "true");
	if (at->tv_nsec == UTIME_NOW && mt->tv_nsec == UTIME_NOW) {
		sb_adds(&cmd, " && touch -h -c -- ");
		sh_word(&cmd, path);
	} else if (at->tv_nsec != UTIME_OMIT && at->tv_nsec != UTIME_NOW && at->tv_sec == mt->tv_sec &&
		   at->tv_nsec == mt->tv_nsec) {
		add_touch(&cmd, "", mt, path);
	} else {
		if (mt->tv_nsec == UTIME_NOW) {
			sb_adds(&cmd, " && touch -h -c -m -- ");
			sh_word(&cmd, path);
		} else if (mt->tv_nsec != UTIME_OMIT) {
			add_touch(&cmd, "-m ", mt, path);
		}
		if (at->tv_nsec == UTIME_NOW) {
			sb_adds(&cmd, " && touch -h -c -a -- ");
			sh_word(&cmd, path);
		} else if (at->tv_nsec != UTIME_OMIT) {
			add_touch(&cmd, "-a ", at, path);
		}
	}
	if (!strcmp(sb_str(&cmd), "true")) {
		sb_free(&cmd);
		return 0;
	}
	rc = change_by_command(fs, sb, &cmd, path, CACHE_CHANGED);
	if (rc < 0)
		cache_invalidate(fs->cache, sb->id, path);
	return rc;
}

int files_symlink(struct dfs *fs, struct sandbox *sb, const char *target, const char *path)
{
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	files_settle(fs, sb, path);
	sb_adds(&cmd, "ln -s -- ");
	sh_word(&cmd, target);
	sb_addc(&cmd, ' ');
	sh_word(&cmd, path);
	rc = change_by_command(fs, sb, &cmd, path, CACHE_REPLACED);
	if (rc < 0) {
		cache_invalidate(fs->cache, sb->id, path);
		return rc;
	}
	/* The target as given, byte for byte. */
	link_put(fs, sb, path, target);
	return 0;
}

int files_readlink(struct dfs *fs, struct sandbox *sb, const char *path, char *buf, size_t size)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL, *raw = NULL;
	size_t len;
	int rc;

	if (size == 0)
		return -EINVAL;
	if (link_get(fs, sb, path, buf, size))
		return 0;
	/* Hex, so that any byte of the target survives the JSON transport. */
	sb_adds(&cmd, "readlink -n -- ");
	sh_word(&cmd, path);
	sb_adds(&cmd, " >/dev/null && readlink -n -- ");
	sh_word(&cmd, path);
	sb_adds(&cmd, " | od -An -v -tx1");
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), &out);
	sb_free(&cmd);
	if (rc < 0)
		return rc == -EIO ? -EINVAL : rc;   /* readlink of a non-link fails without a message */
	rc = files_unhex(out ? out : "", &raw, &len);
	free(out);
	if (rc < 0)
		return -EIO;
	if (memchr(raw, '\0', len)) {
		free(raw);
		return -EIO;
	}
	str_copy(buf, size, raw);   /* readlink truncates silently */
	link_put(fs, sb, path, raw);
	free(raw);
	return 0;
}

int files_mknod(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode, dev_t rdev)
{
	struct strbuf cmd = STRBUF_INIT;

	files_settle(fs, sb, path);
	(void)rdev;
	/* Regular files come through create. A FIFO can be made in the
	 * sandbox (and opening it through the mount is the local kernel's
	 * business, as for any FIFO); devices and sockets cannot. */
	if (!S_ISFIFO(mode))
		return -EPERM;
	sb_addf(&cmd, "mkfifo -m %04o -- ", (unsigned)(mode & 07777));
	sh_word(&cmd, path);
	return change_by_command(fs, sb, &cmd, path, CACHE_REPLACED);
}
