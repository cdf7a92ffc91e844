/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.c - the FUSE operations of daytonafs: a mount path is parsed into a node
 * (the root, a sandbox, one of its control files, a command, or a file of the
 * sandbox's own filesystem: fs_path.c), and each operation hands the node to
 * the part that serves it: fs_tree.c (operations on paths) and fs_virtual.c
 * (operations on handles) dispatch to the sandbox registry (fs_sandbox.c,
 * registry.c), the virtual files (fs_virtual.c), the file proxy (the files of
 * fs_files_int.h) and the ctl commands (fs_ctl.c). This file holds the
 * operations table, init and destroy, and the construction of the
 * filesystem.
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

#include "bdi.h"
#include "fs_int.h"
#include "log.h"
#include "recover.h"
#include "strbuf.h"
#include "urlenc.h"
#include "rfs.h"

/*
 * The kernel side of sequential I/O (measured by scripts/bench against a
 * memcpy-only FUSE file system, scripts/bench-ceiling/memfs.c, tuned alike):
 *
 * - Requests of up to 1 MiB each way. A write(2) arrives as WRITEs of at most
 *   max_write; max_pages (the kernel's per-request page limit, read and
 *   write) follows it in libfuse 3.14, whose buffers hold 1 MiB at most.
 *   (1 MiB is libfuse's default already: stated here so that it stays.)
 * - The readahead of the mount's bdi: reads arrive as the readahead window,
 *   128 KiB by default (256 KiB for cat, its buffer). With 1 MiB they arrive
 *   as 1 MiB READs: a quarter of the round trips through user space. Only
 *   root may set it (bdi.h); conn->max_readahead then says the same, since
 *   the kernel takes the smaller of the two when INIT is answered.
 * - No splice: libfuse splices WRITE data in only for write_buf, and a
 *   spliced reply of data that is in memory (our ring, our stage) costs a
 *   vmsplice and a splice instead of one writev; memfs measured no gain.
 * - No writeback_cache: with it the kernel owns the size and mtime of a
 *   cached file (it ignores the size getattr answers), so a file a sandbox
 *   command grew or truncated would keep its old size in the kernel; writes
 *   would also be delayed past close's FLUSH reply only to be replayed, and a
 *   partial-page write would first read the page from the sandbox.
 */
static void dfs_tune_kernel(struct dfs *fs, struct fuse_conn_info *conn)
{
	const unsigned kb = (unsigned)fs->opt.read_ahead_kb;
	int rc;

	conn->max_write = 1024 * 1024;
	if (!kb)
		return;
	rc = bdi_set_read_ahead(fs->mountpoint, kb);
	if (rc < 0) {
		log_info("readahead stays the kernel's (%u KiB): cannot set %u KiB on %s's bdi: %s",
			 conn->max_readahead / 1024, kb, fs->mountpoint, strerror(-rc));
		return;
	}
	conn->max_readahead = kb * 1024;
	log_debug("readahead of %s: %u KiB", fs->mountpoint, kb);
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
	dfs_tune_kernel(fs, conn);
	/* After the daemon's fork, which threads do not survive. */
	recover_start(fs->recovery);
	return fs;
}

static void dfs_destroy(void *private_data)
{
	struct dfs *fs = private_data;
	struct recovery *r;

	releases_wait(fs);
	/* Out of reach of sandbox_update's recover_wake first. */
	pthread_mutex_lock(&fs->lock);
	r = fs->recovery;
	fs->recovery = NULL;
	pthread_mutex_unlock(&fs->lock);
	recover_stop(r);
	/* Unmount: upload anything still staged. */
	files_flush_all(fs);
}

/*
 * ENOSYS from these tells the kernel the daemon lacks the operation for good:
 * after an open's, it opens every file without asking (fh 0, which
 * dfs_flush and dfs_read would take for a handle); after a flush's or an
 * fsync's, it stops sending them and reports success. A provider that lacks
 * what a file needs (Vercel's build log, say) returns ENOSYS from deep
 * down: the kernel gets EOPNOTSUPP instead, for this call only.
 */
static int not_enosys(int rc)
{
	return rc == -ENOSYS ? -EOPNOTSUPP : rc;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	return not_enosys(dfs_open(path, fi));
}

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	return not_enosys(dfs_opendir(path, fi));
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int rc = dfs_create(path, mode, fi);

	files_change_end();   /* (see op_mkdir) */
	return not_enosys(rc);
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
	return not_enosys(dfs_flush(path, fi));
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	return not_enosys(dfs_fsync(path, datasync, fi));
}

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	return not_enosys(dfs_fsyncdir(path, datasync, fi));
}

/* The operations that change the sandbox's files end the change that
 * sandbox_change_begin began (files_change_end), whatever way they return. */
static int op_mkdir(const char *path, mode_t mode)
{
	int rc = dfs_mkdir(path, mode);

	files_change_end();
	return rc;
}

static int op_rmdir(const char *path)
{
	int rc = dfs_rmdir(path);

	files_change_end();
	return rc;
}

static int op_unlink(const char *path)
{
	int rc = dfs_unlink(path);

	files_change_end();
	return rc;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	int rc = dfs_rename(from, to, flags);

	files_change_end();
	return rc;
}

