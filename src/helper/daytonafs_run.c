/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytonafs_run.c - daytonafs-run, the wrapper of a command as a program.
 *
 * It runs inside the sandbox, not in the mount: the launcher of a command
 * (exec_script.c) starts it, where it finds it installed, in place of the
 * wrapper script, and does the same job: it gives the command its streams
 * (the record's stdin FIFO, stdout, stderr), the variables of STATE_DIR/env
 * and of the command's env.K=V, a process group of its own and a timeout;
 * it waits for the command's end and records it (end.pipe, exit), then
 * makes the next launch's spare FIFOs. The files it writes are the
 * wrapper's (exec_build_wrapper; it also makes the streams before pgid,
 * and leaves an empty run), so the kill, stdin and reconcile scripts and
 * the mount read a record alike whichever made it.
 *
 * Why a program: a short command waits for every program start before
 * its own, and the wrapper script was one more bash (about 2.5 ms of an
 * `exec true` on the bench machine, with its setup and its wait). This
 * one is linked statically against musl (no dynamic loader, under 40 KB),
 * and the mount sends it along with a launch for the launcher to install
 * (STATE_DIR/bin/run-ID, ID: a hash of its bytes).
 *
 *   daytonafs-run --check                  prints "daytonafs-run ok"
 *   daytonafs-run RECORD/run FLAGS TIMEOUT
 *
 * RECORD/run names the record as the wrapper's command line did (the kill
 * script tells a live wrapper by it, in /proc/PID/cmdline); the file need
 * not exist. FLAGS: f, make the spare FIFOs after the end; s, a session of
 * its own (where the provider kills what the launcher's shell leaves
 * behind); "-" for none. TIMEOUT: seconds, 0 for none.
 *
 * The variables: STATE_DIR/env and then RECORD/env, in the form the mount
 * writes them (fs_surface.c and exec_script.c): lines "export K='V'" (V
 * quoted as sh_quote does) and "unset K"; values written by hand in plain
 * words, \x or "..." without expansions are read too (unquote). A file with
 * a line in another form is not guessed at: the command's shell sources it,
 * as the wrapper script did, and then runs the command.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ENV_FILE_MAX (4 << 20)  /* an env file larger than this is refused */
#define KILL_AFTER_TERM_S 2     /* as the wrapper's watchdog: KILL 2 s after TERM */

static char rec[PATH_MAX];      /* the record's directory */

/*
 * No stdio: printf would be most of the program's size, and its bytes go
 * into the sandbox with a launch. These join strings instead.
 */

/* The strings of ap up to NULL, joined in buf (size bytes, with its NUL);
 * what does not fit is cut. The length; *cut says whether anything was. */
static size_t add_strings(char *buf, size_t size, va_list ap, bool *cut)
{
	const char *s;
	size_t used = 0;

	*cut = false;
	while ((s = va_arg(ap, const char *))) {
		size_t n = strlen(s);

		if (used + n >= size) {
			n = size - 1 - used;
			*cut = true;
		}
		memcpy(buf + used, s, n);
		used += n;
	}
	buf[used] = '\0';
	return used;
}

/* The strings up to NULL, joined in buf: buf, or NULL when they do not fit. */
static char *join(char *buf, size_t size, ...)
{
	va_list ap;
	bool cut;

	va_start(ap, size);
	add_strings(buf, size, ap, &cut);
	va_end(ap);
	return cut ? NULL : buf;
}

/* v in decimal, in buf (24 bytes). */
static const char *decimal(char *buf, long v)
{
	char *p = buf + 23;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	*p = '\0';
	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10));
	if (v < 0)
		*--p = '-';
	return p;
}

/* The strings up to NULL, written to fd as one line (best effort, cut to
 * fit: it is a message, and there is nowhere else to say it). */
static void say(int fd, ...)
{
	char buf[PATH_MAX * 2 + 256];
	size_t used;
	va_list ap;
	bool cut;

	va_start(ap, fd);
	used = add_strings(buf, sizeof(buf), ap, &cut);
	va_end(ap);
	if (write(fd, buf, used) < 0) {
		/* nowhere else */
	}
}

/* RECORD/name in buf. */
static const char *rec_path(char *buf, size_t size, const char *name)
{
	return join(buf, size, rec, "/", name, (char *)NULL);
}

