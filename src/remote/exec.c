/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec.c - commands run in sandboxes, with their output as files.
 *
 * See exec.h for the layout of STATE_DIR/cmd/N. This file has four parts:
 *  - the shell scripts (pure: built from the spec, unit-tested, and run by
 *    the unit tests under dash and bash);
 *  - the in-memory model: per sandbox (struct ebox) the known commands
 *    (struct ecmd), behind one mutex that is never held across a request;
 *  - the workers: a poller thread per command, alive only while someone
 *    waits on that command, or for a while after this mount started it (to
 *    call on_end promptly); each poll is one listing of cmd/N. And a stdin
 *    sender per command while written input is buffered.
 *  - the API.
 *
 * Why files and ranged downloads: /process/execute merges stdout and stderr
 * and turns invalid UTF-8 into U+FFFD, and session logs add a newline to
 * every line and lose NULs. A file in the sandbox holds exactly what the
 * command wrote, a ranged download returns exactly those bytes (binary
 * safe, any size, with memory bounded by the read size), and a listing of
 * the command's directory gives both streams' sizes and whether it ended in
 * one request, which is what waiting costs.
 */
#include "exec.h"

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

#define EXEC_PATH_MAX 4096
#define WAIT_SLICE_MS 100        /* how often blocked waits look at o->interrupted */
#define LAUNCH_TIMEOUT_S 30      /* the launcher returns in well under a second */
#define KILL_TIMEOUT_S 30
#define RECONCILE_TIMEOUT_S 30
#define RECONCILE_RETRY_MS 10000 /* after a failed check of the sandbox's processes */
/* A batch of stdin waits this long in the sandbox for the command to take
 * it (the pipe holds 64 KiB); then it fails with ETIMEDOUT. */
#define STDIN_TIMEOUT_S 120
#define STDIN_BUF_MAX (1u << 20) /* buffered stdin per command; also the largest batch */
/* A command this mount started is polled while nobody waits on it only to
 * call on_end (the cache invalidation) soon after it ends: the interval
 * doubles up to IDLE_POLL_MAX_MS, and stops IDLE_WATCH_MS after the start
 * (or the last waiter). Later ends are noticed at the next look. */
#define IDLE_POLL_MAX_MS 30000
#define IDLE_WATCH_MS (5 * 60 * 1000)
#define SMALL_FILE_MAX 4096      /* exit, state */
#define COMMAND_TEXT_MAX (16u << 20)

/* ---- scripts -------------------------------------------------------------- */

