/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_files.c - the sandbox's own files under SANDBOX/fs/, proxied to the
 * toolbox file API.
 *
 * Reads are ranged downloads through a per-handle read-ahead window that
 * grows while the reader is sequential. Writes go to a stage (stage.h), a
 * local file shared by every handle open on the same path, so that two
 * descriptors see each other's writes and a read after a write sees it before
 * it is uploaded; the stage is uploaded whole on flush, fsync and release.
 * Metadata comes from the cache (cache.h), filled by listings and stat calls.
 * Where the file API has no call (utimens, chown, symlinks, rename over an
 * existing file, statfs), one command runs in the sandbox, every path quoted.
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

#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define RA_MIN (128 * 1024)
#define RA_MAX (8 * 1024 * 1024)

/* One path of one sandbox with open handles. */
struct open_node {
	struct open_node *next;
	struct sandbox *sb;
	char *path;
	int refs;
	pthread_mutex_t lock;
	struct stage *stage;      /* NULL until the file is written, truncated or created */
	bool populated;           /* the stage holds the whole current content */
	bool dirty;               /* the stage differs from the sandbox's file */
	bool unlinked;            /* removed while open: never uploaded again */
	bool is_new;              /* created here and not uploaded yet */
	mode_t mode;              /* S_IFREG | permissions, for new files */
	bool chmod_pending;       /* apply mode after the first upload */
	bool mtime_pending;       /* apply mtime after the next upload */
	struct timespec mtime;    /* last write, or the pending utimens value */
	int upload_error;         /* last failed upload's errno, reported by flush/fsync */
};

struct open_table {
	pthread_mutex_t lock;
	struct open_node *head;
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
};

struct open_table *open_table_new(void)
{
	struct open_table *t = calloc(1, sizeof(*t));

	if (t)
		pthread_mutex_init(&t->lock, NULL);
	return t;
}

