/* SPDX-License-Identifier: Apache-2.0 */
/*
 * listing.c (src/remote) with no mount: the find listing and the changes by
 * command, run through an in-memory provider whose exec_within answers the
 * scripts as a sandbox with GNU find would, and a context whose callbacks
 * record what the mount would be told. The scripts themselves are run under
 * real shells by test_fs_find.c; here it is the code around them: what is
 * sent, how often, what is parsed, what lands in the cache.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache.h"
#include "listing.h"
#include "provider.h"
#include "strbuf.h"
#include "unit.h"

/* ---- the sandbox: a few paths with lstat's attributes ---------------------- */

#define FAKE_NODES 16

struct fake_node {
	char path[64];
	char type;                /* find's %y */
	unsigned mode;            /* permission and special bits */
	uint64_t size;
	char target[64];          /* a link's */
};

static struct fake {
	struct fake_node nodes[FAKE_NODES];
	size_t n;
	int execs;
	bool no_find;             /* find is missing: exit 127 */
	bool down;                /* the sandbox is stopped: the request fails */
	char last[1024];          /* the last script, without the prefix */
} fake;

static struct fake_node *node_at(const char *path)
{
	for (size_t i = 0; i < fake.n; i++)
		if (!strcmp(fake.nodes[i].path, path))
			return &fake.nodes[i];
	return NULL;
}

static struct fake_node *add_node(const char *path, char type, unsigned mode, uint64_t size, const char *target)
{
	struct fake_node *nd = node_at(path);

	if (!nd) {
		if (fake.n == FAKE_NODES)
			abort();
		nd = &fake.nodes[fake.n++];
	}
	memset(nd, 0, sizeof(*nd));
	snprintf(nd->path, sizeof(nd->path), "%s", path);
	nd->type = type;
	nd->mode = mode;
	nd->size = target ? strlen(target) : size;
	if (target)
		snprintf(nd->target, sizeof(nd->target), "%s", target);
	return nd;
}

static void reset_fake(void)
{
	memset(&fake, 0, sizeof(fake));
	add_node("/w", 'd', 0755, 4096, NULL);
	add_node("/w/a.txt", 'f', 0644, 5, NULL);
	add_node("/w/bin", 'd', 0755, 4096, NULL);
	add_node("/w/bin/tool", 'f', 0755, 7, NULL);
	add_node("/w/ln", 'l', 0777, 0, "a.txt");
	add_node("/w/run", 'f', 04755, 12, NULL);
}

/* One record of FIND_FMT: every file has the same times, owner 1000:1000. */
static void put_record(struct strbuf *out, const struct fake_node *nd, const char *name)
{
	sb_addf(out, "%c/%o/%" PRIu64 "/1700000000.1234567890/1000/1000/%d/1.25/2.5/%s/%s\n", nd->type, nd->mode,
		nd->size, nd->type == 'd' ? 2 : 1, name, nd->target);
}

/* dir's listing as find -mindepth 0 -maxdepth 1 prints it: "." first, then
 * the entries in the directory's order (here not sorted). */
static void put_listing(struct strbuf *out, const char *dir)
{
	size_t dl = strlen(dir);

	put_record(out, node_at(dir), ".");
	for (size_t i = fake.n; i-- > 0;) {
		const char *p = fake.nodes[i].path;

		if (!strncmp(p, dir, dl) && p[dl] == '/' && !strchr(p + dl + 1, '/'))
			put_record(out, &fake.nodes[i], p + dl + 1);
	}
}

/* A single-quoted shell word at *p (as sh_quote writes it) into buf. */
static bool read_word(const char **p, char *buf, size_t cap)
{
	const char *s = *p;
	size_t n = 0;

	if (*s != '\'')
		return false;
	for (s++; *s; s++) {
		if (!strncmp(s, "'\\''", 4)) {
			s += 3;
			if (n + 1 < cap)
				buf[n++] = '\'';
		} else if (*s == '\'') {
			break;
		} else if (n + 1 < cap) {
			buf[n++] = *s;
		}
	}
	if (*s != '\'')
		return false;
	buf[n] = '\0';
	*p = s + 1;
	return true;
}

