/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for multipart.c: the streaming multipart parser. */
#include <errno.h>
#include <stdint.h>

#include "multipart.h"
#include "unit.h"

#define B "DAYTONA-FILE-BOUNDARY"

struct rec {
	int parts, ends;
	char names[8][256];
	char files[8][256];
	int64_t lengths[8];
	char data[8][512];
	size_t dlen[8];
	int fail_at_part;           /* part_begin of this part (1-based) fails */
};

static int on_begin(void *ctx, const struct mp_part *p)
{
	struct rec *r = ctx;

	if (r->parts >= 8)
		return -E2BIG;
	r->parts++;
	if (r->fail_at_part == r->parts)
		return -EFBIG;
	snprintf(r->names[r->parts - 1], 256, "%.200s", p->name);
	snprintf(r->files[r->parts - 1], 256, "%s%.200s", p->filename_ext ? "*" : "", p->filename);
	r->lengths[r->parts - 1] = p->content_length;
	return 0;
}

static int on_data(void *ctx, const void *d, size_t n)
{
	struct rec *r = ctx;
	size_t i = (size_t)r->parts - 1;

	if (r->dlen[i] + n > sizeof(r->data[i]))
		return -E2BIG;
	memcpy(r->data[i] + r->dlen[i], d, n);
	r->dlen[i] += n;
	return 0;
}

static int on_end(void *ctx)
{
	((struct rec *)ctx)->ends++;
	return 0;
}

static const struct mp_callbacks CB = { on_begin, on_data, on_end };

/* Two parts as the daemon writes them: a file (with a Content-Length and a
 * delimiter-like line inside its data) and an error part. */
static const char BODY[] =
	"--" B "\r\n"
	"Content-Disposition: form-data; name=\"file\"; filename=\"/home/x_y.c\"; "
	"filename*=utf-8''%2Fhome%2Fx%C3%A9y.c\r\n"
	"Content-Length: 30\r\n"
	"Content-Type: text/x-c\r\n"
	"\r\n"
	"ab\r\n--" B "\r\nx"   /* 30 bytes, holding a delimiter */
	"\r\n--" B "\r\n"
	"Content-Disposition: form-data; name=\"error\"; filename=\"/nope\"; filename*=utf-8''%2Fnope\r\n"
	"Content-Type: application/json; charset=utf-8\r\n"
	"\r\n"
	"{\"statusCode\":404}"
	"\r\n--" B "--\r\n";

static int parse_in_chunks(const char *body, size_t len, size_t chunk, struct rec *r)
{
	struct mp_parser p;
	int rc;

	if (mp_init(&p, B, &CB, r) < 0)
		return -100;
	rc = 0;
	for (size_t off = 0; off < len && rc == 0; off += chunk)
		rc = mp_feed(&p, body + off, len - off < chunk ? len - off : chunk);
	if (rc == 0)
		rc = mp_finish(&p);
	mp_free(&p);
	return rc;
}

UNIT_TEST(test_two_parts_any_chunking)
{
	size_t len = sizeof(BODY) - 1;

	for (size_t chunk = 1; chunk <= len; chunk++) {
		struct rec r = { 0 };
		int rc = parse_in_chunks(BODY, len, chunk, &r);

		CHECK_INT(rc, 0);
		CHECK_INT(r.parts, 2);
		CHECK_INT(r.ends, 2);
		CHECK_STR(r.names[0], "file");
		CHECK_STR(r.files[0], "*/home/x\xc3\xa9y.c");
		CHECK_INT(r.lengths[0], 30);
		CHECK_INT(r.dlen[0], 30);
		CHECK(!memcmp(r.data[0], "ab\r\n--" B "\r\nx", 30));
		CHECK_STR(r.names[1], "error");
		CHECK_STR(r.files[1], "*/nope");
		CHECK_INT(r.lengths[1], -1);
		CHECK_INT(r.dlen[1], 18);
		CHECK(!memcmp(r.data[1], "{\"statusCode\":404}", 18));
		if (unit_failures_in_test) {
			fprintf(stderr, "  (chunk size %zu)\n", chunk);
			break;
		}
	}
}

UNIT_TEST(test_empty_part_and_plain_filename)
{
	static const char body[] =
		"preamble to skip\r\n--" B "\r\n"
		"content-disposition: form-data; name=\"file\"; filename=\"a \\\"q\\\".txt\"\r\n"
		"content-length: 0\r\n\r\n"
		"\r\n--" B "  \r\n"
		"\r\n"
		"no headers, no length"
		"\r\n--" B "--";
	struct rec r = { 0 };

	CHECK_INT(parse_in_chunks(body, sizeof(body) - 1, 7, &r), 0);
	CHECK_INT(r.parts, 2);
	CHECK_STR(r.files[0], "a \"q\".txt");
	CHECK_INT(r.lengths[0], 0);
	CHECK_INT(r.dlen[0], 0);
	CHECK_STR(r.names[1], "");
	CHECK_INT(r.dlen[1], 21);
}

