/* SPDX-License-Identifier: Apache-2.0 */
/*
 * main.c - daytonafs: options, credentials, start-up checks, the FUSE loop.
 *
 * Everything that can fail for a reason the user can fix (no credentials, a
 * wrong key, an unreachable API, a bad option) is checked before mounting,
 * in the foreground, and ends the program with a one-line message and a
 * non-zero exit.
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec_helper.h"
#include "fs.h"
#include "fs_int.h"
#include "log.h"
#include "options.h"
#include "rename_pin.h"
#include "strbuf.h"

struct parse_ctx {
	struct dfs_options *opt;
	char err[512];
	int failed;
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct parse_ctx *ctx = data;
	int rc;

	(void)outargs;
	if (key != FUSE_OPT_KEY_OPT)
		return 1;
	/* Credentials on the command line would show in ps and shell history. */
	if (!strncmp(arg, "api_key=", 8) || !strncmp(arg, "jwt_token=", 10) || !strncmp(arg, "vercel_token=", 13) ||
	    !strncmp(arg, "vercel_oidc_token=", 18)) {
		snprintf(ctx->err, sizeof(ctx->err),
			 "credentials are not accepted as options (they would show in ps): "
			 "use DAYTONA_API_KEY (VERCEL_TOKEN) or -o api_key_file=PATH");
		ctx->failed = 1;
		return 0;
	}
	rc = options_apply(ctx->opt, arg, ctx->err, sizeof(ctx->err));
	if (rc < 0) {
		ctx->failed = 1;
		return 0;
	}
	return rc ? 0 : 1;
}

static const char *real_getenv(const char *name)
{
	return getenv(name);
}

static void usage(const char *prog)
{
	printf("usage: %s [options] MOUNTPOINT\n"
	       "Mounts Daytona (or Vercel) sandboxes as directories. Unmount with: fusermount3 -u MOUNTPOINT\n\n"
	       "Credentials: DAYTONA_API_KEY (or DAYTONA_JWT_TOKEN with DAYTONA_ORGANIZATION_ID),\n"
	       "DAYTONA_API_URL, DAYTONA_TARGET; or a key file or config file (below).\n"
	       "With -o provider=vercel: VERCEL_OIDC_TOKEN, or VERCEL_TOKEN with VERCEL_TEAM_ID\n"
	       "and VERCEL_PROJECT_ID.\n\n"
	       "general options:\n"
	       "    -h, --help             print this help\n"
	       "    -V, --version          print the version\n"
	       "    -f                     stay in the foreground\n"
	       "    -d                     debug: foreground, FUSE and daytonafs debug output\n"
	       "    -o allow_other         let other users in (needs user_allow_other in /etc/fuse.conf)\n\n%s",
	       prog, options_usage());
}

/* Removes a variable from the environment and overwrites its value where
 * it lies: unsetenv alone leaves the bytes in the block the kernel shows as
 * /proc/PID/environ (and ps e). The credentials were copied by then. */
static void scrub_env(const char *name)
{
	size_t len = strlen(name);

	for (char **e = environ; *e; e++)
		if (!strncmp(*e, name, len) && (*e)[len] == '=')
			memset(*e + len + 1, 0, strlen(*e + len + 1));
	unsetenv(name);
}

/* Keeps the key out of core dumps and out of the environment of anything
 * this process starts (fusermount3). */
