/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.c against a tiny scripted HTTP/1.1 server in this process: retries
 * and what is never retried, Retry-After, body replay, sinks, limits,
 * headers, timeouts, and one connection pool shared by many threads.
 * Then daytona.c against a fake of the API on the same server, for what the
 * local Daytona server cannot be made to do (tests named dt_*).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daytona.h"
#include "http.h"
#include "strbuf.h"
#include "unit.h"

/* ---- the server ---- */

static int listen_fd;
static int port;
static atomic_int n_conns;      /* connections accepted */
static atomic_int n_reqs;       /* requests read */
static atomic_int script_left;  /* how many more requests get the fault */
static char last_headers[4096];
static char last_body_head[2048];     /* the first bytes of the last request's body */
static size_t last_body_head_len;
static size_t last_body_len;
static uint32_t last_body_sum;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

static void respond(int fd, int status, const char *extra, const void *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len,
			 extra ? extra : "");

	send_all(fd, head, (size_t)n);
	if (len)
		send_all(fd, body, len);
}

static uint32_t sum_bytes(const unsigned char *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i < n; i++)
		s = s * 31 + p[i];
	return s;
}

/* Reads one request; returns 0, or -1 when the peer closed. */
static int read_request(int fd, char *line, size_t lcap, char *hdrs, size_t hcap)
{
	char buf[65536];
	size_t have = 0, clen = 0, body_have;
	char *end, *cl;
	uint32_t s = 0;

	for (;;) {
		ssize_t r;

		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end)
			break;
		if (have == sizeof(buf) - 1)
			return -1;
		r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (r <= 0)
			return -1;
		have += (size_t)r;
	}
	*end = '\0';
	snprintf(line, lcap, "%.*s", (int)strcspn(buf, "\r\n"), buf);
	snprintf(hdrs, hcap, "%.*s", (int)(hcap - 1), buf);
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (cl)
		clen = strtoul(cl + 17, NULL, 10);
	body_have = have - (size_t)(end + 4 - buf);
	if (body_have > clen)
		body_have = clen;   /* no pipelining from curl */
	s = sum_bytes((unsigned char *)end + 4, body_have, s);
	pthread_mutex_lock(&last_lock);
	last_body_head_len = body_have < sizeof(last_body_head) ? body_have : sizeof(last_body_head);
	memcpy(last_body_head, end + 4, last_body_head_len);
	pthread_mutex_unlock(&last_lock);
	while (body_have < clen) {
		ssize_t r = recv(fd, buf, sizeof(buf) < clen - body_have ? sizeof(buf) : clen - body_have, 0);

		if (r <= 0)
			return -1;
		s = sum_bytes((unsigned char *)buf, (size_t)r, s);
		pthread_mutex_lock(&last_lock);
		if (last_body_head_len < sizeof(last_body_head)) {
			size_t k = sizeof(last_body_head) - last_body_head_len;

			k = k < (size_t)r ? k : (size_t)r;
			memcpy(last_body_head + last_body_head_len, buf, k);
			last_body_head_len += k;
		}
		pthread_mutex_unlock(&last_lock);
		body_have += (size_t)r;
	}
	pthread_mutex_lock(&last_lock);
	/* /headers answers with the request before it. */
	if (!strstr(hdrs, " /headers "))
		snprintf(last_headers, sizeof(last_headers), "%.*s", (int)sizeof(last_headers) - 1, hdrs);
	last_body_len = clen;
	last_body_sum = s;
	pthread_mutex_unlock(&last_lock);
	if (getenv("TH_DEBUG")) fprintf(stderr, "SRV: %s\n", line);
	atomic_fetch_add(&n_reqs, 1);
	return 0;
}

static bool take_fault(void)
{
	return atomic_fetch_sub(&script_left, 1) > 0;
}

/* A small fake of the Daytona API, for what the real local server cannot
 * be made to do: odd pages, a Range-less server, malformed JSON, stuck states. */
static void respond_json(int fd, int status, const char *json)
{
	respond(fd, status, "Content-Type: application/json\r\n", json, strlen(json));
}

