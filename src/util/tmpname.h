/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tmpname.h - names for temporary files in the sandbox. Two mounts of one
 * sandbox may run in daemons with the same pid (each in its own container),
 * so pid and a count are not enough: every name also carries 64 random bits.
 */
#ifndef DAYTONAFS_TMPNAME_H
#define DAYTONAFS_TMPNAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 64 random bits (getrandom; a mix of clock and counter if it fails). */
uint64_t tmp_random(void);
/* "<prefix>.<pid>.<16 hex rnd>.<seq>" into out; false if it does not fit. */
bool tmp_name_from(char *out, size_t cap, const char *prefix, long pid, uint64_t rnd, unsigned long seq);
/* tmp_name_from with this process's pid, fresh random bits and a count. */
bool tmp_name(char *out, size_t cap, const char *prefix);

#endif
