/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec.c - commands run in sandboxes, with their output as files.
 *
 * See exec.h for the layout of STATE_DIR/cmd/N. This file has three parts:
 *  - the shell scripts (pure: built from the spec, unit-tested, and run by
 *    the unit tests under dash and bash);
 *  - the in-memory model: per sandbox (struct ebox) the known commands
 *    (struct ecmd), behind one mutex that is never held across a request;
 *  - the pollers: one thread per command, alive only while someone
 *    waits on that command or while a command this mount started runs (so
 *    that on_end is called). Each poll is one listing of cmd/N.
 */
#include "exec.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define EXEC_PATH_MAX 4096
#define WAIT_SLICE_MS 100        /* how often blocked waits look at o->interrupted */
#define LAUNCH_TIMEOUT_S 30      /* the launcher returns in well under a second */
#define KILL_TIMEOUT_S 30
#define SMALL_FILE_MAX 4096      /* exit, state */
#define COMMAND_TEXT_MAX (16u << 20)

/* ---- scripts -------------------------------------------------------------- */

static bool env_key_valid(const char *k)
{
	if (!k || !(*k == '_' || (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z')))
		return false;
	for (k++; *k; k++)
		if (!(*k == '_' || (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
		      (*k >= '0' && *k <= '9')))
			return false;
	return true;
}

/*
 * The feeder copies stdin.0, stdin.1, ... into the command's stdin pipe in
 * order as they appear, and ends (closing the pipe: EOF) at stdin.eof. Each
 * chunk is moved into place whole, so a chunk that exists is complete. The
 * mount writes stdin.eof only after the last chunk, but the feeder may see
 * the eof before it sees that chunk, hence the second look. Idle polling
 * backs off to 0.5 s.
 */
static const char wrapper_feeder[] =
	"feed() {\n"
	"\tk=0; t=0.01\n"
	"\twhile :; do\n"
	"\t\tif [ -e \"$d/stdin.$k\" ]; then\n"
	"\t\t\tcat \"$d/stdin.$k\" || return 0\n"
	"\t\t\tk=$((k+1)); t=0.01\n"
	"\t\telif [ -e \"$d/stdin.eof\" ]; then\n"
	"\t\t\t[ -e \"$d/stdin.$k\" ] || return 0\n"
	"\t\telse\n"
	"\t\t\tsleep $t\n"
	"\t\t\tcase $t in 0.01) t=0.02;; 0.02) t=0.05;; 0.05) t=0.1;; 0.1) t=0.2;; *) t=0.5;; esac\n"
	"\t\tfi\n"
	"\tdone\n"
	"}\n"
	"feed >\"$d/stdin.pipe\" & f=$!\n";

/*
 * The watchdog of a timeout. It is not in the command's process group (the
 * command is setsid'd into its own), so killing that group spares it and the
 * wrapper, which then records the exit status. The wrapper kills the
 * watchdog when the command ends first; once the watchdog has fired it
 * ignores that, to send the SIGKILL 2 s later to what is left of the group.
 */
static const char wrapper_watchdog_fmt[] =
	"(\n"
	"\tsleep %ld & z=$!\n"
	"\ttrap 'kill $z 2>/dev/null; exit 0' TERM\n"
	"\twait $z\n"
	"\t[ -e \"$d/exit\" ] && exit 0\n"
	"\ttrap '' TERM\n"
	"\techo timedout >\"$d/state\"\n"
	"\tkill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null\n"
	"\tsleep 2\n"
	"\tkill -KILL -$p 2>/dev/null || kill -KILL $p 2>/dev/null\n"
	") & w=$!\n";

int exec_build_wrapper(struct strbuf *sb, const struct exec_spec *spec)
{
	size_t i;

	for (i = 0; i < spec->n_env; i++)
		if (!env_key_valid(spec->env[i].key) || !spec->env[i].value)
			return -EINVAL;
	/* Written for sh (dash or bash as sh): it runs under "sh", whatever
	 * shell the toolbox's /process/execute uses. */
	sb_adds(sb, "d=$1\n"
		"r=$(command -v bash) || r=$(command -v sh) || r=/bin/sh\n"
		"s=$(command -v setsid) || s=\n");
	if (spec->with_stdin)
		sb_adds(sb, wrapper_feeder);
	/* The environment as assignments before the command word: they reach
	 * the command only, not the wrapper's own tools (a PATH=... must not
	 * change which mv the wrapper runs). $s and $r are absolute paths, as
	 * the shell would look them up in such a PATH. */
	for (i = 0; i < spec->n_env; i++) {
		sb_adds(sb, spec->env[i].key);
		sb_addc(sb, '=');
		sh_quote(sb, spec->env[i].value);
		sb_addc(sb, ' ');
	}
	/* setsid: the command gets a process group of its own (its pid), so a
	 * kill of the group reaches everything it started and nothing else. */
	sb_addf(sb, "$s $r \"$d/command\" <%s >>\"$d/stdout\" 2>>\"$d/stderr\" & p=$!\n",
		spec->with_stdin ? "\"$d/stdin.pipe\"" : "/dev/null");
	sb_adds(sb, "echo $p >\"$d/pgid.tmp\" && mv -f \"$d/pgid.tmp\" \"$d/pgid\"\n");
	if (spec->timeout_s > 0)
		sb_addf(sb, wrapper_watchdog_fmt, spec->timeout_s);
	sb_adds(sb, "wait $p; c=$?\n");
	if (spec->timeout_s > 0)
		sb_adds(sb, "kill $w 2>/dev/null\n");
	if (spec->with_stdin)
		sb_adds(sb, "kill $f 2>/dev/null\n");
	/* exit last, and atomically: its existence means the streams are final. */
	sb_adds(sb, "echo $c >\"$d/exit.tmp\" && mv -f \"$d/exit.tmp\" \"$d/exit\"\n");
	return sb->oom ? -ENOMEM : 0;
}

/* Adds: printf %s 'BASE64' | base64 -d */
static void add_decoder(struct strbuf *sb, const void *data, size_t len)
{
	sb_adds(sb, "printf %s '");
	base64_encode(sb, data, len);
	sb_adds(sb, "' | base64 -d");
}

/*
 * The launcher is fed to the toolbox's shell, which may be zsh, bash or sh,
 * so it keeps to what all three read alike. Everything taken from the user
 * (command, wrapper with its environment, cwd) travels in base64, so any byte
 * survives JSON (which would turn invalid UTF-8 into U+FFFD) and quoting.
 * mkdir without -p claims the number: a mount that collides with another
 * one simply takes the next number.
 */
int exec_build_launcher(struct strbuf *sb, const char *state_dir, unsigned first,
			const struct exec_spec *spec)
{
	struct strbuf wrapper = STRBUF_INIT;
	const char *cmd = spec->command ? spec->command : "";
	int rc;

	rc = exec_build_wrapper(&wrapper, spec);
	if (rc < 0)
		goto out;
	sb_adds(sb, "S=");
	sh_quote(sb, state_dir);
	sb_adds(sb, "\ncase $S in /*) ;; *) S=$PWD/$S ;; esac\n");
	if (spec->cwd && *spec->cwd) {
		/* The x keeps a trailing newline of the name from $(...). */
		sb_adds(sb, "c=$(");
		add_decoder(sb, spec->cwd, strlen(spec->cwd));
		sb_adds(sb, "; echo x); c=${c%x}\n"
			"cd -- \"$c\" 2>/dev/null || { echo 'daytonafs-error cwd'; exit 0; }\n");
	}
	sb_adds(sb, "mkdir -p \"$S/cmd\" 2>/dev/null\n"
		"[ -d \"$S/cmd\" ] || { echo 'daytonafs-error state directory'; exit 0; }\n");
	sb_addf(sb, "n=%u; i=0\n", first);
	sb_adds(sb, "while ! mkdir \"$S/cmd/$n\" 2>/dev/null; do\n"
		"\ti=$((i+1)); n=$((n+1))\n"
		"\tif [ $i -ge 1000 ]; then echo 'daytonafs-error mkdir'; exit 0; fi\n"
		"done\n"
		"d=$S/cmd/$n\n"
		"if ");
	add_decoder(sb, cmd, strlen(cmd));
	sb_adds(sb, " >\"$d/command\" && ");
	add_decoder(sb, wrapper.buf, wrapper.len);
	sb_adds(sb, " >\"$d/run\" && : >\"$d/stdout\" && : >\"$d/stderr\"");
	if (spec->with_stdin)
		sb_adds(sb, " && mkfifo \"$d/stdin.pipe\"");
	/* A half-made command gets an exit, so it does not look running forever. */
	sb_adds(sb, "; then :; else\n"
		"\techo 'daytonafs: could not set up the command' >>\"$d/stderr\"\n"
		"\techo 127 >\"$d/exit\"; echo \"daytonafs-error setup $n\"; exit 0\n"
		"fi\n"
		"if command -v setsid >/dev/null 2>&1; then\n"
		"\tsetsid sh \"$d/run\" \"$d\" >/dev/null 2>&1 </dev/null &\n"
		"else\n"
		"\tsh \"$d/run\" \"$d\" >/dev/null 2>&1 </dev/null &\n"
		"fi\n"
		"echo $! >\"$d/wpid\"\n"
		/* Started means the command has its process group: kill works from now. */
		"i=0\n"
		"while [ ! -e \"$d/pgid\" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n"
		"echo \"daytonafs-started $n\"\n");
	rc = sb->oom ? -ENOMEM : 0;
out:
	sb_free(&wrapper);
	return rc;
}

/*
 * The kill script, run by sh -c (the toolbox shell may be zsh, whose kill
 * differs). state is written first, so that the exit the wrapper records
 * reads as "killed". When neither the group nor the wrapper is alive (the
 * sandbox was restarted under it), the record is ended here.
 */
static const char kill_script[] =
	"if [ -e \"$d/exit\" ]; then echo daytonafs-ended; exit 0; fi\n"
	"i=0\n"
	"while [ ! -s \"$d/pgid\" ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done\n"
	"p=$(cat \"$d/pgid\" 2>/dev/null); w=$(cat \"$d/wpid\" 2>/dev/null)\n"
	"case $p in ''|*[!0-9]*) p= ;; esac\n"
	"case $w in ''|*[!0-9]*) w= ;; esac\n"
	"echo killed >\"$d/state\"\n"
	"if [ -n \"$p\" ] && { kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; }; then\n"
	"\tk='sleep 2; kill -KILL -$1 2>/dev/null || kill -KILL $1 2>/dev/null'\n"
	"\tif command -v setsid >/dev/null 2>&1; then\n"
	"\t\tsetsid sh -c \"$k\" sh $p >/dev/null 2>&1 </dev/null &\n"
	"\telse\n"
	"\t\tsh -c \"$k\" sh $p >/dev/null 2>&1 </dev/null &\n"
	"\tfi\n"
	"elif [ -z \"$w\" ] || ! kill -0 $w 2>/dev/null; then\n"
	"\t[ -e \"$d/exit\" ] || { echo 137 >\"$d/exit.tmp\" && mv -f \"$d/exit.tmp\" \"$d/exit\"; }\n"
	"fi\n"
	"echo daytonafs-killed\n";

void exec_build_kill(struct strbuf *sb, const char *cmd_dir)
{
	struct strbuf script = STRBUF_INIT;

	sb_adds(&script, "d=");
	sh_quote(&script, cmd_dir);
	sb_addc(&script, '\n');
	sb_adds(&script, kill_script);
	if (script.oom) {
		sb->oom = true;
	} else {
		sb_adds(sb, "sh -c ");
		sh_quote(sb, script.buf);
	}
	sb_free(&script);
}

int exec_parse_launch(const char *output, unsigned *n)
{
	const char *p = output ? strstr(output, "daytonafs-started ") : NULL;
	unsigned long v;
	char *end;

	if (p) {
		p += strlen("daytonafs-started ");
		errno = 0;
		v = strtoul(p, &end, 10);
		if (end != p && !errno && v > 0 && v <= UINT_MAX && (*end == '\n' || *end == '\0' ||
								     *end == '\r')) {
			*n = (unsigned)v;
			return 0;
		}
		return -EIO;
	}
	if (output && strstr(output, "daytonafs-error cwd"))
		return -ENOENT;
	return -EIO;
}

/* ---- parsers ---------------------------------------------------------------- */

bool exec_parse_cmd_name(const char *name, unsigned *n)
{
	unsigned long v = 0;
	const char *p;

	if (!name || *name < '1' || *name > '9')
		return false;
	for (p = name; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > UINT_MAX)
			return false;
	}
	*n = (unsigned)v;
	return true;
}

void exec_parse_listing(const struct dt_fileinfo *fi, size_t n, struct exec_listing *out)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < n; i++) {
		const char *name = fi[i].name;

		if (!name)
			continue;
		if (!strcmp(name, "exit")) {
			out->ended = true;
		} else if (!strcmp(name, "state")) {
			out->has_state = true;
		} else if (!strcmp(name, "pgid")) {
			out->has_pgid = true;
		} else if (!strcmp(name, "stdout")) {
			out->size[EXEC_STDOUT] = fi[i].size;
		} else if (!strcmp(name, "stderr")) {
			out->size[EXEC_STDERR] = fi[i].size;
		} else if (!strcmp(name, "stdin.pipe")) {
			out->with_stdin = true;
		} else if (!strcmp(name, "stdin.eof")) {
			out->stdin_eof = true;
		} else if (!strncmp(name, "stdin.", 6)) {
			/* stdin.K, not stdin.K.part: "0" is a valid K here. */
			const char *p = name + 6;
			unsigned long k = 0;

			if (!*p || (*p == '0' && p[1]))
				continue;
			for (; *p >= '0' && *p <= '9'; p++) {
				k = k * 10 + (unsigned long)(*p - '0');
				if (k >= UINT_MAX)
					break;
			}
			if (*p || k >= UINT_MAX)
				continue;
			if ((unsigned)k + 1 > out->stdin_next)
				out->stdin_next = (unsigned)k + 1;
		}
	}
}

int exec_parse_exit(const char *text, size_t len, int *code)
{
	char buf[32];
	char *end;
	long v;

	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	if (!len || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (*end || errno || v < INT_MIN || v > INT_MAX)
		return -EINVAL;
	*code = (int)v;
	return 0;
}

enum exec_state exec_parse_state(const char *text, size_t len)
{
	if (!text)
		return EXEC_EXITED;
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	if (len == 6 && !memcmp(text, "killed", 6))
		return EXEC_KILLED;
	if (len == 8 && !memcmp(text, "timedout", 8))
		return EXEC_TIMEDOUT;
	return EXEC_EXITED;
}

long exec_backoff(long cur_ms, bool changed, bool waiting, long min_ms, long max_ms)
{
	if (!waiting)
		return max_ms;
	if (changed || cur_ms < min_ms)
		return min_ms;
	if (cur_ms >= max_ms / 2)
		return max_ms;
	return cur_ms * 2;
}

const char *exec_state_name(enum exec_state s)
{
	switch (s) {
	case EXEC_RUNNING:
		return "running";
	case EXEC_EXITED:
		return "exited";
	case EXEC_KILLED:
		return "killed";
	case EXEC_TIMEDOUT:
		return "timed out";
	}
	return "unknown";
}

void exec_options_defaults(struct exec_options *o)
{
	memset(o, 0, sizeof(*o));
	o->state_dir = "/tmp/.daytonafs";
	o->poll_min_ms = 50;
	o->poll_max_ms = 1000;
}

/* ---- the model ------------------------------------------------------------ */

struct poll_req {
	void *handle;
	enum exec_stream s;
	uint64_t off;
	struct poll_req *next;
};

struct ecmd {
	unsigned n;
	bool known;                 /* its listing was read at least once */
	bool ended;
	enum exec_state state;
	int exit_code;
	uint64_t size[2];
	bool with_stdin, stdin_eof;
	unsigned stdin_next;
	bool mine;                  /* started (or killed) by this mount: on_end is owed */
	bool end_reported;
	char *text;                 /* the command text, once read */
	size_t text_len;

	int waiters;                /* readers and exit waiters blocked on it */
	unsigned poll_seq;          /* polls completed */
	int poll_err;               /* the last poll's error that waiters should see, or 0 */
	struct poll_req *polls;
	bool poller_on;
	long interval_ms;
	int64_t next_poll_ms, last_poll_ms;
	pthread_cond_t cv;          /* its state changed */
	pthread_cond_t poll_cv;     /* wakes its poller */
	pthread_mutex_t stdin_lock; /* orders stdin chunks; held across requests, per command only */
};

struct ebox {
	char id[64];
	char url[512];
	int refs;
	bool listed, dead;
	struct ecmd **cmds;         /* ascending n */
	size_t n_cmds, cap;
	unsigned max_n;             /* highest number known or claimed */
	struct ebox *next;
};

struct exec_mgr {
	struct dt_client *dt;
	struct exec_options o;
	char *state_dir;
	pthread_mutex_t lock;
	pthread_cond_t idle_cv;     /* pollers reached 0 */
	pthread_condattr_t cattr;
	int pollers;
	/* Pollers that have finished, to be joined: joined rather than
	 * detached so that none is still in its exit (curl's per-thread
	 * handle is freed then) when exec_mgr_free returns. */
	pthread_t *exited;
	size_t n_exited, cap_exited;
	bool stopping;
	struct ebox *boxes;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *lock, int64_t until_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(until_ms / 1000);
	ts.tv_nsec = (long)(until_ms % 1000) * 1000000;
	pthread_cond_timedwait(cv, lock, &ts);
}

static bool interrupted(struct exec_mgr *m)
{
	return m->o.interrupted && m->o.interrupted();
}

static struct ecmd *cmd_new(struct exec_mgr *m, unsigned n)
{
	struct ecmd *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->n = n;
	c->state = EXEC_RUNNING;
	c->exit_code = -1;
	c->interval_ms = m->o.poll_min_ms;
	pthread_cond_init(&c->cv, &m->cattr);
	pthread_cond_init(&c->poll_cv, &m->cattr);
	pthread_mutex_init(&c->stdin_lock, NULL);
	return c;
}

static void cmd_free(struct ecmd *c)
{
	struct poll_req *p, *next;

	for (p = c->polls; p; p = next) {
		next = p->next;
		free(p);
	}
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->poll_cv);
	pthread_mutex_destroy(&c->stdin_lock);
	free(c->text);
	free(c);
}

static void box_free(struct ebox *b)
{
	size_t i;

	for (i = 0; i < b->n_cmds; i++)
		cmd_free(b->cmds[i]);
	free(b->cmds);
	free(b);
}

/* Lock held. The box for id, created when missing; takes a reference. */
static struct ebox *box_get(struct exec_mgr *m, const struct dt_box *db)
{
	struct ebox *b;

	for (b = m->boxes; b; b = b->next)
		if (!strcmp(b->id, db->id))
			break;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		if (!str_copy(b->id, sizeof(b->id), db->id)) {
			free(b);
			return NULL;
		}
		b->refs = 1;    /* the list's */
		b->next = m->boxes;
		m->boxes = b;
	}
	/* The toolbox URL can change (a region move); pollers use the latest. */
	if (db->toolbox_url)
		str_copy(b->url, sizeof(b->url), db->toolbox_url);
	b->refs++;
	return b;
}