static bool serve_daytona(int fd, const char *path)
{
	char body[512];
	char file[1000];
	int n;

	for (size_t i = 0; i < sizeof(file); i++)
		file[i] = (char)('a' + i % 26);
	if (strcmp(path, "/api/sandbox?limit=200&sort=createdAt&order=asc") == 0) {
		n = snprintf(body, sizeof(body), "{\"items\":[{\"id\":\"a\",\"name\":\"A\",\"state\":\"started\","
			     "\"toolboxProxyUrl\":\"http://127.0.0.1:%d/tb\"},{\"noid\":1}],\"nextCursor\":\"c+2/=\"}",
			     port);
		respond(fd, 200, "Content-Type: application/json\r\n", body, (size_t)n);
	} else if (strcmp(path, "/api/sandbox?limit=200&sort=createdAt&order=asc&cursor=c%2B2/%3D") == 0) {
		respond_json(fd, 200, "{\"items\":[{\"id\":\"b\",\"name\":\"B\",\"state\":\"stopped\"}],"
			     "\"nextCursor\":null}");
	} else if (strcmp(path, "/api/sandbox/bad") == 0) {
		respond_json(fd, 200, "{\"id\": \"trunc");
	} else if (strcmp(path, "/api/sandbox/arr") == 0) {
		respond_json(fd, 200, "[]");
	} else if (strcmp(path, "/api/sandbox/noid") == 0) {
		respond_json(fd, 200, "{\"name\":\"x\"}");
	} else if (strcmp(path, "/api/sandbox/stuck/start") == 0 || strcmp(path, "/api/sandbox/stuck") == 0) {
		respond_json(fd, 200, "{\"id\":\"stuck\",\"state\":\"starting\"}");
	} else if (strcmp(path, "/api/sandbox/err/start") == 0) {
		respond_json(fd, 200, "{\"id\":\"err\",\"state\":\"starting\"}");
	} else if (strcmp(path, "/api/sandbox/err") == 0) {
		respond_json(fd, 200, "{\"id\":\"err\",\"state\":\"error\",\"errorReason\":\"disk on fire\"}");
	} else if (strcmp(path, "/api/sandbox/gone/stop") == 0) {
		respond_json(fd, 200, "{\"id\":\"gone\",\"state\":\"stopping\"}");
	} else if (strcmp(path, "/api/sandbox/gone") == 0) {
		respond_json(fd, 404, "{\"statusCode\":404,\"message\":\"Sandbox with ID or name gone not found\"}");
	} else if (strncmp(path, "/tb/box1/files/download?path=/full", 34) == 0) {
		respond(fd, 200, NULL, file, sizeof(file));        /* ignores Range */
	} else if (strncmp(path, "/tb/box1/files/download?path=/early", 35) == 0) {
		respond(fd, 206, "Content-Range: bytes 0-999/1000\r\n", file, sizeof(file));
	} else if (strncmp(path, "/tb/box1/files/download?path=/short", 35) == 0) {
		/* 206s of at most 100 bytes from where Range asks, of a 1000-byte file. */
		const char *r = strcasestr(last_headers, "\r\nRange: bytes=");
		unsigned long a = r ? strtoul(r + 15, NULL, 10) : 0;
		size_t k = a >= sizeof(file) ? 0 : sizeof(file) - a < 100 ? sizeof(file) - a : 100;
		char cr[96];

		snprintf(cr, sizeof(cr), "Content-Range: bytes %lu-%lu/%zu\r\n", a, a + k - 1, sizeof(file));
		respond(fd, 206, cr, file + a, k);
	} else if (strncmp(path, "/tb/box1/files?path=/weird", 26) == 0) {
		respond_json(fd, 200, "{\"x\":1}");
	} else if (strncmp(path, "/tb/box1/files/info?path=/e400", 30) == 0) {
		respond(fd, 400, NULL, "", 0);
	} else if (strncmp(path, "/tb/box1/files/info?path=/stopped", 33) == 0) {
		respond_json(fd, 400, "{\"statusCode\":400,\"message\":\"bad request: no IP address found. "
			     "Is the Sandbox started?\",\"code\":\"BAD_REQUEST\"}");
	} else if (strcmp(path, "/tb/nofile/files/bulk-upload") == 0) {
		respond_json(fd, 200, "{\"files\":null}");
	} else if (strcmp(path, "/tb/trims/files/bulk-upload") == 0) {
		respond_json(fd, 200, "{\"files\":[{\"path\":\"/d/a\",\"bytes\":1}]}");
	} else if (strcmp(path, "/tb/echo/files/bulk-upload") == 0) {
		respond_json(fd, 200, "{\"files\":[{\"path\":\"/d/a\\\\\",\"bytes\":1}]}");
	} else if (strcmp(path, "/tb/box1/files/bulk-upload") == 0) {
		respond_json(fd, 200, "{\"files\":[],\"errors\":[\"/root/x: create: open /root/x: permission denied\"]}");
	} else if (strcmp(path, "/tb/box1/user-home-dir") == 0) {
		respond_json(fd, 200, "{\"dir\":\"/home/mock\"}");
	} else if (strcmp(path, "/tb/box1/process/execute") == 0) {
		respond_json(fd, 200, "{\"exitCode\":\"zero\",\"result\":\"\"}");
	} else {
		respond(fd, 404, NULL, "404 page not found", 18);
	}
	return true;
}

/* Serves one request; returns false to close the connection. */
static bool serve(int fd, const char *line)
{
	char path[256] = "";
	char body[256];
	int n;

	sscanf(line, "%*s %255s", path);
	if (strcmp(path, "/ok") == 0) {
		respond(fd, 200, "Content-Type: text/plain\r\n", "hello", 5);
	} else if (strncmp(path, "/status/", 8) == 0) {
		int st = atoi(path + 8);

		if (take_fault()) {
			n = snprintf(body, sizeof(body), "{\"message\":\"fault %d\"}", st);
			respond(fd, st, "Content-Type: application/json\r\n", body, (size_t)n);
		} else {
			n = snprintf(body, sizeof(body), "len=%zu sum=%u", last_body_len, last_body_sum);
			respond(fd, 200, NULL, body, (size_t)n);
		}
	} else if (strcmp(path, "/retry-after") == 0) {
		if (take_fault())
			respond(fd, 429, "Retry-After-authenticated: 1\r\n", "slow down", 9);
		else
			respond(fd, 200, NULL, "ok", 2);
	} else if (strcmp(path, "/drop") == 0) {
		if (take_fault())
			return false;
		respond(fd, 200, NULL, "ok", 2);
	} else if (strcmp(path, "/truncate") == 0) {
		if (take_fault()) {
			const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";

			send_all(fd, h, strlen(h));
			return false;
		}
		respond(fd, 200, NULL, "0123456789", 10);
	} else if (strncmp(path, "/big/", 5) == 0) {
		size_t len = strtoul(path + 5, NULL, 10);
		char *b = malloc(len ? len : 1);

		for (size_t i = 0; i < len; i++)
			b[i] = (char)('a' + i % 26);
		respond(fd, 200, NULL, b, len);
		free(b);
	} else if (strcmp(path, "/stall") == 0) {
		/* Headers, then nothing: curl's low-speed check averages over a
		 * window, so any early body bytes would delay it. */
		const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";

		send_all(fd, h, strlen(h));
		sleep(4);
		return false;
	} else if (strcmp(path, "/headers") == 0) {
		pthread_mutex_lock(&last_lock);
		respond(fd, 200, "Content-Range: bytes 5-9/100\r\nRetry-After: 7\r\n", last_headers,
			strlen(last_headers));
		pthread_mutex_unlock(&last_lock);
	} else if (strncmp(path, "/api/", 5) == 0 || strncmp(path, "/tb/", 4) == 0) {
		return serve_daytona(fd, path);
	} else {
		respond(fd, 404, NULL, "404 page not found", 18);
	}
	return true;
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char line[512], hdrs[4096];

	while (read_request(fd, line, sizeof(line), hdrs, sizeof(hdrs)) == 0)
		if (!serve(fd, line))
			break;
	close(fd);
	return NULL;
}

