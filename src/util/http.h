/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.h - the HTTP transport of daytonafs, on libcurl.
 *
 * Knows nothing of Daytona. One http_client is shared by every thread; each
 * thread gets its own CURL easy handle (so connections are kept alive per
 * thread) and all handles share one CURLSH for DNS, TLS sessions and the
 * connection pool. Every request has a connect timeout and a total timeout
 * (a low-speed limit for streaming bodies), and transient failures (connect
 * errors, resets before any response byte, 429, 502, 503, 504) are retried
 * with exponential backoff and jitter, honouring Retry-After, up to
 * cfg.max_retries times, when the request is idempotent or nothing was sent.
 *
 * Secrets: headers marked secret (http_client_set_auth) are never logged,
 * and the client never enables CURLOPT_VERBOSE output that would show them.
 */
#ifndef DAYTONAFS_HTTP_H
#define DAYTONAFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_config {
	long connect_timeout_ms;   /* default 10000 */
	long request_timeout_ms;   /* total time for a request with a bounded body; default 60000 */
	long stall_timeout_ms;     /* streaming bodies: abort when no byte moves for this long; default 30000 */
	int max_retries;           /* default 4 */
	long retry_base_ms;        /* first backoff; doubles each try, with jitter; default 200 */
	int max_connections;       /* connection-pool size across threads; default 16 */
	const char *user_agent;    /* e.g. "daytonafs/0.1.0" */
};

void http_config_defaults(struct http_config *cfg);

struct http_client;

/* Returns NULL on failure (out of memory, curl_global_init failure). */
struct http_client *http_client_new(const struct http_config *cfg);
void http_client_free(struct http_client *hc);

/* The Authorization header value, e.g. "Bearer xyz". Copied; never logged. */
int http_client_set_auth(struct http_client *hc, const char *authorization);
/* A header added to every request, e.g. "X-Daytona-SDK-Version: 0.190.0". */
int http_client_add_header(struct http_client *hc, const char *header_line);

/* A sink for a response body. Return 0 to continue, a negative errno to abort. */
typedef int (*http_sink_fn)(void *ctx, const void *data, size_t len);

/* One multipart/form-data part. Exactly one of data or fd is used. */
struct http_part {
	const char *name;          /* form field name, e.g. "files[0].path" */
	const char *filename;      /* NULL for a plain field */
	const void *data;          /* in-memory content ... */
	size_t data_len;
	int fd;                    /* ... or a file read with pread from offset 0; -1 when unused */
	uint64_t fd_len;           /* bytes of fd to send */
};

struct http_request {
	const char *method;        /* "GET", "POST", "PUT", "DELETE" */
	const char *url;           /* absolute, already encoded (see urlenc.h) */
	const char *const *headers;/* extra header lines, NULL-terminated, or NULL */

	/* Request body: at most one of these. */
	const void *body;          /* raw body (e.g. JSON) with body_len */
	size_t body_len;
	const char *content_type;  /* for body; e.g. "application/json" */
	const struct http_part *parts; /* multipart/form-data */
	size_t n_parts;
	/* ... or a body made while it is sent (e.g. an archive of a file):
	 * body_fn fills buf with up to len bytes at offset off of a body of
	 * exactly body_fn_len bytes, and returns how many (> 0), or a negative
	 * errno. Offsets only grow, except that a retry starts again at 0.
	 * content_type applies to it as to body. */
	ssize_t (*body_fn)(void *ctx, uint64_t off, void *buf, size_t len);
	void *body_fn_ctx;
	uint64_t body_fn_len;

	/* Response body destination: a sink, or (sink == NULL) collected into
	 * http_response.body up to max_body bytes (0 = 16 MiB); a larger body
	 * fails with -EFBIG. The sink gets 2xx bodies only: the body of any other
	 * status (an error message) is collected into http_response.body instead
	 * (its first 64 KiB), so that the caller can report it. The response's
	 * headers (http_response) are filled before the sink's first call. */
	http_sink_fn sink;
	void *sink_ctx;
	size_t max_body;

	bool idempotent;           /* safe to retry after the request was sent */
	bool streaming;            /* no total timeout; the stall timeout applies */
	bool sink_idle;            /* the sink is also called with (NULL, 0) about once a second,
				    * bytes or not, so that it can end a quiet stream (a negative
				    * errno: as from a call with bytes) */
	long timeout_ms;           /* overrides cfg.request_timeout_ms when > 0 */
};

struct http_response {
	long status;               /* HTTP status, 0 if none was received */
	char *body;                /* NUL-terminated collected body (when no sink), or NULL */
	size_t body_len;
	char *content_type;        /* malloc'd, or NULL */
	char *content_range;       /* malloc'd value of Content-Range, or NULL */
	int64_t content_length;    /* -1 when absent */
	long retry_after_s;        /* parsed Retry-After, -1 when absent */
	int attempts;              /* how many tries it took */
};

/*
 * Performs the request, retrying as described above. Returns 0 when an HTTP
 * response was received (whatever its status: the caller maps statuses), or
 * a negative errno for a transport failure after the retries:
 * -ETIMEDOUT (timeouts), -ECONNREFUSED, -EHOSTUNREACH (DNS, unreachable),
 * -ECONNRESET (reset, truncated body), -EFBIG, -ENOMEM, -EIO (other), or the
 * sink's own negative errno. On every return the caller must call
 * http_response_free(resp) (it is safe on a zeroed struct).
 * errbuf (may be NULL) receives a one-line human-readable reason.
 */
int http_do(struct http_client *hc, const struct http_request *req,
	    struct http_response *resp, char *errbuf, size_t errlen);

/* The low-speed limit (seconds under 1 B/s) for a request whose
 * http_request.timeout_ms is own_timeout_ms (0: none); 0 means no limit. Every request
 * without a timeout of its own gets the stall limit (with streaming it is
 * the only one); one with its own timeout gets none, so that a server that
 * answers only when done is not cut before that timeout. */
long http_stall_secs(long stall_timeout_ms, long own_timeout_ms);

void http_response_free(struct http_response *resp);

/* When (CLOCK_MONOTONIC seconds; 0: never) a request of this process last
 * failed in a way that leaves its effect unknown (sent, then no answer, a
 * 5xx or a 408): it may still be done, later, by the other side. */
double http_last_unsure(void);

/* Counters, for debugging and the benchmarks. */
struct http_stats {
	uint64_t requests;         /* attempts sent, retries included */
	uint64_t retries;
	uint64_t bytes_down;
	uint64_t bytes_up;
};
void http_client_stats(struct http_client *hc, struct http_stats *out);

#endif
