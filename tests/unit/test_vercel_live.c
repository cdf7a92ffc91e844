/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_vercel_live - the Vercel client (vercel_*.c over http.c) against
 * scripts/vercel-local, which it starts itself on a free port (meson suite
 * "provider"; scripts/test runs it). The steps run in order on one sandbox:
 * create, files, commands, faults, stop, resume, snapshot, lists, delete.
 * Assertions are on content, errno, state and request counts, never on time.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "strbuf.h"
#include "vercel.h"
#include "live_server.h"
#include "unit.h"

#ifndef SOURCE_ROOT
#define SOURCE_ROOT "."
#endif

#define TOKEN   "live-token"
#define TEAM    "team_live"
#define PROJECT "prj_live"

static struct http_client *hc;
static struct vc_client *vc;
static char api[512];           /* http://127.0.0.1:PORT/api */
static char local_base[512];    /* http://127.0.0.1:PORT */
static struct live_server server;
static char name[64];
static char sid[128];           /* the current session */
static char snap_id[128];
static char odd_path[512];      /* the 200-byte name */
static unsigned char odd_bytes[256];

#define REPORT(rc, e) do { \
	if ((rc) < 0) \
		fprintf(stderr, "  -> %d (%s): %s\n", (int)(rc), strerror((int)-(rc)), (e).message); \
} while (0)

/* ---- helpers ---- */

static int mem_sink(void *ctx, const void *data, size_t len)
{
	struct strbuf *sb = ctx;

	sb_add(sb, data, len);
	return sb->oom ? -ENOMEM : 0;
}

/* A /_local call; the status, or -1. body (may be NULL) gets the answer. */
static int local_call(const char *method, const char *path, const char *json, struct strbuf *body)
{
	return live_local_call(hc, local_base, method, path, json, body);
}

/* "injected" of the first fault rule (there is one at a time). */
static int faults_injected(void)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *root, *first;
	int n = -1;

	if (local_call("GET", "/_local/faults", NULL, &body) == 200 && (root = cJSON_Parse(sb_str(&body)))) {
		first = cJSON_IsArray(root) ? cJSON_GetArrayItem(root, 0)
					    : cJSON_GetArrayItem(cJSON_GetObjectItem(root, "faults"), 0);
		if (cJSON_IsNumber(cJSON_GetObjectItem(first, "injected")))
			n = cJSON_GetObjectItem(first, "injected")->valueint;
		cJSON_Delete(root);
	}
	sb_free(&body);
	return n;
}

static int64_t read_all(const char *path, struct strbuf *out, struct vc_error *e)
{
	return vc_fs_read(vc, sid, path, mem_sink, out, e);
}

/* Runs a program detached and waits for its exit code. */
static int run(const char *const *argv, size_t argc, int *exit_code)
{
	struct vc_cmd_params p = { .command = argv[0], .args = argv + 1, .n_args = argc - 1 };
	struct vc_command c, done;
	struct vc_error e;
	int rc = vc_cmd_run(vc, sid, &p, &c, &e);

	REPORT(rc, e);
	if (rc)
		return rc;
	rc = vc_cmd_get(vc, sid, c.id, true, &done, &e);
	REPORT(rc, e);
	if (rc)
		return rc;
	*exit_code = done.exit_code;
	return 0;
}

struct outerr {
	struct strbuf o, e;
};

static int collect_log(void *ctx, enum vc_stream s, const char *data, size_t len)
{
	struct outerr *oe = ctx;

	sb_add(s == VC_STDOUT ? &oe->o : &oe->e, data, len);
	return 0;
}

/* Waits (bounded by a count of polls) until the sandbox's status is want. */
static bool wait_status(const char *want)
{
	for (int i = 0; i < 200; i++) {
		struct vc_sandbox s;
		struct vc_error e;
		bool ok = vc_sandbox_get(vc, name, false, &s, &e) == 0 && strcmp(s.status, want) == 0;

		vc_sandbox_clear(&s);
		if (ok)
			return true;
		usleep(50000);
	}
	return false;
}

