/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.c - the HTTP transport on libcurl. See http.h for the contract.
 *
 * One CURL easy handle per thread (pthread key, freed by the key's
 * destructor when the thread exits), all attached to one CURLSH that shares
 * the DNS cache, TLS sessions and the connection pool, so a connection opened
 * by one FUSE worker thread can be reused by another. Each request resets the
 * easy handle (which keeps its connections) and sets every option again, so
 * no state leaks from one request into the next.
 */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"

#ifndef DAYTONAFS_VERSION
#define DAYTONAFS_VERSION "0"
#endif

#define DEFAULT_MAX_BODY      (16u << 20)  /* collected bodies */
#define ERROR_BODY_CAP        (64u << 10)  /* error bodies kept when a sink is used */
#define BACKOFF_CAP_MS        10000L       /* one backoff sleep at most */
#define RETRY_AFTER_CAP_MS    30000L       /* Retry-After honoured up to this */

/* One thread's handle, linked into the client so that http_client_free can
 * release the handles of threads that are still alive. */
struct tl_handle {
	CURL *easy;
	struct http_client *hc;
	struct tl_handle *prev, *next;
};

struct http_client {
	struct http_config cfg;
	char *user_agent;
	char *auth_header;          /* "Authorization: ..." - never logged */
	char **headers;
	size_t n_headers;
	pthread_rwlock_t hdr_lock;  /* headers may be added while other threads run requests */

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	pthread_key_t key;
	pthread_mutex_t handles_lock;
	struct tl_handle *handles;

	_Atomic uint64_t n_requests, n_retries, n_bytes_down, n_bytes_up;
};

/* ---- global init -------------------------------------------------------- */

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static int global_refs;

