/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cache.c - the metadata cache (see cache.h).
 *
 * One entry per (sandbox, path) holds what is known of that path: its
 * attributes or the fact that it does not exist, and, for a directory, its
 * complete listing. Entries live in a chained hash table, in one LRU list
 * (eviction) and in their sandbox's list (tree and sandbox invalidation
 * without a scan of the whole cache). A sandbox record also carries the
 * generation; records are kept until cache_free (there are few sandboxes,
 * and dropping a record would reset its generation and let a stale put in).
 *
 * Listings are immutable and reference-counted, so that cache_get_dir can
 * call its callback without holding the mutex (the callback is FUSE's
 * filler, and may be slow or re-enter the cache).
 *
 * Paths are sandbox paths ("/home/daytona/x"); a trailing '/' is ignored.
 */
#include "cache.h"
#include "strbuf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dirlist {
	unsigned refs;                /* under the cache mutex */
	size_t n;
	struct cache_dirent *ents;    /* names point into names */
	char *names;
};

struct entry;

struct sbrec {
	struct sbrec *hnext;
	uint64_t hash;
	uint64_t gen;
	struct entry *entries;        /* this sandbox's entries (sb_next/sb_prev) */
	char name[];
};

enum attr_state { A_NONE, A_ATTR, A_NEG };

struct entry {
	struct entry *hnext;
	struct entry *lru_prev, *lru_next;
	struct entry *sb_prev, *sb_next;
	struct sbrec *sb;
	uint64_t hash;
	enum attr_state attr;
	double attr_exp;
	struct stat st;
	struct dirlist *dir;
	double dir_exp;
	size_t len;
	char path[];
};

struct cache {
	pthread_mutex_t lock;
	struct cache_config cfg;
	double (*now)(void);

	struct entry **buckets;
	size_t nbuckets;              /* a power of two */
	size_t count;
	struct entry *lru_head, *lru_tail;   /* head = most recently used */

	struct sbrec **sbuckets;
	size_t nsbuckets;
	size_t nsb;

	struct cache_stats stats;
};

#define INITIAL_BUCKETS 1024
#define INITIAL_SBUCKETS 64

