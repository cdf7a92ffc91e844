/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recover.c - crash recovery at mount time (see recover.h, journal.h).
 *
 * For each record a dead mount left, in one background thread:
 *   1. journal_check_local: the record and the stage file alone decide
 *      "unsaved" (never closed, damaged, incomplete) or "drop" (no stage);
 *   2. else the sandbox is asked: GET the sandbox by id (gone -> unsaved;
 *      not started -> kept for a later mount: recovery never starts a
 *      sandbox), then the file's info (one request), while the new mount's
 *      changes to that sandbox wait (claim), until the upload is done;
 *   3. journal_check_remote: upload only when the sandbox's file is still
 *      the one the dead mount read (same size and mtime, or still absent
 *      for a new file), or holds only the start of the stage (an upload
 *      the crash cut short: remote_is_prefix); else unsaved/, never over
 *      a newer version.
 * Records that could not be decided (the sandbox stopped or unreachable)
 * are tried again every RETRY_S while the mount runs, and at once when the
 * mount sees a sandbox started (recover_wake), so that starting the sandbox
 * is enough; they stay on disk for the next mount otherwise.
 *
 * Each step leaves the directory in a state a new recovery handles
 * (idempotent): an upload is followed by the removal of the stage, then
 * of the record (a record whose stage is gone is dropped); a stage is
 * moved to unsaved/ before its record is removed. A crash between an
 * upload and those removals makes the next recovery find the stage whole
 * in the sandbox (remote_is_prefix) and upload the same bytes again.
 */
#include "recover.h"
#include "cache.h"
#include "journal.h"
#include "log.h"
#include "stage.h"
#include "strbuf.h"
#include "rfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RETRY_S 30

/* What a pass learnt of one sandbox: each is asked once a pass, however
 * many files it has staged. */
enum sb_answer { SB_STARTED, SB_GONE, SB_DOWN };
struct sb_seen {
	struct sb_seen *next;
	char id[SP_ID_SIZE];
	enum sb_answer answer;
	char toolbox_url[512];
};

struct recovery {
	struct recover_ctx ctx;
	char **names;             /* stages with a record, left by a dead mount; */
	size_t n;                 /* NULL once done with */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;                /* under lock */
	bool woken;               /* under lock: recover_wake since the last pass began */
	struct sb_seen *seen;     /* this pass's answers */
	struct timespec scanned;  /* when recover_scan read the records (wall clock) */
};

struct recovery *recover_scan(const struct recover_ctx *ctx)
{
	struct recovery *r;
	char **names;
	size_t n;
	int rc = journal_scan(stage_area_staging(ctx->stage), &names, &n);

	if (rc < 0) {
		log_error("crash recovery: cannot read %s: %s", stage_area_staging(ctx->stage), strerror(-rc));
		return NULL;
	}
	if (!n) {
		journal_names_free(names, n);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		journal_names_free(names, n);
		log_error("crash recovery: out of memory");
		return NULL;
	}
	r->ctx = *ctx;
	r->names = names;
	r->n = n;
	clock_gettime(CLOCK_REALTIME, &r->scanned);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->wake, NULL);
	log_warn("crash recovery: %zu staged file(s) left by an earlier mount in %s", n,
		 stage_area_staging(ctx->stage));
	return r;
}

static void seen_clear(struct recovery *r)
{
	while (r->seen) {
		struct sb_seen *next = r->seen->next;

		free(r->seen);
		r->seen = next;
	}
}

/* The record's sandbox as this pass knows it, asked when not yet known;
 * NULL when out of memory. */
