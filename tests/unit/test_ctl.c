/* SPDX-License-Identifier: Apache-2.0 */
#include "unit.h"
#include "ctl.h"

#include <errno.h>
#include <limits.h>

#define ROOT CTL_SCOPE_ROOT
#define SB   CTL_SCOPE_SANDBOX
#define CMD  CTL_SCOPE_COMMAND

/* The last parse; every parse frees the previous one. */
static struct ctl_command cmd;
static char err[512];

static int parse_n(const char *line, size_t len, enum ctl_scope scope)
{
	ctl_command_free(&cmd);
	memset(err, 'X', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	return ctl_parse(line, len, scope, &cmd, err, sizeof(err));
}

static int parse(const char *line, enum ctl_scope scope)
{
	return parse_n(line, strlen(line), scope);
}

/* An accepted line: returns 0, clears err, gives the verb. */
#define CHECK_OK(line, scope, v) do { \
	CHECK_INT(parse(line, scope), 0); \
	CHECK_STR(err, ""); \
	CHECK_INT(cmd.verb, v); \
} while (0)

/* A refused line, with its exact message. */
#define CHECK_ERR(line, scope, msg) do { \
	CHECK_INT(parse(line, scope), -EINVAL); \
	CHECK_STR(err, msg); \
	CHECK_INT(cmd.verb, CTL_NONE); \
} while (0)

static void check_unset_resources(void)
{
	CHECK_INT(cmd.cpu, CTL_UNSET);
	CHECK_INT(cmd.memory, CTL_UNSET);
	CHECK_INT(cmd.disk, CTL_UNSET);
	CHECK_INT(cmd.gpu, CTL_UNSET);
	CHECK(cmd.autostop == CTL_MINUTES_UNSET);
	CHECK(cmd.autoarchive == CTL_MINUTES_UNSET);
	CHECK(cmd.autodelete == CTL_MINUTES_UNSET);
	CHECK(cmd.minutes == CTL_MINUTES_UNSET);
}

/* ------------------------------------------------------------ no-ops */

UNIT_TEST(empty_and_comments)
{
	CHECK_OK("", ROOT, CTL_NONE);
	CHECK_OK("", SB, CTL_NONE);
	CHECK_OK("", CMD, CTL_NONE);
	CHECK_OK("\n", SB, CTL_NONE);
	CHECK_OK("\r\n", SB, CTL_NONE);
	CHECK_OK("   \t ", SB, CTL_NONE);
	CHECK_OK("# start", SB, CTL_NONE);
	CHECK_OK("   # exec rm -rf /", SB, CTL_NONE);
	CHECK_OK("#", ROOT, CTL_NONE);
	CHECK_INT(parse_n(NULL, 0, SB), 0);
	CHECK_INT(cmd.verb, CTL_NONE);
	check_unset_resources();
}

/* ------------------------------------------------------------ create */

UNIT_TEST(create_minimal)
{
	CHECK_OK("create box", ROOT, CTL_CREATE);
	CHECK_STR(cmd.name, "box");
	CHECK(cmd.snapshot == NULL && cmd.image == NULL && cmd.language == NULL);
	CHECK(cmd.target == NULL && cmd.user == NULL);
	CHECK_INT(cmd.n_env, 0);
	CHECK_INT(cmd.n_labels, 0);
	CHECK_INT(cmd.n_volumes, 0);
	CHECK(!cmd.ephemeral && !cmd.is_public);
	check_unset_resources();
	CHECK_OK("create box\n", ROOT, CTL_CREATE);
	CHECK_STR(cmd.name, "box");
	CHECK_OK("create box\r\n", ROOT, CTL_CREATE);
	CHECK_STR(cmd.name, "box");
	CHECK_OK("create box\r", ROOT, CTL_CREATE);
	CHECK_STR(cmd.name, "box");
	CHECK_OK("\t create \t 'my box'  ", ROOT, CTL_CREATE);
	CHECK_STR(cmd.name, "my box");
}