/* The scripts listing.c sends: a listing ("d=DIR/.; find ..." and maybe
 * "; c=CHILD; ..."), or a change ("chmod MODE PATH", "ln -s TARGET PATH")
 * with or without the stat print after it ("&& { find PATH -maxdepth 0 ..."). */
static int fake_exec_within(void *impl, const struct sp_box *box, const char *command, const char *cwd,
			    long limit_s, int *exit_code, char **output, struct sp_error *err)
{
	struct strbuf out = STRBUF_INIT;
	const char *s = command, *q;
	char a[64], b[64];
	struct fake_node *nd;

	fake.execs++;
	if (fake.down)
		return sp_error_set(err, -EHOSTDOWN, 0, "sandbox is stopped");
	if (strncmp(s, FILES_SH_PREFIX, strlen(FILES_SH_PREFIX)) || !box || strcmp(cwd, "/") || limit_s != 7)
		return sp_error_set(err, -EINVAL, 400, "not a script of listing.c");
	s += strlen(FILES_SH_PREFIX);
	snprintf(fake.last, sizeof(fake.last), "%s", s);
	*exit_code = 0;
	if (fake.no_find && strstr(s, "find ")) {
		*exit_code = 127;
		*output = strdup("sh: 1: find: not found\n");
		return 0;
	}
	if (!strncmp(s, "d=", 2)) {
		s += 2;
		if (!read_word(&s, a, sizeof(a)))
			return sp_error_set(err, -EINVAL, 400, "bad listing");
		nd = node_at(a);
		if (!nd || nd->type != 'd') {
			sb_addf(&out, "find: '%s/.': No such file or directory\n", a);
			*exit_code = 97;
		} else {
			put_listing(&out, a);
			q = strstr(s, "; c=");
			if (q) {
				q += 4;
				if (!read_word(&q, b, sizeof(b)))
					return sp_error_set(err, -EINVAL, 400, "bad child");
				nd = node_at(b);
				if (nd && nd->type == 'd') {
					put_listing(&out, b);
					put_record(&out, nd, ".");
				}
			}
		}
	} else {
		bool chmod = !strncmp(s, "chmod ", 6);
		unsigned mode = 0;

		if (chmod) {
			mode = (unsigned)strtoul(s + 6, (char **)&s, 8);
			s++;
		} else if (!strncmp(s, "ln -s ", 6)) {
			s += 6;
			if (!read_word(&s, b, sizeof(b)) || *s++ != ' ')
				return sp_error_set(err, -EINVAL, 400, "bad ln");
		} else {
			return sp_error_set(err, -EINVAL, 400, "unknown command");
		}
		if (!read_word(&s, a, sizeof(a)))
			return sp_error_set(err, -EINVAL, 400, "bad path");
		nd = node_at(a);
		if (chmod && !nd) {
			sb_addf(&out, "chmod: cannot access '%s': No such file or directory\n", a);
			*exit_code = 1;
		} else if (!chmod && nd) {
			sb_addf(&out, "ln: failed to create symbolic link '%s': File exists\n", a);
			*exit_code = 1;
		} else {
			if (chmod)
				nd->mode = mode;
			else
				nd = add_node(a, 'l', 0777, 0, b);
			if (!strncmp(s, " && { find ", 11))
				put_record(&out, nd, strrchr(a, '/') + 1);
		}
	}
	*output = strdup(sb_str(&out));
	sb_free(&out);
	return 0;
}

static const struct sandbox_provider_ops fake_ops = {
	.exec_within = fake_exec_within,
};

static struct sandbox_provider fake_provider = {
	.name = "fake",
	.ops = &fake_ops,
};

