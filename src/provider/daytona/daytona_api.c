/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_api.c - the Daytona control plane ({api_url}/sandbox/..., /snapshots):
 * listing and getting sandboxes, waiting for states, create, lifecycle
 * actions, labels, intervals and snapshots.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daytona_int.h"
#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define LIST_PAGE_LIMIT      200
#define SNAPSHOT_PAGE_LIMIT  100
#define MAX_PAGES            10000   /* a server looping on its cursor must not hang us */

/* ---- sandboxes: daemon versions ------------------------------------------- */

/* Remembers whether sb's daemon runs commands through a shell. An object
 * without daemonVersion changes nothing. */
static void note_daemon(struct dt_client *dt, const struct sp_sandbox *sb)
{
	bool old = !dt_daemon_runs_shell(sb->daemon_version);
	size_t i;

	if (!sb->daemon_version[0])
		return;
	pthread_mutex_lock(&dt->old_lock);
	for (i = 0; i < dt->n_old && strcmp(dt->old[i].id, sb->id); i++)
		;
	if (i < dt->n_old && !old) {
		dt->old[i] = dt->old[--dt->n_old];
	} else if (i < dt->n_old) {
		str_copy(dt->old[i].version, sizeof(dt->old[i].version), sb->daemon_version);
	} else if (old) {
		struct old_daemon *nv = realloc(dt->old, (dt->n_old + 1) * sizeof(*nv));

		if (nv) {   /* out of memory: the command is sent, and fails in the sandbox */
			dt->old = nv;
			str_copy(nv[dt->n_old].id, sizeof(nv[dt->n_old].id), sb->id);
			str_copy(nv[dt->n_old].version, sizeof(nv[dt->n_old].version), sb->daemon_version);
			dt->n_old++;
		}
	}
	pthread_mutex_unlock(&dt->old_lock);
}

/* Copies the daemon version of sandbox id into out when it is too old to run
 * a shell; false when it is not (or not known to be). */
bool dt_old_daemon(struct dt_client *dt, const char *id, char *out, size_t cap)
{
	bool found = false;

	pthread_mutex_lock(&dt->old_lock);
	for (size_t i = 0; i < dt->n_old && !found; i++) {
		if (!strcmp(dt->old[i].id, id)) {
			str_copy(out, cap, dt->old[i].version);
			found = true;
		}
	}
	pthread_mutex_unlock(&dt->old_lock);
	return found;
}

/* ---- sandboxes: parsing --------------------------------------------------- */

/* volumes[].mountPath of a Sandbox, one per line. A list that does not fit,
 * or a path with a newline, gives "/": every path is then taken to be on a
 * volume, which costs a command per rename, never a non-atomic one. False
 * when the object does not say (a list item). */
static bool volume_paths(char *out, size_t cap, const cJSON *obj)
{
	const cJSON *vols = cJSON_GetObjectItemCaseSensitive(obj, "volumes");
	const cJSON *v;
	size_t len = 0;

	out[0] = '\0';
	if (!cJSON_IsArray(vols))
		return cJSON_IsNull(vols);
	cJSON_ArrayForEach(v, vols) {
		const char *mp = dt_jstr(v, "mountPath");
		size_t n = mp ? strlen(mp) : 0;

		if (!n)
			continue;
		if (strchr(mp, '\n') || len + n + 2 > cap) {
			str_copy(out, cap, "/");
			return true;
		}
		memcpy(out + len, mp, n);
		len += n;
		out[len++] = '\n';
		out[len] = '\0';
	}
	return true;
}

