/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A provider that is nothing but memory, behind the interface of
 * provider.h, driving the generic layers: commands as files (exec.c: start,
 * list, read) and the upload of a written file (files_upload_fd). It has no
 * rename, delete, mkdir, chmod or info, as Vercel has none: those fail with
 * ENOSYS through the interface. The point is that the layers above the
 * provider need nothing of Daytona.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"
#include "exec_int.h"   /* EMPTY_EXIT_GRACE_MS, now_ms */
#include "fs_int.h"
#include "provider.h"
#include "unit.h"

#define FAKE_FILES 64

/* The sandbox's files: whole paths, a directory being any prefix of one. */
struct fake {
	pthread_mutex_t lock;
	struct fake_file {
		char *path;
		char *data;
		size_t len;
	} files[FAKE_FILES];
	size_t n;
	int lists, downloads, uploads, execs;
	char last_script_start[64];
	/* The launcher answers as a sandbox where the command ended within
	 * the wait: the history (none before it), the end, the output. */
	bool fast;
	/* The launcher's command 1 has an exit still empty: caught between
	 * the wrapper's create of it and its write. */
	bool empty_exit;
	/* A download of an exit finds it gone: listed, then removed by a
	 * wrapper whose write of it failed. */
	bool exit_vanishes;
};

static struct fake_file *fake_find(struct fake *f, const char *path)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->files[i].path, path))
			return &f->files[i];
	return NULL;
}

static void fake_put(struct fake *f, const char *path, const void *data, size_t len)
{
	struct fake_file *ff = fake_find(f, path);

	if (!ff) {
		if (f->n == FAKE_FILES)
			abort();
		ff = &f->files[f->n++];
		ff->path = strdup(path);
	} else {
		free(ff->data);
	}
	ff->data = malloc(len + 1);
	memcpy(ff->data, data, len);
	ff->len = len;
}

/* The entries right under dir: its files, and the directories their paths
 * pass through. ENOENT when nothing is under dir. */
static int fake_fs_list(void *impl, const struct sp_box *box, const char *dir, struct sp_fileinfo **out,
			size_t *n, struct sp_error *err)
{
	struct fake *f = impl;
	size_t dlen = strlen(dir), k = 0;
	struct sp_fileinfo *v = calloc(FAKE_FILES, sizeof(*v));

	pthread_mutex_lock(&f->lock);
	f->lists++;
	for (size_t i = 0; i < f->n; i++) {
		const char *p = f->files[i].path, *rest, *slash;
		size_t nlen;
		bool seen = false;

		if (strncmp(p, dir, dlen) || p[dlen] != '/')
			continue;
		rest = p + dlen + 1;
		slash = strchr(rest, '/');
		nlen = slash ? (size_t)(slash - rest) : strlen(rest);
		for (size_t j = 0; j < k; j++)
			seen = seen || (strlen(v[j].name) == nlen && !strncmp(v[j].name, rest, nlen));
		if (seen)
			continue;
		v[k].name = strndup(rest, nlen);
		v[k].is_dir = slash != NULL;
		v[k].mode = slash ? S_IFDIR | 0755 : S_IFREG | 0644;
		v[k].size = slash ? 0 : f->files[i].len;
		k++;
	}
	pthread_mutex_unlock(&f->lock);
	if (!k) {
		free(v);
		return sp_error_set(err, -ENOENT, 404, "list %s: no such directory", dir);
	}
	*out = v;
	*n = k;
	return 0;
}

static int64_t fake_fs_download(void *impl, const struct sp_box *box, const char *path, uint64_t off,
				uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err)
{
	struct fake *f = impl;
	struct fake_file *ff;
	size_t got = 0;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	f->downloads++;
	ff = fake_find(f, path);
	if (f->exit_vanishes && strlen(path) > 5 && !strcmp(path + strlen(path) - 5, "/exit"))
		ff = NULL;
	if (ff && off < ff->len) {
		got = ff->len - off;
		if (len && len < got)
			got = len;
		rc = sink(ctx, ff->data + off, got);
	}
	pthread_mutex_unlock(&f->lock);
	if (!ff)
		return sp_error_set(err, -ENOENT, 404, "download %s: no such file", path);
	return rc < 0 ? rc : (int64_t)got;
}

static int fake_fs_upload_fd(void *impl, const struct sp_box *box, const char *path, int fd, uint64_t len,
			     struct sp_error *err)
{
	struct fake *f = impl;
	char *buf = malloc(len + 1);

	if (pread(fd, buf, len, 0) != (ssize_t)len) {
		free(buf);
		return sp_error_set(err, -EIO, 0, "upload %s: short read", path);
	}
	pthread_mutex_lock(&f->lock);
	f->uploads++;
	fake_put(f, path, buf, len);
	pthread_mutex_unlock(&f->lock);
	free(buf);
	return 0;
}

