/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.c - the FUSE operations of daytonafs: a mount path is parsed into a node
 * (the root, a sandbox, one of its control files, a command, or a file of the
 * sandbox's own filesystem), and each operation hands the node to the part
 * that serves it: the sandbox registry and the virtual files here, the file
 * proxy in the fs_*.c files (fs_files_int.h), the ctl commands in fs_ctl.c.
 */
#include "fs.h"
#include "fs_int.h"

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

#include "log.h"
#include "recover.h"
#include "strbuf.h"
#include "urlenc.h"

/* Renamed paths whose inode number is remembered (inode.h): ~100 bytes
 * each, so at most a few MiB. */
#define INO_RENAMES_KEPT 65536

/* ---- small helpers ------------------------------------------------------ */

double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct dfs *dfs_get(void)
{
	return fuse_get_context()->private_data;
}

static bool is_number(const char *s, unsigned *out)
{
	unsigned long v;
	char *end;

	if (!*s || *s == '0' || strlen(s) > 9)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	v = strtoul(s, &end, 10);
	*out = (unsigned)v;
	return true;
}

/* Snapshot names may hold '/' (e.g. "daytonaio/sandbox:0.5.0-slim"), which
 * cannot be in a file name: it is shown as %2F, and '%' as %25. */
static void snap_encode(struct strbuf *sb, const char *name)
{
	for (const char *p = name; *p; p++) {
		if (*p == '/')
			sb_adds(sb, "%2F");
		else if (*p == '%')
			sb_adds(sb, "%25");
		else
			sb_addc(sb, *p);
	}
}

static bool snap_decode(const char *enc, char *out, size_t cap)
{
	size_t o = 0;

	for (const char *p = enc; *p; p++) {
		char c = *p;

		if (c == '%' && (!strncmp(p + 1, "2F", 2) || !strncmp(p + 1, "2f", 2))) {
			c = '/';
			p += 2;
		} else if (c == '%' && !strncmp(p + 1, "25", 2)) {
			p += 2;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

/* ---- paths to nodes ----------------------------------------------------- */

struct name_kind {
	const char *name;
	enum node_kind kind;
};

static const struct name_kind sandbox_entries[] = {
	{ "ctl", N_SB_CTL }, { "status", N_SB_STATUS }, { "info", N_SB_INFO },
	{ "error", N_SB_ERROR }, { "stdout", N_SB_STDOUT }, { "stderr", N_SB_STDERR },
	{ "exit", N_SB_EXIT }, { "cmd", N_CMDDIR }, { "fs", N_FSROOT }, { "work", N_WORK },
};

static const struct name_kind command_entries[] = {
	{ "command", N_CMD_COMMAND }, { "stdout", N_CMD_STDOUT }, { "stderr", N_CMD_STDERR },
	{ "exit", N_CMD_EXIT }, { "status", N_CMD_STATUS }, { "stdin", N_CMD_STDIN },
	{ "ctl", N_CMD_CTL },
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int lookup_name(const struct name_kind *t, size_t n, const char *name, size_t len,
		       enum node_kind *kind)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(t[i].name) == len && !memcmp(t[i].name, name, len)) {
			*kind = t[i].kind;
			return 0;
		}
	}
	return -ENOENT;
}

/* Copies the next component of *p into out and advances *p past it. */
static int next_component(const char **p, char *out, size_t cap, size_t *len)
{
	const char *s = *p, *e;

	while (*s == '/')
		s++;
	if (!*s)
		return 0;
	e = strchr(s, '/');
	*len = e ? (size_t)(e - s) : strlen(s);
	if (*len >= cap)
		return -ENAMETOOLONG;
	memcpy(out, s, *len);
	out[*len] = '\0';
	*p = s + *len;
	return 1;
}

/* Whether every component of path fits NAME_MAX (255 bytes), as ext4
 * demands: a longer name is refused at once, by lookups too, and never gets
 * as far as a staged create that could only fail at the upload. */
static bool names_fit(const char *path)
{
	size_t len = 0;

	for (const char *p = path; *p; p++) {
		len = *p == '/' ? 0 : len + 1;
		if (len > 255)
			return false;
	}
	return true;
}

int node_parse(const char *path, struct node *n)
{
	char comp[256];
	const char *p = path;
	size_t len;
	int rc;

	memset(n, 0, sizeof(*n));
	n->kind = N_ROOT;
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (!strcmp(comp, "ctl") || !strcmp(comp, "error") || !strcmp(comp, ".snapshots")) {
		n->kind = !strcmp(comp, "ctl") ? N_ROOT_CTL : !strcmp(comp, "error") ? N_ROOT_ERROR : N_SNAPDIR;
		rc = next_component(&p, comp, sizeof(comp), &len);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return 0;
		if (n->kind != N_SNAPDIR)
			return -ENOTDIR;
		n->kind = N_SNAPFILE;
		if (!snap_decode(comp, n->snap_name, sizeof(n->snap_name)))
			return -ENAMETOOLONG;
		rc = next_component(&p, comp, sizeof(comp), &len);
		return rc == 0 ? 0 : rc < 0 ? rc : -ENOTDIR;
	}
	str_copy(n->sb_name, sizeof(n->sb_name), comp);
	n->kind = N_SANDBOX;
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (lookup_name(sandbox_entries, ARRAY_LEN(sandbox_entries), comp, len, &n->kind))
		return -ENOENT;
	if (n->kind == N_FSROOT) {
		/* Everything below fs/ is the sandbox's own path, from "/". */
		while (*p == '/')
			p++;
		if (!*p) {
			str_copy(n->path, sizeof(n->path), "/");
			return 0;
		}
		n->kind = N_FILE;
		/* PATH_MAX (4,096 bytes with the NUL) for the sandbox path, as
		 * the sandbox's own kernel would refuse it. */
		if (!str_printf(n->path, sizeof(n->path), "/%s", p))
			return -ENAMETOOLONG;
		if (!names_fit(n->path))
			return -ENAMETOOLONG;
		/* FUSE never sends a trailing slash, but be exact anyway. */
		len = strlen(n->path);
		while (len > 1 && n->path[len - 1] == '/')
			n->path[--len] = '\0';
		return 0;
	}
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (n->kind != N_CMDDIR)
		return -ENOTDIR;
	if (!strcmp(comp, "last")) {
		n->kind = N_CMD_LAST;
		rc = next_component(&p, comp, sizeof(comp), &len);
		/* cmd/last/... is resolved by the kernel through the link; never here */
		return rc == 0 ? 0 : rc < 0 ? rc : -ENOENT;
	}
	if (!is_number(comp, &n->cmd))
		return -ENOENT;
	n->kind = N_CMD;
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (lookup_name(command_entries, ARRAY_LEN(command_entries), comp, len, &n->kind))
		return -ENOENT;
	rc = next_component(&p, comp, sizeof(comp), &len);
	return rc == 0 ? 0 : rc < 0 ? rc : -ENOTDIR;
}

/* ---- the sandbox registry ----------------------------------------------- */

void sandbox_update(struct dfs *fs, struct sandbox *sb, const struct dt_sandbox *d)
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
	str_copy(sb->state, sizeof(sb->state), d->state);
	str_copy(sb->error_reason, sizeof(sb->error_reason), d->error_reason);
	if (d->volumes_known) {
		/* fixed at creation: a list item, which does not have them, keeps them */
		str_copy(sb->volume_paths, sizeof(sb->volume_paths), d->volume_paths);
		sb->volumes_known = true;
	}
	sb->fetched_at = now_mono();
	sb->gone = !strcmp(d->state, "destroyed");
	/* Not running: its commands' processes may be gone with it, so exec
	 * checks their records against the sandbox's processes once it runs. */
	if (fs && fs->exec && strcmp(d->state, "started") && strcmp(d->state, "snapshotting"))
		exec_sandbox_stopped(fs->exec, d->id);
}

struct sandbox *sandbox_add(struct dfs *fs, const struct dt_sandbox *d)
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
		struct dt_error err = { 0 };

		/* marks it gone on 404, updates it on 200; any other error
		 * leaves it as it is, for the next listing to decide */
		if (sandbox_refresh(fs, check[i], &err) < 0 && err.err != ENOENT)
			log_debug("%s: not listed, and asking for it failed: %s", check[i]->id, err.message);
	}
	free(check);
}

