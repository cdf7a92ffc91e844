/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_client.c - the Daytona client's plumbing, built to ../shared/daytona-api/CONTRACT.md:
 * the client object, error mapping, and the one request path (dt_do) that
 * both the control plane (daytona_api.c) and the toolbox (daytona_toolbox.c)
 * go through. Both address spaces take the same Bearer credential. Every
 * reply is parsed defensively: a response that is not the JSON we expect is
 * -EIO "malformed response from ...", never a crash, whatever the server
 * sends.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daytona_int.h"
#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define SKIP_ACTIVITY_HEADER "X-Daytona-Skip-Last-Activity-Update: true"

/* ---- errors -------------------------------------------------------------- */

void dt_error_clear(struct sp_error *err)
{
	if (err) {
		err->http_status = 0;
		err->err = 0;
		err->message[0] = '\0';
	}
}

/* The human message of an error body: "message" (a string, or an array of
 * validation messages), else "error", else "errors" (bulk-upload). */
bool dt_body_message(const char *body, char *out, size_t cap)
{
	cJSON *root, *m;
	struct strbuf sb = STRBUF_INIT;
	bool found = false;

	if (!body || !*body)
		return false;
	root = cJSON_Parse(body);
	if (!root)
		return false;
	if (!cJSON_IsObject(root))
		goto out;
	m = cJSON_GetObjectItemCaseSensitive(root, "message");
	if (!cJSON_IsString(m) && !cJSON_IsArray(m))
		m = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (!cJSON_IsString(m) && !cJSON_IsArray(m))
		m = cJSON_GetObjectItemCaseSensitive(root, "errors");
	if (cJSON_IsString(m) && m->valuestring[0]) {
		sb_adds(&sb, m->valuestring);
	} else if (cJSON_IsArray(m)) {
		const cJSON *it;

		cJSON_ArrayForEach(it, m) {
			if (!cJSON_IsString(it))
				continue;
			if (sb.len)
				sb_adds(&sb, ", ");
			sb_adds(&sb, it->valuestring);
		}
	}
	if (sb.len && !sb.oom) {
		str_copy(out, cap, sb_str(&sb));
		found = true;
	}
out:
	sb_free(&sb);
	cJSON_Delete(root);
	return found;
}

/*
 * The toolbox proxy and the runner answer for the sandbox's daemon when the
 * request cannot reach it; these answers look final but are not:
 *  - 404 with the runner's JSON ErrorResponse "not found: sandbox container
 *    not found: ..." while the proxy's runner cache (2 min) still points at
 *    a runner the sandbox left (after archive->start, or a move). The
 *    daemon's own "no such file" 404 has an empty body (newer daemons:
 *    code FILE_NOT_FOUND), so it never matches.
 *  - 401 "authentication failed: Bearer token validation error:
 *    ThrottlerException: Too Many Requests": the proxy's access check was
 *    throttled by the API, and the proxy reports it as a bad token.
 * Neither reached the sandbox, so any request may be sent again.
 */
enum dt_refusal dt_toolbox_refusal(long status, const char *body)
{
	char msg[512];

	if ((status != 404 && status != 401) || !dt_body_message(body, msg, sizeof(msg)))
		return DT_REFUSED_NOT;
	if (status == 404 && strcasestr(msg, "container not found"))
		return DT_REFUSED_NO_CONTAINER;
	if (status == 401 && (strcasestr(msg, "Bearer token validation error") ||
			      strcasestr(msg, "ThrottlerException") || strcasestr(msg, "Too Many Requests")))
		return DT_REFUSED_THROTTLED;
	return DT_REFUSED_NOT;
}

/* "Sandbox must be in started state to create a snapshot" (snapshot,
 * resize, fork): the call needs another state, as the other EBUSY ones. */
static bool state_required(const char *msg)
{
	const char *p = strcasestr(msg, "must be in ");

	return p && strcasestr(p, " state");
}

