/* SPDX-License-Identifier: Apache-2.0 */
/*
 * smoke_exec.c - exec.c against the local Daytona server (not a unit test:
 * it needs python3 and the server). Usage:
 *   smoke_exec [API_URL]
 * Without API_URL it starts scripts/daytona-local itself (API key "k").
 * Prints what it measures: the delay of a line to a waiting reader, the
 * requests a silent 10 s wait costs, throughput of a large output.
 */
#include "unit.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "daytona.h"
#include "exec.h"
#include "http.h"
#include "live_server.h"
#include "strbuf.h"

#ifndef SOURCE_ROOT
#define SOURCE_ROOT "."
#endif

static char api_url[256];
static char base_url[256];        /* without /api, for /_local */
static struct live_server server;
static struct http_client *hc;
static struct dt_client *dt;
static struct sandbox_provider *sp;   /* the same server, for exec.c */
static struct exec_mgr *em;
static struct sp_sandbox sbx[2];
static struct sp_box box[2];
static atomic_int ends;
static atomic_int wakes;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_end(void *ctx, const char *id, unsigned n)
{
	(void)ctx;
	(void)id;
	(void)n;
	atomic_fetch_add(&ends, 1);
}

static void on_wake(void *ctx, void *handle)
{
	(void)ctx;
	*(double *)handle = now_s();
	atomic_fetch_add(&wakes, 1);
}

/* ---- the server --------------------------------------------------------------- */

static int start_server(void)
{
	static const char *const args[] = { "--api-key", "k", "--transition-ms", "20", "--quiet", NULL };

	if (live_server_start(&server, "daytona-local", args) != 0)
		return -1;
	str_copy(api_url, sizeof(api_url), server.api);
	return 0;
}

static void stop_server(void)
{
	live_server_stop(&server);
}

/* GET or POST to /_local/...: the parsed JSON (or NULL). */
static cJSON *local_call(const char *method, const char *path)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *j = NULL;

	if (live_local_call(hc, base_url, method, path, NULL, &body) >= 0 && body.len)
		j = cJSON_Parse(sb_str(&body));
	sb_free(&body);
	return j;
}

static long stat_requests(cJSON *stats, const char *route)
{
	const cJSON *v;

	if (!route)
		v = cJSON_GetObjectItemCaseSensitive(stats, "requests");
	else
		v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(stats, "routes"), route);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

/* ---- helpers ----------------------------------------------------------------- */

static unsigned start_cmd(int which, const char *command, long timeout, bool with_stdin)
{
	struct exec_spec spec = { .command = command, .timeout_s = timeout, .with_stdin = with_stdin };
	struct sp_error err = { 0 };
	unsigned n = 0;
	int rc;

	rc = exec_start(em, &box[which], &spec, &n, &err);
	if (rc < 0)
		fprintf(stderr, "exec_start(%s): %d %s\n", command, rc, err.message);
	return rc < 0 ? 0 : n;
}

/* Reads a stream to its end (blocking), into sb. Returns 0 or an errno. */
static int read_all(int which, unsigned n, enum exec_stream s, struct strbuf *sb, size_t chunk)
{
	struct sp_error err = { 0 };
	char *buf = malloc(chunk);
	uint64_t off = 0;
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		got = exec_read(em, &box[which], n, s, buf, chunk, off, true, &err);
		if (got <= 0)
			break;
		if (sb)
			sb_add(sb, buf, (size_t)got);
		off += (uint64_t)got;
	}
	free(buf);
	if (got < 0)
		fprintf(stderr, "exec_read: %zd %s\n", got, err.message);
	return got < 0 ? (int)got : 0;
}

static int wait_status(int which, unsigned n, struct exec_status *st)
{
	struct sp_error err = { 0 };
	int rc = exec_status(em, &box[which], n, true, st, &err);

	if (rc < 0)
		fprintf(stderr, "exec_status: %d %s\n", rc, err.message);
	return rc;
}

/* ---- the tests ----------------------------------------------------------------- */

