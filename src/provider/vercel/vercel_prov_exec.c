/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_prov_exec.c - commands of the Vercel provider: a script runs
 * under a wrapper that brings its merged output back as base64 (the log
 * stream is UTF-8 text), in one POST cmd with wait and logs.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"
#include "tmpname.h"
#include "urlenc.h"
#include "vercel_bulk.h"
#include "vercel_prov_int.h"
#include "vercel_provider.h"

/* ---- commands ---------------------------------------------------------------- */

/*
 * The wrapper (sh -c WRAPPER sh SCRIPT): SCRIPT's merged output goes to a
 * temporary file, never to the UTF-8 log stream (a file, not a pipe: a
 * process the script leaves running may keep its output open); the file
 * lives under /tmp/.daytonafs (where command state lives anyway), so that
 * a listing of /tmp does not show it; then that file as base64,
 * and a last line ".STATUS". A missing last line means the output is not
 * whole (killed at the time limit, or no base64). Its variables are named
 * _df*, as the launcher's (exec_script.c): SCRIPT inherits them, and a
 * variable of the sandbox's environment named t would reach the command
 * as the temporary file's name.
 */
const char vercel_exec_wrapper[] =
	"mkdir -p /tmp/.daytonafs/out 2>/dev/null\n"
	"_dft=$(mktemp /tmp/.daytonafs/out/XXXXXXXX 2>/dev/null || mktemp) || { echo 'daytonafs: mktemp failed' >&2; exit 125; }\n"
	"sh -c \"$1\" >\"$_dft\" 2>&1 </dev/null\n"
	"_dfr=$?\n"
	"base64 \"$_dft\" && echo \".$_dfr\"\n"
	"_dfs=$?\n"
	"rm -f \"$_dft\"\n"
	"[ $_dfs = 0 ] || exit 125\n"
	"exit $_dfr\n";

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

/*
 * Script files whose command's request failed: the command removes its file
 * when it runs, but one that never started (a 502, a reset before the
 * sandbox had it) leaves it in /tmp/.daytonafs/out, up to the size of a
 * shared upload, for each failed send. The next command to that sandbox
 * removes them first (and a send that was still to start then never does:
 * the mount gave up on it). Bounded: beyond it the oldest are forgotten
 * (their files stay).
 */
#define LEFTOVERS_MAX 64

struct leftover {
	char box[SP_ID_SIZE];
	char path[128];
};

static pthread_mutex_t leftover_mu = PTHREAD_MUTEX_INITIALIZER;
static struct leftover leftovers[LEFTOVERS_MAX];
static size_t n_leftovers;

static const char *box_id(const struct sp_box *box)
{
	return box && box->id ? box->id : "";
}

static void leftover_add(const struct sp_box *box, const char *path)
{
	pthread_mutex_lock(&leftover_mu);
	if (n_leftovers == LEFTOVERS_MAX)
		memmove(leftovers, leftovers + 1, --n_leftovers * sizeof(*leftovers));
	snprintf(leftovers[n_leftovers].box, sizeof(leftovers[n_leftovers].box), "%s", box_id(box));
	snprintf(leftovers[n_leftovers].path, sizeof(leftovers[n_leftovers].path), "%s", path);
	n_leftovers++;
	pthread_mutex_unlock(&leftover_mu);
}

/* Appends "rm -f -- FILES" of box's leftovers to cmd; how many (the count
 * for leftover_done: the ones added since are later in the list). */
static size_t leftover_take(const struct sp_box *box, struct strbuf *cmd)
{
	size_t n = 0;

	pthread_mutex_lock(&leftover_mu);
	for (size_t i = 0; i < n_leftovers; i++) {
		if (strcmp(leftovers[i].box, box_id(box)))
			continue;
		sb_adds(cmd, n++ ? " " : "rm -f -- ");
		sh_word(cmd, leftovers[i].path);
	}
	if (n)
		/* silent: the fence's line must come first in the output */
		sb_adds(cmd, " 2>/dev/null\n");
	pthread_mutex_unlock(&leftover_mu);
	return n;
}

/* The first n leftovers of box are gone (their command ran). */
static void leftover_done(const struct sp_box *box, size_t n)
{
	size_t j = 0;

	pthread_mutex_lock(&leftover_mu);
	for (size_t i = 0; i < n_leftovers; i++) {
		if (n && !strcmp(leftovers[i].box, box_id(box)))
			n--;
		else
			leftovers[j++] = leftovers[i];
	}
	n_leftovers = j;
	pthread_mutex_unlock(&leftover_mu);
}

