/* SPDX-License-Identifier: Apache-2.0 */
/*
 * writeback.h - changes to sandbox files that are sent later, many in one
 * command: deletes, and the owner, mode and times of a file.
 *
 * Why: each of these costs a request of its own (and owner and times cost a
 * command: the file API has no call for them), so tar, cp -a and rm -r paid
 * one round trip per file for something nobody waits on. The mount applies
 * such a change to its own cache at once (the caller answers from it) and
 * queues it here; a batch of queued changes becomes ONE shell script in the
 * sandbox, run after a short delay, when enough are queued, or before
 * anything that could see the path remotely (see wb_conflicts).
 *
 * This module is the queue and the script, with no I/O: the runner
 * (deferred.c) runs the batches, and the mount applies their results. It is safe
 * to call from several threads.
 */
#ifndef DAYTONAFS_WRITEBACK_H
#define DAYTONAFS_WRITEBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "strbuf.h"

enum wb_kind {
	WB_DELETE,   /* rm -f: a file or link (never a directory) */
	WB_ATTRS,    /* chown, chmod, times: whichever of them are set, in that order */
	WB_MOVE,     /* mv -f -T src path: a file uploaded under a temporary name takes
			path's place as a new inode, where a delete of path waited */
};

struct wb_op {
	struct wb_op *next;
	const void *owner;        /* the sandbox: batches never mix owners */
	enum wb_kind kind;
	char *path;               /* owned */
	/* WB_DELETE */
	bool hidden;              /* of a file libfuse hid while open: a rename onto
				     path may still cancel it, so it never runs early */
	double queued;            /* when it was queued (wb_push's now): the unlink's
				     time, which the batch's clock test starts from */
	struct stat st;           /* the attributes the deleted path had; WB_MOVE: what path
				     held before the queued changes of it (st_mode 0: unknown) */
	/* WB_MOVE */
	char *src;                /* owned: the temporary name, in path's directory */
	char *keep;               /* owned: the staging-area name of a copy of what src
				     holds, with its crash-journal record, that the mount
				     removes once the move is done (NULL: none) */
	/* WB_ATTRS */
	bool chown;
	uid_t uid;                /* (uid_t)-1: unchanged */
	gid_t gid;                /* (gid_t)-1: unchanged */
	bool chmod;
	mode_t mode;
	bool set_mtime, set_atime;
	struct timespec mtime, atime;
	bool stat_after;          /* print the path's attributes after (find format) */
	/* housekeeping (a move's record, wb_move_mark): nothing waits for it, so
	 * it goes with another batch of its owner, or alone once due, never
	 * because of a settle (wb_conflicts, wb_eager) */
	bool lazy;
	/* an upload of path went on while this op was in flight: what its
	 * run prints of path is stale (see wb_take_attrs) */
	bool superseded;
	struct timespec ctime_shown; /* with stat_after: the ctime the mount showed for the
				     change (0: none), kept over the one the batch gives (deferred.h) */
	/* the queue's */
	double due;
	/* a batch that failed in a way that may pass, put back (wb_requeue) */
	bool sent;                /* sent at least once: it may have run */
	double retry_start;       /* when its first send failed (0: never) */
	long retry_wait_ms;       /* the next backoff */
};

/* A new op of kind for path (copied); NULL when out of memory. */
struct wb_op *wb_op_new(const void *owner, enum wb_kind kind, const char *path);
void wb_op_free(struct wb_op *op);
/* Frees a list of ops linked by next. */
void wb_list_free(struct wb_op *list);

struct wb_queue;
/* batch_max: how many queued ops of one owner make a batch due at once. */
struct wb_queue *wb_new(size_t batch_max);
/* Frees what is still queued (the caller ran it first, or gives it up). */
void wb_free(struct wb_queue *q);

/* Queues op (the queue then owns it), due delay seconds after now
 * (CLOCK_MONOTONIC seconds, as now_mono()). Wakes a waiting runner when the
 * owner's queue is long enough. False when out of memory: op stays the
 * caller's, who then applies the change at once. */
bool wb_push(struct wb_queue *q, struct wb_op *op, double now, double delay);

/*
 * True when something queued or being run for owner touches path: the
 * same path, a path below it, or a directory above it (a change inside a
 * directory changes the directory's time, so a queued time of the
 * directory must be set after it). path NULL: anything of owner.
 */
bool wb_conflicts(struct wb_queue *q, const void *owner, const char *path);
/* Whether anything of owner (NULL: of anyone) that is not lazy is queued
 * and not running: what a settle sends (a lazy op rides along). */
bool wb_eager(struct wb_queue *q, const void *owner);
/*
 * Narrower, for an open of path that neither creates nor truncates it: as
 * wb_conflicts, but the owner, mode and times queued for path itself do
 * not count (they change nothing an open or a read sees there, and an
 * upload of path takes them back: wb_take_attrs). So an editor that opens
 * the file it saved a moment ago does not wait for that save's touch.
 */
