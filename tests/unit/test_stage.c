/* SPDX-License-Identifier: Apache-2.0 */
#include "unit.h"
#include "stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh cache directory (that does not exist yet) under a new temp dir. */
static const char *fresh_dir(void)
{
	static char dir[128];

	if (tmpdir[0])
		rm_rf(tmpdir);
	strcpy(tmpdir, "/tmp/test_stage.XXXXXX");
	if (!mkdtemp(tmpdir))
		abort();
	snprintf(dir, sizeof(dir), "%s/cache/daytonafs", tmpdir);
	return dir;
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* The single file name in dir ("" when not exactly one). */
static const char *only_file(const char *dir)
{
	static char name[512];
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	name[0] = '\0';
	if (!d)
		return name;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n++ == 0)
			snprintf(name, sizeof(name), "%s", de->d_name);
	}
	closedir(d);
	if (n != 1)
		name[0] = '\0';
	return name;
}

static char *slurp(const char *path, size_t *len)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	*len = 0;
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static void subdir(char *out, size_t cap, const char *dir, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

UNIT_TEST(area_open)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	char p[256];
	struct stat st;

	CHECK(a != NULL);
	CHECK_STR(stage_area_dir(a), dir);
	CHECK_INT(stat(dir, &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_INT(st.st_mode & 0777, 0700);   /* missing parents made too */
	subdir(p, sizeof(p), dir, "staging");
	CHECK_INT(stat(p, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0700);
	subdir(p, sizeof(p), dir, "unsaved");
	CHECK_INT(stat(p, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0700);
	stage_area_close(a);
	/* opening again over existing directories works */
	a = stage_area_open(dir);
	CHECK(a != NULL);
	stage_area_close(a);
	stage_area_close(NULL);
	/* a file in the way */
	subdir(p, sizeof(p), tmpdir, "file");
	close(open(p, O_CREAT | O_WRONLY, 0600));
	errno = 0;
	CHECK(stage_area_open(p) == NULL);
	CHECK_INT(errno, ENOTDIR);
	subdir(p, sizeof(p), dir, "unsaved");
	rmdir(p);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	errno = 0;
	CHECK(stage_area_open(dir) == NULL);
	CHECK_INT(errno, ENOTDIR);
	errno = 0;
	CHECK(stage_area_open("") == NULL);
	CHECK_INT(errno, EINVAL);
}

UNIT_TEST(new_and_free)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	struct stage *s = NULL, *s2 = NULL;
	char staging[256], p[512];
	struct stat st;

	subdir(staging, sizeof(staging), dir, "staging");
	CHECK_INT(stage_new(a, &s), 0);
	CHECK(s != NULL);
	CHECK_INT(stage_size(s), 0);
	CHECK(stage_fd(s) >= 0);
	CHECK(fcntl(stage_fd(s), F_GETFD) & FD_CLOEXEC);
	CHECK_INT(count_files(staging), 1);
	subdir(p, sizeof(p), staging, only_file(staging));
	CHECK_INT(stat(p, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(strncmp(only_file(staging), "stage-", 6), 0);
	CHECK_INT(stage_new(a, &s2), 0);
	CHECK_INT(count_files(staging), 2);
	stage_free(s);
	CHECK_INT(count_files(staging), 1);
	stage_free(s2);
	CHECK_INT(count_files(staging), 0);
	stage_free(NULL);
	stage_area_close(a);
}

UNIT_TEST(write_read_offsets)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	struct stage *s;
	char buf[64];
	struct stat st;

	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, "hello", 5, 0), 5);
	CHECK_INT(stage_size(s), 5);
	CHECK_INT(stage_pwrite(s, "world", 5, 10), 5);
	CHECK_INT(stage_size(s), 15);
	memset(buf, 'X', sizeof(buf));
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 15);
	CHECK(memcmp(buf, "hello\0\0\0\0\0world", 15) == 0);
	CHECK_INT(stage_pread(s, buf, 3, 11), 3);
	CHECK(memcmp(buf, "orl", 3) == 0);
	CHECK_INT(stage_pread(s, buf, 10, 12), 3);   /* short at the end */
	CHECK(memcmp(buf, "rld", 3) == 0);
	CHECK_INT(stage_pread(s, buf, 10, 15), 0);   /* EOF */
	CHECK_INT(stage_pread(s, buf, 10, 1000), 0);
	/* overwriting inside does not change the size */
	CHECK_INT(stage_pwrite(s, "HE", 2, 0), 2);
	CHECK_INT(stage_size(s), 15);
	CHECK_INT(stage_pread(s, buf, 5, 0), 5);
	CHECK(memcmp(buf, "HEllo", 5) == 0);
	CHECK_INT(stage_pwrite(s, "", 0, 100), 0);   /* an empty write extends nothing */
	CHECK_INT(stage_size(s), 15);
	CHECK_INT(fstat(stage_fd(s), &st), 0);
	CHECK_INT(st.st_size, 15);
	/* offsets beyond what a file can hold */
	CHECK_INT(stage_pwrite(s, "x", 1, (uint64_t)INT64_MAX), -EFBIG);
	CHECK_INT(stage_pwrite(s, "x", 1, UINT64_MAX), -EFBIG);
	CHECK_INT(stage_pread(s, buf, 1, UINT64_MAX), -EINVAL);
	CHECK_INT(stage_size(s), 15);
	stage_free(s);
	stage_area_close(a);
}

UNIT_TEST(large_write)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	size_t n = 3 * 1024 * 1024 + 17;
	unsigned char *in = malloc(n), *out = malloc(n);
	struct stage *s;

	for (size_t i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 7 + i / 251);
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, in, n, 0), n);
	CHECK_INT(stage_pread(s, out, n, 0), n);
	CHECK(memcmp(in, out, n) == 0);
	stage_free(s);
	stage_area_close(a);
	free(in);
	free(out);
}