/* Refreshes the registry from a full list when it is older than dir_timeout. */
static int registry_refresh(struct dfs *fs, bool force, struct dt_error *err)
{
	struct dt_sandbox *list = NULL;
	size_t n = 0;
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (!force && fs->listed_at > 0 && now_mono() - fs->listed_at < fs->opt.dir_timeout) {
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->lock);

	rc = dt_sandbox_list(fs->dt, &list, &n, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next)
		sb->listed = false;
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < n; i++)
		sandbox_add(fs, &list[i]);
	dt_sandbox_list_free(list, n);
	confirm_unlisted(fs);
	pthread_mutex_lock(&fs->lock);
	fs->listed_at = now_mono();
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

struct sandbox *sandbox_find(struct dfs *fs, const char *name, struct dt_error *err)
{
	struct dt_sandbox d;
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
		dt_error_set(err, -ENOENT, 0, "no sandbox named '%s'", name);
		return NULL;
	}
	memset(&d, 0, sizeof(d));
	rc = dt_sandbox_get(fs->dt, name, &d, err);
	if (rc < 0) {
		dt_sandbox_clear(&d);
		return NULL;
	}
	if (!strcmp(d.state, "destroyed") || !strncmp(d.name, "DESTROYED_", 10)) {
		dt_sandbox_clear(&d);
		dt_error_set(err, -ENOENT, 404, "sandbox '%s' was deleted", name);
		return NULL;
	}
	sb = sandbox_add(fs, &d);
	dt_sandbox_clear(&d);
	if (!sb) {
		dt_error_set(err, -ENOMEM, 0, "out of memory");
		return NULL;
	}
	/* The API found it by id or by name; it is MOUNT/name only if the
	 * naming rule agrees (the name is shown as it is, and unique). */
	pthread_mutex_lock(&fs->lock);
	sb = registry_resolve(&fs->registry, name);
	pthread_mutex_unlock(&fs->lock);
	if (!sb)
		dt_error_set(err, -ENOENT, 0, "no sandbox has the directory name '%s' (list the mount to see "
			     "sandboxes shown by id)", name);
	return sb;
}

int sandbox_refresh(struct dfs *fs, struct sandbox *sb, struct dt_error *err)
{
	struct dt_sandbox d;
	int rc;

	memset(&d, 0, sizeof(d));
	rc = dt_sandbox_get(fs->dt, sb->id, &d, err);
	if (rc == -ENOENT) {
		pthread_mutex_lock(&fs->lock);
		sb->gone = true;
		pthread_mutex_unlock(&fs->lock);
	} else if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		sandbox_update(fs, sb, &d);
		pthread_mutex_unlock(&fs->lock);
	}
	dt_sandbox_clear(&d);
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

void sandbox_box(struct sandbox *sb, struct dt_box *box)
{
	struct dfs *fs = sb->fs;

	if (!sb->toolbox_url[0] && fs && fs->dt) {
		struct dt_error err = { 0 };
		char url[sizeof(sb->toolbox_url)];

		/* A failure leaves it empty: the toolbox call then fails with
		 * "toolbox address unknown", and the next one asks again. */
		if (dt_sandbox_toolbox_url(fs->dt, sb->id, url, sizeof(url), &err) == 0) {
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
	pthread_mutex_lock(&fs->lock);
	str_copy(out, cap, registry_dir_name(&fs->registry, sb));
	pthread_mutex_unlock(&fs->lock);
}

int sandbox_require_running(struct dfs *fs, struct sandbox *sb)
{
	struct dt_error err = { 0 };
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
	/* While a snapshot is taken the sandbox keeps running and so does its toolbox. */
	if (!strcmp(state, "started") || !strcmp(state, "snapshotting"))
		return 0;
	if (age >= fs->opt.attr_timeout || age >= 1.0) {
		rc = sandbox_refresh(fs, sb, &err);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&fs->lock);
		str_copy(state, sizeof(state), sb->state);
		pthread_mutex_unlock(&fs->lock);
		if (!strcmp(state, "started") || !strcmp(state, "snapshotting"))
			return 0;
	}
	/* start also resumes a paused sandbox (the API's start works from paused) */
	if (fs->opt.autostart && (!strcmp(state, "stopped") || !strcmp(state, "archived") ||
				  !strcmp(state, "paused"))) {
		struct dt_sandbox d;

		log_info("%s: starting it for file access (-o autostart)", sb->name);
		memset(&d, 0, sizeof(d));
		pthread_mutex_lock(&sb->op_lock);
		rc = dt_sandbox_action(fs->dt, sb->id, DT_START, NULL, NULL, &d, &err);
		pthread_mutex_unlock(&sb->op_lock);
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			sandbox_update(fs, sb, &d);
			pthread_mutex_unlock(&fs->lock);
		} else {
			sandbox_set_error(sb, "autostart failed: %s", err.message);
		}
		dt_sandbox_clear(&d);
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

/* ---- attributes of the virtual tree ------------------------------------ */

static void fill_virtual(struct dfs *fs, struct stat *st, mode_t mode, off_t size)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = mode;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = size;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = fs->mounted_at;
}

static int resolve(struct dfs *fs, const char *path, struct node *n, struct sandbox **sb)
{
	struct dt_error err = { 0 };
	int rc = node_parse(path, n);

	*sb = NULL;
	if (rc < 0)
		return rc;
	if (n->kind < N_SANDBOX)
		return 0;
	*sb = sandbox_find(fs, n->sb_name, &err);
	if (!*sb)
		return err.err ? -err.err : -ENOENT;
	return 0;
}

static int command_exists(struct dfs *fs, struct sandbox *sb, unsigned n)
{
	struct dt_error err = { 0 };
	struct dt_box box;

	/* Also finds a command that another mount started after our listing. */
	sandbox_box(sb, &box);
	return exec_exists(fs->exec, &box, n, &err);
}

static int newest_command(struct dfs *fs, struct sandbox *sb, unsigned *n)
{
	struct dt_error err = { 0 };
	struct dt_box box;

	sandbox_box(sb, &box);
	return exec_last(fs->exec, &box, n, &err);
}

static int work_target(struct dfs *fs, struct sandbox *sb, char *buf, size_t size)
{
	struct dt_error err = { 0 };
	struct dt_box box;
	int rc;

	if (!sb->workdir[0]) {
		char dir[1024];

		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			/* Without the sandbox we cannot ask; Daytona's default. */
			return str_printf(buf, size, "fs/home/daytona") ? 0 : -ENAMETOOLONG;
		sandbox_box(sb, &box);
		rc = dt_work_dir(fs->dt, &box, dir, sizeof(dir), &err);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&fs->lock);
		str_copy(sb->workdir, sizeof(sb->workdir), dir);
		pthread_mutex_unlock(&fs->lock);
	}
	return str_printf(buf, size, "fs%s%s", sb->workdir[0] == '/' ? "" : "/", sb->workdir) ? 0 :
		-ENAMETOOLONG;
}

