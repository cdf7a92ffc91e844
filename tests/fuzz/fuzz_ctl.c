/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_ctl.c - libFuzzer target for the ctl grammar.
 *
 *   CC=clang meson setup /tmp/build-fuzz -Dfuzz=true -Db_sanitize=address,undefined
 *   ninja -C /tmp/build-fuzz fuzz_ctl
 *   /tmp/build-fuzz/fuzz_ctl -max_total_time=120 /tmp/corpus tests/fuzz/ctl_seeds
 *
 * The input is one line, parsed in each of the three scopes. Beyond "no
 * crash, no leak, no UB", it checks what callers rely on: the return codes,
 * the message contract (empty on success, one printable line on failure),
 * the verbs allowed in each scope, the integer ranges, and that an exec
 * command is a non-empty verbatim piece of the input.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool verb_in_scope(enum ctl_verb v, enum ctl_scope s)
{
	switch (v) {
	case CTL_NONE:
		return true;
	case CTL_CREATE:
		return s == CTL_SCOPE_ROOT;
	case CTL_KILL:
		return s != CTL_SCOPE_ROOT;
	case CTL_CLOSE_STDIN:
		return s == CTL_SCOPE_COMMAND;
	default:
		return s == CTL_SCOPE_SANDBOX;
	}
}

static void check(const uint8_t *data, size_t size, enum ctl_scope scope)
{
	struct ctl_command c;
	char err[256];
	int r = ctl_parse((const char *)data, size, scope, &c, err, sizeof(err));

	if (r != 0 && r != -EINVAL && r != -ENOMEM)
		abort();
	if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	if (r == 0) {
		if (err[0] || !verb_in_scope(c.verb, scope))
			abort();
	} else {
		if (!err[0] || c.verb != CTL_NONE)
			abort();
		for (const char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort();
	}
	if (c.verb == CTL_EXEC) {
		if (!c.command || !c.command[0] || c.command[0] == ' ' || c.command[0] == '\t')
			abort();
		if (!memmem(data, size, c.command, strlen(c.command)))
			abort();
		if (c.timeout_s < 0 || c.timeout_s > INT_MAX)
			abort();
		for (size_t i = 0; i < c.n_env; i++)
			if (!ctl_valid_env_key(c.env[i].key))
				abort();
	}
	if ((c.verb == CTL_CREATE || c.verb == CTL_SNAPSHOT) && !ctl_valid_name(c.name))
		abort();
	if (c.cpu != CTL_UNSET && c.cpu < 1)
		abort();
	if (c.memory != CTL_UNSET && c.memory < 1)
		abort();
	if (c.disk != CTL_UNSET && c.disk < 1)
		abort();
	if (c.gpu != CTL_UNSET && c.gpu < 0)
		abort();
	if (c.verb == CTL_RESIZE && c.cpu == CTL_UNSET && c.memory == CTL_UNSET && c.disk == CTL_UNSET)
		abort();
	if (c.verb == CTL_KILL && c.kill_n < 0)
		abort();
	if (c.minutes != CTL_MINUTES_UNSET && (c.minutes < -1 || c.minutes > INT_MAX))
		abort();
	if (c.autodelete != CTL_MINUTES_UNSET && c.autodelete < -1)
		abort();
	if ((c.autostop != CTL_MINUTES_UNSET && c.autostop < 0) ||
	    (c.autoarchive != CTL_MINUTES_UNSET && c.autoarchive < 0))
		abort();
	if (c.verb == CTL_LABEL && c.n_labels == 0)
		abort();
	if (c.verb == CTL_UNLABEL && c.n_keys == 0)
		abort();
	for (size_t i = 0; i < c.n_keys; i++)
		if (!c.keys[i][0] || strchr(c.keys[i], '='))
			abort();
	for (size_t i = 0; i < c.n_volumes; i++)
		if (!c.volumes[i].key[0] || c.volumes[i].value[0] != '/')
			abort();
	ctl_command_free(&c);
}

/* A line terminator changes nothing: the same result, message and command. */
static void check_terminator(const uint8_t *data, size_t size)
{
	struct ctl_command a, b;
	char ea[256], eb[256];
	uint8_t *nl;
	int ra, rb;

	if (size && (data[size - 1] == '\n' || data[size - 1] == '\r'))
		return;
	nl = malloc(size + 2);
	if (!nl)
		return;
	if (size)
		memcpy(nl, data, size);
	nl[size] = '\r';
	nl[size + 1] = '\n';
	ra = ctl_parse((const char *)data, size, CTL_SCOPE_SANDBOX, &a, ea, sizeof(ea));
	rb = ctl_parse((const char *)nl, size + 2, CTL_SCOPE_SANDBOX, &b, eb, sizeof(eb));
	if (ra != rb || strcmp(ea, eb) || a.verb != b.verb)
		abort();
	if (a.verb == CTL_EXEC && strcmp(a.command, b.command))
		abort();
	ctl_command_free(&a);
	ctl_command_free(&b);
	free(nl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size, CTL_SCOPE_ROOT);
	check(data, size, CTL_SCOPE_SANDBOX);
	check(data, size, CTL_SCOPE_COMMAND);
	check_terminator(data, size);
	return 0;
}
