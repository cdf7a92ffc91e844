/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "unit.h"
#include "urlenc.h"

static char *q(const char *s)
{
	static char out[1024];
	struct strbuf sb = STRBUF_INIT;

	url_add_query_value(&sb, s);
	snprintf(out, sizeof(out), "%s", sb_str(&sb));
	sb_free(&sb);
	return out;
}

static char *seg(const char *s)
{
	static char out[1024];
	struct strbuf sb = STRBUF_INIT;

	url_add_path_segment(&sb, s);
	snprintf(out, sizeof(out), "%s", sb_str(&sb));
	sb_free(&sb);
	return out;
}

UNIT_TEST(query_unreserved_and_slash_kept)
{
	CHECK_STR(q("/home/daytona/a-b_c.d~e"), "/home/daytona/a-b_c.d~e");
	CHECK_STR(q("AZaz09"), "AZaz09");
	CHECK_STR(q(""), "");
}

UNIT_TEST(query_plus_and_reserved_encoded)
{
	/* '+' must not reach the toolbox raw: Go decodes it as a space. */
	CHECK_STR(q("a+b"), "a%2Bb");
	CHECK_STR(q("a b"), "a%20b");
	CHECK_STR(q("x&y=z?#%"), "x%26y%3Dz%3F%23%25");
	CHECK_STR(q("c:;,@!$'()*[]"), "c%3A%3B%2C%40%21%24%27%28%29%2A%5B%5D");
	CHECK_STR(q("tab\tnl\n"), "tab%09nl%0A");
}

UNIT_TEST(query_utf8_and_high_bytes)
{
	CHECK_STR(q("caf\xc3\xa9"), "caf%C3%A9");
	CHECK_STR(q("\xff\x80"), "%FF%80");
	CHECK_STR(q("\x01"), "%01");
}

UNIT_TEST(path_segment_encodes_slash)
{
	CHECK_STR(seg("a/b"), "a%2Fb");
	CHECK_STR(seg("my sandbox"), "my%20sandbox");
	CHECK_STR(seg("7b0c7d1e-5a8e-4a53"), "7b0c7d1e-5a8e-4a53");
	CHECK_STR(seg(".."), "..");
	CHECK_STR(seg("a+b?"), "a%2Bb%3F");
}

UNIT_TEST(query_appends)
{
	struct strbuf sb = STRBUF_INIT;

	sb_adds(&sb, "http://h/files?path=");
	url_add_query_value(&sb, "/a b");
	CHECK_STR(sb_str(&sb), "http://h/files?path=/a%20b");
	CHECK_INT(sb.len, strlen("http://h/files?path=/a%20b"));
	sb_free(&sb);
}

UNIT_TEST(join)
{
	char buf[64];

	CHECK(path_join(buf, sizeof(buf), "/a/b", "c"));
	CHECK_STR(buf, "/a/b/c");
	CHECK(path_join(buf, sizeof(buf), "/", "c"));
	CHECK_STR(buf, "/c");
	CHECK(path_join(buf, sizeof(buf), "", "c"));
	CHECK_STR(buf, "/c");
	CHECK(path_join(buf, sizeof(buf), "/a/", "c"));
	CHECK_STR(buf, "/a/c");
	CHECK(path_join(buf, sizeof(buf), "/a", ""));
	CHECK_STR(buf, "/a");
	CHECK(path_join(buf, sizeof(buf), "/", ""));
	CHECK_STR(buf, "/");
}

UNIT_TEST(join_overflow)
{
	char buf[8];

	CHECK(path_join(buf, sizeof(buf), "/abc", "de"));      /* "/abc/de" is 7 + NUL */
	CHECK_STR(buf, "/abc/de");
	CHECK(!path_join(buf, sizeof(buf), "/abc", "def"));
	CHECK_STR(buf, "");
	CHECK(!path_join(buf, 0, "/a", "b"));
}