static int stream_size(struct dfs *fs, struct sandbox *sb, unsigned n, enum exec_stream s, off_t *size)
{
	struct dt_error err = { 0 };
	struct exec_status st;
	struct dt_box box;
	int rc;

	sandbox_box(sb, &box);
	rc = exec_status(fs->exec, &box, n, false, &st, &err);
	if (rc < 0)
		return rc;
	*size = (off_t)st.size[s];
	/* A running command's empty stream says 1 byte: tail -f treats a file
	 * of size 0 as a pipe and reads it to EOF (the command's end) before it
	 * prints anything; at size 1 it reads that byte, which waits for the
	 * first output, and then follows the size as on any network fs. */
	if (st.state == EXEC_RUNNING && *size == 0)
		*size = 1;
	return 0;
}

static int node_getattr(struct dfs *fs, const struct node *np, struct sandbox *sb, struct stat *st);

static int dfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	if (!path) {
		/* An open file whose name is gone (unlinked while open). */
		if (fi && *(int *)(uintptr_t)fi->fh == FS_HANDLE_FILE)
			return files_fgetattr(fs, fi, st);
		return -ESTALE;
	}
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	rc = node_getattr(fs, &n, sb, st);
	if (rc == 0)
		st->st_ino = n.kind == N_ROOT ? 1 :
			n.kind == N_FILE ? ino_of(fs->inos, sb->id, n.path) : ino_of(fs->inos, "", path);
	return rc;
}

/* The attributes of a parsed path, but its inode number (dfs_getattr). */
static int node_getattr(struct dfs *fs, const struct node *np, struct sandbox *sb, struct stat *st)
{
	const struct node n = *np;
	off_t size = 0;
	unsigned last;
	int rc;

	switch (n.kind) {
	case N_ROOT:
	case N_SNAPDIR:
	case N_SANDBOX:
	case N_CMDDIR:
	case N_FSROOT:
		fill_virtual(fs, st, S_IFDIR | 0755, 0);
		return 0;
	case N_SNAPFILE: {
		struct dt_snapshot s;
		struct dt_error err = { 0 };

		memset(&s, 0, sizeof(s));
		rc = dt_snapshot_get(fs->dt, n.snap_name, &s, &err);
		if (rc == 0) {
			fill_virtual(fs, st, S_IFREG | 0444, s.json ? (off_t)strlen(s.json) : 0);
			st->st_mtim = s.updated_at;
		}
		dt_snapshot_clear(&s);
		return rc;
	}
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
	case N_CMD_STDIN:
		fill_virtual(fs, st, S_IFREG | 0200, 0);
		return 0;
	case N_ROOT_ERROR:
		fill_virtual(fs, st, S_IFREG | 0444, (off_t)strlen(fs->root_error));
		return 0;
	case N_SB_STATUS:
	case N_SB_INFO:
	case N_SB_ERROR:
		fill_virtual(fs, st, S_IFREG | 0444, 0);
		return 0;
	case N_SB_STDOUT:
	case N_SB_STDERR:
	case N_SB_EXIT:
		if (newest_command(fs, sb, &last) == 0 && n.kind != N_SB_EXIT)
			stream_size(fs, sb, last, n.kind == N_SB_STDOUT ? EXEC_STDOUT : EXEC_STDERR, &size);
		fill_virtual(fs, st, S_IFREG | 0444, size);
		return 0;
	case N_CMD_LAST: {
		char target[16];

		rc = newest_command(fs, sb, &last);
		if (rc < 0)
			return rc;
		snprintf(target, sizeof(target), "%u", last);
		fill_virtual(fs, st, S_IFLNK | 0777, (off_t)strlen(target));
		return 0;
	}
	case N_CMD:
	case N_CMD_COMMAND:
	case N_CMD_STDOUT:
	case N_CMD_STDERR:
	case N_CMD_EXIT:
	case N_CMD_STATUS:
		rc = command_exists(fs, sb, n.cmd);
		if (rc < 0)
			return rc;
		if (n.kind == N_CMD) {
			fill_virtual(fs, st, S_IFDIR | 0755, 0);
			return 0;
		}
		if (n.kind == N_CMD_STDOUT || n.kind == N_CMD_STDERR)
			stream_size(fs, sb, n.cmd, n.kind == N_CMD_STDOUT ? EXEC_STDOUT : EXEC_STDERR, &size);
		fill_virtual(fs, st, S_IFREG | 0444, size);
		return 0;
	case N_WORK: {
		char target[1100];

		rc = work_target(fs, sb, target, sizeof(target));
		if (rc < 0)
			return rc;
		fill_virtual(fs, st, S_IFLNK | 0777, (off_t)strlen(target));
		return 0;
	}
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_getattr(fs, sb, n.path, st);
	}
	return -ENOENT;
}

static int dfs_readlink(const char *path, char *buf, size_t size)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	unsigned last;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case N_CMD_LAST:
		rc = newest_command(fs, sb, &last);
		if (rc < 0)
			return rc;
		return str_printf(buf, size, "%u", last) ? 0 : -ENAMETOOLONG;
	case N_WORK:
		return work_target(fs, sb, buf, size);
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_readlink(fs, sb, n.path, buf, size);
	default:
		return -EINVAL;
	}
}

/* ---- directories --------------------------------------------------------- */

static int add_entry(void *buf, fuse_fill_dir_t filler, const char *name)
{
	return filler(buf, name, NULL, 0, 0) ? -ENOMEM : 0;
}

static int readdir_root(struct dfs *fs, void *buf, fuse_fill_dir_t filler)
{
	struct dt_error err = { 0 };
	struct strbuf names = STRBUF_INIT;
	int rc;

	rc = registry_refresh(fs, false, &err);
	if (rc < 0) {
		str_copy(fs->root_error, sizeof(fs->root_error), err.message);
		log_warn("listing sandboxes: %s", err.message);
		return rc;
	}
	add_entry(buf, filler, "ctl");
	add_entry(buf, filler, "error");
	add_entry(buf, filler, ".snapshots");
	/* Copy the names out under the lock, then fill without it. */
	pthread_mutex_lock(&fs->lock);
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next) {
		const char *dir;

		if (sb->gone)
			continue;
		dir = registry_dir_name(&fs->registry, sb);
		sb_add(&names, dir, strlen(dir) + 1);
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t off = 0; off < names.len; off += strlen(names.buf + off) + 1)
		add_entry(buf, filler, names.buf + off);
	sb_free(&names);
	return 0;
}