/* Runs nothing: a launcher (it prints "daytonafs-started N" in a real
 * sandbox) gets its command 1 made with its output, as if it had run and
 * ended; anything else answers exit 0 and no output. */
static int fake_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
		     const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
		     struct sp_error *err)
{
	struct fake *f = impl;
	bool launcher = strstr(command, "daytonafs-started") != NULL;

	pthread_mutex_lock(&f->lock);
	f->execs++;
	snprintf(f->last_script_start, sizeof(f->last_script_start), "%s", command);
	if (launcher) {
		fake_put(f, "/tmp/.daytonafs/cmd/1/command", "echo hi", 7);
		fake_put(f, "/tmp/.daytonafs/cmd/1/stdout", "hi\n", 3);
		fake_put(f, "/tmp/.daytonafs/cmd/1/stderr", "", 0);
		if (f->empty_exit)
			fake_put(f, "/tmp/.daytonafs/cmd/1/exit", "", 0);
		else
			fake_put(f, "/tmp/.daytonafs/cmd/1/exit", "0\n", 2);
	}
	pthread_mutex_unlock(&f->lock);
	*exit_code = 0;
	if (output)
		*output = strdup(!launcher ? "" : f->fast ? "daytonafs-have-end\ndaytonafs-started 1\n"
				 "daytonafs-exit 0 \ndaytonafs-stdout 3\naGkK\ndaytonafs-stderr 0\n"
				 "daytonafs-inline-end\n" : "daytonafs-started 1\n");
	return 0;
}

static const struct sandbox_provider_ops fake_ops = {
	.fs_list = fake_fs_list,
	.fs_download = fake_fs_download,
	.fs_upload_fd = fake_fs_upload_fd,
	.exec = fake_exec,
	.exec_activity = fake_exec,
};

static struct fake fake = { .lock = PTHREAD_MUTEX_INITIALIZER };
static struct sandbox_provider fake_provider = {
	.name = "fake",
	.caps = SP_CAP_FS_LIST | SP_CAP_RANGED_READ | SP_CAP_STREAM_UPLOAD,
	.ops = &fake_ops,
	.impl = &fake,
};
static const struct sp_box box = { "sb-1", "http://fake.invalid/toolbox" };

UNIT_TEST(exec_start_list_read)
{
	struct exec_options o;
	struct exec_mgr *m;
	struct exec_spec spec = { .command = "echo hi" };
	struct sp_error err = { 0 };
	unsigned n = 0, *ns = NULL;
	size_t count = 0;
	char buf[16];
	ssize_t got;

	exec_options_defaults(&o);
	m = exec_mgr_new(&fake_provider, &o);
	CHECK(m != NULL);
	/* start: one launcher (which would bring the history back; this one
	 * answers only its number, as a replay does) */
	CHECK_INT(exec_start(m, &box, &spec, &n, &err), 0);
	CHECK_INT(n, 1);
	CHECK_INT(fake.execs, 1);
	/* list: the command just started, from a listing of cmd */
	CHECK_INT(exec_list(m, &box, &ns, &count, &err), 0);
	CHECK(fake.lists >= 1);
	CHECK_INT(count, 1);
	if (count == 1)
		CHECK_INT(ns[0], 1);
	free(ns);
	/* read: its stdout, through a ranged download of cmd/1/stdout */
	got = exec_read(m, &box, 1, EXEC_STDOUT, buf, sizeof(buf), 0, true, &err);
	CHECK_INT(got, 3);
	CHECK(got == 3 && !memcmp(buf, "hi\n", 3));
	got = exec_read(m, &box, 1, EXEC_STDOUT, buf, sizeof(buf), 1, true, &err);
	CHECK_INT(got, 2);
	CHECK(got == 2 && !memcmp(buf, "i\n", 2));
	CHECK_INT(exec_read(m, &box, 1, EXEC_STDOUT, buf, sizeof(buf), 3, true, &err), 0);
	CHECK(fake.downloads >= 3);
	exec_mgr_free(m);
}

/* A command that ended within the launch's wait: its status, output and
 * history come from the launch's answer, with no other request. */
