/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_write.c - opening, writing and uploading the sandbox's files: the stage,
 * the upload and what must follow it, the crash journal, flush, fsync,
 * release and truncate.
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
#include "prefetch.h"
#include "log.h"
#include "strbuf.h"
#include "tmpname.h"
#include "urlenc.h"
#include "writeback.h"
#include "rfs.h"

/* ---- content ------------------------------------------------------------------- */

struct stage_sink {
	struct stage *stage;
};

static int sink_to_stage(void *ctx, const void *data, size_t len)
{
	struct stage_sink *s = ctx;

	return stage_append(s->stage, data, len);
}

/* Makes the stage hold the file's whole current content. Caller holds n->lock. */
int ensure_populated(struct dfs *fs, struct open_node *n)
{
	struct sp_error err = { 0 };
	struct stage_sink sink;
	struct sp_box box;
	int64_t got;
	int rc;

	if (n->populated)
		return 0;
	if (!n->stage) {
		rc = stage_new(fs->stage, &n->stage);
		if (rc < 0)
			return rc;
	} else {
		stage_truncate(n->stage, 0);
	}
	sink.stage = n->stage;
	sandbox_box(n->sb, &box);
	got = sp_fs_download(fs->sp, &box, n->path, 0, 0, sink_to_stage, &sink, &err);
	if (got < 0) {
		stage_truncate(n->stage, 0);
		return toolbox_failed(fs, n->sb, (int)got, &err, "download", n->path);
	}
	n->populated = true;
	return 0;
}

void touch_now(struct open_node *n)
{
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	n->mtime_set = false;
}

/* What the cache may assume of a file just uploaded: its type, mode and
 * size are right, its time is the sandbox's (unknown here). */
static void upload_hint(struct open_node *n, struct stat *st)
{
	*st = n->st;
	st->st_mode = S_IFREG | (n->st.st_mode & 07777);
	st->st_size = (off_t)stage_size(n->stage);
	st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
}

void add_touch(struct strbuf *cmd, const char *flag, const struct timespec *ts, const char *path)
{
	sb_addf(cmd, " && touch -h -c %s-d @%lld.%09ld -- ", flag, (long long)ts->tv_sec, ts->tv_nsec);
	sh_word(cmd, path);
}

/*
 * Queues what apply_after_upload must do (tar, cp -a and rsync set the
 * times, and often the mode, of every file they write: one command each
 * would double their cost). The cache holds the attributes the file will
 * have until the batch prints the real ones. False when it cannot be
 * queued. Caller holds n->lock.
 */
static bool attrs_later(struct dfs *fs, struct open_node *n, const struct stat *hint, bool chmod)
{
	struct wb_op *op = wb_op_new(n->sb, WB_ATTRS, n->path);
	struct stat st = *hint;

	if (!op)
		return false;
	op->stat_after = true;
	if (n->chown_pending) {
		op->chown = true;
		op->uid = n->uid;
		op->gid = n->gid;
		if (n->uid != (uid_t)-1)
			st.st_uid = n->uid;
		if (n->gid != (gid_t)-1)
			st.st_gid = n->gid;
	}
	op->chmod = chmod;
	op->mode = n->st.st_mode & 07777;
	op->set_mtime = n->mtime_pending;
	op->mtime = n->mtime;
	op->set_atime = n->atime_pending;
	op->atime = n->atime;
	if (n->atime_pending)
		st.st_atim = n->atime;
	/* The ctime shown so far (the last write's, node_times) stays: the
	 * sandbox's is the batch's moment, later (ctime_keep). Not a time
	 * utimens set, which no ctime may be. */
	if (!n->mtime_set)
		op->ctime_shown = st.st_ctim;
	/* Before the batch can run and print the real ones. */
	cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &st, true);
	return wb_queue_op(fs, op, WB_DELAY);
}

/*
 * After an upload: what had to wait for it. A new file gets the mode (the
 * toolbox creates 0644) and the owner it was given, and a file whose times
 * were set while it was being written gets them (the upload set the time
 * of the upload). All of it is one command, in the order cp -a uses: owner,
 * then mode (chown clears setuid), then times; a mode alone is one chmod
 * request. Caller holds n->lock.
 */
static void apply_after_upload(struct dfs *fs, struct open_node *n, bool was_new)
{
	struct sp_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct stat hint;
	struct sp_box box;
	mode_t mode = n->st.st_mode & 07777;
	bool chmod = n->chmod_pending && (mode != 0644 || n->chmod_queued);
	bool finds = list_mode_get(fs, n->sb) != LIST_API;
	/* A mode alone could be POST /files/permissions, but a command costs
	 * the same one request and returns the exact attributes, which the
	 * next stat (editors stat what they wrote) would otherwise ask for. */
	bool command = n->chown_pending || n->mtime_pending || n->atime_pending ||
		       (chmod && ((mode & 07000) || finds));
	char *out = NULL;
	int rc;

	/* The upload gave the file the sandbox's time of the upload, which only
	 * a request could tell (editors stat what they saved, and compare the
	 * time later). The mount keeps the time it showed (the last write) and
	 * makes the sandbox agree: a deferred touch, free in a change queued
	 * anyway, one batched command for an existing file rewritten (a save).
	 * A new file without one keeps the unknown time (cp -r, tar of files
	 * without times would pay a command per 128 files). */
	if (finds && !n->mtime_pending && (command || !was_new)) {
		n->mtime_pending = true;
		command = true;
	}
	/* A new file's atime is its creation's too, as node_times showed it;
	 * the upload's moment (seconds later for one whose upload waited)
	 * moved it when read back. Free beside the mtime the mount sets. */
	if (was_new && finds && n->mtime_pending && !n->mtime_set && !n->atime_pending) {
		n->atime = n->mtime;
		n->atime_pending = true;
	}
	upload_hint(n, &hint);
	if (!command && !chmod) {
		n->chmod_pending = n->chmod_queued = false;
		cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
		return;
	}
	if (!command) {
		n->chmod_pending = n->chmod_queued = false;
		sandbox_box(n->sb, &box);
		rc = rfs_chmod(fs->sp, &box, n->path, mode, &err);
		if (rc < 0)
			log_warn("%s: chmod %o %s after upload: %s", n->sb->name, mode, n->path, err.message);
		cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
		return;
	}
	if (finds && attrs_later(fs, n, &hint, chmod)) {
		n->chmod_pending = n->chmod_queued = n->chown_pending = n->mtime_pending = n->atime_pending = false;
		return;
	}
	/* Not queued (no memory): at once, after what is queued of the path
	 * (the move of this very upload into place, upload_replacing). */
	files_settle_changes(fs, n->sb, n->path);
	sb_adds(&cmd, "true");
	if (n->chown_pending) {
		sb_adds(&cmd, " && chown -h ");
		if (n->uid != (uid_t)-1)
			sb_addf(&cmd, "%u", (unsigned)n->uid);
		if (n->gid != (gid_t)-1)
			sb_addf(&cmd, ":%u", (unsigned)n->gid);
		sb_adds(&cmd, " -- ");
		sh_word(&cmd, n->path);
	}
	if (chmod) {
		sb_addf(&cmd, " && chmod %05o -- ", (unsigned)mode);
		sh_word(&cmd, n->path);
	}
	if (n->mtime_pending && n->atime_pending && n->mtime.tv_sec == n->atime.tv_sec &&
	    n->mtime.tv_nsec == n->atime.tv_nsec) {
		add_touch(&cmd, "", &n->mtime, n->path);
	} else {
		if (n->mtime_pending)
			add_touch(&cmd, "-m ", &n->mtime, n->path);
		if (n->atime_pending)
			add_touch(&cmd, "-a ", &n->atime, n->path);
	}
	if (finds)
		files_add_stat_print(&cmd, n->path);
	n->chmod_pending = n->chmod_queued = n->chown_pending = n->mtime_pending = n->atime_pending = false;
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, n->sb, sb_str(&cmd), &out);
	if (rc < 0) {
		log_warn("%s: setting the mode, owner or times of %s after its upload failed: %s", n->sb->name,
			 n->path, strerror(-rc));
		cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
	} else {
		note_command_result(fs, n->sb, n->path, out, CACHE_CHANGED);
	}
	free(out);
	sb_free(&cmd);
}

