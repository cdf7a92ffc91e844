/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_prov_sessions.c - which session a call for a sandbox goes to
 * (vercel_provider.c has the mapping): the newest session id seen for each
 * sandbox, and what a call does after a 410 from its session (follow a
 * session another client resumed; with -o autostart, resume it).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"
#include "vercel_prov_int.h"

/* Notes sid as name's newest session (nothing when either is empty). */
void vp_session_note(struct vprov *v, const char *name, const char *sid)
{
	size_t i;

	if (!name[0] || !sid[0] || strlen(name) >= sizeof(v->seen[0].name) || strlen(sid) >= sizeof(v->seen[0].sid))
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

/* The session a call for box goes to: the newest seen, else the box's; ""
 * (no session) when the id does not fit in cap: a cut id names another. */
void vp_session_of(struct vprov *v, const struct sp_box *box, char *out, size_t cap)
{
	bool fits = str_copy(out, cap, box->toolbox_url ? box->toolbox_url : "");

	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < v->n_seen; i++)
		if (!strcmp(v->seen[i].name, box->id)) {
			fits = str_copy(out, cap, v->seen[i].sid);
			break;
		}
	pthread_mutex_unlock(&v->lock);
	if (!fits)
		out[0] = '\0';
}


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
	int64_t deadline = clock_mono_ms() + (v->wait_timeout_ms > 0 ? v->wait_timeout_ms : 120000);
	struct sp_error err = { 0 };
	struct vc_error ve = { 0 };
	bool ok;

	while (!strcmp(vs->status, "stopping") || !strcmp(vs->status, "snapshotting")) {
		if (clock_mono_ms() > deadline)
			return false;
		sleep_ms(200);
		vc_sandbox_clear(vs);
		memset(vs, 0, sizeof(*vs));
		if (vc_sandbox_get(v->vc, name, false, vs, &ve) < 0)
			return false;
	}
	if (strcmp(vs->status, "stopped"))
		return false;
	log_info("%s: its session has stopped: resuming it for file access (-o autostart)", name);
	vc_sandbox_clear(vs);
	if (vp_get_sandbox(v, name, true, vs, &err) < 0 || vp_wait_running(v, name, vs, NULL, NULL, &err) < 0) {
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
		char seen[SP_ID_SIZE];
		struct sp_box box = { .id = name, .toolbox_url = sid };

		pthread_mutex_lock(&v->resume_lock);
		/* another caller resumed it meanwhile */
		vp_session_of(v, &box, seen, sizeof(seen));
		if (seen[0] && strcmp(seen, sid) != 0) {
			pthread_mutex_unlock(&v->resume_lock);
			return str_copy(out, cap, seen);
		}
	}
	memset(&vs, 0, sizeof(vs));
	if (vc_sandbox_get(v->vc, name, false, &vs, &ve) == 0) {
		if (!strcmp(vs.status, "running") && vs.current_session_id[0] &&
		    strcmp(vs.current_session_id, sid) != 0) {
			vp_session_note(v, name, vs.current_session_id);
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
bool vp_retry_moved(struct vprov *v, const struct sp_box *box, int rc, const struct vc_error *ve, char *sid,
		    size_t cap, int *attempts)
{
	if (rc != -EHOSTDOWN || ve->http_status != 410 || (*attempts)++ > 0)
		return false;
	return session_moved(v, box->id, sid, sid, cap);
}

int vp_no_session(struct sp_error *err, const struct sp_box *box)
{
	return sp_error_set(err, -EHOSTDOWN, 0, "sandbox %s has no session", box->id);
}