UNIT_TEST(split)
{
	char parent[64];
	const char *base = NULL;

	CHECK(path_split("/a/b/c", parent, sizeof(parent), &base));
	CHECK_STR(parent, "/a/b");
	CHECK_STR(base, "c");
	CHECK(path_split("/c", parent, sizeof(parent), &base));
	CHECK_STR(parent, "/");
	CHECK_STR(base, "c");
	CHECK(path_split("/", parent, sizeof(parent), &base));
	CHECK_STR(parent, "/");
	CHECK_STR(base, "");
	CHECK(path_split("rel", parent, sizeof(parent), &base));
	CHECK_STR(parent, ".");
	CHECK_STR(base, "rel");
}

UNIT_TEST(split_overflow)
{
	char parent[4];
	const char *base;

	CHECK(!path_split("/abcd/e", parent, sizeof(parent), &base));
	CHECK_STR(parent, "");
	CHECK(!path_split("/abc/e", parent, sizeof(parent), &base));   /* 4 chars + NUL */
	CHECK(path_split("/ab/e", parent, sizeof(parent), &base));
	CHECK_STR(parent, "/ab");
	CHECK_STR(base, "e");
}

UNIT_TEST(root)
{
	CHECK(path_is_root(""));
	CHECK(path_is_root("/"));
	CHECK(!path_is_root("/a"));
	CHECK(!path_is_root("a"));
}

UNIT_TEST(within)
{
	CHECK(path_is_within("/a/b", "/a"));
	CHECK(path_is_within("/a", "/a"));
	CHECK(path_is_within("/a/b/c", "/a/"));
	CHECK(!path_is_within("/ab", "/a"));
	CHECK(!path_is_within("/a", "/a/b"));
	CHECK(path_is_within("/x", "/"));
	CHECK(path_is_within("/", "/"));
	CHECK(!path_is_within("rel", "/"));
}

static char *shq(const char *s)
{
	static char out[1024];
	struct strbuf sb = STRBUF_INIT;

	sh_quote(&sb, s);
	snprintf(out, sizeof(out), "%s", sb_str(&sb));
	sb_free(&sb);
	return out;
}

UNIT_TEST(shell_quote)
{
	CHECK_STR(shq("abc"), "'abc'");
	CHECK_STR(shq(""), "''");
	CHECK_STR(shq("it's"), "'it'\\''s'");
	CHECK_STR(shq("'"), "''\\'''");
	CHECK_STR(shq("$(rm -rf /) `x` \"y\" \\ \n;|&"), "'$(rm -rf /) `x` \"y\" \\ \n;|&'");
}

UNIT_TEST(shell_quote_roundtrip)
{
	/* What sh makes of the quoted word must be the original bytes. */
	const char *orig = "a'b c\"$HOME\\n'\n*";
	struct strbuf cmd = STRBUF_INIT;
	char out[256] = "";
	FILE *f;
	size_t n;

	sb_adds(&cmd, "printf %s ");
	sh_quote(&cmd, orig);
	f = popen(sb_str(&cmd), "r");
	CHECK(f != NULL);
	if (f) {
		n = fread(out, 1, sizeof(out) - 1, f);
		out[n] = '\0';
		CHECK_INT(pclose(f), 0);
		CHECK_STR(out, orig);
	}
	sb_free(&cmd);
}

static char *b64(const char *s, size_t n)
{
	static char out[256];
	struct strbuf sb = STRBUF_INIT;

	base64_encode(&sb, s, n);
	snprintf(out, sizeof(out), "%s", sb_str(&sb));
	sb_free(&sb);
	return out;
}

UNIT_TEST(base64_rfc4648_vectors)
{
	CHECK_STR(b64("", 0), "");
	CHECK_STR(b64("f", 1), "Zg==");
	CHECK_STR(b64("fo", 2), "Zm8=");
	CHECK_STR(b64("foo", 3), "Zm9v");
	CHECK_STR(b64("foob", 4), "Zm9vYg==");
	CHECK_STR(b64("fooba", 5), "Zm9vYmE=");
	CHECK_STR(b64("foobar", 6), "Zm9vYmFy");
	CHECK_STR(b64("\xff\xfe\x00\x01", 4), "//4AAQ==");
}

