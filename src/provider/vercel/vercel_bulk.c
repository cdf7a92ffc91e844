/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_bulk.c - many files in one request on Vercel (vercel_bulk.h).
 *
 * Vercel's API reads one file per fs/read and writes a tar per fs/write,
 * and every upload must then be copied into place by a command (a tar
 * extraction replaces the file; see vercel_provider.c). A command is one
 * request whatever it does, and the provider's exec brings its output back
 * exact. So:
 *
 *  - bulk download: one command puts the files in a tar and prints it
 *    (see bulk_head below).
 *  - upload of several files: one command that carries each file's bytes
 *    (base64 in a here-document), decodes them into a temporary file, checks
 *    the length, and copies them into place with cat, as files_upload_fd
 *    does after a single upload (the owner's write bit for a file made
 *    read-only meanwhile, then its mode back); one line "R ERRNO MESSAGE"
 *    per file. A command over the exec operation's argument limit is sent as
 *    a file first (the provider does that), two requests instead of one.
 */
#include "vercel_bulk.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"
#include "tmpname.h"
#include "urlenc.h"

/* The commands' limit: a batch is a few MiB at most (the mount's caps). */
#define BULK_TIMEOUT_S 120

/*
 * The bulk read: find keeps the regular files of at most max bytes, tar
 * puts them in one archive (GNU tar: a few processes for the whole batch,
 * not a few per file), and base64 prints it (the exec output is a string:
 * a tar has NUL bytes). A file tar finds changed while it read it (it pads
 * a file that shrank with zeros) voids the whole answer ("X"): the readers
 * then read as usual. A file missing from the archive (gone, unreadable,
 * not regular, too large) gets -ENOENT: the reader's own download then
 * says what it is.
 */
static const char bulk_head[] =
	"LC_ALL=C; export LC_ALL\n"
	"command -v tar >/dev/null 2>&1 || exit 126\n"
	"t=$(mktemp /tmp/.daytonafs/out/bulk.XXXXXXXX) || exit 125\n"
	"find";
static const char bulk_tail[] =
	" -print0 2>/dev/null | tar --null --no-recursion -T - -cf \"$t\" 2>\"$t.err\"\n"
	"if grep -q 'shrank\\|changed as we read' \"$t.err\"; then echo X; else base64 < \"$t\"; fi\n"
	"rm -f \"$t\" \"$t.err\"\n";

#define TAR_BLOCK 512

static uint64_t octal(const unsigned char *f, size_t n, bool *ok)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < n && f[i] == ' ')
		i++;
	if (i == n || f[i] < '0' || f[i] > '7') {
		*ok = false;
		return 0;
	}
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v > (UINT64_MAX >> 3)) {
			*ok = false;
			return 0;
		}
		v = (v << 3) | (uint64_t)(f[i] - '0');
	}
	if (i < n && f[i] != ' ' && f[i] != '\0')
		*ok = false;
	return v;
}

static bool header_ok(const unsigned char *h)
{
	bool ok = true;
	uint64_t sum = 0, want = octal(h + 148, 8, &ok);

	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	return ok && sum == want;
}

/* The "path" record of a PAX extended header, malloc'd, or NULL. */
static char *pax_path(const char *d, size_t n)
{
	size_t off = 0;

	while (off < n) {
		char *end;
		unsigned long len = strtoul(d + off, &end, 10);
		const char *kv = end + 1;

		if (end == d + off || *end != ' ' || len == 0 || len > n - off)
			return NULL;
		if ((size_t)(d + off + len - kv) > 5 && !strncmp(kv, "path=", 5))
			return strndup(kv + 5, (size_t)(d + off + len - 1 - (kv + 5)));
		off += len;
	}
	return NULL;
}

