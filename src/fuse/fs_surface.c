/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_surface.c - the sandbox's surface beside its files and commands:
 *
 *   NAME/usage       CPU, memory and disk, one "key value" a line: one command
 *                    reading the cgroup v2 files, /proc/loadavg and df
 *   NAME/env         the variables every exec gets: the sandbox's own (set at
 *                    create) and STATE_DIR/env; "K=V" sets, "-K" removes
 *   NAME/ports/N     one per listening TCP port (one command lists them);
 *                    reading gives the preview URL (and the token when private);
 *                    with a provider whose ports are declared (Vercel), one
 *                    per declared port instead (one get of the sandbox)
 *   NAME/build-log   the build log of "create ... image=" while it runs
 *   MOUNT/.volumes/  one directory per volume with its JSON in info;
 *                    mkdir makes a volume, rmdir deletes one
 *
 * and what counts as the sandbox's activity (-o activity).
 */
#include "fs_dispatch_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs_int.h"
#include "log.h"
#include "strbuf.h"
#include "urlenc.h"

#define SURFACE_TIMEOUT_S 30

/* ---- running a script ------------------------------------------------------ */

/* One request: the script's output, which must exit 0. Not activity. */
static int run_script(struct dfs *fs, struct sandbox *sb, const char *script, char **out,
		      struct sp_error *err)
{
	struct sp_box box;
	int code = 0, rc;

