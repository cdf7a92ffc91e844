/* SPDX-License-Identifier: Apache-2.0 */
/*
 * journal.c - the crash journal of staged writes (see journal.h).
 *
 * One small record file per stage, not an append-only log: there is no
 * log to compact and no replay order, a stage's record goes with one
 * unlink, and the records of different files never share a write.
 *
 * A record appears whole: it is written to a temporary file and renamed to
 * its (fresh) name. It is then kept open by the mount and rewritten in
 * place (one pwrite of at most a few KiB at offset 0) when its state or
 * path changes, which costs no metadata update: a rename over the old
 * record would cost one, and on ext4 also starts the writeback of the data
 * (auto_da_alloc), on every close. A pwrite within one page cannot be torn
 * by the death of the process (a fatal signal is only checked between
 * pages), and the format is self-delimiting (a longer old record's tail,
 * not yet truncated, is ignored). A reboot can tear a record: the CRC-32 at
 * its end says so, and a record that does not check is not trusted (its
 * stage goes to unsaved/).
 *
 * Durability, where a promise lies:
 *   - first write of a file: the record (state "open") is written before
 *     the write is acknowledged, without fsync: a dead process loses
 *     nothing that the page cache holds, and a reboot may lose data that no
 *     close or fsync was ever asked to keep (POSIX promises nothing there).
 *   - flush (close, fsync): the record becomes "flushed", with the stage's
 *     size, before the upload, again without fsync: a close or fsync that
 *     returns success has put the data in the sandbox, and one cut short
 *     by a reboot promised nothing. fsync on every close would cost a few
 *     ms a file on a busy disk, for no promise (doc/SEMANTICS.md).
 *   - a failed upload: the close or fsync returns the error and the data
 *     lives only here, so the stage is fsync'd (by the caller), then the
 *     record and the directory: both outlive a reboot from then on.
 *   - after the upload, or once the stage is kept in unsaved/, the record
 *     is removed (no fsync: a record that comes back after a reboot finds
 *     the sandbox file changed by our own upload, and its stage goes to
 *     unsaved/: a copy too many, never a loss nor an overwrite).
 */
#include "journal.h"
#include "strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "daytonafs-journal 1\n"
#define REC_SUFFIX ".rec"
#define TMP_SUFFIX ".rec.tmp"
#define REC_MAX 16384

/* ---- format ---------------------------------------------------------------- */

uint32_t journal_crc32(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t crc = 0xFFFFFFFFu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static void add_string(struct strbuf *sb, const char *key, const char *value)
{
	size_t n = strlen(value);

	sb_addf(sb, "%s %zu:", key, n);
	sb_add(sb, value, n);
	sb_addc(sb, '\n');
}

int journal_format(const struct journal_rec *r, struct strbuf *out)
{
	size_t start = out->len;

	sb_adds(out, MAGIC);
	sb_addf(out, "state %s\n", r->state == JOURNAL_FLUSHED ? "flushed" : "open");
	add_string(out, "sandbox_id", r->sandbox_id);
	add_string(out, "sandbox_name", r->sandbox_name);
	add_string(out, "path", r->path);
	if (r->base.kind == JOURNAL_BASE_NEW)
		sb_adds(out, "base new\n");
	else if (r->base.kind == JOURNAL_BASE_FILE)
		sb_addf(out, "base %" PRIu64 " %lld.%09ld\n", r->base.size, (long long)r->base.mtime.tv_sec,
			r->base.mtime.tv_nsec);
	else
		sb_adds(out, "base unknown\n");
	sb_addf(out, "mode %o\n", r->mode & 07777);
	sb_addf(out, "size %" PRIu64 "\n", r->size);
	sb_addf(out, "time %lld\n", r->time);
	if (out->oom)
		return -ENOMEM;
	sb_addf(out, "crc %08" PRIx32 "\n", journal_crc32(sb_str(out) + start, out->len - start));
	return out->oom ? -ENOMEM : 0;
}

struct cursor {
	const char *p, *end;
};

/* Consumes "KEY " at the cursor. */
static bool take_key(struct cursor *c, const char *key)
{
	size_t n = strlen(key);

	if ((size_t)(c->end - c->p) < n + 1 || memcmp(c->p, key, n) || c->p[n] != ' ')
		return false;
	c->p += n + 1;
	return true;
}

/* The rest of the line (without '\n') into buf, and past the newline. */
static bool take_line(struct cursor *c, char *buf, size_t cap)
{
	const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
	size_t n;

	if (!nl)
		return false;
	n = (size_t)(nl - c->p);
	if (n >= cap || memchr(c->p, '\0', n))
		return false;
	memcpy(buf, c->p, n);
	buf[n] = '\0';
	c->p = nl + 1;
	return true;
}

static bool take_string(struct cursor *c, const char *key, char *out, size_t cap)
{
	unsigned long long n = 0;
	const char *p;

	if (!take_key(c, key))
		return false;
	for (p = c->p; p < c->end && *p >= '0' && *p <= '9' && p - c->p < 6; p++)
		n = n * 10 + (unsigned)(*p - '0');
	if (p == c->p || p >= c->end || *p != ':')
		return false;
	p++;
	if (n >= cap || (size_t)(c->end - p) < n + 1 || p[n] != '\n' || memchr(p, '\0', (size_t)n))
		return false;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	c->p = p + n + 1;
	return true;
}

/* A decimal number that fills the whole of s. */
static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && !*end;
}

