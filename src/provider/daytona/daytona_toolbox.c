/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_toolbox.c - the Daytona toolbox ({toolboxProxyUrl}/{id}/files..., /process):
 * file listing, info, ranged download, upload, mkdir, delete, move, chmod,
 * and running a command.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daytona_int.h"
#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define DOWNLOAD_RESUMES     3       /* re-requests of a download reset mid-body */

/* ---- toolbox: files --------------------------------------------------------- */

/* Builds "{toolbox}/{id}{endpoint}?path=..." and "what" for messages. */
static bool tb_path_url(struct strbuf *url, struct strbuf *what, const struct sp_box *box,
			const char *endpoint, const char *verb, const char *path)
{
	dt_toolbox_url(url, box, endpoint);
	dt_add_query(url, "path", path);
	sb_addf(what, "%s %s", verb, path);
	return !url->oom && !what->oom;
}

int dt_fs_list(struct dt_client *dt, const struct sp_box *box, const char *path,
	       struct sp_fileinfo **out, size_t *n, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct sp_fileinfo *list = NULL;
	const cJSON *it;
	cJSON *root = NULL;
	size_t cnt = 0, cap;
	int rc;

	dt_error_clear(err);
	*out = NULL;
	*n = 0;
	if (!tb_path_url(&url, &what, box, "/files", "list", path)) {
		rc = dt_oom(err);
		goto out;
	}
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .idempotent = true, .max_body = 256u << 20 };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			root = dt_parse_body(&resp, c.what, err);
			if (!root)
				rc = -EIO;
			else if (!cJSON_IsArray(root))
				rc = dt_malformed(err, resp.status, c.what);
		}
		http_response_free(&resp);
	}
	if (rc)
		goto out;
	cap = (size_t)cJSON_GetArraySize(root);
	if (cap) {
		list = calloc(cap, sizeof(*list));
		if (!list) {
			rc = dt_oom(err);
			goto out;
		}
	}
	cJSON_ArrayForEach(it, root) {
		int prc = dt_fileinfo_from_json(it, &list[cnt]);

		if (prc == -ENOMEM) {
			rc = dt_oom(err);
			break;
		}
		if (prc == 0)
			cnt++;
	}
	if (rc) {
		sp_fileinfo_free(list, cnt);
		list = NULL;
		cnt = 0;
	}
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	*out = list;
	*n = cnt;
	return rc;
}

static int fileinfo_parse(const cJSON *root, void *out)
{
	return dt_fileinfo_from_json(root, out);
}

int dt_fs_info(struct dt_client *dt, const struct sp_box *box, const char *path,
	       struct sp_fileinfo *out, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	dt_error_clear(err);
	memset(out, 0, sizeof(*out));
	if (!tb_path_url(&url, &what, box, "/files/info", "stat", path)) {
		rc = dt_oom(err);
		goto out;
	}
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .idempotent = true };

		rc = dt_do_json(dt, &c, fileinfo_parse, out, err);
	}
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* The download sink: skips to the wanted offset when the server sent more
 * than the range (a 200, or a 206 starting earlier), and stops at len. */
struct dl_ctx {
	const struct http_response *resp;   /* filled in while the body arrives */
	http_sink_fn sink;
	void *ctx;
	uint64_t off;               /* the absolute offset wanted first */
	uint64_t remaining;         /* UINT64_MAX: to the end */
	uint64_t skip;
	uint64_t delivered;
	bool started;
	bool done;                  /* got everything wanted; extra bytes cut off */
	int sink_err;
};

static int dl_sink(void *p, const void *data, size_t len)
{
	struct dl_ctx *dc = p;
	const char *d = data;
	size_t n;
	int rc;

	if (!dc->started) {
		dc->started = true;
		dc->skip = 0;
		if (dc->resp->status == 206 && dc->resp->content_range) {
			unsigned long long a;

			if (sscanf(dc->resp->content_range, "bytes %llu-", &a) != 1 || a > dc->off)
				return -EIO;
			dc->skip = dc->off - a;
		} else if (dc->resp->status != 206) {
			dc->skip = dc->off;   /* the server ignored Range */
		}
	}
	if (dc->skip) {
		n = len < dc->skip ? len : (size_t)dc->skip;
		dc->skip -= n;
		d += n;
		len -= n;
	}
	if (len == 0)
		return 0;
	if (dc->remaining == 0) {
		/* More than we asked for: stop the transfer (costs the connection,
		 * saves the rest of the file). */
		dc->done = true;
		return -ECANCELED;
	}
	n = len < dc->remaining ? len : (size_t)dc->remaining;
	rc = dc->sink(dc->ctx, d, n);
	if (rc < 0) {
		dc->sink_err = rc;
		return rc;
	}
	dc->delivered += n;
	if (dc->remaining != UINT64_MAX)
		dc->remaining -= n;
	if (n < len) {
		dc->done = true;
		return -ECANCELED;
	}
	return 0;
}