/* Lock held. */
static void box_put(struct ebox *b)
{
	if (--b->refs == 0)
		box_free(b);
}

static size_t cmd_index(const struct ebox *b, unsigned n, bool *found)
{
	size_t lo = 0, hi = b->n_cmds;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->cmds[mid]->n < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < b->n_cmds && b->cmds[lo]->n == n;
	return lo;
}

static struct ecmd *cmd_find(const struct ebox *b, unsigned n)
{
	bool found;
	size_t i = cmd_index(b, n, &found);

	return found ? b->cmds[i] : NULL;
}

/* Lock held. The entry for n, added when missing; NULL on out of memory. */
static struct ecmd *cmd_add(struct exec_mgr *m, struct ebox *b, unsigned n)
{
	bool found;
	size_t i = cmd_index(b, n, &found);
	struct ecmd *c;

	if (found)
		return b->cmds[i];
	if (b->n_cmds == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct ecmd **nc = realloc(b->cmds, cap * sizeof(*nc));

		if (!nc)
			return NULL;
		b->cmds = nc;
		b->cap = cap;
	}
	c = cmd_new(m, n);
	if (!c)
		return NULL;
	memmove(b->cmds + i + 1, b->cmds + i, (b->n_cmds - i) * sizeof(*b->cmds));
	b->cmds[i] = c;
	b->n_cmds++;
	if (n > b->max_n)
		b->max_n = n;
	return c;
}

