/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec_script.c - the shell scripts of commands as files (the wrapper, the
 * launcher, kill, stdin, reconcile) and the parsers of what they print.
 * Pure: built from the spec, unit-tested, and run by the unit tests under
 * dash and bash.
 *
 * Every variable of these scripts is named _df and one letter (_dfd is
 * the record's directory), and the comments call it by that letter ($d,
 * "d"). A command inherits the environment of the launcher and of the
 * wrapper: a short name would replace a variable of the sandbox's own
 * environment of the same name (an exported d, say) with the script's
 * value before it reached the command. Names that begin with _df are the
 * mount's (SEMANTICS).
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
 * so that neither the command's nor the holder's open blocks, and lets go of
 * it once both have it. The command is started first (wrapper_holder comes
 * after it): the holder is not on the way of a short command.
 */
static const char wrapper_stdin[] =
	"_dfi=/dev/null; _dfh=\n"
	"[ -p \"$_dfd/stdin.pipe\" ] && command exec 3<>\"$_dfd/stdin.pipe\" && _dfi=$_dfd/stdin.pipe\n";

/*
 * The holder is recorded before pgid: once the launcher has said "started"
 * (it waits for pgid), a close of stdin finds the holder to kill.
 *
 * Under bash (j: the wrapper's job control worked) the wrapper is the
 * holder itself, a process less: the FIFO becomes its fd 0 (where the
 * close script looks, exec_build_stdin_close), and the TERM of a close
 * runs a trap that lets go of it. bash's wait returns early (over 128)
 * when a trap ran, so the wrapper waits again until it returns without
 * one: bash keeps the status of a child it reaped, and a wait for it
 * returns that status again (u tells a trap ran; a TERM that comes just
 * after the end costs one more wait, which returns at once). dash's wait
 * does not keep it: under sh a sleep holds the FIFO, as before.
 */
static const char wrapper_holder[] =
	"_dfu=\n"
	"if [ \"$_dfi\" = /dev/null ]; then :\n"
	"elif [ -n \"$_dfj\" ]; then\n"
	"\ttrap 'exec 0</dev/null; _dfu=1' TERM\n"
	"\texec 0<&3 3>&-\n"
	"\techo $$ >\"$_dfd/stdin.holder\"\n"
	"else\n"
	"\tsleep 2147483647 <&3 >/dev/null 2>&1 3>&- & _dfh=$!\n"
	"\techo $_dfh >\"$_dfd/stdin.holder\"\n"
	"\texec 3>&-\n"
	"fi\n";

/*
 * The watchdog of a timeout. Its stdin is not the FIFO that the wrapper may
 * hold (a close must leave no writer). It is not in the command's process
 * group (the command has a group of its own), so killing that group spares it and the
 * wrapper, which then records the exit status. The wrapper kills the
 * watchdog when the command ends first; once the watchdog has fired it
 * ignores that, to send the SIGKILL 2 s later to what is left of the group.
 */
static const char wrapper_watchdog_fmt[] =
	"(\n"
	"\tsleep %ld & _dfz=$!\n"
	"\ttrap 'kill $_dfz 2>/dev/null; exit 0' TERM\n"
	"\twait $_dfz\n"
	"\t[ -e \"$_dfd/exit\" ] && exit 0\n"
	"\ttrap '' TERM\n"
	"\techo timedout >\"$_dfd/state\"\n"
	"\tkill -TERM -$_dfp 2>/dev/null || kill -TERM $_dfp 2>/dev/null\n"
	"\tsleep 2\n"
	"\tkill -KILL -$_dfp 2>/dev/null || kill -KILL $_dfp 2>/dev/null\n"
	") </dev/null & _dfw=$!\n";