static struct sp_bulk_file *find_file(struct sp_bulk_file *files, size_t n, const char *name)
{
	while (*name == '/')
		name++;
	for (size_t i = 0; i < n; i++) {
		const char *p = files[i].path;

		while (*p == '/')
			p++;
		if (!strcmp(p, name))
			return &files[i];
	}
	return NULL;
}

int vercel_bulk_parse(const char *out, struct sp_bulk_file *files, size_t n)
{
	struct strbuf tar = STRBUF_INIT;
	const unsigned char *b;
	char *longname = NULL;
	size_t pos = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		files[i].err = -ENOENT;
		files[i].data = NULL;
		files[i].len = 0;
	}
	if (!strcmp(out, "X\n"))
		return -EAGAIN;
	rc = base64_decode(&tar, out, strlen(out));
	if (rc < 0 || tar.oom) {
		sb_free(&tar);
		return rc == -ENOMEM || tar.oom ? -ENOMEM : -EIO;
	}
	b = (const unsigned char *)tar.buf;
	rc = -EIO;   /* until the end-of-archive block */
	while (pos + TAR_BLOCK <= tar.len) {
		const unsigned char *h = b + pos;
		bool ok = true, zero = true;
		uint64_t size;
		size_t data, padded;
		char type, name[257];

		for (size_t i = 0; i < TAR_BLOCK && zero; i++)
			zero = h[i] == 0;
		if (zero) {
			rc = 0;
			break;
		}
		if (!header_ok(h))
			break;
		size = octal(h + 124, 12, &ok);
		data = pos + TAR_BLOCK;
		if (!ok || size > tar.len - data)
			break;
		padded = (size_t)((size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK);
		if (padded > tar.len - data)
			break;
		type = (char)h[156];
		if (type == 'L' || type == 'x') {
			free(longname);
			longname = type == 'L' ? strndup((const char *)b + data, (size_t)size)
					       : pax_path((const char *)b + data, (size_t)size);
			if (!longname)
				break;
		} else {
			if (type == '0' || type == '\0') {
				struct sp_bulk_file *f;

				if (longname) {
					f = find_file(files, n, longname);
				} else {
					/* ustar's prefix, in the POSIX format only (GNU's
					 * own uses those bytes for other things) */
					if (!memcmp(h + 257, "ustar\0", 6) && h[345])
						snprintf(name, sizeof(name), "%.155s/%.100s", (const char *)h + 345,
							 (const char *)h + 0);
					else
						snprintf(name, sizeof(name), "%.100s", (const char *)h);
					f = find_file(files, n, name);
				}
				if (f && f->err == -ENOENT) {
					if (size > f->max) {
						f->err = -EFBIG;
					} else {
						f->err = 0;
						f->len = (size_t)size;
						if (size) {
							f->data = malloc((size_t)size);
							if (!f->data) {
								rc = -ENOMEM;
								break;
							}
							memcpy(f->data, b + data, (size_t)size);
						}
					}
				}
			}
			free(longname);
			longname = NULL;
		}
		pos = data + padded;
	}
	free(longname);
	sb_free(&tar);
	if (rc < 0)
		sp_bulk_files_clear(files, n);
	return rc;
}

