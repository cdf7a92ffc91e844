/* SPDX-License-Identifier: Apache-2.0 */
/* The listing format of fs_files.c: find -printf records, and od's hex; and
 * its scripts (listing, change by command, rename, statfs) run under dash,
 * bash and zsh, fed on stdin as the daemon feeds its shell. */
#include "unit.h"
#include "fs_int.h"
#include "strbuf.h"
#include "urlenc.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define REC(s) s, sizeof(s) - 1

UNIT_TEST(regular_dir_and_special_modes)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	CHECK_INT(files_parse_find(REC("d/755/4096/1700000000.1234567890/0/0/3/1.25/2.5/./\n"
				       "f/4755/12/1600000000.0000000000/1001/1002/1/1.25/2.5/run/\n"
				       "d/1777/40/1500000000/0/0/2/1.25/2.5/tmp/\n"
				       "p/640/0/1.5/0/0/1/1.25/2.5/fifo/\n"),
				   &v, &n), 0);
	CHECK_INT(n, 4);
	if (n != 4)
		return;
	CHECK_STR(v[0].name, ".");
	CHECK_INT(v[0].st.st_mode, S_IFDIR | 0755);
	CHECK_INT(v[0].st.st_nlink, 3);
	CHECK_INT(v[0].st.st_mtim.tv_sec, 1700000000);
	CHECK_INT(v[0].st.st_mtim.tv_nsec, 123456789);
	CHECK_INT(v[0].st.st_atim.tv_sec, 1);      /* atime and ctime are the sandbox's own */
	CHECK_INT(v[0].st.st_atim.tv_nsec, 250000000);
	CHECK_INT(v[0].st.st_ctim.tv_sec, 2);
	CHECK_INT(v[0].st.st_ctim.tv_nsec, 500000000);
	CHECK_STR(v[1].name, "run");
	CHECK_INT(v[1].st.st_mode, S_IFREG | 04755);
	CHECK_INT(v[1].st.st_size, 12);
	CHECK_INT(v[1].st.st_uid, 1001);
	CHECK_INT(v[1].st.st_gid, 1002);
	CHECK(v[1].link == NULL);
	CHECK_INT(v[1].st.st_atim.tv_sec, 1);
	CHECK_INT(v[1].st.st_ctim.tv_sec, 2);
	CHECK_INT(v[2].st.st_mode, S_IFDIR | 01777);
	CHECK_INT(v[2].st.st_mtim.tv_nsec, 0);
	CHECK_INT(v[3].st.st_mode, S_IFIFO | 0640);
	CHECK_INT(v[3].st.st_mtim.tv_nsec, 500000000);
	files_find_free(v, n);
}

UNIT_TEST(links_with_any_target)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	/* a target with '/', a newline, and something that looks like a record */
	CHECK_INT(files_parse_find(REC("l/777/6/1.0/0/0/1/1.25/2.5/a/../x/y\n"
				       "l/777/13/1.0/0/0/1/1.25/2.5/nl/a\nf/644/1/1/b\n"
				       "l/777/0/1.0/0/0/1/1.25/2.5/exe//usr/bin/cat\n"
				       "f/644/1/1.0/0/0/1/1.25/2.5/name with\nnewline/\n"),
				   &v, &n), 0);
	CHECK_INT(n, 4);
	if (n != 4)
		return;
	CHECK_STR(v[0].name, "a");
	CHECK_STR(v[0].link, "../x/y");
	CHECK_INT(v[0].st.st_mode, S_IFLNK | 0777);
	CHECK_INT(v[0].st.st_size, 6);
	CHECK_STR(v[1].name, "nl");
	CHECK_STR(v[1].link, "a\nf/644/1/1/b");
	/* a /proc-style link whose size is 0: the target runs to the newline */
	CHECK_STR(v[2].name, "exe");
	CHECK_STR(v[2].link, "/usr/bin/cat");
	CHECK_INT(v[2].st.st_size, 12);
	CHECK_STR(v[3].name, "name with\nnewline");
	files_find_free(v, n);
}

UNIT_TEST(link_target_altered_in_transport_keeps_its_size)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	/* ln -s $'\xff\xfe.t' L: the JSON transport turned each byte that is not
	 * UTF-8 into U+FFFD (3 bytes). The size is lstat's, 4, not the 8 bytes
	 * that arrived (stat showed 8 until the attributes expired). */
	CHECK_INT(files_parse_find(REC("l/777/4/1.0/0/0/1/1.25/2.5/L/\xef\xbf\xbd\xef\xbf\xbd.t\n"), &v, &n), 0);
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK_STR(v[0].name, "L");
	CHECK_INT(v[0].st.st_size, 4);
	files_find_free(v, n);
}

