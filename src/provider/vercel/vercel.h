/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel.h - the Vercel Sandbox client: typed calls of the v2 API (named
 * sandboxes and sessions, plus POST /v3/sandboxes) as @vercel/sandbox 3.5.0
 * makes them, JSON with cJSON. Knows nothing of FUSE. Built to
 * /work/shared/vercel-api/CONTRACT.md; shaped as daytona.h (an error struct,
 * negative errnos, pure parsers) so both can sit under one provider interface.
 *
 *   vercel_api.c   credentials, errors, the request helper, rate limiter,
 *                  sandboxes, sessions, snapshots
 *   vercel_json.c  the response objects and request bodies (pure)
 *   vercel_cmd.c   commands and their NDJSON streams
 *   vercel_fs.c    fs/read, fs/write (a tar.gz, tar_gz.c), fs/mkdir
 *
 * Status to errno: 400 EINVAL, 401 EACCES, 402 EDQUOT, 403 EACCES,
 * 404 ENOENT, 408 ETIMEDOUT, 409 EEXIST, 410 EHOSTDOWN (session stopped;
 * ENOENT for snapshot_not_found), 422 EBUSY (sandbox_stopping,
 * sandbox_snapshotting), 429 EAGAIN (after http.c's retries, which honour
 * Retry-After), 5xx EIO. Transport errors pass through from http.h. The
 * server's error.code and error.message are kept in vc_error.
 *
 * Every call goes through the client's rate limiter (a token bucket, default
 * 1,000 requests a minute) and has a timeout. The token is never logged.
 */
#ifndef DAYTONAFS_VERCEL_H
#define DAYTONAFS_VERCEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "http.h"

#define VC_DEFAULT_BASE_URL "https://vercel.com/api"
#define VC_SDK_VERSION "3.5.0"      /* the SDK whose requests we mirror */
/* The sandbox's default user, as whom fs/write and commands without sudo
 * run: "ubuntu", uid and gid 1000, in image sandboxes (CONTRACT.md §8);
 * runtime sandboxes' "vercel-sandbox" is taken to be the same (its uid is
 * not documented; vercel-local gives it 1000). */
#define VC_DEFAULT_UID 1000
#define VC_DEFAULT_GID 1000
/* A sandbox's working directory when its object names none (the SDK's default). */
#define VC_DEFAULT_WORK_DIR "/vercel/sandbox"

struct vc_error {
	long http_status;          /* 0 when no response */
	int err;                   /* positive errno, 0 when none */
	char code[64];             /* the body's error.code, "" when none */
	char message[512];
};

