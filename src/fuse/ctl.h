/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctl.h - the command grammar of the ctl files: one line in, one command out.
 * Pure (no I/O), unit-tested and fuzzed.
 *
 * A line is words separated by blanks. Words may be quoted as in a shell:
 * 'single' (literal), "double" (backslash escapes \" \\ \$ \` and \n), and a
 * backslash outside quotes escapes the next byte. A line that is empty or
 * starts with '#' is a no-op (CTL_NONE).
 *
 * Root ctl (scope CTL_SCOPE_ROOT):
 *   create NAME [key=value | flag ...]
 *     keys: snapshot image cpu memory disk gpu language target user
 *           env.K=V label.K=V autostop autoarchive autodelete volume=ID:/path
 *           network=block-all network-allow=CIDR[,CIDR...]
 *     flags: ephemeral public
 * Sandbox ctl (CTL_SCOPE_SANDBOX):
 *   exec [cwd=DIR] [timeout=SEC] [env.K=V]... [stdin] -- COMMAND...
 *   exec COMMAND...                 (no "--": the whole rest of the line, verbatim)
 *   kill [N] | start | stop | restart | archive | recover | delete
 *   snapshot NAME | resize [cpu=N] [memory=GIB] [disk=GIB] (at least one)
 *   autostop MIN | autoarchive MIN | autodelete MIN (autodelete may be -1)
 *   label KEY=VALUE [KEY=VALUE...] | unlabel KEY [KEY...]
 * Command ctl (CTL_SCOPE_COMMAND, cmd/N/ctl): kill | close-stdin
 *
 * The COMMAND text after "exec " or after "-- " is kept byte for byte (not
 * unquoted): it is for the sandbox's shell.
 *
 * Which exec form a line is: the options form only when the line has a
 * standalone, unquoted word "--" and every word between "exec" and it has
 * the form of an option: cwd=..., timeout=..., env.K=..., or stdin. Then
 * those are the options (a bad value in them, such as timeout=abc, is an
 * error) and the command is the rest after "--" and its blanks. Otherwise
 * the whole rest after "exec" and its blanks is the command, options and
 * "--" included: `exec FOO=1 make`, `exec cwd=/x ls` and `exec ls -- x` are
 * all commands, not options. Words are only split for this test; a quote
 * left open before any "--" makes the line a plain command (for the shell
 * to judge).
 *
 * Details: blanks are space and tab. A line with a NUL byte or an inner
 * newline is refused. Verbs are case-sensitive; an unknown one gets a
 * "did you mean" when it is a typo of a verb of that scope, and a verb of
 * another scope an error naming the ctl file it belongs in. Integers are
 * strict decimals (no sign but '-', no blanks, no trailing bytes) in
 * [1, INT_MAX] for cpu/memory/disk and kill N, [0, INT_MAX] for gpu,
 * minutes and timeout, [-1, INT_MAX] for autodelete. An option given twice
 * is an error (unlabel's keys excepted: repeats are dropped). create checks
 * language (python, javascript, typescript), that snapshot= and image= are
 * not both given, and that ephemeral is not beside autodelete=N (N != 0).
 */
#ifndef DAYTONAFS_CTL_H
#define DAYTONAFS_CTL_H

#include <stdbool.h>
#include <stddef.h>

enum ctl_scope { CTL_SCOPE_ROOT, CTL_SCOPE_SANDBOX, CTL_SCOPE_COMMAND };

enum ctl_verb {
	CTL_NONE = 0,
	CTL_CREATE,
	CTL_EXEC, CTL_KILL,
	CTL_START, CTL_STOP, CTL_RESTART, CTL_ARCHIVE, CTL_RECOVER, CTL_DELETE,
	CTL_SNAPSHOT, CTL_RESIZE,
	CTL_AUTOSTOP, CTL_AUTOARCHIVE, CTL_AUTODELETE,
	CTL_LABEL, CTL_UNLABEL,
	CTL_CLOSE_STDIN,
	CTL_EXTEND,                  /* extend MINUTES: more time for a running session (Vercel) */
};

struct ctl_pair {
	char *key;
	char *value;
};

#define CTL_UNSET (-1)

struct ctl_command {
	enum ctl_verb verb;
	char *name;                  /* create NAME, snapshot NAME */

	/* exec */
	char *command;               /* verbatim shell text */
	char *cwd;                   /* NULL when not given */
	long timeout_s;              /* CTL_UNSET when not given; 0: none */
	bool with_stdin;             /* "stdin" flag: accepted; every command's stdin is open for cmd/N/stdin */
	struct ctl_pair *env;        /* env.K=V, K validated as [A-Za-z_][A-Za-z0-9_]* */
	size_t n_env;

	/* kill */
	long kill_n;                 /* 0 = the newest command */

	/* resize and create resources: CTL_UNSET when not given */
	int cpu, memory, disk, gpu;

	/* autostop/autoarchive/autodelete, and create's autostop= etc. (CTL_MINUTES_UNSET when not given) */
	long minutes;
	long autostop, autoarchive, autodelete;

	/* create */
	char *snapshot, *image, *language, *target, *user;
	struct ctl_pair *labels;     /* create label.K=V, and label K=V */
	size_t n_labels;
	struct ctl_pair *volumes;    /* key = volume id/name, value = mount path */
	size_t n_volumes;
	bool ephemeral, is_public;
	bool network_block_all;      /* network=block-all */
	char *network_allow;         /* network-allow=CIDR[,CIDR...] (checked) */
	bool persistent;             /* Vercel's name for "not ephemeral" (its default) */
	int *ports;                  /* port=N, repeatable (Vercel: ports to expose) */
	size_t n_ports;

	/* unlabel */
	char **keys;
	size_t n_keys;
};

#define CTL_MINUTES_UNSET (-2147483647L - 1)

/*
 * Parses one line (len bytes, no trailing newline needed; a trailing "\n" or
 * "\r\n" is ignored). Returns 0 and fills out, or -EINVAL and writes a
 * one-line message for the user into err (e.g. "resize: cpu must be a
 * positive integer, got 'x'"), or -ENOMEM. out must be freed with
 * ctl_command_free in every case.
 */
int ctl_parse(const char *line, size_t len, enum ctl_scope scope, struct ctl_command *out,
	      char *err, size_t errlen);
void ctl_command_free(struct ctl_command *c);

/* The canonical name of a verb, e.g. "exec". */
const char *ctl_verb_name(enum ctl_verb v);

/* Validation helpers shared with the rest of daytonafs. */
bool ctl_valid_env_key(const char *key);
/* The name when k (n bytes) is one a command's environment cannot be given
 * (exec's env.K=V, the lines of NAME/env), else NULL: IFS would change how
 * the wrapper splits words; the others are read-only in bash (an
 * assignment fails, and in POSIX mode ends the shell that makes it) or, as
 * GROUPS, silently ignored. PATH and the rest are variables like any other. */
const char *ctl_env_key_reserved(const char *k, size_t n);
/* Sandbox and snapshot names: 1..255 bytes, no '/', no NUL, not "." or "..",
 * not starting with '.'. */
bool ctl_valid_name(const char *name);

/* Whether list is a comma-separated list of 1 to CTL_ALLOW_LIST_MAX IPv4
 * CIDRs (a.b.c.d/0..32), as Daytona's networkAllowList; -1 with a message
 * in err when not (ctl_create.c). */
#define CTL_ALLOW_LIST_MAX 10
int ctl_check_allow_list(const char *list, char *err, size_t errlen);

#endif