UNIT_TEST(test_truncated_is_an_error)
{
	size_t len = sizeof(BODY) - 1;

	/* Every cut before the closing delimiter's "--" fails at mp_finish. */
	for (size_t cut = 0; cut < len - 4; cut++) {
		struct rec r = { 0 };

		CHECK_INT(parse_in_chunks(BODY, cut, 5, &r), -EPROTO);
	}
}

UNIT_TEST(test_malformed)
{
	static const char *bad[] = {
		/* a part longer than its Content-Length says */
		"--" B "\r\nContent-Length: 2\r\n\r\nabc\r\n--" B "--\r\n",
		/* a bad Content-Length */
		"--" B "\r\nContent-Length: 1x\r\n\r\na\r\n--" B "--\r\n",
		"--" B "\r\nContent-Length: -1\r\n\r\na\r\n--" B "--\r\n",
		/* a header line without a colon */
		"--" B "\r\nnonsense\r\n\r\na\r\n--" B "--\r\n",
		/* garbage after a delimiter */
		"--" B "xy\r\n\r\na\r\n--" B "--\r\n",
		/* an unterminated quoted string */
		"--" B "\r\nContent-Disposition: form-data; filename=\"abc\r\n\r\na\r\n--" B "--\r\n",
		/* never a delimiter */
		"just some bytes",
		"",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rec r = { 0 };
		int rc = parse_in_chunks(bad[i], strlen(bad[i]), 3, &r);

		if (rc != -EPROTO)
			fprintf(stderr, "  case %zu: %d\n", i, rc);
		CHECK_INT(rc, -EPROTO);
	}
}

UNIT_TEST(test_header_block_bounded)
{
	struct mp_parser p;
	struct rec r = { 0 };
	char line[1024];
	int rc = 0;

	CHECK_INT(mp_init(&p, B, &CB, &r), 0);
	CHECK_INT(mp_feed(&p, "--" B "\r\n", strlen("--" B "\r\n")), 0);
	memset(line, 'h', sizeof(line));
	for (int i = 0; i < 64 && rc == 0; i++)
		rc = mp_feed(&p, line, sizeof(line));
	CHECK_INT(rc, -EPROTO);
	CHECK_INT(mp_feed(&p, "x", 1), -EPROTO);   /* stays failed */
	mp_free(&p);
}

UNIT_TEST(test_callback_error_stops)
{
	struct rec r = { .fail_at_part = 2 };

	CHECK_INT(parse_in_chunks(BODY, sizeof(BODY) - 1, 16, &r), -EFBIG);
	CHECK_INT(r.ends, 1);
}

UNIT_TEST(test_boundary_from_content_type)
{
	char b[MP_BOUNDARY_MAX + 1];

	CHECK(mp_boundary_from_content_type("multipart/form-data; boundary=DAYTONA-FILE-BOUNDARY", b, sizeof(b)));
	CHECK_STR(b, "DAYTONA-FILE-BOUNDARY");
	CHECK(mp_boundary_from_content_type("Multipart/Form-Data;charset=x; Boundary=\"a'b c\"", b, sizeof(b)));
	CHECK_STR(b, "a'b c");
	CHECK(!mp_boundary_from_content_type("application/json", b, sizeof(b)));
	CHECK(!mp_boundary_from_content_type("multipart/form-data", b, sizeof(b)));
	CHECK(!mp_boundary_from_content_type("multipart/form-data; boundary=", b, sizeof(b)));
	CHECK(!mp_boundary_from_content_type("multipart/form-data; boundary=a\"b", b, sizeof(b)));
	CHECK(!mp_boundary_from_content_type(NULL, b, sizeof(b)));
	{
		char longb[200] = "multipart/form-data; boundary=";

		memset(longb + strlen(longb), 'x', 100);
		CHECK(!mp_boundary_from_content_type(longb, b, sizeof(b)));
	}
}

/* Random bytes, cut anywhere: never a crash (the sanitizer build checks). */
UNIT_TEST(test_random_input_never_crashes)
{
	uint32_t seed = 12345;
	char buf[600];

	for (int round = 0; round < 2000; round++) {
		struct rec r = { 0 };
		size_t len = (size_t)(round % 600);

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			/* mostly pieces of a real body, so that the parser goes deep */
			buf[i] = (seed >> 16) % 4 ? BODY[(seed >> 8) % (sizeof(BODY) - 1)] : (char)(seed >> 20);
		}
		if (round % 3 == 0 && len > 30)
			memcpy(buf, BODY, 30);
		(void)parse_in_chunks(buf, len, 1 + (size_t)(round % 13), &r);
	}
	CHECK(1);
}

int main(void)
{
	static const struct unit_case cases[] = {
		UNIT_CASE(test_two_parts_any_chunking),
		UNIT_CASE(test_empty_part_and_plain_filename),
		UNIT_CASE(test_truncated_is_an_error),
		UNIT_CASE(test_malformed),
		UNIT_CASE(test_header_block_bounded),
		UNIT_CASE(test_callback_error_stops),
		UNIT_CASE(test_boundary_from_content_type),
		UNIT_CASE(test_random_input_never_crashes),
	};

	return unit_run("multipart", cases, sizeof(cases) / sizeof(cases[0]));
}