UNIT_TEST(core_example)
{
	struct strbuf out = STRBUF_INIT, errs = STRBUF_INIT;
	struct exec_status st;
	unsigned n;

	n = start_cmd(0, "exec python3 -c \"import sys; print(1); print(2, file=sys.stderr); sys.exit(3)\"",
		      0, false);
	CHECK(n > 0);
	CHECK_INT(read_all(0, n, EXEC_STDOUT, &out, 65536), 0);
	CHECK_INT(read_all(0, n, EXEC_STDERR, &errs, 65536), 0);
	CHECK_STR(sb_str(&out), "1\n");
	CHECK_STR(sb_str(&errs), "2\n");
	CHECK_INT(wait_status(0, n, &st), 0);
	CHECK_INT(st.state, EXEC_EXITED);
	CHECK_INT(st.exit_code, 3);
	CHECK_INT(st.size[EXEC_STDOUT], 2);
	CHECK_INT(st.size[EXEC_STDERR], 2);
	printf("  core: command %u: stdout \"1\\n\" stderr \"2\\n\" exit %d\n", n, st.exit_code);
	sb_free(&out);
	sb_free(&errs);
}

UNIT_TEST(streaming)
{
	/* Each line carries the time it was printed; the reader notes when it got it. */
	struct sp_error err = { 0 };
	char buf[4096];
	uint64_t off = 0;
	double t0 = now_s(), delays[8], max = 0, sum = 0;
	int lines = 0;
	unsigned n;

	n = start_cmd(0, "for i in 1 2 3; do echo \"$i $(date +%s.%N)\"; sleep 1; done", 0, false);
	CHECK(n > 0);
	for (;;) {
		ssize_t got = exec_read(em, &box[0], n, EXEC_STDOUT, buf, sizeof(buf) - 1, off, true, &err);
		double t = now_s();
		char *p;

		if (got <= 0) {
			CHECK_INT(got, 0);
			break;
		}
		buf[got] = '\0';
		off += (uint64_t)got;
		for (p = buf; *p && lines < 8; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
			int i;
			double printed;

			if (sscanf(p, "%d %lf", &i, &printed) == 2) {
				delays[lines] = t - printed;
				printf("  stream: line %d at +%.2f s, reached the reader after %.0f ms\n", i,
				       t - t0, delays[lines] * 1000);
				lines++;
			}
		}
	}
	CHECK_INT(lines, 3);
	for (int i = 0; i < lines; i++) {
		sum += delays[i];
		if (delays[i] > max)
			max = delays[i];
	}
	/* Lines arrive while the command runs, each within poll_max_ms (1 s) plus slack. */
	CHECK(lines == 3 && max < 1.3);
	if (lines)
		printf("  stream: delay of a line to a waiting reader: mean %.0f ms, max %.0f ms\n",
		       sum / lines * 1000, max * 1000);
}

UNIT_TEST(binary)
{
	static const char want[] = "a\0b\377\n\0\001\002last";
	struct strbuf out = STRBUF_INIT;
	struct exec_status st;
	unsigned n;

	n = start_cmd(0, "printf 'a\\000b\\377\\n\\000\\001\\002last'", 0, false);
	CHECK(n > 0);
	CHECK_INT(read_all(0, n, EXEC_STDOUT, &out, 3), 0);   /* small reads: offsets matter */
	CHECK_INT(out.len, sizeof(want) - 1);
	CHECK(out.len == sizeof(want) - 1 && memcmp(out.buf, want, out.len) == 0);
	CHECK_INT(wait_status(0, n, &st), 0);
	CHECK_INT(st.exit_code, 0);
	printf("  binary: %zu bytes with NULs, no final newline, byte for byte\n", out.len);
	sb_free(&out);
}

UNIT_TEST(stdin_wc)
{
	struct sp_error err = { 0 };
	struct strbuf out = STRBUF_INIT;
	struct exec_status st;
	unsigned n;

	n = start_cmd(0, "exec wc -l", 0, true);
	CHECK(n > 0);
	CHECK_INT(exec_stdin_write(em, &box[0], n, "one\ntwo\n", 8, &err), 8);
	CHECK_INT(exec_stdin_write(em, &box[0], n, "three\nfour", 10, &err), 10);
	CHECK_INT(exec_status(em, &box[0], n, false, &st, &err), 0);
	CHECK(st.stdin_open);
	CHECK_INT(exec_stdin_close(em, &box[0], n, &err), 0);
	CHECK_INT(exec_stdin_write(em, &box[0], n, "x", 1, &err), -EPIPE);
	CHECK_INT(read_all(0, n, EXEC_STDOUT, &out, 4096), 0);
	CHECK_STR(sb_str(&out), "3\n");
	CHECK_INT(wait_status(0, n, &st), 0);
	CHECK_INT(st.exit_code, 0);
	CHECK(!st.stdin_open);
	printf("  stdin: wc -l fed through stdin printed %s", sb_str(&out));
	sb_free(&out);

	/* every command has stdin; once it has ended, writes say so */
	n = start_cmd(0, "true", 0, false);
	CHECK_INT(wait_status(0, n, &st), 0);
	CHECK_INT(exec_stdin_write(em, &box[0], n, "x", 1, &err), -EPIPE);
}