UNIT_TEST(create_all_options)
{
	CHECK_OK("create dev image=python:3.12 cpu=2 memory=4 disk=10 gpu=0 language=typescript "
		 "target=eu user=root env.FOO=bar env._X1=\"a b\" label.team=ml label.k= "
		 "autostop=0 autoarchive=60 autodelete=-1 volume=vol1:/data volume=v2:/mnt/x public",
		 ROOT, CTL_CREATE);
	CHECK_STR(cmd.name, "dev");
	CHECK_STR(cmd.image, "python:3.12");
	CHECK(cmd.snapshot == NULL);
	CHECK_INT(cmd.cpu, 2);
	CHECK_INT(cmd.memory, 4);
	CHECK_INT(cmd.disk, 10);
	CHECK_INT(cmd.gpu, 0);
	CHECK_STR(cmd.language, "typescript");
	CHECK_STR(cmd.target, "eu");
	CHECK_STR(cmd.user, "root");
	CHECK_INT(cmd.n_env, 2);
	CHECK_STR(cmd.env[0].key, "FOO");
	CHECK_STR(cmd.env[0].value, "bar");
	CHECK_STR(cmd.env[1].key, "_X1");
	CHECK_STR(cmd.env[1].value, "a b");
	CHECK_INT(cmd.n_labels, 2);
	CHECK_STR(cmd.labels[0].key, "team");
	CHECK_STR(cmd.labels[0].value, "ml");
	CHECK_STR(cmd.labels[1].key, "k");
	CHECK_STR(cmd.labels[1].value, "");
	CHECK_INT(cmd.autostop, 0);
	CHECK_INT(cmd.autoarchive, 60);
	CHECK_INT(cmd.autodelete, -1);
	CHECK_INT(cmd.n_volumes, 2);
	CHECK_STR(cmd.volumes[0].key, "vol1");
	CHECK_STR(cmd.volumes[0].value, "/data");
	CHECK_STR(cmd.volumes[1].key, "v2");
	CHECK_STR(cmd.volumes[1].value, "/mnt/x");
	CHECK(cmd.is_public);
	CHECK(!cmd.ephemeral);
	CHECK(cmd.minutes == CTL_MINUTES_UNSET);

	CHECK_OK("create s snapshot=daytonaio/sandbox:0.5.0 ephemeral language=python", ROOT, CTL_CREATE);
	CHECK_STR(cmd.snapshot, "daytonaio/sandbox:0.5.0");
	CHECK(cmd.ephemeral);
	CHECK_STR(cmd.language, "python");
	CHECK_OK("create s language=javascript ephemeral autodelete=0", ROOT, CTL_CREATE);
	CHECK_STR(cmd.language, "javascript");
	CHECK_INT(cmd.autodelete, 0);
	CHECK_OK("create s volume=a:b:/c", ROOT, CTL_CREATE);
	CHECK_STR(cmd.volumes[0].key, "a:b");
	CHECK_STR(cmd.volumes[0].value, "/c");
	CHECK_OK("create s cpu=2147483647 autostop=2147483647", ROOT, CTL_CREATE);
	CHECK_INT(cmd.cpu, INT_MAX);
	CHECK_INT(cmd.autostop, INT_MAX);
	CHECK_OK("create s cpu=007", ROOT, CTL_CREATE);
	CHECK_INT(cmd.cpu, 7);
	/* a value may hold '=' */
	CHECK_OK("create s env.A=b=c label.x=y=z", ROOT, CTL_CREATE);
	CHECK_STR(cmd.env[0].value, "b=c");
	CHECK_STR(cmd.labels[0].value, "y=z");
}

UNIT_TEST(create_network)
{
	CHECK_OK("create s network=block-all", ROOT, CTL_CREATE);
	CHECK(cmd.network_block_all);
	CHECK(cmd.network_allow == NULL);
	CHECK_OK("create s network-allow=10.0.0.0/8,192.168.1.0/24,0.0.0.0/0", ROOT, CTL_CREATE);
	CHECK_STR(cmd.network_allow, "10.0.0.0/8,192.168.1.0/24,0.0.0.0/0");
	CHECK(!cmd.network_block_all);
	CHECK_ERR("create s network=open", ROOT,
		  "create: network must be block-all (or use network-allow=CIDR,...), got 'open'");
	CHECK_ERR("create s network=block-all network-allow=10.0.0.0/8", ROOT,
		  "create: network=block-all and network-allow= exclude each other");
	CHECK_ERR("create s network-allow=10.0.0.0", ROOT,
		  "create: network-allow: '10.0.0.0' is not an IPv4 CIDR such as 10.0.0.0/8");
	CHECK_ERR("create s network-allow=10.0.0.256/8", ROOT,
		  "create: network-allow: '10.0.0.256/8' is not an IPv4 CIDR such as 10.0.0.0/8");
	CHECK_ERR("create s network-allow=10.0.0.0/33", ROOT,
		  "create: network-allow: the prefix of '10.0.0.0/33' must be from 0 to 32");
	CHECK_ERR("create s network-allow=10.0.0.0/8,", ROOT,
		  "create: network-allow: '' is not an IPv4 CIDR such as 10.0.0.0/8");
	CHECK_ERR("create s network-allow=::1/128", ROOT,
		  "create: network-allow: '::1/128' is not an IPv4 CIDR such as 10.0.0.0/8");
	CHECK_ERR("create s network-allow=1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,5.0.0.0/8,6.0.0.0/8,"
		  "7.0.0.0/8,8.0.0.0/8,9.0.0.0/8,10.0.0.0/8,11.0.0.0/8", ROOT,
		  "create: network-allow: at most 10 networks");
	CHECK_ERR("create s network-allow=", ROOT, "create: network-allow needs a value");
}

UNIT_TEST(create_vercel_words)
{
	/* Vercel's names of the same options, and port=, persistent, extend, tag, untag */
	CHECK_OK("create web runtime=node24 vcpus=4 timeout=30 port=3000 port=8080 tag.team=a env.K=V persistent",
		 ROOT, CTL_CREATE);
	CHECK_STR(cmd.image, "node24");
	CHECK_INT(cmd.cpu, 4);
	CHECK(cmd.autostop == 30);
	CHECK(cmd.n_ports == 2 && cmd.ports[0] == 3000 && cmd.ports[1] == 8080);
	CHECK(cmd.n_labels == 1 && !strcmp(cmd.labels[0].key, "team") && !strcmp(cmd.labels[0].value, "a"));
	CHECK(cmd.persistent && !cmd.ephemeral);
	CHECK_ERR("create web persistent ephemeral", ROOT, "create: ephemeral and persistent exclude each other");
	CHECK_ERR("create web port=0", ROOT, "create: port must be a positive integer, got '0'");
	CHECK_ERR("create web image=a runtime=b", ROOT, "create: runtime given twice");
	CHECK_OK("extend 15", SB, CTL_EXTEND);
	CHECK(cmd.minutes == 15);
	CHECK_ERR("extend 0", SB, "extend: minutes must be a positive integer, got '0'");
	CHECK_OK("tag team=b", SB, CTL_LABEL);
	CHECK_OK("untag team", SB, CTL_UNLABEL);
}