static bool global_get(void)
{
	bool ok = true;

	pthread_mutex_lock(&global_lock);
	if (global_refs == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ok = false;
	if (ok)
		global_refs++;
	pthread_mutex_unlock(&global_lock);
	return ok;
}

static void global_put(void)
{
	pthread_mutex_lock(&global_lock);
	if (--global_refs == 0)
		curl_global_cleanup();
	pthread_mutex_unlock(&global_lock);
}

/* ---- share locks ------------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userptr)
{
	struct http_client *hc = userptr;

	(void)h;
	(void)access;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&hc->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userptr)
{
	struct http_client *hc = userptr;

	(void)h;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&hc->share_locks[data]);
}

/* ---- client ------------------------------------------------------------ */

void http_config_defaults(struct http_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->connect_timeout_ms = 10000;
	cfg->request_timeout_ms = 60000;
	cfg->stall_timeout_ms = 30000;
	cfg->max_retries = 4;
	cfg->retry_base_ms = 200;
	cfg->max_connections = 16;
	cfg->user_agent = NULL;
}

static void tl_destroy(void *p)
{
	struct tl_handle *th = p;
	struct http_client *hc;

	if (!th)
		return;
	hc = th->hc;
	pthread_mutex_lock(&hc->handles_lock);
	if (th->prev)
		th->prev->next = th->next;
	else
		hc->handles = th->next;
	if (th->next)
		th->next->prev = th->prev;
	pthread_mutex_unlock(&hc->handles_lock);
	curl_easy_cleanup(th->easy);
	free(th);
}

struct http_client *http_client_new(const struct http_config *cfg)
{
	struct http_client *hc;
	struct strbuf ua = STRBUF_INIT;
	int i, locks = 0;

	if (!global_get())
		return NULL;
	hc = calloc(1, sizeof(*hc));
	if (!hc)
		goto fail_global;
	if (cfg)
		hc->cfg = *cfg;
	else
		http_config_defaults(&hc->cfg);
	if (hc->cfg.max_retries < 0)
		hc->cfg.max_retries = 0;
	if (hc->cfg.max_connections <= 0)
		hc->cfg.max_connections = 16;
	sb_adds(&ua, hc->cfg.user_agent ? hc->cfg.user_agent : "daytonafs/" DAYTONAFS_VERSION);
	hc->user_agent = sb_detach(&ua);
	hc->cfg.user_agent = hc->user_agent;
	if (!hc->user_agent)
		goto fail_free;

	for (i = 0; i < CURL_LOCK_DATA_LAST; i++, locks++)
		if (pthread_mutex_init(&hc->share_locks[i], NULL) != 0)
			goto fail_locks;
	if (pthread_mutex_init(&hc->handles_lock, NULL) != 0)
		goto fail_locks;
	if (pthread_rwlock_init(&hc->hdr_lock, NULL) != 0)
		goto fail_handles_lock;
	if (pthread_key_create(&hc->key, tl_destroy) != 0)
		goto fail_hdr_lock;

	hc->share = curl_share_init();
	if (!hc->share)
		goto fail_key;
	if (curl_share_setopt(hc->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
	    curl_share_setopt(hc->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
	    curl_share_setopt(hc->share, CURLSHOPT_USERDATA, hc) != CURLSHE_OK ||
	    curl_share_setopt(hc->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
	    curl_share_setopt(hc->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
		goto fail_share;
	/* Connection sharing is optional in older libcurl builds: without it each
	 * thread keeps its own connections, which still works. */
	if (curl_share_setopt(hc->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK)
		log_warn("libcurl cannot share connections between threads");
	return hc;

fail_share:
	curl_share_cleanup(hc->share);
fail_key:
	pthread_key_delete(hc->key);
fail_hdr_lock:
	pthread_rwlock_destroy(&hc->hdr_lock);
fail_handles_lock:
	pthread_mutex_destroy(&hc->handles_lock);
fail_locks:
	for (i = 0; i < locks; i++)
		pthread_mutex_destroy(&hc->share_locks[i]);
fail_free:
	free(hc->user_agent);
	free(hc);
fail_global:
	global_put();
	return NULL;
}

/* Must be called when no other thread uses the client any more. */
void http_client_free(struct http_client *hc)
{
	struct tl_handle *th, *next;
	size_t i;

	if (!hc)
		return;
	/* Deleting the key first means no destructor can run concurrently for
	 * it; then every handle, whichever thread made it, is ours to free. */
	pthread_key_delete(hc->key);
	pthread_mutex_lock(&hc->handles_lock);
	for (th = hc->handles; th; th = next) {
		next = th->next;
		curl_easy_cleanup(th->easy);
		free(th);
	}
	hc->handles = NULL;
	pthread_mutex_unlock(&hc->handles_lock);
	curl_share_cleanup(hc->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&hc->share_locks[i]);
	pthread_mutex_destroy(&hc->handles_lock);
	pthread_rwlock_destroy(&hc->hdr_lock);
	for (i = 0; i < hc->n_headers; i++)
		free(hc->headers[i]);
	free(hc->headers);
	if (hc->auth_header) {
		/* Do not leave the credential lying around in freed memory. */
		explicit_bzero(hc->auth_header, strlen(hc->auth_header));
		free(hc->auth_header);
	}
	free(hc->user_agent);
	free(hc);
	global_put();
}

int http_client_set_auth(struct http_client *hc, const char *authorization)
{
	struct strbuf sb = STRBUF_INIT;
	char *line, *old;

	if (strpbrk(authorization, "\r\n"))
		return -EINVAL;
	sb_adds(&sb, "Authorization: ");
	sb_adds(&sb, authorization);
	line = sb_detach(&sb);
	if (!line)
		return -ENOMEM;
	pthread_rwlock_wrlock(&hc->hdr_lock);
	old = hc->auth_header;
	hc->auth_header = line;
	pthread_rwlock_unlock(&hc->hdr_lock);
	if (old) {
		explicit_bzero(old, strlen(old));
		free(old);
	}
	return 0;
}

int http_client_add_header(struct http_client *hc, const char *header_line)
{
	char **nh, *copy;

	if (strpbrk(header_line, "\r\n") || !strchr(header_line, ':'))
		return -EINVAL;
	copy = strdup(header_line);
	if (!copy)
		return -ENOMEM;
	pthread_rwlock_wrlock(&hc->hdr_lock);
	nh = realloc(hc->headers, (hc->n_headers + 1) * sizeof(*nh));
	if (!nh) {
		pthread_rwlock_unlock(&hc->hdr_lock);
		free(copy);
		return -ENOMEM;
	}
	nh[hc->n_headers++] = copy;
	hc->headers = nh;
	pthread_rwlock_unlock(&hc->hdr_lock);
	return 0;
}

void http_client_stats(struct http_client *hc, struct http_stats *out)
{
	out->requests = atomic_load(&hc->n_requests);
	out->retries = atomic_load(&hc->n_retries);
	out->bytes_down = atomic_load(&hc->n_bytes_down);
	out->bytes_up = atomic_load(&hc->n_bytes_up);
}

/* The calling thread's easy handle, made on first use. */
static CURL *thread_handle(struct http_client *hc)
{
	struct tl_handle *th = pthread_getspecific(hc->key);

	if (th)
		return th->easy;
	th = calloc(1, sizeof(*th));
	if (!th)
		return NULL;
	th->easy = curl_easy_init();
	if (!th->easy) {
		free(th);
		return NULL;
	}
	th->hc = hc;
	if (curl_easy_setopt(th->easy, CURLOPT_SHARE, hc->share) != CURLE_OK ||
	    pthread_setspecific(hc->key, th) != 0) {
		curl_easy_cleanup(th->easy);
		free(th);
		return NULL;
	}
	pthread_mutex_lock(&hc->handles_lock);
	th->next = hc->handles;
	if (th->next)
		th->next->prev = th;
	hc->handles = th;
	pthread_mutex_unlock(&hc->handles_lock);
	return th->easy;
}

/* ---- one attempt ------------------------------------------------------- */

/* A multipart part's reader: pread from the fd (or memcpy from memory) at
 * our own position, so curl can rewind with the seek callback and a retry
 * replays the body without holding it in memory. */
struct part_src {
	const struct http_part *part;
	uint64_t pos;
	int err;                    /* errno of a failed pread */
};

static size_t part_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct part_src *ps = arg;
	const struct http_part *p = ps->part;
	uint64_t total = p->fd >= 0 ? p->fd_len : p->data_len;
	size_t want = size * nitems;
	ssize_t n;

	if (ps->pos >= total)
		return 0;
	if (want > total - ps->pos)
		want = (size_t)(total - ps->pos);
	if (p->fd < 0) {
		memcpy(buf, (const char *)p->data + ps->pos, want);
		ps->pos += want;
		return want;
	}
	do {
		n = pread(p->fd, buf, want, (off_t)ps->pos);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ps->err = errno;
		return CURL_READFUNC_ABORT;
	}
	if (n == 0) {
		/* The file shrank under us: the declared length cannot be met. */
		ps->err = EIO;
		return CURL_READFUNC_ABORT;
	}
	ps->pos += (uint64_t)n;
	return (size_t)n;
}

static int part_seek(void *arg, curl_off_t offset, int origin)
{
	struct part_src *ps = arg;
	const struct http_part *p = ps->part;
	uint64_t total = p->fd >= 0 ? p->fd_len : p->data_len;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > total)
		return CURL_SEEKFUNC_CANTSEEK;
	ps->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* A body_fn body: our own position, so curl can rewind with the seek
 * callback for a retry or a redirect. */
struct gen_src {
	const struct http_request *req;
	uint64_t pos;
	int err;                    /* errno from body_fn */
};

static size_t gen_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct gen_src *gs = arg;
	uint64_t total = gs->req->body_fn_len;
	size_t want = size * nitems;
	ssize_t n;

	if (gs->pos >= total)
		return 0;
	if (want > total - gs->pos)
		want = (size_t)(total - gs->pos);
	n = gs->req->body_fn(gs->req->body_fn_ctx, gs->pos, buf, want);
	if (n <= 0 || (size_t)n > want) {
		/* Short of the declared length, or a local failure: never send
		 * a body other than the one promised. */
		gs->err = n < 0 ? (int)-n : EIO;
		return CURL_READFUNC_ABORT;
	}
	gs->pos += (uint64_t)n;
	return (size_t)n;
}

static int gen_seek(void *arg, curl_off_t offset, int origin)
{
	struct gen_src *gs = arg;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > gs->req->body_fn_len)
		return CURL_SEEKFUNC_CANTSEEK;
	gs->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

struct attempt {
	const struct http_request *req;
	struct http_response *resp;
	CURL *easy;
	struct strbuf body;         /* collected body (no sink, or an error status) */
	size_t body_cap;            /* collected-body limit */
	bool body_truncates;        /* over body_cap: keep the head (error bodies), else fail */
	uint64_t rx_bytes;          /* body bytes received from the server, any status */
	uint64_t sink_bytes;        /* body bytes handed to the sink */
	int abort_err;              /* why the write callback stopped the transfer */
	bool got_header;            /* a status line was received */
	struct part_src *srcs;
	struct gen_src gen;
};

static bool is_2xx(long status)
{
	return status >= 200 && status < 300;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct attempt *at = userp;
	size_t len = size * nmemb;
	long status = at->resp->status;
	int rc;

	at->rx_bytes += len;
	if (at->req->sink && is_2xx(status)) {
		rc = at->req->sink(at->req->sink_ctx, data, len);
		if (rc < 0) {
			at->abort_err = rc;
			return 0;   /* CURLE_WRITE_ERROR */
		}
		at->sink_bytes += len;
		return len;
	}
	if (at->body.len + len > at->body_cap) {
		if (!at->body_truncates) {
			at->abort_err = -EFBIG;
			return 0;
		}
		len = at->body_cap - at->body.len;
	}
	sb_add(&at->body, data, len);
	if (at->body.oom) {
		at->abort_err = -ENOMEM;
		return 0;
	}
	return size * nmemb;
}

static char *dup_trimmed(const char *s, size_t n)
{
	char *out;

	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	out = malloc(n + 1);
	if (out) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return out;
}

/* Retry-After is seconds or an HTTP date; -1 when unparsable. */
static long parse_retry_after(const char *v)
{
	char *end;
	long s;
	time_t t;

	while (*v == ' ' || *v == '\t')
		v++;
	if (*v >= '0' && *v <= '9') {
		s = strtol(v, &end, 10);
		return s >= 0 ? s : -1;
	}
	t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	s = (long)(t - time(NULL));
	return s > 0 ? s : 0;
}

static void reset_response_headers(struct http_response *resp)
{
	free(resp->content_type);
	free(resp->content_range);
	resp->content_type = NULL;
	resp->content_range = NULL;
	resp->content_length = -1;
	resp->retry_after_s = -1;
}

/* req->sink_idle: curl calls this about once a second even when no byte
 * moves, which the write callback cannot see. */
static int on_xferinfo(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct attempt *at = userp;
	int rc;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	rc = at->req->sink(at->req->sink_ctx, NULL, 0);
	if (rc < 0) {
		at->abort_err = rc;
		return 1;   /* CURLE_ABORTED_BY_CALLBACK */
	}
	return 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct attempt *at = userp;
	struct http_response *resp = at->resp;
	size_t len = size * nmemb;
	const char *colon;
	size_t nlen;
	char *val;

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue, say): forget the old one. */
		const char *sp = memchr(data, ' ', len);

		reset_response_headers(resp);
		resp->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		at->got_header = true;
		return len;
	}
	colon = memchr(data, ':', len);
	if (!colon)
		return len;
	nlen = (size_t)(colon - data);
	val = dup_trimmed(colon + 1, len - nlen - 1);
	if (!val) {
		at->abort_err = -ENOMEM;
		return 0;
	}
	if (nlen == 12 && strncasecmp(data, "Content-Type", nlen) == 0) {
		free(resp->content_type);
		resp->content_type = val;
		return len;
	}
	if (nlen == 13 && strncasecmp(data, "Content-Range", nlen) == 0) {
		free(resp->content_range);
		resp->content_range = val;
		return len;
	}
	if (nlen == 14 && strncasecmp(data, "Content-Length", nlen) == 0) {
		char *end;
		long long v = strtoll(val, &end, 10);

		if (end != val && *end == '\0' && v >= 0)
			resp->content_length = v;
	} else if (nlen >= 11 && strncasecmp(data, "Retry-After", 11) == 0) {
		/* Also "Retry-After-<throttler>" as sent by the Daytona API's
		 * rate limiter: take the longest wait asked for. */
		long s = parse_retry_after(val);

		if (s > resp->retry_after_s)
			resp->retry_after_s = s;
	}
	free(val);
	return len;
}

/* The request's header list; NULL is a valid (empty) list, so failure is
 * reported through *ok. */
static struct curl_slist *build_headers(struct http_client *hc, const struct http_request *req,
					bool has_body, bool *okp)
{
	struct curl_slist *list = NULL, *tmp;
	struct strbuf ct = STRBUF_INIT;
	size_t i;
	bool ok = true;

#define APPEND(line) do { \
		tmp = curl_slist_append(list, (line)); \
		if (!tmp) { ok = false; goto out; } \
		list = tmp; \
	} while (0)

	pthread_rwlock_rdlock(&hc->hdr_lock);
	for (i = 0; i < hc->n_headers; i++)
		APPEND(hc->headers[i]);
	if (hc->auth_header)
		APPEND(hc->auth_header);
	if (req->headers)
		for (i = 0; req->headers[i]; i++)
			APPEND(req->headers[i]);
	if ((req->body || req->body_fn) && req->content_type) {
		sb_addf(&ct, "Content-Type: %s", req->content_type);
		if (ct.oom) {
			ok = false;
			goto out;
		}
		APPEND(sb_str(&ct));
	}
	/* No "Expect: 100-continue": it costs a round trip per upload, and the
	 * toolbox reads the body anyway. */
	if (has_body)
		APPEND("Expect:");
out:
	pthread_rwlock_unlock(&hc->hdr_lock);
	sb_free(&ct);
	*okp = ok;
	if (!ok) {
		curl_slist_free_all(list);
		return NULL;
	}
	return list;
#undef APPEND
}

static curl_mime *build_mime(CURL *easy, const struct http_request *req, struct part_src *srcs)
{
	curl_mime *mime = curl_mime_init(easy);
	size_t i;

	if (!mime)
		return NULL;
	for (i = 0; i < req->n_parts; i++) {
		const struct http_part *p = &req->parts[i];
		curl_mimepart *mp = curl_mime_addpart(mime);
		curl_off_t sz = p->fd >= 0 ? (curl_off_t)p->fd_len : (curl_off_t)p->data_len;

		if (!mp)
			goto fail;
		srcs[i].part = p;
		srcs[i].pos = 0;
		srcs[i].err = 0;
		if (curl_mime_name(mp, p->name) != CURLE_OK)
			goto fail;
		if (p->filename && (curl_mime_filename(mp, p->filename) != CURLE_OK ||
				    curl_mime_type(mp, "application/octet-stream") != CURLE_OK))
			goto fail;
		if (curl_mime_data_cb(mp, sz, part_read, part_seek, NULL, &srcs[i]) != CURLE_OK)
			goto fail;
	}
	return mime;
fail:
	curl_mime_free(mime);
	return NULL;
}

static int curl_to_errno(CURLcode cc, long os_errno)
{
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		if (os_errno == EHOSTUNREACH || os_errno == ENETUNREACH)
			return -EHOSTUNREACH;
		if (os_errno == ETIMEDOUT)
			return -ETIMEDOUT;
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* Connection-level failures where the server cannot have seen the request:
 * none of it was sent (CURLINFO_REQUEST_SIZE counts a request once its head
 * has gone out; it is reset for each transfer). A timeout is such a failure
 * only when it came before that, in the connect: not CONNECT_TIME 0, which
 * curl also reports for a connection it reused, where a request that timed
 * out had reached the server (a move or a create held there was sent again,
 * and the second undid a rename the user made meanwhile). */
static bool nothing_sent(CURLcode cc, CURL *easy)
{
	long req_size = 0;

	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return true;
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &req_size);
		return req_size == 0;
	default:
		return false;
	}
}

static bool transport_retryable(CURLcode cc, const struct attempt *at)
{
	if (at->abort_err)
		return false;    /* our sink or our limits said stop: final */
	if (nothing_sent(cc, at->easy))
		return true;
	if (!at->req->idempotent)
		return false;
	switch (cc) {
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		/* A reset. Safe to replay unless a sink already has part of the
		 * body (it cannot take it twice); a collected body is simply
		 * thrown away and received again. */
		return at->sink_bytes == 0;
	default:
		return false;
	}
}

static bool status_retryable(long status, const struct http_request *req)
{
	switch (status) {
	case 429:
	case 503:
		/* Refused before any work was done: safe for any method. */
		return true;
	case 502:
	case 504:
		/* A proxy hop failed; the upstream may have acted. */
		return req->idempotent;
	default:
		return false;
	}
}

long http_stall_secs(long stall_timeout_ms, long own_timeout_ms)
{
	/* A request with a timeout of its own is one the server holds silent
	 * until its work is done (a command, a sandbox start): a stall limit
	 * would cut it before that timeout, and the timeout bounds it. */
	if (stall_timeout_ms <= 0 || own_timeout_ms > 0)
		return 0;
	return (stall_timeout_ms + 999) / 1000;
}

/* curl's receive buffer for streamed bodies (setup_handle) */
#define HTTP_STREAM_BUFFER (256L * 1024)

static void setup_handle(struct http_client *hc, CURL *easy, const struct http_request *req,
			 struct attempt *at, char *curl_err)
{
	long total = req->timeout_ms > 0 ? req->timeout_ms :
		     (req->streaming ? 0 : hc->cfg.request_timeout_ms);
	long stall_secs;

	/* The reset keeps live connections and the share (see curl_easy_reset(3)). */
	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_MAXCONNECTS, (long)hc->cfg.max_connections);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, hc->user_agent);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, hc->cfg.connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, total);
	stall_secs = http_stall_secs(hc->cfg.stall_timeout_ms, req->timeout_ms);
	if (stall_secs > 0) {
		/* Less than one byte a second for stall_timeout: the peer is gone. */
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, stall_secs);
	}
	/* Collected bodies (JSON listings) compress well; ranged downloads
	 * into a sink must stay byte-exact, so no encoding there. */
	if (!req->sink)
		curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, at);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, at);
	/* A streamed body (a sequential read's download) comes in curl's
	 * buffer's worth: 16 KiB by default, i.e. 64 recv, 64 poll and 64 calls
	 * of the sink per MiB; 256 KiB makes that 4 (perf, a cold 1 GiB cat:
	 * ~6% of the mount's CPU). The buffer is the handle's, so a pooled
	 * handle keeps 256 KiB at most. */
	if (req->sink && req->streaming)
		curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, HTTP_STREAM_BUFFER);
	if (req->sink && req->sink_idle) {
		curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
		curl_easy_setopt(easy, CURLOPT_XFERINFODATA, at);
		curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	}
}