UNIT_TEST(kill_sleeper)
{
	struct sp_error err = { 0 };
	struct exec_status st;
	double t0;
	unsigned n;

	n = start_cmd(0, "sleep 100 & sleep 100", 0, false);
	CHECK(n > 0);
	CHECK_INT(exec_status(em, &box[0], n, false, &st, &err), 0);
	CHECK_INT(st.state, EXEC_RUNNING);
	t0 = now_s();
	CHECK_INT(exec_kill(em, &box[0], n, &err), 0);
	CHECK_INT(wait_status(0, n, &st), 0);
	CHECK_INT(st.state, EXEC_KILLED);
	CHECK_INT(st.exit_code, 143);
	printf("  kill: status \"%s\" exit %d, seen %.0f ms after the kill\n", exec_state_name(st.state),
	       st.exit_code, (now_s() - t0) * 1000);
	CHECK_INT(exec_kill(em, &box[0], n, &err), -ESRCH);
}

UNIT_TEST(timeout)
{
	struct exec_status st;
	double t0 = now_s();
	unsigned n;

	n = start_cmd(0, "echo started; sleep 100", 1, false);
	CHECK(n > 0);
	CHECK_INT(wait_status(0, n, &st), 0);
	CHECK_INT(st.state, EXEC_TIMEDOUT);
	CHECK_INT(st.exit_code, 124);       /* as timeout(1) */
	CHECK_INT(st.size[EXEC_STDOUT], 8);
	printf("  timeout=1: status \"%s\" exit %d after %.2f s\n", exec_state_name(st.state), st.exit_code,
	       now_s() - t0);
}

struct conc {
	int which;
	int i;
	int ok;
};

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	struct strbuf out = STRBUF_INIT, want = STRBUF_INIT;
	struct exec_status st;
	char cmd[128];
	unsigned n;

	snprintf(cmd, sizeof(cmd), "echo start %d; sleep 2; echo end %d; echo e%d >&2", c->i, c->i, c->i);
	n = start_cmd(c->which, cmd, 0, false);
	if (n && read_all(c->which, n, EXEC_STDOUT, &out, 4096) == 0 &&
	    wait_status(c->which, n, &st) == 0) {
		sb_addf(&want, "start %d\nend %d\n", c->i, c->i);
		c->ok = !strcmp(sb_str(&out), sb_str(&want)) && st.exit_code == 0 && st.size[1] > 0;
	}
	sb_free(&out);
	sb_free(&want);
	return NULL;
}

UNIT_TEST(concurrent)
{
	enum { A = 20, B = 5 };
	struct conc cs[A + B];
	pthread_t t[A + B];
	double t0 = now_s();
	int ok = 0, i;

	for (i = 0; i < A + B; i++) {
		cs[i].which = i < A ? 0 : 1;
		cs[i].i = i;
		cs[i].ok = 0;
		pthread_create(&t[i], NULL, conc_main, &cs[i]);
	}
	for (i = 0; i < A + B; i++) {
		pthread_join(t[i], NULL);
		ok += cs[i].ok;
	}
	CHECK_INT(ok, A + B);
	printf("  concurrent: %d commands (20 in one sandbox, 5 in another) of 2 s each: %d right, %.2f s in all\n",
	       A + B, ok, now_s() - t0);
}

struct silent {
	unsigned n;
	ssize_t got;
	char buf[64];
};

static void *silent_reader(void *arg)
{
	struct silent *s = arg;
	struct sp_error err = { 0 };

	s->got = exec_read(em, &box[0], s->n, EXEC_STDOUT, s->buf, sizeof(s->buf), 0, true, &err);
	return NULL;
}

UNIT_TEST(silent_wait)
{
	struct silent s = { 0 };
	pthread_t t;
	cJSON *stats;
	double t0;

	s.n = start_cmd(0, "sleep 10; echo late", 0, false);
	CHECK(s.n > 0);
	cJSON_Delete(local_call("POST", "/_local/stats/reset"));
	t0 = now_s();
	pthread_create(&t, NULL, silent_reader, &s);
	pthread_join(t, NULL);
	stats = local_call("GET", "/_local/stats");
	CHECK_INT(s.got, 5);
	CHECK(stats != NULL);
	if (stats) {
		long all = stat_requests(stats, NULL);
		long lists = stat_requests(stats, "GET /toolbox/{id}/files");
		long dls = stat_requests(stats, "GET /toolbox/{id}/files/download");
		char *routes = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(stats, "routes"));

		printf("  silent wait: a reader blocked %.2f s on a silent command: %ld requests "
		       "(%ld listings, %ld downloads) %s\n", now_s() - t0, all, lists, dls, routes ? routes : "");
		CHECK(all <= 20);
		free(routes);
		cJSON_Delete(stats);
	}
}

