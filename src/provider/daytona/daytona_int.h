/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_int.h - what the files of the Daytona client share and nothing
 * above the provider folder may include: the client object, the request
 * description and path (daytona_client.c), and the JSON helpers
 * (daytona_json.c) that the control plane (daytona_api.c) and the toolbox
 * (daytona_toolbox.c) both use.
 */
#ifndef DAYTONAFS_DAYTONA_INT_H
#define DAYTONAFS_DAYTONA_INT_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "clock.h"
#include "daytona.h"
#include "strbuf.h"

#define SKIP_ACTIVITY_HEADER "X-Daytona-Skip-Last-Activity-Update: true"

/* A sandbox the mount changed (daytona_surface.c, activity). */
struct dt_activity {
	char id[64];
	long last_ms;               /* when a request last counted as its activity */
	bool pending;               /* the next toolbox request to it counts */
};

struct dt_client {
	struct http_client *hc;
	char *api_url;              /* without a trailing slash */
	char *target;
	bool keepalive;
	long wait_timeout_ms;
	/* Sandboxes whose daemon runs no shell (dt_daemon_runs_shell): few or
	 * none, so a plain array. */
	pthread_mutex_t old_lock;
	struct old_daemon {
		char id[64];
		char version[32];
	} *old;
	size_t n_old;
	pthread_mutex_t act_lock;   /* the sandboxes changed through the mount */
	struct dt_activity *act;
	size_t n_act;
};

struct call {
	const char *method;
	const char *url;
	bool toolbox;
	const char *what;           /* for messages, e.g. "get sandbox foo" */
	const char *json;           /* request body, or NULL */
	const struct http_part *parts;
	size_t n_parts;
	const char *range;          /* a "Range: ..." header line, or NULL */
	http_sink_fn sink;
	void *sink_ctx;
	size_t max_body;
	bool idempotent;
	bool streaming;
	bool sink_idle;             /* http.h: the sink hears (NULL, 0) while the stream is quiet */
	bool activity;              /* counts as sandbox activity: no skip header */
	long timeout_ms;
};

/* Performs the call. Returns 0 on a 2xx; on any other status the mapped
 * -errno with err set (see dt_do in daytona_client.c for the retries). */
int dt_do(struct dt_client *dt, const struct call *c, struct http_response *resp,
	  struct sp_error *err);

/* Errors (daytona_client.c). */
void dt_error_clear(struct sp_error *err);
bool dt_body_message(const char *body, char *out, size_t cap);
int dt_malformed(struct sp_error *err, long status, const char *what);
int dt_oom(struct sp_error *err);

/* URLs and bodies (daytona_client.c). */
cJSON *dt_parse_body(const struct http_response *resp, const char *what, struct sp_error *err);
/* Reads one object out of a 2xx JSON body into out; returns 0, -ENOMEM,
 * -EINVAL (the body has the wrong shape), or another -errno (a value too
 * long for out). */
typedef int (*dt_json_fn)(const cJSON *root, void *out);
/* The tail of every call that reads one object: dt_do, the body parsed as
 * JSON, parse, and its answer turned into err (-EINVAL: malformed, -EIO). */
int dt_do_json(struct dt_client *dt, const struct call *c, dt_json_fn parse, void *out, struct sp_error *err);
/* DELETE COLLECTION/ID (collection as "/volumes/"; noun names it in
 * messages): 0 or a -errno in err; *status (may be NULL) gets the HTTP
 * status, for a caller that maps one of its own. */
int dt_delete_object(struct dt_client *dt, const char *collection, const char *noun, const char *id,
		     int *status, struct sp_error *err);
/* A dt_json_fn for one non-empty string member: key's value copied into
 * out[cap], too_long (a -errno) when it does not fit. */
struct dt_json_str {
	const char *key;
	char *out;
	size_t cap;
	int too_long;
};
int dt_json_str(const cJSON *root, void *out);
void dt_api_url(struct strbuf *sb, const struct dt_client *dt, const char *path);
void dt_sandbox_url(struct strbuf *sb, const struct dt_client *dt, const char *id, const char *suffix);
void dt_toolbox_url(struct strbuf *sb, const struct sp_box *box, const char *endpoint);
void dt_add_query(struct strbuf *sb, const char *name, const char *value);

/* JSON getters and builders (daytona_json.c). */
const char *dt_jstr(const cJSON *obj, const char *key);
void dt_jcopy(char *dst, size_t cap, const cJSON *obj, const char *key);
void dt_jtime(struct timespec *ts, const cJSON *obj, const char *key);
char *dt_pretty_json(const cJSON *obj);
bool dt_set_string(cJSON *obj, const char *key, const char *value);
bool dt_add_kv_object(cJSON *root, const char *key, const struct sp_kv *kv, size_t n, cJSON **made);

/* Whether a toolbox request to url is to count as activity: a change
 * marked its sandbox (dt_note_change). counts: the request counts anyway
 * (exec), which restarts the period. (daytona_surface.c) */
bool dt_activity_take(struct dt_client *dt, const char *url, bool counts);

/* The "command" of /process/execute for script: a long one behind a line
 * that has the shell read it in bulk (daytona_script.c). 0 or -ENOMEM. */
int dt_execute_text(struct strbuf *sb, const char *script);

/* Whether sandbox id's daemon is too old to run a shell, its version in out
 * (daytona_api.c). */
bool dt_old_daemon(struct dt_client *dt, const char *id, char *out, size_t cap);

#endif