/* A 206 that stops before both the end asked for and the end of the file
 * (a server may send less than asked, and a proxy may cut a body at a chunk
 * boundary): the rest must be asked for, since a reader takes a short count
 * for the end of the file. */
static bool range_cut_short(const struct http_response *resp, uint64_t got_to, uint64_t want_to)
{
	unsigned long long first, last, size;

	if (resp->status != 206 || !resp->content_range ||
	    sscanf(resp->content_range, "bytes %llu-%llu/%llu", &first, &last, &size) != 3)
		return false;   /* "/ *": the size is unknown; curl checked the length */
	if (want_to > size)
		want_to = size;
	return got_to < want_to;
}

int64_t dt_fs_download(struct dt_client *dt, const struct sp_box *box, const char *path,
		       uint64_t off, uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	uint64_t total = 0;
	int resumes = 0, rc;

	dt_error_clear(err);
	if (!tb_path_url(&url, &what, box, "/files/download", "read", path)) {
		rc = dt_oom(err);
		goto out;
	}
	for (;;) {
		struct http_response resp;
		struct dl_ctx dc = { .resp = &resp, .sink = sink, .ctx = ctx };
		char range[80];
		uint64_t cur_off = off + total;
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .idempotent = true, .streaming = true, .sink = dl_sink, .sink_ctx = &dc };

		dc.off = cur_off;
		dc.remaining = len ? len - total : UINT64_MAX;
		if (len)
			snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, cur_off,
				 cur_off + dc.remaining - 1);
		else
			snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-", cur_off);
		/* The whole file needs no Range (and an empty file then gives a
		 * plain 200 rather than a 416). */
		c.range = cur_off == 0 && len == 0 ? NULL : range;

		rc = dt_do(dt, &c, &resp, err);
		total += dc.delivered;
		if (rc == -ECANCELED && dc.done) {
			rc = 0;
			dt_error_clear(err);
		} else if (rc && dc.sink_err) {
			rc = dc.sink_err;
			sp_error_set(err, rc, resp.status, "%s: %s", sb_str(&what), strerror(-rc));
		} else if (rc && resp.status == 416) {
			/* At or past the end: nothing more to read. */
			rc = 0;
			dt_error_clear(err);
		} else if ((rc == -ECONNRESET || rc == -ETIMEDOUT) && dc.delivered > 0 &&
			   resumes < DOWNLOAD_RESUMES && (len == 0 || total < len)) {
			/* Cut mid-body after progress: ask for the rest. */
			log_debug("%s: %s after %" PRIu64 " bytes, resuming", sb_str(&what), strerror(-rc), total);
			http_response_free(&resp);
			resumes++;
			dt_error_clear(err);
			continue;
		} else if (!rc && !dc.done && range_cut_short(&resp, off + total, len ? off + len : UINT64_MAX)) {
			http_response_free(&resp);
			/* Ends: every round delivers bytes of a file of the size announced. */
			if (dc.delivered > 0)
				continue;
			rc = sp_error_set(err, -EIO, 206, "%s: the server sent %" PRIu64 " bytes, less than it "
					  "announced", sb_str(&what), total);
			break;
		}
		http_response_free(&resp);
		break;
	}
out:
	sb_free(&url);
	sb_free(&what);
	return rc ? rc : (int64_t)total;
}

