/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona.h - the Daytona client: typed calls for the control plane (/api)
 * and the toolbox ({toolboxProxyUrl}/{id}/...), JSON in and out with cJSON.
 * Knows nothing of FUSE. Built to ../shared/daytona-api/CONTRACT.md.
 *
 * Every call returns 0 (or a count) on success and a negative errno on
 * failure, and fills a struct sp_error with the HTTP status and a message a
 * user can read: the server's own "message" when the body has one, else a
 * sentence made from the status (the toolbox's file calls answer errors with
 * empty bodies).
 *
 * Status to errno, control plane: 400 EINVAL, 401 EACCES, 403 EACCES,
 * 404 ENOENT, 409 EBUSY (EEXIST when the message says it already exists),
 * 408 ETIMEDOUT, 422 EOPNOTSUPP, 429 EAGAIN, 5xx EIO.
 * Toolbox: 400 EINVAL, except a 400 whose JSON message says the sandbox is not
 * running ("Is the Sandbox started?", "failed to get runner info") which is
 * EHOSTDOWN; 401 EACCES (an unknown sandbox also gives 401: callers that care
 * ask the control plane); 403 EACCES; 404 ENOENT; 409 EEXIST; 408 ETIMEDOUT;
 * 410 EPIPE; 429 EAGAIN; 5xx EIO. Transport errors pass through from http.h.
 */
#ifndef DAYTONAFS_DAYTONA_H
#define DAYTONAFS_DAYTONA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "http.h"
#include "provider.h"

#define DT_SDK_VERSION "0.190.0"   /* sent as X-Daytona-SDK-Version: fixes toolbox output formats */


/* The errno for an HTTP status as described above (0 for 2xx); body (may be
 * NULL) is the response body, whose JSON "message" refines 400, 401, 404 and
 * 409. Pure. */
int dt_errno_for_status(long status, bool toolbox, const char *body);

/* A toolbox answer given by the proxy or runner in place of the sandbox
 * (the request never reached it): a 404 "sandbox container not found"
 * (EHOSTDOWN once it persists) or a 401 that is a throttled token check
 * (EAGAIN). Every toolbox call re-sends these with backoff for up to
 * wait_timeout. Pure. */
enum dt_refusal { DT_REFUSED_NOT, DT_REFUSED_NO_CONTAINER, DT_REFUSED_THROTTLED };
enum dt_refusal dt_toolbox_refusal(long status, const char *body);



struct sp_config {
	const char *api_url;        /* e.g. "https://app.daytona.io/api", no trailing slash needed */
	const char *api_key;        /* Bearer API key, or NULL when jwt is used */
	const char *jwt;            /* Bearer JWT; requires org_id */
	const char *org_id;         /* sent as X-Daytona-Organization-ID with a JWT only */
	const char *target;         /* default region for create, or NULL */
	bool keepalive;             /* false: toolbox calls send X-Daytona-Skip-Last-Activity-Update: true */
	long wait_timeout_ms;       /* lifecycle waits; default 60000; 0 = none */
};

struct dt_client;

/* Takes a configured transport (not owned). Adds the auth and SDK headers to it. */
struct dt_client *dt_client_new(struct http_client *hc, const struct sp_config *cfg);
void dt_client_free(struct dt_client *dt);
struct http_client *dt_http(struct dt_client *dt);
/* The client as a sandbox_provider (daytona_provider.c), for provider_open. */
struct sandbox_provider *daytona_provider_new(struct http_client *hc, const struct provider_config *cfg);


/* ---- sandboxes --------------------------------------------------------- */

struct cJSON;
/* A Sandbox JSON object to sp_sandbox (json pretty-printed with a final
 * newline). -EINVAL without a string "id", or with an id that would not go
 * into URLs unchanged (too long for the buffer, a '/', a control byte, "."
 * or ".."); -ENOMEM. Pure: unit-tested. */
int dt_sandbox_from_json(const struct cJSON *obj, struct sp_sandbox *out);
/* cJSON turns a \u0000 escape into a NUL that ends the C string, so a name
 * "a\u0000b" would read as "a". Rewrites each such escape in a JSON text to
 * \u0001 (in place, same length): the name then keeps its length and shows
 * that it holds a control byte. Pure: unit-tested. */
void dt_json_mark_nul_escapes(char *text, size_t len);


/* Every sandbox, following nextCursor across pages (limit 200 a page). */
/* Whether a daemon of this version runs /process/execute's command through a
 * shell: v0.156.0 and later. Before that it split the text on spaces and ran
 * the first word. An empty or unreadable version counts as new. Pure. */
bool dt_daemon_runs_shell(const char *version);

/* Every sandbox, following nextCursor across pages (limit 200 a page), in
 * creation order (sort=createdAt&order=asc: stable under activity). Fails
 * with EIO when the server repeats any cursor it gave before, or sends more
 * than DT_LIST_MAX_PAGES pages or DT_LIST_MAX_ITEMS items. */
