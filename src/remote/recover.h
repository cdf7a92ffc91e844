/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recover.h - crash recovery: what a dead mount left staged in the cache
 * directory (journal.h) is uploaded, or kept in unsaved/ with a note, by a
 * thread of the next mount.
 */
#ifndef DAYTONAFS_RECOVER_H
#define DAYTONAFS_RECOVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "provider.h"

struct cache;
struct stage_area;
struct recovery;

/* What recovery needs of the mount: the provider, the cache directory, and
 * the mount's own hold on the files it uploads. */
struct recover_ctx {
	struct sandbox_provider *sp;
	struct stage_area *stage;   /* its staging/ holds the records (journal.h) */
	struct cache *cache;        /* forgets what an upload changed */
	void *mount;                /* the callbacks' first argument */
	/* Uploads size bytes of fd to path, as a close does (safely for a name
	 * with white space at its ends). 0, or -errno with err set. */
	int (*upload_fd)(void *mount, const struct sp_box *box, const char *path, int fd, uint64_t size,
			 struct sp_error *err);
	/* chmod of path (a new file gets the mode it was made with). */
	int (*chmod_path)(void *mount, const struct sp_box *box, const char *path, mode_t mode,
			  struct sp_error *err);
	/* Holds the sandbox file from recovery's look at it to the end of its
	 * upload: false when the mount has it open (recovery must not upload
	 * under it); else the mount's opens of it, and its other changes to
	 * the sandbox, wait until claim_done, and land after recovery's copy.
	 * The strings last until claim_done. */
	bool (*claim)(void *mount, const char *sandbox_id, const char *path);
	void (*claim_done)(void *mount);
	/* Sends the mount's queued changes to the sandbox (under a claim, before
	 * the look: what the mount changed before the claim is seen). */
	void (*settle)(void *mount, const char *sandbox_id);
};

/* Lists the records a dead mount left, before this mount makes stages of
 * its own (the caller holds the cache directory's lock: stage.h). NULL when
 * there is nothing to recover (or out of memory: logged). ctx is copied. */
struct recovery *recover_scan(const struct recover_ctx *ctx);
/* Starts the thread that works through the list (after the daemon forked:
 * from the FUSE init). The mount does not wait for it: a sandbox that does
 * not answer delays only its own records. */
void recover_start(struct recovery *r);
/* A sandbox was seen started (by this mount's start, a listing, a look at
 * its state): the records still waiting are tried again now, not up to
 * RETRY_S later. Cheap: a flag and a signal; a wake that comes during a
 * pass makes another pass follow it at once. */
void recover_wake(struct recovery *r);
/* Stops the thread between two records and frees r. */
void recover_stop(struct recovery *r);

#endif
