/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

static enum log_level current_level = LOG_LVL_WARN;
static bool to_syslog;

void log_init(enum log_level level, bool use_syslog)
{
	current_level = level;
	to_syslog = use_syslog;
	if (use_syslog)
		openlog("daytonafs", LOG_PID, LOG_DAEMON);
}

void log_set_level(enum log_level level)
{
	current_level = level;
}

bool log_enabled(enum log_level level)
{
	return level <= current_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[2048];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (to_syslog) {
		syslog(prio[level], "%s", line);
		return;
	}
	/* One fprintf per line so that lines from several threads do not interleave. */
	fprintf(stderr, "daytonafs: %s: %s\n", names[level], line);
}
