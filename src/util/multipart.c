/* SPDX-License-Identifier: Apache-2.0 */
/*
 * multipart.c - a streaming multipart parser (see multipart.h).
 */
#include "multipart.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool bchar_ok(unsigned char c)
{
	/* RFC 2046 bchars, minus the space (never at the end, and never used) */
	return isalnum(c) || strchr("'()+_,-./:=?", c);
}

/* The value of parameter name in a header value ("a; k=v; k2=\"q\""), unquoted,
 * into out: true when present. Escapes (\x) in quoted strings are undone. */
static bool header_param(const char *value, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);
	const char *p = strchr(value, ';');

	while (p) {
		const char *k;
		size_t o = 0;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		k = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		if (*p != '=') {
			p = strchr(p, ';');
			continue;
		}
		if ((size_t)(p - k) != nlen || strncasecmp(k, name, nlen)) {
			/* skip this value, quoted or not */
			p++;
			if (*p == '"') {
				for (p++; *p && *p != '"'; p++)
					if (*p == '\\' && p[1])
						p++;
			}
			p = strchr(p, ';');
			continue;
		}
		p++;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (o + 1 >= cap)
					return false;
				out[o++] = *p;
			}
			if (*p != '"')
				return false;   /* an unterminated quoted string */
		} else {
			for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
				if (o + 1 >= cap)
					return false;
				out[o++] = *p;
			}
		}
		out[o] = '\0';
		return true;
	}
	return false;
}

/* Whether every quoted string in a header value ends. */
static bool quotes_balanced(const char *v)
{
	bool in = false;

	for (; *v; v++) {
		if (in && *v == '\\' && v[1])
			v++;
		else if (*v == '"')
			in = !in;
	}
	return !in;
}

