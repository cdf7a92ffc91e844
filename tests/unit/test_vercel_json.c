/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_vercel_json - the pure parts of the Vercel client: status to errno,
 * the contract's JSON shapes (sandbox, session, command, snapshot), request
 * bodies, credentials from the environment, NDJSON framing across chunk
 * boundaries, log lines, fs/write entry names, and the rate limiter.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "strbuf.h"
#include "vercel.h"
#include "unit.h"

UNIT_TEST(errno_mapping)
{
	CHECK_INT(vc_errno_for_status(200, NULL), 0);
	CHECK_INT(vc_errno_for_status(400, "bad_request"), -EINVAL);
	CHECK_INT(vc_errno_for_status(401, NULL), -EACCES);
	CHECK_INT(vc_errno_for_status(402, NULL), -EDQUOT);
	CHECK_INT(vc_errno_for_status(403, "forbidden"), -EACCES);
	CHECK_INT(vc_errno_for_status(404, "not_found"), -ENOENT);
	CHECK_INT(vc_errno_for_status(409, NULL), -EEXIST);
	CHECK_INT(vc_errno_for_status(410, "sandbox_stopped"), -EHOSTDOWN);
	CHECK_INT(vc_errno_for_status(410, NULL), -EHOSTDOWN);
	CHECK_INT(vc_errno_for_status(410, "snapshot_not_found"), -ENOENT);
	CHECK_INT(vc_errno_for_status(422, "sandbox_stopping"), -EBUSY);
	CHECK_INT(vc_errno_for_status(422, "sandbox_snapshotting"), -EBUSY);
	CHECK_INT(vc_errno_for_status(429, "rate_limited"), -EAGAIN);
	CHECK_INT(vc_errno_for_status(500, NULL), -EIO);
	CHECK_INT(vc_errno_for_status(503, NULL), -EIO);
}

/* The create response of the contract (section 4.1). */
static const char create_response[] =
	"{\"sandbox\":{\"name\":\"fuse-test\",\"persistent\":true,\"region\":\"iad1\",\"vcpus\":2,\"memory\":4096,"
	"\"timeout\":600000,\"createdAt\":1760000000000,\"updatedAt\":1760000000000,"
	"\"currentSessionId\":\"sess_1\",\"status\":\"running\",\"statusUpdatedAt\":1760000000000,\"cwd\":\"/vercel/sandbox\"},"
	"\"session\":{\"id\":\"sess_1\",\"projectId\":\"prj_abc\",\"sourceSandboxName\":\"fuse-test\",\"memory\":4096,\"vcpus\":2,"
	"\"region\":\"iad1\",\"runtime\":\"x\",\"timeout\":600000,\"status\":\"running\",\"requestedAt\":1760000000000,"
	"\"startedAt\":1760000000500,\"createdAt\":1760000000000,\"cwd\":\"/vercel/sandbox\",\"updatedAt\":1760000000500},"
	"\"routes\":[{\"url\":\"https://s.vercel.run\",\"subdomain\":\"s\",\"port\":3000}],\"resumed\":false}";

