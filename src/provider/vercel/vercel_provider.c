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
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "provider.h"
#include "strbuf.h"
#include "tmpname.h"
#include "urlenc.h"
#include "vercel.h"
#include "vercel_bulk.h"
#include "vercel_provider.h"

/* The newest session id seen for each sandbox (name): a session id the
 * mount holds may be one a resume elsewhere has replaced. */
struct session_seen {
	char name[64];
	char sid[128];
};

struct vprov {
	struct vc_client *vc;
	long wait_timeout_ms;       /* lifecycle waits (stop) */
	bool autostart;             /* a file access resumes a stopped sandbox */
	pthread_mutex_t lock;
	pthread_mutex_t resume_lock;    /* one autostart resume at a time */
	struct session_seen *seen;
	size_t n_seen, cap_seen;
};

/* Notes sid as name's newest session (nothing when either is empty). */
static void session_note(struct vprov *v, const char *name, const char *sid)
{
	size_t i;

	if (!name[0] || !sid[0] || strlen(name) >= sizeof(v->seen[0].name))
		return;
	pthread_mutex_lock(&v->lock);
	for (i = 0; i < v->n_seen; i++)
		if (!strcmp(v->seen[i].name, name))
			break;
	if (i == v->n_seen) {
		if (v->n_seen == v->cap_seen) {
			size_t cap = v->cap_seen ? v->cap_seen * 2 : 16;
			struct session_seen *ns = realloc(v->seen, cap * sizeof(*ns));

			if (!ns) {
				pthread_mutex_unlock(&v->lock);
				return;
			}
			v->seen = ns;
			v->cap_seen = cap;
		}
		str_copy(v->seen[i].name, sizeof(v->seen[i].name), name);
		v->n_seen++;
	}
	str_copy(v->seen[i].sid, sizeof(v->seen[i].sid), sid);
	pthread_mutex_unlock(&v->lock);
}

/* The session a call for box goes to: the newest seen, else the box's. */
static void session_of(struct vprov *v, const struct sp_box *box, char *out, size_t cap)
{
	str_copy(out, cap, box->toolbox_url ? box->toolbox_url : "");
	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < v->n_seen; i++)
		if (!strcmp(v->seen[i].name, box->id)) {
			str_copy(out, cap, v->seen[i].sid);
			break;
		}
	pthread_mutex_unlock(&v->lock);
}

static int wait_running(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state, void *ctx,
			struct sp_error *err);
static int64_t mono_ms(void);
static int get_sandbox(struct vprov *v, const char *name, bool resume, struct vc_sandbox *vs,
		       struct sp_error *err);

/*
 * With -o autostart, after a 410: resumes the sandbox when its session has
 * stopped (a timeout, a stop elsewhere), as the mount's autostart starts a
 * stopped Daytona sandbox for file access; a session still stopping is
 * waited for first. vs holds the sandbox as last read. The new session's id
 * goes to out. One resume at a time (resume_lock, held by the caller):
 * callers that queued behind it find the new session among those seen.
 */
static bool autostart_resume(struct vprov *v, const char *name, struct vc_sandbox *vs, char *out, size_t cap)
{
	int64_t deadline = mono_ms() + (v->wait_timeout_ms > 0 ? v->wait_timeout_ms : 120000);
	struct sp_error err = { 0 };
	struct vc_error ve = { 0 };
	bool ok;

	while (!strcmp(vs->status, "stopping") || !strcmp(vs->status, "snapshotting")) {
		struct timespec pause = { 0, 200 * 1000000L };

		if (mono_ms() > deadline)
			return false;
		nanosleep(&pause, NULL);
		vc_sandbox_clear(vs);
		memset(vs, 0, sizeof(*vs));
		if (vc_sandbox_get(v->vc, name, false, vs, &ve) < 0)
			return false;
	}
	if (strcmp(vs->status, "stopped"))
		return false;
	log_info("%s: its session has stopped: resuming it for file access (-o autostart)", name);
	vc_sandbox_clear(vs);
	if (get_sandbox(v, name, true, vs, &err) < 0 || wait_running(v, name, vs, NULL, NULL, &err) < 0) {
		log_warn("%s: autostart failed: %s", name, err.message);
		return false;
	}
	ok = vs->has_session && vs->session.id[0] ? str_copy(out, cap, vs->session.id) :
		str_copy(out, cap, vs->current_session_id);
	return ok && out[0];
}

