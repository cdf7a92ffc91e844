/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_files.c - the sandbox's own files under SANDBOX/fs/, proxied to the
 * toolbox file API.
 *
 * Metadata. The toolbox's stat and listing follow symbolic links and hide
 * dangling ones, so they cannot show a link as a link. A directory is
 * therefore listed with ONE command in the sandbox, find -printf, which
 * gives lstat's view of every entry (type, full mode, size, mtime in ns,
 * owner, link count, link target); the listing fills the attribute cache,
 * so that ls -l costs one request. A lookup that misses the cache lists the
 * parent (one request that answers for every sibling, and for every name
 * that does not exist); a path whose parent's listing already names it as
 * a regular file or directory (after this mount wrote it, say) is asked
 * with GET /files/info, exact for anything but a link. Where find does not
 * work, the file API's listing is used, with its limits (SEMANTICS.md).
 * Changes made through the mount update the cached listing in place
 * (cache_update) instead of dropping it.
 *
 * Content. Reads are ranged downloads through a per-handle read-ahead
 * window that grows while the reader is sequential. Writes go to a stage
 * (stage.h), a local file shared by every handle open on the same path, so
 * that two descriptors see each other's writes and a read after a write
 * sees it before it is uploaded; the stage is uploaded whole on flush, fsync
 * and release. What must wait for the upload (the mode, owner and times of
 * a file being written: the upload would reset them) is applied right
 * after it, in one command.
 *
 * Where the file API has no call (times, owner, links, special mode bits,
 * rename over an existing file, truncate, statfs), one command runs in the
 * sandbox, every path quoted, and prints the path's new attributes with the
 * same find format, so that the change costs one request and the next stat
 * none.
 */
#include "fs_int.h"

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

#define RA_MIN (128 * 1024)
#define RA_MAX (8 * 1024 * 1024)

/* One record per entry, '/' between fields (no name holds a '/'); the link
 * target is last, and its length is the link's size. See files_parse_find. */
#define FIND_FMT "%y/%m/%s/%T@/%U/%G/%n/%A@/%C@/%f/%l\\n"

/* How a sandbox's directories are listed. */
enum list_mode { LIST_UNKNOWN = 0, LIST_FIND, LIST_API };

/* One path of one sandbox with open handles. */
struct open_node {
	struct open_node *next;
	struct sandbox *sb;
	char *path;
	int refs;
	int handles;              /* open file handles (refs also counts short-lived lookups) */
	pthread_mutex_t lock;
	struct stage *stage;      /* NULL until the file is written, truncated or created */
	bool populated;           /* the stage holds the whole current content */
	bool dirty;               /* the stage differs from the sandbox's file */
	bool unlinked;            /* removed while open: never uploaded again */
	bool is_new;              /* created here and not uploaded yet */
	struct stat st;           /* the file's attributes at open (made up for a new file);
				     st_mode follows chmod through the mount */
	bool chmod_pending;       /* a new file's mode, applied after its first upload */
	bool chown_pending;       /* owner and group of a new file, likewise */
	uid_t uid;
	gid_t gid;
	bool mtime_pending;       /* utimens while dirty: applied after the next upload */
	struct timespec mtime;    /* last write, or the pending utimens value */
	bool atime_pending;
	struct timespec atime;
	int upload_error;         /* last failed upload's errno, reported by flush/fsync */
	char **old_paths;         /* paths before renames: kept until the node goes, since */
	size_t n_old_paths;       /* a request in flight may still be using one */
	/* The crash journal (journal.h): the stage's record, while it holds
	 * data not in the sandbox. */
	struct journal_base base; /* the sandbox's file when read, for recovery's check */
	char journal_name[64];    /* the stage's name: "" while it has no record */
	int journal_fd;           /* the record, open while journal_name is set */
	bool journal_flushed;     /* the record says "flushed" (else "open") */
	bool journal_keep;        /* neither uploaded nor kept in unsaved/: the stage and
				     its record outlive the node, for the next mount */
};

struct sb_mode {
	struct sb_mode *next;
	const struct sandbox *sb;
	enum list_mode mode;
};

/* Link targets seen in listings, so that readlink costs nothing. */
struct link_ent {
	struct link_ent *next;
	const struct sandbox *sb;
	double expires;
	char *path;
	char *target;
};

#define LINK_BUCKETS 1024
#define LINK_MAX 65536

/*
 * Deferred changes (writeback.h). A delete, or the owner, mode and times of
 * a file, are applied to the cache at once and sent WB_DELAY later, with
 * whatever else was queued, in one command; anything that could see the
 * path in the sandbox runs them first (files_settle).
 *
 * libfuse hides an open file by renaming it to a .fuse_hidden name both when
 * it is unlinked and just before another file is renamed over it, and the
 * two look the same here. Deleting it in the sandbox at once would make a
 * rename over an open file two steps (the target would vanish in between),
 * so that delete is queued as "hidden": it runs no sooner than HIDDEN_DELAY
 * unless something must see the sandbox, and a rename onto the path cancels
 * it (mv -T then replaces the file atomically).
 */
#define WB_DELAY 0.5
#define HIDDEN_DELAY 0.2
#define WB_BATCH 128
/* A batch that met a failure that may pass is sent again after 200 ms,
 * doubling up to 5 s, for up to wait_timeout (WB_RETRY_BUDGET_S when that
 * has no limit): see wb_send. */
#define WB_RETRY_FIRST_MS 200L
#define WB_RETRY_MAX_MS 5000L
#define WB_RETRY_BUDGET_S 120.0

/*
 * The moment between the hide and the rename. libfuse hides the open
 * destination of a rename by renaming it away first, then renames the
 * source onto the name: in between, the name does not exist. A process that
 * opens the name in a loop while another saves it by write-then-rename
 * would see ENOENT then (and ESTALE, when its lookup made a node for the
 * name that the rename then dropped). So a lookup of a name just hidden
 * waits: for the rename onto it, if one starts within HIDE_WAIT (libfuse
 * sends it right after the hide), until that rename is done; otherwise the
 * hide was an unlink, and the lookup goes on (ENOENT) after HIDE_WAIT.
 */
#define HIDE_WAIT 0.2

/*
 * The kernel may still map the name to the hidden file's inode for a moment
 * after the rename (its lookup raced with it), and then opens that inode,
 * which libfuse names by the hidden name. While the hidden file is open,
 * such an open shares it; after its last close, the open is of the name the
 * file was hidden from, which holds one complete version again. The last
 * HIDDEN_NAMES hides are remembered for that.
 */
#define HIDDEN_NAMES 64

struct hide_window {
	struct hide_window *next;
	const struct sandbox *sb;
	char *path;
	double until;             /* the time limit while no rename has started */
	bool renaming;            /* a rename onto path has started */
};

struct open_table {
	pthread_mutex_t lock;
	struct open_node *head;
	struct sb_mode *modes;
	struct link_ent *links[LINK_BUCKETS];
	size_t nlinks;
	struct wb_queue *wb;      /* deferred changes */
	pthread_mutex_t wb_run;   /* one batch runs at a time; files_settle waits for it */
	pthread_t wb_thread;
	bool wb_thread_on;
	struct dfs *fs;
	struct hide_window *hides; /* under lock; hide_cond signals their end */
	pthread_cond_t hide_cond;
	const char *recover_id;   /* under lock: the file crash recovery is uploading */
	const char *recover_path; /* (files_recovery_claim); recover_cond signals its end */
	pthread_cond_t recover_cond;
	struct {                  /* under lock: a ring of the last hides */
		const struct sandbox *sb;
		char *hidden;
		char *from;
	} hidden_names[HIDDEN_NAMES];
	size_t hidden_next;
};

struct fhandle {
	int type;                 /* FS_HANDLE_FILE */
	struct open_node *node;
	int flags;
	pthread_mutex_t lock;     /* the read-ahead window */
	char *ra_buf;
	uint64_t ra_off;
	size_t ra_len;
	size_t ra_cap;
	uint64_t next_off;        /* where a sequential reader reads next */
	size_t window;
	struct rstream *rs;       /* a sequential reader's streaming download, or NULL */
};

static void links_clear_locked(struct open_table *t, const struct sandbox *sb);
static void node_free(struct dfs *fs, struct open_node *n);

struct open_table *open_table_new(void)
{
	struct open_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->wb = wb_new(WB_BATCH);
	if (!t->wb) {
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->wb_run, NULL);
	pthread_cond_init(&t->hide_cond, NULL);
	pthread_cond_init(&t->recover_cond, NULL);
	return t;
}

static void wb_run_all(struct dfs *fs, struct sandbox *sb);
static bool wb_queue_op(struct dfs *fs, struct wb_op *op, double delay);