static int cmd_path(const struct exec_mgr *m, unsigned n, const char *file, char *out, size_t cap)
{
	bool ok;

	if (file)
		ok = str_printf(out, cap, "%s/cmd/%u/%s", m->state_dir, n, file);
	else
		ok = str_printf(out, cap, "%s/cmd/%u", m->state_dir, n);
	return ok ? 0 : -ENAMETOOLONG;
}

/* A dt_box with copies of the box's strings, for use without the lock. */
struct box_copy {
	char id[64];
	char url[512];
	struct dt_box db;
};

static void box_copy(const struct ebox *b, struct box_copy *bc)
{
	memcpy(bc->id, b->id, sizeof(bc->id));
	memcpy(bc->url, b->url, sizeof(bc->url));
	bc->db.id = bc->id;
	bc->db.toolbox_url = bc->url;
}

/* ---- requests --------------------------------------------------------------- */

struct mem_sink {
	struct strbuf sb;
	size_t max;
};

static int mem_sink_fn(void *ctx, const void *data, size_t len)
{
	struct mem_sink *s = ctx;

	if (s->sb.len + len > s->max)
		return -EFBIG;
	sb_add(&s->sb, data, len);
	return s->sb.oom ? -ENOMEM : 0;
}

/* The whole of a small file (malloc'd, NUL-terminated). */
static int download_small(struct exec_mgr *m, const struct dt_box *db, const char *path, size_t max,
			  char **out, size_t *len, struct dt_error *err)
{
	struct mem_sink s = { STRBUF_INIT, max };
	int64_t rc;

	rc = dt_fs_download(m->dt, db, path, 0, 0, mem_sink_fn, &s, err);
	if (rc < 0) {
		sb_free(&s.sb);
		return (int)rc;
	}
	*len = s.sb.len;
	*out = sb_detach(&s.sb);
	return *out ? 0 : -ENOMEM;
}

