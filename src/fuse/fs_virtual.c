/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_virtual.c - the FUSE operations on open handles: the virtual files (info,
 * ctl, command output, exit, stdin) and the sandbox's files (handed to
 * fs_read.c and fs_write.c), and poll.
 */
#include "fs_dispatch_int.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_int.h"
#include "log.h"
#include "recover.h"
#include "rename_pin.h"
#include "strbuf.h"
#include "urlenc.h"

/* ---- virtual files ------------------------------------------------------ */

enum handle_type { H_FILE = FS_HANDLE_FILE, H_DIR = FS_HANDLE_DIR, H_TEXT, H_CTL, H_STREAM, H_EXIT, H_STDIN,
		   H_ENV, H_PIN };

/* The handle of the rename pin's own open (rename_pin.h): it reads nothing. */
static const int pin_handle = H_PIN;

/* Every fi->fh points to a struct that starts with the handle type. */
struct vhandle {
	int type;
	struct node node;
	struct sandbox *sb;
	unsigned cmd;
	enum exec_stream stream;
	struct strbuf text;        /* H_TEXT: the content made at open */
	struct build_log *build;   /* H_TEXT of NAME/build-log: the build this mount follows */
	struct strbuf line;        /* H_CTL: a partial line waiting for its newline; H_ENV: what was written */
	bool discarding;           /* H_CTL: the rest of a refused line is ignored up to its newline */
	uint64_t read_end;         /* H_STREAM: the furthest offset given to the reader */
	bool saw_end;              /* the command's end was seen (caches dropped) */
	pthread_mutex_t lock;
	struct vhandle *prev, *next;   /* fs->vhandles */
};

static int text_of(struct dfs *fs, struct vhandle *h)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	int rc;

	switch (h->node.kind) {
	case N_ROOT_ERROR:
		if (fs->root_error[0])
			sb_addf(&h->text, "%s\n", fs->root_error);
		return 0;
	case N_SB_ERROR:
		if (h->sb->error[0])
			sb_addf(&h->text, "%s\n", h->sb->error);
		return 0;
	case N_SB_STATUS: {
		char progress[sizeof(h->sb->progress)], state[sizeof(h->sb->state)];
		char reason[sizeof(h->sb->error_reason)];

		/* create's thread and sandbox_update write these under the lock */
		pthread_mutex_lock(&fs->lock);
		str_copy(progress, sizeof(progress), h->sb->progress);
		pthread_mutex_unlock(&fs->lock);
		if (progress[0]) {
			sb_addf(&h->text, "%s\n", progress);
			return 0;
		}
		rc = sandbox_refresh(fs, h->sb, &err);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&fs->lock);
		str_copy(state, sizeof(state), h->sb->state);
		str_copy(reason, sizeof(reason), h->sb->error_reason);
		pthread_mutex_unlock(&fs->lock);
		if (reason[0])
			sb_addf(&h->text, "%s: %s\n", state, reason);
		else
			sb_addf(&h->text, "%s\n", state);
		return 0;
	}
	case N_SB_INFO: {
		struct sp_sandbox d;

		memset(&d, 0, sizeof(d));
		rc = sp_sandbox_get(fs->sp, h->sb->id, &d, &err);
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			sandbox_update(fs, h->sb, &d);
			pthread_mutex_unlock(&fs->lock);
			if (d.json)
				sb_adds(&h->text, d.json);
		}
		sp_sandbox_clear(&d);
		return rc;
	}
	case N_SNAPFILE: {
		struct sp_snapshot s;

		memset(&s, 0, sizeof(s));
		rc = sp_snapshot_get(fs->sp, h->node.snap_name, &s, &err);
		if (rc == 0 && s.json)
			sb_adds(&h->text, s.json);
		sp_snapshot_clear(&s);
		return rc;
	}
	case N_CMD_COMMAND: {
		char *t = NULL;
		size_t len = 0;

		sandbox_box(h->sb, &box);
		rc = exec_command_text(fs->exec, &box, h->cmd, &t, &len, &err);
		if (rc == 0) {
			sb_add(&h->text, t, len);
			if (len && t[len - 1] != '\n')
				sb_addc(&h->text, '\n');
		}
		free(t);
		return rc;
	}
	case N_CMD_STATUS: {
		struct exec_status st;

		sandbox_box(h->sb, &box);
		rc = exec_status(fs->exec, &box, h->cmd, false, &st, &err);
		if (rc == 0)
			sb_addf(&h->text, "%s\n", exec_state_name(st.state));
		return rc;
	}
	default:
		return surface_text(fs, &h->node, h->sb, &h->text);
	}
}