	*out = NULL;
	rc = sandbox_require_running(fs, sb);
	if (rc < 0)
		return sp_error_set(err, rc, 0, "%s", sb->error);
	sandbox_box(sb, &box);
	rc = sp_exec(fs->sp, &box, script, NULL, NULL, 0, SURFACE_TIMEOUT_S, &code, out, err);
	if (rc == 0 && code != 0) {
		rc = sp_error_set(err, -EIO, 0, "the script exited with %d: %.200s", code, *out ? *out : "");
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- usage ---------------------------------------------------------------- */

/* cgroup v2 (what Daytona's sandboxes have): cpu.stat usage_usec, cpu.max
 * "QUOTA PERIOD" or "max PERIOD", memory.current, memory.peak (kernel 5.19+)
 * and memory.max; then the load average and df of "/" in 1 KiB blocks. A
 * file that is missing leaves its line out; the script never fails. */
static const char usage_script[] =
	"c=/sys/fs/cgroup\n"
	"if [ -r $c/cpu.stat ]; then while read k v; do [ \"$k\" = usage_usec ] && "
	"printf 'cpu_time %d.%06d\\n' $((v/1000000)) $((v%1000000)); done < $c/cpu.stat; fi\n"
	"[ -r /proc/loadavg ] && { read a b d rest < /proc/loadavg; echo \"cpu_load $a $b $d\"; }\n"
	"if [ -r $c/cpu.max ]; then read q p < $c/cpu.max; if [ \"$q\" = max ]; then echo 'cpu_limit max'; "
	"elif [ \"${p:-0}\" -gt 0 ] 2>/dev/null; then printf 'cpu_limit %d.%02d\\n' $((q/p)) $((q%p*100/p)); fi; fi\n"
	"[ -r $c/memory.current ] && { read v < $c/memory.current; echo \"memory_current $v\"; }\n"
	"[ -r $c/memory.peak ] && { read v < $c/memory.peak; echo \"memory_peak $v\"; }\n"
	"[ -r $c/memory.max ] && { read v < $c/memory.max; echo \"memory_limit $v\"; }\n"
	"df -Pk / 2>/dev/null | { read h; read f t u a rest; [ -n \"$u\" ] && "
	"echo \"disk_used $((u*1024))\" && echo \"disk_total $((t*1024))\"; }\n"
	"exit 0\n";

static int usage_text(struct dfs *fs, struct sandbox *sb, struct strbuf *text)
{
	struct sp_error err = { 0 };
	char *out = NULL;
	int rc = run_script(fs, sb, usage_script, &out, &err);

	if (rc < 0) {
		sandbox_set_error(sb, "usage: %s", err.message);
		return rc;
	}
	sb_adds(text, out ? out : "");
	free(out);
	return 0;
}

/* ---- env -------------------------------------------------------------------- */

/* The state directory's env file: one line per variable, "export K='V'" or
 * "unset K" (a variable of the sandbox's own that is removed), as sh reads
 * it. The wrapper of every command sources it before the command's own
 * env.K=V (exec_script.c), so those win. */
static void env_path(struct dfs *fs, struct strbuf *sb)
{
	sb_adds(sb, fs->opt.state_dir && fs->opt.state_dir[0] ? fs->opt.state_dir : EXEC_STATE_DIR_DEFAULT);
	sb_adds(sb, "/env");
}

static bool env_key_ok(const char *k, size_t n)
{
	if (!n || (k[0] >= '0' && k[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
		      (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return false;
	return true;
}

/* Undoes sh_quote: 'a'\''b' -> a'b. false when s is not that form. */
static bool sh_unquote(const char *s, struct strbuf *out)
{
	while (*s) {
		if (*s == '\'') {
			const char *e = strchr(s + 1, '\'');

			if (!e)
				return false;
			sb_add(out, s + 1, (size_t)(e - s - 1));
			s = e + 1;
		} else if (s[0] == '\\' && s[1] == '\'') {
			sb_addc(out, '\'');
			s += 2;
		} else {
			return false;
		}
	}
	return true;
}

/* One variable of the merged view: set (value) or removed (NULL). */
struct env_var {
	char *key;
	char *value;
};

static void env_put(struct env_var **v, size_t *n, const char *k, size_t klen, const char *value)
{
	struct env_var *nv;

	for (size_t i = 0; i < *n; i++) {
		if (strlen((*v)[i].key) == klen && !memcmp((*v)[i].key, k, klen)) {
			free((*v)[i].value);
			(*v)[i].value = value ? strdup(value) : NULL;
			return;
		}
	}
	nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv)
		return;
	*v = nv;
	nv[*n].key = strndup(k, klen);
	nv[*n].value = value ? strdup(value) : NULL;
	if (nv[*n].key)
		(*n)++;
	else
		free(nv[*n].value);
}

static int env_text(struct dfs *fs, struct sandbox *sb, struct strbuf *text)
{
	struct sp_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT, path = STRBUF_INIT;
	struct env_var *v = NULL;
	struct sp_sandbox d;
	size_t n = 0;
	char *out = NULL;
	int rc;

	/* The sandbox's own variables: its "env" as the API has it (a
	 * provider whose API does not give it has them in the file, put there
	 * at create: surface_env_record). */
	memset(&d, 0, sizeof(d));
	rc = sp_has(fs->sp, SP_CAP_SANDBOX_ENV) ? sp_sandbox_get(fs->sp, sb->id, &d, &err) : 0;
	if (rc < 0)
		goto out;
	for (const char *line = d.env, *nl; line && *line; line = nl + 1) {
		const char *eq = strchr(line, '=');

		nl = strchr(line, '\n');
		if (!nl)
			break;
		if (eq && eq < nl) {
			char *val = strndup(eq + 1, (size_t)(nl - eq - 1));

			if (val)
				env_put(&v, &n, line, (size_t)(eq - line), val);
			free(val);
		}
	}
	/* Then the state directory's file, which wins. */
	env_path(fs, &path);
	sb_adds(&cmd, "cat ");
	sh_quote(&cmd, sb_str(&path));
	sb_adds(&cmd, " 2>/dev/null; exit 0");
	rc = cmd.oom || path.oom ? -ENOMEM : run_script(fs, sb, sb_str(&cmd), &out, &err);
	if (rc < 0)
		goto out;
	for (char *line = out, *nl; line && *line; line = nl ? nl + 1 : line + strlen(line)) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (!strncmp(line, "export ", 7)) {
			char *eq = strchr(line + 7, '=');
			struct strbuf val = STRBUF_INIT;

			if (eq && env_key_ok(line + 7, (size_t)(eq - line - 7)) && sh_unquote(eq + 1, &val) &&
			    !val.oom)
				env_put(&v, &n, line + 7, (size_t)(eq - line - 7), sb_str(&val));
			sb_free(&val);
		} else if (!strncmp(line, "unset ", 6) && env_key_ok(line + 6, strlen(line + 6))) {
			env_put(&v, &n, line + 6, strlen(line + 6), NULL);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].value)
			sb_addf(text, "%s=%s\n", v[i].key, v[i].value);
out:
	if (rc < 0)
		sandbox_set_error(sb, "env: %s", err.message);
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
	free(out);
	sp_sandbox_clear(&d);
	sb_free(&cmd);
	sb_free(&path);
	return rc;
}

/*
 * The rewrite of the env file is a read-modify-write: two at once (two
 * threads, two mounts) would each drop the other's change. So it runs under
 * a lock in the sandbox, where every writer is: mkdir of $f.lock, which is
 * atomic on every filesystem. A writer waits up to about 20 s (the script's
 * own limit is SURFACE_TIMEOUT_S) and then fails (EIO, nothing applied). A
 * lock left by a writer that died (killed at its timeout) is older than a
 * minute, which no live writer's is: it is renamed away, atomically, so that
 * of two waiters that see it at once only one breaks it.
 */
static const char env_lock_script[] =
	"\nmkdir -p \"${f%/*}\" || exit 1\n"
	"l=$f.lock\ni=0\n"
	"until mkdir \"$l\" 2>/dev/null; do\n"
	"if [ -n \"$(find \"$l\" -maxdepth 0 -mmin +1 2>/dev/null)\" ] && "
	"mv \"$l\" \"$l.stale.$$\" 2>/dev/null; then rm -rf \"$l.stale.$$\"; continue; fi\n"
	"i=$((i+1))\n"
	"[ $i -lt 400 ] || { echo \"$l is held by another writer\"; exit 1; }\n"
	"sleep 0.05 2>/dev/null || sleep 1\n"
	"done\n";

/*
 * Applies "K=V" and "-K" lines (blank lines and # comments ignored) in one
 * command: under the lock, the file is rewritten without the keys' old lines,
 * plus the new ones, and renamed into place, so a reader (who takes no lock)
 * never sees half of it. A failed grep or printf fails the whole.
 */
int surface_env_write(struct dfs *fs, struct sandbox *sb, const char *text, size_t len)
{
	struct sp_error err = { 0 };
	struct strbuf cmd = STRBUF_INIT, grep = STRBUF_INIT, add = STRBUF_INIT, path = STRBUF_INIT;
	const char *p = text, *end = text + len;
	char *out = NULL;
	int rc = 0, n = 0, lineno = 0;

	if (memchr(text, '\0', len)) {
		sandbox_set_error(sb, "env: a NUL byte cannot be in a variable");
		return -EINVAL;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *eq = memchr(p, '=', l);
		struct strbuf line = STRBUF_INIT, val = STRBUF_INIT;
		const char *k;
		size_t kn;

		lineno++;

		if (l && p[l - 1] == '\r')
			l--;
		if (l == 0 || p[0] == '#')
			goto next;
		if (!utf8_valid(p, l)) {
			/* Daytona carries the script as JSON text: a byte that is
			 * not UTF-8 would arrive as U+FFFD, another value. */
			sandbox_set_error(sb, "env: line %d is not UTF-8 text (only text crosses the API unchanged)",
					  lineno);
			rc = -EINVAL;
			goto out;
		}
		k = p[0] == '-' ? p + 1 : p;
		kn = p[0] == '-' ? l - 1 : eq ? (size_t)(eq - p) : 0;
		if (env_key_ok(k, kn) && ctl_env_key_reserved(k, kn)) {
			sandbox_set_error(sb, "env: %s is the shell's own (it would break every command's wrapper)",
					  ctl_env_key_reserved(k, kn));
			rc = -EINVAL;
			goto out;
		}
		if (p[0] == '-' && env_key_ok(p + 1, l - 1)) {
			sb_addf(&grep, " -e '^export %.*s=' -e '^unset %.*s$'", (int)(l - 1), p + 1, (int)(l - 1),
				p + 1);
			sb_addf(&line, "unset %.*s", (int)(l - 1), p + 1);
		} else if (eq && env_key_ok(p, (size_t)(eq - p))) {
			sb_add(&val, eq + 1, l - (size_t)(eq - p) - 1);
			sb_addf(&grep, " -e '^export %.*s=' -e '^unset %.*s$'", (int)(eq - p), p, (int)(eq - p), p);
			sb_addf(&line, "export %.*s=", (int)(eq - p), p);
			sh_quote(&line, sb_str(&val));
		} else {
			sandbox_set_error(sb, "env: '%.*s' is not K=V or -K (K: letters, digits, _, not "
					  "starting with a digit)", (int)(l > 80 ? 80 : l), p);
			rc = -EINVAL;
		}
		if (!rc && line.len) {
			sb_adds(&add, "printf '%s\\n' ");
			sh_word(&add, sb_str(&line));
			sb_adds(&add, " &&\n");
			n++;
		}
		sb_free(&line);
		sb_free(&val);
		if (rc)
			goto out;
next:
		p = nl ? nl + 1 : end;
	}
	if (!n)
		goto out;
	env_path(fs, &path);
	sb_adds(&cmd, "f=");
	sh_quote(&cmd, sb_str(&path));
	sb_adds(&cmd, env_lock_script);
	/* The file holds secrets: only its owner reads it (the new file
	 * replaces the old, so an old one's looser mode goes too). */
	sb_adds(&cmd, "umask 077\nw() {\n[ -e \"$f\" ] || return 0\nLC_ALL=C grep -av");
	sb_add(&cmd, grep.buf, grep.len);
	sb_adds(&cmd, " \"$f\"\n[ $? -le 1 ]\n}\nt=$f.tmp.$$\n{ w &&\n");
	sb_add(&cmd, add.buf, add.len);
	sb_adds(&cmd, ":\n} >\"$t\" && mv -f \"$t\" \"$f\"\nr=$?\n[ $r = 0 ] || rm -f \"$t\"\n"
		      "rmdir \"$l\"\nexit $r\n");
	if (cmd.oom || grep.oom || add.oom || path.oom) {
		rc = -ENOMEM;
		goto out;
	}
	rc = run_script(fs, sb, sb_str(&cmd), &out, &err);
	if (rc < 0)
		sandbox_set_error(sb, "env: %s", err.message);
	else
		surface_note_change(fs, sb);
out:
	free(out);
	sb_free(&cmd);
	sb_free(&grep);
	sb_free(&add);
	sb_free(&path);
	return rc;
}

/*
 * A create's env.K=V where the API never gives the env back (no
 * SP_CAP_SANDBOX_ENV: Vercel): written to the env file as NAME/env would
 * write them, so that NAME/env shows them as Daytona's does (and "-K" there
 * removes one from every command the mount runs). The sandbox has them in
 * its config anyway: a failure here is logged and left in NAME/error, and
 * the create stands.
 */
void surface_env_record(struct dfs *fs, struct sandbox *sb, const struct sp_kv *env, size_t n)
{
	struct strbuf text = STRBUF_INIT;
	int rc;

	if (!n || sp_has(fs->sp, SP_CAP_SANDBOX_ENV))
		return;
	for (size_t i = 0; i < n; i++)
		sb_addf(&text, "%s=%s\n", env[i].key, env[i].value);
	rc = text.oom ? -ENOMEM : surface_env_write(fs, sb, text.buf, text.len);
	if (rc < 0)
		log_warn("%s: the env given at create is not in NAME/env (%s); commands get it all the same",
			 sb->name, strerror(-rc));
	if (text.buf)
		explicit_bzero(text.buf, text.len);
	sb_free(&text);
}

/* ---- ports ---------------------------------------------------------------------- */

/* The TCP ports in LISTEN state (0A), in hex, from /proc/net/tcp{,6}. */
static const char ports_script[] =
	"for f in /proc/net/tcp /proc/net/tcp6; do [ -r $f ] && while read s l r st rest; do "
	"[ \"$st\" = 0A ] && echo \"${l##*:}\"; done < $f; done; exit 0\n";

static int ports_listening(struct dfs *fs, struct sandbox *sb, unsigned char *seen /* 65536 bits */)
{
	struct sp_error err = { 0 };
	char *out = NULL;
	int rc = run_script(fs, sb, ports_script, &out, &err);

	if (rc < 0) {
		sandbox_set_error(sb, "ports: %s", err.message);
		return rc;
	}
	for (char *p = out; p && *p;) {
		char *end;
		unsigned long port = strtoul(p, &end, 16);

		if (end != p && port > 0 && port < 65536)
			seen[port / 8] |= (unsigned char)(1u << (port % 8));
		p = strchr(end, '\n');
		if (p)
			p++;
	}
	free(out);
	return 0;
}

/* The ports with a preview address, declared at create (Vercel): one get of
 * the sandbox, whose answer carries its routes. Listening ports are not
 * added: one not declared has no route, so no URL to read. */
static int ports_declared(struct dfs *fs, struct sandbox *sb, unsigned char *seen /* 65536 bits */)
{
	struct sp_error err = { 0 };
	int *ports = NULL;
	size_t n = 0;
	int rc = sp_sandbox_ports(fs->sp, sb->id, &ports, &n, &err);

	if (rc < 0) {
		sandbox_set_error(sb, "ports: %s", err.message);
		return rc;
	}
	for (size_t i = 0; i < n; i++)
		if (ports[i] > 0 && ports[i] < 65536)
			seen[ports[i] / 8] |= (unsigned char)(1u << (ports[i] % 8));
	free(ports);
	return 0;
}

static int ports_list(struct dfs *fs, struct sandbox *sb, unsigned char *seen /* 65536 bits */)
{
	return sp_ports_declared(fs->sp) ? ports_declared(fs, sb, seen) : ports_listening(fs, sb, seen);
}

/* Whether NAME/ports/N exists: every port when every port has a preview
 * address (Daytona, no request), else a declared one (one request). */
static int port_exists(struct dfs *fs, struct sandbox *sb, unsigned port)
{
	struct sp_error err = { 0 };
	int *ports = NULL;
	size_t n = 0;
	int rc;

	if (!sp_ports_declared(fs->sp))
		return 0;
	rc = sp_sandbox_ports(fs->sp, sb->id, &ports, &n, &err);
	if (rc < 0) {
		sandbox_set_error(sb, "ports: %s", err.message);
		return rc;
	}
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++)
		if (ports[i] == (int)port)
			rc = 0;
	free(ports);
	return rc;
}

static int port_text(struct dfs *fs, struct sandbox *sb, unsigned port, struct strbuf *text)
{
	struct sp_error err = { 0 };
	struct sp_preview pv;
	int rc = sp_sandbox_preview_url(fs->sp, sb->id, (int)port, &pv, &err);

	if (rc < 0) {
		/* A port not declared (Vercel) is no sandbox error. */
		if (rc != -ENOENT || !sp_ports_declared(fs->sp))
			sandbox_set_error(sb, "port %u: %s", port, err.message);
		return rc;
	}
	sb_addf(text, "%s\n", pv.url);
	/* A private sandbox's preview asks for the token (the header
	 * x-daytona-preview-token); a public one's does not. */
	if (!sb->is_public && pv.token[0])
		sb_addf(text, "token %s\n", pv.token);
	explicit_bzero(&pv, sizeof(pv));
	return 0;
}

/* ---- volumes ------------------------------------------------------------------- */

static int volume_find(struct dfs *fs, const char *name, struct sp_volume *out)
{
	struct sp_error err = { 0 };
	struct sp_volume *list = NULL;
	size_t n = 0;
	int rc = sp_volume_list(fs->sp, &list, &n, &err);

	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(list[i].name, name)) {
			*out = list[i];
			list[i].json = NULL;
			rc = 0;
			break;
		}
	}
	sp_volume_list_free(list, n);
	return rc;
}

static void root_error(struct dfs *fs, const char *what, const char *msg)
{
	pthread_mutex_lock(&fs->lock);
	snprintf(fs->root_error, sizeof(fs->root_error), "%s: %s", what, msg);
	pthread_mutex_unlock(&fs->lock);
	log_warn("%s: %s", what, msg);
}

int surface_mkdir(struct dfs *fs, const struct node *n)
{
	struct sp_error err = { 0 };
	struct sp_volume v;
	int rc;

	if (n->kind != N_VOL)
		return n->kind == N_VOLDIR ? -EEXIST : -EPERM;
	/* The API refuses a name that is taken (EEXIST): no look first. It
	 * returns once the volume is ready (a sandbox created with it before
	 * is refused), as the lifecycle commands wait for their state. */
	memset(&v, 0, sizeof(v));
	rc = sp_volume_create(fs->sp, n->snap_name, &v, &err);
	if (rc < 0)
		root_error(fs, "mkdir .volumes", err.message);
	sp_volume_clear(&v);
	return rc;
}

int surface_rmdir(struct dfs *fs, const struct node *n)
{
	struct sp_error err = { 0 };
	struct sp_volume v;
	int rc;

	if (n->kind != N_VOL)
		return -EPERM;
	memset(&v, 0, sizeof(v));
	rc = volume_find(fs, n->snap_name, &v);
	if (rc == 0)
		rc = sp_volume_delete(fs->sp, v.id, &err);
	if (rc < 0 && err.message[0])
		root_error(fs, "rmdir .volumes", err.message);
	sp_volume_clear(&v);
	return rc;
}

/* ---- build log ------------------------------------------------------------------ */

/*
 * The build of this mount's "create ... image=" is followed (one streamed
 * request, by a thread of its own) so that NAME/build-log grows while the
 * image builds. What it received is kept while it matters: until the build's
 * request has ended AND the create returned with the sandbox started (or the
 * sandbox was deleted). After that a read asks the API for the whole log, as
 * for any other sandbox, and the memory goes.
 *
 * A build_log is counted: the sandbox holds one reference while it keeps the
 * log (sb->build, set and cleared under fs->lock), the follower one until it
 * ends, each open NAME/build-log one for its life, so an open file keeps what
 * it reads even when the follower ends or the sandbox lets go.
 */
#define BUILD_LOG_MAX (64u << 20)   /* a runaway log does not eat the machine */
static const char build_log_cut[] = "\n[daytonafs: the build log is cut here, at 64 MiB]\n";

struct build_log {
	pthread_mutex_t lock;
	struct strbuf text;
	int refs;
	bool done;                  /* the followed request ended */
	bool failed;                /* ... in error: opens ask the API again */
	bool cut;                   /* BUILD_LOG_MAX reached: build_log_cut ends the text */
	bool create_over;           /* the create started the sandbox (or it was deleted) */
	bool stop;                  /* unmount: the sink ends the request */
};

/* One thread that follows a build; joined at unmount (surface_stop) or by a
 * later create once it has ended. */
struct follower {
	struct dfs *fs;
	struct sandbox *sb;         /* entries live as long as the mount */
	char id[SP_ID_SIZE];
	struct build_log *bl;
	pthread_t thread;
	bool ended;                 /* under fs->lock */
	struct follower *next;      /* fs->followers, under fs->lock */
};

static struct build_log *build_log_new(void)
{
	struct build_log *bl = calloc(1, sizeof(*bl));

