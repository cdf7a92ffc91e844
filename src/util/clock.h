/* SPDX-License-Identifier: Apache-2.0 */
/*
 * clock.h - the monotonic clock in milliseconds, and sleeping, for every
 * layer: the waits for a state, the backoffs before a request is sent again.
 */
#ifndef DAYTONAFS_CLOCK_H
#define DAYTONAFS_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC, in milliseconds. */
int64_t clock_mono_ms(void);
/* Sleeps ms milliseconds, all of them: a signal does not cut the sleep short. */
void sleep_ms(long ms);

#endif
