/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provider.h - the interface between the mount and a cloud that runs
 * sandboxes: a table of operations and the capability flags that say which
 * of the optional ones a provider has. Everything above src/provider (the
 * remote layer, the FUSE layer) talks to a provider through this header
 * only; a provider's own headers (daytona.h, vercel.h) stay in its folder.
 *
 * What every provider must give: the control plane's list and get, and
 * running a shell script in a sandbox with its exit status and exact output
 * (exec, exec_activity, exec_within); with those and a download and an
 * upload, src/remote builds POSIX files (the lstat listing through find,
 * changes by command, commands as files). The rest is optional, and a
 * provider leaves an operation NULL and its flag clear when it lacks it:
 * the native file calls (list, info, move, delete, mkdir, chmod), a ranged
 * download (else whole files), a streamed upload (else whole-file writes, as
 * Vercel's tar upload), snapshots, labels, resize, intervals. Calling an
 * operation the provider lacks fails with ENOSYS, never a crash.
 *
 * The data types (struct sp_error, sp_box, sp_sandbox, sp_fileinfo ...) are
 * the mount's vocabulary, shared by all providers; their dt_ prefix predates
 * the second provider, and they are filled by whichever provider answers.
 * Every operation returns 0 (or a count) or a negative errno with the
 * error's text in a struct sp_error a user can read.
 *
 * provider_open (provider.c) makes the provider a mount names; adding a
 * provider is a folder beside daytona/ with an ops table, and a line there.
 */
#ifndef DAYTONAFS_PROVIDER_H
#define DAYTONAFS_PROVIDER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "http.h"

/* ---- the vocabulary ------------------------------------------------------ */

struct sp_error {
	long http_status;          /* 0 when no response */
	int err;                   /* positive errno, 0 when none */
	char message[512];
};

/* Whether the failure in err may pass if the request is sent again: no
 * answer (reset, refused, timed out, unreachable), or a 5xx or 429 answer
 * (after http.c's own retries). Whether sending again is safe is the
 * caller's business. */
bool sp_error_transient(const struct sp_error *err);

/* Sets err->err = -rc and formats err->message; returns rc (a negative errno). */
int sp_error_set(struct sp_error *err, int rc, long http_status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

struct sp_kv {
	char *key;
	char *value;
};
void sp_kv_free(struct sp_kv *kv, size_t n);

/* The size of a sandbox id's buffer: Daytona's ids are UUIDs (36 bytes);
 * Vercel's are the sandbox names, up to 128 bytes ([a-zA-Z0-9_-], CONTRACT.md
 * section 1). An id is never cut (a cut one would address another sandbox),
 * so this bounds which sandboxes the mount can show. */
#define SP_ID_SIZE 129

struct sp_sandbox {
	char id[SP_ID_SIZE];
	char name[256];
	char state[32];             /* e.g. "started"; derived as the API derives it */
	char desired_state[32];
	char toolbox_url[512];      /* toolboxProxyUrl, e.g. "https://proxy.app.daytona.io/toolbox" */
	char error_reason[512];     /* "" when none */
	char user[64];
	char snapshot[256];
	char daemon_version[32];    /* daemonVersion, e.g. "v0.190.0"; "" when not given */
	bool name_exact;            /* name holds the whole name (false: cut to fit the buffer) */
	bool is_public;             /* "public": previews need no token */
	struct timespec created_at;
	struct timespec updated_at;
	char volume_paths[1024];    /* volumes[].mountPath, one per line ("/" when they do not fit) */
	bool volumes_known;         /* the object had "volumes" (list items do not) */
	char *json;                 /* the object as returned,
			pretty-printed with a final newline (malloc'd); may be NULL */
	char *env;                  /* its "env": "K=V\n" lines (malloc'd), NULL when none */
};
void sp_sandbox_clear(struct sp_sandbox *sb);   /* frees json, zeroes */
void sp_sandbox_list_free(struct sp_sandbox *list, size_t n);

/* Whether path is at or under one of volume_paths (as sp_sandbox has them).
 * The toolbox's move is not rename(2) there: when the rename fails (EXDEV
 * across the mount) it copies and deletes. Pure. */
bool sp_path_on_volume(const char *volume_paths, const char *path);

struct sp_create_params {
	const char *name;
	const char *snapshot;
	const char *image;          /* base image: sent as buildInfo.dockerfileContent "FROM <image>\n" */
	int cpu, memory, disk, gpu; /* -1 when unset */
	const char *language;       /* label code-toolbox-language; default "python" as the SDK */
	const char *target;         /* overrides sp_config.target */
	const char *user;
	const struct sp_kv *env;    size_t n_env;
	const struct sp_kv *labels; size_t n_labels;
	bool ephemeral;             /* autoDeleteInterval 0 */
	bool is_public;
	long autostop, autoarchive, autodelete;   /* minutes; LONG_MIN when unset */
	const struct sp_kv *volumes; size_t n_volumes;   /* key = volume id or name, value = mount path */
	bool network_block_all;     /* networkBlockAll */
	const char *network_allow_list;   /* networkAllowList: "CIDR[,CIDR...]", or NULL */
	/* Progress of the wait (both may be NULL): on_created once with the
	 * sandbox as the create request answered it, before the wait; on_state
	 * with each state seen while waiting. */
	void (*on_created)(void *ctx, const struct sp_sandbox *sb);
	void (*on_state)(void *ctx, const char *state);
	void *progress_ctx;
	const int *ports; size_t n_ports;   /* ports to expose (Vercel); Daytona refuses them */
};
void sp_create_params_init(struct sp_create_params *p);

enum sp_action { SP_START, SP_STOP, SP_ARCHIVE, SP_RECOVER };

/* Performs the action and waits for its end state as the SDK does (start and
 * recover: started; stop: stopped; archive: archived). on_state (may be NULL)
 * is called with each state seen while waiting, for the status file. */
typedef void (*sp_state_fn)(void *ctx, const char *state);

enum sp_interval { SP_AUTOSTOP, SP_AUTOARCHIVE, SP_AUTODELETE };

struct sp_snapshot {
	char id[SP_ID_SIZE];
	char name[256];
	char state[32];
	struct timespec created_at;
	struct timespec updated_at;
	char *json;                 /* pretty-printed with a final newline (malloc'd) */
};
void sp_snapshot_clear(struct sp_snapshot *s);
void sp_snapshot_list_free(struct sp_snapshot *list, size_t n);

/* Which sandbox a toolbox call goes to: its UUID (never the name) and its toolboxProxyUrl. */
struct sp_box {
	const char *id;
	const char *toolbox_url;
};

struct sp_fileinfo {
	char *name;                 /* malloc'd base name */
	uint64_t size;
	mode_t mode;                /* S_IFMT type from the Go mode string, plus the permission
				       bits with setuid/setgid/sticky from its letters */
	uid_t uid;
	gid_t gid;
	struct timespec mtime;      /* from modifiedAt (RFC 3339, ns), else modTime */
	bool is_dir;
};
void sp_fileinfo_free(struct sp_fileinfo *fi, size_t n);   /* frees names and the array */

/* A shared volume of the organization (Daytona's VolumeDto). */
struct sp_volume {
	char id[SP_ID_SIZE];
	char name[256];
	char state[32];             /* "ready", "pending_create", "pending_delete", ... */
	struct timespec updated_at;
	char *json;                 /* pretty-printed with a final newline (malloc'd) */
};
void sp_volume_clear(struct sp_volume *v);
void sp_volume_list_free(struct sp_volume *list, size_t n);

/* A port's preview address: the URL, and the token a private sandbox's
 * preview asks for ("" when none was given). */
struct sp_preview {
	char url[512];
	char token[1024];             /* a longer one is an error, never cut */
};

/* ---- the interface ------------------------------------------------------- */

/* Optional capabilities (a provider's caps); see the top of this file. */
enum {
	SP_CAP_FS_LIST       = 1u << 0,   /* fs_list: the native directory listing */
	SP_CAP_FS_INFO       = 1u << 1,   /* fs_info: stat of one path */
	SP_CAP_FS_MOVE       = 1u << 2,   /* fs_move: rename */
	SP_CAP_FS_DELETE     = 1u << 3,
	SP_CAP_FS_MKDIR      = 1u << 4,
	SP_CAP_FS_CHMOD      = 1u << 5,
	SP_CAP_RANGED_READ   = 1u << 6,   /* fs_download honours off and len */
	SP_CAP_STREAM_UPLOAD = 1u << 7,   /* fs_upload_fd streams one file (else whole-file writes) */
	SP_CAP_SNAPSHOTS     = 1u << 8,   /* sandbox_snapshot, snapshot_list/get/delete */
	SP_CAP_LABELS        = 1u << 9,   /* sandbox_set_labels, sandbox_get_labels */
	SP_CAP_RESIZE        = 1u << 10,
	SP_CAP_INTERVALS     = 1u << 11,  /* sandbox_set_interval: autostop, autoarchive, autodelete */
	SP_CAP_PREVIEW       = 1u << 12,  /* sandbox_preview_url (and sandbox_ports when set) */
	SP_CAP_VOLUMES       = 1u << 13,  /* volume_list, volume_create, volume_delete */
	SP_CAP_BUILD_LOG     = 1u << 14,  /* sandbox_build_log */
	SP_CAP_NOTE_CHANGE   = 1u << 15,  /* note_change: changes count as activity, piggy-backed */
	SP_CAP_BULK_DOWNLOAD = 1u << 16,  /* fs_bulk_download: many whole files in one request */
	SP_CAP_EXTEND        = 1u << 17,  /* sandbox_extend: more time for a running session (Vercel) */
	/* fs_upload_many writes each file in place (inode, mode, owner, links
	 * kept) even where upload_path_changed says a plain upload would not,
	 * and is the cheaper way for one file too (Vercel: one command). */
	SP_CAP_UPLOAD_IN_PLACE = 1u << 18,
	/* sp_sandbox.env is the sandbox's own env, set at create (Daytona's
	 * object has it). Without it (Vercel keeps the env in the sandbox's
	 * config but no response carries it), the mount records a create's
	 * env.K=V in the sandbox's env file (SEMANTICS.md, NAME/env). */
	SP_CAP_SANDBOX_ENV   = 1u << 19,
	/* Nothing that a script of exec left running is killed when the
	 * script returns, nor later by its timeout (Daytona: the timeout
	 * kills the shell's group only while the request runs). Without it
	 * the command launcher gives its wrapper a session of its own. */
	SP_CAP_EXEC_DETACHED = 1u << 20,
};

/* One file of a bulk download (fs_bulk_download). */
struct sp_bulk_file {
	const char *path;           /* in: absolute */
	size_t max;                 /* in: the largest content taken; a larger file gets -EFBIG */
	int err;                    /* out: 0, or this file's -errno (ENOENT, EACCES, EINVAL ...) */
	char *data;                 /* out: its whole content, malloc'd (NULL when empty or failed) */
	size_t len;
};
/* Frees the data of n files (and sets it to NULL). */
void sp_bulk_files_clear(struct sp_bulk_file *files, size_t n);

/* Each operation takes the provider's impl first, then what the matching
 * dt_ call of the Daytona client takes (daytona.h documents them). */
/* One file of an upload of several (fs_upload_many). */
struct sp_upload_item {
	const char *path;
	int fd;                 /* read with pread from offset 0 */
	uint64_t len;
	int rc;                 /* out: 0 when it landed whole under path */
	char msg[256];          /* out: why not */
};

struct sandbox_provider_ops {
	/* control plane */
	int (*sandbox_list)(void *impl, struct sp_sandbox **out, size_t *n, struct sp_error *err);
	int (*sandbox_get)(void *impl, const char *id_or_name, struct sp_sandbox *out, struct sp_error *err);
	int (*sandbox_toolbox_url)(void *impl, const char *id, char *out, size_t cap, struct sp_error *err);
	int (*sandbox_create)(void *impl, const struct sp_create_params *p, struct sp_sandbox *out,
			struct sp_error *err);
	int (*sandbox_action)(void *impl, const char *id, enum sp_action action, sp_state_fn on_state,
			void *ctx, struct sp_sandbox *out, struct sp_error *err);
	int (*sandbox_delete)(void *impl, const char *id, sp_state_fn on_state, void *ctx,
			struct sp_error *err);
	int (*sandbox_resize)(void *impl, const char *id, int cpu, int memory, int disk,
			struct sp_sandbox *out, struct sp_error *err);
	int (*sandbox_set_labels)(void *impl, const char *id, const struct sp_kv *labels, size_t n,
			struct sp_sandbox *out, struct sp_error *err);
	int (*sandbox_get_labels)(void *impl, const char *id, struct sp_kv **labels, size_t *n,
			struct sp_error *err);
	int (*sandbox_set_interval)(void *impl, const char *id, enum sp_interval which, long minutes,
			struct sp_sandbox *out, struct sp_error *err);
	int (*sandbox_snapshot)(void *impl, const char *id, const char *name, sp_state_fn on_state,
			void *ctx, struct sp_error *err);
	int (*snapshot_list)(void *impl, struct sp_snapshot **out, size_t *n, struct sp_error *err);
	int (*snapshot_get)(void *impl, const char *id_or_name, struct sp_snapshot *out,
			struct sp_error *err);
	int (*snapshot_delete)(void *impl, const char *id, struct sp_error *err);
	int (*ping)(void *impl, struct sp_error *err);
	/* More minutes for the running session of a sandbox whose sessions
	 * stop at a timeout (Vercel's extend-timeout); out may be NULL. */
	int (*sandbox_extend)(void *impl, const char *id, long minutes, struct sp_sandbox *out,
			struct sp_error *err);
	/* commands */
	int (*exec)(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err);
	int (*exec_activity)(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err);
	int (*exec_within)(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			long limit_s, int *exit_code, char **output, struct sp_error *err);
	int (*work_dir)(void *impl, const struct sp_box *box, char *out, size_t cap, struct sp_error *err);
	/* files */
	int64_t (*fs_download)(void *impl, const struct sp_box *box, const char *path, uint64_t off,
			uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err);
	int (*fs_upload_fd)(void *impl, const struct sp_box *box, const char *path, int fd, uint64_t len,
			struct sp_error *err);
	/* Several files in one request (optional; NULL: one fs_upload_fd each).
	 * 0 when the request was answered: each item's rc (0 or a negative
	 * errno, its message in msg) says what became of it. A negative errno
	 * (err filled) when the request failed as a whole: then none is known
	 * to have landed. */
	int (*fs_upload_many)(void *impl, const struct sp_box *box, struct sp_upload_item *items, size_t n,
			struct sp_error *err);
	int (*fs_list)(void *impl, const struct sp_box *box, const char *path, struct sp_fileinfo **out,
			size_t *n, struct sp_error *err);
	int (*fs_info)(void *impl, const struct sp_box *box, const char *path, struct sp_fileinfo *out,
			struct sp_error *err);
	int (*fs_move)(void *impl, const struct sp_box *box, const char *src, const char *dst,
			struct sp_error *err);
	int (*fs_delete)(void *impl, const struct sp_box *box, const char *path, bool recursive,
			struct sp_error *err);
	int (*fs_mkdir)(void *impl, const struct sp_box *box, const char *path, mode_t mode,
			struct sp_error *err);
	int (*fs_chmod)(void *impl, const struct sp_box *box, const char *path, mode_t mode,
			struct sp_error *err);
	/* The sandbox's surface (optional). A port's preview address;
	 * -ENOENT when the port has none (a provider with sandbox_ports). */
	int (*sandbox_preview_url)(void *impl, const char *id, int port, struct sp_preview *out,
			struct sp_error *err);
	/* The ports that have a preview address, when only some have (Vercel:
	 * the ports declared at create, each with a public route), in the
	 * provider's order; *ports malloc'd (NULL when none). NULL op: every
	 * port has one (Daytona), and the mount lists the listening ports. */
	int (*sandbox_ports)(void *impl, const char *id, int **ports, size_t *n, struct sp_error *err);
	int (*volume_list)(void *impl, struct sp_volume **out, size_t *n, struct sp_error *err);
	/* Returns once the volume is ready (a sandbox created with it before
	 * would be refused), within the provider's wait_timeout: -EIO when it
	 * ends in error, -ETIMEDOUT, or the error of a look at it. */
	int (*volume_create)(void *impl, const char *name, struct sp_volume *out, struct sp_error *err);
	int (*volume_delete)(void *impl, const char *id, struct sp_error *err);
	/* The build log of a sandbox made from an image, to sink as it comes;
	 * with follow, until the build ends (or the request's limit). */
	/* follow: the sink also gets (NULL, 0) about once a second, so that
	 * it can end a quiet stream with a negative errno. */
	int (*sandbox_build_log)(void *impl, const char *id, bool follow, http_sink_fn sink, void *ctx,
			struct sp_error *err);
	/* The mount changed something in sandbox id: let the provider count it
	 * as the sandbox's activity, at most once per period and with no request
	 * of its own when it can (Daytona: the next toolbox request to the
	 * sandbox goes without the skip-activity header). No I/O. */
	void (*note_change)(void *impl, const char *id);
	/* Many whole files in one request (SP_CAP_BULK_DOWNLOAD). 0 when the
	 * answer was complete, each file with its err and data; or a negative
	 * errno when the request failed as a whole (-EOPNOTSUPP: the sandbox
	 * has no such call), and then no file holds data. */
	int (*fs_bulk_download)(void *impl, const struct sp_box *box, struct sp_bulk_file *files, size_t n,
			struct sp_error *err);
	/* Whether an upload would store path under another name (Daytona's
	 * daemon trims white space from it): the caller then uploads under a
	 * temporary name and renames. NULL: never. */
	bool (*upload_path_changed)(const char *path);
	void (*free)(void *impl);
};

struct sandbox_provider {
	const char *name;                       /* "daytona" */
	unsigned caps;                          /* SP_CAP_* */
	/* The owner a file the mount makes gets in the sandbox (its uploads
	 * and commands write as that user), when the provider knows it: a new
	 * file shows it from its create on, as a listing will. false: the
	 * mounting user's (Daytona's toolbox writes as the sandbox's root,
	 * and the mount shows its own user until a listing says otherwise). */
	bool files_owner_known;
	uid_t files_uid;
	gid_t files_gid;
	/* The sandbox's work directory when it cannot be asked (not running):
	 * its image's default ("/home/daytona", "/vercel/sandbox"). */
	const char *default_work_dir;
	const struct sandbox_provider_ops *ops;
	void *impl;                             /* the provider's client */
};

/* What the mount knows of its provider's endpoint and credentials. */
struct provider_config {
	const char *api_url;
	const char *api_key;        /* or NULL when jwt is used */
	const char *jwt;            /* requires org_id */
	const char *org_id;
	const char *target;         /* default region for create, or NULL */
	bool keepalive;             /* false: the mount's own calls do not count as activity */
	long wait_timeout_ms;       /* lifecycle waits; 0 = none */
	/* -o autostart: a file access may start the sandbox. Vercel: a call
	 * that finds its session stopped (410) resumes the sandbox and goes
	 * once more, to the new session. */
	bool autostart;
	/* Vercel: api_key is the access token, org_id the team id, jwt an
	 * OIDC token (which names team and project itself). */
	const char *project_id;
	int rate_per_minute;        /* the provider's request quota; 0: its default; < 0: none */
};

/* The provider called name over the transport hc (not owned), or NULL when
 * there is none by that name or out of memory. */
struct sandbox_provider *provider_open(const char *name, struct http_client *hc,
		const struct provider_config *cfg);
/* provider_open, with why not in errbuf (unknown name, incomplete
 * credentials, out of memory). */
struct sandbox_provider *provider_open_err(const char *name, struct http_client *hc,
		const struct provider_config *cfg, char *errbuf, size_t errlen);
void provider_close(struct sandbox_provider *sp);

/* The failure of an operation the provider does not have: -ENOSYS. */
int sp_unsupported(struct sp_error *err, const char *what);

static inline bool sp_has(const struct sandbox_provider *sp, unsigned cap)
{
	return (sp->caps & cap) == cap;
}

static inline bool sp_upload_path_changed(const struct sandbox_provider *sp, const char *path)
{
	return sp->ops->upload_path_changed && sp->ops->upload_path_changed(path);
}

static inline int sp_sandbox_list(struct sandbox_provider *sp, struct sp_sandbox **out, size_t *n,
		struct sp_error *err)
{
	if (!sp->ops->sandbox_list)
		return sp_unsupported(err, "sandbox list");
	return sp->ops->sandbox_list(sp->impl, out, n, err);
}

static inline int sp_sandbox_get(struct sandbox_provider *sp, const char *id_or_name,
		struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_get)
		return sp_unsupported(err, "sandbox get");
	return sp->ops->sandbox_get(sp->impl, id_or_name, out, err);
}

static inline int sp_sandbox_toolbox_url(struct sandbox_provider *sp, const char *id, char *out,
		size_t cap, struct sp_error *err)
{
	if (!sp->ops->sandbox_toolbox_url)
		return sp_unsupported(err, "sandbox toolbox url");
	return sp->ops->sandbox_toolbox_url(sp->impl, id, out, cap, err);
}

static inline int sp_sandbox_create(struct sandbox_provider *sp, const struct sp_create_params *p,
		struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_create)
		return sp_unsupported(err, "sandbox create");
	return sp->ops->sandbox_create(sp->impl, p, out, err);
}

