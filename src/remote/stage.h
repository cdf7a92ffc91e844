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

/* Creates (mode 0700) dir/staging and dir/unsaved, and locks the directory
 * (flock of dir/lock) for this process: one mount per cache directory, so
 * that what a dead mount left there is the next one's alone (journal.h).
 * Returns NULL and sets errno on failure (EBUSY: another mount holds it). */
struct stage_area *stage_area_open(const char *cache_dir);
void stage_area_close(struct stage_area *a);   /* removes leftover (non-preserved) stages */
const char *stage_area_dir(const struct stage_area *a);
const char *stage_area_staging(const struct stage_area *a);   /* dir/staging */

/* A new empty stage file. */
int stage_new(struct stage_area *a, struct stage **out);
void stage_free(struct stage *s);              /* closes and unlinks the staging file */
/* A new stage holding the first len bytes of src (len <= its size). */
int stage_copy(struct stage_area *a, struct stage *src, uint64_t len, struct stage **out);
/* Takes over the staging file NAME that a dead mount left in dir/staging. */
int stage_adopt(struct stage_area *a, const char *name, struct stage **out);
/* Closes without removing the staging file (recovery leaves it for a later mount). */
void stage_close_keep(struct stage *s);
/* The staging file's name in dir/staging (the journal's key), "" once preserved. */
const char *stage_name(const struct stage *s);
/* fsync of the staging file. Returns 0 or a negative errno. */
int stage_sync(struct stage *s);

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