static int readdir_snapshots(struct dfs *fs, void *buf, fuse_fill_dir_t filler)
{
	struct dt_error err = { 0 };
	struct dt_snapshot *list = NULL;
	size_t n = 0;
	int rc;

	rc = dt_snapshot_list(fs->dt, &list, &n, &err);
	if (rc < 0) {
		log_warn("listing snapshots: %s", err.message);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		struct strbuf name = STRBUF_INIT;

		snap_encode(&name, list[i].name);
		if (!name.oom && name.len)
			add_entry(buf, filler, sb_str(&name));
		sb_free(&name);
	}
	dt_snapshot_list_free(list, n);
	return 0;
}

static int readdir_commands(struct dfs *fs, struct sandbox *sb, void *buf, fuse_fill_dir_t filler)
{
	struct dt_error err = { 0 };
	struct dt_box box;
	unsigned *ns = NULL;
	size_t count = 0;
	int rc;

	sandbox_box(sb, &box);
	rc = exec_list(fs->exec, &box, &ns, &count, &err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < count; i++) {
		char name[16];

		snprintf(name, sizeof(name), "%u", ns[i]);
		add_entry(buf, filler, name);
	}
	if (count)
		add_entry(buf, filler, "last");
	free(ns);
	return 0;
}

static int dfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)flags;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind != N_FILE && n.kind != N_FSROOT) {
		/* files_readdir adds its own */
		add_entry(buf, filler, ".");
		add_entry(buf, filler, "..");
	}
	switch (n.kind) {
	case N_ROOT:
		return readdir_root(fs, buf, filler);
	case N_SNAPDIR:
		return readdir_snapshots(fs, buf, filler);
	case N_SANDBOX:
		for (size_t i = 0; i < ARRAY_LEN(sandbox_entries); i++)
			add_entry(buf, filler, sandbox_entries[i].name);
		return 0;
	case N_CMDDIR:
		return readdir_commands(fs, sb, buf, filler);
	case N_CMD:
		rc = command_exists(fs, sb, n.cmd);
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < ARRAY_LEN(command_entries); i++)
			add_entry(buf, filler, command_entries[i].name);
		return 0;
	case N_FSROOT:
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_readdir(fs, sb, n.path, buf, filler, off, fi);
	default:
		return -ENOTDIR;
	}
}

/* The sandbox's directories get a handle, for their listing's snapshot; the
 * others are small and listed whole each time (offset 0 to the filler: libfuse
 * keeps the listing between the kernel's reads). */
static int dfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct node n;
	int rc = node_parse(path, &n);

	fi->fh = 0;
	if (rc < 0)
		return rc;
	if (n.kind == N_FILE || n.kind == N_FSROOT)
		return files_opendir(dfs_get(), fi);
	return 0;
}

static int dfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	if (fi->fh)
		files_releasedir(dfs_get(), fi);
	return 0;
}

/* For operations on the sandbox's own files: 0 with the node and its running
 * sandbox, 1 when the path is not under fs/, or a negative errno. */
static int file_node(const char *path, struct node *n, struct sandbox **sb)
{
	struct dfs *fs = dfs_get();
	int rc = resolve(fs, path, n, sb);

	if (rc < 0)
		return rc;
	if (n->kind != N_FILE)
		return 1;
	return sandbox_require_running(fs, *sb);
}

static int dfs_mkdir(const char *path, mode_t mode)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = node_parse(path, &n);
	if (rc < 0)
		return rc;
	if (n.kind == N_SANDBOX)
		return ctl_create_default(fs, n.sb_name);
	if (n.kind != N_FILE)
		return n.kind == N_FSROOT ? -EEXIST : -EPERM;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	rc = sandbox_require_running(fs, sb);
	if (rc < 0)
		return rc;
	return files_mkdir(fs, sb, n.path, mode);
}

static int dfs_rmdir(const char *path)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind == N_SANDBOX) {
		/* Destroying a sandbox is never a side effect of rmdir or rm -r. */
		sandbox_set_error(sb, "rmdir does not delete a sandbox: echo delete > %s/%s/ctl",
				  fs->mountpoint, sb->name);
		return -EPERM;
	}
	if (n.kind != N_FILE)
		return -EPERM;
	rc = sandbox_require_running(fs, sb);
	if (rc < 0)
		return rc;
	return files_rmdir(fs, sb, n.path);
}

static int dfs_unlink(const char *path)
{
	struct dfs *fs = dfs_get();
	struct dt_error err = { 0 };
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind == N_SNAPFILE) {
		struct dt_snapshot s;

		memset(&s, 0, sizeof(s));
		rc = dt_snapshot_get(fs->dt, n.snap_name, &s, &err);
		if (rc == 0)
			rc = dt_snapshot_delete(fs->dt, s.id, &err);
		if (rc < 0) {
			str_copy(fs->root_error, sizeof(fs->root_error), err.message);
			log_warn("deleting snapshot %s: %s", n.snap_name, err.message);
		}
		dt_snapshot_clear(&s);
		return rc;
	}
	if (n.kind != N_FILE)
		return -EPERM;
	rc = sandbox_require_running(fs, sb);
	if (rc < 0)
		return rc;
	return files_unlink(fs, sb, n.path);
}

static int dfs_rename(const char *from, const char *to, unsigned int flags)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sa, *sb;
	struct node na, nb;
	int rc;

	rc = resolve(fs, from, &na, &sa);
	if (rc < 0)
		return rc;
	rc = node_parse(to, &nb);
	if (rc < 0)
		return rc;
	if (na.kind != N_FILE || nb.kind != N_FILE)
		return -EPERM;
	rc = resolve(fs, to, &nb, &sb);
	if (rc < 0)
		return rc;
	if (sa != sb)
		return -EXDEV;   /* mv falls back to copy and delete */
	rc = sandbox_require_running(fs, sa);
	if (rc < 0)
		return rc;
	rc = files_rename(fs, sa, na.path, nb.path, flags);
	if (rc == 0)
		ino_rename(fs->inos, sa->id, na.path, nb.path);   /* also to a .fuse_hidden name */
	return rc;
}

static int dfs_symlink(const char *target, const char *path)
{
	struct sandbox *sb;
	struct node n;
	int rc = file_node(path, &n, &sb);

	if (rc)
		return rc < 0 ? rc : -EPERM;
	return files_symlink(dfs_get(), sb, target, n.path);
}

static int dfs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind != N_FILE)
		return -EPERM;
	rc = sandbox_require_running(fs, sb);
	if (rc < 0)
		return rc;
	return files_mknod(fs, sb, n.path, mode, rdev);
}

static int dfs_link(const char *from, const char *to)
{
	struct node n;
	int rc;

	/* A name that could never be made is refused as such first. */
	rc = node_parse(from, &n);
	if (rc == 0)
		rc = node_parse(to, &n);
	if (rc < 0)
		return rc;
	return -EPERM;   /* the toolbox has no hard links; SEMANTICS.md says so */
}