void open_table_free(struct open_table *t)
{
	struct open_node *n, *next;
	struct sb_mode *m, *mnext;

	if (t->wb_thread_on) {
		wb_stop(t->wb);
		pthread_join(t->wb_thread, NULL);
	}
	if (t->fs)
		wb_run_all(t->fs, NULL);
	wb_free(t->wb);
	pthread_mutex_destroy(&t->wb_run);

	for (n = t->head; n; n = next) {
		next = n->next;
		node_free(t->fs, n);
	}
	for (m = t->modes; m; m = mnext) {
		mnext = m->next;
		free(m);
	}
	links_clear_locked(t, NULL);
	while (t->hides) {
		struct hide_window *h = t->hides;

		t->hides = h->next;
		free(h->path);
		free(h);
	}
	for (size_t i = 0; i < HIDDEN_NAMES; i++) {
		free(t->hidden_names[i].hidden);
		free(t->hidden_names[i].from);
	}
	pthread_cond_destroy(&t->hide_cond);
	pthread_cond_destroy(&t->recover_cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Caller holds t->lock. */
static struct open_node *node_lookup_locked(struct open_table *t, struct sandbox *sb, const char *path)
{
	for (struct open_node *n = t->head; n; n = n->next)
		if (n->sb == sb && !n->unlinked && !strcmp(n->path, path))
			return n;
	return NULL;
}

static struct open_node *node_get(struct open_table *t, struct sandbox *sb, const char *path)
{
	struct open_node *n;

	pthread_mutex_lock(&t->lock);
	/* A file crash recovery is uploading gets its node after that upload:
	 * what this open writes then lands after recovery's older copy. */
	while (t->recover_path && !strcmp(t->recover_id, sb->id) && !strcmp(t->recover_path, path))
		pthread_cond_wait(&t->recover_cond, &t->lock);
	n = node_lookup_locked(t, sb, path);
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
	pthread_mutex_init(&n->lock, NULL);
	n->next = t->head;
	t->head = n;
out:
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* Takes a reference on the open node of a path, if there is one. */
static struct open_node *node_find(struct open_table *t, struct sandbox *sb, const char *path)
{
	struct open_node *n;

	pthread_mutex_lock(&t->lock);
	n = node_lookup_locked(t, sb, path);
	if (n)
		n->refs++;
	pthread_mutex_unlock(&t->lock);
	return n;
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

static void journal_drop(struct dfs *fs, struct open_node *n);

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
	for (size_t i = 0; i < n->n_old_paths; i++)
		free(n->old_paths[i]);
	free(n->old_paths);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/* Gives a node a new path (caller holds the table's lock). The old string
 * is kept, not freed: another thread may be in a request that uses it. */
static void node_set_path(struct open_node *n, char *path)
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
static void node_forget_content(struct dfs *fs, struct open_node *n)
{
	node_drop_stage(fs, n);
	n->populated = n->dirty = n->is_new = false;
	n->chmod_pending = n->chown_pending = n->mtime_pending = n->atime_pending = false;
	n->upload_error = 0;
}

static void node_release(struct dfs *fs, struct open_node *n)
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
static bool is_hidden_name(const char *path)
{
	const char *base = strrchr(path, '/');

	return !strncmp(base ? base + 1 : path, ".fuse_hidden", 12);
}

/* Takes a reference on the node hidden under path, if there is one. */
static struct open_node *node_find_hidden(struct open_table *t, struct sandbox *sb, const char *path)
{
	struct open_node *found = NULL;

	pthread_mutex_lock(&t->lock);
	for (struct open_node *n = t->head; n; n = n->next) {
		if (n->sb == sb && n->unlinked && !strcmp(n->path, path)) {
			found = n;
			n->refs++;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return found;
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

/* Remembers that from was hidden under the name hidden (HIDDEN_NAMES). */
static void hidden_name_note(struct open_table *t, const struct sandbox *sb, const char *hidden, const char *from)
{
	char *h = strdup(hidden), *f = strdup(from);
	size_t i;

	if (!h || !f) {
		free(h);
		free(f);
		return;
	}
	pthread_mutex_lock(&t->lock);
	i = t->hidden_next++ % HIDDEN_NAMES;
	free(t->hidden_names[i].hidden);
	free(t->hidden_names[i].from);
	t->hidden_names[i].sb = sb;
	t->hidden_names[i].hidden = h;
	t->hidden_names[i].from = f;
	pthread_mutex_unlock(&t->lock);
}

/* The name a hidden name was hidden from, into buf; false if not known. */
static bool hidden_name_origin(struct open_table *t, const struct sandbox *sb, const char *hidden, char *buf,
			       size_t size)
{
	bool found = false;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < HIDDEN_NAMES && !found; i++) {
		if (t->hidden_names[i].sb == sb && t->hidden_names[i].hidden &&
		    !strcmp(t->hidden_names[i].hidden, hidden))
			found = str_copy(buf, size, t->hidden_names[i].from);
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* path was just hidden: a rename onto it may follow. */
static void hide_window_open(struct open_table *t, const struct sandbox *sb, const char *path)
{
	struct hide_window *h = calloc(1, sizeof(*h));

	if (!h || !(h->path = strdup(path))) {
		free(h);
		return;   /* without memory the lookup is just not held back */
	}
	h->sb = sb;
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
static bool hide_window_renaming(struct open_table *t, const struct sandbox *sb, const char *path, bool start)
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

/* A lookup of path waits while path is between its hide and its rename. */
static void hide_window_wait(struct open_table *t, const struct sandbox *sb, const char *path)
{
	struct hide_window **hp;

	pthread_mutex_lock(&t->lock);
	while ((hp = hide_find_locked(t, sb, path))) {
		struct timespec until;
		double when = (*hp)->until, now = now_mono();

		if ((*hp)->renaming) {
			pthread_cond_wait(&t->hide_cond, &t->lock);
			continue;
		}
		if (when <= now) {
			hide_remove_locked(t, hp);
			break;
		}
		/* hide_cond uses CLOCK_REALTIME: wait the time that is left. */
		clock_gettime(CLOCK_REALTIME, &until);
		when = (double)until.tv_sec + (double)until.tv_nsec / 1e9 + (when - now);
		until.tv_sec = (time_t)when;
		until.tv_nsec = (long)((when - (double)until.tv_sec) * 1e9);
		pthread_cond_timedwait(&t->hide_cond, &t->lock, &until);
	}
	pthread_mutex_unlock(&t->lock);
}

/* ---- per-sandbox listing mode ---------------------------------------------- */

static enum list_mode list_mode_get(struct dfs *fs, const struct sandbox *sb)
{
	enum list_mode mode = LIST_UNKNOWN;

	pthread_mutex_lock(&fs->files->lock);
	for (struct sb_mode *m = fs->files->modes; m; m = m->next)
		if (m->sb == sb)
			mode = m->mode;
	pthread_mutex_unlock(&fs->files->lock);
	return mode;
}

static void list_mode_set(struct dfs *fs, const struct sandbox *sb, enum list_mode mode)
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

static size_t link_bucket(const struct sandbox *sb, const char *path)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(uintptr_t)sb;

	for (const char *p = path; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ULL;
	}
	return (size_t)(h % LINK_BUCKETS);
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
static void link_drop(struct dfs *fs, const struct sandbox *sb, const char *path, bool subtree)
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

static void link_put(struct dfs *fs, const struct sandbox *sb, const char *path, const char *target)
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

/* Copies path's cached target into buf (truncated, as readlink does). */
static bool link_get(struct dfs *fs, const struct sandbox *sb, const char *path, char *buf, size_t size)
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

/* ---- the find format ------------------------------------------------------------- */

static int parse_u64(const char **p, const char *end, int base, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	if (s >= end || *s == '/')
		return -EINVAL;
	for (; s < end && *s != '/'; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else
			return -EINVAL;
		if (d >= (unsigned)base || v > (UINT64_MAX - d) / (uint64_t)base)
			return -EINVAL;
		v = v * (uint64_t)base + d;
	}
	if (s >= end)
		return -EINVAL;
	*p = s + 1;   /* past the '/' */
	*out = v;
	return 0;
}

/* "SECONDS[.FRACTION]", as find's %T@ prints it. */
static int parse_time(const char **p, const char *end, struct timespec *ts)
{
	const char *s = *p;
	bool neg = false;
	int64_t sec = 0;
	long nsec = 0;
	int digits = 0;

	if (s < end && *s == '-') {
		neg = true;
		s++;
	}
	if (s >= end || *s < '0' || *s > '9')
		return -EINVAL;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (sec > (INT64_MAX - 9) / 10)
			return -EINVAL;
		sec = sec * 10 + (*s - '0');
	}
	if (s < end && *s == '.') {
		for (s++; s < end && *s >= '0' && *s <= '9'; s++) {
			if (digits < 9) {
				nsec = nsec * 10 + (*s - '0');
				digits++;
			}
		}
	}
	if (s >= end || *s != '/')
		return -EINVAL;
	for (; digits < 9; digits++)
		nsec *= 10;
	if (neg) {
		sec = -sec;
		if (nsec) {
			sec--;
			nsec = 1000000000L - nsec;
		}
	}
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	*p = s + 1;
	return 0;
}

static mode_t type_of(char y)
{
	switch (y) {
	case 'f': return S_IFREG;
	case 'd': return S_IFDIR;
	case 'l': return S_IFLNK;
	case 'p': return S_IFIFO;
	case 's': return S_IFSOCK;
	case 'c': return S_IFCHR;
	case 'b': return S_IFBLK;
	default: return 0;   /* a door, or a type find could not tell: not shown */
	}
}

void files_find_free(struct find_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].link);
	}
	free(v);
}

/*
 * Parses records of FIND_FMT:
 *   TYPE/MODE/SIZE/MTIME/UID/GID/NLINK/ATIME/CTIME/NAME/TARGET\n
 * MODE is octal with the setuid, setgid and sticky bits; the times are
 * seconds with a fraction. NAME ends at the next '/', since no name holds one. A
 * link's TARGET may hold anything but NUL, newlines included: it is its
 * SIZE bytes (a link's size is its target's length) when a newline follows
 * them, else (a /proc link reports size 0) it runs to the next newline.
 * Returns 0 with the entries in file order, or -EINVAL.
 */
int files_parse_find(const char *buf, size_t len, struct find_entry **out, size_t *count)
{
	const char *p = buf, *end = buf + len;
	struct find_entry *v = NULL;
	size_t n = 0, cap = 0;
	int rc = -EINVAL;

	*out = NULL;
	*count = 0;
	while (p < end) {
		uint64_t mode, size, uid, gid, nlink;
		struct timespec mt, at, ct;
		const char *name, *nend, *target = NULL;
		size_t tlen = 0;
		mode_t type;
		char y = *p;

		if (p + 2 > end || p[1] != '/')
			goto fail;
		p += 2;
		if (parse_u64(&p, end, 8, &mode) || parse_u64(&p, end, 10, &size) || parse_time(&p, end, &mt) ||
		    parse_u64(&p, end, 10, &uid) || parse_u64(&p, end, 10, &gid) ||
		    parse_u64(&p, end, 10, &nlink) || parse_time(&p, end, &at) || parse_time(&p, end, &ct))
			goto fail;
		name = p;
		nend = memchr(p, '/', (size_t)(end - p));
		if (!nend || nend == name)
			goto fail;
		p = nend + 1;
		type = type_of(y);
		if (y == 'l') {
			target = p;
			if (size > 0 && size < (uint64_t)(end - p) && p[size] == '\n') {
				tlen = (size_t)size;
			} else {
				const char *nl = memchr(p, '\n', (size_t)(end - p));

				if (!nl)
					goto fail;
				tlen = (size_t)(nl - p);
			}
			p += tlen;
		}
		if (p >= end || *p != '\n')
			goto fail;
		p++;
		if (!type)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct find_entry *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				rc = -ENOMEM;
				goto fail;
			}
			v = nv;
			cap = ncap;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].name = strndup(name, (size_t)(nend - name));
		if (target)
			v[n].link = strndup(target, tlen);
		if (!v[n].name || (target && !v[n].link)) {
			n++;
			rc = -ENOMEM;
			goto fail;
		}
		v[n].st.st_mode = type | (mode_t)(mode & 07777);
		v[n].st.st_size = (off_t)(target ? tlen : size);
		v[n].st.st_nlink = (nlink_t)nlink;
		v[n].st.st_uid = (uid_t)uid;
		v[n].st.st_gid = (gid_t)gid;
		v[n].st.st_blocks = (blkcnt_t)((size + 511) / 512);
		v[n].st.st_blksize = 128 * 1024;
		v[n].st.st_mtim = mt;
		v[n].st.st_atim = at;
		v[n].st.st_ctim = ct;
		n++;
	}
	*out = v;
	*count = n;
	return 0;
fail:
	files_find_free(v, n);
	return rc;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* od -An -v -tx1 output ("  2f 61\n 62 ...") back to bytes. */
int files_unhex(const char *text, char **out, size_t *len)
{
	size_t n = 0, cap = strlen(text) / 2 + 1;
	char *b = malloc(cap);

	*out = NULL;
	*len = 0;
	if (!b)
		return -ENOMEM;
	for (const char *p = text; *p;) {
		int hi, lo;

		if (*p == ' ' || *p == '\n' || *p == '\t') {
			p++;
			continue;
		}
		hi = hexval(p[0]);
		lo = hi < 0 ? -1 : hexval(p[1]);
		if (lo < 0 || n >= cap) {
			free(b);
			return -EINVAL;
		}
		b[n++] = (char)(hi << 4 | lo);
		p += 2;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

/* Go's JSON encoder turns invalid UTF-8 into U+FFFD: such output cannot be trusted byte for byte. */
static bool has_replacement_char(const char *s)
{
	return strstr(s, "\xEF\xBF\xBD") != NULL;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct find_entry *)a)->name, ((const struct find_entry *)b)->name);
}

/* ---- helpers ------------------------------------------------------------------ */

static void stat_from_info(const struct dt_fileinfo *fi, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = fi->mode;
	if (!(st->st_mode & S_IFMT))
		st->st_mode |= fi->is_dir ? S_IFDIR : S_IFREG;
	/* The API gives no link count. For a directory, 1 means "unknown" to
	 * find and fts, which would otherwise count subdirectories on it. */
	st->st_nlink = 1;
	st->st_uid = fi->uid;
	st->st_gid = fi->gid;
	st->st_size = (off_t)fi->size;
	st->st_blocks = (blkcnt_t)((fi->size + 511) / 512);
	/* A large block size makes cp and friends use large buffers. */
	st->st_blksize = 128 * 1024;
	st->st_mtim = st->st_atim = st->st_ctim = fi->mtime;
}

/* A command's failure message (coreutils wording, LC_ALL=C) to an errno. */
static int errno_from_message(const char *msg)
{
	static const struct { const char *text; int err; } map[] = {
		{ "No such file or directory", ENOENT }, { "Permission denied", EACCES },
		{ "Operation not permitted", EPERM }, { "Directory not empty", ENOTEMPTY },
		{ "cannot overwrite non-directory", ENOTDIR }, { "cannot overwrite directory", EISDIR },
		{ "to a subdirectory of itself", EINVAL },
		{ "Is a directory", EISDIR }, { "Not a directory", ENOTDIR },
		{ "File exists", EEXIST }, { "Read-only file system", EROFS },
		{ "No space left on device", ENOSPC }, { "Disk quota exceeded", EDQUOT },
		{ "Invalid argument", EINVAL }, { "File too large", EFBIG },
		{ "File name too long", ENAMETOOLONG }, { "Too many levels of symbolic links", ELOOP },
		{ "Invalid cross-device link", EXDEV }, { "Text file busy", ETXTBSY },
		{ "Device or resource busy", EBUSY },
		{ "invalid user", EINVAL }, { "invalid group", EINVAL },
	};

	for (size_t i = 0; msg && i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}

/* After a toolbox error: a stopped sandbox makes the registry re-read it. */
static int toolbox_failed(struct dfs *fs, struct sandbox *sb, int rc, const struct dt_error *err,
			  const char *what, const char *path)
{
	if (rc == -EHOSTDOWN) {
		struct dt_error ignored = { 0 };

		sandbox_refresh(fs, sb, &ignored);
		sandbox_set_error(sb, "sandbox '%s' is not running (%s): start it with: echo start > %s/%s/ctl",
				  sb->name, err->message, fs->mountpoint, sb->name);
	} else if (rc != -ENOENT && rc != -EEXIST) {
		sandbox_set_error(sb, "%s %s: %s", what, path, err->message);
	}
	return rc;
}

/* Runs a shell script in the sandbox (cwd /, LC_ALL=C): its exit code and
 * merged output (malloc'd). Returns 0 when it ran, else a negative errno
 * with err filled; reports nothing. */
static int sandbox_sh_once(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out,
			   struct dt_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	struct dt_box box;
	int rc;

	*out = NULL;
	*code = -1;
	sb_adds(&cmd, FILES_SH_PREFIX);
	sb_adds(&cmd, script);
	if (cmd.oom) {
		sb_free(&cmd);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	sandbox_box(sb, &box);
	/* Bounded by the mount's request timeout (-o timeout), like every other
	 * request, and in the sandbox too: a command the mount stops waiting
	 * for must not go on changing files (SEMANTICS.md). */
	rc = dt_exec_within(fs->dt, &box, sb_str(&cmd), "/", fs->opt.timeout_s, code, out, err);
	sb_free(&cmd);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* sandbox_sh_once, with a failure reported (toolbox_failed). */
static int sandbox_sh(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out)
{
	struct dt_error err = { 0 };
	int rc = sandbox_sh_once(fs, sb, script, code, out, &err);

	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "command for", "a file operation");
	return 0;
}

/* Runs a short command for what the file API cannot do. out (may be NULL)
 * receives its output on success; a failure is the errno its message says. */
static int run_fs_command(struct dfs *fs, struct sandbox *sb, const char *script, char **out)
{
	char *output = NULL;
	int code = 0, rc;

	if (out)
		*out = NULL;
	rc = sandbox_sh(fs, sb, script, &code, &output);
	if (rc < 0)
		return rc;
	if (code != 0) {
		rc = errno_from_message(output);
		log_info("%s: '%s' failed (%d): %s", sb->name, script, code, output ? output : "");
		free(output);
		return rc;
	}
	if (out)
		*out = output;
	else
		free(output);
	return 0;
}

/* Appends to a command: print path's attributes in the find format, and
 * succeed even if that fails (the change it follows is what counts). */
void files_add_stat_print(struct strbuf *cmd, const char *path)
{
	sb_adds(cmd, " && { find ");
	sh_word(cmd, path);
	sb_adds(cmd, " -maxdepth 0 -printf '" FIND_FMT "' 2>/dev/null; true; }");
}

/* The attributes a command printed with files_add_stat_print, or false. */
static bool parse_printed_stat(const char *out, struct stat *st, char **link)
{
	struct find_entry *v = NULL;
	size_t n = 0;
	bool ok = false;

	if (link)
		*link = NULL;
	if (out && *out && files_parse_find(out, strlen(out), &v, &n) == 0 && n == 1) {
		*st = v[0].st;
		if (link && v[0].link && !has_replacement_char(v[0].link)) {
			*link = v[0].link;
			v[0].link = NULL;
		}
		ok = true;
	}
	files_find_free(v, n);
	return ok;
}

/* What a command that changed path (and printed its attributes) leaves in
 * the cache: the printed attributes, else nothing about path. */
static void note_command_result(struct dfs *fs, struct sandbox *sb, const char *path, const char *out,
				enum cache_change what)
{
	struct stat st;
	char *link = NULL;

	if (parse_printed_stat(out, &st, &link)) {
		cache_update(fs->cache, sb->id, path, what, &st, true);
		if (S_ISLNK(st.st_mode) && link)
			link_put(fs, sb, path, link);
		else
			link_drop(fs, sb, path, false);
		free(link);
	} else {
		cache_invalidate(fs->cache, sb->id, path);
		link_drop(fs, sb, path, false);
	}
}

/*
 * Runs cmd, a change to path (and frees it), followed by the print of
 * path's new attributes where find works, which go to the cache as what.
 * A failure leaves the cache alone: the caller knows what it means there.
 */
static int change_by_command(struct dfs *fs, struct sandbox *sb, struct strbuf *cmd, const char *path,
			     enum cache_change what)
{
	char *out = NULL;
	int rc;

	if (list_mode_get(fs, sb) != LIST_API)
		files_add_stat_print(cmd, path);
	if (cmd->oom) {
		sb_free(cmd);
		return -ENOMEM;
	}
	rc = run_fs_command(fs, sb, sb_str(cmd), &out);
	sb_free(cmd);
	if (rc == 0)
		note_command_result(fs, sb, path, out, what);
	else
		/* The command may have run (an answer lost in transit), or the
		 * sandbox knows better (EEXIST): what is cached of the path and
		 * its parent's listing is no longer to be trusted. */
		cache_invalidate_tree(fs->cache, sb->id, path);
	free(out);
	return rc;
}

static bool split_path(const char *path, char *parent, size_t cap, const char **base)
{
	return path_split(path, parent, cap, base) && **base;
}

/* ---- listings and attributes --------------------------------------------------- */

void files_list_script(struct strbuf *cmd, const char *dir, bool hex)
{
	/* DIR/. names the directory itself (%f prints "."), even "/" or a link to a directory. */
	sb_adds(cmd, "d=");
	sh_word(cmd, dir);
	sb_adds(cmd, "/.; find \"$d\" -mindepth 0 -maxdepth 1 -printf '" FIND_FMT "' 2>/dev/null");
	if (hex)
		sb_adds(cmd, " | od -An -v -tx1");
	else
		sb_adds(cmd, " || { r=$?; [ $r -eq 127 ] && exit 127; find \"$d\" -maxdepth 0 -printf '' 2>&1; "
			"exit 97; }");
}

/* Lists dir with find: 0, a negative errno, or -ENOSYS when find cannot do it. */
static int find_list(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry **out, size_t *n)
{
	struct strbuf cmd = STRBUF_INIT;
	char *output = NULL, *raw = NULL;
	const char *buf;
	size_t len;
	int code = 0, rc;

	*out = NULL;
	*n = 0;
	files_list_script(&cmd, dir, false);
	if (cmd.oom) {
		rc = -ENOMEM;
		goto out;
	}
	log_debug("%s: listing %s", sb->name, dir);
	rc = sandbox_sh(fs, sb, sb_str(&cmd), &code, &output);
	/* A daemon too old to run a shell (dt_exec) has the file API still. */
	if (rc < 0 && rc != -EOPNOTSUPP)
		goto out;
	if (rc == -EOPNOTSUPP || code == 127) {
		list_mode_set(fs, sb, LIST_API);
		rc = -ENOSYS;
		goto out;
	}
	buf = output;
	len = strlen(output);
	if (has_replacement_char(output)) {
		/* A name or target is not UTF-8: the same listing again, as hex,
		 * which survives the JSON transport byte for byte. */
		sb_reset(&cmd);
		files_list_script(&cmd, dir, true);
		free(output);
		output = NULL;
		rc = cmd.oom ? -ENOMEM : sandbox_sh(fs, sb, sb_str(&cmd), &code, &output);
		if (rc < 0)
			goto out;
		if (files_unhex(output, &raw, &len) < 0) {
			rc = -ENOSYS;
			goto out;
		}
		buf = raw;
	}
	rc = files_parse_find(buf, len, out, n);
	if (rc == 0 && *n >= 1 && !strcmp((*out)[0].name, ".") && S_ISDIR((*out)[0].st.st_mode)) {
		/* The directory itself first, then its entries (find exits 1 when
		 * an entry vanished while it ran: what it printed stands). */
		free((*out)[0].name);
		free((*out)[0].link);
		memmove(*out, *out + 1, (*n - 1) * sizeof(**out));
		(*n)--;
		qsort(*out, *n, sizeof(**out), entry_cmp);
		rc = 0;
		goto out;
	}
	files_find_free(*out, *n);
	*out = NULL;
	*n = 0;
	if (rc == -ENOMEM)
		goto out;
	rc = code != 0 ? errno_from_message(output) : -EIO;
	if (rc == -EIO) {
		/* Not an error about the directory: this find cannot -printf
		 * (busybox), or something odd. The file API then. */
		log_info("%s: listing %s with find failed (%d): %.200s", sb->name, dir, code, output);
		if (strstr(output, "printf") || strstr(output, "nrecognized") || strstr(output, "nknown"))
			list_mode_set(fs, sb, LIST_API);
		rc = -ENOSYS;
	}
out:
	free(output);
	free(raw);
	sb_free(&cmd);
	return rc;
}

/* Lists dir with the file API (links shown as their targets, dangling ones not at all). */
static int api_list(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry **out, size_t *n)
{
	struct dt_error err = { 0 };
	struct dt_fileinfo *list = NULL;
	struct dt_box box;
	size_t count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	sandbox_box(sb, &box);
	rc = dt_fs_list(fs->dt, &box, dir, &list, &count, &err);
	if (rc == -EINVAL)
		rc = -ENOTDIR;
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "list", dir);
	*out = calloc(count ? count : 1, sizeof(**out));
	if (!*out) {
		dt_fileinfo_free(list, count);
		return -ENOMEM;
	}
	for (size_t i = 0; i < count; i++) {
		(*out)[i].name = list[i].name;   /* taken over */
		list[i].name = NULL;
		stat_from_info(&list[i], &(*out)[i].st);
	}
	*n = count;
	dt_fileinfo_free(list, count);
	return 0;
}

/* Lists dir (one request) and caches the listing, its entries' attributes
 * and its links' targets. The entries are also returned (may be NULL). */
static int list_dir(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry **out, size_t *count)
{
	uint64_t gen;
	enum list_mode mode = list_mode_get(fs, sb);
	struct find_entry *v = NULL;
	struct cache_dirent *ents;
	size_t n = 0;
	int rc = -ENOSYS;

	/* The listing must not bring back what a queued delete removed, nor
	 * the times a queued change is about to set. */
	files_settle(fs, sb, dir);
	gen = cache_generation(fs->cache, sb->id);
	if (mode != LIST_API) {
		rc = find_list(fs, sb, dir, &v, &n);
		if (rc == 0 && mode == LIST_UNKNOWN)
			list_mode_set(fs, sb, LIST_FIND);
	}
	/* A command that failed as a whole (not an answer about the
	 * directory): the file API's listing is better than none. */
	if (rc == -ENOSYS || rc == -EIO)
		rc = api_list(fs, sb, dir, &v, &n);
	if (rc < 0)
		return rc;
	ents = calloc(n ? n : 1, sizeof(*ents));
	if (ents) {
		for (size_t i = 0; i < n; i++) {
			ents[i].name = v[i].name;
			ents[i].st = v[i].st;
		}
		/* One listing fills the attributes of every entry: ls -l costs one request. */
		cache_put_dir(fs->cache, sb->id, dir, ents, n, gen);
		free(ents);
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i].link && !has_replacement_char(v[i].link)) {
			struct strbuf p = STRBUF_INIT;

			sb_adds(&p, dir);
			if (strcmp(dir, "/"))
				sb_addc(&p, '/');
			sb_adds(&p, v[i].name);
			if (!p.oom)
				link_put(fs, sb, sb_str(&p), v[i].link);
			sb_free(&p);
		}
	}
	if (out) {
		*out = v;
		*count = n;
	} else {
		files_find_free(v, n);
	}
	return 0;
}

/* GET /files/info: exact for anything but a symbolic link (it follows them). */
static int info_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct dt_error err = { 0 };
	struct dt_fileinfo fi;
	struct dt_box box;
	uint64_t gen;
	int rc;

	files_settle(fs, sb, path);
	/* A queued change to path that just ran printed its attributes: exact,
	 * atime and ctime included, which /files/info does not have. */
	if (cache_get_attr(fs->cache, sb->id, path, st) == CACHE_HIT)
		return 0;
	gen = cache_generation(fs->cache, sb->id);
	sandbox_box(sb, &box);
	memset(&fi, 0, sizeof(fi));
	rc = dt_fs_info(fs->dt, &box, path, &fi, &err);
	if (rc == -ENOENT) {
		cache_put_negative(fs->cache, sb->id, path, gen);
		return rc;
	}
	if (rc == -EINVAL)
		rc = -ENOTDIR;   /* a parent that is a file: the stat's ENOTDIR as a bare 400 */
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "stat", path);
	stat_from_info(&fi, st);
	free(fi.name);
	cache_put_attr(fs->cache, sb->id, path, st, gen);
	return 0;
}

