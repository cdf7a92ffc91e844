/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_fs.c - the file API of a Vercel session: fs/read (the whole file,
 * streamed to a sink), fs/write (one file as a tar.gz made while it is sent,
 * tar_gz.c), fs/mkdir (see vercel.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tar_gz.h"
#include "vercel_int.h"

/* ---- read ------------------------------------------------------------------- */

struct read_ctx {
	http_sink_fn sink;
	void *ctx;
	const struct http_response *resp;
	int64_t bytes;
	bool checked;
};

/* Only application/octet-stream is file content: some 2xx answers have
 * carried a JSON error body (SDK CHANGELOG 2.0.0), which must never reach
 * the reader as the file. http_do fills resp's headers before it hands the
 * first body byte to the sink, so the type is known here. */
static bool is_octet_stream(const struct http_response *resp)
{
	return resp->content_type && strstr(resp->content_type, "application/octet-stream");
}

static int read_sink(void *p, const void *data, size_t len)
{
	struct read_ctx *rc = p;

	if (!rc->checked) {
		if (!is_octet_stream(rc->resp))
			return -EPROTO;
		rc->checked = true;
	}
	rc->bytes += (int64_t)len;
	return rc->sink(rc->ctx, data, len);
}

/* {"path": path[, "recursive": b]} */
static char *path_body(const char *path, int recursive)
{
	cJSON *root = cJSON_CreateObject();
	char *s = NULL;

	if (root && cJSON_AddStringToObject(root, "path", path) &&
	    (recursive < 0 || cJSON_AddBoolToObject(root, "recursive", recursive != 0)))
		s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

int64_t vc_fs_read(struct vc_client *vc, const char *sid, const char *path, http_sink_fn sink, void *ctx,
		   struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct read_ctx rc = { .sink = sink, .ctx = ctx, .resp = &resp };
	char *body = path_body(path, -1);
	int64_t ret;

	memset(&resp, 0, sizeof(resp));
	if (vc_check_id(sid, "session id", err)) {
		free(body);
		return -EINVAL;
	}
	vc_session_url(vc, &url, sid, "/fs/read");
	sb_addf(&what, "read %s", path);
	if (!body || url.oom || what.oom) {
		ret = vc_oom(err);
	} else {
		/* A read changes nothing: idempotent. The stall timeout bounds it. */
		struct vc_call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				     .sink = read_sink, .sink_ctx = &rc, .idempotent = true, .streaming = true };

		ret = vc_do(vc, &c, &resp, err);
		if (ret == -EPROTO || (ret == 0 && !is_octet_stream(&resp)))
			ret = vc_error_set(err, -EIO, resp.status, "%s: the answer is not file content (%s)",
					   c.what, resp.content_type ? resp.content_type : "no content type");
		else if (ret == 0)
			ret = rc.bytes;
	}
	http_response_free(&resp);
	free(body);
	sb_free(&url);
	sb_free(&what);
	return ret;
}

/* ---- write ------------------------------------------------------------------ */

int vc_fs_entry_name(const char *path, char *out, size_t cap)
{
	struct strbuf sb = STRBUF_INIT;
	const char *p = path;
	bool ok;

	if (!path || path[0] != '/')
		return -EINVAL;
	while (*p) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			sb_free(&sb);
			return -EINVAL;     /* never guess what ".." was meant to reach */
		}
		if (!(n == 1 && p[0] == '.')) {
			if (sb.len)
				sb_addc(&sb, '/');
			sb_add(&sb, p, n);
		}
		p += n;
	}
	if (sb.oom) {
		sb_free(&sb);
		return -ENOMEM;
	}
	if (sb.len == 0) {
		sb_free(&sb);
		return -EINVAL;             /* "/" is not a file */
	}
	ok = str_copy(out, cap, sb_str(&sb));
	sb_free(&sb);
	return ok ? 0 : -ENAMETOOLONG;
}

struct src_fd {
	int fd;
};

static ssize_t fd_source(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct src_fd *s = ctx;
	ssize_t n;

	do {
		n = pread(s->fd, buf, len, (off_t)off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

struct src_mem {
	const unsigned char *data;
	size_t len;
};

static ssize_t mem_source(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct src_mem *s = ctx;

	if (off >= s->len)
		return 0;
	if (len > s->len - off)
		len = (size_t)(s->len - off);
	memcpy(buf, s->data + off, len);
	return (ssize_t)len;
}

static ssize_t tgz_body(void *ctx, uint64_t off, void *buf, size_t len)
{
	return tgz_read(ctx, off, buf, len);
}

static int fs_write(struct vc_client *vc, const char *sid, const char *path, tgz_source_fn src, void *src_ctx,
		    uint64_t len, mode_t mode, struct vc_error *err)
{
	static const char *const headers[] = { "x-cwd: /", NULL };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	char name[4096];
	struct tgz t;
	int rc;

	if (vc_check_id(sid, "session id", err))
		return -EINVAL;
	rc = vc_fs_entry_name(path, name, sizeof(name));
	if (rc)
		return vc_error_set(err, rc, 0, "write %s: %s", path,
				    rc == -EINVAL ? "not an absolute file path without \"..\"" : strerror(-rc));
	rc = tgz_init(&t, name, mode & 07777, len, time(NULL), src, src_ctx);
	if (rc)
		return vc_error_set(err, rc, 0, "write %s: %s", path, strerror(-rc));
	memset(&resp, 0, sizeof(resp));
	vc_session_url(vc, &url, sid, "/fs/write");
	sb_addf(&what, "write %s", path);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
	} else {
		/* Entry names are relative to x-cwd: "/" makes them the absolute
		 * path, whatever the session's working directory. A whole-file
		 * replace with the same bytes: idempotent, and a retry makes the
		 * archive again from offset 0. */
		struct vc_call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what),
				     .headers = headers, .content_type = "application/gzip",
				     .body_fn = tgz_body, .body_fn_ctx = &t, .body_fn_len = tgz_length(&t),
				     .idempotent = true };

		rc = vc_do(vc, &c, &resp, err);
	}
	http_response_free(&resp);
	tgz_free(&t);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_fs_write_fd(struct vc_client *vc, const char *sid, const char *path, int fd, uint64_t len,
		   mode_t mode, struct vc_error *err)
{
	struct src_fd s = { fd };

	return fs_write(vc, sid, path, fd_source, &s, len, mode, err);
}

int vc_fs_write_mem(struct vc_client *vc, const char *sid, const char *path, const void *data, size_t len,
		    mode_t mode, struct vc_error *err)
{
	struct src_mem s = { data, len };

	return fs_write(vc, sid, path, mem_source, &s, len, mode, err);
}

/* ---- mkdir ------------------------------------------------------------------ */

int vc_fs_mkdir(struct vc_client *vc, const char *sid, const char *path, bool recursive, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	char *body = path_body(path, recursive ? 1 : 0);
	int rc;

	memset(&resp, 0, sizeof(resp));
	if (vc_check_id(sid, "session id", err)) {
		free(body);
		return -EINVAL;
	}
	vc_session_url(vc, &url, sid, "/fs/mkdir");
	sb_addf(&what, "mkdir %s", path);
	if (!body || url.oom || what.oom) {
		rc = vc_oom(err);
	} else {
		/* A recursive mkdir replayed succeeds again; a plain one would
		 * fail with "exists" for a directory it made. */
		struct vc_call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				     .idempotent = recursive };

		rc = vc_do(vc, &c, &resp, err);
	}
	http_response_free(&resp);
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}