static int dfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)fi;
	if (!path)
		return -ENOSYS;
	rc = file_node(path, &n, &sb);
	if (rc)
		return rc < 0 ? rc : -EPERM;
	return files_chmod(dfs_get(), sb, n.path, mode);
}

static int dfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)fi;
	if (!path)
		return -ENOSYS;
	rc = file_node(path, &n, &sb);
	if (rc)
		return rc < 0 ? rc : -EPERM;
	return files_chown(dfs_get(), sb, n.path, uid, gid);
}

static int dfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)fi;
	if (!path)
		return -ENOSYS;
	rc = file_node(path, &n, &sb);
	if (rc)
		return rc < 0 ? rc : 0;   /* touch on a control file is harmless */
	return files_utimens(dfs_get(), sb, n.path, tv);
}

static int dfs_statfs(const char *path, struct statvfs *st)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;

	if (resolve(fs, path, &n, &sb) == 0 && (n.kind == N_FILE || n.kind == N_FSROOT) &&
	    sandbox_require_running(fs, sb) == 0)
		return files_statfs(fs, sb, st);
	/* The virtual tree holds no data: report an empty filesystem that has room. */
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = 4096;
	st->f_blocks = st->f_bfree = st->f_bavail = 1ULL << 28;
	st->f_files = st->f_ffree = st->f_favail = 1ULL << 20;
	st->f_namemax = 255;
	return 0;
}

/* ---- virtual files ------------------------------------------------------ */

enum handle_type { H_FILE = FS_HANDLE_FILE, H_DIR = FS_HANDLE_DIR, H_TEXT, H_CTL, H_STREAM, H_EXIT, H_STDIN };

/* Every fi->fh points to a struct that starts with the handle type. */
struct vhandle {
	int type;
	struct node node;
	struct sandbox *sb;
	unsigned cmd;
	enum exec_stream stream;
	struct strbuf text;        /* H_TEXT: the content made at open */
	struct strbuf line;        /* H_CTL: a partial line waiting for its newline */
	bool discarding;           /* H_CTL: the rest of a refused line is ignored up to its newline */
	uint64_t read_end;         /* H_STREAM: the furthest offset given to the reader */
	bool saw_end;              /* the command's end was seen (caches dropped) */
	pthread_mutex_t lock;
};

static int text_of(struct dfs *fs, struct vhandle *h)
{
	struct dt_error err = { 0 };
	struct dt_box box;
	int rc;

	switch (h->node.kind) {
	case N_ROOT_ERROR:
		if (fs->root_error[0])
			sb_addf(&h->text, "%s\n", fs->root_error);
		return 0;
	case N_SB_ERROR:
		if (h->sb->error[0])
			sb_addf(&h->text, "%s\n", h->sb->error);
		return 0;
	case N_SB_STATUS:
		if (h->sb->progress[0]) {
			sb_addf(&h->text, "%s\n", h->sb->progress);
			return 0;
		}
		rc = sandbox_refresh(fs, h->sb, &err);
		if (rc < 0)
			return rc;
		if (h->sb->error_reason[0])
			sb_addf(&h->text, "%s: %s\n", h->sb->state, h->sb->error_reason);
		else
			sb_addf(&h->text, "%s\n", h->sb->state);
		return 0;
	case N_SB_INFO: {
		struct dt_sandbox d;

		memset(&d, 0, sizeof(d));
		rc = dt_sandbox_get(fs->dt, h->sb->id, &d, &err);
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			sandbox_update(fs, h->sb, &d);
			pthread_mutex_unlock(&fs->lock);
			if (d.json)
				sb_adds(&h->text, d.json);
		}
		dt_sandbox_clear(&d);
		return rc;
	}
	case N_SNAPFILE: {
		struct dt_snapshot s;

		memset(&s, 0, sizeof(s));
		rc = dt_snapshot_get(fs->dt, h->node.snap_name, &s, &err);
		if (rc == 0 && s.json)
			sb_adds(&h->text, s.json);
		dt_snapshot_clear(&s);
		return rc;
	}
	case N_CMD_COMMAND: {
		char *t = NULL;
		size_t len = 0;

		sandbox_box(h->sb, &box);
		rc = exec_command_text(fs->exec, &box, h->cmd, &t, &len, &err);
		if (rc == 0) {
			sb_add(&h->text, t, len);
			if (len && t[len - 1] != '\n')
				sb_addc(&h->text, '\n');
		}
		free(t);
		return rc;
	}
	case N_CMD_STATUS: {
		struct exec_status st;

		sandbox_box(h->sb, &box);
		rc = exec_status(fs->exec, &box, h->cmd, false, &st, &err);
		if (rc == 0)
			sb_addf(&h->text, "%s\n", exec_state_name(st.state));
		return rc;
	}
	default:
		return 0;
	}
}

static int vhandle_open(struct dfs *fs, struct node *n, struct sandbox *sb, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;
	bool writable;
	struct vhandle *h;
	unsigned last;
	int rc;

	switch (n->kind) {
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
	case N_CMD_STDIN:
		writable = true;
		break;
	default:
		writable = false;
	}
	if (acc != O_RDONLY && !writable)
		return -EACCES;
	if (acc != O_WRONLY && writable && n->kind != N_SB_CTL && n->kind != N_ROOT_CTL)
		return -EACCES;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->node = *n;
	h->sb = sb;
	h->cmd = n->cmd;
	switch (n->kind) {
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
		h->type = H_CTL;
		break;
	case N_CMD_STDIN:
		h->type = H_STDIN;
		break;
	case N_SB_STDOUT:
	case N_SB_STDERR:
	case N_SB_EXIT:
		rc = newest_command(fs, sb, &last);
		if (rc == -ENOENT) {
			/* No command has run yet: the files exist and are empty. */
			h->type = H_TEXT;
			break;
		}
		if (rc < 0)
			goto fail;
		h->cmd = last;
		h->type = n->kind == N_SB_EXIT ? H_EXIT : H_STREAM;
		h->stream = n->kind == N_SB_STDERR ? EXEC_STDERR : EXEC_STDOUT;
		break;
	case N_CMD_STDOUT:
	case N_CMD_STDERR:
		h->type = H_STREAM;
		h->stream = n->kind == N_CMD_STDERR ? EXEC_STDERR : EXEC_STDOUT;
		break;
	case N_CMD_EXIT:
		h->type = H_EXIT;
		break;
	default:
		h->type = H_TEXT;
		rc = text_of(fs, h);
		if (rc < 0)
			goto fail;
		if (h->text.oom) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	/* Content is made at open and may change between opens: no page cache,
	 * and no size the kernel would trust. */
	fi->direct_io = 1;
	if (h->type == H_CTL || h->type == H_STDIN)
		fi->nonseekable = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
fail:
	sb_free(&h->text);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return rc;
}

static void vhandle_free(struct vhandle *h)
{
	sb_free(&h->text);
	sb_free(&h->line);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int dfs_open(const char *path, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_open(fs, sb, n.path, fi, false, 0);
	case N_ROOT:
	case N_SNAPDIR:
	case N_SANDBOX:
	case N_CMDDIR:
	case N_CMD:
	case N_FSROOT:
		return -EISDIR;
	case N_CMD_COMMAND:
	case N_CMD_STDOUT:
	case N_CMD_STDERR:
	case N_CMD_EXIT:
	case N_CMD_STATUS:
	case N_CMD_STDIN:
	case N_CMD_CTL:
		rc = command_exists(fs, sb, n.cmd);
		if (rc < 0)
			return rc;
		break;
	default:
		break;
	}
	return vhandle_open(fs, &n, sb, fi);
}

static int dfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct sandbox *sb;
	struct node n;
	int rc = file_node(path, &n, &sb);

	if (rc)
		return rc < 0 ? rc : -EACCES;
	return files_open(dfs_get(), sb, n.path, fi, true, mode);
}

