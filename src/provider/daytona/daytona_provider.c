/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_provider.c - the Daytona client as a sandbox_provider
 * (provider.h): each operation is the dt_ call of the same name. Daytona
 * has every optional capability.
 */
#include <errno.h>
#include <stdlib.h>

#include "daytona.h"
#include "provider.h"

static int daytona_sandbox_list(void *impl, struct sp_sandbox **out, size_t *n, struct sp_error *err)
{
	return dt_sandbox_list(impl, out, n, err);
}

static int daytona_sandbox_get(void *impl, const char *id_or_name, struct sp_sandbox *out,
		struct sp_error *err)
{
	return dt_sandbox_get(impl, id_or_name, out, err);
}

static int daytona_sandbox_toolbox_url(void *impl, const char *id, char *out, size_t cap,
		struct sp_error *err)
{
	return dt_sandbox_toolbox_url(impl, id, out, cap, err);
}

static int daytona_sandbox_create(void *impl, const struct sp_create_params *p,
		struct sp_sandbox *out, struct sp_error *err)
{
	if (p->n_ports)
		return sp_error_set(err, -EINVAL, 0, "Daytona sandboxes have no port=: every port has a preview URL");
	return dt_sandbox_create(impl, p, out, err);
}

static int daytona_sandbox_action(void *impl, const char *id, enum sp_action action,
		sp_state_fn on_state, void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	return dt_sandbox_action(impl, id, action, on_state, ctx, out, err);
}

static int daytona_sandbox_delete(void *impl, const char *id, sp_state_fn on_state, void *ctx,
		struct sp_error *err)
{
	return dt_sandbox_delete(impl, id, on_state, ctx, err);
}

static int daytona_sandbox_resize(void *impl, const char *id, int cpu, int memory, int disk,
		struct sp_sandbox *out, struct sp_error *err)
{
	return dt_sandbox_resize(impl, id, cpu, memory, disk, out, err);
}

static int daytona_sandbox_set_labels(void *impl, const char *id, const struct sp_kv *labels,
		size_t n, struct sp_sandbox *out, struct sp_error *err)
{
	return dt_sandbox_set_labels(impl, id, labels, n, out, err);
}

static int daytona_sandbox_get_labels(void *impl, const char *id, struct sp_kv **labels, size_t *n,
		struct sp_error *err)
{
	return dt_sandbox_get_labels(impl, id, labels, n, err);
}

static int daytona_sandbox_set_interval(void *impl, const char *id, enum sp_interval which,
		long minutes, struct sp_sandbox *out, struct sp_error *err)
{
	return dt_sandbox_set_interval(impl, id, which, minutes, out, err);
}

static int daytona_sandbox_snapshot(void *impl, const char *id, const char *name,
		sp_state_fn on_state, void *ctx, struct sp_error *err)
{
	return dt_sandbox_snapshot(impl, id, name, on_state, ctx, err);
}

static int daytona_snapshot_list(void *impl, struct sp_snapshot **out, size_t *n, struct sp_error *err)
{
	return dt_snapshot_list(impl, out, n, err);
}

static int daytona_snapshot_get(void *impl, const char *id_or_name, struct sp_snapshot *out,
		struct sp_error *err)
{
	return dt_snapshot_get(impl, id_or_name, out, err);
}

static int daytona_snapshot_delete(void *impl, const char *id, struct sp_error *err)
{
	return dt_snapshot_delete(impl, id, err);
}

static int daytona_ping(void *impl, struct sp_error *err)
{
	return dt_ping(impl, err);
}

static int daytona_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
		const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err)
{
	return dt_exec(impl, box, command, cwd, envs, n_envs, timeout_s, exit_code, output, err);
}

static int daytona_exec_activity(void *impl, const struct sp_box *box, const char *command,
		const char *cwd, const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output, struct sp_error *err)
{
	return dt_exec_activity(impl, box, command, cwd, envs, n_envs, timeout_s, exit_code, output, err);
}

static int daytona_exec_within(void *impl, const struct sp_box *box, const char *command,
		const char *cwd, long limit_s, int *exit_code, char **output, struct sp_error *err)
{
	return dt_exec_within(impl, box, command, cwd, limit_s, exit_code, output, err);
}

static int daytona_work_dir(void *impl, const struct sp_box *box, char *out, size_t cap, struct sp_error *err)
{
	return dt_work_dir(impl, box, out, cap, err);
}

static int64_t daytona_fs_download(void *impl, const struct sp_box *box, const char *path,
		uint64_t off, uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err)
{
	return dt_fs_download(impl, box, path, off, len, sink, ctx, err);
}

static int daytona_fs_bulk_download(void *impl, const struct sp_box *box, struct sp_bulk_file *files,
		size_t n, struct sp_error *err)
{
	return dt_fs_bulk_download(impl, box, files, n, err);
}

static int daytona_fs_upload_fd(void *impl, const struct sp_box *box, const char *path, int fd,
		uint64_t len, struct sp_error *err)
{
	return dt_fs_upload_fd(impl, box, path, fd, len, err);
}

static int daytona_fs_upload_many(void *impl, const struct sp_box *box, struct sp_upload_item *items, size_t n,
		struct sp_error *err)
{
	return dt_fs_upload_many(impl, box, items, n, err);
}

static int daytona_fs_list(void *impl, const struct sp_box *box, const char *path,
		struct sp_fileinfo **out, size_t *n, struct sp_error *err)
{
	return dt_fs_list(impl, box, path, out, n, err);
}

static int daytona_fs_info(void *impl, const struct sp_box *box, const char *path,
		struct sp_fileinfo *out, struct sp_error *err)
{
	return dt_fs_info(impl, box, path, out, err);
}

