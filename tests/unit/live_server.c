/* SPDX-License-Identifier: Apache-2.0 */
/*
 * live_server.c - starting, calling and stopping a local server for the
 * C tests that need one (live_server.h).
 */
#include "live_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.h"
#include "strbuf.h"

#ifndef SOURCE_ROOT
#define SOURCE_ROOT "."      /* built by hand: run from the repository root */
#endif

int live_server_start(struct live_server *ls, const char *script, const char *const *args)
{
	const char *argv[32];
	char path[512], *slash;
	size_t n = 0;
	int pfd[2];
	FILE *f;

	memset(ls, 0, sizeof(*ls));
	snprintf(ls->data_dir, sizeof(ls->data_dir), "/tmp/%s-data-XXXXXX", script);
	if (!mkdtemp(ls->data_dir)) {
		ls->data_dir[0] = '\0';
		return -1;
	}
	snprintf(path, sizeof(path), "%s/scripts/%s", SOURCE_ROOT, script);
	argv[n++] = script;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--data";
	argv[n++] = ls->data_dir;
	for (; args && *args && n < sizeof(argv) / sizeof(argv[0]) - 1; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (pipe(pfd) != 0)
		return -1;
	ls->pid = fork();
	if (ls->pid < 0)
		return -1;
	if (ls->pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execv(path, (char *const *)argv);
		perror(path);
		_exit(127);
	}
	close(pfd[1]);
	/* The pipe stays open (the server may print more); closed at exit. */
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(ls->api, sizeof(ls->api), f))
		return -1;
	ls->api[strcspn(ls->api, "\r\n")] = '\0';
	str_copy(ls->base, sizeof(ls->base), ls->api);
	slash = strncmp(ls->base, "http://", 7) == 0 ? strchr(ls->base + 7, '/') : NULL;
	if (slash)
		*slash = '\0';
	return 0;
}

void live_server_stop(struct live_server *ls)
{
	char cmd[128];

	if (ls->pid > 0) {
		kill(ls->pid, SIGTERM);
		waitpid(ls->pid, NULL, 0);
		ls->pid = 0;
	}
	if (ls->data_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ls->data_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", ls->data_dir);
		ls->data_dir[0] = '\0';
	}
}

int live_local_call(struct http_client *hc, const char *base, const char *method, const char *path,
		    const char *json, struct strbuf *body)
{
	struct strbuf url = STRBUF_INIT;
	struct http_request req = { .method = method, .content_type = "application/json" };
	struct http_response resp;
	char eb[256];
	int rc;

	sb_addf(&url, "%s%s", base, path);
	req.url = sb_str(&url);
	req.body = json;
	req.body_len = json ? strlen(json) : 0;
	rc = http_do(hc, &req, &resp, eb, sizeof(eb));
	if (rc == 0) {
		rc = (int)resp.status;
		if (body && resp.body)
			sb_add(body, resp.body, resp.body_len);
	} else {
		fprintf(stderr, "local call %s: %s\n", path, eb);
		rc = -1;
	}
	http_response_free(&resp);
	sb_free(&url);
	return rc;
}