static int handle_type(struct fuse_file_info *fi)
{
	return *(int *)(uintptr_t)fi->fh;
}

static void command_ended(struct dfs *fs, const char *sandbox_id, unsigned n);

/* The reader learns that a command ended, possibly before the exec thread's
 * on_end callback has dropped the caches: drop them now, so that what the
 * command changed is seen as soon as exit (or EOF) is. */
static void saw_command_end(struct dfs *fs, struct vhandle *h)
{
	if (h->saw_end)
		return;
	h->saw_end = true;
	command_ended(fs, h->sb->id, h->cmd);
}

static int read_stream(struct dfs *fs, struct vhandle *h, char *buf, size_t size, off_t off)
{
	struct dt_error err = { 0 };
	struct dt_box box;
	ssize_t n;

	sandbox_box(h->sb, &box);
	n = exec_read(fs->exec, &box, h->cmd, h->stream, buf, size, (uint64_t)off, true, &err);
	if (n > 0) {
		pthread_mutex_lock(&h->lock);
		if ((uint64_t)off + (uint64_t)n > h->read_end)
			h->read_end = (uint64_t)off + (uint64_t)n;
		pthread_mutex_unlock(&h->lock);
	}
	if (n == 0 && size > 0)
		saw_command_end(fs, h);
	if (n < 0 && n != -EINTR)
		log_warn("%s: reading command %u output: %s", h->sb->name, h->cmd, err.message);
	return (int)n;
}

static int read_exit(struct dfs *fs, struct vhandle *h, char *buf, size_t size, off_t off)
{
	struct dt_error err = { 0 };
	struct exec_status st;
	struct dt_box box;
	int rc;

	if (!h->text.len) {
		/* The exit file waits until the command has ended. */
		sandbox_box(h->sb, &box);
		rc = exec_status(fs->exec, &box, h->cmd, true, &st, &err);
		if (rc < 0)
			return rc;
		saw_command_end(fs, h);
		sb_addf(&h->text, "%d\n", st.exit_code);
	}
	if ((size_t)off >= h->text.len)
		return 0;
	if (size > h->text.len - (size_t)off)
		size = h->text.len - (size_t)off;
	memcpy(buf, h->text.buf + off, size);
	return (int)size;
}

static int dfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	int rc;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		return files_read(fs, fi, buf, size, off);
	case H_STREAM:
		return read_stream(fs, h, buf, size, off);
	case H_EXIT:
		pthread_mutex_lock(&h->lock);
		rc = read_exit(fs, h, buf, size, off);
		pthread_mutex_unlock(&h->lock);
		return rc;
	case H_TEXT:
		if ((size_t)off >= h->text.len)
			return 0;
		if (size > h->text.len - (size_t)off)
			size = h->text.len - (size_t)off;
		memcpy(buf, h->text.buf + off, size);
		return (int)size;
	default:
		return 0;   /* ctl and stdin read as empty */
	}
}

/* Runs one complete line written to a ctl file. */
static int run_ctl_line(struct dfs *fs, struct vhandle *h, const char *line, size_t len)
{
	switch (h->node.kind) {
	case N_ROOT_CTL:
		return ctl_run_root(fs, line, len);
	case N_SB_CTL:
		return ctl_run_sandbox(fs, h->sb, line, len);
	case N_CMD_CTL:
		return ctl_run_command(fs, h->sb, h->cmd, line, len);
	default:
		return -EBADF;
	}
}

#define CTL_LINE_MAX (1024 * 1024)

/*
 * A line over CTL_LINE_MAX: the write that reaches the limit fails with
 * EFBIG from the refused line's first byte on, and the part of the line
 * taken before is dropped. Nothing of it runs, neither at a newline nor at
 * close, and input is ignored up to the next newline of a LATER write: the
 * kernel reports the bytes it sent before the failing part of a large
 * write(2) as a short count, so the writer sends the refused rest again,
 * newline included, and that rest must not run as a line of its own.
 */
static int refuse_line(struct vhandle *h)
{
	sb_reset(&h->line);
	h->discarding = true;
	return -EFBIG;
}

/* A write while discarding: ignored, and refused, up to the refused line's
 * end; the rest of the write goes with it (the writer sees the write fail),
 * and so does, up to its newline, a line that the rest began. */
static int discard_write(struct vhandle *h, const char *buf, size_t size)
{
	const char *nl = memchr(buf, '\n', size);

	if (nl)
		h->discarding = buf[size - 1] != '\n';
	return -EFBIG;
}

/* ctl files take one command per line and run each as soon as its line is
 * complete, so that the write that carries it gets its error. A last line
 * without a newline runs at close (flush). A line over CTL_LINE_MAX is
 * refused whole (refuse_line). */
static int write_ctl(struct dfs *fs, struct vhandle *h, const char *buf, size_t size)
{
	size_t start = 0;
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	if (h->discarding) {
		rc = discard_write(h, buf, size);
		goto out;
	}
	for (size_t i = 0; i < size; i++) {
		if (buf[i] != '\n')
			continue;
		if (h->line.len + (i - start) > CTL_LINE_MAX) {
			rc = refuse_line(h);
			goto out;
		}
		sb_add(&h->line, buf + start, i - start);
		start = i + 1;
		if (h->line.oom) {
			rc = -ENOMEM;
			goto out;
		}
		rc = run_ctl_line(fs, h, sb_str(&h->line), h->line.len);
		sb_reset(&h->line);
		if (rc < 0)
			goto out;
	}
	if (h->line.len + (size - start) > CTL_LINE_MAX) {
		rc = refuse_line(h);
		goto out;
	}
	sb_add(&h->line, buf + start, size - start);
	rc = h->line.oom ? -ENOMEM : (int)size;
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static int dfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	struct dt_error err = { 0 };
	struct dt_box box;
	ssize_t n;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		return files_write(fs, fi, buf, size, off);
	case H_CTL:
		return write_ctl(fs, h, buf, size);
	case H_STDIN:
		sandbox_box(h->sb, &box);
		n = exec_stdin_write(fs->exec, &box, h->cmd, buf, size, &err);
		if (n < 0)
			sandbox_set_error(h->sb, "stdin of command %u: %s", h->cmd, err.message);
		return (int)n;
	default:
		return -EBADF;
	}
}

