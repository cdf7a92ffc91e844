/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_read.c - reading the sandbox's files: ranged downloads through a
 * read-ahead window, and one streamed download for a sequential reader.
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
	struct sp_error err = { 0 };
	struct buf_sink sink = { buf, size, 0 };
	struct sp_box box;
	int64_t got;

	sandbox_box(n->sb, &box);
	got = rfs_download(fs->sp, &box, n->path, off, size, sink_to_buf, &sink, &err);
	if (got < 0)
		return toolbox_failed(fs, n->sb, (int)got, &err, "read", n->path);
	return (int)sink.len;
}

/*
 * Random reads where the provider has no ranged download (Vercel: each is
 * a command, tail | head | base64, or a whole read cut short). A program
 * that reads here and there in a file pays one request per read; one
 * download of the whole file costs about as much as RANDOM_BYTES_PER_READ
 * of transfer per command saved. So, rent or buy: from a handle's second
 * random read, once its random reads times RANDOM_BYTES_PER_READ reach the
 * file's size (at most
 * RANDOM_WHOLE_MAX), the file comes whole in one request into a staging
 * file of the handle's own (on disk, not in memory), and the handle's
 * later reads are served from it: the file as it was then, as a handle
 * whose first read took the whole file sees it (h->whole).
 */
#define RANDOM_BYTES_PER_READ (8u << 20)
#define RANDOM_WHOLE_MAX (64u << 20)

struct copy_sink {
	struct stage *stage;
};

static int copy_sink_fn(void *ctx, const void *data, size_t len)
{
	struct copy_sink *c = ctx;

	return stage_append(c->stage, data, len);
}

/* Whether this random read should take the whole file first (caller holds h->lock). */
static bool copy_wanted(struct dfs *fs, struct fhandle *h, const struct stat *st, bool known)
{
	if (sp_has(fs->sp, SP_CAP_RANGED_READ) || !known || !S_ISREG(st->st_mode) ||
	    (uint64_t)st->st_size > RANDOM_WHOLE_MAX || h->copies_dropped)
		return false;
	h->random_reads++;
	/* one far read (a header, a tail) stays one command */
	return h->random_reads >= 2 && (uint64_t)st->st_size <= (uint64_t)h->random_reads * RANDOM_BYTES_PER_READ;
}

/* Downloads the whole file into h->copy. 0, or a negative errno (no copy). */
static int copy_whole(struct dfs *fs, struct fhandle *h)
{
	struct open_node *n = h->node;
	struct sp_error err = { 0 };
	struct copy_sink sink;
	struct sp_box box;
	int64_t got;
	int rc = stage_new(fs->stage, &sink.stage);

	if (rc < 0)
		return rc;
	sandbox_box(n->sb, &box);
	got = sp_fs_download(fs->sp, &box, n->path, 0, 0, copy_sink_fn, &sink, &err);
	if (got < 0) {
		stage_free(sink.stage);
		return toolbox_failed(fs, n->sb, (int)got, &err, "read", n->path);
	}
	h->copy = sink.stage;
	return 0;
}

/*
 * Streaming read-ahead. Once a reader is sequential, one download from its
 * offset to the end of the file runs in a thread and fills a ring buffer;
 * reads take from the ring while the download goes on, so the network and
 * FUSE work at the same time and a whole file costs one request whatever the
 * latency. When the ring is full the thread stops reading the socket (TCP
 * back-pressure). Data up to keep behind the furthest read stays, for the
 * kernel's out-of-order readahead: its READs are up to 1 MiB each, a
 * readahead window's worth at once (fs.c, dfs_tune_kernel), and the next
 * window's are sent before the last of this one's have arrived. A read outside
 * what the stream can serve stops it; the caller then falls back to ranged
 * downloads.
 *
 * So keep and the room ahead grow with the mount's readahead (-o
 * read_ahead_kb): four windows each, at least STREAM_KEEP_MIN (measured with
 * 4 MiB windows: READs came up to 9.4 MiB past the furthest one served, the
 * late ones behind it; 14.5 MiB under ASan on a loaded machine). With a fixed
 * 4 MiB, read_ahead_kb=4096 had READs arrive too far behind or ahead: the
 * stream stopped and restarted over and over (14 to 67 requests for one cold
 * cat of 64 MiB, and peak RSS over 64 MiB). The ring is at most
 * STREAM_CAP_MAX: past 4 MiB of readahead, late READs may again fall back to
 * ranged downloads.
 */
#define STREAM_KEEP_MIN (4u << 20)
#define STREAM_CAP_MAX  (32u << 20)

/* The ring's size and what it keeps behind the furthest read, for a mount
 * whose readahead is ra_kb KiB (0: the kernel's, 128 KiB). */
