/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec.c - the API of commands as files (exec.h): start, list, status,
 * read, poll, kill, the command's text, and forgetting a sandbox.
 */
#include "exec_int.h"
#include "exec_helper.h"

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

/* ---- lookups ------------------------------------------------------------------ */

/* Reads STATE_DIR/cmd when it never was or when the last read is older than
 * max_age_ms (-1: any age will do). Lock held; released meanwhile. */
static int box_ensure_listed(struct exec_mgr *m, struct ebox *b, const struct sp_box *db,
			     long max_age_ms, struct sp_error *err)
{
	char path[EXEC_PATH_MAX];
	struct sp_fileinfo *fi = NULL;
	size_t nfi = 0, i;
	int64_t started = now_ms();
	int rc;

	if (b->listed && (max_age_ms < 0 || started - b->listed_ms <= max_age_ms))
		return 0;
	if (!str_printf(path, sizeof(path), "%s/cmd", m->state_dir))
		return sp_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	pthread_mutex_unlock(&m->lock);
	rc = rfs_list(m->sp, db, path, &fi, &nfi, err);
	pthread_mutex_lock(&m->lock);
	if (rc == -ENOENT) {
		/* No command ever ran here. */
		b->listed = true;
		b->listed_ms = started;
		return 0;
	}
	if (rc == -EHOSTDOWN)
		box_stopped(b);
	if (rc < 0)
		/* Another read may have succeeded meanwhile; else say why. */
		return b->listed && max_age_ms >= 0 ? 0 : rc;
	/* New entries are merged; none is dropped (callers hold pointers to
	 * them, and a number this mount claimed may not be listed yet). */
	for (i = 0; i < nfi; i++) {
		unsigned n;

		if (fi[i].is_dir && exec_parse_cmd_name(fi[i].name, &n) && !cmd_add(m, b, n)) {
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
			break;
		}
	}
	sp_fileinfo_free(fi, nfi);
	if (rc == 0) {
		b->listed = true;
		if (started > b->listed_ms)
			b->listed_ms = started;
	}
	return rc;
}

/*
 * Lock held; released meanwhile. A check of the box's records against its
 * processes (box_check) is under way in another thread, a poller's or a
 * reader's: its verdict on c is due, so wait for it, or a record whose
 * processes went with a restart would read "running" once more. Local
 * waiting only: the check is one request.
 */
static void wait_check(struct exec_mgr *m, struct ebox *b, struct ecmd *c)
{
	while (b->checking && !c->ended && !b->dead && !m->stopping && !interrupted(m))
		timed_wait(&c->cv, &m->lock, now_ms() + 10);
}

/*
 * Lock held; released meanwhile. The command n, its listing read at least
 * once (a number unknown here is looked up in the sandbox: another mount may
 * have started it). With fresh, a running command's listing is re-read when
 * the last one is older than poll_min_ms.
 */
static int cmd_lookup(struct exec_mgr *m, struct ebox *b, const struct sp_box *db, unsigned n,
		      int fresh, struct ecmd **out, struct sp_error *err)
{
	struct pending p = { 0 };
	struct ecmd *c = NULL;
	struct fetch f;
	int rc;

	rc = box_ensure_listed(m, b, db, -1, err);
	if (rc < 0)
		return rc;
	c = cmd_find(b, n);
	/* An ended command's streams can still grow: a background child it
	 * left writes on. For FRESH_ENDED its sizes are listed again, at most
	 * every poll_max_ms (so not for the reads right after a launch that
	 * brought its output). */
	if (c && c->known &&
	    (!fresh || (c->ended && fresh < FRESH_ENDED) ||
	     now_ms() - c->last_poll_ms < (c->ended ? m->o.poll_max_ms : m->o.poll_min_ms))) {
		if (fresh)
			wait_check(m, b, c);
		*out = c;
		return 0;
	}
	pthread_mutex_unlock(&m->lock);
	rc = fetch_cmd(m, db, n, !(c && c->ended), &f, err);
	pthread_mutex_lock(&m->lock);
	if (rc == -EHOSTDOWN)
		box_stopped(b);
	if (rc == -ENOENT && !c)
		return sp_error_set(err, -ENOENT, 404, "no command %u", n);
	if (rc < 0 && !(c && c->known))
		return rc;
	c = cmd_add(m, b, n);
	if (!c)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	if (rc == 0) {
		apply_fetch(m, b, c, &f, &p);
		if (needs_check(b, c))
			box_check(m, b, &p);
	} else if (rc == -ENOENT) {
		apply_gone(b, c, &p);
	}
	/* else: a refresh failed, the last known state stands */
	pending_flush(m, &p);
	if (fresh)
		wait_check(m, b, c);
	*out = c;
	return 0;
}

