/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure parts of daytona.c: Go mode strings, RFC 3339 times, FileInfo
 * and Sandbox objects, the CreateSandbox body, and status to errno.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "daytona.h"
#include "unit.h"

/* ---- Go FileMode strings ---- */

static long long gomode(const char *s)
{
	mode_t m = 0;
	int rc = dt_parse_go_mode(s, &m);

	return rc ? rc : (long long)m;
}

UNIT_TEST(mode_regular_and_dir)
{
	CHECK_INT(gomode("-rw-r--r--"), S_IFREG | 0644);
	CHECK_INT(gomode("-rwxr-xr-x"), S_IFREG | 0755);
	CHECK_INT(gomode("----------"), S_IFREG | 0);
	CHECK_INT(gomode("-rwxrwxrwx"), S_IFREG | 0777);
	CHECK_INT(gomode("drwxr-xr-x"), S_IFDIR | 0755);
	CHECK_INT(gomode("d---------"), S_IFDIR);
	CHECK_INT(gomode("-r--------"), S_IFREG | 0400);
	CHECK_INT(gomode("--------x"), -EINVAL);  /* too short */
}

UNIT_TEST(mode_special_bits)
{
	CHECK_INT(gomode("dtrwxrwxrwx"), S_IFDIR | S_ISVTX | 0777);        /* /tmp */
	CHECK_INT(gomode("urwxr-xr-x"), S_IFREG | S_ISUID | 0755);         /* setuid binary */
	CHECK_INT(gomode("grwxr-sr-x") == -EINVAL, 1);                     /* 's' is not Go's */
	CHECK_INT(gomode("grwxr-xr-x"), S_IFREG | S_ISGID | 0755);
	CHECK_INT(gomode("ugrwxr-xr-x"), S_IFREG | S_ISUID | S_ISGID | 0755);
	CHECK_INT(gomode("dgtrwxrwxr-x"), S_IFDIR | S_ISGID | S_ISVTX | 0775);
}

UNIT_TEST(mode_types)
{
	CHECK_INT(gomode("prw-r--r--"), S_IFIFO | 0644);
	CHECK_INT(gomode("Dcrw-rw-rw-"), S_IFCHR | 0666);   /* /dev/null */
	CHECK_INT(gomode("Drw-rw----"), S_IFBLK | 0660);    /* block device */
	CHECK_INT(gomode("Srwxrwxrwx"), S_IFSOCK | 0777);
	CHECK_INT(gomode("Lrwxrwxrwx"), S_IFLNK | 0777);
	CHECK_INT(gomode("crw-rw-rw-"), S_IFCHR | 0666);
	CHECK_INT(gomode("arw-r--r--"), S_IFREG | 0644);    /* append-only: still a file */
	CHECK_INT(gomode("?rw-r--r--"), S_IFREG | 0644);
}

UNIT_TEST(mode_malformed)
{
	CHECK_INT(gomode(""), -EINVAL);
	CHECK_INT(gomode("drwxr-xr-"), -EINVAL);
	CHECK_INT(gomode("xrwxr-xr-x"), -EINVAL);        /* unknown letter */
	CHECK_INT(gomode("-rwxr-xr-q"), -EINVAL);        /* bad permission char */
	CHECK_INT(gomode("-wrxr-xr-x"), -EINVAL);        /* letters out of place */
	CHECK_INT(gomode("0644000000"), -EINVAL);
	CHECK_INT(dt_parse_go_mode(NULL, &(mode_t){0}), -EINVAL);
}

/* ---- RFC 3339 ---- */

UNIT_TEST(time_utc)
{
	struct timespec ts = { 1, 1 };

	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38Z", &ts), 0);
	CHECK_INT(ts.tv_sec, 1782221618);
	CHECK_INT(ts.tv_nsec, 0);
	CHECK_INT(dt_parse_rfc3339("1970-01-01T00:00:00Z", &ts), 0);
	CHECK_INT(ts.tv_sec, 0);
	CHECK_INT(dt_parse_rfc3339("2024-02-29T23:59:59z", &ts), 0);
	CHECK_INT(ts.tv_sec, 1709251199);
}

UNIT_TEST(time_fraction)
{
	struct timespec ts;

	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38.123456789Z", &ts), 0);
	CHECK_INT(ts.tv_sec, 1782221618);
	CHECK_INT(ts.tv_nsec, 123456789);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38.5Z", &ts), 0);
	CHECK_INT(ts.tv_nsec, 500000000);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38.120Z", &ts), 0);   /* JS toISOString */
	CHECK_INT(ts.tv_nsec, 120000000);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38.1234567891234Z", &ts), 0);
	CHECK_INT(ts.tv_nsec, 123456789);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38.Z", &ts), -EINVAL);
}

UNIT_TEST(time_offsets)
{
	struct timespec ts;

	CHECK_INT(dt_parse_rfc3339("2026-06-23T15:33:38+02:00", &ts), 0);
	CHECK_INT(ts.tv_sec, 1782221618);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T08:03:38.25-05:30", &ts), 0);
	CHECK_INT(ts.tv_sec, 1782221618);
	CHECK_INT(ts.tv_nsec, 250000000);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38+00:00", &ts), 0);
	CHECK_INT(ts.tv_sec, 1782221618);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T15:33:38+0200", &ts), 0);
	CHECK_INT(ts.tv_sec, 1782221618);
	CHECK_INT(dt_parse_rfc3339("2026-06-23 13:33:38Z", &ts), 0);   /* RFC 3339 allows a space */
	CHECK_INT(ts.tv_sec, 1782221618);
}

