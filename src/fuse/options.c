/* SPDX-License-Identifier: Apache-2.0 */
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "strbuf.h"

void options_init(struct dfs_options *o)
{
	memset(o, 0, sizeof(*o));
	o->attr_timeout = 5;
	o->dir_timeout = 5;
	o->negative_timeout = 2;
	o->read_ahead_kb = 1024;
	o->timeout_s = 60;
	o->connect_timeout_s = 10;
	o->wait_timeout_s = 120;
	o->connections = 16;
	o->retries = 4;
	o->poll_min_ms = 50;
	o->poll_max_ms = 1000;
	o->rate_limit = -1;         /* the provider's default */
	o->exec_wait_ms = 200;
	o->exec_helper = true;
}

static void set_str(char **dst, const char *v)
{
	char *copy = strdup(v);

	if (!copy)
		return;
	free(*dst);
	*dst = copy;
}

/* Zeroes a secret before freeing it, so that it does not linger in freed heap. */
static void free_secret(char **s)
{
	if (*s) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void options_free(struct dfs_options *o)
{
	free(o->api_url);
	free_secret(&o->api_key);
	free_secret(&o->jwt);
	free(o->org_id);
	free(o->target);
	free(o->api_key_file);
	free(o->config_file);
	free(o->provider);
	free_secret(&o->vercel_token);
	free_secret(&o->vercel_oidc);
	free(o->team_id);
	free(o->project_id);
	free(o->cache_dir);
	free(o->state_dir);
	free(o->activity);
	free(o->loglevel);
	memset(o, 0, sizeof(*o));
}

static int parse_double(const char *v, double min, double max, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || d < min || d > max)
		return -EINVAL;
	*out = d;
	return 0;
}

static int parse_long(const char *v, long min, long max, long *out)
{
	char *end;
	long l;

	errno = 0;
	l = strtol(v, &end, 10);
	if (errno || end == v || *end || l < min || l > max)
		return -EINVAL;
	*out = l;
	return 0;
}

enum opt_kind { OPT_STR, OPT_SECONDS, OPT_LONG, OPT_INT, OPT_FLAG };

struct opt_spec {
	const char *name;
	enum opt_kind kind;
	size_t offset;
	long min, max;
};

#define OFF(field) offsetof(struct dfs_options, field)

static const struct opt_spec specs[] = {
	{ "api_url", OPT_STR, OFF(api_url), 0, 0 },
	{ "api_key_file", OPT_STR, OFF(api_key_file), 0, 0 },
	{ "config", OPT_STR, OFF(config_file), 0, 0 },
	{ "target", OPT_STR, OFF(target), 0, 0 },
	{ "attr_timeout", OPT_SECONDS, OFF(attr_timeout), 0, 86400 },
	{ "dir_timeout", OPT_SECONDS, OFF(dir_timeout), 0, 86400 },
	{ "negative_timeout", OPT_SECONDS, OFF(negative_timeout), 0, 86400 },
	{ "writeback", OPT_SECONDS, OFF(writeback), 0, 3600 },
	{ "cache_dir", OPT_STR, OFF(cache_dir), 0, 0 },
	{ "read_ahead_kb", OPT_LONG, OFF(read_ahead_kb), 0, 1048576 },
	{ "timeout", OPT_LONG, OFF(timeout_s), 1, 86400 },
	{ "connect_timeout", OPT_LONG, OFF(connect_timeout_s), 1, 3600 },
	{ "wait_timeout", OPT_LONG, OFF(wait_timeout_s), 0, 86400 },
	{ "connections", OPT_INT, OFF(connections), 1, 256 },
	{ "retries", OPT_INT, OFF(retries), 0, 20 },
	{ "keepalive", OPT_FLAG, OFF(keepalive), 0, 0 },
	{ "autostart", OPT_FLAG, OFF(autostart), 0, 0 },
	{ "poll_min", OPT_LONG, OFF(poll_min_ms), 1, 60000 },
	{ "poll_max", OPT_LONG, OFF(poll_max_ms), 1, 600000 },
	{ "exec_wait_ms", OPT_LONG, OFF(exec_wait_ms), 0, 10000 },
	{ "exec_helper", OPT_FLAG, OFF(exec_helper), 0, 0 },
	{ "state_dir", OPT_STR, OFF(state_dir), 0, 0 },
	{ "exec_timeout", OPT_LONG, OFF(exec_timeout_s), 0, 86400 * 365L },
	{ "activity", OPT_STR, OFF(activity), 0, 0 },
	{ "loglevel", OPT_STR, OFF(loglevel), 0, 0 },
	{ "provider", OPT_STR, OFF(provider), 0, 0 },
	{ "rate_limit", OPT_INT, OFF(rate_limit), 0, 1000000 },
	{ "team_id", OPT_STR, OFF(team_id), 0, 0 },
	{ "project_id", OPT_STR, OFF(project_id), 0, 0 },
};

