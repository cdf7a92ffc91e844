/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tar_gz.h - a gzip'd tar of one regular file, produced while it is read.
 *
 * Vercel's fs/write takes a tar.gz. Rather than build the archive in memory
 * (as the SDK does) it is generated on demand at increasing offsets, so a
 * file of any size is sent straight from its descriptor with a known
 * Content-Length, and a retry simply starts again at offset 0.
 *
 * The tar is POSIX ustar; a PAX extended header ('x') carries the path when
 * it does not fit the ustar name/prefix fields or is not ASCII, and the size
 * when it needs more than 11 octal digits. The gzip member uses deflate's
 * stored (uncompressed) blocks with the CRC-32 and length trailer of RFC 1952:
 * a valid gzip for every reader, its size known before a byte is read, and no
 * zlib dependency (the content the mount writes is read-back-exact, not
 * smaller; compression would cost CPU on both sides for little).
 *
 * Pure: no I/O but through the source callback. Not thread-safe per object.
 */
#ifndef DAYTONAFS_TAR_GZ_H
#define DAYTONAFS_TAR_GZ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "strbuf.h"

/* Reads up to len bytes of the file at off; returns the count (0 = the file
 * ended early), or a negative errno. */
typedef ssize_t (*tgz_source_fn)(void *ctx, uint64_t off, void *buf, size_t len);

struct tgz {
	struct strbuf head;         /* PAX header + its records + the ustar header */
	uint64_t file_size;
	tgz_source_fn src;
	void *src_ctx;
	uint64_t tar_len;           /* the uncompressed tar stream's length */
	uint64_t gz_len;            /* the whole gzip member's length */
	/* Sequential state. */
	uint64_t pos;               /* next output offset */
	uint64_t tar_pos;           /* next tar byte */
	uint32_t crc;               /* CRC-32 of tar[0 .. tar_pos) */
};

/*
 * Prepares the archive of one regular file. name is the entry's path,
 * relative (no leading '/', no "." or ".." component, no empty component);
 * mode its permission bits (07777). -EINVAL for a bad name, -ENAMETOOLONG over
 * 4095 bytes, -ENOMEM.
 */
int tgz_init(struct tgz *t, const char *name, mode_t mode, uint64_t size, time_t mtime,
	     tgz_source_fn src, void *ctx);
void tgz_free(struct tgz *t);

/* The archive's exact length in bytes. */
uint64_t tgz_length(const struct tgz *t);

/*
 * Up to len bytes of the archive at off. Offsets must follow one another
 * (off == what was read so far) or restart at 0. Returns the count (> 0
 * unless off is at the end), or a negative errno: -EINVAL for an offset out of
 * sequence, -EIO when the source ends before size bytes, the source's errno.
 */
ssize_t tgz_read(struct tgz *t, uint64_t off, void *buf, size_t len);

/* The CRC-32 (ISO-HDLC, as gzip) of data, continuing from crc (0 to start). */
uint32_t tgz_crc32(uint32_t crc, const void *data, size_t len);

#endif