static void *accept_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		pthread_t t;

		if (fd < 0)
			continue;
		atomic_fetch_add(&n_conns, 1);
		if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
	return NULL;
}

static void start_server(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	pthread_t t;

	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(listen_fd, 64) != 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
		perror("test server");
		exit(2);
	}
	port = ntohs(sa.sin_port);
	pthread_create(&t, NULL, accept_main, NULL);
	pthread_detach(t);
}

/* ---- helpers ---- */

static struct http_client *hc;
/* A URL on the test server; a few live at once (two per initializer). */
static const char *u(const char *path)
{
	static char urls[4][256];
	static int next;
	char *url = urls[next++ % 4];

	snprintf(url, sizeof(urls[0]), "http://127.0.0.1:%d%s", port, path);
	return url;
}

static struct http_client *new_client(long base_ms, int retries)
{
	struct http_config cfg;

	http_config_defaults(&cfg);
	cfg.retry_base_ms = base_ms;
	cfg.max_retries = retries;
	cfg.stall_timeout_ms = 1000;
	cfg.user_agent = "test-agent/1";
	return http_client_new(&cfg);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct sinkbuf {
	struct strbuf sb;
	int fail_after;     /* return -EPIPE once this many bytes arrived; 0 = never */
	int calls;
};

static int sink(void *ctx, const void *data, size_t len)
{
	struct sinkbuf *s = ctx;

	s->calls++;
	sb_add(&s->sb, data, len);
	if (s->fail_after && s->sb.len >= (size_t)s->fail_after)
		return -EPIPE;
	return 0;
}

/* ---- tests ---- */

UNIT_TEST(simple_get)
{
	struct http_request req = { .method = "GET", .url = u("/ok"), .idempotent = true };
	struct http_response resp;
	char eb[256];

	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), 0);
	CHECK_INT(resp.status, 200);
	CHECK_STR(resp.body, "hello");
	CHECK_INT(resp.body_len, 5);
	CHECK_STR(resp.content_type, "text/plain");
	CHECK_INT(resp.content_length, 5);
	CHECK_INT(resp.retry_after_s, -1);
	CHECK(resp.content_range == NULL);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	http_response_free(&resp);   /* safe twice */
}

UNIT_TEST(keepalive_reuses_connection)
{
	struct http_request req = { .method = "GET", .url = u("/ok"), .idempotent = true };
	struct http_response resp;
	int before = atomic_load(&n_conns);

	for (int i = 0; i < 20; i++) {
		CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
		http_response_free(&resp);
	}
	CHECK(atomic_load(&n_conns) - before <= 1);
}

UNIT_TEST(headers_sent)
{
	const char *extra[] = { "X-Test: 1", NULL };
	struct http_request req = { .method = "POST", .url = u("/ok"), .headers = extra,
				    .body = "{}", .body_len = 2, .content_type = "application/json" };
	struct http_request get = { .method = "GET", .url = u("/headers") };
	struct http_response resp;

	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	http_response_free(&resp);
	CHECK_INT(http_do(hc, &get, &resp, NULL, 0), 0);
	/* /headers echoes the previous request's headers. */
	CHECK(resp.body && strstr(resp.body, "POST /ok HTTP/1.1"));
	CHECK(resp.body && strstr(resp.body, "\r\nX-Test: 1"));
	CHECK(resp.body && strstr(resp.body, "\r\nX-Global: yes"));
	CHECK(resp.body && strstr(resp.body, "\r\nAuthorization: Bearer sekrit"));
	CHECK(resp.body && strstr(resp.body, "\r\nContent-Type: application/json"));
	CHECK(resp.body && strstr(resp.body, "\r\nUser-Agent: test-agent/1"));
	CHECK(resp.body && !strcasestr(resp.body, "Expect:"));
	CHECK_STR(resp.content_range, "bytes 5-9/100");
	CHECK_INT(resp.retry_after_s, 7);
	http_response_free(&resp);
}

UNIT_TEST(big_upload_no_expect)
{
	size_t n = 3u << 20;
	char *big = calloc(1, n);
	struct http_part part = { .name = "f", .filename = "f", .data = big, .data_len = n, .fd = -1 };
	struct http_request req = { .method = "POST", .url = u("/ok"), .parts = &part, .n_parts = 1 };
	struct http_request get = { .method = "GET", .url = u("/headers") };
	struct http_response resp;
	double t0 = now_s();

	/* curl would ask "Expect: 100-continue" for a body this big and wait
	 * for an answer: a round trip per upload that we turn off. */
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK(now_s() - t0 < 0.9);
	http_response_free(&resp);
	CHECK_INT(http_do(hc, &get, &resp, NULL, 0), 0);
	CHECK(resp.body && strstr(resp.body, "POST /ok HTTP/1.1"));
	CHECK(resp.body && strstr(resp.body, "multipart/form-data; boundary="));
	CHECK(resp.body && !strcasestr(resp.body, "Expect"));
	http_response_free(&resp);
	free(big);
}

