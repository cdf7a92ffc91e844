/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_exec.c - the pure parts of exec.c: parsers, the poll back-off, the
 * generated scripts (their text, and their behaviour: each script is run
 * here under dash, bash and zsh against a local state directory, as the
 * sandbox would run it).
 */
#include "unit.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "strbuf.h"
#include "urlenc.h"

/* ---- parsers ---------------------------------------------------------------- */

UNIT_TEST(cmd_names)
{
	unsigned n = 0;

	CHECK(exec_parse_cmd_name("1", &n));
	CHECK_INT(n, 1);
	CHECK(exec_parse_cmd_name("42", &n));
	CHECK_INT(n, 42);
	CHECK(exec_parse_cmd_name("4294967295", &n));
	CHECK_INT(n, 4294967295u);
	n = 7;
	CHECK(!exec_parse_cmd_name("4294967296", &n));
	CHECK(!exec_parse_cmd_name("0", &n));
	CHECK(!exec_parse_cmd_name("01", &n));
	CHECK(!exec_parse_cmd_name("-1", &n));
	CHECK(!exec_parse_cmd_name("+1", &n));
	CHECK(!exec_parse_cmd_name("1a", &n));
	CHECK(!exec_parse_cmd_name("", &n));
	CHECK(!exec_parse_cmd_name("last", &n));
	CHECK(!exec_parse_cmd_name(NULL, &n));
	CHECK_INT(n, 7);
}

static void fi_set(struct sp_fileinfo *fi, const char *name, uint64_t size)
{
	memset(fi, 0, sizeof(*fi));
	fi->name = (char *)name;
	fi->size = size;
}

UNIT_TEST(listing_running)
{
	struct sp_fileinfo fi[6];
	struct exec_listing l;

	fi_set(&fi[0], "command", 12);
	fi_set(&fi[1], "exit.tmp", 2);      /* being written: not an end */
	fi_set(&fi[2], "pgid", 5);
	fi_set(&fi[3], "run", 900);
	fi_set(&fi[4], "stderr", 3);
	fi_set(&fi[5], "stdout", 123456789012ull);
	memset(&l, 0xff, sizeof(l));
	exec_parse_listing(fi, 6, &l);
	CHECK(!l.ended);
	CHECK(!l.has_state);
	CHECK(l.has_pgid);
	CHECK(!l.with_stdin);
	CHECK(!l.stdin_eof);
	CHECK_INT(l.size[EXEC_STDOUT], 123456789012ll);
	CHECK_INT(l.size[EXEC_STDERR], 3);
}

UNIT_TEST(listing_ended_with_stdin)
{
	struct sp_fileinfo fi[8];
	struct exec_listing l;

	fi_set(&fi[0], "command", 5);
	fi_set(&fi[1], "exit", 4);
	fi_set(&fi[2], "state", 7);
	fi_set(&fi[3], "stderr", 0);
	fi_set(&fi[4], "stdin.eof", 0);
	fi_set(&fi[5], "stdin.holder", 6);
	fi_set(&fi[6], "stdin.pipe", 0);
	fi_set(&fi[7], "stdout", 2);
	exec_parse_listing(fi, 8, &l);
	CHECK(l.ended);
	CHECK(l.has_state);
	CHECK(!l.has_pgid);
	CHECK(l.with_stdin);
	CHECK(l.stdin_eof);
	CHECK_INT(l.size[EXEC_STDOUT], 2);
	CHECK_INT(l.size[EXEC_STDERR], 0);

	/* stdin open: the pipe, no eof */
	exec_parse_listing(fi + 5, 3, &l);
	CHECK(l.with_stdin);
	CHECK(!l.stdin_eof);
	CHECK(!l.ended);

	exec_parse_listing(NULL, 0, &l);
	CHECK(!l.ended);
	CHECK(!l.with_stdin);
	CHECK_INT(l.size[EXEC_STDOUT], 0);
}

UNIT_TEST(exit_text)
{
	int code = 99;

	CHECK_INT(exec_parse_exit("3\n", 2, &code), 0);
	CHECK_INT(code, 3);
	CHECK_INT(exec_parse_exit("0", 1, &code), 0);
	CHECK_INT(code, 0);
	CHECK_INT(exec_parse_exit("143\r\n", 5, &code), 0);
	CHECK_INT(code, 143);
	CHECK_INT(exec_parse_exit("-1\n", 3, &code), 0);
	CHECK_INT(code, -1);
	code = 99;
	CHECK_INT(exec_parse_exit("", 0, &code), -EINVAL);
	CHECK_INT(exec_parse_exit("\n", 1, &code), -EINVAL);
	CHECK_INT(exec_parse_exit("3x\n", 3, &code), -EINVAL);
	CHECK_INT(exec_parse_exit("abc", 3, &code), -EINVAL);
	CHECK_INT(exec_parse_exit("99999999999999999999", 20, &code), -EINVAL);
	/* len bounds the text: no terminator is needed */
	CHECK_INT(exec_parse_exit("12345", 2, &code), 0);
	CHECK_INT(code, 12);
}

UNIT_TEST(state_text)
{
	CHECK_INT(exec_parse_state(NULL, 0), EXEC_EXITED);
	CHECK_INT(exec_parse_state("killed\n", 7), EXEC_KILLED);
	CHECK_INT(exec_parse_state("killed", 6), EXEC_KILLED);
	CHECK_INT(exec_parse_state("timedout\n", 9), EXEC_TIMEDOUT);
	CHECK_INT(exec_parse_state("", 0), EXEC_EXITED);
	CHECK_INT(exec_parse_state("killedx\n", 8), EXEC_EXITED);
	CHECK_STR(exec_state_name(EXEC_RUNNING), "running");
	CHECK_STR(exec_state_name(EXEC_EXITED), "exited");
	CHECK_STR(exec_state_name(EXEC_KILLED), "killed");
	CHECK_STR(exec_state_name(EXEC_TIMEDOUT), "timed out");
}

UNIT_TEST(backoff_schedule)
{
	static const long want[] = { 100, 200, 400, 800, 1000, 1000, 1000 };
	long cur = 50;
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cur = exec_backoff(cur, false, true, 50, 1000, 30000);
		CHECK_INT(cur, want[i]);
	}
	/* a change brings it back to the minimum */
	CHECK_INT(exec_backoff(1000, true, true, 50, 1000, 30000), 50);
	/* out-of-range current values are clamped */
	CHECK_INT(exec_backoff(0, false, true, 50, 1000, 30000), 50);
	CHECK_INT(exec_backoff(5000, false, true, 50, 1000, 30000), 1000);
	/* max not a power-of-two multiple of min: never above max */
	CHECK_INT(exec_backoff(30, false, true, 30, 100, 30000), 60);
	CHECK_INT(exec_backoff(60, false, true, 30, 100, 30000), 100);
	CHECK_INT(exec_backoff(100, false, true, 30, 100, 30000), 100);

	/* nobody waits: doubling up to idle_max, and output does not matter */
	CHECK_INT(exec_backoff(50, false, false, 50, 1000, 30000), 100);
	CHECK_INT(exec_backoff(800, true, false, 50, 1000, 30000), 1600);
	CHECK_INT(exec_backoff(16000, false, false, 50, 1000, 30000), 30000);
	CHECK_INT(exec_backoff(30000, true, false, 50, 1000, 30000), 30000);
	CHECK_INT(exec_backoff(10, false, false, 50, 1000, 30000), 50);

	/* The cost of a 10 s wait on a silent command, from the schedule alone. */
	{
		long t = 0, polls = 1;

		cur = 50;
		while (t + cur <= 10000) {
			t += cur;
			polls++;
			cur = exec_backoff(cur, false, true, 50, 1000, 30000);
		}
		CHECK_INT(polls, 14);
	}
	/* ... and of a service of this mount that nobody watches, for the 5
	 * minutes it is polled at all (then it is looked at lazily). */
	{
		long t = 50, polls = 1;

		cur = 50;
		for (;;) {
			cur = exec_backoff(cur, false, false, 50, 1000, 30000);
			if (t + cur > 300000)
				break;
			t += cur;
			polls++;
		}
		CHECK_INT(polls, 18);
	}
}

UNIT_TEST(defaults)
{
	struct exec_options o;

	memset(&o, 0x5a, sizeof(o));
	exec_options_defaults(&o);
	CHECK_STR(o.state_dir, "/tmp/.daytonafs");
	CHECK_INT(o.poll_min_ms, 50);
	CHECK_INT(o.poll_max_ms, 1000);
	CHECK_INT(o.list_ttl_ms, 5000);
	CHECK(o.interrupted == NULL);
	CHECK(o.on_end == NULL);
	CHECK(o.wake == NULL);
	CHECK(o.ctx == NULL);
}

/* ---- script text ------------------------------------------------------------ */

UNIT_TEST(wrapper_text)
{
	struct strbuf sb = STRBUF_INIT;
	struct sp_kv env[2] = { { "K_1", "it's $HOME `x`" }, { "EMPTY", "" } };
	struct exec_spec spec = { .command = "true", .env = env, .n_env = 2 };

	CHECK_INT(exec_build_wrapper(&sb, &spec), 0);
	CHECK(strstr(sb_str(&sb), "( case $3 in 1) BASH_ENV=$4; export BASH_ENV ;; 0) unset BASH_ENV ;; esac\n"
		     "[ -n \"$_dfj\" ] && case $_dfa in *m*) ;; *) set +m ;; esac\n"
		     "case $_dfa in *e*) set -e ;; esac; case $_dfa in *u*) set -u ;; esac\n"
		     "case $_dfa in *C*) set -C ;; esac; case $_dfa in *f*) set -f ;; esac\n"
		     "set -- \"$_dfr\" \"$_dfd/command\"; [ -z \"$_dfj\" ] && [ -n \"$_dfs\" ] && set -- \"$_dfs\" \"$@\"\n"
		     "[ -r \"$_dfe\" ] && . \"$_dfe\"; K_1='it'\\''s $HOME `x`' EMPTY='' exec \"$@\" "
		     ") <\"$_dfi\" 3>&- >>\"$_dfd/stdout\" 2>>\"$_dfd/stderr\" & _dfp=$!\n") != NULL);
	/* stdin: the holder, which goes once the exit is written */
	CHECK(strstr(sb_str(&sb), "sleep 2147483647 <&3 >/dev/null 2>&1 3>&- & _dfh=$!\n") != NULL);
	CHECK(strstr(sb_str(&sb), "echo $_dfc >\"$_dfd/exit\" || rm -f \"$_dfd/exit\"\n"
		     "[ -n \"$_dfh\" ] && kill $_dfh 2>/dev/null\n") != NULL);
	CHECK(strstr(sb_str(&sb), "timedout") == NULL);

	sb_reset(&sb);
	spec.timeout_s = 17;
	spec.n_env = 0;
	CHECK_INT(exec_build_wrapper(&sb, &spec), 0);
	CHECK(strstr(sb_str(&sb), "\tsleep 17 & _dfz=$!\n") != NULL);
	CHECK(strstr(sb_str(&sb), "kill $_dfw 2>/dev/null\n") != NULL);
	CHECK(strstr(sb_str(&sb), "= timedout ] && _dfc=124\n") != NULL);

	/* environment names the shell would not take as an assignment */
	{
		static const char *const bad[] = { "1A", "A-B", "", "A B", "A=B", "É" };
		size_t i;

		spec.env = env;
		spec.n_env = 1;
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct sp_kv kv = { (char *)bad[i], "v" };

			spec.env = &kv;
			sb_reset(&sb);
			CHECK_INT(exec_build_wrapper(&sb, &spec), -EINVAL);
		}
	}
	sb_free(&sb);
}

static bool contains_b64_of(const char *text, const char *plain)
{
	struct strbuf b = STRBUF_INIT;
	bool found;

	sb_adds(&b, "printf %s '");
	base64_encode(&b, plain, strlen(plain));
	sb_adds(&b, "' | base64 -d");
	found = strstr(text, sb_str(&b)) != NULL;
	/* or as a here-document (the command and the wrapper) */
	sb_reset(&b);
	sb_addc(&b, '\n');
	base64_encode(&b, plain, strlen(plain));
	sb_adds(&b, "\nDAYTONAFS_EOF\n");
	found = found || strstr(text, sb_str(&b)) != NULL;
	sb_free(&b);
	return found;
}

