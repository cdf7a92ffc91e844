/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stage.c - local staging files for writes (see stage.h).
 *
 * Each stage is a named file CACHE_DIR/staging/stage-XXXXXX (mkostemp:
 * mode 0600, O_CLOEXEC so no command we spawn inherits it). It is named,
 * not O_TMPFILE, so that it can be moved into CACHE_DIR/unsaved/ when its
 * upload failed, and so that a crash leaves the data on disk.
 *
 * The area keeps a list of its live stages: stage_area_close removes the
 * files of stages never freed, and only those (what a dead mount left there
 * is for the crash recovery, journal.h).
 *
 * One mount per cache directory: the area holds an flock on dir/lock (an
 * open file description the daemon's fork keeps, O_CLOEXEC so that no
 * command we spawn holds it), and a second mount is refused rather than
 * given a share: recovery must know that every stage it finds belongs to a
 * mount that is dead.
 */
#include "stage.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct stage_area {
	char *dir;
	char *staging;
	char *unsaved;
	pthread_mutex_t lock;
	struct stage *live;          /* stages whose file is in staging/ */
	int lock_fd;                 /* dir/lock, flock'ed while the area is open */
};

struct stage {
	struct stage_area *a;        /* NULL once detached (preserved, or the area closed) */
	struct stage *prev, *next;   /* in a->live */
	int fd;
	char *path;                  /* the staging file; NULL once detached */
	uint64_t size;               /* atomic: concurrent pwrites may extend it */
};

/* Keeps the longest preserved name (label, time, counter) within NAME_MAX. */
#define LABEL_HEAD 80
#define LABEL_TAIL 120

/* ---------------------------------------------------------------- area */

static int mkdir_one(const char *path)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Opens and locks dir/lock; the descriptor, -EBUSY when another process
 * holds it, or another -errno. */
static int lock_dir(const char *dir)
{
	char *p = NULL;
	int fd;

	if (asprintf(&p, "%s/lock", dir) < 0)
		return -ENOMEM;
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(p);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return fd;
}

/* mkdir -p, each missing level with mode 0700. */
static int mkdir_p(const char *path)
{
	char *p = strdup(path);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		r = mkdir_one(p);
		*s = '/';
		if (r)
			goto out;
	}
	r = mkdir_one(p);
out:
	free(p);
	return r;
}

static char *path_join(const char *dir, const char *name)
{
	struct strbuf sb = STRBUF_INIT;

	sb_adds(&sb, dir);
	if (sb.len && sb_str(&sb)[sb.len - 1] != '/')
		sb_addc(&sb, '/');
	sb_adds(&sb, name);
	return sb_detach(&sb);
}

struct stage_area *stage_area_open(const char *cache_dir)
{
	struct stage_area *a;
	int r = -ENOMEM;