int options_apply(struct dfs_options *o, const char *opt, char *err, size_t errlen)
{
	const char *eq = strchr(opt, '=');
	size_t nlen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;
	char *base = (char *)o;

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		const struct opt_spec *s = &specs[i];
		long l;

		if (strlen(s->name) != nlen || strncmp(s->name, opt, nlen) != 0)
			continue;
		if (o->reading_config && (o->set_mask & (1ULL << i)))
			return 1;   /* set on the command line: the file does not override it */
		if (!o->reading_config)
			o->set_mask |= 1ULL << i;
		if (s->kind == OPT_FLAG) {
			if (val && strcmp(val, "1") && strcmp(val, "true") && strcmp(val, "0") &&
			    strcmp(val, "false"))
				goto bad;
			*(bool *)(base + s->offset) = !val || !strcmp(val, "1") || !strcmp(val, "true");
			return 1;
		}
		if (!val || !*val)
			goto bad;
		switch (s->kind) {
		case OPT_STR:
			set_str((char **)(base + s->offset), val);
			return 1;
		case OPT_SECONDS:
			if (parse_double(val, (double)s->min, (double)s->max, (double *)(base + s->offset)))
				goto bad;
			return 1;
		case OPT_LONG:
			if (parse_long(val, s->min, s->max, &l))
				goto bad;
			*(long *)(base + s->offset) = l;
			return 1;
		case OPT_INT:
			if (parse_long(val, s->min, s->max, &l))
				goto bad;
			*(int *)(base + s->offset) = (int)l;
			return 1;
		case OPT_FLAG:
			break;
		}
bad:
		if (s->kind == OPT_FLAG)
			snprintf(err, errlen, "option %s takes no value (or 0/1/true/false), got '%s'", s->name, val);
		else if (s->kind == OPT_STR)
			snprintf(err, errlen, "option %s needs a value", s->name);
		else
			snprintf(err, errlen, "option %s needs a number from %ld to %ld, got '%s'", s->name,
				 s->min, s->max, val ? val : "");
		return -EINVAL;
	}
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static void warn_if_readable_by_others(const char *path, int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && (st.st_mode & 0077))
		log_warn("%s is readable by other users (mode %04o): chmod 600 it", path,
			 (unsigned)(st.st_mode & 07777));
}

/* Reads the first line of a key file: the key. */
static int read_key_file(const char *path, char **out, char *err, size_t errlen)
{
	char line[4096];
	FILE *f = fopen(path, "re");
	char *k;

	if (!f) {
		int e = errno;
		snprintf(err, errlen, "cannot read API key file %s: %s", path, strerror(e));
		return -e;
	}
	warn_if_readable_by_others(path, fileno(f));
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	k = trim(line);
	if (!*k) {
		snprintf(err, errlen, "API key file %s is empty", path);
		explicit_bzero(line, sizeof(line));
		return -EINVAL;
	}
	set_str(out, k);
	explicit_bzero(line, sizeof(line));
	return *out ? 0 : -ENOMEM;
}