UNIT_TEST(launcher_text)
{
	struct strbuf sb = STRBUF_INIT;
	struct exec_spec spec = { .command = "echo 'hi'\n\xff\x01", .cwd = "/w d/it's" };
	const char *t;

	CHECK_INT(exec_build_launcher(&sb, "/tmp/st ate's", 7, "tok-1", &spec), 0);
	t = sb_str(&sb);
	CHECK(strncmp(t, "_dfA=$-; set +euCf\n_dfS='/tmp/st ate'\\''s'\n", 43) == 0);
	CHECK(strstr(t, "\n_dfn=7; _dfi=0\n") != NULL);
	CHECK(contains_b64_of(t, spec.command));
	CHECK(contains_b64_of(t, spec.cwd));
	/* every command gets a stdin pipe */
	CHECK(strstr(t, "set --; [ -p \"$_dfd/stdin.pipe\" ] || set -- \"$_dfd/stdin.pipe\"\n") != NULL);
	CHECK(strstr(t, "[ $# = 0 ] || mkfifo \"$@\" 2>/dev/null\n") != NULL);
	/* under zsh, the spare FIFO first */
	CHECK(strstr(t, "\tzf_mv \"$_dfS/spare.stdin.pipe\" \"$_dfd/stdin.pipe\" 2>/dev/null\n") != NULL);
	/* the record's mkdir: zsh's zf_mkdir builtin when it can */
	CHECK(strstr(t, "$_dfm -m 700 \"$_dfS/cmd/$_dfn\"") != NULL);
	CHECK(strstr(t, "zmodload -F zsh/files b:zf_mkdir b:zf_mv 2>/dev/null && _dfm=zf_mkdir _dfv=1\n") != NULL);
	/* the wrapper under bash when there is one, and no setsid of its own;
	 * that bash is also the command's (its $5): the wrapper looks for none */
	CHECK(strstr(t, "BASH_ENV= ${_dfg:+\"$_dfg\"} \"$_dfw\" \"$_dfd/run\" \"$_dfd\" \"${_dfv:+f}\" $_dfz \"$_dfo\" \"$_dfw\" "
		     ">/dev/null 2>&1 </dev/null 4>&- &\n") != NULL);
	CHECK(strstr(t, "case $5 in /*) _dfr=$5 ;; esac\nif [ -z \"$_dfr\" ] || [ -z \"$_dfj\" ]; then\n") != NULL);
	/* before the wrapper starts, only what it needs: the streams and the
	 * spare end.pipe come after (fewer metadata writes on the way) */
	{
		const char *spawn = strstr(t, "_dfK=$!; set +euCf\n"), *streams = strstr(t, ": >>\"$_dfd/stdout\"; : >>\"$_dfd/stderr\"; }\n");

		CHECK(spawn && streams && spawn < streams);
		CHECK(strstr(t, ": >\"$_dfd/stdout\"") == NULL);
	}
	CHECK(strstr(t, "setsid sh") == NULL);
	CHECK(strstr(t, "_dfg=$_dfx/setsid") == NULL);
	/* a provider that may kill what the script left: setsid for it */
	sb_reset(&sb);
	CHECK_INT(exec_build_launcher_own(&sb, "/tmp/st", 7, "tok-1", &spec, 200, 65536, false), 0);
	CHECK(strstr(sb_str(&sb), "_dfg=$_dfx/setsid") != NULL);
	t = sb_str(&sb);
	{
		const char *spawn = strstr(t, "_dfK=$!; set +euCf\n"), *end = strstr(t, "zf_mv \"$_dfS/spare.end.pipe\" \"$_dfd/end.pipe\"");

		CHECK(spawn && end && spawn < end);
	}
	/* The launcher itself is plain ASCII: JSON carries it unchanged. */
	for (const char *p = t; *p; p++)
		CHECK((unsigned char)*p < 0x80);

	CHECK(strstr(t, "_dft=$_dfS/launch/tok-1\n") != NULL);

	/* the token goes into a path and the script: a safe word, or nothing */
	sb_reset(&sb);
	CHECK_INT(exec_build_launcher(&sb, "/s", 1, "a b", &spec), -EINVAL);
	CHECK_INT(exec_build_launcher(&sb, "/s", 1, "../x", &spec), -EINVAL);
	CHECK_INT(exec_build_launcher(&sb, "/s", 1, "", &spec), -EINVAL);
	CHECK_INT(exec_build_launcher(&sb, "/s", 1, NULL, &spec), -EINVAL);

	sb_reset(&sb);
	spec.cwd = NULL;
	CHECK_INT(exec_build_launcher(&sb, "/s", 1, "tok", &spec), 0);
	CHECK(strstr(sb_str(&sb), "cd --") == NULL);

	sb_reset(&sb);
	{
		struct sp_kv kv = { "BAD NAME", "x" };

		spec.env = &kv;
		spec.n_env = 1;
		CHECK_INT(exec_build_launcher(&sb, "/s", 1, "tok", &spec), -EINVAL);
	}
	sb_free(&sb);
}

UNIT_TEST(kill_text)
{
	struct strbuf sb = STRBUF_INIT;

	exec_build_kill(&sb, "/tmp/x'y/cmd/3", NULL);
	CHECK(strncmp(sb_str(&sb), "sh -c '_dfd='\\''/tmp/x'\\''\\'\\'''\\''y/cmd/3'\\''\n", 47) == 0);
	CHECK(strstr(sb_str(&sb), "echo killed >") != NULL);
	sb_free(&sb);
}

UNIT_TEST(launch_output)
{
	unsigned n = 0;

	CHECK_INT(exec_parse_launch("daytonafs-started 12\n", &n), 0);
	CHECK_INT(n, 12);
	CHECK_INT(exec_parse_launch("mkdir: noise\ndaytonafs-started 3", &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(exec_parse_launch("daytonafs-error cwd\n", &n), -ENOENT);
	CHECK_INT(exec_parse_launch("daytonafs-error setup 4\n", &n), -EIO);
	CHECK_INT(exec_parse_launch("sh: 1: base64: not found\n", &n), -EIO);
	CHECK_INT(exec_parse_launch("daytonafs-started x\n", &n), -EIO);
	CHECK_INT(exec_parse_launch("daytonafs-started 0\n", &n), -EIO);
	CHECK_INT(exec_parse_launch("daytonafs-started 5x\n", &n), -EIO);
	CHECK_INT(exec_parse_launch(NULL, &n), -EIO);
	CHECK_INT(n, 3);
}

/* ---- script behaviour --------------------------------------------------------
 * The scripts run here as the sandbox runs them: the launcher and the kill
 * command are fed to a shell (dash, bash and zsh here), in a
 * temporary state directory. */

static char tmp_root[64];

static const char *root(void)
{
	if (!tmp_root[0]) {
		str_copy(tmp_root, sizeof(tmp_root), "/tmp/test_exec.XXXXXX");
		if (!mkdtemp(tmp_root))
			abort();
	}
	return tmp_root;
}

/* Runs text with shell (its stdin, as the toolbox does); the output, malloc'd. */
static char *run_shell(const char *shell, const char *text)
{
	struct strbuf out = STRBUF_INIT;
	char path[256], cmd[512], buf[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/script.%d", root(), rand());
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s <'%s' 2>&1", shell, path);
	f = popen(cmd, "r");
	if (!f)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sb_add(&out, buf, n);
	pclose(f);
	unlink(path);
	return sb_detach(&out);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
	struct strbuf sb = STRBUF_INIT;
	char path[1100], buf[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sb_add(&sb, buf, n);
	fclose(f);
	if (len)
		*len = sb.len;
	return sb_detach(&sb);
}

static bool exists(const char *dir, const char *name)
{
	char path[1100];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Whether no process's command line matches the pgrep pattern, within 3 s. */
static bool none_left_running(const char *pattern)
{
	char probe[900];

	snprintf(probe, sizeof(probe), "pgrep -f '%s' >/dev/null", pattern);
	for (int w = 0; w < 150; w++) {
		if (system(probe) != 0)
			return true;
		sleep_ms(20);
	}
	return false;
}

/* Waits for dir/exit (up to ms); its content, malloc'd, or NULL. */
/* The exit status once written: the wrapper writes exit in place, so a read
 * may find it there and still empty (as fetch_cmd does, that is no end yet). */
static char *wait_exit(const char *dir, long ms)
{
	for (long t = 0; t < ms; t += 20) {
		if (exists(dir, "exit")) {
			char *s = slurp(dir, "exit", NULL);

			if (s && *s)
				return s;
			free(s);
		}
		sleep_ms(20);
	}
	return NULL;
}

/*
 * The helper mode (the helper_ cases): the launchers of the run_ tests
 * find the helper program (HELPER_TEST_BIN, built with the sanitizers of
 * this build) installed as STATE_DIR/bin/run-unit and run the commands
 * with it, not with the wrapper script; their state dirs are others.
 */
static bool with_helper;

static void state_dir(char *sd, size_t cap, const char *tag, const char *shell)
{
	snprintf(sd, cap, "%s/%s-%s%s", root(), tag, shell, with_helper ? "-helper" : "");
}

/* STATE_DIR/bin/run-unit: the helper, as a launch would have installed it. */
static void install_helper(const char *sd)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/bin' && { [ -f '%s/bin/run-unit' ] || cp '%s' '%s/bin/run-unit'; }",
		 sd, sd, HELPER_TEST_BIN, sd);
	CHECK(system(cmd) == 0);
}

/* The launcher of the run_ tests: with the helper in the helper mode. */
static int build_launcher(struct strbuf *sb, const char *sd, unsigned first, const char *token,
			  const struct exec_spec *spec, long wait_ms, size_t inline_max, bool detached)
{
	static const struct exec_helper unit_helper = { "unit", NULL, NULL, 0 };

	if (with_helper)
		install_helper(sd);
	return exec_build_launcher_with(sb, sd, first, token, spec, wait_ms, inline_max, detached,
					with_helper ? &unit_helper : NULL);
}

/* Starts spec under shell in state dir sd; fills dir with cmd/N. */
static int start(const char *shell, const char *sd, unsigned first, const struct exec_spec *spec,
		 char *dir, size_t cap)
{
	struct strbuf sb = STRBUF_INIT;
	unsigned n = 0;
	char *out;
	int rc;

	static unsigned starts;
	char token[32];

	snprintf(token, sizeof(token), "start%u", ++starts);
	if (build_launcher(&sb, sd, first ? first : 1, token, spec, 0, 0, true) < 0)
		return -1;
	out = run_shell(shell, sb_str(&sb));
	sb_free(&sb);
	rc = exec_parse_launch(out, &n);
	if (rc < 0) {
		fprintf(stderr, "launcher said: %s\n", out ? out : "(null)");
		free(out);
		return rc;
	}
	free(out);
	snprintf(dir, cap, "%s/cmd/%u", sd, n);
	return (int)n;
}

/* The daemon feeds commands to zsh in Daytona's default image, to bash in the
 * slim one; dash is the strictest POSIX sh. */
static const char *const shells[] = { "dash", "bash", "zsh" };
#define N_SHELLS (sizeof(shells) / sizeof(shells[0]))

UNIT_TEST(run_core_example)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = {
			.command = "exec python3 -c \"import sys; print(1); print(2, file=sys.stderr); sys.exit(3)\""
		};
		char sd[256], dir[512];
		char *t;

		state_dir(sd, sizeof(sd), "core", shells[i]);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "3\n");
		free(t);
		t = slurp(dir, "stdout", NULL);
		CHECK_STR(t, "1\n");
		free(t);
		t = slurp(dir, "stderr", NULL);
		CHECK_STR(t, "2\n");
		free(t);
		t = slurp(dir, "command", NULL);
		CHECK_STR(t, spec.command);
		free(t);
		CHECK(exists(dir, "pgid"));
		CHECK(!exists(dir, "state"));
		CHECK(exists(dir, "stdin.pipe"));

		/* the next one takes the next number */
		spec.command = "true";
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 2);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "0\n");
		free(t);
	}
}

/* The sandbox's environment reaches the command as it was: every one-letter
 * name (the launcher's and the wrapper's variables were such names, and an
 * exported d came as the record's directory), and a function say that bash
 * exported (the launcher's own say replaced it). */
UNIT_TEST(run_keeps_the_sandbox_environment)
{
	struct strbuf want = STRBUF_INIT;
	char name[2] = "A", val[16];

	sb_adds(&want, "user-say\n");
	for (int c = 'A'; c <= 'z'; c++) {
		if (c > 'Z' && c < 'a')
			continue;
		name[0] = (char)c;
		snprintf(val, sizeof(val), "keep-%c", c);
		setenv(name, val, 1);
		sb_addf(&want, "%s=%s\n", name, val);
	}
	setenv("BASH_FUNC_say%%", "() { echo user-say; }", 1);
	for (size_t i = 0; i < N_SHELLS; i++) {
		/* (dash passes no BASH_FUNC_ variable on: no function there) */
		struct exec_spec spec = { .command = "say 2>/dev/null || echo user-say; "
					  "env | grep -E '^[A-Za-z]=' | LC_ALL=C sort" };
		char sd[256], dir[512];
		char *t;

		state_dir(sd, sizeof(sd), "keepenv", shells[i]);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "0\n");
		free(t);
		t = slurp(dir, "stdout", NULL);
		CHECK_STR(t, sb_str(&want));
		free(t);
	}
	for (int c = 'A'; c <= 'z'; c++) {
		name[0] = (char)c;
		unsetenv(name);
	}
	unsetenv("BASH_FUNC_say%%");
	sb_free(&want);
}

UNIT_TEST(run_binary_env_cwd)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		static const char bin[] = "a\0b\377\n\0last";
		struct sp_kv env[2] = { { "V", "it's $HOME \"q\" \\n" }, { "PATH", "/nonexistent" } };
		char sd[256], dir[512], cwd[512];
		struct exec_spec spec = {
			.command = "printf 'a\\000b\\377\\n\\000last'; printf %s \"$V\" >&2; "
				   "echo; /bin/pwd >&2",
			.env = env, .n_env = 2, .cwd = cwd,
		};
		size_t len = 0;
		char *t;

		state_dir(sd, sizeof(sd), "bin", shells[i]);
		snprintf(cwd, sizeof(cwd), "%s/a dir's\n", root());
		mkdir(cwd, 0755);
		CHECK_INT(start(shells[i], sd, 5, &spec, dir, sizeof(dir)), 5);
		t = wait_exit(dir, 10000);
		/* the wrapper's tools kept the real PATH; the command got the given one */
		CHECK_STR(t, "0\n");
		free(t);
		t = slurp(dir, "stdout", &len);
		CHECK_INT(len, sizeof(bin) - 1 + 1);
		CHECK(t && memcmp(t, bin, sizeof(bin) - 1) == 0 && t[len - 1] == '\n');
		free(t);
		t = slurp(dir, "stderr", &len);
		{
			struct strbuf want = STRBUF_INIT;

			sb_addf(&want, "%s%s\n", env[0].value, cwd);
			CHECK_STR(t, sb_str(&want));
			sb_free(&want);
		}
		free(t);
	}
}

/* STATE_DIR sd (for tag and shell) with an env file of text. */
static void make_env_file(char *sd, size_t cap, const char *tag, const char *shell, const char *text)
{
	char path[600];
	FILE *f;

	state_dir(sd, cap, tag, shell);
	mkdir(sd, 0755);
	snprintf(path, sizeof(path), "%s/env", sd);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Runs spec as command 1 of sd under shell to its end, which must be exit 0;
 * its stdout (malloc'd), its record in dir. */
static char *run_ok(const char *shell, const char *sd, const struct exec_spec *spec, char *dir, size_t cap)
{
	char *t;

	CHECK_INT(start(shell, sd, 1, spec, dir, cap), 1);
	t = wait_exit(dir, 10000);
	CHECK_STR(t, "0\n");
	free(t);
	return slurp(dir, "stdout", NULL);
}

/* STATE_DIR/env (NAME/env) is sourced in the wrapper: nothing in it may
 * change which command runs or with what words, whatever names it sets. */
UNIT_TEST(run_env_file_cannot_change_the_command)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo hello; echo \"$s|$d|$r|$e|$p\" >&2" };
		char sd[256], dir[512];
		char *t;

		make_env_file(sd, sizeof(sd), "envfile", shells[i],
			      "export s=1\nexport d=/nonexistent\nexport r=/bin/true\nexport IFS=/\n"
			      "export e=/x\nexport i=/nonexistent\nexport p=7\nexport h=1\n");
		t = run_ok(shells[i], sd, &spec, dir, sizeof(dir));
		CHECK_STR(t, "hello\n");
		free(t);
		/* and the command does get them */
		t = slurp(dir, "stderr", NULL);
		CHECK_STR(t, "1|/nonexistent|/bin/true|/x|7\n");
		free(t);
	}
}

