/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_files_int.h - what the files of the proxy of the sandbox's own files
 * share (fs_open_files.c, fs_attr.c, fs_read.c, fs_write.c,
 * fs_namespace.c, fs_runners.c). Together they proxy the sandbox's own
 * files under SANDBOX/fs/ to the toolbox file API.
 *
 * Metadata. The toolbox's stat and listing follow symbolic links and hide
 * dangling ones, so they cannot show a link as a link. A directory is
 * therefore listed with ONE command in the sandbox, find -printf, which
 * gives lstat's view of every entry (type, full mode, size, mtime in ns,
 * owner, link count, link target); the listing fills the attribute cache,
 * so that ls -l costs one request. A lookup that misses the cache lists the
 * parent (one request that answers for every sibling, and for every name
 * that does not exist); a path whose parent's listing already names it as
 * a regular file or directory (after this mount wrote it, say) is asked
 * with GET /files/info, exact for anything but a link. Where find does not
 * work, the file API's listing is used, with its limits (SEMANTICS.md).
 * Changes made through the mount update the cached listing in place
 * (cache_update) instead of dropping it.
 *
 * Content. Reads are ranged downloads through a per-handle read-ahead
 * window that grows while the reader is sequential. Writes go to a stage
 * (stage.h), a local file shared by every handle open on the same path, so
 * that two descriptors see each other's writes and a read after a write
 * sees it before it is uploaded; the stage is uploaded whole on flush, fsync
 * and release. What must wait for the upload (the mode, owner and times of
 * a file being written: the upload would reset them) is applied right
 * after it, in one command.
 *
 * Where the file API has no call (times, owner, links, special mode bits,
 * rename over an existing file, truncate, statfs), one command runs in the
 * sandbox, every path quoted, and prints the path's new attributes with the
 * same find format, so that the change costs one request and the next stat
 * none. The find format, its parser and the commands are listing.h's
 * (src/remote); fs_runners.c gives them the mount's context.
 */
#ifndef DAYTONAFS_FS_FILES_INT_H
#define DAYTONAFS_FS_FILES_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "deferred.h"
#include "fs_int.h"
#include "journal.h"
#include "listing.h"
#include "prefetch.h"
#include "strbuf.h"
#include "writeback.h"

#define RA_MIN (128 * 1024)
#define RA_MAX (8 * 1024 * 1024)

/* Prefetch of small files read in turn (fs_prefetch.c): files up to
 * PF_FILE_MAX; a directory's first bulk request takes up to PF_FIRST_FILES
 * files and PF_FIRST_BYTES, the next ones (within PF_RECENT_S of the last,
 * in the same directory) PF_BATCH_*; the store holds PF_STORE_* at most.
 * After a bulk request failed, none is tried in that directory for
 * PF_FAIL_PAUSE_S (its reads go one by one): a fault that lasts must not
 * cost every read a failed try. */
#define PF_FILE_MAX (256 * 1024)
#define PF_FIRST_FILES 64
#define PF_FIRST_BYTES (2 * 1024 * 1024)
#define PF_BATCH_FILES 200
#define PF_BATCH_BYTES (8 * 1024 * 1024)
#define PF_RECENT_S 10.0
#define PF_FAIL_PAUSE_S 30.0
#define PF_STORE_BYTES (16 * 1024 * 1024)
#define PF_STORE_FILES 1024