/* Writes text to path in place, in one write, as the shell's > does. */
static int write_text(const char *path, const char *text)
{
	size_t len = strlen(text);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	ssize_t w;

	if (fd < 0)
		return -1;
	w = write(fd, text, len);
	if (close(fd) < 0 || w != (ssize_t)len)
		return -1;
	return 0;
}

static void write_number(const char *name, long v)
{
	char path[PATH_MAX + 16], digits[24], text[32];

	if (rec_path(path, sizeof(path), name) && join(text, sizeof(text), decimal(digits, v), "\n", (char *)NULL))
		write_text(path, text);
}

static bool is_fifo(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* The first NAME of PATH's absolute entries (a regular, executable file),
 * in buf; NULL when there is none. */
static const char *find_in_path(const char *name, char *buf, size_t size)
{
	const char *path = getenv("PATH");
	size_t n = strlen(name);

	for (const char *p = path ? path : ""; *p;) {
		size_t len = strcspn(p, ":");
		struct stat st;

		if (p[0] == '/' && len + n + 2 <= size) {
			memcpy(buf, p, len);
			buf[len] = '/';
			memcpy(buf + len + 1, name, n + 1);
			if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
				return buf;
		}
		p += len;
		if (*p == ':')
			p++;
	}
	return NULL;
}

/* ---- the env files ------------------------------------------------------ */

static bool key_char(char c, bool first)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (!first && c >= '0' && c <= '9');
}

/* The length of the variable name at s (0 when there is none). */
static size_t key_len(const char *s, const char *end)
{
	size_t n = 0;

	while (s + n < end && key_char(s[n], n == 0))
		n++;
	return n;
}

/* A byte that stands for itself in a word of sh, outside quotes. */
static bool plain_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("_./:@%+,=-", c));
}

/*
 * The value of an assignment, undone in place from s up to end: the
 * length, or -1 when the text is not of the few forms that have one value
 * without a shell: sh_quote's 'a'\''b' (what the mount writes), and, as
 * one writes by hand, plain characters, \x, and "..." holding no $, `, \
 * or ". Anything else (an expansion, a glob, a space) is refused, not
 * guessed at.
 */
static long unquote(char *s, const char *end)
{
	char *start = s, *out = s;

	while (s < end) {
		if (*s == '\'' || *s == '"') {
			char *q = memchr(s + 1, *s, (size_t)(end - s - 1));

			if (!q)
				return -1;
			if (*s == '"')
				for (char *c = s + 1; c < q; c++)
					if (*c == '$' || *c == '`' || *c == '\\')
						return -1;
			memmove(out, s + 1, (size_t)(q - s - 1));
			out += q - s - 1;
			s = q + 1;
		} else if (*s == '\\' && s + 1 < end) {
			*out++ = s[1];
			s += 2;
		} else if (plain_char(*s)) {
			*out++ = *s++;
		} else {
			return -1;
		}
	}
	return out - start;
}

/*
 * Applies one env file to the environment. 0 (also when there is none or
 * it cannot be opened), else the number of the first line not in the
 * mount's form (-1: the file could not be read whole), where it stops.
 */