int options_read_config(struct dfs_options *o, const char *path, bool required, char *err, size_t errlen)
{
	char line[4096];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		int e = errno;
		if (!required && e == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(e));
		return -e;
	}
	warn_if_readable_by_others(path, fileno(f));
	o->reading_config = true;
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line), *eq, *key, *val;
		char opt[4200];

		lineno++;
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			key = s;
			val = NULL;
		} else {
			*eq = '\0';
			key = trim(s);
			val = trim(eq + 1);
		}
		/* Credentials are only accepted from files, never as -o options. */
		if (val && !strcmp(key, "api_key")) {
			if (!o->api_key && !o->jwt)
				set_str(&o->api_key, val);
			continue;
		}
		if (val && !strcmp(key, "jwt_token")) {
			if (!o->jwt && !o->api_key)
				set_str(&o->jwt, val);
			continue;
		}
		if (val && (!strcmp(key, "vercel_token") || !strcmp(key, "vercel_oidc_token"))) {
			char **dst = key[7] == 't' ? &o->vercel_token : &o->vercel_oidc;

			if (!o->vercel_token && !o->vercel_oidc)
				set_str(dst, val);
			continue;
		}
		if (val && (!strcmp(key, "vercel_team_id") || !strcmp(key, "vercel_project_id"))) {
			char **dst = key[7] == 't' ? &o->team_id : &o->project_id;

			if (!*dst)
				set_str(dst, val);
			continue;
		}
		if (val && !strcmp(key, "organization_id")) {
			if (!o->org_id)
				set_str(&o->org_id, val);
			continue;
		}
		if (!str_printf(opt, sizeof(opt), val ? "%s=%s" : "%s", key, val)) {
			snprintf(err, errlen, "%s:%d: line too long", path, lineno);
			rc = -EINVAL;
			break;
		}
		rc = options_apply(o, opt, err, errlen);
		if (rc == 0) {
			snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno, key);
			rc = -EINVAL;
		}
		if (rc < 0) {
			char msg[512];

			if (rc == -EINVAL && strncmp(err, path, strlen(path)) != 0) {
				snprintf(msg, sizeof(msg), "%s:%d: %s", path, lineno, err);
				str_copy(err, errlen, msg);
			}
			break;
		}
		rc = 0;
	}
	o->reading_config = false;
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return rc;
}

static char *default_config_path(const char *(*getenv_fn)(const char *))
{
	struct strbuf sb = STRBUF_INIT;
	const char *xdg = getenv_fn("XDG_CONFIG_HOME");
	const char *home = getenv_fn("HOME");
	struct stat st;

	if (xdg && *xdg)
		sb_addf(&sb, "%s/daytonafs/config", xdg);
	else if (home && *home)
		sb_addf(&sb, "%s/.config/daytonafs/config", home);
	if (sb.len && stat(sb_str(&sb), &st) == 0)
		return sb_detach(&sb);
	sb_free(&sb);
	if (stat("/etc/daytonafs.conf", &st) == 0)
		return strdup("/etc/daytonafs.conf");
	return NULL;
}

static bool is_vercel(const struct dfs_options *o)
{
	return o->provider && !strcmp(o->provider, "vercel");
}

/* What both providers check last. */
static int check_common(struct dfs_options *o, char *err, size_t errlen)
{
	if (strncmp(o->api_url, "http://", 7) && strncmp(o->api_url, "https://", 8)) {
		snprintf(err, errlen, "API URL '%s' must start with http:// or https://", o->api_url);
		return -EINVAL;
	}
	/* activity=: keepalive is the older name of activity=all. */
	if (!o->activity)
		set_str(&o->activity, o->keepalive ? "all" : "changes");
	if (strcmp(o->activity, "none") && strcmp(o->activity, "changes") && strcmp(o->activity, "all")) {
		snprintf(err, errlen, "option activity must be none, changes or all, got '%s'", o->activity);
		return -EINVAL;
	}
	o->keepalive = !strcmp(o->activity, "all");
	if (o->poll_min_ms > o->poll_max_ms) {
		snprintf(err, errlen, "poll_min (%ld ms) must not exceed poll_max (%ld ms)", o->poll_min_ms,
			 o->poll_max_ms);
		return -EINVAL;
	}
	return 0;
}

/* Vercel's credentials, once the environment and the config file are read:
 * the key file's token first, then VERCEL_OIDC_TOKEN (which names its team
 * and project), then VERCEL_TOKEN with VERCEL_TEAM_ID and VERCEL_PROJECT_ID. */
