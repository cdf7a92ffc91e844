/* SPDX-License-Identifier: Apache-2.0 */
/*
 * multipart.h - a streaming parser of multipart bodies (RFC 2046, as
 * multipart/form-data answers are written by Go's mime/multipart): bytes go
 * in as they arrive, in chunks of any size, and come out as parts (their
 * headers, then their data in pieces). Pure: no I/O, no allocation beyond
 * the parser's own buffer, which is bounded (MP_HEADER_MAX, the delimiter).
 *
 * A part with a Content-Length is read by its length, so that data which
 * happens to hold the delimiter is still data; then the delimiter must
 * follow at once. A part without one ends at the next delimiter. The body is
 * complete only once the closing delimiter ("--BOUNDARY--") was seen:
 * mp_finish says so, and a body cut anywhere before it is an error.
 */
#ifndef DAYTONAFS_MULTIPART_H
#define DAYTONAFS_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_BOUNDARY_MAX 70      /* RFC 2046 */
#define MP_HEADER_MAX (16 * 1024)
#define MP_NAME_MAX 4096

/* What a part's headers say (the fields the callers use). */
struct mp_part {
	char name[256];             /* Content-Disposition name="...", "" when absent */
	char filename[MP_NAME_MAX]; /* filename*= (RFC 5987, decoded) when present, else filename="..." */
	bool has_filename;
	bool filename_ext;          /* filename came from filename* (exact) */
	int64_t content_length;     /* -1 when absent */
	char content_type[128];
};

struct mp_callbacks {
	/* Each returns 0, or a negative errno that stops the parser (and is
	 * returned by mp_feed). */
	int (*part_begin)(void *ctx, const struct mp_part *part);
	int (*part_data)(void *ctx, const void *data, size_t len);
	int (*part_end)(void *ctx);
};

enum mp_state { MP_START, MP_AFTER_DELIM, MP_HEADERS, MP_BODY, MP_DELIM, MP_DONE, MP_ERROR };

struct mp_parser {
	char delim[MP_BOUNDARY_MAX + 5];   /* "\r\n--BOUNDARY" */
	size_t dlen;
	enum mp_state state;
	struct mp_callbacks cb;
	void *ctx;
	char *buf;                  /* bytes not yet consumed (a header block, a possible delimiter) */
	size_t len, cap;
	int64_t remaining;          /* of a part with a Content-Length; -1 otherwise */
	int error;
};

/* The boundary parameter of a Content-Type ("multipart/form-data;
 * boundary=X", quoted or not) into out; false when absent or invalid. */
bool mp_boundary_from_content_type(const char *content_type, char *out, size_t cap);

/* 0, or -EINVAL for a boundary that is empty or too long. */
int mp_init(struct mp_parser *p, const char *boundary, const struct mp_callbacks *cb, void *ctx);
/* Feeds bytes: 0, -EPROTO for a malformed body, -ENOMEM, or a callback's
 * error. After an error every call returns it again. Bytes after the
 * closing delimiter are ignored. */
int mp_feed(struct mp_parser *p, const void *data, size_t len);
/* At the end of the body: 0 when the closing delimiter was seen, else
 * -EPROTO (truncated) or the earlier error. */
int mp_finish(struct mp_parser *p);
void mp_free(struct mp_parser *p);

#endif