/* Runs an upload's copy command: through run_fs_command when the mount
 * knows the sandbox, else (crash recovery) straight to the toolbox. */
static int upload_command(struct dfs *fs, struct sandbox *sb, const struct sp_box *box, const char *script)
{
	struct strbuf cmd = STRBUF_INIT;
	struct sp_error err = { 0 };
	char *out = NULL;
	int code = -1, rc;

	if (sb)
		return run_fs_command(fs, sb, script, NULL);
	sb_adds(&cmd, FILES_SH_PREFIX);
	sb_adds(&cmd, script);
	rc = cmd.oom ? -ENOMEM : sp_exec_within(fs->sp, box, sb_str(&cmd), "/", fs->opt.timeout_s, &code, &out, &err);
	if (rc == 0 && code != 0)
		rc = errno_from_message(out);
	else if (rc < 0)
		log_warn("%s: %s", box->id, err.message);
	free(out);
	sb_free(&cmd);
	return rc;
}

/*
 * Sends size bytes of fd to path by way of the temporary file dir/NAME
 * (dir ends in '/'), which one command then copies into the file and
 * removes. The copy (cat, not mv) keeps an existing file's inode, mode,
 * owner and links, as an upload in place does. *dir_refused: the upload of
 * the temporary file failed with EACCES.
 */
static int upload_through(struct dfs *fs, struct sandbox *sb, const struct sp_box *box, const char *dir,
			  size_t dir_len, const char *path, int fd, uint64_t size, bool *dir_refused,
			  struct sp_error *err)
{
	struct strbuf tmp = STRBUF_INIT, cmd = STRBUF_INIT;
	char tname[96];
	int rc;

	sb_add(&tmp, dir, dir_len);
	/* pid and random bits: another mount's daemon may have our pid. */
	if (!tmp_name(tname, sizeof(tname), ".daytonafs-upload"))
		tmp.oom = true;   /* cannot be: 96 bytes hold it */
	sb_adds(&tmp, tname);
	/* t and p name them once. A file its owner made read-only since it
	 * was opened for writing (a descriptor keeps its right to write):
	 * the owner's write bit for the copy, then the mode back. Else the
	 * copy's own message says why it failed. */
	sb_adds(&cmd, "t=");
	sh_word(&cmd, sb_str(&tmp));
	sb_adds(&cmd, "; p=");
	sh_word(&cmd, path);
	sb_adds(&cmd, "; if cat -- \"$t\" > \"$p\"; then rc=0; else rc=1; "
		"if [ -f \"$p\" ] && [ -O \"$p\" ] && [ ! -w \"$p\" ] && m=$(stat -c %a -- \"$p\") && "
		"chmod u+w -- \"$p\"; then cat -- \"$t\" > \"$p\"; rc=$?; chmod \"$m\" -- \"$p\"; fi; fi; "
		"rm -f -- \"$t\"; exit $rc");
	if (tmp.oom || cmd.oom) {
		rc = sp_error_set(err, -ENOMEM, 0, "write %s: out of memory", path);
		goto out;
	}
	rc = sp_fs_upload_fd(fs->sp, box, sb_str(&tmp), fd, size, err);
	*dir_refused = rc == -EACCES;
	if (rc == 0) {
		rc = upload_command(fs, sb, box, sb_str(&cmd));
		if (rc < 0)
			sp_error_set(err, rc, 0, "write %s: copying the upload into place failed: %s", path,
				     strerror(-rc));
	}
	if (rc < 0) {
		struct sp_error ignored = { 0 };

		/* A part of it may have been written, or the copy's request
		 * failed before its rm ran: no copy is left in the user's
		 * directory (the result does not matter). */
		rfs_delete(fs->sp, box, sb_str(&tmp), false, &ignored);
	}
out:
	sb_free(&tmp);
	sb_free(&cmd);
	return rc;
}

/*
 * Sends size bytes of fd to path. The toolbox trims white space from both
 * ends of an upload's path (Go's strings.TrimSpace), so "notes " would be
 * written over "notes": such a path is uploaded under a temporary name
 * (upload_through). Vercel's uploads all go this way (its fs/write replaces
 * the file: sp_upload_path_changed is always true). The temporary file is
 * made in the file's own directory, else, when that directory refuses it
 * (EACCES: a file the user may write in a directory they may not), in
 * STATE_DIR/out. sb is NULL when the mount does not know the sandbox (crash
 * recovery); with sb, a sandbox known to run no commands gets EOPNOTSUPP
 * for such a path rather than an upload to the wrong name.
 */
int files_upload_fd(struct dfs *fs, struct sandbox *sb, const struct sp_box *box, const char *path, int fd,
		    uint64_t size, struct sp_error *err)
{
	const char *slash = strrchr(path, '/');
	bool refused = false;
	size_t dir_len;
	int rc;

	if (!slash || !sp_upload_path_changed(fs->sp, path))
		return sp_fs_upload_fd(fs->sp, box, path, fd, size, err);
	if (sb && list_mode_get(fs, sb) == LIST_API)
		return sp_error_set(err, -EOPNOTSUPP, 0, "write %s: the sandbox runs no commands, and its file "
				    "API would write a name with white space at its ends over the trimmed name", path);
	dir_len = (size_t)(slash - path) + 1;
	rc = upload_through(fs, sb, box, path, dir_len, path, fd, size, &refused, err);
	if (refused) {
		/* The mount's own directory in the sandbox, not /tmp itself:
		 * the file's content is not put where every user looks, and a
		 * crash before the copy leaves it there, not in theirs. */
		const char *state = fs->opt.state_dir && fs->opt.state_dir[0] == '/' ? fs->opt.state_dir
										 : EXEC_STATE_DIR_DEFAULT;
		char dir[4200];

		if (!str_printf(dir, sizeof(dir), "%s/out/", state))
			return rc;
		memset(err, 0, sizeof(*err));
		rc = upload_through(fs, sb, box, dir, strlen(dir), path, fd, size, &refused, err);
	}
	return rc;
}