/* ---- the mount's side: callbacks that record ---------------------------------- */

static struct mount_rec {
	enum list_mode mode;
	int boxes, failures, mode_sets, link_puts, link_drops;
	char link_path[64], link_target[64];
} rec;

static void m_box(void *mount, void *owner, struct sp_box *box)
{
	rec.boxes++;
	box->id = owner;
	box->toolbox_url = "http://fake.invalid/toolbox";
}

static int m_failed(void *mount, void *owner, int rc, const struct sp_error *err, const char *what,
		    const char *path)
{
	rec.failures++;
	return rc;
}

static enum list_mode m_mode_get(void *mount, const void *owner)
{
	return rec.mode;
}

static void m_mode_set(void *mount, const void *owner, enum list_mode mode)
{
	rec.mode_sets++;
	rec.mode = mode;
}

static void m_link_put(void *mount, const void *owner, const char *path, const char *target)
{
	rec.link_puts++;
	snprintf(rec.link_path, sizeof(rec.link_path), "%s", path);
	snprintf(rec.link_target, sizeof(rec.link_target), "%s", target);
}

static void m_link_drop(void *mount, const void *owner, const char *path, bool subtree)
{
	rec.link_drops++;
}

static const struct listing_ops m_ops = {
	.box = m_box,
	.failed = m_failed,
	.mode_get = m_mode_get,
	.mode_set = m_mode_set,
	.link_put = m_link_put,
	.link_drop = m_link_drop,
};

static struct cache *new_ctx(struct listing_ctx *c)
{
	struct cache_config cfg;

	cache_config_defaults(&cfg);
	cfg.attr_ttl = cfg.dir_ttl = cfg.neg_ttl = 3600;
	memset(&rec, 0, sizeof(rec));
	reset_fake();
	memset(c, 0, sizeof(*c));
	c->sp = &fake_provider;
	c->timeout_s = 7;
	c->cache = cache_new(&cfg);
	c->id = "sb-1";
	c->name = "box";
	c->ops = &m_ops;
	c->mount = NULL;
	c->owner = "sb-1";
	return c->cache;
}

/* ---- the cases ------------------------------------------------------------------ */

/* A directory listed with one command: every entry with lstat's attributes,
 * sorted, the directory's own record dropped. */
UNIT_TEST(list_a_directory)
{
	struct listing_ctx c;
	struct cache *cache = new_ctx(&c);
	struct find_entry *v = NULL;
	struct child_listing cl = { 0 };
	size_t n = 0;

	CHECK_INT(listing_find(&c, "/w", NULL, &v, &n, &cl), 0);
	CHECK_INT(fake.execs, 1);
	CHECK_INT(rec.boxes, 1);
	CHECK(strstr(fake.last, "-mindepth 0 -maxdepth 1 -printf '" FIND_FMT "'") != NULL);
	CHECK(!cl.have);
	CHECK_INT(n, 4);
	if (n == 4) {
		CHECK_STR(v[0].name, "a.txt");
		CHECK_INT(v[0].st.st_mode, S_IFREG | 0644);
		CHECK_INT(v[0].st.st_size, 5);
		CHECK_INT(v[0].st.st_uid, 1000);
		CHECK_INT(v[0].st.st_gid, 1000);
		CHECK_INT(v[0].st.st_mtim.tv_sec, 1700000000);
		CHECK_INT(v[0].st.st_mtim.tv_nsec, 123456789);
		CHECK_INT(v[0].st.st_ctim.tv_nsec, 500000000);
		CHECK(v[0].link == NULL);
		CHECK_STR(v[1].name, "bin");
		CHECK_INT(v[1].st.st_mode, S_IFDIR | 0755);
		CHECK_INT(v[1].st.st_nlink, 2);
		CHECK_STR(v[2].name, "ln");
		CHECK_INT(v[2].st.st_mode, S_IFLNK | 0777);
		CHECK_STR(v[2].link, "a.txt");
		CHECK_INT(v[2].st.st_size, 5);
		CHECK_STR(v[3].name, "run");
		CHECK_INT(v[3].st.st_mode, S_IFREG | 04755);
	}
	files_find_free(v, n);
	/* The mode is the caller's to set on success: nothing said here. */
	CHECK_INT(rec.mode_sets, 0);
	CHECK_INT(rec.failures, 0);
	cache_free(cache);
}

