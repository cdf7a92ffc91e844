/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_surface.c - the sandbox's surface beyond files and commands:
 * preview URLs of ports, the organization's volumes, the build log of a
 * sandbox made from an image, and the piggy-backed activity of changes.
 *
 * Activity: Daytona counts a toolbox request as the sandbox's activity
 * (lastActivityAt, which resets the auto-stop timer) unless it carries
 * X-Daytona-Skip-Last-Activity-Update: true (CONTRACT.md, FIDELITY.md 2.1).
 * The mount sends that header on its own reads and listings, so a user who
 * only looks does not keep a sandbox running. A change through the mount
 * (dt_note_change) marks its sandbox; the next toolbox request to it, which
 * is in practice the change's own upload, move or command, goes without the
 * header. At most one such request per ACTIVITY_PERIOD_MS and sandbox: no
 * request of its own (POST /sandbox/{id}/last-activity is never needed).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daytona_int.h"
#include "log.h"
#include "urlenc.h"

#define ACTIVITY_PERIOD_MS 30000L

/* ---- activity ------------------------------------------------------------- */

static struct dt_activity *activity_find(struct dt_client *dt, const char *id)
{
	for (size_t i = 0; i < dt->n_act; i++)
		if (!strcmp(dt->act[i].id, id))
			return &dt->act[i];
	return NULL;
}

void dt_note_change(struct dt_client *dt, const char *id)
{
	struct dt_activity *a;
	long now = clock_mono_ms();

	if (!id || !id[0] || strlen(id) >= sizeof(a->id) || dt->keepalive)
		return;
	pthread_mutex_lock(&dt->act_lock);
	a = activity_find(dt, id);
	if (!a) {
		struct dt_activity *na = realloc(dt->act, (dt->n_act + 1) * sizeof(*na));

		if (!na)
			goto out;   /* the change just does not count: never an error */
		dt->act = na;
		a = &dt->act[dt->n_act++];
		memset(a, 0, sizeof(*a));
		str_copy(a->id, sizeof(a->id), id);
		a->last_ms = now - ACTIVITY_PERIOD_MS - 1;
	}
	if (now - a->last_ms > ACTIVITY_PERIOD_MS)
		a->pending = true;
out:
	pthread_mutex_unlock(&dt->act_lock);
}

/* The sandbox a toolbox URL goes to: ".../{id}/endpoint" (dt_toolbox_url). */
static bool url_is_for(const char *url, const char *id)
{
	size_t n = strlen(id);

	for (const char *p = strstr(url, id); p; p = strstr(p + 1, id))
		if (p > url && p[-1] == '/' && (p[n] == '/' || p[n] == '?' || !p[n]))
			return true;
	return false;
}

bool dt_activity_take(struct dt_client *dt, const char *url, bool counts)
{
	bool take = false;
	long now;

	now = clock_mono_ms();
	pthread_mutex_lock(&dt->act_lock);
	for (size_t i = 0; i < dt->n_act; i++) {
		struct dt_activity *a = &dt->act[i];

		if (!url_is_for(url, a->id))
			continue;
		if (a->pending || counts) {
			take = a->pending;
			a->pending = false;
			a->last_ms = now;
		}
		break;
	}
	pthread_mutex_unlock(&dt->act_lock);
	return take;
}

/* ---- preview URLs ----------------------------------------------------------- */