UNIT_TEST(exec_fast_path_reads_from_memory)
{
	struct exec_options o;
	struct exec_mgr *m;
	struct exec_spec spec = { .command = "echo hi" };
	struct sp_error err = { 0 };
	struct exec_status st;
	unsigned n = 0, *ns = NULL;
	size_t count = 0;
	char buf[16];

	exec_options_defaults(&o);
	m = exec_mgr_new(&fake_provider, &o);
	CHECK(m != NULL);
	pthread_mutex_lock(&fake.lock);
	fake.fast = true;
	fake.execs = fake.lists = fake.downloads = 0;
	pthread_mutex_unlock(&fake.lock);
	CHECK_INT(exec_start(m, &box, &spec, &n, &err), 0);
	CHECK_INT(n, 1);
	CHECK_INT(exec_status(m, &box, 1, true, &st, &err), 0);
	CHECK_INT(st.state, EXEC_EXITED);
	CHECK_INT(st.exit_code, 0);
	CHECK_INT(st.size[EXEC_STDOUT], 3);
	CHECK_INT(st.size[EXEC_STDERR], 0);
	CHECK_INT(exec_read(m, &box, 1, EXEC_STDOUT, buf, sizeof(buf), 0, true, &err), 3);
	CHECK(!memcmp(buf, "hi\n", 3));
	CHECK_INT(exec_read(m, &box, 1, EXEC_STDOUT, buf, 1, 2, true, &err), 1);
	CHECK(buf[0] == '\n');
	CHECK_INT(exec_read(m, &box, 1, EXEC_STDOUT, buf, sizeof(buf), 3, true, &err), 0);
	CHECK_INT(exec_read(m, &box, 1, EXEC_STDERR, buf, sizeof(buf), 0, true, &err), 0);
	CHECK_INT(exec_poll(m, &box, 1, EXEC_STDOUT, 3, NULL), 1);
	CHECK_INT(exec_kill(m, &box, 1, &err), -ESRCH);
	CHECK_INT(exec_list(m, &box, &ns, &count, &err), 0);
	CHECK_INT(count, 1);
	free(ns);
	CHECK_INT(exec_last(m, &box, &n, &err), 0);
	CHECK_INT(n, 1);
	/* one request in all: the launch */
	CHECK_INT(fake.execs, 1);
	CHECK_INT(fake.lists, 0);
	CHECK_INT(fake.downloads, 0);
	fake.fast = false;
	exec_mgr_free(m);
}