/* One path of one sandbox with open handles. */
struct open_node {
	struct open_node *next;
	struct sandbox *sb;
	char *path;
	int refs;
	int handles;              /* open file handles (refs also counts short-lived lookups) */
	/* Releases of its handles handed to the mount's threads and not done
	 * yet (dfs_release), under the table's lock: opens, stats and changes
	 * of the path wait for them (node_get, node_find), as they waited for
	 * the release itself before it left libfuse's thread; else an O_TRUNC
	 * open or a truncate took the content of a close that failed before its
	 * last-chance upload had it sent or kept in unsaved/, and a stat right
	 * after a failed close of a new file showed it, to be gone a moment
	 * later. Only operations on this path wait: the rest of the mount
	 * does not. */
	unsigned releasing;
	pthread_mutex_t lock;
	struct stage *stage;      /* NULL until the file is written, truncated or created */
	bool populated;           /* the stage holds the whole current content */
	bool dirty;               /* the stage differs from the sandbox's file */
	unsigned long changes;    /* writes, truncations, O_TRUNC opens: one each */
	unsigned long closed_changes; /* changes when a close, fsync or truncate by
					 path last asked for an upload */
	bool unlinked;            /* removed while open: never uploaded again */
	/* Hidden by libfuse for the rename pin's rename onto its name
	 * (hide_open_file): the name, given back with the file's changes if
	 * that rename fails (files_rename_hide_end); NULL otherwise. */
	char *hide_from;
	bool hide_dirty;          /* ... and whether the file was dirty then */
	char **hidden_aliases;    /* the hidden names such renames that failed left: libfuse
				     still names the descriptors' inodes so (node_find_hidden) */
	size_t n_hidden_aliases;
	bool is_new;              /* created here and not uploaded yet */
	bool maybe_remote;        /* ... but an upload of it was sent and failed: it may have
				     landed (only its answer lost), so its unlink or hide
				     sends the delete (files_unlink) */
	struct stat st;           /* the file's attributes at open (made up for a new file);
				     st_mode follows chmod through the mount */
	/* The size and mtime the kernel was last given for the file (at open,
	 * then by each getattr while it is open; node_note_told); size -1: not
	 * known. told_gen counts their changes: a handle's copies of the file
	 * taken before a change are stale (files_read). */
	off_t size_told;
	struct timespec mtime_told;
	unsigned told_gen;
	bool chmod_pending;       /* a new file's mode, applied after its first upload */
	bool chmod_queued;        /* ... or a queued chmod taken back by an upload: sent even
				     when it is 0644 (the sandbox's file may have another) */
	bool chown_pending;       /* owner and group of a new file, likewise */
	uid_t uid;
	gid_t gid;
	bool mtime_pending;       /* utimens while dirty: applied after the next upload */
	struct timespec mtime;    /* last write, or the pending utimens value */
	bool mtime_set;           /* mtime is a utimens value, not this machine's clock */
	bool atime_pending;
	struct timespec atime;
	int upload_error;         /* last failed upload's errno, reported by flush/fsync */
	char **old_paths;         /* paths before renames: kept until the node goes, since */
	size_t n_old_paths;       /* a request in flight may still be using one */
	/* The crash journal (journal.h): the stage's record, while it holds
	 * data not in the sandbox. */
	struct journal_base base; /* the sandbox's file when read, for recovery's check */
	char journal_name[64];    /* the stage's name: "" while it has no record */
	int journal_fd;           /* the record, open while journal_name is set */
	bool journal_flushed;     /* the record says "flushed" (else "open") */
	bool journal_keep;        /* neither uploaded nor kept in unsaved/: the stage and
				     its record outlive the node, for the next mount */
	/* -o writeback (fs_writeback.c): closed with data not uploaded yet.
	 * Under the table's wbk_lock; the queue holds a reference. */
	bool wbk_queued;
	unsigned long wbk_changes; /* changes at the close that queued it (n->lock) */
	double wbk_due;           /* CLOCK_MONOTONIC seconds */
	struct open_node *wbk_next;
	/* Taken from the queue and being uploaded (by the thread or a
	 * flusher): a flush of its sandbox waits for it (files_writeback_flush),
	 * and no other taker takes it meanwhile. Under wbk_lock. */
	bool wbk_busy;
	struct open_node *wbk_bprev, *wbk_bnext;
};

struct sb_mode {
	struct sb_mode *next;
	const struct sandbox *sb;
	enum list_mode mode;
};

/* Link targets seen in listings, so that readlink costs nothing. */
struct link_ent {
	struct link_ent *next;
	const struct sandbox *sb;
	double expires;
	char *path;
	char *target;
};

#define LINK_BUCKETS 1024
#define LINK_MAX 65536

/*
 * The ctimes this mount showed for changes it sent later (ctime_keep). A
 * change that waits (an empty new file's upload, -o writeback's, the touch
 * that gives an uploaded file the time of its last write, a queued utimens)
 * reaches the sandbox up to a second or so after the mount showed it, with
 * the ctime of that moment, which no command can set back. So the mount
 * keeps showing its own as long as the sandbox's ctime is, to the
 * nanosecond, the one that change gave: any later change there (through the
 * mount, a command, another client) gives another, which then shows. One
 * slot per hash of (sandbox, path); a collision forgets the older.
 */
#define CTIME_SLOTS 4096

struct ctime_ent {
	const struct sandbox *sb;
	char *path;               /* NULL: a free slot */
	struct timespec sandbox;  /* the ctime the sandbox printed after the change */
	struct timespec shown;    /* the ctime the mount showed for it */
};

