/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_prov_sandboxes.c - the control plane of the Vercel provider:
 * errors and objects to provider.h's, list, get, create, start (resume),
 * stop, delete, tags (labels), extend, ping, the working directory, and the
 * ports: the routes of the declared ports (NAME/ports/).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "strbuf.h"
#include "vercel_prov_int.h"
#include "vercel_provider.h"

/* ---- errors and objects -------------------------------------------------- */

int vp_from_vc(struct sp_error *err, int rc, const struct vc_error *ve)
{
	if (rc >= 0)
		return rc;
	if (ve->code[0] && !strstr(ve->message, ve->code))
		return sp_error_set(err, rc, ve->http_status, "%s (%s)", ve->message, ve->code);
	return sp_error_set(err, rc, ve->http_status, "%s", ve->message[0] ? ve->message : strerror(-rc));
}

const char *vercel_state_name(const char *status)
{
	static const struct { const char *vercel, *mount; } map[] = {
		{ "running", "started" }, { "pending", "starting" }, { "stopping", "stopping" },
		{ "snapshotting", "stopping" }, { "stopped", "stopped" }, { "failed", "error" },
		{ "aborted", "error" },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(status, map[i].vercel))
			return map[i].mount;
	return "unknown";
}

void vp_ms_to_ts(int64_t ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ms / 1000);
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

/* vs into out (vs->json moves over). -ENAMETOOLONG for a name that does not
 * fit sp_sandbox.id. */
static int to_dt(struct vc_sandbox *vs, struct sp_sandbox *out)
{
	const char *status = vs->has_session && vs->session.status[0] ? vs->session.status : vs->status;
	const char *sid = vs->has_session && vs->session.id[0] ? vs->session.id : vs->current_session_id;

	memset(out, 0, sizeof(*out));
	if (strlen(vs->name) >= sizeof(out->id))
		return -ENAMETOOLONG;
	str_copy(out->id, sizeof(out->id), vs->name);
	str_copy(out->name, sizeof(out->name), vs->name);
	out->name_exact = true;
	str_copy(out->state, sizeof(out->state), vercel_state_name(status));
	str_copy(out->toolbox_url, sizeof(out->toolbox_url), sid);
	str_copy(out->snapshot, sizeof(out->snapshot), vs->current_snapshot_id);
	if (!strcmp(out->state, "error"))
		snprintf(out->error_reason, sizeof(out->error_reason), "session %s %s", sid, status);
	vp_ms_to_ts(vs->created_at, &out->created_at);
	vp_ms_to_ts(vs->updated_at, &out->updated_at);
	out->volumes_known = true;      /* drives are not mounted by this client */
	out->json = vs->json;
	vs->json = NULL;
	return 0;
}

int vp_get_sandbox(struct vprov *v, const char *name, bool resume, struct vc_sandbox *vs,
		   struct sp_error *err)
{
	struct vc_error ve = { 0 };
	int rc;

	memset(vs, 0, sizeof(*vs));
	rc = vc_sandbox_get(v->vc, name, resume, vs, &ve);
	if (rc < 0)
		return vp_from_vc(err, rc, &ve);
	vp_session_note(v, vs->name, vs->has_session && vs->session.id[0] ? vs->session.id : vs->current_session_id);
	return 0;
}

/* ---- control plane --------------------------------------------------------- */