static inline int sp_sandbox_action(struct sandbox_provider *sp, const char *id,
		enum sp_action action, sp_state_fn on_state, void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_action)
		return sp_unsupported(err, "sandbox action");
	return sp->ops->sandbox_action(sp->impl, id, action, on_state, ctx, out, err);
}

static inline int sp_sandbox_delete(struct sandbox_provider *sp, const char *id,
		sp_state_fn on_state, void *ctx, struct sp_error *err)
{
	if (!sp->ops->sandbox_delete)
		return sp_unsupported(err, "sandbox delete");
	return sp->ops->sandbox_delete(sp->impl, id, on_state, ctx, err);
}

static inline int sp_sandbox_resize(struct sandbox_provider *sp, const char *id, int cpu,
		int memory, int disk, struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_resize)
		return sp_unsupported(err, "sandbox resize");
	return sp->ops->sandbox_resize(sp->impl, id, cpu, memory, disk, out, err);
}

static inline int sp_sandbox_set_labels(struct sandbox_provider *sp, const char *id,
		const struct sp_kv *labels, size_t n, struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_set_labels)
		return sp_unsupported(err, "sandbox set labels");
	return sp->ops->sandbox_set_labels(sp->impl, id, labels, n, out, err);
}

static inline int sp_sandbox_get_labels(struct sandbox_provider *sp, const char *id,
		struct sp_kv **labels, size_t *n, struct sp_error *err)
{
	if (!sp->ops->sandbox_get_labels)
		return sp_unsupported(err, "sandbox get labels");
	return sp->ops->sandbox_get_labels(sp->impl, id, labels, n, err);
}