UNIT_TEST(time_malformed)
{
	struct timespec ts;

	CHECK_INT(dt_parse_rfc3339("", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("2026-06-23", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38", &ts), -EINVAL);      /* no zone */
	CHECK_INT(dt_parse_rfc3339("2026-13-23T13:33:38Z", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("2026-02-30T13:33:38Z", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T24:00:00Z", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38Zjunk", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("2026-06-23T13:33:38+2:00", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339("26-06-23T13:33:38Z", &ts), -EINVAL);
	CHECK_INT(dt_parse_rfc3339(NULL, &ts), -EINVAL);
}

/* ---- FileInfo ---- */

static int fi_parse(const char *json, struct sp_fileinfo *fi)
{
	cJSON *obj = cJSON_Parse(json);
	int rc;

	if (!obj)
		return -1000;
	rc = dt_fileinfo_from_json(obj, fi);
	cJSON_Delete(obj);
	return rc;
}

static void fi_clear(struct sp_fileinfo *fi)
{
	free(fi->name);
	fi->name = NULL;
}

UNIT_TEST(fileinfo_full)
{
	struct sp_fileinfo fi;

	CHECK_INT(fi_parse("{\"name\":\"main.py\",\"size\":120,\"mode\":\"-rw-r--r--\","
			   "\"modTime\":\"2026-06-23 13:33:38.5 +0000 UTC\",\"modifiedAt\":\"2026-06-23T13:33:38.5Z\","
			   "\"isDir\":false,\"owner\":\"1001\",\"group\":\"1002\",\"permissions\":\"0644\"}", &fi), 0);
	CHECK_STR(fi.name, "main.py");
	CHECK_INT(fi.size, 120);
	CHECK_INT(fi.mode, S_IFREG | 0644);
	CHECK_INT(fi.uid, 1001);
	CHECK_INT(fi.gid, 1002);
	CHECK_INT(fi.mtime.tv_sec, 1782221618);
	CHECK_INT(fi.mtime.tv_nsec, 500000000);
	CHECK(!fi.is_dir);
	fi_clear(&fi);
}

UNIT_TEST(fileinfo_dir_sticky)
{
	struct sp_fileinfo fi;

	CHECK_INT(fi_parse("{\"name\":\"tmp\",\"size\":4096,\"mode\":\"dtrwxrwxrwx\",\"isDir\":true,"
			   "\"owner\":\"0\",\"group\":\"0\",\"modifiedAt\":\"2026-06-23T13:30:01Z\"}", &fi), 0);
	CHECK_INT(fi.mode, S_IFDIR | S_ISVTX | 0777);
	CHECK(fi.is_dir);
	CHECK_INT(fi.size, 4096);
	CHECK_INT(fi.mtime.tv_sec, 1782221401);
	fi_clear(&fi);
}

UNIT_TEST(fileinfo_modtime_fallback)
{
	struct sp_fileinfo fi;

	/* No modifiedAt: the deprecated Go time.String() form is used. */
	CHECK_INT(fi_parse("{\"name\":\"a\",\"mode\":\"-rw-------\","
			   "\"modTime\":\"2026-06-23 15:33:38.123456789 +0200 CEST\"}", &fi), 0);
	CHECK_INT(fi.mtime.tv_sec, 1782221618);
	CHECK_INT(fi.mtime.tv_nsec, 123456789);
	CHECK_INT(fi.mode, S_IFREG | 0600);
	fi_clear(&fi);
	/* A broken modifiedAt also falls back. */
	CHECK_INT(fi_parse("{\"name\":\"a\",\"modifiedAt\":\"yesterday\","
			   "\"modTime\":\"2026-06-23 13:33:38 +0000 UTC\"}", &fi), 0);
	CHECK_INT(fi.mtime.tv_sec, 1782221618);
	CHECK_INT(fi.mtime.tv_nsec, 0);
	fi_clear(&fi);
}

UNIT_TEST(fileinfo_missing_fields)
{
	struct sp_fileinfo fi;

	/* Only a name: a 0644 regular file of size 0, owned by 0, at the epoch. */
	CHECK_INT(fi_parse("{\"name\":\"x\"}", &fi), 0);
	CHECK_STR(fi.name, "x");
	CHECK_INT(fi.size, 0);
	CHECK_INT(fi.mode, S_IFREG | 0644);
	CHECK_INT(fi.uid, 0);
	CHECK_INT(fi.gid, 0);
	CHECK_INT(fi.mtime.tv_sec, 0);
	CHECK(!fi.is_dir);
	fi_clear(&fi);
	/* isDir without mode: 0755 directory. */
	CHECK_INT(fi_parse("{\"name\":\"d\",\"isDir\":true}", &fi), 0);
	CHECK_INT(fi.mode, S_IFDIR | 0755);
	CHECK(fi.is_dir);
	fi_clear(&fi);
	/* permissions without mode. */
	CHECK_INT(fi_parse("{\"name\":\"p\",\"permissions\":\"0600\",\"isDir\":false}", &fi), 0);
	CHECK_INT(fi.mode, S_IFREG | 0600);
	fi_clear(&fi);
	/* An unparsable mode also falls back to permissions. */
	CHECK_INT(fi_parse("{\"name\":\"p\",\"mode\":\"???\",\"permissions\":\"0750\",\"isDir\":true}", &fi), 0);
	CHECK_INT(fi.mode, S_IFDIR | 0750);
	fi_clear(&fi);
}

UNIT_TEST(fileinfo_bad_and_odd)
{
	struct sp_fileinfo fi;

	CHECK_INT(fi_parse("{\"size\":1}", &fi), -EINVAL);          /* no name */
	CHECK(fi.name == NULL);
	CHECK_INT(fi_parse("{\"name\":\"\"}", &fi), -EINVAL);
	CHECK_INT(fi_parse("{\"name\":7}", &fi), -EINVAL);
	CHECK_INT(fi_parse("[1,2]", &fi), -EINVAL);
	CHECK_INT(fi_parse("\"str\"", &fi), -EINVAL);
	CHECK_INT(dt_fileinfo_from_json(NULL, &fi), -EINVAL);
	/* Wrong types are ignored, not trusted. */
	CHECK_INT(fi_parse("{\"name\":\"w\",\"size\":\"12\",\"owner\":\"daytona\",\"group\":1005,"
			   "\"mode\":12,\"isDir\":\"yes\"}", &fi), 0);
	CHECK_INT(fi.size, 0);
	CHECK_INT(fi.uid, 0);
	CHECK_INT(fi.gid, 1005);
	CHECK_INT(fi.mode, S_IFREG | 0644);
	fi_clear(&fi);
	CHECK_INT(fi_parse("{\"name\":\"neg\",\"size\":-5}", &fi), 0);
	CHECK_INT(fi.size, 0);
	fi_clear(&fi);
	/* A symlink to a directory: mode (from stat) says dir, isDir agrees. */
	CHECK_INT(fi_parse("{\"name\":\"link\",\"mode\":\"drwxr-xr-x\",\"isDir\":true}", &fi), 0);
	CHECK(fi.is_dir);
	fi_clear(&fi);
	/* Disagreement: isDir wins for the type, the permission bits stay. */
	CHECK_INT(fi_parse("{\"name\":\"odd\",\"mode\":\"-rwx------\",\"isDir\":true}", &fi), 0);
	CHECK_INT(fi.mode, S_IFDIR | 0700);
	CHECK(fi.is_dir);
	fi_clear(&fi);
}

UNIT_TEST(fileinfo_big_size)
{
	struct sp_fileinfo fi;

	CHECK_INT(fi_parse("{\"name\":\"big\",\"size\":10737418240}", &fi), 0);
	CHECK_INT(fi.size, 10737418240LL);
	fi_clear(&fi);
}

/* ---- Sandbox ---- */

UNIT_TEST(sandbox_parse)
{
	const char *json =
		"{\"id\":\"7b0c7d1e-5a8e-4a53-9a43-2f9f3c7f1e11\",\"name\":\"dev\",\"snapshot\":null,"
		"\"user\":\"daytona\",\"state\":\"started\",\"desiredState\":\"started\",\"errorReason\":null,"
		"\"createdAt\":\"2026-06-23T13:33:38.120Z\",\"updatedAt\":\"2026-06-23T13:33:40.002Z\","
		"\"toolboxProxyUrl\":\"https://proxy.app.daytona.io/toolbox\",\"labels\":{\"a\":\"b\"}}";
	cJSON *obj = cJSON_Parse(json);
	struct sp_sandbox sb;
	size_t n;

	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_STR(sb.id, "7b0c7d1e-5a8e-4a53-9a43-2f9f3c7f1e11");
	CHECK_STR(sb.name, "dev");
	CHECK_STR(sb.state, "started");
	CHECK_STR(sb.desired_state, "started");
	CHECK_STR(sb.toolbox_url, "https://proxy.app.daytona.io/toolbox");
	CHECK_STR(sb.error_reason, "");
	CHECK_STR(sb.snapshot, "");
	CHECK_STR(sb.user, "daytona");
	CHECK_INT(sb.created_at.tv_sec, 1782221618);
	CHECK_INT(sb.created_at.tv_nsec, 120000000);
	CHECK_INT(sb.updated_at.tv_sec, 1782221620);
	CHECK(sb.json != NULL);
	if (sb.json) {
		n = strlen(sb.json);
		CHECK(n > 2 && sb.json[n - 1] == '\n' && sb.json[n - 2] == '}');
		CHECK(strchr(sb.json, '\t') != NULL);   /* pretty-printed */
		CHECK(strstr(sb.json, "\"labels\"") != NULL);
	}
	sp_sandbox_clear(&sb);
	CHECK(sb.json == NULL);
	CHECK_STR(sb.id, "");
	cJSON_Delete(obj);
}

UNIT_TEST(sandbox_volumes)
{
	cJSON *obj = cJSON_Parse("{\"id\":\"x\",\"volumes\":[{\"volumeId\":\"v1\",\"mountPath\":\"/data\"},"
				 "{\"volumeId\":\"v2\",\"mountPath\":\"/home/daytona/.cache/\"},"
				 "{\"volumeId\":\"v3\"}, 7]}");
	struct sp_sandbox sb;

	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_STR(sb.volume_paths, "/data\n/home/daytona/.cache/\n");
	CHECK(sb.volumes_known);
	/* the decision of rename: a real rename by command at or under a mount path */
	CHECK(sp_path_on_volume(sb.volume_paths, "/data"));
	CHECK(sp_path_on_volume(sb.volume_paths, "/data/a/b"));
	CHECK(sp_path_on_volume(sb.volume_paths, "/home/daytona/.cache"));
	CHECK(sp_path_on_volume(sb.volume_paths, "/home/daytona/.cache/pip/x"));
	CHECK(!sp_path_on_volume(sb.volume_paths, "/database"));
	CHECK(!sp_path_on_volume(sb.volume_paths, "/home/daytona/.cachex"));
	CHECK(!sp_path_on_volume(sb.volume_paths, "/home/daytona/a"));
	CHECK(!sp_path_on_volume("", "/data"));
	CHECK(!sp_path_on_volume(NULL, "/data"));
	sp_sandbox_clear(&sb);
	cJSON_Delete(obj);

	/* none, or not an array */
	obj = cJSON_Parse("{\"id\":\"x\",\"volumes\":[]}");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_STR(sb.volume_paths, "");
	CHECK(sb.volumes_known);
	sp_sandbox_clear(&sb);
	cJSON_Delete(obj);
	/* a list item says nothing */
	obj = cJSON_Parse("{\"id\":\"x\"}");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_STR(sb.volume_paths, "");
	CHECK(!sb.volumes_known);
	sp_sandbox_clear(&sb);
	cJSON_Delete(obj);

	/* a path with a newline: every path counts as on a volume */
	obj = cJSON_Parse("{\"id\":\"x\",\"volumes\":[{\"volumeId\":\"v\",\"mountPath\":\"/a\\n/b\"}]}");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_STR(sb.volume_paths, "/");
	CHECK(sp_path_on_volume(sb.volume_paths, "/anything"));
	sp_sandbox_clear(&sb);
	cJSON_Delete(obj);
}

UNIT_TEST(sandbox_malformed)
{
	struct sp_sandbox sb;
	cJSON *obj;

	obj = cJSON_Parse("{\"name\":\"x\"}");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), -EINVAL);
	CHECK(sb.json == NULL);
	cJSON_Delete(obj);
	obj = cJSON_Parse("{\"id\":42}");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), -EINVAL);
	cJSON_Delete(obj);
	obj = cJSON_Parse("[]");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), -EINVAL);
	cJSON_Delete(obj);
	CHECK_INT(dt_sandbox_from_json(NULL, &sb), -EINVAL);
	/* Over-long fields are truncated, never overflowed. */
	{
		char big[2000], json[2200];

		memset(big, 'n', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		snprintf(json, sizeof(json), "{\"id\":\"i\",\"name\":\"%s\",\"state\":7}", big);
		obj = cJSON_Parse(json);
		CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
		CHECK_INT(strlen(sb.name), sizeof(sb.name) - 1);
		CHECK(!sb.name_exact);
		CHECK_STR(sb.state, "");
		sp_sandbox_clear(&sb);
		cJSON_Delete(obj);
	}
}

/* An id goes into URLs: one that would be cut, or is not one path segment,
 * refuses the item rather than address another sandbox. */
UNIT_TEST(sandbox_id_refused)
{
	static const char *const bad[] = {
		"{\"id\":\"a/b\"}", "{\"id\":\"..\"}", "{\"id\":\".\"}", "{\"id\":\"a\\u0001b\"}",
		"{\"id\":\"a\\nb\"}", "{\"id\":\"\"}",
	};
	struct sp_sandbox sb;
	cJSON *obj;
	char id[SP_ID_SIZE + 1], idjson[SP_ID_SIZE + 64];

	/* An id of SP_ID_SIZE bytes does not fit (it is never cut); one byte less does. */
	memset(id, '7', SP_ID_SIZE);
	id[SP_ID_SIZE] = '\0';
	snprintf(idjson, sizeof(idjson), "{\"id\":\"%s\"}", id);
	obj = cJSON_Parse(idjson);
	CHECK_INT(dt_sandbox_from_json(obj, &sb), -EINVAL);
	cJSON_Delete(obj);
	id[SP_ID_SIZE - 1] = '\0';
	snprintf(idjson, sizeof(idjson), "{\"id\":\"%s\"}", id);
	obj = cJSON_Parse(idjson);
	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_INT(strlen(sb.id), SP_ID_SIZE - 1);
	sp_sandbox_clear(&sb);
	cJSON_Delete(obj);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		obj = cJSON_Parse(bad[i]);
		CHECK(obj != NULL);
		CHECK_INT(dt_sandbox_from_json(obj, &sb), -EINVAL);
		cJSON_Delete(obj);
	}
	/* A toolbox address too long for its buffer is not cut: none is kept. */
	{
		char json[1200], url[700];

		memset(url, 'u', sizeof(url) - 1);
		url[sizeof(url) - 1] = '\0';
		snprintf(json, sizeof(json), "{\"id\":\"i\",\"toolboxProxyUrl\":\"http://h/%s\"}", url);
		obj = cJSON_Parse(json);
		CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
		CHECK_STR(sb.toolbox_url, "");
		sp_sandbox_clear(&sb);
		cJSON_Delete(obj);
	}
	/* 63 bytes fit */
	obj = cJSON_Parse("{\"id\":\"012345678901234567890123456789012345678901234567890123456789012\","
			  "\"name\":\"n\",\"daemonVersion\":\"v0.150.0\"}");
	CHECK_INT(dt_sandbox_from_json(obj, &sb), 0);
	CHECK_INT(strlen(sb.id), 63);
	CHECK(sb.name_exact);
	CHECK_STR(sb.daemon_version, "v0.150.0");
	sp_sandbox_clear(&sb);
	cJSON_Delete(obj);
}