int vercel_bulk_download(vercel_exec_fn exec, void *impl, const struct sp_box *box, struct sp_bulk_file *files,
			 size_t n, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	size_t max = 0;
	char *out = NULL;
	int rc, status = -1;

	for (size_t i = 0; i < n; i++) {
		files[i].err = -EIO;
		files[i].data = NULL;
		files[i].len = 0;
		if (files[i].max > max)
			max = files[i].max;
	}
	sb_adds(&cmd, bulk_head);
	for (size_t i = 0; i < n; i++) {
		if (files[i].path[0] != '/') {
			sb_free(&cmd);
			return sp_error_set(err, -EINVAL, 0, "bulk read of a relative path %s", files[i].path);
		}
		sb_adds(&cmd, " ");
		sh_word(&cmd, files[i].path);
	}
	/* -size -Nc: fewer than N bytes */
	sb_addf(&cmd, " -maxdepth 0 -type f -size -%zuc", max + 1);
	sb_adds(&cmd, bulk_tail);
	if (cmd.oom) {
		sb_free(&cmd);
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	rc = exec(impl, box, sb_str(&cmd), NULL, NULL, 0, BULK_TIMEOUT_S, &status, &out, err);
	sb_free(&cmd);
	if (rc < 0)
		return rc;
	if (status == 126) {
		/* no tar in the sandbox: the prefetch stops asking */
		rc = sp_error_set(err, -EOPNOTSUPP, 0, "the sandbox has no tar for bulk reads");
	} else if (status != 0) {
		rc = sp_error_set(err, -EIO, 0, "the bulk read's command ended with %d: %.200s", status,
				  out ? out : "");
	} else {
		rc = vercel_bulk_parse(out ? out : "", files, n);
		if (rc == -EAGAIN)
			sp_error_set(err, -EIO, 0, "a file changed while the bulk read read it");
		else if (rc < 0)
			sp_error_set(err, rc, 0, rc == -ENOMEM ? "out of memory" :
				     "the bulk read's command printed something else than a tar");
		if (rc == -EAGAIN)
			rc = -EIO;
	}
	free(out);
	return rc;
}

/* ---- uploads -------------------------------------------------------------------- */

/* How long an upload's script waits for another's lock, in seconds (well
 * under BULK_TIMEOUT_S): an upload writes local bytes, so a wait this long
 * means one hung; the upload then fails with EIO and is sent again later. */
#define UP_LOCK_WAIT_S "60"

/*
 * Why uploads are numbered. A send of the upload command that failed for a
 * blip is sent again (vercel_upload_many) while the first may still run in
 * the sandbox, or start late: that first send must never write its bytes
 * over what this mount did to the path since (a later upload, a delete, a
 * rename, a large file's copy into place). So:
 *
 * - one upload writes at a time: a lock (flock(1) on a file of the state
 *   directory; the kernel drops it when its holder dies) taken for the whole
 *   script, so the chmod u+w ... chmod MODE of a read-only file never
 *   interleaves with another's (which would leave it writable for good), and
 *   the check of a path's record below and the write after it are one step;
 * - each upload of this mount has a number from a counter of the process
 *   (upload_seq; the same in each send of one upload), and each mount an id
 *   of 64 random bits (mount_id, made when the process starts; not a
 *   secret). A path's record, one file per mount and path (named by the id
 *   and a hash of the path; it holds the path in hex, so that a hash another
 *   path shares is never taken for ours), says the last number of this mount
 *   done to the path: written only after the bytes landed, or by a fence
 *   (below). A send whose number is not above it is a late duplicate of a
 *   send that already wrote, or older than a change the mount made since: it
 *   writes nothing (R 0 after a write that landed: the bytes it carries
 *   are there, or newer ones of this mount; R 116 after a fence: the mount
 *   had given up on that upload);
 * - a fence: when an upload ends without knowing that every file landed (a
 *   reset, an error), a send of it may still run late. Its paths are then
 *   recorded with its number by the mount's next command to that sandbox,
 *   whatever that command is (vercel_upload_fence, put before the script by
 *   the provider's exec), under the same lock and before that command does
 *   anything. Every change this mount makes to a path after such an upload
 *   is a command that starts after it ended: a delete, a rename, a large
 *   file's copy (fs_write.c), a symlink, the next upload. Each thus finds
 *   the record in place, and a late send that runs after it writes nothing.
 *   A late send that runs before it writes the bytes the mount had sent,
 *   and the change then comes after them, as the mount ordered.
 *
 * Only this mount's own numbers are compared: clocks of different hosts are
 * never ordered, and between mounts the last write wins, as on Daytona. A
 * send from another mount (or from this one before a restart: another id)
 * is never skipped for our record.
 *
 * Without flock(1) in the sandbox the numbers are still checked, but the
 * check and the write are no longer one step: a send that checked just
 * before a fence may still write just after it.
 */

/* Sets s to the state directory of uploads and takes its lock on fd 9, held
 * until the shell ends; else exits 124 with a message. Where the shared
 * directory or its lock belongs to another user of the sandbox (its files are
 * then not ours to write; /tmp/.daytonafs may be theirs too), this user's
 * own directory in /tmp instead: a user's uploads are ordered among
 * themselves; between users, as between mounts, the last write wins (and
 * the chmod u+w of a read-only file, its owner's only, keeps its lock). */
#define UP_STATE_SH \
	"s=/tmp/.daytonafs/out/up-seq\n" \
	"[ -d \"$s\" ] || mkdir -p \"$s\" 2>/dev/null\n" \
	"if [ ! -w \"$s\" ] || { [ -e \"$s/lock\" ] && [ ! -w \"$s/lock\" ]; }; then\n" \
	"  s=/tmp/.daytonafs-up-seq.$(id -u); [ -d \"$s\" ] || mkdir -m 700 \"$s\" 2>/dev/null; fi\n" \
	"[ -w \"$s\" ] || { echo \"daytonafs: the upload state directory $s is not writable\"; exit 124; }\n" \
	"if command -v flock >/dev/null 2>&1; then\n" \
	"  { command exec 9>>\"$s/lock\"; } 2>/dev/null || { echo \"daytonafs: cannot open the upload lock $s/lock\"; exit 124; }\n" \
	"  flock -w " UP_LOCK_WAIT_S " 9 || { echo 'daytonafs: the upload lock stayed taken " UP_LOCK_WAIT_S " s'; exit 124; }\n" \
	"fi\n"

/* w PATH LEN SEQ KEY HEX <<DATA: one file (i, the mount's id, is set by the
 * caller; the record file is $s/$i-KEY). */
static const char upload_fn[] =
	"LC_ALL=C; export LC_ALL\n"
	UP_STATE_SH
	"t=$(mktemp /tmp/.daytonafs/out/up.XXXXXXXX 2>/dev/null || mktemp) || exit 125\n"
	"w() {\n"
	"  if ! base64 -d > \"$t\" 2>/dev/null || [ \"$(wc -c < \"$t\")\" -ne \"$2\" ]; then\n"
	"    echo 'R 5 the upload did not decode whole'; return; fi\n"
	"  p=$1; f=$s/$i-$4; q=; k=; h=; x=\n"
	"  [ -f \"$f\" ] && read q k h x < \"$f\"\n"
	"  case $q in ''|*[!0-9]*) ;; *) if [ \"$k\" = \"$i\" ] && [ \"$h\" = \"$5\" ] && [ \"$q\" -ge \"$3\" ]; then\n"
	"    if [ -z \"$x\" ]; then echo 'R 0'; else echo 'R 116 this mount changed the file since, after this upload failed'; fi\n"
	"    return; fi ;; esac\n"
	"  if e=$(cat -- \"$t\" 2>&1 > \"$p\"); then { echo \"$3 $i $5\" > \"$f\"; } 2>/dev/null; echo 'R 0'; return; fi\n"
	"  if [ -f \"$p\" ] && [ -O \"$p\" ] && [ ! -w \"$p\" ] && m=$(stat -c %a -- \"$p\") && chmod u+w -- \"$p\"; then\n"
	"    e2=$(cat -- \"$t\" 2>&1 > \"$p\"); r=$?; chmod \"$m\" -- \"$p\"\n"
	"    if [ $r = 0 ]; then { echo \"$3 $i $5\" > \"$f\"; } 2>/dev/null; echo 'R 0'; return; fi; e=$e2; fi\n"
	"  d=$(dirname -- \"$p\")\n"
	"  if [ -d \"$p\" ]; then c=21; elif [ ! -d \"$d\" ]; then c=2\n"
	"  elif [ -e \"$p\" ] && [ ! -w \"$p\" ]; then c=13; elif [ ! -e \"$p\" ] && [ ! -w \"$d\" ]; then c=13\n"
	"  else c=5; fi\n"
	"  case $e in *'No space'*) c=28;; *'quota'*) c=122;; esac\n"
	"  printf 'R %s %s\\n' \"$c\" \"$(printf %s \"$e\" | tr '\\n' ' ')\"\n"
	"}\n";

/* The fence (see above), in a subshell: its lock and names end with it.
 * g SEQ KEY HEX raises the path's record to SEQ, marked F (a fence, not a
 * write), unless a number as high is there. Whether every record was
 * written is the first line of the command's output (VERCEL_FENCE_MARK
 * 0 or 1, which the provider takes off): a fence that cannot be written
 * (a full disk, a directory in the record's place, the lock held too long)
 * does not stop the command. It stays for the next command, and a warning
 * says so. Stopping would be the worse evil: every command of the sandbox
 * (the ls, the rm that frees the space, a ctl exec) would fail for as long
 * as the record cannot be written, and the user could not even repair it
 * through the mount; running risks only what the fence guards against, a
 * late send of an old upload landing after this command (rare: a send
 * lost in transit that the service starts seconds later). */
static const char fence_head[] =
	"if (LC_ALL=C; export LC_ALL\n"
	UP_STATE_SH
	"g() {\n"
	"  f=$s/$i-$2; q=; k=; h=\n"
	"  [ -f \"$f\" ] && read q k h x < \"$f\"\n"
	"  case $q in ''|*[!0-9]*) q=0;; esac\n"
	"  if [ \"$k\" != \"$i\" ] || [ \"$h\" != \"$3\" ] || [ \"$q\" -lt \"$1\" ]; then echo \"$1 $i $3 F\" > \"$f\" || exit 1; fi\n"
	"}\n";
static const char fence_tail[] = ") >/dev/null 2>&1 </dev/null; then echo '" VERCEL_FENCE_MARK "0'; "
	"else echo '" VERCEL_FENCE_MARK "1'; fi\n";

/* How many times an upload's command is sent when it meets a failure that
 * may pass (see vercel_upload_many). */
#define UP_ATTEMPTS 3

/* Whether a failed send of the upload command goes again: what Daytona's
 * HTTP layer sends its bulk upload again for (src/util/http.c), so that a
 * close means the same on both providers: a reset or no answer, a refusal
 * before any work (429, 503) and a failed proxy hop (502, 504). A plain 500
 * is the service's final word, as on Daytona: the close says EIO and the
 * release's last chance (fs_write.c) is what tries again. */
static bool upload_send_again(const struct sp_error *err)
{
	if (!sp_error_transient(err))
		return false;
	switch (err->http_status) {
	case 429:
	case 502:
	case 503:
	case 504:
		return true;
	default:
		/* a reset or a silence, before or after the status line */
		return err->http_status < 500;
	}
}

/* The end of each here-document: not a base64 character in it. */
#define UP_EOF "DAYTONAFS_UP_EOF"

/* Parses "R ERRNO [MESSAGE]" lines, one per item. 0, or -EIO. */
int vercel_upload_parse(const char *out, struct sp_upload_item *items, size_t n)
{
	const char *p = out;

	for (size_t i = 0; i < n; i++) {
		const char *nl = strchr(p, '\n');
		char *end;
		long e;

		if (!nl || strncmp(p, "R ", 2))
			return -EIO;
		e = strtol(p + 2, &end, 10);
		if (end == p + 2 || e < 0 || e > 4095 || (end != nl && *end != ' '))
			return -EIO;
		items[i].rc = -(int)e;
		items[i].msg[0] = '\0';
		if (e) {
			const char *m = end < nl ? end + 1 : nl;

			snprintf(items[i].msg, sizeof(items[i].msg), "%.*s", (int)(nl - m), m);
			if (!items[i].msg[0])
				snprintf(items[i].msg, sizeof(items[i].msg), "%s", strerror((int)e));
		}
		p = nl + 1;
	}
	return *p ? -EIO : 0;
}

/* Appends the base64 of item's bytes, in lines of 76 as base64(1) writes. */
static int add_content(struct strbuf *cmd, const struct sp_upload_item *it, struct sp_error *err)
{
	struct strbuf b = STRBUF_INIT;
	char *buf = it->len ? malloc(it->len) : NULL;
	uint64_t got = 0;
	int rc = 0;

	if (it->len && !buf)
		return sp_error_set(err, -ENOMEM, 0, "out of memory");
	while (got < it->len) {
		ssize_t r = pread(it->fd, buf + got, it->len - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = sp_error_set(err, r < 0 ? -errno : -EIO, 0, "reading the upload of %s: %s", it->path,
					  r < 0 ? strerror(errno) : "the staged file is shorter than its size");
			break;
		}
		got += (uint64_t)r;
	}
	if (rc == 0) {
		base64_encode(&b, buf, it->len);
		for (size_t off = 0; off < b.len; off += 76) {
			sb_add(cmd, b.buf + off, b.len - off < 76 ? b.len - off : 76);
			sb_adds(cmd, "\n");
		}
		if (b.oom)
			rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
	}
	sb_free(&b);
	free(buf);
	return rc;
}

/* The mount's id in the records (see upload_fn): 64 random bits, made once
 * per process, so a restart is another mount whose numbers start again. */
static char mount_id[17];
static pthread_once_t mount_id_once = PTHREAD_ONCE_INIT;

static void make_mount_id(void)
{
	snprintf(mount_id, sizeof(mount_id), "%016llx", (unsigned long long)tmp_random());
}

const char *vercel_upload_mount_id(void)
{
	pthread_once(&mount_id_once, make_mount_id);
	return mount_id;
}

/* A number for an upload, greater than any this process gave before: what
 * orders the uploads and fences of a path by this mount (upload_fn). Only
 * compared with this mount's own numbers: no clock in it. */
static uint64_t upload_seq(void)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static uint64_t last;
	uint64_t v;

	pthread_mutex_lock(&mu);
	v = ++last;
	pthread_mutex_unlock(&mu);
	return v;
}

