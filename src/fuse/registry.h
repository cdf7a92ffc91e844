/* SPDX-License-Identifier: Apache-2.0 */
/*
 * registry.h - the index of the sandboxes the mount knows (by id and by
 * name, hash tables), and the rule that says which directory of the mount
 * root is which sandbox.
 *
 * The rule (doc/SEMANTICS.md, "Sandbox names"): a sandbox's directory is its
 * name when the name can be shown as it is and names no other entry: 1 to 255
 * bytes, no '/', no control byte, not starting with '.', not "ctl" or
 * "error", no other sandbox with that name, and no other sandbox with that
 * id. Else the directory is its id. MOUNT/X is the sandbox whose id is X,
 * else the one whose directory is the name X, else none: a name never
 * shadows an id, a control file, or another sandbox.
 *
 * The caller locks (fs->lock). Pure: no I/O; unit-tested.
 */
#ifndef DAYTONAFS_REGISTRY_H
#define DAYTONAFS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

struct sandbox;

struct registry {
	struct sandbox **by_id;     /* chains through sandbox.id_next */
	struct sandbox **by_name;   /* chains through sandbox.name_next */
	size_t n_buckets;           /* a power of two, or 0 before the first insert */
	size_t n;
};

/* Whether a name can be a directory of the mount root as it is (exact: the
 * name was not cut to fit a buffer). Says nothing of other sandboxes. */
bool registry_name_showable(const char *name, bool exact);

/* Indexes sb (its id and name set, not indexed yet). -ENOMEM. */
int registry_insert(struct registry *r, struct sandbox *sb);
/* Changes sb's name (and name_exact), keeping the name index right. */
void registry_set_name(struct registry *r, struct sandbox *sb, const char *name, bool exact);
/* The entry with this id, gone or not; NULL when none. */
struct sandbox *registry_by_id(const struct registry *r, const char *id);
/* The sandbox MOUNT/name_or_id names (never a gone one), or NULL. */
struct sandbox *registry_resolve(const struct registry *r, const char *name_or_id);
/* The directory name of sb in the mount root: its name or its id; NULL
 * when neither can be one (a Vercel sandbox called ctl: not shown). */
const char *registry_dir_name(const struct registry *r, const struct sandbox *sb);
/* Frees the tables, not the entries. */
void registry_free(struct registry *r);

#endif
