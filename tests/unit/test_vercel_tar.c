/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_vercel_tar - tar_gz.c: the one-file tar.gz that fs/write sends.
 * Archives are checked with the system's own tar and gzip (extracted and
 * compared byte for byte), and by reading the headers back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strbuf.h"
#include "tar_gz.h"
#include "unit.h"

static char tmpdir[64];

struct mem {
	const unsigned char *data;
	size_t len;
};

static ssize_t mem_src(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct mem *m = ctx;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = (size_t)(m->len - off);
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

/* The whole archive, read chunk bytes at a time. */
static int archive(const char *name, mode_t mode, const void *data, size_t len, uint64_t declared,
		   size_t chunk, struct strbuf *out)
{
	struct mem m = { data, len };
	struct tgz t;
	char *buf = malloc(chunk);
	uint64_t off = 0;
	int rc = tgz_init(&t, name, mode, declared, 1700000000, mem_src, &m);

	if (rc) {
		free(buf);
		return rc;
	}
	while (off < tgz_length(&t)) {
		ssize_t n = tgz_read(&t, off, buf, chunk);

		if (n <= 0) {
			rc = n < 0 ? (int)n : -EIO;
			break;
		}
		sb_add(out, buf, (size_t)n);
		off += (uint64_t)n;
	}
	if (rc == 0 && out->len != tgz_length(&t))
		rc = -ERANGE;
	tgz_free(&t);
	free(buf);
	return rc;
}

static bool write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	bool ok = f && fwrite(data, 1, len, f) == len;

	if (f)
		ok = fclose(f) == 0 && ok;
	return ok;
}

static bool read_file(const char *path, struct strbuf *out)
{
	char buf[65536];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f)
		return false;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sb_add(out, buf, n);
	fclose(f);
	return true;
}

__attribute__((format(printf, 1, 2)))
static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Archives name with data, extracts it with tar into a fresh directory, and
 * checks the extracted file's bytes and mode. */
static void roundtrip(const char *name, mode_t mode, const void *data, size_t len, size_t chunk)
{
	struct strbuf gz = STRBUF_INIT, back = STRBUF_INIT;
	char arc[128], dir[128], path[8192];
	struct stat st;

	snprintf(arc, sizeof(arc), "%s/a.tar.gz", tmpdir);
	snprintf(dir, sizeof(dir), "%s/x", tmpdir);
	CHECK_INT(archive(name, mode, data, len, len, chunk, &gz), 0);
	CHECK(write_file(arc, gz.buf, gz.len));
	CHECK_INT(sh("gzip -t '%s'", arc), 0);
	CHECK_INT(sh("rm -rf '%s' && mkdir '%s'", dir, dir), 0);
	CHECK_INT(sh("tar -xzf '%s' -C '%s' --no-same-owner", arc, dir), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(read_file(path, &back));
	CHECK_INT(back.len, len);
	CHECK(len == 0 || (back.buf && memcmp(back.buf, data, len) == 0));
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 0777, mode & 0777);
	sb_free(&gz);
	sb_free(&back);
}

