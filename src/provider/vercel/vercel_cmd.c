/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vercel_cmd.c - commands of a Vercel session: run detached, get (and wait
 * for the exit code), kill, list, and the NDJSON log stream (see vercel.h).
 *
 * Log lines carry output as JSON strings. They are framed on raw '\n' bytes
 * (a '\n' byte never occurs inside a UTF-8 sequence, nor inside a JSON
 * string, where it is escaped), so a multi-byte character split across
 * network chunks stays whole. The "data" string is decoded here rather than
 * by cJSON, whose NUL-terminated strings would cut output at a "\u0000".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "urlenc.h"
#include "vercel_int.h"

#define MAX_LOG_LINE (8u << 20)     /* one JSON line of output; the server sends small chunks */

/* ---- run, get, kill, list ------------------------------------------------ */

char *vc_cmd_body_json(const struct vc_cmd_params *p)
{
	cJSON *root = cJSON_CreateObject(), *args, *env;
	char *s = NULL;
	bool ok = root != NULL;

	/* The SDK's keys, in its order: command, args, cwd, env, sudo (+ timeout). */
	ok = ok && cJSON_AddStringToObject(root, "command", p->command ? p->command : "");
	ok = ok && (args = cJSON_AddArrayToObject(root, "args")) != NULL;
	for (size_t i = 0; ok && i < p->n_args; i++) {
		cJSON *a = cJSON_CreateString(p->args[i]);

		ok = a && cJSON_AddItemToArray(args, a);
		if (!ok)
			cJSON_Delete(a);
	}
	if (ok && p->cwd)
		ok = cJSON_AddStringToObject(root, "cwd", p->cwd) != NULL;
	ok = ok && (env = cJSON_AddObjectToObject(root, "env")) != NULL;
	for (size_t i = 0; ok && i < p->n_env; i++)
		ok = cJSON_AddStringToObject(env, p->env[i].key, p->env[i].value ? p->env[i].value : "") != NULL;
	ok = ok && cJSON_AddBoolToObject(root, "sudo", p->sudo);
	if (ok && p->timeout_ms > 0)
		ok = cJSON_AddNumberToObject(root, "timeout", (double)p->timeout_ms) != NULL;
	if (ok && p->wait)
		ok = cJSON_AddBoolToObject(root, "wait", true) && cJSON_AddBoolToObject(root, "logs", true);
	if (ok)
		s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

/* A call answering {"command": {...}} into out (may be NULL). */
static int command_call(struct vc_client *vc, const struct vc_call *c, struct vc_command *out,
			struct vc_error *err)
{
	struct http_response resp;
	struct vc_command tmp;
	cJSON *root;
	int rc = vc_do(vc, c, &resp, err);

	if (rc == 0) {
		root = vc_parse_body(&resp, c->what, err);
		if (!root)
			rc = -EIO;
		else if (vc_command_from_json(cJSON_GetObjectItemCaseSensitive(root, "command"), out ? out : &tmp))
			rc = vc_error_set(err, -EIO, resp.status, "malformed response from %s", c->what);
		cJSON_Delete(root);
	}
	http_response_free(&resp);
	return rc;
}

int vc_cmd_run(struct vc_client *vc, const char *sid, const struct vc_cmd_params *p, struct vc_command *out,
	       struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char *body;
	int rc;

	memset(out, 0, sizeof(*out));
	if (vc_check_id(sid, "session id", err))
		return -EINVAL;
	if (!p->command || !*p->command)
		return vc_error_set(err, -EINVAL, 0, "run command: no program");
	if (p->timeout_ms > 0 && p->timeout_ms < 100)
		return vc_error_set(err, -EINVAL, 0, "run %s: timeout under 100 ms", p->command);
	body = vc_cmd_body_json(p);
	vc_session_url(vc, &url, sid, "/cmd");
	sb_addf(&what, "run %s in session %s", p->command, sid);
	if (!body || url.oom || what.oom) {
		rc = vc_oom(err);
	} else {
		/* Not idempotent: a replay would run the program twice. */
		struct vc_call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body };

		rc = command_call(vc, &c, out, err);
	}
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* …/cmd/{id}{suffix} */
static void cmd_url(const struct vc_client *vc, struct strbuf *sb, const char *sid, const char *cmd_id,
		    const char *suffix)
{
	/* Two encoded segments: vc_url takes one, so the path is built here. */
	sb_adds(sb, vc->base_url);
	sb_adds(sb, "/v2/sandboxes/sessions/");
	url_add_path_segment(sb, sid);
	sb_adds(sb, "/cmd/");
	url_add_path_segment(sb, cmd_id);
	if (suffix)
		sb_adds(sb, suffix);
	if (vc->team_id[0])
		vc_add_query(sb, "teamId", vc->team_id);
}

int vc_cmd_get(struct vc_client *vc, const char *sid, const char *cmd_id, bool wait, struct vc_command *out,
	       struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	int rc;

	memset(out, 0, sizeof(*out));
	if (vc_check_id(sid, "session id", err) || vc_check_id(cmd_id, "command id", err))
		return -EINVAL;
	cmd_url(vc, &url, sid, cmd_id, NULL);
	if (wait)
		vc_add_query(&url, "wait", "true");
	sb_addf(&what, "%s command %s", wait ? "wait for" : "get", cmd_id);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
	} else {
		/* A wait is bounded too: past it, -ETIMEDOUT, and the caller asks
		 * again (Vercel's edge would cut it at ~5 min anyway). */
		struct vc_call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what),
				     .idempotent = true, .timeout_ms = wait ? vc->wait_timeout_ms : 0 };

		rc = command_call(vc, &c, out, err);
		if (rc == 0 && wait && !out->exited)
			rc = vc_error_set(err, -EIO, 200, "%s: answered without an exit code", sb_str(&what));
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_cmd_kill(struct vc_client *vc, const char *sid, const char *cmd_id, int signal, struct vc_command *out,
		struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	char body[32];
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (vc_check_id(sid, "session id", err) || vc_check_id(cmd_id, "command id", err))
		return -EINVAL;
	if (signal <= 0 || signal > 64)
		return vc_error_set(err, -EINVAL, 0, "kill command %s: bad signal %d", cmd_id, signal);
	snprintf(body, sizeof(body), "{\"signal\":%d}", signal);
	cmd_url(vc, &url, sid, cmd_id, "/kill");
	sb_addf(&what, "kill command %s", cmd_id);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
	} else {
		/* A second signal to the same command is harmless. */
		struct vc_call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				     .idempotent = true };

		rc = command_call(vc, &c, out, err);
	}
	sb_free(&url);
	sb_free(&what);
	return rc;
}