static int dfs_flush(const char *path, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	int rc = 0;

	(void)path;
	switch (handle_type(fi)) {
	case H_FILE:
		return files_flush(fs, fi);
	case H_CTL:
		pthread_mutex_lock(&h->lock);
		if (h->line.len) {
			rc = run_ctl_line(fs, h, sb_str(&h->line), h->line.len);
			sb_reset(&h->line);
		}
		pthread_mutex_unlock(&h->lock);
		return rc;
	case H_STDIN: {
		/* close() returns once what was written is in the command's
		 * stdin, with the error of a delivery that failed. */
		struct dt_error err = { 0 };
		struct dt_box box;

		sandbox_box(h->sb, &box);
		rc = exec_stdin_flush(fs->exec, &box, h->cmd, &err);
		if (rc < 0 && rc != -EINTR)
			sandbox_set_error(h->sb, "stdin of command %u: %s", h->cmd, err.message);
		return rc;
	}
	default:
		return 0;
	}
}

static int dfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	if (handle_type(fi) == H_FILE)
		return files_fsync(dfs_get(), fi);
	return 0;
}

/* fsync of a sandbox directory waits for the changes queued under it
 * (deletes, times: fs_deferred.c) and reports one that failed. */
static int dfs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb;
	struct node n;
	int rc;

	(void)datasync;
	(void)fi;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	if (n.kind != N_FILE && n.kind != N_FSROOT)
		return 0;
	return files_fsyncdir(fs, sb, n.path);
}

static int dfs_release(const char *path, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	struct dt_error err = { 0 };
	struct dt_box box;

	(void)path;
	if (handle_type(fi) == H_FILE)
		return files_release(fs, fi);
	if (h->type == H_STDIN) {
		/* Closing stdin sends EOF to the command. */
		sandbox_box(h->sb, &box);
		if (exec_stdin_close(fs->exec, &box, h->cmd, &err) < 0)
			sandbox_set_error(h->sb, "closing stdin of command %u: %s", h->cmd, err.message);
	}
	vhandle_free(h);
	return 0;
}

static int dfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct dfs *fs = dfs_get();
	struct sandbox *sb = NULL;
	struct node n;
	int rc;

	if (fi && handle_type(fi) == H_FILE)
		return files_truncate(fs, NULL, NULL, size, fi);
	if (fi)
		return 0;   /* "> ctl" truncates before it writes: nothing to do */
	if (!path)
		return -ENOSYS;
	rc = resolve(fs, path, &n, &sb);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case N_FILE:
		rc = sandbox_require_running(fs, sb);
		if (rc < 0)
			return rc;
		return files_truncate(fs, sb, n.path, size, NULL);
	case N_ROOT_CTL:
	case N_SB_CTL:
	case N_CMD_CTL:
	case N_CMD_STDIN:
		return 0;
	default:
		return -EACCES;
	}
}

static void poll_wake(void *ctx, void *ph)
{
	(void)ctx;
	fuse_notify_poll(ph);
	fuse_pollhandle_destroy(ph);
}

static bool request_interrupted(void)
{
	return fuse_interrupted() != 0;
}

static int dfs_poll(const char *path, struct fuse_file_info *fi, struct fuse_pollhandle *ph, unsigned *reventsp)
{
	struct dfs *fs = dfs_get();
	struct vhandle *h = (struct vhandle *)(uintptr_t)fi->fh;
	struct dt_box box;
	int ready;

	(void)path;
	if (handle_type(fi) != H_STREAM) {
		/* Everything else is always ready, like a regular file. */
		if (ph)
			fuse_pollhandle_destroy(ph);
		*reventsp |= POLLIN | POLLOUT;
		return 0;
	}
	sandbox_box(h->sb, &box);
	/* The kernel does not tell the reader's offset: readiness means "data
	 * past what this handle has been given", tracked as the furthest read. */
	ready = exec_poll(fs->exec, &box, h->cmd, h->stream, h->read_end, ph);
	/* exec keeps the handle only when it is not ready (0): else it is ours. */
	if (ready != 0 && ph)
		fuse_pollhandle_destroy(ph);
	if (ready < 0)
		return ready;
	if (ready)
		*reventsp |= POLLIN;
	return 0;
}

static void *dfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct dfs *fs = dfs_get();
	double kernel_ttl;

	fs->fuse = fuse_get_context()->fuse;
	/* Our own cache decides freshness. The kernel may keep names and
	 * attributes for at most a second (never longer than ours): resolving
	 * every path component in user space costs ~120 us a step, which made
	 * ls -l of 10,000 files take seconds. When a command ends, the kernel's
	 * entries of that sandbox are invalidated explicitly (on_command_end),
	 * so a command's changes still show at once. */
	kernel_ttl = fs->opt.attr_timeout < 1.0 ? fs->opt.attr_timeout : 1.0;
	cfg->entry_timeout = kernel_ttl;
	cfg->attr_timeout = kernel_ttl;
	/* fuse_invalidate_path() reaches inodes, not negative dentries: the kernel
	 * keeps no "does not exist", so a file a command made is never hidden; our
	 * negative cache answers those lookups without a request. */
	cfg->negative_timeout = 0;
	/* Keep the page cache of a file across opens while its mtime and size
	 * are unchanged: a second cat of an unchanged file costs nothing. */
	cfg->auto_cache = 1;
	/* An unlinked open file lives on in its stage. libfuse "hides" it
	 * under a .fuse_hidden name so that fstat and fchmod of it still have a
	 * path (with hard_remove they fail with ESTALE); fs_open_files.c keeps that
	 * name local: it never exists in the sandbox (files_rename). */
	cfg->hard_remove = 0;
	/* Paths everywhere (an unlinked open file has its hidden name). */
	cfg->nullpath_ok = 0;
	/* libfuse's own numbers change whenever the kernel forgets a node;
	 * ours stay for the mount's life (inode.h). */
	cfg->use_ino = 1;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* After the daemon's fork, which threads do not survive. */
	recover_start(fs->recovery);
	return fs;
}

static void dfs_destroy(void *private_data)
{
	struct dfs *fs = private_data;

	recover_stop(fs->recovery);
	fs->recovery = NULL;
	/* Unmount: upload anything still staged. */
	files_flush_all(fs);
}

static const struct fuse_operations dfs_ops = {
	.init = dfs_init,
	.destroy = dfs_destroy,
	.getattr = dfs_getattr,
	.readlink = dfs_readlink,
	.opendir = dfs_opendir,
	.readdir = dfs_readdir,
	.releasedir = dfs_releasedir,
	.mkdir = dfs_mkdir,
	.rmdir = dfs_rmdir,
	.unlink = dfs_unlink,
	.rename = dfs_rename,
	.symlink = dfs_symlink,
	.mknod = dfs_mknod,
	.link = dfs_link,
	.chmod = dfs_chmod,
	.chown = dfs_chown,
	.utimens = dfs_utimens,
	.truncate = dfs_truncate,
	.open = dfs_open,
	.create = dfs_create,
	.read = dfs_read,
	.write = dfs_write,
	.flush = dfs_flush,
	.fsync = dfs_fsync,
	.fsyncdir = dfs_fsyncdir,
	.release = dfs_release,
	.statfs = dfs_statfs,
	.poll = dfs_poll,
};

const struct fuse_operations *dfs_operations(void)
{
	return &dfs_ops;
}

/* ---- construction -------------------------------------------------------- */

