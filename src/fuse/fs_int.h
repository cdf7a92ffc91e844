/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_int.h - what the parts of the filesystem layer share (fs.c, the fs_*.c files,
 * fs_ctl.c). Not for other modules.
 */
#ifndef DAYTONAFS_FS_INT_H
#define DAYTONAFS_FS_INT_H

#define FUSE_USE_VERSION 314
#include <fuse.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>

#include "cache.h"
#include "ctl.h"
#include "provider.h"
#include "exec.h"
#include "inode.h"
#include "listing.h"
#include "options.h"
#include "registry.h"
#include "stage.h"

/* fi->fh of every open file points to a struct whose first member is an int
 * saying what it is; the sandbox files' handles say FS_HANDLE_FILE, the
 * sandbox directories' FS_HANDLE_DIR. Other directories have no handle
 * (fi->fh is 0). */
#define FS_HANDLE_FILE 1
#define FS_HANDLE_DIR 2

/* What a mount path names. */
enum node_kind {
	N_ROOT,          /* / */
	N_ROOT_CTL,      /* /ctl */
	N_ROOT_ERROR,    /* /error: the last failed root command */
	N_SNAPDIR,       /* /.snapshots */
	N_SNAPFILE,      /* /.snapshots/NAME */
	N_VOLDIR,        /* /.volumes (fs_surface.c); root kinds stay before N_SANDBOX */
	N_VOL,           /* /.volumes/NAME (snap_name holds NAME) */
	N_VOL_INFO,      /* /.volumes/NAME/info */
	N_SANDBOX,       /* /SB */
	N_SB_CTL,        /* /SB/ctl */
	N_SB_STATUS,     /* /SB/status */
	N_SB_INFO,       /* /SB/info */
	N_SB_ERROR,      /* /SB/error */
	N_SB_STDOUT,     /* /SB/stdout: the newest command's */
	N_SB_STDERR,
	N_SB_EXIT,
	N_CMDDIR,        /* /SB/cmd */
	N_CMD_LAST,      /* /SB/cmd/last -> N */
	N_CMD,           /* /SB/cmd/N */
	N_CMD_COMMAND,   /* /SB/cmd/N/command */
	N_CMD_STDOUT,
	N_CMD_STDERR,
	N_CMD_EXIT,
	N_CMD_STATUS,
	N_CMD_STDIN,
	N_CMD_CTL,
	N_WORK,          /* /SB/work -> fs/home/daytona */
	N_FSROOT,        /* /SB/fs */
	N_FILE,          /* /SB/fs/PATH */
	/* the sandbox's surface (fs_surface.c) */
	N_SB_USAGE,      /* /SB/usage */
	N_SB_ENV,        /* /SB/env */
	N_SB_BUILDLOG,   /* /SB/build-log */
	N_PORTSDIR,      /* /SB/ports */
	N_PORT,          /* /SB/ports/N (cmd holds N) */
};

struct node {
	enum node_kind kind;
	char sb_name[256];        /* the name as written in the mount path */
	char snap_name[256];      /* N_SNAPFILE: the decoded snapshot name; N_VOL*: the volume's */
	unsigned cmd;             /* N_CMD*: the command number; N_PORT: the port */
	char path[4096];          /* N_FILE, N_FSROOT: the path in the sandbox ("/" for fs/) */
};

/* What the mount knows of one sandbox. Entries are never freed while the
 * mount runs (a deleted sandbox is marked gone), so pointers stay valid. */
