/* SPDX-License-Identifier: Apache-2.0 */
/*
 * writeback.c - the queue of deferred changes to sandbox files, and the
 * script that applies a batch of them (see writeback.h).
 *
 * Ops stay in one list, in the order they were queued, until their batch
 * has run: an op in flight is marked, not moved, so that wb_conflicts sees
 * it (a path must not be touched by anything else while its change is on
 * the way) and the order of the rest is kept.
 */
#include "writeback.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "urlenc.h"

struct wb_entry {
	struct wb_entry *next;
	struct wb_op *op;
	bool running;
};

struct wb_queue {
	pthread_mutex_t lock;
	pthread_cond_t cv;        /* the runner's wake-up (CLOCK_MONOTONIC) */
	struct wb_entry *head, **tail;
	size_t batch_max;
	bool stop;
	bool kicked;              /* wb_push made a batch due at once */
};

struct wb_op *wb_op_new(const void *owner, enum wb_kind kind, const char *path)
{
	struct wb_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->path = strdup(path);
	if (!op->path) {
		free(op);
		return NULL;
	}
	op->owner = owner;
	op->kind = kind;
	op->uid = (uid_t)-1;
	op->gid = (gid_t)-1;
	return op;
}

void wb_op_free(struct wb_op *op)
{
	if (!op)
		return;
	free(op->path);
	free(op->src);
	free(op->keep);
	free(op);
}

void wb_list_free(struct wb_op *list)
{
	while (list) {
		struct wb_op *next = list->next;

		wb_op_free(list);
		list = next;
	}
}

struct wb_queue *wb_new(size_t batch_max)
{
	struct wb_queue *q = calloc(1, sizeof(*q));
	pthread_condattr_t attr;

	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &attr);
	pthread_condattr_destroy(&attr);
	q->tail = &q->head;
	q->batch_max = batch_max ? batch_max : 1;
	return q;
}

void wb_free(struct wb_queue *q)
{
	struct wb_entry *e, *next;

	if (!q)
		return;
	for (e = q->head; e; e = next) {
		next = e->next;
		wb_op_free(e->op);
		free(e);
	}
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/*
 * Walks owner's queued (not running) ops in order, as wb_take would take
 * them: the number that could be taken now, whether one of those is due,
 * and the earliest time one becomes takeable (a hidden delete not yet due
 * holds back everything of its owner after it).
 */
static bool holds_back(const struct wb_op *op)
{
	return op->hidden || op->retry_start > 0;
}

static void owner_state(const struct wb_queue *q, const void *owner, double now, size_t *takeable, bool *due,
			double *next_due)
{
	double block = 0;
	bool blocked = false;

	*takeable = 0;
	*due = false;
	*next_due = 0;
	/* One batch of an owner at a time: what follows waits for wb_done
	 * (or wb_requeue), which wakes the runner. */
	for (const struct wb_entry *e = q->head; e; e = e->next)
		if (e->running && e->op->owner == owner)
			return;
	for (const struct wb_entry *e = q->head; e; e = e->next) {
		const struct wb_op *op = e->op;
		double eff;

		if (e->running || op->owner != owner)
			continue;
		/* A hidden delete, or a batch waiting out its backoff (requeued),
		 * holds back what follows it. */
		if (holds_back(op) && op->due > block)
			block = op->due;
		eff = op->due > block ? op->due : block;
		if (*next_due == 0 || eff < *next_due)
			*next_due = eff;
		if (holds_back(op) && op->due > now)
			blocked = true;
		if (blocked)
			continue;
		(*takeable)++;
		if (op->due <= now)
			*due = true;
	}
}

static bool owner_ready(const struct wb_queue *q, const void *owner, double now)
{
	size_t takeable;
	bool due;
	double next_due;

	owner_state(q, owner, now, &takeable, &due, &next_due);
	return takeable > 0 && (due || takeable >= q->batch_max);
}

bool wb_push(struct wb_queue *q, struct wb_op *op, double now, double delay)
{
	struct wb_entry *e = calloc(1, sizeof(*e));

	if (!e)
		return false;
	op->next = NULL;
	op->due = now + delay;
	op->queued = now;
	e->op = op;
	pthread_mutex_lock(&q->lock);
	*q->tail = e;
	q->tail = &e->next;
	if (owner_ready(q, op->owner, now))
		q->kicked = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->lock);
	return true;
}

static bool touches(const char *a, const char *b)
{
	return path_is_within(a, b) || path_is_within(b, a);
}

bool wb_conflicts(struct wb_queue *q, const void *owner, const char *path)
{
	bool found = false;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e && !found; e = e->next)
		found = e->op->owner == owner && !e->op->lazy && (!path || touches(e->op->path, path));
	pthread_mutex_unlock(&q->lock);
	return found;
}

