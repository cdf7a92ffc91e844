/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_int.h - what vercel_api.c shares with vercel_cmd.c and vercel_fs.c:
 * the client, URL building and the one request helper.
 */
#ifndef DAYTONAFS_VERCEL_INT_H
#define DAYTONAFS_VERCEL_INT_H

#include <cjson/cJSON.h>

#include "ratelimit.h"
#include "strbuf.h"
#include "vercel.h"

struct vc_client {
	struct http_client *hc;
	char *base_url;             /* without a trailing slash */
	char *team_id;
	char *project_id;
	long wait_timeout_ms;
	int max_pages;
	struct rate_limiter rl;
	_Atomic uint64_t rate_waited_ms;
};

struct vc_call {
	const char *method;
	const char *url;
	const char *what;           /* for messages, e.g. "get sandbox foo" */
	const char *json;           /* request body, or NULL */
	const char *const *headers; /* extra header lines, NULL-terminated, or NULL */
	const char *content_type;   /* for body_fn */
	ssize_t (*body_fn)(void *ctx, uint64_t off, void *buf, size_t len);
	void *body_fn_ctx;
	uint64_t body_fn_len;
	http_sink_fn sink;
	void *sink_ctx;
	bool idempotent;
	bool streaming;
	long timeout_ms;
};

/* Waits for the rate limiter, performs the call. 0 on a 2xx; the mapped
 * errno with err filled on another status (resp still holds it); a transport
 * error's errno. */
int vc_do(struct vc_client *vc, const struct vc_call *c, struct http_response *resp, struct vc_error *err);

/* base + prefix + segment (path-encoded, may be NULL) + suffix, then
 * ?teamId= when there is one. */
void vc_url(const struct vc_client *vc, struct strbuf *sb, const char *prefix, const char *segment,
	    const char *suffix);
void vc_add_query(struct strbuf *sb, const char *name, const char *value);

/* Parses a 2xx JSON body; NULL (err set, -EIO) when it is not JSON. */
cJSON *vc_parse_body(const struct http_response *resp, const char *what, struct vc_error *err);
int vc_oom(struct vc_error *err);
/* -EINVAL (err says which) for a NULL or empty id: never a request to a
 * path with an empty segment, which would name another resource. */
int vc_check_id(const char *id, const char *kind, struct vc_error *err);
void vc_error_clear(struct vc_error *err);

/* obj printed with indents and a final newline (malloc'd), or NULL. */
char *vc_pretty_json(const cJSON *obj);

/* "/v2/sandboxes/sessions/{sid}{suffix}" */
void vc_session_url(const struct vc_client *vc, struct strbuf *sb, const char *sid, const char *suffix);

#endif
