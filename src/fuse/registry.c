/* SPDX-License-Identifier: Apache-2.0 */
/*
 * registry.c - the sandbox index and the naming rule (registry.h). Lookups
 * are O(1) on average, so that a refresh of tens of thousands of sandboxes
 * costs no more than reading them.
 */
#include "registry.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "strbuf.h"

/* FNV-1a */
static size_t hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

static size_t bucket(const struct registry *r, const char *key)
{
	return hash_str(key) & (r->n_buckets - 1);
}

bool registry_name_showable(const char *name, bool exact)
{
	size_t len = strlen(name);

	if (!exact || len == 0 || len > 255 || name[0] == '.')
		return false;
	if (!strcmp(name, "ctl") || !strcmp(name, "error"))
		return false;
	for (const char *p = name; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static void link_id(struct registry *r, struct sandbox *sb)
{
	size_t b = bucket(r, sb->id);

	sb->id_next = r->by_id[b];
	r->by_id[b] = sb;
}

static void link_name(struct registry *r, struct sandbox *sb)
{
	size_t b = bucket(r, sb->name);

	sb->name_next = r->by_name[b];
	r->by_name[b] = sb;
}

static void unlink_name(struct registry *r, struct sandbox *sb)
{
	struct sandbox **pp = &r->by_name[bucket(r, sb->name)];

	for (; *pp; pp = &(*pp)->name_next) {
		if (*pp == sb) {
			*pp = sb->name_next;
			sb->name_next = NULL;
			return;
		}
	}
}

/* Doubles the tables (or makes the first ones) and re-links every entry. */
static int grow(struct registry *r)
{
	size_t nb = r->n_buckets ? r->n_buckets * 2 : 64;
	struct sandbox **by_id = calloc(nb, sizeof(*by_id));
	struct sandbox **by_name = calloc(nb, sizeof(*by_name));
	struct sandbox **old_id = r->by_id, **old_name = r->by_name;
	size_t old_nb = r->n_buckets;

	if (!by_id || !by_name) {
		free(by_id);
		free(by_name);
		return -ENOMEM;
	}
	r->by_id = by_id;
	r->by_name = by_name;
	r->n_buckets = nb;
	/* Every entry is on exactly one id chain: walk those, re-link both. */
	for (size_t i = 0; i < old_nb; i++) {
		struct sandbox *sb = old_id[i], *next;

		for (; sb; sb = next) {
			next = sb->id_next;
			link_id(r, sb);
			link_name(r, sb);
		}
	}
	free(old_id);
	free(old_name);
	return 0;
}

int registry_insert(struct registry *r, struct sandbox *sb)
{
	if (r->n >= r->n_buckets && grow(r) < 0)
		return -ENOMEM;
	link_id(r, sb);
	link_name(r, sb);
	sb->indexed = true;
	r->n++;
	return 0;
}

void registry_set_name(struct registry *r, struct sandbox *sb, const char *name, bool exact)
{
	sb->name_exact = exact;
	if (!strcmp(sb->name, name))
		return;
	if (sb->indexed)
		unlink_name(r, sb);
	str_copy(sb->name, sizeof(sb->name), name);
	if (sb->indexed)
		link_name(r, sb);
}

struct sandbox *registry_by_id(const struct registry *r, const char *id)
{
	if (!r->n_buckets)
		return NULL;
	for (struct sandbox *sb = r->by_id[bucket(r, id)]; sb; sb = sb->id_next)
		if (!strcmp(sb->id, id))
			return sb;
	return NULL;
}

/* How many live entries are called name, and one of them. */
static size_t named(const struct registry *r, const char *name, struct sandbox **one)
{
	size_t n = 0;

	*one = NULL;
	if (!r->n_buckets)
		return 0;
	for (struct sandbox *sb = r->by_name[bucket(r, name)]; sb; sb = sb->name_next) {
		if (!sb->gone && !strcmp(sb->name, name)) {
			*one = sb;
			n++;
		}
	}
	return n;
}

/* The id, when it can be a directory of the root: Daytona's ids (UUIDs)
 * always; a Vercel sandbox's id is its name, and a name the root keeps for
 * itself (ctl, error) has no other to show it by. */
static const char *id_or_none(const struct sandbox *sb)
{
	return registry_name_showable(sb->id, true) ? sb->id : NULL;
}

const char *registry_dir_name(const struct registry *r, const struct sandbox *sb)
{
	struct sandbox *one, *by_id;

	if (!registry_name_showable(sb->name, sb->name_exact))
		return id_or_none(sb);
	if (named(r, sb->name, &one) > 1)
		return id_or_none(sb);
	by_id = registry_by_id(r, sb->name);
	if (by_id && by_id != sb && !by_id->gone)
		return id_or_none(sb);
	return sb->name;
}

struct sandbox *registry_resolve(const struct registry *r, const char *name_or_id)
{
	struct sandbox *sb = registry_by_id(r, name_or_id);

	if (sb && !sb->gone && id_or_none(sb))
		return sb;
	if (named(r, name_or_id, &sb) != 1)
		return NULL;
	return registry_dir_name(r, sb) == sb->name ? sb : NULL;
}

void registry_free(struct registry *r)
{
	free(r->by_id);
	free(r->by_name);
	memset(r, 0, sizeof(*r));
}
