/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona.c - the Daytona client, built to ../shared/daytona-api/CONTRACT.md.
 *
 * Two address spaces: the control plane ({api_url}/sandbox/...) and each
 * sandbox's toolbox ({toolboxProxyUrl}/{id}/files...). Both take the same
 * Bearer credential. Every reply is parsed defensively: a response that is
 * not the JSON we expect is -EIO "malformed response from ...", never a
 * crash, whatever the server sends.
 */
#include "daytona.h"

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

#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define SKIP_ACTIVITY_HEADER "X-Daytona-Skip-Last-Activity-Update: true"
#define LIST_PAGE_LIMIT      200
#define SNAPSHOT_PAGE_LIMIT  100
#define MAX_PAGES            10000   /* a server looping on its cursor must not hang us */
#define DOWNLOAD_RESUMES     3       /* re-requests of a download reset mid-body */

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
};

/* ---- errors -------------------------------------------------------------- */

int dt_error_set(struct dt_error *err, int rc, long http_status, const char *fmt, ...)
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

static void error_clear(struct dt_error *err)
{
	if (err) {
		err->http_status = 0;
		err->err = 0;
		err->message[0] = '\0';
	}
}

/* The human message of an error body: "message" (a string, or an array of
 * validation messages), else "error", else "errors" (bulk-upload). */
static bool body_message(const char *body, char *out, size_t cap)
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

	if ((status != 404 && status != 401) || !body_message(body, msg, sizeof(msg)))
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
		if (toolbox && body_message(body, msg, sizeof(msg)) &&
		    (strcasestr(msg, "Is the Sandbox started") || strcasestr(msg, "failed to get runner info")))
			return -EHOSTDOWN;
		/* The control plane answers a lifecycle call in the wrong state with a
		 * 400 (contract 2.3): that is a state conflict, EBUSY, not bad input. */
		if (!toolbox && body_message(body, msg, sizeof(msg)) &&
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
		if (body_message(body, msg, sizeof(msg)) && strcasestr(msg, "already exists"))
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

bool dt_error_transient(const struct dt_error *err)
{
	if (!err)
		return false;
	if (err->http_status >= 500 || err->http_status == 429)
		return true;
	switch (err->err) {
	case EAGAIN:
	case ECONNRESET:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	case ETIMEDOUT:
		/* 408: the sandbox ran the command out of its own time limit. */
		return err->http_status != 408;
	default:
		return false;
	}
}

/* Fills err from a non-2xx response: the server's message when it sent one,
 * else a sentence from the status (the toolbox's fs errors have no body). */
static int status_error(struct dt_error *err, const struct http_response *resp, bool toolbox,
			const char *what)
{
	int rc = dt_errno_for_status(resp->status, toolbox, resp->body);
	char msg[400];

	if (rc == 0)
		rc = -EIO;   /* a 1xx/3xx we did not ask for */
	if (body_message(resp->body, msg, sizeof(msg)))
		return dt_error_set(err, rc, resp->status, "%s: %s (HTTP %ld)", what, msg, resp->status);
	return dt_error_set(err, rc, resp->status, "%s: %s (HTTP %ld)", what, strerror(-rc), resp->status);
}

static int malformed(struct dt_error *err, long status, const char *what)
{
	return dt_error_set(err, -EIO, status, "malformed response from %s", what);
}

/* ---- client -------------------------------------------------------------- */

static char *xstrdup_trim_slash(const char *s)
{
	size_t n = strlen(s);
	char *out;

	while (n > 0 && s[n - 1] == '/')
		n--;
	out = malloc(n + 1);
	if (out) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return out;
}

struct dt_client *dt_client_new(struct http_client *hc, const struct dt_config *cfg)
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
	dt->hc = hc;
	dt->keepalive = cfg->keepalive;
	dt->wait_timeout_ms = cfg->wait_timeout_ms;
	dt->api_url = xstrdup_trim_slash(cfg->api_url);
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
	free(dt);
}

struct http_client *dt_http(struct dt_client *dt)
{
	return dt->hc;
}

/* ---- requests ------------------------------------------------------------- */

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
	bool activity;              /* counts as sandbox activity: no skip header */
	long timeout_ms;
};

static long now_ms(void);
static void sleep_ms(long ms);

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
static int dt_do(struct dt_client *dt, const struct call *c, struct http_response *resp,
		 struct dt_error *err)
{
	const char *headers[3];
	struct http_request req;
	char errbuf[400];
	size_t nh = 0;
	long start = now_ms();
	int rc;

	/* toolbox_url() with no base: the API gave no toolboxProxyUrl and asking
	 * for it failed (sandbox_box). */
	if (c->toolbox && c->url[0] == '/')
		return dt_error_set(err, -EHOSTDOWN, 0, "%s: the sandbox's toolbox address is not known "
				    "(the API gave none)", c->what);
	if (c->toolbox && !dt->keepalive && !c->activity)
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
	req.timeout_ms = c->timeout_ms;

	for (int tries = 0;; tries++) {
		long wait;

		rc = http_do(dt->hc, &req, resp, errbuf, sizeof(errbuf));
		if (rc < 0 || !c->toolbox || dt_toolbox_refusal(resp->status, resp->body) == DT_REFUSED_NOT)
			break;
		wait = refusal_backoff_ms(tries, resp->retry_after_s);
		if (now_ms() - start + wait > refusal_budget_ms(dt))
			break;
		log_debug("%s: HTTP %ld from the toolbox proxy (%s), again in %ld ms", c->what, resp->status,
			  resp->status == 404 ? "runner has no container" : "throttled", wait);
		http_response_free(resp);
		sleep_ms(wait);
	}
	if (rc < 0) {
		if (resp->status && resp->body && !(resp->status >= 200 && resp->status < 300))
			return status_error(err, resp, c->toolbox, c->what);
		return dt_error_set(err, rc, resp->status, "%s: %s", c->what,
				    errbuf[0] ? errbuf : strerror(-rc));
	}
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	return status_error(err, resp, c->toolbox, c->what);
}

/* Parses a 2xx JSON body; NULL (err set, -EIO) when it is not JSON. */
static cJSON *parse_body(const struct http_response *resp, const char *what, struct dt_error *err)
{
	cJSON *root = NULL;

	if (resp->body && resp->body_len)
		root = cJSON_ParseWithLength(resp->body, resp->body_len);
	if (!root)
		malformed(err, resp->status, what);
	return root;
}

static void api_url(struct strbuf *sb, const struct dt_client *dt, const char *path)
{
	sb_adds(sb, dt->api_url);
	sb_adds(sb, path);
}

/* {api}/sandbox/{id}{suffix} */
static void sandbox_url(struct strbuf *sb, const struct dt_client *dt, const char *id, const char *suffix)
{
	api_url(sb, dt, "/sandbox/");
	url_add_path_segment(sb, id);
	if (suffix)
		sb_adds(sb, suffix);
}

/* {toolbox_url}/{id}{endpoint} */
static void toolbox_url(struct strbuf *sb, const struct dt_box *box, const char *endpoint)
{
	size_t n = strlen(box->toolbox_url);

	while (n > 0 && box->toolbox_url[n - 1] == '/')
		n--;
	sb_add(sb, box->toolbox_url, n);
	sb_addc(sb, '/');
	url_add_path_segment(sb, box->id);
	sb_adds(sb, endpoint);
}

static void add_query(struct strbuf *sb, const char *name, const char *value)
{
	sb_addc(sb, strchr(sb_str(sb), '?') ? '&' : '?');
	sb_adds(sb, name);
	sb_addc(sb, '=');
	url_add_query_value(sb, value);
}

static int oom(struct dt_error *err)
{
	return dt_error_set(err, -ENOMEM, 0, "out of memory");
}

/* ---- JSON helpers --------------------------------------------------------- */