UNIT_TEST(post_without_body_has_length)
{
	struct http_request req = { .method = "POST", .url = u("/ok") };
	struct http_request get = { .method = "GET", .url = u("/headers") };
	struct http_response resp;

	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	http_response_free(&resp);
	CHECK_INT(http_do(hc, &get, &resp, NULL, 0), 0);
	CHECK(resp.body && strstr(resp.body, "\r\nContent-Length: 0"));
	http_response_free(&resp);
}

UNIT_TEST(retry_503_then_ok)
{
	struct http_request req = { .method = "GET", .url = u("/status/503"), .idempotent = true };
	struct http_response resp;
	struct http_stats a, b;

	http_client_stats(hc, &a);
	atomic_store(&script_left, 2);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	http_client_stats(hc, &b);
	CHECK_INT(resp.status, 200);
	CHECK_INT(resp.attempts, 3);
	CHECK_INT(b.retries - a.retries, 2);
	CHECK_INT(b.requests - a.requests, 3);
	http_response_free(&resp);
}

UNIT_TEST(retry_gives_up)
{
	struct http_request req = { .method = "GET", .url = u("/status/503"), .idempotent = true };
	struct http_response resp;

	atomic_store(&script_left, 100);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 503);
	CHECK_INT(resp.attempts, 4);        /* 1 + max_retries (3) */
	CHECK_STR(resp.body, "{\"message\":\"fault 503\"}");
	http_response_free(&resp);
	atomic_store(&script_left, 0);
}

UNIT_TEST(no_retry_on_4xx_500)
{
	struct http_request req = { .method = "GET", .url = u("/status/500"), .idempotent = true };
	struct http_response resp;

	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 500);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	req.url = u("/status/404");
	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 404);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	atomic_store(&script_left, 0);
}

UNIT_TEST(non_idempotent_502_not_retried_503_is)
{
	struct http_request req = { .method = "POST", .url = u("/status/502"), .body = "x", .body_len = 1 };
	struct http_response resp;

	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 502);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	/* The same call, idempotent: replayed. */
	req.idempotent = true;
	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(resp.attempts, 2);
	http_response_free(&resp);
	/* 503 (and 429): refused before any work, so replayed for any method. */
	req.idempotent = false;
	req.url = u("/status/503");
	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(resp.attempts, 2);
	http_response_free(&resp);
	atomic_store(&script_left, 0);
}

UNIT_TEST(retry_after_honoured)
{
	struct http_request req = { .method = "GET", .url = u("/retry-after"), .idempotent = true };
	struct http_response resp;
	double t0 = now_s();

	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(resp.attempts, 2);
	CHECK(now_s() - t0 >= 0.95);
	CHECK(now_s() - t0 < 5);
	http_response_free(&resp);
}

UNIT_TEST(multipart_replayed_from_fd)
{
	char tmpl[] = "/tmp/test-http-XXXXXX";
	int fd = mkstemp(tmpl);
	size_t n = 300000;
	unsigned char *data = malloc(n);
	struct http_part parts[2] = {
		{ .name = "files[0].path", .data = "/x/y", .data_len = 4, .fd = -1 },
		{ .name = "files[0].file", .filename = "y", .fd = fd, .fd_len = n },
	};
	struct http_request req = { .method = "POST", .url = u("/status/503"), .parts = parts, .n_parts = 2,
				    .idempotent = true };
	struct http_response resp;
	char expect[64];
	size_t first_len;
	uint32_t first_sum;

	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 7);
	CHECK_INT(write(fd, data, n), n);
	unlink(tmpl);
	free(data);
	/* First the body without faults, to learn its length and checksum ... */
	atomic_store(&script_left, 0);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	http_response_free(&resp);
	pthread_mutex_lock(&last_lock);
	first_len = last_body_len;
	first_sum = last_body_sum;
	pthread_mutex_unlock(&last_lock);
	CHECK(first_len > n);
	/* ... then with two 503s: the third attempt must send the same bytes.
	 * (Multipart boundaries differ per attempt, so compare lengths and the
	 * server's report of the final body.) */
	atomic_store(&script_left, 2);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(resp.attempts, 3);
	snprintf(expect, sizeof(expect), "len=%zu ", first_len);
	CHECK(resp.body && strncmp(resp.body, expect, strlen(expect)) == 0);
	(void)first_sum;
	http_response_free(&resp);
	close(fd);
}

UNIT_TEST(multipart_short_file_is_error)
{
	char tmpl[] = "/tmp/test-http-XXXXXX";
	int fd = mkstemp(tmpl);
	struct http_part parts[1] = { { .name = "f", .filename = "f", .fd = fd, .fd_len = 1000 } };
	struct http_request req = { .method = "POST", .url = u("/ok"), .parts = parts, .n_parts = 1,
				    .idempotent = true };
	struct http_response resp;
	char eb[256];

	CHECK_INT(write(fd, "short", 5), 5);
	unlink(tmpl);
	/* The file is shorter than declared: a local error, never retried. */
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -EIO);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	close(fd);
}