/* A lookup's listing of the parent brings the child directory's in the same
 * request. */
UNIT_TEST(list_a_directory_and_its_child)
{
	struct listing_ctx c;
	struct cache *cache = new_ctx(&c);
	struct find_entry *v = NULL;
	struct child_listing cl = { 0 };
	size_t n = 0;

	CHECK_INT(listing_find(&c, "/w", "bin", &v, &n, &cl), 0);
	CHECK_INT(fake.execs, 1);
	CHECK_INT(n, 4);
	CHECK(cl.have);
	CHECK_INT(cl.n, 1);
	if (cl.n == 1) {
		CHECK_STR(cl.v[0].name, "tool");
		CHECK_INT(cl.v[0].st.st_mode, S_IFREG | 0755);
		CHECK_INT(cl.v[0].st.st_size, 7);
	}
	files_find_free(v, n);
	files_find_free(cl.v, cl.n);
	/* A child that is not a directory: the parent's listing alone. */
	memset(&cl, 0, sizeof(cl));
	CHECK_INT(listing_find(&c, "/w", "a.txt", &v, &n, &cl), 0);
	CHECK_INT(n, 4);
	CHECK(!cl.have);
	files_find_free(v, n);
	cache_free(cache);
}

/* Errors: a missing directory is ENOENT from find's message; no find means
 * ENOSYS and the file API from then on; a stopped sandbox goes to the
 * mount's failure callback. */
UNIT_TEST(list_errors)
{
	struct listing_ctx c;
	struct cache *cache = new_ctx(&c);
	struct find_entry *v = NULL;
	struct child_listing cl = { 0 };
	size_t n = 0;

	CHECK_INT(listing_find(&c, "/nope", NULL, &v, &n, &cl), -ENOENT);
	CHECK(v == NULL);
	CHECK_INT(n, 0);
	CHECK_INT(rec.mode_sets, 0);
	fake.no_find = true;
	CHECK_INT(listing_find(&c, "/w", NULL, &v, &n, &cl), -ENOSYS);
	CHECK_INT(rec.mode_sets, 1);
	CHECK_INT(rec.mode, LIST_API);
	fake.no_find = false;
	fake.down = true;
	CHECK_INT(listing_find(&c, "/w", NULL, &v, &n, &cl), -EHOSTDOWN);
	CHECK_INT(rec.failures, 1);
	CHECK_INT(fake.execs, 3);
	cache_free(cache);
}

/* A change by command prints the path's attributes back: one request, and
 * the cache holds the sandbox's own attributes of it (no stat after). */