/* A directory's attributes from the find command: /files/info has no link
 * count, and a directory's (2 + subdirectories) changes with every mkdir,
 * rmdir and rename in it. */
static int dir_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	uint64_t gen;
	int rc;

	files_settle(fs, sb, path);
	gen = cache_generation(fs->cache, sb->id);
	sb_adds(&cmd, "true");
	files_add_stat_print(&cmd, path);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), &out);
	sb_free(&cmd);
	if (rc == 0 && parse_printed_stat(out, st, NULL) && S_ISDIR(st->st_mode)) {
		cache_put_attr(fs->cache, sb->id, path, st, gen);
	} else {
		rc = info_attr(fs, sb, path, st);   /* gone, or no find: the file API says */
	}
	free(out);
	return rc;
}

/* The attributes of path as lstat(2) sees them: the cache, else one request
 * (a listing of the parent, or /files/info where that is exact, or for a
 * directory, the find command). */
static int lookup_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct find_entry *v = NULL;
	char parent[4096];
	const char *base;
	bool listed = false;
	size_t n = 0;
	int rc;

	switch (cache_lookup(fs->cache, sb->id, path, st, &listed)) {
	case CACHE_HIT:
		return 0;
	case CACHE_NEGATIVE:
		return -ENOENT;
	case CACHE_MISS:
		break;
	}
	if (listed && S_ISDIR(st->st_mode) && list_mode_get(fs, sb) == LIST_FIND)
		return dir_attr(fs, sb, path, st);
	if ((listed && !S_ISLNK(st->st_mode)) || list_mode_get(fs, sb) == LIST_API ||
	    !split_path(path, parent, sizeof(parent), &base))
		return info_attr(fs, sb, path, st);
	rc = list_dir(fs, sb, parent, &v, &n);
	if (rc == -EACCES)
		return info_attr(fs, sb, path, st);   /* a directory we may search but not read */
	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(v[i].name, base)) {
			*st = v[i].st;
			rc = 0;
			break;
		}
	}
	files_find_free(v, n);
	return rc;
}