UNIT_TEST(nul_escapes_marked)
{
	char a[] = "{\"name\":\"x\\u0000y\",\"k\\u0000\":1}";
	char b[] = "{\"name\":\"x\\\\u0000y\"}";      /* an escaped backslash, then text */
	char c[] = "{\"name\":\"\\\"\\u0000\"}";      /* \" then the escape */
	char d[] = "\"\\u000";                        /* cut short: untouched */
	cJSON *obj;
	const cJSON *name;

	dt_json_mark_nul_escapes(a, strlen(a));
	CHECK_STR(a, "{\"name\":\"x\\u0001y\",\"k\\u0001\":1}");
	obj = cJSON_Parse(a);
	name = cJSON_GetObjectItemCaseSensitive(obj, "name");
	CHECK(cJSON_IsString(name) && strlen(name->valuestring) == 3);
	cJSON_Delete(obj);
	dt_json_mark_nul_escapes(b, strlen(b));
	CHECK_STR(b, "{\"name\":\"x\\\\u0000y\"}");
	dt_json_mark_nul_escapes(c, strlen(c));
	CHECK_STR(c, "{\"name\":\"\\\"\\u0001\"}");
	dt_json_mark_nul_escapes(d, strlen(d));
	CHECK_STR(d, "\"\\u000");
}

