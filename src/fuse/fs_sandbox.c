/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_sandbox.c - the sandbox registry's requests: refreshing the list of
 * sandboxes, finding one by its directory name, refreshing one, its error
 * and its toolbox address. The index itself is registry.c (pure).
 */
#include "fs_dispatch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_int.h"
#include "log.h"
#include "recover.h"
#include "strbuf.h"
#include "urlenc.h"

/* ---- the sandbox registry ----------------------------------------------- */

void sandbox_update(struct dfs *fs, struct sandbox *sb, const struct sp_sandbox *d)
{
	str_copy(sb->id, sizeof(sb->id), d->id);
	if (fs)
		registry_set_name(&fs->registry, sb, d->name, d->name_exact);
	else
		str_copy(sb->name, sizeof(sb->name), d->name);
	/* Newer APIs may leave toolboxProxyUrl empty: keep the one we have
	 * (asked for by sandbox_box) rather than forget it. */
	if (d->toolbox_url[0])
		str_copy(sb->toolbox_url, sizeof(sb->toolbox_url), d->toolbox_url);
	/* Seen started: what a dead mount left staged for it goes now. Its
	 * first sight counts too (no state before): a sandbox started before
	 * this mount looked at it; at mount time that costs one more pass. */
	if (fs && fs->recovery && strcmp(sb->state, "started") && !strcmp(d->state, "started"))
		recover_wake(fs->recovery);
	str_copy(sb->state, sizeof(sb->state), d->state);
	str_copy(sb->error_reason, sizeof(sb->error_reason), d->error_reason);
	sb->is_public = d->is_public;
	if (d->volumes_known) {
		/* fixed at creation: a list item, which does not have them, keeps them */
		str_copy(sb->volume_paths, sizeof(sb->volume_paths), d->volume_paths);
		sb->volumes_known = true;
	}
	sb->fetched_at = now_mono();
	sb->gone = !strcmp(d->state, "destroyed");
	/* Not running: its commands' processes may be gone with it, so exec
	 * checks their records against the sandbox's processes once it runs. */
	if (fs && fs->exec && !sandbox_state_runs(d->state))
		exec_sandbox_stopped(fs->exec, d->id);
}

struct sandbox *sandbox_add(struct dfs *fs, const struct sp_sandbox *d)
{
	struct sandbox *sb;

	pthread_mutex_lock(&fs->lock);
	/* A sandbox seen before (even one marked gone) keeps its entry: pointers
	 * held by open files stay valid for the life of the mount. The same id
	 * twice in one listing updates the one entry. */
	sb = registry_by_id(&fs->registry, d->id);
	if (!sb) {
		sb = calloc(1, sizeof(*sb));
		if (!sb) {
			pthread_mutex_unlock(&fs->lock);
			return NULL;
		}
		sb->fs = fs;
		str_copy(sb->id, sizeof(sb->id), d->id);
		str_copy(sb->name, sizeof(sb->name), d->name);
		if (registry_insert(&fs->registry, sb) < 0) {
			pthread_mutex_unlock(&fs->lock);
			free(sb);
			return NULL;
		}
		pthread_mutex_init(&sb->op_lock, NULL);
		sb->next = fs->sandboxes;
		fs->sandboxes = sb;
	}
	sandbox_update(fs, sb, d);
	sb->listed = true;
	pthread_mutex_unlock(&fs->lock);
	return sb;
}

/* The list is eventually consistent: a sandbox missing from one listing may
 * just not be indexed yet. Only a 404 for its id says it is gone. */
static void confirm_unlisted(struct dfs *fs)
{
	struct sandbox **check = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&fs->lock);
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next) {
		if (sb->listed || sb->gone)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct sandbox **nv = realloc(check, nc * sizeof(*nv));

			if (!nv)
				break;
			check = nv;
			cap = nc;
		}
		check[n++] = sb;
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < n; i++) {
		struct sp_error err = { 0 };

		/* marks it gone on 404, updates it on 200; any other error
		 * leaves it as it is, for the next listing to decide */
		if (sandbox_refresh(fs, check[i], &err) < 0 && err.err != ENOENT)
			log_debug("%s: not listed, and asking for it failed: %s", check[i]->id, err.message);
	}
	free(check);
}

