/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec_poll.c - the in-memory model of the commands of each sandbox (struct
 * ebox, struct ecmd), the requests that fetch a command's state, and the
 * poller threads that wait on it.
 */
#include "exec_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"
#include "urlenc.h"
#include "rfs.h"

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void timed_wait(pthread_cond_t *cv, pthread_mutex_t *lock, int64_t until_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(until_ms / 1000);
	ts.tv_nsec = (long)(until_ms % 1000) * 1000000;
	pthread_cond_timedwait(cv, lock, &ts);
}

bool interrupted(struct exec_mgr *m)
{
	return m->o.interrupted && m->o.interrupted();
}

static struct ecmd *cmd_new(struct exec_mgr *m, unsigned n)
{
	struct ecmd *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->n = n;
	c->state = EXEC_RUNNING;
	c->exit_code = -1;
	c->interval_ms = m->o.poll_min_ms;
	pthread_cond_init(&c->cv, &m->cattr);
	pthread_cond_init(&c->poll_cv, &m->cattr);
	pthread_cond_init(&c->in_cv, &m->cattr);
	return c;
}

static void cmd_free(struct ecmd *c)
{
	struct poll_req *p, *next;

	for (p = c->polls; p; p = next) {
		next = p->next;
		free(p);
	}
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->poll_cv);
	pthread_cond_destroy(&c->in_cv);
	sb_free(&c->in_buf);
	free(c->text);
	free(c->out[0]);
	free(c->out[1]);
	ra_drop(c, 0);
	ra_drop(c, 1);
	free(c);
}

void box_free(struct ebox *b)
{
	size_t i;

	for (i = 0; i < b->n_cmds; i++)
		cmd_free(b->cmds[i]);
	free(b->cmds);
	free(b);
}

/* Lock held. The box for id, created when missing; takes a reference. */
struct ebox *box_get(struct exec_mgr *m, const struct sp_box *db)
{
	struct ebox *b = NULL;

	for (b = m->boxes; b; b = b->next)
		if (!strcmp(b->id, db->id))
			break;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		if (!str_copy(b->id, sizeof(b->id), db->id)) {
			free(b);
			return NULL;
		}
		b->refs = 1;    /* the list's */
		b->gen = 1;     /* checked_gen 0: not checked yet */
		b->next = m->boxes;
		m->boxes = b;
	}
	/* The toolbox URL can change (a region move); workers use the latest. */
	if (db->toolbox_url)
		str_copy(b->url, sizeof(b->url), db->toolbox_url);
	b->refs++;
	return b;
}

/* Lock held. */
void box_put(struct ebox *b)
{
	if (--b->refs == 0)
		box_free(b);
}

static size_t cmd_index(const struct ebox *b, unsigned n, bool *found)
{
	size_t lo = 0, hi = b->n_cmds;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->cmds[mid]->n < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < b->n_cmds && b->cmds[lo]->n == n;
	return lo;
}

struct ecmd *cmd_find(const struct ebox *b, unsigned n)
{
	bool found;
	size_t i = cmd_index(b, n, &found);

	return found ? b->cmds[i] : NULL;
}

/* Lock held. The entry for n, added when missing; NULL on out of memory.
 * Entries live as long as their box: callers keep pointers across requests. */
struct ecmd *cmd_add(struct exec_mgr *m, struct ebox *b, unsigned n)
{
	bool found;
	size_t i = cmd_index(b, n, &found);
	struct ecmd *c = NULL;

	if (found)
		return b->cmds[i];
	if (b->n_cmds == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct ecmd **nc = realloc(b->cmds, cap * sizeof(*nc));

		if (!nc)
			return NULL;
		b->cmds = nc;
		b->cap = cap;
	}
	c = cmd_new(m, n);
	if (!c)
		return NULL;
	memmove(b->cmds + i + 1, b->cmds + i, (b->n_cmds - i) * sizeof(*b->cmds));
	b->cmds[i] = c;
	b->n_cmds++;
	if (n > b->max_n)
		b->max_n = n;
	return c;
}