static int vhandle_open(struct dfs *fs, struct node *n, struct sandbox *sb, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;
	bool writable;
	struct vhandle *h;
	unsigned last;
	int rc;

	switch (n->kind) {
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
	case N_CMD_STDIN:
	case N_SB_ENV:
		writable = true;
		break;
	default:
		writable = false;
	}
	if (acc != O_RDONLY && !writable)
		return -EACCES;
	if (n->kind == N_SB_ENV && acc == O_RDWR)
		return -EACCES;   /* read it, or write changes to it: not both at once */
	if (acc != O_WRONLY && writable && n->kind != N_SB_CTL && n->kind != N_ROOT_CTL && n->kind != N_SB_ENV)
		return -EACCES;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->node = *n;
	h->sb = sb;
	h->cmd = n->cmd;
	switch (n->kind) {
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
		h->type = H_CTL;
		break;
	case N_CMD_STDIN:
		h->type = H_STDIN;
		break;
	case N_SB_STDOUT:
	case N_SB_STDERR:
	case N_SB_EXIT:
		rc = newest_command(fs, sb, &last);
		if (rc == -ENOENT) {
			/* No command has run yet: the files exist and are empty. */
			h->type = H_TEXT;
			break;
		}
		if (rc < 0)
			goto fail;
		h->cmd = last;
		h->type = n->kind == N_SB_EXIT ? H_EXIT : H_STREAM;
		h->stream = n->kind == N_SB_STDERR ? EXEC_STDERR : EXEC_STDOUT;
		break;
	case N_CMD_STDOUT:
	case N_CMD_STDERR:
		h->type = H_STREAM;
		h->stream = n->kind == N_CMD_STDERR ? EXEC_STDERR : EXEC_STDOUT;
		break;
	case N_CMD_EXIT:
		h->type = H_EXIT;
		break;
	case N_SB_ENV:
		if (acc == O_WRONLY) {
			h->type = H_ENV;
			break;
		}
		/* fall through */
	default:
		h->type = H_TEXT;
		/* The build of this mount's create: live, for tail -f, and kept
		 * by the handle whatever happens to the follower meanwhile. */
		if (n->kind == N_SB_BUILDLOG && (h->build = surface_build_log_get(fs, sb)))
			break;
		rc = text_of(fs, h);
		if (rc < 0)
			goto fail;
		if (h->text.oom) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	/* Content is made at open and may change between opens: no page cache,
	 * and no size the kernel would trust. */
	fi->direct_io = 1;
	if (h->type == H_CTL || h->type == H_STDIN || h->type == H_ENV)
		fi->nonseekable = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	pthread_mutex_lock(&fs->lock);
	h->next = fs->vhandles;
	if (h->next)
		h->next->prev = h;
	fs->vhandles = h;
	pthread_mutex_unlock(&fs->lock);
	return 0;
fail:
	sb_free(&h->text);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return rc;
}

static void vhandle_free(struct dfs *fs, struct vhandle *h)
{
	pthread_mutex_lock(&fs->lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->vhandles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->lock);
	surface_build_log_put(h->build);
	sb_free(&h->text);
	sb_free(&h->line);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int dfs_open(const char *path, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (rename_pin_opening()) {
		/* Only the sandbox's files are renamed; a virtual file's open
		 * may start or wait for something. */
		if (n.kind != N_FILE)
			return -EPERM;
		fi->fh = (uint64_t)(uintptr_t)&pin_handle;
		return 0;
	}
	switch (n.kind) {
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
			surface_note_change(fs, sb);   /* its upload at close is a change */
		return files_open(fs, sb, n.path, fi, false, 0);
	case N_ROOT:
	case N_SNAPDIR:
	case N_SANDBOX:
	case N_CMDDIR:
	case N_CMD:
	case N_FSROOT:
	case N_PORTSDIR:
	case N_VOLDIR:
	case N_VOL:
		return -EISDIR;

	case N_CMD_COMMAND:
	case N_CMD_STDOUT:
	case N_CMD_STDERR:
	case N_CMD_EXIT:
	case N_CMD_STATUS:
	case N_CMD_STDIN:
	case N_CMD_CTL:
		rc = command_exists(fs, sb, n.cmd);
		if (rc < 0)
			return rc;
		break;
	default:
		break;
	}
	return vhandle_open(fs, &n, sb, fi);
}

int dfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc = file_node(path, &n, &sb);

	if (rc)
		return rc < 0 ? rc : -EACCES;
	return files_open(dfs_get(), sb, n.path, fi, true, mode);
}

static int handle_type(struct fuse_file_info *fi)
{
	return *(int *)(uintptr_t)fi->fh;
}


/* The reader learns that a command ended, possibly before the exec thread's
 * on_end callback has dropped the caches: drop them now, so that what the
 * command changed is seen as soon as exit (or EOF) is. */
static void saw_command_end(struct dfs *fs, struct vhandle *h)
{
	if (h->saw_end)
		return;
	h->saw_end = true;
	command_ended(fs, h->sb->id, h->cmd);
}

/* A read of a command's output or exit blocks until there is something to
 * read, as a pipe's does; with O_NONBLOCK (at open, or fcntl's F_SETFL:
 * each read carries the flags) it is EAGAIN instead, as a pipe's is. */
static int read_stream(struct dfs *fs, struct vhandle *h, char *buf, size_t size, off_t off, bool block)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	ssize_t n;

	sandbox_box(h->sb, &box);
	n = exec_read(fs->exec, &box, h->cmd, h->stream, buf, size, (uint64_t)off, block, &err);
	if (n > 0) {
		pthread_mutex_lock(&h->lock);
		if ((uint64_t)off + (uint64_t)n > h->read_end)
			h->read_end = (uint64_t)off + (uint64_t)n;
		pthread_mutex_unlock(&h->lock);
	}
	if (n == 0 && size > 0)
		saw_command_end(fs, h);
	if (n < 0 && n != -EINTR && n != -EAGAIN)
		log_warn("%s: reading command %u output: %s", h->sb->name, h->cmd, err.message);
	return (int)n;
}