static int daytona_fs_move(void *impl, const struct sp_box *box, const char *src, const char *dst,
		struct sp_error *err)
{
	return dt_fs_move(impl, box, src, dst, err);
}

static int daytona_fs_delete(void *impl, const struct sp_box *box, const char *path,
		bool recursive, struct sp_error *err)
{
	return dt_fs_delete(impl, box, path, recursive, err);
}

static int daytona_fs_mkdir(void *impl, const struct sp_box *box, const char *path, mode_t mode,
		struct sp_error *err)
{
	return dt_fs_mkdir(impl, box, path, mode, err);
}

static int daytona_fs_chmod(void *impl, const struct sp_box *box, const char *path, mode_t mode,
		struct sp_error *err)
{
	return dt_fs_chmod(impl, box, path, mode, err);
}

static void daytona_free(void *impl)
{
	dt_client_free(impl);
}

static int daytona_sandbox_preview_url(void *impl, const char *id, int port, struct sp_preview *out,
		struct sp_error *err)
{
	return dt_sandbox_preview_url(impl, id, port, out, err);
}

static int daytona_volume_list(void *impl, struct sp_volume **out, size_t *n, struct sp_error *err)
{
	return dt_volume_list(impl, out, n, err);
}

static int daytona_volume_create(void *impl, const char *name, struct sp_volume *out,
		struct sp_error *err)
{
	return dt_volume_create(impl, name, out, err);
}

static int daytona_volume_delete(void *impl, const char *id, struct sp_error *err)
{
	return dt_volume_delete(impl, id, err);
}

static int daytona_sandbox_build_log(void *impl, const char *id, bool follow, http_sink_fn sink,
		void *ctx, struct sp_error *err)
{
	return dt_sandbox_build_log(impl, id, follow, sink, ctx, err);
}

static void daytona_note_change(void *impl, const char *id)
{
	dt_note_change(impl, id);
}

static const struct sandbox_provider_ops daytona_ops = {
	.sandbox_list = daytona_sandbox_list,
	.sandbox_get = daytona_sandbox_get,
	.sandbox_toolbox_url = daytona_sandbox_toolbox_url,
	.sandbox_create = daytona_sandbox_create,
	.sandbox_action = daytona_sandbox_action,
	.sandbox_delete = daytona_sandbox_delete,
	.sandbox_resize = daytona_sandbox_resize,
	.sandbox_set_labels = daytona_sandbox_set_labels,
	.sandbox_get_labels = daytona_sandbox_get_labels,
	.sandbox_set_interval = daytona_sandbox_set_interval,
	.sandbox_snapshot = daytona_sandbox_snapshot,
	.snapshot_list = daytona_snapshot_list,
	.snapshot_get = daytona_snapshot_get,
	.snapshot_delete = daytona_snapshot_delete,
	.ping = daytona_ping,
	.exec = daytona_exec,
	.exec_activity = daytona_exec_activity,
	.exec_within = daytona_exec_within,
	.work_dir = daytona_work_dir,
	.fs_download = daytona_fs_download,
	.fs_upload_fd = daytona_fs_upload_fd,
	.fs_upload_many = daytona_fs_upload_many,
	.fs_list = daytona_fs_list,
	.fs_info = daytona_fs_info,
	.fs_move = daytona_fs_move,
	.fs_delete = daytona_fs_delete,
	.fs_mkdir = daytona_fs_mkdir,
	.fs_chmod = daytona_fs_chmod,
	.sandbox_preview_url = daytona_sandbox_preview_url,
	.volume_list = daytona_volume_list,
	.volume_create = daytona_volume_create,
	.volume_delete = daytona_volume_delete,
	.sandbox_build_log = daytona_sandbox_build_log,
	.note_change = daytona_note_change,
	.fs_bulk_download = daytona_fs_bulk_download,
	.upload_path_changed = dt_upload_path_trimmed,
	.free = daytona_free,
};

struct sandbox_provider *daytona_provider_new(struct http_client *hc, const struct provider_config *cfg)
{
	struct sandbox_provider *sp = calloc(1, sizeof(*sp));
	struct sp_config dcfg = {
		.api_url = cfg->api_url,
		.api_key = cfg->api_key,
		.jwt = cfg->jwt,
		.org_id = cfg->org_id,
		.target = cfg->target,
		.keepalive = cfg->keepalive,
		.wait_timeout_ms = cfg->wait_timeout_ms,
	};

	if (!sp)
		return NULL;
	sp->impl = dt_client_new(hc, &dcfg);
	if (!sp->impl) {
		free(sp);
		return NULL;
	}
	sp->name = "daytona";
	sp->caps = SP_CAP_FS_LIST | SP_CAP_FS_INFO | SP_CAP_FS_MOVE | SP_CAP_FS_DELETE | SP_CAP_FS_MKDIR |
		   SP_CAP_FS_CHMOD | SP_CAP_RANGED_READ | SP_CAP_STREAM_UPLOAD | SP_CAP_SNAPSHOTS |
		   SP_CAP_LABELS | SP_CAP_RESIZE | SP_CAP_INTERVALS | SP_CAP_PREVIEW | SP_CAP_VOLUMES |
		   SP_CAP_BUILD_LOG | SP_CAP_NOTE_CHANGE |
		   SP_CAP_BULK_DOWNLOAD | SP_CAP_SANDBOX_ENV | SP_CAP_EXEC_DETACHED;
	sp->default_work_dir = "/home/daytona";   /* the default image's user's home */
	sp->ops = &daytona_ops;
	return sp;
}
