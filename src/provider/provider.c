/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provider.c - what every provider shares: making the provider a mount
 * names, and the errors of the interface (provider.h).
 */
#include "provider.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daytona.h"

struct sandbox_provider *provider_open(const char *name, struct http_client *hc, const struct provider_config *cfg)
{
	if (strcmp(name, "daytona") == 0)
		return daytona_provider_new(hc, cfg);
	return NULL;
}

void provider_close(struct sandbox_provider *sp)
{
	if (!sp)
		return;
	if (sp->ops->free)
		sp->ops->free(sp->impl);
	free(sp);
}

int sp_unsupported(struct dt_error *err, const char *what)
{
	return dt_error_set(err, -ENOSYS, 0, "%s is not supported by this provider", what);
}

int dt_error_set(struct dt_error *err, int rc, long http_status, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return rc;
	err->http_status = http_status;
	err->err = rc < 0 ? -rc : rc;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return rc;
}

bool dt_error_transient(const struct dt_error *err)
{
	if (!err)
		return false;
	if (err->http_status >= 500 || err->http_status == 429)
		return true;
	switch (err->err) {
	case EAGAIN:
	case ECONNRESET:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	case ETIMEDOUT:
		/* 408: the sandbox ran the command out of its own time limit. */
		return err->http_status != 408;
	default:
		return false;
	}
}
