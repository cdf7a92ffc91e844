/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ratelimit.c - a token bucket (see ratelimit.h).
 */
#include "ratelimit.h"

#include "clock.h"

void rl_init(struct rate_limiter *rl, int per_minute, int burst)
{
	pthread_mutex_init(&rl->lock, NULL);
	rl->enabled = per_minute > 0;
	if (!rl->enabled)
		return;
	if (burst <= 0)
		burst = per_minute / 20;
	if (burst < 1)
		burst = 1;
	if (burst >= per_minute)
		burst = per_minute > 1 ? per_minute - 1 : 1;
	rl->capacity = burst;
	/* A quota of 1 a minute still refills: one token a minute. */
	rl->per_ms = (per_minute > burst ? per_minute - burst : 1) / 60000.0;
	rl->tokens = rl->capacity;
	rl->last_ms = -1;
}

void rl_destroy(struct rate_limiter *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

long rl_reserve(struct rate_limiter *rl, int64_t now_ms)
{
	long wait = 0;

	if (!rl->enabled)
		return 0;
	pthread_mutex_lock(&rl->lock);
	if (rl->last_ms >= 0 && now_ms > rl->last_ms) {
		rl->tokens += (double)(now_ms - rl->last_ms) * rl->per_ms;
		if (rl->tokens > rl->capacity)
			rl->tokens = rl->capacity;
	}
	if (rl->last_ms < 0 || now_ms > rl->last_ms)
		rl->last_ms = now_ms;
	rl->tokens -= 1.0;
	if (rl->tokens < 0) {
		double w = -rl->tokens / rl->per_ms;

		wait = (long)w;
		if ((double)wait < w)
			wait++;     /* round up: never early */
	}
	pthread_mutex_unlock(&rl->lock);
	return wait;
}

long rl_acquire(struct rate_limiter *rl)
{
	long wait = rl_reserve(rl, clock_mono_ms());

	sleep_ms(wait);
	return wait;
}
