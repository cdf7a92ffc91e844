/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The queue of deferred changes (order, conflicts, batches, hidden deletes)
 * and its script, which is run here under dash, bash and zsh in a scratch directory
 * with the real rm, chmod, touch and find, as the sandbox would run it; and
 * the runner (deferred.c), its batches sent through a fake "sandbox" that
 * runs them here, with lost answers and refusals.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deferred.h"
#include "unit.h"
#include "urlenc.h"
#include "writeback.h"

#define FMT "%y/%m/%s/%T@/%U/%G/%n/%f/%l\\n"

static int owner_a, owner_b;

static struct wb_op *op_new(const void *owner, enum wb_kind kind, const char *path)
{
	struct wb_op *op = wb_op_new(owner, kind, path);

	if (!op)
		abort();
	return op;
}

static size_t count(const struct wb_op *list)
{
	size_t n = 0;

	for (; list; list = list->next)
		n++;
	return n;
}

UNIT_TEST(conflicts_cover_the_path_what_is_below_and_the_directories_above)
{
	struct wb_queue *q = wb_new(8);

	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/home/d/src"), 0, 1));
	CHECK(wb_conflicts(q, &owner_a, "/home/d/src"));
	CHECK(wb_conflicts(q, &owner_a, "/home/d/src/x.c"));   /* a change inside changes its time */
	CHECK(wb_conflicts(q, &owner_a, "/home/d"));           /* a listing of the parent */
	CHECK(wb_conflicts(q, &owner_a, "/"));
	CHECK(wb_conflicts(q, &owner_a, NULL));
	CHECK(!wb_conflicts(q, &owner_a, "/home/d/srcs"));
	CHECK(!wb_conflicts(q, &owner_a, "/home/d/other"));
	CHECK(!wb_conflicts(q, &owner_b, "/home/d/src"));
	wb_free(q);
}

/* A stat of a directory waits only for what changes the directory: a
 * delete in it, a change of it or above it; not the times of its files. */
UNIT_TEST(attr_conflicts_are_the_path_above_and_deletes_in_it)
{
	struct wb_queue *q = wb_new(8);

	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/home/d/src/f.c"), 0, 1));
	CHECK(!wb_conflicts_attr(q, &owner_a, "/home/d/src"));
	CHECK(!wb_conflicts_attr(q, &owner_a, "/home/d"));
	CHECK(wb_conflicts_attr(q, &owner_a, "/home/d/src/f.c"));
	CHECK(wb_conflicts_attr(q, &owner_a, "/home/d/src/f.c/below"));
	CHECK(wb_conflicts(q, &owner_a, "/home/d/src"));   /* a listing still waits */
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/home/d/src/g.c"), 0, 1));
	CHECK(wb_conflicts_attr(q, &owner_a, "/home/d/src"));
	CHECK(wb_conflicts_attr(q, &owner_a, "/home/d/src/"));
	CHECK(!wb_conflicts_attr(q, &owner_a, "/home/d"));
	CHECK(!wb_conflicts_attr(q, &owner_a, "/home/d/sr"));
	CHECK(!wb_conflicts_attr(q, &owner_b, "/home/d/src"));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/top"), 0, 1));
	CHECK(wb_conflicts_attr(q, &owner_a, "/"));
	wb_free(q);
}

UNIT_TEST(batches_keep_order_and_one_owner_and_stay_visible_in_flight)
{
	struct wb_queue *q = wb_new(3);
	struct wb_op *b;

	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/a1"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_b, WB_DELETE, "/b1"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/a2"), 0, 1));
	/* Nothing is due at 0.5 and no owner has 3 queued. */
	CHECK(wb_take(q, NULL, true, 0.5) == NULL);
	b = wb_take(q, NULL, true, 1.0);
	CHECK_INT(count(b), 2);
	CHECK_STR(b->path, "/a1");
	CHECK_STR(b->next->path, "/a2");
	/* In flight: still a conflict, not taken again. */
	CHECK(wb_conflicts(q, &owner_a, "/a2"));
	CHECK(wb_take(q, &owner_a, false, 1.0) == NULL);
	wb_done(q, b);
	CHECK(!wb_conflicts(q, &owner_a, "/a2"));
	b = wb_take(q, NULL, false, 0);
	CHECK_INT(count(b), 1);
	CHECK_STR(b->path, "/b1");
	wb_done(q, b);
	CHECK(wb_take(q, NULL, false, 0) == NULL);
	wb_free(q);
}

UNIT_TEST(an_owner_with_a_batch_in_flight_or_backing_off_keeps_its_order)
{
	struct wb_queue *q = wb_new(1);
	struct wb_op *a, *b;

	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/a1"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/a2"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_b, WB_DELETE, "/b1"), 0, 1));
	a = wb_take(q, NULL, true, 1.0);
	CHECK_STR(a->path, "/a1");
	/* a1 in flight: nothing more of a (a2 would pass it), b goes. */
	CHECK(wb_busy(q, &owner_a));
	CHECK(wb_take(q, &owner_a, false, 1.0) == NULL);
	b = wb_take(q, NULL, true, 1.0);
	CHECK_STR(b->path, "/b1");
	wb_done(q, b);
	/* a1 could not be sent: back in its place, due after its backoff;
	 * a2, due now, waits behind it. */
	a->retry_start = 1.0;
	wb_requeue(q, a, 3.0);
	CHECK(!wb_busy(q, &owner_a));
	CHECK(wb_take(q, NULL, true, 2.0) == NULL);
	a = wb_take(q, NULL, true, 3.0);
	CHECK_STR(a->path, "/a1");
	wb_done(q, a);
	a = wb_take(q, &owner_a, false, 3.0);
	CHECK_STR(a->path, "/a2");
	wb_done(q, a);
	wb_free(q);
}

UNIT_TEST(a_later_change_of_the_path_supersedes_what_an_op_printed)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *b;

	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 0));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/g"), 0, 0));
	b = wb_take(q, NULL, true, 1);
	CHECK(!wb_superseded(q, b));
	CHECK(!wb_superseded(q, b->next));
	CHECK(wb_push(q, op_new(&owner_b, WB_DELETE, "/d/f"), 0, 0));   /* another sandbox */
	CHECK(!wb_superseded(q, b));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/f"), 0, 0));
	CHECK(wb_superseded(q, b));
	CHECK(!wb_superseded(q, b->next));
	wb_done(q, b);
	wb_free(q);
}

/* tar x sets a link's time, then its directory's: the directory's change
 * leaves what the link's printed true; a delete in a directory does not
 * leave the directory's. */
