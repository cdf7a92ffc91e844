/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_api.c - the Vercel Sandbox client's control plane: credentials,
 * errors, the request helper with its rate limiter, sandboxes, sessions and
 * snapshots (see vercel.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"
#include "urlenc.h"
#include "vercel_int.h"

#define DEFAULT_RATE_PER_MINUTE 1000    /* Hobby: the smallest plan's control-plane quota */
#define DEFAULT_WAIT_TIMEOUT_MS 300000L /* Vercel's edge cuts streams after ~5 min */
#define DEFAULT_MAX_PAGES       1000
#define DEFAULT_PAGE_SIZE       50

/* ---- errors -------------------------------------------------------------- */

int vc_error_set(struct vc_error *err, int rc, long http_status, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return rc;
	err->http_status = http_status;
	err->err = rc < 0 ? -rc : rc;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return rc;
}

void vc_error_clear(struct vc_error *err)
{
	if (err) {
		err->http_status = 0;
		err->err = 0;
		err->code[0] = '\0';
		err->message[0] = '\0';
	}
}

int vc_oom(struct vc_error *err)
{
	return vc_error_set(err, -ENOMEM, 0, "out of memory");
}

int vc_check_id(const char *id, const char *kind, struct vc_error *err)
{
	vc_error_clear(err);
	if (!id || !*id)
		return vc_error_set(err, -EINVAL, 0, "no %s given", kind);
	return 0;
}

int vc_errno_for_status(long status, const char *code)
{
	if (status >= 200 && status < 300)
		return 0;
	if (status >= 500)
		return -EIO;
	switch (status) {
	case 400:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 402:
		return -EDQUOT;     /* payment required: a plan limit */
	case 404:
		return -ENOENT;
	case 408:
		return -ETIMEDOUT;
	case 409:
		return -EEXIST;
	case 410:
		/* Gone: the session stopped, or a source snapshot expired. */
		if (code && strcmp(code, "snapshot_not_found") == 0)
			return -ENOENT;
		return -EHOSTDOWN;
	case 422:
		/* sandbox_stopping / sandbox_snapshotting: a transition, retry later. */
		return -EBUSY;
	case 429:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* error.code and error.message of a Vercel error body. */
static void body_error(const char *body, char *code, size_t ccap, char *msg, size_t mcap)
{
	cJSON *root, *e;

	code[0] = msg[0] = '\0';
	if (!body || !*body)
		return;
	root = cJSON_Parse(body);
	if (!root)
		return;
	e = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (cJSON_IsObject(e)) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");

		if (cJSON_IsString(c))
			str_copy(code, ccap, c->valuestring);
		if (cJSON_IsString(m))
			str_copy(msg, mcap, m->valuestring);
	} else if (cJSON_IsString(e)) {
		str_copy(msg, mcap, e->valuestring);
	}
	cJSON_Delete(root);
}

static int status_error(struct vc_error *err, const struct http_response *resp, const char *what)
{
	char code[64], msg[400];
	int rc;

	body_error(resp->body, code, sizeof(code), msg, sizeof(msg));
	rc = vc_errno_for_status(resp->status, code);
	if (rc == 0)
		rc = -EIO;  /* a 1xx/3xx we did not ask for */
	if (msg[0])
		vc_error_set(err, rc, resp->status, "%s: %s (HTTP %ld)", what, msg, resp->status);
	else
		vc_error_set(err, rc, resp->status, "%s: %s (HTTP %ld)", what, strerror(-rc), resp->status);
	if (err)
		str_copy(err->code, sizeof(err->code), code);
	return rc;
}

/* ---- credentials --------------------------------------------------------- */

static int b64url_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || c == '+')
		return 62;
	if (c == '_' || c == '/')
		return 63;
	return -1;
}

/* Decodes base64url (no padding needed) of src[0..n) into a NUL-terminated
 * string; false on a bad character. */
