/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of bdi.c: finding a FUSE mount's device in mountinfo. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bdi.h"
#include "unit.h"

static int find(const char *text, const char *mountpoint, unsigned *maj, unsigned *min)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int rc = bdi_find(f, mountpoint, maj, min);

	fclose(f);
	return rc;
}

static const char *const MOUNTINFO =
	"22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n"
	"47 22 0:41 / /mnt/sb rw,nosuid,nodev,relatime shared:30 - fuse.daytonafs daytonafs rw,user_id=0\n"
	"48 22 0:42 / /mnt/with\\040space rw,nosuid,nodev - fuse.daytonafs daytonafs rw\n"
	"49 22 0:43 / /mnt/disk rw - ext4 /dev/sdb1 rw\n"
	"50 47 0:44 / /mnt/sb rw,nosuid,nodev - fuse.daytonafs daytonafs rw\n"
	"51 22 0:45 / /mnt/plain rw - fuse /dev/fuse rw\n";

UNIT_TEST(finds_the_fuse_mount)
{
	unsigned maj = 9, min = 9;

	CHECK_INT(find(MOUNTINFO, "/mnt/plain", &maj, &min), 0);
	CHECK_INT(maj, 0);
	CHECK_INT(min, 45);
}

UNIT_TEST(the_mount_on_top_wins)
{
	unsigned maj = 9, min = 9;

	/* /mnt/sb was mounted over: the later line is the one in use. */
	CHECK_INT(find(MOUNTINFO, "/mnt/sb", &maj, &min), 0);
	CHECK_INT(min, 44);
}

UNIT_TEST(escaped_paths)
{
	unsigned maj = 9, min = 9;

	CHECK_INT(find(MOUNTINFO, "/mnt/with space", &maj, &min), 0);
	CHECK_INT(min, 42);
	CHECK_INT(find(MOUNTINFO, "/mnt/with\\040space", &maj, &min), -ENOENT);
}

UNIT_TEST(never_a_disk)
{
	unsigned maj = 9, min = 9;

	CHECK_INT(find(MOUNTINFO, "/mnt/disk", &maj, &min), -ENOENT);
	CHECK_INT(find(MOUNTINFO, "/", &maj, &min), -ENOENT);
	CHECK_INT(find(MOUNTINFO, "/mnt", &maj, &min), -ENOENT);
	CHECK_INT(find(MOUNTINFO, "/mnt/s", &maj, &min), -ENOENT);
	CHECK_INT(maj, 9);
	CHECK_INT(min, 9);
}

UNIT_TEST(malformed_lines)
{
	unsigned maj = 9, min = 9;

	CHECK_INT(find("garbage\n\n1 2 x:y / /m rw - fuse f rw\n1 2 0:5 / /m rw\n", "/m", &maj, &min),
		  -ENOENT);
	CHECK_INT(find("", "/m", &maj, &min), -ENOENT);
}

UNIT_MAIN("bdi",
	  UNIT_CASE(finds_the_fuse_mount),
	  UNIT_CASE(the_mount_on_top_wins),
	  UNIT_CASE(escaped_paths),
	  UNIT_CASE(never_a_disk),
	  UNIT_CASE(malformed_lines))