UNIT_TEST(create_errors)
{
	CHECK_ERR("create", ROOT, "create: missing sandbox name");
	CHECK_ERR("create   ", ROOT, "create: missing sandbox name");
	CHECK_ERR("create cpu=2", ROOT, "create: missing sandbox name before 'cpu=2'");
	CHECK_ERR("create env.A=1", ROOT, "create: missing sandbox name before 'env.A=1'");
	CHECK_ERR("create a/b", ROOT,
		  "create: invalid sandbox name 'a/b' (1 to 255 bytes, no '/', not starting with '.')");
	CHECK_ERR("create .hidden", ROOT,
		  "create: invalid sandbox name '.hidden' (1 to 255 bytes, no '/', not starting with '.')");
	CHECK_ERR("create ''", ROOT,
		  "create: invalid sandbox name '' (1 to 255 bytes, no '/', not starting with '.')");
	CHECK_ERR("create s cpus=2", ROOT,
		  "create: unknown option 'cpus' (known: snapshot= image= cpu= memory= disk= gpu= language= "
		  "target= user= env.K=V label.K=V autostop= autoarchive= autodelete= volume=ID:/path "
		  "network=block-all network-allow=CIDR,... ephemeral public; Vercel's words: runtime= vcpus= timeout= port= tag.K=V persistent)");
	CHECK_ERR("create s bogus", ROOT,
		  "create: unknown option 'bogus' (known: snapshot= image= cpu= memory= disk= gpu= language= "
		  "target= user= env.K=V label.K=V autostop= autoarchive= autodelete= volume=ID:/path "
		  "network=block-all network-allow=CIDR,... ephemeral public; Vercel's words: runtime= vcpus= timeout= port= tag.K=V persistent)");
	CHECK_ERR("create s cpu=x", ROOT, "create: cpu must be a positive integer, got 'x'");
	CHECK_ERR("create s cpu=0", ROOT, "create: cpu must be a positive integer, got '0'");
	CHECK_ERR("create s cpu=-1", ROOT, "create: cpu must be a positive integer, got '-1'");
	CHECK_ERR("create s cpu=-0", ROOT, "create: cpu must be a positive integer, got '-0'");
	CHECK_ERR("create s cpu=", ROOT, "create: cpu must be a positive integer, got ''");
	CHECK_ERR("create s cpu=2x", ROOT, "create: cpu must be a positive integer, got '2x'");
	CHECK_ERR("create s cpu=+2", ROOT, "create: cpu must be a positive integer, got '+2'");
	CHECK_ERR("create s 'cpu= 2'", ROOT, "create: cpu must be a positive integer, got ' 2'");
	CHECK_ERR("create s cpu=1.5", ROOT, "create: cpu must be a positive integer, got '1.5'");
	CHECK_ERR("create s cpu=2147483648", ROOT, "create: cpu must be at most 2147483647, got '2147483648'");
	CHECK_ERR("create s cpu=99999999999999999999999", ROOT,
		  "create: cpu must be at most 2147483647, got '99999999999999999999999'");
	CHECK_ERR("create s memory=0", ROOT, "create: memory must be a positive integer, got '0'");
	CHECK_ERR("create s disk=a", ROOT, "create: disk must be a positive integer, got 'a'");
	CHECK_ERR("create s gpu=-1", ROOT, "create: gpu must be a non-negative integer, got '-1'");
	CHECK_ERR("create s autostop=-1", ROOT, "create: autostop must be a non-negative integer, got '-1'");
	CHECK_ERR("create s autoarchive=x", ROOT, "create: autoarchive must be a non-negative integer, got 'x'");
	CHECK_ERR("create s autodelete=-2", ROOT, "create: autodelete must be an integer >= -1, got '-2'");
	CHECK_ERR("create s autodelete=-99999999999999999999", ROOT,
		  "create: autodelete must be an integer >= -1, got '-99999999999999999999'");
	CHECK_ERR("create s cpu=1 cpu=2", ROOT, "create: cpu given twice");
	CHECK_ERR("create s image=a image=b", ROOT, "create: image given twice");
	CHECK_ERR("create s autostop=1 autostop=1", ROOT, "create: autostop given twice");
	CHECK_ERR("create s public public", ROOT, "create: public given twice");
	CHECK_ERR("create s image=", ROOT, "create: image needs a value");
	CHECK_ERR("create s snapshot=", ROOT, "create: snapshot needs a value");
	CHECK_ERR("create s target=", ROOT, "create: target needs a value");
	CHECK_ERR("create s user=", ROOT, "create: user needs a value");
	CHECK_ERR("create s image", ROOT, "create: image needs a value (image=...)");
	CHECK_ERR("create s snapshot=a image=b", ROOT, "create: snapshot= and image= exclude each other");
	CHECK_ERR("create s ephemeral autodelete=5", ROOT, "create: ephemeral means autodelete=0, got autodelete=5");
	CHECK_ERR("create s ephemeral=yes", ROOT, "create: ephemeral is a flag and takes no value");
	CHECK_ERR("create s public=", ROOT, "create: public is a flag and takes no value");
	CHECK_ERR("create s language=ruby", ROOT,
		  "create: language must be python, javascript or typescript, got 'ruby'");
	CHECK_ERR("create s language=", ROOT, "create: language needs a value");
	CHECK_ERR("create s env.1X=3", ROOT,
		  "create: invalid environment variable name '1X' (letters, digits and '_', not starting with a digit)");
	CHECK_ERR("create s env.=3", ROOT,
		  "create: invalid environment variable name '' (letters, digits and '_', not starting with a digit)");
	CHECK_ERR("create s env.A-B=3", ROOT,
		  "create: invalid environment variable name 'A-B' (letters, digits and '_', not starting with a digit)");
	CHECK_ERR("create s env.FOO", ROOT, "create: expected env.NAME=VALUE, got 'env.FOO'");
	CHECK_ERR("create s env.A=1 env.A=2", ROOT, "create: env.A given twice");
	CHECK_ERR("create s label.=x", ROOT, "create: expected label.KEY=VALUE, got 'label.=x'");
	CHECK_ERR("create s label.k", ROOT, "create: expected label.KEY=VALUE, got 'label.k'");
	CHECK_ERR("create s label.k=1 label.k=2", ROOT, "create: label.k given twice");
	CHECK_ERR("create s volume=vol", ROOT, "create: volume must be ID:/path, got 'vol'");
	CHECK_ERR("create s volume=:/x", ROOT, "create: volume must be ID:/path, got ':/x'");
	CHECK_ERR("create s volume=v:rel", ROOT, "create: volume must be ID:/path, got 'v:rel'");
	CHECK_ERR("create s volume=", ROOT, "create: volume must be ID:/path, got ''");
}

