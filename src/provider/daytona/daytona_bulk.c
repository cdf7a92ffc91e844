/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_bulk.c - POST /files/bulk-download: many whole files in one
 * request (contract 3.4). The answer is multipart/form-data, one part per
 * path in request order: a "file" part with the bytes and a Content-Length,
 * or an "error" part with a JSON body ({"statusCode":404,...}). A failure
 * mid-stream cuts the body before its closing delimiter, which the parser
 * (multipart.h) reports, so that a short file is never taken for a whole one.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daytona_int.h"
#include "multipart.h"
#include "strbuf.h"

#define ERROR_BODY_MAX 1024

struct bulk_ctx {
	const struct http_response *resp;
	struct sp_bulk_file *files;
	size_t n;
	size_t *sent;               /* files[sent[k]] is the k-th path of the request */
	size_t n_sent;
	struct mp_parser mp;
	bool started;
	size_t part;                /* parts begun */
	struct sp_bulk_file *cur;
	bool cur_error;             /* an "error" part */
	bool cur_skip;              /* a file over its max: its bytes are dropped */
	size_t cur_cap;
	char ebody[ERROR_BODY_MAX + 1];
	size_t elen;
};

/* Printable ASCII without the characters a quoted parameter escapes. */
static bool plain_ascii(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\' || *s == '%')
			return false;
	return true;
}

static int errno_of_status(long code)
{
	switch (code) {
	case 404: return -ENOENT;
	case 403: return -EACCES;
	case 400: return -EINVAL;   /* an empty path, a directory */
	default: return -EIO;
	}
}

static int on_part_begin(void *p, const struct mp_part *part)
{
	struct bulk_ctx *bc = p;
	struct sp_bulk_file *f;

	if (bc->part >= bc->n_sent)
		return -EPROTO;   /* more parts than paths */
	f = &bc->files[bc->sent[bc->part++]];
	/* Parts come in request order; the exact name says which path (the
	 * plain filename= is Latin-1 only, so only filename* is compared). */
	if (part->filename_ext && strcmp(part->filename, f->path))
		return -EPROTO;
	/* Without filename*, the plain filename= is still exact for a path
	 * of printable ASCII without quotes (nothing to sanitise). */
	if (!part->filename_ext && part->has_filename && plain_ascii(f->path) && strcmp(part->filename, f->path))
		return -EPROTO;
	bc->cur = f;
	bc->cur_error = !strcmp(part->name, "error");
	bc->cur_skip = false;
	bc->elen = 0;
	if (!bc->cur_error && strcmp(part->name, "file"))
		return -EPROTO;
	if (!bc->cur_error && part->content_length >= 0) {
		if ((uint64_t)part->content_length > f->max) {
			bc->cur_skip = true;
		} else if (part->content_length > 0) {
			f->data = malloc((size_t)part->content_length);
			if (!f->data)
				return -ENOMEM;
			bc->cur_cap = (size_t)part->content_length;
		}
	}
	return 0;
}

static int on_part_data(void *p, const void *data, size_t len)
{
	struct bulk_ctx *bc = p;
	struct sp_bulk_file *f = bc->cur;

	if (bc->cur_error) {
		size_t n = ERROR_BODY_MAX - bc->elen < len ? ERROR_BODY_MAX - bc->elen : len;

		memcpy(bc->ebody + bc->elen, data, n);
		bc->elen += n;
		return 0;
	}
	if (bc->cur_skip)
		return 0;
	if (len > f->max - f->len) {
		/* no Content-Length, and more than max */
		free(f->data);
		f->data = NULL;
		f->len = 0;
		bc->cur_skip = true;
		return 0;
	}
	if (f->len + len > bc->cur_cap) {
		size_t cap = bc->cur_cap ? bc->cur_cap * 2 : 16384;
		char *nd;

		while (cap < f->len + len)
			cap *= 2;
		if (cap > f->max)
			cap = f->max;
		nd = realloc(f->data, cap);
		if (!nd)
			return -ENOMEM;
		f->data = nd;
		bc->cur_cap = cap;
	}
	memcpy(f->data + f->len, data, len);
	f->len += len;
	return 0;
}