struct fetch {
	struct exec_listing l;
	bool have_end;              /* end_state and exit_code are set */
	enum exec_state end_state;
	int exit_code;
};

/*
 * One listing of cmd/N; when it shows the exit and the caller does not know
 * the end yet (need_end), also the exit file and, if present, the state
 * file. The listing stats "exit" before "stderr" and "stdout" (it is sorted
 * by name), and exit is written after the command's streams are closed, so
 * the sizes seen beside an exit are final.
 */
static int fetch_cmd(struct exec_mgr *m, const struct dt_box *db, unsigned n, bool need_end,
		     struct fetch *f, struct dt_error *err)
{
	char path[EXEC_PATH_MAX];
	struct dt_fileinfo *fi = NULL;
	size_t nfi = 0, len = 0;
	char *text = NULL;
	int rc;

	memset(f, 0, sizeof(*f));
	rc = cmd_path(m, n, NULL, path, sizeof(path));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	rc = dt_fs_list(m->dt, db, path, &fi, &nfi, err);
	if (rc < 0)
		return rc;
	exec_parse_listing(fi, nfi, &f->l);
	dt_fileinfo_free(fi, nfi);
	if (!f->l.ended || !need_end)
		return 0;

	rc = cmd_path(m, n, "exit", path, sizeof(path));
	if (rc == 0)
		rc = download_small(m, db, path, SMALL_FILE_MAX, &text, &len, err);
	if (rc < 0)
		return rc;
	if (exec_parse_exit(text, len, &f->exit_code) < 0)
		f->exit_code = -1;
	free(text);
	text = NULL;
	f->end_state = EXEC_EXITED;
	if (f->l.has_state) {
		rc = cmd_path(m, n, "state", path, sizeof(path));
		if (rc == 0)
			rc = download_small(m, db, path, SMALL_FILE_MAX, &text, &len, err);
		if (rc == 0)
			f->end_state = exec_parse_state(text, len);
		else if (rc != -ENOENT)
			return rc;
		free(text);
	}
	f->have_end = true;
	return 0;
}

/* Callbacks gathered under the lock, made after it is released. */
struct pending {
	struct poll_req *wake;      /* woken handles */
	bool end;                   /* call on_end for (box, n) */
	char id[64];
	unsigned n;
};

static void pending_run(struct exec_mgr *m, struct pending *p)
{
	struct poll_req *r, *next;

	for (r = p->wake; r; r = next) {
		next = r->next;
		if (m->o.wake)
			m->o.wake(m->o.ctx, r->handle);
		free(r);
	}
	p->wake = NULL;
	if (p->end && m->o.on_end)
		m->o.on_end(m->o.ctx, p->id, p->n);
	p->end = false;
}

static bool cmd_waiting(const struct ecmd *c)
{
	return c->waiters > 0 || c->polls;
}

/* Lock held. Moves the poll handles that are now ready to p->wake. */
static void take_ready_polls(struct ecmd *c, struct pending *p)
{
	struct poll_req **pp = &c->polls;

	while (*pp) {
		struct poll_req *r = *pp;

		if (c->ended || c->size[r->s] > r->off) {
			*pp = r->next;
			r->next = p->wake;
			p->wake = r;
		} else {
			pp = &r->next;
		}
	}
}

/* Lock held. Merges a fetch into the model; sets the next poll time. */
static void apply_fetch(struct exec_mgr *m, struct ebox *b, struct ecmd *c, const struct fetch *f,
			struct pending *p)
{
	bool changed = false, was_known = c->known;
	int s;
	int64_t now = now_ms();

	for (s = 0; s < 2; s++) {
		if (f->l.size[s] > c->size[s]) {
			c->size[s] = f->l.size[s];
			changed = true;
		}
	}
	c->with_stdin = c->with_stdin || f->l.with_stdin;
	c->stdin_eof = c->stdin_eof || f->l.stdin_eof;
	if (f->l.stdin_next > c->stdin_next)
		c->stdin_next = f->l.stdin_next;
	if (f->have_end && !c->ended) {
		c->ended = true;
		c->state = f->end_state;
		c->exit_code = f->exit_code;
		changed = true;
		/* Owed to our own commands, and to any we saw running: the
		 * sandbox's files changed behind the cache. */
		if (!c->end_reported && (c->mine || was_known)) {
			c->end_reported = true;
			p->end = true;
			memcpy(p->id, b->id, sizeof(p->id));
			p->n = c->n;
		}
	}
	c->known = true;
	c->poll_seq++;
	c->poll_err = 0;
	c->last_poll_ms = now;
	c->interval_ms = exec_backoff(c->interval_ms, changed, cmd_waiting(c), m->o.poll_min_ms,
				      m->o.poll_max_ms);
	c->next_poll_ms = now + c->interval_ms;
	take_ready_polls(c, p);
	if (changed)
		pthread_cond_broadcast(&c->cv);
}

/* Lock held. A command whose directory vanished has ended, as far as anyone can tell. */
static void apply_gone(struct ecmd *c, struct pending *p)
{
	if (!c->ended) {
		c->ended = true;
		c->state = EXEC_EXITED;
		c->exit_code = -1;
		pthread_cond_broadcast(&c->cv);
	}
	take_ready_polls(c, p);
}

/* ---- pollers ------------------------------------------------------------------ */

struct poller_arg {
	struct exec_mgr *m;
	struct ebox *b;
	struct ecmd *c;
};

static bool cmd_wanted(const struct exec_mgr *m, const struct ebox *b, const struct ecmd *c)
{
	if (m->stopping || b->dead || c->ended)
		return false;
	return cmd_waiting(c) || c->mine;
}