UNIT_TEST(sink_gets_2xx_only)
{
	struct sinkbuf s = { STRBUF_INIT, 0, 0 };
	struct http_request req = { .method = "GET", .url = u("/big/100000"), .idempotent = true,
				    .sink = sink, .sink_ctx = &s };
	struct http_response resp;

	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(s.sb.len, 100000);
	CHECK(resp.body == NULL);
	CHECK(s.sb.buf && s.sb.buf[26] == 'a' && s.sb.buf[99999] == (char)('a' + 99999 % 26));
	http_response_free(&resp);
	sb_free(&s.sb);
	/* An error status: its body is collected for the message, not sunk. */
	req.url = u("/status/404");
	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_INT(resp.status, 404);
	CHECK_INT(s.sb.len, 0);
	CHECK_STR(resp.body, "{\"message\":\"fault 404\"}");
	http_response_free(&resp);
	atomic_store(&script_left, 0);
}

UNIT_TEST(sink_abort_not_retried)
{
	struct sinkbuf s = { STRBUF_INIT, 10, 0 };
	struct http_request req = { .method = "GET", .url = u("/big/200000"), .idempotent = true,
				    .sink = sink, .sink_ctx = &s };
	struct http_response resp;
	struct http_stats a, b;
	char eb[256];

	http_client_stats(hc, &a);
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -EPIPE);
	http_client_stats(hc, &b);
	CHECK_INT(b.requests - a.requests, 1);
	CHECK_INT(s.calls, 1);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	sb_free(&s.sb);
}

UNIT_TEST(body_limit)
{
	struct http_request req = { .method = "GET", .url = u("/big/5000"), .idempotent = true, .max_body = 4096 };
	struct http_response resp;
	char eb[256];

	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -EFBIG);
	CHECK_INT(resp.attempts, 1);
	CHECK(strstr(eb, "too large") != NULL);
	CHECK(resp.body == NULL);
	http_response_free(&resp);
	req.max_body = 5000;
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), 0);
	CHECK_INT(resp.body_len, 5000);
	http_response_free(&resp);
}

UNIT_TEST(dropped_connection_retried_when_idempotent)
{
	struct http_request req = { .method = "GET", .url = u("/drop"), .idempotent = true };
	struct http_response resp;
	char eb[256];

	atomic_store(&script_left, 2);
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), 0);
	CHECK_INT(resp.status, 200);
	http_response_free(&resp);
	/* Non-idempotent, and the request reached the server: not replayed
	 * by us (curl may retry a stale reused connection once by itself). */
	req.idempotent = false;
	req.method = "POST";
	atomic_store(&script_left, 5);
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -ECONNRESET);
	CHECK_INT(resp.attempts, 1);
	CHECK_INT(resp.status, 0);
	CHECK(eb[0] != '\0');
	http_response_free(&resp);
	atomic_store(&script_left, 0);
}

UNIT_TEST(truncated_body)
{
	struct sinkbuf s = { STRBUF_INIT, 0, 0 };
	struct http_request req = { .method = "GET", .url = u("/truncate"), .idempotent = true };
	struct http_response resp;

	/* Collected: thrown away and fetched again. */
	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), 0);
	CHECK_STR(resp.body, "0123456789");
	CHECK_INT(resp.attempts, 2);
	http_response_free(&resp);
	/* Into a sink that already has bytes: not replayed, -ECONNRESET. */
	req.sink = sink;
	req.sink_ctx = &s;
	atomic_store(&script_left, 1);
	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), -ECONNRESET);
	CHECK_INT(resp.attempts, 1);
	CHECK_INT(s.sb.len, 10);
	http_response_free(&resp);
	sb_free(&s.sb);
	atomic_store(&script_left, 0);
}

UNIT_TEST(stall_timeout)
{
	struct sinkbuf s = { STRBUF_INIT, 0, 0 };
	struct http_request req = { .method = "GET", .url = u("/stall"), .streaming = true,
				    .sink = sink, .sink_ctx = &s };
	struct http_response resp;
	double t0 = now_s();
	char eb[256];

	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -ETIMEDOUT);
	CHECK(now_s() - t0 < 3.5);
	CHECK_INT(resp.status, 200);
	CHECK_INT(s.sb.len, 0);
	http_response_free(&resp);
	sb_free(&s.sb);
}

/* A sink that ends a quiet stream at its first call without bytes. */
static int quiet_sink(void *ctx, const void *data, size_t len)
{
	int *idle_calls = ctx;

	(void)data;
	if (len)
		return 0;
	++*idle_calls;
	return -ECANCELED;
}

UNIT_TEST(sink_idle_ends_a_quiet_stream)
{
	int idle_calls = 0;
	struct http_request req = { .method = "GET", .url = u("/stall"), .streaming = true,
				    .sink = quiet_sink, .sink_ctx = &idle_calls, .sink_idle = true };
	struct http_response resp;
	char eb[256];

	/* the sink's own errno, not the stall timeout's, and not retried */
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -ECANCELED);
	CHECK_INT(idle_calls, 1);
	CHECK_INT(resp.attempts, 1);
	http_response_free(&resp);
	/* without sink_idle the sink never hears (NULL, 0) */
	idle_calls = 0;
	req.sink_idle = false;
	CHECK_INT(http_do(hc, &req, &resp, eb, sizeof(eb)), -ETIMEDOUT);
	CHECK_INT(idle_calls, 0);
	http_response_free(&resp);
}

UNIT_TEST(total_timeout)
{
	struct http_request req = { .method = "GET", .url = u("/stall"), .timeout_ms = 300 };
	struct http_response resp;
	double t0 = now_s();

	CHECK_INT(http_do(hc, &req, &resp, NULL, 0), -ETIMEDOUT);
	CHECK(now_s() - t0 < 1.0);
	http_response_free(&resp);
}