bool wb_eager(struct wb_queue *q, const void *owner)
{
	bool found = false;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e && !found; e = e->next)
		found = !e->running && !e->op->lazy && (!owner || e->op->owner == owner);
	pthread_mutex_unlock(&q->lock);
	return found;
}

/* Whether child names an entry directly in dir. */
static bool is_child_of(const char *child, const char *dir)
{
	const char *slash = strrchr(child, '/');
	size_t dlen = strlen(dir);

	if (!slash)
		return false;
	if (slash == child)
		return dlen == 1 && dir[0] == '/' && child[1];
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	return (size_t)(slash - child) == dlen && !strncmp(child, dir, dlen) && slash[1];
}

bool wb_conflicts_content(struct wb_queue *q, const void *owner, const char *path)
{
	bool found = false;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e && !found; e = e->next)
		found = e->op->owner == owner && touches(e->op->path, path) &&
			(e->op->kind != WB_ATTRS || strcmp(e->op->path, path));
	pthread_mutex_unlock(&q->lock);
	return found;
}

bool wb_conflicts_attr(struct wb_queue *q, const void *owner, const char *path)
{
	bool found = false;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e && !found; e = e->next) {
		const struct wb_op *op = e->op;

		found = op->owner == owner &&
			(path_is_within(path, op->path) ||
			 ((op->kind == WB_DELETE || op->kind == WB_MOVE) && is_child_of(op->path, path)));
	}
	pthread_mutex_unlock(&q->lock);
	return found;
}

void wb_each_child_attrs(struct wb_queue *q, const void *owner, const char *dir,
			 void (*fn)(void *ctx, const char *name, const struct wb_op *op), void *ctx)
{
	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e; e = e->next) {
		const struct wb_op *op = e->op;

		if (op->owner == owner && op->kind == WB_ATTRS && is_child_of(op->path, dir))
			fn(ctx, strrchr(op->path, '/') + 1, op);
	}
	pthread_mutex_unlock(&q->lock);
}

void wb_apply_attrs(const struct wb_op *op, struct stat *st)
{
	if (op->chown && op->uid != (uid_t)-1)
		st->st_uid = op->uid;
	if (op->chown && op->gid != (gid_t)-1)
		st->st_gid = op->gid;
	if (op->chmod)
		st->st_mode = (st->st_mode & S_IFMT) | (op->mode & 07777);
	if (op->set_mtime)
		st->st_mtim = op->mtime;
	if (op->set_atime)
		st->st_atim = op->atime;
}

static bool superseded_locked(const struct wb_queue *q, const struct wb_op *op)
{
	bool after = false;

	if (op->superseded)
		return true;
	for (const struct wb_entry *e = q->head; e; e = e->next) {
		if (e->op == op)
			after = true;
		else if (after && e->op->owner == op->owner && path_is_within(e->op->path, op->path))
			return true;
	}
	return false;
}

bool wb_superseded(struct wb_queue *q, const struct wb_op *op)
{
	bool found;

	pthread_mutex_lock(&q->lock);
	found = superseded_locked(q, op);
	pthread_mutex_unlock(&q->lock);
	return found;
}

void wb_if_current(struct wb_queue *q, const struct wb_op *op, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&q->lock);
	if (!superseded_locked(q, op))
		fn(arg);
	pthread_mutex_unlock(&q->lock);
}

static bool busy_locked(const struct wb_queue *q, const void *owner)
{
	for (const struct wb_entry *e = q->head; e; e = e->next)
		if (e->running && (!owner || e->op->owner == owner))
			return true;
	return false;
}

bool wb_running_touches(struct wb_queue *q, const void *owner, const char *path)
{
	bool found = false;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e && !found; e = e->next)
		found = e->running && e->op->owner == owner && touches(e->op->path, path);
	pthread_mutex_unlock(&q->lock);
	return found;
}

bool wb_busy(struct wb_queue *q, const void *owner)
{
	bool busy;

	pthread_mutex_lock(&q->lock);
	busy = busy_locked(q, owner);
	pthread_mutex_unlock(&q->lock);
	return busy;
}

struct wb_op *wb_take(struct wb_queue *q, const void *owner, bool due_only, double now)
{
	struct wb_op *batch = NULL, **bt = &batch;
	size_t taken = 0;

