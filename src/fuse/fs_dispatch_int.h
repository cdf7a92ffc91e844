/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_dispatch_int.h - what the files of the FUSE dispatcher share (fs.c, fs_path.c,
 * fs_tree.c, fs_virtual.c): the operations each serves, for the table in
 * fs.c, and their helpers. Not for other modules.
 */
#ifndef DAYTONAFS_FS_DISPATCH_INT_H
#define DAYTONAFS_FS_DISPATCH_INT_H

#include <fuse.h>
#include <stdbool.h>

#include "fs.h"
#include "fs_int.h"

/* Renamed paths whose inode number is remembered (inode.h): ~100 bytes
 * each, so at most a few MiB. */
#define INO_RENAMES_KEPT 65536

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The fixed entries of a sandbox's directory and of a command's
 * (fs_path.c), for lookups and listings. */
struct name_kind {
	const char *name;
	enum node_kind kind;
};
extern const struct name_kind sandbox_entries[];
extern const size_t sandbox_entries_len;
extern const struct name_kind command_entries[];
extern const size_t command_entries_len;

/* fs_path.c */
void snap_encode(struct strbuf *sb, const char *name);

/* fs_sandbox.c */
int registry_refresh(struct dfs *fs, bool force, struct sp_error *err);

/* fs_tree.c */
int resolve(struct dfs *fs, const char *path, struct node *n, struct sandbox **sb);
int command_exists(struct dfs *fs, struct sandbox *sb, unsigned n);
int newest_command(struct dfs *fs, struct sandbox *sb, unsigned *n);
int dfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi);
int dfs_readlink(const char *path, char *buf, size_t size);
int dfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		       struct fuse_file_info *fi, enum fuse_readdir_flags flags);
int dfs_opendir(const char *path, struct fuse_file_info *fi);
int dfs_releasedir(const char *path, struct fuse_file_info *fi);
int file_node(const char *path, struct node *n, struct sandbox **sb);
int dfs_mkdir(const char *path, mode_t mode);
int dfs_rmdir(const char *path);
int dfs_unlink(const char *path);
int dfs_rename(const char *from, const char *to, unsigned int flags);
int dfs_symlink(const char *target, const char *path);
int dfs_mknod(const char *path, mode_t mode, dev_t rdev);
int dfs_link(const char *from, const char *to);
int dfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi);
int dfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi);
int dfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi);
int dfs_statfs(const char *path, struct statvfs *st);

/* fs_virtual.c */
int dfs_open(const char *path, struct fuse_file_info *fi);
int dfs_create(const char *path, mode_t mode, struct fuse_file_info *fi);
int dfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi);
int dfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi);
int dfs_flush(const char *path, struct fuse_file_info *fi);
int dfs_fsync(const char *path, int datasync, struct fuse_file_info *fi);
int dfs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi);
int dfs_release(const char *path, struct fuse_file_info *fi);
/* Waits for the releases queued for the mount's threads (dfs_release). */
void releases_wait(struct dfs *fs);
int dfs_truncate(const char *path, off_t size, struct fuse_file_info *fi);
void poll_wake(void *ctx, void *ph);
bool request_interrupted(void);
int dfs_poll(const char *path, struct fuse_file_info *fi, struct fuse_pollhandle *ph, unsigned *reventsp);

/* fs.c */
void command_ended(struct dfs *fs, const char *sandbox_id, unsigned n);

#endif
