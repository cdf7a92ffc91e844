/* SPDX-License-Identifier: Apache-2.0 */
#include "unit.h"
#include "journal.h"
#include "stage.h"
#include "strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const char *fresh_dir(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	strcpy(tmpdir, "/tmp/test_journal.XXXXXX");
	if (!mkdtemp(tmpdir))
		abort();
	return tmpdir;
}

static void sample(struct journal_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->state = JOURNAL_FLUSHED;
	strcpy(r->sandbox_id, "0b7c1f7e-1111-2222-3333-444455556666");
	strcpy(r->sandbox_name, "my-box");
	strcpy(r->path, "/home/daytona/a\nb: c.txt");   /* a newline in a path */
	r->base.kind = JOURNAL_BASE_FILE;
	r->base.size = 1234;
	r->base.mtime.tv_sec = 1790000000;
	r->base.mtime.tv_nsec = 123456789;
	r->mode = 0755;
	r->size = 5678;
	r->time = 1790000100;
}

UNIT_TEST(format_round_trip)
{
	struct journal_rec r, back;
	struct strbuf sb = STRBUF_INIT;

	sample(&r);
	CHECK_INT(journal_format(&r, &sb), 0);
	CHECK_INT(journal_parse(sb.buf, sb.len, &back), 0);
	CHECK_INT(back.state, JOURNAL_FLUSHED);
	CHECK_STR(back.sandbox_id, r.sandbox_id);
	CHECK_STR(back.sandbox_name, "my-box");
	CHECK_STR(back.path, r.path);
	CHECK_INT(back.base.kind, JOURNAL_BASE_FILE);
	CHECK_INT(back.base.size, 1234);
	CHECK_INT(back.base.mtime.tv_sec, 1790000000);
	CHECK_INT(back.base.mtime.tv_nsec, 123456789);
	CHECK_INT(back.mode, 0755);
	CHECK_INT(back.size, 5678);
	CHECK_INT(back.time, 1790000100);

	/* open state, new file, unknown base */
	r.state = JOURNAL_OPEN;
	r.base.kind = JOURNAL_BASE_NEW;
	sb_reset(&sb);
	CHECK_INT(journal_format(&r, &sb), 0);
	CHECK_INT(journal_parse(sb.buf, sb.len, &back), 0);
	CHECK_INT(back.state, JOURNAL_OPEN);
	CHECK_INT(back.base.kind, JOURNAL_BASE_NEW);
	r.base.kind = JOURNAL_BASE_UNKNOWN;
	sb_reset(&sb);
	CHECK_INT(journal_format(&r, &sb), 0);
	CHECK_INT(journal_parse(sb.buf, sb.len, &back), 0);
	CHECK_INT(back.base.kind, JOURNAL_BASE_UNKNOWN);
	sb_free(&sb);
}

/* A record cut anywhere (a torn write after a reboot) or with any byte
 * changed is refused as a whole. */
UNIT_TEST(torn_and_damaged_records)
{
	struct journal_rec r, back;
	struct strbuf sb = STRBUF_INIT;
	int refused = 0, flips = 0;

	sample(&r);
	CHECK_INT(journal_format(&r, &sb), 0);
	for (size_t len = 0; len < sb.len; len++)
		refused += journal_parse(sb.buf, len, &back) == -EBADMSG;
	CHECK_INT(refused, sb.len);
	for (size_t i = 0; i < sb.len; i++) {
		char *copy = malloc(sb.len);

		memcpy(copy, sb.buf, sb.len);
		copy[i] ^= 0x04;
		flips += journal_parse(copy, sb.len, &back) == -EBADMSG;
		free(copy);
	}
	CHECK_INT(flips, sb.len);
	/* zeros where the data did not reach the disk */
	memset(sb.buf + sb.len / 2, 0, sb.len / 4);
	CHECK_INT(journal_parse(sb.buf, sb.len, &back), -EBADMSG);
	CHECK_INT(journal_parse("", 0, &back), -EBADMSG);
	/* a whole record followed by the tail of a longer earlier one */
	sb_reset(&sb);
	CHECK_INT(journal_format(&r, &sb), 0);
	sb_adds(&sb, "old tail\n");
	CHECK_INT(journal_parse(sb.buf, sb.len, &back), 0);
	CHECK_STR(back.path, r.path);
	CHECK_INT(journal_parse("garbage\n", 8, &back), -EBADMSG);
	sb_free(&sb);
}