UNIT_TEST(daemon_version_shell)
{
	CHECK(dt_daemon_runs_shell(NULL));
	CHECK(dt_daemon_runs_shell(""));
	CHECK(dt_daemon_runs_shell("v0.156.0"));
	CHECK(dt_daemon_runs_shell("0.156.0"));
	CHECK(dt_daemon_runs_shell("v0.190.0-rc1"));
	CHECK(dt_daemon_runs_shell("v1.0.0"));
	CHECK(dt_daemon_runs_shell("dev"));
	CHECK(dt_daemon_runs_shell("v0"));
	CHECK(!dt_daemon_runs_shell("v0.155.9"));
	CHECK(!dt_daemon_runs_shell("0.150.0"));
	CHECK(!dt_daemon_runs_shell("V0.99.1"));
	CHECK(!dt_daemon_runs_shell("v0.9"));
}

/* ---- CreateSandbox body ---- */

static cJSON *create_body(const struct sp_create_params *p, const char *def_target)
{
	char *s = dt_create_body_json(p, def_target);
	cJSON *obj;

	CHECK(s != NULL);
	if (!s)
		return NULL;
	obj = cJSON_Parse(s);
	CHECK(obj != NULL);
	free(s);
	return obj;
}

static const char *get_str(const cJSON *o, const char *k)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

static double get_num(const cJSON *o, const char *k)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(it) ? it->valuedouble : -12345;
}

static bool has(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k) != NULL;
}