	if (bl) {
		pthread_mutex_init(&bl->lock, NULL);
		bl->refs = 1;
	}
	return bl;
}

void surface_build_log_put(struct build_log *bl)
{
	bool last;

	if (!bl)
		return;
	pthread_mutex_lock(&bl->lock);
	last = --bl->refs == 0;
	pthread_mutex_unlock(&bl->lock);
	if (!last)
		return;
	sb_free(&bl->text);
	pthread_mutex_destroy(&bl->lock);
	free(bl);
}

/* The sandbox lets go of its log (if it still is bl). */
static void build_log_detach(struct dfs *fs, struct sandbox *sb, struct build_log *bl)
{
	bool mine;

	pthread_mutex_lock(&fs->lock);
	mine = sb->build == bl;
	if (mine)
		sb->build = NULL;
	pthread_mutex_unlock(&fs->lock);
	if (mine)
		surface_build_log_put(bl);
}

/* Both must be true before the log goes: the follower's end and the create's
 * success. Each side sets its flag under bl->lock and learns the other's, so
 * exactly one of them lets go. */
static void build_log_mark(struct dfs *fs, struct sandbox *sb, struct build_log *bl, bool follower_end,
			   bool failed)
{
	bool both;

	pthread_mutex_lock(&bl->lock);
	if (follower_end) {
		bl->failed = failed;
		bl->done = true;
	} else {
		bl->create_over = true;
	}
	both = bl->done && bl->create_over;
	pthread_mutex_unlock(&bl->lock);
	if (both)
		build_log_detach(fs, sb, bl);
}

static int build_sink(void *ctx, const void *data, size_t len)
{
	struct build_log *bl = ctx;
	int rc = 0;

	pthread_mutex_lock(&bl->lock);
	if (bl->stop) {
		rc = -ECANCELED;   /* the request ends (http.h): the mount is going */
	} else if (len && !bl->cut) {
		size_t room = BUILD_LOG_MAX - bl->text.len;

		sb_add(&bl->text, data, len < room ? len : room);
		if (len >= room) {
			/* Said in the text, so that nobody takes it for the whole. */
			sb_adds(&bl->text, build_log_cut);
			bl->cut = true;
		}
	}
	pthread_mutex_unlock(&bl->lock);
	return rc;
}

static void *follow_build(void *arg)
{
	struct follower *f = arg;
	struct dfs *fs = f->fs;
	struct sp_error err = { 0 };
	bool failed = sp_sandbox_build_log(fs->sp, f->id, true, build_sink, f->bl, &err) < 0;
	struct build_log *bl;
	bool stopped;

	pthread_mutex_lock(&f->bl->lock);
	stopped = f->bl->stop;
	pthread_mutex_unlock(&f->bl->lock);
	if (failed && !stopped)
		log_warn("build log of %s: %s", f->id, err.message);

	build_log_mark(fs, f->sb, f->bl, true, failed);
	/* surface_stop looks at f->bl under fs->lock: gone from there first */
	pthread_mutex_lock(&fs->lock);
	bl = f->bl;
	f->bl = NULL;
	pthread_mutex_unlock(&fs->lock);
	surface_build_log_put(bl);
	pthread_mutex_lock(&fs->lock);
	f->ended = true;   /* from here on, f is the reaper's */
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

/* Joins the followers that have ended (each holds a thread's stack until then). */
static void followers_reap(struct dfs *fs)
{
	struct follower *done = NULL, **pp, *f;

	pthread_mutex_lock(&fs->lock);
	for (pp = &fs->followers; (f = *pp);) {
		if (f->ended) {
			*pp = f->next;
			f->next = done;
			done = f;
		} else {
			pp = &f->next;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	while ((f = done)) {
		done = f->next;
		pthread_join(f->thread, NULL);
		free(f);
	}
}

/* At unmount, before the provider and its HTTP client go: each follower's
 * request ends within about a second (its sink is called that often, bytes
 * or not, and refuses to go on), and its thread is joined. */
void surface_stop(struct dfs *fs)
{
	struct follower *list, *f;

	pthread_mutex_lock(&fs->lock);
	list = fs->followers;
	fs->followers = NULL;
	for (f = list; f; f = f->next) {
		if (!f->bl)
			continue;   /* ended, or about to */
		pthread_mutex_lock(&f->bl->lock);
		f->bl->stop = true;
		pthread_mutex_unlock(&f->bl->lock);
	}
	pthread_mutex_unlock(&fs->lock);
	while ((f = list)) {
		list = f->next;
		pthread_join(f->thread, NULL);
		free(f);
	}
}

static void start_follower(struct dfs *fs, struct sandbox *sb, const char *id)
{
	struct build_log *bl = build_log_new();
	struct follower *f = calloc(1, sizeof(*f));

	followers_reap(fs);
	if (!bl || !f) {
		surface_build_log_put(bl);
		free(f);
		return;
	}
	f->fs = fs;
	f->sb = sb;
	f->bl = bl;
	str_copy(f->id, sizeof(f->id), id);
	bl->refs = 2;   /* the sandbox's and the follower's */
	pthread_mutex_lock(&fs->lock);
	if (sb->build) {
		/* the same sandbox created twice by this mount: keep the first */
		pthread_mutex_unlock(&fs->lock);
		bl->refs = 1;
		surface_build_log_put(bl);
		free(f);
		return;
	}
	sb->build = bl;
	if (pthread_create(&f->thread, NULL, follow_build, f) == 0) {
		f->next = fs->followers;
		fs->followers = f;
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	sb->build = NULL;
	pthread_mutex_unlock(&fs->lock);
	bl->refs = 1;
	surface_build_log_put(bl);
	free(f);
}

struct progress_ctx {
	struct dfs *fs;
	struct sandbox *sb;
	bool follow_build;
};

static void on_created(void *ctx, const struct sp_sandbox *d)
{
	struct progress_ctx *pc = ctx;
	struct sandbox *sb = sandbox_add(pc->fs, d);

	pc->sb = sb;
	if (!sb)
		return;
	pthread_mutex_lock(&pc->fs->lock);
	str_copy(sb->progress, sizeof(sb->progress), "creating");
	pthread_mutex_unlock(&pc->fs->lock);
	if (pc->follow_build && sp_has(pc->fs->sp, SP_CAP_BUILD_LOG))
		start_follower(pc->fs, sb, d->id);
}

/* What a state means while create waits, for the status file. */
static const char *create_phase(const char *state)
{
	static const struct { const char *state, *shown; } phases[] = {
		{ "pending_build", "creating: waiting to build the image" },
		{ "building_snapshot", "creating: building image" },
		{ "pulling_snapshot", "creating: pulling the image" },
		{ "creating", "creating" },
		{ "starting", "starting" },
		{ "restoring", "starting: restoring" },
		{ "unknown", "creating" },
	};

	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
		if (!strcmp(state, phases[i].state))
			return phases[i].shown;
	return state;
}

static void on_state(void *ctx, const char *state)
{
	struct progress_ctx *pc = ctx;

	if (!pc->sb)
		return;
	pthread_mutex_lock(&pc->fs->lock);
	str_copy(pc->sb->progress, sizeof(pc->sb->progress), create_phase(state));
	pthread_mutex_unlock(&pc->fs->lock);
}

/* One create at a time per thread (fs_ctl.c runs root lines in order). */
static __thread struct progress_ctx create_pc;

void surface_create_progress(struct sp_create_params *p, struct dfs *fs, bool follow)
{
	memset(&create_pc, 0, sizeof(create_pc));
	create_pc.fs = fs;
	create_pc.follow_build = follow;
	p->on_created = on_created;
	p->on_state = on_state;
	p->progress_ctx = &create_pc;
}

void surface_create_done(struct dfs *fs, bool started)
{
	struct sandbox *sb = create_pc.sb;

	if (sb) {
		pthread_mutex_lock(&fs->lock);
		sb->progress[0] = '\0';
		pthread_mutex_unlock(&fs->lock);
		/* Started: the API keeps the log; ours may go once followed to
		 * its end. A create that failed keeps it (why it failed). */
		if (started)
			surface_sandbox_gone(fs, sb);
	}
	memset(&create_pc, 0, sizeof(create_pc));
}

void surface_sandbox_gone(struct dfs *fs, struct sandbox *sb)
{
	struct build_log *bl;

	pthread_mutex_lock(&fs->lock);
	bl = sb->build;
	if (bl) {
		pthread_mutex_lock(&bl->lock);
		bl->refs++;
		pthread_mutex_unlock(&bl->lock);
	}
	pthread_mutex_unlock(&fs->lock);
	if (bl) {
		build_log_mark(fs, sb, bl, false, false);
		surface_build_log_put(bl);
	}
}

struct build_log *surface_build_log_get(struct dfs *fs, struct sandbox *sb)
{
	struct build_log *bl;

	bool failed = false;

	pthread_mutex_lock(&fs->lock);
	bl = sb->build;
	if (bl) {
		pthread_mutex_lock(&bl->lock);
		failed = bl->failed;
		if (!failed)
			bl->refs++;
		pthread_mutex_unlock(&bl->lock);
	}
	pthread_mutex_unlock(&fs->lock);
	/* a followed log that broke: the API's, whole, instead */
	return failed ? NULL : bl;
}

int surface_build_log_read(struct build_log *bl, char *buf, size_t size, off_t off)
{
	size_t n = 0;

	pthread_mutex_lock(&bl->lock);
	if ((size_t)off < bl->text.len) {
		n = bl->text.len - (size_t)off;
		if (n > size)
			n = size;
		memcpy(buf, bl->text.buf + off, n);
	}
	pthread_mutex_unlock(&bl->lock);
	return (int)n;
}

static off_t build_log_size(struct dfs *fs, struct sandbox *sb)
{
	struct build_log *bl = surface_build_log_get(fs, sb);
	off_t n;

	if (!bl)
		return 0;
	pthread_mutex_lock(&bl->lock);
	n = (off_t)bl->text.len;
	pthread_mutex_unlock(&bl->lock);
	surface_build_log_put(bl);
	return n;
}

void surface_sandbox_free(struct sandbox *sb)
{
	/* the followers are joined already (surface_stop) */
	surface_build_log_put(sb->build);
	sb->build = NULL;
}

/* ---- activity --------------------------------------------------------------------- */

void surface_note_change(struct dfs *fs, struct sandbox *sb)
{
	if (sb && fs->opt.activity && !strcmp(fs->opt.activity, "changes"))
		sp_note_change(fs->sp, sb->id);
}

/* ---- the FUSE side ------------------------------------------------------------------ */

int surface_getattr(struct dfs *fs, const struct node *n, struct sandbox *sb, struct stat *st)
{
	struct sp_volume v;
	int rc;

	switch (n->kind) {
	case N_SB_USAGE:
		fill_virtual(fs, st, S_IFREG | 0444, 0);
		return 0;
	case N_SB_ENV:
		fill_virtual(fs, st, S_IFREG | 0644, 0);
		return 0;
	case N_SB_BUILDLOG:
		fill_virtual(fs, st, S_IFREG | 0444, build_log_size(fs, sb));
		return 0;
	case N_PORTSDIR:
	case N_VOLDIR:
		fill_virtual(fs, st, S_IFDIR | 0755, 0);
		return 0;
	case N_PORT:
		/* On Daytona every port has a preview URL: one nobody listens on
		 * too. On Vercel only a declared one. */
		rc = port_exists(fs, sb, n->cmd);
		if (rc == 0)
			fill_virtual(fs, st, S_IFREG | 0444, 0);
		return rc;
	case N_VOL:
	case N_VOL_INFO:
		memset(&v, 0, sizeof(v));
		rc = volume_find(fs, n->snap_name, &v);
		if (rc == 0) {
			if (n->kind == N_VOL)
				fill_virtual(fs, st, S_IFDIR | 0755, 0);
			else
				fill_virtual(fs, st, S_IFREG | 0444, v.json ? (off_t)strlen(v.json) : 0);
			st->st_mtim = v.updated_at;
		}
		sp_volume_clear(&v);
		return rc;
	default:
		return -ENOENT;
	}
}

int surface_readdir(struct dfs *fs, const struct node *n, struct sandbox *sb, void *buf,
		    fuse_fill_dir_t filler)
{
	struct sp_error err = { 0 };
	int rc;

	switch (n->kind) {
	case N_PORTSDIR: {
		unsigned char *seen = calloc(65536 / 8, 1);

		if (!seen)
			return -ENOMEM;
		rc = ports_list(fs, sb, seen);
		for (unsigned p = 1; rc == 0 && p < 65536; p++) {
			char name[8];

			if (!(seen[p / 8] & (1u << (p % 8))))
				continue;
			snprintf(name, sizeof(name), "%u", p);
			if (filler(buf, name, NULL, 0, 0))
				break;
		}
		free(seen);
		return rc;
	}
	case N_VOLDIR: {
		struct sp_volume *list = NULL;
		size_t cnt = 0;

		rc = sp_volume_list(fs->sp, &list, &cnt, &err);
		if (rc < 0) {
			root_error(fs, "listing volumes", err.message);
			return rc;
		}
		for (size_t i = 0; i < cnt; i++)
			if (list[i].name[0] && !strchr(list[i].name, '/') && strcmp(list[i].name, ".") &&
			    strcmp(list[i].name, ".."))
				filler(buf, list[i].name, NULL, 0, 0);
		sp_volume_list_free(list, cnt);
		return 0;
	}
	case N_VOL:
		rc = surface_getattr(fs, n, sb, &(struct stat){ 0 });
		if (rc == 0)
			filler(buf, "info", NULL, 0, 0);
		return rc;
	default:
		return -ENOTDIR;
	}
}

int surface_text(struct dfs *fs, const struct node *n, struct sandbox *sb, struct strbuf *text)
{
	struct sp_error err = { 0 };
	struct sp_volume v;
	int rc;

	switch (n->kind) {
	case N_SB_USAGE:
		return usage_text(fs, sb, text);
	case N_SB_ENV:
		return env_text(fs, sb, text);
	case N_PORT:
		return port_text(fs, sb, n->cmd, text);
	case N_VOL_INFO:
		memset(&v, 0, sizeof(v));
		rc = volume_find(fs, n->snap_name, &v);
		if (rc == 0 && v.json)
			sb_adds(text, v.json);
		sp_volume_clear(&v);
		return rc;
	case N_SB_BUILDLOG: {
		/* Not one this mount follows (its opens take that, vhandle_open):
		 * the log as the API keeps it (none for a sandbox made from a
		 * snapshot: empty). */
		struct build_log tmp = { .text = STRBUF_INIT };

		pthread_mutex_init(&tmp.lock, NULL);
		rc = sp_sandbox_build_log(fs->sp, sb->id, false, build_sink, &tmp, &err);
		if (rc == 0)
			sb_add(text, tmp.text.buf, tmp.text.len);
		sb_free(&tmp.text);
		pthread_mutex_destroy(&tmp.lock);
		/* 400 "has no build info" (made from a snapshot): no log, an
		 * empty file. Any other failure is the open's error: an empty
		 * file would say the build wrote nothing. */
		if (rc == -EINVAL || rc == -ENOENT) {
			log_debug("build log of %s: %s", sb->name, err.message);
			return 0;
		}
		if (rc < 0)
			sandbox_set_error(sb, "build-log: %s", err.message);
		return rc;
	}
	default:
		return 0;
	}
}