UNIT_TEST(a_later_change_above_the_path_leaves_what_an_op_printed)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *b;

	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/link"), 0, 0));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d"), 0, 0));
	b = wb_take(q, NULL, true, 1);
	CHECK_INT(count(b), 2);
	CHECK(!wb_superseded(q, b));
	CHECK(!wb_superseded(q, b->next));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/old"), 0, 0));
	CHECK(!wb_superseded(q, b));
	CHECK(wb_superseded(q, b->next));
	wb_done(q, b);
	wb_free(q);
}

struct seen { char names[4][16]; struct stat st[4]; int n; };

static void note_child(void *ctx, const char *name, const struct wb_op *op)
{
	struct seen *s = ctx;

	if (s->n < 4) {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
		wb_apply_attrs(op, &s->st[s->n]);
		s->n++;
	}
}

/* A listing of a directory taken while its entries' changes wait gets them
 * from the queue: only those of entries directly in it, of its owner. */
UNIT_TEST(child_attrs_are_the_queued_changes_of_entries_in_the_directory)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *op;
	struct seen s = { 0 };

	op = op_new(&owner_a, WB_ATTRS, "/d/link");
	op->set_mtime = true;
	op->mtime = (struct timespec){ 1600000000, 123458789 };
	CHECK(wb_push(q, op, 0, 1));
	op = op_new(&owner_a, WB_ATTRS, "/d/f");
	op->chmod = true;
	op->mode = 0640;
	op->chown = true;
	op->uid = 7;
	op->gid = (gid_t)-1;
	CHECK(wb_push(q, op, 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/sub/g"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/gone"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_b, WB_ATTRS, "/d/other"), 0, 1));
	for (int i = 0; i < 4; i++) {
		s.st[i].st_mode = S_IFREG | 0600;
		s.st[i].st_gid = 3;
	}
	wb_each_child_attrs(q, &owner_a, "/d", note_child, &s);
	CHECK_INT(s.n, 2);
	CHECK_STR(s.names[0], "link");
	CHECK_INT(s.st[0].st_mtim.tv_sec, 1600000000);
	CHECK_INT(s.st[0].st_mtim.tv_nsec, 123458789);
	CHECK_INT(s.st[0].st_mode, S_IFREG | 0600);
	CHECK_STR(s.names[1], "f");
	CHECK_INT(s.st[1].st_mode, S_IFREG | 0640);
	CHECK_INT(s.st[1].st_uid, 7);
	CHECK_INT(s.st[1].st_gid, 3);
	CHECK_INT(s.st[1].st_mtim.tv_sec, 0);
	wb_free(q);
}

UNIT_TEST(a_full_batch_is_due_at_once)
{
	struct wb_queue *q = wb_new(2);
	struct wb_op *b;

	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/1"), 0, 100));
	CHECK(wb_take(q, NULL, true, 1) == NULL);
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/2"), 0, 100));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/3"), 0, 100));
	CHECK(wb_wait(q));   /* kicked: returns at once */
	b = wb_take(q, NULL, true, 1);
	CHECK_INT(count(b), 2);
	wb_done(q, b);
	CHECK(wb_take(q, NULL, true, 1) == NULL);   /* one left: not due, not full */
	wb_free(q);
}

UNIT_TEST(a_hidden_delete_waits_its_delay_and_holds_back_what_follows)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *h = op_new(&owner_a, WB_DELETE, "/f"), *b;

	h->hidden = true;
	h->st.st_size = 42;
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/before"), 0, 0));
	CHECK(wb_push(q, h, 0, 0.2));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/after"), 0, 0));
	b = wb_take(q, NULL, true, 0.1);
	CHECK_INT(count(b), 1);
	CHECK_STR(b->path, "/before");
	wb_done(q, b);
	CHECK(wb_take(q, NULL, true, 0.1) == NULL);
	/* A rename onto the path cancels it, and gives back what it had. */
	h = wb_cancel_hidden(q, &owner_a, "/f");
	CHECK(h != NULL);
	CHECK_INT(h ? h->st.st_size : 0, 42);
	wb_op_free(h);
	CHECK(wb_cancel_hidden(q, &owner_a, "/f") == NULL);
	b = wb_take(q, NULL, true, 0.1);
	CHECK_INT(count(b), 1);
	CHECK_STR(b->path, "/after");
	wb_done(q, b);
	wb_free(q);
}

UNIT_TEST(settling_takes_hidden_deletes_before_their_delay)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *h = op_new(&owner_a, WB_DELETE, "/f"), *b;

	h->hidden = true;
	CHECK(wb_push(q, h, 0, 0.2));
	b = wb_take(q, &owner_a, false, 0);
	CHECK_INT(count(b), 1);
	CHECK(wb_cancel_hidden(q, &owner_a, "/f") == NULL);   /* in flight: too late */
	wb_done(q, b);
	wb_free(q);
}

static struct wb_op *file_delete(const char *path, nlink_t links)
{
	struct wb_op *op = op_new(&owner_a, WB_DELETE, path);

	op->st.st_mode = S_IFREG | 0640;
	op->st.st_nlink = links;
	op->st.st_size = 7;
	return op;
}

UNIT_TEST(running_touches_sees_a_batch_in_flight_only)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *b;

	CHECK(wb_push(q, file_delete("/f", 1), 0, 0.5));
	CHECK(!wb_running_touches(q, &owner_a, "/f"));   /* queued, not in flight */
	b = wb_take(q, &owner_a, false, 0);
	CHECK(wb_running_touches(q, &owner_a, "/f") && !wb_running_touches(q, &owner_a, "/g"));
	CHECK(!wb_running_touches(q, &owner_b, "/f"));
	wb_done(q, b);
	CHECK(!wb_running_touches(q, &owner_a, "/f"));
	wb_free(q);
}

UNIT_TEST(an_open_that_keeps_the_content_ignores_the_paths_own_attrs)
{
	struct wb_queue *q = wb_new(8);

	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 0.5));
	CHECK(wb_conflicts(q, &owner_a, "/d/f"));
	CHECK(!wb_conflicts_content(q, &owner_a, "/d/f"));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d"), 0, 0.5));
	CHECK(wb_conflicts_content(q, &owner_a, "/d/f"));   /* a directory above: as wb_conflicts */
	wb_free(q);
	q = wb_new(8);
	CHECK(wb_push(q, file_delete("/d/f", 1), 0, 0.5));
	CHECK(wb_conflicts_content(q, &owner_a, "/d/f"));
	wb_free(q);
}