static bool has_slash_or_control(const char *s)
{
	for (; *s; s++)
		if (*s == '/' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

void dt_json_mark_nul_escapes(char *text, size_t len)
{
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		if (!in_string) {
			in_string = text[i] == '"';
			continue;
		}
		if (text[i] == '"') {
			in_string = false;
		} else if (text[i] == '\\' && i + 1 < len) {
			if (len - i >= 6 && !memcmp(text + i + 1, "u0000", 5))
				text[i + 5] = '1';
			i++;   /* the escaped character is never a quote that ends the string */
		}
	}
}

/* "v0.156.0", "0.156.0-dev" ... */
bool dt_daemon_runs_shell(const char *version)
{
	unsigned long major, minor;
	const char *p = version;
	char *end;

	if (!p || !*p)
		return true;
	if (*p == 'v' || *p == 'V')
		p++;
	if (*p < '0' || *p > '9')
		return true;
	major = strtoul(p, &end, 10);
	if (*end != '.' || end[1] < '0' || end[1] > '9')
		return true;
	minor = strtoul(end + 1, &end, 10);
	return major > 0 || minor >= 156;
}

/* The Sandbox's "env" object as "K=V\n" lines; a value with a newline
 * cannot be such a line and is left out. */
static int env_lines(const cJSON *obj, char **out)
{
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(obj, "env"), *it;
	struct strbuf sb = STRBUF_INIT;

	*out = NULL;
	if (!cJSON_IsObject(env))
		return 0;
	cJSON_ArrayForEach(it, env) {
		if (!cJSON_IsString(it) || !it->string || strchr(it->valuestring, '\n'))
			continue;
		sb_addf(&sb, "%s=%s\n", it->string, it->valuestring);
	}
	if (sb.oom) {
		sb_free(&sb);
		return -ENOMEM;
	}
	*out = sb.len ? sb.buf : NULL;
	if (!sb.len)
		sb_free(&sb);
	return 0;
}

int dt_sandbox_from_json(const struct cJSON *obj, struct sp_sandbox *out)
{
	const char *id, *name;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj))
		return -EINVAL;
	id = dt_jstr(obj, "id");
	/* The id goes into URLs: one cut to fit, or one that is not a single
	 * path segment, would address another sandbox or none. */
	if (!id || !id[0] || !strcmp(id, ".") || !strcmp(id, "..") || has_slash_or_control(id) ||
	    !str_copy(out->id, sizeof(out->id), id))
		return -EINVAL;
	name = dt_jstr(obj, "name");
	out->name_exact = str_copy(out->name, sizeof(out->name), name ? name : "");
	dt_jcopy(out->daemon_version, sizeof(out->daemon_version), obj, "daemonVersion");
	dt_jcopy(out->state, sizeof(out->state), obj, "state");
	dt_jcopy(out->desired_state, sizeof(out->desired_state), obj, "desiredState");
	/* A cut address would send the token to another path: one that does
	 * not fit counts as none given (the mount then asks for it). */
	if (!str_copy(out->toolbox_url, sizeof(out->toolbox_url), dt_jstr(obj, "toolboxProxyUrl") ?
		      dt_jstr(obj, "toolboxProxyUrl") : ""))
		out->toolbox_url[0] = '\0';
	dt_jcopy(out->error_reason, sizeof(out->error_reason), obj, "errorReason");
	dt_jcopy(out->user, sizeof(out->user), obj, "user");
	dt_jcopy(out->snapshot, sizeof(out->snapshot), obj, "snapshot");
	out->is_public = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "public"));
	dt_jtime(&out->created_at, obj, "createdAt");
	dt_jtime(&out->updated_at, obj, "updatedAt");
	out->volumes_known = volume_paths(out->volume_paths, sizeof(out->volume_paths), obj);
	out->json = dt_pretty_json(obj);
	if (!out->json)
		return -ENOMEM;
	return env_lines(obj, &out->env);
}

/* Parses a response that must be one Sandbox. */
static cJSON *parse_sandbox_body(struct http_response *resp, const char *what, struct sp_error *err);

static int sandbox_from_resp(struct dt_client *dt, struct http_response *resp, const char *what,
			     struct sp_sandbox *out, struct sp_error *err)
{
	cJSON *root = parse_sandbox_body(resp, what, err);
	int rc;

	if (!root)
		return -EIO;
	rc = dt_sandbox_from_json(root, out);
	cJSON_Delete(root);
	if (rc == -ENOMEM)
		return dt_oom(err);
	if (rc)
		return dt_malformed(err, resp->status, what);
	note_daemon(dt, out);
	return 0;
}

/* ---- sandboxes: calls ----------------------------------------------------- */

static int append_sandboxes(struct dt_client *dt, const cJSON *items, struct sp_sandbox **list, size_t *n,
			    size_t *cap)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, items) {
		struct sp_sandbox sb;
		int rc;

		if (*n == DT_LIST_MAX_ITEMS)
			return -EFBIG;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 64;
			struct sp_sandbox *nl = realloc(*list, nc * sizeof(**list));

			if (!nl)
				return -ENOMEM;
			*list = nl;
			*cap = nc;
		}
		rc = dt_sandbox_from_json(it, &sb);
		if (rc == -ENOMEM)
			return rc;
		if (rc) {
			log_debug("sandbox list: skipping an item without a usable id");
			continue;
		}
		note_daemon(dt, &sb);
		(*list)[(*n)++] = sb;
	}
	return 0;
}