static const struct sb_seen *sandbox_seen(struct recovery *r, const struct journal_rec *rec)
{
	struct sp_error err = { 0 };
	struct sp_sandbox d;
	struct sb_seen *e;
	int rc;

	for (e = r->seen; e; e = e->next)
		if (!strcmp(e->id, rec->sandbox_id))
			return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	str_copy(e->id, sizeof(e->id), rec->sandbox_id);
	memset(&d, 0, sizeof(d));
	rc = sp_sandbox_get(r->ctx.sp, rec->sandbox_id, &d, &err);
	if (rc == -ENOENT || (rc == 0 && !strcmp(d.state, "destroyed"))) {
		e->answer = SB_GONE;
	} else if (rc < 0) {
		e->answer = SB_DOWN;
		log_warn("crash recovery: sandbox %s (%s): %s; its staged files stay for a later try",
			 rec->sandbox_name, rec->sandbox_id, err.message);
	} else if (strcmp(d.state, "started")) {
		/* never started for this: the user decides */
		e->answer = SB_DOWN;
		log_warn("crash recovery: sandbox %s is %s: its files stay staged for a later mount, or until it "
			 "is started", rec->sandbox_name, d.state);
	} else if (!d.toolbox_url[0] &&
		   sp_sandbox_toolbox_url(r->ctx.sp, rec->sandbox_id, e->toolbox_url, sizeof(e->toolbox_url), &err) < 0) {
		/* D10: the Sandbox object may carry no toolboxProxyUrl; it is
		 * asked for as sandbox_box does, and a failure is tried again. */
		e->answer = SB_DOWN;
		log_warn("crash recovery: sandbox %s (%s): its toolbox address: %s; its staged files stay for a later try",
			 rec->sandbox_name, rec->sandbox_id, err.message);
	} else {
		e->answer = SB_STARTED;
		if (d.toolbox_url[0])
			str_copy(e->toolbox_url, sizeof(e->toolbox_url), d.toolbox_url);
	}
	sp_sandbox_clear(&d);
	e->next = r->seen;
	r->seen = e;
	return e;
}

/* Whether the directory of the record's path is there: the toolbox's
 * upload makes missing parents, which would bring back a directory deleted
 * after the crash. An error counts as "there" (the upload then finds out). */
static bool parent_is_dir(struct recovery *r, const struct sp_box *box, const struct journal_rec *rec)
{
	struct sp_error err = { 0 };
	struct sp_fileinfo info = { 0 };
	char dir[sizeof(rec->path)];
	char *slash;
	int rc;

	str_copy(dir, sizeof(dir), rec->path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return true;   /* in / */
	*slash = '\0';
	rc = rfs_info(r->ctx.sp, box, dir, &info, &err);
	free(info.name);
	return rc != -ENOENT && (rc < 0 || info.is_dir);
}

/* What the sandbox sb (sandbox_seen's answer) holds at the record's path;
 * *box is set for the upload when the sandbox answers (it points into this
 * pass's answers). */
static void ask_sandbox(struct recovery *r, const struct journal_rec *rec, const struct sb_seen *sb,
			struct sp_box *box, struct journal_remote *remote)
{
	struct sp_error err = { 0 };
	struct sp_fileinfo info = { 0 };
	int rc;

	memset(remote, 0, sizeof(*remote));
	remote->kind = JOURNAL_REMOTE_UNAVAILABLE;
	if (!sb || sb->answer == SB_DOWN)
		return;
	if (sb->answer == SB_GONE) {
		remote->kind = JOURNAL_REMOTE_SANDBOX_GONE;
		return;
	}
	box->id = sb->id;
	box->toolbox_url = sb->toolbox_url;
	rc = rfs_info(r->ctx.sp, box, rec->path, &info, &err);
	if (rc == -ENOENT) {
		remote->kind = parent_is_dir(r, box, rec) ? JOURNAL_REMOTE_ABSENT : JOURNAL_REMOTE_NO_PARENT;
	} else if (rc < 0) {
		log_warn("crash recovery: %s: stat of %s: %s", rec->sandbox_name, rec->path, err.message);
	} else if (info.is_dir || !S_ISREG(info.mode)) {
		remote->kind = JOURNAL_REMOTE_NOT_FILE;
	} else {
		remote->kind = JOURNAL_REMOTE_FILE;
		remote->size = info.size;
		remote->mtime = info.mtime;
	}
	free(info.name);
}

/* The staging file NAME's path (malloc'd), or NULL when out of memory. */
static char *stage_path(const struct recover_ctx *ctx, const char *name)
{
	struct strbuf p = STRBUF_INIT;

	sb_addf(&p, "%s/%s", stage_area_staging(ctx->stage), name);
	return sb_detach(&p);
}

/* Whether the stage file is still in staging/. */
static bool access_stage(const struct recover_ctx *ctx, const char *name)
{
	char *p = stage_path(ctx, name);
	bool there = p && access(p, F_OK) == 0;

	free(p);
	return there;
}

/* Removes the stage file, then its record (in that order: see above). */
static void forget(const struct recover_ctx *ctx, const char *name)
{
	char *p = stage_path(ctx, name);

	if (p && unlink(p) != 0 && errno != ENOENT)
		log_warn("crash recovery: cannot remove %s: %s", p, strerror(errno));
	free(p);
	journal_remove(stage_area_staging(ctx->stage), name);
}

/* Compares what the sandbox sends with the stage, from its start. */
struct prefix_cmp {
	int fd;                   /* the stage */
	uint64_t off;
	bool differs;
};

static int prefix_sink(void *ctx, const void *data, size_t len)
{
	struct prefix_cmp *c = ctx;
	const unsigned char *d = data;
	unsigned char buf[65536];

	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);
		ssize_t got = pread(c->fd, buf, n, (off_t)c->off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)n || memcmp(buf, d, n)) {
			c->differs = true;
			return -ECANCELED;
		}
		c->off += n;
		d += n;
		len -= n;
	}
	return 0;
}