void open_table_free(struct open_table *t)
{
	struct open_node *n, *next;

	for (n = t->head; n; n = next) {
		next = n->next;
		if (n->stage)
			stage_free(n->stage);
		free(n->path);
		pthread_mutex_destroy(&n->lock);
		free(n);
	}
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

static void node_free(struct open_node *n)
{
	if (n->stage)
		stage_free(n->stage);
	free(n->path);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/* ---- helpers ------------------------------------------------------------- */

static void stat_from_info(struct dfs *fs, const struct dt_fileinfo *fi, struct stat *st)
{
	(void)fs;
	memset(st, 0, sizeof(*st));
	st->st_mode = fi->mode;
	if (!(st->st_mode & S_IFMT))
		st->st_mode |= fi->is_dir ? S_IFDIR : S_IFREG;
	st->st_nlink = S_ISDIR(st->st_mode) ? 2 : 1;
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
		{ "Is a directory", EISDIR }, { "Not a directory", ENOTDIR },
		{ "File exists", EEXIST }, { "Read-only file system", EROFS },
		{ "No space left on device", ENOSPC }, { "Invalid argument", EINVAL },
		{ "File name too long", ENAMETOOLONG }, { "Too many levels of symbolic links", ELOOP },
		{ "Invalid cross-device link", EXDEV }, { "invalid user", EINVAL }, { "invalid group", EINVAL },
	};

	for (size_t i = 0; msg && i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}

/* Runs a short command in the sandbox for what the file API cannot do.
 * out (may be NULL) receives its output on success. */
static int run_fs_command(struct dfs *fs, struct sandbox *sb, const char *script, char **out)
{
	struct dt_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct dt_box box;
	char *output = NULL;
	int code = 0, rc;

	sb_adds(&cmd, "LC_ALL=C; export LC_ALL; ");
	sb_adds(&cmd, script);
	if (cmd.oom) {
		sb_free(&cmd);
		return -ENOMEM;
	}
	sandbox_box(sb, &box);
	rc = dt_exec(fs->dt, &box, sb_str(&cmd), "/", NULL, 0, 60, &code, &output, &err);
	sb_free(&cmd);
	if (rc < 0) {
		if (rc == -EHOSTDOWN)
			sandbox_refresh(fs, sb, &err);
		sandbox_set_error(sb, "%s", err.message);
		free(output);
		return rc;
	}
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

/* ---- attributes and listings --------------------------------------------- */

static int remote_getattr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct dt_error err = { 0 };
	struct dt_fileinfo fi;
	struct dt_box box;
	uint64_t gen;
	int rc;

	switch (cache_get_attr(fs->cache, sb->id, path, st)) {
	case CACHE_HIT:
		return 0;
	case CACHE_NEGATIVE:
		return -ENOENT;
	case CACHE_MISS:
		break;
	}
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
	stat_from_info(fs, &fi, st);
	free(fi.name);
	cache_put_attr(fs->cache, sb->id, path, st, gen);
	return 0;
}

/* Attributes of an open node overlay the sandbox's: a file written here and
 * not yet uploaded has the size and time of its stage. */
static bool overlay_open_node(struct dfs *fs, struct open_node *n, struct stat *st, bool have_remote)
{
	bool used = false;

	pthread_mutex_lock(&n->lock);
	if (n->is_new && !have_remote) {
		memset(st, 0, sizeof(*st));
		st->st_mode = n->mode;
		st->st_nlink = 1;
		st->st_uid = fs->uid;
		st->st_gid = fs->gid;
		st->st_blksize = 128 * 1024;
		used = true;
	}
	if (n->populated && (have_remote || used)) {
		st->st_size = (off_t)stage_size(n->stage);
		st->st_blocks = (blkcnt_t)((stage_size(n->stage) + 511) / 512);
		if (n->dirty || n->mtime_pending)
			st->st_mtim = st->st_ctim = n->mtime;
		used = true;
	}
	pthread_mutex_unlock(&n->lock);
	return used;
}

int files_getattr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st)
{
	struct open_node *n = node_find(fs->files, sb, path);
	int rc;

	if (n && n->is_new) {
		overlay_open_node(fs, n, st, false);
		if (node_put(fs->files, n))
			node_free(n);
		return 0;
	}
	rc = remote_getattr(fs, sb, path, st);
	if (n) {
		if (rc == 0)
			overlay_open_node(fs, n, st, true);
		if (node_put(fs->files, n))
			node_free(n);
	}
	return rc;
}

int files_fgetattr(struct dfs *fs, struct fuse_file_info *fi, struct stat *st)
{
	struct open_node *n = ((struct fhandle *)(uintptr_t)fi->fh)->node;

	pthread_mutex_lock(&n->lock);
	memset(st, 0, sizeof(*st));
	st->st_mode = n->mode ? n->mode : S_IFREG | 0644;
	st->st_nlink = n->unlinked ? 0 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 128 * 1024;
	if (n->populated) {
		st->st_size = (off_t)stage_size(n->stage);
		st->st_blocks = (blkcnt_t)((stage_size(n->stage) + 511) / 512);
	}
	st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
	pthread_mutex_unlock(&n->lock);
	return 0;
}

struct fill_ctx {
	void *buf;
	fuse_fill_dir_t filler;
	struct strbuf seen;       /* names, NUL-separated, for the new-file overlay */
};

static int fill_one(void *ctx, const char *name, const struct stat *st)
{
	struct fill_ctx *fc = ctx;

	sb_add(&fc->seen, name, strlen(name) + 1);
	return fc->filler(fc->buf, name, st, 0, FUSE_FILL_DIR_PLUS) ? 1 : 0;
}

static bool seen_name(const struct strbuf *seen, const char *name)
{
	for (size_t off = 0; off < seen->len; off += strlen(seen->buf + off) + 1)
		if (!strcmp(seen->buf + off, name))
			return true;
	return false;
}

int files_readdir(struct dfs *fs, struct sandbox *sb, const char *path, void *buf, fuse_fill_dir_t filler)
{
	struct fill_ctx fc = { buf, filler, STRBUF_INIT };
	struct dt_error err = { 0 };
	struct dt_fileinfo *list = NULL;
	struct cache_dirent *ents = NULL;
	struct dt_box box;
	size_t n = 0, plen = strlen(path);
	uint64_t gen;
	int rc = 0;

	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	if (!cache_get_dir(fs->cache, sb->id, path, fill_one, &fc)) {
		sb_reset(&fc.seen);
		gen = cache_generation(fs->cache, sb->id);
		sandbox_box(sb, &box);
		rc = dt_fs_list(fs->dt, &box, path, &list, &n, &err);
		if (rc == -EINVAL)
			rc = -ENOTDIR;
		if (rc < 0) {
			toolbox_failed(fs, sb, rc, &err, "list", path);
			goto out;
		}
		ents = calloc(n ? n : 1, sizeof(*ents));
		if (!ents) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			ents[i].name = list[i].name;
			stat_from_info(fs, &list[i], &ents[i].st);
		}
		/* One listing fills the attributes of every entry: ls -l costs one request. */
		cache_put_dir(fs->cache, sb->id, path, ents, n, gen);
		for (size_t i = 0; i < n; i++)
			if (fill_one(&fc, ents[i].name, &ents[i].st))
				break;
	}
	/* Files created here and not uploaded yet are listed too. */
	pthread_mutex_lock(&fs->files->lock);
	for (struct open_node *o = fs->files->head; o; o = o->next) {
		const char *base;

		if (o->sb != sb || !o->is_new || o->unlinked)
			continue;
		if (strncmp(o->path, path, plen) || (plen > 1 && o->path[plen] != '/'))
			continue;
		base = o->path + plen + (plen > 1 ? 1 : 0);
		if (*base == '/')
			base++;
		if (!*base || strchr(base, '/') || seen_name(&fc.seen, base))
			continue;
		filler(buf, base, NULL, 0, 0);
	}
	pthread_mutex_unlock(&fs->files->lock);
out:
	free(ents);
	dt_fileinfo_free(list, n);
	sb_free(&fc.seen);
	return rc;
}

