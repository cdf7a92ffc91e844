/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ratelimit.h - a token bucket that keeps a client under a request quota.
 *
 * Vercel counts every control-plane request (commands, file reads...) against
 * a per-minute quota (1,000 on the smallest plan). The bucket holds `burst`
 * tokens and refills at (per_minute - burst) a minute, so that no window of
 * 60 s carries more than per_minute requests: the burst plus one minute of
 * refill. A request takes a token; without one it waits until its token is
 * due. Tokens are reserved at once, so waiters are served in order.
 */
#ifndef DAYTONAFS_RATELIMIT_H
#define DAYTONAFS_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct rate_limiter {
	pthread_mutex_t lock;
	bool enabled;
	double capacity;            /* burst */
	double per_ms;              /* refill, tokens a millisecond */
	double tokens;              /* may go negative: reserved by waiters */
	int64_t last_ms;            /* when tokens was last brought up to date */
};

/* per_minute <= 0 disables the limiter. burst <= 0 picks per_minute / 20
 * (at least 1); it is capped at per_minute - 1 so that the refill stays > 0. */
void rl_init(struct rate_limiter *rl, int per_minute, int burst);
void rl_destroy(struct rate_limiter *rl);

/* Takes a token at time now_ms; returns how many ms the caller must wait
 * before using it (0 = now). Pure arithmetic on the bucket: unit-tested. */
long rl_reserve(struct rate_limiter *rl, int64_t now_ms);

/* rl_reserve at the monotonic clock, then sleeps the wait. Returns the ms
 * waited. */
long rl_acquire(struct rate_limiter *rl);

#endif