/* Refreshes the registry from a full list when it is older than dir_timeout. */
int registry_refresh(struct dfs *fs, bool force, struct sp_error *err)
{
	struct sp_sandbox *list = NULL;
	size_t n = 0;
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (!force && fs->listed_at > 0 && now_mono() - fs->listed_at < fs->opt.dir_timeout) {
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->lock);

	rc = sp_sandbox_list(fs->sp, &list, &n, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next)
		sb->listed = false;
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < n; i++)
		sandbox_add(fs, &list[i]);
	sp_sandbox_list_free(list, n);
	confirm_unlisted(fs);
	pthread_mutex_lock(&fs->lock);
	fs->listed_at = now_mono();
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

struct sandbox *sandbox_find(struct dfs *fs, const char *name, struct sp_error *err)
{
	struct sp_sandbox d;
	struct sandbox *sb;
	int rc;

	pthread_mutex_lock(&fs->lock);
	sb = registry_resolve(&fs->registry, name);
	pthread_mutex_unlock(&fs->lock);
	if (sb)
		return sb;
	/* Not known: ask for it by name or id (one request), so that a sandbox
	 * created elsewhere appears without waiting for a full listing. */
	if (!ctl_valid_name(name)) {
		sp_error_set(err, -ENOENT, 0, "no sandbox named '%s'", name);
		return NULL;
	}
	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_get(fs->sp, name, &d, err);
	if (rc < 0) {
		sp_sandbox_clear(&d);
		return NULL;
	}
	if (!strcmp(d.state, "destroyed") || !strncmp(d.name, "DESTROYED_", 10)) {
		sp_sandbox_clear(&d);
		sp_error_set(err, -ENOENT, 404, "sandbox '%s' was deleted", name);
		return NULL;
	}
	sb = sandbox_add(fs, &d);
	sp_sandbox_clear(&d);
	if (!sb) {
		sp_error_set(err, -ENOMEM, 0, "out of memory");
		return NULL;
	}
	/* The API found it by id or by name; it is MOUNT/name only if the
	 * naming rule agrees (the name is shown as it is, and unique). */
	pthread_mutex_lock(&fs->lock);
	sb = registry_resolve(&fs->registry, name);
	pthread_mutex_unlock(&fs->lock);
	if (!sb)
		sp_error_set(err, -ENOENT, 0, "no sandbox has the directory name '%s' (list the mount to see "
			     "sandboxes shown by id)", name);
	return sb;
}

int sandbox_refresh(struct dfs *fs, struct sandbox *sb, struct sp_error *err)
{
	struct sp_sandbox d;
	int rc;

	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_get(fs->sp, sb->id, &d, err);
	if (rc == -ENOENT) {
		pthread_mutex_lock(&fs->lock);
		sb->gone = true;
		pthread_mutex_unlock(&fs->lock);
	} else if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		sandbox_update(fs, sb, &d);
		pthread_mutex_unlock(&fs->lock);
	}
	sp_sandbox_clear(&d);
	return rc;
}

void sandbox_set_error(struct sandbox *sb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sb->error, sizeof(sb->error), fmt, ap);
	va_end(ap);
	log_warn("%s: %s", sb->name, sb->error);
}

void sandbox_clear_error(struct sandbox *sb)
{
	sb->error[0] = '\0';
}