static int read_exit(struct dfs *fs, struct vhandle *h, char *buf, size_t size, off_t off, bool block)
{
	struct sp_error err = { 0 };
	struct exec_status st;
	struct sp_box box;
	int rc;

	if (!h->text.len) {
		/* The exit file waits until the command has ended. */
		sandbox_box(h->sb, &box);
		rc = exec_status(fs->exec, &box, h->cmd, block, &st, &err);
		if (rc < 0)
			return rc;
		if (st.state == EXEC_RUNNING)
			return -EAGAIN;   /* (only without block) */
		saw_command_end(fs, h);
		sb_addf(&h->text, "%d\n", st.exit_code);
	}
	if ((size_t)off >= h->text.len)
		return 0;
	if (size > h->text.len - (size_t)off)
		size = h->text.len - (size_t)off;
	memcpy(buf, h->text.buf + off, size);
	return (int)size;
}

int dfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	int rc;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		return files_read(fs, fi, buf, size, off);
	case H_STREAM:
		return read_stream(fs, h, buf, size, off, !(fi->flags & O_NONBLOCK));
	case H_EXIT:
		pthread_mutex_lock(&h->lock);
		rc = read_exit(fs, h, buf, size, off, !(fi->flags & O_NONBLOCK));
		pthread_mutex_unlock(&h->lock);
		return rc;
	case H_TEXT:
		if (h->build)
			return surface_build_log_read(h->build, buf, size, off);
		if ((size_t)off >= h->text.len)
			return 0;
		if (size > h->text.len - (size_t)off)
			size = h->text.len - (size_t)off;
		memcpy(buf, h->text.buf + off, size);
		return (int)size;
	default:
		return 0;   /* ctl and stdin read as empty */
	}
}

