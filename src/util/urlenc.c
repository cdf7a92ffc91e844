/* SPDX-License-Identifier: Apache-2.0 */
/*
 * urlenc.c - URL and path encoding, shell quoting, base64. Pure functions:
 * everything built from untrusted input (file names, commands) goes through
 * here, so each function is total (any byte except NUL is accepted).
 */
#include "urlenc.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static void url_encode(struct strbuf *sb, const char *src, bool keep_slash)
{
	const unsigned char *p = (const unsigned char *)src;
	const unsigned char *run = p;

	/* Copy runs of safe bytes in one go; most paths are mostly safe. */
	for (; *p; p++) {
		char esc[3];

		if (is_unreserved(*p) || (keep_slash && *p == '/'))
			continue;
		sb_add(sb, run, (size_t)(p - run));
		esc[0] = '%';
		esc[1] = hexdig[*p >> 4];
		esc[2] = hexdig[*p & 0xf];
		sb_add(sb, esc, 3);
		run = p + 1;
	}
	sb_add(sb, run, (size_t)(p - run));
}

void url_add_query_value(struct strbuf *sb, const char *src)
{
	url_encode(sb, src, true);
}

void url_add_path_segment(struct strbuf *sb, const char *src)
{
	url_encode(sb, src, false);
}

bool path_join(char *dst, size_t cap, const char *base, const char *name)
{
	size_t blen = strlen(base);
	bool ok;

	if (cap == 0)
		return false;
	/* Drop trailing slashes of base so that "/" and "/a/" join cleanly. */
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (name[0] == '\0')
		ok = blen ? str_printf(dst, cap, "%.*s", (int)blen, base) : str_copy(dst, cap, "/");
	else
		ok = str_printf(dst, cap, "%.*s/%s", (int)blen, base, name);
	if (!ok)
		dst[0] = '\0';
	return ok;
}

bool path_split(const char *path, char *parent, size_t pcap, const char **base)
{
	const char *slash = strrchr(path, '/');
	bool ok;

	if (pcap == 0)
		return false;
	if (!slash) {
		/* A relative name: its parent is the (toolbox) working directory. */
		*base = path;
		ok = str_copy(parent, pcap, ".");
	} else if (slash == path) {
		*base = slash + 1;
		ok = str_copy(parent, pcap, "/");
	} else {
		*base = slash + 1;
		ok = str_printf(parent, pcap, "%.*s", (int)(slash - path), path);
	}
	if (!ok)
		parent[0] = '\0';
	return ok;
}

bool path_is_root(const char *path)
{
	return path[0] == '\0' || strcmp(path, "/") == 0;
}

bool path_is_within(const char *child, const char *dir)
{
	size_t dlen = strlen(dir);

	while (dlen > 0 && dir[dlen - 1] == '/')
		dlen--;
	if (dlen == 0)
		return child[0] == '/';   /* everything absolute is under "/" */
	if (strncmp(child, dir, dlen) != 0)
		return false;
	return child[dlen] == '\0' || child[dlen] == '/';
}

void sh_quote(struct strbuf *sb, const char *src)
{
	const char *p;

	/* Inside single quotes nothing is special except the quote itself,
	 * which is written as: close quote, escaped quote, reopen. */
	sb_addc(sb, '\'');
	for (p = src; *p; p++) {
		if (*p == '\'')
			sb_adds(sb, "'\\''");
		else
			sb_addc(sb, *p);
	}
	sb_addc(sb, '\'');
}

void base64_encode(struct strbuf *sb, const void *data, size_t len)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	char out[4];

	while (len >= 3) {
		out[0] = tbl[p[0] >> 2];
		out[1] = tbl[((p[0] & 3) << 4) | (p[1] >> 4)];
		out[2] = tbl[((p[1] & 0xf) << 2) | (p[2] >> 6)];
		out[3] = tbl[p[2] & 0x3f];
		sb_add(sb, out, 4);
		p += 3;
		len -= 3;
	}
	if (len == 0)
		return;
	out[0] = tbl[p[0] >> 2];
	if (len == 1) {
		out[1] = tbl[(p[0] & 3) << 4];
		out[2] = '=';
	} else {
		out[1] = tbl[((p[0] & 3) << 4) | (p[1] >> 4)];
		out[2] = tbl[(p[1] & 0xf) << 2];
	}
	out[3] = '=';
	sb_add(sb, out, 4);
}

static bool valid_utf8(const unsigned char *s)
{
	while (*s) {
		unsigned c = *s, n, cp;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 1; i <= n; i++) {
			if ((s[i] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i] & 0x3F);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
		s += n + 1;
	}
	return true;
}

/*
 * Appends s to a shell command as one word that means exactly its bytes.
 * The command travels as a JSON string, where invalid UTF-8 becomes U+FFFD
 * (Go's decoder), so a word that is not valid UTF-8 is rebuilt in the shell
 * by printf from octal escapes, which are ASCII: "$(printf '\377...')",
 * with any trailing newlines (which $(...) would strip) quoted after it.
 */
bool str_is_utf8(const char *s)
{
	return valid_utf8((const unsigned char *)s);
}

void sh_word(struct strbuf *cmd, const char *s)
{
	size_t len = strlen(s), k = 0;

	if (valid_utf8((const unsigned char *)s)) {
		sh_quote(cmd, s);
		return;
	}
	while (k < len && s[len - 1 - k] == '\n')
		k++;
	/* %b, not the format: the word may start with '-', and holds '%' */
	sb_adds(cmd, "\"$(printf '%b' '");
	for (size_t i = 0; i < len - k; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
			sb_addc(cmd, (char)c);
		else
			sb_addf(cmd, "\\0%03o", c);
	}
	sb_adds(cmd, "')\"");
	if (k) {
		sb_addc(cmd, '\'');
		for (size_t i = 0; i < k; i++)
			sb_addc(cmd, '\n');
		sb_addc(cmd, '\'');
	}
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(struct strbuf *out, const char *src, size_t n)
{
	unsigned char q[4];
	size_t k = 0, i;
	bool ended = false;   /* a quantum with padding was seen: nothing may follow */

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		int v;

		if (c == '\n' || c == '\r')
			continue;
		if (ended)
			return -EINVAL;
		if (c == '=') {
			/* Padding: "xx==" or "xxx=" ends the text. */
			if (k == 2 && i + 1 < n && src[i + 1] == '=') {
				i++;
			} else if (k != 3) {
				return -EINVAL;
			}
			if (k == 2) {
				sb_addc(out, (char)((q[0] << 2) | (q[1] >> 4)));
				/* The unused bits must be zero, as an encoder writes them. */
				if (q[1] & 0xf)
					return -EINVAL;
			} else {
				sb_addc(out, (char)((q[0] << 2) | (q[1] >> 4)));
				sb_addc(out, (char)(((q[1] & 0xf) << 4) | (q[2] >> 2)));
				if (q[2] & 3)
					return -EINVAL;
			}
			k = 0;
			ended = true;
			continue;
		}
		v = b64_value(c);
		if (v < 0)
			return -EINVAL;
		q[k++] = (unsigned char)v;
		if (k == 4) {
			sb_addc(out, (char)((q[0] << 2) | (q[1] >> 4)));
			sb_addc(out, (char)(((q[1] & 0xf) << 4) | (q[2] >> 2)));
			sb_addc(out, (char)(((q[2] & 3) << 6) | q[3]));
			k = 0;
		}
	}
	if (k != 0)
		return -EINVAL;
	return out->oom ? -ENOMEM : 0;
}