/* ---- steps ---- */

UNIT_TEST(errors_and_auth)
{
	struct vc_sandbox s;
	struct vc_error e;
	struct vc_config bad = { .base_url = api, .token = "wrong", .team_id = TEAM, .project_id = PROJECT };
	struct http_config cfg;
	struct http_client *hc2;
	struct vc_client *vc2;

	CHECK_INT(vc_sandbox_get(vc, "no-such-sandbox", false, &s, &e), -ENOENT);
	CHECK_INT(e.http_status, 404);
	CHECK_STR(e.code, "not_found");
	CHECK(strstr(e.message, "no-such-sandbox") != NULL);
	vc_sandbox_clear(&s);

	http_config_defaults(&cfg);
	hc2 = http_client_new(&cfg);
	vc2 = vc_client_new(hc2, &bad);
	CHECK_INT(vc_sandbox_get(vc2, "x", false, &s, &e), -EACCES);
	CHECK_INT(e.http_status, 403);
	CHECK(strstr(e.message, "wrong") == NULL);      /* the token is never echoed */
	vc_sandbox_clear(&s);
	vc_client_free(vc2);
	http_client_free(hc2);
}

UNIT_TEST(create)
{
	static const int ports[] = { 3000 };
	static const struct vc_kv env[] = { { "LIVE_VAR", "hello world" } };
	static const struct vc_kv tags[] = { { "suite", "provider" } };
	struct vc_create_params p;
	struct vc_sandbox s;
	struct vc_error e;
	int rc;

	vc_create_params_init(&p);
	p.name = name;
	p.ports = ports;
	p.n_ports = 1;
	p.env = env;
	p.n_env = 1;
	p.tags = tags;
	p.n_tags = 1;
	p.timeout_ms = 600000;
	p.vcpus = 2;
	rc = vc_sandbox_create(vc, &p, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(s.name, name);
	CHECK_STR(s.status, "running");
	CHECK(s.persistent);
	CHECK(s.has_session);
	CHECK_STR(s.session.status, "running");
	CHECK_STR(s.session.id, s.current_session_id);
	CHECK_INT(s.session.timeout_ms, 600000);
	CHECK(s.json && strstr(s.json, "\"suite\""));
	str_copy(sid, sizeof(sid), s.session.id);
	printf("  sandbox %s session %s\n", name, sid);
	vc_sandbox_clear(&s);

	/* The same name again: a conflict. */
	CHECK_INT(vc_sandbox_create(vc, &p, &s, &e), -EEXIST);
	CHECK_INT(e.http_status, 409);
	vc_sandbox_clear(&s);
}

UNIT_TEST(files)
{
	struct strbuf back = STRBUF_INIT, base = STRBUF_INIT;
	char tmp[] = "/tmp/vercel-live-XXXXXX";
	struct vc_error e;
	int fd, rc, code;
	int64_t n;

	for (int i = 0; i < 256; i++)
		odd_bytes[i] = (unsigned char)(i * 7 + 3);
	/* A 200-byte name, with non-ASCII characters (a PAX path record). */
	sb_adds(&base, "odd-\xc3\xa9-");
	while (base.len < 200)
		sb_addc(&base, (char)('a' + base.len % 26));
	snprintf(odd_path, sizeof(odd_path), "/vercel/sandbox/deep/er/%s", sb_str(&base));
	sb_free(&base);

	fd = mkstemp(tmp);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, odd_bytes, sizeof(odd_bytes)), sizeof(odd_bytes));
	rc = vc_fs_write_fd(vc, sid, odd_path, fd, sizeof(odd_bytes), 0640, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	close(fd);
	unlink(tmp);

	n = read_all(odd_path, &back, &e);
	REPORT(n, e);
	CHECK_INT(n, sizeof(odd_bytes));
	CHECK(back.len == sizeof(odd_bytes) && memcmp(back.buf, odd_bytes, sizeof(odd_bytes)) == 0);
	sb_free(&back);

	/* The mode from the tar header. */
	{
		struct strbuf cmd = STRBUF_INIT;
		const char *sh[] = { "sh", "-c", NULL };

		sb_addf(&cmd, "test \"$(stat -c %%a '%s')\" = 640", odd_path);
		sh[2] = sb_str(&cmd);
		CHECK_INT(run(sh, 3, &code), 0);
		CHECK_INT(code, 0);
		sb_free(&cmd);
	}

	/* Replace with an empty file, from memory. */
	CHECK_INT(vc_fs_write_mem(vc, sid, "/vercel/sandbox/empty", "", 0, 0600, &e), 0);
	n = read_all("/vercel/sandbox/empty", &back, &e);
	CHECK_INT(n, 0);
	sb_free(&back);

	CHECK_INT(read_all("/vercel/sandbox/missing", &back, &e), -ENOENT);
	CHECK_INT(e.http_status, 404);
	CHECK_INT(back.len, 0);
	CHECK_INT(vc_fs_write_mem(vc, sid, "relative/x", "a", 1, 0644, &e), -EINVAL);
	CHECK_INT(vc_fs_write_mem(vc, sid, "/a/../b", "a", 1, 0644, &e), -EINVAL);
	sb_free(&back);
}

