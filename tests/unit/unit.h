/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unit.h - a tiny test harness for the C unit tests. Each test file defines
 * its tests with UNIT_TEST(name) and lists them in main via unit_run. Each
 * check that fails prints file:line and the expression, and the run ends
 * with a line "N passed, N failed" and exit status 1 on any failure.
 */
#ifndef DAYTONAFS_UNIT_H
#define DAYTONAFS_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures_in_test;

#define UNIT_TEST(name) static void name(void)

#define CHECK(expr) do { \
	if (!(expr)) { \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
		unit_failures_in_test++; \
	} \
} while (0)

#define CHECK_INT(a, b) do { \
	long long _a = (long long)(a), _b = (long long)(b); \
	if (_a != _b) { \
		fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, _a, #b, _b); \
		unit_failures_in_test++; \
	} \
} while (0)

#define CHECK_STR(a, b) do { \
	const char *_a = (a), *_b = (b); \
	if (!_a || !_b || strcmp(_a, _b) != 0) { \
		fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
			_a ? _a : "(null)", _b ? _b : "(null)"); \
		unit_failures_in_test++; \
	} \
} while (0)

struct unit_case {
	const char *name;
	void (*fn)(void);
};

#define UNIT_CASE(fn) { #fn, fn }

static inline int unit_run(const char *suite, const struct unit_case *cases, size_t n)
{
	int passed = 0, failed = 0;

	for (size_t i = 0; i < n; i++) {
		unit_failures_in_test = 0;
		cases[i].fn();
		if (unit_failures_in_test) {
			failed++;
			fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
		} else {
			passed++;
		}
	}
	printf("%s: %d passed, %d failed\n", suite, passed, failed);
	return failed ? 1 : 0;
}

#define UNIT_MAIN(suite, ...) \
	int main(void) { \
		static const struct unit_case cases[] = { __VA_ARGS__ }; \
		return unit_run(suite, cases, sizeof(cases) / sizeof(cases[0])); \
	}

#endif