/* ---- content ------------------------------------------------------------- */

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

/* Uploads a dirty stage, then applies what had to wait for the file to exist
 * (mode, times). Caller holds n->lock. */
static int upload_node(struct dfs *fs, struct open_node *n)
{
	struct dt_error err = { 0 };
	struct dt_box box;
	int rc;

	if (!n->dirty || n->unlinked)
		return 0;
	sandbox_box(n->sb, &box);
	rc = dt_fs_upload_fd(fs->dt, &box, n->path, stage_fd(n->stage), stage_size(n->stage), &err);
	cache_invalidate(fs->cache, n->sb->id, n->path);
	if (rc < 0) {
		n->upload_error = rc;
		toolbox_failed(fs, n->sb, rc, &err, "upload", n->path);
		log_error("%s: upload of %s failed: %s (the data is kept staged)", n->sb->name, n->path,
			  err.message);
		return rc;
	}
	n->dirty = false;
	n->is_new = false;
	n->upload_error = 0;
	if (n->chmod_pending) {
		/* New files are created 0644 by the toolbox; others keep their mode. */
		n->chmod_pending = false;
		if ((n->mode & 07777) != 0644)
			rc = dt_fs_chmod(fs->dt, &box, n->path, n->mode & 07777, &err);
		if (rc < 0)
			log_warn("%s: chmod %o %s after upload: %s", n->sb->name, n->mode & 07777, n->path,
				 err.message);
	}
	if (n->mtime_pending) {
		struct strbuf cmd = STRBUF_INIT;

		n->mtime_pending = false;
		sb_addf(&cmd, "touch -m -d @%lld.%09ld -- ", (long long)n->mtime.tv_sec, n->mtime.tv_nsec);
		sh_quote(&cmd, n->path);
		rc = cmd.oom ? -ENOMEM : run_fs_command(fs, n->sb, sb_str(&cmd), NULL);
		sb_free(&cmd);
		if (rc < 0)
			log_warn("%s: setting the time of %s after upload failed", n->sb->name, n->path);
	}
	return 0;
}