int dt_errno_for_status(long status, bool toolbox, const char *body)
{
	char msg[512] = "";

	if (status >= 200 && status < 300)
		return 0;
	if (status >= 500)
		return -EIO;
	switch (status) {
	case 400:
		if (toolbox && dt_body_message(body, msg, sizeof(msg)) &&
		    (strcasestr(msg, "Is the Sandbox started") || strcasestr(msg, "failed to get runner info")))
			return -EHOSTDOWN;
		/* The control plane answers a lifecycle call in the wrong state with a
		 * 400 (contract 2.3): that is a state conflict, EBUSY, not bad input. */
		if (!toolbox && dt_body_message(body, msg, sizeof(msg)) &&
		    (strcasestr(msg, "not in valid state") || strcasestr(msg, "not in a stoppable state") ||
		     strcasestr(msg, "is not stopped") || strcasestr(msg, "is in an errored state") ||
		     strcasestr(msg, "is not started") || state_required(msg)))
			return -EBUSY;
		return -EINVAL;
	case 401:
		if (toolbox && dt_toolbox_refusal(status, body) == DT_REFUSED_THROTTLED)
			return -EAGAIN;
		return -EACCES;
	case 403:
		return -EACCES;
	case 404:
		if (toolbox && dt_toolbox_refusal(status, body) == DT_REFUSED_NO_CONTAINER)
			return -EHOSTDOWN;
		return -ENOENT;
	case 408:
		return -ETIMEDOUT;
	case 409:
		if (toolbox)
			return -EEXIST;
		if (dt_body_message(body, msg, sizeof(msg)) && strcasestr(msg, "already exists"))
			return -EEXIST;
		return -EBUSY;
	case 410:
		return toolbox ? -EPIPE : -EIO;
	case 422:
		return toolbox ? -EINVAL : -EOPNOTSUPP;
	case 429:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* Fills err from a non-2xx response: the server's message when it sent one,
 * else a sentence from the status (the toolbox's fs errors have no body). */
static int status_error(struct sp_error *err, const struct http_response *resp, bool toolbox,
			const char *what)
{
	int rc = dt_errno_for_status(resp->status, toolbox, resp->body);
	char msg[400];

	if (rc == 0)
		rc = -EIO;   /* a 1xx/3xx we did not ask for */
	if (dt_body_message(resp->body, msg, sizeof(msg)))
		return sp_error_set(err, rc, resp->status, "%s: %s (HTTP %ld)", what, msg, resp->status);
	return sp_error_set(err, rc, resp->status, "%s: %s (HTTP %ld)", what, strerror(-rc), resp->status);
}

int dt_malformed(struct sp_error *err, long status, const char *what)
{
	return sp_error_set(err, -EIO, status, "malformed response from %s", what);
}

/* ---- client -------------------------------------------------------------- */

struct dt_client *dt_client_new(struct http_client *hc, const struct sp_config *cfg)
{
	struct dt_client *dt;
	struct strbuf sb = STRBUF_INIT;
	const char *cred = cfg->api_key ? cfg->api_key : cfg->jwt;
	int rc = 0;

	if (!hc || !cfg->api_url)
		return NULL;
	dt = calloc(1, sizeof(*dt));
	if (!dt)
		return NULL;
	pthread_mutex_init(&dt->old_lock, NULL);
	pthread_mutex_init(&dt->act_lock, NULL);
	dt->hc = hc;
	dt->keepalive = cfg->keepalive;
	dt->wait_timeout_ms = cfg->wait_timeout_ms;
	dt->api_url = str_dup_trim_slash(cfg->api_url);
	if (!dt->api_url)
		goto fail;
	if (cfg->target && cfg->target[0]) {
		dt->target = strdup(cfg->target);
		if (!dt->target)
			goto fail;
	}

	if (cred) {
		sb_addf(&sb, "Bearer %s", cred);
		if (sb.oom)
			goto fail;
		rc = http_client_set_auth(hc, sb_str(&sb));
		explicit_bzero(sb.buf, sb.len);
		sb_free(&sb);
		if (rc)
			goto fail;
	}
	/* The organization header goes with a JWT only, as the SDKs do: an
	 * API key is bound to its organization already. */
	if (!cfg->api_key && cfg->jwt) {
		if (!cfg->org_id || !cfg->org_id[0]) {
			log_warn("a JWT needs an organization id (DAYTONA_ORGANIZATION_ID)");
		} else {
			sb_addf(&sb, "X-Daytona-Organization-ID: %s", cfg->org_id);
			rc = sb.oom ? -ENOMEM : http_client_add_header(hc, sb_str(&sb));
			sb_free(&sb);
			if (rc)
				goto fail;
		}
	}
	/* The SDK version selects the toolbox's output formats (CONTRACT 4.3). */
	if (http_client_add_header(hc, "X-Daytona-SDK-Version: " DT_SDK_VERSION) ||
	    http_client_add_header(hc, "X-Daytona-Source: daytonafs"))
		goto fail;
	return dt;
fail:
	sb_free(&sb);
	dt_client_free(dt);
	return NULL;
}

void dt_client_free(struct dt_client *dt)
{
	if (!dt)
		return;
	free(dt->api_url);
	free(dt->target);
	free(dt->old);
	pthread_mutex_destroy(&dt->old_lock);
	free(dt->act);
	pthread_mutex_destroy(&dt->act_lock);
	free(dt);
}

struct http_client *dt_http(struct dt_client *dt)
{
	return dt->hc;
}

/* ---- requests ------------------------------------------------------------- */


/* How long a toolbox call keeps trying through the proxy's refusals
 * (dt_toolbox_refusal): wait_timeout, as long as a start may take to be
 * seen everywhere; REFUSAL_BUDGET_MS where that has no limit. */
#define REFUSAL_BUDGET_MS   120000L
#define REFUSAL_BACKOFF_MS  200L
#define REFUSAL_BACKOFF_MAX 5000L

static long refusal_budget_ms(const struct dt_client *dt)
{
	return dt->wait_timeout_ms > 0 ? dt->wait_timeout_ms : REFUSAL_BUDGET_MS;
}

/* 200 ms doubling up to 5 s, or the server's Retry-After if longer. */
static long refusal_backoff_ms(int tries, long retry_after_s)
{
	long d = REFUSAL_BACKOFF_MS;

	for (int i = 0; i < tries && d < REFUSAL_BACKOFF_MAX; i++)
		d *= 2;
	if (d > REFUSAL_BACKOFF_MAX)
		d = REFUSAL_BACKOFF_MAX;
	if (retry_after_s > 0 && retry_after_s * 1000 > d)
		d = retry_after_s * 1000 > 30000 ? 30000 : retry_after_s * 1000;
	return d;
}

/* Performs the call. Returns 0 on a 2xx; on any other status the mapped
 * errno with err filled (resp still holds the response, so callers can
 * treat a particular status specially); on a transport error its errno. */
int dt_do(struct dt_client *dt, const struct call *c, struct http_response *resp,
	  struct sp_error *err)
{
	const char *headers[3];
	struct http_request req;
	char errbuf[400];
	size_t nh = 0;
	long start = clock_mono_ms();
	int rc;

	/* dt_toolbox_url() with no base: the API gave no toolboxProxyUrl and asking
	 * for it failed (sandbox_box). */
	if (c->toolbox && c->url[0] == '/')
		return sp_error_set(err, -EHOSTDOWN, 0, "%s: the sandbox's toolbox address is not known "
				    "(the API gave none)", c->what);
	/* A change made through the mount lets one request count
	 * (dt_note_change); a retry of it below sends the same headers. */
	if (c->toolbox && !dt->keepalive && !dt_activity_take(dt, c->url, c->activity) && !c->activity)
		headers[nh++] = SKIP_ACTIVITY_HEADER;
	if (c->range)
		headers[nh++] = c->range;
	headers[nh] = NULL;

	memset(&req, 0, sizeof(req));
	req.method = c->method;
	req.url = c->url;
	req.headers = headers;
	if (c->json) {
		req.body = c->json;
		req.body_len = strlen(c->json);
		req.content_type = "application/json";
	}
	req.parts = c->parts;
	req.n_parts = c->n_parts;
	req.sink = c->sink;
	req.sink_ctx = c->sink_ctx;
	req.max_body = c->max_body;
	req.idempotent = c->idempotent;
	req.streaming = c->streaming;
	req.sink_idle = c->sink_idle;
	req.timeout_ms = c->timeout_ms;

	for (int tries = 0;; tries++) {
		long wait;

		rc = http_do(dt->hc, &req, resp, errbuf, sizeof(errbuf));
		if (rc < 0 || !c->toolbox || dt_toolbox_refusal(resp->status, resp->body) == DT_REFUSED_NOT)
			break;
		wait = refusal_backoff_ms(tries, resp->retry_after_s);
		if (clock_mono_ms() - start + wait > refusal_budget_ms(dt))
			break;
		log_debug("%s: HTTP %ld from the toolbox proxy (%s), again in %ld ms", c->what, resp->status,
			  resp->status == 404 ? "runner has no container" : "throttled", wait);
		http_response_free(resp);
		sleep_ms(wait);
	}
	if (rc < 0) {
		if (resp->status && resp->body && !(resp->status >= 200 && resp->status < 300))
			return status_error(err, resp, c->toolbox, c->what);
		return sp_error_set(err, rc, resp->status, "%s: %s", c->what,
				    errbuf[0] ? errbuf : strerror(-rc));
	}
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	return status_error(err, resp, c->toolbox, c->what);
}

/* Parses a 2xx JSON body; NULL (err set, -EIO) when it is not JSON. */
cJSON *dt_parse_body(const struct http_response *resp, const char *what, struct sp_error *err)
{
	cJSON *root = NULL;

	if (resp->body && resp->body_len)
		root = cJSON_ParseWithLength(resp->body, resp->body_len);
	if (!root)
		dt_malformed(err, resp->status, what);
	return root;
}

int dt_do_json(struct dt_client *dt, const struct call *c, dt_json_fn parse, void *out, struct sp_error *err)
{
	struct http_response resp;
	cJSON *root;
	int rc = dt_do(dt, c, &resp, err);

	if (!rc) {
		root = dt_parse_body(&resp, c->what, err);
		if (!root) {
			rc = -EIO;
		} else {
			rc = parse(root, out);
			if (rc == -ENOMEM)
				dt_oom(err);
			else if (rc == -EINVAL)
				rc = dt_malformed(err, resp.status, c->what);
			else if (rc)
				rc = sp_error_set(err, rc, resp.status, "%s: the answer is too long", c->what);
			cJSON_Delete(root);
		}
	}
	http_response_free(&resp);
	return rc;
}

int dt_json_str(const cJSON *root, void *out)
{
	struct dt_json_str *s = out;
	const char *v = dt_jstr(root, s->key);

	if (!v || !v[0])
		return -EINVAL;
	return str_copy(s->out, s->cap, v) ? 0 : s->too_long;
}

int dt_delete_object(struct dt_client *dt, const char *collection, const char *noun, const char *id,
		     int *status, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct call c = { .method = "DELETE" };
	int rc;

	dt_error_clear(err);
	if (status)
		*status = 0;
	dt_api_url(&url, dt, collection);
	url_add_path_segment(&url, id);
	sb_addf(&what, "delete %s %s", noun, id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		c.url = sb_str(&url);
		c.what = sb_str(&what);
		rc = dt_do(dt, &c, &resp, err);
		if (status)
			*status = resp.status;
		http_response_free(&resp);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

void dt_api_url(struct strbuf *sb, const struct dt_client *dt, const char *path)
{
	sb_adds(sb, dt->api_url);
	sb_adds(sb, path);
}

/* {api}/sandbox/{id}{suffix} */
void dt_sandbox_url(struct strbuf *sb, const struct dt_client *dt, const char *id, const char *suffix)
{
	dt_api_url(sb, dt, "/sandbox/");
	url_add_path_segment(sb, id);
	if (suffix)
		sb_adds(sb, suffix);
}

/* {toolbox_url}/{id}{endpoint} */
void dt_toolbox_url(struct strbuf *sb, const struct sp_box *box, const char *endpoint)
{
	size_t n = strlen(box->toolbox_url);

	while (n > 0 && box->toolbox_url[n - 1] == '/')
		n--;
	sb_add(sb, box->toolbox_url, n);
	sb_addc(sb, '/');
	url_add_path_segment(sb, box->id);
	sb_adds(sb, endpoint);
}

void dt_add_query(struct strbuf *sb, const char *name, const char *value)
{
	sb_addc(sb, strchr(sb_str(sb), '?') ? '&' : '?');
	sb_adds(sb, name);
	sb_addc(sb, '=');
	url_add_query_value(sb, value);
}

int dt_oom(struct sp_error *err)
{
	return sp_error_set(err, -ENOMEM, 0, "out of memory");
}

