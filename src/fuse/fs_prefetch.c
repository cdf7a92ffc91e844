/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_prefetch.c - small files in few requests. A program that walks a tree
 * and reads its files (grep -r, tar c, rsync, cat *) opens them one after
 * the other, in the order of the directory's listing: one download each is
 * one round trip each. So the first read of a small file whose directory is
 * listed in the cache fetches, in the same request (the provider's bulk
 * download), the small files that follow it in the listing; their reads
 * then take them from the prefetch store (remote/prefetch.h) without a
 * request.
 *
 * Close-to-open stays as it is without prefetching: an open is answered
 * from attributes at most attr_timeout old, and the content read is the
 * sandbox's at the first read. Prefetched content is newer than the listing
 * that chose it, and is used only while that listing still gives the file's
 * size and mtime, no change was made in the sandbox through the mount since
 * the request was sent (the cache generation; a command's end moves it too),
 * its age is within attr_timeout, and its length is the listed size.
 *
 * The first bulk request of a directory is modest (a program that reads one
 * file of a large directory should not pay for all of them); a reader that
 * goes on past it in the same directory gets the full batch.
 * The file the reader asked for is returned directly, when its content is
 * the size the kernel was told; anything else (an error part, another size,
 * a failed request) falls back to the ranged download, which then reports
 * the file's own error or reads its new content, as before.
 */
#include "fs_files_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct pf_pick {
	const char *base;         /* the file being read */
	bool found;
	bool wrap;                /* the second pass: from the start up to base */
	size_t max_files;
	size_t max_bytes;
	size_t bytes;
	size_t n;
	char **names;             /* the picked names, the file being read first */
	struct stat *st;
	bool oom;
};

static int pick_one(void *ctx, const char *name, const struct stat *st)
{
	struct pf_pick *p = ctx;

	bool small = st && S_ISREG(st->st_mode) && st->st_size > 0 && st->st_size <= PF_FILE_MAX;

	if (p->wrap && !strcmp(name, p->base))
		return 1;
	if (!p->found) {
		if (strcmp(name, p->base))
			return 0;
		p->found = true;
		/* The file being read must be names[0]: when the listing no
		 * longer has it as a small file (it grew, it was replaced),
		 * nothing is fetched, or its neighbour would be taken for it. */
		if (!small)
			return 1;
	}
	if (p->n >= p->max_files)
		return 1;
	if (!small)
		return 0;
	if (p->bytes + (size_t)st->st_size > p->max_bytes) {
		/* The file being read always goes; the others within the budget. */
		if (p->n > 0)
			return 1;
	}
	p->names[p->n] = strdup(name);
	if (!p->names[p->n]) {
		p->oom = true;
		return 1;
	}
	p->st[p->n] = *st;
	p->bytes += (size_t)st->st_size;
	p->n++;
	return 0;
}

static bool join_path(char *out, size_t cap, const char *dir, const char *name)
{
	return str_printf(out, cap, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name);
}

/* Whether the last bulk request was for dir, not long ago: then this
 * reader goes on through the directory, and the batch is the full one. */
static bool note_dir(struct open_table *t, const struct sandbox *sb, const char *dir)
{
	bool again;
	double now = now_mono();

	pthread_mutex_lock(&t->lock);
	again = t->pf_sb == sb && t->pf_dir && !strcmp(t->pf_dir, dir) && now - t->pf_at < PF_RECENT_S;
	if (!again) {
		char *d = strdup(dir);

		if (d) {
			free(t->pf_dir);
			t->pf_dir = d;
			t->pf_sb = sb;
		}
	}
	t->pf_at = now;
	pthread_mutex_unlock(&t->lock);
	return again;
}