int files_open(struct dfs *fs, struct sandbox *sb, const char *path, struct fuse_file_info *fi, bool create,
	       mode_t mode)
{
	int acc = fi->flags & O_ACCMODE;
	struct fhandle *h;
	struct open_node *n;
	int rc = 0;

	n = node_get(fs->files, sb, path);
	if (!n)
		return -ENOMEM;
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
	if (create || ((fi->flags & O_TRUNC) && acc != O_RDONLY)) {
		/* The content is known (empty) without downloading it. */
		if (!n->stage)
			rc = stage_new(fs->stage, &n->stage);
		else
			rc = stage_truncate(n->stage, 0);
		if (rc == 0) {
			n->populated = true;
			n->dirty = true;
			touch_now(n);
			if (create) {
				n->is_new = true;
				n->mode = S_IFREG | (mode & 07777);
				n->chmod_pending = true;
				cache_invalidate(fs->cache, sb->id, path);
			}
		}
	}
	pthread_mutex_unlock(&n->lock);
	if (rc < 0)
		goto fail;
	/* Opened for writing: the page cache would hide other writers' changes
	 * from us anyway; readers keep it while mtime and size hold (auto_cache). */
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
fail:
	if (h) {
		pthread_mutex_destroy(&h->lock);
		free(h);
	}
	if (node_put(fs->files, n))
		node_free(n);
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

int files_read(struct dfs *fs, struct fuse_file_info *fi, char *buf, size_t size, off_t off)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;
	uint64_t uoff = (uint64_t)off;
	ssize_t got;
	int rc;

	pthread_mutex_lock(&n->lock);
	if (n->populated) {
		got = stage_pread(n->stage, buf, size, uoff);
		pthread_mutex_unlock(&n->lock);
		return (int)got;
	}
	pthread_mutex_unlock(&n->lock);

	pthread_mutex_lock(&h->lock);
	if (uoff >= h->ra_off && uoff + size <= h->ra_off + h->ra_len) {
		memcpy(buf, h->ra_buf + (uoff - h->ra_off), size);
		rc = (int)size;
		goto done;
	}
	if (uoff == h->next_off && uoff != 0) {
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
	put = stage_pwrite(n->stage, buf, size, uoff);
	if (put < 0) {
		rc = (int)put;
		goto out;
	}
	n->dirty = true;
	touch_now(n);
	rc = (int)put;
out:
	pthread_mutex_unlock(&n->lock);
	/* Read-ahead of this handle is stale now; reads go to the stage anyway. */
	pthread_mutex_lock(&h->lock);
	h->ra_len = 0;
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

	if (node_put(fs->files, n)) {
		/* The last handle: one more try, and a stage that still cannot be
		 * uploaded is preserved, never dropped. */
		if (n->dirty && !n->unlinked && upload_node(fs, n) < 0) {
			char label[4600], where[4096];

			snprintf(label, sizeof(label), "%s:%s", n->sb->name, n->path);
			if (stage_preserve(n->stage, label, where, sizeof(where)) == 0) {
				log_error("%s: %s could not be uploaded; its content is saved in %s",
					  n->sb->name, n->path, where);
				sandbox_set_error(n->sb, "%s could not be uploaded; its content is saved in %s",
						  n->path, where);
			}
		}
		node_free(n);
	}
	free(h->ra_buf);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return 0;
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
		pthread_mutex_lock(&n->lock);
	} else {
		/* truncate(2) by path: through an open node when there is one, else
		 * a temporary one, uploaded at once. */
		n = node_get(fs->files, sb, path);
		if (!n)
			return -ENOMEM;
		pthread_mutex_lock(&n->lock);
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
	}
	if (rc == 0)
		rc = stage_truncate(n->stage, (uint64_t)size);
	if (rc == 0) {
		n->dirty = true;
		touch_now(n);
		if (by_path)
			rc = upload_node(fs, n);
	}
	pthread_mutex_unlock(&n->lock);
	if (by_path && node_put(fs->files, n))
		node_free(n);
	return rc;
}

