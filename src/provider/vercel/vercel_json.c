/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_json.c - the Vercel client's pure JSON: the contract's response
 * objects (sandbox, session, snapshot, command) to structs, and the create
 * and update request bodies in the SDK's key order (see vercel.h). No I/O:
 * unit-tested by tests/unit/test_vercel_json.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vercel_int.h"

/* ---- JSON parsers -------------------------------------------------------- */

static const char *jstr(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void jcopy(char *dst, size_t cap, const cJSON *obj, const char *key)
{
	const char *s = jstr(obj, key);

	str_copy(dst, cap, s ? s : "");
}

static int64_t jint(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(it) ? (int64_t)it->valuedouble : 0;
}

char *vc_pretty_json(const cJSON *obj)
{
	char *s = cJSON_Print(obj), *t;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return NULL;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	return t;
}

int vc_session_from_json(const struct cJSON *obj, struct vc_session *out)
{
	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj) || !jstr(obj, "id") || !jstr(obj, "status"))
		return -EINVAL;
	if (!str_copy(out->id, sizeof(out->id), jstr(obj, "id")))
		return -EINVAL;
	jcopy(out->status, sizeof(out->status), obj, "status");
	jcopy(out->cwd, sizeof(out->cwd), obj, "cwd");
	jcopy(out->region, sizeof(out->region), obj, "region");
	jcopy(out->source_snapshot_id, sizeof(out->source_snapshot_id), obj, "sourceSnapshotId");
	out->vcpus = (long)jint(obj, "vcpus");
	out->memory = (long)jint(obj, "memory");
	out->timeout_ms = jint(obj, "timeout");
	out->created_at = jint(obj, "createdAt");
	out->started_at = jint(obj, "startedAt");
	out->updated_at = jint(obj, "updatedAt");
	out->requested_stop_at = jint(obj, "requestedStopAt");
	out->stopped_at = jint(obj, "stoppedAt");
	return 0;
}

void vc_sandbox_clear(struct vc_sandbox *sb)
{
	free(sb->json);
	memset(sb, 0, sizeof(*sb));
}

int vc_sandbox_from_json(const struct cJSON *obj, struct vc_sandbox *out)
{
	const cJSON *p;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj) || !jstr(obj, "name") || !jstr(obj, "status"))
		return -EINVAL;
	if (!str_copy(out->name, sizeof(out->name), jstr(obj, "name")))
		return -EINVAL;
	jcopy(out->status, sizeof(out->status), obj, "status");
	jcopy(out->current_session_id, sizeof(out->current_session_id), obj, "currentSessionId");
	jcopy(out->current_snapshot_id, sizeof(out->current_snapshot_id), obj, "currentSnapshotId");
	jcopy(out->region, sizeof(out->region), obj, "region");
	jcopy(out->cwd, sizeof(out->cwd), obj, "cwd");
	p = cJSON_GetObjectItemCaseSensitive(obj, "persistent");
	out->persistent = !cJSON_IsBool(p) || cJSON_IsTrue(p);   /* persistent by default */
	out->vcpus = (long)jint(obj, "vcpus");
	out->memory = (long)jint(obj, "memory");
	out->timeout_ms = jint(obj, "timeout");
	out->created_at = jint(obj, "createdAt");
	out->updated_at = jint(obj, "updatedAt");
	out->expires_at = jint(obj, "expiresAt");
	return 0;
}

/* routes: [{url, subdomain, port}] (CONTRACT.md section 4); absent is none.
 * A system route is the platform's, not a declared port: skipped. */