static bool env_key_valid(const char *k)
{
	if (!k || !(*k == '_' || (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z')))
		return false;
	for (k++; *k; k++)
		if (!(*k == '_' || (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
		      (*k >= '0' && *k <= '9')))
			return false;
	return true;
}

/*
 * stdin. The command reads the FIFO stdin.pipe. A holder process (a sleep
 * whose stdin is the FIFO, opened read-write) keeps a writer on it, so the
 * command sees EOF only once the holder is gone: stdin is closed by killing
 * the holder, and the wrapper kills it when the command ends. Each batch of
 * input is written into the FIFO by one /process/execute. Waiting for input
 * costs nothing: no polling, no requests, one sleeping process. Without a
 * FIFO (mkfifo failed) stdin is /dev/null.
 *
 * The wrapper opens the FIFO read-write first (which never blocks on Linux),
 * so that neither the holder's nor the command's open blocks, and lets go of
 * it once both have it.
 */
static const char wrapper_stdin[] =
	"i=/dev/null; h=\n"
	"if [ -p \"$d/stdin.pipe\" ] && command exec 3<>\"$d/stdin.pipe\"; then\n"
	"\tsleep 2147483647 <&3 >/dev/null 2>&1 3>&- & h=$!\n"
	"\techo $h >\"$d/stdin.holder\"\n"
	"\ti=$d/stdin.pipe\n"
	"fi\n";

/*
 * The watchdog of a timeout. It is not in the command's process group (the
 * command is setsid'd into its own), so killing that group spares it and the
 * wrapper, which then records the exit status. The wrapper kills the
 * watchdog when the command ends first; once the watchdog has fired it
 * ignores that, to send the SIGKILL 2 s later to what is left of the group.
 */
static const char wrapper_watchdog_fmt[] =
	"(\n"
	"\tsleep %ld & z=$!\n"
	"\ttrap 'kill $z 2>/dev/null; exit 0' TERM\n"
	"\twait $z\n"
	"\t[ -e \"$d/exit\" ] && exit 0\n"
	"\ttrap '' TERM\n"
	"\techo timedout >\"$d/state\"\n"
	"\tkill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null\n"
	"\tsleep 2\n"
	"\tkill -KILL -$p 2>/dev/null || kill -KILL $p 2>/dev/null\n"
	") & w=$!\n";

int exec_build_wrapper(struct strbuf *sb, const struct exec_spec *spec)
{
	size_t i;

	for (i = 0; i < spec->n_env; i++)
		if (!env_key_valid(spec->env[i].key) || !spec->env[i].value)
			return -EINVAL;
	/* Written for sh (dash or bash as sh): it runs under "sh", whatever
	 * shell the toolbox's /process/execute uses. */
	sb_adds(sb, "d=$1\n"
		"r=$(command -v bash) || r=$(command -v sh) || r=/bin/sh\n"
		"s=$(command -v setsid) || s=\n");
	sb_adds(sb, wrapper_stdin);
	/* The environment as assignments before the command word: they reach
	 * the command only, not the wrapper's own tools (a PATH=... must not
	 * change which mv the wrapper runs). $s and $r are absolute paths, as
	 * the shell would look them up in such a PATH. */
	for (i = 0; i < spec->n_env; i++) {
		sb_adds(sb, spec->env[i].key);
		sb_addc(sb, '=');
		sh_quote(sb, spec->env[i].value);
		sb_addc(sb, ' ');
	}
	/* setsid: the command gets a process group of its own (its pid), so a
	 * kill of the group reaches everything it started and nothing else. */
	sb_adds(sb, "$s $r \"$d/command\" <\"$i\" 3>&- >>\"$d/stdout\" 2>>\"$d/stderr\" & p=$!\n"
		"[ -n \"$h\" ] && exec 3>&-\n"
		"echo $p >\"$d/pgid.tmp\" && mv -f \"$d/pgid.tmp\" \"$d/pgid\"\n");
	if (spec->timeout_s > 0)
		sb_addf(sb, wrapper_watchdog_fmt, spec->timeout_s);
	sb_adds(sb, "wait $p; c=$?\n");
	if (spec->timeout_s > 0)
		/* As timeout(1): 124 says the time ran out. */
		sb_adds(sb, "kill $w 2>/dev/null\n"
			"[ \"$(cat \"$d/state\" 2>/dev/null)\" = timedout ] && c=124\n");
	/* exit last, and atomically: its existence means the streams are
	 * final. Then the holder goes: a write still in flight fails (EPIPE)
	 * rather than wait for a reader that will never come. */
	sb_adds(sb, "echo $c >\"$d/exit.tmp\" && mv -f \"$d/exit.tmp\" \"$d/exit\"\n"
		"[ -n \"$h\" ] && kill $h 2>/dev/null\n"
		"exit 0\n");
	return sb->oom ? -ENOMEM : 0;
}

/* Adds: printf %s 'BASE64' | base64 -d */
static void add_decoder(struct strbuf *sb, const void *data, size_t len)
{
	sb_adds(sb, "printf %s '");
	base64_encode(sb, data, len);
	sb_adds(sb, "' | base64 -d");
}

/* A client token: 1 to 64 of [A-Za-z0-9_-], safe in a path and in a script. */
static bool token_valid(const char *t)
{
	size_t n = t ? strlen(t) : 0;

	if (n == 0 || n > 64)
		return false;
	for (; *t; t++)
		if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
		      *t == '_' || *t == '-'))
			return false;
	return true;
}

/*
 * A script whose request the proxy may send twice (FIDELITY D7: the proxy
 * and the runner re-send a body up to 256 KiB once after a stale
 * connection, and the first may have run) claims its client token with
 * mkdir, which only one run wins. The loser is the replay: it waits for the
 * winner's answer (up to wait_s) and prints it, doing nothing else. The
 * winner's answers go through say, which also records them. $t is the
 * claim directory.
 */
static void add_claim(struct strbuf *sb, long wait_s)
{
	sb_addf(sb, "if ! mkdir \"$t\" 2>/dev/null; then\n"
		"\ti=0\n"
		"\twhile [ ! -e \"$t/answer\" ] && [ $i -lt %ld ]; do sleep 0.05; i=$((i+1)); done\n"
		"\tcat \"$t/answer\" 2>/dev/null || echo 'daytonafs-error replay'\n"
		"\texit 0\n"
		"fi\n"
		"say() { echo \"$1\"; echo \"$1\" >\"$t/answer.tmp\" && mv -f \"$t/answer.tmp\" \"$t/answer\"; }\n",
		wait_s * 20);
}

/*
 * The launcher is fed to the toolbox's shell, which may be zsh, bash or sh,
 * so it keeps to what all three read alike. Everything taken from the user
 * (command, wrapper with its environment, cwd) travels in base64, so any byte
 * survives JSON (which would turn invalid UTF-8 into U+FFFD) and quoting.
 * mkdir without -p claims the number: a mount that collides with another
 * one simply takes the next number. STATE_DIR/launch/TOKEN makes a replay
 * of the request start nothing (add_claim); claims over 10 minutes old go.
 */
int exec_build_launcher(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			const struct exec_spec *spec)
{
	struct strbuf wrapper = STRBUF_INIT;
	const char *cmd = spec->command ? spec->command : "";
	int rc;

	if (!token_valid(token))
		return -EINVAL;
	rc = exec_build_wrapper(&wrapper, spec);
	if (rc < 0)
		goto out;
	sb_adds(sb, "S=");
	sh_quote(sb, state_dir);
	sb_adds(sb, "\ncase $S in /*) ;; *) S=$PWD/$S ;; esac\n"
		"mkdir -p \"$S/cmd\" \"$S/launch\" 2>/dev/null\n"
		"[ -d \"$S/cmd\" ] && [ -d \"$S/launch\" ] || { echo 'daytonafs-error state directory'; exit 0; }\n");
	sb_addf(sb, "t=$S/launch/%s\n", token);
	add_claim(sb, LAUNCH_TIMEOUT_S - 5);
	sb_adds(sb, "find \"$S/launch\" -mindepth 1 -maxdepth 1 -mmin +10 -exec rm -rf {} + 2>/dev/null\n");
	if (spec->cwd && *spec->cwd) {
		/* The x keeps a trailing newline of the name from $(...). */
		sb_adds(sb, "c=$(");
		add_decoder(sb, spec->cwd, strlen(spec->cwd));
		sb_adds(sb, "; echo x); c=${c%x}\n"
			"cd -- \"$c\" 2>/dev/null || { say 'daytonafs-error cwd'; exit 0; }\n");
	}
	sb_addf(sb, "n=%u; i=0\n", first);
	sb_adds(sb, "while ! mkdir \"$S/cmd/$n\" 2>/dev/null; do\n"
		"\ti=$((i+1)); n=$((n+1))\n"
		"\tif [ $i -ge 1000 ]; then say 'daytonafs-error mkdir'; exit 0; fi\n"
		"done\n"
		"d=$S/cmd/$n\n"
		"if ");
	add_decoder(sb, cmd, strlen(cmd));
	sb_adds(sb, " >\"$d/command\" && ");
	add_decoder(sb, wrapper.buf, wrapper.len);
	sb_adds(sb, " >\"$d/run\" && : >\"$d/stdout\" && : >\"$d/stderr\"");
	/* A half-made command gets an exit, so it does not look running forever. */
	sb_adds(sb, "; then :; else\n"
		"\techo 'daytonafs: could not set up the command' >>\"$d/stderr\"\n"
		"\techo 127 >\"$d/exit\"; say \"daytonafs-error setup $n\"; exit 0\n"
		"fi\n"
		/* Without a FIFO the command's stdin is /dev/null. */
		"mkfifo \"$d/stdin.pipe\" 2>/dev/null\n"
		"if command -v setsid >/dev/null 2>&1; then\n"
		"\tsetsid sh \"$d/run\" \"$d\" >/dev/null 2>&1 </dev/null &\n"
		"else\n"
		"\tsh \"$d/run\" \"$d\" >/dev/null 2>&1 </dev/null &\n"
		"fi\n"
		"echo $! >\"$d/wpid\"\n"
		/* Started means the command has its process group: kill works from now. */
		"i=0\n"
		"while [ ! -e \"$d/pgid\" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n"
		"say \"daytonafs-started $n\"\n");
	rc = sb->oom ? -ENOMEM : 0;
out:
	sb_free(&wrapper);
	return rc;
}

/*
 * Whether the wrapper of the record $d still runs: its pid is alive (not a
 * zombie: in a container whose init does not reap, the dead stay) and, when
 * /proc tells, runs $d's run script (after a restart of the sandbox the pid
 * may belong to anything). Unknown counts as alive: a record is ended only
 * on evidence. Sets w to the pid ("" when not recorded).
 */
static const char alive_fn[] =
	"alive() {\n"
	"\tw=$(cat \"$d/wpid\" 2>/dev/null)\n"
	"\tcase $w in ''|*[!0-9]*) w=; return 0 ;; esac\n"
	"\tkill -0 \"$w\" 2>/dev/null || return 1\n"
	"\tz=$(cat \"/proc/$w/stat\" 2>/dev/null); z=${z##*) }\n"
	"\tcase $z in Z*|X*) return 1 ;; esac\n"
	"\tcase $(tr '\\000' ' ' <\"/proc/$w/cmdline\" 2>/dev/null) in\n"
	"\t''|*\"/cmd/${d##*/}/run\"*) return 0 ;;\n"
	"\tesac\n"
	"\treturn 1\n"
	"}\n"
	/* Ends the record as killed by the restart. */
	"orphan() {\n"
	"\t[ -s \"$d/state\" ] || echo killed >\"$d/state\"\n"
	"\techo 137 >\"$d/exit.$$\" && mv -f \"$d/exit.$$\" \"$d/exit\"\n"
	"}\n";

/* "sh -c 'SCRIPT'": the toolbox shell may be zsh, whose kill and case differ. */
static void add_sh_c(struct strbuf *sb, const struct strbuf *script)
{
	if (script->oom) {
		sb->oom = true;
		return;
	}
	sb_adds(sb, "sh -c ");
	sh_quote(sb, script->buf);
}

/* d=DIR, made absolute as the launcher made STATE_DIR. */
static void add_dir(struct strbuf *sb, const char *var, const char *dir)
{
	sb_adds(sb, var);
	sb_addc(sb, '=');
	sh_quote(sb, dir);
	sb_addf(sb, "\ncase $%s in /*) ;; *) %s=$PWD/$%s ;; esac\n", var, var, var);
}

/*
 * The kill script. state is written first, so that the exit the wrapper
 * records reads as "killed". When the wrapper is gone (the sandbox was
 * restarted under it), its pids mean nothing now: nothing is signalled and
 * the record is ended here. It returns once the command has ended, or 3 s
 * after the TERM (the KILL comes at 2 s).
 */
static const char kill_script[] =
	"if [ -e \"$d/exit\" ]; then echo daytonafs-ended; exit 0; fi\n"
	"i=0\n"
	"while [ ! -s \"$d/pgid\" ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done\n"
	"p=$(cat \"$d/pgid\" 2>/dev/null)\n"
	"case $p in ''|*[!0-9]*) p= ;; esac\n"
	"if [ -z \"$p\" ] || ! alive; then\n"
	"\t[ -e \"$d/exit\" ] || orphan\n"
	"\techo daytonafs-killed; exit 0\n"
	"fi\n"
	"echo killed >\"$d/state\"\n"
	"if kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; then\n"
	"\tk='sleep 2; kill -KILL -$1 2>/dev/null || kill -KILL $1 2>/dev/null'\n"
	"\tif command -v setsid >/dev/null 2>&1; then\n"
	"\t\tsetsid sh -c \"$k\" sh $p >/dev/null 2>&1 </dev/null &\n"
	"\telse\n"
	"\t\tsh -c \"$k\" sh $p >/dev/null 2>&1 </dev/null &\n"
	"\tfi\n"
	/* Done when it has ended (usually at once; 2 s for one that ignores
	 * TERM), so that status says "killed" after the write. */
	"\ti=0\n"
	"\twhile [ ! -e \"$d/exit\" ] && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done\n"
	"fi\n"
	"echo daytonafs-killed\n";

/* An sh -c of: var=dir, the alive function, then body. */
static void build_alive_script(struct strbuf *sb, const char *var, const char *dir, const char *body)
{
	struct strbuf script = STRBUF_INIT;

	add_dir(&script, var, dir);
	sb_adds(&script, alive_fn);
	sb_adds(&script, body);
	add_sh_c(sb, &script);
	sb_free(&script);
}

void exec_build_kill(struct strbuf *sb, const char *cmd_dir)
{
	build_alive_script(sb, "d", cmd_dir, kill_script);
}

/*
 * Fed to the toolbox shell directly (not sh -c: the data would exceed the
 * kernel's limit on one argument), so it keeps to what zsh, bash and sh read
 * alike. The FIFO has readers while the command runs (the holder and the
 * command), so the open does not block; a full pipe blocks the write until
 * the command reads (STDIN_TIMEOUT_S). cmd_dir/stdin.b.ID claims the batch,
 * so that a replay of the request does not feed it twice (add_claim); the
 * claim of the batch before (done_id), whose answer has come, goes.
 */
int exec_build_stdin_write(struct strbuf *sb, const char *cmd_dir, const char *batch_id, const char *done_id,
			   const void *data, size_t len)
{
	if (!token_valid(batch_id) || (done_id && !token_valid(done_id)))
		return -EINVAL;
	add_dir(sb, "d", cmd_dir);
	sb_addf(sb, "t=$d/stdin.b.%s\n", batch_id);
	/* No record: nothing to claim in, and nothing to feed (nostdin below). */
	sb_adds(sb, "if [ -d \"$d\" ]; then\n");
	add_claim(sb, STDIN_TIMEOUT_S - 5);
	sb_adds(sb, "else say() { echo \"$1\"; }; fi\n");
	if (done_id)
		sb_addf(sb, "rm -rf \"$d/stdin.b.%s\" 2>/dev/null\n", done_id);
	sb_adds(sb, "if [ -e \"$d/exit\" ]; then say daytonafs-ended\n"
		"elif [ -e \"$d/stdin.eof\" ]; then say daytonafs-closed\n"
		"elif [ ! -p \"$d/stdin.pipe\" ]; then say daytonafs-nostdin\n"
		"elif ");
	add_decoder(sb, data, len);
	sb_adds(sb, " >\"$d/stdin.pipe\"; then say daytonafs-written\n"
		"else say daytonafs-failed\n"
		"fi\n");
	return sb->oom ? -ENOMEM : 0;
}

/*
 * EOF: the holder goes. Its pid is checked to hold a stdin.pipe (after a
 * restart of the sandbox the number may be anyone's); when /proc cannot tell,
 * a running command's holder is taken to be alive. stdin.eof records it for
 * other mounts, and stops later writes.
 */
static const char stdin_close_script[] =
	"[ -e \"$d/stdin.eof\" ] || : >\"$d/stdin.eof\"\n"
	"h=$(cat \"$d/stdin.holder\" 2>/dev/null)\n"
	"case $h in ''|*[!0-9]*) h= ;; esac\n"
	"if [ -n \"$h\" ] && [ ! -e \"$d/exit\" ]; then\n"
	"\tif [ ! -d /proc/self ]; then\n"
	"\t\tkill $h 2>/dev/null\n"
	"\telif [ -d \"/proc/$h\" ]; then\n"
	"\t\tcase $(readlink \"/proc/$h/fd/0\" 2>/dev/null) in\n"
	"\t\t''|*/stdin.pipe) kill $h 2>/dev/null ;;\n"
	"\t\tesac\n"
	"\tfi\n"
	"fi\n"
	"echo daytonafs-closed\n";

void exec_build_stdin_close(struct strbuf *sb, const char *cmd_dir)
{
	struct strbuf script = STRBUF_INIT;

	add_dir(&script, "d", cmd_dir);
	sb_adds(&script, stdin_close_script);
	add_sh_c(sb, &script);
	sb_free(&script);
}

/*
 * The records without an exit whose wrapper is gone. A record without a
 * wrapper pid is being started, unless its run script is over a minute old.
 */
static const char reconcile_script[] =
	"for d in \"$S\"/cmd/*; do\n"
	"\t[ -f \"$d/run\" ] && [ ! -e \"$d/exit\" ] || continue\n"
	"\tif alive; then\n"
	"\t\t[ -n \"$w\" ] && continue\n"
	"\t\t[ -n \"$(find \"$d/run\" -mmin +1 2>/dev/null)\" ] || continue\n"
	"\tfi\n"
	"\t[ -e \"$d/exit\" ] && continue\n"
	"\torphan && echo \"daytonafs-orphan ${d##*/}\"\n"
	"done\n"
	"echo daytonafs-reconciled\n";

void exec_build_reconcile(struct strbuf *sb, const char *state_dir)
{
	build_alive_script(sb, "S", state_dir, reconcile_script);
}

/* ---- parsers ---------------------------------------------------------------- */

/* A decimal number at p followed by the end of a line: 0 and *n, else -EIO. */
static int parse_number_line(const char *p, unsigned *n)
{
	unsigned long v;
	char *end;

	if (*p < '0' || *p > '9')
		return -EIO;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || v == 0 || v > UINT_MAX || !(*end == '\n' || *end == '\0' || *end == '\r'))
		return -EIO;
	*n = (unsigned)v;
	return 0;
}

int exec_parse_launch(const char *output, unsigned *n)
{
	const char *p = output ? strstr(output, "daytonafs-started ") : NULL;

	if (p)
		return parse_number_line(p + strlen("daytonafs-started "), n);
	if (output && strstr(output, "daytonafs-error cwd"))
		return -ENOENT;
	return -EIO;
}

int exec_parse_stdin_reply(const char *output)
{
	if (!output)
		return -EIO;
	if (strstr(output, "daytonafs-written") || strstr(output, "daytonafs-closed"))
		return 0;
	if (strstr(output, "daytonafs-ended") || strstr(output, "daytonafs-failed"))
		return -EPIPE;
	if (strstr(output, "daytonafs-nostdin"))
		return -EBADF;
	return -EIO;
}

int exec_parse_reconcile(const char *output, void (*fn)(void *ctx, unsigned n), void *ctx)
{
	static const char tag[] = "daytonafs-orphan ";
	const char *p = output;
	bool done = false;
	unsigned n;

	while (p && *p) {
		const char *eol = strchr(p, '\n');

		if (!strncmp(p, tag, sizeof(tag) - 1)) {
			if (parse_number_line(p + sizeof(tag) - 1, &n) == 0 && fn)
				fn(ctx, n);
		} else if (!strncmp(p, "daytonafs-reconciled", 20) &&
			   (p[20] == '\n' || p[20] == '\r' || p[20] == '\0')) {
			done = true;
		}
		p = eol ? eol + 1 : NULL;
	}
	return done ? 0 : -EIO;
}

bool exec_parse_cmd_name(const char *name, unsigned *n)
{
	unsigned long v = 0;
	const char *p;

	if (!name || *name < '1' || *name > '9')
		return false;
	for (p = name; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > UINT_MAX)
			return false;
	}
	*n = (unsigned)v;
	return true;
}

