/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for prefetch.c: what is handed out, and when it is not. */
#include <stdlib.h>
#include <string.h>

#include "prefetch.h"
#include "unit.h"

static double clock_now;
static double fake_now(void)
{
	return clock_now;
}

static char *dup_bytes(const char *s)
{
	return strdup(s);
}

static const struct timespec T1 = { 1000, 5 }, T2 = { 1000, 6 };

UNIT_TEST(test_take_when_everything_matches)
{
	struct prefetch *pf = prefetch_new(1 << 20, 100);
	char *d;
	size_t n;

	prefetch_set_clock(pf, fake_now);
	clock_now = 10;
	CHECK(prefetch_reserve(pf, "sb", "/a"));
	CHECK(!prefetch_reserve(pf, "sb", "/a"));    /* pending: not twice */
	CHECK(prefetch_has(pf, "sb", "/a"));
	CHECK(!prefetch_take(pf, "sb", "/a", 3, &T1, 7, &d, &n));   /* pending */
	prefetch_fill(pf, "sb", "/a", dup_bytes("abc"), 3, 3, &T1, 7, 15);
	CHECK(!prefetch_has(pf, "other", "/a"));
	CHECK(prefetch_take(pf, "sb", "/a", 3, &T1, 7, &d, &n));
	CHECK_INT(n, 3);
	CHECK(d && !memcmp(d, "abc", 3));
	free(d);
	/* taken: gone */
	CHECK(!prefetch_take(pf, "sb", "/a", 3, &T1, 7, &d, &n));
	CHECK(!prefetch_has(pf, "sb", "/a"));
	prefetch_free(pf);
}

UNIT_TEST(test_stale_is_dropped)
{
	struct prefetch *pf = prefetch_new(1 << 20, 100);
	struct prefetch_stats st;
	char *d;
	size_t n;
	struct { off_t size; const struct timespec *mt; uint64_t gen; double at; } bad[] = {
		{ 4, &T1, 7, 10 },     /* another size */
		{ 3, &T2, 7, 10 },     /* another mtime */
		{ 3, &T1, 8, 10 },     /* something changed through the mount */
		{ 3, &T1, 7, 15 },     /* expired */
	};

	prefetch_set_clock(pf, fake_now);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		clock_now = 10;
		CHECK(prefetch_reserve(pf, "sb", "/a"));
		prefetch_fill(pf, "sb", "/a", dup_bytes("abc"), 3, 3, &T1, 7, 15);
		clock_now = bad[i].at;
		CHECK(!prefetch_take(pf, "sb", "/a", bad[i].size, bad[i].mt, bad[i].gen, &d, &n));
		CHECK(d == NULL);
		CHECK(!prefetch_has(pf, "sb", "/a"));
	}
	/* A file whose content is not the listed size (changed between the
	 * listing and the fetch) is never handed out. */
	clock_now = 10;
	CHECK(prefetch_reserve(pf, "sb", "/b"));
	prefetch_fill(pf, "sb", "/b", dup_bytes("abcd"), 4, 3, &T1, 7, 15);
	CHECK(!prefetch_take(pf, "sb", "/b", 3, &T1, 7, &d, &n));
	CHECK(!prefetch_take(pf, "sb", "/b", 4, &T1, 7, &d, &n));
	prefetch_get_stats(pf, &st);
	CHECK_INT(st.entries, 0);
	CHECK_INT(st.bytes, 0);
	CHECK_INT(st.stale, 5);
	prefetch_free(pf);
}