/* A fence that could not be written, said at most once a minute: every
 * command of the sandbox carries it until it is. */
static void fence_warn(const struct sp_box *box)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static time_t last;
	time_t now = time(NULL);
	bool say;

	pthread_mutex_lock(&mu);
	say = !last || now - last >= 60 || now < last;
	if (say)
		last = now;
	pthread_mutex_unlock(&mu);
	if (say)
		log_warn("sandbox %s: the fence of an upload that may still land could not be written "
			 "(a full disk?); commands run anyway, and a late send of that upload may write "
			 "over what they did", box_id(box));
}

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
	struct strbuf indirect = STRBUF_INIT, fenced = STRBUF_INIT;
	int rc, status = -1, attempts = 0;
	char *text = NULL, sid[SP_ID_SIZE], path[128] = "";
	uint64_t fence;
	size_t removes;

	if (output)
		*output = NULL;
	if (exit_code)
		*exit_code = -1;
	if (!env)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	vp_session_of(v, box, sid, sizeof(sid));
	if (!sid[0]) {
		free(env);
		return vp_no_session(err, box);
	}
	/* After an upload that may still have a send on its way, the fence of
	 * its paths goes first, whatever this command is: every change of the
	 * mount that follows it is then ordered after that send (vercel_bulk.c). */
	removes = leftover_take(box, &fenced);
	fence = vercel_upload_fence(box, &fenced);
	if (fence || removes) {
		sb_adds(&fenced, script);
		if (fenced.oom) {
			free(env);
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		script = fenced.buf;
		args[3] = script;
	}
	if (strlen(script) > VC_SCRIPT_ARG_MAX) {
		/* Linux takes no single argument over 128 KiB (MAX_ARG_STRLEN):
		 * a longer script (stdin data, a long batch) goes as a file,
		 * which the command runs and removes. */
		int wattempts = 0;

		/* pid and random bits: another mount's daemon may have our pid. */
		tmp_name(path, sizeof(path), "/tmp/.daytonafs/out/script");
		do
			rc = vc_fs_write_mem(v->vc, sid, path, script, strlen(script), 0600, &ve);
		while (vp_retry_moved(v, box, rc, &ve, sid, sizeof(sid), &wattempts));
		if (rc < 0) {
			/* (a write cut short may have left a part) */
			leftover_add(box, path);
			free(env);
			vp_from_vc(err, rc, &ve);
			goto out;
		}
		/* _df names, as the wrapper's: the script inherits them. */
		sb_addf(&indirect, "_dff=%s; sh \"$_dff\"; _dfr=$?; rm -f \"$_dff\"; exit $_dfr", path);
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
	} while (vp_retry_moved(v, box, rc, &ve, sid, sizeof(sid), &attempts));
	free(env);
	if (rc < 0 && path[0])
		leftover_add(box, path);
	if (rc < 0) {
		/* 410 or a stopped stream: the session is gone (EHOSTDOWN). */
		vp_from_vc(err, rc, &ve);
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
	/* The script ran (its status came back): so did its rm of leftovers
	 * and its fence, unless the fence's line says it could not be written:
	 * it then goes again with the next command, which does no harm (the
	 * command itself ran: see fence_head in vercel_bulk.c for why). */
	leftover_done(box, removes);
	if (fence) {
		if (vercel_upload_fence_result(text) == 0)
			vercel_upload_fence_done(box, fence);
		else
			fence_warn(box);
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
	sb_free(&fenced);
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

int vp_exec(void *impl, const struct sp_box *box, const char *command, const char *cwd,
	    const struct sp_kv *envs, size_t n_envs, long timeout_s, int *exit_code, char **output,
	    struct sp_error *err)
{
	return run(impl, box, command, cwd, envs, n_envs, timeout_s, http_ms(impl, timeout_s), exit_code, output, err);
}

int vp_exec_within(void *impl, const struct sp_box *box, const char *command, const char *cwd,
		   long limit_s, int *exit_code, char **output, struct sp_error *err)
{
	/* The sandbox kills it when the mount stops waiting (limit_s). */
	return run(impl, box, command, cwd, NULL, 0, limit_s, limit_s > 0 ? limit_s * 1000 : 0, exit_code, output,
		   err);
}