/*
 * Deferred changes (writeback.h, run by deferred.h). A delete, or the owner, mode and times of
 * a file, are applied to the cache at once and sent WB_DELAY later, with
 * whatever else was queued, in one command; anything that could see the
 * path in the sandbox runs them first (files_settle).
 *
 * libfuse hides an open file by renaming it to a .fuse_hidden name both when
 * it is unlinked and just before another file is renamed over it, and the
 * two look the same here. Deleting it in the sandbox at once would make a
 * rename over an open file two steps (the target would vanish in between),
 * so that delete is queued as "hidden": it runs no sooner than HIDDEN_DELAY
 * unless something must see the sandbox, and a rename onto the path cancels
 * it (mv -T then replaces the file atomically).
 */
#define WB_DELAY 0.5
#define HIDDEN_DELAY 0.2
/* A move's record (wb_move_mark) goes with the next batch that runs, or
 * this much later: it must outlive a second run of the move's batch, and
 * costs no command of its own while saves go on. */
#define WB_MARK_DELAY 30.0
#define WB_BATCH 128

/*
 * The moment between the hide and the rename. libfuse hides the open
 * destination of a rename by renaming it away first, then renames the
 * source onto the name: in between, the name does not exist. A process that
 * opens the name in a loop while another saves it by write-then-rename
 * would see ENOENT then (and ESTALE, when its lookup made a node for the
 * name that the rename then dropped). So a lookup of a name just hidden
 * waits: for the rename onto it, if one starts within HIDE_WAIT (libfuse
 * sends it right after the hide), until that rename is done; otherwise the
 * hide was an unlink, and the lookup goes on (ENOENT) after HIDE_WAIT.
 */
#define HIDE_WAIT 0.2

/*
 * The kernel may still map the name to the hidden file's inode for a moment
 * after the rename (its lookup raced with it), and then opens that inode,
 * which libfuse names by the hidden name. While the hidden file is open,
 * such an open shares it; after its last close, the open is of the name the
 * file was hidden from, which holds one complete version again. The last
 * HIDDEN_NAMES hides are remembered for that.
 */
#define HIDDEN_NAMES 64

struct hide_window {
	struct hide_window *next;
	const struct sandbox *sb;
	char *path;
	double until;             /* the time limit while no rename has started */
	bool renaming;            /* a rename onto path has started */
	pid_t tid;                /* the thread whose unlink or rename hid it; 0: unknown */
};

#define HIDDEN_RINGS 2        /* hidden_names: open files' hides, the rename pin's */

/* A hide libfuse made: its hidden name and the name it was hidden from. */
struct hidden_name {
	const struct sandbox *sb;
	char *hidden;
	char *from;
	bool follows;             /* a failed rename left it: from follows the file's
				     renames, as the kernel's entry of it does */
};

struct open_table {
	pthread_mutex_t lock;
	struct open_node *head;
	struct sb_mode *modes;
	struct link_ent *links[LINK_BUCKETS];
	size_t nlinks;
	struct ctime_ent ctimes[CTIME_SLOTS]; /* under lock */
	struct deferred deferred; /* deferred changes; their budget is set with fs */
	struct dfs *fs;           /* set (under lock) by the first wb_queue_op */
	struct hide_window *hides; /* under lock; hide_cond signals their end */
	unsigned long hide_timed_waits; /* lookups that waited for a window to pass (tests) */
	pthread_cond_t hide_cond;
	const char *recover_id;   /* under lock: the file crash recovery is uploading */
	const char *recover_path; /* (files_recovery_claim); recover_cond signals its end */
	pthread_cond_t recover_cond;
	/* Under lock: changes to a sandbox through the mount under way
	 * (files_change_begin), and a claim of recovery's waiting for them to
	 * end (it holds new ones back meanwhile); recover_cond signals both. */
	int changes_in_flight;
	bool claim_waiting;
	pthread_cond_t release_cond; /* signals a node's releasing dropping to 0 */
	/* Under lock: rings of the last hides, of open files and of the rename pin's. */
	struct hidden_name hidden_names[HIDDEN_RINGS][HIDDEN_NAMES];
	size_t hidden_next[HIDDEN_RINGS]; /* (every save hides: open files' hides stay longer) */
	/* Small files fetched ahead of their reads (fs_prefetch.c). */
	struct prefetch *prefetch;
	bool bulk_off;            /* under lock: the provider turned bulk download down */
	const struct sandbox *fail_sb; /* under lock: the directory where a bulk download */
	char *fail_dir;           /* failed, and when the next may be tried there */
	double fail_retry_at;
	const struct sandbox *pf_sb; /* under lock: the directory of the last bulk download */
	char *pf_dir;
	double pf_at;
	/* Uploads of small files closed at the same time share a request
	 * (fs_write.c, upload_shared): waiting ones, and the sandboxes with a
	 * shared request in flight. Under up_lock; up_cond signals an end. */
	pthread_mutex_t up_lock;
	pthread_cond_t up_cond;
	struct up_wait *up_waiting;
	struct up_busy *up_busy;
	/* -o writeback: closed files whose upload waits (fs_writeback.c). */
	pthread_mutex_t wbk_lock;
	pthread_cond_t wbk_cond;
	struct open_node *wbk_head;
	struct open_node *wbk_busy_head; /* the nodes in flight; wbk_cond signals an end */
	pthread_t wbk_thread;
	bool wbk_thread_on, wbk_stop;
};

