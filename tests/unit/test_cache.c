/* SPDX-License-Identifier: Apache-2.0 */
#include "unit.h"
#include "cache.h"

#include <pthread.h>
#include <stdint.h>

/* A fake monotonic clock the tests move by hand. */
static double fake_time = 1000.0;

static double fake_now(void)
{
	return fake_time;
}

static struct cache *new_cache(double attr, double dir, double neg, size_t max)
{
	struct cache_config cfg;
	struct cache *c;

	cache_config_defaults(&cfg);
	cfg.attr_ttl = attr;
	cfg.dir_ttl = dir;
	cfg.neg_ttl = neg;
	cfg.max_entries = max;
	c = cache_new(&cfg);
	if (c)
		cache_set_clock(c, fake_now);
	fake_time = 1000.0;
	return c;
}

static struct stat mkst(off_t size, mode_t mode)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_size = size;
	st.st_mode = mode;
	return st;
}

static struct cache_stats stats(struct cache *c)
{
	struct cache_stats s;

	cache_get_stats(c, &s);
	return s;
}

/* cache_get_dir collector: "name:size," for each entry. */
struct collect {
	char buf[512];
	int calls;
	int stop_after;
};

static int collect_fn(void *ctx, const char *name, const struct stat *st)
{
	struct collect *k = ctx;
	size_t o = strlen(k->buf);

	snprintf(k->buf + o, sizeof(k->buf) - o, "%s:%lld,", name, (long long)st->st_size);
	k->calls++;
	return k->stop_after && k->calls >= k->stop_after;
}

UNIT_TEST(defaults)
{
	struct cache_config cfg;

	memset(&cfg, 0xff, sizeof(cfg));
	cache_config_defaults(&cfg);
	CHECK(cfg.attr_ttl == 2.0);
	CHECK(cfg.dir_ttl == 2.0);
	CHECK(cfg.neg_ttl == 1.0);
	CHECK_INT(cfg.max_entries, 100000);
	/* NULL config means the defaults; the real clock works */
	struct cache *c = cache_new(NULL);
	struct stat st = mkst(5, S_IFREG | 0644), got;

	CHECK(c != NULL);
	cache_put_attr(c, "sb", "/f", &st, cache_generation(c, "sb"));
	CHECK_INT(cache_get_attr(c, "sb", "/f", &got), CACHE_HIT);
	CHECK_INT(got.st_size, 5);
	cache_free(c);
	cache_free(NULL);
}

UNIT_TEST(attr_ttl)
{
	struct cache *c = new_cache(2, 2, 1, 100);
	struct stat st = mkst(42, S_IFREG | 0600), got;
	struct cache_stats s;

	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	cache_put_attr(c, "sb", "/a", &st, cache_generation(c, "sb"));
	memset(&got, 0, sizeof(got));
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_HIT);
	CHECK_INT(got.st_size, 42);
	CHECK_INT(got.st_mode, S_IFREG | 0600);
	/* keys are (sandbox, path) */
	CHECK_INT(cache_get_attr(c, "other", "/a", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/a/", &got), CACHE_HIT);   /* trailing '/' ignored */
	CHECK_INT(cache_get_attr(c, "sb", "/ab", &got), CACHE_MISS);
	fake_time += 1.999;
	CHECK_INT(cache_get_attr(c, "sb", "/a", NULL), CACHE_HIT);
	fake_time += 0.001;   /* exactly the TTL: expired */
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	s = stats(c);
	CHECK_INT(s.hits, 3);
	CHECK_INT(s.misses, 4);
	CHECK_INT(s.negative_hits, 0);
	CHECK_INT(s.entries, 0);   /* the expired entry was dropped */
	/* a put refreshes */
	cache_put_attr(c, "sb", "/a", &st, cache_generation(c, "sb"));
	fake_time += 1;
	st.st_size = 7;
	cache_put_attr(c, "sb", "/a", &st, cache_generation(c, "sb"));
	fake_time += 1.5;
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_HIT);
	CHECK_INT(got.st_size, 7);
	cache_free(c);
}

UNIT_TEST(negative_entries)
{
	struct cache *c = new_cache(5, 5, 1, 100);
	struct stat st = mkst(1, S_IFREG | 0644), got;
	struct cache_stats s;

	got = mkst(99, 0);
	cache_put_negative(c, "sb", "/nope", cache_generation(c, "sb"));
	CHECK_INT(cache_get_attr(c, "sb", "/nope", &got), CACHE_NEGATIVE);
	CHECK_INT(got.st_size, 99);   /* untouched */
	fake_time += 0.5;
	CHECK_INT(cache_get_attr(c, "sb", "/nope", &got), CACHE_NEGATIVE);
	fake_time += 0.5;   /* neg_ttl is shorter than attr_ttl */
	CHECK_INT(cache_get_attr(c, "sb", "/nope", &got), CACHE_MISS);
	s = stats(c);
	CHECK_INT(s.negative_hits, 2);
	CHECK_INT(s.hits, 0);
	CHECK_INT(s.misses, 1);
	/* an attribute replaces a negative entry, and the other way round */
	cache_put_negative(c, "sb", "/x", cache_generation(c, "sb"));
	cache_put_attr(c, "sb", "/x", &st, cache_generation(c, "sb"));
	CHECK_INT(cache_get_attr(c, "sb", "/x", &got), CACHE_HIT);
	cache_put_negative(c, "sb", "/x", cache_generation(c, "sb"));
	CHECK_INT(cache_get_attr(c, "sb", "/x", &got), CACHE_NEGATIVE);
	/* invalidate drops a negative entry */
	cache_invalidate(c, "sb", "/x");
	CHECK_INT(cache_get_attr(c, "sb", "/x", &got), CACHE_MISS);
	cache_free(c);
}