int vp_sandbox_list(void *impl, struct sp_sandbox **out, size_t *n, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_list_params lp = { 0 };
	struct vc_sandbox *list = NULL;
	struct vc_error ve = { 0 };
	size_t count = 0, k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = vc_sandbox_list(v->vc, &lp, &list, &count, &ve);
	if (rc < 0)
		return vp_from_vc(err, rc, &ve);
	*out = calloc(count ? count : 1, sizeof(**out));
	if (!*out) {
		vc_sandbox_list_free(list, count);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	for (size_t i = 0; i < count; i++) {
		vp_session_note(v, list[i].name, list[i].current_session_id);
		if (to_dt(&list[i], &(*out)[k]) < 0) {
			log_warn("vercel: sandbox name %.80s... is longer than %zu bytes: not shown", list[i].name,
				 sizeof((*out)[k].id) - 1);
			continue;
		}
		k++;
	}
	*n = k;
	vc_sandbox_list_free(list, count);
	return 0;
}

int vp_sandbox_get(void *impl, const char *id_or_name, struct sp_sandbox *out, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = vp_get_sandbox(impl, id_or_name, false, &vs, err);

	if (rc == 0 && to_dt(&vs, out) < 0)
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "sandbox name too long");
	vc_sandbox_clear(&vs);
	return rc;
}

int vp_sandbox_toolbox_url(void *impl, const char *id, char *out, size_t cap, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = vp_get_sandbox(impl, id, false, &vs, err);

	if (rc == 0 && !str_copy(out, cap, vs.current_session_id))
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "session id too long");
	vc_sandbox_clear(&vs);
	return rc;
}

/* A runtime name ("node24", "python3.13") rather than an image reference. */
static bool is_runtime(const char *s)
{
	return s && !strpbrk(s, "/:@");
}

int vercel_create_params(const struct sp_create_params *p, struct vc_create_params *vp, struct vc_kv *env,
			 struct vc_kv *tags, struct sp_error *err)
{
	const char *bad = NULL;

	vc_create_params_init(vp);
	if (p->memory > 0)
		bad = "memory= (memory follows vcpus: 2 GB each)";
	else if (p->disk > 0)
		bad = "disk=";
	else if (p->gpu > 0)
		bad = "gpu=";
	else if (p->target)
		bad = "target=";
	else if (p->user)
		bad = "user=";
	else if (p->n_volumes)
		bad = "volume=";
	else if (p->is_public)
		bad = "public";
	/* Refused, not ignored: a sandbox asked to be cut off must not be
	 * made with the network open (Vercel's networkPolicy is not mapped). */
	else if (p->network_block_all)
		bad = "network=block-all here (its networkPolicy is not set by this client)";
	else if (p->network_allow_list)
		bad = "network-allow= here (its networkPolicy is not set by this client)";
	else if (p->autoarchive != LONG_MIN)
		bad = "autoarchive=";
	else if (p->autodelete != LONG_MIN && !(p->ephemeral && p->autodelete == 0))
		bad = "autodelete=";
	if (bad)
		return sp_error_set(err, -EINVAL, 0, "Vercel sandboxes have no %s", bad);
	vp->name = p->name;
	if (is_runtime(p->image))
		vp->runtime = p->image;
	else
		vp->image = p->image;
	if (!p->image && p->language && !strncmp(p->language, "python", 6))
		vp->runtime = "python3.13";
	vp->vcpus = p->cpu > 0 ? p->cpu : 0;
	if (p->autostop != LONG_MIN) {
		if (p->autostop <= 0)
			return sp_error_set(err, -EINVAL, 0, "a Vercel session always has a timeout: autostop= needs minutes > 0");
		vp->timeout_ms = p->autostop * 60000L;
	}
	for (size_t i = 0; i < p->n_env; i++)
		env[i] = (struct vc_kv){ p->env[i].key, p->env[i].value };
	vp->env = env;
	vp->n_env = p->n_env;
	for (size_t i = 0; i < p->n_labels; i++)
		tags[i] = (struct vc_kv){ p->labels[i].key, p->labels[i].value };
	vp->tags = tags;
	vp->n_tags = p->n_labels;
	vp->persistent = p->ephemeral ? 0 : -1;
	vp->ports = p->ports;
	vp->n_ports = p->n_ports;
	vp->source_snapshot_id = p->snapshot;
	return 0;
}

