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

/* Parsers of the two commands' output (pure; for the unit tests). */
int vercel_bulk_parse(const char *out, struct sp_bulk_file *files, size_t n);
int vercel_upload_parse(const char *out, struct sp_upload_item *items, size_t n);

#endif