int vc_routes_from_json(const struct cJSON *routes, struct vc_route *out, size_t cap, size_t *n)
{
	const cJSON *r;

	*n = 0;
	if (!routes || cJSON_IsNull(routes))
		return 0;
	if (!cJSON_IsArray(routes))
		return -EINVAL;
	cJSON_ArrayForEach(r, routes) {
		const cJSON *port = cJSON_GetObjectItemCaseSensitive(r, "port");
		const char *url = jstr(r, "url");

		if (!cJSON_IsObject(r) || !cJSON_IsNumber(port) || !url)
			return -EINVAL;
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "system")))
			continue;
		if (port->valuedouble < 1 || port->valuedouble > 65535 ||
		    port->valuedouble != (double)(int)port->valuedouble)
			return -EINVAL;
		if (*n == cap)
			return -E2BIG;
		out[*n].port = (int)port->valuedouble;
		if (!str_copy(out[*n].url, sizeof(out[*n].url), url))
			return -ENAMETOOLONG;   /* never a cut URL */
		(*n)++;
	}
	return 0;
}

int vc_sandbox_response_from_json(const struct cJSON *root, struct vc_sandbox *out)
{
	const cJSON *sess = cJSON_GetObjectItemCaseSensitive(root, "session");
	int rc = vc_sandbox_from_json(cJSON_GetObjectItemCaseSensitive(root, "sandbox"), out);

	if (rc)
		return rc;
	if (sess) {
		rc = vc_session_from_json(sess, &out->session);
		if (rc)
			return rc;
		out->has_session = true;
	}
	out->resumed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "resumed"));
	out->routes_err = vc_routes_from_json(cJSON_GetObjectItemCaseSensitive(root, "routes"),
					      out->routes, VC_MAX_ROUTES, &out->n_routes);
	if (out->routes_err)
		out->n_routes = 0;
	out->json = vc_pretty_json(root);
	return out->json ? 0 : -ENOMEM;
}

void vc_snapshot_clear(struct vc_snapshot *s)
{
	free(s->json);
	memset(s, 0, sizeof(*s));
}

int vc_snapshot_from_json(const struct cJSON *obj, struct vc_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj) || !jstr(obj, "id") || !jstr(obj, "status"))
		return -EINVAL;
	if (!str_copy(out->id, sizeof(out->id), jstr(obj, "id")))
		return -EINVAL;
	jcopy(out->source_session_id, sizeof(out->source_session_id), obj, "sourceSessionId");
	jcopy(out->region, sizeof(out->region), obj, "region");
	jcopy(out->status, sizeof(out->status), obj, "status");
	jcopy(out->creation_method, sizeof(out->creation_method), obj, "creationMethod");
	out->size_bytes = (uint64_t)jint(obj, "sizeBytes");
	out->created_at = jint(obj, "createdAt");
	out->updated_at = jint(obj, "updatedAt");
	out->expires_at = jint(obj, "expiresAt");
	out->last_used_at = jint(obj, "lastUsedAt");
	out->json = vc_pretty_json(obj);
	return out->json ? 0 : -ENOMEM;
}

int vc_command_from_json(const struct cJSON *obj, struct vc_command *out)
{
	const cJSON *ec;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj) || !jstr(obj, "id"))
		return -EINVAL;
	if (!str_copy(out->id, sizeof(out->id), jstr(obj, "id")))
		return -EINVAL;
	jcopy(out->name, sizeof(out->name), obj, "name");
	jcopy(out->cwd, sizeof(out->cwd), obj, "cwd");
	jcopy(out->session_id, sizeof(out->session_id), obj, "sessionId");
	ec = cJSON_GetObjectItemCaseSensitive(obj, "exitCode");
	if (cJSON_IsNumber(ec)) {
		out->exited = true;
		out->exit_code = ec->valueint;
	} else if (ec && !cJSON_IsNull(ec)) {
		return -EINVAL;
	}
	out->started_at = jint(obj, "startedAt");
	out->duration_ms = jint(obj, "durationMs");
	return 0;
}

/* ---- request bodies ------------------------------------------------------ */

static bool add_kv(cJSON *root, const char *key, const struct vc_kv *kv, size_t n)
{
	cJSON *o = cJSON_AddObjectToObject(root, key);

	if (!o)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!cJSON_AddStringToObject(o, kv[i].key, kv[i].value ? kv[i].value : ""))
			return false;
	return true;
}