/* A copy of the first len bytes, across several of its 64 KiB reads; the
 * source is untouched; a len past the source's end is refused, with no
 * stage left behind. */
UNIT_TEST(copy_prefix)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	size_t n = 200 * 1024 + 5, len = 131072 + 3;
	unsigned char *in = malloc(n), *out = malloc(n);
	struct stage *s, *c;

	for (size_t i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 13 + i / 509);
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, in, n, 0), n);
	CHECK_INT(stage_copy(a, s, len, &c), 0);
	CHECK(c != NULL && c != s);
	CHECK(stage_size(c) == len);
	CHECK_INT(stage_pread(c, out, n, 0), len);
	CHECK(memcmp(in, out, len) == 0);
	CHECK(stage_size(s) == n);
	stage_free(c);
	CHECK_INT(stage_copy(a, s, 0, &c), 0);
	CHECK(c != NULL && stage_size(c) == 0);
	stage_free(c);
	c = s;
	CHECK_INT(stage_copy(a, s, n + 1, &c), -EIO);
	CHECK(c == NULL);
	stage_free(s);
	stage_area_close(a);
	free(in);
	free(out);
}

UNIT_TEST(sparse_writes)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	uint64_t far = (uint64_t)1 << 30;
	struct stage *s;
	char buf[16];
	struct stat st;

	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, "end", 3, far), 3);
	CHECK_INT(stage_size(s), far + 3);
	CHECK_INT(fstat(stage_fd(s), &st), 0);
	CHECK_INT(st.st_size, far + 3);
	CHECK((uint64_t)st.st_blocks * 512 < far / 16);   /* a hole, not a gigabyte */
	memset(buf, 'X', sizeof(buf));
	CHECK_INT(stage_pread(s, buf, 8, 4096), 8);
	CHECK(memcmp(buf, "\0\0\0\0\0\0\0\0", 8) == 0);
	CHECK_INT(stage_pread(s, buf, 16, far - 2), 5);
	CHECK(memcmp(buf, "\0\0end", 5) == 0);
	/* a write below the end does not shrink */
	CHECK_INT(stage_pwrite(s, "a", 1, 0), 1);
	CHECK_INT(stage_size(s), far + 3);
	stage_free(s);
	stage_area_close(a);
}

UNIT_TEST(truncate_grow_shrink)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	struct stage *s;
	char buf[16];
	struct stat st;

	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, "hello world", 11, 0), 11);
	CHECK_INT(stage_truncate(s, 3), 0);
	CHECK_INT(stage_size(s), 3);
	CHECK_INT(fstat(stage_fd(s), &st), 0);
	CHECK_INT(st.st_size, 3);
	memset(buf, 'X', sizeof(buf));
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 3);
	CHECK(memcmp(buf, "hel", 3) == 0);
	CHECK_INT(stage_truncate(s, 8), 0);
	CHECK_INT(stage_size(s), 8);
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 8);
	CHECK(memcmp(buf, "hel\0\0\0\0\0", 8) == 0);   /* the old bytes do not come back */
	CHECK_INT(stage_truncate(s, 0), 0);
	CHECK_INT(stage_size(s), 0);
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 0);
	CHECK_INT(stage_truncate(s, UINT64_MAX), -EFBIG);
	CHECK_INT(stage_size(s), 0);
	stage_free(s);
	stage_area_close(a);
}