/*
 * Whether the sandbox's file (remote, which differs from what the dead
 * mount read) is the start of the stage: what an upload cut short by the
 * crash leaves (Daytona's upload truncates the file and writes it as the
 * body comes: FIDELITY), or all of it when the upload landed and the crash
 * came before its record went. Then the upload goes again, over it: else
 * the sandbox would keep the torn file, its data only in unsaved/.
 * Only for a file last written before this mount started (its mtime, by
 * the sandbox's clock, before the scan, by ours): a truncation after the
 * crash (": > f" through this mount before recovery got to the record, or
 * by a command) is a change that must stand, though what it left is the
 * start of the stage too. One by another client before the crash passes
 * (and an upload over it is what the dead mount's close was doing).
 * Costs a download of remote->size bytes, once, after a crash; one byte
 * more is asked for, so that a file that grew since the look fails.
 */
static bool remote_is_prefix(struct recovery *r, const char *name, const struct journal_rec *rec,
			     const struct sp_box *box, const struct journal_remote *remote)
{
	struct sp_error err = { 0 };
	struct prefix_cmp c = { -1, 0, false };
	char *p;
	int64_t got;

	if (rec->state != JOURNAL_FLUSHED || remote->kind != JOURNAL_REMOTE_FILE || remote->size > rec->size)
		return false;
	if (remote->mtime.tv_sec > r->scanned.tv_sec ||
	    (remote->mtime.tv_sec == r->scanned.tv_sec && remote->mtime.tv_nsec >= r->scanned.tv_nsec))
		return false;
	p = stage_path(&r->ctx, name);
	c.fd = p ? open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	free(p);
	if (c.fd < 0)
		return false;
	got = rfs_download(r->ctx.sp, box, rec->path, 0, remote->size + 1, prefix_sink, &c, &err);
	close(c.fd);
	if (got < 0 && !c.differs)
		log_warn("crash recovery: %s: reading %s to compare it: %s", rec->sandbox_name, rec->path, err.message);
	return got == (int64_t)remote->size && !c.differs && c.off == remote->size;
}