/* An errno for a bulk-upload error line ("<dest>: create: open ...: permission denied"). */
static int upload_errno(const char *msg)
{
	static const struct { const char *text; int err; } map[] = {
		{ "permission denied", EACCES },
		{ "operation not permitted", EPERM },
		{ "is a directory", EISDIR },
		{ "not a directory", ENOTDIR },
		{ "no space left", ENOSPC },
		{ "quota exceeded", EDQUOT },
		{ "read-only file system", EROFS },
		{ "file name too long", ENAMETOOLONG },
		{ "no such file or directory", ENOENT },
		{ "file too large", EFBIG },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasestr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}

/* The length of the UTF-8 sequence at s (1 to 4), or 0 when s does not
 * start a valid one: what Go's utf8.DecodeRuneInString accepts. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail, uint32_t *cp)
{
	static const uint32_t shortest[5] = { 0, 0, 0x80, 0x800, 0x10000 };   /* overlong below */
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > avail)
		return 0;
	c = s[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < shortest[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Go's unicode.IsSpace, plus U+001C..U+001F, which the local server's
 * Python strip() also trims. */
static bool trimmed_space(uint32_t c)
{
	switch (c) {
	case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
	case 0x1c: case 0x1d: case 0x1e: case 0x1f:
	case 0x85: case 0xa0: case 0x1680:
	case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
		return true;
	default:
		return c >= 0x2000 && c <= 0x200a;
	}
}

bool dt_upload_path_trimmed(const char *path)
{
	const unsigned char *s = (const unsigned char *)path;
	size_t len = strlen(path);
	uint32_t c;

	if (len == 0)
		return false;
	if (utf8_seq_len(s, len, &c) && trimmed_space(c))
		return true;
	/* The last character starts at most 4 bytes from the end. */
	for (size_t back = 1; back <= 4 && back <= len; back++) {
		size_t n = utf8_seq_len(s + len - back, back, &c);

		if (n == back)
			return trimmed_space(c);
		if ((s[len - back] & 0xc0) != 0x80)
			break;   /* a lead byte (or ASCII) that does not end the string */
	}
	return false;
}

/* Whether a path the server echoes is the one sent. Go's JSON encoder
 * replaces each byte that is not valid UTF-8 with U+FFFD, so such a path
 * comes back with U+FFFD where the bad bytes were. */
static bool echoed_path_matches(const char *sent, const char *echoed)
{
	const unsigned char *s = (const unsigned char *)sent;
	const unsigned char *e = (const unsigned char *)echoed;
	size_t slen = strlen(sent), elen = strlen(echoed);
	size_t i = 0, j = 0;

	while (i < slen) {
		uint32_t c;
		size_t n = utf8_seq_len(s + i, slen - i, &c);

		if (n) {
			if (elen - j < n || memcmp(s + i, e + j, n))
				return false;
			i += n;
			j += n;
		} else {
			if (elen - j < 3 || memcmp(e + j, "\xef\xbf\xbd", 3))
				return false;
			i++;
			j += 3;
		}
	}
	return j == elen;
}

int dt_upload_reply_check(const char *body, size_t body_len, const char *path, uint64_t len,
			  char *why, size_t cap)
{
	cJSON *root = body && body_len ? cJSON_ParseWithLength(body, body_len) : NULL;
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
	const cJSON *f0 = cJSON_IsArray(files) ? cJSON_GetArrayItem(files, 0) : NULL;
	const cJSON *fpath = cJSON_GetObjectItemCaseSensitive(f0, "path");
	const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f0, "bytes");
	int rc = 0;

	/* A 2xx without the file in it stored nothing we can see: the daemon
	 * skips a part whose file name its multipart parser rejects. */
	if (!cJSON_IsObject(f0)) {
		snprintf(why, cap, "the server stored no file");
		rc = -EIO;
	} else if (cJSON_IsString(fpath) && !echoed_path_matches(path, fpath->valuestring)) {
		/* It wrote another file (it trims white space from the path). */
		snprintf(why, cap, "the server stored the data as another path");
		rc = -EIO;
	} else if (cJSON_IsNumber(bytes) && (uint64_t)bytes->valuedouble != len) {
		snprintf(why, cap, "the server stored %.0f bytes of %" PRIu64, bytes->valuedouble, len);
		rc = -EIO;
	}
	cJSON_Delete(root);
	return rc;
}

/* The file part's name. The daemon ignores it (the path field names the
 * destination), but Go's multipart parser drops a part whose file name it
 * rejects (one ending in a backslash, say): a constant one always passes. */
#define UPLOAD_PART_FILENAME "file"

static int fs_upload(struct dt_client *dt, const struct sp_box *box, const char *path, int fd,
		     const void *data, uint64_t len, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_part parts[2];
	struct http_response resp;
	cJSON *root = NULL;
	const cJSON *errs;
	int rc;

	dt_error_clear(err);
	/* The .path field must come before its .file (CONTRACT 3.6). */
	memset(parts, 0, sizeof(parts));
	parts[0].name = "files[0].path";
	parts[0].data = path;
	parts[0].data_len = strlen(path);
	parts[0].fd = -1;
	parts[1].name = "files[0].file";
	parts[1].filename = UPLOAD_PART_FILENAME;
	parts[1].fd = fd;
	if (fd >= 0) {
		parts[1].fd_len = len;
	} else {
		parts[1].data = data;
		parts[1].data_len = (size_t)len;
	}
	dt_toolbox_url(&url, box, "/files/bulk-upload");
	sb_addf(&what, "write %s", path);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	{
		/* Every upload replaces the whole file, so a replay is safe. */
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .parts = parts, .n_parts = 2, .idempotent = true, .streaming = true };
		char why[128];

		rc = dt_do(dt, &c, &resp, err);
		if (resp.body && resp.body_len)
			root = cJSON_ParseWithLength(resp.body, resp.body_len);
		errs = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "errors") : NULL;
		if (cJSON_IsArray(errs) && cJSON_GetArraySize(errs) > 0) {
			/* Partial failure: {"errors": ["<dest>: create: ..."], "files": [...]} */
			const cJSON *e0 = cJSON_GetArrayItem(errs, 0);
			const char *msg = cJSON_IsString(e0) ? e0->valuestring : "upload failed";

			rc = sp_error_set(err, upload_errno(msg), resp.status, "%s: %s", c.what, msg);
		} else if (!rc && resp.body_len && !root) {
			rc = dt_malformed(err, resp.status, c.what);
		} else if (!rc && dt_upload_reply_check(resp.body, resp.body_len, path, len, why, sizeof(why))) {
			rc = sp_error_set(err, -EIO, resp.status, "%s: %s", c.what, why);
		}
		http_response_free(&resp);
	}
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_upload_fd(struct dt_client *dt, const struct sp_box *box, const char *path, int fd,
		    uint64_t len, struct sp_error *err)
{
	if (fd < 0)
		return sp_error_set(err, -EBADF, 0, "write %s: no file", path);
	return fs_upload(dt, box, path, fd, NULL, len, err);
}