/* ---- namespace ----------------------------------------------------------- */

int files_mkdir(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct dt_error err = { 0 };
	struct dt_box box;
	struct stat st;
	int rc;

	/* The toolbox's mkdir is mkdir -p: it succeeds on an existing directory
	 * and creates missing parents. POSIX mkdir must fail on an existing path. */
	rc = remote_getattr(fs, sb, path, &st);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	sandbox_box(sb, &box);
	rc = dt_fs_mkdir(fs->dt, &box, path, mode & 0777, &err);
	cache_invalidate(fs->cache, sb->id, path);
	if (rc == -EINVAL)
		rc = -EEXIST;   /* a file is in the way */
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "mkdir", path);
	return 0;
}

int files_unlink(struct dfs *fs, struct sandbox *sb, const char *path)
{
	struct dt_error err = { 0 };
	struct open_node *n = node_find(fs->files, sb, path);
	struct dt_box box;
	bool only_local = false;
	int rc = 0;

	if (n) {
		/* Open descriptors keep reading what the file held. */
		pthread_mutex_lock(&n->lock);
		only_local = n->is_new;
		if (!only_local)
			rc = ensure_populated(fs, n);
		if (rc == 0) {
			n->unlinked = true;
			n->dirty = false;
		}
		pthread_mutex_unlock(&n->lock);
		if (node_put(fs->files, n))
			node_free(n);
		if (rc < 0 && rc != -ENOENT)
			return rc;
	}
	sandbox_box(sb, &box);
	rc = dt_fs_delete(fs->dt, &box, path, false, &err);
	cache_invalidate(fs->cache, sb->id, path);
	if (rc == -ENOENT && only_local)
		rc = 0;
	if (rc == -EINVAL)
		rc = -EISDIR;
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "unlink", path);
	cache_put_negative(fs->cache, sb->id, path, cache_generation(fs->cache, sb->id));
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
	struct dt_fileinfo *list = NULL;
	struct dt_box box;
	size_t n = 0;
	int rc;

	/* The toolbox deletes a directory only recursively, so emptiness is
	 * checked first: rmdir never removes content. */
	sandbox_box(sb, &box);
	if (!cache_get_dir(fs->cache, sb->id, path, count_entries, &n)) {
		rc = dt_fs_list(fs->dt, &box, path, &list, &n, &err);
		dt_fileinfo_free(list, n);
		if (rc == -EINVAL)
			rc = -ENOTDIR;
		if (rc < 0)
			return toolbox_failed(fs, sb, rc, &err, "rmdir", path);
	}
	if (n > 0)
		return -ENOTEMPTY;
	rc = dt_fs_delete(fs->dt, &box, path, true, &err);
	cache_invalidate_tree(fs->cache, sb->id, path);
	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "rmdir", path);
	return 0;
}

/* Uploads every dirty node at or below path (before it is renamed). */
static int flush_under(struct dfs *fs, struct sandbox *sb, const char *path)
{
	size_t plen = strlen(path);
	int rc = 0;

	for (;;) {
		struct open_node *found = NULL;

		pthread_mutex_lock(&fs->files->lock);
		for (struct open_node *o = fs->files->head; o; o = o->next) {
			if (o->sb == sb && o->dirty && !o->unlinked && !strncmp(o->path, path, plen) &&
			    (o->path[plen] == '\0' || o->path[plen] == '/')) {
				found = o;
				o->refs++;
				break;
			}
		}
		pthread_mutex_unlock(&fs->files->lock);
		if (!found)
			return rc;
		pthread_mutex_lock(&found->lock);
		rc = upload_node(fs, found);
		if (rc < 0)
			found->dirty = false;   /* not retried here; its own close reports it */
		pthread_mutex_unlock(&found->lock);
		if (node_put(fs->files, found))
			node_free(found);
		if (rc < 0)
			return rc;
	}
}

