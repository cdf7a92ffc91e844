/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec_stdin.c - a command's stdin: writes buffered per command and
 * delivered in batches by a sender thread, and its close.
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

/* ---- stdin ---------------------------------------------------------------------- */

/* One batch into the command's stdin pipe: one /process/execute. id: the
 * batch's client token; done: the one before (NULL: none). */
static int stdin_deliver(struct exec_mgr *m, const struct sp_box *db, unsigned n, const char *id,
			 const char *done, const char *data, size_t len, struct sp_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX];
	char *out = NULL;
	int rc, code = 0;

	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return sp_error_set(err, rc, 0, "state directory path too long");
	rc = exec_build_stdin_write(&script, dir, id, done, data, len);
	if (rc < 0) {
		rc = sp_error_set(err, rc, 0, "out of memory");
		goto out;
	}
	rc = sp_exec_activity(m->sp, db, script.buf, NULL, NULL, 0, STDIN_TIMEOUT_S, &code, &out, err);
	if (rc == -ETIMEDOUT) {
		rc = sp_error_set(err, rc, 0, "command %u did not read its stdin for %d s", n,
				  STDIN_TIMEOUT_S);
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = exec_parse_stdin_reply(out);
	if (rc == -EPIPE)
		sp_error_set(err, rc, 0, "command %u has ended or closed its stdin", n);
	else if (rc == -EBADF)
		sp_error_set(err, rc, 0, "command %u has no stdin pipe", n);
	else if (rc < 0)
		sp_error_set(err, rc, 0, "writing to the stdin of command %u: %.200s", n, out ? out : "");
out:
	sb_free(&script);
	free(out);
	return rc;
}

int stdin_eof(struct exec_mgr *m, const struct sp_box *db, unsigned n, struct sp_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX];
	char *out = NULL;
	int rc, code = 0;

	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return sp_error_set(err, rc, 0, "state directory path too long");
	exec_build_stdin_close(&script, dir);
	if (script.oom)
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
	else
		rc = sp_exec_activity(m->sp, db, script.buf, NULL, NULL, 0, KILL_TIMEOUT_S, &code, &out, err);
	if (rc == 0 && exec_parse_stdin_reply(out) != 0)
		rc = sp_error_set(err, -EIO, 0, "closing the stdin of command %u: %.200s", n, out ? out : "");
	sb_free(&script);
	free(out);
	return rc;
}

/*
 * The sender of a command's stdin: delivers what is buffered, one batch per
 * request, in order, then EOF when asked. Whatever arrives while a batch is
 * in flight goes in the next one, so many small writes cost few requests.
 */