static void node_stat(struct open_node *n, struct stat *st)
{
	pthread_mutex_lock(&n->lock);
	*st = n->st;
	st->st_nlink = n->unlinked ? 0 : 1;
	if (n->populated) {
		st->st_size = (off_t)stage_size(n->stage);
		st->st_blocks = (blkcnt_t)((stage_size(n->stage) + 511) / 512);
	}
	if (n->dirty || n->mtime_pending || n->is_new)
		st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
	pthread_mutex_unlock(&n->lock);
}

/* Attributes of an open node overlay the sandbox's: a file written here and
 * not yet uploaded has the size and time of its stage. */
static bool overlay_open_node(struct dfs *fs, struct open_node *n, struct stat *st, bool have_remote)
{
	bool used = false;

	pthread_mutex_lock(&n->lock);
	if (n->is_new && !have_remote) {
		*st = n->st;
		used = true;
	}
	if (n->populated && (have_remote || used)) {
		st->st_size = (off_t)stage_size(n->stage);
		st->st_blocks = (blkcnt_t)((stage_size(n->stage) + 511) / 512);
		if (n->dirty || n->mtime_pending)
			st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
		used = true;
	}
	if (have_remote && S_ISREG(st->st_mode) && n->chmod_pending)
		st->st_mode = n->st.st_mode;
	pthread_mutex_unlock(&n->lock);
	return used;
}

int files_getattr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct open_node *n;
	int rc;

	hide_window_wait(fs->files, sb, path);
	if (is_hidden_name(path)) {
		/* Never in the sandbox: the node, or nothing (libfuse probes
		 * names this way when it picks one). */
		char from[sizeof(((struct node *)0)->path)];

		n = node_find_hidden(fs->files, sb, path);
		if (!n && hidden_name_origin(fs->files, sb, path, from, sizeof(from)))
			return files_getattr(fs, sb, from, st);   /* as files_open */
		if (!n)
			return -ENOENT;
		node_stat(n, st);
		node_release(fs, n);
		return 0;
	}
	n = node_find(fs->files, sb, path);

	if (n && n->is_new) {
		overlay_open_node(fs, n, st, false);
		node_release(fs, n);
		return 0;
	}
	rc = lookup_attr(fs, sb, path, st);
	if (n) {
		if (rc == 0 && S_ISREG(st->st_mode))
			overlay_open_node(fs, n, st, true);
		node_release(fs, n);
	}
	return rc;
}

int files_fgetattr(struct dfs *fs, struct fuse_file_info *fi, struct stat *st)
{
	struct open_node *n = ((struct fhandle *)(uintptr_t)fi->fh)->node;

	node_stat(n, st);
	pthread_mutex_lock(&fs->files->lock);
	st->st_ino = ino_of(fs->inos, n->sb->id, n->path);
	pthread_mutex_unlock(&fs->files->lock);
	return 0;
}

/* ---- directory listings ------------------------------------------------------ */