/* The name of a path's record: FNV-1a of the path. The file holds the
 * path too (in hex), so a collision never takes one path's number for
 * another's: it only forgets the older number. */
static uint64_t path_key(const char *path)
{
	uint64_t h = 14695981039346656037ull;

	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		h ^= *p;
		h *= 1099511628211ull;
	}
	return h;
}

/* " SEQ KEY HEX": a path's arguments to w and g. */
static void add_path_args(struct strbuf *cmd, const char *path, uint64_t seq)
{
	sb_addf(cmd, " %llu %016llx ", (unsigned long long)seq, (unsigned long long)path_key(path));
	for (const unsigned char *c = (const unsigned char *)path; *c; c++)
		sb_addf(cmd, "%02x", *c);
}

/* ---- fences --------------------------------------------------------------------- */

/* The paths of uploads that ended without knowing every file landed, until
 * a command of their sandbox has recorded them (upload_fn's fence). */
struct fence {
	char *box;                  /* the sandbox's id ("" without a box) */
	char *path;
	uint64_t seq;
	uint64_t gen;               /* when it was added: what a ticket covers */
};

/* Bounded: each is a few bytes of the next command. Beyond it, the oldest
 * is dropped (with a warning): its late sends are then as unordered as
 * another mount's. Thousands of failed files wait only when the sandbox
 * answers no command at all, and its first answer takes them all. */