/* Uploads the stage; true when done. */
static bool upload(const struct recover_ctx *ctx, const char *name, const struct journal_rec *rec, const struct sp_box *box)
{
	struct sp_error err = { 0 };
	char *p = stage_path(ctx, name);
	struct stat st;
	int fd, rc;

	fd = p ? open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	free(p);
	if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_size != rec->size) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	rc = ctx->upload_fd(ctx->mount, box, rec->path, fd, rec->size, &err);
	close(fd);
	if (rc < 0) {
		log_error("crash recovery: %s: upload of %s failed: %s (it stays staged, to be tried again)",
			  rec->sandbox_name, rec->path, err.message);
		return false;
	}
	/* The toolbox creates files 0644: a new file gets the mode it was made with. */
	if (rec->base.kind == JOURNAL_BASE_NEW && rec->mode != 0644 &&
	    ctx->chmod_path(ctx->mount, box, rec->path, rec->mode, &err) < 0)
		log_warn("crash recovery: %s: chmod %o %s: %s", rec->sandbox_name, rec->mode, rec->path, err.message);
	cache_invalidate(ctx->cache, rec->sandbox_id, rec->path);
	log_warn("crash recovery: %s: %s uploaded (%llu bytes staged before a crash)", rec->sandbox_name,
		 rec->path, (unsigned long long)rec->size);
	return true;
}

/* Moves the stage to unsaved/ and writes the note beside it. */
static void keep_unsaved(const struct recover_ctx *ctx, const char *name, const struct journal_rec *rec, const char *why)
{
	struct strbuf label = STRBUF_INIT, note = STRBUF_INIT, note_path = STRBUF_INIT;
	struct stage *s = NULL;
	char where[4096];
	int rc, fd;

	rc = stage_adopt(ctx->stage, name, &s);
	if (rc < 0) {
		log_error("crash recovery: cannot open staged file %s: %s", name, strerror(-rc));
		return;
	}
	if (rec)
		sb_addf(&label, "%s:%s", rec->sandbox_name, rec->path);
	else
		sb_addf(&label, "recovered:%s", name);
	rc = label.oom ? -ENOMEM : stage_preserve(s, sb_str(&label), where, sizeof(where));
	sb_free(&label);
	if (rc < 0) {
		stage_close_keep(s);   /* still staged: a later mount tries again */
		return;
	}
	stage_free(s);   /* preserved: only closes */
	journal_note(&note, rec, name, why, (long long)time(NULL));
	sb_addf(&note_path, "%s.note", where);
	fd = note.oom || note_path.oom ? -1 : open(sb_str(&note_path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, sb_str(&note), note.len) != (ssize_t)note.len || fsync(fd) != 0)
		log_warn("crash recovery: cannot write the note %s", sb_str(&note_path));
	if (fd >= 0)
		close(fd);
	journal_remove(stage_area_staging(ctx->stage), name);
	log_error("crash recovery: %s%s%s was not uploaded (%s); its content is saved in %s",
		  rec ? rec->sandbox_name : "", rec ? ":" : "", rec ? rec->path : name, why, where);
	sb_free(&note);
	sb_free(&note_path);
}