/* An env file with lines in shell forms that are not the mount's (written
 * in the sandbox by hand): the wrapper sources it, and so does the
 * command's bash for the helper, which reads only the mount's forms
 * itself; expansions expand. */
UNIT_TEST(run_env_file_in_shell_forms)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct sp_kv env[1] = { { "C", "from exec" } };
		struct exec_spec spec = { .command = "printf '%s|%s|%s|%s|' \"$A\" \"$B\" \"$C\" \"${#D}\"; "
						     "printf %s \"$RAW\" | od -An -tx1",
					  .env = env, .n_env = 1 };
		char sd[256], dir[512];
		char *t;

		/* ($'...' is bash's: the file is sourced by bash, as the wrapper
		 * was, not by sh) */
		make_env_file(sd, sizeof(sd), "envshell", shells[i],
			      "export A=\"${HOME:-none}/a\"\nexport RAW='\377'\nB=plain; export B\n"
			      "export C='from file'\nexport D=$'a\\tb'\n");
		t = run_ok(shells[i], sd, &spec, dir, sizeof(dir));
		{
			struct strbuf want = STRBUF_INIT;

			sb_addf(&want, "%s/a|plain|from exec|3| ff\n", getenv("HOME") ? getenv("HOME") : "none");
			CHECK_STR(t, sb_str(&want));
			sb_free(&want);
		}
		free(t);
	}
}

UNIT_TEST(run_collision_and_cwd_missing)
{
	struct exec_spec spec = { .command = "true" };
	char sd[256], dir[512], path[600];
	struct strbuf sb = STRBUF_INIT;
	char *t;

	state_dir(sd, sizeof(sd), "coll", "dash");
	snprintf(path, sizeof(path), "%s/cmd/7", sd);
	mkdir(sd, 0755);
	snprintf(path, sizeof(path), "%s/cmd", sd);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/cmd/7", sd);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/cmd/8", sd);
	mkdir(path, 0755);
	/* another mount holds 7 and 8 */
	CHECK_INT(start("dash", sd, 7, &spec, dir, sizeof(dir)), 9);
	t = wait_exit(dir, 10000);
	CHECK_STR(t, "0\n");
	free(t);

	spec.cwd = "/nonexistent/dir";
	CHECK_INT(build_launcher(&sb, sd, 10, "tok-cwd", &spec, 0, 0, true), 0);
	t = run_shell("dash", sb_str(&sb));
	CHECK_STR(t, "daytonafs-error cwd\n");
	free(t);
	snprintf(path, sizeof(path), "%s/cmd/10", sd);
	CHECK(access(path, F_OK) != 0);   /* nothing made */
	sb_free(&sb);
}

/* Runs the stdin write script of batch id for dir under shell; its verdict. */
static int feed_as(const char *shell, const char *dir, const char *id, const char *done, const void *data,
		   size_t len)
{
	struct strbuf sb = STRBUF_INIT;
	char *out;
	int rc;

	if (exec_build_stdin_write(&sb, dir, id, done, data, len) < 0)
		return -ENOMEM;
	out = run_shell(shell, sb_str(&sb));
	sb_free(&sb);
	rc = exec_parse_stdin_reply(out);
	if (rc < 0)
		fprintf(stderr, "stdin write said: %s\n", out ? out : "(null)");
	free(out);
	return rc;
}

/* A batch of its own. */
static int feed(const char *shell, const char *dir, const void *data, size_t len)
{
	static unsigned batches;
	char id[32];

	snprintf(id, sizeof(id), "feed%u", ++batches);
	return feed_as(shell, dir, id, NULL, data, len);
}

static int close_stdin(const char *shell, const char *dir)
{
	struct strbuf sb = STRBUF_INIT;
	char *out;
	int rc;

	exec_build_stdin_close(&sb, dir);
	out = run_shell(shell, sb_str(&sb));
	sb_free(&sb);
	rc = out && !strcmp(out, "daytonafs-closed\n") ? 0 : -EIO;
	if (rc < 0)
		fprintf(stderr, "stdin close said: %s\n", out ? out : "(null)");
	free(out);
	return rc;
}

/* Whether the pid in dir/name is a live process (not a zombie). */
static bool pid_file_alive(const char *dir, const char *name)
{
	char *t = slurp(dir, name, NULL);
	char cmd[160];
	bool alive;

	if (!t)
		return false;
	t[strcspn(t, "\n")] = '\0';
	snprintf(cmd, sizeof(cmd), "ps -o stat= -p %s | grep -qv '^Z'", t);
	alive = system(cmd) == 0;
	free(t);
	return alive;
}

/* Whether the holder of stdin has let go of it within 2 s: it is gone, or
 * (the wrapper as the holder, on its way out) its fd 0 is no longer the
 * FIFO. */
static bool holder_gone(const char *dir)
{
	char *t = slurp(dir, "stdin.holder", NULL);
	bool gone = false;

	if (!t)
		return true;
	t[strcspn(t, "\n")] = '\0';
	for (int k = 0; k < 100 && !gone; k++) {
		char link[64], target[1100] = "";
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/%s/fd/0", t);
		n = readlink(link, target, sizeof(target) - 1);
		gone = n < 0 || !strstr(target, "stdin.pipe") || !pid_file_alive(dir, "stdin.holder");
		if (!gone)
			sleep_ms(20);
	}
	free(t);
	return gone;
}

UNIT_TEST(stdin_scripts_text)
{
	struct strbuf sb = STRBUF_INIT;

	CHECK_INT(exec_build_stdin_write(&sb, "/s/cmd/4", "b2", "b1", "a\0b", 3), 0);
	CHECK(strncmp(sb_str(&sb), "_dfd='/s/cmd/4'\n", 16) == 0);
	CHECK(strstr(sb_str(&sb), "printf %s 'YQBi' | base64 -d >\"$_dfd/stdin.pipe\"") != NULL);
	CHECK(strstr(sb_str(&sb), "_dft=$_dfd/stdin.b.b2\n") != NULL);
	CHECK(strstr(sb_str(&sb), "rm -rf \"$_dfd/stdin.b.b1\"") != NULL);
	sb_reset(&sb);
	CHECK_INT(exec_build_stdin_write(&sb, "/s/cmd/4", "b/../x", NULL, "a", 1), -EINVAL);
	CHECK_INT(exec_build_stdin_write(&sb, "/s/cmd/4", "b2", "", "a", 1), -EINVAL);
	/* not sh -c: the data may be larger than one argument may be */
	CHECK(strstr(sb_str(&sb), "sh -c") == NULL);
	sb_reset(&sb);
	exec_build_stdin_close(&sb, "/s/cmd/4");
	CHECK(strncmp(sb_str(&sb), "sh -c '", 7) == 0);
	CHECK(strstr(sb_str(&sb), "stdin.eof") != NULL);
	sb_free(&sb);

	CHECK_INT(exec_parse_stdin_reply("daytonafs-written\n"), 0);
	CHECK_INT(exec_parse_stdin_reply("daytonafs-closed\n"), 0);
	CHECK_INT(exec_parse_stdin_reply("daytonafs-ended\n"), -EPIPE);
	CHECK_INT(exec_parse_stdin_reply("base64: write error\ndaytonafs-failed\n"), -EPIPE);
	CHECK_INT(exec_parse_stdin_reply("daytonafs-nostdin\n"), -EBADF);
	CHECK_INT(exec_parse_stdin_reply("sh: base64: not found\n"), -EIO);
	CHECK_INT(exec_parse_stdin_reply(NULL), -EIO);
}

/* Runs text under shell twice, as a request that the proxy sent again (FIDELITY
 * D7): one run after the other, or both at once (the first may still be
 * running when the replay comes). Both outputs, malloc'd. */
static void run_twice(const char *shell, const char *text, bool together, char **a, char **b)
{
	char path[256], cmd[1200], out1[300], out2[300];
	FILE *f;

	*a = *b = NULL;
	if (!together) {
		*a = run_shell(shell, text);
		*b = run_shell(shell, text);
		return;
	}
	snprintf(path, sizeof(path), "%s/twice.%d", root(), rand());
	snprintf(out1, sizeof(out1), "%s.1", path);
	snprintf(out2, sizeof(out2), "%s.2", path);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s <'%s' >'%s' 2>&1 & %s <'%s' >'%s' 2>&1; wait", shell, path, out1, shell, path,
		 out2);
	if (system(cmd) != 0)
		return;
	*a = slurp(root(), strrchr(out1, '/') + 1, NULL);
	*b = slurp(root(), strrchr(out2, '/') + 1, NULL);
	unlink(path);
	unlink(out1);
	unlink(out2);
}

static const char *const all_shells[] = { "dash", "bash", "zsh" };

UNIT_TEST(launcher_replay_starts_nothing)
{
	for (size_t i = 0; i < 3; i++) {
		for (int together = 0; together < 2; together++) {
			struct strbuf sb = STRBUF_INIT, cmd = STRBUF_INIT;
			struct exec_spec spec = { 0 };
			char sd[256], dir[512], *a, *b, *t;
			unsigned n = 0;

			snprintf(sd, sizeof(sd), "%s/replay-%s-%d", root(), all_shells[i], together);
			sb_addf(&cmd, "echo ran >>'%s.count'", sd);
			spec.command = sb_str(&cmd);
			CHECK_INT(build_launcher(&sb, sd, 1, "replay-token", &spec, 0, 0, true), 0);
			run_twice(all_shells[i], sb_str(&sb), together, &a, &b);
			/* the replay answers as the first did */
			CHECK_INT(exec_parse_launch(a, &n), 0);
			CHECK_INT(n, 1);
			CHECK_STR(b, a);
			snprintf(dir, sizeof(dir), "%s/cmd/1", sd);
			t = wait_exit(dir, 10000);
			CHECK_STR(t, "0\n");
			free(t);
			/* one command, run once */
			CHECK(!exists(sd, "cmd/2"));
			snprintf(dir, sizeof(dir), "%s.count", sd);
			t = slurp(root(), strrchr(dir, '/') + 1, NULL);
			CHECK_STR(t, "ran\n");
			free(t);
			/* and nothing of either left running */
			snprintf(dir, sizeof(dir), "replay-%s-%d/launch/[r]eplay-token", all_shells[i], together);
			CHECK(none_left_running(dir));
			free(a);
			free(b);
			sb_free(&sb);
			sb_free(&cmd);
		}
	}
}

UNIT_TEST(stdin_replay_feeds_nothing)
{
	for (size_t i = 0; i < 3; i++) {
		struct exec_spec spec = { .command = "exec cat" };
		struct strbuf sb = STRBUF_INIT;
		char sd[256], dir[512], *a, *b, *t;

		state_dir(sd, sizeof(sd), "stdinreplay", all_shells[i]);
		CHECK_INT(start("dash", sd, 1, &spec, dir, sizeof(dir)), 1);
		/* one after the other, then both at once */
		CHECK_INT(exec_build_stdin_write(&sb, dir, "r1", NULL, "abc", 3), 0);
		run_twice(all_shells[i], sb_str(&sb), false, &a, &b);
		CHECK_STR(a, "daytonafs-written\n");
		CHECK_STR(b, "daytonafs-written\n");
		free(a);
		free(b);
		sb_reset(&sb);
		CHECK_INT(exec_build_stdin_write(&sb, dir, "r2", "r1", "def", 3), 0);
		run_twice(all_shells[i], sb_str(&sb), true, &a, &b);
		CHECK_STR(a, "daytonafs-written\n");
		CHECK_STR(b, "daytonafs-written\n");
		free(a);
		free(b);
		sb_free(&sb);
		/* the claim of an answered batch goes with the next one */
		CHECK(!exists(dir, "stdin.b.r1"));
		CHECK(exists(dir, "stdin.b.r2"));
		CHECK_INT(close_stdin("dash", dir), 0);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "0\n");
		free(t);
		t = slurp(dir, "stdout", NULL);
		CHECK_STR(t, "abcdef");
		free(t);
	}
}

static unsigned orphans_seen[8];
static size_t n_orphans_seen;

static void note_orphan(void *ctx, unsigned n)
{
	(void)ctx;
	if (n_orphans_seen < 8)
		orphans_seen[n_orphans_seen++] = n;
}

UNIT_TEST(reconcile_output)
{
	n_orphans_seen = 0;
	CHECK_INT(exec_parse_reconcile("daytonafs-orphan 3\ndaytonafs-orphan 12\ndaytonafs-reconciled\n",
				       note_orphan, NULL), 0);
	CHECK_INT(n_orphans_seen, 2);
	CHECK_INT(orphans_seen[0], 3);
	CHECK_INT(orphans_seen[1], 12);
	n_orphans_seen = 0;
	/* cut short: what it said counts, but it did not finish */
	CHECK_INT(exec_parse_reconcile("daytonafs-orphan 3\n", note_orphan, NULL), -EIO);
	CHECK_INT(n_orphans_seen, 1);
	n_orphans_seen = 0;
	CHECK_INT(exec_parse_reconcile("daytonafs-orphan x\ndaytonafs-orphan 0\ndaytonafs-orphan 5x\n"
				       "daytonafs-reconciled", note_orphan, NULL), 0);
	CHECK_INT(n_orphans_seen, 0);
	CHECK_INT(exec_parse_reconcile("", note_orphan, NULL), -EIO);
	CHECK_INT(exec_parse_reconcile(NULL, note_orphan, NULL), -EIO);
}

