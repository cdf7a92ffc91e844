/* SPDX-License-Identifier: Apache-2.0 */
/*
 * smoke_daytona - the Daytona client (daytona.c over http.c) against a live
 * server. Not a unit test: it needs the local server (or a real endpoint).
 *
 *   smoke_daytona                     starts scripts/daytona-local itself
 *   smoke_daytona API_URL API_KEY     uses a running server
 *
 * With a local server it also injects faults (/_local/faults) to check the
 * retries, Retry-After, and the resumption of downloads cut mid-body.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daytona.h"
#include "log.h"
#include "strbuf.h"
#include "live_server.h"
#include "unit.h"

#ifndef SOURCE_ROOT
#define SOURCE_ROOT "."      /* built by hand: run from the repository root */
#endif

static struct http_client *hc;
static struct dt_client *dt;
static struct sp_sandbox sbx;
static struct sp_box box;
static char api[512];
static char local_base[512];    /* http://127.0.0.1:PORT when the server is local */
static char name[64];
static struct live_server server;

#define REPORT(rc, e) do { \
	if ((rc) < 0) \
		fprintf(stderr, "  -> %d (%s): %s\n", (int)(rc), strerror((int)-(rc)), (e).message); \
} while (0)

/* ---- helpers ---- */

struct membuf {
	struct strbuf sb;
};

static int mem_sink(void *ctx, const void *data, size_t len)
{
	struct membuf *m = ctx;

	sb_add(&m->sb, data, len);
	return m->sb.oom ? -ENOMEM : 0;
}

static int local_call(const char *method, const char *path, const char *json)
{
	return live_local_call(hc, local_base, method, path, json, NULL);
}

static void on_state(void *ctx, const char *state)
{
	struct strbuf *seen = ctx;

	if (seen->len)
		sb_addc(seen, ',');
	sb_adds(seen, state);
}

/* ---- steps ---- */