struct sandbox {
	struct sandbox *next;
	struct sandbox *id_next;  /* registry.c's hash chains */
	struct sandbox *name_next;
	bool indexed;
	struct dfs *fs;           /* the mount it belongs to (sandbox_box runs in any thread) */
	char id[SP_ID_SIZE];
	char name[256];
	bool name_exact;          /* name is the whole name (false: cut to fit) */
	char toolbox_url[512];    /* kept when a later Sandbox object has none */
	char state[32];
	char error_reason[512];
	char volume_paths[1024];  /* where volumes are mounted (sp_sandbox's), for rename */
	bool volumes_known;       /* volume_paths was read (list items do not have it) */
	double fetched_at;        /* when state was read from the API */
	bool gone;                /* deleted, or no longer listed */
	bool listed;              /* seen in the last full listing */
	char workdir[1024];       /* "" until asked */
	/* the last failed command's message, for the error file */
	char error[1024];
	/* while a lifecycle command waits: the state seen, for the status file */
	char progress[32];
	pthread_mutex_t op_lock;  /* one lifecycle command at a time */
	/* Commands whose end has dropped the caches already: the exit reader and
	 * the exec thread both learn of an end, and it must count once. */
	unsigned ended_seen[32];
	unsigned ended_next;
	int writeback_error;      /* a deferred change that failed (deferred.c), for fsync of a directory */
	unsigned writeback_failures; /* how many failed (ever): what a settle counts as its own */
	int writeback_last;       /* the last one's -errno */
	struct statvfs statfs;    /* the sandbox's df, asked at most every 10 s */
	double statfs_at;
	bool is_public;           /* previews need no token */
	struct build_log *build;  /* a create ... image= of this mount: its build log (fs_surface.c) */
};

struct dfs {
	struct dfs_options opt;
	struct http_client *http;
	struct sandbox_provider *sp;
	struct cache *cache;
	struct stage_area *stage;
	struct recovery *recovery; /* what a dead mount left staged (recover.h) */
	struct exec_mgr *exec;
	struct ino_table *inos;   /* st_ino for the mount's life (inode.h) */

	pthread_mutex_t lock;     /* the sandbox registry and the snapshot list */
	struct sandbox *sandboxes;
	struct registry registry; /* the same entries, indexed by id and name */
	double listed_at;         /* when the registry was last filled from a full list */

	struct open_table *files; /* open sandbox files (fs_open_files.c) */
	struct vhandle *vhandles; /* open virtual files (fs_virtual.c), under lock */
	/* Releases queued for threads of the mount's (fs_virtual.c), under
	 * lock: queued or running, the queue, the threads; release_cond
	 * signals when none is left. */
	unsigned releasing;
	struct release_job *release_head;
	unsigned release_threads;
	pthread_cond_t release_cond;
	struct follower *followers; /* threads following a build log (fs_surface.c), under lock */
	struct fuse *fuse;        /* for kernel cache invalidation, set at init */
	char mountpoint[4096];    /* for messages that tell the user what to type */
	char root_error[1024];    /* the last failed root ctl command, for MOUNT/error */
	uid_t uid;                /* the mounting user, owner of the virtual files */
	gid_t gid;
	/* The owner a file the mount makes gets in the sandbox: what a new
	 * file shows until its directory is listed again, which must agree
	 * (the provider's files_uid, else the mounting user). */
	uid_t new_uid;
	gid_t new_gid;
	struct timespec mounted_at;
};

struct strbuf;
/* fs_tree.c: the attributes of a virtual file or directory (the mounting
 * user's, times of the mount). */
void fill_virtual(struct dfs *fs, struct stat *st, mode_t mode, off_t size);

/* fs_surface.c: the sandbox's surface (usage, env, ports/, build-log,
 * MOUNT/.volumes/) and what counts as activity. Each returns -ENOENT for a
 * kind it does not know. */
int surface_getattr(struct dfs *fs, const struct node *n, struct sandbox *sb, struct stat *st);
int surface_readdir(struct dfs *fs, const struct node *n, struct sandbox *sb, void *buf,
		    fuse_fill_dir_t filler);
/* The content of a read-only surface file at open (into text). */
int surface_text(struct dfs *fs, const struct node *n, struct sandbox *sb, struct strbuf *text);
int surface_mkdir(struct dfs *fs, const struct node *n);
int surface_rmdir(struct dfs *fs, const struct node *n);
/* NAME/env written: text is the whole content written since open. */
int surface_env_write(struct dfs *fs, struct sandbox *sb, const char *text, size_t len);
/* After a create: its env where the API will not give it back (no SP_CAP_SANDBOX_ENV). */
void surface_env_record(struct dfs *fs, struct sandbox *sb, const struct sp_kv *env, size_t n);
/* NAME/build-log of the build this mount follows (its create ... image=),
 * counted: NULL when there is none (or its request broke: read the API's). */
