/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <unistd.h>

#include "tmpname.h"
#include "unit.h"

UNIT_TEST(name_has_prefix_pid_random_and_count)
{
	char a[128];

	CHECK(tmp_name_from(a, sizeof(a), ".daytonafs-upload", 42, 0x0123456789abcdefULL, 7));
	CHECK_STR(a, ".daytonafs-upload.42.0123456789abcdef.7");
	CHECK(!tmp_name_from(a, 10, ".daytonafs-upload", 42, 1, 7));
}

/* Two daemons in two containers can both be pid 7 and both at their first
 * upload: their names must still differ. */
UNIT_TEST(same_pid_and_count_in_two_processes_differ)
{
	char a[128], b[128];

	CHECK(tmp_name_from(a, sizeof(a), "script", 7, tmp_random(), 1));
	CHECK(tmp_name_from(b, sizeof(b), "script", 7, tmp_random(), 1));
	CHECK(strcmp(a, b) != 0);
}

UNIT_TEST(successive_names_differ)
{
	char a[128], b[128], pid[32];

	CHECK(tmp_name(a, sizeof(a), "x"));
	CHECK(tmp_name(b, sizeof(b), "x"));
	CHECK(strcmp(a, b) != 0);
	snprintf(pid, sizeof(pid), "x.%ld.", (long)getpid());
	CHECK(!strncmp(a, pid, strlen(pid)));
}

UNIT_MAIN("tmpname",
	  UNIT_CASE(name_has_prefix_pid_random_and_count),
	  UNIT_CASE(same_pid_and_count_in_two_processes_differ),
	  UNIT_CASE(successive_names_differ))