static bool b64url_decode(const char *src, size_t n, struct strbuf *out)
{
	unsigned acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		int v;

		if (src[i] == '=')
			break;
		v = b64url_value((unsigned char)src[i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			sb_addc(out, (char)((acc >> bits) & 0xff));
		}
	}
	sb_add(out, "", 0);
	return !out->oom;
}

/* owner_id and project_id from the payload of a JWT "h.p.s". */
static int jwt_claims(const char *jwt, struct vc_credentials *out, struct vc_error *err)
{
	const char *p1 = strchr(jwt, '.'), *p2 = p1 ? strchr(p1 + 1, '.') : NULL;
	struct strbuf payload = STRBUF_INIT;
	cJSON *root = NULL, *owner, *project;
	int rc = -EINVAL;

	if (!p2 || !b64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), &payload) ||
	    !(root = cJSON_Parse(sb_str(&payload)))) {
		vc_error_set(err, -EINVAL, 0, "VERCEL_OIDC_TOKEN is not a JWT");
		goto out;
	}
	owner = cJSON_GetObjectItemCaseSensitive(root, "owner_id");
	project = cJSON_GetObjectItemCaseSensitive(root, "project_id");
	if (!cJSON_IsString(owner) || !cJSON_IsString(project) ||
	    !str_copy(out->team_id, sizeof(out->team_id), owner->valuestring) ||
	    !str_copy(out->project_id, sizeof(out->project_id), project->valuestring)) {
		vc_error_set(err, -EINVAL, 0, "VERCEL_OIDC_TOKEN has no owner_id and project_id");
		goto out;
	}
	rc = 0;
out:
	cJSON_Delete(root);
	sb_free(&payload);
	return rc;
}

int vc_credentials_from_env(struct vc_credentials *out, const char *(*getenv_fn)(const char *),
			    struct vc_error *err)
{
	const char *oidc = getenv_fn("VERCEL_OIDC_TOKEN");
	const char *token = getenv_fn("VERCEL_TOKEN");
	const char *team = getenv_fn("VERCEL_TEAM_ID");
	const char *project = getenv_fn("VERCEL_PROJECT_ID");
	int rc;

	memset(out, 0, sizeof(*out));
	vc_error_clear(err);
	if (token && *token) {
		/* An access token is used only with both ids, as the SDK does. */
		if (!team || !*team || !project || !*project)
			return vc_error_set(err, -EINVAL, 0,
					    "VERCEL_TOKEN needs VERCEL_TEAM_ID and VERCEL_PROJECT_ID");
		if (!str_copy(out->token, sizeof(out->token), token) ||
		    !str_copy(out->team_id, sizeof(out->team_id), team) ||
		    !str_copy(out->project_id, sizeof(out->project_id), project))
			return vc_error_set(err, -EINVAL, 0, "VERCEL_TOKEN, VERCEL_TEAM_ID or VERCEL_PROJECT_ID too long");
		return 0;
	}
	if (oidc && *oidc) {
		if (!str_copy(out->token, sizeof(out->token), oidc))
			return vc_error_set(err, -EINVAL, 0, "VERCEL_OIDC_TOKEN too long");
		rc = jwt_claims(oidc, out, err);
		if (rc)
			memset(out, 0, sizeof(*out));
		return rc;
	}
	return vc_error_set(err, -ENOENT, 0,
			    "no credentials: set VERCEL_OIDC_TOKEN, or VERCEL_TOKEN with VERCEL_TEAM_ID and VERCEL_PROJECT_ID");
}

/* ---- client -------------------------------------------------------------- */

struct vc_client *vc_client_new(struct http_client *hc, const struct vc_config *cfg)
{
	struct vc_client *vc = calloc(1, sizeof(*vc));
	struct strbuf auth = STRBUF_INIT;
	int rate = cfg->rate_per_minute ? cfg->rate_per_minute : DEFAULT_RATE_PER_MINUTE;