static int resolve_vercel(struct dfs_options *o, bool url_from_daytona, char *err, size_t errlen)
{
	int rc;

	if (url_from_daytona) {
		free(o->api_url);      /* DAYTONA_API_URL names Daytona's API, not Vercel's */
		o->api_url = NULL;
	}
	if (!o->api_url)
		set_str(&o->api_url, DFS_DEFAULT_VERCEL_URL);
	if (o->api_key_file) {
		rc = read_key_file(o->api_key_file, &o->vercel_token, err, errlen);
		if (rc)
			return rc;
		free_secret(&o->vercel_oidc);
	}
	/* Not Daytona's: a DAYTONA_API_KEY in the environment is no Vercel token. */
	free_secret(&o->api_key);
	free_secret(&o->jwt);
	if (o->vercel_oidc && o->vercel_token)
		free_secret(&o->vercel_token);   /* the SDK's order: the OIDC token first */
	if (!o->vercel_token && !o->vercel_oidc) {
		snprintf(err, errlen, "no Vercel credentials: set VERCEL_OIDC_TOKEN, or VERCEL_TOKEN with "
			 "VERCEL_TEAM_ID and VERCEL_PROJECT_ID (or -o api_key_file=PATH for the token, or "
			 "vercel_token = ... in ~/.config/daytonafs/config)");
		return -EINVAL;
	}
	if (o->vercel_token && (!o->team_id || !o->project_id)) {
		snprintf(err, errlen, "VERCEL_TOKEN needs VERCEL_TEAM_ID and VERCEL_PROJECT_ID as well "
			 "(or -o team_id=...,project_id=...)");
		return -EINVAL;
	}
	if (o->rate_limit < 0)
		o->rate_limit = 1000;
	return check_common(o, err, errlen);
}

int options_resolve(struct dfs_options *o, const char *(*getenv_fn)(const char *), char *err, size_t errlen)
{
	/* The provider the command line chose; the config file may name it too. */
	bool vercel_early = is_vercel(o), url_from_daytona = false;
	const char *v;
	char *cfg = NULL;
	int rc;

	/* 1. the key file given as an option */
	if (o->api_key_file && !vercel_early) {
		rc = read_key_file(o->api_key_file, &o->api_key, err, errlen);
		if (rc)
			return rc;
	}
	/* 2. the environment, as Daytona's SDKs read it */
	if (!o->api_key && !o->jwt) {
		v = getenv_fn("DAYTONA_API_KEY");
		if (v && *v)
			set_str(&o->api_key, v);
		v = getenv_fn("DAYTONA_JWT_TOKEN");
		if (!o->api_key && v && *v)
			set_str(&o->jwt, v);
	}
	v = getenv_fn("DAYTONA_ORGANIZATION_ID");
	if (!o->org_id && v && *v)
		set_str(&o->org_id, v);
	v = getenv_fn("DAYTONA_API_URL");
	if (!v || !*v)
		v = getenv_fn("DAYTONA_SERVER_URL");   /* deprecated alias */
	if (!o->api_url && v && *v && !vercel_early) {
		char opt[4096];

		if (str_printf(opt, sizeof(opt), "api_url=%s", v) && options_apply(o, opt, err, errlen) > 0)
			url_from_daytona = true;
	}
	v = getenv_fn("DAYTONA_TARGET");
	if (!o->target && v && *v && !vercel_early) {
		char opt[512];

		if (str_printf(opt, sizeof(opt), "target=%s", v))
			options_apply(o, opt, err, errlen);
	}
	/* ... and as Vercel's SDK reads them */
	v = getenv_fn("VERCEL_OIDC_TOKEN");
	if (!o->vercel_oidc && v && *v)
		set_str(&o->vercel_oidc, v);
	v = getenv_fn("VERCEL_TOKEN");
	if (!o->vercel_token && v && *v)
		set_str(&o->vercel_token, v);
	v = getenv_fn("VERCEL_TEAM_ID");
	if (!o->team_id && v && *v)
		set_str(&o->team_id, v);
	v = getenv_fn("VERCEL_PROJECT_ID");
	if (!o->project_id && v && *v)
		set_str(&o->project_id, v);

	/* 3. the config file fills what is still missing */
	if (o->config_file) {
		rc = options_read_config(o, o->config_file, true, err, errlen);
		if (rc)
			return rc;
	} else {
		cfg = default_config_path(getenv_fn);
		if (cfg) {
			rc = options_read_config(o, cfg, false, err, errlen);
			free(cfg);
			if (rc)
				return rc;
		}
	}
	if (o->provider && strcmp(o->provider, "daytona") && !is_vercel(o)) {
		snprintf(err, errlen, "provider must be daytona or vercel, got '%s'", o->provider);
		return -EINVAL;
	}
	if (is_vercel(o))
		return resolve_vercel(o, url_from_daytona, err, errlen);
	free_secret(&o->vercel_token);
	free_secret(&o->vercel_oidc);
	if (!o->api_key && o->api_key_file) {
		rc = read_key_file(o->api_key_file, &o->api_key, err, errlen);
		if (rc)
			return rc;
	}
	if (!o->api_url)
		set_str(&o->api_url, DFS_DEFAULT_API_URL);
	if (!o->api_key && !o->jwt) {
		snprintf(err, errlen,
			 "no Daytona credentials: set DAYTONA_API_KEY, or use -o api_key_file=PATH, "
			 "or put api_key = ... in ~/.config/daytonafs/config");
		return -EINVAL;
	}
	if (!o->api_key && o->jwt && !o->org_id) {
		snprintf(err, errlen, "DAYTONA_JWT_TOKEN needs DAYTONA_ORGANIZATION_ID as well");
		return -EINVAL;
	}
	if (o->rate_limit < 0)
		o->rate_limit = 0;
	return check_common(o, err, errlen);
}