bool prefetch_first_read(struct dfs *fs, struct open_node *n, const struct stat *st, char **data, size_t *len)
{
	struct open_table *t = fs->files;
	struct sandbox *sb = n->sb;
	char parent[4096], full[4096 + 256 + 2];
	const char *base;
	struct pf_pick pick = { 0 };
	struct sp_bulk_file *files = NULL;
	struct sp_error err = { 0 };
	struct sp_box box;
	bool full_batch, off, got = false;
	uint64_t gen;
	double t0;
	size_t k = 0;
	int rc;

	*data = NULL;
	*len = 0;
	if (!S_ISREG(st->st_mode) || st->st_size <= 0 || st->st_size > PF_FILE_MAX)
		return false;
	gen = cache_generation(fs->cache, sb->id);
	if (prefetch_take(t->prefetch, sb->id, n->path, st->st_size, &st->st_mtim, gen, data, len))
		return true;
	if (!(fs->sp->caps & SP_CAP_BULK_DOWNLOAD) || !split_path(n->path, parent, sizeof(parent), &base))
		return false;
	pthread_mutex_lock(&t->lock);
	off = t->bulk_off || (t->fail_sb == sb && t->fail_dir && !strcmp(t->fail_dir, parent) &&
			      now_mono() < t->fail_retry_at);
	pthread_mutex_unlock(&t->lock);
	if (off)
		return false;

	/* What follows the file in its directory's listing (a fresh one only:
	 * the sizes must be the ones the kernel was given). */
	full_batch = note_dir(t, sb, parent);
	pick.base = base;
	pick.max_files = full_batch ? PF_BATCH_FILES : PF_FIRST_FILES;
	pick.max_bytes = full_batch ? PF_BATCH_BYTES : PF_FIRST_BYTES;
	pick.names = calloc(pick.max_files, sizeof(*pick.names));
	pick.st = calloc(pick.max_files, sizeof(*pick.st));
	if (!pick.names || !pick.st)
		goto out;
	if (!cache_get_dir(fs->cache, sb->id, parent, pick_one, &pick) || pick.oom)
		goto out;
	/* The first batch goes on from the start of the listing when the
	 * files after this one do not fill it: the reader's order is that of
	 * the listing it read, which a new listing of the directory (a lookup
	 * after attr_timeout) may have changed (grep -r after tar x took 4
	 * requests for 30 files). A name picked twice (the listing replaced
	 * between the passes) is reserved once, below. */
	if (!full_batch && pick.found && pick.n >= 1 && pick.n < pick.max_files) {
		pick.wrap = true;
		if (!cache_get_dir(fs->cache, sb->id, parent, pick_one, &pick) || pick.oom)
			goto out;
	}
	if (pick.n < 2 || strcmp(pick.names[0], base))
		goto out;
	if (pick.st[0].st_size != st->st_size || pick.st[0].st_mtim.tv_sec != st->st_mtim.tv_sec ||
	    pick.st[0].st_mtim.tv_nsec != st->st_mtim.tv_nsec)
		goto out;   /* the listing changed since the open: the plain way */
	files = calloc(pick.n, sizeof(*files));
	if (!files)
		goto out;

	/* The others: not open here (an open file's content is its own
	 * business), not held or being fetched already. */
	for (size_t i = 0; i < pick.n; i++) {
		bool open;

		if (!join_path(full, sizeof(full), parent, pick.names[i]))
			continue;
		if (i > 0) {
			pthread_mutex_lock(&t->lock);
			open = node_lookup_locked(t, sb, full) != NULL;
			pthread_mutex_unlock(&t->lock);
			if (open || !prefetch_reserve(t->prefetch, sb->id, full))
				continue;
		}
		files[k].path = strdup(full);
		if (!files[k].path) {
			if (i > 0)
				prefetch_cancel(t->prefetch, sb->id, full);
			if (i == 0)
				goto out;
			continue;
		}
		files[k].max = PF_FILE_MAX;
		pick.st[k] = pick.st[i];   /* k <= i: the listed attributes follow the file */
		k++;
	}
	if (k < 2)
		goto cancel;

	sandbox_box(sb, &box);
	t0 = now_mono();
	log_debug("%s: fetching %zu small files of %s in one request", sb->name, k, parent);
	rc = sp_fs_bulk_download(fs->sp, &box, files, k, &err);
	if (rc < 0) {
		log_info("%s: bulk download in %s failed: %s", sb->name, parent, err.message);
		char *dir = strdup(parent);

		pthread_mutex_lock(&t->lock);
		if (rc == -EOPNOTSUPP || rc == -ENOSYS) {
			t->bulk_off = true;
		} else if (dir) {
			free(t->fail_dir);
			t->fail_dir = dir;
			dir = NULL;
			t->fail_sb = sb;
			t->fail_retry_at = now_mono() + PF_FAIL_PAUSE_S;
		}
		pthread_mutex_unlock(&t->lock);
		free(dir);
		goto cancel;
	}
	/* The file being read: only its whole, expected content. */
	if (files[0].err == 0 && (off_t)files[0].len == st->st_size) {
		*data = files[0].data;
		*len = files[0].len;
		files[0].data = NULL;
		got = true;
	}
	for (size_t i = 1; i < k; i++) {
		if (files[i].err == 0 && (off_t)files[i].len == pick.st[i].st_size) {
			prefetch_fill(t->prefetch, sb->id, files[i].path, files[i].data, files[i].len,
				      pick.st[i].st_size, &pick.st[i].st_mtim, gen, t0 + fs->opt.attr_timeout);
			files[i].data = NULL;
		} else {
			prefetch_cancel(t->prefetch, sb->id, files[i].path);
		}
	}
	goto out;
cancel:
	for (size_t i = 1; i < k; i++)
		prefetch_cancel(t->prefetch, sb->id, files[i].path);
out:
	if (files) {
		sp_bulk_files_clear(files, k);
		for (size_t i = 0; i < k; i++)
			free((char *)files[i].path);
		free(files);
	}
	for (size_t i = 0; pick.names && i < pick.n; i++)
		free(pick.names[i]);
	free(pick.names);
	free(pick.st);
	return got;
}