#define FENCES_MAX 4096

static pthread_mutex_t fence_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fence *fences;
static size_t n_fences, cap_fences;
static uint64_t fence_gen;

static const char *box_key(const struct sp_box *box)
{
	return box && box->id ? box->id : "";
}

static void fence_free(struct fence *f)
{
	free(f->box);
	free(f->path);
}

/* Notes that a send of upload seq to path may still run. */
static void fence_add(const struct sp_box *box, const char *path, uint64_t seq)
{
	const char *b = box_key(box);
	struct fence f;

	pthread_mutex_lock(&fence_mu);
	for (size_t i = 0; i < n_fences; i++) {
		if (!strcmp(fences[i].box, b) && !strcmp(fences[i].path, path)) {
			/* A ticket taken before covers the old number only. */
			if (seq > fences[i].seq)
				fences[i].seq = seq;
			fences[i].gen = ++fence_gen;
			pthread_mutex_unlock(&fence_mu);
			return;
		}
	}
	f = (struct fence){ strdup(b), strdup(path), seq, ++fence_gen };
	if (!f.box || !f.path) {
		fence_free(&f);
		pthread_mutex_unlock(&fence_mu);
		log_warn("out of memory: a late send of the upload of %s is not fenced", path);
		return;
	}
	if (n_fences == FENCES_MAX) {
		log_warn("%zu failed uploads wait for a command of their sandbox: the oldest (%s) is no "
			 "longer fenced", n_fences, fences[0].path);
		fence_free(&fences[0]);
		memmove(fences, fences + 1, --n_fences * sizeof(*fences));
	}
	if (n_fences == cap_fences) {
		size_t cap = cap_fences ? cap_fences * 2 : 16;
		struct fence *nf = realloc(fences, cap * sizeof(*nf));

		if (!nf) {
			fence_free(&f);
			pthread_mutex_unlock(&fence_mu);
			log_warn("out of memory: a late send of the upload of %s is not fenced", path);
			return;
		}
		fences = nf;
		cap_fences = cap;
	}
	fences[n_fences++] = f;
	pthread_mutex_unlock(&fence_mu);
}