UNIT_TEST(name_validation)
{
	char big[300];

	CHECK(ctl_valid_name("a"));
	CHECK(ctl_valid_name("my-box_1.x"));
	CHECK(ctl_valid_name("a.b"));
	CHECK(ctl_valid_name("with space"));
	CHECK(!ctl_valid_name(""));
	CHECK(!ctl_valid_name("."));
	CHECK(!ctl_valid_name(".."));
	CHECK(!ctl_valid_name(".x"));
	CHECK(!ctl_valid_name("a/b"));
	CHECK(!ctl_valid_name("/"));
	CHECK(!ctl_valid_name(NULL));
	memset(big, 'a', 255);
	big[255] = '\0';
	CHECK(ctl_valid_name(big));
	big[255] = 'a';
	big[256] = '\0';
	CHECK(!ctl_valid_name(big));

	CHECK(ctl_valid_env_key("A"));
	CHECK(ctl_valid_env_key("_"));
	CHECK(ctl_valid_env_key("a_B9"));
	CHECK(!ctl_valid_env_key(""));
	CHECK(!ctl_valid_env_key("9a"));
	CHECK(!ctl_valid_env_key("a-b"));
	CHECK(!ctl_valid_env_key("a.b"));
	CHECK(!ctl_valid_env_key("\xc3\xa9"));
	CHECK(!ctl_valid_env_key(NULL));
}

/* -------------------------------------------------------------- exec */

UNIT_TEST(exec_plain)
{
	CHECK_OK("exec ls -la", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "ls -la");
	CHECK(cmd.cwd == NULL);
	CHECK_INT(cmd.timeout_s, CTL_UNSET);   /* not given: -o exec_timeout applies */
	CHECK(!cmd.with_stdin);
	CHECK_INT(cmd.n_env, 0);
	/* verbatim: quotes, escapes, inner blanks and trailing blanks all kept */
	CHECK_OK("exec   echo 'a  b' \"$HOME\" \\$x  | wc -c  ", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "echo 'a  b' \"$HOME\" \\$x  | wc -c  ");
	CHECK_OK("exec\tmake\n", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "make");
	CHECK_OK("exec make\r\n", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "make");
	CHECK_OK("exec make\r", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "make");
	/* an assignment is a command, not an option */
	CHECK_OK("exec FOO=1 make", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "FOO=1 make");
	/* options without "--" are the command too */
	CHECK_OK("exec cwd=/tmp ls", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "cwd=/tmp ls");
	CHECK(cmd.cwd == NULL);
	CHECK_OK("exec stdin", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "stdin");
	CHECK(!cmd.with_stdin);
	/* "--" after a non-option word: all command */
	CHECK_OK("exec ls -- -weird-file", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "ls -- -weird-file");
	CHECK_OK("exec cwd=/x ls -- y", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "cwd=/x ls -- y");
	CHECK(cmd.cwd == NULL);
	/* a quoted "--" is no separator */
	CHECK_OK("exec cwd=/x '--' ls", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "cwd=/x '--' ls");
	CHECK(cmd.cwd == NULL);
	CHECK_OK("exec --x", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "--x");
	/* env. without '=' is not an option form */
	CHECK_OK("exec env.A -- ls", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "env.A -- ls");
	/* an open quote before any "--": the shell judges the command */
	CHECK_OK("exec echo 'unterminated -- x", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "echo 'unterminated -- x");
	CHECK_OK("exec cwd='/a -- b", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "cwd='/a -- b");
	CHECK_OK("exec echo \\", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "echo \\");
	/* comments are only whole lines */
	CHECK_OK("exec echo # hi", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "echo # hi");
	/* a quoted verb is still the verb */
	CHECK_OK("'exec' ls", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "ls");
	/* UTF-8 passes through untouched */
	CHECK_OK("exec echo h\xc3\xa9llo", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "echo h\xc3\xa9llo");
}