UNIT_TEST(connection_refused)
{
	struct http_client *h2 = new_client(5, 2);
	struct http_request req = { .method = "POST", .url = "http://127.0.0.1:1/x" };
	struct http_response resp;
	char eb[256];

	/* Nothing was sent, so even a POST is retried. */
	CHECK_INT(http_do(h2, &req, &resp, eb, sizeof(eb)), -ECONNREFUSED);
	CHECK_INT(resp.attempts, 3);
	CHECK_INT(resp.status, 0);
	CHECK(strstr(eb, "onnect") != NULL);
	http_response_free(&resp);
	http_client_free(h2);
}

UNIT_TEST(bad_headers_rejected)
{
	CHECK_INT(http_client_add_header(hc, "X-Bad: a\r\nInjected: b"), -EINVAL);
	CHECK_INT(http_client_add_header(hc, "no colon"), -EINVAL);
	CHECK_INT(http_client_set_auth(hc, "Bearer x\r\nEvil: 1"), -EINVAL);
}

#define THREADS 8
#define PER_THREAD 25

static atomic_int thread_failures;

static void *worker(void *arg)
{
	struct http_request req = { .method = "GET", .url = arg, .idempotent = true };
	struct http_response resp;

	for (int i = 0; i < PER_THREAD; i++) {
		if (http_do(hc, &req, &resp, NULL, 0) != 0 || resp.status != 200 || !resp.body ||
		    strcmp(resp.body, "hello") != 0)
			atomic_fetch_add(&thread_failures, 1);
		http_response_free(&resp);
	}
	return NULL;
}

UNIT_TEST(threads_share_pool)
{
	pthread_t t[THREADS];
	char *the_url = strdup(u("/ok"));
	int before = atomic_load(&n_conns), reqs = atomic_load(&n_reqs);

	/* Two rounds of short-lived threads: the second round's fresh handles
	 * must find the first round's connections in the shared pool. */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < THREADS; i++)
			pthread_create(&t[i], NULL, worker, the_url);
		for (int i = 0; i < THREADS; i++)
			pthread_join(t[i], NULL);
	}
	CHECK_INT(atomic_load(&thread_failures), 0);
	CHECK_INT(atomic_load(&n_reqs) - reqs, 2 * THREADS * PER_THREAD);
	CHECK(atomic_load(&n_conns) - before <= THREADS);
	printf("  %d threads x %d requests x 2 rounds: %d new connections\n", THREADS, PER_THREAD,
	       atomic_load(&n_conns) - before);
	free(the_url);
}

/* ---- daytona.c against the fake ---- */

static struct http_client *dhc;
static struct dt_client *dtc;
static char api_base[128], tb_base[128];

static struct dt_client *mock_client(const char *key, const char *jwt, const char *org, bool keepalive,
				     long wait_ms)
{
	struct sp_config dc = { .api_url = api_base, .api_key = key, .jwt = jwt, .org_id = org,
				.keepalive = keepalive, .wait_timeout_ms = wait_ms };

	return dt_client_new(dhc, &dc);
}

static int dsink(void *ctx, const void *data, size_t len)
{
	sb_add(ctx, data, len);
	return 0;
}

UNIT_TEST(dt_list_pages)
{
	struct sp_sandbox *list = NULL;
	struct sp_error e;
	size_t n = 0;

	CHECK_INT(dt_sandbox_list(dtc, &list, &n, &e), 0);
	/* Two pages, the cursor percent-encoded; an item without an id skipped. */
	CHECK_INT(n, 2);
	if (n == 2) {
		CHECK_STR(list[0].id, "a");
		CHECK_STR(list[0].name, "A");
		CHECK(strstr(list[0].toolbox_url, "/tb") != NULL);
		CHECK_STR(list[1].id, "b");
		CHECK_STR(list[1].state, "stopped");
		CHECK(list[1].json && list[1].json[strlen(list[1].json) - 1] == '\n');
	}
	sp_sandbox_list_free(list, n);
}

UNIT_TEST(dt_malformed_responses)
{
	struct sp_sandbox sb;
	struct sp_fileinfo *fl = NULL;
	struct sp_box box = { "box1", tb_base };
	struct sp_error e;
	size_t n = 7;
	int code = 5;

	CHECK_INT(dt_sandbox_get(dtc, "bad", &sb, &e), -EIO);
	CHECK_STR(e.message, "malformed response from get sandbox bad");
	CHECK_INT(e.err, EIO);
	CHECK_INT(e.http_status, 200);
	CHECK_INT(dt_sandbox_get(dtc, "arr", &sb, &e), -EIO);
	CHECK_INT(dt_sandbox_get(dtc, "noid", &sb, &e), -EIO);
	CHECK(sb.json == NULL);
	CHECK_INT(dt_fs_list(dtc, &box, "/weird", &fl, &n, &e), -EIO);
	CHECK(fl == NULL);
	CHECK_INT(n, 0);
	CHECK_STR(e.message, "malformed response from list /weird");
	CHECK_INT(dt_exec(dtc, &box, "true", NULL, NULL, 0, 0, &code, NULL, &e), -EIO);
	CHECK_INT(code, -1);
}

UNIT_TEST(dt_toolbox_errors)
{
	struct sp_box box = { "box1", tb_base };
	struct sp_fileinfo fi;
	struct sp_error e;

	CHECK_INT(dt_fs_info(dtc, &box, "/e400", &fi, &e), -EINVAL);
	CHECK_STR(e.message, "stat /e400: Invalid argument (HTTP 400)");
	CHECK_INT(dt_fs_info(dtc, &box, "/stopped", &fi, &e), -EHOSTDOWN);
	CHECK(strstr(e.message, "Is the Sandbox started?") != NULL);
	CHECK_INT(dt_fs_upload_mem(dtc, &box, "/root/x", "x", 1, &e), -EACCES);
	CHECK(strstr(e.message, "permission denied") != NULL);
}