	pthread_mutex_lock(&q->lock);
	if (!owner) {
		for (struct wb_entry *e = q->head; e; e = e->next) {
			if (!e->running && !busy_locked(q, e->op->owner) &&
			    (!due_only || owner_ready(q, e->op->owner, now))) {
				owner = e->op->owner;
				break;
			}
		}
	} else if (busy_locked(q, owner) || (due_only && !owner_ready(q, owner, now))) {
		owner = NULL;
	}
	for (struct wb_entry *e = owner ? q->head : NULL; e && taken < q->batch_max; e = e->next) {
		if (e->running || e->op->owner != owner)
			continue;
		if (due_only && holds_back(e->op) && e->op->due > now)
			break;
		e->running = true;
		e->op->next = NULL;
		*bt = e->op;
		bt = &e->op->next;
		taken++;
	}
	q->kicked = false;
	pthread_mutex_unlock(&q->lock);
	return batch;
}

/* Unlinks the entry that *pp points to and frees it (not its op); the
 * tail follows. Caller holds the lock. */
static void entry_remove(struct wb_queue *q, struct wb_entry **pp)
{
	struct wb_entry *e = *pp;

	*pp = e->next;
	if (q->tail == &e->next)
		q->tail = pp;
	free(e);
}

void wb_done(struct wb_queue *q, struct wb_op *batch)
{
	pthread_mutex_lock(&q->lock);
	for (struct wb_op *op = batch; op; op = op->next) {
		for (struct wb_entry **pp = &q->head; *pp; pp = &(*pp)->next) {
			if ((*pp)->op == op) {
				entry_remove(q, pp);
				break;
			}
		}
	}
	/* What waited behind the batch (its owner's next ops) may be due. */
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->lock);
	wb_list_free(batch);
}

void wb_requeue(struct wb_queue *q, struct wb_op *batch, double due)
{
	pthread_mutex_lock(&q->lock);
	for (struct wb_op *op = batch, *next; op; op = next) {
		next = op->next;
		op->next = NULL;
		op->due = due;
		for (struct wb_entry *e = q->head; e; e = e->next) {
			if (e->op == op) {
				e->running = false;
				break;
			}
		}
	}
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->lock);
}