void sandbox_box(struct sandbox *sb, struct sp_box *box)
{
	struct dfs *fs = sb->fs;

	if (!sb->toolbox_url[0] && fs && fs->sp) {
		struct sp_error err = { 0 };
		char url[sizeof(sb->toolbox_url)];

		/* A failure leaves it empty: the toolbox call then fails with
		 * "toolbox address unknown", and the next one asks again. */
		if (sp_sandbox_toolbox_url(fs->sp, sb->id, url, sizeof(url), &err) == 0) {
			pthread_mutex_lock(&fs->lock);
			str_copy(sb->toolbox_url, sizeof(sb->toolbox_url), url);
			pthread_mutex_unlock(&fs->lock);
		} else {
			log_warn("%s: %s", sb->id, err.message);
		}
	}
	box->id = sb->id;
	box->toolbox_url = sb->toolbox_url;
}

void sandbox_dir_name(struct dfs *fs, const struct sandbox *sb, char *out, size_t cap)
{
	const char *dir;

	pthread_mutex_lock(&fs->lock);
	dir = registry_dir_name(&fs->registry, sb);
	str_copy(out, cap, dir ? dir : sb->id);   /* (for messages: the sandbox is not shown) */
	pthread_mutex_unlock(&fs->lock);
}

bool sandbox_state_runs(const char *state)
{
	/* While a snapshot is taken the sandbox keeps running and so does its toolbox. */
	return !strcmp(state, "started") || !strcmp(state, "snapshotting");
}

int sandbox_require_running(struct dfs *fs, struct sandbox *sb)
{
	struct sp_error err = { 0 };
	char state[32];
	double age;
	int rc;

	pthread_mutex_lock(&fs->lock);
	str_copy(state, sizeof(state), sb->state);
	age = now_mono() - sb->fetched_at;
	pthread_mutex_unlock(&fs->lock);
	if (sb->gone)
		return -ENOENT;
	/* A started sandbox is trusted until a toolbox call says otherwise
	 * (EHOSTDOWN makes the caller refresh); any other state is re-read once
	 * it is older than the attribute timeout, since it may have started. */
	if (sandbox_state_runs(state))
		return 0;
	if (age >= fs->opt.attr_timeout || age >= 1.0) {
		rc = sandbox_refresh(fs, sb, &err);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&fs->lock);
		str_copy(state, sizeof(state), sb->state);
		pthread_mutex_unlock(&fs->lock);
		if (sandbox_state_runs(state))
			return 0;
	}
	/* start also resumes a paused sandbox (the API's start works from paused) */
	if (fs->opt.autostart && (!strcmp(state, "stopped") || !strcmp(state, "archived") ||
				  !strcmp(state, "paused"))) {
		struct sp_sandbox d;

		log_info("%s: starting it for file access (-o autostart)", sb->name);
		memset(&d, 0, sizeof(d));
		pthread_mutex_lock(&sb->op_lock);
		rc = sp_sandbox_action(fs->sp, sb->id, SP_START, NULL, NULL, &d, &err);
		pthread_mutex_unlock(&sb->op_lock);
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			sandbox_update(fs, sb, &d);
			pthread_mutex_unlock(&fs->lock);
		} else {
			sandbox_set_error(sb, "autostart failed: %s", err.message);
		}
		sp_sandbox_clear(&d);
		return rc < 0 ? rc : 0;
	}
	{
		char dir[256];

		sandbox_dir_name(fs, sb, dir, sizeof(dir));
		sandbox_set_error(sb, "sandbox '%s' is %s: start it with: echo start > %s/%s/ctl%s", sb->name,
				  state, fs->mountpoint, dir, fs->opt.autostart ? "" : " (or mount with -o autostart)");
	}
	return -EHOSTDOWN;
}

int sandbox_change_begin(struct dfs *fs, struct sandbox *sb)
{
	int rc = sandbox_require_running(fs, sb);

	if (rc < 0)
		return rc;
	surface_note_change(fs, sb);
	/* A change made while crash recovery uploads a file of the sandbox
	 * would come before that upload: an rm would see the file brought
	 * back. One under way as recovery looks would change the file after
	 * the look. */
	files_change_begin(fs, sb);
	return 0;
}