static inline int sp_sandbox_set_interval(struct sandbox_provider *sp, const char *id,
		enum sp_interval which, long minutes, struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_set_interval)
		return sp_unsupported(err, "sandbox set interval");
	return sp->ops->sandbox_set_interval(sp->impl, id, which, minutes, out, err);
}

static inline int sp_sandbox_snapshot(struct sandbox_provider *sp, const char *id,
		const char *name, sp_state_fn on_state, void *ctx, struct sp_error *err)
{
	if (!sp->ops->sandbox_snapshot)
		return sp_unsupported(err, "sandbox snapshot");
	return sp->ops->sandbox_snapshot(sp->impl, id, name, on_state, ctx, err);
}

static inline int sp_snapshot_list(struct sandbox_provider *sp, struct sp_snapshot **out,
		size_t *n, struct sp_error *err)
{
	if (!sp->ops->snapshot_list)
		return sp_unsupported(err, "snapshot list");
	return sp->ops->snapshot_list(sp->impl, out, n, err);
}

static inline int sp_snapshot_get(struct sandbox_provider *sp, const char *id_or_name,
		struct sp_snapshot *out, struct sp_error *err)
{
	if (!sp->ops->snapshot_get)
		return sp_unsupported(err, "snapshot get");
	return sp->ops->snapshot_get(sp->impl, id_or_name, out, err);
}

