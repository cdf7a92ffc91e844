/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stage.h - local staging files for writes.
 *
 * A file being written is staged whole in a local file under the cache
 * directory (never in memory, so memory stays bounded whatever the size),
 * and uploaded whole on flush, fsync and release. A stage that failed to
 * upload is never deleted silently: stage_preserve() moves it into
 * CACHE_DIR/unsaved/ under a name that says where it belonged, and the log
 * says where it is.
 */
#ifndef DAYTONAFS_STAGE_H
#define DAYTONAFS_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct stage_area;
struct stage;

/* Creates (mode 0700) dir/staging and dir/unsaved. Returns NULL and sets errno on failure. */
struct stage_area *stage_area_open(const char *cache_dir);
void stage_area_close(struct stage_area *a);   /* removes leftover (non-preserved) stages */
const char *stage_area_dir(const struct stage_area *a);

/* A new empty stage file. */
int stage_new(struct stage_area *a, struct stage **out);
void stage_free(struct stage *s);              /* closes and unlinks the staging file */

int stage_fd(const struct stage *s);
uint64_t stage_size(const struct stage *s);
ssize_t stage_pread(struct stage *s, void *buf, size_t size, uint64_t off);
ssize_t stage_pwrite(struct stage *s, const void *buf, size_t size, uint64_t off);
int stage_truncate(struct stage *s, uint64_t size);
/* Appends bytes at the end (used while filling a stage from a download). */
int stage_append(struct stage *s, const void *buf, size_t size);

/* Moves the staging file to dir/unsaved/<label-with-slashes-replaced>.<time>,
 * writes the resulting path into out (cap bytes), and detaches it from s
 * (stage_free then only closes). Returns 0 or a negative errno. */
int stage_preserve(struct stage *s, const char *label, char *out, size_t cap);

#endif
