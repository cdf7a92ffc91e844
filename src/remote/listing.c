/* SPDX-License-Identifier: Apache-2.0 */
/*
 * listing.c - the find -printf format that lists a directory with lstat's
 * view, and the changes made by running a command in the sandbox with the
 * attributes printed back (listing.h).
 */
#include "listing.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"
#include "urlenc.h"
#include "writeback.h"

/* ---- the find format ------------------------------------------------------------- */

static int parse_u64(const char **p, const char *end, int base, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	if (s >= end || *s == '/')
		return -EINVAL;
	for (; s < end && *s != '/'; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else
			return -EINVAL;
		if (d >= (unsigned)base || v > (UINT64_MAX - d) / (uint64_t)base)
			return -EINVAL;
		v = v * (uint64_t)base + d;
	}
	if (s >= end)
		return -EINVAL;
	*p = s + 1;   /* past the '/' */
	*out = v;
	return 0;
}

/* "SECONDS[.FRACTION]", as find's %T@ prints it. */
static int parse_time(const char **p, const char *end, struct timespec *ts)
{
	const char *s = *p;
	bool neg = false;
	int64_t sec = 0;
	long nsec = 0;
	int digits = 0;

	if (s < end && *s == '-') {
		neg = true;
		s++;
	}
	if (s >= end || *s < '0' || *s > '9')
		return -EINVAL;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (sec > (INT64_MAX - 9) / 10)
			return -EINVAL;
		sec = sec * 10 + (*s - '0');
	}
	if (s < end && *s == '.') {
		for (s++; s < end && *s >= '0' && *s <= '9'; s++) {
			if (digits < 9) {
				nsec = nsec * 10 + (*s - '0');
				digits++;
			}
		}
	}
	if (s >= end || *s != '/')
		return -EINVAL;
	for (; digits < 9; digits++)
		nsec *= 10;
	if (neg) {
		sec = -sec;
		if (nsec) {
			sec--;
			nsec = 1000000000L - nsec;
		}
	}
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	*p = s + 1;
	return 0;
}

static mode_t type_of(char y)
{
	switch (y) {
	case 'f': return S_IFREG;
	case 'd': return S_IFDIR;
	case 'l': return S_IFLNK;
	case 'p': return S_IFIFO;
	case 's': return S_IFSOCK;
	case 'c': return S_IFCHR;
	case 'b': return S_IFBLK;
	default: return 0;   /* a door, or a type find could not tell: not shown */
	}
}

void files_find_free(struct find_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].link);
	}
	free(v);
}

/*
 * Parses records of FIND_FMT:
 *   TYPE/MODE/SIZE/MTIME/UID/GID/NLINK/ATIME/CTIME/NAME/TARGET\n
 * MODE is octal with the setuid, setgid and sticky bits; the times are
 * seconds with a fraction. NAME ends at the next '/', since no name holds one. A
 * link's TARGET may hold anything but NUL, newlines included: it is its
 * SIZE bytes (a link's size is its target's length) when a newline follows
 * them, else (a /proc link reports size 0) it runs to the next newline.
 * Returns 0 with the entries in file order, or -EINVAL.
 */