UNIT_TEST(test_bounds_evict_oldest)
{
	struct prefetch *pf = prefetch_new(10, 3);
	struct prefetch_stats st;
	char *d;
	size_t n;

	prefetch_set_clock(pf, fake_now);
	clock_now = 1;
	for (int i = 0; i < 3; i++) {
		char p[8];

		snprintf(p, sizeof(p), "/%d", i);
		CHECK(prefetch_reserve(pf, "sb", p));
		prefetch_fill(pf, "sb", p, dup_bytes("xxxx"), 4, 4, &T1, 1, 100);
	}
	prefetch_get_stats(pf, &st);
	CHECK(st.bytes <= 10);
	CHECK(!prefetch_has(pf, "sb", "/0"));     /* the oldest went for the bytes */
	CHECK(prefetch_has(pf, "sb", "/2"));
	/* the entry bound: a fourth reservation evicts the oldest filled one */
	CHECK(prefetch_reserve(pf, "sb", "/3"));
	CHECK(prefetch_reserve(pf, "sb", "/4"));
	CHECK(prefetch_reserve(pf, "sb", "/5"));
	CHECK(!prefetch_reserve(pf, "sb", "/6"));  /* all pending: none evicted */
	prefetch_cancel(pf, "sb", "/3");
	CHECK(!prefetch_has(pf, "sb", "/3"));
	/* a fill for a reservation that went is freed, not kept */
	prefetch_fill(pf, "sb", "/3", dup_bytes("x"), 1, 1, &T1, 1, 100);
	CHECK(!prefetch_take(pf, "sb", "/3", 1, &T1, 1, &d, &n));
	/* larger than the whole store: dropped */
	prefetch_fill(pf, "sb", "/4", dup_bytes("0123456789ab"), 12, 12, &T1, 1, 100);
	CHECK(!prefetch_has(pf, "sb", "/4"));
	prefetch_fill(pf, "sb", "/5", dup_bytes("ok"), 2, 2, &T1, 1, 100);
	prefetch_drop_sandbox(pf, "other");
	CHECK(prefetch_has(pf, "sb", "/5"));
	prefetch_drop_sandbox(pf, "sb");
	CHECK(!prefetch_has(pf, "sb", "/5"));
	prefetch_get_stats(pf, &st);
	CHECK_INT(st.entries, 0);
	CHECK_INT(st.bytes, 0);
	prefetch_free(pf);
}

UNIT_TEST(test_expired_entries_are_purged)
{
	struct prefetch *pf = prefetch_new(1 << 20, 100);
	struct prefetch_stats st;

	prefetch_set_clock(pf, fake_now);
	clock_now = 1;
	CHECK(prefetch_reserve(pf, "sb", "/a"));
	prefetch_fill(pf, "sb", "/a", dup_bytes("abc"), 3, 3, &T1, 1, 2);
	clock_now = 3;
	CHECK(prefetch_reserve(pf, "sb", "/b"));   /* purges /a */
	prefetch_get_stats(pf, &st);
	CHECK_INT(st.bytes, 0);
	CHECK(!prefetch_has(pf, "sb", "/a"));
	prefetch_free(pf);   /* frees the pending /b */
}

UNIT_TEST(test_own_upload_any_generation_until_dropped)
{
	struct prefetch *pf = prefetch_new(1 << 20, 100);
	char *d;
	size_t n;

	prefetch_set_clock(pf, fake_now);
	clock_now = 10;
	/* the mount's own upload: whatever the generation, same size and time */
	prefetch_put_own(pf, "sb", "/d/a", dup_bytes("abc"), 3, &T1, 15);
	CHECK(!prefetch_take(pf, "sb", "/d/a", 3, &T2, 9, &d, &n));    /* another time: dropped */
	CHECK(!prefetch_has(pf, "sb", "/d/a"));
	prefetch_put_own(pf, "sb", "/d/a", dup_bytes("abc"), 3, &T1, 15);
	CHECK(prefetch_take(pf, "sb", "/d/a", 3, &T1, 9, &d, &n));
	CHECK_INT(n, 3);
	CHECK(d && !memcmp(d, "abc", 3));
	free(d);
	/* a rename or delete of the path or a directory above drops it, not others */
	prefetch_put_own(pf, "sb", "/d/a", dup_bytes("abc"), 3, &T1, 15);
	prefetch_put_own(pf, "sb", "/dd", dup_bytes("x"), 1, &T1, 15);
	prefetch_drop_path(pf, "sb", "/d");
	CHECK(!prefetch_has(pf, "sb", "/d/a"));
	CHECK(prefetch_has(pf, "sb", "/dd"));
	/* a pending fetch of the path is left alone, the upload's content not kept */
	CHECK(prefetch_reserve(pf, "sb", "/p"));
	prefetch_put_own(pf, "sb", "/p", dup_bytes("new"), 3, &T1, 15);
	CHECK(!prefetch_take(pf, "sb", "/p", 3, &T1, 9, &d, &n));
	prefetch_free(pf);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(test_take_when_everything_matches),
		UNIT_CASE(test_stale_is_dropped),
		UNIT_CASE(test_bounds_evict_oldest),
		UNIT_CASE(test_expired_entries_are_purged),
		UNIT_CASE(test_own_upload_any_generation_until_dropped),
	};

	return unit_run("prefetch", cases, sizeof(cases) / sizeof(cases[0]));
}