int check_args(struct exec_mgr *m, const struct sp_box *db, struct sp_error *err)
{
	if (!m || !db || !db->id || !db->toolbox_url)
		return sp_error_set(err, -EINVAL, 0, "invalid arguments");
	return 0;
}

/* Lock held. Opens a box and the command in it, for the calls below. */
static int open_cmd(struct exec_mgr *m, const struct sp_box *box, unsigned n, int fresh,
		    struct ebox **bp, struct ecmd **cp, struct sp_error *err)
{
	struct ebox *b = box_get(m, box);
	int rc;

	if (!b)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	rc = cmd_lookup(m, b, box, n, fresh, cp, err);
	if (rc < 0) {
		box_put(b);
		return rc;
	}
	*bp = b;
	return 0;
}

/* Takes the lock and the box: 0 with both held (box_put, then unlock), else
 * an error with neither. */
static int lock_box(struct exec_mgr *m, const struct sp_box *box, struct ebox **bp, struct sp_error *err)
{
	pthread_mutex_lock(&m->lock);
	*bp = box_get(m, box);
	if (!*bp) {
		pthread_mutex_unlock(&m->lock);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	return 0;
}

/* Takes the lock and opens command n (open_cmd): 0 with the lock held,
 * else an error with it released. */
int lock_cmd(struct exec_mgr *m, const struct sp_box *box, unsigned n, int fresh, struct ebox **bp,
		    struct ecmd **cp, struct sp_error *err)
{
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, fresh, bp, cp, err);
	if (rc < 0)
		pthread_mutex_unlock(&m->lock);
	return rc;
}

/* ---- the API ---------------------------------------------------------------- */

/* 16 hex digits, unguessable and different for every mount: the client
 * tokens must not meet another mount's. */
static void make_nonce(char *out, size_t cap)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16) ^
		    (uint64_t)(uintptr_t)out;
	}
	snprintf(out, cap, "%016" PRIx64, v);
}

/* A new client token: the nonce, a letter for the kind, a count. Caller
 * holds m->lock. */
void next_token(struct exec_mgr *m, char kind, char *out, size_t cap)
{
	snprintf(out, cap, "%s%c%lu", m->nonce, kind, ++m->tokens);
}

struct exec_mgr *exec_mgr_new(struct sandbox_provider *sp, const struct exec_options *o)
{
	struct exec_mgr *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->sp = sp;
	if (o)
		m->o = *o;
	else
		exec_options_defaults(&m->o);
	if (!m->o.state_dir || !*m->o.state_dir)
		m->o.state_dir = EXEC_STATE_DIR_DEFAULT;
	if (m->o.poll_min_ms <= 0)
		m->o.poll_min_ms = 50;
	if (m->o.poll_max_ms < m->o.poll_min_ms)
		m->o.poll_max_ms = m->o.poll_min_ms;
	if (m->o.list_ttl_ms < 0)
		m->o.list_ttl_ms = 0;
	if (m->o.wait_ms < 0)
		m->o.wait_ms = 0;
	if (m->o.wait_ms > WAIT_MS_MAX)
		m->o.wait_ms = WAIT_MS_MAX;
	m->idle_max_ms = m->o.poll_max_ms > IDLE_POLL_MAX_MS ? m->o.poll_max_ms : IDLE_POLL_MAX_MS;
	m->state_dir = strdup(m->o.state_dir);
	if (!m->state_dir) {
		free(m);
		return NULL;
	}
	make_nonce(m->nonce, sizeof(m->nonce));
	/* No trailing slash: paths are built as STATE_DIR/cmd/N. */
	for (size_t l = strlen(m->state_dir); l > 1 && m->state_dir[l - 1] == '/'; l--)
		m->state_dir[l - 1] = '\0';
	m->o.state_dir = m->state_dir;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&m->cattr);
	pthread_condattr_setclock(&m->cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&m->idle_cv, &m->cattr);
	return m;
}