UNIT_TEST(sandbox_and_session)
{
	cJSON *root = cJSON_Parse(create_response);
	struct vc_sandbox sb;

	CHECK_INT(vc_sandbox_response_from_json(root, &sb), 0);
	CHECK_STR(sb.name, "fuse-test");
	CHECK_STR(sb.status, "running");
	CHECK(sb.persistent);
	CHECK_STR(sb.current_session_id, "sess_1");
	CHECK_STR(sb.cwd, "/vercel/sandbox");
	CHECK_INT(sb.vcpus, 2);
	CHECK_INT(sb.memory, 4096);
	CHECK_INT(sb.timeout_ms, 600000);
	CHECK_INT(sb.created_at, 1760000000000LL);
	CHECK(sb.has_session);
	CHECK(!sb.resumed);
	CHECK_STR(sb.session.id, "sess_1");
	CHECK_STR(sb.session.status, "running");
	CHECK_INT(sb.session.started_at, 1760000000500LL);
	CHECK(sb.json && sb.json[strlen(sb.json) - 1] == '\n' && strstr(sb.json, "\"routes\""));
	CHECK_INT(sb.routes_err, 0);
	CHECK_INT(sb.n_routes, 1);
	CHECK_INT(sb.routes[0].port, 3000);
	CHECK_STR(sb.routes[0].url, "https://s.vercel.run");
	vc_sandbox_clear(&sb);
	cJSON_Delete(root);

	/* Required fields missing: refused, not half-filled. */
	root = cJSON_Parse("{\"sandbox\":{\"status\":\"running\"}}");
	CHECK_INT(vc_sandbox_response_from_json(root, &sb), -EINVAL);
	vc_sandbox_clear(&sb);
	cJSON_Delete(root);
	root = cJSON_Parse("{\"id\":\"s\"}");
	CHECK_INT(vc_session_from_json(root, &sb.session), -EINVAL);
	cJSON_Delete(root);
	/* resumed:true and persistent:false */
	root = cJSON_Parse("{\"sandbox\":{\"name\":\"n\",\"status\":\"running\",\"persistent\":false},"
			   "\"session\":{\"id\":\"s2\",\"status\":\"running\"},\"resumed\":true}");
	CHECK_INT(vc_sandbox_response_from_json(root, &sb), 0);
	CHECK(sb.resumed);
	CHECK(!sb.persistent);
	vc_sandbox_clear(&sb);
	cJSON_Delete(root);
}

/* The routes of the declared ports (NAME/ports/): system routes skipped,
 * anything unreadable an error and never a cut URL or a half list; and a
 * sandbox whose routes cannot be read is still read (routes_err set). */
UNIT_TEST(routes)
{
	struct vc_route r[3];
	size_t n = 99;
	cJSON *root;
	char big[400];

	CHECK_INT(vc_routes_from_json(NULL, r, 3, &n), 0);
	CHECK_INT(n, 0);
	root = cJSON_Parse("[{\"url\":\"https://a.vercel.run\",\"subdomain\":\"a\",\"port\":8080},"
			   "{\"url\":\"https://sys.vercel.run\",\"subdomain\":\"sys\",\"port\":1,\"system\":true},"
			   "{\"url\":\"https://b.vercel.run\",\"subdomain\":\"b\",\"port\":3000}]");
	CHECK_INT(vc_routes_from_json(root, r, 3, &n), 0);
	CHECK_INT(n, 2);
	CHECK_INT(r[0].port, 8080);
	CHECK_STR(r[0].url, "https://a.vercel.run");
	CHECK_INT(r[1].port, 3000);
	CHECK_STR(r[1].url, "https://b.vercel.run");
	CHECK_INT(vc_routes_from_json(root, r, 1, &n), -E2BIG);
	cJSON_Delete(root);
	static const char *const bad[] = {
		"{}", "[1]", "[{\"url\":\"u\"}]", "[{\"port\":3000}]", "[{\"url\":\"u\",\"port\":0}]",
		"[{\"url\":\"u\",\"port\":65536}]", "[{\"url\":\"u\",\"port\":3000.5}]",
		"[{\"url\":7,\"port\":3000}]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		root = cJSON_Parse(bad[i]);
		CHECK_INT(vc_routes_from_json(root, r, 3, &n), -EINVAL);
		cJSON_Delete(root);
	}
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	root = cJSON_CreateArray();
	cJSON *one = cJSON_CreateObject();
	cJSON_AddStringToObject(one, "url", big);
	cJSON_AddNumberToObject(one, "port", 3000);
	cJSON_AddItemToArray(root, one);
	CHECK_INT(vc_routes_from_json(root, r, 3, &n), -ENAMETOOLONG);
	cJSON_Delete(root);

	struct vc_sandbox sb;

	root = cJSON_Parse("{\"sandbox\":{\"name\":\"n\",\"status\":\"running\"},\"routes\":{}}");
	CHECK_INT(vc_sandbox_response_from_json(root, &sb), 0);
	CHECK_STR(sb.name, "n");
	CHECK_INT(sb.routes_err, -EINVAL);
	CHECK_INT(sb.n_routes, 0);
	vc_sandbox_clear(&sb);
	cJSON_Delete(root);
}

