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
 *  - bulk download: one command prints, for each file, a line "D BASE64"
 *    (its content) or "E ERRNO". The content is base64 on its own line
 *    because the exec operation returns a NUL-terminated string: binary
 *    files with NUL bytes would be cut. Each file is first copied to a
 *    temporary file, so that the length checked against max is the length
 *    of the bytes printed.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strbuf.h"
#include "urlenc.h"

/* The commands' limit: a batch is a few MiB at most (the mount's caps). */
#define BULK_TIMEOUT_S 120

static const char bulk_get_fn[] =
	"LC_ALL=C; export LC_ALL\n"
	"t=$(mktemp /tmp/.daytonafs/out/bulk.XXXXXXXX) || exit 125\n"
	"g() {\n"
	"  if [ ! -e \"$1\" ]; then echo 'E 2'\n"
	"  elif [ -d \"$1\" ]; then echo 'E 21'\n"
	"  elif [ ! -f \"$1\" ]; then echo 'E 22'\n"
	"  elif [ ! -r \"$1\" ]; then echo 'E 13'\n"
	"  elif ! head -c \"$(($2 + 1))\" -- \"$1\" > \"$t\" 2>/dev/null; then echo 'E 5'\n"
	"  elif [ \"$(wc -c < \"$t\")\" -gt \"$2\" ]; then echo 'E 27'\n"
	"  else printf 'D '; base64 < \"$t\" | tr -d '\\n'; echo; fi\n"
	"}\n";

/* Parses "D BASE64" / "E ERRNO" lines, one per file. 0, or -EIO (the output
 * is not what the command prints: no file keeps data), -ENOMEM. */
int vercel_bulk_parse(const char *out, struct sp_bulk_file *files, size_t n)
{
	const char *p = out;
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *nl = strchr(p, '\n');

		if (!nl || nl - p < 2 || p[1] != ' ') {
			rc = -EIO;
			break;
		}
		if (p[0] == 'E') {
			char *end;
			long e = strtol(p + 2, &end, 10);

			if (end != nl || e <= 0 || e > 4095)
				rc = -EIO;
			else
				files[i].err = -(int)e;
		} else if (p[0] == 'D') {
			struct strbuf sb = STRBUF_INIT;

			rc = base64_decode(&sb, p + 2, (size_t)(nl - p - 2));
			if (rc == 0 && sb.len > files[i].max)
				rc = -EIO;
			if (rc == 0) {
				files[i].err = 0;
				files[i].len = sb.len;
				files[i].data = sb.len ? sb_detach(&sb) : NULL;
				if (sb.len && !files[i].data)
					rc = -ENOMEM;
			}
			sb_free(&sb);
			if (rc == -EINVAL)
				rc = -EIO;
		} else {
			rc = -EIO;
		}
		p = nl + 1;
	}
	if (rc == 0 && *p)
		rc = -EIO;
	if (rc < 0)
		sp_bulk_files_clear(files, n);
	return rc;
}

int vercel_bulk_download(vercel_exec_fn exec, void *impl, const struct dt_box *box, struct sp_bulk_file *files,
			 size_t n, struct dt_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	int rc, status = -1;

	for (size_t i = 0; i < n; i++) {
		files[i].err = -EIO;
		files[i].data = NULL;
		files[i].len = 0;
	}
	sb_adds(&cmd, bulk_get_fn);
	for (size_t i = 0; i < n; i++) {
		sb_adds(&cmd, "g ");
		sh_word(&cmd, files[i].path);
		sb_addf(&cmd, " %zu\n", files[i].max);
	}
	sb_adds(&cmd, "rm -f \"$t\"\n");
	if (cmd.oom) {
		sb_free(&cmd);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	rc = exec(impl, box, sb_str(&cmd), NULL, NULL, 0, BULK_TIMEOUT_S, &status, &out, err);
	sb_free(&cmd);
	if (rc < 0)
		return rc;
	if (status != 0) {
		rc = dt_error_set(err, -EIO, 0, "the bulk read's command ended with %d: %.200s", status,
				  out ? out : "");
	} else {
		rc = vercel_bulk_parse(out ? out : "", files, n);
		if (rc < 0)
			dt_error_set(err, rc, 0, rc == -ENOMEM ? "out of memory" :
				     "the bulk read's command printed something else than files");
	}
	free(out);
	return rc;
}

/* ---- uploads -------------------------------------------------------------------- */

static const char upload_fn[] =
	"LC_ALL=C; export LC_ALL\n"
	"t=$(mktemp /tmp/.daytonafs/out/up.XXXXXXXX) || exit 125\n"
	"w() {\n"
	"  if ! base64 -d > \"$t\" 2>/dev/null || [ \"$(wc -c < \"$t\")\" -ne \"$2\" ]; then\n"
	"    echo 'R 5 the upload did not decode whole'; return; fi\n"
	"  p=$1\n"
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
static int add_content(struct strbuf *cmd, const struct sp_upload_item *it, struct dt_error *err)
{
	struct strbuf b = STRBUF_INIT;
	char *buf = it->len ? malloc(it->len) : NULL;
	uint64_t got = 0;
	int rc = 0;

	if (it->len && !buf)
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	while (got < it->len) {
		ssize_t r = pread(it->fd, buf + got, it->len - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = dt_error_set(err, r < 0 ? -errno : -EIO, 0, "reading the upload of %s: %s", it->path,
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
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	sb_free(&b);
	free(buf);
	return rc;
}

int vercel_upload_many(vercel_exec_fn exec, void *impl, const struct dt_box *box, struct sp_upload_item *items,
		       size_t n, struct dt_error *err)
{
	struct strbuf cmd = STRBUF_INIT;
	char *out = NULL;
	int rc = 0, status = -1;

	sb_adds(&cmd, upload_fn);
	for (size_t i = 0; i < n && rc == 0; i++) {
		items[i].rc = -EIO;
		snprintf(items[i].msg, sizeof(items[i].msg), "not sent");
		sb_adds(&cmd, "w ");
		sh_word(&cmd, items[i].path);
		sb_addf(&cmd, " %llu <<'" UP_EOF "'\n", (unsigned long long)items[i].len);
		rc = add_content(&cmd, &items[i], err);
		sb_adds(&cmd, UP_EOF "\n");
	}
	sb_adds(&cmd, "rm -f \"$t\"\n");
	if (rc == 0 && cmd.oom)
		rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
	if (rc == 0)
		rc = exec(impl, box, sb_str(&cmd), NULL, NULL, 0, BULK_TIMEOUT_S, &status, &out, err);
	sb_free(&cmd);
	if (rc < 0) {
		free(out);
		return rc;
	}
	if (status != 0)
		rc = dt_error_set(err, -EIO, 0, "the upload's command ended with %d: %.200s", status, out ? out : "");
	else if (vercel_upload_parse(out ? out : "", items, n) < 0)
		/* Some may have landed: the caller sends them again, in place. */
		rc = dt_error_set(err, -EIO, 0, "the upload's command printed something unexpected: %.200s",
				  out ? out : "");
	free(out);
	return rc;
}
