/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recover.h - crash recovery: what a dead mount left staged in the cache
 * directory (journal.h) is uploaded, or kept in unsaved/ with a note, by a
 * thread of the next mount.
 */
#ifndef DAYTONAFS_RECOVER_H
#define DAYTONAFS_RECOVER_H

struct dfs;
struct recovery;

/* Lists the records a dead mount left, before this mount makes stages of
 * its own (the caller holds the cache directory's lock: stage.h). NULL when
 * there is nothing to recover (or out of memory: logged). */
struct recovery *recover_scan(struct dfs *fs);
/* Starts the thread that works through the list (after the daemon forked:
 * from the FUSE init). The mount does not wait for it: a sandbox that does
 * not answer delays only its own records. */
void recover_start(struct recovery *r);
/* Stops the thread between two records and frees r. */
void recover_stop(struct recovery *r);

#endif
