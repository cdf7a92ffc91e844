/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_vercel_bulk.c - Vercel's bulk download and shared upload commands
 * (vercel_bulk.c): their output parsers, and the commands themselves run by
 * the local /bin/sh in a temporary directory through a fake exec (the
 * provider's exec returns the script's output and exit status as this one).
 */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strbuf.h"
#include "urlenc.h"
#include "vercel_bulk.h"

static int execs;

/* Runs command with sh -c, its stdout as the output (as the provider's
 * wrapper gives it back). */
static int fake_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
		     const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
		     struct sp_error *err)
{
	struct strbuf out = STRBUF_INIT;
	int fds[2], st;
	pid_t pid;
	char buf[4096];
	ssize_t r;

	(void)impl; (void)box; (void)cwd; (void)envs; (void)n_envs; (void)timeout_s; (void)err;
	execs++;
	mkdir("/tmp/.daytonafs", 0700);
	mkdir("/tmp/.daytonafs/out", 0700);
	if (pipe(fds) < 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((r = read(fds[0], buf, sizeof(buf))) > 0)
		sb_add(&out, buf, (size_t)r);
	close(fds[0]);
	waitpid(pid, &st, 0);
	*exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	sb_adds(&out, "");
	*output = sb_detach(&out);
	return 0;
}

static char dir[] = "/tmp/vbulk-XXXXXX";

static void put(const char *name, const void *data, size_t len, mode_t mode)
{
	char p[256];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	CHECK(fd >= 0);
	CHECK(write(fd, data, len) == (ssize_t)len);
	close(fd);
	chmod(p, mode);
}

static char *path_of(const char *name)
{
	char *p = malloc(256);

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

UNIT_TEST(test_bulk_parse)
{
	struct sp_bulk_file f[2] = { { .path = "/a", .max = 10 }, { .path = "/b", .max = 10 } };

	/* a file changed while tar read it: nothing */
	CHECK_INT(vercel_bulk_parse("X\n", f, 2), -EAGAIN);
	/* not base64, no end block, an empty answer */
	CHECK_INT(vercel_bulk_parse("*\n", f, 2), -EIO);
	CHECK_INT(vercel_bulk_parse("", f, 2), -EIO);
	CHECK(f[0].data == NULL && f[1].data == NULL);
}

UNIT_TEST(test_upload_parse)
{
	struct sp_upload_item it[2];

	memset(it, 0, sizeof(it));
	CHECK_INT(vercel_upload_parse("R 0\nR 13 sh: x: Permission denied \n", it, 2), 0);
	CHECK_INT(it[0].rc, 0);
	CHECK_INT(it[1].rc, -EACCES);
	CHECK(strstr(it[1].msg, "Permission denied") != NULL);
	CHECK_INT(vercel_upload_parse("R 0\n", it, 2), -EIO);
	CHECK_INT(vercel_upload_parse("R 0\nR 0\nR 0\n", it, 2), -EIO);
	CHECK_INT(vercel_upload_parse("R x\nR 0\n", it, 2), -EIO);
}

UNIT_TEST(test_bulk_download_runs)
{
	static const char bin[] = { 'a', 0, (char)0xff, '\n', 'b' };
	char big[300];
	struct sp_bulk_file f[6];
	struct sp_error err = { 0 };
	char *paths[6];

	memset(big, 'x', sizeof(big));
	put("bin", bin, sizeof(bin), 0644);
	put("empty", "", 0, 0644);
	put("big", big, sizeof(big), 0644);
	put("it's odd\nname", "q", 1, 0644);
	paths[0] = path_of("bin");
	paths[1] = path_of("empty");
	paths[2] = path_of("missing");
	paths[3] = path_of("big");
	paths[4] = path_of("it's odd\nname");
	paths[5] = malloc(512);
	snprintf(paths[5], 512, "%s/%0150d", dir, 7);   /* over tar's 100 bytes of name */
	put(paths[5] + strlen(dir) + 1, "long", 4, 0644);
	memset(f, 0, sizeof(f));
	for (int i = 0; i < 6; i++) {
		f[i].path = paths[i];
		f[i].max = 256;
	}
	execs = 0;
	CHECK_INT(vercel_bulk_download(fake_exec, NULL, NULL, f, 6, &err), 0);
	CHECK_INT(execs, 1);
	/* a directory is not sent either */
	CHECK_INT(f[0].err, 0);
	CHECK_INT(f[0].len, sizeof(bin));
	CHECK(f[0].data && memcmp(f[0].data, bin, sizeof(bin)) == 0);
	CHECK_INT(f[1].err, 0);
	CHECK_INT(f[1].len, 0);
	CHECK_INT(f[2].err, -ENOENT);
	CHECK_INT(f[3].err, -ENOENT);   /* over max: not sent, read as usual */
	CHECK_INT(f[4].err, 0);
	CHECK(f[4].len == 1 && f[4].data[0] == 'q');
	CHECK_INT(f[5].err, 0);
	CHECK(f[5].len == 4 && !memcmp(f[5].data, "long", 4));
	sp_bulk_files_clear(f, 6);
	for (int i = 0; i < 6; i++)
		free(paths[i]);
}

static int stage(const void *data, size_t len)
{
	char p[] = "/tmp/vbulk-stage-XXXXXX";
	int fd = mkstemp(p);

	CHECK(fd >= 0);
	unlink(p);
	CHECK(write(fd, data, len) == (ssize_t)len);
	return fd;
}

/* The first upload of a mount removes the records older than a day (each
 * mount leaves its own; no send outlives its command's time limit), and
 * keeps the others. Runs first: the sweep is once per process. */
UNIT_TEST(test_upload_sweeps_old_records)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	char *path = path_of("sweep");
	struct stat st;
	int fd;

	mkdir("/tmp/.daytonafs", 0700);
	mkdir("/tmp/.daytonafs/out", 0700);
	mkdir("/tmp/.daytonafs/out/up-seq", 0700);
	CHECK_INT(system("cd /tmp/.daytonafs/out/up-seq && echo 1 x > 00000000000000aa-unit-old && "
			 "touch -d '2 days ago' 00000000000000aa-unit-old && echo 1 x > 00000000000000aa-unit-new"), 0);
	fd = stage("s", 1);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 1 };
	CHECK_INT(vercel_upload_many(fake_exec, NULL, NULL, &it, 1, &err), 0);
	CHECK_INT(it.rc, 0);
	close(fd);
	CHECK(stat("/tmp/.daytonafs/out/up-seq/00000000000000aa-unit-old", &st) < 0 && errno == ENOENT);
	CHECK_INT(stat("/tmp/.daytonafs/out/up-seq/00000000000000aa-unit-new", &st), 0);
	CHECK_INT(stat("/tmp/.daytonafs/out/up-seq/lock", &st), 0);
	unlink("/tmp/.daytonafs/out/up-seq/00000000000000aa-unit-new");
	unlink(path);
	free(path);
}