/*
 * ls -l of a large directory must cost one request and no round trip per
 * name. The kernel reads a directory in chunks (READDIRPLUS), and libfuse
 * 3.14 gives it what makes a later stat free only in its "offsets" mode: with
 * offset 0 for every entry it buffers the whole listing and sends each entry
 * with node id 0, which tells the kernel to ignore the attributes, so the
 * kernel looks up every name again (a user-space round trip each). With
 * offsets, fill_dir_plus enters an entry given FUSE_FILL_DIR_PLUS in
 * libfuse's node table and hands the kernel its node id and attributes, which
 * it keeps for the mount's attribute timeout.
 *
 * In that mode libfuse keeps nothing between chunks: readdir is called again
 * for each, at the offset where the last one ended. So the handle holds a
 * snapshot of the names, taken at offset 0 (a rewinddir takes a new one, as
 * POSIX asks): later chunks are served from it, whatever happens to the
 * cached listing meanwhile (expired, or dropped because a command ended), so
 * the directory is fetched once and every name is returned exactly once.
 * Entry i of the snapshot has offset i + 3 ("." is 1, ".." 2).
 *
 * Attributes go with a name (FUSE_FILL_DIR_PLUS) only when they are exact
 * and in the cache when its chunk is sent, and no open handle overlays them:
 *  - A command's end drops what the kernel holds by invalidating the paths
 *    the cache holds (fs.c, invalidate_sandbox_everywhere). A listing entry
 *    whose own attributes were dropped (a file written through the mount:
 *    the listing keeps only a hint of its size and time) is in no such path,
 *    so attributes sent for it would survive a command that changed the file.
 *  - They must be what getattr answers: an open file's size and times are
 *    its stage's (files_getattr), and attributes sent this way overwrite the
 *    size of an inode the kernel already has.
 * Any other name goes without them, and the kernel looks it up (files_getattr
 * then fetches and caches its exact attributes, as before). Checking at send
 * time, not at the snapshot, means that a command ending mid-listing (the
 * cache is emptied) leaves the later chunks without attributes.
 */
struct dir_entry {
	size_t name;              /* offset in dhandle.names */
	mode_t type;              /* S_IFMT bits, for d_type when no attributes are sent */
};

struct dhandle {
	int type;                 /* FS_HANDLE_DIR */
	bool taken;               /* a snapshot is held */
	bool oom;                 /* taking it ran out of memory */
	struct strbuf names;      /* the snapshot's names, NUL-separated, in order */
	struct dir_entry *ents;
	size_t n, cap;
};

int files_opendir(struct dfs *fs, struct fuse_file_info *fi)
{
	struct dhandle *h = calloc(1, sizeof(*h));

	(void)fs;
	if (!h)
		return -ENOMEM;
	h->type = FS_HANDLE_DIR;
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static void snapshot_clear(struct dhandle *h)
{
	sb_free(&h->names);
	free(h->ents);
	h->ents = NULL;
	h->n = h->cap = 0;
	h->taken = h->oom = false;
}

void files_releasedir(struct dfs *fs, struct fuse_file_info *fi)
{
	struct dhandle *h = (struct dhandle *)(uintptr_t)fi->fh;

	(void)fs;
	snapshot_clear(h);
	free(h);
}

/* Adds a name to the snapshot; out of memory, sets h->oom and returns 1
 * (which stops cache_get_dir). */
static int snapshot_add(void *ctx, const char *name, const struct stat *st)
{
	struct dhandle *h = ctx;

	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct dir_entry *e = realloc(h->ents, cap * sizeof(*e));

		if (!e)
			goto oom;
		h->ents = e;
		h->cap = cap;
	}
	h->ents[h->n].name = h->names.len;
	h->ents[h->n].type = st ? st->st_mode & S_IFMT : 0;
	sb_add(&h->names, name, strlen(name) + 1);
	if (h->names.oom)
		goto oom;
	h->n++;
	return 0;
oom:
	h->oom = true;
	return 1;
}

static bool seen_name(const struct strbuf *seen, const char *name)
{
	for (size_t off = 0; off < seen->len; off += strlen(seen->buf + off) + 1)
		if (!strcmp(seen->buf + off, name))
			return true;
	return false;
}

/* The names of path: its listing (the cache's, else one request), and the
 * files created here and not uploaded yet. */
static int snapshot_take(struct dfs *fs, struct sandbox *sb, const char *path, struct dhandle *h)
{
	struct find_entry *v = NULL;
	size_t n = 0, plen = strlen(path);
	int rc = 0;

	files_settle(fs, sb, path);
	snapshot_clear(h);
	if (!cache_get_dir(fs->cache, sb->id, path, snapshot_add, h)) {
		rc = list_dir(fs, sb, path, &v, &n);
		if (rc < 0)
			goto out;
		for (size_t i = 0; i < n && !h->oom; i++)
			snapshot_add(h, v[i].name, &v[i].st);
	}
	/* Files created here and not uploaded yet are listed too. */
	pthread_mutex_lock(&fs->files->lock);
	for (struct open_node *o = fs->files->head; o && !h->oom; o = o->next) {
		const char *base;

		if (o->sb != sb || !o->is_new || o->unlinked)
			continue;
		if (strncmp(o->path, path, plen) || (plen > 1 && o->path[plen] != '/'))
			continue;
		base = o->path + plen + (plen > 1 ? 1 : 0);
		if (*base == '/')
			base++;
		if (!*base || strchr(base, '/') || seen_name(&h->names, base))
			continue;
		snapshot_add(h, base, &o->st);
	}
	pthread_mutex_unlock(&fs->files->lock);
	if (h->oom)
		rc = -ENOMEM;
out:
	files_find_free(v, n);
	if (rc < 0)
		snapshot_clear(h);
	else
		h->taken = true;
	return rc;
}

/* The attributes to send with dir/name, when they may be sent (see above). */
static bool exact_attr(struct dfs *fs, struct sandbox *sb, const char *dir, const char *name, struct stat *st)
{
	char path[4096 + 256 + 2];
	bool open;

	if (!str_printf(path, sizeof(path), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name))
		return false;
	if (cache_get_attr(fs->cache, sb->id, path, st) != CACHE_HIT)
		return false;
	pthread_mutex_lock(&fs->files->lock);
	open = node_lookup_locked(fs->files, sb, path) != NULL;
	pthread_mutex_unlock(&fs->files->lock);
	return !open;
}

int files_readdir(struct dfs *fs, struct sandbox *sb, const char *path, void *buf, fuse_fill_dir_t filler,
		  off_t off, struct fuse_file_info *fi)
{
	struct dhandle *h = fi ? (struct dhandle *)(uintptr_t)fi->fh : NULL;
	int rc;

	if (!h || h->type != FS_HANDLE_DIR)
		return -EBADF;
	/* libfuse serializes the calls on one handle: no lock of our own. */
	if (off == 0 || !h->taken) {
		rc = snapshot_take(fs, sb, path, h);
		if (rc < 0)
			return rc;
	}
	if (off < 1 && filler(buf, ".", NULL, 1, 0))
		return 0;
	if (off < 2 && filler(buf, "..", NULL, 2, 0))
		return 0;
	for (size_t i = off > 2 ? (size_t)(off - 2) : 0; i < h->n; i++) {
		const char *name = h->names.buf + h->ents[i].name;
		struct stat st;
		bool plus = exact_attr(fs, sb, path, name, &st);

		char child[4096 + 256 + 2];

		if (!plus) {
			memset(&st, 0, sizeof(st));
			st.st_mode = h->ents[i].type;
		}
		/* d_ino as stat's st_ino (use_ino) */
		if (str_printf(child, sizeof(child), "%s%s%s", path, strcmp(path, "/") ? "/" : "", name))
			st.st_ino = ino_of(fs->inos, sb->id, child);
		/* non-zero: the kernel's buffer is full; it asks again from here */
		if (filler(buf, name, &st, (off_t)i + 3, plus ? FUSE_FILL_DIR_PLUS : 0))
			break;
	}
	return 0;
}

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
static int ensure_populated(struct dfs *fs, struct open_node *n)
{
	struct dt_error err = { 0 };
	struct stage_sink sink;
	struct dt_box box;
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
	got = dt_fs_download(fs->dt, &box, n->path, 0, 0, sink_to_stage, &sink, &err);
	if (got < 0) {
		stage_truncate(n->stage, 0);
		return toolbox_failed(fs, n->sb, (int)got, &err, "download", n->path);
	}
	n->populated = true;
	return 0;
}

