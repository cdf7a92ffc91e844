/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bdi.c - finding a FUSE mount's bdi in mountinfo and setting its
 * readahead (why: bdi.h).
 */
#include "bdi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* mountinfo escapes space, tab, newline and backslash in paths as \ooo. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* One mountinfo line: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS". */
static bool line_matches(char *line, const char *mountpoint, unsigned *major, unsigned *minor)
{
	char *save = NULL, *tok, *mp = NULL;
	unsigned maj = 0, min = 0;
	int field = 0;
	bool dash = false;

	for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save), field++) {
		if (field == 2 && sscanf(tok, "%u:%u", &maj, &min) != 2)
			return false;
		if (field == 4)
			mp = tok;
		if (field > 5 && !dash) {
			dash = !strcmp(tok, "-");
			continue;
		}
		if (dash) {
			/* The file system type. */
			if (strcmp(tok, "fuse") && strncmp(tok, "fuse.", 5))
				return false;
			break;
		}
	}
	if (!tok || !mp)
		return false;
	unescape(mp);
	if (strcmp(mp, mountpoint))
		return false;
	*major = maj;
	*minor = min;
	return true;
}

int bdi_find(FILE *mountinfo, const char *mountpoint, unsigned *major, unsigned *minor)
{
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	while (getline(&line, &cap, mountinfo) >= 0)
		if (line_matches(line, mountpoint, major, minor))
			found = true;   /* keep going: the last one is on top */
	free(line);
	return found ? 0 : -ENOENT;
}

int bdi_set_read_ahead(const char *mountpoint, unsigned kb)
{
	unsigned major, minor;
	char path[64];
	FILE *f;
	int rc;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	rc = bdi_find(f, mountpoint, &major, &minor);
	fclose(f);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major, minor);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "%u\n", kb);
	/* sysfs reports a refused value at the write, i.e. at fclose. */
	if (fclose(f) != 0)
		return -errno;
	return 0;
}