UNIT_TEST(test_upload_many_in_place)
{
	static char data[70000];
	struct sp_upload_item it[4];
	struct sp_error err = { 0 };
	struct stat before, after;
	char *paths[4], *link2;
	int fds[4];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	put("old", "previous content that is longer", 31, 0640);
	paths[0] = path_of("old");
	link2 = path_of("old-link");
	CHECK_INT(link(paths[0], link2), 0);
	CHECK_INT(stat(paths[0], &before), 0);
	put("ro", "x", 1, 0400);
	paths[1] = path_of("ro");
	paths[2] = path_of("new file");
	paths[3] = path_of("nodir/f");
	fds[0] = stage("new", 3);
	fds[1] = stage("y2", 2);
	fds[2] = stage(data, sizeof(data));
	fds[3] = stage("z", 1);
	memset(it, 0, sizeof(it));
	it[0] = (struct sp_upload_item){ .path = paths[0], .fd = fds[0], .len = 3 };
	it[1] = (struct sp_upload_item){ .path = paths[1], .fd = fds[1], .len = 2 };
	it[2] = (struct sp_upload_item){ .path = paths[2], .fd = fds[2], .len = sizeof(data) };
	it[3] = (struct sp_upload_item){ .path = paths[3], .fd = fds[3], .len = 1 };
	execs = 0;
	CHECK_INT(vercel_upload_many(fake_exec, NULL, NULL, it, 4, &err), 0);
	CHECK_INT(execs, 1);
	CHECK_INT(it[0].rc, 0);
	CHECK_INT(it[1].rc, 0);
	CHECK_INT(it[2].rc, 0);
	CHECK_INT(it[3].rc, -ENOENT);
	/* the script answered for it (R 2) and its one send ran: no send of
	 * it is on its way, so no fence */
	CHECK_INT(vercel_upload_fences(), 0);
	/* in place: the same inode, mode and links, the new content */
	CHECK_INT(stat(paths[0], &after), 0);
	CHECK(after.st_ino == before.st_ino);
	CHECK_INT(after.st_mode & 07777, 0640);
	CHECK_INT(after.st_nlink, 2);
	CHECK_INT(after.st_size, 3);
	/* the owner's read-only file: written, its mode back */
	CHECK_INT(stat(paths[1], &after), 0);
	CHECK_INT(after.st_mode & 07777, 0400);
	CHECK_INT(after.st_size, 2);
	CHECK_INT(stat(paths[2], &after), 0);
	CHECK_INT(after.st_size, sizeof(data));
	{
		char *back = malloc(sizeof(data));
		int fd = open(paths[2], O_RDONLY);

		CHECK(fd >= 0 && read(fd, back, sizeof(data)) == (ssize_t)sizeof(data));
		CHECK(memcmp(back, data, sizeof(data)) == 0);
		close(fd);
		free(back);
	}
	for (int i = 0; i < 4; i++) {
		close(fds[i]);
		unlink(paths[i]);
		free(paths[i]);
	}
	unlink(link2);
	free(link2);
}