int cmd_path(const struct exec_mgr *m, unsigned n, const char *file, char *out, size_t cap)
{
	bool ok;

	if (file)
		ok = str_printf(out, cap, "%s/cmd/%u/%s", m->state_dir, n, file);
	else
		ok = str_printf(out, cap, "%s/cmd/%u", m->state_dir, n);
	return ok ? 0 : -ENAMETOOLONG;
}

void box_copy(const struct ebox *b, struct box_copy *bc)
{
	memcpy(bc->id, b->id, sizeof(bc->id));
	memcpy(bc->url, b->url, sizeof(bc->url));
	bc->db.id = bc->id;
	bc->db.toolbox_url = bc->url;
}

/* ---- requests --------------------------------------------------------------- */

struct mem_sink {
	struct strbuf sb;
	size_t max;
};

static int mem_sink_fn(void *ctx, const void *data, size_t len)
{
	struct mem_sink *s = ctx;

	if (s->sb.len + len > s->max)
		return -EFBIG;
	sb_add(&s->sb, data, len);
	return s->sb.oom ? -ENOMEM : 0;
}

/* The whole of a small file (malloc'd, NUL-terminated). */
int download_small(struct exec_mgr *m, const struct sp_box *db, const char *path, size_t max,
			  char **out, size_t *len, struct sp_error *err)
{
	struct mem_sink s = { STRBUF_INIT, max };
	int64_t rc;

	rc = sp_fs_download(m->sp, db, path, 0, 0, mem_sink_fn, &s, err);
	if (rc < 0) {
		sb_free(&s.sb);
		return (int)rc;
	}
	*len = s.sb.len;
	*out = sb_detach(&s.sb);
	return *out ? 0 : -ENOMEM;
}

/*
 * One listing of cmd/N; when it shows the exit and the caller does not know
 * the end yet (need_end), also the exit file and, if present, the state
 * file. The listing stats "exit" before "stderr" and "stdout" (it is sorted
 * by name), and exit is written after the command's streams are closed, so
 * the sizes seen beside an exit are final.
 */
int fetch_cmd(struct exec_mgr *m, const struct sp_box *db, unsigned n, bool need_end,
		     struct fetch *f, struct sp_error *err)
{
	char path[EXEC_PATH_MAX];
	struct sp_fileinfo *fi = NULL;
	size_t nfi = 0, len = 0;
	char *text = NULL;
	int rc;

	memset(f, 0, sizeof(*f));
	rc = cmd_path(m, n, NULL, path, sizeof(path));
	if (rc < 0)
		return sp_error_set(err, rc, 0, "state directory path too long");
	rc = rfs_list(m->sp, db, path, &fi, &nfi, err);
	if (rc < 0)
		return rc;
	exec_parse_listing(fi, nfi, &f->l);
	sp_fileinfo_free(fi, nfi);
	if (!f->l.ended || !need_end)
		return 0;

	rc = cmd_path(m, n, "exit", path, sizeof(path));
	if (rc == 0)
		rc = download_small(m, db, path, SMALL_FILE_MAX, &text, &len, err);
	if (rc == -ENOENT || (rc == 0 && len == 0)) {
		/* Being written (the wrapper writes exit in place), or gone
		 * again after a write that failed: not ended yet, as if the
		 * listing had come an instant before. An exit that stays
		 * empty ends the command with no status (apply_fetch). */
		free(text);
		f->l.ended = false;
		f->exit_empty = rc == 0;
		return 0;
	}
	if (rc < 0)
		return rc;
	if (exec_parse_exit(text, len, &f->exit_code) < 0)
		f->exit_code = -1;
	free(text);
	text = NULL;
	f->end_state = EXEC_EXITED;
	if (f->l.has_state) {
		rc = cmd_path(m, n, "state", path, sizeof(path));
		if (rc == 0)
			rc = download_small(m, db, path, SMALL_FILE_MAX, &text, &len, err);
		if (rc == 0)
			f->end_state = exec_parse_state(text, len);
		else if (rc != -ENOENT)
			return rc;
		free(text);
	}
	f->have_end = true;
	return 0;
}