/* Whether an errors[] line of bulk-upload is about path: "<dest>: what: why". */
static bool error_names_path(const char *line, const char *path)
{
	size_t n = strlen(path);

	return !strncmp(line, path, n) && line[n] == ':' && line[n + 1] == ' ';
}

/* Whether another item of the batch than items[self] would come back as
 * echo: two paths whose invalid bytes both turn into U+FFFD do. */
static bool echo_shared(const struct sp_upload_item *items, size_t n, size_t self, const char *echo)
{
	for (size_t j = 0; j < n; j++)
		if (j != self && echoed_path_matches(items[j].path, echo))
			return true;
	return false;
}

int dt_upload_many_reply(const char *body, size_t body_len, struct sp_upload_item *items, size_t n)
{
	cJSON *root = body && body_len ? cJSON_ParseWithLength(body, body_len) : NULL;
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
	const cJSON *errs = cJSON_GetObjectItemCaseSensitive(root, "errors");
	cJSON *fa = cJSON_IsArray(files) ? files->child : NULL;
	cJSON *ea = cJSON_IsArray(errs) ? errs->child : NULL;

	if (!cJSON_IsObject(root) || (!cJSON_IsArray(files) && !cJSON_IsArray(errs) && !cJSON_IsNull(files))) {
		cJSON_Delete(root);
		return -EIO;
	}
	size_t nf = 0;
	bool *used;

	for (const cJSON *f = fa; f; f = f->next)
		nf++;
	used = calloc(nf ? nf : 1, sizeof(*used));
	if (!used) {
		cJSON_Delete(root);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct sp_upload_item *it = &items[i];
		const cJSON *f, *e;
		bool found = false;
		size_t k = 0;

		it->rc = -EIO;
		snprintf(it->msg, sizeof(it->msg), "the server stored no file");
		for (f = fa; f; f = f->next, k++) {
			const cJSON *fpath = cJSON_GetObjectItemCaseSensitive(f, "path");
			const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes");

			/* Each entry tells of one file: once matched, no other
			 * item takes it for its own. */
			if (used[k] || !cJSON_IsString(fpath) || !echoed_path_matches(it->path, fpath->valuestring))
				continue;
			used[k] = true;
			found = true;
			if (echo_shared(items, n, i, fpath->valuestring)) {
				/* It may be the other's: a file told landed that
				 * had not would be lost. (Callers send such paths
				 * alone; this is the last guard.) */
				snprintf(it->msg, sizeof(it->msg),
					 "the server's reply does not tell which file it stored");
			} else if (cJSON_IsNumber(bytes) && (uint64_t)bytes->valuedouble != it->len) {
				snprintf(it->msg, sizeof(it->msg), "the server stored %.0f bytes of %" PRIu64,
					 bytes->valuedouble, it->len);
			} else {
				it->rc = 0;
				it->msg[0] = '\0';
			}
			break;
		}
		if (found)
			continue;
		for (e = ea; e; e = e->next) {
			if (cJSON_IsString(e) && error_names_path(e->valuestring, it->path)) {
				it->rc = upload_errno(e->valuestring);
				snprintf(it->msg, sizeof(it->msg), "%s", e->valuestring);
				break;
			}
		}
	}
	free(used);
	cJSON_Delete(root);
	return 0;
}