#define DT_LIST_MAX_PAGES 1000
#define DT_LIST_MAX_ITEMS 100000
int dt_sandbox_list(struct dt_client *dt, struct sp_sandbox **out, size_t *n, struct sp_error *err);
int dt_sandbox_get(struct dt_client *dt, const char *id_or_name, struct sp_sandbox *out, struct sp_error *err);
/* GET /sandbox/{id}/toolbox-proxy-url ({"url": ...}): the toolbox address
 * when the Sandbox object has none (newer APIs may leave it empty). */
int dt_sandbox_toolbox_url(struct dt_client *dt, const char *id, char *out, size_t cap, struct sp_error *err);

/* The CreateSandbox JSON body (malloc'd), or NULL on out of memory. Pure: unit-tested. */
char *dt_create_body_json(const struct sp_create_params *p, const char *default_target);
/* POST /sandbox, then waits until started (or wait timeout). */
int dt_sandbox_create(struct dt_client *dt, const struct sp_create_params *p, struct sp_sandbox *out,
		      struct sp_error *err);

/* Performs the action and waits for its end state as the SDK does (start and
 * recover: started; stop: stopped; archive: archived). on_state (may be NULL)
 * is called with each state seen while waiting, for the status file. */
int dt_sandbox_action(struct dt_client *dt, const char *id, enum sp_action action,
		      sp_state_fn on_state, void *ctx, struct sp_sandbox *out, struct sp_error *err);
/* DELETE, then waits until GET answers 404. */
int dt_sandbox_delete(struct dt_client *dt, const char *id, sp_state_fn on_state, void *ctx,
		      struct sp_error *err);
/* -1 for a value that is not changed. Waits until the state leaves "resizing". */
int dt_sandbox_resize(struct dt_client *dt, const char *id, int cpu, int memory, int disk,
		      struct sp_sandbox *out, struct sp_error *err);
/* PUT labels: replaces all labels with these. */
int dt_sandbox_set_labels(struct dt_client *dt, const char *id, const struct sp_kv *labels, size_t n,
			  struct sp_sandbox *out, struct sp_error *err);
/* The sandbox's current labels (from GET). */
int dt_sandbox_get_labels(struct dt_client *dt, const char *id, struct sp_kv **labels, size_t *n,
			  struct sp_error *err);
int dt_sandbox_set_interval(struct dt_client *dt, const char *id, enum sp_interval which, long minutes,
			    struct sp_sandbox *out, struct sp_error *err);
/* POST /sandbox/{id}/snapshot, waits until the state leaves "snapshotting",
 * then checks GET /snapshots/{name} (a duplicate name fails silently server-side). */
int dt_sandbox_snapshot(struct dt_client *dt, const char *id, const char *name, sp_state_fn on_state,
			void *ctx, struct sp_error *err);

/* ---- snapshots ---------------------------------------------------------- */

int dt_snapshot_list(struct dt_client *dt, struct sp_snapshot **out, size_t *n, struct sp_error *err);
int dt_snapshot_get(struct dt_client *dt, const char *id_or_name, struct sp_snapshot *out, struct sp_error *err);
int dt_snapshot_delete(struct dt_client *dt, const char *id, struct sp_error *err);

/* The sandbox's surface (daytona_surface.c): GET /sandbox/{id}/ports/{port}/preview-url;
 * GET/POST/DELETE /volumes (a volume in use: EBUSY; a taken name: EEXIST);
 * GET /sandbox/{id}/build-logs[?follow=true] to sink; and dt_note_change,
 * which lets the sandbox's next toolbox request count as activity. */
int dt_sandbox_preview_url(struct dt_client *dt, const char *id, int port, struct sp_preview *out,
			   struct sp_error *err);
int dt_volume_list(struct dt_client *dt, struct sp_volume **out, size_t *n, struct sp_error *err);
int dt_volume_create(struct dt_client *dt, const char *name, struct sp_volume *out, struct sp_error *err);
int dt_volume_delete(struct dt_client *dt, const char *id, struct sp_error *err);
int dt_sandbox_build_log(struct dt_client *dt, const char *id, bool follow, http_sink_fn sink, void *ctx,
			 struct sp_error *err);
void dt_note_change(struct dt_client *dt, const char *id);

/* ---- toolbox ------------------------------------------------------------ */

/* Pure parsers, unit-tested: a FileInfo JSON object to sp_fileinfo; a Go
 * FileMode string ("drwxr-xr-x", "-rw-r--r--", "dtrwxrwxrwx", "Lrwx...") to mode_t;
 * an RFC 3339 time with optional fraction and zone to a timespec. */
struct cJSON;
int dt_fileinfo_from_json(const struct cJSON *obj, struct sp_fileinfo *out);
int dt_parse_go_mode(const char *s, mode_t *out);
int dt_parse_rfc3339(const char *s, struct timespec *out);

/* GET /files?path= : one request for the whole directory. */
int dt_fs_list(struct dt_client *dt, const struct sp_box *box, const char *path,
	       struct sp_fileinfo **out, size_t *n, struct sp_error *err);
int dt_fs_info(struct dt_client *dt, const struct sp_box *box, const char *path,
	       struct sp_fileinfo *out, struct sp_error *err);