static const char *jstr(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void jcopy(char *dst, size_t cap, const cJSON *obj, const char *key)
{
	const char *s = jstr(obj, key);

	str_copy(dst, cap, s ? s : "");
}

static void jtime(struct timespec *ts, const cJSON *obj, const char *key)
{
	const char *s = jstr(obj, key);

	if (!s || dt_parse_rfc3339(s, ts) != 0)
		ts->tv_sec = ts->tv_nsec = 0;
}

/* cJSON_Print with a final newline, for the info files. */
static char *pretty_json(const cJSON *obj)
{
	char *s = cJSON_Print(obj), *out;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	out = realloc(s, n + 2);
	if (!out) {
		free(s);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	return out;
}

/* ---- time and mode parsers ------------------------------------------------ */

static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static int days_in_month(int year, int month)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : dm[month - 1];
}

/* RFC 3339 ("2026-06-23T13:33:38.123456789Z", "...+02:00"), or with
 * go_string Go's time.Time.String() ("2026-06-23 13:33:38.5 +0000 UTC"). */
static int parse_time(const char *s, struct timespec *out, bool go_string)
{
	const char *p = s;
	int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
	long nsec = 0;
	struct tm tm;
	time_t t;

	if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
	    !digits(&p, 2, &day))
		return -EINVAL;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min) || *p++ != ':' ||
	    !digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.' || *p == ',') {
		long scale = 100000000;

		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		/* Nanoseconds: digits past the ninth are dropped. */
		for (; *p >= '0' && *p <= '9'; p++) {
			nsec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (go_string && *p == ' ')
		p++;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (!digits(&p, 2, &oh))
			return -EINVAL;
		if (*p == ':')
			p++;
		if (!digits(&p, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (go_string) {
		if (*p != '\0' && *p != ' ')   /* " UTC", " m=+0.1" ... */
			return -EINVAL;
	} else if (*p != '\0') {
		return -EINVAL;
	}
	if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
	    sec > 60 || oh > 23 || om > 59)
		return -EINVAL;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	t -= (time_t)sign * (oh * 3600 + om * 60);
	out->tv_sec = t;
	out->tv_nsec = nsec;
	return 0;
}

int dt_parse_rfc3339(const char *s, struct timespec *out)
{
	return s ? parse_time(s, out, false) : -EINVAL;
}

/*
 * Go's FileMode.String(): the letters of the set type and special bits, in
 * the order "dalTLDpSugct?", then the nine permission characters; "-" when
 * no letter is set.
 */
int dt_parse_go_mode(const char *s, mode_t *out)
{
	static const char rwx[] = "rwxrwxrwx";
	static const char letters[] = "dalTLDpSugct?";
	bool set[sizeof(letters)] = { false };
	size_t n, plen, i;
	const char *perm;
	mode_t mode = 0;

	if (!s)
		return -EINVAL;
	n = strlen(s);
	if (n < 10)
		return -EINVAL;
	plen = n - 9;
	perm = s + plen;
	if (!(plen == 1 && s[0] == '-')) {
		for (i = 0; i < plen; i++) {
			const char *l = strchr(letters, s[i]);

			if (!l || !*l)
				return -EINVAL;
			set[l - letters] = true;
		}
	}
	for (i = 0; i < 9; i++) {
		if (perm[i] == rwx[i])
			mode |= (mode_t)(0400 >> i);
		else if (perm[i] != '-')
			return -EINVAL;
	}
#define HAS(c) set[strchr(letters, (c)) - letters]
	if (HAS('d'))
		mode |= S_IFDIR;
	else if (HAS('L'))
		mode |= S_IFLNK;
	else if (HAS('D') && !HAS('c'))
		mode |= S_IFBLK;
	else if (HAS('c'))
		mode |= S_IFCHR;
	else if (HAS('p'))
		mode |= S_IFIFO;
	else if (HAS('S'))
		mode |= S_IFSOCK;
	else
		mode |= S_IFREG;
	if (HAS('u'))
		mode |= S_ISUID;
	if (HAS('g'))
		mode |= S_ISGID;
	if (HAS('t'))
		mode |= S_ISVTX;
#undef HAS
	*out = mode;
	return 0;
}

/* A numeric owner, as a string ("1001") or a number; 0 otherwise. */
static unsigned long jid(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char *end;
	unsigned long v;

	if (cJSON_IsNumber(it))
		return it->valuedouble >= 0 ? (unsigned long)it->valuedouble : 0;
	if (!cJSON_IsString(it) || !it->valuestring[0])
		return 0;
	v = strtoul(it->valuestring, &end, 10);
	return *end == '\0' ? v : 0;
}

int dt_fileinfo_from_json(const struct cJSON *obj, struct dt_fileinfo *out)
{
	const cJSON *it;
	const char *s;
	mode_t mode = 0;
	bool have_mode = false;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj))
		return -EINVAL;
	s = jstr(obj, "name");
	if (!s || !s[0])
		return -EINVAL;
	out->name = strdup(s);
	if (!out->name)
		return -ENOMEM;

	it = cJSON_GetObjectItemCaseSensitive(obj, "size");
	if (cJSON_IsNumber(it) && it->valuedouble > 0)
		out->size = (uint64_t)it->valuedouble;

	s = jstr(obj, "mode");
	if (s && dt_parse_go_mode(s, &mode) == 0)
		have_mode = true;
	it = cJSON_GetObjectItemCaseSensitive(obj, "isDir");
	if (!have_mode) {
		/* No usable mode string: the permissions field ("0644") and isDir. */
		const char *perm = jstr(obj, "permissions");
		char *end;
		unsigned long p = perm ? strtoul(perm, &end, 8) : 0;

		if (perm && *perm && *end == '\0' && p <= 07777)
			mode = (mode_t)p;
		else
			mode = cJSON_IsTrue(it) ? 0755 : 0644;
		mode |= cJSON_IsTrue(it) ? S_IFDIR : S_IFREG;
	} else if (cJSON_IsBool(it) && cJSON_IsTrue(it) != S_ISDIR(mode)) {
		/* isDir is the type after following a symlink; trust it. */
		mode = (mode & ~(mode_t)S_IFMT) | (cJSON_IsTrue(it) ? S_IFDIR : S_IFREG);
	}
	out->mode = mode;
	out->is_dir = S_ISDIR(mode);
	out->uid = (uid_t)jid(obj, "owner");
	out->gid = (gid_t)jid(obj, "group");

	s = jstr(obj, "modifiedAt");
	if (!s || dt_parse_rfc3339(s, &out->mtime) != 0) {
		s = jstr(obj, "modTime");
		if (!s || parse_time(s, &out->mtime, true) != 0)
			out->mtime.tv_sec = out->mtime.tv_nsec = 0;
	}
	return 0;
}

void dt_fileinfo_free(struct dt_fileinfo *fi, size_t n)
{
	if (!fi)
		return;
	for (size_t i = 0; i < n; i++)
		free(fi[i].name);
	free(fi);
}

/* ---- sandboxes: daemon versions ------------------------------------------- */

/* Remembers whether sb's daemon runs commands through a shell. An object
 * without daemonVersion changes nothing. */
static void note_daemon(struct dt_client *dt, const struct dt_sandbox *sb)
{
	bool old = !dt_daemon_runs_shell(sb->daemon_version);
	size_t i;

	if (!sb->daemon_version[0])
		return;
	pthread_mutex_lock(&dt->old_lock);
	for (i = 0; i < dt->n_old && strcmp(dt->old[i].id, sb->id); i++)
		;
	if (i < dt->n_old && !old) {
		dt->old[i] = dt->old[--dt->n_old];
	} else if (i < dt->n_old) {
		str_copy(dt->old[i].version, sizeof(dt->old[i].version), sb->daemon_version);
	} else if (old) {
		struct old_daemon *nv = realloc(dt->old, (dt->n_old + 1) * sizeof(*nv));

		if (nv) {   /* out of memory: the command is sent, and fails in the sandbox */
			dt->old = nv;
			str_copy(nv[dt->n_old].id, sizeof(nv[dt->n_old].id), sb->id);
			str_copy(nv[dt->n_old].version, sizeof(nv[dt->n_old].version), sb->daemon_version);
			dt->n_old++;
		}
	}
	pthread_mutex_unlock(&dt->old_lock);
}

/* Copies the daemon version of sandbox id into out when it is too old to run
 * a shell; false when it is not (or not known to be). */
static bool old_daemon(struct dt_client *dt, const char *id, char *out, size_t cap)
{
	bool found = false;

	pthread_mutex_lock(&dt->old_lock);
	for (size_t i = 0; i < dt->n_old && !found; i++) {
		if (!strcmp(dt->old[i].id, id)) {
			str_copy(out, cap, dt->old[i].version);
			found = true;
		}
	}
	pthread_mutex_unlock(&dt->old_lock);
	return found;
}

/* ---- sandboxes: parsing --------------------------------------------------- */

void dt_sandbox_clear(struct dt_sandbox *sb)
{
	if (!sb)
		return;
	free(sb->json);
	memset(sb, 0, sizeof(*sb));
}

/* volumes[].mountPath of a Sandbox, one per line. A list that does not fit,
 * or a path with a newline, gives "/": every path is then taken to be on a
 * volume, which costs a command per rename, never a non-atomic one. False
 * when the object does not say (a list item). */
static bool volume_paths(char *out, size_t cap, const cJSON *obj)
{
	const cJSON *vols = cJSON_GetObjectItemCaseSensitive(obj, "volumes");
	const cJSON *v;
	size_t len = 0;

	out[0] = '\0';
	if (!cJSON_IsArray(vols))
		return cJSON_IsNull(vols);
	cJSON_ArrayForEach(v, vols) {
		const char *mp = jstr(v, "mountPath");
		size_t n = mp ? strlen(mp) : 0;

		if (!n)
			continue;
		if (strchr(mp, '\n') || len + n + 2 > cap) {
			str_copy(out, cap, "/");
			return true;
		}
		memcpy(out + len, mp, n);
		len += n;
		out[len++] = '\n';
		out[len] = '\0';
	}
	return true;
}

bool dt_path_on_volume(const char *volume_paths, const char *path)
{
	const char *p = volume_paths;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char mount[1024];

		if (n < sizeof(mount)) {
			memcpy(mount, p, n);
			mount[n] = '\0';
			if (path_is_within(path, mount))
				return true;
		}
		p = nl ? nl + 1 : NULL;
	}
	return false;
}

