/* SPDX-License-Identifier: Apache-2.0 */
/*
 * urlenc.h - URL and path encoding, and shell quoting. Pure functions.
 */
#ifndef DAYTONAFS_URLENC_H
#define DAYTONAFS_URLENC_H

#include <stdbool.h>
#include <stddef.h>
#include "strbuf.h"

/* Appends src percent-encoded for a query value: everything but the RFC 3986
 * unreserved set (A-Z a-z 0-9 - . _ ~) is encoded, and '/' is kept
 * (readable paths). '+' becomes %2B, since the toolbox decodes '+' as a space. */
void url_add_query_value(struct strbuf *sb, const char *src);
/* Appends src percent-encoded as one path segment (also encodes '/'). */
void url_add_path_segment(struct strbuf *sb, const char *src);

/*
 * Joins a sandbox path: base "/a/b" + name "c" -> "/a/b/c"; base "/" gives "/c".
 * Returns false (and leaves dst empty) when it would not fit in cap.
 */
bool path_join(char *dst, size_t cap, const char *base, const char *name);
/* Splits "/a/b/c" into parent "/a/b" and base "c"; "/c" gives "/" and "c". */
bool path_split(const char *path, char *parent, size_t pcap, const char **base);
/* True when path is "" or "/" */
bool path_is_root(const char *path);
/* True when child is inside (or equal to) dir: "/a/b" in "/a" yes, "/ab" in "/a" no. */
bool path_is_within(const char *child, const char *dir);

/* Appends src quoted for a POSIX shell as one word: 'it'\''s' form. Any byte
 * is allowed except NUL; the result is always safe to paste into sh -c. */
void sh_quote(struct strbuf *sb, const char *src);
/* Appends s as one shell word that means exactly its bytes even after the
 * command travels as a JSON string (where invalid UTF-8 would be replaced):
 * sh_quote for valid UTF-8, else the bytes rebuilt by printf from octal
 * escapes. */
void sh_word(struct strbuf *cmd, const char *s);
/* Whether s is valid UTF-8 (what a JSON string carries unchanged). */
bool str_is_utf8(const char *s);

/* Appends the base64 encoding (RFC 4648, with padding) of data. */
void base64_encode(struct strbuf *sb, const void *data, size_t len);
/* Appends the bytes that the base64 text src[0..n) encodes (RFC 4648, with
 * padding, as base64(1) prints it: line breaks are skipped). 0, or -EINVAL
 * for anything else (a foreign byte, a bad length, padding inside): such
 * text is refused whole, so what decodes is exactly what was encoded. */
int base64_decode(struct strbuf *out, const char *src, size_t n);

#endif
