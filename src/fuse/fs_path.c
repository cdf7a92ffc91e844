/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_path.c - paths to nodes: what each path of the mount names (node_parse),
 * and the small helpers of the dispatcher (the clock, snapshot names).
 */
#include "fs_dispatch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_int.h"
#include "log.h"
#include "recover.h"
#include "strbuf.h"
#include "urlenc.h"

/* ---- small helpers ------------------------------------------------------ */

double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct dfs *dfs_get(void)
{
	return fuse_get_context()->private_data;
}

pid_t caller_tid(void)
{
	struct fuse_context *c = fuse_get_context();

	return c ? c->pid : 0;
}

static bool is_number(const char *s, unsigned *out)
{
	unsigned long v;
	char *end;

	if (!*s || *s == '0' || strlen(s) > 9)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	v = strtoul(s, &end, 10);
	*out = (unsigned)v;
	return true;
}

/* Snapshot names may hold '/' (e.g. "daytonaio/sandbox:0.5.0-slim"), which
 * cannot be in a file name: it is shown as %2F, and '%' as %25. */
void snap_encode(struct strbuf *sb, const char *name)
{
	for (const char *p = name; *p; p++) {
		if (*p == '/')
			sb_adds(sb, "%2F");
		else if (*p == '%')
			sb_adds(sb, "%25");
		else
			sb_addc(sb, *p);
	}
}

static bool snap_decode(const char *enc, char *out, size_t cap)
{
	size_t o = 0;

	for (const char *p = enc; *p; p++) {
		char c = *p;

		if (c == '%' && (!strncmp(p + 1, "2F", 2) || !strncmp(p + 1, "2f", 2))) {
			c = '/';
			p += 2;
		} else if (c == '%' && !strncmp(p + 1, "25", 2)) {
			p += 2;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

/* ---- paths to nodes ----------------------------------------------------- */

const struct name_kind sandbox_entries[] = {
	{ "ctl", N_SB_CTL }, { "status", N_SB_STATUS }, { "info", N_SB_INFO },
	{ "error", N_SB_ERROR }, { "stdout", N_SB_STDOUT }, { "stderr", N_SB_STDERR },
	{ "exit", N_SB_EXIT }, { "cmd", N_CMDDIR }, { "fs", N_FSROOT }, { "work", N_WORK },
	{ "usage", N_SB_USAGE }, { "env", N_SB_ENV }, { "ports", N_PORTSDIR }, { "build-log", N_SB_BUILDLOG },
};

const struct name_kind command_entries[] = {
	{ "command", N_CMD_COMMAND }, { "stdout", N_CMD_STDOUT }, { "stderr", N_CMD_STDERR },
	{ "exit", N_CMD_EXIT }, { "status", N_CMD_STATUS }, { "stdin", N_CMD_STDIN },
	{ "ctl", N_CMD_CTL },
};

const size_t sandbox_entries_len = ARRAY_LEN(sandbox_entries);
const size_t command_entries_len = ARRAY_LEN(command_entries);

unsigned node_needs(enum node_kind kind)
{
	switch (kind) {
	case N_SNAPDIR:
	case N_SNAPFILE:
		return SP_CAP_SNAPSHOTS;
	case N_VOLDIR:
	case N_VOL:
	case N_VOL_INFO:
		return SP_CAP_VOLUMES;
	case N_PORTSDIR:
	case N_PORT:
		return SP_CAP_PREVIEW;     /* a port's file is its preview URL */
	case N_SB_BUILDLOG:
		return SP_CAP_BUILD_LOG;
	default:
		return 0;                  /* usage and env are commands: every provider */
	}
}

static int lookup_name(const struct name_kind *t, size_t n, const char *name, size_t len,
		       enum node_kind *kind)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(t[i].name) == len && !memcmp(t[i].name, name, len)) {
			*kind = t[i].kind;
			return 0;
		}
	}
	return -ENOENT;
}

/* Copies the next component of *p into out and advances *p past it. */
static int next_component(const char **p, char *out, size_t cap, size_t *len)
{
	const char *s = *p, *e;

	while (*s == '/')
		s++;
	if (!*s)
		return 0;
	e = strchr(s, '/');
	*len = e ? (size_t)(e - s) : strlen(s);
	if (*len >= cap)
		return -ENAMETOOLONG;
	memcpy(out, s, *len);
	out[*len] = '\0';
	*p = s + *len;
	return 1;
}

/* Whether every component of path fits NAME_MAX (255 bytes), as ext4
 * demands: a longer name is refused at once, by lookups too, and never gets
 * as far as a staged create that could only fail at the upload. */
