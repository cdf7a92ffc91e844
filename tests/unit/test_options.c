/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of options.c: -o options, the config file, and where credentials come from. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "options.h"
#include "unit.h"

static const char *fake_env[16][2];

static const char *fake_getenv(const char *name)
{
	for (int i = 0; i < 16 && fake_env[i][0]; i++)
		if (!strcmp(fake_env[i][0], name))
			return fake_env[i][1];
	return NULL;
}

static void set_env(int i, const char *k, const char *v)
{
	fake_env[i][0] = k;
	fake_env[i][1] = v;
	fake_env[i + 1][0] = NULL;
}

static char tmpdir[64];

static const char *write_file(const char *name, const char *content, mode_t mode)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	fputs(content, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

/* -o activity (none, changes, all; keepalive = all) and -o exec_timeout. */
UNIT_TEST(test_activity_and_exec_timeout)
{
	static const struct { const char *opts[2]; int rc; const char *activity; bool keepalive; } cases[] = {
		{ { NULL, NULL }, 0, "changes", false },
		{ { "keepalive", NULL }, 0, "all", true },
		{ { "activity=none", NULL }, 0, "none", false },
		{ { "activity=all", NULL }, 0, "all", true },
		{ { "keepalive", "activity=changes" }, 0, "changes", false },
		{ { "activity=sometimes", NULL }, -EINVAL, NULL, false },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dfs_options o;

		options_init(&o);
		set_env(0, "HOME", tmpdir);
		set_env(1, "DAYTONA_API_KEY", "k");
		for (int j = 0; j < 2 && cases[i].opts[j]; j++)
			CHECK_INT(options_apply(&o, cases[i].opts[j], err, sizeof(err)), 1);
		CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), cases[i].rc);
		if (cases[i].rc == 0) {
			CHECK_STR(o.activity, cases[i].activity);
			CHECK(o.keepalive == cases[i].keepalive);
		} else {
			CHECK(strstr(err, "activity must be none, changes or all") != NULL);
		}
		options_free(&o);
	}
	{
		struct dfs_options o;

		options_init(&o);
		CHECK_INT(o.exec_timeout_s, 0);
		CHECK_INT(options_apply(&o, "exec_timeout=90", err, sizeof(err)), 1);
		CHECK_INT(o.exec_timeout_s, 90);
		CHECK_INT(options_apply(&o, "exec_timeout=-1", err, sizeof(err)), -EINVAL);
		CHECK_INT(options_apply(&o, "exec_timeout=x", err, sizeof(err)), -EINVAL);
		options_free(&o);
	}
}

UNIT_TEST(test_defaults_and_apply)
{
	struct dfs_options o;
	char err[256];

	options_init(&o);
	CHECK(o.attr_timeout == 5);
	CHECK_INT(o.poll_max_ms, 1000);
	CHECK_INT(options_apply(&o, "attr_timeout=0.5", err, sizeof(err)), 1);
	CHECK(o.attr_timeout == 0.5);
	CHECK_INT(options_apply(&o, "connections=4", err, sizeof(err)), 1);
	CHECK_INT(o.connections, 4);
	CHECK_INT(options_apply(&o, "keepalive", err, sizeof(err)), 1);
	CHECK(o.keepalive);
	CHECK_INT(options_apply(&o, "autostart=0", err, sizeof(err)), 1);
	CHECK(!o.autostart);
	CHECK_INT(options_apply(&o, "cache_dir=/x/y", err, sizeof(err)), 1);
	CHECK_STR(o.cache_dir, "/x/y");
	/* FUSE's own options are not ours. */
	CHECK_INT(options_apply(&o, "allow_other", err, sizeof(err)), 0);
	CHECK_INT(options_apply(&o, "max_read=4096", err, sizeof(err)), 0);
	/* Bad values are errors with a message naming the option. */
	CHECK_INT(options_apply(&o, "timeout=abc", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "timeout") != NULL);
	CHECK_INT(options_apply(&o, "connections=0", err, sizeof(err)), -EINVAL);
	CHECK_INT(options_apply(&o, "attr_timeout=-1", err, sizeof(err)), -EINVAL);
	CHECK_INT(options_apply(&o, "keepalive=maybe", err, sizeof(err)), -EINVAL);
	CHECK_INT(options_apply(&o, "cache_dir=", err, sizeof(err)), -EINVAL);
	/* The mount's readahead: 1 MiB unless told, 0 leaves the kernel's. */
	CHECK_INT(o.read_ahead_kb, 1024);
	CHECK_INT(options_apply(&o, "read_ahead_kb=0", err, sizeof(err)), 1);
	CHECK_INT(o.read_ahead_kb, 0);
	CHECK_INT(options_apply(&o, "read_ahead_kb=-1", err, sizeof(err)), -EINVAL);
	options_free(&o);
}