/* Decodes text: 0 and the bytes in *out (n in *len), else the error. */
static int unb64(const char *text, struct strbuf *out)
{
	sb_reset(out);
	return base64_decode(out, text, strlen(text));
}

UNIT_TEST(base64_decode_exact)
{
	struct strbuf out = STRBUF_INIT, enc = STRBUF_INIT;
	unsigned char all[256];

	CHECK_INT(unb64("", &out), 0);
	CHECK_INT(out.len, 0);
	CHECK_INT(unb64("Zg==", &out), 0);
	CHECK_INT(out.len, 1);
	CHECK(memcmp(out.buf, "f", 1) == 0);
	CHECK_INT(unb64("Zm8=", &out), 0);
	CHECK(out.len == 2 && memcmp(out.buf, "fo", 2) == 0);
	CHECK_INT(unb64("Zm9vYmFy", &out), 0);
	CHECK(out.len == 6 && memcmp(out.buf, "foobar", 6) == 0);
	CHECK_INT(unb64("//4AAQ==", &out), 0);
	CHECK(out.len == 4 && memcmp(out.buf, "\xff\xfe\x00\x01", 4) == 0);
	/* base64(1) wraps at 76 columns: line breaks are skipped */
	CHECK_INT(unb64("Zm9v\nYmFy\n", &out), 0);
	CHECK(out.len == 6 && memcmp(out.buf, "foobar", 6) == 0);
	CHECK_INT(unb64("Zm9v\r\nYg==\r\n", &out), 0);
	CHECK(out.len == 4 && memcmp(out.buf, "foob", 4) == 0);
	/* every byte value round-trips */
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)(255 - i);
	for (size_t n = 0; n <= sizeof(all); n += 37) {
		sb_reset(&enc);
		base64_encode(&enc, all, n);
		CHECK_INT(unb64(sb_str(&enc), &out), 0);
		CHECK(out.len == n && (n == 0 || memcmp(out.buf, all, n) == 0));
	}
	sb_free(&enc);
	sb_free(&out);
}

UNIT_TEST(base64_decode_refuses)
{
	struct strbuf out = STRBUF_INIT;

	CHECK_INT(unb64("Zm9", &out), -EINVAL);           /* a short quantum */
	CHECK_INT(unb64("Zm9vY", &out), -EINVAL);
	CHECK_INT(unb64("Zg=", &out), -EINVAL);           /* half the padding */
	CHECK_INT(unb64("Z===", &out), -EINVAL);
	CHECK_INT(unb64("=Zg=", &out), -EINVAL);
	CHECK_INT(unb64("Zg==Zg==", &out), -EINVAL);      /* data after padding */
	CHECK_INT(unb64("Zh==", &out), -EINVAL);          /* bits an encoder leaves zero */
	CHECK_INT(unb64("Zm9=", &out), -EINVAL);
	CHECK_INT(unb64("Zm 9v", &out), -EINVAL);         /* a foreign byte */
	CHECK_INT(unb64("Zm9v\xef\xbf\xbd", &out), -EINVAL); /* U+FFFD from a mangled answer */
	CHECK_INT(unb64("Zm-v", &out), -EINVAL);          /* base64url is another alphabet */
	sb_free(&out);
}

UNIT_MAIN("urlenc",
	  UNIT_CASE(query_unreserved_and_slash_kept),
	  UNIT_CASE(query_plus_and_reserved_encoded),
	  UNIT_CASE(query_utf8_and_high_bytes),
	  UNIT_CASE(path_segment_encodes_slash),
	  UNIT_CASE(query_appends),
	  UNIT_CASE(join),
	  UNIT_CASE(join_overflow),
	  UNIT_CASE(split),
	  UNIT_CASE(split_overflow),
	  UNIT_CASE(root),
	  UNIT_CASE(within),
	  UNIT_CASE(shell_quote),
	  UNIT_CASE(shell_quote_roundtrip),
	  UNIT_CASE(base64_rfc4648_vectors),
	  UNIT_CASE(base64_decode_exact),
	  UNIT_CASE(base64_decode_refuses))