UNIT_TEST(exec_options)
{
	CHECK_OK("exec -- ls", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "ls");
	CHECK(cmd.cwd == NULL);
	CHECK_OK("exec cwd=/srv timeout=30 env.A=1 env.B=\"x y\" stdin -- make -j4 -- all", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "make -j4 -- all");
	CHECK_STR(cmd.cwd, "/srv");
	CHECK_INT(cmd.timeout_s, 30);
	CHECK(cmd.with_stdin);
	CHECK_INT(cmd.n_env, 2);
	CHECK_STR(cmd.env[0].key, "A");
	CHECK_STR(cmd.env[0].value, "1");
	CHECK_STR(cmd.env[1].key, "B");
	CHECK_STR(cmd.env[1].value, "x y");
	/* quoted option values; the command stays verbatim */
	CHECK_OK("exec cwd='/my dir' env.Q=\"a\\\"b\" --   echo \"$Q\"  ", SB, CTL_EXEC);
	CHECK_STR(cmd.cwd, "/my dir");
	CHECK_STR(cmd.env[0].value, "a\"b");
	CHECK_STR(cmd.command, "echo \"$Q\"  ");
	CHECK_OK("exec timeout=0 -- sleep 1", SB, CTL_EXEC);
	CHECK_INT(cmd.timeout_s, 0);
	CHECK_STR(cmd.command, "sleep 1");
	CHECK_OK("exec\tstdin\t--\tcat", SB, CTL_EXEC);
	CHECK(cmd.with_stdin);
	CHECK_STR(cmd.command, "cat");
	CHECK_OK("exec env.EMPTY= -- env", SB, CTL_EXEC);
	CHECK_STR(cmd.env[0].key, "EMPTY");
	CHECK_STR(cmd.env[0].value, "");
	CHECK_OK("exec -- --", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "--");
	/* quoting after "--" is not checked: it is the shell's */
	CHECK_OK("exec -- echo 'open", SB, CTL_EXEC);
	CHECK_STR(cmd.command, "echo 'open");
}

UNIT_TEST(exec_errors)
{
	CHECK_ERR("exec", SB, "exec: missing command");
	CHECK_ERR("exec   \t", SB, "exec: missing command");
	CHECK_ERR("exec\n", SB, "exec: missing command");
	CHECK_ERR("exec --", SB, "exec: missing command after '--'");
	CHECK_ERR("exec cwd=/x --   ", SB, "exec: missing command after '--'");
	CHECK_ERR("exec timeout=abc -- ls", SB, "exec: timeout must be a non-negative integer, got 'abc'");
	CHECK_ERR("exec timeout=-1 -- ls", SB, "exec: timeout must be a non-negative integer, got '-1'");
	CHECK_ERR("exec timeout=1 timeout=2 -- ls", SB, "exec: timeout given twice");
	CHECK_ERR("exec timeout=0 timeout=0 -- ls", SB, "exec: timeout given twice");
	CHECK_ERR("exec timeout=99999999999 -- ls", SB, "exec: timeout must be at most 2147483647, got '99999999999'");
	CHECK_ERR("exec cwd= -- ls", SB, "exec: cwd needs a value");
	CHECK_ERR("exec cwd=/a cwd=/b -- ls", SB, "exec: cwd given twice");
	CHECK_ERR("exec env.9=1 -- ls", SB,
		  "exec: invalid environment variable name '9' (letters, digits and '_', not starting with a digit)");
	CHECK_ERR("exec env.A=1 env.A=2 -- ls", SB, "exec: env.A given twice");
	/* names bash keeps for itself: the wrapper's "readonly variable" on
	 * the command's stderr, and the name not set */
	CHECK_ERR("exec env.UID=5 -- id", SB,
		  "exec: env.UID: the shell keeps that name for itself: it cannot be set for a command");
	CHECK_ERR("exec env.A=1 env.IFS=: -- ls", SB,
		  "exec: env.IFS: the shell keeps that name for itself: it cannot be set for a command");
	CHECK_OK("exec env.UIDX=1 env.PATH=/x -- ls", SB, CTL_EXEC);
	CHECK_OK("create s env.UID=5", ROOT, CTL_CREATE);   /* the sandbox's own environment */
	CHECK_ERR("exec stdin stdin -- cat", SB, "exec: stdin given twice");
	CHECK_ERR("exec ls\nrm -rf /", SB, "one command per line: the line contains a newline");
}

/* -------------------------------------------------- the other sandbox verbs */

UNIT_TEST(lifecycle_verbs)
{
	static const struct { const char *w; enum ctl_verb v; } t[] = {
		{ "start", CTL_START }, { "stop", CTL_STOP }, { "restart", CTL_RESTART },
		{ "archive", CTL_ARCHIVE }, { "recover", CTL_RECOVER }, { "delete", CTL_DELETE },
	};
	char line[64], want[128];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		CHECK_OK(t[i].w, SB, t[i].v);
		CHECK_STR(ctl_verb_name(t[i].v), t[i].w);
		snprintf(line, sizeof(line), " %s \r\n", t[i].w);
		CHECK_OK(line, SB, t[i].v);
		snprintf(line, sizeof(line), "%s now", t[i].w);
		snprintf(want, sizeof(want), "%s: unexpected argument 'now'", t[i].w);
		CHECK_ERR(line, SB, want);
		snprintf(want, sizeof(want), "%s: not a command for the root ctl; write it to NAME/ctl", t[i].w);
		CHECK_ERR(t[i].w, ROOT, want);
		snprintf(want, sizeof(want), "%s: not a command for NAME/cmd/N/ctl; write it to NAME/ctl", t[i].w);
		CHECK_ERR(t[i].w, CMD, want);
	}
}