static inline int sp_snapshot_delete(struct sandbox_provider *sp, const char *id, struct sp_error *err)
{
	if (!sp->ops->snapshot_delete)
		return sp_unsupported(err, "snapshot delete");
	return sp->ops->snapshot_delete(sp->impl, id, err);
}

static inline int sp_ping(struct sandbox_provider *sp, struct sp_error *err)
{
	if (!sp->ops->ping)
		return sp_unsupported(err, "ping");
	return sp->ops->ping(sp->impl, err);
}

static inline int sp_sandbox_extend(struct sandbox_provider *sp, const char *id, long minutes,
		struct sp_sandbox *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_extend)
		return sp_unsupported(err, "sandbox extend");
	return sp->ops->sandbox_extend(sp->impl, id, minutes, out, err);
}

static inline int sp_exec(struct sandbox_provider *sp, const struct sp_box *box,
		const char *command, const char *cwd, const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err)
{
	if (!sp->ops->exec)
		return sp_unsupported(err, "exec");
	return sp->ops->exec(sp->impl, box, command, cwd, envs, n_envs, timeout_s, exit_code, output, err);
}

static inline int sp_exec_activity(struct sandbox_provider *sp, const struct sp_box *box,
		const char *command, const char *cwd, const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err)
{
	if (!sp->ops->exec_activity)
		return sp_unsupported(err, "exec activity");
	return sp->ops->exec_activity(sp->impl, box, command, cwd, envs, n_envs, timeout_s, exit_code,
			output, err);
}