static void stream_sizes(long ra_kb, size_t *cap, size_t *keep)
{
	uint64_t windows = 4 * (uint64_t)(ra_kb > 0 ? ra_kb : 128) * 1024;
	uint64_t k = windows > STREAM_KEEP_MIN ? windows : STREAM_KEEP_MIN;

	if (2 * k > STREAM_CAP_MAX)
		k = STREAM_CAP_MAX / 2;
	*keep = (size_t)k;
	*cap = (size_t)(2 * k);   /* keep behind, as much again ahead */
}

struct rstream {
	struct dfs *fs;
	struct sp_box box;
	char *path;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	char *buf;
	size_t cap, keep;         /* stream_sizes */
	uint64_t start, end;      /* file offsets held: [start, end) at buf[off % cap] */
	uint64_t furthest;        /* readers are done with what is before furthest - keep */
	uint64_t want_end;        /* the least end a waiting reader needs; UINT64_MAX: none */
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
			uint64_t keep_from = rs->furthest > rs->keep ? rs->furthest - rs->keep : 0;

			if (keep_from > rs->start)
				rs->start = keep_from < rs->end ? keep_from : rs->end;
			room = rs->cap - (size_t)(rs->end - rs->start);
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
		pos = (size_t)(end % rs->cap);
		first = n < rs->cap - pos ? n : rs->cap - pos;
		memcpy(rs->buf + pos, d, first);
		memcpy(rs->buf, d + first, n - first);
		pthread_mutex_lock(&rs->lock);
		rs->end += n;
		/* curl hands over 16 KiB at a time: waking the reader for each
		 * piece of a 1 MiB read cost more in context switches than the
		 * copies (perf: a quarter of the daemon's time). */
		if (rs->end >= rs->want_end) {
			rs->want_end = UINT64_MAX;   /* the woken re-register if need be */
			pthread_cond_broadcast(&rs->cv);
		}
		pthread_mutex_unlock(&rs->lock);
		d += n;
		len -= n;
	}
	return 0;
}

static void *rs_main(void *arg)
{
	struct rstream *rs = arg;
	struct sp_error err = { 0 };
	int64_t got;

	got = sp_fs_download(rs->fs->sp, &rs->box, rs->path, rs->start, 0, rs_sink, rs, &err);
	pthread_mutex_lock(&rs->lock);
	rs->done = true;
	rs->err = got < 0 ? (int)got : 0;
	pthread_cond_broadcast(&rs->cv);
	pthread_mutex_unlock(&rs->lock);
	return NULL;
}

void rs_stop(struct rstream *rs)
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
	stream_sizes(fs->opt.read_ahead_kb, &rs->cap, &rs->keep);
	rs->buf = malloc(rs->cap);
	rs->path = strdup(n->path);
	if (!rs->buf || !rs->path)
		goto fail;
	rs->fs = fs;
	sandbox_box(n->sb, &rs->box);
	rs->start = rs->end = rs->furthest = off;
	rs->want_end = UINT64_MAX;
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
	if (off < rs->start || off > rs->end + rs->cap - rs->keep) {
		rc = -EAGAIN;
		goto out;
	}
	if (off > rs->furthest) {
		rs->furthest = off;   /* lets the producer make room for this read */
		pthread_cond_broadcast(&rs->cv);
	}
	while (rs->end < off + size && !rs->done) {
		if (off + size < rs->want_end)
			rs->want_end = off + size;
		pthread_cond_wait(&rs->cv, &rs->lock);
	}
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
	pos = (size_t)(off % rs->cap);
	first = n < rs->cap - pos ? n : rs->cap - pos;
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

/*
 * The first read of a handle, at offset 0 (caller holds h->lock). A small
 * file comes whole, from the prefetch store or fetched with the small files
 * that follow it (fs_prefetch.c). A larger file read in large pieces (cat,
 * cp: the kernel's first request is already its read-ahead size), or in any
 * pieces where downloads have no range, streams from here, so that the
 * whole read is one request and no ranged download goes before the stream.
 * -EAGAIN: neither; read as usual.
 */
static int first_read(struct dfs *fs, struct fhandle *h, const struct stat *st, bool known, char *buf,
		      size_t size)
{
	struct open_node *n = h->node;
	char *data;
	size_t len;
	int rc;

	if (known && prefetch_first_read(fs, n, st, &data, &len)) {
		free(h->ra_buf);
		h->ra_buf = data;
		h->ra_cap = h->ra_len = len;
		h->ra_off = 0;
		h->whole = true;
		h->whole_len = len;
		rc = (int)(size < len ? size : len);
		memcpy(buf, data, (size_t)rc);
		return rc;
	}
	/* Without ranged downloads (Vercel) any download from 0 is the whole
	 * file's transfer, cut: a smaller first read (dd bs=4k, a program's
	 * small buffer) streams too, so that the reads after it cost no second
	 * request. Up to RA_MAX: past it a small first read (a header) stays one
	 * cut download, and a reader that goes on starts the stream then. */
	if (known && S_ISREG(st->st_mode) && (uint64_t)st->st_size > size &&
	    (size >= RA_MIN || (!sp_has(fs->sp, SP_CAP_RANGED_READ) && (uint64_t)st->st_size <= RA_MAX))) {
		h->rs = rs_start(fs, n, 0);
		if (h->rs) {
			rc = rs_read(h->rs, buf, size, 0);
			if (rc != -EAGAIN)
				return rc;
			rs_stop(h->rs);
			h->rs = NULL;
		}
	}
	return -EAGAIN;
}