UNIT_TEST(create_minimal)
{
	struct sp_create_params p;
	char *s;

	sp_create_params_init(&p);
	CHECK_INT(p.cpu, -1);
	CHECK_INT(p.autostop, LONG_MIN);
	s = dt_create_body_json(&p, NULL);
	/* As the SDK: env {} and the language label, nothing else. */
	CHECK_STR(s, "{\"env\":{},\"labels\":{\"code-toolbox-language\":\"python\"}}");
	free(s);
}

UNIT_TEST(create_snapshot_and_name)
{
	struct sp_create_params p;
	cJSON *o;

	sp_create_params_init(&p);
	p.name = "dev box";
	p.snapshot = "daytonaio/sandbox:0.5.0-slim";
	p.user = "root";
	o = create_body(&p, NULL);
	CHECK_STR(get_str(o, "name"), "dev box");
	CHECK_STR(get_str(o, "snapshot"), "daytonaio/sandbox:0.5.0-slim");
	CHECK_STR(get_str(o, "user"), "root");
	CHECK(!has(o, "buildInfo"));
	CHECK(!has(o, "cpu"));
	CHECK(!has(o, "target"));
	CHECK(!has(o, "public"));
	CHECK(!has(o, "autoDeleteInterval"));
	CHECK(!has(o, "volumes"));
	cJSON_Delete(o);
}

UNIT_TEST(create_image_buildinfo_and_resources)
{
	struct sp_create_params p;
	const cJSON *bi;
	cJSON *o;

	sp_create_params_init(&p);
	p.image = "python:3.12-slim";
	p.cpu = 2;
	p.memory = 4;
	p.disk = 10;
	p.gpu = 0;
	o = create_body(&p, NULL);
	bi = cJSON_GetObjectItemCaseSensitive(o, "buildInfo");
	CHECK(cJSON_IsObject(bi));
	CHECK_STR(get_str(bi, "dockerfileContent"), "FROM python:3.12-slim\n");
	CHECK(!has(o, "snapshot"));
	CHECK_INT(get_num(o, "cpu"), 2);
	CHECK_INT(get_num(o, "memory"), 4);
	CHECK_INT(get_num(o, "disk"), 10);
	CHECK_INT(get_num(o, "gpu"), 0);
	cJSON_Delete(o);
}

UNIT_TEST(create_env_labels_language)
{
	struct sp_kv env[] = { { "FOO", "1" }, { "BAR", "x y\"z" }, { "FOO", "2" } };
	struct sp_kv labels[] = { { "team", "infra" }, { "code-toolbox-language", "go" } };
	struct sp_create_params p;
	const cJSON *e, *l;
	cJSON *o;

	sp_create_params_init(&p);
	p.env = env;
	p.n_env = 3;
	p.labels = labels;
	p.n_labels = 1;
	o = create_body(&p, NULL);
	e = cJSON_GetObjectItemCaseSensitive(o, "env");
	l = cJSON_GetObjectItemCaseSensitive(o, "labels");
	CHECK_STR(get_str(e, "FOO"), "2");         /* the last value wins */
	CHECK_STR(get_str(e, "BAR"), "x y\"z");
	CHECK_INT(cJSON_GetArraySize(e), 2);
	CHECK_STR(get_str(l, "team"), "infra");
	CHECK_STR(get_str(l, "code-toolbox-language"), "python");
	CHECK_INT(cJSON_GetArraySize(l), 2);
	cJSON_Delete(o);

	/* A language label given by the user is kept ... */
	p.n_labels = 2;
	o = create_body(&p, NULL);
	CHECK_STR(get_str(cJSON_GetObjectItemCaseSensitive(o, "labels"), "code-toolbox-language"), "go");
	cJSON_Delete(o);
	/* ... and language= overrides it. */
	p.language = "typescript";
	o = create_body(&p, NULL);
	l = cJSON_GetObjectItemCaseSensitive(o, "labels");
	CHECK_STR(get_str(l, "code-toolbox-language"), "typescript");
	CHECK_INT(cJSON_GetArraySize(l), 2);
	cJSON_Delete(o);
}

UNIT_TEST(create_target)
{
	struct sp_create_params p;
	cJSON *o;

	sp_create_params_init(&p);
	o = create_body(&p, "us");
	CHECK_STR(get_str(o, "target"), "us");
	cJSON_Delete(o);
	p.target = "eu";
	o = create_body(&p, "us");
	CHECK_STR(get_str(o, "target"), "eu");
	cJSON_Delete(o);
	p.target = "";
	o = create_body(&p, NULL);
	CHECK(!has(o, "target"));
	cJSON_Delete(o);
}

UNIT_TEST(create_intervals_ephemeral_public)
{
	struct sp_create_params p;
	cJSON *o;

	sp_create_params_init(&p);
	p.autostop = 0;
	p.autoarchive = 60;
	p.autodelete = -1;
	p.is_public = true;
	o = create_body(&p, NULL);
	CHECK_INT(get_num(o, "autoStopInterval"), 0);
	CHECK_INT(get_num(o, "autoArchiveInterval"), 60);
	CHECK_INT(get_num(o, "autoDeleteInterval"), -1);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "public")));
	cJSON_Delete(o);

	/* ephemeral is autoDeleteInterval 0, whatever autodelete says. */
	p.ephemeral = true;
	p.autodelete = 30;
	o = create_body(&p, NULL);
	CHECK_INT(get_num(o, "autoDeleteInterval"), 0);
	cJSON_Delete(o);
	sp_create_params_init(&p);
	p.ephemeral = true;
	o = create_body(&p, NULL);
	CHECK_INT(get_num(o, "autoDeleteInterval"), 0);
	CHECK(!has(o, "autoStopInterval"));
	cJSON_Delete(o);
}