void pending_run(struct exec_mgr *m, struct pending *p)
{
	struct poll_req *r, *next;

	for (r = p->wake; r; r = next) {
		next = r->next;
		if (m->o.wake)
			m->o.wake(m->o.ctx, r->handle);
		free(r);
	}
	p->wake = NULL;
	if (p->end && m->o.on_end)
		m->o.on_end(m->o.ctx, p->id, p->n);
	p->end = false;
}

/* Lock held: runs the callbacks without it. */
void pending_flush(struct exec_mgr *m, struct pending *p)
{
	if (!p->wake && !p->end)
		return;
	pthread_mutex_unlock(&m->lock);
	pending_run(m, p);
	pthread_mutex_lock(&m->lock);
}

bool cmd_waiting(const struct ecmd *c)
{
	return c->waiters > 0 || c->polls;
}

/* Lock held. Moves the poll handles that are now ready (or old) to p->wake. */
static void take_ready_polls(struct ecmd *c, struct pending *p, int64_t now)
{
	struct poll_req **pp = &c->polls;

	while (*pp) {
		struct poll_req *r = *pp;

		if (c->ended || c->size[r->s] > r->off || now - r->since_ms >= POLL_REQ_MAX_MS) {
			*pp = r->next;
			r->next = p->wake;
			p->wake = r;
		} else {
			pp = &r->next;
		}
	}
}

/* Lock held. The command ended: tell the waiters, and owe on_end to our own
 * commands and to any we saw running (the sandbox's files changed behind
 * the cache). */
static void cmd_end(struct ebox *b, struct ecmd *c, enum exec_state st, int code, bool report,
		    struct pending *p)
{
	if (c->ended)
		return;
	c->ended = true;
	c->state = st;
	c->exit_code = code;
	if (report && !c->end_reported) {
		c->end_reported = true;
		p->end = true;
		memcpy(p->id, b->id, sizeof(p->id));
		p->n = c->n;
	}
	/* Buffered input has nowhere to go: a flush says so. */
	if (c->in_buf.len && !c->in_err)
		c->in_err = -EPIPE;
	sb_free(&c->in_buf);
	pthread_cond_broadcast(&c->cv);
	pthread_cond_broadcast(&c->in_cv);
	pthread_cond_broadcast(&c->poll_cv);
}

/* Lock held. Merges a fetch into the model; sets the next poll time. */
void apply_fetch(struct exec_mgr *m, struct ebox *b, struct ecmd *c, const struct fetch *f,
			struct pending *p)
{
	bool changed = false, was_known = c->known;
	int s;
	int64_t now = now_ms();

	for (s = 0; s < 2; s++) {
		if (f->l.size[s] > c->size[s]) {
			c->size[s] = f->l.size[s];
			changed = true;
			/* More than the launch brought: read the sandbox's file. */
			free(c->out[s]);
			c->out[s] = NULL;
			c->has_out[s] = false;
		}
	}
	c->with_stdin = c->with_stdin || f->l.with_stdin;
	c->stdin_eof = c->stdin_eof || f->l.stdin_eof;
	if (f->have_end && !c->ended) {
		cmd_end(b, c, f->end_state, f->exit_code, c->mine || was_known, p);
		changed = true;
	} else if (f->exit_empty && !c->ended) {
		if (!c->exit_empty_since_ms)
			c->exit_empty_since_ms = now;
		else if (now - c->exit_empty_since_ms >= EMPTY_EXIT_GRACE_MS) {
			cmd_end(b, c, EXEC_EXITED, -1, c->mine || was_known, p);
			changed = true;
		}
	}
	c->known = true;
	c->poll_seq++;
	c->poll_err = 0;
	c->last_poll_ms = now;
	c->interval_ms = exec_backoff(c->interval_ms, changed, cmd_waiting(c), m->o.poll_min_ms,
				      m->o.poll_max_ms, m->idle_max_ms);
	c->next_poll_ms = now + c->interval_ms;
	take_ready_polls(c, p, now);
	if (changed)
		pthread_cond_broadcast(&c->cv);
}