UNIT_TEST(run_stdin)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "exec wc -l" };
		char sd[256], dir[512];
		char *t;

		state_dir(sd, sizeof(sd), "stdin", shells[i]);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		CHECK(exists(dir, "stdin.pipe"));
		CHECK(pid_file_alive(dir, "stdin.holder"));
		CHECK_INT(feed(shells[i], dir, "one\ntwo\n", 8), 0);
		sleep_ms(150);
		CHECK_INT(feed(shells[i], dir, "three\n", 6), 0);
		CHECK_INT(feed(shells[i], dir, "four (no newline)", 17), 0);
		sleep_ms(100);
		CHECK(!exists(dir, "exit"));     /* still waiting for more */
		CHECK_INT(close_stdin(shells[i], dir), 0);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "0\n");
		free(t);
		t = slurp(dir, "stdout", NULL);
		CHECK_STR(t, "3\n");
		free(t);
		CHECK(exists(dir, "stdin.eof"));
		/* later writes are refused, and closing again is fine */
		CHECK_INT(feed(shells[i], dir, "x", 1), -EPIPE);
		CHECK_INT(close_stdin(shells[i], dir), 0);
		sleep_ms(50);
		CHECK(holder_gone(dir));
	}
}

UNIT_TEST(run_stdin_binary)
{
	/* Any bytes, in order, and a big batch that must wait for the reader. */
	struct exec_spec spec = { .command = "sleep 0.3; exec cat" };
	static const char bin[] = "a\0b\377\n\0last";
	struct strbuf big = STRBUF_INIT, want = STRBUF_INIT;
	char sd[256], dir[512];
	size_t len = 0;
	char *t;

	for (int k = 0; k < 40000; k++)
		sb_addf(&big, "%07d\n", k);     /* 320 KB: more than a pipe holds */
	state_dir(sd, sizeof(sd), "stdinbin", "bash");
	CHECK_INT(start("bash", sd, 1, &spec, dir, sizeof(dir)), 1);
	CHECK_INT(feed("bash", dir, bin, sizeof(bin) - 1), 0);
	CHECK_INT(feed("bash", dir, big.buf, big.len), 0);
	CHECK_INT(close_stdin("bash", dir), 0);
	t = wait_exit(dir, 10000);
	CHECK_STR(t, "0\n");
	free(t);
	sb_add(&want, bin, sizeof(bin) - 1);
	sb_add(&want, big.buf, big.len);
	t = slurp(dir, "stdout", &len);
	CHECK_INT(len, want.len);
	CHECK(t && memcmp(t, want.buf, want.len) == 0);
	free(t);
	sb_free(&big);
	sb_free(&want);
}

UNIT_TEST(run_stdin_unread)
{
	/* A command that ignores its stdin ends, and takes the holder along. */
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo done" };
		char sd[256], dir[512];
		char *t;

		state_dir(sd, sizeof(sd), "stdin2", shells[i]);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		t = wait_exit(dir, 5000);
		CHECK_STR(t, "0\n");
		free(t);
		sleep_ms(50);
		CHECK(holder_gone(dir));
		/* writing to it now says it ended */
		CHECK_INT(feed(shells[i], dir, "x", 1), -EPIPE);
	}
}

UNIT_TEST(run_stdin_kill)
{
	/* A command waiting for input that never comes ends when killed. */
	struct exec_spec spec = { .command = "read x; echo got $x" };
	struct strbuf k = STRBUF_INIT;
	char sd[256], dir[512], *t;

	state_dir(sd, sizeof(sd), "stdin3", "dash");
	CHECK_INT(start("dash", sd, 1, &spec, dir, sizeof(dir)), 1);
	sleep_ms(100);
	CHECK(!exists(dir, "exit"));
	exec_build_kill(&k, dir, NULL);
	t = run_shell("dash", sb_str(&k));
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	t = wait_exit(dir, 5000);
	CHECK_STR(t, "143\n");
	free(t);
	sleep_ms(50);
	CHECK(holder_gone(dir));
	sb_free(&k);
}

UNIT_TEST(run_timeout)
{
	struct exec_spec spec = { .command = "echo before; sleep 30; echo after", .timeout_s = 1 };
	char sd[256], dir[512];
	struct timespec a, b;
	char *t;
	long ms;

	state_dir(sd, sizeof(sd), "timeout", "bash");
	clock_gettime(CLOCK_MONOTONIC, &a);
	CHECK_INT(start("bash", sd, 1, &spec, dir, sizeof(dir)), 1);
	t = wait_exit(dir, 10000);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	CHECK_STR(t, "124\n");        /* as timeout(1) */
	CHECK(ms >= 900 && ms < 3000);
	free(t);
	t = slurp(dir, "state", NULL);
	CHECK_STR(t, "timedout\n");
	free(t);
	t = slurp(dir, "stdout", NULL);
	CHECK_STR(t, "before\n");
	free(t);

	/* a quick command is not touched by its timeout */
	spec.command = "echo quick";
	spec.timeout_s = 1;
	CHECK_INT(start("bash", sd, 1, &spec, dir, sizeof(dir)), 2);
	t = wait_exit(dir, 5000);
	CHECK_STR(t, "0\n");
	free(t);
	sleep_ms(1300);
	CHECK(!exists(dir, "state"));
}

UNIT_TEST(run_kill)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "sleep 30 & sleep 31; echo never" };
		struct strbuf k = STRBUF_INIT;
		char sd[256], dir[512], *t;
		char *pg;

		state_dir(sd, sizeof(sd), "kill", shells[i]);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		CHECK(!exists(dir, "exit"));
		exec_build_kill(&k, dir, NULL);
		t = run_shell(shells[i], sb_str(&k));
		CHECK_STR(t, "daytonafs-killed\n");
		free(t);
		t = wait_exit(dir, 5000);
		CHECK_STR(t, "143\n");
		free(t);
		t = slurp(dir, "state", NULL);
		CHECK_STR(t, "killed\n");
		free(t);
		CHECK(holder_gone(dir));
		/* the whole group went: the background sleep too (zombies aside:
		 * in a container without an init they are never reaped) */
		pg = slurp(dir, "pgid", NULL);
		CHECK(pg != NULL);
		if (pg) {
			char cmd[160];

			pg[strcspn(pg, "\n")] = '\0';
			/* by process group (ps -g would select by session) */
			snprintf(cmd, sizeof(cmd), "ps -e -o pgid=,stat= | awk '$1 == %s && $2 !~ /^Z/' | grep -q .", pg);
			sleep_ms(100);
			CHECK(system(cmd) != 0);
			free(pg);
		}
		/* killing an ended command says so */
		t = run_shell(shells[i], sb_str(&k));
		CHECK_STR(t, "daytonafs-ended\n");
		free(t);
		sb_free(&k);
	}
}

UNIT_TEST(run_kill_stubborn)
{
	/* TERM ignored: the SIGKILL 2 s later ends it, 137 */
	struct exec_spec spec = { .command = "trap '' TERM; sleep 30" };
	struct strbuf k = STRBUF_INIT;
	char sd[256], dir[512], *t;
	struct timespec a, b;
	long ms;

	state_dir(sd, sizeof(sd), "kill2", "dash");
	CHECK_INT(start("dash", sd, 1, &spec, dir, sizeof(dir)), 1);
	sleep_ms(200);          /* until the trap is set */
	exec_build_kill(&k, dir, NULL);
	clock_gettime(CLOCK_MONOTONIC, &a);
	t = run_shell("dash", sb_str(&k));
	clock_gettime(CLOCK_MONOTONIC, &b);
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	/* the kill returned once it had ended, after the KILL at 2 s */
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	CHECK(ms >= 1900 && ms < 3500);
	t = slurp(dir, "exit", NULL);
	CHECK_STR(t, "137\n");
	free(t);
	sb_free(&k);
}

/* Makes a record cmd/N in sd whose processes are gone: pgid and wpid name
 * pid (a dead one, or a live process that is not its wrapper). */
/* Writes dir/name: line and a newline, or empty with line NULL. */
static void put_line(const char *dir, const char *name, const char *line)
{
	char path[700];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	if (line)
		fprintf(f, "%s\n", line);
	fclose(f);
}

static void fake_record(const char *sd, unsigned n, const char *pid, bool with_wpid, char *dir, size_t cap)
{
	char path[700];

	snprintf(path, sizeof(path), "%s", sd);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/cmd", sd);
	mkdir(path, 0755);
	snprintf(dir, cap, "%s/cmd/%u", sd, n);
	mkdir(dir, 0755);
	put_line(dir, "command", "true");
	put_line(dir, "pgid", pid);
	if (with_wpid)
		put_line(dir, "wpid", pid);
}

UNIT_TEST(run_kill_orphan_record)
{
	/* A record whose processes are gone (the sandbox restarted): kill
	 * ends it, and signals nothing. */
	char sd[256], dir[512], live[32], *t;
	struct strbuf k = STRBUF_INIT;

	state_dir(sd, sizeof(sd), "orphan", "dash");
	fake_record(sd, 1, "999999999", true, dir, sizeof(dir));
	exec_build_kill(&k, dir, NULL);
	t = run_shell("dash", sb_str(&k));
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	t = slurp(dir, "exit", NULL);
	CHECK_STR(t, "137\n");
	free(t);
	t = slurp(dir, "state", NULL);
	CHECK_STR(t, "killed\n");
	free(t);
	sb_free(&k);

	/* its pid now belongs to another process (this test): not signalled */
	snprintf(live, sizeof(live), "%d", (int)getpid());
	fake_record(sd, 2, live, true, dir, sizeof(dir));
	exec_build_kill(&k, dir, NULL);
	t = run_shell("bash", sb_str(&k));
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	t = slurp(dir, "exit", NULL);
	CHECK_STR(t, "137\n");
	free(t);
	sb_free(&k);
}

UNIT_TEST(run_kill_replayed_says_what_the_first_said)
{
	/* Daytona's proxy may send a request twice: the second run of a kill
	 * found the command ended by the first and said "ended" (ESRCH for a
	 * kill that worked). With its token it prints the first's answer. */
	char sd[256], dir[512], *t;
	struct strbuf k = STRBUF_INIT;

	state_dir(sd, sizeof(sd), "replay", "dash");
	fake_record(sd, 1, "999999999", true, dir, sizeof(dir));
	CHECK_INT(exec_build_kill(&k, dir, "k-1"), 0);
	t = run_shell("dash", sb_str(&k));
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	t = run_shell("bash", sb_str(&k));       /* the replay */
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	sb_free(&k);
	/* another kill (another token) of the ended command: ended */
	CHECK_INT(exec_build_kill(&k, dir, "k-2"), 0);
	t = run_shell("dash", sb_str(&k));
	CHECK_STR(t, "daytonafs-ended\n");
	free(t);
	sb_free(&k);
	/* no record: no claim to wait for */
	CHECK_INT(exec_build_kill(&k, "/nonexistent/cmd/9", "k-3"), 0);
	t = run_shell("dash", sb_str(&k));
	CHECK(t && strstr(t, "daytonafs-killed") != NULL);
	free(t);
	sb_free(&k);
	CHECK_INT(exec_build_kill(&k, dir, "bad token"), -EINVAL);
	sb_free(&k);
}

UNIT_TEST(run_kill_claim_in_a_directory_not_writable)
{
	/* A claim file that cannot be made (a record its user may not write)
	 * was taken for a replay's: the kill waited 25 s for an answer that
	 * never came and said "daytonafs-error replay". It claims nothing and
	 * answers. Run as nobody (setpriv), so root only. */
	char base[] = "/tmp/dfs-claim-XXXXXX", dir[128], cmd[200], *t;
	struct strbuf k = STRBUF_INIT;
	struct timespec a, b;

	if (getuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0 || !mkdtemp(base))
		return;
	CHECK(chmod(base, 0755) == 0);
	fake_record(base, 1, "999999999", false, dir, sizeof(dir));
	put_line(dir, "exit", "0");
	CHECK_INT(exec_build_kill(&k, dir, "k-1"), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	t = run_shell("setpriv --reuid=65534 --regid=65534 --clear-groups dash", sb_str(&k));
	clock_gettime(CLOCK_MONOTONIC, &b);
	CHECK_STR(t, "daytonafs-ended\n");
	CHECK(b.tv_sec - a.tv_sec < 5);
	free(t);
	sb_free(&k);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	CHECK(system(cmd) == 0);
}

/* Kills the command of record dir by the kill script under shell: its
 * wrapper, which runs, records the end (the command's TERM: 143). */
static void kill_ended_by_wrapper(const char *shell, const char *dir)
{
	struct strbuf sb = STRBUF_INIT;
	char *t;

	exec_build_kill(&sb, dir, NULL);
	t = run_shell(shell, sb_str(&sb));
	CHECK_STR(t, "daytonafs-killed\n");
	free(t);
	t = wait_exit(dir, 5000);
	CHECK_STR(t, "143\n");
	free(t);
	sb_free(&sb);
}

UNIT_TEST(run_reconcile)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "sleep 30" };
		struct strbuf sb = STRBUF_INIT;
		char sd[256], dir[512], live_dir[512], path[700], *t;
		FILE *f;

		state_dir(sd, sizeof(sd), "reconcile", shells[i]);
		/* 1: ended; 2: running for real; 3: its wrapper is gone;
		 * 4: being started (no wpid yet); 5: no wpid, and old */
		spec.command = "true";
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		t = wait_exit(dir, 5000);
		free(t);
		spec.command = "sleep 30";
		CHECK_INT(start(shells[i], sd, 2, &spec, live_dir, sizeof(live_dir)), 2);
		fake_record(sd, 3, "999999999", true, dir, sizeof(dir));
		fake_record(sd, 4, "999999999", false, dir, sizeof(dir));
		fake_record(sd, 5, "999999999", false, dir, sizeof(dir));
		snprintf(path, sizeof(path), "touch -d '2 minutes ago' '%s/command'", dir);
		CHECK(system(path) == 0);
		snprintf(path, sizeof(path), "%s/cmd/notacommand", sd);
		f = fopen(path, "w");
		if (f)
			fclose(f);

		exec_build_reconcile(&sb, sd);
		t = run_shell(shells[i], sb_str(&sb));
		CHECK_STR(t, "daytonafs-orphan 3\ndaytonafs-orphan 5\ndaytonafs-reconciled\n");
		free(t);
		snprintf(dir, sizeof(dir), "%s/cmd/3", sd);
		t = slurp(dir, "exit", NULL);
		CHECK_STR(t, "137\n");
		free(t);
		snprintf(dir, sizeof(dir), "%s/cmd/4", sd);
		CHECK(!exists(dir, "exit"));
		CHECK(!exists(live_dir, "exit"));
		snprintf(dir, sizeof(dir), "%s/cmd/1", sd);
		t = slurp(dir, "exit", NULL);
		CHECK_STR(t, "0\n");
		free(t);

		/* a second look finds nothing more */
		t = run_shell(shells[i], sb_str(&sb));
		CHECK_STR(t, "daytonafs-reconciled\n");
		free(t);
		sb_free(&sb);
		kill_ended_by_wrapper(shells[i], live_dir);
	}
}

