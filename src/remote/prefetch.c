/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prefetch.c - contents of small files fetched ahead of their reads (see
 * prefetch.h). A list in insertion order: the head is the oldest, evicted
 * first. It holds at most a few hundred entries, so a scan is cheap next to
 * the request each hit saves.
 */
#include "prefetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct pf_entry {
	struct pf_entry *prev, *next;
	char *sandbox;
	char *path;
	bool pending;
	char *data;
	size_t len;
	off_t listed_size;
	struct timespec listed_mtime;
	uint64_t gen;
	double expires;
};

struct prefetch {
	pthread_mutex_t lock;
	struct pf_entry *head, *tail;
	size_t max_bytes, max_entries;
	size_t bytes, entries;
	double (*now)(void);
	struct prefetch_stats st;
};

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct prefetch *prefetch_new(size_t max_bytes, size_t max_entries)
{
	struct prefetch *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return NULL;
	pthread_mutex_init(&pf->lock, NULL);
	pf->max_bytes = max_bytes;
	pf->max_entries = max_entries;
	pf->now = mono_now;
	return pf;
}

void prefetch_set_clock(struct prefetch *pf, double (*now)(void))
{
	pf->now = now ? now : mono_now;
}

/* Caller holds the lock. */
static void unlink_entry(struct prefetch *pf, struct pf_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		pf->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		pf->tail = e->prev;
	pf->bytes -= e->len;
	pf->entries--;
	free(e->sandbox);
	free(e->path);
	free(e->data);
	free(e);
}

static struct pf_entry *find(struct prefetch *pf, const char *sandbox, const char *path)
{
	for (struct pf_entry *e = pf->head; e; e = e->next)
		if (!strcmp(e->path, path) && !strcmp(e->sandbox, sandbox))
			return e;
	return NULL;
}

/* Expired entries go, then the oldest filled ones until the bounds hold. */
static void make_room(struct prefetch *pf, size_t add_bytes, size_t add_entries)
{
	double now = pf->now();
	struct pf_entry *e, *next;

	for (e = pf->head; e; e = next) {
		next = e->next;
		if (!e->pending && e->expires <= now)
			unlink_entry(pf, e);
	}
	for (e = pf->head; e && (pf->bytes + add_bytes > pf->max_bytes ||
				 pf->entries + add_entries > pf->max_entries); e = next) {
		next = e->next;
		if (!e->pending) {
			unlink_entry(pf, e);
			pf->st.evicted++;
		}
	}
}

void prefetch_free(struct prefetch *pf)
{
	if (!pf)
		return;
	while (pf->head)
		unlink_entry(pf, pf->head);
	pthread_mutex_destroy(&pf->lock);
	free(pf);
}

bool prefetch_reserve(struct prefetch *pf, const char *sandbox, const char *path)
{
	struct pf_entry *e;
	bool ok = false;

	pthread_mutex_lock(&pf->lock);
	/* Neither an expired entry nor a file this mount uploaded keeps the
	 * path out of a fetch: the kept upload expires at attr_timeout, often
	 * before the reader gets to it, and then the file would be read alone
	 * (grep -r after tar x at 50 ms: 32 downloads instead of 2 bulk). */
	make_room(pf, 0, 0);
	e = find(pf, sandbox, path);
	if (e && !e->pending && e->gen == PREFETCH_OWN)
		unlink_entry(pf, e);
	else if (e)
		goto out;
	make_room(pf, 0, 1);
	if (pf->entries >= pf->max_entries)
		goto out;   /* all pending */
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->sandbox = strdup(sandbox);
	e->path = strdup(path);
	if (!e->sandbox || !e->path) {
		free(e->sandbox);
		free(e->path);
		free(e);
		goto out;
	}
	e->pending = true;
	e->prev = pf->tail;
	if (pf->tail)
		pf->tail->next = e;
	else
		pf->head = e;
	pf->tail = e;
	pf->entries++;
	ok = true;
out:
	pthread_mutex_unlock(&pf->lock);
	return ok;
}

void prefetch_fill(struct prefetch *pf, const char *sandbox, const char *path, char *data, size_t len,
		   off_t listed_size, const struct timespec *listed_mtime, uint64_t gen, double expires)
{
	struct pf_entry *e;

	pthread_mutex_lock(&pf->lock);
	e = find(pf, sandbox, path);
	if (!e || !e->pending || len > pf->max_bytes) {
		if (e && e->pending)
			unlink_entry(pf, e);
		free(data);
		goto out;
	}
	e->pending = false;   /* so that make_room may take it too, if it must */
	e->expires = expires;
	make_room(pf, len, 0);
	e = find(pf, sandbox, path);
	if (!e) {
		free(data);
		goto out;
	}
	/* Filled entries keep their place: the order they were asked in,
	 * which is the order a reader in turn reads them. */
	e->data = data;
	e->len = len;
	e->listed_size = listed_size;
	e->listed_mtime = *listed_mtime;
	e->gen = gen;
	e->expires = expires;
	pf->bytes += len;
	pf->st.fills++;
out:
	pthread_mutex_unlock(&pf->lock);
}

