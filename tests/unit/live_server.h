/* SPDX-License-Identifier: Apache-2.0 */
/*
 * live_server.h - the local servers (scripts/daytona-local, vercel-local)
 * for the C tests that talk to one: started on a free port with a fresh
 * data folder, its /_local control calls, and stopped with the folder gone.
 * Shared by smoke_daytona.c, smoke_exec.c and test_vercel_live.c.
 */
#ifndef DAYTONAFS_LIVE_SERVER_H
#define DAYTONAFS_LIVE_SERVER_H

#include <sys/types.h>

struct http_client;
struct strbuf;

struct live_server {
	pid_t pid;
	char data_dir[64];
	char api[512];          /* the first line the server prints: its API URL */
	char base[512];         /* http://127.0.0.1:PORT, where /_local lives */
};

/* Runs SOURCE_ROOT/scripts/SCRIPT --port 0 --data DIR ARGS... (args ends with
 * NULL) and waits for the URL it prints. 0, or -1 (call live_server_stop). */
int live_server_start(struct live_server *ls, const char *script, const char *const *args);
/* Stops the server and removes its data folder; safe after a failed start. */
void live_server_stop(struct live_server *ls);
/* A /_local call (json may be NULL): the status, or -1. body (may be NULL)
 * gets the answer. */
int live_local_call(struct http_client *hc, const char *base, const char *method, const char *path,
		    const char *json, struct strbuf *body);

#endif