/* chmod of path by path (crash recovery, a file made at its open): the
 * file API's chmod trims the path as its upload does, so a name with white
 * space at its ends gets a command, and it takes the permission bits only
 * (Daytona's; Vercel's rfs_chmod command too), so setuid, setgid and sticky
 * get one as well. */
int files_chmod_path(struct dfs *fs, const struct sp_box *box, const char *path, mode_t mode, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	if (!sp_upload_path_changed(fs->sp, path) && !(mode & 07000))
		return rfs_chmod(fs->sp, box, path, mode, err);
	sb_addf(&cmd, "chmod %o -- ", (unsigned)(mode & 07777));
	sh_word(&cmd, path);
	rc = cmd.oom ? -ENOMEM : upload_command(fs, NULL, box, sb_str(&cmd));
	if (rc < 0)
		sp_error_set(err, rc, 0, "chmod %s: %s", path, strerror(-rc));
	sb_free(&cmd);
	return rc;
}

/* ---- uploads that share a request ------------------------------------------------ */

/*
 * Closes that happen at the same time (FUSE runs requests on several
 * threads: cp -r with parallel workers, make -j, a build tool) send their
 * small files in one POST /files/bulk-upload. No close waits for company:
 * the first upload of a sandbox goes at once, alone; those that come while
 * it is in flight wait for it, then all go in the next request (a group
 * commit). Each close still returns only once its own file has landed
 * (close-to-open) or with its own error. Files above UP_SHARE_MAX go
 * alone, so that a small file never waits behind a large one.
 */
#define UP_BATCH_FILES 64
#define UP_BATCH_BYTES (8u << 20)

struct up_wait {
	struct up_wait *next;
	const char *sandbox_id;
	struct sp_box box;
	struct sp_upload_item item;
	struct sp_error err;
	int rc;
	bool done;
};

struct up_busy {
	struct up_busy *next;
	const char *sandbox_id;
};

static bool up_is_busy(struct open_table *t, const char *id)
{
	for (struct up_busy *b = t->up_busy; b; b = b->next)
		if (!strcmp(b->sandbox_id, id))
			return true;
	return false;
}

/* Takes w and the waiting uploads of its sandbox that fit in one request
 * (distinct paths). Caller holds up_lock; w is waiting. */