UNIT_TEST(append)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	struct stage *s;
	char buf[16];

	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_append(s, "abc", 3), 0);
	CHECK_INT(stage_append(s, "def", 3), 0);
	CHECK_INT(stage_append(s, "", 0), 0);
	CHECK_INT(stage_size(s), 6);
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 6);
	CHECK(memcmp(buf, "abcdef", 6) == 0);
	CHECK_INT(stage_truncate(s, 2), 0);
	CHECK_INT(stage_append(s, "Z", 1), 0);
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 3);
	CHECK(memcmp(buf, "abZ", 3) == 0);
	stage_free(s);
	stage_area_close(a);
}

/* Checks that name is prefix + ".<unix time within a few seconds>" + suffix. */
static bool time_named(const char *name, const char *prefix, const char *suffix)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name);
	char *end;
	long long t;

	if (nl < pl + 2 + sl || strncmp(name, prefix, pl) || name[pl] != '.')
		return false;
	if (strcmp(name + nl - sl, suffix))
		return false;
	t = strtoll(name + pl + 1, &end, 10);
	return end == name + nl - sl && t <= (long long)time(NULL) && t >= (long long)time(NULL) - 5;
}

UNIT_TEST(preserve)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	char staging[256], unsaved[256], out[512], out2[512], want[600];
	struct stage *s, *s2;
	size_t len;
	char *data;

	subdir(staging, sizeof(staging), dir, "staging");
	subdir(unsaved, sizeof(unsaved), dir, "unsaved");
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, "precious", 8, 0), 8);
	CHECK_INT(stage_preserve(s, "mybox/home/daytona/notes.txt", out, sizeof(out)), 0);
	/* a readable name that says where the data belonged */
	snprintf(want, sizeof(want), "%s/mybox%%2Fhome%%2Fdaytona%%2Fnotes.txt", unsaved);
	CHECK(time_named(out, want, ""));
	CHECK_INT(count_files(staging), 0);
	CHECK_INT(count_files(unsaved), 1);
	data = slurp(out, &len);
	CHECK(data != NULL);
	CHECK_INT(len, 8);
	CHECK(data && memcmp(data, "precious", 8) == 0);
	/* preserving twice is refused; the stage still reads (the preserved file) */
	CHECK_INT(stage_preserve(s, "again", out2, sizeof(out2)), -EINVAL);
	CHECK_INT(stage_pread(s, want, 8, 0), 8);
	stage_free(s);   /* only closes */
	data = slurp(out, &len);
	CHECK_INT(len, 8);

	/* the same label in the same second: a new name, the first kept */
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_new(a, &s2), 0);
	CHECK_INT(stage_append(s, "one", 3), 0);
	CHECK_INT(stage_append(s2, "two", 3), 0);
	CHECK_INT(stage_preserve(s, "b/f", out, sizeof(out)), 0);
	CHECK_INT(stage_preserve(s2, "b/f", out2, sizeof(out2)), 0);
	CHECK(strcmp(out, out2) != 0);
	data = slurp(out, &len);
	CHECK(len == 3 && memcmp(data, "one", 3) == 0);
	data = slurp(out2, &len);
	CHECK(len == 3 && memcmp(data, "two", 3) == 0);
	CHECK_INT(count_files(unsaved), 3);
	stage_free(s);
	stage_free(s2);

	/* odd labels: empty, control bytes; out may be NULL */
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_preserve(s, "", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%s/unnamed", unsaved);
	CHECK(time_named(out, want, ""));
	stage_free(s);
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_preserve(s, "a\nb\tc", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%s/a_b_c", unsaved);
	CHECK(time_named(out, want, ""));
	stage_free(s);
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_preserve(s, "x", NULL, 0), 0);
	stage_free(s);
	CHECK_INT(count_files(unsaved), 6);
	CHECK_INT(count_files(staging), 0);
	stage_area_close(a);
	/* close never removes preserved files */
	CHECK_INT(count_files(unsaved), 6);
}

/* Every byte of an "é" (c3 a9) in s is whole: a cut never split one. */
static bool valid_e_acute(const char *s)
{
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '\xc3' && s[i + 1] != '\xa9')
			return false;
		if (s[i] == '\xa9' && (i == 0 || s[i - 1] != '\xc3'))
			return false;
	}
	return true;
}

