/* SPDX-License-Identifier: Apache-2.0 */
#include "unit.h"
#include "inode.h"

#include <stdint.h>
#include <stdio.h>

UNIT_TEST(numbers_depend_on_namespace_and_path_only)
{
	struct ino_table *t = ino_table_new(8), *u = ino_table_new(8);

	CHECK(ino_of(t, "sb1", "/a") == ino_of(u, "sb1", "/a"));   /* no state: stable */
	CHECK(ino_of(t, "sb1", "/a") != ino_of(t, "sb2", "/a"));
	CHECK(ino_of(t, "sb1", "/a") != ino_of(t, "sb1", "/b"));
	CHECK(ino_of(t, "sb1", "/a") != ino_of(t, "sb1a", ""));    /* the NUL between counts */
	CHECK(ino_of(t, "", "/") > 1);
	CHECK(ino_of(t, "sb1", "/a") < (UINT64_C(1) << 62));   /* printed as signed, still positive */
	CHECK_INT(ino_table_size(t), 0);
	ino_table_free(t);
	ino_table_free(u);
}

UNIT_TEST(rename_moves_the_number_and_renews_the_old_name)
{
	struct ino_table *t = ino_table_new(8);
	uint64_t a = ino_of(t, "s", "/a"), b = ino_of(t, "s", "/b");

	ino_rename(t, "s", "/a", "/b");
	CHECK(ino_of(t, "s", "/b") == a);
	CHECK(ino_of(t, "s", "/a") != a);
	CHECK(ino_of(t, "s", "/a") != b);
	CHECK(ino_of(t, "s", "/a") > 1);
	CHECK(ino_of(t, "s", "/a") < (UINT64_C(1) << 63));
	/* and back: /a gets the object's number again, the table forgets it */
	ino_rename(t, "s", "/b", "/a");
	CHECK(ino_of(t, "s", "/a") == a);
	CHECK(ino_of(t, "s", "/b") != a);
	ino_table_free(t);
}

UNIT_TEST(table_is_bounded)
{
	struct ino_table *t = ino_table_new(4);
	char from[32], to[32];

	for (int i = 0; i < 100; i++) {
		snprintf(from, sizeof(from), "/f%d", i);
		snprintf(to, sizeof(to), "/t%d", i);
		ino_rename(t, "s", from, to);
		CHECK(ino_table_size(t) <= 4);
	}
	{
		struct ino_table *fresh = ino_table_new(4);

		/* the newest rename is still known; the oldest was evicted */
		CHECK(ino_of(t, "s", "/t99") == ino_of(fresh, "s", "/f99"));
		CHECK(ino_of(t, "s", "/t0") == ino_of(fresh, "s", "/t0"));   /* evicted: its hash */
		ino_table_free(fresh);
	}
	ino_table_free(t);
}

UNIT_MAIN("inode",
	UNIT_CASE(numbers_depend_on_namespace_and_path_only),
	UNIT_CASE(rename_moves_the_number_and_renews_the_old_name),
	UNIT_CASE(table_is_bounded))