static inline int sp_exec_within(struct sandbox_provider *sp, const struct sp_box *box,
		const char *command, const char *cwd, long limit_s, int *exit_code, char **output, struct sp_error *err)
{
	if (!sp->ops->exec_within)
		return sp_unsupported(err, "exec within");
	return sp->ops->exec_within(sp->impl, box, command, cwd, limit_s, exit_code, output, err);
}

static inline int sp_work_dir(struct sandbox_provider *sp, const struct sp_box *box, char *out,
		size_t cap, struct sp_error *err)
{
	if (!sp->ops->work_dir)
		return sp_unsupported(err, "work dir");
	return sp->ops->work_dir(sp->impl, box, out, cap, err);
}

static inline int64_t sp_fs_download(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, uint64_t off, uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err)
{
	if (!sp->ops->fs_download)
		return sp_unsupported(err, "fs download");
	return sp->ops->fs_download(sp->impl, box, path, off, len, sink, ctx, err);
}

static inline int sp_fs_bulk_download(struct sandbox_provider *sp, const struct sp_box *box,
		struct sp_bulk_file *files, size_t n, struct sp_error *err)
{
	if (!sp->ops->fs_bulk_download)
		return sp_unsupported(err, "fs bulk download");
	return sp->ops->fs_bulk_download(sp->impl, box, files, n, err);
}