int exec_build_wrapper(struct strbuf *sb, const struct exec_spec *spec)
{
	size_t i;

	for (i = 0; i < spec->n_env; i++)
		if (!env_key_valid(spec->env[i].key) || !spec->env[i].value)
			return -EINVAL;
	/* Written for sh (dash or bash as sh): it runs under "sh", whatever
	 * shell the toolbox's /process/execute uses. Every process it starts
	 * before the command is time a short command waits for, so it uses
	 * builtins where it can. r (bash, else sh) and s (setsid) are
	 * absolute paths, looked up in PATH as command -v would, but without
	 * a $(...) process each; a relative entry of PATH is not looked in.
	 * The launcher found the first bash of PATH the same way, to run this
	 * wrapper with: it passes it as $5, which is r, and under bash's job
	 * control there is no setsid to look for: no walk of PATH at all.
	 * bash takes its options from an exported SHELLOPTS: errexit would
	 * end the wrapper at the command's first failing status, before it
	 * records it, noclobber would fail its writes. a keeps the options
	 * as they came ($-); the wrapper turns those off, and the command's
	 * subshell turns them on again (with noglob, which the wrapper's own
	 * set -f/+f changes). */
	sb_adds(sb, "_dfa=$-; set +euC\n"
		"_dfd=$1\n"
		"_dfr=; _dfo=; _dfs=\n"
		"_dfj=; [ -n \"$BASH_VERSION\" ] && set -m 2>/dev/null && case $- in *m*) _dfj=1 ;; esac\n"
		"case $5 in /*) _dfr=$5 ;; esac\n"
		"if [ -z \"$_dfr\" ] || [ -z \"$_dfj\" ]; then\n"
		"IFS=:; set -f\n"
		"for _dfx in $PATH; do\n"
		"\tcase $_dfx in /*) ;; *) continue ;; esac\n"
		"\t[ -n \"$_dfr\" ] || { [ -f \"$_dfx/bash\" ] && [ -x \"$_dfx/bash\" ] && _dfr=$_dfx/bash; }\n"
		"\t[ -n \"$_dfo\" ] || { [ -f \"$_dfx/sh\" ] && [ -x \"$_dfx/sh\" ] && _dfo=$_dfx/sh; }\n"
		"\t[ -n \"$_dfs\" ] || { [ -f \"$_dfx/setsid\" ] && [ -x \"$_dfx/setsid\" ] && _dfs=$_dfx/setsid; }\n"
		"done\n"
		"unset IFS; set +f\n"
		"fi\n"
		"[ -n \"$_dfr\" ] || _dfr=${_dfo:-/bin/sh}\n");
	sb_adds(sb, wrapper_stdin);
	/* The environment as assignments before the command word: they reach
	 * the command only, not the wrapper's own tools (a PATH=... must not
	 * change which mv the wrapper runs). $s and $r are absolute paths, as
	 * the shell would look them up in such a PATH. */
	/* Issue 16: STATE_DIR/env (written through NAME/env, fs_surface.c)
	 * is sourced first, in a subshell that then execs the command, so the
	 * command's own env.K=V below win and the wrapper's tools see neither.
	 * The file may set any name, the wrapper's own (d, r, s, IFS ...)
	 * too: the command's words are bound as "$@" before it is sourced,
	 * and nothing after it expands a variable of the wrapper's. */
	/* The command's process group: under bash (the launcher runs the
	 * wrapper with bash when there is one), job control (set -m) puts
	 * the command's subshell in a group of its own as it starts it, with
	 * no process more; it is turned off at once, so that wait waits for
	 * the end, not for a stop, and the holder and the watchdog stay in
	 * the wrapper's group. Under another sh (dash has no job control
	 * without a terminal), setsid execs in the subshell's place.
	 * The launcher ran the wrapper with BASH_ENV empty (bash would source
	 * the file it names, which may hold anything, set -u say): the
	 * command gets it back from $3 (1: it was set, to $4; 0: unset).
	 * set -m also changes SHELLOPTS, which bash exports when it came
	 * from the environment: the command's bash would start with job
	 * control on (its background jobs in groups of their own, out of
	 * reach of kill and timeout=). The subshell turns it off again
	 * before the exec (a builtin; its group is made by then), unless
	 * it was on before the wrapper's set -m (a: $- at the start), so
	 * the command gets the options as they came. */
	sb_adds(sb, "_dfe=${_dfd%/cmd/*}/env\n"
		"( case $3 in 1) BASH_ENV=$4; export BASH_ENV ;; 0) unset BASH_ENV ;; esac\n"
		"[ -n \"$_dfj\" ] && case $_dfa in *m*) ;; *) set +m ;; esac\n"
		"case $_dfa in *e*) set -e ;; esac; case $_dfa in *u*) set -u ;; esac\n"
		"case $_dfa in *C*) set -C ;; esac; case $_dfa in *f*) set -f ;; esac\n"
		"set -- \"$_dfr\" \"$_dfd/command\"; [ -z \"$_dfj\" ] && [ -n \"$_dfs\" ] && set -- \"$_dfs\" \"$@\"\n"
		"[ -r \"$_dfe\" ] && . \"$_dfe\"; ");
	for (i = 0; i < spec->n_env; i++) {
		sb_adds(sb, spec->env[i].key);
		sb_addc(sb, '=');
		sh_quote(sb, spec->env[i].value);
		sb_addc(sb, ' ');
	}
	/* setsid: the command gets a process group of its own (its pid), so a
	 * kill of the group reaches everything it started and nothing else.
	 * pgid is written in place, not renamed: whoever reads it (the
	 * launcher, kill) waits until it is not empty, and one short write
	 * is never seen half done. */
	sb_adds(sb, "exec \"$@\" ) <\"$_dfi\" 3>&- >>\"$_dfd/stdout\" 2>>\"$_dfd/stderr\" & _dfp=$!\n"
		"[ -n \"$_dfj\" ] && set +m\n");
	sb_adds(sb, wrapper_holder);
	sb_adds(sb, "echo $_dfp >\"$_dfd/pgid\"\n");
	if (spec->timeout_s > 0)
		sb_addf(sb, wrapper_watchdog_fmt, spec->timeout_s);
	sb_adds(sb, "while :; do _dfu=; wait $_dfp; _dfc=$?; [ -n \"$_dfu\" ] || break; done\n");
	if (spec->timeout_s > 0)
		/* As timeout(1): 124 says the time ran out. */
		sb_adds(sb, "kill $_dfw 2>/dev/null\n"
			"_dfy=; [ -e \"$_dfd/state\" ] && read _dfy <\"$_dfd/state\"\n"
			"[ \"$_dfy\" = timedout ] && _dfc=124\n");
	/* The launcher that waits for the end (add_end_wait) hears it first,
	 * with the status: its answer does not wait for the rename below.
	 * The read-write open never blocks, and nor does the write: with
	 * nobody left to read it, the line is dropped. */
	sb_adds(sb, "[ -p \"$_dfd/end.pipe\" ] && echo \"end $_dfc\" 1<>\"$_dfd/end.pipe\" 2>/dev/null\n"
		/* Then exit: its existence means the streams are final. It is
		 * written in place, by one write(2) of its few bytes: a reader
		 * may find it empty for that instant, and takes an empty exit
		 * for one not written yet (fetch_cmd; the launcher's inline
		 * reads it with read, and sends no end without a status); one
		 * that stays empty (the wrapper died between the two) ends the
		 * command with no status after EMPTY_EXIT_GRACE_MS
		 * (apply_fetch). A rename from a file written first would take
		 * an mv, a program whose start cost a short command 1.6 to 2.4
		 * ms on the bench machine. A write that fails (a full disk)
		 * leaves no exit behind: the record's end is then the
		 * reconcile's (orphan).
		 * Then the holder goes: a write still in flight fails (EPIPE)
		 * rather than wait for a reader that will never come (a writer
		 * that saw no exit finds the holder still there). */
		"echo $_dfc >\"$_dfd/exit\" || rm -f \"$_dfd/exit\"\n"
		"[ -n \"$_dfh\" ] && kill $_dfh 2>/dev/null\n"
		"exec 0</dev/null\n"
		/* The spare FIFOs of the next launch (exec_build_launcher_ex):
		 * made now, after the end, they cost the next command nothing.
		 * (Made while the command ran, they cost a short command 0.9 ms
		 * on the bench machine: the fork and the mkfifo took the CPU
		 * its start needed.) Those still there stay (mkfifo fails on
		 * them). Mode 0600: they are in STATE_DIR, not in a record
		 * (0700), and a reader of a spare stdin.pipe would share the
		 * next command's input. */
		"[ \"$2\" = f ] && mkfifo -m 600 \"${_dfd%/cmd/*}/spare.stdin.pipe\" \"${_dfd%/cmd/*}/spare.end.pipe\" "
		">/dev/null 2>&1\n"
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

/*
 * Writes text to the file $d/NAME. Text that JSON carries unchanged (valid
 * UTF-8) is written by the shell's own printf, quoted: no process at all.
 * Other text goes as base64 in a here-document (its body, added after the
 * line by add_file_bodies), decoded by base64 -d: any byte survives.
 */
static void add_file(struct strbuf *sb, const char *name, const char *text)
{
	if (str_is_utf8(text)) {
		sb_adds(sb, "printf %s ");
		sh_quote(sb, text);
		sb_addf(sb, " >\"$_dfd/%s\"", name);
	} else {
		sb_addf(sb, "base64 -d >\"$_dfd/%s\" <<'DAYTONAFS_EOF'", name);
	}
}

/* The here-document of add_file, if it made one. The delimiter is not base64. */
static void add_file_bodies(struct strbuf *sb, const char *text)
{
	if (str_is_utf8(text))
		return;
	base64_encode(sb, text, strlen(text));
	sb_adds(sb, "\nDAYTONAFS_EOF\n");
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
 * connection, and the first may have run) claims its client token by
 * creating the file $t with noclobber (set -C: an exclusive create, which
 * only one run wins; a builtin, where mkdir was a process). The loser is
 * the replay: it waits for the winner's answer (up to wait_s) and prints
 * it, doing nothing else. The winner's answer goes through _dfsay, which
 * also appends it to $t: one short write, so a replay that sees $t not
 * empty sees the whole line. A create that fails for another reason (the
 * directory not writable, a full disk: $t is not there) claims nothing
 * and goes on: taken for a replay, it waited wait_s for an answer that
 * never came. (Named as the variables are: a function of
 * the sandbox's environment named say, exported by bash, would have been
 * replaced for the command.)
 */
static void add_claim(struct strbuf *sb, long wait_s)
{
	sb_addf(sb, "set -C\n"
		"if { true >\"$_dft\"; } 2>/dev/null; then set +C\n"
		"_dfsay() { echo \"$1\"; echo \"$1\" >>\"$_dft\"; }\n"
		"elif [ -e \"$_dft\" ]; then\n"
		"\tset +C; _dfi=0\n"
		"\twhile [ ! -s \"$_dft\" ] && [ $_dfi -lt %ld ]; do sleep 0.05; _dfi=$((_dfi+1)); done\n"
		"\t[ -s \"$_dft\" ] && cat \"$_dft\" 2>/dev/null || echo 'daytonafs-error replay'\n"
		"\texit 0\n"
		"else set +C\n"
		"_dfsay() { echo \"$1\"; }\n"
		"fi\n",
		wait_s * 20);
}

/*
 * The fast path's wait for the end. With the FIFO end.pipe (made beside
 * stdin.pipe), the launcher holds it open read-write on fd 4 (made before
 * the wrapper starts, so no line can be missed) and reads one line: the
 * wrapper's "end STATUS" once the command has ended, or nothing after
 * wait_ms. zsh and bash time the read out themselves (read -t takes
 * fractions of a second); under another sh a timer process writes a line
 * instead. Without the FIFO, polls: first in steps of 2 ms (most short
 * commands end within tens of ms, and each step costs a sleep process),
 * then of 10 ms; the step counts come from wait_ms. Either way the wait is
 * bounded (a little longer than wait_ms, by the start-up of sleep). e is
 * the status the wrapper sent, if it did.
 */
static void add_end_wait(struct strbuf *sb, long wait_ms)
{
	long fine = wait_ms / 2 < 25 ? wait_ms / 2 : 25;
	long coarse = (wait_ms - fine * 2) / 10;

	sb_addf(sb, "_dfe=\n"
		"if [ -n \"$_dfq\" ]; then\n"
		"\t_dfx=\n"
		"\tif [ -n \"$ZSH_VERSION$BASH_VERSION\" ]; then\n"
		"\t\t[ -e \"$_dfd/exit\" ] || read -t %ld.%03ld _dfx <&4\n"
		"\telse\n"
		"\t\t(sleep %ld.%03ld; echo timer >&4) >/dev/null 2>&1 </dev/null & _dfk=$!\n"
		"\t\t[ -e \"$_dfd/exit\" ] || read _dfx <&4\n"
		"\t\tkill $_dfk 2>/dev/null\n"
		"\tfi\n"
		"\texec 4>&-\n"
		"\tcase $_dfx in 'end '*) _dfe=${_dfx#end } ;; esac\n"
		"else\n", wait_ms / 1000, wait_ms % 1000, wait_ms / 1000, wait_ms % 1000);
	if (fine > 0)
		sb_addf(sb, "_dfi=0; while [ ! -e \"$_dfd/exit\" ] && [ $_dfi -lt %ld ]; do sleep 0.002; _dfi=$((_dfi+1)); done\n",
			fine);
	if (coarse > 0)
		sb_addf(sb, "_dfi=0; while [ ! -e \"$_dfd/exit\" ] && [ $_dfi -lt %ld ]; do sleep 0.01; _dfi=$((_dfi+1)); done\n",
			coarse);
	sb_adds(sb, ":\nfi\n");
}

/*
 * A command that has ended: its exit status (from the wrapper's end line,
 * else from the exit file), then each stream's size and, when it fits,
 * its bytes in base64 (the answer is JSON text, where raw bytes that are
 * not UTF-8 would be replaced). The command has ended, but a process it
 * left behind may still append: the bytes sent must be the whole file at
 * the size sent, else the mount reads the file instead. base64 reads to the
 * end, so growth after the size was taken no longer decodes to that size;
 * sysread asks for one byte more than the size, so growth makes the text
 * longer than the size and it goes the base64 way, which fails the same.
 * Empty streams cost no process. An inline section is only trusted whole,
 * up to its end line.
 */
static void add_inline(struct strbuf *sb, size_t inline_max)
{
	sb_adds(sb, "[ -n \"$_dfe\" ] || { [ -e \"$_dfd/exit\" ] && read _dfe <\"$_dfd/exit\"; }\n"
		"if [ -n \"$_dfe\" ]; then\n"
		"\t_dfy=; [ -e \"$_dfd/state\" ] && read _dfy <\"$_dfd/state\"\n"
		"\techo \"daytonafs-exit $_dfe $_dfy\"\n"
		"\t_dfb=; command -v base64 >/dev/null 2>&1 && _dfb=1\n");
	/* One stream's section: its size (empty when unknown, which drops the
	 * section) and, when it fits, its bytes. */
	/* Under zsh, a stream of plain text (printable ASCII, tabs and
	 * newlines, checked in the C locale, where a character is a byte:
	 * bytes that JSON and the toolbox carry unchanged) comes as itself,
	 * read by the sysread builtin: no process. Its section is
	 * framed by its size: daytonafs-text, the bytes, a newline and
	 * daytonafs-text-end. Else base64 (in an eval: the other shells would
	 * not parse [[ or $'...'). */
	sb_addf(sb, "\tput() {\n"
		"\t\techo \"daytonafs-$1 $2\"\n"
		"\t\tif [ -n \"$2\" ] && [ \"$2\" -gt 0 ] && [ \"$2\" -le %zu ]; then\n"
		"\t\t\tif [ -n \"$ZSH_VERSION\" ] && eval 'local LC_ALL=C _dfa=; zmodload -F zsh/system b:sysread && "
		"sysread -s $(($2+1)) _dfa <\"$_dfd/$1\" && [[ ${#_dfa} -eq $2 && $_dfa != *[^$'\\''\\t\\n'\\''[:print:]]* ]]'; then\n"
		"\t\t\t\techo daytonafs-text; print -rn -- \"$_dfa\"; echo; echo daytonafs-text-end\n"
		"\t\t\telif [ -n \"$_dfb\" ]; then\n"
		"\t\t\t\tbase64 <\"$_dfd/$1\"\n"
		"\t\t\tfi\n"
		"\t\tfi 2>/dev/null\n"
		"\t}\n", inline_max);
	/* Empty streams cost no process. zsh (the toolbox's shell in Daytona's
	 * default image) reads both sizes with its zstat builtin, in an eval
	 * because the other shells would not parse $z[1]. Else one wc for both,
	 * read without a command substitution (the brace group may be a
	 * subshell: it only prints); a line that is not the stream's leaves its
	 * size empty. */
	sb_adds(sb, "\tif [ ! -s \"$_dfd/stdout\" ] && [ ! -s \"$_dfd/stderr\" ]; then\n"
		"\t\techo daytonafs-stdout 0; echo daytonafs-stderr 0\n"
		"\telif [ -n \"$ZSH_VERSION\" ] && eval 'zmodload -F zsh/stat b:zstat && "
		"zstat -A _dfz +size -- \"$_dfd/stdout\" \"$_dfd/stderr\" && _dfu=$_dfz[1] && _dfv=$_dfz[2]' 2>/dev/null; then\n"
		"\t\tput stdout \"$_dfu\"; put stderr \"$_dfv\"\n"
		"\telse\n"
		"\t\twc -c \"$_dfd/stdout\" \"$_dfd/stderr\" 2>/dev/null | {\n"
		"\t\t\t_dfz=; _dfx=; read _dfz _dfx; case $_dfx in */stdout) ;; *) _dfz= ;; esac; put stdout \"$_dfz\"\n"
		"\t\t\t_dfz=; _dfx=; read _dfz _dfx; case $_dfx in */stderr) ;; *) _dfz= ;; esac; put stderr \"$_dfz\"\n"
		"\t\t}\n"
		"\tfi\n"
		"\techo daytonafs-inline-end\n"
		"fi\n");
}

/*
 * The launcher is fed to the toolbox's shell, which may be zsh, bash or sh,
 * so it keeps to what all three read alike. What is taken from the user
 * (command, wrapper with its environment, cwd) survives JSON (which would
 * turn invalid UTF-8 into U+FFFD) and quoting: quoted when it is UTF-8,
 * else in base64 (add_file; the cwd always in base64).
 * mkdir without -p claims the number: a mount that collides with another
 * one simply takes the next number. STATE_DIR/launch/TOKEN makes a replay
 * of the request start nothing (add_claim); claims over 10 minutes old go
 * (looked for once in 16 commands).
 */
int exec_build_launcher(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			const struct exec_spec *spec)
{
	return exec_build_launcher_ex(sb, state_dir, first ? first : 1, token, spec, 0, 0);
}

int exec_build_launcher_ex(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			   const struct exec_spec *spec, long wait_ms, size_t inline_max)
{
	return exec_build_launcher_own(sb, state_dir, first, token, spec, wait_ms, inline_max, true);
}

int exec_build_launcher_own(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			    const struct exec_spec *spec, long wait_ms, size_t inline_max, bool detached)
{
	return exec_build_launcher_with(sb, state_dir, first, token, spec, wait_ms, inline_max, detached, NULL);
}

/*
 * The command's env.K=V for the helper: RECORD/env, in the form of
 * STATE_DIR/env (fs_surface.c), which the helper reads after that one, so
 * these win as they do in the wrapper. A file of the record (0700), not
 * arguments: the command line of a process is anyone's to read.
 */
static void add_record_env(struct strbuf *sb, const struct exec_spec *spec)
{
	for (size_t i = 0; i < spec->n_env; i++) {
		sb_addf(sb, "export %s=", spec->env[i].key);
		sh_quote(sb, spec->env[i].value);
		sb_addc(sb, '\n');
	}
}

/*
 * The helper's install, in the background of a launch that found it
 * missing (in its foreground where the provider may kill what a script
 * leaves behind, not detached: Vercel), on the machine it was built for (bash's HOSTTYPE, zsh's
 * CPUTYPE; uname -m under a shell with neither, dash). Written
 * under a name of this launch, made executable, run once (--check), and
 * only then renamed into place: a launcher never finds half of it. Any
 * failure (no base64, a noexec /tmp) leaves no helper: the wrapper goes on.
 */
static void add_helper_install(struct strbuf *sb, const struct exec_helper *h, bool detached)
{
	sb_addf(sb, "[ -f \"$_dfS/bin/run-%s\" ] || case ${HOSTTYPE:-${CPUTYPE:-$(uname -m 2>/dev/null)}} in ", h->id);
	sh_quote(sb, h->arch);
	/* The directory is made 0700 and must be the user's own, no symlink;
	 * the temporary file is created exclusively (set -C): nothing another
	 * user put there is written through or run. */
	sb_addf(sb, ")\n"
		"( umask 077; _dfx=$_dfS/bin/run-%s; _dfy=$_dfx.$$\n"
		"{ [ -d \"$_dfS/bin\" ] || mkdir -m 700 \"$_dfS/bin\"; } && [ ! -L \"$_dfS/bin\" ] && [ -O \"$_dfS/bin\" ] && "
		"rm -f \"$_dfy\" && { set -C; base64 -d >\"$_dfy\"; } && set +C && chmod 700 \"$_dfy\" && "
		"[ \"$(\"$_dfy\" --check 2>/dev/null)\" = 'daytonafs-run ok' ] && mv -f \"$_dfy\" \"$_dfx\"\n"
		"rm -f \"$_dfy\" ) >/dev/null 2>&1 <<'DAYTONAFS_EOF'%s\n",
		h->id, detached ? " &" : "");
	base64_encode(sb, h->bin, h->len);
	sb_adds(sb, "\nDAYTONAFS_EOF\n;; esac\n");
}

int exec_build_launcher_with(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			     const struct exec_spec *spec, long wait_ms, size_t inline_max, bool detached,
			     const struct exec_helper *helper)
{
	struct strbuf wrapper = STRBUF_INIT, env = STRBUF_INIT;
	const char *cmd = spec->command ? spec->command : "";
	bool use_helper = helper && helper->id && *helper->id, installs = false;
	int rc;

	if (!token_valid(token))
		return -EINVAL;
	rc = exec_build_wrapper(&wrapper, spec);
	if (rc < 0)
		goto out;
	add_record_env(&env, spec);
	if (env.oom) {
		rc = -ENOMEM;
		goto out;
	}
	/* Only text crosses the API unchanged: a value that is not UTF-8
	 * goes in the wrapper, in base64 (add_file). The helper reads its
	 * files a line at a time: a value with a newline (ctl's "\n" in
	 * double quotes) goes there too. */
	if (!str_is_utf8(sb_str(&env)))
		use_helper = false;
	for (size_t i = 0; i < spec->n_env && use_helper; i++)
		if (strchr(spec->env[i].value, '\n'))
			use_helper = false;
	/* A bash toolbox shell takes errexit, nounset, noclobber and noglob
	 * from an exported SHELLOPTS: nounset ended the launcher at its first
	 * test of ZSH_VERSION. It runs without them, and puts them back for
	 * the wrapper's start only: bash exports SHELLOPTS as its options are
	 * when it starts a program, and the command must get them as they
	 * came (the wrapper keeps them for it: exec_build_wrapper). */
	sb_adds(sb, "_dfA=$-; set +euCf\n_dfS=");
	sh_quote(sb, state_dir);
	/* Each process the launcher starts is time the user waits for: tests
	 * and builtins first, and the housekeeping in the background. */
	/* m makes a directory: under zsh (Daytona's toolbox shell) the
	 * zf_mkdir builtin of its zsh/files module, loaded alone (it shadows
	 * nothing): the record's mkdir costs no process. Mode 0700 (cmd,
	 * launch and each record): run holds the command's env.K=V values,
	 * which may be secrets, as NAME/env's file (0600) does; other users
	 * of the sandbox read none of it (the mount reads as the owner). */
	sb_adds(sb, "\ncase $_dfS in /*) ;; *) _dfS=$PWD/$_dfS ;; esac\n"
		"_dfm=mkdir; _dfv=\n"
		"[ -n \"$ZSH_VERSION\" ] && zmodload -F zsh/files b:zf_mkdir b:zf_mv 2>/dev/null && _dfm=zf_mkdir _dfv=1\n"
		"[ -d \"$_dfS/cmd\" ] && [ -d \"$_dfS/launch\" ] || $_dfm -p -m 700 \"$_dfS/cmd\" \"$_dfS/launch\" 2>/dev/null\n"
		"[ -d \"$_dfS/cmd\" ] && [ -d \"$_dfS/launch\" ] || { echo 'daytonafs-error state directory'; exit 0; }\n");
	sb_addf(sb, "_dft=$_dfS/launch/%s\n", token);
	add_claim(sb, LAUNCH_TIMEOUT_S - 5);
	if (spec->cwd && *spec->cwd) {
		/* The x keeps a trailing newline of the name from $(...). */
		sb_adds(sb, "_dfc=$(");
		add_decoder(sb, spec->cwd, strlen(spec->cwd));
		sb_adds(sb, "; echo x); _dfc=${_dfc%x}\n"
			"cd -- \"$_dfc\" 2>/dev/null || { _dfsay 'daytonafs-error cwd'; exit 0; }\n");
	}
	if (first) {
		sb_addf(sb, "_dfn=%u; _dfi=0\n", first);
	} else {
		/* The history, and the number after its highest. ls, not a glob:
		 * zsh fails on a glob that matches nothing; $(...) is split into
		 * words by zsh too. Names too long for sh's arithmetic are left
		 * to the mkdir loop below. */
		sb_adds(sb, "_dfn=0\n"
			"for _dfx in $(ls \"$_dfS/cmd\" 2>/dev/null); do\n"
			"\tcase $_dfx in ''|0*|*[!0-9]*) continue ;; esac\n"
			"\techo \"daytonafs-have $_dfx\"\n"
			"\t[ ${#_dfx} -le 9 ] && [ $_dfx -gt $_dfn ] && _dfn=$_dfx\n"
			"done\n"
			"echo daytonafs-have-end\n"
			"_dfn=$((_dfn+1)); _dfi=0\n");
	}
	sb_adds(sb, "while ! $_dfm -m 700 \"$_dfS/cmd/$_dfn\" 2>/dev/null; do\n"
		"\t_dfi=$((_dfi+1)); _dfn=$((_dfn+1))\n"
		"\tif [ $_dfi -ge 1000 ]; then _dfsay 'daytonafs-error mkdir'; exit 0; fi\n"
		"done\n"
		"_dfd=$_dfS/cmd/$_dfn\n"
		/* H: the helper, when it is there, the sandbox user's own (a
		 * file another user made in a shared STATE_DIR is not run). */
		"_dfH=\n"
		/* The old claims go, by a process of its own: once in 16
		 * commands is enough to keep them few. */
		"if [ $((_dfn % 16)) = 1 ]; then\n"
		"\tfind \"$_dfS/launch\" -mindepth 1 -maxdepth 1 -mmin +10 -exec rm -rf {} + >/dev/null 2>&1 </dev/null &\n"
		"fi\n"
		"");
	/* Its directory and itself the sandbox user's own and no symlinks
	 * (-O follows one): nobody else can have put it there or swap it. */
	if (use_helper)
		sb_addf(sb, "_dfx=$_dfS/bin/run-%s\n"
			"[ -d \"$_dfS/bin\" ] && [ ! -L \"$_dfS/bin\" ] && [ -O \"$_dfS/bin\" ] && [ -f \"$_dfx\" ] && "
			"[ ! -L \"$_dfx\" ] && [ -x \"$_dfx\" ] && [ -O \"$_dfx\" ] && _dfH=$_dfx\n", helper->id);
	/* Missing on a machine it runs on, and this launch brings no
	 * install: say so (the sandbox lost it, a restart that emptied /tmp
	 * say), and the mount sends it again. (Where the shell does not name
	 * the machine, dash, nothing is said: a uname on every launch would
	 * cost more than the helper saves.) */
	if (use_helper && !helper->bin && helper->arch && *helper->arch) {
		sb_adds(sb, "[ -n \"$_dfH\" ] || case ${HOSTTYPE:-${CPUTYPE:-}} in ");
		sh_quote(sb, helper->arch);
		sb_adds(sb, ") echo daytonafs-nohelper ;; esac\n");
	}
	/* The helper reads the command's variables from the record; the
	 * wrapper script has them in itself. */
	sb_adds(sb, "if ");
	add_file(sb, "command", cmd);
	sb_adds(sb, " && if [ -n \"$_dfH\" ]; then ");
	if (use_helper && env.len)
		add_file(sb, "env", env.buf);
	else
		sb_adds(sb, ":");
	sb_adds(sb, "; else ");
	add_file(sb, "run", wrapper.buf);
	sb_adds(sb, "; fi; then\n");
	add_file_bodies(sb, cmd);
	add_file_bodies(sb, wrapper.buf);
	/* A half-made command gets an exit, so it does not look running forever. */
	sb_adds(sb, ":; else\n"
		"\techo 'daytonafs: could not set up the command' >>\"$_dfd/stderr\"\n"
		"\techo 127 >\"$_dfd/exit\"; _dfsay \"daytonafs-error setup $_dfn\"; exit 0\n"
		"fi\n");
	/* Without a FIFO the command's stdin is /dev/null. The FIFOs are
	 * made by one mkfifo for both (a process less). Under zsh, whose
	 * zf_mv builtin renames without a process, they are the spares
	 * STATE_DIR/spare.*.pipe instead, when there are: the wrapper of the
	 * command before made them once its command had ended, off the way
	 * of this one (asked by its argument f). A spare that another launch
	 * took first (rename is atomic) or that is not there is made here.
	 * The spare end.pipe is moved in once the wrapper is on its way (l):
	 * a rename is a metadata write, and the wrapper's first end line
	 * comes after two program starts. Should it come first all the same
	 * (the launcher held up for milliseconds), the line is lost and the
	 * wait ends at wait_ms with the exit file: later, never wrong. */
	sb_adds(sb, "if [ -n \"$_dfv\" ]; then\n"
		"\tzf_mv \"$_dfS/spare.stdin.pipe\" \"$_dfd/stdin.pipe\" 2>/dev/null\n"
		"fi\n"
		"set --; [ -p \"$_dfd/stdin.pipe\" ] || set -- \"$_dfd/stdin.pipe\"\n");
	if (wait_ms > 0)
		sb_adds(sb, "_dfl=; [ -n \"$_dfv\" ] && [ -p \"$_dfS/spare.end.pipe\" ] && _dfl=1\n"
			"[ -n \"$_dfl\" ] || [ -p \"$_dfd/end.pipe\" ] || set -- \"$@\" \"$_dfd/end.pipe\"\n");
	sb_adds(sb, "[ $# = 0 ] || mkfifo \"$@\" 2>/dev/null\n");
	if (wait_ms > 0)
		sb_adds(sb, "_dfq=; [ -p \"$_dfd/end.pipe\" ] && exec 4<>\"$_dfd/end.pipe\" && _dfq=1\n");
	/* The wrapper runs under bash when there is one (looked up with
	 * builtins, absolute entries of PATH only, as the wrapper looks up
	 * the command's): its job control gives the command its process
	 * group without a setsid (exec_build_wrapper). Where the provider
	 * kills nothing that the script left running (detached: Daytona,
	 * whose toolbox kills the shell's group only at the request's
	 * timeout, which this launch, bounded by wait_ms and the 5 s wait for
	 * pgid, stays far below), the wrapper needs no session of its own:
	 * its descriptors hold no pipe of the toolbox. Elsewhere setsid gives
	 * it one. If that kill comes all the same (a starved sandbox), the
	 * wrapper dies and the command, in a group of its own, runs on: kill
	 * finds that group by the record and stops it (ours, kill_script).
	 * The wrapper is not moved out of the toolbox's group: only the
	 * launcher's shell could do it without a program, by job control,
	 * and zsh (Daytona's toolbox shell) and dash refuse set -m without a
	 * terminal (zsh even ends the script); bash alone would, for one
	 * image of two. */
	sb_adds(sb, "_dfw=sh; _dfg=\n"
		"if [ -z \"$_dfH\" ]; then\n"
		"if [ -n \"$ZSH_VERSION\" ]; then setopt shwordsplit; else set -f; fi\n"
		"IFS=:\n"
		"for _dfx in $PATH; do\n"
		"\tcase $_dfx in /*) ;; *) continue ;; esac\n"
		"\t[ \"$_dfw\" != sh ] || { [ -f \"$_dfx/bash\" ] && [ -x \"$_dfx/bash\" ] && _dfw=$_dfx/bash; }\n");
	if (!detached)
		sb_adds(sb, "\t[ -n \"$_dfg\" ] || { [ -f \"$_dfx/setsid\" ] && [ -x \"$_dfx/setsid\" ] && _dfg=$_dfx/setsid; }\n");
	sb_adds(sb, "done\n"
		"unset IFS\n"
		"if [ -n \"$ZSH_VERSION\" ]; then unsetopt shwordsplit; else set +f; fi\n"
		"fi\n"
		"_dfz=0; [ -n \"${BASH_ENV+x}\" ] && _dfz=1; _dfo=${BASH_ENV-}\n"
		"case $_dfA in *e*) set -e ;; esac; case $_dfA in *u*) set -u ;; esac\n"
		"case $_dfA in *C*) set -C ;; esac; case $_dfA in *f*) set -f ;; esac\n"
		"if [ -n \"$_dfH\" ]; then\n");
	/* The helper: its first argument names the record as the wrapper's
	 * command line did (the kill script's alive looks for it); f asks
	 * for the spare FIFOs, s for a session of its own. It needs no
	 * BASH_ENV set aside: it is no bash, and the command's bash gets the
	 * variable as it came. */
	sb_addf(sb, "\"$_dfH\" \"$_dfd/run\" \"${_dfv:+f}%s\" %ld >/dev/null 2>&1 </dev/null 4>&- &\n"
		"else\n"
		"BASH_ENV= ${_dfg:+\"$_dfg\"} \"$_dfw\" \"$_dfd/run\" \"$_dfd\" \"${_dfv:+f}\" $_dfz \"$_dfo\" \"$_dfw\" >/dev/null 2>&1 </dev/null 4>&- &\n"
		"fi\n"
		"_dfK=$!; set +euCf\n", detached ? "-" : "s", spec->timeout_s > 0 ? spec->timeout_s : 0L);
	if (wait_ms > 0)
		sb_adds(sb, "[ -n \"$_dfl\" ] && zf_mv \"$_dfS/spare.end.pipe\" \"$_dfd/end.pipe\" 2>/dev/null && "
			"exec 4<>\"$_dfd/end.pipe\" && _dfq=1\n");
	sb_adds(sb, "echo $_dfK >\"$_dfd/wpid\"\n"
		/* The streams are made once the wrapper is on its way, not
		 * before: each file made is a metadata write, which a short
		 * command's answer would wait for (0.2-0.7 ms each on the bench
		 * machine's disk). The command's own >> makes them if it comes
		 * first; >> here never truncates what it wrote. */
		"[ -n \"$_dfH\" ] || { : >>\"$_dfd/stdout\"; : >>\"$_dfd/stderr\"; }\n");
	/* The wrapper writes pgid before it waits, and exit after: an ended
	 * command has its pgid. */
	if (wait_ms > 0)
		add_end_wait(sb, wait_ms);
	/* Started means the command has its process group: kill works from now. */
	/* A helper that could not even start (gone or made unrunnable since
	 * the test above, in that instant) leaves no pgid and no exit: the
	 * record would look running until a reconcile. Each 100 ms of the
	 * wait it is looked at (k: dead, no process or a zombie, by a builtin
	 * read of its stat); once dead, the command ends here, 127, as a
	 * shell's failed exec does. */
	sb_adds(sb, "_dfi=0; _dfk=\n"
		"while [ ! -s \"$_dfd/pgid\" ] && [ ! -e \"$_dfd/exit\" ] && [ $_dfi -lt 500 ]; do\n");
	if (use_helper)
		sb_adds(sb, "\tif [ -n \"$_dfH\" ] && [ $((_dfi % 10)) = 0 ]; then\n"
			"\t\t_dfz=Z; if kill -0 $_dfK 2>/dev/null; then _dfz=; { read _dfz <\"/proc/$_dfK/stat\"; } 2>/dev/null; "
			"_dfz=${_dfz##*) }; fi\n"
			"\t\tcase $_dfz in Z*|X*) _dfk=1; break ;; esac\n"
			"\tfi\n");
	sb_adds(sb, "\tsleep 0.01; _dfi=$((_dfi+1))\n"
		"done\n");
	/* (A helper still alive but slow, a starved sandbox: its streams are
	 * made here, as the wrapper's were before it started.) */
	if (use_helper)
		sb_adds(sb, "if [ -n \"$_dfH\" ] && [ ! -s \"$_dfd/pgid\" ]; then\n"
			"\t: >>\"$_dfd/stdout\"; : >>\"$_dfd/stderr\"\n"
			"\tif [ -n \"$_dfk\" ] && [ ! -e \"$_dfd/exit\" ]; then\n"
			"\t\techo \"daytonafs: $_dfH did not start\" >>\"$_dfd/stderr\"; echo 127 >\"$_dfd/exit\"\n"
			"\tfi\n"
			"fi\n");
	sb_adds(sb, "_dfsay \"daytonafs-started $_dfn\"\n");
	if (wait_ms > 0)
		add_inline(sb, inline_max);
	if (use_helper && helper->bin && helper->len && helper->arch && *helper->arch) {
		add_helper_install(sb, helper, detached);
		installs = true;
	}
	rc = sb->oom ? -ENOMEM : installs;
out:
	sb_free(&wrapper);
	sb_free(&env);
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
	"\t_dfw=$(cat \"$_dfd/wpid\" 2>/dev/null)\n"
	"\tcase $_dfw in ''|*[!0-9]*) _dfw=; return 0 ;; esac\n"
	"\tkill -0 \"$_dfw\" 2>/dev/null || return 1\n"
	"\t_dfz=$(cat \"/proc/$_dfw/stat\" 2>/dev/null); _dfz=${_dfz##*) }\n"
	"\tcase $_dfz in Z*|X*) return 1 ;; esac\n"
	"\tcase $(tr '\\000' ' ' <\"/proc/$_dfw/cmdline\" 2>/dev/null) in\n"
	"\t''|*\"/cmd/${_dfd##*/}/run\"*) return 0 ;;\n"
	"\tesac\n"
	"\treturn 1\n"
	"}\n"
	/* Ends the record as killed by the restart. */
	"orphan() {\n"
	"\t[ -s \"$_dfd/state\" ] || echo killed >\"$_dfd/state\"\n"
	"\techo 137 >\"$_dfd/exit.$$\" && mv -f \"$_dfd/exit.$$\" \"$_dfd/exit\"\n"
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
 * Whether the command's process group $p still runs something of record
 * $d although the wrapper is gone (the toolbox killed the group of its
 * shell, where the wrapper is on Daytona; the command's group survives):
 * a member of the group, not a zombie, runs $d's command or writes to its
 * stdout or stderr. A pgid alone is not enough: after a restart of the
 * sandbox the number may be anyone's. Without /proc nothing can tell: no.
 */
static const char ours_fn[] =
	"ours() {\n"
	"\t[ -n \"$_dfp\" ] && [ -d /proc/self ] || return 1\n"
	"\tfor _dfx in /proc/[0-9]*; do\n"
	"\t\t_dfz=; { read _dfz <\"$_dfx/stat\"; } 2>/dev/null || continue\n"
	"\t\t_dfz=${_dfz##*) }; set -f; set -- $_dfz; set +f\n"
	"\t\t[ \"$3\" = \"$_dfp\" ] || continue\n"
	"\t\tcase $1 in Z*|X*) continue ;; esac\n"
	"\t\tcase $({ readlink \"$_dfx/fd/1\"; readlink \"$_dfx/fd/2\"; tr '\\000' ' ' <\"$_dfx/cmdline\"; } 2>/dev/null) in\n"
	"\t\t*\"$_dfd/stdout\"*|*\"$_dfd/stderr\"*|*\"$_dfd/command\"*) return 0 ;;\n"
	"\t\tesac\n"
	"\tdone\n"
	"\treturn 1\n"
	"}\n";

/*
 * The kill script. state is written first, so that the exit the wrapper
 * records reads as "killed". When the wrapper is gone, the command's group
 * is signalled all the same if it still runs the record's command (ours):
 * the toolbox may have killed the wrapper's group and left the command's.
 * Then nobody else records the end: the script does, with 137, once
 * nothing of the group runs (at most 3 s: the KILL comes at 2 s). When
 * neither runs (the sandbox was restarted under them), the pids mean
 * nothing now: nothing is signalled and the record is ended here. It
 * returns once the command has ended, or 3 s after the TERM.
 */
static const char kill_script[] =
	"if [ -e \"$_dfd/exit\" ]; then _dfsay daytonafs-ended; exit 0; fi\n"
	"_dfi=0\n"
	"while [ ! -s \"$_dfd/pgid\" ] && [ $_dfi -lt 200 ]; do sleep 0.01; _dfi=$((_dfi+1)); done\n"
	"_dfp=$(cat \"$_dfd/pgid\" 2>/dev/null)\n"
	"case $_dfp in ''|*[!0-9]*) _dfp= ;; esac\n"
	"_dfl=\n"
	"if [ -n \"$_dfp\" ]; then if alive; then _dfl=1; elif ours; then _dfl=0; fi; fi\n"
	"if [ -z \"$_dfl\" ]; then\n"
	"\t[ -e \"$_dfd/exit\" ] || orphan\n"
	"\t_dfsay daytonafs-killed; exit 0\n"
	"fi\n"
	"echo killed >\"$_dfd/state\"\n"
	"if kill -TERM -$_dfp 2>/dev/null || kill -TERM $_dfp 2>/dev/null; then\n"
	"\t_dfk='sleep 2; kill -KILL -$1 2>/dev/null || kill -KILL $1 2>/dev/null'\n"
	"\tif command -v setsid >/dev/null 2>&1; then\n"
	"\t\tsetsid sh -c \"$_dfk\" sh $_dfp >/dev/null 2>&1 </dev/null &\n"
	"\telse\n"
	"\t\tsh -c \"$_dfk\" sh $_dfp >/dev/null 2>&1 </dev/null &\n"
	"\tfi\n"
	/* Done when it has ended (usually at once; 2 s for one that ignores
	 * TERM), so that status says "killed" after the write: when exit
	 * holds its status (-s: the wrapper writes it in place, and an empty
	 * one is not read as an end). */
	"\t_dfi=0\n"
	"\tif [ $_dfl = 1 ]; then\n"
	"\t\twhile [ ! -s \"$_dfd/exit\" ] && [ $_dfi -lt 150 ]; do sleep 0.02; _dfi=$((_dfi+1)); done\n"
	"\telse\n"
	"\t\twhile ours && [ $_dfi -lt 30 ]; do sleep 0.1; _dfi=$((_dfi+1)); done\n"
	"\tfi\n"
	"fi\n"
	/* Without a wrapper the end is recorded here; a group that outlived
	 * its SIGKILL (a process stuck in the kernel) ends as it will. */
	"[ $_dfl = 0 ] && [ ! -e \"$_dfd/exit\" ] && orphan\n"
	"_dfsay daytonafs-killed\n";

/* An sh -c of: var=dir, the alive function, then body. */
static void build_alive_script(struct strbuf *sb, const char *var, const char *dir, const char *body)
{
	struct strbuf script = STRBUF_INIT;

	add_dir(&script, var, dir);
	sb_adds(&script, alive_fn);
	sb_adds(&script, ours_fn);
	sb_adds(&script, body);
	add_sh_c(sb, &script);
	sb_free(&script);
}

/*
 * With a token, cmd_dir/kill.TOKEN claims the kill (add_claim): Daytona's
 * proxy may send the request twice (FIDELITY D7), and the second run found
 * the command ended by the first and said so, a kill that worked reported
 * as ESRCH. The replay prints the first run's answer instead.
 */
int exec_build_kill(struct strbuf *sb, const char *cmd_dir, const char *token)
{
	struct strbuf body = STRBUF_INIT;

	if (token && !token_valid(token))
		return -EINVAL;
	if (token) {
		sb_addf(&body, "_dft=$_dfd/kill.%s\n", token);
		add_claim(&body, KILL_TIMEOUT_S - 5);   /* (no record: nothing claimed) */
	} else {
		sb_adds(&body, "_dfsay() { echo \"$1\"; }\n");
	}
	sb_adds(&body, kill_script);
	if (body.oom)
		sb->oom = true;
	else
		build_alive_script(sb, "_dfd", cmd_dir, body.buf);
	sb_free(&body);
	return sb->oom ? -ENOMEM : 0;
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
	add_dir(sb, "_dfd", cmd_dir);
	sb_addf(sb, "_dft=$_dfd/stdin.b.%s\n", batch_id);
	/* No record: nothing to claim in (add_claim goes on unclaimed), and
	 * nothing to feed (nostdin below). */
	add_claim(sb, STDIN_TIMEOUT_S - 5);
	if (done_id)
		sb_addf(sb, "rm -rf \"$_dfd/stdin.b.%s\" 2>/dev/null\n", done_id);
	sb_adds(sb, "if [ -e \"$_dfd/exit\" ]; then _dfsay daytonafs-ended\n"
		"elif [ -e \"$_dfd/stdin.eof\" ]; then _dfsay daytonafs-closed\n"
		"elif [ ! -p \"$_dfd/stdin.pipe\" ]; then _dfsay daytonafs-nostdin\n"
		"elif ");
	add_decoder(sb, data, len);
	sb_adds(sb, " >\"$_dfd/stdin.pipe\"; then _dfsay daytonafs-written\n"
		"else _dfsay daytonafs-failed\n"
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
	"[ -e \"$_dfd/stdin.eof\" ] || : >\"$_dfd/stdin.eof\"\n"
	"_dfh=$(cat \"$_dfd/stdin.holder\" 2>/dev/null)\n"
	"case $_dfh in ''|*[!0-9]*) _dfh= ;; esac\n"
	"if [ -n \"$_dfh\" ] && [ ! -e \"$_dfd/exit\" ]; then\n"
	"\tif [ ! -d /proc/self ]; then\n"
	"\t\tkill $_dfh 2>/dev/null\n"
	"\telif [ -d \"/proc/$_dfh\" ]; then\n"
	"\t\tcase $(readlink \"/proc/$_dfh/fd/0\" 2>/dev/null) in\n"
	"\t\t''|*/stdin.pipe) kill $_dfh 2>/dev/null ;;\n"
	"\t\tesac\n"
	"\tfi\n"
	"fi\n"
	"echo daytonafs-closed\n";

void exec_build_stdin_close(struct strbuf *sb, const char *cmd_dir)
{
	struct strbuf script = STRBUF_INIT;

	add_dir(&script, "_dfd", cmd_dir);
	sb_adds(&script, stdin_close_script);
	add_sh_c(sb, &script);
	sb_free(&script);
}

/*
 * The records without an exit whose wrapper is gone. A record without a
 * wrapper pid is being started, unless its command file is over a minute
 * old (the command file, not the run script: the helper needs none).
 */
static const char reconcile_script[] =
	"for _dfd in \"$_dfS\"/cmd/*; do\n"
	"\t[ -f \"$_dfd/command\" ] && [ ! -e \"$_dfd/exit\" ] || continue\n"
	"\tif alive; then\n"
	"\t\t[ -n \"$_dfw\" ] && continue\n"
	"\t\t[ -n \"$(find \"$_dfd/command\" -mmin +1 2>/dev/null)\" ] || continue\n"
	"\tfi\n"
	"\t[ -e \"$_dfd/exit\" ] && continue\n"
	/* The wrapper is gone but the command runs on (ours): not ended. */
	"\t_dfp=$(cat \"$_dfd/pgid\" 2>/dev/null); case $_dfp in ''|*[!0-9]*) _dfp= ;; esac\n"
	"\tours && continue\n"
	"\torphan && echo \"daytonafs-orphan ${_dfd##*/}\"\n"
	"done\n"
	"echo daytonafs-reconciled\n";

void exec_build_reconcile(struct strbuf *sb, const char *state_dir)
{
	build_alive_script(sb, "_dfS", state_dir, reconcile_script);
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

/* Whether line[0..len) could be a line of base64(1)'s output. */
static bool b64_line(const char *line, size_t len)
{
	size_t i;

	if (!len)
		return false;
	for (i = 0; i < len; i++) {
		char c = line[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
		      c == '/' || c == '='))
			return false;
	}
	return true;
}

/* A size as wc -c prints it (spaces around allowed): 0 and *v, else -1. */
static int parse_size(const char *p, const char *end, uint64_t *v)
{
	uint64_t x = 0;
	bool any = false;

	while (p < end && *p == ' ')
		p++;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*p - '0');
		any = true;
	}
	while (p < end && (*p == ' ' || *p == '\r'))
		p++;
	if (!any || p != end)
		return -1;
	*v = x;
	return 0;
}

/* Whether line[0..len) is tag, followed by the end or a space (then *rest). */
static bool tag_line(const char *line, size_t len, const char *tag, const char **rest)
{
	size_t t = strlen(tag);

	if (len < t || memcmp(line, tag, t))
		return false;
	if (len == t || (len == t + 1 && line[t] == '\r')) {
		*rest = line + len;
		return true;
	}
	if (line[t] != ' ')
		return false;
	*rest = line + t + 1;
	return true;
}

void exec_launch_result_free(struct exec_launch_result *r)
{
	free(r->have);
	free(r->data[0]);
	free(r->data[1]);
	memset(r, 0, sizeof(*r));
}

int exec_parse_launch_result(const char *output, struct exec_launch_result *r)
{
	static const char *const stream_tags[2] = { "daytonafs-stdout", "daytonafs-stderr" };
	struct strbuf b64[2] = { STRBUF_INIT, STRBUF_INIT }, text[2] = { STRBUF_INIT, STRBUF_INIT };
	bool seen[2] = { false, false }, noise[2] = { false, false }, seen_text[2] = { false, false };
	bool in_inline = false, inline_end = false, bad = false, have_end = false;
	size_t cap_have = 0;
	const char *p, *rest;
	int cur = -1, rc, s;
	unsigned n;

	memset(r, 0, sizeof(*r));
	rc = exec_parse_launch(output, &r->n);
	if (rc < 0)
		return rc;
	for (p = output; *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		const char *end = p + len;

		if (!in_inline && tag_line(p, len, "daytonafs-nohelper", &rest)) {
			r->no_helper = true;
		} else if (tag_line(p, len, "daytonafs-have", &rest)) {
			char num[16];
			size_t l = (size_t)(end - rest);

			if (l < sizeof(num)) {
				memcpy(num, rest, l);
				num[l] = '\0';
				if (exec_parse_cmd_name(num, &n)) {
					if (r->n_have == cap_have) {
						size_t nc = cap_have ? cap_have * 2 : 64;
						unsigned *a = realloc(r->have, nc * sizeof(*a));

						if (!a)
							goto oom;
						r->have = a;
						cap_have = nc;
					}
					r->have[r->n_have++] = n;
				}
			}
		} else if (tag_line(p, len, "daytonafs-have-end", &rest)) {
			have_end = true;
		} else if (tag_line(p, len, "daytonafs-exit", &rest)) {
			const char *sp = memchr(rest, ' ', (size_t)(end - rest));
			const char *code_end = sp ? sp : end;

			in_inline = true;
			if (exec_parse_exit(rest, (size_t)(code_end - rest), &r->exit_code) < 0)
				bad = true;
			r->state = sp ? exec_parse_state(sp + 1, (size_t)(end - sp - 1)) : EXEC_EXITED;
			cur = -1;
		} else if (in_inline && tag_line(p, len, "daytonafs-inline-end", &rest)) {
			inline_end = true;
			cur = -1;
		} else if (in_inline && (tag_line(p, len, stream_tags[0], &rest) ||
					 tag_line(p, len, stream_tags[1], &rest))) {
			cur = !memcmp(p, stream_tags[1], strlen(stream_tags[1]));
			if (seen[cur] || parse_size(rest, end, &r->size[cur]) < 0)
				bad = true;
			seen[cur] = true;
		} else if (in_inline && !inline_end && cur >= 0 && tag_line(p, len, "daytonafs-text", &rest) &&
			   rest == end) {
			/* The stream as itself: exactly size bytes, a newline and
			 * the end tag. Anything else means the framing is not
			 * what was sent: nothing of the inline part is trusted. */
			const char *body = eol ? eol + 1 : end;
			size_t left = strlen(body);
			uint64_t sz = r->size[cur];
			static const char tail[] = "\ndaytonafs-text-end";

			if (!eol || seen_text[cur] || b64[cur].len || sz > left ||
			    left - (size_t)sz < sizeof(tail) - 1 ||
			    memcmp(body + sz, tail, sizeof(tail) - 1) ||
			    !(body[sz + sizeof(tail) - 1] == '\n' || body[sz + sizeof(tail) - 1] == '\0' ||
			      body[sz + sizeof(tail) - 1] == '\r')) {
				bad = true;
				break;
			}
			sb_add(&text[cur], body, (size_t)sz);
			seen_text[cur] = true;
			p = body + sz + sizeof(tail) - 1;
			if (*p == '\r')
				p++;
			if (*p == '\n')
				p++;
			cur = -1;
			continue;
		} else if (in_inline && !inline_end && cur >= 0) {
			if (len && p[len - 1] == '\r')
				len--;
			if (b64_line(p, len))
				sb_add(&b64[cur], p, len);
			else
				noise[cur] = true;   /* a tool's complaint: not these bytes */
		}
		p = eol ? eol + 1 : end;
	}
	r->listed = have_end;
	if (!r->listed) {
		free(r->have);
		r->have = NULL;
		r->n_have = 0;
	}
	if (in_inline && inline_end && !bad && seen[0] && seen[1]) {
		r->ended = true;
		for (s = 0; s < 2; s++) {
			struct strbuf dec = STRBUF_INIT;

			if (r->size[s] == 0) {
				r->inline_ok[s] = true;
				continue;
			}
			if (seen_text[s]) {
				/* framed by its size: text[s] holds size[s] bytes */
				if (!noise[s] && !text[s].oom && text[s].len == r->size[s]) {
					r->data[s] = sb_detach(&text[s]);
					r->inline_ok[s] = r->data[s] != NULL;
				}
				continue;
			}
			if (noise[s] || !b64[s].len)
				continue;
			if (base64_decode(&dec, b64[s].buf, b64[s].len) == 0 && dec.len == r->size[s]) {
				r->data[s] = sb_detach(&dec);
				r->inline_ok[s] = r->data[s] != NULL;
			}
			sb_free(&dec);
		}
	} else {
		r->size[0] = r->size[1] = 0;
		r->exit_code = 0;
		r->state = EXEC_RUNNING;
	}
	if (b64[0].oom || b64[1].oom || text[0].oom || text[1].oom)
		goto oom;
	sb_free(&b64[0]);
	sb_free(&b64[1]);
	sb_free(&text[0]);
	sb_free(&text[1]);
	return 0;
oom:
	/* The command started all the same: only the extras are lost. */
	sb_free(&b64[0]);
	sb_free(&b64[1]);
	sb_free(&text[0]);
	sb_free(&text[1]);
	n = r->n;
	exec_launch_result_free(r);
	r->n = n;
	r->state = EXEC_RUNNING;
	return 0;
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

void exec_parse_listing(const struct sp_fileinfo *fi, size_t n, struct exec_listing *out)
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
	o->state_dir = EXEC_STATE_DIR_DEFAULT;
	o->poll_min_ms = 50;
	o->poll_max_ms = 1000;
	o->list_ttl_ms = 5000;
	o->wait_ms = 200;
	o->inline_max = 64 * 1024;
	o->helper = true;
}