	if (!vc)
		return NULL;
	vc->hc = hc;
	vc->base_url = str_dup_trim_slash(cfg->base_url ? cfg->base_url : VC_DEFAULT_BASE_URL);
	vc->team_id = strdup(cfg->team_id ? cfg->team_id : "");
	vc->project_id = strdup(cfg->project_id ? cfg->project_id : "");
	vc->wait_timeout_ms = cfg->wait_timeout_ms > 0 ? cfg->wait_timeout_ms : DEFAULT_WAIT_TIMEOUT_MS;
	vc->max_pages = cfg->max_pages > 0 ? cfg->max_pages : DEFAULT_MAX_PAGES;
	rl_init(&vc->rl, rate, cfg->rate_burst);
	if (!vc->base_url || !vc->team_id || !vc->project_id)
		goto fail;
	if (cfg->token && *cfg->token) {
		sb_addf(&auth, "Bearer %s", cfg->token);
		if (auth.oom || http_client_set_auth(hc, sb_str(&auth)) != 0)
			goto fail;
	}
	/* Wipe our copy: the transport keeps the only one. */
	if (auth.buf)
		memset(auth.buf, 0, auth.len);
	sb_free(&auth);
	return vc;
fail:
	if (auth.buf)
		memset(auth.buf, 0, auth.len);
	sb_free(&auth);
	vc_client_free(vc);
	return NULL;
}

void vc_client_free(struct vc_client *vc)
{
	if (!vc)
		return;
	rl_destroy(&vc->rl);
	free(vc->base_url);
	free(vc->team_id);
	free(vc->project_id);
	free(vc);
}

struct http_client *vc_http(struct vc_client *vc)
{
	return vc->hc;
}

uint64_t vc_rate_waited_ms(struct vc_client *vc)
{
	return atomic_load(&vc->rate_waited_ms);
}

void vc_add_query(struct strbuf *sb, const char *name, const char *value)
{
	sb_addc(sb, strchr(sb_str(sb), '?') ? '&' : '?');
	sb_adds(sb, name);
	sb_addc(sb, '=');
	url_add_query_value(sb, value);
}

void vc_url(const struct vc_client *vc, struct strbuf *sb, const char *prefix, const char *segment,
	    const char *suffix)
{
	sb_adds(sb, vc->base_url);
	sb_adds(sb, prefix);
	if (segment)
		url_add_path_segment(sb, segment);
	if (suffix)
		sb_adds(sb, suffix);
	if (vc->team_id[0])
		vc_add_query(sb, "teamId", vc->team_id);
}

void vc_session_url(const struct vc_client *vc, struct strbuf *sb, const char *sid, const char *suffix)
{
	vc_url(vc, sb, "/v2/sandboxes/sessions/", sid, suffix);
}

int vc_do(struct vc_client *vc, const struct vc_call *c, struct http_response *resp, struct vc_error *err)
{
	struct http_request req;
	char errbuf[400];
	long waited;
	int rc;

	vc_error_clear(err);
	waited = rl_acquire(&vc->rl);
	if (waited > 0) {
		atomic_fetch_add(&vc->rate_waited_ms, (uint64_t)waited);
		log_info("vercel: request quota: waited %ld ms before %s", waited, c->what);
	}
	memset(&req, 0, sizeof(req));
	req.method = c->method;
	req.url = c->url;
	req.headers = c->headers;
	if (c->json) {
		req.body = c->json;
		req.body_len = strlen(c->json);
		req.content_type = "application/json";
	}
	if (c->body_fn) {
		req.body_fn = c->body_fn;
		req.body_fn_ctx = c->body_fn_ctx;
		req.body_fn_len = c->body_fn_len;
		req.content_type = c->content_type;
	}
	req.sink = c->sink;
	req.sink_ctx = c->sink_ctx;
	req.idempotent = c->idempotent;
	req.streaming = c->streaming;
	req.timeout_ms = c->timeout_ms;

	rc = http_do(vc->hc, &req, resp, errbuf, sizeof(errbuf));
	if (rc < 0) {
		if (resp->status && resp->body && !(resp->status >= 200 && resp->status < 300))
			return status_error(err, resp, c->what);
		return vc_error_set(err, rc, resp->status, "%s: %s", c->what, errbuf[0] ? errbuf : strerror(-rc));
	}
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	return status_error(err, resp, c->what);
}