static bool has_slash_or_control(const char *s)
{
	for (; *s; s++)
		if (*s == '/' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

void dt_json_mark_nul_escapes(char *text, size_t len)
{
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		if (!in_string) {
			in_string = text[i] == '"';
			continue;
		}
		if (text[i] == '"') {
			in_string = false;
		} else if (text[i] == '\\' && i + 1 < len) {
			if (len - i >= 6 && !memcmp(text + i + 1, "u0000", 5))
				text[i + 5] = '1';
			i++;   /* the escaped character is never a quote that ends the string */
		}
	}
}

/* "v0.156.0", "0.156.0-dev" ... */
bool dt_daemon_runs_shell(const char *version)
{
	unsigned long major, minor;
	const char *p = version;
	char *end;

	if (!p || !*p)
		return true;
	if (*p == 'v' || *p == 'V')
		p++;
	if (*p < '0' || *p > '9')
		return true;
	major = strtoul(p, &end, 10);
	if (*end != '.' || end[1] < '0' || end[1] > '9')
		return true;
	minor = strtoul(end + 1, &end, 10);
	return major > 0 || minor >= 156;
}

int dt_sandbox_from_json(const struct cJSON *obj, struct dt_sandbox *out)
{
	const char *id, *name;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj))
		return -EINVAL;
	id = jstr(obj, "id");
	/* The id goes into URLs: one cut to fit, or one that is not a single
	 * path segment, would address another sandbox or none. */
	if (!id || !id[0] || !strcmp(id, ".") || !strcmp(id, "..") || has_slash_or_control(id) ||
	    !str_copy(out->id, sizeof(out->id), id))
		return -EINVAL;
	name = jstr(obj, "name");
	out->name_exact = str_copy(out->name, sizeof(out->name), name ? name : "");
	jcopy(out->daemon_version, sizeof(out->daemon_version), obj, "daemonVersion");
	jcopy(out->state, sizeof(out->state), obj, "state");
	jcopy(out->desired_state, sizeof(out->desired_state), obj, "desiredState");
	/* A cut address would send the token to another path: one that does
	 * not fit counts as none given (the mount then asks for it). */
	if (!str_copy(out->toolbox_url, sizeof(out->toolbox_url), jstr(obj, "toolboxProxyUrl") ?
		      jstr(obj, "toolboxProxyUrl") : ""))
		out->toolbox_url[0] = '\0';
	jcopy(out->error_reason, sizeof(out->error_reason), obj, "errorReason");
	jcopy(out->user, sizeof(out->user), obj, "user");
	jcopy(out->snapshot, sizeof(out->snapshot), obj, "snapshot");
	jtime(&out->created_at, obj, "createdAt");
	jtime(&out->updated_at, obj, "updatedAt");
	out->volumes_known = volume_paths(out->volume_paths, sizeof(out->volume_paths), obj);
	out->json = pretty_json(obj);
	return out->json ? 0 : -ENOMEM;
}

/* Parses a response that must be one Sandbox. */
static cJSON *parse_sandbox_body(struct http_response *resp, const char *what, struct dt_error *err);

static int sandbox_from_resp(struct dt_client *dt, struct http_response *resp, const char *what,
			     struct dt_sandbox *out, struct dt_error *err)
{
	cJSON *root = parse_sandbox_body(resp, what, err);
	int rc;

	if (!root)
		return -EIO;
	rc = dt_sandbox_from_json(root, out);
	cJSON_Delete(root);
	if (rc == -ENOMEM)
		return oom(err);
	if (rc)
		return malformed(err, resp->status, what);
	note_daemon(dt, out);
	return 0;
}

/* ---- sandboxes: calls ----------------------------------------------------- */

void dt_sandbox_list_free(struct dt_sandbox *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].json);
	free(list);
}

static int append_sandboxes(struct dt_client *dt, const cJSON *items, struct dt_sandbox **list, size_t *n,
			    size_t *cap)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, items) {
		struct dt_sandbox sb;
		int rc;

		if (*n == DT_LIST_MAX_ITEMS)
			return -EFBIG;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 64;
			struct dt_sandbox *nl = realloc(*list, nc * sizeof(**list));

			if (!nl)
				return -ENOMEM;
			*list = nl;
			*cap = nc;
		}
		rc = dt_sandbox_from_json(it, &sb);
		if (rc == -ENOMEM)
			return rc;
		if (rc) {
			log_debug("sandbox list: skipping an item without a usable id");
			continue;
		}
		note_daemon(dt, &sb);
		(*list)[(*n)++] = sb;
	}
	return 0;
}

/* A sandbox body parsed, with NUL escapes marked first (dt_json_mark_nul_escapes). */
static cJSON *parse_sandbox_body(struct http_response *resp, const char *what, struct dt_error *err)
{
	if (resp->body)
		dt_json_mark_nul_escapes(resp->body, resp->body_len);
	return parse_body(resp, what, err);
}

/* The cursors a listing was given so far: a server that hands out any of
 * them again (not only the last one) would make the listing loop. */
struct cursor_seen {
	char **v;
	size_t n;
};

static bool cursor_was_seen(const struct cursor_seen *cs, const char *cursor)
{
	for (size_t i = 0; i < cs->n; i++)
		if (!strcmp(cs->v[i], cursor))
			return true;
	return false;
}