static bool parse_base(const char *s, struct journal_base *b)
{
	char size[32], sec[32], nsec[16];
	uint64_t v, sv, nv;

	memset(b, 0, sizeof(*b));
	if (!strcmp(s, "new")) {
		b->kind = JOURNAL_BASE_NEW;
		return true;
	}
	if (!strcmp(s, "unknown"))
		return true;
	if (sscanf(s, "%31[0-9] %31[0-9].%15[0-9]", size, sec, nsec) != 3 || strlen(nsec) != 9)
		return false;
	if (!parse_u64(size, &v) || !parse_u64(sec, &sv) || !parse_u64(nsec, &nv) || sv > INT64_MAX)
		return false;
	b->kind = JOURNAL_BASE_FILE;
	b->size = v;
	b->mtime.tv_sec = (time_t)sv;
	b->mtime.tv_nsec = (long)nv;
	return true;
}

int journal_parse(const char *buf, size_t len, struct journal_rec *r)
{
	struct cursor c = { buf, buf + len };
	char line[128];
	const char *crc_at;
	uint64_t v;
	unsigned mode;

	memset(r, 0, sizeof(*r));
	if (len < strlen(MAGIC) || memcmp(buf, MAGIC, strlen(MAGIC)))
		return -EBADMSG;
	c.p += strlen(MAGIC);
	if (!take_key(&c, "state") || !take_line(&c, line, sizeof(line)))
		return -EBADMSG;
	if (!strcmp(line, "open"))
		r->state = JOURNAL_OPEN;
	else if (!strcmp(line, "flushed"))
		r->state = JOURNAL_FLUSHED;
	else
		return -EBADMSG;
	if (!take_string(&c, "sandbox_id", r->sandbox_id, sizeof(r->sandbox_id)) || !r->sandbox_id[0] ||
	    !take_string(&c, "sandbox_name", r->sandbox_name, sizeof(r->sandbox_name)) ||
	    !take_string(&c, "path", r->path, sizeof(r->path)) || r->path[0] != '/')
		return -EBADMSG;
	if (!take_key(&c, "base") || !take_line(&c, line, sizeof(line)) || !parse_base(line, &r->base))
		return -EBADMSG;
	if (!take_key(&c, "mode") || !take_line(&c, line, sizeof(line)) || sscanf(line, "%o", &mode) != 1 ||
	    mode > 07777)
		return -EBADMSG;
	r->mode = mode;
	if (!take_key(&c, "size") || !take_line(&c, line, sizeof(line)) || !parse_u64(line, &r->size))
		return -EBADMSG;
	if (!take_key(&c, "time") || !take_line(&c, line, sizeof(line)) || !parse_u64(line, &v) || v > INT64_MAX)
		return -EBADMSG;
	r->time = (long long)v;
	crc_at = c.p;
	/* what follows the crc line is the tail of a longer earlier record */
	if (!take_key(&c, "crc") || !take_line(&c, line, sizeof(line)) || strlen(line) != 8)
		return -EBADMSG;
	if (strtoul(line, NULL, 16) != journal_crc32(buf, (size_t)(crc_at - buf)))
		return -EBADMSG;
	return 0;
}

/* ---- decisions ---------------------------------------------------------------- */

static enum journal_action say(enum journal_action a, char *why, size_t cap, const char *text)
{
	if (why && cap)
		str_copy(why, cap, text);
	return a;
}