/* Runs one complete line written to a ctl file. */
static int run_ctl_line(struct dfs *fs, struct vhandle *h, const char *line, size_t len)
{
	switch (h->node.kind) {
	case N_ROOT_CTL:
		return ctl_run_root(fs, line, len);
	case N_SB_CTL:
		return ctl_run_sandbox(fs, h->sb, line, len);
	case N_CMD_CTL:
		return ctl_run_command(fs, h->sb, h->cmd, line, len);
	default:
		return -EBADF;
	}
}

#define CTL_LINE_MAX (1024 * 1024)

/*
 * A line over CTL_LINE_MAX: the write that reaches the limit fails with
 * EFBIG from the refused line's first byte on, and the part of the line
 * taken before is dropped. Nothing of it runs, neither at a newline nor at
 * close, and input is ignored up to the next newline of a LATER write: the
 * kernel reports the bytes it sent before the failing part of a large
 * write(2) as a short count, so the writer sends the refused rest again,
 * newline included, and that rest must not run as a line of its own.
 */
static int refuse_line(struct dfs *fs, struct vhandle *h)
{
	char msg[128];

	sb_reset(&h->line);
	h->discarding = true;
	snprintf(msg, sizeof(msg), "a line over %d bytes was refused; nothing of it ran", CTL_LINE_MAX);
	ctl_line_refused(fs, h->node.kind == N_ROOT_CTL ? NULL : h->sb, h->node.kind == N_CMD_CTL ? h->cmd : 0,
			 msg);
	return -EFBIG;
}

/* A write while discarding: ignored, and refused, up to the refused line's
 * end; the rest of the write goes with it (the writer sees the write fail),
 * and so does, up to its newline, a line that the rest began. */
static int discard_write(struct vhandle *h, const char *buf, size_t size)
{
	const char *nl = memchr(buf, '\n', size);

	if (nl)
		h->discarding = buf[size - 1] != '\n';
	return -EFBIG;
}

/* ctl files take one command per line and run each as soon as its line is
 * complete, so that the write that carries it gets its error. A last line
 * without a newline runs at close (flush). A line over CTL_LINE_MAX is
 * refused whole (refuse_line). */
static int write_ctl(struct dfs *fs, struct vhandle *h, const char *buf, size_t size)
{
	size_t start = 0;
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	if (h->discarding) {
		rc = discard_write(h, buf, size);
		goto out;
	}
	for (size_t i = 0; i < size; i++) {
		if (buf[i] != '\n')
			continue;
		if (h->line.len + (i - start) > CTL_LINE_MAX) {
			rc = refuse_line(fs, h);
			goto out;
		}
		sb_add(&h->line, buf + start, i - start);
		start = i + 1;
		if (h->line.oom) {
			rc = -ENOMEM;
			goto out;
		}
		rc = run_ctl_line(fs, h, sb_str(&h->line), h->line.len);
		sb_reset(&h->line);
		if (rc < 0)
			goto out;
	}
	if (h->line.len + (size - start) > CTL_LINE_MAX) {
		rc = refuse_line(fs, h);
		goto out;
	}
	sb_add(&h->line, buf + start, size - start);
	rc = h->line.oom ? -ENOMEM : (int)size;
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

int dfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	struct sp_error err = { 0 };
	struct sp_box box;
	ssize_t n;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		return files_write(fs, fi, buf, size, off);
	case H_CTL:
		return write_ctl(fs, h, buf, size);
	case H_ENV:
		/* Taken whole, applied at close in one command. */
		pthread_mutex_lock(&h->lock);
		if (h->line.len + size > CTL_LINE_MAX) {
			pthread_mutex_unlock(&h->lock);
			return -EFBIG;
		}
		sb_add(&h->line, buf, size);
		n = h->line.oom ? -ENOMEM : (ssize_t)size;
		pthread_mutex_unlock(&h->lock);
		return (int)n;
	case H_STDIN:
		sandbox_box(h->sb, &box);
		n = exec_stdin_write(fs->exec, &box, h->cmd, buf, size, &err);
		if (n < 0)
			sandbox_set_error(h->sb, "stdin of command %u: %s", h->cmd, err.message);
		return (int)n;
	default:
		return -EBADF;
	}
}

