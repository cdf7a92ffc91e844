/* SPDX-License-Identifier: Apache-2.0 */
/*
 * journal.h - the crash journal of staged writes.
 *
 * Every stage that holds data not yet in the sandbox has a record beside it
 * in CACHE_DIR/staging/: stage-XXXXXX.rec says which sandbox and path the
 * stage belongs to, whether the file was still open for writing or had been
 * flushed (close, fsync), and what the sandbox's file was when this mount
 * read it (size and mtime, or "new file"). A mount that dies (kill -9, OOM,
 * reboot) leaves stages and records behind; the next mount on the same
 * cache directory reads them (journal_scan) and decides, per record, to
 * upload the stage, keep it in unsaved/ with a note, or drop it
 * (journal_check_local, journal_check_remote). SEMANTICS.md, "Crashes".
 *
 * Format, parsing and the decisions are pure and unit-tested; the rest is
 * small file I/O in the staging directory.
 */
#ifndef DAYTONAFS_JOURNAL_H
#define DAYTONAFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "provider.h"

struct strbuf;

enum journal_state {
	JOURNAL_OPEN,      /* being written: no close or fsync promised anything yet */
	JOURNAL_FLUSHED,   /* flushed (close, fsync) with size bytes; upload pending or failed */
};

enum journal_base_kind {
	JOURNAL_BASE_UNKNOWN,   /* the sandbox's file was not known when read: cannot be checked */
	JOURNAL_BASE_NEW,       /* created here: the sandbox had no such file */
	JOURNAL_BASE_FILE,      /* the sandbox's file had this size and mtime when read */
};

struct journal_base {
	enum journal_base_kind kind;
	uint64_t size;
	struct timespec mtime;
};

struct journal_rec {
	enum journal_state state;
	char sandbox_id[SP_ID_SIZE];
	char sandbox_name[256];
	char path[4096];           /* in the sandbox */
	struct journal_base base;
	unsigned mode;             /* permission bits a new file is to get */
	uint64_t size;             /* JOURNAL_FLUSHED: the stage's size at the flush */
	long long time;            /* when the record was written (Unix time) */
};

/* The record's bytes: text lines, strings length-prefixed (paths may hold
 * newlines), ending in a CRC-32 of everything before it. Returns 0 or -ENOMEM. */
int journal_format(const struct journal_rec *r, struct strbuf *out);
/* Parses what journal_format wrote: 0, or -EBADMSG for a torn, damaged or
 * unknown record (nothing of such a record can be trusted). */
int journal_parse(const char *buf, size_t len, struct journal_rec *r);
uint32_t journal_crc32(const void *data, size_t len);

/* ---- recovery decisions ---------------------------------------------------- */

enum journal_action {
	JOURNAL_ASK,        /* journal_check_local: ask the sandbox, then journal_check_remote */
	JOURNAL_UPLOAD,     /* upload the stage to the record's path */
	JOURNAL_UNSAVED,    /* keep the stage in unsaved/ with a note saying why */
	JOURNAL_DROP,       /* nothing to recover: remove the record */
	JOURNAL_KEEP,       /* cannot decide now (sandbox not running, unreachable): next mount */
};

/* What recovery found of the sandbox file. */
enum journal_remote_kind {
	JOURNAL_REMOTE_ABSENT,        /* no such file */
	JOURNAL_REMOTE_FILE,          /* size and mtime below */
	JOURNAL_REMOTE_NOT_FILE,      /* a directory or something else now */
	JOURNAL_REMOTE_NO_PARENT,     /* absent, and so is its directory: an upload would remake it */
	JOURNAL_REMOTE_SANDBOX_GONE,  /* the sandbox no longer exists */
	JOURNAL_REMOTE_UNAVAILABLE,   /* not running, unreachable, or an error: try later */
};

struct journal_remote {
	enum journal_remote_kind kind;
	uint64_t size;
	struct timespec mtime;
};

/* From the record (NULL when it could not be parsed) and the stage file
 * (present or not, and its size). why (cap bytes) says the reason for
 * JOURNAL_UNSAVED and JOURNAL_DROP. Pure. */
enum journal_action journal_check_local(const struct journal_rec *r, bool stage_present, uint64_t stage_size,
					char *why, size_t cap);
/* For a record journal_check_local answered JOURNAL_ASK: upload only when
 * the sandbox's file is still the one this mount read. Pure. */
enum journal_action journal_check_remote(const struct journal_rec *r, const struct journal_remote *remote,
					 char *why, size_t cap);

/* ---- files ------------------------------------------------------------------ */

/* Creates the record of stage NAME in staging_dir (written to a temporary
 * file and renamed into place: it appears whole) and returns its
 * descriptor, which the caller keeps for journal_update, or a negative
 * errno. durable: the record and the directory are fsync'd. */
int journal_create(const char *staging_dir, const char *stage_name, const struct journal_rec *r, bool durable);
/* Rewrites the record open on fd in place (journal.c says why that is
 * safe); durable as above. Returns 0 or a negative errno. */
int journal_update(int fd, const char *staging_dir, const struct journal_rec *r, bool durable);
/* Removes the record of stage NAME (no error when there is none). */
int journal_remove(const char *staging_dir, const char *stage_name);
/* Reads and parses the record of stage NAME: 0, -ENOENT, -EBADMSG, ... */
int journal_read(const char *staging_dir, const char *stage_name, struct journal_rec *r);

/*
 * Lists what a dead mount left in staging_dir, which the caller must own
 * alone (the cache directory's lock): the names of the stages that have a
 * record, malloc'd into *names. Stage files without a record hold nothing
 * anyone was promised (the record is written before a write is
 * acknowledged, and removed only once the data is uploaded or kept in
 * unsaved/) and are removed, as are half-written records and records
 * whose stage is gone (uploaded or kept just before the record's
 * removal). Returns 0 or a negative errno.
 */
int journal_scan(const char *staging_dir, char ***names, size_t *n);
void journal_names_free(char **names, size_t n);

/* The note kept beside a stage moved to unsaved/: where it came from, when,
 * and why it was not uploaded. r may be NULL (a damaged record). Pure. */
void journal_note(struct strbuf *out, const struct journal_rec *r, const char *stage_name, const char *why,
		  long long now);

#endif