static inline int sp_fs_upload_fd(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, int fd, uint64_t len, struct sp_error *err)
{
	if (!sp->ops->fs_upload_fd)
		return sp_unsupported(err, "fs upload fd");
	return sp->ops->fs_upload_fd(sp->impl, box, path, fd, len, err);
}

/* Uploads n files to one sandbox: in one request where the provider can,
 * else one at a time. Returns 0 when each item's rc tells its fate, else a
 * negative errno for all of them (err filled). */
int sp_fs_upload_many(struct sandbox_provider *sp, const struct sp_box *box, struct sp_upload_item *items,
		      size_t n, struct sp_error *err);

static inline int sp_fs_list(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, struct sp_fileinfo **out, size_t *n, struct sp_error *err)
{
	if (!sp->ops->fs_list)
		return sp_unsupported(err, "fs list");
	return sp->ops->fs_list(sp->impl, box, path, out, n, err);
}

static inline int sp_fs_info(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, struct sp_fileinfo *out, struct sp_error *err)
{
	if (!sp->ops->fs_info)
		return sp_unsupported(err, "fs info");
	return sp->ops->fs_info(sp->impl, box, path, out, err);
}

static inline int sp_fs_move(struct sandbox_provider *sp, const struct sp_box *box,
		const char *src, const char *dst, struct sp_error *err)
{
	if (!sp->ops->fs_move)
		return sp_unsupported(err, "fs move");
	return sp->ops->fs_move(sp->impl, box, src, dst, err);
}