UNIT_TEST(preserve_long_label)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	char label[1200], out[2048], unsaved[256];
	const char *base;
	struct stage *s;
	size_t o = 0;

	subdir(unsaved, sizeof(unsaved), dir, "unsaved");
	/* lengths chosen so that both cuts fall inside a two-byte character */
	o += (size_t)snprintf(label + o, sizeof(label) - o, "sandbox-nam");
	for (int i = 0; i < 60; i++)
		o += (size_t)snprintf(label + o, sizeof(label) - o, "/dir%02d\xc3\xa9", i);
	snprintf(label + o, sizeof(label) - o, "/the-file-nam.txt");
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_append(s, "x", 1), 0);
	CHECK_INT(stage_preserve(s, label, out, sizeof(out)), 0);
	base = strrchr(out, '/');
	CHECK(base != NULL);
	if (base) {
		base++;
		CHECK(strlen(base) <= 255);
		CHECK_INT(strncmp(base, "sandbox-nam%2Fdir00", 19), 0);   /* the head */
		CHECK(strstr(base, "...") != NULL);
		CHECK(strstr(base, "%2Fthe-file-nam.txt.") != NULL);   /* the tail */
		CHECK(valid_e_acute(base));                            /* not cut mid-character */
	}
	CHECK_INT(count_files(unsaved), 1);
	CHECK(access(out, R_OK) == 0);
	stage_free(s);
	stage_area_close(a);
}

UNIT_TEST(preserve_across_filesystems)
{
	const char *dir = fresh_dir();
	char other[] = "/dev/shm/test_stage.XXXXXX", unsaved[256], staging[256], out[512];
	struct stage_area *a;
	struct stage *s;
	struct stat st;
	size_t len;
	char *data, buf[8];

	if (!mkdtemp(other)) {
		fprintf(stderr, "skip preserve_across_filesystems: no /dev/shm\n");
		return;
	}
	/* unsaved/ is a link to another filesystem: rename gives EXDEV */
	a = stage_area_open(dir);
	subdir(unsaved, sizeof(unsaved), dir, "unsaved");
	rmdir(unsaved);
	CHECK_INT(symlink(other, unsaved), 0);
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, "copied", 6, 0), 6);
	CHECK_INT(stage_truncate(s, 10), 0);   /* with a sparse tail */
	CHECK_INT(stage_preserve(s, "sb/f", out, sizeof(out)), 0);
	data = slurp(out, &len);
	CHECK_INT(len, 10);
	CHECK(data && memcmp(data, "copied\0\0\0\0", 10) == 0);
	CHECK_INT(stat(out, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(count_files(other), 1);
	/* the staging file is gone, and the stage now names the copy */
	subdir(staging, sizeof(staging), dir, "staging");
	CHECK_INT(count_files(staging), 0);
	CHECK_INT(stage_pread(s, buf, 6, 0), 6);
	CHECK(memcmp(buf, "copied", 6) == 0);
	stage_free(s);
	stage_area_close(a);
	CHECK_INT(count_files(other), 1);
	rm_rf(other);
}

UNIT_TEST(close_removes_leftovers)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	char staging[256], unsaved[256], out[512], foreign[300];
	struct stage *s1, *s2, *s3;

	subdir(staging, sizeof(staging), dir, "staging");
	subdir(unsaved, sizeof(unsaved), dir, "unsaved");
	/* a file of another mount sharing the directory: not ours to remove */
	subdir(foreign, sizeof(foreign), staging, "stage-other");
	close(open(foreign, O_CREAT | O_WRONLY, 0600));
	CHECK_INT(stage_new(a, &s1), 0);
	CHECK_INT(stage_new(a, &s2), 0);
	CHECK_INT(stage_new(a, &s3), 0);
	CHECK_INT(stage_append(s1, "keep", 4), 0);
	CHECK_INT(stage_preserve(s1, "sb/keep", out, sizeof(out)), 0);
	CHECK_INT(count_files(staging), 3);
	stage_free(s3);
	stage_area_close(a);   /* s2 was never freed */
	CHECK_INT(count_files(staging), 1);
	CHECK_STR(only_file(staging), "stage-other");
	CHECK_INT(count_files(unsaved), 1);
	CHECK(access(out, R_OK) == 0);
	/* the stages outlive the area: freeing them only closes */
	CHECK_INT(stage_append(s2, "x", 1), 0);
	stage_free(s2);
	stage_free(s1);
	CHECK(access(out, R_OK) == 0);
	CHECK_INT(count_files(staging), 1);
}

