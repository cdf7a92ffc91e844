/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec.h - commands run in sandboxes, with their output as files.
 *
 * The toolbox's own ways of running commands lose information (/process/execute
 * merges stdout and stderr; session logs add newlines and drop NULs), so each
 * command runs detached under a small wrapper script that redirects its
 * streams to files in the sandbox, in STATE_DIR/cmd/N/ (STATE_DIR defaults to
 * /tmp/.daytonafs):
 *   command   the command text, byte for byte
 *   run       the wrapper script
 *   stdout, stderr   the streams, byte for byte
 *   wpid, pgid   the wrapper's pid and the command's process group (for kill)
 *   exit      the exit status, written when it ends (128+signal when killed by
 *             one, 124 when its timeout ended it, 137 when its processes
 *             vanished with a restart of the sandbox); written last, atomically
 *   state     "killed" or "timedout" when it ended that way
 *   stdin.pipe   a FIFO: the command's standard input. A holder process
 *             (pid in stdin.holder) keeps it open, so the command sees EOF
 *             only once stdin is closed (stdin.eof records that).
 *   end.pipe  a FIFO on which the wrapper says "end STATUS" as soon as the
 *             command has ended (just before it writes exit), to wake the
 *             launcher that waits for a quick end (exec_options.wait_ms).
 * One /process/execute starts it. Output is read with ranged downloads, and a
 * single listing of cmd/N tells the sizes of both streams and whether it ended,
 * so waiting costs one request per poll, and polls back off from poll_min_ms to
 * poll_max_ms while nothing changes (poll_max_ms bounds the delay a new line
 * takes to reach a waiting reader). History survives a remount: it is read
 * back from STATE_DIR/cmd in the sandbox.
 *
 * Thread-safe. Depends on the provider interface (provider.h) only.
 */
#ifndef DAYTONAFS_EXEC_H
#define DAYTONAFS_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "provider.h"

/* Where the commands' records live in the sandbox unless -o state_dir says
 * (the mount's own temporary uploads go under it too: fs_write.c). */
#define EXEC_STATE_DIR_DEFAULT "/tmp/.daytonafs"

struct exec_options {
	const char *state_dir;      /* in the sandbox; default EXEC_STATE_DIR_DEFAULT */
	long poll_min_ms;           /* default 50 */
	long poll_max_ms;           /* default 1000 */
	/* How long a listing of STATE_DIR/cmd is trusted before exec_list and
	 * exec_last read it again (commands started by other mounts appear
	 * then); default 5000. */
	long list_ttl_ms;
	/* How long the request that starts a command waits for it to end
	 * (default 200; 0: never). A command that ends within it comes back
	 * ended in the same answer, with its exit status and, up to
	 * inline_max bytes each (default 64 KiB), its stdout and stderr, which
	 * are then read from memory: exec and cat exit cost one request. */
	long wait_ms;
	size_t inline_max;
	/* Whether commands run by the helper program daytonafs-run where it
	 * is installed in the sandbox, and the mount installs it there (with
	 * a launch, once per sandbox and mount, on the machine it was built
	 * for: exec_helper.h); default true. false: by the wrapper script. */
	bool helper;
	/* Called by blocking waits every ~100 ms: true aborts the wait with -EINTR
	 * (the FUSE request was interrupted). May be NULL. */
	bool (*interrupted)(void);
	/* Called (from an exec thread) when a command is seen to have ended, so the
	 * caller can invalidate that sandbox's cached metadata. May be NULL. */
	void (*on_end)(void *ctx, const char *sandbox_id, unsigned n);
	/* Called to wake a poll() waiter registered by exec_poll; the handle is then
	 * owned by the callee (it notifies and destroys it). */
	void (*wake)(void *ctx, void *poll_handle);
	void *ctx;
};
void exec_options_defaults(struct exec_options *o);

struct exec_mgr;
struct exec_mgr *exec_mgr_new(struct sandbox_provider *sp, const struct exec_options *o);
void exec_mgr_free(struct exec_mgr *m);   /* stops the pollers; running commands keep running */

