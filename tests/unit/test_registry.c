/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox index and the naming rule of the mount root (registry.h). */
#include "unit.h"
#include "fs_int.h"
#include "registry.h"
#include "strbuf.h"

static struct sandbox *add(struct registry *r, const char *id, const char *name)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));

	str_copy(sb->id, sizeof(sb->id), id);
	str_copy(sb->name, sizeof(sb->name), name);
	sb->name_exact = true;
	CHECK_INT(registry_insert(r, sb), 0);
	return sb;
}

/* Frees the entries too (the mount never does: they live as long as it). */
static void drop(struct registry *r, struct sandbox **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	registry_free(r);
}

UNIT_TEST(showable_names)
{
	CHECK(registry_name_showable("dev", true));
	CHECK(registry_name_showable("a b", true));
	CHECK(registry_name_showable("名前", true));
	CHECK(registry_name_showable("-rf", true));
	CHECK(!registry_name_showable("dev", false));        /* cut to fit */
	CHECK(!registry_name_showable("", true));
	CHECK(!registry_name_showable("ctl", true));
	CHECK(!registry_name_showable("error", true));
	CHECK(!registry_name_showable(".snapshots", true));
	CHECK(!registry_name_showable(".hidden", true));
	CHECK(!registry_name_showable("..", true));
	CHECK(!registry_name_showable("a/b", true));
	CHECK(!registry_name_showable("a\nb", true));
	CHECK(!registry_name_showable("x\x01y", true));      /* what a NUL becomes (dt_json_mark_nul_escapes) */
	CHECK(!registry_name_showable("a\x1b[0m", true));
	CHECK(!registry_name_showable("a\x7f", true));
}

/* The report's B6: a name that is another sandbox's id, a name shared by
 * two sandboxes, control-file names and a NUL name never shadow anything. */
UNIT_TEST(resolution_is_unambiguous)
{
	struct registry r = { 0 };
	struct sandbox *v[7];

	v[0] = add(&r, "11111111-aaaa", "victim");
	v[1] = add(&r, "22222222-bbbb", "victim\x01x");      /* "victim\u0000x" */
	v[2] = add(&r, "33333333-cccc", "11111111-aaaa");   /* named like v[0]'s id */
	v[3] = add(&r, "44444444-dddd", "ctl");
	v[4] = add(&r, "55555555-eeee", "twin");
	v[5] = add(&r, "66666666-ffff", "twin");
	v[6] = add(&r, "77777777-0000", "77777777-0000");   /* named like its own id */

	CHECK(registry_resolve(&r, "victim") == v[0]);
	CHECK_STR(registry_dir_name(&r, v[0]), "victim");
	CHECK_STR(registry_dir_name(&r, v[1]), "22222222-bbbb");
	CHECK(registry_resolve(&r, "victim\x01x") == NULL);
	CHECK(registry_resolve(&r, "22222222-bbbb") == v[1]);
	/* an id beats a name */
	CHECK(registry_resolve(&r, "11111111-aaaa") == v[0]);
	CHECK_STR(registry_dir_name(&r, v[2]), "33333333-cccc");
	CHECK_STR(registry_dir_name(&r, v[3]), "44444444-dddd");
	CHECK(registry_resolve(&r, "ctl") == NULL);
	/* a shared name names neither */
	CHECK(registry_resolve(&r, "twin") == NULL);
	CHECK_STR(registry_dir_name(&r, v[4]), "55555555-eeee");
	CHECK_STR(registry_dir_name(&r, v[5]), "66666666-ffff");
	CHECK(registry_resolve(&r, "66666666-ffff") == v[5]);
	CHECK_STR(registry_dir_name(&r, v[6]), "77777777-0000");
	CHECK(registry_resolve(&r, "77777777-0000") == v[6]);
	/* once one twin is gone, the other has its name back */
	v[5]->gone = true;
	CHECK(registry_resolve(&r, "twin") == v[4]);
	CHECK_STR(registry_dir_name(&r, v[4]), "twin");
	CHECK(registry_resolve(&r, "66666666-ffff") == NULL);
	/* and once v[0] is gone, its id is a free name again */
	v[0]->gone = true;
	CHECK(registry_resolve(&r, "11111111-aaaa") == v[2]);
	CHECK(registry_resolve(&r, "victim") == NULL);
	CHECK(registry_by_id(&r, "11111111-aaaa") == v[0]);   /* gone, still indexed */
	drop(&r, v, 7);
}

UNIT_TEST(rename_keeps_index)
{
	struct registry r = { 0 };
	struct sandbox *v[1];

	v[0] = add(&r, "id-1", "old");
	registry_set_name(&r, v[0], "new", true);
	CHECK(registry_resolve(&r, "old") == NULL);
	CHECK(registry_resolve(&r, "new") == v[0]);
	registry_set_name(&r, v[0], "new", false);
	CHECK(registry_resolve(&r, "new") == NULL);
	CHECK_STR(registry_dir_name(&r, v[0]), "id-1");
	drop(&r, v, 1);
}

/* Vercel: a sandbox's id is its name. One called ctl or error (a name the
 * root keeps) has no other to be shown by: it is not shown, nor resolved,
 * rather than listed as a second ctl. */
UNIT_TEST(id_that_is_a_reserved_name_is_not_shown)
{
	struct registry r = { 0 };
	struct sandbox *v[3];

	v[0] = add(&r, "ctl", "ctl");
	v[1] = add(&r, "error", "error");
	v[2] = add(&r, "dev", "dev");
	CHECK(registry_dir_name(&r, v[0]) == NULL);
	CHECK(registry_dir_name(&r, v[1]) == NULL);
	CHECK_STR(registry_dir_name(&r, v[2]), "dev");
	CHECK(registry_resolve(&r, "ctl") == NULL);
	CHECK(registry_resolve(&r, "error") == NULL);
	CHECK(registry_resolve(&r, "dev") == v[2]);
	drop(&r, v, 3);
}

/* 100,000 entries (the list's cap): with a list scan per insert this took
 * minutes and met the test's timeout; the index takes well under a second. */
UNIT_TEST(many_entries)
{
	enum { N = 100000 };
	struct registry r = { 0 };
	struct sandbox **v = calloc(N, sizeof(*v));
	char id[64], name[64];
	size_t bad = 0;

	for (size_t i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "%08zu-0000-0000-0000-000000000000", i);
		snprintf(name, sizeof(name), "big%06zu", i);
		v[i] = add(&r, id, name);
	}
	for (size_t i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "big%06zu", i);
		if (registry_resolve(&r, name) != v[i] || registry_dir_name(&r, v[i]) != v[i]->name)
			bad++;
		if (registry_resolve(&r, v[i]->id) != v[i])
			bad++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(r.n, N);
	drop(&r, v, N);
	free(v);
}

UNIT_MAIN("registry",
	  UNIT_CASE(showable_names),
	  UNIT_CASE(resolution_is_unambiguous),
	  UNIT_CASE(rename_keeps_index),
	  UNIT_CASE(id_that_is_a_reserved_name_is_not_shown),
	  UNIT_CASE(many_entries))
