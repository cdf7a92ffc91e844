/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctl_create.c - checks of create's options that are more than a number or
 * a word (pure, for ctl.c): the network allow list.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* One dotted-quad IPv4 address: four decimals 0..255, no leading zero but
 * a lone 0 (as the API's parser). */
static bool ipv4_ok(const char *s, size_t len)
{
	int parts = 0;
	size_t i = 0;

	while (i <= len && parts < 4) {
		size_t start = i;
		long v = 0;

		while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
			v = v * 10 + (s[i++] - '0');
		if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
			return false;
		parts++;
		if (i == len)
			break;
		if (s[i] != '.')
			return false;
		i++;
	}
	return parts == 4 && i == len;
}

int ctl_check_allow_list(const char *list, char *err, size_t errlen)
{
	const char *p = list;
	int n = 0;

	if (!*list) {
		snprintf(err, errlen, "network-allow needs at least one CIDR (e.g. 10.0.0.0/8)");
		return -1;
	}
	for (;;) {
		const char *comma = strchr(p, ','), *slash;
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *end;
		long prefix;

		slash = memchr(p, '/', len);
		if (!slash || !ipv4_ok(p, (size_t)(slash - p))) {
			snprintf(err, errlen, "network-allow: '%.*s' is not an IPv4 CIDR such as 10.0.0.0/8",
				 (int)(len > 64 ? 64 : len), p);
			return -1;
		}
		prefix = strtol(slash + 1, &end, 10);
		if (end != p + len || end == slash + 1 || slash[1] == '-' || slash[1] == '+' || prefix > 32) {
			snprintf(err, errlen, "network-allow: the prefix of '%.*s' must be from 0 to 32",
				 (int)(len > 64 ? 64 : len), p);
			return -1;
		}
		if (++n > CTL_ALLOW_LIST_MAX) {
			snprintf(err, errlen, "network-allow: at most %d networks", CTL_ALLOW_LIST_MAX);
			return -1;
		}
		if (!comma)
			return 0;
		p = comma + 1;
	}
}
