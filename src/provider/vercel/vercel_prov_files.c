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

#include "strbuf.h"
#include "urlenc.h"
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

/*
 * fs/read names its file in JSON, where bytes that are not UTF-8 become
 * U+FFFD: the service finds no such file, and a file that is listed and
 * stats fine read as ENOENT. Such a file is read by commands instead
 * (sh_word rebuilds the name from octal escapes, which are ASCII), a piece
 * of at most CMD_READ_PIECE bytes each, since a command's output is held
 * whole in memory: dd copies the piece into a temporary file, printed in
 * base64 (the output is text) between the lines "R 0" and "R end", so that
 * an output cut short is an error, not a short piece (which is the end of
 * the file: dd's fullblock, else a short read(2) ends its count early). A
 * failure is "R ERRNO" alone.
 */
#define CMD_READ_PIECE (4u << 20)
#define CMD_READ_TIMEOUT_S 120

static void add_read_piece(struct strbuf *cmd, const char *path, uint64_t off, uint64_t want)
{
	sb_adds(cmd, "LC_ALL=C; export LC_ALL\np=");
	sh_word(cmd, path);
	sb_addf(cmd, "\n[ -d \"$p\" ] && { echo 'R 21'; exit 0; }\n"
		"t=$(mktemp /tmp/.daytonafs/out/read.XXXXXXXX 2>/dev/null || mktemp) || { echo 'R 5'; exit 0; }\n"
		"if e=$(dd if=\"$p\" of=\"$t\" iflag=skip_bytes,count_bytes,fullblock skip=%llu count=%llu bs=65536 "
		"status=none 2>&1); then\n"
		"  echo 'R 0'; base64 \"$t\" && echo 'R end'\n"
		"else\n"
		"  case $e in *'No such file'*) c=2;; *'Permission denied'*) c=13;; *'Is a directory'*) c=21;; "
		"*'Not a directory'*) c=20;; *'Too many levels'*) c=40;; *) c=5;; esac; echo \"R $c\"\n"
		"fi\n"
		"rm -f \"$t\"\n", (unsigned long long)off, (unsigned long long)want);
}

/* The piece's bytes from the command's output into out: 0, or -errno. */
static int parse_read_piece(const char *text, struct strbuf *out)
{
	const char *body, *end;
	long code;
	char *stop;

	if (!text || strncmp(text, "R ", 2))
		return -EIO;
	code = strtol(text + 2, &stop, 10);
	if (stop == text + 2 || *stop != '\n' || code < 0 || code > 4095)
		return -EIO;
	if (code)
		return (int)-code;
	body = stop + 1;
	if (!strncmp(body, "R end\n", 6))
		end = body;
	else if (!(end = strstr(body, "\nR end\n")))
		return -EIO;   /* cut short */
	else
		end++;
	return base64_decode(out, body, (size_t)(end - body)) < 0 ? -EIO : 0;
}

static int64_t download_by_command(struct vprov *v, const struct sp_box *box, const char *path, uint64_t off,
				   uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err)
{
	int64_t given = 0;

	for (;;) {
		uint64_t want = len && len - (uint64_t)given < CMD_READ_PIECE ? len - (uint64_t)given : CMD_READ_PIECE;
		struct strbuf cmd = STRBUF_INIT, data = STRBUF_INIT;
		char *out = NULL;
		int code = -1, rc;
		size_t got;

		add_read_piece(&cmd, path, off + (uint64_t)given, want);
		rc = cmd.oom ? sp_error_set(err, -ENOMEM, 0, "out of memory")
			     : vp_exec(v, box, sb_str(&cmd), "/", NULL, 0, CMD_READ_TIMEOUT_S, &code, &out, err);
		sb_free(&cmd);
		if (rc == 0) {
			rc = code == 0 ? parse_read_piece(out, &data) : -EIO;
			if (rc == 0 && data.oom)
				rc = -ENOMEM;
			else if (rc == 0 && data.len > want)
				rc = -EIO;
			if (rc < 0)
				sp_error_set(err, rc, 0, "read %s: %s", path, strerror(-rc));
		}
		free(out);
		got = data.len;
		if (rc == 0 && got) {
			rc = sink(ctx, data.buf, got);
			if (rc < 0)
				sp_error_set(err, rc, 0, "read %s: %s", path, strerror(-rc));
		}
		sb_free(&data);
		if (rc < 0)
			return rc;
		given += (int64_t)got;
		if (got < want || (len && (uint64_t)given == len))
			return given;   /* the end of the file, or of the range */
	}
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

	if (!str_is_utf8(path))
		return download_by_command(v, box, path, off, len, sink, ctx, err);
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