static long apply_env_file(const char *path)
{
	struct stat st;
	char *text, *p, *end;
	long lineno = 0;
	ssize_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	/* As the wrapper's [ -r FILE ] && . FILE: one it cannot read is none. */
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size > ENV_FILE_MAX || !(text = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -1;
	}
	while (got < st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)(st.st_size - got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	close(fd);
	if (got != st.st_size) {
		free(text);
		return -1;
	}
	end = text + got;
	for (p = text; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl ? nl : end;
		size_t k;

		lineno++;
		if (eol == p) {
			p = eol + 1;
			continue;
		}
		if (eol - p > 7 && !memcmp(p, "export ", 7) && (k = key_len(p + 7, eol)) &&
		    p + 7 + k < eol && p[7 + k] == '=') {
			char *key = p + 7, *val = key + k + 1;
			long vlen = unquote(val, eol);

			if (vlen < 0)
				goto bad;
			key[k] = '\0';
			val[vlen] = '\0';
			if (setenv(key, val, 1) < 0)
				goto bad;
		} else if (eol - p > 6 && !memcmp(p, "unset ", 6) && (k = key_len(p + 6, eol)) && p + 6 + k == eol) {
			p[6 + k] = '\0';
			unsetenv(p + 6);
		} else {
			goto bad;
		}
		p = eol + 1;
	}
	free(text);
	return 0;
bad:
	free(text);
	return lineno;
}

/* ---- the command ---------------------------------------------------------- */

/* What the helper changed of its signals, to give the command back. */
struct signals_before {
	sigset_t mask;
	struct sigaction chld, term;
};

/*
 * In the child: the command's streams, variables and group, then its shell.
 * Its signals are first given back as the helper found them (the actions,
 * then the mask: a TERM of a kill that came since the fork is then taken
 * by the default action, as the wrapper's subshell took it, not lost in
 * the helper's handler); the rest (an ignored SIGPIPE, say) passes on as
 * it came, as through the wrapper. stdin is the FIFO only when the helper
 * holds it: else a read-only open would wait for a writer for ever.
 */
static void run_command(const char *shell, const char *state_dir, int in, int out, int err,
			const struct signals_before *before)
{
	char path[PATH_MAX + 16], envs[PATH_MAX + 16], msg[PATH_MAX + 200];
	const char *env_files[2], *bash_env = getenv("BASH_ENV");
	char *bash_env_was = bash_env ? strdup(bash_env) : NULL;

	setpgid(0, 0);
	sigaction(SIGCHLD, &before->chld, NULL);
	sigaction(SIGTERM, &before->term, NULL);
	sigprocmask(SIG_SETMASK, &before->mask, NULL);
	if (in < 0)
		in = open("/dev/null", O_RDONLY);
	if (in >= 0 && in != 0) {
		dup2(in, 0);
		close(in);
	}
	dup2(out, 1);
	dup2(err, 2);
	close(out);
	close(err);
	if (!rec_path(path, sizeof(path), "command"))
		_exit(127);
	env_files[0] = join(msg, sizeof(msg), state_dir, "/env", (char *)NULL);
	env_files[1] = rec_path(envs, sizeof(envs), "env");
	if (!env_files[0] || !env_files[1])
		_exit(127);     /* (the launcher made the record: it is not that long) */
	for (int k = 0; k < 2; k++) {
		if (apply_env_file(env_files[k])) {
			/* A line not in the forms the helper reads (one written in
			 * the file by hand, or some other way): the command's shell
			 * (bash, as the wrapper was) sources both files and then
			 * runs the command, one program start more for such files
			 * only. It starts without BASH_ENV (it would source it) and
			 * puts it back as it came for the command, as the wrapper
			 * did; the options pass as they came (SHELLOPTS), which is
			 * how the wrapper sourced the file too. */
			static const char source_them[] =
				"case $1 in 1) BASH_ENV=$2; export BASH_ENV ;; *) unset BASH_ENV ;; esac\n"
				"[ -r \"$3\" ] && . \"$3\"; [ -r \"$4\" ] && . \"$4\"\n"
				"shift 4; exec \"$@\"\n";
			char *const argv[] = { (char *)shell, "-c", (char *)source_them, path,
					       bash_env_was ? "1" : "0", bash_env_was ? bash_env_was : "", msg,
					       envs, (char *)shell, path, NULL };

			unsetenv("BASH_ENV");
			execv(shell, argv);
			say(2, "daytonafs: cannot run ", shell, ": ", strerror(errno), "\n", (char *)NULL);
			_exit(127);
		}
	}
	{
		char *const argv[] = { (char *)shell, path, NULL };

		execv(shell, argv);
	}
	say(2, "daytonafs: cannot run ", shell, ": ", strerror(errno), "\n", (char *)NULL);
	_exit(127);
}

static void on_signal(int sig)
{
	(void)sig;      /* only to be delivered: it is taken by sigtimedwait */
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Signals the command's group, or the command alone when it has none. */
static void signal_group(pid_t pid, int sig)
{
	if (kill(-pid, sig) < 0)
		kill(pid, sig);
}

/* The holder lets go of the FIFO: its fd 0 becomes /dev/null. */
static void let_go_of_stdin(bool *holding)
{
	int fd;

	if (!*holding)
		return;
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0) {
		dup2(fd, 0);
		if (fd != 0)
			close(fd);
	} else {
		close(0);
	}
	*holding = false;
}

int main(int argc, char **argv)
{
	char path[PATH_MAX + 16], state_dir[PATH_MAX], shell_buf[PATH_MAX];
	const char *shell, *flags;
	struct signals_before before;
	struct sigaction sa;
	sigset_t set;
	bool holding = false, fired = false;
	int64_t deadline = 0, kill_at = 0;
	long timeout_s;
	size_t len;
	char *cut, *end;
	int in = -1, out, err, status = 0, code;
	pid_t pid;

	if (argc == 2 && !strcmp(argv[1], "--check")) {
		say(1, "daytonafs-run ok\n", (char *)NULL);
		return 0;
	}
	if (argc != 4) {
		say(2, "usage: daytonafs-run RECORD/run FLAGS TIMEOUT | --check\n", (char *)NULL);
		return 2;
	}
	len = strlen(argv[1]);
	if (len < 5 || len >= sizeof(rec) || strcmp(argv[1] + len - 4, "/run")) {
		say(2, "daytonafs-run: ", argv[1], ": not a record's run\n", (char *)NULL);
		return 2;
	}
	memcpy(rec, argv[1], len - 4);
	rec[len - 4] = '\0';
	flags = argv[2];
	errno = 0;
	timeout_s = strtol(argv[3], &end, 10);
	if (errno || *end || timeout_s < 0) {
		say(2, "daytonafs-run: ", argv[3], ": not a timeout\n", (char *)NULL);
		return 2;
	}
	/* STATE_DIR: the record is STATE_DIR/cmd/N (the last /cmd/ of it, as
	 * the wrapper's ${d%/cmd/...} takes the shortest suffix). */
	memcpy(state_dir, rec, strlen(rec) + 1);
	cut = NULL;
	for (char *p = strstr(state_dir, "/cmd/"); p; p = strstr(p + 1, "/cmd/"))
		cut = p;
	if (!cut) {
		say(2, "daytonafs-run: ", rec, ": not in STATE_DIR/cmd\n", (char *)NULL);
		return 2;
	}
	*cut = '\0';
	if (strchr(flags, 's'))
		setsid();
	/* The command's shell: the first bash of PATH, else sh, else /bin/sh,
	 * looked up as the wrapper does (absolute entries only; before the
	 * env files, whose PATH is the command's, not the lookup's). */
	shell = find_in_path("bash", shell_buf, sizeof(shell_buf));
	if (!shell)
		shell = find_in_path("sh", shell_buf, sizeof(shell_buf));
	if (!shell)
		shell = "/bin/sh";

	/* The FIFO, read-write (which never blocks on Linux), before the
	 * command opens it: the helper is its holder, as the wrapper was
	 * under bash; the close script finds it at fd 0. */
	if (rec_path(path, sizeof(path), "stdin.pipe") && is_fifo(path)) {
		int fd = open(path, O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			holding = true;
			if (fd != 0) {
				dup2(fd, 0);
				close(fd);
			}
		}
	}
	/* The streams are made before pgid, which says the command started. */
	if (!rec_path(path, sizeof(path), "stdout"))
		return 2;
	out = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	rec_path(path, sizeof(path), "stderr");
	err = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	if (out < 0 || err < 0) {
		/* As the shell's failed >>: the command does not run. */
		status = 1;
		goto ended;
	}

	/* SIGCHLD and SIGTERM (a close of stdin) come by sigtimedwait; a
	 * handler, not SIG_DFL, so that SIGCHLD is never discarded. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &before.mask);
	sigaction(SIGCHLD, &sa, &before.chld);
	sigaction(SIGTERM, &sa, &before.term);

	/* The command's stdin: the FIFO, opened read-only here, while the
	 * helper holds it (so without waiting for a writer; a close of stdin
	 * that came before the child's own open would have left it waiting
	 * for ever), else /dev/null. */
	if (holding && rec_path(path, sizeof(path), "stdin.pipe")) {
		in = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (in >= 0)
			fcntl(in, F_SETFL, fcntl(in, F_GETFL) & ~O_NONBLOCK);
	}
	pid = fork();
	if (pid == 0) {
		if (holding)
			close(0);       /* the holder's read-write descriptor: not the command's */
		run_command(shell, state_dir, in, out, err, &before);
	}
	if (in >= 0)
		close(in);
	close(out);
	close(err);
	if (pid < 0) {
		status = 127;
		goto ended;
	}
	setpgid(pid, pid);      /* as the child does: whichever comes first */
	if (holding)
		write_number("stdin.holder", (long)getpid());
	write_number("pgid", (long)pid);
	/* An empty run, while the command starts: the reconcile of a mount of
	 * an older version takes only a record with a run for one (this
	 * version's looks at command). */
	if (rec_path(path, sizeof(path), "run")) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);

		if (fd >= 0)
			close(fd);
	}
	if (timeout_s > 0)
		deadline = now_ms() + (int64_t)timeout_s * 1000;

	for (;;) {
		struct timespec ts, *tp = NULL;
		int64_t now, next = 0;
		pid_t r = waitpid(pid, &status, WNOHANG);
		int sig;

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			status = 127 << 8;      /* lost track of it: not ours to report as success */
			break;
		}
		now = now_ms();
		if (deadline && !fired && now >= deadline) {
			/* The timeout: unless the command has ended in the instant
			 * (its exit written by another hand), TERM now, KILL later. */
			char spath[PATH_MAX + 16];
			struct stat st;

			fired = true;
			if (!(rec_path(spath, sizeof(spath), "exit") && stat(spath, &st) == 0)) {
				if (rec_path(spath, sizeof(spath), "state"))
					write_text(spath, "timedout\n");
				signal_group(pid, SIGTERM);
				kill_at = now + KILL_AFTER_TERM_S * 1000;
			}
		}
		if (kill_at && now >= kill_at) {
			signal_group(pid, SIGKILL);
			kill_at = 0;
		}
		if (deadline && !fired)
			next = deadline;
		else if (kill_at)
			next = kill_at;
		if (next) {
			int64_t wait_ms = next > now ? next - now : 0;

			ts.tv_sec = (time_t)(wait_ms / 1000);
			ts.tv_nsec = (long)(wait_ms % 1000) * 1000000;
			tp = &ts;
		}
		sig = sigtimedwait(&set, NULL, tp);
		if (sig == SIGTERM)
			let_go_of_stdin(&holding);
	}
	if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		code = 128 + WTERMSIG(status);
	else
		code = 127;
	if (fired) {
		/* As timeout(1): 124 says the time ran out (unless a kill came
		 * after and said "killed"). */
		char spath[PATH_MAX + 16], st[32] = "";
		int fd = rec_path(spath, sizeof(spath), "state") ? open(spath, O_RDONLY | O_CLOEXEC) : -1;

		if (fd >= 0) {
			ssize_t n = read(fd, st, sizeof(st) - 1);

			st[n > 0 ? n : 0] = '\0';
			close(fd);
		}
		if (!strcmp(st, "timedout\n") || !strcmp(st, "timedout"))
			code = 124;
	}
	status = code;