static size_t up_take(struct open_table *t, struct up_wait *w, struct up_wait **batch, size_t cap)
{
	struct up_wait **pp = &t->up_waiting;
	uint64_t bytes = 0;
	size_t n = 0;

	/* w first: it is the one whose thread sends the request */
	for (pp = &t->up_waiting; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	batch[n++] = w;
	bytes = w->item.len;
	/* A path that is not UTF-8 comes back in the reply as another's could
	 * (its bytes as U+FFFD): it goes alone, lest it be told landed when
	 * the other did. */
	if (!str_is_utf8(w->item.path))
		return n;
	for (pp = &t->up_waiting; *pp && n < cap;) {
		struct up_wait *o = *pp;
		bool dup = false;

		for (size_t i = 0; i < n && !dup; i++)
			dup = !strcmp(batch[i]->item.path, o->item.path);
		if (strcmp(o->sandbox_id, w->sandbox_id) || dup || bytes + o->item.len > UP_BATCH_BYTES ||
		    !str_is_utf8(o->item.path)) {
			pp = &o->next;
			continue;
		}
		*pp = o->next;
		batch[n++] = o;
		bytes += o->item.len;
	}
	return n;
}

/* Sends one request for the batch and records each file's fate. */
static void up_send(struct dfs *fs, struct up_wait **batch, size_t n)
{
	struct sp_upload_item items[UP_BATCH_FILES];
	struct sp_error err = { 0 };
	int rc;

	if (n == 1 && !sp_has(fs->sp, SP_CAP_UPLOAD_IN_PLACE)) {
		batch[0]->rc = sp_fs_upload_fd(fs->sp, &batch[0]->box, batch[0]->item.path, batch[0]->item.fd,
					      batch[0]->item.len, &batch[0]->err);
		return;
	}
	for (size_t i = 0; i < n; i++)
		items[i] = batch[i]->item;
	rc = sp_fs_upload_many(fs->sp, &batch[0]->box, items, n, &err);
	log_debug("%s: %zu files in one upload: %s", batch[0]->box.id, n, rc < 0 ? err.message : "answered");
	for (size_t i = 0; i < n; i++) {
		if (rc < 0) {
			batch[i]->rc = rc;
			batch[i]->err = err;   /* the request's failure is each file's */
		} else {
			batch[i]->rc = items[i].rc;
			if (items[i].rc < 0)
				sp_error_set(&batch[i]->err, items[i].rc, 0, "write %s: %s", items[i].path,
					     items[i].msg);
		}
	}
}

/* Uploads len bytes of fd to path, sharing a request with the uploads of
 * the same sandbox that wait meanwhile. */
int upload_shared(struct dfs *fs, struct sandbox *sb, const struct sp_box *box, const char *path, int fd,
			 uint64_t len, struct sp_error *err)
{
	struct open_table *t = fs->files;
	struct up_wait w, *batch[UP_BATCH_FILES];
	struct up_busy busy;

	memset(&w, 0, sizeof(w));
	w.sandbox_id = sb->id;
	w.box = *box;
	w.item.path = path;
	w.item.fd = fd;
	w.item.len = len;
	pthread_mutex_lock(&t->up_lock);
	w.next = t->up_waiting;
	t->up_waiting = &w;
	while (!w.done) {
		size_t n;

		if (up_is_busy(t, w.sandbox_id)) {
			pthread_cond_wait(&t->up_cond, &t->up_lock);
			continue;
		}
		n = up_take(t, &w, batch, UP_BATCH_FILES);
		busy.sandbox_id = w.sandbox_id;
		busy.next = t->up_busy;
		t->up_busy = &busy;
		pthread_mutex_unlock(&t->up_lock);
		up_send(fs, batch, n);
		pthread_mutex_lock(&t->up_lock);
		for (struct up_busy **bp = &t->up_busy; *bp; bp = &(*bp)->next) {
			if (*bp == &busy) {
				*bp = busy.next;
				break;
			}
		}
		for (size_t i = 0; i < n; i++)
			batch[i]->done = true;
		pthread_cond_broadcast(&t->up_cond);
	}
	pthread_mutex_unlock(&t->up_lock);
	*err = w.err;
	return w.rc;
}

/* Sends the stage to n->path (files_upload_fd; small files of the mount's
 * sandboxes share requests, upload_shared). Caller holds n->lock. */
static int upload_stage(struct dfs *fs, struct open_node *n, struct sp_error *err)
{
	struct sp_box box;
	uint64_t len = stage_size(n->stage);

	sandbox_box(n->sb, &box);
	/* A provider whose shared upload writes in place (Vercel: one command
	 * that copies each file into place) takes every small file that way. */
	if (len <= UP_SHARE_MAX &&
	    (!sp_upload_path_changed(fs->sp, n->path) || sp_has(fs->sp, SP_CAP_UPLOAD_IN_PLACE)))
		return upload_shared(fs, n->sb, &box, n->path, stage_fd(n->stage), len, err);
	return files_upload_fd(fs, n->sb, &box, n->path, stage_fd(n->stage), len, err);
}

/* ---- the crash journal (journal.h) ------------------------------------------------ */

/* Writes (or rewrites) the stage's record; durable: after an fsync of the
 * stage, and itself fsync'd. */
int journal_put(struct dfs *fs, struct open_node *n, enum journal_state state, bool durable)
{
	struct journal_rec *r = calloc(1, sizeof(*r));
	const char *dir = stage_area_staging(fs->stage);
	const char *name = stage_name(n->stage);
	int rc;

	if (!r)
		return -ENOMEM;
	r->state = state;
	str_copy(r->sandbox_id, sizeof(r->sandbox_id), n->sb->id);
	str_copy(r->sandbox_name, sizeof(r->sandbox_name), n->sb->name);
	r->base = n->base;
	r->mode = n->st.st_mode & 07777;
	r->size = stage_size(n->stage);
	r->time = (long long)time(NULL);
	/* (Hidden for a rename still to end, the file is at its name.) */
	if (!str_copy(r->path, sizeof(r->path), n->hide_from ? n->hide_from : n->path) || !name[0]) {
		rc = -ENAMETOOLONG;
	} else {
		/* The stage's data first, then the record that promises it. */
		rc = durable ? stage_sync(n->stage) : 0;
		if (rc == 0 && n->journal_name[0]) {
			rc = journal_update(n->journal_fd, dir, r, durable);
		} else if (rc == 0) {
			rc = journal_create(dir, name, r, durable);
			if (rc >= 0) {
				n->journal_fd = rc;
				str_copy(n->journal_name, sizeof(n->journal_name), name);
				rc = 0;
			}
		}
	}
	free(r);
	if (rc < 0) {
		log_error("%s: cannot write the crash journal record of %s: %s", n->sb->name, n->path,
			  strerror(-rc));
		return rc;
	}
	n->journal_flushed = state == JOURNAL_FLUSHED;
	return 0;
}

/* Before a change to the stage is acknowledged: its record exists, in
 * state "open" (once per stretch of writes: a write costs nothing more).
 * Caller holds n->lock. */
static int journal_note_dirty(struct dfs *fs, struct open_node *n)
{
	n->changes++;   /* (what a waiting upload compares: upload_waits) */
	/* An unlinked file is never uploaded again: a record would have the
	 * next mount's recovery upload it to its hidden name. (One hidden for
	 * a rename still to end is still its file: hide_for_rename.) */
	if ((n->unlinked && !n->hide_from) || (n->journal_name[0] && !n->journal_flushed))
		return 0;
	/* After a failed upload the "flushed" record is on disk: the "open"
	 * one that replaces it must be too, before the new data can reach the
	 * disk, or a reboot could find the old record over changed data. */
	return journal_put(fs, n, JOURNAL_OPEN, n->journal_flushed);
}

/*
 * Around an upload. Before it, the record says "flushed" (with the size),
 * so that the next mount uploads what a close asked for if this one dies
 * during the upload; not fsync'd: a successful upload puts the data in
 * the sandbox, which is what close promises, and a close cut short by a
 * reboot promised nothing. After a failed upload, the data stays here
 * (the error tells the user so), and here only: the stage and the record
 * are then fsync'd, so that they outlive a reboot too. A journal error is
 * logged and the upload goes on: it is what saves the data. Caller holds
 * n->lock.
 */
static void journal_note_flush(struct dfs *fs, struct open_node *n, bool failed)
{
	/* "Flushed" only for content a close, fsync or truncate by path
	 * asked to upload (node_asked_upload). A rename or rmdir uploads the
	 * files open under it too (flush_under), a writer's unfinished data:
	 * its record stays "open", so that after a crash the next mount keeps
	 * it in unsaved/ instead of uploading a file no one closed. */
	journal_put(fs, n, n->changes == n->closed_changes ? JOURNAL_FLUSHED : JOURNAL_OPEN, failed);
}

/* What n holds now is what its writer asked to be in the sandbox: a close,
 * fsync, truncate by path, or the last release. Caller holds n->lock. */
static void node_asked_upload(struct open_node *n)
{
	n->closed_changes = n->changes;
}

/* The stage's data is in the sandbox, in unsaved/, or no longer wanted.
 * Not a record kept for the next mount (journal_keep_for_recovery): a
 * file renamed over stays open, hidden, and the unlink of its hidden name
 * at its last close would drop it. */
void journal_drop(struct dfs *fs, struct open_node *n)
{
	int rc;

	if (!n->journal_name[0] || n->journal_keep)
		return;
	rc = journal_remove(stage_area_staging(fs->stage), n->journal_name);
	if (rc < 0)
		log_warn("%s: cannot remove the crash journal record of %s: %s", n->sb->name, n->path,
			 strerror(-rc));
	close(n->journal_fd);
	n->journal_name[0] = '\0';
	n->journal_flushed = false;
}

/*
 * A stage that could be neither uploaded nor moved to unsaved/ (that
 * directory is full, say) is not deleted with its node: with its record
 * (made durable by the failed upload) it stays in staging/, and the next
 * mount's recovery uploads it or keeps it. Returns false when it has no
 * record (the journal failed too): then nothing can be done but say so, in
 * the log and the sandbox's error file. path: the file's name for them (a
 * file renamed over has a hidden name by then). Caller holds n->lock.
 */
bool journal_keep_for_recovery(struct open_node *n, const char *path)
{
	if (!n->journal_name[0]) {
		/* Never silent: the user learns which file's data is gone. */
		log_error("%s: %s could not be uploaded, kept in unsaved/ nor in the crash journal: its staged "
			  "data is lost", n->sb->name, path);
		sandbox_set_error(n->sb, "%s could not be uploaded, kept in unsaved/ nor in the crash journal: "
				  "its staged data is lost", path);
		return false;
	}
	n->journal_keep = true;
	log_error("%s: %s could not be uploaded nor kept in unsaved/; it stays in the staging directory for "
		  "the next mount's crash recovery", n->sb->name, path);
	return true;
}


/*
 * Before an upload of n: the queued changes of its own attributes (those
 * queued after its previous upload, say: vim fsyncs its swap file twice)
 * are taken out of the queue and become n's pending ones, which the
 * upload's own queued change carries, so that the upload does not wait for
 * a command first. Their times are superseded: n is dirty, so it was
 * written (or truncated) after they were queued, and a write sets the
 * time; an explicit atime stays. A queued delete of the path (vim deletes
 * its swap file at the end of a save and makes it at the next) or n's own
 * queued move onto it make the upload a replacement (rp->on: under a new
 * name, moved into place by a queued command: upload_replacing); anything
 * else queued that touches the path (a directory) is sent first, as
 * before. Caller holds n->lock.
 */
static void take_back_attrs(struct dfs *fs, struct open_node *n, struct replace *rp)
{
	struct wb_queue *q = fs->files->deferred.wb;
	bool clear, can = replace_ok(fs, n);
	struct wb_op *list;

	memset(rp, 0, sizeof(*rp));
	list = can ? wb_take_replace(q, n->sb, n->path, &clear, &rp->on, &rp->base, &rp->prev_src)
		   : wb_take_attrs(q, n->sb, n->path, &clear);
	if (!clear && wb_running_touches(q, n->sb, n->path)) {
		/* The batch in flight (the last save's touch, say) ends first;
		 * what is queued may then be taken back instead of sent. */
		deferred_wait_running(&fs->files->deferred, n->sb, n->path);
		free(rp->prev_src);
		rp->prev_src = NULL;
		list = can ? wb_take_replace(q, n->sb, n->path, &clear, &rp->on, &rp->base, &rp->prev_src)
			   : wb_take_attrs(q, n->sb, n->path, &clear);
	}
	if (!clear) {
		files_settle_changes(fs, n->sb, n->path);
		rp->on = false;
		free(rp->prev_src);
		rp->prev_src = NULL;
		return;
	}
	while (list) {
		struct wb_op *op = list;

		list = op->next;
		op->next = NULL;
		if (op->chown && !n->chown_pending) {
			n->chown_pending = true;
			n->uid = op->uid;
			n->gid = op->gid;
		} else if (op->chown) {
			if (n->uid == (uid_t)-1)
				n->uid = op->uid;
			if (n->gid == (gid_t)-1)
				n->gid = op->gid;
		}
		if (op->chmod) {
			/* n->st has the mode the mount shows: the queued one or a later one. */
			n->chmod_pending = true;
			n->chmod_queued = true;
		}
		if (op->set_atime && !n->atime_pending) {
			n->atime_pending = true;
			n->atime = op->atime;
		}
		wb_op_free(op);
	}
}

/* Uploads a dirty stage, then applies what had to wait for the file to
 * exist (mode, owner, times). Caller holds n->lock. */
int upload_node(struct dfs *fs, struct open_node *n)
{
	struct sp_error err = { 0 };
	int rc;
	struct replace rp;

	if (!n->dirty || n->unlinked)
		return 0;
	/* A queued change of this file (its times, say) must not land after
	 * the new content: taken back and sent after it, or sent first. (Not
	 * files_settle: n is the only upload waiting for this path, and this
	 * thread holds it.) */
	take_back_attrs(fs, n, &rp);
	journal_note_flush(fs, n, false);
	rc = rp.on ? upload_replacing(fs, n, &rp, &err) : upload_stage(fs, n, &err);
	if (rc < 0) {
		upload_failed(fs, n, rc, &err);
		return rc;
	}
	upload_succeeded(fs, n);
	return 0;
}

/* An upload of n failed: the data stays staged, its record durable. Caller
 * holds n->lock. */
void upload_failed(struct dfs *fs, struct open_node *n, int rc, struct sp_error *err)
{
	struct stat hint;

	n->upload_error = rc;
	/* The request may have done its work before its answer was lost
	 * (a reset after the command ran, a 5xx after the write, a bulk
	 * upload's reply cut): a new file is no longer surely absent there. */
	n->maybe_remote = true;
	journal_note_flush(fs, n, true);
	upload_hint(n, &hint);
	cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
	toolbox_failed(fs, n->sb, rc, err, "upload", n->path);
	log_error("%s: upload of %s failed: %s (the data is kept staged)", n->sb->name, n->path, err->message);
}

/*
 * A small file just uploaded: its content is kept for the next open's
 * first read (editors read back what they saved at their next start),
 * under the size and time the mount shows for it, and handed out only
 * while the cache still says those (fs_prefetch.c). Caller holds n->lock.
 */
static void keep_uploaded(struct dfs *fs, struct open_node *n)
{
	uint64_t size = stage_size(n->stage);
	char *data;

	prefetch_drop_path(fs->files->prefetch, n->sb->id, n->path);
	if (!n->populated || size == 0 || size > PF_FILE_MAX)
		return;
	data = malloc(size);
	if (!data)
		return;
	if (stage_pread(n->stage, data, size, 0) != (ssize_t)size) {
		free(data);
		return;
	}
	prefetch_put_own(fs->files->prefetch, n->sb->id, n->path, data, size, &n->mtime,
			 now_mono() + fs->opt.attr_timeout);
}

/* n's stage is in the sandbox: what waited for that follows. Caller holds
 * n->lock. */
void upload_succeeded(struct dfs *fs, struct open_node *n)
{
	bool was_new = n->is_new;

	n->dirty = false;
	n->is_new = false;
	n->maybe_remote = false;
	n->upload_error = 0;
	journal_drop(fs, n);
	/* The sandbox's time of our upload is not known here: a later stretch
	 * of writes cannot be checked against it after a crash. */
	n->base.kind = JOURNAL_BASE_UNKNOWN;
	apply_after_upload(fs, n, was_new);
	keep_uploaded(fs, n);
}

/*
 * The attributes of an existing file about to be opened or truncated: the
 * cache's, which the kernel's lookup just before filled; else the parent's
 * listing's (right in type and mode, maybe stale in size and time: *exact
 * false); else one request. The kernel can open a name whose attributes the
 * mount no longer holds: a dentry it kept from a create or rename, after
 * attr_timeout or after this open sent the path's queued changes (which drop
 * its entry). A mode guessed then (0644) was shown for the file, and kept
 * by the upload's, until the next listing (a file made 0600 showed 0644
 * after a save). A file the sandbox no longer has is -ESTALE, not -ENOENT:
 * the kernel, which still had the name, then looks it up again and retries
 * once, so that an open with O_CREAT (which it sent without the flag, the
 * name being known) creates the file, as it would have had it known.
 */
static int existing_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st, bool *exact)
{
	bool listed = false;
	int rc;

	*exact = true;
	switch (cache_lookup(fs->cache, sb->id, path, st, &listed)) {
	case CACHE_HIT:
		return 0;
	case CACHE_NEGATIVE:
		return -ESTALE;
	case CACHE_MISS:
		break;
	}
	if (listed) {
		*exact = false;
		return 0;
	}
	rc = lookup_attr(fs, sb, path, st);
	return rc == -ENOENT ? -ESTALE : rc;
}