/* A command that shows nothing of itself to ours() (not its command file in
 * its command line, not its streams): only its wrapper tells that it runs,
 * by its command line, which names the record's run (what alive() looks
 * for, in this version and older ones). Else a reconcile ends a live
 * command as killed and kill leaves it running. */
UNIT_TEST(run_hidden_command_known_by_its_wrapper)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "exec sleep 30 >/dev/null 2>&1 </dev/null" };
		struct strbuf sb = STRBUF_INIT;
		char sd[256], dir[512], path[700], *t;

		state_dir(sd, sizeof(sd), "hidden", shells[i]);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 1);
		snprintf(path, sizeof(path), "touch -d '2 minutes ago' '%s/command'", dir);
		CHECK(system(path) == 0);
		exec_build_reconcile(&sb, sd);
		t = run_shell(shells[i], sb_str(&sb));
		CHECK_STR(t, "daytonafs-reconciled\n");
		free(t);
		CHECK(!exists(dir, "exit"));
		sb_free(&sb);
		/* recorded by the wrapper, not ended by kill (137) */
		kill_ended_by_wrapper(shells[i], dir);
	}
}

/* The number the launcher asked for was taken (another mount's record):
 * the command runs once, in the next record, and nothing of it is left
 * about the taken one. */
UNIT_TEST(run_taken_number_runs_once)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo ran >>\"$0.count\"" };
		char sd[256], dir[512], path[700], *t;

		state_dir(sd, sizeof(sd), "taken", shells[i]);
		mkdir(sd, 0755);
		snprintf(path, sizeof(path), "%s/cmd", sd);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/cmd/1", sd);
		mkdir(path, 0755);
		CHECK_INT(start(shells[i], sd, 1, &spec, dir, sizeof(dir)), 2);
		t = wait_exit(dir, 5000);
		CHECK_STR(t, "0\n");
		free(t);
		CHECK(!exists(path, "wpid") && !exists(path, "exit"));
		/* once: the count file is the record's, beside its command */
		t = slurp(dir, "command.count", NULL);
		CHECK_STR(t, "ran\n");
		free(t);
		snprintf(path, sizeof(path), "%s/cmd/[1]/run", sd);
		CHECK(none_left_running(path));
	}
}

/* ---- the fast path: one request for a short command ---------------------- */

UNIT_TEST(launch_result_parse)
{
	struct exec_launch_result r;

	/* ended, both streams inline; the history before it */
	CHECK_INT(exec_parse_launch_result("daytonafs-have 1\ndaytonafs-have 7\ndaytonafs-have-end\n"
					   "daytonafs-started 8\ndaytonafs-exit 3 \n"
					   "daytonafs-stdout 6\nZm9vYmFy\ndaytonafs-stderr 4\n//4AAQ==\n"
					   "daytonafs-inline-end\n", &r), 0);
	CHECK_INT(r.n, 8);
	CHECK(r.listed);
	CHECK_INT(r.n_have, 2);
	CHECK(r.n_have == 2 && r.have[0] == 1 && r.have[1] == 7);
	CHECK(r.ended);
	CHECK_INT(r.exit_code, 3);
	CHECK_INT(r.state, EXEC_EXITED);
	CHECK_INT(r.size[0], 6);
	CHECK(r.inline_ok[0] && r.data[0] && memcmp(r.data[0], "foobar", 6) == 0);
	CHECK_INT(r.size[1], 4);
	CHECK(r.inline_ok[1] && r.data[1] && memcmp(r.data[1], "\xff\xfe\x00\x01", 4) == 0);
	exec_launch_result_free(&r);

	/* empty streams, a state, \r\n line ends */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\r\ndaytonafs-exit 137 killed\r\n"
					   "daytonafs-stdout 0\r\ndaytonafs-stderr 0\r\n"
					   "daytonafs-inline-end\r\n", &r), 0);
	CHECK(r.ended && !r.listed);
	CHECK_INT(r.exit_code, 137);
	CHECK_INT(r.state, EXEC_KILLED);
	CHECK(r.inline_ok[0] && r.inline_ok[1] && r.size[0] == 0 && r.size[1] == 0);
	exec_launch_result_free(&r);

	/* too big to bring (no data): size known, not inline */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0 \n"
					   "daytonafs-stdout 100000\ndaytonafs-stderr 1\nCg==\n"
					   "daytonafs-inline-end\n", &r), 0);
	CHECK(r.ended && !r.inline_ok[0] && r.data[0] == NULL);
	CHECK_INT(r.size[0], 100000);
	CHECK(r.inline_ok[1] && r.data[1][0] == '\n');
	exec_launch_result_free(&r);

	/* bytes that do not decode to the size, or a tool's complaint among
	 * them: not inline (the file is read instead) */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout 5\nZm9vYmFy\n"
					   "daytonafs-stderr 6\nZm9v\nhead: error\nYmFy\n"
					   "daytonafs-inline-end\n", &r), 0);
	CHECK(r.ended && !r.inline_ok[0] && !r.inline_ok[1]);
	CHECK(r.size[0] == 5 && r.size[1] == 6);
	exec_launch_result_free(&r);

	/* a section cut short, or with a size that does not parse: not ended */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout 6\nZm9vYmFy\ndaytonafs-stderr 0\n", &r), 0);
	CHECK(!r.ended && !r.inline_ok[0] && r.data[0] == NULL && r.size[0] == 0);
	exec_launch_result_free(&r);
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout \ndaytonafs-stderr 0\ndaytonafs-inline-end\n", &r), 0);
	CHECK(!r.ended);
	exec_launch_result_free(&r);
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit x\n"
					   "daytonafs-stdout 0\ndaytonafs-stderr 0\ndaytonafs-inline-end\n", &r), 0);
	CHECK(!r.ended);
	exec_launch_result_free(&r);
	/* a stream as plain text (zsh): framed by its size, so lines that
	 * look like tags or base64 among its bytes are its bytes */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout 32\ndaytonafs-text\n"
					   "Zm9v\ndaytonafs-inline-end\n\tend\n\n\ndaytonafs-text-end\n"
					   "daytonafs-stderr 2\nCgo=\ndaytonafs-inline-end\n", &r), 0);
	CHECK(r.ended && r.inline_ok[0] && r.inline_ok[1]);
	CHECK(r.size[0] == 32 && r.data[0] &&
	      !memcmp(r.data[0], "Zm9v\ndaytonafs-inline-end\n\tend\n\n", 32));
	CHECK(r.size[1] == 2 && r.data[1] && !memcmp(r.data[1], "\n\n", 2));
	exec_launch_result_free(&r);
	/* text whose size is not the one sent (cut short, or longer): the
	 * framing is not what was sent, nothing inline is trusted */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout 4\ndaytonafs-text\nabc\ndaytonafs-text-end\n"
					   "daytonafs-stderr 0\ndaytonafs-inline-end\n", &r), 0);
	CHECK(r.n == 2 && !r.ended && !r.inline_ok[0] && r.data[0] == NULL);
	exec_launch_result_free(&r);
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout 2\ndaytonafs-text\nabc\ndaytonafs-text-end\n"
					   "daytonafs-stderr 0\ndaytonafs-inline-end\n", &r), 0);
	CHECK(!r.ended && !r.inline_ok[0]);
	exec_launch_result_free(&r);
	CHECK_INT(exec_parse_launch_result("daytonafs-started 2\ndaytonafs-exit 0\n"
					   "daytonafs-stdout 3\ndaytonafs-text\nabc", &r), 0);
	CHECK(!r.ended && !r.inline_ok[0]);
	exec_launch_result_free(&r);
	/* the history without its end line is not trusted */
	CHECK_INT(exec_parse_launch_result("daytonafs-have 1\ndaytonafs-started 2\n", &r), 0);
	CHECK(!r.listed && r.n_have == 0 && r.have == NULL && !r.ended);
	exec_launch_result_free(&r);
	/* what a replay prints: the number alone */
	CHECK_INT(exec_parse_launch_result("daytonafs-started 4\n", &r), 0);
	CHECK(r.n == 4 && !r.ended && !r.listed);
	exec_launch_result_free(&r);
	CHECK_INT(exec_parse_launch_result("daytonafs-error cwd\n", &r), -ENOENT);
	exec_launch_result_free(&r);
	CHECK_INT(exec_parse_launch_result("daytonafs-exit 0\n", &r), -EIO);
	exec_launch_result_free(&r);
}

/* Starts spec with the fast path under shell; the parsed answer. */
static int start_fast(const char *shell, const char *sd, unsigned first, const struct exec_spec *spec,
		      long wait_ms, size_t inline_max, struct exec_launch_result *r)
{
	struct strbuf sb = STRBUF_INIT;
	static unsigned starts;
	char token[32], *out;
	int rc;

	snprintf(token, sizeof(token), "fast%u", ++starts);
	if (build_launcher(&sb, sd, first, token, spec, wait_ms, inline_max, true) < 0)
		return -1;
	/* An ASCII command makes a plain ASCII launcher (callers here pass
	 * only such; -2 otherwise). */
	for (const char *p = sb_str(&sb); *p; p++) {
		if ((unsigned char)*p >= 0x80) {
			sb_free(&sb);
			return -2;
		}
	}
	out = run_shell(shell, sb_str(&sb));
	sb_free(&sb);
	rc = exec_parse_launch_result(out, r);
	if (rc < 0)
		fprintf(stderr, "launcher said: %s\n", out ? out : "(null)");
	free(out);
	return rc;
}

UNIT_TEST(run_fast_path)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		static const char bin[] = "a\0b\377\n\0\xc3(last";
		struct exec_spec spec = {
			.command = "printf 'a\\000b\\377\\n\\000\\303(last'; printf '\\376err' >&2; exit 5"
		};
		struct exec_launch_result r;
		char sd[256], dir[600], *t;
		size_t len = 0;

		state_dir(sd, sizeof(sd), "fast", shells[i]);
		/* a fresh state directory: the history is empty, the number 1 */
		CHECK_INT(start_fast(shells[i], sd, 0, &spec, 3000, 65536, &r), 0);
		CHECK_INT(r.n, 1);
		CHECK(r.listed && r.n_have == 0);
		CHECK(r.ended);
		CHECK_INT(r.exit_code, 5);
		CHECK_INT(r.state, EXEC_EXITED);
		CHECK_INT(r.size[0], sizeof(bin) - 1);
		CHECK(r.inline_ok[0] && r.data[0] && memcmp(r.data[0], bin, sizeof(bin) - 1) == 0);
		CHECK_INT(r.size[1], 4);
		CHECK(r.inline_ok[1] && r.data[1] && memcmp(r.data[1], "\376err", 4) == 0);
		exec_launch_result_free(&r);
		/* the files are written all the same, for other mounts (exit
		 * just after the wrapper has told the launcher) */
		snprintf(dir, sizeof(dir), "%s/cmd/1", sd);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "5\n");
		free(t);
		t = slurp(dir, "stdout", &len);
		CHECK(t && len == sizeof(bin) - 1 && memcmp(t, bin, len) == 0);
		free(t);

		/* first 0 again: the history comes back, the next number is 2;
		 * output over the limit: its size, not its bytes */
		spec.command = "head -c 3000 /dev/zero; echo e >&2";
		CHECK_INT(start_fast(shells[i], sd, 0, &spec, 3000, 2048, &r), 0);
		CHECK_INT(r.n, 2);
		CHECK(r.listed && r.n_have == 1 && r.have[0] == 1);
		CHECK(r.ended && r.exit_code == 0);
		CHECK_INT(r.size[0], 3000);
		CHECK(!r.inline_ok[0] && r.data[0] == NULL);
		CHECK(r.inline_ok[1] && r.size[1] == 2 && memcmp(r.data[1], "e\n", 2) == 0);
		exec_launch_result_free(&r);

		/* a longer command detaches as before: started, not ended */
		spec.command = "sleep 1; echo late";
		CHECK_INT(start_fast(shells[i], sd, 3, &spec, 100, 65536, &r), 0);
		CHECK_INT(r.n, 3);
		CHECK(!r.ended && !r.listed);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/3", sd);
		CHECK(!exists(dir, "exit"));
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "0\n");
		free(t);
		t = slurp(dir, "stdout", NULL);
		CHECK_STR(t, "late\n");
		free(t);

		/* UTF-8 text is written by the shell's printf, byte for byte:
		 * quotes, %, backslashes, a leading dash, trailing newlines */
		spec.command = "-x=1; printf '%s|' \"\xc3\xa9 it's\" '\\n %d' \\$HOME\n\n";
		CHECK_INT(start_fast(shells[i], sd, 5, &spec, 3000, 65536, &r), -2);   /* not ASCII */
		{
			struct strbuf sb = STRBUF_INIT;
			char *out;

			CHECK_INT(build_launcher(&sb, sd, 5, "utf8tok", &spec, 3000, 65536, true), 0);
			CHECK(strstr(sb_str(&sb), "base64 -d") == NULL);
			out = run_shell(shells[i], sb_str(&sb));
			CHECK_INT(exec_parse_launch_result(out, &r), 0);
			CHECK(r.n == 5 && r.ended && r.exit_code == 0);
			CHECK(r.inline_ok[0] && r.size[0] == 20 &&
			      memcmp(r.data[0], "\xc3\xa9 it's|\\n %d|$HOME|", 20) == 0);
			free(out);
			sb_free(&sb);
			exec_launch_result_free(&r);
			snprintf(dir, sizeof(dir), "%s/cmd/5", sd);
			t = slurp(dir, "command", NULL);
			CHECK_STR(t, spec.command);
			free(t);
		}

		/* text that is not UTF-8 goes as base64 in a here-document */
		spec.command = "echo ok # \xff\xfe\n";
		{
			struct strbuf sb = STRBUF_INIT;
			char *out;

			CHECK_INT(build_launcher(&sb, sd, 7, "hdtok", &spec, 3000, 65536, true), 0);
			CHECK(strstr(sb_str(&sb), "base64 -d >\"$_dfd/command\" <<'DAYTONAFS_EOF'") != NULL);
			out = run_shell(shells[i], sb_str(&sb));
			CHECK_INT(exec_parse_launch_result(out, &r), 0);
			CHECK(r.n == 7 && r.ended && r.exit_code == 0);
			CHECK(r.inline_ok[0] && r.size[0] == 3 && memcmp(r.data[0], "ok\n", 3) == 0);
			free(out);
			sb_free(&sb);
			exec_launch_result_free(&r);
			snprintf(dir, sizeof(dir), "%s/cmd/7", sd);
			t = slurp(dir, "command", NULL);
			CHECK_STR(t, spec.command);
			free(t);
		}

		/* a command that waits for stdin is not held up by the wait:
		 * it is still running when the launch answers */
		spec.command = "cat";
		CHECK_INT(start_fast(shells[i], sd, 8, &spec, 60, 65536, &r), 0);
		CHECK(r.n == 8 && !r.ended);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/8", sd);
		CHECK_INT(close_stdin(shells[i], dir), 0);
		t = wait_exit(dir, 10000);
		CHECK_STR(t, "0\n");
		free(t);
	}
}