static bool names_fit(const char *path)
{
	size_t len = 0;

	for (const char *p = path; *p; p++) {
		len = *p == '/' ? 0 : len + 1;
		if (len > 255)
			return false;
	}
	return true;
}

int node_parse(const char *path, struct node *n)
{
	char comp[256];
	const char *p = path;
	size_t len;
	int rc;

	memset(n, 0, sizeof(*n));
	n->kind = N_ROOT;
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (!strcmp(comp, ".volumes")) {
		/* .volumes/NAME/info: a volume is a directory, so that mkdir and
		 * rmdir make and delete one. Its name is shown as it is: Daytona's
		 * volume names hold no '/' (and a name that would is not shown). */
		n->kind = N_VOLDIR;
		rc = next_component(&p, comp, sizeof(comp), &len);
		if (rc <= 0)
			return rc;
		n->kind = N_VOL;
		str_copy(n->snap_name, sizeof(n->snap_name), comp);
		rc = next_component(&p, comp, sizeof(comp), &len);
		if (rc <= 0)
			return rc;
		if (strcmp(comp, "info"))
			return -ENOENT;
		n->kind = N_VOL_INFO;
		rc = next_component(&p, comp, sizeof(comp), &len);
		return rc == 0 ? 0 : rc < 0 ? rc : -ENOTDIR;
	}
	if (!strcmp(comp, "ctl") || !strcmp(comp, "error") || !strcmp(comp, ".snapshots")) {
		n->kind = !strcmp(comp, "ctl") ? N_ROOT_CTL : !strcmp(comp, "error") ? N_ROOT_ERROR : N_SNAPDIR;
		rc = next_component(&p, comp, sizeof(comp), &len);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return 0;
		if (n->kind != N_SNAPDIR)
			return -ENOTDIR;
		n->kind = N_SNAPFILE;
		if (!snap_decode(comp, n->snap_name, sizeof(n->snap_name)))
			return -ENAMETOOLONG;
		rc = next_component(&p, comp, sizeof(comp), &len);
		return rc == 0 ? 0 : rc < 0 ? rc : -ENOTDIR;
	}
	str_copy(n->sb_name, sizeof(n->sb_name), comp);
	n->kind = N_SANDBOX;
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (lookup_name(sandbox_entries, ARRAY_LEN(sandbox_entries), comp, len, &n->kind))
		return -ENOENT;
	if (n->kind == N_FSROOT) {
		/* Everything below fs/ is the sandbox's own path, from "/". */
		while (*p == '/')
			p++;
		if (!*p) {
			str_copy(n->path, sizeof(n->path), "/");
			return 0;
		}
		n->kind = N_FILE;
		/* PATH_MAX (4,096 bytes with the NUL) for the sandbox path, as
		 * the sandbox's own kernel would refuse it. */
		if (!str_printf(n->path, sizeof(n->path), "/%s", p))
			return -ENAMETOOLONG;
		if (!names_fit(n->path))
			return -ENAMETOOLONG;
		/* FUSE never sends a trailing slash, but be exact anyway. */
		len = strlen(n->path);
		while (len > 1 && n->path[len - 1] == '/')
			n->path[--len] = '\0';
		return 0;
	}
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (n->kind == N_PORTSDIR) {
		if (!is_number(comp, &n->cmd) || n->cmd < 1 || n->cmd > 65535)
			return -ENOENT;
		n->kind = N_PORT;
		rc = next_component(&p, comp, sizeof(comp), &len);
		return rc == 0 ? 0 : rc < 0 ? rc : -ENOTDIR;
	}
	if (n->kind != N_CMDDIR)
		return -ENOTDIR;
	if (!strcmp(comp, "last")) {
		n->kind = N_CMD_LAST;
		rc = next_component(&p, comp, sizeof(comp), &len);
		/* cmd/last/... is resolved by the kernel through the link; never here */
		return rc == 0 ? 0 : rc < 0 ? rc : -ENOENT;
	}
	if (!is_number(comp, &n->cmd))
		return -ENOENT;
	n->kind = N_CMD;
	rc = next_component(&p, comp, sizeof(comp), &len);
	if (rc <= 0)
		return rc;
	if (lookup_name(command_entries, ARRAY_LEN(command_entries), comp, len, &n->kind))
		return -ENOENT;
	rc = next_component(&p, comp, sizeof(comp), &len);
	return rc == 0 ? 0 : rc < 0 ? rc : -ENOTDIR;
}