/* Whether n has its attributes: a node is made with none (st_mode 0). */
static bool node_has_attrs(const struct open_node *n)
{
	return n->is_new || (n->st.st_mode & S_IFMT);
}

static bool node_attrs_known(struct open_node *n)
{
	bool known;

	pthread_mutex_lock(&n->lock);
	known = node_has_attrs(n);
	pthread_mutex_unlock(&n->lock);
	return known;
}

/*
 * n's attributes from existing_attr's, unless it has them. A request that
 * reached the node first may have set some: a chmod's permission bits stay
 * (it sent them to the sandbox), and a node a truncate populated keeps the
 * content and time that are now its own. Caller holds n->lock.
 */
static void node_init_existing(struct open_node *n, const struct stat *st, bool exact)
{
	mode_t perm = n->st.st_mode & 07777;

	if (node_has_attrs(n))
		return;
	if (n->populated) {
		n->st.st_uid = st->st_uid;
		n->st.st_gid = st->st_gid;
		n->st.st_mode = st->st_mode;
	} else {
		n->st = *st;
		n->mtime = n->st.st_mtim;
		if (exact) {
			/* what recovery checks the sandbox's file against */
			n->base.kind = JOURNAL_BASE_FILE;
			n->base.size = (uint64_t)n->st.st_size;
			n->base.mtime = n->st.st_mtim;
			node_note_told(n, &n->st);
		}
	}
	if (perm)
		n->st.st_mode = (st->st_mode & S_IFMT) | perm;
	n->st.st_nlink = 1;
	n->st.st_blksize = 128 * 1024;
}