UNIT_TEST(test_env_credentials)
{
	struct dfs_options o;
	char err[256];

	options_init(&o);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_KEY", "envkey");
	set_env(2, "DAYTONA_API_URL", "http://127.0.0.1:9/api");
	set_env(3, "DAYTONA_TARGET", "eu");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.api_key, "envkey");
	CHECK_STR(o.api_url, "http://127.0.0.1:9/api");
	CHECK_STR(o.target, "eu");
	options_free(&o);
}

UNIT_TEST(test_missing_credentials_message)
{
	struct dfs_options o;
	char err[256];

	options_init(&o);
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "DAYTONA_API_KEY") != NULL);
	CHECK(strstr(err, "api_key_file") != NULL);
	options_free(&o);

	options_init(&o);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_JWT_TOKEN", "jwt");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "DAYTONA_ORGANIZATION_ID") != NULL);
	options_free(&o);
}

UNIT_TEST(test_default_url_and_bad_url)
{
	struct dfs_options o;
	char err[256];

	options_init(&o);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_KEY", "k");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.api_url, DFS_DEFAULT_API_URL);
	options_free(&o);

	options_init(&o);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_KEY", "k");
	set_env(2, "DAYTONA_API_URL", "ftp://x");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "http://") != NULL);
	options_free(&o);
}

UNIT_TEST(test_key_file_wins_over_env)
{
	struct dfs_options o;
	char err[256];
	const char *kf = write_file("key", "  filekey  \n", 0600);

	options_init(&o);
	o.api_key_file = strdup(kf);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_KEY", "envkey");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.api_key, "filekey");
	options_free(&o);

	options_init(&o);
	o.api_key_file = strdup("/nonexistent/key");
	set_env(0, "HOME", tmpdir);
	CHECK(options_resolve(&o, fake_getenv, err, sizeof(err)) < 0);
	CHECK(strstr(err, "/nonexistent/key") != NULL);
	options_free(&o);

	kf = write_file("empty", "\n", 0600);
	options_init(&o);
	o.api_key_file = strdup(kf);
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "empty") != NULL);
	options_free(&o);
}

UNIT_TEST(test_config_file)
{
	struct dfs_options o;
	char err[256];
	const char *cf = write_file("config",
		"# daytonafs\n\napi_key = cfgkey\napi_url=http://h/api\n  attr_timeout = 7 \nautostart\n", 0600);

	options_init(&o);
	o.config_file = strdup(cf);
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.api_key, "cfgkey");
	CHECK_STR(o.api_url, "http://h/api");
	CHECK(o.attr_timeout == 7);
	CHECK(o.autostart);
	options_free(&o);

	/* The environment wins over the config file for the key. */
	options_init(&o);
	o.config_file = strdup(cf);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_KEY", "envkey");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.api_key, "envkey");
	options_free(&o);

	/* Errors name the file and the line. */
	cf = write_file("badconfig", "api_key = k\nfrobnicate = 3\n", 0600);
	options_init(&o);
	o.config_file = strdup(cf);
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, ":2:") != NULL);
	CHECK(strstr(err, "frobnicate") != NULL);
	options_free(&o);

	cf = write_file("badvalue", "api_key = k\ntimeout = never\n", 0600);
	options_init(&o);
	o.config_file = strdup(cf);
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "timeout") != NULL && strstr(err, ":2:") != NULL);
	options_free(&o);
}

