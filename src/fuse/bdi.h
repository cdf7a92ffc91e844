/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bdi.h - the readahead of a FUSE mount's backing device (bdi).
 *
 * The kernel reads a FUSE file ahead by its bdi's read_ahead_kb, 128 KiB by
 * default, and a FUSE file system cannot raise it through the protocol (the
 * INIT reply can only lower it). With 128 KiB, a cat arrives as 256 KiB
 * reads (its buffer); with 1 MiB, as 1 MiB reads (max_pages): a quarter of
 * the requests, each of which crosses into user space twice. The bdi of a
 * mount is /sys/class/bdi/MAJ:MIN, MAJ:MIN being the mount's st_dev; root
 * may write it. It is found in /proc/self/mountinfo, not by stat() of the
 * mount point: during INIT a stat would wait for the very file system that
 * is starting.
 */
#ifndef DAYTONAFS_BDI_H
#define DAYTONAFS_BDI_H

#include <stdio.h>

/* The device ("MAJ:MIN") of the FUSE mount at mountpoint (an absolute path,
 * as mountinfo spells it after unescaping) in mountinfo text: the last
 * matching line, i.e. the mount on top. Only fuse and fuse.* mounts match,
 * so that a disk's bdi is never touched. Returns 0, or -ENOENT. */
int bdi_find(FILE *mountinfo, const char *mountpoint, unsigned *major, unsigned *minor);

/* Sets /sys/class/bdi/MAJ:MIN/read_ahead_kb of the FUSE mount at mountpoint
 * to kb. Returns 0, or -errno (-EACCES when not root, -ENOENT when no such
 * mount). */
int bdi_set_read_ahead(const char *mountpoint, unsigned kb);

#endif
