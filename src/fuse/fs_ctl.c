/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_ctl.c - runs the commands written to ctl files: the grammar is ctl.c's,
 * the calls are the Daytona client's and exec.c's; this file maps one to the other,
 * keeps the registry and the caches in step, and leaves every failure's
 * message in the error file and the log.
 */
#include "fs_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

/* Records the outcome of a command for the error file: the message on failure,
 * nothing (an empty file) after a success. */
static int finish(struct sandbox *sb, const char *what, int rc, const struct sp_error *err)
{
	if (rc < 0)
		sandbox_set_error(sb, "%s: %s", what, err->message[0] ? err->message : strerror(-rc));
	else
		sandbox_clear_error(sb);
	return rc;
}

static void on_progress(void *ctx, const char *state)
{
	struct sandbox *sb = ctx;

	str_copy(sb->progress, sizeof(sb->progress), state);
}

static void apply_result(struct dfs *fs, struct sandbox *sb, const struct sp_sandbox *d)
{
	if (!d->id[0])
		return;
	pthread_mutex_lock(&fs->lock);
	sandbox_update(fs, sb, d);
	pthread_mutex_unlock(&fs->lock);
}

/*
 * Before a snapshot, stop, archive or restart: what this mount reported
 * done (a close, an unlink, a chmod) but has not sent yet (-o writeback,
 * an empty new file's wait, the queued changes) goes now, or the action
 * does not happen. A snapshot must hold it, and a stopped sandbox cannot
 * take it (on Vercel, a snapshot stops the sandbox too).
 */
static int settle_before(struct dfs *fs, struct sandbox *sb, const char *what, struct sp_error *err)
{
	int rc = files_settle_sandbox(fs, sb);

	if (rc < 0)
		sp_error_set(err, rc, 0, "changes made through the mount could not be sent before the %s: %s "
			     "(see the log; the files stay staged)", what, strerror(-rc));
	return rc;
}

static int lifecycle(struct dfs *fs, struct sandbox *sb, enum sp_action action, struct sp_error *err)
{
	struct sp_sandbox d;
	int rc;

	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_action(fs->sp, sb->id, action, on_progress, sb, &d, err);
	apply_result(fs, sb, &d);
	sp_sandbox_clear(&d);
	if (rc < 0 && rc != -ENOENT) {
		/* Re-read the state so that status says where it is now. */
		struct sp_error ignored = { 0 };

		sandbox_refresh(fs, sb, &ignored);
	}
	return rc;
}

/*
 * NAME/stdout, stderr and exit stand for the newest command, each one inode
 * whatever the command: the kernel's attributes of them (a size, kept for up
 * to a second) were the last command's, and stat, and fstat, which wc -c <
 * and tail -c trust, said so. Only attributes go (no page cache: they are
 * direct_io), which takes no lock a request could hold: safe here.
 */
static void newest_command_changed(struct dfs *fs, struct sandbox *sb)
{
	static const char *const names[] = { "stdout", "stderr", "exit" };
	char dir[256], path[320];

	if (!fs->fuse)
		return;
	sandbox_dir_name(fs, sb, dir, sizeof(dir));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (str_printf(path, sizeof(path), "/%s/%s", dir, names[i]))
			fuse_invalidate_path(fs->fuse, path);   /* -ENOENT: the kernel has no inode of it */
}

