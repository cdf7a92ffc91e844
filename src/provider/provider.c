/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provider.c - what every provider shares: making the provider a mount
 * names, the errors of the interface, and the helpers of the shared types
 * (provider.h).
 */
#include "provider.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daytona.h"
#include "urlenc.h"
#include "vercel_provider.h"

struct sandbox_provider *provider_open_err(const char *name, struct http_client *hc,
		const struct provider_config *cfg, char *errbuf, size_t errlen)
{
	struct sandbox_provider *sp = NULL;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (strcmp(name, "daytona") == 0)
		sp = daytona_provider_new(hc, cfg);
	else if (strcmp(name, "vercel") == 0)
		sp = vercel_provider_new(hc, cfg, errbuf, errlen);
	else if (errbuf)
		snprintf(errbuf, errlen, "unknown provider '%s' (daytona or vercel)", name);
	if (!sp && errbuf && errlen && !errbuf[0])
		snprintf(errbuf, errlen, "cannot set up the %s client: out of memory", name);
	return sp;
}

struct sandbox_provider *provider_open(const char *name, struct http_client *hc, const struct provider_config *cfg)
{
	return provider_open_err(name, hc, cfg, NULL, 0);
}

void provider_close(struct sandbox_provider *sp)
{
	if (!sp)
		return;
	if (sp->ops->free)
		sp->ops->free(sp->impl);
	free(sp);
}

int sp_unsupported(struct sp_error *err, const char *what)
{
	return sp_error_set(err, -ENOSYS, 0, "%s is not supported by this provider", what);
}

int sp_fs_upload_many(struct sandbox_provider *sp, const struct sp_box *box, struct sp_upload_item *items,
		      size_t n, struct sp_error *err)
{
	if (sp->ops->fs_upload_many && (n > 1 || sp_has(sp, SP_CAP_UPLOAD_IN_PLACE)))
		return sp->ops->fs_upload_many(sp->impl, box, items, n, err);
	for (size_t i = 0; i < n; i++) {
		struct sp_error e = { 0 };

		items[i].rc = sp_fs_upload_fd(sp, box, items[i].path, items[i].fd, items[i].len, &e);
		snprintf(items[i].msg, sizeof(items[i].msg), "%.200s", items[i].rc < 0 ? e.message : "");
	}
	return 0;
}

int sp_error_set(struct sp_error *err, int rc, long http_status, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return rc;
	err->http_status = http_status;
	err->err = rc < 0 ? -rc : rc;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return rc;
}

bool sp_error_transient(const struct sp_error *err)
{
	if (!err)
		return false;
	if (err->http_status >= 500 || err->http_status == 429)
		return true;
	switch (err->err) {
	case EAGAIN:
	case ECONNRESET:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	case ETIMEDOUT:
		/* 408: the sandbox ran the command out of its own time limit. */
		return err->http_status != 408;
	default:
		return false;
	}
}

/* ---- the shared types ------------------------------------------------------ */

void sp_sandbox_clear(struct sp_sandbox *sb)
{
	if (!sb)
		return;
	free(sb->json);
	free(sb->env);
	memset(sb, 0, sizeof(*sb));
}

void sp_sandbox_list_free(struct sp_sandbox *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++) {
		free(list[i].json);
		free(list[i].env);
	}
	free(list);
}

void sp_create_params_init(struct sp_create_params *p)
{
	memset(p, 0, sizeof(*p));
	p->cpu = p->memory = p->disk = p->gpu = -1;
	p->autostop = p->autoarchive = p->autodelete = LONG_MIN;
}

bool sp_path_on_volume(const char *volume_paths, const char *path)
{
	const char *p = volume_paths;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char mount[1024];

		if (n < sizeof(mount)) {
			memcpy(mount, p, n);
			mount[n] = '\0';
			if (path_is_within(path, mount))
				return true;
		}
		p = nl ? nl + 1 : NULL;
	}
	return false;
}

void sp_kv_free(struct sp_kv *kv, size_t n)
{
	if (!kv)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

void sp_snapshot_clear(struct sp_snapshot *s)
{
	if (!s)
		return;
	free(s->json);
	memset(s, 0, sizeof(*s));
}

void sp_snapshot_list_free(struct sp_snapshot *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].json);
	free(list);
}

void sp_volume_clear(struct sp_volume *v)
{
	if (!v)
		return;
	free(v->json);
	memset(v, 0, sizeof(*v));
}

void sp_volume_list_free(struct sp_volume *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].json);
	free(list);
}

void sp_fileinfo_free(struct sp_fileinfo *fi, size_t n)
{
	if (!fi)
		return;
	for (size_t i = 0; i < n; i++)
		free(fi[i].name);
	free(fi);
}

void sp_bulk_files_clear(struct sp_bulk_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i].data);
		files[i].data = NULL;
		files[i].len = 0;
	}
}
