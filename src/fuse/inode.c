/* SPDX-License-Identifier: Apache-2.0 */
/*
 * inode.c - stable inode numbers (inode.h): a hash of the path, and a
 * bounded table of the paths whose number a rename gave them.
 */
#include "inode.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Numbers a rename hands out have bit 62 set; hashes never do, so the two
 * kinds never meet. Bit 63 stays clear: programs that print st_ino as a
 * signed number then print it right. */
#define INO_FRESH_BIT (UINT64_C(1) << 62)
#define INO_BUCKETS 4096

struct ino_ent {
	struct ino_ent *next;        /* in its bucket */
	struct ino_ent *newer, *older; /* age order, for eviction */
	uint64_t key_hash;
	uint64_t ino;
	size_t ns_len;
	char key[];                  /* ns, '\0', path, '\0' */
};

struct ino_table {
	pthread_mutex_t lock;
	struct ino_ent *buckets[INO_BUCKETS];
	struct ino_ent *newest, *oldest;
	size_t n, max;
	uint64_t next_fresh;
};

/* FNV-1a over ns, a NUL, then path, kept to 62 bits: two paths of one mount
 * share a number with a chance of about n^2 / 2^63. */
static uint64_t key_hash(const char *ns, const char *path)
{
	uint64_t h = UINT64_C(14695981039346656037);
	const char *parts[2] = { ns, path };

	for (int i = 0; i < 2; i++) {
		for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
			h ^= *p;
			h *= UINT64_C(1099511628211);
		}
		h *= UINT64_C(1099511628211);   /* the NUL after the part (xor with 0) */
	}
	return h;
}

static uint64_t hash_ino(uint64_t h)
{
	h &= INO_FRESH_BIT - 1;
	return h < 2 ? h + 2 : h;
}

struct ino_table *ino_table_new(size_t max_entries)
{
	struct ino_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->max = max_entries ? max_entries : 1;
	t->next_fresh = INO_FRESH_BIT | 2;
	return t;
}

void ino_table_free(struct ino_table *t)
{
	if (!t)
		return;
	while (t->newest) {
		struct ino_ent *e = t->newest;

		t->newest = e->older;
		free(e);
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Caller holds t->lock. */
static struct ino_ent **find_locked(struct ino_table *t, uint64_t h, const char *ns, const char *path)
{
	size_t ns_len = strlen(ns);

	for (struct ino_ent **ep = &t->buckets[h % INO_BUCKETS]; *ep; ep = &(*ep)->next) {
		struct ino_ent *e = *ep;

		if (e->key_hash == h && e->ns_len == ns_len && !strcmp(e->key, ns) &&
		    !strcmp(e->key + ns_len + 1, path))
			return ep;
	}
	return NULL;
}

/* Caller holds t->lock: takes e out of its bucket (at *ep) and the age list. */
static void unlink_locked(struct ino_table *t, struct ino_ent **ep)
{
	struct ino_ent *e = *ep;

	*ep = e->next;
	if (e->newer)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	t->n--;
}

/* Caller holds t->lock: path of ns has number ino from now on. */
static void set_locked(struct ino_table *t, const char *ns, const char *path, uint64_t ino)
{
	uint64_t h = key_hash(ns, path);
	struct ino_ent **ep = find_locked(t, h, ns, path), *e;
	size_t ns_len = strlen(ns), path_len = strlen(path);

	if (ep) {
		e = *ep;
		unlink_locked(t, ep);
		free(e);
	}
	if (ino == hash_ino(h))
		return;   /* the hash says it already */
	e = malloc(sizeof(*e) + ns_len + path_len + 2);
	if (!e)
		return;   /* the hash's number: the lesser evil */
	e->key_hash = h;
	e->ino = ino;
	e->ns_len = ns_len;
	memcpy(e->key, ns, ns_len + 1);
	memcpy(e->key + ns_len + 1, path, path_len + 1);
	e->next = t->buckets[h % INO_BUCKETS];
	t->buckets[h % INO_BUCKETS] = e;
	e->newer = NULL;
	e->older = t->newest;
	if (t->newest)
		t->newest->newer = e;
	else
		t->oldest = e;
	t->newest = e;
	t->n++;
	while (t->n > t->max) {
		struct ino_ent *old = t->oldest;

		ep = find_locked(t, old->key_hash, old->key, old->key + old->ns_len + 1);
		unlink_locked(t, ep);
		free(old);
	}
}

/* Caller holds t->lock. */
static uint64_t of_locked(struct ino_table *t, const char *ns, const char *path)
{
	uint64_t h = key_hash(ns, path);
	struct ino_ent **ep = find_locked(t, h, ns, path);

	return ep ? (*ep)->ino : hash_ino(h);
}

uint64_t ino_of(struct ino_table *t, const char *ns, const char *path)
{
	uint64_t ino;

	pthread_mutex_lock(&t->lock);
	ino = of_locked(t, ns, path);
	pthread_mutex_unlock(&t->lock);
	return ino;
}

void ino_rename(struct ino_table *t, const char *ns, const char *from, const char *to)
{
	pthread_mutex_lock(&t->lock);
	set_locked(t, ns, to, of_locked(t, ns, from));
	set_locked(t, ns, from, t->next_fresh++);
	pthread_mutex_unlock(&t->lock);
}

size_t ino_table_size(struct ino_table *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->n;
	pthread_mutex_unlock(&t->lock);
	return n;
}