UNIT_TEST(local_decisions)
{
	struct journal_rec r;
	char why[256];

	sample(&r);
	/* no stage: already uploaded or kept */
	CHECK_INT(journal_check_local(&r, false, 0, why, sizeof(why)), JOURNAL_DROP);
	CHECK_INT(journal_check_local(NULL, false, 0, why, sizeof(why)), JOURNAL_DROP);
	/* a damaged record: the data is kept, never uploaded anywhere */
	CHECK_INT(journal_check_local(NULL, true, 10, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "damaged") != NULL);
	/* never closed */
	r.state = JOURNAL_OPEN;
	CHECK_INT(journal_check_local(&r, true, 5678, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "never closed") != NULL);
	r.state = JOURNAL_FLUSHED;
	/* the stage lost its tail */
	CHECK_INT(journal_check_local(&r, true, 4096, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "4096 of 5678") != NULL);
	CHECK_INT(journal_check_local(&r, true, 6000, why, sizeof(why)), JOURNAL_UNSAVED);
	/* whole, with a base to check: ask the sandbox */
	CHECK_INT(journal_check_local(&r, true, 5678, why, sizeof(why)), JOURNAL_ASK);
	r.base.kind = JOURNAL_BASE_NEW;
	CHECK_INT(journal_check_local(&r, true, 5678, why, sizeof(why)), JOURNAL_ASK);
	r.base.kind = JOURNAL_BASE_UNKNOWN;
	CHECK_INT(journal_check_local(&r, true, 5678, why, sizeof(why)), JOURNAL_UNSAVED);
}

UNIT_TEST(remote_decisions)
{
	struct journal_rec r;
	struct journal_remote rem = { 0 };
	char why[256];

	sample(&r);
	rem.kind = JOURNAL_REMOTE_FILE;
	rem.size = 1234;
	rem.mtime = r.base.mtime;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UPLOAD);
	rem.mtime.tv_nsec++;   /* a newer version, same size */
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "changed") != NULL);
	rem.mtime = r.base.mtime;
	rem.size = 1235;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	rem.kind = JOURNAL_REMOTE_ABSENT;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "deleted") != NULL);
	rem.kind = JOURNAL_REMOTE_NOT_FILE;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	rem.kind = JOURNAL_REMOTE_NO_PARENT;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	rem.kind = JOURNAL_REMOTE_SANDBOX_GONE;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "no longer exists") != NULL);
	rem.kind = JOURNAL_REMOTE_UNAVAILABLE;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_KEEP);
	/* a new file: uploaded only while the name is still free */
	r.base.kind = JOURNAL_BASE_NEW;
	rem.kind = JOURNAL_REMOTE_ABSENT;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UPLOAD);
	rem.kind = JOURNAL_REMOTE_FILE;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "created") != NULL);
	/* never brings back a directory deleted meanwhile */
	rem.kind = JOURNAL_REMOTE_NO_PARENT;
	CHECK_INT(journal_check_remote(&r, &rem, why, sizeof(why)), JOURNAL_UNSAVED);
	CHECK(strstr(why, "directory") != NULL);
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

static void touch(const char *dir, const char *name, const char *content)
{
	char p[256];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, content, strlen(content)) < 0)
		abort();
	close(fd);
}