/*
 * After a 410 from session sid: whether the sandbox runs another session
 * now (resumed by someone else, or by autostart), whose id goes to out.
 * Without -o autostart it never resumes: the mount's own calls do not start
 * a sandbox (SEMANTICS.md).
 */
static bool session_moved(struct vprov *v, const char *name, const char *sid, char *out, size_t cap)
{
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	bool moved = false;

	if (v->autostart) {
		char seen[128];
		struct sp_box box = { .id = name, .toolbox_url = sid };

		pthread_mutex_lock(&v->resume_lock);
		/* another caller resumed it meanwhile */
		session_of(v, &box, seen, sizeof(seen));
		if (seen[0] && strcmp(seen, sid) != 0) {
			pthread_mutex_unlock(&v->resume_lock);
			return str_copy(out, cap, seen);
		}
	}
	memset(&vs, 0, sizeof(vs));
	if (vc_sandbox_get(v->vc, name, false, &vs, &ve) == 0) {
		if (!strcmp(vs.status, "running") && vs.current_session_id[0] &&
		    strcmp(vs.current_session_id, sid) != 0) {
			session_note(v, name, vs.current_session_id);
			moved = str_copy(out, cap, vs.current_session_id);
		} else if (v->autostart) {
			moved = autostart_resume(v, name, &vs, out, cap);
		}
	}
	vc_sandbox_clear(&vs);
	if (v->autostart)
		pthread_mutex_unlock(&v->resume_lock);
	return moved;
}

/* Whether a session call that failed with rc should go once more, to the
 * session that replaced sid: only for a 410, which the service gives before
 * it does anything, so a second call cannot do the work twice. */
static bool retry_moved(struct vprov *v, const struct sp_box *box, int rc, const struct vc_error *ve, char *sid,
			size_t cap, int *attempts)
{
	if (rc != -EHOSTDOWN || ve->http_status != 410 || (*attempts)++ > 0)
		return false;
	return session_moved(v, box->id, sid, sid, cap);
}

static int no_session(struct sp_error *err, const struct sp_box *box)
{
	return sp_error_set(err, -EHOSTDOWN, 0, "sandbox %s has no session", box->id);
}

/* ---- errors and objects -------------------------------------------------- */

static int from_vc(struct sp_error *err, int rc, const struct vc_error *ve)
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

static void ms_to_ts(int64_t ms, struct timespec *ts)
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
	ms_to_ts(vs->created_at, &out->created_at);
	ms_to_ts(vs->updated_at, &out->updated_at);
	out->volumes_known = true;      /* drives are not mounted by this client */
	out->json = vs->json;
	vs->json = NULL;
	return 0;
}

static int get_sandbox(struct vprov *v, const char *name, bool resume, struct vc_sandbox *vs,
		       struct sp_error *err)
{
	struct vc_error ve = { 0 };
	int rc;

	memset(vs, 0, sizeof(*vs));
	rc = vc_sandbox_get(v->vc, name, resume, vs, &ve);
	if (rc < 0)
		return from_vc(err, rc, &ve);
	session_note(v, vs->name, vs->has_session && vs->session.id[0] ? vs->session.id : vs->current_session_id);
	return 0;
}

/* ---- control plane --------------------------------------------------------- */

