/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cache.h - the metadata cache: attributes, directory listings and negative
 * entries of sandbox paths, with timeouts. Keys are (sandbox id, path).
 *
 * Thread-safe (one mutex). Bounded: at most max_entries entries, the least
 * recently used evicted first. Each sandbox has a generation: any
 * invalidation in a sandbox bumps it, and a put carries the generation read
 * before its request was sent, so that a listing fetched before an
 * invalidation is never stored after it (cache_generation, then request,
 * then put with that generation: a stale put is dropped).
 */
#ifndef DAYTONAFS_CACHE_H
#define DAYTONAFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct cache_config {
	double attr_ttl;       /* seconds an attribute stays fresh; default 2 */
	double dir_ttl;        /* seconds a listing stays fresh; default 2 */
	double neg_ttl;        /* seconds a "does not exist" stays fresh; default 1 */
	size_t max_entries;    /* default 100000 */
};
void cache_config_defaults(struct cache_config *cfg);

struct cache;
struct cache *cache_new(const struct cache_config *cfg);
void cache_free(struct cache *c);
/* For the unit tests: a clock returning seconds (monotonic). NULL restores the default. */
void cache_set_clock(struct cache *c, double (*now)(void));

enum cache_result { CACHE_MISS = 0, CACHE_HIT = 1, CACHE_NEGATIVE = 2 };

uint64_t cache_generation(struct cache *c, const char *sandbox);

enum cache_result cache_get_attr(struct cache *c, const char *sandbox, const char *path, struct stat *st);
void cache_put_attr(struct cache *c, const char *sandbox, const char *path, const struct stat *st, uint64_t gen);
void cache_put_negative(struct cache *c, const char *sandbox, const char *path, uint64_t gen);

struct cache_dirent {
	const char *name;
	struct stat st;
};
/* Stores a complete listing of dir; also stores each child's attributes and
 * drops the negative entries under dir. */
void cache_put_dir(struct cache *c, const char *sandbox, const char *dir,
		   const struct cache_dirent *ents, size_t n, uint64_t gen);
/* When a fresh complete listing of dir is cached, calls fn for each entry (in
 * the stored order) and returns true; fn returning non-zero stops early. */
bool cache_get_dir(struct cache *c, const char *sandbox, const char *dir,
		   int (*fn)(void *ctx, const char *name, const struct stat *st), void *ctx);

/*
 * A lookup that also uses the parent's listing: CACHE_HIT with the path's
 * fresh attributes; CACHE_NEGATIVE when a fresh negative entry says so, or
 * when a fresh complete listing of the parent lacks the name (a negative
 * entry is then stored); else CACHE_MISS, and then *listed (may be NULL)
 * says whether the parent's fresh listing has the name, in which case *st
 * holds the listing's attributes of it (right in type, maybe stale
 * otherwise: see cache_update).
 */
enum cache_result cache_lookup(struct cache *c, const char *sandbox, const char *path, struct stat *st,
			       bool *listed);

/*
 * Whether the parent's fresh listing of path names another entry (not a
 * directory) whose attributes are not freshly cached: then one listing of
 * the parent answers for several lookups that would each cost a stat (the
 * files this mount uploaded, whose attributes it does not know; or all of
 * them, once attr_timeout passed while the listing is still fresh).
 */
bool cache_siblings_unknown(struct cache *c, const char *sandbox, const char *path);

/*
 * A change this mount made to one path, applied to what is cached rather
 * than dropping it (so that one create does not cost the next lookup a new
 * listing of a large directory). The parent's fresh listing keeps its
 * expiry and gets the change; the generation is bumped, as by any
 * invalidation.
 *  CACHE_CHANGED:  the same object, new attributes st.
 *  CACHE_REPLACED: a new object at path (created, or renamed onto it):
 *                  what was cached below path is dropped; the name is added
 *                  to the parent's listing if missing.
 *  CACHE_REMOVED:  path and everything below it are gone: a negative
 *                  entry, and the name leaves the parent's listing. st,
 *                  when given, is what was there (only its type is used).
 * With exact, st is stored as the path's attributes; without, st only
 * updates the listing (its type must be right) and the path's attributes
 * are dropped, so that the next lookup misses with listed set.
 * When a name comes or goes, the parent's attributes (its time, its link
 * count) are dropped: only the sandbox knows them now. Its listing stays.
 * Except when a file (not a directory) comes or goes (known by st or the
 * cached attributes of what went): the link count stays, and
 * the cached attributes, until they expire, take this machine's time
 * (never earlier than the cached one) as the directory's mtime and ctime.
 */
enum cache_change { CACHE_CHANGED, CACHE_REPLACED, CACHE_REMOVED };
void cache_update(struct cache *c, const char *sandbox, const char *path, enum cache_change what,
		  const struct stat *st, bool exact);

/* The path's attributes and the listing of its parent. */
void cache_invalidate(struct cache *c, const char *sandbox, const char *path);
/* The path, everything below it, and its parent's listing (rename, rmdir). */
void cache_invalidate_tree(struct cache *c, const char *sandbox, const char *path);
/* Everything of one sandbox (after a command ran in it). */
void cache_invalidate_sandbox(struct cache *c, const char *sandbox);
/* The same, and returns the paths that were cached (NUL-separated, malloc'd
 * in *paths, *len bytes): their count. The kernel's caches of them are
 * invalidated by the caller, who must not hold any lock a FUSE request takes. */
size_t cache_invalidate_sandbox_paths(struct cache *c, const char *sandbox, char **paths, size_t *len);

/* Counters for the tests. */
struct cache_stats { uint64_t hits, misses, negative_hits, evictions, entries; };
void cache_get_stats(struct cache *c, struct cache_stats *out);

#endif