UNIT_TEST(wait_returns_when_something_is_due_and_false_after_stop)
{
	struct wb_queue *q = wb_new(8);
	struct timespec t0, t1;
	double now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	now = (double)t0.tv_sec + (double)t0.tv_nsec / 1e9;
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/x"), now, 0.05));
	CHECK(wb_wait(q));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 >= 0.045);
	wb_stop(q);
	CHECK(!wb_wait(q));
	wb_free(q);
}

UNIT_TEST(parse_splits_by_marker_and_spots_failures_and_missing_ops)
{
	const char out[] = "@M1 0\n"
			   "f/644/3/1.5/u/g/1/a/\n"
			   "@M1 1\n"
			   "!rm: cannot remove '/x': Permission denied \n"
			   "@M2 2\n"   /* another mark: text, not a marker */
			   "@M1 9\n";  /* out of range: ignored */
	struct wb_result r[4];

	wb_parse(out, strlen(out), "M1", r, 4);
	CHECK_INT(r[0].status, WB_OK);
	CHECK_INT(r[0].len, strlen("f/644/3/1.5/u/g/1/a/\n"));
	CHECK(!memcmp(r[0].text, "f/644/3/1.5/u/g/1/a/\n", r[0].len));
	CHECK_INT(r[1].status, WB_FAILED);
	CHECK_INT(r[1].len, strlen("rm: cannot remove '/x': Permission denied \n@M2 2"));
	CHECK_INT(r[2].status, WB_UNKNOWN);
	CHECK_INT(r[3].status, WB_UNKNOWN);
}

/* The shells the daemon may feed a batch to: zsh (Daytona's default image),
 * bash (the slim one), and dash, the strictest POSIX sh. */
static const char *const shells[] = { "dash", "bash", "zsh" };
#define N_SHELLS (sizeof(shells) / sizeof(shells[0]))

/* Runs script under shell in dir, fed on its stdin as the daemon does; its
 * output (malloc'd). */
static char *run_sh(const char *shell, const char *dir, const char *script)
{
	char path[4096], *out = NULL;
	size_t len = 0;
	FILE *f, *p;
	char cmd[8192];

	snprintf(path, sizeof(path), "%s/.script", dir);
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(script, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd '%s' && LC_ALL=C %s < .script", dir, shell);
	p = popen(cmd, "r");
	if (!p)
		return NULL;
	for (;;) {
		char buf[4096];
		size_t got = fread(buf, 1, sizeof(buf), p);
		char *grown;

		if (got == 0)
			break;
		grown = realloc(out, len + got + 1);
		if (!grown)
			break;
		out = grown;
		memcpy(out + len, buf, got);
		len += got;
		out[len] = '\0';
	}
	pclose(p);
	return out ? out : strdup("");
}

static void touch_file(const char *dir, const char *name)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	if (fd >= 0)
		close(fd);
}