static void touch_now(struct open_node *n)
{
	clock_gettime(CLOCK_REALTIME, &n->mtime);
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

static void add_touch(struct strbuf *cmd, const char *flag, const struct timespec *ts, const char *path)
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
static void apply_after_upload(struct dfs *fs, struct open_node *n)
{
	struct dt_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct stat hint;
	struct dt_box box;
	mode_t mode = n->st.st_mode & 07777;
	bool chmod = n->chmod_pending && mode != 0644;
	bool finds = list_mode_get(fs, n->sb) != LIST_API;
	/* A mode alone could be POST /files/permissions, but a command costs
	 * the same one request and returns the exact attributes, which the
	 * next stat (editors stat what they wrote) would otherwise ask for. */
	bool command = n->chown_pending || n->mtime_pending || n->atime_pending ||
		       (chmod && ((mode & 07000) || finds));
	char *out = NULL;
	int rc;

	upload_hint(n, &hint);
	if (!command && !chmod) {
		n->chmod_pending = false;
		cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
		return;
	}
	if (!command) {
		n->chmod_pending = false;
		sandbox_box(n->sb, &box);
		rc = dt_fs_chmod(fs->dt, &box, n->path, mode, &err);
		if (rc < 0)
			log_warn("%s: chmod %o %s after upload: %s", n->sb->name, mode, n->path, err.message);
		cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
		return;
	}
	if (finds && attrs_later(fs, n, &hint, chmod)) {
		n->chmod_pending = n->chown_pending = n->mtime_pending = n->atime_pending = false;
		return;
	}
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
	n->chmod_pending = n->chown_pending = n->mtime_pending = n->atime_pending = false;
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
static int upload_command(struct dfs *fs, struct sandbox *sb, const struct dt_box *box, const char *script)
{
	struct strbuf cmd = STRBUF_INIT;
	struct dt_error err = { 0 };
	char *out = NULL;
	int code = -1, rc;

	if (sb)
		return run_fs_command(fs, sb, script, NULL);
	sb_adds(&cmd, FILES_SH_PREFIX);
	sb_adds(&cmd, script);
	rc = cmd.oom ? -ENOMEM : dt_exec_within(fs->dt, box, sb_str(&cmd), "/", fs->opt.timeout_s, &code, &out, &err);
	if (rc == 0 && code != 0)
		rc = errno_from_message(out);
	else if (rc < 0)
		log_warn("%s: %s", box->id, err.message);
	free(out);
	sb_free(&cmd);
	return rc;
}

/*
 * Sends size bytes of fd to path. The toolbox trims white space from both
 * ends of an upload's path (Go's strings.TrimSpace), so "notes " would be
 * written over "notes": such a path is uploaded under a temporary name in
 * the same directory, and one command copies that into the file and removes
 * it. The copy (cat, not mv) keeps an existing file's inode, mode, owner and
 * links, as an upload in place does. sb is NULL when the mount does not know
 * the sandbox (crash recovery); with sb, a sandbox known to run no commands
 * gets EOPNOTSUPP for such a path rather than an upload to the wrong name.
 */
int files_upload_fd(struct dfs *fs, struct sandbox *sb, const struct dt_box *box, const char *path, int fd,
		    uint64_t size, struct dt_error *err)
{
	static unsigned long seq;
	struct strbuf tmp = STRBUF_INIT, cmd = STRBUF_INIT;
	const char *slash = strrchr(path, '/');
	int rc;

	if (!slash || !dt_upload_path_trimmed(path))
		return dt_fs_upload_fd(fs->dt, box, path, fd, size, err);
	if (sb && list_mode_get(fs, sb) == LIST_API)
		return dt_error_set(err, -EOPNOTSUPP, 0, "write %s: the sandbox runs no commands, and its file "
				    "API would write a name with white space at its ends over the trimmed name", path);
	sb_add(&tmp, path, (size_t)(slash - path) + 1);
	sb_addf(&tmp, ".daytonafs-upload.%ld.%lu", (long)getpid(), __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	sb_adds(&cmd, "cat -- ");
	sh_word(&cmd, sb_str(&tmp));
	sb_adds(&cmd, " > ");
	sh_word(&cmd, path);
	sb_adds(&cmd, "; rc=$?; rm -f -- ");
	sh_word(&cmd, sb_str(&tmp));
	sb_adds(&cmd, "; exit $rc");
	if (tmp.oom || cmd.oom) {
		rc = dt_error_set(err, -ENOMEM, 0, "write %s: out of memory", path);
		goto out;
	}
	rc = dt_fs_upload_fd(fs->dt, box, sb_str(&tmp), fd, size, err);
	if (rc == 0) {
		rc = upload_command(fs, sb, box, sb_str(&cmd));
		if (rc < 0)
			dt_error_set(err, rc, 0, "write %s: copying the upload into place failed: %s", path,
				     strerror(-rc));
	}
	if (rc < 0) {
		struct dt_error ignored = { 0 };

		/* A part of it may have been written, or the copy's request
		 * failed before its rm ran: no copy is left in the user's
		 * directory (the result does not matter). */
		dt_fs_delete(fs->dt, box, sb_str(&tmp), false, &ignored);
	}
out:
	sb_free(&tmp);
	sb_free(&cmd);
	return rc;
}

/* chmod of path for crash recovery: the file API's chmod trims the path as
 * its upload does, so a name with white space at its ends gets a command. */
int files_chmod_path(struct dfs *fs, const struct dt_box *box, const char *path, mode_t mode, struct dt_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	if (!dt_upload_path_trimmed(path))
		return dt_fs_chmod(fs->dt, box, path, mode, err);
	sb_addf(&cmd, "chmod %o -- ", (unsigned)(mode & 07777));
	sh_word(&cmd, path);
	rc = cmd.oom ? -ENOMEM : upload_command(fs, NULL, box, sb_str(&cmd));
	if (rc < 0)
		dt_error_set(err, rc, 0, "chmod %s: %s", path, strerror(-rc));
	sb_free(&cmd);
	return rc;
}

/* Sends the stage to n->path (files_upload_fd). Caller holds n->lock. */
static int upload_stage(struct dfs *fs, struct open_node *n, struct dt_error *err)
{
	struct dt_box box;

	sandbox_box(n->sb, &box);
	return files_upload_fd(fs, n->sb, &box, n->path, stage_fd(n->stage), stage_size(n->stage), err);
}

/* ---- the crash journal (journal.h) ------------------------------------------------ */

/* Writes (or rewrites) the stage's record; durable: after an fsync of the
 * stage, and itself fsync'd. */
static int journal_put(struct dfs *fs, struct open_node *n, enum journal_state state, bool durable)
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
	if (!str_copy(r->path, sizeof(r->path), n->path) || !name[0]) {
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
	if (n->journal_name[0] && !n->journal_flushed)
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
	journal_put(fs, n, JOURNAL_FLUSHED, failed);
}

/* The stage's data is in the sandbox, in unsaved/, or no longer wanted. */
static void journal_drop(struct dfs *fs, struct open_node *n)
{
	int rc;

	if (!n->journal_name[0])
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
 * record (the journal failed too): then nothing can be done. Caller holds
 * n->lock.
 */
static bool journal_keep_for_recovery(struct open_node *n)
{
	if (!n->journal_name[0])
		return false;
	n->journal_keep = true;
	log_error("%s: %s could not be uploaded nor kept in unsaved/; it stays in the staging directory for "
		  "the next mount's crash recovery", n->sb->name, n->path);
	return true;
}

/* Uploads a dirty stage, then applies what had to wait for the file to
 * exist (mode, owner, times). Caller holds n->lock. */
static int upload_node(struct dfs *fs, struct open_node *n)
{
	struct dt_error err = { 0 };
	struct stat hint;
	int rc;

	if (!n->dirty || n->unlinked)
		return 0;
	/* A queued change of this file (its times, say) must not land after
	 * the new content. */
	files_settle(fs, n->sb, n->path);
	journal_note_flush(fs, n, false);
	rc = upload_stage(fs, n, &err);
	if (rc < 0) {
		n->upload_error = rc;
		journal_note_flush(fs, n, true);
		upload_hint(n, &hint);
		cache_update(fs->cache, n->sb->id, n->path, CACHE_CHANGED, &hint, false);
		toolbox_failed(fs, n->sb, rc, &err, "upload", n->path);
		log_error("%s: upload of %s failed: %s (the data is kept staged)", n->sb->name, n->path,
			  err.message);
		return rc;
	}
	n->dirty = false;
	n->is_new = false;
	n->upload_error = 0;
	journal_drop(fs, n);
	/* The sandbox's time of our upload is not known here: a later stretch
	 * of writes cannot be checked against it after a crash. */
	n->base.kind = JOURNAL_BASE_UNKNOWN;
	apply_after_upload(fs, n);
	return 0;
}

/* The attributes of an existing file being opened, without a request:
 * the kernel looked the path up just before, so the cache has them. */
static void node_init_existing(struct dfs *fs, struct open_node *n)
{
	bool listed = false;

	if (cache_lookup(fs->cache, n->sb->id, n->path, &n->st, &listed) == CACHE_HIT) {
		/* what recovery checks the sandbox's file against */
		n->base.kind = JOURNAL_BASE_FILE;
		n->base.size = (uint64_t)n->st.st_size;
		n->base.mtime = n->st.st_mtim;
	} else if (!listed) {
		memset(&n->st, 0, sizeof(n->st));
		n->st.st_mode = S_IFREG | 0644;
		n->st.st_uid = fs->uid;
		n->st.st_gid = fs->gid;
	}
	n->st.st_nlink = 1;
	n->st.st_blksize = 128 * 1024;
	n->mtime = n->st.st_mtim;
}

int files_open(struct dfs *fs, struct sandbox *sb, const char *path, struct fuse_file_info *fi, bool create,
	       mode_t mode)
{
	struct fhandle *h;
	struct open_node *n;
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
			return files_open(fs, sb, from, fi, false, 0);
		}
	} else {
		files_settle(fs, sb, path);
		n = node_get(fs->files, sb, path);
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
	if (!create && !n->is_new && !n->populated && !n->st.st_mode)
		node_init_existing(fs, n);
	/* O_TRUNC truncates whatever the access mode: Linux does it for O_RDONLY too. */
	if (create || (fi->flags & O_TRUNC)) {
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
				n->st.st_uid = fs->uid;
				n->st.st_gid = fs->gid;
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

struct buf_sink {
	char *buf;
	size_t cap;
	size_t len;
};

static int sink_to_buf(void *ctx, const void *data, size_t len)
{
	struct buf_sink *s = ctx;

	if (len > s->cap - s->len)
		len = s->cap - s->len;   /* a server that ignores the range's end */
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	return 0;
}

static int download_into(struct dfs *fs, struct open_node *n, uint64_t off, char *buf, size_t size)
{
	struct dt_error err = { 0 };
	struct buf_sink sink = { buf, size, 0 };
	struct dt_box box;
	int64_t got;

	sandbox_box(n->sb, &box);
	got = dt_fs_download(fs->dt, &box, n->path, off, size, sink_to_buf, &sink, &err);
	if (got < 0)
		return toolbox_failed(fs, n->sb, (int)got, &err, "read", n->path);
	return (int)sink.len;
}

/*
 * Streaming read-ahead. Once a reader is sequential, one download from its
 * offset to the end of the file runs in a thread and fills a ring buffer;
 * reads take from the ring while the download goes on, so the network and
 * FUSE work at the same time and a whole file costs one request whatever the
 * latency. When the ring is full the thread stops reading the socket (TCP
 * back-pressure). Data up to STREAM_KEEP behind the furthest read stays, for
 * the kernel's out-of-order readahead. A read outside what the stream can
 * serve stops it; the caller then falls back to ranged downloads.
 */
#define STREAM_CAP  (8 * 1024 * 1024)
#define STREAM_KEEP (1024 * 1024)

struct rstream {
	struct dfs *fs;
	struct dt_box box;
	char *path;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	char *buf;
	uint64_t start, end;      /* file offsets held: [start, end) at buf[off % STREAM_CAP] */
	uint64_t furthest;        /* readers are done with what is before furthest - STREAM_KEEP */
	bool stop, done;
	int err;
};

static int rs_sink(void *ctx, const void *data, size_t len)
{
	struct rstream *rs = ctx;
	const char *d = data;

	while (len) {
		size_t room, n, pos, first;
		uint64_t end;

		pthread_mutex_lock(&rs->lock);
		for (;;) {
			uint64_t keep_from = rs->furthest > STREAM_KEEP ? rs->furthest - STREAM_KEEP : 0;

			if (keep_from > rs->start)
				rs->start = keep_from < rs->end ? keep_from : rs->end;
			room = STREAM_CAP - (size_t)(rs->end - rs->start);
			if (rs->stop || room > 0)
				break;
			pthread_cond_wait(&rs->cv, &rs->lock);
		}
		end = rs->end;
		pthread_mutex_unlock(&rs->lock);
		if (rs->stop)
			return -ECANCELED;
		/* Only this thread moves start and end, so [end, end + room) is ours
		 * to fill without the lock. */
		n = len < room ? len : room;
		pos = (size_t)(end % STREAM_CAP);
		first = n < STREAM_CAP - pos ? n : STREAM_CAP - pos;
		memcpy(rs->buf + pos, d, first);
		memcpy(rs->buf, d + first, n - first);
		pthread_mutex_lock(&rs->lock);
		rs->end += n;
		pthread_cond_broadcast(&rs->cv);
		pthread_mutex_unlock(&rs->lock);
		d += n;
		len -= n;
	}
	return 0;
}

static void *rs_main(void *arg)
{
	struct rstream *rs = arg;
	struct dt_error err = { 0 };
	int64_t got;

	got = dt_fs_download(rs->fs->dt, &rs->box, rs->path, rs->start, 0, rs_sink, rs, &err);
	pthread_mutex_lock(&rs->lock);
	rs->done = true;
	rs->err = got < 0 ? (int)got : 0;
	pthread_cond_broadcast(&rs->cv);
	pthread_mutex_unlock(&rs->lock);
	return NULL;
}

static void rs_stop(struct rstream *rs)
{
	pthread_mutex_lock(&rs->lock);
	rs->stop = true;
	pthread_cond_broadcast(&rs->cv);
	pthread_mutex_unlock(&rs->lock);
	pthread_join(rs->thread, NULL);
	pthread_cond_destroy(&rs->cv);
	pthread_mutex_destroy(&rs->lock);
	free(rs->buf);
	free(rs->path);
	free(rs);
}

static struct rstream *rs_start(struct dfs *fs, struct open_node *n, uint64_t off)
{
	struct rstream *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return NULL;
	rs->buf = malloc(STREAM_CAP);
	rs->path = strdup(n->path);
	if (!rs->buf || !rs->path)
		goto fail;
	rs->fs = fs;
	sandbox_box(n->sb, &rs->box);
	rs->start = rs->end = rs->furthest = off;
	pthread_mutex_init(&rs->lock, NULL);
	pthread_cond_init(&rs->cv, NULL);
	if (pthread_create(&rs->thread, NULL, rs_main, rs) != 0) {
		pthread_cond_destroy(&rs->cv);
		pthread_mutex_destroy(&rs->lock);
		goto fail;
	}
	return rs;
fail:
	free(rs->buf);
	free(rs->path);
	free(rs);
	return NULL;
}

/* Bytes copied (0 at the end of the file), or -EAGAIN when the stream cannot
 * serve this read. A stream that ended in an error serves only reads that
 * lie wholly before where it stopped: a short count would be taken for the
 * end of the file (the kernel shrinks its size), so a read across the cut
 * gets -EAGAIN and the caller downloads it, or fails with the error. */
static int rs_read(struct rstream *rs, char *buf, size_t size, uint64_t off)
{
	size_t n, pos, first;
	int rc;

	pthread_mutex_lock(&rs->lock);
	if (off < rs->start || off > rs->end + STREAM_CAP - STREAM_KEEP) {
		rc = -EAGAIN;
		goto out;
	}
	if (off > rs->furthest) {
		rs->furthest = off;   /* lets the producer make room for this read */
		pthread_cond_broadcast(&rs->cv);
	}
	while (rs->end < off + size && !rs->done)
		pthread_cond_wait(&rs->cv, &rs->lock);
	if (off < rs->start) {
		rc = -EAGAIN;
		goto out;
	}
	if (rs->err && rs->end < off + size) {
		rc = -EAGAIN;
		goto out;
	}
	if (off >= rs->end) {
		rc = 0;
		goto out;
	}
	n = rs->end - off < size ? (size_t)(rs->end - off) : size;
	pos = (size_t)(off % STREAM_CAP);
	first = n < STREAM_CAP - pos ? n : STREAM_CAP - pos;
	memcpy(buf, rs->buf + pos, first);
	memcpy(buf + first, rs->buf, n - first);
	if (off + n > rs->furthest) {
		rs->furthest = off + n;
		pthread_cond_broadcast(&rs->cv);
	}
	rc = (int)n;
out:
	pthread_mutex_unlock(&rs->lock);
	return rc;
}


int files_read(struct dfs *fs, struct fuse_file_info *fi, char *buf, size_t size, off_t off)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;
	uint64_t uoff = (uint64_t)off;
	ssize_t got;
	int rc;

	pthread_mutex_lock(&n->lock);
	if (n->populated || n->unlinked) {
		/* An unlinked node was populated when it was unlinked; reading
		 * its path now would read another file. */
		got = n->populated ? stage_pread(n->stage, buf, size, uoff) : 0;
		pthread_mutex_unlock(&n->lock);
		return (int)got;
	}
	pthread_mutex_unlock(&n->lock);

	pthread_mutex_lock(&h->lock);
	if (h->rs) {
		rc = rs_read(h->rs, buf, size, uoff);
		if (rc != -EAGAIN)
			goto done;
		rs_stop(h->rs);
		h->rs = NULL;
	}
	if (uoff >= h->ra_off && uoff + size <= h->ra_off + h->ra_len) {
		memcpy(buf, h->ra_buf + (uoff - h->ra_off), size);
		rc = (int)size;
		goto done;
	}
	/* Sequential, or just ahead of where the reader was: the kernel's
	 * readahead sends its reads from several threads, so the next one may
	 * arrive after the one past it. Either way the stream starts where the
	 * reader was (next_off), and serves both. */
	if (h->next_off != 0 && uoff >= h->next_off && uoff - h->next_off <= 4 * (uint64_t)size) {
		/* Sequential: stream the rest of the file. */
		h->rs = rs_start(fs, n, h->next_off);
		if (h->rs) {
			rc = rs_read(h->rs, buf, size, uoff);
			if (rc != -EAGAIN)
				goto done;
			rs_stop(h->rs);
			h->rs = NULL;
		}

		/* Sequential: fetch ahead, doubling the window up to RA_MAX. */
		if (h->window < RA_MAX)
			h->window *= 2;
	} else if (uoff != 0) {
		/* Random access: fetch exactly what was asked, no more. */
		h->window = 0;
	}
	if (h->window > size) {
		size_t want = h->window;

		if (h->ra_cap < want) {
			char *nb = realloc(h->ra_buf, want);

			if (!nb) {
				rc = -ENOMEM;
				goto done;
			}
			h->ra_buf = nb;
			h->ra_cap = want;
		}
		h->ra_len = 0;
		rc = download_into(fs, n, uoff, h->ra_buf, want);
		if (rc < 0)
			goto done;
		h->ra_off = uoff;
		h->ra_len = (size_t)rc;
		rc = (int)(size < h->ra_len ? size : h->ra_len);
		memcpy(buf, h->ra_buf, (size_t)rc);
	} else {
		if (h->window == 0)
			h->window = RA_MIN;
		rc = download_into(fs, n, uoff, buf, size);
	}
done:
	if (rc > 0)
		h->next_off = uoff + (uint64_t)rc;
	pthread_mutex_unlock(&h->lock);
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
	rc = upload_node(fs, n);
	pthread_mutex_unlock(&n->lock);
	return rc;
}

int files_fsync(struct dfs *fs, struct fuse_file_info *fi)
{
	return files_flush(fs, fi);
}

int files_release(struct dfs *fs, struct fuse_file_info *fi)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;

	/* The node stays in the open table (this handle's reference) until the
	 * last-chance upload is over: an open of the same path meanwhile joins
	 * the node and waits for the lock, so that one path never has two
	 * uploads at once, and an older content never lands after a newer one. */
	pthread_mutex_lock(&n->lock);
	if (--n->handles == 0) {
		/* The last handle: one more try, and a stage that still cannot be
		 * uploaded is preserved, never dropped. */
		if (n->dirty && !n->unlinked && upload_node(fs, n) < 0) {
			char label[4600], where[4096];

			snprintf(label, sizeof(label), "%s:%s", n->sb->name, n->path);
			if (stage_preserve(n->stage, label, where, sizeof(where)) == 0) {
				journal_drop(fs, n);
				log_error("%s: %s could not be uploaded; its content is saved in %s",
					  n->sb->name, n->path, where);
				sandbox_set_error(n->sb, "%s could not be uploaded; its content is saved in %s",
						  n->path, where);
			} else if (journal_keep_for_recovery(n)) {
				sandbox_set_error(n->sb, "%s could not be uploaded; its content stays staged for the "
						  "next mount", n->path);
			}
			node_forget_content(fs, n);
		}
	}
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
	if (h->rs)
		rs_stop(h->rs);
	free(h->ra_buf);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return 0;
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
			n = node_get(fs->files, sb, path);
			if (!n)
				return -ENOMEM;
			pthread_mutex_lock(&n->lock);
			node_init_existing(fs, n);
			pthread_mutex_unlock(&n->lock);
		}
	}
	pthread_mutex_lock(&n->lock);
	if (size == 0 && !n->populated) {
		if (!n->stage)
			rc = stage_new(fs->stage, &n->stage);
		else
			rc = stage_truncate(n->stage, 0);
		if (rc == 0)
			n->populated = true;
	} else {
		rc = ensure_populated(fs, n);
	}
	if (rc == 0)
		rc = journal_note_dirty(fs, n);
	if (rc == 0)
		rc = stage_truncate(n->stage, (uint64_t)size);
	if (rc == 0) {
		n->dirty = true;
		n->mtime_pending = false;
		touch_now(n);
		if (by_path)
			rc = upload_node(fs, n);
	}
	pthread_mutex_unlock(&n->lock);
	if (by_path)
		node_release(fs, n);
	return rc;
}

/* ---- namespace ------------------------------------------------------------------- */

static int flush_under(struct dfs *fs, struct sandbox *sb, const char *path);
static int delete_later(struct dfs *fs, struct sandbox *sb, const char *path, const struct stat *st, bool hidden);

int files_mkdir(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct dt_error err = { 0 };
	struct dt_box box;
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
		rc = dt_fs_mkdir(fs->dt, &box, path, mode, &err);
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
	struct dt_error err = { 0 };
	struct dt_box box;
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
	rc = dt_fs_delete(fs->dt, &box, path, false, &err);
	if (rc == -EINVAL)
		rc = -EISDIR;
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "unlink", path);
	return 0;
}

