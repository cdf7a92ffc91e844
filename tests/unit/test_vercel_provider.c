/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure parts of the Vercel adapter (vercel_provider.c) and of the
 * command forms of file calls (rfs.c): the exec wrapper's output back to
 * bytes and a status, the state names, the create parameters, stat lines.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rfs.h"
#include "strbuf.h"
#include "unit.h"
#include "urlenc.h"
#include "vercel_prov_int.h"
#include "vercel_provider.h"

UNIT_TEST(decode_gives_exact_bytes_and_status)
{
	/* "a\0\xff\n" in base64 is "YQD/Cg==", split as base64(1) splits lines */
	const char text[] = "YQD/\nCg==\n.3\n";
	char *out = NULL;
	int st = -1;

	CHECK_INT(vercel_exec_decode(text, strlen(text), &st, &out), 0);
	CHECK_INT(st, 3);
	CHECK(out && !memcmp(out, "a\0\xff\n", 4));
	free(out);
}

UNIT_TEST(decode_empty_output)
{
	char *out = NULL;
	int st = -1;

	CHECK_INT(vercel_exec_decode(".0\n", 3, &st, &out), 0);
	CHECK_INT(st, 0);
	CHECK_STR(out, "");
	free(out);
}

UNIT_TEST(decode_refuses_incomplete_output)
{
	char *out = NULL;
	int st = -1;

	/* killed before the status line: never a success with part of the output */
	CHECK_INT(vercel_exec_decode("YQD/\n", 5, &st, &out), -EIO);
	CHECK(out == NULL);
	CHECK_INT(vercel_exec_decode("", 0, &st, &out), -EIO);
	/* a status line, but the output is not base64 (a message in it) */
	CHECK_INT(vercel_exec_decode("sh: base64: not found\n.0\n", 25, &st, &out), -EIO);
	CHECK_INT(vercel_exec_decode("YQ==\n.x\n", 8, &st, &out), -EIO);
	CHECK_INT(vercel_exec_decode("YQ==\n.300\n", 10, &st, &out), -EIO);
}

UNIT_TEST(base64_roundtrip)
{
	struct strbuf e = STRBUF_INIT, d = STRBUF_INIT;
	unsigned char bytes[256];

	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	for (size_t n = 0; n <= 256; n += 37) {
		sb_reset(&e);
		sb_reset(&d);
		base64_encode(&e, bytes, n);
		CHECK_INT(base64_decode(&d, e.buf ? e.buf : "", e.len), 0);
		CHECK(d.len == n && (n == 0 || !memcmp(d.buf, bytes, n)));
	}
	sb_reset(&d);
	CHECK_INT(base64_decode(&d, "YQ=x", 4), -EINVAL);
	sb_reset(&d);
	CHECK_INT(base64_decode(&d, "Y", 1), -EINVAL);
	sb_free(&e);
	sb_free(&d);
}

UNIT_TEST(state_names)
{
	CHECK_STR(vercel_state_name("running"), "started");
	CHECK_STR(vercel_state_name("stopped"), "stopped");
	CHECK_STR(vercel_state_name("snapshotting"), "stopping");
	CHECK_STR(vercel_state_name("failed"), "error");
	CHECK_STR(vercel_state_name("pending"), "starting");
	CHECK_STR(vercel_state_name("???"), "unknown");
}

UNIT_TEST(create_params)
{
	struct sp_create_params p;
	struct vc_create_params vp;
	struct sp_kv env[1] = { { "A", "1" } }, labels[1] = { { "team", "x" } };
	struct vc_kv venv[1], vtags[1];
	struct sp_error err = { 0 };

	sp_create_params_init(&p);
	p.name = "box";
	p.image = "python3.13";
	p.cpu = 4;
	p.autostop = 30;
	p.env = env;
	p.n_env = 1;
	p.labels = labels;
	p.n_labels = 1;
	p.ephemeral = true;
	p.autodelete = 0;     /* what ephemeral means in the grammar */
	CHECK_INT(vercel_create_params(&p, &vp, venv, vtags, &err), 0);
	CHECK_STR(vp.name, "box");
	CHECK_STR(vp.runtime, "python3.13");
	CHECK(vp.image == NULL);
	CHECK_INT(vp.vcpus, 4);
	CHECK(vp.timeout_ms == 30 * 60000L);
	CHECK_INT(vp.persistent, 0);
	CHECK_STR(vp.env[0].key, "A");
	CHECK_STR(vp.tags[0].value, "x");

	sp_create_params_init(&p);
	p.image = "registry.example/img:1";
	CHECK_INT(vercel_create_params(&p, &vp, venv, vtags, &err), 0);
	CHECK(vp.runtime == NULL);
	CHECK_STR(vp.image, "registry.example/img:1");
	CHECK_INT(vp.persistent, -1);

	sp_create_params_init(&p);
	p.memory = 4;
	CHECK_INT(vercel_create_params(&p, &vp, venv, vtags, &err), -EINVAL);
	CHECK(strstr(err.message, "memory") != NULL);
	sp_create_params_init(&p);
	p.autoarchive = 10;
	CHECK_INT(vercel_create_params(&p, &vp, venv, vtags, &err), -EINVAL);
	/* network options were ignored: the sandbox came with the network open */
	sp_create_params_init(&p);
	p.network_block_all = true;
	CHECK_INT(vercel_create_params(&p, &vp, venv, vtags, &err), -EINVAL);
	CHECK(strstr(err.message, "network=block-all") != NULL);
	sp_create_params_init(&p);
	p.network_allow_list = "10.0.0.0/8";
	CHECK_INT(vercel_create_params(&p, &vp, venv, vtags, &err), -EINVAL);
	CHECK(strstr(err.message, "network-allow=") != NULL);
}

