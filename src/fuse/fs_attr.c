/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_attr.c - attributes and listings of the sandbox's files: getattr,
 * lookups through the parent's listing, directory handles and readdir,
 * statfs.
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
#include "rfs.h"

/* ---- listings and attributes --------------------------------------------------- */

/* Lists dir with the file API (links shown as their targets, dangling ones not at all). */
static int api_list(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry **out, size_t *n)
{
	struct sp_error err = { 0 };
	struct sp_fileinfo *list = NULL;
	struct sp_box box;
	size_t count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	sandbox_box(sb, &box);
	rc = rfs_list(fs->sp, &box, dir, &list, &count, &err);
	if (rc == -EINVAL)
		rc = -ENOTDIR;
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "list", dir);
	*out = calloc(count ? count : 1, sizeof(**out));
	if (!*out) {
		sp_fileinfo_free(list, count);
		return -ENOMEM;
	}
	for (size_t i = 0; i < count; i++) {
		(*out)[i].name = list[i].name;   /* taken over */
		list[i].name = NULL;
		stat_from_info(&list[i], &(*out)[i].st);
	}
	*n = count;
	sp_fileinfo_free(list, count);
	return 0;
}

/* Caches a listing of dir, its entries' attributes and its links' targets. */
static void store_listing(struct dfs *fs, struct sandbox *sb, const char *dir, const struct find_entry *v, size_t n,
			  uint64_t gen)
{
	struct cache_dirent *ents;

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
}

/* Lists dir (one request) and caches it (store_listing); with child, also
 * that entry when it is a directory (find_list). The entries are also
 * returned (out may be NULL). */
static int list_dir_ex(struct dfs *fs, struct sandbox *sb, const char *dir, const char *child,
		       struct find_entry **out, size_t *count)
{
	uint64_t gen;
	enum list_mode mode = list_mode_get(fs, sb);
	struct find_entry *v = NULL;
	struct child_listing cl = { 0 };
	size_t n = 0;
	int rc = -ENOSYS;

	/* The listing must not bring back what a queued delete removed, nor
	 * the times a queued change is about to set. */
	files_settle(fs, sb, dir);
	gen = cache_generation(fs->cache, sb->id);
	if (mode != LIST_API) {
		rc = files_find_list(fs, sb, dir, child, &v, &n, &cl);
		if (rc == 0 && mode == LIST_UNKNOWN)
			list_mode_set(fs, sb, LIST_FIND);
	}
	/* A command that failed as a whole (not an answer about the
	 * directory): the file API's listing is better than none. */
	if (rc == -ENOSYS || rc == -EIO)
		rc = api_list(fs, sb, dir, &v, &n);
	if (rc < 0) {
		files_find_free(cl.v, cl.n);
		return rc;
	}
	store_listing(fs, sb, dir, v, n, gen);
	if (cl.have) {
		struct strbuf cp = STRBUF_INIT;

		sb_adds(&cp, dir);
		if (strcmp(dir, "/"))
			sb_addc(&cp, '/');
		sb_adds(&cp, child);
		if (!cp.oom)
			store_listing(fs, sb, sb_str(&cp), cl.v, cl.n, gen);
		sb_free(&cp);
	}
	files_find_free(cl.v, cl.n);
	if (out) {
		*out = v;
		*count = n;
	} else {
		files_find_free(v, n);
	}
	return 0;
}

int list_dir(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry **out, size_t *count)
{
	return list_dir_ex(fs, sb, dir, NULL, out, count);
}