int dt_sandbox_preview_url(struct dt_client *dt, const char *id, int port, struct sp_preview *out,
			   struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "GET", .idempotent = true };
	struct http_response resp;
	cJSON *root = NULL;
	const char *u, *tok;
	int rc;

	dt_error_clear(err);
	memset(out, 0, sizeof(*out));
	if (port < 1 || port > 65535)
		return sp_error_set(err, -EINVAL, 0, "port %d is not from 1 to 65535", port);
	dt_sandbox_url(&url, dt, id, NULL);
	sb_addf(&url, "/ports/%d/preview-url", port);
	sb_addf(&what, "get the preview URL of port %d of sandbox %s", port, id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do(dt, &c, &resp, err);
	if (!rc) {
		root = dt_parse_body(&resp, c.what, err);
		u = dt_jstr(root, "url");
		tok = dt_jstr(root, "token");
		/* A token cut short would be refused by the proxy: an error instead. */
		if (!root)
			rc = -EIO;
		else if (!u || !u[0] || !str_copy(out->url, sizeof(out->url), u) ||
			 !str_copy(out->token, sizeof(out->token), tok ? tok : ""))
			rc = dt_malformed(err, resp.status, c.what);
	}
	http_response_free(&resp);
out:
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- volumes ------------------------------------------------------------------ */

static int volume_from_json(const cJSON *obj, struct sp_volume *out)
{
	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj) || !dt_jstr(obj, "id") || !dt_jstr(obj, "name"))
		return -EINVAL;
	if (!str_copy(out->id, sizeof(out->id), dt_jstr(obj, "id")) ||
	    !str_copy(out->name, sizeof(out->name), dt_jstr(obj, "name")))
		return -EINVAL;
	dt_jcopy(out->state, sizeof(out->state), obj, "state");
	dt_jtime(&out->updated_at, obj, "updatedAt");
	out->json = dt_pretty_json(obj);
	return out->json ? 0 : -ENOMEM;
}

int dt_volume_list(struct dt_client *dt, struct sp_volume **out, size_t *n, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct call c = { .method = "GET", .what = "list volumes", .idempotent = true,
			  .max_body = 16u << 20 };
	struct http_response resp;
	struct sp_volume *list = NULL;
	const cJSON *it;
	cJSON *root = NULL;
	size_t cnt = 0;
	int rc;

	dt_error_clear(err);
	*out = NULL;
	*n = 0;
	dt_api_url(&url, dt, "/volumes");
	if (url.oom)
		return dt_oom(err);
	c.url = sb_str(&url);
	rc = dt_do(dt, &c, &resp, err);
	if (!rc) {
		root = dt_parse_body(&resp, c.what, err);
		if (!root)
			rc = -EIO;
		else if (!cJSON_IsArray(root))
			rc = dt_malformed(err, resp.status, c.what);
	}
	if (!rc && cJSON_GetArraySize(root) > 0) {
		list = calloc((size_t)cJSON_GetArraySize(root), sizeof(*list));
		if (!list)
			rc = dt_oom(err);
	}
	if (!rc) {
		cJSON_ArrayForEach(it, root) {
			int prc = volume_from_json(it, &list[cnt]);

			if (prc == -ENOMEM) {
				rc = dt_oom(err);
				break;
			}
			/* a volume being deleted is on its way out: not shown */
			if (prc == 0 && strcmp(list[cnt].state, "deleted") &&
			    strcmp(list[cnt].state, "pending_delete") && strcmp(list[cnt].state, "deleting"))
				cnt++;
			else
				sp_volume_clear(&list[cnt]);
		}
	}
	http_response_free(&resp);
	cJSON_Delete(root);
	sb_free(&url);
	if (rc) {
		sp_volume_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

/*
 * A volume is made in the background: Daytona answers the create with
 * pending_create, and a sandbox created with it before it is ready is
 * refused ("Volume 'X' is not in a ready state"). Polled after 200 ms,
 * doubling up to 5 s, for up to wait_timeout (120 s when it is 0): 0 with
 * out updated; -EIO when it ends in error or goes; -ETIMEDOUT; or the
 * listing's error.
 */
static int volume_wait_ready(struct dt_client *dt, const char *name, struct sp_volume *out, struct sp_error *err)
{
	const int64_t limit_ms = dt->wait_timeout_ms > 0 ? dt->wait_timeout_ms : 120000;
	const int64_t deadline = clock_mono_ms() + limit_ms;
	long step_ms = 200;

	if (!out->state[0])
		str_copy(out->state, sizeof(out->state), "pending_create");
	while (strcmp(out->state, "ready")) {
		struct sp_volume *list = NULL;
		size_t n = 0;
		bool found = false;
		int rc;

		if (!strcmp(out->state, "error"))
			return sp_error_set(err, -EIO, 0, "volume %s ended in state error", name);
		if (clock_mono_ms() >= deadline)
			return sp_error_set(err, -ETIMEDOUT, 0, "volume %s is still %s after %ld s (wait_timeout)",
					    name, out->state, (long)(limit_ms / 1000));
		sleep_ms(step_ms);
		step_ms = step_ms * 2 > 5000 ? 5000 : step_ms * 2;
		rc = dt_volume_list(dt, &list, &n, err);
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < n && !found; i++) {
			if (strcmp(list[i].name, name))
				continue;
			sp_volume_clear(out);
			*out = list[i];
			memset(&list[i], 0, sizeof(list[i]));
			found = true;
		}
		sp_volume_list_free(list, n);
		if (!found)
			return sp_error_set(err, -EIO, 0, "volume %s: gone while it was being made", name);
	}
	return 0;
}

int dt_volume_create(struct dt_client *dt, const char *name, struct sp_volume *out, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	cJSON *body = cJSON_CreateObject(), *root = NULL;
	char *json = NULL;
	int rc;

	dt_error_clear(err);
	memset(out, 0, sizeof(*out));
	if (body && cJSON_AddStringToObject(body, "name", name))
		json = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	dt_api_url(&url, dt, "/volumes");
	sb_addf(&what, "create volume %s", name);
	if (!json || url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = json };

		rc = dt_do(dt, &c, &resp, err);
		if (!rc) {
			root = dt_parse_body(&resp, c.what, err);
			rc = !root ? -EIO : volume_from_json(root, out);
			if (rc == -ENOMEM)
				rc = dt_oom(err);
			else if (rc == -EINVAL)
				rc = dt_malformed(err, resp.status, c.what);
		} else if (resp.status == 400 && strstr(err->message, "already exists")) {
			char msg[sizeof(err->message)];

			str_copy(msg, sizeof(msg), err->message);
			rc = sp_error_set(err, -EEXIST, resp.status, "%s", msg);
		}
		http_response_free(&resp);
	}
	cJSON_Delete(root);
	free(json);
	sb_free(&url);
	sb_free(&what);
	if (rc == 0)
		rc = volume_wait_ready(dt, name, out, err);
	return rc;
}

