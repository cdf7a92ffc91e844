/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_prov_files.c - files of the Vercel provider: fs/read (whole
 * files, a range cut from the stream), fs/write (a tar.gz of one file),
 * fs/mkdir, and the bulk transfers of vercel_bulk.c (one command each way).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vercel_bulk.h"
#include "vercel_prov_int.h"

/* ---- files -------------------------------------------------------------------- */

/* fs/read has no range: the bytes before off are read and dropped, and the
 * transfer stops once len bytes have gone to the caller. */
struct range_sink {
	http_sink_fn sink;
	void *ctx;
	uint64_t skip, left;        /* left: 0 = to the end */
	bool bounded, full;
	int64_t given;
};

static int range_sink_fn(void *p, const void *data, size_t len)
{
	struct range_sink *r = p;
	const char *d = data;
	int rc;

	if (r->skip) {
		size_t s = r->skip < len ? (size_t)r->skip : len;

		r->skip -= s;
		d += s;
		len -= s;
	}
	if (!len)
		return 0;
	if (r->bounded && len > r->left)
		len = (size_t)r->left;
	rc = r->sink(r->ctx, d, len);
	if (rc)
		return rc;
	r->given += (int64_t)len;
	if (r->bounded) {
		r->left -= len;
		if (!r->left) {
			r->full = true;
			return -ECANCELED;
		}
	}
	return 0;
}

int64_t vp_fs_download(void *impl, const struct sp_box *box, const char *path, uint64_t off, uint64_t len,
		       http_sink_fn sink, void *ctx, struct sp_error *err)
{
	struct vprov *v = impl;
	struct range_sink r = { sink, ctx, off, len, len > 0, false, 0 };
	struct vc_error ve = { 0 };
	char sid[SP_ID_SIZE];
	int attempts = 0;
	int64_t got;

	vp_session_of(v, box, sid, sizeof(sid));
	if (!sid[0])
		return vp_no_session(err, box);
	do
		got = vc_fs_read(v->vc, sid, path, range_sink_fn, &r, &ve);
	while (vp_retry_moved(v, box, (int)got, &ve, sid, sizeof(sid), &attempts));
	if (got == -ECANCELED && r.full)
		return r.given;
	if (got < 0)
		return vp_from_vc(err, (int)got, &ve);
	return r.given;
}

int vp_fs_upload_fd(void *impl, const struct sp_box *box, const char *path, int fd, uint64_t len,
		    struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc, attempts = 0;
	char sid[SP_ID_SIZE];

	vp_session_of(v, box, sid, sizeof(sid));
	if (!sid[0])
		return vp_no_session(err, box);
	/* 0644: a new file as an upload makes it (the mount's chmod follows
	 * when the file wants another mode). */
	do
		rc = vc_fs_write_fd(v->vc, sid, path, fd, len, 0644, &ve);
	while (vp_retry_moved(v, box, rc, &ve, sid, sizeof(sid), &attempts));
	return rc < 0 ? vp_from_vc(err, rc, &ve) : 0;
}

int vp_fs_mkdir(void *impl, const struct sp_box *box, const char *path, mode_t mode, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc, attempts = 0;
	char sid[SP_ID_SIZE];

	(void)mode;   /* fs/mkdir takes no mode: the default user's umask applies */
	vp_session_of(v, box, sid, sizeof(sid));
	if (!sid[0])
		return vp_no_session(err, box);
	do
		rc = vc_fs_mkdir(v->vc, sid, path, false, &ve);
	while (vp_retry_moved(v, box, rc, &ve, sid, sizeof(sid), &attempts));
	return rc < 0 ? vp_from_vc(err, rc, &ve) : 0;
}

/* Many files in one command each way (vercel_bulk.c). */
int vp_fs_bulk_download(void *impl, const struct sp_box *box, struct sp_bulk_file *files, size_t n,
			struct sp_error *err)
{
	return vercel_bulk_download(vp_exec, impl, box, files, n, err);
}

int vp_fs_upload_many(void *impl, const struct sp_box *box, struct sp_upload_item *items, size_t n,
		      struct sp_error *err)
{
	return vercel_upload_many(vp_exec, impl, box, items, n, err);
}

/* Every upload goes through a temporary name and a copy (see the top). */
bool vp_upload_path_changed(const char *path)
{
	(void)path;
	return true;
}