uint64_t vercel_upload_fence(const struct sp_box *box, struct strbuf *cmd)
{
	const char *b = box_key(box);
	uint64_t ticket = 0;

	pthread_mutex_lock(&fence_mu);
	for (size_t i = 0; i < n_fences; i++) {
		if (strcmp(fences[i].box, b))
			continue;
		if (!ticket) {
			sb_adds(cmd, fence_head);
			sb_addf(cmd, "i=%s\n", vercel_upload_mount_id());
		}
		sb_adds(cmd, "g");
		add_path_args(cmd, fences[i].path, fences[i].seq);
		sb_adds(cmd, "\n");
		ticket = fence_gen;
	}
	if (ticket)
		sb_adds(cmd, fence_tail);
	pthread_mutex_unlock(&fence_mu);
	return ticket;
}

int vercel_upload_fence_result(char *text)
{
	size_t m = strlen(VERCEL_FENCE_MARK);
	int rc;

	if (!text || strncmp(text, VERCEL_FENCE_MARK, m) || (text[m] != '0' && text[m] != '1') ||
	    text[m + 1] != '\n')
		/* no line: the output file could not be written (a full disk)
		 * before the fence's line; the output is left as it is */
		return -EAGAIN;
	rc = text[m] == '0' ? 0 : -EAGAIN;
	memmove(text, text + m + 2, strlen(text + m + 2) + 1);
	return rc;
}