int vp_sandbox_create(void *impl, const struct sp_create_params *p, struct sp_sandbox *out,
		      struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_kv *env = calloc(p->n_env + 1, sizeof(*env)), *tags = calloc(p->n_labels + 1, sizeof(*tags));
	struct vc_create_params vp;
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc;

	memset(&vs, 0, sizeof(vs));
	if (!env || !tags) {
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	rc = vercel_create_params(p, &vp, env, tags, err);
	if (rc < 0)
		goto out;
	rc = vc_sandbox_create(v->vc, &vp, &vs, &ve);
	if (rc < 0) {
		vp_from_vc(err, rc, &ve);
		goto out;
	}
	if (to_dt(&vs, out) < 0)
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "sandbox name %s too long for the mount", vs.name);
out:
	vc_sandbox_clear(&vs);
	free(env);
	free(tags);
	return rc;
}


/* Stops the current session and waits until the sandbox says stopped. */
static int stop_and_wait(struct vprov *v, const char *name, sp_state_fn on_state, void *ctx,
			 struct sp_sandbox *out, struct sp_error *err)
{
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc = vp_get_sandbox(v, name, false, &vs, err);

	if (rc < 0)
		return rc;
	if (strcmp(vs.status, "stopped") && strcmp(vs.status, "failed") && strcmp(vs.status, "aborted")) {
		rc = vc_session_stop(v->vc, vs.current_session_id, NULL, &ve);
		/* 410: it stopped meanwhile (timeout), which is what was asked. */
		if (rc < 0 && rc != -EHOSTDOWN) {
			vc_sandbox_clear(&vs);
			return vp_from_vc(err, rc, &ve);
		}
	}
	return vp_wait_stopped(v, name, &vs, on_state, ctx, out, err);
}

/* Polls the sandbox (vs: its last answer, cleared here) until its session
 * has stopped: after a stop, or a snapshot, which stops it. */
int vp_wait_stopped(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state, void *ctx,
		    struct sp_sandbox *out, struct sp_error *err)
{
	int64_t deadline = clock_mono_ms() + (v->wait_timeout_ms > 0 ? v->wait_timeout_ms : 120000);
	int rc = 0;

	for (;;) {
		const char *st = vercel_state_name(vs->status);

		if (on_state)
			on_state(ctx, st);
		if (!strcmp(st, "stopped") || !strcmp(st, "error"))
			break;
		vc_sandbox_clear(vs);
		if (clock_mono_ms() > deadline)
			return sp_error_set(err, -ETIMEDOUT, 0, "sandbox %s did not stop in time", name);
		sleep_ms(200);
		rc = vp_get_sandbox(v, name, false, vs, err);
		if (rc < 0)
			return rc;
	}
	if (out && to_dt(vs, out) < 0)
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "sandbox name too long");
	vc_sandbox_clear(vs);
	return rc;
}

/* After a resume: polls the sandbox (never resuming again) until its
 * session runs, as the SDK waits for a start; vs holds the last answer. A
 * session that failed, or stopped meanwhile, is an error. */
int vp_wait_running(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state, void *ctx,
		    struct sp_error *err)
{
	int64_t deadline = clock_mono_ms() + (v->wait_timeout_ms > 0 ? v->wait_timeout_ms : 120000);

	for (;;) {
		const char *status = vs->has_session && vs->session.status[0] ? vs->session.status : vs->status;
		const char *st = vercel_state_name(status);
		int rc;

		if (on_state)
			on_state(ctx, st);
		if (!strcmp(st, "started"))
			return 0;
		if (strcmp(st, "starting"))
			return sp_error_set(err, -EIO, 0, "sandbox %s did not start: its session is %s", name, status);
		if (clock_mono_ms() > deadline)
			return sp_error_set(err, -ETIMEDOUT, 0, "sandbox %s did not start in time (still %s)", name, status);
		sleep_ms(200);
		vc_sandbox_clear(vs);
		rc = vp_get_sandbox(v, name, false, vs, err);
		if (rc < 0)
			return rc;
	}
}