UNIT_TEST(files_and_scan)
{
	const char *dir = fresh_dir();
	struct journal_rec r, back;
	struct strbuf text = STRBUF_INIT;
	struct stat st;
	char **names;
	size_t n;
	int fd;

	sample(&r);
	CHECK_INT(journal_read(dir, "stage-aaaaaa", &back), -ENOENT);
	fd = journal_create(dir, "stage-aaaaaa", &r, true);
	CHECK(fd >= 0);
	CHECK_INT(journal_read(dir, "stage-aaaaaa", &back), 0);
	CHECK_STR(back.path, r.path);
	/* rewritten in place, shorter: what is left of the longer one is cut */
	r.state = JOURNAL_OPEN;
	strcpy(r.path, "/x");
	CHECK_INT(journal_update(fd, dir, &r, false), 0);
	CHECK_INT(journal_read(dir, "stage-aaaaaa", &back), 0);
	CHECK_INT(back.state, JOURNAL_OPEN);
	CHECK_STR(back.path, "/x");
	CHECK_INT(fstat(fd, &st), 0);
	sb_reset(&text);
	journal_format(&r, &text);
	CHECK_INT(st.st_size, text.len);
	/* and longer again, durably */
	sample(&r);
	CHECK_INT(journal_update(fd, dir, &r, true), 0);
	CHECK_INT(journal_read(dir, "stage-aaaaaa", &back), 0);
	CHECK_STR(back.path, r.path);
	close(fd);
	sb_free(&text);
	touch(dir, "stage-aaaaaa", "data");
	/* a stage without a record, a half-written record, a record without
	 * a stage, a damaged record, and something that is not ours */
	touch(dir, "stage-orphan", "uploaded already");
	touch(dir, "stage-bbbbbb.rec.tmp", "daytonafs-jou");
	touch(dir, "stage-cccccc.rec", "daytonafs-journal 1\nstate fl");
	touch(dir, "stage-dddddd", "kept");
	touch(dir, "stage-dddddd.rec", "garbage");
	touch(dir, "README", "x");
	CHECK_INT(journal_scan(dir, &names, &n), 0);
	CHECK_INT(n, 2);
	for (size_t i = 0; i < n; i++)
		CHECK(!strcmp(names[i], "stage-aaaaaa") || !strcmp(names[i], "stage-dddddd"));
	journal_names_free(names, n);
	/* the orphan stage, the temporary and the record without a stage are
	 * gone; the rest stays */
	CHECK_INT(count_files(dir), 5);
	CHECK_INT(journal_read(dir, "stage-dddddd", &back), -EBADMSG);
	CHECK_INT(journal_read(dir, "stage-cccccc", &back), -ENOENT);
	/* scanning again changes nothing (recovery is idempotent) */
	CHECK_INT(journal_scan(dir, &names, &n), 0);
	CHECK_INT(n, 2);
	journal_names_free(names, n);
	CHECK_INT(count_files(dir), 5);
	CHECK_INT(journal_remove(dir, "stage-aaaaaa"), 0);
	CHECK_INT(journal_remove(dir, "stage-aaaaaa"), 0);
	CHECK_INT(journal_read(dir, "stage-aaaaaa", &back), -ENOENT);
	CHECK_INT(journal_scan("/nonexistent/x", &names, &n), -ENOENT);
}

UNIT_TEST(note_says_where_from)
{
	struct journal_rec r;
	struct strbuf sb = STRBUF_INIT;

	sample(&r);
	journal_note(&sb, &r, "stage-aaaaaa", "the sandbox no longer exists", 1790000200);
	CHECK(strstr(sb_str(&sb), "why: the sandbox no longer exists\n") != NULL);
	CHECK(strstr(sb_str(&sb), "sandbox: my-box (id 0b7c1f7e-1111-2222-3333-444455556666)\n") != NULL);
	CHECK(strstr(sb_str(&sb), "path: /home/daytona/a\nb: c.txt\n") != NULL);
	CHECK(strstr(sb_str(&sb), "recovered: 2026-09-21 ") != NULL);
	sb_reset(&sb);
	journal_note(&sb, NULL, "stage-aaaaaa", "damaged", 0);
	CHECK(strstr(sb_str(&sb), "staged as: stage-aaaaaa\n") != NULL);
	sb_free(&sb);
}

/* One mount per cache directory: a second area on it is refused. */
UNIT_TEST(cache_dir_lock)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir), *b;

	CHECK(a != NULL);
	errno = 0;
	b = stage_area_open(dir);
	CHECK(b == NULL);
	CHECK_INT(errno, EBUSY);
	stage_area_close(a);
	b = stage_area_open(dir);
	CHECK(b != NULL);
	stage_area_close(b);
}

/* A leftover stage is taken over, and kept in place when asked. */
UNIT_TEST(adopt_stage)
{
	const char *dir = fresh_dir();
	struct stage_area *a = stage_area_open(dir);
	struct stage *s;
	char buf[16] = { 0 };

	touch(stage_area_staging(a), "stage-left", "left data");
	CHECK_INT(stage_adopt(a, "stage-missing", &s), -ENOENT);
	CHECK_INT(stage_adopt(a, "stage-left", &s), 0);
	CHECK_INT(stage_size(s), 9);
	CHECK_STR(stage_name(s), "stage-left");
	CHECK_INT(stage_pread(s, buf, sizeof(buf), 0), 9);
	CHECK_STR(buf, "left data");
	stage_close_keep(s);
	CHECK_INT(count_files(stage_area_staging(a)), 1);
	stage_area_close(a);   /* not a live stage any more: stays */
	a = stage_area_open(dir);
	CHECK_INT(count_files(stage_area_staging(a)), 1);
	stage_area_close(a);
}

UNIT_TEST(cleanup)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK(access(tmpdir, F_OK) != 0);
}

UNIT_MAIN("journal",
	UNIT_CASE(format_round_trip),
	UNIT_CASE(torn_and_damaged_records),
	UNIT_CASE(local_decisions),
	UNIT_CASE(remote_decisions),
	UNIT_CASE(files_and_scan),
	UNIT_CASE(note_says_where_from),
	UNIT_CASE(cache_dir_lock),
	UNIT_CASE(adopt_stage),
	UNIT_CASE(cleanup))