enum journal_action journal_check_local(const struct journal_rec *r, bool stage_present, uint64_t stage_size,
					char *why, size_t cap)
{
	char text[160];

	if (!stage_present)
		/* uploaded or kept in unsaved/ just before the record's removal,
		 * or a stage never written to */
		return say(JOURNAL_DROP, why, cap, "its staged copy is gone (uploaded or kept earlier)");
	if (!r)
		return say(JOURNAL_UNSAVED, why, cap,
			   "its journal record is damaged, so where it belongs cannot be trusted");
	if (r->state == JOURNAL_OPEN)
		/* A writer that never closed may have been half-way through:
		 * uploading could replace a whole file with a partial one. */
		return say(JOURNAL_UNSAVED, why, cap,
			   "the file was still open for writing (never closed or fsync'd), so it may be incomplete");
	if (stage_size != r->size) {
		snprintf(text, sizeof(text),
			 "its staged copy is incomplete (%" PRIu64 " of %" PRIu64 " bytes: lost in a system crash?)",
			 stage_size, r->size);
		return say(JOURNAL_UNSAVED, why, cap, text);
	}
	if (r->base.kind == JOURNAL_BASE_UNKNOWN)
		return say(JOURNAL_UNSAVED, why, cap,
			   "what the sandbox's file was when read is unknown, so it cannot be checked for changes");
	return say(JOURNAL_ASK, why, cap, "");
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

enum journal_action journal_check_remote(const struct journal_rec *r, const struct journal_remote *remote,
					 char *why, size_t cap)
{
	switch (remote->kind) {
	case JOURNAL_REMOTE_UNAVAILABLE:
		return say(JOURNAL_KEEP, why, cap, "the sandbox is not running or did not answer");
	case JOURNAL_REMOTE_SANDBOX_GONE:
		return say(JOURNAL_UNSAVED, why, cap, "the sandbox no longer exists");
	case JOURNAL_REMOTE_NOT_FILE:
		return say(JOURNAL_UNSAVED, why, cap, "the path is no longer a regular file in the sandbox");
	case JOURNAL_REMOTE_NO_PARENT:
		return say(JOURNAL_UNSAVED, why, cap, "its directory was deleted in the sandbox meanwhile");
	case JOURNAL_REMOTE_ABSENT:
		if (r->base.kind == JOURNAL_BASE_NEW)
			return say(JOURNAL_UPLOAD, why, cap, "");
		return say(JOURNAL_UNSAVED, why, cap, "the file was deleted in the sandbox meanwhile");
	case JOURNAL_REMOTE_FILE:
		break;
	}
	if (r->base.kind == JOURNAL_BASE_NEW)
		return say(JOURNAL_UNSAVED, why, cap, "a file of that name was created in the sandbox meanwhile");
	if (r->base.kind == JOURNAL_BASE_FILE && remote->size == r->base.size &&
	    same_time(&remote->mtime, &r->base.mtime))
		return say(JOURNAL_UPLOAD, why, cap, "");
	return say(JOURNAL_UNSAVED, why, cap, "the sandbox's file changed since it was read (size or mtime differ)");
}

/* ---- files ---------------------------------------------------------------------- */

static char *rec_path(const char *dir, const char *name, const char *suffix)
{
	struct strbuf sb = STRBUF_INIT;

	sb_addf(&sb, "%s/%s%s", dir, name, suffix);
	return sb_detach(&sb);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		r = -errno;
	close(fd);
	return r;
}

static int pwrite_whole(int fd, const char *p, size_t n)
{
	off_t off = 0;

	while (n) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

/* Writes the record at offset 0 of fd and cuts what an earlier, longer
 * one left after it; durable: fsync. */
static int put_record(int fd, const struct journal_rec *r, bool durable)
{
	struct strbuf text = STRBUF_INIT;
	int rc = journal_format(r, &text);

	if (!rc)
		rc = pwrite_whole(fd, sb_str(&text), text.len);
	if (!rc && ftruncate(fd, (off_t)text.len) != 0)
		rc = -errno;
	if (!rc && durable && fsync(fd) != 0)
		rc = -errno;
	sb_free(&text);
	return rc;
}

int journal_create(const char *staging_dir, const char *stage_name, const struct journal_rec *r, bool durable)
{
	char *tmp = rec_path(staging_dir, stage_name, TMP_SUFFIX);
	char *dst = rec_path(staging_dir, stage_name, REC_SUFFIX);
	int fd = -ENOMEM, rc;

	if (!tmp || !dst)
		goto out;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fd = -errno;
		goto out;
	}
	rc = put_record(fd, r, durable);
	if (!rc && rename(tmp, dst) != 0)
		rc = -errno;
	if (!rc && durable)
		rc = fsync_dir(staging_dir);
	if (rc) {
		close(fd);
		unlink(tmp);
		fd = rc;
	}
out:
	free(tmp);
	free(dst);
	return fd;
}

int journal_update(int fd, const char *staging_dir, const struct journal_rec *r, bool durable)
{
	int rc = put_record(fd, r, durable);

	/* the record's name, and the stage's, on disk too */
	if (!rc && durable)
		rc = fsync_dir(staging_dir);
	return rc;
}

int journal_remove(const char *staging_dir, const char *stage_name)
{
	char *p = rec_path(staging_dir, stage_name, REC_SUFFIX);
	int rc = 0;

	if (!p)
		return -ENOMEM;
	if (unlink(p) != 0 && errno != ENOENT)
		rc = -errno;
	free(p);
	return rc;
}

int journal_read(const char *staging_dir, const char *stage_name, struct journal_rec *r)
{
	char *p = rec_path(staging_dir, stage_name, REC_SUFFIX);
	char *buf = NULL;
	ssize_t n = 0;
	int fd, rc;

	if (!p)
		return -ENOMEM;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return -errno;
	buf = malloc(REC_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t got = read(fd, buf + n, (size_t)(REC_MAX - n));

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = got < 0 ? -errno : 0;
			break;
		}
		n += got;
		if (n == REC_MAX) {
			rc = -EBADMSG;   /* no record is this long */
			break;
		}
	}
	close(fd);
	if (!rc)
		rc = journal_parse(buf, (size_t)n, r);
	free(buf);
	return rc;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n > k && !strcmp(s + n - k, suffix);
}