static void set_method(CURL *easy, const struct http_request *req, curl_mime *mime,
		       struct gen_src *gen)
{
	const char *m = req->method ? req->method : "GET";

	if (mime) {
		curl_easy_setopt(easy, CURLOPT_MIMEPOST, mime);
	} else if (req->body_fn) {
		gen->pos = 0;
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_fn_len);
		curl_easy_setopt(easy, CURLOPT_READFUNCTION, gen_read);
		curl_easy_setopt(easy, CURLOPT_READDATA, gen);
		curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, gen_seek);
		curl_easy_setopt(easy, CURLOPT_SEEKDATA, gen);
	} else if (req->body || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0) {
		/* A POST without a body still needs Content-Length: 0. */
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
	} else {
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	}
	if (strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0)
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, m);
	if (strcmp(m, "HEAD") == 0)
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
}

static void format_error(char *errbuf, size_t errlen, const struct http_request *req, CURLcode cc,
			 const char *curl_err, int attempts, int rc, const struct attempt *at)
{
	char detail[CURL_ERROR_SIZE + 8] = "";

	if (!errbuf || errlen == 0)
		return;
	if (at->abort_err) {
		snprintf(errbuf, errlen, "%s %s: %s", req->method, req->url,
			 at->abort_err == -EFBIG ? "response body too large" : strerror(-rc));
		return;
	}
	if (curl_err[0] && strcmp(curl_err, curl_easy_strerror(cc)) != 0)
		snprintf(detail, sizeof(detail), ": %s", curl_err);
	/* The error buffer may end with a newline. */
	detail[strcspn(detail, "\r\n")] = '\0';
	snprintf(errbuf, errlen, "%s %s: %s%s%s", req->method, req->url, curl_easy_strerror(cc), detail,
		 attempts > 1 ? " (after retries)" : "");
}

