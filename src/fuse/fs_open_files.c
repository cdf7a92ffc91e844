/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_open_files.c - the table of open sandbox files: one node per path, shared by
 * every handle open on it, with its stage; the windows between a hide and
 * a rename; the per-sandbox listing mode; cached link targets; the claims of
 * crash recovery; flushing everything at unmount.
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

static void links_clear_locked(struct open_table *t, const struct sandbox *sb);
static void node_free(struct dfs *fs, struct open_node *n);

struct open_table *open_table_new(long request_timeout_s)
{
	struct open_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	if (deferred_init(&t->deferred, WB_BATCH, &files_deferred_ops, t, FIND_FMT) != 0) {
		free(t);
		return NULL;
	}
	/* A request that ended unsure runs in the sandbox for at most its
	 * time limit (rfs_set_limit): twice that, and a margin for its start. */
	t->deferred.unsure_s = 2.0 * (double)request_timeout_s + 10;
	t->prefetch = prefetch_new(PF_STORE_BYTES, PF_STORE_FILES);
	if (!t->prefetch) {
		deferred_fini(&t->deferred);
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->hide_cond, NULL);
	pthread_cond_init(&t->recover_cond, NULL);
	pthread_cond_init(&t->release_cond, NULL);
	pthread_mutex_init(&t->up_lock, NULL);
	pthread_cond_init(&t->up_cond, NULL);
	pthread_mutex_init(&t->wbk_lock, NULL);
	pthread_cond_init(&t->wbk_cond, NULL);
	return t;
}


