/* SPDX-License-Identifier: Apache-2.0 */
/*
 * options.h - mount options, credentials and the config file.
 *
 * Credentials never come from the command line: DAYTONA_API_KEY (or
 * DAYTONA_JWT_TOKEN with DAYTONA_ORGANIZATION_ID) from the environment, or a
 * key file (-o api_key_file=PATH), or the config file (-o config=PATH, else
 * $XDG_CONFIG_HOME/daytonafs/config, else ~/.config/daytonafs/config, else
 * /etc/daytonafs.conf). Precedence: api_key_file, then the environment, then
 * the config file. Other settings: -o options, then the environment
 * (DAYTONA_API_URL, DAYTONA_TARGET), then the config file; the file only fills
 * what is still unset. The config file has "key = value" lines (# comments):
 * api_key, api_key_file, jwt_token, organization_id, api_url, target, and
 * any mount option by name (e.g. attr_timeout = 10).
 */
#ifndef DAYTONAFS_OPTIONS_H
#define DAYTONAFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#define DFS_DEFAULT_API_URL "https://app.daytona.io/api"
#define DFS_DEFAULT_VERCEL_URL "https://vercel.com/api"

struct dfs_options {
	/* endpoint and credentials */
	char *api_url;
	char *api_key;
	char *jwt;
	char *org_id;
	char *target;
	char *api_key_file;
	char *config_file;
	/* -o provider=daytona|vercel (default daytona). Vercel's credentials
	 * as its SDK takes them: VERCEL_OIDC_TOKEN, or VERCEL_TOKEN with
	 * VERCEL_TEAM_ID and VERCEL_PROJECT_ID (or -o api_key_file=PATH for the
	 * token; config keys vercel_token, vercel_oidc_token, vercel_team_id,
	 * vercel_project_id); resolved into these fields. */
	char *provider;
	char *vercel_token;
	char *vercel_oidc;
	char *team_id;
	char *project_id;
	int rate_limit;             /* requests a minute to the provider; Vercel default 1000; 0: none */

	/* caching */
	double attr_timeout;        /* seconds; default 5 */
	double dir_timeout;         /* seconds; default 5 */
	double negative_timeout;    /* seconds; default 2 */
	double writeback;           /* seconds a closed file's upload may wait; 0 (default): none */
	char *cache_dir;            /* default $XDG_CACHE_HOME/daytonafs or ~/.cache/daytonafs */
	long read_ahead_kb;         /* the mount's bdi readahead (root only); default 1024, 0 = the kernel's */

	/* network */
	long timeout_s;             /* per request; default 60 */
	long connect_timeout_s;     /* default 10 */
	long wait_timeout_s;        /* lifecycle waits; default 120 */
	int connections;            /* default 16 */
	int retries;                /* default 4 */

	/* behaviour */
	bool keepalive;             /* file access counts as sandbox activity */
	bool autostart;             /* file access starts a stopped sandbox */
	long poll_min_ms;           /* command output polling; default 50 */
	long poll_max_ms;           /* bound on the delay of live output; default 1000 */
	long exec_wait_ms;          /* exec's wait for a quick end (one request); default 200 */
	bool exec_helper;           /* commands by the helper daytonafs-run (exec_helper.h); default true */
	char *state_dir;            /* in the sandbox; default /tmp/.daytonafs */
	long exec_timeout_s;        /* default timeout= of every exec; 0 = none (the default) */
	char *activity;             /* none, changes (default) or all: what counts as sandbox activity */

	/* front end */
	bool show_help;
	bool show_version;
	bool foreground;
	bool debug;
	char *loglevel;             /* error, warn, info, debug */

	/* Which options were set before the config file was read (one bit per
	 * option): the command line and the environment win over the file. */
	unsigned long long set_mask;
	bool reading_config;
};

/* Sets every default. */
void options_init(struct dfs_options *o);
void options_free(struct dfs_options *o);

/* Applies one "name=value" (or bare flag) option. Returns 1 when it is one of
 * ours, 0 when it is not (it then belongs to FUSE), -EINVAL with a message in
 * err when the value is bad. */
int options_apply(struct dfs_options *o, const char *opt, char *err, size_t errlen);

/* Reads a config file; every line is options_apply'd, plus the credential keys.
 * A missing file is not an error when !required. A key file or config file
 * readable by others gets a warning. Returns 0 or -errno with err set. */
int options_read_config(struct dfs_options *o, const char *path, bool required, char *err, size_t errlen);

/* Fills credentials and endpoint from, in order, the key file, the
 * environment (through getenv_fn, for the tests), the config file. Fails with
 * -EINVAL and a one-line message saying what to do when there is no
 * credential. */
int options_resolve(struct dfs_options *o, const char *(*getenv_fn)(const char *), char *err, size_t errlen);

/* The usage text of our own options. */
const char *options_usage(void);

#endif