static int run_exec(struct dfs *fs, struct sandbox *sb, const struct ctl_command *c, struct sp_error *err)
{
	struct exec_spec spec;
	struct sp_kv *env = NULL;
	struct sp_box box;
	unsigned n;
	int rc;

	rc = sandbox_require_running(fs, sb);
	if (rc < 0) {
		sp_error_set(err, rc, 0, "%s", sb->error);
		return rc;
	}
	/* A command may change any file: it starts after what crash recovery
	 * is uploading (sandbox_change_begin says why), and recovery's next
	 * look waits for its start (not for its end: a command may run for
	 * days; one that changes a file recovery is about to upload races
	 * with it, as another client would). */
	files_change_begin(fs, sb);
	/* The command sees every file closed through the mount (-o writeback:
	 * their uploads go now), or does not start. */
	rc = files_writeback_flush(fs, sb, NULL);
	if (rc < 0) {
		sp_error_set(err, rc, 0, "files closed through the mount could not be uploaded before the "
			     "command: %s (see the log; they stay staged)", strerror(-rc));
		return rc;
	}
	if (c->n_env) {
		env = calloc(c->n_env, sizeof(*env));
		if (!env)
			return sp_error_set(err, -ENOMEM, 0, "out of memory");
		for (size_t i = 0; i < c->n_env; i++) {
			env[i].key = c->env[i].key;
			env[i].value = c->env[i].value;
		}
	}
	/* The command must not see a file this mount has unlinked. */
	files_settle(fs, sb, NULL);
	memset(&spec, 0, sizeof(spec));
	spec.command = c->command;
	spec.cwd = c->cwd;
	/* timeout= of the line wins over -o exec_timeout, timeout=0 too (none). */
	spec.timeout_s = c->timeout_s != CTL_UNSET ? c->timeout_s : fs->opt.exec_timeout_s;
	spec.env = env;
	spec.n_env = c->n_env;
	spec.with_stdin = c->with_stdin;
	sandbox_box(sb, &box);
	rc = exec_start(fs->exec, &box, &spec, &n, err);
	free(env);
	if (rc == -EHOSTDOWN) {
		struct sp_error ignored = { 0 };

		sandbox_refresh(fs, sb, &ignored);
	}
	/* The command changes files behind the mount's back: when it ends, both
	 * our cache and the kernel's are dropped for this sandbox (on_end, or the
	 * reader that sees the end first). Not now: that would forget which paths
	 * the kernel holds. While it runs, changes show within the timeouts. */
	/* The change ends with the launch (before the kernel is told: its
	 * invalidation may wait for a page of a private mapping of one of the
	 * files, whose read waits for the command). dispatch ends it too, for
	 * the returns above. */
	files_change_end();
	if (rc == 0) {
		newest_command_changed(fs, sb);
		log_info("%s: command %u started: %s", sb->name, n, c->command);
	}
	return rc;
}

static int run_kill(struct dfs *fs, struct sandbox *sb, long which, struct sp_error *err)
{
	struct sp_box box;
	unsigned n;
	int rc;

	sandbox_box(sb, &box);
	if (which > 0) {
		n = (unsigned)which;
	} else {
		rc = exec_last(fs->exec, &box, &n, err);
		if (rc < 0)
			return rc == -ENOENT ? sp_error_set(err, -ESRCH, 0, "no command to kill") : rc;
	}
	return exec_kill(fs->exec, &box, n, err);
}

/* label K=V merges into the current labels; unlabel K removes: the API only
 * replaces the whole set, so both read it first. */
static int run_labels(struct dfs *fs, struct sandbox *sb, const struct ctl_command *c, struct sp_error *err)
{
	struct sp_kv *cur = NULL, *next = NULL;
	size_t n = 0, m = 0;
	struct sp_sandbox d;
	int rc;

	rc = sp_sandbox_get_labels(fs->sp, sb->id, &cur, &n, err);
	if (rc < 0)
		return rc;
	next = calloc(n + c->n_labels + 1, sizeof(*next));
	if (!next) {
		sp_kv_free(cur, n);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		bool drop = false;

		for (size_t j = 0; j < c->n_keys && !drop; j++)
			drop = !strcmp(cur[i].key, c->keys[j]);
		for (size_t j = 0; j < c->n_labels && !drop; j++)
			drop = !strcmp(cur[i].key, c->labels[j].key);
		if (!drop)
			next[m++] = cur[i];
	}
	if (c->verb == CTL_UNLABEL) {
		for (size_t j = 0; j < c->n_keys; j++) {
			bool found = false;

			for (size_t i = 0; i < n; i++)
				found = found || !strcmp(cur[i].key, c->keys[j]);
			if (!found) {
				rc = sp_error_set(err, -ENOENT, 0, "no label '%s'", c->keys[j]);
				goto out;
			}
		}
	}
	for (size_t j = 0; j < c->n_labels; j++) {
		next[m].key = c->labels[j].key;
		next[m].value = c->labels[j].value;
		m++;
	}
	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_set_labels(fs->sp, sb->id, next, m, &d, err);
	apply_result(fs, sb, &d);
	sp_sandbox_clear(&d);
out:
	free(next);   /* its strings belong to cur and c */
	sp_kv_free(cur, n);
	return rc;
}