struct exec_spec {
	const char *command;        /* shell text, run by bash (sh when bash is missing) */
	const char *cwd;            /* NULL: the sandbox's work dir */
	long timeout_s;             /* 0: none; else killed (whole group) after it, state "timedout" */
	const struct sp_kv *env;
	size_t n_env;
	/* Ignored: every command's stdin is a pipe fed by exec_stdin_write and
	 * closed by exec_stdin_close (a command that must not wait for input can
	 * say "< /dev/null"). Kept for the "exec stdin -- ..." grammar. */
	bool with_stdin;
};

/* Starts a command; returns once it has started, with its number in *n. */
int exec_start(struct exec_mgr *m, const struct sp_box *box, const struct exec_spec *spec,
	       unsigned *n, struct sp_error *err);

/* The numbers of the sandbox's commands, ascending (malloc'd array). Reads the
 * sandbox's STATE_DIR/cmd the first time for each sandbox, then memory. */
int exec_list(struct exec_mgr *m, const struct sp_box *box, unsigned **ns, size_t *count,
	      struct sp_error *err);
/* The newest command's number, or -ENOENT when there is none. */
int exec_last(struct exec_mgr *m, const struct sp_box *box, unsigned *n, struct sp_error *err);
/* 0 when command n exists (in the list, or found in the sandbox now: another
 * mount may have started it), else -ENOENT. */
int exec_exists(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err);

enum exec_stream { EXEC_STDOUT = 0, EXEC_STDERR = 1 };
enum exec_state { EXEC_RUNNING, EXEC_EXITED, EXEC_KILLED, EXEC_TIMEDOUT };

struct exec_status {
	enum exec_state state;
	int exit_code;              /* valid unless RUNNING */
	uint64_t size[2];           /* bytes of stdout and stderr known so far */
	bool stdin_open;
};
const char *exec_state_name(enum exec_state s);  /* "running", "exited", "killed", "timed out" */

/* The status; with wait, blocks until the command has ended (interruptible). */
int exec_status(struct exec_mgr *m, const struct sp_box *box, unsigned n, bool wait,
		struct exec_status *st, struct sp_error *err);
/* exec_status without waiting, for the streams' sizes: an ended command's
 * are listed again once poll_max_ms old (a background child it left may
 * still write; the bytes held from the launch then give way to the file). */
int exec_sizes(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct exec_status *st,
	       struct sp_error *err);
/* Reads a stream at off. With block, waits while the command runs and no
 * byte past off exists; returns 0 only at the end of a finished command's
 * stream. Returns bytes read, or a negative errno (-EINTR when interrupted). */
ssize_t exec_read(struct exec_mgr *m, const struct sp_box *box, unsigned n, enum exec_stream s,
		  char *buf, size_t size, uint64_t off, bool block, struct sp_error *err);
/* 1 when a read at off would not block (data past off, or the command ended),
 * else 0 and, when poll_handle is not NULL, remembers it and calls
 * o->wake(ctx, poll_handle) once that becomes true. off EXEC_POLL_END: only
 * the end counts (the exit file's readiness). */
#define EXEC_POLL_END UINT64_MAX
int exec_poll(struct exec_mgr *m, const struct sp_box *box, unsigned n, enum exec_stream s,
	      uint64_t off, void *poll_handle);
/* SIGTERM to the process group, SIGKILL after 2 s; state "killed". */
int exec_kill(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err);
/*
 * The command's standard input, as a pipe: a write is buffered (up to 1 MiB;
 * beyond that it waits) and a sender delivers the buffer into the command's
 * stdin with one request per batch. -EPIPE once stdin was closed or the
 * command ended (or a delivery found so), -EBADF for a command that has no
 * stdin pipe (started by an older daytonafs), or the sticky error of a
 * failed delivery.
 */
ssize_t exec_stdin_write(struct exec_mgr *m, const struct sp_box *box, unsigned n, const void *buf,
			 size_t size, struct sp_error *err);
/* Waits until everything written is in the command's stdin; its error. */
int exec_stdin_flush(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err);
/* Delivers what is buffered, then EOF. Idempotent. */
int exec_stdin_close(struct exec_mgr *m, const struct sp_box *box, unsigned n, struct sp_error *err);
/* The command text (malloc'd, NUL-terminated). */
int exec_command_text(struct exec_mgr *m, const struct sp_box *box, unsigned n, char **text,
		      size_t *len, struct sp_error *err);