static inline int sp_fs_delete(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, bool recursive, struct sp_error *err)
{
	if (!sp->ops->fs_delete)
		return sp_unsupported(err, "fs delete");
	return sp->ops->fs_delete(sp->impl, box, path, recursive, err);
}

static inline int sp_fs_mkdir(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, mode_t mode, struct sp_error *err)
{
	if (!sp->ops->fs_mkdir)
		return sp_unsupported(err, "fs mkdir");
	return sp->ops->fs_mkdir(sp->impl, box, path, mode, err);
}

static inline int sp_fs_chmod(struct sandbox_provider *sp, const struct sp_box *box,
		const char *path, mode_t mode, struct sp_error *err)
{
	if (!sp->ops->fs_chmod)
		return sp_unsupported(err, "fs chmod");
	return sp->ops->fs_chmod(sp->impl, box, path, mode, err);
}

static inline int sp_sandbox_preview_url(struct sandbox_provider *sp, const char *id, int port,
		struct sp_preview *out, struct sp_error *err)
{
	if (!sp->ops->sandbox_preview_url)
		return sp_unsupported(err, "preview url");
	return sp->ops->sandbox_preview_url(sp->impl, id, port, out, err);
}

/* Whether only the ports sp_sandbox_ports lists have a preview address. */
static inline bool sp_ports_declared(const struct sandbox_provider *sp)
{
	return sp->ops->sandbox_ports != NULL;
}

