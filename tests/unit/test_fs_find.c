/* SPDX-License-Identifier: Apache-2.0 */
/* The listing format of fs_files.c: find -printf records, and od's hex. */
#include "unit.h"
#include "fs_int.h"

#include <errno.h>

#define REC(s) s, sizeof(s) - 1

UNIT_TEST(regular_dir_and_special_modes)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	CHECK_INT(files_parse_find(REC("d/755/4096/1700000000.1234567890/0/0/3/1.25/2.5/./\n"
				       "f/4755/12/1600000000.0000000000/1001/1002/1/1.25/2.5/run/\n"
				       "d/1777/40/1500000000/0/0/2/1.25/2.5/tmp/\n"
				       "p/640/0/1.5/0/0/1/1.25/2.5/fifo/\n"),
				   &v, &n), 0);
	CHECK_INT(n, 4);
	if (n != 4)
		return;
	CHECK_STR(v[0].name, ".");
	CHECK_INT(v[0].st.st_mode, S_IFDIR | 0755);
	CHECK_INT(v[0].st.st_nlink, 3);
	CHECK_INT(v[0].st.st_mtim.tv_sec, 1700000000);
	CHECK_INT(v[0].st.st_mtim.tv_nsec, 123456789);
	CHECK_INT(v[0].st.st_atim.tv_sec, 1);      /* atime and ctime are the sandbox's own */
	CHECK_INT(v[0].st.st_atim.tv_nsec, 250000000);
	CHECK_INT(v[0].st.st_ctim.tv_sec, 2);
	CHECK_INT(v[0].st.st_ctim.tv_nsec, 500000000);
	CHECK_STR(v[1].name, "run");
	CHECK_INT(v[1].st.st_mode, S_IFREG | 04755);
	CHECK_INT(v[1].st.st_size, 12);
	CHECK_INT(v[1].st.st_uid, 1001);
	CHECK_INT(v[1].st.st_gid, 1002);
	CHECK(v[1].link == NULL);
	CHECK_INT(v[1].st.st_atim.tv_sec, 1);
	CHECK_INT(v[1].st.st_ctim.tv_sec, 2);
	CHECK_INT(v[2].st.st_mode, S_IFDIR | 01777);
	CHECK_INT(v[2].st.st_mtim.tv_nsec, 0);
	CHECK_INT(v[3].st.st_mode, S_IFIFO | 0640);
	CHECK_INT(v[3].st.st_mtim.tv_nsec, 500000000);
	files_find_free(v, n);
}

UNIT_TEST(links_with_any_target)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	/* a target with '/', a newline, and something that looks like a record */
	CHECK_INT(files_parse_find(REC("l/777/6/1.0/0/0/1/1.25/2.5/a/../x/y\n"
				       "l/777/13/1.0/0/0/1/1.25/2.5/nl/a\nf/644/1/1/b\n"
				       "l/777/0/1.0/0/0/1/1.25/2.5/exe//usr/bin/cat\n"
				       "f/644/1/1.0/0/0/1/1.25/2.5/name with\nnewline/\n"),
				   &v, &n), 0);
	CHECK_INT(n, 4);
	if (n != 4)
		return;
	CHECK_STR(v[0].name, "a");
	CHECK_STR(v[0].link, "../x/y");
	CHECK_INT(v[0].st.st_mode, S_IFLNK | 0777);
	CHECK_INT(v[0].st.st_size, 6);
	CHECK_STR(v[1].name, "nl");
	CHECK_STR(v[1].link, "a\nf/644/1/1/b");
	/* a /proc-style link whose size is 0: the target runs to the newline */
	CHECK_STR(v[2].name, "exe");
	CHECK_STR(v[2].link, "/usr/bin/cat");
	CHECK_INT(v[2].st.st_size, 12);
	CHECK_STR(v[3].name, "name with\nnewline");
	files_find_free(v, n);
}

UNIT_TEST(malformed_and_unknown)
{
	struct find_entry *v = NULL;
	size_t n = 0;

	/* error text instead of records */
	CHECK_INT(files_parse_find(REC("find: '/x/.': No such file or directory\n"), &v, &n), -EINVAL);
	CHECK(v == NULL && n == 0);
	/* truncated record, bad octal, missing fields */
	CHECK_INT(files_parse_find(REC("f/644/1/1.0/0/0/1/1.25/2.5/name"), &v, &n), -EINVAL);
	CHECK_INT(files_parse_find(REC("f/689/1/1.0/0/0/1/1.25/2.5/a/\n"), &v, &n), -EINVAL);
	CHECK_INT(files_parse_find(REC("f/644/1/1.0/0/a/\n"), &v, &n), -EINVAL);
	CHECK_INT(files_parse_find(REC("f/644/1/1.0/0/0/1/1.25/2.5//\n"), &v, &n), -EINVAL);
	/* a type find could not tell (or a door) is skipped, the rest kept */
	CHECK_INT(files_parse_find(REC("D/644/1/1.0/0/0/1/1.0/1.0/door/\nf/600/2/3.0/0/0/1/3.0/3.0/ok/\n"), &v, &n), 0);
	CHECK_INT(n, 1);
	if (n != 1)
		return;
	CHECK_STR(v[0].name, "ok");
	files_find_free(v, n);
	/* empty output is no entries */
	CHECK_INT(files_parse_find("", 0, &v, &n), 0);
	CHECK_INT(n, 0);
	files_find_free(v, n);
}

UNIT_TEST(hex)
{
	char *out = NULL;
	size_t len = 0;

	CHECK_INT(files_unhex(" 66 2f ff 00 0a\n 41\n", &out, &len), 0);
	CHECK_INT(len, 6);
	CHECK(out && !memcmp(out, "f/\xff\0\nA", 6));
	free(out);
	CHECK_INT(files_unhex("", &out, &len), 0);
	CHECK_INT(len, 0);
	free(out);
	CHECK_INT(files_unhex(" 6g", &out, &len), -EINVAL);
	CHECK_INT(files_unhex(" 6", &out, &len), -EINVAL);
	CHECK_INT(files_unhex("od: command not found", &out, &len), -EINVAL);
}

UNIT_MAIN("fs_find",
	UNIT_CASE(regular_dir_and_special_modes),
	UNIT_CASE(links_with_any_target),
	UNIT_CASE(malformed_and_unknown),
	UNIT_CASE(hex))