bool wb_conflicts_content(struct wb_queue *q, const void *owner, const char *path);
/*
 * Narrower, for a stat of path alone: true when something queued or being
 * run for owner changes path's own attributes: a change of path or of a
 * directory above it (conservatively), or a delete of an entry directly in
 * it (its time and maybe link count). The times and modes of the files in
 * a directory do not change the directory, so tar x's queued times do not
 * have to be sent before its directory is looked up.
 */
bool wb_conflicts_attr(struct wb_queue *q, const void *owner, const char *path);
/*
 * Calls fn, in queue order, for each WB_ATTRS op of owner queued or being
 * run for an entry directly in dir, with that entry's name: a listing of
 * dir taken while they wait shows the entries without what they set
 * (wb_apply_attrs puts it on). fn runs under the queue's lock and must not
 * call into the queue.
 */
void wb_each_child_attrs(struct wb_queue *q, const void *owner, const char *dir,
			 void (*fn)(void *ctx, const char *name, const struct wb_op *op), void *ctx);
/* What op (WB_ATTRS) sets, applied to st. */
void wb_apply_attrs(const struct wb_op *op, struct stat *st);

/*
 * Takes a batch to run: up to batch_max ops of one owner, oldest first
 * (owner NULL: the first owner with something to take and no batch in
 * flight; an owner with a batch in flight: NULL), and marks them in
 * flight, so that wb_conflicts still sees them until wb_done. With
 * due_only (the runner thread), nothing is taken unless one of the ops is
 * due or batch_max are queued, and a hidden delete whose delay has not
 * passed stops the batch there (to keep the order of what follows it).
 * Without (settling before something that must see the sandbox as this
 * mount does), everything of owner is taken. NULL: nothing to take.
 */
struct wb_op *wb_take(struct wb_queue *q, const void *owner, bool due_only, double now);
/* True when an op queued after op (in its batch, or since) changes what
 * op's run printed of its path: one at that path or below it (a delete
 * in a directory changes the directory's time). A change of a directory
 * above does not change the path. op must be in flight. */
bool wb_superseded(struct wb_queue *q, const struct wb_op *op);
/* Calls fn(arg) unless op is superseded (wb_superseded, or marked by an
 * upload that went on beside it), under the queue's lock, so that an
 * upload marking it cannot slip between the check and what fn stores.
 * fn must not call into the queue. */
void wb_if_current(struct wb_queue *q, const struct wb_op *op, void (*fn)(void *arg), void *arg);
/* The batch has run: its ops leave the in-flight set. Frees them. */
void wb_done(struct wb_queue *q, struct wb_op *batch);
/* The batch could not be sent yet: its ops leave the in-flight set but stay
 * queued where they were (before anything of their owner queued since),
 * due again at due. */
void wb_requeue(struct wb_queue *q, struct wb_op *batch, double due);
/* Whether a batch of owner (NULL: of any owner) is in flight. A busy
 * owner's ops are not taken: one batch of an owner at a time, in order. */
bool wb_busy(struct wb_queue *q, const void *owner);

/* Whether a batch in flight holds a change of owner that touches path. */
bool wb_running_touches(struct wb_queue *q, const void *owner, const char *path);

/* A queued (not in flight) hidden delete of path: removed and returned, or NULL. */
struct wb_op *wb_cancel_hidden(struct wb_queue *q, const void *owner, const char *path);

/*
 * Before an upload of path: takes out (and returns, linked by next, in
 * queue order) the queued changes of path's own attributes, which the
 * uploader then folds into the one it queues after the upload, so that the
 * upload does not wait for a command. Changes of path's own attributes in
 * flight do not stop it either: they are marked superseded (what their
 * batch prints of path is not stored), and the change the uploader
 * queues after the upload (the time it keeps, at least) lands after them.
 * Only when nothing else queued or running touches path (*clear true;
 * NULL then means nothing queued): otherwise nothing is taken, *clear is
 * false, and the caller settles.
 */
struct wb_op *wb_take_attrs(struct wb_queue *q, const void *owner, const char *path, bool *clear);
/*
 * As wb_take_attrs, for an uploader that can upload under a temporary name
 * and queue a WB_MOVE onto path (a new inode, as after delete-then-create):
 * deletes and moves of path itself, queued or in flight (a move queued now
 * runs after the batch in flight), do not make it unclear, nor do changes
 * of path's attributes in flight beside them. *replace then says whether one is queued (the upload must not
 * write into path, whose inode is the file being replaced), and only the
 * attribute changes queued after the last of them are taken (those before
 * it apply to the file it replaces, and stay queued). A move that is the
 * last of them (the uploader's own previous upload) stays queued, in its
 * place: until the new upload has landed (wb_swap_move), a settle must
 * still put the previous one at path. *prev_src: a copy of that move's
 * temporary name (malloc'd; NULL: the last of them is no queued move).
 * *base: what path holds before the queue's changes of it run, as the
 * first of them says (st_mode 0: unknown).
 */
