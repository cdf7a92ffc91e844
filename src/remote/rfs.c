/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rfs.c - the file calls a provider may lack, done by command (rfs.h).
 * Vercel has no list, stat, delete or chmod call and no ranged read; every
 * provider runs shell scripts, so these are short scripts.
 */
#include "rfs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "strbuf.h"
#include "urlenc.h"

/* %.9Y: the mtime with its nanoseconds (GNU stat; make compares them) */
#define STAT_FORMAT "'%f %s %u %g %.9Y %n'"

static long limit_s = 60;

void rfs_set_limit(long s)
{
	if (s > 0)
		limit_s = s;
}

int rfs_errno_from_message(const char *msg)
{
	static const struct { const char *text; int err; } map[] = {
		{ "No such file or directory", ENOENT }, { "Not a directory", ENOTDIR },
		{ "Is a directory", EISDIR }, { "Permission denied", EACCES },
		{ "Directory not empty", ENOTEMPTY }, { "Operation not permitted", EPERM },
		{ "Read-only file system", EROFS },
	};

	for (size_t i = 0; msg && i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}

/* Runs script (LC_ALL=C, cwd /): 0 with its output, or the errno. A
 * non-zero exit is the errno its output names. */
static int run(struct sandbox_provider *sp, const struct sp_box *box, const struct strbuf *script,
	       const char *what, const char *path, char **out, struct sp_error *err)
{
	int code = -1, rc;

	*out = NULL;
	if (script->oom)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	rc = sp_exec_within(sp, box, script->buf, "/", limit_s, &code, out, err);
	if (rc < 0)
		return rc;
	if (code != 0) {
		rc = rfs_errno_from_message(*out);
		sp_error_set(err, rc, 0, "%s %s: %.300s", what, path, *out ? *out : "");
		free(*out);
		*out = NULL;
	}
	return rc;
}

int rfs_parse_stat_line(const char *line, size_t len, struct sp_fileinfo *fi)
{
	char buf[160], frac[16] = "";
	unsigned raw, uid, gid;
	unsigned long long size;
	long long mtime;
	long nsec = 0;
	int used = 0, fl = 0;
	size_t head = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;

	memset(fi, 0, sizeof(*fi));
	memcpy(buf, line, head);
	buf[head] = '\0';
	if (sscanf(buf, "%x %llu %u %u %lld%n", &raw, &size, &uid, &gid, &mtime, &used) != 5)
		return -EINVAL;
	/* an optional fraction of a second, up to 9 digits */
	if (buf[used] == '.' && sscanf(buf + used + 1, "%9[0-9]%n", frac, &fl) == 1) {
		used += 1 + fl;
		for (int i = 0; i < 9; i++)
			nsec = nsec * 10 + (i < fl ? frac[i] - '0' : 0);
	}
	if (buf[used] != ' ')
		return -EINVAL;
	used++;
	if ((size_t)used >= len)
		return -EINVAL;
	fi->name = strndup(line + used, len - (size_t)used);
	if (!fi->name)
		return -ENOMEM;
	fi->mode = (mode_t)raw;
	fi->size = size;
	fi->uid = uid;
	fi->gid = gid;
	fi->mtime.tv_sec = (time_t)mtime;
	fi->mtime.tv_nsec = nsec;
	fi->is_dir = S_ISDIR(fi->mode);
	return 0;
}

int rfs_list(struct sandbox_provider *sp, const struct sp_box *box, const char *path, struct sp_fileinfo **out,
	     size_t *n, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	struct sp_fileinfo *v = NULL;
	size_t count = 0, cap = 0;
	char *text = NULL, *p;
	int rc;

	if (sp_has(sp, SP_CAP_FS_LIST))
		return sp_fs_list(sp, box, path, out, n, err);
	*out = NULL;
	*n = 0;
	/* The globs' words that name nothing (no match) are dropped by the
	 * test; stat's own failures (a name gone meanwhile) are not errors. */
	sb_adds(&cmd, "LC_ALL=C; export LC_ALL; d=");
	sh_word(&cmd, path);
	sb_adds(&cmd, "; if [ ! -d \"$d\" ]; then if [ -e \"$d\" ]; then echo 'Not a directory'; "
		"else echo 'No such file or directory'; fi; exit 1; fi; "
		"cd -- \"$d\" 2>/dev/null || { echo 'Permission denied'; exit 1; }; set -- * .[!.]* ..?*; for f do shift; if [ -e \"$f\" ] || [ -L \"$f\" ]; "
		"then set -- \"$@\" \"$f\"; fi; done; [ $# = 0 ] || stat -c " STAT_FORMAT " -- \"$@\" 2>/dev/null; "
		"exit 0");
	rc = run(sp, box, &cmd, "list", path, &text, err);
	sb_free(&cmd);
	if (rc < 0)
		return rc;
	for (p = text; *p;) {
		char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (count == cap) {
			struct sp_fileinfo *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
				break;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		rc = len ? rfs_parse_stat_line(p, len, &v[count]) : -EINVAL;
		if (rc == -ENOMEM) {
			sp_error_set(err, rc, 0, "out of memory");
			break;
		}
		if (rc == 0)
			count++;
		rc = 0;
		p += len + (nl ? 1 : 0);
	}
	free(text);
	if (rc < 0) {
		sp_fileinfo_free(v, count);
		return rc;
	}
	*out = v;
	*n = count;
	return 0;
}

int rfs_info(struct sandbox_provider *sp, const struct sp_box *box, const char *path, struct sp_fileinfo *out,
	     struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *text = NULL;
	const char *slash;
	size_t len;
	int rc;

	if (sp_has(sp, SP_CAP_FS_INFO))
		return sp_fs_info(sp, box, path, out, err);
	sb_adds(&cmd, "LC_ALL=C; export LC_ALL; stat -L -c " STAT_FORMAT " -- ");
	sh_word(&cmd, path);
	sb_adds(&cmd, " 2>&1");
	rc = run(sp, box, &cmd, "stat", path, &text, err);
	sb_free(&cmd);
	if (rc < 0)
		return rc;
	len = strcspn(text, "\n");
	rc = rfs_parse_stat_line(text, len, out);
	free(text);
	if (rc < 0)
		return sp_error_set(err, rc == -ENOMEM ? rc : -EIO, 0, "stat %s: unexpected output", path);
	/* the base name, as the file API gives it */
	slash = strrchr(out->name, '/');
	if (slash && slash[1])
		memmove(out->name, slash + 1, strlen(slash + 1) + 1);
	return 0;
}

/* One program on one path, its error output read back as the errno:
 * `PROGRAM -- PATH` (rm, rmdir, chmod ...) under the C locale, whose
 * messages rfs_errno_from_message knows. */
static int run_on_path(struct sandbox_provider *sp, const struct sp_box *box, const char *program,
		       const char *what, const char *path, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *text = NULL;
	int rc;

	sb_adds(&cmd, "LC_ALL=C; export LC_ALL; ");
	sb_adds(&cmd, program);
	sb_adds(&cmd, " -- ");
	sh_word(&cmd, path);
	sb_adds(&cmd, " 2>&1");
	rc = run(sp, box, &cmd, what, path, &text, err);
	free(text);
	sb_free(&cmd);
	return rc;
}

int rfs_delete(struct sandbox_provider *sp, const struct sp_box *box, const char *path, bool recursive,
	       struct sp_error *err)
{
	if (sp_has(sp, SP_CAP_FS_DELETE))
		return sp_fs_delete(sp, box, path, recursive, err);
	return run_on_path(sp, box, recursive ? "rm -r" : "rm", "delete", path, err);
}

bool rfs_rmdir_needs_check(struct sandbox_provider *sp)
{
	return sp_has(sp, SP_CAP_FS_DELETE);
}

int rfs_rmdir(struct sandbox_provider *sp, const struct sp_box *box, const char *path, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *text = NULL;
	int code = -1, rc;

	sb_adds(&cmd, "LC_ALL=C; export LC_ALL; rmdir -- ");
	sh_word(&cmd, path);
	sb_adds(&cmd, " 2>&1");
	if (cmd.oom) {
		sb_free(&cmd);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	rc = sp_exec_within(sp, box, cmd.buf, "/", limit_s, &code, &text, err);
	sb_free(&cmd);
	if (rc == -EOPNOTSUPP || (rc == 0 && code == 127)) {
		/* no shell, or no rmdir in it */
		free(text);
		return sp_error_set(err, -ENOSYS, 0, "rmdir %s: no command runs in the sandbox", path);
	}
	if (rc == 0 && code != 0) {
		rc = rfs_errno_from_message(text);
		sp_error_set(err, rc, 0, "rmdir %s: %.300s", path, text ? text : "");
	}
	free(text);
	return rc;
}

int rfs_rmdir_by_delete(struct sandbox_provider *sp, const struct sp_box *box, const char *path,
			struct sp_error *err)
{
	return sp_fs_delete(sp, box, path, true, err);
}

int rfs_chmod(struct sandbox_provider *sp, const struct sp_box *box, const char *path, mode_t mode,
	      struct sp_error *err)
{
	char program[32];

	if (sp_has(sp, SP_CAP_FS_CHMOD))
		return sp_fs_chmod(sp, box, path, mode, err);
	snprintf(program, sizeof(program), "chmod %o", (unsigned)(mode & 0777));
	return run_on_path(sp, box, program, "chmod", path, err);
}

int64_t rfs_download(struct sandbox_provider *sp, const struct sp_box *box, const char *path, uint64_t off,
		     uint64_t len, http_sink_fn sink, void *ctx, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT, bytes = STRBUF_INIT;
	char *text = NULL;
	int64_t ret;
	int rc;

	if (sp_has(sp, SP_CAP_RANGED_READ) || off < RFS_RANGE_BY_COMMAND || len == 0)
		return sp_fs_download(sp, box, path, off, len, sink, ctx, err);
	/* Checked first, so that a file we may not read is an error and never
	 * an empty answer (a short read that is not the end). */
	sb_adds(&cmd, "LC_ALL=C; export LC_ALL; f=");
	sh_word(&cmd, path);
	sb_addf(&cmd, "; if [ ! -e \"$f\" ]; then echo 'No such file or directory'; exit 2; fi; "
		"if [ -d \"$f\" ]; then echo 'Is a directory'; exit 21; fi; "
		"if [ ! -r \"$f\" ]; then echo 'Permission denied'; exit 13; fi; "
		"tail -c +%" PRIu64 " -- \"$f\" | head -c %" PRIu64 " | base64", off + 1, len);
	rc = run(sp, box, &cmd, "read", path, &text, err);
	sb_free(&cmd);
	if (rc < 0)
		return rc;
	rc = base64_decode(&bytes, text, strlen(text));
	free(text);
	if (rc < 0) {
		sb_free(&bytes);
		return sp_error_set(err, rc == -ENOMEM ? rc : -EIO, 0, "read %s: the command's output is not base64",
				    path);
	}
	ret = (int64_t)bytes.len;
	if (bytes.len > len) {
		ret = sp_error_set(err, -EIO, 0, "read %s: more bytes than asked for", path);
	} else if (bytes.len) {
		rc = sink(ctx, bytes.buf, bytes.len);
		if (rc < 0)
			ret = sp_error_set(err, rc, 0, "read %s: %s", path, strerror(-rc));
	}
	sb_free(&bytes);
	return ret;
}