void open_table_free(struct open_table *t)
{
	struct open_node *n, *next;
	struct sb_mode *m, *mnext;

	if (t->wbk_thread_on) {   /* without an unmount's files_flush_all */
		pthread_mutex_lock(&t->wbk_lock);
		t->wbk_stop = true;
		pthread_cond_broadcast(&t->wbk_cond);
		pthread_mutex_unlock(&t->wbk_lock);
		pthread_join(t->wbk_thread, NULL);
		t->wbk_thread_on = false;
	}
	deferred_fini(&t->deferred);
	pthread_mutex_destroy(&t->up_lock);
	pthread_cond_destroy(&t->up_cond);
	pthread_mutex_destroy(&t->wbk_lock);
	pthread_cond_destroy(&t->wbk_cond);

	for (n = t->head; n; n = next) {
		next = n->next;
		node_free(t->fs, n);
	}
	for (m = t->modes; m; m = mnext) {
		mnext = m->next;
		free(m);
	}
	links_clear_locked(t, NULL);
	for (size_t i = 0; i < CTIME_SLOTS; i++)
		free(t->ctimes[i].path);
	while (t->hides) {
		struct hide_window *h = t->hides;

		t->hides = h->next;
		free(h->path);
		free(h);
	}
	for (size_t r = 0; r < HIDDEN_RINGS; r++) {
		for (size_t i = 0; i < HIDDEN_NAMES; i++) {
			free(t->hidden_names[r][i].hidden);
			free(t->hidden_names[r][i].from);
		}
	}
	prefetch_free(t->prefetch);
	free(t->pf_dir);
	free(t->fail_dir);
	pthread_cond_destroy(&t->hide_cond);
	pthread_cond_destroy(&t->recover_cond);
	pthread_cond_destroy(&t->release_cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Caller holds t->lock. */
struct open_node *node_lookup_locked(struct open_table *t, struct sandbox *sb, const char *path)
{
	for (struct open_node *n = t->head; n; n = n->next)
		if (n->sb == sb && !n->unlinked && !strcmp(n->path, path))
			return n;
	return NULL;
}

static struct hide_window **hide_find_locked(struct open_table *t, const struct sandbox *sb, const char *path);

/* The node of path once no release of its handles waits on a thread (see
 * open_node.releasing). Looked up again after each wait: the release may
 * have freed it. Caller holds t->lock. */
static struct open_node *lookup_released_locked(struct open_table *t, struct sandbox *sb, const char *path)
{
	struct open_node *n;

	while ((n = node_lookup_locked(t, sb, path)) && n->releasing)
		pthread_cond_wait(&t->release_cond, &t->lock);
	return n;
}

/* Caller holds t->lock: whether a rename onto path is under way. */
static bool renaming_onto_locked(struct open_table *t, const struct sandbox *sb, const char *path)
{
	struct hide_window **hp = hide_find_locked(t, sb, path);

	return hp && (*hp)->renaming;
}

struct open_node *node_get(struct open_table *t, struct sandbox *sb, const char *path, bool after_renames)
{
	struct open_node *n;

	pthread_mutex_lock(&t->lock);
	/* A file crash recovery is uploading gets its node after that upload:
	 * what this open writes then lands after recovery's older copy. */
	while (t->recover_path && !strcmp(t->recover_id, sb->id) && !strcmp(t->recover_path, path))
		pthread_cond_wait(&t->recover_cond, &t->lock);
	/* A node made while a rename replaces path would be taken for the
	 * replaced file's without its content, which the rename already
	 * kept (keep_replaced_content) or lost; so an open libfuse does not
	 * hold back (files_open's hidden names) waits for the rename. The
	 * window ends in hide_remove_locked, which wakes hide_cond. */
	while (after_renames && renaming_onto_locked(t, sb, path))
		pthread_cond_wait(&t->hide_cond, &t->lock);
	n = lookup_released_locked(t, sb, path);
	if (n) {
		n->refs++;
		goto out;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		goto out;
	n->path = strdup(path);
	if (!n->path) {
		free(n);
		n = NULL;
		goto out;
	}
	n->sb = sb;
	n->refs = 1;
	n->size_told = -1;
	pthread_mutex_init(&n->lock, NULL);
	n->next = t->head;
	t->head = n;
out:
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* The kernel was given st for n's file (caller holds n->lock): a size or
 * mtime other than the last ones given means the file changed, and the
 * handles' copies of it go (files_read). */
void node_note_told(struct open_node *n, const struct stat *st)
{
	if (n->size_told >= 0 && (n->size_told != st->st_size || n->mtime_told.tv_sec != st->st_mtim.tv_sec ||
				  n->mtime_told.tv_nsec != st->st_mtim.tv_nsec))
		n->told_gen++;
	n->size_told = st->st_size;
	n->mtime_told = st->st_mtim;
}

/* Takes a reference on the open node of a path, if there is one. */
struct open_node *node_find(struct open_table *t, struct sandbox *sb, const char *path)
{
	struct open_node *n;

	pthread_mutex_lock(&t->lock);
	n = lookup_released_locked(t, sb, path);
	if (n)
		n->refs++;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* A release of one of n's handles went to a thread (files_release_quick);
 * node_release_ran says it is done. The caller holds a reference. */
void node_release_queued(struct open_table *t, struct open_node *n)
{
	pthread_mutex_lock(&t->lock);
	n->releasing++;
	pthread_mutex_unlock(&t->lock);
}

void node_release_ran(struct open_table *t, struct open_node *n)
{
	pthread_mutex_lock(&t->lock);
	if (--n->releasing == 0)
		pthread_cond_broadcast(&t->release_cond);
	pthread_mutex_unlock(&t->lock);
}

/* Drops a reference; the last one unlinks the node from the table and
 * returns true: the caller then finishes and frees it. */
static bool node_put(struct open_table *t, struct open_node *n)
{
	bool last;

	pthread_mutex_lock(&t->lock);
	last = --n->refs == 0;
	if (last) {
		for (struct open_node **pp = &t->head; *pp; pp = &(*pp)->next) {
			if (*pp == n) {
				*pp = n->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
	return last;
}


/*
 * Lets the stage go: nothing of it is wanted any more (uploaded, kept in
 * unsaved/, or unlinked), so its journal record goes first; or, marked
 * journal_keep, it stays in staging/ with its record for the next mount's
 * recovery. fs is NULL at unmount's final free, when the journal is closed.
 */
static void node_drop_stage(struct dfs *fs, struct open_node *n)
{
	if (n->journal_keep) {
		close(n->journal_fd);
		stage_close_keep(n->stage);
		n->stage = NULL;
		n->journal_name[0] = '\0';
		n->journal_keep = false;
	} else if (fs) {
		journal_drop(fs, n);
	} else if (n->journal_name[0]) {
		close(n->journal_fd);   /* the next mount's recovery drops it: no stage */
		n->journal_name[0] = '\0';
	}
	if (n->stage)
		stage_free(n->stage);
	n->stage = NULL;
}

static void node_free(struct dfs *fs, struct open_node *n)
{
	node_drop_stage(fs, n);
	free(n->path);
	free(n->hide_from);
	for (size_t i = 0; i < n->n_hidden_aliases; i++)
		free(n->hidden_aliases[i]);
	free(n->hidden_aliases);
	for (size_t i = 0; i < n->n_old_paths; i++)
		free(n->old_paths[i]);
	free(n->old_paths);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/* Gives a node a new path (caller holds the table's lock). The old string
 * is kept, not freed: another thread may be in a request that uses it. */
void node_set_path(struct open_node *n, char *path)
{
	char **v = realloc(n->old_paths, (n->n_old_paths + 1) * sizeof(*v));

	if (v) {
		n->old_paths = v;
		n->old_paths[n->n_old_paths++] = n->path;
	} else {
		free(n->path);   /* out of memory: the lesser evil */
	}
	n->path = path;
}

/* After a last-chance upload failed and its stage went to unsaved/ (or
 * stays in staging/ for the next mount's recovery): an
 * open that joined the node meanwhile starts from the sandbox's file, as a
 * later open would, and never writes into (or uploads) the saved copy.
 * Caller holds n->lock. */
void node_forget_content(struct dfs *fs, struct open_node *n)
{
	node_drop_stage(fs, n);
	n->populated = n->dirty = n->is_new = n->maybe_remote = false;
	n->chmod_pending = n->chmod_queued = n->chown_pending = n->mtime_pending = n->atime_pending = false;
	n->upload_error = 0;
	/* The cache holds what the failed uploads hinted (upload_failed): the
	 * saved copy's size, and for a new file, a file the sandbox does not
	 * have. The next lookup asks the sandbox. */
	cache_invalidate(fs->cache, n->sb->id, n->path);
}

void node_release(struct dfs *fs, struct open_node *n)
{
	if (node_put(fs->files, n))
		node_free(fs, n);
}

/*
 * libfuse keeps an open file that is unlinked (or renamed over) under a
 * name of its own, ".fuse_hidden...", which it gets by renaming the file,
 * and unlinks that name at the last close. Here that name is local: the
 * rename to it removes the file from the sandbox and gives the open node
 * the hidden name; the name is never created in the sandbox, so nothing is
 * left behind there, whatever happens to the mount.
 */
bool is_hidden_name(const char *path)
{
	const char *base = strrchr(path, '/');

	return !strncmp(base ? base + 1 : path, ".fuse_hidden", 12);
}

/* Takes a reference on the node hidden under path, if there is one. */
struct open_node *node_find_hidden(struct open_table *t, struct sandbox *sb, const char *path)
{
	struct open_node *found = NULL;

	pthread_mutex_lock(&t->lock);
	for (struct open_node *n = t->head; n; n = n->next) {
		bool alias = false;

		for (size_t i = 0; i < n->n_hidden_aliases && !alias; i++)
			alias = !strcmp(n->hidden_aliases[i], path);
		if (n->sb == sb && ((n->unlinked && !strcmp(n->path, path)) || alias)) {
			found = n;
			n->refs++;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* Whether n, found by a hidden name (node_find_hidden), is a file that a
 * failed rename gave its name back (an alias: files_rename_hide_end): 1
 * with that name, wherever it is now, in buf; 0 when n is hidden still;
 * -ENAMETOOLONG. Caller holds a reference, not n->lock. */
int node_given_back_name(struct open_table *t, struct open_node *n, char *buf, size_t size)
{
	int rc = 0;

	pthread_mutex_lock(&n->lock);
	pthread_mutex_lock(&t->lock);
	if (!n->unlinked)
		rc = str_copy(buf, size, n->path) ? 1 : -ENAMETOOLONG;
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_unlock(&n->lock);
	return rc;
}

/* ---- the moment between a hide and a rename (HIDE_WAIT) -------------------- */

/* Caller holds t->lock. */
static struct hide_window **hide_find_locked(struct open_table *t, const struct sandbox *sb, const char *path)
{
	for (struct hide_window **hp = &t->hides; *hp; hp = &(*hp)->next)
		if ((*hp)->sb == sb && !strcmp((*hp)->path, path))
			return hp;
	return NULL;
}

/* Caller holds t->lock. Wakes the lookups that wait on it. */
static void hide_remove_locked(struct open_table *t, struct hide_window **hp)
{
	struct hide_window *h = *hp;

	*hp = h->next;
	free(h->path);
	free(h);
	pthread_cond_broadcast(&t->hide_cond);
}

/* Caller holds t->lock: drops the windows of hides that were unlinks. */
static void hide_prune_locked(struct open_table *t)
{
	double now = now_mono();

	for (struct hide_window **hp = &t->hides; *hp;) {
		if (!(*hp)->renaming && (*hp)->until <= now)
			hide_remove_locked(t, hp);
		else
			hp = &(*hp)->next;
	}
}

/* Remembers that from was hidden under the name hidden (HIDDEN_NAMES);
 * pinned: by the rename pin (rename_pin.h), in a ring of its own. */
void hidden_name_note(struct open_table *t, const struct sandbox *sb, const char *hidden, const char *from,
		      bool pinned)
{
	size_t r = pinned ? 1 : 0;
	char *h = strdup(hidden), *f = strdup(from);
	size_t i;

	if (!h || !f) {
		free(h);
		free(f);
		return;
	}
	pthread_mutex_lock(&t->lock);
	i = t->hidden_next[r]++ % HIDDEN_NAMES;
	free(t->hidden_names[r][i].hidden);
	free(t->hidden_names[r][i].from);
	t->hidden_names[r][i].sb = sb;
	t->hidden_names[r][i].hidden = h;
	t->hidden_names[r][i].from = f;
	t->hidden_names[r][i].follows = false;
	pthread_mutex_unlock(&t->lock);
}

/*
 * A rename onto from failed after libfuse hid the file there under hidden
 * (NULL: the newest hidden name of from, the pin's own hide). libfuse keeps
 * naming that inode so, and the kernel's entry of from may point at it for
 * a moment more: a rename of from through that entry moves the kernel's
 * name but not libfuse's. So the hidden name follows the file's renames
 * from now on (hidden_names_rekey_locked), not the name from.
 */
void hidden_name_kept(struct open_table *t, const struct sandbox *sb, const char *hidden, const char *from)
{
	pthread_mutex_lock(&t->lock);
	for (size_t r = 0; r < HIDDEN_RINGS; r++) {
		for (size_t k = 1; k <= HIDDEN_NAMES; k++) {
			size_t i = (t->hidden_next[r] - k) % HIDDEN_NAMES;
			struct hidden_name *e = &t->hidden_names[r][i];

			if (e->sb == sb && e->hidden && !strcmp(e->from, from) &&
			    (hidden ? !strcmp(e->hidden, hidden) : r == 1)) {
				e->follows = true;
				r = HIDDEN_RINGS;
				break;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
}

/* from was renamed to to (a file or a directory). Caller holds t->lock. */
void hidden_names_rekey_locked(struct open_table *t, const struct sandbox *sb, const char *from, const char *to)
{
	size_t flen = strlen(from);

	for (size_t k = 0; k < HIDDEN_RINGS * HIDDEN_NAMES; k++) {
		struct hidden_name *e = &t->hidden_names[k / HIDDEN_NAMES][k % HIDDEN_NAMES];
		struct strbuf np = STRBUF_INIT;

		if (!e->follows || e->sb != sb || !path_is_within(e->from, from))
			continue;
		sb_adds(&np, to);
		sb_adds(&np, e->from + flen);
		if (!np.oom) {
			free(e->from);
			e->from = sb_detach(&np);
		}
		sb_free(&np);
	}
}

/* The name a hidden name was hidden from, into buf; false if not known. */
bool hidden_name_origin(struct open_table *t, const struct sandbox *sb, const char *hidden, char *buf,
			       size_t size)
{
	bool found = false;

	pthread_mutex_lock(&t->lock);
	for (size_t k = 0; k < HIDDEN_RINGS * HIDDEN_NAMES && !found; k++) {
		size_t r = k / HIDDEN_NAMES, i = k % HIDDEN_NAMES;

		if (t->hidden_names[r][i].sb == sb && t->hidden_names[r][i].hidden &&
		    !strcmp(t->hidden_names[r][i].hidden, hidden))
			found = str_copy(buf, size, t->hidden_names[r][i].from);
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* path was just hidden by thread tid's unlink or rename: a rename onto it may follow. */
void hide_window_open(struct open_table *t, const struct sandbox *sb, const char *path, pid_t tid)
{
	struct hide_window *h = calloc(1, sizeof(*h));

	if (!h || !(h->path = strdup(path))) {
		free(h);
		return;   /* without memory the lookup is just not held back */
	}
	h->sb = sb;
	h->tid = tid;
	h->until = now_mono() + HIDE_WAIT;
	pthread_mutex_lock(&t->lock);
	hide_prune_locked(t);
	h->next = t->hides;
	t->hides = h;
	pthread_mutex_unlock(&t->lock);
}

/*
 * A rename onto path starts (returns whether lookups will wait) or ends.
 * Lookups of path wait for every rename onto it, not only one that follows
 * a hide: a lookup answered during the rename gives the kernel the node of
 * the file being replaced, which libfuse drops at the rename's end, and the
 * open that follows fails with ESTALE.
 */
bool hide_window_renaming(struct open_table *t, const struct sandbox *sb, const char *path, bool start)
{
	struct hide_window **hp, *h = NULL;
	bool held = true;

	if (start && !(h = calloc(1, sizeof(*h))))
		return false;
	pthread_mutex_lock(&t->lock);
	hp = hide_find_locked(t, sb, path);
	if (hp && start) {
		(*hp)->renaming = true;
	} else if (hp) {
		hide_remove_locked(t, hp);
	} else if (start && (h->path = strdup(path))) {
		h->sb = sb;
		h->renaming = true;
		h->next = t->hides;
		t->hides = h;
		h = NULL;
	} else {
		held = false;
	}
	pthread_mutex_unlock(&t->lock);
	free(h);
	return held;
}

/*
 * A lookup of path waits while path is between its hide and its rename.
 * Returns whether it waited for a rename onto path: hide_window_renaming.
 * A lookup by the thread whose call hid path ends the window at once: a
 * thread makes one system call at a time, so that call (an unlink, or a
 * rename whose own rename onto path would have ended the window) is over,
 * and no rename onto path follows from it. vim, which removes its probe
 * file before the kernel's release of it comes, looked its swap file up
 * next and waited HIDE_WAIT at many saves.
 */
bool hide_window_wait(struct open_table *t, const struct sandbox *sb, const char *path, pid_t tid)
{
	struct hide_window **hp;
	bool waited_rename = false;

	pthread_mutex_lock(&t->lock);
	while ((hp = hide_find_locked(t, sb, path))) {
		struct timespec until;
		double when = (*hp)->until, now = now_mono();

		if ((*hp)->renaming) {
			waited_rename = true;
			pthread_cond_wait(&t->hide_cond, &t->lock);
			continue;
		}
		if (when <= now || (tid > 0 && (*hp)->tid == tid)) {
			hide_remove_locked(t, hp);
			break;
		}
		t->hide_timed_waits++;
		/* hide_cond uses CLOCK_REALTIME: wait the time that is left. */
		clock_gettime(CLOCK_REALTIME, &until);
		when = (double)until.tv_sec + (double)until.tv_nsec / 1e9 + (when - now);
		until.tv_sec = (time_t)when;
		until.tv_nsec = (long)((when - (double)until.tv_sec) * 1e9);
		pthread_cond_timedwait(&t->hide_cond, &t->lock, &until);
	}
	pthread_mutex_unlock(&t->lock);
	return waited_rename;
}

/* ---- per-sandbox listing mode ---------------------------------------------- */

enum list_mode list_mode_get(struct dfs *fs, const struct sandbox *sb)
{
	enum list_mode mode = LIST_UNKNOWN;

	pthread_mutex_lock(&fs->files->lock);
	for (struct sb_mode *m = fs->files->modes; m; m = m->next)
		if (m->sb == sb)
			mode = m->mode;
	pthread_mutex_unlock(&fs->files->lock);
	return mode;
}

void list_mode_set(struct dfs *fs, const struct sandbox *sb, enum list_mode mode)
{
	struct sb_mode *m;

	pthread_mutex_lock(&fs->files->lock);
	for (m = fs->files->modes; m; m = m->next)
		if (m->sb == sb)
			break;
	if (!m) {
		m = calloc(1, sizeof(*m));
		if (m) {
			m->sb = sb;
			m->next = fs->files->modes;
			fs->files->modes = m;
		}
	}
	if (m && m->mode != mode) {
		m->mode = mode;
		if (mode == LIST_API)
			log_warn("%s: find -printf does not work in the sandbox: listing with the file API "
				 "(symbolic links are shown as their targets, dangling ones not at all)", sb->name);
	}
	pthread_mutex_unlock(&fs->files->lock);
}

/* ---- link targets ------------------------------------------------------------ */

static uint64_t path_hash(const struct sandbox *sb, const char *path)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(uintptr_t)sb;

	for (const char *p = path; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static size_t link_bucket(const struct sandbox *sb, const char *path)
{
	return (size_t)(path_hash(sb, path) % LINK_BUCKETS);
}

static void link_ent_free(struct link_ent *e)
{
	free(e->path);
	free(e->target);
	free(e);
}

/* All of sb's entries (all entries when sb is NULL). Caller holds t->lock. */
static void links_clear_locked(struct open_table *t, const struct sandbox *sb)
{
	for (size_t i = 0; i < LINK_BUCKETS; i++) {
		struct link_ent **pp = &t->links[i];

		while (*pp) {
			struct link_ent *e = *pp;

			if (!sb || e->sb == sb) {
				*pp = e->next;
				link_ent_free(e);
				t->nlinks--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* Drops the target of path, and with subtree those of everything below it. */
void link_drop(struct dfs *fs, const struct sandbox *sb, const char *path, bool subtree)
{
	struct open_table *t = fs->files;

	pthread_mutex_lock(&t->lock);
	if (!subtree) {
		struct link_ent **pp = &t->links[link_bucket(sb, path)];

		for (; *pp; pp = &(*pp)->next) {
			if ((*pp)->sb == sb && !strcmp((*pp)->path, path)) {
				struct link_ent *e = *pp;

				*pp = e->next;
				link_ent_free(e);
				t->nlinks--;
				break;
			}
		}
	} else {
		for (size_t i = 0; i < LINK_BUCKETS; i++) {
			struct link_ent **pp = &t->links[i];

			while (*pp) {
				struct link_ent *e = *pp;

				if (e->sb == sb && path_is_within(e->path, path)) {
					*pp = e->next;
					link_ent_free(e);
					t->nlinks--;
				} else {
					pp = &e->next;
				}
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void link_put(struct dfs *fs, const struct sandbox *sb, const char *path, const char *target)
{
	struct open_table *t = fs->files;
	struct link_ent *e;
	size_t b = link_bucket(sb, path);

	pthread_mutex_lock(&t->lock);
	for (e = t->links[b]; e; e = e->next)
		if (e->sb == sb && !strcmp(e->path, path))
			break;
	if (!e) {
		if (t->nlinks >= LINK_MAX)
			links_clear_locked(t, NULL);   /* crude, and rare: they come back with listings */
		e = calloc(1, sizeof(*e));
		if (!e || !(e->path = strdup(path))) {
			free(e);
			goto out;
		}
		e->sb = sb;
		e->next = t->links[b];
		t->links[b] = e;
		t->nlinks++;
	}
	free(e->target);
	e->target = strdup(target);
	if (!e->target)
		e->expires = 0;
	else
		e->expires = now_mono() + fs->opt.attr_timeout;
out:
	pthread_mutex_unlock(&t->lock);
}

/* ---- ctimes shown (fs_files_int.h, CTIME_SLOTS) --------------------------------- */

static bool ts_eq(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* A change the mount showed with ctime *shown left the sandbox's ctime at
 * *sandbox: stat shows *shown while the sandbox's stays that. */
void ctime_keep(struct dfs *fs, const struct sandbox *sb, const char *path, const struct timespec *sandbox,
		const struct timespec *shown)
{
	struct open_table *t = fs->files;
	struct ctime_ent *e = &t->ctimes[path_hash(sb, path) % CTIME_SLOTS];

	pthread_mutex_lock(&t->lock);
	if (!e->path || e->sb != sb || strcmp(e->path, path)) {
		char *copy = strdup(path);

		if (!copy)
			goto out;   /* the sandbox's ctime shows: never wrong, only later */
		free(e->path);
		e->path = copy;
		e->sb = sb;
	}
	e->sandbox = *sandbox;
	e->shown = *shown;
out:
	pthread_mutex_unlock(&t->lock);
}

/* st, the sandbox's attributes of path: its ctime is the one the mount
 * showed, where a waiting change of the mount's gave it (ctime_keep). */
void ctime_shown(struct dfs *fs, const struct sandbox *sb, const char *path, struct stat *st)
{
	struct open_table *t = fs->files;
	const struct ctime_ent *e = &t->ctimes[path_hash(sb, path) % CTIME_SLOTS];

	pthread_mutex_lock(&t->lock);
	if (e->path && e->sb == sb && !strcmp(e->path, path) && ts_eq(&e->sandbox, &st->st_ctim))
		st->st_ctim = e->shown;
	pthread_mutex_unlock(&t->lock);
}

/* Copies path's cached target into buf (truncated, as readlink does). */
bool link_get(struct dfs *fs, const struct sandbox *sb, const char *path, char *buf, size_t size)
{
	struct open_table *t = fs->files;
	bool found = false;

	pthread_mutex_lock(&t->lock);
	for (struct link_ent *e = t->links[link_bucket(sb, path)]; e; e = e->next) {
		if (e->sb == sb && !strcmp(e->path, path)) {
			if (e->target && now_mono() < e->expires) {
				str_copy(buf, size, e->target);
				found = true;
			}
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}


bool files_recovery_claim(struct dfs *fs, const char *sandbox_id, const char *path)
{
	struct open_table *t = fs->files;
	bool open = false;

	pthread_mutex_lock(&t->lock);
	/* The changes under way end first (new ones wait meanwhile: a steady
	 * stream of them must not keep the claim out), so that what the look
	 * sees is not changed by one of them after it. */
	t->claim_waiting = true;
	while (t->changes_in_flight > 0)
		pthread_cond_wait(&t->recover_cond, &t->lock);
	t->claim_waiting = false;
	for (struct open_node *n = t->head; n && !open; n = n->next)
		open = !n->unlinked && !strcmp(n->sb->id, sandbox_id) && !strcmp(n->path, path);
	if (!open) {
		t->recover_id = sandbox_id;
		t->recover_path = path;
	}
	pthread_cond_broadcast(&t->recover_cond);
	pthread_mutex_unlock(&t->lock);
	return !open;
}

/* The mount whose change this thread has under way (files_change_begin),
 * so that files_change_end needs no argument and a change that begins
 * inside another (an operation that calls another) counts once. */
static __thread struct dfs *change_of_thread;

void files_change_begin(struct dfs *fs, const struct sandbox *sb)
{
	struct open_table *t = fs->files;

	if (change_of_thread)
		return;
	pthread_mutex_lock(&t->lock);
	while (t->claim_waiting || (t->recover_id && !strcmp(t->recover_id, sb->id)))
		pthread_cond_wait(&t->recover_cond, &t->lock);
	t->changes_in_flight++;
	pthread_mutex_unlock(&t->lock);
	change_of_thread = fs;
}

void files_change_end(void)
{
	struct dfs *fs = change_of_thread;
	struct open_table *t;

	if (!fs)
		return;
	change_of_thread = NULL;
	t = fs->files;
	pthread_mutex_lock(&t->lock);
	if (--t->changes_in_flight == 0)
		pthread_cond_broadcast(&t->recover_cond);
	pthread_mutex_unlock(&t->lock);
}

void files_recovery_done(struct dfs *fs)
{
	struct open_table *t = fs->files;

	pthread_mutex_lock(&t->lock);
	t->recover_id = t->recover_path = NULL;
	pthread_cond_broadcast(&t->recover_cond);
	pthread_mutex_unlock(&t->lock);
}

void files_flush_all(struct dfs *fs)
{
	writeback_stop(fs);
	wb_run_all(fs, NULL);
	for (;;) {
		struct open_node *found = next_dirty(fs, NULL, NULL);

		if (!found)
			break;
		pthread_mutex_lock(&found->lock);
		if (found->dirty && !found->unlinked && upload_node(fs, found) < 0) {
			char label[4600], where[4096];

			snprintf(label, sizeof(label), "%s:%s", found->sb->name, found->path);
			if (stage_preserve(found->stage, label, where, sizeof(where)) == 0) {
				journal_drop(fs, found);
				log_error("%s: %s could not be uploaded at unmount; saved in %s", found->sb->name,
					  found->path, where);
			} else {
				journal_keep_for_recovery(found, found->path);
			}
			found->dirty = false;   /* preserved: not tried again */
		}
		pthread_mutex_unlock(&found->lock);
		node_release(fs, found);
	}
	/* What the uploads queued (modes, times). */
	wb_run_all(fs, NULL);
	writeback_release(fs);
}

/*
 * A command ran (or ended) in the sandbox: it may have changed any file, so
 * everything cached of that sandbox goes, and nothing of the others. What
 * this mount holds itself stays: staged writes, and the content of files
 * open here.
 */
void files_invalidate_sandbox(struct dfs *fs, const char *sandbox_id)
{
	cache_invalidate_sandbox(fs->cache, sandbox_id);
	/* Unusable already (the generation moved): the memory goes now. */
	prefetch_drop_sandbox(fs->files->prefetch, sandbox_id);
	pthread_mutex_lock(&fs->files->lock);
	for (size_t i = 0; i < LINK_BUCKETS; i++) {
		struct link_ent **pp = &fs->files->links[i];

		while (*pp) {
			struct link_ent *e = *pp;

			if (!strcmp(e->sb->id, sandbox_id)) {
				*pp = e->next;
				link_ent_free(e);
				fs->files->nlinks--;
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&fs->files->lock);
}