UNIT_TEST(malformed_and_unknown)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	/* error text instead of records */
	CHECK_INT(files_parse_find(REC("find: '/x/.': No such file or directory\n"), &v, &n), -EINVAL);
	CHECK(v == NULL && n == 0);
	/* truncated record, bad octal, missing fields */
	CHECK_INT(files_parse_find(REC("f/644/1/1.0/0/0/1/1.25/2.5/name"), &v, &n), -EINVAL);
	CHECK_INT(files_parse_find(REC("f/689/1/1.0/0/0/1/1.25/2.5/a/\n"), &v, &n), -EINVAL);
	CHECK_INT(files_parse_find(REC("f/644/1/1.0/0/a/\n"), &v, &n), -EINVAL);
	CHECK_INT(files_parse_find(REC("f/644/1/1.0/0/0/1/1.25/2.5//\n"), &v, &n), -EINVAL);
	/* a type find could not tell (or a door) is skipped, the rest kept */
	CHECK_INT(files_parse_find(REC("D/644/1/1.0/0/0/1/1.0/1.0/door/\nf/600/2/3.0/0/0/1/3.0/3.0/ok/\n"), &v, &n), 0);
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK_STR(v[0].name, "ok");
	files_find_free(v, n);
	/* empty output is no entries */
	CHECK_INT(files_parse_find("", 0, &v, &n), 0);
	CHECK_INT(n, 0);
	files_find_free(v, n);
}

UNIT_TEST(hex)
{
	char *out = NULL;
	size_t len = 0;

	CHECK_INT(files_unhex(" 66 2f ff 00 0a\n 41\n", &out, &len), 0);
	CHECK_INT(len, 6);
	CHECK(out && !memcmp(out, "f/\xff\0\nA", 6));
	free(out);
	CHECK_INT(files_unhex("", &out, &len), 0);
	CHECK_INT(len, 0);
	free(out);
	CHECK_INT(files_unhex(" 6g", &out, &len), -EINVAL);
	CHECK_INT(files_unhex(" 6", &out, &len), -EINVAL);
	CHECK_INT(files_unhex("od: command not found", &out, &len), -EINVAL);
}

/* ---- the scripts, run ---------------------------------------------------------- */

static const char *const shells[] = { "dash", "bash", "zsh" };
#define N_SHELLS (sizeof(shells) / sizeof(shells[0]))

/* Runs FILES_SH_PREFIX + script under shell, on its stdin; its merged output
 * (malloc'd) and exit code. */
static char *run_script(const char *shell, const char *dir, const char *script, size_t *len, int *code)
{
	struct strbuf out = STRBUF_INIT;
	char path[4200], cmd[8600], buf[4096];
	FILE *f;
	size_t got;
	int st;

	snprintf(path, sizeof(path), "%s.script", dir);
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(FILES_SH_PREFIX, f);
	fputs(script, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd / && %s < '%s' 2>&1", shell, path);
	f = popen(cmd, "r");
	if (!f)
		return NULL;
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
		sb_add(&out, buf, got);
	st = pclose(f);
	unlink(path);
	*code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	*len = out.len;
	return sb_detach(&out);
}

static void make_file(const char *dir, const char *name, const char *text)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static const struct find_entry *entry(const struct find_entry *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

/* The listing of a directory with every kind of entry and awkward names. */
static void listing_under(const char *shell)
{
	char dir[] = "/tmp/fs-find-XXXXXX", path[4200], *out, *raw = NULL;
	static const char *const odd = "it's \"q\" $x\nline", *const bytes = "caf\xe9";
	struct find_entry *v = NULL;
	const struct find_entry *e;
	struct strbuf sb = STRBUF_INIT;
	size_t n = 0, len = 0;
	int code = -1;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	make_file(dir, "f", "abc");
	make_file(dir, odd, "");
	make_file(dir, bytes, "");
	snprintf(path, sizeof(path), "%s/sub", dir);
	mkdir(path, 0750);
	snprintf(path, sizeof(path), "%s/ln", dir);
	CHECK(symlink("f", path) == 0);
	snprintf(path, sizeof(path), "%s/p", dir);
	CHECK(mkfifo(path, 0640) == 0);

	files_list_script(&sb, dir, false);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 0);
	CHECK_INT(files_parse_find(out, len, &v, &n), 0);
	CHECK_INT(n, 7);
	CHECK(n > 0 && !strcmp(v[0].name, "."));
	e = entry(v, n, "f");
	CHECK(e && S_ISREG(e->st.st_mode) && e->st.st_size == 3);
	e = entry(v, n, "ln");
	CHECK(e && S_ISLNK(e->st.st_mode) && e->link && !strcmp(e->link, "f"));
	e = entry(v, n, "p");
	CHECK(e && e->st.st_mode == (S_IFIFO | 0640));
	e = entry(v, n, "sub");
	CHECK(e && e->st.st_mode == (S_IFDIR | 0750));
	CHECK(entry(v, n, odd) != NULL);
	CHECK(entry(v, n, bytes) != NULL);
	files_find_free(v, n);
	free(out);

	/* the same as od's hex */
	sb_reset(&sb);
	files_list_script(&sb, dir, true);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 0);
	CHECK_INT(files_unhex(out, &raw, &len), 0);
	CHECK_INT(files_parse_find(raw, len, &v, &n), 0);
	CHECK_INT(n, 7);
	CHECK(entry(v, n, bytes) != NULL);
	files_find_free(v, n);
	free(raw);
	free(out);

	/* a missing directory: find's error and 97 */
	sb_reset(&sb);
	snprintf(path, sizeof(path), "%s/none", dir);
	files_list_script(&sb, path, false);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 97);
	CHECK(out && strstr(out, "No such file or directory"));
	free(out);

	sb_free(&sb);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