int vp_sandbox_action(void *impl, const char *id, enum sp_action action, sp_state_fn on_state,
		      void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_sandbox vs;
	int rc;

	switch (action) {
	case SP_START:
		/* GET ?resume=true: a new session when the current one is not
		 * running (a new session id), else the running one. */
		rc = vp_get_sandbox(v, id, true, &vs, err);
		if (rc < 0)
			return rc;
		rc = vp_wait_running(v, id, &vs, on_state, ctx, err);
		if (rc == 0 && to_dt(&vs, out) < 0)
			rc = sp_error_set(err, -ENAMETOOLONG, 0, "sandbox name too long");
		vc_sandbox_clear(&vs);
		return rc;
	case SP_STOP:
		return stop_and_wait(v, id, on_state, ctx, out, err);
	case SP_ARCHIVE:
		return sp_error_set(err, -EOPNOTSUPP, 0, "Vercel sandboxes have no archive: stop keeps a "
				    "persistent sandbox's files");
	case SP_RECOVER:
		return sp_error_set(err, -EOPNOTSUPP, 0, "Vercel sandboxes have no recover: start resumes");
	}
	return sp_error_set(err, -EINVAL, 0, "unknown action");
}

int vp_sandbox_delete(void *impl, const char *id, sp_state_fn on_state, void *ctx, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc = vc_sandbox_delete(v->vc, id, false, &ve);

	if (rc < 0)
		return vp_from_vc(err, rc, &ve);
	if (on_state)
		on_state(ctx, "destroyed");
	return 0;
}

int vp_sandbox_get_labels(void *impl, const char *id, struct sp_kv **labels, size_t *n,
			  struct sp_error *err)
{
	struct vc_sandbox vs;
	cJSON *root = NULL, *sb, *tags, *t;
	size_t k = 0;
	int rc = vp_get_sandbox(impl, id, false, &vs, err);

	*labels = NULL;
	*n = 0;
	if (rc < 0)
		return rc;
	root = vs.json ? cJSON_Parse(vs.json) : NULL;
	sb = cJSON_GetObjectItemCaseSensitive(root, "sandbox");
	tags = cJSON_GetObjectItemCaseSensitive(sb ? sb : root, "tags");
	*labels = calloc((size_t)cJSON_GetArraySize(tags) + 1, sizeof(**labels));
	if (!*labels) {
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	cJSON_ArrayForEach(t, tags) {
		if (!cJSON_IsString(t) || !t->string)
			continue;
		(*labels)[k].key = strdup(t->string);
		(*labels)[k].value = strdup(t->valuestring);
		if (!(*labels)[k].key || !(*labels)[k].value) {
			sp_kv_free(*labels, k + 1);
			*labels = NULL;
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		k++;
	}
	*n = k;
out:
	cJSON_Delete(root);
	vc_sandbox_clear(&vs);
	return rc;
}

int vp_sandbox_set_labels(void *impl, const char *id, const struct sp_kv *labels, size_t n,
			  struct sp_sandbox *out, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_kv *tags = calloc(n + 1, sizeof(*tags));
	struct vc_update_params up;
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc;

	if (!tags)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++)
		tags[i] = (struct vc_kv){ labels[i].key, labels[i].value };
	vc_update_params_init(&up);
	up.tags = tags;
	up.n_tags = n;
	up.set_tags = true;
	memset(&vs, 0, sizeof(vs));
	rc = vc_sandbox_update(v->vc, id, &up, &vs, &ve);
	free(tags);
	if (rc < 0)
		return vp_from_vc(err, rc, &ve);
	vc_sandbox_clear(&vs);
	/* The update's answer has no session: the whole object, as get has it. */
	return out ? vp_sandbox_get(impl, id, out, err) : 0;
}

/* One cheap authenticated request: a sandbox that does not exist. A 404
 * with Vercel's error body proves the token, team and project; a 404
 * without one (a wrong URL) does not. */
int vp_ping(void *impl, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc;

	memset(&vs, 0, sizeof(vs));
	rc = vc_sandbox_get(v->vc, "daytonafs-ping-0", false, &vs, &ve);
	vc_sandbox_clear(&vs);
	if (rc == 0 || (rc == -ENOENT && ve.code[0]))
		return 0;
	if (rc == -ENOENT)
		rc = -EPROTO;
	return vp_from_vc(err, rc, &ve);
}

int vp_sandbox_extend(void *impl, const char *id, long minutes, struct sp_sandbox *out,
		      struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc;

	if (minutes <= 0)
		return sp_error_set(err, -EINVAL, 0, "extend needs minutes > 0");
	rc = vp_get_sandbox(v, id, false, &vs, err);
	if (rc < 0)
		return rc;
	if (strcmp(vs.status, "running")) {
		rc = sp_error_set(err, -EHOSTDOWN, 0, "sandbox %s is %s: only a running session can be extended",
				  id, vs.status);
	} else {
		rc = vc_session_extend(v->vc, vs.current_session_id, minutes * 60000L, NULL, &ve);
		if (rc < 0)
			vp_from_vc(err, rc, &ve);
	}
	vc_sandbox_clear(&vs);
	return rc < 0 ? rc : (out ? vp_sandbox_get(v, id, out, err) : 0);
}

int vp_work_dir(void *impl, const struct sp_box *box, char *out, size_t cap, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = vp_get_sandbox(impl, box->id, false, &vs, err);
	const char *cwd;

	if (rc < 0)
		return rc;
	cwd = vs.has_session && vs.session.cwd[0] ? vs.session.cwd : vs.cwd[0] ? vs.cwd : VC_DEFAULT_WORK_DIR;
	if (!str_copy(out, cap, cwd))
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "working directory too long");
	vc_sandbox_clear(&vs);
	return rc;
}