int dt_volume_delete(struct dt_client *dt, const char *id, struct sp_error *err)
{
	int status;
	int rc = dt_delete_object(dt, "/volumes/", "volume", id, &status, err);

	/* 409: a sandbox mounts it. rmdir(2) of a busy thing is EBUSY. */
	if (rc && status == 409) {
		char msg[sizeof(err->message)];

		str_copy(msg, sizeof(msg), err->message);
		rc = sp_error_set(err, -EBUSY, status, "%s", msg);
	}
	return rc;
}

/* ---- build logs ------------------------------------------------------------------ */

int dt_sandbox_build_log(struct dt_client *dt, const char *id, bool follow, http_sink_fn sink, void *ctx,
			 struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	int rc;

	dt_error_clear(err);
	dt_sandbox_url(&url, dt, id, "/build-logs");
	if (follow)
		dt_add_query(&url, "follow", "true");
	sb_addf(&what, "get the build log of sandbox %s", id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		/* A followed log stays open while the build runs: no total
		 * timeout, the stall timeout bounds it (http.h). Its sink also
		 * hears (NULL, 0) about once a second, to end it at will. */
		struct call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what),
				  .sink = sink, .sink_ctx = ctx, .streaming = follow, .sink_idle = follow,
				  .idempotent = !follow };

		rc = dt_do(dt, &c, &resp, err);
		http_response_free(&resp);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}