static void *poller_main(void *arg)
{
	struct poller_arg *pa = arg;
	struct exec_mgr *m = pa->m;
	struct ebox *b = pa->b;
	struct ecmd *c = pa->c;
	struct pending p = { 0 };

	free(pa);
	pthread_mutex_lock(&m->lock);
	while (cmd_wanted(m, b, c)) {
		struct box_copy bc;
		struct dt_error err = { 0 };
		struct fetch f;
		int64_t now = now_ms();
		int rc;

		if (now < c->next_poll_ms) {
			timed_wait(&c->poll_cv, &m->lock, c->next_poll_ms);
			continue;
		}
		box_copy(b, &bc);
		pthread_mutex_unlock(&m->lock);
		rc = fetch_cmd(m, &bc.db, c->n, true, &f, &err);
		pthread_mutex_lock(&m->lock);
		if (rc == 0) {
			apply_fetch(m, b, c, &f, &p);
		} else if (rc == -ENOENT) {
			apply_gone(c, &p);
		} else {
			/* The sandbox stopped, the network failed: keep trying, slowly. */
			log_debug("exec: polling %s command %u: %s", b->id, c->n, err.message);
			/* A stopped sandbox killed its commands: no end will be
			 * written, so stop polling for on_end's sake alone. */
			if (rc == -EHOSTDOWN)
				c->mine = false;
			/* ... and tell the waiters, rather than let them wait for ever. */
			c->poll_seq++;
			c->poll_err = rc == -EHOSTDOWN ? rc : 0;
			if (c->poll_err)
				pthread_cond_broadcast(&c->cv);
			c->last_poll_ms = now_ms();
			c->interval_ms = m->o.poll_max_ms;
			c->next_poll_ms = c->last_poll_ms + c->interval_ms;
		}
		if (p.wake || p.end) {
			pthread_mutex_unlock(&m->lock);
			pending_run(m, &p);
			pthread_mutex_lock(&m->lock);
		}
	}
	c->poller_on = false;
	box_put(b);
	if (m->n_exited == m->cap_exited) {
		size_t cap = m->cap_exited ? m->cap_exited * 2 : 16;
		pthread_t *ne = realloc(m->exited, cap * sizeof(*ne));

		if (ne) {
			m->exited = ne;
			m->cap_exited = cap;
		}
	}
	if (m->n_exited < m->cap_exited)
		m->exited[m->n_exited++] = pthread_self();
	else
		pthread_detach(pthread_self());
	if (--m->pollers == 0)
		pthread_cond_broadcast(&m->idle_cv);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* Lock held. Joins finished pollers; they no longer need the lock, so this
 * only waits for their last instructions. */
static void pollers_reap(struct exec_mgr *m)
{
	size_t i;

	for (i = 0; i < m->n_exited; i++)
		pthread_join(m->exited[i], NULL);
	m->n_exited = 0;
}

/* Lock held. Starts the command's poller if it should run and does not. */
static void poller_ensure(struct exec_mgr *m, struct ebox *b, struct ecmd *c)
{
	struct poller_arg *pa;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (c->poller_on || !cmd_wanted(m, b, c))
		return;
	pollers_reap(m);
	pa = malloc(sizeof(*pa));
	if (!pa)
		return;
	pa->m = m;
	pa->b = b;
	pa->c = c;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1024 * 1024);
	rc = pthread_create(&t, &attr, poller_main, pa);
	pthread_attr_destroy(&attr);
	if (rc) {
		/* Waiters retry every slice; nothing is lost but time. */
		log_warn("exec: cannot start a poller thread: %s", strerror(rc));
		free(pa);
		return;
	}
	c->poller_on = true;
	b->refs++;
	m->pollers++;
}

/*
 * Lock held. Someone starts waiting on c (a reader, an exit waiter, a poll
 * handle). When nobody was waiting the schedule was the slow one (or none),
 * so poll soon: at once unless a poll happened within poll_min_ms.
 */
static void wait_begin(struct exec_mgr *m, struct ebox *b, struct ecmd *c, bool was_waiting)
{
	if (!was_waiting) {
		int64_t soon = c->last_poll_ms + m->o.poll_min_ms;

		c->interval_ms = m->o.poll_min_ms;
		if (soon < c->next_poll_ms || !c->poller_on)
			c->next_poll_ms = soon;
		pthread_cond_signal(&c->poll_cv);
	}
	poller_ensure(m, b, c);
}

/* ---- lookups ------------------------------------------------------------------ */

/* Reads STATE_DIR/cmd once per sandbox. Lock held; released meanwhile. */
static int box_ensure_listed(struct exec_mgr *m, struct ebox *b, const struct dt_box *db,
			     struct dt_error *err)
{
	char path[EXEC_PATH_MAX];
	struct dt_fileinfo *fi = NULL;
	size_t nfi = 0, i;
	int rc;

	if (b->listed)
		return 0;
	if (!str_printf(path, sizeof(path), "%s/cmd", m->state_dir))
		return dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	pthread_mutex_unlock(&m->lock);
	rc = dt_fs_list(m->dt, db, path, &fi, &nfi, err);
	pthread_mutex_lock(&m->lock);
	if (rc == -ENOENT) {
		/* No command ever ran here. */
		b->listed = true;
		return 0;
	}
	if (rc < 0)
		return rc;
	for (i = 0; i < nfi; i++) {
		unsigned n;

		if (fi[i].is_dir && exec_parse_cmd_name(fi[i].name, &n) && !cmd_add(m, b, n)) {
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
			break;
		}
	}
	dt_fileinfo_free(fi, nfi);
	if (rc == 0)
		b->listed = true;
	return rc;
}

/*
 * Lock held; released meanwhile. The command n, its listing read at least
 * once (a number unknown here is looked up in the sandbox: another mount may
 * have started it). With fresh, a running command's listing is re-read when
 * the last one is older than poll_min_ms.
 */
static int cmd_lookup(struct exec_mgr *m, struct ebox *b, const struct dt_box *db, unsigned n,
		      bool fresh, struct ecmd **out, struct dt_error *err)
{
	struct pending p = { 0 };
	struct ecmd *c;
	struct fetch f;
	int rc;

	rc = box_ensure_listed(m, b, db, err);
	if (rc < 0)
		return rc;
	c = cmd_find(b, n);
	if (c && c->known && (c->ended || !fresh || now_ms() - c->last_poll_ms < m->o.poll_min_ms)) {
		*out = c;
		return 0;
	}
	pthread_mutex_unlock(&m->lock);
	rc = fetch_cmd(m, db, n, !(c && c->ended), &f, err);
	pthread_mutex_lock(&m->lock);
	if (rc == -ENOENT && !c)
		return dt_error_set(err, -ENOENT, 404, "no command %u", n);
	if (rc < 0 && !(c && c->known))
		return rc;
	c = cmd_add(m, b, n);
	if (!c)
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	if (rc == 0)
		apply_fetch(m, b, c, &f, &p);
	else if (rc == -ENOENT)
		apply_gone(c, &p);
	/* else: a refresh failed, the last known state stands */
	if (p.wake || p.end) {
		pthread_mutex_unlock(&m->lock);
		pending_run(m, &p);
		pthread_mutex_lock(&m->lock);
	}
	*out = c;
	return 0;
}