UNIT_TEST(test_command_line_wins_over_config)
{
	struct dfs_options o;
	char err[256];
	const char *cf = write_file("prec", "api_key = k\napi_url = http://cfg/api\nattr_timeout = 7\n"
				    "dir_timeout = 9\n", 0600);

	options_init(&o);
	CHECK_INT(options_apply(&o, "attr_timeout=2", err, sizeof(err)), 1);
	o.config_file = strdup(cf);
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_URL", "http://env/api");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK(o.attr_timeout == 2);          /* -o wins */
	CHECK(o.dir_timeout == 9);           /* the file fills the rest */
	CHECK_STR(o.api_url, "http://env/api");   /* the environment wins */
	options_free(&o);
}

UNIT_TEST(test_xdg_config_found)
{
	struct dfs_options o;
	char err[256], dir[128];

	snprintf(dir, sizeof(dir), "%s/xdg/daytonafs", tmpdir);
	mkdir(dir, 0700);
	CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
	write_file("xdg/daytonafs/config", "api_key = xdgkey\n", 0600);
	snprintf(dir, sizeof(dir), "%s/xdg", tmpdir);
	options_init(&o);
	set_env(0, "HOME", tmpdir);
	set_env(1, "XDG_CONFIG_HOME", dir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.api_key, "xdgkey");
	options_free(&o);
}

UNIT_TEST(test_poll_bounds)
{
	struct dfs_options o;
	char err[256];

	options_init(&o);
	set_env(0, "DAYTONA_API_KEY", "k");
	CHECK_INT(options_apply(&o, "poll_min=500", err, sizeof(err)), 1);
	CHECK_INT(options_apply(&o, "poll_max=100", err, sizeof(err)), 1);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "poll_min") != NULL);
	options_free(&o);
}

