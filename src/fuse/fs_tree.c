/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_tree.c - the FUSE operations on paths: attributes of the virtual tree
 * (sandboxes, ctl, commands, snapshots), directory listings, and the
 * namespace calls, each handed to the part that serves the node.
 */
#include "fs_dispatch_int.h"

#include <errno.h>
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

/* ---- attributes of the virtual tree ------------------------------------ */

void fill_virtual(struct dfs *fs, struct stat *st, mode_t mode, off_t size)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = mode;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = size;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = fs->mounted_at;
}

/* node_parse, and ENOENT for a node this provider cannot serve (node_needs). */
static int parse_here(struct dfs *fs, const char *path, struct node *n)
{
	int rc = node_parse(path, n);

	if (rc == 0 && !sp_has(fs->sp, node_needs(n->kind)))
		rc = -ENOENT;
	return rc;
}

/* Whether a listing shows the root or sandbox entry of that kind. */
static bool shown(struct dfs *fs, enum node_kind kind)
{
	return sp_has(fs->sp, node_needs(kind));
}

int resolve(struct dfs *fs, const char *path, struct node *n, struct sandbox **sb)
{
	struct sp_error err = { 0 };
	int rc = parse_here(fs, path, n);

	*sb = NULL;
	if (rc < 0)
		return rc;
	if (n->kind < N_SANDBOX)
		return 0;
	*sb = sandbox_find(fs, n->sb_name, &err);
	if (!*sb)
		return err.err ? -err.err : -ENOENT;
	return 0;
}

int command_exists(struct dfs *fs, struct sandbox *sb, unsigned n)
{
	struct sp_error err = { 0 };
	struct sp_box box;

	/* Also finds a command that another mount started after our listing. */
	sandbox_box(sb, &box);
	return exec_exists(fs->exec, &box, n, &err);
}

int newest_command(struct dfs *fs, struct sandbox *sb, unsigned *n)
{
	struct sp_error err = { 0 };
	struct sp_box box;

	sandbox_box(sb, &box);
	return exec_last(fs->exec, &box, n, &err);
}

static int work_target(struct dfs *fs, struct sandbox *sb, char *buf, size_t size)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	int rc;

	if (!sb->workdir[0]) {
		char dir[1024];

		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			/* Without the sandbox we cannot ask: its image's default. */
			return str_printf(buf, size, "fs%s",
					  fs->sp->default_work_dir ? fs->sp->default_work_dir : "/") ? 0 : -ENAMETOOLONG;
		sandbox_box(sb, &box);
		rc = sp_work_dir(fs->sp, &box, dir, sizeof(dir), &err);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&fs->lock);
		str_copy(sb->workdir, sizeof(sb->workdir), dir);
		pthread_mutex_unlock(&fs->lock);
	}
	return str_printf(buf, size, "fs%s%s", sb->workdir[0] == '/' ? "" : "/", sb->workdir) ? 0 :
		-ENAMETOOLONG;
}

static int stream_size(struct dfs *fs, struct sandbox *sb, unsigned n, enum exec_stream s, off_t *size)
{
	struct sp_error err = { 0 };
	struct exec_status st;
	struct sp_box box;
	int rc;

	sandbox_box(sb, &box);
	rc = exec_sizes(fs->exec, &box, n, &st, &err);
	if (rc < 0)
		return rc;
	*size = (off_t)st.size[s];
	/* A running command's empty stream says 1 byte: tail -f treats a file
	 * of size 0 as a pipe and reads it to EOF (the command's end) before it
	 * prints anything; at size 1 it reads that byte, which waits for the
	 * first output, and then follows the size as on any network fs. */
	if (st.state == EXEC_RUNNING && *size == 0)
		*size = 1;
	return 0;
}

static int node_getattr(struct dfs *fs, const struct node *np, struct sandbox *sb, struct stat *st);

int dfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	if (!path) {
		/* An open file whose name is gone (unlinked while open). */
		if (fi && *(int *)(uintptr_t)fi->fh == FS_HANDLE_FILE)
			return files_fgetattr(fs, fi, st);
		return -ESTALE;
	}
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	rc = node_getattr(fs, &n, sb, st);
	if (rc == 0)
		st->st_ino = n.kind == N_ROOT ? 1 :
			n.kind == N_FILE ? files_ino(fs, sb, n.path) : ino_of(fs->inos, "", path);
	return rc;
}

/* The attributes of a parsed path, but its inode number (dfs_getattr). */
static int node_getattr(struct dfs *fs, const struct node *np, struct sandbox *sb, struct stat *st)
{
	const struct node n = *np;
	off_t size = 0;
	unsigned last;
	int rc;

	switch (n.kind) {
	case N_ROOT:
	case N_SNAPDIR:
	case N_SANDBOX:
	case N_CMDDIR:
	case N_FSROOT:
		fill_virtual(fs, st, S_IFDIR | 0755, 0);
		return 0;
	case N_SNAPFILE: {
		struct sp_snapshot s;
		struct sp_error err = { 0 };

		memset(&s, 0, sizeof(s));
		rc = sp_snapshot_get(fs->sp, n.snap_name, &s, &err);
		if (rc == 0) {
			fill_virtual(fs, st, S_IFREG | 0444, s.json ? (off_t)strlen(s.json) : 0);
			st->st_mtim = s.updated_at;
		}
		sp_snapshot_clear(&s);
		return rc;
	}
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
	case N_CMD_STDIN:
		fill_virtual(fs, st, S_IFREG | 0200, 0);
		return 0;
	case N_ROOT_ERROR:
		fill_virtual(fs, st, S_IFREG | 0444, (off_t)strlen(fs->root_error));
		return 0;
	case N_SB_STATUS:
	case N_SB_INFO:
	case N_SB_ERROR:
		fill_virtual(fs, st, S_IFREG | 0444, 0);
		return 0;
	case N_SB_STDOUT:
	case N_SB_STDERR:
	case N_SB_EXIT:
		if (newest_command(fs, sb, &last) == 0 && n.kind != N_SB_EXIT)
			stream_size(fs, sb, last, n.kind == N_SB_STDOUT ? EXEC_STDOUT : EXEC_STDERR, &size);
		fill_virtual(fs, st, S_IFREG | 0444, size);
		return 0;
	case N_CMD_LAST: {
		char target[16];

		rc = newest_command(fs, sb, &last);
		if (rc < 0)
			return rc;
		snprintf(target, sizeof(target), "%u", last);
		fill_virtual(fs, st, S_IFLNK | 0777, (off_t)strlen(target));
		return 0;
	}
	case N_CMD:
	case N_CMD_COMMAND:
	case N_CMD_STDOUT:
	case N_CMD_STDERR:
	case N_CMD_EXIT:
	case N_CMD_STATUS:
		rc = command_exists(fs, sb, n.cmd);
		if (rc < 0)
			return rc;
		if (n.kind == N_CMD) {
			fill_virtual(fs, st, S_IFDIR | 0755, 0);
			return 0;
		}
		if (n.kind == N_CMD_STDOUT || n.kind == N_CMD_STDERR)
			stream_size(fs, sb, n.cmd, n.kind == N_CMD_STDOUT ? EXEC_STDOUT : EXEC_STDERR, &size);
		fill_virtual(fs, st, S_IFREG | 0444, size);
		return 0;
	case N_WORK: {
		char target[1100];

		rc = work_target(fs, sb, target, sizeof(target));
		if (rc < 0)
			return rc;
		fill_virtual(fs, st, S_IFLNK | 0777, (off_t)strlen(target));
		return 0;
	}
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_getattr(fs, sb, n.path, st);
	default:
		return surface_getattr(fs, &n, sb, st);
	}
}