static void *write_exit_later(void *arg)
{
	(void)arg;
	usleep(300 * 1000);
	pthread_mutex_lock(&fake.lock);
	fake.exit_vanishes = true;      /* listed, but gone when downloaded */
	pthread_mutex_unlock(&fake.lock);
	usleep(300 * 1000);
	pthread_mutex_lock(&fake.lock);
	fake.exit_vanishes = false;
	fake_put(&fake, "/tmp/.daytonafs/cmd/1/exit", "3\n", 2);
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

/* A manager whose command 1 (command) the fake started with its exit still
 * empty (fake.empty_exit), polled every poll_min_ms to poll_max_ms. */
static struct exec_mgr *start_with_empty_exit(const char *command, long poll_max_ms)
{
	struct exec_options o;
	struct exec_mgr *m;
	struct exec_spec spec = { .command = command };
	struct sp_error err = { 0 };
	unsigned n = 0;

	exec_options_defaults(&o);
	o.poll_min_ms = 20;
	o.poll_max_ms = poll_max_ms;
	m = exec_mgr_new(&fake_provider, &o);
	CHECK(m != NULL);
	pthread_mutex_lock(&fake.lock);
	fake.empty_exit = true;
	pthread_mutex_unlock(&fake.lock);
	CHECK_INT(exec_start(m, &box, &spec, &n, &err), 0);
	CHECK_INT(n, 1);
	return m;
}

static void end_with_empty_exit(struct exec_mgr *m)
{
	pthread_mutex_lock(&fake.lock);
	fake.empty_exit = false;
	pthread_mutex_unlock(&fake.lock);
	exec_mgr_free(m);
}

/* The wrapper writes exit in place, so a poll may find it there but empty,
 * or (its write failed, and it removed it) listed and then gone. Either is
 * a command about to end, not one that ended with an unknown status: the
 * wait goes on to the status written after (it ended at -1 before). */
UNIT_TEST(exec_empty_exit_is_not_an_end)
{
	struct exec_mgr *m = start_with_empty_exit("exit 3", 50);
	struct sp_error err = { 0 };
	struct exec_status st;
	pthread_t t;

	CHECK_INT(exec_status(m, &box, 1, false, &st, &err), 0);
	CHECK_INT(st.state, EXEC_RUNNING);
	CHECK_INT(pthread_create(&t, NULL, write_exit_later, NULL), 0);
	CHECK_INT(exec_status(m, &box, 1, true, &st, &err), 0);
	CHECK_INT(st.state, EXEC_EXITED);
	CHECK_INT(st.exit_code, 3);
	pthread_join(t, NULL);
	end_with_empty_exit(m);
}

/* An exit that stays empty (its write failed on a full disk, or the wrapper
 * died between its create and its write) ends the command with no status
 * (-1) after EMPTY_EXIT_GRACE_MS, rather than leaving it running for ever. */
UNIT_TEST(exec_exit_left_empty_ends_the_command)
{
	struct exec_mgr *m = start_with_empty_exit("true", 200);
	struct sp_error err = { 0 };
	struct exec_status st;
	int64_t t0 = now_ms();

	CHECK_INT(exec_status(m, &box, 1, true, &st, &err), 0);
	CHECK_INT(st.state, EXEC_EXITED);
	CHECK_INT(st.exit_code, -1);
	CHECK(now_ms() - t0 >= EMPTY_EXIT_GRACE_MS);
	end_with_empty_exit(m);
}

UNIT_TEST(write_uploads_through_provider)
{
	struct dfs *fs = calloc(1, sizeof(*fs));
	struct sp_error err = { 0 };
	char tmpl[] = "/tmp/test_provider_fake.XXXXXX";
	int fd = mkstemp(tmpl);
	struct fake_file *ff;

	CHECK(fd >= 0);
	unlink(tmpl);
	CHECK_INT(write(fd, "written\n", 8), 8);
	fs->sp = &fake_provider;
	CHECK_INT(files_upload_fd(fs, NULL, &box, "/home/u/a.txt", fd, 8, &err), 0);
	CHECK_INT(fake.uploads, 1);
	ff = fake_find(&fake, "/home/u/a.txt");
	CHECK(ff && ff->len == 8 && !memcmp(ff->data, "written\n", 8));
	close(fd);
	free(fs);
}

/* A provider without fs_upload_many: sp_fs_upload_many sends the files one
 * by one, each with its own result. */
UNIT_TEST(upload_many_falls_back_to_one_by_one)
{
	struct sp_upload_item it[2];
	struct sp_error err = { 0 };
	char tmpl[] = "/tmp/test_provider_fake.XXXXXX";
	int fd = mkstemp(tmpl);
	int before = fake.uploads;
	struct fake_file *ff;

	CHECK(fd >= 0);
	unlink(tmpl);
	CHECK_INT(write(fd, "many\n", 5), 5);
	memset(it, 0, sizeof(it));
	it[0].path = "/home/u/m1";
	it[1].path = "/home/u/m2";
	it[0].fd = it[1].fd = fd;
	it[0].len = 5;
	it[1].len = 9;   /* more than the file has: that one fails alone */
	CHECK_INT(sp_fs_upload_many(&fake_provider, &box, it, 2, &err), 0);
	CHECK_INT(it[0].rc, 0);
	CHECK_INT(it[1].rc, -EIO);
	CHECK(strstr(it[1].msg, "short read") != NULL);
	CHECK_INT(fake.uploads, before + 1);
	ff = fake_find(&fake, "/home/u/m1");
	CHECK(ff && ff->len == 5 && !memcmp(ff->data, "many\n", 5));
	CHECK(fake_find(&fake, "/home/u/m2") == NULL);
	close(fd);
}

UNIT_TEST(missing_operations_fail_with_enosys)
{
	struct sp_error err = { 0 };
	struct sp_fileinfo fi;

	CHECK(!sp_has(&fake_provider, SP_CAP_FS_MOVE));
	CHECK_INT(sp_fs_move(&fake_provider, &box, "/a", "/b", &err), -ENOSYS);
	CHECK_INT(err.err, ENOSYS);
	CHECK_INT(sp_fs_info(&fake_provider, &box, "/a", &fi, &err), -ENOSYS);
	CHECK_INT(sp_sandbox_list(&fake_provider, NULL, NULL, &err), -ENOSYS);
	CHECK(!sp_upload_path_changed(&fake_provider, " leading space"));
}

/* Frees the fake's files after the cases (UNIT_MAIN runs them in order). */
UNIT_TEST(cleanup)
{
	for (size_t i = 0; i < fake.n; i++) {
		free(fake.files[i].path);
		free(fake.files[i].data);
	}
	fake.n = 0;
}

UNIT_MAIN("provider_fake",
	UNIT_CASE(exec_start_list_read),
	UNIT_CASE(exec_fast_path_reads_from_memory),
	UNIT_CASE(exec_empty_exit_is_not_an_end),
	UNIT_CASE(exec_exit_left_empty_ends_the_command),
	UNIT_CASE(write_uploads_through_provider),
	UNIT_CASE(upload_many_falls_back_to_one_by_one),
	UNIT_CASE(missing_operations_fail_with_enosys),
	UNIT_CASE(cleanup))