cJSON *vc_parse_body(const struct http_response *resp, const char *what, struct vc_error *err)
{
	cJSON *root = NULL;

	if (resp->body && resp->body_len)
		root = cJSON_ParseWithLength(resp->body, resp->body_len);
	if (!root)
		vc_error_set(err, -EIO, resp->status, "malformed response from %s", what);
	return root;
}

/* One JSON call: the parsed 2xx body in *root (caller frees). */
static int call_json(struct vc_client *vc, const char *method, const char *url, const char *what,
		     const char *json, bool idempotent, cJSON **root, struct vc_error *err)
{
	struct vc_call c = { .method = method, .url = url, .what = what, .json = json,
			     .idempotent = idempotent };
	struct http_response resp;
	int rc;

	*root = NULL;
	rc = vc_do(vc, &c, &resp, err);
	if (rc == 0) {
		*root = vc_parse_body(&resp, what, err);
		if (!*root)
			rc = -EIO;
	}
	http_response_free(&resp);
	return rc;
}

/* ---- sandboxes ------------------------------------------------------------ */

static int sandbox_call(struct vc_client *vc, const char *method, const char *url, const char *what,
			const char *json, bool idempotent, struct vc_sandbox *out, struct vc_error *err)
{
	cJSON *root;
	int rc = call_json(vc, method, url, what, json, idempotent, &root, err);

	if (rc)
		return rc;
	if (out) {
		rc = vc_sandbox_response_from_json(root, out);
		if (rc) {
			vc_sandbox_clear(out);
			vc_error_set(err, -EIO, 200, "malformed response from %s", what);
			rc = -EIO;
		}
	}
	cJSON_Delete(root);
	return rc;
}