static int hexdig(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 5987 ext-value "utf-8'lang'pct-encoded" into out; false unless UTF-8
 * and well formed (or it decodes to a NUL). */
static bool decode_ext_value(const char *v, char *out, size_t cap)
{
	const char *q;
	size_t o = 0;

	if (strncasecmp(v, "utf-8'", 6))
		return false;
	q = strchr(v + 6, '\'');
	if (!q)
		return false;
	for (q++; *q; q++) {
		int c = (unsigned char)*q;

		if (c == '%') {
			int hi = hexdig(q[1]), lo = hi < 0 ? -1 : hexdig(q[2]);

			if (lo < 0)
				return false;
			c = hi * 16 + lo;
			q += 2;
			if (c == 0)
				return false;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

bool mp_boundary_from_content_type(const char *content_type, char *out, size_t cap)
{
	size_t n;

	if (!content_type || strncasecmp(content_type, "multipart/", 10))
		return false;
	if (!header_param(content_type, "boundary", out, cap))
		return false;
	n = strlen(out);
	if (n == 0 || n > MP_BOUNDARY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!bchar_ok((unsigned char)out[i]) && out[i] != ' ')
			return false;
	return true;
}

int mp_init(struct mp_parser *p, const char *boundary, const struct mp_callbacks *cb, void *ctx)
{
	size_t blen = boundary ? strlen(boundary) : 0;

	memset(p, 0, sizeof(*p));
	if (blen == 0 || blen > MP_BOUNDARY_MAX)
		return -EINVAL;
	memcpy(p->delim, "\r\n--", 4);
	memcpy(p->delim + 4, boundary, blen);
	p->dlen = blen + 4;
	p->cb = *cb;
	p->ctx = ctx;
	p->state = MP_START;
	p->remaining = -1;
	return 0;
}

void mp_free(struct mp_parser *p)
{
	free(p->buf);
	p->buf = NULL;
	p->len = p->cap = 0;
}

static int fail(struct mp_parser *p, int err)
{
	p->state = MP_ERROR;
	p->error = err;
	return err;
}

/* One header block (lines ending in CRLF, without the blank line) into part. */
static int parse_headers(const char *h, size_t len, struct mp_part *part)
{
	const char *end = h + len;

	memset(part, 0, sizeof(*part));
	part->content_length = -1;
	while (h < end) {
		const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
		const char *colon;
		char value[MP_NAME_MAX * 3 + 256];
		size_t nlen, vlen;

		if (!eol)
			eol = end;
		colon = memchr(h, ':', (size_t)(eol - h));
		if (!colon || colon == h)
			return -EPROTO;
		nlen = (size_t)(colon - h);
		colon++;
		while (colon < eol && (*colon == ' ' || *colon == '\t'))
			colon++;
		vlen = (size_t)(eol - colon);
		if (vlen >= sizeof(value))
			return -EPROTO;
		memcpy(value, colon, vlen);
		value[vlen] = '\0';
		if (memchr(value, '\0', vlen))
			return -EPROTO;
		if (nlen == 19 && !strncasecmp(h, "Content-Disposition", 19)) {
			char ext[MP_NAME_MAX * 3 + 32];

			if (!quotes_balanced(value))
				return -EPROTO;
			if (!header_param(value, "name", part->name, sizeof(part->name)))
				part->name[0] = '\0';
			if (header_param(value, "filename*", ext, sizeof(ext)) &&
			    decode_ext_value(ext, part->filename, sizeof(part->filename))) {
				part->has_filename = part->filename_ext = true;
			} else if (header_param(value, "filename", part->filename, sizeof(part->filename))) {
				part->has_filename = true;
			}
		} else if (nlen == 14 && !strncasecmp(h, "Content-Length", 14)) {
			int64_t v = 0;

			if (vlen == 0 || vlen > 18)
				return -EPROTO;
			for (size_t i = 0; i < vlen; i++) {
				if (value[i] < '0' || value[i] > '9')
					return -EPROTO;
				v = v * 10 + (value[i] - '0');
			}
			part->content_length = v;
		} else if (nlen == 12 && !strncasecmp(h, "Content-Type", 12)) {
			size_t n = vlen < sizeof(part->content_type) - 1 ? vlen : sizeof(part->content_type) - 1;

			memcpy(part->content_type, value, n);
			part->content_type[n] = '\0';
		}
		h = eol + 2;
	}
	return 0;
}

static int buf_append(struct mp_parser *p, const void *data, size_t len)
{
	if (p->cap - p->len < len) {
		size_t cap = p->cap ? p->cap : 4096;
		char *nb;

		while (cap - p->len < len)
			cap *= 2;
		nb = realloc(p->buf, cap);
		if (!nb)
			return -ENOMEM;
		p->buf = nb;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, len);
	p->len += len;
	return 0;
}

/* Consumes what it can of p->buf; leaves the rest at its start. */
static int run(struct mp_parser *p)
{
	size_t pos = 0;
	int rc = 0;

	for (;;) {
		size_t avail = p->len - pos;
		const char *b = p->buf + pos;

		if (p->state == MP_START) {
			/* The first delimiter has no CRLF before it; anything
			 * before a delimiter is a preamble, ignored. */
			size_t first = p->dlen - 2;
			const char *d;

			if (avail < first)
				break;
			if (!memcmp(b, p->delim + 2, first)) {
				pos += first;
				p->state = MP_AFTER_DELIM;
				continue;
			}
			d = memmem(b, avail, p->delim, p->dlen);
			if (d) {
				pos += (size_t)(d - b) + p->dlen;
				p->state = MP_AFTER_DELIM;
				continue;
			}
			if (avail >= p->dlen)
				pos += avail - (p->dlen - 1);
			break;
		}
		if (p->state == MP_AFTER_DELIM) {
			/* "--" closes the body; else optional white space and CRLF. */
			while (avail > 0 && (*b == ' ' || *b == '\t')) {
				b++;
				pos++;
				avail--;
			}
			if (avail < 2)
				break;
			if (b[0] == '-' && b[1] == '-') {
				pos += 2;
				p->state = MP_DONE;
				continue;
			}
			if (b[0] != '\r' || b[1] != '\n')
				return fail(p, -EPROTO);
			pos += 2;
			p->state = MP_HEADERS;
			continue;
		}
		if (p->state == MP_HEADERS) {
			struct mp_part part;
			const char *e;
			size_t hlen;

			if (avail >= 2 && b[0] == '\r' && b[1] == '\n') {
				hlen = 0;   /* no headers at all */
				pos += 2;
			} else {
				e = avail >= 4 ? memmem(b, avail, "\r\n\r\n", 4) : NULL;
				if (!e) {
					if (avail > MP_HEADER_MAX)
						return fail(p, -EPROTO);
					break;
				}
				hlen = (size_t)(e - b) + 2;
				if (hlen > MP_HEADER_MAX)
					return fail(p, -EPROTO);
				pos += hlen + 2;
			}
			rc = parse_headers(b, hlen, &part);
			if (rc < 0)
				return fail(p, rc);
			p->remaining = part.content_length;
			p->state = MP_BODY;
			if (p->cb.part_begin && (rc = p->cb.part_begin(p->ctx, &part)) < 0)
				return fail(p, rc);
			continue;
		}
		if (p->state == MP_BODY) {
			size_t n;
			const char *d;

			if (p->remaining >= 0) {
				n = (uint64_t)p->remaining < avail ? (size_t)p->remaining : avail;
				if (n && p->cb.part_data && (rc = p->cb.part_data(p->ctx, b, n)) < 0)
					return fail(p, rc);
				pos += n;
				p->remaining -= (int64_t)n;
				if (p->remaining == 0) {
					p->state = MP_DELIM;
					continue;
				}
				break;
			}
			d = avail >= p->dlen ? memmem(b, avail, p->delim, p->dlen) : NULL;
			if (d) {
				n = (size_t)(d - b);
				if (n && p->cb.part_data && (rc = p->cb.part_data(p->ctx, b, n)) < 0)
					return fail(p, rc);
				if (p->cb.part_end && (rc = p->cb.part_end(p->ctx)) < 0)
					return fail(p, rc);
				pos += n + p->dlen;
				p->state = MP_AFTER_DELIM;
				continue;
			}
			/* The last dlen - 1 bytes may start a delimiter: kept. */
			if (avail >= p->dlen) {
				n = avail - (p->dlen - 1);
				if (p->cb.part_data && (rc = p->cb.part_data(p->ctx, b, n)) < 0)
					return fail(p, rc);
				pos += n;
			}
			break;
		}
		if (p->state == MP_DELIM) {
			/* A part of known length: the delimiter must follow it. */
			if (avail < p->dlen)
				break;
			if (memcmp(b, p->delim, p->dlen))
				return fail(p, -EPROTO);
			if (p->cb.part_end && (rc = p->cb.part_end(p->ctx)) < 0)
				return fail(p, rc);
			pos += p->dlen;
			p->state = MP_AFTER_DELIM;
			continue;
		}
		/* MP_DONE: the epilogue is ignored */
		pos = p->len;
		break;
	}
	memmove(p->buf, p->buf + pos, p->len - pos);
	p->len -= pos;
	return 0;
}

int mp_feed(struct mp_parser *p, const void *data, size_t len)
{
	int rc;

	if (p->state == MP_ERROR)
		return p->error;
	if (p->state == MP_DONE || len == 0)
		return 0;
	rc = buf_append(p, data, len);
	if (rc < 0)
		return fail(p, rc);
	return run(p);
}

int mp_finish(struct mp_parser *p)
{
	if (p->state == MP_ERROR)
		return p->error;
	return p->state == MP_DONE ? 0 : fail(p, -EPROTO);
}