int dt_fs_upload_many(struct dt_client *dt, const struct sp_box *box, struct sp_upload_item *items, size_t n,
		      struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT, names = STRBUF_INIT;
	struct http_part *parts = calloc(n ? 2 * n : 1, sizeof(*parts));
	size_t *name_off = calloc(n ? 2 * n : 1, sizeof(*name_off));
	struct http_response resp;
	int rc;

	dt_error_clear(err);
	if (!parts || !name_off) {
		rc = dt_oom(err);
		goto out;
	}
	/* files[i].path before its files[i].file (CONTRACT 3.6); the file
	 * part's name is a constant (see UPLOAD_PART_FILENAME). */
	for (size_t i = 0; i < n; i++) {
		name_off[2 * i] = names.len;
		sb_addf(&names, "files[%zu].path", i);
		sb_addc(&names, '\0');
		name_off[2 * i + 1] = names.len;
		sb_addf(&names, "files[%zu].file", i);
		sb_addc(&names, '\0');
	}
	dt_toolbox_url(&url, box, "/files/bulk-upload");
	sb_addf(&what, "write %zu files (%s ...)", n, n ? items[0].path : "");
	if (url.oom || what.oom || names.oom) {
		rc = dt_oom(err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		parts[2 * i].name = names.buf + name_off[2 * i];
		parts[2 * i].data = items[i].path;
		parts[2 * i].data_len = strlen(items[i].path);
		parts[2 * i].fd = -1;
		parts[2 * i + 1].name = names.buf + name_off[2 * i + 1];
		parts[2 * i + 1].filename = UPLOAD_PART_FILENAME;
		parts[2 * i + 1].fd = items[i].fd;
		parts[2 * i + 1].fd_len = items[i].len;
	}
	{
		/* Every upload replaces whole files, so a replay is safe. */
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .parts = parts, .n_parts = 2 * n, .idempotent = true, .streaming = true };

		rc = dt_do(dt, &c, &resp, err);
		/* An answer that names the files (a 400 lists what failed and
		 * what landed) says each one's fate; any other failure is the
		 * request's, for all of them. */
		if ((resp.status / 100 == 2 || resp.status / 100 == 4) &&
		    dt_upload_many_reply(resp.body, resp.body_len, items, n) == 0) {
			rc = 0;
			dt_error_clear(err);
		} else if (rc == 0) {
			rc = dt_malformed(err, resp.status, c.what);
		}
		http_response_free(&resp);
	}
out:
	free(parts);
	free(name_off);
	sb_free(&names);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_upload_mem(struct dt_client *dt, const struct sp_box *box, const char *path,
		     const void *data, size_t len, struct sp_error *err)
{
	return fs_upload(dt, box, path, -1, data ? data : "", len, err);
}

/* A toolbox file call with no answer but its status. */
static int fs_simple(struct dt_client *dt, struct strbuf *url, struct strbuf *what, const char *method,
		     bool idempotent, struct sp_error *err, long *status)
{
	struct http_response resp;
	struct call c = { .method = method, .url = sb_str(url), .what = sb_str(what), .toolbox = true,
			  .idempotent = idempotent };
	int rc;

	if (url->oom || what->oom)
		return dt_oom(err);
	rc = dt_do(dt, &c, &resp, err);
	if (status)
		*status = resp.status;
	/* A replayed request can meet its own earlier success. */
	if (rc == -ENOENT && resp.attempts > 1 && strcmp(method, "DELETE") == 0) {
		rc = 0;
		dt_error_clear(err);
	}
	if (!rc && resp.body && strstr(resp.body, "could not be deleted")) {
		/* move: 200 {"message":"file copied successfully but source could not be deleted"} */
		char msg[400] = "source could not be deleted";

		dt_body_message(resp.body, msg, sizeof(msg));
		rc = sp_error_set(err, -EIO, resp.status, "%s: %s", c.what, msg);
	}
	http_response_free(&resp);
	return rc;
}

int dt_fs_mkdir(struct dt_client *dt, const struct sp_box *box, const char *path, mode_t mode,
		struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char m[16];
	int rc;

	dt_error_clear(err);
	tb_path_url(&url, &what, box, "/files/folder", "mkdir", path);
	snprintf(m, sizeof(m), "%04o", (unsigned)(mode & 07777));
	dt_add_query(&url, "mode", m);
	/* MkdirAll: repeating it is harmless. */
	rc = fs_simple(dt, &url, &what, "POST", true, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_delete(struct dt_client *dt, const struct sp_box *box, const char *path, bool recursive,
		 struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	dt_error_clear(err);
	tb_path_url(&url, &what, box, "/files", "delete", path);
	if (recursive)
		dt_add_query(&url, "recursive", "true");
	rc = fs_simple(dt, &url, &what, "DELETE", true, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_move(struct dt_client *dt, const struct sp_box *box, const char *src, const char *dst,
	       struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	dt_error_clear(err);
	dt_toolbox_url(&url, box, "/files/move");
	dt_add_query(&url, "source", src);
	dt_add_query(&url, "destination", dst);
	sb_addf(&what, "move %s to %s", src, dst);
	/* Not idempotent: a replay after success finds no source. */
	rc = fs_simple(dt, &url, &what, "POST", false, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_chmod(struct dt_client *dt, const struct sp_box *box, const char *path, mode_t mode,
		struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char m[16];
	int rc;

	dt_error_clear(err);
	tb_path_url(&url, &what, box, "/files/permissions", "chmod", path);
	snprintf(m, sizeof(m), "%04o", (unsigned)(mode & 07777));
	dt_add_query(&url, "mode", m);
	rc = fs_simple(dt, &url, &what, "POST", true, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- toolbox: process --------------------------------------------------------- */

static int exec_call(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
		     const struct sp_kv *envs, size_t n_envs, long timeout_s, long http_timeout_ms, bool activity,
		     int *exit_code, char **output, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, text = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = cJSON_CreateObject(), *reply = NULL;
	const cJSON *code, *result;
	char *body = NULL, version[32];
	bool ok = root != NULL;
	int rc;

	dt_error_clear(err);
	if (output)
		*output = NULL;
	if (exit_code)
		*exit_code = -1;
	/* An old daemon would run the first word of the script with the rest
	 * as its arguments: never send it a script. */
	if (dt_old_daemon(dt, box->id, version, sizeof(version))) {
		cJSON_Delete(root);
		return sp_error_set(err, -EOPNOTSUPP, 0,
				    "the sandbox's daemon (%s) is older than v0.156.0 and cannot run commands: "
				    "restart the sandbox (stop, then start) to update it", version);
	}
	if (ok)
		ok = dt_execute_text(&text, command) == 0 &&
		     cJSON_AddStringToObject(root, "command", sb_str(&text)) != NULL;
	if (ok && cwd && cwd[0])
		ok = cJSON_AddStringToObject(root, "cwd", cwd) != NULL;
	if (ok && n_envs)
		ok = dt_add_kv_object(root, "envs", envs, n_envs, NULL);
	if (ok && timeout_s > 0)
		ok = cJSON_AddNumberToObject(root, "timeout", (double)timeout_s) != NULL;
	if (ok)
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	sb_free(&text);
	dt_toolbox_url(&url, box, "/process/execute");
	if (!body || url.oom) {
		rc = dt_oom(err);
		goto out;
	}
	{
		/* Never replayed once sent: the command could run twice. */
		struct call c = { .method = "POST", .url = sb_str(&url), .what = "exec", .toolbox = true,
				  .json = body, .max_body = 64u << 20, .activity = activity,
				  .timeout_ms = http_timeout_ms };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			reply = dt_parse_body(&resp, c.what, err);
			code = cJSON_GetObjectItemCaseSensitive(reply, "exitCode");
			result = cJSON_GetObjectItemCaseSensitive(reply, "result");
			if (!reply) {
				rc = -EIO;
			} else if (!cJSON_IsNumber(code)) {
				rc = dt_malformed(err, resp.status, c.what);
			} else {
				if (exit_code)
					*exit_code = code->valueint;
				if (output) {
					*output = strdup(cJSON_IsString(result) ? result->valuestring : "");
					if (!*output)
						rc = dt_oom(err);
				}
			}
		}
		http_response_free(&resp);
	}
out:
	cJSON_Delete(reply);
	free(body);
	sb_free(&url);
	return rc;
}

/* The HTTP timeout of a command with a timeout of its own: 5 s more, as the
 * SDK, so that the server's 408 arrives first. None without one. */
static long exec_http_timeout_ms(long timeout_s)
{
	return timeout_s > 0 ? (timeout_s + 5) * 1000 : 0;
}

int dt_exec(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
	    const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
	    struct sp_error *err)
{
	return exec_call(dt, box, command, cwd, envs, n_envs, timeout_s, exec_http_timeout_ms(timeout_s), false,
			 exit_code, output, err);
}

int dt_exec_activity(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
		     const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
		     struct sp_error *err)
{
	return exec_call(dt, box, command, cwd, envs, n_envs, timeout_s, exec_http_timeout_ms(timeout_s), true,
			 exit_code, output, err);
}

long dt_command_server_timeout_s(long limit_s)
{
	/* A second under the client's limit, so that the 408 usually comes
	 * back before the client gives up; never 0, which means none. */
	return limit_s > 1 ? limit_s - 1 : 1;
}

int dt_exec_within(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
		   long limit_s, int *exit_code, char **output, struct sp_error *err)
{
	return exec_call(dt, box, command, cwd, NULL, 0, dt_command_server_timeout_s(limit_s), limit_s * 1000,
			 false, exit_code, output, err);
}

static int get_dir(struct dt_client *dt, const struct sp_box *box, const char *endpoint, char *out,
		   size_t cap, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct dt_json_str s = { .key = "dir", .out = out, .cap = cap, .too_long = -ENAMETOOLONG };
	int rc;

	dt_error_clear(err);
	if (cap)
		out[0] = '\0';
	dt_toolbox_url(&url, box, endpoint);
	if (url.oom) {
		rc = dt_oom(err);
		goto out;
	}
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = endpoint, .toolbox = true,
				  .idempotent = true };

		rc = dt_do_json(dt, &c, dt_json_str, &s, err);
	}
out:
	sb_free(&url);
	return rc;
}

int dt_home_dir(struct dt_client *dt, const struct sp_box *box, char *out, size_t cap, struct sp_error *err)
{
	return get_dir(dt, box, "/user-home-dir", out, cap, err);
}

int dt_work_dir(struct dt_client *dt, const struct sp_box *box, char *out, size_t cap, struct sp_error *err)
{
	return get_dir(dt, box, "/work-dir", out, cap, err);
}

/* ---- helpers -------------------------------------------------------------------- */

int dt_ping(struct dt_client *dt, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = NULL;
	int rc;

	dt_error_clear(err);
	dt_api_url(&url, dt, "/sandbox?limit=1");
	if (url.oom)
		return dt_oom(err);
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = "list sandboxes",
				  .idempotent = true };

		rc = dt_do(dt, &c, &resp, err);
		/* A wrong URL can answer 200 too (a web page): only a sandbox
		 * list says this is the Daytona API. */
		if (!rc && resp.body && resp.body_len)
			root = cJSON_ParseWithLength(resp.body, resp.body_len);
		if (!rc && !cJSON_IsArray(root) && !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "items")))
			rc = sp_error_set(err, -EPROTO, resp.status,
					  "the answer to GET /sandbox is not a sandbox list (%s)",
					  !resp.body_len ? "empty body" : root ? "JSON of another shape" : "not JSON");
		cJSON_Delete(root);
		http_response_free(&resp);
	}
	sb_free(&url);
	return rc;
}