UNIT_TEST(create_volumes)
{
	struct sp_kv vols[] = { { "vol-1", "/data" }, { "cache", "/home/daytona/.cache" } };
	struct sp_create_params p;
	const cJSON *arr, *v;
	cJSON *o;

	sp_create_params_init(&p);
	p.volumes = vols;
	p.n_volumes = 2;
	o = create_body(&p, NULL);
	arr = cJSON_GetObjectItemCaseSensitive(o, "volumes");
	CHECK(cJSON_IsArray(arr));
	CHECK_INT(cJSON_GetArraySize(arr), 2);
	v = cJSON_GetArrayItem(arr, 0);
	CHECK_STR(get_str(v, "volumeId"), "vol-1");
	CHECK_STR(get_str(v, "mountPath"), "/data");
	CHECK_INT(cJSON_GetArraySize(v), 2);
	v = cJSON_GetArrayItem(arr, 1);
	CHECK_STR(get_str(v, "volumeId"), "cache");
	CHECK_STR(get_str(v, "mountPath"), "/home/daytona/.cache");
	cJSON_Delete(o);
}

/* ---- status to errno ---- */

UNIT_TEST(errno_control_plane)
{
	CHECK_INT(dt_errno_for_status(200, false, NULL), 0);
	CHECK_INT(dt_errno_for_status(201, false, NULL), 0);
	CHECK_INT(dt_errno_for_status(204, false, ""), 0);
	/* lifecycle calls in the wrong state: a state conflict */
	CHECK_INT(dt_errno_for_status(400, false, "{\"message\":\"Sandbox is not stopped\"}"), -EBUSY);
	CHECK_INT(dt_errno_for_status(400, false, "{\"message\":\"Sandbox is not in valid state\"}"), -EBUSY);
	CHECK_INT(dt_errno_for_status(400, false,
				      "{\"message\":\"Sandbox is not in a stoppable state\"}"), -EBUSY);
	CHECK_INT(dt_errno_for_status(400, false,
				      "{\"message\":\"Sandbox must be in started state to create a snapshot\"}"),
		  -EBUSY);
	CHECK_INT(dt_errno_for_status(400, false,
				      "{\"message\":\"Sandbox must be in stopped state to resize\"}"), -EBUSY);
	CHECK_INT(dt_errno_for_status(400, false, "{\"message\":\"cpu must be a number\"}"), -EINVAL);
	CHECK_INT(dt_errno_for_status(400, false, "{\"message\":\"disk must be in GB\"}"), -EINVAL);
	CHECK_INT(dt_errno_for_status(401, false, NULL), -EACCES);
	CHECK_INT(dt_errno_for_status(403, false, NULL), -EACCES);
	CHECK_INT(dt_errno_for_status(404, false, NULL), -ENOENT);
	CHECK_INT(dt_errno_for_status(408, false, NULL), -ETIMEDOUT);
	CHECK_INT(dt_errno_for_status(409, false, "{\"message\":\"Sandbox state change in progress\"}"), -EBUSY);
	CHECK_INT(dt_errno_for_status(409, false, "{\"message\":\"Sandbox with name dev already exists\"}"),
		  -EEXIST);
	CHECK_INT(dt_errno_for_status(409, false, NULL), -EBUSY);
	CHECK_INT(dt_errno_for_status(409, false, "not json"), -EBUSY);
	CHECK_INT(dt_errno_for_status(422, false, NULL), -EOPNOTSUPP);
	CHECK_INT(dt_errno_for_status(429, false, NULL), -EAGAIN);
	CHECK_INT(dt_errno_for_status(500, false, NULL), -EIO);
	CHECK_INT(dt_errno_for_status(503, false, NULL), -EIO);
	CHECK_INT(dt_errno_for_status(418, false, NULL), -EIO);
}

#define RUNNER_NO_CONTAINER \
	"{\"statusCode\":404,\"code\":\"NOT_FOUND\",\"message\":\"not found: sandbox container not found: " \
	"Error response from daemon: No such container: 0a1b\"}"
#define PROXY_THROTTLED \
	"{\"statusCode\":401,\"code\":\"UNAUTHORIZED\",\"message\":\"authentication failed: Bearer token " \
	"validation error: ThrottlerException: Too Many Requests\"}"

UNIT_TEST(toolbox_refusals)
{
	CHECK_INT(dt_toolbox_refusal(404, RUNNER_NO_CONTAINER), DT_REFUSED_NO_CONTAINER);
	CHECK_INT(dt_toolbox_refusal(401, PROXY_THROTTLED), DT_REFUSED_THROTTLED);
	CHECK_INT(dt_toolbox_refusal(401, "{\"message\":\"Too Many Requests\"}"), DT_REFUSED_THROTTLED);
	/* the daemon's own answers: empty bodies, or FILE_* codes */
	CHECK_INT(dt_toolbox_refusal(404, ""), DT_REFUSED_NOT);
	CHECK_INT(dt_toolbox_refusal(404, NULL), DT_REFUSED_NOT);
	CHECK_INT(dt_toolbox_refusal(404, "{\"code\":\"FILE_NOT_FOUND\",\"message\":\"file not found\"}"),
		  DT_REFUSED_NOT);
	CHECK_INT(dt_toolbox_refusal(404, "{\"message\":\"not found: session not found\"}"), DT_REFUSED_NOT);
	CHECK_INT(dt_toolbox_refusal(401, "{\"message\":\"Bearer token is invalid\"}"), DT_REFUSED_NOT);
	CHECK_INT(dt_toolbox_refusal(500, RUNNER_NO_CONTAINER), DT_REFUSED_NOT);
}