void exec_parse_listing(const struct dt_fileinfo *fi, size_t n, struct exec_listing *out)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < n; i++) {
		const char *name = fi[i].name;

		if (!name)
			continue;
		if (!strcmp(name, "exit"))
			out->ended = true;
		else if (!strcmp(name, "state"))
			out->has_state = true;
		else if (!strcmp(name, "pgid"))
			out->has_pgid = true;
		else if (!strcmp(name, "stdout"))
			out->size[EXEC_STDOUT] = fi[i].size;
		else if (!strcmp(name, "stderr"))
			out->size[EXEC_STDERR] = fi[i].size;
		else if (!strcmp(name, "stdin.pipe"))
			out->with_stdin = true;
		else if (!strcmp(name, "stdin.eof"))
			out->stdin_eof = true;
	}
}

int exec_parse_exit(const char *text, size_t len, int *code)
{
	char buf[32];
	char *end;
	long v;

	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	if (!len || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (*end || errno || v < INT_MIN || v > INT_MAX)
		return -EINVAL;
	*code = (int)v;
	return 0;
}

enum exec_state exec_parse_state(const char *text, size_t len)
{
	if (!text)
		return EXEC_EXITED;
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	if (len == 6 && !memcmp(text, "killed", 6))
		return EXEC_KILLED;
	if (len == 8 && !memcmp(text, "timedout", 8))
		return EXEC_TIMEDOUT;
	return EXEC_EXITED;
}

/* Delay of the first look at a command just started. */
#define FIRST_POLL_MS 10

long exec_backoff(long cur_ms, bool changed, bool waiting, long min_ms, long max_ms, long idle_max_ms)
{
	if (!waiting) {
		/* Output changes do not matter here: only the end does. */
		if (cur_ms < min_ms)
			return min_ms;
		return cur_ms >= idle_max_ms / 2 ? idle_max_ms : cur_ms * 2;
	}
	if (changed || cur_ms < min_ms)
		return min_ms;
	if (cur_ms >= max_ms / 2)
		return max_ms;
	return cur_ms * 2;
}

const char *exec_state_name(enum exec_state s)
{
	switch (s) {
	case EXEC_RUNNING:
		return "running";
	case EXEC_EXITED:
		return "exited";
	case EXEC_KILLED:
		return "killed";
	case EXEC_TIMEDOUT:
		return "timed out";
	}
	return "unknown";
}

void exec_options_defaults(struct exec_options *o)
{
	memset(o, 0, sizeof(*o));
	o->state_dir = "/tmp/.daytonafs";
	o->poll_min_ms = 50;
	o->poll_max_ms = 1000;
	o->list_ttl_ms = 5000;
}

/* ---- the model ------------------------------------------------------------ */

/* A poll() waiter. It is woken when ready, or after POLL_REQ_MAX_MS anyway:
 * the kernel then polls again if the waiter is still there (a handle whose
 * file was closed would otherwise keep its command polled for ever). */
#define POLL_REQ_MAX_MS 30000

struct poll_req {
	void *handle;
	enum exec_stream s;
	uint64_t off;
	int64_t since_ms;
	struct poll_req *next;
};

struct ecmd {
	unsigned n;
	bool known;                 /* its listing was read at least once */
	bool ended;
	enum exec_state state;
	int exit_code;
	uint64_t size[2];
	bool with_stdin, stdin_eof;
	bool mine;                  /* started (or killed) by this mount: on_end is owed */
	bool end_reported;
	unsigned alive_gen;         /* the box generation in which it was started here */
	char *text;                 /* the command text, once read */
	size_t text_len;

	/* waiting and polling */
	int waiters;                /* readers and exit waiters blocked on it */
	unsigned poll_seq;          /* polls completed */
	int poll_err;               /* the last poll's error that waiters should see, or 0 */
	struct poll_req *polls;
	bool poller_on;
	long interval_ms;
	int64_t next_poll_ms, last_poll_ms;
	int64_t watch_until_ms;     /* mine: polled while nobody waits until then */
	pthread_cond_t cv;          /* its state changed */
	pthread_cond_t poll_cv;     /* wakes its poller */

	/* stdin */
	struct strbuf in_buf;       /* written, not yet delivered */
	bool in_flight;             /* a batch is being delivered */
	bool sender_on;
	bool in_close;              /* EOF is asked for */
	int in_err;                 /* sticky: why a delivery failed */
	int close_err;              /* why the last EOF failed */
	char in_done[64];           /* the id of the last batch delivered, "" before */
	pthread_cond_t in_cv;       /* in_buf shrank, or the sender stopped */
};

struct ebox {
	char id[64];
	char url[512];
	int refs;
	bool dead;
	bool listed;
	int64_t listed_ms;
	/* Generations: gen is bumped when the sandbox is seen stopped (its
	 * processes may be gone), checked_gen is the one in which the records
	 * were last checked against its processes (exec_build_reconcile). */
	unsigned gen, checked_gen;
	bool checking;
	int64_t check_failed_ms;
	struct ecmd **cmds;         /* ascending n */
	size_t n_cmds, cap;
	unsigned max_n;             /* highest number known or claimed */
	struct ebox *next;
};

struct exec_mgr {
	struct dt_client *dt;
	struct exec_options o;
	char *state_dir;
	long idle_max_ms;
	pthread_mutex_t lock;
	pthread_cond_t idle_cv;     /* workers reached 0 */
	pthread_condattr_t cattr;
	int workers;
	/* Workers that have finished, to be joined: joined rather than
	 * detached so that none is still in its exit (curl's per-thread
	 * handle is freed then) when exec_mgr_free returns. */
	pthread_t *exited;
	size_t n_exited, cap_exited;
	bool stopping;
	struct ebox *boxes;
	/* Client tokens of launches and stdin batches: this mount's nonce and
	 * a count (see add_claim). */
	char nonce[24];
	unsigned long tokens;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *lock, int64_t until_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(until_ms / 1000);
	ts.tv_nsec = (long)(until_ms % 1000) * 1000000;
	pthread_cond_timedwait(cv, lock, &ts);
}

static bool interrupted(struct exec_mgr *m)
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
	free(c);
}