/* GET /files/info: exact for anything but a symbolic link (it follows them). */
static int info_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct sp_error err = { 0 };
	struct sp_fileinfo fi;
	struct sp_box box;
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
	rc = rfs_info(fs->sp, &box, path, &fi, &err);
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
	struct find_entry *v = NULL;
	char *out = NULL;
	uint64_t gen;
	size_t n = 0;
	bool quiet;
	int rc;

	/* A directory's own attributes: queued times of its files need not be
	 * sent first (tar x looks its directory up while they wait); its
	 * listing gets them from the queue (files_overlay_queued). */
	files_settle_attr(fs, sb, path);
	gen = cache_generation(fs->cache, sb->id);
	/* Its entries are only kept when no delete in it and no change of the
	 * directory itself is queued, before or during the command: the
	 * listing would bring a deleted name back. The queued times and modes
	 * of its entries (a touch after an upload, tar's times) do not stop
	 * it: files_overlay_queued puts them on the listing below. */
	quiet = !wb_conflicts_attr(fs->files->deferred.wb, sb, path);
	/* The directory's own listing (bounded as a child's is: its "." first,
	 * and again at the end when complete) gives its attributes, and the ls
	 * or the lookups in it that usually follow a stat of a directory then
	 * cost nothing: one request for both. */
	sb_adds(&cmd, "c=");
	sh_word(&cmd, path);
	sb_adds(&cmd, "; [ ! -L \"$c\" ] && { find \"$c/.\" -mindepth 0 -maxdepth 1 -printf '" FIND_FMT "' 2>/dev/null && "
		"find \"$c/.\" -maxdepth 0 -printf '" FIND_FMT "'; } | head -n ");
	sb_addf(&cmd, "%d", CHILD_LINES);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), &out);
	sb_reset(&cmd);
	if (rc == 0 && files_parse_find(out, strlen(out), &v, &n) == 0 && n >= 1 && !strcmp(v[0].name, ".") &&
	    S_ISDIR(v[0].st.st_mode)) {
		*st = v[0].st;
		cache_put_attr(fs->cache, sb->id, path, st, gen);
		if (quiet && !wb_conflicts_attr(fs->files->deferred.wb, sb, path) && n >= 2 &&
		    !strcmp(v[n - 1].name, ".") && !has_replacement_char(out)) {
			qsort(v + 1, n - 2, sizeof(*v), entry_cmp);
			/* Not settled: the times and modes queued for the
			 * entries are not in the listing yet. Stored as it is,
			 * it would show them without (tar x's link with its
			 * time set then read back at the time of its creation). */
			files_overlay_queued(fs, sb, path, v + 1, n - 2);
			store_listing(fs, sb, path, v + 1, n - 2, gen);
		}
		goto out;
	}
	files_find_free(v, n);
	v = NULL;
	n = 0;
	free(out);
	out = NULL;
	sb_adds(&cmd, "true");
	files_add_stat_print(&cmd, path);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), &out);
	if (rc == 0 && parse_printed_stat(out, st, NULL) && S_ISDIR(st->st_mode)) {
		cache_put_attr(fs->cache, sb->id, path, st, gen);
	} else {
		rc = info_attr(fs, sb, path, st);   /* gone, or no find: the file API says */
	}
out:
	files_find_free(v, n);
	sb_free(&cmd);
	free(out);
	return rc;
}

/* The attributes of parent/base from a new listing of parent (one request,
 * which also answers for every sibling). */
static int lookup_listing(struct dfs *fs, struct sandbox *sb, const char *parent, const char *base,
			  struct stat *st)
{
	struct find_entry *v = NULL;
	size_t n = 0;
	int rc;

	rc = list_dir_ex(fs, sb, parent, base, &v, &n);
	if (rc == -EACCES) {
		/* a directory we may search but not read */
		struct strbuf p = STRBUF_INIT;

		sb_adds(&p, parent);
		if (strcmp(parent, "/"))
			sb_addc(&p, '/');
		sb_adds(&p, base);
		rc = p.oom ? -ENOMEM : info_attr(fs, sb, sb_str(&p), st);
		sb_free(&p);
		return rc;
	}
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

/* The attributes of path as lstat(2) sees them: the cache, else one request
 * (a listing of the parent, or /files/info where that is exact, or for a
 * directory, the find command). */
int lookup_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	char parent[4096];
	const char *base;
	bool listed = false;

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
	if (listed && !S_ISLNK(st->st_mode) && list_mode_get(fs, sb) == LIST_FIND &&
	    split_path(path, parent, sizeof(parent), &base) &&
	    cache_siblings_unknown(fs->cache, sb->id, path) &&
	    !wb_conflicts(fs->files->deferred.wb, sb, parent) && !files_writeback_waiting(fs, sb, parent))
		/* Other files of the listing lack their attributes too (tar x's
		 * uploads, or attr_timeout passed first): ls -l, grep -r or a
		 * stat of each then costs one listing of the directory, not a
		 * stat per file. Only when nothing waits in the directory: the
		 * listing would first send it (tar x's times, -o writeback's
		 * uploads), which a stat of one file does not. */
		return lookup_listing(fs, sb, parent, base, st);
	if ((listed && !S_ISLNK(st->st_mode)) || list_mode_get(fs, sb) == LIST_API ||
	    !split_path(path, parent, sizeof(parent), &base))
		return info_attr(fs, sb, path, st);
	return lookup_listing(fs, sb, parent, base, st);
}

/* The times of a node whose content or times wait to be sent: its last
 * write's (or the time set), and the access time set while they wait
 * (utimens keeps it apart: a file's atime is not its mtime). Caller holds
 * n->lock. */
static void node_times(const struct open_node *n, struct stat *st)
{
	st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
	if (n->atime_pending)
		st->st_atim = n->atime;
}