int files_unlink(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct open_node *n;
	struct stat st;
	bool only_local = false, have_st;
	int rc = 0;

	if (is_hidden_name(path))
		return 0;   /* the last close of an unlinked file: it left the sandbox at its unlink */
	n = node_find(fs->files, sb, path);

	if (n) {
		/* Open descriptors keep reading what the file held. */
		pthread_mutex_lock(&n->lock);
		only_local = n->is_new;
		if (!only_local)
			rc = ensure_populated(fs, n);
		if (rc == 0) {
			n->unlinked = true;
			n->dirty = false;
			journal_drop(fs, n);
		}
		pthread_mutex_unlock(&n->lock);
		node_release(fs, n);
		if (rc < 0 && rc != -ENOENT)
			return rc;
	}
	if (!only_local) {
		have_st = lookup_attr(fs, sb, path, &st) == 0;
		if (have_st && S_ISDIR(st.st_mode))
			return -EISDIR;
		/* rm -r unlinks a tree one file at a time, each waiting for the
		 * last: the deletes of files no descriptor holds open go out
		 * together, later. An open one goes now: its content was just
		 * read for the descriptors, and they expect nothing else. */
		if (have_st && !n) {
			rc = delete_later(fs, sb, path, &st, false);
		} else {
			files_settle(fs, sb, path);
			rc = remove_path(fs, sb, path, have_st ? &st : NULL);
		}
		if (rc < 0) {
			cache_invalidate(fs->cache, sb->id, path);
			return rc;
		}
	}
	cache_update(fs->cache, sb->id, path, CACHE_REMOVED, NULL, false);
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
	struct dt_error err = { 0 };
	struct dt_box box;
	size_t n = 0;
	int rc;

	files_settle(fs, sb, path);
	/* The toolbox deletes a directory only recursively, so emptiness is
	 * checked first: rmdir never removes content, not even files made in
	 * it through this mount and not uploaded yet (they are uploaded). */
	rc = flush_under(fs, sb, path);
	if (rc < 0)
		return rc;
	if (!cache_get_dir(fs->cache, sb->id, path, count_entries, &n)) {
		struct find_entry *v = NULL;

		rc = list_dir(fs, sb, path, &v, &n);
		files_find_free(v, n);
		if (rc < 0)
			return rc;
	}
	if (n > 0)
		return -ENOTEMPTY;
	sandbox_box(sb, &box);
	rc = dt_fs_delete(fs->dt, &box, path, true, &err);
	if (rc < 0) {
		cache_invalidate_tree(fs->cache, sb->id, path);
		return toolbox_failed(fs, sb, rc, &err, "rmdir", path);
	}
	cache_update(fs->cache, sb->id, path, CACHE_REMOVED, NULL, false);
	link_drop(fs, sb, path, true);
	return 0;
}