static bool is_stage_name(const char *s)
{
	return !strncmp(s, "stage-", 6) && !strchr(s, '.');
}

static bool name_listed(char **v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], name))
			return true;
	return false;
}

static void remove_in(const char *dir, const char *name)
{
	char *p = rec_path(dir, name, "");

	if (p)
		unlink(p);
	free(p);
}

int journal_scan(const char *staging_dir, char ***names, size_t *n)
{
	DIR *d = opendir(staging_dir);
	struct dirent *de;
	char **v = NULL, **orphans = NULL;
	size_t nv = 0, no = 0;
	int rc = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char ***list;
		size_t *len, keep;
		char **grown;

		if (has_suffix(de->d_name, TMP_SUFFIX)) {
			remove_in(staging_dir, de->d_name);   /* never renamed into place */
			continue;
		}
		if (has_suffix(de->d_name, REC_SUFFIX)) {
			list = &v;
			len = &nv;
			keep = strlen(de->d_name) - strlen(REC_SUFFIX);
		} else if (is_stage_name(de->d_name)) {
			list = &orphans;
			len = &no;
			keep = strlen(de->d_name);
		} else {
			continue;
		}
		grown = realloc(*list, (*len + 1) * sizeof(**list));
		if (!grown) {
			rc = -ENOMEM;
			break;
		}
		*list = grown;
		(*list)[*len] = strndup(de->d_name, keep);
		if (!(*list)[*len]) {
			rc = -ENOMEM;
			break;
		}
		(*len)++;
	}
	closedir(d);
	/* Stages without a record: nothing in them was acknowledged and not
	 * uploaded (journal.h). Removed only when the listing was complete. */
	for (size_t i = 0; i < no; i++) {
		if (!rc && !name_listed(v, nv, orphans[i]))
			remove_in(staging_dir, orphans[i]);
	}
	/* Records without a stage: the stage was uploaded or kept in unsaved/
	 * just before the record's removal. They go now, before this mount
	 * makes stages of its own, which could get the same name. */
	for (size_t i = 0; i < nv && !rc; i++) {
		if (!name_listed(orphans, no, v[i])) {
			char *p = rec_path(staging_dir, v[i], REC_SUFFIX);

			if (p)
				unlink(p);
			free(p);
			free(v[i]);
			v[i--] = v[--nv];
		}
	}
	journal_names_free(orphans, no);
	if (rc) {
		journal_names_free(v, nv);
		return rc;
	}
	*names = v;
	*n = nv;
	return 0;
}

void journal_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

void journal_note(struct strbuf *out, const struct journal_rec *r, const char *stage_name, const char *why,
		  long long now)
{
	char when[64];
	time_t t = (time_t)now;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(when, sizeof(when), "%lld", now);
	sb_adds(out, "daytonafs kept this file here after a crash instead of uploading it.\n");
	sb_addf(out, "why: %s\n", why);
	if (r) {
		sb_addf(out, "sandbox: %s (id %s)\n", r->sandbox_name, r->sandbox_id);
		sb_addf(out, "path: %s\n", r->path);
		if (r->time > 0) {
			char w[64];
			time_t rt = (time_t)r->time;
			struct tm rtm;

			if (gmtime_r(&rt, &rtm) && strftime(w, sizeof(w), "%Y-%m-%d %H:%M:%S UTC", &rtm))
				sb_addf(out, "written: %s\n", w);
		}
	}
	sb_addf(out, "staged as: %s\n", stage_name);
	sb_addf(out, "recovered: %s\n", when);
}
