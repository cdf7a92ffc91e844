// SPDX-License-Identifier: Apache-2.0
/*
 * The rename pin (rename_pin.h): requests of the mount's own, run inside
 * libfuse just before a rename from the kernel.
 *
 * Why: libfuse's high-level API unlinks a rename's destination from its node
 * table when the rename ends (rename_node), unless the destination is open, in
 * which case it renames it to a .fuse_hidden name first (hide_node). An
 * unlinked node has no path, and libfuse answers any request on it with
 * ESTALE before the mount sees it. The kernel sends an open of that node when
 * its path walk found the name's cached entry just before the rename: a
 * reader that opens doc.txt in a loop while an editor saves it by rename. The
 * kernel retries such an open once, walking the whole path again with a
 * lookup per component; under load the next save (create, write, close,
 * rename: as many requests) fits in that walk, its rename replaces the file
 * the retry's lookup just answered, and the reader got ESTALE (5 in 30 runs
 * of test_rename_over_file_a_reader_keeps_opening on a busy machine). No
 * answer of the mount's lookup can prevent it: that lookup is right, and the
 * rename takes libfuse's lock on the node before the open reaches the mount.
 *
 * How: the mount reads the kernel's requests itself (fuse_session_custom_io).
 * Before it hands libfuse a rename, it runs a LOOKUP of the destination, an
 * OPEN of it if it is a regular file (rename_pin_opening: a handle that does
 * nothing) and a FORGET of that lookup, each through
 * fuse_session_process_buf on this thread; their replies are kept from the
 * kernel (writev below). libfuse then finds the destination open and hides
 * it, which the mount keeps local (hide_open_file, rename_pin_hiding); an open
 * of its inode is an open of the hidden name, answered with the file now at
 * the name it was hidden from. The pin's open is never released: its node is
 * reachable only by the kernel's inode, and libfuse drops it when the kernel
 * forgets that; the release would only make libfuse unlink the hidden name,
 * which never exists in the sandbox. A closed file whose upload waits is
 * pinned the same way (hide_open_file), and a rename that fails after the
 * hide leaves the file as it was; the kernel's entry of the name is then
 * invalidated (inval_later), since libfuse keeps the inode under the hidden
 * name.
 *
 * Not for a rename with flags (RENAME_NOREPLACE, RENAME_EXCHANGE): libfuse
 * hides before the mount is asked, and a refused rename would leave the name
 * hidden. Custom reads and writes turn splice off, which the mount never
 * had: libfuse splices requests in only for a write_buf operation, and
 * replies out only when asked to. libfuse before 3.13 (Ubuntu 22.04 has
 * 3.10) has no custom I/O: there the pin is not built, and such an open
 * fails with ESTALE as before.
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include "rename_pin.h"

static __thread bool opening, hiding;

bool rename_pin_opening(void)
{
	return opening;
}

bool rename_pin_hiding(void)
{
	return hiding;
}

bool rename_pin_destination(const void *buf, size_t len, uint64_t *newdir, const char **name, size_t *namelen)
{
	const struct fuse_in_header *in = buf;
	const char *names, *newname, *end = (const char *)buf + len;
	const char *nul;

	if (len < sizeof(*in))
		return false;
	if (in->opcode == FUSE_RENAME && len >= sizeof(*in) + sizeof(struct fuse_rename_in)) {
		const struct fuse_rename_in *a = (const void *)(in + 1);

		*newdir = a->newdir;
		names = (const char *)(a + 1);
	} else if (in->opcode == FUSE_RENAME2 && len >= sizeof(*in) + sizeof(struct fuse_rename2_in)) {
		const struct fuse_rename2_in *a = (const void *)(in + 1);

		if (a->flags)
			return false;
		*newdir = a->newdir;
		names = (const char *)(a + 1);
	} else {
		return false;
	}
	nul = memchr(names, '\0', (size_t)(end - names));
	if (!nul)
		return false;
	newname = nul + 1;
	nul = memchr(newname, '\0', (size_t)(end - newname));
	if (!nul || nul == newname)
		return false;
	*name = newname;
	*namelen = (size_t)(nul - newname);
	return true;
}

#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 13)

/* The reply to the request this thread runs for the pin. */
struct pin_capture {
	uint64_t unique;
	int error;
	size_t size;
	bool done;
	unsigned char data[sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out)];
};