/* True when the record is done with (uploaded, kept in unsaved/, dropped). */
static bool recover_one(struct recovery *r, const char *name)
{
	const struct recover_ctx *ctx = &r->ctx;
	struct journal_rec *rec = calloc(1, sizeof(*rec));
	struct journal_remote remote;
	struct sp_box box = { NULL, NULL };
	enum journal_action act = JOURNAL_KEEP;
	char why[256], *p = NULL;
	struct stat st;
	bool present, claimed = false;
	int rc;

	if (!rec)
		return false;
	rc = journal_read(stage_area_staging(ctx->stage), name, rec);
	if (rc < 0 && rc != -EBADMSG) {
		log_error("crash recovery: cannot read the record of %s: %s", name, strerror(-rc));
		goto out;
	}
	p = stage_path(ctx, name);
	present = p && lstat(p, &st) == 0 && S_ISREG(st.st_mode);
	act = journal_check_local(rc == 0 ? rec : NULL, present, present ? (uint64_t)st.st_size : 0, why,
				  sizeof(why));
	if (act == JOURNAL_ASK) {
		const struct sb_seen *sb = sandbox_seen(r, rec);

		/* The new mount's changes to the sandbox are held from the look
		 * at the file to the end of its upload (claim): what it changed
		 * before is in what the look sees (its queued changes go first:
		 * settle), what it changes after comes after the upload. Someone
		 * who opened the file through the new mount before recovery got
		 * to it would replace what recovery uploads at their close,
		 * unseen: the data goes to unsaved/. */
		if (sb && sb->answer == SB_STARTED) {
			claimed = ctx->claim(ctx->mount, rec->sandbox_id, rec->path);
			if (!claimed) {
				act = JOURNAL_UNSAVED;
				str_copy(why, sizeof(why),
					 "the file was opened through the new mount before recovery reached it");
			} else {
				ctx->settle(ctx->mount, rec->sandbox_id);
			}
		}
		if (act == JOURNAL_ASK) {
			ask_sandbox(r, rec, sb, &box, &remote);
			act = journal_check_remote(rec, &remote, why, sizeof(why));
			if (act == JOURNAL_UNSAVED && claimed && remote_is_prefix(r, name, rec, &box, &remote)) {
				log_warn("crash recovery: %s: %s in the sandbox is the start of what was staged "
					 "(an upload cut short by the crash): uploading it again",
					 rec->sandbox_name, rec->path);
				act = JOURNAL_UPLOAD;
			}
		}
	}
	switch (act) {
	case JOURNAL_UPLOAD:
		if (upload(ctx, name, rec, &box))
			forget(ctx, name);
		else
			act = JOURNAL_KEEP;
		break;
	case JOURNAL_UNSAVED:
		keep_unsaved(ctx, name, rc == 0 ? rec : NULL, why);
		break;
	case JOURNAL_DROP:
		log_info("crash recovery: %s: %s; record removed", name, why);
		journal_remove(stage_area_staging(ctx->stage), name);
		break;
	case JOURNAL_KEEP:
	case JOURNAL_ASK:
		break;
	}
	if (claimed)
		ctx->claim_done(ctx->mount);
out:
	free(p);
	free(rec);
	/* an unsaved/ move that failed leaves the stage staged: tried again */
	return act != JOURNAL_KEEP && act != JOURNAL_ASK && !(act == JOURNAL_UNSAVED && access_stage(ctx, name));
}

static bool stopping(struct recovery *r)
{
	bool stop;

	pthread_mutex_lock(&r->lock);
	stop = r->stop;
	pthread_mutex_unlock(&r->lock);
	return stop;
}

static void *recover_main(void *arg)
{
	struct recovery *r = arg;
	size_t left;

	for (;;) {
		left = 0;
		pthread_mutex_lock(&r->lock);
		r->woken = false;
		pthread_mutex_unlock(&r->lock);
		seen_clear(r);   /* a new pass asks again */
		for (size_t i = 0; i < r->n && !stopping(r); i++) {
			if (!r->names[i])
				continue;
			if (recover_one(r, r->names[i])) {
				free(r->names[i]);
				r->names[i] = NULL;
			} else {
				left++;
			}
		}
		if (!left)
			break;
		pthread_mutex_lock(&r->lock);
		if (!r->stop) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += RETRY_S;
			while (!r->stop && !r->woken &&
			       pthread_cond_timedwait(&r->wake, &r->lock, &until) != ETIMEDOUT)
				;
		}
		if (r->stop) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		pthread_mutex_unlock(&r->lock);
	}
	if (left)
		log_warn("crash recovery: %zu staged file(s) stay in %s for a later mount", left,
			 stage_area_staging(r->ctx.stage));
	return NULL;
}

void recover_start(struct recovery *r)
{
	if (!r)
		return;
	r->started = pthread_create(&r->thread, NULL, recover_main, r) == 0;
	if (!r->started)
		log_error("crash recovery: cannot start its thread; the staged files stay for a later mount");
}

void recover_wake(struct recovery *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->woken = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
}

void recover_stop(struct recovery *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	if (r->started)
		pthread_join(r->thread, NULL);
	journal_names_free(r->names, r->n);
	seen_clear(r);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