static int run_interval(struct dfs *fs, struct sandbox *sb, enum sp_interval which, long minutes,
			struct sp_error *err)
{
	struct sp_sandbox d;
	int rc;

	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_set_interval(fs->sp, sb->id, which, minutes, &d, err);
	apply_result(fs, sb, &d);
	sp_sandbox_clear(&d);
	return rc;
}

static int run_delete(struct dfs *fs, struct sandbox *sb, struct sp_error *err)
{
	int rc = sp_sandbox_delete(fs->sp, sb->id, on_progress, sb, err);

	if (rc == 0 || rc == -ENOENT) {
		pthread_mutex_lock(&fs->lock);
		sb->gone = true;
		pthread_mutex_unlock(&fs->lock);
		/* Nothing of it is to be sent any more: retried, it would fail
		 * forever. */
		files_forget_sandbox(fs, sb);
		surface_sandbox_gone(fs, sb);
		exec_forget_sandbox(fs->exec, sb->id);
		cache_invalidate_sandbox(fs->cache, sb->id);
		log_info("%s: deleted", sb->name);
		return 0;
	}
	return rc;
}

static int dispatch(struct dfs *fs, struct sandbox *sb, const struct ctl_command *c, struct sp_error *err)
{
	struct sp_sandbox d;
	int rc;

	switch (c->verb) {
	case CTL_EXEC:
		rc = run_exec(fs, sb, c, err);
		files_change_end();   /* of run_exec's files_change_begin, whatever way it returned */
		return rc;
	case CTL_KILL:
		return run_kill(fs, sb, c->kill_n, err);
	case CTL_START:
		return lifecycle(fs, sb, SP_START, err);
	case CTL_STOP:
	case CTL_ARCHIVE:
	case CTL_RESTART:
		rc = settle_before(fs, sb, ctl_verb_name(c->verb), err);
		if (rc < 0)
			return rc;
		if (c->verb == CTL_ARCHIVE)
			return lifecycle(fs, sb, SP_ARCHIVE, err);
		rc = lifecycle(fs, sb, SP_STOP, err);
		return rc < 0 || c->verb != CTL_RESTART ? rc : lifecycle(fs, sb, SP_START, err);
	case CTL_RECOVER:
		return lifecycle(fs, sb, SP_RECOVER, err);
	case CTL_DELETE:
		return run_delete(fs, sb, err);
	case CTL_SNAPSHOT:
		rc = settle_before(fs, sb, "snapshot", err);
		return rc < 0 ? rc : sp_sandbox_snapshot(fs->sp, sb->id, c->name, on_progress, sb, err);
	case CTL_RESIZE:
		memset(&d, 0, sizeof(d));
		rc = sp_sandbox_resize(fs->sp, sb->id, c->cpu, c->memory, c->disk, &d, err);
		apply_result(fs, sb, &d);
		sp_sandbox_clear(&d);
		return rc;
	case CTL_AUTOSTOP:
		return run_interval(fs, sb, SP_AUTOSTOP, c->minutes, err);
	case CTL_AUTOARCHIVE:
		return run_interval(fs, sb, SP_AUTOARCHIVE, c->minutes, err);
	case CTL_AUTODELETE:
		return run_interval(fs, sb, SP_AUTODELETE, c->minutes, err);
	case CTL_LABEL:
	case CTL_UNLABEL:
		return run_labels(fs, sb, c, err);
	case CTL_EXTEND:
		memset(&d, 0, sizeof(d));
		rc = sp_sandbox_extend(fs->sp, sb->id, c->minutes, &d, err);
		apply_result(fs, sb, &d);
		sp_sandbox_clear(&d);
		return rc;
	default:
		return sp_error_set(err, -EINVAL, 0, "'%s' is not a sandbox command", ctl_verb_name(c->verb));
	}
}