UNIT_TEST(command_shapes)
{
	cJSON *root = cJSON_Parse("{\"id\":\"cmd_1\",\"name\":\"npm\",\"args\":[\"run\",\"dev\"],\"cwd\":\"/vercel/sandbox/app\","
				  "\"sessionId\":\"sess_1\",\"exitCode\":null,\"startedAt\":1760000001000}");
	struct vc_command c;

	CHECK_INT(vc_command_from_json(root, &c), 0);
	CHECK_STR(c.id, "cmd_1");
	CHECK_STR(c.name, "npm");
	CHECK_STR(c.cwd, "/vercel/sandbox/app");
	CHECK_STR(c.session_id, "sess_1");
	CHECK(!c.exited);
	CHECK_INT(c.started_at, 1760000001000LL);
	cJSON_Delete(root);
	root = cJSON_Parse("{\"id\":\"cmd_1\",\"exitCode\":137,\"durationMs\":1234}");
	CHECK_INT(vc_command_from_json(root, &c), 0);
	CHECK(c.exited);
	CHECK_INT(c.exit_code, 137);
	CHECK_INT(c.duration_ms, 1234);
	cJSON_Delete(root);
	root = cJSON_Parse("{\"id\":\"cmd_1\",\"exitCode\":\"0\"}");
	CHECK_INT(vc_command_from_json(root, &c), -EINVAL);
	cJSON_Delete(root);
}

UNIT_TEST(snapshot_shape)
{
	cJSON *root = cJSON_Parse("{\"id\":\"snap_1\",\"sourceSessionId\":\"sess_1\",\"region\":\"iad1\",\"status\":\"created\","
				  "\"sizeBytes\":123456789012,\"createdAt\":1,\"updatedAt\":2,\"expiresAt\":3,"
				  "\"lastUsedAt\":4,\"creationMethod\":\"manual\"}");
	struct vc_snapshot s;

	CHECK_INT(vc_snapshot_from_json(root, &s), 0);
	CHECK_STR(s.id, "snap_1");
	CHECK_STR(s.source_session_id, "sess_1");
	CHECK_STR(s.status, "created");
	CHECK_STR(s.creation_method, "manual");
	CHECK_INT(s.size_bytes, 123456789012LL);
	CHECK_INT(s.expires_at, 3);
	CHECK_INT(s.last_used_at, 4);
	vc_snapshot_clear(&s);
	cJSON_Delete(root);
}

UNIT_TEST(request_bodies)
{
	static const int ports[] = { 3000 };
	static const struct vc_kv env[] = { { "A", "1" } };
	static const struct vc_kv tags[] = { { "k", "v" } };
	static const char *const args[] = { "-c", "echo \"hi\"" };
	struct vc_create_params p;
	struct vc_update_params u;
	struct vc_cmd_params c = { .command = "sh", .args = args, .n_args = 2 };
	char *s;

	vc_create_params_init(&p);
	s = vc_create_body_json(&p, "prj_x");
	CHECK_STR(s, "{\"projectId\":\"prj_x\",\"ports\":[]}");
	free(s);
	p.name = "n1";
	p.ports = ports;
	p.n_ports = 1;
	p.timeout_ms = 600000;
	p.vcpus = 2;
	p.persistent = 0;
	p.env = env;
	p.n_env = 1;
	p.tags = tags;
	p.n_tags = 1;
	p.source_snapshot_id = "snap_1";
	s = vc_create_body_json(&p, "prj_x");
	CHECK_STR(s, "{\"projectId\":\"prj_x\",\"ports\":[3000],\"source\":{\"type\":\"snapshot\",\"snapshotId\":\"snap_1\"},"
		  "\"timeout\":600000,\"resources\":{\"vcpus\":2},\"name\":\"n1\",\"persistent\":false,"
		  "\"env\":{\"A\":\"1\"},\"tags\":{\"k\":\"v\"}}");
	free(s);

	vc_update_params_init(&u);
	u.vcpus = 4;
	u.set_ports = true;
	s = vc_update_body_json(&u);
	CHECK_STR(s, "{\"resources\":{\"vcpus\":4,\"memory\":8192},\"ports\":[]}");
	free(s);

	s = vc_cmd_body_json(&c);
	CHECK_STR(s, "{\"command\":\"sh\",\"args\":[\"-c\",\"echo \\\"hi\\\"\"],\"env\":{},\"sudo\":false}");
	free(s);
	c.cwd = "/tmp";
	c.sudo = true;
	c.timeout_ms = 5000;
	c.env = env;
	c.n_env = 1;
	s = vc_cmd_body_json(&c);
	CHECK_STR(s, "{\"command\":\"sh\",\"args\":[\"-c\",\"echo \\\"hi\\\"\"],\"cwd\":\"/tmp\",\"env\":{\"A\":\"1\"},"
		  "\"sudo\":true,\"timeout\":5000}");
	free(s);
}

