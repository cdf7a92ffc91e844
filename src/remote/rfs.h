/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rfs.h - the native file calls of provider.h (list, info, delete, chmod,
 * ranged download), or, when the provider lacks one (its SP_CAP_* flag is
 * clear), the same done by a short command in the sandbox. Same arguments
 * and errors as the sp_fs_* calls, so a caller swaps one for the other.
 *
 * The command forms print with GNU stat -c: names with a
 * newline in them are skipped by rfs_list (the mount's own directories have
 * none; users' directories are listed with find, listing.c). Their
 * errors are the errno the command's message names (ENOENT, ENOTDIR,
 * EISDIR, EACCES, ENOTEMPTY, EPERM), else EIO.
 */
#ifndef DAYTONAFS_RFS_H
#define DAYTONAFS_RFS_H

#include "provider.h"

/* Bounds each command (default 60 s): the mount's request timeout. */
void rfs_set_limit(long limit_s);

int rfs_list(struct sandbox_provider *sp, const struct sp_box *box, const char *path, struct sp_fileinfo **out,
	     size_t *n, struct sp_error *err);
int rfs_info(struct sandbox_provider *sp, const struct sp_box *box, const char *path, struct sp_fileinfo *out,
	     struct sp_error *err);
int rfs_delete(struct sandbox_provider *sp, const struct sp_box *box, const char *path, bool recursive,
	       struct sp_error *err);
/* rmdir: `rmdir -- PATH` in the sandbox, which is rmdir(2): it refuses a
 * directory that is not empty (ENOTEMPTY) itself, at the moment it runs,
 * and needs no permission on the directory itself (an empty directory of
 * mode 0644 goes, as on a local disk, where a listing of it by a user who
 * is not root fails with EACCES). -ENOSYS when no command runs there (a
 * daemon without a shell): then, with SP_CAP_FS_DELETE
 * (rfs_rmdir_needs_check), rfs_rmdir_by_delete, the provider's delete,
 * which is recursive: the caller must have found the directory empty
 * first, and a file made there between that look and the delete is
 * deleted with it. (Daytona's file API deletes a directory only so; a file
 * a command made in a directory the mount had cached as empty was deleted
 * by rmdir.) */
int rfs_rmdir(struct sandbox_provider *sp, const struct sp_box *box, const char *path, struct sp_error *err);
bool rfs_rmdir_needs_check(struct sandbox_provider *sp);
int rfs_rmdir_by_delete(struct sandbox_provider *sp, const struct sp_box *box, const char *path,
			struct sp_error *err);
int rfs_chmod(struct sandbox_provider *sp, const struct sp_box *box, const char *path, mode_t mode,
	      struct sp_error *err);
/* Without SP_CAP_RANGED_READ a read at off < RFS_RANGE_BY_COMMAND, or to the
 * end (len 0), is the provider's whole-file read with the bytes before off
 * dropped; a read of len bytes further in is one command (tail | head |
 * base64), so that a read near the end of a large file does not fetch it all. */
#define RFS_RANGE_BY_COMMAND (1024 * 1024)
int64_t rfs_download(struct sandbox_provider *sp, const struct sp_box *box, const char *path, uint64_t off,
		     uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err);

/* Pure, for the tests: one line "%f %s %u %g %.9Y %n" of stat -c into fi
 * (name malloc'd; the fraction of the mtime may be absent). -EINVAL when it
 * does not parse. */
int rfs_parse_stat_line(const char *line, size_t len, struct sp_fileinfo *fi);
/* The errno a command's message names, else -EIO. Pure. */
int rfs_errno_from_message(const char *msg);

#endif