UNIT_TEST(make_dirs)
{
	struct vc_error e;
	int rc, code;
	const char *argv[] = { "test", "-d", "/vercel/sandbox/m1/m2/m3" };

	rc = vc_fs_mkdir(vc, sid, "/vercel/sandbox/m1/m2/m3", true, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(run(argv, 3, &code), 0);
	CHECK_INT(code, 0);
	/* Again, recursive: fine. Not recursive, with a missing parent: 400. */
	CHECK_INT(vc_fs_mkdir(vc, sid, "/vercel/sandbox/m1/m2/m3", true, &e), 0);
	CHECK_INT(vc_fs_mkdir(vc, sid, "/vercel/sandbox/n1/n2", false, &e), -EINVAL);
	CHECK_INT(e.http_status, 400);
	CHECK_INT(vc_fs_mkdir(vc, sid, "/vercel/sandbox/n1", false, &e), 0);
}

UNIT_TEST(commands)
{
	static const char *const args[] = { "-c", "echo out; echo err >&2; printf '\\303\\251'; echo \"$LIVE_VAR\"; exit 7" };
	static const char *const sleep_args[] = { "300" };
	struct vc_cmd_params p = { .command = "sh", .args = args, .n_args = 1 + 1 };
	struct vc_cmd_params ps = { .command = "sleep", .args = sleep_args, .n_args = 1 };
	struct outerr oe = { STRBUF_INIT, STRBUF_INIT };
	struct vc_command c, done, longc, *list = NULL;
	struct vc_error e;
	size_t n = 0;
	bool found_a = false, found_b = false;
	int rc;

	rc = vc_cmd_run(vc, sid, &p, &c, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK(c.id[0] != '\0');
	CHECK_STR(c.session_id, sid);
	rc = vc_cmd_get(vc, sid, c.id, true, &done, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK(done.exited);
	CHECK_INT(done.exit_code, 7);

	rc = vc_cmd_logs(vc, sid, c.id, collect_log, &oe, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(sb_str(&oe.o), "out\n\xc3\xa9hello world\n");
	CHECK_STR(sb_str(&oe.e), "err\n");

	/* A long one, killed. */
	rc = vc_cmd_run(vc, sid, &ps, &longc, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(vc_cmd_get(vc, sid, longc.id, false, &done, &e), 0);
	CHECK(!done.exited);
	rc = vc_cmd_kill(vc, sid, longc.id, 15, NULL, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = vc_cmd_get(vc, sid, longc.id, true, &done, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK(done.exited);
	CHECK(done.exit_code != 0);
	printf("  killed sleep: exit code %d\n", done.exit_code);
	CHECK_INT(vc_cmd_kill(vc, sid, longc.id, 0, NULL, &e), -EINVAL);

	rc = vc_cmd_list(vc, sid, &list, &n, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	for (size_t i = 0; i < n; i++) {
		found_a |= strcmp(list[i].id, c.id) == 0;
		found_b |= strcmp(list[i].id, longc.id) == 0;
	}
	CHECK(found_a && found_b);
	free(list);

	CHECK_INT(vc_cmd_get(vc, sid, "cmd_no_such", false, &done, &e), -ENOENT);
	sb_free(&oe.o);
	sb_free(&oe.e);
}

/* 429 with Retry-After and 503 are retried by http.c: the call succeeds, and
 * the server saw the injected answers. */
UNIT_TEST(faults_retried)
{
	struct strbuf back = STRBUF_INIT;
	struct http_stats before, after;
	struct vc_error e;
	int64_t n;
	int code;
	const char *argv[] = { "true" };

	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\": \"/fs/read\", \"status\": 429, \"retry_after\": 1, \"count\": 1}", NULL), 201);
	http_client_stats(hc, &before);
	n = read_all(odd_path, &back, &e);
	REPORT(n, e);
	http_client_stats(hc, &after);
	CHECK_INT(n, sizeof(odd_bytes));
	CHECK(back.len == sizeof(odd_bytes) && memcmp(back.buf, odd_bytes, sizeof(odd_bytes)) == 0);
	CHECK_INT(faults_injected(), 1);
	CHECK_INT(after.retries - before.retries, 1);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL, NULL), 204);
	sb_free(&back);

	/* Two 503s on the (not idempotent) command start: refused before any
	 * work, so retried, and the command ran once. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\": \"/cmd\\\\?\", \"method\": \"POST\", \"status\": 503, \"count\": 2}", NULL), 201);
	{
		struct vc_command *list = NULL;
		size_t n_before = 0, n_after = 0;

		CHECK_INT(vc_cmd_list(vc, sid, &list, &n_before, &e), 0);
		free(list);
		http_client_stats(hc, &before);
		CHECK_INT(run(argv, 1, &code), 0);
		http_client_stats(hc, &after);
		CHECK_INT(vc_cmd_list(vc, sid, &list, &n_after, &e), 0);
		free(list);
		CHECK_INT(n_after, n_before + 1);   /* it ran once */
	}
	CHECK_INT(code, 0);
	CHECK_INT(faults_injected(), 2);
	CHECK_INT(after.retries - before.retries, 2);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL, NULL), 204);

	/* A 503 on a large write: the retry makes the archive again from its
	 * first byte, and the file is whole. */
	{
		size_t len = 300000;
		unsigned char *big = malloc(len);
		struct strbuf got = STRBUF_INIT;

		for (size_t i = 0; i < len; i++)
			big[i] = (unsigned char)(i * 31 + (i >> 9));
		CHECK_INT(local_call("POST", "/_local/faults",
				     "{\"pattern\": \"/fs/write\", \"status\": 503, \"count\": 1}", NULL), 201);
		http_client_stats(hc, &before);
		CHECK_INT(vc_fs_write_mem(vc, sid, "/vercel/sandbox/big.bin", big, len, 0644, &e), 0);
		http_client_stats(hc, &after);
		CHECK_INT(faults_injected(), 1);
		CHECK_INT(after.retries - before.retries, 1);
		CHECK_INT(local_call("DELETE", "/_local/faults", NULL, NULL), 204);
		CHECK_INT(read_all("/vercel/sandbox/big.bin", &got, &e), len);
		CHECK(got.len == len && memcmp(got.buf, big, len) == 0);
		sb_free(&got);
		free(big);
	}

	/* More 500s than retries: EIO with the server's message. */
	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\": \"/fs/mkdir\", \"status\": 500}", NULL), 201);
	CHECK_INT(vc_fs_mkdir(vc, sid, "/vercel/sandbox/f500", true, &e), -EIO);
	CHECK_INT(e.http_status, 500);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL, NULL), 204);
}