	if (!cache_dir || !*cache_dir) {
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		goto fail;
	a->lock_fd = -1;
	a->dir = strdup(cache_dir);
	a->staging = path_join(cache_dir, "staging");
	a->unsaved = path_join(cache_dir, "unsaved");
	if (!a->dir || !a->staging || !a->unsaved)
		goto fail;
	r = mkdir_p(a->dir);
	if (!r) {
		a->lock_fd = lock_dir(a->dir);
		if (a->lock_fd < 0)
			r = a->lock_fd;
	}
	if (!r)
		r = mkdir_one(a->staging);
	if (!r)
		r = mkdir_one(a->unsaved);
	if (r)
		goto fail;
	r = -pthread_mutex_init(&a->lock, NULL);
	if (r)
		goto fail;
	return a;
fail:
	if (a) {
		if (a->lock_fd >= 0)
			close(a->lock_fd);
		free(a->dir);
		free(a->staging);
		free(a->unsaved);
		free(a);
	}
	errno = -r;
	return NULL;
}

static void area_unlink_stage(struct stage_area *a, struct stage *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		a->live = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

void stage_area_close(struct stage_area *a)
{
	unsigned n = 0;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	while (a->live) {
		struct stage *s = a->live;

		area_unlink_stage(a, s);
		if (s->path && unlink(s->path) != 0 && errno != ENOENT)
			log_warn("staging: cannot remove %s: %s", s->path, strerror(errno));
		free(s->path);
		s->path = NULL;
		s->a = NULL;   /* stage_free now only closes */
		n++;
	}
	pthread_mutex_unlock(&a->lock);
	if (n)
		log_warn("staging: removed %u staging file(s) still open at unmount", n);
	pthread_mutex_destroy(&a->lock);
	if (a->lock_fd >= 0)
		close(a->lock_fd);   /* releases the flock */
	free(a->dir);
	free(a->staging);
	free(a->unsaved);
	free(a);
}

const char *stage_area_dir(const struct stage_area *a)
{
	return a->dir;
}

const char *stage_area_staging(const struct stage_area *a)
{
	return a->staging;
}

/* --------------------------------------------------------------- stages */

static void area_add(struct stage_area *a, struct stage *s)
{
	s->a = a;
	pthread_mutex_lock(&a->lock);
	s->next = a->live;
	if (a->live)
		a->live->prev = s;
	a->live = s;
	pthread_mutex_unlock(&a->lock);
}

int stage_new(struct stage_area *a, struct stage **out)
{
	struct stage *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->path = path_join(a->staging, "stage-XXXXXX");
	if (!s->path) {
		free(s);
		return -ENOMEM;
	}
	s->fd = mkostemp(s->path, O_CLOEXEC);   /* mode 0600 */
	if (s->fd < 0) {
		int e = errno;

		log_error("staging: cannot create a file in %s: %s", a->staging, strerror(e));
		free(s->path);
		free(s);
		return -e;
	}
	area_add(a, s);
	*out = s;
	return 0;
}

/* Takes s out of its area's list (the file is then no longer the area's). */
static void detach(struct stage *s)
{
	struct stage_area *a = s->a;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	/* the area may have been closed meanwhile, under its lock */
	if (s->a) {
		area_unlink_stage(a, s);
		s->a = NULL;
	}
	pthread_mutex_unlock(&a->lock);
}

int stage_copy(struct stage_area *a, struct stage *src, uint64_t len, struct stage **out)
{
	char buf[65536];
	struct stage *c = NULL;
	uint64_t off = 0;
	int rc = stage_new(a, &c);

	while (rc == 0 && off < len) {
		size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
		ssize_t got = stage_pread(src, buf, want, off);

		if (got <= 0)
			rc = got < 0 ? (int)got : -EIO;   /* shorter than len */
		else if (stage_pwrite(c, buf, (size_t)got, off) != got)
			rc = -EIO;
		else
			off += (uint64_t)got;
	}
	if (rc < 0) {
		stage_free(c);
		c = NULL;
	}
	*out = c;
	return rc;
}

void stage_free(struct stage *s)
{
	if (!s)
		return;
	detach(s);
	if (s->path && unlink(s->path) != 0 && errno != ENOENT)
		log_warn("staging: cannot remove %s: %s", s->path, strerror(errno));
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s);
}

int stage_adopt(struct stage_area *a, const char *name, struct stage **out)
{
	struct stage *s = calloc(1, sizeof(*s));
	struct stat st;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->path = path_join(a->staging, name);
	if (!s->path) {
		free(s);
		return -ENOMEM;
	}
	s->fd = open(s->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (s->fd < 0 || fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int e = s->fd < 0 ? errno : EINVAL;

		if (s->fd >= 0)
			close(s->fd);
		free(s->path);
		free(s);
		return -e;
	}
	s->size = (uint64_t)st.st_size;
	area_add(a, s);
	*out = s;
	return 0;
}

void stage_close_keep(struct stage *s)
{
	if (!s)
		return;
	detach(s);
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s);
}

const char *stage_name(const struct stage *s)
{
	const char *slash;

	if (!s->path)
		return "";
	slash = strrchr(s->path, '/');
	return slash ? slash + 1 : s->path;
}

int stage_sync(struct stage *s)
{
	return fsync(s->fd) == 0 ? 0 : -errno;
}

int stage_fd(const struct stage *s)
{
	return s->fd;
}

uint64_t stage_size(const struct stage *s)
{
	return __atomic_load_n(&s->size, __ATOMIC_ACQUIRE);
}

static void size_at_least(struct stage *s, uint64_t end)
{
	uint64_t cur = __atomic_load_n(&s->size, __ATOMIC_ACQUIRE);

	while (cur < end &&
	       !__atomic_compare_exchange_n(&s->size, &cur, end, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

/* Reads up to size bytes at off, through short reads and EINTR; stops at
 * EOF. Returns the count, or -errno when nothing could be read. */
static ssize_t read_all(int fd, void *buf, size_t size, uint64_t off)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = pread(fd, (char *)buf + done, size - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Writes size bytes at off, through short writes and EINTR. Returns 0 or
 * -errno; *done is what was written either way. */
static int write_all(int fd, const void *buf, size_t size, uint64_t off, size_t *done)
{
	*done = 0;
	while (*done < size) {
		ssize_t n = pwrite(fd, (const char *)buf + *done, size - *done, (off_t)(off + *done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;   /* no progress and no error: do not spin */
		*done += (size_t)n;
	}
	return 0;
}

ssize_t stage_pread(struct stage *s, void *buf, size_t size, uint64_t off)
{
	if (off > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (size > SSIZE_MAX)
		size = SSIZE_MAX;
	if (size > (uint64_t)INT64_MAX - off)
		size = (size_t)((uint64_t)INT64_MAX - off);
	return read_all(s->fd, buf, size, off);
}

ssize_t stage_pwrite(struct stage *s, const void *buf, size_t size, uint64_t off)
{
	size_t done;
	int r;

	if (size > SSIZE_MAX)
		size = SSIZE_MAX;
	if (off > (uint64_t)INT64_MAX || size > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	r = write_all(s->fd, buf, size, off, &done);
	if (done)
		size_at_least(s, off + done);
	/* as write(2): a partial count when something was written */
	return done ? (ssize_t)done : r;
}

int stage_truncate(struct stage *s, uint64_t size)
{
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	while (ftruncate(s->fd, (off_t)size) != 0)
		if (errno != EINTR)
			return -errno;
	__atomic_store_n(&s->size, size, __ATOMIC_RELEASE);
	return 0;
}

int stage_append(struct stage *s, const void *buf, size_t size)
{
	uint64_t off = stage_size(s);
	size_t done;
	int r;

	if (off > (uint64_t)INT64_MAX || size > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	r = write_all(s->fd, buf, size, off, &done);
	if (done)
		size_at_least(s, off + done);
	return r;
}

/* ------------------------------------------------------------- preserve */

static size_t enc_width(char c)
{
	return c == '/' ? 3 : 1;
}

static void enc_range(struct strbuf *sb, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '/')
			sb_adds(sb, "%2F");
		else if (c < 0x20 || c == 0x7f)
			sb_addc(sb, '_');   /* a file name the user can type */
		else
			sb_addc(sb, (char)c);
	}
}

static bool utf8_cont(const char *s, size_t i)
{
	return ((unsigned char)s[i] & 0xC0) == 0x80;
}

/*
 * The label as a file name: '/' as "%2F", control bytes as '_'. A long
 * label keeps its head (the sandbox) and its tail (the file name) around
 * "...", cut on UTF-8 character boundaries, so the name fits NAME_MAX.
 */
static void encode_label(struct strbuf *sb, const char *label)
{
	size_t n = strlen(label), w = 0, head = 0, tail = n;

	for (size_t i = 0; i < n; i++)
		w += enc_width(label[i]);
	if (!n) {
		sb_adds(sb, "unnamed");
		return;
	}
	if (w <= LABEL_HEAD + LABEL_TAIL) {
		enc_range(sb, label, n);
		return;
	}
	for (w = 0; head < n && w + enc_width(label[head]) <= LABEL_HEAD; head++)
		w += enc_width(label[head]);
	while (head > 0 && utf8_cont(label, head))
		head--;
	for (w = 0; tail > head && w + enc_width(label[tail - 1]) <= LABEL_TAIL; tail--)
		w += enc_width(label[tail - 1]);
	while (tail < n && utf8_cont(label, tail))
		tail++;
	enc_range(sb, label, head);
	sb_adds(sb, "...");
	enc_range(sb, label + tail, n - tail);
}

/* Copies the stage into a new file at target (O_EXCL). Returns its
 * descriptor (open for reading and writing), -EEXIST, or another -errno. */
static int copy_to(struct stage *s, const char *target)
{
	char buf[65536];
	uint64_t off = 0;
	int fd, r = 0;

	fd = open(target, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read_all(s->fd, buf, sizeof(buf), off);
		size_t done;

		if (n < 0) {
			r = (int)n;
			break;
		}
		if (n == 0)
			break;
		r = write_all(fd, buf, (size_t)n, off, &done);
		if (r)
			break;
		off += (uint64_t)n;
	}
	/* a sparse tail (truncate beyond the data) is part of the content */
	if (!r && ftruncate(fd, (off_t)stage_size(s)) != 0)
		r = -errno;
	if (!r && fsync(fd) != 0)
		r = -errno;
	if (r) {
		close(fd);
		unlink(target);
		return r;
	}
	return fd;
}

/*
 * Moves (or copies) the staging file to target without ever replacing an
 * existing file. Returns 0 with *newfd -1 when moved (s->fd still names
 * the file), 0 with *newfd the copy's descriptor when copied, -EEXIST when
 * target exists, or another -errno.
 */
static int place(struct stage *s, const char *target, int *newfd)
{
	int fd;

	*newfd = -1;
	if (renameat2(AT_FDCWD, s->path, AT_FDCWD, target, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST)
		return -EEXIST;
	/* RENAME_NOREPLACE unsupported here: link() does not replace either */
	if (errno == EINVAL || errno == ENOSYS) {
		if (link(s->path, target) == 0) {
			unlink(s->path);
			return 0;
		}
		if (errno == EEXIST)
			return -EEXIST;
	}
	/* EXDEV (unsaved/ on another filesystem), EPERM, ...: copy */
	fd = copy_to(s, target);
	if (fd < 0)
		return fd;
	*newfd = fd;
	return 0;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int stage_preserve(struct stage *s, const char *label, char *out, size_t cap)
{
	struct stage_area *a = s->a;
	struct strbuf base = STRBUF_INIT, target = STRBUF_INIT;
	long long now = (long long)time(NULL);
	int r = -EEXIST, newfd = -1;

	if (!a || !s->path)
		return -EINVAL;   /* already preserved, or the area is gone */
	if (fsync(s->fd) != 0)
		log_warn("staging: fsync of %s: %s", s->path, strerror(errno));
	sb_adds(&base, a->unsaved);
	sb_addc(&base, '/');
	encode_label(&base, label ? label : "");
	sb_addf(&base, ".%lld", now);
	if (base.oom) {
		r = -ENOMEM;
		goto out;
	}
	/* name.TIME, then name.TIME.1, .2 ... : never overwrite an earlier save */
	for (int i = 0; i < 1000 && r == -EEXIST; i++) {
		sb_reset(&target);
		sb_adds(&target, sb_str(&base));
		if (i)
			sb_addf(&target, ".%d", i);
		if (target.oom) {
			r = -ENOMEM;
			goto out;
		}
		r = place(s, sb_str(&target), &newfd);
	}
	if (r < 0) {
		/* the name, not the raw label: it is safe to print */
		log_error("staging: cannot keep unsaved data as %s (it stays in %s): %s", sb_str(&base),
			  s->path, strerror(-r));
		goto out;
	}
	if (newfd >= 0) {
		/* copied: the stage now reads and writes the copy */
		unlink(s->path);
		close(s->fd);
		s->fd = newfd;
	}
	sync_dir(a->unsaved);
	detach(s);
	free(s->path);
	s->path = NULL;
	log_warn("unsaved data kept in %s", sb_str(&target));
	if (out && cap)
		str_copy(out, cap, sb_str(&target));
out:
	sb_free(&base);
	sb_free(&target);
	return r;
}
