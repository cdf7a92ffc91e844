/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window after a hide (fs_open_files.c): a lookup of a name just
 * hidden by an open file's unlink or rename waits for the rename onto it,
 * except the lookup of the thread whose call hid it, which is over.
 */
#include "fs_files_int.h"
#include "fs_int.h"
#include "unit.h"

static struct sandbox box;

/* vim removes its probe file before the kernel's release of it comes, and
 * then looks its swap file up: the same thread, whose unlink is over. */
UNIT_TEST(lookup_by_the_thread_that_hid_the_name_does_not_wait)
{
	struct open_table *t = open_table_new(60);

	CHECK(t != NULL);
	if (!t)
		return;
	hide_window_open(t, &box, "/home/u/.f.swx", 4242);
	CHECK(!hide_window_wait(t, &box, "/home/u/.f.swx", 4242));
	CHECK_INT(t->hide_timed_waits, 0);
	/* and the window is over for everyone */
	CHECK(!hide_window_wait(t, &box, "/home/u/.f.swx", 7));
	CHECK_INT(t->hide_timed_waits, 0);
	open_table_free(t);
}

/* Another thread's lookup waits out the window (no rename came), and a
 * thread id of 0 (unknown) is never taken for the hider's. */
UNIT_TEST(lookup_by_another_thread_waits_for_the_window)
{
	struct open_table *t = open_table_new(60);

	CHECK(t != NULL);
	if (!t)
		return;
	hide_window_open(t, &box, "/a", 4242);
	CHECK(!hide_window_wait(t, &box, "/a", 7));
	CHECK(t->hide_timed_waits >= 1);
	t->hide_timed_waits = 0;
	hide_window_open(t, &box, "/b", 0);
	CHECK(!hide_window_wait(t, &box, "/b", 0));
	CHECK(t->hide_timed_waits >= 1);
	open_table_free(t);
}

/* A rename onto the name that has started holds every lookup, the
 * hider's thread's too, until it ends. */
UNIT_TEST(rename_onto_the_name_holds_lookups_until_it_ends)
{
	struct open_table *t = open_table_new(60);

	CHECK(t != NULL);
	if (!t)
		return;
	hide_window_open(t, &box, "/c", 4242);
	CHECK(hide_window_renaming(t, &box, "/c", true));
	hide_window_renaming(t, &box, "/c", false);
	CHECK(!hide_window_wait(t, &box, "/c", 4242));
	CHECK_INT(t->hide_timed_waits, 0);
	open_table_free(t);
}

UNIT_MAIN("hide_window",
	  UNIT_CASE(lookup_by_the_thread_that_hid_the_name_does_not_wait),
	  UNIT_CASE(lookup_by_another_thread_waits_for_the_window),
	  UNIT_CASE(rename_onto_the_name_holds_lookups_until_it_ends))