UNIT_TEST(poll_readiness)
{
	double woken = 0, t0;
	unsigned n;
	int before = atomic_load(&wakes);

	n = start_cmd(0, "sleep 1; echo x; sleep 3", 0, false);
	CHECK(n > 0);
	CHECK_INT(exec_poll(em, &box[0], n, EXEC_STDOUT, 0, NULL), 0);
	t0 = now_s();
	CHECK_INT(exec_poll(em, &box[0], n, EXEC_STDOUT, 0, &woken), 0);
	for (int i = 0; i < 50 && atomic_load(&wakes) == before; i++)
		usleep(100000);
	CHECK_INT(atomic_load(&wakes), before + 1);
	CHECK_INT(exec_poll(em, &box[0], n, EXEC_STDOUT, 0, NULL), 1);
	CHECK_INT(exec_poll(em, &box[0], n, EXEC_STDOUT, 2, NULL), 0);
	printf("  poll: readiness signalled %.2f s after registering (output came at ~1 s)\n", woken - t0);
}

UNIT_TEST(big_output)
{
	/* 100 MB through 128 KiB reads, checked as it streams; memory stays flat. */
	const uint64_t total = 100000000;
	struct sp_error err = { 0 };
	struct rusage ru0, ru1;
	size_t chunk = 128 * 1024;
	char *buf = malloc(chunk);
	uint64_t off = 0, bad = 0;
	double t0 = now_s();
	unsigned n;

	n = start_cmd(0, "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c 100000000",
		      0, false);
	CHECK(n > 0 && buf);
	getrusage(RUSAGE_SELF, &ru0);
	while (buf) {
		ssize_t got = exec_read(em, &box[0], n, EXEC_STDOUT, buf, chunk, off, true, &err);

		if (got <= 0) {
			CHECK_INT(got, 0);
			break;
		}
		/* each line is 63 characters and a newline */
		for (ssize_t i = 0; i < got; i++) {
			uint64_t pos = (off + (uint64_t)i) % 63;
			char want = pos == 62 ? '\n' :
				"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[pos];

			bad += buf[i] != want;
		}
		off += (uint64_t)got;
	}
	getrusage(RUSAGE_SELF, &ru1);
	CHECK_INT(off, total);
	CHECK_INT(bad, 0);
	printf("  big: %" PRIu64 " bytes streamed in %.2f s (%.0f MB/s), max RSS grew %ld KiB\n", off,
	       now_s() - t0, off / 1e6 / (now_s() - t0), ru1.ru_maxrss - ru0.ru_maxrss);
	free(buf);
}

UNIT_TEST(remount_history)
{
	/* A new manager (a remount) reads the history back from the sandbox. */
	struct exec_options o;
	struct exec_mgr *m2;
	struct sp_error err = { 0 };
	struct exec_status st;
	unsigned *ns = NULL, last = 0;
	size_t count = 0;
	char *text = NULL;
	size_t len = 0;

	exec_options_defaults(&o);
	m2 = exec_mgr_new(sp, &o);
	CHECK(m2 != NULL);
	if (!m2)
		return;
	CHECK_INT(exec_list(m2, &box[0], &ns, &count, &err), 0);
	CHECK(count >= 25);
	CHECK(count > 0 && ns[0] == 1);
	CHECK_INT(exec_last(m2, &box[0], &last, &err), 0);
	CHECK(count > 0 && last == ns[count - 1]);
	CHECK_INT(exec_status(m2, &box[0], 1, false, &st, &err), 0);
	CHECK_INT(st.state, EXEC_EXITED);
	CHECK_INT(st.exit_code, 3);
	CHECK_INT(exec_command_text(m2, &box[0], 1, &text, &len, &err), 0);
	CHECK_STR(text, "exec python3 -c \"import sys; print(1); print(2, file=sys.stderr); sys.exit(3)\"");
	CHECK_INT(exec_status(m2, &box[0], 99999, false, &st, &err), -ENOENT);
	printf("  remount: %zu commands read back, newest %u; command 1 exit %d\n", count, last, st.exit_code);
	free(text);
	free(ns);
	exec_mgr_free(m2);
}