/* A sandbox body parsed, with NUL escapes marked first (dt_json_mark_nul_escapes). */
static cJSON *parse_sandbox_body(struct http_response *resp, const char *what, struct sp_error *err)
{
	if (resp->body)
		dt_json_mark_nul_escapes(resp->body, resp->body_len);
	return dt_parse_body(resp, what, err);
}

/* The cursors a listing was given so far: a server that hands out any of
 * them again (not only the last one) would make the listing loop. */
struct cursor_seen {
	char **v;
	size_t n;
};

static bool cursor_was_seen(const struct cursor_seen *cs, const char *cursor)
{
	for (size_t i = 0; i < cs->n; i++)
		if (!strcmp(cs->v[i], cursor))
			return true;
	return false;
}

static int cursor_remember(struct cursor_seen *cs, const char *cursor)
{
	char **nv = realloc(cs->v, (cs->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	cs->v = nv;
	cs->v[cs->n] = strdup(cursor);
	if (!cs->v[cs->n])
		return -ENOMEM;
	cs->n++;
	return 0;
}

static void cursor_seen_free(struct cursor_seen *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		free(cs->v[i]);
	free(cs->v);
}

int dt_sandbox_list(struct dt_client *dt, struct sp_sandbox **out, size_t *n, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct sp_sandbox *list = NULL;
	struct cursor_seen seen = { 0 };
	const char *cursor = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0, page;
	bool more = true;

	dt_error_clear(err);
	*out = NULL;
	*n = 0;
	for (page = 0; more; page++) {
		struct http_response resp;
		struct call c = { .method = "GET", .what = "list sandboxes", .idempotent = true,
				  .max_body = 64u << 20 };
		const cJSON *items, *next;
		cJSON *root;

		if (page == DT_LIST_MAX_PAGES) {
			rc = sp_error_set(err, -EIO, 0, "list sandboxes: more than %d pages: giving up",
					  DT_LIST_MAX_PAGES);
			break;
		}
		sb_reset(&url);
		dt_api_url(&url, dt, "/sandbox");
		/* The default order (lastActivityAt desc) moves a sandbox that is
		 * used while we page past the cursor: creation order does not. */
		sb_addf(&url, "?limit=%d&sort=createdAt&order=asc", LIST_PAGE_LIMIT);
		if (cursor)
			dt_add_query(&url, "cursor", cursor);
		if (url.oom) {
			rc = dt_oom(err);
			break;
		}
		c.url = sb_str(&url);
		rc = dt_do(dt, &c, &resp, err);
		if (rc) {
			http_response_free(&resp);
			break;
		}
		root = parse_sandbox_body(&resp, c.what, err);
		if (!root) {
			http_response_free(&resp);
			rc = -EIO;
			break;
		}
		/* {"items": [...], "nextCursor": "..."|null}; a bare array is
		 * accepted too (one page). */
		items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
		next = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "nextCursor") : NULL;
		more = false;
		if (!cJSON_IsArray(items)) {
			rc = dt_malformed(err, resp.status, c.what);
		} else {
			rc = append_sandboxes(dt, items, &list, &cnt, &cap);
			if (rc == -EFBIG)
				rc = sp_error_set(err, -EIO, resp.status,
						  "list sandboxes: more than %d sandboxes: giving up", DT_LIST_MAX_ITEMS);
			else if (rc)
				dt_oom(err);
		}
		if (!rc && cJSON_IsString(next) && next->valuestring[0]) {
			if (cursor_was_seen(&seen, next->valuestring))
				rc = sp_error_set(err, -EIO, resp.status,
						  "list sandboxes: the server repeated a page cursor: giving up");
			else if (cursor_remember(&seen, next->valuestring))
				rc = dt_oom(err);
			else
				more = true;
			cursor = seen.n ? seen.v[seen.n - 1] : NULL;
		}
		cJSON_Delete(root);
		http_response_free(&resp);
		if (rc)
			break;
	}
	sb_free(&url);
	cursor_seen_free(&seen);
	if (rc) {
		sp_sandbox_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

int dt_sandbox_get(struct dt_client *dt, const char *id_or_name, struct sp_sandbox *out, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	struct call c = { .method = "GET", .idempotent = true };
	int rc;

	dt_error_clear(err);
	memset(out, 0, sizeof(*out));
	dt_sandbox_url(&url, dt, id_or_name, NULL);
	sb_addf(&what, "get sandbox %s", id_or_name);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do(dt, &c, &resp, err);
	if (!rc)
		rc = sandbox_from_resp(dt, &resp, c.what, out, err);
	http_response_free(&resp);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_toolbox_url(struct dt_client *dt, const char *id, char *out, size_t cap, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "GET", .idempotent = true };
	struct dt_json_str s = { .key = "url", .out = out, .cap = cap, .too_long = -EIO };
	int rc;

	dt_error_clear(err);
	if (cap)
		out[0] = '\0';
	dt_sandbox_url(&url, dt, id, "/toolbox-proxy-url");
	sb_addf(&what, "get the toolbox address of sandbox %s", id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do_json(dt, &c, dt_json_str, &s, err);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- waiting -------------------------------------------------------------- */

struct wait_spec {
	const char *target;         /* done when the state is this ... */
	const char *leave;          /* ... or when the state is no longer this */
	bool gone_ok;               /* a 404 also ends the wait (stop: ephemeral) */
	bool want_gone;             /* only a 404 ends the wait (delete) */
	const char *verb;           /* for messages: "start", "stop" ... */
};


static bool is_failed_state(const char *state)
{
	return strcmp(state, "error") == 0 || strcmp(state, "build_failed") == 0;
}

/*
 * Polls GET /sandbox/{id} as the SDKs do: every 100 ms, and after 5 s the
 * interval grows by 1.1 per poll up to 1 s; dt->wait_timeout_ms bounds the
 * whole wait (0: no bound). cur holds the state already known (from the
 * action's response) and, on return, the last state seen.
 */
static int wait_state(struct dt_client *dt, const struct wait_spec *ws, struct sp_sandbox *cur,
		      sp_state_fn on_state, void *ctx, struct sp_error *err)
{
	char id[sizeof(cur->id)], reported[sizeof(cur->state)] = "";
	long start = clock_mono_ms();
	double interval = 100;
	int rc;

	str_copy(id, sizeof(id), cur->id);
	for (;;) {
		long elapsed;

		if (on_state && strcmp(reported, cur->state) != 0) {
			str_copy(reported, sizeof(reported), cur->state);
			on_state(ctx, cur->state);
		}
		if (!ws->want_gone) {
			if (ws->target && strcmp(cur->state, ws->target) == 0)
				return 0;
			if (ws->leave && cur->state[0] && strcmp(cur->state, ws->leave) != 0 &&
			    !is_failed_state(cur->state))
				return 0;
		}
		if (is_failed_state(cur->state))
			return sp_error_set(err, -EIO, 0, "sandbox %s: %s failed: state %s%s%s", id, ws->verb,
					    cur->state, cur->error_reason[0] ? ": " : "", cur->error_reason);
		elapsed = clock_mono_ms() - start;
		if (dt->wait_timeout_ms > 0 && elapsed >= dt->wait_timeout_ms)
			return sp_error_set(err, -ETIMEDOUT, 0,
					    "sandbox %s: %s: timed out after %.1f s waiting for it to %s%s (state is %s)",
					    id, ws->verb, dt->wait_timeout_ms / 1000.0,
					    ws->want_gone ? "be destroyed" : ws->target ? "become " : "leave ",
					    ws->want_gone ? "" : ws->target ? ws->target : ws->leave,
					    cur->state[0] ? cur->state : "unknown");
		sleep_ms((long)interval);
		if (clock_mono_ms() - start > 5000) {
			interval *= 1.1;
			if (interval > 1000)
				interval = 1000;
		}

		sp_sandbox_clear(cur);
		rc = dt_sandbox_get(dt, id, cur, err);
		if (rc == -ENOENT && (ws->gone_ok || ws->want_gone)) {
			dt_error_clear(err);
			str_copy(cur->id, sizeof(cur->id), id);
			str_copy(cur->state, sizeof(cur->state), "destroyed");
			if (on_state)
				on_state(ctx, "destroyed");
			return 0;
		}
		if (rc)
			return rc;
	}
}

/* Runs a lifecycle call that answers with a Sandbox, then waits. */
static int action_and_wait(struct dt_client *dt, const struct call *c, const struct wait_spec *ws,
			   sp_state_fn on_state, void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	struct http_response resp;
	struct sp_sandbox cur;
	int rc;

	memset(&cur, 0, sizeof(cur));
	rc = dt_do(dt, c, &resp, err);
	if (!rc)
		rc = sandbox_from_resp(dt, &resp, c->what, &cur, err);
	http_response_free(&resp);
	if (!rc && ws)
		rc = wait_state(dt, ws, &cur, on_state, ctx, err);
	if (!rc && out)
		*out = cur;
	else
		sp_sandbox_clear(&cur);
	return rc;
}

/* action_and_wait for create: the caller hears of the sandbox as soon as the
 * API answers (on_created, e.g. to show it and its progress while it builds),
 * then of each state seen. */
static int action_and_wait_created(struct dt_client *dt, const struct call *c, const struct wait_spec *ws,
				   const struct sp_create_params *p, struct sp_sandbox *out, struct sp_error *err)
{
	struct http_response resp;
	struct sp_sandbox cur;
	int rc;

	memset(&cur, 0, sizeof(cur));
	rc = dt_do(dt, c, &resp, err);
	if (!rc)
		rc = sandbox_from_resp(dt, &resp, c->what, &cur, err);
	http_response_free(&resp);
	if (!rc && p->on_created)
		p->on_created(p->progress_ctx, &cur);
	if (!rc)
		rc = wait_state(dt, ws, &cur, p->on_state, p->progress_ctx, err);
	if (!rc && out)
		*out = cur;
	else
		sp_sandbox_clear(&cur);
	return rc;
}

/* The HTTP timeout for calls the server may hold (create, start): the wait. */
static long lifecycle_timeout(const struct dt_client *dt)
{
	return dt->wait_timeout_ms > 0 ? dt->wait_timeout_ms : 0;
}

/* ---- create ---------------------------------------------------------------- */


char *dt_create_body_json(const struct sp_create_params *p, const char *default_target)
{
	cJSON *root = cJSON_CreateObject(), *labels, *vols;
	const char *target = p->target && p->target[0] ? p->target : default_target;
	long autodelete = p->ephemeral ? 0 : p->autodelete;
	char *out = NULL;
	bool ok = root != NULL;

#define NEED(x) do { if (ok && !(x)) ok = false; } while (0)
	if (p->name)
		NEED(cJSON_AddStringToObject(root, "name", p->name));
	if (p->user)
		NEED(cJSON_AddStringToObject(root, "user", p->user));
	if (p->snapshot)
		NEED(cJSON_AddStringToObject(root, "snapshot", p->snapshot));
	if (ok && p->image) {
		/* A declarative image, as the SDK's Image.base(): the server
		 * builds it (pending_build -> building_snapshot -> ...). */
		struct strbuf df = STRBUF_INIT;
		cJSON *bi = cJSON_AddObjectToObject(root, "buildInfo");

		sb_addf(&df, "FROM %s\n", p->image);
		NEED(bi && !df.oom && cJSON_AddStringToObject(bi, "dockerfileContent", sb_str(&df)));
		sb_free(&df);
	}
	if (target && target[0])
		NEED(cJSON_AddStringToObject(root, "target", target));
	if (p->cpu >= 0)
		NEED(cJSON_AddNumberToObject(root, "cpu", p->cpu));
	if (p->gpu >= 0)
		NEED(cJSON_AddNumberToObject(root, "gpu", p->gpu));
	if (p->memory >= 0)
		NEED(cJSON_AddNumberToObject(root, "memory", p->memory));
	if (p->disk >= 0)
		NEED(cJSON_AddNumberToObject(root, "disk", p->disk));
	/* The SDK always sends env and labels, with the language label. */
	if (ok)
		NEED(dt_add_kv_object(root, "env", p->env, p->n_env, NULL));
	labels = NULL;
	if (ok)
		NEED(dt_add_kv_object(root, "labels", p->labels, p->n_labels, &labels));
	if (ok && p->language && p->language[0])
		NEED(dt_set_string(labels, "code-toolbox-language", p->language));
	else if (ok && !cJSON_GetObjectItemCaseSensitive(labels, "code-toolbox-language"))
		NEED(dt_set_string(labels, "code-toolbox-language", "python"));
	if (p->is_public)
		NEED(cJSON_AddTrueToObject(root, "public"));
	if (p->autostop != LONG_MIN)
		NEED(cJSON_AddNumberToObject(root, "autoStopInterval", (double)p->autostop));
	if (p->autoarchive != LONG_MIN)
		NEED(cJSON_AddNumberToObject(root, "autoArchiveInterval", (double)p->autoarchive));
	if (autodelete != LONG_MIN)
		NEED(cJSON_AddNumberToObject(root, "autoDeleteInterval", (double)autodelete));
	if (p->network_block_all)
		NEED(cJSON_AddTrueToObject(root, "networkBlockAll"));
	if (p->network_allow_list && p->network_allow_list[0])
		NEED(cJSON_AddStringToObject(root, "networkAllowList", p->network_allow_list));
	if (ok && p->n_volumes) {
		vols = cJSON_AddArrayToObject(root, "volumes");
		NEED(vols);
		for (size_t i = 0; ok && i < p->n_volumes; i++) {
			cJSON *v = cJSON_CreateObject();

			NEED(v);
			if (!ok)
				break;
			if (!cJSON_AddItemToArray(vols, v)) {
				cJSON_Delete(v);
				ok = false;
				break;
			}
			NEED(cJSON_AddStringToObject(v, "volumeId", p->volumes[i].key));
			NEED(cJSON_AddStringToObject(v, "mountPath",
						     p->volumes[i].value ? p->volumes[i].value : ""));
		}
	}
#undef NEED
	if (ok)
		out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

int dt_sandbox_create(struct dt_client *dt, const struct sp_create_params *p, struct sp_sandbox *out,
		      struct sp_error *err)
{
	static const struct wait_spec ws = { .target = "started", .verb = "create" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char *body;
	int rc;

	dt_error_clear(err);
	memset(out, 0, sizeof(*out));
	body = dt_create_body_json(p, dt->target);
	dt_api_url(&url, dt, "/sandbox");
	sb_addf(&what, "create sandbox%s%s", p->name ? " " : "", p->name ? p->name : "");
	if (!body || url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				  .timeout_ms = lifecycle_timeout(dt) };

		rc = action_and_wait_created(dt, &c, &ws, p, out, err);
	}
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- lifecycle -------------------------------------------------------------- */

int dt_sandbox_action(struct dt_client *dt, const char *id, enum sp_action action,
		      sp_state_fn on_state, void *ctx, struct sp_sandbox *out, struct sp_error *err)
{
	static const struct wait_spec specs[] = {
		[SP_START] = { .target = "started", .verb = "start" },
		[SP_STOP] = { .target = "stopped", .gone_ok = true, .verb = "stop" },
		[SP_ARCHIVE] = { .target = "archived", .verb = "archive" },
		[SP_RECOVER] = { .target = "started", .verb = "recover" },
	};
	static const char *const paths[] = {
		[SP_START] = "/start", [SP_STOP] = "/stop", [SP_ARCHIVE] = "/archive", [SP_RECOVER] = "/recover",
	};
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "POST" };
	int rc;

	dt_error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if ((unsigned)action > SP_RECOVER)
		return sp_error_set(err, -EINVAL, 0, "unknown sandbox action");
	dt_sandbox_url(&url, dt, id, paths[action]);
	sb_addf(&what, "%s sandbox %s", specs[action].verb, id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	/* start and recover may be held by the server up to 30 s. */
	c.timeout_ms = lifecycle_timeout(dt);
	rc = action_and_wait(dt, &c, &specs[action], on_state, ctx, out, err);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_delete(struct dt_client *dt, const char *id, sp_state_fn on_state, void *ctx,
		      struct sp_error *err)
{
	static const struct wait_spec ws = { .want_gone = true, .verb = "delete" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "DELETE" };
	int rc;

	dt_error_clear(err);
	dt_sandbox_url(&url, dt, id, NULL);
	sb_addf(&what, "delete sandbox %s", id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		/* The wait polls by the id from the answer: the name is
		 * renamed to DESTROYED_... at once. */
		c.url = sb_str(&url);
		c.what = sb_str(&what);
		rc = action_and_wait(dt, &c, &ws, on_state, ctx, NULL, err);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_resize(struct dt_client *dt, const char *id, int cpu, int memory, int disk,
		      struct sp_sandbox *out, struct sp_error *err)
{
	static const struct wait_spec ws = { .leave = "resizing", .verb = "resize" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	cJSON *root = cJSON_CreateObject();
	char *body = NULL;
	int rc;

	dt_error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if (root && (cpu < 0 || cJSON_AddNumberToObject(root, "cpu", cpu)) &&
	    (memory < 0 || cJSON_AddNumberToObject(root, "memory", memory)) &&
	    (disk < 0 || cJSON_AddNumberToObject(root, "disk", disk)))
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	dt_sandbox_url(&url, dt, id, "/resize");
	sb_addf(&what, "resize sandbox %s", id);
	if (!body || url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body };

		rc = action_and_wait(dt, &c, &ws, NULL, NULL, out, err);
	}
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_set_labels(struct dt_client *dt, const char *id, const struct sp_kv *labels, size_t n,
			  struct sp_sandbox *out, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_response resp;
	cJSON *root = cJSON_CreateObject(), *reply;
	char *body = NULL;
	int rc;

	dt_error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if (root && dt_add_kv_object(root, "labels", labels, n, NULL))
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	dt_sandbox_url(&url, dt, id, "/labels");
	sb_addf(&what, "set labels of sandbox %s", id);
	if (!body || url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	{
		/* PUT replaces the whole set: repeating it is harmless. */
		struct call c = { .method = "PUT", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				  .idempotent = true };

		rc = dt_do(dt, &c, &resp, err);
		if (rc || !out) {
			http_response_free(&resp);
			goto out;
		}
		/* The code answers with the Sandbox; the spec says {labels}. */
		reply = dt_parse_body(&resp, c.what, err);
		if (!reply) {
			rc = -EIO;
		} else if (dt_jstr(reply, "id")) {
			rc = dt_sandbox_from_json(reply, out) == -ENOMEM ? dt_oom(err) : 0;
			if (!rc)
				note_daemon(dt, out);
		} else {
			rc = dt_sandbox_get(dt, id, out, err);
		}
		cJSON_Delete(reply);
		http_response_free(&resp);
	}
out:
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_sandbox_get_labels(struct dt_client *dt, const char *id, struct sp_kv **labels, size_t *n,
			  struct sp_error *err)
{
	struct sp_sandbox sb;
	struct sp_kv *kv = NULL;
	const cJSON *obj, *it;
	cJSON *root = NULL;
	size_t cnt = 0, cap;
	int rc;

	*labels = NULL;
	*n = 0;
	rc = dt_sandbox_get(dt, id, &sb, err);
	if (rc)
		return rc;
	root = cJSON_Parse(sb.json);
	if (!root) {
		rc = dt_oom(err);
		goto out;
	}
	obj = cJSON_GetObjectItemCaseSensitive(root, "labels");
	cap = (size_t)cJSON_GetArraySize(obj);
	if (!cJSON_IsObject(obj) || cap == 0)
		goto out;
	kv = calloc(cap, sizeof(*kv));
	if (!kv) {
		rc = dt_oom(err);
		goto out;
	}
	cJSON_ArrayForEach(it, obj) {
		if (!it->string)
			continue;
		kv[cnt].key = strdup(it->string);
		kv[cnt].value = cJSON_IsString(it) ? strdup(it->valuestring) : cJSON_PrintUnformatted(it);
		cnt++;
		if (!kv[cnt - 1].key || !kv[cnt - 1].value) {
			sp_kv_free(kv, cnt);
			kv = NULL;
			cnt = 0;
			rc = dt_oom(err);
			goto out;
		}
	}
out:
	cJSON_Delete(root);
	sp_sandbox_clear(&sb);
	*labels = kv;
	*n = cnt;
	return rc;
}

int dt_sandbox_set_interval(struct dt_client *dt, const char *id, enum sp_interval which, long minutes,
			    struct sp_sandbox *out, struct sp_error *err)
{
	static const char *const names[] = {
		[SP_AUTOSTOP] = "autostop", [SP_AUTOARCHIVE] = "autoarchive", [SP_AUTODELETE] = "autodelete",
	};
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	dt_error_clear(err);
	if (out)
		memset(out, 0, sizeof(*out));
	if ((unsigned)which > SP_AUTODELETE)
		return sp_error_set(err, -EINVAL, 0, "unknown interval");
	dt_sandbox_url(&url, dt, id, NULL);
	sb_addf(&url, "/%s/%ld", names[which], minutes);
	sb_addf(&what, "set %s of sandbox %s", names[which], id);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
	} else {
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what),
				  .idempotent = true };
		struct sp_sandbox tmp;

		rc = action_and_wait(dt, &c, NULL, NULL, NULL, out ? out : &tmp, err);
		if (!rc && !out)
			sp_sandbox_clear(&tmp);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- snapshots -------------------------------------------------------------- */

static int snapshot_from_json(const cJSON *obj, struct sp_snapshot *out)
{
	const char *id;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj))
		return -EINVAL;
	id = dt_jstr(obj, "id");
	if (!id || !id[0])
		return -EINVAL;
	str_copy(out->id, sizeof(out->id), id);
	dt_jcopy(out->name, sizeof(out->name), obj, "name");
	dt_jcopy(out->state, sizeof(out->state), obj, "state");
	dt_jtime(&out->created_at, obj, "createdAt");
	dt_jtime(&out->updated_at, obj, "updatedAt");
	out->json = dt_pretty_json(obj);
	return out->json ? 0 : -ENOMEM;
}

static int snapshot_parse(const cJSON *root, void *out)
{
	return snapshot_from_json(root, out);
}

int dt_snapshot_list(struct dt_client *dt, struct sp_snapshot **out, size_t *n, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT;
	struct sp_snapshot *list = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0, page;

	dt_error_clear(err);
	*out = NULL;
	*n = 0;
	/* GET /snapshots is page-numbered: {items, total, page, totalPages}. */
	for (page = 1; page <= MAX_PAGES; page++) {
		struct call c = { .method = "GET", .what = "list snapshots", .idempotent = true,
				  .max_body = 64u << 20 };
		struct http_response resp;
		const cJSON *items, *it, *tp;
		cJSON *root;
		bool last;

		sb_reset(&url);
		dt_api_url(&url, dt, "/snapshots");
		sb_addf(&url, "?page=%d&limit=%d", page, SNAPSHOT_PAGE_LIMIT);
		if (url.oom) {
			rc = dt_oom(err);
			break;
		}
		c.url = sb_str(&url);
		rc = dt_do(dt, &c, &resp, err);
		root = rc ? NULL : dt_parse_body(&resp, c.what, err);
		if (!rc && !root)
			rc = -EIO;
		if (rc) {
			http_response_free(&resp);
			break;
		}
		items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
		tp = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "totalPages") : NULL;
		if (!cJSON_IsArray(items)) {
			rc = dt_malformed(err, resp.status, c.what);
			cJSON_Delete(root);
			http_response_free(&resp);
			break;
		}
		last = !cJSON_IsNumber(tp) || page >= tp->valuedouble || cJSON_GetArraySize(items) == 0;
		cJSON_ArrayForEach(it, items) {
			struct sp_snapshot s;
			int prc;

			if (cnt == cap) {
				size_t nc = cap ? cap * 2 : 32;
				struct sp_snapshot *nl = realloc(list, nc * sizeof(*nl));

				if (!nl) {
					rc = dt_oom(err);
					break;
				}
				list = nl;
				cap = nc;
			}
			prc = snapshot_from_json(it, &s);
			if (prc == -ENOMEM) {
				rc = dt_oom(err);
				break;
			}
			if (prc == 0)
				list[cnt++] = s;
		}
		cJSON_Delete(root);
		http_response_free(&resp);
		if (rc || last)
			break;
	}
	sb_free(&url);
	if (rc) {
		sp_snapshot_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

int dt_snapshot_get(struct dt_client *dt, const char *id_or_name, struct sp_snapshot *out, struct sp_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct call c = { .method = "GET", .idempotent = true };
	int rc;

	dt_error_clear(err);
	memset(out, 0, sizeof(*out));
	dt_api_url(&url, dt, "/snapshots/");
	url_add_path_segment(&url, id_or_name);
	sb_addf(&what, "get snapshot %s", id_or_name);
	if (url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = dt_do_json(dt, &c, snapshot_parse, out, err);
out:
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int dt_snapshot_delete(struct dt_client *dt, const char *id, struct sp_error *err)
{
	return dt_delete_object(dt, "/snapshots/", "snapshot", id, NULL, err);
}

int dt_sandbox_snapshot(struct dt_client *dt, const char *id, const char *name, sp_state_fn on_state,
			void *ctx, struct sp_error *err)
{
	static const struct wait_spec ws = { .leave = "snapshotting", .verb = "snapshot" };
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct sp_snapshot snap;
	cJSON *root;
	char *body = NULL;
	int rc;

	dt_error_clear(err);
	/* A duplicate name fails silently on the server, and the check after
	 * the wait would then find the old snapshot: refuse it up front. */
	rc = dt_snapshot_get(dt, name, &snap, err);
	if (rc == 0) {
		sp_snapshot_clear(&snap);
		return sp_error_set(err, -EEXIST, 0, "a snapshot named %s already exists", name);
	}
	if (rc != -ENOENT)
		return rc;
	dt_error_clear(err);

	root = cJSON_CreateObject();
	if (root && cJSON_AddStringToObject(root, "name", name))
		body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	dt_sandbox_url(&url, dt, id, "/snapshot");
	sb_addf(&what, "snapshot sandbox %s as %s", id, name);
	if (!body || url.oom || what.oom) {
		rc = dt_oom(err);
		goto out;
	}
	{
		struct call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body };

		rc = action_and_wait(dt, &c, &ws, on_state, ctx, NULL, err);
	}
	if (rc)
		goto out;
	rc = dt_snapshot_get(dt, name, &snap, err);
	if (rc == -ENOENT) {
		rc = sp_error_set(err, -EIO, 0, "snapshot %s of sandbox %s was not created", name, id);
	} else if (rc == 0) {
		if (is_failed_state(snap.state))
			rc = sp_error_set(err, -EIO, 0, "snapshot %s: state %s", name, snap.state);
		sp_snapshot_clear(&snap);
	}
out:
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

