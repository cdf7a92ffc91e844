/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_prov_snapshots.c - Vercel's snapshots as provider.h's: take one
 * (which stops the session), list, get, delete.
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

int vp_sandbox_snapshot(void *impl, const char *id, const char *name, sp_state_fn on_state, void *ctx,
			struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_snapshot snap;
	struct vc_sandbox vs;
	int rc = vp_get_sandbox(v, id, false, &vs, err);

	(void)name;   /* Vercel names snapshots itself */
	if (rc < 0)
		return rc;
	if (on_state)
		on_state(ctx, "snapshotting");
	memset(&snap, 0, sizeof(snap));
	rc = vc_snapshot_create(v->vc, vs.current_session_id, -1, &snap, &ve);
	vc_sandbox_clear(&vs);
	if (rc < 0)
		return vp_from_vc(err, rc, &ve);
	log_info("vercel: sandbox %s: snapshot %s taken (the session stops)", id, snap.id);
	vc_snapshot_clear(&snap);
	/* The session is still "snapshotting" when the snapshot is answered:
	 * the command ends when it has stopped, as stop does, so that the
	 * status read next says stopped and a start is not refused (422). */
	rc = vp_get_sandbox(v, id, false, &vs, err);
	if (rc < 0)
		return rc;
	return vp_wait_stopped(v, id, &vs, on_state, ctx, NULL, err);
}

/* False (out cleared) when the id does not fit: a cut id would name
 * another snapshot, which a delete or a create from it would then use. */
static bool snap_to_dt(struct vc_snapshot *s, struct sp_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	if (!str_copy(out->id, sizeof(out->id), s->id) || !str_copy(out->name, sizeof(out->name), s->id)) {
		memset(out, 0, sizeof(*out));
		return false;
	}
	str_copy(out->state, sizeof(out->state), s->status);
	vp_ms_to_ts(s->created_at, &out->created_at);
	vp_ms_to_ts(s->updated_at, &out->updated_at);
	out->json = s->json;
	s->json = NULL;
	return true;
}

int vp_snapshot_list(void *impl, struct sp_snapshot **out, size_t *n, struct sp_error *err)
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
		return vp_from_vc(err, rc, &ve);
	*out = calloc(count ? count : 1, sizeof(**out));
	if (!*out) {
		vc_snapshot_list_free(list, count);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	for (size_t i = 0; i < count; i++) {
		if (snap_to_dt(&list[i], &(*out)[*n]))
			(*n)++;
		else
			log_warn("vercel: snapshot id %.40s... is longer than %d bytes: not listed", list[i].id,
				 SP_ID_SIZE - 1);
	}
	vc_snapshot_list_free(list, count);
	return 0;
}

int vp_snapshot_get(void *impl, const char *id_or_name, struct sp_snapshot *out, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	struct vc_snapshot s;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = vc_snapshot_get(v->vc, id_or_name, &s, &ve);
	if (rc < 0)
		return vp_from_vc(err, rc, &ve);
	if (!snap_to_dt(&s, out)) {
		vc_snapshot_clear(&s);
		return sp_error_set(err, -ENAMETOOLONG, 0, "snapshot id longer than %d bytes", SP_ID_SIZE - 1);
	}
	vc_snapshot_clear(&s);
	return 0;
}

int vp_snapshot_delete(void *impl, const char *id, struct sp_error *err)
{
	struct vprov *v = impl;
	struct vc_error ve = { 0 };
	int rc = vc_snapshot_delete(v->vc, id, &ve);

	return rc < 0 ? vp_from_vc(err, rc, &ve) : 0;
}