/* Lock held. Releases everyone waiting on the box's commands. */
static void collect_polls(struct ebox *b, struct pending *p)
{
	size_t i;

	for (i = 0; i < b->n_cmds; i++) {
		struct ecmd *c = b->cmds[i];

		while (c->polls) {
			struct poll_req *r = c->polls;

			c->polls = r->next;
			r->next = p->wake;
			p->wake = r;
		}
		pthread_cond_broadcast(&c->cv);
		pthread_cond_broadcast(&c->poll_cv);
		pthread_cond_broadcast(&c->in_cv);
	}
}

void exec_mgr_free(struct exec_mgr *m)
{
	struct pending p = { 0 };
	struct ebox *b, *next;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	for (b = m->boxes; b; b = b->next)
		collect_polls(b, &p);
	/* A worker may be inside a request; it notices once that returns. */
	while (m->workers > 0)
		pthread_cond_wait(&m->idle_cv, &m->lock);
	workers_reap(m);
	pthread_mutex_unlock(&m->lock);
	/* The poll() waiters are released (woken) rather than leaked. */
	pending_run(m, &p);
	for (b = m->boxes; b; b = next) {
		next = b->next;
		box_free(b);
	}
	pthread_cond_destroy(&m->idle_cv);
	pthread_condattr_destroy(&m->cattr);
	pthread_mutex_destroy(&m->lock);
	free(m->exited);
	free(m->state_dir);
	free(m);
}