UNIT_TEST(launcher_fast_replay_answers_started)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct strbuf sb = STRBUF_INIT;
		struct exec_spec spec = { .command = "echo once" };
		struct exec_launch_result r;
		char sd[256], *a, *b;

		state_dir(sd, sizeof(sd), "fastreplay", shells[i]);
		CHECK_INT(build_launcher(&sb, sd, 0, "replay-fast", &spec, 3000, 65536, true), 0);
		run_twice(shells[i], sb_str(&sb), false, &a, &b);
		CHECK_INT(exec_parse_launch_result(a, &r), 0);
		CHECK(r.n == 1 && r.ended && r.inline_ok[0] && r.size[0] == 5);
		exec_launch_result_free(&r);
		/* the replay starts nothing and says only the number */
		CHECK_STR(b, "daytonafs-started 1\n");
		free(a);
		free(b);
		sb_free(&sb);
	}
}

/*
 * Every program a launch starts is time a short command waits for (a fork
 * and an exec each, tens of ms on a loaded machine). The launch runs here
 * with a PATH whose first directory holds a shim for each tool the scripts
 * use, which logs its name and runs the real one; the wrapper finds bash
 * there too. What a quick `true` may start: mkdir (the record), mkfifo,
 * bash (the wrapper, whose job control gives the command its process group
 * and which holds stdin itself) and bash (the command), under dash sleep
 * (the timer of the wait); exit is written in place (an mv before). Before
 * the builtins took over: 13
 * programs under zsh (a mkdir for the claim, find, two command -v
 * substitutions, a sleep for the timer and three mv); before the wrapper
 * ran under bash, 7 (a setsid for the wrapper, which ran under sh, one for
 * the command, and a sleep that held stdin). With output, a base64 per
 * stream comes on top, and a wc for their sizes (not under zsh).
 */
static const char *const shimmed[] = { "mkdir", "mkfifo", "setsid", "sh", "bash", "sleep", "mv", "find",
				       "cat", "wc", "base64", "ls", "rm", "kill", "true", "printf", "echo" };

static void make_shims(const char *dir, const char *log)
{
	mkdir(dir, 0755);
	for (size_t i = 0; i < sizeof(shimmed) / sizeof(shimmed[0]); i++) {
		char cmd[200], real[1024] = "", path[600];
		FILE *f;

		snprintf(cmd, sizeof(cmd), "command -v %s", shimmed[i]);
		f = popen(cmd, "r");
		if (!f || !fgets(real, sizeof(real), f))
			real[0] = '\0';
		if (f)
			pclose(f);
		real[strcspn(real, "\n")] = '\0';
		if (real[0] != '/')
			continue;       /* a builtin: never run from PATH */
		snprintf(path, sizeof(path), "%s/%s", dir, shimmed[i]);
		f = fopen(path, "w");
		if (!f)
			continue;
		/* its name, then a line with its arguments (which count_runs
		 * does not count) */
		fprintf(f, "#!/bin/sh\necho %s >>'%s'\necho \"%s: $*\" >>'%s'\nexec '%s' \"$@\"\n", shimmed[i], log,
			shimmed[i], log, real);
		fclose(f);
		chmod(path, 0755);
	}
}

/* How many lines of the log are name. */
static int count_runs(const char *log, const char *name)
{
	char *t = slurp(root(), strrchr(log, '/') + 1, NULL), *p, *save = NULL;
	int n = 0;

	for (p = t ? strtok_r(t, "\n", &save) : NULL; p; p = strtok_r(NULL, "\n", &save))
		n += !strcmp(p, name);
	free(t);
	return n;
}

/* Whether the log holds text (a program's arguments, say). */
static bool log_has(const char *log, const char *text)
{
	char *t = slurp(root(), strrchr(log, '/') + 1, NULL);
	bool has = t && strstr(t, text);

	free(t);
	return has;
}

static int count_all(const char *log)
{
	int n = 0;

	for (size_t i = 0; i < sizeof(shimmed) / sizeof(shimmed[0]); i++)
		n += count_runs(log, shimmed[i]);
	return n;
}

UNIT_TEST(run_fast_path_starts_few_programs)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "true" };
		struct exec_launch_result r;
		char sd[256], shims[300], log[300], shell[700], dir[600];
		bool dash = !strcmp(shells[i], "dash"), zsh = !strcmp(shells[i], "zsh");

		state_dir(sd, sizeof(sd), "few", shells[i]);
		snprintf(shims, sizeof(shims), "%s/shims-%s", root(), shells[i]);
		snprintf(log, sizeof(log), "%s/ran-%s", root(), shells[i]);
		make_shims(shims, log);
		/* the shell itself by its path: only what it starts is counted */
		snprintf(shell, sizeof(shell), "PATH='%s':\"$PATH\" \"$(command -v %s)\"", shims, shells[i]);
		/* the history and the state directory are made by the first */
		CHECK_INT(start_fast(shell, sd, 0, &spec, 3000, 65536, &r), 0);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/1", sd);
		free(wait_exit(dir, 10000));
		sleep_ms(200);
		unlink(log);

		CHECK_INT(start_fast(shell, sd, 2, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 2 && r.ended && r.exit_code == 0);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/2", sd);
		free(wait_exit(dir, 10000));
		sleep_ms(200);          /* the holder's kill comes after exit */
		/* zsh makes the record with its zf_mkdir builtin */
		CHECK_INT(count_runs(log, "mkdir"), zsh ? 0 : 1);
		/* and takes its FIFOs from the spares that the wrapper of the
		 * command before made after its end, by zf_mv: its one mkfifo
		 * makes the next spares, after the end of this one */
		CHECK_INT(count_runs(log, "mkfifo"), with_helper && zsh ? 0 : 1);
		CHECK(log_has(log, "/cmd/2/stdin.pipe") == !zsh);
		/* (the helper makes the spares with no process at all) */
		CHECK(log_has(log, "/spare.stdin.pipe") == (zsh && !with_helper));
		CHECK(exists(sd, "spare.stdin.pipe") == zsh && exists(sd, "spare.end.pipe") == zsh);
		if (zsh) {
			/* the spares are the next command's stdin: their user's alone */
			char sp[600];
			struct stat st;

			snprintf(sp, sizeof(sp), "%s/spare.stdin.pipe", sd);
			CHECK(stat(sp, &st) == 0 && (st.st_mode & 0777) == 0600);
		}
		CHECK_INT(count_runs(log, "setsid"), 0);
		CHECK_INT(count_runs(log, "sh"), 0);
		/* the wrapper's and the command's; with the helper, the command's */
		CHECK_INT(count_runs(log, "bash"), with_helper ? 1 : 2);
		/* the wrapper (bash) holds stdin itself: no sleep; under dash
		 * the timer of the wait, which may be killed before its sleep
		 * starts */
		CHECK(count_runs(log, "sleep") <= (dash ? 1 : 0));
		{
			char *h = slurp(dir, "stdin.holder", NULL), *w = slurp(dir, "wpid", NULL);

			CHECK(h && w && !strcmp(h, w));
			free(h);
			free(w);
		}
		/* exit is written in place: no mv */
		CHECK_INT(count_runs(log, "mv"), 0);
		CHECK(count_all(log) <= (dash ? 5 : zsh ? 3 : 4));

		/* with output on both streams: two base64 more, and a wc for
		 * the sizes, but under zsh, which reads the sizes with its
		 * zstat builtin and plain text with sysread: nothing more */
		unlink(log);
		spec.command = "echo out; echo err >&2";
		CHECK_INT(start_fast(shell, sd, 3, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 3 && r.ended && r.inline_ok[0] && r.inline_ok[1]);
		CHECK(r.size[0] == 4 && r.data[0] && !memcmp(r.data[0], "out\n", 4));
		CHECK(r.size[1] == 4 && r.data[1] && !memcmp(r.data[1], "err\n", 4));
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/3", sd);
		free(wait_exit(dir, 10000));
		sleep_ms(200);
		CHECK_INT(count_runs(log, "wc"), zsh ? 0 : 1);
		CHECK_INT(count_runs(log, "base64"), zsh ? 0 : 2);
		CHECK(count_all(log) <= (dash ? 8 : zsh ? 3 : 7));

		/* bytes that are not plain text (a carriage return, a byte
		 * over 0x7f) come in base64 under every shell, exact */
		unlink(log);
		spec.command = "printf 'a\\r\\n'; printf '\\377\\n' >&2";
		CHECK_INT(start_fast(shell, sd, 4, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 4 && r.ended && r.inline_ok[0] && r.inline_ok[1]);
		CHECK(r.size[0] == 3 && r.data[0] && !memcmp(r.data[0], "a\r\n", 3));
		CHECK(r.size[1] == 2 && r.data[1] && !memcmp(r.data[1], "\377\n", 2));
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/4", sd);
		free(wait_exit(dir, 10000));
		sleep_ms(200);
		CHECK_INT(count_runs(log, "base64"), 2);
	}
}

/* The wrapper looks bash and setsid up in PATH with builtins: entries that
 * are relative, empty, globs or hold spaces are passed over, not expanded. */
UNIT_TEST(run_wrapper_finds_bash_and_setsid_by_builtins)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo \"${BASH_VERSION:+bash}\"; ps -o pgid= -p $$ | tr -d ' '; "
						     "echo $$" };
		struct exec_launch_result r;
		char sd[256], shell[700];

		state_dir(sd, sizeof(sd), "path", shells[i]);
		snprintf(shell, sizeof(shell), "PATH='rel/bin::/no such dir:/*:*':\"$PATH\" \"$(command -v %s)\"",
			 shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 1 && r.ended && r.exit_code == 0 && r.inline_ok[0]);
		if (r.data[0]) {
			char pgid[32] = "", pid[32] = "", word[32] = "";

			/* bash ran it, in a process group of its own (the
			 * wrapper's job control) */
			CHECK_INT(sscanf(r.data[0], "%31s %31s %31s", word, pgid, pid), 3);
			CHECK_STR(word, "bash");
			CHECK_STR(pgid, pid);
		}
		exec_launch_result_free(&r);
	}
}

/*
 * A sandbox without bash: the wrapper runs under sh, and the command too,
 * made a session (and group) of its own by setsid, which kill signals as a
 * whole. PATH holds only links to the tools the scripts use, bash not among
 * them.
 */
UNIT_TEST(run_without_bash)
{
	static const char *const tools[] = { "sh", "mkfifo", "setsid", "sleep", "mv", "cat", "base64", "wc", "ps",
					     "tr", "rm", "ls", "find", "mkdir", "readlink", "awk", "grep" };
	char bin[300], shell[700];

	snprintf(bin, sizeof(bin), "%s/nobash-bin", root());
	mkdir(bin, 0755);
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		char cmd[200], real[1024] = "", path[600];
		FILE *f;

		snprintf(cmd, sizeof(cmd), "command -v %s", tools[i]);
		f = popen(cmd, "r");
		if (!f || !fgets(real, sizeof(real), f))
			real[0] = '\0';
		if (f)
			pclose(f);
		real[strcspn(real, "\n")] = '\0';
		snprintf(path, sizeof(path), "%s/%s", bin, tools[i]);
		if (real[0] == '/')
			CHECK(symlink(real, path) == 0 || errno == EEXIST);
	}
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo \"${BASH_VERSION:-sh}\"; ps -o sid=,pgid= -p $$; echo $$" };
		struct exec_launch_result r;
		char sd[256], dir[600], *pg;

		if (!strcmp(shells[i], "bash"))
			continue;       /* the toolbox shell is bash: bash exists */
		state_dir(sd, sizeof(sd), "nobash", shells[i]);
		snprintf(shell, sizeof(shell), "PATH='%s' \"$(command -v %s)\"", bin, shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 1 && r.ended && r.exit_code == 0 && r.inline_ok[0]);
		if (r.data[0]) {
			char word[32] = "", sid[32] = "", pgid[32] = "", pid[32] = "";

			CHECK_INT(sscanf(r.data[0], "%31s %31s %31s %31s", word, sid, pgid, pid), 4);
			CHECK_STR(word, "sh");
			/* a session by setsid; the helper gives a group alone, as
			 * bash's job control does */
			if (!with_helper)
				CHECK_STR(sid, pid);
			CHECK_STR(pgid, pid);
		}
		exec_launch_result_free(&r);

		/* kill reaches the whole group */
		spec.command = "sleep 30 & sleep 31; echo never";
		CHECK_INT(start_fast(shell, sd, 2, &spec, 100, 65536, &r), 0);
		CHECK(r.n == 2 && !r.ended);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/2", sd);
		kill_ended_by_wrapper(shell, dir);
		pg = slurp(dir, "pgid", NULL);
		CHECK(pg != NULL);
		if (pg) {
			char cmd[200];

			pg[strcspn(pg, "\n")] = '\0';
			snprintf(cmd, sizeof(cmd), "ps -e -o pgid=,stat= | awk '$1 == %s && $2 !~ /^Z/' | grep -q .", pg);
			sleep_ms(100);
			CHECK(system(cmd) != 0);
			free(pg);
		}
	}
}

/* A BASH_ENV in the toolbox's environment reaches the command (bash sources
 * it there), not the wrapper, which bash runs too: a file that ends the
 * wrapper would end it. Unset, it stays unset. */