static char *captured;

/* Keeps the command and says every file landed, running nothing: a send
 * whose answer was lost while it still waits to run in the sandbox. */
static int capture_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
			struct sp_error *err)
{
	(void)impl; (void)box; (void)cwd; (void)envs; (void)n_envs; (void)timeout_s; (void)err;
	free(captured);
	captured = strdup(command);
	*exit_code = 0;
	*output = strdup("R 0\n");
	return 0;
}

static char *slurp_file(const char *path)
{
	static char buf[256];
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = '\0';
	return buf;
}

/* A send of an upload that runs after a later upload of the same path (its
 * answer was lost, the upload sent again and done, then new bytes uploaded)
 * writes nothing: old bytes never land over new ones. */
UNIT_TEST(test_upload_stale_send_writes_nothing)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	char *path = path_of("stale"), *out = NULL;
	int fd, status = -1;

	put("stale", "v0", 2, 0644);
	fd = stage("old", 3);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 3 };
	CHECK_INT(vercel_upload_many(capture_exec, NULL, NULL, &it, 1, &err), 0);
	close(fd);
	CHECK(captured != NULL);
	fd = stage("new", 3);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 3 };
	CHECK_INT(vercel_upload_many(fake_exec, NULL, NULL, &it, 1, &err), 0);
	CHECK_INT(it.rc, 0);
	close(fd);
	CHECK_STR(slurp_file(path), "new");
	/* the first send runs at last */
	CHECK_INT(fake_exec(NULL, NULL, captured ? captured : "exit 9", NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_INT(status, 0);
	CHECK_STR(out ? out : "", "R 0\n");
	CHECK_STR(slurp_file(path), "new");
	/* a send of the same upload again (a retry) still writes */
	put("stale", "v1", 2, 0644);
	free(out);
	out = NULL;
	fd = stage("newer", 5);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 5 };
	CHECK_INT(vercel_upload_many(capture_exec, NULL, NULL, &it, 1, &err), 0);
	close(fd);
	CHECK_INT(fake_exec(NULL, NULL, captured ? captured : "exit 9", NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_STR(slurp_file(path), "newer");
	free(out);
	out = NULL;
	CHECK_INT(fake_exec(NULL, NULL, captured ? captured : "exit 9", NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_STR(out ? out : "", "R 0\n");
	CHECK_STR(slurp_file(path), "newer");
	free(out);
	free(captured);
	captured = NULL;
	unlink(path);
	free(path);
}

/* The second send of an upload wrote (the answer to the first was lost),
 * then the user removed the file; the first send runs at last: it writes
 * nothing, and the file stays gone (it wrote again before: the record was
 * written before the copy, and only a greater number was skipped). */
UNIT_TEST(test_upload_late_duplicate_after_a_delete)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	char *path = path_of("dup-deleted"), *out = NULL;
	struct stat st;
	int fd, status = -1;

	fd = stage("old", 3);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 3 };
	CHECK_INT(vercel_upload_many(capture_exec, NULL, NULL, &it, 1, &err), 0);
	close(fd);
	CHECK(captured != NULL);
	/* the send that answered */
	CHECK_INT(fake_exec(NULL, NULL, captured ? captured : "exit 9", NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_STR(out ? out : "", "R 0\n");
	CHECK_STR(slurp_file(path), "old");
	free(out);
	out = NULL;
	CHECK_INT(unlink(path), 0);
	/* the first, late */
	CHECK_INT(fake_exec(NULL, NULL, captured ? captured : "exit 9", NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_INT(status, 0);
	CHECK_STR(out ? out : "", "R 0\n");
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	free(out);
	free(captured);
	captured = NULL;
	free(path);
}

/* 64-bit FNV-1a, as the command names a path's record. */
static unsigned long long fnv(const char *s)
{
	unsigned long long h = 14695981039346656037ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

/* What a mount whose clock is an hour ahead left (the record of a path
 * numbered by its clock, with no id of ours) never stops this mount's
 * upload: numbers of different mounts are not compared. Before, the upload
 * wrote nothing and said R 0. */
UNIT_TEST(test_upload_after_another_mount_s_record)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	char *path = path_of("other-mount");
	char rec[600], line[1200];
	int fd, n;

	put("other-mount", "v1", 2, 0644);
	/* the record, in the old format and in the new one with another id */
	n = snprintf(line, sizeof(line), "%llu ", 4102444800000000ull);
	for (const char *c = path; *c; c++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", (unsigned char)*c);
	mkdir("/tmp/.daytonafs", 0700);
	mkdir("/tmp/.daytonafs/out", 0700);
	mkdir("/tmp/.daytonafs/out/up-seq", 0700);
	snprintf(rec, sizeof(rec), "/tmp/.daytonafs/out/up-seq/%016llx", fnv(path));
	fd = open(rec, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, line, strlen(line)) == (ssize_t)strlen(line) && write(fd, "\n", 1) == 1);
	close(fd);
	fd = stage("v2", 2);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 2 };
	CHECK_INT(vercel_upload_many(fake_exec, NULL, NULL, &it, 1, &err), 0);
	CHECK_INT(it.rc, 0);
	close(fd);
	CHECK_STR(slurp_file(path), "v2");
	unlink(rec);
	unlink(path);
	free(path);
}

static char *failed_send;

/* Keeps the command, runs nothing, and fails as a 500 does (not sent
 * again): a send still on its way when the upload gave up. */
static int failing_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
			struct sp_error *err)
{
	(void)impl; (void)box; (void)cwd; (void)envs; (void)n_envs; (void)timeout_s; (void)exit_code; (void)output;
	free(failed_send);
	failed_send = strdup(command);
	return sp_error_set(err, -EIO, 500, "internal error");
}

/* An upload failed (its send may still run); the mount then deletes the
 * file. The delete's command carries the fence of the failed upload's
 * path: the late send, running after it, writes nothing (R 116), and the
 * file stays gone. A later upload of this mount still writes. */
UNIT_TEST(test_upload_fence_after_a_failed_upload)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct sp_box box = { "box-1", NULL }, other = { "box-2", NULL };
	char *path = path_of("fenced"), *out = NULL;
	struct stat st;
	uint64_t ticket;
	int fd, status = -1;

	put("fenced", "v0", 2, 0644);
	/* the missing directory's file of test_upload_many_in_place left
	 * none: its single send answered R 2 for it, and nothing is on its way */
	CHECK_INT(vercel_upload_fences(), 0);
	fd = stage("old", 3);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 3 };
	CHECK_INT(vercel_upload_many(failing_exec, NULL, &box, &it, 1, &err), -EIO);
	close(fd);
	CHECK(failed_send != NULL);
	CHECK_INT(vercel_upload_fences(), 1);
	/* another sandbox's command carries none */
	CHECK(vercel_upload_fence(&other, &cmd) == 0);
	CHECK_INT((int)cmd.len, 0);
	/* the delete, with the fence before it */
	ticket = vercel_upload_fence(&box, &cmd);
	CHECK(ticket != 0);
	sb_adds(&cmd, "rm -f -- ");
	sh_word(&cmd, path);
	CHECK_INT(fake_exec(NULL, NULL, sb_str(&cmd), NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_INT(status, 0);
	CHECK_INT(vercel_upload_fence_result(out), 0);
	CHECK_STR(out ? out : "", "");
	vercel_upload_fence_done(&box, ticket);
	CHECK_INT(vercel_upload_fences(), 0);
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	free(out);
	out = NULL;
	/* the failed upload's send, late */
	CHECK_INT(fake_exec(NULL, NULL, failed_send ? failed_send : "exit 9", NULL, NULL, 0, 10, &status, &out,
			    &err), 0);
	CHECK_INT(status, 0);
	CHECK(out && !strncmp(out, "R 116 ", 6));
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	free(out);
	/* a new upload of the path writes */
	fd = stage("new", 3);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 3 };
	CHECK_INT(vercel_upload_many(fake_exec, NULL, &box, &it, 1, &err), 0);
	CHECK_INT(it.rc, 0);
	close(fd);
	CHECK_STR(slurp_file(path), "new");
	CHECK_INT(vercel_upload_fences(), 0);
	free(failed_send);
	failed_send = NULL;
	sb_free(&cmd);
	unlink(path);
	free(path);
}

/* A lock that cannot be opened (here a directory; in a sandbox, a lock
 * file another user made) is a clear error, status 124 and why, not dash's
 * exit 2 from a failed redirection of exec; nothing is written. */
UNIT_TEST(test_upload_lock_that_cannot_be_opened)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	char *path = path_of("unlockable");
	int fd;

	put("unlockable", "v0", 2, 0644);
	mkdir("/tmp/.daytonafs", 0700);
	mkdir("/tmp/.daytonafs/out", 0700);
	mkdir("/tmp/.daytonafs/out/up-seq", 0700);
	unlink("/tmp/.daytonafs/out/up-seq/lock");
	CHECK_INT(mkdir("/tmp/.daytonafs/out/up-seq/lock", 0700), 0);
	fd = stage("v1", 2);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 2 };
	CHECK_INT(vercel_upload_many(fake_exec, NULL, NULL, &it, 1, &err), -EIO);
	CHECK(strstr(err.message, "ended with 124") != NULL);
	CHECK(strstr(err.message, "cannot open the upload lock") != NULL);
	close(fd);
	rmdir("/tmp/.daytonafs/out/up-seq/lock");
	CHECK_STR(slurp_file(path), "v0");
	/* (its fence, for the next command) */
	{
		struct strbuf cmd = STRBUF_INIT;

		vercel_upload_fence_done(NULL, vercel_upload_fence(NULL, &cmd));
		sb_free(&cmd);
	}
	unlink(path);
	free(path);
}

/* The record's key of a path (FNV-1a 64, as vercel_bulk.c's path_key). */
static unsigned long long key_of(const char *path)
{
	unsigned long long h = 14695981039346656037ULL;

	for (const unsigned char *c = (const unsigned char *)path; *c; c++)
		h = (h ^ *c) * 1099511628211ULL;
	return h;
}

/* A fence that cannot be written (here a directory in its record's place;
 * in a sandbox, a full disk) does not stop the command: the command runs,
 * its output is whole, and the fence stays for the next command. */
UNIT_TEST(test_an_unwritable_fence_does_not_stop_the_command)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT;
	struct sp_box box = { "box-u", NULL };
	char *path = path_of("unfenceable"), *out = NULL, rec[256];
	uint64_t ticket;
	int fd, status = -1;

	CHECK_INT(vercel_upload_fences(), 0);
	fd = stage("old", 3);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 3 };
	CHECK_INT(vercel_upload_many(failing_exec, NULL, &box, &it, 1, &err), -EIO);
	close(fd);
	CHECK_INT(vercel_upload_fences(), 1);
	snprintf(rec, sizeof(rec), "/tmp/.daytonafs/out/up-seq/%s-%016llx", vercel_upload_mount_id(),
		 key_of(path));
	unlink(rec);
	CHECK_INT(mkdir(rec, 0700), 0);
	ticket = vercel_upload_fence(&box, &cmd);
	CHECK(ticket != 0);
	sb_adds(&cmd, "echo ran; exit 3\n");
	CHECK_INT(fake_exec(NULL, NULL, sb_str(&cmd), NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_INT(status, 3);
	CHECK_INT(vercel_upload_fence_result(out), -EAGAIN);
	CHECK_STR(out ? out : "", "ran\n");
	free(out);
	out = NULL;
	CHECK_INT(vercel_upload_fences(), 1);
	/* once it can be written, the next command writes it */
	rmdir(rec);
	sb_reset(&cmd);
	ticket = vercel_upload_fence(&box, &cmd);
	CHECK(ticket != 0);
	sb_adds(&cmd, "echo ran\n");
	CHECK_INT(fake_exec(NULL, NULL, sb_str(&cmd), NULL, NULL, 0, 10, &status, &out, &err), 0);
	CHECK_INT(vercel_upload_fence_result(out), 0);
	CHECK_STR(out ? out : "", "ran\n");
	vercel_upload_fence_done(&box, ticket);
	CHECK_INT(vercel_upload_fences(), 0);
	free(out);
	free(failed_send);
	failed_send = NULL;
	sb_free(&cmd);
	unlink(rec);
	free(path);
}

/* Two sends of one upload never run at once: the second waits for the
 * first's lock, so the chmod u+w ... chmod MODE of a read-only file cannot
 * interleave (a mode lost for good). Here the test holds the lock: the
 * send writes nothing until it lets go, then writes and puts the mode back. */
UNIT_TEST(test_upload_waits_for_the_lock)
{
	struct sp_upload_item it;
	struct sp_error err = { 0 };
	struct stat st;
	char *path = path_of("ro-locked");
	int fd, lk, status = -1;
	pid_t pid;

	put("ro-locked", "x", 1, 0400);
	fd = stage("yz", 2);
	it = (struct sp_upload_item){ .path = path, .fd = fd, .len = 2 };
	CHECK_INT(vercel_upload_many(capture_exec, NULL, NULL, &it, 1, &err), 0);
	close(fd);
	mkdir("/tmp/.daytonafs", 0700);
	mkdir("/tmp/.daytonafs/out", 0700);
	mkdir("/tmp/.daytonafs/out/up-seq", 0700);
	lk = open("/tmp/.daytonafs/out/up-seq/lock", O_WRONLY | O_CREAT | O_APPEND, 0600);
	CHECK(lk >= 0);
	CHECK_INT(flock(lk, LOCK_EX), 0);
	pid = fork();
	if (pid == 0) {
		int ec;
		char *o = NULL;

		close(lk);
		fake_exec(NULL, NULL, captured ? captured : "exit 9", NULL, NULL, 0, 10, &ec, &o, &err);
		_exit(o && !strcmp(o, "R 0\n") && ec == 0 ? 0 : 1);
	}
	usleep(400000);
	CHECK_STR(slurp_file(path), "x");
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0400);
	flock(lk, LOCK_UN);
	close(lk);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_STR(slurp_file(path), "yz");
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0400);
	free(captured);
	captured = NULL;
	unlink(path);
	free(path);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(test_bulk_parse),
		UNIT_CASE(test_upload_parse),
		UNIT_CASE(test_bulk_download_runs),
		UNIT_CASE(test_upload_sweeps_old_records),
		UNIT_CASE(test_upload_many_in_place),
		UNIT_CASE(test_upload_stale_send_writes_nothing),
		UNIT_CASE(test_upload_waits_for_the_lock),
		UNIT_CASE(test_upload_late_duplicate_after_a_delete),
		UNIT_CASE(test_upload_after_another_mount_s_record),
		UNIT_CASE(test_upload_fence_after_a_failed_upload),
		UNIT_CASE(test_an_unwritable_fence_does_not_stop_the_command),
		UNIT_CASE(test_upload_lock_that_cannot_be_opened),
	};
	char cmd[64];
	int rc;

	if (!mkdtemp(dir))
		return 1;
	rc = unit_run("vercel_bulk", cases, sizeof(cases) / sizeof(cases[0]));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