UNIT_TEST(dt_upload_reply_and_part_filename)
{
	struct sp_box nofile = { "nofile", tb_base }, trims = { "trims", tb_base }, echo = { "echo", tb_base };
	struct sp_error e;
	char head[sizeof(last_body_head) + 1];

	/* A 2xx that names no file stored nothing (D3), one that names another
	 * path wrote another file (D2): both EIO, never success. */
	CHECK_INT(dt_fs_upload_mem(dtc, &nofile, "/d/a", "x", 1, &e), -EIO);
	CHECK(strstr(e.message, "stored no file") != NULL);
	CHECK_INT(dt_fs_upload_mem(dtc, &trims, "/d/a ", "x", 1, &e), -EIO);
	CHECK(strstr(e.message, "another path") != NULL);
	/* The part's file name is constant whatever the path's basename: Go's
	 * multipart parser drops a part whose file name ends in a backslash. */
	CHECK_INT(dt_fs_upload_mem(dtc, &echo, "/d/a\\", "x", 1, &e), 0);
	pthread_mutex_lock(&last_lock);
	memcpy(head, last_body_head, last_body_head_len);
	head[last_body_head_len] = '\0';
	pthread_mutex_unlock(&last_lock);
	CHECK(strstr(head, "name=\"files[0].file\"; filename=\"file\"") != NULL);
	CHECK(strstr(head, "filename=\"a") == NULL);
}

UNIT_TEST(dt_download_short_ranges_continue)
{
	struct sp_box box = { "box1", tb_base };
	struct strbuf sb = STRBUF_INIT;
	struct sp_error e;
	char want[1000];

	for (size_t i = 0; i < sizeof(want); i++)
		want[i] = (char)('a' + i % 26);
	/* A server that sends less than asked: the rest is asked for, never
	 * returned as a short count (a reader takes that for the end). */
	CHECK_INT((int)dt_fs_download(dtc, &box, "/short", 0, 0, dsink, &sb, &e), 1000);
	CHECK(sb.len == 1000 && memcmp(sb_str(&sb), want, 1000) == 0);
	sb_reset(&sb);
	CHECK_INT((int)dt_fs_download(dtc, &box, "/short", 250, 500, dsink, &sb, &e), 500);
	CHECK(sb.len == 500 && memcmp(sb_str(&sb), want + 250, 500) == 0);
	sb_reset(&sb);
	/* Past the end, a short count is the end of the file. */
	CHECK_INT((int)dt_fs_download(dtc, &box, "/short", 950, 500, dsink, &sb, &e), 50);
	sb_free(&sb);
}

UNIT_TEST(stall_limit_per_request)
{
	/* Without a timeout of its own: the stall limit (rounded up to s). */
	CHECK_INT((int)http_stall_secs(60000, 0), 60);
	CHECK_INT((int)http_stall_secs(1500, 0), 2);
	/* With one (a command, a sandbox start the server holds silent until
	 * done): none, the timeout bounds it (D6). */
	CHECK_INT((int)http_stall_secs(60000, 125000), 0);
	CHECK_INT((int)http_stall_secs(60000, 35000), 0);
	CHECK_INT((int)http_stall_secs(0, 0), 0);
	/* The mount's own commands: the sandbox stops them just before the
	 * client stops waiting, never "no timeout" (0). */
	CHECK_INT((int)dt_command_server_timeout_s(60), 59);
	CHECK_INT((int)dt_command_server_timeout_s(2), 1);
	CHECK_INT((int)dt_command_server_timeout_s(1), 1);
}

UNIT_TEST(dt_download_fallbacks)
{
	struct sp_box box = { "box1", tb_base };
	struct strbuf sb = STRBUF_INIT;
	struct sp_error e;

	/* A 200 for a ranged request: skipped to the offset, cut at len. */
	CHECK_INT(dt_fs_download(dtc, &box, "/full", 30, 5, dsink, &sb, &e), 5);
	CHECK_STR(sb_str(&sb), "efghi");
	sb_reset(&sb);
	CHECK_INT(dt_fs_download(dtc, &box, "/full", 990, 0, dsink, &sb, &e), 10);
	CHECK_STR(sb_str(&sb), "cdefghijkl");
	sb_reset(&sb);
	CHECK_INT(dt_fs_download(dtc, &box, "/full", 5000, 10, dsink, &sb, &e), 0);
	CHECK_INT(sb.len, 0);
	/* A 206 that starts before the offset asked for. */
	CHECK_INT(dt_fs_download(dtc, &box, "/early", 27, 3, dsink, &sb, &e), 3);
	CHECK_STR(sb_str(&sb), "bcd");
	sb_free(&sb);
}

UNIT_TEST(dt_waits)
{
	/* A dt_client sets its credential on its transport: give it its own. */
	struct http_client *saved = dhc;
	struct dt_client *d2;
	struct sp_sandbox sb;
	struct sp_error e;
	double t0;

	dhc = new_client(5, 1);
	d2 = mock_client("k", NULL, NULL, false, 400);
	t0 = now_s();

	CHECK_INT(dt_sandbox_action(d2, "stuck", SP_START, NULL, NULL, &sb, &e), -ETIMEDOUT);
	CHECK(now_s() - t0 >= 0.39 && now_s() - t0 < 2);
	CHECK_STR(e.message, "sandbox stuck: start: timed out after 0.4 s waiting for it to become started "
		  "(state is starting)");
	CHECK_INT(dt_sandbox_action(d2, "err", SP_START, NULL, NULL, &sb, &e), -EIO);
	CHECK_STR(e.message, "sandbox err: start failed: state error: disk on fire");
	/* A stop that ends in 404: an ephemeral sandbox, destroyed. */
	CHECK_INT(dt_sandbox_action(d2, "gone", SP_STOP, NULL, NULL, &sb, &e), 0);
	CHECK_STR(sb.state, "destroyed");
	sp_sandbox_clear(&sb);
	dt_client_free(d2);
	http_client_free(dhc);
	dhc = saved;
}