int files_parse_find(const char *buf, size_t len, struct find_entry **out, size_t *count)
{
	const char *p = buf, *end = buf + len;
	struct find_entry *v = NULL;
	size_t n = 0, cap = 0;
	int rc = -EINVAL;

	*out = NULL;
	*count = 0;
	while (p < end) {
		uint64_t mode, size, uid, gid, nlink;
		struct timespec mt, at, ct;
		const char *name, *nend, *target = NULL;
		size_t tlen = 0;
		mode_t type;
		char y = *p;

		if (p + 2 > end || p[1] != '/')
			goto fail;
		p += 2;
		if (parse_u64(&p, end, 8, &mode) || parse_u64(&p, end, 10, &size) || parse_time(&p, end, &mt) ||
		    parse_u64(&p, end, 10, &uid) || parse_u64(&p, end, 10, &gid) ||
		    parse_u64(&p, end, 10, &nlink) || parse_time(&p, end, &at) || parse_time(&p, end, &ct))
			goto fail;
		name = p;
		nend = memchr(p, '/', (size_t)(end - p));
		if (!nend || nend == name)
			goto fail;
		p = nend + 1;
		type = type_of(y);
		if (y == 'l') {
			target = p;
			if (size > 0 && size < (uint64_t)(end - p) && p[size] == '\n') {
				tlen = (size_t)size;
			} else {
				const char *nl = memchr(p, '\n', (size_t)(end - p));

				if (!nl)
					goto fail;
				tlen = (size_t)(nl - p);
			}
			p += tlen;
		}
		if (p >= end || *p != '\n')
			goto fail;
		p++;
		if (!type)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct find_entry *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				rc = -ENOMEM;
				goto fail;
			}
			v = nv;
			cap = ncap;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].name = strndup(name, (size_t)(nend - name));
		if (target)
			v[n].link = strndup(target, tlen);
		if (!v[n].name || (target && !v[n].link)) {
			n++;
			rc = -ENOMEM;
			goto fail;
		}
		v[n].st.st_mode = type | (mode_t)(mode & 07777);
		/* A link's size is lstat's, its target's length in the
		 * sandbox: the target that arrived may be longer (bytes that
		 * are not UTF-8 come through JSON as U+FFFD, 3 bytes each).
		 * A /proc link reports 0: then what arrived. */
		v[n].st.st_size = (off_t)(target && size == 0 ? tlen : size);
		v[n].st.st_nlink = (nlink_t)nlink;
		v[n].st.st_uid = (uid_t)uid;
		v[n].st.st_gid = (gid_t)gid;
		v[n].st.st_blocks = (blkcnt_t)((size + 511) / 512);
		v[n].st.st_blksize = 128 * 1024;
		v[n].st.st_mtim = mt;
		v[n].st.st_atim = at;
		v[n].st.st_ctim = ct;
		n++;
	}
	*out = v;
	*count = n;
	return 0;
fail:
	files_find_free(v, n);
	return rc;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* od -An -v -tx1 output ("  2f 61\n 62 ...") back to bytes. */
int files_unhex(const char *text, char **out, size_t *len)
{
	size_t n = 0, cap = strlen(text) / 2 + 1;
	char *b = malloc(cap);

	*out = NULL;
	*len = 0;
	if (!b)
		return -ENOMEM;
	for (const char *p = text; *p;) {
		int hi, lo;

		if (*p == ' ' || *p == '\n' || *p == '\t') {
			p++;
			continue;
		}
		hi = hexval(p[0]);
		lo = hi < 0 ? -1 : hexval(p[1]);
		if (lo < 0 || n >= cap) {
			free(b);
			return -EINVAL;
		}
		b[n++] = (char)(hi << 4 | lo);
		p += 2;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

/* Go's JSON encoder turns invalid UTF-8 into U+FFFD: such output cannot be trusted byte for byte. */
bool has_replacement_char(const char *s)
{
	return strstr(s, "\xEF\xBF\xBD") != NULL;
}

int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct find_entry *)a)->name, ((const struct find_entry *)b)->name);
}

/* ---- helpers ------------------------------------------------------------------ */

void stat_from_info(const struct sp_fileinfo *fi, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = fi->mode;
	if (!(st->st_mode & S_IFMT))
		st->st_mode |= fi->is_dir ? S_IFDIR : S_IFREG;
	/* The API gives no link count. For a directory, 1 means "unknown" to
	 * find and fts, which would otherwise count subdirectories on it. */
	st->st_nlink = 1;
	st->st_uid = fi->uid;
	st->st_gid = fi->gid;
	st->st_size = (off_t)fi->size;
	st->st_blocks = (blkcnt_t)((fi->size + 511) / 512);
	/* A large block size makes cp and friends use large buffers. */
	st->st_blksize = 128 * 1024;
	st->st_mtim = st->st_atim = st->st_ctim = fi->mtime;
}

