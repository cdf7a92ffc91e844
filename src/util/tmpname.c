/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tmpname.c - unique names for temporary files in the sandbox (tmpname.h).
 */
#include "tmpname.h"

#include <inttypes.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static unsigned long tmp_seq;

uint64_t tmp_random(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		/* No entropy yet (early boot): still different for every call
		 * of this process, and unlikely to meet another's. */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&v ^
		    ((uint64_t)__atomic_add_fetch(&tmp_seq, 1, __ATOMIC_RELAXED) << 20);
	}
	return v;
}

bool tmp_name_from(char *out, size_t cap, const char *prefix, long pid, uint64_t rnd, unsigned long seq)
{
	int n = snprintf(out, cap, "%s.%ld.%016" PRIx64 ".%lu", prefix, pid, rnd, seq);

	return n >= 0 && (size_t)n < cap;
}

bool tmp_name(char *out, size_t cap, const char *prefix)
{
	return tmp_name_from(out, cap, prefix, (long)getpid(), tmp_random(),
			     __atomic_add_fetch(&tmp_seq, 1, __ATOMIC_RELAXED));
}
