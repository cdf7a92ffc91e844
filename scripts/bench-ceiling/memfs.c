/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memfs: the ceiling for scripts/bench's sequential I/O. A flat FUSE file
 * system whose files are heap buffers: a read or a write is one memcpy, so
 * whatever it costs beyond that is the kernel's FUSE round trip, and a FUSE
 * file system on this machine cannot be faster than it.
 *
 *     memfs MOUNTPOINT [SEED_NAME SEED_MIB] [-f -o options...]
 *
 * SEED_NAME of SEED_MIB MiB is made at start (a fixed byte pattern), so a
 * fresh mount reads it cold. Built by scripts/bench with
 * `cc -O2 memfs.c $(pkg-config --cflags --libs fuse3)`. Single-threaded
 * (-s is added): a lock is not what it measures.
 *
 * Its kernel side is daytonafs's (src/fuse/fs.c, dfs_tune_kernel), so that
 * the comparison is fair: requests of up to 1 MiB (max_write, and max_pages
 * with it), the mount's readahead set to READ_AHEAD_KB (or $MEMFS_READ_AHEAD_KB;
 * 0 leaves the kernel's) when run as root, no splice, no writeback cache.
 */
#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES 64

struct mem_file {
	char name[256];
	char *data;
	size_t size;
	size_t cap;
};

static struct mem_file files[MAX_FILES];

static struct mem_file *lookup(const char *path)
{
	if(path[0] != '/')
		return NULL;
	for(int i = 0; i < MAX_FILES; i++)
		if(files[i].name[0] && !strcmp(files[i].name, path + 1))
			return &files[i];
	return NULL;
}

static struct mem_file *create_file(const char *name)
{
	if(strchr(name, '/') || strlen(name) >= sizeof(files[0].name))
		return NULL;
	for(int i = 0; i < MAX_FILES; i++)
		if(!files[i].name[0]) {
			strcpy(files[i].name, name);
			return &files[i];
		}
	return NULL;
}

/* Grows a file's buffer to hold at least need bytes (doubling, so a
   sequential write costs amortized one memcpy per byte). */
static int reserve(struct mem_file *f, size_t need)
{
	if(need <= f->cap)
		return 0;
	size_t cap = f->cap ? f->cap : 1 << 20;
	while(cap < need)
		cap *= 2;
	char *p = realloc(f->data, cap);
	if(!p)
		return -ENOMEM;
	f->data = p;
	f->cap = cap;
	return 0;
}

static int m_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof(*st));
	if(!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	struct mem_file *f = lookup(path);
	if(!f)
		return -ENOENT;
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_size = (off_t)f->size;
	return 0;
}

static int m_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off; (void)fi; (void)flags;
	if(strcmp(path, "/"))
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	for(int i = 0; i < MAX_FILES; i++)
		if(files[i].name[0])
			fill(buf, files[i].name, NULL, 0, 0);
	return 0;
}

static int m_open(const char *path, struct fuse_file_info *fi)
{
	struct mem_file *f = lookup(path);
	if(!f)
		return -ENOENT;
	if(fi->flags & O_TRUNC)
		f->size = 0;
	return 0;
}

static int m_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode; (void)fi;
	struct mem_file *f = lookup(path);
	if(!f)
		f = create_file(path + 1);
	if(!f)
		return -ENOSPC;
	f->size = 0;
	return 0;
}

static int m_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	struct mem_file *f = lookup(path);
	if(!f)
		return -ENOENT;
	if((size_t)off >= f->size)
		return 0;
	if(size > f->size - (size_t)off)
		size = f->size - (size_t)off;
	memcpy(buf, f->data + off, size);
	return (int)size;
}

static int m_write(const char *path, const char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	(void)fi;
	struct mem_file *f = lookup(path);
	if(!f)
		return -ENOENT;
	int err = reserve(f, (size_t)off + size);
	if(err)
		return err;
	if((size_t)off > f->size)
		memset(f->data + f->size, 0, (size_t)off - f->size);
	memcpy(f->data + off, buf, size);
	if((size_t)off + size > f->size)
		f->size = (size_t)off + size;
	return (int)size;
}

static int m_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)fi;
	struct mem_file *f = lookup(path);
	if(!f)
		return -ENOENT;
	int err = reserve(f, (size_t)size);
	if(err)
		return err;
	if((size_t)size > f->size)
		memset(f->data + f->size, 0, (size_t)size - f->size);
	f->size = (size_t)size;
	return 0;
}

static int m_unlink(const char *path)
{
	struct mem_file *f = lookup(path);
	if(!f)
		return -ENOENT;
	free(f->data);
	memset(f, 0, sizeof(*f));
	return 0;
}

#define READ_AHEAD_KB 1024

static char mountpoint[PATH_MAX];

/* The device of the FUSE mount at mountpoint, from mountinfo (a stat would
   wait for this very file system, which is in INIT): the last such line. */
static int find_dev(unsigned *maj, unsigned *min)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], mp[PATH_MAX], type[256];
	unsigned a, b;
	int found = 0;

	if(!f)
		return -1;
	while(fgets(line, sizeof(line), f)) {
		char *dash = strstr(line, " - ");
		if(!dash || sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, mp) != 3 ||
		   sscanf(dash + 3, "%255s", type) != 1)
			continue;
		/* (mount points with escaped characters are not ours to tune) */
		if(!strcmp(mp, mountpoint) && (!strcmp(type, "fuse") || !strncmp(type, "fuse.", 5))) {
			*maj = a;
			*min = b;
			found = 1;
		}
	}
	fclose(f);
	return found ? 0 : -1;
}

static void *m_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	const char *env = getenv("MEMFS_READ_AHEAD_KB");
	unsigned kb = env ? (unsigned)strtoul(env, NULL, 10) : READ_AHEAD_KB;
	unsigned maj, min;
	char path[64];
	FILE *f;

	(void)cfg;
	conn->max_write = 1024 * 1024;
	if(!kb || find_dev(&maj, &min))
		return NULL;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	f = fopen(path, "w");
	if(!f)
		return NULL;
	fprintf(f, "%u\n", kb);
	if(fclose(f) == 0)
		conn->max_readahead = kb * 1024;
	return NULL;
}

static const struct fuse_operations ops = {
	.init = m_init,
	.getattr = m_getattr,
	.readdir = m_readdir,
	.open = m_open,
	.create = m_create,
	.read = m_read,
	.write = m_write,
	.truncate = m_truncate,
	.unlink = m_unlink,
};

int main(int argc, char **argv)
{
	/* memfs MOUNTPOINT [SEED_NAME SEED_MIB] [fuse options...] */
	int first_opt = 2;
	if(argc >= 4 && argv[2][0] != '-') {
		struct mem_file *f = create_file(argv[2]);
		size_t size = (size_t)strtoul(argv[3], NULL, 10) << 20;
		if(!f || reserve(f, size))
			return 1;
		for(size_t i = 0; i < size; i++)
			f->data[i] = (char)(i * 131 >> 7);
		f->size = size;
		first_opt = 4;
	}
	if(argc < 2)
		return 2;
	if(!realpath(argv[1], mountpoint))
		return 2;
	char *fargv[64];
	int fargc = 0;
	fargv[fargc++] = argv[0];
	fargv[fargc++] = "-s";
	for(int i = first_opt; i < argc && fargc < 62; i++)
		fargv[fargc++] = argv[i];
	fargv[fargc++] = argv[1];
	return fuse_main(fargc, fargv, &ops, NULL);
}