ended:
	/* The launcher that waits for the end hears it first (end.pipe), then
	 * exit is written (its existence says the streams are final), then
	 * the holder lets go: a write still in flight fails rather than wait. */
	if (rec_path(path, sizeof(path), "end.pipe") && is_fifo(path)) {
		int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);

		if (fd >= 0) {
			char digits[24], line[40];

			/* One write: a line nobody reads is dropped with the pipe. */
			if (join(line, sizeof(line), "end ", decimal(digits, status), "\n", (char *)NULL))
				say(fd, line, (char *)NULL);
			close(fd);
		}
	}
	if (rec_path(path, sizeof(path), "exit")) {
		char digits[24], text[32];

		if (!join(text, sizeof(text), decimal(digits, status), "\n", (char *)NULL) || write_text(path, text) < 0)
			unlink(path);
	}
	let_go_of_stdin(&holding);
	if (strchr(flags, 'f')) {
		/* The next launch's FIFOs, made now, off the way of this one's. */
		char fifo[PATH_MAX + 32];
		mode_t old = umask(077);

		if (join(fifo, sizeof(fifo), state_dir, "/spare.stdin.pipe", (char *)NULL))
			mkfifo(fifo, 0600);
		if (join(fifo, sizeof(fifo), state_dir, "/spare.end.pipe", (char *)NULL))
			mkfifo(fifo, 0600);
		umask(old);
	}
	/* What is left of a timed-out command's group gets its KILL. */
	if (kill_at) {
		int64_t now = now_ms();

		if (kill_at > now) {
			struct timespec ts = { (time_t)((kill_at - now) / 1000), (long)((kill_at - now) % 1000) * 1000000 };

			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		/* The group only: the command was reaped, its pid may be
		 * anyone's by now (its group lives while a member does). */
		kill(-pid, SIGKILL);
	}
	return 0;
}