/* The errno for a status (0 for 2xx) and the body's error.code (may be NULL). Pure. */
int vc_errno_for_status(long status, const char *code);
/* Sets err->err = -rc and formats err->message; returns rc. */
int vc_error_set(struct vc_error *err, int rc, long http_status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- credentials and client --------------------------------------------- */

struct vc_credentials {
	char token[8192];
	char team_id[128];
	char project_id[128];
};

/*
 * From the environment, as the contract recommends: VERCEL_OIDC_TOKEN (its
 * JWT payload gives owner_id = team and project_id), else all three of
 * VERCEL_TOKEN, VERCEL_TEAM_ID, VERCEL_PROJECT_ID. getenv_fn is getenv or a
 * test's stand-in. -ENOENT when neither is set, -EINVAL when incomplete or
 * the JWT is malformed (err says which).
 */
int vc_credentials_from_env(struct vc_credentials *out, const char *(*getenv_fn)(const char *),
			    struct vc_error *err);

struct vc_config {
	const char *base_url;      /* NULL: VC_DEFAULT_BASE_URL */
	const char *token;
	const char *team_id;       /* sent as teamId on every request */
	const char *project_id;    /* projectId/project, as the SDK sends them */
	int rate_per_minute;       /* 0: 1000 (the smallest plan); < 0: no limiter */
	int rate_burst;            /* 0: rate / 20 */
	long wait_timeout_ms;      /* GET cmd?wait=true and log streams; 0: 300000
				      (Vercel's edge cuts streams after ~5 min) */
	int max_pages;             /* list calls; 0: 1000 */
};

struct vc_client;

/* Takes a configured transport (not owned); adds the auth header to it. */
struct vc_client *vc_client_new(struct http_client *hc, const struct vc_config *cfg);
void vc_client_free(struct vc_client *vc);
struct http_client *vc_http(struct vc_client *vc);
/* How many ms the rate limiter has made calls wait, in all. */
uint64_t vc_rate_waited_ms(struct vc_client *vc);

struct vc_kv {
	const char *key;
	const char *value;
};

/* ---- objects (pure parsers, unit-tested) -------------------------------- */

struct cJSON;

struct vc_session {
	char id[128];
	char status[32];           /* pending running stopping stopped failed aborted snapshotting */
	char cwd[1024];
	char region[32];
	char source_snapshot_id[128];
	long vcpus, memory;        /* memory in MB */
	int64_t timeout_ms;
	int64_t created_at, started_at, updated_at, requested_stop_at, stopped_at; /* epoch ms, 0 when absent */
};

/* A route of a port the sandbox declared (SandboxRoute): its public URL.
 * The contract allows 15 ports; system routes (system: true) are not kept. */
#define VC_MAX_ROUTES 16
struct vc_route {
	int port;
	char url[256];
};

struct vc_sandbox {
	char name[130];
	char status[32];
	bool persistent;
	char current_session_id[128];
	char current_snapshot_id[128];
	char region[32];
	char cwd[1024];
	long vcpus, memory;
	int64_t timeout_ms;
	int64_t created_at, updated_at, expires_at;
	/* From SandboxAndSessionResponse (create, get, resume) only. */
	bool has_session;
	struct vc_session session;
	bool resumed;
	/* The routes of the response (create, get, resume): one per declared
	 * port. Routes that cannot be read (a URL that does not fit, more than
	 * VC_MAX_ROUTES, a malformed entry) leave routes_err set (a negative
	 * errno): NAME/ports then fails rather than show a declared port as
	 * absent, and the rest of the sandbox is read as usual. */
	struct vc_route routes[VC_MAX_ROUTES];
	size_t n_routes;
	int routes_err;
	char *json;                /* the response as returned, pretty-printed with a final newline; may be NULL */
};
void vc_sandbox_clear(struct vc_sandbox *sb);

struct vc_snapshot {
	char id[128];
	char source_session_id[128];
	char region[32];
	char status[16];           /* created deleted failed */
	char creation_method[16];
	uint64_t size_bytes;
	int64_t created_at, updated_at, expires_at, last_used_at;
	char *json;
};
void vc_snapshot_clear(struct vc_snapshot *s);

struct vc_command {
	char id[128];
	char name[256];
	char cwd[1024];
	char session_id[128];
	bool exited;               /* exitCode is a number */
	int exit_code;
	int64_t started_at, duration_ms;
};

/* -EINVAL when a required field (name/id, status...) is missing or mistyped. */
int vc_session_from_json(const struct cJSON *obj, struct vc_session *out);
int vc_sandbox_from_json(const struct cJSON *obj, struct vc_sandbox *out);
/* A response {sandbox, session?, routes?, resumed?} (json is set to it). */
int vc_sandbox_response_from_json(const struct cJSON *root, struct vc_sandbox *out);
/* The routes array of a response (NULL or null: none) into out[cap]; 0, or
 * -EINVAL (malformed), -E2BIG (more than cap), -ENAMETOOLONG (a URL too long). */
int vc_routes_from_json(const struct cJSON *routes, struct vc_route *out, size_t cap, size_t *n);
int vc_snapshot_from_json(const struct cJSON *obj, struct vc_snapshot *out);
int vc_command_from_json(const struct cJSON *obj, struct vc_command *out);

/* ---- control plane ------------------------------------------------------ */

struct vc_create_params {
	const char *name;          /* NULL: the server picks one */
	const char *runtime;       /* "node24"...: POST /v2/sandboxes; NULL: /v3 with image */
	const char *image;
	int vcpus;                 /* 0: default */
	long timeout_ms;           /* 0: default (5 min) */
	const int *ports;          size_t n_ports;
	const struct vc_kv *env;   size_t n_env;
	const struct vc_kv *tags;  size_t n_tags;
	int persistent;            /* -1: default (true), 0, 1 */
	const char *source_snapshot_id;
};
void vc_create_params_init(struct vc_create_params *p);
/* The create body (malloc'd), or NULL on out of memory. Pure: unit-tested. */
char *vc_create_body_json(const struct vc_create_params *p, const char *project_id);
int vc_sandbox_create(struct vc_client *vc, const struct vc_create_params *p, struct vc_sandbox *out,
		      struct vc_error *err);
/* GET /v2/sandboxes/{name}; resume starts a new session when the current one
 * is not running (out->resumed, out->session.id is the new id). */
int vc_sandbox_get(struct vc_client *vc, const char *name, bool resume, struct vc_sandbox *out,
		   struct vc_error *err);

struct vc_list_params {
	int page_size;             /* limit a page; 0: 50 */
	const char *name_prefix;   /* sandboxes only (sent with sortBy=name) */
	const char *sandbox_name;  /* snapshots only: of this sandbox */
};
/* Every item, following pagination.next; -ELOOP when the server repeats a
 * cursor, -E2BIG past cfg.max_pages pages. */
int vc_sandbox_list(struct vc_client *vc, const struct vc_list_params *lp, struct vc_sandbox **out,
		    size_t *n, struct vc_error *err);
void vc_sandbox_list_free(struct vc_sandbox *list, size_t n);

struct vc_update_params {
	int vcpus;                 /* 0: unchanged (memory sent as vcpus x 2048, as the SDK) */
	long timeout_ms;           /* 0: unchanged */
	int persistent;            /* -1: unchanged */
	const struct vc_kv *tags;  size_t n_tags; bool set_tags;
	const int *ports;          size_t n_ports; bool set_ports;
};
void vc_update_params_init(struct vc_update_params *p);
char *vc_update_body_json(const struct vc_update_params *p);
int vc_sandbox_update(struct vc_client *vc, const char *name, const struct vc_update_params *p,
		      struct vc_sandbox *out, struct vc_error *err);
int vc_sandbox_delete(struct vc_client *vc, const char *name, bool delete_orphan_snapshots,
		      struct vc_error *err);

/* POST …/sessions/{sid}/stop; out (may be NULL) gets the session. */
int vc_session_stop(struct vc_client *vc, const char *sid, struct vc_session *out, struct vc_error *err);
int vc_session_extend(struct vc_client *vc, const char *sid, long duration_ms, struct vc_session *out,
		      struct vc_error *err);

/* POST …/sessions/{sid}/snapshot (stops the session); expiration_ms < 0:
 * the server's default, 0: never. */
int vc_snapshot_create(struct vc_client *vc, const char *sid, long expiration_ms, struct vc_snapshot *out,
		       struct vc_error *err);
int vc_snapshot_get(struct vc_client *vc, const char *id, struct vc_snapshot *out, struct vc_error *err);
int vc_snapshot_list(struct vc_client *vc, const struct vc_list_params *lp, struct vc_snapshot **out,
		     size_t *n, struct vc_error *err);
void vc_snapshot_list_free(struct vc_snapshot *list, size_t n);
int vc_snapshot_delete(struct vc_client *vc, const char *id, struct vc_error *err);

/* ---- commands (vercel_cmd.c) -------------------------------------------- */

struct vc_cmd_params {
	const char *command;       /* a program, no shell */
	const char *const *args;   size_t n_args;
	const char *cwd;           /* NULL: the session's */
	const struct vc_kv *env;   size_t n_env;
	bool sudo;
	long timeout_ms;           /* 0: none; else >= 100, SIGKILL at expiry */
	bool wait;                 /* vc_cmd_run_wait: "wait":true and "logs":true */
};
/* The run body (malloc'd; detached: no wait). Pure: unit-tested. */
char *vc_cmd_body_json(const struct vc_cmd_params *p);
/* POST …/cmd, detached: out->id names the command. */
int vc_cmd_run(struct vc_client *vc, const char *sid, const struct vc_cmd_params *p, struct vc_command *out,
	       struct vc_error *err);
/* GET …/cmd/{id}[?wait=true]. A wait longer than cfg.wait_timeout_ms gives
 * -ETIMEDOUT: call again (the command keeps running). */
int vc_cmd_get(struct vc_client *vc, const char *sid, const char *cmd_id, bool wait, struct vc_command *out,
	       struct vc_error *err);
int vc_cmd_kill(struct vc_client *vc, const char *sid, const char *cmd_id, int signal, struct vc_command *out,
		struct vc_error *err);
/* Most recent first. */
int vc_cmd_list(struct vc_client *vc, const char *sid, struct vc_command **out, size_t *n, struct vc_error *err);

enum vc_stream { VC_STDOUT = 1, VC_STDERR = 2 };
/* Output of a command: data is the decoded UTF-8 text (may hold NUL bytes).
 * Return 0 to go on, a negative errno to stop. */
typedef int (*vc_log_fn)(void *ctx, enum vc_stream stream, const char *data, size_t len);
/* GET …/cmd/{id}/logs: replays the output from the start and follows it
 * until the command exits. An error line in the stream
 * ({"stream":"error"}) gives its errno (sandbox_stopped: EHOSTDOWN) with its
 * code and message in err. */
int vc_cmd_logs(struct vc_client *vc, const char *sid, const char *cmd_id, vc_log_fn fn, void *ctx,
		struct vc_error *err);
/* POST …/cmd with wait and logs: one request that streams the output to fn
 * and ends with the command's exit (out->exited, out->exit_code).
 * http_timeout_ms bounds the stream (0: cfg.wait_timeout_ms). Never sent
 * twice (the program could run twice): a stream cut before the exit line
 * gives -ECONNRESET. */
int vc_cmd_run_wait(struct vc_client *vc, const char *sid, const struct vc_cmd_params *p, long http_timeout_ms,
		    vc_log_fn fn, void *ctx, struct vc_command *out, struct vc_error *err);

/* NDJSON framing, pure: split on raw '\n' bytes (never inside a UTF-8
 * sequence), skip empty lines, hand each line to fn. Lines over max_line
 * bytes fail with -EFBIG. */
typedef int (*vc_line_fn)(void *ctx, const char *line, size_t len);
struct vc_ndjson {
	char *buf;
	size_t len, cap, max_line;
	vc_line_fn fn;
	void *ctx;
};
void vc_ndjson_init(struct vc_ndjson *p, size_t max_line, vc_line_fn fn, void *ctx);
int vc_ndjson_feed(struct vc_ndjson *p, const void *data, size_t len);
/* The last line, if it has no '\n'. */
int vc_ndjson_finish(struct vc_ndjson *p);
void vc_ndjson_free(struct vc_ndjson *p);

/* One line of a log stream to fn: a stdout/stderr line calls fn, an error
 * line returns its errno (err filled), a {"command"} line is skipped (out,
 * when not NULL, gets it). Pure: unit-tested. */
int vc_log_line(const char *line, size_t len, vc_log_fn fn, void *ctx, struct vc_command *cmd,
		struct vc_error *err);

/* ---- files (vercel_fs.c) ------------------------------------------------ */

/* POST …/fs/read: the whole file into sink. Returns the byte count; -ENOENT
 * for 404; -EIO when a 2xx is not application/octet-stream. */
int64_t vc_fs_read(struct vc_client *vc, const char *sid, const char *path, http_sink_fn sink, void *ctx,
		   struct vc_error *err);
/* POST …/fs/write of one file (create or replace; parents are created), len
 * bytes of fd from offset 0, as a tar.gz made while it is sent. path is
 * absolute; mode its permission bits. */
int vc_fs_write_fd(struct vc_client *vc, const char *sid, const char *path, int fd, uint64_t len,
		   mode_t mode, struct vc_error *err);
int vc_fs_write_mem(struct vc_client *vc, const char *sid, const char *path, const void *data, size_t len,
		    mode_t mode, struct vc_error *err);
/* POST …/fs/mkdir, recursive sent explicitly (its default is disputed). */
int vc_fs_mkdir(struct vc_client *vc, const char *sid, const char *path, bool recursive, struct vc_error *err);

/* The tar entry name for an absolute path, relative to x-cwd "/": "a/b" for
 * "/a//b/./"; -EINVAL for a relative path, "..", or "/" itself. Pure. */
int vc_fs_entry_name(const char *path, char *out, size_t cap);

#endif