static int on_part_end(void *p)
{
	struct bulk_ctx *bc = p;
	struct sp_bulk_file *f = bc->cur;

	if (bc->cur_error) {
		cJSON *j;
		const cJSON *code;

		bc->ebody[bc->elen] = '\0';
		j = cJSON_Parse(bc->ebody);
		code = cJSON_GetObjectItemCaseSensitive(j, "statusCode");
		f->err = errno_of_status(cJSON_IsNumber(code) ? (long)code->valuedouble : 500);
		cJSON_Delete(j);
	} else if (bc->cur_skip) {
		f->err = -EFBIG;
	} else {
		f->err = 0;
	}
	bc->cur = NULL;
	return 0;
}

static int bulk_sink(void *p, const void *data, size_t len)
{
	struct bulk_ctx *bc = p;

	if (!bc->started) {
		static const struct mp_callbacks cb = { on_part_begin, on_part_data, on_part_end };
		char boundary[MP_BOUNDARY_MAX + 1];

		if (!mp_boundary_from_content_type(bc->resp->content_type, boundary, sizeof(boundary)) ||
		    mp_init(&bc->mp, boundary, &cb, bc) < 0)
			return -EPROTO;
		bc->started = true;
	}
	return mp_feed(&bc->mp, data, len);
}

int dt_fs_bulk_download(struct dt_client *dt, const struct sp_box *box, struct sp_bulk_file *files, size_t n,
			struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct http_response resp;
	struct bulk_ctx bc = { .files = files, .n = n, .resp = &resp };
	cJSON *root = cJSON_CreateObject(), *arr = NULL;
	char *body = NULL;
	bool ok = root != NULL;
	int rc;

	dt_error_clear(err);
	memset(&resp, 0, sizeof(resp));
	bc.sent = calloc(n ? n : 1, sizeof(*bc.sent));
	if (ok)
		ok = (arr = cJSON_AddArrayToObject(root, "paths")) != NULL && bc.sent;
	for (size_t i = 0; ok && i < n; i++) {
		files[i].err = -EIO;   /* until its part says otherwise */
		files[i].data = NULL;
		files[i].len = 0;
		if (!files[i].path[0] || !utf8_valid(files[i].path, strlen(files[i].path))) {
			files[i].err = -EINVAL;
			continue;
		}
		ok = cJSON_AddItemToArray(arr, cJSON_CreateString(files[i].path));
		bc.sent[bc.n_sent++] = i;
	}
	if (ok && bc.n_sent)
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (ok && !bc.n_sent) {
		rc = 0;   /* nothing that could be asked for */
		goto out;
	}
	dt_toolbox_url(&url, box, "/files/bulk-download");
	if (!body || url.oom || !ok) {
		rc = dt_oom(err);
		goto out;
	}
	{
		/* Reads only: safe to send again (http.c does so only before the
		 * sink got a byte). */
		struct call c = { .method = "POST", .url = sb_str(&url), .what = "bulk download", .toolbox = true,
				  .json = body, .idempotent = true, .streaming = true, .sink = bulk_sink,
				  .sink_ctx = &bc };

		rc = dt_do(dt, &c, &resp, err);
	}
	if (rc == 0 && (!bc.started || mp_finish(&bc.mp) < 0 || bc.part != bc.n_sent))
		rc = sp_error_set(err, -EIO, resp.status, "bulk download: the answer was cut short or malformed");
	else if (rc < 0 && (err->http_status == 404 || err->http_status == 405 || err->http_status == 501))
		rc = sp_error_set(err, -EOPNOTSUPP, err->http_status, "bulk download: not offered by this sandbox "
				  "(HTTP %ld)", err->http_status);
	http_response_free(&resp);
out:
	if (bc.started)
		mp_free(&bc.mp);
	if (rc < 0)
		sp_bulk_files_clear(files, n);
	free(bc.sent);
	free(body);
	sb_free(&url);
	return rc;
}