static void *sender_main(void *arg)
{
	struct worker_arg *wa = arg;
	struct exec_mgr *m = wa->m;
	struct ebox *b = wa->b;
	struct ecmd *c = wa->c;

	free(wa);
	pthread_mutex_lock(&m->lock);
	while (!m->stopping && !b->dead) {
		struct sp_error err = { 0 };
		struct box_copy bc;
		int rc;

		if (c->in_buf.len && !c->in_err && !c->ended) {
			struct strbuf batch = c->in_buf;
			char id[64], done[64];

			memset(&c->in_buf, 0, sizeof(c->in_buf));
			c->in_flight = true;
			box_copy(b, &bc);
			next_token(m, 's', id, sizeof(id));
			str_copy(done, sizeof(done), c->in_done);
			pthread_mutex_unlock(&m->lock);
			rc = stdin_deliver(m, &bc.db, c->n, id, done[0] ? done : NULL, batch.buf, batch.len, &err);
			sb_free(&batch);
			pthread_mutex_lock(&m->lock);
			c->in_flight = false;
			if (rc == 0)
				str_copy(c->in_done, sizeof(c->in_done), id);
			if (rc < 0) {
				log_info("exec: %s", err.message);
				c->in_err = rc;
				sb_free(&c->in_buf);
				if (rc == -EBADF)
					c->with_stdin = false;
			}
			pthread_cond_broadcast(&c->in_cv);
			continue;
		}
		if (c->in_close && !c->stdin_eof && !c->ended && c->with_stdin) {
			box_copy(b, &bc);
			pthread_mutex_unlock(&m->lock);
			rc = stdin_eof(m, &bc.db, c->n, &err);
			pthread_mutex_lock(&m->lock);
			if (rc == 0) {
				c->stdin_eof = true;
			} else {
				log_info("exec: %s", err.message);
				c->close_err = rc;
				c->in_close = false;
			}
			pthread_cond_broadcast(&c->in_cv);
			continue;
		}
		break;
	}
	if (m->stopping || b->dead)
		sb_free(&c->in_buf);
	c->sender_on = false;
	pthread_cond_broadcast(&c->in_cv);
	worker_exit(m, b);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* Lock held. */
static int sender_ensure(struct exec_mgr *m, struct ebox *b, struct ecmd *c)
{
	int rc;

	if (c->sender_on)
		return 0;
	workers_reap(m);
	rc = worker_start(m, b, c, sender_main);
	if (rc == 0)
		c->sender_on = true;
	return rc;
}

/* Lock held. Whether more input may be written to c. */
static int stdin_writable(const struct ecmd *c, unsigned n, struct sp_error *err)
{
	if (c->in_err == -EBADF || (c->known && !c->with_stdin))
		return sp_error_set(err, -EBADF, 0, "command %u has no stdin pipe", n);
	if (c->in_err)
		return sp_error_set(err, c->in_err, 0, "command %u: stdin failed: %s", n, strerror(-c->in_err));
	if (c->ended || c->stdin_eof || c->in_close)
		return sp_error_set(err, -EPIPE, 0, "command %u: stdin is closed", n);
	return 0;
}

ssize_t exec_stdin_write(struct exec_mgr *m, const struct sp_box *box, unsigned n, const void *buf,
			 size_t size, struct sp_error *err)
{
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	size_t old;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	/* A full buffer waits for the sender, as a full pipe would. */
	while ((rc = stdin_writable(c, n, err)) == 0 && c->in_buf.len >= STDIN_BUF_MAX) {
		if (m->stopping || b->dead) {
			rc = sp_error_set(err, -EPIPE, 0, "command %u: stdin is closed", n);
			break;
		}
		if (interrupted(m)) {
			rc = sp_error_set(err, -EINTR, 0, "interrupted");
			break;
		}
		timed_wait(&c->in_cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	}
	if (rc == 0 && size) {
		old = c->in_buf.len;
		sb_add(&c->in_buf, buf, size);
		if (c->in_buf.oom) {
			c->in_buf.len = old;
			c->in_buf.oom = false;
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
		} else if (sender_ensure(m, b, c) < 0) {
			c->in_buf.len = old;
			rc = sp_error_set(err, -EAGAIN, 0, "cannot start a thread");
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc < 0 ? rc : (ssize_t)size;
}

int exec_stdin_flush(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err)
{
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	while ((c->in_buf.len || c->in_flight) && !c->in_err && !m->stopping && !b->dead) {
		if (interrupted(m)) {
			rc = sp_error_set(err, -EINTR, 0, "interrupted");
			break;
		}
		timed_wait(&c->in_cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	}
	if (rc == 0 && c->in_err)
		rc = sp_error_set(err, c->in_err, 0, "command %u: stdin failed: %s", n, strerror(-c->in_err));
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_stdin_close(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err)
{
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	if (c->known && !c->with_stdin) {
		rc = sp_error_set(err, -EBADF, 0, "command %u has no stdin pipe", n);
		goto out;
	}
	if (c->stdin_eof || c->ended)
		goto out;
	c->in_close = true;
	c->close_err = 0;
	rc = sender_ensure(m, b, c);
	if (rc < 0) {
		c->in_close = false;
		rc = sp_error_set(err, rc, 0, "cannot start a thread");
		goto out;
	}
	/* Everything written goes first, then EOF. Not interruptible: it is
	 * what a close does, and it ends. */
	while (c->sender_on && !c->stdin_eof && !c->ended && !m->stopping && !b->dead)
		timed_wait(&c->in_cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	if (!c->stdin_eof && !c->ended) {
		rc = c->close_err ? c->close_err : -EIO;
		sp_error_set(err, rc, 0, "command %u: closing stdin failed: %s", n, strerror(-rc));
	}
out:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}
