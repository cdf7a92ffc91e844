/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_provider.h - the Vercel client as a sandbox_provider, and the pure
 * pieces of the adapter (unit-tested). Included by provider.c and the tests
 * only.
 */
#ifndef DAYTONAFS_VERCEL_PROVIDER_H
#define DAYTONAFS_VERCEL_PROVIDER_H

#include "provider.h"
#include "vercel.h"

/* The provider over hc (not owned); NULL with a message in errbuf when the
 * credentials are incomplete or memory ran out. */
struct sandbox_provider *vercel_provider_new(struct http_client *hc, const struct provider_config *cfg,
					     char *errbuf, size_t errlen);

/* The mount's state name for a Vercel session status ("running" -> "started"). */
const char *vercel_state_name(const char *status);

/* The shell script every command runs under: $1 is the script; prints its
 * merged output as base64, then a line ".STATUS". */
extern const char vercel_exec_wrapper[];
/* The wrapper's output back to the script's exit status and output
 * (malloc'd, NUL-terminated). -EIO when the status line is missing or the
 * base64 is bad (the output is not whole). */
int vercel_exec_decode(const char *text, size_t len, int *status, char **output);

/* sp_create_params to Vercel's create parameters (env and tags: arrays of
 * n_env and n_labels the caller gives). -EINVAL, with a message, for what
 * Vercel does not have (memory, disk, gpu, target, user, volumes, public,
 * autoarchive, autodelete). */
int vercel_create_params(const struct sp_create_params *p, struct vc_create_params *vp, struct vc_kv *env,
			 struct vc_kv *tags, struct sp_error *err);

#endif