UNIT_TEST(kill_verb)
{
	CHECK_OK("kill", SB, CTL_KILL);
	CHECK_INT(cmd.kill_n, 0);
	CHECK_OK("kill 3", SB, CTL_KILL);
	CHECK_INT(cmd.kill_n, 3);
	CHECK_OK("kill '12'", SB, CTL_KILL);
	CHECK_INT(cmd.kill_n, 12);
	CHECK_ERR("kill 0", SB, "kill: N must be a positive integer, got '0'");
	CHECK_ERR("kill -1", SB, "kill: N must be a positive integer, got '-1'");
	CHECK_ERR("kill x", SB, "kill: N must be a positive integer, got 'x'");
	CHECK_ERR("kill 3x", SB, "kill: N must be a positive integer, got '3x'");
	CHECK_ERR("kill 1 2", SB, "kill: unexpected argument '2'");
	CHECK_ERR("kill 2147483648", SB, "kill: N must be at most 2147483647, got '2147483648'");
	CHECK_OK("kill", CMD, CTL_KILL);
	CHECK_INT(cmd.kill_n, 0);
	CHECK_ERR("kill 2", CMD, "kill: unexpected argument '2' (cmd/N/ctl kills its own command)");
	CHECK_ERR("kill", ROOT, "kill: not a command for the root ctl; write it to NAME/ctl or NAME/cmd/N/ctl");
}

UNIT_TEST(snapshot_verb)
{
	CHECK_OK("snapshot my-snap:v1", SB, CTL_SNAPSHOT);
	CHECK_STR(cmd.name, "my-snap:v1");
	CHECK_ERR("snapshot", SB, "snapshot: missing snapshot name");
	CHECK_ERR("snapshot a b", SB, "snapshot: unexpected argument 'b'");
	CHECK_ERR("snapshot a/b", SB,
		  "snapshot: invalid snapshot name 'a/b' (1 to 255 bytes, no '/', not starting with '.')");
	CHECK_ERR("snapshot ..", SB,
		  "snapshot: invalid snapshot name '..' (1 to 255 bytes, no '/', not starting with '.')");
	CHECK_ERR("snapshot x", ROOT, "snapshot: not a command for the root ctl; write it to NAME/ctl");
}

UNIT_TEST(resize_verb)
{
	CHECK_OK("resize cpu=4", SB, CTL_RESIZE);
	CHECK_INT(cmd.cpu, 4);
	CHECK_INT(cmd.memory, CTL_UNSET);
	CHECK_INT(cmd.disk, CTL_UNSET);
	CHECK_INT(cmd.gpu, CTL_UNSET);
	CHECK_OK("resize disk=20 memory=8 cpu=1", SB, CTL_RESIZE);
	CHECK_INT(cmd.cpu, 1);
	CHECK_INT(cmd.memory, 8);
	CHECK_INT(cmd.disk, 20);
	CHECK_ERR("resize", SB, "resize: needs at least one of cpu=N memory=GIB disk=GIB");
	CHECK_ERR("resize cpu=x", SB, "resize: cpu must be a positive integer, got 'x'");
	CHECK_ERR("resize memory=0", SB, "resize: memory must be a positive integer, got '0'");
	CHECK_ERR("resize disk=-5", SB, "resize: disk must be a positive integer, got '-5'");
	CHECK_ERR("resize cpu=1 cpu=2", SB, "resize: cpu given twice");
	CHECK_ERR("resize gpu=1", SB, "resize: unknown option 'gpu' (known: cpu= memory= disk=)");
	CHECK_ERR("resize 4", SB, "resize: unknown option '4' (known: cpu= memory= disk=)");
	CHECK_ERR("resize cpu", SB, "resize: unknown option 'cpu' (known: cpu= memory= disk=)");
}

UNIT_TEST(minutes_verbs)
{
	CHECK_OK("autostop 0", SB, CTL_AUTOSTOP);
	CHECK_INT(cmd.minutes, 0);
	CHECK(cmd.autostop == CTL_MINUTES_UNSET);
	CHECK_OK("autoarchive 10080", SB, CTL_AUTOARCHIVE);
	CHECK_INT(cmd.minutes, 10080);
	CHECK_OK("autodelete -1", SB, CTL_AUTODELETE);
	CHECK_INT(cmd.minutes, -1);
	CHECK_OK("autodelete 0", SB, CTL_AUTODELETE);
	CHECK_INT(cmd.minutes, 0);
	CHECK_ERR("autostop", SB, "autostop: missing minutes");
	CHECK_ERR("autostop -1", SB, "autostop: minutes must be a non-negative integer, got '-1'");
	CHECK_ERR("autoarchive 1h", SB, "autoarchive: minutes must be a non-negative integer, got '1h'");
	CHECK_ERR("autodelete -2", SB, "autodelete: minutes must be an integer >= -1, got '-2'");
	CHECK_ERR("autodelete", SB, "autodelete: missing minutes");
	CHECK_ERR("autostop 1 2", SB, "autostop: unexpected argument '2'");
	CHECK_ERR("autostop 2147483648", SB, "autostop: minutes must be at most 2147483647, got '2147483648'");
	CHECK_ERR("autodelete 1", ROOT, "autodelete: not a command for the root ctl; write it to NAME/ctl");
}

