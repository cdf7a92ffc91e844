/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_prov_int.h - what the files of the Vercel provider share (the
 * mapping is at the top of vercel_provider.c):
 *
 *   vercel_provider.c           the ops table, credentials, vercel_provider_new
 *   vercel_prov_sessions.c      which session a call goes to; after a 410
 *   vercel_prov_sandboxes.c     errors and objects; the control plane
 *   vercel_prov_snapshots.c     snapshots
 *   vercel_prov_exec.c          commands (the base64 wrapper)
 *   vercel_prov_files.c         fs/read, fs/write, fs/mkdir, bulk transfers
 *
 * Included by those files only.
 */
#ifndef DAYTONAFS_VERCEL_PROV_INT_H
#define DAYTONAFS_VERCEL_PROV_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "provider.h"
#include "vercel.h"

/* The newest session id seen for each sandbox (name): a session id the
 * mount holds may be one a resume elsewhere has replaced. */
struct session_seen {
	char name[SP_ID_SIZE];      /* the sandbox's name: its id */
	char sid[SP_ID_SIZE];
};

struct vprov {
	struct vc_client *vc;
	long wait_timeout_ms;       /* lifecycle waits (stop) */
	bool autostart;             /* a file access resumes a stopped sandbox */
	pthread_mutex_t lock;
	pthread_mutex_t resume_lock;    /* one autostart resume at a time */
	struct session_seen *seen;
	size_t n_seen, cap_seen;
};

/* ---- sessions (vercel_prov_sessions.c) ---- */

/* Notes sid as name's newest session (nothing when either is empty). */
void vp_session_note(struct vprov *v, const char *name, const char *sid);
/* The session a call for box goes to: the newest seen, else the box's. */
void vp_session_of(struct vprov *v, const struct sp_box *box, char *out, size_t cap);
/* Whether a session call that failed with rc should go once more, to the
 * session that replaced sid (then in sid): only after a 410, and once. */
bool vp_retry_moved(struct vprov *v, const struct sp_box *box, int rc, const struct vc_error *ve, char *sid,
		    size_t cap, int *attempts);
/* EHOSTDOWN: the box has no session id. */
int vp_no_session(struct sp_error *err, const struct sp_box *box);

/* ---- objects and the control plane (vercel_prov_sandboxes.c) ---- */

/* rc with ve's message in err (rc when >= 0). */
int vp_from_vc(struct sp_error *err, int rc, const struct vc_error *ve);
void vp_ms_to_ts(int64_t ms, struct timespec *ts);
/* GET the sandbox (resume: ?resume=true) and note its session. */
int vp_get_sandbox(struct vprov *v, const char *name, bool resume, struct vc_sandbox *vs, struct sp_error *err);
/* Polls until the sandbox's session has stopped (vs: its last answer,
 * cleared); out, when not NULL, gets the sandbox then. */
int vp_wait_stopped(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state, void *ctx,
		    struct sp_sandbox *out, struct sp_error *err);
/* After a resume: polls until the session runs (vs: the last answer). */
int vp_wait_running(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state, void *ctx,
		    struct sp_error *err);

int vp_sandbox_list(void *impl, struct sp_sandbox **out, size_t *n, struct sp_error *err);
int vp_sandbox_get(void *impl, const char *id_or_name, struct sp_sandbox *out, struct sp_error *err);
int vp_sandbox_toolbox_url(void *impl, const char *id, char *out, size_t cap, struct sp_error *err);
int vp_sandbox_create(void *impl, const struct sp_create_params *p, struct sp_sandbox *out, struct sp_error *err);
int vp_sandbox_action(void *impl, const char *id, enum sp_action action, sp_state_fn on_state, void *ctx,
		      struct sp_sandbox *out, struct sp_error *err);
int vp_sandbox_delete(void *impl, const char *id, sp_state_fn on_state, void *ctx, struct sp_error *err);
int vp_sandbox_get_labels(void *impl, const char *id, struct sp_kv **labels, size_t *n, struct sp_error *err);
int vp_sandbox_set_labels(void *impl, const char *id, const struct sp_kv *labels, size_t n, struct sp_sandbox *out,
			  struct sp_error *err);
int vp_ping(void *impl, struct sp_error *err);
int vp_sandbox_preview_url(void *impl, const char *id, int port, struct sp_preview *out,
			   struct sp_error *err);
int vp_sandbox_ports(void *impl, const char *id, int **ports, size_t *n, struct sp_error *err);
int vp_sandbox_extend(void *impl, const char *id, long minutes, struct sp_sandbox *out, struct sp_error *err);
int vp_work_dir(void *impl, const struct sp_box *box, char *out, size_t cap, struct sp_error *err);

/* ---- snapshots (vercel_prov_snapshots.c) ---- */

int vp_sandbox_snapshot(void *impl, const char *id, const char *name, sp_state_fn on_state, void *ctx,
			struct sp_error *err);
int vp_snapshot_list(void *impl, struct sp_snapshot **out, size_t *n, struct sp_error *err);
int vp_snapshot_get(void *impl, const char *id_or_name, struct sp_snapshot *out, struct sp_error *err);
int vp_snapshot_delete(void *impl, const char *id, struct sp_error *err);

/* ---- commands (vercel_prov_exec.c) ---- */

int vp_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd, const struct sp_kv *envs,
	    size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err);
int vp_exec_within(void *impl, const struct sp_box *box, const char *command, const char *cwd, long limit_s,
		   int *exit_code, char **output, struct sp_error *err);

/* ---- files (vercel_prov_files.c) ---- */

int64_t vp_fs_download(void *impl, const struct sp_box *box, const char *path, uint64_t off, uint64_t len,
		       http_sink_fn sink, void *ctx, struct sp_error *err);
int vp_fs_upload_fd(void *impl, const struct sp_box *box, const char *path, int fd, uint64_t len,
		    struct sp_error *err);
int vp_fs_mkdir(void *impl, const struct sp_box *box, const char *path, mode_t mode, struct sp_error *err);
int vp_fs_bulk_download(void *impl, const struct sp_box *box, struct sp_bulk_file *files, size_t n,
			struct sp_error *err);
int vp_fs_upload_many(void *impl, const struct sp_box *box, struct sp_upload_item *items, size_t n,
		      struct sp_error *err);
bool vp_upload_path_changed(const char *path);

#endif
