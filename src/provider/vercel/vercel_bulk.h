/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_bulk.h - many files in one command on Vercel, which has no bulk
 * file call: fs_bulk_download (small files of a directory for the mount's
 * prefetch) and fs_upload_many (closes that share a request), each one
 * command through the provider's exec.
 */
#ifndef DAYTONAFS_VERCEL_BULK_H
#define DAYTONAFS_VERCEL_BULK_H

#include "provider.h"
#include "strbuf.h"

/* The provider's exec operation (sandbox_provider_ops.exec). */
typedef int (*vercel_exec_fn)(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			      const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code,
			      char **output, struct sp_error *err);

/* fs_bulk_download (provider.h) by one command that prints each file. */
int vercel_bulk_download(vercel_exec_fn exec, void *impl, const struct sp_box *box, struct sp_bulk_file *files,
			 size_t n, struct sp_error *err);

/* fs_upload_many (provider.h) by one command that carries the files' bytes
 * and writes each into place, as files_upload_fd's copy does: cat into the
 * existing file, keeping its inode, mode, owner and links. */
int vercel_upload_many(vercel_exec_fn exec, void *impl, const struct sp_box *box, struct sp_upload_item *items,
		       size_t n, struct sp_error *err);

/* The fence of box's uploads that ended without knowing that each file
 * landed (see vercel_bulk.c): appended to cmd, to run before the command the
 * provider's exec sends next to that sandbox, whatever it is. Returns a
 * ticket for vercel_upload_fence_done, or 0 when there is none to run. The
 * fence prints one line first, VERCEL_FENCE_MARK then 0 (written) or 1 (not:
 * it stays for the next command); the command runs either way. */
uint64_t vercel_upload_fence(const struct sp_box *box, struct strbuf *cmd);
#define VERCEL_FENCE_MARK "daytonafs-fence "
/* Takes the fence's line off the front of a command's output *text: 0 when
 * the fence was written, -EAGAIN when it was not (or its line is missing). */
int vercel_upload_fence_result(char *text);
/* The command with that fence ran: those paths are recorded. */
void vercel_upload_fence_done(const struct sp_box *box, uint64_t ticket);
/* How many fences wait (for the unit tests). */
size_t vercel_upload_fences(void);
/* The mount's id in the upload records (16 hex digits). */
const char *vercel_upload_mount_id(void);

/* Parsers of the two commands' output (pure; for the unit tests). */
int vercel_bulk_parse(const char *out, struct sp_bulk_file *files, size_t n);
int vercel_upload_parse(const char *out, struct sp_upload_item *items, size_t n);

#endif