int exec_start(struct exec_mgr *m, const struct sp_box *box, const struct exec_spec *spec,
	       unsigned *n, struct sp_error *err)
{
	struct strbuf script = STRBUF_INIT;
	struct exec_launch_result res;
	struct exec_helper helper = { 0 };
	struct pending p = { 0 };
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	bool has_helper = m->o.helper && exec_helper_len, carries_helper = false, installs_helper = false;
	unsigned first, got = 0, i;
	char *out = NULL, token[64];
	int64_t now, started = now_ms();
	int rc, code = 0;

	memset(&res, 0, sizeof(res));
	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (!spec || !spec->command)
		return sp_error_set(err, -EINVAL, 0, "no command");
	rc = lock_box(m, box, &b, err);
	if (rc < 0)
		return rc;
	/* Claim the number here, so that two starts in this mount differ;
	 * the sandbox arbitrates between mounts (mkdir). A sandbox whose
	 * history this mount has not read yet gets first 0: the launcher
	 * reads it, picks the number after it and sends it back, which saves
	 * the listing request. */
	if (b->max_n == UINT_MAX) {
		rc = sp_error_set(err, -EOVERFLOW, 0, "too many commands");
		goto out_locked;
	}
	first = b->listed ? ++b->max_n : 0;
	/* One launch at a time carries the helper's bytes. */
	carries_helper = has_helper && !b->helper_sent && !b->helper_sending;
	if (carries_helper)
		b->helper_sending = true;
	next_token(m, 'l', token, sizeof(token));
	pthread_mutex_unlock(&m->lock);

	/* The helper, when the mount has one: the first launch in each
	 * sandbox brings its bytes along (about 50 KB of base64), in case it
	 * is not there yet; the rest only look for it. */
	if (has_helper) {
		helper.id = exec_helper_id;
		helper.arch = exec_helper_arch;
		if (carries_helper) {
			helper.bin = exec_helper_bin;
			helper.len = exec_helper_len;
		}
	}
	rc = exec_build_launcher_with(&script, m->state_dir, first, token, spec, m->o.wait_ms, m->o.inline_max,
				      sp_has(m->sp, SP_CAP_EXEC_DETACHED), &helper);
	if (rc == 1) {
		installs_helper = true;
		rc = 0;
	}
	if (rc == -EINVAL) {
		sp_error_set(err, rc, 0, "invalid environment variable name");
		goto out;
	}
	if (rc < 0) {
		sp_error_set(err, rc, 0, "out of memory");
		goto out;
	}
	/* A command the user asked for counts as activity in the sandbox. */
	rc = sp_exec_activity(m->sp, box, script.buf, NULL, NULL, 0, LAUNCH_TIMEOUT_S, &code, &out, err);
	if (rc < 0)
		goto out;
	rc = exec_parse_launch_result(out, &res);
	got = res.n;
	if (rc == -ENOENT) {
		sp_error_set(err, rc, 0, "cwd %s: no such directory", spec->cwd ? spec->cwd : "");
		goto out;
	}
	if (rc < 0) {
		/* The first line of what the shell said is the best reason we have. */
		const char *msg = out ? out : "";
		size_t len = strcspn(msg, "\n");

		sp_error_set(err, rc, 0, "cannot start the command (exit %d): %.*s", code,
			     (int)(len > 300 ? 300 : len), msg);
		goto out;
	}

	pthread_mutex_lock(&m->lock);
	if (carries_helper)
		b->helper_sending = false;
	if (installs_helper) {
		b->helper_sent = true;
		b->helper_sent_ms = started;
	} else if (res.no_helper && b->helper_sent && b->helper_resends < HELPER_RESENDS_MAX &&
		   started - b->helper_sent_ms >= HELPER_INSTALL_MS) {
		/* (helper_sent: of launches that all heard it missing, one
		 * resend is counted) */
		b->helper_sent = false;
		b->helper_resends++;
	}
	if (res.listed) {
		/* The history as the launcher saw it: what a listing of
		 * STATE_DIR/cmd would have said. */
		for (size_t k = 0; k < res.n_have; k++)
			cmd_add(m, b, res.have[k]);
		b->listed = true;
		if (started > b->listed_ms)
			b->listed_ms = started;
	}
	/* Numbers skipped over belong to another mount's commands. */
	for (i = first ? first : got; i < got; i++)
		cmd_add(m, b, i);
	c = cmd_add(m, b, got);
	if (!c) {
		/* Started, but we cannot track it: say so rather than lose it silently. */
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		goto out_locked;
	}
	now = now_ms();
	c->known = true;
	c->mine = true;
	c->with_stdin = true;   /* unless mkfifo failed: a write will tell */
	c->alive_gen = b->gen;
	c->text = strdup(spec->command);
	c->text_len = c->text ? strlen(c->text) : 0;
	c->last_poll_ms = now;
	/* Most commands are quick: the first look comes after FIRST_POLL_MS (not
	 * poll_min_ms), so `exec true` then `cat exit` is one poll sooner; after
	 * it the schedule backs off from poll_min_ms as usual. */
	c->interval_ms = m->o.poll_min_ms < FIRST_POLL_MS ? m->o.poll_min_ms : FIRST_POLL_MS;
	/* ... unless the launch already waited for a quick end. */
	if (m->o.wait_ms > 0)
		c->interval_ms = m->o.poll_min_ms;
	c->next_poll_ms = now + c->interval_ms;
	c->watch_until_ms = now + IDLE_WATCH_MS;
	/* Ended within the launch's wait: everything is known, nothing to
	 * poll, and the cache is dropped now (on_end). */
	apply_launch_end(b, c, &res, &p);
	poller_ensure(m, b, c);
	pending_flush(m, &p);
	*n = got;
	rc = 0;
out_locked:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	sb_free(&script);
	free(out);
	exec_launch_result_free(&res);
	return rc;
out:
	pthread_mutex_lock(&m->lock);
	/* A launch that failed gives its number back while no later launch of
	 * this mount took one: left unused, it was a hole in the history that
	 * another mount, whose view of it was older, filled with a command it
	 * started after this mount's newer ones, so that NAME/exit, stdout and
	 * cmd/last went on naming another command than its own newest. Should
	 * the sandbox hold it all the same (a launch that ran, its answer
	 * lost), the next launcher's mkdir finds it taken and goes on. */
	if (first && b->max_n == first)
		b->max_n = first - 1;
	if (carries_helper)
		b->helper_sending = false;     /* the next launch carries it */
	goto out_locked;
}