static int cursor_remember(struct cursor_seen *cs, const char *cursor)
{
	char **nv = realloc(cs->v, (cs->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	cs->v = nv;
	cs->v[cs->n] = strdup(cursor);
	if (!cs->v[cs->n])
		return -ENOMEM;
	cs->n++;
	return 0;
}

static void cursor_seen_free(struct cursor_seen *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		free(cs->v[i]);
	free(cs->v);
}

int dt_sandbox_list(struct dt_client *dt, struct dt_sandbox **out, size_t *n, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct dt_sandbox *list = NULL;
	struct cursor_seen seen = { 0 };
	const char *cursor = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0, page;
	bool more = true;

	error_clear(err);
	*out = NULL;
	*n = 0;
	for (page = 0; more; page++) {
		struct http_response resp;
		struct call c = { .method = "GET", .what = "list sandboxes", .idempotent = true,
				  .max_body = 64u << 20 };
		const cJSON *items, *next;
		cJSON *root;

		if (page == DT_LIST_MAX_PAGES) {
			rc = dt_error_set(err, -EIO, 0, "list sandboxes: more than %d pages: giving up",
					  DT_LIST_MAX_PAGES);
			break;
		}
		sb_reset(&url);
		api_url(&url, dt, "/sandbox");
		/* The default order (lastActivityAt desc) moves a sandbox that is
		 * used while we page past the cursor: creation order does not. */
		sb_addf(&url, "?limit=%d&sort=createdAt&order=asc", LIST_PAGE_LIMIT);
		if (cursor)
			add_query(&url, "cursor", cursor);
		if (url.oom) {
			rc = oom(err);
			break;
		}
		c.url = sb_str(&url);
		rc = dt_do(dt, &c, &resp, err);
		if (rc) {
			http_response_free(&resp);
			break;
		}
		root = parse_sandbox_body(&resp, c.what, err);
		if (!root) {
			http_response_free(&resp);
			rc = -EIO;
			break;
		}
		/* {"items": [...], "nextCursor": "..."|null}; a bare array is
		 * accepted too (one page). */
		items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
		next = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "nextCursor") : NULL;
		more = false;
		if (!cJSON_IsArray(items)) {
			rc = malformed(err, resp.status, c.what);
		} else {
			rc = append_sandboxes(dt, items, &list, &cnt, &cap);
			if (rc == -EFBIG)
				rc = dt_error_set(err, -EIO, resp.status,
						  "list sandboxes: more than %d sandboxes: giving up", DT_LIST_MAX_ITEMS);
			else if (rc)
				oom(err);
		}
		if (!rc && cJSON_IsString(next) && next->valuestring[0]) {
			if (cursor_was_seen(&seen, next->valuestring))
				rc = dt_error_set(err, -EIO, resp.status,
						  "list sandboxes: the server repeated a page cursor: giving up");
			else if (cursor_remember(&seen, next->valuestring))
				rc = oom(err);
			else
				more = true;
			cursor = seen.n ? seen.v[seen.n - 1] : NULL;
		}
		cJSON_Delete(root);
		http_response_free(&resp);
		if (rc)
			break;
	}
	sb_free(&url);
	cursor_seen_free(&seen);
	if (rc) {
		dt_sandbox_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

int dt_sandbox_get(struct dt_client *dt, const char *id_or_name, struct dt_sandbox *out, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct call c = { .method = "GET", .idempotent = true };
	int rc;

	error_clear(err);
	memset(out, 0, sizeof(*out));
	sandbox_url(&url, dt, id_or_name, NULL);
	sb_addf(&what, "get sandbox %s", id_or_name);
	if (url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do(dt, &c, &resp, err);
	if (!rc)
		rc = sandbox_from_resp(dt, &resp, c.what, out, err);
	http_response_free(&resp);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_toolbox_url(struct dt_client *dt, const char *id, char *out, size_t cap, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct call c = { .method = "GET", .idempotent = true };
	cJSON *root = NULL;
	const char *u;
	int rc;

	error_clear(err);
	if (cap)
		out[0] = '\0';
	sandbox_url(&url, dt, id, "/toolbox-proxy-url");
	sb_addf(&what, "get the toolbox address of sandbox %s", id);
	if (url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do(dt, &c, &resp, err);
	if (!rc) {
		root = parse_body(&resp, c.what, err);
		u = jstr(root, "url");
		if (!root)
			rc = -EIO;
		else if (!u || !u[0])
			rc = malformed(err, resp.status, c.what);
		else if (!str_copy(out, cap, u))
			rc = dt_error_set(err, -EIO, resp.status, "%s: the address is too long", c.what);
	}
	http_response_free(&resp);
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- waiting -------------------------------------------------------------- */

struct wait_spec {
	const char *target;         /* done when the state is this ... */
	const char *leave;          /* ... or when the state is no longer this */
	bool gone_ok;               /* a 404 also ends the wait (stop: ephemeral) */
	bool want_gone;             /* only a 404 ends the wait (delete) */
	const char *verb;           /* for messages: "start", "stop" ... */
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static bool is_failed_state(const char *state)
{
	return strcmp(state, "error") == 0 || strcmp(state, "build_failed") == 0;
}

/*
 * Polls GET /sandbox/{id} as the SDKs do: every 100 ms, and after 5 s the
 * interval grows by 1.1 per poll up to 1 s; dt->wait_timeout_ms bounds the
 * whole wait (0: no bound). cur holds the state already known (from the
 * action's response) and, on return, the last state seen.
 */
static int wait_state(struct dt_client *dt, const struct wait_spec *ws, struct dt_sandbox *cur,
		      dt_state_fn on_state, void *ctx, struct dt_error *err)
{
	char id[sizeof(cur->id)], reported[sizeof(cur->state)] = "";
	long start = now_ms();
	double interval = 100;
	int rc;

	str_copy(id, sizeof(id), cur->id);
	for (;;) {
		long elapsed;

		if (on_state && strcmp(reported, cur->state) != 0) {
			str_copy(reported, sizeof(reported), cur->state);
			on_state(ctx, cur->state);
		}
		if (!ws->want_gone) {
			if (ws->target && strcmp(cur->state, ws->target) == 0)
				return 0;
			if (ws->leave && cur->state[0] && strcmp(cur->state, ws->leave) != 0 &&
			    !is_failed_state(cur->state))
				return 0;
		}
		if (is_failed_state(cur->state))
			return dt_error_set(err, -EIO, 0, "sandbox %s: %s failed: state %s%s%s", id, ws->verb,
					    cur->state, cur->error_reason[0] ? ": " : "", cur->error_reason);
		elapsed = now_ms() - start;
		if (dt->wait_timeout_ms > 0 && elapsed >= dt->wait_timeout_ms)
			return dt_error_set(err, -ETIMEDOUT, 0,
					    "sandbox %s: %s: timed out after %.1f s waiting for it to %s%s (state is %s)",
					    id, ws->verb, dt->wait_timeout_ms / 1000.0,
					    ws->want_gone ? "be destroyed" : ws->target ? "become " : "leave ",
					    ws->want_gone ? "" : ws->target ? ws->target : ws->leave,
					    cur->state[0] ? cur->state : "unknown");
		sleep_ms((long)interval);
		if (now_ms() - start > 5000) {
			interval *= 1.1;
			if (interval > 1000)
				interval = 1000;
		}

		dt_sandbox_clear(cur);
		rc = dt_sandbox_get(dt, id, cur, err);
		if (rc == -ENOENT && (ws->gone_ok || ws->want_gone)) {
			error_clear(err);
			str_copy(cur->id, sizeof(cur->id), id);
			str_copy(cur->state, sizeof(cur->state), "destroyed");
			if (on_state)
				on_state(ctx, "destroyed");
			return 0;
		}
		if (rc)
			return rc;
	}
}

/* Runs a lifecycle call that answers with a Sandbox, then waits. */
static int action_and_wait(struct dt_client *dt, const struct call *c, const struct wait_spec *ws,
			   dt_state_fn on_state, void *ctx, struct dt_sandbox *out, struct dt_error *err)
{
	struct http_response resp;
	struct dt_sandbox cur;
	int rc;

	memset(&cur, 0, sizeof(cur));
	rc = dt_do(dt, c, &resp, err);
	if (!rc)
		rc = sandbox_from_resp(dt, &resp, c->what, &cur, err);
	http_response_free(&resp);
	if (!rc && ws)
		rc = wait_state(dt, ws, &cur, on_state, ctx, err);
	if (!rc && out)
		*out = cur;
	else
		dt_sandbox_clear(&cur);
	return rc;
}

/* The HTTP timeout for calls the server may hold (create, start): the wait. */
static long lifecycle_timeout(const struct dt_client *dt)
{
	return dt->wait_timeout_ms > 0 ? dt->wait_timeout_ms : 0;
}

/* ---- create ---------------------------------------------------------------- */

void dt_create_params_init(struct dt_create_params *p)
{
	memset(p, 0, sizeof(*p));
	p->cpu = p->memory = p->disk = p->gpu = -1;
	p->autostop = p->autoarchive = p->autodelete = LONG_MIN;
}

/* Sets key to a string in obj, replacing an earlier value (last one wins). */
static bool set_string(cJSON *obj, const char *key, const char *value)
{
	cJSON *v = cJSON_CreateString(value);

	if (!v)
		return false;
	if (cJSON_GetObjectItemCaseSensitive(obj, key))
		return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
	if (!cJSON_AddItemToObject(obj, key, v)) {
		cJSON_Delete(v);
		return false;
	}
	return true;
}

static bool add_kv_object(cJSON *root, const char *key, const struct dt_kv *kv, size_t n, cJSON **made)
{
	cJSON *obj = cJSON_AddObjectToObject(root, key);

	if (!obj)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!set_string(obj, kv[i].key, kv[i].value ? kv[i].value : ""))
			return false;
	if (made)
		*made = obj;
	return true;
}

char *dt_create_body_json(const struct dt_create_params *p, const char *default_target)
{
	cJSON *root = cJSON_CreateObject(), *labels, *vols;
	const char *target = p->target && p->target[0] ? p->target : default_target;
	long autodelete = p->ephemeral ? 0 : p->autodelete;
	char *out = NULL;
	bool ok = root != NULL;

#define NEED(x) do { if (ok && !(x)) ok = false; } while (0)
	if (p->name)
		NEED(cJSON_AddStringToObject(root, "name", p->name));
	if (p->user)
		NEED(cJSON_AddStringToObject(root, "user", p->user));
	if (p->snapshot)
		NEED(cJSON_AddStringToObject(root, "snapshot", p->snapshot));
	if (ok && p->image) {
		/* A declarative image, as the SDK's Image.base(): the server
		 * builds it (pending_build -> building_snapshot -> ...). */
		struct strbuf df = STRBUF_INIT;
		cJSON *bi = cJSON_AddObjectToObject(root, "buildInfo");

		sb_addf(&df, "FROM %s\n", p->image);
		NEED(bi && !df.oom && cJSON_AddStringToObject(bi, "dockerfileContent", sb_str(&df)));
		sb_free(&df);
	}
	if (target && target[0])
		NEED(cJSON_AddStringToObject(root, "target", target));
	if (p->cpu >= 0)
		NEED(cJSON_AddNumberToObject(root, "cpu", p->cpu));
	if (p->gpu >= 0)
		NEED(cJSON_AddNumberToObject(root, "gpu", p->gpu));
	if (p->memory >= 0)
		NEED(cJSON_AddNumberToObject(root, "memory", p->memory));
	if (p->disk >= 0)
		NEED(cJSON_AddNumberToObject(root, "disk", p->disk));
	/* The SDK always sends env and labels, with the language label. */
	if (ok)
		NEED(add_kv_object(root, "env", p->env, p->n_env, NULL));
	labels = NULL;
	if (ok)
		NEED(add_kv_object(root, "labels", p->labels, p->n_labels, &labels));
	if (ok && p->language && p->language[0])
		NEED(set_string(labels, "code-toolbox-language", p->language));
	else if (ok && !cJSON_GetObjectItemCaseSensitive(labels, "code-toolbox-language"))
		NEED(set_string(labels, "code-toolbox-language", "python"));
	if (p->is_public)
		NEED(cJSON_AddTrueToObject(root, "public"));
	if (p->autostop != LONG_MIN)
		NEED(cJSON_AddNumberToObject(root, "autoStopInterval", (double)p->autostop));
	if (p->autoarchive != LONG_MIN)
		NEED(cJSON_AddNumberToObject(root, "autoArchiveInterval", (double)p->autoarchive));
	if (autodelete != LONG_MIN)
		NEED(cJSON_AddNumberToObject(root, "autoDeleteInterval", (double)autodelete));
	if (ok && p->n_volumes) {
		vols = cJSON_AddArrayToObject(root, "volumes");
		NEED(vols);
		for (size_t i = 0; ok && i < p->n_volumes; i++) {
			cJSON *v = cJSON_CreateObject();

			NEED(v);
			if (!ok)
				break;
			if (!cJSON_AddItemToArray(vols, v)) {
				cJSON_Delete(v);
				ok = false;
				break;
			}
			NEED(cJSON_AddStringToObject(v, "volumeId", p->volumes[i].key));
			NEED(cJSON_AddStringToObject(v, "mountPath",
						     p->volumes[i].value ? p->volumes[i].value : ""));
		}
	}
#undef NEED
	if (ok)
		out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

int dt_sandbox_create(struct dt_client *dt, const struct dt_create_params *p, struct dt_sandbox *out,
		      struct dt_error *err)
{
	static const struct wait_spec ws = { .target = "started", .verb = "create" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char *body;
	int rc;

	error_clear(err);
	memset(out, 0, sizeof(*out));
	body = dt_create_body_json(p, dt->target);
	api_url(&url, dt, "/sandbox");
	sb_addf(&what, "create sandbox%s%s", p->name ? " " : "", p->name ? p->name : "");
	if (!body || url.oom || what.oom) {
		rc = oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				  .timeout_ms = lifecycle_timeout(dt) };

		rc = action_and_wait(dt, &c, &ws, NULL, NULL, out, err);
	}
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- lifecycle -------------------------------------------------------------- */

int dt_sandbox_action(struct dt_client *dt, const char *id, enum dt_action action,
		      dt_state_fn on_state, void *ctx, struct dt_sandbox *out, struct dt_error *err)
{
	static const struct wait_spec specs[] = {
		[DT_START] = { .target = "started", .verb = "start" },
		[DT_STOP] = { .target = "stopped", .gone_ok = true, .verb = "stop" },
		[DT_ARCHIVE] = { .target = "archived", .verb = "archive" },
		[DT_RECOVER] = { .target = "started", .verb = "recover" },
	};
	static const char *const paths[] = {
		[DT_START] = "/start", [DT_STOP] = "/stop", [DT_ARCHIVE] = "/archive", [DT_RECOVER] = "/recover",
	};
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "POST" };
	int rc;

	error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if ((unsigned)action > DT_RECOVER)
		return dt_error_set(err, -EINVAL, 0, "unknown sandbox action");
	sandbox_url(&url, dt, id, paths[action]);
	sb_addf(&what, "%s sandbox %s", specs[action].verb, id);
	if (url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	/* start and recover may be held by the server up to 30 s. */
	c.timeout_ms = lifecycle_timeout(dt);
	rc = action_and_wait(dt, &c, &specs[action], on_state, ctx, out, err);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_delete(struct dt_client *dt, const char *id, dt_state_fn on_state, void *ctx,
		      struct dt_error *err)
{
	static const struct wait_spec ws = { .want_gone = true, .verb = "delete" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "DELETE" };
	int rc;

	error_clear(err);
	sandbox_url(&url, dt, id, NULL);
	sb_addf(&what, "delete sandbox %s", id);
	if (url.oom || what.oom) {
		rc = oom(err);
	} else {
		/* The wait polls by the id from the answer: the name is
		 * renamed to DESTROYED_... at once. */
		c.url = sb_str(&url);
		c.what = sb_str(&what);
		rc = action_and_wait(dt, &c, &ws, on_state, ctx, NULL, err);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_resize(struct dt_client *dt, const char *id, int cpu, int memory, int disk,
		      struct dt_sandbox *out, struct dt_error *err)
{
	static const struct wait_spec ws = { .leave = "resizing", .verb = "resize" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	cJSON *root = cJSON_CreateObject();
	char *body = NULL;
	int rc;

	error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if (root && (cpu < 0 || cJSON_AddNumberToObject(root, "cpu", cpu)) &&
	    (memory < 0 || cJSON_AddNumberToObject(root, "memory", memory)) &&
	    (disk < 0 || cJSON_AddNumberToObject(root, "disk", disk)))
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	sandbox_url(&url, dt, id, "/resize");
	sb_addf(&what, "resize sandbox %s", id);
	if (!body || url.oom || what.oom) {
		rc = oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body };

		rc = action_and_wait(dt, &c, &ws, NULL, NULL, out, err);
	}
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_set_labels(struct dt_client *dt, const char *id, const struct dt_kv *labels, size_t n,
			  struct dt_sandbox *out, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = cJSON_CreateObject(), *reply;
	char *body = NULL;
	int rc;

	error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if (root && add_kv_object(root, "labels", labels, n, NULL))
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	sandbox_url(&url, dt, id, "/labels");
	sb_addf(&what, "set labels of sandbox %s", id);
	if (!body || url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	{
		/* PUT replaces the whole set: repeating it is harmless. */
		struct call c = { .method = "PUT", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				  .idempotent = true };

		rc = dt_do(dt, &c, &resp, err);
		if (rc || !out) {
			http_response_free(&resp);
			goto out;
		}
		/* The code answers with the Sandbox; the spec says {labels}. */
		reply = parse_body(&resp, c.what, err);
		if (!reply) {
			rc = -EIO;
		} else if (jstr(reply, "id")) {
			rc = dt_sandbox_from_json(reply, out) == -ENOMEM ? oom(err) : 0;
			if (!rc)
				note_daemon(dt, out);
		} else {
			rc = dt_sandbox_get(dt, id, out, err);
		}
		cJSON_Delete(reply);
		http_response_free(&resp);
	}
out:
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

void dt_kv_free(struct dt_kv *kv, size_t n)
{
	if (!kv)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

int dt_sandbox_get_labels(struct dt_client *dt, const char *id, struct dt_kv **labels, size_t *n,
			  struct dt_error *err)
{
	struct dt_sandbox sb;
	struct dt_kv *kv = NULL;
	const cJSON *obj, *it;
	cJSON *root = NULL;
	size_t cnt = 0, cap;
	int rc;

	*labels = NULL;
	*n = 0;
	rc = dt_sandbox_get(dt, id, &sb, err);
	if (rc)
		return rc;
	root = cJSON_Parse(sb.json);
	if (!root) {
		rc = oom(err);
		goto out;
	}
	obj = cJSON_GetObjectItemCaseSensitive(root, "labels");
	cap = (size_t)cJSON_GetArraySize(obj);
	if (!cJSON_IsObject(obj) || cap == 0)
		goto out;
	kv = calloc(cap, sizeof(*kv));
	if (!kv) {
		rc = oom(err);
		goto out;
	}
	cJSON_ArrayForEach(it, obj) {
		if (!it->string)
			continue;
		kv[cnt].key = strdup(it->string);
		kv[cnt].value = cJSON_IsString(it) ? strdup(it->valuestring) : cJSON_PrintUnformatted(it);
		cnt++;
		if (!kv[cnt - 1].key || !kv[cnt - 1].value) {
			dt_kv_free(kv, cnt);
			kv = NULL;
			cnt = 0;
			rc = oom(err);
			goto out;
		}
	}
out:
	cJSON_Delete(root);
	dt_sandbox_clear(&sb);
	*labels = kv;
	*n = cnt;
	return rc;
}

int dt_sandbox_set_interval(struct dt_client *dt, const char *id, enum dt_interval which, long minutes,
			    struct dt_sandbox *out, struct dt_error *err)
{
	static const char *const names[] = {
		[DT_AUTOSTOP] = "autostop", [DT_AUTOARCHIVE] = "autoarchive", [DT_AUTODELETE] = "autodelete",
	};
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if ((unsigned)which > DT_AUTODELETE)
		return dt_error_set(err, -EINVAL, 0, "unknown interval");
	sandbox_url(&url, dt, id, NULL);
	sb_addf(&url, "/%s/%ld", names[which], minutes);
	sb_addf(&what, "set %s of sandbox %s", names[which], id);
	if (url.oom || what.oom) {
		rc = oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what),
				  .idempotent = true };
		struct dt_sandbox tmp;

		rc = action_and_wait(dt, &c, NULL, NULL, NULL, out ? out : &tmp, err);
		if (!rc && !out)
			dt_sandbox_clear(&tmp);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- snapshots -------------------------------------------------------------- */

void dt_snapshot_clear(struct dt_snapshot *s)
{
	if (!s)
		return;
	free(s->json);
	memset(s, 0, sizeof(*s));
}

static int snapshot_from_json(const cJSON *obj, struct dt_snapshot *out)
{
	const char *id;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj))
		return -EINVAL;
	id = jstr(obj, "id");
	if (!id || !id[0])
		return -EINVAL;
	str_copy(out->id, sizeof(out->id), id);
	jcopy(out->name, sizeof(out->name), obj, "name");
	jcopy(out->state, sizeof(out->state), obj, "state");
	jtime(&out->created_at, obj, "createdAt");
	jtime(&out->updated_at, obj, "updatedAt");
	out->json = pretty_json(obj);
	return out->json ? 0 : -ENOMEM;
}

void dt_snapshot_list_free(struct dt_snapshot *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].json);
	free(list);
}

int dt_snapshot_list(struct dt_client *dt, struct dt_snapshot **out, size_t *n, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct dt_snapshot *list = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0, page;

	error_clear(err);
	*out = NULL;
	*n = 0;
	/* GET /snapshots is page-numbered: {items, total, page, totalPages}. */
	for (page = 1; page <= MAX_PAGES; page++) {
		struct call c = { .method = "GET", .what = "list snapshots", .idempotent = true,
				  .max_body = 64u << 20 };
		struct http_response resp;
		const cJSON *items, *it, *tp;
		cJSON *root;
		bool last;

		sb_reset(&url);
		api_url(&url, dt, "/snapshots");
		sb_addf(&url, "?page=%d&limit=%d", page, SNAPSHOT_PAGE_LIMIT);
		if (url.oom) {
			rc = oom(err);
			break;
		}
		c.url = sb_str(&url);
		rc = dt_do(dt, &c, &resp, err);
		root = rc ? NULL : parse_body(&resp, c.what, err);
		if (!rc && !root)
			rc = -EIO;
		if (rc) {
			http_response_free(&resp);
			break;
		}
		items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
		tp = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "totalPages") : NULL;
		if (!cJSON_IsArray(items)) {
			rc = malformed(err, resp.status, c.what);
			cJSON_Delete(root);
			http_response_free(&resp);
			break;
		}
		last = !cJSON_IsNumber(tp) || page >= tp->valuedouble || cJSON_GetArraySize(items) == 0;
		cJSON_ArrayForEach(it, items) {
			struct dt_snapshot s;
			int prc;

			if (cnt == cap) {
				size_t nc = cap ? cap * 2 : 32;
				struct dt_snapshot *nl = realloc(list, nc * sizeof(*nl));

				if (!nl) {
					rc = oom(err);
					break;
				}
				list = nl;
				cap = nc;
			}
			prc = snapshot_from_json(it, &s);
			if (prc == -ENOMEM) {
				rc = oom(err);
				break;
			}
			if (prc == 0)
				list[cnt++] = s;
		}
		cJSON_Delete(root);
		http_response_free(&resp);
		if (rc || last)
			break;
	}
	sb_free(&url);
	if (rc) {
		dt_snapshot_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

int dt_snapshot_get(struct dt_client *dt, const char *id_or_name, struct dt_snapshot *out, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct call c = { .method = "GET", .idempotent = true };
	cJSON *root;
	int rc;

	error_clear(err);
	memset(out, 0, sizeof(*out));
	api_url(&url, dt, "/snapshots/");
	url_add_path_segment(&url, id_or_name);
	sb_addf(&what, "get snapshot %s", id_or_name);
	if (url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do(dt, &c, &resp, err);
	if (!rc) {
		root = parse_body(&resp, c.what, err);
		if (!root) {
			rc = -EIO;
		} else {
			rc = snapshot_from_json(root, out);
			if (rc == -ENOMEM)
				oom(err);
			else if (rc)
				rc = malformed(err, resp.status, c.what);
			cJSON_Delete(root);
		}
	}
	http_response_free(&resp);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_snapshot_delete(struct dt_client *dt, const char *id, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct call c = { .method = "DELETE" };
	int rc;

	error_clear(err);
	api_url(&url, dt, "/snapshots/");
	url_add_path_segment(&url, id);
	sb_addf(&what, "delete snapshot %s", id);
	if (url.oom || what.oom) {
		rc = oom(err);
	} else {
		c.url = sb_str(&url);
		c.what = sb_str(&what);
		rc = dt_do(dt, &c, &resp, err);
		http_response_free(&resp);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_snapshot(struct dt_client *dt, const char *id, const char *name, dt_state_fn on_state,
			void *ctx, struct dt_error *err)
{
	static const struct wait_spec ws = { .leave = "snapshotting", .verb = "snapshot" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct dt_snapshot snap;
	cJSON *root;
	char *body = NULL;
	int rc;

	error_clear(err);
	/* A duplicate name fails silently on the server, and the check after
	 * the wait would then find the old snapshot: refuse it up front. */
	rc = dt_snapshot_get(dt, name, &snap, err);
	if (rc == 0) {
		dt_snapshot_clear(&snap);
		return dt_error_set(err, -EEXIST, 0, "a snapshot named %s already exists", name);
	}
	if (rc != -ENOENT)
		return rc;
	error_clear(err);

	root = cJSON_CreateObject();
	if (root && cJSON_AddStringToObject(root, "name", name))
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	sandbox_url(&url, dt, id, "/snapshot");
	sb_addf(&what, "snapshot sandbox %s as %s", id, name);
	if (!body || url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	{
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body };

		rc = action_and_wait(dt, &c, &ws, on_state, ctx, NULL, err);
	}
	if (rc)
		goto out;
	rc = dt_snapshot_get(dt, name, &snap, err);
	if (rc == -ENOENT) {
		rc = dt_error_set(err, -EIO, 0, "snapshot %s of sandbox %s was not created", name, id);
	} else if (rc == 0) {
		if (is_failed_state(snap.state))
			rc = dt_error_set(err, -EIO, 0, "snapshot %s: state %s", name, snap.state);
		dt_snapshot_clear(&snap);
	}
out:
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- toolbox: files --------------------------------------------------------- */

/* Builds "{toolbox}/{id}{endpoint}?path=..." and "what" for messages. */
static bool tb_path_url(struct strbuf *url, struct strbuf *what, const struct dt_box *box,
			const char *endpoint, const char *verb, const char *path)
{
	toolbox_url(url, box, endpoint);
	add_query(url, "path", path);
	sb_addf(what, "%s %s", verb, path);
	return !url->oom && !what->oom;
}

int dt_fs_list(struct dt_client *dt, const struct dt_box *box, const char *path,
	       struct dt_fileinfo **out, size_t *n, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct dt_fileinfo *list = NULL;
	const cJSON *it;
	cJSON *root = NULL;
	size_t cnt = 0, cap;
	int rc;

	error_clear(err);
	*out = NULL;
	*n = 0;
	if (!tb_path_url(&url, &what, box, "/files", "list", path)) {
		rc = oom(err);
		goto out;
	}
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .idempotent = true, .max_body = 256u << 20 };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			root = parse_body(&resp, c.what, err);
			if (!root)
				rc = -EIO;
			else if (!cJSON_IsArray(root))
				rc = malformed(err, resp.status, c.what);
		}
		http_response_free(&resp);
	}
	if (rc)
		goto out;
	cap = (size_t)cJSON_GetArraySize(root);
	if (cap) {
		list = calloc(cap, sizeof(*list));
		if (!list) {
			rc = oom(err);
			goto out;
		}
	}
	cJSON_ArrayForEach(it, root) {
		int prc = dt_fileinfo_from_json(it, &list[cnt]);

		if (prc == -ENOMEM) {
			rc = oom(err);
			break;
		}
		if (prc == 0)
			cnt++;
	}
	if (rc) {
		dt_fileinfo_free(list, cnt);
		list = NULL;
		cnt = 0;
	}
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	*out = list;
	*n = cnt;
	return rc;
}

int dt_fs_info(struct dt_client *dt, const struct dt_box *box, const char *path,
	       struct dt_fileinfo *out, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	cJSON *root;
	int rc;

	error_clear(err);
	memset(out, 0, sizeof(*out));
	if (!tb_path_url(&url, &what, box, "/files/info", "stat", path)) {
		rc = oom(err);
		goto out;
	}
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .idempotent = true };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			root = parse_body(&resp, c.what, err);
			if (!root) {
				rc = -EIO;
			} else {
				rc = dt_fileinfo_from_json(root, out);
				if (rc == -ENOMEM)
					oom(err);
				else if (rc)
					rc = malformed(err, resp.status, c.what);
				cJSON_Delete(root);
			}
		}
		http_response_free(&resp);
	}
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* The download sink: skips to the wanted offset when the server sent more
 * than the range (a 200, or a 206 starting earlier), and stops at len. */
struct dl_ctx {
	const struct http_response *resp;   /* filled in while the body arrives */
	http_sink_fn sink;
	void *ctx;
	uint64_t off;               /* the absolute offset wanted first */
	uint64_t remaining;         /* UINT64_MAX: to the end */
	uint64_t skip;
	uint64_t delivered;
	bool started;
	bool done;                  /* got everything wanted; extra bytes cut off */
	int sink_err;
};

static int dl_sink(void *p, const void *data, size_t len)
{
	struct dl_ctx *dc = p;
	const char *d = data;
	size_t n;
	int rc;

	if (!dc->started) {
		dc->started = true;
		dc->skip = 0;
		if (dc->resp->status == 206 && dc->resp->content_range) {
			unsigned long long a;

			if (sscanf(dc->resp->content_range, "bytes %llu-", &a) != 1 || a > dc->off)
				return -EIO;
			dc->skip = dc->off - a;
		} else if (dc->resp->status != 206) {
			dc->skip = dc->off;   /* the server ignored Range */
		}
	}
	if (dc->skip) {
		n = len < dc->skip ? len : (size_t)dc->skip;
		dc->skip -= n;
		d += n;
		len -= n;
	}
	if (len == 0)
		return 0;
	if (dc->remaining == 0) {
		/* More than we asked for: stop the transfer (costs the connection,
		 * saves the rest of the file). */
		dc->done = true;
		return -ECANCELED;
	}
	n = len < dc->remaining ? len : (size_t)dc->remaining;
	rc = dc->sink(dc->ctx, d, n);
	if (rc < 0) {
		dc->sink_err = rc;
		return rc;
	}
	dc->delivered += n;
	if (dc->remaining != UINT64_MAX)
		dc->remaining -= n;
	if (n < len) {
		dc->done = true;
		return -ECANCELED;
	}
	return 0;
}

/* A 206 that stops before both the end asked for and the end of the file
 * (a server may send less than asked, and a proxy may cut a body at a chunk
 * boundary): the rest must be asked for, since a reader takes a short count
 * for the end of the file. */
static bool range_cut_short(const struct http_response *resp, uint64_t got_to, uint64_t want_to)
{
	unsigned long long first, last, size;

	if (resp->status != 206 || !resp->content_range ||
	    sscanf(resp->content_range, "bytes %llu-%llu/%llu", &first, &last, &size) != 3)
		return false;   /* "/ *": the size is unknown; curl checked the length */
	if (want_to > size)
		want_to = size;
	return got_to < want_to;
}

int64_t dt_fs_download(struct dt_client *dt, const struct dt_box *box, const char *path,
		       uint64_t off, uint64_t len, http_sink_fn sink, void *ctx, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	uint64_t total = 0;
	int resumes = 0, rc;

	error_clear(err);
	if (!tb_path_url(&url, &what, box, "/files/download", "read", path)) {
		rc = oom(err);
		goto out;
	}
	for (;;) {
		struct http_response resp;
		struct dl_ctx dc = { .resp = &resp, .sink = sink, .ctx = ctx };
		char range[80];
		uint64_t cur_off = off + total;
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .idempotent = true, .streaming = true, .sink = dl_sink, .sink_ctx = &dc };

		dc.off = cur_off;
		dc.remaining = len ? len - total : UINT64_MAX;
		if (len)
			snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, cur_off,
				 cur_off + dc.remaining - 1);
		else
			snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-", cur_off);
		/* The whole file needs no Range (and an empty file then gives a
		 * plain 200 rather than a 416). */
		c.range = cur_off == 0 && len == 0 ? NULL : range;

		rc = dt_do(dt, &c, &resp, err);
		total += dc.delivered;
		if (rc == -ECANCELED && dc.done) {
			rc = 0;
			error_clear(err);
		} else if (rc && dc.sink_err) {
			rc = dc.sink_err;
			dt_error_set(err, rc, resp.status, "%s: %s", sb_str(&what), strerror(-rc));
		} else if (rc && resp.status == 416) {
			/* At or past the end: nothing more to read. */
			rc = 0;
			error_clear(err);
		} else if ((rc == -ECONNRESET || rc == -ETIMEDOUT) && dc.delivered > 0 &&
			   resumes < DOWNLOAD_RESUMES && (len == 0 || total < len)) {
			/* Cut mid-body after progress: ask for the rest. */
			log_debug("%s: %s after %" PRIu64 " bytes, resuming", sb_str(&what), strerror(-rc), total);
			http_response_free(&resp);
			resumes++;
			error_clear(err);
			continue;
		} else if (!rc && !dc.done && range_cut_short(&resp, off + total, len ? off + len : UINT64_MAX)) {
			http_response_free(&resp);
			/* Ends: every round delivers bytes of a file of the size announced. */
			if (dc.delivered > 0)
				continue;
			rc = dt_error_set(err, -EIO, 206, "%s: the server sent %" PRIu64 " bytes, less than it "
					  "announced", sb_str(&what), total);
			break;
		}
		http_response_free(&resp);
		break;
	}
out:
	sb_free(&url);
	sb_free(&what);
	return rc ? rc : (int64_t)total;
}

/* An errno for a bulk-upload error line ("<dest>: create: open ...: permission denied"). */
static int upload_errno(const char *msg)
{
	static const struct { const char *text; int err; } map[] = {
		{ "permission denied", EACCES },
		{ "operation not permitted", EPERM },
		{ "is a directory", EISDIR },
		{ "not a directory", ENOTDIR },
		{ "no space left", ENOSPC },
		{ "quota exceeded", EDQUOT },
		{ "read-only file system", EROFS },
		{ "file name too long", ENAMETOOLONG },
		{ "no such file or directory", ENOENT },
		{ "file too large", EFBIG },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasestr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}

/* The length of the UTF-8 sequence at s (1 to 4), or 0 when s does not
 * start a valid one: what Go's utf8.DecodeRuneInString accepts. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail, uint32_t *cp)
{
	static const uint32_t shortest[5] = { 0, 0, 0x80, 0x800, 0x10000 };   /* overlong below */
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > avail)
		return 0;
	c = s[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < shortest[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Go's unicode.IsSpace, plus U+001C..U+001F, which the local server's
 * Python strip() also trims. */
static bool trimmed_space(uint32_t c)
{
	switch (c) {
	case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
	case 0x1c: case 0x1d: case 0x1e: case 0x1f:
	case 0x85: case 0xa0: case 0x1680:
	case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
		return true;
	default:
		return c >= 0x2000 && c <= 0x200a;
	}
}

bool dt_upload_path_trimmed(const char *path)
{
	const unsigned char *s = (const unsigned char *)path;
	size_t len = strlen(path);
	uint32_t c;

	if (len == 0)
		return false;
	if (utf8_seq_len(s, len, &c) && trimmed_space(c))
		return true;
	/* The last character starts at most 4 bytes from the end. */
	for (size_t back = 1; back <= 4 && back <= len; back++) {
		size_t n = utf8_seq_len(s + len - back, back, &c);

		if (n == back)
			return trimmed_space(c);
		if ((s[len - back] & 0xc0) != 0x80)
			break;   /* a lead byte (or ASCII) that does not end the string */
	}
	return false;
}

/* Whether a path the server echoes is the one sent. Go's JSON encoder
 * replaces each byte that is not valid UTF-8 with U+FFFD, so such a path
 * comes back with U+FFFD where the bad bytes were. */
static bool echoed_path_matches(const char *sent, const char *echoed)
{
	const unsigned char *s = (const unsigned char *)sent;
	const unsigned char *e = (const unsigned char *)echoed;
	size_t slen = strlen(sent), elen = strlen(echoed);
	size_t i = 0, j = 0;

	while (i < slen) {
		uint32_t c;
		size_t n = utf8_seq_len(s + i, slen - i, &c);

		if (n) {
			if (elen - j < n || memcmp(s + i, e + j, n))
				return false;
			i += n;
			j += n;
		} else {
			if (elen - j < 3 || memcmp(e + j, "\xef\xbf\xbd", 3))
				return false;
			i++;
			j += 3;
		}
	}
	return j == elen;
}

int dt_upload_reply_check(const char *body, size_t body_len, const char *path, uint64_t len,
			  char *why, size_t cap)
{
	cJSON *root = body && body_len ? cJSON_ParseWithLength(body, body_len) : NULL;
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
	const cJSON *f0 = cJSON_IsArray(files) ? cJSON_GetArrayItem(files, 0) : NULL;
	const cJSON *fpath = cJSON_GetObjectItemCaseSensitive(f0, "path");
	const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f0, "bytes");
	int rc = 0;

	/* A 2xx without the file in it stored nothing we can see: the daemon
	 * skips a part whose file name its multipart parser rejects. */
	if (!cJSON_IsObject(f0)) {
		snprintf(why, cap, "the server stored no file");
		rc = -EIO;
	} else if (cJSON_IsString(fpath) && !echoed_path_matches(path, fpath->valuestring)) {
		/* It wrote another file (it trims white space from the path). */
		snprintf(why, cap, "the server stored the data as another path");
		rc = -EIO;
	} else if (cJSON_IsNumber(bytes) && (uint64_t)bytes->valuedouble != len) {
		snprintf(why, cap, "the server stored %.0f bytes of %" PRIu64, bytes->valuedouble, len);
		rc = -EIO;
	}
	cJSON_Delete(root);
	return rc;
}

/* The file part's name. The daemon ignores it (the path field names the
 * destination), but Go's multipart parser drops a part whose file name it
 * rejects (one ending in a backslash, say): a constant one always passes. */
#define UPLOAD_PART_FILENAME "file"

static int fs_upload(struct dt_client *dt, const struct dt_box *box, const char *path, int fd,
		     const void *data, uint64_t len, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_part parts[2];
	struct http_response resp;
	cJSON *root = NULL;
	const cJSON *errs;
	int rc;

	error_clear(err);
	/* The .path field must come before its .file (CONTRACT 3.6). */
	memset(parts, 0, sizeof(parts));
	parts[0].name = "files[0].path";
	parts[0].data = path;
	parts[0].data_len = strlen(path);
	parts[0].fd = -1;
	parts[1].name = "files[0].file";
	parts[1].filename = UPLOAD_PART_FILENAME;
	parts[1].fd = fd;
	if (fd >= 0) {
		parts[1].fd_len = len;
	} else {
		parts[1].data = data;
		parts[1].data_len = (size_t)len;
	}
	toolbox_url(&url, box, "/files/bulk-upload");
	sb_addf(&what, "write %s", path);
	if (url.oom || what.oom) {
		rc = oom(err);
		goto out;
	}
	{
		/* Every upload replaces the whole file, so a replay is safe. */
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .toolbox = true,
				  .parts = parts, .n_parts = 2, .idempotent = true, .streaming = true };
		char why[128];

		rc = dt_do(dt, &c, &resp, err);
		if (resp.body && resp.body_len)
			root = cJSON_ParseWithLength(resp.body, resp.body_len);
		errs = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "errors") : NULL;
		if (cJSON_IsArray(errs) && cJSON_GetArraySize(errs) > 0) {
			/* Partial failure: {"errors": ["<dest>: create: ..."], "files": [...]} */
			const cJSON *e0 = cJSON_GetArrayItem(errs, 0);
			const char *msg = cJSON_IsString(e0) ? e0->valuestring : "upload failed";

			rc = dt_error_set(err, upload_errno(msg), resp.status, "%s: %s", c.what, msg);
		} else if (!rc && resp.body_len && !root) {
			rc = malformed(err, resp.status, c.what);
		} else if (!rc && dt_upload_reply_check(resp.body, resp.body_len, path, len, why, sizeof(why))) {
			rc = dt_error_set(err, -EIO, resp.status, "%s: %s", c.what, why);
		}
		http_response_free(&resp);
	}
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_upload_fd(struct dt_client *dt, const struct dt_box *box, const char *path, int fd,
		    uint64_t len, struct dt_error *err)
{
	if (fd < 0)
		return dt_error_set(err, -EBADF, 0, "write %s: no file", path);
	return fs_upload(dt, box, path, fd, NULL, len, err);
}

int dt_fs_upload_mem(struct dt_client *dt, const struct dt_box *box, const char *path,
		     const void *data, size_t len, struct dt_error *err)
{
	return fs_upload(dt, box, path, -1, data ? data : "", len, err);
}

/* A toolbox file call with no answer but its status. */
static int fs_simple(struct dt_client *dt, struct strbuf *url, struct strbuf *what, const char *method,
		     bool idempotent, struct dt_error *err, long *status)
{
	struct http_response resp;
	struct call c = { .method = method, .url = sb_str(url), .what = sb_str(what), .toolbox = true,
			  .idempotent = idempotent };
	int rc;

	if (url->oom || what->oom)
		return oom(err);
	rc = dt_do(dt, &c, &resp, err);
	if (status)
		*status = resp.status;
	/* A replayed request can meet its own earlier success. */
	if (rc == -ENOENT && resp.attempts > 1 && strcmp(method, "DELETE") == 0) {
		rc = 0;
		error_clear(err);
	}
	if (!rc && resp.body && strstr(resp.body, "could not be deleted")) {
		/* move: 200 {"message":"file copied successfully but source could not be deleted"} */
		char msg[400] = "source could not be deleted";

		body_message(resp.body, msg, sizeof(msg));
		rc = dt_error_set(err, -EIO, resp.status, "%s: %s", c.what, msg);
	}
	http_response_free(&resp);
	return rc;
}

int dt_fs_mkdir(struct dt_client *dt, const struct dt_box *box, const char *path, mode_t mode,
		struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char m[16];
	int rc;

	error_clear(err);
	tb_path_url(&url, &what, box, "/files/folder", "mkdir", path);
	snprintf(m, sizeof(m), "%04o", (unsigned)(mode & 07777));
	add_query(&url, "mode", m);
	/* MkdirAll: repeating it is harmless. */
	rc = fs_simple(dt, &url, &what, "POST", true, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_delete(struct dt_client *dt, const struct dt_box *box, const char *path, bool recursive,
		 struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	error_clear(err);
	tb_path_url(&url, &what, box, "/files", "delete", path);
	if (recursive)
		add_query(&url, "recursive", "true");
	rc = fs_simple(dt, &url, &what, "DELETE", true, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_move(struct dt_client *dt, const struct dt_box *box, const char *src, const char *dst,
	       struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	error_clear(err);
	toolbox_url(&url, box, "/files/move");
	add_query(&url, "source", src);
	add_query(&url, "destination", dst);
	sb_addf(&what, "move %s to %s", src, dst);
	/* Not idempotent: a replay after success finds no source. */
	rc = fs_simple(dt, &url, &what, "POST", false, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_fs_chmod(struct dt_client *dt, const struct dt_box *box, const char *path, mode_t mode,
		struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char m[16];
	int rc;

	error_clear(err);
	tb_path_url(&url, &what, box, "/files/permissions", "chmod", path);
	snprintf(m, sizeof(m), "%04o", (unsigned)(mode & 07777));
	add_query(&url, "mode", m);
	rc = fs_simple(dt, &url, &what, "POST", true, err, NULL);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- toolbox: process --------------------------------------------------------- */

static int exec_call(struct dt_client *dt, const struct dt_box *box, const char *command, const char *cwd,
		     const struct dt_kv *envs, size_t n_envs, long timeout_s, long http_timeout_ms, bool activity,
		     int *exit_code, char **output, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = cJSON_CreateObject(), *reply = NULL;
	const cJSON *code, *result;
	char *body = NULL, version[32];
	bool ok = root != NULL;
	int rc;

	error_clear(err);
	if (output)
		*output = NULL;
	if (exit_code)
		*exit_code = -1;
	/* An old daemon would run the first word of the script with the rest
	 * as its arguments: never send it a script. */
	if (old_daemon(dt, box->id, version, sizeof(version))) {
		cJSON_Delete(root);
		return dt_error_set(err, -EOPNOTSUPP, 0,
				    "the sandbox's daemon (%s) is older than v0.156.0 and cannot run commands: "
				    "restart the sandbox (stop, then start) to update it", version);
	}
	if (ok)
		ok = cJSON_AddStringToObject(root, "command", command) != NULL;
	if (ok && cwd && cwd[0])
		ok = cJSON_AddStringToObject(root, "cwd", cwd) != NULL;
	if (ok && n_envs)
		ok = add_kv_object(root, "envs", envs, n_envs, NULL);
	if (ok && timeout_s > 0)
		ok = cJSON_AddNumberToObject(root, "timeout", (double)timeout_s) != NULL;
	if (ok)
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	toolbox_url(&url, box, "/process/execute");
	if (!body || url.oom) {
		rc = oom(err);
		goto out;
	}
	{
		/* Never replayed once sent: the command could run twice. */
		struct call c = { .method = "POST", .url = sb_str(&url), .what = "exec", .toolbox = true,
				  .json = body, .max_body = 64u << 20, .activity = activity,
				  .timeout_ms = http_timeout_ms };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			reply = parse_body(&resp, c.what, err);
			code = cJSON_GetObjectItemCaseSensitive(reply, "exitCode");
			result = cJSON_GetObjectItemCaseSensitive(reply, "result");
			if (!reply) {
				rc = -EIO;
			} else if (!cJSON_IsNumber(code)) {
				rc = malformed(err, resp.status, c.what);
			} else {
				if (exit_code)
					*exit_code = code->valueint;
				if (output) {
					*output = strdup(cJSON_IsString(result) ? result->valuestring : "");
					if (!*output)
						rc = oom(err);
				}
			}
		}
		http_response_free(&resp);
	}
out:
	cJSON_Delete(reply);
	free(body);
	sb_free(&url);
	return rc;
}

/* The HTTP timeout of a command with a timeout of its own: 5 s more, as the
 * SDK, so that the server's 408 arrives first. None without one. */
static long exec_http_timeout_ms(long timeout_s)
{
	return timeout_s > 0 ? (timeout_s + 5) * 1000 : 0;
}

int dt_exec(struct dt_client *dt, const struct dt_box *box, const char *command, const char *cwd,
	    const struct dt_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
	    struct dt_error *err)
{
	return exec_call(dt, box, command, cwd, envs, n_envs, timeout_s, exec_http_timeout_ms(timeout_s), false,
			 exit_code, output, err);
}

int dt_exec_activity(struct dt_client *dt, const struct dt_box *box, const char *command, const char *cwd,
		     const struct dt_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
		     struct dt_error *err)
{
	return exec_call(dt, box, command, cwd, envs, n_envs, timeout_s, exec_http_timeout_ms(timeout_s), true,
			 exit_code, output, err);
}

long dt_command_server_timeout_s(long limit_s)
{
	/* A second under the client's limit, so that the 408 usually comes
	 * back before the client gives up; never 0, which means none. */
	return limit_s > 1 ? limit_s - 1 : 1;
}

int dt_exec_within(struct dt_client *dt, const struct dt_box *box, const char *command, const char *cwd,
		   long limit_s, int *exit_code, char **output, struct dt_error *err)
{
	return exec_call(dt, box, command, cwd, NULL, 0, dt_command_server_timeout_s(limit_s), limit_s * 1000,
			 false, exit_code, output, err);
}

static int get_dir(struct dt_client *dt, const struct dt_box *box, const char *endpoint, char *out,
		   size_t cap, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = NULL;
	const char *dir;
	int rc;

	error_clear(err);
	if (cap)
		out[0] = '\0';
	toolbox_url(&url, box, endpoint);
	if (url.oom) {
		rc = oom(err);
		goto out;
	}
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = endpoint, .toolbox = true,
				  .idempotent = true };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			root = parse_body(&resp, c.what, err);
			dir = jstr(root, "dir");
			if (!root)
				rc = -EIO;
			else if (!dir || !dir[0])
				rc = malformed(err, resp.status, c.what);
			else if (!str_copy(out, cap, dir))
				rc = dt_error_set(err, -ENAMETOOLONG, resp.status, "%s: path too long", c.what);
		}
		http_response_free(&resp);
	}
out:
	cJSON_Delete(root);
	sb_free(&url);
	return rc;
}

int dt_home_dir(struct dt_client *dt, const struct dt_box *box, char *out, size_t cap, struct dt_error *err)
{
	return get_dir(dt, box, "/user-home-dir", out, cap, err);
}

int dt_work_dir(struct dt_client *dt, const struct dt_box *box, char *out, size_t cap, struct dt_error *err)
{
	return get_dir(dt, box, "/work-dir", out, cap, err);
}

/* ---- helpers -------------------------------------------------------------------- */

int dt_ping(struct dt_client *dt, struct dt_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = NULL;
	int rc;

	error_clear(err);
	api_url(&url, dt, "/sandbox?limit=1");
	if (url.oom)
		return oom(err);
	{
		struct call c = { .method = "GET", .url = sb_str(&url), .what = "list sandboxes",
				  .idempotent = true };

		rc = dt_do(dt, &c, &resp, err);
		/* A wrong URL can answer 200 too (a web page): only a sandbox
		 * list says this is the Daytona API. */
		if (!rc && resp.body && resp.body_len)
			root = cJSON_ParseWithLength(resp.body, resp.body_len);
		if (!rc && !cJSON_IsArray(root) && !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "items")))
			rc = dt_error_set(err, -EPROTO, resp.status,
					  "the answer to GET /sandbox is not a sandbox list (%s)",
					  !resp.body_len ? "empty body" : root ? "JSON of another shape" : "not JSON");
		cJSON_Delete(root);
		http_response_free(&resp);
	}
	sb_free(&url);
	return rc;
}