/* Lock held. A command whose directory vanished has ended, as far as anyone can tell. */
void apply_gone(struct ebox *b, struct ecmd *c, struct pending *p)
{
	cmd_end(b, c, EXEC_EXITED, -1, false, p);
	take_ready_polls(c, p, now_ms());
}

/* Lock held. Drops the inline output of all but the newest INLINE_KEEP
 * commands of b that have some, so that memory stays bounded. */
static void inline_trim(struct ebox *b)
{
	size_t i, kept = 0;

	for (i = b->n_cmds; i-- > 0;) {
		struct ecmd *c = b->cmds[i];

		if (!c->has_out[0] && !c->has_out[1])
			continue;
		if (++kept <= INLINE_KEEP)
			continue;
		for (int s = 0; s < 2; s++) {
			free(c->out[s]);
			c->out[s] = NULL;
			c->has_out[s] = false;
		}
	}
}

/* Lock held. The launch's answer says the command c has ended: its end and
 * final sizes, and the streams it brought (taken from r). The files in the
 * sandbox hold the same, so other mounts and a remount see the same. */
void apply_launch_end(struct ebox *b, struct ecmd *c, struct exec_launch_result *r, struct pending *p)
{
	int s;

	if (c->ended || !r->ended)
		return;
	for (s = 0; s < 2; s++) {
		c->size[s] = r->size[s];
		if (r->inline_ok[s]) {
			free(c->out[s]);
			c->out[s] = r->data[s];
			r->data[s] = NULL;
			c->has_out[s] = true;
		}
	}
	c->known = true;
	c->poll_seq++;
	c->poll_err = 0;
	c->last_poll_ms = now_ms();
	cmd_end(b, c, r->state, r->exit_code, true, p);
	take_ready_polls(c, p, c->last_poll_ms);
	inline_trim(b);
}

/* Lock held. The sandbox is not running (or was not): its processes may be
 * gone, so running records are checked again once it runs. */
void box_stopped(struct ebox *b)
{
	b->gen++;
}

struct orphan_ctx {
	struct ebox *b;
	struct pending *p;
};

static void orphan_fn(void *ctx, unsigned n)
{
	struct orphan_ctx *o = ctx;
	struct ecmd *c = cmd_find(o->b, n);

	if (c && !c->ended) {
		log_info("exec: %s command %u: its processes are gone (the sandbox restarted): killed",
			 o->b->id, n);
		cmd_end(o->b, c, EXEC_KILLED, 137, true, o->p);
		take_ready_polls(c, o->p, now_ms());
	}
}

/* Whether c, seen running by a poll, has run for LIVENESS_CHECK_MS since the
 * sandbox's processes were last checked while someone waits for it. */
bool liveness_due(struct ebox *b, struct ecmd *c, int64_t now)
{
	int64_t since;

	if (c->ended || !cmd_waiting(c)) {
		c->running_seen_ms = 0;   /* counted from the next wait's first poll */
		return false;
	}
	if (!c->running_seen_ms)
		c->running_seen_ms = now;
	since = b->checked_ms > c->running_seen_ms ? b->checked_ms : c->running_seen_ms;
	return !b->checking && now - since >= LIVENESS_CHECK_MS;
}

/* Whether c, seen running, might be a record whose processes are gone. */
bool needs_check(const struct ebox *b, const struct ecmd *c)
{
	return !c->ended && b->checked_gen != b->gen && c->alive_gen != b->gen;
}