static struct fuse_session *pin_session;
static uint64_t pin_unique;   /* atomically: the pin's request ids */
static __thread struct pin_capture *capture;

/* The rename whose destination this thread's pin hid: its id, and the
 * destination as the kernel named it. */
static __thread uint64_t pinned_rename, pinned_dir;
static __thread size_t pinned_len;
static __thread char pinned_name[NAME_MAX + 1];

struct inval {
	int fd;
	size_t len;
	struct {
		struct fuse_out_header h;
		struct fuse_notify_inval_entry_out a;
		char name[NAME_MAX + 1];
	} msg;
};

static void *inval_run(void *arg)
{
	struct inval *v = arg;

	/* ENOENT: the kernel no longer holds the entry; other errors: the
	 * mount is gone. Nothing to undo either way. */
	ssize_t n = write(v->fd, &v->msg, v->len);

	(void)n;
	close(v->fd);
	free(v);
	return NULL;
}

/*
 * After a pinned rename failed: libfuse keeps the destination's inode under
 * its hidden name, and the kernel's entry of the name points to it; the
 * kernel is told to forget that entry, so that its next lookup gets the
 * file's own node (with its link count, not libfuse's hidden one's 0). Not
 * inline: the kernel holds the directory locked until the rename's answer is
 * in, and its invalidation takes that lock. The thread writes on its own
 * descriptor of the connection, so it outlives nothing of the session.
 */
static void inval_later(int fd)
{
	struct inval *v = calloc(1, sizeof(*v));
	pthread_attr_t attr;
	pthread_t t;

	if (!v)
		return;   /* the entry expires with the kernel's entry timeout */
	v->len = sizeof(v->msg.h) + sizeof(v->msg.a) + pinned_len + 1;
	v->msg.h.len = (uint32_t)v->len;
	v->msg.h.error = FUSE_NOTIFY_INVAL_ENTRY;
	v->msg.a.parent = pinned_dir;
	v->msg.a.namelen = (uint32_t)pinned_len;
	memcpy(v->msg.name, pinned_name, pinned_len);
	v->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (v->fd < 0) {
		free(v);
		return;
	}
	if (pthread_attr_init(&attr) == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, inval_run, v) == 0)
			v = NULL;
		pthread_attr_destroy(&attr);
	}
	if (v) {
		close(v->fd);
		free(v);
	}
}

/* Ids the kernel never uses: it counts up from 0 in steps of 2 (an
 * interrupt's id is the request's plus 1). */
static uint64_t next_unique(void)
{
	return (1ULL << 63) | (__atomic_add_fetch(&pin_unique, 1, __ATOMIC_RELAXED) << 1);
}

/* Runs one request inside libfuse on this thread. With cap, its reply is
 * kept there instead of going to the kernel; returns whether one came. */
static bool run(void *req, size_t len, struct pin_capture *cap)
{
	struct fuse_in_header *in = req;
	struct fuse_buf buf = { .size = len, .mem = req };

	in->len = (uint32_t)len;
	in->unique = next_unique();
	if (cap) {
		memset(cap, 0, sizeof(*cap));
		cap->unique = in->unique;
		capture = cap;
	}
	fuse_session_process_buf(pin_session, &buf);
	capture = NULL;
	return cap && cap->done;
}