int dfs_flush(const char *path, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	int rc = 0;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		return files_flush(fs, fi);
	case H_CTL:
		pthread_mutex_lock(&h->lock);
		if (h->line.len) {
			rc = run_ctl_line(fs, h, sb_str(&h->line), h->line.len);
			sb_reset(&h->line);
		}
		pthread_mutex_unlock(&h->lock);
		return rc;
	case H_ENV:
		pthread_mutex_lock(&h->lock);
		if (h->line.len)
			rc = surface_env_write(fs, h->sb, h->line.buf, h->line.len);
		sb_reset(&h->line);
		pthread_mutex_unlock(&h->lock);
		return rc;
	case H_STDIN: {
		/* close() returns once what was written is in the command's
		 * stdin, with the error of a delivery that failed. */
		struct sp_error err = { 0 };
		struct sp_box box;

		sandbox_box(h->sb, &box);
		rc = exec_stdin_flush(fs->exec, &box, h->cmd, &err);
		if (rc < 0 && rc != -EINTR)
			sandbox_set_error(h->sb, "stdin of command %u: %s", h->cmd, err.message);
		return rc;
	}
	default:
		return 0;
	}
}

int dfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	if (handle_type(fi) == H_FILE)
		return files_fsync(dfs_get(), fi);
	return 0;
}

/* fsync of a sandbox directory waits for the changes queued under it
 * (deletes, times: deferred.c) and reports one that failed. */
int dfs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)datasync;
	(void)fi;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind != N_FILE && n.kind != N_FSROOT)
		return 0;
	return files_fsyncdir(fs, sb, n.path);
}

/* handle_only: a file's node is released, its handle is left to free. */
static void release_now(struct dfs *fs, struct fuse_file_info *fi, bool handle_only)
{
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	struct sp_error err = { 0 };
	struct sp_box box;

	if (handle_only) {
		files_release_handle(fi);
		return;
	}
	if (handle_type(fi) == H_FILE) {
		files_release(fs, fi);
		return;
	}
	if (h->type == H_STDIN) {
		/* Closing stdin sends EOF to the command. */
		sandbox_box(h->sb, &box);
		if (exec_stdin_close(fs->exec, &box, h->cmd, &err) < 0)
			sandbox_set_error(h->sb, "closing stdin of command %u: %s", h->cmd, err.message);
	}
	vhandle_free(fs, h);
}

/*
 * A release that would wait (for a file's last-chance upload, for the lock
 * an upload of the file holds, for its streaming download to stop, for a
 * command's stdin to close) runs on a thread of the mount's (a few, fed by
 * a queue: release_later), and the release returns at once. libfuse holds
 * the released file's path locked, with every parent up to the root, until
 * the release returns; the kernel's forget of a parent it drops meanwhile
 * (memory pressure, drop_caches) waits for that lock in a thread that
 * libfuse counts as idle, so it starts none to read requests: one upload
 * waiting out a slow sandbox stalled every request of the mount. Nothing
 * waits for a release's answer (the kernel sends it after close(2) has
 * returned flush's result), and an open of the same file meanwhile joins
 * the node and waits for its lock, as it waited for the release before.
 */
/* Threads that run them, at most: with the sandbox down, every close of a
 * cp -r meets a failed upload; the releases wait their turn in a queue. */
#define RELEASE_THREADS_MAX 16

struct release_job {
	struct release_job *next;
	struct fuse_file_info fi;
	bool handle_only;
};

static void *release_thread(void *arg)
{
	struct dfs *fs = arg;
	struct release_job *j;

	pthread_mutex_lock(&fs->lock);
	while ((j = fs->release_head)) {
		fs->release_head = j->next;
		pthread_mutex_unlock(&fs->lock);
		release_now(fs, &j->fi, j->handle_only);
		free(j);
		pthread_mutex_lock(&fs->lock);
		if (--fs->releasing == 0)
			pthread_cond_broadcast(&fs->release_cond);
	}
	fs->release_threads--;
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

/* Queues the release for a thread; false when it must run here (no memory). */
static bool release_later(struct dfs *fs, struct fuse_file_info *fi, bool handle_only)
{
	struct release_job *j = calloc(1, sizeof(*j)), **pp;
	pthread_attr_t attr;
	bool start = false, others;
	pthread_t t;
	int rc;

	if (!j)
		return false;
	j->fi = *fi;
	j->handle_only = handle_only;
	pthread_mutex_lock(&fs->lock);
	for (pp = &fs->release_head; *pp; pp = &(*pp)->next)
		;
	*pp = j;
	fs->releasing++;
	if (fs->release_threads < RELEASE_THREADS_MAX) {
		fs->release_threads++;
		start = true;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!start)
		return true;   /* a running thread takes it */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, release_thread, fs);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return true;
	/* No thread: the one counted is this one, which runs the queue (its own
	 * release with it) and waits, as a release always did, unless another
	 * thread runs it. */
	pthread_mutex_lock(&fs->lock);
	others = fs->release_threads > 1;
	if (others)
		fs->release_threads--;
	pthread_mutex_unlock(&fs->lock);
	if (!others)
		release_thread(fs);
	return true;
}