static void box_free(struct ebox *b)
{
	size_t i;

	for (i = 0; i < b->n_cmds; i++)
		cmd_free(b->cmds[i]);
	free(b->cmds);
	free(b);
}

/* Lock held. The box for id, created when missing; takes a reference. */
static struct ebox *box_get(struct exec_mgr *m, const struct dt_box *db)
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
static void box_put(struct ebox *b)
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

static struct ecmd *cmd_find(const struct ebox *b, unsigned n)
{
	bool found;
	size_t i = cmd_index(b, n, &found);

	return found ? b->cmds[i] : NULL;
}

/* Lock held. The entry for n, added when missing; NULL on out of memory.
 * Entries live as long as their box: callers keep pointers across requests. */
static struct ecmd *cmd_add(struct exec_mgr *m, struct ebox *b, unsigned n)
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

static int cmd_path(const struct exec_mgr *m, unsigned n, const char *file, char *out, size_t cap)
{
	bool ok;

	if (file)
		ok = str_printf(out, cap, "%s/cmd/%u/%s", m->state_dir, n, file);
	else
		ok = str_printf(out, cap, "%s/cmd/%u", m->state_dir, n);
	return ok ? 0 : -ENAMETOOLONG;
}

/* A dt_box with copies of the box's strings, for use without the lock. */
struct box_copy {
	char id[64];
	char url[512];
	struct dt_box db;
};