/* ---- commands in the sandbox ----------------------------------------------------- */

/* Runs a shell script in the sandbox (cwd /, LC_ALL=C): its exit code and
 * merged output (malloc'd). Returns 0 when it ran, else a negative errno
 * with err filled; reports nothing. */
int listing_sh_once(const struct listing_ctx *c, const char *script, int *code, char **out,
		    struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	struct sp_box box;
	int rc;

	*out = NULL;
	*code = -1;
	sb_adds(&cmd, FILES_SH_PREFIX);
	sb_adds(&cmd, script);
	if (cmd.oom) {
		sb_free(&cmd);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	c->ops->box(c->mount, c->owner, &box);
	/* Bounded by the mount's request timeout (-o timeout), like every other
	 * request, and in the sandbox too: a command the mount stops waiting
	 * for must not go on changing files (SEMANTICS.md). */
	rc = sp_exec_within(c->sp, &box, sb_str(&cmd), "/", c->timeout_s, code, out, err);
	sb_free(&cmd);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* listing_sh_once, with a failure reported (ops->failed). */
int listing_sh(const struct listing_ctx *c, const char *script, int *code, char **out)
{
	struct sp_error err = { 0 };
	int rc = listing_sh_once(c, script, code, out, &err);

	if (rc < 0)
		return c->ops->failed(c->mount, c->owner, rc, &err, "command for", "a file operation");
	return 0;
}

/* Runs a short command for what the file API cannot do. out (may be NULL)
 * receives its output on success; a failure is the errno its message says. */
int listing_run(const struct listing_ctx *c, const char *script, char **out)
{
	char *output = NULL;
	int code = 0, rc;

	if (out)
		*out = NULL;
	rc = listing_sh(c, script, &code, &output);
	if (rc < 0)
		return rc;
	if (code != 0) {
		rc = errno_from_message(output);
		log_info("%s: '%s' failed (%d): %s", c->name, script, code, output ? output : "");
		free(output);
		return rc;
	}
	if (out)
		*out = output;
	else
		free(output);
	return 0;
}

/* ---- the listing ---------------------------------------------------------------- */

void files_list_script(struct strbuf *cmd, const char *dir, bool hex)
{
	/* DIR/. names the directory itself (%f prints "."), even "/" or a link to a directory. */
	sb_adds(cmd, "d=");
	sh_word(cmd, dir);
	sb_adds(cmd, "/.; find \"$d\" -mindepth 0 -maxdepth 1 -printf '" FIND_FMT "' 2>/dev/null");
	if (hex)
		sb_adds(cmd, " | od -An -v -tx1");
	else
		sb_adds(cmd, " || { r=$?; [ $r -eq 127 ] && exit 127; find \"$d\" -maxdepth 0 -printf '' 2>&1; "
			"exit 97; }");
}

/*
 * A lookup that must list a directory lists, in the same command, the entry
 * it looks up when that is a directory (not a link to one): a walk down a
 * path, or a stat followed by ls or cat of what is inside, then costs one
 * request for two levels. The child's records follow the parent's, framed
 * by the child's own "." record before and after them; the one after is
 * printed only when find listed the whole directory, and a directory of
 * more than CHILD_LINES lines is cut and so not taken (the lines bound what
 * a lookup may cost; listing.h).
 */

static void add_child_script(struct strbuf *cmd, const char *dir, const char *child)
{
	struct strbuf c = STRBUF_INIT;

	sb_adds(&c, dir);
	if (strcmp(dir, "/"))
		sb_addc(&c, '/');
	sb_adds(&c, child);
	sb_adds(cmd, "; c=");
	sh_word(cmd, sb_str(&c));
	sb_adds(cmd, "; [ -d \"$c\" ] && [ ! -L \"$c\" ] && { find \"$c/.\" -mindepth 0 -maxdepth 1 -printf '"
		FIND_FMT "' 2>/dev/null && find \"$c/.\" -maxdepth 0 -printf '" FIND_FMT "'; } | head -n ");
	sb_addf(cmd, "%d", CHILD_LINES);
	if (c.oom)
		cmd->oom = true;
	sb_free(&c);
}

/* Splits the child's records off v (the parent's, "." first, then its
 * entries): into cl when they are complete, else dropped. */
static int split_child(struct find_entry *v, size_t *n, struct child_listing *cl)
{
	size_t i1 = 0, i2 = 0;

	for (size_t i = 1; i < *n; i++) {
		if (strcmp(v[i].name, "."))
			continue;
		if (!i1)
			i1 = i;
		else if (!i2)
			i2 = i;
	}
	if (!i1)
		return 0;
	if (i2 == *n - 1 && S_ISDIR(v[i1].st.st_mode)) {
		size_t cn = i2 - i1 - 1;

		cl->v = calloc(cn ? cn : 1, sizeof(*cl->v));
		if (!cl->v)
			return -ENOMEM;
		memcpy(cl->v, v + i1 + 1, cn * sizeof(*cl->v));
		memset(v + i1 + 1, 0, cn * sizeof(*v));   /* moved */
		cl->n = cn;
		cl->have = true;
		qsort(cl->v, cl->n, sizeof(*cl->v), entry_cmp);
	}
	for (size_t i = i1; i < *n; i++) {
		free(v[i].name);
		free(v[i].link);
	}
	*n = i1;
	return 0;
}

/* Lists dir with find: 0, a negative errno, or -ENOSYS when find cannot do
 * it. With child (may be NULL), cl gets that entry's listing when it is a
 * directory. */
int listing_find(const struct listing_ctx *c, const char *dir, const char *child, struct find_entry **out,
		 size_t *n, struct child_listing *cl)
{
	struct strbuf cmd = STRBUF_INIT;
	char *output = NULL, *raw = NULL;
	const char *buf;
	size_t len;
	int code = 0, rc;

	*out = NULL;
	*n = 0;
	files_list_script(&cmd, dir, false);
	if (child)
		add_child_script(&cmd, dir, child);
	if (cmd.oom) {
		rc = -ENOMEM;
		goto out;
	}
	log_debug("%s: listing %s", c->name, dir);
	rc = listing_sh(c, sb_str(&cmd), &code, &output);
	/* A daemon too old to run a shell (dt_exec) has the file API still. */
	if (rc < 0 && rc != -EOPNOTSUPP)
		goto out;
	if (rc == -EOPNOTSUPP || code == 127) {
		c->ops->mode_set(c->mount, c->owner, LIST_API);
		rc = -ENOSYS;
		goto out;
	}
	buf = output;
	len = strlen(output);
	if (has_replacement_char(output)) {
		/* A name or target is not UTF-8: the same listing again, as hex,
		 * which survives the JSON transport byte for byte (the parent's
		 * alone). */
		child = NULL;
		sb_reset(&cmd);
		files_list_script(&cmd, dir, true);
		free(output);
		output = NULL;
		rc = cmd.oom ? -ENOMEM : listing_sh(c, sb_str(&cmd), &code, &output);
		if (rc < 0)
			goto out;
		if (files_unhex(output, &raw, &len) < 0) {
			rc = -ENOSYS;
			goto out;
		}
		buf = raw;
	}
	rc = files_parse_find(buf, len, out, n);
	if (rc == -EINVAL && child) {
		/* The child's records cut inside a name that holds a newline:
		 * the parent's listing alone, again. */
		free(output);
		free(raw);
		sb_free(&cmd);
		return listing_find(c, dir, NULL, out, n, cl);
	}
	if (rc == 0 && child && *n >= 1)
		rc = split_child(*out, n, cl);
	if (rc == 0 && *n >= 1 && !strcmp((*out)[0].name, ".") && S_ISDIR((*out)[0].st.st_mode)) {
		/* The directory itself first, then its entries (find exits 1 when
		 * an entry vanished while it ran: what it printed stands). */
		free((*out)[0].name);
		free((*out)[0].link);
		memmove(*out, *out + 1, (*n - 1) * sizeof(**out));
		(*n)--;
		qsort(*out, *n, sizeof(**out), entry_cmp);
		rc = 0;
		goto out;
	}
	files_find_free(*out, *n);
	*out = NULL;
	*n = 0;
	if (rc == -ENOMEM)
		goto out;
	rc = code != 0 ? errno_from_message(output) : -EIO;
	if (rc == -EIO) {
		/* Not an error about the directory: this find cannot -printf
		 * (busybox), or something odd. The file API then. */
		log_info("%s: listing %s with find failed (%d): %.200s", c->name, dir, code, output);
		if (strstr(output, "printf") || strstr(output, "nrecognized") || strstr(output, "nknown"))
			c->ops->mode_set(c->mount, c->owner, LIST_API);
		rc = -ENOSYS;
	}
out:
	free(output);
	free(raw);
	sb_free(&cmd);
	return rc;
}

/* ---- changes by command ----------------------------------------------------------- */

/* Appends to a command: print path's attributes in the find format, and
 * succeed even if that fails (the change it follows is what counts). */
void files_add_stat_print(struct strbuf *cmd, const char *path)
{
	sb_adds(cmd, " && { find ");
	sh_word(cmd, path);
	sb_adds(cmd, " -maxdepth 0 -printf '" FIND_FMT "' 2>/dev/null; true; }");
}

/* The attributes a command printed with files_add_stat_print, or false. */
bool parse_printed_stat(const char *out, struct stat *st, char **link)
{
	struct find_entry *v = NULL;
	size_t n = 0;
	bool ok = false;

	if (link)
		*link = NULL;
	if (out && *out && files_parse_find(out, strlen(out), &v, &n) == 0 && n == 1) {
		*st = v[0].st;
		if (link && v[0].link && !has_replacement_char(v[0].link)) {
			*link = v[0].link;
			v[0].link = NULL;
		}
		ok = true;
	}
	files_find_free(v, n);
	return ok;
}

/* What a command that changed path (and printed its attributes) leaves in
 * the cache: the printed attributes, else nothing about path. True when
 * it printed them, copied to *printed (the caller may want the sandbox's ctime). */
bool listing_note_result(const struct listing_ctx *c, const char *path, const char *out,
			 enum cache_change what, struct stat *printed)
{
	struct stat st;
	char *link = NULL;

	if (parse_printed_stat(out, &st, &link)) {
		if (printed)
			*printed = st;
		cache_update(c->cache, c->id, path, what, &st, true);
		if (S_ISLNK(st.st_mode) && link)
			c->ops->link_put(c->mount, c->owner, path, link);
		else
			c->ops->link_drop(c->mount, c->owner, path, false);
		free(link);
		return true;
	}
	cache_invalidate(c->cache, c->id, path);
	c->ops->link_drop(c->mount, c->owner, path, false);
	return false;
}

/*
 * Runs cmd, a change to path (and frees it), followed by the print of
 * path's new attributes where find works, which go to the cache as what.
 * A failure leaves the cache alone: the caller knows what it means there.
 */
int listing_change(const struct listing_ctx *c, struct strbuf *cmd, const char *path,
		   enum cache_change what)
{
	char *out = NULL;
	int rc;

	if (c->ops->mode_get(c->mount, c->owner) != LIST_API)
		files_add_stat_print(cmd, path);
	if (cmd->oom) {
		sb_free(cmd);
		return -ENOMEM;
	}
	rc = listing_run(c, sb_str(cmd), &out);
	sb_free(cmd);
	if (rc == 0)
		listing_note_result(c, path, out, what, NULL);
	else
		/* The command may have run (an answer lost in transit), or the
		 * sandbox knows better (EEXIST): what is cached of the path and
		 * its parent's listing is no longer to be trusted. */
		cache_invalidate_tree(c->cache, c->id, path);
	free(out);
	return rc;
}