int exec_list(struct exec_mgr *m, const struct sp_box *box, unsigned **ns, size_t *count,
	      struct sp_error *err)
{
	struct ebox *b = NULL;
	unsigned *arr = NULL;
	size_t i;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	*ns = NULL;
	*count = 0;
	rc = lock_box(m, box, &b, err);
	if (rc < 0)
		return rc;
	rc = box_ensure_listed(m, b, box, m->o.list_ttl_ms, err);
	if (rc == 0 && b->n_cmds) {
		arr = malloc(b->n_cmds * sizeof(*arr));
		if (!arr) {
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		} else {
			for (i = 0; i < b->n_cmds; i++)
				arr[i] = b->cmds[i]->n;
			*ns = arr;
			*count = b->n_cmds;
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_last(struct exec_mgr *m, const struct sp_box *box, unsigned *n, struct sp_error *err)
{
	struct ebox *b = NULL;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_box(m, box, &b, err);
	if (rc < 0)
		return rc;
	rc = box_ensure_listed(m, b, box, m->o.list_ttl_ms, err);
	if (rc == 0) {
		if (b->n_cmds)
			*n = b->cmds[b->n_cmds - 1]->n;
		else
			rc = -ENOENT;
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_exists(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err)
{
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_box(m, box, &b, err);
	if (rc < 0)
		return rc;
	rc = box_ensure_listed(m, b, box, m->o.list_ttl_ms, err);
	/* In the list: no need to read its record (ls -l cmd/ stats every N).
	 * Else it may be newer than the list: one look in the sandbox. */
	if (rc == 0 && !cmd_find(b, n))
		rc = cmd_lookup(m, b, box, n, false, &c, err);
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static void status_fill(const struct ecmd *c, struct exec_status *st)
{
	st->state = c->ended ? c->state : EXEC_RUNNING;
	st->exit_code = c->ended ? c->exit_code : -1;
	st->size[0] = c->size[0];
	st->size[1] = c->size[1];
	st->stdin_open = c->with_stdin && !c->stdin_eof && !c->in_close && !c->ended;
}

/*
 * Lock held. Blocks until done(c) or the command ended, checking for an
 * interrupt every slice. The poller does the requests.
 */
static int wait_for(struct exec_mgr *m, struct ebox *b, struct ecmd *c,
		    bool (*done)(const struct ecmd *c, const void *arg), const void *arg)
{
	bool was_waiting = cmd_waiting(c);
	unsigned seq = c->poll_seq;
	int rc = 0;

	c->waiters++;
	wait_begin(m, b, c, was_waiting);
	while (!c->ended && !done(c, arg)) {
		if (b->dead || m->stopping) {
			rc = -ENOENT;
			break;
		}
		/* Only an error of a poll made since this wait began counts. */
		if (c->poll_seq != seq && c->poll_err) {
			rc = c->poll_err;
			break;
		}
		if (interrupted(m)) {
			rc = -EINTR;
			break;
		}
		poller_ensure(m, b, c);
		timed_wait(&c->cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	}
	c->waiters--;
	wait_end(c);
	return rc;
}

static int wait_error(struct sp_error *err, int rc)
{
	if (rc == -EINTR)
		return sp_error_set(err, rc, 0, "interrupted");
	if (rc == -EHOSTDOWN)
		return sp_error_set(err, rc, 0, "the sandbox is not running");
	return sp_error_set(err, rc, 0, "the sandbox is gone");
}

static bool never_done(const struct ecmd *c, const void *arg)
{
	(void)c;
	(void)arg;
	return false;
}

static int status_of(struct exec_mgr *m, const struct sp_box *box, unsigned n, bool wait, int fresh,
		     struct exec_status *st, struct sp_error *err)
{
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_cmd(m, box, n, fresh, &b, &c, err);
	if (rc < 0)
		return rc;
	if (wait && !c->ended) {
		rc = wait_for(m, b, c, never_done, NULL);
		if (rc < 0)
			wait_error(err, rc);
	}
	if (rc == 0)
		status_fill(c, st);
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_status(struct exec_mgr *m, const struct sp_box *box, unsigned n, bool wait,
		struct exec_status *st, struct sp_error *err)
{
	return status_of(m, box, n, wait, 1, st, err);
}

int exec_sizes(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct exec_status *st,
	       struct sp_error *err)
{
	return status_of(m, box, n, false, FRESH_ENDED, st, err);
}

struct read_target {
	enum exec_stream s;
	uint64_t off;
};

static bool has_data_past(const struct ecmd *c, const void *arg)
{
	const struct read_target *t = arg;

	return c->size[t->s] > t->off;
}

/* Downloads go straight into the reader's buffer: no copy, bounded memory. */
struct buf_sink {
	char *buf;
	size_t cap, len;
};

/*
 * The read-aheads held, least recently used first, and how many are being
 * downloaded: together at most READ_AHEAD_SLOTS, so at most that many times
 * READ_AHEAD_MAX bytes. A reader that stops half-way (head, less) leaves its
 * buffer to be taken by the next. Under m->lock (one exec_mgr a process).
 */
static struct ra_slot {
	struct ecmd *c;
	int s;
} ra_held[READ_AHEAD_SLOTS];
static size_t ra_n_held, ra_n_loading;

static size_t ra_find(const struct ecmd *c, int s)
{
	for (size_t i = 0; i < ra_n_held; i++)
		if (ra_held[i].c == c && ra_held[i].s == s)
			return i;
	return ra_n_held;
}

void ra_drop(struct ecmd *c, int s)
{
	size_t i;

	if (!c->ra_buf[s])
		return;
	i = ra_find(c, s);
	if (i < ra_n_held) {
		memmove(&ra_held[i], &ra_held[i + 1], (ra_n_held - i - 1) * sizeof(ra_held[0]));
		ra_n_held--;
	}
	free(c->ra_buf[s]);
	c->ra_buf[s] = NULL;
	c->ra_len[s] = 0;
}

/* A slot for a download, the least recently used read-ahead giving way if
 * need be: false when every slot is being downloaded into. */
static bool ra_reserve(void)
{
	if (ra_n_held + ra_n_loading >= READ_AHEAD_SLOTS && ra_n_held)
		ra_drop(ra_held[0].c, ra_held[0].s);
	if (ra_n_held + ra_n_loading >= READ_AHEAD_SLOTS)
		return false;
	ra_n_loading++;
	return true;
}

/* The download of a reserved slot is done: buf (len bytes at off) becomes
 * c's read-ahead of s, or (NULL) the slot is given back. */
static void ra_loaded(struct ecmd *c, int s, char *buf, uint64_t off, size_t len)
{
	ra_n_loading--;
	if (!buf)
		return;
	ra_drop(c, s);
	c->ra_buf[s] = buf;
	c->ra_off[s] = off;
	c->ra_len[s] = len;
	ra_held[ra_n_held].c = c;
	ra_held[ra_n_held].s = s;
	ra_n_held++;
}

/* Lock held. Copies what c's read-ahead of s holds at off, below size_now
 * (the stream's size: a file cut behind us is not served past its end),
 * into buf (at most size bytes): false when it holds nothing there. A
 * read-ahead read to its end goes; one read becomes the most recently used. */
static bool ra_serve(struct ecmd *c, int s, uint64_t off, uint64_t size_now, char *buf, size_t size, size_t *n)
{
	uint64_t end = c->ra_off[s] + c->ra_len[s];
	size_t i;

	if (end > size_now)
		end = size_now;
	if (!c->ra_buf[s] || off < c->ra_off[s] || off >= end)
		return false;
	*n = end - off < size ? (size_t)(end - off) : size;
	memcpy(buf, c->ra_buf[s] + (off - c->ra_off[s]), *n);
	c->ra_next[s] = off + *n;
	if (c->ra_next[s] == c->ra_off[s] + c->ra_len[s]) {
		ra_drop(c, s);
	} else if ((i = ra_find(c, s)) < ra_n_held) {
		struct ra_slot used = ra_held[i];

		memmove(&ra_held[i], &ra_held[i + 1], (ra_n_held - i - 1) * sizeof(ra_held[0]));
		ra_held[ra_n_held - 1] = used;
	}
	return true;
}

static int buf_sink_fn(void *ctx, const void *data, size_t len)
{
	struct buf_sink *s = ctx;
	size_t room = s->cap - s->len;

	if (len > room) {
		/* Only when a server ignores Range: stop once the buffer is full. */
		memcpy(s->buf + s->len, data, room);
		s->len = s->cap;
		return -ECANCELED;
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	return 0;
}

ssize_t exec_read(struct exec_mgr *m, const struct sp_box *box, unsigned n, enum exec_stream s,
		  char *buf, size_t size, uint64_t off, bool block, struct sp_error *err)
{
	static const char *const names[2] = { "stdout", "stderr" };
	struct read_target t = { s, off };
	char path[EXEC_PATH_MAX];
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	ssize_t ret;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (s != EXEC_STDOUT && s != EXEC_STDERR)
		return sp_error_set(err, -EINVAL, 0, "invalid stream");
	if (size == 0)
		return 0;
	if (size > SSIZE_MAX)
		size = SSIZE_MAX;
	rc = cmd_path(m, n, names[s], path, sizeof(path));
	if (rc < 0)
		return sp_error_set(err, rc, 0, "state directory path too long");
	/* A read that may not wait looks at the command again itself (when
	 * its state is poll_min_ms old): with nobody waiting, no poller does,
	 * and its EAGAIN would never turn into data or the end. */
	rc = lock_cmd(m, box, n, !block, &b, &c, err);
	if (rc < 0)
		return rc;
	for (;;) {
		struct buf_sink sink = { buf, size, 0 };
		struct box_copy bc;
		char *ahead = NULL;
		size_t served;
		int64_t got;

		if (c->ended && c->has_out[s]) {
			/* What the launch brought is the whole stream. */
			size_t n_out = off < c->size[s] ? (size_t)(c->size[s] - off) : 0;

			if (n_out > size)
				n_out = size;
			if (n_out)
				memcpy(buf, c->out[s] + off, n_out);
			ret = (ssize_t)n_out;
			break;
		}
		if (off >= c->size[s]) {
			if (c->ended) {
				ret = 0;
				break;
			}
			if (!block) {
				ret = sp_error_set(err, -EAGAIN, 0, "no output yet");
				break;
			}
			rc = wait_for(m, b, c, has_data_past, &t);
			if (rc < 0) {
				ret = wait_error(err, rc);
				break;
			}
			if (off >= c->size[s]) {
				ret = 0;        /* ended with nothing past off */
				break;
			}
		}
		if (c->ended && ra_serve(c, s, off, c->size[s], buf, size, &served)) {
			ret = (ssize_t)served;
			break;
		}
		/* After the end, the stream is what the last listing said: a
		 * read never goes past the size the kernel was given (bytes a
		 * background child appends show up with the next listing). */
		if (c->ended && sink.cap > c->size[s] - off)
			sink.cap = (size_t)(c->size[s] - off);
		/* A second read in order, past what this read asks: more at
		 * once (not the first: one read, head's, fetches no more). */
		if (c->ended && off > 0 && off == c->ra_next[s] && c->size[s] - off > size && ra_reserve()) {
			size_t want = c->size[s] - off < READ_AHEAD_MAX ? (size_t)(c->size[s] - off) : READ_AHEAD_MAX;

			ahead = malloc(want);
			if (ahead) {
				sink.buf = ahead;
				sink.cap = want;
			} else {
				ra_loaded(c, s, NULL, 0, 0);
			}
		}
		box_copy(b, &bc);
		pthread_mutex_unlock(&m->lock);
		got = rfs_download(m->sp, &bc.db, path, off, sink.cap, buf_sink_fn, &sink, err);
		if (got == -ECANCELED && sink.len == sink.cap)
			got = (int64_t)sink.cap;
		pthread_mutex_lock(&m->lock);
		if (got <= 0 && ahead) {
			ra_loaded(c, s, NULL, 0, 0);
			free(ahead);
			ahead = NULL;
		}
		if (got < 0) {
			ret = (ssize_t)got;
			break;
		}
		if (got > 0) {
			if (off + (uint64_t)got > c->size[s])
				c->size[s] = off + (uint64_t)got;
			if (ahead) {
				/* This read's part, and the rest kept (read-aheads of
				 * other readers meanwhile give way to this one). */
				size_t mine = (size_t)got < size ? (size_t)got : size;

				memcpy(buf, ahead, mine);
				if ((size_t)got > mine) {
					ra_loaded(c, s, ahead, off, (size_t)got);
				} else {
					ra_loaded(c, s, NULL, 0, 0);
					free(ahead);
				}
				c->ra_next[s] = off + mine;
				ret = (ssize_t)mine;
				break;
			}
			c->ra_next[s] = off + (uint64_t)got;
			ret = (ssize_t)got;
			break;
		}
		/* Nothing where the listing said there was: the file was cut
		 * behind us. Believe the download, and wait or end; what was
		 * read ahead of it may be stale. */
		c->size[s] = off;
		ra_drop(c, s);
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int exec_poll(struct exec_mgr *m, const struct sp_box *box, unsigned n, enum exec_stream s,
	      uint64_t off, void *poll_handle)
{
	struct sp_error err = { 0 };
	struct poll_req *r;
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	int rc;

	rc = check_args(m, box, &err);
	if (rc < 0)
		return rc;
	if (s != EXEC_STDOUT && s != EXEC_STDERR)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, &err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (c->ended || c->size[s] > off) {
		rc = 1;
	} else if (poll_handle) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			rc = -ENOMEM;
		} else {
			bool was_waiting = cmd_waiting(c);

			r->handle = poll_handle;
			r->s = s;
			r->off = off;
			r->since_ms = now_ms();
			r->next = c->polls;
			c->polls = r;
			wait_begin(m, b, c, was_waiting);
			rc = 0;
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_kill(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX], token[64];
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	char *out = NULL;
	int rc, code = 0;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return sp_error_set(err, rc, 0, "state directory path too long");
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	if (c->ended) {
		rc = sp_error_set(err, -ESRCH, 0, "command %u has already ended", n);
		goto out;
	}
	next_token(m, 'k', token, sizeof(token));   /* (under m->lock) */
	pthread_mutex_unlock(&m->lock);

	if (exec_build_kill(&script, dir, token) < 0)
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
	else
		rc = sp_exec_activity(m->sp, box, script.buf, NULL, NULL, 0, KILL_TIMEOUT_S, &code, &out,
				      err);
	if (rc == 0 && out && strstr(out, "daytonafs-ended"))
		rc = sp_error_set(err, -ESRCH, 0, "command %u has already ended", n);
	else if (rc == 0 && !(out && strstr(out, "daytonafs-killed")))
		rc = sp_error_set(err, -EIO, 0, "cannot kill command %u: %.200s", n, out ? out : "");

	pthread_mutex_lock(&m->lock);
	if (rc == 0 || rc == -ESRCH) {
		/* It has ended (the script waits for that, 3 s at most): read
		 * the record now, so that status says so when the write returns,
		 * and owe on_end as for our own. */
		struct sp_error ignored = { 0 };
		struct ecmd *same;
		int64_t now = now_ms();

		c->mine = true;
		c->interval_ms = m->o.poll_min_ms;
		if (c->watch_until_ms < now + IDLE_WATCH_MS)
			c->watch_until_ms = now + IDLE_WATCH_MS;
		c->last_poll_ms = 0;
		if (!c->ended)
			cmd_lookup(m, b, box, n, true, &same, &ignored);
		pthread_cond_signal(&c->poll_cv);
		poller_ensure(m, b, c);
	}
out:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	sb_free(&script);
	free(out);
	return rc;
}


/* ---- the rest ------------------------------------------------------------------ */

int exec_command_text(struct exec_mgr *m, const struct sp_box *box, unsigned n, char **text,
		      size_t *len, struct sp_error *err)
{
	char path[EXEC_PATH_MAX];
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	char *t = NULL;
	size_t l = 0;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (cmd_path(m, n, "command", path, sizeof(path)) < 0)
		return sp_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	if (!c->text) {
		/* The text never changes: read once, then memory. */
		struct box_copy bc;

		box_copy(b, &bc);
		pthread_mutex_unlock(&m->lock);
		rc = download_small(m, &bc.db, path, COMMAND_TEXT_MAX, &t, &l, err);
		pthread_mutex_lock(&m->lock);
		if (rc == 0 && !c->text) {
			c->text = t;
			c->text_len = l;
			t = NULL;
		}
		free(t);
	}
	if (rc == 0) {
		*text = malloc(c->text_len + 1);
		if (*text) {
			memcpy(*text, c->text, c->text_len);
			(*text)[c->text_len] = '\0';
			*len = c->text_len;
		} else {
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void exec_forget_sandbox(struct exec_mgr *m, const char *sandbox_id)
{
	struct pending p = { 0 };
	struct ebox **pp, *b;

	if (!m || !sandbox_id)
		return;
	pthread_mutex_lock(&m->lock);
	for (pp = &m->boxes; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->id, sandbox_id))
			break;
	b = *pp;
	if (b) {
		*pp = b->next;
		b->dead = true;
		/* Workers and waiters see dead and leave; the last reference frees. */
		collect_polls(b, &p);
		box_put(b);
	}
	pthread_mutex_unlock(&m->lock);
	pending_run(m, &p);
}

void exec_sandbox_stopped(struct exec_mgr *m, const char *sandbox_id)
{
	struct ebox *b = NULL;

	if (!m || !sandbox_id)
		return;
	pthread_mutex_lock(&m->lock);
	for (b = m->boxes; b; b = b->next)
		if (!strcmp(b->id, sandbox_id))
			box_stopped(b);
	pthread_mutex_unlock(&m->lock);
}