/* ---- credentials ---- */

static const char *env_vals[4];     /* OIDC, TOKEN, TEAM, PROJECT */

static const char *fake_getenv(const char *name)
{
	if (strcmp(name, "VERCEL_OIDC_TOKEN") == 0)
		return env_vals[0];
	if (strcmp(name, "VERCEL_TOKEN") == 0)
		return env_vals[1];
	if (strcmp(name, "VERCEL_TEAM_ID") == 0)
		return env_vals[2];
	if (strcmp(name, "VERCEL_PROJECT_ID") == 0)
		return env_vals[3];
	return NULL;
}

UNIT_TEST(credentials)
{
	struct vc_credentials cr;
	struct vc_error e;

	memset(env_vals, 0, sizeof(env_vals));
	CHECK_INT(vc_credentials_from_env(&cr, fake_getenv, &e), -ENOENT);
	env_vals[1] = "tok";
	CHECK_INT(vc_credentials_from_env(&cr, fake_getenv, &e), -EINVAL);
	CHECK(strstr(e.message, "VERCEL_TEAM_ID") != NULL);
	CHECK(strstr(e.message, "tok") == NULL);
	env_vals[2] = "team_1";
	env_vals[3] = "prj_1";
	CHECK_INT(vc_credentials_from_env(&cr, fake_getenv, &e), 0);
	CHECK_STR(cr.token, "tok");
	CHECK_STR(cr.team_id, "team_1");
	CHECK_STR(cr.project_id, "prj_1");

	/* OIDC: {"owner_id":"team_o","project_id":"prj_o"} in base64url, no padding. */
	memset(env_vals, 0, sizeof(env_vals));
	env_vals[0] = "eyJhbGciOiJub25lIn0.eyJvd25lcl9pZCI6InRlYW1fbyIsInByb2plY3RfaWQiOiJwcmpfbyJ9.sig";
	CHECK_INT(vc_credentials_from_env(&cr, fake_getenv, &e), 0);
	CHECK_STR(cr.team_id, "team_o");
	CHECK_STR(cr.project_id, "prj_o");
	CHECK_STR(cr.token, env_vals[0]);
	env_vals[0] = "not-a-jwt";
	CHECK_INT(vc_credentials_from_env(&cr, fake_getenv, &e), -EINVAL);
	env_vals[0] = "a.e30.b";    /* {} : no claims */
	CHECK_INT(vc_credentials_from_env(&cr, fake_getenv, &e), -EINVAL);
	CHECK(strstr(e.message, "owner_id") != NULL);
}

/* ---- NDJSON ---- */

struct lines {
	struct strbuf all;      /* each line followed by '|' */
	int n;
};

static int collect_line(void *ctx, const char *line, size_t len)
{
	struct lines *l = ctx;

	sb_add(&l->all, line, len);
	sb_addc(&l->all, '|');
	l->n++;
	return 0;
}