int ctl_run_sandbox(struct dfs *fs, struct sandbox *sb, const char *line, size_t len)
{
	struct sp_error err = { 0 };
	struct ctl_command c;
	char msg[512];
	int rc;

	rc = ctl_parse(line, len, CTL_SCOPE_SANDBOX, &c, msg, sizeof(msg));
	if (rc < 0) {
		sandbox_set_error(sb, "%s", msg);
		ctl_command_free(&c);
		return rc;
	}
	if (c.verb == CTL_NONE) {
		ctl_command_free(&c);
		return 0;
	}
	/* One lifecycle change at a time per sandbox; exec and kill need not wait. */
	if (c.verb == CTL_EXEC || c.verb == CTL_KILL) {
		rc = dispatch(fs, sb, &c, &err);
	} else {
		pthread_mutex_lock(&sb->op_lock);
		rc = dispatch(fs, sb, &c, &err);
		sb->progress[0] = '\0';
		pthread_mutex_unlock(&sb->op_lock);
	}
	rc = finish(sb, ctl_verb_name(c.verb), rc, &err);
	if (rc == 0)
		log_info("%s: %s done", sb->name, ctl_verb_name(c.verb));
	ctl_command_free(&c);
	return rc;
}

int ctl_run_command(struct dfs *fs, struct sandbox *sb, unsigned cmd, const char *line, size_t len)
{
	struct sp_error err = { 0 };
	struct ctl_command c;
	struct sp_box box;
	char msg[512];
	int rc;

	rc = ctl_parse(line, len, CTL_SCOPE_COMMAND, &c, msg, sizeof(msg));
	if (rc < 0) {
		sandbox_set_error(sb, "command %u: %s", cmd, msg);
		ctl_command_free(&c);
		return rc;
	}
	sandbox_box(sb, &box);
	switch (c.verb) {
	case CTL_KILL:
		rc = exec_kill(fs->exec, &box, cmd, &err);
		break;
	case CTL_CLOSE_STDIN:
		rc = exec_stdin_close(fs->exec, &box, cmd, &err);
		break;
	default:
		rc = 0;
	}
	rc = finish(sb, ctl_verb_name(c.verb), rc, &err);
	ctl_command_free(&c);
	return rc;
}

static struct sp_kv *pairs_to_kv(const struct ctl_pair *p, size_t n)
{
	struct sp_kv *kv = calloc(n ? n : 1, sizeof(*kv));

	if (!kv)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		kv[i].key = p[i].key;
		kv[i].value = p[i].value;
	}
	return kv;
}