static int check_args(struct exec_mgr *m, const struct dt_box *db, struct dt_error *err)
{
	if (!m || !db || !db->id || !db->toolbox_url)
		return dt_error_set(err, -EINVAL, 0, "invalid arguments");
	return 0;
}

/* ---- the API ---------------------------------------------------------------- */

struct exec_mgr *exec_mgr_new(struct dt_client *dt, const struct exec_options *o)
{
	struct exec_mgr *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->dt = dt;
	if (o)
		m->o = *o;
	else
		exec_options_defaults(&m->o);
	if (!m->o.state_dir || !*m->o.state_dir)
		m->o.state_dir = "/tmp/.daytonafs";
	if (m->o.poll_min_ms <= 0)
		m->o.poll_min_ms = 50;
	if (m->o.poll_max_ms < m->o.poll_min_ms)
		m->o.poll_max_ms = m->o.poll_min_ms;
	m->state_dir = strdup(m->o.state_dir);
	if (!m->state_dir) {
		free(m);
		return NULL;
	}
	/* No trailing slash: paths are built as STATE_DIR/cmd/N. */
	for (size_t l = strlen(m->state_dir); l > 1 && m->state_dir[l - 1] == '/'; l--)
		m->state_dir[l - 1] = '\0';
	m->o.state_dir = m->state_dir;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&m->cattr);
	pthread_condattr_setclock(&m->cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&m->idle_cv, &m->cattr);
	return m;
}

static void collect_polls(struct ebox *b, struct pending *p)
{
	size_t i;

	for (i = 0; i < b->n_cmds; i++) {
		struct ecmd *c = b->cmds[i];

		while (c->polls) {
			struct poll_req *r = c->polls;

			c->polls = r->next;
			r->next = p->wake;
			p->wake = r;
		}
		pthread_cond_broadcast(&c->cv);
		pthread_cond_broadcast(&c->poll_cv);
	}
}

void exec_mgr_free(struct exec_mgr *m)
{
	struct pending p = { 0 };
	struct ebox *b, *next;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	for (b = m->boxes; b; b = b->next)
		collect_polls(b, &p);
	/* A poller may be inside a request; it notices once that returns. */
	while (m->pollers > 0)
		pthread_cond_wait(&m->idle_cv, &m->lock);
	pollers_reap(m);
	pthread_mutex_unlock(&m->lock);
	/* The poll() waiters are released (woken) rather than leaked. */
	pending_run(m, &p);
	for (b = m->boxes; b; b = next) {
		next = b->next;
		box_free(b);
	}
	pthread_cond_destroy(&m->idle_cv);
	pthread_condattr_destroy(&m->cattr);
	pthread_mutex_destroy(&m->lock);
	free(m->exited);
	free(m->state_dir);
	free(m);
}