static void pin(const struct fuse_in_header *rin, uint64_t newdir, const char *newname, size_t namelen)
{
	struct {
		struct fuse_in_header h;
		char name[NAME_MAX + 1];
	} lookup;
	struct {
		struct fuse_in_header h;
		union {
			struct fuse_open_in open;
			struct fuse_forget_in forget;
		} a;
	} req;
	struct fuse_entry_out entry;
	struct pin_capture cap;

	if (namelen > NAME_MAX)
		return;
	memset(&lookup, 0, sizeof(lookup));
	lookup.h.opcode = FUSE_LOOKUP;
	lookup.h.nodeid = newdir;
	lookup.h.uid = rin->uid;
	lookup.h.gid = rin->gid;
	lookup.h.pid = rin->pid;
	memcpy(lookup.name, newname, namelen);
	if (!run(&lookup, sizeof(lookup.h) + namelen + 1, &cap) || cap.error ||
	    cap.size < sizeof(entry.nodeid))
		return;
	memset(&entry, 0, sizeof(entry));
	memcpy(&entry, cap.data, cap.size < sizeof(entry) ? cap.size : sizeof(entry));
	if (!entry.nodeid)
		return;
	memset(&req, 0, sizeof(req));
	req.h = lookup.h;
	req.h.nodeid = entry.nodeid;
	if (cap.size >= sizeof(entry) && S_ISREG(entry.attr.mode)) {
		req.h.opcode = FUSE_OPEN;
		req.a.open.flags = O_RDONLY;
		opening = true;
		if (run(&req, sizeof(req.h) + sizeof(req.a.open), &cap) && !cap.error) {
			hiding = true;
			pinned_rename = rin->unique;
			pinned_dir = newdir;
			pinned_len = namelen;
			memcpy(pinned_name, newname, namelen);
		}
		opening = false;
	}
	/* The kernel holds the destination's entry for the rename: the node
	 * stays while that lookup is forgotten. */
	req.h.opcode = FUSE_FORGET;
	req.a.forget.nlookup = 1;
	run(&req, sizeof(req.h) + sizeof(req.a.forget), NULL);
}

static ssize_t pin_read(int fd, void *buf, size_t len, void *userdata)
{
	uint64_t newdir;
	const char *name;
	size_t namelen;
	ssize_t n;
	int err;

	(void)userdata;
	hiding = false;
	pinned_rename = 0;
	n = read(fd, buf, len);
	err = errno;
	if (n > 0 && rename_pin_destination(buf, (size_t)n, &newdir, &name, &namelen)) {
		int old;

		/* libfuse's worker enables cancellation around this read, and
		 * an unmount cancels workers: the pin's requests take the
		 * mount's locks, which a cancelled thread would never release. */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
		pin(buf, newdir, name, namelen);
		pthread_setcancelstate(old, NULL);
	}
	errno = err;
	return n;
}

static ssize_t pin_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	struct pin_capture *cap = capture;
	ssize_t total = 0;

	(void)userdata;
	if (!cap && pinned_rename && iov[0].iov_len >= sizeof(*out) && out->unique == pinned_rename) {
		/* The answer to the rename this thread pinned for. */
		bool failed = out->error != 0;

		pinned_rename = 0;
		total = writev(fd, iov, count);
		if (failed)
			inval_later(fd);
		return total;
	}
	if (!cap || iov[0].iov_len < sizeof(*out) || out->unique != cap->unique)
		return writev(fd, iov, count);
	cap->error = out->error;
	for (int i = 0; i < count; i++) {
		size_t skip = i == 0 ? sizeof(*out) : 0;

		if (iov[i].iov_len > skip && cap->size < sizeof(cap->data)) {
			size_t n = iov[i].iov_len - skip;

			if (n > sizeof(cap->data) - cap->size)
				n = sizeof(cap->data) - cap->size;
			memcpy(cap->data + cap->size, (const char *)iov[i].iov_base + skip, n);
			cap->size += n;
		}
		total += (ssize_t)iov[i].iov_len;
	}
	cap->done = true;
	return total;
}

int rename_pin_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = pin_read,
		.writev = pin_writev,
	};
	int rc;

	rc = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (rc == 0)
		__atomic_store_n(&pin_session, se, __ATOMIC_RELEASE);
	return rc;
}

#else   /* libfuse without custom I/O */

int rename_pin_install(struct fuse_session *se)
{
	(void)se;
	return 0;
}

#endif
