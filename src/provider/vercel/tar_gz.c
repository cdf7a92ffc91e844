/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tar_gz.c - a gzip'd tar of one regular file, made on demand (see tar_gz.h).
 *
 * The output is laid out as:
 *   gzip header (10 bytes)
 *   stored deflate blocks, each 5 bytes of header then up to 65535 bytes of
 *   the tar stream (BFINAL set on the last)
 *   gzip trailer: CRC-32 and length of the tar stream (8 bytes, little-endian)
 * and the tar stream as:
 *   [PAX header block + its records, padded to 512] ustar header (512)
 *   file data, padded to 512; two zero blocks.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tar_gz.h"

#define BLOCK           512
#define STORED_MAX      65535u          /* bytes in a stored deflate block */
#define STORED_HDR      5u              /* BFINAL/BTYPE byte, LEN, NLEN */
#define GZ_HDR          10u
#define GZ_TRAILER      8u
#define NAME_MAX_BYTES  4095
#define OCTAL11_MAX     077777777777ULL /* the largest size in 11 octal digits */

/* ---- CRC-32 ------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t tgz_crc32(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&crc_once, crc_table_init);
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- tar headers -------------------------------------------------------- */

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80 || (unsigned char)*s < 0x20)
			return false;
	return true;
}

/* A relative path of non-empty components, none "." or "..". */
static int check_name(const char *name)
{
	const char *p = name;
	size_t n = strlen(name);

	if (n == 0 || name[0] == '/' || name[n - 1] == '/')
		return -EINVAL;
	if (n > NAME_MAX_BYTES)
		return -ENAMETOOLONG;
	while (*p) {
		size_t c = strcspn(p, "/");

		if (c == 0 || (c == 1 && p[0] == '.') || (c == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		p += c;
		if (*p == '/')
			p++;
	}
	return 0;
}

/* Fits ustar's name (100) and prefix (155) fields, split at a '/'. Returns
 * the split index (the '/' between prefix and name), 0 for no prefix, -1
 * when it does not fit. */
static long ustar_split(const char *name)
{
	size_t n = strlen(name);

	if (n <= 100)
		return 0;
	for (size_t i = n - 1; i > 0; i--) {
		if (name[i] != '/')
			continue;
		if (n - i - 1 > 100)
			break;      /* the base is too long for the name field */
		if (i <= 155)
			return (long)i;
	}
	return -1;
}

static void put_octal(char *field, size_t width, uint64_t v)
{
	/* width - 1 digits and a NUL */
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "%0*llo", (int)(width - 1), (unsigned long long)v);
	memcpy(field, tmp, width - 1);
	field[width - 1] = '\0';
}

/* Appends one 512-byte header. name/prefix are copied without a NUL when
 * they fill their field, as ustar allows. */
static void add_header(struct strbuf *sb, const char *name, size_t name_len, const char *prefix,
		       size_t prefix_len, char type, mode_t mode, uint64_t size, time_t mtime)
{
	unsigned char h[BLOCK];
	unsigned sum = 0;

	memset(h, 0, sizeof(h));
	memcpy(h, name, name_len > 100 ? 100 : name_len);
	put_octal((char *)h + 100, 8, mode & 07777);
	put_octal((char *)h + 108, 8, 0);                          /* uid */
	put_octal((char *)h + 116, 8, 0);                          /* gid */
	put_octal((char *)h + 124, 12, size > OCTAL11_MAX ? 0 : size);
	put_octal((char *)h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
	h[156] = (unsigned char)type;
	memcpy(h + 257, "ustar", 6);                                /* with its NUL */
	memcpy(h + 263, "00", 2);
	if (prefix_len)
		memcpy(h + 345, prefix, prefix_len > 155 ? 155 : prefix_len);
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < BLOCK; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);                  /* six digits, NUL, then the space left */
	h[155] = ' ';
	sb_add(sb, h, sizeof(h));
}

/* A PAX record "LEN key=value\n", whose LEN counts its own digits. */
static void add_pax_record(struct strbuf *sb, const char *key, const char *value)
{
	size_t body = 1 + strlen(key) + 1 + strlen(value) + 1;   /* " key=value\n" */
	size_t len = body + 1, digits;

	for (;;) {
		char tmp[24];

		digits = (size_t)snprintf(tmp, sizeof(tmp), "%zu", len);
		if (digits + body == len)
			break;
		len = digits + body;
	}
	sb_addf(sb, "%zu %s=%s\n", len, key, value);
}

static void pad_block(struct strbuf *sb)
{
	static const char zeros[BLOCK];

	if (sb->len % BLOCK)
		sb_add(sb, zeros, BLOCK - sb->len % BLOCK);
}

int tgz_init(struct tgz *t, const char *name, mode_t mode, uint64_t size, time_t mtime,
	     tgz_source_fn src, void *ctx)
{
	struct strbuf pax = STRBUF_INIT;
	long split;
	bool ascii;
	uint64_t blocks;
	int rc;

	memset(t, 0, sizeof(*t));
	rc = check_name(name);
	if (rc)
		return rc;
	ascii = is_ascii(name);
	split = ascii ? ustar_split(name) : -1;
	if (split < 0)
		add_pax_record(&pax, "path", name);
	if (size > OCTAL11_MAX) {
		char v[24];

		snprintf(v, sizeof(v), "%llu", (unsigned long long)size);
		add_pax_record(&pax, "size", v);
	}
	if (pax.len) {
		/* Readers without PAX see the PaxHeader entry and then a name
		 * made of the path's last ASCII bytes. */
		add_header(&t->head, "PaxHeader", 9, NULL, 0, 'x', 0644, pax.len, mtime);
		sb_add(&t->head, pax.buf, pax.len);
		pad_block(&t->head);
	}
	if (split < 0) {
		char fallback[101];
		size_t n = strlen(name), from = n > 100 ? n - 100 : 0, i;

		for (i = 0; from + i < n; i++) {
			unsigned char c = (unsigned char)name[from + i];

			fallback[i] = (c >= 0x80 || c < 0x20) ? '_' : (char)c;
		}
		fallback[i] = '\0';
		add_header(&t->head, fallback, i, NULL, 0, '0', mode, size, mtime);
	} else if (split == 0) {
		add_header(&t->head, name, strlen(name), NULL, 0, '0', mode, size, mtime);
	} else {
		add_header(&t->head, name + split + 1, strlen(name + split + 1), name, (size_t)split, '0',
			   mode, size, mtime);
	}
	sb_free(&pax);
	if (t->head.oom) {
		tgz_free(t);
		return -ENOMEM;
	}
	t->file_size = size;
	t->src = src;
	t->src_ctx = ctx;
	t->tar_len = t->head.len + (size + BLOCK - 1) / BLOCK * BLOCK + 2 * BLOCK;
	blocks = (t->tar_len + STORED_MAX - 1) / STORED_MAX;
	t->gz_len = GZ_HDR + blocks * STORED_HDR + t->tar_len + GZ_TRAILER;
	return 0;
}

void tgz_free(struct tgz *t)
{
	sb_free(&t->head);
	memset(t, 0, sizeof(*t));
}

uint64_t tgz_length(const struct tgz *t)
{
	return t->gz_len;
}

/* The next n bytes of the tar stream (at t->tar_pos) into buf. Returns the
 * count (> 0), or a negative errno. */
static ssize_t tar_next(struct tgz *t, unsigned char *buf, size_t n)
{
	uint64_t p = t->tar_pos, data_end = t->head.len + t->file_size;
	ssize_t got;

	if (p < t->head.len) {
		if (n > t->head.len - p)
			n = (size_t)(t->head.len - p);
		memcpy(buf, t->head.buf + p, n);
		got = (ssize_t)n;
	} else if (p < data_end) {
		if (n > data_end - p)
			n = (size_t)(data_end - p);
		got = t->src(t->src_ctx, p - t->head.len, buf, n);
		if (got == 0)
			return -EIO;    /* the file is shorter than the size in the header */
		if (got < 0)
			return got;
		if ((size_t)got > n)
			return -EIO;
	} else {
		memset(buf, 0, n);  /* padding and the end-of-archive blocks */
		got = (ssize_t)n;
	}
	t->crc = tgz_crc32(t->crc, buf, (size_t)got);
	t->tar_pos += (uint64_t)got;
	return got;
}

static void le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

ssize_t tgz_read(struct tgz *t, uint64_t off, void *out, size_t len)
{
	/* Magic, deflate, no flags, no mtime, no extra flags, OS unix. */
	static const unsigned char gz_head[GZ_HDR] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
	const uint64_t block_out = STORED_HDR + STORED_MAX;
	uint64_t body_end = t->gz_len - GZ_TRAILER;
	unsigned char *buf = out;
	size_t done = 0;

	if (off == 0) {
		t->pos = t->tar_pos = 0;
		t->crc = 0;
	}
	if (off != t->pos)
		return -EINVAL;
	while (done < len && t->pos < t->gz_len) {
		uint64_t pos = t->pos;
		size_t want = len - done, n;

		if (pos < GZ_HDR) {
			n = (size_t)(GZ_HDR - pos) < want ? (size_t)(GZ_HDR - pos) : want;
			memcpy(buf + done, gz_head + pos, n);
		} else if (pos < body_end) {
			uint64_t rel = pos - GZ_HDR, k = rel / block_out, in = rel % block_out;
			uint64_t start = k * STORED_MAX;
			size_t blen = (size_t)(t->tar_len - start < STORED_MAX ? t->tar_len - start : STORED_MAX);

			if (in < STORED_HDR) {
				unsigned char h[STORED_HDR];

				h[0] = start + blen == t->tar_len ? 1 : 0;   /* BFINAL, BTYPE 00 */
				h[1] = (unsigned char)blen;
				h[2] = (unsigned char)(blen >> 8);
				h[3] = (unsigned char)~blen;
				h[4] = (unsigned char)(~blen >> 8);
				n = (size_t)(STORED_HDR - in) < want ? (size_t)(STORED_HDR - in) : want;
				memcpy(buf + done, h + in, n);
			} else {
				ssize_t got;
				uint64_t left = blen - (in - STORED_HDR);

				if (start + (in - STORED_HDR) != t->tar_pos)
					return -EIO;    /* cannot happen: the two cursors move together */
				n = left < want ? (size_t)left : want;
				got = tar_next(t, buf + done, n);
				if (got < 0)
					return got;
				n = (size_t)got;
			}
		} else {
			unsigned char tr[GZ_TRAILER];
			uint64_t in = pos - body_end;

			le32(tr, t->crc);
			le32(tr + 4, (uint32_t)t->tar_len);
			n = (size_t)(GZ_TRAILER - in) < want ? (size_t)(GZ_TRAILER - in) : want;
			memcpy(buf + done, tr + in, n);
		}
		done += n;
		t->pos += n;
	}
	return (ssize_t)done;
}