struct blocked {
	unsigned n;
	ssize_t got;
};

static void *blocked_reader(void *arg)
{
	struct blocked *r = arg;
	struct sp_error err = { 0 };
	char buf[64];

	r->got = exec_read(em, &box[1], r->n, EXEC_STDOUT, buf, sizeof(buf), 0, true, &err);
	return NULL;
}

UNIT_TEST(stopped_sandbox)
{
	/* A reader blocked on a command whose sandbox stops gets an error, not a hang. */
	struct blocked r = { 0, 1 };
	struct sp_error err = { 0 };
	pthread_t t;
	double t0;

	r.n = start_cmd(1, "sleep 100", 0, false);
	CHECK(r.n > 0);
	pthread_create(&t, NULL, blocked_reader, &r);
	usleep(300000);
	t0 = now_s();
	CHECK_INT(dt_sandbox_action(dt, sbx[1].id, SP_STOP, NULL, NULL, NULL, &err), 0);
	pthread_join(t, NULL);
	CHECK_INT(r.got, -EHOSTDOWN);
	printf("  stop: the blocked reader got %zd (%s) %.2f s after the stop began\n", r.got,
	       strerror((int)-r.got), now_s() - t0);
}

UNIT_TEST(on_end_calls)
{
	/* every command this mount started has been reported ended */
	printf("  on_end: called %d times\n", atomic_load(&ends));
	CHECK(atomic_load(&ends) >= 30);
}

static const struct unit_case cases[] = {
	UNIT_CASE(core_example),
	UNIT_CASE(streaming),
	UNIT_CASE(binary),
	UNIT_CASE(stdin_wc),
	UNIT_CASE(kill_sleeper),
	UNIT_CASE(timeout),
	UNIT_CASE(concurrent),
	UNIT_CASE(silent_wait),
	UNIT_CASE(poll_readiness),
	UNIT_CASE(big_output),
	UNIT_CASE(remount_history),
	UNIT_CASE(stopped_sandbox),
	UNIT_CASE(on_end_calls),
};

int main(int argc, char **argv)
{
	struct http_config hcfg;
	struct sp_config dcfg = { 0 };
	struct sp_create_params cp;
	struct exec_options o;
	struct sp_error err = { 0 };
	int rc = 1;

	if (argc > 1)
		str_copy(api_url, sizeof(api_url), argv[1]);
	else if (start_server() < 0) {
		fprintf(stderr, "cannot start the local server\n");
		return 1;
	}
	str_copy(base_url, sizeof(base_url), api_url);
	if (strlen(base_url) > 4 && !strcmp(base_url + strlen(base_url) - 4, "/api"))
		base_url[strlen(base_url) - 4] = '\0';
	printf("server %s\n", api_url);

	http_config_defaults(&hcfg);
	hcfg.user_agent = "smoke_exec";
	hcfg.max_connections = 64;
	hc = http_client_new(&hcfg);
	dcfg.api_url = api_url;
	dcfg.api_key = argc > 2 ? argv[2] : "k";
	dcfg.wait_timeout_ms = 60000;
	dt = hc ? dt_client_new(hc, &dcfg) : NULL;
	sp = hc ? provider_open("daytona", hc, &(struct provider_config){ .api_url = dcfg.api_url,
		.api_key = dcfg.api_key, .wait_timeout_ms = dcfg.wait_timeout_ms }) : NULL;
	if (!dt || !sp)
		goto out;
	for (int i = 0; i < 2; i++) {
		sp_create_params_init(&cp);
		if (dt_sandbox_create(dt, &cp, &sbx[i], &err) < 0) {
			fprintf(stderr, "create: %s\n", err.message);
			goto out;
		}
		box[i].id = sbx[i].id;
		box[i].toolbox_url = sbx[i].toolbox_url;
	}
	exec_options_defaults(&o);
	o.on_end = on_end;
	o.wake = on_wake;
	em = exec_mgr_new(sp, &o);
	if (!em)
		goto out;
	rc = unit_run("smoke_exec", cases, sizeof(cases) / sizeof(cases[0]));
	exec_mgr_free(em);
out:
	for (int i = 0; i < 2; i++) {
		if (sbx[i].id[0] && dt)
			dt_sandbox_delete(dt, sbx[i].id, NULL, NULL, &err);
		sp_sandbox_clear(&sbx[i]);
	}
	provider_close(sp);
	dt_client_free(dt);
	http_client_free(hc);
	stop_server();
	return rc;
}
