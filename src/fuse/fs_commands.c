/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_commands.c - the find -printf format that lists a directory with lstat's
 * view, and the changes made by running a command in the sandbox with the
 * attributes printed back.
 * The design of the file proxy is in fs_files_int.h.
 */
#include "fs_files_int.h"

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

#include "journal.h"
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
		v[n].st.st_size = (off_t)(target ? tlen : size);
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

void stat_from_info(const struct dt_fileinfo *fi, struct stat *st)
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

/* After a toolbox error: a stopped sandbox makes the registry re-read it. */
int toolbox_failed(struct dfs *fs, struct sandbox *sb, int rc, const struct dt_error *err,
			  const char *what, const char *path)
{
	if (rc == -EHOSTDOWN) {
		struct dt_error ignored = { 0 };

		sandbox_refresh(fs, sb, &ignored);
		sandbox_set_error(sb, "sandbox '%s' is not running (%s): start it with: echo start > %s/%s/ctl",
				  sb->name, err->message, fs->mountpoint, sb->name);
	} else if (rc != -ENOENT && rc != -EEXIST) {
		sandbox_set_error(sb, "%s %s: %s", what, path, err->message);
	}
	return rc;
}

/* Runs a shell script in the sandbox (cwd /, LC_ALL=C): its exit code and
 * merged output (malloc'd). Returns 0 when it ran, else a negative errno
 * with err filled; reports nothing. */
int sandbox_sh_once(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out,
			   struct dt_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	struct dt_box box;
	int rc;

	*out = NULL;
	*code = -1;
	sb_adds(&cmd, FILES_SH_PREFIX);
	sb_adds(&cmd, script);
	if (cmd.oom) {
		sb_free(&cmd);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	sandbox_box(sb, &box);
	/* Bounded by the mount's request timeout (-o timeout), like every other
	 * request, and in the sandbox too: a command the mount stops waiting
	 * for must not go on changing files (SEMANTICS.md). */
	rc = sp_exec_within(fs->sp, &box, sb_str(&cmd), "/", fs->opt.timeout_s, code, out, err);
	sb_free(&cmd);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* sandbox_sh_once, with a failure reported (toolbox_failed). */
int sandbox_sh(struct dfs *fs, struct sandbox *sb, const char *script, int *code, char **out)
{
	struct dt_error err = { 0 };
	int rc = sandbox_sh_once(fs, sb, script, code, out, &err);

	if (rc < 0)
		return toolbox_failed(fs, sb, rc, &err, "command for", "a file operation");
	return 0;
}

/* Runs a short command for what the file API cannot do. out (may be NULL)
 * receives its output on success; a failure is the errno its message says. */
int run_fs_command(struct dfs *fs, struct sandbox *sb, const char *script, char **out)
{
	char *output = NULL;
	int code = 0, rc;

	if (out)
		*out = NULL;
	rc = sandbox_sh(fs, sb, script, &code, &output);
	if (rc < 0)
		return rc;
	if (code != 0) {
		rc = errno_from_message(output);
		log_info("%s: '%s' failed (%d): %s", sb->name, script, code, output ? output : "");
		free(output);
		return rc;
	}
	if (out)
		*out = output;
	else
		free(output);
	return 0;
}

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
 * the cache: the printed attributes, else nothing about path. */
void note_command_result(struct dfs *fs, struct sandbox *sb, const char *path, const char *out,
				enum cache_change what)
{
	struct stat st;
	char *link = NULL;

	if (parse_printed_stat(out, &st, &link)) {
		cache_update(fs->cache, sb->id, path, what, &st, true);
		if (S_ISLNK(st.st_mode) && link)
			link_put(fs, sb, path, link);
		else
			link_drop(fs, sb, path, false);
		free(link);
	} else {
		cache_invalidate(fs->cache, sb->id, path);
		link_drop(fs, sb, path, false);
	}
}

/*
 * Runs cmd, a change to path (and frees it), followed by the print of
 * path's new attributes where find works, which go to the cache as what.
 * A failure leaves the cache alone: the caller knows what it means there.
 */
int change_by_command(struct dfs *fs, struct sandbox *sb, struct strbuf *cmd, const char *path,
			     enum cache_change what)
{
	char *out = NULL;
	int rc;

	if (list_mode_get(fs, sb) != LIST_API)
		files_add_stat_print(cmd, path);
	if (cmd->oom) {
		sb_free(cmd);
		return -ENOMEM;
	}
	rc = run_fs_command(fs, sb, sb_str(cmd), &out);
	sb_free(cmd);
	if (rc == 0)
		note_command_result(fs, sb, path, out, what);
	else
		/* The command may have run (an answer lost in transit), or the
		 * sandbox knows better (EEXIST): what is cached of the path and
		 * its parent's listing is no longer to be trusted. */
		cache_invalidate_tree(fs->cache, sb->id, path);
	free(out);
	return rc;
}

bool split_path(const char *path, char *parent, size_t cap, const char **base)
{
	return path_split(path, parent, cap, base) && **base;
}