int dfs_readlink(const char *path, char *buf, size_t size)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	unsigned last;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case N_CMD_LAST:
		rc = newest_command(fs, sb, &last);
		if (rc < 0)
			return rc;
		return str_printf(buf, size, "%u", last) ? 0 : -ENAMETOOLONG;
	case N_WORK:
		return work_target(fs, sb, buf, size);
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_readlink(fs, sb, n.path, buf, size);
	default:
		return -EINVAL;
	}
}

/* ---- directories --------------------------------------------------------- */

static int add_entry(void *buf, fuse_fill_dir_t filler, const char *name)
{
	return filler(buf, name, NULL, 0, 0) ? -ENOMEM : 0;
}

static int readdir_root(struct dfs *fs, void *buf, fuse_fill_dir_t filler)
{
	struct sp_error err = { 0 };
	struct strbuf names = STRBUF_INIT;
	int rc;

	rc = registry_refresh(fs, false, &err);
	if (rc < 0) {
		str_copy(fs->root_error, sizeof(fs->root_error), err.message);
		log_warn("listing sandboxes: %s", err.message);
		return rc;
	}
	add_entry(buf, filler, "ctl");
	add_entry(buf, filler, "error");
	if (shown(fs, N_SNAPDIR))
		add_entry(buf, filler, ".snapshots");
	if (shown(fs, N_VOLDIR))
		add_entry(buf, filler, ".volumes");
	/* Copy the names out under the lock, then fill without it. */
	pthread_mutex_lock(&fs->lock);
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next) {
		const char *dir;

		if (sb->gone)
			continue;
		dir = registry_dir_name(&fs->registry, sb);
		if (dir)
			sb_add(&names, dir, strlen(dir) + 1);
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t off = 0; off < names.len; off += strlen(names.buf + off) + 1)
		add_entry(buf, filler, names.buf + off);
	sb_free(&names);
	return 0;
}

static int readdir_snapshots(struct dfs *fs, void *buf, fuse_fill_dir_t filler)
{
	struct sp_error err = { 0 };
	struct sp_snapshot *list = NULL;
	size_t n = 0;
	int rc;

	rc = sp_snapshot_list(fs->sp, &list, &n, &err);
	if (rc < 0) {
		log_warn("listing snapshots: %s", err.message);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		struct strbuf name = STRBUF_INIT;

		snap_encode(&name, list[i].name);
		if (!name.oom && name.len)
			add_entry(buf, filler, sb_str(&name));
		sb_free(&name);
	}
	sp_snapshot_list_free(list, n);
	return 0;
}

static int readdir_commands(struct dfs *fs, struct sandbox *sb, void *buf, fuse_fill_dir_t filler)
{
	struct sp_error err = { 0 };
	struct sp_box box;
	unsigned *ns = NULL;
	size_t count = 0;
	int rc;

	sandbox_box(sb, &box);
	rc = exec_list(fs->exec, &box, &ns, &count, &err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < count; i++) {
		char name[16];

		snprintf(name, sizeof(name), "%u", ns[i]);
		add_entry(buf, filler, name);
	}
	if (count)
		add_entry(buf, filler, "last");
	free(ns);
	return 0;
}

int dfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)flags;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind != N_FILE && n.kind != N_FSROOT) {
		/* files_readdir adds its own */
		add_entry(buf, filler, ".");
		add_entry(buf, filler, "..");
	}
	switch (n.kind) {
	case N_ROOT:
		return readdir_root(fs, buf, filler);
	case N_SNAPDIR:
		return readdir_snapshots(fs, buf, filler);
	case N_SANDBOX:
		for (size_t i = 0; i < sandbox_entries_len; i++)
			if (shown(fs, sandbox_entries[i].kind))
				add_entry(buf, filler, sandbox_entries[i].name);
		return 0;
	case N_CMDDIR:
		return readdir_commands(fs, sb, buf, filler);
	case N_CMD:
		rc = command_exists(fs, sb, n.cmd);
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < command_entries_len; i++)
			add_entry(buf, filler, command_entries[i].name);
		return 0;
	case N_FSROOT:
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_readdir(fs, sb, n.path, buf, filler, off, fi);
	default:
		return surface_readdir(fs, &n, sb, buf, filler);
	}
}