UNIT_TEST(crc32_known_value)
{
	CHECK_INT(tgz_crc32(0, "123456789", 9), 0xCBF43926u);
	/* Continuing a CRC gives the CRC of the concatenation. */
	CHECK_INT(tgz_crc32(tgz_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
	CHECK_INT(tgz_crc32(0, "", 0), 0);
}

UNIT_TEST(small_file_odd_bytes)
{
	unsigned char data[256];

	for (int i = 0; i < 256; i++)
		data[i] = (unsigned char)(255 - i);
	roundtrip("dir/sub/odd.bin", 0640, data, sizeof(data), 4096);
	roundtrip("top.bin", 0755, data, 1, 3);
}

UNIT_TEST(empty_file)
{
	roundtrip("empty", 0600, "", 0, 100);
}

UNIT_TEST(listing_shows_mode_size_name)
{
	struct strbuf gz = STRBUF_INIT, out = STRBUF_INIT;
	char arc[128], lst[128];

	snprintf(arc, sizeof(arc), "%s/l.tar.gz", tmpdir);
	snprintf(lst, sizeof(lst), "%s/l.txt", tmpdir);
	CHECK_INT(archive("d/f.txt", 0751, "hello", 5, 5, 7, &gz), 0);
	CHECK(write_file(arc, gz.buf, gz.len));
	CHECK_INT(sh("tar -tvzf '%s' > '%s'", arc, lst), 0);
	CHECK(read_file(lst, &out));
	CHECK(out.buf && strncmp(out.buf, "-rwxr-x--x", 10) == 0);
	CHECK(out.buf && strstr(out.buf, " 5 ") != NULL);
	CHECK(out.buf && strstr(out.buf, " d/f.txt\n") != NULL);
	sb_free(&gz);
	sb_free(&out);
}

/* Several stored blocks (65535 bytes each), read in sizes that straddle
 * every boundary. */
UNIT_TEST(large_file_many_blocks)
{
	size_t len = 300000;
	unsigned char *data = malloc(len);
	uint32_t x = 12345;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (unsigned char)(x >> 16);
	}
	roundtrip("big/file.bin", 0644, data, len, 777);
	roundtrip("big/file.bin", 0644, data, len, 65536 * 2);
	free(data);
}

/* A 200-byte name with non-ASCII bytes: a PAX path record. */
UNIT_TEST(pax_long_utf8_name)
{
	struct strbuf name = STRBUF_INIT, gz = STRBUF_INIT;

	sb_adds(&name, "dir/");
	while (name.len < 196)
		sb_adds(&name, "\xc3\xa9x");   /* é x */
	while (name.len < 200)
		sb_addc(&name, 'z');
	CHECK_INT(name.len, 200);
	roundtrip(sb_str(&name), 0644, "pax\n\x00\xff", 6, 512);
	/* The archive starts with an 'x' header holding "path=". */
	CHECK_INT(archive(sb_str(&name), 0644, "a", 1, 1, 4096, &gz), 0);
	/* Stored blocks: the tar starts after the 10-byte gzip and 5-byte block headers. */
	CHECK(gz.len > 15 + 512 && gz.buf[15 + 156] == 'x');
	CHECK(gz.len > 15 + 1024 && memmem(gz.buf + 15 + 512, 512, " path=dir/", 10) != NULL);
	sb_free(&name);
	sb_free(&gz);
}

/* A PAX record's length counts its own digits: names whose record length
 * crosses 100 (two digits to three). */
UNIT_TEST(pax_record_length_boundaries)
{
	for (size_t n = 86; n <= 100; n++) {
		struct strbuf name = STRBUF_INIT;

		sb_adds(&name, "\xc3\xa9");
		while (name.len < n)
			sb_addc(&name, 'a');
		roundtrip(sb_str(&name), 0644, "b", 1, 4096);
		sb_free(&name);
	}
}

/* A long ASCII path that fits ustar's prefix and name needs no PAX header. */
UNIT_TEST(ustar_prefix_split)
{
	struct strbuf name = STRBUF_INIT, gz = STRBUF_INIT;

	for (int i = 0; i < 14; i++)
		sb_adds(&name, "directory/");   /* 140 bytes */
	sb_adds(&name, "a-base-name-of-some-length.txt");
	roundtrip(sb_str(&name), 0644, "split", 5, 4096);
	CHECK_INT(archive(sb_str(&name), 0644, "a", 1, 1, 4096, &gz), 0);
	CHECK(gz.len > 15 + 512 && gz.buf[15 + 156] == '0');
	sb_free(&name);
	sb_free(&gz);
	/* A base over 100 bytes cannot split: PAX. */
	sb_adds(&name, "d/");
	while (name.len < 120)
		sb_addc(&name, 'q');
	roundtrip(sb_str(&name), 0644, "long base", 9, 4096);
	sb_free(&name);
}

UNIT_TEST(bad_names)
{
	static const char *const bad[] = { "", "/abs", "a/../b", "a//b", "./a", "a/", "..", "a/." };
	struct tgz t;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(tgz_init(&t, bad[i], 0644, 0, 0, mem_src, NULL), -EINVAL);
}

UNIT_TEST(sequence_and_restart)
{
	struct mem m = { (const unsigned char *)"0123456789", 10 };
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	char buf[700];
	struct tgz t;
	uint64_t off = 0;
	ssize_t n;

	CHECK_INT(tgz_init(&t, "f", 0644, 10, 0, mem_src, &m), 0);
	n = tgz_read(&t, 0, buf, 600);
	CHECK_INT(n, 600);
	sb_add(&a, buf, (size_t)n);
	CHECK_INT(tgz_read(&t, 5, buf, 10), -EINVAL);     /* out of sequence */
	/* A retry starts over at 0 and gets the same bytes. */
	while (off < tgz_length(&t) && (n = tgz_read(&t, off, buf, 333)) > 0) {
		sb_add(&b, buf, (size_t)n);
		off += (uint64_t)n;
	}
	CHECK_INT(b.len, tgz_length(&t));
	CHECK(memcmp(a.buf, b.buf, 600) == 0);
	CHECK_INT(tgz_read(&t, off, buf, 10), 0);         /* the end */
	tgz_free(&t);
	sb_free(&a);
	sb_free(&b);
}

/* The file shrank after its size was taken: never a short archive that
 * would write a short file. */
UNIT_TEST(short_source_fails)
{
	struct strbuf gz = STRBUF_INIT;

	CHECK_INT(archive("f", 0644, "abc", 3, 10, 4096, &gz), -EIO);
	sb_free(&gz);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(crc32_known_value),
		UNIT_CASE(small_file_odd_bytes),
		UNIT_CASE(empty_file),
		UNIT_CASE(listing_shows_mode_size_name),
		UNIT_CASE(large_file_many_blocks),
		UNIT_CASE(pax_long_utf8_name),
		UNIT_CASE(pax_record_length_boundaries),
		UNIT_CASE(ustar_prefix_split),
		UNIT_CASE(bad_names),
		UNIT_CASE(sequence_and_restart),
		UNIT_CASE(short_source_fails),
	};
	char cmd[128];
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-vercel-tar-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	rc = unit_run("vercel_tar", cases, sizeof(cases) / sizeof(cases[0]));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return rc;
}