static bool add_ports(cJSON *root, const int *ports, size_t n)
{
	cJSON *a = cJSON_AddArrayToObject(root, "ports");

	if (!a)
		return false;
	for (size_t i = 0; i < n; i++) {
		cJSON *v = cJSON_CreateNumber(ports[i]);

		if (!v || !cJSON_AddItemToArray(a, v)) {
			cJSON_Delete(v);
			return false;
		}
	}
	return true;
}

static bool add_resources(cJSON *root, int vcpus, bool with_memory)
{
	cJSON *r = cJSON_AddObjectToObject(root, "resources");

	return r && cJSON_AddNumberToObject(r, "vcpus", vcpus) &&
	       (!with_memory || cJSON_AddNumberToObject(r, "memory", (double)vcpus * 2048));
}

static char *print_and_free(cJSON *root, bool ok)
{
	char *s = ok ? cJSON_PrintUnformatted(root) : NULL;

	cJSON_Delete(root);
	return s;
}

void vc_create_params_init(struct vc_create_params *p)
{
	memset(p, 0, sizeof(*p));
	p->persistent = -1;
}

char *vc_create_body_json(const struct vc_create_params *p, const char *project_id)
{
	cJSON *root = cJSON_CreateObject();
	bool ok = root != NULL;

	/* The keys in the SDK's order. */
	ok = ok && cJSON_AddStringToObject(root, "projectId", project_id ? project_id : "");
	ok = ok && add_ports(root, p->ports, p->n_ports);
	if (ok && p->source_snapshot_id) {
		cJSON *src = cJSON_AddObjectToObject(root, "source");

		ok = src && cJSON_AddStringToObject(src, "type", "snapshot") &&
		     cJSON_AddStringToObject(src, "snapshotId", p->source_snapshot_id);
	}
	if (ok && p->timeout_ms > 0)
		ok = cJSON_AddNumberToObject(root, "timeout", (double)p->timeout_ms) != NULL;
	if (ok && p->vcpus > 0)
		ok = add_resources(root, p->vcpus, false);
	if (ok && p->runtime)
		ok = cJSON_AddStringToObject(root, "runtime", p->runtime) != NULL;
	if (ok && p->image)
		ok = cJSON_AddStringToObject(root, "image", p->image) != NULL;
	if (ok && p->name)
		ok = cJSON_AddStringToObject(root, "name", p->name) != NULL;
	if (ok && p->persistent >= 0)
		ok = cJSON_AddBoolToObject(root, "persistent", p->persistent != 0) != NULL;
	if (ok && p->n_env)
		ok = add_kv(root, "env", p->env, p->n_env);
	if (ok && p->n_tags)
		ok = add_kv(root, "tags", p->tags, p->n_tags);
	return root ? print_and_free(root, ok) : NULL;
}

void vc_update_params_init(struct vc_update_params *p)
{
	memset(p, 0, sizeof(*p));
	p->persistent = -1;
}

char *vc_update_body_json(const struct vc_update_params *p)
{
	cJSON *root = cJSON_CreateObject();
	bool ok = root != NULL;

	if (ok && p->persistent >= 0)
		ok = cJSON_AddBoolToObject(root, "persistent", p->persistent != 0) != NULL;
	if (ok && p->vcpus > 0)
		ok = add_resources(root, p->vcpus, true);
	if (ok && p->timeout_ms > 0)
		ok = cJSON_AddNumberToObject(root, "timeout", (double)p->timeout_ms) != NULL;
	if (ok && p->set_tags)
		ok = add_kv(root, "tags", p->tags, p->n_tags);
	if (ok && p->set_ports)
		ok = add_ports(root, p->ports, p->n_ports);
	return root ? print_and_free(root, ok) : NULL;
}