/* Open nodes follow their file to its new name. */
static void rekey_nodes(struct dfs *fs, struct sandbox *sb, const char *from, const char *to)
{
	size_t flen = strlen(from);

	pthread_mutex_lock(&fs->files->lock);
	for (struct open_node *o = fs->files->head; o; o = o->next) {
		struct strbuf np = STRBUF_INIT;

		if (o->sb != sb)
			continue;
		if (!strcmp(o->path, to) && !o->unlinked) {
			/* The file that was replaced: its readers keep its old content. */
			o->unlinked = true;
			continue;
		}
		if (strncmp(o->path, from, flen) || (o->path[flen] && o->path[flen] != '/'))
			continue;
		sb_adds(&np, to);
		sb_adds(&np, o->path + flen);
		if (!np.oom) {
			free(o->path);
			o->path = sb_detach(&np);
		}
		sb_free(&np);
	}
	pthread_mutex_unlock(&fs->files->lock);
}

int files_rename(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags)
{
	struct dt_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct dt_box box;
	int rc;

	if (flags & RENAME_EXCHANGE)
		return -EINVAL;   /* SEMANTICS.md: not supported */
	if (!strcmp(from, to))
		return 0;
	rc = flush_under(fs, sb, from);
	if (rc < 0)
		return rc;
	sandbox_box(sb, &box);
	rc = dt_fs_move(fs->dt, &box, from, to, &err);
	if (rc == -EEXIST && !(flags & RENAME_NOREPLACE)) {
		/* The toolbox's move never replaces; rename(2) must, atomically,
		 * so a command does it with mv -T (rename(2) underneath). */
		sb_adds(&cmd, "mv -f -T -- ");
		sh_quote(&cmd, from);
		sb_addc(&cmd, ' ');
		sh_quote(&cmd, to);
		rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
		sb_free(&cmd);
	} else if (rc < 0 && rc != -EEXIST) {
		toolbox_failed(fs, sb, rc, &err, "rename", from);
	}
	cache_invalidate_tree(fs->cache, sb->id, from);
	cache_invalidate_tree(fs->cache, sb->id, to);
	if (rc == 0)
		rekey_nodes(fs, sb, from, to);
	return rc;
}

int files_chmod(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode)
{
	struct dt_error err = { 0 };
	struct open_node *n = node_find(fs->files, sb, path);
	struct dt_box box;
	int rc;

	if (n) {
		bool pending = false;

		pthread_mutex_lock(&n->lock);
		if (n->is_new) {
			n->mode = S_IFREG | (mode & 07777);
			n->chmod_pending = true;
			pending = true;
		}
		pthread_mutex_unlock(&n->lock);
		if (node_put(fs->files, n))
			node_free(n);
		if (pending)
			return 0;
	}
	sandbox_box(sb, &box);
	if (mode & 07000) {
		/* The file API applies only the 0777 bits. */
		struct strbuf cmd = STRBUF_INIT;

		sb_addf(&cmd, "chmod %04o -- ", (unsigned)(mode & 07777));
		sh_quote(&cmd, path);
		rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
		sb_free(&cmd);
	} else {
		rc = dt_fs_chmod(fs->dt, &box, path, mode & 0777, &err);
		if (rc == -EINVAL)
			rc = -EPERM;   /* a chmod failure is a bare 400 */
		if (rc < 0)
			toolbox_failed(fs, sb, rc, &err, "chmod", path);
	}
	cache_invalidate(fs->cache, sb->id, path);
	return rc;
}

int files_chown(struct dfs *fs, struct sandbox *sb, const char *path, uid_t uid, gid_t gid)
{
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	if (uid == (uid_t)-1 && gid == (gid_t)-1)
		return 0;
	rc = flush_under(fs, sb, path);
	if (rc < 0)
		return rc;
	sb_adds(&cmd, "chown -h ");
	if (uid != (uid_t)-1)
		sb_addf(&cmd, "%u", (unsigned)uid);
	if (gid != (gid_t)-1)
		sb_addf(&cmd, ":%u", (unsigned)gid);
	sb_adds(&cmd, " -- ");
	sh_quote(&cmd, path);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
	sb_free(&cmd);
	cache_invalidate(fs->cache, sb->id, path);
	return rc;
}