/* ---- ports: the routes of the declared ports -------------------------------- */

/* One GET of the sandbox (no resume: a stopped sandbox keeps its routes):
 * its answer carries the routes, so a port costs no request of its own. */
static int get_routes(struct vprov *v, const char *id, struct vc_sandbox *vs, struct sp_error *err)
{
	int rc = vp_get_sandbox(v, id, false, vs, err);

	if (rc == 0 && vs->routes_err) {
		rc = sp_error_set(err, vs->routes_err < 0 ? vs->routes_err : -EIO, 0,
				  "sandbox %s: its routes cannot be read (%s)", id, strerror(-vs->routes_err));
		vc_sandbox_clear(vs);
	}
	return rc;
}

int vp_sandbox_preview_url(void *impl, const char *id, int port, struct sp_preview *out,
			   struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = get_routes(impl, id, &vs, err);

	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	rc = sp_error_set(err, -ENOENT, 0, "sandbox %s did not declare port %d (create ... port=%d)", id, port,
			  port);
	for (size_t i = 0; i < vs.n_routes; i++) {
		if (vs.routes[i].port != port)
			continue;
		/* Vercel's routes are public: no token (out->token stays ""). */
		if (str_copy(out->url, sizeof(out->url), vs.routes[i].url))
			rc = 0;
		else
			rc = sp_error_set(err, -ENAMETOOLONG, 0, "the URL of port %d is too long", port);
		break;
	}
	vc_sandbox_clear(&vs);
	return rc;
}

int vp_sandbox_ports(void *impl, const char *id, int **ports, size_t *n, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = get_routes(impl, id, &vs, err);

	*ports = NULL;
	*n = 0;
	if (rc < 0)
		return rc;
	if (vs.n_routes) {
		*ports = calloc(vs.n_routes, sizeof(**ports));
		if (!*ports) {
			vc_sandbox_clear(&vs);
			return sp_error_set(err, -ENOMEM, 0, "out of memory");
		}
		for (size_t i = 0; i < vs.n_routes; i++)
			(*ports)[(*n)++] = vs.routes[i].port;
	}
	vc_sandbox_clear(&vs);
	return 0;
}