int vc_cmd_list(struct vc_client *vc, const char *sid, struct vc_command **out, size_t *n, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct vc_call c = { .method = "GET", .idempotent = true };
	struct http_response resp;
	const cJSON *items, *item;
	cJSON *root = NULL;
	struct vc_command *list = NULL;
	size_t count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (vc_check_id(sid, "session id", err))
		return -EINVAL;
	vc_session_url(vc, &url, sid, "/cmd");
	sb_addf(&what, "list commands of session %s", sid);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
		goto out;
	}
	c.url = sb_str(&url);
	c.what = sb_str(&what);
	rc = vc_do(vc, &c, &resp, err);
	if (rc == 0 && !(root = vc_parse_body(&resp, c.what, err)))
		rc = -EIO;
	http_response_free(&resp);
	if (rc)
		goto out;
	items = cJSON_GetObjectItemCaseSensitive(root, "commands");
	if (!cJSON_IsArray(items)) {
		rc = vc_error_set(err, -EIO, 200, "malformed response from %s", c.what);
		goto out;
	}
	list = calloc((size_t)cJSON_GetArraySize(items) + 1, sizeof(*list));
	if (!list) {
		rc = vc_oom(err);
		goto out;
	}
	cJSON_ArrayForEach(item, items) {
		if (vc_command_from_json(item, &list[count]) != 0) {
			rc = vc_error_set(err, -EIO, 200, "malformed response from %s", c.what);
			goto out;
		}
		count++;
	}
	*out = list;
	*n = count;
	list = NULL;
out:
	free(list);
	cJSON_Delete(root);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- NDJSON framing ------------------------------------------------------- */

void vc_ndjson_init(struct vc_ndjson *p, size_t max_line, vc_line_fn fn, void *ctx)
{
	memset(p, 0, sizeof(*p));
	p->max_line = max_line ? max_line : MAX_LOG_LINE;
	p->fn = fn;
	p->ctx = ctx;
}

void vc_ndjson_free(struct vc_ndjson *p)
{
	free(p->buf);
	p->buf = NULL;
	p->len = p->cap = 0;
}

static int emit_line(struct vc_ndjson *p, const char *line, size_t len)
{
	/* "\r\n" would be JSON whitespace; trim it, and skip empty lines. */
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len == 0)
		return 0;
	return p->fn(p->ctx, line, len);
}

