/* SPDX-License-Identifier: Apache-2.0 */
#include "unit.h"
#include "rename_pin.h"

#include <linux/fuse.h>
#include <stdint.h>
#include <string.h>

/* A request as the kernel writes it: header, argument, old and new name. */
static size_t make(unsigned char *buf, uint32_t opcode, uint32_t flags, const char *names, size_t names_len)
{
	struct fuse_in_header h = { .opcode = opcode, .nodeid = 7, .unique = 2 };
	size_t arg = opcode == FUSE_RENAME2 ? sizeof(struct fuse_rename2_in) : sizeof(struct fuse_rename_in);
	struct fuse_rename2_in a = { .newdir = 9, .flags = flags };

	h.len = (uint32_t)(sizeof(h) + arg + names_len);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &a, arg);
	memcpy(buf + sizeof(h) + arg, names, names_len);
	return h.len;
}

UNIT_TEST(a_rename_names_its_destination)
{
	unsigned char buf[256];
	const char *name = NULL;
	uint64_t dir = 0;
	size_t len = 0, n;

	n = make(buf, FUSE_RENAME, 0, ".doc.txt.tmp1\0doc.txt", 22);
	CHECK(rename_pin_destination(buf, n, &dir, &name, &len));
	CHECK_INT(dir, 9);
	CHECK_INT(len, 7);
	CHECK(name && !memcmp(name, "doc.txt", 8));
	/* RENAME2 without flags too (what renameat2 with flags 0 may send) */
	n = make(buf, FUSE_RENAME2, 0, "a\0bb", 5);
	CHECK(rename_pin_destination(buf, n, &dir, &name, &len));
	CHECK_INT(len, 2);
	CHECK(!memcmp(name, "bb", 3));
}

UNIT_TEST(no_pin_for_flags_other_requests_or_a_cut_request)
{
	/* RENAME_NOREPLACE, RENAME_EXCHANGE (libfuse hides before the mount
	 * is asked), another request; names without their NULs, an empty new
	 * name */
	static const struct {
		uint32_t opcode, flags;
		const char *names;
		size_t len;
	} none[] = {
		{ FUSE_RENAME2, 1, "a\0b", 4 }, { FUSE_RENAME2, 2, "a\0b", 4 }, { FUSE_LINK, 0, "a\0b", 4 },
		{ FUSE_RENAME, 0, "a\0b", 3 },  { FUSE_RENAME, 0, "ab", 2 },     { FUSE_RENAME, 0, "a\0", 3 },
	};
	unsigned char buf[256];
	const char *name;
	uint64_t dir;
	size_t len;

	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		size_t n = make(buf, none[i].opcode, none[i].flags, none[i].names, none[i].len);

		CHECK(!rename_pin_destination(buf, n, &dir, &name, &len));
	}
	/* a short header */
	CHECK(!rename_pin_destination(buf, sizeof(struct fuse_in_header) + 4, &dir, &name, &len));
	CHECK(!rename_pin_destination(buf, 8, &dir, &name, &len));
}

UNIT_MAIN("rename_pin",
	UNIT_CASE(a_rename_names_its_destination),
	UNIT_CASE(no_pin_for_flags_other_requests_or_a_cut_request))
