/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_writeback.c - -o writeback=SEC: the upload of a closed file waits up to
 * SEC seconds, so that the files a tar x or cp -r closes one after another
 * go many to a request (POST /files/bulk-upload of up to UP_FILES files),
 * instead of a round trip each. What waits is safe locally: the file's
 * crash-journal record says "flushed" at its close, so that the next mount
 * uploads it after a crash of this one (fs_write.c, recover.c). The node
 * stays in the open table meanwhile (the queue holds a reference), so an
 * open, read or stat through the mount sees the staged data. Anything that
 * could see the file in the sandbox uploads it first (files_settle: a
 * listing, a rename, every exec through ctl, fsync of the directory),
 * fsync(2) of the file uploads it at once, and unmount uploads everything.
 * The design of the file proxy is in fs_files_int.h.
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
 * sandbox can keep the data), or no thread.
 */
bool upload_later(struct dfs *fs, struct open_node *n)
{
	struct open_table *t = fs->files;
	bool ok = true;

	if (fs->opt.writeback <= 0 || !n->dirty || n->unlinked || is_hidden_name(n->path) ||
	    sp_upload_path_changed(fs->sp, n->path))
		return false;
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
		n->wbk_due = mono_now() + fs->opt.writeback;
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
 * references: an array (malloc'd) of *count. */
static struct open_node **wbk_take(struct open_table *t, struct sandbox *sb, const char *path, bool due_only,
				   size_t *count)
{
	struct open_node **v = NULL, **pp;
	size_t n = 0, cap = 0;
	double now = mono_now();

	pthread_mutex_lock(&t->wbk_lock);
	for (pp = &t->wbk_head; *pp;) {
		struct open_node *e = *pp;

		if (!wbk_matches(e, sb, path, due_only, now)) {
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
		v[n++] = e;
	}
	pthread_mutex_unlock(&t->wbk_lock);
	*count = n;
	return v;
}

/* Puts a node whose upload failed back in the queue (its reference too),
 * to be tried again later. */
static void wbk_requeue(struct open_table *t, struct open_node *n)
{
	pthread_mutex_lock(&t->wbk_lock);
	if (n->wbk_queued) {
		pthread_mutex_unlock(&t->wbk_lock);
		return;   /* queued again by a close meanwhile: that reference stays */
	}
	n->wbk_queued = true;
	n->wbk_due = mono_now() + WBK_RETRY_S;
	n->wbk_next = t->wbk_head;
	t->wbk_head = n;
	pthread_mutex_unlock(&t->wbk_lock);
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

/* After n's upload; n->lock held. True when n must stay queued (its upload
 * failed). */
static bool wbk_done(struct dfs *fs, struct open_node *n, int rc, struct dt_error *err, int *first_error)
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
	wbk_note_error(fs, n, rc, first_error);
	return true;
}

/*
 * Uploads v[0..n) (taken from the queue; all of one sandbox or not): the
 * nodes it can lock at once go many to a request, each the others alone.
 * Every node leaves with its queue reference dropped, or requeued after a
 * failure. Returns the first failure's errno, else 0.
 */
static int wbk_upload(struct dfs *fs, struct open_node **v, size_t n)
{
	struct sp_upload_item items[UP_FILES];
	struct open_node *locked[UP_FILES];
	int first_error = 0;
	size_t i = 0;

	/* A change queued for these files (a delete, times) was made before
	 * their content: it goes first, as before any upload. */
	for (size_t k = 0; k < n; k++)
		if (k == 0 || v[k]->sb != v[k - 1]->sb)
			files_settle_changes(fs, v[k]->sb, NULL);
	while (i < n) {
		struct sandbox *sb = v[i]->sb;
		struct dt_error err = { 0 };
		uint64_t bytes = 0;
		size_t m = 0;
		int rc = 0;

		/* One request: consecutive nodes of one sandbox that are free
		 * now (another thread holding one is uploading or writing it). */
		for (; i < n && m < UP_FILES && v[i]->sb == sb; i++) {
			struct open_node *o = v[i];

			if (pthread_mutex_trylock(&o->lock) != 0) {
				/* Alone, holding nothing else: no lock order to break. */
				pthread_mutex_lock(&o->lock);
				if (o->dirty)
					o->mtime_pending = true;   /* as in wbk_done */
				rc = upload_node(fs, o);   /* nothing when no longer dirty */
				if (rc < 0)
					wbk_note_error(fs, o, rc, &first_error);
				pthread_mutex_unlock(&o->lock);
				if (rc < 0)
					wbk_requeue(fs->files, o);
				else
					node_release(fs, o);
				rc = 0;
				continue;
			}
			if (!o->dirty || o->unlinked) {
				pthread_mutex_unlock(&o->lock);
				node_release(fs, o);
				continue;
			}
			if (m > 0 && bytes + stage_size(o->stage) > UP_BYTES) {
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
		}
		if (m == 0)
			continue;
		if (m == 1) {
			struct dt_box box;

			sandbox_box(sb, &box);
			items[0].rc = sp_fs_upload_fd(fs->sp, &box, items[0].path, items[0].fd, items[0].len, &err);
		} else {
			struct dt_box box;

			sandbox_box(sb, &box);
			rc = sp_fs_upload_many(fs->sp, &box, items, m, &err);
			log_debug("%s: %zu closed files in one upload%s%s", sb->name, m, rc < 0 ? ": " : "",
				  rc < 0 ? err.message : "");
		}
		for (size_t k = 0; k < m; k++) {
			struct open_node *o = locked[k];
			struct dt_error e = err;
			int r = rc < 0 ? rc : items[k].rc;
			bool again;

			if (rc == 0 && m > 1 && r < 0)
				dt_error_set(&e, r, 0, "write %s: %s", items[k].path, items[k].msg);
			again = wbk_done(fs, o, r, &e, &first_error);
			pthread_mutex_unlock(&o->lock);
			if (again)
				wbk_requeue(fs->files, o);
			else
				node_release(fs, o);
		}
	}
	free(v);
	return first_error;
}

int files_writeback_flush(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct open_node **v;
	size_t n;

	if (fs->opt.writeback <= 0)
		return 0;
	v = wbk_take(fs->files, sb, path, false, &n);
	if (!n) {
		free(v);
		return 0;
	}
	return wbk_upload(fs, v, n);
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
			if (next == 0 || e->wbk_due < next)
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
	bool on;

	pthread_mutex_lock(&t->wbk_lock);
	t->wbk_stop = true;
	on = t->wbk_thread_on;
	pthread_cond_broadcast(&t->wbk_cond);
	pthread_mutex_unlock(&t->wbk_lock);
	if (on) {
		pthread_join(t->wbk_thread, NULL);
		/* Joined: open_table_free must not join it again. The id may
		 * already name another thread (the deferred changes' runner,
		 * started by this flush's times), which it would wait on forever. */
		pthread_mutex_lock(&t->wbk_lock);
		t->wbk_thread_on = false;
		pthread_mutex_unlock(&t->wbk_lock);
	}
	if (fs->opt.writeback > 0) {
		struct open_node **v;
		size_t n;

		/* Batched while it can; a failure stays queued and dirty for
		 * files_flush_all, which keeps it; the queue's references go. */
		v = wbk_take(t, NULL, NULL, false, &n);
		if (n)
			wbk_upload(fs, v, n);
		else
			free(v);
	}
}

/* The queue's references, after files_flush_all. */
void writeback_release(struct dfs *fs)
{
	struct open_node **v;
	size_t n;

	v = wbk_take(fs->files, NULL, NULL, false, &n);
	for (size_t i = 0; i < n; i++)
		node_release(fs, v[i]);
	free(v);
}
