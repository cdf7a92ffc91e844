/* SPDX-License-Identifier: Apache-2.0 */
/*
 * listing.h - the lstat view of a sandbox's files by command, for any
 * provider: a directory listed with ONE find -printf (type, full mode, size,
 * times in ns, owner, link count, link target of every entry), and changes
 * the file API cannot make (times, owner, links, special mode bits, ...)
 * made by a command that prints the path's new attributes back in the same
 * format, so that the change costs one request and the next stat none.
 * The scripts, their parsers, and running them through provider.h's
 * exec_within.
 *
 * It knows commands and the cache, not the mount: which sandbox a command
 * runs in, what a failure means for the mount's view of the sandbox, how the
 * sandbox's directories are listed and the link targets the mount keeps are
 * the caller's (struct listing_ops). fs_runners.c fills the context.
 */
#ifndef DAYTONAFS_LISTING_H
#define DAYTONAFS_LISTING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "cache.h"
#include "provider.h"
#include "strbuf.h"

/* One record per entry, '/' between fields (no name holds a '/'); the link
 * target is last, and its length is the link's size. See files_parse_find. */
#define FIND_FMT "%y/%m/%s/%T@/%U/%G/%n/%A@/%C@/%f/%l\\n"

/* Every script run in the sandbox starts with this (messages and sort
 * order in C); the unit tests run the scripts after it too. */
#define FILES_SH_PREFIX "LC_ALL=C; export LC_ALL; "

/* How a sandbox's directories are listed: with find (its lstat view), or
 * with the provider's file listing where find does not work. */
enum list_mode { LIST_UNKNOWN = 0, LIST_FIND, LIST_API };

/* The lstat view of a directory's entries, as one command prints them. */
struct find_entry {
	char *name;               /* malloc'd */
	char *link;               /* malloc'd target of a symbolic link, else NULL */
	struct stat st;
};

/* ---- pure: the scripts and their parsers ---- */

int files_parse_find(const char *buf, size_t len, struct find_entry **out, size_t *n);
void files_find_free(struct find_entry *v, size_t n);
/* od -An -v -tx1 output back to bytes (malloc'd, NUL-terminated after len bytes). */
int files_unhex(const char *text, char **out, size_t *len);
/* Go's JSON encoder turns invalid UTF-8 into U+FFFD: such text is not the sandbox's bytes. */
bool has_replacement_char(const char *s);
/* qsort order of find entries: by name. */
int entry_cmp(const void *a, const void *b);
/* A provider's file info as lstat would give it (no link count: 1). */
void stat_from_info(const struct sp_fileinfo *fi, struct stat *st);
/* The listing of dir (the directory itself first) in the find format, or with
 * hex as od's hex of it; exit 127 without find, 97 when -printf fails. */
void files_list_script(struct strbuf *cmd, const char *dir, bool hex);
/* Appends: print path's attributes in the find format, and succeed anyway. */
void files_add_stat_print(struct strbuf *cmd, const char *path);
/* The attributes a command printed with files_add_stat_print (link: its
 * target, malloc'd, for a link; may be NULL), or false. */
bool parse_printed_stat(const char *out, struct stat *st, char **link);

/* ---- commands in one sandbox ---- */

struct listing_ops {
	/* Fills box: the sandbox the commands run in (asked at each command:
	 * the mount may learn its address late). */
	void (*box)(void *mount, void *owner, struct sp_box *box);
	/* A command that could not run (rc, err, about "what path"): the
	 * -errno to return; the mount may re-read the sandbox's state and
	 * note the error for the user. */
	int (*failed)(void *mount, void *owner, int rc, const struct sp_error *err, const char *what,
		      const char *path);
	/* How the sandbox's directories are listed, as the mount remembers it. */
	enum list_mode (*mode_get)(void *mount, const void *owner);
	void (*mode_set)(void *mount, const void *owner, enum list_mode mode);
	/* The link targets the mount keeps (readlink costs nothing): path is a
	 * link to target, or no longer a link the mount knows. */
	void (*link_put)(void *mount, const void *owner, const char *path, const char *target);
	void (*link_drop)(void *mount, const void *owner, const char *path, bool subtree);
};

struct listing_ctx {
	struct sandbox_provider *sp;
	long timeout_s;           /* bounds each command, in the sandbox too */
	struct cache *cache;
	const char *id;           /* the sandbox's key in the cache */
	const char *name;         /* the sandbox's name, for the log */
	const struct listing_ops *ops;
	void *mount;              /* the ops' first two arguments */
	void *owner;
};

/* Runs a shell script in the sandbox (cwd /, LC_ALL=C): its exit code and
 * merged output (malloc'd). Returns 0 when it ran, else a negative errno
 * with err filled; reports nothing. */
int listing_sh_once(const struct listing_ctx *c, const char *script, int *code, char **out,
		    struct sp_error *err);
/* listing_sh_once, with a failure reported (ops->failed). */
int listing_sh(const struct listing_ctx *c, const char *script, int *code, char **out);
/* Runs a short command for what the file API cannot do. out (may be NULL)
 * receives its output on success; a failure is the errno its message says. */
int listing_run(const struct listing_ctx *c, const char *script, char **out);
/* What a command that changed path (and printed its attributes) leaves in
 * the cache: the printed attributes, else nothing about path. True when
 * it printed them; then *printed (may be NULL) has them. */
bool listing_note_result(const struct listing_ctx *c, const char *path, const char *out,
			 enum cache_change what, struct stat *printed);
/* Runs cmd, a change to path (and frees it), followed by the print of
 * path's new attributes where find works, which go to the cache as what.
 * A failure leaves the cache alone but for path's tree. */
int listing_change(const struct listing_ctx *c, struct strbuf *cmd, const char *path,
		   enum cache_change what);

/* The listing of a directory's child that is itself a directory, taken in
 * the same command as its parent's (listing_find); a directory of more than
 * CHILD_LINES lines is cut, and then not taken (the lines bound what a
 * lookup may cost). */
#define CHILD_LINES 2001

struct child_listing {
	bool have;                /* complete, and a directory */
	struct find_entry *v;
	size_t n;
};

/* Lists dir with find, its entries sorted by name: 0, a negative errno, or
 * -ENOSYS when find cannot do it (the caller lists with the file API). With
 * child (may be NULL), cl gets that entry's listing when it is a directory. */
int listing_find(const struct listing_ctx *c, const char *dir, const char *child, struct find_entry **out,
		 size_t *n, struct child_listing *cl);

#endif