void node_stat(struct open_node *n, struct stat *st)
{
	pthread_mutex_lock(&n->lock);
	*st = n->st;
	st->st_nlink = n->unlinked ? 0 : 1;
	if (n->populated) {
		st->st_size = (off_t)stage_size(n->stage);
		st->st_blocks = (blkcnt_t)((stage_size(n->stage) + 511) / 512);
	}
	if (n->dirty || n->mtime_pending || n->is_new)
		node_times(n, st);
	pthread_mutex_unlock(&n->lock);
}

/* Attributes of an open node overlay the sandbox's: a file written here and
 * not yet uploaded has the size and time of its stage. Without have_remote
 * (st holds nothing yet) true only when the node is a new file and st is
 * its attributes; false leaves st untouched. */
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
			node_times(n, st);
		used = true;
	}
	if (have_remote && S_ISREG(st->st_mode) && n->chmod_pending)
		st->st_mode = n->st.st_mode;
	if (have_remote)
		node_note_told(n, st);   /* what the kernel now takes the file for */
	pthread_mutex_unlock(&n->lock);
	return used;
}

static int getattr_of(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st, bool redirected);

int files_getattr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	return getattr_of(fs, sb, path, st, false);
}

/* redirected: the attributes of a hidden name, of the name it was hidden
 * from (as files_open); not a lookup of that name. */
static int getattr_of(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st, bool redirected)
{
	struct open_node *n;
	int rc;

	/* A lookup that had to wait for a rename onto path answers "no such
	 * name", so the kernel drops its cached entry and looks the name up
	 * again once the rename is done. Answering the attributes instead
	 * gives the kernel the node of the file the rename replaced: our
	 * rename has returned, but libfuse drops that node's path only after
	 * that, and a lookup woken here often finds the node first; the open
	 * that follows then fails with ESTALE, and when this lookup is the
	 * kernel's one retry of an open that already met ESTALE, the reader
	 * sees it. No other caller gets here during such a rename: the kernel
	 * holds the directory locked for the whole rename, so only its
	 * revalidation of a cached name looks the name up, and libfuse holds
	 * back every request on the two nodes. But the kernel's getattr of
	 * a replaced file's inode comes here through its hidden name, which
	 * libfuse does not hold back: it is an fstat, which must not fail;
	 * it waits, and answers the file the rename put there. */
	if (hide_window_wait(fs->files, sb, path, caller_tid()) && !redirected)
		return -ENOENT;
	if (is_hidden_name(path)) {
		/* Never in the sandbox: the node, or nothing (libfuse probes
		 * names this way when it picks one). */
		char from[sizeof(((struct node *)0)->path)];

		n = node_find_hidden(fs->files, sb, path);
		if (!n && hidden_name_origin(fs->files, sb, path, from, sizeof(from)))
			return getattr_of(fs, sb, from, st, true);   /* as files_open */
		if (!n)
			return -ENOENT;
		node_stat(n, st);
		node_release(fs, n);
		return 0;
	}
	n = node_find(fs->files, sb, path);
	/* A file created here and not yet uploaded: its node's attributes.
	 * Whether it is still such a file is decided under the node's lock,
	 * in overlay_open_node: a release may hold that lock for its
	 * last-chance upload, which when it fails forgets the node's content
	 * (is_new too, node_forget_content). Checked here, before the lock,
	 * a lookup that waited for that release answered a stat of all
	 * zeros, no file type, which the kernel takes for a corrupt reply:
	 * the open behind the lookup got EIO. The sandbox's answer then. */
	if (n && overlay_open_node(fs, n, st, false)) {
		node_release(fs, n);
		return 0;
	}
	rc = lookup_attr(fs, sb, path, st);
	if (rc == 0)
		ctime_shown(fs, sb, path, st);
	if (n) {
		if (rc == 0 && S_ISREG(st->st_mode))
			overlay_open_node(fs, n, st, true);
		node_release(fs, n);
	}
	return rc;
}

uint64_t files_ino(struct dfs *fs, struct sandbox *sb, const char *path)
{
	/* A hidden name that no open file holds (a rename's pin,
	 * rename_pin.h): the number of the name it was hidden from, which
	 * getattr answers for, and which kept its number. */
	if (is_hidden_name(path)) {
		char from[sizeof(((struct node *)0)->path)];
		struct open_node *n = node_find_hidden(fs->files, sb, path);
		/* Or a file a failed rename gave its name back: that name's. */
		int given_back = n ? node_given_back_name(fs->files, n, from, sizeof(from)) : 0;

		if (n)
			node_release(fs, n);
		if (given_back > 0 ||
		    (!n && hidden_name_origin(fs->files, sb, path, from, sizeof(from)) && !is_hidden_name(from)))
			return ino_of(fs->inos, sb->id, from);
	}
	return ino_of(fs->inos, sb->id, path);
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
	ctime_shown(fs, sb, path, st);
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