struct wb_op *wb_take_replace(struct wb_queue *q, const void *owner, const char *path, bool *clear,
			      bool *replace, struct stat *base, char **prev_src);
/*
 * After the upload that replaces a queued move (wb_take_replace's
 * *prev_src): if that move is still queued and not running, it takes op's
 * temporary name and crash copy in its place in the queue (never behind
 * what was queued meanwhile), op gets the old ones (for the caller to
 * remove), and true is returned. False: it ran or is running (its file is
 * at path now, or will be before anything queued later runs); op is
 * unchanged and the caller queues it.
 */
bool wb_swap_move(struct wb_queue *q, const void *owner, const char *path, const char *prev_src,
		  struct wb_op *op);
/*
 * Where a move records that it ran (writes an empty file): a batch may run
 * twice (its answer lost after it ran, then sent again; or replayed by a
 * proxy), and the second run finds the temporary name gone. The record is
 * the proof that the move, not something else, took it; it lives outside
 * the user's directories and goes with a later batch (the caller queues
 * its delete). False when it does not fit in cap.
 */
#define WB_MOVE_MARK_DIR "/tmp/.daytonafs/moved"
bool wb_move_mark(const struct wb_op *op, char *out, size_t cap);
/* Whether everything queued or running of owner that touches path is a
 * change of path itself, other than a hidden delete: what
 * wb_take_replace could take or leave in order. */
bool wb_only_own(struct wb_queue *q, const void *owner, const char *path);

/*
 * For a runner thread: waits until a batch may be due (the earliest due
 * time, or a wake-up from wb_push / wb_stop), then returns true; false once
 * wb_stop was called.
 */
bool wb_wait(struct wb_queue *q);
/* CLOCK_MONOTONIC seconds: the clock of wb_push's and wb_take's now. */
double wb_now(void);
/* A command's failure message (coreutils wording, LC_ALL=C) to a -errno,
 * as a batch's output (wb_parse) or any other command's gives it; -EIO when
 * it names none. */
int errno_from_message(const char *msg);
void wb_stop(struct wb_queue *q);

/* ---- the script -------------------------------------------------------------- */

/*
 * A delete that waited does not remove a file someone else created at its
 * path after the unlink (another mount's or a program's rename of a new
 * file onto it, a tar x, an rsync): with since, a delete spares a file whose birth time in
 * the sandbox is later than the unlink, a new file. The sandbox's clock is
 * read once when the batch starts (S); a delete queued at U (wb_now())
 * then spares a file born after T = S - (built - max(U, floor)) + margin,
 * which is never before the unlink in the sandbox's time (the batch runs
 * after it was built), so the file that was there at the unlink is always
 * removed, whatever was written into it since (by a program that had it
 * open, or rewrote it in place). Up to the request's transit, the script's
 * own start and the margin, a file made after the unlink still goes, as it
 * did without since. floor: this mount's own changes that might land in
 * the sandbox after an unlink (a batch in flight at the unlink, which may
 * move a new file into place) had ended by then; a later time of one's own
 * makes T later, never earlier. A file is spared only if its birth time is
 * believable: not after S (a clock that ran ahead), and on a file system
 * whose times the sandbox's own kernel stamps (ext4, xfs, btrfs, tmpfs
 * ...; not a FUSE or network file system, whose times come from another
 * clock), where a file is born once (not overlayfs: its first change of a
 * file of the image copies it up, to a new inode born then, which would
 * spare the very file deleted). A delete of a hidden name, of a path the batch changes
 * before it, a batch of more than WB_SPARE_MAX such deletes (each costs a
 * stat), or any delete without since (NULL), removes whatever is there.
 */
struct wb_since {
	double built;             /* wb_now() as the script is built */
	double floor;             /* wb_now() time: this mount's own changes sent before had ended then */
};

/*
 * Appends to script the shell code that applies batch, op i under a marker
 * line "@MARK i" (mark: letters and digits, unguessable per batch, so that a
 * file name cannot fake one). Each op's own output follows its marker: on
 * failure '!' and the command's message, else (stat_after) the path's
 * attributes in find_fmt, a find -printf format ending in "\n". Every op
 * runs whatever happened to the others. since: the deletes' clock test
 * (above), or NULL.
 */
void wb_script(struct strbuf *script, const struct wb_op *batch, const char *mark, const char *find_fmt,
	       const struct wb_since *since);

enum wb_status { WB_UNKNOWN = 0, WB_OK, WB_FAILED };

struct wb_result {
	enum wb_status status;    /* WB_UNKNOWN: no marker (the script did not get there) */
	const char *text;         /* WB_OK: what stat_after printed; WB_FAILED: the message */
	size_t len;               /* (not NUL-terminated: points into the output) */
};

/* Splits a script's output into the results of its n ops. */
void wb_parse(const char *out, size_t len, const char *mark, struct wb_result *res, size_t n);

#endif