static int v_sandbox_list(void *impl, struct sp_sandbox **out, size_t *n, struct sp_error *err)
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
		return from_vc(err, rc, &ve);
	*out = calloc(count ? count : 1, sizeof(**out));
	if (!*out) {
		vc_sandbox_list_free(list, count);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	for (size_t i = 0; i < count; i++) {
		session_note(v, list[i].name, list[i].current_session_id);
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

static int v_sandbox_get(void *impl, const char *id_or_name, struct sp_sandbox *out, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = get_sandbox(impl, id_or_name, false, &vs, err);

	if (rc == 0 && to_dt(&vs, out) < 0)
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "sandbox name too long");
	vc_sandbox_clear(&vs);
	return rc;
}

static int v_sandbox_toolbox_url(void *impl, const char *id, char *out, size_t cap, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = get_sandbox(impl, id, false, &vs, err);

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

static int v_sandbox_create(void *impl, const struct sp_create_params *p, struct sp_sandbox *out,
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
		from_vc(err, rc, &ve);
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

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_stopped(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state,
			void *ctx, struct sp_sandbox *out, struct sp_error *err);

/* Stops the current session and waits until the sandbox says stopped. */
static int stop_and_wait(struct vprov *v, const char *name, sp_state_fn on_state, void *ctx,
			 struct sp_sandbox *out, struct sp_error *err)
{
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc = get_sandbox(v, name, false, &vs, err);

	if (rc < 0)
		return rc;
	if (strcmp(vs.status, "stopped") && strcmp(vs.status, "failed") && strcmp(vs.status, "aborted")) {
		rc = vc_session_stop(v->vc, vs.current_session_id, NULL, &ve);
		/* 410: it stopped meanwhile (timeout), which is what was asked. */
		if (rc < 0 && rc != -EHOSTDOWN) {
			vc_sandbox_clear(&vs);
			return from_vc(err, rc, &ve);
		}
	}
	return wait_stopped(v, name, &vs, on_state, ctx, out, err);
}

/* Polls the sandbox (vs: its last answer, cleared here) until its session
 * has stopped: after a stop, or a snapshot, which stops it. */
static int wait_stopped(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state,
			void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	int64_t deadline = mono_ms() + (v->wait_timeout_ms > 0 ? v->wait_timeout_ms : 120000);
	int rc = 0;

	for (;;) {
		const char *st = vercel_state_name(vs->status);

		if (on_state)
			on_state(ctx, st);
		if (!strcmp(st, "stopped") || !strcmp(st, "error"))
			break;
		vc_sandbox_clear(vs);
		if (mono_ms() > deadline)
			return sp_error_set(err, -ETIMEDOUT, 0, "sandbox %s did not stop in time", name);
		{
			struct timespec pause = { 0, 200 * 1000000L };

			nanosleep(&pause, NULL);
		}
		rc = get_sandbox(v, name, false, vs, err);
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
static int wait_running(struct vprov *v, const char *name, struct vc_sandbox *vs, sp_state_fn on_state, void *ctx,
			struct sp_error *err)
{
	int64_t deadline = mono_ms() + (v->wait_timeout_ms > 0 ? v->wait_timeout_ms : 120000);

	for (;;) {
		const char *status = vs->has_session && vs->session.status[0] ? vs->session.status : vs->status;
		const char *st = vercel_state_name(status);
		struct timespec pause = { 0, 200 * 1000000L };
		int rc;

		if (on_state)
			on_state(ctx, st);
		if (!strcmp(st, "started"))
			return 0;
		if (strcmp(st, "starting"))
			return sp_error_set(err, -EIO, 0, "sandbox %s did not start: its session is %s", name, status);
		if (mono_ms() > deadline)
			return sp_error_set(err, -ETIMEDOUT, 0, "sandbox %s did not start in time (still %s)", name, status);
		nanosleep(&pause, NULL);
		vc_sandbox_clear(vs);
		rc = get_sandbox(v, name, false, vs, err);
		if (rc < 0)
			return rc;
	}
}

static int v_sandbox_action(void *impl, const char *id, enum sp_action action, sp_state_fn on_state,
			    void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_sandbox vs;
	int rc;

	switch (action) {
	case SP_START:
		/* GET ?resume=true: a new session when the current one is not
		 * running (a new session id), else the running one. */
		rc = get_sandbox(v, id, true, &vs, err);
		if (rc < 0)
			return rc;
		rc = wait_running(v, id, &vs, on_state, ctx, err);
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

static int v_sandbox_delete(void *impl, const char *id, sp_state_fn on_state, void *ctx, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc = vc_sandbox_delete(v->vc, id, false, &ve);

	if (rc < 0)
		return from_vc(err, rc, &ve);
	if (on_state)
		on_state(ctx, "destroyed");
	return 0;
}

static int v_sandbox_get_labels(void *impl, const char *id, struct sp_kv **labels, size_t *n,
				struct sp_error *err)
{
	struct vc_sandbox vs;
	cJSON *root = NULL, *sb, *tags, *t;
	size_t k = 0;
	int rc = get_sandbox(impl, id, false, &vs, err);

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

static int v_sandbox_set_labels(void *impl, const char *id, const struct sp_kv *labels, size_t n,
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
		return from_vc(err, rc, &ve);
	vc_sandbox_clear(&vs);
	/* The update's answer has no session: the whole object, as get has it. */
	return out ? v_sandbox_get(impl, id, out, err) : 0;
}

static int v_sandbox_snapshot(void *impl, const char *id, const char *name, sp_state_fn on_state, void *ctx,
			      struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_snapshot snap;
	struct vc_sandbox vs;
	int rc = get_sandbox(v, id, false, &vs, err);

	(void)name;   /* Vercel names snapshots itself */
	if (rc < 0)
		return rc;
	if (on_state)
		on_state(ctx, "snapshotting");
	memset(&snap, 0, sizeof(snap));
	rc = vc_snapshot_create(v->vc, vs.current_session_id, -1, &snap, &ve);
	vc_sandbox_clear(&vs);
	if (rc < 0)
		return from_vc(err, rc, &ve);
	log_info("vercel: sandbox %s: snapshot %s taken (the session stops)", id, snap.id);
	vc_snapshot_clear(&snap);
	/* The session is still "snapshotting" when the snapshot is answered:
	 * the command ends when it has stopped, as stop does, so that the
	 * status read next says stopped and a start is not refused (422). */
	rc = get_sandbox(v, id, false, &vs, err);
	if (rc < 0)
		return rc;
	return wait_stopped(v, id, &vs, on_state, ctx, NULL, err);
}

static void snap_to_dt(struct vc_snapshot *s, struct sp_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	str_copy(out->id, sizeof(out->id), s->id);
	str_copy(out->name, sizeof(out->name), s->id);
	str_copy(out->state, sizeof(out->state), s->status);
	ms_to_ts(s->created_at, &out->created_at);
	ms_to_ts(s->updated_at, &out->updated_at);
	out->json = s->json;
	s->json = NULL;
}

static int v_snapshot_list(void *impl, struct sp_snapshot **out, size_t *n, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_list_params lp = { 0 };
	struct vc_snapshot *list = NULL;
	struct vc_error ve = { 0 };
	size_t count = 0;
	int rc = vc_snapshot_list(v->vc, &lp, &list, &count, &ve);

	*out = NULL;
	*n = 0;
	if (rc < 0)
		return from_vc(err, rc, &ve);
	*out = calloc(count ? count : 1, sizeof(**out));
	if (!*out) {
		vc_snapshot_list_free(list, count);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	for (size_t i = 0; i < count; i++)
		snap_to_dt(&list[i], &(*out)[i]);
	*n = count;
	vc_snapshot_list_free(list, count);
	return 0;
}

static int v_snapshot_get(void *impl, const char *id_or_name, struct sp_snapshot *out, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_snapshot s;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = vc_snapshot_get(v->vc, id_or_name, &s, &ve);
	if (rc < 0)
		return from_vc(err, rc, &ve);
	snap_to_dt(&s, out);
	vc_snapshot_clear(&s);
	return 0;
}

static int v_snapshot_delete(void *impl, const char *id, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc = vc_snapshot_delete(v->vc, id, &ve);

	return rc < 0 ? from_vc(err, rc, &ve) : 0;
}

/* One cheap authenticated request: a sandbox that does not exist. A 404
 * with Vercel's error body proves the token, team and project; a 404
 * without one (a wrong URL) does not. */
static int v_ping(void *impl, struct sp_error *err)
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
	return from_vc(err, rc, &ve);
}

static int v_sandbox_extend(void *impl, const char *id, long minutes, struct sp_sandbox *out,
			    struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_sandbox vs;
	int rc;

	if (minutes <= 0)
		return sp_error_set(err, -EINVAL, 0, "extend needs minutes > 0");
	rc = get_sandbox(v, id, false, &vs, err);
	if (rc < 0)
		return rc;
	if (strcmp(vs.status, "running")) {
		rc = sp_error_set(err, -EHOSTDOWN, 0, "sandbox %s is %s: only a running session can be extended",
				  id, vs.status);
	} else {
		rc = vc_session_extend(v->vc, vs.current_session_id, minutes * 60000L, NULL, &ve);
		if (rc < 0)
			from_vc(err, rc, &ve);
	}
	vc_sandbox_clear(&vs);
	return rc < 0 ? rc : (out ? v_sandbox_get(v, id, out, err) : 0);
}

/* ---- commands ---------------------------------------------------------------- */

/*
 * The wrapper (sh -c WRAPPER sh SCRIPT): SCRIPT's merged output goes to a
 * temporary file, never to the UTF-8 log stream (a file, not a pipe: a
 * process the script leaves running may keep its output open); the file
 * lives under /tmp/.daytonafs (where command state lives anyway), so that
 * a listing of /tmp does not show it; then that file as base64,
 * and a last line ".STATUS". A missing last line means the output is not
 * whole (killed at the time limit, or no base64).
 */
const char vercel_exec_wrapper[] =
	"mkdir -p /tmp/.daytonafs/out 2>/dev/null\n"
	"t=$(mktemp /tmp/.daytonafs/out/XXXXXXXX 2>/dev/null || mktemp) || { echo 'daytonafs: mktemp failed' >&2; exit 125; }\n"
	"sh -c \"$1\" >\"$t\" 2>&1 </dev/null\n"
	"r=$?\n"
	"base64 \"$t\" && echo \".$r\"\n"
	"s=$?\n"
	"rm -f \"$t\"\n"
	"[ $s = 0 ] || exit 125\n"
	"exit $r\n";

int vercel_exec_decode(const char *text, size_t len, int *status, char **output)
{
	struct strbuf out = STRBUF_INIT;
	size_t end = len, start;
	char *stop;
	long st;
	int rc;

	*output = NULL;
	while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r'))
		end--;
	start = end;
	while (start > 0 && text[start - 1] != '\n')
		start--;
	if (start == end || text[start] != '.')
		return -EIO;
	errno = 0;
	st = strtol(text + start + 1, &stop, 10);
	if (errno || stop != text + end || stop == text + start + 1 || st < 0 || st > 255)
		return -EIO;
	rc = base64_decode(&out, text, start);
	if (rc < 0) {
		sb_free(&out);
		return rc == -ENOMEM ? rc : -EIO;
	}
	sb_adds(&out, "");
	if (out.oom) {
		sb_free(&out);
		return -ENOMEM;
	}
	*status = (int)st;
	*output = sb_detach(&out);
	if (!*output)
		*output = strdup("");
	return *output ? 0 : -ENOMEM;
}

struct exec_ctx {
	struct strbuf out;          /* stdout: base64 and the status line */
	struct strbuf err;          /* stderr of the wrapper itself */
};

static int exec_log(void *p, enum vc_stream stream, const char *data, size_t len)
{
	struct exec_ctx *ec = p;
	struct strbuf *sb = stream == VC_STDOUT ? &ec->out : &ec->err;

	if (stream == VC_STDERR && sb->len > 4096)
		return 0;
	sb_add(sb, data, len);
	return sb->oom ? -ENOMEM : 0;
}

/* Scripts longer than this go to the sandbox as a file first. */
#define VC_SCRIPT_ARG_MAX (96 * 1024)

static int run(struct vprov *v, const struct sp_box *box, const char *script, const char *cwd,
	       const struct sp_kv *envs, size_t n_envs, long server_timeout_s, long http_timeout_ms,
	       int *exit_code, char **output, struct sp_error *err)
{
	const char *args[] = { "-c", vercel_exec_wrapper, "sh", script };
	struct vc_kv *env = calloc(n_envs + 1, sizeof(*env));
	struct exec_ctx ec = { STRBUF_INIT, STRBUF_INIT };
	struct vc_cmd_params p = { 0 };
	struct vc_error ve = { 0 };
	struct vc_command cmd;
	struct strbuf indirect = STRBUF_INIT;
	int rc, status = -1, attempts = 0;
	char *text = NULL, sid[128];

	if (output)
		*output = NULL;
	if (exit_code)
		*exit_code = -1;
	if (!env)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	session_of(v, box, sid, sizeof(sid));
	if (!sid[0]) {
		free(env);
		return no_session(err, box);
	}
	if (strlen(script) > VC_SCRIPT_ARG_MAX) {
		/* Linux takes no single argument over 128 KiB (MAX_ARG_STRLEN):
		 * a longer script (stdin data, a long batch) goes as a file,
		 * which the command runs and removes. */
		char path[128];
		int wattempts = 0;

		/* pid and random bits: another mount's daemon may have our pid. */
		tmp_name(path, sizeof(path), "/tmp/.daytonafs/out/script");
		do
			rc = vc_fs_write_mem(v->vc, sid, path, script, strlen(script), 0600, &ve);
		while (retry_moved(v, box, rc, &ve, sid, sizeof(sid), &wattempts));
		if (rc < 0) {
			free(env);
			from_vc(err, rc, &ve);
			goto out;
		}
		sb_addf(&indirect, "f=%s; sh \"$f\"; r=$?; rm -f \"$f\"; exit $r", path);
		if (indirect.oom) {
			free(env);
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		args[3] = indirect.buf;
	}
	for (size_t i = 0; i < n_envs; i++)
		env[i] = (struct vc_kv){ envs[i].key, envs[i].value };
	p.command = "sh";
	p.args = args;
	p.n_args = 4;
	p.cwd = cwd;
	p.env = env;
	p.n_env = n_envs;
	p.timeout_ms = server_timeout_s > 0 ? server_timeout_s * 1000 : 0;
	do {
		sb_reset(&ec.out);
		sb_reset(&ec.err);
		rc = vc_cmd_run_wait(v->vc, sid, &p, http_timeout_ms, exec_log, &ec, &cmd, &ve);
	} while (retry_moved(v, box, rc, &ve, sid, sizeof(sid), &attempts));
	free(env);
	if (rc < 0) {
		/* 410 or a stopped stream: the session is gone (EHOSTDOWN). */
		from_vc(err, rc, &ve);
		goto out;
	}
	rc = vercel_exec_decode(ec.out.buf ? ec.out.buf : "", ec.out.len, &status, &text);
	if (rc == -ENOMEM) {
		sp_error_set(err, rc, 0, "out of memory");
		goto out;
	}
	if (rc < 0) {
		/* No status line: the wrapper did not finish. 137 is the
		 * SIGKILL of the command's time limit. */
		if (cmd.exit_code == 137 || cmd.exit_code == 128 + 9)
			rc = sp_error_set(err, -ETIMEDOUT, 408, "the command ran out of its %ld s", server_timeout_s);
		else
			rc = sp_error_set(err, -EIO, 0, "the command's output came back incomplete (exit %d): %.200s",
					  cmd.exit_code, ec.err.buf ? ec.err.buf : "");
		goto out;
	}
	if (exit_code)
		*exit_code = status;
	if (output) {
		*output = text;
		text = NULL;
	}
out:
	free(text);
	sb_free(&indirect);
	sb_free(&ec.out);
	sb_free(&ec.err);
	return rc;
}

/* The HTTP limit of a command with a time limit of its own: 5 s more. */
static long http_ms(struct vprov *v, long timeout_s)
{
	(void)v;
	return timeout_s > 0 ? (timeout_s + 5) * 1000 : 0;
}

static int v_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
		  const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
		  struct sp_error *err)
{
	return run(impl, box, command, cwd, envs, n_envs, timeout_s, http_ms(impl, timeout_s), exit_code, output, err);
}

static int v_exec_within(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			 long limit_s, int *exit_code, char **output, struct sp_error *err)
{
	/* The sandbox kills it when the mount stops waiting (limit_s). */
	return run(impl, box, command, cwd, NULL, 0, limit_s, limit_s > 0 ? limit_s * 1000 : 0, exit_code, output,
		   err);
}

static int v_work_dir(void *impl, const struct sp_box *box, char *out, size_t cap, struct sp_error *err)
{
	struct vc_sandbox vs;
	int rc = get_sandbox(impl, box->id, false, &vs, err);
	const char *cwd;

	if (rc < 0)
		return rc;
	cwd = vs.has_session && vs.session.cwd[0] ? vs.session.cwd : vs.cwd[0] ? vs.cwd : "/vercel/sandbox";
	if (!str_copy(out, cap, cwd))
		rc = sp_error_set(err, -ENAMETOOLONG, 0, "working directory too long");
	vc_sandbox_clear(&vs);
	return rc;
}

/* ---- files -------------------------------------------------------------------- */

/* fs/read has no range: the bytes before off are read and dropped, and the
 * transfer stops once len bytes have gone to the caller. */
struct range_sink {
	http_sink_fn sink;
	void *ctx;
	uint64_t skip, left;        /* left: 0 = to the end */
	bool bounded, full;
	int64_t given;
};

static int range_sink_fn(void *p, const void *data, size_t len)
{
	struct range_sink *r = p;
	const char *d = data;
	int rc;

	if (r->skip) {
		size_t s = r->skip < len ? (size_t)r->skip : len;

		r->skip -= s;
		d += s;
		len -= s;
	}
	if (!len)
		return 0;
	if (r->bounded && len > r->left)
		len = (size_t)r->left;
	rc = r->sink(r->ctx, d, len);
	if (rc)
		return rc;
	r->given += (int64_t)len;
	if (r->bounded) {
		r->left -= len;
		if (!r->left) {
			r->full = true;
			return -ECANCELED;
		}
	}
	return 0;
}

static int64_t v_fs_download(void *impl, const struct sp_box *box, const char *path, uint64_t off, uint64_t len,
			     http_sink_fn sink, void *ctx, struct sp_error *err)
{
	struct vprov *v = impl;
	struct range_sink r = { sink, ctx, off, len, len > 0, false, 0 };
	struct vc_error ve = { 0 };
	char sid[128];
	int attempts = 0;
	int64_t got;

	session_of(v, box, sid, sizeof(sid));
	if (!sid[0])
		return no_session(err, box);
	do
		got = vc_fs_read(v->vc, sid, path, range_sink_fn, &r, &ve);
	while (retry_moved(v, box, (int)got, &ve, sid, sizeof(sid), &attempts));
	if (got == -ECANCELED && r.full)
		return r.given;
	if (got < 0)
		return from_vc(err, (int)got, &ve);
	return r.given;
}

static int v_fs_upload_fd(void *impl, const struct sp_box *box, const char *path, int fd, uint64_t len,
			  struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc, attempts = 0;
	char sid[128];

	session_of(v, box, sid, sizeof(sid));
	if (!sid[0])
		return no_session(err, box);
	/* 0644: a new file as an upload makes it (the mount's chmod follows
	 * when the file wants another mode). */
	do
		rc = vc_fs_write_fd(v->vc, sid, path, fd, len, 0644, &ve);
	while (retry_moved(v, box, rc, &ve, sid, sizeof(sid), &attempts));
	return rc < 0 ? from_vc(err, rc, &ve) : 0;
}

static int v_fs_mkdir(void *impl, const struct sp_box *box, const char *path, mode_t mode, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc, attempts = 0;
	char sid[128];

	(void)mode;   /* fs/mkdir takes no mode: the default user's umask applies */
	session_of(v, box, sid, sizeof(sid));
	if (!sid[0])
		return no_session(err, box);
	do
		rc = vc_fs_mkdir(v->vc, sid, path, false, &ve);
	while (retry_moved(v, box, rc, &ve, sid, sizeof(sid), &attempts));
	return rc < 0 ? from_vc(err, rc, &ve) : 0;
}

/* Many files in one command each way (vercel_bulk.c). */
static int v_fs_bulk_download(void *impl, const struct sp_box *box, struct sp_bulk_file *files, size_t n,
			      struct sp_error *err)
{
	return vercel_bulk_download(v_exec, impl, box, files, n, err);
}

static int v_fs_upload_many(void *impl, const struct sp_box *box, struct sp_upload_item *items, size_t n,
			    struct sp_error *err)
{
	return vercel_upload_many(v_exec, impl, box, items, n, err);
}

/* Every upload goes through a temporary name and a copy (see the top). */
static bool v_upload_path_changed(const char *path)
{
	(void)path;
	return true;
}

static void v_free(void *impl)
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
	.sandbox_list = v_sandbox_list,
	.sandbox_get = v_sandbox_get,
	.sandbox_toolbox_url = v_sandbox_toolbox_url,
	.sandbox_create = v_sandbox_create,
	.sandbox_action = v_sandbox_action,
	.sandbox_delete = v_sandbox_delete,
	.sandbox_set_labels = v_sandbox_set_labels,
	.sandbox_get_labels = v_sandbox_get_labels,
	.sandbox_snapshot = v_sandbox_snapshot,
	.snapshot_list = v_snapshot_list,
	.snapshot_get = v_snapshot_get,
	.snapshot_delete = v_snapshot_delete,
	.ping = v_ping,
	.sandbox_extend = v_sandbox_extend,
	.exec = v_exec,
	.exec_activity = v_exec,
	.exec_within = v_exec_within,
	.work_dir = v_work_dir,
	.fs_download = v_fs_download,
	.fs_upload_fd = v_fs_upload_fd,
	.fs_mkdir = v_fs_mkdir,
	.fs_bulk_download = v_fs_bulk_download,
	.fs_upload_many = v_fs_upload_many,
	.upload_path_changed = v_upload_path_changed,
	.free = v_free,
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
	/* The optional operations it has: mkdir, snapshots, labels (tags).
	 * Not list, info, move, delete, chmod, ranged reads (cut from whole
	 * reads), streamed in-place uploads, resize, intervals. */
	sp->caps = SP_CAP_FS_MKDIR | SP_CAP_SNAPSHOTS | SP_CAP_LABELS | SP_CAP_EXTEND | SP_CAP_BULK_DOWNLOAD |
		   SP_CAP_UPLOAD_IN_PLACE;
	/* fs/write and the commands the mount runs (not sudo) act as the
	 * sandbox's default user, uid and gid 1000 ("ubuntu" in images, as
	 * "vercel-sandbox" in runtime sandboxes, vercel.h): the owner of every
	 * file the mount makes there. */
	sp->files_owner_known = true;
	sp->files_uid = VC_DEFAULT_UID;
	sp->files_gid = VC_DEFAULT_GID;
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
