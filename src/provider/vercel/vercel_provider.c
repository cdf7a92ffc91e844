/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_provider.c - the Vercel client as a sandbox_provider (provider.h).
 *
 * The mapping, and why:
 *  - A mount's sandbox is a named sandbox: sp_sandbox.id and .name are its
 *    name (names are unique per project and never change; sessions do).
 *    sp_sandbox.toolbox_url, the mount's "where do file and command calls
 *    go", is the current session id: a resume gives a new one, which the
 *    registry takes from the sp_sandbox that start returns.
 *  - State: running -> "started", stopped/failed/aborted -> "stopped" /
 *    "error", pending -> "starting", stopping and snapshotting -> "stopping"
 *    (a snapshot stops the session: no file access meanwhile).
 *  - exec: Vercel runs a program and streams its output as UTF-8 text, with
 *    no stdin. The script runs under a wrapper that keeps its merged output
 *    in a temporary file and prints it as base64, then its exit status: the
 *    mount gets the exact bytes (find's listing of odd names, binary data)
 *    in one request (POST cmd with wait and logs).
 *  - Files: fs/read (whole files; a range is cut from the stream, see
 *    SP_CAP_RANGED_READ), fs/write (a tar.gz of one file), fs/mkdir. No
 *    list, info, move, delete or chmod: the mount uses commands for those.
 *    Uploads go through a temporary name and a copy in the sandbox
 *    (upload_path_changed says so for every path), because a tar extraction
 *    replaces the file: it would lose the mode, owner, links and inode an
 *    in-place write keeps.
 *  - Labels are tags; snapshots are Vercel's (taking one stops the session).
 *
 * This file is the ops table and the constructor; the operations are in
 * vercel_prov_*.c (vercel_prov_int.h lists them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "vercel.h"
#include "vercel_prov_int.h"
#include "vercel_provider.h"

static void vp_free(void *impl)
{
	struct vprov *v = impl;

	if (!v)
		return;
	vc_client_free(v->vc);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->resume_lock);
	free(v->seen);
	free(v);
}

static const struct sandbox_provider_ops vercel_ops = {
	.sandbox_list = vp_sandbox_list,
	.sandbox_get = vp_sandbox_get,
	.sandbox_toolbox_url = vp_sandbox_toolbox_url,
	.sandbox_create = vp_sandbox_create,
	.sandbox_action = vp_sandbox_action,
	.sandbox_delete = vp_sandbox_delete,
	.sandbox_set_labels = vp_sandbox_set_labels,
	.sandbox_get_labels = vp_sandbox_get_labels,
	.sandbox_snapshot = vp_sandbox_snapshot,
	.snapshot_list = vp_snapshot_list,
	.snapshot_get = vp_snapshot_get,
	.snapshot_delete = vp_snapshot_delete,
	.ping = vp_ping,
	.sandbox_extend = vp_sandbox_extend,
	.sandbox_preview_url = vp_sandbox_preview_url,
	.sandbox_ports = vp_sandbox_ports,
	.exec = vp_exec,
	.exec_activity = vp_exec,
	.exec_within = vp_exec_within,
	.work_dir = vp_work_dir,
	.fs_download = vp_fs_download,
	.fs_upload_fd = vp_fs_upload_fd,
	.fs_mkdir = vp_fs_mkdir,
	.fs_bulk_download = vp_fs_bulk_download,
	.fs_upload_many = vp_fs_upload_many,
	.upload_path_changed = vp_upload_path_changed,
	.free = vp_free,
};

/* VERCEL_OIDC_TOKEN for vc_credentials_from_env, which reads the environment
 * through a function: the token the mount read, never the process's. */
static __thread const char *oidc_token;

static const char *oidc_getenv(const char *name)
{
	return !strcmp(name, "VERCEL_OIDC_TOKEN") ? oidc_token : NULL;
}

struct sandbox_provider *vercel_provider_new(struct http_client *hc, const struct provider_config *cfg,
					     char *errbuf, size_t errlen)
{
	struct sandbox_provider *sp = calloc(1, sizeof(*sp));
	struct vprov *v = calloc(1, sizeof(*v));
	struct vc_credentials *cred = calloc(1, sizeof(*cred));
	struct vc_config vcfg = { 0 };
	const char *token = cfg->api_key, *team = cfg->org_id, *project = cfg->project_id;

	if (!sp || !v || !cred)
		goto fail;
	if (cfg->jwt && *cfg->jwt && (!token || !*token)) {
		/* An OIDC token names its team (owner_id) and project. */
		struct vc_error ve = { 0 };

		oidc_token = cfg->jwt;
		if (vc_credentials_from_env(cred, oidc_getenv, &ve) < 0) {
			oidc_token = NULL;
			if (errbuf)
				snprintf(errbuf, errlen, "VERCEL_OIDC_TOKEN: %s", ve.message);
			goto fail;
		}
		oidc_token = NULL;
		token = cred->token;
		if (!team || !*team)
			team = cred->team_id;
		if (!project || !*project)
			project = cred->project_id;
	}
	if (!token || !*token || !team || !*team || !project || !*project) {
		if (errbuf)
			snprintf(errbuf, errlen, "Vercel needs VERCEL_OIDC_TOKEN, or VERCEL_TOKEN with VERCEL_TEAM_ID "
				 "and VERCEL_PROJECT_ID");
		goto fail;
	}
	vcfg.base_url = cfg->api_url;
	vcfg.token = token;
	vcfg.team_id = team;
	vcfg.project_id = project;
	vcfg.rate_per_minute = cfg->rate_per_minute;
	v->vc = vc_client_new(hc, &vcfg);
	explicit_bzero(cred, sizeof(*cred));
	free(cred);
	cred = NULL;
	if (!v->vc)
		goto fail;
	v->wait_timeout_ms = cfg->wait_timeout_ms;
	v->autostart = cfg->autostart;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->resume_lock, NULL);
	sp->name = "vercel";
	/* The optional operations it has: mkdir, snapshots, labels (tags),
	 * previews (the routes of the ports declared at create).
	 * Not list, info, move, delete, chmod, ranged reads (cut from whole
	 * reads), streamed in-place uploads, resize, intervals. */
	sp->caps = SP_CAP_FS_MKDIR | SP_CAP_SNAPSHOTS | SP_CAP_LABELS | SP_CAP_EXTEND | SP_CAP_BULK_DOWNLOAD |
		   SP_CAP_UPLOAD_IN_PLACE | SP_CAP_PREVIEW;
	/* fs/write and the commands the mount runs (not sudo) act as the
	 * sandbox's default user, uid and gid 1000 ("ubuntu" in images, as
	 * "vercel-sandbox" in runtime sandboxes, vercel.h): the owner of every
	 * file the mount makes there. */
	sp->files_owner_known = true;
	sp->files_uid = VC_DEFAULT_UID;
	sp->files_gid = VC_DEFAULT_GID;
	sp->default_work_dir = VC_DEFAULT_WORK_DIR;
	sp->ops = &vercel_ops;
	sp->impl = v;
	return sp;
fail:
	if (cred) {
		explicit_bzero(cred, sizeof(*cred));
		free(cred);
	}
	free(v);
	free(sp);
	return NULL;
}