struct wb_op *wb_cancel_hidden(struct wb_queue *q, const void *owner, const char *path)
{
	struct wb_op *found = NULL;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry **pp = &q->head; *pp; pp = &(*pp)->next) {
		struct wb_entry *e = *pp;

		if (!e->running && e->op->owner == owner && e->op->hidden && !strcmp(e->op->path, path)) {
			found = e->op;
			entry_remove(q, pp);
			break;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return found;
}

struct wb_op *wb_take_attrs(struct wb_queue *q, const void *owner, const char *path, bool *clear)
{
	struct wb_op *list = NULL, **lt = &list;

	*clear = true;
	pthread_mutex_lock(&q->lock);
	/* Only when every change that touches path is one of path's own
	 * attributes: a delete, or a change of a directory above or below,
	 * keeps its order. */
	for (struct wb_entry *e = q->head; e; e = e->next) {
		const struct wb_op *op = e->op;

		if (op->owner != owner || !touches(op->path, path))
			continue;
		if (op->kind != WB_ATTRS || strcmp(op->path, path)) {
			*clear = false;
			pthread_mutex_unlock(&q->lock);
			return NULL;
		}
	}
	for (struct wb_entry **pp = &q->head; *pp;) {
		struct wb_entry *e = *pp;

		if (e->running && e->op->owner == owner && !strcmp(e->op->path, path)) {
			e->op->superseded = true;
			pp = &e->next;
		} else if (e->op->owner == owner && e->op->kind == WB_ATTRS && !strcmp(e->op->path, path)) {
			*lt = e->op;
			lt = &e->op->next;
			*lt = NULL;
			entry_remove(q, pp);
		} else {
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return list;
}

/* A change of path itself that wb_take_replace may take or leave: queued,
 * or in flight (a batch of an owner runs before anything queued after it,
 * so a move queued now lands after it). Never a hidden delete, which a
 * rename may still cancel. */
static bool own_change(const struct wb_entry *e, const char *path)
{
	return !strcmp(e->op->path, path) && !(e->op->kind == WB_DELETE && e->op->hidden);
}

bool wb_only_own(struct wb_queue *q, const void *owner, const char *path)
{
	bool ok = true;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e && ok; e = e->next)
		if (e->op->owner == owner && touches(e->op->path, path))
			ok = own_change(e, path);
	pthread_mutex_unlock(&q->lock);
	return ok;
}

struct wb_op *wb_take_replace(struct wb_queue *q, const void *owner, const char *path, bool *clear,
			      bool *replace, struct stat *base, char **prev_src)
{
	struct wb_op *list = NULL, **lt = &list;
	struct wb_entry *last = NULL;
	bool after;

	*clear = true;
	*replace = false;
	*prev_src = NULL;
	memset(base, 0, sizeof(*base));
	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e; e = e->next) {
		const struct wb_op *op = e->op;

		if (op->owner != owner || !touches(op->path, path))
			continue;
		if (!own_change(e, path)) {
			*clear = false;
			pthread_mutex_unlock(&q->lock);
			return NULL;
		}
		if (op->kind == WB_DELETE || op->kind == WB_MOVE) {
			if (!*replace)
				*base = op->st;
			*replace = true;
			last = e;
		}
	}
	after = last == NULL;
	for (struct wb_entry **pp = &q->head; *pp;) {
		struct wb_entry *e = *pp;
		bool take = false;

		if (e->running && e->op->owner == owner && e->op->kind == WB_ATTRS && !strcmp(e->op->path, path))
			e->op->superseded = true;   /* (what it prints is stale once we upload) */
		if (e == last) {
			after = true;
			/* The previous upload's move stays queued (wb_swap_move). */
			if (e->op->kind == WB_MOVE && !e->running && e->op->src) {
				*prev_src = strdup(e->op->src);
				if (!*prev_src) {
					/* (no memory: the caller settles first) */
					*clear = false;
					pthread_mutex_unlock(&q->lock);
					wb_list_free(list);
					return NULL;
				}
			}
		} else if (after) {
			take = e->op->owner == owner && e->op->kind == WB_ATTRS && !e->running &&
			       !strcmp(e->op->path, path);
		}
		if (take) {
			*lt = e->op;
			lt = &e->op->next;
			*lt = NULL;
			entry_remove(q, pp);
		} else {
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return list;
}

bool wb_swap_move(struct wb_queue *q, const void *owner, const char *path, const char *prev_src,
		  struct wb_op *op)
{
	bool swapped = false;

	pthread_mutex_lock(&q->lock);
	for (struct wb_entry *e = q->head; e; e = e->next) {
		struct wb_op *o = e->op;
		char *src, *keep;

		if (o->owner != owner || o->kind != WB_MOVE || e->running || !o->src ||
		    strcmp(o->src, prev_src) || strcmp(o->path, path))
			continue;
		src = o->src;
		keep = o->keep;
		o->src = op->src;
		o->keep = op->keep;
		op->src = src;
		op->keep = keep;
		swapped = true;
		break;
	}
	pthread_mutex_unlock(&q->lock);
	return swapped;
}

bool wb_move_mark(const struct wb_op *op, char *out, size_t cap)
{
	const char *base = op->src ? strrchr(op->src, '/') : NULL;
	int n;

	if (!base)
		return false;
	n = snprintf(out, cap, "%s/%s", WB_MOVE_MARK_DIR, base + 1);
	return n > 0 && (size_t)n < cap;
}

double wb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool wb_wait(struct wb_queue *q)
{
	bool run = false;

	pthread_mutex_lock(&q->lock);
	while (!q->stop) {
		double now = wb_now(), earliest = 0;

		for (struct wb_entry *e = q->head; e; e = e->next) {
			size_t takeable;
			bool due;
			double next_due;

			if (e->running)
				continue;
			owner_state(q, e->op->owner, now, &takeable, &due, &next_due);
			if (takeable > 0 && (due || takeable >= q->batch_max)) {
				run = true;
				break;
			}
			if (next_due > 0 && (earliest == 0 || next_due < earliest))
				earliest = next_due;
		}
		if (run || q->kicked)
			break;
		if (earliest == 0) {
			pthread_cond_wait(&q->cv, &q->lock);
		} else {
			struct timespec until;
			double secs = earliest;

			until.tv_sec = (time_t)secs;
			until.tv_nsec = (long)((secs - (double)until.tv_sec) * 1e9);
			if (until.tv_nsec >= 1000000000L)
				until.tv_nsec = 999999999L;
			pthread_cond_timedwait(&q->cv, &q->lock, &until);
		}
	}
	run = !q->stop;
	q->kicked = false;
	pthread_mutex_unlock(&q->lock);
	return run;
}

void wb_stop(struct wb_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->lock);
}

/* ---- the script -------------------------------------------------------------- */

/*
 * A batch may run twice: its answer lost after it ran, the mount sends it
 * again (wb_send); or a proxy replays it (Daytona's, FIDELITY 2.1 D7), and
 * the mount sees the second run's answer only. So each op must do, and
 * say, the same when run again after the whole batch ran: rm -f, chown,
 * chmod to a number and touch to a given time are; a move is made so
 * (its record, wb_move_mark), and so are the ops beside it that would
 * otherwise act on the file it put in place:
 *  - a delete of a path that a move of the batch replaces (the path's next
 *    op in the batch) leaves it to the move's rename(2), which replaces a
 *    non-directory atomically: a second run's rm -f would delete the file
 *    the first run moved there. Only a directory there now is still given
 *    to rm -f, for its refusal (the move is refused too);
 *  - the move, refused (not proven done by its record), removes the path
 *    as the delete said it would;
 *  - owner, mode and times of the file that such a delete removes are not
 *    set again once the move's record shows the batch ran.
 * The next op of the batch after op with op's path, or NULL.
 */
static const struct wb_op *next_of_path(const struct wb_op *op)
{
	for (const struct wb_op *o = op->next; o; o = o->next)
		if (!strcmp(o->path, op->path))
			return o;
	return NULL;
}

/* The last op of batch before op with op's path, or NULL. */
static const struct wb_op *prev_of_path(const struct wb_op *batch, const struct wb_op *op)
{
	const struct wb_op *prev = NULL;

	for (const struct wb_op *o = batch; o != op; o = o->next)
		if (!strcmp(o->path, op->path))
			prev = o;
	return prev;
}

/* The move that replaces what op acts on, later in the batch: op's path's
 * next op is the move, or a delete whose next one is. */
static const struct wb_op *replacing_move(const struct wb_op *op)
{
	const struct wb_op *o = next_of_path(op);

	if (o && o->kind == WB_DELETE && op->kind == WB_ATTRS)
		o = next_of_path(o);
	return o && o->kind == WB_MOVE && o->src ? o : NULL;
}

static void add_touch(struct strbuf *s, const char *flag, const struct timespec *ts, const char *path)
{
	sb_addf(s, " && touch -h -c %s-d @%lld.%09ld -- ", flag, (long long)ts->tv_sec, ts->tv_nsec);
	sh_word(s, path);
}

static void add_attrs(struct strbuf *s, const struct wb_op *op)
{
	/* cp -a's order: the owner first (chown clears setuid bits), then
	 * the mode, then the times (both of which chown leaves alone). */
	if (op->chown && (op->uid != (uid_t)-1 || op->gid != (gid_t)-1)) {
		sb_adds(s, " && chown -h ");
		if (op->uid != (uid_t)-1)
			sb_addf(s, "%u", (unsigned)op->uid);
		if (op->gid != (gid_t)-1)
			sb_addf(s, ":%u", (unsigned)op->gid);
		sb_adds(s, " -- ");
		sh_word(s, op->path);
	}
	if (op->chmod) {
		/* Five digits: GNU chmod keeps a directory's setuid and setgid
		 * bits for a shorter numeric mode, which chmod(2) does not. */
		sb_addf(s, " && chmod %05o -- ", (unsigned)(op->mode & 07777));
		sh_word(s, op->path);
	}
	if (op->set_mtime && op->set_atime && op->mtime.tv_sec == op->atime.tv_sec &&
	    op->mtime.tv_nsec == op->atime.tv_nsec) {
		add_touch(s, "", &op->mtime, op->path);
	} else {
		if (op->set_mtime)
			add_touch(s, "-m ", &op->mtime, op->path);
		if (op->set_atime)
			add_touch(s, "-a ", &op->atime, op->path);
	}
}

/*
 * The birth test of deletes (struct wb_since). A delete's lag is how long
 * before the batch was built its unlink came (or this mount's own changes
 * ended, if later), less a margin: the script subtracts it from the
 * sandbox's clock.
 */
struct wb_lag {
	long long sec;
	long nsec;
};

/* Each guarded delete costs the sandbox a stat process: a longer batch of
 * them (rm -r) deletes as rm -f does. */
#define WB_SPARE_MAX 16

/* Whether op's delete takes the birth test: not of a hidden name (nobody
 * else writes there, and libfuse's own rename may have touched it), nor
 * of a path the batch changed before (its own move makes a new file), nor
 * one a move of the batch replaces (wb_script's own rule). */
static bool delete_guarded(const struct wb_op *batch, const struct wb_op *op, const struct wb_since *since)
{
	return since && op->kind == WB_DELETE && !op->hidden && op->path[0] == '/' && !replacing_move(op) &&
	       !prev_of_path(batch, op);
}

/* The lag of the deletes first..end (exclusive): from the latest of their
 * unlinks, so that none spares a file made before its own. The margin (50
 * ms and 0.1 %) makes T later still: for a sandbox's clock that runs a
 * little slower than the mount's, or was slewed meanwhile. */
static void lag_of(struct wb_lag *lag, const struct wb_op *first, const struct wb_op *end,
		   const struct wb_since *since)
{
	double from = since->floor, secs;

	for (const struct wb_op *o = first; o != end; o = o->next)
		if (o->queued > from)
			from = o->queued;
	secs = since->built - from;
	secs -= 0.05 + secs * 0.001;
	if (!(secs > 0))
		secs = 0;
	lag->sec = (long long)secs;
	lag->nsec = (long)((secs - (double)lag->sec) * 1e9);
	if (lag->nsec > 999999999L)
		lag->nsec = 999999999L;
}

/*
 * The batch's clock, read once at its start: wb_s seconds and wb_f the 9
 * digits of the fraction (zsh's and bash's EPOCHREALTIME, no process; else
 * date). wb_t SEC NSEC sets wb_ty and wb_tx, the clock less the lag (T).
 * wb_keep PATH is true when PATH is a file made after the unlink: its
 * birth time (statx, by GNU stat) after T and not after the clock (a clock
 * that ran ahead), on a file system whose times the sandbox's own kernel
 * stamps (not FUSE or a network file system: another clock) and where a
 * file is born only once (not overlayfs, whose first change of a file of
 * the image copies it up, a new inode born then). Without a
 * clock, a birth time, or a stat that knows it: false, and the delete
 * removes whatever is there, as rm -f does.
 */
static void add_clock(struct strbuf *s)
{
	sb_adds(s, "wb_c=; if [ -n \"${ZSH_VERSION-}\" ]; then zmodload zsh/datetime 2>/dev/null && "
		"wb_c=${EPOCHREALTIME-}; elif [ -n \"${BASH_VERSION-}\" ]; then wb_c=${EPOCHREALTIME-}; fi\n"
		"case $wb_c in [0-9]*.[0-9]*) ;; *) wb_c=$(date +%s.%N 2>/dev/null) ;; esac\n"
		"case $wb_c in [0-9]*.[0-9]*) ;; *) wb_c= ;; esac\n"
		"wb_ns() {\n"
		"\twb_n1=${1%%.*}; wb_n2=; case $1 in *.*) wb_n2=${1#*.} ;; esac\n"
		"\twb_n2=${wb_n2}000000000; wb_n2=${wb_n2%\"${wb_n2#?????????}\"}\n"
		"\tcase $wb_n1$wb_n2 in ''|*[!0-9]*) return 1 ;; esac\n"
		"}\n"
		"wb_s=; wb_ns \"$wb_c\" && wb_s=$wb_n1 && wb_f=$wb_n2\n"
		"wb_t() {\n"
		"\t[ -n \"$wb_s\" ] || return 0\n"
		"\twb_tx=$((1$wb_f - 1000000000 - $2)); wb_ty=$((wb_s - $1))\n"
		"\tif [ $wb_tx -lt 0 ]; then wb_tx=$((wb_tx + 1000000000)); wb_ty=$((wb_ty - 1)); fi\n"
		"\twb_tx=$((wb_tx + 1000000000)); wb_tx=${wb_tx#1}\n"
		"}\n"
		"wb_keep() {\n"
		"\t[ -n \"$wb_s\" ] || return 1\n"
		"\twb_b=$(command stat -c %.9W -- \"$1\" 2>/dev/null) || return 1\n"
		"\twb_ns \"$wb_b\" || return 1\n"
		"\t[ $wb_n1 -gt $wb_ty ] || { [ $wb_n1 -eq $wb_ty ] && [ $((1$wb_n2)) -gt $((1$wb_tx)) ]; } || return 1\n"
		"\t[ $wb_n1 -lt $wb_s ] || { [ $wb_n1 -eq $wb_s ] && [ $((1$wb_n2)) -le $((1$wb_f)) ]; } || return 1\n"
		"\tcase $(command stat -f -c %T -- \"$1\" 2>/dev/null) in\n"
		"\text2/ext3|ext4|xfs|btrfs|tmpfs|zfs|f2fs) return 0 ;;\n"
		"\tesac\n"
		"\treturn 1\n"
		"}\n");
}

/* wb_t, then rm -f of the paths of first..end that wb_keep does not spare
 * (the refusals and messages are rm's, as without the test). */
static void add_guarded_rm(struct strbuf *s, const struct wb_op *first, const struct wb_op *end,
			   const struct wb_lag *lag)
{
	sb_addf(s, "{ wb_t %lld %ld; set --; for wb_p in", lag->sec, lag->nsec);
	for (const struct wb_op *o = first; o != end; o = o->next) {
		sb_addc(s, ' ');
		sh_word(s, o->path);
	}
	sb_adds(s, "; do wb_keep \"$wb_p\" || set -- \"$@\" \"$wb_p\"; done; [ $# = 0 ] || rm -f -- \"$@\"; }");
}

/* The commands of one op, joined by &&, after a leading "true". prev: the
 * batch's op before op with op's path, or NULL. lag: a delete's clock test
 * (NULL: none). */
static void add_op_commands(struct strbuf *s, const struct wb_op *op, const struct wb_op *prev,
			    const struct wb_lag *lag)
{
	const struct wb_op *mv = op->kind == WB_MOVE ? NULL : replacing_move(op);
	char mark[PATH_MAX + 64];

	if (mv && !wb_move_mark(mv, mark, sizeof(mark)))
		mv = NULL;
	sb_adds(s, "true");
	if (op->kind == WB_DELETE && mv) {
		sb_adds(s, " && { ! test -d ");
		sh_word(s, op->path);
		sb_adds(s, " || test -L ");
		sh_word(s, op->path);
		sb_adds(s, " || rm -f -- ");
		sh_word(s, op->path);
		sb_adds(s, "; }");
		return;
	}
	if (op->kind == WB_DELETE && lag) {
		sb_adds(s, " && ");
		add_guarded_rm(s, op, op->next, lag);
		return;
	}
	if (op->kind == WB_DELETE) {
		sb_adds(s, " && rm -f -- ");
		sh_word(s, op->path);
		return;
	}
	if (op->kind == WB_MOVE) {
		/* -T: a directory made at path meanwhile is an error, not a
		 * place to move the file into. A refused move leaves no
		 * temporary name behind (the mount keeps the data: wb_op.keep);
		 * the message is mv's. Done, it writes its record (with
		 * `true >`, not a special builtin, whose redirection error could
		 * end the shell); the record missing only makes a second run
		 * report the move refused (the data then goes to unsaved/). */
		bool rec = wb_move_mark(op, mark, sizeof(mark));

		sb_adds(s, " && if mv -f -T -- ");
		sh_word(s, op->src);
		sb_addc(s, ' ');
		sh_word(s, op->path);
		sb_adds(s, "; then ");
		if (rec) {
			sb_adds(s, "{ true >");
			sh_word(s, mark);
			sb_adds(s, " || { mkdir -p " WB_MOVE_MARK_DIR " && true >");
			sh_word(s, mark);
			sb_adds(s, "; }; } 2>/dev/null; true; elif test -e ");
			sh_word(s, mark);
			sb_adds(s, "; then true; ");
		} else {
			sb_adds(s, "true; ");
		}
		sb_adds(s, "else rm -f -- ");
		sh_word(s, op->src);
		if (prev && prev->kind == WB_DELETE) {
			/* the delete left the path to the move */
			sb_adds(s, "; test -d ");
			sh_word(s, op->path);
			sb_adds(s, " || rm -f -- ");
			sh_word(s, op->path);
			sb_adds(s, " 2>/dev/null");
		}
		sb_adds(s, "; false; fi");
		return;
	}
	if (mv) {
		/* of the file a later move replaces: not once that move ran */
		sb_adds(s, " && if test -e ");
		sh_word(s, mark);
		sb_adds(s, "; then true; else true");
		add_attrs(s, op);
		sb_adds(s, "; fi");
		return;
	}
	if (next_of_path(op) && next_of_path(op)->kind == WB_DELETE) {
		/* of a file the batch deletes next: gone, a second run (or
		 * someone else) removed it, and what it had no longer counts */
		sb_adds(s, " && { true");
		add_attrs(s, op);
		sb_adds(s, " || ! { test -e ");
		sh_word(s, op->path);
		sb_adds(s, " || test -L ");
		sh_word(s, op->path);
		sb_adds(s, "; }; }");
		return;
	}
	add_attrs(s, op);
}

/* One op, alone: its marker, its commands, and its result line. */
static void add_op(struct strbuf *script, const struct wb_op *batch, const struct wb_op *op, size_t i,
		   const char *mark, const char *find_fmt, const struct wb_lag *lag)
{
	const struct wb_op *prev = prev_of_path(batch, op);

	sb_addf(script, "printf '@%s %zu\\n'; if e=$( { ", mark, i);
	add_op_commands(script, op, prev, lag);
	sb_adds(script, "; } 2>&1 ); then ");
	if (op->stat_after && op->kind == WB_ATTRS) {
		sb_adds(script, "find ");
		sh_word(script, op->path);
		sb_addf(script, " -maxdepth 0 -printf '%s' 2>/dev/null; ", find_fmt);
	} else {
		sb_adds(script, ":; ");
	}
	/* One line: a message's own newlines would end it early. */
	sb_adds(script, "else printf '!%s\\n' \"$e\" | tr '\\n' ' '; echo; fi\n");
}

void wb_script(struct strbuf *script, const struct wb_op *batch, const char *mark, const char *find_fmt,
	       const struct wb_since *since)
{
	const struct wb_op *op;
	size_t i = 0, guarded_n = 0;

	for (op = batch; op; op = op->next)
		if (delete_guarded(batch, op, since))
			guarded_n++;
	if (guarded_n > WB_SPARE_MAX)
		since = NULL;
	else if (guarded_n > 0)
		add_clock(script);
	op = batch;
	while (op) {
		const struct wb_op *end = op, *o;
		bool guarded = delete_guarded(batch, op, since);
		struct wb_lag lag = { 0, 0 };
		size_t n = 0, k;

		/* Consecutive deletes (rm -r) are one rm: a process per file is
		 * most of a batch's time. Only if it fails are they done one by
		 * one, to tell which failed and why. */
		while (end && end->kind == WB_DELETE && !replacing_move(end) &&
		       delete_guarded(batch, end, since) == guarded) {
			end = end->next;
			n++;
		}
		if (guarded)
			lag_of(&lag, op, end, since);
		if (n < 2) {
			add_op(script, batch, op, i++, mark, find_fmt, guarded ? &lag : NULL);
			op = op->next;
			continue;
		}
		sb_adds(script, "if ");
		if (guarded) {
			add_guarded_rm(script, op, end, &lag);
		} else {
			sb_adds(script, "rm -f --");
			for (o = op; o != end; o = o->next) {
				sb_addc(script, ' ');
				sh_word(script, o->path);
			}
		}
		sb_adds(script, " 2>/dev/null; then printf '");
		for (k = 0; k < n; k++)
			sb_addf(script, "@%s %zu\\n", mark, i + k);
		sb_adds(script, "'; else\n");
		for (o = op, k = 0; o != end; o = o->next, k++)
			add_op(script, batch, o, i + k, mark, find_fmt, guarded ? &lag : NULL);
		sb_adds(script, "fi\n");
		i += n;
		op = end;
	}
	sb_adds(script, "true\n");
}

void wb_parse(const char *out, size_t len, const char *mark, struct wb_result *res, size_t n)
{
	size_t mlen = strlen(mark);
	size_t pos = 0;
	struct wb_result *cur = NULL;

	memset(res, 0, n * sizeof(*res));
	while (pos < len) {
		const char *line = out + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		size_t next = pos + llen + (nl ? 1 : 0);

		if (llen > mlen + 1 && line[0] == '@' && !memcmp(line + 1, mark, mlen) && line[mlen + 1] == ' ') {
			char *end = NULL;
			unsigned long long i = strtoull(line + mlen + 2, &end, 10);

			cur = NULL;
			if (end == line + llen && i < n) {
				cur = &res[i];
				cur->status = WB_OK;
				cur->text = out + next;
				cur->len = 0;
			}
		} else if (cur) {
			cur->len = (size_t)(out + next - cur->text);
		}
		pos = next;
	}
	for (size_t i = 0; i < n; i++) {
		if (res[i].status != WB_OK || res[i].len == 0 || res[i].text[0] != '!')
			continue;
		res[i].status = WB_FAILED;
		res[i].text++;
		res[i].len--;
		while (res[i].len > 0 && (res[i].text[res[i].len - 1] == '\n' || res[i].text[res[i].len - 1] == ' '))
			res[i].len--;
	}
}

/* A command's failure message (coreutils wording, LC_ALL=C) to an errno. */
int errno_from_message(const char *msg)
{
	static const struct { const char *text; int err; } map[] = {
		{ "No such file or directory", ENOENT }, { "Permission denied", EACCES },
		{ "Operation not permitted", EPERM }, { "Directory not empty", ENOTEMPTY },
		{ "cannot overwrite non-directory", ENOTDIR }, { "cannot overwrite directory", EISDIR },
		{ "to a subdirectory of itself", EINVAL },
		{ "Is a directory", EISDIR }, { "Not a directory", ENOTDIR },
		{ "File exists", EEXIST }, { "Read-only file system", EROFS },
		{ "No space left on device", ENOSPC }, { "Disk quota exceeded", EDQUOT },
		{ "Invalid argument", EINVAL }, { "File too large", EFBIG },
		{ "File name too long", ENAMETOOLONG }, { "Too many levels of symbolic links", ELOOP },
		{ "Invalid cross-device link", EXDEV }, { "Text file busy", ETXTBSY },
		{ "Device or resource busy", EBUSY },
		{ "invalid user", EINVAL }, { "invalid group", EINVAL },
	};

	for (size_t i = 0; msg && i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}