static void box_copy(const struct ebox *b, struct box_copy *bc)
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
static int download_small(struct exec_mgr *m, const struct dt_box *db, const char *path, size_t max,
			  char **out, size_t *len, struct dt_error *err)
{
	struct mem_sink s = { STRBUF_INIT, max };
	int64_t rc;

	rc = dt_fs_download(m->dt, db, path, 0, 0, mem_sink_fn, &s, err);
	if (rc < 0) {
		sb_free(&s.sb);
		return (int)rc;
	}
	*len = s.sb.len;
	*out = sb_detach(&s.sb);
	return *out ? 0 : -ENOMEM;
}

struct fetch {
	struct exec_listing l;
	bool have_end;              /* end_state and exit_code are set */
	enum exec_state end_state;
	int exit_code;
};

/*
 * One listing of cmd/N; when it shows the exit and the caller does not know
 * the end yet (need_end), also the exit file and, if present, the state
 * file. The listing stats "exit" before "stderr" and "stdout" (it is sorted
 * by name), and exit is written after the command's streams are closed, so
 * the sizes seen beside an exit are final.
 */
static int fetch_cmd(struct exec_mgr *m, const struct dt_box *db, unsigned n, bool need_end,
		     struct fetch *f, struct dt_error *err)
{
	char path[EXEC_PATH_MAX];
	struct dt_fileinfo *fi = NULL;
	size_t nfi = 0, len = 0;
	char *text = NULL;
	int rc;

	memset(f, 0, sizeof(*f));
	rc = cmd_path(m, n, NULL, path, sizeof(path));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	rc = dt_fs_list(m->dt, db, path, &fi, &nfi, err);
	if (rc < 0)
		return rc;
	exec_parse_listing(fi, nfi, &f->l);
	dt_fileinfo_free(fi, nfi);
	if (!f->l.ended || !need_end)
		return 0;