static int create_sandbox(struct dfs *fs, const struct ctl_command *c, struct sp_error *err)
{
	struct sp_create_params p;
	struct sp_kv *env, *labels, *volumes;
	struct sp_sandbox d;
	int rc;

	/* A sandbox the mount would show by its id (registry.h) could not be
	 * reached by the name given: refuse it before it exists. */
	if (!registry_name_showable(c->name, true))
		return sp_error_set(err, -EINVAL, 0, "a sandbox name with a control byte (tab, newline, ESC ...) "
				    "cannot be a directory of the mount: choose another");
	env = pairs_to_kv(c->env, c->n_env);
	labels = pairs_to_kv(c->labels, c->n_labels);
	volumes = pairs_to_kv(c->volumes, c->n_volumes);
	if (!env || !labels || !volumes) {
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	sp_create_params_init(&p);
	p.name = c->name;
	p.snapshot = c->snapshot;
	p.image = c->image;
	p.cpu = c->cpu;
	p.memory = c->memory;
	p.disk = c->disk;
	p.gpu = c->gpu;
	p.language = c->language;
	p.target = c->target;
	p.user = c->user;
	p.env = env;
	p.n_env = c->n_env;
	p.labels = labels;
	p.n_labels = c->n_labels;
	p.volumes = volumes;
	p.n_volumes = c->n_volumes;
	p.ephemeral = c->ephemeral;
	p.is_public = c->is_public;
	p.network_block_all = c->network_block_all;
	p.network_allow_list = c->network_allow;
	p.ports = c->ports;
	p.n_ports = c->n_ports;
	if (c->autostop != CTL_MINUTES_UNSET)
		p.autostop = c->autostop;
	if (c->autoarchive != CTL_MINUTES_UNSET)
		p.autoarchive = c->autoarchive;
	if (c->autodelete != CTL_MINUTES_UNSET)
		p.autodelete = c->autodelete;

	surface_create_progress(&p, fs, c->image != NULL);
	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_create(fs->sp, &p, &d, err);
	surface_create_done(fs, rc == 0);
	if (d.id[0]) {
		struct sandbox *sb = sandbox_add(fs, &d);

		if (!sb && rc == 0)
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		if (sb && rc == 0)
			surface_env_record(fs, sb, env, c->n_env);
	}
	sp_sandbox_clear(&d);
	if (rc == 0)
		log_info("created sandbox %s", c->name);
out:
	free(env);
	free(labels);
	free(volumes);
	return rc;
}

static void set_root_error(struct dfs *fs, const char *what, const char *msg)
{
	pthread_mutex_lock(&fs->lock);
	snprintf(fs->root_error, sizeof(fs->root_error), "%s%s%s", what, *what ? ": " : "", msg);
	pthread_mutex_unlock(&fs->lock);
	log_warn("%s", fs->root_error);
}

void ctl_line_refused(struct dfs *fs, struct sandbox *sb, unsigned cmd, const char *msg)
{
	if (!sb)
		set_root_error(fs, "", msg);
	else if (!cmd)
		sandbox_set_error(sb, "%s", msg);
	else
		sandbox_set_error(sb, "command %u: %s", cmd, msg);
}

int ctl_run_root(struct dfs *fs, const char *line, size_t len)
{
	struct sp_error err = { 0 };
	struct ctl_command c;
	char msg[512];
	int rc;

	rc = ctl_parse(line, len, CTL_SCOPE_ROOT, &c, msg, sizeof(msg));
	if (rc < 0) {
		set_root_error(fs, "", msg);
		ctl_command_free(&c);
		return rc;
	}
	if (c.verb == CTL_CREATE && (!strcmp(c.name, "ctl") || !strcmp(c.name, "error"))) {
		/* MOUNT/ctl and MOUNT/error would hide a sandbox of that name. */
		set_root_error(fs, "create", "'ctl' and 'error' are reserved names in the mount");
		rc = -EINVAL;
	} else if (c.verb == CTL_CREATE) {
		rc = create_sandbox(fs, &c, &err);
		if (rc < 0)
			set_root_error(fs, "create", err.message);
		else
			fs->root_error[0] = '\0';
	}
	ctl_command_free(&c);
	return rc;
}

int ctl_create_default(struct dfs *fs, const char *name)
{
	struct strbuf line = STRBUF_INIT;
	int rc;

	/* mkdir MOUNT/NAME is "create NAME"; the name is quoted so the grammar
	 * sees it as one word whatever it holds, and validated there. */
	sb_adds(&line, "create '");
	for (const char *p = name; *p; p++) {
		if (*p == '\'')
			sb_adds(&line, "'\\''");
		else
			sb_addc(&line, *p);
	}
	sb_addc(&line, '\'');
	if (line.oom) {
		sb_free(&line);
		return -ENOMEM;
	}
	rc = ctl_run_root(fs, sb_str(&line), line.len);
	sb_free(&line);
	return rc == -EBUSY ? -EEXIST : rc;
}