/* GET /files/download with Range: bytes=off-(off+len-1) (len 0: to the end).
 * The body goes to sink. A 416 (offset at or past the end) is success with 0
 * bytes. Returns the number of bytes delivered, or a negative errno. A 200
 * (server ignored Range) is handled by skipping to off. */
int64_t dt_fs_download(struct dt_client *dt, const struct sp_box *box, const char *path,
		       uint64_t off, uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err);
/* POST /files/bulk-download: the whole content of each file, in one
 * request (daytona_bulk.c; the contract of sandbox_provider_ops.fs_bulk_download). */
int dt_fs_bulk_download(struct dt_client *dt, const struct sp_box *box, struct sp_bulk_file *files, size_t n,
			struct sp_error *err);
/* Uploads (replaces) the whole file from fd (len bytes from offset 0) through
 * POST /files/bulk-upload, streaming; parents are created by the server. */
int dt_fs_upload_fd(struct dt_client *dt, const struct sp_box *box, const char *path, int fd,
		    uint64_t len, struct sp_error *err);
int dt_fs_upload_mem(struct dt_client *dt, const struct sp_box *box, const char *path,
		     const void *data, size_t len, struct sp_error *err);
/* Several files in one POST /files/bulk-upload (sp_upload_item): 0 when
 * answered (each item's rc), else a negative errno for all. No item's path
 * may be one bulk-upload trims (dt_upload_path_trimmed), nor appear twice. */
int dt_fs_upload_many(struct dt_client *dt, const struct sp_box *box, struct sp_upload_item *items, size_t n,
		      struct sp_error *err);
/* Fills each item's rc and msg from a bulk-upload reply body ({"files":
 * [{"path","bytes"}], "errors": ["<dest>: ..."]}): an item is done when
 * the reply names its path with its size. -EIO when the body is not such a
 * reply (nothing is then known). Pure. */
int dt_upload_many_reply(const char *body, size_t body_len, struct sp_upload_item *items, size_t n);
/* Whether bulk-upload would store path under another name: the daemon
 * applies Go's strings.TrimSpace to it, so a path that starts or ends with
 * white space (unicode.IsSpace) must be uploaded under another name. */
bool dt_upload_path_trimmed(const char *path);
/* Checks a 2xx bulk-upload reply for one file of len bytes sent as path:
 * 0, or -EIO with the reason in why when it names no file, another path
 * (invalid UTF-8 in path comes back as U+FFFD) or another size. */
int dt_upload_reply_check(const char *body, size_t body_len, const char *path, uint64_t len,
			  char *why, size_t cap);
int dt_fs_mkdir(struct dt_client *dt, const struct sp_box *box, const char *path, mode_t mode,
		struct sp_error *err);
int dt_fs_delete(struct dt_client *dt, const struct sp_box *box, const char *path, bool recursive,
		 struct sp_error *err);
/* POST /files/move: fails with EEXIST when dst exists (it never replaces). */
int dt_fs_move(struct dt_client *dt, const struct sp_box *box, const char *src, const char *dst,
	       struct sp_error *err);
int dt_fs_chmod(struct dt_client *dt, const struct sp_box *box, const char *path, mode_t mode,
		struct sp_error *err);

/* POST /process/execute. A sandbox whose last Sandbox object (from any call
 * of this client) had a daemonVersion before v0.156.0 gets no request:
 * EOPNOTSUPP, with a message that says to restart it. output (may be NULL) receives the merged output
 * (malloc'd, NUL-terminated). timeout_s 0 = none; the HTTP timeout is then the
 * transport's default, else timeout_s + 5 s. 408 gives -ETIMEDOUT. */
int dt_exec(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
	    const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
	    struct sp_error *err);
/* dt_exec for what the user asked for (a command started, killed or fed
 * through the mount): it counts as sandbox activity, so it is sent without
 * X-Daytona-Skip-Last-Activity-Update whatever keepalive says. */
int dt_exec_activity(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
		     const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
		     struct sp_error *err);
/* dt_exec bounded by limit_s on both sides: the sandbox kills the command
 * (timeout dt_command_server_timeout_s(limit_s)) when the client stops
 * waiting for it (limit_s), so that nothing keeps running that nobody waits
 * for. For the mount's own commands (file operations). */
int dt_exec_within(struct dt_client *dt, const struct sp_box *box, const char *command, const char *cwd,
		   long limit_s, int *exit_code, char **output, struct sp_error *err);
long dt_command_server_timeout_s(long limit_s);
/* GET /user-home-dir and /work-dir: {"dir": "..."} */
int dt_home_dir(struct dt_client *dt, const struct sp_box *box, char *out, size_t cap, struct sp_error *err);
int dt_work_dir(struct dt_client *dt, const struct sp_box *box, char *out, size_t cap, struct sp_error *err);

/* ---- helpers ------------------------------------------------------------ */

/* A cheap authenticated call (GET /sandbox?limit=1) used at start-up to check the
 * endpoint and the credentials. A 2xx that is not a sandbox list (HTML from a
 * wrong URL, an empty body) fails with EPROTO, http_status set. */
int dt_ping(struct dt_client *dt, struct sp_error *err);

#endif