void cache_config_defaults(struct cache_config *cfg)
{
	cfg->attr_ttl = 2;
	cfg->dir_ttl = 2;
	cfg->neg_ttl = 1;
	cfg->max_entries = 100000;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* FNV-1a, then a final mix so that the low bits (the bucket) are good. */
static uint64_t hash_bytes(const char *s, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

/* The length of path without trailing slashes ("/" stays "/"). */
static size_t norm_len(const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	return n;
}

/* The length of the parent of path[0..n) ("/a/b" -> "/a", "/a" -> "/"), or 0
 * when there is none ("/", or a relative path). */
static size_t parent_len(const char *path, size_t n)
{
	if (n <= 1)
		return 0;
	while (n > 0 && path[n - 1] != '/')
		n--;
	if (n == 0)
		return 0;
	return n == 1 ? 1 : n - 1;
}

/* ------------------------------------------------------------ listings */

static void dir_unref(struct dirlist *d)
{
	if (d && --d->refs == 0) {
		free(d->ents);
		free(d->names);
		free(d);
	}
}

static bool child_name_ok(const char *name)
{
	return name[0] && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/');
}

/* Copies a listing (outside the lock). */
static struct dirlist *dir_build(const struct cache_dirent *ents, size_t n)
{
	struct dirlist *d = calloc(1, sizeof(*d));
	size_t total = 0, off = 0;

	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		total += strlen(ents[i].name) + 1;
	d->ents = n ? calloc(n, sizeof(*d->ents)) : NULL;
	d->names = malloc(total ? total : 1);
	if ((n && !d->ents) || !d->names) {
		free(d->ents);
		free(d->names);
		free(d);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(ents[i].name) + 1;

		memcpy(d->names + off, ents[i].name, len);
		d->ents[i].name = d->names + off;
		d->ents[i].st = ents[i].st;
		off += len;
	}
	d->n = n;
	d->refs = 1;
	return d;
}

/* ------------------------------------------------------- sandbox records */

static struct sbrec *sb_find(struct cache *c, const char *sandbox)
{
	uint64_t h = hash_bytes(sandbox, strlen(sandbox), FNV_BASIS);

	for (struct sbrec *s = c->sbuckets[h & (c->nsbuckets - 1)]; s; s = s->hnext)
		if (s->hash == h && !strcmp(s->name, sandbox))
			return s;
	return NULL;
}

static void sb_grow(struct cache *c)
{
	size_t nb = c->nsbuckets * 2;
	struct sbrec **b = calloc(nb, sizeof(*b));

	if (!b)
		return;   /* longer chains, still correct */
	for (size_t i = 0; i < c->nsbuckets; i++) {
		struct sbrec *s = c->sbuckets[i], *next;

		for (; s; s = next) {
			next = s->hnext;
			s->hnext = b[s->hash & (nb - 1)];
			b[s->hash & (nb - 1)] = s;
		}
	}
	free(c->sbuckets);
	c->sbuckets = b;
	c->nsbuckets = nb;
}

/* The record of sandbox, created (generation 0) if need be; NULL when out of memory. */
static struct sbrec *sb_get(struct cache *c, const char *sandbox)
{
	struct sbrec *s = sb_find(c, sandbox);
	size_t n;

	if (s)
		return s;
	n = strlen(sandbox);
	s = calloc(1, sizeof(*s) + n + 1);
	if (!s)
		return NULL;
	memcpy(s->name, sandbox, n + 1);
	s->hash = hash_bytes(sandbox, n, FNV_BASIS);
	s->hnext = c->sbuckets[s->hash & (c->nsbuckets - 1)];
	c->sbuckets[s->hash & (c->nsbuckets - 1)] = s;
	if (++c->nsb > c->nsbuckets)
		sb_grow(c);
	return s;
}

/* ------------------------------------------------------------- entries */

static uint64_t entry_hash(const struct sbrec *sb, const char *path, size_t len)
{
	return hash_bytes(path, len, FNV_BASIS ^ sb->hash);
}

static struct entry *entry_find(struct cache *c, const struct sbrec *sb, const char *path, size_t len)
{
	uint64_t h = entry_hash(sb, path, len);

	for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->sb == sb && e->len == len && !memcmp(e->path, path, len))
			return e;
	return NULL;
}

static void lru_unlink(struct cache *c, struct entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push(struct cache *c, struct entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void touch(struct cache *c, struct entry *e)
{
	if (c->lru_head != e) {
		lru_unlink(c, e);
		lru_push(c, e);
	}
}

static void entry_remove(struct cache *c, struct entry *e)
{
	struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	if (e->sb_prev)
		e->sb_prev->sb_next = e->sb_next;
	else
		e->sb->entries = e->sb_next;
	if (e->sb_next)
		e->sb_next->sb_prev = e->sb_prev;
	dir_unref(e->dir);
	free(e);
	c->count--;
}

/* An entry that knows nothing any more is dropped. */
static void entry_drop_if_empty(struct cache *c, struct entry *e)
{
	if (e->attr == A_NONE && !e->dir)
		entry_remove(c, e);
}

static void table_grow(struct cache *c)
{
	size_t nb = c->nbuckets * 2;
	struct entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct entry *e = c->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = nb;
}

static void evict(struct cache *c)
{
	while (c->count > c->cfg.max_entries && c->lru_tail) {
		entry_remove(c, c->lru_tail);
		c->stats.evictions++;
	}
}

/* The entry of (sb, path), created empty if need be and made the most
 * recently used; NULL when out of memory or when the cache holds nothing. */
static struct entry *entry_get(struct cache *c, struct sbrec *sb, const char *path, size_t len)
{
	struct entry *e = entry_find(c, sb, path, len);

	if (e) {
		touch(c, e);
		return e;
	}
	if (c->cfg.max_entries == 0)
		return NULL;
	e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->path, path, len);
	e->path[len] = '\0';
	e->len = len;
	e->sb = sb;
	e->hash = entry_hash(sb, path, len);
	e->hnext = c->buckets[e->hash & (c->nbuckets - 1)];
	c->buckets[e->hash & (c->nbuckets - 1)] = e;
	e->sb_next = sb->entries;
	if (sb->entries)
		sb->entries->sb_prev = e;
	sb->entries = e;
	lru_push(c, e);
	c->count++;
	if (c->count > c->nbuckets && c->nbuckets < ((size_t)1 << 26))
		table_grow(c);
	evict(c);   /* never e itself: it is the most recently used */
	return e;
}

/* ------------------------------------------------------------ lifetime */

struct cache *cache_new(const struct cache_config *cfg)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (cfg)
		c->cfg = *cfg;
	else
		cache_config_defaults(&c->cfg);
	c->nbuckets = INITIAL_BUCKETS;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	c->nsbuckets = INITIAL_SBUCKETS;
	c->sbuckets = calloc(c->nsbuckets, sizeof(*c->sbuckets));
	if (!c->buckets || !c->sbuckets || pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c->buckets);
		free(c->sbuckets);
		free(c);
		return NULL;
	}
	return c;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	while (c->lru_head)
		entry_remove(c, c->lru_head);
	for (size_t i = 0; i < c->nsbuckets; i++) {
		struct sbrec *s = c->sbuckets[i], *next;

		for (; s; s = next) {
			next = s->hnext;
			free(s);
		}
	}
	free(c->sbuckets);
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void cache_set_clock(struct cache *c, double (*now)(void))
{
	pthread_mutex_lock(&c->lock);
	c->now = now;
	pthread_mutex_unlock(&c->lock);
}

static double clock_now(const struct cache *c)
{
	return c->now ? c->now() : mono_now();
}

uint64_t cache_generation(struct cache *c, const char *sandbox)
{
	struct sbrec *s;
	uint64_t gen;

	pthread_mutex_lock(&c->lock);
	s = sb_find(c, sandbox);
	gen = s ? s->gen : 0;
	pthread_mutex_unlock(&c->lock);
	return gen;
}

/* -------------------------------------------------------------- lookups */

/* Lock held: the statistics of one lookup. */
static void count_result(struct cache *c, enum cache_result r)
{
	if (r == CACHE_HIT)
		c->stats.hits++;
	else if (r == CACHE_NEGATIVE)
		c->stats.negative_hits++;
	else
		c->stats.misses++;
}

enum cache_result cache_get_attr(struct cache *c, const char *sandbox, const char *path, struct stat *st)
{
	enum cache_result r = CACHE_MISS;
	size_t len = norm_len(path);
	struct sbrec *sb;
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	sb = sb_find(c, sandbox);
	e = sb ? entry_find(c, sb, path, len) : NULL;
	if (e && e->attr != A_NONE) {
		if (clock_now(c) < e->attr_exp) {
			touch(c, e);
			if (e->attr == A_ATTR) {
				if (st)
					*st = e->st;
				r = CACHE_HIT;
			} else {
				r = CACHE_NEGATIVE;
			}
		} else {
			e->attr = A_NONE;
			entry_drop_if_empty(c, e);
		}
	}
	count_result(c, r);
	pthread_mutex_unlock(&c->lock);
	return r;
}

bool cache_get_dir(struct cache *c, const char *sandbox, const char *dir,
		   int (*fn)(void *ctx, const char *name, const struct stat *st), void *ctx)
{
	struct dirlist *d = NULL;
	size_t len = norm_len(dir);
	struct sbrec *sb;
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	sb = sb_find(c, sandbox);
	e = sb ? entry_find(c, sb, dir, len) : NULL;
	if (e && e->dir) {
		if (clock_now(c) < e->dir_exp) {
			d = e->dir;
			d->refs++;
			touch(c, e);
		} else {
			dir_unref(e->dir);
			e->dir = NULL;
			entry_drop_if_empty(c, e);
		}
	}
	if (d)
		c->stats.hits++;
	else
		c->stats.misses++;
	pthread_mutex_unlock(&c->lock);
	if (!d)
		return false;

	for (size_t i = 0; i < d->n; i++)
		if (fn(ctx, d->ents[i].name, &d->ents[i].st))
			break;

	pthread_mutex_lock(&c->lock);
	dir_unref(d);
	pthread_mutex_unlock(&c->lock);
	return true;
}

/* ----------------------------------------------------------------- puts */

/* The record of sandbox when gen is still its generation, else NULL (a
 * stale put: something was invalidated since its request was sent). */
static struct sbrec *sb_for_put(struct cache *c, const char *sandbox, uint64_t gen)
{
	struct sbrec *sb = sb_find(c, sandbox);

	if (!sb) {
		if (gen != 0)
			return NULL;
		sb = sb_get(c, sandbox);
	}
	return sb && sb->gen == gen ? sb : NULL;
}

static void put_attr_locked(struct cache *c, struct sbrec *sb, const char *path, size_t len,
			    const struct stat *st, double t)
{
	struct entry *e = entry_get(c, sb, path, len);

	if (!e)
		return;
	e->attr = A_ATTR;
	e->st = *st;
	e->attr_exp = t + c->cfg.attr_ttl;
}

void cache_put_attr(struct cache *c, const char *sandbox, const char *path, const struct stat *st, uint64_t gen)
{
	struct sbrec *sb;

	if (c->cfg.attr_ttl <= 0)
		return;
	pthread_mutex_lock(&c->lock);
	sb = sb_for_put(c, sandbox, gen);
	if (sb)
		put_attr_locked(c, sb, path, norm_len(path), st, clock_now(c));
	pthread_mutex_unlock(&c->lock);
}

void cache_put_negative(struct cache *c, const char *sandbox, const char *path, uint64_t gen)
{
	struct sbrec *sb;
	struct entry *e;

	if (c->cfg.neg_ttl <= 0)
		return;
	pthread_mutex_lock(&c->lock);
	sb = sb_for_put(c, sandbox, gen);
	e = sb ? entry_get(c, sb, path, norm_len(path)) : NULL;
	if (e) {
		e->attr = A_NEG;
		e->attr_exp = clock_now(c) + c->cfg.neg_ttl;
		/* a path that does not exist has no listing either */
		dir_unref(e->dir);
		e->dir = NULL;
	}
	pthread_mutex_unlock(&c->lock);
}

void cache_put_dir(struct cache *c, const char *sandbox, const char *dir,
		   const struct cache_dirent *ents, size_t n, uint64_t gen)
{
	size_t dlen = norm_len(dir), maxname = 0;
	struct dirlist *d = NULL;
	char *child = NULL;
	struct sbrec *sb;
	struct entry *e;
	double t;

	/* the copies are made before taking the lock */
	if (c->cfg.dir_ttl > 0) {
		d = dir_build(ents, n);
		if (!d)
			return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(ents[i].name);

		if (l > maxname)
			maxname = l;
	}
	child = malloc(dlen + maxname + 2);
	if (!child) {
		dir_unref(d);   /* not shared yet: no lock needed */
		return;
	}
	memcpy(child, dir, dlen);
	if (!(dlen == 1 && dir[0] == '/'))
		child[dlen++] = '/';

	pthread_mutex_lock(&c->lock);
	sb = sb_for_put(c, sandbox, gen);
	if (!sb)
		goto out;
	t = clock_now(c);
	/* The children first, the directory last: it is then the most
	 * recently used, and the children's insertions cannot evict it. */
	if (c->cfg.attr_ttl > 0) {
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(ents[i].name);

			if (!child_name_ok(ents[i].name))
				continue;
			memcpy(child + dlen, ents[i].name, l + 1);
			put_attr_locked(c, sb, child, dlen + l, &ents[i].st, t);
		}
	}
	if (d) {
		e = entry_get(c, sb, dir, norm_len(dir));
		if (e) {
			dir_unref(e->dir);
			e->dir = d;
			e->dir_exp = t + c->cfg.dir_ttl;
			d = NULL;
		}
	}
out:
	dir_unref(d);
	pthread_mutex_unlock(&c->lock);
	free(child);
}