static void script_applies_every_op(const char *shell)
{
	char dir[] = "/tmp/wb-unit-XXXXXX", path[4096];
	const char *odd = "it's a \"name\"\nwith a newline";
	const char *bytes = "caf\xe9";   /* not UTF-8 */
	struct strbuf script = STRBUF_INIT;
	struct wb_op *b = NULL, **bt = &b, *op;
	struct wb_result r[5];
	struct stat st;
	char *out;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	touch_file(dir, odd);
	touch_file(dir, bytes);
	touch_file(dir, "keep");
	snprintf(path, sizeof(path), "%s/ro", dir);
	mkdir(path, 0755);

	snprintf(path, sizeof(path), "%s/%s", dir, odd);
	*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
	snprintf(path, sizeof(path), "%s/%s", dir, bytes);
	*bt = op = op_new(&owner_a, WB_ATTRS, path), bt = &op->next;
	op->chmod = true;
	op->mode = 0751;
	op->set_mtime = true;
	op->mtime.tv_sec = 1234567890;
	op->mtime.tv_nsec = 123456789;
	op->stat_after = true;
	snprintf(path, sizeof(path), "%s/ro", dir);   /* a directory: rm refuses, even for root */
	*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
	snprintf(path, sizeof(path), "%s/keep", dir);
	*bt = op = op_new(&owner_a, WB_ATTRS, path), bt = &op->next;
	op->set_atime = op->set_mtime = true;
	op->atime.tv_sec = op->mtime.tv_sec = 1000000000;
	snprintf(path, sizeof(path), "%s/gone-already", dir);
	*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;

	wb_script(&script, b, "Mk7", FMT, NULL);
	CHECK(!script.oom);
	out = run_sh(shell, dir, sb_str(&script));
	CHECK(out != NULL);
	wb_parse(out, out ? strlen(out) : 0, "Mk7", r, 5);

	/* 0: deleted, odd name and all */
	CHECK_INT(r[0].status, WB_OK);
	snprintf(path, sizeof(path), "%s/%s", dir, odd);
	CHECK(lstat(path, &st) < 0 && errno == ENOENT);
	/* 1: mode and time set, attributes printed */
	CHECK_INT(r[1].status, WB_OK);
	snprintf(path, sizeof(path), "%s/%s", dir, bytes);
	CHECK(lstat(path, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0751);
	CHECK_INT(st.st_mtim.tv_sec, 1234567890);
	CHECK_INT(st.st_mtim.tv_nsec, 123456789);
	CHECK(r[1].len > 0 && !strncmp(r[1].text, "f/751/0/1234567890.123456789", strlen("f/751/0/1234567890.123456789")));
	/* 2: refused, with rm's message on one line */
	CHECK_INT(r[2].status, WB_FAILED);
	CHECK(r[2].text && r[2].len > 0 && memmem(r[2].text, r[2].len, "Is a directory", 14) != NULL);
	CHECK(r[2].text && memchr(r[2].text, '\n', r[2].len) == NULL);
	/* 3: runs after a failure */
	CHECK_INT(r[3].status, WB_OK);
	snprintf(path, sizeof(path), "%s/keep", dir);
	CHECK(lstat(path, &st) == 0 && st.st_mtim.tv_sec == 1000000000 && st.st_atim.tv_sec == 1000000000);
	/* 4: already gone is fine */
	CHECK_INT(r[4].status, WB_OK);

	free(out);
	sb_free(&script);
	wb_list_free(b);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

UNIT_TEST(the_script_applies_every_op_under_sh_whatever_the_names)
{
	for (size_t i = 0; i < N_SHELLS; i++)
		script_applies_every_op(shells[i]);
}

static void consecutive_deletes_in_one_rm(const char *shell)
{
	char dir[] = "/tmp/wb-unit-XXXXXX", path[4096];
	static const char *const names[] = { "a", "b", "sub", "c", "d", "e" };
	struct strbuf script = STRBUF_INIT;
	struct wb_op *b = NULL, **bt = &b, *op;
	struct wb_result r[7];
	struct stat st;
	char *out;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	for (size_t i = 0; i < 6; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (i == 2)
			mkdir(path, 0755);
		else
			touch_file(dir, names[i]);
		*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
		if (i == 3) {   /* an attribute change splits the run of deletes */
			*bt = op = op_new(&owner_a, WB_ATTRS, path), bt = &op->next;
			op->chmod = true;
			op->mode = 0600;
		}
	}
	wb_script(&script, b, "Zq9", FMT, NULL);
	/* Two runs of deletes: a..c as one rm, d..e as another. */
	CHECK(strstr(sb_str(&script), "if rm -f -- ") != NULL);
	out = run_sh(shell, dir, sb_str(&script));
	wb_parse(out, out ? strlen(out) : 0, "Zq9", r, 7);
	CHECK_INT(r[0].status, WB_OK);
	CHECK_INT(r[1].status, WB_OK);
	CHECK_INT(r[2].status, WB_FAILED);   /* the directory, found by the one-by-one retry */
	CHECK(r[2].text && memmem(r[2].text, r[2].len, "Is a directory", 14) != NULL);
	CHECK_INT(r[3].status, WB_OK);
	CHECK_INT(r[4].status, WB_FAILED);   /* chmod of the file just deleted */
	CHECK_INT(r[5].status, WB_OK);
	CHECK_INT(r[6].status, WB_OK);
	for (size_t i = 0; i < 6; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		CHECK((lstat(path, &st) == 0) == (i == 2));
	}
	free(out);
	sb_free(&script);
	wb_list_free(b);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

UNIT_TEST(consecutive_deletes_are_one_rm_and_a_failure_is_still_told_apart)
{
	for (size_t i = 0; i < N_SHELLS; i++)
		consecutive_deletes_in_one_rm(shells[i]);
}

/* A batch whose answer was lost is sent again (B4): running it twice must
 * leave what running it once left, and report no failure the second time. */
static void batch_run_twice(const char *shell)
{
	char dir[] = "/tmp/wb-unit-XXXXXX", path[4096];
	struct strbuf script = STRBUF_INIT;
	struct wb_op *b = NULL, **bt = &b, *op;
	struct wb_result r[4];
	struct stat st;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	touch_file(dir, "f");
	touch_file(dir, "g");
	touch_file(dir, "h");
	snprintf(path, sizeof(path), "%s/f", dir);
	*bt = op = op_new(&owner_a, WB_ATTRS, path), bt = &op->next;
	op->chown = true;                  /* chown clears setuid; chmod after it sets it again */
	op->uid = getuid();
	op->gid = getgid();
	op->chmod = true;
	op->mode = 04751;
	op->set_mtime = op->set_atime = true;
	op->mtime.tv_sec = 1234567890;
	op->atime.tv_sec = 1111111111;
	op->stat_after = true;
	snprintf(path, sizeof(path), "%s/g", dir);
	*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
	snprintf(path, sizeof(path), "%s/h", dir);
	*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
	snprintf(path, sizeof(path), "%s/gone", dir);   /* touch -c makes nothing */
	*bt = op = op_new(&owner_a, WB_ATTRS, path), bt = &op->next;
	op->set_mtime = true;
	op->mtime.tv_sec = 1000000000;
	wb_script(&script, b, "Tw2", FMT, NULL);

	for (int run = 0; run < 2; run++) {
		char *out = run_sh(shell, dir, sb_str(&script));

		wb_parse(out, out ? strlen(out) : 0, "Tw2", r, 4);
		for (size_t i = 0; i < 4; i++)
			CHECK_INT(r[i].status, WB_OK);
		snprintf(path, sizeof(path), "%s/f", dir);
		CHECK(lstat(path, &st) == 0);
		CHECK_INT(st.st_mode & 07777, 04751);
		CHECK_INT(st.st_mtim.tv_sec, 1234567890);
		CHECK_INT(st.st_atim.tv_sec, 1111111111);
		snprintf(path, sizeof(path), "%s/g", dir);
		CHECK(lstat(path, &st) < 0 && errno == ENOENT);
		snprintf(path, sizeof(path), "%s/h", dir);
		CHECK(lstat(path, &st) < 0 && errno == ENOENT);
		snprintf(path, sizeof(path), "%s/gone", dir);
		CHECK(lstat(path, &st) < 0 && errno == ENOENT);
		free(out);
	}
	sb_free(&script);
	wb_list_free(b);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

UNIT_TEST(a_batch_run_twice_leaves_what_it_left_once)
{
	for (size_t i = 0; i < N_SHELLS; i++)
		batch_run_twice(shells[i]);
}

/* Writes text to dir/name in place (the same inode), or by a rename onto it
 * (a new one), as another writer would. */
static void write_file(const char *dir, const char *name, const char *text, bool by_rename)
{
	char path[4096], tmp[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s", dir, name);
	f = fopen(by_rename ? tmp : path, "w");
	if (!f) {
		CHECK(!"fopen");
		return;
	}
	fputs(text, f);
	fclose(f);
	if (by_rename)
		CHECK(rename(tmp, path) == 0);
}

static bool holds(const char *dir, const char *name, const char *text)
{
	char path[4096], buf[256];
	size_t got;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return false;
	got = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[got] = '\0';
	return !strcmp(buf, text);
}

static bool exists(const char *dir, const char *name, mode_t *mode);

static void pause_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* Builds batch's script with since (after prefix, shell code, when not
 * NULL), runs it under shell in dir and parses its n results into r, which
 * point into what is returned (to free). *tested: whether the script has
 * the birth test. */
static char *run_batch(const char *shell, const char *dir, const char *prefix, const struct wb_op *batch,
		       const char *mark, const struct wb_since *since, struct wb_result *r, size_t n, bool *tested)
{
	struct strbuf script = STRBUF_INIT;
	char *out;

	if (prefix)
		sb_adds(&script, prefix);
	wb_script(&script, batch, mark, FMT, since);
	CHECK(!script.oom);
	*tested = strstr(sb_str(&script), "wb_keep") != NULL;
	out = run_sh(shell, dir, sb_str(&script));
	wb_parse(out, out ? strlen(out) : 0, mark, r, n);
	sb_free(&script);
	return out;
}

/* Whether dir's file system tells birth times to GNU stat and is one whose
 * times the script believes (wb_keep): else the birth test spares nothing
 * there, and the tests of it have nothing to show. */
static bool births_known(const char *dir)
{
	char cmd[4096];

	snprintf(cmd, sizeof(cmd), "[ \"$(stat -c %%W -- '%s')\" != 0 ] && case $(stat -f -c %%T -- '%s') in "
		 "ext2/ext3|ext4|xfs|btrfs|tmpfs|zfs|f2fs) true ;; *) false ;; esac", dir, dir);
	return system(cmd) == 0;
}

/* Between the unlink and another writer's change: more than the birth
 * test's margin (50 ms) and the start of the script's shell (popen) on a
 * busy machine. (What comes after the change does not matter.) */
#define LATER_MS 600

/*
 * A delete of dir/name queued now, alone, and a new file made at name
 * LATER_MS later: someone else's, or (own) this mount's, by a batch in
 * flight at the unlink that ended just after (the floor), the batch built
 * LATER_MS after that. Runs the batch; whether name is there after it.
 */
static bool made_after_its_delete(const char *shell, const char *dir, const char *name, bool own)
{
	char path[4096];
	struct wb_since since = { 0, 0 };
	struct wb_result r[1];
	struct wb_op *op;
	bool tested;
	char *out;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	op = op_new(&owner_a, WB_DELETE, path);
	op->queued = wb_now();
	pause_ms(LATER_MS);
	write_file(dir, name, "after", true);
	if (own) {
		since.floor = wb_now();
		pause_ms(LATER_MS);   /* the floor, not the unlink, is what counts */
	}
	since.built = wb_now();
	out = run_batch(shell, dir, NULL, op, "Ck4", &since, r, 1, &tested);
	CHECK(tested);
	CHECK_INT(r[0].status, WB_OK);
	free(out);
	wb_list_free(op);
	return exists(dir, name, NULL);
}

/*
 * With the birth test (wb_since), a delete spares a file another writer
 * made at its path after the unlink (a rename onto it), and removes the
 * file that was there at the unlink whatever was written into it since
 * (rewritten in place, appended to); alone or in a run of deletes, and one
 * by one after a refusal in the run. The mount's own change in the batch
 * (a chmod before the delete) and a new file of its own that landed after
 * the unlink (floor) do not spare the path.
 */
static void deletes_spare_new_files(const char *shell)
{
	char dir[] = "/tmp/wb-unit-XXXXXX", path[4096];
	static const char *const names[] = { "old", "rewritten", "renamed", "appended", "sub", "old2", "missing" };
	struct wb_op *b = NULL, **bt = &b, *op;
	struct wb_result r[9];
	struct wb_since since;
	double unlinked;
	bool tested;
	FILE *f;
	char *out;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	if (!births_known(dir)) {
		fprintf(stderr, "SKIP %s: no birth times known in /tmp\n", __func__);
		snprintf(path, sizeof(path), "rm -rf '%s'", dir);
		CHECK(system(path) == 0);
		return;
	}
	for (size_t i = 0; i < 6; i++) {   /* (missing is not made) */
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (i == 4)
			mkdir(path, 0755);
		else
			write_file(dir, names[i], "before", false);
	}
	write_file(dir, "own", "before", false);
	unlinked = wb_now();
	/* A run of deletes (sub is refused: a directory; missing is no
	 * error), then own, changed by the batch before its delete. */
	for (size_t i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
		op->queued = unlinked;
	}
	snprintf(path, sizeof(path), "%s/own", dir);
	*bt = op = op_new(&owner_a, WB_ATTRS, path), bt = &op->next;
	op->chmod = true;
	op->mode = 0600;
	*bt = op = op_new(&owner_a, WB_DELETE, path), bt = &op->next;
	op->queued = unlinked;
	pause_ms(LATER_MS);
	/* Others write after the unlinks: a new file by a rename; the old
	 * file rewritten in place, and appended to (a program that had it
	 * open): that one is the file deleted. */
	write_file(dir, "renamed", "after", true);
	write_file(dir, "rewritten", "after", false);
	snprintf(path, sizeof(path), "%s/appended", dir);
	f = fopen(path, "a");
	CHECK(f != NULL);
	if (f) {
		fputs(" and after", f);
		fclose(f);
	}
	since.built = wb_now();
	since.floor = 0;
	out = run_batch(shell, dir, NULL, b, "Ck3", &since, r, 9, &tested);
	CHECK(tested);
	for (size_t i = 0; i < 9; i++)
		CHECK_INT(r[i].status, i == 4 ? WB_FAILED : WB_OK);
	CHECK(r[4].text && memmem(r[4].text, r[4].len, "Is a directory", 14) != NULL);
	CHECK(!exists(dir, "old", NULL));
	CHECK(!exists(dir, "rewritten", NULL));
	CHECK(holds(dir, "renamed", "after"));
	CHECK(!exists(dir, "appended", NULL));
	CHECK(exists(dir, "sub", NULL));
	CHECK(!exists(dir, "old2", NULL));
	CHECK(!exists(dir, "own", NULL));
	free(out);
	wb_list_free(b);

	/* Alone: a new file this mount put there after the unlink (a batch in
	 * flight then, which ended at floor) does not spare the path; someone
	 * else's does. */
	CHECK(!made_after_its_delete(shell, dir, "floored", true));
	CHECK(made_after_its_delete(shell, dir, "late", false));
	CHECK(holds(dir, "late", "after"));

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

UNIT_TEST(a_delete_spares_a_file_another_writer_made_there_after_the_unlink)
{
	for (size_t i = 0; i < N_SHELLS; i++)
		deletes_spare_new_files(shells[i]);
}

/* A hidden name, a batch of more than WB_SPARE_MAX such deletes, any delete
 * without a since, and one whose clock cannot be read (no date, a shell
 * without EPOCHREALTIME) remove whatever is there. */
UNIT_TEST(without_the_birth_test_a_delete_removes_what_is_there)
{
	char dir[] = "/tmp/wb-unit-XXXXXX", path[4096], name[32];
	struct wb_since since;
	struct wb_op *op, *many = NULL, **mt = &many;
	struct wb_result r[20];
	double unlinked;
	bool tested;
	char *out;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/h", dir);
	op = op_new(&owner_a, WB_DELETE, path);
	op->hidden = true;
	op->queued = unlinked = wb_now();
	for (int i = 0; i < 17; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		*mt = op_new(&owner_a, WB_DELETE, path);
		(*mt)->queued = unlinked;
		mt = &(*mt)->next;
	}
	pause_ms(LATER_MS);
	write_file(dir, "h", "after", true);
	for (int i = 0; i < 17; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		write_file(dir, name, "after", true);
	}
	pause_ms(LATER_MS);
	since.built = wb_now();
	since.floor = 0;
	out = run_batch("dash", dir, NULL, op, "Hd1", &since, r, 1, &tested);
	CHECK(!tested);
	CHECK_INT(r[0].status, WB_OK);
	CHECK(!exists(dir, "h", NULL));
	free(out);

	out = run_batch("dash", dir, NULL, many, "Hd3", &since, r, 17, &tested);
	CHECK(!tested);
	for (int i = 0; i < 17; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		CHECK_INT(r[i].status, WB_OK);
		CHECK(!exists(dir, name, NULL));
	}
	free(out);

	/* No clock: date fails (dash has no EPOCHREALTIME). */
	op->hidden = false;
	write_file(dir, "h", "after", true);
	out = run_batch("dash", dir, "date() { return 127; }\n", op, "Hd2", &since, r, 1, &tested);
	CHECK(tested);
	CHECK_INT(r[0].status, WB_OK);
	CHECK(!exists(dir, "h", NULL));
	free(out);
	wb_list_free(op);
	wb_list_free(many);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

/* ---- the runner (deferred.c) ------------------------------------------------ */

/* The fake sandbox: runs each script here under sh; fail_first sends fail
 * first (after running the script when ran_but_lost: the answer is lost). */
struct fake {
	const char *dir;
	int calls;
	int fail_first;
	bool ran_but_lost;
	struct sp_error fail;
	int send_failed, failed, done;
	int last_failed_err;
	char failed_path[4096], done_text[256];
};

static int fake_sh(void *ctx, void *owner, const char *script, int *code, char **out, struct sp_error *err)
{
	struct fake *f = ctx;

	CHECK(owner == &owner_a);
	f->calls++;
	if (f->calls <= f->fail_first) {
		if (f->ran_but_lost)
			free(run_sh("sh", f->dir, script));
		*err = f->fail;
		return -f->fail.err;
	}
	*out = run_sh("sh", f->dir, script);
	*code = 0;
	return *out ? 0 : -ENOMEM;
}

static int fake_send_failed(void *ctx, void *owner, int rc, const struct sp_error *err)
{
	((struct fake *)ctx)->send_failed++;
	return rc;
}

static void fake_failed(void *ctx, void *owner, const struct wb_op *op, int err, const char *msg)
{
	struct fake *f = ctx;

	f->failed++;
	f->last_failed_err = err;
	snprintf(f->failed_path, sizeof(f->failed_path), "%s", op->path);
}

static void fake_done(void *ctx, void *owner, const struct wb_op *op, const char *text)
{
	struct fake *f = ctx;

	f->done++;
	snprintf(f->done_text, sizeof(f->done_text), "%s", text ? text : "");
}

static const char *fake_name(const void *owner)
{
	return "fake";
}

static const struct deferred_ops fake_ops = {
	.sh_once = fake_sh, .send_failed = fake_send_failed, .failed = fake_failed, .done = fake_done,
	.name = fake_name,
};

static struct wb_op *chmod_op(const char *dir, const char *name, mode_t mode)
{
	char path[4096];
	struct wb_op *op;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	op = op_new(&owner_a, WB_ATTRS, path);
	op->chmod = true;
	op->mode = mode;
	op->stat_after = true;
	return op;
}

static struct wb_op *delete_op(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return op_new(&owner_a, WB_DELETE, path);
}

static bool exists(const char *dir, const char *name, mode_t *mode)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (lstat(path, &st) != 0)
		return false;
	if (mode)
		*mode = st.st_mode & 07777;
	return true;
}

static void rm_dir(const char *dir)
{
	char cmd[4096];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

UNIT_TEST(the_runner_sends_a_batch_as_one_command_and_reports_each_op)
{
	char dir[] = "/tmp/wb-run-XXXXXX";
	struct fake f = { 0 };
	struct deferred d;
	mode_t mode = 0;

	CHECK(mkdtemp(dir) != NULL);
	f.dir = dir;
	touch_file(dir, "gone");
	touch_file(dir, "kept");
	CHECK_INT(deferred_init(&d, 16, &fake_ops, &f, FMT), 0);
	CHECK(deferred_queue(&d, delete_op(dir, "gone"), 60));
	CHECK(deferred_queue(&d, chmod_op(dir, "kept", 0600), 60));
	CHECK(deferred_queue(&d, chmod_op(dir, "missing", 0600), 60));
	deferred_settle(&d, &owner_a, "/elsewhere");   /* touches none of them */
	CHECK_INT(f.calls, 0);
	deferred_run_all(&d, &owner_a);
	CHECK_INT(f.calls, 1);                          /* three ops, one command */
	CHECK(!exists(dir, "gone", NULL));
	CHECK(exists(dir, "kept", &mode));
	CHECK_INT(mode, 0600);
	CHECK_INT(f.done, 1);                           /* with the stat line it printed */
	CHECK(!strncmp(f.done_text, "f/600/", 6));
	CHECK_INT(f.failed, 1);                         /* the sandbox's refusal of one op */
	CHECK_INT(f.last_failed_err, -ENOENT);
	CHECK(strstr(f.failed_path, "/missing") != NULL);
	CHECK_INT(f.send_failed, 0);
	deferred_fini(&d);
	CHECK_INT(f.calls, 1);
	rm_dir(dir);
}

UNIT_TEST(the_runner_sends_again_after_a_lost_answer_and_counts_the_first_send)
{
	char dir[] = "/tmp/wb-run-XXXXXX";
	struct fake f = { .fail_first = 1, .ran_but_lost = true,
			  .fail = { .err = ECONNRESET, .message = "reset" } };
	struct deferred d;

	CHECK(mkdtemp(dir) != NULL);
	f.dir = dir;
	touch_file(dir, "g");
	CHECK_INT(deferred_init(&d, 16, &fake_ops, &f, FMT), 0);
	/* The second send finds g deleted by the first: its chmod is done. */
	CHECK(deferred_queue(&d, chmod_op(dir, "g", 0600), 60));
	CHECK(deferred_queue(&d, delete_op(dir, "g"), 60));
	deferred_run_all(&d, NULL);
	CHECK_INT(f.calls, 2);
	CHECK(!exists(dir, "g", NULL));
	CHECK_INT(f.failed, 0);
	CHECK_INT(f.send_failed, 0);
	deferred_fini(&d);
	rm_dir(dir);
}

UNIT_TEST(the_runner_gives_up_at_once_on_a_refusal_and_fails_every_op)
{
	char dir[] = "/tmp/wb-run-XXXXXX";
	struct fake f = { .fail_first = 100, .fail = { .err = EACCES, .http_status = 403, .message = "no" } };
	struct deferred d;

	CHECK(mkdtemp(dir) != NULL);
	f.dir = dir;
	touch_file(dir, "a");
	touch_file(dir, "b");
	CHECK_INT(deferred_init(&d, 16, &fake_ops, &f, FMT), 0);
	CHECK(deferred_queue(&d, delete_op(dir, "a"), 60));
	CHECK(deferred_queue(&d, chmod_op(dir, "b", 0600), 60));
	deferred_settle(&d, &owner_a, NULL);
	CHECK_INT(f.calls, 1);
	CHECK_INT(f.send_failed, 1);
	CHECK_INT(f.failed, 2);
	CHECK_INT(f.last_failed_err, -EACCES);
	CHECK(exists(dir, "a", NULL));
	deferred_fini(&d);
	CHECK_INT(f.calls, 1);                          /* nothing left to run at the end */
	rm_dir(dir);
}

UNIT_TEST(the_runner_thread_runs_what_is_due)
{
	char dir[] = "/tmp/wb-run-XXXXXX";
	struct fake f = { 0 };
	struct deferred d;

	CHECK(mkdtemp(dir) != NULL);
	f.dir = dir;
	touch_file(dir, "soon");
	CHECK_INT(deferred_init(&d, 16, &fake_ops, &f, FMT), 0);
	CHECK(deferred_queue(&d, delete_op(dir, "soon"), 0.05));
	for (int i = 0; i < 1000 && exists(dir, "soon", NULL); i++)
		usleep(10000);
	CHECK(!exists(dir, "soon", NULL));
	deferred_fini(&d);
	CHECK_INT(f.calls, 1);
	rm_dir(dir);
}

/* Before an upload: the queued changes of the file's own attributes come
 * back to the uploader, in order; anything else touching it (a delete, a
 * directory above, a batch in flight) keeps them queued. */
UNIT_TEST(an_upload_takes_back_only_its_own_attribute_changes)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *got, *batch;
	bool clear;

	CHECK(wb_take_attrs(q, &owner_a, "/d/f", &clear) == NULL && clear);   /* nothing queued */
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/g"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_b, WB_DELETE, "/d/f"), 0, 1));          /* another sandbox */
	got = wb_take_attrs(q, &owner_a, "/d/f", &clear);
	CHECK(clear);
	CHECK_INT(count(got), 2);
	wb_list_free(got);
	CHECK(!wb_conflicts(q, &owner_a, "/d/f"));
	CHECK(wb_conflicts(q, &owner_a, "/d/g"));
	/* a delete of the path: nothing taken, the caller settles */
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/f"), 0, 1));
	CHECK(wb_take_attrs(q, &owner_a, "/d/f", &clear) == NULL && !clear);
	batch = wb_take(q, &owner_a, false, 0);
	wb_done(q, batch);
	/* a directory above, or one in flight */
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));
	CHECK(wb_take_attrs(q, &owner_a, "/d/f", &clear) == NULL && !clear);
	batch = wb_take(q, &owner_a, false, 0);
	wb_done(q, batch);
	/* one in flight: not waited for, but what it prints is stale */
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));
	batch = wb_take(q, &owner_a, false, 0);
	CHECK(!wb_superseded(q, batch));
	CHECK(wb_take_attrs(q, &owner_a, "/d/f", &clear) == NULL && clear);
	CHECK(wb_superseded(q, batch));
	wb_done(q, batch);
	batch = wb_take(q, &owner_b, false, 0);
	wb_done(q, batch);
	wb_free(q);
}

static void set_flag(void *arg)
{
	*(bool *)arg = true;
}

/* An upload where a delete of its path waits: the delete stays (the move
 * queued after it replaces the file), the attribute changes before it stay
 * (they are the old file's), those after the last delete or move come
 * back; the uploader's own earlier move stays queued in its place until
 * the new upload swaps its name in (wb_swap_move); a directory above
 * still makes it unclear. */
UNIT_TEST(an_upload_over_a_queued_delete_replaces_the_file)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *op, *got, *batch;
	struct stat base;
	bool clear, replace, called = false;
	char *prev = NULL;

	CHECK(wb_take_replace(q, &owner_a, "/d/f", &clear, &replace, &base, &prev) == NULL && clear && !replace &&
	      !prev);
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));      /* the old file's */
	op = op_new(&owner_a, WB_DELETE, "/d/f");
	op->st.st_mode = S_IFREG | 0644;
	op->st.st_size = 11;
	CHECK(wb_push(q, op, 0, 1));
	CHECK(wb_only_own(q, &owner_a, "/d/f"));
	CHECK(wb_take_replace(q, &owner_a, "/d/f", &clear, &replace, &base, &prev) == NULL && clear && replace &&
	      !prev);
	CHECK(S_ISREG(base.st_mode) && base.st_size == 11);
	CHECK(wb_conflicts(q, &owner_a, "/d/f"));                           /* both stay */
	op = op_new(&owner_a, WB_MOVE, "/d/f");
	op->src = strdup("/d/.tmp1");
	CHECK(wb_push(q, op, 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));      /* the new file's */
	got = wb_take_replace(q, &owner_a, "/d/f", &clear, &replace, &base, &prev);
	CHECK(clear && replace && got && got->kind == WB_ATTRS && !got->next);
	CHECK(prev && !strcmp(prev, "/d/.tmp1"));                          /* stays queued */
	CHECK(S_ISREG(base.st_mode) && base.st_size == 11);                 /* the first one's */
	wb_list_free(got);
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/g"), 0, 1));      /* queued meanwhile */
	/* the new upload landed: its name takes the queued move's place */
	op = op_new(&owner_a, WB_MOVE, "/d/f");
	op->src = strdup("/d/.tmp1b");
	CHECK(wb_swap_move(q, &owner_a, "/d/f", prev, op));
	CHECK(!strcmp(op->src, "/d/.tmp1"));                               /* the old one, to drop */
	CHECK(!wb_swap_move(q, &owner_a, "/d/f", "/d/.tmp1", op));         /* gone from the queue */
	wb_op_free(op);
	free(prev);
	batch = wb_take(q, &owner_a, false, 0);
	CHECK_INT(count(batch), 4);
	CHECK(batch->next->next->kind == WB_MOVE && !strcmp(batch->next->next->src, "/d/.tmp1b"));
	CHECK(batch->next->next->next->kind == WB_DELETE);                  /* still after the move */
	{
		/* a second run of the batch must not delete what the move put
		 * at /d/f, nor set the old file's attributes on it: the delete
		 * before the move leaves a non-directory to mv, the old file's
		 * attributes wait on the move's record, the move writes it */
		struct strbuf s = STRBUF_INIT;
		const char *t;

		wb_script(&s, batch, "M", "%p\n", NULL);
		t = sb_str(&s);
		CHECK(strstr(t, "{ true && rm -f -- '/d/f'") == NULL);
		CHECK(strstr(t, "! test -d '/d/f' || test -L '/d/f' || rm -f -- '/d/f'") != NULL);
		CHECK(strstr(t, "if test -e '" WB_MOVE_MARK_DIR "/.tmp1b'; then true; else true") != NULL);
		CHECK(strstr(t, "true >'" WB_MOVE_MARK_DIR "/.tmp1b'") != NULL);
		CHECK(strstr(t, "elif test -e '" WB_MOVE_MARK_DIR "/.tmp1b'; then true;") != NULL);
		CHECK(strstr(t, "rm -f -- '/d/g'") != NULL);
		sb_free(&s);
	}
	wb_done(q, batch);
	op = op_new(&owner_a, WB_MOVE, "/d/f");
	op->src = strdup("/d/.tmp2");
	CHECK(wb_push(q, op, 0, 1));
	batch = wb_take(q, &owner_a, false, 0);
	{
		struct strbuf s = STRBUF_INIT;

		wb_script(&s, batch, "M", "%p\n", NULL);
		CHECK(strstr(sb_str(&s), "mv -f -T -- ") != NULL);
		CHECK(strstr(sb_str(&s), "-- '/d/.tmp2' '/d/f'") || strstr(sb_str(&s), "-- /d/.tmp2 /d/f"));
		sb_free(&s);
	}
	/* a move in flight: not taken, not waited for, not swapped */
	CHECK(wb_take_replace(q, &owner_a, "/d/f", &clear, &replace, &base, &prev) == NULL && clear && replace &&
	      !prev);
	wb_if_current(q, batch, set_flag, &called);
	CHECK(called);
	wb_done(q, batch);
	/* a directory above: unclear */
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/f"), 0, 1));
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d"), 0, 1));
	CHECK(!wb_only_own(q, &owner_a, "/d/f"));
	CHECK(wb_take_replace(q, &owner_a, "/d/f", &clear, &replace, &base, &prev) == NULL && !clear && !prev);
	batch = wb_take(q, &owner_a, false, 0);
	wb_done(q, batch);
	/* a superseded op's result is not stored */
	CHECK(wb_push(q, op_new(&owner_a, WB_ATTRS, "/d/f"), 0, 1));
	batch = wb_take(q, &owner_a, false, 0);
	CHECK(wb_take_attrs(q, &owner_a, "/d/f", &clear) == NULL && clear);
	called = false;
	wb_if_current(q, batch, set_flag, &called);
	CHECK(!called);
	wb_done(q, batch);
	wb_free(q);
}