/* The sandbox's directories get a handle, for their listing's snapshot; the
 * others are small and listed whole each time (offset 0 to the filler: libfuse
 * keeps the listing between the kernel's reads). */
int dfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct node n;
	int rc = parse_here(dfs_get(), path, &n);

	fi->fh = 0;
	if (rc < 0)
		return rc;
	if (n.kind == N_FILE || n.kind == N_FSROOT)
		return files_opendir(dfs_get(), fi);
	return 0;
}

int dfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	if (fi->fh)
		files_releasedir(dfs_get(), fi);
	return 0;
}

/* For operations on the sandbox's own files: 0 with the node and its running
 * sandbox, 1 when the path is not under fs/, or a negative errno. */
int file_node(const char *path, struct node *n, struct sandbox **sb)
{
	struct dfs *fs = dfs_get();
	int rc = resolve(fs, path, n, sb);

	if (rc < 0)
		return rc;
	if (n->kind != N_FILE)
		return 1;
	return sandbox_change_begin(fs, *sb);   /* every caller changes something */
}

int dfs_mkdir(const char *path, mode_t mode)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = parse_here(fs, path, &n);
	if (rc < 0)
		return rc;
	if (n.kind == N_SANDBOX)
		return ctl_create_default(fs, n.sb_name);
	if (n.kind == N_VOL || n.kind == N_VOLDIR)
		return surface_mkdir(fs, &n);
	if (n.kind != N_FILE)
		return n.kind == N_FSROOT ? -EEXIST : -EPERM;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	rc = sandbox_change_begin(fs, sb);
	if (rc < 0)
		return rc;
	return files_mkdir(fs, sb, n.path, mode);
}

int dfs_rmdir(const char *path)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind == N_SANDBOX) {
		/* Destroying a sandbox is never a side effect of rmdir or rm -r. */
		sandbox_set_error(sb, "rmdir does not delete a sandbox: echo delete > %s/%s/ctl",
				  fs->mountpoint, sb->name);
		return -EPERM;
	}
	if (n.kind == N_VOL)
		return surface_rmdir(fs, &n);
	if (n.kind != N_FILE)
		return -EPERM;
	rc = sandbox_change_begin(fs, sb);
	if (rc < 0)
		return rc;
	return files_rmdir(fs, sb, n.path);
}

int dfs_unlink(const char *path)
{
	struct dfs *fs = dfs_get();
	struct sp_error err = { 0 };
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind == N_SNAPFILE) {
		struct sp_snapshot s;

		memset(&s, 0, sizeof(s));
		rc = sp_snapshot_get(fs->sp, n.snap_name, &s, &err);
		if (rc == 0)
			rc = sp_snapshot_delete(fs->sp, s.id, &err);
		if (rc < 0) {
			str_copy(fs->root_error, sizeof(fs->root_error), err.message);
			log_warn("deleting snapshot %s: %s", n.snap_name, err.message);
		}
		sp_snapshot_clear(&s);
		return rc;
	}
	if (n.kind != N_FILE)
		return -EPERM;
	rc = sandbox_change_begin(fs, sb);
	if (rc < 0)
		return rc;
	return files_unlink(fs, sb, n.path);
}

static int rename_in_sandbox(struct dfs *fs, const char *from, const char *to, unsigned int flags);

/* A rename whose destination the pin hid (rename_pin.h) and that fails: the
 * destination is still there, and lookups of it need not wait for it. An
 * open destination that libfuse hid gets its name back (files_rename ends
 * that hide; here the renames that failed before they reached it: EPERM,
 * EXDEV). */
