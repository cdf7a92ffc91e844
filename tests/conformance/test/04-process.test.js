'use strict'
// POST /process/execute through sandbox.process.executeCommand: merged output, exit codes, cwd, env,
// timeouts, and detached background processes (what daytonafs relies on to run and kill commands).
const { describe, it, before, after } = require('node:test')
const c = require('../lib/common')
const { assert, sdk } = c

describe('executeCommand', () => {
  let daytona, sb
  before(async () => {
    daytona = c.newClient()
    sb = await daytona.create({ envVars: { SANDBOX_VAR: 'from-sandbox' } })
  })
  after(async () => {
    if (sb) await c.cleanup([sb.id])
    await c.disposeClient(daytona)
  })

  it('returns the output and exit code 0', async () => {
    const r = await sb.process.executeCommand('echo hello')
    assert.equal(r.exitCode, 0)
    assert.equal(r.result, 'hello\n')
    assert.equal(r.artifacts.stdout, 'hello\n')
  })

  it('merges stdout and stderr in write order', async () => {
    const r = await sb.process.executeCommand('echo out1; echo err1 1>&2; echo out2; echo err2 >&2')
    assert.equal(r.exitCode, 0)
    assert.equal(r.result, 'out1\nerr1\nout2\nerr2\n')
  })

  it('reports the real exit code', async () => {
    assert.equal((await sb.process.executeCommand('exit 3')).exitCode, 3)
    assert.equal((await sb.process.executeCommand('false')).exitCode, 1)
    const r = await sb.process.executeCommand('echo before; exit 42')
    assert.equal(r.exitCode, 42)
    assert.equal(r.result, 'before\n')
    const nf = await sb.process.executeCommand('definitely-not-a-command-xyz')
    assert.equal(nf.exitCode, 127)
  })

  it('runs in the work dir by default, or in cwd', async () => {
    assert.equal((await sb.process.executeCommand('pwd')).result, '/home/daytona\n')
    assert.equal((await sb.process.executeCommand('pwd', '/tmp')).result, '/tmp\n')
    await sb.fs.createFolder('/home/daytona/proc-cwd/sub', '755')
    assert.equal((await sb.process.executeCommand('pwd', '/home/daytona/proc-cwd/sub')).result,
      '/home/daytona/proc-cwd/sub\n')
    assert.equal((await sb.process.executeCommand('echo $HOME')).result, '/home/daytona\n')
  })

  it('a cwd that does not exist: exitCode -1 and the error text (the shell could not start)', async () => {
    const r = await sb.process.executeCommand('pwd', '/home/daytona/no-such-dir')
    assert.equal(r.exitCode, -1)
    assert.match(r.result, /no-such-dir/)
  })

  it('passes env on top of the sandbox env', async () => {
    const r = await sb.process.executeCommand('printf "%s|%s|%s" "$FOO" "$SPACED" "$SANDBOX_VAR"', undefined, {
      FOO: 'bar',
      SPACED: 'a b  c',
    })
    assert.equal(r.result, 'bar|a b  c|from-sandbox')
  })

  it('rejects a bad env key and an empty command with 400', async () => {
    await c.rejectsWith(() => sb.process.executeCommand('true', undefined, { 'BAD-KEY': '1' }),
      sdk.DaytonaValidationError, { status: 400 })
    await c.rejectsWith(() => sb.process.executeCommand('   '), sdk.DaytonaValidationError, { status: 400 })
  })

  it('a timeout kills the command and is a DaytonaTimeoutError (408)', async () => {
    const marker = `/tmp/timeout-${Date.now()}`
    const t0 = Date.now()
    const err = await c.rejectsWith(
      () => sb.process.executeCommand(`echo partial; sleep 30; touch ${marker}`, undefined, undefined, 1),
      sdk.DaytonaTimeoutError, { status: 408 })
    const ms = Date.now() - t0
    assert.ok(ms >= 900 && ms < 10000, `timed out after ${ms} ms`)
    assert.match(err.message, /timeout/i)
    // the process group was killed: the touch never runs
    await c.sleep(300)
    const r = await sb.process.executeCommand(`test -e ${marker}; echo $?`)
    assert.equal(r.result, '1\n')
  })

  it('a command that finishes within its timeout is fine', async () => {
    const r = await sb.process.executeCommand('sleep 0.2; echo ok', undefined, undefined, 5)
    assert.equal(r.exitCode, 0)
    assert.equal(r.result, 'ok\n')
  })

  it('runs multi-line scripts; quoting and here-docs work', async () => {
    const script = [
      'x=1',
      'for i in 1 2 3; do x=$((x*2)); done',
      'echo "x=$x"',
      "cat <<'EOF'",
      'literal $x `y`',
      'EOF',
    ].join('\n')
    const r = await sb.process.executeCommand(script)
    assert.equal(r.exitCode, 0)
    assert.equal(r.result, 'x=8\nliteral $x `y`\n')
  })

  it('large output comes back whole', async () => {
    const r = await sb.process.executeCommand('seq 1 200000')
    assert.equal(r.exitCode, 0)
    const lines = r.result.trimEnd().split('\n')
    assert.equal(lines.length, 200000)
    assert.equal(lines[199999], '200000')
  })

  it('invalid UTF-8 output becomes U+FFFD (the output is a JSON string)', async () => {
    const r = await sb.process.executeCommand("printf 'a\\377b'")
    assert.equal(r.result, 'a\uFFFDb')
  })

  it('a detached background process returns at once, keeps running, and a later command can kill it', async () => {
    const t0 = Date.now()
    const r = await sb.process.executeCommand(
      "setsid sh -c 'echo $$ > /tmp/bg.pid; exec sleep 60' >/dev/null 2>&1 </dev/null &\necho started")
    assert.equal(r.exitCode, 0)
    assert.equal(r.result, 'started\n')
    assert.ok(Date.now() - t0 < 5000, 'execute returned promptly')
    await c.waitFor(async () => (await sb.process.executeCommand('test -s /tmp/bg.pid && echo y')).result === 'y\n',
      { what: 'pid file' })
    const pid = (await sb.process.executeCommand('cat /tmp/bg.pid')).result.trim()
    assert.match(pid, /^\d+$/)
    await c.sleep(500)
    assert.equal((await sb.process.executeCommand(`kill -0 ${pid} && echo alive`)).result, 'alive\n')
    // kill the whole process group, as daytonafs does
    const k = await sb.process.executeCommand(`kill -- -${pid}; echo $?`)
    assert.equal(k.result, '0\n')
    await c.waitFor(async () => (await sb.process.executeCommand(`kill -0 ${pid} 2>/dev/null || echo dead`)).result === 'dead\n',
      { what: 'background process to die' })
  })

  it('runs commands concurrently', async () => {
    const t0 = Date.now()
    const rs = await Promise.all([1, 2, 3, 4].map((i) => sb.process.executeCommand(`sleep 1; echo ${i}`)))
    assert.deepEqual(rs.map((r) => r.result), ['1\n', '2\n', '3\n', '4\n'])
    assert.ok(Date.now() - t0 < 3500, `4 x 1 s commands took ${Date.now() - t0} ms`)
  })
})
