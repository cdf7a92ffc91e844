/* SPDX-License-Identifier: Apache-2.0 */
#ifndef DAYTONAFS_RENAME_PIN_H
#define DAYTONAFS_RENAME_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A rename over a file keeps the replaced file's inode openable (rename_pin.c).
 * libfuse's path-based API forgets the path of a rename's destination at the
 * rename unless the destination is open, and then answers every later open
 * of that inode with ESTALE without asking the mount. The kernel sends such an
 * open when its lookup of the name came just before the rename; it retries
 * once, but a program that opens the name in a loop while another saves it
 * by write-then-rename met the next rename in the retry too. So before libfuse
 * runs a rename, the mount opens the destination itself, inside libfuse (a
 * request of its own, read from /dev/fuse ahead of the rename): libfuse then
 * hides it under a .fuse_hidden name instead, and an open of its inode is an
 * open of that name, which the mount answers with the file now at the name it
 * was hidden from (HIDDEN_NAMES).
 */

struct fuse_session;

/* After fuse_mount: reads and replies go through the pin. 0 or -errno. */
int rename_pin_install(struct fuse_session *se);

/* The open this thread runs is the pin's own: it gets a handle that does nothing. */
bool rename_pin_opening(void);

/* The rename this thread runs had its destination pinned: libfuse hides the
 * destination though no descriptor is open on it. */
bool rename_pin_hiding(void);

/* Whether a request read from /dev/fuse is a rename to pin (one without
 * flags): its destination's directory node and name (not NUL-terminated
 * in *name's length, but followed by a NUL in buf). */
bool rename_pin_destination(const void *buf, size_t len, uint64_t *newdir, const char **name, size_t *namelen);

#endif
