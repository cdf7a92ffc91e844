/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_writeback.c - -o writeback=SEC: the upload of a closed file waits up to
 * SEC seconds, so that the files a tar x or cp -r closes one after another
 * go many to a request (sp_fs_upload_many of up to UP_FILES files: Daytona's
 * bulk-upload, Vercel's upload command), instead of a round trip each. What waits is safe locally: the file's
 * crash-journal record says "flushed" at its close, so that the next mount
 * uploads it after a crash of this one (fs_write.c, recover.c). The node
 * stays in the open table meanwhile (the queue holds a reference), so an
 * open, read or stat through the mount sees the staged data. Anything that
 * could see the file in the sandbox uploads it first (files_settle: a
 * listing, a rename, every exec through ctl, fsync of the directory),
 * fsync(2) of the file uploads it at once, and unmount uploads everything.
 * Without the option, the same queue holds files closed empty for WB_DELAY,
 * as deletes wait (upload_later), so that probe and lock files deleted soon
 * after cost nothing. The design of the file proxy is in fs_files_int.h.
 */
#include "fs_files_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "urlenc.h"

#define UP_FILES 128
#define UP_BYTES (8u << 20)
/* One file alone goes in place (sp_fs_upload_many) up to this size where
 * the provider does that (SP_CAP_UPLOAD_IN_PLACE), as upload_stage sends a
 * closed file (fs_write.c's UP_SHARE_MAX): one request; a larger one as a
 * file and a copy. */
#define WBK_IN_PLACE_MAX (1u << 20)
/* After a failed upload: the next try of a waiting file. */
#define WBK_RETRY_S 2.0

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *wbk_main(void *arg);

/*
 * Called by flush (each close) with n->lock held: with -o writeback, queues
 * n's upload SEC seconds from now (a later close of it postpones it) and
 * returns true; the close returns without a request. False when the upload
 * must happen now: no writeback, nothing to upload, a name the toolbox would
 * trim (its upload is a copy by command), no journal record (then only the
 * sandbox can keep the data), or no thread. A provider whose upload of
 * several files writes each in place (SP_CAP_UPLOAD_IN_PLACE: Vercel, where
 * sp_upload_path_changed holds for every path) defers every file: its
 * batches write in place, and one file alone goes as upload_stage sends it.
 */
bool upload_later(struct dfs *fs, struct open_node *n)
{
	struct open_table *t = fs->files;
	double delay = (double)fs->opt.writeback;
	bool ok = true;

	if (!n->dirty || n->unlinked || is_hidden_name(n->path) ||
	    (sp_upload_path_changed(fs->sp, n->path) && !sp_has(fs->sp, SP_CAP_UPLOAD_IN_PLACE)))
		return false;
	/* Without -o writeback, an empty file created here waits as a delete
	 * does (WB_DELAY), so that one deleted soon after (vim's probe and swap
	 * files, lock files) never costs a request: its unlink finds it never
	 * uploaded. Nothing can see it missing in the sandbox meanwhile that
	 * the queued changes' rules do not cover (files_settle). */
	if (delay <= 0) {
		if (!n->is_new || !n->populated || stage_size(n->stage) != 0)
			return false;
		delay = WB_DELAY;
	}
	/* The record that makes the next mount upload it if this one dies. */
	if (journal_put(fs, n, JOURNAL_FLUSHED, false) < 0)
		return false;
	pthread_mutex_lock(&t->wbk_lock);
	if (!t->wbk_thread_on && !t->wbk_stop) {
		if (pthread_create(&t->wbk_thread, NULL, wbk_main, fs) == 0)
			t->wbk_thread_on = true;
	}
	if (!t->wbk_thread_on) {
		ok = false;
	} else {
		n->wbk_due = mono_now() + delay;
		upload_queue_takes_content(n);
		if (!n->wbk_queued) {
			pthread_mutex_lock(&t->lock);
			n->refs++;   /* the queue's */
			pthread_mutex_unlock(&t->lock);
			n->wbk_queued = true;
			n->wbk_next = t->wbk_head;
			t->wbk_head = n;
		}
		pthread_cond_broadcast(&t->wbk_cond);
	}
	pthread_mutex_unlock(&t->wbk_lock);
	return ok;
}

/*
 * Whether n's stage is still what the close that queued it asked to upload.
 * A write since, through a descriptor still open or one opened again, makes
 * content that no close asked for yet: the queue then never uploads it (a
 * half-written file in the sandbox, and in the crash journal's eyes an
 * upload of a file never closed), and its own close uploads it or queues
 * it again. bash's "> f" closes a dup of the new, empty file (a close that
 * queues it: upload_later) before it writes to it. Caller holds n->lock.
 */
static bool queued_content(const struct open_node *n)
{
	return n->changes == n->wbk_changes;
}

void upload_queue_takes_content(struct open_node *n)
{
	n->wbk_changes = n->changes;
}

bool upload_waits(struct dfs *fs, struct open_node *n)
{
	bool queued;

	pthread_mutex_lock(&fs->files->wbk_lock);
	queued = n->wbk_queued;
	pthread_mutex_unlock(&fs->files->wbk_lock);
	return queued && queued_content(n);
}

/* Whether a queued node is one the caller asked to flush. n->path is read
 * under wbk_lock only: a rename changes it under n->lock, but a rename
 * flushes the node (files_settle) before it. */
static bool wbk_matches(const struct open_node *n, const struct sandbox *sb, const char *path, bool due_only,
			double now)
{
	if (sb && n->sb != sb)
		return false;
	if (path && !path_is_within(n->path, path) && !path_is_within(path, n->path))
		return false;
	return !due_only || n->wbk_due <= now;
}

/* Takes the queued nodes that match out of the queue, with their
 * references, and marks them in flight (wbk_finish ends that): an array
 * (malloc'd) of *count. */
static struct open_node **wbk_take(struct open_table *t, struct sandbox *sb, const char *path, bool due_only,
				   size_t *count)
{
	struct open_node **v = NULL, **pp;
	size_t n = 0, cap = 0;
	double now = mono_now();

	pthread_mutex_lock(&t->wbk_lock);
	for (pp = &t->wbk_head; *pp;) {
		struct open_node *e = *pp;

		/* A node in flight that a close queued again waits for the
		 * end of that upload: two takers would both upload it. */
		if (e->wbk_busy || !wbk_matches(e, sb, path, due_only, now)) {
			pp = &e->wbk_next;
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct open_node **nv = realloc(v, ncap * sizeof(*nv));

			if (!nv)
				break;   /* the rest waits for the next round */
			v = nv;
			cap = ncap;
		}
		*pp = e->wbk_next;
		e->wbk_next = NULL;
		e->wbk_queued = false;
		e->wbk_busy = true;
		e->wbk_bprev = NULL;
		e->wbk_bnext = t->wbk_busy_head;
		if (t->wbk_busy_head)
			t->wbk_busy_head->wbk_bprev = e;
		t->wbk_busy_head = e;
		v[n++] = e;
	}
	pthread_mutex_unlock(&t->wbk_lock);
	*count = n;
	return v;
}

/* Whether an upload of sb waits or is in flight at, below or above path
 * (-o writeback; without it, only empty new files wait). */
bool files_writeback_waiting(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct open_table *t = fs->files;
	bool any = false;
	double now = mono_now();

	pthread_mutex_lock(&t->wbk_lock);
	for (struct open_node *e = t->wbk_head; e && !any; e = e->wbk_next)
		any = wbk_matches(e, sb, path, false, now);
	for (struct open_node *e = t->wbk_busy_head; e && !any; e = e->wbk_bnext)
		any = wbk_matches(e, sb, path, false, now);
	pthread_mutex_unlock(&t->wbk_lock);
	return any;
}

/*
 * The end of a taken node's upload: it is no longer in flight, and with
 * requeue (its upload failed) goes back in the queue with its reference,
 * to be tried again later. Returns true when the caller must drop the
 * reference the take gave it: on success, and when a close queued the node
 * again meanwhile (that close took a reference of its own for the queue;
 * keeping both leaked the node and its stage until unmount).
 */
static bool wbk_finish(struct open_table *t, struct open_node *n, bool requeue)
{
	bool drop = true;

	pthread_mutex_lock(&t->wbk_lock);
	if (n->wbk_busy) {
		if (n->wbk_bprev)
			n->wbk_bprev->wbk_bnext = n->wbk_bnext;
		else
			t->wbk_busy_head = n->wbk_bnext;
		if (n->wbk_bnext)
			n->wbk_bnext->wbk_bprev = n->wbk_bprev;
		n->wbk_bprev = n->wbk_bnext = NULL;
		n->wbk_busy = false;
	}
	if (requeue && !n->wbk_queued) {
		n->wbk_queued = true;
		n->wbk_due = mono_now() + WBK_RETRY_S;
		n->wbk_next = t->wbk_head;
		t->wbk_head = n;
		drop = false;
	}
	/* A flush waits for the end of this upload; the thread, for a node
	 * queued again while in flight. */
	pthread_cond_broadcast(&t->wbk_cond);
	pthread_mutex_unlock(&t->wbk_lock);
	return drop;
}

static void wbk_end(struct dfs *fs, struct open_node *n, bool requeue)
{
	if (wbk_finish(fs->files, n, requeue))
		node_release(fs, n);
}

/* Waits until no node that matches is in flight (taken by another thread,
 * which holds nothing this one holds). True when it waited. */
static bool wbk_wait_busy(struct open_table *t, struct sandbox *sb, const char *path)
{
	bool waited = false;

	pthread_mutex_lock(&t->wbk_lock);
	for (;;) {
		struct open_node *e = t->wbk_busy_head;

		while (e && !wbk_matches(e, sb, path, false, 0))
			e = e->wbk_bnext;
		if (!e)
			break;
		waited = true;
		pthread_cond_wait(&t->wbk_cond, &t->wbk_lock);
	}
	pthread_mutex_unlock(&t->wbk_lock);
	return waited;
}

/* A waiting upload failed: fsync of a directory reports it, as the next
 * close of the file does (n->upload_error). */
static void wbk_note_error(struct dfs *fs, struct open_node *n, int rc, int *first_error)
{
	pthread_mutex_lock(&fs->files->lock);
	if (!n->sb->writeback_error)
		n->sb->writeback_error = rc;
	pthread_mutex_unlock(&fs->files->lock);
	if (!*first_error)
		*first_error = rc;
}

/* Whether n is an empty file created here, queued at its close only to wait
 * as a delete does (upload_later without -o writeback), whose upload the
 * sandbox refused for good: not a failure that may pass (the sandbox
 * stopped, no answer, a 5xx). */
static bool refused_empty_new(const struct dfs *fs, const struct open_node *n, int rc,
			      const struct sp_error *err)
{
	return fs->opt.writeback <= 0 && n->is_new && n->handles == 0 && n->stage && stage_size(n->stage) == 0 &&
	       !sp_error_transient(err) && rc != -EHOSTDOWN && rc != -EIO && rc != -ETIMEDOUT &&
	       rc != -ENOMEM && rc != -ENOSPC && err->http_status != 401 && err->http_status != 403;
}

/* After n's upload; n->lock held. True when n must stay queued (its upload
 * failed). own: the failure is n's own (an item of a request that went
 * through), not the whole request's (a 401 of the token fails them all). */
static bool wbk_done(struct dfs *fs, struct open_node *n, int rc, bool own, struct sp_error *err,
		     int *first_error)
{
	if (rc == 0) {
		/* The upload set the sandbox's time of the upload, seconds after
		 * the write whose time this mount has shown since the close: the
		 * file gets that one (a deferred touch), so that its mtime does
		 * not jump when the upload lands (vim would then refuse :w, "file
		 * changed since reading it", and make would rebuild). */
		n->mtime_pending = true;
		upload_succeeded(fs, n);
		return false;
	}
	upload_failed(fs, n, rc, err);
	if (own && refused_empty_new(fs, n, rc, err)) {
		/* It cannot be made there (a directory it may not write, that
		 * the mount thought it could): nothing of it to keep, and kept
		 * queued it failed every exec and directory fsync that came
		 * after (files_writeback_flush) until someone found it and
		 * removed it. It goes, as a create that failed; NAME/error says
		 * why (upload_failed). */
		log_error("%s: %s could not be made in the sandbox (%s); it is gone", n->sb->name, n->path,
			  strerror(-rc));
		n->unlinked = true;
		n->dirty = false;
		n->maybe_remote = false;
		journal_drop(fs, n);
		cache_invalidate(fs->cache, n->sb->id, n->path);
		return false;
	}
	wbk_note_error(fs, n, rc, first_error);
	return true;
}

/* Whether a node taken from the queue still has data to upload (one busy
 * with another thread's write or close: maybe). */
static bool wbk_will_upload(struct open_node *o)
{
	bool will = true;

	if (pthread_mutex_trylock(&o->lock) == 0) {
		will = o->dirty && !o->unlinked && queued_content(o);
		pthread_mutex_unlock(&o->lock);
	}
	return will;
}

/*
 * Uploads v[0..n) (taken from the queue; all of one sandbox or not): the
 * nodes it can lock at once go many to a request, each the others alone.
 * Every node leaves in flight no more (wbk_end), its queue reference
 * dropped, or requeued after a failure. Returns the first failure's errno, else 0.
 */
static int wbk_upload(struct dfs *fs, struct open_node **v, size_t n)
{
	struct sp_upload_item items[UP_FILES];
	struct open_node *locked[UP_FILES];
	int first_error = 0;
	size_t i = 0;

	/* A change queued for these files (a delete, times) was made before
	 * their content: it goes first, as before any upload. Not for a file
	 * with nothing left to upload (unlinked meanwhile, as vim's probe
	 * files are): the queue goes out when it is due. */
	for (size_t k = 0; k < n; k++)
		if (wbk_will_upload(v[k]))
			files_settle_changes(fs, v[k]->sb, v[k]->path);
	while (i < n) {
		struct sandbox *sb = v[i]->sb;
		struct sp_error err = { 0 };
		uint64_t bytes = 0;
		size_t m = 0;
		int rc = 0;

		/* One request: consecutive nodes of one sandbox that are free
		 * now (another thread holding one is uploading or writing it). */
		for (; i < n && m < UP_FILES && v[i]->sb == sb; i++) {
			struct open_node *o = v[i];
			bool alone;

			if (pthread_mutex_trylock(&o->lock) != 0) {
				/* Busy (a write, a close, an fsync of it): the nodes
				 * held so far go first, in their request, and are let
				 * go; then o is waited for alone, holding no other
				 * node. Waiting while holding them would deadlock
				 * with another flusher waiting for one of them. */
				if (m > 0)
					break;
				pthread_mutex_lock(&o->lock);
				if (!queued_content(o)) {
					pthread_mutex_unlock(&o->lock);
					wbk_end(fs, o, false);
					continue;
				}
				if (o->dirty)
					o->mtime_pending = true;   /* as in wbk_done */
				rc = upload_node(fs, o);   /* nothing when no longer dirty */
				if (rc < 0)
					wbk_note_error(fs, o, rc, &first_error);
				pthread_mutex_unlock(&o->lock);
				wbk_end(fs, o, rc < 0);
				rc = 0;
				continue;
			}
			if (!o->dirty || o->unlinked || !queued_content(o)) {
				pthread_mutex_unlock(&o->lock);
				wbk_end(fs, o, false);
				continue;
			}
			/* A path that is not UTF-8 comes back in the reply as
			 * another's could (its bytes as U+FFFD): it goes alone,
			 * lest it be told landed when the other did. */
			alone = !str_is_utf8(o->path);
			if (m > 0 && (alone || bytes + stage_size(o->stage) > UP_BYTES)) {
				pthread_mutex_unlock(&o->lock);
				break;   /* the next request takes it */
			}
			journal_put(fs, o, JOURNAL_FLUSHED, false);
			items[m].path = o->path;
			items[m].fd = stage_fd(o->stage);
			items[m].len = stage_size(o->stage);
			items[m].rc = 0;
			bytes += items[m].len;
			locked[m++] = o;
			if (alone) {
				i++;
				break;
			}
		}
		if (m == 0)
			continue;
		if (m == 1 && !(sp_has(fs->sp, SP_CAP_UPLOAD_IN_PLACE) && items[0].len <= WBK_IN_PLACE_MAX)) {
			struct sp_box box;

			/* files_upload_fd: a plain upload, or through a
			 * temporary name and a copy where the provider's
			 * upload would not land under path (or would replace
			 * the file: Vercel's fs/write) */
			sandbox_box(sb, &box);
			items[0].rc = files_upload_fd(fs, sb, &box, items[0].path, items[0].fd, items[0].len, &err);
		} else {
			struct sp_box box;

			sandbox_box(sb, &box);
			rc = sp_fs_upload_many(fs->sp, &box, items, m, &err);
			log_debug("%s: %zu closed files in one upload%s%s", sb->name, m, rc < 0 ? ": " : "",
				  rc < 0 ? err.message : "");
		}
		for (size_t k = 0; k < m; k++) {
			struct open_node *o = locked[k];
			struct sp_error e = err;
			int r = rc < 0 ? rc : items[k].rc;
			bool again;

			/* (One file alone by upload_many too: its message is
			 * the item's, the request's err says nothing.) */
			if (rc == 0 && r < 0)
				sp_error_set(&e, r, 0, "write %s: %s", items[k].path, items[k].msg);
			again = wbk_done(fs, o, r, rc == 0 && r < 0, &e, &first_error);
			pthread_mutex_unlock(&o->lock);
			wbk_end(fs, o, again);
		}
	}
	free(v);
	return first_error;
}

/*
 * Uploads the closed files of sb under path that wait (all of sb's without
 * path), and waits for those another thread is uploading (the writeback
 * thread took them, or another flush): what calls it (an exec, fsync of a
 * directory, a listing) must see them in the sandbox, or an error. An
 * upload of another thread that failed is queued again: the next round
 * takes it and tries once more, so that its error is this caller's too.
 * Returns the first failure's errno, else 0.
 */
int files_writeback_flush(struct dfs *fs, struct sandbox *sb, const char *path)
{
	int first_error = 0;

	/* (Without -o writeback only empty new files wait: upload_later.) */
	/* Rounds while others' uploads end; a bound, should closes of the
	 * sandbox's files keep coming. */
	for (int round = 0; round < 8; round++) {
		struct open_node **v;
		size_t n;

		v = wbk_take(fs->files, sb, path, false, &n);
		if (n) {
			int rc = wbk_upload(fs, v, n);

			if (rc < 0 && !first_error)
				first_error = rc;
		} else {
			free(v);
		}
		if (!wbk_wait_busy(fs->files, sb, path))
			break;
	}
	return first_error;
}

void files_forget_sandbox(struct dfs *fs, struct sandbox *sb)
{
	/* Rounds, as files_writeback_flush: an upload in flight that fails
	 * meanwhile is queued again, and taken in the next one. */
	for (int round = 0; round < 8; round++) {
		struct open_node **v;
		size_t n;

		v = wbk_take(fs->files, sb, NULL, false, &n);
		for (size_t i = 0; i < n; i++) {
			struct open_node *o = v[i];

			pthread_mutex_lock(&o->lock);
			if (o->dirty && !o->unlinked) {
				log_info("%s: %s was waiting to be uploaded; dropped with the sandbox", sb->name,
					 o->path);
				o->unlinked = true;
				o->dirty = false;
				journal_drop(fs, o);
			}
			pthread_mutex_unlock(&o->lock);
			wbk_end(fs, o, false);
		}
		free(v);
		if (!wbk_wait_busy(fs->files, sb, NULL))
			break;
	}
	deferred_forget(&fs->files->deferred, sb);
}

static void *wbk_main(void *arg)
{
	struct dfs *fs = arg;
	struct open_table *t = fs->files;

	pthread_mutex_lock(&t->wbk_lock);
	while (!t->wbk_stop) {
		double now = mono_now(), next = 0;
		struct open_node **v;
		size_t n;

		for (struct open_node *e = t->wbk_head; e; e = e->wbk_next)
			if (!e->wbk_busy && (next == 0 || e->wbk_due < next))
				next = e->wbk_due;
		if (next == 0 || next > now) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			if (next == 0) {
				pthread_cond_wait(&t->wbk_cond, &t->wbk_lock);
				continue;
			}
			next -= now;
			until.tv_sec += (time_t)next;
			until.tv_nsec += (long)((next - (double)(time_t)next) * 1e9);
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&t->wbk_cond, &t->wbk_lock, &until);
			continue;
		}
		pthread_mutex_unlock(&t->wbk_lock);
		v = wbk_take(t, NULL, NULL, true, &n);
		if (n)
			wbk_upload(fs, v, n);
		else
			free(v);
		pthread_mutex_lock(&t->wbk_lock);
	}
	pthread_mutex_unlock(&t->wbk_lock);
	return NULL;
}

