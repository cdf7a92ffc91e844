/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The text of /process/execute (daytona_script.c), run as the daemon runs
 * it: fed to the shell on a pipe, under dash, bash and zsh.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daytona_int.h"
#include "strbuf.h"
#include "unit.h"

static const char *const shells[] = { "dash", "bash", "zsh" };
#define N_SHELLS (sizeof(shells) / sizeof(shells[0]))

/* Feeds text to shell's stdin through a pipe, with the environment
 * assignment env_kv (or none); its stdout and stderr in out, its exit
 * status returned (-1: it could not be run). arg: one argument for the
 * shell, or NULL. */
static int feed_args(const char *shell, const char *arg, const char *text, char *env_kv, struct strbuf *out)
{
	int in[2], res[2], status;
	size_t len = strlen(text), off = 0;
	char buf[8192];
	pid_t pid;
	ssize_t n;

	if (pipe(in) < 0 || pipe(res) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(res[1], 1);
		dup2(res[1], 2);
		close(in[0]);
		close(in[1]);
		close(res[0]);
		close(res[1]);
		if (env_kv)
			putenv(env_kv);
		execlp(shell, shell, arg, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(res[1]);
	/* The script is larger than a pipe: write it while reading the
	 * output, which stays small, from a child of our own. */
	if (fork() == 0) {
		close(res[0]);
		while (off < len && (n = write(in[1], text + off, len - off)) > 0)
			off += (size_t)n;
		_exit(0);
	}
	close(in[1]);
	while ((n = read(res[0], buf, sizeof(buf))) > 0)
		sb_add(out, buf, (size_t)n);
	close(res[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	while (wait(NULL) > 0)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int feed_env(const char *shell, const char *text, char *env_kv, struct strbuf *out)
{
	return feed_args(shell, NULL, text, env_kv, out);
}

static int feed(const char *shell, const char *text, struct strbuf *out)
{
	return feed_env(shell, text, NULL, out);
}

static void pad(struct strbuf *sb, size_t bytes)
{
	while (sb->len < bytes)
		sb_adds(sb, "# padding: a comment line that the shell reads and skips\n");
}

/* What each part of a script must keep under the bulk reader: quotes,
 * backslashes, a here-document, UTF-8, functions, and exit's status with
 * nothing after it run. */
static const char body[] =
	"f() { printf '%s|' \"$@\"; }\n"
	"f 'a b' \"c\\\\d\" $'e' 'caf\xc3\xa9'\n"
	"cat <<'EOF'\n"
	"here $HOME \\n\n"
	"EOF\n"
	"printf 'end\\n'\n"
	"exit 7\n"
	"echo not reached\n";

/* Sizes that take each reader: none, the small one, the sysread one.
 * Under zsh and bash the script starts with a cat, which finds stdin at
 * its end: were the script read as it runs (byte by byte without a
 * reader, or 8 KiB at a time by zsh's "."), it would print the rest of
 * the script, which would not run. dash reads 8 KiB at a time too, and
 * has no reader. */
static const size_t script_sizes[] = { 300, 600, 2048, 12000, 70000 };

UNIT_TEST(long_script_runs_whole_and_in_bulk_under_every_shell)
{
	for (size_t k = 0; k < sizeof(script_sizes) / sizeof(script_sizes[0]); k++) {
		for (size_t i = 0; i < N_SHELLS; i++) {
			struct strbuf script = STRBUF_INIT, text = STRBUF_INIT, out = STRBUF_INIT;
			bool dash = strcmp(shells[i], "dash") == 0;
			char want[256];

			if (!dash)
				sb_adds(&script, "cat\n");
			pad(&script, script_sizes[k] - strlen(body));
			sb_adds(&script, body);
			CHECK_INT(dt_execute_text(&text, sb_str(&script)), 0);
			if (script_sizes[k] < 512) {
				CHECK(text.len == script.len);
				sb_free(&script);
				sb_free(&text);
				continue;   /* read byte by byte: the cat would read the rest */
			}
			CHECK(text.len > script.len);
			CHECK_INT(feed(shells[i], sb_str(&text), &out), 7);
			/* zsh's and bash's $'e' is e; dash has no $'...' and prints $e */
			snprintf(want, sizeof(want), "a b|c\\d|%s|caf\xc3\xa9|here $HOME \\n\nend\n",
				 dash ? "$e" : "e");
			if (strcmp(sb_str(&out), want) != 0)
				fprintf(stderr, "%s, %zu bytes, said: %s\n", shells[i], script_sizes[k],
					sb_str(&out));
			CHECK_STR(sb_str(&out), want);
			sb_free(&script);
			sb_free(&text);
			sb_free(&out);
		}
	}
}

/* A stdin batch of 1 MiB is 1.4 MB of script: read in bulk, the whole of
 * it reaches eval (its last line runs, its size is all there). */
UNIT_TEST(script_larger_than_a_pipe_arrives_whole)
{
	for (size_t i = 0; i < N_SHELLS; i++) {
		struct strbuf script = STRBUF_INIT, text = STRBUF_INIT, out = STRBUF_INIT;

		sb_adds(&script, "x=");
		for (int k = 0; k < 300000; k++)
			sb_adds(&script, "abcd");
		sb_adds(&script, "\nprintf '%s\\n' \"${#x}\"\nexit 0\n");
		CHECK_INT(dt_execute_text(&text, sb_str(&script)), 0);
		CHECK_INT(feed(shells[i], sb_str(&text), &out), 0);
		CHECK_STR(sb_str(&out), "1200000\n");
		sb_free(&script);
		sb_free(&text);
		sb_free(&out);
	}
}

/* bash takes errexit and nounset from an exported SHELLOPTS: the reader's
 * read, which ends at end of input with status 1, must not end the shell
 * there, nor its test of ZSH_VERSION, unset under bash. */
UNIT_TEST(bash_with_errexit_from_the_environment_runs_the_script)
{
	struct strbuf script = STRBUF_INIT, text = STRBUF_INIT, out = STRBUF_INIT;
	static char opts[] = "SHELLOPTS=errexit:nounset";

	pad(&script, 2048);
	sb_adds(&script, "echo ran\n");
	CHECK_INT(dt_execute_text(&text, sb_str(&script)), 0);
	CHECK_INT(feed_env("bash", sb_str(&text), opts, &out), 0);
	CHECK_STR(sb_str(&out), "ran\n");
	sb_free(&script);
	sb_free(&text);
	sb_free(&out);
}

/* A shell that inherited the other shells' version variable (dash with
 * BASH_VERSION or ZSH_VERSION exported) reads the script line by line: all
 * of it runs, with its own status, and the file it removes is gone. */
UNIT_TEST(other_shell_with_a_borrowed_version_variable_runs_the_script)
{
	static char bash_v[] = "BASH_VERSION=5.2", zsh_v[] = "ZSH_VERSION=5.9";
	char *vars[] = { bash_v, zsh_v };

	for (size_t i = 0; i < 2; i++) {
		struct strbuf script = STRBUF_INIT, text = STRBUF_INIT, out = STRBUF_INIT;
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "/tmp/test_daytona_script.%d.%zu", (int)getpid(), i);
		f = fopen(path, "w");
		CHECK(f != NULL);
		if (f)
			fclose(f);
		pad(&script, 2048);
		sb_addf(&script, "rm -f '%s'\necho ran\nexit 3\n", path);
		CHECK_INT(dt_execute_text(&text, sb_str(&script)), 0);
		CHECK_INT(feed_env("dash", sb_str(&text), vars[i], &out), 3);
		CHECK_STR(sb_str(&out), "ran\n");
		CHECK(access(path, F_OK) != 0);
		unlink(path);
		sb_free(&script);
		sb_free(&text);
		sb_free(&out);
	}
}

/* With allexport (bash's -a, zsh's ALL_EXPORT), the script's text does not
 * reach the environment of what it starts. */
UNIT_TEST(allexport_keeps_the_text_out_of_the_environment)
{
	static const char *const sh[] = { "bash", "zsh" };

	for (size_t i = 0; i < 2; i++) {
		struct strbuf script = STRBUF_INIT, text = STRBUF_INIT, out = STRBUF_INIT;

		pad(&script, 2048);
		sb_adds(&script, "env | grep -c '^_df' || :\n");
		CHECK_INT(dt_execute_text(&text, sb_str(&script)), 0);
		CHECK_INT(feed_args(sh[i], "-a", sb_str(&text), NULL, &out), 0);
		if (strcmp(sb_str(&out), "0\n") != 0)
			fprintf(stderr, "%s: %s\n", sh[i], sb_str(&out));
		CHECK_STR(sb_str(&out), "0\n");
		sb_free(&script);
		sb_free(&text);
		sb_free(&out);
	}
}

/* A short script costs less read byte by byte than the reader's start. */
UNIT_TEST(short_script_goes_as_it_is)
{
	struct strbuf text = STRBUF_INIT;

	CHECK_INT(dt_execute_text(&text, "echo hi"), 0);
	CHECK_STR(sb_str(&text), "echo hi");
	sb_free(&text);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(long_script_runs_whole_and_in_bulk_under_every_shell),
		UNIT_CASE(script_larger_than_a_pipe_arrives_whole),
		UNIT_CASE(bash_with_errexit_from_the_environment_runs_the_script),
		UNIT_CASE(other_shell_with_a_borrowed_version_variable_runs_the_script),
		UNIT_CASE(allexport_keeps_the_text_out_of_the_environment),
		UNIT_CASE(short_script_goes_as_it_is),
	};

	signal(SIGPIPE, SIG_IGN);
	return unit_run("daytona_script", cases, sizeof(cases) / sizeof(cases[0]));
}