UNIT_TEST(ndjson_chunk_boundaries)
{
	static const char stream[] = "{\"a\":1}\n\n{\"b\":\"x\\ny\"}\r\n{\"c\":\"\xc3\xa9\xe2\x82\xac\"}\n{\"d\":4}";
	size_t len = sizeof(stream) - 1;

	/* Every split point, and byte by byte: the same lines. */
	for (size_t cut = 0; cut <= len; cut++) {
		struct lines l = { STRBUF_INIT, 0 };
		struct vc_ndjson p;

		vc_ndjson_init(&p, 0, collect_line, &l);
		CHECK_INT(vc_ndjson_feed(&p, stream, cut), 0);
		CHECK_INT(vc_ndjson_feed(&p, stream + cut, len - cut), 0);
		CHECK_INT(vc_ndjson_finish(&p), 0);
		CHECK_INT(l.n, 4);
		CHECK_STR(sb_str(&l.all), "{\"a\":1}|{\"b\":\"x\\ny\"}|{\"c\":\"\xc3\xa9\xe2\x82\xac\"}|{\"d\":4}|");
		vc_ndjson_free(&p);
		sb_free(&l.all);
	}
	{
		struct lines l = { STRBUF_INIT, 0 };
		struct vc_ndjson p;

		vc_ndjson_init(&p, 0, collect_line, &l);
		for (size_t i = 0; i < len; i++)
			CHECK_INT(vc_ndjson_feed(&p, stream + i, 1), 0);
		CHECK_INT(vc_ndjson_finish(&p), 0);
		CHECK_INT(l.n, 4);
		vc_ndjson_free(&p);
		sb_free(&l.all);
	}
	{
		/* A line over the limit, whole or in pieces. */
		struct lines l = { STRBUF_INIT, 0 };
		struct vc_ndjson p;

		vc_ndjson_init(&p, 8, collect_line, &l);
		CHECK_INT(vc_ndjson_feed(&p, "123456789\n", 10), -EFBIG);
		vc_ndjson_free(&p);
		vc_ndjson_init(&p, 8, collect_line, &l);
		CHECK_INT(vc_ndjson_feed(&p, "12345", 5), 0);
		CHECK_INT(vc_ndjson_feed(&p, "6789", 4), -EFBIG);
		vc_ndjson_free(&p);
		sb_free(&l.all);
	}
}

struct out {
	struct strbuf o, e;
};

static int collect_log(void *ctx, enum vc_stream s, const char *data, size_t len)
{
	struct out *o = ctx;

	sb_add(s == VC_STDOUT ? &o->o : &o->e, data, len);
	return 0;
}

static int log_line(const char *line, struct out *o, struct vc_command *c, struct vc_error *e)
{
	return vc_log_line(line, strlen(line), collect_log, o, c, e);
}

UNIT_TEST(log_lines)
{
	struct out o = { STRBUF_INIT, STRBUF_INIT };
	struct vc_command c;
	struct vc_error e;

	CHECK_INT(log_line("{\"stream\":\"stdout\",\"data\":\"hi\\n\"}", &o, NULL, &e), 0);
	CHECK_INT(log_line("{\"data\":\"err\\u0000x\\t\",\"stream\":\"stderr\"}", &o, NULL, &e), 0);
	/* A surrogate pair, raw UTF-8, escapes; a nested "data" is not the one. */
	CHECK_INT(log_line("{\"stream\":\"stdout\",\"x\":{\"data\":\"no\"},\"data\":\"\\ud83d\\ude00\xc3\xa9\\\"\\\\\\/\"}",
			   &o, NULL, &e), 0);
	CHECK_INT(o.o.len, 3 + 4 + 2 + 3);
	CHECK(memcmp(o.o.buf, "hi\n\xf0\x9f\x98\x80\xc3\xa9\"\\/", o.o.len) == 0);
	CHECK_INT(o.e.len, 6);
	CHECK(memcmp(o.e.buf, "err\0x\t", 6) == 0);

	CHECK_INT(log_line("{\"command\":{\"id\":\"c1\",\"exitCode\":3}}", &o, &c, &e), 0);
	CHECK_STR(c.id, "c1");
	CHECK(c.exited);
	CHECK_INT(c.exit_code, 3);

	CHECK_INT(log_line("{\"stream\":\"error\",\"data\":{\"code\":\"sandbox_stopped\",\"message\":\"Sandbox has stopped\"}}",
			   &o, NULL, &e), -EHOSTDOWN);
	CHECK_STR(e.code, "sandbox_stopped");
	CHECK(strstr(e.message, "Sandbox has stopped") != NULL);
	CHECK_INT(log_line("{\"stream\":\"error\",\"data\":{\"code\":\"other\",\"message\":\"m\"}}", &o, NULL, &e), -EIO);
	CHECK_INT(log_line("{\"stream\":\"stdin\",\"data\":\"x\"}", &o, NULL, &e), -EIO);
	CHECK_INT(log_line("{\"stream\":\"stdout\"}", &o, NULL, &e), -EIO);
	CHECK_INT(log_line("not json", &o, NULL, &e), -EIO);
	CHECK_INT(log_line("[1,2]", &o, NULL, &e), -EIO);
	sb_free(&o.o);
	sb_free(&o.e);
}