UNIT_TEST(run_bash_env_reaches_the_command_only)
{
	char file[300];
	FILE *f;

	snprintf(file, sizeof(file), "%s/bash-env", root());
	f = fopen(file, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("case $0 in */command) echo sourced ;; */run) exit 3 ;; esac\n", f);
	fclose(f);
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo \"${BASH_ENV-unset}\"" };
		struct exec_launch_result r;
		char sd[256], shell[900], want[400];

		state_dir(sd, sizeof(sd), "bashenv", shells[i]);
		snprintf(shell, sizeof(shell), "BASH_ENV='%s' \"$(command -v %s)\"", file, shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 3000, 65536, &r), 0);
		snprintf(want, sizeof(want), "sourced\n%s\n", file);
		CHECK(r.n == 1 && r.ended && r.exit_code == 0 && r.inline_ok[0]);
		CHECK(r.data[0] && r.size[0] == strlen(want) && !memcmp(r.data[0], want, strlen(want)));
		exec_launch_result_free(&r);
		snprintf(shell, sizeof(shell), "env -u BASH_ENV \"$(command -v %s)\"", shells[i]);
		CHECK_INT(start_fast(shell, sd, 2, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 2 && r.ended && r.exit_code == 0 && r.inline_ok[0]);
		CHECK(r.data[0] && r.size[0] == 6 && !memcmp(r.data[0], "unset\n", 6));
		exec_launch_result_free(&r);
	}
}

/* The toolbox kills its shell's process group at a request's timeout
 * (Daytona: 30 s). The wrapper is in that group (no setsid on Daytona),
 * the command in one of its own: the wrapper dies, the command runs on.
 * kill must still stop it (its group, which the record names), and only
 * then say killed. The launcher runs in a session of its own here, as
 * the toolbox shell would, and that group is SIGKILLed once it is done. */
UNIT_TEST(run_kill_after_the_wrapper_was_killed)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "sleep 30 & sleep 31; echo never" };
		struct exec_launch_result r;
		struct strbuf k = STRBUF_INIT;
		char sd[256], dir[600], shell[700], cmd[300], *w, *pg, *t;
		int wgrp = 0;

		state_dir(sd, sizeof(sd), "wrapgone", shells[i]);
		snprintf(shell, sizeof(shell), "setsid \"$(command -v %s)\"", shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 100, 65536, &r), 0);
		CHECK(r.n == 1 && !r.ended);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/1", sd);
		w = slurp(dir, "wpid", NULL);
		pg = slurp(dir, "pgid", NULL);
		CHECK(w != NULL && pg != NULL);
		if (!w || !pg) {
			free(w);
			free(pg);
			continue;
		}
		w[strcspn(w, "\n")] = '\0';
		pg[strcspn(pg, "\n")] = '\0';
		wgrp = getpgid(atoi(w));
		CHECK(wgrp > 0 && wgrp != atoi(pg));
		if (wgrp > 0 && wgrp != atoi(pg))
			kill(-wgrp, SIGKILL);
		sleep_ms(200);
		/* the wrapper is gone, the command is not */
		snprintf(cmd, sizeof(cmd), "ps -e -o pgid=,stat= | awk '$1 == %s && $2 !~ /^Z/' | grep -q .", pg);
		CHECK(system(cmd) == 0);
		exec_build_kill(&k, dir, NULL);
		t = run_shell("dash", sb_str(&k));
		CHECK_STR(t, "daytonafs-killed\n");
		free(t);
		t = slurp(dir, "exit", NULL);
		CHECK_STR(t, "137\n");
		free(t);
		t = slurp(dir, "state", NULL);
		CHECK_STR(t, "killed\n");
		free(t);
		/* and the command's group is gone for real */
		CHECK(system(cmd) != 0);
		if (system(cmd) == 0) {
			snprintf(cmd, sizeof(cmd), "kill -KILL -%s", pg);
			if (system(cmd) != 0)
				fprintf(stderr, "could not end group %s\n", pg);
		}
		free(w);
		free(pg);
		sb_free(&k);
	}
}

/* An exported SHELLOPTS (bash re-exports it when it came from the
 * environment) must not carry the wrapper's set -m to the command: its
 * background jobs stay in its group, where kill and timeout= reach them. */
UNIT_TEST(run_shellopts_does_not_carry_job_control)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "case $- in *m*) echo monitor ;; *) echo none ;; esac; "
						     "sleep 0.1 & ps -o pgid= -p $! | tr -d ' '; echo $$; "
						     "echo \"${SHELLOPTS@a}\"" };
		struct exec_launch_result r;
		char sd[256], shell[700];

		state_dir(sd, sizeof(sd), "shellopts", shells[i]);
		for (int set = 1; set >= 0; set--) {
			char word[32] = "", pgid[32] = "", pid[32] = "", attr[32] = "";

			if (set)
				snprintf(shell, sizeof(shell), "env SHELLOPTS=braceexpand:hashall \"$(command -v %s)\"",
					 shells[i]);
			else
				snprintf(shell, sizeof(shell), "env -u SHELLOPTS \"$(command -v %s)\"", shells[i]);
			CHECK_INT(start_fast(shell, sd, 2 - (unsigned)set, &spec, 3000, 65536, &r), 0);
			CHECK(r.ended && r.exit_code == 0 && r.inline_ok[0] && r.data[0]);
			if (r.data[0])
				CHECK_INT(sscanf(r.data[0], "%31s %31s %31s %31s", word, pgid, pid, attr), 4);
			CHECK_STR(word, "none");
			CHECK_STR(pgid, pid);
			/* exported as it came, or not at all */
			CHECK_STR(attr, set ? "rx" : "r");
			exec_launch_result_free(&r);
		}
	}
}

/* Options from an exported SHELLOPTS (errexit, nounset, noclobber) are the
 * command's, not the wrapper's: with errexit the wrapper ended at the
 * command's failing status without recording it. Nor the launcher's,
 * which a bash toolbox shell runs with them: nounset ended it at its first
 * line (and the launcher's own set +C took noclobber from the command). */
UNIT_TEST(run_shellopts_options_reach_the_command_only)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "echo $-; exit 3" };
		struct exec_launch_result r;
		char sd[256], shell[700], *t;

		state_dir(sd, sizeof(sd), "shellopts-e", shells[i]);
		snprintf(shell, sizeof(shell),
			 "env SHELLOPTS=braceexpand:errexit:hashall:noclobber:nounset \"$(command -v %s)\"", shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 1 && r.ended && r.exit_code == 3 && r.inline_ok[0] && r.data[0]);
		CHECK(r.data[0] && strchr(r.data[0], 'e') && strchr(r.data[0], 'C') && strchr(r.data[0], 'u') &&
		      !strchr(r.data[0], 'm'));
		exec_launch_result_free(&r);
		snprintf(shell, sizeof(shell), "%s/cmd/1", sd);
		t = wait_exit(shell, 5000);
		CHECK_STR(t, "3\n");
		free(t);
	}
}

/* The command starts with SIGINT and SIGQUIT ignored, as a job that sh
 * starts with & does, under every toolbox shell (bash would not ignore
 * them in a process its launcher started otherwise, by a process
 * substitution say). */
UNIT_TEST(run_command_signals_as_a_job)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = { .command = "sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status" };
		struct exec_launch_result r;
		char sd[256], shell[700];

		state_dir(sd, sizeof(sd), "sigign", shells[i]);
		snprintf(shell, sizeof(shell), "\"$(command -v %s)\"", shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 3000, 65536, &r), 0);
		CHECK(r.ended && r.exit_code == 0 && r.inline_ok[0] && r.data[0]);
		if (r.data[0])
			CHECK((strtoull(r.data[0], NULL, 16) & 6) == 6);
		exec_launch_result_free(&r);
	}
}

/* Where the provider may kill what its script left (Vercel), the wrapper
 * gets a session of its own (setsid); where not (Daytona), it has none. */
/* Where the provider may kill what its script left (Vercel), the wrapper
 * gets a session of its own (setsid); where not (Daytona), it has none. */
UNIT_TEST(run_wrapper_session)
{
	/* under every toolbox shell: by setsid when own */
	for (size_t i = 0; i < N_SHELLS * 2; i++) {
		int own = (int)(i % 2);
		struct exec_spec spec = { .command = "sleep 1" };
		struct exec_launch_result r;
		struct strbuf sb = STRBUF_INIT;
		char sd[256], dir[600], *w, *out;

		state_dir(sd, sizeof(sd), own ? "session-own" : "session-none", shells[i / 2]);
		CHECK_INT(build_launcher(&sb, sd, 1, "sess", &spec, 50, 65536, !own), 0);
		out = run_shell(shells[i / 2], sb_str(&sb));
		CHECK_INT(exec_parse_launch_result(out, &r), 0);
		CHECK(r.n == 1 && !r.ended);
		exec_launch_result_free(&r);
		free(out);
		sb_free(&sb);
		snprintf(dir, sizeof(dir), "%s/cmd/1", sd);
		w = slurp(dir, "wpid", NULL);
		CHECK(w != NULL);
		if (w) {
			char cmd[200];

			w[strcspn(w, "\n")] = '\0';
			/* while the command runs */
			snprintf(cmd, sizeof(cmd), "test \"$(ps -o sid= -p %s | tr -d ' ')\" = %s", w, w);
			CHECK((system(cmd) == 0) == own);
			free(w);
		}
		free(wait_exit(dir, 5000));
	}
}

/* Output that looks like the answer's own lines (tags, base64, blank lines
 * at the end) comes back exact under every shell: as text under zsh, framed
 * by its size, in base64 under the others. */
UNIT_TEST(run_fast_path_text_that_looks_like_tags)
{
	static const char want[] = "daytonafs-text-end\ndaytonafs-inline-end\nZm9v\n\tdaytonafs-stderr 3\n\n\n";

	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_spec spec = {
			.command = "printf 'daytonafs-text-end\\ndaytonafs-inline-end\\nZm9v\\n"
				   "\\tdaytonafs-stderr 3\\n\\n\\n'; printf 'daytonafs-text\\n' >&2"
		};
		struct exec_launch_result r;
		char sd[256], shell[700];

		state_dir(sd, sizeof(sd), "tags", shells[i]);
		snprintf(shell, sizeof(shell), "\"$(command -v %s)\"", shells[i]);
		CHECK_INT(start_fast(shell, sd, 1, &spec, 3000, 65536, &r), 0);
		CHECK(r.n == 1 && r.ended && r.exit_code == 0 && r.inline_ok[0] && r.inline_ok[1]);
		CHECK(r.size[0] == sizeof(want) - 1 && r.data[0] && !memcmp(r.data[0], want, sizeof(want) - 1));
		CHECK(r.size[1] == 15 && r.data[1] && !memcmp(r.data[1], "daytonafs-text\n", 15));
		exec_launch_result_free(&r);
	}
}

/* A process the command leaves behind may append to stdout after the size
 * was taken: the answer must not then bring the stream as whole at the old
 * size (a short read that is not EOF), neither as text under zsh nor in
 * base64. Deterministic: the launcher's put function is run alone, told a
 * size smaller than the file (what growth after the size looks like). */
UNIT_TEST(run_fast_path_output_growing_after_the_end)
{
	struct exec_spec spec = { .command = "true" };
	struct strbuf sb = STRBUF_INIT, sc = STRBUF_INIT, ans = STRBUF_INIT;
	const char *put, *end;

	CHECK_INT(exec_build_launcher_ex(&sb, "/x", 1, "grow", &spec, 3000, 65536), 0);
	put = strstr(sb_str(&sb), "\tput() {\n");
	CHECK(put != NULL);
	if (!put)
		return;
	end = strstr(put, "\n\t}\n");
	CHECK(end != NULL);
	if (!end)
		return;
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_launch_result r;
		char sd[256], shell[700], *out;
		FILE *f;

		state_dir(sd, sizeof(sd), "grow", shells[i]);
		CHECK(mkdir(sd, 0700) == 0 || errno == EEXIST);
		snprintf(shell, sizeof(shell), "%s/stdout", sd);
		f = fopen(shell, "w");
		CHECK(f != NULL);
		if (!f)
			continue;
		fputs("early\nlate\n", f);   /* 11 bytes; the size taken was 6 */
		fclose(f);
		sb_reset(&sc);
		sb_addf(&sc, "d='%s'; b=; command -v base64 >/dev/null 2>&1 && b=1\n", sd);
		sb_add(&sc, put, (size_t)(end - put) + 4);
		sb_adds(&sc, "echo 'daytonafs-exit 0'; put stdout 6; echo 'daytonafs-stderr 0'; "
			     "echo daytonafs-inline-end\n");
		out = run_shell(shells[i], sb_str(&sc));
		CHECK(out != NULL);
		memset(&r, 0, sizeof(r));
		/* the launch part: a started command numbered 1 */
		sb_reset(&ans);
		sb_addf(&ans, "daytonafs-started 1\n%s", out ? out : "");
		free(out);
		CHECK_INT(exec_parse_launch_result(sb_str(&ans), &r), 0);
		CHECK(r.ended && r.size[0] == 6);
		CHECK(!r.inline_ok[0]);
		if (r.inline_ok[0])
			fprintf(stderr, "%s: stdout taken whole at 6 bytes of 11\n", shells[i]);
		exec_launch_result_free(&r);
	}
	sb_free(&sb);
	sb_free(&sc);
	sb_free(&ans);
}


/* The launcher of a test, with a helper of its own (h), run fast under shell. */
static int start_with(const char *shell, const char *sd, unsigned first, const struct exec_spec *spec,
		      const struct exec_helper *h, struct exec_launch_result *r, int *built)
{
	struct strbuf sb = STRBUF_INIT;
	static unsigned starts;
	char token[32], *out;
	int rc;

	snprintf(token, sizeof(token), "with%u", ++starts);
	*built = exec_build_launcher_with(&sb, sd, first, token, spec, 3000, 65536, true, h);
	if (*built < 0)
		return -1;
	out = run_shell(shell, sb_str(&sb));
	sb_free(&sb);
	rc = exec_parse_launch_result(out, r);
	if (rc < 0)
		fprintf(stderr, "launcher said: %s\n", out ? out : "(null)");
	free(out);
	return rc;
}

/* The command line of what started the command (the command prints it). */
static const char parent_cmdline[] = "tr '\\000' ' ' </proc/$PPID/cmdline";

/* Waits (up to 10 s) for path to exist: the install runs in the background. */
static bool wait_for(const char *path)
{
	struct stat st;

	for (int i = 0; i < 500; i++) {
		if (stat(path, &st) == 0)
			return true;
		sleep_ms(20);
	}
	return false;
}