struct fhandle {
	int type;                 /* FS_HANDLE_FILE */
	struct open_node *node;
	int flags;
	pthread_mutex_t lock;     /* the read-ahead window */
	char *ra_buf;
	uint64_t ra_off;
	size_t ra_len;
	size_t ra_cap;
	uint64_t next_off;        /* where a sequential reader reads next */
	size_t window;
	struct rstream *rs;       /* a sequential reader's streaming download, or NULL */
	bool whole;               /* ra_buf holds the whole file as it was at the first read, */
	size_t whole_len;         /* whole_len bytes (while ra_len says so) */
	bool first_read_done;
	unsigned random_reads;    /* random reads by command so far (no ranged download) */
	struct stage *copy;       /* then the whole file as it was, in a staging file, or NULL */
	unsigned told_gen;        /* the node's told_gen that the copies above belong to */
	bool copies_dropped;      /* the file changed under this handle: no whole copy again */
	bool release_queued;      /* counted in its node's releasing (files_release_quick) */
};

/* fs_open_files.c */
struct open_node *node_lookup_locked(struct open_table *t, struct sandbox *sb, const char *path);
struct open_node *node_get(struct open_table *t, struct sandbox *sb, const char *path, bool after_renames);
struct open_node *node_find(struct open_table *t, struct sandbox *sb, const char *path);
void node_release_queued(struct open_table *t, struct open_node *n);
void node_release_ran(struct open_table *t, struct open_node *n);
void node_set_path(struct open_node *n, char *path);
void node_note_told(struct open_node *n, const struct stat *st);
void node_forget_content(struct dfs *fs, struct open_node *n);
void node_release(struct dfs *fs, struct open_node *n);
bool is_hidden_name(const char *path);
struct open_node *node_find_hidden(struct open_table *t, struct sandbox *sb, const char *path);
int node_given_back_name(struct open_table *t, struct open_node *n, char *buf, size_t size);
int node_keep_unsaved(struct open_node *n, const char *path, const char *how);
void hidden_name_note(struct open_table *t, const struct sandbox *sb, const char *hidden, const char *from,
		      bool pinned);
bool hidden_name_origin(struct open_table *t, const struct sandbox *sb, const char *hidden, char *buf,
			       size_t size);
void hidden_name_kept(struct open_table *t, const struct sandbox *sb, const char *hidden, const char *from);
void hidden_names_rekey_locked(struct open_table *t, const struct sandbox *sb, const char *from, const char *to);
void hide_window_open(struct open_table *t, const struct sandbox *sb, const char *path, pid_t tid);
bool hide_window_renaming(struct open_table *t, const struct sandbox *sb, const char *path, bool start);
bool hide_window_wait(struct open_table *t, const struct sandbox *sb, const char *path, pid_t tid);
enum list_mode list_mode_get(struct dfs *fs, const struct sandbox *sb);
void list_mode_set(struct dfs *fs, const struct sandbox *sb, enum list_mode mode);
void link_drop(struct dfs *fs, const struct sandbox *sb, const char *path, bool subtree);
void link_put(struct dfs *fs, const struct sandbox *sb, const char *path, const char *target);
bool link_get(struct dfs *fs, const struct sandbox *sb, const char *path, char *buf, size_t size);
void ctime_keep(struct dfs *fs, const struct sandbox *sb, const char *path, const struct timespec *sandbox,
		const struct timespec *shown);
void ctime_shown(struct dfs *fs, const struct sandbox *sb, const char *path, struct stat *st);

/* fs_runners.c: the mount's side of listing.h (src/remote), under the names
 * the rest of src/fuse calls it by */
void files_listing_ctx(struct dfs *fs, struct sandbox *sb, struct listing_ctx *c);
int files_find_list(struct dfs *fs, struct sandbox *sb, const char *dir, const char *child,
		    struct find_entry **out, size_t *n, struct child_listing *cl);
int toolbox_failed(struct dfs *fs, struct sandbox *sb, int rc, const struct sp_error *err,
			  const char *what, const char *path);
int sandbox_sh_once(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out,
			   struct sp_error *err);