int exec_start(struct exec_mgr *m, const struct dt_box *box, const struct exec_spec *spec,
	       unsigned *n, struct dt_error *err)
{
	struct strbuf script = STRBUF_INIT;
	struct ebox *b;
	struct ecmd *c;
	unsigned first, got = 0, i;
	char *out = NULL;
	int rc, code = 0;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (!spec || !spec->command)
		return dt_error_set(err, -EINVAL, 0, "no command");
	pthread_mutex_lock(&m->lock);
	b = box_get(m, box);
	if (!b) {
		pthread_mutex_unlock(&m->lock);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	rc = box_ensure_listed(m, b, box, err);
	if (rc < 0)
		goto out_locked;
	/* Claim the number here, so that two starts in this mount differ;
	 * the sandbox arbitrates between mounts (mkdir). */
	if (b->max_n == UINT_MAX) {
		rc = dt_error_set(err, -EOVERFLOW, 0, "too many commands");
		goto out_locked;
	}
	first = ++b->max_n;
	pthread_mutex_unlock(&m->lock);

	rc = exec_build_launcher(&script, m->state_dir, first, spec);
	if (rc == -EINVAL) {
		dt_error_set(err, rc, 0, "invalid environment variable name");
		goto out;
	}
	if (rc < 0) {
		dt_error_set(err, rc, 0, "out of memory");
		goto out;
	}
	rc = dt_exec(m->dt, box, script.buf, NULL, NULL, 0, LAUNCH_TIMEOUT_S, &code, &out, err);
	if (rc < 0)
		goto out;
	rc = exec_parse_launch(out, &got);
	if (rc == -ENOENT) {
		dt_error_set(err, rc, 0, "cwd %s: no such directory", spec->cwd ? spec->cwd : "");
		goto out;
	}
	if (rc < 0) {
		/* The first line of what the shell said is the best reason we have. */
		const char *msg = out ? out : "";
		size_t len = strcspn(msg, "\n");

		dt_error_set(err, rc, 0, "cannot start the command (exit %d): %.*s", code,
			     (int)(len > 300 ? 300 : len), msg);
		goto out;
	}

	pthread_mutex_lock(&m->lock);
	/* Numbers skipped over belong to another mount's commands. */
	for (i = first; i < got; i++)
		cmd_add(m, b, i);
	c = cmd_add(m, b, got);
	if (!c) {
		/* Started, but we cannot track it: say so rather than lose it silently. */
		rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
		goto out_locked;
	}
	c->known = true;
	c->mine = true;
	c->with_stdin = spec->with_stdin;
	c->text = strdup(spec->command);
	c->text_len = c->text ? strlen(c->text) : 0;
	c->last_poll_ms = now_ms();
	/* A quick command is over by the first poll, so on_end comes promptly. */
	c->interval_ms = m->o.poll_min_ms;
	c->next_poll_ms = c->last_poll_ms + m->o.poll_min_ms;
	poller_ensure(m, b, c);
	*n = got;
	rc = 0;
out_locked:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	sb_free(&script);
	free(out);
	return rc;
out:
	pthread_mutex_lock(&m->lock);
	goto out_locked;
}

int exec_list(struct exec_mgr *m, const struct dt_box *box, unsigned **ns, size_t *count,
	      struct dt_error *err)
{
	struct ebox *b;
	unsigned *arr = NULL;
	size_t i;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	*ns = NULL;
	*count = 0;
	pthread_mutex_lock(&m->lock);
	b = box_get(m, box);
	if (!b) {
		pthread_mutex_unlock(&m->lock);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	rc = box_ensure_listed(m, b, box, err);
	if (rc == 0 && b->n_cmds) {
		arr = malloc(b->n_cmds * sizeof(*arr));
		if (!arr) {
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
		} else {
			for (i = 0; i < b->n_cmds; i++)
				arr[i] = b->cmds[i]->n;
			*ns = arr;
			*count = b->n_cmds;
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_last(struct exec_mgr *m, const struct dt_box *box, unsigned *n, struct dt_error *err)
{
	struct ebox *b;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->lock);
	b = box_get(m, box);
	if (!b) {
		pthread_mutex_unlock(&m->lock);
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	}
	rc = box_ensure_listed(m, b, box, err);
	if (rc == 0) {
		if (b->n_cmds)
			*n = b->cmds[b->n_cmds - 1]->n;
		else
			rc = -ENOENT;
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static void status_fill(const struct ecmd *c, struct exec_status *st)
{
	st->state = c->ended ? c->state : EXEC_RUNNING;
	st->exit_code = c->ended ? c->exit_code : -1;
	st->size[0] = c->size[0];
	st->size[1] = c->size[1];
	st->stdin_open = c->with_stdin && !c->stdin_eof && !c->ended;
}

/* Lock held. Opens a box and the command in it, for the calls below. */
static int open_cmd(struct exec_mgr *m, const struct dt_box *box, unsigned n, bool fresh,
		    struct ebox **bp, struct ecmd **cp, struct dt_error *err)
{
	struct ebox *b = box_get(m, box);
	int rc;

	if (!b)
		return dt_error_set(err, -ENOMEM, 0, "out of memory");
	rc = cmd_lookup(m, b, box, n, fresh, cp, err);
	if (rc < 0) {
		box_put(b);
		return rc;
	}
	*bp = b;
	return 0;
}

/*
 * Lock held. Blocks until done(c) or the command ended, checking for an
 * interrupt every slice. The poller does the requests.
 */
static int wait_for(struct exec_mgr *m, struct ebox *b, struct ecmd *c,
		    bool (*done)(const struct ecmd *c, const void *arg), const void *arg)
{
	bool was_waiting = cmd_waiting(c);
	unsigned seq = c->poll_seq;
	int rc = 0;

	c->waiters++;
	wait_begin(m, b, c, was_waiting);
	while (!c->ended && !done(c, arg)) {
		if (b->dead || m->stopping) {
			rc = -ENOENT;
			break;
		}
		/* Only an error of a poll made since this wait began counts. */
		if (c->poll_seq != seq && c->poll_err) {
			rc = c->poll_err;
			break;
		}
		if (interrupted(m)) {
			rc = -EINTR;
			break;
		}
		poller_ensure(m, b, c);
		timed_wait(&c->cv, &m->lock, now_ms() + WAIT_SLICE_MS);
	}
	c->waiters--;
	return rc;
}

static int wait_error(struct dt_error *err, int rc)
{
	if (rc == -EINTR)
		return dt_error_set(err, rc, 0, "interrupted");
	if (rc == -EHOSTDOWN)
		return dt_error_set(err, rc, 0, "the sandbox is not running");
	return dt_error_set(err, rc, 0, "the sandbox is gone");
}

static bool never_done(const struct ecmd *c, const void *arg)
{
	(void)c;
	(void)arg;
	return false;
}

int exec_status(struct exec_mgr *m, const struct dt_box *box, unsigned n, bool wait,
		struct exec_status *st, struct dt_error *err)
{
	struct ebox *b;
	struct ecmd *c;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, true, &b, &c, err);
	if (rc < 0)
		goto out;
	if (wait && !c->ended) {
		rc = wait_for(m, b, c, never_done, NULL);
		if (rc < 0)
			wait_error(err, rc);
	}
	if (rc == 0)
		status_fill(c, st);
	box_put(b);
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

struct read_target {
	enum exec_stream s;
	uint64_t off;
};

static bool has_data_past(const struct ecmd *c, const void *arg)
{
	const struct read_target *t = arg;

	return c->size[t->s] > t->off;
}

/* Downloads go straight into the reader's buffer: no copy, bounded memory. */
struct buf_sink {
	char *buf;
	size_t cap, len;
};

static int buf_sink_fn(void *ctx, const void *data, size_t len)
{
	struct buf_sink *s = ctx;
	size_t room = s->cap - s->len;

	if (len > room) {
		/* Only when a server ignores Range: stop once the buffer is full. */
		memcpy(s->buf + s->len, data, room);
		s->len = s->cap;
		return -ECANCELED;
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	return 0;
}

ssize_t exec_read(struct exec_mgr *m, const struct dt_box *box, unsigned n, enum exec_stream s,
		  char *buf, size_t size, uint64_t off, bool block, struct dt_error *err)
{
	static const char *const names[2] = { "stdout", "stderr" };
	struct read_target t = { s, off };
	char path[EXEC_PATH_MAX];
	struct ebox *b;
	struct ecmd *c;
	ssize_t ret;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (s != EXEC_STDOUT && s != EXEC_STDERR)
		return dt_error_set(err, -EINVAL, 0, "invalid stream");
	if (size == 0)
		return 0;
	if (size > SSIZE_MAX)
		size = SSIZE_MAX;
	rc = cmd_path(m, n, names[s], path, sizeof(path));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	for (;;) {
		struct buf_sink sink = { buf, size, 0 };
		struct box_copy bc;
		int64_t got;

		if (off >= c->size[s]) {
			if (c->ended) {
				ret = 0;
				break;
			}
			if (!block) {
				ret = dt_error_set(err, -EAGAIN, 0, "no output yet");
				break;
			}
			rc = wait_for(m, b, c, has_data_past, &t);
			if (rc < 0) {
				ret = wait_error(err, rc);
				break;
			}
			if (off >= c->size[s]) {
				ret = 0;        /* ended with nothing past off */
				break;
			}
		}
		box_copy(b, &bc);
		pthread_mutex_unlock(&m->lock);
		got = dt_fs_download(m->dt, &bc.db, path, off, size, buf_sink_fn, &sink, err);
		if (got == -ECANCELED && sink.len == size)
			got = (int64_t)size;
		pthread_mutex_lock(&m->lock);
		if (got < 0) {
			ret = (ssize_t)got;
			break;
		}
		if (got > 0) {
			if (off + (uint64_t)got > c->size[s])
				c->size[s] = off + (uint64_t)got;
			ret = (ssize_t)got;
			break;
		}
		/* Nothing where the listing said there was: the file was cut
		 * behind us. Believe the download, and wait or end. */
		c->size[s] = off;
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int exec_poll(struct exec_mgr *m, const struct dt_box *box, unsigned n, enum exec_stream s,
	      uint64_t off, void *poll_handle)
{
	struct dt_error err = { 0 };
	struct poll_req *r;
	struct ebox *b;
	struct ecmd *c;
	int rc;

	rc = check_args(m, box, &err);
	if (rc < 0)
		return rc;
	if (s != EXEC_STDOUT && s != EXEC_STDERR)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, &err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (c->ended || c->size[s] > off) {
		rc = 1;
	} else if (poll_handle) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			rc = -ENOMEM;
		} else {
			bool was_waiting = cmd_waiting(c);

			r->handle = poll_handle;
			r->s = s;
			r->off = off;
			r->next = c->polls;
			c->polls = r;
			wait_begin(m, b, c, was_waiting);
			rc = 0;
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_kill(struct exec_mgr *m, const struct dt_box *box, unsigned n, struct dt_error *err)
{
	struct strbuf script = STRBUF_INIT;
	char dir[EXEC_PATH_MAX];
	struct ebox *b;
	struct ecmd *c;
	char *out = NULL;
	int rc, code = 0;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	rc = cmd_path(m, n, NULL, dir, sizeof(dir));
	if (rc < 0)
		return dt_error_set(err, rc, 0, "state directory path too long");
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (c->ended) {
		rc = dt_error_set(err, -ESRCH, 0, "command %u has already ended", n);
		goto out;
	}
	pthread_mutex_unlock(&m->lock);

	exec_build_kill(&script, dir);
	if (script.oom)
		rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
	else
		rc = dt_exec(m->dt, box, script.buf, NULL, NULL, 0, KILL_TIMEOUT_S, &code, &out, err);
	if (rc == 0 && out && strstr(out, "daytonafs-ended"))
		rc = dt_error_set(err, -ESRCH, 0, "command %u has already ended", n);
	else if (rc == 0 && !(out && strstr(out, "daytonafs-killed")))
		rc = dt_error_set(err, -EIO, 0, "cannot kill command %u: %.200s", n, out ? out : "");

	pthread_mutex_lock(&m->lock);
	if (rc == 0 || rc == -ESRCH) {
		/* It is ending now: look soon, and owe on_end as for our own. */
		c->mine = true;
		c->interval_ms = m->o.poll_min_ms;
		c->next_poll_ms = now_ms() + m->o.poll_min_ms;
		pthread_cond_signal(&c->poll_cv);
		poller_ensure(m, b, c);
	}
out:
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	sb_free(&script);
	free(out);
	return rc;
}

/* Lock held. The command, checked to take stdin. */
static int stdin_check(const struct ecmd *c, unsigned n, struct dt_error *err)
{
	if (!c->with_stdin)
		return dt_error_set(err, -EBADF, 0, "command %u was not started with stdin", n);
	if (c->stdin_eof || c->ended)
		return dt_error_set(err, -EPIPE, 0, "command %u: stdin is closed", n);
	return 0;
}

ssize_t exec_stdin_write(struct exec_mgr *m, const struct dt_box *box, unsigned n, const void *buf,
			 size_t size, struct dt_error *err)
{
	char part[EXEC_PATH_MAX], chunk[EXEC_PATH_MAX], dir[EXEC_PATH_MAX];
	struct ebox *b;
	struct ecmd *c;
	unsigned k;
	int rc, tries;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (cmd_path(m, n, NULL, dir, sizeof(dir)) < 0)
		return dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	rc = stdin_check(c, n, err);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0 || size == 0)
		goto out;

	/* One writer at a time per command: chunk K must exist before K+1 is
	 * useful, and a failed write must not leave a hole in the numbering. */
	pthread_mutex_lock(&c->stdin_lock);
	pthread_mutex_lock(&m->lock);
	rc = stdin_check(c, n, err);
	k = c->stdin_next;
	pthread_mutex_unlock(&m->lock);
	if (rc < 0)
		goto unlock;
	if (!str_printf(part, sizeof(part), "%s/stdin.%u.part", dir, k)) {
		rc = dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
		goto unlock;
	}
	rc = dt_fs_upload_mem(m->dt, box, part, buf, size, err);
	if (rc < 0)
		goto unlock;
	/* The move is atomic: the feeder never sees half a chunk. A chunk
	 * already there (written by another mount) pushes ours along. */
	for (tries = 0; tries < 64; tries++, k++) {
		if (!str_printf(chunk, sizeof(chunk), "%s/stdin.%u", dir, k)) {
			rc = dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
			break;
		}
		rc = dt_fs_move(m->dt, box, part, chunk, err);
		if (rc != -EEXIST)
			break;
	}
	if (rc == 0) {
		pthread_mutex_lock(&m->lock);
		if (k + 1 > c->stdin_next)
			c->stdin_next = k + 1;
		pthread_mutex_unlock(&m->lock);
	}
unlock:
	pthread_mutex_unlock(&c->stdin_lock);
out:
	pthread_mutex_lock(&m->lock);
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc < 0 ? rc : (ssize_t)size;
}

int exec_stdin_close(struct exec_mgr *m, const struct dt_box *box, unsigned n, struct dt_error *err)
{
	char path[EXEC_PATH_MAX];
	struct ebox *b;
	struct ecmd *c;
	bool closed;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (cmd_path(m, n, "stdin.eof", path, sizeof(path)) < 0)
		return dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (!c->with_stdin)
		rc = dt_error_set(err, -EBADF, 0, "command %u was not started with stdin", n);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0)
		goto out;

	/* After every chunk: a write in flight finishes first. */
	pthread_mutex_lock(&c->stdin_lock);
	pthread_mutex_lock(&m->lock);
	closed = c->stdin_eof;
	pthread_mutex_unlock(&m->lock);
	if (!closed) {
		rc = dt_fs_upload_mem(m->dt, box, path, "", 0, err);
		if (rc == 0) {
			pthread_mutex_lock(&m->lock);
			c->stdin_eof = true;
			pthread_mutex_unlock(&m->lock);
		}
	}
	pthread_mutex_unlock(&c->stdin_lock);
out:
	pthread_mutex_lock(&m->lock);
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int exec_command_text(struct exec_mgr *m, const struct dt_box *box, unsigned n, char **text,
		      size_t *len, struct dt_error *err)
{
	char path[EXEC_PATH_MAX];
	struct ebox *b;
	struct ecmd *c;
	char *t = NULL;
	size_t l = 0;
	int rc;

	rc = check_args(m, box, err);
	if (rc < 0)
		return rc;
	if (cmd_path(m, n, "command", path, sizeof(path)) < 0)
		return dt_error_set(err, -ENAMETOOLONG, 0, "state directory path too long");
	pthread_mutex_lock(&m->lock);
	rc = open_cmd(m, box, n, false, &b, &c, err);
	if (rc < 0) {
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (!c->text) {
		/* The text never changes: read once, then memory. */
		pthread_mutex_unlock(&m->lock);
		rc = download_small(m, box, path, COMMAND_TEXT_MAX, &t, &l, err);
		pthread_mutex_lock(&m->lock);
		if (rc == 0 && !c->text) {
			c->text = t;
			c->text_len = l;
			t = NULL;
		}
		free(t);
	}
	if (rc == 0) {
		*text = malloc(c->text_len + 1);
		if (*text) {
			memcpy(*text, c->text, c->text_len);
			(*text)[c->text_len] = '\0';
			*len = c->text_len;
		} else {
			rc = dt_error_set(err, -ENOMEM, 0, "out of memory");
		}
	}
	box_put(b);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void exec_forget_sandbox(struct exec_mgr *m, const char *sandbox_id)
{
	struct pending p = { 0 };
	struct ebox **pp, *b;

	if (!m || !sandbox_id)
		return;
	pthread_mutex_lock(&m->lock);
	for (pp = &m->boxes; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->id, sandbox_id))
			break;
	b = *pp;
	if (b) {
		*pp = b->next;
		b->dead = true;
		/* Pollers and waiters see dead and leave; the last reference frees. */
		collect_polls(b, &p);
		box_put(b);
	}
	pthread_mutex_unlock(&m->lock);
	pending_run(m, &p);
}