UNIT_TEST(ping_and_errors)
{
	struct sp_error e;
	struct sp_sandbox s;
	int rc;

	rc = dt_ping(dt, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = dt_sandbox_get(dt, "no-such-sandbox-xyz", &s, &e);
	CHECK_INT(rc, -ENOENT);
	CHECK_INT(e.http_status, 404);
	CHECK(strstr(e.message, "not found") != NULL);
	printf("  404 message: %s\n", e.message);
}

UNIT_TEST(create)
{
	struct sp_kv env[] = { { "SMOKE_VAR", "hello world" } };
	struct sp_kv labels[] = { { "smoke", "yes" } };
	struct sp_create_params p;
	struct sp_error e;
	int rc;

	sp_create_params_init(&p);
	p.name = name;
	p.env = env;
	p.n_env = 1;
	p.labels = labels;
	p.n_labels = 1;
	p.autostop = 0;
	rc = dt_sandbox_create(dt, &p, &sbx, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(sbx.state, "started");
	CHECK_STR(sbx.name, name);
	CHECK(sbx.toolbox_url[0] != '\0');
	CHECK(sbx.json && strstr(sbx.json, "\"smoke\"") && sbx.json[strlen(sbx.json) - 1] == '\n');
	box.id = sbx.id;
	box.toolbox_url = sbx.toolbox_url;
	printf("  sandbox %s (%s) toolbox %s\n", sbx.id, sbx.name, sbx.toolbox_url);

	/* The same name again: a conflict. */
	rc = dt_sandbox_create(dt, &p, &(struct sp_sandbox){ 0 }, &e);
	CHECK_INT(rc, -EEXIST);
	printf("  duplicate: %d %s\n", rc, e.message);
}

UNIT_TEST(get_and_list)
{
	struct sp_sandbox s, *list = NULL;
	struct sp_error e;
	size_t n = 0, i;
	bool found = false;
	int rc;

	rc = dt_sandbox_get(dt, name, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(s.id, sbx.id);
	sp_sandbox_clear(&s);
	rc = dt_sandbox_list(dt, &list, &n, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	for (i = 0; i < n; i++)
		if (strcmp(list[i].id, sbx.id) == 0)
			found = !!list[i].toolbox_url[0];
	CHECK(found);
	sp_sandbox_list_free(list, n);
}

UNIT_TEST(dirs)
{
	char home[256], work[256];
	struct sp_error e;

	CHECK_INT(dt_home_dir(dt, &box, home, sizeof(home), &e), 0);
	CHECK_INT(dt_work_dir(dt, &box, work, sizeof(work), &e), 0);
	CHECK_STR(home, "/home/daytona");
	printf("  home %s work %s\n", home, work);
}

UNIT_TEST(upload_list_info)
{
	const char *path = "/home/daytona/smoke/sub dir/a b+c&d=e?.txt";
	struct sp_fileinfo fi, *list = NULL;
	struct sp_error e;
	size_t n = 0, i;
	bool found = false;
	int rc;

	rc = dt_fs_upload_mem(dt, &box, path, "hello smoke\n", 12, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = dt_fs_info(dt, &box, path, &fi, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(fi.size, 12);
	CHECK_STR(fi.name, "a b+c&d=e?.txt");
	CHECK(S_ISREG(fi.mode));
	CHECK(fi.mtime.tv_sec > 1700000000);
	free(fi.name);
	rc = dt_fs_list(dt, &box, "/home/daytona/smoke/sub dir", &list, &n, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(n, 1);
	for (i = 0; i < n; i++)
		if (strcmp(list[i].name, "a b+c&d=e?.txt") == 0 && list[i].size == 12)
			found = true;
	CHECK(found);
	sp_fileinfo_free(list, n);
	rc = dt_fs_list(dt, &box, "/home/daytona/smoke", &list, &n, &e);
	CHECK_INT(rc, 0);
	CHECK_INT(n, 1);
	if (n == 1)
		CHECK(list[0].is_dir && S_ISDIR(list[0].mode));
	sp_fileinfo_free(list, n);

	/* Empty file. */
	rc = dt_fs_upload_mem(dt, &box, "/home/daytona/smoke/empty", NULL, 0, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/empty", &fi, &e);
	CHECK_INT(rc, 0);
	CHECK_INT(fi.size, 0);
	free(fi.name);

	/* Errors: missing path, listing a file. */
	rc = dt_fs_info(dt, &box, "/home/daytona/nope", &fi, &e);
	CHECK_INT(rc, -ENOENT);
	printf("  missing: %s\n", e.message);
	rc = dt_fs_list(dt, &box, path, &list, &n, &e);
	CHECK_INT(rc, -EINVAL);
	CHECK_INT(n, 0);
	/* Uploading onto a directory. */
	rc = dt_fs_upload_mem(dt, &box, "/home/daytona/smoke", "x", 1, &e);
	CHECK(rc < 0);
	printf("  upload onto a dir: %d %s\n", rc, e.message);
}

#define BIG (5u << 20)

static unsigned char pattern_byte(uint64_t i)
{
	return (unsigned char)((i * 2654435761u) >> 13);
}

static int check_range(const char *path, uint64_t off, uint64_t len, uint64_t expect_len)
{
	struct membuf m = { STRBUF_INIT };
	struct sp_error e;
	int64_t got;
	int bad = 0;

	got = dt_fs_download(dt, &box, path, off, len, mem_sink, &m, &e);
	REPORT(got, e);
	CHECK_INT(got, (int64_t)expect_len);
	CHECK_INT(m.sb.len, expect_len);
	for (size_t i = 0; i < m.sb.len; i++)
		if ((unsigned char)m.sb.buf[i] != pattern_byte(off + i)) {
			bad = 1;
			break;
		}
	CHECK_INT(bad, 0);
	sb_free(&m.sb);
	return (int)got;
}

UNIT_TEST(upload_fd_download_ranges)
{
	const char *path = "/home/daytona/smoke/big.bin";
	char tmpl[] = "/tmp/smoke-XXXXXX";
	unsigned char *buf = malloc(BIG);
	struct sp_error e;
	int fd, rc;

	CHECK(buf != NULL);
	if (!buf)
		return;
	for (uint64_t i = 0; i < BIG; i++)
		buf[i] = pattern_byte(i);
	fd = mkstemp(tmpl);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, buf, BIG), BIG);
	unlink(tmpl);
	rc = dt_fs_upload_fd(dt, &box, path, fd, BIG, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	close(fd);
	free(buf);

	check_range(path, 0, 10, 10);
	check_range(path, 12345, 1000, 1000);
	check_range(path, BIG - 100, 1000, 100);          /* past the end: short */
	check_range(path, BIG, 10, 0);                    /* at the end: 416 -> 0 */
	check_range(path, BIG + 50, 0, 0);
	check_range(path, 0, 0, BIG);                     /* whole file */
	check_range(path, 1, 0, BIG - 1);                 /* to the end */
	rc = (int)dt_fs_download(dt, &box, "/home/daytona/smoke", 0, 0, mem_sink,
				 &(struct membuf){ STRBUF_INIT }, &e);
	CHECK_INT(rc, -EINVAL);                           /* a directory: 400 */
	rc = (int)dt_fs_download(dt, &box, "/home/daytona/none", 0, 10, mem_sink,
				 &(struct membuf){ STRBUF_INIT }, &e);
	CHECK_INT(rc, -ENOENT);
}

UNIT_TEST(mkdir_move_chmod_delete)
{
	struct sp_fileinfo fi;
	struct sp_error e;
	int rc;

	rc = dt_fs_mkdir(dt, &box, "/home/daytona/smoke/d1/d2", 0750, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = dt_fs_mkdir(dt, &box, "/home/daytona/smoke/d1/d2", 0750, &e);   /* exists: fine */
	CHECK_INT(rc, 0);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/d1/d2", &fi, &e);
	CHECK_INT(rc, 0);
	CHECK(fi.is_dir);
	free(fi.name);

	CHECK_INT(dt_fs_upload_mem(dt, &box, "/home/daytona/smoke/m1", "one", 3, &e), 0);
	CHECK_INT(dt_fs_upload_mem(dt, &box, "/home/daytona/smoke/m2", "two", 3, &e), 0);
	rc = dt_fs_move(dt, &box, "/home/daytona/smoke/m1", "/home/daytona/smoke/m2", &e);
	CHECK_INT(rc, -EEXIST);
	printf("  move onto existing: %s\n", e.message);
	rc = dt_fs_move(dt, &box, "/home/daytona/smoke/m1", "/home/daytona/smoke/d1/m1 moved", &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(dt_fs_info(dt, &box, "/home/daytona/smoke/m1", &fi, &e), -ENOENT);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/d1/m1 moved", &fi, &e);
	CHECK_INT(rc, 0);
	CHECK_INT(fi.size, 3);
	free(fi.name);
	rc = dt_fs_move(dt, &box, "/home/daytona/smoke/none", "/home/daytona/smoke/x", &e);
	CHECK_INT(rc, -ENOENT);

	rc = dt_fs_chmod(dt, &box, "/home/daytona/smoke/m2", 0600, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/m2", &fi, &e);
	CHECK_INT(rc, 0);
	CHECK_INT(fi.mode & 07777, 0600);
	free(fi.name);

	rc = dt_fs_delete(dt, &box, "/home/daytona/smoke/d1", false, &e);
	CHECK_INT(rc, -EINVAL);                /* a directory without recursive */
	rc = dt_fs_delete(dt, &box, "/home/daytona/smoke/d1", true, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(dt_fs_info(dt, &box, "/home/daytona/smoke/d1", &fi, &e), -ENOENT);
	rc = dt_fs_delete(dt, &box, "/home/daytona/smoke/m2", false, &e);
	CHECK_INT(rc, 0);
	rc = dt_fs_delete(dt, &box, "/home/daytona/smoke/m2", false, &e);
	CHECK_INT(rc, -ENOENT);
}

UNIT_TEST(exec)
{
	struct sp_kv envs[] = { { "FOO", "bar baz" } };
	struct sp_error e;
	char *out = NULL;
	int code = 0, rc;

	rc = dt_exec(dt, &box, "echo hi; echo err >&2; exit 3", NULL, NULL, 0, 0, &code, &out, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(code, 3);
	CHECK_STR(out, "hi\nerr\n");
	free(out);
	out = NULL;
	rc = dt_exec(dt, &box, "pwd; echo \"$FOO\"; echo \"$SMOKE_VAR\"", "/home/daytona/smoke", envs, 1, 10,
		     &code, &out, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(code, 0);
	CHECK_STR(out, "/home/daytona/smoke\nbar baz\nhello world\n");
	free(out);
	out = NULL;
	rc = dt_exec(dt, &box, "sleep 5", NULL, NULL, 0, 1, &code, &out, &e);
	CHECK_INT(rc, -ETIMEDOUT);
	CHECK(out == NULL);
	printf("  exec timeout: %s\n", e.message);
	rc = dt_exec(dt, &box, "   ", NULL, NULL, 0, 0, &code, &out, &e);
	CHECK_INT(rc, -EINVAL);
	printf("  empty command: %s\n", e.message);
}

UNIT_TEST(labels_intervals)
{
	struct sp_kv set[] = { { "a", "1" }, { "b", "two" } };
	struct sp_kv *got = NULL;
	struct sp_sandbox s;
	struct sp_error e;
	size_t n = 0;
	int rc;

	rc = dt_sandbox_set_labels(dt, sbx.id, set, 2, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(s.id, sbx.id);
	sp_sandbox_clear(&s);
	rc = dt_sandbox_get_labels(dt, sbx.id, &got, &n, &e);
	CHECK_INT(rc, 0);
	CHECK_INT(n, 2);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(got[i].key, "a") == 0)
			CHECK_STR(got[i].value, "1");
		else
			CHECK_STR(got[i].value, "two");
	}
	sp_kv_free(got, n);
	rc = dt_sandbox_set_interval(dt, sbx.id, SP_AUTOSTOP, 30, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK(s.json && strstr(s.json, "\"autoStopInterval\":\t30"));
	sp_sandbox_clear(&s);
	rc = dt_sandbox_set_interval(dt, sbx.id, SP_AUTOSTOP, 0, NULL, &e);
	CHECK_INT(rc, 0);
	rc = dt_sandbox_set_interval(dt, sbx.id, SP_AUTOSTOP, -5, NULL, &e);
	CHECK_INT(rc, -EINVAL);
}

UNIT_TEST(faults_and_retries)
{
	struct http_stats before, after;
	struct sp_fileinfo fi;
	struct membuf m = { STRBUF_INIT };
	struct sp_error e;
	struct timespec t0, t1;
	int64_t got;
	int rc;

	if (!local_base[0]) {
		printf("  (no local server: skipped)\n");
		return;
	}
	/* Two 503s on stat: retried, and the call succeeds. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\":\"/files/info\",\"action\":\"status\",\"status\":503,\"count\":2}"), 201);
	http_client_stats(hc, &before);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/big.bin", &fi, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	free(fi.name);
	http_client_stats(hc, &after);
	CHECK_INT(after.retries - before.retries, 2);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);

	/* 429 with Retry-After: 1 is waited for. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\":\"/files/info\",\"action\":\"status\",\"status\":429,"
			     "\"retry_after\":1,\"count\":1}"), 201);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/big.bin", &fi, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_INT(rc, 0);
	free(fi.name);
	CHECK(t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9 >= 0.95);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);

	/* A persistent 503 on a control-plane call: EIO after the retries. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\":\"/api/sandbox/[^/]+$\",\"method\":\"GET\",\"action\":\"status\","
			     "\"status\":503}"), 201);
	http_client_stats(hc, &before);
	rc = dt_sandbox_get(dt, sbx.id, &(struct sp_sandbox){ 0 }, &e);
	http_client_stats(hc, &after);
	CHECK_INT(rc, -EIO);
	CHECK_INT(e.http_status, 503);
	CHECK_INT(after.requests - before.requests, 5);
	printf("  persistent 503: %s\n", e.message);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);

	/* A 502 on a non-idempotent exec is not replayed. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\":\"/process/execute\",\"action\":\"status\",\"status\":502,\"count\":1}"),
		  201);
	http_client_stats(hc, &before);
	rc = dt_exec(dt, &box, "true", NULL, NULL, 0, 0, NULL, NULL, &e);
	http_client_stats(hc, &after);
	CHECK_INT(rc, -EIO);
	CHECK_INT(after.requests - before.requests, 1);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);

	/* A dropped connection before the answer on a GET: replayed. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\":\"/files/info\",\"action\":\"drop\",\"count\":1}"), 201);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/big.bin", &fi, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	if (!rc)
		free(fi.name);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);

	/* A download cut mid-body: resumed with a Range from where it stopped. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\":\"/files/download\",\"action\":\"reset_mid_body\",\"count\":1}"), 201);
	got = dt_fs_download(dt, &box, "/home/daytona/smoke/big.bin", 0, 0, mem_sink, &m, &e);
	REPORT(got, e);
	CHECK_INT(got, BIG);
	CHECK_INT(m.sb.len, BIG);
	if (m.sb.len == BIG) {
		int bad = 0;

		for (size_t i = 0; i < BIG; i++)
			if ((unsigned char)m.sb.buf[i] != pattern_byte(i)) {
				bad = 1;
				break;
			}
		CHECK_INT(bad, 0);
	}
	sb_free(&m.sb);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);

	/* An upload answered 503 twice: the multipart body is replayed from the fd. */
	{
		char tmpl[] = "/tmp/smoke-XXXXXX";
		int fd = mkstemp(tmpl);
		char data[100000];

		for (size_t i = 0; i < sizeof(data); i++)
			data[i] = (char)pattern_byte(i);
		CHECK_INT(write(fd, data, sizeof(data)), sizeof(data));
		unlink(tmpl);
		CHECK_INT(local_call("POST", "/_local/faults",
				     "{\"pattern\":\"/files/bulk-upload\",\"action\":\"status\",\"status\":503,"
				     "\"count\":2}"), 201);
		http_client_stats(hc, &before);
		rc = dt_fs_upload_fd(dt, &box, "/home/daytona/smoke/replayed.bin", fd, sizeof(data), &e);
		REPORT(rc, e);
		http_client_stats(hc, &after);
		CHECK_INT(rc, 0);
		CHECK_INT(after.retries - before.retries, 2);
		close(fd);
		CHECK_INT(local_call("DELETE", "/_local/faults", NULL), 204);
		check_range("/home/daytona/smoke/replayed.bin", 0, 0, sizeof(data));
	}
}

struct counter {
	uint64_t n;
	uint64_t sum;
};

static int count_sink(void *ctx, const void *data, size_t len)
{
	struct counter *c = ctx;
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		c->sum += p[i] != 'z';   /* bytes that are not what was uploaded */
	c->n += len;
	return 0;
}

static long max_rss_mb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024;
}

/* SMOKE_BIG_MB=1024: a big upload and download with bounded memory. */
UNIT_TEST(big_file)
{
	const char *env = getenv("SMOKE_BIG_MB");
	uint64_t mb = env ? strtoull(env, NULL, 10) : 0, size = mb << 20;
	char tmpl[] = "/tmp/smoke-big-XXXXXX";
	struct counter c = { 0, 0 };
	struct sp_error e;
	struct timespec t0, t1;
	long rss0 = max_rss_mb();
	char chunk[1 << 16];
	int fd, rc;

	if (!mb) {
		printf("  (set SMOKE_BIG_MB to run)\n");
		return;
	}
	fd = mkstemp(tmpl);
	unlink(tmpl);
	memset(chunk, 'z', sizeof(chunk));
	for (uint64_t off = 0; off < size; off += sizeof(chunk))
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
			break;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = dt_fs_upload_fd(dt, &box, "/home/daytona/smoke/huge.bin", fd, size, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	close(fd);
	printf("  upload %" PRIu64 " MiB: %.2f s\n", mb,
	       t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_INT(dt_fs_download(dt, &box, "/home/daytona/smoke/huge.bin", 0, 0, count_sink, &c, &e), size);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_INT(c.n, size);
	CHECK_INT(c.sum, 0);
	printf("  download: %.2f s; peak RSS %ld MiB (before %ld MiB)\n",
	       t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9, max_rss_mb(), rss0);
	CHECK(max_rss_mb() - rss0 < 64);
	CHECK_INT(dt_fs_delete(dt, &box, "/home/daytona/smoke/huge.bin", false, &e), 0);
}

UNIT_TEST(stop_start)
{
	struct strbuf seen = STRBUF_INIT;
	struct sp_sandbox s;
	struct sp_fileinfo fi;
	struct sp_error e;
	int rc;

	rc = dt_sandbox_action(dt, sbx.id, SP_STOP, on_state, &seen, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(s.state, "stopped");
	printf("  stop states: %s\n", sb_str(&seen));
	sp_sandbox_clear(&s);
	sb_reset(&seen);

	/* The toolbox of a stopped sandbox. */
	rc = dt_fs_info(dt, &box, "/home/daytona", &fi, &e);
	CHECK_INT(rc, -EHOSTDOWN);
	printf("  toolbox while stopped: %s\n", e.message);
	/* Stopping twice: the server refuses. */
	rc = dt_sandbox_action(dt, sbx.id, SP_STOP, NULL, NULL, NULL, &e);
	CHECK(rc == -EINVAL || rc == -EBUSY);
	printf("  stop again: %d %s\n", rc, e.message);

	rc = dt_sandbox_action(dt, sbx.id, SP_START, on_state, &seen, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(s.state, "started");
	printf("  start states: %s\n", sb_str(&seen));
	sp_sandbox_clear(&s);
	sb_free(&seen);
	rc = dt_fs_info(dt, &box, "/home/daytona/smoke/big.bin", &fi, &e);
	CHECK_INT(rc, 0);
	if (!rc) {
		CHECK_INT(fi.size, BIG);
		free(fi.name);
	}
}

UNIT_TEST(snapshot)
{
	struct sp_snapshot *list = NULL, snap;
	struct strbuf seen = STRBUF_INIT;
	struct sp_error e;
	char sname[96];
	size_t n = 0;
	bool found = false;
	int rc;

	snprintf(sname, sizeof(sname), "smoke-snap-%d", (int)getpid());
	rc = dt_sandbox_snapshot(dt, sbx.id, sname, on_state, &seen, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	printf("  snapshot states: %s\n", sb_str(&seen));
	sb_free(&seen);
	rc = dt_sandbox_snapshot(dt, sbx.id, sname, NULL, NULL, &e);
	CHECK_INT(rc, -EEXIST);
	rc = dt_snapshot_list(dt, &list, &n, &e);
	CHECK_INT(rc, 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, sname) == 0)
			found = true;
	CHECK(found);
	sp_snapshot_list_free(list, n);
	rc = dt_snapshot_get(dt, sname, &snap, &e);
	CHECK_INT(rc, 0);
	if (!rc) {
		CHECK(snap.json && snap.json[strlen(snap.json) - 1] == '\n');
		rc = dt_snapshot_delete(dt, snap.id, &e);
		REPORT(rc, e);
		CHECK_INT(rc, 0);
		sp_snapshot_clear(&snap);
	}
}

UNIT_TEST(delete)
{
	struct strbuf seen = STRBUF_INIT;
	struct sp_sandbox s;
	struct sp_error e;
	int rc;

	rc = dt_sandbox_delete(dt, sbx.id, on_state, &seen, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	printf("  delete states: %s\n", sb_str(&seen));
	sb_free(&seen);
	CHECK_INT(dt_sandbox_get(dt, sbx.id, &s, &e), -ENOENT);
	/* The toolbox of a destroyed sandbox: 401, as the real proxy. */
	rc = dt_fs_info(dt, &box, "/home/daytona", &(struct sp_fileinfo){ 0 }, &e);
	CHECK_INT(rc, -EACCES);
	printf("  toolbox after delete: %s\n", e.message);
}

UNIT_TEST(bad_key)
{
	struct http_config cfg;
	struct http_client *h2;
	struct dt_client *d2;
	struct sp_config dc = { .api_url = api, .api_key = "wrong", .wait_timeout_ms = 10000 };
	struct sp_error e;
	int rc;

	http_config_defaults(&cfg);
	h2 = http_client_new(&cfg);
	d2 = dt_client_new(h2, &dc);
	CHECK(d2 != NULL);
	rc = dt_ping(d2, &e);
	CHECK_INT(rc, -EACCES);
	CHECK_INT(e.http_status, 401);
	CHECK(strstr(e.message, "wrong") == NULL);   /* never echo a credential */
	printf("  bad key: %s\n", e.message);
	dt_client_free(d2);
	http_client_free(h2);
}

UNIT_TEST(unreachable)
{
	struct http_config cfg;
	struct http_client *h2;
	struct dt_client *d2;
	struct sp_config dc = { .api_url = "http://127.0.0.1:1/api", .api_key = "k" };
	struct sp_error e;
	int rc;

	http_config_defaults(&cfg);
	cfg.retry_base_ms = 10;
	h2 = http_client_new(&cfg);
	d2 = dt_client_new(h2, &dc);
	rc = dt_ping(d2, &e);
	CHECK_INT(rc, -ECONNREFUSED);
	CHECK_INT(e.http_status, 0);
	printf("  refused: %s\n", e.message);
	dt_client_free(d2);
	http_client_free(h2);
}

/* ---- setup ---- */

static int start_server(void)
{
	static const char *const args[] = { "--api-key", "k", "--transition-ms", "20", "--quiet", NULL };

	if (live_server_start(&server, "daytona-local", args) != 0)
		return -1;
	str_copy(api, sizeof(api), server.api);
	return 0;
}

static void stop_server(void)
{
	live_server_stop(&server);
}

int main(int argc, char **argv)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(ping_and_errors),
		UNIT_CASE(create),
		UNIT_CASE(get_and_list),
		UNIT_CASE(dirs),
		UNIT_CASE(upload_list_info),
		UNIT_CASE(upload_fd_download_ranges),
		UNIT_CASE(mkdir_move_chmod_delete),
		UNIT_CASE(exec),
		UNIT_CASE(labels_intervals),
		UNIT_CASE(faults_and_retries),
		UNIT_CASE(big_file),
		UNIT_CASE(stop_start),
		UNIT_CASE(snapshot),
		UNIT_CASE(delete),
		UNIT_CASE(bad_key),
		UNIT_CASE(unreachable),
	};
	struct http_config cfg;
	struct sp_config dc = { 0 };
	const char *key = "k";
	int rc;

	log_init(getenv("SMOKE_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN, false);
	if (argc >= 3) {
		str_copy(api, sizeof(api), argv[1]);
		key = argv[2];
	} else if (start_server() != 0) {
		fprintf(stderr, "cannot start %s/scripts/daytona-local\n", SOURCE_ROOT);
		stop_server();
		return 2;
	}
	if (strncmp(api, "http://127.0.0.1:", 17) == 0) {
		char *slash;

		str_copy(local_base, sizeof(local_base), api);
		slash = strstr(local_base + 7, "/");
		if (slash)
			*slash = '\0';
	}
	printf("API %s\n", api);
	snprintf(name, sizeof(name), "smoke-%d", (int)getpid());

	http_config_defaults(&cfg);
	cfg.retry_base_ms = 50;
	hc = http_client_new(&cfg);
	dc.api_url = api;
	dc.api_key = key;
	dc.wait_timeout_ms = 30000;
	dt = dt_client_new(hc, &dc);
	if (!hc || !dt) {
		fprintf(stderr, "client setup failed\n");
		stop_server();
		return 2;
	}
	rc = unit_run("smoke_daytona", cases, sizeof(cases) / sizeof(cases[0]));
	{
		struct http_stats st;

		http_client_stats(hc, &st);
		printf("http: %" PRIu64 " requests, %" PRIu64 " retries, %" PRIu64 " bytes down, %" PRIu64
		       " bytes up\n", st.requests, st.retries, st.bytes_down, st.bytes_up);
	}
	sp_sandbox_clear(&sbx);
	dt_client_free(dt);
	http_client_free(hc);
	stop_server();
	return rc;
}