void releases_wait(struct dfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	while (fs->releasing)
		pthread_cond_wait(&fs->release_cond, &fs->lock);
	pthread_mutex_unlock(&fs->lock);
}

int dfs_release(const char *path, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	bool handle_only = false;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		switch (files_release_quick(fs, fi)) {
		case FILES_RELEASED:
			return 0;
		case FILES_RELEASE_HANDLE:
			handle_only = true;
			break;
		case FILES_RELEASE_WOULD_WAIT:
			break;
		}
		break;
	case H_STDIN:
		break;
	case H_PIN:
		return 0;
	default:
		vhandle_free(fs, (struct vhandle *)(uintptr_t)fi->fh);
		return 0;
	}
	if (!release_later(fs, fi, handle_only))
		release_now(fs, fi, handle_only);
	return 0;
}

void vhandles_free_all(struct dfs *fs)
{
	while (fs->vhandles)
		vhandle_free(fs, fs->vhandles);
}

int dfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb = NULL;
	struct node n;
	int rc;

	if (fi && handle_type(fi) == H_FILE)
		return files_truncate(fs, NULL, NULL, size, fi);
	if (fi)
		return 0;   /* "> ctl" truncates before it writes: nothing to do */
	if (!path)
		return -ENOSYS;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case N_FILE:
		rc = sandbox_change_begin(fs, sb);
		if (rc < 0)
			return rc;
		return files_truncate(fs, sb, n.path, size, NULL);
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
	case N_CMD_STDIN:
	case N_SB_ENV:
		return 0;
	default:
		return -EACCES;
	}
}

void poll_wake(void *ctx, void *ph)
{
	(void)ctx;
	fuse_notify_poll(ph);
	fuse_pollhandle_destroy(ph);
}

bool request_interrupted(void)
{
	struct fuse_context *c = fuse_get_context();

	/* An unmount (SIGTERM, fusermount3 -u) ends the session: a request
	 * that waits for a command's end (a read of its exit) gives up. Else
	 * the daemon outlived its mount until the command ended: libfuse
	 * joins its workers before fuse_loop_mt returns. */
	if (c && c->fuse && fuse_session_exited(fuse_get_session(c->fuse)))
		return true;
	return fuse_interrupted() != 0;
}

int dfs_poll(const char *path, struct fuse_file_info *fi, struct fuse_pollhandle *ph, unsigned *reventsp)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	struct sp_box box;
	int ready;

	(void)path;
	if (handle_type(fi) != H_STREAM && handle_type(fi) != H_EXIT) {
		/* Everything else is always ready, like a regular file. */
		if (ph)
			fuse_pollhandle_destroy(ph);
		*reventsp |= POLLIN | POLLOUT;
		return 0;
	}
	sandbox_box(h->sb, &box);
	/* The kernel does not tell the reader's offset: readiness means "data
	 * past what this handle has been given", tracked as the furthest read.
	 * exit is ready once the command has ended (its read waits till then):
	 * always ready, an event loop that polls it spun, its reads EAGAIN. */
	if (handle_type(fi) == H_EXIT)
		ready = exec_poll(fs->exec, &box, h->cmd, EXEC_STDOUT, EXEC_POLL_END, ph);
	else
		ready = exec_poll(fs->exec, &box, h->cmd, h->stream, h->read_end, ph);
	/* exec keeps the handle only when it is not ready (0): else it is ours. */
	if (ready != 0 && ph)
		fuse_pollhandle_destroy(ph);
	if (ready < 0)
		return ready;
	if (ready)
		*reventsp |= POLLIN;
	return 0;
}