/* Forgets a sandbox (it was deleted). */
void exec_forget_sandbox(struct exec_mgr *m, const char *sandbox_id);
/* The sandbox was seen stopped (or otherwise not running): its processes may
 * be gone, so the records of its running commands are checked against the
 * sandbox's processes the next time one is looked at; those whose processes
 * are gone end as "killed", exit 137. */
void exec_sandbox_stopped(struct exec_mgr *m, const char *sandbox_id);


/* ---- internals, exposed for the unit tests (tests/unit/test_exec.c) ----- */

struct strbuf;

/* What one listing of STATE_DIR/cmd/N says. */
struct exec_listing {
	bool ended;                 /* "exit" exists (written last, atomically) */
	bool has_state;             /* "state" exists: killed or timed out */
	bool has_pgid;
	bool with_stdin;            /* "stdin.pipe" exists */
	bool stdin_eof;             /* "stdin.eof" exists: stdin was closed */
	uint64_t size[2];           /* stdout, stderr (0 when missing) */
};
void exec_parse_listing(const struct sp_fileinfo *fi, size_t n, struct exec_listing *out);
/* A command directory's name: decimal, no sign, no leading zero, > 0. */
bool exec_parse_cmd_name(const char *name, unsigned *n);
/* The exit file ("3\n"): 0 and *code, or -EINVAL. */
int exec_parse_exit(const char *text, size_t len, int *code);
/* The state of an ended command from its state file (NULL: none). */
enum exec_state exec_parse_state(const char *text, size_t len);
/* The next poll interval. While someone waits: min after a change, else
 * doubling up to max. While nobody waits (a command of this mount, polled
 * only to notice its end): doubling up to idle_max, whatever changes. */
long exec_backoff(long cur_ms, bool changed, bool waiting, long min_ms, long max_ms, long idle_max_ms);
/* The wrapper script (run by sh with the command directory as $1). -EINVAL
 * for an environment key that is not [A-Za-z_][A-Za-z0-9_]*. */
int exec_build_wrapper(struct strbuf *sb, const struct exec_spec *spec);
/* The text of the one /process/execute that starts a command: creates
 * STATE_DIR/cmd/N (N = first, or the next free number), writes the command
 * and the wrapper, starts the wrapper detached, and prints
 * "daytonafs-started N" (or "daytonafs-error WHAT"). token (1 to 64 of
 * [A-Za-z0-9_-], unique per start) makes it idempotent: a second run with
 * the same token (a request the proxy re-sent) starts nothing and prints
 * what the first printed. -EINVAL for a bad token or environment key. */
int exec_build_launcher(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			const struct exec_spec *spec);
/*
 * The launcher with the fast path (exec_build_launcher is this with
 * wait_ms 0 and first > 0). first 0: the launcher takes the number after
 * the highest in STATE_DIR/cmd, and prints those numbers
 * ("daytonafs-have N" lines, then "daytonafs-have-end"), so the mount
 * learns the history in the same request. wait_ms > 0: after
 * "daytonafs-started N" it waits up to about wait_ms for the command to
 * end; if it has, it prints "daytonafs-exit CODE [STATE]", then for stdout
 * and stderr "daytonafs-STREAM SIZE" followed, when SIZE <= inline_max and
 * base64(1) exists, by the stream in base64, and last
 * "daytonafs-inline-end". The recorded answer that a replay prints stays
 * "daytonafs-started N" alone.
 */
int exec_build_launcher_ex(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			   const struct exec_spec *spec, long wait_ms, size_t inline_max);
/* The same, where the provider may kill what the script left behind in its
 * process group (no SP_CAP_EXEC_DETACHED): the wrapper then gets a session
 * of its own by setsid, a process more. */
int exec_build_launcher_own(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			    const struct exec_spec *spec, long wait_ms, size_t inline_max, bool detached);
/*
 * The helper program daytonafs-run (src/helper/daytonafs_run.c, built into
 * the mount: exec_helper.h) as a launcher knows it. Where STATE_DIR/bin/run-ID
 * is there (a file of the sandbox's user, executable), the launcher runs the
 * command with it instead of the wrapper script (two program starts fewer
 * before a short command's end); where it is not, by the wrapper, and, when
 * bin is given and the sandbox's machine is arch, it installs it in the
 * background for the next commands (written under another name, checked to
 * run, renamed into place: a half-made helper is never run).
 */