UNIT_TEST(extend_and_update)
{
	struct vc_session s;
	struct vc_update_params u;
	struct vc_sandbox sb;
	struct vc_error e;
	int rc;

	rc = vc_session_extend(vc, sid, 60000, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(s.timeout_ms, 660000);
	CHECK_INT(vc_session_extend(vc, sid, 10, &s, &e), -EINVAL);

	vc_update_params_init(&u);
	u.vcpus = 4;
	rc = vc_sandbox_update(vc, name, &u, &sb, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(sb.vcpus, 4);
	vc_sandbox_clear(&sb);
}

UNIT_TEST(stop_and_resume)
{
	struct strbuf back = STRBUF_INIT;
	struct vc_session s;
	struct vc_sandbox sb;
	struct vc_command c;
	struct vc_error e;
	struct vc_cmd_params p = { .command = "true" };
	int rc;

	/* A stop that takes 4 s: meanwhile the session is "stopping", and
	 * calls are EBUSY (422 sandbox_stopping), to be tried again. */
	CHECK_INT(local_call("PUT", "/_local/timing", "{\"transition_ms\": 4000}", NULL), 204);
	rc = vc_session_stop(vc, sid, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(s.status, "stopping");
	CHECK_INT(vc_cmd_run(vc, sid, &p, &c, &e), -EBUSY);
	CHECK_INT(e.http_status, 422);
	CHECK_STR(e.code, "sandbox_stopping");
	CHECK_INT(read_all(odd_path, &back, &e), -EBUSY);
	CHECK_INT(back.len, 0);
	CHECK_INT(local_call("PUT", "/_local/timing", "{\"transition_ms\": 30}", NULL), 204);
	CHECK(wait_status("stopped"));
	/* The session is gone: EHOSTDOWN (410 sandbox_stopped). */
	CHECK_INT(vc_cmd_run(vc, sid, &p, &c, &e), -EHOSTDOWN);
	CHECK_INT(e.http_status, 410);
	CHECK_STR(e.code, "sandbox_stopped");
	CHECK_INT(read_all(odd_path, &back, &e), -EHOSTDOWN);

	rc = vc_sandbox_get(vc, name, true, &sb, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK(sb.resumed);
	CHECK(sb.has_session);
	CHECK(strcmp(sb.session.id, sid) != 0);
	CHECK_STR(sb.session.status, "running");
	printf("  resumed: session %s -> %s\n", sid, sb.session.id);
	str_copy(sid, sizeof(sid), sb.session.id);
	vc_sandbox_clear(&sb);

	/* Persistent: the file survived. */
	sb_free(&back);
	CHECK_INT(read_all(odd_path, &back, &e), sizeof(odd_bytes));
	CHECK(back.len == sizeof(odd_bytes) && memcmp(back.buf, odd_bytes, sizeof(odd_bytes)) == 0);
	sb_free(&back);
}

UNIT_TEST(snapshot)
{
	struct vc_snapshot s, g;
	struct vc_error e;
	int rc;

	rc = vc_snapshot_create(vc, sid, 0, &s, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK(s.id[0] != '\0');
	CHECK_STR(s.source_session_id, sid);
	str_copy(snap_id, sizeof(snap_id), s.id);
	vc_snapshot_clear(&s);
	CHECK(wait_status("stopped"));
	rc = vc_snapshot_get(vc, snap_id, &g, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_STR(g.status, "created");
	vc_snapshot_clear(&g);
	CHECK_INT(vc_snapshot_get(vc, "snap_no_such", &g, &e), -ENOENT);
}

/* More sandboxes (one from the snapshot), listed two a page. */
UNIT_TEST(lists_across_pages)
{
	struct vc_list_params lp = { .page_size = 2, .name_prefix = "live-" };
	struct vc_sandbox *list = NULL, s;
	struct vc_snapshot *snaps = NULL;
	struct http_stats before, after;
	struct vc_error e;
	size_t n = 0, mine = 0;
	bool found = false;
	int rc;

	for (int i = 0; i < 4; i++) {
		struct vc_create_params p;
		char nm[80];

		vc_create_params_init(&p);
		snprintf(nm, sizeof(nm), "%s-x%d", name, i);
		p.name = nm;
		if (i == 0)
			p.source_snapshot_id = snap_id;
		rc = vc_sandbox_create(vc, &p, &s, &e);
		REPORT(rc, e);
		CHECK_INT(rc, 0);
		if (i == 0) {
			/* From the snapshot: the file is there. */
			struct strbuf back = STRBUF_INIT;

			CHECK_INT(vc_fs_read(vc, s.session.id, odd_path, mem_sink, &back, &e), sizeof(odd_bytes));
			CHECK(back.len == sizeof(odd_bytes) && memcmp(back.buf, odd_bytes, sizeof(odd_bytes)) == 0);
			sb_free(&back);
		}
		vc_sandbox_clear(&s);
	}
	http_client_stats(hc, &before);
	rc = vc_sandbox_list(vc, &lp, &list, &n, &e);
	REPORT(rc, e);
	http_client_stats(hc, &after);
	CHECK_INT(rc, 0);
	for (size_t i = 0; i < n; i++)
		if (strncmp(list[i].name, name, strlen(name)) == 0)
			mine++;
	CHECK_INT(mine, 5);
	CHECK(after.requests - before.requests >= 3);   /* 5 sandboxes, 2 a page */
	vc_sandbox_list_free(list, n);

	rc = vc_snapshot_list(vc, &(struct vc_list_params){ .page_size = 1 }, &snaps, &n, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	for (size_t i = 0; i < n; i++)
		found |= strcmp(snaps[i].id, snap_id) == 0;
	CHECK(found);
	vc_snapshot_list_free(snaps, n);

	/* A cap on pages: a list longer than it fails, it is not cut short. */
	{
		struct vc_config cfg = { .base_url = api, .token = TOKEN, .team_id = TEAM, .project_id = PROJECT,
					 .max_pages = 2 };
		struct vc_client *capped = vc_client_new(hc, &cfg);

		CHECK_INT(vc_sandbox_list(capped, &lp, &list, &n, &e), -E2BIG);
		CHECK_INT(n, 0);
		CHECK(list == NULL);
		vc_client_free(capped);
	}
}

/* A 2xx that is not file content (a JSON body, as some real answers have
 * carried) never reaches the reader as the file. */
UNIT_TEST(read_not_octet_stream)
{
	struct strbuf back = STRBUF_INIT;
	struct vc_error e;

	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\": \"/fs/read\", \"status\": 200, \"count\": 1, "
			     "\"body\": {\"error\": {\"code\": \"x\", \"message\": \"not a file\"}}}", NULL), 201);
	CHECK_INT(read_all(odd_path, &back, &e), -EIO);
	CHECK_INT(back.len, 0);
	CHECK(strstr(e.message, "not file content") != NULL);
	CHECK_INT(faults_injected(), 1);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL, NULL), 204);
	sb_free(&back);
}

/* A quota of 600 a minute with a burst of 1: the second call waits for its
 * token (the limiter's state, not a clock, says so). */
UNIT_TEST(rate_limited_client)
{
	struct vc_config cfg = { .base_url = api, .token = TOKEN, .team_id = TEAM, .project_id = PROJECT,
				 .rate_per_minute = 600, .rate_burst = 1 };
	struct vc_client *slow = vc_client_new(hc, &cfg);
	struct vc_sandbox s;
	struct vc_error e;

	CHECK(slow != NULL);
	CHECK_INT(vc_sandbox_get(slow, name, false, &s, &e), 0);
	vc_sandbox_clear(&s);
	CHECK_INT(vc_rate_waited_ms(slow), 0);
	CHECK_INT(vc_sandbox_get(slow, name, false, &s, &e), 0);
	vc_sandbox_clear(&s);
	CHECK(vc_rate_waited_ms(slow) > 0);
	vc_client_free(slow);
}

/* A server that hands the same cursor back: the list stops with ELOOP. */
UNIT_TEST(repeated_cursor)
{
	struct vc_sandbox *list = NULL;
	struct vc_error e;
	size_t n = 0;

	CHECK_INT(local_call("POST", "/_local/faults",
			     "{\"pattern\": \"/v2/sandboxes\\\\?\", \"method\": \"GET\", \"status\": 200, "
			     "\"body\": {\"sandboxes\": [], \"pagination\": {\"count\": 0, \"next\": \"c1\"}}}", NULL), 201);
	CHECK_INT(vc_sandbox_list(vc, NULL, &list, &n, &e), -ELOOP);
	CHECK(strstr(e.message, "c1") != NULL);
	CHECK_INT(n, 0);
	CHECK_INT(faults_injected(), 2);
	CHECK_INT(local_call("DELETE", "/_local/faults", NULL, NULL), 204);
}

UNIT_TEST(delete_all)
{
	struct vc_sandbox s;
	struct vc_snapshot g;
	struct vc_error e;
	int rc;

	for (int i = 0; i < 4; i++) {
		char nm[80];

		snprintf(nm, sizeof(nm), "%s-x%d", name, i);
		CHECK_INT(vc_sandbox_delete(vc, nm, false, &e), 0);
	}
	rc = vc_sandbox_delete(vc, name, false, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	CHECK_INT(vc_sandbox_get(vc, name, false, &s, &e), -ENOENT);
	vc_sandbox_clear(&s);
	rc = vc_snapshot_delete(vc, snap_id, &e);
	REPORT(rc, e);
	CHECK_INT(rc, 0);
	rc = vc_snapshot_get(vc, snap_id, &g, &e);
	CHECK(rc == -ENOENT || (rc == 0 && strcmp(g.status, "deleted") == 0));
	vc_snapshot_clear(&g);
}

/* ---- setup ---- */

static int start_server(void)
{
	static const char *const args[] = { "--token", TOKEN, "--team", TEAM, "--project", PROJECT,
					    "--transition-ms", "30", "--quiet", NULL };

	if (live_server_start(&server, "vercel-local", args) != 0)
		return -1;
	str_copy(api, sizeof(api), server.api);
	str_copy(local_base, sizeof(local_base), server.base);
	return 0;
}

static void stop_server(void)
{
	live_server_stop(&server);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(errors_and_auth),
		UNIT_CASE(create),
		UNIT_CASE(files),
		UNIT_CASE(make_dirs),
		UNIT_CASE(commands),
		UNIT_CASE(faults_retried),
		UNIT_CASE(extend_and_update),
		UNIT_CASE(stop_and_resume),
		UNIT_CASE(snapshot),
		UNIT_CASE(lists_across_pages),
		UNIT_CASE(read_not_octet_stream),
		UNIT_CASE(rate_limited_client),
		UNIT_CASE(repeated_cursor),
		UNIT_CASE(delete_all),
	};
	struct http_config cfg;
	struct vc_config vcfg = { 0 };
	int rc;

	log_init(getenv("LIVE_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN, false);
	if (start_server() != 0) {
		fprintf(stderr, "cannot start %s/scripts/vercel-local\n", SOURCE_ROOT);
		stop_server();
		return 2;
	}
	printf("API %s\n", api);
	snprintf(name, sizeof(name), "live-%d", (int)getpid());

	http_config_defaults(&cfg);
	cfg.retry_base_ms = 20;
	hc = http_client_new(&cfg);
	vcfg.base_url = api;
	vcfg.token = TOKEN;
	vcfg.team_id = TEAM;
	vcfg.project_id = PROJECT;
	vcfg.wait_timeout_ms = 60000;
	vc = vc_client_new(hc, &vcfg);
	if (!hc || !vc) {
		stop_server();
		return 2;
	}
	rc = unit_run("vercel_live", cases, sizeof(cases) / sizeof(cases[0]));
	vc_client_free(vc);
	http_client_free(hc);
	stop_server();
	return rc;
}