/*
 * Lock held; released meanwhile. Checks the sandbox's running records
 * against its processes (one /process/execute), ending those whose wrapper
 * is gone: after a stop and start of the sandbox they would otherwise look
 * running for ever. Once per generation of the box.
 */
void box_check(struct exec_mgr *m, struct ebox *b, struct pending *p)
{
	struct strbuf script = STRBUF_INIT;
	struct sp_error err = { 0 };
	struct orphan_ctx oc = { b, p };
	struct box_copy bc;
	unsigned gen = b->gen;
	char *out = NULL;
	int rc, code = 0;

	if (b->checking || b->checked_gen == gen || b->dead || m->stopping)
		return;
	if (b->check_failed_ms && now_ms() - b->check_failed_ms < RECONCILE_RETRY_MS)
		return;
	b->checking = true;
	box_copy(b, &bc);
	pthread_mutex_unlock(&m->lock);
	exec_build_reconcile(&script, m->state_dir);
	if (script.oom)
		rc = sp_error_set(&err, -ENOMEM, 0, "out of memory");
	else
		rc = sp_exec(m->sp, &bc.db, script.buf, NULL, NULL, 0, RECONCILE_TIMEOUT_S, &code, &out,
			     &err);
	pthread_mutex_lock(&m->lock);
	b->checking = false;
	if (rc == 0 && exec_parse_reconcile(out, orphan_fn, &oc) == 0) {
		b->checked_gen = gen;
		b->check_failed_ms = 0;
		b->checked_ms = now_ms();
	} else {
		b->check_failed_ms = now_ms();
		if (rc == -EHOSTDOWN)
			box_stopped(b);
		log_debug("exec: checking the commands of %s: %s", b->id,
			  rc < 0 ? err.message : "unexpected output");
	}
	sb_free(&script);
	free(out);
}

/* ---- workers ------------------------------------------------------------------ */

/* Lock held. Starts fn on a thread of its own, holding a reference to b. */
int worker_start(struct exec_mgr *m, struct ebox *b, struct ecmd *c, void *(*fn)(void *))
{
	struct worker_arg *wa;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	wa = malloc(sizeof(*wa));
	if (!wa)
		return -ENOMEM;
	wa->m = m;
	wa->b = b;
	wa->c = c;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1024 * 1024);
	rc = pthread_create(&t, &attr, fn, wa);
	pthread_attr_destroy(&attr);
	if (rc) {
		log_warn("exec: cannot start a thread: %s", strerror(rc));
		free(wa);
		return -rc;
	}
	b->refs++;
	m->workers++;
	return 0;
}

/* Lock held. The end of a worker: it is joined by the next worker_reap. */
void worker_exit(struct exec_mgr *m, struct ebox *b)
{
	box_put(b);
	if (m->n_exited == m->cap_exited) {
		size_t cap = m->cap_exited ? m->cap_exited * 2 : 16;
		pthread_t *ne = realloc(m->exited, cap * sizeof(*ne));

		if (ne) {
			m->exited = ne;
			m->cap_exited = cap;
		}
	}
	if (m->n_exited < m->cap_exited)
		m->exited[m->n_exited++] = pthread_self();
	else
		pthread_detach(pthread_self());
	if (--m->workers == 0)
		pthread_cond_broadcast(&m->idle_cv);
}

/* Lock held. Joins finished workers; they no longer need the lock, so this
 * only waits for their last instructions. */
void workers_reap(struct exec_mgr *m)
{
	size_t i;

	for (i = 0; i < m->n_exited; i++)
		pthread_join(m->exited[i], NULL);
	m->n_exited = 0;
}

static bool cmd_wanted(const struct exec_mgr *m, const struct ebox *b, const struct ecmd *c, int64_t now)
{
	if (m->stopping || b->dead || c->ended)
		return false;
	return cmd_waiting(c) || (c->mine && now < c->watch_until_ms);
}

