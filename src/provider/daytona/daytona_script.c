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
 * sent behind one line that reads the rest in bulk and evals it: zsh's
 * sysread builtin (64 KiB a read), bash's read -N (which reads a pipe in
 * blocks). Any other sh reads on: dash already reads in blocks.
 *
 * The reader is only trusted whole: under zsh, sysread tells the end of
 * the input (status 5) from an error, and a script cut short is not run.
 * bash's read cannot tell them apart; a cut script then runs as far as it
 * parses, as it would have run without the reader. Either way the
 * script's exit status is the shell's, as before; the scripts sent here
 * never read their own stdin, which the reader leaves at its end.
 */
#include "daytona_int.h"

#include <errno.h>
#include <string.h>

/* Below this, reading byte by byte costs less than the reader itself
 * (a module load under zsh). */
#define BULK_READ_MIN 1024

/* One line that zsh, bash and dash all parse: each shell's own words are
 * inside eval strings, parsed only by the shell that runs them, and zsh's
 * only after its module loaded (dash would die on their syntax, and a
 * ZSH_VERSION or BASH_VERSION can come from the environment). The pieces
 * are joined once (${(j::)...}): appending to one string would copy it
 * again at every read. A read that fails before any input (bash before
 * 4.1 has no -N; another shell that inherited BASH_VERSION) falls through
 * to reading line by line. A status is kept with || so that errexit (an
 * exported SHELLOPTS) does not end the shell at the end of input, and the
 * text is not exported (allexport would put it in the environment of every
 * program the script starts: over 128 KiB, none would start). */
static const char bulk_reader[] =
	"if [ -n \"${ZSH_VERSION-}\" ] && eval 'zmodload -F zsh/system b:sysread' 2>/dev/null; then eval '"
	"_dfp=(); while :; do _dfz=0; sysread -s 65536 _dfr || _dfz=$?; [ $_dfz = 0 ] || break; "
	"_dfp+=(\"$_dfr\"); done; "
	"[ $_dfz = 5 ] || { echo \"daytonafs: script cut short\" >&2; exit 125; }; "
	"_dfr=${(j::)_dfp}; unset _dfp _dfz; typeset +x _dfr; eval \"$_dfr\"; exit'; "
	"elif [ -n \"${BASH_VERSION-}\" ]; then _dfz=0; IFS= read -r -N 2147483647 _dfr 2>/dev/null || _dfz=$?; "
	"if [ $_dfz -le 1 ]; then unset _dfz; export -n _dfr; eval \"$_dfr\"; exit; fi; unset _dfz; "
	"fi\n";

int dt_execute_text(struct strbuf *sb, const char *script)
{
	if (strlen(script) >= BULK_READ_MIN)
		sb_adds(sb, bulk_reader);
	sb_adds(sb, script);
	return sb->oom ? -ENOMEM : 0;
}