struct build_log;
struct build_log *surface_build_log_get(struct dfs *fs, struct sandbox *sb);
void surface_build_log_put(struct build_log *bl);
/* Reads from off: what has come of the build so far. */
int surface_build_log_read(struct build_log *bl, char *buf, size_t size, off_t off);
/* create's progress (fs_ctl.c): on_created registers the sandbox at once and
 * follows the build log of an image build; on_state shows the wait in status. */
void surface_create_progress(struct sp_create_params *p, struct dfs *fs, bool follow_build);
void surface_create_done(struct dfs *fs, bool started);
/* sb was deleted: the build log it keeps can go once followed to its end. */
void surface_sandbox_gone(struct dfs *fs, struct sandbox *sb);
/* At unmount, before the provider goes: the followers stopped and joined. */
void surface_stop(struct dfs *fs);
/* At unmount: what the surface keeps of sb (its build log). */
void surface_sandbox_free(struct sandbox *sb);
/* A change through the mount to sb: counts as its activity (-o activity=changes). */
void surface_note_change(struct dfs *fs, struct sandbox *sb);

struct dfs *dfs_get(void);
/* The thread whose system call this request serves (the kernel's pid in the
 * request is the caller's thread id), 0 when unknown. */
pid_t caller_tid(void);
double now_mono(void);

/* fs_virtual.c: at unmount, the virtual files' handles still open. The
 * kernel sends RELEASE in the background after close(2) returns and drops
 * what it has not sent yet when the mount goes, so a closed file's handle
 * can be one of them. */
void vhandles_free_all(struct dfs *fs);

/* fs.c */
int node_parse(const char *path, struct node *n);
/* The SP_CAP_* a node needs to exist at all (0: none). A surface directory
 * or file the provider cannot serve (Vercel: .volumes, ports/, build-log)
 * is neither listed nor found (ENOENT), rather than shown and failing at
 * every open. Pure. */