/* When (clock_mono_ms) an attempt last ended without telling whether
 * it did its work: sent, then no answer, a 5xx (a gateway's, whose
 * service may have done it) or a 408. Such a request may still land in the sandbox
 * later (http_last_unsure). Every client of the process counts. */
static _Atomic int64_t last_unsure_ms;

static void note_unsure(CURLcode cc, long status)
{
	/* Not sent at all: nothing can land. */
	if (cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_COULDNT_CONNECT)
		return;
	/* 408: the toolbox stopped a command at its own limit, and what
	 * the command started may run on. */
	if (cc != CURLE_OK || status >= 500 || status == 408)
		atomic_store(&last_unsure_ms, clock_mono_ms());
}

double http_last_unsure(void)
{
	int64_t ms = atomic_load(&last_unsure_ms);

	return ms ? (double)ms / 1e3 : 0;
}

static long backoff_ms(const struct http_client *hc, int retry, long retry_after_s)
{
	static _Thread_local uint64_t rng;
	long base = hc->cfg.retry_base_ms > 0 ? hc->cfg.retry_base_ms : 200;
	long d = base, jitter;
	int i;

	for (i = 0; i < retry && d < BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > BACKOFF_CAP_MS)
		d = BACKOFF_CAP_MS;
	if (!rng) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&rng;
		rng |= 1;
	}
	/* xorshift64: the jitter only needs to decorrelate threads and clients. */
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	/* "Equal jitter": between half and all of the exponential delay. */
	jitter = (long)(rng % (uint64_t)(d / 2 + 1));
	d = d / 2 + jitter;
	if (retry_after_s >= 0) {
		long ra = retry_after_s * 1000 > RETRY_AFTER_CAP_MS ? RETRY_AFTER_CAP_MS : retry_after_s * 1000;

		if (ra > d)
			d = ra;
	}
	return d;
}