UNIT_TEST(listing_fill)
{
	struct cache *c = new_cache(2, 3, 1, 100);
	struct cache_dirent ents[] = {
		{ "b.txt", mkst(10, S_IFREG | 0644) },
		{ "a", mkst(4096, S_IFDIR | 0755) },
		{ "c", mkst(3, S_IFLNK | 0777) },
	};
	struct collect k = { "", 0, 0 };
	struct stat got;
	uint64_t gen = cache_generation(c, "sb");

	CHECK(!cache_get_dir(c, "sb", "/home", collect_fn, &k));
	CHECK_INT(k.calls, 0);
	cache_put_negative(c, "sb", "/home/a", gen);
	cache_put_dir(c, "sb", "/home", ents, 3, gen);
	CHECK(cache_get_dir(c, "sb", "/home", collect_fn, &k));
	CHECK_STR(k.buf, "b.txt:10,a:4096,c:3,");   /* the stored order */
	/* the children's attributes came with it, and the negative entry went */
	CHECK_INT(cache_get_attr(c, "sb", "/home/b.txt", &got), CACHE_HIT);
	CHECK_INT(got.st_size, 10);
	CHECK_INT(cache_get_attr(c, "sb", "/home/a", &got), CACHE_HIT);
	CHECK_INT(got.st_mode, S_IFDIR | 0755);
	CHECK_INT(cache_get_attr(c, "sb", "/home/c", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/home", &got), CACHE_MISS);   /* the dir's own attr was not given */
	CHECK_INT(stats(c).entries, 4);
	/* fn stops early on non-zero */
	memset(&k, 0, sizeof(k));
	k.stop_after = 2;
	CHECK(cache_get_dir(c, "sb", "/home", collect_fn, &k));
	CHECK_STR(k.buf, "b.txt:10,a:4096,");
	/* child attrs expire with attr_ttl, the listing with dir_ttl */
	fake_time += 2.5;
	CHECK_INT(cache_get_attr(c, "sb", "/home/a", &got), CACHE_MISS);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/home", collect_fn, &k));
	CHECK_INT(k.calls, 3);
	fake_time += 0.5;
	CHECK(!cache_get_dir(c, "sb", "/home", collect_fn, &k));
	/* the root directory and an empty listing */
	cache_put_dir(c, "sb", "/", ents, 1, gen);
	CHECK_INT(cache_get_attr(c, "sb", "/b.txt", &got), CACHE_HIT);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_STR(k.buf, "b.txt:10,");
	cache_put_dir(c, "sb", "/empty", NULL, 0, gen);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/empty", collect_fn, &k));
	CHECK_INT(k.calls, 0);
	/* a new listing replaces the old */
	cache_put_dir(c, "sb", "/", ents + 1, 2, gen);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_STR(k.buf, "a:4096,c:3,");
	cache_free(c);
}

UNIT_TEST(listing_odd_names)
{
	struct cache *c = new_cache(2, 2, 1, 100);
	struct cache_dirent ents[] = {
		{ ".", mkst(1, S_IFDIR) },
		{ "..", mkst(2, S_IFDIR) },
		{ "", mkst(3, S_IFREG) },
		{ "x/y", mkst(4, S_IFREG) },
		{ "ok", mkst(5, S_IFREG) },
	};
	struct collect k = { "", 0, 0 };

	cache_put_dir(c, "sb", "/d", ents, 5, 0);
	CHECK(cache_get_dir(c, "sb", "/d", collect_fn, &k));
	CHECK_INT(k.calls, 5);   /* the listing is kept as given */
	/* but only proper names get attribute entries: "/d" itself and "/d/ok" */
	CHECK_INT(stats(c).entries, 2);
	CHECK_INT(cache_get_attr(c, "sb", "/d/ok", NULL), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/d/x/y", NULL), CACHE_MISS);
	cache_free(c);
}

UNIT_TEST(generations)
{
	struct cache *c = new_cache(10, 10, 10, 100);
	struct stat st = mkst(1, S_IFREG), got;
	struct cache_dirent ents[] = { { "f", mkst(8, S_IFREG) } };
	struct collect k = { "", 0, 0 };
	uint64_t g0, g1;

	g0 = cache_generation(c, "sb");
	CHECK_INT(g0, 0);
	CHECK_INT(cache_generation(c, "other"), 0);
	/* a request started (g0), then something was invalidated */
	cache_invalidate(c, "sb", "/unrelated");
	g1 = cache_generation(c, "sb");
	CHECK(g1 != g0);
	CHECK_INT(cache_generation(c, "other"), 0);   /* per sandbox */
	cache_put_attr(c, "sb", "/a", &st, g0);
	cache_put_negative(c, "sb", "/b", g0);
	cache_put_dir(c, "sb", "/d", ents, 1, g0);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/b", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/d/f", &got), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/d", collect_fn, &k));
	CHECK_INT(stats(c).entries, 0);
	/* the current generation is stored */
	cache_put_attr(c, "sb", "/a", &st, g1);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_HIT);
	/* a put with a future generation (never handed out) is dropped too */
	cache_put_attr(c, "sb", "/z", &st, g1 + 5);
	CHECK_INT(cache_get_attr(c, "sb", "/z", &got), CACHE_MISS);
	cache_put_attr(c, "fresh", "/z", &st, 3);
	CHECK_INT(cache_get_attr(c, "fresh", "/z", &got), CACHE_MISS);
	/* every kind of invalidation bumps */
	cache_invalidate_tree(c, "sb", "/q");
	CHECK(cache_generation(c, "sb") > g1);
	g1 = cache_generation(c, "sb");
	cache_invalidate_sandbox(c, "sb");
	CHECK(cache_generation(c, "sb") > g1);
	/* invalidating a sandbox never seen still drops the puts begun before */
	g0 = cache_generation(c, "new");
	cache_invalidate_sandbox(c, "new");
	cache_put_attr(c, "new", "/a", &st, g0);
	CHECK_INT(cache_get_attr(c, "new", "/a", &got), CACHE_MISS);
	cache_free(c);
}

UNIT_TEST(invalidate_path_and_parent)
{
	struct cache *c = new_cache(10, 10, 10, 100);
	struct cache_dirent ents[] = { { "f", mkst(1, S_IFREG) }, { "g", mkst(2, S_IFREG) } };
	struct stat st = mkst(4096, S_IFDIR), got;
	struct collect k = { "", 0, 0 };
	uint64_t gen = 0;

	cache_put_attr(c, "sb", "/d", &st, gen);
	cache_put_dir(c, "sb", "/d", ents, 2, gen);
	cache_put_dir(c, "sb", "/d/f", ents, 1, gen);   /* pretend f is a dir too */
	gen = cache_generation(c, "sb");
	cache_invalidate(c, "sb", "/d/f");
	/* the path (attributes and its listing) and the parent's listing go */
	CHECK_INT(cache_get_attr(c, "sb", "/d/f", &got), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/d/f", collect_fn, &k));
	CHECK(!cache_get_dir(c, "sb", "/d", collect_fn, &k));
	/* the parent's attributes and the siblings stay */
	CHECK_INT(cache_get_attr(c, "sb", "/d", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/d/g", &got), CACHE_HIT);
	/* a top-level path's parent is "/" */
	gen = cache_generation(c, "sb");
	cache_put_dir(c, "sb", "/", ents, 2, gen);
	cache_invalidate(c, "sb", "/f");
	CHECK(!cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_INT(cache_get_attr(c, "sb", "/g", &got), CACHE_HIT);
	/* "/" has no parent; invalidating it drops its own entry */
	gen = cache_generation(c, "sb");
	cache_put_dir(c, "sb", "/", ents, 2, gen);
	cache_invalidate(c, "sb", "/");
	CHECK(!cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_INT(cache_get_attr(c, "sb", "/g", &got), CACHE_HIT);
	/* another sandbox is untouched */
	cache_put_attr(c, "sb2", "/d/f", &st, cache_generation(c, "sb2"));
	cache_invalidate(c, "sb", "/d/f");
	CHECK_INT(cache_get_attr(c, "sb2", "/d/f", &got), CACHE_HIT);
	CHECK_INT(k.calls, 0);
	cache_free(c);
}

UNIT_TEST(invalidate_tree_boundaries)
{
	static const char *const paths[] = {
		"/a", "/a/b", "/a/b/c", "/a/b/c/d", "/a/bc", "/a/bc/d", "/a/b.txt", "/a/b-", "/ab", "/b",
	};
	struct cache *c = new_cache(10, 10, 10, 100);
	struct cache_dirent ents[] = { { "b", mkst(1, S_IFDIR) }, { "bc", mkst(2, S_IFDIR) } };
	struct stat st = mkst(1, S_IFREG), got;
	struct collect k = { "", 0, 0 };
	uint64_t gen = 0;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		cache_put_attr(c, "sb", paths[i], &st, gen);
	cache_put_dir(c, "sb", "/a", ents, 2, gen);
	cache_put_dir(c, "sb", "/a/b", ents, 1, gen);
	cache_put_negative(c, "sb", "/a/b/neg", gen);
	cache_put_attr(c, "sb2", "/a/b/c", &st, 0);
	cache_invalidate_tree(c, "sb", "/a/b/");   /* trailing '/' is the same path */
	CHECK_INT(cache_get_attr(c, "sb", "/a/b", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/a/b/c", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/a/b/c/d", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/a/b/neg", &got), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/a/b", collect_fn, &k));
	CHECK(!cache_get_dir(c, "sb", "/a", collect_fn, &k));   /* the parent's listing */
	/* "/a/bc" and other names that merely start with "/a/b" stay */
	CHECK_INT(cache_get_attr(c, "sb", "/a/bc", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/a/bc/d", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/a/b.txt", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/a/b-", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/ab", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/b", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb2", "/a/b/c", &got), CACHE_HIT);
	/* the whole tree from "/" */
	cache_invalidate_tree(c, "sb", "/");
	CHECK_INT(stats(c).entries, 1);   /* sb2's */
	CHECK_INT(cache_get_attr(c, "sb", "/b", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb2", "/a/b/c", &got), CACHE_HIT);
	CHECK_INT(k.calls, 0);
	cache_free(c);
}

UNIT_TEST(invalidate_sandbox)
{
	struct cache *c = new_cache(10, 10, 10, 100);
	struct cache_dirent ents[] = { { "f", mkst(1, S_IFREG) } };
	struct stat st = mkst(1, S_IFREG), got;
	struct collect k = { "", 0, 0 };

	cache_put_attr(c, "sb", "/x", &st, 0);
	cache_put_negative(c, "sb", "/y", 0);
	cache_put_dir(c, "sb", "/", ents, 1, 0);
	cache_put_attr(c, "sb2", "/x", &st, 0);
	CHECK_INT(stats(c).entries, 5);
	cache_invalidate_sandbox(c, "sb");
	CHECK_INT(stats(c).entries, 1);
	CHECK_INT(cache_get_attr(c, "sb", "/x", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/y", &got), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_INT(cache_get_attr(c, "sb2", "/x", &got), CACHE_HIT);
	cache_free(c);
}

UNIT_TEST(lru_eviction)
{
	struct cache *c = new_cache(100, 100, 100, 3);
	struct stat st = mkst(1, S_IFREG), got;
	struct cache_dirent ents[] = {
		{ "1", mkst(1, S_IFREG) }, { "2", mkst(2, S_IFREG) }, { "3", mkst(3, S_IFREG) },
		{ "4", mkst(4, S_IFREG) },
	};
	struct collect k = { "", 0, 0 };
	struct cache_stats s;

	cache_put_attr(c, "sb", "/a", &st, 0);
	cache_put_attr(c, "sb", "/b", &st, 0);
	cache_put_attr(c, "sb", "/c", &st, 0);
	CHECK_INT(stats(c).entries, 3);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_HIT);   /* /a is now the newest */
	cache_put_attr(c, "sb", "/d", &st, 0);                        /* evicts /b, the oldest */
	s = stats(c);
	CHECK_INT(s.entries, 3);
	CHECK_INT(s.evictions, 1);
	CHECK_INT(cache_get_attr(c, "sb", "/b", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/c", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/d", &got), CACHE_HIT);
	/* updating an existing entry evicts nothing */
	cache_put_attr(c, "sb", "/c", &st, 0);
	CHECK_INT(stats(c).evictions, 1);
	/* a listing larger than the cache: the directory itself survives */
	cache_put_dir(c, "sb", "/big", ents, 4, 0);
	s = stats(c);
	CHECK_INT(s.entries, 3);
	CHECK_INT(s.evictions, 1 + 3 + 2);
	CHECK(cache_get_dir(c, "sb", "/big", collect_fn, &k));
	CHECK_STR(k.buf, "1:1,2:2,3:3,4:4,");
	CHECK_INT(cache_get_attr(c, "sb", "/big/4", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/big/3", &got), CACHE_HIT);
	CHECK_INT(cache_get_attr(c, "sb", "/big/1", &got), CACHE_MISS);
	cache_free(c);

	/* max_entries 0: a cache that keeps nothing */
	c = new_cache(100, 100, 100, 0);
	cache_put_attr(c, "sb", "/a", &st, 0);
	cache_put_dir(c, "sb", "/", ents, 4, 0);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_INT(stats(c).entries, 0);
	cache_free(c);
}

UNIT_TEST(zero_ttls)
{
	struct cache *c = new_cache(0, 0, 0, 100);
	struct stat st = mkst(1, S_IFREG), got;
	struct cache_dirent ents[] = { { "f", mkst(1, S_IFREG) } };
	struct collect k = { "", 0, 0 };

	cache_put_attr(c, "sb", "/a", &st, 0);
	cache_put_negative(c, "sb", "/b", 0);
	cache_put_dir(c, "sb", "/", ents, 1, 0);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "sb", "/b", &got), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_INT(stats(c).entries, 0);
	cache_free(c);
}

UNIT_TEST(stats_counters)
{
	struct cache *c = new_cache(10, 10, 10, 100);
	struct stat st = mkst(1, S_IFREG);
	struct collect k = { "", 0, 0 };
	struct cache_stats s;

	s = stats(c);
	CHECK_INT(s.hits + s.misses + s.negative_hits + s.evictions + s.entries, 0);
	cache_put_attr(c, "sb", "/a", &st, 0);
	cache_put_negative(c, "sb", "/n", 0);
	cache_put_dir(c, "sb", "/", NULL, 0, 0);
	cache_get_attr(c, "sb", "/a", NULL);    /* hit */
	cache_get_attr(c, "sb", "/a", NULL);    /* hit */
	cache_get_attr(c, "sb", "/n", NULL);    /* negative */
	cache_get_attr(c, "sb", "/m", NULL);    /* miss */
	cache_get_dir(c, "sb", "/", collect_fn, &k);      /* hit */
	cache_get_dir(c, "sb", "/zz", collect_fn, &k);    /* miss */
	s = stats(c);
	CHECK_INT(s.hits, 3);
	CHECK_INT(s.negative_hits, 1);
	CHECK_INT(s.misses, 2);
	CHECK_INT(s.evictions, 0);
	CHECK_INT(s.entries, 3);
	cache_free(c);
}

/* A callback that re-enters the cache: it must not deadlock (get_dir
 * calls fn without the lock) and the listing it iterates must survive being
 * replaced or invalidated meanwhile. */
struct reenter {
	struct cache *c;
	int calls;
};

static int reenter_fn(void *ctx, const char *name, const struct stat *st)
{
	struct reenter *r = ctx;
	struct cache_dirent other[] = { { "zzz", *st } };

	r->calls++;
	cache_invalidate_tree(r->c, "sb", "/");
	cache_put_dir(r->c, "sb", "/", other, 1, cache_generation(r->c, "sb"));
	cache_get_attr(r->c, "sb", name, NULL);
	return 0;
}

UNIT_TEST(reentrant_callback)
{
	struct cache *c = new_cache(10, 10, 10, 100);
	struct cache_dirent ents[] = { { "a", mkst(1, S_IFREG) }, { "b", mkst(2, S_IFREG) } };
	struct reenter r = { c, 0 };
	struct collect k = { "", 0, 0 };

	cache_put_dir(c, "sb", "/", ents, 2, 0);
	CHECK(cache_get_dir(c, "sb", "/", reenter_fn, &r));
	CHECK_INT(r.calls, 2);
	CHECK(cache_get_dir(c, "sb", "/", collect_fn, &k));
	CHECK_STR(k.buf, "zzz:2,");   /* put by the second call */
	cache_free(c);
}

UNIT_TEST(many_entries_and_sandboxes)
{
	struct cache *c = new_cache(10, 10, 10, 50000);
	struct stat st = mkst(0, S_IFREG), got;
	char path[64], sb[32];
	int bad = 0;

	for (int i = 0; i < 40000; i++) {
		snprintf(sb, sizeof(sb), "sb%d", i % 300);
		snprintf(path, sizeof(path), "/d%d/f%d", i % 97, i);
		st.st_size = i;
		cache_put_attr(c, sb, path, &st, cache_generation(c, sb));
	}
	CHECK_INT(stats(c).entries, 40000);
	for (int i = 0; i < 40000; i++) {
		snprintf(sb, sizeof(sb), "sb%d", i % 300);
		snprintf(path, sizeof(path), "/d%d/f%d", i % 97, i);
		if (cache_get_attr(c, sb, path, &got) != CACHE_HIT || got.st_size != i)
			bad++;
	}
	CHECK_INT(bad, 0);
	cache_invalidate_sandbox(c, "sb7");
	CHECK_INT(stats(c).entries, 40000 - 134);
	cache_free(c);
}

/* ------------------------------------------------------ threaded stress */

static struct cache *stress_cache;

static void *stress_thread(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
	struct collect k;
	char path[64], sb[16];

	for (int i = 0; i < 100000; i++) {
		struct stat st = mkst(i, S_IFREG | 0644);
		struct cache_dirent ents[3] = {
			{ "x", st }, { "y", st }, { "z", st },
		};
		unsigned r;

		seed = seed * 1103515245u + 12345u;
		r = seed >> 8;
		snprintf(sb, sizeof(sb), "sb%u", r % 3);
		snprintf(path, sizeof(path), "/d%u/%c", (r >> 4) % 8, "xyz"[(r >> 8) % 3]);
		switch ((r >> 12) % 9) {
		case 0:
		case 1:
			cache_put_attr(stress_cache, sb, path, &st, cache_generation(stress_cache, sb));
			break;
		case 2:
			cache_put_negative(stress_cache, sb, path, cache_generation(stress_cache, sb));
			break;
		case 3:
			snprintf(path, sizeof(path), "/d%u", (r >> 4) % 8);
			cache_put_dir(stress_cache, sb, path, ents, 3, cache_generation(stress_cache, sb));
			break;
		case 4:
		case 5:
			cache_get_attr(stress_cache, sb, path, NULL);
			break;
		case 6:
			memset(&k, 0, sizeof(k));
			snprintf(path, sizeof(path), "/d%u", (r >> 4) % 8);
			if (cache_get_dir(stress_cache, sb, path, collect_fn, &k) && k.calls != 3)
				abort();
			break;
		case 7:
			if ((r >> 16) % 4 == 0)
				cache_invalidate_tree(stress_cache, sb, "/d1");
			else
				cache_invalidate(stress_cache, sb, path);
			break;
		default:
			if ((r >> 16) % 16 == 0)
				cache_invalidate_sandbox(stress_cache, sb);
			else
				cache_get_attr(stress_cache, sb, "/d0/x", NULL);
			break;
		}
		if (i % 1000 == 0) {
			struct cache_stats s;

			cache_get_stats(stress_cache, &s);
			if (s.entries > 40)
				abort();
		}
	}
	return NULL;
}

UNIT_TEST(threaded_stress)
{
	pthread_t t[4];
	struct cache_stats s;

	stress_cache = new_cache(1e9, 1e9, 1e9, 40);   /* small: eviction all the time */
	cache_set_clock(stress_cache, NULL);           /* the real clock */
	for (int i = 0; i < 4; i++)
		CHECK_INT(pthread_create(&t[i], NULL, stress_thread, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cache_get_stats(stress_cache, &s);
	CHECK(s.entries <= 40);
	CHECK(s.hits > 0);
	CHECK(s.misses > 0);
	CHECK(s.negative_hits > 0);
	CHECK(s.evictions > 0);
	cache_free(stress_cache);
}

/* cache_lookup: a fresh listing answers for names it lacks, and gives
 * the entry it has as a hint once the attributes are gone. */
UNIT_TEST(lookup_through_listing)
{
	struct cache *c = new_cache(2, 5, 1, 100);
	struct cache_dirent ents[2];
	struct stat got;
	bool listed = true;

	ents[0].name = "a";
	ents[0].st = mkst(1, S_IFREG | 0644);
	ents[1].name = "l";
	ents[1].st = mkst(7, S_IFLNK | 0777);
	/* nothing known */
	CHECK_INT(cache_lookup(c, "sb", "/d/a", &got, &listed), CACHE_MISS);
	CHECK(!listed);
	cache_put_dir(c, "sb", "/d", ents, 2, cache_generation(c, "sb"));
	CHECK_INT(cache_lookup(c, "sb", "/d/a", &got, &listed), CACHE_HIT);
	CHECK_INT(got.st_size, 1);
	/* a name the listing lacks: negative, and stored as such */
	CHECK_INT(cache_lookup(c, "sb", "/d/zz", &got, &listed), CACHE_NEGATIVE);
	CHECK_INT(cache_get_attr(c, "sb", "/d/zz", NULL), CACHE_NEGATIVE);
	/* "a" must not match a longer or shorter name */
	CHECK_INT(cache_lookup(c, "sb", "/d/aa", NULL, NULL), CACHE_NEGATIVE);
	/* attributes expire before the listing: a miss with the hint */
	fake_time += 3;
	memset(&got, 0, sizeof(got));
	CHECK_INT(cache_lookup(c, "sb", "/d/l", &got, &listed), CACHE_MISS);
	CHECK(listed);
	CHECK(S_ISLNK(got.st_mode));
	CHECK_INT(got.st_size, 7);
	/* the listing expires too: nothing known */
	fake_time += 3;
	CHECK_INT(cache_lookup(c, "sb", "/d/l", &got, &listed), CACHE_MISS);
	CHECK(!listed);
	CHECK_INT(cache_lookup(c, "sb", "/d/zz", &got, &listed), CACHE_MISS);
	/* the root's children */
	ents[0].name = "home";
	ents[0].st = mkst(4096, S_IFDIR | 0755);
	cache_put_dir(c, "sb", "/", ents, 1, cache_generation(c, "sb"));
	CHECK_INT(cache_lookup(c, "sb", "/home", &got, NULL), CACHE_HIT);
	CHECK_INT(cache_lookup(c, "sb", "/etc", &got, NULL), CACHE_NEGATIVE);
	cache_free(c);
}

UNIT_TEST(update_keeps_listing)
{
	struct cache *c = new_cache(5, 5, 5, 100);
	struct cache_dirent ents[2];
	struct collect k;
	struct stat st, got;
	bool listed;
	uint64_t gen;

	ents[0].name = "a";
	ents[0].st = mkst(1, S_IFREG | 0644);
	ents[1].name = "sub";
	ents[1].st = mkst(4096, S_IFDIR | 0755);
	cache_put_dir(c, "sb", "/d", ents, 2, cache_generation(c, "sb"));
	ents[0].name = "x";
	cache_put_dir(c, "sb", "/d/sub", ents, 1, cache_generation(c, "sb"));

	/* a new file: added to the listing, exact attributes */
	gen = cache_generation(c, "sb");
	st = mkst(3, S_IFREG | 0600);
	cache_update(c, "sb", "/d/new", CACHE_REPLACED, &st, true);
	CHECK(cache_generation(c, "sb") > gen);
	CHECK_INT(cache_lookup(c, "sb", "/d/new", &got, NULL), CACHE_HIT);
	CHECK_INT(got.st_mode, S_IFREG | 0600);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/d", collect_fn, &k));
	CHECK_STR(k.buf, "a:1,sub:4096,new:3,");

	/* changed, not exact: the attributes go, the listing keeps a hint */
	st = mkst(10, S_IFREG | 0644);
	cache_update(c, "sb", "/d/a", CACHE_CHANGED, &st, false);
	CHECK_INT(cache_lookup(c, "sb", "/d/a", &got, &listed), CACHE_MISS);
	CHECK(listed);
	CHECK_INT(got.st_size, 10);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/d", collect_fn, &k));
	CHECK_STR(k.buf, "a:10,sub:4096,new:3,");

	/* a directory changed in place keeps its own listing */
	st = mkst(4096, S_IFDIR | 0700);
	cache_update(c, "sb", "/d/sub", CACHE_CHANGED, &st, true);
	CHECK_INT(cache_lookup(c, "sb", "/d/sub/x", &got, NULL), CACHE_HIT);
	CHECK(cache_get_dir(c, "sb", "/d/sub", collect_fn, &k));

	/* replaced (renamed onto): what was below it is dropped */
	cache_update(c, "sb", "/d/sub", CACHE_REPLACED, &st, false);
	CHECK_INT(cache_lookup(c, "sb", "/d/sub/x", &got, NULL), CACHE_MISS);
	CHECK(!cache_get_dir(c, "sb", "/d/sub", collect_fn, &k));
	CHECK_INT(cache_lookup(c, "sb", "/d/sub", &got, &listed), CACHE_MISS);
	CHECK(listed);
	CHECK_INT(got.st_mode, S_IFDIR | 0700);

	/* removed: negative, and gone from the listing */
	cache_update(c, "sb", "/d/new", CACHE_REMOVED, NULL, false);
	CHECK_INT(cache_lookup(c, "sb", "/d/new", &got, NULL), CACHE_NEGATIVE);
	memset(&k, 0, sizeof(k));
	CHECK(cache_get_dir(c, "sb", "/d", collect_fn, &k));
	CHECK_STR(k.buf, "a:10,sub:4096,");

	/* the listing keeps its expiry: updates do not make it live longer */
	fake_time += 6;
	CHECK(!cache_get_dir(c, "sb", "/d", collect_fn, &k));
	st = mkst(1, S_IFREG | 0644);
	cache_update(c, "sb", "/d/late", CACHE_REPLACED, &st, true);
	CHECK(!cache_get_dir(c, "sb", "/d", collect_fn, &k));
	CHECK_INT(cache_lookup(c, "sb", "/d/late", &got, NULL), CACHE_HIT);

	/* a listing fetched before an update is not stored after it */
	gen = cache_generation(c, "sb");
	cache_update(c, "sb", "/e/f", CACHE_REMOVED, NULL, false);
	cache_put_dir(c, "sb", "/e", ents, 1, gen);
	CHECK(!cache_get_dir(c, "sb", "/e", collect_fn, &k));
	cache_free(c);
}

/* A name that comes or goes changes its directory's time and link count,
 * which only the sandbox knows: the directory's attributes are dropped,
 * its listing is kept; but a new file leaves the link count alone, and its
 * time is this machine's until the attributes expire. A change in place
 * leaves the directory alone. */
UNIT_TEST(update_touches_parent)
{
	struct cache *c = new_cache(5, 5, 5, 100);
	struct cache_dirent ents[2];
	struct stat st, got;
	bool listed;

	ents[0].name = "f";
	ents[0].st = mkst(1, S_IFREG | 0644);
	ents[1].name = "d";
	ents[1].st = mkst(4096, S_IFDIR | 0755);
	cache_put_dir(c, "sb", "/", ents, 2, cache_generation(c, "sb"));   /* fills /d's attributes */
	ents[1].name = "sub";
	cache_put_dir(c, "sb", "/d", ents, 2, cache_generation(c, "sb"));
	CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_HIT);

	/* a change in place: /d stays */
	st = mkst(2, S_IFREG | 0644);
	cache_update(c, "sb", "/d/f", CACHE_CHANGED, &st, true);
	CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_HIT);
	/* a new file: /d's attributes stay (same link count), its time moves
	 * on to now, never back; its listing has the name */
	{
		struct stat before;
		struct timespec now;

		CHECK_INT(cache_lookup(c, "sb", "/d", &before, NULL), CACHE_HIT);
		cache_update(c, "sb", "/d/new", CACHE_REPLACED, &st, true);
		CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_HIT);
		clock_gettime(CLOCK_REALTIME, &now);
		CHECK(S_ISDIR(got.st_mode));
		CHECK_INT(got.st_nlink, before.st_nlink);
		CHECK(got.st_mtim.tv_sec > before.st_mtim.tv_sec ||
		      (got.st_mtim.tv_sec == before.st_mtim.tv_sec && got.st_mtim.tv_nsec > before.st_mtim.tv_nsec));
		CHECK(got.st_mtim.tv_sec <= now.tv_sec);
		CHECK_INT(got.st_ctim.tv_sec, got.st_mtim.tv_sec);
		/* a cached time ahead of this clock (the sandbox's) moves by 1 ns */
		before = got;
		before.st_mtim.tv_sec = now.tv_sec + 1000;
		before.st_mtim.tv_nsec = 999999999;
		cache_put_attr(c, "sb", "/d", &before, cache_generation(c, "sb"));
		cache_update(c, "sb", "/d/new2", CACHE_REPLACED, &st, true);
		CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_HIT);
		CHECK_INT(got.st_mtim.tv_sec, now.tv_sec + 1001);
		CHECK_INT(got.st_mtim.tv_nsec, 0);
	}
	/* a new directory where /d's link count counts subdirectories: one
	 * more, the attributes stay */
	{
		struct stat before;

		CHECK_INT(cache_lookup(c, "sb", "/d", &before, NULL), CACHE_HIT);
		before.st_nlink = 3;
		cache_put_attr(c, "sb", "/d", &before, cache_generation(c, "sb"));
		st = mkst(4096, S_IFDIR | 0755);
		cache_update(c, "sb", "/d/subdir2", CACHE_REPLACED, &st, true);
		CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_HIT);
		CHECK_INT(got.st_nlink, 4);
		CHECK(got.st_mtim.tv_sec > before.st_mtim.tv_sec ||
		      (got.st_mtim.tv_sec == before.st_mtim.tv_sec && got.st_mtim.tv_nsec > before.st_mtim.tv_nsec));
		/* onto a name the listing has (a rename over a directory): not
		 * known, the attributes go */
		cache_update(c, "sb", "/d/subdir2", CACHE_REPLACED, &st, true);
		CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_MISS);
		/* a link count of 1 (every directory's on some file systems) stays */
		before.st_nlink = 1;
		cache_put_attr(c, "sb", "/d", &before, cache_generation(c, "sb"));
		cache_update(c, "sb", "/d/subdir3", CACHE_REPLACED, &st, true);
		CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_HIT);
		CHECK_INT(got.st_nlink, 1);
		/* one that is unknown (0 here): the attributes go */
		before.st_nlink = 0;
		cache_put_attr(c, "sb", "/d", &before, cache_generation(c, "sb"));
	}
	/* a new directory: /d's attributes go (its link count is not known),
	 * its listing stays and has the name */
	st = mkst(4096, S_IFDIR | 0755);
	cache_update(c, "sb", "/d/newdir", CACHE_REPLACED, &st, true);
	CHECK_INT(cache_lookup(c, "sb", "/d", &got, &listed), CACHE_MISS);
	CHECK(listed);
	CHECK(S_ISDIR(got.st_mode));
	CHECK_INT(cache_lookup(c, "sb", "/d/new", &got, NULL), CACHE_HIT);
	CHECK_INT(cache_lookup(c, "sb", "/d/nothing", &got, NULL), CACHE_NEGATIVE);
	/* a name removed from a directory whose attributes were asked again */
	st = mkst(4096, S_IFDIR | 0755);
	cache_put_attr(c, "sb", "/d", &st, cache_generation(c, "sb"));
	cache_update(c, "sb", "/d/sub", CACHE_REMOVED, NULL, false);
	CHECK_INT(cache_lookup(c, "sb", "/d", &got, NULL), CACHE_MISS);
	CHECK_INT(cache_lookup(c, "sb", "/d/sub", &got, NULL), CACHE_NEGATIVE);
	/* a parent with nothing else cached leaves no empty entry behind */
	cache_put_attr(c, "sb2", "/e", &st, cache_generation(c, "sb2"));
	cache_update(c, "sb2", "/e/x", CACHE_REPLACED, &st, true);
	CHECK_INT(cache_lookup(c, "sb2", "/e", &got, NULL), CACHE_MISS);
	CHECK_INT(cache_lookup(c, "sb2", "/e/x", &got, NULL), CACHE_HIT);
	cache_free(c);
}

UNIT_TEST(siblings_unknown)
{
	struct cache *c = new_cache(1, 10, 1, 1000);
	struct cache_dirent ents[3];
	struct stat st = mkst(5, S_IFREG | 0644);

	ents[0].name = "a";
	ents[0].st = st;
	ents[1].name = "b";
	ents[1].st = st;
	ents[2].name = "sub";
	ents[2].st = mkst(4096, S_IFDIR | 0755);
	/* no listing: nothing to say */
	CHECK(!cache_siblings_unknown(c, "sb", "/d/a"));
	cache_put_dir(c, "sb", "/d", ents, 3, cache_generation(c, "sb"));
	CHECK(!cache_siblings_unknown(c, "sb", "/d/a"));
	/* b's attributes dropped (an upload): a's lookup sees it */
	cache_update(c, "sb", "/d/b", CACHE_CHANGED, &st, false);
	CHECK(cache_siblings_unknown(c, "sb", "/d/a"));
	/* b's own lookup does not count b, and sub (a directory) never counts */
	CHECK(!cache_siblings_unknown(c, "sb", "/d/b"));
	/* attr_timeout passed, the listing is fresh: all of them */
	cache_put_attr(c, "sb", "/d/b", &st, cache_generation(c, "sb"));
	fake_time += 2;
	CHECK(cache_siblings_unknown(c, "sb", "/d/b"));
	/* the listing expired too: nothing to say */
	fake_time += 10;
	CHECK(!cache_siblings_unknown(c, "sb", "/d/b"));
	cache_free(c);
}

UNIT_TEST(invalidate_sandbox_returns_paths)
{
	struct cache *c = new_cache(10, 10, 10, 100);
	struct stat st = mkst(1, S_IFREG | 0644), got;
	uint64_t g = cache_generation(c, "sb");
	char *paths = NULL;
	size_t len = 0, n;
	int seen_a = 0, seen_neg = 0;

	cache_put_attr(c, "sb", "/a", &st, g);
	cache_put_negative(c, "sb", "/gone", g);
	cache_put_attr(c, "other", "/a", &st, cache_generation(c, "other"));
	n = cache_invalidate_sandbox_paths(c, "sb", &paths, &len);
	CHECK_INT(n, 2);
	for (size_t off = 0; paths && off < len; off += strlen(paths + off) + 1) {
		seen_a += !strcmp(paths + off, "/a");
		seen_neg += !strcmp(paths + off, "/gone");
	}
	CHECK_INT(seen_a, 1);
	CHECK_INT(seen_neg, 1);
	free(paths);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	CHECK_INT(cache_get_attr(c, "other", "/a", &got), CACHE_HIT);
	/* a put with the old generation is dropped */
	cache_put_attr(c, "sb", "/a", &st, g);
	CHECK_INT(cache_get_attr(c, "sb", "/a", &got), CACHE_MISS);
	n = cache_invalidate_sandbox_paths(c, "nothing-here", &paths, &len);
	CHECK_INT(n, 0);
	free(paths);
	cache_free(c);
}

UNIT_MAIN("cache",
	UNIT_CASE(invalidate_sandbox_returns_paths),
	UNIT_CASE(defaults),
	UNIT_CASE(attr_ttl),
	UNIT_CASE(negative_entries),
	UNIT_CASE(listing_fill),
	UNIT_CASE(listing_odd_names),
	UNIT_CASE(generations),
	UNIT_CASE(invalidate_path_and_parent),
	UNIT_CASE(invalidate_tree_boundaries),
	UNIT_CASE(invalidate_sandbox),
	UNIT_CASE(lru_eviction),
	UNIT_CASE(zero_ttls),
	UNIT_CASE(stats_counters),
	UNIT_CASE(reentrant_callback),
	UNIT_CASE(many_entries_and_sandboxes),
	UNIT_CASE(lookup_through_listing),
	UNIT_CASE(update_keeps_listing),
	UNIT_CASE(update_touches_parent),
	UNIT_CASE(siblings_unknown),
	UNIT_CASE(threaded_stress))