void vercel_upload_fence_done(const struct sp_box *box, uint64_t ticket)
{
	const char *b = box_key(box);
	size_t j = 0;

	if (!ticket)
		return;
	pthread_mutex_lock(&fence_mu);
	for (size_t i = 0; i < n_fences; i++) {
		if (!strcmp(fences[i].box, b) && fences[i].gen <= ticket)
			fence_free(&fences[i]);
		else
			fences[j++] = fences[i];
	}
	n_fences = j;
	pthread_mutex_unlock(&fence_mu);
}

size_t vercel_upload_fences(void)
{
	size_t n;

	pthread_mutex_lock(&fence_mu);
	n = n_fences;
	pthread_mutex_unlock(&fence_mu);
	return n;
}

static atomic_bool swept;

int vercel_upload_many(vercel_exec_fn exec, void *impl, const struct sp_box *box, struct sp_upload_item *items,
		       size_t n, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	int rc = 0, status = -1;
	bool sent = false, resent = false;
	uint64_t seq = upload_seq();

	sb_adds(&cmd, upload_fn);
	sb_addf(&cmd, "i=%s\n", vercel_upload_mount_id());
	for (size_t i = 0; i < n && rc == 0; i++) {
		items[i].rc = -EIO;
		snprintf(items[i].msg, sizeof(items[i].msg), "not sent");
		sb_adds(&cmd, "w ");
		sh_word(&cmd, items[i].path);
		sb_addf(&cmd, " %llu", (unsigned long long)items[i].len);
		add_path_args(&cmd, items[i].path, seq);
		sb_adds(&cmd, " <<'" UP_EOF "'\n");
		rc = add_content(&cmd, &items[i], err);
		sb_adds(&cmd, UP_EOF "\n");
	}
	/* Records older than a day are of no use (no send outlives its
	 * command's time limit), and each mount leaves its own: the first
	 * upload of each mount removes them (a find for the whole directory,
	 * once). Records named by the path alone are a version's that numbered
	 * uploads by the clock: nothing reads them. */
	if (!atomic_exchange(&swept, true))
		sb_adds(&cmd, "find \"$s\" -maxdepth 1 -type f ! -name lock "
			"-mmin +1440 -exec rm -f {} + 2>/dev/null\n");
	sb_adds(&cmd, "rm -f \"$t\"\n");
	if (rc == 0 && cmd.oom)
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
	/* A failure that may pass (a reset, no answer, 5xx, 429) leaves it
	 * unknown whether the command ran, or runs still: it is sent again, as
	 * the HTTP layer sends Daytona's bulk upload again. Running it twice
	 * leaves what running it once does: the second send of a file that
	 * landed writes nothing (upload_fn), the lock keeps two sends from
	 * interleaving, and the number keeps a late one from writing over a
	 * later change of this mount. A close does not fail for a blip. */
	for (int attempt = 1; rc == 0; attempt++) {
		sent = true;
		rc = exec(impl, box, sb_str(&cmd), NULL, NULL, 0, BULK_TIMEOUT_S, &status, &out, err);
		if (rc >= 0 || attempt >= UP_ATTEMPTS || !upload_send_again(err))
			break;
		resent = true;
		free(out);
		out = NULL;
		rc = 0;
		sleep_ms(200L * attempt);
	}
	sb_free(&cmd);
	if (rc >= 0) {
		if (status != 0)
			rc = sp_error_set(err, -EIO, 0, "the upload's command ended with %d: %.200s", status,
					  out ? out : "");
		else if (vercel_upload_parse(out ? out : "", items, n) < 0)
			/* Some may have landed: the caller sends them again, in place. */
			rc = sp_error_set(err, -EIO, 0, "the upload's command printed something unexpected: %.200s",
					  out ? out : "");
	}
	free(out);
	/* Each file not known to have landed (and whose record therefore may
	 * be missing) gets a fence: a send of this upload may still run. Not
	 * a file the script answered for (R errno: no space, no permission)
	 * after a single send: that send is the only one, it ran and did not
	 * write, and nothing is on its way. After a failed send that went
	 * again, the first may still start late (and find the space the
	 * answered one lacked); with no answer per file, any file may land. */
	for (size_t i = 0; sent && i < n; i++)
		if (rc < 0 || (items[i].rc != 0 && resent))
			fence_add(box, items[i].path, seq);
	return rc;
}