UNIT_TEST(stat_lines)
{
	struct sp_fileinfo fi;

	CHECK_INT(rfs_parse_stat_line("81a4 12 1000 1000 1700000000 a file", 35, &fi), 0);
	CHECK_STR(fi.name, "a file");
	CHECK(fi.size == 12 && fi.uid == 1000 && fi.mtime.tv_sec == 1700000000);
	CHECK(S_ISREG(fi.mode) && (fi.mode & 07777) == 0644 && !fi.is_dir);
	free(fi.name);
	/* the nanoseconds of %.9Y */
	CHECK_INT(rfs_parse_stat_line("81a4 1 0 0 1700000000.123456789 n", 33, &fi), 0);
	CHECK(fi.mtime.tv_sec == 1700000000 && fi.mtime.tv_nsec == 123456789);
	CHECK_STR(fi.name, "n");
	free(fi.name);
	CHECK_INT(rfs_parse_stat_line("41ed 4096 0 0 1 dir", 19, &fi), 0);
	CHECK(fi.is_dir);
	free(fi.name);
	CHECK_INT(rfs_parse_stat_line("stat: cannot stat", 17, &fi), -EINVAL);
	CHECK_INT(rfs_parse_stat_line("81a4 12 1000 1000 5 ", 20, &fi), -EINVAL);   /* no name */
}

UNIT_TEST(messages_to_errno)
{
	CHECK_INT(rfs_errno_from_message("rm: cannot remove 'x': No such file or directory"), -ENOENT);
	CHECK_INT(rfs_errno_from_message("rm: cannot remove 'd': Is a directory"), -EISDIR);
	CHECK_INT(rfs_errno_from_message("chmod: changing permissions of 'x': Operation not permitted"), -EPERM);
	CHECK_INT(rfs_errno_from_message("something else"), -EIO);
	CHECK_INT(rfs_errno_from_message(NULL), -EIO);
}

/* Vercel ids may be 128 bytes long: a session id that long is used whole,
 * one that does not fit is no session (a cut id would name another). */
UNIT_TEST(session_ids_of_128_bytes_are_kept_whole)
{
	struct vprov v;
	char id128[129], id129[130], out[SP_ID_SIZE];
	struct sp_box box = { .id = "sbx", .toolbox_url = id128 };

	memset(&v, 0, sizeof(v));
	pthread_mutex_init(&v.lock, NULL);
	memset(id128, 'a', 128);
	id128[128] = '\0';
	memset(id129, 'b', 129);
	id129[129] = '\0';
	vp_session_of(&v, &box, out, sizeof(out));
	CHECK_STR(out, id128);
	box.toolbox_url = id129;
	vp_session_of(&v, &box, out, sizeof(out));
	CHECK_STR(out, "");
	id128[0] = 'c';
	vp_session_note(&v, "sbx", id128);
	vp_session_of(&v, &box, out, sizeof(out));
	CHECK_STR(out, id128);
	vp_session_note(&v, "sbx", id129);      /* does not fit: not noted */
	vp_session_of(&v, &box, out, sizeof(out));
	CHECK_STR(out, id128);
	free(v.seen);
	pthread_mutex_destroy(&v.lock);
}

UNIT_MAIN("vercel_provider", UNIT_CASE(decode_gives_exact_bytes_and_status), UNIT_CASE(decode_empty_output),
	  UNIT_CASE(decode_refuses_incomplete_output), UNIT_CASE(base64_roundtrip), UNIT_CASE(state_names),
	  UNIT_CASE(create_params), UNIT_CASE(stat_lines), UNIT_CASE(messages_to_errno),
	  UNIT_CASE(session_ids_of_128_bytes_are_kept_whole))