/* Unmount: the thread ends, and everything waiting is uploaded, many to a
 * request. What fails stays queued, dirty, for files_flush_all, which tries
 * once more and keeps what still fails; then writeback_release. */
void writeback_stop(struct dfs *fs)
{
	struct open_table *t = fs->files;
	struct open_node **v;
	size_t n;
	bool on;

	pthread_mutex_lock(&t->wbk_lock);
	t->wbk_stop = true;
	on = t->wbk_thread_on;
	pthread_cond_broadcast(&t->wbk_cond);
	pthread_mutex_unlock(&t->wbk_lock);
	if (on) {
		pthread_join(t->wbk_thread, NULL);
		/* Joined once only: open_table_free must not join it again (its
		 * id may be another thread's by then, the deferred runner's, and
		 * that join never returned: the unmount hung). */
		pthread_mutex_lock(&t->wbk_lock);
		t->wbk_thread_on = false;
		pthread_mutex_unlock(&t->wbk_lock);
	}
	/* What waits (-o writeback's files, or empty new files): batched while
	 * it can; a failure stays queued and dirty for files_flush_all, which
	 * keeps it; the queue's references go. */
	v = wbk_take(t, NULL, NULL, false, &n);
	if (n)
		wbk_upload(fs, v, n);
	else
		free(v);
}

/* The queue's references, after files_flush_all. */
void writeback_release(struct dfs *fs)
{
	struct open_node **v;
	size_t n;

	v = wbk_take(fs->files, NULL, NULL, false, &n);
	for (size_t i = 0; i < n; i++)
		wbk_end(fs, v[i], false);
	free(v);
}