unsigned node_needs(enum node_kind kind);
struct sandbox *sandbox_find(struct dfs *fs, const char *name, struct sp_error *err);
int sandbox_refresh(struct dfs *fs, struct sandbox *sb, struct sp_error *err);
void sandbox_update(struct dfs *fs, struct sandbox *sb, const struct sp_sandbox *d);
struct sandbox *sandbox_add(struct dfs *fs, const struct sp_sandbox *d);
void sandbox_set_error(struct sandbox *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sandbox_clear_error(struct sandbox *sb);
/* The toolbox address of a sandbox; its id and url are stable. When the API
 * gave no toolboxProxyUrl, asks for it once (GET /sandbox/{id}/toolbox-proxy-url)
 * and keeps it. */
void sandbox_box(struct sandbox *sb, struct sp_box *box);
/* The directory name of sb in the mount root (its name, or its id when the
 * name cannot be shown: registry.h), copied out under the lock. */
void sandbox_dir_name(struct dfs *fs, const struct sandbox *sb, char *out, size_t cap);
/* Whether a sandbox in this API state runs (its toolbox answers). */
bool sandbox_state_runs(const char *state);
/* 0 when the sandbox answers file access (started, or started now by
 * -o autostart), else -EHOSTDOWN with the error file saying what to do. */
int sandbox_require_running(struct dfs *fs, struct sandbox *sb);
/* Before a change to the sandbox's files through the mount (a namespace
 * change, an attribute, a truncate): sandbox_require_running; the change
 * counts as activity (surface_note_change); and it begins
 * (files_change_begin): after what crash recovery is uploading to the
 * sandbox, and before recovery's next look. 0 or a negative errno. */
int sandbox_change_begin(struct dfs *fs, struct sandbox *sb);

/* fs_open_files.c ... fs_runners.c (fs_files_int.h): the proxy of the sandbox's own files (node kinds N_FSROOT, N_FILE) */
struct open_table *open_table_new(long request_timeout_s);
void open_table_free(struct open_table *t);
int files_getattr(struct dfs *fs, struct sandbox *sb, const char *path, struct stat *st);
/* A directory handle holds a snapshot of the listing (fs_attr.c says why). */
int files_opendir(struct dfs *fs, struct fuse_file_info *fi);
void files_releasedir(struct dfs *fs, struct fuse_file_info *fi);
int files_readdir(struct dfs *fs, struct sandbox *sb, const char *path, void *buf, fuse_fill_dir_t filler,
		  off_t off, struct fuse_file_info *fi);
int files_open(struct dfs *fs, struct sandbox *sb, const char *path, struct fuse_file_info *fi, bool create,
	       mode_t mode);
int files_fgetattr(struct dfs *fs, struct fuse_file_info *fi, struct stat *st);
int files_read(struct dfs *fs, struct fuse_file_info *fi, char *buf, size_t size, off_t off);
int files_write(struct dfs *fs, struct fuse_file_info *fi, const char *buf, size_t size, off_t off);
int files_flush(struct dfs *fs, struct fuse_file_info *fi);
int files_fsync(struct dfs *fs, struct fuse_file_info *fi);
int files_release(struct dfs *fs, struct fuse_file_info *fi);
enum files_release_state { FILES_RELEASED, FILES_RELEASE_HANDLE, FILES_RELEASE_WOULD_WAIT };
enum files_release_state files_release_quick(struct dfs *fs, struct fuse_file_info *fi);
void files_release_handle(struct fuse_file_info *fi);
int files_truncate(struct dfs *fs, struct sandbox *sb, const char *path, off_t size, struct fuse_file_info *fi);
int files_mkdir(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode);
int files_unlink(struct dfs *fs, struct sandbox *sb, const char *path);
int files_rmdir(struct dfs *fs, struct sandbox *sb, const char *path);
int files_rename(struct dfs *fs, struct sandbox *sb, const char *from, const char *to, unsigned int flags);
/* The inode number getattr gives path (inode.h), a hidden name's too. */
uint64_t files_ino(struct dfs *fs, struct sandbox *sb, const char *path);
/* A rename onto to failed after libfuse hid to for it (rename_pin.h). */
void files_rename_failed(struct dfs *fs, struct sandbox *sb, const char *to);
/* A rename pin's hide of an open file waits for its rename's end in this
 * thread; that rename (onto to in sb: a sandbox path; sb NULL when to is
 * not a sandbox's file, to the mount path then) ended with rc: on success
 * the hide is for good, on failure the file gets its name back. */
bool files_rename_hide_pending(void);
void files_rename_hide_end(struct dfs *fs, struct sandbox *sb, const char *to, int rc);
int files_chmod(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode);
int files_chown(struct dfs *fs, struct sandbox *sb, const char *path, uid_t uid, gid_t gid);
int files_utimens(struct dfs *fs, struct sandbox *sb, const char *path, const struct timespec tv[2]);
int files_symlink(struct dfs *fs, struct sandbox *sb, const char *target, const char *path);
int files_readlink(struct dfs *fs, struct sandbox *sb, const char *path, char *buf, size_t size);
int files_statfs(struct dfs *fs, struct sandbox *sb, struct statvfs *st);
/* mknod(2) of what is not a regular file: FIFOs are made in the sandbox; devices and sockets give EPERM. */
int files_mknod(struct dfs *fs, struct sandbox *sb, const char *path, mode_t mode, dev_t rdev);

/* The find listing and its parser are listing.h's (src/remote). Scripts the
 * file proxy runs in the sandbox, fed to its shell (zsh, bash or sh), after
 * FILES_SH_PREFIX; exposed for the unit tests, which run them under each. */
#define FILES_STATFS_SCRIPT "stat -f -c '%S %b %f %a %c %d %l' /"
/* rename(2) of from onto to, replacing it (mv -T, or perl where mv refuses). */
void files_rename_script(struct strbuf *cmd, const char *from, const char *to);
/* Runs the sandbox's queued changes (deletes, owner, mode, times: see
 * writeback.h) that touch path, or all of them when path is NULL, before
 * anything that could see them in the sandbox (a listing, a command). */
void files_settle(struct dfs *fs, struct sandbox *sb, const char *path);
/* files_settle without the uploads that wait (-o writeback). */
void files_settle_changes(struct dfs *fs, struct sandbox *sb, const char *path);
/* -o writeback: uploads now what waits of sb (every sandbox when NULL) at,
 * below or above path (everything when NULL). 0, or the errno of a failed
 * upload (its data stays staged and queued). */
int files_writeback_flush(struct dfs *fs, struct sandbox *sb, const char *path);
void files_settle_attr(struct dfs *fs, struct sandbox *sb, const char *path);
/* Before a snapshot, stop, archive or restart of sb: everything closed
 * through the mount is uploaded and every queued change sent. 0, or the
 * errno of the first upload or change that failed (what failed stays
 * staged and queued, or is reported as fsync of a directory reports it). */
int files_settle_sandbox(struct dfs *fs, struct sandbox *sb);
/* sb was deleted: what waits of it (uploads, queued changes) is dropped,
 * unsent, with the crash-journal records of the uploads. */
void files_forget_sandbox(struct dfs *fs, struct sandbox *sb);
/* Whether an upload waits (-o writeback) or is under way at, below or above path. */
bool files_writeback_waiting(struct dfs *fs, struct sandbox *sb, const char *path);
/* Puts on the entries of a listing of dir (v, n, sorted by entry_cmp) what
 * the changes queued for them will set: the listing, taken while they wait,
 * does not have it yet. */
void files_overlay_queued(struct dfs *fs, struct sandbox *sb, const char *dir, struct find_entry *v, size_t n);
/* fsync of a directory: runs the queued changes at or below path; the
 * errno of a queued change that failed since the last call, else 0. */
int files_fsyncdir(struct dfs *fs, struct sandbox *sb, const char *path);
/* Uploads everything still staged (at unmount). */
void files_flush_all(struct dfs *fs);
/* Crash recovery's hold on a sandbox file, from its look at the file in
 * the sandbox to the end of its upload. It waits for the changes under way
 * (files_change_begin) to end; then false when a descriptor of this mount
 * has the file open (recovery does not upload under it); else opens of the
 * file, and every other change to the sandbox through this mount, wait
 * until files_recovery_done, so that they come after recovery's copy. The
 * strings must last until files_recovery_done. */
bool files_recovery_claim(struct dfs *fs, const char *sandbox_id, const char *path);
void files_recovery_done(struct dfs *fs);
/* A change to sb through the mount (a namespace change, an attribute, a
 * truncate, a command's start) begins: it waits while crash recovery holds
 * a file of sb, or waits to, and is under way until files_change_end, which
 * the FUSE operation calls as it returns (fs.c; a no-op when nothing began
 * on this thread). A change that begins inside another counts once. */
void files_change_begin(struct dfs *fs, const struct sandbox *sb);
void files_change_end(void);
/* recover_scan (recover.h) with the mount's callbacks (fs_runners.c). */
struct recovery *mount_recover_scan(struct dfs *fs);
/* Uploads size bytes of fd to path, safely for a name with white space at its
 * ends (a temporary name and a copy); sb may be NULL (crash recovery). */
int files_upload_fd(struct dfs *fs, struct sandbox *sb, const struct sp_box *box, const char *path, int fd,
		    uint64_t size, struct sp_error *err);
/* chmod path, with a command for a name the file API would trim. */
int files_chmod_path(struct dfs *fs, const struct sp_box *box, const char *path, mode_t mode, struct sp_error *err);
/* The sandbox's cached metadata is stale (a command ran). */
void files_invalidate_sandbox(struct dfs *fs, const char *sandbox_id);

/* fs_ctl.c: commands written to ctl files */
int ctl_run_root(struct dfs *fs, const char *line, size_t len);
int ctl_run_sandbox(struct dfs *fs, struct sandbox *sb, const char *line, size_t len);
int ctl_run_command(struct dfs *fs, struct sandbox *sb, unsigned cmd, const char *line, size_t len);
/* A line refused before it was parsed (too long): its error file says so,
 * as for a line that does not parse. sb NULL: the root's ctl; cmd 0: the
 * sandbox's. */
void ctl_line_refused(struct dfs *fs, struct sandbox *sb, unsigned cmd, const char *msg);
/* mkdir MOUNT/NAME */
int ctl_create_default(struct dfs *fs, const char *name);

#endif
