/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daytona_script.c - the text sent as /process/execute's "command".
 *
 * The daemon starts the sandbox's shell (zsh in Daytona's default image,
 * bash in the slim one) and feeds it the command on its stdin, a pipe
 * (FIDELITY: process/execute.go). zsh and bash read a script from a pipe
 * one byte per read(2), so as to leave the rest to the commands it runs:
 * about 0.3 us a byte here, 1.5 ms for the 5 KB of an exec launcher, a
 * second and more for a stdin batch of 1 MiB. A long script is therefore
 * sent behind one line that reads the rest in bulk and runs it. Any other
 * sh reads on: dash already reads in blocks.
 *
 * - bash sources /dev/stdin: its "." reads a file that is not a regular
 *   one whole, in blocks, before it runs a line of it.
 * - zsh reads it with $(</dev/stdin) (a builtin, in 64-byte reads) and
 *   evals it; from 64 KiB on with its sysread builtin, 64 KiB a read,
 *   whose module load then costs less than the reads it saves. zsh's "."
 *   would be quicker still, but it runs a file as it reads it, 8 KiB at a
 *   time: a program the script starts would read the rest of the script.
 *
 * The small reader costs 0.6 ms over a bare "true" for 2 KB under zsh, the
 * sysread one 1.5 ms (its own line, 700 bytes, is read a byte at a time).
 * Each reads all of the script before it runs any of it. zsh's sysread
 * tells the end of the input (status 5) from an error, and a script cut
 * short is not run; bash's "." runs nothing after a failed read; zsh's
 * $(<...) takes an error for the end, which a pipe never gives (but
 * EINTR, which it reads again). The script's exit status is the shell's,
 * as before; a program it starts finds stdin at its end (the scripts sent
 * here never read their own stdin).
 */
#include "daytona_int.h"

#include <errno.h>
#include <string.h>

/* Below this, reading byte by byte costs less than the reader's own line
 * (about 300 bytes, read so). */
#define BULK_READ_MIN 512
/* From this on, zsh reads with sysread (see above). */
#define BULK_READ_SYSREAD 65536

/* Each reader is one line that zsh, bash and dash all parse: each shell's
 * own words are inside eval strings, parsed only by the shell that runs
 * them. A ZSH_VERSION or BASH_VERSION can come from the environment: zsh
 * is told by a builtin of its own (zmodload; dash answers 127, not
 * found), bash by shopt's status (0 or 1; dash's 127); another shell
 * reads on, line by line. [ -r /dev/stdin ]: a sandbox without it reads on
 * too. A status is kept with || so that errexit (an exported SHELLOPTS)
 * does not end the shell, and the text is not exported (allexport would
 * put it in the environment of every program the script starts). */
#define READER_BASH \
	"elif [ -n \"${BASH_VERSION-}\" ] && [ -r /dev/stdin ] && " \
	"eval 'shopt -q nullglob; [ $? -le 1 ]' 2>/dev/null; then . /dev/stdin; exit; fi\n"
#define READER_IF_ZSH \
	"if [ -n \"${ZSH_VERSION-}\" ] && [ -r /dev/stdin ] && zmodload -e zsh/main 2>/dev/null; then "

static const char small_reader[] =
	READER_IF_ZSH "eval '_dfsrc=$(</dev/stdin) || exit 125; typeset +x _dfsrc; eval \"$_dfsrc\"; exit'; "
	READER_BASH;

/* The pieces are joined once (${(j::)...}): appending to one string would
 * copy it again at every read. */
static const char large_reader[] =
	READER_IF_ZSH "zmodload -F zsh/system b:sysread && eval '"
	"_dfparts=(); while :; do _dfst=0; sysread -s 65536 _dfsrc || _dfst=$?; [ $_dfst = 0 ] || break; "
	"_dfparts+=(\"$_dfsrc\"); done; "
	"[ $_dfst = 5 ] || { echo \"daytonafs: script cut short\" >&2; exit 125; }; "
	"_dfsrc=${(j::)_dfparts}; unset _dfparts _dfst; typeset +x _dfsrc; eval \"$_dfsrc\"; exit'; "
	READER_BASH;

int dt_execute_text(struct strbuf *sb, const char *script)
{
	size_t len = strlen(script);

	if (len >= BULK_READ_SYSREAD)
		sb_adds(sb, large_reader);
	else if (len >= BULK_READ_MIN)
		sb_adds(sb, small_reader);
	sb_adds(sb, script);
	return sb->oom ? -ENOMEM : 0;
}
