/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.h - the daytonafs filesystem: what main() needs to mount it.
 */
#ifndef DAYTONAFS_FS_H
#define DAYTONAFS_FS_H

#include <stddef.h>
#include "options.h"

struct dfs;

/* Builds the transport, the Daytona client, the caches, the staging area
 * and the command manager from the options. NULL with a message in err. */
struct dfs *dfs_new(const struct dfs_options *o, char *err, size_t errlen);
/* Start-up check: the endpoint answers and the credentials are accepted.
 * Returns 0, or a negative errno with a one-line message saying what to do. */
int dfs_check(struct dfs *fs, char *err, size_t errlen);
void dfs_free(struct dfs *fs);

struct fuse_operations;
const struct fuse_operations *dfs_operations(void);

#endif