static void *poller_main(void *arg)
{
	struct worker_arg *wa = arg;
	struct exec_mgr *m = wa->m;
	struct ebox *b = wa->b;
	struct ecmd *c = wa->c;
	struct pending p = { 0 };
	int64_t now;

	free(wa);
	pthread_mutex_lock(&m->lock);
	while (now = now_ms(), cmd_wanted(m, b, c, now)) {
		struct box_copy bc;
		struct sp_error err = { 0 };
		struct fetch f;
		int rc;

		if (now < c->next_poll_ms) {
			int64_t until = c->next_poll_ms;

			if (!cmd_waiting(c) && c->watch_until_ms < until)
				until = c->watch_until_ms;
			timed_wait(&c->poll_cv, &m->lock, until);
			continue;
		}
		box_copy(b, &bc);
		pthread_mutex_unlock(&m->lock);
		rc = fetch_cmd(m, &bc.db, c->n, true, &f, &err);
		pthread_mutex_lock(&m->lock);
		if (rc == 0) {
			apply_fetch(m, b, c, &f, &p);
			if (liveness_due(b, c, now_ms()))
				box_stopped(b);
			if (needs_check(b, c))
				box_check(m, b, &p);
		} else if (rc == -ENOENT) {
			apply_gone(b, c, &p);
		} else {
			/* The sandbox stopped, the network failed: keep trying, slowly. */
			log_debug("exec: polling %s command %u: %s", b->id, c->n, err.message);
			if (rc == -EHOSTDOWN) {
				/* A stopped sandbox killed its commands: no end will be
				 * written, so stop polling for on_end's sake alone, and
				 * check the record once the sandbox runs again. */
				c->mine = false;
				box_stopped(b);
			}
			/* ... and tell the waiters, rather than let them wait for ever. */
			c->poll_seq++;
			c->poll_err = rc == -EHOSTDOWN ? rc : 0;
			if (c->poll_err)
				pthread_cond_broadcast(&c->cv);
			c->last_poll_ms = now_ms();
			c->interval_ms = m->o.poll_max_ms;
			c->next_poll_ms = c->last_poll_ms + c->interval_ms;
			take_ready_polls(c, &p, c->last_poll_ms);
		}
		pending_flush(m, &p);
	}
	c->poller_on = false;
	worker_exit(m, b);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* Lock held. Starts the command's poller if it should run and does not. */
void poller_ensure(struct exec_mgr *m, struct ebox *b, struct ecmd *c)
{
	if (c->poller_on || !cmd_wanted(m, b, c, now_ms()))
		return;
	workers_reap(m);
	/* On failure waiters retry every slice; nothing is lost but time. */
	if (worker_start(m, b, c, poller_main) == 0)
		c->poller_on = true;
}

/*
 * Lock held. Someone starts waiting on c (a reader, an exit waiter, a poll
 * handle). When nobody was waiting the schedule was the slow one (or none),
 * so poll soon: at once unless a poll happened within poll_min_ms.
 */
void wait_begin(struct exec_mgr *m, struct ebox *b, struct ecmd *c, bool was_waiting)
{
	if (!was_waiting) {
		int64_t soon = c->last_poll_ms + m->o.poll_min_ms;

		c->interval_ms = m->o.poll_min_ms;
		if (soon < c->next_poll_ms || !c->poller_on)
			c->next_poll_ms = soon;
		pthread_cond_signal(&c->poll_cv);
	}
	poller_ensure(m, b, c);
}

/* Lock held. The last waiter left: a command of ours is still watched for a
 * while, for on_end. */
void wait_end(struct ecmd *c)
{
	if (!cmd_waiting(c) && c->mine) {
		int64_t until = now_ms() + IDLE_WATCH_MS;

		if (until > c->watch_until_ms)
			c->watch_until_ms = until;
	}
}