UNIT_TEST(errno_toolbox)
{
	CHECK_INT(dt_errno_for_status(400, true, ""), -EINVAL);   /* fs errors: empty body */
	CHECK_INT(dt_errno_for_status(400, true, NULL), -EINVAL);
	CHECK_INT(dt_errno_for_status(400, true,
		  "{\"statusCode\":400,\"message\":\"bad request: no IP address found. Is the Sandbox started?\","
		  "\"code\":\"BAD_REQUEST\"}"), -EHOSTDOWN);
	CHECK_INT(dt_errno_for_status(400, true,
		  "{\"statusCode\":400,\"message\":\"bad request: failed to get runner info: x\"}"), -EHOSTDOWN);
	CHECK_INT(dt_errno_for_status(400, true, "{\"message\":\"bad request: invalid request body\"}"), -EINVAL);
	/* The sandbox-not-started check is the toolbox's: not the control plane's. */
	CHECK_INT(dt_errno_for_status(400, false, "{\"message\":\"Is the Sandbox started?\"}"), -EINVAL);
	CHECK_INT(dt_errno_for_status(401, true, NULL), -EACCES);
	CHECK_INT(dt_errno_for_status(403, true, ""), -EACCES);
	CHECK_INT(dt_errno_for_status(404, true, ""), -ENOENT);
	/* newer daemons: a JSON body with a FILE_* code is still "no such file" */
	CHECK_INT(dt_errno_for_status(404, true,
		  "{\"code\":\"FILE_NOT_FOUND\",\"message\":\"file not found: /x\"}"), -ENOENT);
	/* the runner, with no container for the sandbox: not a file that is missing */
	CHECK_INT(dt_errno_for_status(404, true, RUNNER_NO_CONTAINER), -EHOSTDOWN);
	CHECK_INT(dt_errno_for_status(404, false, RUNNER_NO_CONTAINER), -ENOENT);
	/* the proxy's token check, throttled by the API */
	CHECK_INT(dt_errno_for_status(401, true, PROXY_THROTTLED), -EAGAIN);
	CHECK_INT(dt_errno_for_status(401, true, "{\"message\":\"authentication failed: Bearer token is invalid\"}"),
		  -EACCES);
	CHECK_INT(dt_errno_for_status(408, true, NULL), -ETIMEDOUT);
	CHECK_INT(dt_errno_for_status(409, true, ""), -EEXIST);
	CHECK_INT(dt_errno_for_status(410, true, NULL), -EPIPE);
	CHECK_INT(dt_errno_for_status(429, true, NULL), -EAGAIN);
	CHECK_INT(dt_errno_for_status(500, true, NULL), -EIO);
	CHECK_INT(dt_errno_for_status(502, true, ""), -EIO);
}

UNIT_TEST(error_transient)
{
	struct sp_error e = { 0 };

	sp_error_set(&e, -EIO, 500, "x");
	CHECK(sp_error_transient(&e));
	sp_error_set(&e, -EIO, 502, "x");
	CHECK(sp_error_transient(&e));
	sp_error_set(&e, -EAGAIN, 429, "x");
	CHECK(sp_error_transient(&e));
	sp_error_set(&e, -ECONNRESET, 200, "answer cut");
	CHECK(sp_error_transient(&e));
	sp_error_set(&e, -ECONNREFUSED, 0, "x");
	CHECK(sp_error_transient(&e));
	sp_error_set(&e, -ETIMEDOUT, 0, "no answer in time");
	CHECK(sp_error_transient(&e));
	/* answers of the sandbox or the toolbox itself */
	sp_error_set(&e, -ETIMEDOUT, 408, "the command ran out of its time");
	CHECK(!sp_error_transient(&e));
	sp_error_set(&e, -EINVAL, 400, "x");
	CHECK(!sp_error_transient(&e));
	sp_error_set(&e, -EHOSTDOWN, 400, "Is the Sandbox started?");
	CHECK(!sp_error_transient(&e));
	sp_error_set(&e, -EACCES, 401, "x");
	CHECK(!sp_error_transient(&e));
	sp_error_set(&e, -ENOMEM, 0, "x");
	CHECK(!sp_error_transient(&e));
	CHECK(!sp_error_transient(NULL));
}

UNIT_TEST(error_set)
{
	struct sp_error e;

	CHECK_INT(sp_error_set(&e, -ENOENT, 404, "sandbox %s not found", "x"), -ENOENT);
	CHECK_INT(e.err, ENOENT);
	CHECK_INT(e.http_status, 404);
	CHECK_STR(e.message, "sandbox x not found");
	CHECK_INT(sp_error_set(NULL, -EIO, 0, "ignored"), -EIO);
}

UNIT_TEST(upload_path_trimmed)
{
	/* What Go's strings.TrimSpace would take off either end (D2). */
	static const char *const trimmed[] = {
		"/d/a ", "/d/a\t", "/d/a\n", "/d/a\r", "/d/a\v", "/d/a\f", "/d/a\xc2\x85", "/d/a\xc2\xa0",
		"/d/a\xe3\x80\x80", "/d/a\xe2\x80\xa8", "/d/a\xe2\x80\x8a", "/d/a\xe1\x9a\x80", " /d/a",
		"\xc2\xa0/d/a", "/d/a\x1f",
	};
	static const char *const kept[] = {
		"/d/a", "/d/ a", "/d /a", "/d/a\\", "/d/a\xff", "/d/a\xa0", "/d/\xa0", "/d/a\xe2\x80\x8b",
		"/d/a\xc3\xa9", "/d/a\xc2", "", "/d/a\x7f",
	};

	for (size_t i = 0; i < sizeof(trimmed) / sizeof(trimmed[0]); i++)
		CHECK(dt_upload_path_trimmed(trimmed[i]));
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		CHECK(!dt_upload_path_trimmed(kept[i]));
}

UNIT_TEST(upload_reply_check)
{
	char why[128];
	const char *ok = "{\"files\":[{\"path\":\"/d/a\",\"bytes\":3}]}";
	const char *bad_utf8 = "{\"files\":[{\"path\":\"/d/\xef\xbf\xbd\xef\xbf\xbdz\",\"bytes\":3}]}";

	CHECK_INT(dt_upload_reply_check(ok, strlen(ok), "/d/a", 3, why, sizeof(why)), 0);
	CHECK_INT(dt_upload_reply_check(ok, strlen(ok), "/d/a ", 3, why, sizeof(why)), -EIO);
	CHECK_INT(dt_upload_reply_check(ok, strlen(ok), "/d/a", 4, why, sizeof(why)), -EIO);
	CHECK_INT(dt_upload_reply_check(ok, strlen(ok), "/d/ab", 3, why, sizeof(why)), -EIO);
	/* Each byte that is not UTF-8 comes back as U+FFFD. */
	CHECK_INT(dt_upload_reply_check(bad_utf8, strlen(bad_utf8), "/d/\xff\xfez", 3, why, sizeof(why)), 0);
	CHECK_INT(dt_upload_reply_check(bad_utf8, strlen(bad_utf8), "/d/\xffz", 3, why, sizeof(why)), -EIO);
	CHECK_INT(dt_upload_reply_check(bad_utf8, strlen(bad_utf8), "/d/\xef\xbf\xbd\xef\xbf\xbdz", 3, why,
					sizeof(why)), 0);
	/* No file in a 2xx: nothing stored (D3). */
	CHECK_INT(dt_upload_reply_check("{\"files\":null}", 14, "/d/a", 3, why, sizeof(why)), -EIO);
	CHECK_INT(dt_upload_reply_check("{\"files\":[]}", 12, "/d/a", 3, why, sizeof(why)), -EIO);
	CHECK_INT(dt_upload_reply_check("", 0, "/d/a", 3, why, sizeof(why)), -EIO);
	/* A reply without path or bytes is taken as it is. */
	CHECK_INT(dt_upload_reply_check("{\"files\":[{}]}", 14, "/d/a", 3, why, sizeof(why)), 0);
}