struct exec_helper {
	const char *id;             /* NULL or "": no helper, the wrapper runs every command */
	const char *arch;           /* the machine it runs on, as uname -m (and bash's HOSTTYPE) say */
	const void *bin;            /* its bytes, to install where it is not; NULL: only use it */
	size_t len;
};
/* exec_build_launcher_own with a helper (NULL: none): 0, or 1 when the
 * script carries its install (bin given, and the command can run by it). */
int exec_build_launcher_with(struct strbuf *sb, const char *state_dir, unsigned first, const char *token,
			     const struct exec_spec *spec, long wait_ms, size_t inline_max, bool detached,
			     const struct exec_helper *helper);
/* The kill script: prints "daytonafs-killed" or "daytonafs-ended". A record
 * whose wrapper is gone (the sandbox restarted) is ended as killed, 137,
 * without signalling anything. token (or NULL): a replay of the request
 * prints the first run's answer and does nothing else. 0, -EINVAL (token),
 * -ENOMEM. */
int exec_build_kill(struct strbuf *sb, const char *cmd_dir, const char *token);
/* Parses the launcher's output: 0 and *n, -ENOENT (no such cwd), else -EIO. */
int exec_parse_launch(const char *output, unsigned *n);
/* What the launcher's output says beyond the number. */
struct exec_launch_result {
	unsigned n;
	unsigned *have;             /* "daytonafs-have" numbers (malloc'd), when listed */
	size_t n_have;
	bool listed;                /* the have lines came, up to their end line */
	bool ended;                 /* the command ended within the wait; then: */
	enum exec_state state;
	int exit_code;
	uint64_t size[2];           /* the streams' final sizes */
	bool inline_ok[2];          /* data[s] holds exactly size[s] bytes */
	char *data[2];              /* malloc'd (NULL when not inline) */
	/* "daytonafs-nohelper": the launcher looked for the helper, found
	 * none where it could run one, and brought no install. */
	bool no_helper;
};
/* Parses all of it: 0 (started; the rest as far as it is whole: an inline
 * section without its end line, or with a size that does not parse, is
 * left out, and a stream whose bytes do not decode to its size is not
 * inline), -ENOENT (no such cwd), else -EIO. */
int exec_parse_launch_result(const char *output, struct exec_launch_result *r);
void exec_launch_result_free(struct exec_launch_result *r);
/* The script that puts data into cmd_dir's stdin pipe; it prints
 * "daytonafs-written", or "daytonafs-ended", "daytonafs-closed",
 * "daytonafs-nostdin", "daytonafs-failed" (the write failed: the command
 * went away while it was written). batch_id (as a launcher token, unique
 * per batch) makes it idempotent: a second run with it feeds nothing and
 * prints what the first printed. done_id (may be NULL): the batch before,
 * answered, whose record can go. */
int exec_build_stdin_write(struct strbuf *sb, const char *cmd_dir, const char *batch_id, const char *done_id,
			   const void *data, size_t len);
/* The script that closes the stdin of cmd_dir (EOF): "daytonafs-closed". */
void exec_build_stdin_close(struct strbuf *sb, const char *cmd_dir);
/* The reply of either: 0 (written, closed), -EPIPE (ended, closed, failed),
 * -EBADF (nostdin), else -EIO. */
int exec_parse_stdin_reply(const char *output);
/* The script that ends the records of STATE_DIR whose wrapper is no longer
 * running (killed, 137), printing "daytonafs-orphan N" for each, then
 * "daytonafs-reconciled". */
void exec_build_reconcile(struct strbuf *sb, const char *state_dir);
/* Calls fn for each N of "daytonafs-orphan N" in output; 0, or -EIO when the
 * final "daytonafs-reconciled" is missing. */
int exec_parse_reconcile(const char *output, void (*fn)(void *ctx, unsigned n), void *ctx);

#endif