static void protect_secrets(void)
{
	struct rlimit no_core = { 0, 0 };

	setrlimit(RLIMIT_CORE, &no_core);
#ifndef __SANITIZE_ADDRESS__
	/* Not under ASan: LeakSanitizer needs to ptrace its own process. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
	scrub_env("DAYTONA_API_KEY");
	scrub_env("DAYTONA_JWT_TOKEN");
	scrub_env("VERCEL_TOKEN");
	scrub_env("VERCEL_OIDC_TOKEN");
}

static int default_cache_dir(struct dfs_options *o)
{
	struct strbuf sb = STRBUF_INIT;
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");

	if (o->cache_dir)
		return 0;
	if (xdg && *xdg)
		sb_addf(&sb, "%s/daytonafs", xdg);
	else if (home && *home)
		sb_addf(&sb, "%s/.cache/daytonafs", home);
	else
		sb_addf(&sb, "/tmp/daytonafs-%u", (unsigned)getuid());
	o->cache_dir = sb_detach(&sb);
	return o->cache_dir ? 0 : -ENOMEM;
}

/* The cache directory as an absolute path: libfuse's daemonizing (and its
 * foreground mode too, in 3.14) makes / the working directory once mounted,
 * and every staging file is opened by path then. A relative cache_dir made
 * every create and write of the mount fail with ENOENT. */
static int absolute_cache_dir(struct dfs_options *o)
{
	char *abs = realpath(o->cache_dir, NULL);

	if (!abs)
		return -errno;
	free(o->cache_dir);
	o->cache_dir = abs;
	return 0;
}

/* mkdir -p with mode 0700 for the last component. */
static int make_dirs(const char *path)
{
	char buf[4096];
	size_t len;

	if (!str_copy(buf, sizeof(buf), path))
		return -ENAMETOOLONG;
	len = strlen(buf);
	for (size_t i = 1; i < len; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * mount(8) through mount.fuse3 (fstab: "daytonafs /mnt/sb fuse.daytonafs ...")
 * runs "daytonafs SOURCE MOUNTPOINT -o ...": with two operands, the first is
 * the source, which names nothing for us, and is dropped.
 */
static void drop_mount_source(int *argc, char *argv[])
{
	int operands[3], n = 0;

	for (int i = 1; i < *argc && n < 3; i++) {
		if (!strcmp(argv[i], "-o")) {
			i++;
			continue;
		}
		if (argv[i][0] != '-')
			operands[n++] = i;
	}
	if (n != 2)
		return;
	for (int i = operands[0]; i < *argc - 1; i++)
		argv[i] = argv[i + 1];
	(*argc)--;
	argv[*argc] = NULL;
}

static int parse_loglevel(const char *name, enum log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++) {
		if (!strcmp(name, names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int main(int argc, char *argv[])
{
	struct fuse_args args;
	enum log_level level;
	struct fuse_cmdline_opts cmd = { 0 };
	struct fuse_loop_config *loop = NULL;
	struct dfs_options opt;
	struct parse_ctx ctx = { 0 };
	struct fuse *fuse = NULL;
	struct dfs *fs = NULL;
	char err[1024];
	int rc = 1;

	drop_mount_source(&argc, argv);
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	options_init(&opt);
	ctx.opt = &opt;
	if (fuse_opt_parse(&args, &ctx, NULL, opt_proc) < 0 || ctx.failed) {
		fprintf(stderr, "daytonafs: %s\n", ctx.err[0] ? ctx.err : "bad options");
		goto out;
	}
	if (fuse_parse_cmdline(&args, &cmd) != 0) {
		fprintf(stderr, "daytonafs: bad arguments; see daytonafs --help\n");
		goto out;
	}
	if (cmd.show_help) {
		usage(argv[0]);
		rc = 0;
		goto out;
	}
	if (cmd.show_version) {
		printf("daytonafs %s (libfuse %s, %s)\n", DAYTONAFS_VERSION, fuse_pkgversion(),
		       "libcurl, cJSON");
		/* The helper commands run by, when the build could make one. */
		if (exec_helper_len)
			printf("helper: daytonafs-run run-%s for %s (%zu bytes)\n", exec_helper_id, exec_helper_arch,
			       exec_helper_len);
		else
			printf("helper: none (no musl-gcc, or -Dexec_helper=false): commands run by the wrapper script\n");
		rc = 0;
		goto out;
	}
	if (!cmd.mountpoint) {
		fprintf(stderr, "daytonafs: no mount point given; usage: daytonafs [options] MOUNTPOINT\n");
		goto out;
	}
	level = cmd.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN;
	log_init(level, false);
	if (options_resolve(&opt, real_getenv, err, sizeof(err)) < 0) {
		fprintf(stderr, "daytonafs: %s\n", err);
		goto out;
	}
	/* -o loglevel (or the config file's) applies unless -d asked for debug. */
	if (opt.loglevel && !cmd.debug && parse_loglevel(opt.loglevel, &level) < 0) {
		fprintf(stderr, "daytonafs: loglevel must be error, warn, info or debug\n");
		goto out;
	}
	log_set_level(level);
	protect_secrets();
	if (default_cache_dir(&opt) < 0 || make_dirs(opt.cache_dir) < 0 || absolute_cache_dir(&opt) < 0) {
		fprintf(stderr, "daytonafs: cannot create the cache directory %s\n",
			opt.cache_dir ? opt.cache_dir : "");
		goto out;
	}

	fs = dfs_new(&opt, err, sizeof(err));
	if (!fs) {
		fprintf(stderr, "daytonafs: %s\n", err);
		goto out;
	}
	if (!realpath(cmd.mountpoint, fs->mountpoint))
		str_copy(fs->mountpoint, sizeof(fs->mountpoint), cmd.mountpoint);
	if (dfs_check(fs, err, sizeof(err)) < 0) {
		fprintf(stderr, "daytonafs: %s\n", err);
		goto out;
	}

	fuse_opt_add_arg(&args, "-ofsname=daytonafs,subtype=daytonafs");
	fuse = fuse_new(&args, dfs_operations(), sizeof(struct fuse_operations), fs);
	if (!fuse)
		goto out;
	if (fuse_mount(fuse, cmd.mountpoint) != 0)
		goto out_destroy;
	if (rename_pin_install(fuse_get_session(fuse)) != 0)
		goto out_unmount;
	if (fuse_daemonize(cmd.foreground) != 0)
		goto out_unmount;
	if (!cmd.foreground)
		log_init(level, true);   /* stderr is /dev/null now: to syslog */
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
		goto out_unmount;

	if (cmd.singlethread) {
		rc = fuse_loop(fuse) ? 1 : 0;
	} else {
		loop = fuse_loop_cfg_create();
		if (!loop)
			goto out_signals;
		/* Readers of live command output block in read(): leave room for
		 * many of them beside ordinary file traffic. */
		fuse_loop_cfg_set_max_threads(loop, 128);
		fuse_loop_cfg_set_idle_threads(loop, cmd.max_idle_threads != UINT_MAX ? cmd.max_idle_threads : 10);
		fuse_loop_cfg_set_clone_fd(loop, cmd.clone_fd);
		rc = fuse_loop_mt(fuse, loop) ? 1 : 0;
		fuse_loop_cfg_destroy(loop);
	}
out_signals:
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
out:
	dfs_free(fs);
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	options_free(&opt);
	return rc;
}