void http_response_free(struct http_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	free(resp->content_type);
	free(resp->content_range);
	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	resp->retry_after_s = -1;
}

int http_do(struct http_client *hc, const struct http_request *req, struct http_response *resp,
	    char *errbuf, size_t errlen)
{
	char curl_err[CURL_ERROR_SIZE];
	struct attempt at;
	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	CURL *easy;
	CURLcode cc = CURLE_OK;
	int rc = 0, attempt;
	bool has_body = req->body || req->n_parts || req->body_fn;
	bool hdrs_ok;

	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	resp->retry_after_s = -1;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!req->url || !req->method)
		return -EINVAL;

	easy = thread_handle(hc);
	if (!easy) {
		if (errbuf)
			snprintf(errbuf, errlen, "cannot create a curl handle");
		return -ENOMEM;
	}
	memset(&at, 0, sizeof(at));
	at.req = req;
	at.resp = resp;
	at.easy = easy;
	at.gen.req = req;
	if (req->n_parts) {
		at.srcs = calloc(req->n_parts, sizeof(*at.srcs));
		if (!at.srcs)
			return -ENOMEM;
	}
	hdrs = build_headers(hc, req, has_body, &hdrs_ok);
	if (!hdrs_ok) {
		rc = -ENOMEM;
		goto out;
	}

	for (attempt = 0;; attempt++) {
		long status, wait;
		curl_off_t down = 0, up = 0;

		sb_reset(&at.body);
		at.body.oom = false;
		at.rx_bytes = at.sink_bytes = 0;
		at.abort_err = 0;
		at.got_header = false;
		reset_response_headers(resp);
		resp->status = 0;
		resp->attempts = attempt + 1;
		at.body_cap = req->sink ? ERROR_BODY_CAP : (req->max_body ? req->max_body : DEFAULT_MAX_BODY);
		at.body_truncates = req->sink != NULL;
		curl_err[0] = '\0';

		setup_handle(hc, easy, req, &at, curl_err);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
		if (req->n_parts) {
			/* A fresh mime per attempt: every part restarts at offset 0. */
			mime = build_mime(easy, req, at.srcs);
			if (!mime) {
				rc = -ENOMEM;
				goto out;
			}
		}
		at.gen.err = 0;
		set_method(easy, req, mime, &at.gen);

		atomic_fetch_add(&hc->n_requests, 1);
		cc = curl_easy_perform(easy);

		curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
		curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
		atomic_fetch_add(&hc->n_bytes_down, (uint64_t)(down > 0 ? down : 0));
		atomic_fetch_add(&hc->n_bytes_up, (uint64_t)(up > 0 ? up : 0));
		status = 0;
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		if (status)
			resp->status = status;
		note_unsure(cc, status);

		if (cc == CURLE_OK) {
			if (attempt < hc->cfg.max_retries && status_retryable(resp->status, req)) {
				wait = backoff_ms(hc, attempt, resp->retry_after_s);
				log_debug("%s %s: HTTP %ld, retrying in %ld ms", req->method, req->url,
					  resp->status, wait);
				goto retry;
			}
			rc = 0;
			break;
		}

		/* Transport failure. */
		if (at.abort_err) {
			rc = at.abort_err;
		} else {
			long os_errno = 0;
			size_t i;

			curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
			rc = curl_to_errno(cc, os_errno);
			for (i = 0; i < req->n_parts; i++)
				if (at.srcs[i].err) {
					rc = -at.srcs[i].err;   /* a local read error, not the network */
					at.abort_err = rc;
				}
			if (at.gen.err) {
				rc = -at.gen.err;
				at.abort_err = rc;
			}
		}
		if (attempt < hc->cfg.max_retries && transport_retryable(cc, &at)) {
			wait = backoff_ms(hc, attempt, -1);
			log_debug("%s %s: %s, retrying in %ld ms", req->method, req->url,
				  curl_easy_strerror(cc), wait);
			goto retry;
		}
		format_error(errbuf, errlen, req, cc, curl_err, attempt + 1, rc, &at);
		break;
retry:
		atomic_fetch_add(&hc->n_retries, 1);
		if (mime) {
			curl_easy_setopt(easy, CURLOPT_MIMEPOST, NULL);
			curl_mime_free(mime);
			mime = NULL;
		}
		sleep_ms(wait);
	}

	if (rc == 0) {
		if (at.body.oom) {
			rc = -ENOMEM;
		} else if (at.body.len || !req->sink) {
			resp->body_len = at.body.len;
			resp->body = sb_detach(&at.body);
			if (!resp->body)
				rc = -ENOMEM;
		}
	} else {
		resp->status = at.got_header ? resp->status : 0;
	}
out:
	/* The handle keeps pointers to our headers, mime and buffers: drop them
	 * before they go away. */
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
	if (mime) {
		curl_easy_setopt(easy, CURLOPT_MIMEPOST, NULL);
		curl_mime_free(mime);
	}
	curl_slist_free_all(hdrs);
	sb_free(&at.body);
	free(at.srcs);
	if (rc == -ENOMEM && errbuf && errlen && !errbuf[0])
		snprintf(errbuf, errlen, "%s %s: out of memory", req->method, req->url);
	return rc;
}