UNIT_TEST(change_with_attributes_printed_back)
{
	struct listing_ctx c;
	struct cache *cache = new_ctx(&c);
	struct strbuf cmd = STRBUF_INIT;
	struct stat st;

	rec.mode = LIST_FIND;
	sb_adds(&cmd, "chmod 4700 '/w/a.txt'");
	CHECK_INT(listing_change(&c, &cmd, "/w/a.txt", CACHE_CHANGED), 0);
	CHECK_INT(fake.execs, 1);
	CHECK(strstr(fake.last, " && { find '/w/a.txt' -maxdepth 0 -printf '" FIND_FMT "'") != NULL);
	CHECK_INT(cache_get_attr(cache, "sb-1", "/w/a.txt", &st), CACHE_HIT);
	CHECK_INT(st.st_mode, S_IFREG | 04700);
	CHECK_INT(st.st_size, 5);
	CHECK_INT(st.st_mtim.tv_nsec, 123456789);
	CHECK_INT(rec.link_drops, 1);   /* not a link: none kept for it */
	CHECK_INT(rec.link_puts, 0);

	/* A new link: its target goes to the mount, its attributes to the cache. */
	sb_adds(&cmd, "ln -s 'run' '/w/new'");
	CHECK_INT(listing_change(&c, &cmd, "/w/new", CACHE_REPLACED), 0);
	CHECK_INT(fake.execs, 2);
	CHECK_INT(cache_get_attr(cache, "sb-1", "/w/new", &st), CACHE_HIT);
	CHECK_INT(st.st_mode, S_IFLNK | 0777);
	CHECK_INT(st.st_size, 3);
	CHECK_INT(rec.link_puts, 1);
	CHECK_STR(rec.link_path, "/w/new");
	CHECK_STR(rec.link_target, "run");

	/* The change fails: the errno its message names, and what was cached
	 * of the path is dropped. */
	sb_adds(&cmd, "ln -s 'x' '/w/new'");
	CHECK_INT(listing_change(&c, &cmd, "/w/new", CACHE_REPLACED), -EEXIST);
	CHECK_INT(cache_get_attr(cache, "sb-1", "/w/new", &st), CACHE_MISS);
	CHECK_INT(rec.failures, 0);     /* the command ran: not a failure of the sandbox */
	sb_adds(&cmd, "chmod 600 '/w/gone'");
	CHECK_INT(listing_change(&c, &cmd, "/w/gone", CACHE_CHANGED), -ENOENT);
	CHECK_INT(fake.execs, 4);
	cache_free(cache);
}

/* Where find does not work (the file API lists), a change prints nothing
 * back: the path's cached attributes are dropped, and the next stat asks. */
UNIT_TEST(change_without_find)
{
	struct listing_ctx c;
	struct cache *cache = new_ctx(&c);
	struct strbuf cmd = STRBUF_INIT;
	struct stat st = { .st_mode = S_IFREG | 0644 };

	rec.mode = LIST_API;
	cache_put_attr(cache, "sb-1", "/w/a.txt", &st, cache_generation(cache, "sb-1"));
	sb_adds(&cmd, "chmod 600 '/w/a.txt'");
	CHECK_INT(listing_change(&c, &cmd, "/w/a.txt", CACHE_CHANGED), 0);
	CHECK(strstr(fake.last, "find") == NULL);
	CHECK_INT(fake.nodes[1].mode, 0600);
	CHECK_INT(cache_get_attr(cache, "sb-1", "/w/a.txt", &st), CACHE_MISS);
	CHECK_INT(rec.link_drops, 1);
	CHECK_INT(fake.execs, 1);
	cache_free(cache);
}

/* The parser of a printed stat alone: one record, or nothing. */
UNIT_TEST(parse_printed_attributes)
{
	struct stat st;
	char *link = NULL;

	CHECK(parse_printed_stat("l/777/5/1.5/0/0/1/1/1/ln/a\nb.c\n", &st, &link));
	CHECK_INT(st.st_mode, S_IFLNK | 0777);
	CHECK_STR(link, "a\nb.c");    /* a target holds a newline: its size says where it ends */
	free(link);
	CHECK(!parse_printed_stat("", &st, &link));
	CHECK(link == NULL);
	CHECK(!parse_printed_stat("f/644/1/1/0/0/1/1/1/a/\nf/644/1/1/0/0/1/1/1/b/\n", &st, NULL));
	CHECK(!parse_printed_stat("chmod: cannot access 'x'\n", &st, NULL));
}

UNIT_MAIN("listing",
	UNIT_CASE(list_a_directory),
	UNIT_CASE(list_a_directory_and_its_child),
	UNIT_CASE(list_errors),
	UNIT_CASE(change_with_attributes_printed_back),
	UNIT_CASE(change_without_find),
	UNIT_CASE(parse_printed_attributes))