UNIT_TEST(listing_script_under_each_shell)
{
	for (size_t i = 0; i < N_SHELLS; i++)
		listing_under(shells[i]);
}

/* A change by command with its stat print, rename(2) onto a file and onto the
 * file a link points to, and statfs. */
static void changes_under(const char *shell)
{
	char dir[] = "/tmp/fs-find-XXXXXX", path[4200], to[4200], *out;
	struct strbuf sb = STRBUF_INIT;
	struct find_entry *v = NULL;
	unsigned long long x[7];
	struct stat st;
	size_t n = 0, len = 0;
	int code = -1;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	make_file(dir, "a b", "A");
	make_file(dir, "b", "B");
	snprintf(path, sizeof(path), "%s/a b", dir);
	sb_adds(&sb, "chmod 00751 -- ");
	sh_word(&sb, path);
	files_add_stat_print(&sb, path);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 0);
	CHECK_INT(files_parse_find(out, len, &v, &n), 0);
	CHECK_INT(n, 1);
	CHECK(n == 1 && v[0].st.st_mode == (S_IFREG | 0751) && !strcmp(v[0].name, "a b"));
	files_find_free(v, n);
	free(out);

	sb_reset(&sb);
	snprintf(to, sizeof(to), "%s/b", dir);
	files_rename_script(&sb, path, to);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 0);
	CHECK(lstat(path, &st) < 0 && errno == ENOENT);
	CHECK(stat(to, &st) == 0 && st.st_size == 1 && (st.st_mode & 07777) == 0751);
	free(out);

	/* a link onto the file it points to: mv refuses, perl's rename does it */
	snprintf(path, sizeof(path), "%s/l", dir);
	CHECK(symlink("b", path) == 0);
	sb_reset(&sb);
	files_rename_script(&sb, path, to);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 0);
	CHECK(lstat(to, &st) == 0 && S_ISLNK(st.st_mode));
	CHECK(lstat(path, &st) < 0);
	free(out);

	/* a failure prints mv's message and exits 1 */
	sb_reset(&sb);
	snprintf(path, sizeof(path), "%s/missing", dir);
	files_rename_script(&sb, path, to);
	out = run_script(shell, dir, sb_str(&sb), &len, &code);
	CHECK_INT(code, 1);
	CHECK(out && strstr(out, "No such file or directory"));
	free(out);

	out = run_script(shell, dir, FILES_STATFS_SCRIPT, &len, &code);
	CHECK_INT(code, 0);
	CHECK(out && sscanf(out, "%llu %llu %llu %llu %llu %llu %llu", &x[0], &x[1], &x[2], &x[3], &x[4],
			    &x[5], &x[6]) == 7);
	free(out);

	sb_free(&sb);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

UNIT_TEST(change_rename_statfs_scripts_under_each_shell)
{
	for (size_t i = 0; i < N_SHELLS; i++)
		changes_under(shells[i]);
}

UNIT_MAIN("fs_find",
	UNIT_CASE(regular_dir_and_special_modes),
	UNIT_CASE(links_with_any_target),
	UNIT_CASE(link_target_altered_in_transport_keeps_its_size),
	UNIT_CASE(malformed_and_unknown),
	UNIT_CASE(hex),
	UNIT_CASE(listing_script_under_each_shell),
	UNIT_CASE(change_rename_statfs_scripts_under_each_shell))