int vc_sandbox_create(struct vc_client *vc, const struct vc_create_params *p, struct vc_sandbox *out,
		      struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char *body = vc_create_body_json(p, vc->project_id);
	int rc;

	memset(out, 0, sizeof(*out));
	/* The SDK: a legacy runtime goes to /v2, an image (or the default) to /v3. */
	vc_url(vc, &url, p->runtime ? "/v2/sandboxes" : "/v3/sandboxes", NULL, NULL);
	sb_addf(&what, "create sandbox %s", p->name ? p->name : "(unnamed)");
	if (!body || url.oom || what.oom)
		rc = vc_oom(err);
	else
		/* Not idempotent: a replay after a lost answer would make a second
		 * sandbox (or a 409 for a named one). */
		rc = sandbox_call(vc, "POST", sb_str(&url), sb_str(&what), body, false, out, err);
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* /v2/sandboxes/{name}?teamId=&projectId= */
static void sandbox_url(const struct vc_client *vc, struct strbuf *sb, const char *name, const char *suffix)
{
	vc_url(vc, sb, "/v2/sandboxes/", name, suffix);
	if (vc->project_id[0])
		vc_add_query(sb, "projectId", vc->project_id);
}

int vc_sandbox_get(struct vc_client *vc, const char *name, bool resume, struct vc_sandbox *out,
		   struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	if (vc_check_id(name, "sandbox name", err))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	sandbox_url(vc, &url, name, NULL);
	if (resume)
		vc_add_query(&url, "resume", "true");
	sb_addf(&what, "%s sandbox %s", resume ? "resume" : "get", name);
	if (url.oom || what.oom)
		rc = vc_oom(err);
	else
		/* A resume replayed finds the session running: idempotent. */
		rc = sandbox_call(vc, "GET", sb_str(&url), sb_str(&what), NULL, true, out, err);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_sandbox_update(struct vc_client *vc, const char *name, const struct vc_update_params *p,
		      struct vc_sandbox *out, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char *body;
	int rc;

	if (vc_check_id(name, "sandbox name", err))
		return -EINVAL;
	body = vc_update_body_json(p);
	if (out)
		memset(out, 0, sizeof(*out));
	sandbox_url(vc, &url, name, NULL);
	sb_addf(&what, "update sandbox %s", name);
	if (!body || url.oom || what.oom)
		rc = vc_oom(err);
	else
		/* Replaces fields with given values: idempotent. */
		rc = sandbox_call(vc, "PATCH", sb_str(&url), sb_str(&what), body, true, out, err);
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_sandbox_delete(struct vc_client *vc, const char *name, bool delete_orphan_snapshots,
		      struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	cJSON *root = NULL;
	int rc;

	if (vc_check_id(name, "sandbox name", err))
		return -EINVAL;
	sandbox_url(vc, &url, name, NULL);
	if (delete_orphan_snapshots)
		vc_add_query(&url, "deleteOrphanSnapshots", "true");
	sb_addf(&what, "delete sandbox %s", name);
	if (url.oom || what.oom)
		rc = vc_oom(err);
	else
		rc = call_json(vc, "DELETE", sb_str(&url), sb_str(&what), NULL, true, &root, err);
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- lists ----------------------------------------------------------------- */

/* Appends one item of a page; returns 0 or a negative errno. */
typedef int (*page_item_fn)(void *ctx, const cJSON *item);

/* GET base_url page after page (cursor=next), handing each element of
 * root[key] to fn. A cursor seen before (a server looping) is -ELOOP; more
 * than max_pages pages is -E2BIG: a list must end. */
static int list_pages(struct vc_client *vc, const char *base_url, const char *key, const char *what,
		      page_item_fn fn, void *ctx, struct vc_error *err)
{
	char **seen = NULL;
	size_t n_seen = 0;
	char *cursor = NULL;
	int rc = 0, page;

	for (page = 0;; page++) {
		struct strbuf url = STRBUF_INIT;
		const cJSON *items, *item, *pag, *next;
		cJSON *root = NULL;

		if (page >= vc->max_pages) {
			rc = vc_error_set(err, -E2BIG, 200, "%s: more than %d pages", what, vc->max_pages);
			break;
		}
		sb_adds(&url, base_url);
		if (cursor)
			vc_add_query(&url, "cursor", cursor);
		rc = url.oom ? vc_oom(err) : call_json(vc, "GET", sb_str(&url), what, NULL, true, &root, err);
		sb_free(&url);
		if (rc)
			break;
		items = cJSON_GetObjectItemCaseSensitive(root, key);
		pag = cJSON_GetObjectItemCaseSensitive(root, "pagination");
		next = cJSON_GetObjectItemCaseSensitive(pag, "next");
		if (!cJSON_IsArray(items) || (next && !cJSON_IsNull(next) && !cJSON_IsString(next))) {
			cJSON_Delete(root);
			rc = vc_error_set(err, -EIO, 200, "malformed response from %s", what);
			break;
		}
		cJSON_ArrayForEach(item, items) {
			rc = fn(ctx, item);
			if (rc)
				break;
		}
		if (rc) {
			cJSON_Delete(root);
			vc_error_set(err, rc, 200, rc == -ENOMEM ? "out of memory" : "malformed response from %s", what);
			break;
		}
		if (!cJSON_IsString(next) || !next->valuestring[0]) {
			cJSON_Delete(root);
			break;      /* the last page */
		}
		for (size_t i = 0; i < n_seen && !rc; i++)
			if (strcmp(seen[i], next->valuestring) == 0)
				rc = vc_error_set(err, -ELOOP, 200, "%s: the server repeated cursor %s", what,
						  next->valuestring);
		if (!rc) {
			char **grown = realloc(seen, (n_seen + 1) * sizeof(*seen));

			if (grown)
				seen = grown;
			cursor = grown ? strdup(next->valuestring) : NULL;
			if (!cursor)
				rc = vc_oom(err);
			else
				seen[n_seen++] = cursor;
		}
		cJSON_Delete(root);
		if (rc)
			break;
	}
	for (size_t i = 0; i < n_seen; i++)
		free(seen[i]);
	free(seen);
	return rc;
}

/* A growing array of elem_size items. */
struct vec {
	void *items;
	size_t n, cap, elem_size;
};

static void *vec_push(struct vec *v)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		void *grown = realloc(v->items, cap * v->elem_size);

		if (!grown)
			return NULL;
		v->items = grown;
		v->cap = cap;
	}
	return (char *)v->items + v->n++ * v->elem_size;
}

static int push_sandbox(void *ctx, const cJSON *item)
{
	struct vec *v = ctx;
	struct vc_sandbox *sb = vec_push(v);

	if (!sb)
		return -ENOMEM;
	if (vc_sandbox_from_json(item, sb) != 0) {
		v->n--;
		return -EIO;
	}
	sb->json = vc_pretty_json(item);
	return sb->json ? 0 : -ENOMEM;
}

static int push_snapshot(void *ctx, const cJSON *item)
{
	struct vec *v = ctx;
	struct vc_snapshot *s = vec_push(v);
	int rc;

	if (!s)
		return -ENOMEM;
	rc = vc_snapshot_from_json(item, s);
	if (rc) {
		free(s->json);
		v->n--;
		return rc == -ENOMEM ? rc : -EIO;
	}
	return 0;
}

static void page_size_query(struct strbuf *url, const struct vc_list_params *lp)
{
	char n[16];

	snprintf(n, sizeof(n), "%d", lp && lp->page_size > 0 ? lp->page_size : DEFAULT_PAGE_SIZE);
	vc_add_query(url, "limit", n);
}

void vc_sandbox_list_free(struct vc_sandbox *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vc_sandbox_clear(&list[i]);
	free(list);
}

int vc_sandbox_list(struct vc_client *vc, const struct vc_list_params *lp, struct vc_sandbox **out,
		    size_t *n, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct vec v = { .elem_size = sizeof(struct vc_sandbox) };
	int rc;

	*out = NULL;
	*n = 0;
	vc_url(vc, &url, "/v2/sandboxes", NULL, NULL);
	if (vc->project_id[0])
		vc_add_query(&url, "project", vc->project_id);
	page_size_query(&url, lp);
	if (lp && lp->name_prefix) {
		/* namePrefix is valid only when sorting by name. */
		vc_add_query(&url, "sortBy", "name");
		vc_add_query(&url, "namePrefix", lp->name_prefix);
	}
	rc = url.oom ? vc_oom(err) : list_pages(vc, sb_str(&url), "sandboxes", "list sandboxes", push_sandbox, &v, err);
	sb_free(&url);
	if (rc) {
		vc_sandbox_list_free(v.items, v.n);
		return rc;
	}
	*out = v.items;
	*n = v.n;
	return 0;
}

/* ---- sessions -------------------------------------------------------------- */

/* POST …/sessions/{sid}{suffix} with body; out gets root.session. */
static int session_call(struct vc_client *vc, const char *sid, const char *suffix, const char *verb,
			const char *json, struct vc_session *out, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	cJSON *root = NULL;
	int rc;

	if (vc_check_id(sid, "session id", err))
		return -EINVAL;
	vc_session_url(vc, &url, sid, suffix);
	sb_addf(&what, "%s session %s", verb, sid);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
		goto out;
	}
	/* stop and extend-timeout land in the same state when replayed. */
	rc = call_json(vc, "POST", sb_str(&url), sb_str(&what), json, true, &root, err);
	if (rc == 0 && out && vc_session_from_json(cJSON_GetObjectItemCaseSensitive(root, "session"), out) != 0)
		rc = vc_error_set(err, -EIO, 200, "malformed response from %s", sb_str(&what));
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_session_stop(struct vc_client *vc, const char *sid, struct vc_session *out, struct vc_error *err)
{
	return session_call(vc, sid, "/stop", "stop", NULL, out, err);
}

int vc_session_extend(struct vc_client *vc, const char *sid, long duration_ms, struct vc_session *out,
		      struct vc_error *err)
{
	char body[64];

	if (duration_ms < 1000)
		return vc_error_set(err, -EINVAL, 0, "extend session %s: duration under 1000 ms", sid);
	snprintf(body, sizeof(body), "{\"duration\":%ld}", duration_ms);
	return session_call(vc, sid, "/extend-timeout", "extend", body, out, err);
}

/* ---- snapshots ------------------------------------------------------------- */

void vc_snapshot_list_free(struct vc_snapshot *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vc_snapshot_clear(&list[i]);
	free(list);
}

static int snapshot_from_root(const cJSON *root, const char *what, struct vc_snapshot *out, struct vc_error *err)
{
	int rc = vc_snapshot_from_json(cJSON_GetObjectItemCaseSensitive(root, "snapshot"), out);

	if (rc == -ENOMEM)
		return vc_oom(err);
	if (rc)
		return vc_error_set(err, -EIO, 200, "malformed response from %s", what);
	return 0;
}

int vc_snapshot_create(struct vc_client *vc, const char *sid, long expiration_ms, struct vc_snapshot *out,
		       struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char body[64];
	cJSON *root = NULL;
	int rc;

	if (vc_check_id(sid, "session id", err))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	vc_session_url(vc, &url, sid, "/snapshot");
	sb_addf(&what, "snapshot session %s", sid);
	if (expiration_ms >= 0)
		snprintf(body, sizeof(body), "{\"expiration\":%ld}", expiration_ms);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
		goto out;
	}
	/* Not idempotent: a replay would answer 422/410 (the session is
	 * snapshotting or stopped) for a snapshot that was made. */
	rc = call_json(vc, "POST", sb_str(&url), sb_str(&what), expiration_ms >= 0 ? body : NULL, false, &root, err);
	if (rc == 0)
		rc = snapshot_from_root(root, sb_str(&what), out, err);
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

static int snapshot_by_id(struct vc_client *vc, const char *method, const char *id, struct vc_snapshot *out,
			  struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	cJSON *root = NULL;
	int rc;

	if (vc_check_id(id, "snapshot id", err))
		return -EINVAL;
	if (out)
		memset(out, 0, sizeof(*out));
	vc_url(vc, &url, "/v2/sandboxes/snapshots/", id, NULL);
	sb_addf(&what, "%s snapshot %s", strcmp(method, "GET") == 0 ? "get" : "delete", id);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
		goto out;
	}
	rc = call_json(vc, method, sb_str(&url), sb_str(&what), NULL, true, &root, err);
	if (rc == 0 && out)
		rc = snapshot_from_root(root, sb_str(&what), out, err);
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_snapshot_get(struct vc_client *vc, const char *id, struct vc_snapshot *out, struct vc_error *err)
{
	return snapshot_by_id(vc, "GET", id, out, err);
}

int vc_snapshot_delete(struct vc_client *vc, const char *id, struct vc_error *err)
{
	return snapshot_by_id(vc, "DELETE", id, NULL, err);
}

int vc_snapshot_list(struct vc_client *vc, const struct vc_list_params *lp, struct vc_snapshot **out,
		     size_t *n, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct vec v = { .elem_size = sizeof(struct vc_snapshot) };
	int rc;

	*out = NULL;
	*n = 0;
	vc_url(vc, &url, "/v2/sandboxes/snapshots", NULL, NULL);
	if (vc->project_id[0])
		vc_add_query(&url, "project", vc->project_id);
	page_size_query(&url, lp);
	if (lp && lp->sandbox_name)
		vc_add_query(&url, "name", lp->sandbox_name);
	rc = url.oom ? vc_oom(err) : list_pages(vc, sb_str(&url), "snapshots", "list snapshots", push_snapshot, &v, err);
	sb_free(&url);
	if (rc) {
		vc_snapshot_list_free(v.items, v.n);
		return rc;
	}
	*out = v.items;
	*n = v.n;
	return 0;
}