/* Uploads every dirty node at or below path (before it is renamed). */
/* Takes a reference on a node with staged writes, of sb at or below path
 * (any, when sb is NULL), or returns NULL. The caller uploads it without
 * the table's lock (an upload may run queued changes, and they take it). */
static struct open_node *next_dirty(struct dfs *fs, struct sandbox *sb, const char *path)
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
	pthread_mutex_unlock(&fs->files->lock);
	journal_follow(fs, journaled, nj);
}

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
static void wb_run_all(struct dfs *fs, struct sandbox *sb)
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
static bool wb_queue_op(struct dfs *fs, struct wb_op *op, double delay)
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

void files_settle(struct dfs *fs, struct sandbox *sb, const char *path)
{
	if (wb_conflicts(fs->files->wb, sb, path))
		wb_run_all(fs, sb);
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

/* libfuse hides an open file that is unlinked or replaced: the rename to
 * its hidden name is the unlink, in the sandbox (after PENDING_DELAY, unless
 * a rename replaces it first), and local otherwise. */
static int hide_open_file(struct dfs *fs, struct sandbox *sb, const char *from, const char *to)
{
	struct open_node *n = node_find(fs->files, sb, from);
	struct stat st;
	bool local;
	char *np;
	int rc = 0;

	if (!n)
		return -ENOENT;
	np = strdup(to);
	if (!np) {
		node_release(fs, n);
		return -ENOMEM;
	}
	pthread_mutex_lock(&n->lock);
	local = n->is_new;
	/* Descriptors open on it keep reading what it held. */
	if (!local)
		rc = ensure_populated(fs, n);
	if (rc == 0 && !local) {
		rc = lookup_attr(fs, sb, from, &st);
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
	cache_update(fs->cache, sb->id, from, CACHE_REMOVED, NULL, false);
	link_drop(fs, sb, from, false);
	hidden_name_note(fs->files, sb, to, from);
	hide_window_open(fs->files, sb, from);
	return 0;
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
		struct dt_error ignored = { 0 };
		bool asked = sandbox_refresh(fs, sb, &ignored) == 0;

		pthread_mutex_lock(&fs->lock);
		if (asked)
			sb->volumes_known = true;
		pthread_mutex_unlock(&fs->lock);
	}
	pthread_mutex_lock(&fs->lock);
	str_copy(paths, sizeof(paths), sb->volume_paths);
	pthread_mutex_unlock(&fs->lock);
	return dt_path_on_volume(paths, from) || dt_path_on_volume(paths, to);
}

/*
 * After a move answered 404: whether it was done all the same. The proxy
 * and the runner re-send a request once after a stale connection
 * (FIDELITY D7), and the second move finds no source. The destination was
 * absent before the move (the API's move is used only then), so a
 * destination that exists now, with the source gone, is the move's work.
 */
static bool move_was_done(struct dfs *fs, const struct dt_box *box, const char *from, const char *to)
{
	struct dt_error err = { 0 };
	struct dt_fileinfo fi;
	bool done;

	memset(&fi, 0, sizeof(fi));
	if (dt_fs_info(fs->dt, box, to, &fi, &err) < 0)
		return false;
	free(fi.name);
	memset(&fi, 0, sizeof(fi));
	done = dt_fs_info(fs->dt, box, from, &fi, &err) == -ENOENT;
	free(fi.name);
	if (done)
		log_info("move %s to %s: 404, but the move is done (a re-sent request)", from, to);
	return done;
}

static int rename_path(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags);

int files_rename(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags)
{
	bool held;
	int rc;

	if (is_hidden_name(to))
		return hide_open_file(fs, sb, from, to);
	/* Lookups of a destination just hidden wait until it is there again. */
	held = hide_window_renaming(fs->files, sb, to, true);
	rc = rename_path(fs, sb, from, to, flags);
	if (held)
		hide_window_renaming(fs->files, sb, to, false);
	return rc;
}

static int rename_path(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags)
{
	struct dt_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct stat sf, st, hidden_st;
	struct dt_box box;
	bool to_exists, from_exact, replaced_hidden, api_move;
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
		struct wb_op *hidden = wb_cancel_hidden(fs->files->wb, sb, to);

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
	api_move = !to_exists && !S_ISLNK(sf.st_mode) && !on_volume(fs, sb, from, to);
	if (api_move) {
		rc = dt_fs_move(fs->dt, &box, from, to, &err);
		if (rc == -ENOENT && move_was_done(fs, &box, from, to))
			rc = 0;
		if (rc < 0 && rc != -EEXIST)
			toolbox_failed(fs, sb, rc, &err, "rename", from);
	}
	/* (With RENAME_NOREPLACE the destination was absent: a 409 of the
	 * API's move means it came since, and is EEXIST.) */
	if (rc == -EEXIST && (!api_move || !(flags & RENAME_NOREPLACE))) {
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
		/* libfuse has hidden the old target for good: it goes now. */
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
			     void (*fn)(struct stat *st, const void *arg), const void *arg)
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
		      gid_t gid, const struct timespec *mt)
{
	struct open_node *n = node_find_hidden(fs->files, sb, path);

	if (!n)
		return -ENOENT;
	pthread_mutex_lock(&n->lock);
	if (mode)
		n->st.st_mode = (n->st.st_mode & S_IFMT) | (*mode & 07777);
	if (uid != (uid_t)-1)
		n->st.st_uid = uid;
	if (gid != (gid_t)-1)
		n->st.st_gid = gid;
	if (mt && mt->tv_nsec != UTIME_OMIT) {
		if (mt->tv_nsec == UTIME_NOW)
			touch_now(n);
		else
			n->mtime = *mt;
		n->st.st_mtim = n->mtime;
		n->mtime_pending = true;   /* shown by node_stat; never uploaded */
	}
	pthread_mutex_unlock(&n->lock);
	node_release(fs, n);
	return 0;
}

int files_chmod(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct dt_error err = { 0 };
	struct open_node *n = node_find(fs->files, sb, path);
	struct dt_box box;
	int rc;

	mode &= 07777;
	if (is_hidden_name(path)) {
		if (n)
			node_release(fs, n);
		return hidden_set(fs, sb, path, &mode, (uid_t)-1, (gid_t)-1, NULL);
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
	rc = dt_fs_chmod(fs->dt, &box, path, mode, &err);
	if (rc == -EINVAL)
		rc = -EPERM;   /* a chmod failure is a bare 400 */
	if (rc < 0) {
		cache_invalidate(fs->cache, sb->id, path);
		return toolbox_failed(fs, sb, rc, &err, "chmod", path);
	}
	note_attr_change(fs, sb, path, set_mode, &mode);
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
	if (n) {
		bool pending = false;

		pthread_mutex_lock(&n->lock);
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
	note_attr_change(fs, sb, path, set_times, tv);
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
		return hidden_set(fs, sb, path, NULL, (uid_t)-1, (gid_t)-1, mt);
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

int files_statfs(struct dfs *fs, struct sandbox *sb, struct statvfs *st)
{
	unsigned long long bsize, blocks, bfree, bavail, files, ffree, namemax;
	char *out = NULL;
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (sb->statfs_at > 0 && now_mono() - sb->statfs_at < 10) {
		*st = sb->statfs;
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->lock);
	rc = run_fs_command(fs, sb, FILES_STATFS_SCRIPT, &out);
	if (rc < 0)
		return rc;
	if (!out || sscanf(out, "%llu %llu %llu %llu %llu %llu %llu", &bsize, &blocks, &bfree, &bavail,
			   &files, &ffree, &namemax) != 7) {
		free(out);
		return -EIO;
	}
	free(out);
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = bsize;
	st->f_blocks = blocks;
	st->f_bfree = bfree;
	st->f_bavail = bavail;
	st->f_files = files;
	st->f_ffree = st->f_favail = ffree;
	st->f_namemax = namemax;
	pthread_mutex_lock(&fs->lock);
	sb->statfs = *st;
	sb->statfs_at = now_mono();
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

bool files_recovery_claim(struct dfs *fs, const char *sandbox_id, const char *path)
{
	struct open_table *t = fs->files;
	bool open = false;

	pthread_mutex_lock(&t->lock);
	for (struct open_node *n = t->head; n && !open; n = n->next)
		open = !n->unlinked && !strcmp(n->sb->id, sandbox_id) && !strcmp(n->path, path);
	if (!open) {
		t->recover_id = sandbox_id;
		t->recover_path = path;
	}
	pthread_mutex_unlock(&t->lock);
	return !open;
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
				journal_keep_for_recovery(found);
			}
			found->dirty = false;   /* preserved: not tried again */
		}
		pthread_mutex_unlock(&found->lock);
		node_release(fs, found);
	}
	/* What the uploads queued (modes, times). */
	wb_run_all(fs, NULL);
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