static int buf_append(struct vc_ndjson *p, const char *data, size_t len)
{
	if (p->len + len > p->max_line)
		return -EFBIG;
	if (p->len + len + 1 > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		char *grown;

		while (cap < p->len + len + 1)
			cap *= 2;
		grown = realloc(p->buf, cap);
		if (!grown)
			return -ENOMEM;
		p->buf = grown;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, len);
	p->len += len;
	p->buf[p->len] = '\0';
	return 0;
}

int vc_ndjson_feed(struct vc_ndjson *p, const void *data, size_t len)
{
	const char *d = data, *end = d + len;
	int rc;

	while (d < end) {
		const char *nl = memchr(d, '\n', (size_t)(end - d));

		if (!nl)
			return buf_append(p, d, (size_t)(end - d));
		if (p->len) {
			/* The line began in an earlier chunk. */
			rc = buf_append(p, d, (size_t)(nl - d));
			if (rc)
				return rc;
			rc = emit_line(p, p->buf, p->len);
			p->len = 0;
		} else {
			if ((size_t)(nl - d) > p->max_line)
				return -EFBIG;
			rc = emit_line(p, d, (size_t)(nl - d));
		}
		if (rc)
			return rc;
		d = nl + 1;
	}
	return 0;
}

int vc_ndjson_finish(struct vc_ndjson *p)
{
	int rc = 0;

	if (p->len)
		rc = emit_line(p, p->buf, p->len);
	p->len = 0;
	return rc;
}

/* ---- a log line ------------------------------------------------------------ */

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* p at '"': past the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Past one JSON value (the line was validated by cJSON already). */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		if (*p == '"') {
			p = skip_string(p, end);
			if (!p)
				return NULL;
			if (depth == 0)
				return p;
			continue;
		}
		if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (depth == 0)
				return p;
			if (--depth == 0)
				return p + 1;
		} else if (*p == ',' && depth == 0) {
			return p;
		}
		p++;
	}
	return p;
}

static int hex4(const char *p, const char *end)
{
	int v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static void add_utf8(struct strbuf *out, unsigned cp)
{
	char b[4];

	if (cp < 0x80) {
		b[0] = (char)cp;
		sb_add(out, b, 1);
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		sb_add(out, b, 2);
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		sb_add(out, b, 3);
	} else {
		b[0] = (char)(0xF0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		sb_add(out, b, 4);
	}
}

/* p at '"': decodes the JSON string into out (NUL bytes kept). A lone
 * surrogate becomes U+FFFD, as a UTF-8 decoder would make of it. */
static bool decode_string(const char *p, const char *end, struct strbuf *out)
{
	for (p++; p < end; p++) {
		const char *run = p;
		int cp, lo;

		while (p < end && *p != '"' && *p != '\\')
			p++;
		sb_add(out, run, (size_t)(p - run));
		if (p >= end)
			return false;
		if (*p == '"')
			return !out->oom;
		if (++p >= end)
			return false;
		switch (*p) {
		case '"': sb_addc(out, '"'); break;
		case '\\': sb_addc(out, '\\'); break;
		case '/': sb_addc(out, '/'); break;
		case 'b': sb_addc(out, '\b'); break;
		case 'f': sb_addc(out, '\f'); break;
		case 'n': sb_addc(out, '\n'); break;
		case 'r': sb_addc(out, '\r'); break;
		case 't': sb_addc(out, '\t'); break;
		case 'u':
			cp = hex4(p + 1, end);
			if (cp < 0)
				return false;
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF && end - p > 6 && p[1] == '\\' && p[2] == 'u' &&
			    (lo = hex4(p + 3, end)) >= 0xDC00 && lo <= 0xDFFF) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			} else if (cp >= 0xD800 && cp <= 0xDFFF) {
				cp = 0xFFFD;
			}
			add_utf8(out, (unsigned)cp);
			break;
		default:
			return false;
		}
	}
	return false;
}

/* The top-level string member key of the object in line, decoded. */
static bool string_member(const char *line, size_t len, const char *key, struct strbuf *out)
{
	const char *p = line, *end = line + len;
	size_t klen = strlen(key);

	p = skip_ws(p, end);
	if (p >= end || *p++ != '{')
		return false;
	for (;;) {
		const char *k, *kend;

		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			return false;
		k = p + 1;
		kend = skip_string(p, end);
		if (!kend)
			return false;
		p = skip_ws(kend, end);
		if (p >= end || *p++ != ':')
			return false;
		p = skip_ws(p, end);
		if ((size_t)(kend - 1 - k) == klen && memcmp(k, key, klen) == 0)
			return p < end && *p == '"' && decode_string(p, end, out);
		p = skip_value(p, end);
		if (!p)
			return false;
		p = skip_ws(p, end);
		if (p >= end || *p != ',')
			return false;
		p++;
	}
}

