/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec_helper.h - the helper program daytonafs-run (src/helper/daytonafs_run.c)
 * as built into the mount, for the launcher to install in a sandbox and run
 * commands with (exec_script.c). The bytes are generated at build time
 * (src/helper/embed.py); exec_helper_len is 0 when the build could not make
 * them (no musl-gcc), and every command then runs by the wrapper script.
 */
#ifndef DAYTONAFS_EXEC_HELPER_H
#define DAYTONAFS_EXEC_HELPER_H

#include <stddef.h>

extern const unsigned char exec_helper_bin[];
extern const size_t exec_helper_len;
extern const char exec_helper_id[];     /* 16 hex digits of its SHA-256; "" when none */
extern const char exec_helper_arch[];   /* the machine it runs on, as uname -m says */

#endif