const char *options_usage(void)
{
	return
"daytonafs options:\n"
"    -o api_url=URL           Daytona API (default $DAYTONA_API_URL, else " DFS_DEFAULT_API_URL ")\n"
"    -o api_key_file=PATH     read the API key from PATH (else $DAYTONA_API_KEY, else the config file)\n"
"    -o config=PATH           config file (default ~/.config/daytonafs/config, /etc/daytonafs.conf)\n"
"    -o target=REGION         region for new sandboxes (default $DAYTONA_TARGET)\n"
"    -o provider=NAME         daytona (default) or vercel (VERCEL_OIDC_TOKEN, or VERCEL_TOKEN\n"
"                             with VERCEL_TEAM_ID and VERCEL_PROJECT_ID; API https://vercel.com/api)\n"
"    -o team_id=ID,project_id=ID  Vercel team and project (default $VERCEL_TEAM_ID, $VERCEL_PROJECT_ID)\n"
"    -o rate_limit=N          requests a minute to the provider (Vercel default 1000; 0: no limit)\n"
"    -o attr_timeout=SEC      how long file attributes are cached (default 5)\n"
"    -o dir_timeout=SEC       how long directory listings are cached (default 5)\n"
"    -o negative_timeout=SEC  how long 'no such file' is cached (default 2)\n"
"    -o cache_dir=PATH        staging area for writes (default ~/.cache/daytonafs)\n"
"    -o read_ahead_kb=KB      kernel readahead of the mount, set when run as root (default 1024;\n"
"                             0 leaves the kernel's 128)\n"
"    -o writeback=SEC         upload closed files up to SEC later, many per request (default 0: at close)\n"
"    -o timeout=SEC           timeout of one request (default 60)\n"
"    -o connect_timeout=SEC   timeout of a connection attempt (default 10)\n"
"    -o wait_timeout=SEC      how long lifecycle commands wait for the new state (default 120)\n"
"    -o connections=N         HTTP connections kept open (default 16)\n"
"    -o retries=N             retries of a failed request (default 4)\n"
"    -o keepalive             file access counts as sandbox activity (resets auto-stop)\n"
"    -o autostart             file access starts a stopped sandbox\n"
"    -o poll_min=MS           first interval of command output polling (default 50)\n"
"    -o poll_max=MS           longest interval, the bound on live output delay (default 1000)\n"
"    -o exec_wait_ms=MS       how long exec waits for a command to end, to bring back its\n"
"                             exit status and output in the same request (default 200; 0: never)\n"
"    -o exec_helper=0         run commands by the wrapper script, not by the helper program\n"
"                             daytonafs-run that the mount installs in STATE_DIR/bin (default 1)\n"
"    -o state_dir=PATH        where command output lives in the sandbox (default /tmp/.daytonafs)\n"
"    -o exec_timeout=SEC      default timeout of every exec (default none; timeout= wins)\n"
"    -o activity=WHAT         what counts as sandbox activity: none, changes (default), all\n"
"    -o loglevel=LEVEL        error, warn, info or debug (default warn; -d implies debug)\n";
}