/* node_init_existing with the attributes of path, which it may take a
 * request to learn: with n->lock released meanwhile. Caller holds n->lock,
 * and has it again on return. */
static int node_ensure_attrs(struct dfs *fs, struct sandbox *sb, const char *path, struct open_node *n)
{
	struct stat st;
	bool exact;
	int rc;

	if (node_has_attrs(n))
		return 0;
	pthread_mutex_unlock(&n->lock);
	rc = existing_attr(fs, sb, path, &st, &exact);
	pthread_mutex_lock(&n->lock);
	if (rc == 0)
		node_init_existing(n, &st, exact);
	return rc;
}

static int open_file_at(struct dfs *fs, struct sandbox *sb, const char *path, struct fuse_file_info *fi, bool create,
			mode_t mode, bool redirected);

/*
 * Before a truncation cuts data that a failed upload left (a close or an
 * fsync said EIO) while another handle is open on the file. The kernel
 * sends a close's release after close(2) has returned: a save that follows
 * at once (an open with O_TRUNC, a truncate) can reach the mount first,
 * and cut what the release's last-chance upload was to send, or keep in
 * unsaved/ (the fault soak met it: the failed close's data was in neither).
 * That data goes to unsaved/ now, as a failed last-chance upload's does,
 * and n gets a new stage with the first size bytes of it. own: the
 * caller's handles among n->handles (an ftruncate's: 1). 0, or the errno
 * of a copy that could not be kept: then nothing is cut. Caller holds
 * n->lock; n is populated.
 */
static int keep_failed_data(struct dfs *fs, struct open_node *n, int own, uint64_t size)
{
	struct stage *old = n->stage, *cut = NULL;
	int rc;

	if (!n->dirty || !n->upload_error || n->unlinked || !old || n->handles <= own || stage_size(old) <= size)
		return 0;
	rc = stage_copy(fs->stage, old, size, &cut);
	if (rc == 0)
		rc = node_keep_unsaved(n, n->path, ", and a truncation followed");
	if (rc < 0) {
		stage_free(cut);
		log_error("%s: %s: the data of a failed upload could not be kept before a truncation, which is "
			  "refused: %s", n->sb->name, n->path, strerror(-rc));
		return rc;
	}
	stage_free(old);   /* preserved: its file is in unsaved/ now */
	n->stage = cut;
	/* That failure is dealt with: what the stage holds now has not failed
	 * (a second truncation must not keep it too, nor a close report it). */
	n->upload_error = 0;
	journal_drop(fs, n);
	return 0;
}


/*
 * A new file in a directory known to refuse the sandbox's file user
 * (files_parent_may_refuse: chmod 555, or root's /etc on Vercel) is made in
 * the sandbox at the open, empty and with its mode, so that the open gets
 * the sandbox's answer: EACCES where the file API is not root's (Vercel's
 * runs as the sandbox's user).
 * Made at its close, as other new files are, the refusal came at the close,
 * which shells do not check: echo x > ro/new said 0 and its data went to
 * unsaved/. The open then goes on as an open of that empty file. A few
 * requests (the upload: on Vercel one through STATE_DIR/out and a copy;
 * its attributes; a chmod when the mode differs), in that rare directory
 * only.
 */
static int create_in_sandbox(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	struct stat st;
	int fd, rc;

	files_settle_changes(fs, sb, path);
	sandbox_box(sb, &box);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = files_upload_fd(fs, sb, &box, path, fd, 0, &err);
	close(fd);
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "create", path);
	cache_invalidate(fs->cache, sb->id, path);
	rc = lookup_attr(fs, sb, path, &st);
	if (rc == 0 && (st.st_mode & 07777) != (mode & 07777)) {
		rc = files_chmod_path(fs, &box, path, mode & 07777, &err);
		if (rc < 0)
			rc = toolbox_failed(fs, sb, rc, &err, "chmod", path);
		st.st_mode = (st.st_mode & S_IFMT) | (mode & 07777);
	}
	if (rc < 0) {
		cache_invalidate(fs->cache, sb->id, path);
		return rc;
	}
	cache_update(fs->cache, sb->id, path, CACHE_REPLACED, &st, false);
	return 0;
}

/*
 * Whether the user the sandbox's file API acts as, where the provider says
 * who (files_owner_known, not root: Vercel's uid 1000), may not write the
 * existing file st. An upload writes the file in place as that user (its
 * owner gets the write bit back for the copy: vercel_bulk.c), so another
 * owner's file whose bits refuse it (root's /etc/hosts) failed at the
 * close, which shells do not check: echo x >> /etc/hosts said 0 and the
 * data went to unsaved/. Such an open for writing gets EACCES, as the
 * kernel gives a user who is not root. A group bit of another group may be
 * a supplementary group's of the user: allowed (the close answers then).
 */
static bool file_user_may_not_write(const struct dfs *fs, const struct stat *st)
{
	const struct sandbox_provider *sp = fs->sp;

	if (!sp->files_owner_known || sp->files_uid == 0 || st->st_uid == sp->files_uid)
		return false;
	if (st->st_gid == sp->files_gid)
		return !(st->st_mode & 0020);
	return !(st->st_mode & 0022);
}

int files_open(struct dfs *fs, struct sandbox *sb, const char *path, struct fuse_file_info *fi, bool create,
	       mode_t mode)
{
	return open_file_at(fs, sb, path, fi, create, mode, false);
}

/* redirected: an open of a hidden name, of the name it was hidden from,
 * which libfuse does not hold back while a rename replaces that name. */