static inline int sp_sandbox_ports(struct sandbox_provider *sp, const char *id, int **ports, size_t *n,
		struct sp_error *err)
{
	*ports = NULL;
	*n = 0;
	if (!sp->ops->sandbox_ports)
		return sp_unsupported(err, "declared ports");
	return sp->ops->sandbox_ports(sp->impl, id, ports, n, err);
}

static inline int sp_volume_list(struct sandbox_provider *sp, struct sp_volume **out, size_t *n,
		struct sp_error *err)
{
	if (!sp->ops->volume_list)
		return sp_unsupported(err, "volume list");
	return sp->ops->volume_list(sp->impl, out, n, err);
}

static inline int sp_volume_create(struct sandbox_provider *sp, const char *name,
		struct sp_volume *out, struct sp_error *err)
{
	if (!sp->ops->volume_create)
		return sp_unsupported(err, "volume create");
	return sp->ops->volume_create(sp->impl, name, out, err);
}

static inline int sp_volume_delete(struct sandbox_provider *sp, const char *id, struct sp_error *err)
{
	if (!sp->ops->volume_delete)
		return sp_unsupported(err, "volume delete");
	return sp->ops->volume_delete(sp->impl, id, err);
}

static inline int sp_sandbox_build_log(struct sandbox_provider *sp, const char *id, bool follow,
		http_sink_fn sink, void *ctx, struct sp_error *err)
{
	if (!sp->ops->sandbox_build_log)
		return sp_unsupported(err, "build log");
	return sp->ops->sandbox_build_log(sp->impl, id, follow, sink, ctx, err);
}

static inline void sp_note_change(struct sandbox_provider *sp, const char *id)
{
	if (sp->ops->note_change)
		sp->ops->note_change(sp->impl, id);
}

#endif
