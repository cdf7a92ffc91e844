/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strbuf.h - a growable byte string, and bounded-string helpers.
 *
 * Every string that daytonafs builds from untrusted input (paths, JSON,
 * URLs, shell commands) is built in a strbuf, so there is no fixed buffer to
 * overflow; the helpers that do write into fixed buffers always bound and
 * terminate, and report truncation.
 */
#ifndef DAYTONAFS_STRBUF_H
#define DAYTONAFS_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *buf;      /* always NUL-terminated once anything was added; NULL when empty and unallocated */
	size_t len;
	size_t cap;
	bool oom;       /* an allocation failed: further appends are no-ops; check once at the end */
};

#define STRBUF_INIT { NULL, 0, 0, false }

void sb_add(struct strbuf *sb, const void *data, size_t len);
void sb_adds(struct strbuf *sb, const char *s);
void sb_addc(struct strbuf *sb, char c);
void sb_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
void sb_reset(struct strbuf *sb);          /* len = 0, keeps the allocation */
void sb_free(struct strbuf *sb);
/* The string (never NULL: "" when empty). */
const char *sb_str(const struct strbuf *sb);
/* Takes ownership of the buffer (malloc'd, NUL-terminated, "" when empty); NULL if oom. */
char *sb_detach(struct strbuf *sb);

/* strlcpy semantics: copies at most cap-1 bytes, always terminates (cap > 0).
 * Returns true when the whole of src fitted. */
bool str_copy(char *dst, size_t cap, const char *src);
/* A malloc'd copy of s without its trailing slashes (a base URL); NULL when
 * out of memory. */
char *str_dup_trim_slash(const char *s);
/* snprintf that returns true when the output fitted. */
bool str_printf(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether s[0..n) is well-formed UTF-8 (RFC 3629: shortest forms only, no
 * surrogates, nothing past U+10FFFF). Text that is not cannot cross a JSON
 * API unchanged: it comes back with U+FFFD in it. */
bool utf8_valid(const void *s, size_t n);

#endif