static int open_file_at(struct dfs *fs, struct sandbox *sb, const char *path, struct fuse_file_info *fi, bool create,
			mode_t mode, bool redirected)
{
	struct fhandle *h;
	struct open_node *n;
	struct stat attrs;
	bool have_attrs = false, attrs_exact = false, made = false;
	int rc = 0;

	if (is_hidden_name(path) && !create) {
		/* An open of a file libfuse hid (unlinked or replaced while
		 * open), through a name the kernel still caches: it shares
		 * what the other descriptors read, or after the last of them
		 * closed, opens the name it was hidden from (HIDDEN_NAMES). */
		char from[sizeof(((struct node *)0)->path)];

		n = node_find_hidden(fs->files, sb, path);
		if (!n) {
			if (!hidden_name_origin(fs->files, sb, path, from, sizeof(from)))
				return -ESTALE;
			return open_file_at(fs, sb, from, fi, false, 0, true);
		}
	} else {
		if (create && files_parent_may_refuse(fs, sb, path)) {
			rc = create_in_sandbox(fs, sb, path, mode);
			if (rc < 0)
				return rc;
			create = false;   /* the sandbox's empty file, opened as such */
			made = true;
		}
		/* A create where this mount's delete of the path still waits
		 * leaves it queued when the upload can replace the file under
		 * a new name (files_create_may_replace, upload_replacing);
		 * else it sends that delete first (files_settle_changes): the new file
		 * must be a new inode, as after delete-then-create. An upload
		 * over the old one would write into its other hard links, its
		 * open and mapped readers, a link put at the path, and keep its
		 * owner and setuid bits; and it fails where the old file is
		 * busy (ETXTBSY) or not writable while its directory is.
		 * Not files_settle: an upload waiting for this path (-o
		 * writeback) is this node's, which the open joins. An open
		 * that keeps the content does not wait for the path's own
		 * queued attributes (wb_conflicts_content). */
		if (create && files_create_may_replace(fs, sb, path))
			;   /* its upload replaces the file under a new name (upload_replacing) */
		else if (create || (fi->flags & O_TRUNC) ||
			 wb_conflicts_content(fs->files->deferred.wb, sb, path))
			files_settle_changes(fs, sb, path);
		/* The attributes of a file no node holds, learnt before its
		 * node is made (made without them, a chmod or truncate could
		 * find it so while a request is out). */
		if (!create) {
			n = node_find(fs->files, sb, path);
			if (!n || !node_attrs_known(n)) {
				rc = existing_attr(fs, sb, path, &attrs, &attrs_exact);
				if (rc < 0) {
					if (n)
						node_release(fs, n);
					return rc;
				}
				have_attrs = true;
			}
			if (n)
				node_release(fs, n);
		}
		n = node_get(fs->files, sb, path, redirected);
		if (!n)
			return -ENOMEM;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto fail;
	}
	h->type = FS_HANDLE_FILE;
	h->node = n;
	h->flags = fi->flags;
	h->window = RA_MIN;
	pthread_mutex_init(&h->lock, NULL);

	pthread_mutex_lock(&n->lock);
	if (n->unlinked && !redirected && !is_hidden_name(path)) {
		/* Its name went while this open waited for the node (an empty
		 * new file the sandbox refused, dropped by its upload:
		 * refused_empty_new): what it would write would go nowhere.
		 * ESTALE: the kernel looks the name up again. */
		pthread_mutex_unlock(&n->lock);
		rc = -ESTALE;
		goto fail;
	}
	if (!create) {
		if (have_attrs)
			node_init_existing(n, &attrs, attrs_exact);
		rc = node_ensure_attrs(fs, sb, path, n);
		if (rc == 0 && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) &&
		    S_ISREG(n->st.st_mode) && file_user_may_not_write(fs, &n->st))
			rc = -EACCES;
		if (rc < 0) {
			pthread_mutex_unlock(&n->lock);
			goto fail;
		}
	}
	h->told_gen = n->told_gen;
	/* O_TRUNC truncates whatever the access mode: Linux does it for O_RDONLY too. */
	if (create || (fi->flags & O_TRUNC))
		rc = keep_failed_data(fs, n, 0, 0);
	if (rc == 0 && (create || (fi->flags & O_TRUNC))) {
		/* The content is known (empty) without downloading it. */
		if (!n->stage)
			rc = stage_new(fs->stage, &n->stage);
		else
			rc = stage_truncate(n->stage, 0);
		if (rc == 0 && create)
			n->base.kind = JOURNAL_BASE_NEW;
		if (rc == 0)
			rc = journal_note_dirty(fs, n);
		if (rc == 0) {
			n->populated = true;
			n->dirty = true;
			n->mtime_pending = false;
			touch_now(n);
			if (create) {
				n->is_new = true;
				memset(&n->st, 0, sizeof(n->st));
				n->st.st_mode = S_IFREG | (mode & 07777);
				n->st.st_nlink = 1;
				n->st.st_uid = fs->new_uid;
				n->st.st_gid = fs->new_gid;
				n->st.st_blksize = 128 * 1024;
				n->st.st_mtim = n->st.st_atim = n->st.st_ctim = n->mtime;
				n->chmod_pending = true;
				/* The parent's listing gains the name; the attributes
				 * come from this node until the upload. */
				cache_update(fs->cache, sb->id, path, CACHE_REPLACED, &n->st, false);
				link_drop(fs, sb, path, false);
			}
		}
	}
	if (rc == 0 && made && !n->dirty) {
		/* Just made, empty: its content is known (not what a node of
		 * the path kept from before), and a write to it downloads
		 * nothing (without O_TRUNC: touch, >>, O_EXCL). */
		rc = n->stage ? stage_truncate(n->stage, 0) : stage_new(fs->stage, &n->stage);
		if (rc == 0)
			n->populated = true;
	}
	if (rc == 0)
		n->handles++;
	pthread_mutex_unlock(&n->lock);
	if (rc < 0)
		goto fail;
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
fail:
	if (h) {
		pthread_mutex_destroy(&h->lock);
		free(h);
	}
	node_release(fs, n);
	return rc;
}


int files_write(struct dfs *fs, struct fuse_file_info *fi, const char *buf, size_t size, off_t off)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;
	uint64_t uoff = (uint64_t)off;
	ssize_t put;
	int rc;

	pthread_mutex_lock(&n->lock);
	rc = ensure_populated(fs, n);
	if (rc < 0)
		goto out;
	/* O_APPEND writes land at the end of what we hold, whatever the kernel thought. */
	if (h->flags & O_APPEND)
		uoff = stage_size(n->stage);
	rc = journal_note_dirty(fs, n);
	if (rc < 0)
		goto out;
	put = stage_pwrite(n->stage, buf, size, uoff);
	if (put < 0) {
		rc = (int)put;
		goto out;
	}
	n->dirty = true;
	/* A write sets the time to now, replacing an earlier utimens. */
	n->mtime_pending = false;
	touch_now(n);
	rc = (int)put;
out:
	pthread_mutex_unlock(&n->lock);
	/* Read-ahead of this handle is stale now; reads go to the stage anyway. */
	pthread_mutex_lock(&h->lock);
	h->ra_len = 0;
	if (h->rs) {
		rs_stop(h->rs);
		h->rs = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int files_flush(struct dfs *fs, struct fuse_file_info *fi)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;
	int rc;

	pthread_mutex_lock(&n->lock);
	node_asked_upload(n);
	/* -o writeback: the upload waits (fs_writeback.c); a failed one of
	 * before is still this close's error. */
	if (upload_later(fs, n))
		rc = n->upload_error;
	else
		rc = upload_node(fs, n);
	pthread_mutex_unlock(&n->lock);
	return rc;
}

int files_fsync(struct dfs *fs, struct fuse_file_info *fi)
{
	struct open_node *n = ((struct fhandle *)(uintptr_t)fi->fh)->node;
	int rc;

	/* Always now, -o writeback or not: fsync is what a program asks when
	 * it wants the data there. */
	pthread_mutex_lock(&n->lock);
	node_asked_upload(n);
	rc = upload_node(fs, n);
	pthread_mutex_unlock(&n->lock);
	return rc;
}

/* Moves n's stage, data that could not be uploaded, to unsaved/ as
 * SANDBOX:path (stage_preserve), and says where in the log (after "could
 * not be uploaded", how: what came of the file since) and in the sandbox's
 * error file. 0, or -errno (stage_preserve logged it). Caller holds
 * n->lock. */
int node_keep_unsaved(struct open_node *n, const char *path, const char *how)
{
	char label[4600], where[4096];
	int rc;

	snprintf(label, sizeof(label), "%s:%s", n->sb->name, path);
	rc = stage_preserve(n->stage, label, where, sizeof(where));
	if (rc == 0) {
		log_error("%s: %s could not be uploaded%s; its content is saved in %s", n->sb->name, path, how,
			  where);
		sandbox_set_error(n->sb, "%s could not be uploaded; its content is saved in %s", path, where);
	}
	return rc;
}