/* --------------------------------------------------------- invalidation */

/* Bumps the generation (so in-flight puts are dropped). NULL only when out
 * of memory, and then there was no record, so no entry to drop either. */
static struct sbrec *sb_bump(struct cache *c, const char *sandbox)
{
	struct sbrec *sb = sb_get(c, sandbox);

	if (sb)
		sb->gen++;
	return sb;
}

static void drop_parent_listing(struct cache *c, struct sbrec *sb, const char *path, size_t len)
{
	size_t plen = parent_len(path, len);
	struct entry *e;

	if (!plen)
		return;
	e = entry_find(c, sb, path, plen);
	if (e && e->dir) {
		dir_unref(e->dir);
		e->dir = NULL;
		entry_drop_if_empty(c, e);
	}
}

void cache_invalidate(struct cache *c, const char *sandbox, const char *path)
{
	size_t len = norm_len(path);
	struct sbrec *sb;
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	sb = sb_bump(c, sandbox);
	if (sb) {
		e = entry_find(c, sb, path, len);
		if (e)
			entry_remove(c, e);
		drop_parent_listing(c, sb, path, len);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Is p path itself or below it (on a '/' boundary: "/a/b" holds "/a/b/c", not "/a/bc")? */
static bool in_tree(const struct entry *e, const char *path, size_t len)
{
	if (len == 1 && path[0] == '/')
		return e->path[0] == '/';
	if (e->len < len || memcmp(e->path, path, len) != 0)
		return false;
	return e->len == len || e->path[len] == '/';
}

void cache_invalidate_tree(struct cache *c, const char *sandbox, const char *path)
{
	size_t len = norm_len(path);
	struct sbrec *sb;
	struct entry *e, *next;

	pthread_mutex_lock(&c->lock);
	sb = sb_bump(c, sandbox);
	if (sb) {
		for (e = sb->entries; e; e = next) {
			next = e->sb_next;
			if (in_tree(e, path, len))
				entry_remove(c, e);
		}
		drop_parent_listing(c, sb, path, len);
	}
	pthread_mutex_unlock(&c->lock);
}

void cache_invalidate_sandbox(struct cache *c, const char *sandbox)
{
	struct sbrec *sb;

	pthread_mutex_lock(&c->lock);
	sb = sb_bump(c, sandbox);
	while (sb && sb->entries)
		entry_remove(c, sb->entries);
	pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------- lookups through listings */

/* The index of name[0..n) in d, or -1. */
static long dir_index(const struct dirlist *d, const char *name, size_t n)
{
	for (size_t i = 0; i < d->n; i++)
		if (!strncmp(d->ents[i].name, name, n) && d->ents[i].name[n] == '\0')
			return (long)i;
	return -1;
}

/* The base name of path[0..len) and its length, given the parent's length. */
static const char *base_of(const char *path, size_t len, size_t plen, size_t *blen)
{
	const char *b = path + (plen == 1 ? 1 : plen + 1);

	*blen = len - (size_t)(b - path);
	return b;
}

enum cache_result cache_lookup(struct cache *c, const char *sandbox, const char *path, struct stat *st,
			       bool *listed)
{
	enum cache_result r = CACHE_MISS;
	size_t len = norm_len(path), plen, blen;
	struct sbrec *sb;
	struct entry *e, *pe;
	double t;

	if (listed)
		*listed = false;
	pthread_mutex_lock(&c->lock);
	t = clock_now(c);
	sb = sb_find(c, sandbox);
	if (!sb)
		goto out;
	e = entry_find(c, sb, path, len);
	if (e && e->attr != A_NONE) {
		if (t < e->attr_exp) {
			touch(c, e);
			if (e->attr == A_ATTR && st)
				*st = e->st;
			r = e->attr == A_ATTR ? CACHE_HIT : CACHE_NEGATIVE;
			goto out;
		}
		e->attr = A_NONE;
		entry_drop_if_empty(c, e);
	}
	plen = parent_len(path, len);
	pe = plen ? entry_find(c, sb, path, plen) : NULL;
	if (pe && pe->dir && t < pe->dir_exp) {
		const char *base = base_of(path, len, plen, &blen);
		long i = blen ? dir_index(pe->dir, base, blen) : -1;

		if (i < 0) {
			/* A complete listing without the name: it does not exist. */
			r = CACHE_NEGATIVE;
			if (c->cfg.neg_ttl > 0 && (e = entry_get(c, sb, path, len)) != NULL) {
				e->attr = A_NEG;
				e->attr_exp = t + c->cfg.neg_ttl;
			}
		} else {
			if (st)
				*st = pe->dir->ents[i].st;
			if (listed)
				*listed = true;
		}
	}
out:
	count_result(c, r);
	pthread_mutex_unlock(&c->lock);
	return r;
}

bool cache_siblings_unknown(struct cache *c, const char *sandbox, const char *path)
{
	size_t len = norm_len(path), plen, blen;
	char buf[4096];
	bool found = false;
	struct sbrec *sb;
	struct entry *pe;
	double t;

	pthread_mutex_lock(&c->lock);
	t = clock_now(c);
	sb = sb_find(c, sandbox);
	plen = parent_len(path, len);
	pe = sb && plen ? entry_find(c, sb, path, plen) : NULL;
	if (!pe || !pe->dir || t >= pe->dir_exp || plen + 1 >= sizeof(buf))
		goto out;
	base_of(path, len, plen, &blen);
	memcpy(buf, path, plen);
	if (plen > 1)
		buf[plen++] = '/';
	for (size_t i = 0; i < pe->dir->n && !found; i++) {
		const char *name = pe->dir->ents[i].name;
		size_t nl = strlen(name);
		struct entry *e;

		if (plen + nl >= sizeof(buf) || S_ISDIR(pe->dir->ents[i].st.st_mode) ||
		    (nl == blen && !memcmp(name, path + len - blen, blen)))
			continue;
		memcpy(buf + plen, name, nl);
		e = entry_find(c, sb, buf, plen + nl);
		found = !e || e->attr != A_ATTR || t >= e->attr_exp;
	}
out:
	pthread_mutex_unlock(&c->lock);
	return found;
}

/* A copy of d with the entry name[0..n) replaced or added (st), or removed
 * (st NULL). NULL when out of memory. */
static struct dirlist *dir_changed(const struct dirlist *d, const char *name, size_t n, const struct stat *st)
{
	struct cache_dirent *ents = calloc(d->n + 1, sizeof(*ents));
	char *copy = strndup(name, n);
	long at = dir_index(d, name, n);
	struct dirlist *nd = NULL;
	size_t k = 0;

	if (!ents || !copy)
		goto out;
	for (size_t i = 0; i < d->n; i++) {
		if ((long)i == at) {
			if (!st)
				continue;
			ents[k].name = d->ents[i].name;
			ents[k++].st = *st;
		} else {
			ents[k++] = d->ents[i];
		}
	}
	if (at < 0 && st) {
		ents[k].name = copy;
		ents[k++].st = *st;
	}
	nd = dir_build(ents, k);
out:
	free(ents);
	free(copy);
	return nd;
}

void cache_update(struct cache *c, const char *sandbox, const char *path, enum cache_change what,
		  const struct stat *st, bool exact)
{
	size_t len = norm_len(path), plen, blen;
	struct sbrec *sb;
	struct entry *e, *next, *pe;
	const char *nbase;
	bool gone_file, new_dir;
	double t;

	if (what != CACHE_REMOVED && !st)
		what = CACHE_REMOVED;
	pthread_mutex_lock(&c->lock);
	sb = sb_bump(c, sandbox);
	if (!sb)
		goto out;
	t = clock_now(c);
	if (what != CACHE_CHANGED) {
		/* Another object (or none) now: nothing cached below it holds. */
		for (e = sb->entries; e; e = next) {
			next = e->sb_next;
			if (e->len != len && in_tree(e, path, len))
				entry_remove(c, e);
		}
	}
	e = entry_find(c, sb, path, len);
	/* A file (not a directory) known to be the one removed. */
	gone_file = what == CACHE_REMOVED && (st ? !S_ISDIR(st->st_mode) :
					     e && e->attr == A_ATTR && !S_ISDIR(e->st.st_mode));
	if (e && what != CACHE_CHANGED) {
		dir_unref(e->dir);
		e->dir = NULL;
	}
	if (what == CACHE_REMOVED) {
		if (e)
			entry_remove(c, e);
		if (c->cfg.neg_ttl > 0 && (e = entry_get(c, sb, path, len)) != NULL) {
			e->attr = A_NEG;
			e->attr_exp = t + c->cfg.neg_ttl;
		}
	} else if (exact && c->cfg.attr_ttl > 0) {
		put_attr_locked(c, sb, path, len, st, t);
	} else if (e) {
		e->attr = A_NONE;
		entry_drop_if_empty(c, e);
	}
	plen = parent_len(path, len);
	pe = plen ? entry_find(c, sb, path, plen) : NULL;
	/* A directory made where the parent's fresh listing had no such name
	 * (mkdir, which looked the name up first, or a rename from elsewhere):
	 * the parent's link count grows by one (its ".." entry), where it
	 * counts subdirectories (2 and more; a file system whose directories
	 * all have 1 keeps 1; ext4 stops counting near 65,000). */
	new_dir = pe && what == CACHE_REPLACED && S_ISDIR(st->st_mode) && pe->dir && t < pe->dir_exp &&
		  (nbase = base_of(path, len, plen, &blen), blen) && dir_index(pe->dir, nbase, blen) < 0 &&
		  pe->attr == A_ATTR && S_ISDIR(pe->st.st_mode) && pe->st.st_nlink != 0 && pe->st.st_nlink < 60000;
	if (new_dir && pe->st.st_nlink >= 2)
		pe->st.st_nlink++;
	if (pe && ((what == CACHE_REPLACED && !S_ISDIR(st->st_mode)) || gone_file || new_dir) && pe->attr == A_ATTR &&
	    S_ISDIR(pe->st.st_mode)) {
		/* A file came or went: the directory's link count is the same
		 * (a new directory: counted above),
		 * and its time moved to the sandbox's "now" (a deferred delete:
		 * soon). Without this, every save of an editor, which deletes
		 * its swap file, cost a listing at the next lookup through the
		 * directory. Until its attributes expire
		 * (as cached, they are not extended) they say this mount's
		 * "now", never earlier than what was cached: asking the sandbox
		 * would cost a command per lookup of the directory during tar x
		 * or cp -r, each of which must first send the changes queued
		 * below it (the files' times). */
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		if (now.tv_sec < pe->st.st_mtim.tv_sec ||
		    (now.tv_sec == pe->st.st_mtim.tv_sec && now.tv_nsec <= pe->st.st_mtim.tv_nsec)) {
			now = pe->st.st_mtim;
			if (++now.tv_nsec >= 1000000000L) {
				now.tv_nsec = 0;
				now.tv_sec++;
			}
		}
		pe->st.st_mtim = pe->st.st_ctim = now;
	} else if (pe && what != CACHE_CHANGED && pe->attr != A_NONE) {
		/* A name came or went: the directory's time and link count
		 * changed in the sandbox, to values only it knows (its clock):
		 * its attributes are asked again when next needed, its listing
		 * stays (and is kept up to date below). */
		pe->attr = A_NONE;
		if (!pe->dir) {
			entry_drop_if_empty(c, pe);
			pe = NULL;
		}
	}
	if (pe && pe->dir) {
		const char *base = base_of(path, len, plen, &blen);
		struct dirlist *nd = NULL;

		if (t < pe->dir_exp && blen)
			nd = dir_changed(pe->dir, base, blen, what == CACHE_REMOVED ? NULL : st);
		/* an expired listing, or no memory for the copy: drop it */
		dir_unref(pe->dir);
		pe->dir = nd;
		if (!nd)
			entry_drop_if_empty(c, pe);
	}
out:
	pthread_mutex_unlock(&c->lock);
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->entries = c->count;
	pthread_mutex_unlock(&c->lock);
}

size_t cache_invalidate_sandbox_paths(struct cache *c, const char *sandbox, char **paths, size_t *len)
{
	struct strbuf out = STRBUF_INIT;
	struct sbrec *sb;
	size_t n = 0;

	/* The paths are copied out under the lock and handed back, so that the
	 * caller can tell the kernel about them without holding it. */
	pthread_mutex_lock(&c->lock);
	sb = sb_bump(c, sandbox);
	while (sb && sb->entries) {
		sb_add(&out, sb->entries->path, sb->entries->len);
		sb_addc(&out, '\0');
		n++;
		entry_remove(c, sb->entries);
	}
	pthread_mutex_unlock(&c->lock);
	*len = out.len;
	*paths = out.oom ? NULL : sb_detach(&out);
	if (out.oom)
		sb_free(&out);
	return *paths ? n : 0;
}