int vc_log_line(const char *line, size_t len, vc_log_fn fn, void *ctx, struct vc_command *cmd,
		struct vc_error *err)
{
	cJSON *root = cJSON_ParseWithLength(line, len);
	const cJSON *stream, *command;
	int rc = 0;

	if (!cJSON_IsObject(root)) {
		rc = vc_error_set(err, -EIO, 200, "log stream: a line is not a JSON object");
		goto out;
	}
	command = cJSON_GetObjectItemCaseSensitive(root, "command");
	if (command && !cJSON_IsNull(command)) {
		struct vc_command tmp;

		if (vc_command_from_json(command, cmd ? cmd : &tmp) != 0)
			rc = vc_error_set(err, -EIO, 200, "log stream: a malformed command line");
		goto out;
	}
	stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
	if (!cJSON_IsString(stream)) {
		rc = vc_error_set(err, -EIO, 200, "log stream: a line without a stream");
		goto out;
	}
	if (strcmp(stream->valuestring, "error") == 0) {
		const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
		const char *code = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(data, "code")) ?
			cJSON_GetObjectItemCaseSensitive(data, "code")->valuestring : "";
		const char *msg = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(data, "message")) ?
			cJSON_GetObjectItemCaseSensitive(data, "message")->valuestring : "stream error";

		/* sandbox_stopped, sandbox_stream_closed: the session is gone. */
		rc = strcmp(code, "sandbox_stopped") == 0 || strcmp(code, "sandbox_stream_closed") == 0 ?
			-EHOSTDOWN : -EIO;
		vc_error_set(err, rc, 200, "log stream: %s (%s)", msg, code);
		if (err)
			str_copy(err->code, sizeof(err->code), code);
		goto out;
	}
	if (strcmp(stream->valuestring, "stdout") == 0 || strcmp(stream->valuestring, "stderr") == 0) {
		struct strbuf data = STRBUF_INIT;

		if (!string_member(line, len, "data", &data)) {
			rc = data.oom ? vc_oom(err) : vc_error_set(err, -EIO, 200, "log stream: a line without data");
		} else {
			rc = fn(ctx, stream->valuestring[3] == 'o' ? VC_STDOUT : VC_STDERR,
				data.buf ? data.buf : "", data.len);
			if (rc)
				vc_error_set(err, rc, 200, "log stream: stopped by the reader");
		}
		sb_free(&data);
		goto out;
	}
	rc = vc_error_set(err, -EIO, 200, "log stream: unknown stream \"%s\"", stream->valuestring);
out:
	cJSON_Delete(root);
	return rc;
}

/* ---- NDJSON streams ------------------------------------------------------------ */

/* The call c, whose sink feeds nd, read to its end: an answer that is not
 * NDJSON is EIO, a stream cut inside a line fails, and a line that stopped
 * the stream (line_err, set by the sink) is the error. */
static int ndjson_stream(struct vc_client *vc, const struct vc_call *c, struct vc_ndjson *nd,
			 const struct vc_error *line_err, struct vc_error *err)
{
	struct http_response resp;
	int rc;

	memset(&resp, 0, sizeof(resp));
	rc = vc_do(vc, c, &resp, err);
	if (rc == 0 && (!resp.content_type || strncmp(resp.content_type, "application/x-ndjson", 20) != 0))
		rc = vc_error_set(err, -EIO, resp.status, "%s: not an NDJSON stream (%s)", c->what,
				  resp.content_type ? resp.content_type : "no content type");
	http_response_free(&resp);
	if (rc == 0)
		rc = vc_ndjson_finish(nd);
	if (rc && line_err->err && err) {
		*err = *line_err;
		rc = -line_err->err;
	}
	return rc;
}

/* ---- the logs stream -------------------------------------------------------- */

struct logs_ctx {
	struct vc_ndjson nd;
	vc_log_fn fn;
	void *ctx;
	struct vc_error line_err;   /* why a line stopped the stream */
};

static int logs_line(void *p, const char *line, size_t len)
{
	struct logs_ctx *lc = p;

	return vc_log_line(line, len, lc->fn, lc->ctx, NULL, &lc->line_err);
}