/* A lazy op (a move's record) makes no settle send a command: it is no
 * conflict, and a settle finds nothing eager; it rides with the next batch. */
UNIT_TEST(a_lazy_op_waits_for_another_batch)
{
	struct wb_queue *q = wb_new(8);
	struct wb_op *op = op_new(&owner_a, WB_DELETE, "/tmp/.daytonafs/moved/.x"), *batch;

	op->lazy = true;
	CHECK(wb_push(q, op, 0, 30));
	CHECK(!wb_conflicts(q, &owner_a, NULL) && !wb_conflicts(q, &owner_a, "/tmp"));
	CHECK(!wb_eager(q, &owner_a) && !wb_eager(q, NULL));
	CHECK(wb_push(q, op_new(&owner_a, WB_DELETE, "/d/f"), 0, 1));
	CHECK(wb_eager(q, &owner_a) && wb_eager(q, NULL) && !wb_eager(q, &owner_b));
	batch = wb_take(q, &owner_a, false, 0);
	CHECK_INT(count(batch), 2);
	wb_done(q, batch);
	wb_free(q);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(conflicts_cover_the_path_what_is_below_and_the_directories_above),
		UNIT_CASE(an_upload_takes_back_only_its_own_attribute_changes),
		UNIT_CASE(an_upload_over_a_queued_delete_replaces_the_file),
		UNIT_CASE(a_lazy_op_waits_for_another_batch),
		UNIT_CASE(attr_conflicts_are_the_path_above_and_deletes_in_it),
		UNIT_CASE(batches_keep_order_and_one_owner_and_stay_visible_in_flight),
		UNIT_CASE(an_owner_with_a_batch_in_flight_or_backing_off_keeps_its_order),
		UNIT_CASE(a_later_change_of_the_path_supersedes_what_an_op_printed),
		UNIT_CASE(a_later_change_above_the_path_leaves_what_an_op_printed),
		UNIT_CASE(child_attrs_are_the_queued_changes_of_entries_in_the_directory),
		UNIT_CASE(a_full_batch_is_due_at_once),
		UNIT_CASE(a_hidden_delete_waits_its_delay_and_holds_back_what_follows),
		UNIT_CASE(settling_takes_hidden_deletes_before_their_delay),
		UNIT_CASE(running_touches_sees_a_batch_in_flight_only),
		UNIT_CASE(an_open_that_keeps_the_content_ignores_the_paths_own_attrs),
		UNIT_CASE(wait_returns_when_something_is_due_and_false_after_stop),
		UNIT_CASE(parse_splits_by_marker_and_spots_failures_and_missing_ops),
		UNIT_CASE(the_script_applies_every_op_under_sh_whatever_the_names),
		UNIT_CASE(consecutive_deletes_are_one_rm_and_a_failure_is_still_told_apart),
		UNIT_CASE(a_batch_run_twice_leaves_what_it_left_once),
		UNIT_CASE(a_delete_spares_a_file_another_writer_made_there_after_the_unlink),
		UNIT_CASE(without_the_birth_test_a_delete_removes_what_is_there),
		UNIT_CASE(the_runner_sends_a_batch_as_one_command_and_reports_each_op),
		UNIT_CASE(the_runner_sends_again_after_a_lost_answer_and_counts_the_first_send),
		UNIT_CASE(the_runner_gives_up_at_once_on_a_refusal_and_fails_every_op),
		UNIT_CASE(the_runner_thread_runs_what_is_due),
	};

	return unit_run("writeback", cases, sizeof(cases) / sizeof(cases[0]));
}