/* n has no handle left (its last one went, or a failed rename gave it its
 * name back after that: files_rename_hide_end): the last-chance upload, and
 * a stage that still cannot be uploaded is preserved, never dropped. Caller
 * holds n->lock. */
void node_last_close(struct dfs *fs, struct open_node *n)
{
	bool later;

	node_asked_upload(n);   /* no descriptor left: this is its content */
	later = upload_waits(fs, n);   /* its upload waits (-o writeback): not now */
	if (n->dirty && !n->unlinked && !later && upload_node(fs, n) < 0) {
		if (node_keep_unsaved(n, n->path, "") == 0) {
			journal_drop(fs, n);
		} else if (journal_keep_for_recovery(n, n->path)) {
			sandbox_set_error(n->sb, "%s could not be uploaded; its content stays staged for the "
					  "next mount", n->path);
		}
		node_forget_content(fs, n);
	}
}

/* Drops a handle; the last one's last-chance upload happens here. Caller
 * holds n->lock. */
static void release_locked(struct dfs *fs, struct open_node *n)
{
	/* The node stays in the open table (this handle's reference) until the
	 * last-chance upload is over: an open of the same path meanwhile joins
	 * the node and waits for the lock, so that one path never has two
	 * uploads at once, and an older content never lands after a newer one. */
	if (--n->handles == 0)
		node_last_close(fs, n);
}

static void fhandle_free(struct fhandle *h)
{
	if (h->rs)
		rs_stop(h->rs);
	free(h->ra_buf);
	if (h->copy)
		stage_free(h->copy);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int files_release(struct dfs *fs, struct fuse_file_info *fi)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;

	pthread_mutex_lock(&n->lock);
	release_locked(fs, n);
	pthread_mutex_unlock(&n->lock);
	if (h->release_queued)
		node_release_ran(fs->files, n);
	node_release(fs, n);
	fhandle_free(h);
	return 0;
}

/*
 * files_release without waiting: FILES_RELEASED when it did it all;
 * FILES_RELEASE_HANDLE when only the handle is left to free (files_release_handle),
 * which waits for its streaming download's thread to stop (for the network,
 * when that is stalled); FILES_RELEASE_WOULD_WAIT, with nothing done, when it
 * would wait for the network (the last-chance upload) or for the node's lock,
 * which an upload may hold (a flush of another descriptor, -o writeback's, a
 * rename's). What is left runs on a thread of the mount's (dfs_release says why).
 */
static enum files_release_state release_would_wait(struct dfs *fs, struct fhandle *h)
{
	h->release_queued = true;
	node_release_queued(fs->files, h->node);
	return FILES_RELEASE_WOULD_WAIT;
}

enum files_release_state files_release_quick(struct dfs *fs, struct fuse_file_info *fi)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;
	bool upload;

	if (pthread_mutex_trylock(&n->lock) != 0)
		return release_would_wait(fs, h);
	/* (What node_last_close will do: upload, unless the queue will.) */
	upload = n->handles == 1 && n->dirty && !n->unlinked && !upload_waits(fs, n);
	if (upload) {
		pthread_mutex_unlock(&n->lock);
		return release_would_wait(fs, h);
	}
	release_locked(fs, n);
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
	if (h->rs)
		return FILES_RELEASE_HANDLE;
	fhandle_free(h);
	return FILES_RELEASED;
}

void files_release_handle(struct fuse_file_info *fi)
{
	fhandle_free((struct fhandle *)(uintptr_t)fi->fh);
}

/* truncate(2) of a file no descriptor of this mount has open: one command,
 * so that no content travels. -ENOSYS when the sandbox has no truncate. */
static int truncate_by_command(struct dfs *fs, struct sandbox *sb, const char *path, off_t size)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	int code = 0, rc;

	files_settle(fs, sb, path);
	sb_addf(&cmd, "truncate -c -s %lld -- ", (long long)size);
	sh_word(&cmd, path);
	if (list_mode_get(fs, sb) != LIST_API)
		files_add_stat_print(&cmd, path);
	rc = cmd.oom ? -ENOMEM : sandbox_sh(fs, sb, sb_str(&cmd), &code, &out);
	sb_free(&cmd);
	if (rc == 0 && code == 127)
		rc = -ENOSYS;
	else if (rc == 0 && code != 0)
		rc = errno_from_message(out);
	else if (rc == 0)
		note_command_result(fs, sb, path, out, CACHE_CHANGED);
	free(out);
	return rc;
}

int files_truncate(struct dfs *fs, struct sandbox *sb, const char *path, off_t size, struct fuse_file_info *fi)
{
	struct open_node *n;
	bool by_path = fi == NULL;
	int rc;

	if (size < 0)
		return -EINVAL;
	if (fi) {
		n = ((struct fhandle *)(uintptr_t)fi->fh)->node;
	} else {
		n = node_find(fs->files, sb, path);
		if (!n) {
			rc = truncate_by_command(fs, sb, path, size);
			if (rc != -ENOSYS)
				return rc;
			/* No truncate there: a temporary node, staged and uploaded. */
			struct stat st;
			bool exact;

			rc = existing_attr(fs, sb, path, &st, &exact);
			if (rc < 0)
				return rc;
			n = node_get(fs->files, sb, path, false);
			if (!n)
				return -ENOMEM;
			pthread_mutex_lock(&n->lock);
			node_init_existing(n, &st, exact);
			pthread_mutex_unlock(&n->lock);
		}
	}
	pthread_mutex_lock(&n->lock);
	/* A node found while the open that made it still learns its
	 * attributes gets them here too. */
	if (by_path) {
		rc = node_ensure_attrs(fs, sb, path, n);
		if (rc < 0) {
			pthread_mutex_unlock(&n->lock);
			node_release(fs, n);
			return rc;
		}
	}
	if (size == 0 && !n->populated) {
		if (!n->stage)
			rc = stage_new(fs->stage, &n->stage);
		else
			rc = stage_truncate(n->stage, 0);
		if (rc == 0)
			n->populated = true;
	} else {
		rc = ensure_populated(fs, n);
		if (rc == 0)
			rc = keep_failed_data(fs, n, by_path ? 0 : 1, (uint64_t)size);
	}
	if (rc == 0)
		rc = journal_note_dirty(fs, n);
	if (rc == 0)
		rc = stage_truncate(n->stage, (uint64_t)size);
	if (rc == 0) {
		n->dirty = true;
		n->mtime_pending = false;
		touch_now(n);
		/* A truncate by path is a whole change, as an open, truncate
		 * and close would be: with no descriptor left to close, its
		 * content is what a queued upload of the file (-o writeback,
		 * or an empty new file) must send should this one fail. */
		if (by_path && n->handles == 0)
			upload_queue_takes_content(n);
		if (by_path) {
			node_asked_upload(n);
			rc = upload_node(fs, n);
		}
	}
	pthread_mutex_unlock(&n->lock);
	if (by_path)
		node_release(fs, n);
	return rc;
}