static int logs_sink(void *p, const void *data, size_t len)
{
	struct logs_ctx *lc = p;
	int rc = vc_ndjson_feed(&lc->nd, data, len);

	if (rc && !lc->line_err.err)
		vc_error_set(&lc->line_err, rc, 200, "log stream: %s",
			     rc == -EFBIG ? "a line too long" : strerror(-rc));
	return rc;
}

int vc_cmd_logs(struct vc_client *vc, const char *sid, const char *cmd_id, vc_log_fn fn, void *ctx,
		struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct logs_ctx lc;
	int rc;

	if (vc_check_id(sid, "session id", err) || vc_check_id(cmd_id, "command id", err))
		return -EINVAL;
	memset(&lc, 0, sizeof(lc));
	lc.fn = fn;
	lc.ctx = ctx;
	vc_ndjson_init(&lc.nd, 0, logs_line, &lc);
	cmd_url(vc, &url, sid, cmd_id, "/logs");
	sb_addf(&what, "logs of command %s", cmd_id);
	if (url.oom || what.oom) {
		rc = vc_oom(err);
		goto out;
	}
	{
		/* Bounded as a wait: a stream open longer than that fails with
		 * -ETIMEDOUT (the output of a command still running). */
		struct vc_call c = { .method = "GET", .url = sb_str(&url), .what = sb_str(&what),
				     .sink = logs_sink, .sink_ctx = &lc, .idempotent = true,
				     .timeout_ms = vc->wait_timeout_ms };

		rc = ndjson_stream(vc, &c, &lc.nd, &lc.line_err, err);
	}
out:
	vc_ndjson_free(&lc.nd);
	sb_free(&url);
	sb_free(&what);
	return rc;
}

/* ---- run and wait ------------------------------------------------------------ */

struct wait_ctx {
	struct vc_ndjson nd;
	vc_log_fn fn;
	void *ctx;
	struct vc_command cmd;      /* the last {"command"} line: the exit code once it has one */
	struct vc_error line_err;
};

static int wait_line(void *p, const char *line, size_t len)
{
	struct wait_ctx *wc = p;

	return vc_log_line(line, len, wc->fn, wc->ctx, &wc->cmd, &wc->line_err);
}

static int wait_sink(void *p, const void *data, size_t len)
{
	struct wait_ctx *wc = p;
	int rc = vc_ndjson_feed(&wc->nd, data, len);

	if (rc && !wc->line_err.err)
		vc_error_set(&wc->line_err, rc, 200, "command stream: %s",
			     rc == -EFBIG ? "a line too long" : strerror(-rc));
	return rc;
}

int vc_cmd_run_wait(struct vc_client *vc, const char *sid, const struct vc_cmd_params *p, long http_timeout_ms,
		    vc_log_fn fn, void *ctx, struct vc_command *out, struct vc_error *err)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct vc_cmd_params wp = *p;
	struct wait_ctx wc;
	char *body = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (vc_check_id(sid, "session id", err))
		return -EINVAL;
	if (!p->command || !*p->command)
		return vc_error_set(err, -EINVAL, 0, "run command: no program");
	if (p->timeout_ms > 0 && p->timeout_ms < 100)
		return vc_error_set(err, -EINVAL, 0, "run %s: timeout under 100 ms", p->command);
	memset(&wc, 0, sizeof(wc));
	wc.fn = fn;
	wc.ctx = ctx;
	vc_ndjson_init(&wc.nd, 0, wait_line, &wc);
	wp.wait = true;
	body = vc_cmd_body_json(&wp);
	vc_session_url(vc, &url, sid, "/cmd");
	sb_addf(&what, "run %s in session %s", p->command, sid);
	if (!body || url.oom || what.oom) {
		rc = vc_oom(err);
		goto out;
	}
	{
		/* Not idempotent: a replay would run the program twice. The
		 * stream is bounded as a whole (a quiet command sends nothing
		 * for long: no stall limit). */
		struct vc_call c = { .method = "POST", .url = sb_str(&url), .what = sb_str(&what), .json = body,
				     .sink = wait_sink, .sink_ctx = &wc,
				     .timeout_ms = http_timeout_ms > 0 ? http_timeout_ms : vc->wait_timeout_ms };

		rc = ndjson_stream(vc, &c, &wc.nd, &wc.line_err, err);
	}
	if (rc == 0 && !wc.cmd.exited)
		rc = vc_error_set(err, -ECONNRESET, 200, "run %s: the stream ended before the command did",
				  p->command);
	*out = wc.cmd;
out:
	vc_ndjson_free(&wc.nd);
	free(body);
	sb_free(&url);
	sb_free(&what);
	return rc;
}
