/* SPDX-License-Identifier: Apache-2.0 */
#include <stdint.h>

#include "strbuf.h"
#include "unit.h"

UNIT_TEST(empty)
{
	struct strbuf sb = STRBUF_INIT;

	CHECK_STR(sb_str(&sb), "");
	CHECK_INT(sb.len, 0);
	CHECK(sb.buf == NULL);
	sb_free(&sb);
	CHECK(sb.buf == NULL);
}

UNIT_TEST(add_and_terminate)
{
	struct strbuf sb = STRBUF_INIT;

	sb_add(&sb, "abc", 3);
	CHECK_INT(sb.len, 3);
	CHECK_STR(sb_str(&sb), "abc");
	sb_adds(&sb, "def");
	sb_addc(&sb, '!');
	CHECK_STR(sb_str(&sb), "abcdef!");
	CHECK_INT(sb.len, 7);
	CHECK(sb.cap > sb.len);
	CHECK_INT(sb.buf[sb.len], '\0');
	sb_free(&sb);
}

UNIT_TEST(binary_bytes)
{
	struct strbuf sb = STRBUF_INIT;

	sb_add(&sb, "a\0b", 3);
	CHECK_INT(sb.len, 3);
	CHECK(memcmp(sb.buf, "a\0b", 4) == 0);
	sb_add(&sb, NULL, 0);
	CHECK_INT(sb.len, 3);
	sb_free(&sb);
}

UNIT_TEST(printf_appends)
{
	struct strbuf sb = STRBUF_INIT;

	sb_adds(&sb, "x=");
	sb_addf(&sb, "%d,%s,%05.1f", 42, "yz", 3.14159);
	CHECK_STR(sb_str(&sb), "x=42,yz,003.1");
	CHECK_INT(sb.len, strlen("x=42,yz,003.1"));
	sb_addf(&sb, "%s", "");
	CHECK_INT(sb.len, strlen("x=42,yz,003.1"));
	sb_free(&sb);
}

UNIT_TEST(grows_large)
{
	struct strbuf sb = STRBUF_INIT;
	size_t i;
	bool ok = true;

	for (i = 0; i < 100000; i++)
		sb_addc(&sb, (char)('a' + i % 26));
	CHECK_INT(sb.len, 100000);
	CHECK(!sb.oom);
	for (i = 0; i < 100000; i++)
		if (sb.buf[i] != (char)('a' + i % 26))
			ok = false;
	CHECK(ok);
	sb_addf(&sb, "%0*d", 70000, 7);
	CHECK_INT(sb.len, 170000);
	CHECK_INT(sb.buf[169999], '7');
	CHECK_INT(sb.buf[100000], '0');
	sb_free(&sb);
}

UNIT_TEST(reset_keeps_allocation)
{
	struct strbuf sb = STRBUF_INIT;
	char *before;

	sb_adds(&sb, "hello world");
	before = sb.buf;
	sb_reset(&sb);
	CHECK_INT(sb.len, 0);
	CHECK_STR(sb_str(&sb), "");
	CHECK(sb.buf == before);
	sb_adds(&sb, "again");
	CHECK_STR(sb_str(&sb), "again");
	sb_free(&sb);
	sb_reset(&sb);   /* on an empty, unallocated buffer */
	CHECK_STR(sb_str(&sb), "");
}

UNIT_TEST(detach)
{
	struct strbuf sb = STRBUF_INIT;
	char *s;

	sb_adds(&sb, "mine");
	s = sb_detach(&sb);
	CHECK_STR(s, "mine");
	CHECK(sb.buf == NULL);
	CHECK_INT(sb.len, 0);
	free(s);
	s = sb_detach(&sb);   /* empty: still a string */
	CHECK_STR(s, "");
	free(s);
}

UNIT_TEST(oom_sticky)
{
	struct strbuf sb = STRBUF_INIT;
	char *s;

	sb_adds(&sb, "abc");
	/* A length that cannot be allocated sets oom instead of overflowing. */
	sb_add(&sb, "x", SIZE_MAX - 1);
	CHECK(sb.oom);
	CHECK_INT(sb.len, 3);
	sb_adds(&sb, "more");   /* no-op once oom */
	CHECK_INT(sb.len, 3);
	s = sb_detach(&sb);
	CHECK(s == NULL);
	CHECK(sb.buf == NULL);
	CHECK(!sb.oom);
}

UNIT_TEST(copy_bounded)
{
	char buf[6];

	CHECK(str_copy(buf, sizeof(buf), "hello"));
	CHECK_STR(buf, "hello");
	CHECK(!str_copy(buf, sizeof(buf), "hello!"));
	CHECK_STR(buf, "hello");
	CHECK(str_copy(buf, sizeof(buf), ""));
	CHECK_STR(buf, "");
	CHECK(!str_copy(buf, 1, "x"));
	CHECK_STR(buf, "");
	CHECK(!str_copy(buf, 0, "x"));
}

UNIT_TEST(printf_bounded)
{
	char buf[8];

	CHECK(str_printf(buf, sizeof(buf), "%d-%s", 12, "ab"));
	CHECK_STR(buf, "12-ab");
	CHECK(str_printf(buf, sizeof(buf), "%s", "1234567"));
	CHECK(!str_printf(buf, sizeof(buf), "%s", "12345678"));
	CHECK_STR(buf, "1234567");
}

UNIT_TEST(utf8_validity)
{
	CHECK(utf8_valid("", 0));
	CHECK(utf8_valid("plain ascii", 11));
	CHECK(utf8_valid("\xc3\xa9", 2));                 /* e acute */
	CHECK(utf8_valid("\xe2\x82\xac", 3));             /* euro sign */
	CHECK(utf8_valid("\xf0\x9f\x98\x80", 4));         /* an emoji */
	CHECK(utf8_valid("\xf4\x8f\xbf\xbf", 4));         /* U+10FFFF */
	CHECK(!utf8_valid("\xff", 1));
	CHECK(!utf8_valid("a\xfe", 2));
	CHECK(!utf8_valid("\x80", 1));                     /* a continuation first */
	CHECK(!utf8_valid("\xc3", 1));                     /* cut short */
	CHECK(!utf8_valid("\xc3\xa9", 1));
	CHECK(!utf8_valid("\xc3(", 2));                    /* not a continuation */
	CHECK(!utf8_valid("\xc0\xaf", 2));                 /* an overlong "/" */
	CHECK(!utf8_valid("\xe0\x80\xaf", 3));             /* another */
	CHECK(!utf8_valid("\xed\xa0\x80", 3));             /* a surrogate */
	CHECK(!utf8_valid("\xf4\x90\x80\x80", 4));         /* past U+10FFFF */
}

UNIT_MAIN("strbuf",
	  UNIT_CASE(empty),
	  UNIT_CASE(add_and_terminate),
	  UNIT_CASE(binary_bytes),
	  UNIT_CASE(printf_appends),
	  UNIT_CASE(grows_large),
	  UNIT_CASE(reset_keeps_allocation),
	  UNIT_CASE(detach),
	  UNIT_CASE(oom_sticky),
	  UNIT_CASE(copy_bounded),
	  UNIT_CASE(printf_bounded),
	  UNIT_CASE(utf8_validity))