static void add_touch_time(struct strbuf *cmd, const char *flag, const struct timespec *ts)
{
	if (ts->tv_nsec == UTIME_NOW)
		sb_addf(cmd, "touch -c %s -- ", flag);
	else
		sb_addf(cmd, "touch -c %s -d @%lld.%09ld -- ", flag, (long long)ts->tv_sec, ts->tv_nsec);
}

int files_utimens(struct dfs *fs, struct sandbox *sb, const char *path, const struct timespec tv[2])
{
	struct open_node *n = node_find(fs->files, sb, path);
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	if (n) {
		bool pending = false;

		pthread_mutex_lock(&n->lock);
		if (n->dirty && tv[1].tv_nsec != UTIME_OMIT) {
			/* Applied after the upload, which would otherwise reset it. */
			if (tv[1].tv_nsec == UTIME_NOW)
				touch_now(n);
			else
				n->mtime = tv[1];
			n->mtime_pending = true;
			pending = true;
		}
		pthread_mutex_unlock(&n->lock);
		if (node_put(fs->files, n))
			node_free(n);
		if (pending)
			return 0;
	}
	if (tv[1].tv_nsec != UTIME_OMIT) {
		add_touch_time(&cmd, "-m", &tv[1]);
		sh_quote(&cmd, path);
	}
	if (tv[0].tv_nsec != UTIME_OMIT) {
		if (cmd.len)
			sb_adds(&cmd, " && ");
		add_touch_time(&cmd, "-a", &tv[0]);
		sh_quote(&cmd, path);
	}
	if (!cmd.len)
		return 0;
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
	sb_free(&cmd);
	cache_invalidate(fs->cache, sb->id, path);
	return rc;
}

int files_symlink(struct dfs *fs, struct sandbox *sb, const char *target, const char *path)
{
	struct strbuf cmd = STRBUF_INIT;
	int rc;

	sb_adds(&cmd, "ln -s -- ");
	sh_quote(&cmd, target);
	sb_addc(&cmd, ' ');
	sh_quote(&cmd, path);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), NULL);
	sb_free(&cmd);
	cache_invalidate(fs->cache, sb->id, path);
	return rc;
}

int files_readlink(struct dfs *fs, struct sandbox *sb, const char *path, char *buf, size_t size)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	size_t len;
	int rc;

	sb_adds(&cmd, "readlink -- ");
	sh_quote(&cmd, path);
	rc = cmd.oom ? -ENOMEM : run_fs_command(fs, sb, sb_str(&cmd), &out);
	sb_free(&cmd);
	if (rc < 0)
		return rc == -EIO ? -EINVAL : rc;
	len = out ? strlen(out) : 0;
	while (len && out[len - 1] == '\n')
		out[--len] = '\0';
	rc = str_copy(buf, size, out ? out : "") ? 0 : 0;   /* readlink truncates silently */
	free(out);
	return rc;
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
	rc = run_fs_command(fs, sb, "stat -f -c '%S %b %f %a %c %d %l' /", &out);
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

void files_flush_all(struct dfs *fs)
{
	pthread_mutex_lock(&fs->files->lock);
	for (struct open_node *o = fs->files->head; o; o = o->next) {
		pthread_mutex_lock(&o->lock);
		if (o->dirty && !o->unlinked && upload_node(fs, o) < 0) {
			char label[4600], where[4096];

			snprintf(label, sizeof(label), "%s:%s", o->sb->name, o->path);
			if (stage_preserve(o->stage, label, where, sizeof(where)) == 0)
				log_error("%s: %s could not be uploaded at unmount; saved in %s", o->sb->name,
					  o->path, where);
		}
		pthread_mutex_unlock(&o->lock);
	}
	pthread_mutex_unlock(&fs->files->lock);
}

void files_invalidate_sandbox(struct dfs *fs, const char *sandbox_id)
{
	cache_invalidate_sandbox(fs->cache, sandbox_id);
}