/* Drops what we and the kernel know of a sandbox's files. Called from an
 * exec thread, never from a FUSE request, and with no lock held: the kernel
 * takes directory locks to invalidate entries. */
static void invalidate_sandbox_everywhere(struct dfs *fs, const char *sandbox_id)
{
	char name[256], *paths = NULL;
	struct sandbox *sb;
	size_t len = 0;

	cache_invalidate_sandbox_paths(fs->cache, sandbox_id, &paths, &len);
	name[0] = '\0';
	pthread_mutex_lock(&fs->lock);
	sb = registry_by_id(&fs->registry, sandbox_id);
	if (sb)
		str_copy(name, sizeof(name), registry_dir_name(&fs->registry, sb));
	pthread_mutex_unlock(&fs->lock);
	if (fs->fuse && name[0] && paths) {
		for (size_t off = 0; off < len; off += strlen(paths + off) + 1) {
			char mpath[4400];

			if (str_printf(mpath, sizeof(mpath), "/%s/fs%s", name,
				       strcmp(paths + off, "/") ? paths + off : "")) {
				/* -ENOENT: the kernel does not hold it; nothing to do. */
				fuse_invalidate_path(fs->fuse, mpath);
			}
		}
	}
	free(paths);
	/* and what fs_open_files.c keeps beside the cache (link targets) */
	files_invalidate_sandbox(fs, sandbox_id);
}

/* Drops a sandbox's caches for the end of command n, once: whichever of the
 * exit reader and the exec thread sees the end first does it. */
static void command_ended(struct dfs *fs, const char *sandbox_id, unsigned n)
{
	bool first = true;

	pthread_mutex_lock(&fs->lock);
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next) {
		if (strcmp(sb->id, sandbox_id))
			continue;
		for (size_t i = 0; i < ARRAY_LEN(sb->ended_seen); i++)
			if (sb->ended_seen[i] == n)
				first = false;
		if (first)
			sb->ended_seen[sb->ended_next++ % ARRAY_LEN(sb->ended_seen)] = n;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!first)
		return;
	log_debug("command %u in %s ended: dropping the sandbox's cached metadata", n, sandbox_id);
	invalidate_sandbox_everywhere(fs, sandbox_id);
}

static void on_command_end(void *ctx, const char *sandbox_id, unsigned n)
{
	command_ended(ctx, sandbox_id, n);
}

struct dfs *dfs_new(const struct dfs_options *o, char *err, size_t errlen)
{
	struct http_config hcfg;
	struct dt_config dcfg;
	struct cache_config ccfg;
	struct exec_options eo;
	struct dfs *fs = calloc(1, sizeof(*fs));

	if (!fs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	fs->opt = *o;   /* the strings stay owned by main's options */
	pthread_mutex_init(&fs->lock, NULL);
	fs->uid = getuid();
	fs->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &fs->mounted_at);

	http_config_defaults(&hcfg);
	hcfg.connect_timeout_ms = o->connect_timeout_s * 1000;
	hcfg.request_timeout_ms = o->timeout_s * 1000;
	hcfg.stall_timeout_ms = o->timeout_s * 1000;
	hcfg.max_retries = o->retries;
	hcfg.max_connections = o->connections;
	hcfg.user_agent = "daytonafs/" DAYTONAFS_VERSION;
	fs->http = http_client_new(&hcfg);
	if (!fs->http) {
		snprintf(err, errlen, "cannot initialise libcurl");
		goto fail;
	}

	memset(&dcfg, 0, sizeof(dcfg));
	dcfg.api_url = o->api_url;
	dcfg.api_key = o->api_key;
	dcfg.jwt = o->api_key ? NULL : o->jwt;
	dcfg.org_id = o->org_id;
	dcfg.target = o->target;
	dcfg.keepalive = o->keepalive;
	dcfg.wait_timeout_ms = o->wait_timeout_s * 1000;
	fs->dt = dt_client_new(fs->http, &dcfg);
	if (!fs->dt) {
		snprintf(err, errlen, "cannot create the Daytona client");
		goto fail;
	}

	cache_config_defaults(&ccfg);
	ccfg.attr_ttl = o->attr_timeout;
	ccfg.dir_ttl = o->dir_timeout;
	ccfg.neg_ttl = o->negative_timeout;
	fs->cache = cache_new(&ccfg);
	fs->inos = ino_table_new(INO_RENAMES_KEPT);
	if (!fs->cache || !fs->inos) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	fs->stage = stage_area_open(o->cache_dir);
	if (!fs->stage && errno == EBUSY) {
		snprintf(err, errlen, "cache directory %s is in use by another daytonafs mount: "
			 "give each mount its own -o cache_dir", o->cache_dir);
		goto fail;
	}
	if (!fs->stage) {
		snprintf(err, errlen, "cannot use cache directory %s: %s", o->cache_dir, strerror(errno));
		goto fail;
	}
	fs->recovery = recover_scan(fs);

	exec_options_defaults(&eo);
	if (o->state_dir)
		eo.state_dir = o->state_dir;
	eo.poll_min_ms = o->poll_min_ms;
	eo.poll_max_ms = o->poll_max_ms;
	eo.list_ttl_ms = (long)(o->dir_timeout * 1000);
	eo.interrupted = request_interrupted;
	eo.on_end = on_command_end;
	eo.wake = poll_wake;
	eo.ctx = fs;
	fs->exec = exec_mgr_new(fs->dt, &eo);
	if (!fs->exec) {
		snprintf(err, errlen, "cannot start the command manager");
		goto fail;
	}
	fs->files = open_table_new();
	if (!fs->files) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return fs;
fail:
	dfs_free(fs);
	return NULL;
}

int dfs_check(struct dfs *fs, char *err, size_t errlen)
{
	struct dt_error e = { 0 };
	int rc = dt_ping(fs->dt, &e);

	if (rc == 0)
		return 0;
	if (e.http_status == 401 || e.http_status == 403)
		snprintf(err, errlen, "%s rejected the credentials (%s): check DAYTONA_API_KEY or the key file",
			 fs->opt.api_url, e.message);
	else if (e.http_status)
		snprintf(err, errlen, "%s answered HTTP %ld (%s): is DAYTONA_API_URL right? It ends in /api",
			 fs->opt.api_url, e.http_status, e.message);
	else
		snprintf(err, errlen, "cannot reach %s: %s: check DAYTONA_API_URL and the network",
			 fs->opt.api_url, e.message);
	return rc;
}

void dfs_free(struct dfs *fs)
{
	struct sandbox *sb, *next;

	if (!fs)
		return;
	if (fs->exec)
		exec_mgr_free(fs->exec);
	recover_stop(fs->recovery);
	if (fs->files)
		open_table_free(fs->files);
	if (fs->stage)
		stage_area_close(fs->stage);
	if (fs->cache)
		cache_free(fs->cache);
	ino_table_free(fs->inos);
	if (fs->dt)
		dt_client_free(fs->dt);
	if (fs->http)
		http_client_free(fs->http);
	for (sb = fs->sandboxes; sb; sb = next) {
		next = sb->next;
		pthread_mutex_destroy(&sb->op_lock);
		free(sb);
	}
	registry_free(&fs->registry);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}
