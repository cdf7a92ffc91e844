/* SPDX-License-Identifier: Apache-2.0 */
/*
 * inode.h - inode numbers that stay the same for as long as the mount lives.
 *
 * libfuse numbers a node again whenever the kernel forgets it (memory
 * reclaim, drop_caches), so with use_ino the mount gives st_ino itself. A
 * path's number is a hash of (namespace, path): the same after any eviction,
 * at no memory cost. A rename moves the number with the object, which a hash
 * cannot do, so renamed paths are remembered in a bounded table (the newest
 * max_entries; an older renamed path falls back to its hash, and entries
 * below a renamed directory are numbered by their new paths).
 *
 * Thread-safe (one mutex).
 */
#ifndef DAYTONAFS_INODE_H
#define DAYTONAFS_INODE_H

#include <stddef.h>
#include <stdint.h>

struct ino_table;

struct ino_table *ino_table_new(size_t max_entries);
void ino_table_free(struct ino_table *t);

/* The inode number of path in namespace ns (a sandbox id, or "" for the
 * mount's own tree): never 0 or 1 (1 is the root's, FUSE_ROOT_ID). */
uint64_t ino_of(struct ino_table *t, const char *ns, const char *path);

/* from was renamed to to: to takes from's number, and from gets a new one,
 * so that a new file made at from is not taken for the renamed one. */
void ino_rename(struct ino_table *t, const char *ns, const char *from, const char *to);

/* For the unit tests: how many renamed paths are remembered. */
size_t ino_table_size(struct ino_table *t);

#endif