int dfs_rename(const char *from, const char *to, unsigned int flags)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node nb;
	int rc = rename_in_sandbox(fs, from, to, flags);
	bool pending = files_rename_hide_pending(), file;

	if (!pending && !(rc < 0 && rename_pin_hiding()))
		return rc;
	file = resolve(fs, to, &nb, &sb) == 0 && nb.kind == N_FILE;
	if (pending)
		files_rename_hide_end(fs, file ? sb : NULL, file ? nb.path : to, rc);
	if (rc < 0 && rename_pin_hiding() && file)
		files_rename_failed(fs, sb, nb.path);
	return rc;
}

static int rename_in_sandbox(struct dfs *fs, const char *from, const char *to, unsigned int flags)
{
	struct sandbox *sa, *sb;
	struct node na, nb;
	int rc;

	rc = resolve(fs, from, &na, &sa);
	if (rc < 0)
		return rc;
	rc = node_parse(to, &nb);
	if (rc < 0)
		return rc;
	if (na.kind != N_FILE || nb.kind != N_FILE)
		return -EPERM;
	rc = resolve(fs, to, &nb, &sb);
	if (rc < 0)
		return rc;
	if (sa != sb)
		return -EXDEV;   /* mv falls back to copy and delete */
	rc = sandbox_change_begin(fs, sa);
	if (rc < 0)
		return rc;
	rc = files_rename(fs, sa, na.path, nb.path, flags);
	if (rc > 0)
		return 0;   /* the pin's hide: the file keeps its name, and its number */
	if (rc == 0)
		ino_rename(fs->inos, sa->id, na.path, nb.path);   /* also to a .fuse_hidden name */
	return rc;
}

int dfs_symlink(const char *target, const char *path)
{
	struct sandbox *sb;
	struct node n;
	int rc = file_node(path, &n, &sb);

	if (rc)
		return rc < 0 ? rc : -EPERM;
	return files_symlink(dfs_get(), sb, target, n.path);
}

int dfs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind != N_FILE)
		return -EPERM;
	rc = sandbox_change_begin(fs, sb);
	if (rc < 0)
		return rc;
	return files_mknod(fs, sb, n.path, mode, rdev);
}

int dfs_link(const char *from, const char *to)
{
	struct node n;
	int rc;

	/* A name that could never be made is refused as such first. */
	rc = node_parse(from, &n);
	if (rc == 0)
		rc = node_parse(to, &n);
	if (rc < 0)
		return rc;
	return -EPERM;   /* the toolbox has no hard links; SEMANTICS.md says so */
}

int dfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)fi;
	if (!path)
		return -ENOSYS;
	rc = file_node(path, &n, &sb);
	if (rc)
		return rc < 0 ? rc : -EPERM;
	return files_chmod(dfs_get(), sb, n.path, mode);
}

int dfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)fi;
	if (!path)
		return -ENOSYS;
	rc = file_node(path, &n, &sb);
	if (rc)
		return rc < 0 ? rc : -EPERM;
	return files_chown(dfs_get(), sb, n.path, uid, gid);
}

int dfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)fi;
	if (!path)
		return -ENOSYS;
	rc = file_node(path, &n, &sb);
	if (rc)
		return rc < 0 ? rc : 0;   /* touch on a control file is harmless */
	return files_utimens(dfs_get(), sb, n.path, tv);
}

int dfs_statfs(const char *path, struct statvfs *st)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;

	if (resolve(fs, path, &n, &sb) == 0 && (n.kind == N_FILE || n.kind == N_FSROOT) &&
	    sandbox_require_running(fs, sb) == 0)
		return files_statfs(fs, sb, st);
	/* The virtual tree holds no data: report an empty filesystem that has room. */
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = 4096;
	st->f_blocks = st->f_bfree = st->f_bavail = 1ULL << 28;
	st->f_files = st->f_ffree = st->f_favail = 1ULL << 20;
	st->f_namemax = 255;
	return 0;
}