/* A bulk-upload of several files: each item's fate from the reply, by its
 * path; a file the reply does not name did not land. */
UNIT_TEST(upload_many_reply)
{
	struct sp_upload_item it[3];
	const char *ok = "{\"files\":[{\"path\":\"/a/x\",\"bytes\":3},{\"path\":\"/a/y\",\"bytes\":0}]}";
	const char *part = "{\"errors\":[\"/a/z: create: open /a/z: permission denied\"],"
			   "\"files\":[{\"path\":\"/a/x\",\"bytes\":2}]}";

	memset(it, 0, sizeof(it));
	it[0].path = "/a/x";
	it[0].len = 3;
	it[1].path = "/a/y";
	it[1].len = 0;
	it[2].path = "/a/z";
	it[2].len = 1;
	CHECK_INT(dt_upload_many_reply(ok, strlen(ok), it, 3), 0);
	CHECK_INT(it[0].rc, 0);
	CHECK_INT(it[1].rc, 0);
	CHECK_INT(it[2].rc, -EIO);   /* not in the reply */
	CHECK_INT(dt_upload_many_reply(part, strlen(part), it, 3), 0);
	CHECK_INT(it[0].rc, -EIO);   /* stored 2 bytes of 3 */
	CHECK(strstr(it[0].msg, "2 bytes of 3") != NULL);
	CHECK_INT(it[1].rc, -EIO);
	CHECK_INT(it[2].rc, -EACCES);
	CHECK(strstr(it[2].msg, "permission denied") != NULL);
	CHECK_INT(dt_upload_many_reply("{\"files\":null}", 14, it, 1), 0);
	CHECK_INT(it[0].rc, -EIO);
	CHECK_INT(dt_upload_many_reply("{\"message\":\"boom\"}", 18, it, 1), -EIO);
	CHECK_INT(dt_upload_many_reply("oops", 4, it, 1), -EIO);
	CHECK_INT(dt_upload_many_reply(NULL, 0, it, 1), -EIO);
}

/* Two paths whose invalid UTF-8 both come back as U+FFFD: the one entry of
 * files[] is not taken as the landing of both, nor of either. */
static void upload_many_reply_ambiguous_echo(void)
{
	const char *one = "{\"files\":[{\"path\":\"/d/a\xef\xbf\xbd\",\"bytes\":1}],"
			  "\"errors\":[\"/d/a\xef\xbf\xbd: permission denied\"]}";
	const char *dup = "{\"files\":[{\"path\":\"/d/b\",\"bytes\":1}],\"errors\":[]}";
	struct sp_upload_item it[3];

	memset(it, 0, sizeof(it));
	it[0].path = "/d/a\xff";
	it[0].len = 1;
	it[1].path = "/d/a\xfe";
	it[1].len = 1;
	it[2].path = "/d/c";
	it[2].len = 1;
	CHECK_INT(dt_upload_many_reply(one, strlen(one), it, 3), 0);
	CHECK(it[0].rc < 0);
	CHECK(it[1].rc < 0);
	CHECK_INT(it[2].rc, -EIO);
	/* one entry, one file: a second item of the same path does not take it */
	it[0].path = "/d/b";
	it[1].path = "/d/b";
	CHECK_INT(dt_upload_many_reply(dup, strlen(dup), it, 2), 0);
	CHECK(it[0].rc < 0);   /* ambiguous: both items name it */
	CHECK_INT(it[1].rc, -EIO);
}

UNIT_MAIN("daytona_json",
	  UNIT_CASE(upload_path_trimmed),
	  UNIT_CASE(upload_reply_check),
	  UNIT_CASE(upload_many_reply_ambiguous_echo),
	  UNIT_CASE(mode_regular_and_dir),
	  UNIT_CASE(mode_special_bits),
	  UNIT_CASE(mode_types),
	  UNIT_CASE(mode_malformed),
	  UNIT_CASE(time_utc),
	  UNIT_CASE(time_fraction),
	  UNIT_CASE(time_offsets),
	  UNIT_CASE(time_malformed),
	  UNIT_CASE(fileinfo_full),
	  UNIT_CASE(fileinfo_dir_sticky),
	  UNIT_CASE(fileinfo_modtime_fallback),
	  UNIT_CASE(fileinfo_missing_fields),
	  UNIT_CASE(fileinfo_bad_and_odd),
	  UNIT_CASE(fileinfo_big_size),
	  UNIT_CASE(sandbox_parse),
	  UNIT_CASE(sandbox_volumes),
	  UNIT_CASE(sandbox_malformed),
	  UNIT_CASE(sandbox_id_refused),
	  UNIT_CASE(nul_escapes_marked),
	  UNIT_CASE(daemon_version_shell),
	  UNIT_CASE(create_minimal),
	  UNIT_CASE(create_snapshot_and_name),
	  UNIT_CASE(create_image_buildinfo_and_resources),
	  UNIT_CASE(create_env_labels_language),
	  UNIT_CASE(create_target),
	  UNIT_CASE(create_intervals_ephemeral_public),
	  UNIT_CASE(create_volumes),
	  UNIT_CASE(errno_control_plane),
	  UNIT_CASE(toolbox_refusals),
	  UNIT_CASE(error_transient),
	  UNIT_CASE(errno_toolbox),
	  UNIT_CASE(error_set),
	  UNIT_CASE(upload_many_reply))