void prefetch_cancel(struct prefetch *pf, const char *sandbox, const char *path)
{
	struct pf_entry *e;

	pthread_mutex_lock(&pf->lock);
	e = find(pf, sandbox, path);
	if (e && e->pending)
		unlink_entry(pf, e);
	pthread_mutex_unlock(&pf->lock);
}

bool prefetch_take(struct prefetch *pf, const char *sandbox, const char *path, off_t size,
		   const struct timespec *mtime, uint64_t gen, char **data, size_t *len)
{
	struct pf_entry *e;
	bool ok = false;

	*data = NULL;
	*len = 0;
	pthread_mutex_lock(&pf->lock);
	e = find(pf, sandbox, path);
	if (!e || e->pending)
		goto out;
	if ((e->gen == gen || e->gen == PREFETCH_OWN) && e->expires > pf->now() && e->listed_size == size && (off_t)e->len == size &&
	    e->listed_mtime.tv_sec == mtime->tv_sec && e->listed_mtime.tv_nsec == mtime->tv_nsec) {
		*data = e->data;
		*len = e->len;
		e->data = NULL;
		pf->bytes -= e->len;
		e->len = 0;
		pf->st.hits++;
		ok = true;
	} else {
		pf->st.stale++;
	}
	unlink_entry(pf, e);
out:
	pthread_mutex_unlock(&pf->lock);
	return ok;
}

void prefetch_put_own(struct prefetch *pf, const char *sandbox, const char *path, char *data, size_t len,
		      const struct timespec *mtime, double expires)
{
	struct pf_entry *e;

	pthread_mutex_lock(&pf->lock);
	e = find(pf, sandbox, path);
	if (e && e->pending) {
		/* A fetch chose this path before the upload: its content may be
		 * the old one, and its fill checks the generation, which moved. */
		pthread_mutex_unlock(&pf->lock);
		free(data);
		return;
	}
	if (e)
		unlink_entry(pf, e);
	make_room(pf, len, 1);
	e = len <= pf->max_bytes && pf->entries < pf->max_entries ? calloc(1, sizeof(*e)) : NULL;
	if (e) {
		e->sandbox = strdup(sandbox);
		e->path = strdup(path);
	}
	if (!e || !e->sandbox || !e->path) {
		if (e) {
			free(e->sandbox);
			free(e->path);
			free(e);
		}
		pthread_mutex_unlock(&pf->lock);
		free(data);
		return;
	}
	e->data = data;
	e->len = len;
	e->listed_size = (off_t)len;
	e->listed_mtime = *mtime;
	e->gen = PREFETCH_OWN;
	e->expires = expires;
	e->prev = pf->tail;
	if (pf->tail)
		pf->tail->next = e;
	else
		pf->head = e;
	pf->tail = e;
	pf->entries++;
	pf->bytes += len;
	pthread_mutex_unlock(&pf->lock);
}

void prefetch_drop_path(struct prefetch *pf, const char *sandbox, const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	pthread_mutex_lock(&pf->lock);
	for (struct pf_entry *e = pf->head, *next; e; e = next) {
		next = e->next;
		if (!e->pending && !strcmp(e->sandbox, sandbox) && !strncmp(e->path, path, n) &&
		    (e->path[n] == '\0' || e->path[n] == '/' || (n == 1 && path[0] == '/')))
			unlink_entry(pf, e);
	}
	pthread_mutex_unlock(&pf->lock);
}

bool prefetch_has(struct prefetch *pf, const char *sandbox, const char *path)
{
	bool has;

	pthread_mutex_lock(&pf->lock);
	has = find(pf, sandbox, path) != NULL;
	pthread_mutex_unlock(&pf->lock);
	return has;
}

void prefetch_drop_sandbox(struct prefetch *pf, const char *sandbox)
{
	struct pf_entry *e, *next;

	pthread_mutex_lock(&pf->lock);
	for (e = pf->head; e; e = next) {
		next = e->next;
		if (!e->pending && (!sandbox || !strcmp(e->sandbox, sandbox)))
			unlink_entry(pf, e);
	}
	pthread_mutex_unlock(&pf->lock);
}

void prefetch_get_stats(struct prefetch *pf, struct prefetch_stats *out)
{
	pthread_mutex_lock(&pf->lock);
	*out = pf->st;
	out->entries = pf->entries;
	out->bytes = pf->bytes;
	pthread_mutex_unlock(&pf->lock);
}
