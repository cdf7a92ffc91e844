/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prefetch.h - the contents of small files fetched before they are read
 * (several in one request, while a program reads a directory's files in
 * turn), kept until their own read takes them.
 *
 * An entry is only ever handed out under the conditions that make it what
 * a download at open would have given: it was fetched after the listing
 * that gave the file's size and mtime, that listing still says the same
 * (the caller passes the attributes it has now), nothing in the sandbox was
 * changed through the mount since the fetch began (the cache generation,
 * cache.h, is unchanged), and its age is within the attribute timeout,
 * which is how stale an open may be anyway. Otherwise it is dropped.
 *
 * Bounded: at most max_bytes of content and max_entries entries; the
 * oldest go first. Thread-safe (one mutex). Keys are (sandbox id, path).
 * An entry is first reserved (pending: being fetched), then filled or
 * cancelled, so that two readers do not fetch the same file twice.
 */
#ifndef DAYTONAFS_PREFETCH_H
#define DAYTONAFS_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct prefetch;

struct prefetch *prefetch_new(size_t max_bytes, size_t max_entries);
void prefetch_free(struct prefetch *pf);
/* For the unit tests: a clock in seconds (monotonic). NULL: the default. */
void prefetch_set_clock(struct prefetch *pf, double (*now)(void));

/* Reserves path (pending): false when it is already held or pending, or
 * out of memory. */
bool prefetch_reserve(struct prefetch *pf, const char *sandbox, const char *path);
/* Fills a reservation with the file's content (data is taken over, and
 * freed here if the reservation is gone), the size and mtime the listing
 * gave when the fetch was chosen, the cache generation read before the
 * request was sent, and when it stops being usable. */
void prefetch_fill(struct prefetch *pf, const char *sandbox, const char *path, char *data, size_t len,
		   off_t listed_size, const struct timespec *listed_mtime, uint64_t gen, double expires);
void prefetch_cancel(struct prefetch *pf, const char *sandbox, const char *path);

/* Takes path's content out (the caller frees *data) when it is held, not
 * expired, of generation gen, and of size and mtime equal to the file's
 * attributes now; whatever else is held for path is dropped. A pending
 * entry is left alone (false). */
bool prefetch_take(struct prefetch *pf, const char *sandbox, const char *path, off_t size,
		   const struct timespec *mtime, uint64_t gen, char **data, size_t *len);
/*
 * The content of a file this mount has just uploaded (data is taken over),
 * of that size and mtime (the time the mount keeps, and shows): handed out
 * like a fetched entry, but whatever the generation, which every change
 * through the mount moves (a delete of a swap file beside it). What keeps
 * it true is the caller's: a rename or delete of path through the mount
 * drops it (prefetch_drop_path), a command in the sandbox drops every entry
 * (prefetch_drop_sandbox), and a change by someone else is seen as other
 * attributes, as for any entry. A pending entry for path stays, and data
 * is freed.
 */
#define PREFETCH_OWN UINT64_MAX
void prefetch_put_own(struct prefetch *pf, const char *sandbox, const char *path, char *data, size_t len,
		      const struct timespec *mtime, double expires);
/* Drops the filled entries of path and of the paths below it. */
void prefetch_drop_path(struct prefetch *pf, const char *sandbox, const char *path);
/* Whether path is held or pending. */
bool prefetch_has(struct prefetch *pf, const char *sandbox, const char *path);
/* Drops every filled entry of a sandbox (NULL: of all). */
void prefetch_drop_sandbox(struct prefetch *pf, const char *sandbox);

struct prefetch_stats { size_t entries, bytes; uint64_t fills, hits, stale, evicted; };
void prefetch_get_stats(struct prefetch *pf, struct prefetch_stats *out);

#endif
