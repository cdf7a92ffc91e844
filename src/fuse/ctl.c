/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctl.c - the command grammar of the ctl files (see ctl.h).
 *
 * Pure: no I/O and no global state, so that it can be unit-tested and
 * fuzzed on its own. Every message written into err is one line that the
 * user reads through the `error` file, so words quoted back are shortened
 * and their control bytes escaped.
 */
#include "ctl.h"
#include "strbuf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More words than this in one line is a mistake, not a command; the bound
 * also keeps the duplicate checks (linear scans) cheap. */
#define CTL_MAX_WORDS 1024

/* How much of a user's word is quoted back in a message. */
#define SHOW_MAX 64

/* ---------------------------------------------------------------- words */

struct word {
	char *val;              /* unquoted, NUL-terminated */
	size_t start, end;      /* the raw bytes [start, end) of the line */
	bool quoted;            /* a quote or a backslash took part */
};

struct words {
	struct word *v;
	size_t n, cap;
};

enum tok_err { TOK_SQUOTE = 1, TOK_DQUOTE, TOK_BACKSLASH };

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* ASCII only: the grammar must not change with the locale. */
static int fold(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : (unsigned char)c;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static size_t skip_blanks(const char *s, size_t len, size_t i)
{
	while (i < len && is_blank(s[i]))
		i++;
	return i;
}

/*
 * Reads the word that starts at or after *pos. Returns 1 with *w filled (the
 * caller owns w->val), 0 at the end of the line, -EINVAL with *te set on a
 * quoting error, or -ENOMEM.
 */
static int next_word(const char *s, size_t len, size_t *pos, struct word *w, enum tok_err *te)
{
	struct strbuf sb = STRBUF_INIT;
	size_t i = skip_blanks(s, len, *pos);

	*pos = i;
	if (i >= len)
		return 0;
	w->start = i;
	w->quoted = false;
	while (i < len && !is_blank(s[i])) {
		char c = s[i];

		if (c == '\'') {
			const char *q = memchr(s + i + 1, '\'', len - i - 1);

			if (!q) {
				*te = TOK_SQUOTE;
				goto bad;
			}
			sb_add(&sb, s + i + 1, (size_t)(q - (s + i + 1)));
			i = (size_t)(q - s) + 1;
			w->quoted = true;
		} else if (c == '"') {
			w->quoted = true;
			for (i++;; i++) {
				if (i >= len) {
					*te = TOK_DQUOTE;
					goto bad;
				}
				c = s[i];
				if (c == '"')
					break;
				if (c == '\\' && i + 1 < len) {
					char n = s[i + 1];

					if (n == '"' || n == '\\' || n == '$' || n == '`') {
						sb_addc(&sb, n);
						i++;
						continue;
					}
					if (n == 'n') {
						sb_addc(&sb, '\n');
						i++;
						continue;
					}
				}
				/* any other backslash stays, as in a shell */
				sb_addc(&sb, c);
			}
			i++;
		} else if (c == '\\') {
			if (i + 1 >= len) {
				*te = TOK_BACKSLASH;
				goto bad;
			}
			sb_addc(&sb, s[i + 1]);
			i += 2;
			w->quoted = true;
		} else {
			sb_addc(&sb, c);
			i++;
		}
	}
	w->end = i;
	*pos = i;
	w->val = sb_detach(&sb);
	return w->val ? 1 : -ENOMEM;
bad:
	sb_free(&sb);
	return -EINVAL;
}

static void words_free(struct words *ws)
{
	for (size_t i = 0; i < ws->n; i++)
		free(ws->v[i].val);
	free(ws->v);
	ws->v = NULL;
	ws->n = ws->cap = 0;
}

static int words_push(struct words *ws, struct word *w)
{
	if (ws->n == ws->cap) {
		size_t cap = ws->cap ? ws->cap * 2 : 8;
		struct word *nv = realloc(ws->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		ws->v = nv;
		ws->cap = cap;
	}
	ws->v[ws->n++] = *w;
	w->val = NULL;
	return 0;
}

/* --------------------------------------------------------------- parser */

struct parser {
	const char *line;
	size_t len;
	size_t pos;                  /* after the verb */
	enum ctl_scope scope;
	struct ctl_command *c;
	const char *verb;            /* prefixes messages once known */
	struct strbuf msg;
	char shown[3][SHOW_MAX * 4 + 8];
	unsigned next_shown;
	bool seen_timeout;
};

/*
 * A user's bytes made fit for a one-line message: at most SHOW_MAX bytes
 * (cut on a UTF-8 boundary, then "..."), control bytes as \xNN. Returns one
 * of a few rotating buffers, so a message may show up to three words.
 */
static const char *show_n(struct parser *p, const char *s, size_t n)
{
	char *out = p->shown[p->next_shown++ % 3];
	size_t o = 0, cut = n;
	bool more = false;

	if (n > SHOW_MAX) {
		cut = SHOW_MAX;
		while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
			cut--;
		more = true;
	}
	for (size_t i = 0; i < cut; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f) {
			snprintf(out + o, 5, "\\x%02x", ch);
			o += 4;
		} else {
			out[o++] = (char)ch;
		}
	}
	if (more) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static const char *show(struct parser *p, const char *s)
{
	return show_n(p, s, strlen(s));
}

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;

	sb_reset(&p->msg);
	if (p->verb)
		sb_addf(&p->msg, "%s: ", p->verb);
	va_start(ap, fmt);
	sb_vaddf(&p->msg, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int nomem(struct parser *p)
{
	sb_reset(&p->msg);
	sb_adds(&p->msg, "out of memory");
	return -ENOMEM;
}

static int tok_fail(struct parser *p, int r, enum tok_err te)
{
	if (r == -ENOMEM)
		return nomem(p);
	switch (te) {
	case TOK_SQUOTE:
		return fail(p, "unterminated single quote");
	case TOK_DQUOTE:
		return fail(p, "unterminated double quote");
	case TOK_BACKSLASH:
	default:
		return fail(p, "backslash at the end of the line");
	}
}

/* The words after the verb. */
static int read_args(struct parser *p, struct words *ws)
{
	size_t pos = p->pos;

	for (;;) {
		struct word w;
		enum tok_err te = 0;
		int r = next_word(p->line, p->len, &pos, &w, &te);

		if (r == 0)
			return 0;
		if (r < 0)
			return tok_fail(p, r, te);
		if (ws->n >= CTL_MAX_WORDS) {
			free(w.val);
			return fail(p, "too many arguments (at most %d)", CTL_MAX_WORDS);
		}
		if (words_push(ws, &w) < 0) {
			free(w.val);
			return nomem(p);
		}
	}
}

/* -------------------------------------------------------------- helpers */

enum { INT_OK, INT_BAD, INT_BIG };

/* A strict decimal: an optional '-', digits, nothing else. */
static int parse_long(const char *s, long min, long max, long *out)
{
	bool neg = *s == '-';
	unsigned long v = 0;
	long val;

	if (neg)
		s++;
	if (!*s)
		return INT_BAD;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return INT_BAD;
		if (v > (ULONG_MAX - 9) / 10)
			v = ULONG_MAX;          /* saturate: far out of any range */
		else
			v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v > (unsigned long)LONG_MAX)
		return neg ? INT_BAD : INT_BIG;
	val = neg ? -(long)v : (long)v;
	if (val < min)
		return INT_BAD;
	if (val > max)
		return INT_BIG;
	*out = val;
	return INT_OK;
}

static const char *int_desc(long min)
{
	if (min == 1)
		return "a positive integer";
	if (min == 0)
		return "a non-negative integer";
	return "an integer >= -1";
}

/* Parses what=val as an integer in [min, max], with a message naming what. */
static int get_long(struct parser *p, const char *what, const char *val, long min, long max, long *out)
{
	switch (parse_long(val, min, max, out)) {
	case INT_OK:
		return 0;
	case INT_BIG:
		return fail(p, "%s must be at most %ld, got '%s'", what, max, show(p, val));
	default:
		return fail(p, "%s must be %s, got '%s'", what, int_desc(min), show(p, val));
	}
}

static int get_int(struct parser *p, const char *what, const char *val, long min, int *out)
{
	long v;
	int r = get_long(p, what, val, min, INT_MAX, &v);

	if (r == 0)
		*out = (int)v;
	return r;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Does the key of "key=value" (klen bytes) equal name? */
static bool key_is(const char *w, size_t klen, const char *name)
{
	return strlen(name) == klen && memcmp(w, name, klen) == 0;
}

static int set_str(struct parser *p, char **dst, const char *key, const char *val)
{
	if (*dst)
		return fail(p, "%s given twice", key);
	if (!*val)
		return fail(p, "%s needs a value", key);
	*dst = strdup(val);
	return *dst ? 0 : nomem(p);
}

static int pair_add(struct parser *p, struct ctl_pair **v, size_t *n, const char *k, size_t klen,
		    const char *val)
{
	struct ctl_pair *nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (!nv)
		return nomem(p);
	*v = nv;
	nv[*n].key = strndup(k, klen);
	nv[*n].value = strdup(val);
	if (!nv[*n].key || !nv[*n].value) {
		free(nv[*n].key);
		free(nv[*n].value);
		return nomem(p);
	}
	(*n)++;
	return 0;
}

static bool pair_has(const struct ctl_pair *v, size_t n, const char *k, size_t klen)
{
	for (size_t i = 0; i < n; i++)
		if (key_is(k, klen, v[i].key))
			return true;
	return false;
}

/* env.K=V (env points after "env."); what names the option for messages. */
static int add_env(struct parser *p, const char *kv, const char *whole)
{
	struct ctl_command *c = p->c;
	const char *eq = strchr(kv, '=');
	char *key;
	int r;

	if (!eq)
		return fail(p, "expected env.NAME=VALUE, got '%s'", show(p, whole));
	key = strndup(kv, (size_t)(eq - kv));
	if (!key)
		return nomem(p);
	if (!ctl_valid_env_key(key))
		r = fail(p, "invalid environment variable name '%s' (letters, digits and '_', not starting with a digit)",
			 show(p, key));
	else if (pair_has(c->env, c->n_env, key, strlen(key)))
		r = fail(p, "env.%s given twice", show(p, key));
	else
		r = pair_add(p, &c->env, &c->n_env, key, strlen(key), eq + 1);
	free(key);
	return r;
}

/* KEY=VALUE of a label (create's label.K=V, and label K=V). */
static int add_label(struct parser *p, const char *kv, const char *whole, bool in_create)
{
	const char *form = in_create ? "label.KEY=VALUE" : "KEY=VALUE";
	struct ctl_command *c = p->c;
	const char *eq = strchr(kv, '=');
	size_t klen;

	if (!eq || eq == kv)
		return fail(p, "expected %s, got '%s'", form, show(p, whole));
	klen = (size_t)(eq - kv);
	if (pair_has(c->labels, c->n_labels, kv, klen))
		return fail(p, in_create ? "label.%s given twice" : "key '%s' given twice", show_n(p, kv, klen));
	return pair_add(p, &c->labels, &c->n_labels, kv, klen, eq + 1);
}

/* ---------------------------------------------------------------- verbs */

enum { S_ROOT = 1, S_SANDBOX = 2, S_COMMAND = 4 };

static const struct verb_def {
	const char *name;
	enum ctl_verb verb;
	unsigned scopes;
} verbs[] = {
	{ "create", CTL_CREATE, S_ROOT },
	{ "exec", CTL_EXEC, S_SANDBOX },
	{ "kill", CTL_KILL, S_SANDBOX | S_COMMAND },
	{ "start", CTL_START, S_SANDBOX },
	{ "stop", CTL_STOP, S_SANDBOX },
	{ "restart", CTL_RESTART, S_SANDBOX },
	{ "archive", CTL_ARCHIVE, S_SANDBOX },
	{ "recover", CTL_RECOVER, S_SANDBOX },
	{ "delete", CTL_DELETE, S_SANDBOX },
	{ "snapshot", CTL_SNAPSHOT, S_SANDBOX },
	{ "resize", CTL_RESIZE, S_SANDBOX },
	{ "autostop", CTL_AUTOSTOP, S_SANDBOX },
	{ "autoarchive", CTL_AUTOARCHIVE, S_SANDBOX },
	{ "autodelete", CTL_AUTODELETE, S_SANDBOX },
	{ "label", CTL_LABEL, S_SANDBOX },
	{ "unlabel", CTL_UNLABEL, S_SANDBOX },
	{ "close-stdin", CTL_CLOSE_STDIN, S_COMMAND },
	{ "extend", CTL_EXTEND, S_SANDBOX },
	/* Vercel's words for labels: its tags */
	{ "tag", CTL_LABEL, S_SANDBOX },
	{ "untag", CTL_UNLABEL, S_SANDBOX },
};

#define N_VERBS (sizeof(verbs) / sizeof(verbs[0]))

const char *ctl_verb_name(enum ctl_verb v)
{
	if (v == CTL_NONE)
		return "none";
	for (size_t i = 0; i < N_VERBS; i++)
		if (verbs[i].verb == v)
			return verbs[i].name;
	return "unknown";
}

static unsigned scope_bit(enum ctl_scope s)
{
	return s == CTL_SCOPE_ROOT ? S_ROOT : s == CTL_SCOPE_SANDBOX ? S_SANDBOX : S_COMMAND;
}

static const char *scope_place(unsigned bit)
{
	switch (bit) {
	case S_ROOT:
		return "the root ctl";
	case S_SANDBOX:
		return "NAME/ctl";
	default:
		return "NAME/cmd/N/ctl";
	}
}

/* Optimal string alignment distance (Levenshtein plus transpositions),
 * ASCII case folded; words longer than 32 bytes are never close. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[34][34];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int ca = fold(a[i - 1]), cb = fold(b[j - 1]);
			size_t cost = ca != cb;
			size_t v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && ca == fold(b[j - 2]) && fold(a[i - 2]) == cb &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

static int unknown_verb(struct parser *p, const char *word)
{
	unsigned bit = scope_bit(p->scope);
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	struct strbuf known = STRBUF_INIT;
	int r;

	for (size_t i = 0; i < N_VERBS; i++) {
		size_t d, len = strlen(verbs[i].name);

		if (!(verbs[i].scopes & bit))
			continue;
		d = edit_distance(word, verbs[i].name);
		/* a typo, not another word: 1 edit in short verbs, 2 in long */
		if (d <= (len <= 4 ? 1u : 2u) && d < best_d) {
			best = verbs[i].name;
			best_d = d;
		}
		sb_addf(&known, "%s%s", known.len ? ", " : "", verbs[i].name);
	}
	if (known.oom)
		r = nomem(p);
	else if (best)
		r = fail(p, "unknown command '%s' (did you mean '%s'?)", show(p, word), best);
	else
		r = fail(p, "unknown command '%s' (known here: %s)", show(p, word), sb_str(&known));
	sb_free(&known);
	return r;
}

static int wrong_scope(struct parser *p, const struct verb_def *vd)
{
	const char *there;

	if (vd->scopes == (S_SANDBOX | S_COMMAND))
		there = "NAME/ctl or NAME/cmd/N/ctl";
	else
		there = scope_place(vd->scopes);
	return fail(p, "not a command for %s; write it to %s", scope_place(scope_bit(p->scope)), there);
}

static int no_args(struct parser *p, const struct words *a)
{
	if (a->n)
		return fail(p, "unexpected argument '%s'", show(p, a->v[0].val));
	return 0;
}

/* create NAME [key=value | flag ...] */

#define CREATE_KNOWN "snapshot= image= cpu= memory= disk= gpu= language= target= user= env.K=V label.K=V " \
	"autostop= autoarchive= autodelete= volume=ID:/path network=block-all network-allow=CIDR,... " \
	"ephemeral public; Vercel's words: runtime= vcpus= timeout= port= tag.K=V persistent"

/* Vercel's words are other names of the same options (runtime= is image=,
 * vcpus= cpu=, timeout= autostop=, tag. label.), and port=, persistent. */
static const char *const create_keys[] = {
	"snapshot", "image", "cpu", "memory", "disk", "gpu", "language", "target", "user",
	"autostop", "autoarchive", "autodelete", "volume", "ephemeral", "public", "network",
	"network-allow",
	"runtime", "vcpus", "timeout", "port", "persistent",
};

static bool is_create_key(const char *w, size_t klen)
{
	for (size_t i = 0; i < sizeof(create_keys) / sizeof(create_keys[0]); i++)
		if (key_is(w, klen, create_keys[i]))
			return true;
	return false;
}

static int set_minutes(struct parser *p, long *dst, const char *key, const char *val, long min)
{
	if (*dst != CTL_MINUTES_UNSET)
		return fail(p, "%s given twice", key);
	return get_long(p, key, val, min, INT_MAX, dst);
}

static int set_resource(struct parser *p, int *dst, const char *key, const char *val, long min)
{
	if (*dst != CTL_UNSET)
		return fail(p, "%s given twice", key);
	return get_int(p, key, val, min, dst);
}

static int set_flag(struct parser *p, bool *dst, const char *key)
{
	if (*dst)
		return fail(p, "%s given twice", key);
	*dst = true;
	return 0;
}

static int create_option(struct parser *p, const char *w)
{
	struct ctl_command *c = p->c;
	const char *eq = strchr(w, '=');
	size_t klen = eq ? (size_t)(eq - w) : strlen(w);
	const char *v = eq ? eq + 1 : "";

	if (has_prefix(w, "env."))
		return add_env(p, w + 4, w);
	if (has_prefix(w, "label."))
		return add_label(p, w + 6, w, true);
	if (has_prefix(w, "tag."))
		return add_label(p, w + 4, w, true);
	if (!eq) {
		if (!strcmp(w, "ephemeral"))
			return set_flag(p, &c->ephemeral, w);
		if (!strcmp(w, "persistent"))
			return set_flag(p, &c->persistent, w);
		if (!strcmp(w, "public"))
			return set_flag(p, &c->is_public, w);
		if (is_create_key(w, klen))
			return fail(p, "%s needs a value (%s=...)", w, w);
	} else if (key_is(w, klen, "ephemeral") || key_is(w, klen, "public") || key_is(w, klen, "persistent")) {
		return fail(p, "%s is a flag and takes no value", show_n(p, w, klen));
	}
	if (key_is(w, klen, "snapshot"))
		return set_str(p, &c->snapshot, "snapshot", v);
	if (key_is(w, klen, "image") || key_is(w, klen, "runtime"))
		return set_str(p, &c->image, key_is(w, klen, "image") ? "image" : "runtime", v);
	if (key_is(w, klen, "port")) {
		long port;
		int *np;
		int r = get_long(p, "port", v, 1, 65535, &port);

		if (r)
			return r;
		np = realloc(c->ports, (c->n_ports + 1) * sizeof(*np));
		if (!np)
			return nomem(p);
		c->ports = np;
		c->ports[c->n_ports++] = (int)port;
		return 0;
	}
	if (key_is(w, klen, "target"))
		return set_str(p, &c->target, "target", v);
	if (key_is(w, klen, "user"))
		return set_str(p, &c->user, "user", v);
	if (key_is(w, klen, "language")) {
		if (*v && strcmp(v, "python") && strcmp(v, "javascript") && strcmp(v, "typescript"))
			return fail(p, "language must be python, javascript or typescript, got '%s'", show(p, v));
		return set_str(p, &c->language, "language", v);
	}
	if (key_is(w, klen, "cpu") || key_is(w, klen, "vcpus"))
		return set_resource(p, &c->cpu, key_is(w, klen, "cpu") ? "cpu" : "vcpus", v, 1);
	if (key_is(w, klen, "memory"))
		return set_resource(p, &c->memory, "memory", v, 1);
	if (key_is(w, klen, "disk"))
		return set_resource(p, &c->disk, "disk", v, 1);
	if (key_is(w, klen, "gpu"))
		return set_resource(p, &c->gpu, "gpu", v, 0);
	if (key_is(w, klen, "autostop") || key_is(w, klen, "timeout"))
		return set_minutes(p, &c->autostop, key_is(w, klen, "autostop") ? "autostop" : "timeout", v, 0);
	if (key_is(w, klen, "autoarchive"))
		return set_minutes(p, &c->autoarchive, "autoarchive", v, 0);
	if (key_is(w, klen, "autodelete"))
		return set_minutes(p, &c->autodelete, "autodelete", v, -1);
	if (key_is(w, klen, "network")) {
		if (strcmp(v, "block-all"))
			return fail(p, "network must be block-all (or use network-allow=CIDR,...), got '%s'",
				    show(p, v));
		return set_flag(p, &c->network_block_all, "network");
	}
	if (key_is(w, klen, "network-allow")) {
		char msg[160];

		if (*v && ctl_check_allow_list(v, msg, sizeof(msg)))
			return fail(p, "%s", msg);
		return set_str(p, &c->network_allow, "network-allow", v);
	}
	if (key_is(w, klen, "volume")) {
		/* the first ":/": a volume name may hold ':', a path starts with '/' */
		const char *colon = strstr(v, ":/");

		if (!colon || colon == v)
			return fail(p, "volume must be ID:/path, got '%s'", show(p, v));
		return pair_add(p, &c->volumes, &c->n_volumes, v, (size_t)(colon - v), colon + 1);
	}
	return fail(p, "unknown option '%s' (known: " CREATE_KNOWN ")", show_n(p, w, klen));
}

static int parse_create(struct parser *p, struct words *a)
{
	struct ctl_command *c = p->c;
	const char *name;
	int r;

	if (!a->n)
		return fail(p, "missing sandbox name");
	name = a->v[0].val;
	if (strchr(name, '=') && (is_create_key(name, (size_t)(strchr(name, '=') - name)) ||
				  has_prefix(name, "env.") || has_prefix(name, "label.") || has_prefix(name, "tag.")))
		return fail(p, "missing sandbox name before '%s'", show(p, name));
	if (!ctl_valid_name(name))
		return fail(p, "invalid sandbox name '%s' (1 to 255 bytes, no '/', not starting with '.')",
			    show(p, name));
	c->name = a->v[0].val;
	a->v[0].val = NULL;
	for (size_t i = 1; i < a->n; i++) {
		r = create_option(p, a->v[i].val);
		if (r)
			return r;
	}
	if (c->snapshot && c->image)
		return fail(p, "snapshot= and image= exclude each other");
	if (c->network_block_all && c->network_allow)
		return fail(p, "network=block-all and network-allow= exclude each other");
	if (c->ephemeral && c->persistent)
		return fail(p, "ephemeral and persistent exclude each other");
	if (c->ephemeral && c->autodelete != CTL_MINUTES_UNSET && c->autodelete != 0)
		return fail(p, "ephemeral means autodelete=0, got autodelete=%ld", c->autodelete);
	return 0;
}

/* exec */

/* The forms that may precede "--". Recognised by form alone: a bad value
 * in a recognised form (timeout=abc) is an error, not a command. */
static bool is_exec_option(const char *w)
{
	return has_prefix(w, "cwd=") || has_prefix(w, "timeout=") ||
	       (has_prefix(w, "env.") && strchr(w, '=')) || !strcmp(w, "stdin");
}

static int exec_option(struct parser *p, const char *w)
{
	struct ctl_command *c = p->c;
	const char *eq = strchr(w, '=');

	if (!strcmp(w, "stdin"))
		return set_flag(p, &c->with_stdin, "stdin");
	/* A name bash keeps for itself reached the command as the wrapper's
	 * "readonly variable" on its stderr, and was not set: refused, as
	 * NAME/env refuses it. (create's env.K=V is the sandbox's own
	 * environment, given to its processes by the provider.) */
	if (has_prefix(w, "env.") && eq && ctl_env_key_reserved(w + 4, (size_t)(eq - (w + 4))))
		return fail(p, "env.%s: the shell keeps that name for itself: it cannot be set for a command",
			    show(p, ctl_env_key_reserved(w + 4, (size_t)(eq - (w + 4)))));
	if (has_prefix(w, "env."))
		return add_env(p, w + 4, w);
	if (has_prefix(w, "cwd="))
		return set_str(p, &c->cwd, "cwd", w + 4);
	/* timeout= */
	if (p->seen_timeout)
		return fail(p, "timeout given twice");
	p->seen_timeout = true;
	return get_long(p, "timeout", w + 8, 0, INT_MAX, &c->timeout_s);
}

static int set_command(struct parser *p, size_t from)
{
	p->c->command = strndup(p->line + from, p->len - from);
	return p->c->command ? 0 : nomem(p);
}

static bool is_separator(const struct parser *p, const struct word *w)
{
	return !w->quoted && w->end - w->start == 2 && memcmp(p->line + w->start, "--", 2) == 0;
}

static int parse_exec(struct parser *p)
{
	struct words opts = { 0 };
	size_t rest = skip_blanks(p->line, p->len, p->pos), pos = rest;
	bool separated = false;
	int r = 0;

	if (rest >= p->len)
		return fail(p, "missing command");
	/* Look for a standalone "--" preceded only by options; stop at the
	 * first word that is not one (it is then all a command). */
	for (;;) {
		struct word w;
		enum tok_err te = 0;

		r = next_word(p->line, p->len, &pos, &w, &te);
		if (r == -ENOMEM) {
			r = nomem(p);
			goto out;
		}
		if (r <= 0)
			break;  /* the end, or a quote the shell will judge */
		if (is_separator(p, &w)) {
			free(w.val);
			separated = true;
			break;
		}
		if (!is_exec_option(w.val) || opts.n >= CTL_MAX_WORDS) {
			free(w.val);
			break;
		}
		if (words_push(&opts, &w) < 0) {
			free(w.val);
			r = nomem(p);
			goto out;
		}
	}
	r = 0;
	if (!separated) {
		r = set_command(p, rest);
		goto out;
	}
	for (size_t i = 0; i < opts.n; i++) {
		r = exec_option(p, opts.v[i].val);
		if (r)
			goto out;
	}
	pos = skip_blanks(p->line, p->len, pos);
	if (pos >= p->len)
		r = fail(p, "missing command after '--'");
	else
		r = set_command(p, pos);
out:
	words_free(&opts);
	return r;
}

/* kill [N] */
static int parse_kill(struct parser *p, struct words *a)
{
	if (p->scope == CTL_SCOPE_COMMAND) {
		if (a->n)
			return fail(p, "unexpected argument '%s' (cmd/N/ctl kills its own command)",
				    show(p, a->v[0].val));
		return 0;
	}
	if (!a->n)
		return 0;
	if (a->n > 1)
		return fail(p, "unexpected argument '%s'", show(p, a->v[1].val));
	return get_long(p, "N", a->v[0].val, 1, INT_MAX, &p->c->kill_n);
}

static int parse_snapshot(struct parser *p, struct words *a)
{
	if (!a->n)
		return fail(p, "missing snapshot name");
	if (a->n > 1)
		return fail(p, "unexpected argument '%s'", show(p, a->v[1].val));
	if (!ctl_valid_name(a->v[0].val))
		return fail(p, "invalid snapshot name '%s' (1 to 255 bytes, no '/', not starting with '.')",
			    show(p, a->v[0].val));
	p->c->name = a->v[0].val;
	a->v[0].val = NULL;
	return 0;
}

static int parse_resize(struct parser *p, struct words *a)
{
	struct ctl_command *c = p->c;

	if (!a->n)
		return fail(p, "needs at least one of cpu=N memory=GIB disk=GIB");
	for (size_t i = 0; i < a->n; i++) {
		const char *w = a->v[i].val, *eq = strchr(w, '=');
		size_t klen = eq ? (size_t)(eq - w) : strlen(w);
		int r;

		if (eq && key_is(w, klen, "cpu"))
			r = set_resource(p, &c->cpu, "cpu", eq + 1, 1);
		else if (eq && key_is(w, klen, "memory"))
			r = set_resource(p, &c->memory, "memory", eq + 1, 1);
		else if (eq && key_is(w, klen, "disk"))
			r = set_resource(p, &c->disk, "disk", eq + 1, 1);
		else
			r = fail(p, "unknown option '%s' (known: cpu= memory= disk=)", show_n(p, w, klen));
		if (r)
			return r;
	}
	return 0;
}

static int parse_minutes(struct parser *p, struct words *a)
{
	long min = p->c->verb == CTL_AUTODELETE ? -1 : p->c->verb == CTL_EXTEND ? 1 : 0;

	if (!a->n)
		return fail(p, "missing minutes");
	if (a->n > 1)
		return fail(p, "unexpected argument '%s'", show(p, a->v[1].val));
	return get_long(p, "minutes", a->v[0].val, min, INT_MAX, &p->c->minutes);
}

static int parse_label(struct parser *p, struct words *a)
{
	if (!a->n)
		return fail(p, "missing KEY=VALUE");
	for (size_t i = 0; i < a->n; i++) {
		int r = add_label(p, a->v[i].val, a->v[i].val, false);

		if (r)
			return r;
	}
	return 0;
}

static int parse_unlabel(struct parser *p, struct words *a)
{
	struct ctl_command *c = p->c;

	if (!a->n)
		return fail(p, "missing KEY");
	c->keys = calloc(a->n, sizeof(*c->keys));
	if (!c->keys)
		return nomem(p);
	for (size_t i = 0; i < a->n; i++) {
		const char *k = a->v[i].val;
		bool dup = false;

		if (!*k)
			return fail(p, "empty KEY");
		if (strchr(k, '='))
			return fail(p, "expected KEY without '=', got '%s'", show(p, k));
		for (size_t j = 0; j < c->n_keys && !dup; j++)
			dup = !strcmp(c->keys[j], k);
		if (dup)   /* harmless: removing twice is removing once */
			continue;
		c->keys[c->n_keys++] = a->v[i].val;
		a->v[i].val = NULL;
	}
	return 0;
}

static int parse_verb(struct parser *p, const struct verb_def *vd)
{
	struct words a = { 0 };
	int r;

	p->c->verb = vd->verb;
	if (vd->verb == CTL_EXEC)
		return parse_exec(p);
	r = read_args(p, &a);
	if (r)
		goto out;
	switch (vd->verb) {
	case CTL_CREATE:
		r = parse_create(p, &a);
		break;
	case CTL_KILL:
		r = parse_kill(p, &a);
		break;
	case CTL_SNAPSHOT:
		r = parse_snapshot(p, &a);
		break;
	case CTL_RESIZE:
		r = parse_resize(p, &a);
		break;
	case CTL_AUTOSTOP:
	case CTL_AUTOARCHIVE:
	case CTL_AUTODELETE:
	case CTL_EXTEND:
		r = parse_minutes(p, &a);
		break;
	case CTL_LABEL:
		r = parse_label(p, &a);
		break;
	case CTL_UNLABEL:
		r = parse_unlabel(p, &a);
		break;
	default:
		r = no_args(p, &a);
		break;
	}
out:
	words_free(&a);
	return r;
}

static void command_init(struct ctl_command *c)
{
	memset(c, 0, sizeof(*c));
	/* timeout=0 says "no limit", which must differ from "not given" */
	c->timeout_s = CTL_UNSET;
	c->cpu = c->memory = c->disk = c->gpu = CTL_UNSET;
	c->minutes = c->autostop = c->autoarchive = c->autodelete = CTL_MINUTES_UNSET;
}

static int parse_line(struct parser *p)
{
	struct word w;
	enum tok_err te = 0;
	size_t pos;
	int r;

	if (memchr(p->line, '\0', p->len))
		return fail(p, "the line contains a NUL byte");
	if (memchr(p->line, '\n', p->len))
		return fail(p, "one command per line: the line contains a newline");
	pos = skip_blanks(p->line, p->len, 0);
	if (pos >= p->len || p->line[pos] == '#')
		return 0;   /* CTL_NONE */
	r = next_word(p->line, p->len, &pos, &w, &te);
	if (r < 0)
		return tok_fail(p, r, te);
	p->pos = pos;
	r = -1;
	for (size_t i = 0; i < N_VERBS; i++) {
		if (strcmp(w.val, verbs[i].name))
			continue;
		p->verb = verbs[i].name;
		if (!(verbs[i].scopes & scope_bit(p->scope)))
			r = wrong_scope(p, &verbs[i]);
		else
			r = parse_verb(p, &verbs[i]);
		break;
	}
	if (r == -1)
		r = unknown_verb(p, w.val);
	free(w.val);
	return r;
}

int ctl_parse(const char *line, size_t len, enum ctl_scope scope, struct ctl_command *out,
	      char *err, size_t errlen)
{
	struct parser p = { 0 };
	int r;

	command_init(out);
	if (err && errlen)
		err[0] = '\0';
	if (!line)
		len = 0;
	/* the line terminator, and a stray '\r' left by a CRLF editor */
	if (len && line[len - 1] == '\n')
		len--;
	if (len && line[len - 1] == '\r')
		len--;
	p.line = line ? line : "";
	p.len = len;
	p.scope = scope;
	p.c = out;
	r = parse_line(&p);
	if (r) {
		if (p.msg.oom)
			r = -ENOMEM;
		if (err && errlen)
			str_copy(err, errlen, p.msg.oom ? "out of memory" : sb_str(&p.msg));
		out->verb = CTL_NONE;
	}
	sb_free(&p.msg);
	return r;
}

static void pairs_free(struct ctl_pair *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

void ctl_command_free(struct ctl_command *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->command);
	free(c->cwd);
	pairs_free(c->env, c->n_env);
	free(c->snapshot);
	free(c->image);
	free(c->language);
	free(c->target);
	free(c->user);
	free(c->network_allow);
	pairs_free(c->labels, c->n_labels);
	pairs_free(c->volumes, c->n_volumes);
	free(c->ports);
	for (size_t i = 0; i < c->n_keys; i++)
		free(c->keys[i]);
	free(c->keys);
	command_init(c);
}

const char *ctl_env_key_reserved(const char *k, size_t n)
{
	static const char *const names[] = {
		"IFS", "UID", "EUID", "PPID", "SHELLOPTS", "BASHOPTS", "BASH_VERSINFO", "GROUPS",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && !memcmp(names[i], k, n))
			return names[i];
	return NULL;
}

bool ctl_valid_env_key(const char *key)
{
	if (!key || !(is_alpha(*key) || *key == '_'))
		return false;
	for (key++; *key; key++)
		if (!(is_alpha(*key) || is_digit(*key) || *key == '_'))
			return false;
	return true;
}

bool ctl_valid_name(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	return n >= 1 && n <= 255 && name[0] != '.' && !strchr(name, '/');
}