int sandbox_sh(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out);
int run_fs_command(struct dfs *fs, struct sandbox *sb, const char *script, char **out);
/* Files up to this size share an upload request (fs_write.c, upload_shared). */
#define UP_SHARE_MAX (1u << 20)

/* What an upload that replaces its path (upload_replacing) needs. */
struct replace {
	bool on;                  /* a delete or move of the path waits: upload under a new name */
	struct stat base;         /* what the path holds before the queue's changes of it */
	char *prev_src;           /* malloc'd: the temporary name of this file's previous
				     move, left queued in its place until this upload has
				     landed, then given this one's (wb_swap_move) */
};
/* Whether an upload of n may replace its path under a temporary name
 * (fs_replace.c). Caller holds n->lock. */
bool replace_ok(struct dfs *fs, struct open_node *n);
/* Uploads n under a new temporary name and queues its move into place
 * (fs_replace.c). Caller holds n->lock. */
int upload_replacing(struct dfs *fs, struct open_node *n, struct replace *rp, struct sp_error *err);
/* Uploads len bytes of fd to path, sharing a request with the uploads of
 * the same sandbox that wait meanwhile (fs_write.c). */
int upload_shared(struct dfs *fs, struct sandbox *sb, const struct sp_box *box, const char *path, int fd,
		  uint64_t len, struct sp_error *err);
/* Whether a create of path may leave this mount's queued delete of it in
 * the queue: its upload will replace the file under a new name
 * (fs_write.c, upload_replacing). */
bool files_create_may_replace(struct dfs *fs, struct sandbox *sb, const char *path);
/* Removes (or with preserve, keeps in unsaved/) the crash copy keep of a
 * queued move onto path (wb_op.keep; NULL: none). */
void files_keep_drop(struct dfs *fs, const struct sandbox *sb, const char *path, const char *keep, bool preserve);
void note_command_result(struct dfs *fs, struct sandbox *sb, const char *path, const char *out,
				enum cache_change what);
int change_by_command(struct dfs *fs, struct sandbox *sb, struct strbuf *cmd, const char *path,
			     enum cache_change what);
bool split_path(const char *path, char *parent, size_t cap, const char **base);

/* fs_attr.c */
int list_dir(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry **out, size_t *count);
int lookup_attr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st);
/* fs_namespace.c: path's directory (cached) may refuse the user the
 * sandbox's file API acts as a new name or a removal: ask the sandbox at
 * once. */
bool files_parent_may_refuse(struct dfs *fs, struct sandbox *sb, const char *path);
void node_stat(struct open_node *n, struct stat *st);

/* fs_write.c */
int ensure_populated(struct dfs *fs, struct open_node *n);
void touch_now(struct open_node *n);
void add_touch(struct strbuf *cmd, const char *flag, const struct timespec *ts, const char *path);
int journal_put(struct dfs *fs, struct open_node *n, enum journal_state state, bool durable);
void journal_drop(struct dfs *fs, struct open_node *n);
void node_last_close(struct dfs *fs, struct open_node *n);
bool journal_keep_for_recovery(struct open_node *n, const char *path);
int upload_node(struct dfs *fs, struct open_node *n);
void upload_succeeded(struct dfs *fs, struct open_node *n);
void upload_failed(struct dfs *fs, struct open_node *n, int rc, struct sp_error *err);

/* fs_writeback.c (-o writeback; empty new files without it) */
bool upload_later(struct dfs *fs, struct open_node *n);
/* Whether n's upload waits in the queue, for the content a close queued
 * (not for a stage written since). Caller holds n->lock. */
bool upload_waits(struct dfs *fs, struct open_node *n);
/* What n holds now is the content its queued upload, if any, is to send
 * (upload_later; a truncate by path with no descriptor open, which no close
 * will follow). Caller holds n->lock. */
void upload_queue_takes_content(struct open_node *n);
void writeback_stop(struct dfs *fs);
void writeback_release(struct dfs *fs);

/* fs_read.c */
void rs_stop(struct rstream *rs);

/* fs_prefetch.c */
bool prefetch_first_read(struct dfs *fs, struct open_node *n, const struct stat *st, char **data, size_t *len);

/* fs_namespace.c */
struct open_node *next_dirty(struct dfs *fs, struct sandbox *sb, const char *path);

/* fs_runners.c: the mount's side of deferred.h (wb_*) and recover.h */
extern const struct deferred_ops files_deferred_ops;
void wb_run_all(struct dfs *fs, struct sandbox *sb);
bool wb_queue_op(struct dfs *fs, struct wb_op *op, double delay);

#endif