UNIT_TEST(dt_headers)
{
	struct sp_box box = { "box1", tb_base };
	struct http_request get = { .method = "GET", .url = u("/headers") };
	struct http_response resp;
	struct sp_error e;
	char dir[64];

	CHECK_INT(dt_home_dir(dtc, &box, dir, sizeof(dir), &e), 0);
	CHECK_STR(dir, "/home/mock");
	CHECK_INT(http_do(dhc, &get, &resp, NULL, 0), 0);
	CHECK(resp.body && strstr(resp.body, "GET /tb/box1/user-home-dir HTTP/1.1"));
	CHECK(resp.body && strstr(resp.body, "\r\nAuthorization: Bearer key1"));
	CHECK(resp.body && strstr(resp.body, "\r\nX-Daytona-SDK-Version: 0.190.0"));
	CHECK(resp.body && strstr(resp.body, "\r\nX-Daytona-Source: daytonafs"));
	CHECK(resp.body && strstr(resp.body, "\r\nX-Daytona-Skip-Last-Activity-Update: true"));
	CHECK(resp.body && !strstr(resp.body, "Organization"));
	http_response_free(&resp);
	/* Control-plane calls do not carry the toolbox-only header. */
	CHECK_INT(dt_ping(dtc, &e), -ENOENT);   /* the fake has no ?limit=1 page */
	CHECK_INT(http_do(dhc, &get, &resp, NULL, 0), 0);
	CHECK(resp.body && strstr(resp.body, "GET /api/sandbox?limit=1 HTTP/1.1"));
	CHECK(resp.body && !strstr(resp.body, "Skip-Last-Activity"));
	http_response_free(&resp);
}

UNIT_TEST(dt_headers_jwt_keepalive)
{
	struct http_client *saved = dhc;
	struct http_request get = { .method = "GET", .url = u("/headers") };
	struct sp_box box = { "box1", tb_base };
	struct http_response resp;
	struct dt_client *d2;
	struct sp_error e;
	char dir[64];

	dhc = new_client(5, 1);
	d2 = mock_client(NULL, "jwt.token", "org-42", true, 1000);
	CHECK(d2 != NULL);
	CHECK_INT(dt_home_dir(d2, &box, dir, sizeof(dir), &e), 0);
	CHECK_INT(http_do(dhc, &get, &resp, NULL, 0), 0);
	CHECK(resp.body && strstr(resp.body, "\r\nAuthorization: Bearer jwt.token"));
	CHECK(resp.body && strstr(resp.body, "\r\nX-Daytona-Organization-ID: org-42"));
	CHECK(resp.body && !strstr(resp.body, "Skip-Last-Activity"));   /* keepalive */
	http_response_free(&resp);
	dt_client_free(d2);
	http_client_free(dhc);
	dhc = saved;
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(simple_get),
		UNIT_CASE(keepalive_reuses_connection),
		UNIT_CASE(headers_sent),
		UNIT_CASE(big_upload_no_expect),
		UNIT_CASE(post_without_body_has_length),
		UNIT_CASE(retry_503_then_ok),
		UNIT_CASE(retry_gives_up),
		UNIT_CASE(no_retry_on_4xx_500),
		UNIT_CASE(non_idempotent_502_not_retried_503_is),
		UNIT_CASE(retry_after_honoured),
		UNIT_CASE(multipart_replayed_from_fd),
		UNIT_CASE(multipart_short_file_is_error),
		UNIT_CASE(sink_gets_2xx_only),
		UNIT_CASE(sink_abort_not_retried),
		UNIT_CASE(body_limit),
		UNIT_CASE(dropped_connection_retried_when_idempotent),
		UNIT_CASE(truncated_body),
		UNIT_CASE(stall_timeout),
		UNIT_CASE(sink_idle_ends_a_quiet_stream),
		UNIT_CASE(total_timeout),
		UNIT_CASE(connection_refused),
		UNIT_CASE(bad_headers_rejected),
		UNIT_CASE(threads_share_pool),
		UNIT_CASE(dt_list_pages),
		UNIT_CASE(dt_upload_reply_and_part_filename),
		UNIT_CASE(dt_download_short_ranges_continue),
		UNIT_CASE(stall_limit_per_request),
		UNIT_CASE(dt_malformed_responses),
		UNIT_CASE(dt_toolbox_errors),
		UNIT_CASE(dt_download_fallbacks),
		UNIT_CASE(dt_waits),
		UNIT_CASE(dt_headers),
		UNIT_CASE(dt_headers_jwt_keepalive),
	};
	int rc;

	start_server();
	hc = new_client(20, 3);
	if (!hc || http_client_set_auth(hc, "Bearer sekrit") || http_client_add_header(hc, "X-Global: yes"))
		return 2;
	snprintf(api_base, sizeof(api_base), "http://127.0.0.1:%d/api/", port);
	snprintf(tb_base, sizeof(tb_base), "http://127.0.0.1:%d/tb/", port);
	dhc = new_client(5, 1);
	dtc = dhc ? mock_client("key1", NULL, "org-ignored-with-a-key", false, 2000) : NULL;
	if (!dtc)
		return 2;
	rc = unit_run("http", cases, sizeof(cases) / sizeof(cases[0]));
	dt_client_free(dtc);
	http_client_free(dhc);
	http_client_free(hc);
	return rc;
}
