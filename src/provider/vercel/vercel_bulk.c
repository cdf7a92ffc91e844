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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"
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
 * The upload's script. A send that failed for a blip is sent again (see
 * vercel_upload_many) while the first may still run in the sandbox, or
 * start late; two rules keep that from losing anything:
 * - one upload writes at a time: a lock (flock(1), on a file of the state
 *   directory; the kernel drops it when its holder dies) taken for the
 *   whole script, so the chmod u+w ... chmod MODE of a read-only file never
 *   interleaves with another's (which would leave it writable for good);
 * - each file's bytes carry a number that grows with every upload of this
 *   mount (the same in each send of one upload), and the last number
 *   written is kept per path (in a file named by a hash of the path, with
 *   the path in hex: a file another path shares is not taken as ours): a send
 *   older than what was written is stale, and writes nothing (R 0: newer
 *   bytes are there), so a first send that outlives its upload and a later
 *   upload of new content never writes old bytes over them.
 * Without flock the numbers still hold; only the interleaving is open.
 */
static const char upload_fn[] =
	"LC_ALL=C; export LC_ALL\n"
	"t=$(mktemp /tmp/.daytonafs/out/up.XXXXXXXX) || exit 125\n"
	"s=/tmp/.daytonafs/out/up-seq\n"
	"[ -d \"$s\" ] || mkdir -p \"$s\" || exit 125\n"
	"if command -v flock >/dev/null 2>&1; then\n"
	"  exec 9>>\"$s/lock\" && flock -w " UP_LOCK_WAIT_S " 9 || { rm -f \"$t\"; exit 124; }\n"
	"fi\n"
	"w() {\n"
	"  if ! base64 -d > \"$t\" 2>/dev/null || [ \"$(wc -c < \"$t\")\" -ne \"$2\" ]; then\n"
	"    echo 'R 5 the upload did not decode whole'; return; fi\n"
	"  p=$1; q=; k=\n"
	"  [ -f \"$s/$4\" ] && read q k < \"$s/$4\"\n"
	"  case $q in ''|*[!0-9]*) ;; *) if [ \"$k\" = \"$5\" ] && [ \"$q\" -gt \"$3\" ]; then echo 'R 0'; return; fi ;; esac\n"
	"  echo \"$3 $5\" > \"$s/$4\"\n"
	"  if e=$(cat -- \"$t\" 2>&1 > \"$p\"); then echo 'R 0'; return; fi\n"
	"  if [ -f \"$p\" ] && [ -O \"$p\" ] && [ ! -w \"$p\" ] && m=$(stat -c %a -- \"$p\") && chmod u+w -- \"$p\"; then\n"
	"    e2=$(cat -- \"$t\" 2>&1 > \"$p\"); r=$?; chmod \"$m\" -- \"$p\"\n"
	"    if [ $r = 0 ]; then echo 'R 0'; return; fi; e=$e2; fi\n"
	"  d=$(dirname -- \"$p\")\n"
	"  if [ -d \"$p\" ]; then c=21; elif [ ! -d \"$d\" ]; then c=2\n"
	"  elif [ -e \"$p\" ] && [ ! -w \"$p\" ]; then c=13; elif [ ! -e \"$p\" ] && [ ! -w \"$d\" ]; then c=13\n"
	"  else c=5; fi\n"
	"  case $e in *'No space'*) c=28;; *'quota'*) c=122;; esac\n"
	"  printf 'R %s %s\\n' \"$c\" \"$(printf %s \"$e\" | tr '\\n' ' ')\"\n"
	"}\n";

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

/* A number for an upload, greater than any this process gave before and,
 * being the time in microseconds when that is greater, than any a mount
 * before it gave: what orders uploads of a path (upload_fn). */
static uint64_t upload_seq(void)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static uint64_t last;
	struct timespec ts;
	uint64_t now, v;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	pthread_mutex_lock(&mu);
	v = last = now > last ? now : last + 1;
	pthread_mutex_unlock(&mu);
	return v;
}

/* The name of a path's number file: FNV-1a of the path. The file holds the
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

int vercel_upload_many(vercel_exec_fn exec, void *impl, const struct sp_box *box, struct sp_upload_item *items,
		       size_t n, struct sp_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	int rc = 0, status = -1;
	uint64_t seq = upload_seq();

	sb_adds(&cmd, upload_fn);
	for (size_t i = 0; i < n && rc == 0; i++) {
		items[i].rc = -EIO;
		snprintf(items[i].msg, sizeof(items[i].msg), "not sent");
		sb_adds(&cmd, "w ");
		sh_word(&cmd, items[i].path);
		sb_addf(&cmd, " %llu %llu %016llx ", (unsigned long long)items[i].len, (unsigned long long)seq,
			(unsigned long long)path_key(items[i].path));
		for (const unsigned char *c = (const unsigned char *)items[i].path; *c; c++)
			sb_addf(&cmd, "%02x", *c);
		sb_adds(&cmd, " <<'" UP_EOF "'\n");
		rc = add_content(&cmd, &items[i], err);
		sb_adds(&cmd, UP_EOF "\n");
	}
	sb_adds(&cmd, "rm -f \"$t\"\n");
	if (rc == 0 && cmd.oom)
		rc = sp_error_set(err, -ENOMEM, 0, "out of memory");
	/* A failure that may pass (a reset, no answer, 5xx, 429) leaves it
	 * unknown whether the command ran, or runs still: it is sent again, as
	 * the HTTP layer sends Daytona's bulk upload again. Running it twice
	 * leaves what running it once does (each file's bytes, written in
	 * place), the lock keeps two sends from interleaving, and the number
	 * keeps a late one from writing over a later upload (upload_fn). A
	 * close does not fail for a blip. */
	for (int attempt = 1; rc == 0; attempt++) {
		rc = exec(impl, box, sb_str(&cmd), NULL, NULL, 0, BULK_TIMEOUT_S, &status, &out, err);
		if (rc >= 0 || attempt >= UP_ATTEMPTS || !upload_send_again(err))
			break;
		free(out);
		out = NULL;
		rc = 0;
		nanosleep(&(struct timespec){ 0, 200000000L * attempt }, NULL);
	}
	sb_free(&cmd);
	if (rc < 0) {
		free(out);
		return rc;
	}
	if (status != 0)
		rc = sp_error_set(err, -EIO, 0, "the upload's command ended with %d: %.200s", status, out ? out : "");
	else if (vercel_upload_parse(out ? out : "", items, n) < 0)
		/* Some may have landed: the caller sends them again, in place. */
		rc = sp_error_set(err, -EIO, 0, "the upload's command printed something unexpected: %.200s",
				  out ? out : "");
	free(out);
	return rc;
}