UNIT_TEST(label_verbs)
{
	CHECK_OK("label team=ml", SB, CTL_LABEL);
	CHECK_INT(cmd.n_labels, 1);
	CHECK_STR(cmd.labels[0].key, "team");
	CHECK_STR(cmd.labels[0].value, "ml");
	CHECK_OK("label a=1 b= 'c d'=\"e f\"", SB, CTL_LABEL);
	CHECK_INT(cmd.n_labels, 3);
	CHECK_STR(cmd.labels[1].key, "b");
	CHECK_STR(cmd.labels[1].value, "");
	CHECK_STR(cmd.labels[2].key, "c d");
	CHECK_STR(cmd.labels[2].value, "e f");
	CHECK_ERR("label", SB, "label: missing KEY=VALUE");
	CHECK_ERR("label team", SB, "label: expected KEY=VALUE, got 'team'");
	CHECK_ERR("label =x", SB, "label: expected KEY=VALUE, got '=x'");
	CHECK_ERR("label a=1 a=2", SB, "label: key 'a' given twice");

	CHECK_OK("unlabel team", SB, CTL_UNLABEL);
	CHECK_INT(cmd.n_keys, 1);
	CHECK_STR(cmd.keys[0], "team");
	CHECK_OK("unlabel a b a 'c d'", SB, CTL_UNLABEL);
	CHECK_INT(cmd.n_keys, 3);
	CHECK_STR(cmd.keys[0], "a");
	CHECK_STR(cmd.keys[1], "b");
	CHECK_STR(cmd.keys[2], "c d");
	CHECK_ERR("unlabel", SB, "unlabel: missing KEY");
	CHECK_ERR("unlabel a=b", SB, "unlabel: expected KEY without '=', got 'a=b'");
	CHECK_ERR("unlabel a ''", SB, "unlabel: empty KEY");
	CHECK_ERR("label a=b", ROOT, "label: not a command for the root ctl; write it to NAME/ctl");
	CHECK_ERR("unlabel a", CMD, "unlabel: not a command for NAME/cmd/N/ctl; write it to NAME/ctl");
}

/* ------------------------------------------------- command scope and scopes */

UNIT_TEST(command_scope)
{
	CHECK_OK("close-stdin", CMD, CTL_CLOSE_STDIN);
	CHECK_STR(ctl_verb_name(CTL_CLOSE_STDIN), "close-stdin");
	CHECK_ERR("close-stdin now", CMD, "close-stdin: unexpected argument 'now'");
	CHECK_ERR("close-stdin", SB, "close-stdin: not a command for NAME/ctl; write it to NAME/cmd/N/ctl");
	CHECK_ERR("close-stdin", ROOT, "close-stdin: not a command for the root ctl; write it to NAME/cmd/N/ctl");
	CHECK_ERR("exec ls", CMD, "exec: not a command for NAME/cmd/N/ctl; write it to NAME/ctl");
	CHECK_ERR("create x", CMD, "create: not a command for NAME/cmd/N/ctl; write it to the root ctl");
}

UNIT_TEST(scope_errors)
{
	CHECK_ERR("exec ls", ROOT, "exec: not a command for the root ctl; write it to NAME/ctl");
	CHECK_ERR("exec", ROOT, "exec: not a command for the root ctl; write it to NAME/ctl");
	CHECK_ERR("create x", SB, "create: not a command for NAME/ctl; write it to the root ctl");
	CHECK_ERR("resize cpu=1", ROOT, "resize: not a command for the root ctl; write it to NAME/ctl");
}

UNIT_TEST(unknown_verbs)
{
	CHECK_ERR("strat", SB, "unknown command 'strat' (did you mean 'start'?)");
	CHECK_ERR("sotp", SB, "unknown command 'sotp' (did you mean 'stop'?)");
	CHECK_ERR("exce ls", SB, "unknown command 'exce' (did you mean 'exec'?)");
	CHECK_ERR("START", SB, "unknown command 'START' (did you mean 'start'?)");
	CHECK_ERR("autostp 5", SB, "unknown command 'autostp' (did you mean 'autostop'?)");
	CHECK_ERR("unlable x", SB, "unknown command 'unlable' (did you mean 'unlabel'?)");
	CHECK_ERR("creat x", ROOT, "unknown command 'creat' (did you mean 'create'?)");
	CHECK_ERR("close_stdin", CMD, "unknown command 'close_stdin' (did you mean 'close-stdin'?)");
	CHECK_ERR("kil", CMD, "unknown command 'kil' (did you mean 'kill'?)");
	CHECK_ERR("run ls", SB,
		  "unknown command 'run' (known here: exec, kill, start, stop, restart, archive, recover, "
		  "delete, snapshot, resize, autostop, autoarchive, autodelete, label, unlabel, extend, tag, untag)");
	CHECK_ERR("exce ls", ROOT, "unknown command 'exce' (known here: create)");
	CHECK_ERR("foo", CMD, "unknown command 'foo' (known here: kill, close-stdin)");
	CHECK_ERR("'' x", SB,
		  "unknown command '' (known here: exec, kill, start, stop, restart, archive, recover, "
		  "delete, snapshot, resize, autostop, autoarchive, autodelete, label, unlabel, extend, tag, untag)");
	CHECK_STR(ctl_verb_name(CTL_NONE), "none");
	CHECK_STR(ctl_verb_name(CTL_EXEC), "exec");
	CHECK_STR(ctl_verb_name(CTL_AUTODELETE), "autodelete");
	CHECK_STR(ctl_verb_name((enum ctl_verb)999), "unknown");
}

/* ------------------------------------------------------------ quoting */