/*
 * A handle keeps copies of the file as it read it: the whole file (h->whole,
 * h->copy), a stream to its end (h->rs), a window (h->ra_buf). Once the
 * kernel has been given another size or mtime for the file (it changed in
 * the sandbox, and a stat or the attribute timeout showed it: told_gen
 * moved), they are stale: they go, and the read goes to the sandbox. Kept,
 * a read past a copy's end answered short, which the kernel takes for the
 * end of the file: it shrank its size to the copy's for every reader (tail
 * -f of a log a command appends to stopped after its first lines); and a
 * file rewritten larger read as the old bytes followed by the new. A copy
 * that ends before the size the kernel was given all the same (the file
 * changed between the getattr and the download) is no end of file either
 * (snapshot_is_stale). An unchanged file costs no request more.
 */
static bool snapshot_is_stale(off_t size_told, uint64_t off, int got, size_t size)
{
	return got >= 0 && (size_t)got < size && size_told >= 0 && (uint64_t)size_told > off + (uint64_t)got;
}

static void snapshot_drop(struct fhandle *h)
{
	if (h->whole || h->copy || h->rs || h->ra_len)
		h->copies_dropped = true;   /* a file that changes: no whole copy again (copy_wanted) */
	h->whole = false;
	h->ra_len = 0;
	if (h->copy) {
		stage_free(h->copy);
		h->copy = NULL;
	}
	if (h->rs) {
		rs_stop(h->rs);
		h->rs = NULL;
	}
}

int files_read(struct dfs *fs, struct fuse_file_info *fi, char *buf, size_t size, off_t off)
{
	struct fhandle *h = (struct fhandle *)(uintptr_t)fi->fh;
	struct open_node *n = h->node;
	uint64_t uoff = (uint64_t)off;
	struct stat st;
	off_t size_told;
	unsigned told_gen;
	bool known;
	ssize_t got;
	int rc;

	pthread_mutex_lock(&n->lock);
	if (n->populated || n->unlinked) {
		/* An unlinked node was populated when it was unlinked; reading
		 * its path now would read another file. One that was not (its
		 * content was gone when it was replaced) has nothing to give:
		 * an error, not an end of file where fstat shows data. */
		got = n->populated ? stage_pread(n->stage, buf, size, uoff) : -ESTALE;
		pthread_mutex_unlock(&n->lock);
		return (int)got;
	}
	st = n->st;
	/* Attributes from the cache at open (not made up): what the kernel
	 * was told, which prefetched content must match. */
	known = n->base.kind == JOURNAL_BASE_FILE;
	size_told = n->size_told;
	if (known && size_told >= 0) {
		/* ... as the kernel was last given them (node_note_told) */
		st.st_size = size_told;
		st.st_mtim = n->mtime_told;
	}
	told_gen = n->told_gen;
	pthread_mutex_unlock(&n->lock);

	pthread_mutex_lock(&h->lock);
	if (h->told_gen != told_gen) {
		snapshot_drop(h);
		h->told_gen = told_gen;
	}
	if (!h->first_read_done && uoff == 0 && h->next_off == 0 && !h->rs) {
		h->first_read_done = true;
		rc = first_read(fs, h, &st, known, buf, size);
		if (rc != -EAGAIN)
			goto snapshot_read;
	}
	if (h->whole && h->ra_len != h->whole_len)
		h->whole = false;   /* a write here dropped it (files_write) */
	if (h->whole) {
		/* The whole file, as it was at the first read. */
		if (uoff >= h->ra_len) {
			rc = 0;
		} else {
			rc = (int)(size < h->ra_len - uoff ? size : h->ra_len - uoff);
			memcpy(buf, h->ra_buf + uoff, (size_t)rc);
		}
		goto snapshot_read;
	}
	if (h->copy) {
		got = stage_pread(h->copy, buf, size, uoff);
		rc = (int)got;
		goto snapshot_read;
	}
	if (h->rs) {
		rc = rs_read(h->rs, buf, size, uoff);
		if (rc != -EAGAIN)
			goto snapshot_read;
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
		if (copy_wanted(fs, h, &st, known) && copy_whole(fs, h) == 0) {
			got = stage_pread(h->copy, buf, size, uoff);
			rc = (int)got;
			goto snapshot_read;
		}
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
	goto done;
snapshot_read:
	if (snapshot_is_stale(size_told, uoff, rc, size)) {
		snapshot_drop(h);
		rc = download_into(fs, n, uoff, buf, size);
	}
done:
	if (rc > 0)
		h->next_off = uoff + (uint64_t)rc;
	pthread_mutex_unlock(&h->lock);
	return rc;
}