static int op_symlink(const char *target, const char *path)
{
	int rc = dfs_symlink(target, path);

	files_change_end();
	return rc;
}

static int op_mknod(const char *path, mode_t mode, dev_t rdev)
{
	int rc = dfs_mknod(path, mode, rdev);

	files_change_end();
	return rc;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int rc = dfs_chmod(path, mode, fi);

	files_change_end();
	return rc;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	int rc = dfs_chown(path, uid, gid, fi);

	files_change_end();
	return rc;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	int rc = dfs_utimens(path, tv, fi);

	files_change_end();
	return rc;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	int rc = dfs_truncate(path, size, fi);

	files_change_end();
	return rc;
}

static const struct fuse_operations dfs_ops = {
	.init = dfs_init,
	.destroy = dfs_destroy,
	.getattr = dfs_getattr,
	.readlink = dfs_readlink,
	.opendir = op_opendir,
	.readdir = dfs_readdir,
	.releasedir = dfs_releasedir,
	.mkdir = op_mkdir,
	.rmdir = op_rmdir,
	.unlink = op_unlink,
	.rename = op_rename,
	.symlink = op_symlink,
	.mknod = op_mknod,
	.link = dfs_link,
	.chmod = op_chmod,
	.chown = op_chown,
	.utimens = op_utimens,
	.truncate = op_truncate,
	.open = op_open,
	.create = op_create,
	.read = dfs_read,
	.write = dfs_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.fsyncdir = op_fsyncdir,
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
	if (sb && registry_dir_name(&fs->registry, sb))
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
void command_ended(struct dfs *fs, const char *sandbox_id, unsigned n)
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
	struct provider_config pcfg;
	struct cache_config ccfg;
	struct exec_options eo;
	struct dfs *fs = calloc(1, sizeof(*fs));

	if (!fs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	fs->opt = *o;   /* the strings stay owned by main's options */
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->release_cond, NULL);
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

	memset(&pcfg, 0, sizeof(pcfg));
	pcfg.api_url = o->api_url;
	pcfg.api_key = o->api_key;
	pcfg.jwt = o->api_key ? NULL : o->jwt;
	pcfg.org_id = o->org_id;
	pcfg.target = o->target;
	pcfg.keepalive = o->keepalive;
	pcfg.autostart = o->autostart;
	pcfg.wait_timeout_ms = o->wait_timeout_s * 1000;
	pcfg.rate_per_minute = o->rate_limit > 0 ? o->rate_limit : -1;
	rfs_set_limit(o->timeout_s);
	if (o->provider && !strcmp(o->provider, "vercel")) {
		/* the token, or the OIDC token (which names team and project) */
		pcfg.api_key = o->vercel_token;
		pcfg.jwt = o->vercel_token ? NULL : o->vercel_oidc;
		pcfg.org_id = o->team_id;
		pcfg.project_id = o->project_id;
		pcfg.target = NULL;
	}
	fs->sp = provider_open_err(o->provider ? o->provider : "daytona", fs->http, &pcfg, err, errlen);
	if (!fs->sp)
		goto fail;
	fs->new_uid = fs->sp->files_owner_known ? fs->sp->files_uid : fs->uid;
	fs->new_gid = fs->sp->files_owner_known ? fs->sp->files_gid : fs->gid;

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
	fs->recovery = mount_recover_scan(fs);

	exec_options_defaults(&eo);
	if (o->state_dir)
		eo.state_dir = o->state_dir;
	eo.poll_min_ms = o->poll_min_ms;
	eo.poll_max_ms = o->poll_max_ms;
	eo.wait_ms = o->exec_wait_ms;
	eo.helper = o->exec_helper;
	eo.list_ttl_ms = (long)(o->dir_timeout * 1000);
	eo.interrupted = request_interrupted;
	eo.on_end = on_command_end;
	eo.wake = poll_wake;
	eo.ctx = fs;
	fs->exec = exec_mgr_new(fs->sp, &eo);
	if (!fs->exec) {
		snprintf(err, errlen, "cannot start the command manager");
		goto fail;
	}
	fs->files = open_table_new(o->timeout_s);
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
	struct sp_error e = { 0 };
	int rc = sp_ping(fs->sp, &e);

	if (rc == 0)
		return 0;
	if ((e.http_status == 401 || e.http_status == 403) && !strcmp(fs->sp->name, "vercel"))
		snprintf(err, errlen, "%s rejected the credentials (%s): check VERCEL_OIDC_TOKEN, or VERCEL_TOKEN, "
			 "VERCEL_TEAM_ID and VERCEL_PROJECT_ID", fs->opt.api_url, e.message);
	else if (e.http_status == 401 || e.http_status == 403)
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
	releases_wait(fs);   /* (none left after an unmount's destroy) */
	surface_stop(fs);
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
	provider_close(fs->sp);
	if (fs->http)
		http_client_free(fs->http);
	for (sb = fs->sandboxes; sb; sb = next) {
		next = sb->next;
		pthread_mutex_destroy(&sb->op_lock);
		surface_sandbox_free(sb);
		free(sb);
	}
	registry_free(&fs->registry);
	vhandles_free_all(fs);
	pthread_cond_destroy(&fs->release_cond);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}