/* Short writes: RLIMIT_FSIZE makes the kernel write part of a request, then refuse. */
UNIT_TEST(short_writes_and_errors)
{
	struct stage_area *a = stage_area_open(fresh_dir());
	struct rlimit old, lim;
	char buf[100], big[8000];
	struct stage *s;

	memset(buf, 'b', sizeof(buf));
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 4096;
	CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CHECK_INT(stage_pwrite(s, buf, 100, 4050), 46);   /* as write(2): the part written */
	CHECK_INT(stage_size(s), 4096);
	CHECK_INT(stage_pwrite(s, buf, 100, 4096), -EFBIG);
	CHECK_INT(stage_append(s, buf, 1), -EFBIG);
	CHECK_INT(stage_size(s), 4096);
	CHECK_INT(stage_truncate(s, 5000), -EFBIG);
	CHECK_INT(stage_size(s), 4096);
	CHECK_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
	CHECK_INT(stage_pread(s, big, sizeof(big), 0), 4096);
	CHECK(memcmp(big + 4050, buf, 46) == 0);
	stage_free(s);
	stage_area_close(a);
}

/* A preserve that fails leaves the stage whole and in place, to retry. */
UNIT_TEST(preserve_failures)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	char staging[256], unsaved[256], out[512], gone[300], other[] = "/dev/shm/test_stage.XXXXXX";
	char big[8000], back[8000];
	struct rlimit old, lim;
	struct stage *s;

	subdir(staging, sizeof(staging), dir, "staging");
	subdir(unsaved, sizeof(unsaved), dir, "unsaved");
	subdir(gone, sizeof(gone), tmpdir, "gone");
	memset(big, 'q', sizeof(big));
	CHECK_INT(stage_new(a, &s), 0);
	CHECK_INT(stage_pwrite(s, big, sizeof(big), 0), sizeof(big));
	/* unsaved/ vanished (a dangling link): rename and copy both fail */
	CHECK_INT(rmdir(unsaved), 0);
	CHECK_INT(symlink(gone, unsaved), 0);
	strcpy(out, "untouched");
	CHECK_INT(stage_preserve(s, "sb/f", out, sizeof(out)), -ENOENT);
	CHECK_STR(out, "untouched");
	CHECK_INT(count_files(staging), 1);
	CHECK_INT(stage_pread(s, back, sizeof(back), 0), sizeof(back));
	CHECK(memcmp(back, big, sizeof(big)) == 0);
	/* a copy that fails halfway (file size limit) leaves no partial file */
	if (mkdtemp(other)) {
		CHECK_INT(unlink(unsaved), 0);
		CHECK_INT(symlink(other, unsaved), 0);
		CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
		signal(SIGXFSZ, SIG_IGN);
		lim = old;
		lim.rlim_cur = 4096;
		CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
		CHECK_INT(stage_preserve(s, "sb/f", out, sizeof(out)), -EFBIG);
		CHECK_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
		CHECK_INT(count_files(other), 0);
		CHECK_INT(count_files(staging), 1);
		/* and once the cause is gone, the retry works */
		CHECK_INT(stage_preserve(s, "sb/f", out, sizeof(out)), 0);
		CHECK_INT(count_files(other), 1);
		CHECK_INT(count_files(staging), 0);
		rm_rf(other);
	}
	stage_free(s);
	/* no staging directory: stage_new fails with its errno */
	rm_rf(staging);
	s = (struct stage *)1;
	CHECK_INT(stage_new(a, &s), -ENOENT);
	CHECK(s == NULL);
	stage_area_close(a);
}

UNIT_TEST(cleanup)
{
	if (tmpdir[0])
		rm_rf(tmpdir);
	CHECK(access(tmpdir, F_OK) != 0);
}

UNIT_MAIN("stage",
	UNIT_CASE(area_open),
	UNIT_CASE(new_and_free),
	UNIT_CASE(write_read_offsets),
	UNIT_CASE(large_write),
	UNIT_CASE(copy_prefix),
	UNIT_CASE(sparse_writes),
	UNIT_CASE(truncate_grow_shrink),
	UNIT_CASE(append),
	UNIT_CASE(preserve),
	UNIT_CASE(preserve_long_label),
	UNIT_CASE(preserve_across_filesystems),
	UNIT_CASE(close_removes_leftovers),
	UNIT_CASE(short_writes_and_errors),
	UNIT_CASE(preserve_failures),
	UNIT_CASE(cleanup))
