/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_json.c - the JSON and text parsers of the Daytona client: field getters,
 * RFC 3339 times, Go file modes, file infos, and the builders of key/value
 * objects. Pure functions, tested by tests/unit/test_daytona_json.c.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daytona_int.h"
#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

/* ---- JSON helpers --------------------------------------------------------- */

const char *dt_jstr(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

void dt_jcopy(char *dst, size_t cap, const cJSON *obj, const char *key)
{
	const char *s = dt_jstr(obj, key);

	str_copy(dst, cap, s ? s : "");
}

void dt_jtime(struct timespec *ts, const cJSON *obj, const char *key)
{
	const char *s = dt_jstr(obj, key);

	if (!s || dt_parse_rfc3339(s, ts) != 0)
		ts->tv_sec = ts->tv_nsec = 0;
}

/* cJSON_Print with a final newline, for the info files. */
char *dt_pretty_json(const cJSON *obj)
{
	char *s = cJSON_Print(obj), *out;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	out = realloc(s, n + 2);
	if (!out) {
		free(s);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	return out;
}

/* ---- time and mode parsers ------------------------------------------------ */

static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static int days_in_month(int year, int month)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : dm[month - 1];
}

/* RFC 3339 ("2026-06-23T13:33:38.123456789Z", "...+02:00"), or with
 * go_string Go's time.Time.String() ("2026-06-23 13:33:38.5 +0000 UTC"). */
static int parse_time(const char *s, struct timespec *out, bool go_string)
{
	const char *p = s;
	int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
	long nsec = 0;
	struct tm tm;
	time_t t;

	if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
	    !digits(&p, 2, &day))
		return -EINVAL;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min) || *p++ != ':' ||
	    !digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.' || *p == ',') {
		long scale = 100000000;

		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		/* Nanoseconds: digits past the ninth are dropped. */
		for (; *p >= '0' && *p <= '9'; p++) {
			nsec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (go_string && *p == ' ')
		p++;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (!digits(&p, 2, &oh))
			return -EINVAL;
		if (*p == ':')
			p++;
		if (!digits(&p, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (go_string) {
		if (*p != '\0' && *p != ' ')   /* " UTC", " m=+0.1" ... */
			return -EINVAL;
	} else if (*p != '\0') {
		return -EINVAL;
	}
	if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
	    sec > 60 || oh > 23 || om > 59)
		return -EINVAL;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	t -= (time_t)sign * (oh * 3600 + om * 60);
	out->tv_sec = t;
	out->tv_nsec = nsec;
	return 0;
}

int dt_parse_rfc3339(const char *s, struct timespec *out)
{
	return s ? parse_time(s, out, false) : -EINVAL;
}

/*
 * Go's FileMode.String(): the letters of the set type and special bits, in
 * the order "dalTLDpSugct?", then the nine permission characters; "-" when
 * no letter is set.
 */
int dt_parse_go_mode(const char *s, mode_t *out)
{
	static const char rwx[] = "rwxrwxrwx";
	static const char letters[] = "dalTLDpSugct?";
	bool set[sizeof(letters)] = { false };
	size_t n, plen, i;
	const char *perm;
	mode_t mode = 0;

	if (!s)
		return -EINVAL;
	n = strlen(s);
	if (n < 10)
		return -EINVAL;
	plen = n - 9;
	perm = s + plen;
	if (!(plen == 1 && s[0] == '-')) {
		for (i = 0; i < plen; i++) {
			const char *l = strchr(letters, s[i]);

			if (!l || !*l)
				return -EINVAL;
			set[l - letters] = true;
		}
	}
	for (i = 0; i < 9; i++) {
		if (perm[i] == rwx[i])
			mode |= (mode_t)(0400 >> i);
		else if (perm[i] != '-')
			return -EINVAL;
	}
#define HAS(c) set[strchr(letters, (c)) - letters]
	if (HAS('d'))
		mode |= S_IFDIR;
	else if (HAS('L'))
		mode |= S_IFLNK;
	else if (HAS('D') && !HAS('c'))
		mode |= S_IFBLK;
	else if (HAS('c'))
		mode |= S_IFCHR;
	else if (HAS('p'))
		mode |= S_IFIFO;
	else if (HAS('S'))
		mode |= S_IFSOCK;
	else
		mode |= S_IFREG;
	if (HAS('u'))
		mode |= S_ISUID;
	if (HAS('g'))
		mode |= S_ISGID;
	if (HAS('t'))
		mode |= S_ISVTX;
#undef HAS
	*out = mode;
	return 0;
}

/* A numeric owner, as a string ("1001") or a number; 0 otherwise. */
static unsigned long jid(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char *end;
	unsigned long v;

	if (cJSON_IsNumber(it))
		return it->valuedouble >= 0 ? (unsigned long)it->valuedouble : 0;
	if (!cJSON_IsString(it) || !it->valuestring[0])
		return 0;
	v = strtoul(it->valuestring, &end, 10);
	return *end == '\0' ? v : 0;
}

int dt_fileinfo_from_json(const struct cJSON *obj, struct sp_fileinfo *out)
{
	const cJSON *it;
	const char *s;
	mode_t mode = 0;
	bool have_mode = false;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(obj))
		return -EINVAL;
	s = dt_jstr(obj, "name");
	if (!s || !s[0])
		return -EINVAL;
	out->name = strdup(s);
	if (!out->name)
		return -ENOMEM;

	it = cJSON_GetObjectItemCaseSensitive(obj, "size");
	if (cJSON_IsNumber(it) && it->valuedouble > 0)
		out->size = (uint64_t)it->valuedouble;

	s = dt_jstr(obj, "mode");
	if (s && dt_parse_go_mode(s, &mode) == 0)
		have_mode = true;
	it = cJSON_GetObjectItemCaseSensitive(obj, "isDir");
	if (!have_mode) {
		/* No usable mode string: the permissions field ("0644") and isDir. */
		const char *perm = dt_jstr(obj, "permissions");
		char *end;
		unsigned long p = perm ? strtoul(perm, &end, 8) : 0;

		if (perm && *perm && *end == '\0' && p <= 07777)
			mode = (mode_t)p;
		else
			mode = cJSON_IsTrue(it) ? 0755 : 0644;
		mode |= cJSON_IsTrue(it) ? S_IFDIR : S_IFREG;
	} else if (cJSON_IsBool(it) && cJSON_IsTrue(it) != S_ISDIR(mode)) {
		/* isDir is the type after following a symlink; trust it. */
		mode = (mode & ~(mode_t)S_IFMT) | (cJSON_IsTrue(it) ? S_IFDIR : S_IFREG);
	}
	out->mode = mode;
	out->is_dir = S_ISDIR(mode);
	out->uid = (uid_t)jid(obj, "owner");
	out->gid = (gid_t)jid(obj, "group");

	s = dt_jstr(obj, "modifiedAt");
	if (!s || dt_parse_rfc3339(s, &out->mtime) != 0) {
		s = dt_jstr(obj, "modTime");
		if (!s || parse_time(s, &out->mtime, true) != 0)
			out->mtime.tv_sec = out->mtime.tv_nsec = 0;
	}
	return 0;
}


/* ---- JSON builders ---------------------------------------------------------- */

/* Sets key to a string in obj, replacing an earlier value (last one wins). */
bool dt_set_string(cJSON *obj, const char *key, const char *value)
{
	cJSON *v = cJSON_CreateString(value);

	if (!v)
		return false;
	if (cJSON_GetObjectItemCaseSensitive(obj, key))
		return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
	if (!cJSON_AddItemToObject(obj, key, v)) {
		cJSON_Delete(v);
		return false;
	}
	return true;
}

bool dt_add_kv_object(cJSON *root, const char *key, const struct sp_kv *kv, size_t n, cJSON **made)
{
	cJSON *obj = cJSON_AddObjectToObject(root, key);

	if (!obj)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!dt_set_string(obj, kv[i].key, kv[i].value ? kv[i].value : ""))
			return false;
	if (made)
		*made = obj;
	return true;
}