UNIT_TEST(entry_names)
{
	char out[64];

	CHECK_INT(vc_fs_entry_name("/vercel/sandbox/a.txt", out, sizeof(out)), 0);
	CHECK_STR(out, "vercel/sandbox/a.txt");
	CHECK_INT(vc_fs_entry_name("//a/./b//c/", out, sizeof(out)), 0);
	CHECK_STR(out, "a/b/c");
	CHECK_INT(vc_fs_entry_name("relative", out, sizeof(out)), -EINVAL);
	CHECK_INT(vc_fs_entry_name("/a/../b", out, sizeof(out)), -EINVAL);
	CHECK_INT(vc_fs_entry_name("/", out, sizeof(out)), -EINVAL);
	CHECK_INT(vc_fs_entry_name("/./", out, sizeof(out)), -EINVAL);
	CHECK_INT(vc_fs_entry_name("/0123456789/0123456789/0123456789/0123456789/0123456789/0123456789/x",
				   out, sizeof(out)), -ENAMETOOLONG);
}

/* ---- rate limiter ---- */

UNIT_TEST(rate_limiter_arithmetic)
{
	struct rate_limiter rl;

	/* 60 a minute, burst 10: refill 50 a minute, one token every 1200 ms. */
	rl_init(&rl, 60, 10);
	for (int i = 0; i < 10; i++)
		CHECK_INT(rl_reserve(&rl, 1000), 0);
	CHECK_INT(rl_reserve(&rl, 1000), 1200);
	CHECK_INT(rl_reserve(&rl, 1000), 2400);
	/* Time passes: the reserved tokens are paid back first. */
	CHECK_INT(rl_reserve(&rl, 3400), 1200);
	CHECK_INT(rl_reserve(&rl, 100000), 0);  /* long idle: full again (capped at the burst) */
	for (int i = 0; i < 9; i++)
		CHECK_INT(rl_reserve(&rl, 100000), 0);
	CHECK_INT(rl_reserve(&rl, 100000), 1200);
	rl_destroy(&rl);

	/* Clients as fast as allowed: no 60 s window holds more than the quota. */
	rl_init(&rl, 1000, 0);
	{
		int64_t t = 0, starts[3000];
		int n = 0;

		while (n < 3000) {
			long w = rl_reserve(&rl, t);

			starts[n++] = t + w;
			t += w;
		}
		for (int i = 0; i < n; i++) {
			int in = 0;

			for (int j = i; j < n && starts[j] < starts[i] + 60000; j++)
				in++;
			if (in > 1000) {
				CHECK_INT(in, 1000);
				break;
			}
		}
		/* And it does allow the quota: the 1000th at the minute's end. */
		CHECK(starts[999] <= 60000);
		CHECK(starts[1000] > 60000);
	}
	rl_destroy(&rl);

	rl_init(&rl, -1, 0);    /* disabled */
	for (int i = 0; i < 5000; i++)
		if (rl_reserve(&rl, 0) != 0) {
			CHECK(false);
			break;
		}
	rl_destroy(&rl);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(errno_mapping),
		UNIT_CASE(sandbox_and_session),
		UNIT_CASE(routes),
		UNIT_CASE(command_shapes),
		UNIT_CASE(snapshot_shape),
		UNIT_CASE(request_bodies),
		UNIT_CASE(credentials),
		UNIT_CASE(ndjson_chunk_boundaries),
		UNIT_CASE(log_lines),
		UNIT_CASE(entry_names),
		UNIT_CASE(rate_limiter_arithmetic),
	};

	return unit_run("vercel_json", cases, sizeof(cases) / sizeof(cases[0]));
}