UNIT_TEST(test_vercel_credentials)
{
	struct dfs_options o;
	char err[512];

	/* the token with team and project; DAYTONA_* are not Vercel's */
	options_init(&o);
	CHECK_INT(options_apply(&o, "provider=vercel", err, sizeof(err)), 1);
	set_env(0, "HOME", tmpdir);
	set_env(1, "VERCEL_TOKEN", "vtok");
	set_env(2, "VERCEL_TEAM_ID", "team_1");
	set_env(3, "VERCEL_PROJECT_ID", "prj_1");
	set_env(4, "DAYTONA_API_URL", "http://127.0.0.1:9/api");
	set_env(5, "DAYTONA_API_KEY", "dkey");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.vercel_token, "vtok");
	CHECK_STR(o.team_id, "team_1");
	CHECK_STR(o.project_id, "prj_1");
	CHECK_STR(o.api_url, DFS_DEFAULT_VERCEL_URL);
	CHECK(o.api_key == NULL);
	CHECK_INT(o.rate_limit, 1000);
	options_free(&o);

	/* the OIDC token first, as the SDK; it needs no team or project */
	options_init(&o);
	options_apply(&o, "provider=vercel", err, sizeof(err));
	set_env(0, "HOME", tmpdir);
	set_env(1, "VERCEL_OIDC_TOKEN", "a.b.c");
	set_env(2, "VERCEL_TOKEN", "vtok");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.vercel_oidc, "a.b.c");
	CHECK(o.vercel_token == NULL);
	options_free(&o);

	/* a token without its team and project */
	options_init(&o);
	options_apply(&o, "provider=vercel", err, sizeof(err));
	set_env(0, "HOME", tmpdir);
	set_env(1, "VERCEL_TOKEN", "vtok");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "VERCEL_TEAM_ID") != NULL);
	options_free(&o);

	/* none */
	options_init(&o);
	options_apply(&o, "provider=vercel", err, sizeof(err));
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "VERCEL_OIDC_TOKEN") != NULL);
	options_free(&o);

	/* the key file is the token; -o rate_limit and api_url win */
	options_init(&o);
	options_apply(&o, "provider=vercel", err, sizeof(err));
	options_apply(&o, "rate_limit=50", err, sizeof(err));
	options_apply(&o, "api_url=http://127.0.0.1:9/api", err, sizeof(err));
	options_apply(&o, "team_id=t", err, sizeof(err));
	options_apply(&o, "project_id=p", err, sizeof(err));
	{
		char opt[300];

		snprintf(opt, sizeof(opt), "api_key_file=%s", write_file("vkey", "filetok\n", 0600));
		options_apply(&o, opt, err, sizeof(err));
	}
	set_env(0, "HOME", tmpdir);
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.vercel_token, "filetok");
	CHECK_INT(o.rate_limit, 50);
	CHECK_STR(o.api_url, "http://127.0.0.1:9/api");
	options_free(&o);

	/* from the config file, which may name the provider */
	options_init(&o);
	{
		char opt[300];

		snprintf(opt, sizeof(opt), "config=%s",
			 write_file("vconf", "provider = vercel\nvercel_token = ctok\nvercel_team_id = ct\n"
				    "vercel_project_id = cp\n", 0600));
		options_apply(&o, opt, err, sizeof(err));
	}
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_URL", "http://127.0.0.1:9/api");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), 0);
	CHECK_STR(o.provider, "vercel");
	CHECK_STR(o.vercel_token, "ctok");
	CHECK_STR(o.team_id, "ct");
	CHECK_STR(o.api_url, DFS_DEFAULT_VERCEL_URL);   /* not DAYTONA_API_URL */
	options_free(&o);

	options_init(&o);
	options_apply(&o, "provider=aws", err, sizeof(err));
	set_env(0, "HOME", tmpdir);
	set_env(1, "DAYTONA_API_KEY", "k");
	CHECK_INT(options_resolve(&o, fake_getenv, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "daytona or vercel") != NULL);
	options_free(&o);
}

UNIT_TEST(test_exec_wait_ms)
{
	struct dfs_options o;
	char err[256];

	options_init(&o);
	CHECK_INT(o.exec_wait_ms, 200);
	CHECK_INT(options_apply(&o, "exec_wait_ms=0", err, sizeof(err)), 1);
	CHECK_INT(o.exec_wait_ms, 0);
	CHECK_INT(options_apply(&o, "exec_wait_ms=10000", err, sizeof(err)), 1);
	CHECK_INT(o.exec_wait_ms, 10000);
	/* the launch request's own timeout is 30 s */
	CHECK_INT(options_apply(&o, "exec_wait_ms=10001", err, sizeof(err)), -EINVAL);
	CHECK_INT(options_apply(&o, "exec_wait_ms=-1", err, sizeof(err)), -EINVAL);
	options_free(&o);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/dfs-opt-XXXXXX");
	if (!mkdtemp(tmpdir))
		abort();
	char d[128];
	snprintf(d, sizeof(d), "%s/xdg", tmpdir);
	mkdir(d, 0700);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(test_defaults_and_apply), UNIT_CASE(test_env_credentials),
		UNIT_CASE(test_missing_credentials_message), UNIT_CASE(test_default_url_and_bad_url),
		UNIT_CASE(test_key_file_wins_over_env), UNIT_CASE(test_config_file),
		UNIT_CASE(test_xdg_config_found), UNIT_CASE(test_command_line_wins_over_config), UNIT_CASE(test_poll_bounds),
		UNIT_CASE(test_activity_and_exec_timeout),
		UNIT_CASE(test_vercel_credentials),
		UNIT_CASE(test_exec_wait_ms),
	};
	int rc;

	setup();
	rc = unit_run("options", cases, sizeof(cases) / sizeof(cases[0]));
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