	rc = cmd_path(m, n, "exit", path, sizeof(path));
	if (rc == 0)
		rc = download_small(m, db, path, SMALL_FILE_MAX, &text, &len, err);
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

/* Callbacks gathered under the lock, made after it is released. */
struct pending {
	struct poll_req *wake;      /* woken handles */
	bool end;                   /* call on_end for (box, n) */
	char id[64];
	unsigned n;
};

static void pending_run(struct exec_mgr *m, struct pending *p)
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
static void pending_flush(struct exec_mgr *m, struct pending *p)
{
	if (!p->wake && !p->end)
		return;
	pthread_mutex_unlock(&m->lock);
	pending_run(m, p);
	pthread_mutex_lock(&m->lock);
}

static bool cmd_waiting(const struct ecmd *c)
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
static void apply_fetch(struct exec_mgr *m, struct ebox *b, struct ecmd *c, const struct fetch *f,
			struct pending *p)
{
	bool changed = false, was_known = c->known;
	int s;
	int64_t now = now_ms();

	for (s = 0; s < 2; s++) {
		if (f->l.size[s] > c->size[s]) {
			c->size[s] = f->l.size[s];
			changed = true;
		}
	}
	c->with_stdin = c->with_stdin || f->l.with_stdin;
	c->stdin_eof = c->stdin_eof || f->l.stdin_eof;
	if (f->have_end && !c->ended) {
		cmd_end(b, c, f->end_state, f->exit_code, c->mine || was_known, p);
		changed = true;
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
static void apply_gone(struct ebox *b, struct ecmd *c, struct pending *p)
{
	cmd_end(b, c, EXEC_EXITED, -1, false, p);
	take_ready_polls(c, p, now_ms());
}

/* Lock held. The sandbox is not running (or was not): its processes may be
 * gone, so running records are checked again once it runs. */
static void box_stopped(struct ebox *b)
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

/* Whether c, seen running, might be a record whose processes are gone. */
static bool needs_check(const struct ebox *b, const struct ecmd *c)
{
	return !c->ended && b->checked_gen != b->gen && c->alive_gen != b->gen;
}

/*
 * Lock held; released meanwhile. Checks the sandbox's running records
 * against its processes (one /process/execute), ending those whose wrapper
 * is gone: after a stop and start of the sandbox they would otherwise look
 * running for ever. Once per generation of the box.
 */
static void box_check(struct exec_mgr *m, struct ebox *b, struct pending *p)
{
	struct strbuf script = STRBUF_INIT;
	struct dt_error err = { 0 };
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
		rc = dt_error_set(&err, -ENOMEM, 0, "out of memory");
	else
		rc = dt_exec(m->dt, &bc.db, script.buf, NULL, NULL, 0, RECONCILE_TIMEOUT_S, &code, &out,
			     &err);
	pthread_mutex_lock(&m->lock);
	b->checking = false;
	if (rc == 0 && exec_parse_reconcile(out, orphan_fn, &oc) == 0) {
		b->checked_gen = gen;
		b->check_failed_ms = 0;
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

struct worker_arg {
	struct exec_mgr *m;
	struct ebox *b;
	struct ecmd *c;
};

/* Lock held. Starts fn on a thread of its own, holding a reference to b. */
static int worker_start(struct exec_mgr *m, struct ebox *b, struct ecmd *c, void *(*fn)(void *))
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
static void worker_exit(struct exec_mgr *m, struct ebox *b)
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
static void workers_reap(struct exec_mgr *m)
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
		struct dt_error err = { 0 };
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
static void poller_ensure(struct exec_mgr *m, struct ebox *b, struct ecmd *c)
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
static void wait_begin(struct exec_mgr *m, struct ebox *b, struct ecmd *c, bool was_waiting)
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
static void wait_end(struct ecmd *c)
{
	if (!cmd_waiting(c) && c->mine) {
		int64_t until = now_ms() + IDLE_WATCH_MS;

		if (until > c->watch_until_ms)
			c->watch_until_ms = until;
	}
}

/* ---- lookups ------------------------------------------------------------------ */

/* Reads STATE_DIR/cmd when it never was or when the last read is older than
 * max_age_ms (-1: any age will do). Lock held; released meanwhile. */
static int box_ensure_listed(struct exec_mgr *m, struct ebox *b, const struct dt_box *db,
			     long max_age_ms, struct dt_error *err)
{
	char path[EXEC_PATH_MAX];
	struct dt_fileinfo *fi = NULL;
	size_t nfi = 0, i;
	int64_t started = now_ms();
	int rc;

	if (b->listed && (max_age_ms < 0 || started - b->listed_ms <= max_age_ms))
		return 0;
	if (!str_printf(path, sizeof(path), "%s/cmd", m->state_dir))
		return dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	pthread_mutex_unlock(&m->lock);
	rc = dt_fs_list(m->dt, db, path, &fi, &nfi, err);
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
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
			break;
		}
	}
	dt_fileinfo_free(fi, nfi);
	if (rc == 0) {
		b->listed = true;
		if (started > b->listed_ms)
			b->listed_ms = started;
	}
	return rc;
}

/*
 * Lock held; released meanwhile. The command n, its listing read at least
 * once (a number unknown here is looked up in the sandbox: another mount may
 * have started it). With fresh, a running command's listing is re-read when
 * the last one is older than poll_min_ms.
 */
static int cmd_lookup(struct exec_mgr *m, struct ebox *b, const struct dt_box *db, unsigned n,
		      bool fresh, struct ecmd **out, struct dt_error *err)
{
	struct pending p = { 0 };
	struct ecmd *c = NULL;
	struct fetch f;
	int rc;

	rc = box_ensure_listed(m, b, db, -1, err);
	if (rc < 0)
		return rc;
	c = cmd_find(b, n);
	if (c && c->known && (c->ended || !fresh || now_ms() - c->last_poll_ms < m->o.poll_min_ms)) {
		*out = c;
		return 0;
	}
	pthread_mutex_unlock(&m->lock);
	rc = fetch_cmd(m, db, n, !(c && c->ended), &f, err);
	pthread_mutex_lock(&m->lock);
	if (rc == -EHOSTDOWN)
		box_stopped(b);
	if (rc == -ENOENT && !c)
		return dt_error_set(err, -ENOENT, 404, "no command %u", n);
	if (rc < 0 && !(c && c->known))
		return rc;
	c = cmd_add(m, b, n);
	if (!c)
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	if (rc == 0) {
		apply_fetch(m, b, c, &f, &p);
		if (needs_check(b, c))
			box_check(m, b, &p);
	} else if (rc == -ENOENT) {
		apply_gone(b, c, &p);
	}
	/* else: a refresh failed, the last known state stands */
	pending_flush(m, &p);
	*out = c;
	return 0;
}

static int check_args(struct exec_mgr *m, const struct dt_box *db, struct dt_error *err)
{
	if (!m || !db || !db->id || !db->toolbox_url)
		return dt_error_set(err, -EINVAL, 0, "invalid arguments");
	return 0;
}

/* Lock held. Opens a box and the command in it, for the calls below. */
static int open_cmd(struct exec_mgr *m, const struct dt_box *box, unsigned n, bool fresh,
		    struct ebox **bp, struct ecmd **cp, struct dt_error *err)
{
	struct ebox *b = box_get(m, box);
	int rc;

	if (!b)
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
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
static int lock_box(struct exec_mgr *m, const struct dt_box *box, struct ebox **bp, struct dt_error *err)
{
	pthread_mutex_lock(&m->lock);
	*bp = box_get(m, box);
	if (!*bp) {
		pthread_mutex_unlock(&m->lock);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	return 0;
}

/* Takes the lock and opens command n (open_cmd): 0 with the lock held,
 * else an error with it released. */
static int lock_cmd(struct exec_mgr *m, const struct dt_box *box, unsigned n, bool fresh, struct ebox **bp,
		    struct ecmd **cp, struct dt_error *err)
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
static void next_token(struct exec_mgr *m, char kind, char *out, size_t cap)
{
	snprintf(out, cap, "%s%c%lu", m->nonce, kind, ++m->tokens);
}

struct exec_mgr *exec_mgr_new(struct dt_client *dt, const struct exec_options *o)
{
	struct exec_mgr *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->dt = dt;
	if (o)
		m->o = *o;
	else
		exec_options_defaults(&m->o);
	if (!m->o.state_dir || !*m->o.state_dir)
		m->o.state_dir = "/tmp/.daytonafs";
	if (m->o.poll_min_ms <= 0)
		m->o.poll_min_ms = 50;
	if (m->o.poll_max_ms < m->o.poll_min_ms)
		m->o.poll_max_ms = m->o.poll_min_ms;
	if (m->o.list_ttl_ms < 0)
		m->o.list_ttl_ms = 0;
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

int exec_start(struct exec_mgr *m, const struct dt_box *box, const struct exec_spec *spec,
	       unsigned *n, struct dt_error *err)
{
	struct strbuf script = STRBUF_INIT;
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	unsigned first, got = 0, i;
	char *out = NULL, token[64];
	int64_t now;
	int rc, code = 0;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (!spec || !spec->command)
		return dt_error_set(err, -EINVAL, 0, "no command");
	rc = lock_box(m, box, &b, err);
	if (rc < 0)
		return rc;
	rc = box_ensure_listed(m, b, box, -1, err);
	if (rc < 0)
		goto out_locked;
	/* Claim the number here, so that two starts in this mount differ;
	 * the sandbox arbitrates between mounts (mkdir). */
	if (b->max_n == UINT_MAX) {
		rc = dt_error_set(err, -EOVERFLOW, 0, "too many commands");
		goto out_locked;
	}
	first = ++b->max_n;
	next_token(m, 'l', token, sizeof(token));
	pthread_mutex_unlock(&m->lock);

	rc = exec_build_launcher(&script, m->state_dir, first, token, spec);
	if (rc == -EINVAL) {
		dt_error_set(err, rc, 0, "invalid environment variable name");
		goto out;
	}
	if (rc < 0) {
		dt_error_set(err, rc, 0, "out of memory");
		goto out;
	}
	/* A command the user asked for counts as activity in the sandbox. */
	rc = dt_exec_activity(m->dt, box, script.buf, NULL, NULL, 0, LAUNCH_TIMEOUT_S, &code, &out, err);
	if (rc < 0)
		goto out;
	rc = exec_parse_launch(out, &got);
	if (rc == -ENOENT) {
		dt_error_set(err, rc, 0, "cwd %s: no such directory", spec->cwd ? spec->cwd : "");
		goto out;
	}
	if (rc < 0) {
		/* The first line of what the shell said is the best reason we have. */
		const char *msg = out ? out : "";
		size_t len = strcspn(msg, "\n");

		dt_error_set(err, rc, 0, "cannot start the command (exit %d): %.*s", code,
			     (int)(len > 300 ? 300 : len), msg);
		goto out;
	}

	pthread_mutex_lock(&m->lock);
	/* Numbers skipped over belong to another mount's commands. */
	for (i = first; i < got; i++)
		cmd_add(m, b, i);
	c = cmd_add(m, b, got);
	if (!c) {
		/* Started, but we cannot track it: say so rather than lose it silently. */
		rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
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
	c->next_poll_ms = now + c->interval_ms;
	c->watch_until_ms = now + IDLE_WATCH_MS;
	poller_ensure(m, b, c);
	*n = got;
	rc = 0;
out_locked:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	sb_free(&script);
	free(out);
	return rc;
out:
	pthread_mutex_lock(&m->lock);
	goto out_locked;
}

int exec_list(struct exec_mgr *m, const struct dt_box *box, unsigned **ns, size_t *count,
	      struct dt_error *err)
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
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
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

int exec_last(struct exec_mgr *m, const struct dt_box *box, unsigned *n, struct dt_error *err)
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

int exec_exists(struct exec_mgr *m, const struct dt_box *box, unsigned n, struct dt_error *err)
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

static int wait_error(struct dt_error *err, int rc)
{
	if (rc == -EINTR)
		return dt_error_set(err, rc, 0, "interrupted");
	if (rc == -EHOSTDOWN)
		return dt_error_set(err, rc, 0, "the sandbox is not running");
	return dt_error_set(err, rc, 0, "the sandbox is gone");
}

static bool never_done(const struct ecmd *c, const void *arg)
{
	(void)c;
	(void)arg;
	return false;
}

int exec_status(struct exec_mgr *m, const struct dt_box *box, unsigned n, bool wait,
		struct exec_status *st, struct dt_error *err)
{
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = lock_cmd(m, box, n, true, &b, &c, err);
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

ssize_t exec_read(struct exec_mgr *m, const struct dt_box *box, unsigned n, enum exec_stream s,
		  char *buf, size_t size, uint64_t off, bool block, struct dt_error *err)
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
		return dt_error_set(err, -EINVAL, 0, "invalid stream");
	if (size == 0)
		return 0;
	if (size > SSIZE_MAX)
		size = SSIZE_MAX;
	rc = cmd_path(m, n, names[s], path, sizeof(path));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	for (;;) {
		struct buf_sink sink = { buf, size, 0 };
		struct box_copy bc;
		int64_t got;

		if (off >= c->size[s]) {
			if (c->ended) {
				ret = 0;
				break;
			}
			if (!block) {
				ret = dt_error_set(err, -EAGAIN, 0, "no output yet");
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
		box_copy(b, &bc);
		pthread_mutex_unlock(&m->lock);
		got = dt_fs_download(m->dt, &bc.db, path, off, size, buf_sink_fn, &sink, err);
		if (got == -ECANCELED && sink.len == size)
			got = (int64_t)size;
		pthread_mutex_lock(&m->lock);
		if (got < 0) {
			ret = (ssize_t)got;
			break;
		}
		if (got > 0) {
			if (off + (uint64_t)got > c->size[s])
				c->size[s] = off + (uint64_t)got;
			ret = (ssize_t)got;
			break;
		}
		/* Nothing where the listing said there was: the file was cut
		 * behind us. Believe the download, and wait or end. */
		c->size[s] = off;
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int exec_poll(struct exec_mgr *m, const struct dt_box *box, unsigned n, enum exec_stream s,
	      uint64_t off, void *poll_handle)
{
	struct dt_error err = { 0 };
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

int exec_kill(struct exec_mgr *m, const struct dt_box *box, unsigned n, struct dt_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX];
	struct ebox *b = NULL;
	struct ecmd *c = NULL;
	char *out = NULL;
	int rc, code = 0;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	rc = lock_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0)
		return rc;
	if (c->ended) {
		rc = dt_error_set(err, -ESRCH, 0, "command %u has already ended", n);
		goto out;
	}
	pthread_mutex_unlock(&m->lock);

	exec_build_kill(&script, dir);
	if (script.oom)
		rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
	else
		rc = dt_exec_activity(m->dt, box, script.buf, NULL, NULL, 0, KILL_TIMEOUT_S, &code, &out,
				      err);
	if (rc == 0 && out && strstr(out, "daytonafs-ended"))
		rc = dt_error_set(err, -ESRCH, 0, "command %u has already ended", n);
	else if (rc == 0 && !(out && strstr(out, "daytonafs-killed")))
		rc = dt_error_set(err, -EIO, 0, "cannot kill command %u: %.200s", n, out ? out : "");

	pthread_mutex_lock(&m->lock);
	if (rc == 0 || rc == -ESRCH) {
		/* It has ended (the script waits for that, 3 s at most): read
		 * the record now, so that status says so when the write returns,
		 * and owe on_end as for our own. */
		struct dt_error ignored = { 0 };
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

/* ---- stdin ---------------------------------------------------------------------- */

/* One batch into the command's stdin pipe: one /process/execute. id: the
 * batch's client token; done: the one before (NULL: none). */
static int stdin_deliver(struct exec_mgr *m, const struct dt_box *db, unsigned n, const char *id,
			 const char *done, const char *data, size_t len, struct dt_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX];
	char *out = NULL;
	int rc, code = 0;

	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	rc = exec_build_stdin_write(&script, dir, id, done, data, len);
	if (rc < 0) {
		rc = dt_error_set(err, rc, 0, "out of memory");
		goto out;
	}
	rc = dt_exec_activity(m->dt, db, script.buf, NULL, NULL, 0, STDIN_TIMEOUT_S, &code, &out, err);
	if (rc == -ETIMEDOUT) {
		rc = dt_error_set(err, rc, 0, "command %u did not read its stdin for %d s", n,
				  STDIN_TIMEOUT_S);
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = exec_parse_stdin_reply(out);
	if (rc == -EPIPE)
		dt_error_set(err, rc, 0, "command %u has ended or closed its stdin", n);
	else if (rc == -EBADF)
		dt_error_set(err, rc, 0, "command %u has no stdin pipe", n);
	else if (rc < 0)
		dt_error_set(err, rc, 0, "writing to the stdin of command %u: %.200s", n, out ? out : "");
out:
	sb_free(&script);
	free(out);
	return rc;
}

static int stdin_eof(struct exec_mgr *m, const struct dt_box *db, unsigned n, struct dt_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX];
	char *out = NULL;
	int rc, code = 0;

	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	exec_build_stdin_close(&script, dir);
	if (script.oom)
		rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
	else
		rc = dt_exec_activity(m->dt, db, script.buf, NULL, NULL, 0, KILL_TIMEOUT_S, &code, &out, err);
	if (rc == 0 && exec_parse_stdin_reply(out) != 0)
		rc = dt_error_set(err, -EIO, 0, "closing the stdin of command %u: %.200s", n, out ? out : "");
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
		struct dt_error err = { 0 };
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
static int stdin_writable(const struct ecmd *c, unsigned n, struct dt_error *err)
{
	if (c->in_err == -EBADF || (c->known && !c->with_stdin))
		return dt_error_set(err, -EBADF, 0, "command %u has no stdin pipe", n);
	if (c->in_err)
		return dt_error_set(err, c->in_err, 0, "command %u: stdin failed: %s", n, strerror(-c->in_err));
	if (c->ended || c->stdin_eof || c->in_close)
		return dt_error_set(err, -EPIPE, 0, "command %u: stdin is closed", n);
	return 0;
}

ssize_t exec_stdin_write(struct exec_mgr *m, const struct dt_box *box, unsigned n, const void *buf,
			 size_t size, struct dt_error *err)
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
			rc = dt_error_set(err, -EPIPE, 0, "command %u: stdin is closed", n);
			break;
		}
		if (interrupted(m)) {
			rc = dt_error_set(err, -EINTR, 0, "interrupted");
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
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
		} else if (sender_ensure(m, b, c) < 0) {
			c->in_buf.len = old;
			rc = dt_error_set(err, -EAGAIN, 0, "cannot start a thread");
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc < 0 ? rc : (ssize_t)size;
}

int exec_stdin_flush(struct exec_mgr *m, const struct dt_box *box, unsigned n, struct dt_error *err)
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
			rc = dt_error_set(err, -EINTR, 0, "interrupted");
			break;
		}
		timed_wait(&c->in_cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	}
	if (rc == 0 && c->in_err)
		rc = dt_error_set(err, c->in_err, 0, "command %u: stdin failed: %s", n, strerror(-c->in_err));
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_stdin_close(struct exec_mgr *m, const struct dt_box *box, unsigned n, struct dt_error *err)
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
		rc = dt_error_set(err, -EBADF, 0, "command %u has no stdin pipe", n);
		goto out;
	}
	if (c->stdin_eof || c->ended)
		goto out;
	c->in_close = true;
	c->close_err = 0;
	rc = sender_ensure(m, b, c);
	if (rc < 0) {
		c->in_close = false;
		rc = dt_error_set(err, rc, 0, "cannot start a thread");
		goto out;
	}
	/* Everything written goes first, then EOF. Not interruptible: it is
	 * what a close does, and it ends. */
	while (c->sender_on && !c->stdin_eof && !c->ended && !m->stopping && !b->dead)
		timed_wait(&c->in_cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	if (!c->stdin_eof && !c->ended) {
		rc = c->close_err ? c->close_err : -EIO;
		dt_error_set(err, rc, 0, "command %u: closing stdin failed: %s", n, strerror(-rc));
	}
out:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* ---- the rest ------------------------------------------------------------------ */

int exec_command_text(struct exec_mgr *m, const struct dt_box *box, unsigned n, char **text,
		      size_t *len, struct dt_error *err)
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
		return dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
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
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
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