UNIT_TEST(quoting)
{
	CHECK_OK("label 'a b'=c\\ d x=\"q\\\"\\\\\\$\\`\\n\\a\"", SB, CTL_LABEL);
	CHECK_STR(cmd.labels[0].key, "a b");
	CHECK_STR(cmd.labels[0].value, "c d");
	CHECK_STR(cmd.labels[1].key, "x");
	CHECK_STR(cmd.labels[1].value, "q\"\\$`\n\\a");
	/* adjacent parts make one word; single quotes are literal */
	CHECK_OK("label k='a\\b'\"c\"d", SB, CTL_LABEL);
	CHECK_STR(cmd.labels[0].value, "a\\bcd");
	CHECK_OK("label k=''", SB, CTL_LABEL);
	CHECK_STR(cmd.labels[0].value, "");
	CHECK_OK("snapshot \"\\$x\"", SB, CTL_SNAPSHOT);
	CHECK_STR(cmd.name, "$x");
	CHECK_OK("snapshot a\\ b", SB, CTL_SNAPSHOT);
	CHECK_STR(cmd.name, "a b");
	CHECK_OK("snapshot \"a'b\"", SB, CTL_SNAPSHOT);
	CHECK_STR(cmd.name, "a'b");
	CHECK_OK("snapshot 'a\"b'", SB, CTL_SNAPSHOT);
	CHECK_STR(cmd.name, "a\"b");

	CHECK_ERR("label k='abc", SB, "label: unterminated single quote");
	CHECK_ERR("label k=\"abc", SB, "label: unterminated double quote");
	CHECK_ERR("label k=\"abc\\\"", SB, "label: unterminated double quote");
	CHECK_ERR("label k=abc\\", SB, "label: backslash at the end of the line");
	CHECK_ERR("'start", SB, "unterminated single quote");
	CHECK_ERR("\"start", SB, "unterminated double quote");
	CHECK_ERR("start\\", SB, "backslash at the end of the line");
	CHECK_ERR("create 'a", ROOT, "create: unterminated single quote");
}

UNIT_TEST(malformed_bytes)
{
	static const char nul[] = "start\0stop";
	char big[400], want[400];
	size_t o;

	CHECK_INT(parse_n(nul, sizeof(nul) - 1, SB), -EINVAL);
	CHECK_STR(err, "the line contains a NUL byte");
	CHECK_INT(cmd.verb, CTL_NONE);
	CHECK_ERR("start\nstop", SB, "one command per line: the line contains a newline");
	CHECK_ERR("start\n\n", SB, "one command per line: the line contains a newline");
	/* control bytes are escaped and long words cut in messages */
	CHECK_ERR("st\x01rt", SB, "unknown command 'st\\x01rt' (did you mean 'start'?)");
	CHECK_ERR("kill \"a\\nb\"", SB, "kill: N must be a positive integer, got 'a\\x0ab'");
	memcpy(big, "kill ", 5);
	memset(big + 5, 'z', 200);
	big[205] = '\0';
	o = (size_t)snprintf(want, sizeof(want), "kill: N must be a positive integer, got '");
	memset(want + o, 'z', 64);
	strcpy(want + o + 64, "...'");
	CHECK_ERR(big, SB, want);
	/* a cut never splits a UTF-8 sequence */
	memset(big + 5, 'y', 63);
	memcpy(big + 68, "\xc3\xa9\xc3\xa9", 4);
	big[72] = '\0';
	memset(want + o, 'y', 63);
	strcpy(want + o + 63, "...'");
	CHECK_ERR(big, SB, want);
}

UNIT_TEST(error_buffer_bounds)
{
	char small[8];
	struct ctl_command c;

	memset(small, 'X', sizeof(small));
	CHECK_INT(ctl_parse("strat", 5, SB, &c, small, sizeof(small)), -EINVAL);
	CHECK_STR(small, "unknown");
	ctl_command_free(&c);
	/* no buffer at all */
	CHECK_INT(ctl_parse("strat", 5, SB, &c, NULL, 0), -EINVAL);
	ctl_command_free(&c);
	CHECK_INT(ctl_parse("start", 5, SB, &c, NULL, 0), 0);
	CHECK_INT(c.verb, CTL_START);
	ctl_command_free(&c);
	/* freeing twice is harmless (free resets) */
	ctl_command_free(&c);
	CHECK_INT(c.verb, CTL_NONE);
	/* only len bytes are read */
	CHECK_INT(ctl_parse("stopped", 4, SB, &c, small, sizeof(small)), 0);
	CHECK_INT(c.verb, CTL_STOP);
	ctl_command_free(&c);
}

UNIT_TEST(too_many_words)
{
	char *line = malloc(5 + 4 * 1100 + 1);
	size_t o = 0;

	memcpy(line, "label", 5);
	o = 5;
	for (int i = 0; i < 1100; i++)
		o += (size_t)sprintf(line + o, " %c=1", 'a' + i % 26);
	CHECK_ERR(line, SB, "label: too many arguments (at most 1024)");
	free(line);
}

UNIT_TEST(cleanup)
{
	ctl_command_free(&cmd);
	CHECK(cmd.command == NULL);
}

UNIT_MAIN("ctl",
	UNIT_CASE(empty_and_comments),
	UNIT_CASE(create_minimal),
	UNIT_CASE(create_all_options),
	UNIT_CASE(create_network),
	UNIT_CASE(create_vercel_words),
	UNIT_CASE(create_errors),
	UNIT_CASE(name_validation),
	UNIT_CASE(exec_plain),
	UNIT_CASE(exec_options),
	UNIT_CASE(exec_errors),
	UNIT_CASE(lifecycle_verbs),
	UNIT_CASE(kill_verb),
	UNIT_CASE(snapshot_verb),
	UNIT_CASE(resize_verb),
	UNIT_CASE(minutes_verbs),
	UNIT_CASE(label_verbs),
	UNIT_CASE(command_scope),
	UNIT_CASE(scope_errors),
	UNIT_CASE(unknown_verbs),
	UNIT_CASE(quoting),
	UNIT_CASE(malformed_bytes),
	UNIT_CASE(error_buffer_bounds),
	UNIT_CASE(too_many_words),
	UNIT_CASE(cleanup))