/*
 * The install: a launch that carries the helper's bytes installs it as
 * STATE_DIR/bin/run-ID (0700, the same bytes) on the machine it names, in
 * the background; the launches after run their commands with it. One for
 * another machine installs nothing; one that finds it missing (and brings
 * no install) says daytonafs-nohelper.
 */
UNIT_TEST(run_helper_install)
{
	struct strbuf bin = STRBUF_INIT;
	char machine[64] = "";
	FILE *f = popen("uname -m", "r");

	if (f && fgets(machine, sizeof(machine), f))
		machine[strcspn(machine, "\n")] = '\0';
	if (f)
		pclose(f);
	f = fopen(HELPER_TEST_BIN, "rb");
	CHECK(f != NULL);
	if (f) {
		char buf[65536];
		size_t n;

		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			sb_add(&bin, buf, n);
		fclose(f);
	}
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_helper carry = { "inst", machine, bin.buf, bin.len };
		struct exec_helper other = { "inst", "no-such-machine", bin.buf, bin.len };
		struct exec_helper look = { "inst", machine, NULL, 0 };
		struct exec_spec spec = { .command = "true" };
		struct exec_launch_result r;
		char sd[256], path[600], *t;
		struct stat st;
		size_t len = 0;
		int built;

		/* another machine: nothing is installed, nothing said */
		state_dir(sd, sizeof(sd), "install-other", shells[i]);
		CHECK_INT(start_with(shells[i], sd, 1, &spec, &other, &r, &built), 0);
		CHECK_INT(built, 1);    /* (the launcher tells the machine) */
		CHECK(r.ended && r.exit_code == 0 && !r.no_helper);
		exec_launch_result_free(&r);
		sleep_ms(300);
		snprintf(path, sizeof(path), "%s/bin", sd);
		CHECK(stat(path, &st) != 0);

		state_dir(sd, sizeof(sd), "install", shells[i]);
		/* without it and without its bytes: said missing */
		CHECK_INT(start_with(shells[i], sd, 1, &spec, &look, &r, &built), 0);
		CHECK_INT(built, 0);
		/* (dash names no machine: it says nothing rather than run uname) */
		CHECK(r.ended && r.exit_code == 0 && r.no_helper == !!strcmp(shells[i], "dash"));
		exec_launch_result_free(&r);
		/* with them: the command runs (by the wrapper), the helper comes */
		spec.command = parent_cmdline;
		CHECK_INT(start_with(shells[i], sd, 2, &spec, &carry, &r, &built), 0);
		CHECK_INT(built, 1);
		CHECK(r.ended && r.exit_code == 0 && !r.no_helper);
		CHECK(r.data[0] && !strstr(r.data[0], "/bin/run-"));
		exec_launch_result_free(&r);
		snprintf(path, sizeof(path), "%s/bin/run-inst", sd);
		CHECK(wait_for(path));
		CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700);
		snprintf(path, sizeof(path), "%s/bin", sd);
		CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700);
		t = slurp(path, "run-inst", &len);
		CHECK(t && len == bin.len && !memcmp(t, bin.buf, len));
		free(t);
		/* and the next command runs by it */
		CHECK_INT(start_with(shells[i], sd, 3, &spec, &look, &r, &built), 0);
		CHECK(r.ended && r.exit_code == 0 && !r.no_helper);
		CHECK(r.data[0] && strstr(r.data[0], "/bin/run-inst ") && strstr(r.data[0], "/cmd/3/run "));
		exec_launch_result_free(&r);
	}
	sb_free(&bin);
}

/*
 * What the launcher does not run: a helper whose directory is a symlink
 * (-O would follow it), or that is not the user's (root only: chown), is
 * passed over for the wrapper; a value of env. with a newline goes by the
 * wrapper (the helper reads its files by lines); a helper that cannot
 * start (an interpreter that is not there) ends the command 127 at once,
 * with a word on stderr, not a record that looks running for ever.
 */
UNIT_TEST(run_helper_passed_over)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct exec_helper look = { "unit", NULL, NULL, 0 };
		struct sp_kv env[1] = { { "V", "two\nlines" } };
		struct exec_spec spec = { .command = parent_cmdline };
		struct exec_launch_result r;
		char sd[256], real[300], cmd[2000], dir[600], *t;
		int built;

		state_dir(sd, sizeof(sd), "passover", shells[i]);
		snprintf(real, sizeof(real), "%s-real", sd);
		snprintf(cmd, sizeof(cmd), "mkdir -p '%s' '%s' && cp '%s' '%s/run-unit' && ln -sfn '%s' '%s/bin'", sd, real,
			 HELPER_TEST_BIN, real, real, sd);
		CHECK(system(cmd) == 0);
		CHECK_INT(start_with(shells[i], sd, 1, &spec, &look, &r, &built), 0);
		CHECK(r.ended && r.exit_code == 0 && r.data[0] && !strstr(r.data[0], "/bin/run-"));
		exec_launch_result_free(&r);
		/* a real directory: used */
		snprintf(cmd, sizeof(cmd), "rm '%s/bin' && mkdir -m 700 '%s/bin' && cp '%s' '%s/bin/run-unit'", sd, sd,
			 HELPER_TEST_BIN, sd);
		CHECK(system(cmd) == 0);
		CHECK_INT(start_with(shells[i], sd, 2, &spec, &look, &r, &built), 0);
		CHECK(r.ended && r.exit_code == 0 && r.data[0] && strstr(r.data[0], "/bin/run-unit "));
		exec_launch_result_free(&r);
		if (geteuid() == 0) {
			snprintf(cmd, sizeof(cmd), "chown 65534 '%s/bin/run-unit'", sd);
			CHECK(system(cmd) == 0);
			CHECK_INT(start_with(shells[i], sd, 3, &spec, &look, &r, &built), 0);
			CHECK(r.ended && r.exit_code == 0 && r.data[0] && !strstr(r.data[0], "/bin/run-"));
			exec_launch_result_free(&r);
			snprintf(cmd, sizeof(cmd), "chown 0 '%s/bin/run-unit'", sd);
			CHECK(system(cmd) == 0);
		}
		/* a newline in a value: the wrapper, and the value whole */
		spec.command = "printf '%s|' \"$V\"; tr '\\000' ' ' </proc/$PPID/cmdline";
		spec.env = env;
		spec.n_env = 1;
		CHECK_INT(start_with(shells[i], sd, 4, &spec, &look, &r, &built), 0);
		CHECK(r.ended && r.exit_code == 0 && r.data[0] && !strncmp(r.data[0], "two\nlines|", 10) &&
		      !strstr(r.data[0], "/bin/run-"));
		exec_launch_result_free(&r);
		spec.env = NULL;
		spec.n_env = 0;
		/* one that cannot start: 127 at once */
		snprintf(cmd, sizeof(cmd), "printf '#!/nonexistent/interpreter\\n' >'%s/bin/run-unit'", sd);
		CHECK(system(cmd) == 0);
		spec.command = "true";
		{
			time_t t0 = time(NULL);

			CHECK_INT(start_with(shells[i], sd, 5, &spec, &look, &r, &built), 0);
			/* (the launch waits its 3 s for the end first) */
			CHECK(time(NULL) - t0 < 5);
		}
		CHECK(r.n == 5 && r.ended && r.exit_code == 127);
		exec_launch_result_free(&r);
		snprintf(dir, sizeof(dir), "%s/cmd/5", sd);
		t = slurp(dir, "stderr", NULL);
		CHECK(t && strstr(t, "did not start"));
		free(t);
	}
}

/*
 * The same run_ tests with the helper program installed: the launcher runs
 * each command with it, not with the wrapper script, and every file of the
 * record, status, stream, signal and variable must come out the same.
 */
#define HELPER_CASE(name) \
	static void helper_##name(void) \
	{ \
		with_helper = true; \
		name(); \
		with_helper = false; \
	}
HELPER_CASE(run_core_example)
HELPER_CASE(run_binary_env_cwd)
HELPER_CASE(run_keeps_the_sandbox_environment)
HELPER_CASE(run_env_file_cannot_change_the_command)
HELPER_CASE(run_env_file_in_shell_forms)
HELPER_CASE(run_collision_and_cwd_missing)
HELPER_CASE(run_stdin)
HELPER_CASE(run_stdin_binary)
HELPER_CASE(run_stdin_unread)
HELPER_CASE(run_stdin_kill)
HELPER_CASE(run_timeout)
HELPER_CASE(run_kill)
HELPER_CASE(run_kill_stubborn)
HELPER_CASE(run_reconcile)
HELPER_CASE(run_taken_number_runs_once)
HELPER_CASE(run_command_signals_as_a_job)
HELPER_CASE(launcher_replay_starts_nothing)
HELPER_CASE(stdin_replay_feeds_nothing)
HELPER_CASE(run_fast_path)
HELPER_CASE(run_fast_path_starts_few_programs)
HELPER_CASE(run_without_bash)
HELPER_CASE(run_wrapper_session)
HELPER_CASE(run_bash_env_reaches_the_command_only)
HELPER_CASE(run_kill_after_the_wrapper_was_killed)
HELPER_CASE(run_shellopts_does_not_carry_job_control)
HELPER_CASE(run_shellopts_options_reach_the_command_only)
HELPER_CASE(run_fast_path_text_that_looks_like_tags)
HELPER_CASE(run_fast_path_output_growing_after_the_end)
HELPER_CASE(launcher_fast_replay_answers_started)

static void cleanup(void)
{
	char cmd[128];

	if (tmp_root[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmp_root);
	}
}

static const struct unit_case cases[] = {
	UNIT_CASE(cmd_names),
	UNIT_CASE(listing_running),
	UNIT_CASE(listing_ended_with_stdin),
	UNIT_CASE(exit_text),
	UNIT_CASE(state_text),
	UNIT_CASE(backoff_schedule),
	UNIT_CASE(defaults),
	UNIT_CASE(wrapper_text),
	UNIT_CASE(launcher_text),
	UNIT_CASE(kill_text),
	UNIT_CASE(launch_output),
	UNIT_CASE(run_core_example),
	UNIT_CASE(run_binary_env_cwd),
	UNIT_CASE(run_keeps_the_sandbox_environment),
	UNIT_CASE(run_env_file_cannot_change_the_command),
	UNIT_CASE(run_collision_and_cwd_missing),
	UNIT_CASE(run_env_file_in_shell_forms),
	UNIT_CASE(stdin_scripts_text),
	UNIT_CASE(reconcile_output),
	UNIT_CASE(run_stdin),
	UNIT_CASE(run_stdin_binary),
	UNIT_CASE(run_stdin_unread),
	UNIT_CASE(run_stdin_kill),
	UNIT_CASE(run_timeout),
	UNIT_CASE(run_kill),
	UNIT_CASE(run_kill_stubborn),
	UNIT_CASE(run_kill_orphan_record),
	UNIT_CASE(run_kill_replayed_says_what_the_first_said),
	UNIT_CASE(run_kill_claim_in_a_directory_not_writable),
	UNIT_CASE(run_reconcile),
	UNIT_CASE(run_hidden_command_known_by_its_wrapper),
	UNIT_CASE(run_taken_number_runs_once),
	UNIT_CASE(run_command_signals_as_a_job),
	UNIT_CASE(launcher_replay_starts_nothing),
	UNIT_CASE(stdin_replay_feeds_nothing),
	UNIT_CASE(launch_result_parse),
	UNIT_CASE(run_fast_path),
	UNIT_CASE(run_fast_path_starts_few_programs),
	UNIT_CASE(run_wrapper_finds_bash_and_setsid_by_builtins),
	UNIT_CASE(run_without_bash),
	UNIT_CASE(run_wrapper_session),
	UNIT_CASE(run_bash_env_reaches_the_command_only),
	UNIT_CASE(run_kill_after_the_wrapper_was_killed),
	UNIT_CASE(run_shellopts_does_not_carry_job_control),
	UNIT_CASE(run_shellopts_options_reach_the_command_only),
	UNIT_CASE(run_fast_path_text_that_looks_like_tags),
	UNIT_CASE(run_fast_path_output_growing_after_the_end),
	UNIT_CASE(launcher_fast_replay_answers_started),
	UNIT_CASE(run_helper_install),
	UNIT_CASE(run_helper_passed_over),
	UNIT_CASE(helper_run_core_example),
	UNIT_CASE(helper_run_binary_env_cwd),
	UNIT_CASE(helper_run_keeps_the_sandbox_environment),
	UNIT_CASE(helper_run_env_file_cannot_change_the_command),
	UNIT_CASE(helper_run_env_file_in_shell_forms),
	UNIT_CASE(helper_run_collision_and_cwd_missing),
	UNIT_CASE(helper_run_stdin),
	UNIT_CASE(helper_run_stdin_binary),
	UNIT_CASE(helper_run_stdin_unread),
	UNIT_CASE(helper_run_stdin_kill),
	UNIT_CASE(helper_run_timeout),
	UNIT_CASE(helper_run_kill),
	UNIT_CASE(helper_run_kill_stubborn),
	UNIT_CASE(helper_run_reconcile),
	UNIT_CASE(helper_run_taken_number_runs_once),
	UNIT_CASE(helper_run_command_signals_as_a_job),
	UNIT_CASE(helper_launcher_replay_starts_nothing),
	UNIT_CASE(helper_stdin_replay_feeds_nothing),
	UNIT_CASE(helper_run_fast_path),
	UNIT_CASE(helper_run_fast_path_starts_few_programs),
	UNIT_CASE(helper_run_without_bash),
	UNIT_CASE(helper_run_wrapper_session),
	UNIT_CASE(helper_run_bash_env_reaches_the_command_only),
	UNIT_CASE(helper_run_kill_after_the_wrapper_was_killed),
	UNIT_CASE(helper_run_shellopts_does_not_carry_job_control),
	UNIT_CASE(helper_run_shellopts_options_reach_the_command_only),
	UNIT_CASE(helper_run_fast_path_text_that_looks_like_tags),
	UNIT_CASE(helper_run_fast_path_output_growing_after_the_end),
	UNIT_CASE(helper_launcher_fast_replay_answers_started),
};

int main(void)
{
	int rc = unit_run("exec", cases, sizeof(cases) / sizeof(cases[0]));

	cleanup();
	return rc;
}
